"""`sharpen run` keeps a video file's sound: OpenCV's writer writes pictures only, and a phone
or GoPro clip sharpened into a silent video lost its sound without a word. An ffmpeg (on PATH
or named by SHARPEN_FFMPEG) copies it in; without one the run still succeeds and says so."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

from runtime_fixtures import (ffmpeg_or_skip, onnx_model, read_video, run_cli, runtime_warnings,
                              write_video)

from runtime.audio import has_audio
from runtime.pipeline import run_stream

__all__ = ["onnx_model"]  # the fixture is used by name

FPS, FRAMES, TONE_HZ, RATE = 5.0, 16, 440, 8000   # 3.2 s of video


@pytest.fixture(scope="module")
def ffmpeg() -> str:
    return ffmpeg_or_skip("make a clip with sound")


@pytest.fixture(scope="module")
def clips(tmp_path_factory, ffmpeg) -> dict[str, Path]:
    """A 3.2 s clip (16 frames at 5 fps) with a 440 Hz tone in AAC, and the same one silent."""
    folder = tmp_path_factory.mktemp("clips")
    silent = folder / "silent.mp4"
    write_video(silent, FRAMES, FPS)
    loud = folder / "loud.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-i", str(silent), "-f", "lavfi", "-i",
                    f"sine=frequency={TONE_HZ}:duration={FRAMES / FPS}", "-map", "0:v",
                    "-map", "1:a", "-c:v", "copy", "-c:a", "aac", str(loud)], check=True,
                   timeout=60)
    return {"loud": loud, "silent": silent}


def sound_of(ffmpeg: str, path: Path) -> Optional[np.ndarray]:
    """The first audio stream of `path` decoded to mono 8 kHz samples; None when it has none."""
    done = subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-i", str(path), "-map", "0:a:0",
                           "-f", "s16le", "-ac", "1", "-ar", str(RATE), "-"],
                          capture_output=True, timeout=60)
    if done.returncode != 0:
        assert b"matches no streams" in done.stderr, done.stderr
        return None
    return np.frombuffer(done.stdout, np.int16).astype(np.float64)


def assert_tone(samples: Optional[np.ndarray], seconds: float) -> None:
    assert samples is not None, "the output has no audio stream"
    # AAC comes in 1024-sample frames (23 ms at 44.1 kHz), plus its priming: a few of them.
    assert abs(len(samples) / RATE - seconds) < 0.1, len(samples) / RATE
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    peak = np.argmax(spectrum) * RATE / len(samples)
    assert abs(peak - TONE_HZ) < 5, peak


def _run(capsys, *argv: str) -> tuple[int, str]:
    rc = run_cli(["run", *argv, "--quiet"])
    return rc, capsys.readouterr().err


def test_a_video_files_sound_is_copied_into_the_sharpened_video(
        tmp_path, capsys, monkeypatch, onnx_model, ffmpeg, clips):
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    out = tmp_path / "sharp.mp4"
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(clips["loud"]),
                   "--out", str(out))
    assert rc == 0 and "sound" not in err.replace(str(tmp_path), "") and "warning" not in err, err
    frames, fps = read_video(out)
    assert len(frames) == FRAMES and fps == FPS
    assert_tone(sound_of(ffmpeg, out), FRAMES / FPS)
    assert [p.name for p in tmp_path.iterdir()] == ["sharp.mp4"]   # no temporary file left


def test_a_shortened_run_and_a_comparison_keep_the_sound_of_the_frames_they_hold(
        tmp_path, capsys, monkeypatch, onnx_model, ffmpeg, clips):
    """--max-frames 6 of 16 frames: 1.2 s of video, so 1.2 s of sound, not the clip's 3.2 s
    (which would play on over a frozen last frame). A --compare video plays in the source's
    time too."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    out = tmp_path / "cmp.mp4"
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(clips["loud"]),
                   "--out", str(out), "--max-frames", "6", "--compare")
    assert rc == 0 and "sound" not in err.replace(str(tmp_path), ""), err
    frames, _ = read_video(out)
    assert len(frames) == 6
    assert_tone(sound_of(ffmpeg, out), 6 / FPS)


@pytest.mark.parametrize("no_ffmpeg", ["variable", "path"])
def test_without_ffmpeg_the_run_succeeds_and_says_once_that_the_video_is_silent(
        tmp_path, capsys, monkeypatch, onnx_model, ffmpeg, clips, no_ffmpeg):
    """The sound is found in the MP4 itself (its track list), so the user is told, naming the
    way to keep it; a silent clip, or --no-audio, says nothing."""
    if no_ffmpeg == "variable":
        monkeypatch.setenv("SHARPEN_FFMPEG", str(tmp_path / "no-such-ffmpeg"))
        why = f"SHARPEN_FFMPEG={tmp_path / 'no-such-ffmpeg'} is not an executable file"
    else:
        monkeypatch.delenv("SHARPEN_FFMPEG", raising=False)
        empty = tmp_path / "bin"
        empty.mkdir()
        monkeypatch.setenv("PATH", str(empty))
        why = "no ffmpeg was found on PATH"
    out = tmp_path / "sharp.mp4"
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(clips["loud"]),
                   "--out", str(out))
    assert rc == 0, err
    assert err.count("has no sound") == 1, err
    assert (f"warning: --out {out} has no sound: the audio of {clips['loud']} is not copied, "
            f"as {why}; install ffmpeg, or set SHARPEN_FFMPEG") in err, err
    assert "--no-audio" in err, err
    assert len(read_video(out)[0]) == FRAMES and sound_of(ffmpeg, out) is None
    # An hour's run need not be made again: the warning gives the line that adds the sound.
    line = re.search(r"add it to the video made: (ffmpeg -i .*?sharp-sound\.mp4)", err)
    assert line, err
    argv = line.group(1).split()
    assert argv[1:] == ["-i", str(out), "-i", str(clips["loud"]), "-map", "0:v", "-map",
                        "1:a", "-c", "copy", "-shortest", str(tmp_path / "sharp-sound.mp4")]
    subprocess.run([ffmpeg, "-v", "error", *argv[1:]], check=True)
    assert_tone(sound_of(ffmpeg, tmp_path / "sharp-sound.mp4"), FRAMES / FPS)

    for source, flags in ((clips["loud"], ["--no-audio"]), (clips["silent"], [])):
        rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(source),
                       "--out", str(tmp_path / "again.mp4"), *flags)
        said = err.replace(str(tmp_path), "")   # the paths name the test, "..._sound_..."
        assert rc == 0 and "sound" not in said and "warning" not in err, (source, err)


def test_the_line_that_adds_the_sound_later_works_for_a_container_that_refuses_aac(
        tmp_path, capsys, monkeypatch, onnx_model, ffmpeg, clips):
    """A WebM takes no AAC, so a plain copy of a phone's sound fails there: the line encodes
    it for such a container, and it runs as given, paths with spaces included."""
    monkeypatch.setenv("SHARPEN_FFMPEG", str(tmp_path / "no-such-ffmpeg"))
    folder = tmp_path / "my clips"
    folder.mkdir()
    source, out = folder / "loud clip.mp4", folder / "sharp clip.webm"
    source.write_bytes(clips["loud"].read_bytes())
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(source),
                   "--out", str(out))
    assert rc == 0, err
    line = re.search(r"add it to the video made: (ffmpeg .*)$", err, re.MULTILINE)
    assert line, err
    argv = shlex.split(line.group(1))
    assert argv[-1] == str(folder / "sharp clip-sound.webm"), argv
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", *argv[1:]], check=True, timeout=60)
    assert_tone(sound_of(ffmpeg, Path(argv[-1])), FRAMES / FPS)


@pytest.mark.parametrize("flags, why", [
    (["--live"], "kept only when every frame is written (--no-live)"),
    (["--fps", "10"], "--fps 10 plays the frames at another rate than the 5 fps of")])
def test_a_run_out_of_step_with_the_files_time_says_its_sound_is_left_out(
        tmp_path, capsys, monkeypatch, onnx_model, ffmpeg, clips, flags, why):
    """--live may drop frames, and --fps 10 plays a 5 fps clip twice as fast: the sound would
    no longer match the pictures."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    out = tmp_path / "out.mp4"
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(clips["loud"]),
                   "--out", str(out), *flags)
    assert rc == 0 and err.count("has no sound") == 1 and why in err, err
    assert sound_of(ffmpeg, out) is None


def test_an_ffmpeg_that_fails_leaves_the_video_without_sound_and_says_why(
        tmp_path, capsys, monkeypatch, onnx_model, ffmpeg, clips):
    """A stand-in for an ffmpeg that cannot write the file (a full disk, a broken build): the
    sharpened video is still written, and the user is told it is silent and why."""
    broken = tmp_path / "ffmpeg"
    broken.write_text("#!/bin/sh\necho 'Conversion failed!' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("SHARPEN_FFMPEG", str(broken))
    out = tmp_path / "sharp.mp4"
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(clips["loud"]),
                   "--out", str(out))
    assert rc == 0 and err.count("has no sound") == 1, err
    assert f"{broken} could not copy the audio of {clips['loud']} into it (Conversion " \
           "failed!)" in err, err
    assert len(read_video(out)[0]) == FRAMES and sound_of(ffmpeg, out) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ffmpeg", "sharp.mp4"]


def test_an_ffmpeg_whose_output_does_not_parse_keeps_the_video_without_sound(
        tmp_path, capsys, monkeypatch, onnx_model, ffmpeg, clips):
    """Every frame is in the video when the sound is copied: an ffmpeg whose packet listing
    does not parse (a time too large for a float) made the copy raise, and the close threw
    the whole video away. It is kept, silent, said once; the run ends as a complete one."""
    import json

    garbled = tmp_path / "ffmpeg"
    garbled.write_text('#!/bin/sh\ncase " $* " in *" framemd5 "*) printf "#tb 0: 1/1\\n0, 0, '
                       f'{"9" * 400}, 1, 1, 0\\n"; exit 0;;\nesac\nexec "{ffmpeg}" "$@"\n')
    garbled.chmod(0o755)
    monkeypatch.setenv("SHARPEN_FFMPEG", str(garbled))
    out, stats = tmp_path / "sharp.mp4", tmp_path / "stats.json"
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(clips["loud"]),
                   "--out", str(out), "--stats", str(stats))
    assert rc == 0 and err.count("has no sound") == 1, err
    assert (f"{out} has no sound: the copy of the audio of {clips['loud']} failed "
            "(OverflowError: integer division result too large for a float); the video was "
            "kept without it") in err, err
    assert len(read_video(out)[0]) == FRAMES and sound_of(ffmpeg, out) is None
    assert json.loads(stats.read_text())["frames_processed"] == FRAMES
    # No copy's temporary file, no hidden partial video, no lock left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ffmpeg", "sharp.mp4", "stats.json"]


def test_from_python_the_warning_names_the_keywords(tmp_path, monkeypatch, onnx_model, clips):
    monkeypatch.setenv("SHARPEN_FFMPEG", str(tmp_path / "no-such-ffmpeg"))
    out = tmp_path / "sharp.mp4"
    with runtime_warnings() as said:
        run_stream(onnx_model, str(clips["loud"]), out)
    assert len(said) == 1 and said[0].startswith(f"output={out} has no sound:"), said
    assert "audio=False" in said[0], said
    with runtime_warnings() as said:
        run_stream(onnx_model, str(clips["loud"]), out, audio=False)
    assert said == []


def test_whether_a_file_has_sound(tmp_path, ffmpeg, clips):
    """With ffmpeg from its stream list; without, from an MP4's track list, and unknown for a
    container that is not read here."""
    assert has_audio(clips["loud"], ffmpeg) is True
    assert has_audio(clips["silent"], ffmpeg) is False
    assert has_audio(clips["loud"], None) is True
    assert has_audio(clips["silent"], None) is False
    mkv = tmp_path / "loud.mkv"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-i", str(clips["loud"]), "-c", "copy",
                    str(mkv)], check=True, timeout=60)
    assert has_audio(mkv, ffmpeg) is True and has_audio(mkv, None) is None
    # Cut short before its track list (which ffmpeg writes last): unknown, not "silent".
    (tmp_path / "cut.mp4").write_bytes(clips["loud"].read_bytes()[:100])
    assert has_audio(tmp_path / "cut.mp4", None) is None


@pytest.mark.parametrize("to, hang", [("process", "copy"), ("terminal", "copy"),
                                      ("process", "probe")])
def test_ctrl_c_during_the_audio_copy_keeps_the_silent_video_and_says_so(
        tmp_path, onnx_model, ffmpeg, clips, to, hang):
    """Every frame is sharpened when the copy starts: the Ctrl-C that stops waiting for it (the
    third: the first asks to stop, the second is told what one more does) must not throw the
    video away. The stand-in ffmpeg hangs in the copy, or in listing the streams before it
    (a file on a network share that stopped answering), and is ffmpeg otherwise. A
    terminal's Ctrl-C goes to its whole process group: ffmpeg must not take the first one as
    its own (stopping, and the copy being tried again as an encode)."""
    from runtime_fixtures import ctrl_c_while_copying

    copying = tmp_path / "copying"
    hangs = tmp_path / "ffmpeg"
    args = {"copy": " -c:v copy ", "probe": " -nostdin -i "}[hang]
    hangs.write_text(f'#!/bin/sh\ncase " $* " in *"{args}"*) touch "{copying}"; '
                     f'exec sleep 60;;\nesac\nexec "{ffmpeg}" "$@"\n')
    hangs.chmod(0o755)
    out = tmp_path / "sharp.mp4"
    code, err = ctrl_c_while_copying(onnx_model, clips["loud"], out, hangs, copying,
                                     terminal=to == "terminal")
    # Every frame was sharpened before the Ctrl-C: whether that counts as interrupted is the
    # pipeline's call, not this test's.
    assert code in (0, 130), err
    assert f"{out} has no sound: the copy of the audio of {clips['loud']} was stopped (Ctrl-C)" \
        in err, err
    assert len(read_video(out)[0]) == FRAMES and sound_of(ffmpeg, out) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copying", "ffmpeg", "sharp.mp4"]


def test_sound_that_starts_before_the_pictures_is_copied_from_the_first_frame_on(
        tmp_path, capsys, monkeypatch, onnx_model, ffmpeg, clips):
    """A clip whose video starts 1 s into its sound (a cut, a screen recording): its first
    frame plays over the sound at 1 s, and so must the sharpened video's, not over the
    sound's first second (880 Hz here, then 440 Hz under the pictures)."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    tone = tmp_path / "tone.wav"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-f", "lavfi", "-i",
                    "sine=frequency=880:duration=1", "-f", "lavfi", "-i",
                    f"sine=frequency={TONE_HZ}:duration={FRAMES / FPS}", "-filter_complex",
                    "[0][1]concat=v=0:a=1", str(tone)], check=True, timeout=60)
    early = tmp_path / "early.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-itsoffset", "1",
                    "-i", str(clips["silent"]), "-i", str(tone), "-map", "0:v", "-map", "1:a",
                    "-c:v", "copy", "-c:a", "aac", str(early)], check=True, timeout=60)
    out = tmp_path / "sharp.mp4"
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(early),
                   "--out", str(out))
    assert rc == 0 and "sound" not in err.replace(str(tmp_path), ""), err
    assert_tone(sound_of(ffmpeg, out), FRAMES / FPS)
    first = sound_of(ffmpeg, out)[:RATE // 2]
    assert np.argmax(np.abs(np.fft.rfft(first))) * RATE / len(first) == pytest.approx(
        TONE_HZ, abs=5)


def test_an_ffmpeg_that_hangs_is_given_up_on_and_the_video_kept_without_sound(
        tmp_path, monkeypatch, onnx_model, ffmpeg, clips):
    """The copy's time limit (here cut to 1 s) ends a hung ffmpeg: the warning says that in a
    sentence, not as the whole ffmpeg command line Python's TimeoutExpired spells out."""
    import runtime.audio

    hangs = tmp_path / "ffmpeg"
    hangs.write_text(f'#!/bin/sh\ncase " $* " in *" -c:v copy "*) exec sleep 60;;\nesac\n'
                     f'exec "{ffmpeg}" "$@"\n')
    hangs.chmod(0o755)
    monkeypatch.setenv("SHARPEN_FFMPEG", str(hangs))
    monkeypatch.setattr(runtime.audio, "MUX_TIMEOUT_S", 1)
    out = tmp_path / "sharp.mp4"
    with runtime_warnings() as said:
        run_stream(onnx_model, str(clips["loud"]), out)
    assert len(said) == 1 and said[0] == (
        f"output={out} has no sound: {hangs} could not copy the audio of {clips['loud']} into "
        "it (it had not finished after 1 s); the video was written without it"), said
    assert len(read_video(out)[0]) == FRAMES and sound_of(ffmpeg, out) is None


def test_a_movs_pcm_sound_is_encoded_to_aac_in_an_mp4(
        tmp_path, capsys, monkeypatch, onnx_model, ffmpeg, clips):
    """Recent ffmpeg copies PCM (and Vorbis) into MP4 when asked, as tracks that browsers,
    QuickTime and phones do not play: the sound is kept there only as AAC. A .mov keeps PCM,
    as cameras write it."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    mov = tmp_path / "camera.mov"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-i", str(clips["loud"]), "-c:v", "copy",
                    "-c:a", "pcm_s16le", str(mov)], check=True, timeout=60)
    for name, codec in (("sharp.mp4", "aac"), ("sharp.mov", "pcm_s16le")):
        out = tmp_path / name
        rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(mov),
                       "--out", str(out))
        assert rc == 0 and "sound" not in err.replace(str(tmp_path), ""), err
        listing = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-i", str(out)],
                                 capture_output=True, text=True, timeout=60).stderr
        assert f"Audio: {codec}" in listing, (name, listing)
        assert_tone(sound_of(ffmpeg, out), FRAMES / FPS)


def _spatial_audio_clip(ffmpeg: str, loud: Path, path: Path) -> Path:
    """`loud` with a second audio track that ffmpeg can neither decode nor put in an MP4, MKV
    or TS, as an iPhone 16's spatial audio (APAC) beside its AAC: an AAC track whose sample
    entry is renamed `apac`, its decoder configuration (`esds`) hidden."""
    two = path.with_name(f"two-{path.name}")
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-i", str(loud), "-map", "0:v",
                    "-map", "0:a", "-map", "0:a", "-c", "copy", str(two)], check=True,
                   timeout=60)
    data = bytearray(two.read_bytes())
    moov = data.rfind(b"moov")   # ffmpeg writes it last, after the samples
    second = data.index(b"mp4a", data.index(b"mp4a", moov) + 4)
    data[second:second + 4] = b"apac"
    esds = data.index(b"esds", second)
    data[esds:esds + 4] = b"free"
    path.write_bytes(bytes(data))
    listing = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-i", str(path)],
                             capture_output=True, text=True, timeout=60).stderr
    # The tests name the codec as ffmpeg does: an older one may know the tag by no name
    if listing.count("Audio: aac") != 1 or "Audio: apple_apac (apac" not in listing:
        pytest.skip(f"{ffmpeg} does not read the made track as APAC: {listing}")
    return path


def test_an_iphone_clips_spatial_audio_track_leaves_its_aac_sound_in_the_video(
        tmp_path, capsys, monkeypatch, onnx_model, ffmpeg, clips):
    """An iPhone 16 records spatial audio by default: an APAC track beside the AAC one, which
    ffmpeg can neither copy into an MP4 nor decode. The copy of both failed, and the video was
    written without any sound, saying only "Error opening output files: Invalid argument".
    The AAC track goes in; the one left out is named, with why and what keeps it."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    clip = _spatial_audio_clip(ffmpeg, clips["loud"], tmp_path / "iphone.mp4")
    out = tmp_path / "sharp.mp4"
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(clip),
                   "--out", str(out))
    assert rc == 0, err
    assert_tone(sound_of(ffmpeg, out), FRAMES / FPS)
    assert "has no sound" not in err, err
    assert (f"{out} leaves out audio stream 2 of {clip} (apple_apac), which ffmpeg can neither "
            "copy into .mp4 nor encode for it (") in err, err
    # ffmpeg's cause, not its closing "Error opening output files: Invalid argument"
    assert "Error opening output files" not in err, err
    assert "apple_apac" in err.split("nor encode for it (")[1], err
    # What keeps it: a QuickTime file, Apple's own, takes APAC as it is
    assert f"; --out {out.with_suffix('.mov')} keeps it as it is" in err, err
    assert err.count("warning") == 1, err
    assert "1 audio stream copied" in err, err
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".mov"]



def test_an_audio_stream_left_out_is_in_the_stats_as_the_metadata_left_out_is(
        tmp_path, capsys, monkeypatch, onnx_model, ffmpeg, clips):
    """Per-stream muxing and --stats' metadata_left_out came in beside each other: a photo's
    captions left out were in --stats, an audio stream left out only in a warning, --stats'
    video saying audio_streams 1 of a clip of two. Its audio_left_out names each, as the
    warning does: number from 1, codec, ffmpeg's reason, the output that keeps it."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    clip = _spatial_audio_clip(ffmpeg, clips["loud"], tmp_path / "iphone.mp4")
    out, stats = tmp_path / "sharp.mp4", tmp_path / "s.json"
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(clip),
                   "--out", str(out), "--stats", str(stats))
    assert rc == 0, err
    video = json.loads(stats.read_text())["video"]
    assert video["audio_streams"] == 1, video
    [left] = video["audio_left_out"]
    assert (left["stream"], left["codec"], left["kept_in"]) == (2, "apple_apac", ".mov"), left
    assert left["why"] and left["why"] in err, (left, err)
    # a clip whose audio all went in says no such key
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(clips["loud"]),
                   "--out", str(out), "--stats", str(stats), "--overwrite")
    assert rc == 0 and "audio_left_out" not in json.loads(stats.read_text())["video"], err


def test_an_iphone_clips_spatial_audio_is_copied_where_the_container_takes_it(
        tmp_path, capsys, monkeypatch, onnx_model, ffmpeg, clips):
    """An MKV refuses APAC too, but its copy is tried there (MP4's is not: its players play
    none), and both of ffmpeg's reasons are given; a QuickTime file, as the README says, takes
    it as it is, beside the AAC, without a word."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    clip = _spatial_audio_clip(ffmpeg, clips["loud"], tmp_path / "iphone.mp4")
    mkv, mov = tmp_path / "sharp.mkv", tmp_path / "sharp.mov"
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(clip), "--out", str(mkv))
    assert rc == 0, err
    assert_tone(sound_of(ffmpeg, mkv), FRAMES / FPS)
    reason = err.split(f"{mkv} leaves out audio stream 2 of {clip} (apple_apac), which ffmpeg "
                       "can neither copy into .mkv nor encode for it (")[-1]
    assert reason.startswith("copy: ") and "; encode: " in reason, err
    assert f"; --out {mov} keeps it as it is" in err and "1 audio stream copied" in err, err
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(clip), "--out", str(mov))
    assert rc == 0 and "warning" not in err and "2 audio streams copied" in err, err
    assert_tone(sound_of(ffmpeg, mov), FRAMES / FPS)
    listing = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-i", str(mov)],
                             capture_output=True, text=True, timeout=60).stderr
    assert "Audio: apple_apac" in listing, listing

def test_a_clip_of_unknown_frame_rate_keeps_its_sound_only_at_the_rate_given(
        tmp_path, capsys, monkeypatch, onnx_model, ffmpeg, clips):
    """A header of 2000 fps is taken as unknown and the video written at 30 fps: its sound,
    0.4 s for 800 frames here, was laid over 27 s of pictures. Said and left out instead, with
    what keeps it; --fps (the user's word for the clip's rate) keeps it."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    fast = tmp_path / "fast.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-i", str(clips["loud"]), "-t", "0.4",
                    "-r", "2000", "-c:v", "mpeg4", "-c:a", "copy", str(fast)], check=True,
                   timeout=60)
    out = tmp_path / "sharp.mp4"
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(fast), "--out", str(out))
    assert rc == 0, err
    assert (f"--out {out} has no sound: the frame rate of {fast} is unknown, so the video's 30 "
            "fps is a guess its audio would not match; --fps RATE with the clip's rate keeps "
            "it (--no-audio") in err, err
    assert sound_of(ffmpeg, out) is None
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(fast), "--out", str(out),
                   "--fps", "1000", "--max-frames", "400")
    assert rc == 0 and "sound" not in err.replace(str(tmp_path), ""), err
    assert_tone(sound_of(ffmpeg, out), 0.4)


MARK_S, MARK_FPS = 2.0, 20   # the flash frame and the click: 2 s in, of a 3 s, 20 fps clip


def _marked_clip(ffmpeg: str, path: Path, frame_times: str) -> Path:
    """A 64x48 clip of frames made at 20 fps, grey but for a white flash at 2 s, shown at the
    times `frame_times` gives (an ffmpeg select filter: the frames kept keep their times; or a
    setpts one), over a sound that is silent but for a 30 ms click at 2 s."""
    video = (f"geq=lum='if(eq(N,{int(MARK_S * MARK_FPS)}),235,if(mod(N,2),100,140))':cb=128:"
             f"cr=128,{frame_times}")
    command = [ffmpeg, "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
               f"color=gray:s=64x48:r={MARK_FPS}:d=3", "-f", "lavfi", "-i",
               f"aevalsrc='if(between(t,{MARK_S},{MARK_S + 0.03}),sin(2*PI*1000*t),0)':d=3:"
               f"s={RATE}", "-vf", video, "-fps_mode", "vfr", "-enc_time_base", "1/1000",
               "-c:v", "mpeg4", "-q:v", "2", "-c:a", "aac", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if done.returncode and "fps_mode" in done.stderr:   # ffmpeg before 5.1
        command[command.index("-fps_mode")] = "-vsync"
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return path


def _frame_times(path: Path) -> list[float]:
    import cv2
    cap = cv2.VideoCapture(str(path))
    times = []
    while cap.read()[0]:
        times.append(cap.get(cv2.CAP_PROP_POS_MSEC) / 1000)
    cap.release()
    return times


def _flash_and_click(ffmpeg: str, path: Path) -> tuple[float, float, float]:
    """When the video shows its white frame (its index over the video's rate), when its sound
    clicks (in the file's time: sound that starts late is padded with silence), in seconds,
    and one frame interval."""
    frames, fps = read_video(path)
    flash = int(np.argmax([f.mean() for f in frames])) / fps
    done = subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-i", str(path), "-map", "0:a:0",
                           "-af", "aresample=async=1:first_pts=0", "-f", "s16le", "-ac", "1",
                           "-ar", str(RATE), "-"], capture_output=True, check=True, timeout=60)
    sound = np.abs(np.frombuffer(done.stdout, np.int16).astype(np.float64))
    return flash, float(np.argmax(sound > 0.3 * sound.max())) / RATE, 1 / fps


# A phone's variable rate: 20 fps but for 0.5-1.9 s, where only every 4th frame is kept.
PHONE_FRAMES = "select='not(between(t,0.5,1.9))+not(mod(n,4))'"


def _phone_clip_run(capsys, monkeypatch, onnx_model, ffmpeg: str, tmp_path: Path,
                    *argv: str) -> tuple[int, str, Path]:
    """`sharpen run` of the phone clip (PHONE_FRAMES) into sharp.mp4 with `argv`."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    clip = _marked_clip(ffmpeg, tmp_path / "phone.mp4", PHONE_FRAMES)
    out = tmp_path / "sharp.mp4"
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(clip),
                   "--out", str(out), *argv)
    return rc, err, out


def test_a_variable_frame_rate_clip_keeps_its_pictures_in_step_with_its_sound(
        tmp_path, capsys, monkeypatch, onnx_model, ffmpeg):
    """A phone records at a variable frame rate: here 20 fps but for 0.5-1.9 s, where only
    every 4th frame is kept, 39 frames in 3 s, read as 13 fps. Written one per slot at 13 fps
    the flash showed at 1.46 s, over the click at 2 s. At that average rate, placed by their
    times, 11 of the 20 fps frames were left out, as ffmpeg's -fps_mode cfr does; at the
    clip's peak rate, 20 fps, every frame is kept, the frame before each longer gap repeated,
    and the flash comes within a frame of the click. The done: line counts the frames
    sharpened, and a note says what the video did to them, and at which rate."""
    import json

    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    clip = _marked_clip(ffmpeg, tmp_path / "phone.mp4", PHONE_FRAMES)
    times = _frame_times(clip)
    assert len(times) == 39 and times[19] == pytest.approx(MARK_S), times
    out, stats = tmp_path / "sharp.mp4", tmp_path / "stats.json"
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(clip),
                   "--out", str(out), "--stats", str(stats))
    assert rc == 0 and "done: 39 frames" in err and "warning" not in err, err
    frames, fps = read_video(out)
    assert fps == pytest.approx(20), fps
    flash, click, frame = _flash_and_click(ffmpeg, out)
    assert click == pytest.approx(MARK_S, abs=0.01), click
    assert abs(flash - click) < frame, (flash, click)
    s = json.loads(stats.read_text())
    repeated = s["repeated_frames"]
    assert repeated > 0 and s["left_out_frames"] == 0, s
    assert s["source"]["fps"] == pytest.approx(20) and \
        s["source"]["average_fps"] == pytest.approx(13, abs=0.01), s["source"]
    assert len(frames) == 39 + repeated
    assert (f"sharpen run: {clip} has frames at uneven times (a variable frame rate): the 20 "
            "fps video (the clip's peak rate; 13 on average) repeats the frame before each "
            f"longer gap ({repeated} frames in all), so that it keeps their times (and any "
            "sound in step)") in err, err


def test_fps_of_a_variable_rate_clips_average_keeps_its_sound_and_times(
        tmp_path, capsys, monkeypatch, onnx_model, ffmpeg):
    """--fps 13, the rate players and ffprobe give the clip above, asks for its own rate: its
    frames are placed by their times and its sound kept, as before its video took the peak
    rate. Compared with the peak, 20, it was taken as another rate: the video was written
    frame by frame (the flash 0.5 s before the click) and silent, the warning naming a 20 fps
    no player shows."""
    rc, err, out = _phone_clip_run(capsys, monkeypatch, onnx_model, ffmpeg, tmp_path,
                                   "--fps", "13")
    assert rc == 0 and "warning" not in err, err
    assert read_video(out)[1] == pytest.approx(13), read_video(out)[1]
    flash, click, frame = _flash_and_click(ffmpeg, out)
    assert click == pytest.approx(MARK_S, abs=0.01) and abs(flash - click) < frame, (flash,
                                                                                      click)
    assert "the 13 fps video (--fps; the clip's peak rate is 20) repeats" in err, err


def test_fps_of_another_rate_places_a_variable_rate_clips_frames_by_their_times(
        tmp_path, capsys, monkeypatch, onnx_model, ffmpeg):
    """--fps 16 on the clip above (20 fps peak, 13 on average), as ffmpeg's -fps_mode cfr
    -r 16: a 16 fps video whose frames are placed by their times, those in a filled interval
    left out, and its sound kept. Written frame by frame instead, 39 frames at 16 fps played
    2.4 s, the flash at 1.19 s, and the sound was left out with a warning."""
    rc, err, out = _phone_clip_run(capsys, monkeypatch, onnx_model, ffmpeg, tmp_path,
                                   "--fps", "16")
    assert rc == 0 and "warning" not in err, err
    frames, fps = read_video(out)
    assert fps == pytest.approx(16) and abs(len(frames) - 48) <= 1, (fps, len(frames))
    flash, click, frame = _flash_and_click(ffmpeg, out)
    assert click == pytest.approx(MARK_S, abs=0.01) and abs(flash - click) < frame, (flash,
                                                                                      click)
    assert "the 16 fps video (--fps; the clip's peak rate is 20) repeats" in err, err
    assert "leaves out" in err, err


def test_a_constant_rate_clips_uneven_timestamps_move_no_frame(
        tmp_path, capsys, monkeypatch, onnx_model, ffmpeg):
    """Frames up to 0.4 of an interval off their slots (a recorder's clock, a timebase's
    rounding), either way, are written once each: no frame repeated or left out, no note."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    clip = _marked_clip(ffmpeg, tmp_path / "jitter.mp4",
                        "settb=1/1000,setpts='(N+0.4*gt(N,0)*lt(N,59)*(2*mod(N,2)-1))/20/TB'")
    times = _frame_times(clip)
    off = [t * MARK_FPS - n for n, t in enumerate(times)]
    assert len(times) == 60 and max(off) > 0.3 and min(off) < -0.3, off   # the jitter is there
    out = tmp_path / "sharp.mp4"
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(clip), "--out", str(out))
    assert rc == 0 and "uneven" not in err and "warning" not in err, err
    assert len(read_video(out)[0]) == 60
    flash, click, frame = _flash_and_click(ffmpeg, out)
    assert flash == pytest.approx(MARK_S) and abs(flash - click) < frame, (flash, click)


@pytest.mark.parametrize("last", ["DURATION*2", "1"])
def test_a_constant_rate_clip_whose_last_frame_lasts_longer_or_shorter_moves_no_frame(
        tmp_path, onnx_model, ffmpeg, last):
    """300 frames at 29.97 fps, the last lasting two frame intervals (a recorder stopped
    late) or none: OpenCV 5 reads the container's average rate, 29.87 or 30.07 fps, which the
    evenly spaced frames drift from by up to a frame by the end. Placed by their times, one
    was left out (or the one before repeated) and the clip was said to be of variable rate."""
    import cv2

    clip = tmp_path / "even.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                    "color=gray:s=64x48:r=30000/1001:d=10", "-c:v", "mpeg4",
                    "-enc_time_base", "1/30000", "-bsf:v",
                    f"setts=duration='if(eq(N,299),{last},DURATION)'", str(clip)],
                   check=True, timeout=60)
    step = np.diff(_frame_times(clip)) * 30000 / 1001
    assert len(step) == 299 and abs(step - 1).max() < 0.01, step   # evenly spaced
    out = tmp_path / "sharp.mp4"
    stats = run_stream(onnx_model, str(clip), out)
    assert stats["repeated_frames"] == stats["left_out_frames"] == 0, (
        cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FPS), stats)
    assert len(read_video(out)[0]) == 300


def test_an_mpeg_program_streams_guessed_times_move_no_frame(tmp_path, capsys, onnx_model,
                                                             ffmpeg):
    """An MPEG program stream (.mpg, a DVD's .vob) packs several small frames into one 2 KB
    pack, which gives a time to the first only: ffmpeg guesses the rest, here a frame late
    from frame 179 to 224 of a constant 29.97 fps clip. Placed by those times, the video
    repeated a frame and said the clip had a variable frame rate."""
    clip = tmp_path / "dvd.mpg"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                    "color=gray:s=64x48:r=30000/1001:d=10", "-c:v", "mpeg2video", "-q:v", "2",
                    str(clip)], check=True, timeout=60)
    step = np.diff(_frame_times(clip)[:-1]) * 30000 / 1001
    assert step.max() > 1.5, step   # the guess is there
    out = tmp_path / "sharp.mp4"
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(clip), "--out", str(out))
    assert rc == 0 and "uneven" not in err and "warning" not in err, err
    assert len(read_video(out)[0]) == 300


@pytest.mark.parametrize("clock", ["back", "ahead"])
def test_mpeg_ts_files_joined_keep_every_frame_where_their_clock_jumps(
        tmp_path, onnx_model, ffmpeg, clock):
    """Transport streams join by concatenation (a recorder's segments, `cat a.ts b.ts`); the
    second's clock starts again (back), or a minute on (ahead). Placed by their times, the
    second's frames fell in slots already filled and were left out (30 of 90), or the last
    frame before the jump was repeated over the minute (1169 frames); a jump is the clock's,
    not a pause: every frame is written once."""
    parts = []
    for n, seconds in enumerate((1.5, 3)):
        parts.append(tmp_path / f"part{n}.ts")
        subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                        f"color=gray:s=64x48:r={MARK_FPS}:d={seconds}", "-c:v", "mpeg2video",
                        *(["-output_ts_offset", "60"] if n and clock == "ahead" else []),
                        str(parts[-1])], check=True, timeout=60)
    joined = tmp_path / "joined.ts"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    times = _frame_times(joined)
    assert len(times) == 90 and (times[30] < times[29] if clock == "back"
                                 else times[30] - times[29] > 50), times
    out = tmp_path / "sharp.mp4"
    # Ahead, OpenCV counts 1229 frames over the span, and the file was said truncated at 90.
    with runtime_warnings() as said:
        stats = run_stream(onnx_model, str(joined), out)
    assert not said and not stats.get("skipped_inputs"), said
    assert stats["source"]["frame_count"] == 90, stats["source"]
    assert stats["repeated_frames"] == stats["left_out_frames"] == 0, stats
    assert len(read_video(out)[0]) == 90


@pytest.mark.parametrize("ext, lead", [(".ts", 0.5), (".ts", -0.5), (".mp4", -0.5)])
def test_sound_keeps_its_place_against_the_first_frame_in_an_mpeg_ts_clip_too(
        tmp_path, monkeypatch, onnx_model, ffmpeg, ext, lead):
    """A transport stream cut from a broadcast or a camera's .mts: its sound starts half a
    second before its first frame (or after it), 10 s into the stream's clock. ffmpeg reads
    a TS stream alone from its own first packet, so the sound was copied from there: the click
    came 0.63 s late (the AAC encoder's priming adds 0.13 s), or 0.37 s early. It now sounds
    within a frame of the flash, at 2 s; an MP4's sound that starts late (an edit list's
    delay, which ffmpeg keeps) is not delayed twice."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    clip = tmp_path / f"cut{ext}"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y",
                    "-itsoffset", f"{max(lead, 0)}", "-f", "lavfi", "-i",
                    f"color=gray:s=64x48:r={MARK_FPS}:d=3",
                    "-itsoffset", f"{max(-lead, 0)}", "-f", "lavfi", "-i",
                    f"aevalsrc='if(between(t,{MARK_S + lead},{MARK_S + lead + 0.03}),"
                    f"sin(2*PI*1000*t),0)':d={3 + lead}:s={RATE}",
                    "-vf", f"geq=lum='if(eq(N,{int(MARK_S * MARK_FPS)}),235,128)':cb=128:cr=128",
                    "-c:v", "mpeg2video", "-q:v", "2", "-c:a", "aac",
                    *(["-output_ts_offset", "10"] if ext == ".ts" else []), str(clip)],
                   check=True, timeout=60)
    out = tmp_path / "sharp.mp4"
    # The frame count OpenCV gives a .ts (its whole length, the sound's too, times the rate)
    # is more than it holds where the sound runs on: no cause for a warning.
    with runtime_warnings() as said:
        run_stream(onnx_model, str(clip), out)
    assert not said, said
    flash, click, frame = _flash_and_click(ffmpeg, out)
    assert flash == pytest.approx(MARK_S), flash
    assert abs(click - flash) < frame, (flash, click)


def _ts_clip(ffmpeg: str, path: Path, sound: Optional[float], size: str = "64x48",
             seconds: float = 3.0, fps: int = MARK_FPS) -> Path:
    """An H.264 MPEG-TS clip (a .m2ts or .mts in 192-byte packets, as Blu-ray and AVCHD write
    them) with an AAC tone that lasts `sound` seconds (None: silent)."""
    audio = ["-f", "lavfi", "-i", f"sine=frequency={TONE_HZ}:duration={sound}"] if sound else []
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=s={size}:r={fps}:d={seconds}", *audio, "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", *(["-c:a", "aac"] if sound else []),
                    *(["-mpegts_m2ts_mode", "1"] if path.suffix != ".ts" else []),
                    "-f", "mpegts", str(path)], check=True, timeout=60)
    return path


@pytest.mark.parametrize("name, sound", [("clip.ts", 3.2), ("clip.ts", 3.0), ("silent.ts", None),
                                         ("clip.m2ts", 3.2), ("clip.mts", 3.2)])
def test_a_whole_mpeg_ts_clip_is_not_called_truncated(tmp_path, capsys, onnx_model, ffmpeg,
                                                      name, sound):
    """OpenCV's frame count for a transport stream is its whole length, its sound's too, times
    its rate: 65 for these 60 frames with 3.2 s of sound, and `sharpen run` ended with '60 of
    the 65 frames its header declares (truncated or damaged file?)', exit 1, its progress at
    60/65. Read to its end, the clip's count is the frames it held, unsaid."""
    import json

    clip = _ts_clip(ffmpeg, tmp_path / name, sound)
    out, stats = tmp_path / "sharp.mp4", tmp_path / "stats.json"
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(clip), "--out", str(out))
    assert rc == 0 and "done: 60 frames" in err, err
    assert "warning" not in err and "truncated" not in err and "cut short" not in err, err
    assert "note:" not in err, err   # the estimate off is no news: the totals are corrected
    with runtime_warnings() as said:
        summary = run_stream(onnx_model, str(clip), out, stats_path=str(stats), quiet=False,
                             report_interval=60)
    err = capsys.readouterr().err
    assert not said and not summary.get("skipped_inputs"), (said, summary)
    # The last progress line: the frames the file held, not its estimate.
    assert "60/60 frames" in err and "/65" not in err, err
    assert json.loads(stats.read_text())["source"]["frame_count"] == 60
    assert len(read_video(out)[0]) == 60


def _ts_packets(data: bytes) -> list[tuple[int, bool]]:
    """(PID, whether a PES starts there) of each 188-byte packet."""
    return [(((data[i + 1] & 0x1F) << 8) | data[i + 2], bool(data[i + 1] & 0x40))
            for i in range(0, len(data), 188)]


def test_a_cut_mpeg_ts_clip_is_said_to_be_cut(tmp_path, capsys, onnx_model, ffmpeg):
    """A transport stream's count is taken from what it holds, so a clip cut in half declared
    the half (read 32 of 33: said nothing). It is written in whole packets, each stream packet
    (a picture, a few sound frames) ending at a packet's end: cut through a packet, or through
    a sound packet whose header gives its length, it is said cut, exit 1 as for another cut
    video; cut between packets through a picture (which might, rarely, end there), a note."""
    data = _ts_clip(ffmpeg, tmp_path / "whole.ts", 2.0, "320x240", 2.0, 25).read_bytes()
    packets = _ts_packets(data)
    video, audio = 0x100, 0x101   # ffmpeg's PIDs
    half = len(packets) // 2
    # The first packet from the middle on that goes on with a sound packet (a PES) started
    # before it; and, of the clip without sound, one that goes on with a picture.
    in_sound = next(k for k in range(half, len(packets)) if packets[k] == (audio, False))
    silent = _ts_clip(ffmpeg, tmp_path / "silent.ts", None, "320x240", 2.0, 25).read_bytes()
    in_picture = next(k for k, p in enumerate(_ts_packets(silent)) if k >= half
                      and p == (video, False))
    cuts = {"mid_packet": data[:half * 188 + 94], "mid_sound": data[:in_sound * 188],
            "mid_picture": silent[:in_picture * 188]}
    for name, cut in cuts.items():
        (tmp_path / f"{name}.ts").write_bytes(cut)
    out = tmp_path / "sharp.mp4"

    def run(name: str) -> tuple[int, str]:
        return _run(capsys, "--model", str(onnx_model), "--source",
                    str(tmp_path / f"{name}.ts"), "--out", str(out))

    rc, err = run("mid_packet")
    assert rc == 1, err
    assert re.search(rf"mid_packet\.ts: the video ended after \d+ frames: its {half * 188 + 94} "
                     r"bytes are no whole number of its 188-byte packets, the last one cut "
                     r"\(truncated file\?\)", err), err
    rc, err = run("mid_sound")
    assert rc == 1 and re.search(r"mid_sound\.ts: the video ended after \d+ frames: its last "
                                 r"packet of stream 257 \(0x101\) holds (\d+) of the (\d+) "
                                 r"bytes its header gives \(truncated file\?\)", err), err
    rc, err = run("mid_picture")
    assert rc == 0 and "warning" not in err, err
    assert re.search(r"note: .*mid_picture\.ts: the video ended after \d+ frames: the last data "
                     r"of its stream 256 \(0x100\) fills its packet, where the end of a picture "
                     r"is padded unless it fills it exactly: the file may have been cut short "
                     r"there", err), err
    with runtime_warnings() as said:
        summary = run_stream(onnx_model, str(tmp_path / "mid_packet.ts"), out)
    assert len(said) == 1 and said == summary["skipped_inputs"], (said, summary)
def test_an_avi_with_b_frames_keeps_its_sound(tmp_path, capsys, monkeypatch, onnx_model, ffmpeg,
                                             clips):
    """An AVI stores no presentation times: with B-frames (Xvid, DivX, H.264 in AVI), ffmpeg
    reads the first frame's as 'none', a huge negative number, which delayed the sound by
    ten billion years: ffmpeg refused the copy and the video came out silent."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    clip = tmp_path / "xvid.avi"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-i", str(clips["loud"]), "-c:v",
                    "mpeg4", "-bf", "2", "-q:v", "2", "-c:a", "pcm_s16le", str(clip)],
                   check=True, timeout=60)
    out = tmp_path / "sharp.mp4"
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(clip), "--out", str(out))
    assert rc == 0 and "sound" not in err.replace(str(tmp_path), "") and "warning" not in err, err
    assert len(read_video(out)[0]) == FRAMES
    assert_tone(sound_of(ffmpeg, out), FRAMES / FPS)


def test_a_recording_of_a_live_mpeg_ts_stream_is_not_called_cut(tmp_path, capsys, onnx_model,
                                                                ffmpeg):
    """A recording of a broadcast or a live stream (a DVB tuner's, `curl` of an IPTV stream)
    starts and ends wherever it was started and stopped: inside a sound packet, and for
    `curl` inside a 188-byte packet. Its end is no cut file's: it was said 'truncated file?',
    exit 1, where the frame count's 2 % margin had said nothing. A note says what it ends in."""
    whole = tmp_path / "whole.ts"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                    "testsrc2=s=64x48:r=25:d=40", "-f", "lavfi", "-i",
                    f"sine=frequency={TONE_HZ}:duration=40", "-c:v", "libx264", "-g", "10",
                    "-pix_fmt", "yuv420p", "-c:a", "mp2", "-f", "mpegts", str(whole)],
                   check=True, timeout=120)
    data = whole.read_bytes()
    packets = _ts_packets(data)
    audio = 0x101

    def in_sound(frm: int) -> int:   # a packet that goes on with a sound packet begun before
        return next(k for k in range(frm, len(packets)) if packets[k] == (audio, False))

    first, last = in_sound(len(packets) // 10), in_sound(len(packets) * 9 // 10)
    out = tmp_path / "sharp.mp4"
    for name, end in (("tuner", last * 188), ("curl", last * 188 + 100)):
        clip = tmp_path / f"{name}.ts"
        clip.write_bytes(data[first * 188:end])
        rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(clip),
                       "--out", str(out))
        assert rc == 0 and "warning" not in err and "truncated" not in err, (name, err)
        assert re.search(rf"note: .*{name}\.ts: the video ended after \d+ frames: .*, as a "
                         r"recording of a broadcast or live stream ends \(it starts inside a "
                         r"stream packet begun before it too\)", err), (name, err)


def test_an_mpeg_ts_clip_padded_with_zeros_is_not_called_cut(tmp_path, capsys, onnx_model,
                                                             ffmpeg):
    """Bytes after a transport stream's last packet that start no packet (zeros a recorder or
    a copy padded it with) are no cut packet: 'no whole number of its 188-byte packets, the
    last one cut (truncated file?)', exit 1, was said of a whole clip with 1000 zeros after it.
    Part of a packet, its sync byte first, is still a cut."""
    data = _ts_clip(ffmpeg, tmp_path / "whole.ts", 3.0).read_bytes()
    padded, cut = tmp_path / "padded.ts", tmp_path / "cut.ts"
    cut.write_bytes(data + data[:100] + bytes(40))
    out = tmp_path / "sharp.mp4"
    for pad in (bytes(1000), b"\xff" * 100, bytes(5000)):
        padded.write_bytes(data + pad)
        rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(padded),
                       "--out", str(out))
        assert rc == 0 and "warning" not in err and "truncated" not in err, (len(pad), err)
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(cut), "--out", str(out))
    assert rc == 1 and f"its {len(data) + 140} bytes are no whole number" in err, err


def test_each_segment_gets_the_stretch_of_sound_under_its_frames(
        tmp_path, capsys, monkeypatch, onnx_model, ffmpeg, clips):
    """`--segment` cut a clip with sound into silent files. Each now holds the sound of its
    own frames: 880 Hz under the first 8 frames here, 440 Hz under the last 8."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    half = FRAMES / FPS / 2
    tone = tmp_path / "tone.wav"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-f", "lavfi", "-i",
                    f"sine=frequency=880:duration={half}", "-f", "lavfi", "-i",
                    f"sine=frequency={TONE_HZ}:duration={half}", "-filter_complex",
                    "[0][1]concat=v=0:a=1", str(tone)], check=True, timeout=60)
    clip = tmp_path / "two.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-i", str(clips["silent"]), "-i",
                    str(tone), "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac",
                    str(clip)], check=True, timeout=60)
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(clip),
                   "--out", str(tmp_path / "out" / "rec.mp4"), "--segment", str(half))
    assert rc == 0 and "sound" not in err.replace(str(tmp_path), ""), err
    first, second = sorted((tmp_path / "out").glob("rec-*.mp4"))
    for seg, hz in ((first, 880), (second, TONE_HZ)):
        samples = sound_of(ffmpeg, seg)
        assert samples is not None, seg
        assert abs(len(samples) / RATE - half) < 0.1, len(samples) / RATE
        # Away from the cut: AAC's frames overlap it by a few ms.
        inner = samples[RATE // 10: -RATE // 10]
        peak = np.argmax(np.abs(np.fft.rfft(inner))) * RATE / len(inner)
        assert peak == pytest.approx(hz, abs=5), (seg, peak)


def test_a_jittery_variable_rate_clips_peak_rate_is_its_fast_stretchs(tmp_path, ffmpeg):
    """20 fps with 4 s at 10 (a phone in dim light), each frame up to 5 ms off (its clock):
    the peak is the 20 fps stretches' rate within 0.1%, not the 15 average, nor a second's
    count of frames (19.94: the first frame past a second is a little past it), nor the
    fastest 20 intervals' (20.17: ends the jitter moved in). A video a little faster or slower
    than its frames repeats one, then leaves one out, a stutter. A clip under a second has
    none."""
    from runtime.frame_rate import peak_fps

    def clip(path: Path, seconds: float, times: str) -> Path:
        subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                        f"color=gray:s=64x48:r=20:d={seconds}", "-vf", times, "-fps_mode",
                        "passthrough", "-enc_time_base", "1/10000", "-c:v", "mpeg4",
                        str(path)], check=True, timeout=60)
        return path

    phone = clip(tmp_path / "phone.mp4", 6, "settb=1/10000,setpts='(N+clip(N,40,80)-40"
                 "+0.1*sin(N*2.3))/20/TB'")
    assert peak_fps(phone) == pytest.approx(20, rel=1e-3)
    assert peak_fps(clip(tmp_path / "short.mp4", 0.9, "null")) is None


def test_a_sound_copy_cut_by_a_file_size_limit_says_the_limit_not_a_negative_exit_code(
        tmp_path, monkeypatch, onnx_model, ffmpeg, clips):
    """The video fits under a limit on one file's size (ulimit -f), the copy with its sound
    does not: ffmpeg is killed by SIGXFSZ (Python ignores it, its children do not), and the
    warning said "could not copy the audio ... (exit code -25)", a number to look up."""
    from child_fixtures import main_with_file_limit
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    argv = ["run", "--model", str(onnx_model), "--threads", "1", "--quiet", "--source"]
    silent = tmp_path / "silent.mp4"
    assert main_with_file_limit([*argv, str(clips["silent"]), "--out", str(silent)],
                                10**9).get("rc") == 0
    out = tmp_path / "loud.mp4"
    said = main_with_file_limit([*argv, str(clips["loud"]), "--out", str(out)],
                                silent.stat().st_size + 2000)
    assert said.get("rc") == 0, said
    assert "could not copy the audio" in said["err"], said["err"]
    assert "exit code" not in said["err"], said["err"]
    assert "killed by SIGXFSZ: the limit on one file's size, ulimit -f)" in said["err"], said


def test_segments_without_ffmpeg_are_given_no_line_that_would_add_the_sound_out_of_step(
        tmp_path, capsys, monkeypatch, onnx_model, clips):
    """A segment's sound starts where its frames do in the source: a line copying it from the
    source's start, named for all segments at once, would put every one but the first out of
    step, so segments are told only how to keep the sound in the run."""
    monkeypatch.setenv("SHARPEN_FFMPEG", str(tmp_path / "no-such-ffmpeg"))
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(clips["loud"]),
                   "--out", str(tmp_path / "seg" / "s.mp4"), "--segment", "1")
    assert rc == 0, err
    assert len(list((tmp_path / "seg").glob("s-*.mp4"))) > 1
    assert "has no sound" in err and "add it to the video made" not in err, err


def test_a_copy_of_several_streams_that_fails_late_is_not_made_again_in_full(tmp_path, ffmpeg,
                                                                             clips):
    """Where the copy of all the sound fails for no one stream's sake (a disk that fills up,
    here a limit on one file's size, as `ulimit -f` sets, under a clip's full length but over
    a second of it), each stream went in alone over a second, and the copy of all of them was
    made again, in full, copy and encode, to fail as the first did: a long clip's sound copied
    twice more for nothing. Where every stream goes in alone, the first failure is the answer."""
    from runtime.audio import mux_audio
    two = tmp_path / "two.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-i", str(clips["loud"]), "-map", "0:v",
                    "-map", "0:a", "-map", "0:a", "-c", "copy", str(two)], check=True,
                   timeout=60)
    log = tmp_path / "ffmpeg.log"
    limited = tmp_path / "ffmpeg"   # ffmpeg itself, its files limited to most of the clip's
    limit = int(0.7 * clips["loud"].stat().st_size)
    limited.write_text(f"#!{sys.executable}\nimport json, os, resource, sys\n"
                       f"with open({str(log)!r}, 'a') as f:\n"
                       "    print(json.dumps(sys.argv[1:]), file=f)\n"
                       f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
                       f"os.execv({ffmpeg!r}, [{ffmpeg!r}, *sys.argv[1:]])\n")
    limited.chmod(0o755)
    out = tmp_path / "sharp.mp4"
    why, _, left = mux_audio(clips["silent"], two, out, FRAMES / FPS, str(limited),
                             ["aac", "aac"])
    assert why and not left, (why, left)
    muxes = [c for c in map(json.loads, log.read_text().splitlines()) if str(out) in c]
    # A trial's "-t 1" follows the clip's own "-t", and ffmpeg takes the last
    full = [c for c in muxes if c[max(i for i, a in enumerate(c) if a == "-t") + 1] != "1"]
    assert len(muxes) > len(full) == 2, muxes   # the copy, and the encode


@pytest.mark.parametrize("pointer", ["0x55d0c3a1b2c0", "000001682C2523C0"])
def test_the_reason_a_stream_is_left_out_is_said_without_ffmpegs_part_name(pointer):
    """ffmpeg names the part that failed, and its address, before its error: "[mp4 @ 0x55d0...]"
    where C's %p writes 0x, "[mp4 @ 000001682C...]" in a Windows build, which was kept."""
    from runtime.audio import _first_error
    said = (f"[mp4 @ {pointer}] Could not find tag for codec apple_apac in stream #1\n"
            "Error opening output files: Invalid argument\n")
    done = subprocess.CompletedProcess([], 1, "", said)
    assert _first_error(done) == "Could not find tag for codec apple_apac in stream #1"
