"""`sharpen run`: sharpen a camera, stream, video or images with an exported model.

Only argparse at import time: the handler imports the pipeline (numpy, cv2, the inference
engine) when the command actually runs, and nothing here ever imports torch or tensorflow.
"""
from __future__ import annotations

import argparse
import atexit
import math
import os
import shlex
import signal
import stat
import sys
import threading
from typing import Optional

from .cli_errors import (interrupt_exit_code, interrupted_message, missing_dependency,
                         raise_if_interrupted, said_after_hang_up, stop_signal,
                         stop_signals_as_interrupt)
from .cli_parser import CommandParser
from .console import (count, open_closed_std_fds, quiet_library_logs, report_fatal_errors,
                      unread_listed)
from .host import (limit_note, load_average, threads_help, threads_warning,
                   usable_cores)
# Not .tiling's: it imports numpy, which --help must not load.
from .options import (AUTO_TILE, AUTO_TILE_PIXELS, FFMPEG_GUESSED_FPS, NO_EXIF_HELP,
                      NO_METADATA_HELP, OVERLAP,
                      PRESETS, RATE_SETTING_KINDS, video_rate)

# The exit code of a camera or stream not there, or lost and not back (SourceLost): neither a
# usage error (2: a service manager should stop, RestartPreventExitStatus=2) nor failed work
# (1), so that a supervisor restarts on it and alerting can tell it apart.
SOURCE_LOST_EXIT = 3
# The exit code of a run refused because another live run writes its --out: no configuration
# error (2, which RestartPreventExitStatus=2 ends a service on for good) but a clash that ends
# with the other run, so that a restarted service takes over from a run started by hand.
OUTPUT_LOCKED_EXIT = 4

EPILOG = """examples:
  sharpen run --model student.onnx --source 0 --show    # USB camera, live window
  sharpen run --model student.onnx --source in.mp4 --out out.mp4 --stats s.json
  sharpen run --model student.engine --source "nvarguscamerasrc ! video/x-raw(memory:NVMM),width=1920,height=1080,framerate=30/1 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=1" --show
  sharpen run --model student.tflite --source photos/ --out sharp/ --threads 4

exit codes: 0 done; 1 inputs that could not be read (the rest processed) or an unexpected
error; 2 a usage or configuration error (an option, the model, a source or output misnamed)
or a full disk or file size limit: restarting does not help; 3 a camera or stream not
there, or lost and not back (--source - or raw:WxH: silent for --timeout): a restart may
find it; 4 another live run writes the same --out or --stats: a restart takes over once it
ends; 128+N stopped by signal N (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP)

signals: SIGUSR1 prints the live stats line and rewrites the --stats file now; the run goes on
"""


class _OneSource(argparse.Action):
    """--source, once: argparse keeps an option's last value, and a run given two cameras
    (`--source cam1.mp4 --source cam2.mp4`) sharpened the second alone, without a word."""

    def __call__(self, parser, namespace, value, option_string=None):
        first = getattr(namespace, self.dest, None)
        if first is not None:
            from .source_spec import shown_url   # a camera URL's password stays out
            parser.error(f"argument --source: given twice ({shown_url(first)}, "
                         f"{shown_url(value)}): a run reads one source; start a run each, "
                         "with its own --out and --stats (README: As a service), or give "
                         "several files as their folder or a quoted glob")
        setattr(namespace, self.dest, value)


class _StatsFiles(argparse.Action):
    """--stats FILE [FILE ...], given once or more, each file added: several in one --stats
    must each be .json or .prom, as that --stats takes every word up to the next option, and
    `--stats s.json out.mp4` (the output misplaced) wrote the stats over out.mp4. One alone
    keeps any name, as before."""

    def __call__(self, parser, namespace, values, option_string=None):
        from .prometheus import SUFFIX
        for v in values if len(values) > 1 else ():
            if os.path.splitext(v)[1].lower() not in (".json", SUFFIX):
                parser.error(f"argument --stats: {v} is no .json or .prom file, which each of "
                             f"several --stats files is ({' '.join(values)}); an output "
                             "video or image goes after --out")
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest) or []), *values])


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register `run` on the `sharpen` subparsers."""
    p = sub.add_parser(
        "run", help="sharpen a camera, stream, video or images with an exported model",
        description="Sharpen frames from a camera, stream, video file or images with an "
                    "exported student model (.onnx, .engine/.plan, .tflite), streaming with "
                    "capture, inference and output in parallel.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    # What every run needs first; the rest by what a user is after (argparse's own group keeps
    # only -h).
    need = p.add_argument_group("input and model (required)")
    output = p.add_argument_group("output")
    codec = p.add_argument_group("video codec")
    photos = p.add_argument_group("photos (images into an image --out)")
    perf = p.add_argument_group("performance")
    cap = p.add_argument_group("cameras and streams")
    rec = p.add_argument_group("recording for days (a video --out cut into files)")
    adv = p.add_argument_group("advanced")
    need.add_argument("--model", required=True, metavar="FILE",
                   help="exported model: .onnx (ONNX Runtime), .engine/.plan (TensorRT), "
                        ".tflite (LiteRT)")
    need.add_argument("--source", required=True, action=_OneSource,
                   help="camera index (0), V4L2 device (/dev/video0), video file, rtsp/http URL "
                        "(one whose path names an image file is read as that image), "
                        "GStreamer pipeline (contains '!'), image file, folder or glob, "
                        "synthetic[:WxH][@FPS], - for Y4M video on stdin "
                        "(ffmpeg -i IN -f yuv4mpegpipe -pix_fmt yuv420p - | ...), "
                        "raw:WxH[@FPS] for raw BGR frames on stdin (ffmpeg ... -f rawvideo "
                        "-pix_fmt bgr24 - | ...), or "
                        "env:NAME for the one in environment variable NAME (a URL's "
                        "password kept out of ps)")
    output.add_argument("--out", "--output", dest="output", default=None, metavar="PATH",
                   help="video file (.mp4, same size and fps as the source), image folder "
                        "(same file names), an image file for a single image input, or - "
                        "for Y4M video on stdout (... | ffmpeg -f yuv4mpegpipe -i - out.mp4), "
                        "raw BGR frames for a raw:WxH source; "
                        "without --out or --show, results go to runs/sharpen/<source name> "
                        "(numbered 2, 3... if taken)")
    output.add_argument("--show", action="store_true",
                   help="show original | sharpened in a window with fps overlay (q/Esc quits)")
    output.add_argument("--view", choices=("side", "split"), default=None,
                   help="layout of --show and --compare: side by side (default), or split "
                        "(left half original, right half sharpened)")
    output.add_argument("--compare", action="store_true",
                   help="write original and sharpened together (per --view) to --out, for "
                        "judging the result by eye, each side captioned (input, sharpened)")
    output.add_argument("--stats", default=None, metavar="FILE", action=_StatsFiles, nargs="+",
                   help="write per-stage latency (p50/p90/p95/p99, mean, min, max), "
                        "throughput, drops, the model and the threads it ran on to this JSON "
                        "file: refreshed every 10 s (--report-interval) while the run goes on, "
                        "its state saying how it ended; a name ending in .prom: Prometheus' text "
                        "format, for node_exporter's textfile collector; several files, each "
                        ".json or .prom (s.json s.prom), are all written")
    perf.add_argument("--threads", type=int, default=0, metavar="N",
                   help=threads_help("ONNX Runtime / LiteRT, and for --codec h264/hevc's "
                                     "encoder where given"))
    perf.add_argument("--provider", choices=("auto", "cpu", "cuda", "tensorrt"), default="auto",
                   help="ONNX Runtime execution provider (auto: TensorRT, CUDA, then CPU, "
                        "whichever this build has)")
    perf.add_argument("--tile", type=int, default=None, metavar="N",
                   help="run in Gaussian-blended tiles of this size (0: whole frame), one at "
                        "a time, for devices that cannot hold a frame in float (a 4K photo: "
                        "700 MiB at its peak whole, 230 with --tile 512; README: peak memory);"
                        f" default: whole, but a frame above {AUTO_TILE_PIXELS / 1e6:.1f} MP "
                        f"in {AUTO_TILE}-pixel tiles, said (a 24 MP photo: 2 GiB whole)")
    perf.add_argument("--overlap", type=int, default=None, metavar="N",
                   help="tile overlap in pixels (with --tile; default: the model's receptive "
                        f"field as its export recorded it, at most half the tile, else {OVERLAP})")
    cap.add_argument("--width", type=int, default=None,
                   help="camera capture width (default 1920; also the width of --source "
                        "synthetic)")
    cap.add_argument("--height", type=int, default=None,
                   help="camera capture height (default 1080; also the height of --source "
                        "synthetic)")
    cap.add_argument("--fps", type=float, default=0.0,
                   help="camera capture fps (0: camera default; the output video takes the "
                        "rate the camera or GStreamer pipeline gives); for other sources the "
                        "output video's fps (0: the source's own, 30 for images)")
    cap.add_argument("--max-frames", type=int, default=None, metavar="N",
                   help="stop after this many frames")
    cap.add_argument("--live", action=argparse.BooleanOptionalAction, default=None,
                   help="force the live policy (drop stale frames) or --no-live for lossless; "
                        "default: live for cameras, streams and synthetic@FPS, lossless for "
                        "files, --source - (give --live for a camera's feed) and an unpaced "
                        "synthetic")
    cap.add_argument("--reconnect", type=int, default=None, metavar="N",
                   help="attempts to reopen a camera or stream that disconnects (exponential "
                        "backoff; default 5; 0: an HTTP(S) stream run --no-live ends where it "
                        "stops, other cameras and streams end with an error)")
    cap.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="seconds a stream URL may take to open or to give a frame before it "
                        "counts as lost (default 20; raise it for slow cameras with long "
                        "keyframe intervals; 0: FFmpeg's own); with --source - or raw:WxH, "
                        "seconds stdin may give nothing before it counts as lost (default: "
                        "no bound)")
    output.add_argument("--no-audio", action="store_true",
                   help="leave a video file source's sound out of a video --out without a "
                        "word (default: copied in by ffmpeg, found on PATH or named by "
                        "SHARPEN_FFMPEG; said when it cannot be)")
    codec.add_argument("--lossless", action="store_true",
                   help="write a video --out in FFV1, which keeps every sharpened pixel (.mkv or "
                        ".avi; about 1.6 MB a 1080p frame), or --out - in 4:4:4 (not 4:2:0); "
                        "the default codecs (mp4v, VP8, "
                        "MPEG-2) round off much of a model's fine detail (README: "
                        "measured where the codecs of video outputs are listed)")
    codec.add_argument("--codec", choices=("h264", "hevc", "prores", "ffv1", "mp4v"),
                        default=None,
                        help="a video --out's codec: h264 or hevc (.mp4 .mov .mkv; quality by "
                             "--crf) or prores (422 HQ 10-bit; .mov .mkv), encoded by ffmpeg "
                             "with BT.709 tags for HD; ffv1 is --lossless; default: the "
                             "container's (mp4v for .mp4 .mov .mkv .avi), by OpenCV")
    codec.add_argument("--crf", type=int, default=None, metavar="N",
                        help="--codec h264/hevc quality, 0-51, lower is better and larger "
                             "(default: h264 18, hevc 20)")
    codec.add_argument("--encoder-preset", choices=PRESETS, default=None, metavar="NAME",
                        help="--codec h264/hevc speed, x264/x265's -preset: "
                             f"{', '.join(PRESETS)}; faster is larger at one --crf "
                             "(default: veryfast for a live source, which must keep up, "
                             "medium for a file)")
    photos.add_argument("--quality", type=int, default=None, metavar="Q",
                        help="JPEG and WebP image outputs' quality, 1-100 (default: JPEG 95, "
                             "WebP lossless); a JPEG at 90 or more keeps its colour at every "
                             "pixel (4:4:4), below at half size (4:2:0)")
    adv.add_argument("--resume", action="store_true",
                   help="go on with a video file's run into --out that stopped part-way "
                        "(Ctrl-C, SIGTERM, a closed terminal) from the frame it got to, or "
                        "a folder's or glob's images into a folder with those not written; "
                        "refused, naming what changed, where the model, the source or an "
                        "option that shapes the frames differs")
    photos.add_argument("--no-exif", action="store_true", help=NO_EXIF_HELP)
    output.add_argument("--no-metadata", action="store_true", help=NO_METADATA_HELP)
    photos.add_argument("--overwrite", action="store_true",
                        help="a folder's or glob's images into a folder: sharpen every image "
                             "again, replacing the outputs there (default: an output already "
                             "there is kept, unless its photo changed since, and said)")
    rec.add_argument("--segment", type=float, default=None, metavar="S",
                   help="cut a video --out into files of S seconds of video each, closed "
                        "whole at a frame boundary and named STEM-NNNNNN-YYYYmmdd-HHMMSS.EXT "
                        "(the number counted on across restarts, the time the segment began; "
                        "--out itself is not written)")
    rec.add_argument("--keep-segments", type=int, default=None, metavar="N",
                   help="with --segment, keep the last N segments, removing the oldest as "
                        "each closes (default: all)")
    rec.add_argument("--keep-gb", type=float, default=None, metavar="GB",
                   help="with --segment, keep the newest segments that fit in GB gigabytes "
                        "(10^9 bytes), removing the oldest as each closes; the one being "
                        "written comes on top (default: all)")
    adv.add_argument("--force", action="store_true",
                   help="run a model even though it failed its parity gate at export")
    output.add_argument("--quiet", action="store_true",
                   help="no live stats line (the final done: line, warnings and errors stay)")
    output.add_argument("--report-interval", type=float, default=None, metavar="S",
                   help="seconds between live stats lines (default: 1 on a terminal, 60 where "
                        "stderr is a file, a pipe or a service's journal) and refreshes of "
                        "the --stats file (default: 10)")
    p.set_defaults(func=handler)


# `--source env:NAME`: the source (a camera URL with its password) from that environment
# variable, off the command line.
SOURCE_FROM_ENV = "env:"


# Flags that only a kind of source reads; given for another, they are said to do nothing.
_SOURCE_FLAGS = (("--width", "width", ("camera", "v4l2", "gstreamer", "synthetic")),
                 ("--height", "height", ("camera", "v4l2", "gstreamer", "synthetic")),
                 ("--reconnect", "reconnect", ("camera", "v4l2", "gstreamer", "stream")),
                 ("--timeout", "timeout", ("stream", "stdin")))


def unapplied_source_flags(args: argparse.Namespace) -> list[str]:
    """Warnings for flags given for a source that does not read them (a capture size for a
    video file, a stream timeout for a camera)."""
    from .sources import shown_url, spec_kind, url_image_name

    if not args.source.strip():   # refused as empty: no kind to speak of
        return []
    kind = spec_kind(args.source)
    shown = shown_url(args.source)   # a URL's password, a pipeline's too
    out = [f"warning: {flag} applies to {', '.join(kinds)} sources, not to --source "
           f"{shown} ({kind}); it has no effect" for flag, attr, kinds in _SOURCE_FLAGS
           if getattr(args, attr) is not None and kind not in kinds]
    # An http(s) URL naming an image is fetched once (--timeout bounds the fetch) and read as
    # that one image: nothing to reconnect to. Known only from its answer, hence "unless".
    if kind == "stream" and url_image_name(args.source) is not None \
            and args.reconnect is not None:
        out.append(f"warning: --reconnect applies to camera, v4l2, gstreamer, stream sources, "
                   f"not to --source {shown}, an image URL, fetched once and read as one "
                   "image; it has no effect unless the URL answers with a stream")
    # `synthetic` takes its size from --width/--height; `synthetic:WxH` names its own.
    if kind == "synthetic" and ":" in args.source:
        out += [f"warning: {flag} has no effect: --source {args.source} gives its own size"
                for flag in ("--width", "--height") if getattr(args, flag[2:]) is not None]
    return out


def unapplied_output_flags(args: argparse.Namespace) -> list[str]:
    """Warnings for flags given for an output that does not take them: --lossless picks a
    video's codec, or 4:4:4 for Y4M on stdout; image files are written without loss anyway."""
    from .imageio import VIDEO_EXTS
    from .pipe_io import is_stdio
    from .source_spec import RAW_STDIN

    out = args.output
    if args.lossless and out and is_stdio(out) and RAW_STDIN.match(args.source.strip()):
        return [f"warning: --lossless has no effect on --out - for --source {args.source}: "
                "its raw BGR frames are written as they are, without loss anyway"]
    if not args.lossless or (out and (is_stdio(out)
                                      or os.path.splitext(out)[1].lower() in VIDEO_EXTS)):
        return []
    what = ("no --out" if not out else f"--out {out}, which is not a video file (image "
            "folders, PNG and TIFF are lossless anyway)")
    return [f"warning: --lossless applies to a video --out (.mkv, .avi) or --out -, not to "
            f"{what}; it has no effect"]


def _is_fifo(path: Optional[str]) -> bool:
    try:
        return bool(path) and stat.S_ISFIFO(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def _unit(summary: dict, output: Optional[str]) -> str:
    """What the output holds: a photo library's images in a folder, else frames (a video's,
    or a video's frames in a folder)."""
    from .imageio import VIDEO_EXTS
    images = (summary.get("source") or {}).get("kind") == "images"
    return "image" if images and os.path.splitext(output or "")[1].lower() not in VIDEO_EXTS \
        else "frame"


def _interrupted_note(summary: dict, output: Optional[str], max_frames: int = 0) -> str:
    """What an interrupted run left: a recording's output then holds only part of it, under
    its final name, and may have replaced a complete one (a live source is stopped this way
    as a matter of course)."""
    src = summary.get("source") or {}
    done, total = summary.get("frames_processed", 0), src.get("frame_count")
    if total and max_frames:
        total = min(total, max_frames)
    resumed = summary.get("resumed_from", 0)
    unit = _unit(summary, output)
    if unit == "image":   # a library's: this run's images are those the stopped run left
        resumed = summary.get("kept_images", 0)
        total = total + resumed if total else total
    if output is not None and output.strip() == "-":   # a stream: no file to run again for
        # Not "nothing": a reader that stalled or closed may hold the header and part of a frame
        done = summary.get("stdout_frames", done)
        return (f"interrupted: {count(done, 'frame')} written to stdout" if done else
                "interrupted before the first frame was written: no whole frame written to "
                "stdout")
    if output and not done and resumed and summary.get("resumable"):
        # "nothing written" read as an empty output: the stopped run's frames are there still.
        return (f"interrupted before the first {unit} was written: {output} holds the "
                f"{resumed} {unit if resumed == 1 else unit + 's'} it held; run the same "
                "command with --resume to go on from there")
    if output and not done:
        # A video gets its name only when it is closed with frames in it, so a file there
        # from an earlier run is untouched; an image folder has gained nothing.
        return f"interrupted before the first frame was written: nothing written to {output}"
    if src.get("live") or not output:
        return "interrupted, output closed cleanly" if output else "interrupted"
    pruned = ""
    if summary.get("segment"):   # --segment: the output is its segments
        pruned = _segments_removed(summary)
        held = (f"{count(summary.get('segments_closed', 0), 'segment')} of {output}, the last "
                f"{summary['segment']}, {'held' if pruned else 'hold'}")
        whole = "each closed cleanly"
    else:
        held, whole = f"{output} holds", "closed cleanly"
    fifo = _is_fifo(src.get("spec"))
    if src.get("kind") == "stdin" or fifo:   # the frames not read yet are the writer's
        return (f"interrupted: {held} the {done} {'frame' if done == 1 else 'frames'} "
                f"{'the FIFO ' + src['spec'] if fifo else 'stdin'} gave ({whole}){pruned}")
    if summary.get("resumable"):   # a video file's run, which --resume goes on with
        done += resumed
        again = "run the same command with --resume to go on from there"
    else:
        again = "run again for all of them"
        if summary.get("segment"):   # a rerun replaces no segment
            again += " (into segments numbered on from these)"
    part = f"{done} of {total}" if total else f"the first {done}"
    frames = unit if (total or done) == 1 else unit + "s"
    return f"interrupted: {held} {part} {frames} only ({whole}){pruned}; {again}"


def _segments_removed(summary: dict) -> str:
    """How many of the run's closed segments --keep-segments or --keep-gb removed, said after
    a note that counts them all ('' where none was): a day's service run closed 144 and kept
    the last few."""
    removed = summary.get("segments_removed") or 0
    if not removed:
        return ""
    kept = max(0, (summary.get("segments_closed") or 0) - removed)
    first = "the first was" if removed == 1 else f"the first {removed} were"
    return (f"; {first} removed past --keep-segments or --keep-gb, the last"
            f"{'' if kept == 1 else f' {kept}'} kept")


def options_from_args(args: argparse.Namespace):
    """StreamOptions from parsed `sharpen run` arguments."""
    from .pipeline import MAX_FPS, MIN_FPS, StreamOptions
    from .host import ZERO_THREADS, check_threads
    from .prepost import check_tiling

    args.width = 1920 if args.width is None else args.width
    args.height = 1080 if args.height is None else args.height
    args.reconnect = 5 if args.reconnect is None else args.reconnect

    from .source_spec import RAW_STDIN
    stdin = isinstance(args.source, str) and (args.source.strip() == "-"
                                              or RAW_STDIN.match(args.source.strip()))
    for flag, value, meaning in (("--threads", args.threads, f"0: {ZERO_THREADS}"),
                                 ("--fps", args.fps, "0: the source's own"),
                                 ("--max-frames", args.max_frames or 0, "0: all"),
                                 ("--reconnect", args.reconnect, "0: never"),
                                 ("--timeout", args.timeout or 0,
                                  f"0: no bound for --source {args.source.strip()}" if stdin
                                  else "0: FFmpeg's own"),
                                 ("--width", args.width, "the camera's capture size"),
                                 ("--height", args.height, "the camera's capture size")):
        if not value >= 0 or value == math.inf:   # nan and inf too
            raise ValueError(f"{flag} must be >= 0 ({meaning}), got {value}")
    interval = args.report_interval
    if interval is not None and not 0 < interval < math.inf:   # 0 printed without a pause
        raise ValueError(f"--report-interval must be a number of seconds above 0, got "
                         f"{interval:g}")
    check_threads(args.threads, "--threads")   # and not absurdly many
    from .segment_sink import check_segment
    if problems := check_segment(args.segment, args.keep_segments, True, args.keep_gb):
        raise ValueError("; ".join(problems))
    if args.fps > MAX_FPS:
        # A video writer asked for 1e300 fps hung inside OpenCV, deaf to Ctrl-C.
        raise ValueError(f"--fps must be at most {MAX_FPS:g}, got {args.fps:g}")
    if 0 < args.fps < MIN_FPS:   # mp4v's writer failed to open at 0.001
        raise ValueError(f"--fps must be 0 (the source's) or at least {MIN_FPS:g}, got "
                         f"{args.fps:g}")
    # Before the model loads: a usage error. An automatic overlap (None) always fits its tile.
    check_tiling(args.tile or 0, 0 if args.overlap is None else args.overlap, flags=True)
    # one file as before (its messages name it), several as a list
    stats = args.stats[0] if args.stats and len(args.stats) == 1 else args.stats
    return StreamOptions(show=args.show, view=args.view or "side", stats_path=stats,
                         threads=args.threads or None, provider=args.provider, tile=args.tile,
                         overlap=args.overlap, width=args.width, height=args.height,
                         fps=args.fps, max_frames=args.max_frames, live=args.live,
                         quiet=args.quiet, reconnect_attempts=args.reconnect, timeout=args.timeout,
                         report_interval=interval,
                         force=args.force,
                         compare=args.compare, audio=not args.no_audio, resume=args.resume,
                         overwrite=args.overwrite, exif=not args.no_exif,
                         metadata=not args.no_metadata,
                         lossless=args.lossless, quality=args.quality, segment=args.segment,
                         codec=args.codec, crf=args.crf,
                         encoder_preset=args.encoder_preset,
                         keep_segments=args.keep_segments, keep_gb=args.keep_gb,
                         service_notify=True)


def _a_models_name(model: str) -> bool:
    """Whether --model is a bare name (`fast`) rather than a file: no such file, no suffix, no
    folder. `teacher` is left out: only students are exported."""
    from pathlib import Path
    p = Path(model)
    return (not p.exists() and not p.suffix and len(p.parts) == 1 and model != "teacher"
            and "://" not in model)


def _report_later(_signum: int, _frame: object) -> None:
    """SIGUSR1 before the stream runs (the model loading, the first frame awaited): no frame
    to report yet, and its default action would end the run; the stream takes it over."""


_report_later.sharpen_report = True   # type: ignore[attr-defined]


def _ignore_report_at_exit() -> None:
    """The interpreter's shutdown gives a Python-handled signal its default action back, and
    SIGUSR1's ends the process: one sent as a finished run exits turned its 0 into -10.
    Ignored (which the shutdown leaves alone) where the hold is still ours."""
    usr1 = getattr(signal, "SIGUSR1", None)
    if usr1 is not None and signal.getsignal(usr1) is _report_later:
        signal.signal(usr1, signal.SIG_IGN)


def handler(args: argparse.Namespace) -> int:
    """Run the stream; user errors become one line on stderr and a non-zero exit code."""
    usr1 = getattr(signal, "SIGUSR1", None)
    if usr1 is not None and threading.current_thread() is threading.main_thread() \
            and signal.getsignal(usr1) is signal.SIG_DFL:
        signal.signal(usr1, _report_later)
        atexit.unregister(_ignore_report_at_exit)   # once, however many runs in one process
        atexit.register(_ignore_report_at_exit)
    try:
        quiet_library_logs()   # also for `python -m runtime.cli run`
        from .backends import ModelError
        from .pipeline import StreamInterrupted, run_stream
        from .prepost import FrameError
        from .resume import ResumeError
        from .sinks import SinkError
        from .sources import SourceError, SourceLost
    except ImportError as exc:  # e.g. opencv or numpy missing on the device
        raise_if_interrupted(exc)
        print(f"sharpen run: error: {missing_dependency('run', exc)}", file=sys.stderr)
        return 2   # as sharpen.cli's: an install to fix, which a service's restart repeats
    expected = (ModelError, SourceError, SinkError, FrameError, ValueError, OSError)
    from .imageio import ImageReadError, max_pixels
    try:   # once, a usage error, for `python -m runtime.cli` too (sharpen.cli checks it first)
        max_pixels()
    except ImageReadError as exc:
        print(f"sharpen run: error: {exc}", file=sys.stderr)
        return 2
    if args.source.startswith(SOURCE_FROM_ENV):
        # A camera URL's password on the command line is readable by every user of the host
        # (ps, /proc/PID/cmdline); the environment only by the process's own user and root.
        name = args.source[len(SOURCE_FROM_ENV):]
        if not os.environ.get(name, "").strip():
            file = (f" (for the file of that name, give --source ./{args.source})"
                    if os.path.exists(args.source) else "")
            print(f"sharpen run: error: --source {args.source}: the environment variable "
                  f"{name or '(no name)'} is not set, or empty{file}", file=sys.stderr)
            return 2
        args.source = os.environ[name].strip()
    if args.model.lower().endswith((".pt", ".pth")):
        print(f"sharpen run: error: {args.model} is a PyTorch checkpoint; export it first: "
              f"sharpen export --weights {args.model} --out export/ (then --model "
              "export/<name>.onnx or .tflite)", file=sys.stderr)
        return 2
    if _a_models_name(args.model):
        # `fast`, as evaluate, export and distill's init= take it: run needs its export.
        stem = args.model if args.model.startswith("student-") else f"student-{args.model}"
        # Conditional: the runtime cannot list the shipped students (they live in distill),
        # and a typo (`fsat`) is no student to export.
        print(f"sharpen run: error: model not found: {args.model}: `sharpen run` takes an "
              "exported model file (.onnx, .tflite, .engine), not a checkpoint or a shipped "
              f"model's name; if {args.model} is a shipped student, export it first: sharpen "
              f"export --weights {args.model} --out export/ (then --model export/{stem}.onnx)",
              file=sys.stderr)
        return 2
    unapplied = unapplied_source_flags(args) + unapplied_output_flags(args)
    try:
        options = options_from_args(args)
    except ValueError as exc:   # a bad flag: a usage error, as argparse's own
        print(f"sharpen run: error: {exc}", file=sys.stderr)
        return 2
    for line in unapplied:
        print(line, file=sys.stderr)
    # --provider with a .tflite/.engine model: load_backend says so (once, naming the engine).
    if too_many := threads_warning(args.threads, "--threads"):
        print(f"warning: {too_many}", file=sys.stderr)
    elif not args.threads and not args.quiet and (note := limit_note("ONNX Runtime and LiteRT")):
        print(f"note: {note}", file=sys.stderr)
    if not args.tile and args.overlap is not None:
        print("warning: --overlap has no effect without --tile", file=sys.stderr)
    if args.quiet and args.report_interval is not None and not args.stats:
        print("warning: --report-interval has no effect with --quiet (no live stats line) "
              "and without --stats", file=sys.stderr)
    if args.view is not None and not (args.show or args.compare):
        print("warning: --view has no effect without --show or --compare", file=sys.stderr)
    if args.resume and args.overwrite:
        print("sharpen run: error: --resume keeps the images the stopped run wrote and "
              "--overwrite sharpens them again: give one", file=sys.stderr)
        return 2
    if args.resume and args.output is None:
        # The default output is a fresh name (clip2.mp4 where clip.mp4 is there), never the
        # stopped run's.
        print("sharpen run: error: --resume needs --out naming the stopped run's output",
              file=sys.stderr)
        return 2
    if args.resume and args.output.strip() == "-":
        print("sharpen run: error: --resume goes on writing into the stopped run's output "
              "file or folder; --out - (stdout) is a stream, which cannot be resumed",
              file=sys.stderr)
        return 2
    defaulted = args.output is None and not args.show
    if defaulted:
        args.output = _default_output(args.source)
    try:
        summary = _run_stream_named(run_stream, args, options, defaulted)
    except StreamInterrupted as e:   # the output closed, the stats written: said below
        summary = e.stats
    except KeyboardInterrupt as e:   # before the stream's own handler is set, or a second Ctrl-C
        code = interrupt_exit_code(e)
        # The camera named, as in its closing notes: several stopped together share one log
        from .source_spec import source_label
        term = f" ({signal.Signals(stop_signal(e)).name})" if stop_signal(e) else ""
        print(f"sharpen run: {source_label(args.source)}: interrupted{term}", file=sys.stderr)
        _exit_now_if_workers_run(code)
        return code
    except expected as exc:
        if os.environ.get("SHARPEN_DEBUG"):
            raise
        said = str(exc)
        if defaulted and isinstance(exc, SinkError) and said.startswith(f"--out {args.output}"):
            # The user gave no --out: the path named is ours, in a folder they did not pick (a
            # container's read-only working directory).
            said += (f"; without --out the results go to runs/sharpen/ in the current folder "
                     f"({os.getcwd()}): give --out a path that can be written")
        print(f"sharpen run: error: {said}", file=sys.stderr)
        if kept := _kept_before_error(getattr(exc, "stats", None), args.output):
            print(f"sharpen run: {kept}", file=sys.stderr)
        if isinstance(exc, SourceLost):   # a camera or stream away: a restart may find it
            return SOURCE_LOST_EXIT
        if getattr(exc, "output_locked", False):
            return OUTPUT_LOCKED_EXIT
        return 2 if isinstance(exc, (ModelError, SourceError, SinkError, ResumeError)) else 1
    except Exception as exc:  # noqa: BLE001 - anything else: still one line, not a traceback
        if os.environ.get("SHARPEN_DEBUG"):
            raise
        from .image_sink import ImageEncodeOutOfMemory
        from .prepost import FrameOutOfMemory, is_out_of_memory
        if isinstance(exc, FrameOutOfMemory):   # names the frame size and what to change
            print(f"sharpen run: error: {exc}", file=sys.stderr)
        elif isinstance(exc, ImageEncodeOutOfMemory):
            # Whole, the model's float copies of the frame are what the encoder lacked.
            tile = ("" if getattr(args, "tile", 0) else
                    "; --tile 512 sharpens it in tiles, leaving the encoder the memory the "
                    "whole frame's float copies took")
            print(f"sharpen run: error: {exc}{tile}", file=sys.stderr)
        elif is_out_of_memory(exc):   # reading or writing a frame: "MemoryError: " said little
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            print(f"sharpen run: error: out of memory{f' ({detail})' if detail else ''}; "
                  "give the process more memory or feed it smaller frames (README: peak "
                  "memory)", file=sys.stderr)
        else:
            print(f"sharpen run: error: {type(exc).__name__}: {exc} "
                  "(set SHARPEN_DEBUG=1 for the traceback)", file=sys.stderr)
        if kept := _kept_before_error(getattr(exc, "stats", None), args.output):
            print(f"sharpen run: {kept}", file=sys.stderr)
        return 1
    with said_after_hang_up():
        if summary.get("interrupted"):
            note = _interrupted_note(summary, args.output, args.max_frames or 0)
            if summary.get("signal", "SIGINT") != "SIGINT":   # each note starts "interrupted"
                note = note.replace("interrupted", f"interrupted ({summary['signal']})", 1)
            print(_note_line(summary, note), file=sys.stderr)
        # Said with --quiet too: it silences progress (the live line), not the result, as
        # every command's --quiet does (training's `done:`, export's and evaluate's tables).
        print(_result_line(summary), file=sys.stderr)
    if summary.get("live") and summary.get("repeated_frames"):
        print(_note_line(summary, "the video repeats the frame before each drop "
                         f"({summary['repeated_frames']} frames in all) so that it plays in "
                         "real time"), file=sys.stderr)
    elif not summary.get("live") and (retimed := _retimed_note(summary, args.source,
                                                                 args.fps)):
        print(f"sharpen run: {retimed}", file=sys.stderr)
    if summary.get("live") and (slower := _slower_step_note(summary, usable_cores(),
                                                             load_average(), os.cpu_count())):
        print(_note_line(summary, slower), file=sys.stderr)
    if summary.get("live") and summary.get("left_out_frames"):
        print(_note_line(summary, _live_left_out_note(summary, args.fps)), file=sys.stderr)
    written = args.output
    if written and summary.get("segment"):   # --out itself is not written: its segments are
        from .segment_sink import segments_shown
        written = str(segments_shown(written))
    if defaulted:
        print(f"sharpen run: results written to {written} (no --out given)", file=sys.stderr)
    if summary.get("video") and not summary.get("segment"):
        from .video_sink import encoding_said
        print(f"sharpen run: {written}: {encoding_said(summary['video'])}", file=sys.stderr)
    elif summary.get("video", {}).get("location_kept"):   # segments: their place, said alone
        from .video_sink import LOCATION_KEPT
        print(f"sharpen run: {written}: {LOCATION_KEPT}", file=sys.stderr)
    if gps := summary.get("gps_kept"):
        from .exif import gps_kept_said
        print(f"sharpen run: {written}: {gps_kept_said(gps)}", file=sys.stderr)
    if left_out := summary.get("metadata_left_out"):
        from .exif import left_out_said
        from .imageio import IMAGE_EXTS
        first = (written if os.path.splitext(written)[1].lower() in IMAGE_EXTS   # one image
                 else os.path.join(written, left_out["captioned"] or ""))
        print(f"sharpen run: {written}: {left_out_said(left_out, first)}", file=sys.stderr)
    if args.compare and args.output:   # the frames' captions say it too, once opened
        from .compare_sink import compare_layout
        shown = "--out - (stdout)" if args.output.strip() == "-" else written
        print(f"sharpen run: {shown}: {compare_layout(options.view)}", file=sys.stderr)
    if skipped := summary.get("skipped_inputs"):
        # Listed again here: a library's run of hours said each among thousands of lines.
        kind = (summary.get("source") or {}).get("kind")
        # --max-frames ended it before the source did: the images after were never read.
        # Counted against what was read: the unreadable files are among the source's count.
        count_in = (summary.get("source") or {}).get("frame_count")
        read = (summary.get("resumed_from", 0) + summary.get("frames_captured", 0)
                + len(skipped))
        stopped = (f"the run stopped at --max-frames {args.max_frames}, before the rest"
                   if args.max_frames and not summary.get("interrupted")
                   and summary.get("frames_captured", 0) >= args.max_frames
                   and (not count_in or count_in > read) else "")
        # A stopped run's own line says how far it got: not "the rest were processed"
        print(unread_listed("run", skipped, kind, stopped=stopped,
                            processed=None if summary.get("interrupted") else True),
              file=sys.stderr)
    if summary.get("interrupted"):   # the shell's 128 + signal number, as the trainers exit
        # a stop before a failure: a supervisor tells a SIGTERM'd run by its 143
        code = 128 + getattr(signal, summary.get("signal") or "SIGINT")
    else:
        code = 1 if skipped else 0
    # A live run's frame limit, too, leaves a read that stalled behind (after WORKER_JOIN_S)
    _exit_now_if_workers_run(code)
    return code


# ffmpeg's encoder of a --codec, as the stats' `video` names the codec
ENCODERS = {"h264": "libx264", "hevc": "libx265"}
# The engines' names for running on the CPU (ONNX Runtime's provider, LiteRT's delegate),
# where --threads counts.
CPU_PROVIDERS = ("CPU", "XNNPACK")


def _slower_step_note(summary: dict, cores: Optional[int] = None,
                      load: Optional[float] = None,
                      machine_cores: Optional[int] = None) -> str:
    """Which kept a live run from its source's rate where it dropped frames ('' where none
    were): sharpening (the model's thread) or writing the video (the caller's, which waits on
    ffmpeg's encoder), each at its mean time a frame, and what makes it faster. The live line
    shows both, but an encoder behind the model read as the model's fault. `cores` (those the
    process may use) and `load` (the host's load average) keep "more --threads" out of the
    advice where the threads already take every core, or other work (another camera's run)
    holds the cores."""
    dropped, latency = summary.get("dropped_frames") or 0, summary.get("latency_ms") or {}
    sharpen = sum((latency.get(k) or {}).get("mean") or 0.0 for k in ("pre", "infer", "post"))
    write = (latency.get("write") or {}).get("mean")
    if not dropped or not sharpen or write is None:
        return ""
    fps = (summary.get("source") or {}).get("fps")
    budget = f", against the source's {1000 / fps:.0f} ms a frame ({fps:g} fps)" if fps else ""
    said = (f"{dropped} frames were dropped: sharpening took {sharpen:.0f} ms a frame and "
            f"writing the video {write:.0f} ms{budget}; ")
    video = summary.get("video") or {}
    if fps and sharpen + write < 1000 / fps:
        # Even one after the other both fit the frame's time: the drops came from stalls
        # (the host busy, a disk's flush) or a feed's bursts, which neither step's speed cures.
        return said + ("both kept up on average, so the frames were dropped in stalls (the "
                       "machine busy with other work) or bursts of the source, not by either "
                       "step's speed")
    if sharpen >= write:
        provider = str((summary.get("backend") or {}).get("provider") or "CPU")
        return said + _sharpening_slower(summary.get("threads"), cores, load,
                                         machine_cores or cores,
                                         provider.startswith(CPU_PROVIDERS),
                                         summary.get("model"))
    if video.get("preset") in PRESETS:
        at = PRESETS.index(video["preset"])
        quicker = [p for p in ("veryfast", "ultrafast") if PRESETS.index(p) < at]
        faster = f"--encoder-preset {' or '.join(quicker)}, " if quicker else ""
        return said + (f"writing the video was the slower ({ENCODERS.get(video['codec'], '')} "
                       f"at --encoder-preset {video['preset']}): {faster}a higher --crf, or "
                       "the default codec (mp4v) keeps up better")
    if video.get("codec") in ("ffv1", "prores"):   # --lossless, --codec prores: the costly
        return said + ("writing the video was the slower: a faster disk, or a codec that "
                       "costs less (mp4v, the default), keeps up better")
    # Already the container's own codec (mp4v, VP8, MPEG-2): no cheaper one to point to.
    return said + ("writing the video was the slower: a faster disk or a smaller frame keeps "
                   "up better")


def _sharpening_slower(threads: Optional[int], cores: Optional[int], load: Optional[float],
                       machine_cores: Optional[int], on_cpu: bool = True,
                       model: Optional[str] = None) -> str:
    """The advice where the model was the slower step. Its own threads count about one a
    thread in the load average, the capture and writer threads one more, so a load above the
    cores by over that is other work's. The load is the whole machine's, so it is held
    against the machine's cores: against the cores this run may use, a run given its own
    (CPUAffinity=, a pod's CPU limit) would take the other cameras' load on theirs for its."""
    said = count(cores or 0, "core")
    if machine_cores and load is not None and load > machine_cores + 1:
        return (f"sharpening was the slower, on a host busier than its cores (load average "
                f"{load:g} on {count(machine_cores, 'core')}): other work, such as other "
                "cameras' runs, took the CPU time, which threads added to this run do not "
                "win back; fewer runs at once, a smaller frame or a faster model keeps up "
                f"better (`{_streams_bench(model)}` measures N cameras here)")
    if not on_cpu:   # a GPU engine's threads are 0 (not the CPU's): --threads is not its
        return "sharpening was the slower: a smaller frame or a faster model keeps up better"
    if cores and threads is not None and (threads or cores) >= cores:
        took = f"--threads {threads}" if threads else "the default thread count"
        return (f"sharpening was the slower ({took} already takes the {said} this "
                "process may use): a smaller frame or a faster model keeps up better")
    return ("sharpening was the slower: a smaller frame, a faster model or more --threads "
            "keeps up better")


def _streams_bench(model: Optional[str]) -> str:
    """The bench of N cameras as a camera box runs it: of the run's own model file, which
    needs no PyTorch there (with no --model it exports the shipped students), and --out."""
    return (f"sharpen bench --out bench/ --model {shlex.quote(model or 'MODEL')} "
            "--streams N")


def _live_left_out_note(summary: dict, asked_fps: float) -> str:
    """Why a live video holds fewer frames than were sharpened: the source gave them faster
    than the video's rate (an MJPEG camera declares none, and FFmpeg guesses 25)."""
    src = summary.get("source") or {}
    kind = src.get("kind") or ""
    video_fps = video_rate(kind, src.get("fps") or 0.0, asked_fps or 0.0) or 30.0
    elapsed = summary.get("elapsed_s") or 0
    sent = f" (about {summary.get('frames_captured', 0) / elapsed:.0f} fps)" if elapsed else ""
    # A rate the source declares: a Y4M header's, or a stream's other than FFmpeg's guess for
    # one that declares none (MJPEG over HTTP), which --fps with it would not change.
    y4m = src.get("format") == "y4m"
    fps = src.get("fps") or 0.0
    declared = fps if y4m or not math.isclose(fps, FFMPEG_GUESSED_FPS) else 0.0
    says, feed = ("its Y4M header declares", "feed") if y4m else ("it declares", "stream")
    if kind in RATE_SETTING_KINDS:
        # Its declared rate is the video's, --fps or not: --fps only asks the camera for one.
        why = (f"than the {video_fps:g} fps it declares, which the video is written at "
               "(a camera may give another rate than the one it says)")
    # --fps 29.97 for a header's 30000:1001 is its rate, as a user writes it
    elif declared and math.isclose(video_fps, declared, rel_tol=1e-3):
        # The declared rate, which the video took: only a source that fell behind and caught
        # up (ffmpeg -re on a loaded machine, a stream back after a drop) gives frames faster.
        why = (f"than the {video_fps:g} fps {says}, which the video is written at: a {feed} "
               "that fell behind sends its frames in bursts")
    elif declared and video_fps < declared:
        # --fps below the rate it declares: the frames past --fps's are left out.
        why = (f"than the video's {video_fps:g} fps (--fps; {says} {declared:g} fps); "
               f"--fps {declared:g}, or none, keeps them")
    elif declared:
        why = (f"than the video's {video_fps:g} fps (--fps, above the {declared:g} fps {says}): "
               f"a {feed} that fell behind sends its frames in bursts")
    else:
        why = (f"than the video's {video_fps:g} fps (a stream that declares no rate, as "
               "MJPEG, is read at FFmpeg's guess of 25); --fps with the source's rate keeps "
               "them")
        if fps and math.isclose(video_fps, fps, rel_tol=1e-3):
            # 25 fps read: the guess, or a stream that declares 25 (a PAL camera's), for which
            # --fps 25 changes nothing. Which one is not told apart: both are said.
            why += (f"; a stream that declares {fps:g} fps and fell behind sends its frames "
                    "in bursts")
    return (f"the video leaves out {summary['left_out_frames']} of the "
            f"{summary.get('frames_processed', 0)} frames sharpened so that it plays in real "
            f"time: the source gave frames faster{sent} {why}")


def _retimed_note(summary: dict, source: str, asked: float = 0.0) -> str:
    """What a video placing a file's frames by their times did to them ('' where nothing): the
    done: line counts the frames sharpened, which the video then does not hold one for one."""
    repeated, left_out = summary.get("repeated_frames", 0), summary.get("left_out_frames", 0)
    if not repeated and not left_out:
        return ""
    fps = (summary.get("source") or {}).get("fps") or 0
    average = (summary.get("source") or {}).get("average_fps")
    peak = (summary.get("source") or {}).get("peak_fps")   # above the video's cap
    if average and asked and abs(asked - fps) > 1e-3 * fps:   # --fps of another rate
        rate = f"{asked:g} fps video (--fps; the clip's peak rate is {peak or fps:g})"
    elif peak:
        rate = (f"{fps:g} fps video (the clip's peak rate of {peak:.4g} capped at {fps:g}; "
                f"{average:.3g} on average; --fps {peak:.4g} keeps every frame)")
    else:
        rate = (f"{fps:g} fps video (the clip's peak rate; {average:.3g} on average)"
                if average else f"{fps:g} fps video")
    did = []
    if repeated:
        did.append(f"repeats the frame before each longer gap ({count(repeated, 'frame')} in "
                   "all)")
    if left_out:
        did.append(f"leaves out {left_out} of the {summary.get('frames_processed', 0)} "
                   "sharpened, each in a frame interval already filled")
    why = ("a variable frame rate, or frames lost to damage" if summary.get("skipped_inputs")
           else "a variable frame rate")
    from .source_spec import shown_url   # an HTTP video's URL: its password masked
    return (f"{shown_url(source)} has frames at uneven times ({why}): the {rate} "
            f"{' and '.join(did)}, so that it keeps their times (and any sound in step)")


def _kept_before_error(summary: Optional[dict], output: Optional[str]) -> str:
    """What a run that failed part-way left (a camera unplugged, a stream gone for good): its
    output holds the frames written before the error, closed cleanly, which the error line
    alone left the user to guess."""
    s = summary or {}
    # What the output holds, not the frames sharpened: a video leaves out frames faster than
    # its rate, and repeats the frame before a drop or a longer gap.
    done = (s.get("frames_processed", 0) - s.get("left_out_frames", 0)
            + s.get("repeated_frames", 0))
    if output is not None and output.strip() == "-":
        done = s.get("stdout_frames", done)
    if done and output is not None and output.strip() == "-":   # a stream: no file holds them
        return f"{count(done, 'frame')} written to stdout before the error"
    if done and s.get("segment"):   # --segment: the output is its segments
        closed = s.get("segments_closed", 0)
        kept = s.get("segment_frames", done)
        pruned = _segments_removed(s)
        were = "were" if pruned else "are"
        if kept < done:   # a segment could not be closed (a full disk): its frames are lost
            return (f"{kept} of the {done} frames written before the error {were} in "
                    f"{count(closed, 'segment')} of {output} (each closed cleanly){pruned}; "
                    "the rest were in a segment that could not be closed (above)")
        return (f"the {done} {'frame' if done == 1 else 'frames'} written before the error "
                f"{were} in {count(closed, 'segment')} of {output}, the last {s['segment']} "
                f"(each closed cleanly){pruned}")
    if not done or not output or not os.path.exists(output):
        return ""
    if s.get("output_replaced") is False:   # discarded (a full disk, a join that failed)
        return f"{output} is as it was before this run, which wrote no video there"
    unit = _unit(s, output)
    kept = s.get("kept_images" if unit == "image" else "resumed_from", 0)
    done += kept if s.get("resumable") else 0
    frames = unit if done == 1 else unit + "s"
    # once the cause is gone (space freed, the mount back), --resume writes only the rest
    again = ("; run the same command with --resume to go on from there"
             if s.get("resumable") else "")
    return (f"{output} holds the {done} {frames} written before the error (closed "
            f"cleanly){again}")


def _peak(summary: dict) -> str:
    """`, peak memory 347 MiB`: what a small board is sized by; '' where it was not read."""
    peak = summary.get("peak_memory_mib")
    return f", peak memory {peak:.0f} MiB" if peak else ""


def _source_named(summary: dict) -> str:
    """The run's source as its log lines name it (`source_label`); "" where none is known."""
    from .source_spec import source_label
    src = summary.get("source") or {}
    return source_label(src["spec"], src.get("kind", "")) if src.get("spec") else ""


def _note_line(summary: dict, note: str) -> str:
    """`sharpen run: NOTE`, a live run's after its source (`sharpen run: cam1: 86 frames were
    dropped ...`): cameras' runs sharing one log end with notes alike, which a file's run
    tells apart by the output each names."""
    named = _source_named(summary) if summary.get("live") else ""
    return f"sharpen run: {named}: {note}" if named else f"sharpen run: {note}"


def _result_line(summary: dict) -> str:
    """`done: N frames from SOURCE, F fps, D dropped[, peak memory M MiB] (engine precision
    on provider[; tiles])`: the source named, as cameras' runs sharing one log end alike."""
    b = summary.get("backend", {})
    where = f" from {named}" if (named := _source_named(summary)) else ""
    tiles = ""
    if summary.get("tile"):
        how = "automatic overlap" if summary.get("overlap_auto") else "overlap"
        tiles = f"; tile {summary['tile']}, {how} {summary['overlap']}"
    elif auto := summary.get("auto_tiled"):   # the frames above the size tiled without --tile
        tiles = f"; {count(auto, 'frame')} in {summary.get('auto_tile', AUTO_TILE)}-pixel tiles"
    n = summary["frames_processed"]
    # a mixed model's float layers (--float-layers): "int8" alone said integer throughout
    floats = b.get("float_layers") or ()
    precision = (f"{b.get('precision')}, float from {', '.join(floats)}, " if floats
                 else f"{b.get('precision')} ")
    return (f"{'stopped' if summary.get('interrupted') else 'done'}: "
            f"{n} frame{'' if n == 1 else 's'}{where}, {summary['throughput_fps']:.1f} fps"
            f"{_over(summary)}, "
            f"{summary['dropped_frames']} dropped{_peak(summary)} ({b.get('name')} {precision}on "
            f"{b.get('provider')}{tiles})")


def _over(summary: dict) -> str:
    """` over 6.5s` (`3m05s`, `1h20m`): the time the `done:` line's rate is over, the model's
    load and warm-up left out; a library's overnight run said its rate alone."""
    from .stats import duration
    if not (seconds := summary.get("elapsed_s")):
        return ""
    if seconds < 0.095:   # a few small photos: "0.0s" said none
        return f" over {max(seconds, 0.001):.2g}s"
    return f" over {seconds:.1f}s" if seconds < 59.95 else f" over {duration(seconds)}"


def _note(message: str) -> None:
    """run_stream's informational lines (a source reconnected...), which the API drops."""
    print(f"note: {message}", file=sys.stderr, flush=True)


def _exit_now_if_workers_run(code: int) -> None:
    """A second Ctrl-C leaves the pipeline's threads behind, possibly inside the engine's
    native code, where letting the interpreter shut down around them aborts the process
    (SIGABRT, no exit code of ours); the output and stats are already closed, so leave now.
    So does a stop during a camera's reopen, whose open, given up, may return into OpenCV."""
    from .pipeline import WORKER_NAMES, _Worker
    from .source_base import open_left_running
    stuck = [t.name for t in threading.enumerate()
             if isinstance(t, _Worker) and t.running and t.name in WORKER_NAMES]
    if open_left_running():
        stuck.append("source-open")
    if stuck:
        from .console import end_stderr_windows
        end_stderr_windows()   # a capture thread inside a decode holds fd 2 aside
        print(f"sharpen run: not waiting for the {' and '.join(stuck)} "
              f"thread{'s' if len(stuck) > 1 else ''}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _run_stream_named(run_stream, args: argparse.Namespace, options, defaulted: bool) -> dict:
    """run_stream into args.output. A default name another run started at the same moment took
    (its lock came between this run's look at the name and its own lock: two runs of clips of
    one name side by side) is passed over for the next, as it would have been a moment later;
    it was refused, and said to be a folder that cannot be written."""
    from .sinks import SinkError   # the handler's: loaded by now
    taken: set[str] = set()
    while True:
        try:
            return run_stream(args.model, args.source, args.output, options, flags=True,
                              note=_note)
        except SinkError as exc:
            if (not (defaulted and getattr(exc, "output_locked", False))
                    or getattr(exc, "stats_locked", False) or len(taken) >= 10):
                raise
            taken.add(args.output)
            args.output = _default_output(args.source, taken)


def _default_output(source: str, taken: Optional[set[str]] = None) -> str:
    """runs/sharpen/<name>[.mp4 for videos], like the predict folders of detection tools;
    <name>2, <name>3... when an earlier run's result is there, so a rerun never replaces it
    (or a live run's lock, or the name is in `taken`)."""
    from pathlib import Path

    from .imageio import is_image, is_video
    from .source_spec import spec_folder
    from .sources import is_glob, spec_kind
    p = Path(source)
    if spec_kind(source) == "stream":   # named by the URL's file; a query is not a glob
        stem, ext = _url_output_name(source)
    elif spec_kind(source) == "stdin":   # '-': Y4M piped in
        stem, ext = "stdin", ".mp4"
    elif is_glob(source):   # several images, so a folder
        folder = Path(spec_folder(source)).name   # "photos" of 'photos/**/*', not "**"
        stem, ext = "".join(c if c.isalnum() else "_" for c in folder or "images"), ""
    elif is_video(p):
        stem, ext = p.stem, ".mp4"
    elif is_image(p):
        stem, ext = p.stem, ".png"
    else:   # a camera, a GStreamer pipeline (named without a URL's password)
        from .sources import shown_url
        name = p.name if p.exists() else "".join(c if c.isalnum() else "_"
                                                 for c in shown_url(source))[:40]
        stem, ext = name or "stream", "" if p.is_dir() else ".mp4"
    root = Path("runs/sharpen")
    sep = "-" if stem[-1:].isdigit() else ""   # clip1 -> clip1-2, not clip12
    out, n = root / f"{stem}{ext}", 2
    # A live run's name holds no file until its output closes (a temp name till then), only
    # its lock (run_lock.output_lock): a second camera run took the same name and was refused.
    # A killed run's lock file is no live run's: its name is taken again, and the recording
    # that run left seen to (kept aside), which a run under the next name never looked for.
    from .run_lock import output_in_use
    while out.exists() or output_in_use(out) or str(out) in (taken or ()):
        out, n = root / f"{stem}{sep}{n}{ext}", n + 1
    return str(out)


def _url_output_name(url: str) -> tuple[str, str]:
    """(stem, extension) of the default output for a URL: an image for the image a URL's
    path names (read as that image), else a video named after its file or the URL itself
    (without its password)."""
    from pathlib import Path
    from urllib.parse import unquote, urlsplit

    from .imageio import is_video
    from .sources import shown_url, url_image_name
    from .url_image import portable_name
    if image := url_image_name(url):
        return Path(image).stem, ".png"
    # As an image URL's: https://host/a%3Ab.mp4 was a:b.mp4, on Windows a stream of a file a.
    file = Path(portable_name(Path(unquote(urlsplit(url).path).replace("\\", "/")).name))
    if is_video(file) and file.stem:
        return file.stem, ".mp4"
    return "".join(c if c.isalnum() else "_" for c in shown_url(url))[:40] or "stream", ".mp4"


# The usage errors' pointer: `sharpen run --help`'s epilog has more (sharpen/help_text.py).
RUN_EXAMPLE = "sharpen run --model export/student-fast.onnx --source in.mp4 --out out.mp4"


class _RunParser(CommandParser):
    def first_example(self, command: str) -> Optional[str]:
        return RUN_EXAMPLE if command == "run" else None


def main(argv: Optional[list[str]] = None) -> int:
    """`python -m runtime.cli run ...`: the runtime alone, for devices without the training
    code (a unit's ExecStart), with `sharpen run`'s usage errors, signals and exit codes."""
    from .locale_text import unspellable_escaped, utf8_file_names
    if argv is None:
        utf8_file_names()
    open_closed_std_fds()
    unspellable_escaped()
    report_fatal_errors()   # a delegate's crash inside a quiet_native_stderr window says so
    parser = _RunParser(prog="sharpen")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_commands(sub)
    from .shell_words import home_expanded
    try:
        args, extra = parser.parse_known_args(
            home_expanded(list(sys.argv[1:] if argv is None else argv)))
    except KeyboardInterrupt as e:
        print("sharpen: interrupted", file=sys.stderr)
        return interrupt_exit_code(e)
    if extra:   # from the command's parser, as `sharpen` says it: `sharpen run: error: ...`
        sub.choices.get(getattr(args, "command", None), parser).error(
            f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .warn import shown_once_as_lines
    try:
        with stop_signals_as_interrupt(), shown_once_as_lines():
            return int(args.func(args) or 0)
    except KeyboardInterrupt as e:
        with said_after_hang_up():
            print(interrupted_message(args.command, e, False), file=sys.stderr)
        return interrupt_exit_code(e)


if __name__ == "__main__":
    sys.exit(main())
