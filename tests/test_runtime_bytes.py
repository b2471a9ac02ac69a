"""The runtime in a web service: an upload's bytes decoded, sharpened and encoded back to bytes
with the `runtime` API alone (no temporary files), each bad upload one exception type the
handler maps to an answer."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest

from runtime_fixtures import REPO, onnx_model, textured_frame

import runtime
from runtime import FrameProcessor, load_backend

__all__ = ["onnx_model"]  # the fixture is used by name


def _png(frame: np.ndarray) -> bytes:
    return cv2.imencode(".png", frame)[1].tobytes()


def _claiming(png: bytes, w: int, h: int) -> bytes:
    """`png` with its header saying w x h (its CRC made right): a decompression bomb's header."""
    head = bytearray(png)
    head[16:24] = struct.pack(">II", w, h)
    head[29:33] = struct.pack(">I", zlib.crc32(bytes(head[12:29])))
    return bytes(head)


def test_an_upload_is_decoded_and_encoded_as_bytes_by_the_api(onnx_model):
    """The API took frames only: a service decoded uploads with cv2.imdecode, which gives None
    for a damaged one (FrameProcessor then said "got NoneType") and raises cv2.error for an
    empty one, and it had nothing to refuse a decompression bomb with before decoding.
    `runtime.decode_bytes` decodes as `sharpen run` does, and `runtime.encode_bytes` encodes."""
    frame = textured_frame(0)
    proc = FrameProcessor(load_backend(onnx_model, threads=1))
    for ext in (".png", ".jpg"):
        data = cv2.imencode(ext, frame)[1].tobytes()
        got = runtime.decode_bytes(data)
        assert np.array_equal(got, cv2.imdecode(np.frombuffer(data, np.uint8),
                                                cv2.IMREAD_UNCHANGED))
        sharp = proc(got)
        encoded = runtime.encode_bytes(sharp, ext)
        assert isinstance(encoded, bytes)
        # A JPEG as sharpen run writes it: quality 95, its colour at every pixel (4:4:4)
        assert encoded == cv2.imencode(ext, sharp, [
            cv2.IMWRITE_JPEG_QUALITY, 95,
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
            if ext == ".jpg" else [])[1].tobytes()
    assert runtime.encode_bytes(frame, ".jpg", quality=50) == cv2.imencode(
        ".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 50])[1].tobytes()
    assert runtime.decode_bytes(bytearray(_png(frame))).shape == frame.shape


def test_each_bad_upload_raises_one_api_type_and_a_bomb_another():
    """What a handler maps to 400 (damaged, empty, not an image) is UndecodableImage, and an
    image over the pixel budget (413) OverPixelBudget, refused from its header before any
    decoding; both are ImageReadError, a ValueError, each in `runtime`."""
    good = _png(textured_frame(0))
    jpeg = cv2.imencode(".jpg", textured_frame(0))[1].tobytes()
    for bad, said in [(b"", "empty"), (jpeg[:len(jpeg) // 2], "truncated"),
                      (b"<html>404 not found</html>", "not a readable image"),
                      (good[:40] + b"\0" * 200 + good[-12:], "")]:
        with pytest.raises(runtime.UndecodableImage, match=f"^upload.png: .*{said}"):
            runtime.decode_bytes(bad, "upload.png")
    with pytest.raises(runtime.OverPixelBudget, match=r"^image: 30000x30000 = 900,000,000 pix"):
        runtime.decode_bytes(_claiming(good, 30000, 30000))
    # The service's own limit= is named, not the environment variable, which does not apply
    with pytest.raises(runtime.OverPixelBudget, match=r"96x64 = 6,144 pixels exceeds the pixel "
                                                      r"budget of 1,000 \(limit=1000\)$"):
        runtime.decode_bytes(good, limit=1000)
    for kind in ("UndecodableImage", "OverPixelBudget"):
        assert kind in runtime.__all__
        assert issubclass(getattr(runtime, kind), runtime.ImageReadError)
    assert issubclass(runtime.ImageReadError, ValueError)
    assert not issubclass(runtime.OverPixelBudget, runtime.UndecodableImage)
    with pytest.raises(TypeError, match="decode_bytes: data must be bytes"):
        runtime.decode_bytes("upload.png")


def test_the_none_that_opencv_gives_for_a_bad_image_is_said_as_such(onnx_model):
    """cv2.imdecode's None for a damaged upload reached FrameProcessor, which said only "got
    NoneType": the handler's author looked for the bug in their own code."""
    proc = FrameProcessor(load_backend(onnx_model, threads=1))
    bad = cv2.imdecode(np.frombuffer(b"<html>404</html>", np.uint8), cv2.IMREAD_UNCHANGED)
    with pytest.raises(runtime.FrameError, match=r"got None \(cv2.imread and cv2.imdecode give "
                                                 r"None for an image they cannot read: "
                                                 r"runtime.decode_bytes .* says why\)"):
        proc(bad)


def test_decoding_an_upload_leaves_pillows_bomb_check_on():
    """Reading a WebP's size (from its header, through Pillow) set Pillow's MAX_IMAGE_PIXELS
    to None for the whole process: a service's own Image.open of a decompression bomb, after
    one upload went through decode_bytes, no longer raised DecompressionBombError."""
    from PIL import Image

    before = Image.MAX_IMAGE_PIXELS
    webp = cv2.imencode(".webp", textured_frame(0))[1].tobytes()
    assert runtime.decode_bytes(webp).shape == (64, 96, 3)
    with pytest.raises(runtime.OverPixelBudget, match="96x64"):   # the size still read
        runtime.decode_bytes(webp, limit=1000)
    assert Image.MAX_IMAGE_PIXELS == before and before is not None


def test_reading_an_uploads_size_never_turns_pillows_bomb_check_off():
    """Its size read turned Pillow's MAX_IMAGE_PIXELS off for a moment, a lock making our own
    reads take turns: the setting is the process's, so a service's own Image.open in another
    thread during that moment ran without the check. Pillow's setting is left alone."""
    import types

    from PIL import Image

    set_to = []

    class Watched(types.ModuleType):
        def __setattr__(self, name, value):
            if name == "MAX_IMAGE_PIXELS":
                set_to.append(value)
            super().__setattr__(name, value)

    webp = cv2.imencode(".webp", textured_frame(0))[1].tobytes()
    ppm = cv2.imencode(".ppm", textured_frame(0))[1].tobytes()
    Image.__class__ = Watched
    try:
        for data in (webp, ppm):
            with pytest.raises(runtime.OverPixelBudget, match="96x64"):   # the size read
                runtime.decode_bytes(data, limit=1000)
    finally:
        Image.__class__ = types.ModuleType
    assert set_to == []


def test_a_radiance_or_pfm_upload_is_held_to_the_pixel_budget():
    """Radiance .hdr and .pfm sizes were read by none of the header parsers (nor by Pillow),
    so such an upload was decoded whatever its size: a few kilobytes of run-length-encoded
    HDR saying 30000x30000 made OpenCV fill 10 GB of floats, the budget never asked."""
    frame = np.random.default_rng(0).random((64, 96, 3)).astype(np.float32)
    for ext in (".hdr", ".pfm"):
        data = cv2.imencode(ext, frame)[1].tobytes()
        assert runtime.decode_bytes(data).shape == (64, 96, 3)
        with pytest.raises(runtime.OverPixelBudget, match=r"^image: 96x64 = 6,144 pixels"):
            runtime.decode_bytes(data, limit=1000)
    bomb = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 30000 +X 30000\n" + b"\x02\x02" * 64
    with pytest.raises(runtime.OverPixelBudget, match=r"^up.hdr: 30000x30000 = 900,000,000"):
        runtime.decode_bytes(bomb, "up.hdr")


def test_a_radiance_or_pfm_header_spelt_otherwise_is_held_to_the_budget_too():
    """The size was looked for in one spelling, in a Radiance file's first 64 KB: each of these
    headers, which OpenCV reads as 96x64, was decoded whatever the budget (a long comment line,
    sizes without spaces, with tabs, with leading zeros or a plus sign)."""
    frame = np.random.default_rng(0).random((64, 96, 3)).astype(np.float32)
    hdr = cv2.imencode(".hdr", frame)[1].tobytes()
    pixels = hdr[hdr.index(b"+X 96\n") + 6:]
    head = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n"
    pfm = cv2.imencode(".pfm", frame)[1].tobytes()
    floats = pfm[pfm.index(b"\n-1\n") + 4:]
    for data in [b"#?RADIANCE\n#" + b"x" * 70000 + b"\nFORMAT=32-bit_rle_rgbe\n\n-Y 64 +X 96\n"
                 + pixels, head + b"-Y64 +X96\n" + pixels, head + b"-Y\t64\t+X\t96\n" + pixels,
                 head + b"-Y 0000000064 +X 0000000096\n" + pixels,
                 head + b"-Y +64 +X +96\n" + pixels, b"PF\n0000000096 0000000064\n-1\n" + floats]:
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).shape[:2] \
            == (64, 96)
        with pytest.raises(runtime.OverPixelBudget, match=r"^up: 96x64 = 6,144 pixels"):
            runtime.decode_bytes(data, "up", limit=1000)
    with pytest.raises(runtime.OverPixelBudget, match=r"^up: 1000000000000000000x64 = "):
        runtime.decode_bytes(head + b"-Y 64 +X " + b"9" * 5000 + b"\n" + pixels, "up")


def test_an_uploads_colour_profile_and_exif_go_back_with_its_result(onnx_model):
    """encode_bytes wrote the result without the upload's colour profile, where `sharpen run`
    keeps it: a phone's Display P3 photo came back from the service duller in every
    colour-managed browser, and without its EXIF (capture date, camera). `like=` the upload's
    bytes puts both back."""
    import io

    from PIL import Image, ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"   # Make
    up = io.BytesIO()
    Image.fromarray(textured_frame(0)[..., ::-1]).save(up, "JPEG", icc_profile=icc,
                                                       exif=exif.tobytes())
    upload = up.getvalue()
    sharp = FrameProcessor(load_backend(onnx_model, threads=1))(runtime.decode_bytes(upload))
    for ext in (".jpg", ".png"):
        with Image.open(io.BytesIO(runtime.encode_bytes(sharp, ext, like=upload))) as out:
            assert out.info.get("icc_profile") == icc, ext
            assert out.getexif().get(0x010F) == "PhoneMaker", ext
        with Image.open(io.BytesIO(runtime.encode_bytes(sharp, ext))) as out:
            assert out.info.get("icc_profile") is None


def test_encode_bytes_refuses_a_quality_it_would_not_write():
    """quality=0 (a form's empty field, int'ed) was written at 95 without a word, and 150
    as OpenCV clamped it: the quality the service asked for was not the one it got."""
    frame = textured_frame(0)
    # True passed as an int, and OpenCV refused it in its own words ("Can't parse 'params'")
    for bad in (0, 101, 150, True, 90.0, "90"):
        with pytest.raises(ValueError, match=rf"^encode_bytes: quality must be 1 to 100, "
                                             rf"got {bad!r}$"):
            runtime.encode_bytes(frame, ".jpg", quality=bad)
    with pytest.raises(ValueError, match=r"^encode_bytes: ext must be one of .*got 'jpg'$"):
        runtime.encode_bytes(frame, "jpg")


def test_a_16_bit_result_encoded_as_jpeg_keeps_its_levels():
    """A 16-bit PNG upload's result (16-bit, as FrameProcessor returns it) encoded to JPEG or
    WebP came back white: OpenCV casts 16-bit samples to 8 bits by saturation. It is written
    at x / 257, as `sharpen run` writes it, with the same warning."""
    from runtime.prepost import to_8bit

    from runtime_fixtures import runtime_warnings

    deep = textured_frame(0).astype(np.uint16) * 257
    for ext in (".jpg", ".webp"):
        with runtime_warnings() as said:
            got = runtime.encode_bytes(deep, ext, quality=90)
        assert got == runtime.encode_bytes(to_8bit(deep), ext, quality=90), ext
        assert said == [f"image{ext}: written as 8-bit ({ext} holds 8 bits; PNG, TIFF and PPM "
                        "keep the input's 16)"]
    assert runtime.decode_bytes(runtime.encode_bytes(deep, ".png")).dtype == np.uint16


def test_an_uploads_alpha_and_grey_go_back_with_its_result(onnx_model):
    """FrameProcessor sharpens colour (alpha dropped, grey made BGR, as it warns); `sharpen
    run` puts them back, but a service's `encode_bytes(..., like=upload)` answered a logo with
    transparency as an opaque PNG, whatever lay under its transparent pixels now showing."""
    proc = FrameProcessor(load_backend(onnx_model, threads=1))
    bgr = textured_frame(0)
    alpha = np.zeros(bgr.shape[:2], np.uint8)
    alpha[16:48, 24:72] = 255
    for upload_frame, want in [(np.dstack([bgr, alpha]), (64, 96, 4)),
                               (bgr[..., 1], (64, 96))]:
        upload = _png(upload_frame)
        sharp = proc(runtime.decode_bytes(upload))
        out = runtime.decode_bytes(runtime.encode_bytes(sharp, ".png", like=upload))
        assert out.shape == want
        if len(want) == 3:
            assert np.array_equal(out[..., 3], alpha) and np.array_equal(out[..., :3], sharp)
        else:
            assert np.array_equal(out, cv2.cvtColor(sharp, cv2.COLOR_BGR2GRAY))
    assert runtime.decode_bytes(runtime.encode_bytes(sharp, ".png")).shape == (64, 96, 3)


@pytest.mark.parametrize("order", ["<", ">"])
def test_a_cmyk_tiff_upload_comes_back_without_an_alpha_channel(tmp_path, onnx_model, order):
    """libtiff decodes a CMYK TIFF (a print file) as RGBA, every alpha 255: `sharpen run` drops
    that channel the file never had, but decode_bytes gave it to a service, whose
    `encode_bytes(..., like=upload)` then answered with an opaque alpha channel added."""
    import tifffile

    from runtime.imageio import decode_image

    cmyk = np.random.default_rng(3).integers(0, 256, (40, 56, 4), np.uint8)
    path = tmp_path / "print.tif"
    tifffile.imwrite(path, cmyk, photometric="separated", byteorder=order)
    upload = path.read_bytes()
    got = runtime.decode_bytes(upload)
    assert got.shape == (40, 56, 3)
    assert decode_image(path).shape == (40, 56, 3)
    sharp = FrameProcessor(load_backend(onnx_model, threads=1))(got)
    answer = runtime.decode_bytes(runtime.encode_bytes(sharp, ".png", like=upload))
    assert answer.shape == (40, 56, 3)


def _upload_with_gps(frame: np.ndarray, alpha: bool = False) -> bytes:
    """A phone's photo: `frame` as a PNG with a colour profile and EXIF holding a GPS position."""
    import io

    from PIL import Image, ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"   # Make
    exif[0x8825] = {0: b"\x02\x02\x00\x00", 1: "N", 2: (48.0, 51.0, 29.0), 3: "E",
                    4: (2.0, 17.0, 40.0)}
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGRA2RGBA if alpha else cv2.COLOR_BGR2RGB)
    up = io.BytesIO()
    Image.fromarray(rgb).save(up, "PNG", icc_profile=icc, exif=exif.tobytes())
    return up.getvalue()


def test_encode_bytes_writes_the_upload_as_sharpen_run_writes_it(onnx_model, tmp_path):
    """encode_bytes(..., like=upload) and `sharpen run`'s image output are one route: the same
    upload gives the same bytes, alpha, colour profile and EXIF alike. encode_bytes had its own
    copy of the sink's steps and left one out: a ".pgm" answer, grey as `sharpen run` writes
    it, was refused ('cannot encode image image.pgm')."""
    bgr = textured_frame(0)
    alpha = np.zeros(bgr.shape[:2], np.uint8)
    alpha[16:48, 24:72] = 255
    upload = _upload_with_gps(np.dstack([bgr, alpha]), alpha=True)
    (tmp_path / "up.png").write_bytes(upload)
    backend = load_backend(onnx_model, threads=1)
    proc = FrameProcessor(backend)
    for ext in (".png", ".jpg", ".pgm"):
        out = tmp_path / f"sharp{ext}"
        runtime.run_stream(backend, str(tmp_path / "up.png"), str(out), threads=1)
        sharp = proc(runtime.decode_bytes(upload))
        assert runtime.encode_bytes(sharp, ext, like=upload) == out.read_bytes(), ext
    assert runtime.decode_bytes(runtime.encode_bytes(bgr, ".pgm")).shape == bgr.shape[:2]


def test_encode_bytes_leaves_the_uploads_exif_out_with_metadata_false(onnx_model):
    """like=upload kept the upload's EXIF, its GPS position with it, and a service had no way to
    keep the colour profile and alpha but leave out where the photo was taken, as `sharpen run
    --no-metadata` (run_stream's metadata=False) does."""
    import io

    from PIL import Image

    upload = _upload_with_gps(textured_frame(0))
    sharp = FrameProcessor(load_backend(onnx_model, threads=1))(runtime.decode_bytes(upload))
    for ext in (".jpg", ".png"):
        with Image.open(io.BytesIO(runtime.encode_bytes(sharp, ext, like=upload))) as out:
            assert out.getexif().get_ifd(0x8825), ext   # kept by default, as sharpen run keeps it
        bare = runtime.encode_bytes(sharp, ext, like=upload, metadata=False)
        with Image.open(io.BytesIO(bare)) as out:
            assert not out.getexif(), ext
            assert out.info.get("icc_profile"), ext


def test_a_resized_result_says_that_the_uploads_alpha_is_not_put_back():
    """A result resized since (a thumbnail) cannot take the upload's alpha channel: it was
    answered opaque without a word, the logo's transparent pixels showing what lay under them."""
    from runtime_fixtures import runtime_warnings

    bgr = textured_frame(0)
    upload = _png(np.dstack([bgr, np.zeros(bgr.shape[:2], np.uint8)]))
    small = cv2.resize(bgr, (48, 32))
    with runtime_warnings() as said:
        got = runtime.decode_bytes(runtime.encode_bytes(small, ".png", like=upload))
    assert got.shape == (32, 48, 3)
    assert said == ["encode_bytes: the image is 48x32 and like='s upload 96x64: the upload's "
                    "alpha channel is not put back (encode the result at the upload's size)"]
    with runtime_warnings() as said:
        runtime.encode_bytes(bgr, ".png", like=upload)
        runtime.encode_bytes(small, ".png", like=_png(bgr))
    assert said == []


def test_like_takes_an_upload_its_caller_decoded_over_the_default_budget(monkeypatch):
    """A service that gave decode_bytes a larger `limit=` (for its large scans) had
    encode_bytes(..., like=upload) refuse the same upload with OverPixelBudget, like= being
    decoded again under SHARPEN_MAX_PIXELS: the result, already in memory at that size, was
    lost."""
    bgr = textured_frame(0)
    alpha = np.full(bgr.shape[:2], 128, np.uint8)
    upload = _png(np.dstack([bgr, alpha]))
    monkeypatch.setenv("SHARPEN_MAX_PIXELS", "1000")
    frame = runtime.decode_bytes(upload, limit=10_000)
    got = runtime.decode_bytes(runtime.encode_bytes(frame[..., :3], ".png", like=upload),
                               limit=10_000)
    assert np.array_equal(got, frame)
    with pytest.raises(runtime.OverPixelBudget, match="^encode_bytes' like: 192x128"):
        runtime.encode_bytes(frame[..., :3], ".png", like=_png(cv2.resize(bgr, (192, 128))))


_DECODE_UNDER_A_LIMIT = """
import re, resource, sys
import cv2, numpy  # noqa: F401 - loaded before the limit
import runtime
data = open(sys.argv[1], "rb").read()
vm = int(re.search(r"VmSize:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (40 << 20), resource.RLIM_INFINITY))
try:
    runtime.decode_bytes(data, "big.png")
except Exception as e:
    print(isinstance(e, MemoryError), isinstance(e, runtime.UndecodableImage),
          isinstance(e, runtime.ImageReadError), e)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc: Linux")
def test_an_upload_that_runs_out_of_memory_decoding_is_a_memory_error(tmp_path):
    """OpenCV's 'Insufficient memory' decoding an 8K upload under a memory limit was raised as
    UndecodableImage, which says the upload is at fault (the README's HTTP 400) and fails
    again; it is a MemoryError (and still an ImageReadError: a folder's run goes on)."""
    photo = tmp_path / "big.png"
    cv2.imwrite(str(photo), np.full((4320, 7680, 3), 128, np.uint8))
    res = subprocess.run([sys.executable, "-c", _DECODE_UNDER_A_LIMIT, str(photo)],
                         env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
                         capture_output=True, text=True, timeout=120)
    assert res.stdout.startswith("True False True big.png: out of memory decoding it "
                                 "(7680x4320"), res.stdout + res.stderr


@pytest.mark.parametrize("image, said", [
    (None, r"got None \(cv2\.imread"),
    (np.zeros((8, 8, 3), np.float32), r"dtype float32.*np\.clip"),
    (np.zeros((2, 8, 8, 3), np.uint8), r"shape \(2, 8, 8, 3\).*a batch"),
    (np.zeros((8, 8, 5), np.uint8), r"shape \(8, 8, 5\)"),
])
def test_encode_bytes_refuses_what_frame_processor_refuses(image, said):
    """encode_bytes took anything: None (cv2.imread's failure) raised AttributeError, a float
    image was written black by OpenCV's fallback to 8 bits, a batch or five channels got
    OpenCV's assertion. It raises FrameError, in FrameProcessor's words, as FrameProcessor
    does for the same frame."""
    with pytest.raises(runtime.FrameError, match=r"encode_bytes: image: .*" + said):
        runtime.encode_bytes(image, ".png")


def test_a_cmyk_upload_is_said_to_become_rgb_as_sharpen_run_says():
    """sharpen run says a print file (CMYK) is sharpened and written as RGB, its CMYK profile
    left out; encode_bytes(..., like=upload) answered it as RGB without a word."""
    import io

    from PIL import Image
    from runtime_fixtures import runtime_warnings

    buf = io.BytesIO()
    Image.fromarray(textured_frame(0)[..., ::-1].copy()).convert("CMYK").save(buf, "TIFF")
    upload = buf.getvalue()
    with runtime_warnings() as said:
        runtime.encode_bytes(runtime.decode_bytes(upload), ".png", like=upload)
    assert said == ["encode_bytes: like='s upload is CMYK, sharpened and written as RGB (not "
                    "colour-managed: OpenCV's plain formula)"], said


def test_a_like_upload_over_the_budget_names_the_variable_that_raises_it(monkeypatch):
    """like= is decoded under SHARPEN_MAX_PIXELS (or the result's size, where larger): its
    refusal named 'limit=', a keyword the caller never gave."""
    monkeypatch.setenv("SHARPEN_MAX_PIXELS", "1000")
    with pytest.raises(runtime.OverPixelBudget, match=r"96x64 = 6,144 pixels exceeds the pixel "
                                                      r"budget of 1,000 \(raise it with the "
                                                      r"SHARPEN_MAX_PIXELS environment"):
        runtime.encode_bytes(textured_frame(0)[:8, :8], ".png", like=_png(textured_frame(0)))


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP", "TIFF"])
def test_an_uploads_other_frames_or_pages_are_said_as_sharpen_run_says_them(fmt):
    """An animated GIF, APNG or WebP upload decoded as a still of its first frame, and a
    multi-page TIFF as its first page, without a word: `sharpen run` says so of such a file,
    and decode_bytes now does too, as a SharpenWarning a service can catch or filter. Once: a
    result encoded `like=` the upload says nothing more; a still says nothing."""
    import io
    import warnings

    from PIL import Image

    frames = [Image.new("RGB", (32, 24), (v, v, v)) for v in (60, 200, 120)]
    held = io.BytesIO()
    frames[0].save(held, fmt, save_all=True, append_images=frames[1:], duration=100)
    still = io.BytesIO()
    frames[0].save(still, fmt)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        got = runtime.decode_bytes(held.getvalue(), "upload")
        runtime.encode_bytes(got, ".png", like=held.getvalue())
        runtime.decode_bytes(still.getvalue(), "still")
    assert got.shape[:2] == (24, 32) and abs(np.median(got) - 60) <= 2   # WebP's lossy
    want = ("upload: a TIFF of 3 pages; only the first page is decoded" if fmt == "TIFF" else
            "upload: an animation of 3 frames; only the first frame is decoded (convert it to "
            "a video to sharpen them all)")
    assert [(w.category, str(w.message)) for w in said] == [(runtime.SharpenWarning, want)]
    assert said[0].filename == __file__   # the caller's line, not the runtime's
