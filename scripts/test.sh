#!/usr/bin/env bash
# Run the test suite in the repo's own .venv (bootstrapping it first). Extra args go to pytest;
# with none, pytest runs the testpaths from setup.cfg.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh --browser  # the browser tests drive Debian's chromium

if [ "$#" -eq 0 ]; then
    set -- tests  # testpaths in setup.cfg [tool:pytest]
fi

set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e

if [ "$rc" -eq 5 ]; then
    echo "test.sh: FAILED -- pytest collected no tests (exit code 5); refusing to report success" >&2
    exit 1
fi
exit "$rc"
