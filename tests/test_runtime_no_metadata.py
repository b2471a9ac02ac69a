"""`--no-metadata`: sharpened footage published without where and when it was filmed. A phone
clip carries its place in its container (QuickTime's `location` and
`com.apple.quicktime.location.ISO6709`), with its creation time, title and device; a photo
carries them in its EXIF. `sharpen run` keeps them by default (an NLE conforms a clip by them),
and a news desk that must not leak a source's location had no way to leave a video's out:
`--no-exif` left the photos' EXIF out and kept the clip's location without a word."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime_fixtures import ffmpeg_or_skip, onnx_model, run_cli, write_video

__all__ = ["onnx_model"]  # the fixture is used by name

FPS, FRAMES = 25.0, 10
PLACE, TIMECODE, SHOT = "+48.8584+002.2945/", "01:02:03:04", "2026-11-30T10:00:00"
TITLE, DEVICE = "Protest at the square", "iPhone 15 Pro"


@pytest.fixture(scope="module")
def ffmpeg() -> str:
    return ffmpeg_or_skip("make a clip with a location")


def _phone_clip(folder: Path, ffmpeg: str, sound: bool) -> Path:
    """A MOV as a phone writes one: its place, creation time, title, device and a timecode."""
    pictures = folder / "pictures.mp4"
    write_video(pictures, FRAMES, FPS)
    clip = folder / ("loud.mov" if sound else "silent.mov")
    tone = (["-f", "lavfi", "-i", f"sine=frequency=440:duration={FRAMES / FPS}", "-map", "0:v",
             "-map", "1:a", "-c:a", "aac"] if sound else [])
    tags = {"location": PLACE, "com.apple.quicktime.location.ISO6709": PLACE,
            "com.apple.quicktime.model": DEVICE, "creation_time": SHOT + "Z", "title": TITLE}
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y", "-i", str(pictures), *tone,
                    "-c:v", "copy", "-timecode", TIMECODE,
                    *(a for k, v in tags.items() for a in ("-metadata", f"{k}={v}")),
                    "-movflags", "use_metadata_tags", str(clip)], check=True, timeout=60)
    return clip


def _listing(ffmpeg: str, path: Path) -> str:
    return subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-i", str(path)],
                          capture_output=True, text=True, timeout=60).stderr


@pytest.mark.parametrize("ext", ["mov", "mkv"])
@pytest.mark.parametrize("sound", [True, False], ids=["with-sound", "silent"])
def test_no_metadata_leaves_a_phone_clips_location_out(tmp_path, capsys, monkeypatch,
                                                       onnx_model, ffmpeg, sound, ext):
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    clip = _phone_clip(tmp_path, ffmpeg, sound)
    kept, stripped = tmp_path / f"kept.{ext}", tmp_path / f"stripped.{ext}"
    for out, extra in ((kept, []), (stripped, ["--no-metadata"])):
        stats = tmp_path / f"{out.name}.json"
        rc = run_cli(["run", "--model", str(onnx_model), "--source", str(clip), "--out",
                      str(out), "--quiet", "--stats", str(stats), *extra])
        err = capsys.readouterr().err
        assert rc == 0 and "warning" not in err, err
        # The closing line says so, as it says the timecode: a desk that forgot the flag
        # reads that the place went with the clip before publishing it.
        said = "; the source's location kept (--no-metadata leaves it out)"
        assert (said in err) == (not extra), err
        assert json.loads(stats.read_text())["video"]["location_kept"] == (not extra)
    assert PLACE in _listing(ffmpeg, kept)   # the default keeps it, for an NLE
    listing = _listing(ffmpeg, stripped).lower()
    for said in (PLACE, "location", SHOT.lower(), TITLE.lower(), DEVICE.lower(), "timecode"):
        assert said not in listing, (said, listing)
    if sound:
        assert "audio:" in listing, listing   # the sound is kept, its tags are not


def _gps_photo(path: Path) -> None:
    e = Image.Exif()
    e[0x010F], e[0x0110] = "Apple", DEVICE
    e.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 30.0)})   # GPSLatitudeRef, Latitude
    rgb = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(path, exif=e)


@pytest.mark.parametrize("ext", ["jpg", "png", "webp"])
def test_no_metadata_leaves_a_photos_exif_out(tmp_path, capsys, onnx_model, ext):
    """In each format that keeps a photo's EXIF (WebP since it gained an EXIF chunk), which
    without the flags holds the GPS position."""
    src = tmp_path / "photo.jpg"
    _gps_photo(src)
    for flag in ("", "--no-metadata", "--no-exif"):
        out = tmp_path / f"sharp{flag}.{ext}"
        assert run_cli(["run", "--model", str(onnx_model), "--source", str(src), "--out",
                        str(out), "--quiet", *filter(None, [flag])]) == 0, \
            capsys.readouterr().err
        with Image.open(out) as im:
            assert bool(im.getexif().get_ifd(0x8825)) == (not flag), (flag, dict(im.getexif()))
            assert bool(im.getexif()) == (not flag), (flag, dict(im.getexif()))


def test_no_exif_given_a_video_says_its_location_is_kept(tmp_path, capsys, monkeypatch,
                                                         onnx_model, ffmpeg):
    """--no-exif is about photos: given a clip, it kept the clip's location without a word."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    clip = _phone_clip(tmp_path, ffmpeg, sound=False)
    rc = run_cli(["run", "--model", str(onnx_model), "--source", str(clip), "--out",
                  str(tmp_path / "sharp.mov"), "--quiet", "--no-exif"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "warning: --no-exif" in err and "--no-metadata" in err, err


def test_no_exif_given_a_clip_into_segments_names_the_segments(tmp_path, capsys, monkeypatch,
                                                               onnx_model, ffmpeg):
    """--segment: the warning named '--out seg.mp4 keeps the container metadata', a file the
    run never writes, where the closing line and the other warnings name its segments."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    clip = _phone_clip(tmp_path, ffmpeg, sound=False)
    rc = run_cli(["run", "--model", str(onnx_model), "--source", str(clip), "--out",
                  str(tmp_path / "seg.mp4"), "--quiet", "--no-exif", "--segment", "0.2"])
    err = capsys.readouterr().err
    assert rc == 0, err
    shown = tmp_path / "seg-NNNNNN-YYYYmmdd-HHMMSS.mp4"
    assert f"--out {shown} keeps the container metadata of" in err, err
    assert f"{shown}: the source's location kept" in err, err


@pytest.mark.parametrize("flag", ["--no-exif", "--no-metadata"])
def test_a_rerun_asked_to_strip_sharpens_again_the_outputs_that_hold_gps(
        tmp_path, capsys, onnx_model, flag):
    """A folder run kept the outputs already there (made with EXIF) and exited 0 after a
    warning: a desk that reran with --no-exif to publish the folder published the GPS."""
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    _gps_photo(photos / "a.jpg")
    _gps_photo(photos / "b.webp")   # a folder of one is sharpened again as a single photo
    base = ["run", "--model", str(onnx_model), "--source", str(photos), "--out", str(out),
            "--quiet"]
    assert run_cli(base) == 0
    for name in ("a.jpg", "b.webp"):   # WebP holds EXIF too, read as a JPEG's is
        with Image.open(out / name) as im:
            assert im.getexif().get_ifd(0x8825)
    capsys.readouterr()
    assert run_cli([*base, flag]) == 0
    err = capsys.readouterr().err
    for name in ("a.jpg", "b.webp"):
        with Image.open(out / name) as im:
            assert not im.getexif(), err
    assert "sharpened again" in err, err


def test_a_run_that_keeps_photos_gps_says_how_many(tmp_path, capsys, onnx_model):
    """As a clip's kept location is said: a desk that forgot the flag reads, before
    publishing, that the sharpened photos hold the places they were taken."""
    import json
    photos, out, stats = tmp_path / "photos", tmp_path / "out", tmp_path / "stats.json"
    photos.mkdir()
    _gps_photo(photos / "a.jpg")
    _gps_photo(photos / "b.png")
    Image.open(photos / "a.jpg").save(photos / "plain.jpg")   # no EXIF
    base = ["run", "--model", str(onnx_model), "--source", str(photos), "--quiet",
            "--stats", str(stats)]
    assert run_cli([*base, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert (f"sharpen run: {out}: 2 images keep their photos' GPS position (--no-metadata "
            "leaves it out)") in err, err
    assert json.loads(stats.read_text())["gps_kept"] == 2
    assert run_cli([*base, "--out", str(tmp_path / "web"), "--no-metadata"]) == 0
    err = capsys.readouterr().err
    assert "GPS" not in err, err
    assert json.loads(stats.read_text())["gps_kept"] == 0


@pytest.mark.parametrize("extra", [[], ["--no-metadata"]], ids=["kept", "stripped"])
def test_a_segmented_runs_kept_location_is_said_as_a_single_videos_is(tmp_path, capsys,
                                                                      monkeypatch, onnx_model,
                                                                      ffmpeg, extra):
    """--segment: each segment carried the clip's place, yet --stats said location_kept false
    and no closing line said it (a desk publishing a segment had no sign)."""
    import json
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    clip = _phone_clip(tmp_path, ffmpeg, sound=True)
    out, stats = tmp_path / "seg" / "part.mkv", tmp_path / "stats.json"
    out.parent.mkdir()
    rc = run_cli(["run", "--model", str(onnx_model), "--source", str(clip), "--out", str(out),
                  "--segment", str(FRAMES / 2 / FPS), "--quiet", "--stats", str(stats), *extra])
    err = capsys.readouterr().err
    assert rc == 0, err
    segments = sorted(out.parent.glob("part-*.mkv"))
    assert len(segments) == 2, segments
    for seg in segments:
        assert (PLACE in _listing(ffmpeg, seg)) == (not extra), seg
    assert json.loads(stats.read_text())["video"]["location_kept"] == (not extra)
    said = "the source's location kept (--no-metadata leaves it out)"
    assert (said in err) == (not extra), err


def test_a_photo_whose_gps_block_holds_no_position_is_not_said_to_keep_one(tmp_path, capsys,
                                                                          onnx_model):
    """A camera with its GPS off writes a GPS block with its version alone: the run said
    '1 image keeps its photo's GPS position', which it held none of."""
    import json
    src, out, stats = tmp_path / "photo.jpg", tmp_path / "sharp.jpg", tmp_path / "stats.json"
    e = Image.Exif()
    e[0x010F] = "Nikon"
    e.get_ifd(0x8825)[0] = b"\x02\x03\x00\x00"   # GPSVersionID, no latitude or longitude
    rgb = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(src, exif=e)
    with Image.open(src) as im:
        assert im.getexif().get_ifd(0x8825) == {0: b"\x02\x03\x00\x00"}
    assert run_cli(["run", "--model", str(onnx_model), "--source", str(src), "--out",
                    str(out), "--quiet", "--stats", str(stats)]) == 0
    err = capsys.readouterr().err
    assert "GPS" not in err, err
    assert json.loads(stats.read_text())["gps_kept"] == 0


def test_no_exif_given_a_clip_without_ffmpeg_does_not_say_its_location_is_kept(
        tmp_path, capsys, monkeypatch, onnx_model, ffmpeg):
    """Without ffmpeg, OpenCV's writer alone writes the video, none of the clip's tags with it:
    --no-exif warned that the output kept the clip's location, which it did not hold."""
    clip = _phone_clip(tmp_path, ffmpeg, sound=False)
    out = tmp_path / "sharp.mov"
    monkeypatch.setenv("SHARPEN_FFMPEG", str(tmp_path / "no-ffmpeg"))
    rc = run_cli(["run", "--model", str(onnx_model), "--source", str(clip), "--out", str(out),
                  "--quiet", "--no-exif"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "--no-exif" not in err and "location" not in err, err
    assert PLACE not in _listing(ffmpeg, out)


def test_the_help_says_which_tags_no_metadata_keeps():
    """'a video's container tags ... and timecode; colour profile and tags are kept' read as
    the tags it had just said it left out kept after all."""
    from runtime.options import NO_METADATA_HELP
    assert "colour profile and tags are kept" not in NO_METADATA_HELP
    assert "the colour profile, colour tags and sound are kept" in NO_METADATA_HELP


@pytest.mark.parametrize("flag", ["--no-exif", "--no-metadata"])
def test_a_stripped_rerun_says_nothing_of_outputs_kept_that_hold_no_exif(tmp_path, capsys,
                                                                         onnx_model, flag):
    """A .tif output is written without EXIF (a .webp one was, until WebP kept it): kept by a
    rerun with the flag, it was said to be 'made otherwise than this run makes them: --no-exif
    was not given, now given; --overwrite sharpens them again', as if it still held its
    photo's GPS position."""
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    _gps_photo(photos / "a.jpg")
    with Image.open(photos / "a.jpg") as im:
        im.save(photos / "b.tif", exif=im.getexif())
    base = ["run", "--model", str(onnx_model), "--source", str(photos), "--out", str(out),
            "--quiet"]
    assert run_cli(base) == 0
    capsys.readouterr()
    assert run_cli([*base, flag]) == 0
    err = capsys.readouterr().err
    assert "1 image in" in err and "sharpened again without it" in err, err
    # In the number it takes: it said '1 image in out hold their photos' EXIF'.
    assert f"1 image in {out} holds its photo's EXIF (capture date" in err, err
    assert "made otherwise" not in err, err
    with Image.open(out / "a.jpg") as im:
        assert not im.getexif()


def test_a_rerun_without_no_metadata_names_it_among_what_changed(tmp_path, capsys,
                                                                  onnx_model):
    """The outputs a --no-metadata run wrote, kept by a plain rerun, were said to differ by
    '--no-exif was given, now not given': a flag the user never gave."""
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    _gps_photo(photos / "a.jpg")
    _gps_photo(photos / "b.jpg")
    base = ["run", "--model", str(onnx_model), "--source", str(photos), "--out", str(out),
            "--quiet"]
    assert run_cli([*base, "--no-metadata"]) == 0
    capsys.readouterr()
    assert run_cli(base) == 0
    err = capsys.readouterr().err
    assert "--no-exif or --no-metadata was given, now neither is" in err, err


def test_no_metadata_holds_where_ffmpeg_refuses_the_colour_tags(tmp_path, capsys, monkeypatch,
                                                                 onnx_model, ffmpeg):
    """An ffmpeg that refuses the colour tags (one built without a bitstream filter, or older)
    gets the sound's copy again without them: that plain copy is stripped as well, or ffmpeg's
    defaults bring the sound's own tags (its creation time) and the clip's chapters along."""
    clip = tmp_path / "chaptered.mov"
    chapters = tmp_path / "chapters.txt"
    chapters.write_text(";FFMETADATA1\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=200\n"
                        "title=At the square\n")
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y", "-i",
                    str(_phone_clip(tmp_path, ffmpeg, sound=True)), "-i", str(chapters),
                    "-map", "0", "-map_chapters", "1", "-c", "copy", "-metadata:s:a",
                    f"creation_time={SHOT}Z", "-movflags", "use_metadata_tags", str(clip)],
                   check=True, timeout=60)
    assert "at the square" in _listing(ffmpeg, clip).lower()
    refusing = tmp_path / "bin" / "ffmpeg"
    refusing.parent.mkdir()
    refusing.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = -colorspace ] && '
                        '{ echo "Unrecognized option colorspace" >&2; exit 1; }; done\n'
                        f'exec "{ffmpeg}" "$@"\n')
    refusing.chmod(0o755)
    monkeypatch.setenv("SHARPEN_FFMPEG", str(refusing))
    out = tmp_path / "sharp.mp4"
    rc = run_cli(["run", "--model", str(onnx_model), "--source", str(clip), "--out", str(out),
                  "--quiet", "--no-metadata"])
    err = capsys.readouterr().err
    assert rc == 0 and "were not tagged (Unrecognized option" in err, err
    listing = _listing(ffmpeg, out).lower()
    assert "audio:" in listing, listing
    for said in (PLACE, SHOT.lower(), TITLE.lower(), DEVICE.lower(), "at the square", "chapter",
                 "timecode"):
        assert said not in listing, (said, listing)
