"""How a message names one of the runtime's options: as the keyword a Python caller gave
(`output=x.mp4`, `tile`), or, where the `sharpen` command line called (`flags`), as its flag
(`--out x.mp4`, `--tile`). One rule for errors, warnings and notes alike. Also the defaults
that `sharpen run --help` names, so that building its parser imports nothing heavy, and which
values a numeric option takes (`is_number`), for the runtime's, export's and the students'
checks alike."""
from __future__ import annotations

from numbers import Integral, Real

# The overlap of neighbouring tiles, in pixels, for a model whose receptive field is unknown
# (`sharpen run --tile` without --overlap, an export that did not record it). Here, not in
# tiling.py, because `sharpen run --help` names it: tiling imports numpy, which the command
# line must not load before a handler runs (about 0.2 s of `--help` on a desktop CPU, more
# on a small device).
OVERLAP = 32

# `sharpen run` without --tile tiles a frame above AUTO_TILE_PIXELS in AUTO_TILE-pixel tiles.
# Whole, a frame is held as float copies, 85-120 bytes a pixel (README, Peak memory, has the
# measured figures): the rule keeps that under 1 GiB at the upper figure, about 8.9 MP, so a
# 4K frame stays whole and a 12 or 24 MP photo is tiled, which also runs faster.
WHOLE_FRAME_BYTES_PER_PIXEL = 120
AUTO_TILE_PIXELS = (1 << 30) // WHOLE_FRAME_BYTES_PER_PIXEL
AUTO_TILE = 512

# `--no-exif`, worded once for `sharpen run` and `sharpen teacher`, which both keep a photo's
# EXIF in its output.
NO_EXIF_HELP = ("write image outputs without their photos' EXIF (capture date, camera, GPS "
                "position); the colour profile is kept")
# `--no-metadata`, worded once for `sharpen run` and `sharpen teacher`: what identifies where,
# when and with what a source was filmed, left out of every output (README: metadata kept).
NO_METADATA_HELP = ("write outputs without their sources' metadata: a photo's EXIF (capture "
                    "date, camera, GPS position), a video's container tags (location, "
                    "creation time, title, device) and timecode; the colour profile, colour "
                    "tags and sound are kept (default: all kept, for a catalogue or an NLE)")

# x264's and x265's speed presets (`sharpen run --encoder-preset`), fastest first: a faster one
# writes a larger file at one CRF. A file's encode waits for the model and may take its time;
# a live one must keep up with the camera beside the model: `medium`, on one core, held a
# 1280x720@25 recording to 6.3 fps where mp4v kept 21.7 (README: codecs of video outputs), and
# `veryfast` is where live encoders (OBS, ffmpeg's streaming guide) start. Here for --help.
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
           "veryslow")
FILE_PRESET, LIVE_PRESET = "medium", "veryfast"

# run_stream's keywords whose `sharpen run` flag has another name.
_FLAGS = {"output": "--out", "stats_path": "--stats", "reconnect_attempts": "--reconnect",
          "exif": "--no-exif", "metadata": "--no-metadata"}


def option(name: str, value: object = None, flags: bool = False) -> str:
    """run_stream's option `name` (with `value`) as a message names it: the keyword a Python
    caller gave (`output=x.mp4`, `show=True`; `tile` without a value), or with `flags` the flag
    of `sharpen run` (`--out x.mp4`, `--show`, `--tile`)."""
    if not flags:
        return name if value is None else f"{name}={value}"
    flag = _FLAGS.get(name, "--" + name.replace("_", "-"))
    # A keyword a --no-X flag turns off (exif=False) is named as that flag alone.
    off = value is False and flag.startswith("--no-")
    return flag if value is None or value is True or off else f"{flag} {value}"


def is_number(value: object, whole: bool = True) -> bool:
    """Whether `value` is one a numeric option takes: an integer (numpy's too) where `whole`,
    else any real number. Never a bool, though Python counts one as an integer: True ran as a
    tile of 1 pixel. A string is not one either: "2" failed later, in Python's words."""
    return not isinstance(value, bool) and isinstance(value, Integral if whole else Real)


# Sources whose own rate is the video's: a camera is only asked for --fps and may give another,
# and a GStreamer pipeline sets its own. Elsewhere --fps is the user's word over the source's
# (for a stream, often FFmpeg's guess of 25).
RATE_SETTING_KINDS = ("camera", "v4l2", "gstreamer")
# The rate FFmpeg gives a stream that declares none (MJPEG over HTTP).
FFMPEG_GUESSED_FPS = 25.0


def video_rate(kind: str, declared: float, asked: float) -> float:
    """The rate a video of a source of `kind` declaring `declared` fps is written at, --fps
    `asked` (0: none): where neither gives one, 0 (the caller's default)."""
    if kind in RATE_SETTING_KINDS:
        return declared or asked or 0.0
    return asked or declared or 0.0
