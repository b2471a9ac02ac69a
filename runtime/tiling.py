"""Tiled inference with Gaussian-weighted blending.

One implementation, used by the teacher (`distill.teacher`) and by the runtime's optional tiled
mode. It is numpy-only because the runtime ships without torch: the network is a callback that
maps a batch of NCHW float32 tiles to a batch of NCHW float32 tiles.

Uniform averaging of overlapping tiles (the official Restormer demo) leaves visible seams where a
tile's poorly-contexted border meets its neighbour's centre. Here each tile is weighted by a
separable Gaussian window that peaks at the tile centre, and the output is
sum(w * tile_out) / sum(w), so every pixel is normalised exactly and tile borders contribute
little.
"""
from __future__ import annotations

from typing import Callable, Iterator, NamedTuple, Optional

import numpy as np

from .contract import PAD_MODE
from .options import OVERLAP, option

TileFn = Callable[[np.ndarray], np.ndarray]


def gaussian_window(h: int, w: int, sigma_frac: float = 0.25) -> np.ndarray:
    """Separable Gaussian, max 1 at the centre; sigma = sigma_frac * side. Never exactly zero, so
    a pixel covered only by tile borders is still normalised correctly."""
    def axis(n: int) -> np.ndarray:
        x = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
        s = max(sigma_frac * n, 1e-6)
        return np.exp(-0.5 * (x / s) ** 2)

    return np.outer(axis(h), axis(w)).astype(np.float32)


def tile_stride(tile: int, overlap: int, multiple: int = 1) -> int:
    """The step between tile starts: tile - overlap rounded down to `multiple`. A network that
    downsamples by `multiple` is shift-invariant only on that grid, so a tile off it computes
    other values than the whole frame (up to 34/255 with `fast`). The overlap is wider than
    asked by the rounding, or narrower only where tile - overlap is below one multiple."""
    m = max(multiple, 1)
    return max((tile - overlap) // m * m, m)


def tile_starts(length: int, tile: int, overlap: int, multiple: int = 1) -> list[int]:
    """Start offsets covering [0, length) with tiles of `tile`, `tile_stride` apart, so on the
    model's grid for a length and tile that are multiples of it; the last tile is aligned to
    the end so border tiles never need padding beyond the image."""
    if tile >= length:
        return [0]
    stride = tile_stride(tile, overlap, multiple)
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return sorted(set(starts))


# numpy.pad's name for the recorded mode: a new PAD_MODE must say how the runtime does it.
NUMPY_PAD_MODE = {"reflect101": "reflect"}[PAD_MODE]


def pad_to_multiple(img: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad an HxWxC image on the bottom/right to a multiple of `multiple` by the rule every
    export records (`contract.PAD_MODE`, `contract.PAD_SIDES`)."""
    h, w = img.shape[:2]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        # numpy's reflect handles pads larger than the image (repeated reflection) and repeats
        # a 1-pixel side along that axis only, as OpenCV's BORDER_REFLECT_101 does.
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode=NUMPY_PAD_MODE)
    return img, (h, w)


def round_up(x: int, m: int) -> int:
    """x rounded up to a multiple of m."""
    return ((x + m - 1) // m) * m


CutFn = Callable[[int, int, int, int], np.ndarray]


def padded_indices(h: int, w: int, multiple: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows and columns of an h x w image that `pad_to_multiple` puts at each position of
    its padded image: a tile of the padded image is img[rows[y:y+th, None], cols[x:x+tw]],
    so it is cut without padding (copying) the whole image."""
    return (np.pad(np.arange(h), (0, (-h) % multiple), mode=NUMPY_PAD_MODE),
            np.pad(np.arange(w), (0, (-w) % multiple), mode=NUMPY_PAD_MODE))


def cut_padded(image: np.ndarray, rows: np.ndarray, cols: np.ndarray,
               y: int, x: int, th: int, tw: int) -> np.ndarray:
    """The th x tw tile at (y, x) of `image` padded as `padded_indices` gave `rows` and `cols`:
    a view where the tile lies inside the image, else a copy of the tile alone."""
    h, w = image.shape[:2]
    if y + th <= h and x + tw <= w:
        return image[y:y + th, x:x + tw]
    return image[rows[y:y + th, None], cols[None, x:x + tw]]


class Band(NamedTuple):
    """`tiled_rows`' state between two batches: the next batch begins at box `at` of the whole
    run's, rows above `top` are finished (yielded), and `acc` (th x W x C) and `wsum` (th x W)
    hold the weighted sums of rows top..top+th so far. A stopped run that kept it goes on
    without running again the tiles already blended into rows below `top`."""
    at: int
    top: int
    acc: np.ndarray
    wsum: np.ndarray


def tiled_rows(cut: CutFn, h: int, w: int, fn: TileFn, tile: int = 256,
               overlap: int = OVERLAP, multiple: int = 8, batch_size: int = 4,
               on_tile: Optional[Callable[[int, int], None]] = None, from_row: int = 0,
               band: Optional[Band] = None, on_band: Optional[Callable[[Band], None]] = None
               ) -> Iterator[tuple[int, np.ndarray]]:
    """Run `fn` tile by tile over an h x w image and yield its blended output as it is
    finished, top to bottom: (y, rows), rows a k x w x C' float32 array for rows y..y+k
    (valid until the next one is asked for: copy or convert it first).

    cut(y, x, th, tw): the th x tw x C float32 tile at (y, x) of the image reflect-padded on the
    bottom/right to a multiple of `multiple` (`padded_indices`, `cut_padded`).
    tile: tile side in pixels (rounded up to `multiple`); 0 runs the whole image at once.
    overlap: pixels shared by neighbouring tiles.
    on_tile(done, total): progress callback, called after each batch.

    Only a band of one tile's height across the image is held in float: tiles run in rows, and
    rows above the next tile row's start get no more tiles, so they are divided out and yielded.
    Each pixel sums the same tiles in the same order as a whole-image accumulator would, so the
    output is the same to the bit.
    from_row: rows above it are done already (a stopped run's): only the tiles that reach a row
    from it down run (from the start of the batch that holds the first, as a run from row 0
    batched them), and only rows from it down are yielded, each as that run made it (the tiles
    that reach it are the same, summed in the same order); `on_tile` counts those run.
    band: a stopped run's blend band (`on_band`'s): the run goes on from its batch with its
    sums, the tiles of the row above not run again, where that runs fewer tiles than
    `from_row` does. on_band(band): called after each batch, once the rows it finished were
    yielded, with the band as it stands (its arrays are reused: copy them to keep them).
    """
    if tile < 0 or overlap < 0:
        raise ValueError(f"tile and overlap must be >= 0, got tile={tile} overlap={overlap}")
    H, W = round_up(h, multiple), round_up(w, multiple)

    if tile == 0 or (tile >= H and tile >= W):
        out = fn(np.ascontiguousarray(cut(0, 0, H, W).transpose(2, 0, 1))[None])[0]
        if on_tile:
            on_tile(1, 1)
        yield 0, np.asarray(out.transpose(1, 2, 0)[:h, :w], dtype=np.float32)
        return

    tile = round_up(tile, multiple)
    if overlap >= tile:
        raise ValueError(f"overlap ({overlap}) must be smaller than the tile ({tile})")
    th, tw = min(tile, H), min(tile, W)
    boxes = [(y, x) for y in tile_starts(H, th, overlap, multiple)
             for x in tile_starts(W, tw, overlap, multiple)]
    start = _resume_at(boxes, th, batch_size, from_row, h)
    if band is not None and not _band_fits(band, start, len(boxes), batch_size, th, W):
        band = None   # another image's or tiling's, or no tile spared by it
    if band is not None:
        start, from_row = band.at, band.top
    boxes = boxes[start:]
    base = gaussian_window(th, tw)
    # Zero the weight of a strip of overlap/2 px along every tile edge that lies inside the image:
    # those pixels saw zero padding instead of their neighbours, and a neighbouring tile always
    # covers them with full context. Edges on the image border keep their weight (nothing else
    # covers them). This makes tiling exact for receptive fields up to overlap/2 while the
    # Gaussian still hides seams of models whose receptive field is larger. The strip never
    # exceeds half of what neighbours share (tile - stride): wider, pixels between two tiles'
    # strips would have no weight in any tile.
    my = min(overlap // 2, (th - tile_stride(th, overlap, multiple)) // 2)
    mx = min(overlap // 2, (tw - tile_stride(tw, overlap, multiple)) // 2)

    def window(y: int, x: int) -> np.ndarray:
        if my <= 0 and mx <= 0:
            return base
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

    # The band: padded rows top..top+th, every tile that reaches them added in.
    acc: Optional[np.ndarray] = None
    wsum = np.zeros((th, W), dtype=np.float32)
    if not boxes:   # every row done
        return
    top = boxes[0][0]   # the band starts at the first tile row that runs
    if band is not None:
        acc, top = band.acc.copy(), band.top
        wsum[:] = band.wsum

    def finished(k: int) -> Iterator[tuple[int, np.ndarray]]:
        # Rows top..top+k are done: divide out (those past the image are padding), then move
        # the band down by k rows.
        nonlocal top
        assert acc is not None
        n, skip = min(k, h - top), max(0, min(k, from_row - top))
        if n > skip:
            np.divide(acc[skip:n], wsum[skip:n, :, None], out=acc[skip:n])
            yield top + skip, acc[skip:n, :w]
        # k rows at a time, top down: no block overlaps its source, so numpy copies in place
        # (an overlapping assignment goes through a temporary copy of the band).
        for j in range(0, th - k, k):
            n = min(k, th - k - j)
            acc[j:j + n] = acc[j + k:j + k + n]
            wsum[j:j + n] = wsum[j + k:j + k + n]
        acc[max(th - k, 0):] = 0
        wsum[max(th - k, 0):] = 0
        top += k

    for i in range(0, len(boxes), batch_size):
        chunk = boxes[i:i + batch_size]
        batch = np.ascontiguousarray(
            np.stack([cut(y, x, th, tw).transpose(2, 0, 1) for y, x in chunk]))
        out = np.asarray(fn(batch), dtype=np.float32)
        del batch
        if acc is None:
            acc = np.zeros((th, W, out.shape[1]), dtype=np.float32)
        for (y, x), o in zip(chunk, out):
            if y > top:
                yield from finished(y - top)
            wt = window(y, x)
            acc[:, x:x + tw] += o.transpose(1, 2, 0) * wt[..., None]
            wsum[:, x:x + tw] += wt
        if on_tile:
            on_tile(min(i + batch_size, len(boxes)), len(boxes))
        if on_band and i + batch_size < len(boxes):
            on_band(Band(start + i + batch_size, top, acc, wsum))
    yield from finished(th)


def _band_fits(band: Band, start: int, n: int, batch_size: int, th: int, W: int) -> bool:
    """Whether `band` can go on in a run of `n` boxes that would otherwise start at `start`:
    on a batch boundary of it, with the band's shape, and sparing more tiles than `start`."""
    return (start < band.at < n and band.at % max(batch_size, 1) == 0
            and band.acc.ndim == 3 and band.acc.shape[:2] == (th, W)
            and band.wsum.shape == (th, W) and band.acc.dtype == band.wsum.dtype == np.float32)


def _resume_at(boxes: list[tuple[int, int]], th: int, batch_size: int, from_row: int,
               h: int) -> int:
    """The index in `boxes` a run whose rows above `from_row` are done starts at: the first
    batch of an uninterrupted run's that holds a tile reaching a row from it down to `h` (the
    padding below needs none: all kept, nothing runs). An engine's output for a tile differs
    in its last bits with the batch it ran in (2e-7 for the teacher between batches of 1 and
    2), so batches cut elsewhere blend other values."""
    first = next((i for i, (y, _) in enumerate(boxes) if y + th > from_row and from_row < h),
                 len(boxes))
    return first if first == len(boxes) else first - first % max(batch_size, 1)


def tiled_apply(image: np.ndarray, fn: TileFn, tile: int = 256, overlap: int = OVERLAP,
                multiple: int = 8, batch_size: int = 4,
                on_tile: Optional[Callable[[int, int], None]] = None,
                out: Optional[np.ndarray] = None, from_row: int = 0,
                on_rows: Optional[Callable[[int], None]] = None, band: Optional[Band] = None,
                on_band: Optional[Callable[[Band], None]] = None) -> np.ndarray:
    """Run `fn` over `image` (HxWxC float32) tile by tile and blend the outputs (`tiled_rows`).

    tile: tile side in pixels (rounded up to `multiple`); 0 runs the whole image at once.
    overlap: pixels shared by neighbouring tiles.
    on_tile(done, total): progress callback, called after each batch.
    out: the HxWxC' float32 array to write into (a file's memmap, which a stopped run keeps);
    from_row: its rows above this are done and kept, only the rest computed (`tiled_rows`);
    on_rows(n): called once rows up to n are in it.
    band, on_band: a stopped run's blend band to go on from, and a call with it after each
    batch (`tiled_rows`), once the rows that batch finished are in `out`.
    Returns an HxWxC' float32 image with the input's height and width (`out`, where given).
    """
    if image.ndim != 3:
        raise ValueError(f"tiled_apply expects an HxWxC image, got shape {image.shape}")
    image = np.asarray(image, dtype=np.float32)
    h, w = image.shape[:2]
    rows, cols = padded_indices(h, w, multiple)
    result: Optional[np.ndarray] = out
    for y, part in tiled_rows(lambda *box: cut_padded(image, rows, cols, *box), h, w, fn,
                              tile, overlap, multiple, batch_size, on_tile, from_row,
                              band, on_band):
        if result is None:
            result = np.empty((h, w, part.shape[2]), dtype=np.float32)
        result[y:y + len(part)] = part
        if on_rows:
            on_rows(y + len(part))
    assert result is not None
    return result


def count_tiles(h: int, w: int, tile: int, overlap: int, multiple: int = 8,
                from_row: int = 0, batch_size: int = 1, at: int = 0) -> int:
    """Number of tiles `tiled_apply` runs for an h x w image (used to scale tile timings);
    with `from_row`, those it runs when the rows above it are done (`batch_size` tiles a
    batch): what a stopped `sharpen teacher` has left of a photo; `at`, the box a kept blend
    band (`Band.at`) goes on from, where it spares more."""
    H, W = round_up(h, multiple), round_up(w, multiple)
    if tile == 0 or (tile >= H and tile >= W):
        return 1
    tile = round_up(tile, multiple)
    th = min(tile, H)
    rows = tile_starts(H, th, overlap, multiple)
    cols = len(tile_starts(W, min(tile, W), overlap, multiple))
    if not from_row and not at:
        return len(rows) * cols
    boxes = [(y, 0) for y in rows for _ in range(cols)]
    at = at if at % max(batch_size, 1) == 0 else 0   # as `_band_fits`: off a batch, unused
    return len(boxes) - max(_resume_at(boxes, th, batch_size, from_row, h), min(at, len(boxes)))


# What distill.students.receptive_field returns for a field its largest probe still clips:
# wider than half of it, the whole of any frame the project handles (global pooling, an FFT,
# attention over the frame). `sharpen models` calls it global; no image is large enough to
# hold it, and none needs to be.
GLOBAL_FIELD = 4096


def auto_overlap(tile: int, receptive_field: Optional[int] = None) -> int:
    """The overlap `sharpen run --tile` uses when --overlap is not given: the model's receptive
    field, since tiled_apply is exact once a tile's discarded border strip (overlap/2) covers
    what a pixel sees; OVERLAP when the export did not record it. At most half the tile: a
    wider overlap would leave neighbours less than half a tile apart, every pixel computed
    more than four times."""
    return min(receptive_field or OVERLAP, max(tile, 0) // 2)


def tiling_warnings(h: int, w: int, tile: int, overlap: int, multiple: int = 8,
                    receptive_field: int | None = None, auto: bool = False,
                    flags: bool = False, unrecorded: bool = False,
                    model: object = None, tile_given: bool = True) -> list[str]:
    """What a user should know before an h x w frame is tiled: a tile rounded up to the model's
    size multiple, tiles that overlap so much that each pixel is computed many times, and an
    overlap narrower than the model's receptive field (the blend then hides seams only
    partly: a tile's border pixels miss context its neighbour had). `auto`: the overlap is
    `auto_overlap`'s, not the user's, so it is narrower only where the tile capped it.
    `unrecorded`: the model is an export that records no receptive field (one from before it
    was recorded), whose automatic overlap is then a fixed one that may be too narrow; `model`,
    its file, which that message names.
    The messages name run_stream's keywords (`tile=250`), or with `flags` the flags of
    `sharpen run` (`--tile 250`). `tile_given` False: the frame is tiled without a tile asked
    for (above the automatic tiling's size), where an overlap takes effect only with one."""
    if not tile:
        return []

    def named(name: str, value: object = None) -> str:
        return option(name, value, flags)

    out = []
    t = round_up(tile, multiple)
    if t != tile:
        out.append(f"{named('tile', tile)} runs as {t} (a multiple of the model's {multiple})")
    H, W = round_up(h, multiple), round_up(w, multiple)
    if t >= H and t >= W:
        return out
    if receptive_field and receptive_field >= GLOBAL_FIELD:
        # No overlap reaches it: a tile's pooling sees the tile, never the frame.
        out.append(f"the model's receptive field is global (all of the frame): each tile sees "
                   "itself alone, whatever the overlap, and tile seams or a tile's tone may "
                   f"show; {named('tile', max(H, W))} or more runs the frame whole")
    elif receptive_field and overlap < receptive_field and auto:
        out.append(f"the automatic overlap {overlap} is capped at half of "
                   f"{named('tile', t)}, narrower than the model's receptive field "
                   f"({receptive_field} px): tile seams may show; a {named('tile')} of at "
                   f"least {2 * receptive_field} lets the overlap reach it")
    elif unrecorded and auto and not receptive_field:
        whose = f"{model}: its export" if model else "the model's export"
        out.append(f"{whose} records no receptive field (an export from before it "
                   f"was recorded): the automatic overlap {overlap} may be narrower than it, and "
                   "tile seams may show; export it again with `sharpen export` to record it, or "
                   f"give a wider {named('overlap')}"
                   + ("" if tile_given else f" with {named('tile', tile)}"))
    elif receptive_field and overlap < receptive_field:
        out.append(f"{named('overlap', overlap)} is narrower than the model's receptive field "
                   f"({receptive_field} px): tile seams may show; an {named('overlap')} near "
                   f"{receptive_field}" + (f" (with a {named('tile')} above "
                                           f"{2 * receptive_field})"
                                           if t <= 2 * receptive_field else "")
                   + " hides them, at more computation")
    n = count_tiles(h, w, tile, overlap, multiple)
    work = n * min(t, H) * min(t, W) / (H * W)
    if work > 2:
        said = (f"{named('tile', t)} (automatic overlap {overlap})" if auto else
                f"{named('tile', t)}{' ' if flags else ', '}{named('overlap', overlap)}")
        out.append(f"{said}: {n} tiles per {w}x{h} frame, {work:.1f}x the frame's pixels "
                   f"computed; a larger {named('tile')} or a smaller {named('overlap')} is "
                   "faster")
    return out
