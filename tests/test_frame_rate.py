"""runtime/frame_rate.py on odd and hostile MP4 sample tables: a clip's peak rate is read
from its header, and a header that cannot be believed gives none (the average rate stands)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from runtime_fixtures import onnx_model, read_video, run_cli, with_stts

from runtime.frame_rate import peak_fps

__all__ = ["onnx_model"]  # the fixture is used by name


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


def test_a_short_burst_far_above_the_average_is_capped_at_60_fps(tmp_path):
    """A screen recording averaging 30 fps with a 1 s burst at 120: written at its 120 fps
    peak, the whole clip took 4 times the frames to sharpen and encode for one second's
    sake. Its video takes the peak only up to 60 fps, and says the peak it had."""
    from runtime.video_source import VideoSource

    clip = _clip(tmp_path / "even.mp4", frames=170, fps=30)
    vfr = with_stts(clip, [(10, 1024), (120, 128), (40, 1536)], tmp_path / "screen.mp4")
    assert abs(peak_fps(vfr) - 120) < 0.1, peak_fps(vfr)
    src = VideoSource(str(vfr), str(vfr))
    try:
        assert src.fps == 60 and abs(src.average_fps - 30) < 0.1, (src.fps, src.average_fps)
        assert abs(src.peak_fps - 120) < 0.1, src.peak_fps
        assert abs(src.describe()["peak_fps"] - 120) < 0.1, src.describe()
    finally:
        src.close()


def test_a_peak_up_to_60_fps_is_taken_whole(tmp_path):
    """A phone's 60 fps with slower stretches keeps every frame: the cap leaves it alone."""
    from runtime.video_source import VideoSource

    clip = _clip(tmp_path / "even.mp4", frames=170, fps=30)
    vfr = with_stts(clip, [(40, 1024), (80, 256), (50, 512)], tmp_path / "phone.mp4")
    src = VideoSource(str(vfr), str(vfr))
    try:
        assert abs(src.fps - 60) < 0.1 and src.peak_fps is None, (src.fps, src.peak_fps)
        assert "peak_fps" not in src.describe()
    finally:
        src.close()


def test_a_capped_clips_run_writes_60_fps_and_says_how_to_keep_every_frame(
        tmp_path, capsys, onnx_model):
    """The burst clip above sharpened: a 60 fps video up to its last frame's time, 5.57 s
    (335 frames, not the 669 its 120 fps peak took), the burst's frames in filled intervals
    left out, and the note names the peak and the --fps that keeps them."""
    clip = _clip(tmp_path / "even.mp4", frames=170, fps=30)
    vfr = with_stts(clip, [(10, 1024), (120, 128), (40, 1536)], tmp_path / "screen.mp4")
    out = tmp_path / "sharp.mp4"
    rc = run_cli(["run", "--model", str(onnx_model), "--source", str(vfr), "--out", str(out),
                  "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0 and "warning" not in err, err
    frames, fps = read_video(out)
    assert fps == 60 and abs(len(frames) - 335) <= 1, (fps, len(frames))
    assert ("the 60 fps video (the clip's peak rate of 120 capped at 60; 30 on average; "
            "--fps 120 keeps every frame) repeats") in err, err
