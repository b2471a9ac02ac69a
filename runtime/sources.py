"""Frame sources: camera, V4L2 device, video file, URL, GStreamer pipeline, images, synthetic.

`open_source(spec)` classifies the string and returns a `Source`; iterating a source yields
`Frame`s. `live` decides the pipeline's policy: live sources (cameras, streams) keep only the
newest frame, files are processed losslessly.
"""
from __future__ import annotations

import glob as globmod
import hashlib
import os
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Generator, Iterator, Optional
from urllib.parse import unquote, urlsplit, urlunsplit

import cv2
import numpy as np

from .console import count
from .imageio import (IMAGE_EXTS, VIDEO_EXTS, ImageReadError, decode_bytes, decode_image,
                      icc_profile, max_pixels, tiff_page_count_in, tiff_pages)
from .options import option
from .prepost import FrameError, conversions, to_bgr
from .warn import warn


class SourceError(RuntimeError):
    """A source that cannot be opened or read. The message is meant for the user as is."""


# FFmpeg waits about 30 s, uninterruptibly, for a URL that accepts but never answers. The same
# limit holds for each read, the first one after opening included, which for H.264 waits for a
# keyframe: a slow camera with long keyframe intervals needs `--timeout` raised.
STREAM_TIMEOUT_S = 20.0
MAX_DAMAGED_READS = 250   # failed reads in a row before a file counts as ended
# How long a live run's output may wait, after a reconnect, for the comparison that tells a
# recording starting over (its still opening, then its first change) from a live stream: the
# still opening may have lasted minutes ('no signal' before the picture). Past this, the still
# frames read are yielded as they come, the comparison going on; --no-live holds them all.
LIVE_HOLD_S = 2.0
# MPEG program streams (.mpg, .mpeg) keep no frame count: FFmpeg's is their duration times
# their rate, and short (1 or 3 for 5 frames written here, 23 for 30, 98 for 100), so a
# progress bar read 5/1 frames. Their count is checked by seeking to its last frame (a frame
# past it is found: unknown); the other containers written here declare theirs exactly, and a
# seek to the end of every video (a GOP of 4K frames decoded) is a cost each run would pay for
# nothing.
ESTIMATED_COUNT_EXTS = frozenset({".mpg", ".mpeg"})
# MPEG transport streams (.ts; .m2ts, .mts from Blu-ray and AVCHD) keep none either. FFmpeg's
# is the span from their first packet to their last, any stream's, times the rate: 65 for 60
# frames whose sound runs on 0.2 s, 1229 for 90 where a joined file's clock jumps a minute.
# It is taken from what the file holds, so a file cut in half declares the half (33 for 32):
# the count tells no cut. A cut is told by the size instead, as transport streams are written
# in whole packets; the count serves the progress bar, and is what was read once read.
TRANSPORT_STREAM_EXTS = frozenset({".ts", ".m2ts", ".mts"})
# MPEG program streams (a DVD's .vob too) pack several small frames into one 2 KB pack, which
# carries a time for the first only; FFmpeg guesses the others' times, up to a frame off for
# dozens of frames. Their frames are written one per slot, not placed by those times: a
# constant-rate clip got a frame repeated and a "variable frame rate" note.
GUESSED_TIMES_EXTS = frozenset({".mpg", ".mpeg", ".vob", ".m2p"})
# The frame rates a header may declare and be believed: the video writers refuse rates far
# below (mp4v fails to open at 0.001 fps, VP8 writes unplayable files at 0.01), and misbehave
# far above (1e300 hung inside cv2.VideoWriter). Outside them the rate counts as unknown.
MIN_FPS, MAX_FPS = 0.1, 1000.0

Note = Callable[[str], None]   # takes a source's informational lines (`sharpen run` prints them)


def _no_note(message: str) -> None:
    """The default: from Python a source's informational lines are dropped; what needs the
    caller's attention comes as a SharpenWarning."""


@dataclass
class Frame:
    index: int
    image: np.ndarray
    name: str            # file name for image sources, frame_<index> otherwise
    t_capture: float     # perf_counter when the frame became available (end-to-end latency start)
    capture_s: float = 0.0  # time spent reading/decoding this frame
    # Its time in a video file (seconds from the video's start), where the file gives one: a
    # phone's clip has frames at uneven times (a variable frame rate), which a constant-rate
    # output places by it.
    t_media: Optional[float] = None


class Source:
    """Base class: `frames(stop)` yields the frames; `close()` (or leaving `with
    open_source(...) as src:`) releases the device or file."""

    live: bool = False
    kind: str = "source"
    fps: float = 0.0              # 0 when unknown
    frame_count: Optional[int] = None
    closed: bool = False          # released, and no more frames to read (a capture)

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        """Yield each Frame (.image: HxWx3 BGR uint8 or uint16, .name, .index) until the source
        ends or `stop` is set: `for f in src.frames(threading.Event()): ...`."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the camera, file or stream; safe to call twice."""

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict:
        return {"spec": self.spec, "kind": self.kind, "live": self.live, "fps": self.fps,
                "frame_count": self.frame_count}


class ImageSource(Source):
    kind = "images"

    def __init__(self, spec: str, paths: list[Path]) -> None:
        super().__init__(spec)
        if not paths:
            raise SourceError(f"no images found in {spec!r} (extensions: "
                              f"{', '.join(sorted(IMAGE_EXTS))})")
        self.paths = paths
        self.names = frame_names(paths)
        self.frame_count = len(paths)
        self.skipped: list[str] = []
        # Set to {} by an output that writes each image back in its own channel layout (an
        # image folder or file): frame name -> `Layout` of the grayscale and BGRA files.
        self.layouts: Optional[dict[str, Layout]] = None

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        for i, name in enumerate(self.names):
            if stop.is_set():
                return
            t0 = time.perf_counter()
            where = self._where(i)
            # UNCHANGED keeps 16-bit and alpha so pre-processing converts them knowingly.
            try:
                img = self._decode(i)
                changes = conversions(img)
                # The profile only for an output that keeps the layout (read again: cheap)
                layout = Layout.of(img, self._icc(i) if self.layouts is not None else None)
                try:
                    img = to_bgr(img, warn=False)
                except FrameError as e:   # e.g. a float TIFF: name the file, like a bad one
                    raise ImageReadError(f"{where}: {e}") from None
                if layout is not None and self.layouts is not None:
                    self.layouts[name] = layout   # the output restores it
                elif changes:
                    # Outputs are BGR; say which files that changes, one line each.
                    warn(f"{where}: {'; '.join(changes)}")
            except ImageReadError as e:
                if len(self.names) == 1:
                    raise SourceError(str(e)) from None
                # One bad file in a folder must not end the run: report it, go on, and let the
                # exit code say that some failed.
                self.skipped.append(str(e))
                warn(f"skipped: {e}")
                continue
            t1 = time.perf_counter()
            _say_other_pages(where, *self._pages(i))
            yield Frame(i, img, name, t1, t1 - t0)

    def _decode(self, i: int) -> np.ndarray:
        return decode_image(self.paths[i])

    def _icc(self, i: int) -> Optional[bytes]:
        try:
            return icc_profile(self.paths[i].read_bytes())
        except OSError:   # gone since it was decoded: its result is written without one
            return None

    def _where(self, i: int) -> str:
        """Image `i` as messages name it."""
        return str(self.paths[i])

    def _pages(self, i: int) -> tuple[int, bool]:
        """Image `i`'s pages, and whether that count is only a floor (never, for a file)."""
        return tiff_pages(self.paths[i]), False


class UrlImageSource(ImageSource):
    """The image an http(s) URL names, fetched once and then read as a local image file is
    (`decode_image`'s checks, EXIF orientation, 16 bits, its grayscale or alpha written back
    by an image output), named after the URL's file name."""

    def __init__(self, spec: str, data: bytes, name: str) -> None:
        super().__init__(spec, [Path(name)])
        # No local file: none for an output to overwrite; its pages are counted in `_data`.
        self.paths, self._data = [], data

    def _decode(self, i: int) -> np.ndarray:
        return decode_bytes(self._data, self.spec)

    def _icc(self, i: int) -> Optional[bytes]:
        return icc_profile(self._data)

    def _where(self, i: int) -> str:
        return self.spec

    def _pages(self, i: int) -> tuple[int, bool]:
        return tiff_page_count_in(self._data)


def _say_other_pages(where: str, pages: int, floor: bool = False) -> None:
    """A multi-page TIFF (a scan batch, a stack) decodes as its first page: said once, or its
    one output passes for the whole file. `floor`: the pages were counted up to a cap (a URL's
    bytes), and there are more."""
    if pages > 1:
        many = f"at least {pages} pages (counted no further)" if floor else f"{pages} pages"
        warn(f"{where}: a TIFF of {many}; only the first page is sharpened")


@dataclass
class Layout:
    """What the model's BGR frame lost of a decoded image: that it was grayscale, or its alpha
    channel (kept as decoded, at the image's depth). The image sinks put it back."""
    gray: bool = False
    alpha: Optional[np.ndarray] = None
    # The file's ICC colour profile (a phone's Display P3): without it, colour-managed viewers
    # show the same pixel values as sRGB, duller than the input.
    icc: Optional[bytes] = None

    @classmethod
    def of(cls, img: np.ndarray, icc: Optional[bytes] = None) -> Optional["Layout"]:
        """The layout of a decoded image, None for plain BGR (or a shape to_bgr refuses)
        without a colour profile."""
        if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
            return cls(gray=True, icc=icc)
        if img.ndim == 3 and img.shape[2] == 4:
            return cls(alpha=np.ascontiguousarray(img[..., 3]), icc=icc)
        return cls(icc=icc) if icc else None


def frame_names(paths: list[Path]) -> list[str]:
    """Output names for image files: the file name, or, when files from several folders share
    one (a glob such as 'shots/*/*.png'), the path below the folders' common parent, so that no
    output overwrites another."""
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    root = Path(os.path.commonpath([str(p.parent.absolute()) for p in paths]))
    return [p.absolute().relative_to(root).as_posix() for p in paths]


@dataclass
class _Held:
    """A picture read but not yet yielded, and when each read of it came: a still picture read
    over and over (the opening compared after a reconnect) is held once, with a time per read.
    `digest`: its bytes' digest, where known; only a picture with one takes repeats."""
    image: np.ndarray
    times: deque[float]   # popped from the front: a still opening may be read for hours
    digest: Optional[bytes] = None
    at: Optional[float] = None   # a video file's frame: its time in the file (`Frame.t_media`)


def _interruptible(fn: Callable[[], Any]) -> Any:
    """fn() in a helper thread, waited for in this one: FFmpeg's open of an unanswering URL
    blocks in native code for up to --timeout, and Ctrl-C (KeyboardInterrupt) was only seen
    once it returned. Interrupted, the helper is left to finish on its own (a daemon)."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    t = threading.Thread(target=run, name="source-open", daemon=True)
    t.start()
    while t.is_alive():
        t.join(0.1)
    if "error" in box:
        raise box["error"]
    return box["value"]


# A video file that opens but decodes no frame, in `sharpen run`'s words and `labels`'
# (distill/data/sources.py).
NO_DECODABLE_FRAMES = ("no decodable frames (an empty recording, or frames in a codec this "
                       "OpenCV build cannot decode: convert it, e.g. with ffmpeg to H.264 or "
                       "MJPG)")


class VideoSource(Source):
    """cv2.VideoCapture wrapper. Live captures that fail are reopened with exponential backoff.

    note: takes its informational lines (a reconnected source); default: none. What a user
    should be warned of is a SharpenWarning. flags: messages name `sharpen run`'s flags
    (--fps, --timeout, --reconnect), not run_stream's keywords (fps, timeout,
    reconnect_attempts)."""

    def __init__(self, spec: str, target: object, api: int = cv2.CAP_ANY, live: bool = False,
                 kind: str = "video", width: int = 0, height: int = 0, fps: float = 0.0,
                 reconnect_attempts: int = 5, reconnect_delay: float = 0.5,
                 timeout: Optional[float] = None, note: Optional[Note] = None,
                 flags: bool = False) -> None:
        super().__init__(spec)
        self.note, self.flags = note or _no_note, flags
        self.target, self.api, self.live, self.kind = target, api, live, kind
        self.timeout = STREAM_TIMEOUT_S if timeout is None else timeout
        self.req = (width, height, fps)
        self.reconnect_attempts, self.reconnect_delay = reconnect_attempts, reconnect_delay
        self._loss_said = False   # the loss `_reconnect` handles is warned of (once)
        self._lost_after = 0      # and the frames read before it
        # Whether its frames' times are the file's own (`_media_time`)
        self._timed = kind == "video" and Path(spec).suffix.lower() not in GUESSED_TIMES_EXTS
        self.cap = self._open()
        # Probe one frame now so an unreadable source fails before the model is warmed up.
        ok, first = self.cap.read()
        t_first = time.perf_counter()
        if not ok or first is None:
            listed = self.cap.get(cv2.CAP_PROP_FRAME_COUNT)
            self.cap.release()
            if kind == "video" and listed == 0:
                # (a recording stopped before its first frame: "corrupt?" sent users to
                # check a file that is sound)
                raise SourceError(f"{spec!r} has no frames (its container lists 0: an empty "
                                  "recording)")
            if kind == "video":
                raise SourceError(f"cannot read frames from {spec!r}: {NO_DECODABLE_FRAMES}")
            hint = {"stream": "has the stream started? An MP4 over HTTP needs a server that "
                              "answers range requests when its index is at the end"}
            raise SourceError(f"cannot read frames from {spec!r}: opened but returned no frame"
                              f" ({hint.get(kind, 'is the camera in use by another program?')})")
        self._ahead: deque[_Held] = deque([_Held(first, deque([t_first]),
                                                  at=self._media_time())])   # not yet yielded
        # A stream's opening, to know a recording that starts over when reopened: its first
        # picture (a copy: a consumer may draw on the frame it gets), how many frames in a row
        # showed it, and the digest of the first that did not. Kept up to that change however
        # late it comes (a long title card, a fade from grey), as a count: a still opening
        # cut short proved nothing, and the recording looped. Frames are compared with the
        # first picture as arrays, a tenth of a digest's cost, for a still picture may last.
        self._opening_first = first.copy() if kind == "stream" else None
        self._opening_still = 1
        self._opening_next: Optional[bytes] = None   # set: the opening can be recognised
        self._reading_opening = kind == "stream"
        self.height, self.width = first.shape[:2]
        # Non-square pixels (DV, HDV, broadcast, some apps' clips): players stretch the frames
        # to this ratio, which a video output, written with square pixels, does not keep.
        # A ratio within 1% of 1:1 is square pixels rounded (1001:1000, 508:507 as MP4 stores
        # a rescaled one): the formats that stretch (DV's 10:11, PAL's 16:15) are 6% and more.
        sar = self.cap.get(cv2.CAP_PROP_SAR_NUM), self.cap.get(cv2.CAP_PROP_SAR_DEN)
        self.sar: Optional[tuple[int, int]] = (
            (int(sar[0]), int(sar[1]))
            if sar[0] > 0 and sar[1] > 0 and abs(sar[0] / sar[1] - 1) > 0.01 else None)
        # The ratio is of the stored pixels; a phone clip's frames are read turned by its
        # rotation, a quarter turn making the stored height their width.
        turned = self.cap.get(cv2.CAP_PROP_ORIENTATION_AUTO) and \
            round(self.cap.get(cv2.CAP_PROP_ORIENTATION_META)) % 180 == 90
        if self.sar and turned:
            self.sar = self.sar[::-1]
        fps_prop = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps_prop) if fps_prop and MIN_FPS <= fps_prop <= MAX_FPS else 0.0
        if not self.fps and fps_prop and fps_prop > 0:   # nan compares False: left unsaid
            # A warning: a video output then runs at another rate than the header says.
            warn(f"{spec} declares {fps_prop:g} fps, outside {MIN_FPS:g} to {MAX_FPS:g}: taken "
                 f"as unknown (a video output is written at 30 fps; "
                 f"{option('fps', flags=flags)} sets another)")
        # A live source's count is kept too: a recorded file served over HTTP declares one,
        # and its end is then not a disconnect.
        n = self.cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(n) if n and np.isfinite(n) and n > 0 else None
        # A count found short (an estimate) is dropped, but it was declared: a recording's,
        # whose end is no disconnect, over HTTP too.
        self.count_found_short = False
        if self.frame_count and kind in ("video", "stream") and _estimates_count(spec, kind):
            def past() -> bool:
                return _frames_past(self.target, self.api, int(self.frame_count or 0),
                                    self._params())

            self.count_found_short = (_interruptible(past) if kind == "stream" else past())
            if self.count_found_short:
                self.frame_count = None
        self.transport = kind == "video" and Path(spec).suffix.lower() in TRANSPORT_STREAM_EXTS
        self.skipped: list[str] = []

    def _params(self) -> list[int]:
        """A URL's capture parameters: how long it may take to open or give a frame."""
        if self.kind != "stream" or self.timeout <= 0:
            return []
        ms = int(self.timeout * 1000)
        return [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]

    def _open(self) -> cv2.VideoCapture:
        params = self._params()

        def open_capture() -> cv2.VideoCapture:
            return cv2.VideoCapture(self.target, self.api, params)

        cap = _interruptible(open_capture) if self.kind == "stream" else open_capture()
        if not cap.isOpened():
            cap.release()
            why = {"video": "corrupt or unsupported file?",
                   "camera": "no camera with this index, or it is in use?",
                   "v4l2": "not a capture device, or it is in use?",
                   "stream": "unreachable URL, unsupported protocol, or no answer within "
                             + (f"{self.timeout:g} s ({option('timeout', flags=self.flags)})?"
                                if self.timeout > 0 else "FFmpeg's own limit of about 30 s "
                                f"({option('timeout', 0, self.flags)})?"),
                   "gstreamer": "check the pipeline with gst-launch-1.0; it must end in appsink"}
            raise SourceError(f"cannot open {self.kind} source {self.spec!r} "
                              f"({why.get(self.kind, 'unreadable')})")
        if self.kind in ("camera", "v4l2"):
            width, height, fps = self.req
            # USB cameras only reach 1080p at full frame rate with MJPG; YUYV tops out at ~5 fps.
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
            if width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            if height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            if fps:
                cap.set(cv2.CAP_PROP_FPS, fps)
        if self.live:
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # driver-side queue: stale frames add latency
        return cap

    def _reconnect(self, stop: threading.Event,
                   read: int) -> Generator[tuple[np.ndarray, float], None, bool]:
        """Reopen a camera or stream that stopped giving frames (live or --no-live). Returns
        False: stop (set, or the source is a recording that ended). The frames read again are
        kept for `frames` to yield, but for those a live run shows while they are compared
        (`_resume`), which it yields, each with when it was read."""
        if not self.reconnect_attempts:
            if self.kind == "stream" and not self.live and _is_http(self.spec):
                # --no-live: every frame was kept, as for a file, and not reopened, its end
                # is where the run ends; a recording's end (a finite HTTP download declares no
                # length) and a dropped connection read alike, which the note says. Other
                # protocols (rtsp, udp, rtmp) carry cameras: a stop is a loss, exit 2, which
                # scripts watching a camera alert on.
                self.note(f"{self.kind} {self.spec!r} ended after {count(read, 'frame')} (it "
                          "declares no length, and with "
                          f"{option('reconnect_attempts', 0, self.flags)} it was not reopened "
                          "to tell a recording's end from a dropped connection)")
                return False
            raise SourceError(f"{self.kind} {self.spec!r} stopped after "
                              f"{count(read, 'frame')} in all "
                              "(reconnecting is off: "
                              f"{option('reconnect_attempts', 0, self.flags)})")
        # A stream whose opening can be recognised may be a recording that ended (a finite
        # HTTP download declares no length): the loss is said once the first reopen shows a
        # live stream, or fails, or a stop comes; a recording's end is no loss.
        self._loss_said, self._lost_after = False, read
        if self.kind != "stream" or self._opening_next is None:
            self._say_lost()
        self._reading_opening = False   # what comes next is another connection's
        delay = self.reconnect_delay
        for attempt in range(1, self.reconnect_attempts + 1):
            if stop.wait(delay):
                self._say_lost()
                return False
            delay = min(delay * 2, 10.0)
            self.cap.release()
            try:
                self.cap = self._open()
            except SourceError:
                self._say_lost()
                continue
            ok, img = self.cap.read()
            live = None if not ok or img is None else (yield from self._resume(img, stop))
            if live is False and not stop.is_set():
                self._say_recording_ended(read)
                return False
            self._say_lost()
            if stop.is_set():
                return False
            if live is None:
                continue   # gone, or again before the comparison decided: compared afresh
            self.note(f"{self.kind} {self.spec!r}: reconnected (attempt {attempt})")
            return True
        raise SourceError(f"{self.kind} {self.spec!r} disconnected and did not come back after "
                          f"{count(self.reconnect_attempts, 'attempt')}")

    def _say_lost(self) -> None:
        """Warn of the loss that `_reconnect` handles, once for each loss."""
        if not self._loss_said:
            self._loss_said = True
            read = count(self._lost_after, 'frame')
            warn(f"{self.kind} {self.spec!r}: stopped after {read} in all; reconnecting (up "
                 f"to {count(self.reconnect_attempts, 'attempt')})")

    def _note_opening(self, img: np.ndarray) -> None:
        """Count a stream's frame while its opening is read: up to the first changed picture."""
        if _same(img, self._opening_first):
            self._opening_still += 1
        else:
            self._opening_next, self._reading_opening = _digest(img), False

    def _media_time(self) -> Optional[float]:
        """The time in a video file of the frame read last (seconds); None for other sources,
        whose frames come in real time, and for a file whose times are guesses."""
        if not self._timed:
            return None
        ms = self.cap.get(cv2.CAP_PROP_POS_MSEC)
        return ms / 1000.0 if np.isfinite(ms) else None

    def _hold(self, img: np.ndarray, t: float, digest: Optional[bytes] = None,
              at: Optional[float] = None) -> None:
        """Keep a frame read at `t` for `frames` to yield, after those kept before it. A repeat
        of the last one's bytes (by `digest`) is one more time of it, not another array: the
        still opening compared after a reconnect may last minutes (as arrays, 1080p at 30 fps
        is 190 MB a second)."""
        last = self._ahead[-1] if self._ahead else None
        if (digest is not None and last is not None and last.digest == digest
                and last.image.shape == img.shape and last.image.dtype == img.dtype):
            last.times.append(t)
        else:
            self._ahead.append(_Held(img, deque([t]), digest, at))

    def _take_held(self) -> tuple[np.ndarray, float]:
        """The next frame kept and when it was read. Each repeat of a held picture is yielded
        as an array of its own: a consumer may draw on the frame it gets."""
        held = self._ahead[0]
        t = held.times.popleft()
        if held.times:
            return held.image.copy(), t
        self._ahead.popleft()
        return held.image, t

    def _resume(self, img: np.ndarray, stop: threading.Event
                ) -> Generator[tuple[np.ndarray, float], None, Optional[bool]]:
        """Hold the frames a reopened source goes on with (`img`, then those read to compare
        it); False, holding none, when the URL gave the run's opening again, byte for byte: its
        still frames and the first that changed. None, holding none, when it went again before
        that was decided: the frames read so far repeat the opening, and yielded as live they
        were the still opening of a recording that had started over. A live run holds them for
        LIVE_HOLD_S at most, then yields them and the next as read, the comparison going on:
        the opening may have been still for minutes, and its output stood as long (a
        recording's still opening is then shown twice before it ends). A recorded video served
        over the network starts over, and would loop forever; a live stream's picture has moved
        on. Bytes, because a file decodes to the same ones every time and a camera's noise never
        repeats; but a still picture repeats (a live still scene, a 'no signal' card, a covered
        lens), so an opening that never changed proves nothing, and one that did is only
        recognised once the change comes again. Cameras are never recordings."""
        self._ahead.clear()
        t = time.perf_counter()
        if self.kind != "stream" or self._opening_next is None:
            self._hold(img, t)
            return True
        shown_from = t + LIVE_HOLD_S if self.live else None
        for j in range(self._opening_still + 1):
            if stop.is_set():   # a Ctrl-C waited for the whole still opening's reads
                return True
            if j:
                ok, img = self.cap.read()
                t = time.perf_counter()
                if not ok or img is None:
                    self._ahead.clear()
                    return None
            # Held as read: if live, the still frames compared are its own, shown before this.
            if j < self._opening_still:
                if not _same(img, self._opening_first):
                    self._hold(img, t)
                    return True   # live: its picture has moved on
                self._hold(img, t, _STILL)
                if shown_from is not None and t >= shown_from:
                    self._say_lost()   # its frames are shown: said now, not once decided
                    while self._ahead:
                        yield self._take_held()
            else:
                self._hold(img, t)
                if _digest(img) != self._opening_next:
                    return True
        self._ahead.clear()
        return False

    def _say_recording_ended(self, read: int) -> None:
        if not self.live:
            # --no-live: every frame was kept, as for a file, which it is; a note says why it
            # ended, and what its missing length leaves unknown.
            self.note(f"{self.kind} {self.spec!r} ended after {count(read, 'frame')} "
                      "(reopened, it starts over: a recording; it declares no length, so a "
                      "connection dropped before its end would end it here too)")
        else:
            # A warning: a source taken for live ends here, which its user did not ask for.
            warn(f"{self.kind} {self.spec!r} started again from its first frame: it is a "
                 "recording, not a live stream; ending after one pass")
        self._check_ended(read)

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        i = 0
        # A file run with --live is paced at its own frame rate, so it behaves like a camera.
        period = 1.0 / self.fps if (self.live and self.kind == "video" and self.fps) else 0.0
        next_t = time.perf_counter()
        while not stop.is_set():
            if period:
                next_t += period
                stop.wait(max(0.0, next_t - time.perf_counter()))
            t0 = time.perf_counter()
            t_read: Optional[float] = None   # a held frame's: when it was read, not now
            if self._ahead:
                at = self._ahead[0].at
                img, t_read = self._take_held()
                ok = True
            else:
                ok, img = self.cap.read()
                at = self._media_time() if ok else None
                if self._reading_opening and ok and img is not None:
                    self._note_opening(img)
            if not ok or img is None:
                # A file ends here, and so does a URL that declares its length (a recording)
                # or a GStreamer pipeline that reads a file, run losslessly. A camera or live
                # stream run losslessly (--no-live, every frame kept; nvarguscamerasrc too)
                # disconnected: reopened, as live.
                if self.kind == "video" or (not self.live and (
                        self.frame_count or self.count_found_short
                        or (self.kind == "gstreamer" and pipeline_reads_file(self.spec)))):
                    lost = self._past_damage(i, stop)
                    if lost:
                        i += lost   # indices stay the file's frame numbers
                        continue
                    self._check_ended(i)
                    return  # end of file (a file run with --live ends too)
                if self.count_found_short or (self.frame_count and i >= self.frame_count):
                    return  # a recording over the network, read to its declared end
                # The frames a live run shows while a reopened stream is compared come from
                # `_reconnect` itself; it returns whether the run goes on.
                reopen = self._reconnect(stop, i)
                while True:
                    try:
                        img, t_read = next(reopen)
                    except StopIteration as back:
                        goes_on = back.value
                        break
                    yield Frame(i, img, f"frame_{i:06d}", t_read, 0.0)
                    i += 1
                if not goes_on:
                    return
                continue
            if self.kind in ("video", "stream") and self.frame_count and i >= self.frame_count:
                # More frames than the container declares: its count was an estimate, and a
                # progress total or a "truncated" check taken from it would mislead.
                self.frame_count, self.count_found_short = None, True
            t1 = time.perf_counter()
            yield Frame(i, img, f"frame_{i:06d}", t1 if t_read is None else t_read, t1 - t0,
                        at)
            i += 1

    def _past_damage(self, read: int, stop: threading.Event) -> int:
        """A file whose read fails before the frame count its header declares is damaged there,
        not ended: FFmpeg resumes at the next decodable frame, as its own tools do. Returns the
        frames lost before one was read again (kept for `frames` to yield; 0: none was, the file
        ends here); they are listed in `skipped`, which makes the run's exit code say so."""
        declared = int(self.frame_count or 0)
        if self.kind != "video" or not declared or read >= declared:
            return 0
        # A damaged stretch fails once per lost frame; bounded so that a header that
        # over-declares its length costs a moment, not a loop.
        for lost in range(1, min(declared - read, MAX_DAMAGED_READS) + 1):
            if stop.is_set():
                return 0
            ok, img = self.cap.read()
            if ok and img is not None:
                self._hold(img, time.perf_counter(), at=self._media_time())
                msg = (f"{self.spec}: {count(lost, 'damaged frame')} after frame {read} could "
                       f"not be decoded and {'was' if lost == 1 else 'were'} skipped")
                self.skipped.append(msg)
                warn(msg)
                return lost
        return 0

    def _check_ended(self, read: int) -> None:
        if self.transport:
            self._check_transport_ended(read)
            return
        # A cut or damaged file reads like a short one; the header's frame count (an estimate
        # in some containers, hence the margin) tells them apart. A recording served over the
        # network ends short when its connection drops.
        declared = int(self.frame_count or 0)
        if self.kind in ("video", "stream") and declared and read < 0.98 * declared - 1:
            why = ("truncated or damaged file?" if self.kind == "video"
                   else "the connection dropped?")
            msg = (f"{self.spec}: the video ended after {read} of the {declared} frames its "
                   f"header declares ({why})")
            self.skipped.append(msg)
            warn(msg)

    def _check_transport_ended(self, read: int) -> None:
        """A transport stream read to its end. Its count, an estimate, becomes the frames it
        held (the progress bar's total, the stats file's count). A cut is said where the file
        shows one: a packet or a sized stream packet left part-written. One between packets is
        a shorter whole file, and one through a picture's packets may be a picture that fills
        its last packet exactly (rare): a note."""
        self.frame_count, self.count_found_short = read, False
        cut, maybe = _transport_cut(self.target)
        if cut:
            msg = (f"{self.spec}: the video ended after {count(read, 'frame')}: {cut} "
                   "(truncated file?)")
            self.skipped.append(msg)
            warn(msg)
        elif maybe:
            self.note(f"{self.spec}: the video ended after {count(read, 'frame')}: {maybe}")
        # An estimate off (sound that runs past the last picture, a clock jump) is unsaid: on
        # nearly every clip with sound it told nothing wrong, and the totals are corrected.

    def close(self) -> None:
        self.cap.release()
        self.closed = True

    def describe(self) -> dict:
        d = super().describe()
        d.update(width=self.width, height=self.height)
        return d


def _estimates_count(spec: str, kind: str) -> bool:
    """Whether a video file's or URL's container only estimates its frame count (.mpg)."""
    path = urlsplit(spec).path if kind == "stream" else spec
    return Path(unquote(path)).suffix.lower() in ESTIMATED_COUNT_EXTS


def _transport_packet_size(head: bytes) -> tuple[int, int]:
    """(packet size, offset of the first sync byte) of an MPEG transport stream starting with
    `head`, by the sync byte (0x47) that starts each of its packets: 188 bytes, 192 with the
    timestamp a Blu-ray or AVCHD .m2ts puts before each, 204 with error correction. (0, 0) when
    its first packets show no such size."""
    for size, lead in ((188, 0), (192, 4), (204, 0)):
        n = min(8, (len(head) - lead) // size)
        if n >= 2 and all(head[lead + k * size] == 0x47 for k in range(n)):
            return size, lead
    return 0, 0


def _transport_packets(data: bytes, size: int, lead: int) -> Iterator[tuple[int, bool, bytes]]:
    """(PID, whether a PES or table starts there, payload) of each transport packet in `data`,
    which starts at a packet; stops at one that has lost its sync byte."""
    for at in range(lead, len(data) - 187, size):
        p = data[at:at + 188]
        if p[0] != 0x47:
            return
        field = p[3] >> 4 & 3
        start = 5 + p[4] if field & 2 else 4
        if field & 1 and start <= 188:
            yield ((p[1] & 0x1F) << 8) | p[2], bool(p[1] & 0x40), p[start:]


def _starts_inside_a_pes(head: bytes, size: int, lead: int) -> bool:
    """Whether a transport stream whose first bytes are `head` starts inside a PES begun
    before it: the first data of one of its streams goes on with one, as in a recording of a
    broadcast or a live stream, started wherever it was. A muxer starts each with a PES."""
    first: dict[int, bool] = {}   # per PID: whether its first packet starts a PES or table
    pes = set()
    for pid, starts, payload in _transport_packets(head, size, lead):
        first.setdefault(pid, starts)
        if starts and payload[:3] == b"\0\0\1":
            pes.add(pid)
    return any(not first[pid] for pid in pes)


def _transport_cut(path: object, tail: int = 4 << 20, head: int = 1 << 20) -> tuple[str, str]:
    """(a cut the end of the transport stream file `path` shows, one it may show), each '' when
    none. A writer ends each stream packet (PES: a picture, a few sound frames) at the end of a
    transport packet, padding the last: a file whose size is no whole number of packets, or
    whose last sized PES has fewer bytes than its header gives, was cut; one whose last unsized
    PES (video's, as a rule) fills its last packet may have been. A recording of a broadcast or
    live stream ends wherever it was stopped, as it starts: one that starts inside a PES is
    said to end so (a note). Read: the first `head` and the last `tail` bytes."""
    try:
        with open(str(path), "rb") as f:
            first = f.read(head)
            size, lead = _transport_packet_size(first)
            end = f.seek(0, os.SEEK_END)
            if not size:
                return "", ""
            live = _starts_inside_a_pes(first, size, lead)
            # Zeros (or 0xff) after the last packet, which a recorder or a copy padded the file
            # with, are no part of a packet: a cut one is found where the rest ends within one.
            f.seek(max(0, end - size))
            last = f.read()
            pad = len(last) - min(len(last.rstrip(b"\0")), len(last.rstrip(b"\xff")))
            if pad == len(last):
                f.seek(max(0, end - tail))
                last = f.read()
                pad = len(last) - min(len(last.rstrip(b"\0")), len(last.rstrip(b"\xff")))
            stop = -(-(end - pad) // size) * size
            if stop > end:
                cut = (f"its {end} bytes are no whole number of its {size}-byte packets, the "
                       "last one cut")
                return ("", _as_recorded(cut)) if live else (cut, "")
            at = f.seek(max(0, stop - tail // size * size))
            data = f.read(stop - at)
    except OSError:   # gone or unreadable since it was read: nothing to tell from
        return "", ""
    pes: dict[int, list[int]] = {}   # per PID: [length its header gives, bytes seen, last full]
    whole = len(data) - lead >= 188 and all(
        data[at] == 0x47 for at in range(lead, len(data) - 187, size))
    if not whole:   # its packets lost their sync: no end to tell from
        return "", ""
    for pid, starts, payload in _transport_packets(data, size, lead):
        if starts:   # a PES (or a table) starts here
            if payload[:3] == b"\0\0\1" and len(payload) >= 6:
                pes[pid] = [payload[4] << 8 | payload[5], len(payload), len(payload) == 184]
            else:
                pes.pop(pid, None)
        elif pid in pes:
            pes[pid][1] += len(payload)
            pes[pid][2] = len(payload) == 184
    for pid, (length, got, full) in sorted(pes.items()):
        if length and got < length + 6:
            cut = (f"its last packet of stream {pid} (0x{pid:x}) holds {got} of the "
                   f"{length + 6} bytes its header gives")
            return ("", _as_recorded(cut)) if live else (cut, "")
    for pid, (length, got, full) in sorted(pes.items()):
        if not length and full:
            return "", (f"the last data of its stream {pid} (0x{pid:x}) fills its packet, "
                        "where the end of a picture is padded unless it fills it exactly: the "
                        "file may have been cut short there")
    return "", ""


def _as_recorded(cut: str) -> str:
    return (f"{cut}, as a recording of a broadcast or live stream ends (it starts inside a "
            "stream packet begun before it too)")


def _frames_past(target: object, api: int, n: int, params: Optional[list] = None) -> bool:
    """Whether a video file (or URL) holds a frame after the `n` its container declares: a
    seek to frame n-1 lands there (the position read back: a seek may land elsewhere, which
    proves nothing) and a frame follows it. Read with a capture of its own, so the run's reads
    from the start are untouched; `params`: a URL's timeouts."""
    cap = cv2.VideoCapture(target, api, params or [])
    try:
        if not cap.isOpened() or not cap.set(cv2.CAP_PROP_POS_FRAMES, n - 1) or not cap.grab():
            return False
        return int(cap.get(cv2.CAP_PROP_POS_FRAMES)) == n and cap.grab()
    finally:
        cap.release()


def _is_http(spec: str) -> bool:
    """Whether a stream is an HTTP(S) download, which may be a finite recording."""
    return urlsplit(spec).scheme.lower() in ("http", "https")


def _digest(img: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(img).data, digest_size=16).digest()


# `_hold`'s key for the frames that equal a stream's first picture, compared as arrays.
_STILL = b"still opening"


def _same(img: np.ndarray, ref: Optional[np.ndarray]) -> bool:
    """Whether a frame is the picture `ref` is, byte for byte."""
    return (ref is not None and img.shape == ref.shape and img.dtype == ref.dtype
            and np.array_equal(img, ref))


class SyntheticSource(Source):
    """Generated frames (moving gradient) for benchmarks and tests without a camera.

    spec: synthetic[:WxH][@FPS]; fps 0 means as fast as possible. At a frame rate it stands in
    for a camera and is live; at fps 0 each frame is made when the pipeline asks for it, so
    none can go stale and the run is lossless (its fps is the model's throughput), unless
    `live` says otherwise."""

    kind = "synthetic"

    def __init__(self, spec: str = "synthetic", width: int = 1920, height: int = 1080,
                 fps: float = 0.0, live: bool = True, count: Optional[int] = None) -> None:
        super().__init__(spec)
        self.width, self.height, self.fps, self.live = width, height, fps, live
        self.frame_count = count
        yy, xx = np.mgrid[0:height, 0:width]
        self._base = ((xx + yy) % 256).astype(np.uint8)

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        i, period = 0, (1.0 / self.fps if self.fps else 0.0)
        next_t = time.perf_counter()
        while not stop.is_set() and (self.frame_count is None or i < self.frame_count):
            if period:
                next_t += period
                stop.wait(max(0.0, next_t - time.perf_counter()))
            t0 = time.perf_counter()
            g = np.roll(self._base, i, axis=1)
            img = np.dstack([g, np.flipud(g), np.full_like(g, (i * 7) % 256)])
            t1 = time.perf_counter()
            yield Frame(i, img, f"frame_{i:06d}", t1, t1 - t0)
            i += 1


class ArraySource(Source):
    """Frames an app already holds, for `run_stream`: numpy arrays as `FrameProcessor` takes
    them (HxWx3 BGR uint8 or uint16; grayscale and BGRA converted), from a list or any iterable
    (a generator is read lazily, as the pipeline asks), or one array: a frame (HxW or HxWxC) or
    a stack of them (NxHxWxC). Frames are named frame_000000, ... and all processed unless
    `live`. A frame that is not an image raises FrameError naming its index."""

    kind = "arrays"

    def __init__(self, frames: Any, spec: str = "<arrays>", fps: float = 0.0,
                 live: bool = False) -> None:
        super().__init__(spec)
        if isinstance(frames, (str, bytes, os.PathLike)) or not (
                isinstance(frames, np.ndarray) or hasattr(frames, "__iter__")):
            raise TypeError("frames must be numpy arrays (a list or iterable of HxWx3 BGR "
                            f"frames, or one array), got {type(frames).__name__}")
        if isinstance(frames, np.ndarray) and frames.ndim < 4:
            frames = [frames]
        self._frames = frames
        self.fps, self.live = fps, live
        self.frame_count = len(frames) if hasattr(frames, "__len__") else None

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        for i, img in enumerate(self._frames):
            if stop.is_set():
                return
            t0 = time.perf_counter()
            try:
                img = to_bgr(img)
            except FrameError as e:
                raise FrameError(f"frame {i}: {e}") from None
            t1 = time.perf_counter()
            yield Frame(i, img, f"frame_{i:06d}", t1, t1 - t0)

    def close(self) -> None:
        # A generator (any iterator that is its own) is read once: a second run of it got no
        # frame and said "produced no frames". A list or an array can be read again.
        if iter(self._frames) is self._frames:
            self.closed = True


_SYNTH = re.compile(r"^synthetic(?::(\d+)x(\d+))?(?:@(\d+(?:\.\d+)?))?$")


# GStreamer elements that read a file or a file URI: such a pipeline ends; any other source
# element (nvarguscamerasrc, v4l2src, rtspsrc, ...) is a camera or stream that can come back.
_GST_FILE_SOURCES = re.compile(r"(^|!)\s*(filesrc|multifilesrc|splitfilesrc)\b"
                               r"|\buri\s*=\s*[\"']?file:", re.IGNORECASE)


def pipeline_reads_file(pipeline: str) -> bool:
    """Whether a GStreamer pipeline's source reads a file (filesrc, uridecodebin uri=file:...)."""
    return bool(_GST_FILE_SOURCES.search(pipeline))


def _gstreamer_available() -> bool:
    info = cv2.getBuildInformation()
    m = re.search(r"GStreamer:\s*(\w+)", info)
    return bool(m and m.group(1).upper() == "YES")


def _image_list(paths: list[str]) -> list[Path]:
    return sorted(Path(p) for p in paths if Path(p).suffix.lower() in IMAGE_EXTS and Path(p).is_file())


def spec_kind(spec: str) -> str:
    """The kind of source `open_source` makes of a spelling, without opening it: synthetic,
    camera, v4l2, gstreamer, stream, images or video."""
    spec = str(spec).strip()
    if _SYNTH.match(spec):
        return "synthetic"
    if spec.isdecimal():   # not isdigit: int() refuses '²', which is a digit to it
        return "camera"
    if spec.startswith("/dev/video"):
        return "v4l2"
    if "!" in spec:
        return "gstreamer"
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", spec):
        return "stream"
    p = Path(spec)
    if p.is_dir() or any(c in spec for c in "*?[") or p.suffix.lower() in IMAGE_EXTS:
        return "images"
    return "video"


# A URL's scheme and authority, in a --source URL or inside a GStreamer pipeline (rtspsrc
# location=rtsp://...): the authority ends at the path, query, fragment or a space.
_URL_AUTHORITY = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)([^/?#\s]*)")


def shown_url(spec: str) -> str:
    """A source as messages, stats and file names show it: the password of each URL's user
    info (rtsp://admin:PASSWORD@camera/...), which IP cameras take there, replaced by ***, in
    a stream URL and in a GStreamer pipeline's (rtspsrc location=...) alike, so that it does
    not end up in logs, --stats files or runs/sharpen/ names."""
    def masked(m: re.Match) -> str:
        if "@" not in m.group(2):
            return m.group(0)
        userinfo, host = m.group(2).rsplit("@", 1)   # a password may hold an unencoded @
        if ":" not in userinfo:
            return m.group(0)
        return f"{m.group(1)}{userinfo.split(':', 1)[0]}:***@{host}"
    return _URL_AUTHORITY.sub(masked, spec)


def url_image_name(spec: str) -> Optional[str]:
    """The file name of the image an http(s) URL names by its path's extension (photo.jpg for
    https://host/img/photo.jpg?w=800), as a local path names an image; None for other URLs."""
    parts = urlsplit(str(spec).strip())
    name = Path(unquote(parts.path)).name
    if parts.scheme.lower() in ("http", "https") and Path(name).suffix.lower() in IMAGE_EXTS:
        return name
    return None


# Answers to an image URL that are a stream for FFmpeg to read, not one image: an MJPEG
# camera's multipart/x-mixed-replace (some name theirs video.jpg), a video.
_STREAM_TYPES = ("multipart/", "video/")


def _fetch_image(spec: str, timeout: Optional[float], flags: bool = False) -> Optional[bytes]:
    """The bytes an http(s) URL that names an image answers with, or None when it answers
    with a stream, for FFmpeg to read; SourceError when it cannot be fetched. A user and
    password in the URL are sent as HTTP authentication, as FFmpeg sends them (urllib
    takes none in the URL itself)."""
    import http.client
    import urllib.error
    import urllib.request

    parts, shown = urlsplit(spec), shown_url(spec)
    url, handlers = spec, []
    if parts.username is not None:
        url = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
        keys = urllib.request.HTTPPasswordMgrWithDefaultRealm()
        keys.add_password(None, url, unquote(parts.username), unquote(parts.password or ""))
        handlers = [urllib.request.HTTPBasicAuthHandler(keys),
                    urllib.request.HTTPDigestAuthHandler(keys)]
    limit = STREAM_TIMEOUT_S if timeout is None else timeout
    most = 8 * max_pixels() + (1 << 20)   # a 16-bit BGRA image of the pixel budget, stored raw

    def fetch() -> Optional[bytes]:
        with urllib.request.build_opener(*handlers).open(url, timeout=limit or None) as answer:
            kind = answer.headers.get("Content-Type", "").strip().lower()
            if kind.startswith(_STREAM_TYPES):
                return None
            if kind.startswith("text/"):
                raise SourceError(f"image URL {shown!r} answered with a {kind.split(';')[0]} "
                                  "page, not an image (a login or error page?)")
            data = answer.read(most + 1)
        if len(data) > most:
            raise SourceError(f"image URL {shown!r} answered with more than {most:,} bytes, "
                              "more than any image the pixel budget admits (the "
                              "SHARPEN_MAX_PIXELS environment variable raises it)")
        return data

    try:
        return _interruptible(fetch)
    except urllib.error.HTTPError as e:
        e.close()
        raise SourceError(f"cannot fetch image URL {shown!r}: HTTP {e.code} {e.reason}"
                          ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        why = getattr(e, "reason", None) or e
        if isinstance(why, TimeoutError):
            why = (f"no answer within {limit:g} s ({option('timeout', flags=flags)})"
                   if limit else "no answer")
        raise SourceError(f"cannot fetch image URL {shown!r} ({why})") from None


def open_source(spec: str, width: int = 1920, height: int = 1080, fps: float = 0.0,
                live: Optional[bool] = None, reconnect_attempts: int = 5,
                reconnect_delay: float = 0.5, timeout: Optional[float] = None,
                note: Optional[Note] = None, flags: bool = False) -> Source:
    """Open a source from its command-line spelling.

    "0" camera index; "/dev/video0" V4L2 device; "rtsp://..", "http://.." stream (an http(s)
    URL whose path names an image file, https://host/photo.jpg, is read as that image unless
    it answers with a stream); a string
    containing "!" a GStreamer pipeline (e.g. nvarguscamerasrc ! ... ! appsink); a video file;
    an image file, folder or glob; "synthetic[:WxH][@FPS]". width/height/fps apply to cameras,
    timeout (seconds to open or read; 0: FFmpeg's own) to URLs.
    live overrides the policy (None: live for cameras and streams, lossless for files).
    note takes informational lines (a URL found to be a recording, a source reconnected);
    default: none (`sharpen run` prints them as `note: ...`). flags: messages name `sharpen
    run`'s flags (--source, --fps, --live), not run_stream's keywords (source, fps, live).
    """
    spec = str(spec).strip()
    if not spec:
        raise SourceError(f"empty {option('source', flags=flags)}")
    cam = dict(width=width, height=height, fps=fps, reconnect_attempts=reconnect_attempts,
               reconnect_delay=reconnect_delay, note=note, flags=flags)

    kind = spec_kind(spec)
    if kind == "synthetic":
        m = _SYNTH.match(spec)
        w, h = (int(m.group(1)), int(m.group(2))) if m.group(1) else (width, height)
        if w < 1 or h < 1:   # else an 'empty frame' error from deep in the pipeline
            raise SourceError(
                f"{option('source', spec, flags)}: a synthetic source's frames must be at "
                f"least 1x1, got {w}x{h}" + ("" if m.group(1) else
                                             f" (from {option('width', flags=flags)} and "
                                             f"{option('height', flags=flags)})"))
        fps = float(m.group(3) or 0)
        # Unthrottled, live dropped all but the frames the model took: thousands "dropped" in
        # a short run and a written video padded with repeats of the few it kept.
        return SyntheticSource(spec, w, h, fps, fps > 0 if live is None else live)
    if kind == "camera":
        # OpenCV takes a C int (its refusal is a page of overloads), and int() refuses over
        # 4300 digits (a ValueError): a long spelling is refused before either sees it.
        digits = spec.lstrip("0") or "0"
        if len(digits) > 10 or int(digits) > 2**31 - 1:
            shown = (digits if len(digits) <= 20
                     else f"{digits[:12]}... (a number of {len(digits)} digits)")
            raise SourceError(f"no camera with index {shown}: a camera index is a small "
                              "number (0 for the first camera)")
        return VideoSource(spec, int(spec), live=True if live is None else live, kind="camera", **cam)
    if kind == "v4l2":
        if not os.path.exists(spec):
            raise SourceError(f"camera device not found: {spec}")
        return VideoSource(spec, spec, cv2.CAP_V4L2, live=True if live is None else live,
                           kind="v4l2", **cam)
    if kind == "gstreamer":
        if not _gstreamer_available():
            raise SourceError("this OpenCV build has no GStreamer support, needed for pipeline "
                              "sources (on Jetson use the system OpenCV from JetPack)")
        return VideoSource(shown_url(spec), spec, cv2.CAP_GSTREAMER,
                           live=True if live is None else live, kind="gstreamer", **cam)
    if kind == "stream":
        if (name := url_image_name(spec)) is not None:
            data = _fetch_image(spec, timeout, flags)
            if data is not None:   # else a stream after all, which FFmpeg reads
                return _maybe_live(UrlImageSource(shown_url(spec), data, name), live, flags)
        src = VideoSource(shown_url(spec), spec, cv2.CAP_FFMPEG,
                          live=True if live is None else live, kind="stream", timeout=timeout,
                          **cam)
        if live is None and (src.frame_count or src.count_found_short):
            # A recording served over HTTP: as live, most of its frames were dropped (it is
            # read faster than real time) and the rest repeated.
            src.live = False
            length = (count(src.frame_count, 'frame') if src.frame_count
                      else "a length (a frame count found short)")
            src.note(f"{src.spec!r} declares {length}: a recording, so every frame "
                     f"is processed ({option('live', True, flags)} to drop frames as for a live "
                     "stream)")
        return src

    p = Path(spec)
    if p.is_dir():
        return _maybe_live(_folder_source(spec, p, flags), live, flags)
    if any(c in spec for c in "*?["):
        found = globmod.glob(spec, recursive=True)
        images = _image_list(found)
        videos = [Path(f).name for f in found if Path(f).suffix.lower() in VIDEO_EXTS]
        if not images and videos:   # one run reads one video: say so, not "no images"
            raise SourceError(f"{spec!r} matches {count(len(videos), 'video file')} "
                              f"({', '.join(videos[:3])}) and no images: a run reads one video; "
                              f"pass each as {option('source', flags=flags)} "
                              f"({'e.g. a shell loop' if flags else 'a run_stream call each'})")
        if not images and "{" in spec:
            raise SourceError(f"no images match {spec!r}: braces are not glob syntax here (the "
                              "shell expands them unquoted); give a folder or a '*' pattern")
        return _maybe_live(ImageSource(spec, images), live, flags)
    if not p.exists():
        raise SourceError(f"source not found: {spec}")
    if kind == "images":
        return _maybe_live(ImageSource(spec, [p]), live, flags)
    return VideoSource(spec, str(p), cv2.CAP_ANY, live=bool(live), kind="video", **cam)


def _folder_source(spec: str, folder: Path, flags: bool = False) -> ImageSource:
    """The images directly in `folder`; says what else is there that it does not read. Hidden
    files are left out: an atomic write killed mid-way leaves .NAME.png.XXXX.png, half written."""
    entries = sorted(q for q in folder.iterdir() if not q.name.startswith("."))
    images = _image_list([str(q) for q in entries])
    videos = [q.name for q in entries if q.suffix.lower() in VIDEO_EXTS and q.is_file()]
    if not images:
        # Bounded: a hint must not walk a whole disk when someone passes their home folder.
        below = sum(1 for q in islice(folder.rglob("*"), 100_000)
                    if q.suffix.lower() in IMAGE_EXTS)
        hint = ""
        if videos:
            hint = (f"; it holds video files ({', '.join(videos[:3])}): pass one as "
                    f"{option('source', flags=flags)}")
        elif below:
            hint = (f"; its subfolders hold {count(below, 'image file')}: pass "
                    f"'{folder / '**' / '*'}' "
                    "(quoted) or one subfolder")
        raise SourceError(f"no images found in {spec!r} (extensions: "
                          f"{', '.join(sorted(IMAGE_EXTS))}){hint}")
    _say_not_images(spec, entries, bool(videos), flags)
    return ImageSource(spec, images)


def _say_not_images(spec: str, entries: list[Path], videos: bool, flags: bool = False) -> None:
    """One warning for the files in a folder source that are not images: a notes.txt, a video,
    photos in a format it does not read (.heic, RAW). Left out unsaid, the folder looked done."""
    names = [q.name for q in entries if q.suffix.lower() not in IMAGE_EXTS and q.is_file()]
    hint = f"; pass a video as {option('source', flags=flags)} to sharpen it" if videos else ""
    warn_not_images(spec, names, "a folder source", hint)


def warn_not_images(where: str, names: list[str], reader: str, hint: str = "",
                    videos: bool = False) -> None:
    """The one warning, worded alike wherever a folder's files that are not images are left out
    (`run`'s folder source, `evaluate`'s data): left out unsaid, the folder looked done.
    `videos`: the reader takes the folder's video clips too (footage for labels, training)."""
    if not names:
        return
    more = ", ..." if len(names) > 3 else ""
    clips = f" and {', '.join(sorted(VIDEO_EXTS))} clips" if videos else ""
    what = "that is not an image" if len(names) == 1 else "that are not images"
    warn(f"{where}: {count(len(names), 'file')} {what} skipped ({', '.join(names[:3])}"
         f"{more}); {reader} reads {', '.join(sorted(IMAGE_EXTS))}{clips} only{hint}",
         stacklevel=2)


def _maybe_live(src: Source, live: Optional[bool], flags: bool = False) -> Source:
    refuse_live_images(src, live, flags)
    return src


def refuse_live_images(src: Source, live: Optional[bool], flags: bool = False) -> None:
    """--live on images kept 2 of 20 (the rest "dropped"), exit 0: refused. flags: the message
    names `sharpen run`'s --live, not run_stream's live=True."""
    if live and isinstance(src, ImageSource):
        said = option("live", True, flags)
        raise SourceError(f"{said} drops the frames a model cannot keep up with, for cameras, "
                          "streams and videos; images are all processed, one by one: leave "
                          f"{said} out")
