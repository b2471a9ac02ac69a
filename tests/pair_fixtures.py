"""Paired folders of noise images (input/NAME beside target/NAME, the layout `sharpen labels
--data` reads) for the tests that label one: hold-out and lineage."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from distill.images import write_image


def noise_pairs(folder: Path, n: int, size: int = 16) -> Path:
    """`n` pairs of `size`x`size` noise images, input/imNN.png beside target/imNN.png; the
    same images for the same arguments."""
    rng = np.random.default_rng(0)
    for i in range(n):
        for side in ("input", "target"):
            write_image(folder / side / f"im{i:02d}.png",
                        rng.random((size, size, 3)).astype(np.float32))
    return folder
