"""PSNR/SSIM as published tables compute them: scikit-image on HxWx3 RGB in [0, 1]."""
from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


# Identical images have infinite PSNR, which turns every mean it enters into inf (one sharp
# frame paired with itself) and is not valid JSON; capped where many published tools cap it.
PSNR_MAX = 100.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.clip(a, 0, 1), np.clip(b, 0, 1)
    if np.array_equal(a, b):   # scikit-image would divide by zero and warn on the way to inf
        return PSNR_MAX
    return min(float(peak_signal_noise_ratio(b, a, data_range=1.0)), PSNR_MAX)


SSIM_MIN_SIDE = 7   # scikit-image's default 7x7 window: smaller images have no SSIM


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    return float(structural_similarity(np.clip(a, 0, 1), np.clip(b, 0, 1), channel_axis=-1,
                                       data_range=1.0))


def psnr_ssim(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    return {"psnr": psnr(a, b), "ssim": ssim(a, b)}
