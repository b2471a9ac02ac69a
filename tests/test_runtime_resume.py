"""`sharpen run --resume`: a video file's run stopped part-way (Ctrl-C, SIGTERM) goes on from
the frame it got to and ends with the output an uninterrupted run gives; what would make other
frames (another model, source or option) is refused, naming it."""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime_fixtures import cli_module, find_ffmpeg, textured_frame, unsharp_kernel

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

N, W, H, FPS = 90, 320, 240, 25.0


def slow_model(path: Path, depth: int = 60) -> Path:
    """The unsharp-mask model behind `depth` identity convolutions: the same frames as the
    fixtures' model, at some 30 ms a frame, so that a run can be stopped part-way."""
    import onnx
    from onnx import helper, numpy_helper

    ident = np.zeros((3, 1, 3, 3), np.float32)
    ident[:, 0, 1, 1] = 1
    inits = [numpy_helper.from_array(ident, "i"),
             numpy_helper.from_array(np.stack([unsharp_kernel()[None]] * 3), "w")]
    nodes, x = [], "input"
    for j in range(depth):
        nodes.append(helper.make_node("Conv", [x, "i"], [f"c{j}"], group=3, pads=[1] * 4,
                                      kernel_shape=[3, 3]))
        x = f"c{j}"
    nodes.append(helper.make_node("Conv", [x, "w"], ["output"], group=3, pads=[1] * 4,
                                  kernel_shape=[3, 3]))
    dims = ["batch", 3, "height", "width"]
    graph = helper.make_graph(nodes, "slow", [helper.make_tensor_value_info("input", 1, dims)],
                              [helper.make_tensor_value_info("output", 1, dims)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"multiple": "8"})
    onnx.save(model, str(path))
    return path


def clip(path: Path, n: int = N) -> Path:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (W, H))
    for i in range(n):
        vw.write(textured_frame(i % 16, H, W, seed=i - i % 16))
    vw.release()
    return path


def sharpen(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", cli_module(), "run", *argv, "--threads", "1",
                           "--quiet"], cwd=tempfile.gettempdir(), capture_output=True,
                          text=True, timeout=120, env=env)


# The live line's frame count, dated and after the source's name where stderr is a log (as
# here, a pipe).
LIVE_COUNT = r"^(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d .*?: )?\s*(\d+)/"


def stopped(argv: list[str], after: int, signum: int | None, env: dict | None = None,
            then=None) -> tuple[int, str]:
    """Run `sharpen run`, and call `then` (if any) and send `signum` (if any) once its live
    line says `after` frames are written; (exit code, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", cli_module(), "run", *argv, "--threads",
                             "1", "--report-interval", "0.05"], cwd=tempfile.gettempdir(),
                            stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    killer = threading.Timer(120, proc.kill)
    killer.start()
    try:
        for line in proc.stderr:
            lines.append(line)
            m = re.match(LIVE_COUNT, line)
            if m and int(m.group(1)) >= after:
                if then is not None:
                    then()
                if signum is not None:
                    proc.send_signal(signum)
                break
        lines.append(proc.stderr.read())
        proc.wait()
    finally:
        killer.cancel()
    return proc.returncode, "".join(lines)


def frames_and_times(path: Path) -> tuple[list[np.ndarray], list[float], float]:
    cap = cv2.VideoCapture(str(path))
    frames, times = [], []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
        times.append(round(cap.get(cv2.CAP_PROP_POS_MSEC), 3))
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return frames, times, fps


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """The model, the clip, and what uninterrupted runs make of it: a video, and the
    sharpened frames themselves (PNG, lossless)."""
    d = tmp_path_factory.mktemp("resume")
    made = {"model": slow_model(d / "slow.onnx"), "clip": clip(d / "clip.mp4")}
    for name in ("full.mp4", "truth"):
        r = sharpen("--model", str(made["model"]), "--source", str(made["clip"]), "--out",
                    str(d / name))
        assert r.returncode == 0, r.stderr
        made[name] = d / name
    assert not list(d.glob(".*.resume.json")), "a finished run leaves no resume record"
    return made


def _env(ffmpeg: str | None) -> dict:
    env = dict(os.environ)
    env["SHARPEN_FFMPEG"] = ffmpeg or "/no/such/ffmpeg"
    return env


@pytest.mark.parametrize("signum, join", [(signal.SIGINT, "ffmpeg"),
                                          (signal.SIGTERM, "encode")])
def test_a_stopped_video_run_resumes_to_an_uninterrupted_runs_frames(made, tmp_path, signum,
                                                                     join):
    ffmpeg = find_ffmpeg() if join == "ffmpeg" else None
    if join == "ffmpeg" and ffmpeg is None:
        pytest.skip("no ffmpeg to join with")
    env = _env(ffmpeg)
    out = tmp_path / "sharp.mp4"
    argv = ["--model", str(made["model"]), "--source", str(made["clip"]), "--out", str(out)]
    code, err = stopped(argv, 15, signum, env)
    assert code == 128 + signum, err
    first, _, _ = frames_and_times(out)
    k = len(first)
    assert 15 <= k < N, err
    assert (f"{out} holds {k} of {N} frames only (closed cleanly); run the same command with "
            "--resume to go on from there") in err, err

    r = sharpen(*argv, "--resume", env=env)
    assert r.returncode == 0, r.stderr
    assert f"note: resuming at frame {k} of {made['clip']} (seek)" in r.stderr, r.stderr
    assert f"done: {N - k} frames" in r.stderr, r.stderr
    assert ("encoded a second time" in r.stderr) == (join == "encode"), r.stderr
    assert ("SHARPEN_FFMPEG=/no/such/ffmpeg is not an executable file" in r.stderr) == (
        join == "encode"), r.stderr
    assert not (tmp_path / f".{out.name}.resume.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]

    got, times, fps = frames_and_times(out)
    full, full_times, full_fps = frames_and_times(made["full.mp4"])
    assert len(got) == len(full) == N and times == full_times and fps == full_fps
    if join == "ffmpeg":   # a stream copy: the stopped run's frames as they were encoded
        assert all(np.array_equal(a, b) for a, b in zip(got, first))
    truth = [cv2.imread(str(made["truth"] / f"frame_{i:06d}.png")) for i in range(N)]
    # Each frame is the sharpened source frame of its place (the clip's frames differ by far
    # more than the codec's error), and as close to it as the uninterrupted run's.
    for i, f in enumerate(got):
        errs = [cv2.norm(f, t, cv2.NORM_L1) for t in truth[max(0, i - 1):i + 2]]
        assert int(np.argmin(errs)) == min(i, 1), f"frame {i} is not in its place"
    psnr = [cv2.PSNR(f, t) for f, t in zip(got, truth)]
    psnr_full = [cv2.PSNR(f, t) for f, t in zip(full, truth)]
    assert np.mean(psnr) > np.mean(psnr_full) - 1.5, (np.mean(psnr), np.mean(psnr_full))


def test_resume_after_a_killed_video_run_says_it_was_killed_not_finished(made, tmp_path):
    """A video run killed outright (SIGKILL, a power cut) leaves its frames in a file never
    closed, and no record: --resume said "the run finished, or never started", with the
    killed run's video right there. It says the run was killed, what it left, and what the
    run without --resume does with it."""
    out = tmp_path / "sharp.mp4"
    argv = ["--model", str(made["model"]), "--source", str(made["clip"]), "--out", str(out)]
    code, err = stopped(argv, 15, signal.SIGKILL)
    assert code == -signal.SIGKILL, err
    left = list(tmp_path.glob(".sharp.*.partial.mp4"))
    assert len(left) == 1 and not out.exists()
    r = sharpen(*argv, "--resume")
    assert r.returncode == 2, r.stderr
    assert "finished, or never started" not in r.stderr, r.stderr
    assert (f"the run into --out {out} was killed (SIGKILL, a power cut) before it closed the "
            f"video, which is what --resume goes on with: its frames are in {left[0].name}"
            in r.stderr), r.stderr
    assert "run without --resume to start from the first frame" in r.stderr, r.stderr
    assert left[0].exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL])
def test_an_image_folder_resumes_past_the_frames_written(made, tmp_path, signum):
    """A folder's images are whole once there (each renamed into place), so a run killed
    outright goes on after them too."""
    out = tmp_path / "frames"
    argv = ["--model", str(made["model"]), "--source", str(made["clip"]), "--out", str(out)]
    code, err = stopped(argv, 15, signum)
    assert code == (130 if signum == signal.SIGINT else -signal.SIGKILL), err
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("frame_*")}
    k = len(before)
    assert sorted(before) == [f"frame_{i:06d}.png" for i in range(k)] and 15 <= k < N
    r = sharpen(*argv, "--resume")
    assert r.returncode == 0, r.stderr
    assert f"done: {N - k} frames" in r.stderr, r.stderr
    # Sought where the record names the frame before (a stop's), else read up to it: a
    # killed run's record is its first image's.
    how = "seek" if signum == signal.SIGINT else "read from the start"
    assert f"resuming at frame {k} of {made['clip']} ({how})" in r.stderr, r.stderr
    for p in made["truth"].iterdir():
        assert (out / p.name).read_bytes() == p.read_bytes(), p.name
    assert len(list(out.glob("frame_*"))) == N
    assert all((out / n).stat().st_mtime_ns == t for n, t in before.items()), "rewritten"


@contextlib.contextmanager
def _takes_no_file(folder: Path):
    """`folder` made so that no file can be created in it, its subfolders left as they are: a
    read-only container root's stand-in (not writable by this user; root: immutable)."""
    if os.geteuid() != 0:
        os.chmod(folder, 0o555)
        try:
            yield
        finally:
            os.chmod(folder, 0o755)
        return
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("root here cannot make a folder immutable (chattr +i)")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_an_image_folder_whose_parent_takes_no_file_runs_and_resumes(made, tmp_path):
    """`--out /out`, a container's volume as the image folder, in a root that is read-only or
    not the user's: the record saved with the first image went beside the folder, and the run
    ended there ("[Errno 30] Read-only file system: '/..out.resume.json...'", exit 1), where
    its lock had moved inside the folder. The record goes inside it too, and --resume finds
    it there."""
    out = tmp_path / "root" / "out"
    out.mkdir(parents=True)
    argv = ["--model", str(made["model"]), "--source", str(made["clip"]), "--out", str(out)]
    with _takes_no_file(out.parent):
        code, err = stopped(argv, 15, signal.SIGINT)
        assert code == 130, err
        k = len(list(out.glob("frame_*")))
        assert 15 <= k < N and (out / ".sharpen-run.resume.json").is_file(), (k, err)
        r = sharpen(*argv, "--resume")
    assert r.returncode == 0, r.stderr
    assert f"resuming at frame {k} of {made['clip']} (seek)" in r.stderr, r.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"frame_{i:06d}.png" for i in range(N)]
    assert os.listdir(out.parent) == ["out"]


def test_a_changed_model_source_or_option_is_refused_naming_it(made, tmp_path):
    out = tmp_path / "sharp.mp4"
    clip_copy = tmp_path / "clip.mp4"
    clip_copy.write_bytes(made["clip"].read_bytes())
    argv = ["--model", str(made["model"]), "--source", str(clip_copy), "--out", str(out)]
    code, err = stopped(argv, 10, signal.SIGINT, _env(None))
    assert code == 130, err
    kept = out.read_bytes()
    other = slow_model(tmp_path / "slow.onnx", depth=59)   # another file: other contents
    for given, said in (
            (["--model", str(other)], "the model ("),
            (["--tile", "64"], "--tile was 0, now 64"),
            (["--fps", "30"], "--fps was 0.0, now 30.0")):
        args = list(argv)
        if given[0] == "--model":
            args[1] = given[1]
        else:
            args += given
        r = sharpen(*args, "--resume")
        assert r.returncode == 2 and said in r.stderr, r.stderr
        assert "run without --resume to start from the first frame" in r.stderr, r.stderr
    os.utime(clip_copy, ns=(0, 0))
    r = sharpen(*argv, "--resume")
    assert r.returncode == 2 and "the source's modification time was" in r.stderr, r.stderr
    assert out.read_bytes() == kept


def test_a_variable_rate_clips_run_stopped_at_another_video_rate_is_not_resumed(made,
                                                                                 tmp_path):
    """A phone's clip, 1.2 s at 50 fps then 2.4 s at 12.5 (25 on average): its video takes
    the peak, 50. A run stopped when the video took another rate (a record without one:
    before the peak was taken, its average) goes on at the same rate or is refused, naming
    the rates: joined, the earlier part's frames, timed at 25, were played as 50 fps ones and
    the part after overlapped them, its sound out of step."""
    from runtime_fixtures import with_stts

    even = made["clip"]
    data = even.read_bytes()
    delta = int.from_bytes(data[data.find(b"stts") + 16:data.find(b"stts") + 20], "big")
    phone = with_stts(even, [(60, delta // 2), (30, 2 * delta)], tmp_path / "p.mp4")
    out = tmp_path / "sharp.mp4"
    argv = ["--model", str(made["model"]), "--source", str(phone), "--out", str(out)]
    code, err = stopped(argv, 10, signal.SIGINT, _env(None))
    assert code == 130, err
    kept = out.read_bytes()
    record_file = tmp_path / ".sharp.mp4.resume.json"
    saved = record_file.read_text()
    record = json.loads(saved)
    assert record["source"]["fps"] == pytest.approx(2 * FPS), record["source"]
    del record["source"]["fps"]
    record_file.write_text(json.dumps(record))
    r = sharpen(*argv, "--resume")
    assert r.returncode == 2 and "the video's rate was 25 fps, now 50 fps" in r.stderr, \
        r.stderr
    assert out.read_bytes() == kept
    record_file.write_text(saved)
    r = sharpen(*argv, "--resume")
    whole = tmp_path / "whole.mp4"
    assert r.returncode == 0 and sharpen(*argv[:-1], str(whole)).returncode == 0, r.stderr
    resumed, times, fps = frames_and_times(out)
    assert fps == pytest.approx(2 * FPS) and len(resumed) == len(frames_and_times(whole)[0])


def test_resume_without_a_stopped_run_or_from_a_camera_is_refused(made, tmp_path):
    out = tmp_path / "sharp.mp4"
    r = sharpen("--model", str(made["model"]), "--source", str(made["clip"]), "--out",
                str(out), "--resume")
    assert r.returncode == 2, r.stderr
    assert f"--resume: no stopped run into --out {out} to go on with" in r.stderr, r.stderr
    r = sharpen("--model", str(made["model"]), "--source", "synthetic:64x48", "--out",
                str(out), "--max-frames", "2", "--resume")
    assert r.returncode == 2, r.stderr
    assert "cannot be resumed (a camera's or stream's frames are not given again)" in r.stderr
    assert not out.exists()
    r = sharpen("--model", str(made["model"]), "--source", str(made["clip"]), "--resume")
    assert r.returncode == 2, r.stderr
    assert "--resume needs --out naming the stopped run's output" in r.stderr, r.stderr


def test_an_evenly_timed_clips_record_from_before_the_rate_and_quality_were_kept_resumes(
        made, tmp_path):
    """An upgrade between a stop and its --resume: the record an earlier version kept has no
    video rate (`source.fps`) and no --quality. An evenly timed clip's video took its own rate
    then as now, and an image folder OpenCV's JPEG default, so both resume, not refused."""
    for name in ("sharp.mp4", "frames"):
        out = tmp_path / name
        argv = ["--model", str(made["model"]), "--source", str(made["clip"]), "--out", str(out)]
        code, err = stopped(argv, 10, signal.SIGINT, _env(None))
        assert code == 130, err
        from runtime.resume import record_path
        record_file = record_path(out)
        record = json.loads(record_file.read_text())
        record["source"].pop("fps", None)
        record["source"].pop("average_fps", None)
        del record["options"]["quality"]
        record["options"]["tile"] = 0   # whole, before frames above a size were tiled
        record_file.write_text(json.dumps(record))
        r = sharpen(*argv, "--resume")
        assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("ext, how", [(".mp4", "seek"), (".ts", "read")])
def test_a_seek_is_checked_and_frames_read_and_dropped_where_it_lands_elsewhere(tmp_path, ext,
                                                                               how):
    """OpenCV's seek to frame 1 of an MPEG-TS clip gives another frame while reporting
    position 1; frame k-1's digest tells, and the frames are then read from the start."""
    from runtime.resume import frame_digest
    from runtime.sources import open_source

    video = tmp_path / f"in{ext}"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*("MPG2" if ext == ".ts"
                                                              else "mp4v")), 10, (96, 64))
    for i in range(12):
        vw.write(textured_frame(i))
    vw.release()
    with open_source(str(video)) as src:
        every = [f.image for f in src.frames(threading.Event())]
    with open_source(str(video)) as src:
        read: list[int] = []   # the service's start timeout is extended as frames are read
        assert src.start_at(2, frame_digest(every[1]), progress=lambda: read.append(1)) == how
        assert len(read) == (2 if how == "read" else 0)
        rest = list(src.frames(threading.Event()))
    assert [f.index for f in rest] == list(range(2, len(every)))
    assert all(np.array_equal(f.image, every[f.index]) for f in rest)
    with open_source(str(video)) as src:
        with pytest.raises(Exception, match="not the frame the stopped run read"):
            src.start_at(2, frame_digest(every[5]))


def test_the_record_beside_the_output_says_how_far_the_run_got(made, tmp_path):
    out = tmp_path / "sharp.mp4"
    code, err = stopped(["--model", str(made["model"]), "--source", str(made["clip"]),
                         "--out", str(out)], 5, signal.SIGINT, _env(None))
    assert code == 130, err
    record = json.loads((tmp_path / ".sharp.mp4.resume.json").read_text())
    assert record["source"]["frame_count"] == N and record["next"] == len(
        frames_and_times(out)[0])
    assert record["model"]["sha256"] and record["options"]["tile"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".sharp.mp4.resume.json",
                                                          "sharp.mp4"]


def _with_sound(clip: Path, folder: Path, purpose: str,
                timecode: tuple[str, ...] = ()) -> tuple[str, Path]:
    """An ffmpeg, and folder/loud.mp4: `clip` with a 440 Hz tone in AAC over its whole length
    (a phone's clip has sound); the test is skipped, saying `purpose`, without an ffmpeg.
    `timecode`: ffmpeg's options that give it one (a camera's clip has)."""
    ffmpeg = find_ffmpeg()
    if ffmpeg is None:
        pytest.skip(f"no ffmpeg to {purpose}")
    loud = folder / "loud.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-i", str(clip), "-f", "lavfi",
                    "-i", f"sine=frequency=440:duration={N / FPS}", "-map", "0:v", "-map",
                    "1:a", "-c:v", "copy", "-c:a", "aac", *timecode, str(loud)], check=True,
                   timeout=60)
    return ffmpeg, loud


def test_a_resumed_video_gets_the_sound_of_all_its_frames(made, tmp_path):
    """The stopped run's video had the sound of its own frames copied in; the joined one has
    the clip's over its whole length, as an uninterrupted run's."""
    ffmpeg, loud = _with_sound(made["clip"], tmp_path, "make a clip with sound")
    out = tmp_path / "sharp.mp4"
    argv = ["--model", str(made["model"]), "--source", str(loud), "--out", str(out)]
    code, err = stopped(argv, 15, signal.SIGINT, _env(ffmpeg))
    assert code == 130, err
    r = sharpen(*argv, "--resume", env=_env(ffmpeg))
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    assert len(frames_and_times(out)[0]) == N
    done = subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-i", str(out), "-map", "0:a:0",
                           "-f", "s16le", "-ac", "1", "-ar", "8000", "-"], capture_output=True,
                          timeout=60, check=True)
    assert abs(len(done.stdout) / 2 / 8000 - N / FPS) < 0.1


@pytest.mark.parametrize("ext", [".mp4", ".mov"])
def test_a_stopped_h264_run_resumes_as_the_closing_line_says(made, tmp_path, ext):
    """`--codec h264`'s stopped run says "run the same command with --resume": that command
    joins this run's H.264 to it, every frame in its place, the sound over all of them, and
    the pictures as far from it as an uninterrupted run's (the join timed the parts from the
    earlier one's sound, AAC's encoder delay before its B-framed first picture: every picture
    came 23 ms late where the clip had a timecode, as a camera's has)."""
    ffmpeg, loud = _with_sound(made["clip"], tmp_path, "encode H.264",
                               ("-timecode", "01:00:00:00"))
    out, full = tmp_path / f"sharp{ext}", tmp_path / f"full{ext}"
    argv = ["--model", str(made["model"]), "--source", str(loud), "--out", str(out),
            "--codec", "h264"]
    r = sharpen(*argv[:-3], str(full), *argv[-2:], env=_env(ffmpeg))
    assert r.returncode == 0, r.stderr
    code, err = stopped(argv, 15, signal.SIGINT, _env(ffmpeg))
    assert code == 130 and "run the same command with --resume" in err, err
    r = sharpen(*argv, "--resume", env=_env(ffmpeg))
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    assert "H.264 (libx264)" in r.stderr and "1 audio stream copied" in r.stderr, r.stderr
    got, _, _ = frames_and_times(out)
    assert len(got) == N
    truth = [cv2.imread(str(made["truth"] / f"frame_{i:06d}.png")) for i in range(N)]
    for i, f in enumerate(got):
        errs = [cv2.norm(f, t, cv2.NORM_L1) for t in truth[max(0, i - 1):i + 2]]
        assert int(np.argmin(errs)) == min(i, 1), f"frame {i} is not in its place"
    done = subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-i", str(out), "-map", "0:a:0",
                           "-f", "s16le", "-ac", "1", "-ar", "8000", "-"], capture_output=True,
                          timeout=60, check=True)
    assert abs(len(done.stdout) / 2 / 8000 - N / FPS) < 0.1
    assert _sound_to_pictures(ffmpeg, out) == _sound_to_pictures(ffmpeg, full)


def test_a_preset_change_on_resume_names_the_preset_each_run_encodes_at(tmp_path):
    """A stopped run given --encoder-preset medium (recorded as none, as a record from before
    the option) resumed with fast was told `--encoder-preset was not given`: it was, and
    either way its half was encoded at medium, as --crf's message says CRF 18 for h264's
    default. An mp4v run's record has no preset to name."""
    from runtime import resume as resume_mod

    model, src = tmp_path / "m.onnx", tmp_path / "clip.mp4"
    model.write_bytes(b"model")
    src.write_bytes(b"clip")

    def ident(**options) -> dict:
        return resume_mod.identity(model, str(src), 10, options, "video", 25.0)

    h264 = {"codec": "h264", "crf": 18}
    assert resume_mod.changes(ident(**h264), ident(**h264, encoder_preset="fast"),
                              flags=True) == ["--encoder-preset was medium, now fast"]
    assert resume_mod.changes(ident(**h264, encoder_preset="fast"), ident(**h264),
                              flags=True) == ["--encoder-preset was fast, now medium"]
    said = resume_mod.changes(ident(), ident(**h264, encoder_preset="fast"), flags=True)
    assert "--encoder-preset was not given, now fast" in said, said


def test_a_stopped_h264_run_resumed_at_another_crf_is_refused_naming_it(made, tmp_path):
    """Half a video at CRF 18 and half at CRF 30 joined, its closing line saying CRF 30 for
    all of it: --crf changes the frames written, as --quality does, and is named so."""
    ffmpeg = find_ffmpeg()
    if ffmpeg is None:
        pytest.skip("no ffmpeg to encode H.264")
    out = tmp_path / "sharp.mkv"
    argv = ["--model", str(made["model"]), "--source", str(made["clip"]), "--out", str(out),
            "--codec", "h264"]
    code, err = stopped(argv, 10, signal.SIGINT, _env(ffmpeg))
    assert code == 130 and "run the same command with --resume" in err, err
    before = out.stat().st_size
    r = sharpen(*argv, "--resume", "--crf", "30", env=_env(ffmpeg))
    assert r.returncode == 2 and "--crf was 18, now 30" in r.stderr, r.stderr
    assert out.stat().st_size == before
    # Another x264 preset is another stream (ultrafast's has no CABAC): not joined either;
    # medium is what the stopped run, given none, was encoded at.
    r = sharpen(*argv, "--resume", "--encoder-preset", "ultrafast", env=_env(ffmpeg))
    assert r.returncode == 2 and "--encoder-preset was medium, now ultrafast" in r.stderr, \
        r.stderr
    assert out.stat().st_size == before
    r = sharpen(*argv, "--resume", "--crf", "18", "--encoder-preset", "medium",
                env=_env(ffmpeg))   # h264's defaults for a file
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".avi", ".ts"])
def test_a_resumed_clip_with_sound_keeps_its_frames_times(made, tmp_path, ext):
    """A phone's clip has sound. The stopped run's video got the sound of its frames, whose
    last AAC packet (1024 samples) ends past its last frame, and ffmpeg's join placed this
    run's frames after the longer of the two: every later frame came that late (19 ms in MP4,
    42 ms in MKV), and in MKV the last frame then fell past the sound's length and was cut.
    An AVI, which times a frame by its place, had its frames but the first moved a place on
    by that sound's copy (its encoder delay, before 0, moved every stream later): joined, and
    moved again by the whole's, the last frame was cut. An MPEG-TS keeps the sound's first
    AAC packet (its encoder delay, 23 ms before the first frame), and ffmpeg's join times a
    file from its earliest stream: given the frames' length alone, this run's came 23 ms
    early. A camera's clip has a timecode too, which the stopped run's video got (a timecode
    track at 0): the join kept the frames 23 ms after it, behind their sound."""
    ffmpeg, loud = _with_sound(made["clip"], tmp_path, "make a clip with sound and join with",
                               ("-timecode", "01:00:00:00"))
    full, out = tmp_path / f"full{ext}", tmp_path / f"sharp{ext}"
    r = sharpen("--model", str(made["model"]), "--source", str(loud), "--out", str(full),
                env=_env(ffmpeg))
    assert r.returncode == 0, r.stderr
    argv = ["--model", str(made["model"]), "--source", str(loud), "--out", str(out)]
    code, err = stopped(argv, 15, signal.SIGINT, _env(ffmpeg))
    assert code == 130, err
    k = len(frames_and_times(out)[0])
    r = sharpen(*argv, "--resume", env=_env(ffmpeg))
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    got, times, _ = frames_and_times(out)
    want, want_times, _ = frames_and_times(full)
    assert len(got) == len(want) == N, (k, len(got))
    assert times == want_times, (k, [(i, a, b) for i, (a, b) in
                                     enumerate(zip(times, want_times)) if a != b][:3])
    # OpenCV's times count from the first frame; a player's from the file's start, against
    # the sound: the join started the pictures 23 ms (AAC's encoder delay) after it in MP4.
    assert _sound_to_pictures(ffmpeg, out) == _sound_to_pictures(ffmpeg, full)


def _sound_to_pictures(ffmpeg: str, path: Path) -> float:
    """Milliseconds from the first sound packet to the first frame, by their own times."""
    def first(stream: str) -> float:
        done = subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-copyts", "-i", str(path),
                               "-map", f"0:{stream}", "-c", "copy", "-f", "framecrc", "-"],
                              capture_output=True, text=True, timeout=60, check=True)
        num, den = re.search(r"^#tb 0: (\d+)/(\d+)$", done.stdout, re.M).groups()
        pts = [int(line.split(",")[2]) for line in done.stdout.splitlines()
               if line and not line.startswith("#")]
        return min(pts) * int(num) / int(den)

    return round(1000 * (first("v:0") - first("a:0")), 1)


def test_a_run_whose_video_was_discarded_leaves_no_record_to_resume_the_older_video(
        made, tmp_path, capsys, monkeypatch):
    """A run that wrote frames but whose video did not take the name (a full disk) leaves the
    earlier run's video there: a record of this run's progress would have --resume join that
    whole video to the frames after this run's last (a video of nearly twice the length)."""
    import runtime.video_sink as video_sink
    from runtime_fixtures import run_cli

    out = tmp_path / "sharp.mp4"
    argv = ["run", "--model", str(made["model"]), "--source", str(made["clip"]), "--out",
            str(out), "--threads", "1", "--quiet"]
    assert run_cli(argv) == 0
    kept = out.read_bytes()
    monkeypatch.setattr(video_sink, "DISK_CHECK_EVERY", 5)
    monkeypatch.setattr(video_sink, "free_bytes", lambda folder: 0)   # the statvfs answer
    assert run_cli(argv) == 2
    err = capsys.readouterr().err
    assert "the disk is full" in err and "written before the error" not in err, err
    assert f"{out} is as it was before this run, which wrote no video there" in err, err
    assert out.read_bytes() == kept and not (tmp_path / ".sharp.mp4.resume.json").exists()
    monkeypatch.undo()
    assert run_cli([*argv, "--resume"]) == 2
    assert "no stopped run into --out" in capsys.readouterr().err
    assert out.read_bytes() == kept


def test_a_video_replaced_while_a_resumed_run_goes_on_is_not_joined_to(made, tmp_path):
    """Another run into the same output that finished first (a plain rerun in a second
    terminal) replaced the stopped run's video: joining that whole video to this run's frames
    made one of some 150 frames; it is left as it is, and no record claims it."""
    ffmpeg = find_ffmpeg()
    if ffmpeg is None:
        pytest.skip("no ffmpeg to join with")
    env = _env(ffmpeg)
    out = tmp_path / "sharp.mp4"
    argv = ["--model", str(made["model"]), "--source", str(made["clip"]), "--out", str(out)]
    code, err = stopped(argv, 15, signal.SIGINT, env)
    assert code == 130, err
    other = tmp_path / "other.mp4"
    other.write_bytes(made["full.mp4"].read_bytes())

    def replace() -> None:
        os.replace(other, out)   # what the other run's close does

    code, err = stopped([*argv, "--resume"], 45, None, env, replace)
    assert code == 2, err
    assert f"{out} was replaced while this run went on" in err, err
    assert out.read_bytes() == made["full.mp4"].read_bytes()
    # The stopped run's record is left (the other run's, finished, removes it): it no longer
    # matches the video there.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".sharp.mp4.resume.json", out.name]
    r = sharpen(*argv, "--resume", env=env)
    assert r.returncode == 2 and "it was changed since the run stopped" in r.stderr, r.stderr
    assert out.read_bytes() == made["full.mp4"].read_bytes()


def test_a_resumed_runs_progress_counts_the_frames_it_has_to_write(made, tmp_path):
    """Its last live line read 74/90 where the run wrote the 74 frames left of 90."""
    out = tmp_path / "frames"
    argv = ["--model", str(made["model"]), "--source", str(made["clip"]), "--out", str(out)]
    code, err = stopped(argv, 15, signal.SIGINT)
    assert code == 130, err
    k = len(list(out.glob("frame_*")))
    code, err = stopped([*argv, "--resume"], N + 1, None)   # never reached: runs to its end
    assert code == 0, err
    counts = re.findall(LIVE_COUNT + r"(\d+) frames", err, re.M)
    assert counts and {int(t) for _, t in counts} == {N - k}, err
    assert counts[-1] == (str(N - k), str(N - k)), err


def test_a_run_that_is_neither_stopped_nor_resumed_reads_no_model_for_its_hash(
        made, tmp_path, monkeypatch):
    """The model's hash, taken at every video run's start, cost 0.3 s per 100 MB of model
    (a Restormer teacher's ONNX) where only a stopped run's record, or --resume, needs it."""
    import runtime.resume as resume
    from runtime_fixtures import run_cli

    hashed = []
    real = resume.file_sha256
    monkeypatch.setattr(resume, "file_sha256", lambda p: hashed.append(p) or real(p))
    for out in ("sharp.mp4", "frames"):
        assert run_cli(["run", "--model", str(made["model"]), "--source", str(made["clip"]),
                        "--out", str(tmp_path / out), "--max-frames", "3", "--quiet"]) == 0
    assert hashed == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL])
def test_a_folder_resumes_after_this_runs_images_not_an_earlier_runs(made, tmp_path, signum):
    """A folder an earlier, complete run filled, written into again and stopped: counting
    every image in a row, --resume said it held every frame already (exit 2), though all
    but the first few were the earlier run's (another model's, say)."""
    import shutil

    out = tmp_path / "frames"
    shutil.copytree(made["truth"], out)
    for p in out.iterdir():
        os.utime(p, ns=(10**18, 10**18))   # an earlier run's, in 2001
    argv = ["--model", str(made["model"]), "--source", str(made["clip"]), "--out", str(out)]
    code, err = stopped(argv, 15, signum)
    assert code == (130 if signum == signal.SIGINT else -signal.SIGKILL), err
    # Frames only: a SIGKILL may leave the image it was writing under a hidden name
    frames = [p for p in out.iterdir() if not p.name.startswith(".")]
    k = sum(p.stat().st_mtime_ns > 10**18 for p in frames)
    assert 15 <= k < N
    r = sharpen(*argv, "--resume")
    assert r.returncode == 0, r.stderr
    assert f"done: {N - k} frames" in r.stderr, r.stderr
    assert all(p.stat().st_mtime_ns > 10**18 for p in out.iterdir())
    for p in made["truth"].iterdir():
        assert (out / p.name).read_bytes() == p.read_bytes(), p.name


def test_a_ctrl_c_while_the_parts_are_joined_does_not_stop_the_join(made, tmp_path):
    """A terminal's Ctrl-C goes to the whole process group: ffmpeg, run in it, quit the join at
    the Ctrl-C the run takes as "finish what you are doing", and the resumed run's frames were
    lost with it (the sound's copy runs in a session of its own for this reason)."""
    ffmpeg = find_ffmpeg()
    if ffmpeg is None:
        pytest.skip("no ffmpeg to join with")
    mark = tmp_path / "joining"
    slow = tmp_path / "ffmpeg"   # ffmpeg, but a join waits a moment: time to press Ctrl-C
    slow.write_text(f'#!/bin/sh\ncase "$*" in *concat*) touch "{mark}"; sleep 2;; esac\n'
                    f'exec "{ffmpeg}" "$@"\n')
    slow.chmod(0o755)
    env = _env(str(slow))
    out = tmp_path / "sharp.mp4"
    argv = ["--model", str(made["model"]), "--source", str(made["clip"]), "--out", str(out)]
    code, err = stopped(argv, 15, signal.SIGINT, env)
    assert code == 130, err
    proc = subprocess.Popen([sys.executable, "-m", cli_module(), "run", *argv, "--resume",
                             "--threads", "1", "--quiet"], cwd=tempfile.gettempdir(),
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        for _ in range(1200):
            if mark.exists() or proc.poll() is not None:
                break
            threading.Event().wait(0.05)
        assert mark.exists(), proc.stderr.read()
        os.killpg(proc.pid, signal.SIGINT)   # what the terminal does
        err = proc.communicate(timeout=60)[1]
    finally:
        proc.kill()
    assert "could not join" not in err, err
    assert len(frames_and_times(out)[0]) == N, err


def test_a_resumed_run_stopped_before_its_first_frame_says_what_the_output_still_holds():
    """'nothing written to OUT' read as an empty output, where the stopped run's frames are
    still there to go on from."""
    from runtime.cli import _interrupted_note

    summary = {"source": {"frame_count": 90}, "frames_processed": 0, "resumed_from": 31,
               "resumable": True}
    assert _interrupted_note(summary, "sharp.mp4") == (
        "interrupted before the first frame was written: sharp.mp4 holds the 31 frames it "
        "held; run the same command with --resume to go on from there")
    fresh = {**summary, "resumed_from": 0, "resumable": False}
    assert _interrupted_note(fresh, "sharp.mp4") == (
        "interrupted before the first frame was written: nothing written to sharp.mp4")


def test_resume_from_a_camera_that_is_not_there_is_a_usage_error_not_a_lost_source(
        tmp_path):
    """--resume of a camera was refused only once the camera opened: an unplugged one exited
    3, which a service restarts on (a restart may find the camera), then 2 once it was back.
    No camera run resumes, so it is refused before the camera is opened, with 2."""
    from runtime_fixtures import make_onnx_model

    model = make_onnx_model(tmp_path / "m.onnx")
    r = sharpen("--model", str(model), "--source", "/dev/video99", "--out",
                str(tmp_path / "day.ts"), "--resume")
    assert r.returncode == 2, r.stderr
    assert ("--resume goes on with a video file's run into a file or folder; /dev/video99 "
            "(v4l2) cannot be resumed (a camera's or stream's frames are not given again)"
            in r.stderr), r.stderr


def test_a_scratch_folder_of_a_killed_process_is_removed_by_the_next_one(tmp_path):
    """`export` and `bench` made their scratch folders (generated clips, TensorFlow's SavedModel)
    in the system temp folder, where each SIGKILL left one set. A scratch folder is in the
    job's own folder and is the process's temp folder while it is there; the next job's
    removes a killed one's, never a live process's."""
    import os
    import signal
    import subprocess
    import sys
    import tempfile
    from runtime.atomic import scratch_folder

    code = ("import sys, tempfile, time; from runtime.atomic import scratch_folder\n"
            "with scratch_folder(sys.argv[1], 'bench') as tmp:\n"
            "    d = tempfile.mkdtemp(); open(d + '/clip.mp4', 'wb').write(b'x' * 1000)\n"
            "    print(tmp, d, flush=True); time.sleep(60)\n")
    killed = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    dead, made = (Path(p) for p in killed.stdout.readline().split())
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    killed.stdout.close()
    assert dead.parent == tmp_path and made.parent == dead and (made / "clip.mp4").is_file()
    live = tmp_path / f".bench-tmp.{os.getppid()}.abcd1234"   # a live process's
    live.mkdir()
    other = tmp_path / f".export-tmp.{killed.pid}.abcd1234"   # another job's: its own call
    other.mkdir()
    before = tempfile.gettempdir()
    with scratch_folder(tmp_path, "bench") as tmp:
        assert not dead.exists() and live.is_dir() and other.is_dir()
        assert tempfile.gettempdir() == str(tmp) and tmp.parent == tmp_path
    assert not tmp.exists() and tempfile.gettempdir() == before


def test_scratch_folders_of_two_threads_ending_out_of_order_leave_the_temp_folder_as_found(
        tmp_path):
    """An app exporting two checkpoints in two threads (two --out folders, two locks): the first
    export to start ended first and set the temp folder back to what it found, then the second
    set it to the first's scratch folder, removed by then; every later temp file of the app
    (tempfile.mkstemp) failed with FileNotFoundError."""
    import tempfile
    import threading
    from runtime.atomic import scratch_folder

    before = tempfile.gettempdir()
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, str] = {}

    def first():
        with scratch_folder(tmp_path, "export"):
            a_in.set()
            b_in.wait(10)
        seen["after a"] = tempfile.gettempdir()
        a_out.set()

    def second():
        a_in.wait(10)
        with scratch_folder(tmp_path / "b", "export") as b:
            seen["b"] = str(b)
            b_in.set()
            a_out.wait(10)
    (tmp_path / "b").mkdir()
    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen["after a"] == seen["b"]   # the one still open: where the second's files go
    assert tempfile.gettempdir() == before
    fd, name = tempfile.mkstemp()
    os.close(fd)
    os.unlink(name)


def test_a_scratch_folder_that_cannot_be_removed_does_not_fail_the_finished_job(tmp_path):
    """A file left in the scratch folder that cannot be removed (on NFS the .nfsXXXX of a file
    still open; here an immutable one) made its removal raise at the end of an export that had
    built every format: a traceback, and the report left marked interrupted. The folder is
    left instead, for the next run to remove (its process is gone by then)."""
    from runtime.atomic import scratch_folder

    before, held = tempfile.gettempdir(), None
    try:
        with scratch_folder(tmp_path, "export") as tmp:
            held = tmp / "held"
            held.write_bytes(b"x")
            if subprocess.run(["chattr", "+i", str(held)], capture_output=True).returncode:
                pytest.skip("no chattr +i here (not root, or a filesystem without it)")
        assert held.exists() and tempfile.gettempdir() == before
    finally:
        if held is not None:   # else pytest could not remove its tmp_path either
            subprocess.run(["chattr", "-i", str(held)], capture_output=True)


def _photo_library(root: Path, n: int = 30, ext: str = ".png") -> Path:
    for i in range(n):
        f = root / f"{2024 + i % 2}" / f"IMG_{i:04d}{ext}"
        f.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(f), textured_frame(i % 16, H, W, seed=i))
    return root


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL])
def test_a_photo_library_resumes_past_the_images_written(made, tmp_path, signum):
    """A library's run stopped part-way was refused --resume (as a camera's, whose frames are
    not given again) and started over: hours of a big library redone. Images are given again:
    it goes on with those it has not written, the others kept as they are."""
    lib = _photo_library(tmp_path / "lib")
    src = str(lib / "**" / "*")
    truth = tmp_path / "truth"
    r = sharpen("--model", str(made["model"]), "--source", src, "--out", str(truth))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    argv = ["--model", str(made["model"]), "--source", src, "--out", str(out)]
    code, err = stopped(argv, 8, signum)
    assert code == (130 if signum == signal.SIGINT else -signal.SIGKILL), err
    before = {p: p.stat().st_mtime_ns for p in out.rglob("IMG_*")}
    k = len(before)
    assert 8 <= k < 30, err
    if signum == signal.SIGINT:   # a library's photos, not a video's frames
        assert f"{out} holds {k} of 30 images only" in err, err
    r = sharpen(*argv, "--resume")
    assert r.returncode == 0, r.stderr
    assert f"done: {30 - k} frames" in r.stderr, r.stderr
    for p in truth.rglob("IMG_*"):
        assert (out / p.relative_to(truth)).read_bytes() == p.read_bytes(), p
    assert all(p.stat().st_mtime_ns == t for p, t in before.items()), "rewritten"
    assert not list(tmp_path.glob(".*.resume.json")), "a finished run leaves no record"
    r = sharpen(*argv, "--resume")
    assert r.returncode == 2 and "no stopped run" in r.stderr, r.stderr


def test_a_stopped_overwrite_resumes_past_the_images_it_wrote_not_the_earlier_runs(made,
                                                                                    tmp_path):
    """Outputs take their photos' times, so an earlier run's looked written by the stopped
    one: a library sharpened again with --overwrite (a new model), stopped and resumed, kept
    the earlier model's outputs of every image the stopped run had not reached."""
    from runtime_fixtures import make_onnx_model
    lib = _photo_library(tmp_path / "lib")
    src = str(lib / "**" / "*")
    truth, out = tmp_path / "truth", tmp_path / "out"
    for model, folder in ((made["model"], truth),
                          (make_onnx_model(tmp_path / "earlier.onnx", kind="int8"), out)):
        r = sharpen("--model", str(model), "--source", src, "--out", str(folder))
        assert r.returncode == 0, r.stderr
    time.sleep(1.2)   # written before the rerun began, beyond the clock's slack (1 s)
    argv = ["--model", str(made["model"]), "--source", src, "--out", str(out)]
    code, err = stopped(argv + ["--overwrite"], 8, signal.SIGINT)
    assert code == 130, err
    r = sharpen(*argv, "--resume")
    assert r.returncode == 0, r.stderr
    for p in truth.rglob("IMG_*"):
        assert (out / p.relative_to(truth)).read_bytes() == p.read_bytes(), p


def test_a_library_of_one_photo_keeps_its_edited_output_on_a_rerun(made, tmp_path):
    """A glob or folder that holds one photo so far (a new year's folder, a first scan) was
    run as a single image: a rerun wrote over its output, edited since, and recorded nothing of
    the model that made it. A library's rerun keeps the outputs there, whatever their number."""
    lib = tmp_path / "lib" / "2024"
    lib.mkdir(parents=True)
    cv2.imwrite(str(lib / "IMG_0001.png"), textured_frame(0, H, W))
    out = tmp_path / "out"
    for source in (str(tmp_path / "lib" / "**" / "*"), str(lib)):
        argv = ["--model", str(made["model"]), "--source", source, "--out", str(out)]
        r = sharpen(*argv)
        assert r.returncode == 0, r.stderr
        written = next(out.rglob("IMG_0001.png"))
        written.write_bytes(b"edited")
        r = sharpen(*argv)
        assert r.returncode == 0, r.stderr
        assert written.read_bytes() == b"edited", r.stderr
        assert "1 image already in" in r.stderr, r.stderr
        record = tmp_path / ".out.made.json"
        assert record.is_file()
        written.unlink()
        record.unlink()   # the folder's run below must make its own


def test_a_stopped_rerun_resumes_keeping_the_outputs_it_kept(made, tmp_path):
    """A rerun keeps the outputs there (new photos added); stopped and resumed, it must keep
    them still, though they bear their photos' times and were written before the run."""
    import shutil
    every = sorted(_photo_library(tmp_path / "all").rglob("IMG_*"))
    lib, out = tmp_path / "lib", tmp_path / "out"

    def add(photos: list[Path]) -> None:
        for p in photos:
            (lib / p.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, lib / p.parent.name / p.name)
    add(every[:8])
    argv = ["--model", str(made["model"]), "--source", str(lib / "**" / "*"), "--out", str(out)]
    assert sharpen(*argv).returncode == 0
    for p in out.rglob("IMG_*"):
        p.write_bytes(b"edited")
    time.sleep(1.2)   # edited before the rerun began, beyond the clock's slack (1 s)
    add(every[8:])
    code, err = stopped(argv, 4, signal.SIGINT)
    assert code == 130 and "8 images already in" in err, err
    r = sharpen(*argv, "--resume")
    assert r.returncode == 0, r.stderr
    assert sum(p.read_bytes() == b"edited" for p in out.rglob("IMG_*")) == 8, r.stderr
    assert len(list(out.rglob("IMG_*"))) == 30


def test_resume_of_one_image_or_of_images_into_a_video_says_why_not(made, tmp_path):
    """One photo with --resume was refused as 'a camera's or stream's frames are not given
    again': no camera was involved, and the user looked for one."""
    lib = _photo_library(tmp_path / "lib", 2)
    one = next(lib.rglob("*.png"))
    for src, out, why in ((one, tmp_path / "x.png", "one image is written whole or not at all"),
                          (lib / "**" / "*", tmp_path / "x.mp4",
                           "images resume into an image folder")):
        r = sharpen("--model", str(made["model"]), "--source", str(src), "--out", str(out),
                    "--resume")
        assert r.returncode == 2, r.stderr
        assert why in r.stderr and "camera" not in r.stderr, r.stderr
        assert not out.exists()


def test_a_changed_quality_is_named_as_the_user_gave_it(made, tmp_path):
    """Resuming a library run with --quality 80 added was refused as '--quality was None':
    Python's word, which no user typed."""
    lib = _photo_library(tmp_path / "lib", 12, ".jpg")
    argv = ["--model", str(made["model"]), "--source", str(lib / "**" / "*"),
            "--out", str(tmp_path / "out")]
    code, err = stopped(argv, 2, signal.SIGINT)
    assert code == 130, err
    r = sharpen(*argv, "--resume", "--quality", "80")
    assert r.returncode == 2, r.stderr
    assert "--quality was not given, now 80" in r.stderr, r.stderr


def test_a_resume_without_no_exif_after_a_run_with_it_is_refused(made, tmp_path):
    """--resume went on without --no-exif after a run stopped with it (not recorded): the
    images written after the stop took their photos' GPS into a folder meant to publish."""
    lib = _photo_library(tmp_path / "lib", 12, ".jpg")
    argv = ["--model", str(made["model"]), "--source", str(lib / "**" / "*"),
            "--out", str(tmp_path / "out")]
    code, err = stopped(argv + ["--no-exif"], 2, signal.SIGINT)
    assert code == 130, err
    r = sharpen(*argv, "--resume")
    assert r.returncode == 2, r.stderr
    assert "--no-exif or --no-metadata was given, now neither is" in r.stderr, r.stderr
    r = sharpen(*argv, "--resume", "--no-exif")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("exts, then, now, refused", [
    ((".png", ".tif"), None, "80", None),   # --quality sets no PNG's or TIFF's pixel
    ((".jpg",), None, "95", None),          # JPEG's default
    ((".jpg",), "95", None, None),
    ((".jpg", ".webp"), None, "95", "--quality was not given, now 95 (WebP: lossless then, "
                                    "95 now)"),
    ((".webp",), "90", "80", "--quality was 90, now 80"),
])
def test_resume_compares_the_quality_each_output_format_is_written_at(made, tmp_path, exts,
                                                                      then, now, refused):
    """--resume refused a library of PNGs for a --quality added, which sets no PNG's pixel,
    and `--quality 95` after a run without it, though 95 is what JPEG was written at: the
    flag was compared as typed. A change that makes other JPEG or WebP images is refused."""
    lib = tmp_path / "lib"
    for i in range(12):
        f = lib / f"{2024 + i % 2}" / f"IMG_{i:04d}{exts[i % len(exts)]}"
        f.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(f), textured_frame(i % 16, H, W, seed=i))
    argv = ["--model", str(made["model"]), "--source", str(lib / "**" / "*"),
            "--out", str(tmp_path / "out")]
    code, err = stopped(argv + (["--quality", then] if then else []), 2, signal.SIGINT)
    assert code == 130, err
    r = sharpen(*argv, "--resume", *(["--quality", now] if now else []))
    if refused:
        assert r.returncode == 2 and refused in r.stderr, r.stderr
    else:
        assert r.returncode == 0, r.stderr
        assert len([p for p in (tmp_path / "out").rglob("IMG_*")]) == 12


def test_a_resumed_silent_run_keeps_the_timecode_in_the_joins_own_copy(made, tmp_path):
    """An editor's long silent clip: the join, a copy of the whole video at close, carries the
    source's timecode and creation time too, rather than a second copy of hours of video
    after it; the resumed output starts at the source's own timecode."""
    ffmpeg = find_ffmpeg()
    if ffmpeg is None:
        pytest.skip("no ffmpeg to join with")
    camera = tmp_path / "camera.mov"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y", "-i", str(made["clip"]), "-c",
                    "copy", "-timecode", "01:02:03:04", "-metadata",
                    "creation_time=2026-11-30T10:00:00Z", str(camera)], check=True, timeout=60)
    calls = tmp_path / "calls.txt"
    logged = tmp_path / "ffmpeg"   # ffmpeg, each call's arguments written down
    logged.write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\nexec "{ffmpeg}" "$@"\n')
    logged.chmod(0o755)
    env = _env(str(logged))
    out = tmp_path / "sharp.mov"
    argv = ["--model", str(made["model"]), "--source", str(camera), "--out", str(out)]
    code, err = stopped(argv, 15, signal.SIGINT, env)
    assert code == 130, err
    calls.unlink()
    r = sharpen(*argv, "--resume", env=env)
    assert r.returncode == 0, r.stderr
    assert "timecode 01:02:03:04" in r.stderr, r.stderr
    copies = [c for c in calls.read_text().splitlines() if ".copy.mov" in c]
    assert len(copies) == 1 and "concat" in copies[0], copies
    listing = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-i", str(out)],
                             capture_output=True, text=True, timeout=60).stderr
    assert "timecode        : 01:02:03:04" in listing, listing
    assert "creation_time   : 2026-11-30T10:00:00" in listing, listing
    assert len(frames_and_times(out)[0]) == N


def test_a_resume_with_no_metadata_joins_the_parts_without_the_clips_place(made, tmp_path):
    """The stopped run kept the clip's place in its part (as a run without --no-metadata
    does); --resume --no-metadata joins that part and its own without it: the join is the
    silent clip's last copy, and a desk that resumed to publish got the place back."""
    ffmpeg = find_ffmpeg()
    if ffmpeg is None:
        pytest.skip("no ffmpeg to tag a clip with")
    place = "+48.8584+002.2945/"
    clip = tmp_path / "phone.mov"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y", "-i", str(made["clip"]), "-c",
                    "copy", "-metadata", f"location={place}", "-metadata", "title=The square",
                    "-metadata", "creation_time=2026-11-30T10:00:00Z", "-movflags",
                    "use_metadata_tags", str(clip)], check=True, timeout=60)
    env = _env(ffmpeg)

    def listing(path: Path) -> str:
        return subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-i", str(path)],
                              capture_output=True, text=True, timeout=60).stderr

    out = tmp_path / "sharp.mov"
    argv = ["--model", str(made["model"]), "--source", str(clip), "--out", str(out)]
    code, err = stopped(argv, 15, signal.SIGINT, env)
    assert code == 130, err
    assert place in listing(out)
    r = sharpen(*argv, "--resume", "--no-metadata", env=env)
    assert r.returncode == 0, r.stderr
    assert "resuming at frame" in r.stderr, r.stderr
    said = listing(out)
    assert place not in said and "The square" not in said and "2026-11-30" not in said, said


def test_a_folder_run_stopped_after_an_unreadable_image_exits_as_stopped(made, tmp_path):
    """SIGTERM to a folder's run that had met an unreadable image closed on "1 image could
    not be read; the rest were processed:" (most were never read) and exit 1, where a
    supervisor looks for 143 to tell a stop from a failure."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    (src / "0bad.png").write_bytes(b"\x89PNG not really")
    for p in sorted(made["truth"].iterdir()):
        (src / p.name).write_bytes(p.read_bytes())
    code, err = stopped(["--model", str(made["model"]), "--source", str(src), "--out",
                         str(out)], 5, signal.SIGTERM)
    lines = err.strip().splitlines()
    assert code == 143 and len(list(out.iterdir())) < N, err
    assert "the rest were processed" not in err, err
    assert lines[-2:] == ["sharpen run: 1 image could not be read:",
                          f"  {src / '0bad.png'}: not a readable image (corrupt or unsupported "
                          "format)"], err


def test_a_stopped_run_whose_last_stats_cannot_be_written_still_exits_as_stopped(made,
                                                                                 tmp_path):
    """SIGTERM to a run whose --stats file could not take its last write (a full disk) exited
    2, a usage error's code, where a supervisor looks for 143 to tell a stop; the write's
    failure is a warning, as it is after the run's own error. A file in the place of the
    stats file's folder stands in for the full disk: the last write fails as it would."""
    out, folder = tmp_path / "out", tmp_path / "stats"
    folder.mkdir()

    def break_the_folder() -> None:   # moved aside whole: a refresh may be writing in it
        for i in range(100):   # until no refresh made the folder again in between
            with contextlib.suppress(FileNotFoundError):
                os.rename(folder, tmp_path / f"moved-{i}")
            with contextlib.suppress(FileExistsError):
                folder.touch(exist_ok=False)
                return

    code, err = stopped(["--model", str(made["model"]), "--source", str(made["clip"]),
                         "--out", str(out), "--stats", str(folder / "st.json")], 3,
                        signal.SIGTERM, then=break_the_folder)
    assert code == 143 and "Traceback" not in err, err
    assert f"warning: cannot write the stats file {folder / 'st.json'}" in err, err


SEG_NAME = re.compile(r"^rec-(\d{6})-\d{8}-\d{6}(\.interrupted-\d{8}-\d{6}(-\d+)?)?\.mp4$")


def _segments_of(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if SEG_NAME.match(p.name)),
                  key=lambda p: int(SEG_NAME.match(p.name).group(1)))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL])
def test_a_stopped_segmented_run_resumes_with_the_remaining_segments(made, tmp_path, signum):
    """A long clip cut into --segment files and stopped part-way: --resume refused it, and a
    rerun sharpened every frame again into new segments. It keeps the segments closed whole
    as they are, sets the cut one aside as interrupted, and writes the rest from the frame
    after the last whole one, numbered on: the whole segments hold an uninterrupted run's
    frames."""
    out = tmp_path / "rec.mp4"
    argv = ["--model", str(made["model"]), "--source", str(made["clip"]), "--out", str(out),
            "--segment", "0.4"]   # 10 frames each
    code, err = stopped(argv, 35, signum)
    assert code in (130, -signal.SIGKILL), err
    before = {p.name: p.stat().st_mtime_ns for p in _segments_of(tmp_path)}
    r = sharpen(*argv, "--resume")
    assert r.returncode == 0, r.stderr
    segs = _segments_of(tmp_path)
    whole = [p for p in segs if ".interrupted-" not in p.name]
    cut = [p for p in segs if ".interrupted-" in p.name]
    kept = [p for p in whole if p.name in before]
    # A killed run's cut MP4 segment, a few frames without an index, is removed as a killed
    # recording that small is (VideoFileSink._keep_or_remove).
    assert 3 <= len(kept) < 9 and len(cut) == (signum == signal.SIGINT), \
        (sorted(before), [p.name for p in segs])
    assert all(p.stat().st_mtime_ns == before[p.name] for p in kept), "rewritten"
    numbers = [int(SEG_NAME.match(p.name).group(1)) for p in segs]
    assert numbers == list(range(len(segs))), [p.name for p in segs]
    assert cut == segs[len(kept):len(kept) + len(cut)], "the cut one follows the last whole"
    assert not list(tmp_path.glob(".rec-*")), "no hidden segment left"
    k = 10 * len(kept)
    assert f"note: resuming at frame {k} of {made['clip']}" in r.stderr, r.stderr
    assert f"done: {N - k} frames" in r.stderr, r.stderr
    assert not list(tmp_path.glob(".rec.mp4.*.json")), "a finished run leaves no record"
    got = [f for p in whole for f in frames_and_times(p)[0]]
    assert [len(frames_and_times(p)[0]) for p in whole] == [10] * 9
    truth = [cv2.imread(str(made["truth"] / f"frame_{i:06d}.png")) for i in range(N)]
    for i, f in enumerate(got):
        errs = [cv2.norm(f, t, cv2.NORM_L1) for t in truth[max(0, i - 1):i + 2]]
        assert int(np.argmin(errs)) == min(i, 1), f"frame {i} is not in its place"


def test_a_resumed_segments_sound_starts_at_its_own_frames(made, tmp_path):
    """Each segment's sound is the source's from its first frame's time: a resumed run's
    first segment starts from the frame it resumes at, not the clip's start."""
    ffmpeg, loud = _with_sound(made["clip"], tmp_path, "make a clip with sound")
    full, part = tmp_path / "full", tmp_path / "part"
    full.mkdir(), part.mkdir()
    argv = ["--model", str(made["model"]), "--source", str(loud), "--segment", "0.4"]
    r = sharpen(*argv, "--out", str(full / "rec.mp4"), env=_env(ffmpeg))
    assert r.returncode == 0, r.stderr
    code, err = stopped([*argv, "--out", str(part / "rec.mp4")], 35, signal.SIGINT,
                        _env(ffmpeg))
    assert code == 130, err
    r = sharpen(*argv, "--out", str(part / "rec.mp4"), "--resume", env=_env(ffmpeg))
    assert r.returncode == 0, r.stderr

    def sound(p: Path) -> np.ndarray:
        done = subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-i", str(p), "-map", "0:a",
                               "-ac", "1", "-f", "s16le", "-"], capture_output=True,
                              timeout=60, check=True)
        return np.frombuffer(done.stdout, np.int16).astype(np.float32)

    want = [sound(p) for p in _segments_of(full)]
    got = [sound(p) for p in _segments_of(part) if ".interrupted-" not in p.name]
    assert len(got) == len(want) == 9
    for i, (a, b) in enumerate(zip(got, want)):
        n = min(len(a), len(b))
        assert abs(len(a) - len(b)) < 2048 and np.abs(a[:n] - b[:n]).max() < 300, i


def test_a_segmented_resume_is_refused_where_its_segments_changed(made, tmp_path):
    """The segments' length shapes which frames each holds, and the last whole segment is
    what the resumed ones follow: refused, naming it, where either changed."""
    out = tmp_path / "rec.mp4"
    argv = ["--model", str(made["model"]), "--source", str(made["clip"]), "--out", str(out),
            "--segment", "0.4"]
    code, err = stopped(argv, 25, signal.SIGINT)
    assert code == 130, err
    r = sharpen(*argv[:-1], "0.8", "--resume")
    assert r.returncode == 2, r.stderr
    assert "--segment was 0.4, now 0.8" in r.stderr, r.stderr
    record = json.loads((tmp_path / ".rec.mp4.resume.json").read_text())
    last = tmp_path / record["segment_file"]
    last.write_bytes(last.read_bytes() + b"\0")
    r = sharpen(*argv, "--resume")
    assert r.returncode == 2, r.stderr
    assert (f"--resume: --out {out}: its last whole segment, {last}, was changed since the "
            "run stopped; run without --resume to start from the first frame") in r.stderr, \
        r.stderr


def test_a_segmented_run_stopped_before_its_first_whole_segment_resumes_from_the_start(
        made, tmp_path):
    """No segment closed whole: --resume sets the cut one aside and starts at the first
    frame, into the segments numbered on, rather than saying there is nothing to resume."""
    out = tmp_path / "rec.mp4"
    argv = ["--model", str(made["model"]), "--source", str(made["clip"]), "--out", str(out),
            "--segment", "2"]   # 50 frames each
    code, err = stopped(argv, 15, signal.SIGINT)
    assert code == 130 and "--resume to go on from there" in err, err
    r = sharpen(*argv, "--resume")
    assert r.returncode == 0, r.stderr
    assert f"done: {N} frames" in r.stderr, r.stderr
    segs = _segments_of(tmp_path)
    assert [".interrupted-" in p.name for p in segs] == [True, False, False], segs
    assert [len(frames_and_times(p)[0]) for p in segs[1:]] == [50, N - 50]


def test_a_segmented_resume_goes_on_where_keep_segments_removed_the_last_whole_one(
        made, tmp_path):
    """--keep-segments 1 removes the last whole segment as the cut one closes: that is the
    bound at work, not a changed recording, and the run goes on after it."""
    out = tmp_path / "rec.mp4"
    argv = ["--model", str(made["model"]), "--source", str(made["clip"]), "--out", str(out),
            "--segment", "0.4", "--keep-segments", "1"]
    code, err = stopped(argv, 25, signal.SIGINT)
    assert code == 130, err
    record = json.loads((tmp_path / ".rec.mp4.resume.json").read_text())
    assert not (tmp_path / record["segment_file"]).exists()
    r = sharpen(*argv, "--resume")
    assert r.returncode == 0, r.stderr
    k = record["next"]
    assert k % 10 == 0 and f"resuming at frame {k} of" in r.stderr, r.stderr
    segs = _segments_of(tmp_path)
    assert len(segs) == 1 and len(frames_and_times(segs[0])[0]) == 10, segs


def test_a_resumed_segmented_run_stopped_again_resumes_again(made, tmp_path):
    """The record a resumed run keeps as its own segments close says how far it got, not
    how far the first run did."""
    out = tmp_path / "rec.mp4"
    argv = ["--model", str(made["model"]), "--source", str(made["clip"]), "--out", str(out),
            "--segment", "0.4"]
    code, err = stopped(argv, 25, signal.SIGINT)
    assert code == 130, err
    code, err = stopped([*argv, "--resume"], 30, signal.SIGINT)
    assert code == 130, err
    k = json.loads((tmp_path / ".rec.mp4.resume.json").read_text())["next"]
    assert k >= 50, k
    r = sharpen(*argv, "--resume")
    assert r.returncode == 0, r.stderr
    assert f"resuming at frame {k} of" in r.stderr and f"done: {N - k} frames" in r.stderr, \
        r.stderr
    whole = [p for p in _segments_of(tmp_path) if ".interrupted-" not in p.name]
    assert [len(frames_and_times(p)[0]) for p in whole] == [10] * 9


def test_resume_after_a_killed_video_run_names_an_apps_keywords_not_flags(tmp_path):
    """run_stream(..., resume=True) after a killed run: its message named --out, a flag the
    app never gave."""
    from runtime.resume import ResumeError, load
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    out = tmp_path / "sharp.mp4"
    (tmp_path / f".sharp.{gone.pid}.abc123.partial.mp4").write_bytes(b"frames")
    with pytest.raises(ResumeError) as said:
        load(out)
    assert "was killed" in str(said.value) and "--" not in str(said.value), said.value
    assert "(an image folder output resumes even after a kill)" in str(said.value)
