#!/usr/bin/env bash
# Create .venv with the CPU build of torch first (an unpinned torch pulls a multi-GB CUDA
# build), then install paramcalc with the extras named in $1 (e.g. "test"). A second run with the
# same pyproject.toml, extras and checkout does nothing (a stamp in .venv records what was set
# up), so the test command neither reinstalls nor runs pip, which writes under $HOME.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
extras="${1:-}"
stamp=.venv/.paramcalc-setup
want="$(cat pyproject.toml; echo "extras=$extras torch=2.13.0 index=${TORCH_INDEX_URL:-} root=$PWD")"
want="$(printf '%s' "$want" | sha256sum | cut -d' ' -f1)"
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
.venv/bin/python -m pip install --quiet -e ".${extras:+[$extras]}"
echo "$want" > "$stamp"
