"""PSNR/SSIM as published deblurring tables compute them: scikit-image on HxWx3 RGB in [0, 1]
(the same numbers as on 8-bit images with data range 255), whole images, no border crop; SSIM
with an 11x11 Gaussian window of sigma 1.5 and population covariances (Wang et al. 2004, as
BasicSR computes it). CONVENTION says it in words for the results files."""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import numpy as np

from runtime.warn import warn


# Identical images have infinite PSNR, which turns every mean it enters into inf (one sharp
# frame paired with itself) and is not valid JSON; capped where many published tools cap it.
PSNR_MAX = 100.0

# Wang et al.'s Gaussian window: sigma 1.5 truncated at 3.5 sigma, 11x11; smaller images
# have no SSIM.
SSIM_SIGMA = 1.5
SSIM_MIN_SIDE = 11

# Which SSIM a score was taken with, recorded with a run's validation data: a best.pt scored
# with another formula is scored again on a resume rather than compared.
SSIM_ID = "gaussian 11x11 sigma 1.5, population covariances"


def older_parity_ssim(row: dict, report_formula: str | None) -> bool:
    """Whether an export report row's parity SSIM decided its verdict by another formula than
    this version's: an INT8 or FP16 row (FP32's gate is the max abs error) of a report naming
    no formula (`report_formula`; an older version's, the 7x7 window), or carried from one
    (its extra names the formula of the report it was judged in)."""
    extra = row.get("extra") if isinstance(row.get("extra"), dict) else {}
    formula = extra["ssim_formula"] if "ssim_formula" in extra else report_formula
    return (isinstance(row.get("ssim"), (int, float)) and formula != SSIM_ID
            and str(row.get("precision")).lower() != "fp32")

# What the numbers are, for results files and tables: a reader checks one by hand from this.
CONVENTION = {
    "psnr": "RGB, model outputs rounded to 8 bits (0-255) as a saved PNG is, data range 255, "
            "whole images (no border crop), capped at 100 dB; skimage.metrics."
            "peak_signal_noise_ratio(gt_uint8, out_uint8, data_range=255)",
    "ssim": "RGB, 8-bit outputs, channels averaged, 11x11 Gaussian window sigma 1.5, "
            "population covariances (Wang et al. 2004, BasicSR); skimage.metrics."
            "structural_similarity(gt_uint8, out_uint8, channel_axis=-1, data_range=255, "
            "gaussian_weights=True, sigma=1.5, use_sample_covariance=False)",
    "mean": "mean over images (not over sequences); gains are the model's minus the blurred "
            "input's",
}
# Evaluate's metrics.json names it beside CONVENTION; not in it, which bench reports carry and
# bench-compare gates on as one formula: every earlier baseline would read as another one.
ALIGNMENT = ("no alignment: each output is scored on its ground truth's pixel grid as given; "
             "RealBlur's published scores (evaluate_RealBlur.py) first warp each output onto "
             "its ground truth (an ECC homography) and score the overlap, and read higher; "
             "sharpen evaluate --align ecc (a translation) or ecc-homography (the script's) "
             "does (distill.alignment)")


def _checked(name: str, x: np.ndarray) -> np.ndarray:
    """`x` as an array, or ValueError naming it (`name`) and what is wrong (see `_pair`)."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise ValueError(f"{name} has dtype {x.dtype}: PSNR/SSIM take float images in "
                         "[0, 1] (convert OpenCV's uint8 with "
                         "distill.images.to_rgb_float, or divide by 255)")
    if x.ndim not in (2, 3):
        raise ValueError(f"{name} has shape {x.shape}: expected HxWx3 (or HxW) in [0, 1]")
    if x.ndim == 3 and x.shape[0] in (1, 3) and x.shape[2] not in (1, 3):
        # scikit-image would read its columns as channels and score it without a word.
        raise ValueError(f"{name} has shape {x.shape}, channels first: expected HxWx3 "
                         "(numpy's transpose(1, 2, 0) of a CxHxW tensor)")
    if x.size and float(x.mean()) > 1.5:
        # A [0, 255] float image clipped to [0, 1] scores a few dB and looks like a result;
        # a warning, not an error: a diverging model's output passes here too.
        warn(f"{name} has mean value {float(x.mean()):.1f}: PSNR/SSIM take images in "
             "[0, 1] and clip what is above (a [0, 255] image? divide by 255)", stacklevel=4)
    return x


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both images as float arrays clipped to [0, 1], or ValueError saying what is wrong: an
    integer image (OpenCV's uint8) was clipped to 0/1 and scored without a word (a uint8 pair
    26.96 dB apart came out at 16.07 dB), and mismatched shapes met scikit-image's message,
    which names neither image."""
    a, b = _checked("a", a), _checked("b", b)
    if a.shape != b.shape:
        raise ValueError(f"the images differ in shape: a {a.shape}, b {b.shape}")
    return np.clip(a, 0, 1), np.clip(b, 0, 1)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two float images in [0, 1] (HxWx3 or HxW, the same shape; values outside
    are clipped), capped at PSNR_MAX (identical images). Symmetric. ValueError for integer
    images or other shapes."""
    a, b = _pair(a, b)
    if np.array_equal(a, b):   # scikit-image would divide by zero and warn on the way to inf
        return PSNR_MAX
    # float64: float32's mean squared error was 1e-6 dB off a by-hand check on uint8.
    a, b = a.astype(np.float64), b.astype(np.float64)
    try:   # lazily: `models FILE` on a device
        from skimage.metrics import peak_signal_noise_ratio
    except ImportError:   # a device install (the runtime extra): the same formula
        return min(float(10 * np.log10(1.0 / np.mean((a - b) ** 2))), PSNR_MAX)
    return min(float(peak_signal_noise_ratio(b, a, data_range=1.0)), PSNR_MAX)


def quantise_8bit(img: np.ndarray) -> np.ndarray:
    """A float image in [0, 1] rounded to the 256 levels of the 8-bit PNG it would be saved as
    (float32, values clipped to [0, 1]): published numbers score those files."""
    levels = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    return levels.astype(np.float32) / np.float32(255)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (scikit-image, 11x11 Gaussian window of sigma 1.5, population covariances, data
    range 1: as BasicSR, channels averaged) of two float images in [0, 1]: HxWx3
    (channels averaged) or HxW, the same shape, each side at least SSIM_MIN_SIDE; values
    outside [0, 1] are clipped. ValueError for integer images, other shapes or smaller ones."""
    a, b = _pair(a, b)
    _check_window(a)
    try:
        from skimage.metrics import structural_similarity
    except ImportError:   # a device install (the runtime extra): the same numbers by OpenCV
        return _ssim_opencv(a, b)
    # A 2-D image is one gray channel: channel_axis=-1 read its columns as channels. float64:
    # in float32 the filtered moments lose the 1e-6 that a by-hand check on uint8 keeps.
    return float(structural_similarity(a.astype(np.float64), b.astype(np.float64),
                                       channel_axis=-1 if a.ndim == 3 else None,
                                       data_range=1.0, gaussian_weights=True, sigma=SSIM_SIGMA,
                                       use_sample_covariance=False))


def _ssim_opencv(a: np.ndarray, b: np.ndarray) -> float:
    """`ssim` of two checked images in [0, 1] without scikit-image (about 200 MB with scipy,
    seconds to import: a device install has neither), computed as its structural_similarity
    computes the convention: float64, the Gaussian window scipy's gaussian_filter builds
    (truncated at 3.5 sigma: 11 taps) with its mirrored border, C1 = 0.01^2, C2 = 0.03^2, the
    map's mean without the window's half-width at each border, channels averaged."""
    radius, _ = _window()
    return float(np.mean([s[radius:-radius, radius:-radius].mean()
                          for s in _ssim_maps_opencv(a, b)]))


def _ssim_maps_opencv(a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    """The SSIM map of each channel (one of a 2-D image) of `a` against `b` by OpenCV, as
    scikit-image's structural_similarity makes it (`_ssim_opencv`), in float64."""
    import cv2
    _, g = _window()

    def blur(x: np.ndarray) -> np.ndarray:   # scipy's mode="reflect" is OpenCV's REFLECT
        return cv2.sepFilter2D(x, cv2.CV_64F, g, g, borderType=cv2.BORDER_REFLECT)

    a, b = a.astype(np.float64), b.astype(np.float64)
    return [_ssim_map(np.ascontiguousarray(x), np.ascontiguousarray(y), blur)
            for x, y in ([(a, b)] if a.ndim == 2 else
                         zip(np.moveaxis(a, -1, 0), np.moveaxis(b, -1, 0)))]


def _check_window(a: np.ndarray) -> None:
    """ValueError where a side of `a` is smaller than SSIM's window."""
    if min(a.shape[:2]) < SSIM_MIN_SIDE:
        raise ValueError(f"SSIM needs images of at least {SSIM_MIN_SIDE}x{SSIM_MIN_SIDE} "
                         f"pixels (its window), got {a.shape[1]}x{a.shape[0]}")


def _window() -> tuple[int, np.ndarray]:
    """SSIM's Gaussian window: its half-width and its taps (a column), truncated at 3.5 sigma
    as scipy's gaussian_filter truncates it (11 taps)."""
    import cv2
    radius = int(3.5 * SSIM_SIGMA + 0.5)
    return radius, cv2.getGaussianKernel(2 * radius + 1, SSIM_SIGMA, cv2.CV_64F)


def _ssim_map(x: np.ndarray, y: np.ndarray, blur: Callable[[np.ndarray], np.ndarray]
              ) -> np.ndarray:
    """SSIM at each pixel of two float64 images, their local moments taken by `blur` (the
    window), C1 = 0.01^2 and C2 = 0.03^2 for data range 1."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ux, uy = blur(x), blur(y)
    vx, vy, vxy = blur(x * x) - ux * ux, blur(y * y) - uy * uy, blur(x * y) - ux * uy
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def ssim_3d(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM as published GoPro tables take it (NAFNet's calculate_ssim, whose default ssim3d
    stands in for MATLAB's ssim() on an RGB array, which Restormer's evaluate_gopro_hide.m
    calls): the window an 11x11x11 Gaussian of sigma 1.5 across rows, columns and the
    channels, replicate padding on all three, population covariances, the mean over every
    pixel and channel. It reads higher than the channel-averaged `ssim`. Float images in
    [0, 1], HxWx3, the same shape, each side at least SSIM_MIN_SIDE; values outside are
    clipped. OpenCV alone (a device install has no scipy)."""
    import cv2
    a, b = _pair(a, b)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"3-D SSIM takes HxWx3 images, got shape {a.shape}")
    _check_window(a)
    radius, g = _window()
    g = g[:, 0]
    # Across the channels: each output channel a weighted sum of the replicate-padded ones.
    across = np.zeros((3, 3))
    for c in range(3):
        for t in range(-radius, radius + 1):
            across[c, min(max(c + t, 0), 2)] += g[t + radius]

    def blur(x: np.ndarray) -> np.ndarray:   # the 3-D Gaussian is separable
        x = x @ across.T
        return np.stack([cv2.sepFilter2D(np.ascontiguousarray(x[..., c]), cv2.CV_64F, g, g,
                                         borderType=cv2.BORDER_REPLICATE)
                         for c in range(3)], axis=-1)

    return float(_ssim_map(a.astype(np.float64), b.astype(np.float64), blur).mean())


def psnr_ssim(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """{"psnr": psnr(a, b), "ssim": ssim(a, b)}."""
    return {"psnr": psnr(a, b), "ssim": ssim(a, b)}


# `sharpen evaluate --ssim`: which SSIM scores (see `ssim_3d` for why a second one).
SSIMS = {"2d": ssim, "3d": ssim_3d}


def ssim_named(ssim_window: str) -> Callable[[np.ndarray, np.ndarray], float]:
    """The SSIM of SSIMS that `ssim_window` names, or ValueError naming the choices."""
    if ssim_window not in SSIMS:
        raise ValueError(f"ssim_window must be one of {list(SSIMS)}, got {ssim_window!r}")
    return SSIMS[ssim_window]


def convention(ssim_window: str = "2d") -> dict:
    """CONVENTION, with the SSIM that `ssim_window` names (a key of SSIMS)."""
    if ssim_window == "2d":
        return CONVENTION
    return {**CONVENTION,
            "ssim": "RGB, 8-bit outputs, 3-D SSIM: an 11x11x11 Gaussian window sigma 1.5 "
                    "across rows, columns and the 3 channels, replicate padding, population "
                    "covariances, mean over every pixel and channel; NAFNet's calculate_ssim "
                    "(ssim3d=True), standing in for MATLAB's ssim(out_uint8, gt_uint8) on the "
                    "RGB array (Restormer's evaluate_gopro_hide.m)"}


# A ground truth this far off its blurred input (the median over a set's pairs) is out of line,
# not blurred: motion blur moves the phase correlation's peak too, by up to 2.6 px on
# reds-mini's most blurred pair, 0.2 px in the median of its 60.
MISALIGNED_PX = 1.5
# The correlation peak's height under which two images are not one scene moved: unrelated
# noise peaks at 0.01-0.06, reds-mini's pairs at 0.37 and more.
SHIFT_PEAK = 0.15


def gt_shift(x: np.ndarray, y: np.ndarray) -> Optional[tuple[float, float]]:
    """Where the ground truth `y` lies against its blurred input `x` (RGB in [0, 1]), as
    (dx, dy) in pixels: the phase correlation of their grey levels, Hann-windowed so that the
    images' edges, which the transform wraps around, add no peak of their own. None where no
    peak stands out (SHIFT_PEAK): the two share too little to tell."""
    import cv2

    # float32: at 1080p 50-80 ms of CPU, 2.4x less than float64, the peak within 0.03 px.
    grey = [cv2.cvtColor(np.asarray(a, np.float32), cv2.COLOR_RGB2GRAY)
            if a.ndim == 3 else np.asarray(a, np.float32) for a in (x, y)]
    window = cv2.createHanningWindow(grey[0].shape[::-1], cv2.CV_32F)
    (dx, dy), peak = cv2.phaseCorrelate(grey[0], grey[1], window)
    return (float(dx), float(dy)) if peak >= SHIFT_PEAK else None


# A crop or a camera pair not registered moves every pair alike; blur moves each pair's peak its
# own way: the project's shake blur by up to 13 px on its test split, reds-mini's scaled to
# REDS' 1280x720 by up to 16, so that the median of 5 of them can be 3 px on exactly aligned
# pairs. An offset is one at least half of the pairs, and 3 or more, lie within 1 px of.
SHIFT_AGREE_PX = 1.0
SHIFT_MIN_PAIRS = 3


def shared_shift(shifts) -> Optional[tuple[float, float]]:
    """The offset the pairs' ground truth shares against their blurred inputs: the median of
    each axis of their `gt_shift`s, where it is MISALIGNED_PX or more and the pairs agree on it
    (SHIFT_AGREE_PX, SHIFT_MIN_PAIRS); else None."""
    if not len(shifts):
        return None
    at = np.asarray(shifts, dtype=float).reshape(-1, 2)
    mid = np.median(at, axis=0)
    agree = int((np.abs(at - mid).max(axis=1) <= SHIFT_AGREE_PX).sum())
    if np.abs(mid).max() < MISALIGNED_PX or agree < max(SHIFT_MIN_PAIRS, len(at) / 2):
        return None
    return float(mid[0]), float(mid[1])


# Overshoot: the neighbourhood must span a blurred edge's whole ramp, so that restoring the
# edge to its two plateaus stays inside the input's range while a halo beside it does not;
# 15x15 spans reds-mini's blur. Wider real shake (Koehler) puts true restoration outside it
# too, hence the ground truth's (or the teacher's) value beside each model's.
OVERSHOOT_WINDOW = 15
# Levels (of 255) past the range before a pixel counts: 8-bit rounding and noise stay under.
OVERSHOOT_LEVELS = 8


class InputRange(NamedTuple):
    """An input's per-pixel range over its neighbourhood (`input_range`), shared by every
    model's `overshoot` on that input."""
    lo: np.ndarray
    hi: np.ndarray
    window: int
    shape: tuple


def input_range(inp: np.ndarray, window: int = OVERSHOOT_WINDOW) -> InputRange:
    """The min and max of `inp` (HxWx3 in [0, 1]) over the `window` x `window` neighbourhood of
    each pixel: what `overshoot` measures every model's output against, computed once per
    image rather than once per model."""
    import cv2
    b = np.asarray(np.clip(_checked("b", inp), 0, 1), np.float32)
    kernel = np.ones((window, window), np.uint8)
    return InputRange(cv2.erode(b, kernel), cv2.dilate(b, kernel), window, b.shape)


def overshoot(out: np.ndarray, inp: np.ndarray, window: int = OVERSHOOT_WINDOW,
              levels: float = OVERSHOOT_LEVELS, truth: Optional[np.ndarray] = None,
              around: Optional[InputRange] = None) -> float:
    """Percent of pixels that `out` pushes more than `levels` (of 255) outside the range of
    `inp` in the window around them, in any channel (HxWx3 in [0, 1]): halos and ringing,
    which a sharpness ratio counts as a gain. With `truth` (the ground truth), the range is
    that of both images: only what the true sharp image does not reach counts (restoring a
    thin line or a highlight takes it past the blurred input's range; a halo beside an edge
    goes past both), so a perfect restoration scores 0. `around`: `input_range(inp, window)`,
    when several outputs of one input are scored."""
    import cv2
    if around is not None and (around.window != window or around.shape != np.shape(out)):
        raise ValueError(f"the input range is of a {around.window}x{around.window} window over "
                         f"{around.shape}, not {window}x{window} over {np.shape(out)}")
    if around is None:
        out, inp = _pair(out, inp)
        around = input_range(inp, window)
    a = np.asarray(np.clip(_checked("a", out), 0, 1), np.float32)
    if a.shape != around.shape:
        raise ValueError(f"the images differ in shape: a {a.shape}, b {around.shape}")
    hi, lo = around.hi, around.lo
    if truth is not None:
        kernel = np.ones((window, window), np.uint8)
        t = np.asarray(_pair(truth, out)[0], np.float32)
        hi, lo = np.maximum(hi, cv2.dilate(t, kernel)), np.minimum(lo, cv2.erode(t, kernel))
    # A pixel counts where any channel is past either bound: two comparisons into one bytes
    # array, through one float buffer (the max of both differences, then of the channels, made
    # three more full-size float passes, most of the measure's time at 1080p).
    thr = np.float32(levels / 255.0)
    diff = np.subtract(a, hi, dtype=np.float32)
    past = np.greater(diff, thr)
    past |= np.greater(np.subtract(lo, a, out=diff), thr)
    if past.ndim == 3:
        past = past.any(2)
    return 100.0 * float(past.mean())
