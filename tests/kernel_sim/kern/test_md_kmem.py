"""md malloc disks in the booted kernel: their sectors are kmem, shared with every other user."""

from __future__ import annotations

import os

import pytest

from kernel_sim.geom.core import GeomError

ENOSPC = 28


def test_writing_a_large_malloc_md_fails_with_enospc_when_kmem_runs_out(boot, loader_conf):
    result = boot(physmem="64M", loader_conf=loader_conf('vm.kmem_size_min="1M"\nvm.kmem_size="2M"\n'))
    assert result.exit_code == 0
    startup = result.startup
    md = startup.geom.md
    unit = md.attach(0, 64 << 20, options=0x4)          # MD_MALLOC, MD_AUTOUNIT (no COMPRESS)
    cp = startup.geom.open(f"md{unit}", write=True)
    chunk = os.urandom(64 << 10)
    written = 0
    with pytest.raises(GeomError) as err:
        while written < (64 << 20):
            cp.write(written, chunk)
            written += len(chunk)
    assert err.value.errno == ENOSPC
    assert 0 < written < (4 << 20)                      # the 2 MiB arena (less its other users) ran out
    assert startup.sysctl.get("vm.kmem_map_size") >= startup.kmem.vm_kmem_size - (64 << 10)
    assert cp.read(0, len(chunk)) == chunk              # what was written is still there
    # the kernel is still up: another (compressing) md of zeros costs nothing
    zeros = md.attach(0, 64 << 20, options=0x4 | 0x10)  # MD_COMPRESS
    cp2 = startup.geom.open(f"md{zeros}", write=True)
    cp2.write(0, bytes(1 << 20))
    assert cp2.read(512, 512) == bytes(512)


def test_mdconfig_in_the_monitor(capsys):
    from tools.cli import main

    code = main(["boot", "--no-loader-conf", "--console", "/dev/null", "-x", "mdconfig -a -t malloc -s 16m",
                 "-x", "mdconfig -l -v",
                 "-x", "sysctl kern.geom.conftxt"])
    out = capsys.readouterr().out
    assert code == 0
    assert "md0\tmalloc\t   16M\t-" in out
    assert "0 MD md0 16777216 512 u 0 s 512 f 0 fs 0 l 16777216 t malloc" in out
