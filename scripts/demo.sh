#!/usr/bin/env bash
# Run the demo (worker.demo) in the repo's own .venv, bootstrapping it first.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m worker.demo "$@"
