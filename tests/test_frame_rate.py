"""runtime/frame_rate.py on odd and hostile MP4 sample tables: a clip's peak rate is read
from its header, and a header that cannot be believed gives none (the average rate stands)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from runtime_fixtures import with_stts

from runtime.frame_rate import peak_fps


def _clip(path: Path, frames: int = 60, fps: float = 20) -> Path:
    """An MP4 of `frames` grey 64x48 frames at `fps`, written by OpenCV (one video track)."""
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (64, 48))
    assert vw.isOpened()
    for _ in range(frames):
        vw.write(np.full((48, 64, 3), 128, np.uint8))
    vw.release()
    return path


def test_a_clips_rewritten_table_gives_its_peak_rate(tmp_path):
    """The table's own rate is read (the helper's rewrite is believed): 1.5 s at 40 fps
    between slower stretches."""
    clip = _clip(tmp_path / "even.mp4", frames=130)
    assert peak_fps(clip) is None or abs(peak_fps(clip) - 20) < 0.1
    vfr = with_stts(clip, [(30, 512), (60, 256), (40, 896)], tmp_path / "vfr.mp4")
    assert abs(peak_fps(vfr) - 40) < 0.1, peak_fps(vfr)


def test_a_sample_table_of_billions_of_frames_gives_no_rate(tmp_path):
    """A hostile or damaged table's one entry claiming 4 billion frames: expanded, its times
    asked for 32 GiB, and `sharpen run` of a clip OpenCV reads stopped "out of memory"."""
    clip = _clip(tmp_path / "even.mp4")
    huge = with_stts(clip, [(0xFFFFFFFF, 512)], tmp_path / "huge.mp4", strict=False)
    assert peak_fps(huge) is None
