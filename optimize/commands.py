"""Subcommands of the optimize package: `sharpen export`.

Heavy imports (torch, onnx, tensorflow, tensorrt) happen inside the handler.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from runtime.cli_errors import cli_error, missing_dependency, one_line, raise_if_interrupted
from runtime.console import shell_join
from runtime.formats import help_lines
from runtime.host import threads_help

FORMAT_HELP = """\
formats (comma-separated; default: every format this machine can build):
{formats}

Every artifact is run on held-out real images at full resolution by the runtime's backend and
compared with the FP32 PyTorch student; one under its threshold fails the export (exit 1).
Exit codes: 0 every artifact asked for was built and passed, 1 a build or parity failure, or a
format named in --formats that this machine cannot build (e.g. engine without TensorRT: the
ONNX model, the engine's sidecar and the trtexec line for the device are still written),
2 a usage error. With 'all' or no --formats, what cannot be built here is skipped with a
warning and listed as SKIPPED.
"""


# `--calib`, as `sharpen export` and `sharpen bench` (benchmarks/options.py) both take it: one
# meaning, checked by export() in both (optimize.calibration's messages, named --calib).
# One definition, `sharpen bench` takes it too (benchmarks/options.py), for its exports.
SEED_FLAGS = ("--seed",)
SEED_OPTION = dict(
    type=int, default=0,
    help="random seed of the calibration crops (default 0): the same seed, images and options "
         "build byte-identical INT8 artifacts; another seed takes other crops, so other "
         "scales (export_report.json records it)")
CALIB_FLAGS = ("--calib",)
CALIB_OPTION = dict(
    nargs="+", action="extend", default=None, metavar="SRC",
    help="real calibration images: folder(s) of images and clips, glob(s), image or video "
         "files or a .npy/.npz array (N x 3 x H x W or N x H x W x 3, float in [0,1]); use "
         "frames like the device's input (its camera's footage, blurred as it sees it): one "
         "crop each from --calib-count of them (a clip's frames), spread over the set. "
         "Default: scikit-image sample photos, blurred")


def add_commands(sub) -> None:
    p = sub.add_parser(
        "export", help="export a student to ONNX / INT8 / TFLite / TensorRT with a parity gate",
        description="Turn a student checkpoint into deployment formats, each verified against "
                    "the FP32 PyTorch model, and print a table of size, 1080p latency and "
                    "PSNR/SSIM.",
        epilog=FORMAT_HELP.format(formats=help_lines()), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, metavar="CKPT",
                   help="student checkpoint written by `sharpen distill` (.pt), or a shipped "
                   "student by name (fast, edge, seed)")
    p.add_argument("--formats", "--format", dest="formats", default=None, metavar="LIST",
                   help="comma-separated formats (see below) or 'all'; default: all that this "
                        "machine can build")
    p.add_argument("--out", "--output", required=True, metavar="DIR",
                   help="output folder for the artifacts and export_report.json")
    p.add_argument("--name", default=None,
                   help="file name stem of the artifacts (default: the checkpoint's stem)")

    g = p.add_argument_group("calibration (INT8 formats)")
    g.add_argument(*CALIB_FLAGS, **CALIB_OPTION)
    g.add_argument("--calib-count", type=int, default=64, metavar="N",
                   help="number of calibration crops, each at a random place: one from each "
                        "of N images spread over --calib, or cycling over them where it has "
                        "fewer (default 64)")
    g.add_argument("--calib-size", type=int, default=256, metavar="PX",
                   help="side of the square calibration crops (default 256)")
    g.add_argument("--calib-blur", type=float, default=0.0, metavar="SIGMA",
                   help="Gaussian blur applied to --calib images first, for sharp sources "
                        "(default 0: images are used as they are)")
    g.add_argument(*SEED_FLAGS, **SEED_OPTION)
    g.add_argument("--calib-method", choices=("percentile", "entropy", "minmax"), default=None,
                   help="onnx-int8 calibration (default percentile, the best SSIM measured)")
    g.add_argument("--percentile", type=float, default=None, metavar="P",
                   help="percentile for --calib-method percentile (default 99.999)")
    g.add_argument("--no-reduce-range", dest="reduce_range", action="store_false",
                   help="onnx-int8: full 8-bit weights instead of 7-bit; about half the error, "
                        "but only for CPUs with VNNI (on AVX2-only CPUs the int8 products "
                        "saturate: wrong pixels)")
    g.add_argument("--modelopt-method", choices=("entropy", "max"), default=None,
                   help="onnx-qdq-trt calibration (default entropy)")
    g.add_argument("--float-layers", default=None, metavar="LIST",
                   help="INT8 formats: keep these layers of the student in float (its module "
                        "names, e.g. dec,head,output; an unknown name lists them), or "
                        "'auto': the fewest that make a simulated INT8 model pass "
                        "the parity gate (--min-ssim, and --max-ssim-drop with --parity-gt). "
                        "Default none (full integer)")

    g = p.add_argument_group("parity gate")
    g.add_argument("--parity-images", nargs="+", action="extend", default=None,
                   metavar="SRC",
                   help="held-out images or clips (folders, globs, files; 8 frames spread "
                        "over a clip) run at full resolution; default: the last fifth of the "
                        "--calib images or frames held out, else scikit-image sample photos")
    g.add_argument("--parity-gt", default=None, metavar="DIR",
                   help="sharp ground truth for the parity images (matched by file name): "
                        "adds SSIM to ground truth")
    g.add_argument("--parity-teacher", default=None, metavar="DIR",
                   help="teacher outputs for the parity images (matched by file name): adds "
                        "SSIM to the teacher")
    g.add_argument("--max-abs-fp32", type=float, default=1e-4, metavar="E",
                   help="FP32 artifacts: maximum abs error to PyTorch (default 1e-4)")
    g.add_argument("--min-ssim", type=float, default=0.98, metavar="S",
                   help="INT8/FP16 artifacts: minimum SSIM to the FP32 output (default 0.98)")
    g.add_argument("--min-psnr", type=float, default=None, metavar="DB",
                   help="INT8/FP16 artifacts: optional minimum PSNR to the FP32 output")
    g.add_argument("--max-ssim-drop", type=float, default=None, metavar="D",
                   help="INT8/FP16 artifacts, with --parity-gt: the most SSIM to ground truth "
                        "an artifact may lose against the FP32 model on its worst image "
                        "(e.g. 0.002; always reported with --parity-gt)")

    g = p.add_argument_group("TensorRT engines")
    g.add_argument("--opt-shape", default=None, metavar="HxW",
                   help="optimisation profile: shape TensorRT tunes for, and the .tflite "
                        "input's size until an app resizes it (default 1080x1920, within "
                        "--min-shape and --max-shape; rounded up to the model's size multiple)")
    g.add_argument("--min-shape", default="64x64", metavar="HxW",
                   help="optimisation profile: smallest input (default 64x64)")
    g.add_argument("--max-shape", default="2160x3840", metavar="HxW",
                   help="optimisation profile: largest input (default 2160x3840)")
    g.add_argument("--workspace", type=float, default=4.0, metavar="GB",
                   help="TensorRT workspace memory pool limit in GB (default 4)")

    g = p.add_argument_group("other")
    g.add_argument("--no-latency", action="store_true",
                   help="skip the 1080p latency measurement")
    g.add_argument("--latency-runs", type=int, default=5, metavar="N",
                   help="timed 1080p runs per artifact, median reported (default 5)")
    g.add_argument("--threads", type=int, default=0, metavar="N",
                   help=threads_help("ONNX Runtime / LiteRT / PyTorch"))
    g.add_argument("--opset", type=int, default=17,
                   help="ONNX opset, 17 to 20 (torch's TorchScript exporter; default 17)")
    g.add_argument("--no-simplify", action="store_true",
                   help="do not run onnxslim on the FP32 ONNX model")
    g.add_argument("--rebuild", action="store_true",
                   help="rebuild every artifact; by default one already in --out that is up "
                        "to date (same weights, the options it is built with, calibration "
                        "and parity data, exporter code, libraries and CPU; file unchanged "
                        "since it passed its gate) is kept, and each one rebuilt is said with "
                        "why")
    g.add_argument("--quiet", action="store_true",
                   help="no progress: the final table, warnings and errors stay")
    p.set_defaults(func=run_export)


def options_from_args(args: argparse.Namespace):
    """ExportOptions from parsed `sharpen export` arguments."""
    from .export import ExportOptions, Thresholds

    return ExportOptions(
        name=args.name, calib=args.calib, calib_count=args.calib_count,
        calib_size=args.calib_size, calib_blur=args.calib_blur, seed=args.seed,
        calib_method=args.calib_method,
        percentile=args.percentile, reduce_range=args.reduce_range,
        float_layers=args.float_layers,
        modelopt_method=args.modelopt_method,
        parity_images=args.parity_images, parity_gt=args.parity_gt,
        parity_teacher=args.parity_teacher,
        thresholds=Thresholds(args.max_abs_fp32, args.min_ssim, args.min_psnr,
                              args.max_ssim_drop),
        opt_shape=args.opt_shape, min_shape=args.min_shape, max_shape=args.max_shape,
        workspace_gb=args.workspace, latency=not args.no_latency,
        latency_runs=args.latency_runs, threads=args.threads, opset=args.opset,
        simplify=not args.no_simplify, quiet=args.quiet, rebuild=args.rebuild)


# The options that only shape INT8 artifacts' calibration (--calib, --calib-blur and --seed
# choose the parity gate's held-out images too; --float-layers is warned about by export).
INT8_ONLY_FLAGS = ("--calib-count", "--calib-size", "--calib-method", "--percentile",
                   "--no-reduce-range", "--modelopt-method")


def idle_calibration_flags(args: argparse.Namespace) -> str | None:
    """"--calib-method has no effect: ..." where --formats names no INT8 format and the
    command line gives options that only calibrate one, else None."""
    from runtime.formats import FORMATS

    from .export_options import parse_formats
    formats = parse_formats(args.formats)
    if formats is None or any(FORMATS[f].needs_calibration for f in formats):
        return None

    def flag(word: str) -> str | None:   # as argparse reads it: --calib-meth is --calib-method
        # (--calib, an option of its own, starts three of them: no one flag)
        name = word.split("=", 1)[0]
        named = [f for f in INT8_ONLY_FLAGS if f == name or name.startswith("--")
                 and len(name) > 2 and f.startswith(name)]
        return named[0] if len(named) == 1 else None

    given = list(dict.fromkeys(f for w in getattr(args, "argv", None) or () if (f := flag(w))))
    if not given:
        return None
    said = ", ".join(given[:-1]) + " and " * (len(given) > 1) + given[-1]
    int8 = ", ".join(n for n, f in FORMATS.items() if f.needs_calibration)
    return (f"{said} ha{'ve' if len(given) > 1 else 's'} no effect: --formats "
            f"{','.join(formats)} builds no INT8 format ({int8})")


def run_export(args) -> int:
    def fail(msg: str) -> int:
        return cli_error("export", msg)

    try:
        from distill.checkpoint import CheckpointError
        from distill.teacher import resolve_weights

        from .calibration import CalibrationError
        from .export import ExportError, check_options, export, print_table
    except ImportError as e:
        raise_if_interrupted(e)
        return fail(missing_dependency("export", e))
    try:
        weights = resolve_weights(args.weights, allow_teacher=False)
    except CheckpointError as e:
        return fail(f"--weights {e}")
    try:
        options = options_from_args(args)
        # Here, not in export(): the API keeps impossible gates for forcing a failure.
        options.thresholds.check()
        check_options(options, flags=True)   # export() names them as its keywords
        if idle := idle_calibration_flags(args):
            print(f"warning: {idle}", file=sys.stderr)
        from runtime.host import threads_warning
        # As `sharpen run` and `sharpen bench`: the parity checks and the 1080p latencies run
        # on this count, and extra threads share cores (slower, and the times mislead).
        if too_many := threads_warning(args.threads, "--threads"):
            print(f"warning: {too_many}", file=sys.stderr)
        # PyTorch (the parity reference, the ONNX trace) on the runtimes' count, as every
        # other command: it ran a thread per core under a CPU limit, and export_report.json's
        # environment recorded that count while the settings' threads said the limit's.
        from distill.teacher import set_torch_threads
        from runtime.host import limit_note
        set_torch_threads(args.threads)
        if not args.threads and (note := limit_note("ONNX Runtime, LiteRT and PyTorch")):
            print(f"note: {note}", file=sys.stderr)
        from distill.dist import command_line
        command = {"line": command_line(getattr(args, "argv", None)), "cwd": os.getcwd()}
        report = export(weights, args.formats, args.out, options, flags=True, command=command)
    except (ExportError, CheckpointError, CalibrationError) as e:
        return fail(one_line(e))
    print_table(report)
    not_built = report.not_built
    if args.quiet:   # (without --quiet the build step said it already)
        for r in report.results:
            if r.extra.get("trtexec") and r not in not_built:   # (those: below)
                print(f"{r.format}: build it on the device, in {report.out_dir} copied there: "
                      f"{r.extra['trtexec']}")
    print(f"report: {report.out_dir}/export_report.json")
    if not args.quiet:   # (--quiet: the table, the report and errors only)
        for line in next_steps(report, threads=args.threads):
            print(line)
    rc = 0
    if report.failed:
        names = ", ".join(f"{r.format} ({r.reason})" for r in report.failed)
        print(f"sharpen export: FAILED: {names}", file=sys.stderr)
        for line in fail_advice(report, args.float_layers):
            print(f"  {line}", file=sys.stderr)
        rc = 1
    if not_built:
        # Asked for by name and not there: a script that goes on to ship the engine must stop.
        names = ", ".join(f"{r.format} ({_short(r.reason)})" for r in not_built)
        print(f"sharpen export: NOT BUILT on this machine: {names}", file=sys.stderr)
        for line in not_built_advice(report, not_built):
            print(f"  {line}", file=sys.stderr)
        rc = 1
    return rc


# What the user fills in: `sharpen run` takes a camera index, a video, a stream or images.
RUN_SOURCE = "VIDEO_OR_CAMERA"


def next_steps(report, gpu_here: bool | None = None, threads: int = 0) -> list[str]:
    """The commands that use what this export built, as `labels` and `distill` end with
    theirs: `sharpen run` on the artifact best suited to this machine (of those that passed
    their parity gate, the fastest at 1080p here, else the first built), and the `sharpen
    bench --model` that measures it as deployed. None when nothing passed (the FAILED / NOT
    BUILT lines say what to do instead). The ModelOpt QDQ model, meant for TensorRT, is offered
    only where ONNX Runtime runs it on TensorRT or CUDA (`gpu_here`; None: asked of this
    machine): timed on the CPU it could come out fastest, and a CPU user was told to run it.
    `threads`: the export's --threads, which both commands carry (0: not given, left out), as
    distill's compare line carries its run's options: one who exported with --threads 1 was
    told to run on every core."""

    from runtime.formats import FORMATS
    built = [r for r in report.results if r.status == "pass" and r.file
             and not r.extra.get("earlier_export") and Path(r.file).is_file()]
    if not built:
        return []
    for_trt = [r for r in built if r.format in FORMATS and _tensorrt_model(FORMATS[r.format])]
    if for_trt and (gpu_here if gpu_here is not None else _ort_gpu_here()):
        for_trt = []
    suited = [r for r in built if r not in for_trt]
    if not suited:
        names = ", ".join(Path(r.file).name for r in for_trt)
        return [f"{names}: for TensorRT, and this machine's ONNX Runtime has neither its "
                "TensorRT nor its CUDA provider: build the engine from it on the GPU or Jetson "
                "it will run on (--formats engine-int8 there), or export onnx, onnx-int8 or "
                "tflite-int8 to run here"]
    timed = [r for r in suited if r.latency_ms_1080p]
    pick = min(timed, key=lambda r: r.latency_ms_1080p) if timed else suited[0]
    why = ""
    if len(suited) > 1:
        why = (f", the fastest here: {pick.latency_ms_1080p:.0f} ms at 1080p" if timed
               else ", the first built")
        why = f" ({Path(pick.file).name}{why})"
    same = ["--threads", str(threads)] if threads else []
    run = ["sharpen", "run", "--model", pick.file, "--source", RUN_SOURCE, *same]
    lines = [f"run it{why}: {shell_join(run)}"]
    bench = ["sharpen", "bench", "--out", "bench/", "--model", pick.file, *same]
    lines.append(f"measure it as deployed (quality and latency): {shell_join(bench)}")
    return lines


def _tensorrt_model(fmt) -> bool:
    """A model meant for TensorRT that ONNX Runtime runs (the QDQ model); an engine, built on
    this machine's TensorRT, runs here as it is."""
    return fmt.engine == "onnxruntime" and fmt.target.startswith("TensorRT")


def _ort_gpu_here() -> bool:
    """Whether `sharpen run`'s ONNX Runtime (providers auto) has TensorRT or CUDA here."""
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    gpu = {"TensorrtExecutionProvider", "CUDAExecutionProvider"}
    return bool(gpu & set(ort.get_available_providers()))


def _short(reason: str | None) -> str:
    """A skip reason without its parenthesised install hint (the advice lines give it)."""
    return (reason or "").split(" (")[0]


def not_built_advice(report, not_built) -> list[str]:
    """How to get each format that was named but cannot be built here."""
    from runtime.backends.provenance import TRTEXEC_ON_JETSON

    from .tensorrt_engine import supported_for

    lines = []
    opset = (report.settings or {}).get("opset")   # TensorRT 8.x parses opsets up to 17
    for r in not_built:
        if r.extra.get("trtexec"):
            where = supported_for(r.precision, opset)
            lines += [f"{r.format}: {r.reason}. An engine is built on the GPU it runs on: on "
                      f"the Jetson or GPU machine, with {where}, run this "
                      f"`sharpen export` command there, or copy {report.out_dir} there and, in "
                      "that folder, run", f"  {r.extra['trtexec']}",
                      f"(keep {r.extra['trtexec_sidecar']}, written here, beside the engine; "
                      f"{TRTEXEC_ON_JETSON})"]
        else:
            lines.append(f"{r.format}: {r.reason}; install that, or leave {r.format} out of "
                         "--formats ('all' skips what this machine cannot build)")
    return lines


def fail_advice(report, float_layers) -> list[str]:
    """What a failed export leaves and what to try next (the FAILED line says only why)."""
    from runtime.formats import FORMATS

    from .export_reuse import asks_float_layers

    failed = report.failed
    ok = [Path(r.file).name for r in report.results if r.status == "pass" and r.file
          and not r.extra.get("earlier_export")]
    lines = []
    kept = [Path(r.file).name for r in failed if r.file and Path(r.file).exists()]
    if kept:
        lines.append(f"{', '.join(kept)} stay{'s' if len(kept) == 1 else ''} in "
                     f"{report.out_dir}, marked so that `sharpen run` refuses "
                     f"{'it' if len(kept) == 1 else 'them'} (--force runs anyway): do not ship "
                     + ("it" if len(kept) == 1 else "them")
                     + (f"; {', '.join(ok)} passed" if ok else ""))
    int8 = [r.format for r in failed if r.status == "fail"
            and r.format in FORMATS and FORMATS[r.format].needs_calibration]
    if int8:
        tips = []
        if not asks_float_layers(float_layers):   # 'none' too: the default, full integer
            tips.append("--float-layers auto (keeps the fewest last layers in float that pass)")
        tips.append("--calib with frames like the device's input (blurred, as it sees them)")
        tips.append("a float format (onnx, tflite-fp16)")
        lines.append(f"{', '.join(int8)}: INT8 loses too much here; try " + ", or ".join(tips))
    if any(r.extra.get("traceback") for r in failed):
        lines.append(f"the build error's traceback is in {report.out_dir}/export_report.json "
                     "(results[].extra.traceback)")
    return lines
