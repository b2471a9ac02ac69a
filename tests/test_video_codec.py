"""`sharpen run --codec h264|hevc|prores` writes what an editor or a viewer expects from ffmpeg
or HandBrake, not OpenCV's mp4v at its fixed quality: the frames are encoded by ffmpeg, with a
quality knob (--crf), the YUV matrix players take the size in, tagged so, and the source's
sound and timecode kept. A codec the container or the ffmpeg found cannot take is refused
before the model loads, naming the option and what to install."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.pipeline import StreamOptions, run_stream
from runtime.sinks import SinkError
from runtime_fixtures import (assert_in_order, ffmpeg_or_skip, onnx_model, read_video, run_cli,
                              runtime_warnings, textured_frame, write_video)

__all__ = ["onnx_model"]  # the fixture is used by name

FPS, FRAMES, TIMECODE = 25.0, 10, "01:02:03:04"


@pytest.fixture(scope="module")
def ffmpeg() -> str:
    return ffmpeg_or_skip("encode H.264, HEVC and ProRes")


@pytest.fixture
def clip(tmp_path, ffmpeg) -> Path:
    """A camera's MOV: AAC sound and a start timecode."""
    pictures = tmp_path / "pictures.mp4"
    write_video(pictures, FRAMES, FPS)
    clip = tmp_path / "clip.mov"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y", "-i", str(pictures), "-f", "lavfi",
                    "-i", f"sine=frequency=440:duration={FRAMES / FPS}", "-map", "0:v", "-map",
                    "1:a", "-c:v", "copy", "-c:a", "aac", "-timecode", TIMECODE, str(clip)],
                   check=True, timeout=60)
    return clip


def _listing(ffmpeg: str, path: Path) -> str:
    return subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-i", str(path)],
                          capture_output=True, text=True, timeout=60).stderr


def _video_line(listing: str) -> str:
    return re.search(r"Stream #.*Video: .*", listing).group(0)


def _psnr(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(np.mean([cv2.PSNR(x, y) for x, y in zip(a, b)]))


def _run(model: Path, source: Path, out: Path, *extra: str) -> int:
    return run_cli(["run", "--model", str(model), "--source", str(source), "--out", str(out),
                  "--quiet", *extra])


def test_h264_keeps_sound_and_timecode_and_says_what_was_written(
        tmp_path, capsys, monkeypatch, onnx_model, ffmpeg, clip):
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    out = tmp_path / "sharp.mp4"
    assert _run(onnx_model, clip, out, "--codec", "h264") == 0
    err = capsys.readouterr().err
    assert "warning" not in err, err
    # The closing line says what was written, as a render queue's log does.
    assert (f"{out}: H.264 (libx264), 8-bit 4:2:0, BT.601 limited range (tagged), "
            "CRF 18, preset medium; 1 audio stream copied; timecode " + TIMECODE) in err, err
    listing = _listing(ffmpeg, out)
    video = _video_line(listing)
    # 96x64 is SD: BT.601 (smpte170m), as players take untagged SD, and said so.
    assert "h264" in video and "yuv420p(tv, smpte170m, progressive)" in video, video
    assert "Audio: aac" in listing and f"timecode        : {TIMECODE}" in listing, listing
    frames, fps = read_video(out)
    assert fps == FPS
    assert_in_order(frames, FRAMES)


def test_crf_trades_size_for_fidelity(tmp_path, capsys, monkeypatch, onnx_model, ffmpeg, clip):
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    exact, fine, coarse = tmp_path / "exact.mkv", tmp_path / "fine.mkv", tmp_path / "coarse.mkv"
    assert _run(onnx_model, clip, exact, "--codec", "ffv1") == 0   # --lossless
    assert _run(onnx_model, clip, fine, "--codec", "hevc", "--crf", "10") == 0
    assert _run(onnx_model, clip, coarse, "--codec", "hevc", "--crf", "40") == 0
    assert "CRF 40" in capsys.readouterr().err
    assert "hevc" in _video_line(_listing(ffmpeg, coarse))
    assert fine.stat().st_size > 2 * coarse.stat().st_size
    frames = read_video(exact)[0]
    assert _psnr(read_video(fine)[0], frames) > _psnr(read_video(coarse)[0], frames) + 3


def test_an_hd_h264_output_is_bt709_tagged(tmp_path, monkeypatch, onnx_model, ffmpeg):
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    frames = [np.full((720, 1280, 3), (40, 180, 60), np.uint8) for _ in range(2)]
    out = tmp_path / "hd.mp4"
    run_stream(onnx_model, frames, out, StreamOptions(codec="h264", fps=25))
    video = _video_line(_listing(ffmpeg, out))
    assert "yuv420p(tv, bt709, progressive)" in video, video
    # Read back by the tags (OpenCV's reader honours them): the green patch as written.
    back, _ = read_video(out)
    assert np.abs(back[0][300:400, 500:700].astype(int) - (40, 180, 60)).max() <= 2


def test_prores_is_422_hq_10_bit_for_an_nle(tmp_path, capsys, monkeypatch, onnx_model, ffmpeg,
                                            clip):
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    out = tmp_path / "sharp.mov"
    assert _run(onnx_model, clip, out, "--codec", "prores") == 0
    err = capsys.readouterr().err
    assert "ProRes 422 HQ (prores_ks), 10-bit 4:2:2, BT.601 limited range (tagged)" in err, err
    listing = _listing(ffmpeg, out)
    assert "prores (HQ)" in listing and "yuv422p10le(tv, smpte170m" in listing, listing
    assert f"timecode        : {TIMECODE}" in listing and "Audio:" in listing, listing
    assert_in_order(read_video(out)[0], FRAMES)


@pytest.mark.parametrize("argv, said", [
    (["--codec", "prores", "--out", "sharp.mp4"], r"--codec prores: \.mp4 does not hold "
     r"ProRes.*--out sharp\.mov"),
    (["--codec", "h264", "--out", "frames/"], r"--codec h264 applies to a video --out"),
    (["--codec", "h264", "--out", "-"], r"--codec h264 applies to a video --out.*stdout"),
    (["--crf", "20", "--out", "sharp.mp4"], r"--crf 20 sets the quality of --codec h264"),
    (["--codec", "prores", "--crf", "20", "--out", "sharp.mov"], r"--crf 20 .* takes none"),
    (["--codec", "h264", "--crf", "60", "--out", "sharp.mp4"], r"--crf must be 0 to 51"),
    (["--encoder-preset", "veryfast", "--out", "sharp.mp4"],
     r"--encoder-preset veryfast sets the speed of --codec h264 or hevc"),
    (["--codec", "prores", "--encoder-preset", "fast", "--out", "sharp.mov"],
     r"--encoder-preset fast .* takes none"),
    (["--codec", "h264", "--lossless", "--out", "sharp.mkv"], r"two codecs"),
])
def test_a_codec_that_cannot_be_written_is_refused_before_the_model_loads(
        tmp_path, capsys, monkeypatch, ffmpeg, argv, said):
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    monkeypatch.chdir(tmp_path)
    write_video(tmp_path / "clip.mp4", 2)
    rc = run_cli(["run", "--model", "missing.onnx", "--source", "clip.mp4", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and re.search(said, err), err
    assert "missing.onnx" not in err, err   # said before the model is looked for


def test_no_ffmpeg_names_the_option_and_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SHARPEN_FFMPEG", str(tmp_path / "no-ffmpeg"))
    write_video(tmp_path / "clip.mp4", 2)
    rc = run_cli(["run", "--model", str(tmp_path / "m.onnx"), "--source",
                  str(tmp_path / "clip.mp4"), "--out", str(tmp_path / "sharp.mp4"),
                  "--codec", "h264"])
    err = capsys.readouterr().err
    assert rc == 2 and "--codec h264: H.264 (libx264) is encoded by ffmpeg" in err, err
    assert "install an ffmpeg built with libx264" in err and "SHARPEN_FFMPEG" in err, err


def test_an_ffmpeg_without_the_encoder_is_named(tmp_path, monkeypatch):
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\necho ' V....D mpeg4   MPEG-4 part 2'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("SHARPEN_FFMPEG", str(fake))
    with pytest.raises(SinkError, match=rf"{fake} has no libx265 encoder: install"):
        run_stream(tmp_path / "m.onnx", [np.zeros((8, 8, 3), np.uint8)],
                   tmp_path / "sharp.mkv", StreamOptions(codec="hevc"))


def test_resume_after_an_h264_run_is_refused_naming_the_codec(tmp_path):
    """An H.264 part is not joined by a stream copy to an mp4v one: --resume without the
    --codec of the stopped run says the change, as a change of --lossless is."""
    from runtime import resume
    src, model = tmp_path / "clip.mp4", tmp_path / "m.onnx"
    src.write_bytes(b"x")
    model.write_bytes(b"y")
    before = resume.identity(model, str(src), 10, {"tile": 0}, "video")
    before["options"].pop("codec", None)   # a record from before the option
    then = resume.identity(model, str(src), 10, {"tile": 0, "codec": "h264"}, "video")
    now = resume.identity(model, str(src), 10, {"tile": 0}, "video")
    assert resume.changes(before, now, flags=True) == []
    said = resume.changes(then, now, flags=True)
    assert said == ["--codec was h264, now not given"], said


def test_an_encoder_that_fails_says_why_and_leaves_no_file(tmp_path, onnx_model):
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\ncase \"$*\" in *-encoders*) echo ' V....D libx264  H.264';"
                    " exit 0;; esac\necho 'Error: No space left on device' >&2\nexit 1\n")
    fake.chmod(0o755)
    out = tmp_path / "out" / "sharp.mp4"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHARPEN_FFMPEG", str(fake))
        with pytest.raises(SinkError, match="ffmpeg .*No space left on device"):
            run_stream(onnx_model, [np.zeros((64, 96, 3), np.uint8)] * 40, out,
                       StreamOptions(codec="h264", fps=25))
    assert not out.parent.exists() or not list(out.parent.iterdir())


def _mean_yuv(ffmpeg: str, path: Path) -> np.ndarray:
    """The first frame's mean Y, U and V over its middle, as stored (no conversion)."""
    raw = subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-i", str(path), "-frames:v", "1",
                          "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"], capture_output=True,
                         check=True, timeout=60).stdout
    w, h = 1280, 720
    y = np.frombuffer(raw[:w * h], np.uint8).reshape(h, w)
    u = np.frombuffer(raw[w * h:w * h * 5 // 4], np.uint8).reshape(h // 2, w // 2)
    v = np.frombuffer(raw[w * h * 5 // 4:], np.uint8).reshape(h // 2, w // 2)
    return np.array([y[200:500, 400:800].mean(), u[100:250, 200:400].mean(),
                     v[100:250, 200:400].mean()])


def test_an_untagged_hd_source_plays_in_its_own_colours(tmp_path, monkeypatch, onnx_model,
                                                        ffmpeg):
    """Players take an untagged HD clip as BT.709; OpenCV reads it as BT.601. The output keeps
    the source's YUV (encoded back by BT.601), tagged BT.709 as players took the source: a
    green patch that was Y/U/V 150/60/60 stays so, where a BT.709 encode moved it."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    clip = tmp_path / "untagged.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                    "color=c=0x2cc040:s=1280x720:r=25:d=0.12", "-vf", "format=yuv420p",
                    "-c:v", "libx264", "-qp", "0", str(clip)], check=True, timeout=60)
    assert "bt709" not in _listing(ffmpeg, clip)
    out = tmp_path / "sharp.mp4"
    assert run_cli(["run", "--model", str(onnx_model), "--source", str(clip), "--out", str(out),
                    "--quiet", "--codec", "h264"]) == 0
    assert "yuv420p(tv, bt709, progressive)" in _video_line(_listing(ffmpeg, out))
    assert np.abs(_mean_yuv(ffmpeg, out) - _mean_yuv(ffmpeg, clip)).max() < 1.5, (
        _mean_yuv(ffmpeg, out), _mean_yuv(ffmpeg, clip))


def test_an_ffmpeg_killed_mid_run_is_said_so_not_as_a_negative_exit_code(tmp_path, ffmpeg):
    """The OOM killer picks the encoder: the run stops at its next frame, naming the signal
    (ffmpeg said nothing), where it said 'exit code -9'."""
    import signal

    from runtime.video_codecs import CODECS, FFmpegEncoder, encode_command

    out = tmp_path / "sharp.mkv"
    command = encode_command(ffmpeg, CODECS["h264"], None, (64, 48), 25.0, out,
                             ("smpte170m",) * 3)
    enc = FFmpegEncoder(command, out, flags=True)
    frame = np.zeros((48, 64, 3), np.uint8)
    enc.write(frame)
    enc._proc.send_signal(signal.SIGKILL)
    enc._proc.wait(30)
    with pytest.raises(SinkError) as raised:
        for _ in range(1000):   # past what the pipe's buffer takes
            enc.write(frame)
    enc.release()
    # "exit code -9" the words, not "-9" anywhere: the message names pytest's pytest-9NN folder
    assert "killed by SIGKILL" in str(raised.value), raised
    assert "exit code" not in str(raised.value), raised
    assert enc.failure.startswith("killed by SIGKILL"), enc.failure


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"),
                    reason="systemd's stop, and the child's tie to the run, are Linux's")
def test_a_stop_signal_to_the_encoder_leaves_the_run_to_end_the_video(tmp_path, ffmpeg):
    """`systemctl stop` of a camera's unit sends SIGTERM to each of its processes (systemd's
    KillMode=control-group), the encoder too: ffmpeg ended at once (exit 255), and the run,
    stopping cleanly, said 'ffmpeg could not encode the video (exit code 255); nothing was
    written under that name', the recording lost, exit 2. The run ends the encode itself,
    every frame it wrote in the video."""
    import signal

    from runtime.video_codecs import CODECS, FFmpegEncoder, encode_command

    out = tmp_path / "sharp.mkv"
    command = encode_command(ffmpeg, CODECS["h264"], None, (64, 48), 25.0, out,
                             ("smpte170m",) * 3, preset="ultrafast")
    enc = FFmpegEncoder(command, out, flags=True)
    frame = np.zeros((48, 64, 3), np.uint8)
    for _ in range(5):
        enc.write(frame)
    for stop in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        enc._proc.send_signal(stop)
    with pytest.raises(subprocess.TimeoutExpired):
        enc._proc.wait(1)   # not stopped by them
    for _ in range(5):
        enc.write(frame)
    enc.release()
    assert enc.failure == "" and enc._proc.returncode == 0, enc.failure
    assert len(read_video(out)[0]) == 10


def test_sound_encoded_for_the_container_is_said_so(tmp_path, capsys, monkeypatch, onnx_model,
                                                   ffmpeg):
    """A MOV's PCM sound does not go into an MP4 as it is: it is encoded (AAC), which the
    closing line and --stats say, as they do for mp4v, not 'copied'."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    pictures, clip = tmp_path / "pictures.mp4", tmp_path / "pcm.mov"
    write_video(pictures, FRAMES, FPS)
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y", "-i", str(pictures), "-f", "lavfi",
                    "-i", f"sine=frequency=440:duration={FRAMES / FPS}", "-map", "0:v", "-map",
                    "1:a", "-c:v", "copy", "-c:a", "pcm_s16le", str(clip)],
                   check=True, timeout=60)
    out, stats = tmp_path / "sharp.mp4", tmp_path / "stats.json"
    assert _run(onnx_model, clip, out, "--codec", "h264", "--stats", str(stats)) == 0
    err = capsys.readouterr().err
    assert "CRF 18, preset medium; 1 audio stream encoded for the container" in err, err
    assert "Audio: aac" in _listing(ffmpeg, out)
    import json
    assert json.loads(stats.read_text())["video"]["audio_copied"] is False


def _kill_child_ffmpeg() -> bool:
    """SIGKILL this process's ffmpeg children (the encoder), as the OOM killer would."""
    import os
    import signal

    killed = False
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                if "ffmpeg" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="ignore"):
                    os.kill(int(pid), signal.SIGKILL)
                    killed = True
            except OSError:
                pass
    return killed


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds ffmpeg in /proc")
def test_an_mkv_recording_whose_ffmpeg_was_killed_is_kept_up_to_the_cut(tmp_path, monkeypatch,
                                                                        onnx_model, ffmpeg):
    """A day's .mkv recording, its encoder killed (the OOM killer picks ffmpeg): the run stops,
    and what ffmpeg wrote, which plays up to the cut as a killed run's .mkv does, is kept
    beside the output and said, not deleted with the rest of the day."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    rng = np.random.default_rng(0)
    sent = []

    def frames():
        for i in range(2000):
            if len(sent) == 300:
                assert _kill_child_ffmpeg()
            sent.append(i)
            yield rng.integers(0, 255, (64, 96, 3), np.uint8)

    out = tmp_path / "day.mkv"
    with runtime_warnings() as said, pytest.raises(SinkError, match="killed by SIGKILL"):
        run_stream(onnx_model, frames(), out, StreamOptions(codec="h264", fps=25))
    (kept,) = tmp_path.glob("day.interrupted-*.mkv")
    assert any(f"kept as {kept}" in s and "ffmpeg was killed" in s for s in said), said
    assert len(read_video(kept)[0]) > 50
    assert not out.exists() and not list(tmp_path.glob(".*"))


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds ffmpeg in /proc")
def test_a_quiet_scenes_mkv_recording_cut_by_a_kill_keeps_its_closed_clusters(
        tmp_path, monkeypatch, onnx_model, ffmpeg):
    """A camera on a still scene encodes to a few KB a second, and ffmpeg wrote its .mkv
    through a 256 KB buffer: killed 12 s in (a 320x180 recording; a static one held minutes),
    nothing was on disk, and the next run removed the empty file. Each Matroska cluster
    (about 5 s) is now on disk once closed."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    still = textured_frame(0)
    sent = []

    def frames():
        for i in range(2000):
            if len(sent) == 300:   # 12 s of 25 fps video
                assert _kill_child_ffmpeg()
            sent.append(i)
            yield still

    out = tmp_path / "yard.mkv"
    with runtime_warnings(), pytest.raises(SinkError, match="killed by SIGKILL"):
        run_stream(onnx_model, frames(), out, StreamOptions(codec="h264", fps=25))
    kept = list(tmp_path.glob("yard.interrupted-*.mkv"))
    assert len(kept) == 1, sorted(p.name for p in tmp_path.iterdir())
    assert len(read_video(kept[0])[0]) >= 100


def _x264_settings(path: Path) -> str:
    """The settings x264 wrote into the stream (its SEI: `... subme=7 ... threads=1 ...`)."""
    found = re.search(rb"x264 - core .*? options: ([ -~]*)", path.read_bytes())
    assert found, f"{path}: no x264 settings in the stream"
    return found.group(1).decode()


def test_a_live_h264_recording_takes_a_fast_preset_and_the_runs_threads(
        tmp_path, capsys, monkeypatch, onnx_model, ffmpeg):
    """x264's `medium`, which --threads did not limit, held a one-core live recording of
    1280x720@25 to 6.3 fps (180 frames dropped in 12 s) where mp4v wrote 21.7: a live source
    is encoded at `veryfast`, on the run's --threads, as a camera recorder's ffmpeg is."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    out = tmp_path / "live.mkv"
    assert run_cli(["run", "--model", str(onnx_model), "--source", "synthetic:96x64@25",
                    "--max-frames", "6", "--out", str(out), "--quiet", "--codec", "h264",
                    "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert "H.264 (libx264), 8-bit 4:2:0, BT.601 limited range (tagged), CRF 18, preset " \
           "veryfast" in err, err
    settings = _x264_settings(out)
    assert " subme=2 " in settings and " threads=1 " in settings, settings


def test_hevc_is_held_to_the_runs_threads(tmp_path, capsys, monkeypatch, onnx_model, ffmpeg):
    """ffmpeg's -threads sets x265's frame threads alone: its thread pool (wavefront rows,
    lookahead) still took a thread a core ("Thread pool created using 2 threads" with
    -threads 1 on this 2-core host), so --threads 1 left the model's core shared."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    src, out = tmp_path / "clip.mp4", tmp_path / "sharp.mkv"
    write_video(src, 4, FPS)
    assert run_cli(["run", "--model", str(onnx_model), "--source", str(src), "--out", str(out),
                    "--quiet", "--codec", "hevc", "--threads", "1"]) == 0
    found = re.search(rb"x265 \(build [^)]*\) - [^\0]*? options: ([ -~]*)", out.read_bytes())
    assert found, f"{out}: no x265 settings in the stream"
    settings = f" {found.group(1).decode()} "
    assert " frame-threads=1 " in settings and " numa-pools=1 " in settings, settings


def test_a_files_h264_takes_medium_and_encoder_preset_picks_another(
        tmp_path, capsys, monkeypatch, onnx_model, ffmpeg, clip):
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    medium, quick = tmp_path / "medium.mp4", tmp_path / "quick.mp4"
    assert _run(onnx_model, clip, medium, "--codec", "h264") == 0
    assert "CRF 18, preset medium" in capsys.readouterr().err
    assert " subme=7 " in _x264_settings(medium)
    assert _run(onnx_model, clip, quick, "--codec", "h264", "--encoder-preset",
                "ultrafast") == 0
    assert "CRF 18, preset ultrafast" in capsys.readouterr().err
    assert " subme=0 " in _x264_settings(quick)


def test_a_live_h264_recordings_segments_each_take_its_preset_and_threads(
        tmp_path, capsys, monkeypatch, onnx_model, ffmpeg):
    """Each segment is a VideoFileSink of its own, given the recording's settings: one that
    did not get them was encoded at `medium` on ffmpeg's own threads, the camera's recording
    falling behind from its second file on."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    out = tmp_path / "rec" / "cam.mkv"
    assert run_cli(["run", "--model", str(onnx_model), "--source", "synthetic:96x64@25",
                    "--max-frames", "8", "--out", str(out), "--quiet", "--codec", "h264",
                    "--segment", "0.16", "--threads", "1"]) == 0
    segments = sorted(out.parent.glob("cam-*.mkv"))
    assert len(segments) >= 2, segments
    for seg in segments:
        settings = _x264_settings(seg)
        assert " subme=2 " in settings and " threads=1 " in settings, (seg, settings)


def test_h264_segments_are_each_a_playable_h264_file(tmp_path, capsys, monkeypatch,
                                                      onnx_model, ffmpeg):
    """--codec with --segment: each segment is ffmpeg's H.264, named as mp4v's are."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    src = tmp_path / "clip.mp4"
    write_video(src, 12, FPS)
    out = tmp_path / "rec" / "cam.mkv"
    assert run_cli(["run", "--model", str(onnx_model), "--source", str(src), "--out",
                    str(out), "--quiet", "--codec", "h264", "--segment", "0.24"]) == 0
    err = capsys.readouterr().err
    assert "warning" not in err, err
    segments = sorted(out.parent.glob("cam-*.mkv"))
    assert [p.name[:10] for p in segments] == ["cam-000000", "cam-000001"], segments
    counts = []
    for seg in segments:
        assert "h264" in _video_line(_listing(ffmpeg, seg)), seg
        frames, fps = read_video(seg)
        assert fps == FPS
        counts.append(len(frames))
    assert counts == [6, 6], counts


def test_h264_segments_stats_name_the_matrix_their_files_are_tagged_with(
        tmp_path, capsys, monkeypatch, onnx_model, ffmpeg):
    """--codec with --segment of an HD source: each segment is tagged BT.709, and --stats'
    `video` said bt601, the recording's own (never encoded) colours rather than its
    segments'."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    out, stats = tmp_path / "rec" / "cam.mkv", tmp_path / "cam.json"
    assert run_cli(["run", "--model", str(onnx_model), "--source", "synthetic:1280x720@10",
                    "--no-live", "--max-frames", "4", "--out", str(out), "--quiet",
                    "--codec", "h264", "--encoder-preset", "ultrafast", "--segment", "0.2",
                    "--threads", "1", "--stats", str(stats)]) == 0
    segments = sorted(out.parent.glob("cam-*.mkv"))
    assert len(segments) == 2, segments
    for seg in segments:
        assert "bt709" in _video_line(_listing(ffmpeg, seg)), seg
    import json
    video = json.loads(stats.read_text())["video"]
    assert (video["codec"], video["matrix"], video["tagged"]) == ("h264", "bt709", True), video


@pytest.mark.parametrize("codec", [[], ["--codec", "h264"]])
def test_quality_given_for_a_video_names_the_option_that_sets_a_videos(
        tmp_path, capsys, monkeypatch, onnx_model, codec):
    """An editor's --quality (the image outputs' knob) on a video is told it does not apply,
    and which option does: --crf, with --codec h264 or hevc."""
    source, out = tmp_path / "clip.mp4", tmp_path / "sharp.mp4"
    write_video(source, 3, FPS)
    if codec:
        monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg_or_skip("encode H.264"))
    assert _run(onnx_model, source, out, "--quality", "90", *codec) == 0
    err = capsys.readouterr().err
    assert (f"--quality 90 sets JPEG and WebP images' quality; --out {out} is a video, whose "
            "quality --crf sets (with --codec h264 or hevc)") in err, err


def test_a_10_bit_clip_is_said_to_be_sharpened_at_8_bits(tmp_path, capsys, monkeypatch,
                                                         onnx_model, ffmpeg):
    """A camera's 10-bit SDR clip (a GoPro's, a phone's log) is read by OpenCV at 8 bits a
    colour: an editor writing ProRes (10-bit) is told its frames hold 8 of them; an 8-bit clip
    is told nothing of it."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    pictures = tmp_path / "pictures.mp4"
    write_video(pictures, 3, FPS)
    deep = tmp_path / "deep.mov"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y", "-i", str(pictures), "-pix_fmt",
                    "yuv420p10le", "-c:v", "libx265", "-x265-params", "log-level=error",
                    str(deep)], check=True, timeout=60)
    assert _run(onnx_model, deep, tmp_path / "sharp.mov", "--codec", "prores") == 0
    err = capsys.readouterr().err
    assert (f"{deep} is 10-bit video, which is read at 8 bits a colour: the sharpened video "
            "holds 8 bits of its colours") in err, err
    assert _run(onnx_model, pictures, tmp_path / "sharp8.mov", "--codec", "prores") == 0
    assert "bits a colour" not in capsys.readouterr().err


def _odd_clip(tmp_path, ffmpeg: str, size: str):
    """A 3-frame FFV1 clip scaled to `size` (W:H, odd), which OpenCV's writer cannot store."""
    pictures, odd = tmp_path / "pictures.mp4", tmp_path / "odd.mkv"
    write_video(pictures, 3, FPS)
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y", "-i", str(pictures), "-vf",
                    f"scale={size}", "-c:v", "ffv1", str(odd)], check=True, timeout=60)
    return odd


def test_a_lossless_video_of_an_odd_size_does_not_say_every_pixel_was_kept(
        tmp_path, capsys, monkeypatch, onnx_model, ffmpeg):
    """OpenCV's writer stores even sizes only, FFV1 too: a 321x181 clip's --lossless video
    lost its last column and row, said in a warning, yet the closing line said 'every pixel
    kept'."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    odd = _odd_clip(tmp_path, ffmpeg, "321:181")
    out = tmp_path / "sharp.mkv"
    assert _run(onnx_model, odd, out, "--lossless") == 0
    err = capsys.readouterr().err
    assert read_video(out)[0][0].shape[:2] == (180, 320)
    assert "every pixel kept;" not in err, err
    assert (f"{out}: 321x181 frames are stored as 320x180 (the video codec takes even sizes: "
            "the last column and row are dropped)") in err, err
    assert (f"{out}: FFV1 (lossless), 8-bit BGR 4:4:4, no YUV matrix, every pixel kept but "
            "the last column and row") in err, err


def test_an_odd_size_encoded_by_ffmpeg_names_the_edge_dropped_in_its_stats(
        tmp_path, monkeypatch, onnx_model, ffmpeg):
    """4:2:0 takes even sizes in ffmpeg's encode too: --codec h264's --stats names the column
    and row dropped (video.edge_dropped) as mp4v's and FFV1's do."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    odd = _odd_clip(tmp_path, ffmpeg, "321:180")
    stats = tmp_path / "stats.json"
    assert _run(onnx_model, odd, tmp_path / "sharp.mp4", "--codec", "h264",
                "--stats", str(stats)) == 0
    import json
    assert json.loads(stats.read_text())["video"].get("edge_dropped") == "the last column"


def test_a_10_bit_rgb_clip_is_said_to_be_sharpened_at_8_bits(tmp_path, capsys, monkeypatch,
                                                             onnx_model, ffmpeg):
    """An intermediate of 10-bit RGB planes (FFV1, FFmpeg's gbrp10) is read at 8 bits as a
    10-bit YUV clip is, and said so."""
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg)
    pictures, deep = tmp_path / "pictures.mp4", tmp_path / "deep.mkv"
    write_video(pictures, 3, FPS)
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y", "-i", str(pictures), "-pix_fmt",
                    "gbrp10le", "-c:v", "ffv1", str(deep)], check=True, timeout=60)
    assert _run(onnx_model, deep, tmp_path / "sharp.mkv", "--lossless") == 0
    err = capsys.readouterr().err
    assert f"{deep} is 10-bit video, which is read at 8 bits a colour" in err, err
