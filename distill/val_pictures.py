"""A validation's picture in OUT/visualization/ (BasicSR's `save_img`): the same few validation
images at every validation, a row each, columns input | model | teacher label | ground truth
(those the data has), full-resolution centre crops, so a regression on one image is seen
instead of averaged away in the mean score."""
from __future__ import annotations

from pathlib import Path
import cv2
import numpy as np

from runtime.atomic import atomic_file

HEADER = 24      # px of the strip naming the columns
MAX_SIDE = 256   # crop side: detail at 1:1; 4 rows of 3 columns are a 1.4 MB PNG


def picture_name(step: int) -> str:
    return f"step{step:06d}.png"


def pictures_after(out: Path, step: int | None) -> list[Path]:
    """OUT/visualization's pictures of validations after `step` (None: all of them)."""
    folder = out / "visualization"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("step*.png")
                  if p.stem[4:].isdigit() and (step is None or int(p.stem[4:]) > step))


def _u8(rgb: np.ndarray) -> np.ndarray:
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def compose(items: list, outputs: list[np.ndarray]) -> np.ndarray:
    """RGB uint8 picture of `items` (ValItems) and the model's `outputs` for them: a header
    naming the columns, then a row per item of side x side centre crops, side the smallest
    image side (at most MAX_SIDE) so that every row lines up."""
    side = min(MAX_SIDE, *(min(it.input.shape[:2]) for it in items))
    cols = [("input", lambda it, o: it.input), ("model", lambda it, o: o)]
    if any(it.target is not None for it in items):
        cols.append(("teacher label", lambda it, o: it.target))
    if any(it.gt is not None for it in items):
        cols.append(("ground truth", lambda it, o: it.gt))
    pic = np.zeros((HEADER + side * len(items), side * len(cols), 3), np.uint8)
    for c, (name, _) in enumerate(cols):
        cv2.putText(pic, name, (c * side + 4, HEADER - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (255, 255, 255), 1, cv2.LINE_AA)
    for r, (it, o) in enumerate(zip(items, outputs)):
        h, w = it.input.shape[:2]
        y, x = (h - side) // 2, (w - side) // 2
        for c, (_, get) in enumerate(cols):
            img = get(it, o)
            if img is None:   # a pair without this column: left black
                continue
            pic[HEADER + r * side:HEADER + (r + 1) * side, c * side:(c + 1) * side] = \
                _u8(img[y:y + side, x:x + side])
    return pic


def save_picture(out: Path, step: int, pic: np.ndarray) -> Path:
    """OUT/visualization/stepNNNNNN.png of this validation's picture (`compose`); written
    whole or not at all (a kill mid-write left a truncated PNG that viewers refuse)."""
    ok, png = cv2.imencode(".png", pic[..., ::-1])
    if not ok:
        raise ValueError(f"OpenCV could not encode the validation picture of step {step}")
    path = out / "visualization" / picture_name(step)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as f:
        f.write(png.tobytes())
    return path
