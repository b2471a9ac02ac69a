"""Sources whose frames are made in memory, not read from a file or device: a generated test
pattern (`SyntheticSource`, for benchmarks and tests without a camera) and an app's own
arrays (`ArraySource`)."""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Iterator, Optional

import numpy as np

from .prepost import FrameError, to_bgr
from .source_base import Frame, Source


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
            if i == 0:   # paced from the first frame's release (the warm-up), as a file is
                next_t = time.perf_counter()
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
