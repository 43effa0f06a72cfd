#!/usr/bin/env bash
# The test command: install what is needed (scripts/setup.sh --test), then run the whole suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k sts -x
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
exec .venv/bin/python -m pytest -q -ra "$@"
