"""An endless Y4M stream on stdout, made of real frames looped: the feed of a long-run (soak)
test of `sharpen run --source -`, many small frames standing in for days of large ones.

    python scripts/y4m_loop.py '/work/shared/data/reds-mini/blur/*.png' --size 64x48 \\
        | sharpen run --model export/student-fast.onnx --source - --out soak.ts --stats s.json
"""
from __future__ import annotations

import argparse
import glob
import math
import re
import sys

from pathlib import Path
from typing import Callable

import cv2

from runtime.image_sources import name_order
from runtime.y4m import FRAME, Y4MHeader, bgr_to_yuv


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)x(\d+)", text.strip().lower())
    if not m or 0 in (w := int(m[1]), h := int(m[2])):
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT (e.g. 64x48)")
    return w, h


def _number(kind: type, least: int, above: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite `kind` of at least `least` (`above`: more than it)."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value < least or above and value == least:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if kind is int else 'a number'} "
                f"{'>' if above else '>='} {least}")
        return value
    return parse


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pattern", help="images to loop, a glob (in name order)")
    p.add_argument("--size", type=_size, default="64x48", metavar="WxH",
                   help="frame size (default 64x48)")
    p.add_argument("--fps", type=_number(float, 0, above=True), default=30.0,
                   help="the rate the header declares (default 30)")
    p.add_argument("--frames", type=_number(int, 0), default=0,
                   help="frames in all (default 0: endless)")
    p.add_argument("--first", type=_number(int, 1), default=24, help="images taken (default 24)")
    args = p.parse_args(argv)
    files = sorted(glob.glob(args.pattern), key=lambda f: name_order(Path(f)))[:args.first]
    if not files:
        print(f"y4m_loop: no images match {args.pattern!r}", file=sys.stderr)
        return 2
    w, h = args.size
    frames = []
    for f in files:
        if (img := cv2.imread(f, cv2.IMREAD_COLOR)) is None:
            print(f"y4m_loop: {f}: not an image OpenCV can read", file=sys.stderr)
            return 2
        frames.append(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA))
    # 4:4:4: the frames as read, no chroma rounding between loops
    body = [FRAME + b"\n" + bgr_to_yuv(f, "444") for f in frames]
    head = Y4MHeader(w, h, args.fps, "444").line()
    out = sys.stdout.buffer
    try:
        out.write(head)
        i = 0
        while not args.frames or i < args.frames:
            out.write(body[i % len(body)])
            i += 1
        out.flush()
    except BrokenPipeError:   # the run stopped reading: the feed is done
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
