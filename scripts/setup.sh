#!/usr/bin/env bash
# Create .venv and install armboard with its test extra, once; later calls return at once.
set -euo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$top/.venv"
stamp="$venv/.armboard-installed"
if [ -f "$stamp" ] && [ "$stamp" -nt "$top/pyproject.toml" ]; then
    exit 0
fi
python3 -m venv "$venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$top[test]" >&2
touch "$stamp"
