"""Reading a Matroska (MKV, WebM) file's track headers without ffmpeg.

What an MP4/MOV says in its boxes (runtime/iso_boxes.py), a Matroska file says in EBML
elements: a clip remuxed into MKV (an editor's export, a screen recorder's) keeps a phone's
HDR transfer in its video track's Colour element. The track headers sit before the first
cluster of pictures, so a few small reads find them; no ffmpeg process is asked.
"""
from __future__ import annotations

import os
from typing import BinaryIO, Iterator, Optional

MATROSKA_EXTS = (".mkv", ".webm")

EBML = 0x1A45DFA3
SEGMENT = 0x18538067
TRACKS = 0x1654AE6B
TRACK_ENTRY = 0xAE
TRACK_TYPE = 0x83
VIDEO_TRACK = 1
VIDEO = 0xE0
COLOUR = 0x55B0
TRANSFER = 0x55BA
CLUSTER = 0x1F43B675
# Elements looked at in all, on every level: a damaged or hostile file of tiny elements is not
# walked to its end. A muxer's track headers are a few dozen.
MOST_ELEMENTS = 4096

Element = tuple[int, int, int]   # (id, payload start, payload end)


def _vint(f: BinaryIO, keep_marker: bool) -> Optional[tuple[int, bool]]:
    """An EBML variable-length number at `f`'s position: (value, whether all its value bits
    are ones, an unknown size); None where it is not one (a damaged file)."""
    first = f.read(1)
    if not first or not first[0]:
        return None
    length = 9 - first[0].bit_length()
    rest = f.read(length - 1)
    if len(rest) < length - 1:
        return None
    raw = int.from_bytes(first + rest, "big")
    value = raw if keep_marker else raw & ((1 << (7 * length)) - 1)
    return value, raw & ((1 << (7 * length)) - 1) == (1 << (7 * length)) - 1


class _Walk:
    """One file's elements, with one count of those looked at for the whole read: a limit on
    each level alone is multiplied by the levels under it."""

    def __init__(self, f: BinaryIO):
        self.f, self.left = f, MOST_ELEMENTS

    def elements(self, start: int, end: int) -> Iterator[Element]:
        """The elements between `start` and `end`. One of unknown size (a live recording's
        segment) runs to `end`, and ends the walk on this level once looked into."""
        f, pos = self.f, start
        while pos < end and self.left > 0:
            self.left -= 1
            f.seek(pos)
            eid = _vint(f, keep_marker=True)
            size = _vint(f, keep_marker=False)
            if eid is None or size is None:
                return
            body = f.tell()
            if size[1]:
                yield eid[0], body, end
                return
            yield eid[0], body, min(body + size[0], end)
            pos = body + size[0]

    def find(self, start: int, end: int, eid: int) -> Optional[Element]:
        return next((e for e in self.elements(start, end) if e[0] == eid), None)

    def uint(self, element: Element) -> int:
        self.f.seek(element[1])
        return int.from_bytes(self.f.read(min(element[2] - element[1], 8)), "big")


def video_transfer(path: str | os.PathLike) -> Optional[int]:
    """The H.273 transfer characteristic that the Matroska file `path`'s first video track
    says in its Colour element; None where it says none, or the file is not such a file or
    cannot be read."""
    try:
        with open(path, "rb") as f:
            walk, end = _Walk(f), os.fstat(f.fileno()).st_size
            head = next(walk.elements(0, end), None)
            if head is None or head[0] != EBML:
                return None
            segment = walk.find(head[2], end, SEGMENT)
            if segment is None:
                return None
            for eid, start, stop in walk.elements(segment[1], segment[2]):
                if eid == CLUSTER:   # pictures: the track headers come before them
                    return None
                if eid == TRACKS:
                    return _transfer_in_tracks(walk, start, stop)
    except OSError:
        return None
    return None


def _transfer_in_tracks(walk: _Walk, start: int, end: int) -> Optional[int]:
    for eid, s, e in walk.elements(start, end):
        if eid != TRACK_ENTRY:
            continue
        kind = walk.find(s, e, TRACK_TYPE)
        if kind is None or walk.uint(kind) != VIDEO_TRACK:
            continue
        video = walk.find(s, e, VIDEO)
        colour = video and walk.find(video[1], video[2], COLOUR)
        transfer = colour and walk.find(colour[1], colour[2], TRANSFER)
        return walk.uint(transfer) if transfer else None
    return None
