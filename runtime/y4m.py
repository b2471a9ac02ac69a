"""YUV4MPEG2 (Y4M), the uncompressed video that tools pass each other through pipes
(`ffmpeg -f yuv4mpegpipe -`, ffplay, mpv, x264): a text header with the size and rate, then
each frame as `FRAME\\n` and its Y, U and V planes.

`Y4MReader` reads one from a binary stream as BGR frames, `Y4MWriter` writes BGR frames as
one. 8-bit 4:2:0, 4:2:2, 4:4:4 and mono are read, 4:2:0 and 4:4:4 written. The colours are
BT.601, limited range unless the header says XCOLORRANGE=FULL: what ffmpeg converts with
when it writes or reads Y4M and nothing else is said.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO, Optional

import cv2
import numpy as np

from .first_bytes import what_it_looks_like

MAGIC = b"YUV4MPEG2"
FRAME = b"FRAME"
MAX_HEADER = 1024          # a header is one short line; more than this is not Y4M
MAX_SIDE = 16384
# What ffmpeg's -pix_fmt gives for each chroma tag read here (C420 has three spellings for
# where the chroma samples sit, which a conversion to BGR does not tell apart).
READ_CHROMA = {"420jpeg": "yuv420p", "420mpeg2": "yuv420p", "420paldv": "yuv420p",
               "420": "yuv420p", "422": "yuv422p", "444": "yuv444p", "mono": "gray"}
PIPE_HINT = "ffmpeg -i INPUT -f yuv4mpegpipe -pix_fmt yuv420p -"


class Y4MError(ValueError):
    """A stream that is not Y4M, or Y4M this reader does not take; the message says which."""


@dataclass
class Y4MHeader:
    width: int
    height: int
    fps: float            # 0 when the header gives no rate
    chroma: str = "420jpeg"
    full_range: bool = False
    # The pixels' aspect (A: 10:11 for a DVD's 720x480 at 4:3; 0:0 unknown) and the
    # interlacing (I: p progressive, t/b top/bottom field first, ? unknown), which the
    # encoder after the pipe needs to show the frames as the source's were.
    aspect: str = "1:1"
    interlace: str = "p"

    def line(self) -> bytes:
        rate = Fraction(self.fps).limit_denominator(1001) if self.fps > 0 else Fraction(25)
        tag = {"444": "C444 XYSCSS=444"}.get(self.chroma, "C420jpeg XYSCSS=420JPEG")
        rng = "FULL" if self.full_range else "LIMITED"
        return (f"YUV4MPEG2 W{self.width} H{self.height} F{rate.numerator}:{rate.denominator}"
                f" I{self.interlace} A{self.aspect} {tag} XCOLORRANGE={rng}\n"
                ).encode("ascii")


def _read_line(stream: BinaryIO, most: int) -> bytes:
    """Bytes up to and without the next newline; b'' at the end of the stream. Y4MError past
    `most` bytes without one."""
    out = bytearray()
    while len(out) <= most:
        c = stream.read(1)
        if not c:
            return bytes(out)
        if c == b"\n":
            return bytes(out)
        out += c
    raise Y4MError(f"no end to a Y4M header line within {most} bytes")


def parse_header(line: bytes, where: str) -> Y4MHeader:
    """The header line (without its newline) as a Y4MHeader; Y4MError naming `where` and the
    field at fault."""
    if not line:
        raise Y4MError(f"{where} is empty: no video came in (the program writing it may have "
                       f"failed: see its messages); it takes Y4M video, as from: {PIPE_HINT}")
    fields = line.split(b" ")
    if fields[0] != MAGIC:
        head = line[:16]
        looks = what_it_looks_like(line)
        # Headerless pixels: most likely an app's or ffmpeg's raw frames, which carry no size.
        raw = "" if looks else ("; raw BGR frames (ffmpeg -f rawvideo -pix_fmt bgr24) are "
                                "read by the source raw:WxH[@FPS], their size and rate")
        raise Y4MError(f"{where} is not Y4M video: it starts {head!r}"
                       f"{looks}, where Y4M starts with 'YUV4MPEG2'; "
                       f"make Y4M with: {PIPE_HINT}{raw}")
    width = height = None
    fps, chroma, full, aspect, interlace = 0.0, "420jpeg", False, "1:1", "p"
    try:
        for f in fields[1:]:
            text = f.decode("ascii", "replace")
            key, val = text[:1], text[1:]
            if key == "W":
                width = int(val)
            elif key == "H":
                height = int(val)
            elif key == "F":
                num, den = (int(v) for v in val.split(":"))
                fps = num / den if num > 0 and den > 0 else 0.0
            elif key == "C":
                chroma = val
            elif key == "I":   # interlaced frames are read as they are, two fields in one
                # (mixed, 'm', is said per frame, which the output does not repeat: unknown)
                interlace = val if val in ("p", "t", "b") else "?"
            elif key == "A":   # one that does not read as N:D is unknown, as to ffmpeg
                parts = val.split(":")
                aspect = val if len(parts) == 2 and all(v.isdecimal() for v in parts) \
                    else "0:0"
            elif text == "XCOLORRANGE=FULL":
                full = True
    except ValueError:
        raise Y4MError(f"{where}: a Y4M header field does not read as a number: "
                       f"{line.decode('ascii', 'replace')!r}") from None
    if width is None or height is None or not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise Y4MError(f"{where}: the Y4M header gives no usable frame size (W and H from 1 to "
                       f"{MAX_SIDE}): {line.decode('ascii', 'replace')!r}")
    if chroma not in READ_CHROMA:
        raise Y4MError(f"{where}: Y4M with chroma 'C{chroma}' is not read here (8-bit 4:2:0, "
                       f"4:2:2, 4:4:4 and mono are); have ffmpeg convert it: add -pix_fmt "
                       f"yuv420p to the ffmpeg that writes it ({PIPE_HINT})")
    return Y4MHeader(width, height, fps, chroma, full, aspect, interlace)


def _plane_sizes(h: Y4MHeader) -> tuple[tuple[int, int], Optional[tuple[int, int]]]:
    """(rows, columns) of the Y plane and of each chroma plane (None for mono)."""
    w, ht = h.width, h.height
    if h.chroma == "mono":
        return (ht, w), None
    if h.chroma == "444":
        return (ht, w), (ht, w)
    if h.chroma == "422":
        return (ht, w), (ht, (w + 1) // 2)
    return (ht, w), ((ht + 1) // 2, (w + 1) // 2)


def _ycrcb_to_bgr(y: np.ndarray, u: np.ndarray, v: np.ndarray, full: bool) -> np.ndarray:
    """Full-size planes to BGR: OpenCV's YCrCb is BT.601 full range, so limited-range samples
    are stretched to it first."""
    if full:
        ycrcb = cv2.merge([y, v, u])
    else:
        yf = (y.astype(np.float32) - 16) * (255 / 219)
        vf = (v.astype(np.float32) - 128) * (255 / 224) + 128
        uf = (u.astype(np.float32) - 128) * (255 / 224) + 128
        ycrcb = np.clip(cv2.merge([yf, vf, uf]) + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2BGR)


def yuv_to_bgr(data: bytes, h: Y4MHeader) -> np.ndarray:
    """One frame's planes as an HxWx3 BGR uint8 image."""
    (yh, yw), c = _plane_sizes(h)
    buf = np.frombuffer(data, np.uint8)
    y = buf[:yh * yw].reshape(yh, yw)
    if c is None:
        u = v = np.full_like(y, 128)
        return _ycrcb_to_bgr(y, u, v, h.full_range)
    n = c[0] * c[1]
    u = buf[yh * yw:yh * yw + n].reshape(c)
    v = buf[yh * yw + n:yh * yw + 2 * n].reshape(c)
    if h.chroma.startswith("420") and not h.full_range:
        if yh % 2 or yw % 2:   # OpenCV's I420 takes even sizes: the last row/column repeated
            y = np.pad(y, ((0, yh % 2), (0, yw % 2)), mode="edge")
        i420 = np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(-1, y.shape[1])
        return cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)[:yh, :yw]
    if c != (yh, yw):   # each chroma sample covers 2 columns (and 2 rows for 4:2:0)
        rows = 1 if c[0] == yh else 2
        u = np.repeat(np.repeat(u, rows, 0), 2, 1)[:yh, :yw]
        v = np.repeat(np.repeat(v, rows, 0), 2, 1)[:yh, :yw]
    return _ycrcb_to_bgr(y, u, v, h.full_range)


def bgr_to_yuv(image: np.ndarray, chroma: str) -> bytes:
    """An HxWx3 BGR uint8 image as limited-range BT.601 planes, 4:2:0 or (chroma '444')
    4:4:4."""
    ht, w = image.shape[:2]
    if chroma == "444":
        ycrcb = cv2.cvtColor(image, cv2.COLOR_BGR2YCrCb).astype(np.float32)
        y = ycrcb[..., 0] * (219 / 255) + 16
        cr = (ycrcb[..., 1] - 128) * (224 / 255) + 128
        cb = (ycrcb[..., 2] - 128) * (224 / 255) + 128
        planes = np.stack([y, cb, cr])
        return np.clip(planes + 0.5, 0, 255).astype(np.uint8).tobytes()
    if ht % 2 or w % 2:
        image = np.pad(image, ((0, ht % 2), (0, w % 2), (0, 0)), mode="edge")
    eh, ew = image.shape[:2]
    i420 = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420).ravel()
    y = i420[:eh * ew].reshape(eh, ew)[:ht, :w]
    rest = i420[eh * ew:]
    return y.tobytes() + rest.tobytes()   # the chroma planes are (H+1)//2 x (W+1)//2 already


class Y4MReader:
    """Reads a Y4M stream's header on creation (Y4MError if it is none); `read()` gives each
    frame as BGR, None at the end. `where` names the stream in messages (--source -)."""

    def __init__(self, stream: BinaryIO, where: str = "the input") -> None:
        self.stream, self.where = stream, where
        first = stream.read(len(MAGIC))
        if first != MAGIC:
            # Enough of it to name what it is (an MP4's 'ftyp' at byte 4, a TS's second sync).
            more = first + (stream.read(200) if first else b"")
            parse_header(more, where)   # raises, saying what it looks like
        self.header = parse_header(first + _read_line(stream, MAX_HEADER), where)
        (yh, yw), c = _plane_sizes(self.header)
        self.frame_bytes = yh * yw + (2 * c[0] * c[1] if c else 0)
        self.frames_read = 0
        self.cut = False     # the stream ended inside a frame (its FRAME line or its data)
        self.truncated = 0   # bytes of that frame's data it held

    def read(self) -> Optional[np.ndarray]:
        tag = _read_line(self.stream, MAX_HEADER)
        if not tag:
            return None
        if FRAME.startswith(tag) and tag != FRAME:   # the stream ended inside the FRAME line
            self.cut = True
            return None
        if not tag.startswith(FRAME):
            raise Y4MError(f"{self.where}: expected a Y4M frame after frame "
                           f"{self.frames_read}, got {tag[:16]!r}: the stream is damaged or "
                           "is not one Y4M stream")
        data = read_exact(self.stream, self.frame_bytes)
        if len(data) < self.frame_bytes:
            self.cut, self.truncated = True, len(data)
            return None
        self.frames_read += 1
        return yuv_to_bgr(data, self.header)


def read_exact(stream: BinaryIO, n: int) -> bytes:
    """n bytes, fewer only at the end of the stream (a pipe's read gives what is there)."""
    parts, got = [], 0
    while got < n:
        part = stream.read(n - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


class Y4MWriter:
    """Writes BGR frames as Y4M to a binary stream (or file descriptor's write): the header
    before the first frame, with its size; each later frame must have that size."""

    def __init__(self, write, fps: float, chroma: str = "420jpeg", aspect: str = "1:1",
                 interlace: str = "p") -> None:
        self._write, self.fps, self.chroma = write, fps, chroma
        self.aspect, self.interlace = aspect, interlace
        self.header: Optional[Y4MHeader] = None
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        if image.dtype != np.uint8:   # 16-bit frames: Y4M here is 8-bit
            image = (image >> 8).astype(np.uint8)
        head = b""
        if self.header is None:
            self.header = Y4MHeader(image.shape[1], image.shape[0], self.fps, self.chroma,
                                    aspect=self.aspect, interlace=self.interlace)
            head = self.header.line()
        # The header goes with the first frame: a write cut short is then one frame's.
        self._write(head + FRAME + b"\n" + bgr_to_yuv(image, self.chroma))
        self.frames += 1

    @property
    def frame_bytes(self) -> int:
        """The bytes of one frame's data (after its FRAME line); 0 before the first frame."""
        if self.header is None:
            return 0
        (yh, yw), c = _plane_sizes(self.header)
        return yh * yw + (2 * c[0] * c[1] if c else 0)
