"""`sharpen run --source - --out -`: Y4M video through real pipes, between real ffmpeg
processes, as a stage of a Unix pipeline (ffmpeg | sharpen run | ffmpeg/ffplay)."""
from __future__ import annotations

import io
import json
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime_fixtures import (FRAME_H, FRAME_W, assert_in_order, cli_module, ffmpeg_or_skip,
                              lap_var, onnx_model, read_video, reaped, write_video)
from runtime.sources import SourceError, open_source
from runtime.y4m import Y4MError, Y4MReader, Y4MWriter

__all__ = ["onnx_model"]  # the fixture is used by name

SHARPEN = [sys.executable, "-m", cli_module(), "run"]
# ffmpeg's conversion of a Y4M to BGR with no filtering of its own: the chroma repeated, as
# this reader does, and exact rounding.
EXACT = ["-sws_flags", "neighbor+accurate_rnd+full_chroma_int"]


def _ffmpeg_y4m(ffmpeg: str, args: list[str], pix_fmt: str = "yuv420p") -> bytes:
    done = subprocess.run([ffmpeg, "-loglevel", "error", *args, "-pix_fmt", pix_fmt,
                           "-strict", "-1", "-f", "yuv4mpegpipe", "-"],
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def _testsrc(ffmpeg: str, pix_fmt: str, n: int = 3, size: str = "96x64") -> bytes:
    return _ffmpeg_y4m(ffmpeg, ["-f", "lavfi", "-i", f"testsrc=size={size}:rate=30000/1001",
                                "-frames:v", str(n)], pix_fmt)


def _ffmpeg_bgr(ffmpeg: str, y4m: bytes, w: int, h: int) -> np.ndarray:
    done = subprocess.run([ffmpeg, "-loglevel", "error", "-f", "yuv4mpegpipe", "-i", "-",
                           *EXACT, "-f", "rawvideo", "-pix_fmt", "bgr24", "-"],
                          input=y4m, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    return np.frombuffer(done.stdout, np.uint8).reshape(-1, h, w, 3)


def _read_all(data: bytes) -> tuple[Y4MReader, list[np.ndarray]]:
    reader = Y4MReader(io.BytesIO(data))
    frames = []
    while (f := reader.read()) is not None:
        frames.append(f)
    return reader, frames


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv444p", "yuv422p", "gray", "yuvj420p"])
def test_y4m_frames_read_as_ffmpeg_converts_them(pix_fmt):
    ffmpeg = ffmpeg_or_skip("make Y4M test clips")
    y4m = _testsrc(ffmpeg, pix_fmt)
    reader, frames = _read_all(y4m)
    assert (reader.header.width, reader.header.height) == (96, 64)
    assert reader.header.fps == pytest.approx(30000 / 1001)
    assert reader.header.full_range == (pix_fmt in ("gray", "yuvj420p"))
    ref = _ffmpeg_bgr(ffmpeg, y4m, 96, 64)
    assert len(frames) == len(ref) == 3
    diff = np.abs(np.stack(frames).astype(int) - ref)
    assert diff.max() <= 2 and diff.mean() < 0.5, (pix_fmt, diff.max(), diff.mean())


@pytest.mark.parametrize("chroma,pix_fmt", [("420jpeg", "yuv420p"), ("444", "yuv444p")])
def test_y4m_frames_written_as_ffmpeg_converts_them(chroma, pix_fmt):
    ffmpeg = ffmpeg_or_skip("convert a test frame")
    done = subprocess.run([ffmpeg, "-loglevel", "error", "-f", "lavfi", "-i",
                           "testsrc=size=96x64", "-frames:v", "1", "-f", "rawvideo", "-pix_fmt",
                           "bgr24", "-"], capture_output=True, timeout=60)
    bgr = np.frombuffer(done.stdout, np.uint8).reshape(64, 96, 3)
    out = io.BytesIO()
    Y4MWriter(out.write, 30000 / 1001, chroma).write(bgr)
    ours = out.getvalue()
    theirs = subprocess.run(
        [ffmpeg, "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", "96x64",
         "-i", "-", "-sws_flags", "accurate_rnd", "-pix_fmt", pix_fmt, "-f", "yuv4mpegpipe",
         "-"], input=bgr.tobytes(), capture_output=True, timeout=60).stdout
    y_ours = np.frombuffer(ours.split(b"FRAME\n")[1], np.uint8)[:96 * 64].astype(int)
    y_theirs = np.frombuffer(theirs.split(b"FRAME\n")[1], np.uint8)[:96 * 64].astype(int)
    assert np.abs(y_ours - y_theirs).max() <= 1
    assert ours.split(b"\n")[0].startswith(b"YUV4MPEG2 W96 H64 F30000:1001 ")
    # ffmpeg reads it back: the same size and rate, colours within chroma subsampling's loss
    back = _ffmpeg_bgr(ffmpeg, ours, 96, 64)
    assert back.shape == (1, 64, 96, 3)
    assert np.abs(back[0].astype(int) - bgr).mean() < (1 if chroma == "444" else 6)


@pytest.mark.parametrize("chroma", ["420jpeg", "444"])
def test_y4m_odd_sizes_round_trip(chroma):
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(30, 220, (7, 9, 3), dtype=np.uint8), (97, 63),
                     interpolation=cv2.INTER_NEAREST)
    out = io.BytesIO()
    writer = Y4MWriter(out.write, 25, chroma)
    writer.write(img)
    writer.write(img)
    reader, frames = _read_all(out.getvalue())
    assert len(frames) == 2 and frames[0].shape == (63, 97, 3)
    assert reader.truncated == 0
    # Flat 11x9 blocks: off only where a 2x2 chroma sample straddles two of them
    err = np.abs(frames[1].astype(int) - img)
    assert np.median(err) <= 2


def test_not_y4m_is_named_with_the_ffmpeg_line(tmp_path):
    video = tmp_path / "clip.mp4"
    write_video(video, n=3)
    with pytest.raises(Y4MError, match=r"MP4.*ffmpeg -i INPUT -f yuv4mpegpipe -pix_fmt yuv420p"):
        Y4MReader(io.BytesIO(video.read_bytes()), "stdin")
    with pytest.raises(Y4MError, match="is empty"):
        Y4MReader(io.BytesIO(b""), "stdin")
    with pytest.raises(Y4MError, match=r"C420p10.*-pix_fmt yuv420p"):
        Y4MReader(io.BytesIO(b"YUV4MPEG2 W4 H4 F25:1 C420p10\nFRAME\n"), "stdin")


def _clip_y4m(tmp_path: Path, n: int = 12) -> tuple[bytes, list[np.ndarray]]:
    ffmpeg = ffmpeg_or_skip("pipe a clip in as Y4M")
    video = tmp_path / "clip.mp4"
    write_video(video, n=n)
    frames, _ = read_video(video)
    return _ffmpeg_y4m(ffmpeg, ["-i", str(video)]), frames


def test_pipeline_ffmpeg_to_sharpen_to_ffmpeg(tmp_path, onnx_model):
    """ffmpeg -i clip.mp4 -f yuv4mpegpipe - | sharpen run --source - --out - | ffmpeg ...:
    stdout holds the video and nothing else, every frame in order, sharpened."""
    ffmpeg = ffmpeg_or_skip("run the pipeline")
    y4m, frames = _clip_y4m(tmp_path)
    run = subprocess.run([*SHARPEN, "--model", str(onnx_model), "--source", "-", "--out", "-"],
                         input=y4m, capture_output=True, timeout=120,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr.decode()
    assert b"done: 12 frames" in run.stderr   # the summary goes to stderr
    reader, out = _read_all(run.stdout)   # raises on anything but Y4M frames
    assert reader.truncated == 0 and len(out) == 12
    assert (reader.header.width, reader.header.height, reader.header.fps) == \
        (FRAME_W, FRAME_H, 10.0)
    assert_in_order(out, 12)
    assert np.mean([lap_var(f) for f in out]) > 1.5 * np.mean([lap_var(f) for f in frames])
    # and ffmpeg encodes it as it comes
    mp4 = tmp_path / "out.mp4"
    enc = subprocess.run([ffmpeg, "-loglevel", "error", "-f", "yuv4mpegpipe", "-i", "-",
                          "-c:v", "mpeg4", str(mp4)], input=run.stdout, capture_output=True,
                         timeout=60)
    assert enc.returncode == 0, enc.stderr.decode()
    got, fps = read_video(mp4)
    assert len(got) == 12 and fps == pytest.approx(10.0)


def test_444_stays_444(tmp_path, onnx_model):
    ffmpeg = ffmpeg_or_skip("make a 4:4:4 clip")
    y4m = _testsrc(ffmpeg, "yuv444p", n=2)
    run = subprocess.run([*SHARPEN, "--model", str(onnx_model), "--source", "-", "--out", "-",
                          "--quiet"], input=y4m, capture_output=True, timeout=120,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr.decode()
    reader, out = _read_all(run.stdout)
    assert reader.header.chroma == "444" and len(out) == 2
    assert b"F30000:1001" in run.stdout.split(b"\n")[0]


def _read_within(stream, n: int, seconds: float) -> bytes:
    """Up to n bytes of a pipe, what came within `seconds` (a run writing nothing there does
    not hang the test)."""
    got, end = b"", time.monotonic() + seconds
    while len(got) < n and (left := end - time.monotonic()) > 0:
        if select.select([stream], [], [], left)[0]:
            part = os.read(stream.fileno(), n - len(got))
            if not part:
                break
            got += part
    return got


def test_closed_reader_ends_the_run_cleanly(tmp_path, onnx_model):
    """`| head -c N`, ffplay closed: an endless source's run stops, with a short line and
    no traceback, exit 0."""
    proc = subprocess.Popen([*SHARPEN, "--model", str(onnx_model), "--source",
                             "synthetic:96x64", "--out", "-", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    with reaped(proc):
        head = _read_within(proc.stdout, 30000, 60)   # the header and a few frames
        proc.stdout.close()
        _, err = proc.communicate(timeout=60)
    text = err.decode()
    assert head.startswith(b"YUV4MPEG2 W96 H64 "), text
    assert proc.returncode == 0, text
    assert "the program reading stdout closed it after" in text
    # What the summary counts is what was written and what was under way when it closed
    written = int(re.search(r"closed it after (\d+) frame", text).group(1))
    unwritten = re.search(r"(\d+) frames? sharpened but not written", text)
    done = int(re.search(r"done: (\d+) frame", text).group(1))
    assert written + (int(unwritten.group(1)) if unwritten else 0) == done, text
    assert "Traceback" not in text and "BrokenPipe" not in text


def test_bad_stdin_says_what_was_expected(tmp_path, onnx_model):
    video = tmp_path / "clip.mp4"
    write_video(video, n=3)
    run = subprocess.run([*SHARPEN, "--model", str(onnx_model), "--source", "-", "--out", "-"],
                         input=video.read_bytes(), capture_output=True, timeout=120,
                         cwd=tmp_path)
    assert run.returncode == 2
    assert run.stdout == b""
    err = run.stderr.decode()
    assert "--source - is not Y4M video" in err and "(an MP4/MOV file)" in err
    assert "ffmpeg -i INPUT -f yuv4mpegpipe -pix_fmt yuv420p -" in err
    assert "Traceback" not in err


def test_stray_stdout_writes_go_to_stderr(tmp_path, onnx_model):
    """Whatever else prints to stdout during a run (here a note callback, on a Y4M stream cut
    inside its last frame) lands on stderr, not inside the video."""
    y4m, _ = _clip_y4m(tmp_path, n=4)
    code = ("import sys; from runtime.pipeline import run_stream; "
            f"run_stream({str(onnx_model)!r}, '-', '-', note=print); print('after the run')")
    run = subprocess.run([sys.executable, "-c", code], input=y4m[:-100], capture_output=True,
                         timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr.decode()
    # Once the run is over the app's stdout is its own again
    assert run.stdout.endswith(b"after the run\n")
    reader, out = _read_all(run.stdout[:-len(b"after the run\n")])
    assert len(out) == 3 and reader.truncated == 0
    assert b"stdin ended inside frame 3" in run.stderr


def test_resume_to_stdout_is_refused(tmp_path, onnx_model):
    video = tmp_path / "clip.mp4"
    write_video(video, n=3)
    run = subprocess.run([*SHARPEN, "--model", str(onnx_model), "--source", str(video),
                          "--out", "-", "--resume"], capture_output=True, timeout=120,
                         cwd=tmp_path)
    assert run.returncode == 2 and run.stdout == b""
    assert "--out - (stdout) is a stream, which cannot be resumed" in run.stderr.decode()


def test_gstreamer_pipeline_without_gstreamer_offers_the_pipe():
    if "GStreamer:                   YES" in cv2.getBuildInformation():
        pytest.skip("this OpenCV has GStreamer")
    with pytest.raises(SourceError) as e:
        open_source("videotestsrc ! videoconvert ! appsink drop=1", flags=True)
    said = str(e.value)
    assert "no GStreamer support" in said
    assert ("gst-launch-1.0 -q videotestsrc ! videoconvert ! y4menc ! fdsink | sharpen run "
            "--source - ...") in said


def test_the_offered_gst_launch_line_is_one_a_shell_runs_as_given():
    """The Jetson CSI camera's pipeline (README) without GStreamer in OpenCV: the gst-launch-1.0
    line offered instead had its caps `video/x-raw(memory:NVMM),...` unquoted, and bash,
    given it as printed, stopped at "syntax error near unexpected token `('"."""
    import shlex
    import subprocess
    if "GStreamer:                   YES" in cv2.getBuildInformation():
        pytest.skip("this OpenCV has GStreamer")
    caps = "video/x-raw(memory:NVMM),width=1920,height=1080,framerate=30/1"
    for pipeline, head, word in (
            (f"nvarguscamerasrc ! {caps} ! nvvidconv ! appsink drop=1", "nvarguscamerasrc", caps),
            ('filesrc location="a b.mkv" ! decodebin ! appsink', "filesrc", "location=a b.mkv")):
        with pytest.raises(SourceError) as e:
            open_source(pipeline, flags=True)
        line = str(e.value).split("as Y4M: ", 1)[1].replace(" --source - ...", " --source -")
        bash = subprocess.run(["bash", "-n", "-c", line], capture_output=True, text=True)
        assert bash.returncode == 0, (line, bash.stderr)
        gst = shlex.split(line.split(" | ", 1)[0])
        assert gst[:3] == ["gst-launch-1.0", "-q", head] and word in gst, gst
        assert gst[-4:] == ["!", "y4menc", "!", "fdsink"], gst


def test_a_terminal_is_refused_as_stdin_and_as_stdout(tmp_path, onnx_model):
    """`--source -` typed at a prompt waited for video that never came; `--out -` there
    filled the terminal with binary."""
    import pty
    main, child = pty.openpty()
    try:
        run = subprocess.run([*SHARPEN, "--model", str(onnx_model), "--source", "-", "--out",
                              "x.mp4"], stdin=child, capture_output=True, timeout=120,
                             cwd=tmp_path)
        assert run.returncode == 2
        assert "stdin is a terminal" in run.stderr.decode()
        run = subprocess.run([*SHARPEN, "--model", str(onnx_model), "--source",
                              "synthetic:32x32", "--max-frames", "2", "--out", "-"],
                             stdout=child, stderr=subprocess.PIPE, timeout=120, cwd=tmp_path)
        assert run.returncode == 2
        assert "stdout is a terminal" in run.stderr.decode()
    finally:
        os.close(main)
        os.close(child)


def test_an_interrupted_run_to_stdout_says_so(tmp_path, onnx_model):
    """Stopped by SIGTERM, a run into --out - said '- holds the first 3 frames only (closed
    cleanly); run again for all of them', a file named '-' to run again for."""
    proc = subprocess.Popen([*SHARPEN, "--model", str(onnx_model), "--source",
                             "synthetic:96x64", "--out", "-"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    with reaped(proc):
        _read_within(proc.stdout, 30000, 60)
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    text = err.decode()
    assert proc.returncode == 128 + 15, text
    assert re.search(r"interrupted \(SIGTERM\): \d+ frames? written to stdout", text), text
    assert "- holds" not in text


def test_aspect_and_interlacing_are_kept(tmp_path, onnx_model):
    """An anamorphic source (DVD's 720x480 at 10:11 pixels) came out declared square-pixel,
    so the encoder after the pipe stretched the picture; interlaced frames came out declared
    progressive."""
    ffmpeg = ffmpeg_or_skip("make an anamorphic interlaced clip")
    y4m = _ffmpeg_y4m(ffmpeg, ["-f", "lavfi", "-i", "testsrc=size=96x64:rate=25",
                               "-frames:v", "2", "-vf", "setsar=10/11,setfield=tff"])
    assert b" A10:11 " in y4m.split(b"\n")[0] and b" It " in y4m.split(b"\n")[0]
    run = subprocess.run([*SHARPEN, "--model", str(onnx_model), "--source", "-", "--out", "-",
                          "--quiet"], input=y4m, capture_output=True, timeout=120,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr.decode()
    header = run.stdout.split(b"\n")[0]
    assert b" A10:11 " in header and b" It " in header, header
    probe = subprocess.run([ffmpeg, "-f", "yuv4mpegpipe", "-i", "-"], input=run.stdout,
                           capture_output=True, timeout=60).stderr.decode()
    assert "SAR 10:11" in probe, probe


def test_native_stdout_writes_stay_out_of_the_video(tmp_path, onnx_model):
    """A native library's printf to C's stdout during the run, which libc buffers (a pipe is
    fully buffered where PYTHONUNBUFFERED is not set), went out at exit, after fd 1 was given
    back: onto the end of the video. It goes to stderr, as the Python prints do."""
    y4m, _ = _clip_y4m(tmp_path, n=4)
    code = ("import ctypes; from runtime.pipeline import run_stream; "
            "libc = ctypes.CDLL(None); "
            "note = lambda m: libc.printf(b'native: %s\\n', m.encode()); "
            f"run_stream({str(onnx_model)!r}, '-', '-', note=note); print('after the run')")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    run = subprocess.run([sys.executable, "-c", code], input=y4m[:-100], capture_output=True,
                         timeout=120, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr.decode()
    assert b"native: stdin ended inside frame 3" in run.stderr
    assert run.stdout.endswith(b"after the run\n")
    reader, out = _read_all(run.stdout[:-len(b"after the run\n")])
    assert len(out) == 3 and reader.truncated == 0


def test_sigterm_with_a_stalled_producer_stops_at_once(tmp_path, onnx_model):
    """The producer sent a frame and then nothing (a stream that stalled): SIGTERM stops the
    run with the frame written, not after the capture thread's 10 s wait in its read."""
    y4m, _ = _clip_y4m(tmp_path, n=2)
    header_and_frame = len(y4m) - (len(y4m) - y4m.index(b"\n") - 1) // 2
    r, w = os.pipe()
    proc = subprocess.Popen([*SHARPEN, "--model", str(onnx_model), "--source", "-", "--out",
                             "-", "--quiet"], stdin=r, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=tmp_path)
    os.close(r)
    with reaped(proc):
        try:
            os.write(w, y4m[:header_and_frame])
            head = _read_within(proc.stdout, 64, 60)   # the header: the first frame is written
            assert head.startswith(b"YUV4MPEG2 ")
            t0 = time.monotonic()
            proc.terminate()
            out, err = proc.communicate(timeout=60)
            took = time.monotonic() - t0
        finally:
            os.close(w)
    text = err.decode()
    assert took < 5, (took, text)
    assert proc.returncode == 128 + 15, text
    assert "not waiting for the capture thread" not in text
    _, frames = _read_all(head + out)
    assert len(frames) == 1


@pytest.mark.parametrize("cut", [0, 3, 6])
def test_a_stream_cut_at_a_frame_tag_is_said(cut):
    """A stream ending right after (or inside) a frame's `FRAME` line was ended without a
    word, or called damaged, where one cut inside the frame's data is said as cut."""
    out = io.BytesIO()
    writer = Y4MWriter(out.write, 25)
    writer.write(np.full((4, 6, 3), 90, np.uint8))
    data = out.getvalue() + b"FRAME\n"[:cut]
    reader, frames = _read_all(data)
    assert len(frames) == 1
    assert reader.cut == (cut > 0) and reader.truncated == 0


def test_a_stand_in_stdin_is_named(monkeypatch):
    """A notebook's or a test runner's sys.stdin, with no file descriptor under it, raised
    AttributeError or io.UnsupportedOperation from deep in the source."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(SourceError, match=r"source=-: stdin here \(StringIO\) is not a pipe"):
        open_source("-")


def test_a_closed_stdout_is_not_called_a_terminal(tmp_path, onnx_model):
    """`sharpen run ... --out - >&-` said 'stdout is a terminal'."""
    run = subprocess.run([*SHARPEN, "--model", str(onnx_model), "--source", "synthetic:32x32",
                          "--max-frames", "2", "--out", "-"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, timeout=120, cwd=tmp_path,
                         preexec_fn=lambda: os.close(1))
    err = run.stderr.decode()
    assert run.returncode == 2, err
    assert "there is no stdout (it was closed)" in err and "terminal" not in err


def test_stats_beside_stdin_and_stdout(tmp_path, onnx_model):
    """`--source -` and `--out -` were taken for files named '-' when checked against --stats:
    `--stats ./-` (a file named '-') was refused as 'the source or the --out file', and beside
    `--source -` the stats file's first write waited for the first frame. `--stats -` wrote a
    file named '-' where stdout was meant: refused, saying why."""
    import json
    y4m, _ = _clip_y4m(tmp_path, n=3)
    header = y4m[:y4m.index(b"\n") + 1]
    stats = tmp_path / "-"
    r, w = os.pipe()
    proc = subprocess.Popen([*SHARPEN, "--model", str(onnx_model), "--source", "-", "--out",
                             "-", "--stats", "./-", "--quiet"], stdin=r,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    os.close(r)
    with reaped(proc):
        try:
            os.write(w, header)   # no frame yet: the run waits for its first
            end = time.monotonic() + 60
            while not stats.exists() and time.monotonic() < end and proc.poll() is None:
                time.sleep(0.05)
            early = json.loads(stats.read_text()) if stats.exists() else None
            os.write(w, y4m[len(header):])
            os.close(w)
            w = -1
            out, err = proc.communicate(timeout=60)
        finally:
            if w >= 0:
                os.close(w)
    assert proc.returncode == 0, err.decode()
    assert early is not None and early["state"] == "starting", err.decode()
    final = json.loads(stats.read_text())
    assert final["state"] == "done" and final["frames_processed"] == 3
    assert final["stdout_frames"] == 3
    assert final["source"]["kind"] == "stdin"
    assert len(_read_all(out)[1]) == 3
    stats.unlink()
    run = subprocess.run([*SHARPEN, "--model", str(onnx_model), "--source", "-", "--out", "-",
                          "--stats", "-"], input=y4m, capture_output=True, timeout=120,
                         cwd=tmp_path)
    assert run.returncode == 2 and run.stdout == b""
    assert "--stats -: " in run.stderr.decode() and "give a file" in run.stderr.decode()
    assert not stats.exists()


_UNDER_A_MEMORY_LIMIT = """
import re, resource, sys
from {module} import main
import cv2, numpy, onnxruntime  # noqa: F401 - loaded before the limit, as a run has them
vm = int(re.search(r"VmSize:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (300 << 20), resource.RLIM_INFINITY))
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc: Linux")
def test_a_stdin_frame_too_big_to_read_is_named(tmp_path, onnx_model):
    """A Y4M frame read from stdin that the memory limit cannot hold (here 16384x8192: 192 MiB
    of planes, twice that while read) ended with 'error: out of memory; give the process more
    memory or feed it smaller frames', naming no frame; and the producer is not left hanging
    in its write."""
    w, h = 16384, 8192
    frame = w * h * 3 // 2
    proc = subprocess.Popen([sys.executable, "-c",
                             _UNDER_A_MEMORY_LIMIT.format(module=cli_module()), "run",
                             "--model", str(onnx_model), "--source", "-", "--out", "-",
                             "--quiet"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=tmp_path,
                            # over the default pixel budget, which a user may raise
                            env={**os.environ, "OMP_NUM_THREADS": "1",
                                 "SHARPEN_MAX_PIXELS": str(w * h)})
    chunk = bytes(1 << 20)
    broke = False
    try:
        proc.stdin.write(f"YUV4MPEG2 W{w} H{h} F25:1 Ip A1:1 C420jpeg\nFRAME\n".encode())
        for _ in range(frame // len(chunk) + 1):
            proc.stdin.write(chunk)
        proc.stdin.close()
    except BrokenPipeError:
        broke = True
    with reaped(proc):
        out, err = proc.communicate(timeout=120)
    text = err.decode()
    assert proc.returncode == 1, text
    assert out == b""
    last = text.strip().splitlines()[-1]
    assert last.startswith(f"sharpen run: error: out of memory reading a {w}x{h} frame from "
                           "--source - (Y4M on stdin)"), text
    assert "scale=" in last and "Traceback" not in text
    assert broke or proc.returncode is not None


def test_an_error_part_way_to_stdout_says_what_stdout_got(tmp_path, onnx_model):
    """A stream damaged after two frames, with a file named '-' in the folder (a stats file
    `--stats ./-` wrote): the error was followed by '- holds the 2 frames written before the
    error (closed cleanly)', that file named as the output."""
    y4m, _ = _clip_y4m(tmp_path, n=4)
    third = y4m.index(b"FRAME", y4m.index(b"FRAME", y4m.index(b"FRAME") + 1) + 1)
    (tmp_path / "-").write_text("{}")
    run = subprocess.run([*SHARPEN, "--model", str(onnx_model), "--source", "-", "--out", "-",
                          "--quiet"], input=y4m[:third] + b"GARBAGE\n" + y4m[third:],
                         capture_output=True, timeout=120, cwd=tmp_path)
    err = run.stderr.decode()
    assert run.returncode == 2, err
    assert "expected a Y4M frame after frame 2" in err
    assert "- holds" not in err and "2 frames written to stdout before the error" in err, err
    assert len(_read_all(run.stdout)[1]) == 2


def test_stderr_into_the_same_pipe_is_refused(tmp_path, onnx_model):
    """`sharpen run ... --out - 2>&1 | ffmpeg ...`: fd 1 was pointed at stderr, which was the
    same pipe, so the live line, notes and the done: line went into the video between its
    frames; the reader after it failed on them. Refused, saying where the messages would go."""
    y4m, _ = _clip_y4m(tmp_path, n=2)
    run = subprocess.run([*SHARPEN, "--model", str(onnx_model), "--source", "-", "--out", "-"],
                         input=y4m, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=120, cwd=tmp_path)
    said = run.stdout.decode("ascii", "replace")
    assert run.returncode == 2, said
    assert "YUV4MPEG2" not in said
    assert "stderr goes to the same pipe as stdout (2>&1)" in said, said


def test_sigterm_before_the_first_frame_ends_stopped(tmp_path, onnx_model):
    """SIGTERM while --source - waits for its first frame (the header came, no frame): the
    --stats file, written from the start, ends `stopped` (SIGTERM), exit 143, stdout empty."""
    import json
    y4m, _ = _clip_y4m(tmp_path, n=1)
    stats = tmp_path / "stats.json"
    r, w = os.pipe()
    proc = subprocess.Popen([*SHARPEN, "--model", str(onnx_model), "--source", "-", "--out",
                             "-", "--stats", str(stats), "--quiet"], stdin=r,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    os.close(r)
    with reaped(proc):
        try:
            os.write(w, y4m[:y4m.index(b"\n") + 1])
            end = time.monotonic() + 60
            while not stats.exists() and time.monotonic() < end and proc.poll() is None:
                time.sleep(0.05)
            assert json.loads(stats.read_text())["state"] == "starting"
            proc.terminate()
            out, err = proc.communicate(timeout=60)
        finally:
            os.close(w)
    assert proc.returncode == 128 + 15, err.decode()
    assert out == b""
    final = json.loads(stats.read_text())
    assert (final["state"], final["signal"], final["frames_processed"]) == \
        ("stopped", "SIGTERM", 0)
    assert final["peak_memory_mib"] > 0


def _pipe_filled(fd: int, seconds: float) -> int:
    """Bytes waiting in the pipe whose read end is `fd`, once that stops growing (the writer
    blocked on a full pipe), within `seconds`."""
    import fcntl
    import termios
    last, steady, end = -1, 0, time.monotonic() + seconds
    while time.monotonic() < end and steady < 5:
        time.sleep(0.2)
        n = int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), sys.byteorder)
        steady = steady + 1 if n == last and n > 0 else 0
        last = n
    return last


def test_sigterm_with_a_stalled_reader_ends_the_run(tmp_path, onnx_model):
    """The reader of stdout stopped reading (a paused player, a blocked network sink): one
    SIGTERM ends the run in bounded time, exit 143, saying so; the frames before the one under
    way are whole. It used to wait in the write until the reader drained the pipe."""
    proc = subprocess.Popen([*SHARPEN, "--model", str(onnx_model), "--source",
                             "synthetic:320x240", "--out", "-", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    with reaped(proc):
        assert _pipe_filled(proc.stdout.fileno(), 60) > 0
        proc.terminate()
        try:
            proc.wait(timeout=45)   # generous: it hung until the pipe was read
        except subprocess.TimeoutExpired:
            pytest.fail("SIGTERM with a stalled reader of stdout did not end the run")
        out, err = proc.stdout.read(), proc.stderr.read()
    text = err.decode()
    assert proc.returncode == 128 + 15, text
    said = re.search(r"stdout's reader did not take the frame under way within \d+ s of the "
                     r"stop: (\d+) frames? written whole, frame (\d+) cut after (\d+) of "
                     r"(\d+) bytes", text)
    assert said, text
    whole, cut_at = int(said.group(1)), int(said.group(3))
    reader, frames = _read_all(out)
    assert len(frames) == whole and int(said.group(2)) == whole + 1
    assert reader.cut and reader.truncated == cut_at, text
    # The summary counts what stdout got whole, not the frames sharpened, and does not say
    # "nothing" of a stream that holds a header and part of a frame
    summary = (rf"interrupted \(SIGTERM\): {whole} frames? written to stdout" if whole else
               r"interrupted \(SIGTERM\) before the first frame was written: no whole frame "
               r"written to stdout")
    assert re.search(summary, text), text
    assert whole or "nothing written" not in text, text
    assert "Traceback" not in text


def test_a_non_blocking_stdout_is_written_whole(tmp_path, onnx_model):
    """A stdout with O_NONBLOCK set (left set by a program sharing it): a full
    pipe is waited for, not an EAGAIN error, and every frame arrives."""
    r, w = os.pipe()
    os.set_blocking(w, False)
    proc = subprocess.Popen([*SHARPEN, "--model", str(onnx_model), "--source",
                             "synthetic:320x240", "--out", "-", "--quiet", "--max-frames", "6"],
                            stdout=w, stderr=subprocess.PIPE, cwd=tmp_path)
    os.close(w)
    with reaped(proc), os.fdopen(r, "rb") as reader:
        assert _pipe_filled(r, 60) > 0   # the pipe full before anything is read from it
        out = reader.read()
        _, err = proc.communicate(timeout=60)
    text = err.decode()
    assert proc.returncode == 0, text
    _, frames = _read_all(out)
    assert len(frames) == 6 and frames[0].shape == (240, 320, 3), text


@pytest.mark.parametrize("axis", [0, 1])
def test_odd_sizes_keep_each_chroma_sample_on_its_two_pixels(axis):
    """4:2:0 at an odd size: chroma sample i covers pixels 2i and 2i+1 (the last one the edge
    pixel alone), read and written, as a codec's cropped picture is. ffmpeg's swscale instead
    stretches the (n+1)/2 samples over n pixels (README, "In a pipeline")."""
    n = 9
    w, h = (4, n) if axis == 0 else (n, 4)
    cw, ch = (w + 1) // 2, (h + 1) // 2
    levels = np.array([104, 116, 128, 140, 152], np.uint8)   # one a sample, in gamut
    u = np.broadcast_to(levels[:, None] if axis == 0 else levels[None, :], (ch, cw))
    y4m = (f"YUV4MPEG2 W{w} H{h} F25:1 C420jpeg\nFRAME\n".encode()
           + np.full((h, w), 128, np.uint8).tobytes() + np.ascontiguousarray(u).tobytes()
           + np.full((ch, cw), 128, np.uint8).tobytes())
    _, frames = _read_all(y4m)
    line = frames[0][:, 0] if axis == 0 else frames[0][0]   # BGR along the axis
    for x in range(n):
        assert (line[x] == line[2 * (x // 2)]).all(), x
    assert len({tuple(p) for p in line}) == len(levels)
    # Written back: each sample is its two pixels' own colour, not a neighbour's
    out = io.BytesIO()
    Y4MWriter(out.write, 25).write(frames[0])
    body = np.frombuffer(out.getvalue().split(b"FRAME\n")[1], np.uint8)
    u_back = body[w * h:w * h + cw * ch].reshape(ch, cw)
    back = u_back[:, 0] if axis == 0 else u_back[0]
    assert np.abs(back.astype(int) - levels).max() <= 1, back


def test_a_non_blocking_stdin_is_waited_on(tmp_path, onnx_model):
    """A stdin with O_NONBLOCK set (left by a program sharing it) and a producer slow to
    start (ffmpeg opening a stream): the run waits for the header and the frames, not an
    EAGAIN error."""
    y4m, _ = _clip_y4m(tmp_path, n=3)
    r, w = os.pipe()
    os.set_blocking(r, False)
    proc = subprocess.Popen([*SHARPEN, "--model", str(onnx_model), "--source", "-", "--out",
                             "-", "--quiet"], stdin=r, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=tmp_path)
    os.close(r)
    with reaped(proc):
        time.sleep(1)   # nothing there yet when the run starts reading
        try:
            with os.fdopen(w, "wb") as feed:
                feed.write(y4m)
        except BrokenPipeError:
            pass   # the run already failed: its stderr says why
        out, err = proc.communicate(timeout=60)
    text = err.decode()
    assert proc.returncode == 0, text
    _, frames = _read_all(out)
    assert len(frames) == 3, text


def test_a_stop_that_ends_the_wait_for_stdout_still_bounds_the_write(monkeypatch):
    """A SIGTERM that lands in the wait for a full stdout (the run's handler sets the stop)
    and a reader that then takes a little: the write that follows is one the pipe takes at
    once, and the stalled reader is given up on in bounded time. The stop was read before
    the wait, and that write took the whole frame, waiting for the reader for good."""
    import threading

    from runtime import pipe_io
    from runtime.pipe_io import StdoutSink

    monkeypatch.setattr(pipe_io, "STALLED_READER_S", 0.5)
    stop, notes = threading.Event(), []
    waited = pipe_io._writable

    def signalled_in_wait(fd: int, timeout: float) -> bool:
        stop.set()   # as the handler of a signal that interrupted the poll
        return waited(fd, timeout)

    monkeypatch.setattr(pipe_io, "_writable", signalled_in_wait)
    r, w = os.pipe()
    sink = StdoutSink(25, stop=stop, note=notes.append, fd=w)
    frame = np.zeros((480, 640, 3), np.uint8)   # more than a pipe holds
    writer = threading.Thread(target=sink.write, args=(frame, frame, ""), daemon=True)
    writer.start()
    writer.join(timeout=30)   # generous: it returns 0.5 s after the pipe fills
    hung = writer.is_alive()
    os.set_blocking(r, False)
    while hung and writer.is_alive():   # let a hung write finish, so the test ends
        try:
            os.read(r, 1 << 20)
        except BlockingIOError:
            time.sleep(0.01)
    sink.close()
    os.close(r)
    assert not hung, "the write after a stop waited for a reader that took nothing"
    assert sink.stalled and any("did not take the frame under way" in n for n in notes), notes


def test_a_reader_paused_past_the_stop_bound_without_a_stop_gets_every_frame(tmp_path,
                                                                              onnx_model):
    """A player paused for longer than a stopped run waits for it (no signal): the run just
    waits, and every frame arrives whole once it reads again."""
    from runtime.pipe_io import STALLED_READER_S

    proc = subprocess.Popen([*SHARPEN, "--model", str(onnx_model), "--source",
                             "synthetic:320x240", "--out", "-", "--quiet", "--max-frames", "8"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    with reaped(proc):
        assert _pipe_filled(proc.stdout.fileno(), 60) > 0
        time.sleep(STALLED_READER_S + 1)   # the pipe full all that time
        out, err = proc.communicate(timeout=60)
    text = err.decode()
    assert proc.returncode == 0, text
    reader, frames = _read_all(out)
    assert len(frames) == 8 and not reader.cut, text
    assert "did not take" not in text, text


def test_lossless_pipe_is_444(tmp_path, onnx_model):
    # 4:2:0 halves the colour's resolution: --lossless on a pipe keeps all of it.
    src = tmp_path / "clip.avi"
    write_video(src, n=2)
    run = subprocess.run([*SHARPEN, "--model", str(onnx_model), "--source", str(src), "--out",
                          "-", "--lossless", "--quiet"], capture_output=True, timeout=120,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr.decode()
    reader, out = _read_all(run.stdout)
    assert reader.header.chroma == "444" and len(out) == 2
    assert b"no effect" not in run.stderr


def test_a_y4m_stream_over_the_pixel_budget_is_refused_before_a_frame_is_read(monkeypatch):
    """SHARPEN_MAX_PIXELS held for video files and URLs but not for `--source -`: a stranger's
    upload piped through ffmpeg as 16000x16000 Y4M was read (384 MB a frame) and run."""
    from runtime.pipe_io import StdinSource
    frame = np.zeros((48, 64, 3), np.uint8)
    out = io.BytesIO()
    Y4MWriter(out.write, 25).write(frame)
    monkeypatch.setenv("SHARPEN_MAX_PIXELS", "3000")
    with pytest.raises(SourceError, match=r"its frames are 64x48 = 3,072 pixels, over the "
                                          r"pixel budget of 3,000 \(raise it with the "
                                          r"SHARPEN_MAX_PIXELS"):
        StdinSource(stream=io.BytesIO(out.getvalue()))
    monkeypatch.setenv("SHARPEN_MAX_PIXELS", "4000")
    src = StdinSource(stream=io.BytesIO(out.getvalue()))
    assert (src.reader.header.width, src.reader.header.height) == (64, 48)


def _tiny_y4m(n: int) -> bytes:
    """n small textured frames as Y4M, made without ffmpeg."""
    out: list[bytes] = []
    w = Y4MWriter(out.append, 30.0, chroma="444")
    for i in range(n):
        w.write(np.full((16, 24, 3), 40 + 20 * i, np.uint8))
    return b"".join(out)


@pytest.mark.parametrize("frames", [0, 2])
def test_a_stdin_that_stalls_past_timeout_is_a_lost_source(tmp_path, onnx_model, frames):
    """`ffmpeg -i rtsp://... | sharpen run --source - ...` whose ffmpeg hangs (a camera gone
    quiet over TCP) kept the run `running` for good, so a service never restarted the
    pipeline: with --timeout, stdin that gives nothing for that long ends the run as a lost
    stream does (exit 3, state source_lost, the frames before it kept), at the header too."""
    import json
    y4m = _tiny_y4m(2)
    header = y4m[:y4m.index(b"\n") + 1]
    stats = tmp_path / "stats.json"
    r, w = os.pipe()
    proc = subprocess.Popen([*SHARPEN, "--model", str(onnx_model), "--source", "-", "--out",
                             str(tmp_path / "out"), "--stats", str(stats), "--quiet",
                             "--timeout", "1"], stdin=r, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=tmp_path)
    os.close(r)
    with reaped(proc):
        try:
            os.write(w, y4m if frames else header[:10])   # then nothing, the pipe kept open
            out, err = proc.communicate(timeout=60)
        finally:
            os.close(w)
    text = err.decode()
    assert proc.returncode == 3, text
    assert "--timeout applies" not in text
    assert re.search(r"stdin .*gave no data for 1 s \(--timeout\)", text), text
    final = json.loads(stats.read_text())
    assert (final["state"], final["frames_processed"]) == ("source_lost", frames), final
    assert len(list((tmp_path / "out").glob("*.png"))) == frames


@pytest.mark.parametrize("spec", ["-", "raw:8x8"])
def test_a_negative_timeout_for_stdin_says_what_0_means_there(tmp_path, onnx_model, spec):
    """`--timeout -1 --source -` (or raw:WxH) was refused with "0: FFmpeg's own", which no
    stdin has: there 0 is no bound."""
    r = subprocess.run([*SHARPEN, "--model", str(onnx_model), "--source", spec, "--out",
                        str(tmp_path / "o"), "--timeout", "-1"], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert f"--timeout must be >= 0 (0: no bound for --source {spec})" in r.stderr, r.stderr


def test_a_rerun_fed_by_a_pipe_keeps_the_earlier_recording(tmp_path, onnx_model):
    """`ffmpeg -i rtsp://... | sharpen run --source - --out yard.ts --timeout 30` as a service:
    its exit 3 is for a restart, which wrote yard.ts anew and lost the hours before, as no
    rerun gives a pipe's frames again. Kept as a camera's is; stdin from a file, which a rerun
    reads again, is replaced as a file source's output is."""
    out = tmp_path / "yard.avi"
    for _ in range(2):
        r = subprocess.run([*SHARPEN, "--model", str(onnx_model), "--source", "-", "--out",
                            str(out), "--quiet"], input=_tiny_y4m(2), capture_output=True,
                           timeout=120, cwd=tmp_path)   # stdin a pipe
        assert r.returncode == 0, r.stderr.decode()
    kept = sorted(p.name for p in tmp_path.glob("yard.*.avi"))
    assert len(kept) == 1 and out.is_file(), sorted(p.name for p in tmp_path.iterdir())
    assert "the recording an earlier run left there" in r.stderr.decode()
    assert "a camera's or a pipe's recording" in r.stderr.decode()

    fed = tmp_path / "in.y4m"
    fed.write_bytes(_tiny_y4m(2))
    with open(fed, "rb") as f:
        r = subprocess.run([*SHARPEN, "--model", str(onnx_model), "--source", "-", "--out",
                            str(out), "--quiet"], stdin=f, capture_output=True, timeout=120,
                           cwd=tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    assert sorted(p.name for p in tmp_path.glob("yard.*.avi")) == kept


def test_a_rerun_fed_by_a_pipe_numbers_its_images_on(tmp_path, onnx_model):
    """Into an image folder, a restarted pipe's run wrote frame_000000 on over the frames
    before, which no rerun gives again: numbered on from the last, as a camera's run is."""
    out = tmp_path / "frames"
    for _ in range(2):
        r = subprocess.run([*SHARPEN, "--model", str(onnx_model), "--source", "-", "--out",
                            str(out), "--quiet"], input=_tiny_y4m(2), capture_output=True,
                           timeout=120, cwd=tmp_path)
        assert r.returncode == 0, r.stderr.decode()
    assert len(list(out.glob("*.png"))) == 4, sorted(p.name for p in out.iterdir())


def test_raw_bgr24_frames_pipe_through_both_ways_untouched(tmp_path, onnx_model):
    """`ffmpeg ... -f rawvideo -pix_fmt bgr24 - | sharpen run ... | ffmpeg -f rawvideo ...`,
    the pipe an integrator with BGR frames writes first, was refused as not Y4M. With
    `--source raw:WxH@FPS` stdin holds raw BGR frames of that size and `--out -` gives them back
    so: the bytes are the model's output as run_stream gives it (no YUV rounding), which
    ffmpeg encodes; a stream cut inside a frame is said, naming the size it was read at, and a
    Y4M stream given so is refused, naming --source -."""
    from runtime import Sink, run_stream

    ffmpeg = ffmpeg_or_skip("pipe raw frames")
    video = tmp_path / "clip.mp4"
    write_video(video, n=12)
    raw = subprocess.run([ffmpeg, "-loglevel", "error", "-i", str(video), "-f", "rawvideo",
                          "-pix_fmt", "bgr24", "-"], capture_output=True, timeout=60).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(12, FRAME_H, FRAME_W, 3)
    spec = f"raw:{FRAME_W}x{FRAME_H}@10"
    run = subprocess.run([*SHARPEN, "--model", str(onnx_model), "--source", spec, "--out", "-"],
                         input=raw, capture_output=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr.decode()
    assert b"done: 12 frames" in run.stderr and len(run.stdout) == len(raw), run.stderr

    class Keep(Sink):
        got: list = []

        def write(self, original, sharpened, name):
            self.got.append(sharpened)

    run_stream(onnx_model, list(frames), Keep(), threads=1)
    assert run.stdout == b"".join(f.tobytes() for f in Keep.got)
    mp4 = tmp_path / "out.mp4"
    enc = subprocess.run([ffmpeg, "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24",
                          "-s", f"{FRAME_W}x{FRAME_H}", "-r", "10", "-i", "-", "-c:v", "mpeg4",
                          str(mp4)], input=run.stdout, capture_output=True, timeout=60)
    assert enc.returncode == 0, enc.stderr.decode()
    got, fps = read_video(mp4)
    assert len(got) == 12 and fps == pytest.approx(10.0)
    # Cut 100 bytes short: 11 frames, and the note names the size read at.
    cut = subprocess.run([*SHARPEN, "--model", str(onnx_model), "--source", spec, "--out", "-"],
                         input=raw[:-100], capture_output=True, timeout=120, cwd=tmp_path)
    err = cut.stderr.decode()
    assert cut.returncode == 0 and len(cut.stdout) == 11 * FRAME_W * FRAME_H * 3, err
    assert "inside frame 11" in err and f"{FRAME_W}x{FRAME_H}" in err, err
    y4m = subprocess.run([*SHARPEN, "--model", str(onnx_model), "--source", spec, "--out", "-"],
                         input=_ffmpeg_y4m(ffmpeg, ["-i", str(video)]), capture_output=True,
                         timeout=120, cwd=tmp_path)
    err = y4m.stderr.decode()
    assert y4m.returncode == 2 and "is Y4M" in err and "--source -" in err, err
    # Raw frames given to --source -, which reads Y4M: the message names raw:WxH.
    plain = subprocess.run([*SHARPEN, "--model", str(onnx_model), "--source", "-", "--out", "-"],
                           input=raw, capture_output=True, timeout=120, cwd=tmp_path)
    err = plain.stderr.decode()
    assert plain.returncode == 2 and "raw:WxH[@FPS]" in err and "bgr24" in err, err


def test_raw_frames_over_the_pixel_budget_name_their_spelling():
    """A raw:WxH stream over the pixel budget was said to be `--source -`'s, the Y4M one."""
    from runtime.pipe_io import StdinSource

    with pytest.raises(SourceError, match=r"stdin of --source raw:9000x9000: its frames are"):
        StdinSource(flags=True, stream=io.BytesIO(b"\0" * 64), raw=(9000, 9000, 0.0,
                                                                     "raw:9000x9000"))


def test_raw_stdin_messages_name_raw_frames_not_y4m(monkeypatch):
    """A raw:WxH source's terminal stdin was told to pipe Y4M into --source -, and its stalled
    producer was said to be --source -'s: both now name raw:WxH and raw BGR frames."""
    from runtime.pipe_io import StdinSource

    raw = (8, 8, 0.0, "raw:8x8")
    leader, follower = os.openpty()
    with os.fdopen(follower, "rb") as tty:
        monkeypatch.setattr(sys, "stdin", tty)
        with pytest.raises(SourceError, match=r"^--source raw:8x8 reads raw BGR frames .*"
                                              r"-pix_fmt bgr24 - \| sharpen run --source raw:8x8"):
            StdinSource(flags=True, raw=raw)
    os.close(leader)
    r, w = os.pipe()
    os.write(w, b"\0" * 64 * 3)
    with os.fdopen(r, "rb") as pipe:
        monkeypatch.setattr(sys, "stdin", pipe)
        src = StdinSource(flags=True, raw=raw, timeout=1)
        assert src.stream.stalled.startswith("the stdin of --source raw:8x8 gave no data")
    os.close(w)


@pytest.mark.parametrize("spec", ["raw:320x180@2x5", "raw:320", "RAW:320x180"])
def test_a_mistyped_raw_spelling_says_how_it_is_spelt(spec):
    """`--source raw:320x180@2x5` said 'source not found', as of a missing file."""
    with pytest.raises(SourceError, match=r"raw:WxH\[@FPS\], .*raw:1280x720@25"):
        open_source(spec, flags=True)


def test_raw_without_its_size_is_told_the_spelling_and_a_folder_named_raw_is_read(
        tmp_path, monkeypatch):
    """`--source raw` (raw frames piped in, their size not given) said only 'source not found:
    raw', as of a missing folder; it now says that too, with the raw:WxH[@FPS] spelling. A
    folder named raw that is there is read as ever."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SourceError, match=r"^source not found: raw; raw frames on stdin are "
                                          r"spelt raw:WxH\[@FPS\]"):
        open_source("raw", flags=True)
    (tmp_path / "raw").mkdir()
    cv2.imwrite(str(tmp_path / "raw" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    assert open_source("raw", flags=True).kind == "images"


@pytest.mark.parametrize("spec", ["raw:64x48@0.0001", "raw:64x48@100000"])
def test_a_raw_rate_no_video_takes_is_refused_before_stdin_is_read(spec):
    """raw:WxH@0.0001 failed at the first frame, the video writer not opening, and @100000
    became 30 fps without a word: the rate is refused as --fps's is, before stdin is read."""
    with pytest.raises(SourceError, match=r"^--source raw:64x48@[0-9.]+: its rate must be "
                                          r"0\.1 to 1000 fps"):
        open_source(spec, flags=True)


@pytest.mark.parametrize("spec", ["synthetic:64x48@0.0001", "synthetic@100000"])
def test_a_synthetic_rate_outside_the_video_range_is_refused_as_a_raw_one(spec):
    """synthetic[:WxH][@FPS] is raw:WxH[@FPS]'s spelling, but only the raw rate was checked:
    synthetic@0.0001 waited 10000 s for each frame, @100000 wrote a 100000 fps video that
    repeats frames; both are refused, naming the range, as raw:WxH's and --fps's."""
    with pytest.raises(SourceError, match=r"^--source synthetic[:0-9x]*@[0-9.]+: its rate "
                                          r"must be 0\.1 to 1000 fps, or left out"):
        open_source(spec, flags=True)
    assert open_source("synthetic:64x48@0", flags=True).kind == "synthetic"   # unthrottled


def test_an_empty_raw_stream_and_its_stats_name_the_raw_spelling(tmp_path, onnx_model):
    """An empty raw:WxH stdin ended in "source '-' produced no frames", and --stats recorded
    the source as '-', the Y4M spelling: both now give raw:WxH@FPS as typed."""
    stats = tmp_path / "s.json"
    run = subprocess.run([*SHARPEN, "--model", str(onnx_model), "--source", "raw:64x48@10",
                          "--out", "-"], input=b"", capture_output=True, timeout=120,
                         cwd=tmp_path)
    err = run.stderr.decode()
    assert run.returncode == 2 and "source 'raw:64x48@10' produced no frames" in err, err
    frame = np.full((48, 64, 3), 100, np.uint8).tobytes()
    run = subprocess.run([*SHARPEN, "--model", str(onnx_model), "--source", "raw:64x48@10",
                          "--out", "-", "--stats", str(stats)], input=frame * 2,
                         capture_output=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr.decode()
    assert json.loads(stats.read_text())["source"]["spec"] == "raw:64x48@10"
