#!/usr/bin/env bash
# Run the test suite in the repo's own .venv (bootstrapping it first).
# With no arguments: the CPU-heavy accelerated simulations (marker `serial`) run alone first, then every
# other test on two workers (pytest-xdist). With arguments, one plain pytest run gets them (a file, a -k
# expression, or `-m slow` for the long soak runs).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh --browser  # the browser tests drive Debian's chromium

run() {
    local rc=0
    .venv/bin/python -m pytest -q -p no:cacheprovider "$@" || rc=$?
    if [ "$rc" -eq 5 ]; then
        echo "test.sh: FAILED -- pytest collected no tests (exit code 5); refusing to report success" >&2
        return 1
    fi
    return "$rc"
}

if [ "$#" -eq 0 ]; then
    rc=0
    run -m "serial and not slow" tests || rc=$?
    run -n 2 --dist loadfile -m "not serial and not slow" tests || rc=$?  # a file stays on one worker: its module fixtures start once
    exit "$rc"
fi
run "$@"
