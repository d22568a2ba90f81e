#!/usr/bin/env bash
# Set everything up and run the test suite (and the linter). This is what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
.venv/bin/python -m pytest "$@"
.venv/bin/ruff check paramcalc tests benchmarks
.venv/bin/ruff format --check paramcalc
.venv/bin/mypy
