"""`sharpen run`'s inputs and outputs at their edges: output names it cannot write, an image
served over HTTP, a live stream that reconnects showing the picture it started with."""
from __future__ import annotations


import os
import re
import struct
import threading
import warnings
from typing import Optional

import cv2
import numpy as np
import pytest

from strace_check import (assert_durable_write, assert_durable_write_observed,  # noqa: E402
                          observed_calls)
from runtime_fixtures import (FRAME_H, FRAME_W, band_index, onnx_model, run_cli,  # noqa: E402
                              runtime_warnings, textured_frame)

from runtime.pipeline import run_stream  # noqa: E402
from runtime.sinks import VIDEO_OUTPUT_EXTS, SinkError  # noqa: E402
from runtime.video_sink import fourcc_for  # noqa: E402
from runtime.sources import (ESTIMATED_COUNT_EXTS, SourceError, VideoSource,  # noqa: E402
                             open_source)

__all__ = ["onnx_model"]  # the fixture is used by name


def _run(capsys, *argv: str) -> tuple[int, str]:
    rc = run_cli(["run", *argv, "--quiet"])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("name", ["x.gif", "x.GIF", "anim.apng", "x.h264", "cam.HEVC"])
def test_an_animation_output_is_refused_before_the_run_naming_what_is_written(
        tmp_path, capsys, onnx_model, name):
    """--out x.gif wrote a folder of PNG frames named x.gif (with a warning): someone asking
    for a GIF wants one file, and OpenCV cannot be relied on to write GIF. Refused before the
    model loads or the source opens, naming the option and the extensions written. So is a
    raw H.264/HEVC stream, whose encoders pip's OpenCV lacks (the writer failed at the first
    frame)."""
    video = tmp_path / "in.mp4"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"mp4v"), 10, (32, 24))
    for i in range(3):
        vw.write(textured_frame(i, 24, 32))
    vw.release()
    out = tmp_path / "sub" / name
    rc, err = _run(capsys, "--model", str(tmp_path / "missing.onnx"), "--source",
                   str(tmp_path / "missing.mp4"), "--out", str(out))
    # The output is refused first: neither the model nor the source was looked at.
    assert rc == 2 and err.count("error:") == 1, err
    assert f"--out {out}:" in err and "missing" not in err.replace(str(out), ""), err
    assert ".mp4" in err and ".avi" in err and ".png" in err and ".jpg" in err, err
    assert ".h264" not in err.split("(")[1] and ".hevc" not in err.split("(")[1], err
    assert "folder" in err and "ffmpeg" in err, err
    assert not (tmp_path / "sub").exists()
    # From Python: the keyword, and nothing made either.
    with pytest.raises(SinkError, match=rf"^output={out}: .* is not an output format"):
        run_stream(onnx_model, str(video), out)
    assert not (tmp_path / "sub").exists()


@pytest.mark.parametrize("out", ["/dev/video97",
                                 "appsrc ! videoconvert ! x264enc ! filesink location=a.mkv",
                                 "appsrc ! videoconvert ! autovideosink",
                                 "videoconvert ! x264enc ! mp4mux ! filesink location=a.mp4"])
def test_a_v4l2_device_or_gstreamer_pipeline_output_is_refused_with_the_pipe_to_use(
        tmp_path, capsys, monkeypatch, out):
    """A pipeline integrator's --out /dev/video10 (a v4l2loopback device whose module was not
    loaded) made a folder of PNG frames in /dev, exit 0; a GStreamer writer pipeline became a
    video file (or a folder of PNGs) named after the pipeline. Neither is written here: both
    are refused before the model loads, naming the --out - pipe that feeds them."""
    monkeypatch.chdir(tmp_path)
    rc, err = _run(capsys, "--model", str(tmp_path / "missing.onnx"), "--source",
                   str(tmp_path / "missing.mp4"), "--out", out)
    assert rc == 2 and err.count("error:") == 1 and "missing" not in err, err
    assert f"--out {out}:" in err and "--out - |" in err, err
    assert ("-f v4l2" in err) if out.startswith("/dev/") else ("fdsrc ! y4mdec !" in err), err
    assert not os.path.lexists(out) and list(tmp_path.iterdir()) == []
    with pytest.raises(SinkError, match=r"^output=.*: .* runtime\.Sink "):
        run_stream(tmp_path / "missing.onnx", str(tmp_path / "missing.mp4"), out)
    assert not os.path.lexists(out)


@pytest.mark.parametrize("out", ["/dev/video97", "appsrc ! videoconvert ! autovideosink"])
def test_a_raw_source_is_told_the_raw_pipe_that_feeds_a_device_or_pipeline(
        tmp_path, capsys, monkeypatch, out):
    """With --source raw:WxH, --out - writes raw BGR frames, yet --out /dev/video10 was told to
    pipe them into ffmpeg -f yuv4mpegpipe (which refuses them) and a pipeline into y4mdec: the
    pipe named now reads raw BGR of that size, GStreamer's at 3*W bytes a row (not its own
    4-byte padding, which reads an odd width's frames askew)."""
    monkeypatch.chdir(tmp_path)
    rc, err = _run(capsys, "--model", str(tmp_path / "missing.onnx"), "--source",
                   "raw:321x180@10", "--out", out)
    assert rc == 2 and err.count("error:") == 1 and "(raw BGR frames)" in err, err
    assert "yuv4mpegpipe" not in err and "y4mdec" not in err, err
    if out.startswith("/dev/"):
        assert "ffmpeg -f rawvideo -pix_fmt bgr24 -s 321x180 -r 10 -i - -f v4l2" in err, err
    else:
        assert ("fdsrc ! rawvideoparse format=bgr width=321 height=180 "
                "'plane-strides=<963>' framerate=10/1 ! videoconvert ! autovideosink") in err, err


@pytest.mark.parametrize("kind", ["null", "fifo"])
def test_a_device_or_named_pipe_output_is_told_that_out_dash_writes_into_it(
        tmp_path, capsys, monkeypatch, kind):
    """--out /dev/null (a run that writes nothing) or --out a FIFO said '... exists and is not
    a folder', leaving the way to them unsaid: --out - redirected there."""
    monkeypatch.chdir(tmp_path)
    out = os.devnull if kind == "null" else str(tmp_path / "feed")
    if kind == "fifo":
        os.mkfifo(out)
    image = tmp_path / "in.png"
    cv2.imwrite(str(image), np.full((FRAME_H, FRAME_W, 3), 90, np.uint8))
    rc, err = _run(capsys, "--model", str(tmp_path / "missing.onnx"), "--source", str(image),
                   "--out", out)
    assert rc == 2 and f"--out {out} is a device or pipe, not a file or folder" in err, err
    assert f"--out - > {out}" in err, err


@pytest.mark.parametrize("out", ["Wow!", "best!/", "take 2!"])
def test_an_image_folder_named_with_a_bang_is_written_not_refused_as_a_pipeline(
        tmp_path, capsys, monkeypatch, onnx_model, out):
    """--out Wow! (a new folder of a name with '!') was refused as a GStreamer writer
    pipeline: a pipeline that writes ends in a sink element (filesink, autovideosink), which
    a folder's name does not."""
    monkeypatch.chdir(tmp_path)
    image = tmp_path / "in.png"
    cv2.imwrite(str(image), np.full((FRAME_H, FRAME_W, 3), 90, np.uint8))
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(image), "--out", out,
                   "--threads", "1")
    assert rc == 0 and "GStreamer" not in err, err
    assert (tmp_path / out / "in.png").is_file(), sorted(os.listdir(tmp_path))


def test_every_video_output_extension_plays_back_or_is_refused_before_anything_opens(tmp_path):
    """`--out x.h264` was taken as a video output, but the raw H.264/HEVC muxers take only
    codecs pip's OpenCV cannot encode: the writer failed at the first frame, after the model
    and the source had opened. Every video extension is now either written (a few frames,
    read back with cv2.VideoCapture) or refused up front, naming those that are written; an
    extension added to VIDEO_EXTS is checked here."""
    import re

    from runtime.imageio import VIDEO_EXTS
    from runtime.sinks import output_sink, refuse_unwritten_format

    frames = [textured_frame(i, 48, 64) for i in range(4)]
    written, listed = [], set()
    for ext in sorted(VIDEO_EXTS):
        path = tmp_path / f"x{ext}"
        try:
            refuse_unwritten_format(path)
        except SinkError as e:
            listed.add(re.search(r"give a video file \(([^)]*)\)", str(e)).group(1))
            continue
        sink = output_sink(path, 10.0, single_image=False)
        for i, f in enumerate(frames):
            sink.write(f, f, f"frame_{i}")
        sink.close()
        cap, shapes = cv2.VideoCapture(str(path)), []
        while (got := cap.read())[0]:
            shapes.append(got[1].shape)
        cap.release()
        assert shapes == [(48, 64, 3)] * 4, (ext, shapes)
        written.append(ext)
    assert {".mp4", ".avi", ".mkv", ".webm"} <= set(written), written
    assert listed <= {", ".join(written)}, listed


@pytest.fixture
def served(tmp_path):
    """(folder, URL) of a folder served over HTTP on 127.0.0.1, as a web server serves files;
    a file named *.as-video.jpg is answered as video/mp4, as a camera's stream may be."""
    import functools
    import http.server

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def guess_type(self, path):
            return "video/mp4" if str(path).endswith(".as-video.jpg") else super().guess_type(path)

    folder = tmp_path / "www"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _photo() -> np.ndarray:
    """A BGRA photo: its alpha channel, kept aside and written back, shows which reader ran."""
    bgr = cv2.resize(textured_frame(3), (48, 32))
    alpha = np.tile(np.linspace(0, 255, 48, dtype=np.uint8), (32, 1))
    return np.dstack([bgr, alpha])


def test_an_image_url_is_sharpened_into_an_image_as_a_local_image_is(
        served, tmp_path, capsys, onnx_model, monkeypatch):
    """`--source https://host/photo.png --out x.png` was refused: a URL was a stream, and an
    image output takes a single image. A URL whose path names an image is now fetched and
    read as a local image file is (its alpha kept, the same result byte for byte)."""
    folder, url = served
    cv2.imwrite(str(folder / "photo.png"), _photo())
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(folder / "photo.png"),
                   "--out", str(tmp_path / "local.png"))
    assert rc == 0, err
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", f"{url}/photo.png",
                   "--out", str(tmp_path / "x.png"))
    assert rc == 0 and "done: 1 frame" in err, err
    assert (tmp_path / "x.png").read_bytes() == (tmp_path / "local.png").read_bytes()
    assert cv2.imread(str(tmp_path / "x.png"), cv2.IMREAD_UNCHANGED).shape == (32, 48, 4)
    # A query string is no part of the name; without --out the result is an image too.
    monkeypatch.chdir(tmp_path)
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", f"{url}/photo.png?w=48")
    assert rc == 0 and "results written to runs/sharpen/photo.png" in err, err
    assert (tmp_path / "runs/sharpen/photo.png").read_bytes() == (tmp_path / "x.png").read_bytes()


def test_an_image_url_fails_as_a_local_image_does_and_a_stream_under_one_is_a_stream(
        served, tmp_path, capsys, onnx_model):
    folder, url = served
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", f"{url}/gone.jpg",
                   "--out", str(tmp_path / "x.png"))
    assert rc == 2 and "gone.jpg" in err and "HTTP 404" in err, err
    jpeg = cv2.imencode(".jpg", textured_frame(1))[1].tobytes()
    (folder / "cut.jpg").write_bytes(jpeg[:len(jpeg) * 2 // 3])
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", f"{url}/cut.jpg",
                   "--out", str(tmp_path / "x.png"))
    assert rc == 2 and f"{url}/cut.jpg: truncated or damaged file" in err, err
    assert not (tmp_path / "x.png").exists()
    cv2.imwrite(str(folder / "photo.jpg"), textured_frame(1))
    with pytest.raises(SourceError, match="images are all processed"):
        open_source(f"{url}/photo.jpg", live=True)   # as for a local image
    # Served as video (an MJPEG camera's snapshot-looking URL): read as a stream by FFmpeg.
    _write_avi(folder / "cam.as-video.jpg", [textured_frame(i) for i in range(3)])
    src = open_source(f"{url}/cam.as-video.jpg", live=True)
    assert isinstance(src, VideoSource) and src.kind == "stream"
    src.close()


def test_a_multi_page_tiff_url_says_only_its_first_page_is_sharpened_as_a_local_one_does(
        served, tmp_path, capsys, onnx_model):
    """A local multi-page TIFF says that only its first page is sharpened; the same TIFF
    fetched from a URL said nothing. A one-page TIFF says nothing either way."""
    folder, url = served
    pages = [np.full((24, 32, 3), 60, np.uint8), np.full((24, 32, 3), 200, np.uint8)]
    assert cv2.imwritemulti(str(folder / "scan.tif"), pages)
    assert cv2.imwrite(str(folder / "one.tif"), pages[0])
    for name, said in (("scan.tif", [f"warning: {url}/scan.tif: a TIFF of 2 pages; only the "
                                     "first page is sharpened"]), ("one.tif", [])):
        rc, err = _run(capsys, "--model", str(onnx_model), "--source", f"{url}/{name}",
                       "--out", str(tmp_path / f"{name}.png"))
        assert rc == 0 and [ln for ln in err.splitlines() if "page" in ln] == said, err
        assert np.median(cv2.imread(str(tmp_path / f"{name}.png"))) == 60


def _tiff_chain(order: str, nexts: list[int], first: int = 8, big: bool = False) -> bytes:
    """A TIFF header and a chain of empty image directories, laid end to end from `first`;
    directory i points on to `nexts[i]` (0 ends the chain)."""
    import struct

    count, offset = ("Q", "Q") if big else ("H", "I")
    head = (b"II" if order == "<" else b"MM") + struct.pack(order + "H", 43 if big else 42)
    head += struct.pack(order + "HHQ", 8, 0, first) if big else struct.pack(order + "I", first)
    ifds = b"".join(struct.pack(order + count + offset, 0, n) for n in nexts)
    return head + bytes(max(0, min(first, 64) - len(head))) + ifds


@pytest.mark.parametrize("order", ["<", ">"])
def test_a_tiffs_page_chain_that_loops_or_runs_off_its_bytes_counts_what_it_safely_can(order):
    """The chain of pages is read from a URL's bytes, which anyone may have written: a chain
    that points back on itself, past the end, or is cut off counts the pages read up to
    there, and never hangs or raises (OpenCV's decode says what is wrong with the image)."""
    from runtime.imageio import tiff_pages_in

    assert tiff_pages_in(_tiff_chain(order, [8])) == 1                  # points at itself
    assert tiff_pages_in(_tiff_chain(order, [14, 20, 8])) == 3          # back to the first
    assert tiff_pages_in(_tiff_chain(order, [14, 2 ** 32 - 1])) == 2    # past the end
    assert tiff_pages_in(_tiff_chain(order, [14, 0])) == 2
    whole = _tiff_chain(order, [14, 20, 0])
    assert [tiff_pages_in(whole[:n]) for n in range(len(whole) + 1)] == (
        [1] * 20 + [2] * 6 + [3])   # truncated: only whole directories count
    # BigTIFF: 8-byte counts and offsets, up to 2**64 - 1, far past what an index can hold.
    assert tiff_pages_in(_tiff_chain(order, [32, 2 ** 64 - 1], first=16, big=True)) == 2
    assert tiff_pages_in(_tiff_chain(order, [0], first=2 ** 64 - 1, big=True)) == 1
    huge = bytearray(_tiff_chain(order, [0], first=16, big=True))
    huge[16:24] = b"\xff" * 8   # a directory of 2**64 - 1 entries
    assert tiff_pages_in(bytes(huge)) == 1


def test_a_tiffs_page_chain_is_walked_only_so_far(tmp_path):
    """A URL's bytes may chain a directory every few bytes (six, in a classic TIFF): 85
    million of them in the 513 MB a fetch admits, each remembered to spot a loop, which took
    minutes and gigabytes. The walk stops at MAX_TIFF_PAGES, far more than any real TIFF."""
    from runtime.imageio import MAX_TIFF_PAGES, tiff_pages_in

    n = MAX_TIFF_PAGES + 10
    data = _tiff_chain("<", [8 + 6 * (i + 1) for i in range(n - 1)] + [0])
    assert tiff_pages_in(data) == MAX_TIFF_PAGES


def test_a_url_tiff_of_more_pages_than_are_counted_is_said_to_have_at_least_that_many():
    """The page warning of a URL's TIFF said "a TIFF of 65535 pages" for one of more: the
    walk stops at MAX_TIFF_PAGES, so that count is a floor. A TIFF of exactly that many pages
    is said as it is."""
    from runtime import SharpenWarning
    from runtime.imageio import MAX_TIFF_PAGES
    from runtime.sources import UrlImageSource

    ok, tif = cv2.imencode(".tif", np.full((6, 8, 3), 90, np.uint8))
    assert ok
    tif = bytearray(tif.tobytes())
    first = struct.unpack_from("<I", tif, 4)[0]
    link = first + 2 + 12 * struct.unpack_from("<H", tif, first)[0]   # its next-page offset

    def pages_said(n: int) -> str:
        """The warning for OpenCV's page followed by a chain of n - 1 empty directories."""
        start = len(tif) + len(tif) % 2
        chain = b"".join(struct.pack("<HI", 0, start + 6 * (i + 1) if i < n - 2 else 0)
                         for i in range(n - 1))
        data = bytearray(tif) + bytes(start - len(tif)) + chain
        struct.pack_into("<I", data, link, start)
        src = UrlImageSource("http://host/stack.tif", bytes(data), "stack.tif")
        with pytest.warns(SharpenWarning, match="TIFF of") as said:
            [frame] = src.frames(threading.Event())
        assert frame.image.shape[:2] == (6, 8)
        return str(said[0].message)

    assert pages_said(MAX_TIFF_PAGES + 10) == (
        f"http://host/stack.tif: a TIFF of at least {MAX_TIFF_PAGES} pages (counted no "
        "further); only the first page is sharpened")
    assert pages_said(MAX_TIFF_PAGES) == (
        f"http://host/stack.tif: a TIFF of {MAX_TIFF_PAGES} pages; only the first page is "
        "sharpened")


def test_a_url_tiff_whose_page_chain_is_broken_is_sharpened_without_a_page_warning(
        served, tmp_path, capsys, onnx_model):
    """A BigTIFF from a URL whose first page decodes but whose next-page offset is 2**64 - 1
    raised OverflowError out of the page count, after the decode had succeeded."""
    import io
    import struct

    image = pytest.importorskip("PIL.Image")
    folder, url = served
    buf = io.BytesIO()
    image.new("RGB", (32, 24), (60, 60, 60)).save(buf, format="TIFF", big_tiff=True)
    data = bytearray(buf.getvalue())
    first = struct.unpack_from("<Q", data, 8)[0]
    n = struct.unpack_from("<Q", data, first)[0]
    struct.pack_into("<Q", data, first + 8 + 20 * n, 2 ** 64 - 1)
    (folder / "broken.tif").write_bytes(bytes(data))
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", f"{url}/broken.tif",
                   "--out", str(tmp_path / "broken.png"))
    assert rc == 0 and "page" not in err, err
    assert np.median(cv2.imread(str(tmp_path / "broken.png"))) == 60


def test_a_tiffs_pages_are_counted_in_its_bytes_as_opencv_counts_its_file(tmp_path):
    """A URL's TIFF has no file for cv2.imcount: its chain of pages is followed in the bytes,
    and must count what OpenCV counts (classic TIFF by OpenCV, BigTIFF by Pillow)."""
    from runtime.imageio import tiff_pages_in

    files = []
    for n in (1, 3):
        files.append(tmp_path / f"p{n}.tif")
        assert cv2.imwritemulti(str(files[-1]), [np.full((6, 8, 3), 40 * i, np.uint8)
                                                 for i in range(n)])
    image = pytest.importorskip("PIL.Image")
    pages = [image.new("RGB", (8, 6), (40 * i, 0, 0)) for i in range(3)]
    files.append(tmp_path / "big.tif")
    pages[0].save(files[-1], save_all=True, append_images=pages[1:], big_tiff=True)
    for f in files:
        assert tiff_pages_in(f.read_bytes()) == cv2.imcount(str(f)), f
    assert files[-1].read_bytes()[2] == 43   # BigTIFF
    assert tiff_pages_in(cv2.imencode(".png", np.zeros((6, 8), np.uint8))[1].tobytes()) == 1


def test_stream_only_options_for_an_image_url_are_said_and_its_timeout_bounds_the_fetch(
        served, tmp_path, capsys, onnx_model):
    """An image URL is fetched once and read as one image: `--reconnect` did nothing there
    and nothing said so. --timeout still bounds the fetch (a server that never answers)."""
    import socket
    import time

    folder, url = served
    cv2.imwrite(str(folder / "photo.png"), _photo())
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", f"{url}/photo.png",
                   "--reconnect", "3", "--timeout", "5", "--out", str(tmp_path / "x.png"))
    assert rc == 0 and "done: 1 frame" in err, err
    assert (f"warning: --reconnect applies to camera, v4l2, gstreamer, stream sources, not to "
            f"--source {url}/photo.png, an image URL, fetched once and read as one image; it "
            "has no effect unless the URL answers with a stream") in err, err
    assert "--timeout applies" not in err, err
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", f"{url}/photo.png",
                   "--out", str(tmp_path / "y.png"))
    assert rc == 0 and "warning" not in err, err
    with socket.socket() as silent:   # listens, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        t0 = time.monotonic()
        rc, err = _run(capsys, "--model", str(onnx_model), "--source",
                       f"http://127.0.0.1:{silent.getsockname()[1]}/photo.png",
                       "--timeout", "0.5", "--out", str(tmp_path / "z.png"))
    # A camera's snapshot URL not answering may answer later: 3, a camera not there, not 2
    assert rc == 3 and "no answer within 0.5 s (--timeout)" in err, err
    assert time.monotonic() - t0 < 15


def test_an_image_urls_password_is_sent_as_http_authentication_and_never_shown(tmp_path):
    """Cameras serve snapshots as http://admin:PASSWORD@camera/snapshot.jpg, which FFmpeg
    reads; urllib takes no password in the URL, so it is sent when the server asks."""
    import base64
    import functools
    import http.server

    cv2.imwrite(str(tmp_path / "snap.jpg"), textured_frame(2))

    class Guarded(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.headers.get("Authorization") != "Basic " + base64.b64encode(
                    b"admin:p@ss").decode():
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                self.end_headers()
                return
            super().do_GET()

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Guarded, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{server.server_address[1]}"
    try:
        src = open_source(f"http://admin:p%40ss@{host}/snap.jpg")
        assert src.spec == f"http://admin:***@{host}/snap.jpg" and src.frame_count == 1
        assert next(src.frames(threading.Event())).image.shape == textured_frame(2).shape
        with pytest.raises(SourceError, match=r"HTTP 401") as e:
            open_source(f"http://admin:wrong@{host}/snap.jpg")
        assert "wrong" not in str(e.value) and "admin:***@" in str(e.value)
    finally:
        server.shutdown()
        server.server_close()


def _write_avi(path, frames) -> None:
    """MJPG: every frame stands alone, so equal pictures decode to equal bytes, as a still
    scene from a network encoder does."""
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (w, h))
    for f in frames:
        vw.write(f)
    vw.release()


def _still_opening_stream(video, card, still: int, live: bool, **kw) -> VideoSource:
    """A file opened as a stream that declares no length (its end reads as a disconnect),
    written as `still` frames of `card`, then two that move (bands 1 and 2)."""
    size = dict(h=card.shape[0], w=card.shape[1])
    _write_avi(video, [card] * still + [textured_frame(i, **size) for i in (1, 2)])
    src = VideoSource("cam", str(video), live=live, kind="stream", reconnect_attempts=3,
                      reconnect_delay=0.01, **kw)
    src.frame_count = None   # a live stream declares no length
    return src


def _live_run(video, on_frame, attempts: int = 3) -> tuple[list[np.ndarray], list[str]]:
    """Frames of a file opened as a live stream (its end looks like a disconnect; rewriting
    it is what the camera shows after reconnecting) until it is gone for good, and the
    warnings said."""
    src = VideoSource("cam", str(video), live=True, kind="stream", reconnect_attempts=attempts,
                      reconnect_delay=0.01)
    src.frame_count = None   # a live stream declares no length
    got: list[np.ndarray] = []
    with runtime_warnings() as said, pytest.raises(SourceError, match="did not come back"):
        for fr in src.frames(threading.Event()):
            got.append(fr.image)
            on_frame(len(got))
            assert len(got) < 50, "looped"
    src.close()
    return got, said


def test_a_still_live_stream_that_reconnects_is_not_taken_for_a_recording(tmp_path):
    """A live stream of a still picture (a test card, a parked camera's logo) reconnects to
    the same bytes it started with, which ended the run as 'a recording, not a live stream':
    a picture that never changed proves no restart."""
    video = tmp_path / "cam.avi"
    card = textured_frame(0)
    _write_avi(video, [card] * 3)

    def after(n):
        if n == 7:   # past two reconnects
            video.unlink()

    got, said = _live_run(video, after)
    assert len(got) >= 7 and not any("recording" in m for m in said), said


def test_a_live_stream_that_reconnects_to_its_opening_card_goes_on(tmp_path):
    """A stream whose server shows a card before the camera's picture (a restreamer's
    'connecting'), then the picture, shows the card again after a drop: the first frame
    after reconnecting equals the run's first, but what follows is the camera's new picture,
    not the old one again. Reading on past the card tells a restart from a reconnect."""
    video = tmp_path / "cam.avi"
    card = textured_frame(15)
    _write_avi(video, [card, card, textured_frame(1), textured_frame(2)])

    def after(n):
        if n == 4:
            _write_avi(video, [card, card, textured_frame(10), textured_frame(11)])
        if n == 6:
            video.unlink()

    got, said = _live_run(video, after)
    assert not any("recording" in m for m in said), said
    assert [band_index(f) for f in got[:4]] == [15, 15, 1, 2]
    assert 10 in [band_index(f) for f in got[4:]]


def test_a_live_streams_opening_card_read_while_comparing_after_a_reconnect_is_yielded(
        tmp_path):
    """After a reconnect, the frames that repeat the run's opening card are read to tell a
    restarted recording from a live stream; once the picture after them differs (live), they
    were dropped: a live stream's frames are all yielded, in the order they came."""
    video = tmp_path / "cam.avi"
    card = textured_frame(15)
    _write_avi(video, [card, card, textured_frame(1), textured_frame(2)])

    def after(n):
        if n == 4:
            _write_avi(video, [card, card, card, textured_frame(10), textured_frame(11)])
        if n == 9:
            video.unlink()

    got, said = _live_run(video, after)
    assert not any("recording" in m for m in said), said
    assert [band_index(f) for f in got] == [15, 15, 1, 2, 15, 15, 15, 10, 11]


@pytest.mark.parametrize("live", [True, False])
def test_a_live_streams_still_opening_compared_after_a_reconnect_is_held_once(tmp_path, live):
    """The frames that repeat the opening card after a reconnect are kept to be yielded; up to
    OPENING_FRAMES of them (150: about a GB at 1080p) were each held as an array of their own,
    though they are byte for byte one picture. Held once, the run's memory stays a few frames;
    each is still yielded, in order, as an array of its own, stamped when it was read. So with
    --no-live too, which holds the whole still opening, however long."""
    import time
    import tracemalloc

    video = tmp_path / "cam.avi"
    big = dict(h=256, w=256)   # 192 KiB a frame
    card, still = textured_frame(15, **big), 40
    src = _still_opening_stream(video, card, still, live)
    got: list[int] = []
    stamps: list[float] = []
    arrived: list[float] = []
    tracemalloc.start()
    try:
        with runtime_warnings() as said, pytest.raises(SourceError, match="did not come back"):
            for fr in src.frames(threading.Event()):
                got.append(band_index(fr.image))
                stamps.append(fr.t_capture)
                arrived.append(time.perf_counter())
                fr.image[:] = 0   # a consumer drawing on its frame: none after it may change
                if len(got) == still + 2:   # the drop: it reopens on the card, then moves on
                    _write_avi(video, [card] * (still + 1) + [textured_frame(10, **big)])
                    t_reopen = time.perf_counter()
                if len(got) == 2 * still + 4:
                    video.unlink()
                assert len(got) < 3 * still, "looped"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        src.close()
    assert not any("recording" in m for m in said), said
    assert got == [15] * still + [1, 2] + [15] * (still + 1) + [10], got
    assert peak < 12 * card.nbytes, f"peak {peak / card.nbytes:.1f} frames held"
    # Stamped when read, all before the first was yielded, not when each was yielded: the
    # pipeline's latency and its live drops of stale frames go by it.
    held = stamps[still + 2:-1]   # the cards read to compare (the last frame is read after)
    assert held == sorted(held) and t_reopen < held[0] and held[-1] < arrived[still + 2]


@pytest.mark.parametrize("live", [True, False])
def test_a_live_run_shows_a_reopened_streams_long_still_opening_as_it_comes(
        tmp_path, monkeypatch, live):
    """After a reconnect, the frames that repeat a stream's still opening were all held until
    the comparison with the run's opening decided, however long that opening had been still: a
    live stream whose 'no signal' card had lasted an hour came back on it and its output stood
    for an hour. A live run holds them LIVE_HOLD_S at most (here none), then yields each as
    read; the comparison goes on, and a live stream is still told from a recording. --no-live
    (written to a file) holds them as before."""
    import time

    from runtime import video_source

    monkeypatch.setattr(video_source, "LIVE_HOLD_S", 0.0)
    video = tmp_path / "cam.avi"
    card, still = textured_frame(15), 30
    src = _still_opening_stream(video, card, still, live)
    got: list[int] = []
    stamps: list[float] = []
    arrived: list[float] = []
    said_by: dict[str, int] = {}   # each warning, and how many frames had come before it
    with warnings.catch_warnings(record=True) as rec, \
            pytest.raises(SourceError, match="did not come back"):
        warnings.simplefilter("always")
        for fr in src.frames(threading.Event()):
            said_by.update((str(w.message), len(got)) for w in rec[len(said_by):])
            got.append(band_index(fr.image))
            stamps.append(fr.t_capture)
            arrived.append(time.perf_counter())
            if len(got) == still + 2:   # the drop: it reopens on the card, then moves on
                _write_avi(video, [card] * (still + 5) + [textured_frame(10)])
            if len(got) == 2 * still + 8:
                video.unlink()
            assert len(got) < 3 * still, "looped"
    src.close()
    said = [str(w.message) for w in rec]
    assert not any("recording" in m for m in said), said
    assert got == [15] * still + [1, 2] + [15] * (still + 5) + [10], got
    # Said as its frames are shown again, not once the comparison decided.
    lost = "cam': stopped after 32 frames in all; reconnecting (up to 3 attempts)"
    assert [n for m, n in said_by.items() if lost in m] == [still + 2], said_by
    again = range(still + 2, 2 * still + 3)   # the card read again to compare: still + 1
    if live:   # each yielded before the next was read
        assert all(arrived[k] < stamps[k + 1] for k in again), "held"
    else:   # all read before the first was yielded
        assert stamps[again[-1]] < arrived[again[0]], "not held"


def test_a_live_recordings_long_still_opening_shown_while_compared_still_ends_it(
        web_videos, monkeypatch):
    """A recording served without a length, taken for live, whose opening is still for longer
    than a live run holds frames after a reconnect: the repeat of its still opening is shown as
    it comes, and the run still ends at its first change, after one pass, not looping."""
    from runtime import video_source

    monkeypatch.setattr(video_source, "LIVE_HOLD_S", 0.0)
    folder, url = web_videos
    still = np.full_like(textured_frame(0), 128)   # flat: MPEG-2 repeats it byte for byte
    h, w = still.shape[:2]
    vw = cv2.VideoWriter(str(folder / "clip.ts"), cv2.VideoWriter.fourcc(*"MPG2"), 10, (w, h))
    for img in [still] * 60 + [textured_frame(i) for i in range(1, 6)]:
        vw.write(img)
    vw.release()
    src = open_source(f"{url}/chunked/clip.ts", live=True)
    src.reconnect_delay = 0.01
    assert src.frame_count is None and src.live, src.describe()
    with runtime_warnings() as said:
        got = [fr.index for fr, _ in zip(src.frames(threading.Event()), range(4 * 65))]
    src.close()
    assert got == list(range(65 + 60)), (len(got), said)
    spec = f"stream '{url}/chunked/clip.ts'"   # the loss said as its frames were shown again
    assert said == [f"{spec}: stopped after 65 frames in all; reconnecting (up to 5 attempts)",
                    f"{spec} started again from its first frame: it is a recording, not a live "
                    "stream; ending after one pass"], said


def test_a_stop_while_a_reopened_streams_opening_is_compared_ends_it_at_once(tmp_path):
    """A Ctrl-C that came while a reconnected stream's still opening was compared with the
    first one waited for all of it to be read (up to OPENING_FRAMES, 5 s at 30 fps, more on a
    stalling stream), then said "reconnected" of a run that was ending."""
    class CtrlCAfterTheReopenDelay(threading.Event):
        armed = False

        def wait(self, timeout=None):
            waited = super().wait(timeout)
            if self.armed:
                self.set()
            return waited

    video = tmp_path / "cam.avi"
    card, still = textured_frame(15), 40
    notes: list[str] = []
    src = _still_opening_stream(video, card, still, True, note=notes.append)
    stop = CtrlCAfterTheReopenDelay()
    got = []
    with runtime_warnings() as said:
        for fr in src.frames(stop):
            got.append(fr.index)
            if len(got) == still + 2:   # the drop: it reopens on the card
                _write_avi(video, [card] * (still + 1) + [textured_frame(10)])
                stop.armed = True
            assert len(got) < 3 * still, "looped"
    assert any("reconnecting" in m for m in said), said
    read = int(src.cap.get(cv2.CAP_PROP_POS_FRAMES))
    src.close()
    assert len(got) == still + 2 and read <= 2, (len(got), read)
    assert not any("reconnected" in n for n in notes), notes


@pytest.mark.parametrize("then", ["recording", "live"])
def test_a_stream_that_drops_again_while_its_opening_is_compared_yields_none_of_it(
        tmp_path, then):
    """After a reconnect, the frames read to compare the stream's opening with the run's
    first are held until the comparison decides. A second drop before it did yielded them as
    live frames: up to OPENING_FRAMES of a recording that had started over. Undecided, they
    are dropped, and the next reopen compares afresh: a recording then ends after one pass,
    a live stream goes on."""
    class Reopens(threading.Event):
        """What the URL serves at each reconnect attempt (the wait before each reopen)."""
        calls = 0

        def wait(self, timeout=None):
            self.calls += 1
            if self.calls == 1:   # it starts over, and drops within the still opening
                _write_avi(video, [card] * 2)
            elif self.calls == 2:
                _write_avi(video, second)
            else:
                video.unlink(missing_ok=True)
            return super().wait(timeout)

    video = tmp_path / "cam.avi"
    card = textured_frame(15)
    opening = [card] * 3 + [textured_frame(i) for i in (1, 2, 3)]
    second = opening if then == "recording" else [card] * 3 + [textured_frame(10)]
    _write_avi(video, opening)
    src = VideoSource("cam", str(video), live=True, kind="stream", reconnect_attempts=3,
                      reconnect_delay=0.01)
    src.frame_count = None   # a live stream declares no length
    got: list[int] = []
    with runtime_warnings() as said:
        try:
            for fr in src.frames(Reopens()):
                got.append(band_index(fr.image))
                assert len(got) < 40, "looped"
        except SourceError as e:
            assert then == "live" and "did not come back" in str(e), e
    src.close()
    if then == "recording":
        assert got == [15, 15, 15, 1, 2, 3], got
        assert any("started again from its first frame" in m for m in said), said
    else:
        assert got == [15, 15, 15, 1, 2, 3, 15, 15, 15, 10], got
        assert not any("recording" in m for m in said), said


@pytest.mark.parametrize("opening", ["black", "card"])
def test_a_recording_over_http_that_opens_on_a_still_ends_after_one_pass(served, opening):
    """A recorded file served over HTTP, without a frame count, that opens on black (a fade
    in) or a held title card: reopened, it replays the same opening and then the same first
    moving frame, which marks it a recording; black alone was no proof, and it looped."""
    folder, url = served
    first = np.zeros_like(textured_frame(0)) if opening == "black" else textured_frame(15)
    _write_avi(folder / "clip.avi", [first] * 3 + [textured_frame(i) for i in (1, 2, 3)])
    src = open_source(f"{url}/clip.avi", reconnect_attempts=3, live=True)
    src.reconnect_delay, src.frame_count = 0.01, None   # as a container declaring none
    with runtime_warnings() as said:
        got = [fr.index for fr, _ in zip(src.frames(threading.Event()), range(40))]
    src.close()
    assert got == list(range(6)), got
    assert any("started again from its first frame" in m for m in said), said


def test_a_urls_query_string_is_not_a_glob_in_the_default_output_name(tmp_path, monkeypatch):
    """The '?' of rtsp://cam/live?channel=1 made the default output a folder of images named
    after the host, as for a glob of images; a stream's is a video."""
    from runtime.cli import _default_output

    monkeypatch.chdir(tmp_path)
    assert (_default_output("rtsp://cam/live?channel=1")
            == "runs/sharpen/rtsp___cam_live_channel_1.mp4")
    assert _default_output("http://cam/clip.mp4?t=3") == "runs/sharpen/clip.mp4"
    assert _default_output("https://host/img/photo.jpg?w=800") == "runs/sharpen/photo.png"


def _write_frames(path, n: int) -> None:
    """n frames in the codec a video output of that extension is written with."""
    h, w = textured_frame(0).shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc_for(path)), 10, (w, h))
    for i in range(n):
        vw.write(textured_frame(i % 16, seed=i))
    vw.release()


@pytest.mark.parametrize("ext", sorted(VIDEO_OUTPUT_EXTS))
def test_a_videos_frame_count_is_the_frames_it_holds_or_unknown(tmp_path, ext):
    """Each video a run writes, read back: the count its container declares is the progress
    bar's total and the check for a cut file. An MPEG program stream (.mpg, .mpeg) declares
    its duration times its rate, 1 for 5 frames and 23 for 30, and a run read '5/1 frame'."""
    for n in (5, 30):
        path = tmp_path / f"v{n}{ext}"
        _write_frames(path, n)
        with runtime_warnings() as said:
            src = open_source(str(path))
            declared = src.frame_count
            read = sum(1 for _ in src.frames(threading.Event()))
            src.close()
        # An exact count is kept: only an estimate's (an .mpg's) may be found short.
        exact = ext not in ESTIMATED_COUNT_EXTS
        assert read == n and declared in ((n,) if exact else (None, n)), (ext, n, declared, read)
        assert not said, said


def test_a_count_that_reading_goes_past_is_dropped_from_progress_and_stats(
        tmp_path, onnx_model, capsys):
    """A container whose count is short of its frames (an estimate the seek at opening could
    not check): the live line read 5/3 frames and the stats file kept the count of 3; read
    past, it is unknown."""
    import json

    video = tmp_path / "in.mp4"
    _write_frames(video, 5)
    src = open_source(str(video))
    src.frame_count = 3   # as a container whose count is an estimate
    stats = tmp_path / "stats.json"
    with runtime_warnings() as said:
        summary = run_stream(onnx_model, src, None, stats_path=str(stats), quiet=False,
                             report_interval=60)
    err = capsys.readouterr().err
    assert summary["frames_processed"] == 5 and not summary.get("skipped_inputs"), summary
    # (dated: stderr is no terminal here)
    assert re.match(r"\S+ \S+ \S+: 5 frames  ", err) and "/3 frames" not in err, err
    assert json.loads(stats.read_text())["source"]["frame_count"] is None
    assert not said, said


def test_sharpen_run_of_an_mpg_says_no_total_it_does_not_know(tmp_path, onnx_model, capsys):
    """`sharpen run` of a 5-frame .mpg showed '5/3 frames' as its progress (its container's
    estimate, 1 for other pictures)."""
    import re

    video = tmp_path / "in.mpg"
    _write_frames(video, 5)
    rc = run_cli(["run", "--model", str(onnx_model), "--source", str(video),
                  "--out", str(tmp_path / "out.mp4"), "--stats", str(tmp_path / "s.json")])
    err = capsys.readouterr().err
    assert rc == 0 and re.search(rf"(?m)^\S+ \S+ {re.escape(str(video))}: 5 frames  ", err), err
    assert not re.search(r"\d/\d+ frame", err), err


@pytest.fixture
def web_videos(tmp_path):
    """(folder, URL) of a folder served two ways, as web servers serve a video: /ranges/NAME
    with its length and byte ranges (nginx, a CDN), /chunked/NAME without a length (chunked,
    as a server that makes or relays it does). Skipped where OpenCV's FFmpeg reads no http."""
    import http.server

    folder = tmp_path / "www"
    folder.mkdir()

    class Server(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"   # chunked transfer needs it

        def log_message(self, *args):
            pass

        def do_GET(self):
            how, _, name = self.path.strip("/").partition("/")
            path = folder / name
            if how not in ("ranges", "chunked") or not path.is_file():
                self.send_error(404)
                return
            data = path.read_bytes()
            asked = self.headers.get("Range", "")
            if how == "ranges" and asked.startswith("bytes="):
                first, _, last = asked[6:].partition("-")
                start, end = int(first or 0), min(int(last or len(data) - 1), len(data) - 1)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                data = data[start:end + 1]
            else:
                self.send_response(200)
            self.send_header("Content-Type", "video/mpeg")
            if how == "ranges":
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(data), 4096):
                chunk = data[i:i + 4096]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        _write_frames(folder / "probe.avi", 2)
        cap = cv2.VideoCapture(f"{url}/chunked/probe.avi", cv2.CAP_FFMPEG)
        readable = cap.isOpened() and cap.read()[0]
        cap.release()
        if not readable:
            pytest.skip("this OpenCV's FFmpeg does not read http:// URLs")
        yield folder, url
    finally:
        server.shutdown()
        server.server_close()


def test_a_lossless_recording_over_http_without_a_length_ends_as_a_file_does(
        web_videos, tmp_path, capsys, onnx_model):
    """`--no-live` on a recording served without a length (chunked: no frame count in an
    MPEG-TS) warned at its end that the stream "stopped ... reconnecting", then that it "started
    again from its first frame": two warnings for a download that had ended, every frame
    written. The reopen that tells a recording from a live stream is now silent, and its end is
    a note; taken for live (no --no-live), it is one warning, not two."""
    folder, url = web_videos
    _write_frames(folder / "clip.ts", 30)
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", f"{url}/chunked/clip.ts",
                   "--no-live", "--out", str(tmp_path / "out.mp4"))
    assert rc == 0 and "done: 30 frames" in err, err
    assert [ln for ln in err.splitlines() if not ln.startswith(("done: ", "sharpen run: "))] == [
        f"note: stream '{url}/chunked/clip.ts' ended after 30 frames (reopened, it starts over: "
        "a recording; it declares no length, so a connection dropped before its end would end "
        "it here too)"], err
    src = open_source(f"{url}/chunked/clip.ts", live=True)
    src.reconnect_delay = 0.01
    with runtime_warnings() as said:
        got = [fr.index for fr, _ in zip(src.frames(threading.Event()), range(100))]
    src.close()
    assert got == list(range(30)) and said == [
        f"stream '{url}/chunked/clip.ts' started again from its first frame: it is a "
        "recording, not a live stream; ending after one pass"], said


@pytest.mark.parametrize("live", [False, True])
def test_a_recording_over_http_whose_opening_stays_still_past_150_frames_ends_after_one_pass(
        web_videos, live):
    """A recording served without a length that opens on 200 frames of one picture (a fade
    from grey, a long title card): its opening was only kept for 150 frames, so it never
    changed picture there, proved nothing, and each reopen started it over, forever. The
    opening is now kept up to its first change, however late."""
    folder, url = web_videos
    # Flat: MPEG-2 decodes each repeat of it to the same bytes (a texture drifts per GOP).
    still = np.full_like(textured_frame(0), 128)
    h, w = still.shape[:2]
    vw = cv2.VideoWriter(str(folder / "clip.ts"), cv2.VideoWriter.fourcc(*"MPG2"), 10, (w, h))
    for img in [still] * 200 + [textured_frame(i) for i in range(1, 6)]:
        vw.write(img)
    vw.release()
    notes: list[str] = []
    src = open_source(f"{url}/chunked/clip.ts", live=live, note=notes.append)
    src.reconnect_delay = 0.01
    assert src.frame_count is None and src.live == live, src.describe()
    with runtime_warnings() as said:
        got = [fr.index for fr, _ in zip(src.frames(threading.Event()), range(3 * 205))]
    src.close()
    assert got == list(range(205)), (len(got), said, notes)
    spec = f"stream '{url}/chunked/clip.ts'"
    if live:
        assert said == [f"{spec} started again from its first frame: it is a recording, not a "
                        "live stream; ending after one pass"], said
    else:
        assert not said and notes == [f"{spec} ended after 205 frames (reopened, it starts "
                                      "over: a recording; it declares no length, so a "
                                      "connection dropped before its end would end it here "
                                      "too)"], (said, notes)


def test_a_lossless_stream_without_a_length_and_reconnect_0_ends_cleanly(
        web_videos, tmp_path, capsys, onnx_model):
    """`--reconnect 0 --no-live` on a download served without a length ended in an error
    ("stopped after 30 frames in all (reconnecting is off: --reconnect 0)", exit 2) where
    `--reconnect 1` ends it with a note: not reopened, its end cannot be told from a dropped
    connection, which the note says; the frames are all written. Taken for live, a stop is
    still an error."""
    folder, url = web_videos
    _write_frames(folder / "clip.ts", 30)
    out = tmp_path / "out.mp4"
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", f"{url}/chunked/clip.ts",
                   "--no-live", "--reconnect", "0", "--out", str(out))
    assert rc == 0 and "done: 30 frames" in err, err
    assert [ln for ln in err.splitlines() if not ln.startswith(("done: ", "sharpen run: "))] == [
        f"note: stream '{url}/chunked/clip.ts' ended after 30 frames (it declares no length, "
        "and with --reconnect 0 it was not reopened to tell a recording's end from a dropped "
        "connection)"], err
    cap = cv2.VideoCapture(str(out))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 30
    cap.release()
    src = open_source(f"{url}/chunked/clip.ts", live=True, reconnect_attempts=0)
    with pytest.raises(SourceError, match=r"stopped after 30 frames in all \(reconnecting is "
                                          r"off: reconnect_attempts=0\)"):
        list(src.frames(threading.Event()))
    src.close()


@pytest.mark.parametrize("n", [5, 30])
def test_an_mpg_over_http_drops_a_count_found_short_as_a_local_one_does(
        web_videos, tmp_path, capsys, onnx_model, n):
    """An .mpg served with its length declares a frame count, its duration times its rate,
    short of its frames, as a local one does; the local file drops a count found short, the
    URL kept it: its progress read 30/29 frames, and the --stats file kept 29. It is read as
    the recording it is, every frame, as before."""
    import json
    import re

    folder, url = web_videos
    _write_frames(folder / "clip.mpg", n)
    local = open_source(str(folder / "clip.mpg"))
    local.close()
    src = open_source(f"{url}/ranges/clip.mpg")
    src.close()
    assert (src.frame_count, src.live) == (local.frame_count, False), src.describe()
    stats = tmp_path / "s.json"
    rc = run_cli(["run", "--model", str(onnx_model), "--source", f"{url}/ranges/clip.mpg",
                  "--out", str(tmp_path / "out.mp4"), "--stats", str(stats)])
    err = capsys.readouterr().err
    assert rc == 0 and re.search(rf"(?m)^done: {n} frames", err), err
    assert not re.search(r"\d/\d+ frame", err) and "warning" not in err, err
    data = json.loads(stats.read_text())
    assert data["frames_processed"] == n and data["source"]["frame_count"] is None, data
    # A count that reading goes past is dropped from a URL too, which still ends there.
    _write_frames(folder / "clip.avi", n)
    src = open_source(f"{url}/ranges/clip.avi")
    src.frame_count = n - 2   # as an estimate the seek at opening could not check
    with runtime_warnings() as said:
        got = [fr.index for fr, _ in zip(src.frames(threading.Event()), range(3 * n))]
    src.close()
    assert got == list(range(n)) and src.frame_count is None and not said, (got, said)


def test_runtime_atomic_writes_sync_the_file_before_the_rename_and_the_folder_after(tmp_path):
    """runtime.atomic's writes (run's image outputs, stats, export reports) synced the file but
    not its folder after the rename, as distill's checkpoints did: after a power cut the rename
    could be lost, the earlier file back or none."""
    code = ("import sys; from runtime.atomic import atomic_write_json; "
            "atomic_write_json(sys.argv[1], {'frames': 3})")
    assert_durable_write(code, tmp_path / "out" / "stats.json", tmp_path / "trace.txt")


def test_an_image_folder_output_syncs_its_images_once_at_the_end_and_a_single_image_at_once(
        tmp_path):
    """`sharpen run` into an image folder synced each image and the folder as it wrote it: 0.45
    of the 0.65 ms a small frame took to write here, and an SD card's fsync takes far longer.
    Each image is still renamed into place whole, and synced with the folder once, when the
    output closes (200 small images: 9 ms); one image file, a run's only result, is synced
    before it gets its name, as before."""
    code = ("import sys; import numpy as np; from pathlib import Path; "
            "from runtime.image_sink import ImageSink; "
            "s = ImageSink(Path(sys.argv[1]).parent); img = np.zeros((8, 8, 3), np.uint8); "
            "[s.write(img, img, f'f{i}.png') for i in range(3)]; s.close()")
    folder = tmp_path / "out"
    seen = observed_calls(code, folder / "f0.png")
    images = [str(folder / f"f{i}.png") for i in range(3)]
    renamed = [i for i, e in enumerate(seen) if e[0] == "rename" and e[2] in images]
    assert [seen[i][2] for i in renamed] == images, seen
    first_temp = seen.index(["open", seen[renamed[0]][1]])
    assert ["fsync"] not in seen[first_temp:renamed[-1]], seen   # none per image
    after = seen[renamed[-1] + 1:]
    for image in images:   # each image's data, then the folder's rename
        assert ["fsync"] in after[after.index(["open", image]):], (image, seen)
    last_image = max(after.index(["open", image]) for image in images)
    assert ["open", str(folder)] in after[last_image:], seen
    assert ["fsync"] in after[after.index(["open", str(folder)], last_image):], seen
    code = ("import sys; import numpy as np; from runtime.image_sink import ImageSink; "
            "s = ImageSink(sys.argv[1], single_file=True); img = np.zeros((8, 8, 3), np.uint8); "
            "s.write(img, img, 'x.png'); s.close()")
    assert_durable_write(code, tmp_path / "one" / "x.png", tmp_path / "trace.txt")


def test_a_long_image_folder_output_syncs_its_images_as_it_goes_not_all_at_close(tmp_path):
    """An image folder output kept every image's path until it closed, to sync them all then:
    a live camera run into a folder for a day (2.6 million frames at 30 fps) held a GB of them
    and synced none until its end, so a power cut lost all of it. Images are synced in
    batches as they come: the first are synced before the thousandth is written."""
    code = ("import sys; import numpy as np; from pathlib import Path; "
            "from runtime.image_sink import ImageSink; "
            "s = ImageSink(Path(sys.argv[1]).parent); img = np.zeros((4, 4, 3), np.uint8); "
            "[s.write(img, img, f'f{i}.png') for i in range(1000)]; s.close()")
    folder = tmp_path / "out"
    seen = observed_calls(code, folder / "f0.png")
    last = max(i for i, e in enumerate(seen) if e[:1] == ["rename"]
               and e[2] == str(folder / "f999.png"))
    first = seen.index(["open", str(folder / "f0.png")])   # opened to sync it
    assert first < last and ["fsync"] in seen[first:last], seen[:20]
    assert ["open", str(folder)] in seen[first:last], "its folder's rename not synced"


def test_an_image_folder_output_stopped_by_ctrl_c_syncs_what_it_wrote(tmp_path, onnx_model):
    """A Ctrl-C (SIGINT) part way through a run into an image folder: the images written before
    it are synced when the run closes its output, as at a normal end."""
    from pathlib import Path

    code = ("import os, signal, sys; import numpy as np; from pathlib import Path; "
            "from runtime.pipeline import StreamInterrupted, run_stream\n"
            "def frames():\n"
            "    for i in range(200):\n"
            "        if i == 3:\n"
            "            os.kill(os.getpid(), signal.SIGINT)\n"
            "        yield np.full((16, 24, 3), i, np.uint8)\n"
            "try:\n"
            f"    run_stream({str(onnx_model)!r}, frames(), Path(sys.argv[1]).parent, "
            "queue_size=1, threads=1)\n"
            "except StreamInterrupted:\n"
            "    print('INTERRUPTED')\n")
    folder = tmp_path / "out"
    seen = observed_calls(code, folder / "x")
    renamed = [e[2] for e in seen if e[0] == "rename" and Path(e[2]).parent == folder]
    assert renamed and len(renamed) < 200, seen
    last = max(i for i, e in enumerate(seen) if e[0] == "rename" and e[2] == renamed[-1])
    after = seen[last + 1:]
    for image in renamed:
        assert ["fsync"] in after[after.index(["open", image]):], (image, seen)
    assert ["open", str(folder)] in after, seen


def test_the_durability_check_without_strace_sees_the_same_syncs(tmp_path):
    """The durability tests skipped wherever strace could not run (no strace, ptrace forbidden
    in a container): nothing checked the syncs there. Without strace they are seen from inside
    the writing process (audit events and os.fsync calls); this runs that check here too."""
    code = ("import sys; from runtime.atomic import atomic_write_json; "
            "atomic_write_json(sys.argv[1], {'frames': 3})")
    assert_durable_write_observed(code, tmp_path / "out" / "stats.json")
    code = ("import sys, torch; from distill.checkpoint import atomic_save; "
            "atomic_save({'format': 'x', 'w': torch.ones(8)}, sys.argv[1])")
    assert_durable_write_observed(code, tmp_path / "run" / "last.pt")


def _serve_mjpeg(w: int, h: int, fps: float, frames: Optional[int] = None):
    """A network camera stand-in: MJPEG over HTTP (multipart/x-mixed-replace, as IP cameras
    send it), frames paced in real time at `fps`, none declared (FFmpeg guesses 25); with
    `frames`, gone for good after that many (its server closed). Returns (URL, server)."""
    import http.server
    import time

    class Camera(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            # One clock for every connection, as a camera's: a reconnect joins it where it is.
            i = int((time.monotonic() - t0) / period) + 1
            try:
                while frames is None or i <= frames:
                    time.sleep(max(0.0, t0 + i * period - time.monotonic()))
                    jpg = cv2.imencode(".jpg", np.roll(picture, i, axis=1))[1].tobytes()
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                     b"%d\r\n\r\n%s\r\n" % (len(jpg), jpg))
                    i += 1
            except OSError:   # the client went away
                return
            server.shutdown()   # serve_forever runs in another thread: this returns
            server.server_close()

    picture, period, t0 = textured_frame(0, h, w), 1.0 / fps, time.monotonic()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Camera)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/cam.mjpg", server


def test_a_live_mjpeg_camera_faster_than_its_guessed_rate_gives_a_real_time_video(
        tmp_path, capsys, onnx_model):
    """An MJPEG camera declares no rate; FFmpeg guesses 25 fps, and the video was written at
    25 with every frame of a faster camera: a 4 s run of a 50 fps camera played for 8 s, at
    half speed. A live video follows the clock both ways: frames past a second ahead of it
    are left out (as drops are filled in), said with the --fps that keeps them."""
    import json

    url, server = _serve_mjpeg(64, 48, 50.0)
    try:
        out, stats = tmp_path / "out.mp4", tmp_path / "stats.json"
        rc, err = _run(capsys, "--model", str(onnx_model), "--source", url, "--live",
                       "--max-frames", "200", "--out", str(out), "--stats", str(stats))
    finally:
        server.shutdown()
        server.server_close()
    assert rc == 0, err
    summary = json.loads(stats.read_text())
    cap = cv2.VideoCapture(str(out))
    n, fps = cap.get(cv2.CAP_PROP_FRAME_COUNT), cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    assert fps == summary["source"]["fps"] or summary["source"]["fps"] == 0, summary
    elapsed = summary["elapsed_s"]
    assert elapsed - 1.0 <= n / fps <= elapsed + 1.2, (n, fps, elapsed, err)
    if fps < 40:   # FFmpeg's guess, not the camera's 50
        left_out = summary["left_out_frames"]
        assert left_out > 0 and summary["frames_processed"] == 200, (summary, n, elapsed)
        assert f"leaves out {left_out} of the 200" in err and "--fps" in err, err


def test_a_live_run_that_drops_frames_is_not_said_to_have_uneven_frame_times(
        tmp_path, capsys, onnx_model):
    """The note for a file of uneven frame times ('has frames at uneven times (a variable frame
    rate)') was said of a camera too, beside the one for its drops, once a live run could
    leave frames out as well as repeat them."""
    import json

    stats = tmp_path / "stats.json"
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", "synthetic:1280x720@1000",
                   "--max-frames", "20", "--out", str(tmp_path / "o.mp4"), "--stats", str(stats))
    summary = json.loads(stats.read_text())
    assert rc == 0 and summary["repeated_frames"] > 0, (err, summary)
    assert "repeats the frame before each drop" in err, err
    assert "uneven" not in err, err


def _latency(**means: float) -> dict:
    return {k: {"mean": v} for k, v in means.items()}


def test_a_live_run_that_dropped_frames_says_whether_the_encoder_or_the_model_was_slower():
    """A one-core live recording with --codec h264 dropped 255 of 300 frames, the live line's
    `write 362.6` beside `infer 77.6` the only sign that x264, not the model, was behind; the
    run ended saying nothing of it, nor of --encoder-preset."""
    from runtime.cli import _slower_step_note

    summary = {"dropped_frames": 255, "source": {"kind": "stdin", "fps": 25.0},
               "latency_ms": _latency(pre=0.7, infer=77.6, post=0.7, write=362.6),
               "video": {"codec": "h264", "preset": "medium"}}
    note = _slower_step_note(summary)
    assert "255 frames were dropped" in note and "79 ms" in note and "363 ms" in note, note
    assert "40 ms a frame (25 fps)" in note, note
    assert "libx264 at --encoder-preset medium" in note and "ultrafast" in note, note
    model = _slower_step_note({**summary, "latency_ms": _latency(pre=5, infer=300, post=5,
                                                                 write=20)})
    assert "sharpening was the slower" in model and "--encoder-preset" not in model, model
    mp4v = _slower_step_note({**summary, "video": {"codec": "mpeg4"}})
    assert "writing the video was the slower" in mp4v and "--encoder-preset" not in mp4v, mp4v
    assert _slower_step_note({**summary, "dropped_frames": 0}) == ""


def test_a_drop_note_whose_steps_both_kept_up_blames_neither():
    """A 25 fps feed whose model took 12 ms and whose writer took 6 ms (both well inside the
    40 ms a frame) dropped 3 frames in a stall of the host: the note said sharpening was the
    slower and to give a smaller frame, a faster model or more --threads, none of which the
    drops came from."""
    from runtime.cli import _slower_step_note

    summary = {"dropped_frames": 3, "source": {"kind": "stdin", "fps": 25.0},
               "latency_ms": _latency(pre=1, infer=10, post=1, write=6),
               "video": {"codec": "h264", "preset": "veryfast"}}
    note = _slower_step_note(summary)
    assert "3 frames were dropped" in note and "12 ms" in note and "6 ms" in note, note
    assert "slower" not in note and "--threads" not in note, note
    assert "--encoder-preset" not in note and "kept up" in note, note


def test_a_drop_note_for_the_default_codec_does_not_advise_the_default_codec():
    """An mp4v recording whose writer was the slower step was told that mp4v, the codec it
    was already written in, keeps up better."""
    from runtime.cli import _slower_step_note

    summary = {"dropped_frames": 40, "source": {"kind": "camera", "fps": 25.0},
               "latency_ms": _latency(pre=1, infer=20, post=1, write=90),
               "video": {"codec": "mpeg4", "fourcc": "mp4v"}}
    note = _slower_step_note(summary)
    assert "writing the video was the slower" in note and "mp4v" not in note, note
    lossless = _slower_step_note({**summary, "video": {"codec": "ffv1", "fourcc": "FFV1"}})
    assert "mp4v" in lossless, lossless



def test_a_live_h264_run_that_drops_frames_names_the_slower_step(tmp_path, capsys, monkeypatch,
                                                                  onnx_model):
    from runtime_fixtures import ffmpeg_or_skip
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg_or_skip("encode H.264"))
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", "synthetic:1280x720@1000",
                   "--max-frames", "12", "--out", str(tmp_path / "o.mkv"), "--codec", "h264",
                   "--threads", "1")
    assert rc == 0, err
    assert re.search(r"frames were dropped: sharpening took \d+ ms a frame and writing the "
                     r"video \d+ ms, against the source's 1 ms a frame \(1000 fps\)", err), err


@pytest.mark.parametrize("kind", ["camera", "gstreamer"])
def test_a_camera_live_video_note_gives_the_rate_it_was_written_at(kind):
    """A camera's (or GStreamer pipeline's) declared rate is its video's, --fps only asking the
    camera for one: the note for the frames left out gave --fps as the video's rate and said
    that --fps with the source's rate keeps them, which it does not there."""
    from runtime.cli import _live_left_out_note

    summary = {"left_out_frames": 90, "frames_processed": 300, "frames_captured": 300,
               "elapsed_s": 5.0, "source": {"kind": kind, "fps": 30.0}}
    note = _live_left_out_note(summary, 60.0)
    assert "leaves out 90 of the 300 frames" in note and "about 60 fps" in note, note
    assert "30 fps" in note and "60 fps than" not in note, note
    assert "keeps them" not in note, note
    stream = _live_left_out_note({**summary, "source": {"kind": "stream", "fps": 25.0}}, 0.0)
    assert "the video's 25 fps" in stream and "--fps with the source's rate keeps" in stream


def test_a_y4m_pipes_left_out_frames_are_not_blamed_on_a_rate_it_declares():
    """A live Y4M feed (ffmpeg -re on a loaded machine, 25 fps in its header) that sent frames
    in bursts was said to declare no rate, as MJPEG, and to be kept whole by --fps with its
    rate: the video was already at that rate."""
    from runtime.cli import _live_left_out_note

    summary = {"left_out_frames": 2, "frames_processed": 95, "frames_captured": 300,
               "elapsed_s": 10.7, "source": {"kind": "stdin", "fps": 25.0, "format": "y4m"}}
    note = _live_left_out_note(summary, 0.0)
    assert "leaves out 2 of the 95 frames" in note and "25 fps its Y4M header" in note, note
    assert "MJPEG" not in note and "keeps them" not in note and "bursts" in note, note
    # --fps below its header's rate: the frames past it are left out, and --fps is the cause,
    # not a rate the feed does not declare.
    slower = _live_left_out_note({**summary, "left_out_frames": 19}, 20.0)
    assert "MJPEG" not in slower and "declares 25 fps" in slower, slower
    assert "--fps 25" in slower, slower
    faster = _live_left_out_note(summary, 30.0)   # --fps above it: bursts, as at its rate
    assert "MJPEG" not in faster and "keeps them" not in faster and "bursts" in faster, faster
    # --fps 29.97 for a header's 30000:1001, as a user writes NTSC's rate: its own rate, not
    # one below it to be told to give as --fps 29.97, the --fps it was given.
    ntsc = {**summary, "source": {**summary["source"], "fps": 30000 / 1001}}
    same = _live_left_out_note(ntsc, 29.97)
    assert "keeps them" not in same and "bursts" in same, same


def test_a_streams_left_out_frames_are_not_blamed_on_a_rate_it_declares():
    """A camera stand-in served over HTTP (MPEG-TS, 10 fps declared), dropped and reconnected
    during a service soak, sent its frames in bursts: the closing note said it declared no rate,
    as MJPEG, and that --fps with its rate kept the frames, where the video was at that rate
    already. FFmpeg's guess for a stream that declares none (25) still gets the advice."""
    from runtime.cli import _live_left_out_note

    summary = {"left_out_frames": 270, "frames_processed": 3553, "frames_captured": 3671,
               "elapsed_s": 345.0, "source": {"kind": "stream", "fps": 10.0}}
    for asked in (0.0, 10.0):
        note = _live_left_out_note(summary, asked)
        assert "leaves out 270 of the 3553 frames" in note and "about 11 fps" in note, note
        assert "MJPEG" not in note and "keeps them" not in note, note
        assert "10 fps it declares" in note and "bursts" in note, note
    guessed = _live_left_out_note({**summary, "source": {"kind": "stream", "fps": 25.0}}, 0.0)
    assert "MJPEG" in guessed and "keeps them" in guessed, guessed


def test_a_streams_left_out_frames_under_a_lower_fps_name_the_rate_it_declares():
    """The same stream (MPEG-TS declaring 10 fps) run with --fps 5 was said to declare no rate,
    as MJPEG, and to be kept whole by --fps with its rate: it declares one, and the frames
    past --fps 5 are what the video left out, as for a Y4M feed's header. --fps above it
    leaves out only a burst's frames."""
    from runtime.cli import _live_left_out_note

    summary = {"left_out_frames": 1800, "frames_processed": 3600, "frames_captured": 3600,
               "elapsed_s": 360.0, "source": {"kind": "stream", "fps": 10.0}}
    slower = _live_left_out_note(summary, 5.0)
    assert "MJPEG" not in slower and "declares no rate" not in slower, slower
    assert "the video's 5 fps" in slower and "declares 10 fps" in slower, slower
    assert "--fps 10, or none, keeps them" in slower, slower
    faster = _live_left_out_note(summary, 15.0)
    assert "MJPEG" not in faster and "keeps them" not in faster and "bursts" in faster, faster


def test_a_25_fps_streams_left_out_frames_are_not_put_down_to_mjpeg_alone():
    """A stream at 25 fps (a PAL camera's RTSP) reads as FFmpeg's guess for one that declares
    no rate, and its note said only that: --fps with the source's rate keeps the frames, where
    for that camera --fps 25 changes nothing, and the bursts of a stream that fell behind went
    unsaid. Both are said, the advice for the one and the bursts for the other."""
    from runtime.cli import _live_left_out_note

    summary = {"left_out_frames": 40, "frames_processed": 1500, "frames_captured": 1540,
               "elapsed_s": 60.0, "source": {"kind": "stream", "fps": 25.0}}
    note = _live_left_out_note(summary, 0.0)
    assert "MJPEG" in note and "--fps with the source's rate keeps them" in note, note
    assert "declares 25 fps" in note and "bursts" in note, note


def test_a_live_video_ended_by_an_error_says_the_frames_it_holds(tmp_path, capsys, onnx_model):
    """A camera gone for good ends a live run with an error, and the line after it says what the
    video holds: it counted the frames sharpened, where a video of a camera faster than its
    rate left some out (and one that dropped repeats others)."""
    import json
    import re

    url, _ = _serve_mjpeg(64, 48, 50.0, frames=150)   # three seconds of it, then gone
    out, stats = tmp_path / "out.mp4", tmp_path / "stats.json"
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", url, "--live",
                   "--reconnect", "0", "--out", str(out), "--stats", str(stats))
    summary = json.loads(stats.read_text())
    held = re.search(r"holds the (\d+) frames? written before the error", err)
    assert rc != 0 and held, err
    cap = cv2.VideoCapture(str(out))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert int(held.group(1)) == n, (err, n, summary)


def test_a_drop_note_does_not_advise_more_threads_where_they_would_not_help():
    """Three camera runs on a 2-core box, each --threads 1, dropped 48 of 60 frames each, and
    each was told that more --threads keeps up better: the cores were already taken by the
    other runs (load average above them), and a run whose --threads already covers the
    cores it may use has none to add."""
    from runtime.cli import _slower_step_note

    summary = {"dropped_frames": 48, "threads": 1, "source": {"kind": "video", "fps": 30.0},
               "latency_ms": _latency(pre=1, infer=180, post=1, write=20),
               "video": {"codec": "mpeg2video"}}
    alone = _slower_step_note(summary, cores=2, load=1.2)
    assert "sharpening was the slower" in alone and "more --threads" in alone, alone
    shared = _slower_step_note(summary, cores=2, load=5.4)
    assert "sharpening was the slower" in shared and "more --threads" not in shared, shared
    assert "load average 5.4" in shared and "2 cores" in shared, shared
    assert "fewer runs" in shared and "--streams" in shared, shared
    every_core = _slower_step_note({**summary, "threads": 2}, cores=2, load=1.5)
    assert "more --threads" not in every_core and "--threads 2" in every_core, every_core
    # ONNX Runtime's default (0) is a thread a core already
    default = _slower_step_note({**summary, "threads": 0}, cores=2, load=None)
    assert "more --threads" not in default, default


def test_a_drop_note_holds_the_load_average_against_the_machines_cores_not_its_share():
    """A camera given its own core (`CPUAffinity=`, taskset, a pod's CPU limit) on a 4-core
    host where three other cameras' runs held the load at 3.5 was told the host was busier
    than its cores (load 3.5 on 1 core) and to run fewer at once: the load average counts
    the whole machine's runnable threads, so it is held against the machine's 4 cores, and
    that run's own core was its thread's to take."""
    from runtime.cli import _slower_step_note

    summary = {"dropped_frames": 48, "threads": 1, "source": {"kind": "video", "fps": 30.0},
               "latency_ms": _latency(pre=1, infer=180, post=1, write=20),
               "video": {"codec": "mpeg2video"}}
    pinned = _slower_step_note(summary, cores=1, load=3.5, machine_cores=4)
    assert "fewer runs" not in pinned and "busier" not in pinned, pinned
    assert "--threads 1 already takes the 1 core" in pinned, pinned
    busy = _slower_step_note(summary, cores=1, load=9.5, machine_cores=4)
    assert "load average 9.5 on 4 cores" in busy and "fewer runs" in busy, busy


def test_a_busy_hosts_drop_note_names_a_bench_command_that_runs_there():
    """The note told a camera box to run `sharpen bench --streams N`, which refuses without
    --out and, with no --model, exports the shipped students, which needs PyTorch, which a
    camera's install lacks; the command it names takes the run's own model file."""
    import shlex

    from runtime.cli import _slower_step_note

    summary = {"dropped_frames": 48, "threads": 1, "source": {"kind": "video", "fps": 30.0},
               "latency_ms": _latency(pre=1, infer=180, post=1, write=20),
               "video": {"codec": "mpeg2video"}, "model": "/opt/models/gate cam.onnx"}
    busy = _slower_step_note(summary, cores=1, load=9.5, machine_cores=4)
    command = re.search(r"`(sharpen bench [^`]*)`", busy)
    assert command, busy
    argv = shlex.split(command.group(1))
    assert argv[argv.index("--model") + 1] == "/opt/models/gate cam.onnx", argv
    assert "--out" in argv and "--streams" in argv, argv


def test_a_drop_note_on_a_gpu_engine_does_not_speak_of_cpu_threads():
    """A TensorRT (or ONNX Runtime CUDA) run that fell behind was told that `the default
    thread count already takes the 2 cores this process may use` (its threads are 0: not
    the CPU's), or, before, to add --threads, which its engine does not use."""
    from runtime.cli import _slower_step_note

    summary = {"dropped_frames": 48, "threads": 0, "source": {"kind": "video", "fps": 30.0},
               "latency_ms": _latency(pre=1, infer=180, post=1, write=20),
               "video": {"codec": "mpeg2video"}}
    for provider in ("TensorRT 10.3.0 on NVIDIA H100", "CUDAExecutionProvider"):
        gpu = {**summary, "backend": {"provider": provider}}
        note = _slower_step_note(gpu, cores=2, load=0.5, machine_cores=2)
        assert "sharpening was the slower" in note and "thread" not in note, note
        assert "a smaller frame or a faster model" in note, note
    cpu = {**summary, "backend": {"provider": "CPUExecutionProvider"}}
    assert "default thread count" in _slower_step_note(cpu, cores=2, load=0.5, machine_cores=2)


def test_a_raw_mjpeg_files_rate_is_said_to_be_ffmpegs_guess_not_recorded_as_declared(
        tmp_path, onnx_model):
    """An MJPEG camera's recording (`.mjpeg`, JPEGs one after another) declares no rate, and
    FFmpeg reads it at 25 fps: the --stats file gave 25 as the source's rate, the .prom file
    a sharpen_source_fps of 25 that flags a 10 fps camera as behind, and the video played a
    10 fps camera's frames 2.5 times too fast, without a word. The guess is said
    (source.fps_guessed, no sharpen_source_fps sample, a warning naming --fps); an MJPEG AVI,
    which declares its 25 fps, is no guess."""
    from runtime.prometheus import prometheus_text

    raw = tmp_path / "cam.mjpeg"
    raw.write_bytes(b"".join(cv2.imencode(".jpg", textured_frame(i))[1].tobytes()
                             for i in range(5)))
    with runtime_warnings() as said:
        summary = run_stream(onnx_model, str(raw), str(tmp_path / "out.mp4"), threads=1)
    assert summary["source"]["fps"] == 25 and summary["source"]["fps_guessed"] is True, summary
    assert "sharpen_source_fps" not in prometheus_text(summary, "cam")
    assert [m for m in said if "declares no frame rate" in m and "fps with the camera" in m], said
    with runtime_warnings() as said:
        summary = run_stream(onnx_model, str(raw), str(tmp_path / "out10.mp4"), threads=1,
                             fps=10)
    assert not [m for m in said if "frame rate" in m], said   # told the camera's rate
    avi = tmp_path / "cam.avi"
    vw = cv2.VideoWriter(str(avi), cv2.VideoWriter.fourcc(*"MJPG"), 25.0, (FRAME_W, FRAME_H))
    for i in range(5):
        vw.write(textured_frame(i))
    vw.release()
    with runtime_warnings() as said:
        summary = run_stream(onnx_model, str(avi), str(tmp_path / "avi.mp4"), threads=1)
    assert summary["source"]["fps_guessed"] is False and not said, (summary["source"], said)
    assert 'sharpen_source_fps{camera="cam"} 25' in prometheus_text(summary, "cam")
    url, server = _serve_mjpeg(64, 48, 10.0)   # an MJPEG camera over HTTP: a guess too
    try:
        summary = run_stream(onnx_model, url, None, threads=1, max_frames=3)
    finally:
        server.shutdown()
        server.server_close()
    assert summary["source"]["fps_guessed"] is True, summary["source"]


@pytest.mark.parametrize("name, fmt", [("anim.png", "PNG"), ("anim.webp", "WEBP"),
                                       ("gif-as.png", "GIF")])
def test_an_animation_fetched_by_url_says_only_its_first_frame_is_sharpened(tmp_path, name,
                                                                            fmt):
    """An animation at a URL (an upload's link) came out as a still of its first frame
    without a word, as a file of one does not: its frames are counted in the bytes held."""
    import io

    from PIL import Image

    from runtime.url_image import UrlImageSource
    from runtime.warn import SharpenWarning

    frames = [Image.new("RGB", (32, 24), (v, v, v)) for v in (60, 200, 120)]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=100)
    src = UrlImageSource(f"http://host/{name}", buf.getvalue(), name)
    with pytest.warns(SharpenWarning, match="animation") as said:
        [frame] = src.frames(threading.Event())
    assert frame.image.shape[:2] == (24, 32)
    assert [str(w.message) for w in said if "animation" in str(w.message)] == [
        f"http://host/{name}: an animation of 3 frames; only the first frame is sharpened "
        "(convert it to a video to sharpen them all)"]
    still = io.BytesIO()
    frames[0].save(still, "PNG")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        [_] = UrlImageSource("http://host/still.png", still.getvalue(), "still.png").frames(
            threading.Event())
