"""One float RGB image through a runtime backend: what `sharpen run` executes per frame, for the
export's parity gate and `sharpen evaluate` on exported artifacts."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .base import ModelError

Runner = Callable[[np.ndarray], np.ndarray]  # HxWx3 float32 RGB -> HxWx3 float32 RGB


class OutputSizeError(ModelError):
    """The model returned another height x width than its input's: an up- or downscaler, not
    a sharpening model. It does so on every image, so callers stop rather than skip one."""

    def __init__(self, out_hw: tuple[int, int], in_hw: tuple[int, int]):
        self.out_hw, self.in_hw = tuple(out_hw), tuple(in_hw)
        super().__init__(f"model returned {self.out_hw[1]}x{self.out_hw[0]} for a "
                         f"{self.in_hw[1]}x{self.in_hw[0]} input (width x height): a sharpening "
                         "model keeps the image's size; one that changes it is not supported")


class BackendRunner:
    """Full-image runner around a runtime `Backend`: pad to its multiple, convert to its layout,
    `infer`, crop back."""

    def __init__(self, backend):
        self.backend = backend
        self.multiple = int(getattr(backend, "multiple", 1) or 1)
        self.layout = getattr(backend, "layout", "NCHW")

    def __call__(self, img: np.ndarray) -> np.ndarray:
        """HxWx3 float RGB in [0, 1] -> HxWx3 float32 RGB (not clipped), the same size;
        FrameError for anything else (OpenCV's BGR uint8 included)."""
        from runtime.prepost import check_rgb_float
        from runtime.tiling import pad_to_multiple

        x, (h, w) = pad_to_multiple(check_rgb_float(img), max(self.multiple, 1))
        batch = x[None] if self.layout == "NHWC" else x.transpose(2, 0, 1)[None]
        y = np.asarray(self.backend.infer(np.ascontiguousarray(batch)), np.float32)[0]
        if self.layout != "NHWC":
            y = y.transpose(1, 2, 0)
        if y.shape[:2] != x.shape[:2]:   # cropping an upscaler's output would hide it
            raise OutputSizeError(y.shape[:2], x.shape[:2])
        return np.ascontiguousarray(y[:h, :w], dtype=np.float32)

    def close(self) -> None:
        close = getattr(self.backend, "close", None)
        if close:
            close()

    def __enter__(self) -> "BackendRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_runner(path: str | os.PathLike, threads: int = 0,
                providers: Optional[str] = None) -> tuple[BackendRunner, str]:
    """A runner for an exported artifact (.onnx, .tflite, .engine), loaded even when its export
    failed parity (the caller judges it), and the name of its backend.

    ONNX models default to the CPU provider: the parity gate checks the CPU deployment, and an
    FP32 model on a GPU provider may use TF32 and miss the 1e-4 gate."""
    from . import load_backend

    path = Path(path)
    # The caller judges it (the gate) or says it failed (evaluate): no "running it anyway".
    kw = {"threads": threads or None, "force": True, "say_forced": False}
    if path.suffix.lower() == ".onnx":
        kw["providers"] = providers or "cpu"
    backend = load_backend(str(path), **kw)
    return BackendRunner(backend), f"runtime.backends:{getattr(backend, 'name', '?')}"
