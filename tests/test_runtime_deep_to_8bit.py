"""16-bit images written where only 8 bits fit (BMP, JPEG, video, an INT8 model's 8-bit input,
a 16-bit alpha beside 8-bit colours). 65535 is 255 x 257, so a 16-bit value x is 8-bit
x / 257, rounded: its high byte (x >> 8, x / 256 rounded down) put about half of a real
16-bit photo's pixels one level off: darker in the shadows, brighter in the highlights."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from runtime import SharpenWarning
from runtime.pipeline import run_stream
from runtime.prepost import to_8bit
from runtime_fixtures import one_op_model


def _rounded(x: np.ndarray) -> np.ndarray:
    return np.round(x.astype(np.float64) / 257).astype(np.uint8)


def test_every_16_bit_value_becomes_the_nearest_8_bit_one():
    every = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    assert np.array_equal(to_8bit(every), _rounded(every))
    bgr = np.stack([every, every[::-1], every.T], axis=-1)
    assert np.array_equal(to_8bit(bgr), _rounded(bgr))
    exact = np.arange(256, dtype=np.uint16) * 257   # 8-bit values made 16-bit come back whole
    assert np.array_equal(to_8bit(exact), np.arange(256, dtype=np.uint8))


def test_a_16_bit_photo_written_as_bmp_keeps_its_brightness(tmp_path):
    model = one_op_model(tmp_path / "identity.onnx", "Identity", ["input"], {})
    rng = np.random.default_rng(0)
    deep = (rng.random((24, 40, 3)) * 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    with pytest.warns(SharpenWarning, match="written as 8-bit"):
        run_stream(model, str(tmp_path / "deep.png"), tmp_path / "out.bmp")
    out = cv2.imread(str(tmp_path / "out.bmp"), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint8
    assert np.array_equal(out, _rounded(deep))
