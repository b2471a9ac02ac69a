"""A sharpened video plays in its source's colours. OpenCV's writer encodes BT.601 YUV and
tagged nothing, and players take untagged HD video as BT.709: a bar of green 185 showed as 156
beside the source, which read as the model's fault. The video is now tagged (an ffmpeg stream
copy), with the source's primaries and transfer; without ffmpeg an HD video says it is not.

Colours are measured as a player shows them: decoded by ffmpeg to BGR by the stream's tagged
matrix, BT.709 where it has none (a player's guess for HD; these clips are 64x48 so as to be
quick, and the guess is made for them as for HD), with exact rounding (players convert in
floating point), at the middle of 16x16 blocks of one colour each."""
from __future__ import annotations

import itertools
import re
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime_fixtures import ffmpeg_or_skip, one_op_model, run_cli, runtime_warnings

from runtime.colour_tags import source_colours
from runtime.video_sink import VideoFileSink

W, H, FPS, FRAMES = 64, 48, 10, 6
# BGR: 75% bars, then greys, a sky blue and a green; 4 a row, 3 rows of 16x16 blocks
COLOURS = [(191, 191, 191), (0, 191, 191), (191, 191, 0), (0, 191, 0), (191, 0, 191),
           (0, 0, 191), (191, 0, 0), (16, 16, 16), (128, 128, 128), (200, 110, 60),
           (235, 235, 235), (120, 200, 40)]
GREEN = 3
# What OpenCV's conversions round away: its capture's and its writer's libswscale, without
# SWS_ACCURATE_RND, each lower a channel by up to 3 (grey 128 is written as Y 125, U/V 127).
ROUNDING = 7
CODEC_LOSS = {".ts": 2}   # MPEG-2 at OpenCV's rate, on a magenta block 8 px of chroma wide
EXACT = "scale=flags=accurate_rnd+full_chroma_int"
TAGGED = ["-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709",
          "-color_range", "tv"]


SIZES = {"sd": 1, "hd": 20}   # 64x48, and 1280x960, which players take as HD


def bars(scale: int = 1) -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    for i, c in enumerate(COLOURS):
        r, q = divmod(i, 4)
        img[r * 16:(r + 1) * 16, q * 16:(q + 1) * 16] = c
    return np.repeat(np.repeat(img, scale, 0), scale, 1)


def centres(img: np.ndarray) -> np.ndarray:
    k = img.shape[1] // W
    return np.array([img[(r * 16 + 8) * k, (q * 16 + 8) * k] for r in range(3)
                     for q in range(4)], int)


@pytest.fixture(scope="module")
def ffmpeg() -> str:
    return ffmpeg_or_skip("make colour-bar clips and read their colours")


def listing(ffmpeg: str, path: Path) -> str:
    """The video stream's line of ffmpeg's listing of `path`."""
    done = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-i", str(path)],
                          capture_output=True, text=True, timeout=60)
    return re.search(r"Stream #.*Video: .*", done.stderr).group(0)


def matrix_of(ffmpeg: str, path: Path) -> str:
    """The matrix the video says (ffmpeg's name), or '' where it says none."""
    found = re.search(r"Video: [^,]+, \w+\(([^)]*)\)", listing(ffmpeg, path))
    for part in (found.group(1).split(", ") if found else []):
        if "/" in part or part.startswith(("bt", "smpte")):
            return part.split("/")[0]
    return ""


def shown(ffmpeg: str, path: Path, player: bool = True) -> np.ndarray:
    """The first frame's block colours as a player shows them (see the module's text), or,
    `player` False, as ffmpeg decodes it (BT.601 where it says no matrix)."""
    matrix = matrix_of(ffmpeg, path)
    w, h = (int(n) for n in re.search(r", (\d+)x(\d+)", listing(ffmpeg, path)).groups())
    if not matrix:
        matrix = "bt709" if player and (w >= 1280 or h > 576) else "bt601"
    done = subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-i", str(path), "-vf",
                           f"{EXACT}:in_color_matrix={matrix}", "-frames:v", "1", "-f",
                           "rawvideo", "-pix_fmt", "bgr24", "-"],
                          capture_output=True, timeout=60, check=True)
    return centres(np.frombuffer(done.stdout, np.uint8).reshape(h, w, 3))


@pytest.fixture(scope="module")
def clips(tmp_path_factory, ffmpeg) -> dict[str, Path]:
    """The bars as a camera's BT.709 clip, tagged so, and as an untagged BT.601 one (what
    OpenCV and ffmpeg take an untagged clip as), each small and HD; the small tagged one with
    sound too."""
    folder = tmp_path_factory.mktemp("colour")
    made = {}
    for (size, scale), (name, matrix, tags) in itertools.product(
            SIZES.items(), (("bt709", "bt709", TAGGED), ("untagged", "bt601", []))):
        png = folder / f"bars-{size}.png"
        cv2.imwrite(str(png), bars(scale))
        plain = folder / f"{name}-{size}-plain.mp4"
        subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y", "-loop", "1", "-i", str(png),
                        "-frames:v", str(FRAMES), "-r", str(FPS), "-vf",
                        f"scale=out_color_matrix={matrix}:out_range=tv:flags=accurate_rnd,"
                        "format=yuv420p", "-c:v", "mpeg4", "-q:v", "1", str(plain)],
                       check=True, timeout=60)
        made[f"{name}-{size}"] = folder / f"{name}-{size}.mp4"
        # The tags by a stream copy: an encoder's own may or may not carry them.
        subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y", "-i", str(plain), "-c", "copy",
                        *tags, str(made[f"{name}-{size}"])], check=True, timeout=60)
    made["loud"] = folder / "loud.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y", "-i", str(made["bt709-sd"]), "-f",
                    "lavfi", "-i", f"sine=frequency=440:duration={FRAMES / FPS}", "-map", "0:v",
                    "-map", "1:a", "-c:v", "copy", "-c:a", "aac", str(made["loud"])],
                   check=True, timeout=60)
    return made


@pytest.fixture(scope="module")
def identity(tmp_path_factory) -> Path:
    return one_op_model(tmp_path_factory.mktemp("model") / "identity.onnx", "Identity",
                        ["input"], {})


def _run(capsys, *argv: str) -> tuple[int, str]:
    rc = run_cli(["run", *argv, "--quiet"])
    return rc, capsys.readouterr().err


def test_the_clips_play_as_the_bars(ffmpeg, clips):
    """The measure itself: the sources show the bars, but for the untagged HD one, BT.601 shown
    as BT.709, as players show untagged HD video, its green 29 levels dark (what a video
    written from the bars showed)."""
    for name in ("bt709-sd", "untagged-sd", "bt709-hd"):
        assert np.abs(shown(ffmpeg, clips[name]) - centres(bars())).max() <= 4, name
    assert np.abs(shown(ffmpeg, clips["untagged-hd"], player=False)
                  - centres(bars())).max() <= 4
    assert centres(bars())[GREEN][1] - shown(ffmpeg, clips["untagged-hd"])[GREEN][1] > 20


@pytest.mark.parametrize("source,ext", [
    *itertools.product(("bt709-sd", "untagged-sd"), (".mp4", ".mkv", ".webm", ".ts")),
    ("bt709-hd", ".mp4"), ("untagged-hd", ".mp4")])
def test_a_sharpened_video_plays_in_its_sources_colours(
        tmp_path, capsys, monkeypatch, ffmpeg, clips, identity, source, ext):
    """In a player and in ffmpeg. An untagged HD source's video is left untagged: both take
    it as they take the source (a player as BT.709, ffmpeg as BT.601)."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    out = tmp_path / f"sharp{ext}"
    rc, err = _run(capsys, "--model", str(identity), "--source", str(clips[source]),
                   "--out", str(out))
    assert rc == 0 and "warning" not in err, err
    for player in (True, False):
        want, got = shown(ffmpeg, clips[source], player), shown(ffmpeg, out, player)
        assert np.abs(got - want).max() <= ROUNDING + CODEC_LOSS.get(ext, 0), (
            player, (got - want).tolist())
    line = listing(ffmpeg, out)
    assert matrix_of(ffmpeg, out) == ("" if source == "untagged-hd" else "smpte170m"), line
    assert source == "untagged-hd" or "(tv, " in line, line
    # The source's primaries and transfer are kept where it says them.
    assert ("smpte170m/bt709/bt709" in line) == source.startswith("bt709"), line
    assert [p.name for p in tmp_path.iterdir()] == [out.name]   # no temporary file left


def test_the_sound_copy_and_a_comparison_keep_the_colours(
        tmp_path, capsys, monkeypatch, ffmpeg, clips, identity):
    """Tagged in the sound's copy, the one copy the video goes through."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    out = tmp_path / "cmp.mp4"
    rc, err = _run(capsys, "--model", str(identity), "--source", str(clips["loud"]),
                   "--out", str(out), "--compare")
    assert rc == 0 and "warning" not in err, err
    line = listing(ffmpeg, out)
    assert "smpte170m/bt709/bt709" in line, line
    done = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-i", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert "Audio: aac" in done.stderr, done.stderr


@pytest.mark.parametrize("ext", [".mp4", ".ts"])
def test_a_resumed_videos_join_keeps_the_tags_and_every_frame(tmp_path, monkeypatch, ffmpeg,
                                                              ext):
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    out = tmp_path / f"joined{ext}"
    first = VideoFileSink(out, FPS)
    for _ in range(10):   # an MPEG-TS of 3 frames is too short for OpenCV to read back
        first.write(bars(), bars(), "f")
    first.close()
    second = VideoFileSink(out, FPS)
    second.join(out, 10)
    for _ in range(5):
        second.write(bars(), bars(), "f")
    second.close()
    assert matrix_of(ffmpeg, out) == "smpte170m", listing(ffmpeg, out)
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 15
    assert np.abs(shown(ffmpeg, out) - centres(bars())).max() <= ROUNDING


def _write(path: Path, size: tuple[int, int], source: Path | None = None) -> list[str]:
    frame = cv2.resize(bars(), size, interpolation=cv2.INTER_NEAREST)
    with runtime_warnings() as said:
        sink = VideoFileSink(path, FPS, flags=True)
        sink.colour_source = str(source) if source else None
        for _ in range(2):
            sink.write(frame, frame, "f")
        sink.close()
    return said


def test_without_ffmpeg_an_hd_video_says_its_colours_are_untagged(tmp_path, monkeypatch):
    """No ffmpeg, no tags: an HD video, which players take as BT.709, says so and how to tag
    it; an SD one, which they take as BT.601, as written, plays right and says nothing."""
    monkeypatch.setenv("SHARPEN_FFMPEG", str(tmp_path / "no-such-ffmpeg"))
    said = _write(tmp_path / "hd.mp4", (1280, 720))
    assert len(said) == 1, said
    assert said[0].startswith(f"--out {tmp_path / 'hd.mp4'}: its frames are in BT.601 colours "
                              "(OpenCV's writer), while players take untagged 1280x720 video "
                              "as BT.709"), said
    assert "SHARPEN_FFMPEG" in said[0] and "is not an executable file" in said[0], said
    assert _write(tmp_path / "sd.mp4", (640, 480)) == []


def test_without_ffmpeg_an_untagged_hd_sources_video_says_nothing(tmp_path, monkeypatch,
                                                                   clips):
    """Untagged, it plays as its untagged source does: there is nothing to say. A tagged
    source's is said, its tags read from the MP4 without ffmpeg."""
    monkeypatch.setenv("SHARPEN_FFMPEG", str(tmp_path / "no-such-ffmpeg"))
    assert _write(tmp_path / "hd.mp4", (1280, 960), clips["untagged-hd"]) == []
    said = _write(tmp_path / "hd.mp4", (1280, 960), clips["bt709-hd"])
    assert len(said) == 1 and "BT.601" in said[0], said


def test_an_hd_video_in_a_container_without_colour_tags_says_so(tmp_path, monkeypatch, ffmpeg):
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    said = _write(tmp_path / "hd.avi", (1280, 720))
    assert len(said) == 1 and ".avi holds no colour tags: write .mp4, .mkv" in said[0], said


def test_an_hdr_sources_transfer_is_not_given_to_the_sdr_video(tmp_path, ffmpeg, clips):
    """Its frames are read as SDR (runtime/hdr.py): PQ tags would have a player tone map
    them as HDR."""
    hdr = tmp_path / "hdr.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-i", str(clips["untagged-sd"]), "-c",
                    "copy", "-color_primaries", "bt2020", "-color_trc", "smpte2084",
                    "-colorspace", "bt2020nc", str(hdr)], check=True, timeout=60)
    assert source_colours(hdr, ffmpeg) == ("bt2020nc", None, None, (W, H))
    assert source_colours(clips["bt709-sd"], ffmpeg) == ("bt709", "bt709", "bt709", (W, H))
    assert source_colours(clips["untagged-hd"], ffmpeg) == (None, None, None, (1280, 960))


def test_a_cameras_hd_recording_says_how_to_tag_it(tmp_path, monkeypatch, ffmpeg):
    """Hours of it are not copied at its end (a service's stop waited on the copy): the
    command that tags it is said, and does."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    out = tmp_path / "day.ts"
    frame = bars(20)
    with runtime_warnings() as said:
        sink = VideoFileSink(out, FPS, flags=True)
        sink.keep_previous = True
        for _ in range(10):
            sink.write(frame, frame, "f")
        sink.close()
    assert len(said) == 1 and "to tag them without re-encoding: ffmpeg -i" in said[0], said
    assert matrix_of(ffmpeg, out) == ""
    command = said[0].split("re-encoding: ")[1].split()
    subprocess.run([ffmpeg, "-v", "error", *command[1:]], check=True, timeout=60)
    tagged = tmp_path / "day-tagged.ts"
    assert matrix_of(ffmpeg, tagged) == "smpte170m"
    assert np.abs(shown(ffmpeg, tagged) - centres(bars())).max() <= ROUNDING


def test_an_ffmpeg_that_refuses_the_tags_still_copies_the_sound(
        tmp_path, capsys, monkeypatch, ffmpeg, clips, identity):
    """One built without a bitstream filter, or older: the sound is kept, the video said to
    be untagged."""
    refusing = tmp_path / "bin" / "ffmpeg"
    refusing.parent.mkdir()
    calls = tmp_path / "calls"
    refusing.write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\n'
                        'for a in "$@"; do [ "$a" = -colorspace ] && '
                        '{ echo "Unrecognized option colorspace" >&2; exit 1; }; done\n'
                        f'exec "{ffmpeg}" "$@"\n')
    refusing.chmod(0o755)
    monkeypatch.setenv("SHARPEN_FFMPEG", str(refusing))
    out = tmp_path / "sharp.mp4"
    rc, err = _run(capsys, "--model", str(identity), "--source", str(clips["loud"]),
                   "--out", str(out))
    assert rc == 0 and err.count("warning") == 1, err
    assert "its colours (BT.601, limited range) were not tagged (Unrecognized option" in err
    done = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-i", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert "Audio: aac" in done.stderr and matrix_of(ffmpeg, out) == "", done.stderr
    # Refused in the sound's copy, the tags are not tried again by a copy of the whole video
    # at close (minutes of a long one's, for the same refusal).
    assert " -map 0 -c copy " not in calls.read_text(), calls.read_text()


def test_a_sound_copy_that_timed_out_is_not_tried_again_untagged(
        tmp_path, capsys, monkeypatch, ffmpeg, clips, identity):
    """A copy that ran out of time (a source on a network share that stopped answering) is not
    run again without the tags, to wait as long again for the same source; the video alone is
    still tagged at close."""
    import runtime.audio
    monkeypatch.setattr(runtime.audio, "MUX_TIMEOUT_S", 1)
    calls = tmp_path / "calls"
    hangs = tmp_path / "bin" / "ffmpeg"
    hangs.parent.mkdir()
    hangs.write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\ncase " $* " in *" -c:v copy "*) '
                     f'exec sleep 30;;\nesac\nexec "{ffmpeg}" "$@"\n')
    hangs.chmod(0o755)
    monkeypatch.setenv("SHARPEN_FFMPEG", str(hangs))
    out = tmp_path / "sharp.mp4"
    rc, err = _run(capsys, "--model", str(identity), "--source", str(clips["loud"]),
                   "--out", str(out))
    assert rc == 0 and "has no sound" in err and "had not finished after" in err, err
    assert calls.read_text().count(" -c:v copy ") == 1, calls.read_text()
    assert matrix_of(ffmpeg, out) == "smpte170m"


def test_ctrl_c_during_the_sound_copy_starts_no_other_copy(tmp_path, ffmpeg, clips, identity):
    """The Ctrl-C that stops waiting for the sound's copy (the third: the run says one more
    stops waiting for the output) is not followed by the tags' copy of the whole video, which a
    long one's user would wait on, or have to stop, again. The stand-in ffmpeg hangs in every
    copy of the video."""
    from runtime_fixtures import ctrl_c_while_copying

    copying = tmp_path / "copying"
    hangs = tmp_path / "ffmpeg"
    hangs.write_text(f'#!/bin/sh\ncase " $* " in *" -c:v copy "*|*" -map 0 -c copy "*) '
                     f'touch "{copying}"; exec sleep 60;;\nesac\nexec "{ffmpeg}" "$@"\n')
    hangs.chmod(0o755)
    out = tmp_path / "sharp.mp4"
    code, err = ctrl_c_while_copying(identity, clips["loud"], out, hangs, copying)
    assert code in (0, 130), err
    assert "has no sound: the copy of the audio" in err, err
    assert "were not tagged (the copy with the sound, which tags them, was stopped" in err, err
    assert matrix_of(ffmpeg, out) == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copying", "ffmpeg", "sharp.mp4"]


@pytest.mark.parametrize("ext", [".m4v", ".3gp"])
def test_an_hd_video_in_an_iso_container_ffmpeg_does_not_tag_says_so(tmp_path, monkeypatch,
                                                                      ffmpeg, ext):
    """ffmpeg writes a colr box in MP4 and MOV only: its iPod (.m4v) and 3GP muxers leave it
    out with a warning and succeed, and such a video was taken as tagged."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    said = _write(tmp_path / f"hd{ext}", (1280, 720))
    assert len(said) == 1 and f"{ext} holds no colour tags: write .mp4, .mkv" in said[0], said


def test_tags_refused_in_a_resumed_join_are_not_tried_again_at_close(tmp_path, monkeypatch,
                                                                      ffmpeg):
    """An ffmpeg without mpeg2_metadata joins the frames untagged, and the copy at close, which
    it would refuse as well, is not run: the video is said to be untagged, once."""
    calls = tmp_path / "calls"
    refusing = tmp_path / "bin" / "ffmpeg"
    refusing.parent.mkdir()
    refusing.write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\ncase " $* " in *mpeg2_metadata*) '
                        'echo "Unknown bitstream filter mpeg2_metadata" >&2; exit 1;; esac\n'
                        f'exec "{ffmpeg}" "$@"\n')
    refusing.chmod(0o755)
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    out = tmp_path / "joined.ts"
    first = VideoFileSink(out, FPS)
    for _ in range(10):
        first.write(bars(), bars(), "f")
    first.close()
    monkeypatch.setenv("SHARPEN_FFMPEG", str(refusing))
    with runtime_warnings() as said:
        second = VideoFileSink(out, FPS)
        second.join(out, 10)
        for _ in range(5):
            second.write(bars(), bars(), "f")
        second.close()
    assert len(said) == 1 and "not tagged (Unknown bitstream filter mpeg2_metadata)" in said[0]
    assert " -map 0 -c copy " not in calls.read_text(), calls.read_text()
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 15


@pytest.mark.parametrize("fails", ["mkstemp", "replace"])
def test_a_tag_copy_that_raises_keeps_the_video_untagged(tmp_path, monkeypatch, ffmpeg, clips,
                                                         identity, fails):
    """Every frame is in the video when the copy that tags it runs: an OSError in that copy
    (EMFILE making its temporary file, an I/O error putting it in place) threw the whole
    video away. It is kept untagged, said once, and the copy's own file is removed."""
    import errno
    import os
    import tempfile

    from runtime.pipeline import run_stream

    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    out = tmp_path / "sharp.mp4"
    real_mkstemp, real_replace = tempfile.mkstemp, os.replace
    copies = []

    def mkstemp(*args, **kwargs):
        # The hidden .partial file is the video's own; the .copy one, the tag copy's.
        if str(kwargs.get("suffix", "")).startswith(".copy") and fails == "mkstemp":
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        fd, name = real_mkstemp(*args, **kwargs)
        copies.append(name)
        return fd, name

    def replace(src, dst, *args, **kwargs):
        if fails == "replace" and ".partial" in os.fspath(dst):
            raise OSError(errno.EIO, os.strerror(errno.EIO), os.fspath(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(os, "replace", replace)
    with runtime_warnings() as said:
        stats = run_stream(identity, str(clips["bt709-sd"]), out)
    why = ("Too many open files" if fails == "mkstemp"
           else f"Input/output error: {copies[0]}")
    assert said == [f"output={out}: the copy that tags its colours failed ({why}); the video "
                    "was kept untagged"], said
    assert stats["frames_processed"] == FRAMES and matrix_of(ffmpeg, out) == ""
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == FRAMES
    assert [p.name for p in tmp_path.iterdir()] == [out.name]   # no copy or lock left
