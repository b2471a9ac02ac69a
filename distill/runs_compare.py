"""`sharpen runs`: training run folders side by side, as an ablation is read: each run's state
(finished, stopped, interrupted, failed, killed, running), steps, wall time, best and last
validation scores with their steps, the config keys that differ between the runs, and their
curves on one axis. Reads only what the runs write (metrics.jsonl, train.log, config.yaml, the
lock file), a line at a time and without taking the lock, so a run being written is read safely;
no torch."""
from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from runtime.run_lock import LOCK_NAME
from .config import RUN_CONTROL
from .figure_fonts import any_script_text, plain_log_ticks
from .metrics import SSIM_ID
from .train_log import OLDER_SSIM

# What makes a folder a training run: any one of them.
RUN_FILES = ("metrics.jsonl", "train.log", "config.yaml", "last.pt", "best.pt")
# Keys that name the run rather than what it trained (every run has its own out=).
NOT_SETTINGS = {"out"}

# Keys that choose the validation images: runs differing in one scored other images.
VALIDATION_SET = ("data.val", "data.val_labels", "data.val_max_images", "data.val_max_side")

# Keys that steer an invocation, not what it trains (log_every, ckpt_every, ...): an
# ablation's columns are what it varied; these are said on a line of their own.
CONTROL = RUN_CONTROL


@dataclass
class Run:
    """One run folder as read now. `problem`: why it cannot be compared (not a run, empty),
    said in place of its row; `notes`: what the user should know about a row it has."""
    path: Path
    label: str = ""
    problem: str = ""
    notes: list[str] = field(default_factory=list)
    state: str = ""
    steps: Optional[int] = None
    total_steps: Optional[int] = None
    seconds: Optional[float] = None
    train: list[dict] = field(default_factory=list)   # metrics.jsonl's step records
    val: list[dict] = field(default_factory=list)     # ... and its validation records
    config: dict = field(default_factory=dict)        # config.yaml, flattened to dotted keys
    crops_per_step: list[tuple[int, int]] = field(default_factory=list)   # (from step, crops)
    processes: Optional[int] = None   # torchrun's process count, of the last start or resume
    eta: str = ""   # of train.log's last step record

    @property
    def score_key(self) -> Optional[str]:
        """The SSIM best.pt is chosen by (the trainer's): to ground truth where the validation
        has it, else agreement with the teacher."""
        keys = {k for r in self.val for k in r["val"]}
        for key in ("model_gt_ssim", "model_teacher_ssim"):
            if key in keys:
                return key
        return None


def _records(path: Path) -> tuple[list[dict], bool]:
    """metrics.jsonl's records, and whether a line could not be read. A run being written may
    have its last line half written: that one is left for the next look, not an error."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return [], False
    recs, bad = [], False
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            bad = bad or i < len(lines) - 1   # the unterminated last line is being written
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int):
            recs.append(rec)
    return recs, bad


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v and k != "args":   # model.args compared as one value
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# Every flock on this host by device and inode (Linux); see _lock_held.
PROC_LOCKS = Path("/proc/locks")


def _lock_held(folder: Path) -> bool:
    """Whether a live process holds the run's lock (runtime.run_lock): read from /proc/locks,
    which lists every flock by inode, so that looking never takes the lock a run starting at
    that moment needs. Elsewhere, by the process id the lock file records."""
    path = folder / LOCK_NAME
    try:
        st = path.stat()
    except OSError:
        return False
    try:
        locks = PROC_LOCKS.read_text()
    except OSError:
        locks = None
    if locks is not None:
        # "1: FLOCK  ADVISORY  WRITE 8574 fe:00:2172766 0 EOF": device major:minor in hex
        ours = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
        for line in locks.splitlines():
            parts = line.split()
            if len(parts) < 6 or parts[1] != "FLOCK":
                continue
            with contextlib.suppress(ValueError):
                major, minor, inode = parts[5].split(":")
                if (int(major, 16), int(minor, 16), int(inode)) == ours:
                    return True
        return False
    try:
        pid = int(path.read_text().split("\n", 1)[0])
        os.kill(pid, 0)
    except PermissionError:   # alive, another user's
        return True
    except (OSError, ValueError):
        return False
    return True


# train.log's lines after their timestamp (distill/train_log.py's append_text)
_END = re.compile(r"^\S+ \S+ (?:(finished|stopped) at step (\d+)(?: by (\w+))?|error: (.*))")
_ETA = re.compile(r"^\S+ \S+ step \d+/\d+ .* eta (\S+)")
# "(es)": logs of versions before 5 December 2026 wrote "1 process(es)"
_START = re.compile(r"^\S+ \S+ (?:started|resumed at) step (\d+) of (\d+): .*?(\d+) "
                    r"process(?:es|\(es\))?, batch (\d+) per process")


def _read_log(run: Run, log: Path) -> Optional[str]:
    """The state the run's train.log ends in (None: it ends mid-run), and the crops each of
    its stretches took a step (a resume under another process count changes them)."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return None
    state = None
    for line in lines:
        if m := _ETA.search(line):
            run.eta = m.group(1)
        if m := _START.search(line):
            step, run.total_steps = int(m.group(1)), int(m.group(2))
            run.crops_per_step = [c for c in run.crops_per_step if c[0] < step]
            run.crops_per_step.append((step, int(m.group(3)) * int(m.group(4))))
            run.processes = int(m.group(3))
            state = None
            run.notes = [n for n in run.notes if not n.startswith("failed: ")]   # resumed since
        elif m := _END.search(line):
            # A budget spent at the last step said "stopped" of a finished run (before
            # this version's trainer said "finished" there).
            if m.group(1) == "finished" or (m.group(1) == "stopped" and not m.group(3)
                                            and int(m.group(2)) == run.total_steps):
                state = "finished"
            elif m.group(3):
                state = f"interrupted ({m.group(3)})"
            elif m.group(1) == "stopped":
                state = "stopped (budget)"
            else:
                state = "failed"
                run.notes.append(f"failed: {m.group(4)}")
    return state


def _killed_note(path: Path) -> str:
    """What a run that ended without a word left to go on from, and when it last wrote: a
    run on another machine sharing the folder holds no lock this one sees, and reads as
    killed while its files still grow."""
    ago = ""
    with contextlib.suppress(OSError):
        seconds = time.time() - max(
            (path / n).stat().st_mtime for n in ("metrics.jsonl", "train.log")
            if (path / n).exists())
        ago = f"; last written {_duration(max(seconds, 0))} ago"
    if (path / "last.pt").is_file():
        return ("killed (no end in train.log): the same command resumes it from last.pt"
                + ago)
    return ("killed before its first checkpoint (no end in train.log, no last.pt): the same "
            "command starts it over" + ago)


def read_run(path: Path) -> Run:
    """One folder as `sharpen runs` shows it; one that cannot be read (another user's) says
    so in place of its row."""
    try:
        return _read_run(path)
    except OSError as e:
        return Run(path=path, label=path.name or str(path),
                   problem=f"cannot be read: {e.strerror or e}"
                   + (f" ({e.filename})" if e.filename else ""))


def _read_run(path: Path) -> Run:
    run = Run(path=path, label=path.name or str(path))
    if not path.exists():
        run.problem = "no such folder"
        return run
    if not path.is_dir():
        run.problem = "a file, not a run folder"
        return run
    names = {p.name for p in path.iterdir()}
    if not names - {LOCK_NAME}:
        run.problem = "empty folder (a run that could not start leaves none; nothing to compare)"
        return run
    if not names & set(RUN_FILES):
        from .exports_same import REPORT
        if REPORT in names:   # --same forgotten: it is what compares two exports
            run.problem = ("an export folder, not a training run: `sharpen runs EXPORT-A "
                           "EXPORT-B --same` compares two exports")
            return run
        run.problem = ("not a training run (no metrics.jsonl, train.log, config.yaml or "
                       "checkpoint), nor a folder of them")
        return run
    recs, bad = _records(path / "metrics.jsonl")
    if bad:
        run.notes.append("lines of metrics.jsonl that are not JSON were skipped")
    run.train = [r for r in recs if "loss" in r]
    run.val = [r for r in recs if isinstance(r.get("val"), dict)]
    if _older_ssim(run):
        run.notes.append("written by an older version: its SSIM used another formula than "
                         "this version's, so compare it with runs of its own version")
    elif older := [r["step"] for r in run.val if r.get("ssim_formula") != SSIM_ID]:
        run.notes.append(f"its SSIM up to step {max(older)} (before this version resumed it) "
                         "used an older version's formula: left out of its best and last SSIM")
    try:
        import yaml
        cfg = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8"))
        run.config = _flatten(cfg) if isinstance(cfg, dict) else {}
    except FileNotFoundError:
        run.notes.append("no config.yaml (an older version's run, or one that never started): "
                         "its settings are not compared")
    except Exception as e:   # a hand-edited or foreign file: the rest is still worth showing
        run.notes.append(f"config.yaml unreadable ({type(e).__name__}); settings not compared")
    if not recs and not (path / "train.log").exists():
        run.problem = ("no metrics.jsonl or train.log: an older version's run, or one killed "
                       "before its first log; only its checkpoints are there")
        return run
    ended = _read_log(run, path / "train.log")
    if run.config and run.processes:
        # Not a config key, but as much a setting of the run: the batch of a step is the
        # processes' batches together.
        run.config["processes"] = run.processes
    if not run.total_steps and isinstance(run.config.get("optim.steps"), int):
        run.total_steps = run.config["optim.steps"]
    run.steps = max((r["step"] for r in recs), default=0)
    times = [r["time"] for r in recs if isinstance(r.get("time"), (int, float))]
    run.seconds = max(times) if times else None
    if _lock_held(path):
        run.state = "running"
        if run.eta and run.total_steps:
            run.notes.append(f"running: step {run.steps} of {run.total_steps}, eta {run.eta} "
                             "at its last step record")
    elif ended:
        run.state = ended
    else:
        run.state = "killed"
        run.notes.append(_killed_note(path))
    if not run.val:
        every = run.config.get("val_every")
        run.notes.append("no validation yet" + (f" (val_every={every})" if every else ""))
    return run


def _holds_run_files(folder: Path) -> bool:
    """Whether `folder` has a run's files; True where it cannot be looked into (another
    user's), so that it gets its line rather than vanish."""
    try:
        return any((folder / n).exists() for n in RUN_FILES)
    except PermissionError:
        return True


def run_folders(paths: list[Path]) -> list[Path]:
    """The folders to compare: each given one, or, for a folder that is no run but holds
    runs (`runs/`, as `tensorboard --logdir runs` takes it), the runs in it."""
    out: list[Path] = []
    seen: set[str] = set()
    for p in paths:
        inside = []
        # One that cannot be looked into is taken as given: its line says why (read_run).
        with contextlib.suppress(OSError):
            if p.is_dir() and not _holds_run_files(p):
                inside = sorted(q for q in p.iterdir() if q.is_dir() and _holds_run_files(q))
        for q in inside or [p]:
            if (real := os.path.realpath(q)) not in seen:   # a run named twice is one row
                seen.add(real)
                out.append(q)
    return out


def _unique_labels(runs: list[Run]) -> None:
    """Each run's label: its folder's name, or more of its path where two names are alike."""
    names = [r.label for r in runs]
    for r in runs:
        if names.count(r.label) > 1:
            r.label = str(r.path)


def differing_settings(runs: list[Run]) -> list[str]:
    """The config keys whose values differ between the runs that have a config."""
    have = [r for r in runs if r.config]
    if len(have) < 2:
        return []
    keys = sorted({k for r in have for k in r.config} - NOT_SETTINGS)
    return [k for k in keys
            if len({json.dumps(r.config[k], sort_keys=True, default=str) if k in r.config
                    else "<unset>" for r in have}) > 1]


def _older_ssim(run: Run) -> bool:
    """Whether every validation of `run` was scored by an older version's SSIM."""
    return bool(run.val) and not any("ssim_formula" in r for r in run.val)


def _scored(run: Run, key: str) -> list[dict]:
    """The validation records whose `key` compares: of a run resumed across an upgrade, an
    SSIM's of this version's formula only (the older one scored the same weights higher,
    0.9234 against 0.9191, and was taken for the run's best)."""
    mixed = key.endswith("_ssim") and any(r.get("ssim_formula") == SSIM_ID for r in run.val)
    return [r for r in run.val if not mixed or r.get("ssim_formula") == SSIM_ID]


def _best(run: Run, key: str) -> Optional[tuple[float, int]]:
    pts = [(r["val"][key], r["step"]) for r in _scored(run, key)
           if isinstance(r["val"].get(key), (int, float)) and math.isfinite(r["val"][key])]
    return max(pts, key=lambda p: (p[0], -p[1])) if pts else None


def _last(run: Run, key: str) -> Optional[tuple[float, int]]:
    pts = [(r["val"][key], r["step"]) for r in _scored(run, key)
           if isinstance(r["val"].get(key), (int, float)) and math.isfinite(r["val"][key])]
    return pts[-1] if pts else None


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    return str(datetime.timedelta(seconds=round(seconds)))


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    return "-" if v is None else str(v)


def table_rows(runs: list[Run]) -> tuple[list[str], list[list[str]]]:
    """The header and a row per comparable run; best and last SSIM and PSNR with their step."""
    keys = [k for k in differing_settings(runs) if k not in CONTROL]
    header = ["run", "state", "steps", "time", "best SSIM", "last SSIM", "best PSNR",
              "last PSNR", *keys]
    rows = []
    for r in runs:
        if r.problem:
            continue
        key = r.score_key
        best = _best(r, key) if key else None
        last = _last(r, key) if key else None
        pkey = key.replace("_ssim", "_psnr") if key else None
        pbest = _best(r, pkey) if pkey else None
        plast = _last(r, pkey) if pkey else None
        steps = f"{r.steps}/{r.total_steps}" if r.total_steps else str(r.steps)
        cells = [r.label, r.state, steps, _duration(r.seconds),
                 f"{best[0]:.4f} @{best[1]}" if best else "-",
                 f"{last[0]:.4f} @{last[1]}" if last else "-",
                 f"{pbest[0]:.2f} @{pbest[1]}" if pbest else "-",
                 f"{plast[0]:.2f} @{plast[1]}" if plast else "-",
                 *(_value(r.config[k]) if k in r.config else "-" for k in keys)]
        rows.append(cells)
    return header, rows


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(c) for c in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def report(runs: list[Run]) -> str:
    """The table, then a line per run that has something to say (or cannot be compared)."""
    _unique_labels(runs)
    header, rows = table_rows(runs)
    out = [format_table(header, rows)] if rows else []
    keys = {r.score_key for r in runs if r.score_key}
    differ = differing_settings(runs)
    # among the runs that record the key: an older config.yaml without it is no other set
    images = [k for k in VALIDATION_SET if len({
        json.dumps(r.config[k], default=str) for r in runs if k in r.config}) > 1]
    if len(keys) > 1:
        out.append("note: the runs validate differently (" + ", ".join(sorted(keys)) + "): "
                   "their scores are not comparable")
    elif images:
        out.append(f"note: the runs validate on other images ({', '.join(images)}): their "
                   "scores are not comparable")
    elif len(rows) > 1 and keys:
        key = keys.pop()
        scored = [(got, r) for r in runs if not r.problem and (got := _best(r, key))]
        # An older version's SSIM reads higher (0.9234 where this version's gives 0.9191):
        # among runs of this version its runs are no contenders, though their own are.
        older = [r for _, r in scored if _older_ssim(r)]
        if len(older) < len(scored):
            scored = [(got, r) for got, r in scored if r not in older]
        else:
            older = []
        if scored:
            score = max(got[0] for got, _ in scored)
            # by the score each run's best.pt is chosen by; runs scoring alike (a rerun of
            # one config and seed) are named together, not the first of them as the winner
            won = [(got[1], r) for got, r in scored if got[0] == score]
            steps = sorted({step for step, _ in won})
            out.append(f"best: {' and '.join(r.label for _, r in won)}"
                       + (", tied" if len(won) > 1 else "")
                       + f" ({key.removesuffix('_ssim')} SSIM {score:.4f} at step"
                       + (f" {steps[0]})" if len(steps) == 1
                          else f"s {', '.join(map(str, steps))})")
                       + (f"; {', '.join(r.label for r in older)} left out: an older "
                          "version's SSIM" if older else ""))
    for r in runs:
        if r.problem:
            out.append(f"{r.path}: {r.problem}")
        for n in r.notes:
            out.append(f"{r.label}: {n}")
    if control := [k for k in differ if k in CONTROL]:
        out.append("also differ, steering the runs rather than what they train: "
                   + ", ".join(control))
    if any(k.startswith("loss.") for k in differ):
        out.append("note: the runs weigh their loss terms differently: their training losses "
                   "are not comparable; their validation scores are")
    if rows and not differ and len(rows) > 1:
        out.append("settings: the same in every run's config.yaml (but out=)")
    return "\n".join(out)


def write_csv(runs: list[Run], path: Path) -> Path:
    """The table's numbers unrounded, a row per comparable run, for a spreadsheet or pandas:
    scores and their steps in columns of their own, seconds of wall time. Written as
    runtime.spreadsheet writes a table: a BOM, a run name a spreadsheet would run as a formula
    behind a `'`."""
    from runtime.spreadsheet import write_table_csv
    keys = differing_settings(runs)
    # ssim_formula: a script taking the highest best_ssim would take an older version's, which
    # reads higher for the same weights
    cols = ["run", "path", "state", "steps", "total_steps", "seconds", "ssim_formula"]
    scores = [f"{which}_{kind}{part}" for kind in ("ssim", "psnr") for which in ("best", "last")
              for part in ("", "_step")]
    rows = []
    for r in runs:
        if r.problem:
            continue
        key = r.score_key
        formula = "" if not r.val else "not recorded (an older version's)" if _older_ssim(r) \
            else SSIM_ID
        cells: list = [r.label, str(r.path), r.state, r.steps, r.total_steps, r.seconds,
                       formula, key.removesuffix("_ssim") if key else ""]
        for kind in ("ssim", "psnr"):
            k = key and key.replace("_ssim", f"_{kind}")
            for pick in (_best, _last):
                got = pick(r, k) if k else None
                cells += list(got) if got else ["", ""]
        cells += [_value(r.config[k]) if k in r.config else "" for k in keys]
        rows.append(cells)
    # A folder's name that is not UTF-8 (a run copied from a Latin-1 system) as \udcdf: the
    # table stays UTF-8 to read, as evaluate's per_image.csv.
    return write_table_csv(path, [*cols, "score", *scores, *keys], rows)


def samples_axis(run: Run, step: int) -> int:
    """The training crops taken by `step`: from the train.log stretches' crops per step, else
    the config's batch (one process)."""
    spans = run.crops_per_step or [(0, int(run.config.get("data.batch_size") or 1))]
    total = 0
    for i, (start, crops) in enumerate(spans):
        end = spans[i + 1][0] if i + 1 < len(spans) else step
        total += max(0, min(end, step) - start) * crops
    return total


def x_value(run: Run, rec: dict, axis: str) -> int:
    """A metrics.jsonl record's place on the axis: its step, or the crops seen by then as the
    record says (this version's), else as train.log's stretches give them."""
    if axis != "samples":
        return rec["step"]
    if isinstance(rec.get("samples"), int):
        return rec["samples"]
    return samples_axis(run, rec["step"])


def pick_axis(runs: list[Run], axis: str) -> str:
    """`auto`: samples where the runs take different numbers of crops a step (batch sizes,
    torchrun process counts), so that the curves line up by data seen; else steps."""
    if axis != "auto":
        return axis
    rates = {c for r in runs if not r.problem
             for c in ([c for _, c in r.crops_per_step]
                       or [r.config.get("data.batch_size")])}
    rates.discard(None)   # a run with no batch to tell (no train.log, no config.yaml)
    return "samples" if len(rates) > 1 else "steps"


RUN_LINES = ("-", "--", ":", "-.")
RUN_MARKERS = ("o", "s", "D", "^", "v", "P", "*", "X", "h", "<")


def near_best_limits(curves: list[list[float]]) -> Optional[tuple[float, float]]:
    """The y limits that leave out the runs far below the rest, or None where none is.

    One bad run of a sweep (a 30-step run at 13 dB) stretched the shared axis so that the
    others, 0.1 dB apart, drew as one line. Runs are taken best first; the first whose best is
    below the lowest point of those above it by more than their own span (at least 5% of the
    top score) and every run below it are left out: it would take over half the chart."""
    curves = [c for c in curves if c]
    order = sorted(curves, key=max, reverse=True)
    for i in range(1, len(order)):
        lo = min(min(c) for c in order[:i])
        top = max(order[0])
        if max(order[i]) < lo - max(top - lo, 0.05 * abs(top)):
            pad = max(0.05 * (top - lo), 1e-3 * abs(top), 1e-6)
            return lo - pad, top + pad
    return None


def _leave_out_the_far_below(ax, curves: list[list[float]], fmt: str) -> None:
    """Limits `ax` to the runs near the best; each line left below is named so in the legend,
    with its highest point (the blurred input's level too, where it is below the runs kept)."""
    limits = near_best_limits(curves)
    if limits is None:
        return
    ax.set_ylim(*limits)
    for line in ax.get_lines():
        ys = [y for y in line.get_ydata() if math.isfinite(y)]
        if ys and not line.get_label().startswith("_") and max(ys) < limits[0]:
            line.set_label(f"{line.get_label()}, below the chart (up to {fmt.format(max(ys))})")


@any_script_text
def plot(runs: list[Run], png: Path, axis: str) -> Path:
    """Training loss, validation PSNR and SSIM of every run, overlaid, to `png`."""
    from runtime.atomic import atomic_file
    fig = figure(runs, axis)
    png.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(png) as f:
        fig.savefig(f, format="png", dpi=100)
    return png


def figure(runs: list[Run], axis: str):
    """The matplotlib Figure `plot` writes."""
    from matplotlib.figure import Figure

    # Names as messages show them: matplotlib cannot draw a name's byte that is not UTF-8.
    from runtime.imageio import shown_path
    runs = [r for r in runs if not r.problem]
    fig = Figure(figsize=(15, 4.2))
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.13, top=0.9, wspace=0.22)
    ax = fig.subplots(1, 3)
    curves: tuple[list, list] = ([], [])   # each run's PSNR and SSIM points, for the limits
    for i, r in enumerate(runs):
        # A line style and marker of its own too: by colour alone, runs were one curve in
        # greyscale and to a colour-blind reader (20 runs before a pair repeats).
        style = {"color": f"C{i % 10}", "ls": RUN_LINES[i % len(RUN_LINES)],
                 "marker": RUN_MARKERS[i % len(RUN_MARKERS)], "ms": 4}
        tr = [(x_value(r, t, axis), t["loss"]) for t in r.train
              if isinstance(t.get("loss"), (int, float))]
        if tr:
            # markers spread over the loss's many points, ten or so a curve
            ax[0].plot(*zip(*tr), lw=0.8, label=shown_path(r.label),
                       markevery=max(1, len(tr) // 10), **style)
        key = r.score_key
        if key:
            for j, k in enumerate((key.replace("_ssim", "_psnr"), key)):
                pts = [(x_value(r, v, axis), v["val"][k]) for v in _scored(r, k)
                       if isinstance(v["val"].get(k), (int, float))]
                if pts:
                    # An older version's SSIM reads higher for the same weights: named, as
                    # `best:` leaves it out and curves.png names it.
                    older = OLDER_SSIM if j == 1 and _older_ssim(r) else ""
                    ax[j + 1].plot(*zip(*pts), label=shown_path(r.label) + older, **style)
                    curves[j].append([y for _, y in pts if math.isfinite(y)])
    # The blurred input's score, where the validation has ground truth: the line a model must
    # be above to sharpen at all (one per set of validation images, and SSIM formula).
    for j, kind in enumerate(("psnr", "ssim")):
        inputs = sorted({(kind == "ssim" and _older_ssim(r), v["val"][f"input_gt_{kind}"])
                         for r in runs for v in r.val[-1:]
                         if isinstance(v["val"].get(f"input_gt_{kind}"), (int, float))})
        named = set()
        for older, level in inputs:
            label = "blurred input" + (OLDER_SSIM if older else "")
            ax[j + 1].axhline(level, color="0.5", ls=":" if older else "--", lw=0.8,
                              label=None if label in named else label)
            named.add(label)
    what = "crops seen (samples)" if axis == "samples" else "step"
    ax[0].set(title="training loss", xlabel=what)
    # Log only with a loss to scale: all NaN/inf/0 (a diverged run) made matplotlib warn.
    if any(isinstance(t.get("loss"), (int, float)) and 0 < t["loss"] < math.inf
           for r in runs for t in r.train):
        ax[0].set_yscale("log")
        plain_log_ticks(ax[0].yaxis)
    ax[1].set(title="validation PSNR (dB)", xlabel=what)
    ax[2].set(title="validation SSIM", xlabel=what)
    for a, ys, fmt in ((ax[1], curves[0], "{:.2f} dB"), (ax[2], curves[1], "{:.4f}")):
        _leave_out_the_far_below(a, ys, fmt)
    for a in ax:
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=8)
    return fig
