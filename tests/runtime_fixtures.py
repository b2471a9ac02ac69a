"""Shared helpers for the runtime tests: a tiny sharpening ONNX model and blurred test media.

The model is a fixed depthwise unsharp-mask convolution built with the `onnx` helper API, so it
really sharpens (tests can check the Laplacian variance) and builds in milliseconds.
"""
from __future__ import annotations

import contextlib
import http.server
import os
import re
import select
import shutil
import struct
import subprocess
import tempfile
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Iterator, Optional

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
FRAME_H, FRAME_W = 64, 96
BAND = 16          # rows at the top holding the frame index as a flat grey level
LEVEL0, STEP = 20, 14  # up to 16 frames: levels 20..230


def drain(fd: int) -> bytes:
    """All a terminal's other end (`fd`, an openpty master) has been sent: one read gives only
    what had arrived by then."""
    got = b""
    while select.select([fd], [], [], 0.2)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:   # the terminal's other end is closed: all read
            break
        if not chunk:
            break
        got += chunk
    return got


def unsharp_kernel(amount: float = 1.5) -> np.ndarray:
    g = cv2.getGaussianKernel(3, 0.8)
    blur = (g @ g.T).astype(np.float32)
    ident = np.zeros((3, 3), np.float32)
    ident[1, 1] = 1.0
    return (1 + amount) * ident - amount * blur


def make_onnx_model(path: Path, kind: str = "fp32", multiple: int = 8) -> Path:
    """NCHW depthwise unsharp-mask model with dynamic batch/height/width.

    kind: fp32; int8 (QuantizeLinear/DequantizeLinear on the input); fp16 (float16 I/O)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    k = unsharp_kernel()
    w = np.stack([k[None]] * 3).astype(np.float32)  # [3,1,3,3], group=3
    io_type = TensorProto.FLOAT16 if kind == "fp16" else TensorProto.FLOAT
    nodes, inits = [], [numpy_helper.from_array(w, "w")]
    x = "input"
    if kind == "fp16":
        nodes.append(helper.make_node("Cast", [x], ["x32"], to=TensorProto.FLOAT))
        x = "x32"
    if kind == "int8":
        inits += [numpy_helper.from_array(np.array(1 / 255, np.float32), "s"),
                  numpy_helper.from_array(np.array(0, np.uint8), "zp")]
        nodes += [helper.make_node("QuantizeLinear", [x, "s", "zp"], ["q"]),
                  helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["dq"])]
        x = "dq"
    conv_out = "y32" if kind == "fp16" else "output"
    nodes.append(helper.make_node("Conv", [x, "w"], [conv_out], group=3, pads=[1, 1, 1, 1],
                                  kernel_shape=[3, 3]))
    if kind == "fp16":
        nodes.append(helper.make_node("Cast", ["y32"], ["output"], to=TensorProto.FLOAT16))
    dims = ["batch", 3, "height", "width"]
    graph = helper.make_graph(nodes, "unsharp",
                              [helper.make_tensor_value_info("input", io_type, dims)],
                              [helper.make_tensor_value_info("output", io_type, dims)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if multiple is not None:
        helper.set_model_props(model, {"multiple": str(multiple)})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory) -> Path:
    return make_onnx_model(tmp_path_factory.mktemp("models") / "student.onnx")


def one_op_model(path: Path, op: str, inputs: list[str], consts: dict[str, np.ndarray],
                 same_shape: bool = True, **attrs) -> Path:
    """An ONNX model of one operator on "input" (NCHW, dynamic) and constants: a broken or
    size-changing "model" for error paths. `same_shape` False leaves the output shape open.
    It records a size multiple, as an export does: not a foreign model (test_foreign_onnx)."""
    import onnx
    from onnx import helper, numpy_helper

    dims = ["batch", 3, "height", "width"]
    node = helper.make_node(op, inputs, ["output"], **attrs)
    graph = helper.make_graph(
        [node], op.lower(), [helper.make_tensor_value_info("input", 1, dims)],
        [helper.make_tensor_value_info("output", 1, dims if same_shape else None)],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"multiple": "8"})
    onnx.save(model, str(path))
    return path


def resize_model(path: Path, scale: float) -> Path:
    """An ONNX model that scales its input by `scale` (an up- or downscaler, not a sharpener)."""
    return one_op_model(path, "Resize", ["input", "", "scales"],
                        {"scales": [1, 1, scale, scale]}, same_shape=False, mode="nearest")


@contextlib.contextmanager
def runtime_warnings() -> Iterator[list[str]]:
    """The messages of every SharpenWarning the block issues (filled in when it ends): the
    runtime warns through `warnings`, which the command line alone turns into stderr lines."""
    from runtime.warn import SharpenWarning
    said: list[str] = []
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        yield said
    said += [str(w.message) for w in rec if issubclass(w.category, SharpenWarning)]


def textured_frame(idx: int, h: int = FRAME_H, w: int = FRAME_W, seed: int = 0) -> np.ndarray:
    """Blurred random texture with the frame index encoded as the grey level of the top band."""
    rng = np.random.default_rng(seed + idx)
    tex = rng.integers(40, 216, size=(h // 4, w // 4, 3), dtype=np.uint8)
    tex = cv2.resize(tex, (w, h), interpolation=cv2.INTER_NEAREST)
    img = cv2.GaussianBlur(tex, (0, 0), 1.5)
    img[:BAND] = LEVEL0 + STEP * idx
    return img


def write_video(path: Path, n: int = 12, fps: float = 10.0) -> list[np.ndarray]:
    frames = [textured_frame(i) for i in range(n)]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (FRAME_W, FRAME_H))
    assert vw.isOpened()
    for f in frames:
        vw.write(f)
    vw.release()
    return frames


def read_video(path: Path) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"cannot open {path}"
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames, fps


def band_level(frame: np.ndarray) -> float:
    """Grey level of the top band (inner part, away from the edge where the filter rings)."""
    return float(frame[2:BAND - 3, 4:-4].mean())


def band_index(frame: np.ndarray) -> int:
    """Frame index of an image that went through no lossy codec (images, direct arrays)."""
    return int(round((band_level(frame) - LEVEL0) / STEP))


def assert_in_order(frames: list[np.ndarray], n: int) -> None:
    """Frames 0..n-1, each exactly once, in order. mp4v shifts grey levels by a few units per
    encode, so instead of absolute levels this checks that consecutive frames step up by one
    index (STEP), which any drop, duplicate or swap breaks."""
    assert len(frames) == n
    steps = np.diff([band_level(f) for f in frames]) / STEP
    assert np.all(np.abs(steps - 1) < 0.35), f"frame order broken: level steps {np.round(steps, 2)}"
    assert abs(band_level(frames[0]) - LEVEL0) < STEP / 2, "first frame is not frame 0"


def lap_var(frame: np.ndarray) -> float:
    g = cv2.cvtColor(frame[BAND + 2:], cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(g, cv2.CV_64F).var())


# A live line in a log (stderr no terminal): dated, and the source named before its counts,
# `2026-12-07 17:25:56 yard.mp4: 40/60 frames  24.8 fps ...`.
LOG_LIVE_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (?:.*?: )?(\d+(?:/\d+)? frames?  .*)$",
                           re.M)


def live_lines(err: str) -> list[str]:
    """`sharpen run`'s live lines in a log, their date and source name off."""
    return LOG_LIVE_LINE.findall(err)


def run_cli(argv: list[str]) -> int:
    """`sharpen ...` in-process: sharpen.cli when the full CLI can be built (distill.cli exists),
    else runtime.cli alone (same `run` parser)."""
    if (REPO / "distill" / "cli.py").exists():
        from sharpen.cli import main
    else:
        from runtime.cli import main
    return main(argv)


def cli_module() -> str:
    return "sharpen.cli" if (REPO / "distill" / "cli.py").exists() else "runtime.cli"


def run_cli_subprocess(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    # Outside the checkout, so the installed project is what runs.
    return subprocess.run([sys.executable, "-m", cli_module(), *argv],
                          cwd=tempfile.gettempdir(), capture_output=True, text=True,
                          timeout=timeout)


@contextlib.contextmanager
def reaped(proc: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """`proc`, killed and waited for if it still runs when the block ends: a test that fails
    part way leaves no run behind it. (Popen's own `with` waits, which hangs on a stuck child.)"""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def ctrl_c_while_copying(model: Path, source: Path, out: Path, ffmpeg: Path, copying: Path,
                         terminal: bool = False) -> tuple[int, str]:
    """`sharpen run --quiet` of `source` into `out` in a child (in `out`'s folder) whose ffmpeg
    is the stand-in `ffmpeg`, which touches `copying` as it starts to hang; then three Ctrl-Cs
    half a second apart (the first asks to stop, the second is told what one more does), to
    the child or, `terminal`, to its whole process group as a terminal sends them. Its exit
    code and stderr."""
    import os
    import signal

    child = subprocess.Popen([sys.executable, "-m", cli_module(), "run", "--model", str(model),
                              "--source", str(source), "--out", str(out), "--quiet"],
                             env={**os.environ, "SHARPEN_FFMPEG": str(ffmpeg)}, cwd=out.parent,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    with reaped(child):
        deadline = time.monotonic() + 60
        while not copying.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert copying.exists(), child.communicate(timeout=10)[1]
        for _ in range(3):
            if terminal:
                os.killpg(child.pid, signal.SIGINT)
            else:
                child.send_signal(signal.SIGINT)
            time.sleep(0.5)
        err = child.communicate(timeout=30)[1]
    return child.returncode, err


def damaged_video(video: Path) -> Path:
    """30 frames of noise in an MPEG-4 .mp4, a sixth of the file zeroed a third of the way in:
    a few frames in the middle fail to decode, the rest do."""
    rng = np.random.default_rng(0)
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"mp4v"), 10, (32, 24))
    for _ in range(30):
        vw.write((rng.random((24, 32, 3)) * 255).astype(np.uint8))
    vw.release()
    data = bytearray(video.read_bytes())
    n = len(data)
    data[n // 3:n // 3 + n // 6] = bytes(n // 6)
    video.write_bytes(bytes(data))
    return video


def find_ffmpeg() -> Optional[str]:
    """An ffmpeg to make test clips with: the one on PATH, else the dev extra's static build."""
    if found := shutil.which("ffmpeg"):
        return found
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return None


def ffmpeg_or_skip(purpose: str) -> str:
    """find_ffmpeg(), or skip the test saying what it needed ffmpeg for."""
    exe = find_ffmpeg()
    if exe is None:
        pytest.skip(f"no ffmpeg to {purpose}: none on PATH and imageio-ffmpeg is not "
                    "installed (pip install -e '.[dev]')")
    return exe


@contextlib.contextmanager
def camera_stream(folder: Path, frames: int, once: bool = False) -> Iterator[str]:
    """The URL of an MPEG-TS served without a length (chunked), as an IP camera's relay serves
    one: read live, its end is the camera dropping off. Served at its rate (10 fps), as a
    camera gives it: sent at once, the loss at its end could come before the first frame was
    written on a busy machine (a live run stops at once, the queued frames unwritten).
    `once`: not there again after it drops off, each later request refused, as a camera
    rebooting."""
    from runtime.video_sink import fourcc_for

    video = folder / "cam.ts"
    h, w = textured_frame(0).shape[:2]
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*fourcc_for(video)), 10, (w, h))
    for i in range(frames):
        vw.write(textured_frame(i % 16, seed=i))
    vw.release()
    data = video.read_bytes()
    served = threading.Event()

    class Camera(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"   # chunked transfer needs it

        def log_message(self, *args):
            pass

        def do_GET(self):
            if once and served.is_set():
                self.send_error(503)
                return
            served.set()
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(data), 4096):
                chunk = data[i:i + 4096]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                time.sleep(frames / 10 * len(chunk) / len(data))
            self.wfile.write(b"0\r\n\r\n")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Camera)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cam.ts"
    finally:
        server.shutdown()
        server.server_close()


def with_stts(clip: Path, entries: list[tuple[int, int]], out: Path, strict: bool = True
              ) -> Path:
    """`clip` (an MP4 OpenCV wrote) with its video track's sample table of times (stts)
    replaced by `entries` ((count, delta) pairs), the boxes holding it resized to match: a
    variable-rate clip, or a damaged one, without ffmpeg. Frames past the clip's length (its
    edit list's) are not read: `strict`, the entries must keep it."""
    data = bytearray(clip.read_bytes())
    at = data.find(b"stts") - 4
    old = struct.unpack(">I", data[at:at + 4])[0]
    if strict:
        n, = struct.unpack(">I", data[at + 12:at + 16])
        was = np.frombuffer(bytes(data[at + 16:at + 16 + 8 * n]), ">u4").reshape(n, 2)
        assert sum(c * d for c, d in entries) == int((was[:, 0] * was[:, 1]).sum()), entries
    body = struct.pack(">II", 0, len(entries)) + b"".join(struct.pack(">II", *e)
                                                          for e in entries)
    new = struct.pack(">I", 8 + len(body)) + b"stts" + body
    for name in (b"moov", b"trak", b"mdia", b"minf", b"stbl"):
        # moov is after mdat in OpenCV's files: no chunk offset moves
        head = data.rfind(name, 0, at) - 4
        size = struct.unpack(">I", data[head:head + 4])[0]
        struct.pack_into(">I", data, head, size + len(new) - old)
    data[at:at + old] = new
    out.write_bytes(data)
    return out


def table_rows(text: str) -> list[list[str]]:
    """The rows of the tables `print_table` wrote to a log in `text`, header rows included:
    each line of two or more cells two or more spaces apart (a title or legend line has one)."""
    rows = [re.split(r" {2,}", line.strip()) for line in text.splitlines()]
    return [r for r in rows if len(r) > 1]
