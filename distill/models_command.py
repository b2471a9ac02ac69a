"""`sharpen models`: the table of students (parameters, MACs, receptive field), optionally
timed, and how exported artifacts were made. Imports without torch."""
from __future__ import annotations

import argparse
import difflib
import statistics
import sys
from pathlib import Path

from .command_messages import refuse, note_line


def _trained_text(ck: dict) -> str:
    """How far a checkpoint was trained and what its last validation scored, for `sharpen
    models`: the layout alone told a run's best.pt from its last.pt by nothing."""
    step, m = ck.get("step"), ck.get("metrics") or {}
    said = [f"step {step}"] if isinstance(step, int) and step > 0 else []
    key = next((k for k in ("model_gt_ssim", "model_teacher_ssim")
                if isinstance(m.get(k), (int, float))), None)
    if key:
        at = f" at step {m['step']}" if isinstance(m.get("step"), int) else ""
        said.append(f"validation{at}: {key} {m[key]:.4f}{_formula_text(ck)}")
    return "".join(f"; {s}" for s in said)


def _formula_text(ck: dict) -> str:
    """Which SSIM a checkpoint's validation score is, where not this version's: the shipped
    students' (7x7 uniform window) sat beside a new run's (Gaussian) as if comparable."""
    from .metrics import SSIM_ID
    formula = ck.get("metrics_ssim")
    if formula == SSIM_ID:
        return ""
    if formula is None:
        return " (SSIM formula not recorded: an older version's 7x7 window)"
    return f" (SSIM: {formula}, not this version's)"


def _artifact_lines(args: argparse.Namespace) -> list[str] | int:
    """How each exported artifact `args.names` gives was made, in lines, taking those names
    out of `args.names`; or refuse()'s exit code. Reads JSON and hashes files only: a device
    install without torch traces its models too."""
    from runtime.backends.base import ModelError

    from .provenance import artifact_provenance, artifact_suffixes
    lines: list[str] = []
    for n in [n for n in args.names if n.endswith(artifact_suffixes())]:
        if not Path(n).is_file():   # not "checkpoint not found": it names no checkpoint
            from runtime.backends.provenance import pending_engine
            # An engine whose trtexec line has not run yet: how to build it, as `run` says.
            if pending := pending_engine(n):
                return refuse(f"{n}: {pending}")
            return refuse(f"exported artifact not found: {n} (`sharpen models` traces an "
                          "existing .onnx, .tflite or .engine file from the export report "
                          "beside it)")
        try:
            lines += artifact_provenance(n)
        except ModelError as e:   # a foreign model's sidecar that `run` would refuse too
            return refuse(str(e))
        args.names.remove(n)
    return lines


def cmd_models(args: argparse.Namespace) -> int:
    # What a model or checkpoint records of itself is a stranger's text: its control
    # characters (an escape sequence the terminal would obey, a newline forging a line of
    # ours) are shown escaped, as file names are.
    from runtime.imageio import shown_path
    h, w = args.height, args.width
    if args.measure_runs < 1:
        return refuse(f"--measure-runs must be >= 1, got {args.measure_runs}")
    if not (16 <= h <= 8640 and 16 <= w <= 15360):
        return refuse(f"--height must be within 16..8640 and --width within 16..15360, got "
                    f"--height {h} --width {w}")
    provenance: list[str] = []   # exported artifacts: how each was made, from its report
    if args.names:   # space or comma separated, as --weights everywhere
        args.names = list(dict.fromkeys(n for item in args.names for n in item.split(",") if n))
        traced = _artifact_lines(args)
        if isinstance(traced, int):
            return traced
        provenance = traced
        if provenance and not args.names:
            print("\n".join(map(shown_path, provenance)))
            from .provenance import cannot_be_opened
            return 1 if cannot_be_opened(provenance) else 0
    import time

    import numpy as np
    import torch

    from .checkpoint import CheckpointError, load_student
    from .students import (OWN_STUDENT_HINT, activation_bytes, count_macs, count_params,
                           create_student, for_inference, list_students, receptive_field,
                           run_padded, student_spec, GLOBAL_FIELD)
    from .teacher import check_threads, names_a_file, set_torch_threads
    from runtime.host import cpu_model

    check_threads(args.threads)
    # Before any model is built: the title below reports the count the times ran on.
    set_torch_threads(args.threads, note_line if args.measure else None)
    if args.threads:
        from runtime.host import threads_warning
        if args.measure and (too_many := threads_warning(args.threads, "--threads")):
            print(f"warning: {too_many}", file=sys.stderr)   # oversubscribed times mislead
    names = list_students()
    checkpoints: dict[str, tuple] = {}   # a trained student's own layout (grown, blocks=1)
    if args.names:
        for n in args.names:
            if n not in names and names_a_file(n):
                try:
                    checkpoints[n] = load_student(n)
                except (CheckpointError, OSError) as e:
                    return refuse(str(e))
        unknown = [n for n in args.names if n not in names and n not in checkpoints]
        if unknown:
            hint = " (the teacher is listed with --teacher)" if "teacher" in unknown else ""
            near = [c for n in unknown for c in difflib.get_close_matches(n, names, n=1)]
            guess = f" (did you mean {' or '.join(near)}?)" if near else ""
            return refuse(f"unknown student {', '.join(unknown)}{guess}; registered: "
                        f"{', '.join(names)}, or a student checkpoint (.pt){hint}; "
                        f"{OWN_STUDENT_HINT}")
        names = args.names
    headers = ["name", "params", "GMAC", "receptive field px", "peak activations MiB",
               "multiple"]
    if args.measure:
        runs = args.measure_runs
        headers.append(f"PyTorch ms, median / p90 of {runs} run{'s' if runs != 1 else ''}")
    headers.append("description")
    rows = []
    from runtime.progress import progress

    for name in progress(names, desc="models", unit="model", leave=False, file=sys.stderr,
                         quiet=args.quiet):
        if name in checkpoints:
            m, ck = checkpoints[name]
            description = f"checkpoint: {ck.get('arch')} {m.arch_args}{_trained_text(ck)}"
        else:
            try:   # a student of a user's own that cannot be built or changes the shape
                m, description = create_student(name).eval(), student_spec(name).description
            except ValueError as e:
                return refuse(str(e))
        rf = receptive_field(m)
        row = [name, f"{count_params(m):,}", f"{count_macs(m, h, w) / 1e9:.2f}",
               "global" if rf >= GLOBAL_FIELD else str(rf),
               f"{activation_bytes(m, h, w) / 2**20:.0f}",
               str(getattr(m, "multiple", 1))]   # register(): 1 where a student has none
        if args.measure:
            m, x = for_inference(m), torch.rand(1, 3, h, w)
            times = []
            with torch.no_grad():
                for _ in range(2):   # the first runs at a new shape still allocate
                    run_padded(m, x)
                for _ in range(args.measure_runs):
                    t0 = time.perf_counter()
                    run_padded(m, x)
                    times.append(1000 * (time.perf_counter() - t0))
            # The p90 beside the median: a deployment meets the slow runs too.
            p90 = float(np.percentile(times, 90))
            row.append(f"{statistics.median(times):.1f} / {p90:.1f}")
        rows.append(row + [description])
    if args.teacher:
        from .restormer import CONFIGS, build_restormer
        for cname in CONFIGS:
            m = build_restormer(cname)
            macs = count_macs(m, 256, 256) * (h * w) / (256 * 256)
            rows.append([f"restormer:{cname}", f"{count_params(m):,}", f"~{macs / 1e9:.0f}",
                         "-", "-", "8"] + (["-"] if args.measure else []) +
                        ["teacher (MACs of convolutions and attention, scaled from 256x256 "
                         "tiles)"])
    from runtime.console import print_table
    # The measured times depend on the threads (OMP_NUM_THREADS, the cores): say how many.
    n = torch.get_num_threads()
    timed = f"; PyTorch timed on {n} CPU thread{'s' if n != 1 else ''}" if args.measure else ""
    print_table(f"Models (per {w}x{h} frame{timed})", headers, rows,
                right=["receptive field px"])   # "global" too
    # What the columns mean, where the table is read (the README is not always at hand).
    print("receptive field px: the input pixels one output pixel depends on (side of the "
          "square)\npeak activations MiB: the FP32 tensors alive at once in one frame's "
          "forward pass\n  (batch 1, the frame in and out included, weights not), as PyTorch "
          "frees them\nmultiple: height and width are padded up to a multiple of it")
    if any(row[3] == "global" for row in rows):
        print(f"global: wider than {GLOBAL_FIELD // 2} px, all of a frame (global pooling, an "
              "FFT, attention over the frame)")
    if args.measure:
        print(f"PyTorch ms: one FP32 {w}x{h} frame (batch 1) on {n} thread{'s' if n != 1 else ''}"
              f" of {cpu_model()}, after 2 warm-up runs")
    from .lineage import describe_lineage
    from .provenance import describe
    for name, (_, ck) in checkpoints.items():
        # A colleague's best.pt: what to install and set to reproduce the numbers it carries.
        if isinstance(env := ck.get("environment"), dict):
            print(shown_path(f"{name}: trained with {describe(env)}"))
        for line in describe_lineage(ck.get("lineage")):
            print(shown_path(f"{name}: {line}"))
    if provenance:
        print("\n".join(map(shown_path, provenance)))
    return 0
