"""Files from strangers (an upload form, a batch job): damaged images whose headers look whole,
files that are not files (a FIFO), and names no terminal line can hold. Each gets one line of
ours naming the file, never a decoder's own chatter, a hang or a half-grey result."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.imageio import ImageReadError, UndecodableImage, decode_image, file_header_size


def _noise(h: int = 48, w: int = 64) -> np.ndarray:
    return (np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)


def _jpeg() -> bytes:
    return cv2.imencode(".jpg", _noise())[1].tobytes()


def _sharpen(*argv: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sharpen.cli", *argv], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_a_jpeg_missing_a_middle_stretch_is_refused_not_decoded_half_grey(tmp_path):
    """An upload that lost a stretch in the middle still ends with the end-of-image marker:
    libjpeg fills what is missing with grey and only prints a warning."""
    jpg = _jpeg()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(jpg[:len(jpg) // 2] + b"\xff\xd9")
    with pytest.raises(UndecodableImage, match=r"cut\.jpg: damaged JPEG data"):
        decode_image(cut)
    whole = tmp_path / "whole.jpg"
    whole.write_bytes(jpg)
    assert decode_image(whole).shape == (48, 64, 3)


def test_a_damaged_image_gets_our_line_only_not_the_decoders_own(tmp_path):
    from runtime_fixtures import make_onnx_model
    model = make_onnx_model(tmp_path / "m.onnx")
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "good.png"), _noise())
    jpg = _jpeg()
    (src / "cut.jpg").write_bytes(jpg[:len(jpg) // 2] + b"\xff\xd9")
    tif = cv2.imencode(".tif", _noise())[1].tobytes()
    (src / "cut.tif").write_bytes(tif[:len(tif) // 2])
    out = tmp_path / "out"
    r = _sharpen("run", "--model", str(model), "--source", str(src), "--out", str(out),
                 "--quiet", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["good.png"]
    # The closing lines list the skipped files again, each as its warning said it.
    listed = [ln for ln in r.stderr.splitlines() if ln.startswith(f"  {src}")]
    lines = [ln for ln in r.stderr.splitlines() if ln not in listed]
    why = (f"{src / 'cut.jpg'}: damaged JPEG data (the decoder reports: "
           "Corrupt JPEG data: premature end of data segment)")
    assert [ln for ln in lines if "cut.jpg" in ln] == [f"warning: skipped: {why}"], r.stderr
    assert listed[0] == f"  {why}" and len(listed) == 2, r.stderr
    assert any("cut.tif" in ln for ln in lines)
    # libjpeg's, libtiff's (through OpenCV's log) and Pillow's own lines
    for noise in ("Corrupt JPEG data: premature", "[ERROR", "UserWarning", "site-packages"):
        assert not any(ln.startswith(noise) or noise in ln and "skipped" not in ln
                       for ln in lines), (noise, r.stderr)


def test_a_fifo_named_as_an_image_is_refused_at_once_not_waited_on(tmp_path):
    fifo = tmp_path / "upload.png"
    os.mkfifo(fifo)
    got: dict = {}

    def read() -> None:
        try:
            decode_image(fifo)
        except ImageReadError as e:
            got["error"] = str(e)
        got["size"] = file_header_size(fifo)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(20)
    if t.is_alive():   # free the reader blocked in open() so the test process can end
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading a FIFO named *.png blocked waiting for a writer")
    assert got["error"] == f"{fifo}: not a regular file (a FIFO); give an image file"
    assert got["size"] is None


def test_a_file_name_with_a_newline_is_shown_on_one_line(tmp_path):
    bad = tmp_path / "two\nlines.png"
    bad.write_bytes(b"hello, this is text\n")
    with pytest.raises(ImageReadError) as e:
        decode_image(bad)
    assert "\n" not in str(e.value) and "two\\nlines.png" in str(e.value)


def test_a_folders_entries_named_as_images_that_are_not_files_are_said_and_counted(tmp_path):
    """A FIFO, a link loop and a folder called x.png in an upload folder were left out
    unsaid: the run exited 0 as if the folder were done."""
    from runtime_fixtures import make_onnx_model
    model = make_onnx_model(tmp_path / "m.onnx")
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "good.png"), _noise())
    os.mkfifo(src / "fifo.png")
    os.symlink("b.png", src / "a.png")
    os.symlink("a.png", src / "b.png")
    (src / "x.png").mkdir()
    out = tmp_path / "out"
    r = _sharpen("run", "--model", str(model), "--source", str(src), "--out", str(out),
                 "--quiet", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["good.png"]
    for name, why in [("fifo.png", "not a regular file (a FIFO)"),
                      ("a.png", "a link that loops or points nowhere"),
                      ("b.png", "a link that loops or points nowhere"),
                      ("x.png", "a folder, not an image file")]:
        assert f"warning: skipped: {src / name}: {why}" in r.stderr, r.stderr
    assert "sharpen run: 4 images could not be read" in r.stderr, r.stderr


@pytest.mark.parametrize("argv", [
    ["models", "{d}/w.pt"],
    ["export", "--weights", "{d}/w.pt", "--formats", "onnx", "--out", "{d}/e"],
    ["run", "--model", "{d}/m.onnx", "--source", "{d}/a.png", "--out", "{d}/o.png"],
    ["run", "--model", "{d}/m.tflite", "--source", "{d}/a.png", "--out", "{d}/o.png"],
    ["bench", "--model", "{d}/m.onnx", "--out", "{d}/b"],
])
def test_a_fifo_given_as_weights_or_model_is_refused_not_waited_on(tmp_path, argv):
    for name in ("w.pt", "m.onnx", "m.tflite"):
        os.mkfifo(tmp_path / name)
    cv2.imwrite(str(tmp_path / "a.png"), _noise())
    argv = [a.format(d=tmp_path) for a in argv]
    fifo = next(a for a in argv if a.endswith((".pt", ".onnx", ".tflite")))
    try:   # a bound for a hang, not a speed: bench's imports (torch, modelopt) before its
        # check of --model took 73 s on a loaded 2-core host, and a wait on a FIFO never ends
        r = _sharpen(*argv, cwd=tmp_path, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.fail(f"sharpen {argv[0]} waited on the FIFO {fifo}")
    assert r.returncode == 2, r.stderr
    assert f"{fifo}: not a regular file (a FIFO)" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_a_source_that_is_a_link_loop_is_called_one_not_missing(tmp_path):
    from runtime.sources import SourceError, open_source
    os.symlink("b.png", tmp_path / "a.png")
    os.symlink("a.png", tmp_path / "b.png")
    with pytest.raises(SourceError, match=r"a\.png: a link that loops or points nowhere"):
        open_source(str(tmp_path / "a.png"))


def test_a_fifo_in_a_data_folder_is_said_as_skipped_by_corpus(tmp_path):
    """corpus, synth, labels and evaluate walk their folders with walk_files: a FIFO there was
    left out without a word (a loop of links was said)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.png"), _noise(300, 400))
    cv2.imwrite(str(photos / "b.png"), _noise(300, 400))
    os.mkfifo(photos / "upload.png")
    r = _sharpen("corpus", "--photos", str(photos), "--out", str(tmp_path / "c"), "--quiet",
                 cwd=tmp_path, timeout=120)
    assert (f"warning: {photos}: 1 entry that is not a regular file skipped "
            f"({photos / 'upload.png'}: a FIFO)") in r.stderr, r.stderr


def test_a_file_name_starting_with_a_dash_gets_the_way_to_write_it(tmp_path, capsys):
    from sharpen.cli import main
    with pytest.raises(SystemExit) as e:
        main(["run", "--model", "m.onnx", "--source", "-photo.jpg"])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert ("argument --source: expected one argument (-photo.jpg, starting with '-', is read "
            "as an option: write --source=-photo.jpg or --source ./-photo.jpg)") in err, err
    with pytest.raises(SystemExit):   # a value left out is not told about dashes
        main(["run", "--model", "m.onnx", "--source"])
    assert "starting with '-'" not in capsys.readouterr().err
    for then in (["--out", "sharp/"], ["--outp", "sharp/"], ["--quiet"], ["--tile=512"]):
        with pytest.raises(SystemExit):   # left out before the next option: not its value
            main(["run", "--model", "m.onnx", "--source", *then])
        err = capsys.readouterr().err
        assert "expected one argument" in err and "starting with '-'" not in err, err


def test_a_stats_file_starting_with_a_dash_gets_the_way_to_write_it(capsys):
    """--stats took several files, and argparse's message for it became 'expected at least one
    argument', which the way to write `-s.json` (said for one argument) left out."""
    from sharpen.cli import build_parser, main
    with pytest.raises(SystemExit):
        main(["run", "--model", "m.onnx", "--source", "cam1.mp4", "--stats", "-s.json"])
    err = capsys.readouterr().err
    assert ("argument --stats: expected at least one argument (-s.json, starting with '-', is "
            "read as an option: write --stats=-s.json or --stats ./-s.json)") in err, err
    args = build_parser().parse_args(["run", "--model", "m.onnx", "--source", "cam1.mp4",
                                      "--stats=-s.json"])
    assert args.stats == ["-s.json"], args.stats


def test_a_value_starting_with_a_dash_that_is_no_file_is_not_told_to_write_it_as_one(capsys):
    """evaluate --frames -1,2 was told to write `--frames ./-1,2`, as a file would be."""
    from sharpen.cli import main
    for argv, flag, value in (
            (["evaluate", "--data", "clip.mp4", "--weights", "fast"], "--frames", "-1,2"),
            (["export", "--weights", "fast", "--out", "e/"], "--formats", "-onnx")):
        with pytest.raises(SystemExit):
            main([*argv, flag, value])
        err = capsys.readouterr().err
        assert (f": expected one argument ({value}, starting with '-', is read as an option: "
                f"write {flag}={value})\n") in err, err


def test_corpus_names_a_small_photo_with_a_newline_on_one_line(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(photos / name), _noise(300, 400))
    cv2.imwrite(str(photos / "tiny\nx.png"), _noise(32, 32))
    r = _sharpen("corpus", "--photos", str(photos), "--out", str(tmp_path / "c"), "--quiet",
                 cwd=tmp_path, timeout=120)
    assert f"{photos}/tiny\\nx.png: 32x32 is smaller than the" in r.stderr, r.stderr


def test_a_video_whose_frames_exceed_the_pixel_budget_is_refused_before_decoding(
        tmp_path, monkeypatch):
    """An MJPEG clip of 9000x9000 frames was decoded and run (an ONNX out-of-memory error
    under a memory cap, gigabytes without one); the budget applied to image files only."""
    from runtime.sources import SourceError, open_source
    clip = tmp_path / "big.avi"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for _ in range(3):
        w.write(_noise())
    w.release()
    monkeypatch.setenv("SHARPEN_MAX_PIXELS", "3000")
    with pytest.raises(SourceError, match=r"big\.avi: its frames are 64x48 = 3,072 pixels, "
                                          r"over the pixel budget of 3,000 "
                                          r"\(raise it with the SHARPEN_MAX_PIXELS"):
        open_source(str(clip))
    monkeypatch.setenv("SHARPEN_MAX_PIXELS", "4000")
    src = open_source(str(clip))
    assert (src.width, src.height) == (64, 48)
    src.close()


def test_decoding_keeps_the_decoders_lines_aside_and_lets_anothers_through(capfd):
    """The window around a decode hides fd 2 for the whole process: a line another thread
    writes meanwhile (a warning, the progress line) must still reach the terminal."""
    from runtime.console import native_stderr_captured
    from runtime.imageio import DECODER_NOISE
    with native_stderr_captured(DECODER_NOISE) as said:
        os.write(2, b"libpng warning: iCCP: known incorrect sRGB profile\n")
        os.write(2, b"warning: another thread's line\n")
        os.write(2, b"Corrupt JPEG data: premature end of data segment\n")
        os.write(2, b"[ WARN:0@1.2] global grfmt_tiff.cpp TIFF warning\n")
    err = capfd.readouterr().err
    assert err == "warning: another thread's line\n"
    assert "premature end of data segment" in said[0] and "iCCP" in said[0]
    assert "another thread" not in said[0]


def test_an_apps_own_log_lines_written_during_a_decode_reach_stderr(capfd):
    """An app's logging from another thread ("[INFO] ...", "Warning: ...") written while a
    decode holds fd 2 was taken for a decoder's line and dropped: a thread logging every
    millisecond beside 50 decodes of a Kodak photo lost 452 of its 488 lines."""
    from runtime.console import native_stderr_captured
    from runtime.imageio import DECODER_NOISE
    app = b"[INFO] tick 1\n[ERROR] upload failed\nWarning: disk almost full\n[WARN] slow\n"
    with native_stderr_captured(DECODER_NOISE) as said:
        os.write(2, b"[ WARN:0@0.062] global grfmt_tiff.cpp:123 TIFF_Warning x\n")
        os.write(2, b"[ERROR:0@0.062] global grfmt_tiff.cpp:117 TIFF_Error y\n")
        os.write(2, b"Warning: unknown JFIF revision number 2.01\n")
        os.write(2, app)
    assert capfd.readouterr().err == app.decode()
    assert "TIFF_Warning" in said[0] and "TIFF_Error" in said[0] and "JFIF" in said[0]


def _tiff_with_size_typed(kind: int, order: str = "<") -> bytes:
    """A 64x48 TIFF whose width and height tags are stored as TIFF type `kind`."""
    import io

    import tifffile
    b = io.BytesIO()
    tifffile.imwrite(b, _noise(), byteorder=order)
    d = bytearray(b.getvalue())
    at = struct.unpack_from(order + "I", d, 4)[0]
    for k in range(struct.unpack_from(order + "H", d, at)[0]):
        tag, was = struct.unpack_from(order + "HH", d, at + 2 + 12 * k)
        if tag in (256, 257):
            value = struct.unpack_from(order + ("H" if was == 3 else "I"), d, at + 10 + 12 * k)
            fmt = {1: "B", 6: "b", 3: "H", 8: "h", 4: "I", 9: "i"}[kind]
            struct.pack_into(order + "HHI", d, at + 2 + 12 * k, tag, kind, 1)
            struct.pack_into(order + "I", d, at + 10 + 12 * k, 0)
            struct.pack_into(order + fmt, d, at + 10 + 12 * k, value[0])
    return bytes(d)


@pytest.mark.parametrize("kind", [3, 4, 8, 9])   # SHORT, LONG, SSHORT, SLONG
@pytest.mark.parametrize("order", ["<", ">"])
def test_a_tiffs_size_is_read_whatever_integer_type_its_tags_have(kind, order):
    """libtiff reads a width stored as SSHORT or SLONG: a size left unread skipped the pixel
    budget, and a stranger's TIFF was decoded whole however large."""
    from runtime.imageio import OverPixelBudget, decode_bytes, header_size
    data = _tiff_with_size_typed(kind, order)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).shape[:2] == (48, 64)
    assert header_size(data) == (64, 48)
    with pytest.raises(OverPixelBudget, match="64x48"):
        decode_bytes(data, "t.tif", limit=1000)


@pytest.mark.parametrize("order", ["<", ">"])
def test_a_bigtiffs_size_is_read_from_its_directory(order, capfd):
    """A big-endian BigTIFF's size was left to Pillow, which printed a warning and gave none:
    the pixel budget was skipped."""
    import io

    import tifffile
    from runtime.imageio import OverPixelBudget, decode_bytes, header_size
    b = io.BytesIO()
    tifffile.imwrite(b, _noise(), byteorder=order, bigtiff=True)
    assert header_size(b.getvalue()) == (64, 48)
    with pytest.raises(OverPixelBudget, match="64x48"):
        decode_bytes(b.getvalue(), "t.tif", limit=1000)
    assert capfd.readouterr().err == ""


def test_a_decoder_printing_megabytes_is_kept_aside_in_bounded_memory(capfd):
    """A PNG of 13-byte chunks with bad CRCs makes libpng print two lines per chunk: 6.5 MB of
    them took 290 MB of memory to sort (all read back at once), gigabytes for a larger upload.
    The decoder's text handed back is capped; another line after the flood still comes out."""
    import tracemalloc

    from runtime.console import native_stderr_captured
    from runtime.imageio import DECODER_NOISE
    flood = b"libpng warning: tEXt: CRC error\n" * (1 << 15)   # 1 MiB
    tracemalloc.start()
    try:
        with native_stderr_captured(DECODER_NOISE) as said:
            for _ in range(24):
                os.write(2, flood)
            os.write(2, b"warning: another thread's line\n")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert capfd.readouterr().err == "warning: another thread's line\n"
    assert said[0].startswith("libpng warning: tEXt: CRC error\n")
    assert len(said[0]) <= 1 << 16
    assert peak < 8 << 20, f"{peak:,} bytes"


_LEFT_IN_A_WINDOW = """
import sys, threading
from runtime.console import native_stderr_captured
from runtime.imageio import DECODER_NOISE
from runtime.pipeline import _Worker
inside, never = threading.Event(), threading.Event()

def decoding():   # the capture thread inside a long decode
    with native_stderr_captured(DECODER_NOISE):
        sys.stderr.write("Corrupt JPEG data: premature end of data segment\\n")
        sys.stderr.flush()
        inside.set()
        never.wait()

w = _Worker("capture", decoding, threading.Event(), [])
w.start()
inside.wait()
print("sharpen run: interrupted: out holds 1 of 30 frames only", file=sys.stderr)
if sys.argv[1] == "second-ctrl-c":
    from runtime.cli import _exit_now_if_workers_run
    _exit_now_if_workers_run(130)
"""


@pytest.mark.parametrize("how", ["second-ctrl-c", "returns"])
def test_the_runs_last_lines_reach_stderr_while_a_thread_is_inside_a_decode(tmp_path, how):
    """fd 2 is moved aside for each decode, for the whole process: a second Ctrl-C (os._exit)
    or the end of the program while the capture thread decoded a large image lost every line
    the run wrote since, its closing line included (stderr was empty, exit 130)."""
    script = tmp_path / "left.py"
    script.write_text(_LEFT_IN_A_WINDOW)
    r = subprocess.run([sys.executable, str(script), how], capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, OMP_NUM_THREADS="1",
                                            PYTHONPATH=os.pathsep.join(sys.path)))
    assert "sharpen run: interrupted: out holds 1 of 30 frames only\n" in r.stderr, r
    assert "Corrupt JPEG" not in r.stderr, r.stderr
    if how == "second-ctrl-c":
        assert r.returncode == 130, r
        assert "not waiting for the capture thread" in r.stderr, r.stderr


def test_a_damaged_jpeg_is_refused_also_when_stderr_is_closed(tmp_path):
    """The refusal reads libjpeg's warning off fd 2: a service started with stderr closed
    (2>&-) had no fd 2 to move aside, and a JPEG missing its middle was sharpened, exit 0."""
    from runtime_fixtures import make_onnx_model
    model = make_onnx_model(tmp_path / "m.onnx")
    jpg = _jpeg()
    (tmp_path / "cut.jpg").write_bytes(jpg[:len(jpg) // 2] + b"\xff\xd9")
    r = subprocess.run([sys.executable, "-m", "sharpen.cli", "run", "--model", str(model),
                        "--source", str(tmp_path / "cut.jpg"), "--out",
                        str(tmp_path / "out.png"), "--quiet"],
                       cwd=tmp_path, stdout=subprocess.DEVNULL, timeout=300,
                       env=dict(os.environ, OMP_NUM_THREADS="1"),
                       preexec_fn=lambda: os.close(2))
    assert r.returncode == 2
    assert not (tmp_path / "out.png").exists()


def test_a_cut_jpeg_with_a_stray_byte_in_its_header_is_refused_too(tmp_path):
    """libjpeg prints only its first warning: a stray byte before a header marker (which
    cameras write) came first, and the "premature end of data segment" after it went unsaid;
    the JPEG missing its middle was decoded half grey."""
    jpg = _jpeg()
    sos = jpg.index(b"\xff\xda")
    stray = jpg[:sos] + b"\x00" + jpg[sos:]
    (tmp_path / "stray.jpg").write_bytes(stray)
    assert decode_image(tmp_path / "stray.jpg").shape == (48, 64, 3)
    (tmp_path / "cut.jpg").write_bytes(stray[:len(stray) // 2] + b"\xff\xd9")
    with pytest.raises(UndecodableImage, match=r"cut\.jpg: damaged JPEG data \(the decoder "
                                               r"reports: Corrupt JPEG data: premature end"):
        decode_image(tmp_path / "cut.jpg")


def test_with_stderr_closed_errors_never_reach_the_stream_on_stdout(tmp_path):
    """Python starts without sys.stderr when fd 2 is closed (2>&-), and print(file=None) goes
    to stdout: the error of `--out -` was written into the video stream its reader parses."""
    from runtime_fixtures import make_onnx_model
    model = make_onnx_model(tmp_path / "m.onnx")
    jpg = _jpeg()
    (tmp_path / "cut.jpg").write_bytes(jpg[:len(jpg) // 2] + b"\xff\xd9")
    r = subprocess.run([sys.executable, "-m", "sharpen.cli", "run", "--model", str(model),
                        "--source", str(tmp_path / "cut.jpg"), "--out", "-"],
                       cwd=tmp_path, capture_output=False, stdout=subprocess.PIPE, timeout=300,
                       env=dict(os.environ, OMP_NUM_THREADS="1"),
                       preexec_fn=lambda: os.close(2))
    assert r.returncode == 2
    assert r.stdout == b""


_FORK_DURING_A_DECODE = """
import os, sys, threading, time, warnings
warnings.simplefilter("ignore")   # fork() with threads: Python's DeprecationWarning
import cv2, numpy as np
from runtime.console import native_stderr_captured
from runtime.imageio import DECODER_NOISE, decode_bytes
data = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
inside, done = threading.Event(), threading.Event()

def decoding():   # an app's thread inside a long decode
    with native_stderr_captured(DECODER_NOISE):
        inside.set()
        done.wait()

threading.Thread(target=decoding, daemon=True).start()
inside.wait()
pid = os.fork()
if pid == 0:
    os.write(2, b"child's own line\\n")
    decode_bytes(data, "x.png")
    os.write(2, b"child decoded\\n")
    os._exit(0)
t0 = time.monotonic()
while not os.waitpid(pid, os.WNOHANG)[0]:
    if time.monotonic() - t0 > 20:
        os.kill(pid, 9)
        print("child hung", flush=True)
        break
    time.sleep(0.05)
print("parent done", flush=True)
os._exit(0)   # the decoding thread's window left open: what the child wrote must be out already
"""


def test_a_process_forked_while_another_thread_decodes_decodes_and_writes_stderr(tmp_path):
    """An app forking (multiprocessing's fork) while a thread decodes an image: the child got
    the decode's lock held by a thread it does not have, and hung at its first decode, its
    stderr going into the parent's window file."""
    script = tmp_path / "fork.py"
    script.write_text(_FORK_DURING_A_DECODE)
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, OMP_NUM_THREADS="1",
                                            PYTHONPATH=os.pathsep.join(sys.path)))
    assert r.stdout == "parent done\n", r
    assert r.stderr == "child's own line\nchild decoded\n", r


@pytest.mark.parametrize("name", ["$\\foo$", "$\\sqrt{$", "a$b$c"])
def test_an_image_named_like_tex_is_labelled_as_named_not_a_crash(tmp_path, monkeypatch, name):
    """matplotlib reads text between two `$` as TeX: `sharpen evaluate --out` over an image
    named `$\\foo$.png` scored every image, then died with a traceback in the figure's label,
    before per_image.csv was written; `a$b$c` was labelled `b` in italics."""
    from matplotlib.text import Text

    from distill.evaluate import side_by_side

    img = np.random.default_rng(0).random((24, 24, 3)).astype(np.float32)
    seen = []
    drawn = Text.draw

    def draw(self, renderer):   # the labels as drawn, to check none is parsed as TeX
        seen.append((self.get_text(), self._preprocess_math(self.get_text())[1]))
        return drawn(self, renderer)

    monkeypatch.setattr(Text, "draw", draw)
    out = side_by_side({name: {"input": img, "fast": img}}, tmp_path / "side.png", side=16,
                       title=f"/uploads/{name}")
    assert out.is_file()
    assert any(name in text for text, _ in seen), seen
    assert not any(math for _, math in seen), seen


def _weights_elsewhere(tmp_path: Path, location: str) -> Path:
    """The test model with its weights kept as ONNX external data at `location`."""
    import onnx
    from onnx import TensorProto

    from runtime_fixtures import make_onnx_model

    model = onnx.load(str(make_onnx_model(tmp_path / "plain.onnx")))
    w = model.graph.initializer[0]
    data = w.raw_data or np.asarray(w.float_data, np.float32).tobytes()
    (tmp_path / "outside.bin").write_bytes(data)
    w.ClearField("raw_data")
    w.ClearField("float_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("length", str(len(data)))):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    (tmp_path / "models").mkdir()
    onnx.save(model, str(tmp_path / "models" / "m.onnx"))
    return tmp_path / "models" / "m.onnx"


@pytest.mark.parametrize("location", ["../outside.bin", "ABS", "missing.bin"])
def test_an_onnx_models_weights_outside_its_folder_are_said_so_not_a_newer_version(
        tmp_path, location):
    """A model from elsewhere whose weights are external data out of its folder (a path up
    or absolute, to read a file of the server's) or missing: ONNX Runtime refuses it, and we
    said "made for a newer version, or a damaged copy?", which sent the user to upgrade."""
    from runtime.backends import ModelError, load_backend

    if location == "ABS":
        location = str(tmp_path / "outside.bin")
    model = _weights_elsewhere(tmp_path, location)
    with pytest.raises(ModelError) as ei:
        load_backend(model, threads=1)
    msg = str(ei.value)
    assert str(model) in msg and "newer version" not in msg, msg
    assert "its weights in a separate file" in msg, msg
    assert location in msg or "Absolute path not allowed" in msg, msg


def test_evaluate_shows_an_image_named_with_a_newline_on_one_line(tmp_path):
    """An uploaded pair named `x\\nsharpen evaluate: 0 images skipped.png`: its warnings
    were one line each, but the table's worst image, the verdict and the closing lines
    printed the newline as it is, so the name began a line of its own, as a log reader takes
    a line of ours."""
    from pair_fixtures import noise_pairs
    from runtime_fixtures import make_onnx_model

    pairs = noise_pairs(tmp_path / "pairs", 2, size=32)
    for side in ("input", "target"):
        for i in range(2):
            (pairs / side / f"im0{i}.png").rename(pairs / side / f"{i}\nforged line.png")
    model = make_onnx_model(tmp_path / "m.onnx")
    r = _sharpen("evaluate", "--model", str(model), "--data", str(pairs), "--threads", "1",
                 "--quiet", "--out", str(tmp_path / "ev"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    said = r.stdout + r.stderr
    assert "\\nforged line" in said, said
    assert not [line for line in said.splitlines() if line.startswith("forged line")], said


@pytest.mark.parametrize("head, said", [
    (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", "an MP4/MOV file"),
    (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "a HEIC/AVIF photo"),
    (b"\x1aE\xdf\xa3\x9fB\x86\x81\x01", "a Matroska/WebM file"),
    # A site's favicon.ico saved as .png: its 00 00 01 was taken for an MPEG start code.
    (b"\x00\x00\x01\x00\x01\x00\x20\x20\x00\x00", "a Windows ICO icon")])
def test_a_video_or_heic_under_an_image_extension_is_said_to_be_one(tmp_path, head, said):
    """An upload's extension lies: a phone's clip or HEIC photo saved as photo.jpg. It was
    "not a readable image (corrupt or unsupported format)", and the user looked for damage."""
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(head + bytes(4096))
    with pytest.raises(UndecodableImage) as e:
        decode_image(bad)
    assert str(bad) in str(e.value) and f"by its first bytes {said}" in str(e.value), e.value


@pytest.mark.parametrize("name", ["../escaped.png", "sub/../../escaped.png", "ABSOLUTE"])
def test_an_image_folder_output_writes_no_frame_named_out_of_it(tmp_path, name):
    """An app's own Source (`runtime.Source`, exported) naming its frames after the names its
    uploaders gave: a frame named `../x.png`, or an absolute path, was written there, out of
    the output folder, by the sink that writes `--out sharp/`."""
    from runtime.image_sink import ImageSink
    from runtime.sinks import SinkError

    if name == "ABSOLUTE":
        name = str(tmp_path / "escaped.png")
    sink = ImageSink(tmp_path / "out")
    with pytest.raises(SinkError) as e:
        sink.write(_noise(), _noise(), name)
    sink.close()
    assert "escaped.png" in str(e.value) and "outside" in str(e.value), e.value
    assert not (tmp_path / "escaped.png").exists()


@pytest.mark.parametrize("name", ["", ".", "./"])
def test_an_image_folder_output_writes_no_frame_named_as_the_folder_itself(tmp_path, name):
    """A frame named '' or '.' is the output folder itself: `sharp/` + '.png' was written
    beside it as `sharp.png`, out of the folder, past the check for '..' and a root."""
    from runtime.image_sink import ImageSink
    from runtime.sinks import SinkError

    sink = ImageSink(tmp_path / "out")
    with pytest.raises(SinkError) as e:
        sink.write(_noise(), _noise(), name)
    sink.close()
    assert "outside" in str(e.value) and str(tmp_path / "out") in str(e.value), e.value
    assert [p.name for p in tmp_path.iterdir() if p.name != "out"] == []   # no out.png
