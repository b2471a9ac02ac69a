"""`sharpen evaluate`: checkpoints and exported artifacts scored over a data source, with
metrics.json and the side-by-side figure. Imports without torch."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runtime.cli_errors import SharpenError
from runtime.console import count
from runtime.host import limit_note
from .command_messages import refuse, note_line, out_of_range


def _complete_results(path: Path) -> bool:
    """`path` holds the results of an evaluate run that finished."""
    import json
    try:
        res = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(res, dict) and res.get("interrupted") is False


def _remove_stale_partial(out: Path) -> None:
    """A finished run's results replace the part an interrupted run kept beside the run before
    it: left there, it was another run's numbers read as this one's."""
    stale = [p for p in (out / "metrics.partial.json", out / "per_image.partial.csv",
                         out / "side_by_side.partial.png") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    if stale:
        print(f"removed {', '.join(p.name for p in stale)}: the part an interrupted run left",
              file=sys.stderr)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """`_evaluate`, removing the --out folders it made when the run is refused (a video or a
    missing folder as --data, a missing checkpoint...) or interrupted before an image was
    scored: it left an empty folder behind."""
    from runtime.output_paths import folders_to_make, remove_if_empty

    made = folders_to_make(args.out) if args.out else []
    try:
        return _evaluate(args)
    except (SharpenError, KeyboardInterrupt):   # (interrupted later: _evaluate writes a part)
        remove_if_empty(made)   # deepest first, only while empty
        raise


def _can_draw() -> bool:
    """Whether matplotlib, which draws side_by_side.png, imports: a device install (the runtime
    extra) has none, and scores exported models all the same."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _evaluate(args: argparse.Namespace) -> int:
    from runtime.backends.base import ModelError

    from .data.sources import SourceError
    from .evaluate import (MIN_SIDE, evaluate, format_table, is_artifact, side_by_side,
                           teacher_labels_line, write_per_image_csv)

    from runtime.host import ZERO_THREADS, check_threads, threads_warning
    # Exported models alone run on their runtimes: a device install (the runtime extra) has
    # no torch, which checkpoints, --device and the checkpoint errors below need.
    checkpoints = bool(args.weights)
    if checkpoints:
        from .teacher import check_device
        check_device(args.device)
    elif args.device != "auto":
        print("warning: --device applies to checkpoints (--weights); exported models run on "
              "their runtime (--provider for .onnx)", file=sys.stderr)
    try:   # artifacts: the runtimes' meaning of 0
        check_threads(args.threads, "--threads", ZERO_THREADS)
    except ValueError as e:
        return refuse(str(e))
    if too_many := threads_warning(args.threads, "--threads"):   # as sharpen run warns
        print(f"warning: {too_many}", file=sys.stderr)
    models = [m for item in args.model or [] for m in item.split(",") if m]
    weights = []
    if checkpoints:
        from .checkpoint import CheckpointError
        from .teacher import resolve_weights
        try:
            weights = [str(resolve_weights(w)) for item in args.weights
                       for w in item.split(",") if w]
        except CheckpointError as e:
            return refuse(f"--weights {e}")
    if not weights and not models:
        return refuse("give --weights (checkpoints) and/or --model (exported artifacts)")
    if args.out:   # found now, not after every model has run over every image
        from runtime.output_paths import make_folder, refuse_output_inside
        from runtime.sinks import SinkError
        try:
            refuse_output_inside(args.out, args.data, "--data")
            make_folder(args.out, "--out")
        except (SinkError, ValueError) as e:
            return refuse(str(e))
    for w in weights:
        if Path(w).is_dir():   # a run's out= folder: name the checkpoints in it
            from .checkpoint import folder_problem
            return refuse(f"--weights {w}: {folder_problem(w)}")
        if not Path(w).is_file():
            return refuse(f"--weights {w}: no such checkpoint")
        if is_artifact(w):
            return refuse(f"--weights {w}: an exported model; pass it with --model")
    for m in models:
        if not Path(m).is_file():
            return refuse(f"--model {m}: no such file")
        if not is_artifact(m):
            return refuse(f"--model {m}: not an exported model (.onnx, .tflite, .engine); "
                        "pass checkpoints with --weights")
    weights += models
    if args.limit is not None and args.limit < 1:
        return refuse(f"--limit must be >= 1, got {args.limit}")
    from .frame_pick import parse_frame_pick
    try:
        frames = parse_frame_pick(args.stride, args.frames)
    except ValueError as e:
        return refuse(str(e))
    # One at a time, with its value: '--figure-images must be >= 1, --figure-crop >= 16 and
    # --crop >= 0' left the user to find which of the three was wrong.
    for flag, value, lo, note in (("--figure-images", args.figure_images, 1, ""),
                                  ("--figure-crop", args.figure_crop, 16, ""),
                                  ("--crop", args.crop, 0, " (0 = whole images)"),
                                  ("--tile", args.tile, 0, " (0 = whole images)")):
        if problem := out_of_range(flag, value, lo, note=note):
            return refuse(problem)
    if 0 < args.crop < MIN_SIDE:
        return refuse(f"--crop {args.crop}: SSIM needs at least {MIN_SIDE}x{MIN_SIDE} pixels "
                    "(0 = whole images)")
    if args.align != "none" and args.ssim != "2d":
        return refuse(f"--align {args.align} scores RealBlur's SSIM (channels averaged over "
                      f"the overlap); --ssim {args.ssim} applies unaligned: leave out one of "
                      "them")
    dupes = sorted({w for w in weights if weights.count(w) > 1})
    if dupes:
        print(f"warning: {', '.join(dupes)} given more than once; evaluated once",
              file=sys.stderr)
        weights = list(dict.fromkeys(weights))
    if args.provider != "auto" and not any(m.lower().endswith(".onnx") for m in models):
        print(f"warning: --provider applies to .onnx models (ONNX Runtime); --provider "
              f"{args.provider} has no effect without one", file=sys.stderr)
    from .data.sources import gopro_blur_unused, paired_parent
    if unused := gopro_blur_unused([args.data], args.gopro_blur, "--gopro-blur"):
        print(f"warning: {unused}", file=sys.stderr)
    if half := paired_parent(args.data):   # scored without its ground truth, said nowhere
        print(f"warning: {args.data} is the blurred half of a paired folder: --data {half[0]} "
              f"scores against its {half[1]}/ images; this run has no ground truth",
              file=sys.stderr)
    if checkpoints:
        from .teacher import pick_device, set_torch_threads
        if pick_device(args.device).type == "cpu":
            set_torch_threads(args.threads)
    if not args.threads and (note := limit_note("PyTorch, ONNX Runtime and LiteRT")):
        note_line(f"note: {note}")
    figure = bool(args.out) and _can_draw()
    if args.out and not figure:   # said now; and no model runs again for it on a rerun
        print("warning: --out gets no side_by_side.png: the figure needs matplotlib (pip "
              "install matplotlib); metrics.json and per_image.csv are written", file=sys.stderr)
    try:
        res = evaluate(weights, args.data, split=args.split or "test", limit=args.limit,
                       crop=args.crop, progress=not args.quiet,
                       keep_outputs=args.figure_images if figure else 0, device=args.device,
                       teacher_config=args.teacher_config, threads=args.threads,
                       provider=args.provider, gopro_blur=args.gopro_blur,
                       stride=args.stride, frames=frames, out=args.out,
                       reference=args.reference, ssim_window=args.ssim, tile=args.tile,
                       align=args.align)
    except KeyboardInterrupt as e:   # after some images: theirs are reported and saved
        if not hasattr(e, "results"):
            raise
        res = e.results
    # ValueError: a checkpoint's CheckpointError too (distill.checkpoint imports torch)
    except (SourceError, ModelError, ValueError, FileNotFoundError) as e:
        return refuse(str(e))
    if args.reference and res["has_gt"]:
        print(f"warning: {args.data} has ground truth, which every model is scored against: "
              f"--reference applies to data without it", file=sys.stderr)
    if (args.stride != 1 or frames is not None) and "stride" not in res:
        print(f"warning: {args.data} holds no video clip: "
              f"{'--stride' if frames is None else '--frames'} applies to a clip's frames; "
              "every image was evaluated", file=sys.stderr)
    if args.ssim != "2d" and "ssim_window" not in res:   # no SSIM was computed
        print(f"warning: --ssim {args.ssim} has no effect: {args.data} has no ground truth and "
              "no model's output stands in for it (a teacher among --weights, or --reference)",
              file=sys.stderr)
    if args.align != "none" and not res["has_gt"]:   # nothing to align to
        print(f"warning: --align {args.align} has no effect: {args.data} has no ground truth",
              file=sys.stderr)
    if args.split and res["split"] is None:
        print(f"warning: {args.data} has no split folders (train/, val/, test/): --split "
              f"{args.split} does not apply; every image was evaluated", file=sys.stderr)
    elif args.split and res["split"] != args.split:   # a REDS split's folder given alone
        print(f"warning: {args.data} holds the {res['split']} split alone: --split "
              f"{args.split} does not apply; its {res['split']} images were evaluated",
              file=sys.stderr)
    if checkpoints and (held := _not_held_out(res, args.data)):
        res["not_held_out"] = held
    from runtime.host import default_threads

    from .provenance import LIBS, run_environment
    # What a colleague's numbers are compared by: the runtimes' versions and threads change
    # an artifact's last digits, torch's a checkpoint's. The threads they ran on, as the
    # bench records them: --threads, else OMP_NUM_THREADS's (None: the engines' default).
    res["environment"] = {**run_environment(
        pick_device(args.device) if checkpoints else None,
        (*LIBS, "onnxruntime", "ai_edge_litert")), "threads": default_threads(args.threads)}
    print(format_table(res))
    if res.get("per_sequence"):
        from .evaluate_sequences import format_sequences
        print(format_sequences(res, res["per_sequence"]))
    if said := teacher_labels_line(res):
        print(said)
    from runtime.imageio import shown_path
    for note in res.get("seek_notes") or []:   # they name clips
        print(shown_path(f"note: {note}"))
    outputs = res.pop("outputs")
    if args.out:
        out = Path(args.out)
        from runtime.atomic import atomic_write_json
        # An interrupted rerun replaced the complete results of the run before with a part.
        tag = ".partial" if res["interrupted"] and _complete_results(out / "metrics.json") else ""
        if tag:
            print(f"interrupted: the complete results already in {out} are kept; this run's "
                  f"part is written as metrics{tag}.json", file=sys.stderr)
        atomic_write_json(out / f"metrics{tag}.json", res)
        shown = dict(list(outputs.items())[:args.figure_images])
        which = (f"the {count(len(shown), 'image')} some model gains least PSNR on, worst first"
                 if res["has_gt"] else
                 f"{count(len(shown), 'frame')} spread over the clips" if res.get("clip_frames")
                 else f"the first {count(len(shown), 'image')}")
        fig = None
        if figure:
            fig = side_by_side(shown, out / f"side_by_side{tag}.png", side=args.figure_crop,
                               title=f"{args.data}, {which}: input | " + " | ".join(
                                   k for k in next(iter(shown.values())) if k != "input"))
        table = write_per_image_csv(res, out / f"per_image{tag}.csv")
        print(shown_path(f"written: {out / f'metrics{tag}.json'}, {table}"
                         + (f", {fig}" if fig else "")))
        if not res["interrupted"]:
            _remove_stale_partial(out)
    if res["interrupted"]:
        return res.get("exit_code", 130)
    if res["failed"]:
        cut = len(res.get("cut_clips") or [])
        gone = len(res.get("clips_left_out") or [])
        skipped = len(res["failed"]) - cut - gone
        what = " and ".join(filter(None, [
            f"{count(skipped, 'image')} skipped" if skipped else "",
            f"{count(gone, 'clip')} left out" if gone else "",
            f"{count(cut, 'clip')} cut short" if cut else ""]))
        print(f"sharpen evaluate: {what} (listed above); the rest were evaluated",
              file=sys.stderr)
        return 1
    return 0


def _not_held_out(res: dict, data: str) -> dict:
    """Per model label, the scored images its label caches trained or validated on, each
    model said in a warning: their scores are no held-out ones (lineage.not_held_out)."""
    return say_not_held_out(res.get("weights") or {}, data, res.get("per_image") or {})


def say_not_held_out(weights: dict, data: str, scored) -> dict:
    """`_not_held_out` of the models `weights` (label -> file) that scored the images named
    `scored` from `data`: `sharpen evaluate`'s and `sharpen bench --real-pairs`'s."""
    from .checkpoint import CheckpointError, read_checkpoint
    from .config import DataConfig
    from .evaluate import is_artifact
    from .lineage import gone_caches, not_held_out
    held: dict = {}
    for label, w in weights.items():
        if is_artifact(w):
            continue
        try:
            ck = read_checkpoint(w, mmap=True)
        except (CheckpointError, OSError):
            continue
        lineage = ck.get("lineage")
        data_cfg = (ck.get("config") or {}).get("data")
        # Else (a checkpoint before the setting was) the default it had then too.
        n = ((data_cfg.get("val_max_images") if isinstance(data_cfg, dict) else None)
             or DataConfig.val_max_images)
        for key, gone in gone_caches(lineage, data):
            print(f"warning: {w} was {'distilled' if key == 'labels' else 'validated'} on "
                  f"labels of {gone['data']} (data.{key}={gone['path']}), a cache not found: "
                  "which of the images scored it "
                  f"{'trained' if key == 'labels' else 'chose best.pt'} on is not known, and "
                  "their scores may not be held out", file=sys.stderr)
        if not (found := not_held_out(lineage, data, scored, n)):
            continue
        held[label] = found
        parts = []
        for role, key, what in (("trained", "labels", "trained on {n} of the {of} scored"),
                                ("validated", "val_labels", "validated on {n}")):
            if names := found.get(role):
                shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more"
                                                if len(names) > 3 else "")
                before = "".join(f", after {e.get('path')} to step {e.get('until_step')}"
                                 for e in lineage[key].get("earlier") or []
                                 if isinstance(e, dict))
                parts.append(what.format(n=len(names), of=count(len(scored), "image"))
                             + f" (data.{key}={lineage[key].get('path')}{before}"
                             + (", which chose best.pt" if role == "validated" else "")
                             + f": {shown})")
        print(f"warning: {w} {' and '.join(parts)}: the scores include these images, which "
              "are not held out", file=sys.stderr)
    return held
