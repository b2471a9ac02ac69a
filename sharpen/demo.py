"""`sharpen demo`: the whole mission end to end on the embedded default (or the user's data).

1. build the embedded dataset and a short blurred 1920x1080 video;
2. run the teacher (shipped, or --teacher-weights) to cache pseudo-labels for a few training
   images and the validation split;
3. a short distillation, fine-tuning the shipped student on those labels (shows the loop; the
   shipped weights are the result of the full run, see models/*.md);
4. export ONNX, ONNX INT8 and TFLite INT8 with the parity table;
5. stream the video through the runtime (`sharpen run`) and write the sharpened video (with
   --data footage holding a clip: that clip, not the synthetic one);
6. `sharpen bench` in quick mode: report.md, report.json and figures. It gates on the SSIM gain
   (--min-ssim-gain): the shipped students keep a small fraction of the teacher's SSIM gain on
   its images and do not reach `sharpen bench`'s default 0.95 SSIM ratio (README, "Measured
   results", has the fractions). It scores --data's test split where it has one of
   blurred/sharp pairs, else the embedded test split (it says which).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from runtime.atomic import atomic_path, atomic_write_json
from runtime.cli_errors import SharpenError, one_line
from runtime.console import HelpFormatter, count
from runtime.host import default_threads, limit_note, threads_help

from distill.teacher_tiles import CONFIG_HELP, WEIGHTS_HELP

if TYPE_CHECKING:   # torch comes with it; the parser is built without torch
    from distill.data.holdout import HoldOut
    from distill.data.label_stats import LabelStats


# The shipped students' loss (models/student-fast.md): teacher terms plus ground-truth terms,
# which count only where the data has ground truth (the embedded default does).
DEMO_LOSS = ("loss.pixel=0.5", "loss.ssim=0.25", "loss.gt=1.0", "loss.gt_ssim=1.0")
# A gate that a student no better than its input fails. Not higher: the demo's short fine-tune on
# a few embedded crops, without sharp frames, costs the shipped student part of its SSIM gain on
# the embedded test (the README's paragraph on the demo has the numbers).
DEMO_MIN_SSIM_GAIN = 0.02


def _demo_loss(train_labels: Path) -> tuple[str, ...]:
    """DEMO_LOSS, without its ground-truth terms where the labelled data has no ground truth
    (--data footage): the trainer warns of such terms, which the demo's user did not set."""
    from distill.data.label_cache import LabelCache

    if any(gt is not None for _, _, gt in LabelCache(train_labels).pairs()):
        return DEMO_LOSS
    return tuple(t for t in DEMO_LOSS if not t.startswith(("loss.gt=", "loss.gt_ssim=")))


def make_demo_video(path: Path, frames: int = 24, fps: float = 12.0, size=(1920, 1080),
                    seed: int = 0, progress: bool = True) -> Path:
    """A short 1080p clip: a slow pan over held-out photos and dead leaves, each frame blurred by
    its own camera-shake kernel (as a hand-held camera would)."""
    import cv2
    import numpy as np   # here, not at the top: every `sharpen` start builds this parser

    from distill.data.blur import apply_kernel, camera_shake_kernel
    from distill.data.embedded import _skimage_photo, dead_leaves

    w, h = size
    canvas_w, canvas_h = w + 16 * frames, h
    canvas = dead_leaves(seed + 7000, size=max(canvas_w, canvas_h), rmax=200, n=12000)
    canvas = np.ascontiguousarray(canvas[:canvas_h, :canvas_w])
    x = 40
    for name in ("chelsea", "coffee", "rocket"):
        photo = _skimage_photo(name)
        ph = h // 2
        photo = cv2.resize(photo, (round(photo.shape[1] * ph / photo.shape[0]), ph),
                           interpolation=cv2.INTER_LINEAR)
        pw = min(photo.shape[1], canvas_w - x)
        if pw <= 0:
            break
        y = h // 4
        canvas[y:y + ph, x:x + pw] = photo[:, :pw]
        x += pw + 60
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} (mp4v)")
    from runtime.progress import progress as bar
    for i in bar(range(frames), desc="demo video", unit="frame", quiet=not progress):
        frame = canvas[:, i * 16:i * 16 + w]
        blurred = apply_kernel(frame, camera_shake_kernel(rng, (9, 21)))
        writer.write((np.clip(blurred, 0, 1)[..., ::-1] * 255 + 0.5).astype(np.uint8))
    writer.release()
    from runtime.video_sink import refused_write
    if (refused := refused_write(tmp, path)) is not None:   # a video cut short: not named
        tmp.unlink()
        raise refused
    tmp.replace(path)
    return path


def _training_crops(train_dir: Path, dst: Path, n: int, side: int = 256) -> Path:
    """Centre crops of n training pairs spread evenly over the split, as a paired folder."""
    from distill.data.sources import spread
    from distill.images import centre_crop, list_images, read_image, write_image

    for name in spread([p.name for p in list_images(train_dir / "input")], n):
        for sub in ("input", "target"):
            write_image(dst / sub / name, centre_crop(read_image(train_dir / sub / name), side))
    return dst


def _side_by_side_frame(blurred: Path, model: str, dst: Path, side: int = 480,
                        threads: int = 0) -> Path:
    """The crop with the most detail of the first frame: blurred | sharpened, as a PNG. The
    sharpened half is the model's output on that frame, not the sharpened video's frame read
    back: the video's encoder (mp4v) takes away a fifth of the gain this picture is for."""
    import cv2
    import numpy as np

    from distill.evaluate import crop_box
    from runtime.backends import load_backend
    from runtime.orientation import oriented
    from runtime.prepost import FrameProcessor

    # the user's clip as `sharpen run` read it: a mirrored one is not turned against it
    cap = oriented(cv2.VideoCapture(str(blurred)), blurred)
    ok, frame = cap.read()
    cap.release()
    if not ok:
        raise RuntimeError(f"cannot read a frame of {blurred}")
    backend = load_backend(model, threads=threads or None)
    try:
        sharpened = FrameProcessor(backend)(frame)
    finally:
        backend.close()
    y, x, s = crop_box(sharpened[..., ::-1].astype(np.float32) / 255.0, side)
    pair = np.hstack([f[y:y + s, x:x + s] for f in (frame, sharpened)])
    with atomic_path(dst, suffix=".png") as tmp:
        cv2.imwrite(str(tmp), pair)
    return dst


def stage_threads(threads: int) -> int:
    """The CPU thread count every stage runs on: --threads, else OMP_NUM_THREADS's or a CPU
    limit's (runtime.host.default_threads), else 0 (each engine's default). Handed to each
    stage as its own thread count: --threads reached PyTorch alone, so the export's checks,
    the stream and the bench ran ONNX Runtime and LiteRT on every core, and under a CPU limit
    the bench said the limit's note a second time."""
    return default_threads(threads) or 0


def _stream_stage(model: str, video: Path, out: Path, tag: str, frames: int,
                  quiet: bool = False, threads: int = 0) -> tuple[Path, Path]:
    """Stage 5: stream `video` through `model` into sharpened-TAG.mp4, again as a split-screen
    comparison-TAG.mp4, and one frame side by side; (sharpened, comparison).
    Each video is written under a temporary name beside it and renamed when whole: the
    runtime's sink names what it wrote when stopped (`sharpen run` keeps a Ctrl-C'd stream),
    and a Ctrl-C here left a short comparison video under the final name.
    A failure is a SharpenError (exit 1) naming the stage, the file and the cause; the
    earlier stages' outputs stay (it was a traceback)."""
    from runtime import resume
    from runtime.pipeline import run_stream

    video_out, comparison = out / f"sharpened-{tag}.mp4", out / f"comparison-{tag}.mp4"
    side = out / "side_by_side.png"
    doing, temp = f"streaming {video} into {video_out}", {}
    try:
        with atomic_path(video_out, suffix=video_out.suffix) as tmp:
            temp[str(tmp)] = str(video_out)
            stats = run_stream(model, str(video), output=str(tmp),
                               stats_path=str(out / "stream-stats.json"), max_frames=frames,
                               threads=threads or None, quiet=quiet)
        print(f"streamed {stats['frames_processed']} frames at "
              f"{stats['throughput_fps']:.1f} fps end to end "
              f"(infer p50 {stats['latency_ms']['infer']['p50']:.0f} ms)")
        # What to look at: the same stream split down the middle, and one frame side by side.
        doing = f"streaming {video} into the comparison video {comparison}"
        with atomic_path(comparison, suffix=comparison.suffix) as tmp:
            temp[str(tmp)] = str(comparison)
            run_stream(model, str(video), output=str(tmp), compare=True, view="split",
                       max_frames=frames, threads=threads or None, quiet=quiet)
        doing = f"writing {side}"
        _side_by_side_frame(video, model, side, threads=threads)
    except _stream_errors() as e:
        if os.environ.get("SHARPEN_DEBUG"):
            raise
        cause = one_line(e)
        if isinstance(e, OSError) and e.strerror:   # not "[Errno 21] ...: 'tmp' -> 'final'"
            where = e.filename2 or e.filename
            cause = f"{e.strerror}: {where}" if where else e.strerror
        for tmp, final in temp.items():   # the user knows the final name, not ours
            cause = cause.replace(tmp, final)
        raise SharpenError(f"{_stage(5)}: {doing}: {cause}; the outputs of the stages before "
                           f"it are kept in {out}", exit_code=1) from e
    finally:
        # A stopped run's resume record names the temporary video, which atomic_path removes:
        # nothing is left to go on with.
        for tmp in temp:
            resume.remove(tmp)
    print(f"comparison: {comparison} (left blurred, right sharpened) and {side}")
    return video_out, comparison


# What stage 5 may meet that is no bug of the demo's (ModelError, SourceError and SinkError are
# RuntimeErrors, FrameError a ValueError; OpenCV's own error; a disk that is full or read-only;
# a frame out of memory, which the runtime raises as FrameOutOfMemory, naming its size).
def _stream_errors() -> tuple[type[BaseException], ...]:
    import cv2
    return (RuntimeError, ValueError, OSError, cv2.error, MemoryError)


# Each stage's short name, as its failure and its interruption name it.
STAGES = {1: "data and video", 2: "teacher pseudo-labels", 3: "distillation", 4: "export",
          5: "streaming", 6: "benchmark"}


def _stage(n: int) -> str:
    """Stage n as a failure names it: `stage 3 (distillation)`."""
    return f"stage {n} ({STAGES[n]})"


SUMMARY = "demo-summary.json"
# The summary's outputs, in the order it lists them.
OUTPUTS = ("video_in", "video_out", "comparison", "side_by_side", "labels", "student", "export",
           "stream_stats", "bench_report")


DEMO_LOCK = ".demo.lock"   # the stages' own locks (training's, export's) are other files


@dataclass
class _Run:
    """A demo run under way: the stage running (0: still checking the options), its --out
    once stage 1 starts, and the outputs of the stages it finished. Only these go into
    demo-summary.json: a file of an earlier run into the same --out is no output of this one."""
    stage: int = 0
    out: Path | None = None
    made: dict[str, Path] = field(default_factory=dict)
    t0: float = field(default_factory=time.time)
    held: contextlib.ExitStack | None = None

    def summary(self, ok: bool) -> dict:
        # List only what exists: a failed stage must never be announced as an output.
        done = {k: str(self.made[k]) for k in OUTPUTS if k in self.made and self.made[k].exists()}
        return {**done, "minutes": round((time.time() - self.t0) / 60, 1), "ok": ok}

    def write_failure(self, error: str, interrupted: bool = False) -> None:
        """demo-summary.json of a run that failed or was interrupted at self.stage: the stage,
        the cause and what the stages before it made, so that no summary in --out vouches
        for a run that did not finish."""
        if self.out is None or not self.out.is_dir():
            return
        summary = self.summary(ok=False)
        summary.update(failed_stage=self.stage, error=error, interrupted=interrupted)
        try:
            atomic_write_json(self.out / SUMMARY, summary)
        except OSError:   # the failure itself may be the disk's: said already, not hidden
            (self.out / SUMMARY).unlink(missing_ok=True)


def _failure(stage: int, e: BaseException) -> str:
    """A failure as the summary records it, its stage named once: `stage 3 (distillation): ...`."""
    said = str(e) if isinstance(e, SharpenError) else f"{type(e).__name__}: {one_line(e)}"
    return said if said.startswith("stage ") else f"{_stage(stage)}: {said}"


def _step(n: int, title: str, run: _Run | None = None) -> None:
    """Print stage n's header; `run` records it for the line a failure or interruption ends
    with."""
    if run is not None:
        run.stage = n
    print(f"\n=== [{n}/6] {title}", flush=True)


def _interrupted(signum: int, stage: int, out: Path) -> str:
    """The line a Ctrl-C (or SIGTERM, SIGHUP: `signum`) ends the demo with: the stage it
    stopped, and what of the run a re-run keeps (the labels, the one slow stage on a CPU; the
    rest is made again). It was `sharpen demo: interrupted`, which named neither."""
    by = "" if signum == signal.SIGINT else f" ({signal.Signals(signum).name})"
    said = f"sharpen demo: interrupted{by} at stage {stage}/6 ({STAGES[stage]})"
    labels = out / "labels"
    if labels.is_dir():
        made = "the labels made so far are" if stage <= 2 else "its labels are"
        return (f"{said}; {made} kept in {labels}: run the same command to go on from them "
                "(the stages after them run again)")
    return f"{said}; run the same command to start again"


def _check_args(args: argparse.Namespace) -> str | None:
    """Why these options cannot make a demo, found before stage 1 rather than at stage 3-6."""
    from distill.students import list_students

    if args.student not in list_students():
        from runtime.suggest import did_you_mean
        return (f"--student {args.student}: unknown student"
                f"{did_you_mean(args.student, list_students())}; choose from "
                f"{', '.join(list_students())}")
    if args.config:
        from distill.restormer import get_config
        try:
            get_config(args.config)
        except ValueError as e:
            return f"--teacher-config {args.config}: {e}"
    for flag, value, low in (("--steps", args.steps, 1), ("--label-images", args.label_images, 1),
                             ("--video-frames", args.video_frames, 2)):
        if value < low:
            return f"{flag} must be >= {low}, got {value}"
    from runtime.host import check_threads
    try:
        check_threads(args.threads, "--threads")
    except ValueError as e:
        return str(e)
    if not args.lr > 0:
        return f"--lr must be > 0, got {args.lr:g}"
    for flag, attr in (("--min-ssim-gain", "min_ssim_gain"),
                       ("--min-ssim-ratio", "min_ssim_ratio")):
        value = getattr(args, attr, None)
        if value is not None and not 0 <= value <= 1.5:
            return f"{flag} must be in [0, 1.5], got {value:g}"
    return None


def _missing_weights(args: argparse.Namespace, student: Path, teacher: Path) -> str | None:
    """Weights that are not there, named by the flag that gave them; a missing teacher with
    where the official one comes from (the README's `--teacher-weights motion_deblurring.pth`
    is a download of the user's). It said to pass --teacher-weights, which the user had."""
    from distill.teacher import OFFICIAL_WEIGHTS_HELP

    if args.teacher_weights and not teacher.exists():
        return (f"--teacher-weights {teacher}: no such file. {OFFICIAL_WEIGHTS_HELP} Leave "
                "--teacher-weights (and --teacher-config) out for the shipped teacher.")
    if args.student_weights and not student.exists():
        return (f"--weights {student}: no such file; leave it out to start from the shipped "
                f"models/student-{args.student}.pt")
    for what, p in (("student", student), ("teacher", teacher)):
        if not p.exists():
            return (f"the {what} weights {p} are not there. The shipped models live in "
                    "models/ (see models/README.md) or $SHARPEN_MODELS; pass --weights / "
                    "--teacher-weights.")
    return None


def _check_checkpoints(student: Path, teacher: Path, arch: str,
                       config: str | None = None) -> str | None:
    """A teacher given as the student or the other way round, a student of another
    architecture than --student, or a --teacher-config the teacher's weights do not take,
    named before the long stages (the last failed at stage 2)."""
    from distill.checkpoint import FORMAT, CheckpointError, read_checkpoint

    try:
        s = read_checkpoint(student)
        t = read_checkpoint(teacher)
    except CheckpointError as e:
        return str(e)
    if s.get("format") != FORMAT or s.get("kind") != "student":
        return (f"--weights {student} is not a student checkpoint of this project "
                f"(kind {s.get('kind')!r}); it is the checkpoint the demo fine-tunes")
    if s.get("arch") != arch:
        return (f"--weights {student} is a {s.get('arch')!r} student, not {arch!r}: pass "
                f"--student {s.get('arch')}")
    if t.get("format") == FORMAT and t.get("kind") != "teacher":
        return f"--teacher-weights {teacher} is a {t.get('kind')} checkpoint, not a teacher"
    if config or t.get("format") != FORMAT:   # built as stage 2 builds it: config vs weights
        from distill.teacher import load_teacher_model
        try:
            load_teacher_model(teacher, config)
        except CheckpointError as e:
            return str(e)
    return None


def _check_out(out: str, spec: str) -> str | None:
    """Why --out cannot lie inside the --data folder: stage 1 writes the synthetic video there
    and stage 2 the labels and the clips' frames, which the folder then holds as data (the
    teacher labelled the demo's own 1080p frames as the user's footage)."""
    from distill.data.sources import SourceError, parse_spec
    from runtime.output_paths import refuse_output_inside

    try:
        _, raw = parse_spec(spec)
    except SourceError:
        return None   # said by the source itself, with the kinds it knows
    try:   # as `sharpen labels` refuses its --out inside --data
        refuse_output_inside(Path(out).expanduser(), Path(raw).expanduser() if raw else None,
                             "--data", what="the demo's video, labels and exports")
    except ValueError as e:
        return str(e)
    return None


def _said_as(run: str) -> Callable[[str], None]:
    """A label run's `say`, its lines headed by which run it is: the training and validation
    runs of one --data printed the same "SOURCE; labelling N" line."""
    return lambda msg: print(f"{run}: {msg}")


def _no_labels(caches: dict[str, tuple[Path, LabelStats]]) -> str | None:
    """Why stage 3 has nothing to distil from (a cache, training or validation, without one
    finished label: every image unreadable), said at stage 2 rather than as the trainer's
    traceback at stage 3."""
    from distill.data.label_cache import LabelCache

    for what, (cache, st) in caches.items():
        if not cache.is_dir() or not len(LabelCache(cache)):
            return (f"no {what} label was made: {st.failed} of the {count(st.total, 'image')} "
                    "it took "
                    f"could not be labelled (each is named above), so there is nothing to "
                    "distil from; give --data images that can be read")
    return None


HOLD_OUT = 0.2   # of a one-split source's images, kept for validation


def _frame_count(clip: Path) -> int:
    """The clip's decodable frames (as labelling counts them); a large number where none is
    found, so that --video-frames stands in the message."""
    from distill.data.sources import SourceError, _count_frames
    try:
        return _count_frames(clip)
    except SourceError:
        return 1 << 30


def _user_clip(spec: str) -> Path | None:
    """The clip of the user's --data that stage 5 streams: the video itself, or the first clip
    of a folder of footage; None for other data (stage 5 then streams the synthetic 1080p
    video). With --data footage the demo streamed and showed only that synthetic video."""
    from distill.data.sources import (SourceError, _images_under, detect_kind, is_video,
                                      parse_spec)
    try:
        kind, raw = parse_spec(spec)
    except SourceError:
        return None
    if not raw or kind not in (None, "folder", "video"):
        return None
    # Absolute: demo-summary.json lists it with the outputs, read from any folder.
    path = Path(raw).expanduser().absolute()
    try:
        if path.is_file():
            return path if is_video(path) and _readable_clip(path) else None
        if path.is_dir() and (kind == "folder" or detect_kind(path) == "folder"):
            # Labelling leaves out (and names) a clip OpenCV cannot read; so does stage 5,
            # which streamed the first clip, damaged or not, into a traceback.
            return next((path / c for c in _images_under(path, kind=is_video)
                         if _readable_clip(path / c)), None)
    except (OSError, SourceError):
        pass
    return None


def _readable_clip(path: Path) -> bool:
    """Whether OpenCV opens the clip and decodes its first frame."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        return cap.isOpened() and cap.read()[0]
    finally:
        cap.release()


def _cache_inputs(cache: Path) -> list[str]:
    """The inputs of a label cache's finished entries (a clip's frames as the cache saved
    them): the user's own images, for INT8 calibration and the parity check."""
    from distill.data.label_cache import LabelCache
    return [str(inp) for inp, _, _ in LabelCache(cache).pairs()]


def _hold_out(spec: str) -> "HoldOut":
    """Where the demo validates on the user's data: `sharpen labels --hold-out`'s rule
    (`distill.data.holdout`) with HOLD_OUT: the source's val split, else whole clips or
    folders of its train split, else its last fifth of images (with a gap before them for
    video frames and numbered frame folders); its test split is left for stage 6.
    The rule reads only the source, so a re-run into the same --out keeps it."""
    from distill.data.holdout import hold_out
    return hold_out(spec, HOLD_OUT, needs="the demo")


def _scored_set(spec: str) -> tuple[str | None, str]:
    """What stage 6's quality gate scores: (the `sharpen bench --data` for it, None for bench's
    default, the embedded test split; the line that says which and why). The user's --data
    where it has a test split of blurred/sharp pairs: ground truth the fine-tune never saw
    (it trains on the train split and validates on val, else on images held out of train).
    Anything else cannot be scored against ground truth without scoring what was trained on.
    Stage 6 scored the embedded set whatever --data was, without a word."""
    embedded = "quality gate scored on the embedded test split"
    if spec == "embedded":
        return None, f"{embedded} (held out of the fine-tune)"
    from benchmarks.quality import QUICK_LIMIT, scored_samples
    from distill.data.sources import SourceError, resolve_source

    try:
        info = resolve_source(spec, "test", frames=False)
    except SourceError:
        info = None
    # The bench runs in quick mode without --limit: QUICK_LIMIT of the pairs, as it says too.
    scored, pairs = scored_samples(info, QUICK_LIMIT) if info else ([], [])
    if info is not None and info.split == "test" and pairs:
        n = count(len(pairs), "blurred/sharp pair")
        which = f"{len(scored)} of the {n}" if len(scored) < len(pairs) else f"the {n}"
        return spec, (f"quality gate scored on {which} of your data's test split (held out of "
                      "the fine-tune)")
    why = ("it has no ground truth (sharp images) to score against" if info and not pairs
           else "it has no test split of blurred/sharp pairs held out of the fine-tune, and "
           "scoring images the student was tuned on would flatter it")
    return None, f"{embedded}, not your data: {why}"


def _validation_split(spec: str) -> tuple[str, set[str], set[str]]:
    """(split, names left out of the training labels, names left out of the validation
    labels) of `_hold_out`."""
    plan = _hold_out(spec)
    return plan.split, set(plan.not_train), set(plan.not_val)


def cmd_demo(args: argparse.Namespace) -> int:
    run = _Run()
    with contextlib.ExitStack() as held:   # the --out lock, held to the last word said
        run.held = held
        try:
            return _run_demo(args, run)
        except KeyboardInterrupt as e:
            if not run.stage:   # still checking the options: nothing of the run to speak of
                raise
            from runtime.cli_errors import interrupt_exit_code
            code = interrupt_exit_code(e)
            said = _interrupted(code - 128, run.stage, Path(args.out).resolve())
            run.write_failure(said.removeprefix("sharpen demo: "), interrupted=True)
            print(said, file=sys.stderr)
            return code
        except Exception as e:   # a failed stage (or a bug's traceback): recorded, then said
            if run.stage:
                run.write_failure(_failure(run.stage, e))
            raise


def _run_demo(args: argparse.Namespace, run: _Run) -> int:
    from distill.checkpoint import CheckpointError
    from distill.config import load_config
    from distill.data.embedded import build_embedded, default_root
    from distill.data.sources import SourceError
    from distill.data.labels import run_labels
    from distill.teacher import BUNDLED_TEACHER, OVERLAP, TILE, models_dir
    from distill.trainer import SharedMemoryFull, Trainer

    # Raised, not printed: the entry point says `sharpen demo: error: ...` (exit 2), as for
    # every other command; the bare `error: ...` named no command.
    problem = _check_args(args)
    if problem:
        raise SharpenError(problem)
    student_ckpt = Path(args.student_weights or models_dir() / f"student-{args.student}.pt")
    teacher = args.teacher_weights or str(models_dir() / BUNDLED_TEACHER)
    problem = (_missing_weights(args, student_ckpt, Path(teacher))
               or _check_checkpoints(student_ckpt, Path(teacher), args.student, args.config))
    if problem:
        raise SharpenError(problem)
    val_split, not_train, not_val, plan = "val", frozenset(), frozenset(), None
    if args.data != "embedded":
        problem = _check_out(args.out, args.data)
        if problem:
            raise SharpenError(problem)
        try:
            plan = _hold_out(args.data)
        except ValueError as e:
            raise SharpenError(str(e)) from None
        val_split, not_train, not_val = plan.split, plan.not_train, plan.not_val
    from runtime.locale_text import utf8_name
    from runtime.output_paths import make_folder
    from runtime.sinks import SinkError
    try:
        # Stage 1's video and the crops are OpenCV's to write: a name it crashes on is said
        # now, not after the data set is built and labelled.
        utf8_name(Path(args.out).expanduser(), SinkError)
        make_folder(args.out, "--out")
    except SinkError as e:
        raise SharpenError(str(e)) from None
    from distill.teacher import set_torch_threads
    threads = stage_threads(args.threads)
    set_torch_threads(threads)
    if not args.threads and (note := limit_note("PyTorch, ONNX Runtime and LiteRT")):
        print(f"note: {note}", file=sys.stderr)
    out = Path(args.out).resolve()
    # A second demo into this --out was refused by a stage's own lock, in its words (out=,
    # out_dir), after it had removed the first one's summary: refused here, naming --out.
    from distill.run_lock import RunLocked, run_lock
    try:
        run.held.enter_context(run_lock(out, doing="running the demo", flag="--out",
                                        name=DEMO_LOCK))
    except RunLocked as e:
        raise SharpenError(str(e)) from None
    # A run into an --out of an earlier one: that run's summary goes before anything else, so
    # that a run that fails, is interrupted or killed never leaves it vouching for this one.
    (out / SUMMARY).unlink(missing_ok=True)
    run.out, run.t0 = out, time.time()

    clip = None if args.data == "embedded" else _user_clip(args.data)
    _step(1, f"data: {'embedded test images' if args.data == 'embedded' else args.data}"
             + ("" if clip else " and a blurred 1080p video"), run)
    if args.data == "embedded":
        try:
            root = build_embedded(default_root(), splits=("train", "val", "test"),
                                  progress=not args.quiet)
        except SourceError as e:   # a cache another user made: a line, not a traceback
            raise SharpenError(f"{_stage(1)}: {e}", exit_code=1) from None
        # The CPU teacher needs ~3 s per 320x320 image: label centre crops of a few training
        # images spread over the split, so the demo stays within minutes.
        train_spec = f"paired:{_training_crops(root / 'train', out / 'train-crops', args.label_images)}"
        val_spec = "embedded"
        print(f"embedded dataset: {root}/{{train,val,test}}/{{input,target}}")
    else:
        train_spec = val_spec = args.data
        print(f"your data: {args.data}")
        if plan is not None and plan.rule != "split":
            why = (f"it {plan.reason.removeprefix(f'{args.data} ')}; held out" if plan.reason
                   else "it has no validation or test split: held out of training")
            print(f"{why} for validation: {plan.describe()}")
            if short := plan.shortfall():
                print(f"warning: held out for validation: {short}", file=sys.stderr, flush=True)
    if clip is not None:
        video, tag = clip, clip.stem
        print(f"stage 5 streams your clip {clip} (its first "
              f"{count(min(args.video_frames, _frame_count(clip)), 'frame')})")
    else:
        video, tag = make_demo_video(out / "blurred-1080p.mp4", frames=args.video_frames,
                                     progress=not args.quiet), "1080p"
        if args.data != "embedded":
            print("your data has no video clip: stage 5 streams a synthetic one")
        print(f"blurred video: {video}")
    run.made["video_in"] = video

    _step(2, f"teacher pseudo-labels ({Path(teacher).name}, tiled + Gaussian blending)", run)
    labels = out / "labels"
    try:
        made = {"training": (labels / "train", run_labels(
            train_spec, labels / "train", teacher_weights=teacher, config=args.config,
            tile=TILE, overlap=OVERLAP, limit=args.label_images, progress=not args.quiet,
            say=_said_as("training labels"), exclude=not_train))}
        made["validation"] = (labels / "val", run_labels(
            val_spec, labels / "val", teacher_weights=teacher, config=args.config,
            tile=TILE, overlap=OVERLAP, limit=args.label_images,
            split=None if val_split == "train" else val_split, progress=not args.quiet,
            say=_said_as("validation labels"), exclude=not_val))
    except (CheckpointError, ValueError) as e:
        raise SharpenError(str(e)) from None
    problem = _no_labels(made)
    if problem:
        raise SharpenError(f"{_stage(2)}: {problem}", exit_code=1)
    run.made["labels"] = labels

    _step(3, f"short distillation of `{args.student}` from {student_ckpt.name} "
             f"({count(args.steps, 'step')})", run)
    yaml_cfg = Path(__file__).resolve().parents[1] / "configs" / f"distill-{args.student}.yaml"
    from distill.checkpoint import read_checkpoint
    # The architecture comes from the checkpoint being fine-tuned (e.g. `fast` with deep levels).
    arch_args = json.dumps(read_checkpoint(student_ckpt).get("arch_args", {}))
    cfg = load_config(str(yaml_cfg) if yaml_cfg.exists() else None, [
        f"out={out / 'distill'}", f"model.arch={args.student}", f"model.args={arch_args}",
        f"init={student_ckpt}", "val_start=true",
        f"data.labels={labels / 'train'}", f"data.val_labels={labels / 'val'}",
        # 10 steps of warmup, under half the run for a short --steps (the trainer warns of a
        # warmup as long as the run: the rate would never reach --lr).
        f"optim.steps={args.steps}", f"optim.warmup_steps={min(10, max(1, args.steps // 2))}",
        f"optim.lr={args.lr:g}",
        "data.batch_size=8", "data.crop=128", "data.workers=1", f"val_every={args.steps}",
        f"ckpt_every={args.steps}", "resume=never", *_demo_loss(labels / "train")])
    trainer = Trainer(cfg, quiet=args.quiet)
    try:
        metrics = trainer.fit()
    except (ValueError, FileNotFoundError) as e:   # the data it reads, not a bug: one line
        raise SharpenError(f"{_stage(3)}: {one_line(e)}", exit_code=1) from None
    except SharedMemoryFull as e:   # the trainer's cures name settings the demo does not take
        raise SharpenError(f"{_stage(3)}: its data-loading worker could not pass a batch "
                           f"through shared memory (/dev/shm: {e.why}): give it room (a "
                           "container: docker run --shm-size 2g) and run the same command "
                           "again (the labels made are kept)") from None
    if trainer._stop:   # the trainer saved and stopped; a re-run fine-tunes anew
        said = _interrupted(int(trainer._stop), 3, out) + "; nothing exported"
        run.write_failure(said.removeprefix("sharpen demo: "), interrupted=True)
        print(said, file=sys.stderr)
        return 128 + int(trainer._stop)
    for when, m in (("before", trainer.start_metrics), ("after", metrics)):
        print(f"validation {when} the fine-tune: " + "  ".join(
            f"{k}={v:.4f}" for k, v in m.items() if k.endswith("ssim")))
    # Which weights stage 4 exports: from the two scores alone a user had to work out that a
    # fine-tune that lost left the shipped student unchanged.
    if trainer.best_step == 0:
        print(f"best.pt: the start, {student_ckpt.name} unchanged (the fine-tune did not beat "
              "it on validation): that is what is exported")
    elif trainer.best_step is not None:
        print(f"best.pt: step {trainer.best_step} of the fine-tune, better on validation than "
              "the start")

    _step(4, "export: ONNX, ONNX INT8, TFLite INT8 with the parity gate", run)
    from distill.checkpoint import slim_checkpoint

    from optimize.export import export, print_table
    student = slim_checkpoint(out / "distill" / "best.pt", out / f"student-{args.student}.pt")
    run.made["student"] = student
    if args.data == "embedded":
        calib = str(out / "train-crops" / "input")
        parity = str(default_root() / "test" / "input")
    else:   # the user's own images (they were scikit-image's sample photos)
        calib, parity = _cache_inputs(labels / "train"), _cache_inputs(labels / "val")
        print(f"INT8 calibration on your {count(len(calib), 'training image')}, parity on your "
              f"{count(len(parity), 'held-out image')}")
    # calib_size=None: the default crop side, fitted to the calibration images (a 256x172
    # embedded crop, the user's small frames) without export's warning, which names
    # --calib-size, a flag the demo does not have; the report records the side used.
    report = export(student, ["onnx", "onnx-int8", "tflite-int8"], out / "export",
                    calib=calib, calib_size=None, parity_images=parity, latency_runs=3,
                    threads=threads, quiet=args.quiet)
    print_table(report)
    run.made["export"] = out / "export"
    if report.failed:   # (a format this machine cannot build is skipped: the rest stream)
        raise SharpenError("an artifact failed its parity check (see the table)", exit_code=1)
    passed = [r for r in report.results if r.status == "pass" and r.latency_ms_1080p]
    if not passed:
        raise SharpenError("no exported model passed with a latency to stream with",
                           exit_code=1)
    best = min(passed, key=lambda r: r.latency_ms_1080p)

    _step(5, f"stream the video through the runtime ({Path(best.file).name})", run)
    video_out, comparison = _stream_stage(best.file, video, out, tag, args.video_frames,
                                          args.quiet, threads)
    run.made.update(video_out=video_out, comparison=comparison,
                    side_by_side=out / "side_by_side.png", stream_stats=out / "stream-stats.json")

    bench_rc = 0
    if not args.no_bench:
        _step(6, "benchmark report (quick mode)", run)
        from benchmarks.cli import gate_argv
        from benchmarks.cli import main as bench_main
        gate = gate_argv(args)
        teacher_opts = ["--teacher-weights", teacher] + (
            ["--teacher-config", args.config] if args.config else [])
        scored, said = _scored_set(args.data)
        print(said)
        print(f"quality gate: {' '.join(gate)} (see `sharpen demo --help`)")
        bench_rc = bench_main(["--out", str(out / "bench"), "--weights", str(student),
                               *teacher_opts, *(["--data", scored] if scored else []), *gate,
                               *(["--threads", str(threads)] if threads else []),
                               *(["--quiet"] if args.quiet else [])])
        run.made["bench_report"] = out / "bench" / "report.md"
    else:
        _step(6, "benchmark report skipped (--no-bench)")

    if bench_rc != 0:
        missing = "" if (out / "bench" / "report.md").exists() else "; no report was written"
        run.write_failure(f"{_stage(6)}: the benchmark failed (exit {bench_rc}{missing})")
        print(f"\nsharpen demo: error: the benchmark stage failed (exit {bench_rc}{missing}). "
              f"Outputs of the stages that finished are in {out}.", file=sys.stderr)
        return bench_rc
    summary = run.summary(ok=True)
    atomic_write_json(out / SUMMARY, summary)
    print(f"\nDone in {summary['minutes']} min. Outputs:")
    for k, v in summary.items():
        if k in OUTPUTS:
            print(f"  {k:13s} {v}")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser(
        "demo", formatter_class=HelpFormatter,
        help="run the whole pipeline end to end on the embedded default",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None)
    p.add_argument("--out", "--output", default="demo-output", metavar="DIR",
                   help="output folder")
    p.add_argument("--data", default="embedded", metavar="SPEC",
                   help="training data SPEC for labels + distillation (embedded, a GoPro root, "
                   "paired folder, folder of footage, video, or kind:path); validated on its "
                   "val split, else on a fifth of it held out of training (its test split left "
                   "for stage 6): whole clips or folders where it has several, else its last "
                   "images (as `sharpen labels --hold-out 0.2`)")
    p.add_argument("--teacher-weights", default=None, metavar="PATH", help=WEIGHTS_HELP)
    p.add_argument("--teacher-config", "--config", dest="config", default=None, metavar="NAME",
                   help=CONFIG_HELP)
    p.add_argument("--student", default="fast", help="student architecture to fine-tune")
    p.add_argument("--weights", "--student-weights", dest="student_weights", default=None,
                   metavar="CKPT",
                   help="student checkpoint to start from (default: models/student-NAME.pt)")
    p.add_argument("--steps", type=int, default=150, help="distillation steps")
    p.add_argument("--lr", type=float, default=5e-5,
                   help="peak learning rate of the short distillation (small: it fine-tunes "
                   "the shipped student on a handful of crops, which a larger rate overfits)")
    p.add_argument("--label-images", type=int, default=6,
                   help="training images the teacher labels (with --data embedded: 256x256 centre "
                   "crops, one teacher tile each)")
    p.add_argument("--video-frames", type=int, default=24,
                   help="frames of the synthetic 1080p video, or, when --data is a clip or a "
                   "folder of footage holding clips, frames of its first clip streamed at "
                   "stage 5")
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help=threads_help("training and inference"))
    p.add_argument("--no-bench", "--skip-bench", dest="no_bench", action="store_true",
                   help="skip the benchmark report")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bars (stage headers and results are still printed)")
    from benchmarks.cli import add_gate_options
    add_gate_options(p, gain_default=DEMO_MIN_SSIM_GAIN)
    p.set_defaults(func=cmd_demo)
