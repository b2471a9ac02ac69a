"""`sharpen run --lossless`: a video output that keeps every sharpened pixel (FFV1), where
OpenCV's default writers (mp4v, VP8, MPEG-2) round away fine detail of the size a model adds."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.pipeline import StreamOptions, run_stream
from runtime.sinks import SinkError, output_sink
from runtime.video_sink import VideoFileSink
from sharpen.cli import build_parser


def _frames(n: int = 4, h: int = 96, w: int = 128) -> list[np.ndarray]:
    # Fine texture: what a sharpened frame's detail looks like to an encoder.
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def _decoded(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            cap.release()
            return out
        out.append(f)


def _write(path: Path, frames: list[np.ndarray], lossless: bool) -> None:
    sink = VideoFileSink(path, 24.0, lossless=lossless)
    for i, f in enumerate(frames):
        sink.write(f, f, f"frame{i}")
    sink.close()


def test_lossless_mkv_decodes_to_the_written_frames(tmp_path, monkeypatch):
    monkeypatch.setenv("SHARPEN_FFMPEG", str(tmp_path / "no-ffmpeg"))   # OpenCV's file as is
    frames = _frames()
    _write(tmp_path / "lossy.mkv", frames, lossless=False)
    _write(tmp_path / "sharp.mkv", frames, lossless=True)
    lossy, kept = _decoded(tmp_path / "lossy.mkv"), _decoded(tmp_path / "sharp.mkv")
    assert len(kept) == len(frames) == len(lossy)
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(frames, lossy)) > 8
    for a, b in zip(frames, kept):
        np.testing.assert_array_equal(a, b)
    cap = cv2.VideoCapture(str(tmp_path / "sharp.mkv"))
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("ascii", "replace")
    cap.release()
    assert fourcc.upper() == "FFV1"


def test_lossless_avi_too(tmp_path):
    frames = _frames(2)
    _write(tmp_path / "sharp.avi", frames, lossless=True)
    for a, b in zip(frames, _decoded(tmp_path / "sharp.avi")):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("ext", [".mp4", ".webm", ".ts"])
def test_lossless_refuses_a_container_without_ffv1_naming_the_flag(tmp_path, ext):
    with pytest.raises(SinkError, match=r"--lossless.*\.mkv"):
        output_sink(tmp_path / f"sharp{ext}", 24.0, False, flags=True, lossless=True)
    assert not (tmp_path / f"sharp{ext}").exists()


def test_lossless_before_the_model_loads(tmp_path):
    with pytest.raises(SinkError, match=r"lossless.*\.mkv"):
        run_stream(tmp_path / "missing.onnx", _frames(1), tmp_path / "sharp.mp4",
                   StreamOptions(lossless=True))


def test_lossless_flag_reaches_the_options():
    from runtime.cli import options_from_args
    args = build_parser().parse_args(["run", "--model", "m.onnx", "--source", "clip.mp4",
                                      "--out", "sharp.mkv", "--lossless"])
    assert options_from_args(args).lossless is True
    args = build_parser().parse_args(["run", "--model", "m.onnx", "--source", "clip.mp4"])
    assert options_from_args(args).lossless is False


def test_resume_refuses_a_change_of_lossless(tmp_path):
    # A stopped run's mp4v part and a resumed run's FFV1 part cannot be joined by a stream copy.
    from runtime import resume
    src, model = tmp_path / "clip.mkv", tmp_path / "m.onnx"
    src.write_bytes(b"x")
    model.write_bytes(b"y")
    before = resume.identity(model, str(src), 10, {"tile": 0}, "video")
    before["options"].pop("lossless", None)   # a record from before the option
    same = resume.identity(model, str(src), 10, {"tile": 0, "lossless": False}, "video")
    now = resume.identity(model, str(src), 10, {"tile": 0, "lossless": True}, "video")
    assert resume.changes(before, same, flags=True) == []
    said = resume.changes(before, now, flags=True)
    assert len(said) == 1 and "--lossless" in said[0]


@pytest.mark.parametrize("out", [None, "frames/", "sharp.png"])
def test_lossless_without_a_video_out_is_said_to_have_no_effect(out):
    from runtime.cli import unapplied_output_flags
    argv = ["run", "--model", "m.onnx", "--source", "clip.mp4", "--lossless"]
    args = build_parser().parse_args(argv + (["--out", out] if out else []))
    said = unapplied_output_flags(args)
    assert len(said) == 1 and "--lossless" in said[0] and "no effect" in said[0]
    for applied in ("sharp.mkv", "-"):   # FFV1; Y4M in 4:4:4
        args = build_parser().parse_args(argv + ["--out", applied])
        assert unapplied_output_flags(args) == []


def test_lossless_for_a_raw_sources_stdout_is_said_to_have_no_effect():
    """--source raw:WxH --out - writes the BGR frames as they are, which --lossless (4:4:4
    Y4M) cannot change: it was taken without a word."""
    from runtime.cli import unapplied_output_flags
    args = build_parser().parse_args(["run", "--model", "m.onnx", "--source", "raw:64x48",
                                      "--out", "-", "--lossless"])
    said = unapplied_output_flags(args)
    assert len(said) == 1 and "no effect" in said[0] and "raw BGR" in said[0], said


def test_the_refusals_ffmpeg_line_makes_an_mp4_that_players_show_as_written(tmp_path):
    # From BGR, libx264 alone picks 4:4:4 (High 4:4:4, which browsers and phones do not play)
    # and ffmpeg converts by BT.601 untagged, which players take as BT.709 at HD sizes.
    import shlex
    import subprocess

    from runtime_fixtures import ffmpeg_or_skip
    ffmpeg = ffmpeg_or_skip("run the line the refusal gives")
    with pytest.raises(SinkError) as refused:
        output_sink(tmp_path / "sharp.mp4", 24.0, False, flags=True, lossless=True)
    line = str(refused.value).split("e.g. ", 1)[1]
    _write(tmp_path / "sharp.mkv", _frames(2), lossless=True)
    argv = shlex.split(line)
    assert argv[0] == "ffmpeg"
    done = subprocess.run([ffmpeg, "-loglevel", "error", "-y", *argv[1:]], capture_output=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    probe = subprocess.run([ffmpeg, "-hide_banner", "-i", str(tmp_path / "sharp.mp4")],
                           capture_output=True, timeout=60).stderr.decode()
    assert "yuv420p(tv, bt709" in probe, probe
