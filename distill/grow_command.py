"""`sharpen grow`: a trained fast-family student grown without changing its output.
Imports without torch."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .command_messages import refuse


def cmd_grow(args: argparse.Namespace) -> int:
    from .checkpoint import CheckpointError
    from .grow import grow_student
    from .teacher import resolve_weights

    try:   # shipped names (fast, edge) as evaluate and init= take them
        args.weights = str(resolve_weights(args.weights, allow_teacher=False))
    except (CheckpointError, ValueError) as e:
        return refuse(f"--weights {e}")
    try:
        pairs = [c.split("=", 1) for c in args.changes]
        changes = {k: int(v) for k, v in pairs}
    except ValueError:
        return refuse(f"changes must look like name=INT (e.g. low_blocks=4), got {args.changes}")
    repeated = sorted({k for k, _ in pairs if [p[0] for p in pairs].count(k) > 1})
    if repeated:
        return refuse(f"{', '.join(repeated)} given more than once: give each change once")
    out = Path(args.out)
    if out.is_dir():
        return refuse(f"--out {out} is a folder; give the new checkpoint's file name (.pt)")
    from runtime.output_paths import file_in_the_way
    if problem := file_in_the_way(out.parent, f"--out {out}"):
        return refuse(problem)
    if Path(args.weights).exists() and out.exists() and out.resolve() == \
            Path(args.weights).resolve():
        return refuse(f"--out {out} is the --weights checkpoint itself; write the grown model to "
                    "a new file")
    try:
        summary = grow_student(args.weights, args.out, **changes)
        if "max_change" in summary:
            print(f"warning: fewer blocks is not exact: the output moved by up to "
                  f"{summary['max_change']} (of 1.0) on a random input; fine-tune "
                  f"{args.out} before using it", file=sys.stderr)
        if not args.quiet:
            print(f"written: {args.out} ({', '.join(f'{k}={v}' for k, v in changes.items())})")
            print(summary)
    except (ValueError, TypeError, CheckpointError, FileNotFoundError) as e:
        return refuse(str(e))
    return 0
