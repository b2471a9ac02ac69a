"""A bench report against a baseline report: the regression gate a CI job runs on every merge
(`sharpen bench --baseline PATH`, `sharpen bench-compare BASELINE NEW`).

Per model and format: quality deltas (held-out PSNR and SSIM to ground truth, SSIM to the
teacher's output; real-blur pairs' PSNR and SSIM; real blur without ground truth's PSNR to the
teacher's output), latency deltas (median and p90 ms per frame,
the streaming row's too). A regression past its tolerance (`--fail-on`) fails the gate. Rows in
one report only are named, not compared. What makes a kind of row not comparable (other held-out
data or teacher for quality, another CPU, thread count or mode for latency) is named, and those
rows are shown but not gated: a gate failing on a changed runner would be a false alarm.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

# Latency is loose by default: two runs of one file on a shared 2-core machine took 153.8 and
# 562.5 ms (README, What to ship). Quality is deterministic on one machine and engine version.
DEFAULT_FAIL_ON = "psnr:0.1,ssim:0.002,median:50%,p90:50%"
FAIL_ON_HELP = ("what fails the comparison with the baseline: METRIC:TOLERANCE pairs, comma "
                "separated; psnr in dB and ssim absolute (a drop larger than that), median and "
                "p90 in percent (a slower time by more than that); metrics left out are shown, "
                "not gated; 'none' gates nothing (default " + DEFAULT_FAIL_ON + ": latency "
                "is loose, as timings on shared machines are noisy)")
BASELINE_HELP = ("compare with a baseline report (a report.json, or the --out folder holding "
                 "one; it may be this run's --out, read before its report is replaced): "
                 "quality and latency deltas per model in the terminal, report.md and "
                 "report.json, and exit 1 on a regression past --fail-on")

QUALITY_METRICS = {"psnr": "psnr", "ssim": "ssim", "ssim_teacher": "ssim"}   # metric: tolerance
NOGT_METRICS = {"psnr_to_reference": "psnr"}   # --real-nogt: no ground truth, the teacher's
NOGT = "real blur no-gt"
ANOTHER_FORMULA = "scored by another formula"
LATENCY_METRICS = {"ms": "median", "p90_ms": "p90"}
UNITS = {"psnr": "dB", "ssim": "", "median": "%", "p90": "%"}
HEADERS = ["section", "model", "size", "metric", "baseline", "new", "change", "allowed", "verdict"]


NOTHING_IN_COMMON = ("no model, backend and size has a result in both reports (other "
                     "--students, --formats or --sizes?): a gate that compared nothing cannot "
                     "pass")


class CompareError(ValueError):
    """A baseline or report that cannot be compared: unreadable, not a bench report, partial."""


@dataclass(frozen=True)
class Tolerances:
    psnr: Optional[float] = None     # dB
    ssim: Optional[float] = None     # absolute
    median: Optional[float] = None   # percent
    p90: Optional[float] = None      # percent

    def text(self) -> str:
        parts = [f"{k}:{v:g}{'%' if UNITS[k] == '%' else ''}" for k, v in self.__dict__.items()
                 if v is not None]
        return ",".join(parts) or "none"


def parse_fail_on(spec: str) -> Tolerances:
    """`psnr:0.1,ssim:0.002,median:50%` as Tolerances; ValueError naming the bad part."""
    if spec.strip().lower() == "none":
        return Tolerances()
    got: dict[str, float] = {}
    for part in (p.strip() for p in spec.split(",")):
        name, sep, value = part.partition(":")
        name = name.strip().lower()
        if not sep or name not in UNITS:
            raise ValueError(f"--fail-on {spec}: {part!r} is not METRIC:TOLERANCE with METRIC "
                             f"one of {', '.join(UNITS)} (e.g. {DEFAULT_FAIL_ON})")
        value = value.strip()
        pct = value.endswith("%")
        if pct and UNITS[name] != "%":
            raise ValueError(f"--fail-on {spec}: {name} takes an absolute drop "
                             f"({'dB' if name == 'psnr' else 'SSIM'}), not a percentage")
        try:
            v = float(value.rstrip("%"))
        except ValueError:
            raise ValueError(f"--fail-on {spec}: {part!r}: {value!r} is not a number") from None
        if not v >= 0 or v == float("inf"):
            raise ValueError(f"--fail-on {spec}: {part!r}: the tolerance must be a finite "
                             "number >= 0")
        got[name] = v
    return Tolerances(**got)


def load_report(path: str | Path, what: str = "--baseline", baseline: bool = True) -> dict:
    """The report.json at `path`, or in the folder `path`; CompareError naming the file and
    what is wrong with it. A `baseline` must also not be a run that regressed against its own
    baseline: with `--baseline DIR --out DIR` a failed run's report lands in DIR, and a retry
    that compared with it would pass."""
    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    if not p.is_file():
        missing = "no report.json in it" if p != Path(path) else "no such file"
        raise CompareError(f"{what} {path}: {missing}{_set_aside_hint(p)} (give a report.json "
                           "`sharpen bench --out DIR` wrote, or DIR)")
    try:
        rep = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CompareError(f"{what} {p}: not readable as JSON ({e})") from None
    if not isinstance(rep, dict) or not str(rep.get("format", "")).startswith("sharpen-bench/"):
        raise CompareError(f"{what} {p}: not a `sharpen bench` report (no \"format\": "
                           "\"sharpen-bench/...\"); a pytest-benchmark JSON compares with "
                           "`pytest benchmarks/ --benchmark-compare`")
    if "incomplete" in rep:
        raise CompareError(f"{what} {p}: the partial report of an interrupted run (it lists "
                           f"rows not measured){_set_aside_hint(p)}; compare with a finished "
                           "run's")
    comp = rep.get("comparison") if isinstance(rep.get("comparison"), dict) else {}
    if baseline and comp.get("regressions"):
        raise CompareError(f"{what} {p}: that run regressed against its own baseline "
                           f"({comp.get('baseline')}: {comp['regressions']} regressions), so "
                           "it is no accepted run; give the accepted report (copy it out of "
                           "--out: a rerun sets report.json aside over report.previous.json)")
    rep["_path"] = str(p)
    return rep


def _set_aside_hint(report_json: Path) -> str:
    """Where a run killed after setting the accepted report aside left it, if it did."""
    prev = report_json.with_name("report.previous.json")
    try:
        finished = "incomplete" not in json.loads(prev.read_text())
    except (OSError, UnicodeDecodeError, ValueError, TypeError):
        return ""
    return (f"; {prev} beside it is the finished run before it (an interrupted run set it "
            "aside): give that file" if finished else "")


def _name(model, backend) -> str:
    """One name per model and backend in every section: `fast ONNX Runtime FP32`."""
    return f"{str(model).removeprefix('student ')} {backend}"


def _quality_values(rep: dict) -> dict:
    """(section, model, size) -> {metric: value}, or {"failed": reason} for a failed row."""
    out = {}
    for r in (rep.get("quality") or {}).get("rows") or []:
        if r.get("kind") in ("input", "teacher") or r.get("status") in ("skipped", "missing"):
            continue
        key = ("quality", _name(r.get("model"), r.get("backend")), "-")
        if r.get("status") != "ok":
            out[key] = {"failed": r.get("reason") or r.get("status")}
            continue
        out[key] = {m: r.get(m) for m in QUALITY_METRICS if r.get(m) is not None}
    pairs = (rep.get("real_blur") or {}).get("pairs") or {}
    for name, d in pairs.items():
        if name in ("input", "teacher") or not isinstance(d, dict):
            continue
        if d.get("status") == "failed":
            out[("real blur", name, "-")] = {"failed": d.get("reason")}
        elif "psnr" in d and "sharpness" in d:
            out[("real blur", name, "-")] = {"psnr": d["psnr"], "ssim": d["ssim"]}
    nogt = (rep.get("real_blur") or {}).get("nogt") or {}
    for name, d in nogt.items():
        if name in ("input", nogt.get("reference")) or not isinstance(d, dict):
            continue
        if d.get("status") == "failed":
            out[(NOGT, name, "-")] = {"failed": d.get("reason")}
        elif "psnr_to_reference" in d:
            out[(NOGT, name, "-")] = {"psnr_to_reference": d["psnr_to_reference"]}
    return out


def _latency_values(rep: dict) -> dict:
    lat = rep.get("latency") or {}
    out = {}
    for section, rows in (("latency", lat.get("rows") or []),
                          ("stream", lat.get("stream") or [])):
        for r in rows:
            if r.get("model") == "teacher" or r.get("status") == "skipped":
                continue
            key = (section, _name(r.get("model"), r.get("backend_label")), r.get("size"))
            if r.get("status") not in ("ok", None):
                out[key] = {"failed": r.get("reason") or r.get("status")}
                continue
            out[key] = {m: r.get(m) for m in LATENCY_METRICS if r.get(m) is not None}
    return out


def _get(rep, path: tuple[str, ...]):
    for k in path:
        rep = rep.get(k) if isinstance(rep, dict) else None
    return rep


def _differences(base: dict, new: dict, paths: list[tuple[str, ...]],
                 unknown: Optional[list] = None) -> list[str]:
    """`path old -> new` for each path whose values differ. With `unknown`, a path one report
    lacks (an older version's, or a set one run did not score) is not a difference: it goes
    into `unknown` instead."""
    out = []
    for p in paths:
        b, n = _get(base, p), _get(new, p)
        if unknown is not None and (b is None or n is None):
            if b is not None or n is not None:
                unknown.append(f"{'.'.join(p)} is in the {'new' if b is None else 'baseline'} "
                               "report only: not checked")
            continue
        if b != n:
            out.append(f"{'.'.join(p)} {b!r} -> {n!r}")
    return out


# What makes one kind of row comparable: quality needs the same images (by name: a CI job's
# checkout moves between runs, so its paths do), teacher and INT8 calibration; latency the same
# CPU, cores, threads, rounds and tiles. The code, library versions and the models themselves
# may change: that is what the gate is for.
QUALITY_CONTEXT = [("held-out images",), ("settings", "calib_count"), ("settings", "calib_seed"),
                   ("quality", "settings", "teacher", "hash")]
REAL_BLUR_CONTEXT = [("real-blur images",), ("real-blur alignment",)]
# Scored against the teacher's output: the same frames (by name: a clip's carry their index, so
# other --stride or --frames differ) and teacher.
NOGT_CONTEXT = [("real-nogt images",), ("quality", "settings", "teacher", "hash")]
LATENCY_CONTEXT = [("machine", "cpu"), ("machine", "cpu_flags"), ("machine", "usable_cores"),
                   ("machine", "cpu_limit"), ("machine", "gpus"),
                   ("latency", "settings", "runtime_threads"), ("machine", "torch_threads"),
                   ("latency", "settings", "tile"), ("mode",)]
NOTED = [("format",), ("machine", "code", "version"), ("machine", "libraries"),
         ("settings", "sizes"), ("settings", "data"), ("settings", "real_pairs"),
         ("settings", "real_nogt"), ("settings", "calibration")]


def _with_image_names(rep: dict) -> dict:
    """`rep` with the names of the images its quality rows and real-blur pairs were scored on,
    for _differences."""
    held = sorted({i.get("image") for r in (rep.get("quality") or {}).get("rows") or []
                   for i in r.get("images") or []} - {None})
    real = rep.get("real_blur") or {}
    return {**rep, "held-out images": _names(held),
            "real-blur images": _names(sorted((real.get("pairs") or {}).get("per_image") or {})),
            # aligned scores read higher: not gated against unaligned ones (an older report's)
            "real-blur alignment": ((real.get("pairs") or {}).get("align", "none")
                                    if real.get("pairs") else None),
            "real-nogt images": _names(sorted((real.get("nogt") or {}).get("per_image") or {}))}


def _own_calibration(rep: dict) -> dict:
    """`rep`, where its run measured --model files alone, with the calibration a report says
    for them now: an older version's said the built-in photos (or its --calib), which that run
    never did, and a newer report then read as another calibration of the same files."""
    settings = rep.get("settings") or {}
    if settings.get("students") != [] or not settings.get("models"):
        return rep
    from .report import MODELS_CALIBRATION
    return {**rep, "settings": {**settings, "calibration": MODELS_CALIBRATION}}


def _names(names: list) -> Optional[str]:
    """`2: a, b`; None where a report names none (not scored, or an older version's)."""
    if not names:
        return None
    return f"{len(names)}: {', '.join(names[:3])}{', ...' if len(names) > 3 else ''}"


def compare_reports(base: dict, new: dict, tol: Tolerances) -> dict:
    """The comparison, as report.json's `comparison`: rows (one per model, size and metric),
    regressions, rows in one report only, what differs between the reports and whether each
    kind of row was gated."""
    if base.get("format") != new.get("format"):
        raise CompareError(f"--baseline {base.get('_path')}: report format "
                           f"{base.get('format')!r}, this one's {new.get('format')!r}: made by "
                           "another version of sharpen bench, not comparable; save a new "
                           "baseline")
    not_gated = {}
    base, new = (_with_image_names(_own_calibration(rep)) for rep in (base, new))
    unknown: list[str] = []
    for kind, context in (("quality", QUALITY_CONTEXT), ("real blur", REAL_BLUR_CONTEXT),
                          (NOGT, NOGT_CONTEXT), ("latency", LATENCY_CONTEXT)):
        if d := _differences(base, new, context, unknown):
            not_gated[kind] = d
    # Scores of another PSNR/SSIM formula (an older version's) differ by the formula, not the
    # model: every kind of score row is then shown, not gated.
    conventions = [(rep.get("quality") or {}).get("convention") for rep in (base, new)]
    # the kinds of score row either report has: the others are not said not gated
    scored = [k for k in ("quality", "real blur", NOGT)
              if any(key[0] == k for rep in (base, new) for key in _quality_values(rep))]
    if all(isinstance(c, dict) for c in conventions) and conventions[0] != conventions[1]:
        which = sorted(k for k in {*conventions[0], *conventions[1]}
                       if conventions[0].get(k) != conventions[1].get(k))
        for kind in scored:
            not_gated.setdefault(kind, []).append(
                f"quality.convention differs ({', '.join(which)}): {ANOTHER_FORMULA}")
    elif (conventions[0] is None) != (conventions[1] is None) \
            and base.get("quality") and new.get("quality"):
        # Reports name their convention since the formula changed (the 7x7 window on float
        # outputs before): one naming none is an older version's, the baseline or the new one.
        which = "the baseline" if conventions[0] is None else "the new report"
        for kind in scored:
            not_gated.setdefault(kind, []).append(
                f"{which} names no quality.convention (an older version's report): "
                f"{ANOTHER_FORMULA}")
    # A device's bench (no PyTorch) skips the held-out quality rows: why they are in one
    # report only, before the notes on what that report then lacks.
    notes = [f"the {which} report's held-out quality rows were skipped ({why.split(':')[0]} "
             "where it ran): the quality rows are not compared"
             for which, rep in (("baseline", base), ("new", new))
             if (why := ((rep.get("quality") or {}).get("settings") or {}).get("skipped"))]
    if notes:   # that skip is why the held-out images and the teacher are in one report only
        unknown = [u for u in unknown
                   if not u.startswith(("held-out images ", "quality.settings.teacher."))]
    notes += _differences(base, new, NOTED) + list(dict.fromkeys(unknown))   # teacher: twice
    # A busy machine's timings say more about the other processes than about the model (the
    # same model read 5x slower here at load 12 on 2 cores): shown, not gated.
    from .machine import busy_text
    busy = [f"{name} {text.split(';')[0]}" for name, rep in (("baseline", base), ("new", new))
            if (text := busy_text(((rep.get("latency") or {}).get("settings") or {})
                                  .get("load")))]
    if busy:
        not_gated["latency"] = not_gated.get("latency", []) + busy
    b = {**_quality_values(base), **_latency_values(base)}
    n = {**_quality_values(new), **_latency_values(new)}
    renames = _same_files(base, new)
    for side, values in (("baseline", b), ("new", n)):
        for old, name in renames[side].items():
            notes.append(f"the --model file {old!r} of the {side} report is {name!r} in the "
                         "other (named by its stem where no other file shares it): paired "
                         "by its file name")
            for key in [k for k in values if k[1] == old or k[1].startswith(old + " ")]:
                values[(key[0], name + key[1][len(old):], key[2])] = values.pop(key)
    notes += _other_bytes(base, new, renames)
    rows, regressions = [], []
    for key in [k for k in n if k in b]:
        section, model, size = key
        kind = "latency" if section in ("latency", "stream") else section
        gated = kind not in not_gated
        if "failed" in n[key] and "failed" not in b[key]:
            row = dict(section=section, model=model, size=size, metric="status",
                       baseline="ok", new=f"failed: {n[key]['failed']}", change=None,
                       allowed=None, regressed=gated, gated=gated)
            rows.append(row)
            if gated:
                regressions.append(row)
            continue
        metrics = {"latency": LATENCY_METRICS, NOGT: NOGT_METRICS}.get(kind, QUALITY_METRICS)
        for metric, tol_name in metrics.items():
            bv, nv = _number(b[key].get(metric)), _number(n[key].get(metric))
            if bv is None or nv is None:
                continue
            allowed = getattr(tol, tol_name)
            if not math.isfinite(nv) and math.isfinite(bv):   # NaN output, a hung row
                change, regressed = None, allowed is not None
            elif kind != "latency":
                change = nv - bv
                regressed = allowed is not None and -change > allowed + 1e-12
            else:
                change = (nv - bv) / bv * 100 if bv else 0.0
                regressed = allowed is not None and change > allowed
            label = {"ms": "median ms", "p90_ms": "p90 ms", "ssim_teacher": "ssim to teacher",
                     "psnr": "psnr dB", "psnr_to_reference": "psnr to teacher"}.get(metric,
                                                                                    metric)
            row = dict(section=section, model=model, size=size, metric=label, baseline=bv,
                       new=nv, change=change, allowed=allowed, unit=UNITS[tol_name],
                       regressed=regressed and gated, gated=gated)
            rows.append(row)
            if row["regressed"]:
                regressions.append(row)
    return {"baseline": base.get("_path"), "fail_on": tol.text(),
            "rows": rows, "regressions": len(regressions),
            "only_in_baseline": [" ".join(k for k in key if k != "-") for key in b
                                 if key not in n],
            "only_in_new": [" ".join(k for k in key if k != "-") for key in n if key not in b],
            "not_gated": not_gated, "notes": notes,
            "baseline_created": base.get("created"),
            "baseline_code": ((base.get("machine") or {}).get("code") or {}).get("commit")}


def _same_files(base: dict, new: dict) -> dict[str, dict[str, str]]:
    """{"baseline": {name: to}, "new": {...}}: the --model files a report named otherwise than
    the other, by file name (benchmarks.given.given_ids: `fast_int8` alone, `fast_int8.onnx`
    beside a `fast_int8.tflite`), renamed to that one of the two names which is the file name,
    else the baseline's; not where that name is taken by another model of the report."""
    def given(rep: dict) -> dict[str, list[str]]:
        by_file: dict[str, list[str]] = {}
        for gm in (rep.get("settings") or {}).get("models") or []:
            if gm.get("path") and gm.get("name"):
                by_file.setdefault(Path(gm["path"]).name, []).append(gm["name"])
        return by_file

    def taken(rep: dict) -> set[str]:
        settings = rep.get("settings") or {}
        return ({gm.get("name") for gm in settings.get("models") or []}
                | {st.get("name") for st in settings.get("students") or []})

    gb, gn = given(base), given(new)
    out: dict[str, dict[str, str]] = {"baseline": {}, "new": {}}
    for file in gb.keys() & gn.keys():
        if len(gb[file]) != 1 or len(gn[file]) != 1 or gb[file] == gn[file]:
            continue
        nb, nn = gb[file][0], gn[file][0]
        side, old, to = (("baseline", nb, nn) if nn == file else ("new", nn, nb))
        if to not in taken(base if side == "baseline" else new):
            out[side][old] = to
    return out


def _other_bytes(base: dict, new: dict, renames: dict) -> list[str]:
    """A note per --model file paired by name whose bytes differ (a re-export under the same
    name): its rows then compare two files, not one file on two runs."""
    def shas(rep: dict, side: str) -> dict:
        return {renames[side].get(gm["name"], gm["name"]): gm["sha256"]
                for gm in (rep.get("settings") or {}).get("models") or []
                if gm.get("name") and gm.get("sha256")}
    b, n = shas(base, "baseline"), shas(new, "new")
    return [f"the --model file {name!r} is not the baseline's file (sha256 {b[name][:12]} -> "
            f"{n[name][:12]}: another export under its name): its rows compare two files"
            for name in sorted(b.keys() & n.keys()) if b[name] != n[name]]


def _number(v) -> Optional[float]:
    """A metric as a float: report.json writes NaN and infinity as strings."""
    if isinstance(v, str) and v.lower() in ("nan", "inf", "-inf", "infinity", "-infinity"):
        return float(v)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _num(v, metric: str) -> str:
    if isinstance(v, str):
        return v
    return f"{v:.4f}" if metric.startswith("ssim") else f"{v:.2f}"


def table_rows(comp: dict) -> list[list[str]]:
    """Rows under HEADERS; the regressions first, then the rest in report order."""
    out = []
    for r in sorted(comp["rows"], key=lambda r: not r["regressed"]):
        if r["change"] is None:
            change = allowed = "-"
        elif r["unit"] == "%":
            change, allowed = f"{r['change']:+.1f}%", (
                "-" if r["allowed"] is None else f"+{r['allowed']:g}%")
        else:
            fmt = "{:+.4f}" if r["metric"].startswith("ssim") else "{:+.2f}"
            change = fmt.format(r["change"])
            allowed = "-" if r["allowed"] is None else f"-{r['allowed']:g}"
        verdict = ("REGRESSED" if r["regressed"] else
                   "not gated" if not r["gated"] or r["allowed"] is None else "ok")
        # By the change shown: a device's SSIM (OpenCV's filters) is a dev box's to 1e-14,
        # which read "-0.0000  ok, worse".
        if verdict == "ok" and r["change"] and float(change.rstrip("%")):
            # The change's sign alone left the reader to know that less is better for a
            # latency and worse for a score: "ok" read the same for a gain and a drop.
            faster_or_higher = (r["change"] < 0) == (r["unit"] == "%")
            verdict += ", better" if faster_or_higher else ", worse"
        out.append([r["section"], r["model"], r["size"], r["metric"],
                    _num(r["baseline"], r["metric"]), _num(r["new"], r["metric"]), change,
                    allowed, verdict])
    return out


def summary_lines(comp: dict) -> list[str]:
    """What a reader needs besides the table: what was not gated and why, the rows in one
    report only, the notes, and the verdict last."""
    lines = []
    for kind, diffs in comp["not_gated"].items():
        if kind == "latency" and all("busy machine" in d for d in diffs):
            lines.append(f"latency not gated: {'; '.join(diffs)} (rerun on a quiet machine "
                         "to gate on it)")
        else:
            # another formula is another version's, whatever the settings and machine
            advice = ("make both reports with one version of sharpen"
                      if all(d.endswith(ANOTHER_FORMULA) for d in diffs)
                      else "save a new baseline made with these settings on this kind of "
                      "machine")
            lines.append(f"not comparable, {kind} not gated: {'; '.join(diffs)} ({advice})")
    if comp["only_in_baseline"]:
        lines.append(f"only in the baseline (not compared): {', '.join(comp['only_in_baseline'])}")
    if comp["only_in_new"]:
        lines.append(f"only in this report (not compared): {', '.join(comp['only_in_new'])}")
    lines += [f"note: {n}" for n in comp["notes"]]
    n = comp["regressions"]
    verdict = f"{n} regression{'s' if n != 1 else ''}" if n else "no regression"
    if not comp["rows"]:
        verdict = f"nothing compared: {NOTHING_IN_COMMON}"
    if missing := len(comp["only_in_baseline"]):
        verdict += f"; {missing} baseline row{'s' if missing != 1 else ''} not measured"
    for kind, diffs in comp["not_gated"].items():   # in the last line: what a CI log shows
        busy = kind == "latency" and all("busy machine" in d for d in diffs)
        verdict += f"; {kind} not gated ({'busy machine' if busy else 'not comparable'})"
    lines.append(f"compared with {comp['baseline']} (--fail-on {comp['fail_on']}): {verdict}")
    return lines


def regression_checks(comp: dict) -> list[dict]:
    """A failed check per regression, as report.json's checks hold them."""
    out = []
    for r in comp["rows"]:
        if r["regressed"]:
            text = (r["new"] if r["metric"] == "status" else
                    f"{_num(r['baseline'], r['metric'])} -> {_num(r['new'], r['metric'])}"
                    + ("" if r["change"] is None else
                       f", allowed {'+' if r['unit'] == '%' else '-'}{r['allowed']:g}"
                       f"{r['unit']}"))
            out.append({"check": "baseline", "model": r["model"], "metric": r["metric"],
                        "value": None if r["change"] is None else r["new"],
                        "threshold": r["allowed"], "passed": False,
                        "message": f"{r['section']} {r['model']}"
                                   f"{'' if r['size'] == '-' else ' at ' + r['size']}: "
                                   f"{r['metric']} regressed against the baseline ({text})"})
    return out
