"""`sharpen evaluate --align ecc`: each image scored after it is registered to its ground truth,
as RealBlur's published scores are (rimchang/RealBlur evaluation_RealBlur_ecc.py): real
blur/sharp pairs lie a few pixels apart, and unaligned PSNR/SSIM scores that offset as well as
the blur. The steps are that script's: the image's intensity matched to the ground truth (one
least-squares gain), OpenCV's ECC on the grey levels (to 100 iterations, Gaussian pre-filter 5),
the image warped onto the ground truth's grid (bicubic, border reflected), a mask of the pixels
the warp brings in (nearest), and PSNR and SSIM over that mask alone. `--align ecc` differs, as
ALIGNMENT says: a translation (MOTION_TRANSLATION), where the script fits a homography, whose 8
parameters also soak up some of the blur and read a little higher (0.03 to 0.09 dB on six
reds-mini pairs); a translation is the offset a user can check (`offset_x`, `offset_y`).
`--align ecc-homography` fits the script's homography, for its published tables' numbers."""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Optional

if TYPE_CHECKING:
    import numpy as np
# numpy and the metrics are imported where used: `sharpen --help` and `sharpen run` build the
# parser, which takes ALIGNS from here, before any handler (tests/test_runtime_notorch.py).

# `--align`: none scores the grids as given (metrics.ALIGNMENT says so); ecc registers by a
# translation first; ecc-homography by the script's homography, its numbers exactly (the
# offset then where the ground truth's centre lies in the image).
ALIGNS = ("none", "ecc", "ecc-homography")

# RealBlur's script: at most 100 iterations, a 5x5 Gaussian pre-filter. Its epsilon of 0 runs
# all 100; a translation has converged after about 20, and the rest took 2.3 of ECC's 2.8 s of
# CPU on a 1080p image. Stopped where the correlation moves less than ECC_EPS, the offset is that
# of all 100 within 2e-5 px (reds-mini's 60 pairs, half of them moved 3.4, -2.6 px).
ECC_ITERATIONS = 100
ECC_EPS = 1e-8
ECC_FILTER = 5

_STEPS = ("of each output, and of the blurred input, onto its ground truth after a least-"
          "squares intensity gain; warped bicubic (border reflected), PSNR and SSIM over the "
          "mask of pixels the warp brings in (SSIM map's 5 px border left out), as RealBlur's "
          "evaluation_RealBlur_ecc.py")
_FAILED = "; an image ECC does not converge on is scored unaligned (alignment_failed)"
# metrics.json's convention.alignment, by --align.
ALIGNMENT = {
    "ecc": ("ECC translation (cv2.findTransformECC, MOTION_TRANSLATION, up to 100 iterations "
            "stopped where the correlation moves under 1e-8, gaussFiltSize 5) " + _STEPS
            + ", which fits a homography (all 100 iterations) instead and leaves the input "
            "unaligned" + _FAILED),
    "ecc-homography": ("ECC homography (cv2.findTransformECC, MOTION_HOMOGRAPHY, 100 "
                       "iterations, gaussFiltSize 5) " + _STEPS + ", which leaves the input "
                       "unaligned" + _FAILED),
}
# The table's word for the warp, by --align.
WARPS = {"ecc": "translation", "ecc-homography": "homography"}

# A corner moved over this part of the image's width or height is said (`far_off`): a camera
# pair lies a few pixels apart, while ECC on content the two do not share (another clip's
# ground truth) converged 58 px off on a 320x180 reds-mini pair, and scored 78% of the image;
# a homography there halved the image's width, its centre moved 1 px.
FAR_OFF = 0.05


def far_off(move: Optional[tuple[float, float]], shape: tuple[int, ...]) -> bool:
    """Whether `move` (x, y px; `Aligned.reach`) is over FAR_OFF of an image of `shape`
    (HxW...) in either."""
    return move is not None and (abs(move[0]) > FAR_OFF * shape[1]
                                 or abs(move[1]) > FAR_OFF * shape[0])


class Aligned(NamedTuple):
    """An image registered to its ground truth (`align_ecc`): PSNR and SSIM over the overlap,
    the offset (where the image's content lies from the ground truth's, in pixels: a copy
    moved 3 px right reads +3; a homography's, its centre's), why ECC failed (None where it
    converged) and the reach: the move of the corner the warp moves most (a translation's
    offset itself; None where ECC failed)."""
    psnr: float
    ssim: float
    offset: Optional[tuple[float, float]]
    failed: Optional[str]
    reach: Optional[tuple[float, float]] = None


def align_ecc(img: np.ndarray, gt: np.ndarray, align: str = "ecc") -> Aligned:
    """`img` (HxWx3 in [0, 1]) registered to `gt` (`align` one of ALIGNS but none) and scored
    over the overlap; where ECC does not converge (uncorrelated images, a flat frame), scored
    as given, with OpenCV's reason."""
    import cv2
    import numpy as np

    from .metrics import _check_window, _pair
    z, x = (np.ascontiguousarray(a, np.float32) for a in _pair(img, gt))
    _check_window(x)
    # The script's "simple intensity matching": one gain, so that exposure does not move ECC.
    zz = float(np.sum(z.astype(np.float64) ** 2))
    zs = (z * np.float32(float(np.sum(x.astype(np.float64) * z)) / zz) if zz > 0 else z)
    if align not in WARPS:
        raise ValueError(f"align must be one of {list(WARPS)}, got {align!r}")
    homography = align == "ecc-homography"
    # The homography as the script fits it, all 100 iterations: its numbers, not near them.
    motion, warp, eps = ((cv2.MOTION_HOMOGRAPHY, np.eye(3, 3, dtype=np.float32), 0)
                         if homography else
                         (cv2.MOTION_TRANSLATION, np.eye(2, 3, dtype=np.float32), ECC_EPS))
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_ITERATIONS, eps)
    try:
        _, warp = cv2.findTransformECC(_grey(x), _grey(zs), warp, motion, criteria, None,
                                       ECC_FILTER)
    except cv2.error as e:   # "Iterations do not converge": the images share too little
        return Aligned(*_masked_scores(z, x, np.ones_like(x)), None, _reason(e))
    h, w = x.shape[:2]
    inverse = cv2.WARP_INVERSE_MAP
    warped = cv2.warpPerspective if homography else cv2.warpAffine
    zr = warped(zs, warp, (w, h), flags=cv2.INTER_CUBIC + inverse,
                borderMode=cv2.BORDER_REFLECT)
    mask = warped(np.ones_like(zs), warp, (w, h), flags=cv2.INTER_NEAREST + inverse,
                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    # The inverse map takes the ground truth's pixel p to the image's warp(p): its centre's
    # move is the offset (a translation's own), its corners' the reach.
    points = np.array([[(w - 1) / 2, 0, w - 1, 0, w - 1], [(h - 1) / 2, 0, 0, h - 1, h - 1],
                       [1, 1, 1, 1, 1]])
    moved = warp.astype(np.float64) @ points
    moves = (moved[:2] / moved[2] if homography else moved) - points[:2]
    corner = 1 + int(np.argmax(np.maximum(np.abs(moves[0, 1:]) / w, np.abs(moves[1, 1:]) / h)))
    return Aligned(*_masked_scores(zr * mask, x * mask, mask),
                   (float(moves[0, 0]), float(moves[1, 0])), None,
                   (float(moves[0, corner]), float(moves[1, corner])))


def _grey(a: np.ndarray) -> np.ndarray:
    import cv2
    return cv2.cvtColor(a, cv2.COLOR_RGB2GRAY) if a.ndim == 3 else a


def _reason(e: Exception) -> str:
    """OpenCV's message without its source path: '(-7:Iterations do not converge) ...'."""
    text = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    return text.split(" error: ", 1)[-1].split(" in function ")[0].strip()


def _masked_scores(z: np.ndarray, x: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """PSNR and SSIM of `z` against `x` (both already zero outside `mask`) over `mask`: the
    squared error's sum over the mask's pixels, and the SSIM map's mean over the mask within
    the window's half-width of the border, per channel, channels averaged."""
    import numpy as np

    from .metrics import PSNR_MAX, _window
    err = float(np.sum((x.astype(np.float64) - z) ** 2)) / max(float(mask.sum()), 1.0)
    score = PSNR_MAX if err == 0 else min(float(10 * np.log10(1.0 / err)), PSNR_MAX)
    radius, _ = _window()
    smap = _ssim_full(z, x)
    inner = (slice(radius, -radius), slice(radius, -radius))
    m = mask[inner]
    per_channel = (smap * mask)[inner].sum(axis=(0, 1)) / np.maximum(m.sum(axis=(0, 1)), 1)
    return score, float(np.mean(per_channel))


def _ssim_full(z: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The SSIM map (HxWx3, or HxW) of the convention's SSIM: scikit-image's, else the same
    by OpenCV (a device install has no scipy)."""
    import numpy as np

    from .metrics import SSIM_SIGMA, _ssim_maps_opencv
    a, b = z.astype(np.float64), x.astype(np.float64)
    try:
        from skimage.metrics import structural_similarity
    except ImportError:
        maps = _ssim_maps_opencv(a, b)
        return maps[0] if a.ndim == 2 else np.stack(maps, axis=-1)
    return structural_similarity(b, a, channel_axis=-1 if a.ndim == 3 else None,
                                 data_range=1.0, gaussian_weights=True, sigma=SSIM_SIGMA,
                                 use_sample_covariance=False, full=True)[1]
