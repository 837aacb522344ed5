#!/usr/bin/env bash
# Create .venv and install armboard with its test and dask extras, once; later calls return at once.
# Output: one progress line on stderr; pip's own output goes to .venv/setup.log and is shown only
# when a step fails (the machine's pip configuration may warn about index locations it lacks).
set -euo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$top/.venv"
stamp="$venv/.armboard-installed"
if [ -f "$stamp" ] && [ "$stamp" -nt "$top/pyproject.toml" ] && [ "$stamp" -nt "$top/scripts/setup.sh" ]; then
    exit 0
fi
echo "armboard: setting up $venv (first run; log in $venv/setup.log)" >&2
log="$(mktemp)"
step() {
    if ! "$@" >>"$log" 2>&1; then
        echo "armboard: set-up failed: $*" >&2
        cat "$log" >&2
        exit 1
    fi
}
step python3 -m venv "$venv"
# compat mode: a plain path entry; the default import hook costs ~20 ms on every start
step "$venv/bin/python" -m pip install --disable-pip-version-check -e "$top[test,dask]" \
    --config-settings editable_mode=compat
# byte-compile now: with PYTHONDONTWRITEBYTECODE set, every start would compile from source
step "$venv/bin/python" -m compileall -q "$top/board" "$top/kernel_sim" "$top/tools"
mv "$log" "$venv/setup.log"
touch "$stamp"
