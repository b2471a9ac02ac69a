"""The runtime in a locked-down container: no HOME (or one that cannot be written), a read-only
working folder, only the output folder writable (README: "Container / runtime-only install")."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def _trt_options(cache_root):
    from runtime.backends.onnxruntime_backend import trt_provider_options
    return trt_provider_options(cache_root, "c" * 64, "input", 8, int8=False)


def test_a_tensorrt_cache_that_cannot_be_made_is_said_with_the_variable_that_moves_it(tmp_path):
    """ORT's TensorRT provider went on without its engine cache where the folder could not be
    made (a container's read-only home), without a word: every start then built the engine
    again, minutes on a Jetson, and nothing said why or how to keep it."""
    from runtime import SharpenWarning
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.warns(SharpenWarning) as said:
        opts = _trt_options(blocker / "trt")
    assert "trt_engine_cache_path" not in opts and opts["trt_profile_min_shapes"]
    (line,) = [str(w.message) for w in said]
    assert f"cannot make {blocker / 'trt' / ('c' * 16)}" in line, line
    assert "every start builds it again" in line and "SHARPEN_TRT_CACHE" in line, line
    opts = _trt_options(tmp_path / "trt")   # a folder that can be made: cached, as before
    assert opts["trt_engine_cache_path"] == str(tmp_path / "trt" / ("c" * 16))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork (POSIX)")
def test_a_user_without_a_home_gets_the_cache_variable_named(tmp_path):
    """`docker run --user 1234` with no HOME: a user id without an /etc/passwd entry, for which
    Path.home() raised RuntimeError("Could not determine home directory."), named neither the
    cache nor XDG_CACHE_HOME. Root becomes such a user in a child; others cannot."""
    import json
    import pwd
    if os.geteuid() != 0:
        pytest.skip("becoming a user without a passwd entry needs root")
    uid = next(u for u in range(54321, 60000) if not _has_passwd_entry(pwd, u))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: reports through the pipe, never returns into pytest
        said = {}
        try:
            from runtime.cache import cache_dir
            os.environ.pop("HOME", None)
            os.environ.pop("XDG_CACHE_HOME", None)
            os.setgid(uid)
            os.setuid(uid)
            try:
                said["path"] = str(cache_dir("trt"))
            except Exception as e:  # noqa: BLE001 - reported to the test
                said["error"] = f"{type(e).__name__}: {e}"
        except PermissionError:   # root of a container without CAP_SETUID
            said["skip"] = True
        os.write(w, json.dumps(said).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        said = json.loads(f.read() or "{}")
    os.waitpid(pid, 0)
    if said.get("skip"):
        pytest.skip("root here cannot become another user")
    assert said.get("error", "").startswith("OSError: no folder for sharpen's trt cache: HOME "
                                            f"is not set and user id {uid} has no "
                                            "home directory"), said
    assert "XDG_CACHE_HOME" in said["error"], said


def _has_passwd_entry(pwd, uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def test_a_container_run_writes_only_into_its_out_folder(tmp_path, onnx_model):
    """README "Container / runtime-only install": with no HOME, a working folder that cannot be
    written (/proc, even for root) and the model and source in folders of their own, a run and
    a stream stopped as `docker stop` stops it leave those folders as they were, writing only
    into the folder of --out and --stats."""
    import shutil
    import signal
    import time
    env = _container_env(tmp_path)
    models, data, out = tmp_path / "models", tmp_path / "data", tmp_path / "out"
    for d in (models, data, out):
        d.mkdir()
    model = shutil.copy(onnx_model, models / "student.onnx")
    write_video(data / "in.mp4", n=4)
    before = {p: sorted(os.listdir(p)) for p in (models, data)}
    argv = [sys.executable, "-m", "runtime.cli", "run", "--model", str(model), "--source",
            str(data / "in.mp4"), "--out", str(out / "in.mp4"), "--stats", str(out / "s.json")]
    r = subprocess.run(argv, env=env, cwd="/proc", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == ["in.mp4", "s.json"]
    # `docker stop`: SIGTERM, which the run takes as a clean stop (exit 143, 128 + 15).
    # As a container's PID 1 where root can make one (SIGTERM then has no default action: only
    # a handler stops it), else as any process.
    pid1 = os.geteuid() == 0 and shutil.which("unshare") is not None
    live = subprocess.Popen([*(["unshare", "--pid", "--fork"] if pid1 else []), *argv[:6],
                             "--source", "synthetic:64x48@20", "--out", str(out / "live.ts")],
                            env=env, cwd="/proc", stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    target = live.pid
    if pid1:   # the command is unshare's child; unshare exits with its status
        children = Path(f"/proc/{live.pid}/task/{live.pid}/children").read_text().split()
        assert len(children) == 1, children
        target = int(children[0])
    os.kill(target, signal.SIGTERM)
    _, err = live.communicate(timeout=60)
    assert live.returncode == 143, err
    assert "output closed cleanly" in err, err
    assert {p: sorted(os.listdir(p)) for p in (models, data)} == before
    assert (out / "live.ts").stat().st_size > 0
