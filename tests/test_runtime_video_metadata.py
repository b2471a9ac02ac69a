"""A sharpened clip keeps its source's timecode and creation time: an editor brings it back into
an NLE (Resolve, Premiere), which conforms a clip to its timeline by its timecode, and sorts
and finds clips by when they were shot. OpenCV's writer writes neither; the ffmpeg copy that
adds the sound or the colour tags carries them over, as ffmpeg itself does."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from runtime_fixtures import ffmpeg_or_skip, onnx_model, run_cli, write_video

__all__ = ["onnx_model"]  # the fixture is used by name

FPS, FRAMES = 25.0, 10
TIMECODE, SHOT = "01:02:03:04", "2026-11-30T10:00:00.000000Z"


@pytest.fixture(scope="module")
def ffmpeg() -> str:
    return ffmpeg_or_skip("make a clip with a timecode")


def _clip(folder: Path, ffmpeg: str, sound: bool, audio_codec: str = "aac") -> Path:
    """A MOV as a camera writes one: a timecode track and a creation time, with sound or not."""
    pictures = folder / "pictures.mp4"
    write_video(pictures, FRAMES, FPS)
    clip = folder / ("loud.mov" if sound else "silent.mov")
    tone = (["-f", "lavfi", "-i", f"sine=frequency=440:duration={FRAMES / FPS}", "-map", "0:v",
             "-map", "1:a", "-c:a", audio_codec] if sound else [])
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y", "-i", str(pictures), *tone,
                    "-c:v", "copy", "-timecode", TIMECODE, "-metadata", f"creation_time={SHOT}",
                    str(clip)], check=True, timeout=60)
    return clip


def _listing(ffmpeg: str, path: Path) -> str:
    return subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-i", str(path)],
                          capture_output=True, text=True, timeout=60).stderr


def _sharpened_without_warnings(model: Path, clip: Path, out: Path, ffmpeg: str,
                                capsys) -> tuple[str, str]:
    """`sharpen run` of `clip` into `out`, which must succeed without a warning; (its stderr,
    ffmpeg's listing of `out`)."""
    rc = run_cli(["run", "--model", str(model), "--source", str(clip), "--out", str(out),
                  "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0 and "warning" not in err, err
    return err, _listing(ffmpeg, out)


@pytest.mark.parametrize("sound", [True, False], ids=["with-sound", "silent"])
def test_the_sharpened_clip_keeps_the_sources_timecode_and_creation_time(
        tmp_path, capsys, monkeypatch, onnx_model, ffmpeg, sound):
    """With sound the copy that adds it carries them; without, the copy that tags the
    colours (a small clip's BT.601, which players would otherwise guess)."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    clip = _clip(tmp_path, ffmpeg, sound)
    assert f"timecode        : {TIMECODE}" in _listing(ffmpeg, clip)
    out = tmp_path / "sharp.mov"
    err, listing = _sharpened_without_warnings(onnx_model, clip, out, ffmpeg, capsys)
    assert f"timecode        : {TIMECODE}" in listing, listing
    assert f"creation_time   : {SHOT}" in listing, listing


def test_a_segments_timecode_starts_at_its_first_frame():
    """--segment cuts a clip in files, each a stretch of it: each starts at its own time."""
    from runtime.clip_metadata import shifted_timecode
    assert shifted_timecode("01:00:00:00", 0.0, 25.0) == "01:00:00:00"
    assert shifted_timecode("01:00:59:20", 2.0, 25.0) == "01:01:01:20"
    assert shifted_timecode("23:59:59:23", 1.0, 24000 / 1001) == "00:00:00:23"   # wraps
    assert shifted_timecode("01:00:00;00", 0.0, 30000 / 1001) == "01:00:00;00"
    assert shifted_timecode("01:00:00;00", 2.0, 30000 / 1001) is None   # drop-frame: left out


def test_the_run_says_what_the_video_was_written_in(tmp_path, capsys, monkeypatch, onnx_model,
                                                    ffmpeg):
    """As ffmpeg's and a render queue's log do: codec, bit depth, chroma, colours, and what of
    the source it kept, so that an editor knows before importing it (and --stats keeps it)."""
    import json
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    clip = _clip(tmp_path, ffmpeg, sound=True)
    out, stats = tmp_path / "sharp.mov", tmp_path / "stats.json"
    rc = run_cli(["run", "--model", str(onnx_model), "--source", str(clip), "--out", str(out),
                  "--stats", str(stats), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert (f"sharpen run: {out}: MPEG-4 Part 2 (mp4v), 8-bit 4:2:0, BT.601 limited range "
            f"(tagged), OpenCV's fixed quality; 1 audio stream copied; timecode {TIMECODE}"
            in err), err
    written = json.loads(stats.read_text())["video"]
    assert written == {"codec": "mpeg4", "fourcc": "mp4v", "bit_depth": 8, "chroma": "4:2:0",
                       "matrix": "bt601", "range": "limited", "tagged": True,
                       "audio_streams": 1, "audio_copied": True, "timecode": TIMECODE,
                       "location_kept": False}, written
    rc = run_cli(["run", "--model", str(onnx_model), "--source", str(clip), "--out",
                  str(tmp_path / "sharp.mkv"), "--lossless", "--no-audio", "--quiet"])
    err = capsys.readouterr().err
    assert (f"{tmp_path / 'sharp.mkv'}: FFV1 (lossless), 8-bit BGR 4:4:4, no YUV matrix, "
            "every pixel kept; no audio" in err), err


def test_a_silent_untagged_hd_clip_keeps_its_timecode_too(tmp_path, capsys, monkeypatch,
                                                          onnx_model, ffmpeg):
    """Neither the sound's copy nor the colour tags' runs for it (its output stays untagged, to
    play as the source does): a copy of its own carries the timecode."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    clip = tmp_path / "drone.mov"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=1280x720:rate=25:duration=0.2", "-c:v", "mpeg4",
                    "-timecode", TIMECODE, "-metadata", f"creation_time={SHOT}", str(clip)],
                   check=True, timeout=60)
    out = tmp_path / "sharp.mov"
    err, listing = _sharpened_without_warnings(onnx_model, clip, out, ffmpeg, capsys)
    assert f"timecode        : {TIMECODE}" in listing and "Video: mpeg4" in listing, listing
    assert f"creation_time   : {SHOT}" in listing, listing
    assert f"(untagged), OpenCV's fixed quality; no audio; timecode {TIMECODE}" in err, err


def _segments_timecodes(ffmpeg: str, folder: Path) -> list[str]:
    """Each segment's timecode as ffmpeg lists it ('' where it holds none), in order."""
    found = []
    for seg in sorted(folder.glob("rec-*.mov")):
        listing = _listing(ffmpeg, seg)
        line = [ln for ln in listing.splitlines() if ln.strip().lower().startswith("timecode")]
        found.append(line[0].split(":", 1)[1].strip() if line else "")
    return found


@pytest.mark.parametrize("timecode, second", [(TIMECODE, "01:02:03:09"), ("01:02:03;04", "")],
                         ids=["non-drop", "drop-frame"])
def test_a_matroska_sources_timecode_is_read_and_moved_on_for_each_segment(
        tmp_path, capsys, monkeypatch, onnx_model, ffmpeg, timecode, second):
    """Matroska lists its timecode tag as TIMECODE, in capitals, among the file's own tags,
    which the copy maps over whole: each segment's is its own, not the file's first frame's,
    and a drop-frame one moved on is left out, not kept unmoved."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    pictures = tmp_path / "pictures.mp4"
    write_video(pictures, FRAMES, FPS if ";" not in timecode else 30000 / 1001)
    clip = tmp_path / "camera.mkv"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y", "-i", str(pictures), "-c:v", "copy",
                    "-timecode", timecode, str(clip)], check=True, timeout=60)
    assert f"TIMECODE        : {timecode}" in _listing(ffmpeg, clip)
    out = tmp_path / "sharp.mov"
    rc = run_cli(["run", "--model", str(onnx_model), "--source", str(clip), "--out", str(out),
                  "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0 and f"; timecode {timecode}" in err, err
    rc = run_cli(["run", "--model", str(onnx_model), "--source", str(clip), "--out",
                  str(tmp_path / "rec" / "rec.mov"), "--segment", "0.2", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert _segments_timecodes(ffmpeg, tmp_path / "rec") == [timecode, second]


def test_an_mpeg_stream_output_is_not_said_to_hold_the_timecode(tmp_path, capsys, monkeypatch,
                                                               onnx_model, ffmpeg):
    """MPEG program and transport streams keep no timecode (ffmpeg drops it from the copy): the
    closing line and --stats do not say one was written."""
    import json
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    clip = _clip(tmp_path, ffmpeg, sound=True)
    for name in ("sharp.ts", "sharp.mpg"):
        out, stats = tmp_path / name, tmp_path / f"{name}.json"
        rc = run_cli(["run", "--model", str(onnx_model), "--source", str(clip), "--out",
                      str(out), "--stats", str(stats), "--quiet"])
        err = capsys.readouterr().err
        assert rc == 0, err
        assert TIMECODE not in _listing(ffmpeg, out)
        assert f"sharpen run: {out}: MPEG-2" in err and "timecode" not in err, err
        assert json.loads(stats.read_text())["video"]["timecode"] is None


def test_sound_encoded_for_the_container_is_said_so_not_copied(tmp_path, capsys, monkeypatch,
                                                               onnx_model, ffmpeg):
    """A camera's PCM sound goes into an MP4 as AAC and into an MPEG-TS as MPEG audio (a TS
    would keep PCM only as a data stream that no player plays): the closing line says so."""
    import json
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    clip = _clip(tmp_path, ffmpeg, sound=True, audio_codec="pcm_s16le")
    for name, kept in (("sharp.mov", "copied"), ("sharp.mp4", "encoded"),
                       ("sharp.ts", "encoded")):
        out, stats = tmp_path / name, tmp_path / f"{name}.json"
        rc = run_cli(["run", "--model", str(onnx_model), "--source", str(clip), "--out",
                      str(out), "--stats", str(stats), "--quiet"])
        err = capsys.readouterr().err
        assert rc == 0, err
        listing = _listing(ffmpeg, out)
        assert ("Audio: pcm_s16le" in listing) == (kept == "copied"), listing
        assert "Audio: " in listing and "Data: bin_data" not in listing, listing
        assert f"; 1 audio stream {kept}" in err, err
        assert json.loads(stats.read_text())["video"]["audio_copied"] == (kept == "copied")


@pytest.mark.parametrize("flags", [[], ["--no-audio"]], ids=["default", "no-audio"])
def test_a_video_played_at_another_rate_gets_no_timecode(tmp_path, capsys, monkeypatch,
                                                         onnx_model, ffmpeg, flags):
    """The timecode counts the source's frames: at --fps 50 a 25 fps clip's frames would be
    conformed to the wrong places (as its sound would play out of step, which is left out);
    at the clip's own rate it is kept, with --no-audio too."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    clip = _clip(tmp_path, ffmpeg, sound=False)
    for fps, kept in (("50", False), ("25", True)):
        out = tmp_path / f"sharp{fps}.mov"
        rc = run_cli(["run", "--model", str(onnx_model), "--source", str(clip), "--out",
                      str(out), "--fps", fps, "--quiet", *flags])
        err = capsys.readouterr().err
        assert rc == 0, err
        listing = _listing(ffmpeg, out)
        assert (TIMECODE in listing) == kept and (TIMECODE in err) == kept, (fps, listing, err)
        assert f"creation_time   : {SHOT}" in listing, listing


def test_no_copy_is_made_for_a_timecode_that_is_not_kept(tmp_path, ffmpeg):
    """A silent clip's copy of its own is made only for what it keeps: a timecode left out (a
    video at another rate, a drop-frame segment) with no creation time is not worth one."""
    from runtime.clip_metadata import metadata_options
    clip = tmp_path / "tc.mov"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=64x48:rate=30000/1001:duration=0.2", "-c:v", "mpeg4",
                    "-timecode", "01:00:00;00", str(clip)], check=True, timeout=60)
    assert metadata_options(clip, ffmpeg, 1, 0.0, 30000 / 1001, said_only=True) == [
        "-map_metadata", "1", "-timecode", "01:00:00;00"]
    assert metadata_options(clip, ffmpeg, 1, 0.0, 0.0, said_only=True) == []
    assert metadata_options(clip, ffmpeg, 1, 2.0, 30000 / 1001, said_only=True) == []
    assert metadata_options(clip, ffmpeg, 1, 2.0, 30000 / 1001) == [
        "-map_metadata", "1", "-metadata", "timecode="]


def test_a_segment_holds_none_of_the_whole_clips_chapters(tmp_path, capsys, monkeypatch,
                                                          onnx_model, ffmpeg):
    """The source's chapters are timed from its start: the whole clip's video keeps them, a
    --segment file, which starts part-way, would list them at the wrong times."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    silent = _clip(tmp_path, ffmpeg, sound=False)
    chapters = tmp_path / "chapters.txt"
    chapters.write_text(";FFMETADATA1\n" + "".join(
        f"[CHAPTER]\nTIMEBASE=1/1000\nSTART={a}\nEND={a + 200}\ntitle=shot{a}\n"
        for a in (0, 200)))
    clip = tmp_path / "chaptered.mov"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y", "-i", str(silent), "-i",
                    str(chapters), "-map", "0", "-map_chapters", "1", "-c", "copy", str(clip)],
                   check=True, timeout=60)
    assert "title           : shot200" in _listing(ffmpeg, clip)
    out = tmp_path / "sharp.mov"
    rc = run_cli(["run", "--model", str(onnx_model), "--source", str(clip), "--out", str(out),
                  "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert "title           : shot200" in _listing(ffmpeg, out)
    rc = run_cli(["run", "--model", str(onnx_model), "--source", str(clip), "--out",
                  str(tmp_path / "rec" / "rec.mov"), "--segment", "0.2", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    for seg in sorted((tmp_path / "rec").glob("rec-*.mov")):
        assert "Chapter #" not in _listing(ffmpeg, seg), seg
