"""Tiled sharpening works tile by tile: outputs identical to blending the whole frame in
float, with memory bounded by a band of tiles plus the uint8 frames in and out."""
from __future__ import annotations

import tracemalloc
from typing import Optional

import cv2
import numpy as np
import pytest

from runtime.backends.base import Backend
from runtime.prepost import FrameProcessor, bgr_to_rgbf, rgbf_to_bgr
from runtime.tiling import gaussian_window, pad_to_multiple, round_up, tile_starts, tile_stride
from runtime.tiling import tiled_apply


def whole_frame_blend(image: np.ndarray, fn, tile: int, overlap: int, multiple: int,
                      batch_size: int) -> np.ndarray:
    """The blend over full-frame float arrays (the padded frame, an HxWxC accumulator, an HxW
    weight plane) that tiled inference must reproduce bit for bit."""
    padded, (h, w) = pad_to_multiple(np.asarray(image, dtype=np.float32), multiple)
    H, W = padded.shape[:2]
    if tile == 0 or (tile >= H and tile >= W):
        out = fn(np.ascontiguousarray(padded.transpose(2, 0, 1))[None])[0]
        return np.ascontiguousarray(out.transpose(1, 2, 0)[:h, :w], dtype=np.float32)
    tile = round_up(tile, multiple)
    th, tw = min(tile, H), min(tile, W)
    boxes = [(y, x) for y in tile_starts(H, th, overlap, multiple)
             for x in tile_starts(W, tw, overlap, multiple)]
    base = gaussian_window(th, tw)
    my = min(overlap // 2, (th - tile_stride(th, overlap, multiple)) // 2)
    mx = min(overlap // 2, (tw - tile_stride(tw, overlap, multiple)) // 2)

    def window(y: int, x: int) -> np.ndarray:
        wt = base.copy()
        if my > 0 and y > 0:
            wt[:my] = 0
        if my > 0 and y + th < H:
            wt[th - my:] = 0
        if mx > 0 and x > 0:
            wt[:, :mx] = 0
        if mx > 0 and x + tw < W:
            wt[:, tw - mx:] = 0
        return wt
    acc: Optional[np.ndarray] = None
    wsum = np.zeros((H, W), dtype=np.float32)
    for i in range(0, len(boxes), batch_size):
        chunk = boxes[i:i + batch_size]
        batch = np.ascontiguousarray(
            np.stack([padded[y:y + th, x:x + tw].transpose(2, 0, 1) for y, x in chunk]))
        out = np.asarray(fn(batch), dtype=np.float32)
        if acc is None:
            acc = np.zeros((H, W, out.shape[1]), dtype=np.float32)
        for (y, x), o in zip(chunk, out):
            wt = window(y, x)
            acc[y:y + th, x:x + tw] += o.transpose(1, 2, 0) * wt[..., None]
            wsum[y:y + th, x:x + tw] += wt
    np.divide(acc, wsum[..., None], out=acc)
    return np.ascontiguousarray(acc[:h, :w])


def context_model(batch: np.ndarray) -> np.ndarray:
    """NCHW float -> NCHW float whose pixels depend on their 7x7 neighbourhood and on where
    they lie in the tile, so every tile edge and every blend weight shows in the output."""
    n, c, h, w = batch.shape
    out = np.empty_like(batch)
    ramp = np.linspace(-0.05, 0.05, w, dtype=np.float32)
    for i in range(n):
        for ch in range(c):
            plane = batch[i, ch]
            out[i, ch] = 1.6 * plane - 0.6 * cv2.blur(plane, (7, 7)) + ramp
    return out


class ContextBackend(Backend):
    """A numpy model in either layout (a LiteRT model is NHWC)."""

    def __init__(self, layout: str = "NCHW", multiple: int = 8) -> None:
        self.layout, self.multiple = layout, multiple

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.layout == "NCHW":
            return context_model(batch)
        return context_model(batch.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1).copy()


def frame(h: int, w: int, dtype=np.uint8) -> np.ndarray:
    hi = 65536 if dtype == np.uint16 else 256
    base = np.random.default_rng(h * 7 + w).integers(0, hi, size=(h, w, 3)).astype(dtype)
    return cv2.GaussianBlur(base, (5, 5), 1.5)   # photo-like, not noise


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("hw,tile,overlap,multiple", [
    ((203, 317), 64, 16, 8),     # neither side a multiple: reflect-padded border tiles
    ((96, 128), 48, 20, 16),
    ((37, 300), 64, 24, 8),      # one row of tiles, shorter than a tile
    ((50, 60), 128, 32, 8),      # the frame fits one tile: the whole frame at once
    ((1, 70), 32, 8, 8),         # one pixel high: edge padding
])
def test_tiled_frame_is_identical_to_the_whole_frame_blend(layout, hw, tile, overlap, multiple):
    f = frame(*hw)
    out = FrameProcessor(ContextBackend(layout, multiple), tile=tile, overlap=overlap)(f)
    ref = rgbf_to_bgr(whole_frame_blend(bgr_to_rgbf(f), context_model, tile, overlap, multiple,
                                        batch_size=1), f.dtype)
    assert out.dtype == np.uint8 and out.shape == f.shape
    np.testing.assert_array_equal(out, ref)


def test_tiled_16_bit_frame_is_identical_to_the_whole_frame_blend():
    f = frame(150, 170, np.uint16)
    out = FrameProcessor(ContextBackend(), tile=64, overlap=16)(f)
    ref = rgbf_to_bgr(whole_frame_blend(bgr_to_rgbf(f), context_model, 64, 16, 8, 1), f.dtype)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("batch_size", [1, 3, 4])
def test_tiled_apply_is_identical_to_the_whole_frame_blend(batch_size):
    img = bgr_to_rgbf(frame(211, 173))
    got = tiled_apply(img, context_model, tile=64, overlap=24, multiple=8,
                      batch_size=batch_size)
    want = whole_frame_blend(img, context_model, 64, 24, 8, batch_size)
    assert got.shape == img.shape and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)


def _peak_bytes(run) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_tiled_frame_holds_no_full_frame_float_array():
    """What `--tile` is for: a board that cannot hold a float copy of a 4K frame. The frame
    used to be converted, padded and blended as whole-frame float32 arrays (over two float
    copies at the peak, besides the model); now a band of tiles and the uint8 output."""
    f = frame(600, 800)
    proc = FrameProcessor(ContextBackend(), tile=64, overlap=16)
    proc(f)   # first-frame warnings and caches out of the way
    float_frame = f.size * 4
    peak = _peak_bytes(lambda: proc(f))
    assert peak < 0.5 * float_frame, f"peak {peak / float_frame:.2f} float frames"


class CountingBackend(ContextBackend):
    """Counts the pixels the model is run on."""

    def __init__(self) -> None:
        super().__init__()
        self.pixels = 0

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.pixels += batch.shape[0] * batch.shape[2] * batch.shape[3]
        return super().infer(batch)


def test_tiled_warmup_runs_one_tile_not_the_frame():
    """The run warms the engine up twice on its first frame: tiled, that ran every tile of an
    8K photo twice more (a single photo took three times as long); the engine only meets the
    tile's shape. The first frame's tiling warnings are still said, for the frame's size."""
    f = frame(600, 800)
    b = CountingBackend()
    proc = FrameProcessor(b, tile=64, overlap=48)
    with pytest.warns(UserWarning, match="per 800x600 frame"):
        proc.warmup(f)
    assert b.pixels == 64 * 64
    b.pixels = 0
    proc(f)
    assert b.pixels > f.shape[0] * f.shape[1]
    small = FrameProcessor(CountingBackend(), tile=256, overlap=32)
    small.warmup(frame(40, 50))   # one tile: the frame's own shape, padded
    assert small.backend.pixels == 40 * 56
