"""Parity gate: run an exported artifact on real images at full resolution and compare it with the
FP32 PyTorch student.

Artifacts are run by the runtime's own backend (`runtime.backends.load_backend`), so the gate
checks what `sharpen run` deploys.

All metrics are computed on outputs clipped to [0, 1] (the image that is delivered):
max abs error, PSNR and SSIM (skimage, channel_axis=-1, data_range=1) to the FP32 PyTorch output,
and SSIM to ground truth / teacher outputs when given. Over several images the worst case is
reported (max of max-abs, min of PSNR, min of SSIM), and that is what the thresholds gate.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from distill.metrics import psnr, ssim
from runtime.backends.runner import BackendRunner, Runner, load_runner

__all__ = ["compare", "load_runner", "torch_runner", "run_parity", "measure_latency", "psnr",
           "ssim", "ParityResult", "BackendRunner"]



# --------------------------------------------------------------------------- metrics

def compare(out: np.ndarray, ref: np.ndarray) -> dict:
    out, ref = np.clip(out, 0, 1), np.clip(ref, 0, 1)
    if out.shape != ref.shape:
        raise ValueError(f"output shape {out.shape} differs from the reference {ref.shape}")
    return {"max_abs": float(np.max(np.abs(out - ref))), "psnr": psnr(out, ref),
            "ssim": ssim(out, ref)}


# --------------------------------------------------------------------------- runners

def torch_runner(model) -> Runner:
    """The FP32 PyTorch student as a runner (reflect-pad to its multiple, crop back)."""
    import torch

    from distill.students import for_inference, run_padded

    model = for_inference(model)

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
    ssim_gt_drop: float | None = None   # worst image: SSIM to ground truth lost against FP32
    images: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def run_parity(runner: Runner, images: Sequence[tuple[str, np.ndarray]],
               references: dict[str, np.ndarray],
               gt: dict[str, np.ndarray] | None = None,
               teacher: dict[str, np.ndarray] | None = None,
               ref_ssim_gt: dict[str, float] | None = None) -> ParityResult:
    """Run `runner` on each (name, image) and compare with references[name] (FP32 outputs).
    `ref_ssim_gt`: the references' SSIM to `gt` where the caller has it already."""
    per = []
    for name, img in images:
        out = runner(img)
        row = {"image": name, "shape": list(img.shape), **compare(out, references[name])}
        o = np.clip(out, 0, 1)
        if gt and name in gt:
            g = np.clip(gt[name], 0, 1)
            row["ssim_gt"] = ssim(o, g)
            ref = (ref_ssim_gt or {}).get(name)
            if ref is None:
                ref = ssim(np.clip(references[name], 0, 1), g)
            row["ssim_gt_drop"] = ref - row["ssim_gt"]
        if teacher and name in teacher:
            row["ssim_teacher"] = ssim(o, np.clip(teacher[name], 0, 1))
        per.append(row)

    def worst(key, fn):
        vals = [r[key] for r in per if key in r]
        return fn(vals) if vals else None

    return ParityResult(max_abs=worst("max_abs", max), psnr=worst("psnr", min),
                        ssim=worst("ssim", min), ssim_gt=worst("ssim_gt", min),
                        ssim_teacher=worst("ssim_teacher", min),
                        ssim_gt_drop=worst("ssim_gt_drop", max), images=per)


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
