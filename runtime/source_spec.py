"""A source's command-line spelling, read without opening it: the kind of source it names
(`spec_kind`), how messages show it (`shown_url`: a URL's password masked), and whether a
GStreamer pipeline reads a file (`pipeline_reads_file`)."""
from __future__ import annotations

import os
import re
from pathlib import Path

from .imageio import IMAGE_EXTS, VIDEO_EXTS, shown_path


_SYNTH = re.compile(r"^synthetic(?::(\d+)x(\d+))?(?:@(\d+(?:\.\d+)?))?$")
# Raw BGR frames on stdin (ffmpeg -f rawvideo -pix_fmt bgr24 -), which carry no size or rate.
RAW_STDIN = re.compile(r"^raw:(\d+)x(\d+)(?:@(\d+(?:\.\d+)?))?$")


# GStreamer elements that read a file or a file URI: such a pipeline ends; any other source
# element (nvarguscamerasrc, v4l2src, rtspsrc, ...) is a camera or stream that can come back.
_GST_FILE_SOURCES = re.compile(r"(^|!)\s*(filesrc|multifilesrc|splitfilesrc)\b"
                               r"|\buri\s*=\s*[\"']?file:", re.IGNORECASE)


def pipeline_reads_file(pipeline: str) -> bool:
    """Whether a GStreamer pipeline's source reads a file (filesrc, uridecodebin uri=file:...)."""
    return bool(_GST_FILE_SOURCES.search(pipeline))


def is_glob(spec: str) -> bool:
    """Whether a source names images by a pattern ('photos/*.jpg'), not a file or folder that is
    there: brackets are common in Windows and macOS names ("clip [1080p].mp4"), which glob
    read as a character class matching nothing."""
    return any(c in spec for c in "*?[") and not os.path.exists(spec)


def spec_folder(spec: str) -> str:
    """The folder a spelling names its file or images in: a glob's is the one above its first
    pattern ("photos" of the README's "photos/**/*", whose parent "photos/**" is no folder);
    a folder that is there keeps its brackets ("[raw] photos/*.png"). '' for none."""
    folder = os.path.dirname(spec)
    while folder and not os.path.isdir(folder) and any(c in folder for c in "*?["):
        folder = os.path.dirname(folder)
    return folder


def _names_a_path(spec: str) -> bool:
    """Whether a spelling with '!' is a file's, not a GStreamer pipeline's: one that is there
    ("Wow!.mp4"), one in a folder that is there ("Wow!/*.png", "Wow!/**/*", a mistyped
    "clips/Wow!.mp4"), or one with an image or video extension (a pipeline ends in its
    appsink)."""
    folder = spec_folder(spec)
    return (os.path.exists(spec) or bool(folder) and os.path.isdir(folder)
            or Path(spec).suffix.lower() in IMAGE_EXTS | VIDEO_EXTS)


def spec_kind(spec: str) -> str:
    """The kind of source `open_source` makes of a spelling, without opening it: synthetic,
    camera, v4l2, gstreamer, stream, images, video or stdin ('-': Y4M piped in; raw:WxH[@FPS]:
    raw BGR frames)."""
    spec = str(spec).strip()
    if spec == "-" or RAW_STDIN.match(spec):
        return "stdin"
    if _SYNTH.match(spec):
        return "synthetic"
    if spec.isdecimal():   # not isdigit: int() refuses '²', which is a digit to it
        return "camera"
    if spec.startswith("/dev/video"):
        return "v4l2"
    if "!" in spec and not _names_a_path(spec):
        return "gstreamer"
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", spec):
        return "stream"
    p = Path(spec)
    if p.is_dir() or is_glob(spec) or p.suffix.lower() in IMAGE_EXTS:
        return "images"
    return "video"


# A URL's scheme and authority, in a --source URL or inside a GStreamer pipeline (rtspsrc
# location=rtsp://...): the authority ends at the path, query, fragment or a space; but a
# user's password typed unencoded (`admin:P#ss?1@camera`) runs to the last @ before the
# path, as the one run that fails because of it printed it.
_URL_AUTHORITY = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)"
                            r"([^/?#\s@:]*:[^/\s]*@[^/?#\s@]*|[^/?#\s]*)")


# A word in a parameter's name that says it holds a secret: pas (pass, password, and the
# loginpas= of many cheap cameras' CGI), pw (pwd=, GStreamer's user-pw= and proxy-pw=),
# token (access_token=), key (apiKey=), sig (X-Amz-Signature=)... A name that merely holds
# one (keyframe=, author=) is masked too, which costs only what the message shows.
_SECRET_WORDS = r"(?:pas|pw|token|secret|key|auth|sig|cred|session)"

# A query or fragment parameter so named, or named `p` (?u=admin&p=...), as many IP
# cameras' CGI URLs (videostream.cgi?user=admin&pwd=...) and signed URLs carry one: its
# value, up to the next parameter, the fragment, a quote or a space (a GStreamer pipeline's
# next property).
_SECRET_PARAM = re.compile(rf"([?&#;])([^=&#\s]*{_SECRET_WORDS}[^=&#\s]*|p)=[^&#\s\"']*",
                           re.IGNORECASE)
# The same in a URL's path, as Xiongmai (XMEye) DVRs and cameras take it
# (rtsp://host:554/user=admin_password=..._channel=1_stream=0.sdp): a name of letters after
# a `_` or `/`, its value up to the next `_`.
_SECRET_IN_PATH = re.compile(rf"([_/])([a-z-]*{_SECRET_WORDS}[a-z-]*)=[^_&#?/\s\"']*",
                             re.IGNORECASE)
# A GStreamer pipeline's property so named (rtspsrc user-pw=..., souphttpsrc proxy-pw=...),
# a quoted value whole.
_SECRET_PROPERTY = re.compile(rf"(^|\s)([\w-]*{_SECRET_WORDS}[\w-]*)\s*=\s*"
                              r"(?:\"[^\"]*\"|'[^']*'|[^\s!]*)", re.IGNORECASE)


def shown_url(spec: str) -> str:
    """A source as messages, stats and file names show it: the password of each URL's user
    info (rtsp://admin:PASSWORD@camera/...), which IP cameras take there, and the value of
    each query parameter named for a secret (?pwd=, ?token=), replaced by ***, in a stream
    URL and in a GStreamer pipeline's (rtspsrc location=...) alike, and the value of a
    pipeline's property so named (user-pw=), so that it does not end up in logs, --stats
    files or runs/sharpen/ names."""
    def masked(m: re.Match) -> str:
        if "@" not in m.group(2):
            return m.group(0)
        userinfo, host = m.group(2).rsplit("@", 1)   # a password may hold an unencoded @
        if ":" not in userinfo:
            return m.group(0)
        return f"{m.group(1)}{userinfo.split(':', 1)[0]}:***@{host}"
    spec = _URL_AUTHORITY.sub(masked, spec)
    if "!" in spec:   # a GStreamer pipeline, as spec_kind tells one (without a stat)
        spec = _SECRET_PROPERTY.sub(lambda m: f"{m.group(1)}{m.group(2)}=***", spec)
    if "://" not in spec:   # a file name's own ?, & or # is no query
        return spec
    spec = _SECRET_PARAM.sub(lambda m: f"{m.group(1)}{m.group(2)}=***", spec)
    return _SECRET_IN_PATH.sub(lambda m: f"{m.group(1)}{m.group(2)}=***", spec)


def source_label(spec: str, kind: str = "") -> str:
    """A source as a log's lines name it (`done: 40 frames from yard.mp4`), so that several
    cameras' runs writing to one log are told apart: as messages show it (`shown_url`), a
    GStreamer pipeline by its source element (its caps and converters are alike in every
    camera's), stdin as stdin and a camera index as `camera N`; a control character in a
    file's name escaped (`shown_path`), as a newline split the line it names."""
    kind = kind or spec_kind(spec)
    if kind == "stdin":
        return "stdin"
    if kind == "camera":
        return f"camera {spec}"
    shown = shown_url(spec)
    if kind == "gstreamer":
        shown = shown.split("!", 1)[0].strip() or shown
    return shown_path(shown)
