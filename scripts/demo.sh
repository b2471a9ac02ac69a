#!/usr/bin/env bash
# The main job: set up .venv if needed, then run the end-to-end demo on the embedded default
# (labels -> distillation -> export with parity -> streaming -> benchmark report).
# Options go to `sharpen demo` (see `.venv/bin/sharpen demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/sharpen demo "$@"
