"""Reading an ISO base media file's boxes (MP4, MOV and their kin) without ffmpeg.

What the runtime needs from a phone's or camera's clip before its first frame (whether it has
sound, its display matrix, its colour tags) sits in a few small boxes under `moov`: reading
them costs no process, where an ffmpeg probe would cost every run one.
"""
from __future__ import annotations

import os
import struct
from typing import BinaryIO, Callable, Iterator, Optional, TypeVar

ISO_EXTS = (".mp4", ".m4v", ".mov", ".3gp", ".3g2")

Span = tuple[int, int]   # a box's payload: (start, end) byte offsets in the file
T = TypeVar("T")


def boxes(f: BinaryIO, start: int, end: int, kind: bytes) -> Iterator[Span]:
    """The payload span of each box of `kind` between `start` and `end`."""
    pos = start
    while pos + 8 <= end:
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            return
        length, name = struct.unpack(">I4s", head)
        body = pos + 8
        if length == 1:   # a 64-bit size follows
            length = struct.unpack(">Q", f.read(8))[0]
            body += 8
        elif length == 0:   # to the end of the file
            length = end - pos
        if length < body - pos:
            return   # not a box: a damaged file
        if name == kind:
            yield body, min(pos + length, end)
        pos += length


def find_box(f: BinaryIO, start: int, end: int, kind: bytes) -> Optional[Span]:
    return next(boxes(f, start, end, kind), None)


def find_moov(f: BinaryIO) -> Optional[Span]:
    """The movie box of the whole file `f`, or None where it has none (not such a file)."""
    return find_box(f, 0, os.fstat(f.fileno()).st_size, b"moov")


def read_moov(path: str | os.PathLike, read: Callable[[BinaryIO, Span], Optional[T]]
              ) -> Optional[T]:
    """`read(f, moov)` on the file `path`, open, and its movie box; None where it has none (not
    such a file) or cannot be read: unreadable, or cut short or damaged where `read` looks."""
    try:
        with open(path, "rb") as f:
            moov = find_moov(f)
            return None if moov is None else read(f, moov)
    except (OSError, struct.error):
        return None


def tracks(f: BinaryIO, moov: Span, handler: bytes) -> Iterator[tuple[Span, Span]]:
    """(trak, mdia) of each track in `moov` whose handler type is `handler` (b"vide",
    b"soun"), in the file's order."""
    for trak in boxes(f, *moov, b"trak"):
        mdia = find_box(f, *trak, b"mdia")
        hdlr = mdia and find_box(f, *mdia, b"hdlr")
        if not hdlr:
            continue
        f.seek(hdlr[0] + 8)   # version/flags, pre_defined, then the handler type
        if f.read(4) == handler:
            yield trak, mdia
