"""Sources read by cv2.VideoCapture: a video file, a camera or V4L2 device, a stream URL, a
GStreamer pipeline (`VideoSource`). A live capture that stops is reopened, and a stream that
starts over from its opening when reopened is recognised as a recording that ended."""
from __future__ import annotations

import hashlib
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generator, Iterator, Optional
from urllib.parse import unquote, urlsplit

import cv2
import numpy as np

from .console import count
from .frame_rate import peak_fps
from .hdr import hdr_warning
from .imageio import frames_over_budget, shown_path
from .locale_text import utf8_name, windows_ascii_hint
from .options import FFMPEG_GUESSED_FPS, option
from .orientation import oriented
from .source_base import (Frame, Note, OpenStopped, Source, SourceError, SourceLost,
                          _interruptible, _no_note)
from .source_spec import pipeline_reads_file
from .transport_stream import TRANSPORT_STREAM_EXTS, _transport_cut
from .warn import warn


# FFmpeg waits about 30 s, uninterruptibly, for a URL that accepts but never answers. The same
# limit holds for each read, the first one after opening included, which for H.264 waits for a
# keyframe: a slow camera with long keyframe intervals needs `--timeout` raised.
# An image URL's fetch (url_image.py) waits as long.
STREAM_TIMEOUT_S = 20.0
MAX_DAMAGED_READS = 250   # failed reads in a row before a file counts as ended
# How long a live run's output may wait, after a reconnect, for the comparison that tells a
# recording starting over (its still opening, then its first change) from a live stream: the
# still opening may have lasted minutes ('no signal' before the picture). Past this, the still
# frames read are yielded as they come, the comparison going on; --no-live holds them all.
LIVE_HOLD_S = 2.0
# FFmpeg's own limit for a URL's open and each read where --timeout 0 leaves it to FFmpeg.
FFMPEG_OWN_TIMEOUT_S = 30.0
# What a reconnect attempt may take beyond its delay, its open's and its first read's limits
# (a GStreamer pipeline's start, a camera's driver), before the watchdog counts it as hung.
ATTEMPT_SLACK_S = 5.0
# MPEG program streams (.mpg, .mpeg) keep no frame count: FFmpeg's is their duration times
# their rate, and short (1 or 3 for 5 frames written here, 23 for 30, 98 for 100), so a
# progress bar read 5/1 frames. Their count is checked by seeking to its last frame (a frame
# past it is found: unknown); the other containers written here declare theirs exactly, and a
# seek to the end of every video (a GOP of 4K frames decoded) is a cost each run would pay for
# nothing.
ESTIMATED_COUNT_EXTS = frozenset({".mpg", ".mpeg"})
# MPEG program streams (a DVD's .vob too) pack several small frames into one 2 KB pack, which
# carries a time for the first only; FFmpeg guesses the others' times, up to a frame off for
# dozens of frames. Their frames are written one per slot, not placed by those times: a
# constant-rate clip got a frame repeated and a "variable frame rate" note.
GUESSED_TIMES_EXTS = frozenset({".mpg", ".mpeg", ".vob", ".m2p"})
# How far a file's peak rate must be above its average for its video to take the peak
# (runtime/frame_rate.py): an evenly timed clip whose last frame lasts longer, or a recorder's
# jitter, reads a few percent off; a phone's 60 fps clip with a 30 fps stretch, far more.
PEAK_OVER_AVERAGE = 1.1
# The most a peak rate is taken up to, for a clip averaging no more: a screen recording
# averaging 36 fps with a 1.5 s burst at 120, written at 120, encoded and stored 3.3 times
# its frames (repeats of the sharpened ones) for that burst's sake. 60 keeps a phone's 60 fps
# whole; a clip averaging more (a 120 fps game capture that dips) takes its peak, and --fps
# any rate, the frames still placed by their times.
PEAK_CAP_FPS = 60.0
# The frame rates a header may declare and be believed: the video writers refuse rates far
# below (mp4v fails to open at 0.001 fps, VP8 writes unplayable files at 0.01), and misbehave
# far above (1e300 hung inside cv2.VideoWriter). Outside them the rate counts as unknown.
MIN_FPS, MAX_FPS = 0.1, 1000.0


@dataclass
class _Held:
    """A picture read but not yet yielded, and when each read of it came: a still picture read
    over and over (the opening compared after a reconnect) is held once, with a time per read.
    `digest`: its bytes' digest, where known; only a picture with one takes repeats."""
    image: np.ndarray
    times: deque[float]   # popped from the front: a still opening may be read for hours
    digest: Optional[bytes] = None
    at: Optional[float] = None   # a video file's frame: its time in the file (`Frame.t_media`)


# A video file that opens but decodes no frame, in `sharpen run`'s words and `labels`'
# (distill/data/sources.py).
NO_DECODABLE_FRAMES = ("no decodable frames (an empty recording, or frames in a codec this "
                       "OpenCV build cannot decode: convert it, e.g. with ffmpeg to H.264 or "
                       "MJPG)")


# Where macOS and Windows keep a program from the camera until the user allows it: OpenCV
# then fails as for a camera that is not there.
_CAMERA_PERMISSION = {
    "darwin": " Or not allowed to this terminal: System Settings > Privacy & Security > Camera",
    "win32": " Or not allowed to desktop apps: Settings > Privacy & security > Camera",
}


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
        if isinstance(target, str) and kind == "video":
            utf8_name(target, SourceError)
        self.timeout = STREAM_TIMEOUT_S if timeout is None else timeout
        self.req = (width, height, fps)
        self.reconnect_attempts, self.reconnect_delay = reconnect_attempts, reconnect_delay
        self._loss_said = False   # the loss `_reconnect` handles is warned of (once)
        self.reconnecting = False   # inside `_reconnect`: the --stats file's state says so
        # While reconnecting, the monotonic time by which the attempt under way has opened and
        # read (or failed): past it the attempt hangs, and the watchdog is no longer pinged.
        self.attempt_due: Optional[float] = None
        self.reconnects = 0         # times it came back: the --stats file's `reconnects`
        self._lost_after = 0      # and the frames read before it
        # Whether its frames' times are the file's own (`_media_time`)
        self._timed = kind == "video" and Path(spec).suffix.lower() not in GUESSED_TIMES_EXTS
        self.cap = self._open()
        if kind in ("video", "stream"):
            self._check_pixel_budget()
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
            raise SourceLost(f"cannot read frames from {spec!r}: opened but returned no frame"
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
        if kind == "video" and (hdr := hdr_warning(str(target), spec)):
            warn(hdr)
        elif kind == "video" and (bits := _decoded_bits(self.cap)) > 8:
            # OpenCV hands over 8-bit BGR whatever the clip holds: an editor grading a
            # 10-bit output (ProRes) would otherwise find the banding only in the grade.
            warn(f"{spec} is {bits}-bit video, which is read at 8 bits a colour: the "
                 f"sharpened video holds 8 bits of its colours (a 10-bit output such as "
                 f"{option('codec', 'prores', flags)} pads them), which can band where it is "
                 "graded")
        fps_prop = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps_prop) if fps_prop and MIN_FPS <= fps_prop <= MAX_FPS else 0.0
        # OpenCV's rate is the average: a variable-rate clip's video takes its peak rate,
        # where that is well above it, so that its faster stretches lose no frame.
        self.average_fps: Optional[float] = None
        self.peak_fps: Optional[float] = None   # the peak, where the video takes less (capped)
        peak = peak_fps(target) if self._timed and self.fps and not live else None
        rate = PEAK_CAP_FPS if peak and self.fps <= PEAK_CAP_FPS < peak else peak
        if peak and rate and self.fps * PEAK_OVER_AVERAGE < rate <= MAX_FPS:
            self.average_fps, self.fps = self.fps, rate
            self.peak_fps = peak if rate < peak else None
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
        # Raw MJPEG (an MJPEG camera's multipart stream, its `.mjpeg` recording: JPEGs one
        # after another) declares no rate and no length: FFmpeg reads it at 25 fps whatever
        # the camera sent. Said as a guess, not recorded as the camera's rate; an MJPEG AVI,
        # MKV or MOV declares both.
        fourcc = int(self.cap.get(cv2.CAP_PROP_FOURCC) or 0) & 0xFFFFFFFF
        self.fps_guessed = (kind in ("video", "stream") and self.frame_count is None
                            and fourcc.to_bytes(4, "little") == b"MJPG"
                            and self.fps == FFMPEG_GUESSED_FPS)
        self.transport = kind == "video" and Path(spec).suffix.lower() in TRANSPORT_STREAM_EXTS
        self.skipped: list[str] = []
        self._start = 0   # the first frame's number: another for a resumed run (`start_at`)

    def _check_pixel_budget(self) -> None:
        """SourceError, before a frame is decoded, for a file's or stream's frames over the
        pixel budget that image files have: a stranger's clip of 16000x16000 frames holds
        hundreds of MB a frame before the model's float copies. A camera's size is the
        user's own choice (--width/--height)."""
        w, h = (int(self.cap.get(p) or 0) for p in (cv2.CAP_PROP_FRAME_WIDTH,
                                                    cv2.CAP_PROP_FRAME_HEIGHT))
        over = frames_over_budget(shown_path(self.spec), w, h)
        if over:
            self.cap.release()
            raise SourceError(over)

    def _params(self) -> list[int]:
        """A URL's capture parameters: how long it may take to open or give a frame."""
        if self.kind != "stream" or self.timeout <= 0:
            return []
        ms = int(self.timeout * 1000)
        return [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]

    def _open(self, stop: Optional[threading.Event] = None) -> cv2.VideoCapture:
        """`stop`: a reconnect's open, given up (OpenStopped) once it is set."""
        params = self._params()

        def open_capture() -> cv2.VideoCapture:
            return cv2.VideoCapture(self.target, self.api, params)

        cap = (_interruptible(open_capture, stop) if self.kind == "stream" or stop is not None
               else open_capture())
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
            # A file that does not open is unreadable for good; a camera or stream may be
            # plugged in, freed or reachable again (OpenCV cannot tell a GStreamer pipeline's
            # typo from its camera's absence: counted as absent).
            error = SourceError if self.kind == "video" else SourceLost
            if self.kind == "video" and isinstance(self.target, str):
                why["video"] = windows_ascii_hint(self.target) or why["video"]
            why["camera"] += _CAMERA_PERMISSION.get(sys.platform, "")
            raise error(f"cannot open {self.kind} source {self.spec!r} "
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
        if self.kind == "video":
            # A mirrored display matrix, which OpenCV reads as a turn (runtime/orientation.py)
            cap = oriented(cap, str(self.target))
        return cap

    def _reconnect(self, stop: threading.Event,
                   read: int) -> Generator[tuple[np.ndarray, float], None, bool]:
        self.reconnecting = True
        try:
            return (yield from self._reopen(stop, read))
        finally:
            self.reconnecting, self.attempt_due = False, None

    def _read_limit(self) -> float:
        """How long an open or a read may take: --timeout, or FFmpeg's own where it is 0
        (a camera's or a GStreamer pipeline's open, which no timeout bounds, gets as long)."""
        return self.timeout if self.timeout > 0 else FFMPEG_OWN_TIMEOUT_S

    def _reopen(self, stop: threading.Event,
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
                # protocols (rtsp, udp, rtmp) carry cameras: a stop is a loss, exit 3, which
                # scripts watching a camera alert on.
                self.note(f"{self.kind} {self.spec!r} ended after {count(read, 'frame')} (it "
                          "declares no length, and with "
                          f"{option('reconnect_attempts', 0, self.flags)} it was not reopened "
                          "to tell a recording's end from a dropped connection)")
                return False
            raise SourceLost(f"{self.kind} {self.spec!r} stopped after "
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
            self.attempt_due = (time.monotonic() + delay + 2 * self._read_limit()
                                + ATTEMPT_SLACK_S)
            if stop.wait(delay):
                self._say_lost()
                return False
            delay = min(delay * 2, 10.0)
            self.cap.release()
            try:
                self.cap = self._open(stop)
            except OpenStopped:   # the open may never return: the run ends without it
                self._say_lost()
                return False
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
            self.reconnects += 1
            self.note(f"{self.kind} {self.spec!r}: reconnected (attempt {attempt})")
            return True
        raise SourceLost(f"{self.kind} {self.spec!r} disconnected and did not come back after "
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
                self.attempt_due = time.monotonic() + self._read_limit() + ATTEMPT_SLACK_S
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

    def start_at(self, k: int, last_digest: Optional[str],
                 progress: Optional[Callable[[], None]] = None) -> str:
        """Go on from frame `k` (a resumed run): the next frame read is frame k. A seek is
        exact for the clips this runtime writes, not for every codec (a seek lands on a keyframe
        and some demuxers count from it), so it is checked on frame k-1 against `last_digest`,
        the digest of the frame the stopped run read last; where the seek missed, the file is
        read from its start and k frames dropped. Returns how ('seek' or 'read'); SourceError
        where frame k-1 is not the frame the stopped run read (the file is another).
        `progress`: called at each frame read from the start (a service's start goes on)."""
        from .resume import frame_digest
        self._ahead.clear()
        self._start = k
        if k <= 0:
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            return "seek"
        if (self.cap.set(cv2.CAP_PROP_POS_FRAMES, k - 1)
                and int(self.cap.get(cv2.CAP_PROP_POS_FRAMES)) == k - 1):
            ok, img = self.cap.read()
            if ok and img is not None and frame_digest(img) == last_digest:
                return "seek"
        self.cap.release()
        self.cap = self._open()
        img = None
        for _ in range(k):
            ok, img = self.cap.read()
            if progress is not None:
                progress()
            if not ok or img is None:
                raise SourceError(f"{self.spec}: ended before frame {k}, where the stopped run "
                                  "got to")
        if last_digest is not None and frame_digest(img) != last_digest:
            raise SourceError(f"{self.spec}: frame {k - 1} is not the frame the stopped run "
                              "read there: the file was changed in place; run without "
                              "--resume")
        return "read"

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        i = self._start
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
            if i == self._start:
                # The pipeline holds the first frame through the model's warm-up: the pace
                # starts after it, or the frames due meanwhile come at once, and a live video,
                # which follows the clock, leaves out all but a second of them.
                next_t = time.perf_counter()
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

    def placed_at(self, rate: float) -> bool:
        """Whether a video at `rate` fps takes this file's frames by their times (and its
        sound): at its own rate, and a variable-rate clip's at any (--fps as ffmpeg's
        -fps_mode cfr -r), which frame by frame would drift from its sound. A constant-rate
        clip's --fps of another rate plays it faster or slower, frame by frame."""
        return bool(self.average_fps) or bool(self.fps) and abs(rate - self.fps) <= \
            1e-3 * self.fps

    def describe(self) -> dict:
        d = super().describe()
        d.update(width=self.width, height=self.height, fps_guessed=self.fps_guessed)
        if self.average_fps:
            d.update(average_fps=self.average_fps)
        if self.peak_fps:
            d.update(peak_fps=self.peak_fps)
        return d


def _estimates_count(spec: str, kind: str) -> bool:
    """Whether a video file's or URL's container only estimates its frame count (.mpg)."""
    path = urlsplit(spec).path if kind == "stream" else spec
    return Path(unquote(path)).suffix.lower() in ESTIMATED_COUNT_EXTS


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


def _decoded_bits(cap: cv2.VideoCapture) -> int:
    """The bits a colour of the pictures FFmpeg decodes, from its raw-video tag of their pixel
    format ('Y3', the chroma, then the depth, for planar YUV over 8 bits; 'G3', 0, the depth,
    for planar RGB; P010, P016); 8 where another format or backend is named, or none."""
    try:
        tag = int(cap.get(cv2.CAP_PROP_CODEC_PIXEL_FORMAT)).to_bytes(4, "little")
    except (cv2.error, OverflowError, ValueError):
        return 8
    if tag[:1] in (b"Y", b"G") and tag[1:2] in b"134" and 8 < tag[3] <= 16:
        return tag[3]
    return {b"P010": 10, b"P016": 16}.get(tag, 8)
