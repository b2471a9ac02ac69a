"""A variable-frame-rate clip's peak rate, read from its MP4/MOV sample table.

A phone records 60 fps and drops to 30 in dim light; a screen recorder writes a frame only
when the screen changes. OpenCV gives such a clip's average rate, and a video written at it
(frames placed by their times, runtime/pipeline.py) had to leave out the frames closer
together than its interval: a clip of 60 fps with a 30 fps stretch, read as 48 fps, lost one
of every four of its 60 fps frames. At the peak rate every frame has a slot, and the slower
stretches repeat frames instead, as HandBrake's peak frame rate does. The rate is the most
frames a second of the clip's busiest stretches (over a second's frames, so that a recorder's
jitter does not count as speed), from the video track's `stts` box: no frame is decoded.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO, Optional

import numpy as np

from .iso_boxes import ISO_EXTS, Span, find_box, read_moov, tracks

# The window the rate is counted over, in seconds.
WINDOW_S = 1.0
# Windows this close to the fastest count as its stretch.
NEAR_PEAK = 0.97
# A sample table this long (entries, or the frames they count) is not read: an hour at 60 fps,
# each frame its own entry, is 216000. One entry may count 4 billion frames, whose times took
# 32 GiB: a damaged or hostile header's.
MOST_ENTRIES = 4_000_000


def frame_times(path: str | os.PathLike) -> Optional[np.ndarray]:
    """The decode times (seconds, from 0) of the first video track's frames of the MP4/MOV
    file `path`, and its end; None for another container, or a file that cannot be read."""
    path = Path(path)
    # A file only: a named pipe's bytes are OpenCV's (runtime/orientation.py)
    if path.suffix.lower() not in ISO_EXTS or not path.is_file():
        return None
    return read_moov(path, _times_in_moov)


def _times_in_moov(f: BinaryIO, moov: Span) -> Optional[np.ndarray]:
    for _trak, mdia in tracks(f, moov, b"vide"):
        mdhd = find_box(f, *mdia, b"mdhd")
        minf = find_box(f, *mdia, b"minf")
        stbl = minf and find_box(f, *minf, b"stbl")
        stts = stbl and find_box(f, *stbl, b"stts")
        if not mdhd or not stts:
            return None
        f.seek(mdhd[0])
        # version/flags, then creation and modification times (64-bit in version 1)
        f.seek(mdhd[0] + (20 if f.read(1) == b"\x01" else 12))
        (timescale,) = struct.unpack(">I", f.read(4))
        f.seek(stts[0] + 4)
        (n,) = struct.unpack(">I", f.read(4))
        if not timescale or not 0 < n <= MOST_ENTRIES or stts[1] - stts[0] < 8 + 8 * n:
            return None
        table = np.frombuffer(f.read(8 * n), ">u4").reshape(n, 2).astype(np.int64)
        if table[:, 0].sum() > MOST_ENTRIES:
            return None
        deltas = np.repeat(table[:, 1], table[:, 0])
        return np.concatenate([[0], np.cumsum(deltas)]) / timescale
    return None


def peak_fps(path: str | os.PathLike) -> Optional[float]:
    """The most frames a second that the MP4/MOV file `path`'s video holds over any stretch of
    at least WINDOW_S; None where its frame times cannot be read or it is shorter."""
    times = frame_times(path)
    if times is None or len(times) < 3:
        return None
    frames = times[:-1]   # the start of each frame; the last time is the track's end
    ends = np.searchsorted(times, frames + WINDOW_S)   # the first time a window past
    whole = ends < len(times)
    if not whole.any():
        return None
    start = np.flatnonzero(whole)
    # Frames a second in its busiest stretch, roughly: a window's end is the first frame past
    # it, which makes each a little slow.
    counted = (ends[whole] - start) / (times[ends[whole]] - frames[whole])
    k = max(1, round(float(np.median(counted[counted >= NEAR_PEAK * counted.max()]))))
    # Then over k intervals, as many as a second there holds: the median of the stretches
    # near the fastest, as the fastest alone is one whose ends a recorder's jitter moved in.
    rates = k / (times[k:] - times[:-k])
    return float(np.median(rates[rates >= NEAR_PEAK * rates.max()]))
