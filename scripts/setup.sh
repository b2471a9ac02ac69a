#!/usr/bin/env bash
# Create .venv and install the project with everything for development (idempotent: re-running
# is quick when pyproject.toml has not changed).
#   TORCH_SPEC   torch requirement installed first (default torch==2.13.0, the CPU build: on
#                Linux from PyTorch's CPU index, unless pip has an index or a wheel folder of
#                its own (PIP_INDEX_URL, PIP_FIND_LINKS, PIP_NO_INDEX, pip.conf), left to it;
#                e.g. TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124")
#   SKIP_TORCH=1 keep the torch already in the environment (Jetson / vendor builds): a new
#                $VENV then sees the system's packages, so JetPack's torch is used, not PyPI's
#   EXTRAS       project extras (default dev; a device needs only runtime or litert)
#   VENV         where the environment goes (default .venv)
#   PYTHON       the Python that creates $VENV (default python3; the project needs 3.10+)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
EXTRAS=${EXTRAS:-dev}
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  if [ "${SKIP_TORCH:-0}" = 1 ]; then
    "$PY" -m venv --system-site-packages "$VENV"
  else
    "$PY" -m venv "$VENV"
  fi
fi
# What setuptools (the build backend before hatchling) left in the checkout: Python started
# here (python -m sharpen, python -m pytest) read its stale metadata before the install's.
rm -rf image_sharpening_kd.egg-info
# pip's last words with the package index unreachable are "No matching distribution found for
# torch==2.13.0 (from versions: none)", as if the pin did not exist: say what, and the way on.
pip_install() {
  local rc=0
  "$VENV/bin/python" -m pip install -q "$@" || rc=$?
  [ "$rc" -eq 0 ] && return 0
  {
    echo "[setup] pip could not install $* (exit $rc; pip's messages above). 'from versions:"
    echo "[setup]   none' after 'Retrying ... connection' lines: the package index is unreachable."
    echo "[setup]   Offline: in a checkout where it is reachable (the same Python and platform)"
    [ "$wants_torch" != 1 ] || echo "[setup]     pip download -d DIR $TORCH_SPEC"
    # pip download keeps no build backend, and an editable install wants hatchling's editables.
    echo "[setup]     pip download -d DIR '.[$EXTRAS]' hatchling editables"
    echo "[setup]   then copy DIR here and rerun with"
    echo "[setup]   PIP_NO_INDEX=1 PIP_FIND_LINKS=DIR scripts/setup.sh"
  } >&2
  exit "$rc"
}
stamp="$VENV/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)-$EXTRAS"
if [ -f "$stamp" ]; then
  exit 0
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# PyPI's Linux torch wheels are the CUDA build (torch 2.13.0 brings cuda-toolkit 13, cuDNN and
# NCCL: GBs); PyTorch's CPU index serves the CPU one, and torch's own dependencies.
if [ -z "${TORCH_SPEC:-}" ]; then
  TORCH_SPEC=torch==2.13.0
  # Read whole first: grep -q quits at its match, and pip's SIGPIPE then failed the pipe.
  pip_conf=$("$VENV/bin/python" -m pip config list 2>/dev/null || true)
  if [ "$(uname -s)" = Linux ] \
      && ! grep -qE '\.(index-url|extra-index-url|find-links|no-index)=' <<<"$pip_conf"; then
    TORCH_SPEC="$TORCH_SPEC --index-url https://download.pytorch.org/whl/cpu"
  fi
fi
wants_torch=0
if [ "${SKIP_TORCH:-0}" != 1 ] && [ "$EXTRAS" != runtime ] && [ "$EXTRAS" != litert ]; then
  wants_torch=1
  echo "[setup] installing $TORCH_SPEC (first run only: a few minutes, ~200 MB download)"
  # Installed before the project so pip never resolves an unpinned torch (a multi-GB CUDA build).
  pip_install $TORCH_SPEC
fi
echo "[setup] installing image-sharpening-kd[$EXTRAS] (editable; first run only: 2-4 minutes for"
echo "[setup]   onnxruntime, TensorFlow (CPU; TFLite export), LiteRT, ModelOpt, scikit-image ...)"
pip_install -e ".[$EXTRAS]"
rm -f "$VENV"/.installed-*
touch "$stamp"
echo "[setup] ready: $VENV/bin/sharpen"
