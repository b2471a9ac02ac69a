"""A training run's logs in its out folder: train.log, the text log of what happened when
(resumes and stops included; BasicSR-style), metrics.jsonl, the machine-readable step and
validation records, and curves.png drawn from them."""
from __future__ import annotations

import datetime
import json
import math
import re
from pathlib import Path
from typing import Optional

from runtime.atomic import atomic_file, no_follow


def append_text(path: Path, msg: str) -> None:
    """A timestamped line of train.log; its folder made where missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name that is not UTF-8 (a Latin-1 folder) as \udcdf: the log stays UTF-8 to read back.
    with open(path, "a", encoding="utf-8", errors="backslashreplace", opener=no_follow) as f:
        f.write(f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S} {msg}\n")


def append_jsonl(path: Path, rec: dict) -> None:
    """A record of metrics.jsonl; its folder made where missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8", opener=no_follow) as f:
        f.write(json.dumps(json_safe(rec)) + "\n")


def json_safe(x):
    """JSON has no NaN (jq and most readers refuse it): a skipped batch's loss, or a diverged
    model's score, is logged as null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


def steps_trained_again(path: Path, step: int, ckpt: Path) -> str:
    """train.log's word on the step records its last run wrote past the resumed step: a
    run killed (SIGKILL, a power cut) after its last checkpoint logged steps that the
    resume trains and logs again, and the log then held them twice, told apart only by
    the clock. metrics.jsonl drops such records; the text log keeps its history. `path`:
    the train.log, `step`: the step resumed at, `ckpt`: the checkpoint resumed from."""
    if not path.exists():
        return ""
    steps: list[int] = []
    for line in path.read_text(errors="replace").splitlines():
        if " started step " in line or " resumed at step " in line:
            steps = []   # only the last run's records: earlier ones were resumed already
        m = re.search(r" step (\d+)/\d+ ", line)
        if m:
            steps.append(int(m.group(1)))
    later = [s for s in steps if s > step]
    if not later:
        return ""
    # resume=OUT/best.pt goes back on purpose; only last.pt behind the log is a lost run
    lost = "the run that logged them ended without saving them, " \
        if ckpt.name == "last.pt" else ""
    return (f"; steps {step + 1} to {max(later)} logged above are trained again: "
            f"{lost}{ckpt.name} holds step {step}")


OLDER_SSIM = ", an older version's SSIM"


def ssim_series(va: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """The validation SSIM curves of metrics.jsonl's `va` records, {label: [(step, score)]}:
    records of another formula than this version's (a run resumed across an upgrade; those
    written before records named it had the 7x7 window's) make curves of their own, labelled
    so, rather than a step in this version's curve at the resume."""
    from .metrics import SSIM_ID
    series: dict[str, list[tuple[int, float]]] = {}
    for key in sorted({k for r in va for k in r["val"] if k.endswith("_ssim")}):
        for r in va:
            if r["val"].get(key) is not None:
                label = key if r.get("ssim_formula") == SSIM_ID else key + OLDER_SSIM
                series.setdefault(label, []).append((r["step"], r["val"][key]))
    return series


def plot_curves(out: Path) -> Optional[Path]:
    """Loss and validation curves of out/metrics.jsonl to out/curves.png."""
    path = out / "metrics.jsonl"
    if not path.exists():
        return None
    # A Figure of its own, not pyplot's: matplotlib.use("Agg") switched the backend of
    # the notebook or app that called train().
    from matplotlib.figure import Figure
    recs = [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]
    tr = [r for r in recs if r.get("loss") is not None]
    va = [r for r in recs if "val" in r]
    fig = Figure(figsize=(11, 4))
    # Fixed margins, not tight_layout(): it measured every label, 0.2 s of each run's
    # half-second plot, for the same layout.
    fig.subplots_adjust(left=0.06, right=0.985, bottom=0.13, top=0.92, wspace=0.18)
    ax = fig.subplots(1, 2)
    if tr:
        ax[0].plot([r["step"] for r in tr], [r["loss"] for r in tr], lw=0.8)
        ax[0].set_yscale("log")
    ax[0].set(title="training loss", xlabel="step")
    colours: dict[str, str] = {}   # one per metric, whichever formula
    for label, pts in ssim_series(va).items():
        older = label.endswith(OLDER_SSIM)
        key = label.removesuffix(OLDER_SSIM)
        colour = colours.setdefault(key, f"C{len(colours)}")
        ax[1].plot(*zip(*pts), marker=".", label=label, ls=":" if older else "-",
                   alpha=0.5 if older else 1.0, color=colour)
    ax[1].set(title="validation SSIM", xlabel="step")
    if va:
        ax[1].legend(fontsize=8)
    png = out / "curves.png"
    # Whole or not at all: a start that finds curves.png takes it for drawn (a run killed
    # while drawing it left a truncated one that was never redrawn).
    with atomic_file(png) as f:
        fig.savefig(f, format="png", dpi=100)
    return png
