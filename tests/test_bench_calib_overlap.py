"""`sharpen bench --calib` on the frames it then scores: the INT8 rows were calibrated on the
very images their quality is measured on, unsaid, and looked better than on unseen frames."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bench_fixtures import _bench
from distill.images import write_image


def test_overlap_is_found_by_path_and_by_content(tmp_path):
    """A scored image given to --calib as itself, or as a copy elsewhere, is counted; an image
    of the same size but other content is not."""
    from benchmarks.calib_overlap import calib_overlap

    scored = tmp_path / "scored"
    for i in range(3):
        write_image(scored / f"f{i}.png", np.full((16, 24, 3), 0.2 * i + 0.1, np.float32))
    calib = tmp_path / "calib"
    calib.mkdir()
    shutil.copy(scored / "f1.png", calib / "copy.png")
    write_image(calib / "other.png", np.full((16, 24, 3), 0.9, np.float32))
    files = sorted(scored.iterdir())
    assert calib_overlap([str(scored / "f0.png"), str(calib)], files) == {
        "images": 2, "calib_images": 3, "scored_images": 3,
        "examples": ["f0.png", "copy.png"]}
    apart = tmp_path / "apart"
    apart.mkdir()
    shutil.copy(calib / "other.png", apart / "other.png")
    assert calib_overlap([str(apart)], files) is None


@pytest.mark.slow
def test_bench_warns_when_calib_images_are_also_scored(env, tmp_path, capsys):
    """--calib DATA/input with --data DATA: said in one line and in report.json's settings."""
    cache = tmp_path / "cache"
    rc = _bench(env, "calib-overlap", "--students", str(env / "student-good.pt"),
                "--formats", "onnx-int8", "--no-latency", "--calib-count", "4",
                "--calib", str(env / "pairs" / "input"), "--cache", str(cache))
    assert rc in (0, 1)
    said = [line for line in capsys.readouterr().err.splitlines() if "also scored" in line]
    assert len(said) == 1, said
    assert said[0].startswith(f"warning: --calib {env / 'pairs' / 'input'}: 3 of its 3 images")
    assert "a calibration folder apart from the scored images" in said[0]
    report = json.loads((env / "calib-overlap" / "report.json").read_text())
    assert report["settings"]["calib_overlap"]["images"] == 3
    md = (env / "calib-overlap" / "report.md").read_text()
    assert "3 of its 3 images are also scored" in md


@pytest.mark.slow
def test_bench_warns_when_calib_images_are_the_real_blur_pairs(env, tmp_path, capsys):
    """The same with --real-pairs: its scored images are checked against --calib too."""
    rc = _bench(env, "calib-overlap-real", "--students", str(env / "student-good.pt"),
                "--formats", "onnx-int8", "--no-latency", "--calib-count", "4",
                "--data", "embedded", "--real-pairs", str(env / "pairs"),
                "--calib", str(env / "pairs" / "input"), "--cache", str(tmp_path / "cache"))
    assert rc in (0, 1)
    said = [line for line in capsys.readouterr().err.splitlines() if "also scored" in line]
    assert len(said) == 1 and "3 of its 3 images are also scored" in said[0], said
