"""Quality checks of the shipped models on fixed embedded test images.

`regression_metrics` is what tests/test_shipped_models.py compares with the numbers recorded in
each model card, so a later change to the models, the data pipeline or the metrics cannot
silently change what the shipped weights do. `full_test_metrics` gives the card's headline
numbers over the whole embedded test split."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .metrics import psnr, ssim

# A few fixed images of the embedded test split (one photo moderate, one heavy, one dead-leaves),
# centre-cropped so the CPU teacher needs one tile each.
REGRESSION_IMAGES = ("coffee_0", "rocket_1", "deadleaves_9000_0")
REGRESSION_CROP = 128
# How far a measurement may be from the card's number. The numbers are deterministic on CPU:
# re-measured on a 2-core Intel Xeon (torch 2.13, 1 and 2 threads) every shipped model was
# within the cards' rounding to 4 places (5e-5) of them. The 0.05 dB and 0.002 this used
# to allow let a real change pass: each weight of `fast` moved by 0.5% (a few fine-tuning
# steps) moved its PSNR 0.027 dB and SSIM 0.0004, and the shipped `edge` is within 0.025 dB
# of `fast`'s card. These leave 40x the rounding for PSNR and 4x for SSIM, against float sums
# that barely move: on that Xeon (AVX-512), with 1 and 2 threads, torch's kernels held to
# AVX2 (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2,
# OpenCV's and numpy's AVX-512 off too) or to no SIMD (ATEN_CPU_CAPABILITY=default
# ONEDNN_MAX_CPU_ISA=SSE41), as a CI runner without AVX-512 runs them, no model moved more
# than 4.6e-7 dB or 1.1e-8 SSIM (the teacher; the students 1.1e-7 and 1e-8).
REGRESSION_TOLERANCE = {"psnr": 0.002, "ssim": 0.0002}


def _crop(a: np.ndarray, side: int) -> np.ndarray:
    h, w = a.shape[:2]
    y, x = (h - side) // 2, (w - side) // 2
    return a[y:y + side, x:x + side]


def regression_images() -> list[tuple[str, np.ndarray, np.ndarray]]:
    from .data.embedded import blurred_pairs
    out = [(n, _crop(b, REGRESSION_CROP), _crop(s, REGRESSION_CROP))
           for n, b, s in blurred_pairs("test") if n in REGRESSION_IMAGES]
    assert len(out) == len(REGRESSION_IMAGES), "embedded test split changed"
    return out


def _student_fn(path: str | Path):
    import torch

    from .checkpoint import load_student
    from .validation import predict
    model, _ = load_student(path)
    return lambda img: predict(model, img, torch.device("cpu"))


def _teacher_fn(path: str | Path):
    from .teacher import Teacher
    t = Teacher.load(path, device="cpu")
    return lambda img: t.sharpen(img)


def model_fn(path: str | Path):
    from .checkpoint import read_checkpoint
    kind = read_checkpoint(path).get("kind")
    return _teacher_fn(path) if kind == "teacher" else _student_fn(path)


def evaluate_pairs(fn, pairs) -> dict[str, float]:
    p, s, ip, is_ = [], [], [], []
    for _, blurred, sharp in pairs:
        out = fn(blurred)
        p.append(psnr(out, sharp))
        s.append(ssim(out, sharp))
        ip.append(psnr(blurred, sharp))
        is_.append(ssim(blurred, sharp))
    return {"psnr": float(np.mean(p)), "ssim": float(np.mean(s)),
            "input_psnr": float(np.mean(ip)), "input_ssim": float(np.mean(is_)),
            "images": len(p)}


def regression_metrics(path: str | Path) -> dict[str, float]:
    return evaluate_pairs(model_fn(path), regression_images())


def full_test_metrics(path: str | Path) -> dict[str, float]:
    from .data.embedded import blurred_pairs
    return evaluate_pairs(model_fn(path), list(blurred_pairs("test")))


def regression_changes(got: dict, want: dict) -> list[str]:
    """Where `got` (regression_metrics) is further from a card's `regression:` numbers than
    REGRESSION_TOLERANCE allows, in words; empty where it keeps them."""
    said = []
    for key, tol in REGRESSION_TOLERANCE.items():
        if not abs(got[key] - want[key]) <= tol:
            said.append(f"{key} {got[key]:.4f}, the card's {want[key]:.4f} (off by "
                        f"{abs(got[key] - want[key]):.4f}, more than {tol:g})")
    return said
