#!/usr/bin/env bash
# Create .venv and install armboard with its test extra, once; later calls return at once.
set -euo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$top/.venv"
stamp="$venv/.armboard-installed"
if [ -f "$stamp" ] && [ "$stamp" -nt "$top/pyproject.toml" ] && [ "$stamp" -nt "$top/scripts/setup.sh" ]; then
    exit 0
fi
python3 -m venv "$venv" >&2
# compat mode: a plain path entry; the default import hook costs ~20 ms on every start
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$top[test]" \
    --config-settings editable_mode=compat >&2
# byte-compile now: with PYTHONDONTWRITEBYTECODE set, every start would compile from source
"$venv/bin/python" -m compileall -q "$top/board" "$top/kernel_sim" "$top/tools" >/dev/null
touch "$stamp"
