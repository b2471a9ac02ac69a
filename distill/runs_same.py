"""`sharpen runs A B --same`: whether two training runs are the same run, as an audit before a
model ships asks it (the same config and seed, code and software, training and validation
data, weights within a tolerance, metrics): a table of each check with both runs' values and
its verdict, and the exit code (0 the same, 1 they differ or cannot be shown the same, 2 bad
input). Wall times are not compared: two identical runs never take the same seconds."""
from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from runtime.console import count

from .config import RUN_CONTROL, WHERE
from .runs_compare import Run, format_table, read_run, run_folders

SAME, DIFFERS, UNKNOWN, NOTE = "same", "DIFFERS", "not recorded", "not compared"
# WHERE's keys name where files are: two machines spell them differently for the same files,
# which the data digests and the init's sha256 compare instead.
# metrics.jsonl's timings: how long a step took is never the same twice.
TIMINGS = {"time", "s_per_step", "data_s_per_step", "val_s"}
# metrics.jsonl's mark of the validations that became best.pt: the best.pt row compares that
# (a stop's validation, which only a stopped run takes, may move it).
MARKS = {"best"}
# metrics.jsonl's keys this version added, which an older version's records lack: a record
# without them is compared by the keys both have.
ADDED_KEYS = {"samples", "ssim_formula"}
# The software records compared apart from the code (provenance.run_environment's keys).
SOFTWARE = ("python", "torch", "numpy", "opencv", "scikit_image", "torch_threads", "device")
CHECKPOINTS = ("last.pt", "best.pt")


@dataclass
class Check:
    what: str
    a: str
    b: str
    verdict: str   # SAME, DIFFERS, UNKNOWN or NOTE, with what differs after it


class BadRun(ValueError):
    """Input that cannot be compared (exit 2): the message names the folder or file."""


def _shown(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def _checkpoint(path: Path) -> dict:
    """The checkpoint, its tensors mapped from the file, not read; BadRun naming the file
    (once: read_checkpoint's messages mostly name it already) where it cannot be read."""
    from .checkpoint import CheckpointError, read_checkpoint
    try:
        return read_checkpoint(path, mmap=True)
    except (CheckpointError, OSError) as e:
        raise BadRun(str(e) if str(path) in str(e) else f"{path}: {e}") from None


def _record(folder: Path) -> dict:
    """What the run's checkpoint records (last.pt, full, records the data; else best.pt):
    its environment, data signature, lineage and step. {} where there is no checkpoint."""
    for name in CHECKPOINTS:
        p = folder / name
        if p.is_file():
            ck = _checkpoint(p)
            return {"from": name, **{k: ck.get(k) for k in ("environment", "data", "lineage")}}
    return {}


def _defaults() -> dict:
    """This version's config defaults, by dotted key."""
    from .config import TrainConfig
    from .runs_compare import _flatten
    return _flatten(TrainConfig().to_dict())


def settings_checks(a: Run, b: Run) -> list[Check]:
    """The seed, then a row per config key that differs. Steering keys (log_every...) and
    where files are (data.train...) are shown but not counted: the data digests compare the
    files, and steering does not change what is trained."""
    # with `processes` (torchrun's, from train.log): the batch of a step is theirs together
    ca, cb = a.config, b.config
    if not ca or not cb:
        missing = a if not ca else b
        return [Check("settings", "config.yaml" if ca else "-", "config.yaml" if cb else "-",
                      f"{UNKNOWN}: {missing.label} has no readable config.yaml")]
    rows = [Check("seed", _shown(ca.get("seed")), _shown(cb.get("seed")),
                  SAME if ca.get("seed") == cb.get("seed") else DIFFERS)]
    defaults = _defaults()

    def why(k: str, va, vb) -> str:
        if k in RUN_CONTROL:
            return f"{NOTE} (steers the run, not what it trains)"
        if "<unset>" in (va, vb) and k in defaults \
                and defaults[k] == (vb if va == "<unset>" else va):
            # A key an older version did not have: the default it gained kept what that
            # version did (data.gopro_blur: blur/ was always read), not a changed setting.
            return (f"{UNKNOWN}: not in an older version's config.yaml; "
                    f"{_shown(defaults[k])} is this version's default")
        if k in WHERE:
            return f"{NOTE} (a path: the files are compared below)"
        return DIFFERS

    differ = setting_rows(ca, cb, {"out", "seed"}, why)
    if not any(c.verdict == DIFFERS for c in differ):
        rows.append(Check("settings", f"{len(ca)} keys", f"{len(cb)} keys", SAME))
    return rows + differ


def setting_rows(ca: dict, cb: dict, skip: set[str],
                 why: Callable[[str, object, object], str]) -> list[Check]:
    """A row per key of two flattened settings (`skip`: those compared elsewhere) whose values
    differ, "<unset>" where one lacks it, with `why`'s verdict (runs' config.yaml and exports'
    settings alike)."""
    rows = []
    for k in sorted((set(ca) | set(cb)) - skip):
        va, vb = ca.get(k, "<unset>"), cb.get(k, "<unset>")
        if json.dumps(va, sort_keys=True, default=str) == json.dumps(vb, sort_keys=True,
                                                                        default=str):
            continue
        rows.append(Check(f"setting {k}", *_cells(va, vb), why(k, va, vb)))
    return rows


def _cell(v) -> str:
    """A setting as its table cell: a long list (an export's 12 parity images' names) as its
    length, first and last item; in full it made the table hundreds of columns wide."""
    shown = _shown(v)
    if isinstance(v, list) and len(v) > 2 and len(shown) > 60:
        return f"{len(v)}: {_shown(v[0])} ... {_shown(v[-1])}"
    return shown


def _cells(va, vb) -> tuple[str, str]:
    """Two values that differ as their cells; two long lists whose cells read the same (their
    ends alike) with the first item where they part, else nothing in the row showed why."""
    a, b = _cell(va), _cell(vb)
    if a == b and isinstance(va, list) and isinstance(vb, list):
        if (i := next((i for i, (x, y) in enumerate(zip(va, vb)) if x != y), None)) is not None:
            a, b = f"{a}; item {i + 1}: {_shown(va[i])}", f"{b}; item {i + 1}: {_shown(vb[i])}"
    return a, b


def software_checks(ra: dict, rb: dict, keys: tuple[str, ...] = SOFTWARE,
                    judge: str = "the weights and metrics") -> list[Check]:
    """The code version (sharpen and its commit), then the libraries, threads and device
    (`keys` of the environment: an export records its converters' too, which `judge`, its
    artifacts, say whether they mattered)."""
    ea, eb = ra.get("environment"), rb.get("environment")
    if not isinstance(ea, dict) or not isinstance(eb, dict):
        return [Check("code version", "-", "-", f"{UNKNOWN}: a checkpoint records no software "
                      "(no checkpoint, or an older version's)")]

    def code(e: dict) -> str:
        return f"sharpen {e.get('sharpen')}" + (f" ({e['code']})" if e.get("code") else "")
    rows = []
    if code(ea) != code(eb):
        rows.append(Check("code version", code(ea), code(eb), DIFFERS))
    elif not ea.get("code"):
        rows.append(Check("code version", code(ea), code(eb),
                          f"{UNKNOWN}: no git commit recorded, the version alone"))
    elif ea["code"].endswith("+changes"):
        rows.append(Check("code version", code(ea), code(eb), f"{UNKNOWN}: both with "
                          "uncommitted changes, which are not recorded"))
    else:
        rows.append(Check("code version", code(ea), code(eb), SAME))
    for k in keys:
        if ea.get(k) != eb.get(k):
            # Shown, not counted: whether another library, thread count or device changed
            # the numbers is what the weights and metrics rows say.
            rows.append(Check(k.replace("_", " "), _shown(ea.get(k)), _shown(eb.get(k)),
                              f"{NOTE} ({judge} say whether it mattered)"))
    if len(rows) == 1:
        rows.append(Check("software", ", ".join(f"{k} {ea.get(k)}" for k in ("torch", "device")),
                          ", ".join(f"{k} {eb.get(k)}" for k in ("torch", "device")), SAME))
    return rows


def data_checks(ra: dict, rb: dict) -> list[Check]:
    """Training and validation files by count and digest (last.pt's data signature), and
    the weights a fine-tune started from by their sha256."""
    rows = []
    da, db = ra.get("data"), rb.get("data")
    for key, what in (("train", "training data"), ("val", "validation data")):
        if not isinstance(da, dict) or not isinstance(db, dict) \
                or f"{key}_digest" not in da or f"{key}_digest" not in db:
            rows.append(Check(what, "-", "-", f"{UNKNOWN}: no last.pt records it"))
            continue
        sa, sb = _files(da, key), _files(db, key)
        if key == "train" and sa != sb and da.get("train") == db.get("train") \
                and None in (da.get("train_digest_of"), db.get("train_digest_of")):
            # An older version's digest took in file times: a copy of the same files has
            # another, as a relabelled file has; the resume's own check compares such a
            # record by count alone too (data_changes).
            rows.append(Check(what, sa, sb, f"{UNKNOWN}: the same count; whether the same "
                              "files is not known (an older version's digest took in file "
                              "times)"))
            continue
        rows.append(Check(what, sa, sb, SAME if sa == sb else DIFFERS))
    ia = (ra.get("lineage") or {}).get("init") or {}
    ib = (rb.get("lineage") or {}).get("init") or {}
    if ia or ib:
        sa, sb = ia.get("sha256", "-"), ib.get("sha256", "-")
        rows.append(Check("init weights", f"sha256 {sa}", f"sha256 {sb}",
                          SAME if sa == sb and sa != "-" else DIFFERS))
    return rows


def _files(sig: dict, key: str) -> str:
    n = sig.get(key)
    if n == 0 and key == "train":   # the built-in set is made by the code, not read
        return f"no files (the built-in set), digest {sig[f'{key}_digest']}"
    return f"{n} image{'' if n == 1 else 's'}, digest {sig[f'{key}_digest']}"


def _weights(path: Path) -> tuple[dict, str]:
    """The model and EMA tensors (mapped) and what the checkpoint holds in words (its tensors
    and step)."""
    ck = _checkpoint(path)
    tensors = {f"{part}.{n}": t for part in ("model", "ema")
               if isinstance(ck.get(part), dict) for n, t in ck[part].items()}
    step = ck.get("step")
    return tensors, f"{len(tensors)} tensors" + (f", step {step}" if step is not None else "")


# Elements compared at a time: 32 MB a side in float64, whatever the tensor's size (one
# whole in float64 took four copies of it, 16 GB for a 1 GB tensor).
CHUNK = 1 << 22


def largest_difference(x, y) -> float:
    """The largest absolute difference of two tensors of one shape; NaN or inf in the same
    places of both are no difference, in other places an infinite one."""
    import torch
    if x.dtype == y.dtype and torch.equal(x, y):   # no copy: most tensors of a rerun
        return 0.0
    x, y = x.reshape(-1), y.reshape(-1)
    worst = 0.0
    for i in range(0, x.numel(), CHUNK):
        cx, cy = x[i:i + CHUNK].double(), y[i:i + CHUNK].double()
        top = float((cx - cy).abs().max())
        if not math.isfinite(top):
            top = 0.0 if bool((cx.isnan() == cy.isnan()).all()) and \
                bool((cx.nan_to_num() == cy.nan_to_num()).all()) else math.inf
        worst = max(worst, top)
    return worst


def weight_checks(a: Run, b: Run, tolerance: float) -> list[Check]:
    """Each checkpoint both runs have (last.pt, best.pt, stepN.pt): model and EMA tensors,
    the largest absolute difference and where it is."""
    names = [n for n in CHECKPOINTS if (a.path / n).is_file() or (b.path / n).is_file()]
    names += sorted({p.name for r in (a, b) for p in r.path.glob("step*.pt")} - set(names),
                    key=lambda n: (len(n), n))
    if not names:
        return [Check("weights", "-", "-", f"{UNKNOWN}: neither run saved a checkpoint")]
    rows = []
    for n in names:
        pa, pb = a.path / n, b.path / n
        if not (pa.is_file() and pb.is_file()):
            # A snapshot one run kept (snapshot_every, keep_snapshots: steering) is no other
            # training; a missing last.pt or best.pt is.
            rows.append(Check(f"weights {n}", "yes" if pa.is_file() else "missing",
                              "yes" if pb.is_file() else "missing",
                              DIFFERS if n in CHECKPOINTS else f"{NOTE} (in one run only)"))
            continue
        (wa, said_a), (wb, said_b) = _weights(pa), _weights(pb)
        if set(wa) != set(wb) or any(wa[k].shape != wb[k].shape for k in wa):
            rows.append(Check(f"weights {n}", said_a, said_b,
                              f"{DIFFERS}: other layers or shapes"))
            continue
        worst, where, differ = 0.0, "", 0
        for k in wa:   # a tensor at a time: the files are mapped, not read whole
            top = largest_difference(wa[k], wb[k])
            differ += top > 0
            if top > worst:
                worst, where = top, k
        which = f"{count(differ, 'tensor')} differ{'s' if differ == 1 else ''}"
        rows.append(Check(f"weights {n}", said_a, said_b,
                          _within(worst, tolerance, f"{which}, the most in {where}")))
    return rows


def _within(worst: float, tolerance: float, where: str) -> str:
    if worst == 0:
        return f"{SAME} (bit for bit)"
    if worst <= tolerance:
        return f"{SAME} (within {tolerance:g}: largest difference {worst:.3g}, {where})"
    return f"{DIFFERS}: largest difference {worst:.3g} > {tolerance:g}, {where}"


def _numbers(rec: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in rec.items():
        if k in TIMINGS or k in MARKS:
            continue
        if isinstance(v, dict):
            out.update(_numbers(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = float(v)
        else:
            out[f"{prefix}{k}"] = v
    return out


def _keyed(run: Run) -> dict:
    """metrics.jsonl's records by (kind, step, n): n tells apart two records of one step."""
    out: dict = {}
    seen: Counter = Counter()
    for kind, recs in (("step", run.train), ("validation", run.val)):
        for r in recs:
            out[kind, r["step"], seen[kind, r["step"]]] = _numbers(r)
            seen[kind, r["step"]] += 1
    return out


def metrics_check(a: Run, b: Run, tolerance: float) -> Check:
    """metrics.jsonl's records of the steps both runs logged, timings left out: losses,
    learning rates and validation scores, each number within `tolerance`. A record one run
    has alone is said, not counted: a stop validates where it stops, and log_every and
    val_every steer. Step records of runs of another log_every are not compared: each
    averages the steps since the one before."""
    ra, rb = _keyed(a), _keyed(b)
    sa, sb = f"{len(ra)} records", f"{len(rb)} records"
    if not ra and not rb:
        return Check("metrics", sa, sb, f"{UNKNOWN}: neither run logged a step")
    skipped = ""
    if a.config.get("log_every") != b.config.get("log_every"):
        ra = {k: v for k, v in ra.items() if k[0] != "step"}
        rb = {k: v for k, v in rb.items() if k[0] != "step"}
        skipped = "; step records not compared (another log_every)"
    shared = sorted(set(ra) & set(rb), key=lambda k: (k[1], k[0] == "validation", k[2]))
    alone = sorted(set(ra) ^ set(rb), key=lambda k: (k[1], k[0]))
    if alone:
        said = ", ".join(f"{k[0]} at step {k[1]} in {(a if k in ra else b).label}"
                         for k in alone[:3])
        skipped += (f"; {count(len(alone), 'record')} in one run only, not compared "
                    f"({said}{', ...' if len(alone) > 3 else ''})")
    if not shared:
        return Check("metrics", sa, sb, f"{UNKNOWN}: no step logged by both{skipped}")
    worst, where, older = 0.0, "", []
    for key in shared:
        x, y, step = ra[key], rb[key], key[1]
        if key[0] == "validation" and x.get("ssim_formula") != y.get("ssim_formula"):
            # Scored another way (an older version's SSIM: 0.8923 where this version's gives
            # 0.8858 for weights the same bit for bit): the scores tell the formulas apart.
            older.append((step, a if "ssim_formula" not in x else b))
            continue
        if not (set(x) ^ set(y)) <= ADDED_KEYS:
            keys = sorted(set(x) ^ set(y))
            return Check("metrics", sa, sb, f"{DIFFERS}: at step {step:g}, {', '.join(keys)} "
                         "in one run only")
        for k in (k for k in x if k in y):
            if isinstance(x[k], float) and isinstance(y[k], float):
                d = abs(x[k] - y[k])
                if math.isnan(d):
                    d = 0.0 if math.isnan(x[k]) and math.isnan(y[k]) else math.inf
                if d > worst:
                    # digits enough to show the two apart: 16.1731 vs 16.1731 told nothing
                    worst, where = d, f"{k} at step {step:g} ({x[k]:.10g} vs {y[k]:.10g})"
            elif x[k] != y[k]:
                return Check("metrics", sa, sb, f"{DIFFERS}: {k} at step {step:g}")
    said = _within(worst, tolerance, where)
    if older and not said.startswith(DIFFERS):
        steps = ", ".join(f"{step:g}" for step, _ in older)
        said = (f"{UNKNOWN}: {'validations at steps' if len(older) > 1 else 'validation at step'}"
                f" {steps} in {' and '.join(dict.fromkeys(r.label for _, r in older))} scored "
                f"by an older version's formula, not compared; the rest {said}")
    return Check("metrics", sa, sb, said + skipped)


def compare(a: Run, b: Run, tolerance: float) -> list[Check]:
    """Every check of two readable runs, in the order an auditor reads them."""
    ra, rb = _record(a.path), _record(b.path)
    def state(r: Run) -> str:
        return f"{r.state} {r.steps}" + (f"/{r.total_steps}" if r.total_steps else "")
    rows = [Check("state", state(a), state(b), SAME if state(a) == state(b) else DIFFERS)]
    rows += settings_checks(a, b)
    rows += software_checks(ra, rb)
    rows += data_checks(ra, rb)
    rows += weight_checks(a, b, tolerance)
    rows.append(metrics_check(a, b, tolerance))
    return rows


def read_pair(paths: list[Path]) -> tuple[Run, Run]:
    """The two runs to compare; BadRun where they are not two readable run folders."""
    if len(paths) == 2 and os.path.realpath(paths[0]) == os.path.realpath(paths[1]):
        raise BadRun(f"--same: {paths[0]} and {paths[1]} are the same folder")
    given = paths
    paths = run_folders(paths)   # runs/ holding the two runs stands for them
    if len(paths) != 2:
        raise BadRun(f"--same compares two run folders, got {len(paths)}"
                     + (f" in {' '.join(map(str, given))}" if paths != given else ""))
    runs = [read_run(p) for p in paths]
    for r in runs:
        if r.problem:
            raise BadRun(f"{r.path}: {r.problem}")
    if runs[0].label == runs[1].label:
        for r in runs:
            r.label = str(r.path)
    return runs[0], runs[1]


def verdict(a: Run, b: Run, rows: list[Check]) -> tuple[int, str]:
    """The exit code and the closing line."""
    differ = [c.what for c in rows if c.verdict.startswith(DIFFERS)]
    unknown = [c.what for c in rows if c.verdict.startswith(UNKNOWN)]
    if differ:
        return 1, f"differ: {a.label} and {b.label} ({', '.join(differ)})"
    if unknown:
        return 1, (f"not shown the same: {a.label} and {b.label} agree where both record it, "
                   f"but {', '.join(unknown)} cannot be compared")
    return 0, f"same: {a.label} and {b.label}"


def report(a: Run, b: Run, rows: list[Check]) -> tuple[int, str, dict]:
    """The exit code, the table with its closing line, and what --out writes to same.json
    (runs' and exports' alike)."""
    table = format_table(["check", a.label, b.label, "verdict"],
                         [[c.what, c.a, c.b, c.verdict] for c in rows])
    code, last = verdict(a, b, rows)
    checks = [{"check": c.what, "a": c.a, "b": c.b, "status": status(c.verdict),
               "verdict": c.verdict} for c in rows]
    record = {"same": code == 0, "exit_code": code, "a": str(a.path), "b": str(b.path),
              "verdict": last, "differ": [c["check"] for c in checks
                                          if c["status"] == DIFFERS.lower()],
              "checks": checks}
    return code, f"{table}\n{last}", record


def status(v: str) -> str:
    """A verdict's word alone, for a program: same, differs, not recorded or not compared."""
    return next(w for w in (SAME, DIFFERS, UNKNOWN, NOTE) if v.startswith(w)).lower()


def same_runs(paths: list[Path], tolerance: float) -> tuple[int, str, dict]:
    """The exit code, what to print and same.json's record; BadRun (exit 2) for input that
    cannot be compared."""
    a, b = read_pair(paths)
    return report(a, b, compare(a, b, tolerance))

