"""The one errno table: FreeBSD's numbers (not the host's), libc's texts, and the name beside them."""

from __future__ import annotations

import errno as host

from kernel_sim import errnos


def test_numbers_run_from_eperm_to_eintegrity_without_gaps():
    assert sorted(errnos.NAME) == list(range(1, 98))
    assert errnos.NUMBER["EINTEGRITY"] == 97 and errnos.NUMBER["EOPNOTSUPP"] == 45 and errnos.NUMBER["EFTYPE"] == 79


def test_describe_gives_text_and_name():
    assert errnos.describe(1) == "Operation not permitted (EPERM)"
    assert errnos.describe(30) == "Read-only file system (EROFS)"
    assert errnos.describe(400) == "Unknown error: 400"


def test_host_errnos_map_by_name_to_freebsd_numbers():
    assert errnos.from_host(host.EOPNOTSUPP) == 45          # 95 on Linux
    assert errnos.from_host(host.ELOOP) == 62                # 40 on Linux
    assert errnos.from_host(host.ENOKEY) == 5                # no FreeBSD counterpart: EIO
    assert errnos.describe_host(PermissionError(host.EACCES, "Permission denied")) == "Permission denied (EACCES)"
