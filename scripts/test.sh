#!/usr/bin/env bash
# The test command: set up .venv if needed, then run the test suite and the benchmark suite in
# its reduced (CI) mode. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest tests benchmarks -q -p no:cacheprovider "$@"
