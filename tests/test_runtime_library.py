"""A photo library (year/month folders of camera files) sharpened in one run, as a
photographer batch-processes one: the output mirrors its folders."""
from __future__ import annotations

import cv2
import numpy as np

from runtime.pipeline import run_stream
from runtime_fixtures import onnx_model

__all__ = ["onnx_model"]  # the fixture is used by name


def _library(root, names: list[str]) -> None:
    for k, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / name), np.full((24, 32, 3), 40 + 20 * k, np.uint8))


def test_a_libraries_folders_are_mirrored_in_the_output(tmp_path, onnx_model):
    """Unique names came out flat in one folder: a library of thousands lost its year/month
    order, and a later month's IMG_0001 (a camera's counter wraps) then moved the rest."""
    names = ["2024/01/IMG_0001.jpg", "2024/02/IMG_0002.png", "2025/12/IMG_0003.jpg"]
    _library(tmp_path / "lib", names)
    run_stream(onnx_model, str(tmp_path / "lib" / "**" / "*"), tmp_path / "out")
    got = sorted(p.relative_to(tmp_path / "out").as_posix()
                 for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert got == names
