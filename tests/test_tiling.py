import numpy as np
import pytest
import skimage.data
import torch
import torch.nn as nn

from runtime.tiling import Band, count_tiles, gaussian_window, tiled_apply, tile_starts


def conv_fn(kernel_size=5, seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 8, kernel_size, padding=kernel_size // 2), nn.ReLU(),
                        nn.Conv2d(8, 3, 1)).eval()

    def fn(batch):
        with torch.no_grad():
            return net(torch.from_numpy(batch)).numpy()
    return fn


def test_tile_starts_cover_and_align():
    s = tile_starts(1081, 256, 32)
    assert s[0] == 0 and s[-1] == 1081 - 256
    assert all(b - a <= 256 - 32 for a, b in zip(s, s[1:]))
    assert tile_starts(100, 256, 32) == [0]


def test_tiles_start_on_the_models_grid():
    """A network that works on 8x8 blocks (pixel-unshuffle, strided convolutions) computes other
    values for a tile that starts off its grid; tiles must start on it, whatever the overlap."""
    def blocks8(batch):   # the mean of each 8x8 block, as a stride-8 network sees the frame
        n, c, h, w = batch.shape
        means = batch.reshape(n, c, h // 8, 8, w // 8, 8).mean(axis=(3, 5))
        return np.repeat(np.repeat(means, 8, axis=2), 8, axis=3)

    img = skimage.data.astronaut()[:200, :232].astype(np.float32) / 255
    whole = tiled_apply(img, blocks8, tile=0, multiple=8)
    for tile, overlap in ((64, 20), (72, 30), (48, 33)):
        starts = tile_starts(232, tile, overlap, 8)
        assert all(s % 8 == 0 for s in starts)
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))
        tiled = tiled_apply(img, blocks8, tile=tile, overlap=overlap, multiple=8)
        assert np.abs(tiled - whole).max() < 1e-5, (tile, overlap)


@pytest.mark.parametrize("tile,overlap", [(64, 60), (32, 28), (16, 12), (48, 44), (40, 33)])
def test_overlaps_wider_than_the_grid_allows_leave_no_gaps(tile, overlap):
    """tile - overlap below the size multiple: the stride is one multiple, and the zero-weight
    strips along interior tile edges must not meet (they left pixels with no weight: NaN)."""
    img = skimage.data.astronaut()[:200, :232].astype(np.float32) / 255
    out = tiled_apply(img, lambda b: b, tile=tile, overlap=overlap, multiple=8)
    assert np.isfinite(out).all() and np.abs(out - img).max() < 1e-5


def test_window_peaks_at_centre():
    w = gaussian_window(64, 48)
    assert w.max() == w[31:33, 23:25].max() and w.min() > 0
    assert w[0, 0] < w[32, 24] / 2


def test_tiled_equals_whole_image_when_receptive_field_fits_overlap():
    rng = np.random.default_rng(0)
    img = rng.uniform(size=(97, 131, 3)).astype(np.float32)
    fn = conv_fn(5)  # receptive field 5 px, overlap 16 >> 2*2
    whole = tiled_apply(img, fn, tile=0, multiple=8)
    tiled = tiled_apply(img, fn, tile=32, overlap=16, multiple=8, batch_size=3)
    assert tiled.shape == img.shape
    # Padding differs only at the bottom/right image border, identical in both paths.
    assert np.abs(tiled - whole).max() < 1e-4


def test_constant_image_stays_constant():
    img = np.full((75, 90, 3), 0.37, dtype=np.float32)
    out = tiled_apply(img, lambda b: b, tile=32, overlap=8, multiple=8)
    assert np.allclose(out, 0.37, atol=1e-6)


def test_odd_and_tiny_sizes():
    fn = conv_fn(3)
    for h, w in ((1081, 1919), (5, 7), (1, 1)):
        img = np.random.default_rng(1).uniform(size=(h, w, 3)).astype(np.float32)
        assert tiled_apply(img, fn, tile=256, overlap=32).shape == (h, w, 3)
    assert count_tiles(1080, 1920, 256, 32) == len(tile_starts(1080, 256, 32)) * len(
        tile_starts(1920, 256, 32))


def test_no_seams_on_real_photo():
    """A model whose output depends on tile context (large receptive field, position-dependent
    padding) would show steps at tile borders with uniform averaging; Gaussian blending must
    keep the difference across a border no larger than elsewhere."""
    img = skimage.data.astronaut()[:256, :256].astype(np.float32) / 255
    fn = conv_fn(15, seed=3)
    tile, overlap = 64, 24
    out = tiled_apply(img, fn, tile=tile, overlap=overlap, multiple=8)
    whole = tiled_apply(img, fn, tile=0, multiple=8)
    err = np.abs(out - whole).mean(axis=2)
    # Column-to-column jumps of the error: borders are where a seam would appear.
    jumps = np.abs(np.diff(err, axis=1)).mean(axis=0)
    starts = tile_starts(256, tile, overlap)
    borders = sorted({s + tile - 1 for s in starts[:-1]} | {s for s in starts[1:]})
    border_jump = max(jumps[b - 1:b + 1].max() for b in borders if 0 < b < 255)
    assert border_jump <= np.percentile(jumps, 99) + 1e-3


def test_bad_arguments():
    img = np.zeros((40, 40, 3), np.float32)
    with pytest.raises(ValueError, match="overlap"):
        tiled_apply(img, lambda b: b, tile=16, overlap=16)
    with pytest.raises(ValueError, match="HxWxC"):
        tiled_apply(np.zeros((10, 10), np.float32), lambda b: b)


def test_tiling_warnings_name_rounding_and_wasted_work():
    from runtime.tiling import tiling_warnings
    assert tiling_warnings(1080, 1920, 0, 32) == []
    assert tiling_warnings(1080, 1920, 512, 32) == []        # 15 tiles, about 1.3x the pixels
    assert tiling_warnings(360, 640, 1024, 32) == []         # one tile: the whole frame
    (msg,) = tiling_warnings(1080, 1920, 250, 16, flags=True)
    assert "--tile 250 runs as 256" in msg
    (msg,) = tiling_warnings(1080, 1920, 40, 32, flags=True)
    n = count_tiles(1080, 1920, 40, 32)
    assert f"{n} tiles per 1920x1080 frame" in msg and "--overlap" in msg


def test_tiling_warnings_name_the_keywords_for_python():
    """run_stream(tile=250) was warned of '--tile 250', a flag it does not have; the command
    line (flags=True) keeps its flags."""
    from runtime.tiling import tiling_warnings
    (msg,) = tiling_warnings(1080, 1920, 250, 16)
    assert msg == "tile=250 runs as 256 (a multiple of the model's 8)"
    (msg,) = tiling_warnings(1080, 1920, 40, 32)
    assert msg.startswith(f"tile=40, overlap=32: {count_tiles(1080, 1920, 40, 32)} tiles per "
                          "1920x1080 frame, ")
    assert msg.endswith("x the frame's pixels computed; a larger tile or a smaller overlap is "
                        "faster")
    said = [*tiling_warnings(1080, 1920, 256, 32, 8, receptive_field=132),
            *tiling_warnings(1080, 1920, 256, 128, 8, 132, auto=True)]
    assert not any("--" in m for m in said)
    assert [m for m in said if "receptive field" in m] == ["overlap=32 is narrower than the model's receptive field (132 px): tile "
                    "seams may show; an overlap near 132 (with a tile above 264) hides them, at "
                    "more computation",
                    "the automatic overlap 128 is capped at half of tile=256, narrower than the "
                    "model's receptive field (132 px): tile seams may show; a tile of at least "
                    "264 lets the overlap reach it"]


def test_an_overlap_narrower_than_the_receptive_field_is_said():
    from runtime.tiling import tiling_warnings

    said = " ".join(tiling_warnings(1080, 1920, 256, 32, 8, receptive_field=132, flags=True))
    assert "--overlap 32 is narrower than the model's receptive field (132 px)" in said
    assert "with a --tile above 264" in said
    assert not any("receptive field" in m
                   for m in tiling_warnings(1080, 1920, 512, 160, 8, receptive_field=132))
    assert not any("receptive field" in m for m in tiling_warnings(1080, 1920, 256, 32, 8))


def test_a_global_receptive_field_is_not_promised_an_overlap_that_reaches_it():
    """A student with global pooling (an SE gate, an FFT) records GLOBAL_FIELD, and tiling it
    said "a --tile of at least 8192 lets the overlap reach it" (a frame of 3840 runs whole
    at 3840): no overlap reaches a global field, each tile pools over itself alone."""
    from runtime.tiling import GLOBAL_FIELD, tiling_warnings

    for auto, overlap in ((True, 256), (False, 32)):
        said = [m for m in tiling_warnings(2160, 3840, 512, overlap, 8, GLOBAL_FIELD, auto=auto,
                                           flags=True) if "receptive field" in m]
        assert said == ["the model's receptive field is global (all of the frame): each tile "
                        "sees itself alone, whatever the overlap, and tile seams or a tile's "
                        "tone may show; --tile 3840 or more runs the frame whole"], said


def test_the_automatic_overlap_reaches_the_receptive_field_within_half_the_tile():
    """`sharpen run --tile` took --overlap 32 whatever the model, then warned about its own
    default for `fast` (132 px); without --overlap it now takes the receptive field."""
    from runtime.tiling import OVERLAP, auto_overlap, tiling_warnings

    assert auto_overlap(512, 132) == 132
    assert auto_overlap(256, 132) == 128            # capped: half the tile
    assert auto_overlap(512, None) == OVERLAP       # an export without the receptive field
    assert auto_overlap(40, None) == 20
    assert not any("receptive field" in m
                   for m in tiling_warnings(1080, 1920, 512, 132, 8, 132, auto=True))
    said = " ".join(tiling_warnings(1080, 1920, 256, 128, 8, 132, auto=True, flags=True))
    assert ("the automatic overlap 128 is capped at half of --tile 256, narrower than the "
            "model's receptive field (132 px)") in said
    assert "a --tile of at least 264" in said and "--overlap 128 is narrower" not in said
    # the user's own overlap is still said as theirs
    said = " ".join(tiling_warnings(1080, 1920, 256, 128, 8, 132, flags=True))
    assert "--overlap 128 is narrower than the model's receptive field" in said


def test_tiling_a_large_image_holds_about_one_float_copy_beside_it():
    # A 48-megapixel phone photo is 576 MB per float32 copy: the tiler held five beside the
    # input (a CHW copy, a CHW accumulator, the division's and the transpose's results), 2.9 GB
    # at its peak. Now the accumulator and a weight plane (a third of a copy) are all it keeps.
    import tracemalloc
    img = np.random.default_rng(0).random((600, 800, 3), dtype=np.float32)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        out = tiled_apply(img, lambda b: b * 0.5, tile=128, overlap=32, multiple=8,
                          batch_size=2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.shape == img.shape and out.flags.c_contiguous
    np.testing.assert_allclose(out, img * 0.5, atol=1e-6)
    assert peak < 2 * img.nbytes, f"peak {peak / img.nbytes:.2f} image copies"


@pytest.mark.parametrize("h,tile,overlap", [(203, 64, 32), (150, 48, 8), (64, 64, 16)])
def test_a_run_resumed_from_a_row_computes_the_rest_as_the_whole_run_did(h, tile, overlap):
    """`sharpen teacher` keeps the rows of a large photo done when it is stopped, and the next
    run computes only the rest: tiles that reach no row from `from_row` down are not run, and
    those rows come out as an uninterrupted run made them, to the bit (the last tile row,
    aligned to the edge, overlaps more than one row above it)."""
    rng = np.random.default_rng(1)
    img = rng.uniform(size=(h, 91, 3)).astype(np.float32)
    fn = conv_fn(9)
    full, rows_done = np.zeros_like(img), []
    tiled_apply(img, fn, tile=tile, overlap=overlap, multiple=8, batch_size=1, out=full,
                on_rows=rows_done.append)
    assert rows_done[-1] == h and rows_done == sorted(rows_done)
    for from_row in sorted(set(rows_done[:-1] + [1, h // 2])):
        ran = []

        def counted(batch):
            ran.append(len(batch))
            return fn(batch)
        part = np.full_like(img, -1.0)
        part[:from_row] = full[:from_row]
        got = tiled_apply(img, counted, tile=tile, overlap=overlap, multiple=8, batch_size=1,
                          out=part, from_row=from_row)
        assert got is part
        assert np.array_equal(part, full), from_row
        if tile <= from_row < h:   # the first tile row reaches no row left to do
            assert sum(ran) < count_tiles(h, 91, tile, overlap, 8)


def test_a_resumed_run_batches_its_tiles_as_the_whole_run_did():
    """An engine's output for a tile depends, in its last bits, on the batch it ran in (the
    tiny teacher's by 2e-7 between a batch of 1 and of 2): a resumed run that cut its batches
    elsewhere than the whole run blended other values from its first row on. Three tiles a row
    in batches of 2: a tile row begins in the middle of a batch."""
    rng = np.random.default_rng(2)
    img = rng.uniform(size=(150, 130, 3)).astype(np.float32)

    def fn(batch):   # each tile's output moved by what else is in its batch, as an engine's is
        return batch * 0.5 + np.float32(batch.mean() * 1e-3)
    full, rows_done = np.zeros_like(img), []
    tiled_apply(img, fn, tile=64, overlap=16, multiple=8, batch_size=2, out=full,
                on_rows=rows_done.append)
    assert count_tiles(150, 130, 64, 16) % 3 == 0 and len(rows_done) > 2
    for from_row in rows_done:
        part = np.full_like(img, -1.0)
        part[:from_row] = full[:from_row]
        ran = []
        tiled_apply(img, lambda b: (ran.append(len(b)), fn(b))[1], tile=64, overlap=16,
                    multiple=8, batch_size=2, out=part, from_row=from_row)
        assert np.array_equal(part, full), from_row
        # what `sharpen teacher` says a stopped photo has left
        assert sum(ran) == count_tiles(150, 130, 64, 16, from_row=from_row, batch_size=2)
        if from_row == 150:   # every row kept: nothing runs
            assert ran == []


@pytest.mark.parametrize("batch_size", [1, 2])
def test_a_run_resumed_from_its_blend_band_runs_no_tile_twice(batch_size):
    """A stopped `sharpen teacher` kept only finished rows, so the row of tiles above them ran
    again (a tenth of a 12 MP photo, minutes on a CPU; stopped in its second tile row, all of
    it). With the blend band kept after each batch, the next run goes on from the batch after
    the last one done, and blends what one run does, to the bit."""
    rng = np.random.default_rng(4)
    img = rng.uniform(size=(150, 130, 3)).astype(np.float32)

    def fn(batch):   # moved by what else is in its batch, as an engine's output is
        return batch * 0.5 + np.float32(batch.mean() * 1e-3)
    full, bands, rows_done = np.zeros_like(img), [], []
    tiled_apply(img, fn, tile=64, overlap=16, multiple=8, batch_size=batch_size, out=full,
                on_rows=rows_done.append,
                on_band=lambda b: bands.append((Band(b.at, b.top, b.acc.copy(), b.wsum.copy()),
                                                full.copy(), rows_done[-1:])))
    total = count_tiles(150, 130, 64, 16)
    assert len(bands) == -(-total // batch_size) - 1
    for b, kept, rows in bands:
        from_row = rows[0] if rows else 0
        part = np.full_like(img, -1.0)
        part[:from_row] = kept[:from_row]
        ran = []
        tiled_apply(img, lambda x: (ran.append(len(x)), fn(x))[1], tile=64, overlap=16,
                    multiple=8, batch_size=batch_size, out=part, from_row=from_row, band=b)
        assert np.array_equal(part, full), b.at
        assert sum(ran) == total - b.at   # every tile blended before the stop spared
        assert sum(ran) == count_tiles(150, 130, 64, 16, from_row=from_row,
                                       batch_size=batch_size, at=b.at)
