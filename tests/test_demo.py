"""`sharpen demo` (the README's first command) end to end with the shipped models, at toy sizes:
labels, distillation, export with parity, streaming. The benchmark step has its own tests
(tests/test_bench_*.py); here only its options are checked."""
from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import cv2
import pytest

from sharpen.cli import main

pytestmark = pytest.mark.slow  # whole pipelines at toy sizes: tens of seconds

MODELS = Path(__file__).resolve().parents[1] / "models"

# What a --threads of 0 means, as the range errors say it (the runtimes: README "threads").
ZERO_THREADS = ("0: MKL_NUM_THREADS or else OMP_NUM_THREADS when set, else a CPU limit's count, "
                "else all cores")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    # --threads 1: the suite runs a worker per core, and a second torch/ONNX Runtime thread
    # only spin-waits on the other worker's core (9 of the run's 70 CPU-seconds). 2 frames:
    # the fewest the demo takes; each 1080p frame is generated, streamed and compared.
    rc = main(["demo", "--out", str(out), "--steps", "2", "--label-images", "1",
               "--video-frames", "2", "--no-bench", "--threads", "1"])
    return rc, out


def test_demo_runs_every_step(demo):
    rc, out = demo
    assert rc == 0
    summary = json.loads((out / "demo-summary.json").read_text())
    assert summary["ok"] is True
    assert not (out / ".demo.lock").exists()   # its lock on --out went with it
    assert "bench_report" not in summary      # skipped, so never announced
    assert Path(summary["student"]).is_file()
    labels = sorted((out / "labels" / "train" / "labels").glob("*.png"))
    assert len(labels) == 1
    exported = {p.name for p in (out / "export").iterdir()}
    assert any(n.endswith("_int8.onnx") for n in exported), exported
    assert any(n.endswith(".tflite") for n in exported), exported
    cap = cv2.VideoCapture(summary["video_out"])
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (1080, 1920, 3) and n == 2
    stats = json.loads(Path(summary["stream_stats"]).read_text())
    assert stats["frames_processed"] == 2
    # Something to look at: a split-screen video and a side-by-side crop.
    cap = cv2.VideoCapture(summary["comparison"])
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (1080, 1920, 3)
    pair = cv2.imread(summary["side_by_side"])
    assert pair is not None and pair.shape[1] == 2 * pair.shape[0]


def test_demo_refuses_missing_weights(tmp_path, capsys, monkeypatch):
    rc = main(["demo", "--out", str(tmp_path), "--teacher-weights", str(tmp_path / "no.pt")])
    assert rc == 2
    assert capsys.readouterr().err.startswith(
        f"sharpen demo: error: --teacher-weights {tmp_path / 'no.pt'}: no such file")
    monkeypatch.setenv("SHARPEN_MODELS", str(tmp_path))   # the shipped ones not there
    assert main(["demo", "--out", str(tmp_path / "d")]) == 2
    assert capsys.readouterr().err.startswith(
        f"sharpen demo: error: the student weights {tmp_path / 'student-fast.pt'} are not "
        "there. The shipped models live in models/")


def test_demo_refuses_impossible_options_and_checkpoints_before_any_stage(tmp_path, capsys):
    """--steps 0, --lr -1, --video-frames 0, a teacher as the student, a student of another
    architecture or --out naming a file each failed stages later, with a traceback. Each is
    one line naming the command, as every other command's (it was a bare `error: ...`)."""
    models = Path(__file__).resolve().parents[1] / "models"
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    out = tmp_path / "d"
    for extra, says in ((["--steps", "0"], "--steps must be >= 1, got 0"),
                        (["--lr", "-1"], "--lr must be > 0"),
                        (["--video-frames", "0"], "--video-frames must be >= 2"),
                        (["--min-ssim-gain", "-2"], "--min-ssim-gain must be in [0, 1.5]"),
                        (["--student", "foo"], "--student foo: unknown student; choose from"),
                        (["--config", "configs/distill-fast.yaml"],
                         "a YAML file is a training config, for `sharpen train-teacher/distill/"
                         "train --config`"),
                        (["--weights", str(models / "teacher-restormer-small.pt")],
                         "is not a student checkpoint of this project (kind 'teacher')"),
                        (["--student", "seed", "--weights", str(models / "student-fast.pt")],
                         "is a 'fast' student, not 'seed': pass --student fast"),
                        (["--teacher-weights", str(models / "student-fast.pt")],
                         "is a student checkpoint, not a teacher")):
        assert main(["demo", "--out", str(out), "--quiet", *extra]) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith("sharpen demo: error: ") and says in err, (extra, err)
        assert not out.exists()   # nothing made for a run that never started
    assert main(["demo", "--out", str(a_file), "--quiet", "--threads", "-1"]) == 2
    assert capsys.readouterr().err == \
        f"sharpen demo: error: --threads must be >= 0 ({ZERO_THREADS}), got -1\n"
    assert main(["demo", "--out", str(a_file), "--quiet"]) == 2
    assert capsys.readouterr().err == \
        f"sharpen demo: error: --out: {a_file} is a file, not a folder\n"


def test_demo_stops_at_stage_2_when_no_image_could_be_labelled(tmp_path, capsys):
    """A --data folder of unreadable images: stage 2 made 0 labels and stage 3 ended in the
    trainer's traceback ('.../labels/train: no finished labels'), naming no stage."""
    data = tmp_path / "photos"
    data.mkdir()
    for name in ("a.png", "b.png", "c.jpg"):
        (data / name).write_bytes(b"not an image")
    out = tmp_path / "d"
    _earlier_summary(out)
    rc = main(["demo", "--data", str(data), "--out", str(out), "--steps", "1",
               "--video-frames", "2", "--no-bench", "--threads", "1", "--quiet"])
    captured = capsys.readouterr()
    assert rc == 1 and "Traceback" not in captured.err, captured.err
    assert captured.err.strip().splitlines()[-1].startswith(
        "sharpen demo: error: stage 2 (teacher pseudo-labels): no training label was made: 2 "
        "of the 2 images it took could not be labelled"), captured.err
    assert "[3/6]" not in captured.out   # stopped right after the stage that failed
    # 1 of 3 images held out where a fifth was meant: said, as `sharpen labels` says it
    assert "warning: held out for validation: 33% of the images (1 of 3) held out, not 20%" \
        in captured.err, captured.err
    # The earlier run's summary (ok, its outputs) no longer vouches for this one: the summary
    # says where and why this run failed, and lists only what its finished stages made.
    summary = json.loads((out / "demo-summary.json").read_text())
    assert summary["ok"] is False and summary["failed_stage"] == 2, summary
    assert summary["interrupted"] is False
    assert summary["error"].startswith("stage 2 (teacher pseudo-labels): no training label was "
                                       "made"), summary
    assert summary["video_in"] == str(out / "blurred-1080p.mp4")
    assert not {"labels", "student", "video_out", "comparison"} & set(summary), summary


def _earlier_summary(out: Path) -> None:
    """--out as an earlier, successful demo left it: its summary and outputs."""
    out.mkdir(parents=True)
    (out / "sharpened-1080p.mp4").write_bytes(b"an earlier run's video")
    (out / "student-fast.pt").write_bytes(b"an earlier run's student")
    (out / "demo-summary.json").write_text(json.dumps({
        "video_out": str(out / "sharpened-1080p.mp4"), "student": str(out / "student-fast.pt"),
        "minutes": 3.0, "ok": True}))


def test_demo_says_which_label_run_each_source_line_is(tmp_path, capsys):
    """The training and the validation label runs of the user's data each printed the same
    "folder source ...; labelling N" line, with nothing to tell which was which."""
    data = tmp_path / "photos"
    data.mkdir()
    for name in ("a.png", "b.png", "c.jpg", "d.png", "e.png"):
        (data / name).write_bytes(b"not an image")
    main(["demo", "--data", str(data), "--out", str(tmp_path / "d"), "--steps", "1",
          "--video-frames", "2", "--no-bench", "--threads", "1", "--quiet"])
    said = capsys.readouterr().out.splitlines()
    runs = [ln for ln in said if "; labelling " in ln]
    assert len(runs) == 2, said
    assert runs[0].startswith("training labels: ") and "labelling 4 " in runs[0], runs
    assert runs[1].startswith("validation labels: ") and "labelling 1 " in runs[1], runs


def test_demo_on_footage_streams_and_calibrates_on_the_users_clip(tmp_path, capsys):
    """README: `--data SPEC switches it to your own footage`. With a folder of clips the demo
    said "no images found"; with one clip it calibrated INT8 on scikit-image's photos and
    streamed (and showed, side by side) its own synthetic 1080p video, never the user's."""
    import numpy as np

    foot = tmp_path / "footage"
    foot.mkdir()
    rng = np.random.default_rng(0)
    vw = cv2.VideoWriter(str(foot / "walk.avi"), cv2.VideoWriter.fourcc(*"MJPG"), 10, (96, 64))
    base = (rng.random((64, 120, 3)) * 255).astype(np.uint8)
    for i in range(6):
        vw.write(cv2.blur(np.ascontiguousarray(base[:, 2 * i:2 * i + 96]), (5, 5)))
    vw.release()
    out = tmp_path / "d"
    rc = main(["demo", "--data", str(foot), "--out", str(out), "--steps", "1",
               "--label-images", "1", "--video-frames", "3", "--no-bench", "--threads", "1",
               "--quiet"])
    said, err = capsys.readouterr()
    assert rc == 0, said
    # footage has no ground truth: the demo's loss leaves its ground-truth terms out, rather
    # than the trainer warning of terms the demo's user never set
    assert "no ground truth to use" not in err, err
    # nor of export's --calib-size (the clip's 96x64 frames are under its default 256), a
    # flag the demo does not have
    assert "--calib-size" not in err, err
    summary = json.loads((out / "demo-summary.json").read_text())
    assert summary["video_in"] == str(foot / "walk.avi")
    assert summary["video_out"] == str(out / "sharpened-walk.mp4")
    assert not (out / "blurred-1080p.mp4").exists()
    cap = cv2.VideoCapture(summary["video_out"])
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (64, 96, 3)
    assert json.loads((out / "stream-stats.json").read_text())["frames_processed"] == 3
    settings = json.loads((out / "export" / "export_report.json").read_text())["settings"]
    assert settings["calib_images"] == ["walk_000000"]      # the clip's frame, as labelled
    assert settings["parity_images"] == ["walk_000005"]     # its held-out last fifth
    assert "INT8 calibration on your 1 training image, parity on your 1 held-out" in said
    assert "(its first 3 frames)" in said and "(1 step)" in said, said
    # Which weights stage 4 exports, said: "(best.pt keeps whichever is better ...)" left a
    # user to work out from two scores that the export was the shipped student unchanged.
    from distill.checkpoint import read_checkpoint
    start = ("best.pt: the start, student-fast.pt unchanged (the fine-tune did not beat it "
             "on validation): that is what is exported")
    fine_tuned = "best.pt: step 1 of the fine-tune, better on validation than the start"
    assert (start if read_checkpoint(summary["student"])["step"] == 0 else fine_tuned) in said, \
        said


def test_demo_gate_options():
    from sharpen.cli import build_parser
    from sharpen.demo import DEMO_MIN_SSIM_GAIN

    from benchmarks.cli import gate_argv, resolve_gate

    args = build_parser().parse_args(["demo"])
    assert resolve_gate(args) == (0.95, DEMO_MIN_SSIM_GAIN)
    assert gate_argv(args) == ["--min-ssim-gain", f"{DEMO_MIN_SSIM_GAIN:g}"]
    assert 0 < DEMO_MIN_SSIM_GAIN < 1
    # Asking for the ratio gate replaces the gain gate; asking for both is refused.
    args = build_parser().parse_args(["demo", "--min-ssim-ratio", "0.9"])
    assert gate_argv(args) == ["--min-ssim-ratio", "0.9"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--min-ssim-ratio", "0.9", "--min-ssim-gain", "0.1"])


def test_demo_refuses_an_out_inside_its_data(tmp_path, capsys):
    """`--data stills --out stills/demo`: stage 1 wrote the synthetic 1080p video into the
    user's folder, stage 2 then took it as footage and the teacher labelled its 1080p frames as
    the user's (5 minutes each on a CPU), and a re-run read the demo's labels as images too."""
    data = tmp_path / "stills"
    data.mkdir()
    for i in range(3):
        cv2.imwrite(str(data / f"p{i}.png"), _noise(i))
    for out in (data / "demo", data):
        rc = main(["demo", "--data", str(data), "--out", str(out), "--steps", "1",
                   "--label-images", "1", "--video-frames", "2", "--no-bench", "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2, err
        assert err.startswith(f"sharpen demo: error: --out {out} is inside --data {data}: "), err
    assert sorted(p.name for p in data.iterdir()) == ["p0.png", "p1.png", "p2.png"]


def test_demo_names_the_teacher_flags_that_cannot_work_before_any_stage(tmp_path, capsys):
    """The README's `--teacher-weights motion_deblurring.pth --teacher-config motion-deblur`:
    without the file the demo said to 'pass --weights / --teacher-weights' (passed) and not
    where the file comes from; a --teacher-config the weights do not take (the shipped teacher
    carries its own; a bare state dict of another size) failed at stage 2, after stage 1."""
    import torch

    from distill.restormer import build_restormer, get_config

    data = tmp_path / "stills"
    data.mkdir()
    for i in range(3):
        cv2.imwrite(str(data / f"p{i}.png"), _noise(i))
    bare = tmp_path / "bare.pth"
    torch.save({"params": build_restormer(get_config("tiny")).state_dict()}, bare)
    out = tmp_path / "d"
    missing = tmp_path / "motion_deblurring.pth"
    for extra, says in (
            (["--teacher-weights", str(missing), "--teacher-config", "motion-deblur"],
             f"--teacher-weights {missing}: no such file. Get the official Restormer "
             "motion-deblurring weights"),
            (["--weights", str(tmp_path / "s.pt")],
             f"--weights {tmp_path / 's.pt'}: no such file"),
            (["--teacher-config", "motion-deblur"], "carries its own Restormer config, which is "
             "not 'motion-deblur'"),
            (["--teacher-weights", str(bare), "--teacher-config", "small"],
             "does not match the Restormer architecture")):
        rc = main(["demo", "--data", str(data), "--out", str(out), "--steps", "1",
                   "--label-images", "1", "--video-frames", "2", "--no-bench", "--quiet",
                   *extra])
        err = capsys.readouterr().err
        assert rc == 2, (extra, err)
        assert err.startswith("sharpen demo: error: ") and says in err, (extra, err)
        assert "pass --weights / --teacher-weights" not in err
        assert not out.exists(), extra   # refused before stage 1 made anything


def _noise(seed: int):
    import numpy as np
    return (np.random.default_rng(seed).random((32, 48, 3)) * 255).astype(np.uint8)


def _ctrl_c_when(proc, ready, timeout: float = 120, signum: int = signal.SIGINT) -> str:
    """Send the child a Ctrl-C (SIGINT; or `signum`) once ready() holds, wait for it, and return
    its stderr; the child must still be running then."""
    try:
        deadline = time.time() + timeout
        while time.time() < deadline and proc.poll() is None and not ready():
            time.sleep(0.01)
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.send_signal(signum)
        proc.wait(60)
        return proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()


@pytest.mark.parametrize("name", ["SIGINT", "SIGHUP", "SIGTERM"])
def test_demo_interrupted_says_at_which_stage_and_what_a_rerun_keeps(tmp_path, name):
    """Ctrl-C while the teacher labels: the demo ended in `sharpen demo: interrupted`, naming
    no stage, and not that the labels made are kept and that a re-run goes on from them. A
    hang-up (SIGHUP) killed it with nothing said or recorded."""
    import os
    import subprocess
    import sys

    import numpy as np

    data = tmp_path / "stills"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):   # one 512 px tile each: seconds per label, time to interrupt
        cv2.imwrite(str(data / f"p{i}.png"), (rng.random((512, 512, 3)) * 255).astype(np.uint8))
    out = tmp_path / "d"
    _earlier_summary(out)
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "sharpen", "demo", "--data", str(data), "--out", str(out),
         "--steps", "1", "--label-images", "1", "--video-frames", "2", "--no-bench",
         "--threads", "1", "--quiet"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # the teacher is at work
    signum = getattr(signal, name)
    err = _ctrl_c_when(proc, lambda: (out / "labels" / "train" / "run.json").exists(),
                       signum=signum)
    assert proc.returncode == 128 + signum and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    by = "" if name == "SIGINT" else f" ({name})"
    assert last.startswith(f"sharpen demo: interrupted{by} at stage 2/6 (teacher pseudo-labels); "
                           f"the labels made so far are kept in {out / 'labels'}: run the same "
                           "command to go on from them"), err
    summary = json.loads((out / "demo-summary.json").read_text())   # not the earlier run's
    assert summary["ok"] is False and summary["interrupted"] is True, summary
    assert summary["failed_stage"] == 2 and summary["error"].startswith(
        f"interrupted{by} at stage 2/6 (teacher pseudo-labels)"), summary
    assert "student" not in summary and "labels" not in summary, summary
    from sharpen.demo import DEMO_LOCK
    assert not (out / DEMO_LOCK).exists()   # its lock on --out goes with it


def _walk_clip(path: Path, frames: int = 6) -> Path:
    import numpy as np
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (96, 64))
    base = (np.random.default_rng(0).random((64, 120, 3)) * 255).astype(np.uint8)
    for i in range(frames):
        vw.write(cv2.blur(np.ascontiguousarray(base[:, 2 * i:2 * i + 96]), (5, 5)))
    vw.release()
    return path


def test_demo_streams_the_first_clip_opencv_can_read(tmp_path):
    """A folder of footage whose first clip is damaged: labelling left it out (with a warning)
    and trained on the others, then stage 5 streamed that damaged clip and ended in a
    traceback ('cannot open video source'), after the long stages."""
    from sharpen.demo import _user_clip

    foot = tmp_path / "footage"
    foot.mkdir()
    (foot / "a.mp4").write_bytes(b"not a video")
    _walk_clip(foot / "b.avi")
    assert _user_clip(str(foot)) == foot / "b.avi"
    assert _user_clip(f"folder:{foot}") == foot / "b.avi"
    (foot / "b.avi").write_bytes(b"damaged too")
    assert _user_clip(str(foot)) is None   # stage 5 then streams the synthetic video


def test_demo_names_the_users_clip_by_its_absolute_path(tmp_path, monkeypatch):
    """`--data clip.mp4` from the clip's folder: demo-summary.json's video_in was `clip.mp4`,
    the one relative path among its absolute ones, wrong from any other folder."""
    from sharpen.demo import _user_clip

    (tmp_path / "footage").mkdir()
    _walk_clip(tmp_path / "footage" / "walk.avi")
    monkeypatch.chdir(tmp_path)
    assert _user_clip("footage") == tmp_path / "footage" / "walk.avi"
    assert _user_clip("footage/walk.avi") == tmp_path / "footage" / "walk.avi"
    assert _user_clip("video:footage/walk.avi") == tmp_path / "footage" / "walk.avi"


def test_demo_says_how_many_frames_of_the_users_clip_it_streams(tmp_path, capsys):
    """It said "its first 30 frames" of a 6-frame clip, and "(1 steps)"."""
    from sharpen.demo import _frame_count

    clip = _walk_clip(tmp_path / "walk.avi")
    assert _frame_count(clip) == 6
    (tmp_path / "bad.avi").write_bytes(b"not a video")
    assert _frame_count(tmp_path / "bad.avi") > 10 ** 6   # no count: --video-frames stands


def _long_clip(path: Path, frames: int) -> Path:
    """A 320x240 clip of moving noise, long enough to interrupt while it streams."""
    import numpy as np
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (320, 240))
    base = (np.random.default_rng(0).random((240, 320 + frames, 3)) * 255).astype(np.uint8)
    for i in range(frames):
        vw.write(np.ascontiguousarray(base[:, i:i + 320]))
    vw.release()
    return path


def test_demo_stage_5_failure_is_one_line_naming_the_stage_file_and_cause(tmp_path):
    """A clip stage 5 cannot stream, or a comparison video it cannot write, ended the demo in
    a raw traceback after minutes of stages. Now one line (exit 1) naming the stage, the file
    and the cause, with what the earlier stages made left in place."""
    from runtime_fixtures import make_onnx_model

    from runtime.cli_errors import SharpenError
    from sharpen.demo import _stream_stage

    model = str(make_onnx_model(tmp_path / "student.onnx"))
    out = tmp_path / "d"
    (out / "export").mkdir(parents=True)
    earlier = out / "export" / "export_report.json"   # stands for stages 1-4's outputs
    earlier.write_text("{}")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(SharpenError) as e:
        _stream_stage(model, bad, out, "bad", 2, quiet=True)
    said = str(e.value)
    assert e.value.exit_code == 1 and "\n" not in said, said
    assert said.startswith(f"stage 5 (streaming): streaming {bad} into "
                           f"{out / 'sharpened-bad.mp4'}: "), said
    assert said.endswith(f"; the outputs of the stages before it are kept in {out}"), said
    # The comparison video cannot take its name (a folder is in the way): named by its final
    # name, not the temporary one it was written under; the sharpened video is kept, whole.
    clip = _walk_clip(tmp_path / "walk.avi")
    (out / "comparison-walk.mp4").mkdir()
    with pytest.raises(SharpenError) as e:
        _stream_stage(model, clip, out, "walk", 3, quiet=True)
    said = str(e.value)
    assert said.startswith(f"stage 5 (streaming): streaming {clip} into the comparison video "
                           f"{out / 'comparison-walk.mp4'}: Is a directory: "
                           f"{out / 'comparison-walk.mp4'}; "), said
    assert ".partial" not in said and "/." not in said, said   # no temporary name
    assert earlier.read_text() == "{}"
    cap = cv2.VideoCapture(str(out / "sharpened-walk.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]   # no temporary left


_STAGE_5_UNDER_A_MEMORY_LIMIT = """
import re, resource, sys
from pathlib import Path
import cv2, numpy, onnxruntime, runtime.pipeline  # noqa: F401 - loaded before the limit
from runtime.cli_errors import SharpenError
from sharpen.demo import _stream_stage
status = open("/proc/self/status").read()
vm = int(re.search(r"VmSize:\\s+(\\d+)", status).group(1)) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (300 << 20), resource.RLIM_INFINITY))
try:
    _stream_stage(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), "big", 1, quiet=True)
except SharpenError as e:
    sys.exit(f"SharpenError: {e}")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc: Linux")
def test_demo_stage_5_out_of_memory_is_one_line_naming_the_stage(tmp_path):
    """A frame stage 5 ran out of memory on (a small board, a container's limit) ended the
    demo in a traceback: the runtime raises a MemoryError naming the frame size (and OpenCV's
    "Insufficient memory", once a cv2.error stage 5 said in one line, is one too), which stage
    5 did not take for a failure of its own. An 8K photo under a limit 300 MB above the loaded
    process stands in for the clip."""
    import os
    import subprocess

    import numpy as np
    from runtime_fixtures import make_onnx_model

    model = make_onnx_model(tmp_path / "student.onnx")
    photo = tmp_path / "big.png"
    cv2.imwrite(str(photo), np.full((4320, 7680, 3), 128, np.uint8))
    out = tmp_path / "d"
    out.mkdir()
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, "-c", _STAGE_5_UNDER_A_MEMORY_LIMIT, str(model),
                          str(photo), str(out)], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    assert res.stderr.startswith(f"SharpenError: stage 5 (streaming): streaming {photo} into "
                                 f"{out / 'sharpened-big.mp4'}: out of memory sharpening a "
                                 "7680x4320 frame with "), res.stderr


def test_demo_interrupted_in_stage_5_leaves_no_short_comparison_video(tmp_path):
    """Ctrl-C while stage 5 wrote the comparison video: the runtime's sink closed it under its
    final name, a short video that looks like the demo's result. It is written under a
    temporary name and renamed only when whole."""
    import os
    import subprocess
    import sys

    from runtime_fixtures import make_onnx_model

    model = make_onnx_model(tmp_path / "student.onnx")
    clip = _long_clip(tmp_path / "walk.avi", 400)
    out = tmp_path / "d"
    out.mkdir()
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    script = ("import sys\nfrom pathlib import Path\nfrom sharpen.demo import _stream_stage\n"
              "try:\n"
              f"    _stream_stage({str(model)!r}, Path({str(clip)!r}), Path({str(out)!r}), "
              "'walk', 400, quiet=True)\n"
              "except KeyboardInterrupt:\n    sys.exit(130)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # the comparison's first frames are written: it is half a video now
    err = _ctrl_c_when(proc, lambda: any(out.glob(".*comparison-walk*partial*")))
    assert proc.returncode == 130, err
    assert (out / "sharpened-walk.mp4").is_file()   # finished before the Ctrl-C: kept
    assert not (out / "comparison-walk.mp4").exists(), err
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def _paired_root(root: Path, **counts: int) -> Path:
    """A paired root: per split (train=3, test=2) that many noise images as input and target."""
    for split, n in counts.items():
        for sub in ("input", "target"):
            (root / split / sub).mkdir(parents=True)
            for i in range(n):
                cv2.imwrite(str(root / split / sub / f"p{i}.png"), _noise(i))
    return root


def test_demo_scores_the_users_held_out_pairs_or_says_why_not(tmp_path):
    """Stage 6 scored the embedded test split whatever --data the user gave, and did not say
    so. A --data with a test split of blurred/sharp pairs (never trained on) is scored; other
    data is not (no ground truth, or none the fine-tune did not see), which the stage says."""
    from sharpen.demo import _scored_set

    scored, said = _scored_set("embedded")
    assert scored is None and said.startswith("quality gate scored on the embedded test split")
    root = _paired_root(tmp_path / "pairs", train=3, test=2)
    scored, said = _scored_set(str(root))
    assert scored == str(root), said
    assert said == ("quality gate scored on the 2 blurred/sharp pairs of your data's test split "
                    "(held out of the fine-tune)")
    flat = root / "train"   # pairs, but all of them trained on or validated on
    scored, said = _scored_set(str(flat))
    assert scored is None and said.startswith(
        "quality gate scored on the embedded test split, not your data: it has no test split "
        "of blurred/sharp pairs held out of the fine-tune"), said
    stills = root / "train" / "input"   # no ground truth at all
    scored, said = _scored_set(str(stills))
    assert scored is None and said == (
        "quality gate scored on the embedded test split, not your data: it has no ground "
        "truth (sharp images) to score against"), said


def test_demo_says_how_many_held_out_pairs_its_quick_bench_scores(tmp_path):
    """Stage 6 said it scored the test split's 6 pairs while the quick-mode bench it ran scored
    4 of them (and said so): the two lines must name the same number."""
    from benchmarks.quality import load_pairs
    from benchmarks.report import BenchOptions
    from sharpen.demo import _scored_set

    root = _paired_root(tmp_path / "pairs", train=1, test=6)
    scored, said = _scored_set(str(root))
    assert scored == str(root), said
    assert said == ("quality gate scored on 4 of the 6 blurred/sharp pairs of your data's test "
                    "split (held out of the fine-tune)")
    quick = BenchOptions(out=str(tmp_path / "bench")).mode()["limit"]   # as stage 6 runs it
    _, bench_said = load_pairs(str(root), quick)   # the line the bench prints
    assert bench_said.endswith("split test (4 of 6 pairs)"), bench_said


def test_a_second_demo_into_one_out_is_refused_naming_out(tmp_path, capsys):
    """Two `sharpen demo --out d` at once: the second went on until a stage's own lock refused
    it in that stage's words (out=, out_dir), after it had removed the first one's summary.
    It is refused before it touches the folder, naming --out."""
    import os

    from distill.run_lock import run_lock
    from sharpen.demo import DEMO_LOCK, SUMMARY

    out = tmp_path / "d"
    out.mkdir()
    (out / SUMMARY).write_text("{}")   # the first demo's, being written
    with run_lock(out, doing="running the demo", flag="--out", name=DEMO_LOCK):
        rc = main(["demo", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert (f"another run is running the demo into {out} (process {os.getpid()}); wait for it "
            "to finish or stop it, or give this run another --out") in err, err
    assert (out / SUMMARY).read_text() == "{}"


def test_the_side_by_side_shows_the_models_output_not_the_video_read_back(tmp_path):
    """The demo's side-by-side crop took its sharpened half from the sharpened mp4v video read
    back, whose encoder takes away a fifth of the gain the picture is there to show: it is the
    model's own output on the first frame now, beside that frame as the run read it."""
    import numpy as np
    from runtime_fixtures import make_onnx_model

    from distill.evaluate import crop_box
    from runtime.backends import load_backend
    from runtime.prepost import FrameProcessor
    from sharpen.demo import _stream_stage

    model = str(make_onnx_model(tmp_path / "student.onnx"))
    clip = _walk_clip(tmp_path / "walk.avi")
    out = tmp_path / "d"
    out.mkdir()
    video_out, _ = _stream_stage(model, clip, out, "walk", 2, quiet=True)
    cap = cv2.VideoCapture(str(clip))
    ok, frame = cap.read()
    cap.release()
    assert ok
    backend = load_backend(model, threads=1)
    sharpened = FrameProcessor(backend)(frame)
    backend.close()
    pair = cv2.imread(str(out / "side_by_side.png"))
    y, x, s = crop_box(sharpened[..., ::-1].astype(np.float32) / 255.0, 480)
    assert np.array_equal(pair, np.hstack([frame[y:y + s, x:x + s],
                                           sharpened[y:y + s, x:x + s]]))
    cap = cv2.VideoCapture(str(video_out))
    ok, read_back = cap.read()
    cap.release()
    assert ok and not np.array_equal(read_back, sharpened)   # what the picture showed before


def test_demo_in_a_cache_it_cannot_write_is_one_line_naming_stage_1_and_sharpen_data(
        tmp_path, capsys, monkeypatch):
    """A shared server's ~/.cache/sharpen made by another user: stage 1 ended the demo in a
    PermissionError traceback naming only the folder. /sys stands in: root cannot write it."""
    monkeypatch.delenv("SHARPEN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/sys/no-cache")
    rc = main(["demo", "--out", str(tmp_path / "d"), "--steps", "1", "--no-bench",
               "--threads", "1", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("sharpen demo: error: stage 1 (data and video): the embedded data set "
                           "cannot be built in /sys/no-cache/sharpen/embedded: cannot write "
                           "in /sys ("), err
    assert last.endswith("set SHARPEN_DATA to a folder this user can write, where it is built "
                         "once"), err


def test_demo_with_shared_memory_full_says_so_in_one_line(tmp_path):
    """scripts/demo.sh ended with exit 1 and torch's DataLoader worker traceback when /dev/shm
    was full (a container's 64 MB default): "unable to resize file </torch_...>", nothing of
    /dev/shm or what to do. A file size limit stands in for it (/dev/shm's files meet it too):
    a batch of 8 crops of 128 px is 1.5 MB; the demo's other files up to stage 3 are smaller."""
    from child_fixtures import main_with_file_limit
    out = tmp_path / "out"
    said = main_with_file_limit(["demo", "--out", str(out), "--steps", "2", "--label-images",
                                 "1", "--video-frames", "2", "--no-bench", "--threads", "1",
                                 "--quiet"], 1_000_000)
    assert "error" not in said and said.get("rc") == 2, said
    assert "Traceback" not in said["err"], said["err"]
    assert said["err"].strip().splitlines()[-1] == (
        "sharpen demo: error: stage 3 (distillation): its data-loading worker could not pass a "
        "batch through shared memory (/dev/shm: File too large): give it room (a container: "
        "docker run --shm-size 2g) and run the same command again (the labels made are kept)")


def test_demo_video_cut_by_a_full_disk_is_an_error_naming_it(tmp_path):
    """Stage 1's blurred video, cut by a full disk (a file size limit stands in), was renamed
    into place as if whole and the demo went on to sharpen what was left of it: OpenCV's writer
    says nothing of the writes it lost. It is the full disk's error naming the video now."""
    from child_fixtures import file_size_limit, in_a_child

    from sharpen.demo import make_demo_video
    path = tmp_path / "blurred.mp4"

    def work(said: dict) -> None:
        file_size_limit(5000)()
        try:
            make_demo_video(path, frames=3, size=(320, 240), progress=False)
        except OSError as e:
            said["errno"], said["filename"] = e.errno, e.filename
    said = in_a_child(work)
    assert said.get("filename") == str(path) and said.get("errno") == 27, said
    assert list(tmp_path.iterdir()) == []
