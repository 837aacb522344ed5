"""The option-value tokenizer without `re` (loaded on every boot) reads C constants as the regular
expressions it replaced did: the old patterns are the oracle here."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from kernel_sim.loader.options import _c_tokens, _strip_c_suffix

_OLD_SUFFIX = re.compile(r"(?:[uU](?:ll|LL|l|L)?|(?:ll|LL|l|L)[uU]?)$")
_OLD_TOKEN = re.compile(r"\s*(?:([0-9][0-9A-Za-z_]*)|([()*])|(\S))")

literals = st.from_regex(r"[0-9][0-9a-fA-FxX]{0,6}[uUlL]{0,3}", fullmatch=True)


@given(literals)
def test_suffix_stripping_matches_the_old_pattern_where_the_rest_is_a_number(literal):
    old = _OLD_SUFFIX.sub("", literal) or literal
    new = _strip_c_suffix(literal)
    if old != new:      # both leave a suffix letter in the digits, which parse_int then refuses
        assert any(c in "uUlL" for c in old) and any(c in "uUlL" for c in new)


@given(st.text(alphabet="0123456789xXaAfFuUlL_()* \t+-/", max_size=24))
def test_tokens_match_the_old_pattern(body):
    old = []
    for m in _OLD_TOKEN.finditer(body):
        if m.group(3) is not None:
            old = None
            break
        old.append(("num", m.group(1)) if m.group(1) is not None else ("op", m.group(2)))
    assert _c_tokens(body) == old
