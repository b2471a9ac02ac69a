#!/usr/bin/env bash
# The test command: set up .venv if needed, then run the test suite (tests/, in parallel with
# pytest-xdist, a worker per core up to 4) and then the benchmark suite in its quick (CI) mode,
# alone: its latency rows need the machine to themselves, and pytest-benchmark turns timing off
# under xdist. Both always run; the exit status is the first failure's (a suite where `-k`
# selects no test, pytest's 5, passes, and 5 is the status only where neither selects one).
# Extra arguments go to both pytest runs (e.g. `-x`, `-k name`); SHARPEN_TEST_WORKERS=1 runs
# tests/ one at a time.
# --dist loadfile: a test file's tests share one worker, so the module fixtures that run a
# whole demo, bench or export run once, not once per worker.
# The shipped students are gated on the fraction of the teacher's SSIM gain they recover, as in
# `sharpen demo` (sharpen/demo.py DEMO_MIN_SSIM_GAIN): they do not reach the default 0.95 SSIM
# ratio against the shipped teacher (README "Measured results" gives the fractions; 0.05 sits
# under the shipped `fast`'s and fails a student no better than its input).
# --calib-count 16: the INT8 calibration of the shipped students (ONNX Runtime percentile,
# ModelOpt entropy, TFLite) is most of the benchmark suite's time on a fresh cache, and linear
# in the crops; with 16 instead of `sharpen bench`'s 32 every artifact of both students still
# passes its parity gate with a margin (seed's ModelOpt QDQ SSIM 0.994 >= 0.98; with 8 it
# failed at 0.974, so not fewer).
# VENV (scripts/setup.sh's) names the environment both suites run in (default .venv).
# SHARPEN_TEST_TIMEOUT: seconds a test may take (pytest-timeout; default 1800, several times
# the whole suite's time) before it fails with its stack, rather than a hung one holding the
# job until the CI runner's own limit.
# SHARPEN_TEST_REPORTS=DIR: what CI collects, in DIR (made if missing; relative to where the
# script is started): tests.xml and benchmarks.xml (JUnit, each test's duration in it) and
# benchmarks.json (pytest-benchmark's timings). A --junitxml among the extra arguments is
# refused: both runs would write it, the benchmark suite's over the tests'.
set -euo pipefail
if [ "${1:-}" = --help ] || [ "${1:-}" = -h ]; then
  # Before setup.sh, which would install everything (minutes, GBs) to print a help text.
  echo "usage: scripts/test.sh [PYTEST_ARGS...]"
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 0
fi
reports=${SHARPEN_TEST_REPORTS:-}
[ -z "$reports" ] || reports=$(mkdir -p "$reports" && cd "$reports" && pwd)
cd "$(dirname "$0")/.."
for arg in "$@"; do
  case "$arg" in
    --junitxml|--junitxml=*|--junit-xml|--junit-xml=*)
      echo "scripts/test.sh: $arg would be written by both the tests and the benchmark suite," \
        "the second over the first; set SHARPEN_TEST_REPORTS=DIR instead" \
        "(DIR/tests.xml, DIR/benchmarks.xml, DIR/benchmarks.json)" >&2
      exit 2;;
  esac
done
scripts/setup.sh
VENV=${VENV:-.venv}
cores=$(nproc 2>/dev/null || echo 2)
workers=${SHARPEN_TEST_WORKERS:-$(( cores < 4 ? cores : 4 ))}
tests_out=() bench_out=()
if [ -n "$reports" ]; then
  tests_out=("--junitxml=$reports/tests.xml")
  bench_out=("--junitxml=$reports/benchmarks.xml" "--benchmark-json=$reports/benchmarks.json")
fi
rc=0
timeout=--timeout=${SHARPEN_TEST_TIMEOUT:-1800}
"$VENV/bin/python" -m pytest tests -q -p no:cacheprovider -n "$workers" --dist loadfile "$timeout" \
    ${tests_out[@]+"${tests_out[@]}"} "$@" || rc=$?
bench_rc=0
"$VENV/bin/python" -m pytest benchmarks -q -p no:cacheprovider --min-ssim-gain 0.05 \
    --calib-count 16 "$timeout" ${bench_out[@]+"${bench_out[@]}"} "$@" || bench_rc=$?
# 5 is pytest's "no tests collected": `-k name` selects from one of the two runs only.
if [ "$rc" -eq 5 ] && [ "$bench_rc" -eq 5 ]; then exit 5; fi
[ "$rc" -ne 5 ] || rc=0
[ "$bench_rc" -ne 5 ] || bench_rc=0
exit $(( rc != 0 ? rc : bench_rc ))
