"""What `sharpen export` keeps instead of rebuilding, and what it says about the folder's other
artifacts: each artifact's inputs (weights, options, code, libraries, machine), why an existing
one is rebuilt, the earlier reports of its stem (carried or stale results) and the pending
engine sidecars that no longer apply."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np

from runtime.backends.provenance import read_report as _read_report
from runtime.formats import FORMATS
from runtime.host import library_versions

from .export_options import ExportOptions
from .export_progress import Progress
from .export_report import FormatResult
from .parity_gate import _judge, _mark, _say_verdict


# What an artifact is built and judged from, besides the weights: a change to any of these
# rebuilds it. The exporter's code and the libraries are in it because a fixed converter must
# not be hidden by a kept file; the CPU because the gate ran on it (INT8 kernels differ).
CODE = [*sorted((Path(__file__).parent).glob("*.py")),
        Path(__file__).parents[1] / "distill" / "students.py",
        # The parity gate's PSNR/SSIM: a kept artifact's verdict was taken with it.
        Path(__file__).parents[1] / "distill" / "metrics.py",
        *sorted((Path(__file__).parents[1] / "runtime" / "backends").glob("*.py")),
        Path(__file__).parents[1] / "runtime" / "formats.py",
        Path(__file__).parents[1] / "runtime" / "contract.py"]


# Every library some format's artifact depends on (FORMATS' `libraries`), read once per export.
LIBRARIES = tuple(dict.fromkeys(n for spec in FORMATS.values() for n in spec.libraries))


# The options of the FP32 ONNX export, which only the formats built from that model depend on
# (--opset rebuilt the TFLite models, which the Keras rebuild makes from the weights).
ONNX_OPTIONS = ("opset", "simplify")


# The thresholds each parity gate reads (`Thresholds.judge`): --min-ssim rebuilt the FP32 ONNX
# model, whose gate is its max abs error.
GATE_THRESHOLDS = {"fp32": ("fp32_max_abs",),
                   "reduced": ("min_ssim", "min_psnr", "max_ssim_drop")}


INPUT_LABELS = {
    "weights": "the weights", "code": "the exporter's code", "libraries": "library versions",
    "machine": "the machine", "opset": "--opset", "simplify": "--no-simplify",
    "thresholds": "the parity thresholds", "parity_images": "the parity images",
    "parity_gt": "--parity-gt", "parity_teacher": "--parity-teacher",
    "calibration": "the calibration crops (--calib, --calib-count, --calib-size, --calib-blur, "
                   "--seed)",
    "calib_method": "--calib-method", "percentile": "--percentile",
    "reduce_range": "--no-reduce-range", "modelopt_method": "--modelopt-method",
    "float_layers": "--float-layers", "profile": "the engine profile (--min/opt/max-shape)",
    "input_shape": "the .tflite input's size until resized (--opt-shape)",
    "workspace_gb": "--workspace", "gpu": "the GPU"}


def code_hash() -> str:
    """Of CODE: the bench's cache keys on it too, so that both rebuild for the same changes."""
    h = hashlib.sha256()
    for path in CODE:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def _machine() -> str:
    import platform

    from runtime.host import cpu_model
    return f"{platform.machine()} {cpu_model()}".strip()


def _digest(images) -> str | None:
    """Of named images (pairs or a dict) or an array; None for none. Named images in name
    order: the gate judges the worst image, whatever the order --parity-images gave them in
    (`a.png,b.png` then `b.png,a.png` rebuilt every artifact)."""
    if images is None or len(images) == 0:
        return None
    h = hashlib.sha256()
    if isinstance(images, np.ndarray):
        images = [("", images)]
    pairs = images.items() if isinstance(images, dict) else images
    for name, img in sorted(pairs, key=lambda p: p[0]):
        a = np.ascontiguousarray(img)
        h.update(f"{name}\0{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


# The calibrator options each INT8 format is built with (engine-int8: from the QDQ model), so
# that changing one rebuilds only the formats it applies to: --calib-method rebuilt the TFLite
# model (minutes) to the same bytes.
CALIBRATOR_OPTIONS = {"onnx-int8": ("calib_method", "percentile", "reduce_range"),
                      "onnx-qdq-trt": ("modelopt_method",), "engine-int8": ("modelopt_method",)}


def build_inputs(fmts: Sequence[str], weights_sha: str, o: ExportOptions, profile, crops,
                 parity_list, gt, teacher) -> dict[str, dict]:
    """Per format: everything its artifact and its parity verdict depend on (JSON-able)."""
    installed = library_versions(LIBRARIES)
    common = {"weights": weights_sha, "code": code_hash(), "machine": _machine(),
              "parity_images": _digest(parity_list), "parity_gt": _digest(gt),
              "parity_teacher": _digest(teacher)}
    thresholds = asdict(o.thresholds)
    calibration = {"calibration": _digest(crops),
                   "float_layers": _float_layers_key(o.float_layers)}
    out = {}
    for f in fmts:
        spec = FORMATS[f]
        d = {**common, "libraries": {n: installed.get(n) for n in spec.libraries},
             "thresholds": {k: thresholds[k] for k in GATE_THRESHOLDS[spec.gate]}}
        if spec.engine != "litert":   # built from the FP32 ONNX model
            d.update({k: getattr(o, k) for k in ONNX_OPTIONS})
        if FORMATS[f].needs_calibration:
            d.update(calibration)
            d.update({k: getattr(o, k) for k in CALIBRATOR_OPTIONS.get(f, ())})
        if spec.engine == "litert" and profile is not None:   # its input's size until resized
            d.update(input_shape=list(profile.opt[2:]))
        if FORMATS[f].engine == "tensorrt":   # (asked only when TensorRT and a GPU are here)
            from .tensorrt_engine import gpu_identity
            d.update(profile=profile.to_dict(), workspace_gb=o.workspace_gb, gpu=gpu_identity())
        out[f] = json.loads(json.dumps(d))   # as the report stores it (tuples as lists)
    return out


def _float_layers_key(spec: Sequence[str] | str | None) -> str | None:
    """--float-layers as the record compares it: spaces, repeats, the order and the spelling
    of "none" (a list, or 'dec.1, head'; 'head,dec.1') built the same artifact and rebuilt it.
    The order: each named layer stays float with all downstream of it, so the set decides."""
    items = spec.split(",") if isinstance(spec, str) else list(spec or ())
    names = sorted({s.strip() for s in items if s.strip()})
    # a keyword alone in any case, as `float_layers.parse` takes it ('Auto' is 'auto'); in a
    # list a name is kept as spelt: there it can only be a layer (a student's own 'None')
    if len(names) == 1 and names[0].lower() in ("auto", "none"):
        names = [names[0].lower()]
    return None if not names or names == ["none"] else ",".join(names)


def _as_auto_built(extra: dict, inputs: dict) -> bool:
    """Whether --float-layers names the layers that `auto` chose for the artifact (recorded as
    built, after any fallback): the same file, which switching from one to the other rebuilt.
    Not the other way: auto's choice depends on the calibration crops and the thresholds, so
    it searches again rather than take a file built from the names as its own choice."""
    return (extra["inputs"].get("float_layers") == "auto" and inputs.get("float_layers") != "auto"
            and _float_layers_key(extra.get("float_layers")) == inputs.get("float_layers"))


def asks_float_layers(spec: Sequence[str] | str | None) -> bool:
    """Whether --float-layers asks for any layer in float (or 'auto'): not unset, '' or 'none',
    which are the default, full integer."""
    return _float_layers_key(spec) is not None


def _up_to_date(out: Path, stem: str, own: dict | None, inputs: dict[str, dict],
                o: ExportOptions, prog: Progress) -> dict[str, FormatResult]:
    """The formats whose artifact is up to date (built from the same weights and inputs, file
    unchanged since it passed its gate): their earlier results, to keep. Each existing artifact
    that is rebuilt is said, with why. Also those whose build measures the same every time and
    whose recorded numbers fail changed thresholds: judged failed on those numbers, not rebuilt
    to fail again (marked failed as a failed build is)."""
    from distill.teacher import file_hash

    prev = {r.get("format"): r for r in (own or {}).get("results", []) if isinstance(r, dict)}
    kept = {}
    for f, want in inputs.items():
        path = out / f"{stem}{FORMATS[f].suffix}"
        if not path.is_file():
            continue   # a first build: nothing to say
        why = _rebuild_reason(path, prev.get(f), want, o)
        if why:
            prog.say(f"{f}: rebuilding {path.name}: {why}")
            continue
        anew = (_judged_anew(prev[f], path, o)
                if want.get("thresholds") != prev[f]["extra"]["inputs"].get("thresholds")
                else None)
        if anew is not None and anew.status == "fail":
            # Rebuilt, it would measure these numbers again and fail the same way.
            prog.say(f"{f}: {path.name} is not rebuilt: built again from the same weights, "
                     "calibration and options it measures the same, and its recorded numbers "
                     "fail the changed parity thresholds (--rebuild builds it again)")
            anew.extra.pop("up_to_date", None)
            _say_verdict(anew, prog)
            _mark(anew, path, want["weights"])
            anew.extra["inputs"] = want
            anew.extra["built_by"] = _built_by(own, prev[f])
            anew.extra["file_sha256"] = file_hash(path, n=64)   # the verdict is inside it
            kept[f] = anew
            continue
        kept[f] = _result_from(prev[f], path, "up_to_date")
        kept[f].extra["built_by"] = _built_by(own, prev[f])
        kept[f].extra["inputs"] = want   # thresholds it was judged on anew
        prog.say(f"{f}: {path.name} is up to date (same weights, options, exporter, "
                 "libraries and CPU; passed its gate): kept (--rebuild rebuilds it)")
    return kept


def _rebuild_reason(path: Path, prev: dict | None, inputs: dict, o: ExportOptions) -> str | None:
    """Why the existing artifact at `path` is rebuilt; None when it is up to date."""
    from runtime.backends import failed_marker, read_marker

    from distill.teacher import file_hash

    if o.rebuild:
        return "--rebuild"
    mark = failed_marker(path)
    # Before the record: an export stopped while it replaced the artifact leaves the record
    # without the inputs, and "no record of what it was built from" hid why.
    if read_marker(path).get("status") == "unchecked":
        return ("an export was stopped before its gate judged it (marked unchecked in "
                f"{mark.name})")
    extra = (prev or {}).get("extra") or {}
    if "inputs" not in extra:
        return ("no record of what it was built from (its export report is gone, or it "
                "predates the record)")
    if prev.get("status") != "pass":
        return (f"its last build {'failed its gate' if prev.get('status') == 'fail' else 'failed'}"
                + (f" ({prev['reason']})" if prev.get("reason") else ""))
    if mark.exists():
        reason = read_marker(path).get("reason")
        return f"it is marked as failed ({mark.name}{f': {reason}' if reason else ''})"
    side = path.with_name(path.name + ".json")
    if path.suffix in (".tflite", ".engine") and not side.is_file():
        return f"its sidecar {side.name}, which the runtime needs, is missing"
    changed = [k for k in dict.fromkeys([*inputs, *extra["inputs"]])
               if inputs.get(k) != extra["inputs"].get(k)]
    if "float_layers" in changed and _as_auto_built(extra, inputs):
        changed.remove("float_layers")
    anew = _judged_anew(prev, path, o) if changed == ["thresholds"] else None
    if anew is not None and (anew.status == "pass" or _deterministic(prev["format"])):
        changed = []   # failing: judged failed on its numbers, not rebuilt (_up_to_date)
    if anew is not None and changed:
        return (f"its recorded numbers fail the changed parity thresholds ({anew.reason}); "
                "rebuilding to measure again (its build may differ: TensorRT picks kernels by "
                "timing)")
    if changed:
        return "changed since it was built: " + ", ".join(INPUT_LABELS.get(k, k)
                                                          for k in changed)
    if extra.get("file_sha256") != file_hash(path, n=64):
        return "the file changed since it passed its gate"
    return None


def _judged_anew(prev: dict, path: Path, o: ExportOptions) -> FormatResult | None:
    """An artifact that passed its gate judged on the changed thresholds by its recorded
    worst-image numbers (the same file and parity images: the gate would measure the same): a
    stricter or looser --min-ssim rebuilt every INT8 and FP16 artifact. None where they cannot
    tell: numbers missing, or --float-layers auto, whose choice of layers the thresholds
    steer."""
    spec = FORMATS.get(prev.get("format"))
    if spec is None or (spec.needs_calibration and _float_layers_key(o.float_layers) == "auto"):
        return None
    res = _result_from(prev, path, "judged_anew")
    try:
        for k in ("max_abs", "ssim", "psnr", "ssim_gt_drop"):   # JSON holds inf as "inf"
            setattr(res, k, None if prev.get(k) is None else float(prev[k]))
    except (TypeError, ValueError):
        return None
    if None in (res.max_abs, res.ssim, res.psnr):
        return None
    _judge(res, spec, o.thresholds)
    return res


def _deterministic(fmt: str) -> bool:
    """Whether building `fmt` again from the same inputs gives an artifact that measures the
    same (so one whose recorded numbers fail need not be rebuilt to fail): the ONNX Runtime and
    TFLite builds on the CPU. Not TensorRT engines (kernels chosen by timing), nor ModelOpt's
    QDQ model (its calibration may run on the GPU)."""
    return FORMATS[fmt].engine != "tensorrt" and fmt != "onnx-qdq-trt"


def _result_from(record: dict, path: Path, flag: str) -> FormatResult:
    """An earlier report's result for the artifact at `path` (named as this run names its
    own), marked with `flag` in its extra (up_to_date: kept; earlier_export: carried)."""
    known = {k: v for k, v in record.items() if k in FormatResult.__dataclass_fields__}
    known["file"] = str(path)
    known["extra"] = {**(known.get("extra") or {})}
    known["extra"].pop("earlier_export", None)
    known["extra"][flag] = True
    return FormatResult(**known)


def _built_by(report: dict, row: dict) -> dict:
    """What built the artifact of `report`'s `row`, for a later report that keeps or carries
    it (`sharpen models ARTIFACT`): that report's environment and calibration, as the later
    run's are of a run that did not build it (another seed, or no crops for --formats onnx).
    Kept or carried before: the record made then; by an older version that made none: {}."""
    extra = row.get("extra") if isinstance(row.get("extra"), dict) else {}
    if isinstance(extra.get("built_by"), dict):
        return extra["built_by"]
    if extra.get("earlier_export") or extra.get("up_to_date"):
        return {}
    settings = report.get("settings") if isinstance(report.get("settings"), dict) else {}
    return {"environment": report.get("environment"), "calibration": settings.get("calibration")}


def _reports_of(out: Path, stem: str):
    """The folder's latest report, then the one kept aside for `stem`, where they exist."""
    for name in ("export_report.json", f"export_report.{stem}.json"):
        report = _read_report(out / name)
        if report is not None:
            yield report


def _report_stem(report: dict) -> str | None:
    """The artifact stem an export report describes (older reports: from its files' names)."""
    stem = report.get("settings", {}).get("stem")
    if stem:
        return stem
    for r in report.get("results", []):
        if r.get("file"):
            name = Path(r["file"]).name
            suffix = FORMATS[r["format"]].suffix if r.get("format") in FORMATS else ""
            return name[: -len(suffix)] if suffix and name.endswith(suffix) else Path(name).stem
    return None


def _own_report(out: Path, stem: str) -> dict | None:
    """The report of the latest export of `stem` in `out` (the folder's, or the one kept aside
    for it), if any."""
    return next((r for r in _reports_of(out, stem) if _report_stem(r) == stem), None)


def _earlier_results(out: Path, stem: str, old: dict | None, now: set[str], weights_sha: str,
                     prog: Progress) -> tuple[list[FormatResult], list[dict]]:
    """What an earlier export of this stem built that this one does not rebuild: its results
    are carried into the new report (not into this export's verdict) when they came from the
    same weights and their files are still there (`--formats onnx`, then `--formats
    tflite-int8`, used to leave a report of the second alone); from other weights, or with no
    record, they are stale, which is said, and listed as such for the report (the carried
    results, the stale entries). `old`: the latest report of this stem (`_own_report`), read
    once before anything is built."""
    same = old is not None and old.get("settings", {}).get("weights_sha256") == weights_sha
    carried = []
    if same:
        for r in old.get("results", []):
            f = r.get("format")
            if (f in FORMATS and f not in now and r.get("status") in ("pass", "fail")
                    and r.get("file") and (out / Path(r["file"]).name).exists()):
                c = _result_from(r, out / Path(r["file"]).name, "earlier_export")
                c.extra["built_by"] = _built_by(old, r)
                # Not judged again: its SSIM is of the formula of the report it comes from
                # (none named: an older version's), not the one this report names.
                c.extra.setdefault("ssim_formula", old.get("ssim_formula"))
                carried.append(c)
    kept = {c.format for c in carried}
    stale = {f: p.name for f, spec in FORMATS.items() if f not in now and f not in kept
             for p in (out / f"{stem}{spec.suffix}",) if p.exists()}
    if not stale:
        return carried, []
    names = list(stale.values())
    prog.warn(f"{', '.join(names)} in {out} {'are' if len(names) > 1 else 'is'} not rebuilt "
              "by this export and not in its report (from other weights, or an export "
              "whose report is gone): remove, or rebuild with --formats")
    why = ("no report of an earlier export of this stem records it (gone, or never written)"
           if old is None else "the latest report of this stem is of other weights"
           if not same else "the latest report of these weights does not record it as built")
    return carried, [{"format": f, "file": name, "reason": f"not rebuilt by this export: {why}"}
                     for f, name in stale.items()]


def _keep_other_report(out: Path, stem: str, prog: Progress) -> None:
    """export_report.json describes the folder's latest export. When that was an export of
    other artifacts (another stem) that are still there, keep its report beside them as
    export_report.<stem>.json instead of losing it."""
    path = out / "export_report.json"
    old = _read_report(path)
    old_stem = _report_stem(old) if old is not None else None
    if not old_stem or old_stem == stem or "/" in old_stem or old_stem.startswith("."):
        return
    files = [Path(r["file"]).name for r in old.get("results", []) if r.get("file")]
    if not any((out / f).exists() for f in files):
        return
    kept = out / f"export_report.{old_stem}.json"
    os.replace(path, kept)
    prog.say(f"kept the report of the {old_stem} artifacts as {kept.name}")


def _say_replaced(own: dict | None, paths: list[Path], weights_sha: str,
                  prog: Progress) -> None:
    """Warn when this export replaces artifacts that their report (`own`: the latest report of
    the stem, `_own_report`) says came from other weights (a rebuild from the same checkpoint
    is routine)."""
    if own is None or own.get("settings", {}).get("weights_sha256") in (None, weights_sha):
        return
    hit = [p.name for p in paths if p.exists()]
    if hit:
        prog.warn(f"replacing {', '.join(hit)}, exported from {own.get('weights')} "
                  "(other weights); --name gives this export its own file names")


# The ONNX model that each engine's trtexec line builds it from.
_ENGINE_SOURCE = {"engine": "onnx", "engine-int8": "onnx-qdq-trt"}


def _drop_void_pending_sidecars(out: Path, stem: str, ours: set[str], now: set[str],
                                weights_sha: str, prog: Progress) -> None:
    """A pending sidecar (written where TensorRT is missing, for the engine that the printed
    trtexec line builds on the device) describes an engine of the ONNX model beside it. When
    that model is of this export's weights (`ours`: built or kept now) and the sidecar of other
    weights, and this export leaves the engine alone (not in `now`), no line builds the engine
    it describes any more: the engine built from the new model got the old weights' hash
    (`sharpen run` called it stale), size multiple and receptive field. It goes, said; an
    engine that is there is named stale by `_earlier_results` instead."""
    for eng, src in _ENGINE_SOURCE.items():
        engine = out / f"{stem}{FORMATS[eng].suffix}"
        side = engine.with_name(engine.name + ".json")
        if eng in now or src not in ours or engine.exists() or not side.is_file():
            continue
        try:
            meta = json.loads(side.read_text())
        except (OSError, ValueError):
            continue   # not ours to judge; the runtime names an unreadable sidecar
        if not isinstance(meta, dict) or meta.get("source_sha256") in (None, weights_sha):
            continue
        side.unlink()
        prog.warn(f"removed {side.name}: the sidecar of the engine that an earlier export's "
                  f"trtexec line builds from {stem}{FORMATS[src].suffix} of other weights, "
                  f"now of these; `--formats {eng}` writes the one for these "
                  "weights and prints its line")
