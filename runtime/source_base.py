"""What every frame source is: `Source` (iterated for `Frame`s), the `SourceError` a source
raises, the `Note` callback that takes its informational lines, and `_interruptible`, which
keeps a blocking open (a URL's) interruptible by Ctrl-C."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import numpy as np


class SourceError(RuntimeError):
    """A source that cannot be opened or read. The message is meant for the user as is."""


class SourceLost(SourceError):
    """A camera or stream that is not there now (unplugged, in use, unreachable, gone part-way
    and not back) and may come back, where a plain SourceError is a source misnamed or
    unreadable (no such file, no frames in it) that no retry mends. `sharpen run` exits 3 for
    it, 2 for the other, so a service manager restarts the one and stops on the other."""


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


# The opens `_interruptible` stopped waiting for, some maybe still inside FFmpeg's open
_left_open: list[threading.Thread] = []


def open_left_running() -> bool:
    """Whether an open that was given up still runs: OpenCV opens one FFmpeg capture or writer
    at a time, so that any other (a recording's check that it plays) waits for it, for good
    where it hangs (a FIFO nobody writes to)."""
    _left_open[:] = [t for t in _left_open if t.is_alive()]
    return bool(_left_open)


class OpenStopped(Exception):
    """`stop` was set while an open waited (a reconnect's, in the reader thread)."""


def _interruptible(fn: Callable[[], Any], stop: Optional[threading.Event] = None) -> Any:
    """fn() in a helper thread, waited for in this one: FFmpeg's open of an unanswering URL
    blocks in native code for up to --timeout (a GStreamer one for good), and Ctrl-C
    (KeyboardInterrupt) or `stop` (OpenStopped; a SIGTERM seen by another thread) was only seen
    once it returned. Interrupted, the helper is left to finish on its own (a daemon)."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    t = threading.Thread(target=run, name="source-open", daemon=True)
    t.start()
    try:
        while t.is_alive():
            if stop is not None and stop.is_set():
                raise OpenStopped()
            t.join(0.1)
    except BaseException:
        _left_open.append(t)
        raise
    if "error" in box:
        raise box["error"]
    return box["value"]
