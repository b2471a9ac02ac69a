"""The teacher's tiled-inference setting, torch-free so that CLI parsers, the label cache and the
benchmarks share it with `distill.teacher` without importing torch.

Tiles give Restormer's channel attention (global within a tile) less context than the whole
image, so larger tiles are better (the teacher's card has the numbers).
"""
from __future__ import annotations

import argparse

TILE, OVERLAP = 512, 64
# Tiles per forward pass: the official Restormer's activations at 512 px take gigabytes per
# tile, so more than two would not fit a Jetson's shared memory; a CPU gains nothing from more.
BATCH = 2


# The teacher's options, worded once for every command that runs it (teacher, labels, demo,
# evaluate, bench, pytest benchmarks/): one loader (distill.teacher) takes them all.
WEIGHTS_HELP = ("teacher checkpoint: a project checkpoint, the official motion_deblurring.pth "
                "or a state dict (default: the bundled models/teacher-restormer-small.pt)")
CONFIG_HELP = ("Restormer config (motion-deblur, small, tiny) for teacher weights without "
               "one (default: motion-deblur, the official motion_deblurring.pth's); project "
               "checkpoints carry their own")
TILE_HELP = f"teacher tile side in pixels, 0 = whole image at once (default: {TILE})"
OVERLAP_HELP = (f"overlap of neighbouring tiles in pixels (default: {OVERLAP}, at most half "
                "the tile)")
BATCH_HELP = f"tiles per forward pass (default: {BATCH})"


def add_teacher_arguments(p: argparse.ArgumentParser) -> None:
    """The teacher's weights, config and tiling options, for the commands that run it over
    images of their own (teacher, labels)."""
    p.add_argument("--teacher-weights", default=None, metavar="PATH", help=WEIGHTS_HELP)
    p.add_argument("--teacher-config", "--config", dest="config", default=None, metavar="NAME",
                   help=CONFIG_HELP)
    p.add_argument("--tile", type=int, default=TILE, metavar="N", help=TILE_HELP)
    p.add_argument("--overlap", type=int, default=None, metavar="N", help=OVERLAP_HELP)
    p.add_argument("--batch-size", type=int, default=BATCH, metavar="N", help=BATCH_HELP)


def overlap_for(tile: int) -> int:
    """The default overlap for `tile`: OVERLAP, at most half the tile (a fixed 64 refused
    --tile 64 and below, an overlap must be smaller than its tile); tile 0 (whole images)
    keeps OVERLAP, which the label cache records."""
    return min(OVERLAP, tile // 2) if tile > 0 else OVERLAP


def tiling_problem(tile: int, overlap: int, batch_size: int) -> str | None:
    """Why --tile/--overlap/--batch-size cannot run the teacher, or None (tile 0: whole
    images)."""
    if tile < 0 or overlap < 0 or (tile and overlap >= tile):
        return (f"--tile and --overlap: need 0 <= overlap < tile (or --tile 0 for whole "
                f"images), got --tile {tile} --overlap {overlap}")
    if batch_size < 1:
        return f"--batch-size must be >= 1, got {batch_size}"
    return None


# Under this a tile holds less than the smallest crops Restormer trains on (128 px): blur tens
# of pixels long then spans much of a tile, and channel attention sees little of the scene.
# The measure where a teacher's checkpoint records no crop size of its own.
MIN_USEFUL_TILE = 128


def tiling_context(tile: int, crop: int | None = None) -> str | None:
    """What a tile too small for the teacher costs in quality (--tile 7 was run without a
    word), or None. `crop`: the training crop side the teacher's checkpoint records (None:
    not recorded, MIN_USEFUL_TILE is the measure); "its 128 px training crops" was said of
    every teacher, one trained on 256 px crops too."""
    least = crop or MIN_USEFUL_TILE
    if not 0 < tile < least:
        return None
    trained = (f"the {crop} px training crops its checkpoint records" if crop else
               f"{MIN_USEFUL_TILE} px, the smallest crops Restormer is trained on")
    return (f"--tile {tile} gives the teacher {tile} px of context per tile, less than "
            f"{trained}: long blur is then not removed (and the tiles' seams show); use "
            f"--tile {least} or more (default {TILE}, or 0 for whole images)")


def tiling_cost(tile: int, overlap: int) -> str | None:
    """What an overlap costs when it makes the teacher compute each pixel many times (--tile
    100 --overlap 80: about 25 times, labelling 8x slower than the default, without a word),
    or None. Over a large image each tile advances by tile - overlap."""
    if not tile or overlap * 2 <= tile:
        return None
    times = (tile / (tile - overlap)) ** 2
    return (f"--tile {tile} --overlap {overlap}: the tiles advance by {tile - overlap} px, so "
            f"the teacher computes each pixel about {times:.0f} times; an overlap of at most "
            f"half the tile (the default for --tile {tile}: {overlap_for(tile)}) costs at "
            "most 4 times")
