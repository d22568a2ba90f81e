#!/usr/bin/env bash
# Set everything up and run every check: the test suite, ruff (lint and format) and mypy. Each
# runs even when an earlier one failed; a summary lists them all, and the exit status is non-zero
# when any failed. This is what CI runs. Arguments go to pytest (e.g. -m "not slow and not gpu").
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test || { echo "test.sh: setup failed" >&2; exit 2; }

failed=()
summary=()
check() {
    local name="$1"
    shift
    echo "== $name: $*"
    if "$@"; then
        summary+=("ok      $name")
    else
        summary+=("FAILED  $name (exit $?)")
        failed+=("$name")
    fi
}

check pytest .venv/bin/python -m pytest "$@"
check "ruff check" .venv/bin/ruff check paramcalc tests benchmarks
check "ruff format" .venv/bin/ruff format --check paramcalc
check mypy .venv/bin/mypy

echo "== summary"
printf '  %s\n' "${summary[@]}"
if ((${#failed[@]})); then
    echo "test.sh: ${#failed[@]} of ${#summary[@]} checks failed: ${failed[*]}" >&2
    exit 1
fi
echo "test.sh: all ${#summary[@]} checks passed"
