"""`sharpen train-teacher`, `sharpen distill` and `sharpen train`: a config run by the
trainer, its outcome said, and the commands that follow a distillation. Imports
without torch."""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from runtime.cli_errors import SharpenError
from runtime.console import shell_join
from .command_messages import refuse, note_line


def _without_worker_traceback(msg: str) -> str:
    """An error raised in a data-loader worker comes back with the worker's traceback in its
    message; the user needs its last line, the error itself."""
    if "Traceback (most recent call last)" not in msg:
        return msg
    last = [ln for ln in msg.strip().splitlines() if ln.strip()][-1]
    return re.sub(r"^[\w.]+(Error|Exception): ", "", last.strip())


def _train(args: argparse.Namespace, task: str) -> int:
    from .config import TrainConfig, load_config
    from .teacher import check_device, check_threads

    check_threads(args.threads)
    try:   # task "" until the file or an override names one: the command decides it below
        cfg = load_config(args.config, args.overrides, base=TrainConfig(task=""))
    except (FileNotFoundError, KeyError, ValueError, TypeError) as e:
        return refuse(e.args[0] if isinstance(e, KeyError) and e.args else str(e))
    if not cfg.out:
        return refuse("out= is empty: give the run's folder (e.g. out=runs/mine)")
    _warn_of_init_as_config(args.config, cfg.init)
    check_device(cfg.device, "device=")
    declared, wanted = cfg.task, "student" if task == "student" else "teacher"
    if declared and declared != wanted:
        # The command decided the task and the config's `task:` was ignored: a distillation
        # config run by `train` trained on the embedded ground truth, exit 0.
        which = ("a distillation config (task: student): run it with `sharpen distill`"
                 if declared == "student" else "a ground-truth config (task: teacher): run it "
                 "with `sharpen train` (a student) or `sharpen train-teacher` (Restormer)")
        return refuse(f"{args.config or 'task='} is {which}")
    # `train` fits any registered model to ground truth; the trainer calls that task "teacher".
    cfg.task = "teacher" if task == "supervised" else task
    if task == "teacher" and cfg.model.arch != "restormer":
        if _arch_given(args):
            return refuse(f"`sharpen train-teacher` trains the Restormer teacher, not "
                        f"model.arch={cfg.model.arch}; use `sharpen train` to fit a student "
                        "to ground truth, or `sharpen distill` to distil it")
        cfg.model.arch = "restormer"
        cfg.model.args = cfg.model.args or {"config": "small"}
    if task == "student" and cfg.model.arch == "restormer":
        return refuse("`sharpen distill` trains students; use `sharpen train-teacher` for "
                    "Restormer")
    from .config import ConfigValueError, check_config
    try:
        check_config(cfg)
    except ConfigValueError as e:
        return refuse(_with_origin(e, args))
    except ValueError as e:
        return refuse(str(e))
    if getattr(args, "print_config", False):
        return _print_config(cfg, args)
    # This process's own: torchrun starts one process per rank, each running this command
    # (and sets OMP_NUM_THREADS=1 for each, which a CPU limit then does not override).
    from .dist import DistInfo
    from .teacher import set_torch_threads
    set_torch_threads(args.threads, note_line if DistInfo.from_env().main else None)
    from .interrupts import TrainingInterrupted, resume_hint
    from .trainer import ProcessLost, TrainingDiverged, run_training
    from .config import run_folder_of
    # `--config RUN/config.yaml out=NEW`: a run reproduced, compared with the one it copies.
    reference = run_folder_of(args.config)
    if reference is not None and Path(cfg.out).resolve() == reference:
        reference = None   # that run itself, resumed: its checkpoint is compared instead
    try:
        result = run_training(cfg, quiet=args.quiet, command=_command_line(args),
                              reference=reference)
    except ConfigValueError as e:
        return refuse(_with_origin(e, args))
    except (ValueError, FileNotFoundError) as e:
        return refuse(_without_worker_traceback(str(e)))
    except TrainingInterrupted as e:
        from .dist import DistInfo
        if DistInfo.from_env().main:   # under torchrun every rank stops: say it once
            print(f"sharpen {args.command}: {e}", file=sys.stderr)
        return 128 + e.signum
    except (TrainingDiverged, ProcessLost) as e:
        raise SharpenError(str(e), exit_code=1) from None
    from .dist import DistInfo
    if not DistInfo.from_env().main:   # under torchrun: rank 0 validates and reports
        return 0
    metrics = result.metrics
    from .validation import val_summary
    # As the console's validation lines read (key=value pairs in a mixed order did not).
    shown = val_summary(metrics)
    if shown and "step" in metrics:
        # Beside best.pt's name these read as its score: they are last.pt's (the last
        # validation), and best.pt's own follow.
        shown = f"last validation (step {metrics['step']}): {shown}"
    if (Path(cfg.out) / "best.pt").exists() and result.best:
        shown = f"{shown}; {result.best}" if shown else result.best
    out = Path(cfg.out)
    written = [str(out / n) for n in ("best.pt", "last.pt") if (out / n).exists()]
    if result.step < cfg.optim.steps:
        # Exit 0 (the budget was asked for), but not "done": that read as a finished run.
        print(f"stopped early at step {result.step} of {cfg.optim.steps} (time or step budget "
              f"reached): {', '.join(written)}   {shown}; {resume_hint(cfg)}")
    elif not written:
        # A branch (resume=OTHER/last.pt out=NEW) of a run already at optim.steps: nothing was
        # trained or saved in NEW (the warning above says so); "done: " naming no file and
        # "set data.val_labels" (though it was set) read as a run that lost its checkpoints.
        print(f"nothing trained: {out} holds no checkpoint   {shown}")
    else:
        print(f"done: {', '.join(written)}   {shown}")
        if task == "student":
            for line in _after_distill(cfg, result.best_step):
                print(line)
    if written and not (out / "best.pt").exists():
        has_val = cfg.data.val_labels if cfg.task == "student" else cfg.data.val
        print("note: no best.pt: nothing was validated" + (
            "" if has_val else " (set data.val_labels for `distill`, data.val for `train`)"),
            file=sys.stderr)
    return 0


def _print_config(cfg: Any, args: argparse.Namespace) -> int:
    """The dry run: the model is built as the run would build it (an arch's size multiple
    against data.crop), the settings printed as config.yaml records them; no data is read."""
    import yaml

    from .config import ConfigValueError
    from .model_build import build_model
    try:
        build_model(cfg)
    except ConfigValueError as e:
        return refuse(_with_origin(e, args))
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True), end="")
    return 0


def _with_origin(e: Any, args: argparse.Namespace) -> str:
    """A setting's refusal with where it was set: the config file's line or the override."""
    from .config import setting_origin
    origin = setting_origin(args.config, args.overrides, e.key)
    if not origin or origin.removeprefix("by the override ") in str(e):
        return str(e)   # a default, or the override quoted already (model.arch=fastt: ...)
    return f"{e} (set {origin})"


def _after_distill(cfg: Any, best_step: int | None = None) -> list[str]:
    """The commands that follow a finished `distill`, as `labels` ends with the distill one:
    the run's result beside the weights it started from, on the held-out frames of footage
    (evaluate scores images: a clip's are in its validation cache's frames/), and the export
    that `sharpen run` needs. Each is said only where its inputs are there. A best.pt still at
    step 0 of an init= run is those weights: last.pt is compared, which differs from them."""

    from .data.label_cache import FRAMES_DIR
    out = Path(cfg.out)
    weights = out / "best.pt" if (out / "best.pt").exists() else out / "last.pt"
    lines = []
    unchanged = bool(cfg.init) and best_step == 0 and weights.name == "best.pt"
    frames = Path(cfg.data.val_labels) / FRAMES_DIR if cfg.data.val_labels else None
    if frames is not None and frames.is_dir() and weights.name == "best.pt":
        tried = out / "last.pt" if unchanged else weights
        words = ["sharpen", "evaluate", "--weights", *([str(cfg.init)] if cfg.init else []),
                 str(tried), *_label_teacher(Path(cfg.data.val_labels)),
                 "--data", str(frames), "--out", str(out / "eval")]
        before = f"init={cfg.init}" if cfg.init else "the blurred input"
        what = f"the fine-tune's last.pt (best.pt is init={cfg.init})" if unchanged else "it"
        lines.append(f"compare {what} with {before} on the held-out frames (metrics, "
                     f"side_by_side.png): {shell_join(words)}")
    elif (test := _test_split_source(cfg.data)) and weights.name == "best.pt":
        # Paired labels (a corpus's val split): its test split was neither trained nor chosen
        # on, and has ground truth; evaluate scores it by default.
        tried = out / "last.pt" if unchanged else weights
        words = ["sharpen", "evaluate", "--weights", *([str(cfg.init)] if cfg.init else []),
                 str(tried), "--data", str(test), *_gopro_blur_of(Path(cfg.data.val_labels)),
                 "--out", str(out / "eval")]
        before = f"init={cfg.init}" if cfg.init else "the blurred input"
        what = f"the fine-tune's last.pt (best.pt is init={cfg.init})" if unchanged else "it"
        lines.append(f"compare {what} with {before} on the test split of {test}, never trained "
                     f"on (metrics, side_by_side.png): {shell_join(words)}")
    export = ["sharpen", "export", "--weights", str(weights), "--out", "export/"]
    # "it" after a compare line of last.pt read as the fine-tune: say what best.pt holds.
    what = (f"best.pt for `sharpen run` (the init={cfg.init} weights: no validation of the "
            "fine-tune beat them)" if unchanged else "it for `sharpen run`")
    lines.append(f"export {what}: {shell_join(export)}")
    return lines


def _test_split_source(data: Any) -> Path | None:
    """The source the validation cache was labelled from where that source has a test split
    (a corpus, a paired root with split folders) that neither cache was labelled from: None
    for footage, a folder without splits or with an empty test split, a cache whose run.json
    names no source that is here, or labels of that test split (trained on, or best.pt chosen
    on it)."""
    from .data.label_cache import read_run_record
    if not data.val_labels:
        return None
    record = read_run_record(Path(data.val_labels))
    source = record.get("data")
    if not (isinstance(source, str) and record.get("split")):
        return None
    for cache in (data.labels, data.val_labels):
        used = read_run_record(Path(cache)) if cache else {}
        if used.get("split") == "test" and used.get("data") == source:
            return None
    if not (Path(source) / "test").is_dir():
        return None
    from .data.sources import SourceError, resolve_source
    flag = _gopro_blur_of(Path(data.val_labels))   # GoPro's blurred folder as labelled
    try:   # an empty test split (a corpus of a few clips, each whole in train) scores nothing
        resolve_source(source, split="test", gopro_blur=flag[1] if flag else "blur",
                       progress=False, frames=False)
    except (SourceError, OSError, ValueError):
        return None
    return Path(source)


def _gopro_blur_of(cache: Path) -> list[str]:
    """`--gopro-blur X` where CACHE was labelled from GoPro's X/ other than blur/: the compare
    line scored blur/ frames of a student taught on blur_gamma/ ones, and a set copied without
    blur/ had no compare line."""
    from .data.label_cache import read_run_record
    opts = read_run_record(cache).get("teacher_options")
    opts = opts if isinstance(opts, list) else []
    at = opts.index("--gopro-blur") if "--gopro-blur" in opts[:-1] else None
    return [] if at is None else ["--gopro-blur", str(opts[at + 1])]


def _label_teacher(cache: Path) -> list[str]:
    """The --weights (and --teacher-config) of the teacher that labelled CACHE, for evaluate's
    "PSNR to the teacher's output" on footage without ground truth: the shipped one by its
    name, another by its path; `teacher` where the manifest does not name a file."""
    from .data.label_cache import MANIFEST, read_manifest_entries
    from .teacher import BUNDLED_TEACHER, models_dir
    entry = next(iter(read_manifest_entries(cache / MANIFEST).values()), {})
    path = entry.get("teacher_weights")
    shipped = (models_dir() / BUNDLED_TEACHER).resolve()
    if not path or not Path(path).is_file() or Path(path).resolve() == shipped:
        return ["teacher"]
    config = entry.get("teacher_config")
    return [str(path), *(["--teacher-config", config] if config not in (None, "checkpoint")
                         else [])]


def _command_line(args: argparse.Namespace) -> str:
    """This command as a user would type it again, for train.log (dist.command_line)."""
    from .dist import command_line
    return command_line(getattr(args, "argv", None))


def _warn_of_init_as_config(config: str | None, init: str | None) -> None:
    """A shipped model records its recipe, whose init: is the model's own path (it fine-tuned
    the file's earlier version): given as --config, it trained from the shipped weights, a
    fine-tune of the result rather than its run again, said only in the README."""
    from .dist import DistInfo
    if not (config and init and os.path.isfile(config) and os.path.isfile(init)
            and DistInfo.from_env().main):
        return
    from .config import is_checkpoint
    if os.path.samefile(config, init) and is_checkpoint(Path(config)):
        from runtime.warn import warn
        warn(f"init: {init} is the checkpoint given as --config: this run starts from its "
             "trained weights, not from those its run started from (an earlier version of "
             "the file)")


def _arch_given(args: argparse.Namespace) -> bool:
    """Whether the user named model.arch (an override or the config file), rather than the
    default that train-teacher replaces with restormer."""
    if any(o.split("=", 1)[0].strip() == "model.arch" for o in args.overrides or []):
        return True
    from .config import setting_origin
    return bool(args.config and setting_origin(args.config, None, "model.arch"))


def cmd_train_teacher(args: argparse.Namespace) -> int:
    return _train(args, "teacher")


def cmd_distill(args: argparse.Namespace) -> int:
    return _train(args, "student")


def cmd_train(args: argparse.Namespace) -> int:
    return _train(args, "supervised")
