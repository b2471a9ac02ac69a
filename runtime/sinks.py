"""Frame sinks: what every sink is (`Sink`, `SinkError`), several at once (`MultiSink`), none
(`NullSink`), and which one an output names (`output_sink`, `refuse_unwritten_format`).

Every sink takes (original, sharpened, name) per frame and must be closed. Each kind lives in
a module of its own: `video_sink` (a video file), `image_sink` (an image folder or one image),
`compare_sink` (--compare's before/after frames), `window_sink` (--show's window); the checks
of an output's path, which every writing command uses, are in `output_paths`.
"""
from __future__ import annotations

import os
import re
import stat
from fractions import Fraction
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .imageio import IMAGE_EXTS, VIDEO_EXTS
from .options import option
from .source_spec import RAW_STDIN
from .warn import warn


class SinkError(RuntimeError):
    """An output that cannot be opened or written. The message is meant for the user as is."""


class Sink:
    """Where `run_stream` puts each frame; an app subclasses it to get the frames itself.
    write() is called in order, from the thread that called run_stream, with the original and
    the sharpened frame (HxWx3 BGR, uint8 or uint16) and the frame's name; close() once."""

    def write(self, original: np.ndarray, sharpened: np.ndarray, name: str) -> None:
        """Take one frame: the source's frame (grayscale or BGRA converted to BGR) and the
        sharpened one, both HxWx3 BGR of the same size, uint8 or uint16 (the same depth, but
        for a 16-bit frame through a TFLite INT8 model: uint8), and its name (an image's file
        name, else frame_000000, frame_000001, ...)."""
        raise NotImplementedError

    def repeat_last(self, n: int) -> int:
        """Show the last frame for `n` more frame intervals (frames a live source dropped), so
        that a recording keeps real time. Returns the frames added (0: not a timed output)."""
        return 0

    def close(self) -> None:
        """Called once after the last frame (also after an error or Ctrl-C)."""


class NullSink(Sink):
    """No output (benchmarking)."""

    def write(self, original: np.ndarray, sharpened: np.ndarray, name: str) -> None:
        pass


def raised_first(errors: Sequence[BaseException]) -> BaseException:
    """The error a run raises of those it met: the first, unless an interrupt (Ctrl-C, an
    app's SystemExit) came after it, which must still reach the caller: an app's `except
    SourceError: continue` went on to its next stream at a Ctrl-C during the close. The
    interrupt then carries the first error as its context, as Python chains them."""
    first = errors[0]
    stop = next((e for e in errors if not isinstance(e, Exception)), first)
    if stop is not first and stop.__context__ is None:
        stop.__context__ = first
    return stop


class MultiSink(Sink):
    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = sinks

    def write(self, original: np.ndarray, sharpened: np.ndarray, name: str) -> None:
        for s in self.sinks:
            s.write(original, sharpened, name)

    def repeat_last(self, n: int) -> int:
        return max((s.repeat_last(n) for s in self.sinks), default=0)

    def close(self) -> None:
        # Close all, even if one fails or a Ctrl-C lands in one, so the video file is still
        # finalised and the window closed.
        errors: list[BaseException] = []
        for s in self.sinks:
            try:
                s.close()
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)
        if errors:
            raise raised_first(errors)


# Picture and animation formats someone may name as --out expecting one file of that kind,
# which no writer here makes (OpenCV writes GIF from 4.11 only, and no animation at all): a
# folder of PNG frames under such a name was not what they asked for. Raw H.264/HEVC streams
# are read as inputs, but their muxers take only those codecs, which pip's OpenCV cannot
# encode: the writer failed at the first frame, after the model and the source had opened.
UNWRITTEN_FORMATS = {".gif": "GIF", ".apng": "APNG", ".avif": "AVIF", ".heic": "HEIC",
                     ".heif": "HEIF", ".jxl": "JPEG XL", ".h264": "raw H.264 stream",
                     ".h265": "raw HEVC stream", ".hevc": "raw HEVC stream"}
VIDEO_OUTPUT_EXTS = VIDEO_EXTS.difference(UNWRITTEN_FORMATS)


# The last element of a GStreamer pipeline that writes (filesink, autovideosink, v4l2sink):
# a folder's name with a '!' in it (Wow!, take 2!) ends in no such word.
_WRITER_SINK = re.compile(r"\s*[\w-]*sink\b")


def _fed_from_a_pipe(output: str, flags: bool, source: object = None) -> Optional[str]:
    """Why `output` is no file or folder, and the pipe that feeds it, for a V4L2 device or a
    GStreamer writer pipeline; None for any other. --out /dev/video10 (a v4l2loopback device
    whose module was not loaded) made a folder of PNGs in /dev, and `appsrc ! ... ! filesink
    location=a.mkv` a video file named after the pipeline: no writer here opens either.
    A raw:WxH[@FPS] `source` makes --out - raw BGR frames, so the pipe named reads those."""
    text = output.strip()
    raw = RAW_STDIN.match(source.strip()) if isinstance(source, str) else None
    if raw:
        w, h, fps = int(raw.group(1)), int(raw.group(2)), raw.group(3)
        rate = Fraction(float(fps)).limit_denominator(1001) if fps else None
        ffmpeg_in = f"-f rawvideo -pix_fmt bgr24 -s {w}x{h}{f' -r {fps}' if fps else ''}"
        # Without plane-strides GStreamer reads rows padded to 4 bytes: an odd width askew.
        gst_in = (f"rawvideoparse format=bgr width={w} height={h} 'plane-strides=<{3 * w}>'"
                  f"{f' framerate={rate.numerator}/{rate.denominator}' if rate else ''}")
    else:
        ffmpeg_in, gst_in = "-f yuv4mpegpipe", "y4mdec"
    if re.fullmatch(r"/dev/video\d*", text):
        what, feed = "a V4L2 device", f"ffmpeg {ffmpeg_in} -i - -f v4l2 -pix_fmt yuv420p {text}"
    elif "!" in text and not os.path.lexists(text) and (
            re.match(r"appsrc\b", text) or _WRITER_SINK.match(text.rsplit("!", 1)[1])):
        rest = re.sub(r"^appsrc\b[^!]*!\s*", "", text)
        what, feed = "a GStreamer pipeline", f"gst-launch-1.0 -q fdsrc ! {gst_in} ! {rest}"
    else:
        return None
    written = "raw BGR frames" if raw else "Y4M video"
    how = (f"pipe --out - ({written}) into it: sharpen run ... --out - | " if flags else
           "give a runtime.Sink that writes to it (sharpen run pipes --out - into it: ... | ")
    return f"{what} is not written here; {how}{feed}{'' if flags else ')'}"


def _device_or_pipe(path: str | os.PathLike) -> bool:
    """Whether `path` is there and neither a file nor a folder (a character device, a FIFO)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def refuse_unwritten_format(output: str | os.PathLike, flags: bool = False,
                            source: object = None) -> None:
    """SinkError naming the option when `output` names a format no sink writes (.gif), with
    the extensions that are written, or a V4L2 device or GStreamer pipeline, with the pipe
    that feeds one (from `source`'s --out -): said before the model loads or the source
    opens."""
    piped = _fed_from_a_pipe(os.fspath(output), flags, source)
    if piped:
        raise SinkError(f"{option('output', output, flags)}: {piped}")
    if os.fspath(output).strip() != "-" and _device_or_pipe(output):
        # /dev/null for a run that writes nothing, a FIFO a program reads: neither takes a
        # folder of images or a video file, and stdout redirected there is the way in.
        path = os.fspath(output)
        how = f"--out - > {path}" if flags else f"output='-', stdout redirected to {path},"
        raw = isinstance(source, str) and RAW_STDIN.match(source.strip())
        raise SinkError(f"{option('output', output, flags)} is a device or pipe, not a file or "
                        f"folder: {how} writes {'raw BGR frames' if raw else 'Y4M video'} "
                        "into it")
    p = Path(output)
    fmt = UNWRITTEN_FORMATS.get(p.suffix.lower())
    if fmt is None:
        return
    video = option("output", p.with_suffix(".mp4").name, flags)
    raise SinkError(f"{option('output', p, flags)}: {fmt} is not an output format; give a "
                    f"video file ({', '.join(sorted(VIDEO_OUTPUT_EXTS))}), an image file for a "
                    f"single image ({', '.join(sorted(IMAGE_EXTS))}) or a folder for images; for a "
                    f"{fmt}, write a video ({video}) and convert it: ffmpeg -i "
                    f"{p.with_suffix('.mp4').name} {p.name}")


def output_sink(output: str | os.PathLike, fps: float, single_image: bool,
                input_dirs: Sequence[str | os.PathLike] = (),
                input_files: Sequence[str | os.PathLike] = (), flags: bool = False,
                lossless: bool = False, segment: tuple[float, int, float] = (0, 0, 0)) -> Sink:
    """Pick the sink for the output: a video extension gives a video file, an image extension
    with a single image input gives that file, anything else is a folder of images. An output
    that is an input folder or file is refused. Messages name run_stream's `output=`, or with
    `flags` the --out of `sharpen run`. `lossless`: a video in FFV1 (.mkv, .avi only); images
    are written losslessly anyway (PNG, TIFF; a JPEG as asked). `segment`: (seconds, the most
    kept, the most GB kept) cuts a video into files of that many seconds (segment_sink)."""
    # Imported here: those modules build on Sink and SinkError, from this one.
    from .image_sink import ImageSink
    from .output_paths import refuse_overwriting_inputs
    from .video_sink import VideoFileSink
    p = Path(output)
    ext = p.suffix.lower()
    named = option("output", p, flags)
    refuse_unwritten_format(p, flags)
    try:
        refuse_overwriting_inputs(p, input_dirs, input_files, what=named)
    except ValueError as e:
        raise SinkError(str(e)) from None
    if ext in (*VIDEO_EXTS, *IMAGE_EXTS) and p.is_dir():
        # Found at the end otherwise: the finished file cannot take a folder's name.
        raise SinkError(f"{named} is a folder; give another file name, or a folder path "
                        f"without the {ext} extension for a folder of images")
    if ext in VIDEO_EXTS and segment[0]:
        from .segment_sink import SegmentSink
        return SegmentSink(p, fps, segment[0], segment[1], flags=flags, lossless=lossless,
                           keep_gb=segment[2])
    if ext in VIDEO_EXTS:
        return VideoFileSink(p, fps, flags=flags, lossless=lossless)
    if ext in IMAGE_EXTS:
        if not single_image:
            # (A one-frame video said "several frames".)
            raise SinkError(f"{named} is an image file but the source is not a single image "
                            "(a video, camera, stream or several images): give a folder or a "
                            "video file (.mp4)")
        return ImageSink(p, single_file=True, flags=flags)
    if p.exists() and not p.is_dir():
        raise SinkError(f"{named} exists and is not a folder")
    if ext and not p.exists():
        # A mistyped video extension would otherwise become a folder without a word.
        warn(f"{named}: {ext} is not a video or image extension this tool writes; writing a "
             "folder of images there")
    return ImageSink(p, flags=flags)

