"""Parity gate: run an exported artifact on real images at full resolution and compare it with the
FP32 PyTorch student.

Artifacts are run by the runtime's own backend (`runtime.backends.load_backend`), so the gate
checks what `sharpen run` deploys; the small runners here (ONNX Runtime CPU, LiteRT) are a
fallback with the same conventions (pad (reflect) to the model's multiple, run, crop back) for
an install without the runtime package.

All metrics are computed on outputs clipped to [0, 1] (the image that is delivered):
max abs error, PSNR and SSIM (skimage, channel_axis=-1, data_range=1) to the FP32 PyTorch output,
and SSIM to ground truth / teacher outputs when given. Over several images the worst case is
reported (max of max-abs, min of PSNR, min of SSIM), and that is what the thresholds gate.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

Runner = Callable[[np.ndarray], np.ndarray]  # HxWx3 float32 RGB -> HxWx3 float32 RGB


# --------------------------------------------------------------------------- metrics

def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    if mse <= 1e-20:
        return float("inf")
    return 10.0 * math.log10(data_range ** 2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(np.asarray(a, np.float32), np.asarray(b, np.float32),
                                       channel_axis=-1, data_range=1.0))


def compare(out: np.ndarray, ref: np.ndarray) -> dict:
    out, ref = np.clip(out, 0, 1), np.clip(ref, 0, 1)
    if out.shape != ref.shape:
        raise ValueError(f"output shape {out.shape} differs from the reference {ref.shape}")
    return {"max_abs": float(np.max(np.abs(out - ref))), "psnr": psnr(out, ref),
            "ssim": ssim(out, ref)}


# --------------------------------------------------------------------------- runners

def _pad(img: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
    from runtime.tiling import pad_to_multiple

    return pad_to_multiple(np.asarray(img, np.float32), max(int(multiple), 1))


class OnnxRunner:
    """ONNX Runtime CPU session for an NCHW model (FP32 or QDQ INT8)."""

    def __init__(self, path: str | os.PathLike, threads: int = 0, multiple: int | None = None):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.multiple = int(multiple or meta.get("multiple", 1))
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, img: np.ndarray) -> np.ndarray:
        x, (h, w) = _pad(img, self.multiple)
        y = self.session.run(None, {self.input_name: x.transpose(2, 0, 1)[None].copy()})[0]
        return np.ascontiguousarray(y[0].transpose(1, 2, 0)[:h, :w], dtype=np.float32)


def _litert_interpreter(path: str, threads: int):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # a TensorFlow install without LiteRT
        from tensorflow.lite import Interpreter  # type: ignore
    return Interpreter(model_path=path, num_threads=int(threads) if threads else None)


class TFLiteRunner:
    """LiteRT interpreter for an NHWC model (float or full-integer); the input tensor is resized
    to each image's (padded) size."""

    def __init__(self, path: str | os.PathLike, threads: int = 0, multiple: int | None = None):
        self.interp = _litert_interpreter(str(path), threads)
        side = Path(str(path) + ".json")
        meta = json.loads(side.read_text()) if side.exists() else {}
        self.multiple = int(multiple or meta.get("multiple", 1))
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]
        self.shape: tuple[int, ...] | None = None

    def __call__(self, img: np.ndarray) -> np.ndarray:
        x, (h, w) = _pad(img, self.multiple)
        shape = (1, x.shape[0], x.shape[1], 3)
        if shape != self.shape:
            self.interp.resize_tensor_input(self.inp["index"], list(shape), strict=False)
            self.interp.allocate_tensors()
            self.inp = self.interp.get_input_details()[0]
            self.out = self.interp.get_output_details()[0]
            self.shape = shape
        x = x[None]
        if self.inp["dtype"] in (np.int8, np.uint8):
            scale, zp = self.inp["quantization"]
            info = np.iinfo(self.inp["dtype"])
            x = np.clip(np.round(x / scale + zp), info.min, info.max).astype(self.inp["dtype"])
        else:
            x = x.astype(self.inp["dtype"])
        self.interp.set_tensor(self.inp["index"], x)
        self.interp.invoke()
        y = self.interp.get_tensor(self.out["index"])
        if self.out["dtype"] in (np.int8, np.uint8):
            scale, zp = self.out["quantization"]
            y = (y.astype(np.float32) - zp) * scale
        return np.ascontiguousarray(y[0, :h, :w], dtype=np.float32)


def runtime_backend_loader():
    """`runtime.backends.load_backend` when the runtime package provides it, else None."""
    try:
        from runtime.backends import load_backend
    except Exception:
        return None
    return load_backend


class BackendRunner:
    """Full-image runner around a runtime `Backend`: pad to its multiple, convert to its layout,
    `infer`, crop back. This is exactly what `sharpen run` executes per frame."""

    def __init__(self, backend):
        self.backend = backend
        self.multiple = int(getattr(backend, "multiple", 1) or 1)
        self.layout = getattr(backend, "layout", "NCHW")

    def __call__(self, img: np.ndarray) -> np.ndarray:
        x, (h, w) = _pad(img, self.multiple)
        batch = x[None] if self.layout == "NHWC" else x.transpose(2, 0, 1)[None]
        y = np.asarray(self.backend.infer(np.ascontiguousarray(batch)), np.float32)[0]
        if self.layout != "NHWC":
            y = y.transpose(1, 2, 0)
        return np.ascontiguousarray(y[:h, :w], dtype=np.float32)

    def close(self) -> None:
        close = getattr(self.backend, "close", None)
        if close:
            close()


def load_runner(path: str | os.PathLike, threads: int = 0, multiple: int | None = None,
                prefer_runtime: bool = True) -> tuple[Runner, str]:
    """A callable HxWx3 -> HxWx3 for an artifact, and the name of what runs it.

    ONNX models run on the CPU provider (the parity gate checks the CPU deployment; an FP32
    model on a GPU provider may use TF32 and miss the 1e-4 gate)."""
    path = Path(path)
    suffix = path.suffix.lower()
    loader = runtime_backend_loader() if prefer_runtime else None
    if loader is not None:
        kw = {"threads": threads or None}
        if suffix == ".onnx":
            kw["providers"] = "cpu"
        backend = loader(str(path), **kw)
        return BackendRunner(backend), f"runtime.backends:{getattr(backend, 'name', '?')}"
    if suffix == ".onnx":
        return OnnxRunner(path, threads, multiple), "onnxruntime"
    if suffix == ".tflite":
        return TFLiteRunner(path, threads, multiple), "litert"
    raise ValueError(f"no runner for {path.name} on this machine (the runtime package is "
                     "missing)")


def torch_runner(model) -> Runner:
    """The FP32 PyTorch student as a runner (reflect-pad to its multiple, crop back)."""
    import torch

    from distill.students import run_padded

    def run(img: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].float()
        with torch.inference_mode():
            y = run_padded(model, x)
        return y[0].permute(1, 2, 0).numpy().astype(np.float32)

    return run


# --------------------------------------------------------------------------- gate

@dataclass
class ParityResult:
    max_abs: float
    psnr: float
    ssim: float
    ssim_gt: float | None = None
    ssim_teacher: float | None = None
    images: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def run_parity(runner: Runner, images: Sequence[tuple[str, np.ndarray]],
               references: dict[str, np.ndarray],
               gt: dict[str, np.ndarray] | None = None,
               teacher: dict[str, np.ndarray] | None = None) -> ParityResult:
    """Run `runner` on each (name, image) and compare with references[name] (FP32 outputs)."""
    per = []
    for name, img in images:
        out = runner(img)
        row = {"image": name, "shape": list(img.shape), **compare(out, references[name])}
        o = np.clip(out, 0, 1)
        if gt and name in gt:
            row["ssim_gt"] = ssim(o, np.clip(gt[name], 0, 1))
        if teacher and name in teacher:
            row["ssim_teacher"] = ssim(o, np.clip(teacher[name], 0, 1))
        per.append(row)

    def worst(key, fn):
        vals = [r[key] for r in per if key in r]
        return fn(vals) if vals else None

    return ParityResult(max_abs=worst("max_abs", max), psnr=worst("psnr", min),
                        ssim=worst("ssim", min), ssim_gt=worst("ssim_gt", min),
                        ssim_teacher=worst("ssim_teacher", min), images=per)


def measure_latency(runner: Runner, hw: tuple[int, int] = (1080, 1920), runs: int = 5,
                    warmup: int = 1, image: np.ndarray | None = None) -> float:
    """Median wall time in seconds of one full frame (padding and cropping included)."""
    if image is None:
        rng = np.random.default_rng(0)
        image = rng.random((hw[0], hw[1], 3), dtype=np.float32)
    for _ in range(max(warmup, 0)):
        runner(image)
    times = []
    for _ in range(max(runs, 1)):
        t0 = time.perf_counter()
        runner(image)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
