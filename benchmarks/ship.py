"""The report's short answer: which model to ship on each backend.

A reader deciding what to deploy had to cross the quality table, the checks and a latency
table of every size by hand. Per backend this picks, at the product's frame size, the model
with the best held-out SSIM among those that pass their checks (the quality gate, and the
artifact's parity) and whose 90th-percentile time per frame is within its budget:
--cpu-target-fps on a CPU, --target-fps on a GPU (TensorRT, CUDA); where none is, it says why
and how far the fastest one is from the budget. The median alone passed a model at 92.6 ms
against 100 ms whose slow frames missed the budget, a pick that flipped with machine noise: a
stream has to hold its rate on the slow frames too.
"""
from __future__ import annotations

from typing import Optional, Sequence

from runtime.console import shell_join

from .latency import BACKEND_BY_KEY
from .machine import busy_text
from .streams import (judge as judge_streams, not_run, ship_text as streams_text, short_of,
                      short_text)

PRODUCT_SIZE = "1920x1080"
GATES = ("ssim-ratio", "ssim-gain")

HEADERS = ["backend", "precision", "ship", "median ms", "p90 ms", "budget ms", "held-out SSIM",
           "peak MiB", "why"]
MEMORY_OPTION = "--max-memory-mib"
NO_VIDEO_IO = "video decoding and encoding not counted"
RULE = ("the 90th-percentile (p90) time per frame within the budget: a stream at the target "
        "rate then misses it on at most one frame in ten (the median passed models that miss "
        "it on half)")
# What a row from a report without p90 is judged on (read back, it is judged anew).
NO_P90 = "median (no p90 recorded)"
# A PyTorch pick's line, before its export command and a closing parenthesis.
EXPORT_FIRST = "sharpen run takes an exported file: export it first ("
# Where the command takes the frames from and writes them: the user's own.
RUN_PLACEHOLDERS = ("--source", "INPUT", "--out", "OUTPUT")


def on_gpu(r: dict) -> bool:
    """Whether a latency row ran on a GPU (TensorRT, or a CUDA provider): the rest ran on
    the CPU, whose target is --cpu-target-fps."""
    where = f"{r.get('backend')} {r.get('provider') or ''}".lower()
    return r.get("backend", "").startswith("trt") or "cuda" in where or "tensorrt" in where


def backend_on_gpu(rows: list[dict]) -> bool:
    """Whether one backend's latency rows ran on a GPU: a row timed there, or TensorRT."""
    return (any(on_gpu(r) for r in rows if r["status"] == "ok")
            or any(r.get("backend", "").startswith("trt") for r in rows))


def targets_of(settings: dict) -> dict[bool, float]:
    """{on a GPU: --target-fps, on the CPU: --cpu-target-fps}."""
    return {True: float(settings["target_fps"]),
            # a report from before --cpu-target-fps judged every backend on --target-fps
            False: float(settings.get("cpu_target_fps") or settings["target_fps"])}


def judge_latency(rep: dict) -> None:
    """Sets each latency row's target (and the stream's) to its backend's, as the what-to-ship
    pick judges it: the table judged every row on --target-fps, so a CPU pick read "no" there.
    A row gets target_fps, target_device, target_option and budget_ms; a timed one
    meets_target from its p90 within the budget (`judged`), the stream from its throughput
    (its stages overlap: its ms are not 1000 / fps)."""
    lat = rep.get("latency") or {}
    targets = targets_of(rep["settings"])
    for key in ("rows", "stream"):
        rows = lat.get(key) or []
        for backend in dict.fromkeys(r["backend"] for r in rows):
            mine = [r for r in rows if r["backend"] == backend]
            gpu = backend_on_gpu(mine)
            for r in mine:
                judge_row(r, targets, gpu, stream=key == "stream")


def judge_row(r: dict, targets: dict[bool, float], gpu: Optional[bool] = None,
              stream: bool = False) -> dict:
    """One latency row judged as judge_latency judges a report's (and returns it): its
    backend's target (`targets_of`; `gpu` None: where this row ran), and meets_target from
    its p90 within the budget, a stream's from its throughput. `pytest benchmarks/` judges
    each row with this as it records it: it judged the median against --target-fps alone,
    a second verdict on the model `sharpen bench` judged."""
    if gpu is None:
        gpu = backend_on_gpu([r])
    target = targets[gpu]
    r.update(target_fps=target, target_device="GPU" if gpu else "CPU",
             target_option="--target-fps" if gpu else "--cpu-target-fps",
             budget_ms=round(1000.0 / target, 3))
    judge_streams(r.get("streams") or [], target)   # each of N streams at a camera's rate
    if r["status"] != "ok" or r.get("fps") is None:
        return r
    if stream or r.get("ms") is None:
        r["meets_target"] = bool(r["fps"] >= target)
    else:
        ms, on = judged(r)
        r.update(meets_target=bool(ms <= 1000.0 / target), judged_on=on)
    return r


def meets_cell(r: dict) -> str:
    """A timed latency row's "meets target" cell with the device whose budget it was judged
    on, "no (CPU)" (the tables' titles give each budget: a budget column wrapped the
    backend's name in the terminal); a report from before the per-backend targets: "no"."""
    verdict = "yes" if r["meets_target"] else "no"
    return f"{verdict} ({r['target_device']})" if r.get("target_device") else verdict


def ship_section(rep: dict) -> Optional[dict]:
    """report.json's "ship": {"size", "target_fps", "cpu_target_fps", "rows", "answer"}, each
    row with the budget it was judged on; None when nothing was timed (--no-latency, or no
    student row measured)."""
    lat = rep.get("latency") or {}
    rows = [r for r in lat.get("rows") or [] if r.get("model") != "teacher"
            and not r.get("informational")]
    timed = [r for r in rows if r["status"] == "ok" and r.get("ms") is not None]
    if not timed:
        return None
    sizes = {r["size"]: r["width"] * r["height"] for r in timed}
    size = PRODUCT_SIZE if PRODUCT_SIZE in sizes else max(sizes, key=sizes.get)
    settings = rep["settings"]
    targets = targets_of(settings)
    checks = rep.get("checks") or []
    quality = {q["key"]: q for q in (rep.get("quality") or {}).get("rows") or []}
    real = ((rep.get("real_blur") or {}).get("pairs") or {})
    checkpoints = {st["name"]: st.get("path") for st in settings.get("students") or []}
    refused = _refused(rep)
    # A device's bench without PyTorch: no held-out SSIM, so no check to pass or fail.
    unjudged = ((rep.get("quality") or {}).get("settings") or {}).get("skipped")
    # What the backends ran on: --threads, else OMP_NUM_THREADS's, which the shell pasting
    # the line may not set (a report from before it was kept: --threads).
    lat_set = lat.get("settings") or {}
    threads = (lat_set["runtime_threads"] if "runtime_threads" in lat_set
               else settings.get("threads"))
    max_mib = settings.get("max_memory_mib")
    out = []
    for backend in dict.fromkeys(r["backend"] for r in rows):
        mine = [r for r in rows if r["backend"] == backend]
        gpu = backend_on_gpu(mine)
        out.append(_backend_row(backend, mine, size, targets[gpu], gpu, checks, quality, real,
                                threads, checkpoints, refused, max_mib,
                                settings.get("streams") or [], unjudged))
    out = [r for r in out if r is not None]
    picks = [r for r in out if r["ship"]]
    # The product's frame: a pick at a smaller size may not hold there.
    note = "" if size == PRODUCT_SIZE else f"; not timed at {PRODUCT_SIZE}, the product's size"
    # Said before the `sharpen run` line, which ends the answer for a reader to copy.
    busy = busy_text(lat_set.get("load"))
    note += f"; {busy}" if busy else ""
    if picks:
        # A file `sharpen run` takes before a PyTorch checkpoint it refuses, whose SSIM is
        # the FP32 export's within noise: the answer is what the user can deploy as it is.
        best = max(picks, key=lambda r: (r["file"] is not None, r["ssim"], -r["judged_ms"]))
        answer = (f"{best['ship']} on {best['backend_label']}: held-out SSIM "
                  f"{best['ssim']:.4f}, {_times_text(best)} per {size} frame"
                  + _peak_text(best, size) + ", "
                  f"{best['judged_ms'] / best['budget_ms']:.2f}x the "
                  f"{budget_text(best['budget_ms'])} ms budget ({_target_text(best)})"
                  + (f"; {text}" if (text := streams_text(best)) else "") + f"{note}; "
                  + (f"run it: {best['run']}" if best["file"] else _no_file(best, out)))
    elif short := [r for r in out if r.get("streams_short")]:
        n = max(r["streams_short"]["streams"] for r in short)
        answer = (f"nothing serves {n} cameras at {short[0]['target_fps']:g} fps at {size}: "
                  + "; ".join(f"{r['backend_label']}: {r['why']}" for r in short) + note)
    elif slow := [r for r in out if r.get("fastest", {}).get("ssim") is not None]:
        # The nearest to its own budget: the budgets differ between CPU and GPU.
        best = min(slow, key=lambda r: r["fastest"]["judged_ms"] / r["budget_ms"])
        f = best["fastest"]
        answer = (f"nothing within its budget at {size}: of the models that pass their "
                  f"checks, the nearest, {f['model']} on {best['backend_label']}, takes "
                  f"{_times_text(f)} per frame, {f['judged_ms'] / best['budget_ms']:.1f}x the "
                  f"{budget_text(best['budget_ms'])} ms budget ({_target_text(best)}){note}")
    elif unjudged:   # no check was made, none failed
        answer = (f"not judged: the pick needs each model's held-out SSIM, not measured here "
                  f"({unjudged.split(':')[0]}); the Latency table gives each file's times at "
                  f"{size}" + note)
    else:
        answer = (f"nothing: no model timed at {size} passes its checks (the quality gate "
                  f"and parity: see Checks)"
                  + (f" within {max_mib:g} MiB of peak memory ({MEMORY_OPTION})"
                     if max_mib is not None else "") + note)
    return {"size": size, "target_fps": targets[True], "cpu_target_fps": targets[False],
            "max_memory_mib": max_mib,
            "ranked_by": "mean SSIM to ground truth on the held-out set (quality table)",
            "rule": RULE, "busy": busy, "rows": out, "answer": answer}


def _refused(rep: dict) -> dict:
    """Quality key -> why its export's parity gate failed, for the files `sharpen run` refuses
    without --force: the bench times them forced and checks its own parity, which they may
    pass, and the run line then failed."""
    out = {}
    for name, a in (rep.get("artifacts") or {}).items():
        for fmt, art in ((a or {}).get("formats") or {}).items():
            if art.get("status") == "fail":
                out[f"{name}/{fmt}"] = art.get("reason") or "see the export's report"
    for gm in (rep.get("settings") or {}).get("models") or []:
        if gm.get("export_gate"):
            out[gm["name"]] = gm["export_gate"]
    return out


def _no_file(best: dict, out: list[dict]) -> str:
    """The end of an answer that picked a PyTorch checkpoint: no exported file fit, which
    the export line alone read as if exporting would do."""
    exported = any(r["backend"] != best["backend"] for r in out)
    return ("no exported file benchmarked here is within its budget and passes its checks (each "
            "backend's row says why); " if exported else "") + best["run"]


def _target_text(row: dict) -> str:
    return (f"{row['target_fps']:g} fps, the "
            + ("GPU target, --target-fps" if row["device"] == "GPU"
               else "CPU target, --cpu-target-fps"))


def judged(r: dict) -> tuple[float, str]:
    """The time per frame a latency row is judged on, and what it is: its p90; the one
    round's time where quick mode timed a slow call once; the median where the record has no
    p90 (a report from before it was kept)."""
    if r.get("p90_ms") is None:
        return r["ms"], NO_P90
    if (r.get("timing") or {}).get("rounds") == 1:
        return r["p90_ms"], "one round"
    return r["p90_ms"], "p90"


def _times_text(r: dict) -> str:
    """"112.4 ms at p90 (median 92.6 ms)": the number judged first, then the median."""
    if r["judged_on"] == "p90":
        return f"{r['judged_ms']:.1f} ms at p90 (median {r['ms']:.1f} ms)"
    on = "median; no p90 recorded" if r["judged_on"] == NO_P90 else r["judged_on"]
    return f"{r['judged_ms']:.1f} ms ({on})"


def _at(rows) -> str:
    """The time a set of rows was judged on, for the why: "at p90", but the median where a
    report from before the p90 was kept has none."""
    ons = {judged(r)[1] for r in rows}
    if NO_P90 not in ons:
        return "at p90"
    return f"on the {NO_P90}" if ons == {NO_P90} else "at p90 (the median where none is recorded)"


def _times(r: dict) -> dict:
    ms, on = judged(r)
    return {"ms": r["ms"], "p90_ms": r.get("p90_ms"), "judged_ms": ms, "judged_on": on,
            "rounds": (r.get("timing") or {}).get("rounds")}


def run_command(r: dict, q: dict, gpu: bool, threads) -> tuple[Optional[str], str]:
    """(the file, the `sharpen run` line that runs it as timed, in its tiles where it was
    timed tiled) for a latency row; a PyTorch row has no file `sharpen run` takes: the line
    exports its checkpoint first."""
    # Quoted for this system's shell: the cache or a --model file may sit under a folder with
    # a space (C:\Users\Jane Doe), and the line is for pasting.
    file = q.get("file") or r.get("file")
    if not file:
        ckpt = r.get("checkpoint") or r.get("student")
        export = shell_join(["sharpen", "export", "--weights", str(ckpt), "--out", "export/"])
        return None, f"{EXPORT_FIRST}{export})"
    # The threads it was timed on: a run on other counts is not the speed judged here.
    # Its tile too: a whole frame's memory and speed are not the ones judged.
    return file, shell_join(["sharpen", "run", "--model", str(file), *RUN_PLACEHOLDERS]
                            + (["--tile", str(int(r["tile"]))] if r.get("tile") else [])
                            + (["--threads", str(int(threads))] if threads and not gpu else []))


def _backend_row(backend: str, rows: list[dict], size: str, target: float, gpu: bool,
                 checks: list[dict], quality: dict, real: dict,
                 threads=None, checkpoints: Optional[dict] = None,
                 refused: Optional[dict] = None, max_mib: Optional[float] = None,
                 streams: Sequence[int] = (), unjudged: Optional[str] = None
                 ) -> Optional[dict]:
    spec = BACKEND_BY_KEY.get(backend)
    label = rows[0].get("backend_label") or backend
    at_size = [r for r in rows if r["size"] == size]
    budget = 1000.0 / target
    row = {"backend": backend, "backend_label": label,
           "precision": (spec.precision if spec else rows[0].get("precision") or "-"),
           "device": "GPU" if gpu else "CPU", "target_fps": target,
           "budget_ms": round(budget, 3), "ship": None, "ms": None, "p90_ms": None,
           "judged_ms": None, "judged_on": None, "rounds": None, "ssim": None,
           "peak_rss_mib": None, "video_peak_rss_mib": None, "file": None,
           "run": None, "why": ""}
    ok = [r for r in at_size if r["status"] == "ok" and r.get("ms") is not None]
    if not ok:
        if all(r["status"] == "skipped" for r in rows):
            return None   # not run here (no TensorRT): the Skipped section says why
        others = sorted({r["size"] for r in rows if r["status"] == "ok"})
        reasons = sorted({f"{_name(r)}: {r['status']}: {r['reason']}" for r in at_size
                          if r["status"] != "ok"})
        row["why"] = (f"not timed at {size}" + (f" (timed at {', '.join(others)} only)"
                                                if others else "")
                      + (f"; {'; '.join(reasons)}" if reasons else ""))
        return row
    passing, failing = [], []
    for r in ok:
        q = quality.get(_quality_key(r))
        failed = _failed_checks(r, checks)
        if (gate := (refused or {}).get(_quality_key(r))) is not None:
            failed = ", ".join(filter(None, [
                failed, "its export's parity gate failed, which sharpen run refuses without "
                f"--force: {gate}"]))
        if q is None or q.get("ssim") is None:
            failing.append((r, "no held-out SSIM measured"))
        elif failed:
            failing.append((r, failed))
        elif over := _over_memory(r, max_mib):
            failing.append((r, over))
        elif streams and (unrun := not_run(r, streams)):
            failing.append((r, unrun))
        else:
            passing.append((r, q["ssim"]))
    # With --streams, one stream's budget is not enough: N at once must each keep the rate.
    in_budget = [(r, s) for r, s in passing if judged(r)[0] <= budget]
    fits = [(r, s) for r, s in in_budget if short_of(r) is None]
    short = [(r, s) for r, s in in_budget if short_of(r) is not None]
    not_timed = sorted({_name(r) for r in at_size if r["status"] != "ok"})
    # The models left out, each with why: a faster one failing its checks is not "slower".
    tail = "".join(f"; left out: {_name(f)} ({why})" for f, why in failing) if passing else ""
    if fits:
        # The ones over the budget at p90, one whose median alone fits among them: the
        # reader sees why each lost.
        tail += "".join(f"; over budget: {_name(r)} ({_times_text(_times(r))})"
                        for r, _ in passing if judged(r)[0] > budget)
        tail += "".join(f"; too slow at {short_text(short_of(r))}: {_name(r)}"
                        for r, _ in short)
    tail += (f"; not timed at {size}: {', '.join(not_timed)} (see Latency)" if not_timed
             else "")
    if fits:
        fits_r = [f for f, _ in fits]
        r, s = max(fits, key=lambda rs: (rs[1], -judged(rs[0])[0]))
        others = len(fits) - 1
        if r.get("student") and not r.get("given") and checkpoints:
            r = {**r, "checkpoint": checkpoints.get(r["student"])}
        file, run = run_command(r, quality.get(_quality_key(r)) or {}, gpu, threads)
        row.update(ship=_name(r), ssim=s, file=file, run=run, **_times(r),
                   peak_rss_mib=r.get("peak_rss_mib"),
                   video_peak_rss_mib=r.get("video_peak_rss_mib"),
                   **({"streams": r["streams"]} if r.get("streams") else {}),
                   why=(f"best held-out SSIM of the {len(fits)} within budget {_at(fits_r)}"
                        if others else
                        f"the only one within budget {_at(fits_r)} that passes its checks"))
        if (gain := _real_gain(r, real)) is not None:
            row["real_blur_ssim_gain"] = gain
            # The real-blur sets run a student's checkpoint, but a --model file itself.
            row["why"] += (f"; real-blur SSIM gain {gain:+.4f} "
                           + ("(the file itself)" if r.get("given") else "(PyTorch FP32)"))
        row["why"] += tail
        return row
    if short:   # each fits one stream's budget, and each misses it with N at once
        row["streams_short"] = short_of(max(short, key=lambda rs: rs[1])[0])
        row["why"] = (f"none keeps {target:g} fps a stream with "
                      f"{row['streams_short']['streams']} at once (--streams): "
                      + "; ".join(f"{_name(r)} ({short_text(short_of(r))})" for r, _ in short)
                      + tail)
        return row
    if passing:
        r, s = min(passing, key=lambda rs: judged(rs[0])[0])
        row["fastest"] = {"model": _name(r), **_times(r), "ssim": s}
        t = row["fastest"]
        row["why"] = (f"none within {budget_text(budget)} ms {_at(f for f, _ in passing)}; "
                      "the fastest that passes "
                      f"its checks, {_name(r)}, takes {_times_text(t)}, "
                      f"{t['judged_ms'] / budget:.1f}x the budget" + tail)
        return row
    r = min(ok, key=lambda r: judged(r)[0])
    row["fastest"] = {"model": _name(r), **_times(r)}
    t = row["fastest"]
    if unjudged:
        row["why"] = (f"not judged: no held-out SSIM ({unjudged.split(':')[0]}); the fastest, "
                      f"{_name(r)}, takes {_times_text(t)}, {t['judged_ms'] / budget:.1f}x the "
                      "budget" + tail)
        return row
    row["why"] = ("none passes its checks" + (f" within the memory budget ({MEMORY_OPTION})"
                                              if max_mib is not None else "") + ": " + "; ".join(
        f"{_name(f)} ({why})" for f, why in failing)
        + f"; the fastest, {_name(r)}, takes {_times_text(t)}, "
          f"{t['judged_ms'] / budget:.1f}x the budget" + tail)
    return row


def _peak_text(r: dict, size: str) -> str:
    """The answer's " (peak memory N MiB, M MiB running a WxH clip)"; on a GPU the child's
    VmHWM holds no CUDA device memory, which a unified-memory board's RAM holds too."""
    if r.get("peak_rss_mib") is None:
        return ""
    host = "host memory" if r["device"] == "GPU" else "memory"
    cuda = "; CUDA device memory not counted" if r["device"] == "GPU" else ""
    if r.get("video_peak_rss_mib") is not None:
        return (f" (peak {host} {r['peak_rss_mib']:.0f} MiB, {r['video_peak_rss_mib']:.0f} "
                f"MiB running a {size} clip{cuda})")
    # The model's memory alone: a video run adds its decoder's and encoder's buffers (a tiled
    # 4K clip peaked ~440 MiB above it, README: Peak memory), which a board is sized with too.
    if r["device"] == "GPU":
        return (f" (peak host memory {r['peak_rss_mib']:.0f} MiB; CUDA device memory and "
                f"{NO_VIDEO_IO})")
    return f" (peak memory {r['peak_rss_mib']:.0f} MiB; {NO_VIDEO_IO})"


def _over_memory(r: dict, max_mib: Optional[float]) -> str:
    """Why a row is over the --max-memory-mib budget ("" within it, or with no budget): judged
    on the video run's peak where measured (the model's, plus the clip's decoder and
    encoder), else the model's; a model whose peak was not measured is not picked for a board
    sized by that budget."""
    if max_mib is None:
        return ""
    video = r.get("video_peak_rss_mib")
    if video is not None and video > max_mib:
        return f"video run peak memory {video:.0f} MiB > {max_mib:g} MiB, {MEMORY_OPTION}"
    peak = r.get("peak_rss_mib")
    if peak is None:
        why = r.get("peak_rss_error") or r.get("peak_rss_skipped") or "not at this size"
        return f"peak memory {why}, {MEMORY_OPTION} {max_mib:g}"
    if peak > max_mib:
        return f"peak memory {peak:.0f} MiB > {max_mib:g} MiB, {MEMORY_OPTION}"
    return ""


def command_of(ship: dict) -> Optional[str]:
    """The command the answer ends with (the pick's `sharpen run` line, or a PyTorch pick's
    export line), for report.md to set as code; None where it ends with none."""
    for r in ship.get("rows") or []:
        run = r.get("run")
        if not (run and ship["answer"].endswith(run)):
            continue
        if r.get("file"):
            return run
        if run.startswith(EXPORT_FIRST) and run.endswith(")"):
            return run[len(EXPORT_FIRST):-1]
    return None


def budget_text(v: float) -> str:
    """A budget in ms: 33.3, but 0.01 for a target of 100000 fps, not 0.0."""
    return f"{v:.1f}" if v >= 1 else f"{v:.2g}"


def _name(r: dict) -> str:
    return r.get("given") or r.get("student") or r["model"]


def _quality_key(r: dict) -> str:
    if r.get("given"):
        return r["given"]
    return f"{r['student']}/{r.get('format') or 'pytorch'}"


def _failed_checks(r: dict, checks: list[dict]) -> str:
    """What keeps a latency row's model from shipping: its student's quality gate (that of
    the file, for --model), its artifact's parity, or its export; "" when all passed. A model
    with no gate check at all (an interrupted run) is not shipped either."""
    gate_key = r["given"] if r.get("given") else f"{r['student']}/pytorch"
    own = [c for c in checks if c.get("model") in (gate_key, _quality_key(r), r.get("student"))]
    gates = [c for c in own if c["check"] in GATES and c.get("model") == gate_key]
    why = []
    if not gates:
        why.append("its quality gate did not run")
    for c in own:
        if c["passed"]:
            continue
        if c["check"] in GATES:
            short = c.get("threshold")
            why.append("quality gate failed" + (
                f": SSIM {c['value']:.4f} < {short:.4f}" if short is not None
                and c.get("value") is not None else ""))
        elif c["check"] == "parity" and c.get("model") == _quality_key(r):
            why.append("parity failed" + (f": {c['metric']} {c['value']:.4g} vs {c['threshold']:g}"
                                          if c.get("value") is not None else ""))
        elif c["check"] == "student":
            why.append("its export failed")
    return ", ".join(dict.fromkeys(why))


def _real_gain(r: dict, real: dict) -> Optional[float]:
    """The model's SSIM gain over the blurred input on the real blur/sharp pairs (a student's
    checkpoint in PyTorch FP32, a --model file as itself), where the run had them: the
    held-out set it is ranked on may be synthetic blur."""
    d = real.get(_name(r))
    return d.get("ssim_gain") if isinstance(d, dict) else None


def table_rows(ship: dict) -> list[list[str]]:
    def ms(v):
        return "-" if v is None else f"{v:.1f}"
    return [[r["backend_label"], str(r["precision"]).upper(), r["ship"] or "none",
             ms(r["ms"]), ("-" if r.get("judged_on") == NO_P90 else ms(r.get("judged_ms"))
                           + ("" if r.get("judged_on") in (None, "p90")
                              else f" ({r['judged_on']})")),
             f"{budget_text(r['budget_ms'])} ({r['target_fps']:g} fps, {r['device']})",
             "-" if r["ssim"] is None else f"{r['ssim']:.4f}",
             "-" if r.get("peak_rss_mib") is None
             else f"{r['peak_rss_mib']:.0f}" + (" (host)" if r["device"] == "GPU" else "")
             + (f" (video run {r['video_peak_rss_mib']:.0f})"
                if r.get("video_peak_rss_mib") is not None else ""),
             r["why"]]
            for r in ship["rows"]]


def budgets_text(ship: dict) -> str:
    """Both budgets, each with its option: a CPU backend is judged on --cpu-target-fps."""
    cpu, gpu = ship["cpu_target_fps"], ship["target_fps"]
    return (f"{budget_text(1000 / cpu)} ms per frame = {cpu:g} fps on a CPU (--cpu-target-fps), "
            f"{budget_text(1000 / gpu)} ms = {gpu:g} fps on a GPU (--target-fps)")


def title(ship: dict) -> str:
    # The terminal has no paragraph for the rule: its title says what the pick was judged on.
    return (f"what to ship at {ship['size']} (p90 time per frame within the budget: "
            f"{budgets_text(ship)}; lower ms and higher SSIM are better)")
