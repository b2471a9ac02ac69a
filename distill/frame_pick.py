"""--stride and --frames: which frames of a clip are scored, as `sharpen evaluate` and
`sharpen bench --real-nogt` take them (the frames themselves are picked by
`distill.evaluate.source_items`). Imports without torch."""
from __future__ import annotations

import argparse
from typing import Optional


def add_frame_pick_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stride", type=int, default=1, metavar="N",
                   help="of a clip (a video, or the clips of a folder): every N-th frame from "
                   "the first (default: 1, every frame); --limit then spreads over them")
    p.add_argument("--frames", default=None, metavar="LIST",
                   help="of a clip: these frame indices only, comma separated (0 is the "
                   "first), e.g. 0,900,1800")


def parse_frame_pick(stride: int, frames: Optional[str]) -> Optional[list[int]]:
    """The frame indices --frames lists, sorted (None: not given); ValueError naming the
    option where --stride or --frames is not one a run can take."""
    if stride < 1:
        raise ValueError(f"--stride must be >= 1, got {stride}")
    if frames is None:
        return None
    if stride != 1:
        raise ValueError("give either --stride or --frames, not both")
    try:
        picked = sorted({int(f) for f in frames.split(",")})
    except ValueError:
        picked = [-1]
    if picked[0] < 0:
        raise ValueError(f"--frames {frames}: frame indices (0 is the first) separated by "
                         "commas, e.g. 0,900,1800")
    return picked
