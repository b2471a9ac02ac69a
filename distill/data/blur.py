"""Synthetic motion blur that looks like camera shake.

Trajectories follow Boracchi & Foi, "Modeling the performance of image restoration from motion
blur" (TIP 2012): a random walk whose velocity has inertia, a pull back towards the start
(centripetal term), Gaussian jitter and occasional abrupt jerks. The trajectory is rasterised
with bilinear splatting (sub-pixel accurate) into a non-negative kernel that sums to 1.

Two ways to blur:
- "kernel": convolve with the kernel in linear light (uniform blur, the usual synthetic setting);
- "frames": GoPro-style, average N shifted (and slightly rotated) copies of the sharp image
  along the trajectory in linear light, then back to sRGB, like the real GoPro dataset which
  averages consecutive 240 fps frames.
Everything is deterministic given a numpy Generator.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from runtime.prepost import check_rgb_float


def shake_trajectory(rng: np.random.Generator, n: int = 64, anxiety: float | None = None
                     ) -> np.ndarray:
    """Complex positions (n,) of a camera-shake random walk with unit step length."""
    anxiety = rng.uniform(0.005, 0.1) if anxiety is None else anxiety
    centripetal = 0.7 * rng.uniform()
    gaussian = 10.0 * rng.uniform()
    big_shakes = 0.2 * rng.uniform()
    v = np.exp(1j * rng.uniform(0, 2 * np.pi))
    x = np.zeros(n, dtype=np.complex128)
    for t in range(n - 1):
        jerk = 0j
        if rng.uniform() < big_shakes * anxiety:
            jerk = 2 * v * np.exp(1j * (np.pi + (rng.uniform() - 0.5)))
        dv = jerk + anxiety * (gaussian * complex(rng.normal(), rng.normal()) - centripetal * x[t])
        v = v + dv
        v = v / (abs(v) + 1e-12)
        x[t + 1] = x[t] + v
    return x


def rasterize(points: np.ndarray, size: int, samples_per_px: int = 8) -> np.ndarray:
    """Bilinear-splat a polyline of complex points (already in kernel pixel coordinates) into a
    size x size kernel normalised to sum 1."""
    seg = np.abs(np.diff(points))
    total = max(float(seg.sum()), 1e-6)
    m = max(int(total * samples_per_px), 2)
    # Resample uniformly along arc length so slow parts of the path get more weight only through
    # their real duration (points are equally spaced in time).
    t = np.linspace(0, len(points) - 1, m)
    idx = np.minimum(t.astype(int), len(points) - 2)
    frac = t - idx
    p = points[idx] * (1 - frac) + points[idx + 1] * frac
    k = np.zeros((size, size), dtype=np.float64)
    x, y = p.real, p.imag
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                      (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = x0 + dx, y0 + dy
        ok = (xi >= 0) & (xi < size) & (yi >= 0) & (yi < size)
        np.add.at(k, (yi[ok], xi[ok]), w[ok])
    k = np.maximum(k, 0)
    return (k / k.sum()).astype(np.float32)


def _fit(points: np.ndarray, size: int, extent: float) -> np.ndarray:
    """Scale a trajectory so its largest extent is `extent` px and centre it in the kernel."""
    p = points - (points.real.min() + 1j * points.imag.min())
    span = max(p.real.max(), p.imag.max(), 1e-6)
    p = p * (extent / span)
    centre = (size - 1) / 2
    return p - (p.real.max() / 2 + 1j * p.imag.max() / 2) + complex(centre, centre)


# The largest kernel side: one is made in under 10 ms and applied to a 512x512 image in about
# 0.1 s; at 4095 each takes over a second, and 100000 asked for an 80 GB array. A blur this
# long is already wider than most images.
MAX_KERNEL_SIZE = 1023


def _odd_size(rng: np.random.Generator, size_range: tuple[int, int]) -> int:
    lo, hi = size_range
    if not 3 <= lo <= hi <= MAX_KERNEL_SIZE:
        raise ValueError(f"kernel size range must satisfy 3 <= min <= max <= "
                         f"{MAX_KERNEL_SIZE}, got {size_range}")
    s = int(rng.integers(lo, hi + 1))
    return s if s % 2 else min(s + 1, hi if hi % 2 else hi + 1)


def camera_shake_kernel(rng: np.random.Generator, size_range: tuple[int, int] = (7, 41)
                        ) -> np.ndarray:
    size = _odd_size(rng, size_range)
    traj = shake_trajectory(rng)
    return rasterize(_fit(traj, size, (size - 2) * rng.uniform(0.6, 1.0)), size)


def linear_motion_kernel(length: float, angle_deg: float, size: int | None = None) -> np.ndarray:
    size = size or (int(np.ceil(length)) | 1) + 2
    a = np.deg2rad(angle_deg)
    half = length / 2 * np.exp(1j * a)
    c = complex((size - 1) / 2, (size - 1) / 2)
    return rasterize(np.array([c - half, c + half]), size)


def random_kernel(rng: np.random.Generator, size_range: tuple[int, int] = (7, 41),
                  kind: str = "shake") -> np.ndarray:
    """A random blur kernel: "shake" (camera-shake trajectory), "linear", or "mixed" (80/20)."""
    if kind == "mixed":
        kind = "shake" if rng.uniform() < 0.8 else "linear"
    if kind == "shake":
        return camera_shake_kernel(rng, size_range)
    if kind == "linear":
        size = _odd_size(rng, size_range)
        return linear_motion_kernel(rng.uniform(0.5, 1.0) * (size - 2), rng.uniform(0, 180), size)
    raise ValueError(f"unknown kernel kind {kind!r}; choose shake, linear or mixed")


def srgb_to_linear(x: np.ndarray, gamma: float) -> np.ndarray:
    return np.power(np.clip(x, 0, 1), gamma)


def linear_to_srgb(x: np.ndarray, gamma: float) -> np.ndarray:
    return np.power(np.clip(x, 0, 1), 1.0 / gamma)


def apply_kernel(img: np.ndarray, kernel: np.ndarray, gamma: float = 2.2) -> np.ndarray:
    """Convolve an HxWxC float image in linear light (gamma=1 blurs the sRGB values directly)."""
    lin = srgb_to_linear(img, gamma) if gamma != 1 else img
    # filter2D correlates; flip to convolve (matters for asymmetric kernels' sub-pixel phase).
    out = cv2.filter2D(lin.astype(np.float32), -1, kernel[::-1, ::-1].copy(),
                       borderType=cv2.BORDER_REFLECT)
    return linear_to_srgb(out, gamma) if gamma != 1 else np.clip(out, 0, 1)


def frames_blur(img: np.ndarray, rng: np.random.Generator, extent: float, n_frames: int = 15,
                gamma: float = 2.2, max_rotation_deg: float = 0.5) -> np.ndarray:
    """GoPro-style: average n_frames copies shifted along a shake trajectory, with a small
    rotation drift, in linear light."""
    traj = shake_trajectory(rng)
    p = _fit(traj, 1, extent)  # centred on 0
    t = np.linspace(0, len(p) - 1, n_frames)
    pos = np.interp(t, np.arange(len(p)), p.real) + 1j * np.interp(t, np.arange(len(p)), p.imag)
    rot = np.linspace(0, rng.uniform(-max_rotation_deg, max_rotation_deg), n_frames)
    h, w = img.shape[:2]
    lin = srgb_to_linear(img, gamma).astype(np.float32)
    acc = np.zeros_like(lin)
    for z, r in zip(pos, rot):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), float(r), 1.0)
        m[:, 2] += (z.real, z.imag)
        acc += cv2.warpAffine(lin, m, (w, h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)
    return linear_to_srgb(acc / n_frames, gamma)


def add_noise(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Signal-dependent sensor noise: shot noise (variance ~ signal) plus read noise."""
    if sigma <= 0:
        return img
    std = np.sqrt(sigma ** 2 + (sigma * 2) ** 2 * np.clip(img, 0, 1))
    return np.clip(img + rng.normal(size=img.shape).astype(np.float32) * std, 0, 1)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    bgr = (np.clip(img, 0, 1)[..., ::-1] * 255 + 0.5).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV JPEG encoding failed")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255.0


@dataclass
class BlurConfig:
    """How `synthesize` degrades a sharp image. Ranges are sampled uniformly per image."""
    mode: str = "kernel"                 # "kernel", "frames", or "mixed" (50/50)
    kernel_kind: str = "mixed"           # "shake", "linear", "mixed"
    size_range: tuple[int, int] = (7, 41)
    n_frames: int = 15                   # frames mode
    gamma: float = 2.2                   # 1.0 blurs in sRGB
    noise_sigma: tuple[float, float] = (0.0, 0.01)
    jpeg_prob: float = 0.0
    jpeg_quality: tuple[int, int] = (70, 95)


def synthesize(sharp: np.ndarray, rng: np.random.Generator, cfg: BlurConfig | None = None
               ) -> np.ndarray:
    """Blurred version of an HxWx3 float32 sRGB image in [0, 1] (FrameError for anything else:
    an OpenCV uint8 photo was blurred into an all-white image)."""
    check_rgb_float(sharp, "sharp")   # checked only: the blur is computed from `sharp` as given
    cfg = cfg or BlurConfig()
    mode = cfg.mode
    if mode == "mixed":
        mode = "kernel" if rng.uniform() < 0.5 else "frames"
    if mode == "kernel":
        out = apply_kernel(sharp, random_kernel(rng, cfg.size_range, cfg.kernel_kind), cfg.gamma)
    elif mode == "frames":
        extent = rng.uniform(cfg.size_range[0], cfg.size_range[1]) - 2
        out = frames_blur(sharp, rng, extent, cfg.n_frames, cfg.gamma)
    else:
        raise ValueError(f"unknown blur mode {cfg.mode!r}; choose kernel, frames or mixed")
    sigma = rng.uniform(*cfg.noise_sigma) if cfg.noise_sigma[1] > 0 else 0.0
    out = add_noise(out.astype(np.float32), rng, sigma)
    if cfg.jpeg_prob > 0 and rng.uniform() < cfg.jpeg_prob:
        out = jpeg(out, int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
    return out.astype(np.float32)
