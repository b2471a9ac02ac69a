"""`sharpen run` as an always-on service (systemd, Restart=always, stderr to the journal): the
exit codes a supervisor acts on, and what the run writes to a log that is not a terminal."""
from __future__ import annotations

import contextlib
import http.server
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Iterator

import cv2
import pytest

from runtime.sinks import fourcc_for
from tests.runtime_fixtures import cli_module, make_onnx_model, textured_frame


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_onnx_model(tmp_path_factory.mktemp("models") / "student.onnx")


def _sharpen_run(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real command line, stderr a pipe as under a service manager (not a terminal)."""
    return subprocess.run([sys.executable, "-m", cli_module(), "run", *argv],
                          cwd=tempfile.gettempdir(), capture_output=True, text=True,
                          timeout=timeout)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _camera_stream(folder: Path, frames: int) -> Iterator[str]:
    """The URL of an MPEG-TS served without a length (chunked), as an IP camera's relay serves
    one: read live, its end is the camera dropping off."""
    video = folder / "cam.ts"
    h, w = textured_frame(0).shape[:2]
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*fourcc_for(video)), 10, (w, h))
    for i in range(frames):
        vw.write(textured_frame(i % 16, seed=i))
    vw.release()
    data = video.read_bytes()

    class Camera(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"   # chunked transfer needs it

        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(data), 4096):
                chunk = data[i:i + 4096]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Camera)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cam.ts"
    finally:
        server.shutdown()
        server.server_close()


def test_a_config_error_exits_2_and_a_camera_not_there_or_lost_exits_3(model, tmp_path):
    """A camera unplugged, unreachable or gone part-way exited 2, as a misspelt --model or
    --source did: a unit file's RestartPreventExitStatus=2, which stops a crash loop on a
    configuration error, also stopped the service for good when the camera dropped off (a
    reboot of the camera, a loose cable), and `Restart=` could not tell them apart."""
    out = str(tmp_path / "rec" / "cam.ts")
    config_errors = {
        "--model": ["--model", str(tmp_path / "nothere.onnx"), "--source", "synthetic:32x24",
                    "--max-frames", "2"],
        "--fps": ["--model", str(model), "--source", "synthetic:32x24", "--fps", "-1"],
        "--source": ["--model", str(model), "--source", str(tmp_path / "nothere.mp4")],
        "argparse": ["--model", str(model), "--source", "0", "--reconect", "3"],
    }
    for what, argv in config_errors.items():
        r = _sharpen_run(*argv, "--out", out, "--quiet")
        assert r.returncode == 2 and "error:" in r.stderr, (what, r.returncode, r.stderr)
    not_there = {
        "/dev/video99": "camera device not found: /dev/video99",
        f"http://127.0.0.1:{_closed_port()}/cam.mjpg": "cannot open stream source",
    }
    for source, said in not_there.items():
        r = _sharpen_run("--model", str(model), "--source", source, "--timeout", "5",
                         "--out", out, "--quiet")
        assert r.returncode == 3 and said in r.stderr, (source, r.returncode, r.stderr)
    with _camera_stream(tmp_path, 30) as url:
        r = _sharpen_run("--model", str(model), "--source", url, "--live", "--reconnect", "0",
                         "--out", out, "--quiet")
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert "stopped after 30 frames in all (reconnecting is off: --reconnect 0)" in r.stderr
    assert f"sharpen run: {out} holds the " in r.stderr, r.stderr   # kept, closed cleanly
