"""A camera photo's EXIF (capture date, camera, GPS) kept in the sharpened image. OpenCV writes
none: a batch over a photo library lost every date and place the photos were sorted by. The
pixels are turned upright on reading, so the kept Orientation says 1 (as stored), or viewers
turned the upright result once more."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from runtime import SharpenWarning
from runtime.pipeline import run_stream
from runtime_fixtures import onnx_model

__all__ = ["onnx_model"]  # the fixture is used by name

DATE = "2024:06:01 12:34:56"


def _exif(orientation: int = 1) -> Image.Exif:
    e = Image.Exif()
    e[0x010F], e[0x0110], e[0x0112], e[0x0132] = "Canon", "EOS R6", orientation, DATE
    e.get_ifd(0x8769)[0x9003] = DATE   # DateTimeOriginal, in the Exif IFD
    e.get_ifd(0x8825)[1] = "N"         # GPSLatitudeRef, in the GPS IFD
    return e


def _photo(path, orientation: int = 1, w: int = 56, h: int = 40) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(
        path, exif=_exif(orientation))


@pytest.mark.parametrize("src_ext", ["jpg", "png", "webp"])
@pytest.mark.parametrize("out_ext", ["jpg", "png"])
def test_the_photo_s_exif_is_kept(tmp_path, onnx_model, src_ext, out_ext):
    src, out = tmp_path / f"photo.{src_ext}", tmp_path / f"sharp.{out_ext}"
    _photo(src)
    run_stream(onnx_model, str(src), out)
    with Image.open(out) as im:
        e = im.getexif()
        assert (e[0x010F], e[0x0110], e[0x0132]) == ("Canon", "EOS R6", DATE)
        assert e.get_ifd(0x8769)[0x9003] == DATE
        assert e.get_ifd(0x8825)[1] == "N"
        im.load()   # a whole file


def test_a_turned_photo_is_written_upright_and_its_exif_says_so(tmp_path, onnx_model):
    (tmp_path / "in").mkdir()
    e = _exif(6)   # stored on its side, as the camera's sensor took it
    e.get_ifd(0x8769).update({0xA002: 56, 0xA003: 40})   # PixelXDimension, PixelYDimension
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((40, 56, 3)) * 255).astype(np.uint8)).save(
        tmp_path / "in" / "portrait.jpg", exif=e)
    run_stream(onnx_model, str(tmp_path / "in"), tmp_path / "out")
    with Image.open(tmp_path / "out" / "portrait.jpg") as im:
        assert im.size == (40, 56)   # turned upright
        e = im.getexif()
        assert e[0x0112] == 1 and e[0x0132] == DATE
        exif_ifd = e.get_ifd(0x8769)
        assert (exif_ifd[0xA002], exif_ifd[0xA003]) == (40, 56)   # the upright size


def test_a_photo_without_exif_gets_none(tmp_path, onnx_model):
    src = tmp_path / "plain.jpg"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(src)
    run_stream(onnx_model, str(src), tmp_path / "sharp.jpg")
    with Image.open(tmp_path / "sharp.jpg") as im:
        assert not im.getexif()


def test_a_format_written_without_exif_says_so(tmp_path, onnx_model):
    src = tmp_path / "photo.jpg"
    _photo(src)
    with pytest.warns(SharpenWarning, match=r"sharp\.tif: its input's EXIF .* dropped"):
        run_stream(onnx_model, str(src), tmp_path / "sharp.tif")
