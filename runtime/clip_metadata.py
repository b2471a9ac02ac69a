"""A video file source's timecode and container metadata, carried into its sharpened video.

An NLE (Resolve, Premiere) conforms a clip to its timeline by its start timecode and lists it
by its creation time; OpenCV's writer writes neither. The ffmpeg copies that add the sound or
the colour tags (runtime/audio.py, runtime/colour_tags.py) take the source as an input too:
`metadata_options` maps its global metadata (creation time, title, a phone's location) and
sets the timecode, which ffmpeg keeps with the source's video stream and so would not copy.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

# ffmpeg lists a MOV/MP4 tmcd track's or an MXF's start timecode as `timecode : ...`, an MKV's
# as `TIMECODE : ...` (a tag of the file's own, which -map_metadata copies as it is); a
# drop-frame one (29.97, 59.94 fps) is separated by ';' (or '.') before its frames.
_FIELDS = r"(\d{2}):(\d{2}):(\d{2})([:;.])(\d{2})"
_TIMECODE = re.compile(rf"^\s*timecode\s*:\s*{_FIELDS}\s*$", re.M | re.I)
_BARE = re.compile(rf"{_FIELDS}$")


_CREATED = re.compile(r"^\s*creation_time\s*:", re.M)
# The containers written here that hold a start timecode (an MP4/MOV tmcd track, a Matroska tag)
TIMECODE_EXTS = (".mov", ".mp4", ".mkv")
# A phone's place among the tags ffmpeg lists: QuickTime's (`location`, `location-eng`), its
# mdta key (an iPhone's), or a Matroska's upper-cased copies of either.
_LOCATION = re.compile(r"^\s*(location(-\w+)?|com\.apple\.quicktime\.location\.iso6709)\s*:",
                       re.M | re.I)
# The containers written here whose copy keeps it (ffmpeg's MPEG-TS and AVI muxers drop it)
LOCATION_EXTS = (".mov", ".mp4", ".mkv", ".webm")
# The options of a copy that carries none of the source's metadata (--no-metadata): no global
# tags (a phone's location, creation time, title, device), none of its streams' (the sound's
# creation time), no chapters, and so no timecode either.
STRIPPED = ["-map_metadata", "-1", "-map_chapters", "-1"]


def _listing(source: str | os.PathLike, ffmpeg: str) -> str:
    from .audio import source_listing
    return source_listing(source, ffmpeg) or ""


def source_timecode(source: Optional[str | os.PathLike], ffmpeg: str,
                    listing: Optional[str] = None) -> Optional[str]:
    """The start timecode the video file `source` says (`HH:MM:SS:FF`), or None. `listing`:
    ffmpeg's listing of it, where probed already."""
    if listing is None:
        if source is None or not Path(source).is_file():
            return None
        listing = _listing(source, ffmpeg)
    found = _TIMECODE.search(listing)
    if not found:
        return None
    h, m, s, sep, f = found.groups()
    return f"{h}:{m}:{s}{sep}{f}"


def shifted_timecode(timecode: str, seconds: float, fps: float) -> Optional[str]:
    """`timecode` moved on by `seconds` of a `fps` video (a segment that starts part-way into
    its source); None for a drop-frame one moved on, whose frame numbers skip."""
    found = _BARE.match(timecode)
    if not found or seconds <= 0:
        return timecode if found else None
    h, m, s, sep, f = found.groups()
    if sep != ":" or fps <= 0:
        return None
    base = max(1, round(fps))   # a timecode counts 30 frames a second at 29.97 fps
    frames = ((int(h) * 60 + int(m)) * 60 + int(s)) * base + int(f) + round(seconds * fps)
    frames %= 24 * 3600 * base   # a timecode wraps at midnight
    secs, f2 = divmod(frames, base)
    return f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}:{f2:02d}"


def metadata_options(source: Optional[str | os.PathLike], ffmpeg: str, source_input: int,
                     start: float = 0.0, fps: float = 0.0, said_only: bool = False,
                     part: bool = False) -> list[str]:
    """ffmpeg output options that carry `source`'s global metadata and timecode (shifted by
    `start` seconds at `fps`) into a copy that reads it as input number `source_input`. `fps`:
    0 for a video that plays the source's frames at another rate (--fps), whose frames the
    timecode would not count: it gets none.
    `said_only`: [] where neither a timecode is kept nor a creation time said (a copy made
    for them alone is then not worth its time). `part`: the copy is a stretch of the source (a
    --segment file), which the source's chapters, timed from its start, do not fit."""
    if source is None or not Path(source).is_file():
        return []
    # ffmpeg copies the chapters of the first input that has any: the source's.
    options = ["-map_metadata", str(source_input), *(["-map_chapters", "-1"] if part else [])]
    listing = _listing(source, ffmpeg)
    timecode = source_timecode(source, ffmpeg, listing)
    shifted = shifted_timecode(timecode, start, fps) if timecode and fps > 0 else None
    if said_only and shifted is None and not _CREATED.search(listing.split("Stream #")[0]):
        return []
    if timecode is None:
        return options
    # Where it cannot be moved on, an empty value drops the one the file's tags would carry.
    return options + ["-timecode", shifted] if shifted else options + ["-metadata", "timecode="]


def source_location(source: str | os.PathLike, ffmpeg: str) -> bool:
    """Whether the video file `source`'s own tags say where it was filmed."""
    return bool(_LOCATION.search(_listing(source, ffmpeg).split("Stream #")[0]))
