"""A photo's ICC colour profile (a phone's Display P3, Adobe RGB from a camera) kept in the
sharpened image. OpenCV neither reads nor writes one: the result held the same pixel values
without it, which colour-managed viewers (browsers, macOS, phones) show as sRGB, duller than
the input beside it, and nothing said so."""
from __future__ import annotations

import io

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


@pytest.mark.parametrize("src_ext", ["jpg", "png", "webp"])
@pytest.mark.parametrize("out_ext", ["png", "jpg"])
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
    run_stream(onnx_model, str(tmp_path / "in"), tmp_path / "out")
    assert _profile_of(tmp_path / "out" / "p3.jpg") == profile
    assert _profile_of(tmp_path / "out" / "plain.jpg") is None
    assert _profile_of(tmp_path / "out" / "gray.png") == gray_profile
    assert _profile_of(tmp_path / "out" / "print.jpg") is None
    with Image.open(tmp_path / "out" / "print.jpg") as im:
        assert im.mode == "RGB"


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
