"""The overshoot measure's cost per 1080p frame as `sharpen evaluate` pays it: the input's
neighbourhood range once, then each model's output against it.

    python -m benchmarks.overshoot_speed IMAGE [--models 3] [--rounds 5]

IMAGE (a blurred frame) is resized to 1920x1080; the "models" are unsharp masks of growing
strength, rounded to 8 bits as evaluate scores outputs. Prints the median of the rounds."""
from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from distill.images import read_image
from distill.metrics import input_range, overshoot, quantise_8bit


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("image")
    p.add_argument("--models", type=int, default=3)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    x = cv2.resize(read_image(args.image), (1920, 1080), interpolation=cv2.INTER_CUBIC)
    x = quantise_8bit(np.clip(x, 0, 1))
    outs = [quantise_8bit(x + a * (x - cv2.GaussianBlur(x, (0, 0), 2)))
            for a in np.linspace(0.5, 2.0, args.models)]
    times = []
    for _ in range(args.rounds):
        t = time.perf_counter()
        around = input_range(x)
        for o in outs:
            overshoot(o, x, around=around)
        times.append(time.perf_counter() - t)
    print(f"overshoot of {args.models} outputs of a 1920x1080 frame: "
          f"{1000 * float(np.median(times)):.0f} ms (median of {args.rounds})")


if __name__ == "__main__":
    main()
