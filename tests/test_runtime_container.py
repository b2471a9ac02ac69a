"""The runtime in a locked-down container: no HOME (or one that cannot be written), a read-only
working folder, only the output folder writable (README: "Container / runtime-only install")."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from runtime_fixtures import REPO, onnx_model, write_video  # noqa: E402

__all__ = ["onnx_model"]


def _container_env(tmp_path) -> dict:
    """This environment as a container's: no HOME, and an XDG_CACHE_HOME below a file, which no
    user, root included, can make a folder in (a read-only home's stand-in)."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    env = {k: v for k, v in os.environ.items()
           if k not in ("HOME", "XDG_CACHE_HOME", "ORT_DISABLE_TELEMETRY", "SHARPEN_DEBUG")}
    env.update(XDG_CACHE_HOME=str(blocker / "cache"), PYTHONPATH=str(REPO))
    return env


def test_a_run_without_a_writable_home_shows_no_onnxruntime_telemetry_line(tmp_path,
                                                                          onnx_model):
    """ONNX Runtime 1.32 printed `[W:onnxruntime:Default, telemetry_1ds.cc:613 operator()]
    Failed to persist telemetry device ID` in yellow (escape codes in a log file) at the top of
    every `sharpen run` in a container, where its ~/.cache cannot be written: it read as the
    run's failure, though the run needs no such folder."""
    env = _container_env(tmp_path)
    bare = subprocess.run([sys.executable, "-c", "import onnxruntime"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert bare.returncode == 0, bare.stderr
    if "telemetry" not in bare.stderr:
        pytest.skip("this ONNX Runtime build says nothing of its telemetry without a cache "
                    "folder (no 1DS telemetry, or a version before 1.32)")
    video = tmp_path / "in.mp4"
    write_video(video, n=3)
    r = subprocess.run([sys.executable, "-m", "runtime.cli", "run", "--model", str(onnx_model),
                        "--source", str(video), "--out", str(tmp_path / "out.mp4")],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "telemetry" not in r.stderr and "\x1b[" not in r.stderr, r.stderr
    assert "done: 3 frames" in r.stderr, r.stderr
