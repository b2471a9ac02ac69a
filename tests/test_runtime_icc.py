"""A photo's ICC colour profile (a phone's Display P3, Adobe RGB from a camera) kept in the
sharpened image. OpenCV neither reads nor writes one: the result held the same pixel values
without it, which colour-managed viewers (browsers, macOS, phones) show as sRGB, duller than
the input beside it, and nothing said so."""
from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms

from runtime import SharpenWarning
from runtime.imageio import icc_profile, with_icc_profile
from runtime.pipeline import run_stream
from runtime_fixtures import onnx_model

__all__ = ["onnx_model"]  # the fixture is used by name


@pytest.fixture(scope="module")
def profile() -> bytes:
    # A real profile (PIL's sRGB; a phone's Display P3 is kept the same way)
    p = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert len(p) > 100
    return p


def _in_space(profile: bytes, space: bytes) -> bytes:
    """`profile` relabelled as one for another colour space (its header's bytes 16-19): all
    the sink reads of it."""
    return profile[:16] + space + profile[20:]


def _photo(rng) -> Image.Image:
    return Image.fromarray((rng.random((40, 56, 3)) * 255).astype(np.uint8))


def _profile_of(path) -> bytes | None:
    with Image.open(path) as im:
        return im.info.get("icc_profile")


@pytest.mark.parametrize("src_ext", ["jpg", "png", "webp", "tif"])
@pytest.mark.parametrize("out_ext", ["png", "jpg", "tif", "webp"])
def test_the_input_s_colour_profile_is_kept(tmp_path, onnx_model, profile, src_ext, out_ext):
    src = tmp_path / f"photo.{src_ext}"
    _photo(np.random.default_rng(0)).save(src, icc_profile=profile)
    assert icc_profile(src.read_bytes()) == profile
    out = tmp_path / f"sharp.{out_ext}"
    run_stream(onnx_model, str(src), out)
    assert _profile_of(out) == profile
    with Image.open(out) as im:   # a whole file PIL decodes, the picture unchanged in size
        assert im.size == (56, 40)
        im.load()


def test_a_16_bit_tiff_keeps_its_profile_and_its_depth(tmp_path, onnx_model, profile):
    """A studio's master: a 16-bit TIFF in a wide-gamut space. Its profile (TIFF tag 34675)
    was neither read nor written: the sharpened TIFF came out as sRGB, and nothing said so."""
    import tifffile
    rng = np.random.default_rng(9)
    src = tmp_path / "master.tif"
    tifffile.imwrite(src, (rng.random((40, 56, 3)) * 65535).astype(np.uint16),
                     photometric="rgb", iccprofile=profile)
    out = tmp_path / "sharp.tif"
    run_stream(onnx_model, str(src), out)
    with tifffile.TiffFile(out) as t:
        page = t.pages[0]
        assert page.dtype == np.uint16 and page.shape == (40, 56, 3)
        assert page.tags["InterColorProfile"].value == profile
    assert _profile_of(out) == profile
    _opens(out)
    assert cv2.imread(str(out), cv2.IMREAD_UNCHANGED).dtype == np.uint16


@pytest.mark.parametrize("kind", [{}, {"byteorder": ">"}, {"bigtiff": True},
                                  {"bigtiff": True, "byteorder": ">"}, {"compression": "zlib"}])
def test_a_profile_is_written_into_any_tiff_layout(profile, kind):
    """The profile's tag goes into a copy of the first directory, appended: in either byte
    order, classic or BigTIFF, compressed or not, each page's pixels and the chain to the next
    page are left as they were (OpenCV writes one little-endian page; a change of it must not
    break the others)."""
    import tifffile
    pages = (np.random.default_rng(14).random((3, 20, 30, 3)) * 65535).astype(np.uint16)
    buf = io.BytesIO()
    tifffile.imwrite(buf, pages, photometric="rgb", **kind)
    out = with_icc_profile(buf.getvalue(), profile)
    assert icc_profile(out) == profile
    with tifffile.TiffFile(io.BytesIO(out)) as t:
        assert t.pages[0].tags["InterColorProfile"].value == profile
        assert len(t.pages) == 3
        for page, want in zip(t.pages, pages):
            assert np.array_equal(page.asarray(), want)


@pytest.mark.parametrize("quality", [None, 80])   # lossless (VP8L) and lossy (VP8 + ALPH)
def test_a_webp_output_keeps_the_profile_and_the_alpha(tmp_path, onnx_model, profile,
                                                         quality):
    """OpenCV writes a WebP without the extended header (VP8X) that a profile needs: the
    profile was dropped, said, from a format that holds one."""
    rng = np.random.default_rng(10)
    rgba = (rng.random((40, 56, 4)) * 255).astype(np.uint8)
    rgba[..., 3] = np.linspace(0, 255, 56).astype(np.uint8)
    src = tmp_path / "cut-out.png"
    Image.fromarray(rgba, "RGBA").save(src, icc_profile=profile)
    out = tmp_path / "sharp.webp"
    run_stream(onnx_model, str(src), out, quality=quality)
    assert _profile_of(out) == profile
    _opens(out)
    with Image.open(out) as im:
        assert im.mode == "RGBA" and im.size == (56, 40)
        alpha = np.asarray(im)[..., 3].astype(int)
    assert np.abs(alpha - rgba[..., 3]).max() <= (0 if quality is None else 8)


def test_a_folder_keeps_each_image_s_own_profile_and_adds_none(tmp_path, onnx_model,
                                                                profile):
    rng = np.random.default_rng(1)
    (tmp_path / "in").mkdir()
    _photo(rng).save(tmp_path / "in" / "p3.jpg", icc_profile=profile)
    _photo(rng).save(tmp_path / "in" / "plain.jpg")
    gray = Image.fromarray((rng.random((30, 30)) * 255).astype(np.uint8))
    gray_profile = _in_space(profile, b"GRAY")
    gray.save(tmp_path / "in" / "gray.png", icc_profile=gray_profile)
    # A CMYK photo is sharpened as the RGB OpenCV converts it to: its CMYK profile would be
    # misread on that, and is left out.
    _photo(rng).convert("CMYK").save(tmp_path / "in" / "print.jpg",
                                     icc_profile=_in_space(profile, b"CMYK"))
    with pytest.warns(SharpenWarning, match=r"print\.jpg: CMYK"):
        run_stream(onnx_model, str(tmp_path / "in"), tmp_path / "out")
    assert _profile_of(tmp_path / "out" / "p3.jpg") == profile
    assert _profile_of(tmp_path / "out" / "plain.jpg") is None
    assert _profile_of(tmp_path / "out" / "gray.png") == gray_profile
    assert _profile_of(tmp_path / "out" / "print.jpg") is None
    with Image.open(tmp_path / "out" / "print.jpg") as im:
        assert im.mode == "RGB"


@pytest.mark.parametrize("ext", ["jpg", "tif"])
def test_a_cmyk_image_is_said_to_become_rgb(tmp_path, onnx_model, profile, ext):
    """A print file (CMYK, a press profile) came out as RGB, its profile left out, and nothing
    said so: a studio sent it on to print as it was."""
    src = tmp_path / f"print.{ext}"
    _photo(np.random.default_rng(11)).convert("CMYK").save(
        src, icc_profile=_in_space(profile, b"CMYK"))
    with pytest.warns(SharpenWarning, match=r"print\.%s: CMYK, sharpened and written as RGB "
                                            r"\(not colour-managed.*its CMYK colour profile "
                                            r"is left out" % ext):
        run_stream(onnx_model, str(src), tmp_path / f"sharp.{ext}")
    with Image.open(tmp_path / f"sharp.{ext}") as im:
        assert im.mode == "RGB"


def test_a_compare_image_keeps_the_profile(tmp_path, onnx_model, profile):
    """Both sides of a --compare image hold the input's values, in its colour space: written
    without its profile, a Display P3 photo's before/after was shown duller than the photo
    itself, both sides alike, and nothing said so."""
    rng = np.random.default_rng(12)
    src = tmp_path / "p3.jpg"
    _photo(rng).save(src, icc_profile=profile)
    Image.fromarray((rng.random((30, 30, 4)) * 255).astype(np.uint8), "RGBA").save(
        tmp_path / "cut-out.png", icc_profile=profile)
    run_stream(onnx_model, str(src), tmp_path / "compare.jpg", compare=True)
    with pytest.warns(SharpenWarning, match=r"cut-out\.png: alpha channel dropped"):
        run_stream(onnx_model, str(tmp_path / "cut-out.png"), tmp_path / "cut-compare.png",
                   compare=True)
    for out in ("compare.jpg", "cut-compare.png"):
        assert _profile_of(tmp_path / out) == profile
        with Image.open(tmp_path / out) as im:
            assert im.mode == "RGB" and im.size[0] in (112, 60)   # both sides, no alpha


def test_a_grey_photo_s_profile_is_not_put_on_a_colour_image(tmp_path, onnx_model, profile):
    """libwebp holds no grey: a grey photo's WebP is written as RGB, and it was given the
    photo's grey profile, which colour-managed viewers cannot apply to RGB (LittleCMS builds
    no transform from it). Nor can a --compare image, colour, take it. Left out, said."""
    from runtime import encode_bytes
    gray_profile = _in_space(profile, b"GRAY")
    src = tmp_path / "scan.png"
    _photo(np.random.default_rng(13)).convert("L").save(src, icc_profile=gray_profile)
    said = r"its input's colour profile \(ICC\) is dropped: it describes grey, and "
    for out, compare in (("sharp.webp", False), ("compare.png", True)):
        with pytest.warns(SharpenWarning, match=rf"{out}: {said}"):
            run_stream(onnx_model, str(src), tmp_path / out, compare=compare)
        assert _profile_of(tmp_path / out) is None, out
    with pytest.warns(SharpenWarning, match=rf"image\.webp: {said}"):
        answer = encode_bytes(np.zeros((40, 56), np.uint8), ".webp", like=src.read_bytes())
    assert _profile_of(io.BytesIO(answer)) is None
    run_stream(onnx_model, str(src), tmp_path / "sharp.png")   # grey, as the photo
    assert _profile_of(tmp_path / "sharp.png") == gray_profile


def test_a_format_written_without_a_profile_says_so(tmp_path, onnx_model, profile):
    src = tmp_path / "photo.jpg"
    _photo(np.random.default_rng(2)).save(src, icc_profile=profile)
    with pytest.warns(SharpenWarning, match=r"sharp.bmp: its input's colour profile \(ICC\) "
                                            r"is dropped"):
        run_stream(onnx_model, str(src), tmp_path / "sharp.bmp")


def test_a_profile_larger_than_one_jpeg_segment_is_split_and_read_back(profile):
    big = profile + bytes(range(256)) * 600   # 150 KB: three APP2 segments
    buf = io.BytesIO()
    _photo(np.random.default_rng(3)).save(buf, "JPEG")
    out = with_icc_profile(buf.getvalue(), big)
    assert icc_profile(out) == big
    with Image.open(io.BytesIO(out)) as im:
        assert im.info["icc_profile"] == big


def _grown(profile: bytes, extra: int) -> bytes:
    """`profile` padded by `extra` bytes, its header's size (bytes 0-3) saying so: still a
    profile colour management opens (the tag table points inside the first bytes)."""
    grown = bytearray(profile + bytes(extra))
    grown[:4] = len(grown).to_bytes(4, "big")
    ImageCms.ImageCmsProfile(io.BytesIO(bytes(grown)))   # a whole profile to lcms
    return bytes(grown)


def _opens(path) -> None:
    """The file decodes whole in Pillow and OpenCV."""
    with Image.open(path) as im:
        im.load()
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED) is not None


def test_a_profile_cut_short_is_left_out_with_a_warning(tmp_path, onnx_model, profile):
    """A JPEG whose profile lost one of its APP2 segments (a tool that dropped one) holds
    part of a profile: written on, it is a damaged one, which viewers misread or refuse."""
    from runtime.imageio import _jpeg_segments
    whole = _grown(profile, 150_000)   # three APP2 segments
    buf = io.BytesIO()
    _photo(np.random.default_rng(4)).save(buf, "JPEG", icc_profile=whole)
    data = buf.getvalue()
    at = [i for marker, i in _jpeg_segments(data) if marker == 0xE2][1]
    src = tmp_path / "cut.jpg"
    src.write_bytes(data[:at] + data[at + 2 + int.from_bytes(data[at + 2:at + 4], "big"):])
    for ext in ("jpg", "png"):
        out = tmp_path / f"sharp.{ext}"
        with pytest.warns(SharpenWarning, match=r"sharp\.%s: its input's colour profile "
                                                r"\(ICC\) is damaged .*left out" % ext):
            run_stream(onnx_model, str(src), out)
        assert _profile_of(out) is None
        _opens(out)


def test_a_profile_padded_past_its_size_is_kept(tmp_path, onnx_model, profile):
    """Bytes after the size its header gives are padding (some writers round it up), which
    colour management ignores: not a damaged profile."""
    padded = profile + bytes(3)
    src = tmp_path / "padded.jpg"
    _photo(np.random.default_rng(8)).save(src, icc_profile=padded)
    run_stream(onnx_model, str(src), tmp_path / "sharp.png")
    assert _profile_of(tmp_path / "sharp.png") == padded


def test_a_profile_that_is_not_one_is_left_out_with_a_warning(tmp_path, onnx_model,
                                                               profile):
    src = tmp_path / "odd.png"
    _photo(np.random.default_rng(5)).save(src, icc_profile=b"\x00" * 16 + b"RGB " + b"x" * 200)
    with pytest.warns(SharpenWarning, match=r"colour profile \(ICC\) is damaged \(not an ICC "
                                            r"profile"):
        run_stream(onnx_model, str(src), tmp_path / "sharp.jpg")
    assert _profile_of(tmp_path / "sharp.jpg") is None


def test_a_profile_over_pngs_readers_limit_is_kept_in_the_other_formats(tmp_path, onnx_model,
                                                                       profile):
    """Pillow refuses a PNG whose iCCP chunk inflates past 1 MiB: a 1.5 MB profile (a
    calibrated display's lookup tables) written into a PNG made a file it cannot open. The
    warning named JPEG alone as keeping it, where TIFF and WebP do too."""
    big = _grown(profile, 1_500_000)
    src = tmp_path / "photo.jpg"
    _photo(np.random.default_rng(6)).save(src, icc_profile=big)
    with pytest.warns(SharpenWarning, match=r"sharp\.png: its input's colour profile \(ICC, "
                                            r"1,50\d,\d{3} bytes\) is dropped.*\(JPEG, TIFF "
                                            r"and WebP keep it\)"):
        run_stream(onnx_model, str(src), tmp_path / "sharp.png")
    _opens(tmp_path / "sharp.png")
    assert _profile_of(tmp_path / "sharp.png") is None
    for ext in ("jpg", "tif", "webp"):
        run_stream(onnx_model, str(src), tmp_path / f"sharp.{ext}")
        _opens(tmp_path / f"sharp.{ext}")
        assert _profile_of(tmp_path / f"sharp.{ext}") == big, ext


def test_a_png_profile_that_inflates_without_end_is_not_read(tmp_path):
    """An iCCP chunk is zlib data: 40 KB of it (a URL's bytes are anyone's) inflated to
    40 MB, all held in memory and written into the output."""
    import struct
    import zlib
    buf = io.BytesIO()
    _photo(np.random.default_rng(7)).save(buf, "PNG")
    png = buf.getvalue()
    body = b"icc\x00\x00" + zlib.compress(bytes(40_000_000), 9)
    chunk = (struct.pack(">I", len(body)) + b"iCCP" + body
             + struct.pack(">I", zlib.crc32(b"iCCP" + body)))
    at = 8 + 12 + 13   # after IHDR
    assert len(body) < 100_000
    assert icc_profile(png[:at] + chunk + png[at:]) is None
