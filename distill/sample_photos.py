"""scikit-image's bundled photographs, Gaussian-blurred so they look like the blurred inputs the
student sees: `sharpen export`'s calibration and parity images where none are given. Here in
distill, which may not import optimize (the layer above it), so that `sharpen runs --same` runs
two exports' artifacts on the very images, blurred alike, that their parity gate ran on."""
from __future__ import annotations

from typing import Sequence

import numpy as np

# Disjoint sets of scikit-image sample photos (all bundled with the package, no download).
BUILTIN_CALIB = ("astronaut", "coffee", "rocket", "hubble_deep_field")
BUILTIN_PARITY = ("chelsea", "immunohistochemistry")
BUILTIN_BLUR_SIGMA = 1.2


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return img
    import cv2

    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma,
                            borderType=cv2.BORDER_REFLECT_101)


def sample_photos(names: Sequence[str],
                  blur_sigma: float = BUILTIN_BLUR_SIGMA) -> list[tuple[str, np.ndarray]]:
    """The photos `names` as (name, HxWx3 float32 RGB in [0, 1]), Gaussian-blurred. ImportError
    without scikit-image."""
    import skimage.data

    out = []
    for n in names:
        img = getattr(skimage.data, n)()
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        img = img[..., :3].astype(np.float32) / 255.0
        out.append((n, np.ascontiguousarray(gaussian_blur(img, blur_sigma))))
    return out
