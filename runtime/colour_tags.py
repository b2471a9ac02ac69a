"""The colour tags of a written video: which YUV matrix and range its pictures are in.

OpenCV's writer converts the BGR frames to YUV with libswscale's defaults, BT.601's matrix in
limited range, and tags nothing; no writer option of pip's OpenCV (5.1) sets either, and its
OPENCV_FFMPEG_WRITER_OPTIONS do not reach the stream's colour fields. A player that takes
untagged HD video as BT.709, as most do for 720p and 1080p (mpv, browsers), showed such a
video's colours shifted beside its source (a bar of green 185 as 156). The matrix is not
OpenCV's to change, so it is said: an ffmpeg stream copy writes it into the container (MP4,
MOV, MKV, WebM) or into an MPEG-2 stream's sequence headers (MPEG-TS, MPEG program streams),
where the sound's copy or a resumed run's join does not already copy the video. AVI, FLV, WMV
and Ogg hold no colour tags, nor do .m4v and .3gp as ffmpeg writes them. A source's primaries
and transfer, which the frames keep (OpenCV's capture converts by the source's own matrix), are
copied where it says them and they are SDR: an HDR source's frames are written as SDR
(runtime/hdr.py), which its tags would contradict.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

from .audio import TIMED_OUT, _run, copy_failure, source_listing

WRITER_MATRIX = "smpte170m"   # BT.601, libswscale's default (bt470bg has the same numbers)
WRITER_MATRIX_CODE = 6        # ITU-T H.273
UNSPECIFIED = 2
# ffmpeg's names of the H.273 codes that an MPEG-2 sequence header carries as numbers
PRIMARIES = {"bt709": 1, "bt470m": 4, "bt470bg": 5, "smpte170m": 6, "smpte240m": 7, "film": 8,
             "bt2020": 9, "smpte428": 10, "smpte431": 11, "smpte432": 12, "jedec-p22": 22}
TRANSFERS = {"bt709": 1, "gamma22": 4, "gamma28": 5, "smpte170m": 6, "smpte240m": 7,
             "linear": 8, "log100": 9, "log316": 10, "iec61966-2-4": 11, "bt1361e": 12,
             "iec61966-2-1": 13, "bt2020-10": 14, "bt2020-12": 15}
HDR_TRANSFERS = ("smpte2084", "arib-std-b67")
# ffmpeg writes the colr box of MP4 and MOV only: its iPod (.m4v) and 3GP muxers leave it out
# (a warning, and the copy succeeds).
COLR_EXTS = (".mp4", ".mov")
CONTAINER_TAGGED = (*COLR_EXTS, ".mkv", ".webm")
MPEG2_TAGGED = (".ts", ".mts", ".m2ts", ".mpg", ".mpeg")
_VIDEO_LINE = re.compile(r"^\s*Stream #\d+:\d+.*?: Video: [^,]+, \w+(?:\(([^)]*)\))?.*$",
                         re.M)
MATRICES = ("bt709", "bt470bg", "smpte170m", "smpte240m", "bt2020nc", "bt2020c", "fcc", "gbr")


def taggable(path: str | os.PathLike) -> bool:
    """Whether a video written as `path` can say its colours (`runtime/video_sink.py` FOURCC)."""
    return Path(path).suffix.lower() in (*CONTAINER_TAGGED, *MPEG2_TAGGED)


class SourceColours(NamedTuple):
    """What a video file source says of its colours, in ffmpeg's names (None: not said)."""
    matrix: Optional[str] = None
    primaries: Optional[str] = None   # SDR ones only, as is `transfer`
    transfer: Optional[str] = None
    size: Optional[tuple[int, int]] = None


def players_guess_hd(size: tuple[int, int]) -> bool:
    """Whether players take an untagged video of `size` as BT.709 (mpv's and libplacebo's
    rule, as browsers do for HD) rather than BT.601."""
    return size[0] >= 1280 or size[1] > 576


def source_colours(source: Optional[str | os.PathLike], ffmpeg: str) -> SourceColours:
    """What the video file `source`'s first video stream says of its colours. A regular file
    only: a named pipe's bytes are OpenCV's, and ffmpeg would wait for a writer that has gone."""
    if source is None or not Path(source).is_file():
        return SourceColours()
    listing = source_listing(source, ffmpeg)
    line = _VIDEO_LINE.search(listing) if listing else None
    if not line:
        return SourceColours()
    size = re.search(r", (\d+)x(\d+)(?:[ ,]|$)", line.group(0))
    said = SourceColours(size=(int(size.group(1)), int(size.group(2))) if size else None)
    for part in (line.group(1) or "").split(", "):
        names = part.split("/")
        if len(names) == 1 and (part in PRIMARIES or part in TRANSFERS or part in MATRICES):
            names = [part] * 3   # ffmpeg names the three once where they are the same
        if len(names) == 3:
            matrix, primaries, transfer = (n if n != "unknown" else None for n in names)
            if transfer in HDR_TRANSFERS:
                return said._replace(matrix=matrix)
            return said._replace(matrix=matrix,
                                 primaries=primaries if primaries in PRIMARIES else None,
                                 transfer=transfer if transfer in TRANSFERS else None)
    return said


def wants_tags(source: Optional[SourceColours]) -> bool:
    """Whether frames OpenCV read from a video file that says `source` (None: frames not from
    one, an image's or a camera's, in the colours OpenCV gave) are tagged as written. An
    untagged HD source's are not: OpenCV read them as BT.601, as ffmpeg does, while players
    take them as BT.709, and the video then plays in each as the source does. An untagged SD
    source is BT.601 to all of them, said so that a --compare video, twice as wide, is not
    taken as HD."""
    return source is None or source.matrix is not None or (
        source.size is not None and not players_guess_hd(source.size))


def tag_options(path: str | os.PathLike, primaries: Optional[str] = None,
                transfer: Optional[str] = None) -> list[str]:
    """ffmpeg output options that tag a stream copy into `path` as OpenCV's writer encoded it
    (BT.601 matrix, limited range), with the source's `primaries` and `transfer` where known;
    [] for a container that holds no colour tags."""
    ext = Path(path).suffix.lower()
    if ext in CONTAINER_TAGGED:
        options = ["-colorspace", WRITER_MATRIX, "-color_range", "tv"]
        if primaries:
            options += ["-color_primaries", primaries]
        if transfer:
            options += ["-color_trc", transfer]
        # An ffmpeg before 4.4 wrote an MP4's colr box only when asked.
        return options + (["-movflags", "+write_colr"] if ext in COLR_EXTS else [])
    if ext in MPEG2_TAGGED:
        return ["-bsf:v", "mpeg2_metadata="
                f"colour_primaries={PRIMARIES.get(primaries or '', UNSPECIFIED)}:"
                f"transfer_characteristics={TRANSFERS.get(transfer or '', UNSPECIFIED)}:"
                f"matrix_coefficients={WRITER_MATRIX_CODE}"]
    return []


def copy_tagged(video: Path, out: Path, ffmpeg: str, options: list[str], limit: float,
                source: Optional[str | os.PathLike] = None, metadata: Sequence[str] = ()) -> str:
    """Write `out`: `video`'s streams copied, tagged by `options`. '' or why not, in words.
    `metadata`: options that carry the video file `source`'s (input 1's) timecode and
    metadata (runtime/clip_metadata.py), which only its streams' copy reads from it."""
    carried = ["-i", os.fspath(source), *metadata] if source is not None and metadata else []
    try:
        done = _run([ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i",
                     os.fspath(video), *carried[:2], "-map", "0", "-c", "copy", *options,
                     *carried[2:], os.fspath(out)], limit)
    except subprocess.TimeoutExpired:
        return f"{TIMED_OUT} {limit:.0f} s"
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    return copy_failure(done, out)
