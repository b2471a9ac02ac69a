"""`sharpen bench`: quality and latency report (benchmarks.report).

Heavy imports happen inside the handler. Registered by `add_commands(sub)`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runtime.cli_errors import cli_error, missing_dependency, one_line, raise_if_interrupted
from runtime.console import count, print_table, report_fatal_errors

from .options import (ALIGN_HELP, DEFAULT_CPU_TARGET_FPS, DEFAULT_MIN_SSIM_RATIO, GATE_GAIN,
                      GATE_RATIO, REAL_NOGT_HELP, REAL_PAIRS_HELP, SCHEMA, add_to_argparse)

_DEFAULTS = {o.dest: o.default for o in SCHEMA}

BENCH_EPILOG = """\
Quick mode (default, minutes on a CPU): sizes 1920x1080 and 640x360, few rounds, 4 held-out
images. --full: 1920x1080, 1280x720 and 640x360, more rounds, every held-out image. The
streaming row runs at the smallest of the sizes (the largest with --full).
Exported artifacts and teacher outputs are cached (~/.cache/sharpen/bench) and reused while the
weights, the exporter code and the versions of the libraries that made them (torch, OpenCV,
ONNX Runtime, TensorFlow / LiteRT, TensorRT) are unchanged. The same measurements run as a
pytest-benchmark suite:
  pytest benchmarks/ [--full] --benchmark-json bench.json   (same option names)
Without PyTorch (a device's runtime-only install), --model files alone are timed and, with
--real-pairs, scored against ground truth; the rows that need the teacher are skipped.
Exit codes: 0 every check passed, 1 a quality or parity check failed, a student's export
(or checkpoint) failed (the report is still written, that student's rows say why, the others
are measured) or a row regressed against --baseline past --fail-on, 2 a usage error,
130 / 143 interrupted by Ctrl-C / SIGTERM (the report then holds the rows finished so far,
marked incomplete, with those not measured listed).
"""


def add_gate_options(p: argparse.ArgumentParser, gain_default: float | None = None) -> None:
    """The quality gate, one of two options: --min-ssim-ratio (by default R=0.95) or
    --min-ssim-gain; with `gain_default` the gain gate is the default instead (`sharpen demo`).
    Read the choice back with resolve_gate."""
    default = "" if gain_default is None else f" (default: --min-ssim-gain {gain_default:g})"
    gate = p.add_mutually_exclusive_group()
    (ratio, r, ratio_help), (gain, g, gain_help) = GATE_RATIO, GATE_GAIN
    gate.add_argument(ratio, type=float, default=argparse.SUPPRESS, metavar=r,
                      help=ratio_help + (default or f" (default {DEFAULT_MIN_SSIM_RATIO:g})"))
    gate.add_argument(gain, type=float, default=argparse.SUPPRESS, metavar=g,
                      help=gain_help + default)
    p.set_defaults(gate_gain_default=gain_default)


def resolve_gate(args: argparse.Namespace) -> tuple[float, float | None]:
    """(min_ssim_ratio, min_ssim_gain) for BenchOptions: the option given, else the default.
    A gain, when there is one, replaces the ratio."""
    if hasattr(args, "min_ssim_ratio"):
        return args.min_ssim_ratio, None
    return DEFAULT_MIN_SSIM_RATIO, getattr(args, "min_ssim_gain", args.gate_gain_default)


def gate_argv(args: argparse.Namespace) -> list[str]:
    """The resolved gate as `sharpen bench` arguments."""
    ratio, gain = resolve_gate(args)
    return (["--min-ssim-gain", f"{gain:g}"] if gain is not None
            else ["--min-ssim-ratio", f"{ratio:g}"])


def add_commands(sub) -> None:
    p = sub.add_parser(
        "bench", help="benchmark quality (SSIM to ground truth / the teacher's output) and "
                      "real-time latency",
        description="Measure every student on every backend this machine can run (PyTorch, "
                    "ONNX Runtime FP32/INT8, TFLite INT8/FP16, ModelOpt QDQ, TensorRT), the "
                    "tiled teacher and the streaming pipeline, check quality on a held-out "
                    "set, and write DIR/report.md, DIR/report.json and PNG figures.",
        epilog=BENCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", "--output", required=True, metavar="DIR", help="report folder")
    add_to_argparse(p)   # the options `pytest benchmarks/` shares (benchmarks/options.py)
    p.add_argument("--real-pairs", default=None, metavar="SPEC", help=REAL_PAIRS_HELP)
    from distill.alignment import ALIGNS
    p.add_argument("--align", choices=ALIGNS, default="none",
                   help=f"{ALIGN_HELP} (default: none)")
    p.add_argument("--real-nogt", default=None, nargs="+", action="extend", metavar="PATH",
                   help=REAL_NOGT_HELP.format(clips="; a clip gives its frames, picked by "
                                              "--stride or --frames")
                   + ", and side-by-side crops in the report")
    from distill.frame_pick import add_frame_pick_arguments
    add_frame_pick_arguments(p)
    add_gate_options(p)
    p.add_argument("--max-memory-mib", type=float, default=None, metavar="MIB",
                   help="What to ship: leave out a model whose peak resident memory at the "
                        "ship size is over MIB: that of `sharpen run` on a generated clip of "
                        "that size (its video decoding and encoding included: about 440 MiB "
                        "of a tiled 4K clip's peak), else the model's alone, each measured per row "
                        "in a child process, in --tile's tiles when given; e.g. a camera "
                        "box's memory cap (default: no memory budget)")
    p.add_argument("--streams", default=None, metavar="N,...",
                   help="also run N `sharpen run` processes at once per exported file's row "
                        "and size, as N cameras on this box (a sweep: 1,2,4), on generated "
                        "clips of the row's size with --threads and --tile each: fps and infer "
                        "p90 per stream, all fps, total peak memory, and whether each keeps "
                        "its target fps (--cpu-target-fps: a camera's rate); What to ship "
                        "gives its pick's (default: none)")
    from .compare import BASELINE_HELP, DEFAULT_FAIL_ON, FAIL_ON_HELP
    p.add_argument("--baseline", default=None, metavar="PATH", help=BASELINE_HELP)
    p.add_argument("--fail-on", default=DEFAULT_FAIL_ON, metavar="METRIC:TOL,...",
                   help=FAIL_ON_HELP.replace("%", "%%"))
    p.add_argument("--no-latency", action="store_true",
                   help="quality only (no timing)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run_bench_cmd)

    c = sub.add_parser(
        "bench-compare", help="compare a bench report with a baseline (a CI regression gate)",
        description="Compare the report of `sharpen bench` NEW with BASELINE, each a report.json "
                    "or the --out folder holding one: per model, format and size the quality "
                    "deltas (held-out PSNR and SSIM, SSIM to the teacher, real-blur pairs, "
                    "--real-nogt frames' PSNR to the teacher) and "
                    "the latency deltas (median, p90), what differs between the two runs, and "
                    "the rows in one report only. `sharpen bench --baseline` does the same "
                    "after its run, into its report.",
        epilog="Exit codes: 0 no regression past --fail-on, 1 a regression (the table lists it "
               "first), 2 a report that cannot be compared (unreadable, partial, another "
               "report format, a BASELINE that regressed against its own, or no row in "
               "both).")
    c.add_argument("baseline", metavar="BASELINE", help="the accepted run's report")
    c.add_argument("new", metavar="NEW", help="the run to judge")
    c.add_argument("--fail-on", default=DEFAULT_FAIL_ON, metavar="METRIC:TOL,...",
                   help=FAIL_ON_HELP.replace("%", "%%"))
    c.set_defaults(func=run_compare_cmd)


def run_compare_cmd(args) -> int:
    """`sharpen bench-compare BASELINE NEW`: the table, then the verdict; exit 1 on a
    regression."""
    from .compare import (NOTHING_IN_COMMON, CompareError, compare_reports, load_report,
                          parse_fail_on)
    try:
        tol = parse_fail_on(args.fail_on)
        comp = compare_reports(load_report(args.baseline, "BASELINE"),
                               load_report(args.new, "NEW", baseline=False), tol)
    except (CompareError, ValueError) as e:
        return cli_error("bench-compare", str(e))
    print_comparison(comp)
    if not comp["rows"]:
        return cli_error("bench-compare", f"{args.baseline} and {args.new}: {NOTHING_IN_COMMON}")
    return 1 if comp["regressions"] else 0


def print_comparison(comp: dict) -> None:
    from .compare import HEADERS, summary_lines, table_rows
    print_table(f"compared with the baseline {comp['baseline']}", HEADERS, table_rows(comp),
                right=("baseline", "new", "change", "allowed"),
                row_style=lambda r: "bold red" if r[-1] == "REGRESSED" else None)
    for line in summary_lines(comp):
        print(line)


def options_from_args(args: argparse.Namespace):
    """BenchOptions from parsed `sharpen bench` arguments (the inverse of its to_argv)."""
    from benchmarks.report import BenchOptions

    ratio, gain = resolve_gate(args)
    return BenchOptions(out=args.out, full=args.full, target_fps=args.target_fps,
                        cpu_target_fps=args.cpu_target_fps,
                        students=args.students, models=args.models,
                        teacher_weights=args.teacher_weights,
                        teacher_config=args.teacher_config, data=args.data,
                        real_pairs=args.real_pairs, real_nogt=args.real_nogt,
                        align=args.align,
                        stride=args.stride, frames=args.frames,
                        min_ssim_ratio=ratio, min_ssim_gain=gain, limit=args.limit,
                        sizes=args.sizes, formats=args.formats, cache=args.cache,
                        float_layers=args.float_layers,
                        threads=args.threads, calib_count=args.calib_count,
                        calib=args.calib, seed=args.seed,
                        max_memory_mib=args.max_memory_mib, tile=args.tile,
                        streams=args.streams, baseline=args.baseline, fail_on=args.fail_on,
                        stream_frames=args.stream_frames, latency=not args.no_latency,
                        quiet=args.quiet)


def run_bench_cmd(args) -> int:
    def fail(msg: str) -> int:
        return cli_error("bench", msg)

    try:
        from benchmarks.artifacts import BenchError
        from benchmarks.report import run_bench
        from distill.checkpoint import CheckpointError
    except ImportError as e:
        raise_if_interrupted(e)
        if getattr(e, "name", None) != "torch" or args.students or not args.models:
            return fail(missing_dependency("bench", e))
        # A device's runtime-only install: --model files alone are timed and scored against
        # ground truth; what needs PyTorch (checkpoints, the teacher) is skipped, and said.
        CheckpointError = BenchError
        if args.no_latency and not (args.real_pairs or args.real_nogt):
            return fail("nothing to measure: without PyTorch the held-out quality rows are "
                        "skipped, and --no-latency leaves only --real-pairs (the files' "
                        "PSNR/SSIM to ground truth) or --real-nogt: give one, or drop "
                        "--no-latency")
        # The gate options are given only where typed (argparse.SUPPRESS): its rows too.
        teacher = (("--data", args.data), ("--teacher-weights", args.teacher_weights),
                   ("--teacher-config", args.teacher_config),
                   ("--min-ssim-ratio", hasattr(args, "min_ssim_ratio")),
                   ("--min-ssim-gain", hasattr(args, "min_ssim_gain")))
        if idle := [flag for flag, given in teacher if given]:
            # --data's pairs were silently not scored: the held-out rows need the teacher.
            print(f"warning: {', '.join(idle)} ha{'ve' if len(idle) > 1 else 's'} no effect "
                  "without PyTorch (the held-out quality rows are skipped); --real-pairs "
                  "scores the files against ground truth", file=sys.stderr)
    timing = (("--sizes", args.sizes is not None),
              ("--stream-frames", args.stream_frames is not None),
              ("--target-fps", args.target_fps != _DEFAULTS["target_fps"]),
              ("--cpu-target-fps", args.cpu_target_fps != DEFAULT_CPU_TARGET_FPS),
              ("--streams", args.streams is not None))
    if args.no_latency and (idle := [f for f, given in timing if given]):
        print(f"warning: {', '.join(idle[:-1])}{' and ' if len(idle) > 1 else ''}{idle[-1]} "
              f"ha{'ve' if len(idle) > 1 else 's'} no effect with --no-latency (nothing is "
              "timed)", file=sys.stderr)
    from .compare import DEFAULT_FAIL_ON
    if args.fail_on != DEFAULT_FAIL_ON and not args.baseline:
        print("warning: --fail-on has no effect without --baseline (nothing is compared)",
              file=sys.stderr)
    if args.calib_count < 1:
        return fail(f"--calib-count must be >= 1, got {args.calib_count}")
    from benchmarks.streams import parse_streams
    try:
        parse_streams(args.streams)
    except ValueError as e:
        return fail(str(e))
    from distill.frame_pick import parse_frame_pick
    try:
        parse_frame_pick(args.stride, args.frames)
    except ValueError as e:
        return fail(str(e))
    if (args.stride != 1 or args.frames is not None) and not args.real_nogt:
        print(f"warning: {'--stride' if args.frames is None else '--frames'} has no effect "
              "without --real-nogt (the clips whose frames it picks)", file=sys.stderr)
    from .options import align_unused
    if idle := align_unused(args.align, args.real_pairs):
        from runtime.warn import warn   # a SharpenWarning, as `pytest benchmarks/` says it
        warn(idle)
    if args.seed < 0:   # as export says it, before the teacher's outputs and the first export
        return fail(f"--seed must be >= 0, got {args.seed}")
    from runtime.host import check_threads, limit_note, threads_warning
    try:   # here, not when the first runtime loads after the exports
        check_threads(args.threads, "--threads")
    except ValueError as e:
        return fail(str(e))
    if not args.no_latency and (too_many := threads_warning(args.threads, "--threads")):
        print(f"warning: {too_many}", file=sys.stderr)   # as sharpen run: times on shared cores
    # PyTorch eager (the teacher, the students' reference) on a CPU limit's count as the
    # runtimes: its default counted the cores a quota leaves idle. --threads is the runtimes'.
    from benchmarks.report import torch_missing
    if not torch_missing():
        from distill.teacher import set_torch_threads
        set_torch_threads(None)
    if not args.threads and (note := limit_note("ONNX Runtime, LiteRT and PyTorch")):
        print(f"note: {note}", file=sys.stderr)
    opts = options_from_args(args)
    try:
        report, code = run_bench(opts)
    except (BenchError, CheckpointError) as e:
        return fail(one_line(e))
    except KeyboardInterrupt as e:   # `sharpen` then says "interrupted" and exits 130 / 143
        if getattr(e, "partial_report", None):
            print(f"sharpen bench: interrupted: the report of the rows finished so far, marked "
                  f"incomplete (it lists those not measured), is in {e.partial_report}",
                  file=sys.stderr)
        raise
    _print_summary(report)
    if code:
        for c in report["checks"]:
            if not c["passed"]:
                print(f"sharpen bench: CHECK FAILED: {c['message']}", file=sys.stderr)
        print(f"sharpen bench: {count(sum(not c['passed'] for c in report['checks']), 'check')} "
              f"failed; report written to {Path(args.out) / 'report.md'}", file=sys.stderr)
    if failed := report.get("failed"):   # last: whose export to fix, after the tables
        print(f"sharpen bench: {count(len(failed), 'student')} failed, not measured: "
              f"{', '.join(f['student'] for f in failed)} (why: their CHECK FAILED lines)",
              file=sys.stderr)
    return code


def _print_summary(report: dict) -> None:
    from benchmarks.markdown import (LATENCY_HEADERS, STREAM_HEADERS, latency_table,
                                     stream_table, where_timed)
    from benchmarks.quality import (QualityResult, TABLE_HEADERS, format_table, held_out_label,
                                    quality_legend, real_blur_note)

    q = report["quality"]
    qr = QualityResult(q["data"], q["images"], q["rows"], report["checks"], {}, q["settings"])
    from benchmarks.artifacts import not_requested_line

    if skipped := q["settings"].get("skipped"):   # no PyTorch here: no teacher to score by
        print(f"quality: skipped: {skipped}")
    else:
        print_table(f"quality: mean over the held-out set ({held_out_label(report)})",
                    TABLE_HEADERS, format_table(qr))
        print(quality_legend(q["settings"]))
        _print_note(real_blur_note(report))
        _print_note(not_requested_line(q["rows"]))
    if report["latency"]["rows"]:
        # Without report.md's peak MiB columns: a twelfth column wrapped each row's model
        # name on an 80-column terminal; What to ship below gives each pick's peaks.
        keep = [i for i, h in enumerate(LATENCY_HEADERS)
                if h not in ("peak MiB", "video run MiB")]
        print_table(f"latency ({where_timed(report)})", [LATENCY_HEADERS[i] for i in keep],
                    [[r[i] for i in keep] for r in latency_table(report["latency"]["rows"])])
        # The streaming row's format too: its table may be left out with it.
        _print_note(not_requested_line(report["latency"]["rows"]
                                       + report["latency"].get("stream", [])))
    from benchmarks.streams import HEADERS as STREAMS_HEADERS, table_rows as streams_rows
    if concurrent := streams_rows(report["latency"].get("rows") or []):
        print_table("concurrent streams (--streams: sharpen run processes at once)",
                    STREAMS_HEADERS, concurrent)
    if stream := stream_table(report["latency"].get("stream") or []):
        print_table("streaming pipeline (sharpen run, ONNX Runtime FP32)", STREAM_HEADERS,
                    stream)
    from benchmarks.realblur import print_tables
    print_tables(report.get("real_blur") or {})
    failed = [c for c in report["checks"] if not c["passed"]]
    print(f"checks: {len(report['checks']) - len(failed)} passed, {len(failed)} failed")
    if ship := report.get("ship"):   # last: the answer the tables above lead to
        from benchmarks.ship import HEADERS as SHIP_HEADERS, table_rows as ship_rows, title
        print_table(title(ship), SHIP_HEADERS, ship_rows(ship))
        print(f"what to ship: {ship['answer']}")
    if comp := report.get("comparison"):   # a CI gate's verdict: after everything else
        print_comparison(comp)


def _print_note(line: str) -> None:
    """A line under the table before it, when there is something to say."""
    if line:
        print(line)


def main(argv: list[str] | None = None) -> int:
    """Run `bench` without the full `sharpen` parser (python -m benchmarks.cli ...)."""
    report_fatal_errors()   # as `sharpen bench`: a native crash inside a window says so
    parser = argparse.ArgumentParser(prog="sharpen")
    sub = parser.add_subparsers(dest="command")
    add_commands(sub)
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    from runtime.warn import shown_once_as_lines
    with shown_once_as_lines():   # as `sharpen bench` shows the runtime's warnings
        return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
