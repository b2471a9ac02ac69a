"""A video's display matrix applied as players apply it, where OpenCV's capture does not.

A phone stores a clip as its sensor saw it and records how to show it: a turn (a portrait
video stored landscape), and from some front cameras and editing apps a mirror. OpenCV's
FFmpeg capture applies the turn alone (CAP_PROP_ORIENTATION_META, taken from the matrix's
angle), so a mirrored clip came out turned where players show it mirrored: a mirror alone
read as a half turn, the picture upside down. ffmpeg (and the players built on it) shows the
frames by the whole matrix. `fix_for` reads an MP4/MOV's matrix from its video track's header
(`tkhd`, times the movie's `mvhd`) and, for a mirrored one, gives what lays OpenCV's frame as
ffmpeg shows it, OpenCV's own laying seen on the first frame (`laid_by`); None for every clip
without a mirror, which costs nothing per frame. Other containers are read as OpenCV reads
them (an MKV that ffmpeg's remux gave a phone clip's mirror comes out turned).
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO, Callable, Optional

import cv2
import numpy as np

from .iso_boxes import ISO_EXTS, Span, find_box, read_moov, tracks

Fix = Callable[[np.ndarray], np.ndarray]

# The eight ways to lay a picture down, as OpenCV does each.
_OPS: dict[str, Fix] = {
    "none": lambda a: a,
    "clock": lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
    "half": lambda a: cv2.rotate(a, cv2.ROTATE_180),
    "cclock": lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
    "hflip": lambda a: cv2.flip(a, 1),
    "vflip": lambda a: cv2.flip(a, 0),
    "transpose": lambda a: cv2.transpose(a),
    "antitranspose": lambda a: cv2.rotate(cv2.transpose(a), cv2.ROTATE_180),
}


def display_matrix(path: str | os.PathLike) -> Optional[tuple[int, ...]]:
    """The 3x3 display matrix (9 integers, a b u c d v x y w as the file stores them) of the
    first video track of an MP4/MOV file, times the movie's, as ffmpeg takes it; None for
    other containers, a file that cannot be read as one, or one without a video track."""
    path = Path(path)
    # A file only: a named pipe's bytes are OpenCV's to read, and opened again it waits for a
    # writer that may have gone.
    if path.suffix.lower() not in ISO_EXTS or not path.is_file():
        return None
    return read_moov(path, _matrix_in_moov)


def _matrix_in_moov(f: BinaryIO, moov: Span) -> Optional[tuple[int, ...]]:
    # version/flags, times, time scale, duration (both 64-bit in version 1), rate, volume,
    # reserved: the matrix follows
    movie = _matrix(f, find_box(f, *moov, b"mvhd"), 36, 48) or _IDENTITY
    for trak, _mdia in tracks(f, moov, b"vide"):
        # version/flags, then times, track id, duration (64-bit in version 1), reserved, layer,
        # group, volume, reserved: the matrix follows.
        track = _matrix(f, find_box(f, *trak, b"tkhd"), 40, 52)
        return _times(track, movie) if track else None
    return None


_IDENTITY = (65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30)


def _matrix(f, box: Optional[tuple[int, int]], at: int, at_v1: int
            ) -> Optional[tuple[int, ...]]:
    """The matrix `at` bytes into the header `box` (`at_v1` in its version 1); None where the
    box is missing or too short to hold one."""
    if box is None:
        return None
    f.seek(box[0])
    offset = at_v1 if f.read(1) == b"\x01" else at
    if box[1] - box[0] < offset + 36:
        return None
    f.seek(box[0] + offset)
    data = f.read(36)
    return struct.unpack(">9i", data) if len(data) == 36 else None


def _times(track: tuple[int, ...], movie: tuple[int, ...]) -> tuple[int, ...]:
    """`track` times `movie`, in their fixed points (16.16, and 2.30 in the last column), as
    ffmpeg's MOV reader combines a track's matrix with the movie's."""
    shift = (16, 16, 30)
    return tuple(sum(track[3 * i + e] * movie[3 * e + j] >> shift[e] for e in range(3))
                 for i in range(3) for j in range(3))


def _rotation(m: tuple[int, ...]) -> float:
    """The matrix's turn in degrees, clockwise, in [0, 360), as ffmpeg's CLI and OpenCV take
    it (-av_display_rotation_get, rounded)."""
    s0, s1 = np.hypot(m[0], m[3]), np.hypot(m[1], m[4])
    if not s0 or not s1:
        return 0.0
    theta = float(np.round(np.degrees(np.arctan2(m[1] / s1, m[0] / s0))))
    return theta % 360


def _as_ffmpeg_shows(m: tuple[int, ...]) -> Optional[str]:
    """What ffmpeg's CLI does to the stored picture for matrix `m` (fftools' autorotate);
    None for a turn that is not a quarter (a rotate filter, which OpenCV ignores too)."""
    theta = _rotation(m)
    if abs(theta - 90) < 1:
        return "transpose" if m[3] > 0 else "clock"
    if abs(theta - 180) < 1:
        return {(True, True): "half", (True, False): "hflip", (False, True): "vflip",
                (False, False): "none"}[(m[0] < 0, m[4] < 0)]
    if abs(theta - 270) < 1:
        return "antitranspose" if m[3] < 0 else "cclock"
    if abs(theta) < 1 or abs(theta - 360) < 1:
        return "vflip" if m[4] < 0 else "none"
    return None


def fix_for(path: str | os.PathLike, read: str) -> Optional[Fix]:
    """What lays a frame that OpenCV read from `path`, its stored picture laid the way `read`
    names (a key of _OPS: what the capture did to it), as players show it; None where it is
    so already, or the file says nothing OpenCV missed."""
    m = display_matrix(path)
    # A turn alone is OpenCV's to apply, as it always was (a backend that turns without saying
    # so in CAP_PROP_ORIENTATION_META would be turned twice): only a mirror is laid here.
    if m is None or not _mirrors(m):
        return None
    shown = _as_ffmpeg_shows(m)
    if shown is None or shown == read:
        return None
    # The one way that lays OpenCV's frame as ffmpeg's: found on a picture whose eight
    # layings all differ.
    probe = np.arange(6, dtype=np.uint8).reshape(2, 3)
    want, got = _OPS[shown](probe), _OPS[read](probe)
    for op in _OPS.values():
        laid = op(got)
        if laid.shape == want.shape and np.array_equal(laid, want):
            return op
    return None


def _mirrors(m: tuple[int, ...]) -> bool:
    return m[0] * m[4] - m[1] * m[3] < 0


def laid_by(cap: cv2.VideoCapture, path: str | os.PathLike) -> list[str]:
    """The ways (keys of _OPS) that `cap` may have laid `path`'s stored picture, seen on its
    first frame: decoded once by a capture of its own with `cap`'s backend, then taken as stored
    (CAP_PROP_ORIENTATION_AUTO off) and as `cap` takes it. Empty where it cannot be told (no
    frame, a backend that cannot give the stored picture); several for a picture that looks
    the same laid two ways (a black first frame)."""
    if not cap.get(cv2.CAP_PROP_ORIENTATION_AUTO):
        return ["none"]
    names = {cv2.videoio_registry.getBackendName(b): b
             for b in cv2.videoio_registry.getBackends()}
    own = cv2.VideoCapture(os.fspath(path), names.get(cap.getBackendName(), cv2.CAP_ANY))
    try:
        if not own.isOpened() or not own.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0) \
                or not own.grab():
            return []
        ok, stored = own.retrieve()
        if not ok or stored is None or not own.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1):
            return []
        ok, laid = own.retrieve()
        if not ok or laid is None:
            return []
    finally:
        own.release()
    return [name for name, op in _OPS.items()
            if op(stored).shape == laid.shape and np.array_equal(op(stored), laid)]


class OrientedCapture:
    """A cv2.VideoCapture whose frames `fix` lays as players show them; all else is the
    capture's own."""

    def __init__(self, cap: cv2.VideoCapture, fix: Fix):
        self._cap, self._fix = cap, fix

    def read(self, image=None):
        ok, img = self._cap.read()
        return ok, (self._fix(img) if ok and img is not None else img)

    def retrieve(self, image=None, flag: int = 0):
        ok, img = self._cap.retrieve(image, flag)
        return ok, (self._fix(img) if ok and img is not None else img)

    def __getattr__(self, name):
        return getattr(self._cap, name)


def oriented(cap: cv2.VideoCapture, path: str | os.PathLike):
    """`cap`, reading the video file `path`, with its frames laid as players show them."""
    m = display_matrix(path)
    if m is None or not _mirrors(m):
        return cap   # most clips: read as OpenCV reads them, and no frame decoded to find out
    # What OpenCV's FFmpeg capture does: the matrix's angle alone, as CAP_PROP_ORIENTATION_META
    # says it. Seen on the first frame rather than assumed (another backend, or an OpenCV
    # that applies the mirror too, is not mirrored twice); the angle where the frame cannot
    # tell.
    turn = (cap.get(cv2.CAP_PROP_ORIENTATION_META)
            if cap.get(cv2.CAP_PROP_ORIENTATION_AUTO) else 0.0)
    said = ({0: "none", 90: "clock", 180: "half", 270: "cclock"}.get(round(turn) % 360)
            if np.isfinite(turn) else "none")
    seen = laid_by(cap, path)
    read = said if not seen or said in seen else seen[0] if len(seen) == 1 else None
    fix = fix_for(path, read) if read is not None else None
    return OrientedCapture(cap, fix) if fix is not None else cap
