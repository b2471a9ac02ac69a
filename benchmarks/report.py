"""`sharpen bench --out DIR`: measure and write the benchmark report.

DIR/report.md and DIR/report.json hold the quality table, the latency table (ms and fps per model,
backend and size, speedup over the teacher, whether the target frame rate is met), the streaming
pipeline's throughput and per-frame end-to-end latency, the checks, the machine description and
the commands to reproduce; the PNG figures are latency per backend, quality versus latency
(real-time line drawn) and side-by-side crops (blurred | teacher | students | ground truth) of
the hardest test images.

Every number comes from a run made here (`benchmarks.latency.measure`, the same warm-up and
calibrated-rounds scheme as pytest-benchmark, median reported). Quick mode (default): 1920x1080
and 640x360, few rounds, QUICK_LIMIT held-out images; full mode: 1920x1080, 1280x720 and
640x360, more rounds, every held-out image. Quick mode also leaves out the sizes at which a
student's activations alive at once exceed QUICK_MAX_ACTIVATION_GB (the seed layout at 1080p),
so that it fits in 4 GB of memory. A failed check still writes the report, then the
command exits 1. An interrupted run (Ctrl-C, SIGTERM) writes the report of the rows it finished,
marked incomplete with those it did not reach listed (report.json "incomplete"), without
figures, and the command exits 130 / 143.
"""
from __future__ import annotations

import datetime
import importlib.util
import json
import math
import os
import shlex
import signal
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from runtime.atomic import atomic_write_bytes
from runtime.console import Console, count
from runtime.output_paths import folders_to_make, remove_if_empty

from .artifacts import (BUILTIN_CALIBRATION, BUILTIN_PARITY_FALLBACK, DEFAULT_CALIB_COUNT,
                        BenchError, atomic_write_json, buildable_formats, check_calib,
                        check_float_layers, checkpoint_failed, default_cache_root,
                        ensure_artifacts, failed_artifacts, failure_reason, path_unless_named,
                        split_list)
from .latency import (QUICK_MAX_ACTIVATION_GB, SIZES_FULL, SIZES_QUICK_REPORT, TEACHER_OVERLAP,
                      TEACHER_TILE, TeacherTiles, parse_sizes, size_label,
                      stream_size)
from .figures import write_figures
from .given import bench_students, resolve_models
from .latency_run import missing_rows, planned_rows, run_latency
from .machine import machine_info, peak_rss_mb
from .options import DEFAULT_CPU_TARGET_FPS, real_blur_limits
from .compare import DEFAULT_FAIL_ON
from .markdown import render_markdown
from .ship import judge_latency, ship_section
from .quality import (DEFAULT_MIN_SSIM_RATIO, QUICK_LIMIT, QualityResult, TeacherOutputs,
                      evaluate, failed_checks, load_pairs, planned_quality_keys)

REPORT_FORMAT = "sharpen-bench/1"


@dataclass
class BenchOptions:
    out: str
    full: bool = False
    target_fps: float = 30.0
    # The what-to-ship budget of a backend on a CPU (--target-fps: on a GPU, and the tables').
    cpu_target_fps: float = DEFAULT_CPU_TARGET_FPS
    students: Optional[Sequence[str]] = None
    # Exported models measured as they are (--model); without students, only these.
    models: Optional[Sequence[str]] = None
    teacher_weights: Optional[str] = None
    teacher_config: Optional[str] = None
    data: Optional[str] = None
    real_pairs: Optional[str] = None         # real blur/sharp pairs (e.g. reds-mini, GoPro)
    align: str = "none"                      # ecc: --real-pairs scored aligned (evaluate's)
    # Real blurred images without ground truth: image files and folders of them.
    real_nogt: Optional[Sequence[str]] = None
    # Of --real-nogt's clips: every N-th frame, or these indices ("0,900,1800"), as evaluate's.
    stride: int = 1
    frames: Optional[str] = None
    min_ssim_ratio: float = DEFAULT_MIN_SSIM_RATIO
    min_ssim_gain: Optional[float] = None    # when set, gates on the SSIM gain instead
    limit: Optional[int] = None
    sizes: Optional[str] = None
    formats: Optional[str] = None
    float_layers: Optional[str] = None
    cache: Optional[str] = None
    threads: int = 0
    calib_count: int = DEFAULT_CALIB_COUNT
    calib: Optional[Sequence[str]] = None    # as `sharpen export --calib`; None: built-in photos
    seed: int = 0                            # as `sharpen export --seed`: the calibration crops
    stream_frames: Optional[int] = None
    # What to ship's memory budget: a row's peak resident MiB over it is not picked.
    max_memory_mib: Optional[float] = None
    # As `sharpen run --tile`: the students' latency and peak memory are measured in tiles.
    tile: int = 0
    # `sharpen bench --streams 4` or 1,2,4: that many concurrent `sharpen run`s per exported row.
    streams: Optional[str] = None
    # A baseline report (report.json or its folder) to compare with, and what fails it.
    baseline: Optional[str] = None
    fail_on: str = DEFAULT_FAIL_ON
    latency: bool = True
    quiet: bool = False

    # Valued flags of `sharpen bench` only; the shared ones come from benchmarks/options.py.
    CLI_FLAGS = {"out": "--out", "real_pairs": "--real-pairs", "align": "--align",
                 "stride": "--stride",
                 "frames": "--frames",
                 "max_memory_mib": "--max-memory-mib", "streams": "--streams",
                 "baseline": "--baseline", "fail_on": "--fail-on"}

    def stream_counts(self) -> list[int]:
        """--streams as counts, e.g. [1, 2, 4] (none: no concurrent runs)."""
        from .streams import parse_streams

        return parse_streams(self.streams) if self.latency else []

    def to_argv(self, pytest: bool = False) -> list[str]:
        """The `sharpen bench` arguments that rebuild these options (defaults left out); with
        `pytest`, only those `pytest benchmarks/` shares (benchmarks/options.py), plus the
        quick mode's sizes, which differ between the two front ends."""
        from .options import SCHEMA

        flags = {} if pytest else {"out": "--out"}
        flags.update({o.dest: o.flags[0] for o in SCHEMA if o.action is None and o.nargs is None})
        if not pytest:
            flags.update(self.CLI_FLAGS)
        defaults = BenchOptions(out="")
        argv: list[str] = []
        for name, flag in flags.items():
            v = getattr(self, name)
            if v != getattr(defaults, name) or (name == "out" and not pytest):
                argv += [flag, f"{v:g}" if isinstance(v, float) else str(v)]
        if pytest and self.sizes is None:
            argv += ["--sizes", ",".join(f"{w}x{h}" for w, h in self.mode()["sizes"])]
        if self.full:
            argv.append("--full")
        if self.min_ssim_gain is not None:
            argv += ["--min-ssim-gain", f"{self.min_ssim_gain:g}"]
        elif self.min_ssim_ratio != defaults.min_ssim_ratio:
            argv += ["--min-ssim-ratio", f"{self.min_ssim_ratio:g}"]
        if self.students:
            argv += ["--weights", *split_list(self.students)]
        if self.models:
            argv += ["--model", *split_list(self.models)]
        if self.calib:
            argv += ["--calib", *calib_sources(self.calib)]
        if pytest and self.real_pairs:   # the suite's own: not in CLI_FLAGS
            argv += ["--real-pairs", self.real_pairs]
            if self.align != "none":
                argv += ["--align", self.align]
        # The suite picks a clip's frames by --limit alone: given other frames, its rows would
        # stand for the report's under the same names.
        if self.real_nogt and not (pytest and (self.stride != 1 or self.frames is not None)):
            argv += ["--real-nogt", *nogt_paths(self.real_nogt)]
        if not self.latency and not pytest:
            argv.append("--no-latency")
        return argv

    def mode(self) -> dict:
        """Sizes, rounds, images: quick (default) or full."""
        if self.full:
            m = dict(sizes=list(SIZES_FULL), warmup=2, min_rounds=5, max_rounds=100,
                     max_time=3.0, slow_s=None, teacher_tiles=2, teacher_rounds=3,
                     limit=None, stream_frames=30,
                     max_activation_gb=None)
        else:
            # Two warm-up calls: ONNX Runtime's first two runs at a new shape still allocate.
            m = dict(sizes=list(SIZES_QUICK_REPORT), warmup=2, min_rounds=3, max_rounds=20,
                     max_time=1.0, slow_s=2.0, teacher_tiles=1, teacher_rounds=1,
                     limit=QUICK_LIMIT, stream_frames=24,
                     max_activation_gb=QUICK_MAX_ACTIVATION_GB)
        sizes = parse_sizes(self.sizes)
        if sizes:
            m["sizes"] = sizes
        m["stream_size"] = stream_size(m["sizes"], self.full)
        if self.limit is not None:
            m["limit"] = self.limit
        if self.stream_frames is not None:
            m["stream_frames"] = self.stream_frames
        return m


# --------------------------------------------------------------------------- orchestration

def run_bench(opts: BenchOptions) -> tuple[dict, int]:
    """Measure everything, write the report; returns (report dict, exit code 0/1).
    Raises BenchError for usage problems; an --out folder made for a run that fails so is
    removed again while empty."""
    out = Path(opts.out)
    from runtime.output_paths import refuse_output_inside
    for flag, spec in (("--data", opts.data), ("--real-pairs", opts.real_pairs),
                       *(("--real-nogt", p) for p in nogt_paths(opts.real_nogt))):
        try:
            refuse_output_inside(out, spec, flag)
        except ValueError as e:
            raise BenchError(str(e)) from None
    made = folders_to_make(out)
    from runtime.output_paths import make_folder
    from runtime.sinks import SinkError
    try:   # writable now, not found by the report's write after every measurement
        make_folder(out, "--out")
    except SinkError as e:
        remove_if_empty(made)
        raise BenchError(str(e)) from None
    from distill.run_lock import RunLocked, run_lock
    from runtime.atomic import scratch_folder
    try:
        # One bench per --out: two at once timed their backends on each other's cores, and
        # the second to end replaced the first's report (never set aside as
        # report.previous.*), its report.md, report.json and figures mixable with the other's.
        # Its own lock file: a training run or an export in the folder writes none of these.
        with run_lock(out, doing="benchmarking", flag="--out", name=".bench.lock"), \
                scratch_folder(out, "bench"):   # its generated clips: removed after a kill
            return _run_bench(opts, out)
    except RunLocked as e:   # the lock alone raises it
        remove_if_empty(made)
        raise BenchError(str(e)) from None
    except BaseException:
        remove_if_empty(made)   # deepest first, only while empty
        raise


# Why a device's bench (no torch) skips the rows that need the teacher, in each table's words.
NO_TEACHER = ("PyTorch is not installed: the teacher, and so the held-out quality rows and "
              "each model's SSIM to the teacher's output, need it (`sharpen bench` on a machine "
              "with the 'dev' extra measures them); the --model files' latency and their "
              "PSNR/SSIM to ground truth on --real-pairs are measured")


def torch_missing() -> Optional[str]:
    """Why PyTorch cannot be imported here (a runtime-only install), else None."""
    try:
        import torch  # noqa: F401 - the teacher and the students' checkpoints need it
    except ImportError as e:
        from runtime.cli_errors import one_line, raise_if_interrupted
        raise_if_interrupted(e)
        return one_line(e)
    return None


def calib_sources(spec: Optional[str | Sequence[str]]) -> list[str]:
    """--calib's sources (one given as a string is one source)."""
    if not spec:
        return []
    return [str(spec)] if isinstance(spec, (str, os.PathLike)) else [str(p) for p in spec]


MODELS_CALIBRATION = ("none here: the --model files as their export calibrated them (its "
                      "export_report.json's settings.calibration)")


def calibration_text(calib: Optional[str | Sequence[str]], artifact_sets=None) -> str:
    """Which images the INT8 artifacts were calibrated on, for the report's settings.
    `artifact_sets`: the run's, whose FP32 artifacts say where no --calib image was readable
    (`BUILTIN_PARITY_FALLBACK`): then nothing was held out, and the INT8 formats failed."""
    if not calib:
        return BUILTIN_CALIBRATION + " (scikit-image, blurred)"
    sources = " ".join(calib_sources(calib))
    ran = {a.export_parity.get("images") for arts in (artifact_sets or {}).values()
           for a in arts.items.values()} - {None}
    if BUILTIN_PARITY_FALLBACK in ran:
        return (f"--calib {sources} (none of its images is readable: the INT8 formats "
                f"failed; the export's parity gate ran on the {BUILTIN_CALIBRATION})")
    if ran:   # a --calib of one image, or of .npy crops: none held out
        return (f"--calib {sources} (nothing held out: the export's parity gate ran on the "
                f"{min(ran)})")
    return (f"--calib {sources} (a fifth held out for the export's parity gate, as "
            "`sharpen export --calib`)")


def measured_text(students, models) -> str:
    """What the run measures, for the console and the report's settings: with --model and no
    --weights, the given files only (the default students are not measured)."""
    parts = []
    if students:
        parts.append(f"students {', '.join(s.name for s in students)}")
    if models:
        parts.append(f"--model {', '.join(gm.name for gm in models)}")
        if not students:
            parts[-1] += " only (no --weights: the default students are not measured)"
    return "; ".join(parts)


def nogt_paths(spec: Optional[str | Sequence[str]]) -> list[str]:
    """--real-nogt's paths (one path given as a string is one path)."""
    if not spec:
        return []
    return [spec] if isinstance(spec, (str, os.PathLike)) else [str(p) for p in spec]


def clip_frames(frames: Optional[str]) -> Optional[list[int]]:
    """--frames as indices (None: not given); BenchError where it is not a list of them."""
    from distill.frame_pick import parse_frame_pick
    try:
        return parse_frame_pick(1, frames)
    except ValueError as e:
        raise BenchError(str(e)) from None


def _check_real_blur(flag: str, spec: str | Sequence[str], limit: int, need_gt: bool,
                     stride: int = 1, frames: Optional[Sequence[int]] = None) -> list:
    """Fail before the long work, not after it: every path must list images (an image file or a
    folder of them, or for --real-nogt a clip or a folder of clips, whose frames `stride` or
    `frames` pick as `sharpen evaluate` picks them), --real-pairs must have ground truth, and
    at least one image among those the bench will use must be readable. Returns the image
    files the bench will score (inputs and ground truth)."""
    from distill.data.sources import SampleReader, Sample, SourceError, is_video
    from distill.evaluate import ClipFrame, source_items
    from distill.images import IMAGE_EXTS, ImageReadError, is_image, read_image
    specs = nogt_paths(spec)
    clips = dict(clips=not need_gt, stride=stride, frames=frames)
    any_clip = False
    for one in specs:
        if not need_gt and Path(one).is_file() and not (is_image(one) or is_video(one)):
            raise BenchError(f"{flag} {one}: neither an image "
                             f"({', '.join(e.lstrip('.') for e in sorted(IMAGE_EXTS))}), a "
                             "video nor a folder of them")
        used: dict = {}
        try:
            with warnings.catch_warnings():   # frames past a clip's end: said by the run
                warnings.simplefilter("ignore")
                mine = source_items(one, limit=None, info_out=used, **clips)
        except (SourceError, ValueError, OSError) as e:
            raise BenchError(f"{flag} {one}: {e}") from None
        if not mine:
            if used.get("videos"):   # was "no images" for a clip
                raise BenchError(f"{flag} {one}: videos only; the real-blur pairs take images "
                                 "(`sharpen labels --data VIDEO --out CACHE` saves the frames "
                                 "it labels in CACHE/frames, which these take)")
            raise BenchError(f"{flag} {one}: no images")
        any_clip = any_clip or any(isinstance(p, ClipFrame) for _, p, _ in mine)
    shown = ", ".join(specs)
    if not need_gt and not any_clip and (stride != 1 or frames is not None):
        from runtime.warn import warn   # as `sharpen evaluate` says it
        warn(f"{flag} {shown} holds no video clip: {'--stride' if frames is None else '--frames'} "
             "applies to a clip's frames; every image is scored")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        items = source_items(specs[0] if len(specs) == 1 else specs, limit=limit, **clips)
    if need_gt and not all(gt is not None for _, _, gt in items):
        missing = sum(gt is None for _, _, gt in items)
        from distill.data.sources import paired_parent
        if half := paired_parent(shown):
            raise BenchError(f"{flag} {shown} is the blurred half of a paired folder: give "
                             f"{half[0]}, whose {half[1]}/ holds the ground truth")
        raise BenchError(f"{flag} {shown}: {missing} of its {count(len(items), 'image')} "
                         f"{'has' if missing == 1 else 'have'} no "
                         "ground truth (sharp image); real blur without ground truth goes to "
                         "--real-nogt")
    if not need_gt and all(gt is not None for _, _, gt in items):
        # Scored against its sharp images, the rows came out under the no-ground-truth
        # table's headers: PSNR "to the teacher's output" that was not, SSIM as sharpness.
        raise BenchError(f"{flag} {shown}: has ground truth (a sharp image for each blurred "
                         "one); real blur/sharp pairs go to --real-pairs")
    errors = []
    reader = SampleReader()
    try:
        for _, path, _ in items:
            try:
                if isinstance(path, ClipFrame):
                    reader.input_raw(Sample("", Path(path.path), None, path.index))
                else:
                    read_image(path)
                # The files scored (a clip's frames aside): --calib is checked against them.
                return [f for _, p, gt in items for f in (p, gt)
                        if f is not None and not isinstance(f, ClipFrame)]
            except (ImageReadError, OSError) as e:
                errors.append(str(e))
    finally:
        reader.close()
    raise BenchError(f"{flag} {shown}: none of its {count(len(items), 'image')} could be read "
                     f"(first: {errors[0]})")


def _warn_calib_overlap(calib, scored: list) -> Optional[dict]:
    """Say, in one line, how many --calib images the bench also scores: the INT8 rows are then
    measured on the frames they were calibrated on. What `calib_overlap` found, or None."""
    if not calib_sources(calib) or not scored:
        return None
    from .calib_overlap import calib_overlap
    found = calib_overlap(calib_sources(calib), scored)
    if found:
        from runtime.warn import warn
        verb = "is" if found["images"] == 1 else "are"
        warn(f"--calib {' '.join(calib_sources(calib))}: {found['images']} of its "
             f"{count(found['calib_images'], 'image')} {verb} also scored "
             f"({', '.join(found['examples'])}{' ...' if found['images'] > 3 else ''}): the "
             "INT8 rows are measured on frames they were calibrated on and look better than "
             "on unseen ones; give --calib a calibration folder apart from the scored images")
    return found


def _run_bench(opts: BenchOptions, out: Path) -> tuple[dict, int]:
    # Only then are figures there an earlier run's (whose report may be report.previous.*).
    rerun = (out / "report.json").exists() or (out / "report.previous.json").exists()
    say = Console(opts.quiet)
    t_start = time.perf_counter()
    for flag, fps in (("--target-fps", opts.target_fps),
                      ("--cpu-target-fps", opts.cpu_target_fps)):
        if not 0 < fps < math.inf:   # NaN fails this too; `<= 0` let it through
            raise BenchError(f"{flag} must be a finite number > 0, got {fps:g}")
    if opts.max_memory_mib is not None and not 0 < opts.max_memory_mib < math.inf:
        raise BenchError(f"--max-memory-mib must be a finite number > 0, got "
                         f"{opts.max_memory_mib:g}")
    try:   # the API's BenchOptions too, before the exports and the teacher's outputs
        opts.stream_counts()
    except ValueError as e:
        raise BenchError(str(e)) from None
    if opts.tile < 0:
        raise BenchError(f"--tile must be >= 0 (0: whole frames), got {opts.tile}")
    if opts.stream_frames is not None and opts.stream_frames < 0:
        # -1 reached the video writer and came back as a false "OpenCV cannot write" row.
        raise BenchError(f"--stream-frames must be >= 0 (0 skips the streaming row), got "
                         f"{opts.stream_frames}")
    if not 0 <= opts.min_ssim_ratio <= 1.5:
        raise BenchError(f"--min-ssim-ratio must be in [0, 1.5], got {opts.min_ssim_ratio}")
    if opts.min_ssim_gain is not None and not 0 <= opts.min_ssim_gain <= 1.5:
        raise BenchError(f"--min-ssim-gain must be in [0, 1.5], got {opts.min_ssim_gain}")
    try:
        m = opts.mode()
        # Now: an export error is a student's failure, but a bad --formats is every student's.
        buildable_formats(opts.formats)
    except ValueError as e:
        raise BenchError(str(e)) from None
    baseline = _load_baseline(opts)   # now: after the run, a typo would cost the whole run
    cache = Path(opts.cache) if opts.cache else default_cache_root()
    students = bench_students(opts.students, opts.models)
    # Read now: a missing or unreadable file stops the bench before the slow work.
    models = resolve_models(opts.models, [s.name for s in students], opts.threads)
    check_calib(calib_sources(opts.calib))   # as export checks it, before the long work
    if calib_sources(opts.calib) and not students:
        from runtime.warn import warn   # else the user's frames calibrate nothing unsaid
        warn(f"--calib {' '.join(calib_sources(opts.calib))}: nothing is exported here "
             "(--model without --weights): the --model files keep their own export's "
             "calibration; give --calib to `sharpen export`")
    check_float_layers(students, opts.float_layers)
    # Students (their checkpoints) needed torch above; --model files alone do not.
    no_torch = torch_missing()
    # The held-out set is scored against the teacher alone: not read where it cannot run.
    pairs, data_desc = (([], "held-out set not scored") if no_torch
                        else load_pairs(opts.data, m["limit"]))
    real_limits = real_blur_limits(opts.limit, opts.full)
    scored = [f for p in pairs if p.files for f in p.files]
    for flag, spec in (("--real-pairs", opts.real_pairs), ("--real-nogt", opts.real_nogt)):
        if spec:
            scored += _check_real_blur(flag, spec, real_limits[flag],
                                       need_gt=flag == "--real-pairs", stride=opts.stride,
                                       frames=clip_frames(opts.frames))
    overlap = _warn_calib_overlap(opts.calib, scored) if students else None
    # Without torch (a device's runtime-only install) there is no teacher: its rows are
    # skipped, and every report table says so.
    teacher_out = None if no_torch else TeacherOutputs(
        opts.teacher_weights, opts.teacher_config, TEACHER_TILE, TEACHER_OVERLAP, cache, say=say)
    say(f"sharpen bench ({'full' if opts.full else 'quick'} mode): "
        f"{measured_text(students, models)}; {data_desc}; cache {cache}")
    for gm in models:
        if gm.skipped:
            say(f"--model {gm.path}: skipped: {gm.skipped}")
    if rerun and (moved := set_aside_earlier_report(out)):
        say(moved)
        if baseline and Path(baseline["_path"]).resolve() == (out / "report.json").resolve():
            baseline["_path"] = str(out / "report.previous.json")   # where it now is

    progress = _Progress(calib_overlap=overlap)
    try:
        _measure(opts, m, students, models, pairs, data_desc, teacher_out, cache, real_limits,
                 out, progress, say)
        report = _report(opts, m, cache, students, models, teacher_out, real_limits, progress)
        progress.stage = "figures"
        report["figures"] = write_figures(report, progress.quality, out, opts.target_fps, say)
    except KeyboardInterrupt as e:
        # Ctrl-C / SIGTERM: the rows finished are written, marked incomplete, and the
        # interruption goes on to the command line (exit 130 / 143), which says where.
        try:
            e.partial_report = _write_partial(out, opts, m, cache, students, models, data_desc,
                                              teacher_out, real_limits, progress, e, t_start)
        except Exception as w:  # noqa: BLE001 - the interruption, not this, is what to report
            say.warn(f"the partial report could not be written: {type(w).__name__}: {w}")
        raise
    if baseline is not None:
        _compare_with_baseline(report, baseline, opts)
    if rerun:
        _remove_stale_figures(out, {*report["figures"].values(),
                                    *((progress.real or {}).get("figures") or {}).values()})
    report["wall_s"] = round(time.perf_counter() - t_start, 1)
    _write_report(out, report)
    say(f"report: {out / 'report.md'} and {out / 'report.json'} ({report['wall_s']:.0f} s)")
    return report, report["exit_code"]


def _load_baseline(opts: BenchOptions) -> Optional[dict]:
    """The baseline report, read before this run sets aside a report in --out (the baseline
    may be it); BenchError naming the file, or a bad --fail-on."""
    from .compare import CompareError, load_report, parse_fail_on
    try:
        parse_fail_on(opts.fail_on)
        if opts.baseline is None:
            return None
        base = load_report(opts.baseline)
    except (CompareError, ValueError) as e:
        raise BenchError(str(e)) from None
    if base.get("format") != REPORT_FORMAT:
        raise BenchError(f"--baseline {base['_path']}: report format {base.get('format')!r}, "
                         f"this version writes {REPORT_FORMAT!r}: made by another version of "
                         "sharpen bench, not comparable; save a new baseline")
    out = Path(opts.out)
    if (Path(base["_path"]).resolve() == (out / "report.previous.json").resolve()
            and _is_finished(out / "report.json")):
        raise BenchError(f"--baseline {base['_path']}: this run sets {out / 'report.json'} "
                         "aside over it, and the baseline would be lost; copy it out of --out "
                         "and give the copy")
    return base


def _compare_with_baseline(report: dict, baseline: dict, opts: BenchOptions) -> None:
    """report["comparison"], and a failed check per regression (exit 1)."""
    from .compare import NOTHING_IN_COMMON, compare_reports, parse_fail_on, regression_checks
    comp = compare_reports(baseline, report, parse_fail_on(opts.fail_on))
    report["comparison"] = comp
    failed = regression_checks(comp)
    if not comp["rows"]:
        failed.append({"check": "baseline", "model": None, "metric": None, "value": None,
                       "threshold": None, "passed": False,
                       "message": f"--baseline {comp['baseline']}: {NOTHING_IN_COMMON}"})
    if failed:
        report["checks"] = report["checks"] + failed
        report.update(ok=False, exit_code=1)


@dataclass
class _Progress:
    """What a run has finished so far: an interrupted run's report is made of it."""
    stage: str = "export"
    artifact_sets: dict = field(default_factory=dict)
    failed: dict = field(default_factory=dict)    # student -> why its export raised
    peak_mb: dict = field(default_factory=dict)   # peak RSS so far after each stage
    quality: Optional[QualityResult] = None
    real: Optional[dict] = None
    latency: Optional[dict] = None
    calib_overlap: Optional[dict] = None   # --calib images also scored (calib_overlap.py)

    def note_peak(self, stage: str) -> None:
        """The peak memory after `stage`, where this system says it (the report leaves out
        what it cannot say)."""
        mb = peak_rss_mb()
        if mb is not None:
            self.peak_mb[stage] = mb


def _measure(opts: BenchOptions, m: dict, students, models, pairs, data_desc: str, teacher_out,
             cache: Path, real_limits: dict, out: Path, progress: _Progress, say) -> None:
    """Every stage in turn, each result into `progress` as it finishes; a stage interrupted
    part way puts in what it finished, then the KeyboardInterrupt goes on."""
    for st in students:
        partial: dict = {}
        try:
            progress.artifact_sets[st.name] = ensure_artifacts(
                st, cache, opts.formats, opts.calib_count, quiet=opts.quiet, say=say,
                float_layers=opts.float_layers, calib=calib_sources(opts.calib),
                seed=opts.seed, partial=partial)
        except Exception as e:  # noqa: BLE001 - that student fails; the others are measured
            # A broken checkpoint (or an export that raised) of one student stopped the run
            # for every student, without a report. Its rows say why, and the run exits 1.
            fmts = ", ".join(buildable_formats(opts.formats)) or "no format"
            why = f"exporting it to {fmts} failed: {failure_reason(st.name, e)}"
            if not checkpoint_failed(st, e):
                # Its formats fail, each with its check, but those reused from the cache or
                # built before it raised; PyTorch eager needs only the checkpoint, which
                # loads: they are measured.
                reason = failure_reason(st.name, e)
                arts = progress.artifact_sets[st.name] = failed_artifacts(
                    st, cache, opts.formats, reason, opts.float_layers, status="error",
                    kept=partial.get("items"))
                kept = [f for f, a in arts.items.items() if a.status in ("pass", "fail")]
                lost = [f for f, a in arts.items.items() if a.status == "error"
                        and a.reason == reason]
                why = f"exporting it to {', '.join(lost) or 'no format'} failed: {reason}"
                say.warn(f"student {st.name}{path_unless_named(st.path, why)}: {why}; its "
                         "PyTorch eager rows are measured"
                         + (f", as are those of {', '.join(kept)} (cached)" if kept else ""))
                continue
            progress.failed[st.name] = why
            progress.artifact_sets[st.name] = failed_artifacts(st, cache, opts.formats, why,
                                                                opts.float_layers)
            # Not "the others are measured": with every student broken, none was.
            goes_on = any(o is not st and o.name not in progress.failed for o in students)
            say.warn(f"student {st.name}{path_unless_named(st.path, why)}: {why}; not measured"
                     + ("; the run goes on with the other students" if goes_on else ""))

    progress.stage = "quality"
    if teacher_out is None:
        progress.quality = QualityResult(data_desc, [], [], [], {}, {"skipped": NO_TEACHER})
        say(f"quality: skipped: {NO_TEACHER}")
    else:
        _quality(opts, students, models, pairs, data_desc, teacher_out, progress, say)

    if opts.real_pairs or opts.real_nogt:
        progress.stage = "real blur"
        from .realblur import run_real_blur
        out.mkdir(parents=True, exist_ok=True)
        try:
            progress.real = run_real_blur(opts.real_pairs, nogt_paths(opts.real_nogt),
                                          teacher_out, students, out, say,
                                          real_limits["--real-pairs"],
                                          real_limits["--real-nogt"], quiet=opts.quiet,
                                          models=models, failed=progress.failed,
                                          stride=opts.stride,
                                          frames=clip_frames(opts.frames), align=opts.align)
        except ValueError as e:   # e.g. every image unreadable after all
            raise BenchError(f"real blur: {e}") from None
        progress.note_peak("real_blur")
    else:
        progress.real = {}

    if opts.latency:
        progress.stage = "latency"
        tiles = (None if teacher_out is None
                 else TeacherTiles(teacher=teacher_out.teacher, n_tiles=m["teacher_tiles"]))
        got: dict = {}
        try:
            progress.latency = run_latency(opts, students, progress.artifact_sets, tiles, say,
                                           partial=got, models=models,
                                           failed=progress.failed)
        except KeyboardInterrupt:
            progress.latency = got.get("latency")
            raise
        progress.note_peak("latency")
    else:
        progress.latency = {"rows": [], "stream": [], "settings": {"skipped": "--no-latency"}}


def _quality(opts: BenchOptions, students, models, pairs, data_desc: str, teacher_out,
             progress: _Progress, say) -> None:
    """The held-out set's quality stage, each model against ground truth and the teacher."""
    todo = sum(not teacher_out.has(p.blurred) for p in pairs)
    if students:   # --model files alone: nothing is exported, so no stage to report
        progress.note_peak("export")
    say(f"quality: {len(pairs)} held-out images; teacher outputs: {len(pairs) - todo} cached, "
        + (f"computing {todo} now (tiled Restormer, slow on a CPU; cached for the next run)"
           if todo else "none to compute") + f"; cache {teacher_out.folder}")
    got: dict = {}
    try:
        progress.quality = evaluate(
            pairs, teacher_out, students, progress.artifact_sets, opts.min_ssim_ratio,
            min_ssim_gain=opts.min_ssim_gain, threads=opts.threads, data_desc=data_desc,
            progress=not opts.quiet, say=say, partial=got, models=models,
            failed=progress.failed)
    except KeyboardInterrupt:
        progress.quality = got.get("quality")
        raise
    progress.note_peak("quality")


def _report(opts: BenchOptions, m: dict, cache: Path, students, models, teacher_out,
            real_limits: dict, progress: _Progress) -> dict:
    """report.json's content from what `progress` holds (figures and wall time come after)."""
    quality, latency = progress.quality, progress.latency
    checks = (failed_checks(students, progress.failed) + quality.checks
              + latency_checks(latency))
    ok = all(c["passed"] for c in checks)
    rep = {
        "format": REPORT_FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mode": "full" if opts.full else "quick", "ok": ok, "exit_code": 0 if ok else 1,
        "settings": {"target_fps": opts.target_fps, "cpu_target_fps": opts.cpu_target_fps,
                     "min_ssim_ratio": None if opts.min_ssim_gain is not None
                     else opts.min_ssim_ratio, "min_ssim_gain": opts.min_ssim_gain,
                     "limit": m["limit"], "data": opts.data or "embedded",
                     "formats": opts.formats or "all", "cache": str(cache),
                     "threads": opts.threads, "calib_count": opts.calib_count,
                     "calib_seed": opts.seed, "max_memory_mib": opts.max_memory_mib,
                     "streams": opts.stream_counts(),
                     # Without students nothing is exported here: the --model files were
                     # calibrated by their own export, which its export_report.json records.
                     "calibration": (calibration_text(opts.calib, progress.artifact_sets)
                                     if students else MODELS_CALIBRATION),
                     "calib_overlap": progress.calib_overlap,
                     "students": [s.to_dict() for s in students],
                     "models": [gm.to_dict() for gm in models],
                     "measured": measured_text(students, models),
                     "teacher": (teacher_out.describe() if teacher_out
                                 else {"skipped": NO_TEACHER}),
                     "sizes": [size_label(z) for z in m["sizes"]],
                     "stream_frames": m["stream_frames"],
                     "real_pairs": opts.real_pairs,
                     "real_nogt": nogt_paths(opts.real_nogt) or None,
                     "real_nogt_frames": ({"frames": clip_frames(opts.frames)} if opts.frames
                                          else {"stride": opts.stride}),
                     "real_limits": real_limits},
        "machine": machine_info(),
        "peak_rss_mb": progress.peak_mb,
        "commands": reproduce_commands(opts),
        "checks": checks,
        "quality": quality.to_dict(),
        "real_blur": progress.real or {},
        "latency": latency,
        "artifacts": {k: v.to_dict() for k, v in progress.artifact_sets.items()},
        # The students whose export raised: their rows are status "failed" with the reason.
        "failed": [{"student": st.name, "path": str(st.path), "reason": progress.failed[st.name]}
                   for st in students if st.name in progress.failed],
        "skipped": skipped_list(quality, latency),
        "figures": {},
    }
    # The tables' "meets target" on the budget the pick judges each backend on.
    judge_latency(rep)
    rep["ship"] = ship_section(rep)
    return rep


def _write_partial(out: Path, opts: BenchOptions, m: dict, cache: Path, students, models,
                   data_desc: str, teacher_out, real_limits: dict, progress: _Progress,
                   e: KeyboardInterrupt, t_start: float) -> Path:
    """An interrupted run's report: the rows it finished and the checks on them, and under
    "incomplete" the signal, the stage it stopped in and every row it did not reach; no
    figures. Its exit_code is the command's (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP)."""
    from runtime.cli_errors import interrupt_exit_code, stop_signal

    missing: dict[str, list[str]] = {}
    buildable = buildable_formats(opts.formats)   # for the students not exported yet
    # A student whose export raised is not "not measured": its check says why.
    measured = [st for st in students if st.name not in progress.failed]
    if progress.quality is None:
        missing["quality"] = planned_quality_keys(measured, progress.artifact_sets, buildable,
                                                  models)
        progress.quality = QualityResult(data_desc, [], [], [], {}, {})
    else:
        missing["quality"] = [r["key"] for r in progress.quality.rows
                              if r["status"] == "missing"]
    if progress.real is None:
        missing["real_blur"] = [flag for flag, spec in (("--real-pairs", opts.real_pairs),
                                                        ("--real-nogt", opts.real_nogt))
                                if spec]
    if opts.latency:
        progress.latency = progress.latency or {"rows": [], "stream": [], "settings": {}}
        missing["latency"] = missing_rows(planned_rows(measured, m, progress.artifact_sets,
                                                       buildable, models,
                                                       teacher=teacher_out is not None),
                                          progress.latency["rows"] + progress.latency["stream"])
        if opts.stream_counts():   # minutes of N runs at once per row: a likely place to stop
            from .streams import not_measured

            missing["streams"] = not_measured(progress.latency["rows"])
    elif progress.latency is None:
        progress.latency = {"rows": [], "stream": [], "settings": {"skipped": "--no-latency"}}
    report = _report(opts, m, cache, students, models, teacher_out, real_limits, progress)
    # Picked from the rows finished, a model would be "the one to ship" for want of the others.
    report.update(ok=False, exit_code=interrupt_exit_code(e), ship=None,
                  wall_s=round(time.perf_counter() - t_start, 1))
    report["incomplete"] = {
        "signal": signal.Signals(stop_signal(e) or signal.SIGINT).name,
        "stage": progress.stage, "missing": {k: v for k, v in missing.items() if v},
        "figures": "not written"}
    _write_report(out, report)
    return out / "report.md"


def _write_report(out: Path, report: dict) -> None:
    """report.md, then report.json: a run killed between the two leaves no report.json, and
    `set_aside_earlier_report` does not take the report.md beside it for a finished one."""
    write_text(out / "report.md", render_markdown(report))
    atomic_write_json(out / "report.json", finite(report))


def _is_finished(path: Path) -> bool:
    """Whether `path` is the report.json of a run that finished: readable, and not an
    interrupted run's (those have "incomplete")."""
    try:
        rep = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(rep, dict) and "incomplete" not in rep


def set_aside_earlier_report(out: Path) -> Optional[str]:
    """Clear report.json / report.md for this run; what was done, for the console (None:
    nothing there). An interrupted or failed run left the earlier report under the final
    name, read as this run's result. A finished one becomes report.previous.*; an interrupted
    run's partial report (or a report.md without its report.json) is removed, so that
    report.previous.* is only ever a finished run's whole report."""
    cur = {ext: out / f"report.{ext}" for ext in ("json", "md")}
    prev = {ext: out / f"report.previous.{ext}" for ext in ("json", "md")}
    if _is_finished(cur["json"]):
        for ext, path in cur.items():
            if path.exists():
                os.replace(path, prev[ext])
            else:   # an older run's, not the pair of the report just kept
                prev[ext].unlink(missing_ok=True)
        return f"the earlier report in {out} is now report.previous.md / .json"
    partial = [p for p in cur.values() if p.exists()]
    for path in partial:
        path.unlink()
    if not _is_finished(prev["json"]):   # one an older version of this code set aside
        for path in prev.values():
            path.unlink(missing_ok=True)
    if not partial:
        return None
    kept = ("; report.previous.md / .json is still the whole one before it"
            if prev["json"].exists() else "")
    return f"the interrupted run's partial report in {out} is removed{kept}"


def _remove_stale_figures(out: Path, written: set) -> None:
    """A re-run into the same --out must not leave an earlier run's figures (other students,
    other sets) beside a report that no longer links them."""
    from .figures import FIGURES
    from .realblur import FIGURES as REAL_FIGURES
    for name in {*FIGURES.values(), *REAL_FIGURES.values()} - set(written):
        try:
            (out / name).unlink()
        except FileNotFoundError:
            pass


def reproduce_commands(opts: BenchOptions) -> list[str]:
    """The commands, from the folder the run started in (its relative paths are from there);
    pytest is given the suite's own folder, which need not be below it."""
    from .machine import measure_env

    suite = shlex.quote(str(Path(__file__).resolve().parent))
    # OMP_NUM_THREADS=1 ran PyTorch on one thread: a rerun without it times other numbers.
    env = "".join(f"{k}={shlex.quote(v)} " for k, v in measure_env().items())
    cmd = env + "sharpen bench " + " ".join(shlex.quote(a) for a in opts.to_argv())
    # The comparison runs the same tests with the same options (a bare `--benchmark-compare`
    # timed the default students at the default size, rebuilding them in the default cache),
    # against the run the line before saved (a bare --benchmark-json saves nothing to compare).
    pyt = f"{env}pytest {suite} " + " ".join(shlex.quote(a) for a in opts.to_argv(pytest=True))
    if importlib.util.find_spec("pytest_benchmark") is None:   # a device's runtime-only install
        return [f"cd {shlex.quote(os.getcwd())}", cmd]
    # The per-frame rows' tests: the teacher's and the stream's, timed once, are too noisy
    # for a 10% bar, and the students' test selects nothing in a --model run (the gate then
    # passed having compared nothing).
    given = bool(split_list(opts.models))
    tests = [t for t, on in (("test_student_latency", opts.students is not None or not given),
                             ("test_given_model_latency", given)) if on]
    return [f"cd {shlex.quote(os.getcwd())}", cmd,
            f"{pyt} --benchmark-autosave --benchmark-json bench.json",
            f"{pyt} --benchmark-compare  # a later run against the last one saved "
            "(.benchmarks/ here); --benchmark-compare-fail=median:10% makes a slower median "
            f"fail it, with -k {shlex.quote(' or '.join(tests))}: the per-frame rows alone"]


def latency_checks(latency: dict) -> list[dict]:
    """A failed check per backend and size that raised while it was timed: such a row was
    in neither the checks nor the skipped list, and the run exited 0, so CI could not tell a
    backend that crashes from one that runs."""
    out = []
    for r in latency.get("rows", []) + latency.get("stream", []):
        if r["status"] == "error":
            out.append({"check": "latency", "model": r["model"], "metric": None, "value": None,
                        "threshold": None, "passed": False,
                        "message": f"{r['model']} {r['backend_label']} at {r['size']}: could "
                                   f"not be timed: {r['reason']}"})
    return out


def skipped_list(quality, latency: dict) -> list[dict]:
    out, seen = [], set()
    for r in quality.rows:
        if r["status"] == "skipped":
            key = ("quality", r["key"])
            if key not in seen:
                seen.add(key)
                out.append({"what": f"quality {r['key']}", "reason": r["reason"],
                            "format": r.get("format")})
    for r in latency.get("rows", []) + latency.get("stream", []):
        if r["status"] == "skipped":
            key = ("latency", r["model"], r["backend"])
            if key not in seen:
                seen.add(key)
                out.append({"what": f"latency {r['model']} {r['backend_label']}",
                            "reason": r["reason"], "format": r.get("format")})
    return out


def finite(obj):
    """JSON has no inf/nan: they become strings."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())
