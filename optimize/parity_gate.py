"""The parity gate of `sharpen export`: run a built artifact on the parity images against the
FP32 PyTorch output (and time it at 1080p), judge it by the thresholds, and leave its verdict
where `sharpen run` reads it (a marker beside a failing artifact, the ONNX metadata or sidecar
inside it); for --float-layers auto, the smallest float region that passes."""
from __future__ import annotations

from pathlib import Path


from runtime.console import first_line
from runtime.formats import Format

from .export_options import ExportOptions, Thresholds
from .export_progress import Progress
from .export_report import FormatResult


def _gate(res: FormatResult, spec: Format, path: Path, parity_list, refs, gt, ref_ssim_gt,
          teacher, th: Thresholds, threads: int, lat_image, latency_runs: int,
          prog: Progress) -> None:
    from .parity import load_runner, measure_latency, run_parity

    try:
        runner, res.runner = load_runner(path, threads=threads)
    except Exception as e:
        if path.suffix == ".engine":
            res.status, res.reason = "error", f"cannot run the engine: {first_line(e)}"
        else:
            res.status, res.reason = "error", f"cannot load: {first_line(e)}"
        prog.say(f"  {res.reason}")
        return
    try:
        with runner:
            pr = run_parity(runner, parity_list, refs, gt, teacher, ref_ssim_gt)
            res.max_abs, res.psnr, res.ssim = pr.max_abs, pr.psnr, pr.ssim
            res.ssim_gt, res.ssim_teacher, res.images = pr.ssim_gt, pr.ssim_teacher, pr.images
            res.ssim_gt_drop = pr.ssim_gt_drop
            timed = lat_image is not None and latency_runs > 0
            if why := timed and latency_outside_profile(path, lat_image):
                res.extra["latency"] = f"not measured: {why}"
                prog.say(f"  no 1080p latency: {why}")
            elif timed:
                res.latency_ms_1080p = 1000 * measure_latency(runner, runs=latency_runs,
                                                              image=lat_image)
    except Exception as e:
        res.status, res.reason = "error", f"parity run failed: {first_line(e)}"
        prog.say(f"  {res.reason}")
        return
    _judge(res, spec, th)
    _say_verdict(res, prog)


def latency_outside_profile(path: Path, image) -> str | None:
    """Why an engine is not timed on `image` (the 1080p frame), or None: the frame is outside
    the optimisation profile its sidecar records (--max-shape 720x1280 for a 720p camera). Run
    anyway, TensorRT refused its shape and the engine, which had passed its parity images, was
    said to fail ("parity run failed"). Not an engine, or no profile recorded: None."""
    if Path(path).suffix.lower() not in (".engine", ".plan"):
        return None
    from runtime.backends.base import ModelError, read_sidecar

    from .tensorrt_engine import profile_miss

    try:
        meta = read_sidecar(path)
    except ModelError:   # the engine's load says so
        return None
    return profile_miss(meta.get("profile"), image.shape[:2], meta.get("multiple") or 1)


def _judge(res: FormatResult, spec: Format, th: Thresholds) -> None:
    """res.status and res.reason from its worst-image numbers and the thresholds."""
    ok, metric, limit = th.judge(spec.gate, res.max_abs, res.ssim, res.psnr, res.ssim_gt_drop)
    res.reason = None
    if not ok and metric == "max_abs":
        res.reason = f"max abs error {res.max_abs:.3g} >= {limit:g}"
    elif not ok and metric == "ssim":
        res.reason = f"SSIM {res.ssim:.4f} < {limit:g}"
    elif not ok and metric == "psnr":
        res.reason = f"PSNR {res.psnr:.2f} < {limit:g} dB"
    elif not ok:
        worst = max(res.images or [{}], key=lambda r: r.get("ssim_gt_drop", -1.0))
        res.reason = (f"loses {res.ssim_gt_drop:.4f} SSIM to ground truth against FP32"
                      + (f" on {worst['image']}" if worst.get("image") else "")
                      + f" > {limit:g}")
    res.status = "pass" if ok else "fail"


def _say_verdict(res: FormatResult, prog: Progress) -> None:
    lat = f", {res.latency_ms_1080p:.0f} ms @1080p" if res.latency_ms_1080p else ""
    drop = (f", SSIM to ground truth -{res.ssim_gt_drop:.4f} vs FP32"
            if res.ssim_gt_drop is not None else "")
    prog.say(f"  {res.status.upper()}: max abs {res.max_abs:.3g}, PSNR {res.psnr:.2f} dB, "
             f"SSIM {res.ssim:.4f}{drop}{lat}" + (f" ({res.reason})" if res.reason else ""))


def _mark(res: FormatResult, path: Path, weights_sha: str) -> None:
    """Record the source checkpoint; beside a failing artifact leave a marker that makes
    `sharpen run` refuse it unless forced, beside a passing one remove it (each build leaves
    an "unchecked" one until it is judged)."""
    from runtime.atomic import atomic_write_json
    from runtime.backends import failed_marker

    res.extra["weights_sha256"] = weights_sha
    if res.status == "pass":
        failed_marker(path).unlink(missing_ok=True)
    elif path.exists():
        atomic_write_json(failed_marker(path), {"format": res.format, "status": res.status,
                                 "reason": res.reason, "weights_sha256": weights_sha})
        _record_failure_inside(path, res.reason or res.status)


def _record_failure_inside(path: Path, reason: str | None) -> None:
    """The gate's verdict where it travels with the model: ONNX metadata, else the sidecar that
    the runtime needs beside a .tflite or an engine anyway. None clears it."""
    from runtime.atomic import atomic_write_bytes, atomic_write_json
    from runtime.backends.base import PARITY_KEY, read_sidecar, sidecar_path

    if path.suffix.lower() == ".onnx":
        from .onnx_export import record_parity_failure
        record_parity_failure(path, reason)
        return
    side = sidecar_path(path)
    if side is None:
        return
    info = read_sidecar(path)
    if reason is not None:
        info = {**info, PARITY_KEY: reason}
    elif PARITY_KEY in info:
        info = {k: v for k, v in info.items() if k != PARITY_KEY}
    else:
        return
    atomic_write_json(side, info)
    if path.suffix.lower() == ".tflite":
        # The record inside the file, which `sharpen run` and an app read when it travels alone.
        from .tflite_export import embed_metadata
        atomic_write_bytes(path, embed_metadata(path.read_bytes(), info))


def _measure_kept(res: FormatResult, o: ExportOptions, lat_image, prog: Progress) -> None:
    """The 1080p latency of an up-to-date artifact built with --no-latency: measured, where
    it was rebuilt for it (minutes of calibration for an INT8 model, to the same bytes)."""
    from .parity import load_runner, measure_latency

    path = Path(res.file)
    if why := latency_outside_profile(path, lat_image):
        prog.warn(f"{res.format}: no 1080p latency: {why}")
        return
    prog.say(f"{res.format}: measuring the 1080p latency of {path.name} (built with "
             "--no-latency)")
    try:
        with load_runner(path, threads=o.threads)[0] as runner:
            res.latency_ms_1080p = 1000 * measure_latency(runner, runs=o.latency_runs,
                                                          image=lat_image)
    except Exception as e:   # the artifact passed its gate; the missing number is said
        prog.warn(f"{res.format}: its latency could not be measured: {first_line(e)}")


def _search_float_layers(attempt, tries: list[list[str]]) -> FormatResult:
    """The smallest of `tries` (float regions, smallest first; larger ones lose less) whose
    artifact passes its gate, by bisection: about log2(len) rebuilds instead of len. Ends with
    that artifact built, or with the largest one if none passes."""
    best = last = len(tries) - 1
    res = attempt(tries[best])
    if res.status != "pass":
        return res
    lo = 0
    while lo < best:
        mid = (lo + best) // 2
        res, last = attempt(tries[mid]), mid
        if res.status == "pass":
            best = mid
        else:
            lo = mid + 1
    return res if last == best else attempt(tries[best])
