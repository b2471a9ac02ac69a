"""`--source -` and `--out -`: Y4M video on stdin and stdout, so that `sharpen run` is one
stage of a Unix pipeline between ffmpeg (or gst-launch) and ffmpeg, ffplay or mpv:

    ffmpeg -i in.mp4 -f yuv4mpegpipe -pix_fmt yuv420p - \\
        | sharpen run --model M --source - --out - | ffmpeg -f yuv4mpegpipe -i - out.mp4

`StdinSource` reads the frames (lossless by default: a pipe waits for its reader, it drops
nothing), `StdoutSink` writes them with the source's size and rate. While it writes, file
descriptor 1 is pointed at stderr, so that nothing else (a print, a native library's log) gets
into the video; a reader that goes away (ffplay closed, `| head -c`) stops the run.
`--source raw:WxH[@FPS]` reads raw BGR frames instead, and `--out -` then writes them so
(raw_frames).
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import stat
import sys
import threading
import time
from typing import Iterator, Optional, Union

import numpy as np

from .console import closed_at_start, count
from .imageio import frames_over_budget
from .options import option
from .prepost import FrameOutOfMemory, is_out_of_memory
from .sinks import Sink, SinkError
from .source_base import Frame, Note, Source, SourceError, SourceLost, _no_note
from .video_sink import letterbox
from .raw_frames import RawReader, RawWriter
from .y4m import FRAME, PIPE_HINT, Y4MError, Y4MReader, Y4MWriter

STDIO = "-"
CHUNK = 1 << 16        # a pipe's buffer: what one read of stdin may get
STOP_POLL_S = 0.1      # how soon a read of stdin waiting for data sees the run stopped
# Once the run stops (SIGTERM, Ctrl-C, an error), how long the frames still going out may wait
# for a reader of stdout that takes nothing (a paused player, a blocked network sink): well
# inside Docker's 10 s and systemd's 90 s before their SIGKILL.
STALLED_READER_S = 5.0
# What a writable pipe takes at once without blocking (POSIX's PIPE_BUF at the least).
SMALL_WRITE = getattr(select, "PIPE_BUF", 512)


def is_stdio(spec: object) -> bool:
    """Whether a --source or --out names the standard stream ('-')."""
    return isinstance(spec, (str, os.PathLike)) and os.fspath(spec).strip() == STDIO


class _Stopped(Exception):
    """The run stopped while a read of stdin waited for data."""


class _StdinReader:
    """stdin's bytes read from its descriptor, each wait for data cut short by `stop` (set
    by the run): a producer that stalled (an RTSP camera gone quiet, a slow capture) held the
    capture thread in its read, and Ctrl-C or SIGTERM waited 10 s for it, then left without
    closing the source. A non-blocking stdin (O_NONBLOCK) is waited on as a blocking one is.
    Where select() cannot wait on a pipe (Windows) reads just block."""

    def __init__(self, fd: int, timeout: Optional[float] = None, stalled: str = "") -> None:
        self.fd, self.buf = fd, bytearray()
        self.stop: Optional[threading.Event] = None
        self.waits = os.name != "nt"
        # Seconds stdin may give nothing before the producer counts as lost (None or 0: no
        # bound), and the error that says so.
        self.timeout, self.stalled = timeout or None, stalled

    def read(self, n: int) -> bytes:
        if self.buf:
            out = bytes(self.buf[:n])
            del self.buf[:n]
            return out
        since = time.monotonic()
        while True:
            if self.waits:
                if self.stop is not None and self.stop.is_set():
                    raise _Stopped
                if not select.select([self.fd], [], [], STOP_POLL_S)[0]:
                    if self.timeout and time.monotonic() - since >= self.timeout:
                        raise SourceLost(self.stalled)
                    continue
            try:
                data = os.read(self.fd, max(n, CHUNK))
            except BlockingIOError:   # O_NONBLOCK stdin: wait for data
                time.sleep(0 if self.waits else STOP_POLL_S / 10)
                continue
            break
        if len(data) > n:   # the header's reads take a byte at a time
            self.buf += data[n:]
            data = data[:n]
        return data


class StdinSource(Source):
    """Y4M frames from stdin (or another binary stream, for tests and apps); with `raw`
    (width, height, fps, its spelling), raw BGR frames of that size (raw_frames)."""

    kind = "stdin"

    def __init__(self, live: bool = False, flags: bool = False, note: Optional[Note] = None,
                 stream=None, timeout: Optional[float] = None,
                 raw: Optional[tuple[int, int, float, str]] = None) -> None:
        super().__init__(raw[3] if raw else STDIO)   # as typed: messages and --stats give it
        self.live, self.flags, self._note = live, flags, note or _no_note
        self.raw = raw
        # Fed by a program (a pipe, a socket), whose frames no rerun gives again: an ffmpeg
        # of a camera, restarted by a service after --timeout. Not a file redirected in.
        self.once = False
        named = option("source", STDIO, flags)
        # Messages name the source as given: raw:WxH's, which reads raw BGR frames.
        shown = option("source", raw[3], flags) if raw else named
        what, hint = (("raw BGR frames", f"ffmpeg -i INPUT -f rawvideo -pix_fmt bgr24 - | "
                       f"sharpen run --source {raw[3]} ...") if raw else
                      ("Y4M video", f"{PIPE_HINT} | sharpen run --source - ..."))
        if stream is None:
            if sys.stdin is None or sys.stdin.closed:
                raise SourceError(f"{shown}: there is no stdin to read")
            if sys.stdin.isatty():
                raise SourceError(f"{shown} reads {what} piped into stdin, and stdin is a "
                                  f"terminal; pipe it in: {hint}")
            try:
                fd = sys.stdin.fileno()
            except (AttributeError, OSError, ValueError):   # io.UnsupportedOperation too
                # A notebook's or a test runner's stand-in, which no video can be piped into.
                raise SourceError(f"{shown}: stdin here ({type(sys.stdin).__name__}) is not a "
                                  f"pipe or file that {what} can be piped into") from None
            with contextlib.suppress(OSError):
                self.once = not stat.S_ISREG(os.fstat(fd).st_mode)
            stream = _StdinReader(fd, timeout, (
                f"the stdin of {shown} gave no data for {timeout or 0:g} s "
                f"({option('timeout', flags=flags)}): the program writing it stalled or hangs "
                "(an ffmpeg whose camera went quiet); it counts as a lost stream"))
        self.stream = stream
        try:
            if raw is not None:
                self.reader = RawReader(stream, *raw[:3], f"the stdin of {shown}", shown, named)
            else:
                self.reader = Y4MReader(stream, f"the stdin of {named}")
        except Y4MError as e:
            raise SourceError(str(e)) from None
        # The budget image files and video files have: a stranger's upload may come this way.
        over = frames_over_budget(self.reader.where, self.reader.header.width,
                                  self.reader.header.height)
        if over:
            raise SourceError(over)
        self.fps = self.reader.header.fps

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        if isinstance(self.stream, _StdinReader):
            self.stream.stop = stop
        i = 0
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                image = self.reader.read()
            except Y4MError as e:
                raise SourceError(str(e)) from None
            except _Stopped:
                break
            except Exception as e:
                if not is_out_of_memory(e):
                    raise
                raise FrameOutOfMemory(self._out_of_memory(e)) from e
            if image is None:
                break
            t1 = time.perf_counter()
            yield Frame(i, image, f"frame_{i:06d}", t1, t1 - t0)
            i += 1
        if self.reader.cut:
            h = self.reader.header
            # Raw frames of a wrong size end cut as a rule: the one sign of it the run can give.
            size = (f"; {self.raw[3]} reads {h.width}x{h.height} BGR frames: is that the size "
                    "the program writing it sends?" if self.raw else "")
            self._note(f"stdin ended inside frame {i} ({self.reader.truncated} of its "
                       f"{self.reader.frame_bytes} bytes): {count(i, 'frame')} read, the cut "
                       f"one left out{size}")
        self.closed = True

    def _out_of_memory(self, exc: BaseException) -> str:
        """The line for a frame the memory limit could not hold while it was read: its size,
        which the bare MemoryError (or OpenCV's 'Insufficient memory') did not give, and the
        producer's scaling as the way to a smaller one."""
        h = self.reader.header
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (f"out of memory reading a {h.width}x{h.height} frame from "
                f"{option('source', STDIO, self.flags)} (Y4M on stdin): {detail}; give the "
                "process more memory, or have the program writing it scale the video down "
                "(ffmpeg ... -vf scale=1920:-2 -f yuv4mpegpipe -)")

    def describe(self) -> dict:
        h = self.reader.header
        return {**super().describe(), "format": "bgr24" if self.raw else "y4m",
                "width": h.width, "height": h.height,
                "chroma": h.chroma, "full_range": h.full_range}


def _writable(fd: int, timeout: float) -> bool:
    """Whether `fd` takes a write now, waiting up to `timeout` s for it to (poll: a dup'd
    stdout in an app with many files open may be past select's 1024). Windows cannot wait on
    a pipe: writes there just block."""
    if not hasattr(select, "poll"):
        return True
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return bool(poller.poll(timeout * 1000))


class ReaderGone(SinkError):
    """The program reading stdout closed it."""


class _ReaderStalled(Exception):
    """The run stopped and stdout's reader did not take what was under way within
    STALLED_READER_S."""

    def __init__(self, sent: int) -> None:
        super().__init__(sent)
        self.sent = sent   # bytes of the data under way that went out


def _flush_c_stdio() -> None:
    """What a native library printf'd to C's stdout and the C library still holds (a pipe's
    stdout is fully buffered), written now, to where fd 1 points: held, it went out at exit,
    after fd 1 was given back, onto the end of the video."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, TypeError, AttributeError):   # Windows: no process-wide C library
        pass


def _stderr_into_stdout() -> bool:
    """Whether fd 2 writes into the pipe, socket or file fd 1 does (`2>&1`): fd 1 pointed at
    stderr would still be the video's. /dev/null for both (a timing run) takes anything."""
    try:
        out, err = os.fstat(1), os.fstat(2)
    except OSError:   # no stderr: nothing said goes anywhere
        return False
    shared = (out.st_dev, out.st_ino) == (err.st_dev, err.st_ino)
    return shared and (stat.S_ISFIFO(out.st_mode) or stat.S_ISSOCK(out.st_mode)
                       or stat.S_ISREG(out.st_mode))


def _claim_stdout() -> int:
    """A descriptor of stdout for the video alone; fd 1 itself then goes to stderr, where
    whatever else writes to stdout (print, a native library) ends up instead of in the
    video. `_give_back_stdout` undoes it."""
    sys.stdout.flush()
    _flush_c_stdio()
    fd = os.dup(1)
    os.dup2(2, 1)
    return fd


def _give_back_stdout(fd: int) -> None:
    """fd 1 as it was before `_claim_stdout`: an app's prints after the run go to its stdout
    again (and a second run's video with them)."""
    sys.stdout.flush()
    _flush_c_stdio()
    os.dup2(fd, 1)


class StdoutSink(Sink):
    """Writes the sharpened frames (or, with `compose`, the comparison) as Y4M to stdout.

    `stop` is set when the reader goes away, and what was written is then said through
    `note`."""

    def __init__(self, fps: float, chroma: str = "420jpeg",
                 stop: Optional[threading.Event] = None, note: Optional[Note] = None,
                 flags: bool = False, fd: Optional[int] = None, aspect: str = "1:1",
                 interlace: str = "p", raw: bool = False) -> None:
        self.flags, self.stop, self._note = flags, stop, note or _no_note
        named = option("output", STDIO, flags)
        claimed = False
        if fd is None:
            # Started with it closed (`>&-`): fd 1 is /dev/null (open_closed_std_fds), or
            # none and a file opened since.
            if sys.stdout is None or closed_at_start(1):
                raise SinkError(f"{named} writes Y4M video to stdout, and there is no stdout "
                                "(it was closed); pipe it on: ... | ffmpeg -f yuv4mpegpipe -i "
                                "- out.mp4")
            if os.isatty(1):
                raise SinkError(f"{named} writes Y4M video to stdout, and stdout is a "
                                "terminal; pipe it on: ... | ffmpeg -f yuv4mpegpipe -i - out.mp4,"
                                " or ... | ffplay -")
            if _stderr_into_stdout():
                raise SinkError(f"{named} writes Y4M video to stdout, and stderr goes to the "
                                "same pipe as stdout (2>&1), where the run's messages would "
                                "land inside the video; send stderr elsewhere (2>run.log) or "
                                "leave it on the terminal")
            fd, claimed = _claim_stdout(), True
        self.fd, self.claimed = fd, claimed
        self.raw = raw   # raw BGR frames (a raw:WxH source's), else Y4M
        self.writer: Union[Y4MWriter, RawWriter] = (
            RawWriter(self._send) if raw else Y4MWriter(self._send, fps, chroma, aspect,
                                                        interlace))
        self.size: Optional[tuple[int, int]] = None
        self.last: Optional[np.ndarray] = None
        self.gone = self.stalled = False
        self.unwritten = 0
        self._stopped_at: Optional[float] = None

    def _send(self, data: bytes) -> None:
        """All of `data`, waiting for stdout to take it: a full pipe is waited on with poll,
        so that a non-blocking stdout (O_NONBLOCK, left set by a program sharing it) gets no
        EAGAIN, and so that a stopped run stops waiting for a reader that takes nothing."""
        view, sent = memoryview(data), 0
        while view:
            if self._stopping() and time.monotonic() - self._stopped_at > STALLED_READER_S:
                raise _ReaderStalled(sent)
            if not _writable(self.fd, STOP_POLL_S):
                continue
            # A blocking write that a signal lands in returns what it wrote so far; once
            # stopped no signal may come, so each write is one that a writable pipe takes.
            # Read after the wait, which a signal may have ended.
            stopping = self._stopping()
            try:
                n = os.write(self.fd, view[:SMALL_WRITE] if stopping else view)
            except BlockingIOError:
                continue
            view, sent = view[n:], sent + n

    def _stopping(self) -> bool:
        """Whether the run stopped, noting when this sink first saw it."""
        stopping = self.stop is not None and self.stop.is_set()
        if stopping and self._stopped_at is None:
            self._stopped_at = time.monotonic()
        return stopping

    def write(self, original: np.ndarray, sharpened: np.ndarray, name: str) -> None:
        if self.gone:   # frames already on their way when it went: counted in the summary
            self.unwritten += 1
            return
        h, w = sharpened.shape[:2]
        if self.size is None:
            self.size = (w, h)
        elif self.size != (w, h):   # Y4M has one size: a later frame is fitted into it
            sharpened = letterbox(sharpened, self.size)
        try:
            self.writer.write(sharpened)
        except _ReaderStalled as e:
            self._stalled(e.sent)
            return
        except OSError as e:
            if e.errno not in (errno.EPIPE, errno.ECONNRESET):
                raise SinkError(f"{option('output', STDIO, self.flags)}: writing stdout "
                                f"failed: {e.strerror}") from None
            self.gone, self.unwritten = True, 1   # this one, cut off
            self._note(f"the program reading stdout closed it after "
                       f"{count(self.writer.frames, 'frame')}: stopping")
            if self.stop is None:
                raise ReaderGone("the program reading stdout closed it") from None
            self.stop.set()
            return
        self.last = sharpened

    def _stalled(self, sent: int) -> None:
        """Stops writing: what went out of the frame under way is said, the frames before it
        being whole (a reader that wakes up later sees a stream cut inside a frame)."""
        self.gone, self.unwritten = True, 1
        whole = self.writer.frames
        if whole == 0 and not self.raw:   # the first write holds the header too
            sent -= len(self.writer.header.line())
        if sent < 0:
            cut = "the Y4M header cut short"
        else:
            tag = 0 if self.raw else len(FRAME) + 1
            cut = (f"frame {whole + 1} cut after {max(0, sent - tag)} of "
                   f"{self.writer.frame_bytes} bytes")
        self.stalled = True
        self._note(f"stdout's reader did not take the frame under way within "
                   f"{STALLED_READER_S:g} s of the stop: {count(whole, 'frame')} written whole, "
                   f"{cut}")

    def repeat_last(self, n: int) -> int:
        """The last frame again for frames a live source dropped, so the stream keeps time."""
        if self.last is None or self.gone:
            return 0
        for _ in range(n):
            self.write(self.last, self.last, "")
        return 0 if self.gone else n

    def close(self) -> None:
        if self.unwritten:
            why = "stdout's reader stalled" if self.stalled else "stdout closed"
            self._note(f"{count(self.unwritten, 'frame')} sharpened but not written (under "
                       f"way when {why})")
        self.unwritten = 0
        if self.fd is not None:
            try:
                # Where the reader went away fd 1 stays on stderr: a later print to the
                # closed pipe would end the program with BrokenPipeError.
                if self.claimed and not self.gone:
                    _give_back_stdout(self.fd)
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None
