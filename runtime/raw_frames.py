"""`--source raw:WxH[@FPS]` and its `--out -`: raw BGR frames (ffmpeg's `-f rawvideo -pix_fmt
bgr24`, OpenCV's layout) on stdin and stdout, one frame after another with nothing between,
as the pipe of an app or ffmpeg holding BGR frames carries them; lossless both ways, where
Y4M rounds to YUV. The stream says nothing of its size or rate, so the spelling gives them.

`RawReader` and `RawWriter` stand in for `Y4MReader` and `Y4MWriter` (pipe_io).
"""
from __future__ import annotations

from typing import BinaryIO, Optional

import numpy as np

from .y4m import MAGIC, Y4MError, Y4MHeader, read_exact


class RawReader:
    """BGR frames of `width`x`height` from a binary stream; `read()` gives each, None at the
    end. `header` holds the size and rate given (no stream header is read)."""

    def __init__(self, stream: BinaryIO, width: int, height: int, fps: float,
                 where: str = "the input", spelled: str = "raw:WxH",
                 y4m: str = "--source -") -> None:
        self.stream, self.where = stream, where
        self.header = Y4MHeader(width, height, fps, chroma="bgr24", full_range=True)
        self.frame_bytes = width * height * 3
        self.frames_read = 0
        self.cut = False
        self.truncated = 0
        # A Y4M stream read as raw frames would come out as noise, a line off each frame.
        self._first = read_exact(stream, min(len(MAGIC), self.frame_bytes))
        if self._first == MAGIC:
            raise Y4MError(f"{where} is Y4M video, not raw BGR frames as {spelled} reads: "
                           f"give {y4m} for Y4M")

    def read(self) -> Optional[np.ndarray]:
        first, self._first = self._first, b""
        data = first + read_exact(self.stream, self.frame_bytes - len(first))
        if not data:
            return None
        if len(data) < self.frame_bytes:
            self.cut, self.truncated = True, len(data)
            return None
        self.frames_read += 1
        h = self.header
        return np.frombuffer(data, np.uint8).reshape(h.height, h.width, 3).copy()


class RawWriter:
    """Writes BGR frames as raw bytes (16-bit ones as 8-bit), no header, nothing between."""

    def __init__(self, write) -> None:
        self._write = write
        self.frames = 0
        self.frame_bytes = 0

    def write(self, image: np.ndarray) -> None:
        if image.dtype != np.uint8:   # as Y4MWriter: the pipe is 8-bit
            image = (image >> 8).astype(np.uint8)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        data = np.ascontiguousarray(image[..., :3]).tobytes()
        self.frame_bytes = len(data)
        self._write(data)
        self.frames += 1
