"""The before/after view: `compose` puts an input frame and its sharpened frame side by side
(or split at the middle), captioned with which side is which; `CompareSink` writes such frames
to another sink (`sharpen run --compare`); the --show window shows them uncaptioned."""
from __future__ import annotations

import functools

import cv2
import numpy as np

from .options import option
from .prepost import to_bgr8
from .sinks import Sink
from .warn import warn


# What each side of a --compare frame shows, left then right, as its caption says.
CAPTIONS = ("input", "sharpened")
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def compare_layout(view: str) -> str:
    """Which side is which, in words, for the line that names a --compare output."""
    if view == "split":
        return f"left half {CAPTIONS[0]}, right half {CAPTIONS[1]}"
    return f"{CAPTIONS[0]} on the left, {CAPTIONS[1]} on the right"


@functools.lru_cache(maxsize=8)   # per frame, the same few sizes: no text measured again
def _caption_layout(size: tuple[int, int]) -> tuple[tuple[str, int, int, float, int], ...]:
    """(text, x, baseline y, font scale, thickness) of each side's caption on a frame of `size`
    (h, w), in its lower left corner: about 2.5% of the frame's height (legible at 360p, small
    at 1080p), shrunk to fit its side; none where a side is too narrow for them to be read."""
    h, w = size
    half = w // 2   # side: where the second frame starts; split: the dividing line
    margin = max(2, h // 60)
    scale = max(0.3, h / 900)
    widest = max(cv2.getTextSize(t, _FONT, scale, 1)[0][0] for t in CAPTIONS)
    room = half - 2 * margin - 2   # the outline adds a pixel each side
    if widest > room:
        scale *= room / widest
    if scale < 0.25:
        return ()
    thick = max(1, round(scale * 1.5))
    base = cv2.getTextSize(CAPTIONS[0], _FONT, scale, thick + 2)[1]
    y = h - margin - base
    return tuple((t, x + margin, y, scale, thick) for t, x in zip(CAPTIONS, (0, half)))


def caption_boxes(shape: tuple) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) of each caption of a --compare frame of this shape: what they cover."""
    boxes = []
    for text, x, y, scale, thick in _caption_layout(tuple(shape[:2])):
        (tw, th), base = cv2.getTextSize(text, _FONT, scale, thick + 2)
        pad = (thick + 2) // 2 + 1   # the outline's half-width around the glyphs
        boxes.append((max(0, x - pad), max(0, y - th - pad), min(shape[1], x + tw + pad),
                      min(shape[0], y + base + pad)))
    return boxes


def draw_captions(img: np.ndarray) -> np.ndarray:
    """Caption each side of a composed frame (white on a dark outline, legible on any
    content), so a comparison video says which side is the input after it leaves the run."""
    for text, x, y, scale, thick in _caption_layout(img.shape[:2]):
        cv2.putText(img, text, (x, y), _FONT, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
        cv2.putText(img, text, (x, y), _FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return img


def compose(original: np.ndarray, sharpened: np.ndarray, view: str, max_width: int = 1920,
            captions: bool = False) -> np.ndarray:
    """Side by side (original | sharpened) or split (left half original, right half sharpened),
    each side captioned with `captions`. The original may be any decoded frame (grey, BGRA,
    16-bit): it is shown as BGR uint8."""
    original, sharpened = to_bgr8(original, warn=False), to_bgr8(sharpened, warn=False)
    if original.shape != sharpened.shape:
        original = cv2.resize(original, (sharpened.shape[1], sharpened.shape[0]))
    if view == "split":
        out = sharpened.copy()
        mid = out.shape[1] // 2
        out[:, :mid] = original[:, :mid]
        cv2.line(out, (mid, 0), (mid, out.shape[0] - 1), (255, 255, 255), 1)
    else:
        out = np.hstack([original, sharpened])
    if out.shape[1] > max_width:  # two 1080p frames side by side do not fit a 1080p screen
        scale = max_width / out.shape[1]
        out = cv2.resize(out, (max_width, int(out.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    return draw_captions(out) if captions else out


class CompareSink(Sink):
    """Writes original and sharpened together (side by side, or split at the middle) to another
    sink, at full resolution: `sharpen run --compare`."""

    def __init__(self, inner: Sink, view: str, flags: bool = False) -> None:
        self.inner, self.view, self.flags = inner, view, flags
        self.deep_warned = False

    def write(self, original: np.ndarray, sharpened: np.ndarray, name: str) -> None:
        if sharpened.dtype == np.uint16 and not self.deep_warned:
            compare = option("compare", True, self.flags)
            warn(f"{name}: the {compare} view is 8-bit (run without {compare} to keep 16 "
                 "bits)")
            self.deep_warned = True
        self.inner.write(original, compose(original, sharpened, self.view, max_width=1 << 30,
                                           captions=True), name)

    def repeat_last(self, n: int) -> int:
        return self.inner.repeat_last(n)

    def close(self) -> None:
        self.inner.close()
