"""`sharpen export`: one student checkpoint -> every deployment format, each parity-gated.

Formats: the one table in `runtime.formats.FORMATS` (name, suffix, precision, engine, builder
method of `_BuildContext`, availability, parity gate); `sharpen export --help` lists it.

Each artifact is written atomically, then run on held-out real images at full resolution by
the runtime's backend and compared with the FP32 PyTorch student (`optimize.parity`). An
artifact under its threshold is reported as FAIL and makes the export exit non-zero. A table
(format, file, size, 1080p latency, PSNR/SSIM, pass/fail) ends the run and `export_report.json`
in the output folder holds everything.

This module runs an export; its parts are named for their job: `export_options` (what it can
be told, and the checks), `export_data` (calibration and parity images), `export_reuse` (what
is kept instead of rebuilt), `parity_gate` (judging an artifact), `export_report` (results,
report, table) and `export_progress` (messages and bars). Their public names are re-exported
here: `optimize.export` stays the entry point.
"""
from __future__ import annotations

import contextlib
import os
import time
import traceback
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from runtime.atomic import scratch_folder
from runtime.console import count, first_line
from runtime.formats import FORMATS  # FORMATS is re-exported for callers
from runtime.backends.provenance import TRTEXEC_ON_JETSON
from runtime.cli_errors import NO_SPACE_ERRNOS, OWN_PACKAGES, raise_if_interrupted
from runtime.host import default_threads
from runtime.video_sink import free_bytes

from .export_data import _calibration_data, _latency_image, _load_matching, say_calibration_look
from .export_data import resolve_calib as resolve_calib
from .export_options import (CALIB_SIZE as CALIB_SIZE, ExportError as ExportError,
                             ExportOptions as ExportOptions, Flags as Flags,
                             Thresholds as Thresholds, _NUMBERS, _option,
                             check_options as check_options,
                             check_out_dir as check_out_dir, default_formats as default_formats,
                             list_formats as list_formats, parse_formats as parse_formats,
                             portrait_shape_warnings as portrait_shape_warnings)
from .export_progress import Progress as Progress
from .export_report import (HEADERS as HEADERS, ExportReport as ExportReport,
                            FormatResult as FormatResult, print_table as print_table,
                            table_headers as table_headers, table_legend as table_legend,
                            table_rows as table_rows)
from .export_reuse import (_drop_void_pending_sidecars, _earlier_results, _keep_other_report,
                           _own_report, _say_replaced, _up_to_date, asks_float_layers,
                           build_inputs as build_inputs,
                           code_hash as code_hash)
from .parity_gate import (_gate, _mark, _measure_kept, _record_failure_inside,
                          _search_float_layers)


# --------------------------------------------------------------------------- registry

# The libraries whose versions change an artifact's bytes or its parity numbers (recorded in
# export_report.json's environment; None where not installed).
EXPORT_LIBS = ("torch", "numpy", "opencv", "onnx", "onnxruntime", "onnxslim", "tensorflow",
               "ai_edge_litert", "nvidia_modelopt", "tensorrt")

def _onnx_available() -> str | None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise_if_interrupted(e)   # else a Ctrl-C here skipped the format as not installed
        return f"{e.name} is not installed (pip install -e '.[export]')"
    return None


def _tflite_available() -> str | None:
    from importlib.util import find_spec

    # find_spec, not import: importing TensorFlow takes seconds and happens at build time.
    if find_spec("tensorflow") is None:
        # Not "tensorflow-cpu": x86-64 wheels only; the extra asks ARM for `tensorflow`.
        return ("TensorFlow is not installed (it converts to TFLite; "
                "pip install -e '.[export]')")
    if find_spec("ai_edge_litert") is None:
        return "ai-edge-litert is not installed (it runs .tflite models for the parity check)"
    return None


def _modelopt_available() -> str | None:
    from .modelopt_qdq import availability

    return _onnx_available() or availability()


def _trt_available() -> str | None:
    from .tensorrt_engine import availability

    return availability()


def _trt_int8_available() -> str | None:
    from .tensorrt_engine import int8_availability

    return int8_availability() or _modelopt_available()


# --------------------------------------------------------------------------- orchestration

def export(weights: str | os.PathLike, formats: Sequence[str] | str | None = None,
           out_dir: str | os.PathLike = "export", options: ExportOptions | None = None, *,
           progress: Progress | None = None, on_result=None, flags: Flags = False,
           command: dict | None = None, **overrides) -> ExportReport:
    """Export `weights` (a student checkpoint, or a shipped student's name such as `fast`) to
    `formats` in `out_dir`; see the module doc.
    Settings come from `options` (an ExportOptions, `sharpen export` builds one from its flags)
    with any ExportOptions field given as a keyword on top. `on_result(FormatResult)` is called
    as each format is built and judged, its file final (the bench records it at once, so that
    an interrupted export keeps the formats it finished).

    Raises ExportError / CheckpointError / CalibrationError for usage problems (before any
    work); build failures and parity failures are reported in the returned report instead.
    What the user may not expect (an image skipped, a format that cannot be built here, an
    option that does not apply) is a `runtime.SharpenWarning`; `quiet` silences the steps only.
    The root logger is left as found (TensorFlow's absl configured it for the whole process).
    While it runs the process's temp folder (tempfile.gettempdir()) is a hidden folder of
    `out_dir`, removed at its end (`runtime.atomic.scratch_folder`): another thread's temp
    files made meanwhile go there too.
    `command`: the command line that runs it, for the report ({"line", "cwd"}).
    `flags`: messages about the calibration and parity images name `sharpen export`'s flags
    (--parity-images), not these keywords (parity_images): the command line sets it; a
    mapping names another front end's (`Flags`: `sharpen bench`'s, which has no
    --parity-images).
    """
    from runtime.console import root_logging_kept
    from runtime.output_paths import folders_to_make, remove_if_empty

    # The out_dir folder is made before the calibration and parity images are read: a bad
    # calib or parity_images (or a Ctrl-C then) must not leave it behind, empty.
    made = folders_to_make(out_dir)
    try:
        # Holds the out_dir folder's lock (taken in _export once the folder is checked) until
        # the export has ended, its lock file removed before an empty folder is.
        with root_logging_kept(), contextlib.ExitStack() as held:
            return _export(weights, formats, out_dir, options, progress=progress,
                           on_result=on_result, flags=flags, held=held, command=command,
                           **overrides)
    except BaseException:
        remove_if_empty(made)
        raise


def _export(weights: str | os.PathLike, formats: Sequence[str] | str | None,
            out_dir: str | os.PathLike, options: ExportOptions | None, *,
            progress: Progress | None, on_result, flags: Flags = False,
            held: contextlib.ExitStack | None = None, command: dict | None = None,
            **overrides) -> ExportReport:
    """`export`'s work, in the root logging state `export` restores; the folder's lock is
    entered into `held`, which the caller leaves when the export has ended."""
    known = {f.name for f in fields(ExportOptions)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        gates = [k for k in unknown if k in {f.name for f in fields(Thresholds)}]
        raise ExportError(
            f"unknown export option {', '.join(map(repr, unknown))}"
            + (f"; {gates[0]} is a parity threshold: thresholds=Thresholds({gates[0]}=...) or "
               f"thresholds={{{gates[0]!r}: ...}}" if gates else
               f"; options: {', '.join(sorted(known))}"))
    o = replace(options or ExportOptions(), **overrides)
    if isinstance(o.thresholds, Mapping):   # as TrainConfig takes its sections
        try:
            o = replace(o, thresholds=Thresholds(**o.thresholds))
        except TypeError as e:
            raise ExportError(f"thresholds: {e}; its keys: "
                              f"{', '.join(f.name for f in fields(Thresholds))}") from None
    from distill.checkpoint import load_student, run_stem

    from .tensorrt_engine import DEFAULT_MAX, DEFAULT_MIN, Profile, as_hw, supported_for

    prog = progress or Progress(o.quiet)
    if o.thresholds is None:
        o = replace(o, thresholds=Thresholds())
    requested = parse_formats(formats)
    skipped: dict[str, str] = {}
    if requested is None:
        fmts, skipped = default_formats()
        explicit = False
    else:
        fmts, explicit = list(requested), True
        for f in list(fmts):
            reason = FORMATS[f].availability()
            if reason:
                skipped[f] = reason
                fmts.remove(f)
        # An engine that cannot be built here is built on the device from the ONNX model:
        # export (and verify) that model so the printed trtexec line works as is.
        for eng, src in (("engine", "onnx"), ("engine-int8", "onnx-qdq-trt")):
            if eng in skipped and src not in fmts and not FORMATS[src].availability():
                fmts.append(src)
                prog.say(f"{eng} cannot be built here; exporting {src} for building it on the "
                         "target device")
    check_options(o)   # the shapes too, named as the caller gave them
    shapes = tuple(s if s is None else as_hw(s)
                   for s in (o.min_shape, o.opt_shape, o.max_shape))
    for line in portrait_shape_warnings(shapes):
        prog.warn(line)
    # numpy's numbers pass the checks; the report (JSON) takes Python's.
    o = replace(o, **{k: (int if whole else float)(getattr(o, k)) for k, whole in _NUMBERS.items()
                      if getattr(o, k) is not None})
    if asks_float_layers(o.float_layers) and not any(FORMATS[f].needs_calibration
                                                     for f in fmts):
        prog.warn(f"--float-layers applies to the INT8 formats only, none of which is built "
                  f"here ({', '.join(fmts)})")

    from distill.teacher import resolve_weights
    weights = resolve_weights(weights, allow_teacher=False)   # a shipped name, as --weights
    model, ckpt = load_student(weights)   # CheckpointError: missing / not a student
    from . import float_layers as fl
    try:
        float_spec = fl.parse(o.float_layers, model)
    except fl.FloatLayersError as e:
        raise ExportError(str(e)) from None
    from distill.teacher import file_hash
    weights_sha = file_hash(weights, n=64)
    ckpt["source_sha256"] = weights_sha
    from distill.students import receptive_field
    # Travels with every artifact, so that `sharpen run --tile` can say when its overlap is
    # narrower than what one output pixel sees (tile seams).
    ckpt["receptive_field"] = receptive_field(model)
    multiple = int(getattr(model, "multiple", 1))
    stem = o.name or run_stem(weights)   # runs/a/best.pt -> a-best: runs keep apart
    if shapes[1] is not None and not any(
            FORMATS[f].engine == "tensorrt" for f in (*fmts, *skipped)):
        # No engine is built nor its trtexec line written (a skipped one's is, in the default
        # 'all' too): the profile's default bounds cap nothing, and a .tflite takes any
        # --opt-shape (a phone's portrait 4K, 3840x2160) as its input's size until resized.
        lo, hi = shapes[0], shapes[2]
        shapes = (tuple(map(min, shapes[1], lo)) if lo == DEFAULT_MIN else lo, shapes[1],
                  tuple(map(max, shapes[1], hi)) if hi == DEFAULT_MAX else hi)
    try:
        profile = Profile.from_hw(*shapes, multiple=multiple, names=tuple(
            _option(f, flags) or f for f in ("min_shape", "opt_shape", "max_shape")))
    except ValueError as e:
        raise ExportError(str(e)) from None
    out = check_out_dir(out_dir)   # after the usage checks: a mistake leaves no empty folder
    if held is not None:
        held.enter_context(_export_lock(out, flags))
    prog.say(f"student {model.arch_name} {model.arch_args} (multiple {multiple}) from {weights}")

    # ---- data: calibration crops and held-out parity images (fail early on bad data)
    data = _calibration_data(o, multiple, any(FORMATS[f].needs_calibration for f in fmts),
                             ckpt["receptive_field"], prog, flags)
    say_calibration_look(data, fmts, prog, flags)
    parity_list, crops, calib_names = data.parity_list, data.crops, data.calib_names
    gt = _load_matching(o.parity_gt, parity_list, "ground truth", prog)
    if o.thresholds.max_ssim_drop is not None and not gt:
        # A gate the user asked for must not pass by not being applied.
        raise ExportError("--max-ssim-drop needs ground truth for the parity images: "
                          + ("no --parity-gt image matches a parity image by name"
                             if o.parity_gt else "give --parity-gt DIR (same file names)"))
    teacher = _load_matching(o.parity_teacher, parity_list, "teacher", prog)

    # ---- what is up to date (same inputs, file unchanged since it passed): kept, not rebuilt
    inputs = build_inputs(fmts, weights_sha, o, profile, crops, parity_list, gt, teacher)
    own = _own_report(out, stem)
    kept = _up_to_date(out, stem, own, inputs, o, prog)
    order = list(fmts)
    fmts = [f for f in fmts if f not in kept]

    # ---- FP32 PyTorch reference
    from .parity import measure_latency, ssim, torch_runner

    ref_runner = torch_runner(model)
    if not fmts and kept:   # nothing to judge: the reference of the export that judged them
        refs, ref_ssim_gt = {}, {}
        reference = own.get("reference") or {}
    else:
        refs = {n: ref_runner(img) for n, img in parity_list}
        reference = {"images": [{"image": n, "shape": list(img.shape)} for n, img in parity_list]}
        ref_ssim_gt = {n: ssim(np.clip(refs[n], 0, 1), gt[n]) for n in gt} if gt else {}
    if gt and refs:
        reference["ssim_gt"] = min(ref_ssim_gt.values())
    if teacher and refs:
        reference["ssim_teacher"] = min(ssim(np.clip(refs[n], 0, 1), teacher[n]) for n in teacher)
    float_by_fmt, float_choices, float_tries = fl.plan(
        float_spec, model, fmts, crops, parity_list, gt, o.thresholds, o.reduce_range,
        prog.say)
    lat_image = _latency_image(parity_list[0][1]) if o.latency else None
    if o.latency and (refs or reference.get("latency_ms_1080p") is None):
        import torch

        prev = torch.get_num_threads()
        if n := default_threads(o.threads):   # as the artifacts ran: a CPU limit's count too
            torch.set_num_threads(n)
        try:
            reference["latency_ms_1080p"] = 1000 * measure_latency(
                ref_runner, runs=max(1, min(o.latency_runs, 3)), image=lat_image)
        finally:
            torch.set_num_threads(prev)
    for f, res in kept.items():
        if o.latency and o.latency_runs > 0 and res.latency_ms_1080p is None:
            _measure_kept(res, o, lat_image, prog)

    settings = {
        "formats_requested": requested or "all buildable", "calib_count": o.calib_count,
        "calib_size": None if crops is None else int(crops.shape[2]),
        "calib_images": calib_names, "calib_seed": o.seed, "calibration": data.calibration,
        "calib_method": o.calib_method, "percentile": o.percentile,
        "reduce_range": o.reduce_range, "float_layers_auto": float_choices or None,
        "modelopt_method": o.modelopt_method, "thresholds": asdict(o.thresholds),
        "profile": profile.to_dict(), "workspace_gb": o.workspace_gb,
        # What the checks and latencies ran on: --threads, else OMP_NUM_THREADS's (0: all cores)
        "threads": default_threads(o.threads) or 0,
        "parity_images": [n for n, _ in parity_list], "parity": data.parity,
        "parity_folders": data.parity_folders, "opset": o.opset,
    }

    # ---- build each format
    from runtime.atomic import atomic_write_json
    from runtime.backends import failed_marker

    _say_replaced(own, [out / f"{stem}{FORMATS[f].suffix}" for f in fmts], weights_sha, prog)
    _drop_void_pending_sidecars(out, stem, {*fmts, *kept}, {*fmts, *skipped}, weights_sha,
                                prog)
    _keep_other_report(out, stem, prog)
    earlier, stale = _earlier_results(out, stem, own, {*fmts, *kept, *skipped}, weights_sha,
                                      prog)
    # A report from an earlier run must not vouch for artifacts this run is replacing: it is
    # replaced at once (below) by one of the kept and carried results only.
    (out / f"export_report.{stem}.json").unlink(missing_ok=True)
    # Nor may the artifacts it is about to replace pass for this export's while it runs: an
    # interrupted re-export of other weights left the old .tflite beside the new .onnx, with no
    # report, and `sharpen run` used it. Each one's own build clears or replaces the marker.
    for f in fmts:
        old = out / f"{stem}{FORMATS[f].suffix}"
        if old.exists():
            atomic_write_json(failed_marker(old), {
                "format": f, "status": "unchecked", "reason": f"an export replacing it (from "
                f"{weights}) did not finish; export again"})
    results: list[FormatResult] = list(kept.values())
    ctx = _BuildContext(model, ckpt, out, stem, crops, profile, multiple, o, prog)
    ctx.float_by_fmt = float_by_fmt
    ctx.unrunnable = parity_outside_profile(parity_list, profile, multiple, flags)
    for f, res in kept.items():
        # A format rebuilt from a kept one (onnx-int8 from onnx) uses the file as it passed.
        ctx.built[f] = Path(res.file)
        if res.extra.get("float_layers"):
            ctx.float_by_fmt[f] = list(res.extra["float_layers"])
    total = len(fmts)
    # The software that built the artifacts: a device's file traced back to its export says
    # which converter and quantiser versions made it, as train.log says which torch trained.
    from distill.provenance import run_environment
    environment = run_environment(libs=EXPORT_LIBS)

    def write_report(results: list[FormatResult], interrupted: bool = False,
                     error: str | None = None) -> ExportReport:
        settings.update(weights_sha256=weights_sha, stem=stem,
                        float_layers=dict(ctx.float_by_fmt))   # as built, after any fallback
        for key in ("interrupted", "error"):   # set by the writes made while the export runs
            settings.pop(key, None)
        if interrupted:
            settings["interrupted"] = True
        if error:
            settings["error"] = error
        report = ExportReport(str(weights), model.arch_name, str(out), results + earlier,
                              reference, settings, stale, environment,
                              ckpt.get("lineage") or {}, command)
        atomic_write_json(out / "export_report.json", report.to_dict())
        return report

    # The folder's report describes its artifacts all along, marked interrupted until the
    # export ends: an export killed part-way (SIGKILL, a job's time limit) left none, and the
    # next export of other formats into the folder (the bench's, a concurrent one) found no
    # record of the finished ones, so that they were neither carried nor rebuilt.
    write_report(results, interrupted=True)

    with scratch_folder(out, "export") as tmp, \
            _report_if_stopped(lambda error: write_report(results, True, error)):
        ctx.tmp = tmp
        ctx.requested = set(fmts) | set(kept)
        for i, f in enumerate(fmts, 1):
            spec = FORMATS[f]
            prog.say(f"[{i}/{total}] {f}: {spec.description}")
            def attempt(layers: list[str] | None) -> FormatResult:
                if layers is not None:
                    prog.say(f"  trying {', '.join(layers)} (and all after) in float")
                    ctx.float_by_fmt[f] = layers
                    ctx.built.pop(f, None)
                return _build_and_gate(ctx, f, parity_list, refs, gt, ref_ssim_gt, teacher,
                                       lat_image, weights_sha)

            res = attempt(None)
            tries = float_tries.get(f, [])
            if res.status == "fail" and tries:
                res = _search_float_layers(attempt, tries)
                if res.status == "fail" and f == "tflite-int8":
                    res.reason = ((res.reason + "; ") if res.reason else "") + (
                        "the largest float region tried fails too: this format's input and "
                        "output stay 8-bit whatever runs in float (tflite-fp16 does not)")
            if ctx.float_by_fmt.get(f) or f in float_tries:
                res.extra["float_layers"] = ctx.float_by_fmt.get(f, [])
            # What the next export compares with to keep the file instead of rebuilding it.
            res.extra["inputs"] = inputs[f]
            if res.file and Path(res.file).is_file():
                res.extra["file_sha256"] = file_hash(res.file, n=64)
            results.append(res)
            # Before on_result: the bench's stamp never lists a format this report lacks.
            write_report(results, interrupted=True)
            if on_result is not None:
                on_result(res)
    results.sort(key=lambda r: order.index(r.format))   # kept ones in their place
    for f, reason in skipped.items():
        res = FormatResult(f, "skipped", precision=FORMATS[f].precision,
                           target=FORMATS[f].target, reason=reason)
        if f in ("engine", "engine-int8"):
            res.extra["trtexec"] = ctx.trtexec_line(f)
            res.extra["trtexec_sidecar"] = f"{ctx.stem}{FORMATS[f].suffix}.json"
        results.append(res)
        # Named in --formats: the command fails after the table, saying what is missing. In a
        # group ('all', the default) the format is skipped with this warning, as Ultralytics'
        # benchmark does, and its table row says SKIPPED.
        (prog.say if explicit else prog.warn)(f"skipped {f}: {reason}")
        if "trtexec" in res.extra:
            where = supported_for(res.precision, o.opset)
            prog.say(f"  build it on the target device ({where}): "
                     f"copy {out} there and, in that folder, run\n  {res.extra['trtexec']}\n  (its "
                     f"sidecar, {res.extra['trtexec_sidecar']}, is written: keep it beside "
                     f"the engine; {TRTEXEC_ON_JETSON})")

    return write_report(results)


# The export's own lock file: a training run in the same folder (an export of its best.pt
# beside it) writes none of the export's files, and goes on.
EXPORT_LOCK = ".export.lock"


@contextlib.contextmanager
def _export_lock(out: Path, flags: Flags) -> Iterator[None]:
    """One export at a time into `out`, the second refused (ExportError naming the first's
    process), as training refuses a second run in its out= (`distill.run_lock`, whose lock
    the kernel drops however its holder ends; here in a file of its own, EXPORT_LOCK). Two
    exports at once each marked, replaced and gated the other's artifacts and rewrote one
    report: a report could vouch for the file the other had built with its own options, its
    hash recorded as gated."""
    from distill.run_lock import RunLocked, run_lock

    # As the front end names it: the bench's export goes into a folder of its --cache.
    flag = _option("out_dir", flags) or "out_dir"
    try:
        with run_lock(out, doing="exporting", flag=flag, name=EXPORT_LOCK):
            yield
    except RunLocked as e:   # only the lock raises it: the export itself takes no other
        raise ExportError(str(e)) from None


@contextlib.contextmanager
def _report_if_stopped(write: Callable[[str | None], object]) -> Iterator[None]:
    """On Ctrl-C (or an error that ends the export), the report of the formats finished so
    far, then the exception: without it the next export found no record of what they were
    built from and rebuilt them (minutes of calibration each for the INT8 ones). The format
    under way stays marked unchecked. The report is marked interrupted either way (an export
    stopped part-way is not ok: the formats after it were never built); `write(error)`: the
    error that stopped it, None for Ctrl-C or SIGTERM."""
    try:
        yield
    except BaseException as e:
        error = (None if isinstance(e, KeyboardInterrupt)
                 else f"{type(e).__name__}: {first_line(e)}")
        with contextlib.suppress(Exception):   # best effort: the exception is what counts
            write(error)
        raise


# Less free than this on --out's disk after a failed build: the build may have filled it. Its
# scratch files (TensorFlow's SavedModel, ONNX Runtime's calibration models) are removed by
# the time the failure is seen, and TensorFlow's failed as "TypeError: 'NoneType' object is
# not callable", naming no cause (the shipped fast's tflite-fp16 in a 400 KB folder).
SCRATCH_ROOM_BYTES = 16 * 1024 * 1024


def _little_room(out: Path, failure: Exception) -> str:
    """' (only 0.4 MB free on the disk of OUT, ...)' where a failed build left little room
    and its failure names no cause of its own: an errno, a missing package, a lack of memory
    or this project's own message is no full disk's doing."""
    if (isinstance(failure, (ImportError, MemoryError))
            or isinstance(failure, OSError) and failure.errno is not None
            or type(failure).__module__.split(".")[0] in OWN_PACKAGES):
        return ""
    free = free_bytes(out if out.exists() else out.parent)
    if free is None or free >= SCRATCH_ROOM_BYTES:
        return ""
    return (f" (only {free / 1e6:.1f} MB free on the disk of {out}, where the build writes "
            "its scratch files: free some space)")


def _build_and_gate(ctx: "_BuildContext", f: str, parity_list, refs, gt, ref_ssim_gt, teacher,
                    lat_image, weights_sha: str) -> FormatResult:
    """Build format `f` and judge it (see `_gate`); a failed build is an "error" result."""
    from runtime.atomic import atomic_write_json
    from runtime.backends import failed_marker

    spec, o, prog = FORMATS[f], ctx.o, ctx.prog
    res = FormatResult(f, "error", precision=spec.precision, target=spec.target)
    t0 = time.perf_counter()
    try:
        if ctx.unrunnable and f in ("engine", "engine-int8"):   # not minutes of building
            raise _NotBuilt(ctx.unrunnable)
        path = ctx.build(f)
    except Exception as e:
        if isinstance(e, OSError) and e.errno in NO_SPACE_ERRNOS and e.filename:
            # A full disk is no failure of the format: every build after it would fail alike,
            # and exit 1 reads as a parity verdict. The command line says it in one line.
            raise
        res.reason = (f"not built: {e}" if isinstance(e, _NotBuilt) else
                      f"build failed: {type(e).__name__}: {first_line(e)}"
                      f"{_little_room(ctx.out, e)}")
        stale = ctx.path_for(f)
        if stale.exists():   # an older build must not pass for this one
            atomic_write_json(failed_marker(stale), {
                "format": f, "status": "error", "reason": res.reason})
            with contextlib.suppress(Exception):   # best effort: the marker above is the record
                _record_failure_inside(stale, res.reason)
        if not isinstance(e, _NotBuilt):   # a refusal of the export's own is no crash to trace
            res.extra["traceback"] = traceback.format_exc(limit=6)
        prog.say(f"  {res.reason}")
        return res
    # A fresh build is judged afresh, and counts as unchecked until it is: cleared before the
    # check, an earlier "failed" let `sharpen run` use an artifact whose check Ctrl-C cut short.
    try:
        atomic_write_json(failed_marker(path), {
            "format": f, "status": "unchecked", "weights_sha256": weights_sha,
            "reason": "its parity check did not finish (export interrupted?); export it again"})
    except OSError:   # a full disk: unmarked, the unchecked model would pass for a checked one
        path.unlink(missing_ok=True)
        raise
    _record_failure_inside(path, None)
    res.build_s = round(time.perf_counter() - t0, 2)
    res.file = str(path)
    res.size_bytes = path.stat().st_size
    _gate(res, spec, path, parity_list, refs, gt, ref_ssim_gt, teacher, o.thresholds,
          o.threads, lat_image, o.latency_runs, prog)
    _mark(res, path, weights_sha)
    return res


class _NotBuilt(Exception):
    """A format that is not built, for the reason given (its row's reason, said as is)."""


def parity_outside_profile(parity_list, profile, multiple: int, flags=False) -> str | None:
    """Why an engine's parity check cannot run a parity image, or None: the image, padded to
    the size multiple, is outside the engine's profile (--min-shape 720x1280 for one camera),
    which TensorRT refuses. The engine was built for minutes, then said "parity run failed ...
    or run with --tile", a flag of sharpen run's: said before the build, with the options to
    change (`flags`, as `export_options._option` names them; a front end's None: unsaid)."""
    from .tensorrt_engine import profile_miss

    for name, img in parity_list:
        if why := profile_miss(profile, img.shape[:2], multiple):
            # `sharpen bench` takes no --parity-images: its parity images are held out of --calib.
            given = _option("parity_images", flags) or _option("calib", flags)
            shapes = [_option(f, flags) for f in ("min_shape", "max_shape")]
            fixes = ([f"give {given} within it (frames of the camera the engine is for)"]
                     if given else []) + ([f"a {'/'.join(shapes)} that covers them"]
                                          if all(shapes) else [])
            return (f"the engine's parity check cannot run parity image {name}: {why}"
                    + (": " + ", or ".join(fixes) if fixes else ""))
    return None


class _BuildContext:
    """Builds formats, sharing intermediates (FP32 ONNX, QDQ ONNX) between them."""

    def __init__(self, model, ckpt, out: Path, stem: str, crops, profile, multiple: int,
                 opts: "ExportOptions", prog: Progress):
        self.model, self.ckpt, self.out, self.stem, self.crops = model, ckpt, out, stem, crops
        self.profile, self.multiple, self.o, self.prog = profile, multiple, opts, prog
        self.tmp: Path | None = None
        self.requested: set[str] = set()
        self.built: dict[str, Path] = {}
        self.float_by_fmt: dict[str, list[str]] = {}   # INT8 formats: modules kept in float
        self.unrunnable: str | None = None   # why an engine is not built (parity_outside_profile)

    def path_for(self, fmt: str) -> Path:
        """Final location when requested, else a temp location (intermediates)."""
        base = self.out if fmt in self.requested or self.tmp is None else self.tmp
        return base / f"{self.stem}{FORMATS[fmt].suffix}"

    def _engine_meta(self, fmt: str = "engine") -> dict:
        meta = {"student": self.model.arch_name,
                "receptive_field": self.ckpt.get("receptive_field"),
                "source_sha256": self.ckpt.get("source_sha256")}
        if fmt == "engine-int8":   # its QDQ model's float layers, which the runtime names
            meta["float_layers"] = list(self.float_by_fmt.get("onnx-qdq-trt", ()))
        return meta

    def trtexec_line(self, fmt: str) -> str:
        """The trtexec line that builds `fmt` on the device; the engine's sidecar (size
        multiple, profile) is written now, beside where that line puts the engine."""
        from .tensorrt_engine import trtexec_command, write_pending_sidecar

        source = "onnx" if fmt == "engine" else "onnx-qdq-trt"
        src = self.out / f"{self.stem}{FORMATS[source].suffix}"
        engine = self.out / f"{self.stem}{FORMATS[fmt].suffix}"
        precision = "fp16" if fmt == "engine" else "int8"
        # File names only: the line runs on the device, in the export folder copied there.
        line = trtexec_command(src.name, engine.name, self.profile, precision,
                               self.o.workspace_gb, "timing.cache")
        # In the sidecar too: a later export into the folder replaces the report that lists
        # it, and `sharpen run` given the engine before it is built says this line.
        write_pending_sidecar(src, engine, self.profile, precision, self.multiple,
                              self.o.workspace_gb, {**self._engine_meta(fmt), "trtexec": line})
        return line

    def build(self, fmt: str) -> Path:
        if fmt in self.built:
            return self.built[fmt]
        path = getattr(self, FORMATS[fmt].builder)(self.path_for(fmt))
        self.built[fmt] = path
        return path

    def _build_onnx(self, path: Path) -> Path:
        from .onnx_export import export_onnx

        return export_onnx(self.model, path, self.ckpt, opset=self.o.opset,
                           simplify=self.o.simplify)

    def _build_onnx_int8(self, path: Path) -> Path:
        from .onnx_int8 import DEFAULT_METHOD, DEFAULT_PERCENTILE, quantize_onnx_int8

        method = self.o.calib_method or DEFAULT_METHOD
        pct = self.o.percentile or DEFAULT_PERCENTILE
        self.prog.say(f"  calibrating ({method}{f' {pct}' if method == 'percentile' else ''}) "
                      f"on {count(len(self.crops), 'crop')}")
        fp32 = self.build("onnx")
        with self.prog.bar("ORT calibration") as bar:
            return quantize_onnx_int8(fp32, path, self.crops, method=method, percentile=pct,
                                      reduce_range=self.o.reduce_range,
                                      float_layers=self.float_by_fmt.get("onnx-int8", ()),
                                      on_batch=bar, threads=self.o.threads)

    def _build_onnx_qdq_trt(self, path: Path) -> Path:
        from .modelopt_qdq import DEFAULT_METHOD, quantize_qdq_trt

        method = self.o.modelopt_method or DEFAULT_METHOD
        self.prog.say(f"  ModelOpt PTQ ({method} calibration, CPU) on "
                      f"{count(len(self.crops), 'crop')}")
        return quantize_qdq_trt(self.build("onnx"), path, self.crops, method=method,
                                float_layers=self.float_by_fmt.get("onnx-qdq-trt", ()),
                                threads=self.o.threads)

    def _build_tflite(self, path: Path, quantization: str) -> Path:
        import contextlib
        import io

        from .tflite_export import export_tflite

        self.prog.say(f"  Keras rebuild + TFLite conversion ({quantization})")
        calibration = (self.prog.bar("TFLite calibration") if quantization == "int8"
                       else contextlib.nullcontext())
        # (stdout: Keras prints its SavedModel signature)
        with contextlib.redirect_stdout(io.StringIO()), calibration as bar:
            return export_tflite(self.model, path, quantization, self.crops, self.ckpt,
                                 on_sample=bar,
                                 float_layers=self.float_by_fmt.get(f"tflite-{quantization}",
                                                                    ()),
                                 input_hw=self.profile.opt[2:])   # --opt-shape

    def _build_tflite_int8(self, path: Path) -> Path:
        return self._build_tflite(path, "int8")

    def _build_tflite_fp16(self, path: Path) -> Path:
        return self._build_tflite(path, "fp16")

    def _build_engine(self, path: Path) -> Path:
        from .tensorrt_engine import build_engine

        self.prog.say("  TensorRT build (FP16); this takes a while")
        return build_engine(self.build("onnx"), path, self.profile, "fp16", self.o.workspace_gb,
                            self.out / "timing.cache", self.multiple,
                            self._engine_meta())

    def _build_engine_int8(self, path: Path) -> Path:
        from .tensorrt_engine import build_engine

        self.prog.say("  TensorRT build (INT8 from the QDQ model); this takes a while")
        return build_engine(self.build("onnx-qdq-trt"), path, self.profile, "int8",
                            self.o.workspace_gb, self.out / "timing.cache", self.multiple,
                            self._engine_meta("engine-int8"))
