"""`sharpen runs`: the handler; distill/runs_compare.py reads the folders. Imports no torch."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from .command_messages import out_folder_problem, refuse


def cmd_runs(args: argparse.Namespace) -> int:
    from .runs_compare import pick_axis, plot, read_run, report, run_folders, write_csv

    if args.same:
        return _same(args)
    if args.tolerance:
        return refuse("--tolerance applies to --same only (the ablation table compares no "
                      "weights)")
    if not any(Path(p).exists() for p in args.runs):
        # Every name mistyped: a usage error, as --same and `sharpen teacher` say one; one
        # missing among runs is a line of the report, the rest compared.
        return refuse("; ".join(f"{p}: no such folder" for p in args.runs))
    out = Path(args.out) if args.out else None
    if out is not None and (problem := out_folder_problem(out)):
        return refuse(problem)
    runs = [read_run(p) for p in run_folders([Path(p) for p in args.runs])]
    print(report(runs))
    comparable = [r for r in runs if not r.problem]
    if out is not None:
        if not comparable:
            print(f"nothing to draw: no run among {' '.join(args.runs)}; {out} not written")
        else:
            axis = pick_axis(comparable, args.axis)
            png = plot(comparable, out / "runs.png", axis)
            table = write_csv(runs, out / "runs.csv")
            print(f"curves by {axis}: {png}; the table's numbers: {table}")
    # 1 when nothing could be compared, as a command that found no input
    return 0 if comparable else 1


def _same(args: argparse.Namespace) -> int:
    """`--same`: the check table and its closing line; exit 0 the same, 1 not, 2 bad input.
    --out: the same as OUT/same.json, for a program (a release pipeline keeps it)."""
    from .runs_same import BadRun, same_runs
    out = Path(args.out) if args.out else None
    if out is not None and (problem := out_folder_problem(out)):
        return refuse(problem)
    if out is not None:   # whatever stops this run (^C, an error), not the last one's verdict
        (out / "same.json").unlink(missing_ok=True)
    from .exports_same import export_folders, is_export, same_exports
    paths = [Path(p) for p in args.runs]
    try:
        if not (args.tolerance >= 0 and math.isfinite(args.tolerance)):
            raise BadRun(f"--tolerance must be a number >= 0, got {args.tolerance}")
        if any(map(is_export, export_folders(paths))):   # export folders: the same release?
            code, text, record = same_exports(paths, args.tolerance)
        else:
            code, text, record = same_runs(paths, args.tolerance)
    except BadRun as e:
        if out is not None:   # not an earlier run's same.json left to be read as this one's
            _write_same(out, {"same": False, "exit_code": 2, "error": str(e)})
        return refuse(str(e))
    print(text)
    if out is not None:
        record["tolerance"] = args.tolerance   # what 'same' admitted (0: bit for bit)
        print(f"each check and the verdict: {_write_same(out, record)}")
    return code


def _write_same(out: Path, record: dict) -> Path:
    from runtime.atomic import atomic_write_json
    out.mkdir(parents=True, exist_ok=True)
    return atomic_write_json(out / "same.json", record)
