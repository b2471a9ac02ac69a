"""A video of non-square pixels (DV, HDV, broadcast, some apps' clips): players stretch its
frames by its sample aspect ratio; OpenCV reads the stored pixels and its writer has no ratio
to set, so the sharpened video played narrower than the source, and nothing said so."""
from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from runtime_fixtures import ffmpeg_or_skip, onnx_model, run_cli, write_video

__all__ = ["onnx_model"]  # the fixture is used by name


@pytest.fixture(scope="module")
def ffmpeg() -> str:
    return ffmpeg_or_skip("set a clip's pixel aspect ratio")


def _display_aspect(ffmpeg: str, path: Path) -> str:
    """The display aspect ratio players use: the container's where set (ffmpeg lists it
    last), else the stream's."""
    listing = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-i", str(path)],
                             capture_output=True, text=True, timeout=60).stderr
    return re.findall(r"DAR (\d+:\d+)", listing)[-1]


@pytest.mark.parametrize("compare", [False, True])
def test_a_video_of_non_square_pixels_says_how_to_keep_its_shape(tmp_path, onnx_model,
                                                                 ffmpeg, capsys, compare):
    plain = tmp_path / "plain.mp4"
    write_video(plain, 4, 5.0)                                # 96x64, square pixels: 3:2
    clip = tmp_path / "anamorphic.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-i", str(plain), "-c", "copy",
                    "-aspect", "16:9", str(clip)], check=True, timeout=60)
    assert _display_aspect(ffmpeg, clip) == "16:9"
    out = tmp_path / "sharp.mp4"
    argv = ["run", "--model", str(onnx_model), "--source", str(clip), "--out", str(out),
            "--quiet"] + (["--compare"] if compare else [])
    assert run_cli(argv) == 0
    err = capsys.readouterr().err
    assert "has non-square pixels (sample aspect ratio 32:27)" in err, err
    assert _display_aspect(ffmpeg, out) == ("3:1" if compare else "3:2")   # as written
    command = re.search(r"ffmpeg -i .* -c copy -aspect \S+ \S+", err).group(0)
    args = shlex.split(command)
    subprocess.run([ffmpeg, "-v", "error", "-nostdin"] + args[1:], check=True, timeout=60)
    # Shown as the source is: 16:9, and a side-by-side of two 16:9 pictures
    assert _display_aspect(ffmpeg, Path(args[-1])) == ("32:9" if compare else "16:9")


def test_a_video_of_square_pixels_says_nothing_of_them(tmp_path, onnx_model, capsys):
    clip = tmp_path / "plain.mp4"
    write_video(clip, 3, 5.0)
    assert run_cli(["run", "--model", str(onnx_model), "--source", str(clip), "--out",
                    str(tmp_path / "sharp.mp4"), "--quiet"]) == 0
    assert "pixels" not in capsys.readouterr().err.replace(str(tmp_path), "")   # its name


def test_a_ratio_of_square_pixels_but_for_rounding_says_nothing(tmp_path, onnx_model, ffmpeg,
                                                                capsys):
    """A clip whose SAR is 1:1 but for rounding (1001:1000, 508:507 as MP4 stores a
    rescaled one: a pixel in a few hundred) plays as square pixels: the warning and its
    ffmpeg line are noise."""
    plain = tmp_path / "plain.mp4"
    write_video(plain, 3, 5.0)                                # 96x64
    clip = tmp_path / "near.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-i", str(plain), "-c", "copy",
                    "-aspect", "3003:2000", str(clip)], check=True, timeout=60)
    listing = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-i", str(clip)],
                             capture_output=True, text=True, timeout=60).stderr
    num, den = map(int, re.findall(r"SAR (\d+):(\d+)", listing)[-1])   # 508:507 as stored
    assert num != den and abs(num / den - 1) < 0.005, listing
    assert run_cli(["run", "--model", str(onnx_model), "--source", str(clip), "--out",
                    str(tmp_path / "sharp.mp4"), "--quiet"]) == 0
    assert "pixels" not in capsys.readouterr().err.replace(str(tmp_path), "")   # its name


def test_the_ffmpeg_line_runs_for_an_output_path_with_spaces(tmp_path, onnx_model, ffmpeg,
                                                             capsys):
    plain = tmp_path / "plain.mp4"
    write_video(plain, 3, 5.0)
    clip = tmp_path / "anamorphic.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-i", str(plain), "-c", "copy",
                    "-aspect", "16:9", str(clip)], check=True, timeout=60)
    out = tmp_path / "my clips" / "it's sharp.mp4"
    assert run_cli(["run", "--model", str(onnx_model), "--source", str(clip), "--out",
                    str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    line = " ".join(err.split())   # as one line, however the warning was wrapped
    args = shlex.split(re.search(r"ffmpeg -i .*?-aspect \d+:\d+ '.*?-aspect\.mp4'", line)
                       .group(0))
    assert args[2] == str(out) and Path(args[-1]).parent == out.parent, args
    subprocess.run([ffmpeg, "-v", "error", "-nostdin"] + args[1:], check=True, timeout=60)
    assert _display_aspect(ffmpeg, Path(args[-1])) == "16:9"


def test_a_turned_phone_clip_s_ratio_is_turned_with_its_frames(tmp_path, onnx_model, ffmpeg,
                                                               capsys):
    """A clip stored 96x64 with a 90-degree rotation: OpenCV reads its frames turned, 64x96,
    but the sample aspect ratio is of the stored pixels' width. Applied to the turned frames'
    width unchanged, the printed -aspect gave the output another shape than the source's."""
    plain = tmp_path / "plain.mp4"
    write_video(plain, 3, 5.0)                                # 96x64
    clip = tmp_path / "turned.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-display_rotation", "90", "-i",
                    str(plain), "-c", "copy", "-aspect", "16:9", str(clip)], check=True,
                   timeout=60)
    out = tmp_path / "sharp.mp4"
    assert run_cli(["run", "--model", str(onnx_model), "--source", str(clip), "--out",
                    str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    args = shlex.split(re.search(r"ffmpeg -i .* -c copy -aspect \S+ \S+", err).group(0))
    subprocess.run([ffmpeg, "-v", "error", "-nostdin"] + args[1:], check=True, timeout=60)
    # Players show the source 16:9 turned upright: 9:16
    assert _display_aspect(ffmpeg, Path(args[-1])) == "9:16", err
