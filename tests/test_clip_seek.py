"""Frames far into a clip are reached by a keyframe seek where that gives the very frame decoding
forward gives, and by decoding forward where it would not (a variable frame rate): checked by
frame identity against a sequential decode of tiny generated H.264 clips."""
from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from distill.data.sources import FrameReader
from tests.runtime_fixtures import ffmpeg_or_skip, read_video

W, H, N = 64, 48, 150


def _frame(i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    return cv2.resize(rng.integers(0, 255, (H // 8, W // 8, 3), dtype=np.uint8), (W, H),
                      interpolation=cv2.INTER_NEAREST)


def _clip(path, *x264: str, vf: str = "", n: int = N) -> str:
    """An H.264 clip of n distinct frames at 30 fps, encoded with the given x264 options."""
    ffmpeg = ffmpeg_or_skip("make an H.264 test clip")
    cmd = [ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24",
           "-s", f"{W}x{H}", "-r", "30", "-i", "-", *(["-vf", vf, "-fps_mode", "passthrough"]
                                                      if vf else []),
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-sc_threshold", "0", *x264, str(path)]
    raw = b"".join(_frame(i).tobytes() for i in range(n))
    subprocess.run(cmd, input=raw, check=True, timeout=60)
    return str(path)


def _sequential(path: str) -> list[np.ndarray]:
    return read_video(Path(path))[0]


def _read(path: str, order: list[int]) -> tuple[list[np.ndarray], FrameReader]:
    reader = FrameReader(path)
    try:
        return [reader.read_bgr(i) for i in order], reader
    finally:
        reader.close()


ORDER = [3, 100, 101, 140, 20, 149, 75]


@pytest.mark.parametrize("x264", [
    ("-g", "10", "-bf", "0"),                         # a keyframe every third of a second
    ("-g", "12", "-bf", "3", "-preset", "medium"),    # B-frames: decode order is not display order
], ids=["gop10", "bframes"])
def test_far_frames_are_sought_and_are_the_frames_a_sequential_decode_gives(tmp_path, x264):
    clip = _clip(tmp_path / "dash.mp4", *x264)
    seq = _sequential(clip)
    assert len(seq) == N
    got, reader = _read(clip, ORDER)
    for i, f in zip(ORDER, got):
        assert np.array_equal(f, seq[i]), f"frame {i} is another frame"
    assert reader.seeks >= 3


def test_a_clip_with_one_keyframe_is_decoded_forward(tmp_path):
    # A seek would decode from frame 0 each time: reading forward from the last frame is less.
    clip = _clip(tmp_path / "long-gop.mp4", "-g", "1000", "-bf", "0")
    seq = _sequential(clip)
    got, reader = _read(clip, ORDER)
    assert all(np.array_equal(f, seq[i]) for i, f in zip(ORDER, got))
    assert reader.seeks == 0


@pytest.mark.parametrize("gap_at", [60, 120])   # within the first frames checked, and past them
def test_a_variable_frame_rate_clip_is_decoded_forward_not_sought(tmp_path, gap_at):
    # Half a second without frames after frame `gap_at`: a seek by timestamp lands 15 frames
    # early.
    clip = _clip(tmp_path / "vfr.mp4", "-g", "10", "-bf", "0",
                 vf=f"setpts=N/(30*TB)+gte(N\\,{gap_at})*0.5/TB")
    seq = _sequential(clip)
    assert len(seq) == N
    got, reader = _read(clip, ORDER)
    for i, f in zip(ORDER, got):
        assert np.array_equal(f, seq[i]), f"frame {i} is another frame"
    assert reader.seeks == 0


def test_a_short_pause_late_in_a_long_clip_is_found_and_the_clip_decoded_forward(tmp_path):
    # Two frames' pause after frame 5000 of 6000 barely moves the mean rate (the first 600
    # frames keep time with it, and the last frame is where it puts it), yet a seek by
    # timestamp to a frame before the pause lands a frame late.
    n = 6000
    clip = _clip(tmp_path / "pause.mp4", "-g", "10", "-bf", "0", n=n,
                 vf="setpts=N/(30*TB)+gte(N\\,5000)*2/(30*TB)")
    seq = _sequential(clip)
    assert len(seq) == n
    order = [3, 2000, 4000, 5500, n - 1]
    got, reader = _read(clip, order)
    for i, f in zip(order, got):
        assert np.array_equal(f, seq[i]), f"frame {i} is another frame"
    assert reader.seeks == 0


def test_a_clip_found_unseekable_late_goes_on_from_where_it_was(tmp_path):
    # Frames 0-40 read forward (too near for a seek), then frame 140: the one-time check finds
    # the pause and rules seeking out. Reading on from frame 41 decodes 100 frames; the check
    # had moved the capture, so the reader reopened the clip and decoded 0-140 again.
    clip = _clip(tmp_path / "vfr.mp4", "-g", "10", "-bf", "0",
                 vf="setpts=N/(30*TB)+gte(N\\,60)*0.5/TB")
    seq = _sequential(clip)
    order = [*range(41), 140]
    got, reader = _read(clip, order)
    assert all(np.array_equal(f, seq[i]) for i, f in zip(order, got))
    assert reader.seeks == 0 and reader._seek.exact is False
    assert reader.decoded == 141


def _cut_mid_gop(tmp_path) -> str:
    """A .ts whose first bytes are cut away, as a recording joined mid-stream: its first
    packet is no keyframe, so its keyframes cannot be listed."""
    full = _clip(tmp_path / "full.ts", "-g", "30", "-bf", "0", n=300)
    data = open(full, "rb").read()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[188 * (len(data) // 188 // 5):])   # whole 188-byte TS packets
    return str(cut)


def test_a_clip_whose_keyframes_cannot_be_listed_is_decoded_forward_and_says_why(tmp_path):
    # Without its keyframe list a pause past the first frames checked would go unseen, and
    # every seek after it would land on another frame: such a clip is never sought.
    clip = _cut_mid_gop(tmp_path)
    seq = _sequential(clip)
    order = [3, 100, 150, 200, len(seq) - 1]
    got, reader = _read(clip, order)
    for i, f in zip(order, got):
        assert np.array_equal(f, seq[i]), f"frame {i} is another frame"
    assert reader.seeks == 0
    assert reader.seek_note == (f"{clip}: decoded forward from its start (its keyframes "
                                "cannot be listed: its first packet is no keyframe)")


def test_an_open_gop_clip_is_decoded_forward_and_says_open_gop(tmp_path):
    clip = _clip(tmp_path / "open-gop.mp4", "-g", "12", "-bf", "3",
                 "-x264-params", "open-gop=1")
    seq = _sequential(clip)
    got, reader = _read(clip, ORDER)
    for i, f in zip(ORDER, got):
        assert np.array_equal(f, seq[i]), f"frame {i} is another frame"
    assert reader.seeks == 0
    assert reader.seek_note == (f"{clip}: decoded forward from its start "
                                "(open GOP: a seek may land elsewhere)")


def test_a_sought_clip_and_one_read_forward_anyway_have_no_note(tmp_path):
    clip = _clip(tmp_path / "dash.mp4", "-g", "10", "-bf", "0")
    _, reader = _read(clip, ORDER)
    assert reader.seeks >= 3 and reader.seek_note is None
    _, reader = _read(clip, list(range(20)))   # never far enough ahead to look
    assert reader.seek_note is None


def test_sharpen_evaluate_says_once_why_an_open_gop_clip_is_decoded_forward(tmp_path, capsys):
    from sharpen.cli import main
    clip = _clip(tmp_path / "open-gop.mp4", "-g", "12", "-bf", "3",
                 "-x264-params", "open-gop=1")
    assert main(["evaluate", "--weights", "fast", "--data", clip,
                 "--frames", "3,100,140"]) == 0
    out = capsys.readouterr().out
    note = f"note: {clip}: decoded forward from its start (open GOP: a seek may land elsewhere)"
    assert out.count(note) == 1, out


def test_bench_real_nogt_says_why_an_open_gop_clip_is_decoded_forward(tmp_path):
    from benchmarks.realblur import run_real_blur
    clip = _clip(tmp_path / "open-gop.mp4", "-g", "12", "-bf", "3",
                 "-x264-params", "open-gop=1")
    said: list[str] = []
    run_real_blur(None, [clip], lambda x: x, [], tmp_path, said.append, None, None,
                  quiet=True, frames=[3, 100, 140])
    note = f"note: {clip}: decoded forward from its start (open GOP: a seek may land elsewhere)"
    assert said.count(note) == 1, said


def test_a_clip_whose_packets_stop_before_its_declared_frames_is_decoded_forward(tmp_path):
    # Cut short after its header: the keyframes past the cut go unlisted and unchecked.
    whole = _clip(tmp_path / "whole.mp4", "-g", "10", "-bf", "0", "-movflags", "+faststart")
    data = open(whole, "rb").read()
    clip = tmp_path / "cut.mp4"
    clip.write_bytes(data[: len(data) * 3 // 4])
    seq = _sequential(str(clip))
    assert 90 < len(seq) < N
    order = [3, 90, len(seq) - 1]
    got, reader = _read(str(clip), order)
    for i, f in zip(order, got):
        assert np.array_equal(f, seq[i]), f"frame {i} is another frame"
    assert reader.seeks == 0
    assert reader.seek_note.startswith(f"{clip}: decoded forward from its start (its keyframes "
                                       "cannot be listed whole: ")
    assert reader.seek_note.endswith(f" of the {N} frames it declares)")


def test_the_check_itself_refuses_a_clip_whose_keyframes_cannot_be_listed(tmp_path):
    from distill.data.frame_seek import SeekCheck
    clip = _cut_mid_gop(tmp_path)
    cap = cv2.VideoCapture(clip)
    try:
        seek = SeekCheck(clip)
        assert seek.check(cap, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 100) is False
    finally:
        cap.release()
    assert seek.why == "its keyframes cannot be listed: its first packet is no keyframe"
