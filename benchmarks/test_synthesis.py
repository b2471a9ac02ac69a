"""Blur synthesis speed (pytest-benchmark): one 512x512 pair per preset, the size issue 17 asks
to synthesise "in well under a second on one core" for on-the-fly training crops.

extra_info holds preset, ms (median), p90_ms, threads and meets_target (median under
budget_ms). Timing is recorded, never asserted: these machines are shared, and a busy one would
fail a bound.
"""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.latency import p90
from distill.data.scene_blur import PRESETS, synthesize_pair

BUDGET_MS = 1000.0
SIZE = 512


def _photo() -> np.ndarray:
    """A 512x512 image with edges at every scale (a real photo's statistics matter less here
    than its size: the cost is warps and blurs over every pixel)."""
    rng = np.random.default_rng(0)
    import cv2

    img = np.zeros((SIZE, SIZE, 3), np.float32)
    for cell in (4, 16, 64):
        tile = rng.uniform(0, 1, (SIZE // cell, SIZE // cell, 3)).astype(np.float32)
        img += cv2.resize(tile, (SIZE, SIZE), interpolation=cv2.INTER_NEAREST) / 3
    return img


@pytest.fixture
def one_thread():
    """OpenCV on one thread, as the issue's "on one core" asks: it takes every core by default
    (its own pool, which OMP_NUM_THREADS does not size), so a median said of one thread was
    of two on a 2-core host."""
    import cv2

    was = cv2.getNumThreads()
    cv2.setNumThreads(1)
    yield 1
    cv2.setNumThreads(was)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_synthesize_pair_512(benchmark, name, one_thread):
    img, cfg = _photo(), PRESETS[name]
    seeds = iter(range(1_000_000))
    benchmark(lambda: synthesize_pair(img, np.random.default_rng(next(seeds)), cfg))
    stats = getattr(benchmark, "stats", None)
    if stats is None:      # --benchmark-disable: ran once, untimed
        return
    ms = 1000 * stats.stats.median
    benchmark.extra_info.update(preset=name, size=f"{SIZE}x{SIZE}", ms=round(ms, 3),
                                p90_ms=round(1000 * p90(stats.stats.data), 3),
                                budget_ms=BUDGET_MS, meets_target=ms < BUDGET_MS,
                                threads=one_thread)
