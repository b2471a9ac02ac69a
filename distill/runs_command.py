"""`sharpen runs`: the handler; distill/runs_compare.py reads the folders. Imports no torch."""
from __future__ import annotations

import argparse
from pathlib import Path

from .command_messages import out_folder_problem, refuse


def cmd_runs(args: argparse.Namespace) -> int:
    from .runs_compare import pick_axis, plot, read_run, report, run_folders, write_csv

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
