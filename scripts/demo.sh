#!/usr/bin/env bash
# The demo command: install what is needed, then start the Synapse emulator + local S3,
# seed a sample project and keep it running until Ctrl-C. Extra arguments go to `synfs demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/synfs demo "$@"
