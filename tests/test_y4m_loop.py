"""scripts/y4m_loop.py: the endless Y4M feed a long-run (soak) test of `sharpen run --source -`
reads, made from real frames and looped."""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from runtime.y4m import Y4MReader

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "y4m_loop.py"


def test_frames_are_resized_and_looped_in_name_order(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), np.full((30, 40, 3), 60 * (i + 1), np.uint8))
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "*.png"), "--size",
                          "16x12", "--frames", "7"], capture_output=True, timeout=120, check=True)
    reader = Y4MReader(io.BytesIO(out.stdout), "stdout")
    frames = []
    while (f := reader.read()) is not None:
        frames.append(f)
    assert len(frames) == 7 and not reader.cut
    assert frames[0].shape == (12, 16, 3)
    levels = [float(f.mean()) for f in frames]   # BT.601 limited range: within a level
    assert np.allclose(levels, [60, 120, 180, 60, 120, 180, 60], atol=1.5), levels


def test_no_frames_is_said_by_pattern(tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "*.png")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no images match" in r.stderr and r.stdout == ""


def test_a_bad_size_or_an_unreadable_image_is_one_line_naming_it(tmp_path):
    """A size without its height, or a file the glob took that is no image, was a traceback."""
    cv2.imwrite(str(tmp_path / "a.png"), np.full((30, 40, 3), 60, np.uint8))
    r = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "*.png"), "--size", "64"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--size" in r.stderr and "64" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    (tmp_path / "b.png").write_bytes(b"not an image")
    r = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "*.png")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "b.png" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_a_rate_or_count_out_of_range_is_refused_naming_the_option(tmp_path):
    """--fps 0, -5 or nan made a header saying 25 fps without a word; --first 0 said no image
    matched the pattern; --frames -1 gave a header and no frame."""
    cv2.imwrite(str(tmp_path / "a.png"), np.full((30, 40, 3), 60, np.uint8))
    for flag, value in (("--fps", "0"), ("--fps", "-5"), ("--fps", "nan"), ("--first", "0"),
                        ("--frames", "-1")):
        r = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "*.png"), "--frames",
                            "2", flag, value], capture_output=True, timeout=120)
        r.stderr = r.stderr.decode(errors="replace")
        assert r.returncode == 2 and flag in r.stderr and value in r.stderr, (flag, r.stderr)
        assert "Traceback" not in r.stderr and not r.stdout
