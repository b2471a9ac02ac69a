"""Realistic blur synthesis: what a real camera does during an exposure, not one uniform kernel.

A blurred/sharp pair is made the way GoPro-style datasets are recorded: N sub-frames of a moving
scene are averaged in linear light. The sharp ground truth is the scene at the exposure's mean
pose, the centre of the blur trail. GoPro takes its middle frame, which for its short, nearly
straight motion is the same point; on the curving shake paths synthesised here the middle
sub-frame lies several pixels off the trail's centre, in a direction the blurred image does not
reveal, and a network trained on it learns to leave the blur in place (the README's "Realistic
blur" section has the measurement).

- Camera motion: each sub-frame is the photo warped by a homography along a smooth random
  trajectory (translation from a camera-shake random walk, in-plane rotation, zoom and a little
  perspective), so the blur varies across the frame (non-uniform, like real shake).
- Object motion: a few foreground layers (soft-masked crops of another photo, or of the same
  photo elsewhere) move along their own trajectories over the background.
- Sensor: highlights saturate (linear intensities near white are boosted above 1 before the
  blur and clipped after it, so lights streak with flat cores), Poisson-Gaussian noise after
  the blur, a camera-like tone curve back to display values, optional mild defocus and JPEG.

Every effect is a field of `SceneBlurConfig`; `PRESETS` names configurations after what they
model. Deterministic for a given numpy Generator.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from runtime.prepost import check_rgb_float

from .blur import jpeg, shake_trajectory

Range = tuple[float, float]

# Bumped whenever the same seed would give different pairs, so a corpus built by an older
# synthesis is not silently extended with new pairs. 1: targets at the middle sub-frame;
# 2: targets at the mean pose.
SYNTHESIS_VERSION = 2


@dataclass(frozen=True)
class SceneBlurConfig:
    frames: tuple[int, int] = (7, 13)        # sub-frames averaged per exposure
    shake_px: Range = (4.0, 28.0)            # largest extent of the camera's translation path
    rotation_deg: Range = (0.0, 1.0)         # in-plane rotation over the exposure
    zoom: Range = (0.0, 0.02)                # relative scale change over the exposure
    perspective: Range = (0.0, 2e-5)         # projective terms of the homography (1/px)
    objects: tuple[int, int] = (0, 2)        # independently moving foreground layers
    object_px: Range = (4.0, 30.0)           # each object's own motion over the exposure
    object_size: Range = (0.12, 0.4)         # object diameter as a fraction of the short side
    saturation_prob: float = 0.5             # chance that highlights are boosted above white
    highlight_gain: Range = (1.5, 5.0)       # boost of the brightest linear intensities
    # GoPro-like video is averaged over many sub-frames, so its blur carries little noise, and
    # the noise that is there is amplified ~5x in dark regions by the tone curve.
    shot_noise: Range = (0.0, 5e-4)          # Poisson part: variance = shot * signal (linear)
    read_noise: Range = (0.0, 2e-3)          # Gaussian part: std in linear units
    gamma: Range = (2.0, 2.4)                # inverse camera response used to linearise
    tone_strength: Range = (0.0, 0.3)        # S-curve mixed into the tone curve back to display
    defocus_prob: float = 0.15
    defocus_sigma: Range = (0.4, 1.2)
    jpeg_prob: float = 0.1
    jpeg_quality: tuple[int, int] = (70, 95)

    def __post_init__(self) -> None:
        for name in ("frames", "objects", "jpeg_quality"):
            lo, hi = getattr(self, name)
            if lo > hi or lo < 0:
                raise ValueError(f"SceneBlurConfig.{name} must be a range lo <= hi, got "
                                 f"{getattr(self, name)}")
        if self.frames[0] < 2:
            raise ValueError(f"SceneBlurConfig.frames needs at least 2 sub-frames, got "
                             f"{self.frames}")


PRESETS: dict[str, SceneBlurConfig] = {
    # GoPro-like: 7-13 averaged frames of a handheld action camera walking through a street.
    "gopro": SceneBlurConfig(),
    # Handheld stills at slow shutter: longer, smoother shake, more rotation, more noise, lights.
    "handheld": SceneBlurConfig(frames=(11, 25), shake_px=(8.0, 40.0), rotation_deg=(0.3, 2.0),
                                objects=(0, 1), saturation_prob=0.7,
                                shot_noise=(2e-4, 2e-3), read_noise=(5e-4, 4e-3), jpeg_prob=0.3),
    # Mild: a steadier camera, short shake, little noise (REDS-like downscaled video blur).
    "mild": SceneBlurConfig(frames=(5, 9), shake_px=(1.5, 10.0), rotation_deg=(0.0, 0.4),
                            zoom=(0.0, 0.005), objects=(0, 1), object_px=(2.0, 12.0),
                            shot_noise=(0.0, 3e-4), read_noise=(0.0, 1.5e-3), jpeg_prob=0.2),
    # Still: a steady camera, so the frame is sharp but for sensor noise and compression. Every
    # model trained only on blurred inputs over-sharpens such frames (on reds-mini's sharpest
    # pairs the teacher lost up to 4.6 dB), and live video is full of them.
    "still": SceneBlurConfig(frames=(2, 3), shake_px=(0.0, 1.5), rotation_deg=(0.0, 0.02),
                             zoom=(0.0, 0.0), perspective=(0.0, 0.0), objects=(0, 0),
                             shot_noise=(0.0, 1e-3), read_noise=(0.0, 3e-3), defocus_prob=0.0,
                             jpeg_prob=0.3),
}


def preset(name: str, **overrides) -> SceneBlurConfig:
    if name not in PRESETS:
        from runtime.suggest import did_you_mean
        raise ValueError(f"unknown blur preset {name!r}{did_you_mean(name, PRESETS)}; choose one "
                         f"of {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)


def _u(rng: np.random.Generator, r: Range) -> float:
    return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])


def _path(rng: np.random.Generator, n: int, extent: float) -> np.ndarray:
    """Complex offsets (n,) along a camera-shake walk, largest extent `extent`, with mean zero:
    the sharp target sits at the centre of the blur trail."""
    walk = shake_trajectory(rng, n=64)
    t = np.linspace(0, len(walk) - 1, n)
    p = np.interp(t, np.arange(len(walk)), walk.real) \
        + 1j * np.interp(t, np.arange(len(walk)), walk.imag)
    span = max(np.ptp(p.real), np.ptp(p.imag), 1e-6)
    p = p * (extent / span)
    return p - p.mean()


def _homographies(rng: np.random.Generator, cfg: SceneBlurConfig, n: int, h: int, w: int
                  ) -> list[np.ndarray]:
    shift = _path(rng, n, _u(rng, cfg.shake_px))
    s = np.linspace(-0.5, 0.5, n)
    # Rotation drifts with a little curvature; zoom and perspective drift linearly. Each has
    # mean zero over the exposure, so the identity is the mean pose (the target's).
    rot = np.deg2rad(_u(rng, cfg.rotation_deg)) * rng.choice([-1, 1]) \
        * (s + rng.uniform(-0.5, 0.5) * s ** 2)
    rot = rot - rot.mean()
    zoom = _u(rng, cfg.zoom) * rng.choice([-1, 1]) * s
    pdir = rng.normal(size=2)
    persp = _u(rng, cfg.perspective) * pdir / (np.linalg.norm(pdir) + 1e-9)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    to_c = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], dtype=np.float64)
    from_c = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1]], dtype=np.float64)
    out = []
    for k in range(n):
        c, sn, z = np.cos(rot[k]), np.sin(rot[k]), 1 + zoom[k]
        m = np.array([[z * c, -z * sn, shift[k].real], [z * sn, z * c, shift[k].imag],
                      [persp[0] * s[k], persp[1] * s[k], 1.0]])
        out.append(from_c @ m @ to_c)
    return out


def _soft_mask(rng: np.random.Generator, h: int, w: int, diameter: float) -> np.ndarray:
    """A random blob (a polygon around a centre) with a soft edge, as float32 in [0, 1]."""
    m = np.zeros((h, w), np.uint8)
    cy, cx = rng.uniform(0.2 * h, 0.8 * h), rng.uniform(0.2 * w, 0.8 * w)
    k = int(rng.integers(5, 12))
    ang = np.sort(rng.uniform(0, 2 * np.pi, k))
    rad = diameter / 2 * rng.uniform(0.5, 1.0, k)
    pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).astype(np.int32)
    cv2.fillPoly(m, [pts], 255)
    soft = max(1.0, diameter * 0.03)
    return cv2.GaussianBlur(m.astype(np.float32) / 255.0, (0, 0), soft)


def _boost_highlights(lin: np.ndarray, gain: float) -> np.ndarray:
    """Push the brightest linear intensities above 1 (up to `gain` at white): after the blur
    and the clip they spread into flat saturated streaks, like lights in real footage."""
    thr = 0.8
    return lin + (gain - 1.0) * np.maximum(lin - thr, 0.0) / (1.0 - thr)


def _tone(lin: np.ndarray, gamma: float, strength: float) -> np.ndarray:
    """Camera-like tone curve back to display values: gamma plus a mild S-curve."""
    v = np.power(np.clip(lin, 0, 1), 1.0 / gamma)
    if strength > 0:
        v = (1 - strength) * v + strength * (v * v * (3 - 2 * v))
    return v.astype(np.float32)


def _warp(img: np.ndarray, hmat: np.ndarray, w: int, h: int) -> np.ndarray:
    return cv2.warpPerspective(img, hmat, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)


def synthesize_pair(sharp: np.ndarray, rng: np.random.Generator,
                    cfg: SceneBlurConfig | None = None, other: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(blurred, target) float32 HxWx3 in [0, 1] from one sharp HxWx3 float32 photo.

    `other` (optional, any size) supplies the moving objects' texture; without it objects are
    cut from elsewhere in `sharp`. The target is the scene at the mean pose (the photo itself, each
    object at the centre of its path) through the same tone curve and clipping, so the pair
    differs only by motion, defocus, noise and compression."""
    cfg = cfg or PRESETS["gopro"]
    # An OpenCV uint8 photo (or a float one in [0, 255]) came back an all-white pair. Checked
    # only: the pair is computed from `sharp` as given, so float64 callers get what they got.
    check_rgb_float(sharp, "sharp")
    if other is not None:
        check_rgb_float(other, "other")
    h, w = sharp.shape[:2]
    n = int(rng.integers(cfg.frames[0], cfg.frames[1] + 1))
    gamma = _u(rng, cfg.gamma)
    lin = np.power(np.clip(sharp, 0, 1), gamma).astype(np.float32)
    if rng.uniform() < cfg.saturation_prob:
        lin = _boost_highlights(lin, _u(rng, cfg.highlight_gain))
    homs = _homographies(rng, cfg, n, h, w)

    layers = []
    for _ in range(int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))):
        src = other if other is not None else sharp
        sh, sw = src.shape[:2]
        # The object's texture: a random window of the source, resized to this frame.
        y0, x0 = int(rng.integers(0, max(1, sh - h + 1))), int(rng.integers(0, max(1, sw - w + 1)))
        tex = src[y0:y0 + h, x0:x0 + w]
        if tex.shape[:2] != (h, w):
            tex = cv2.resize(tex, (w, h), interpolation=cv2.INTER_AREA)
        if other is None:
            tex = np.roll(tex, (int(rng.integers(h)), int(rng.integers(w))), axis=(0, 1))
        tex_lin = np.power(np.clip(tex, 0, 1), gamma).astype(np.float32)
        mask = _soft_mask(rng, h, w, _u(rng, cfg.object_size) * min(h, w))
        path = _path(rng, n, _u(rng, cfg.object_px))
        layers.append((tex_lin, mask, path))

    def render(hm: np.ndarray | None, k: int | None) -> np.ndarray:
        """The scene at sub-frame k (camera pose hm), or at the mean pose (None, None)."""
        frame = lin if hm is None else _warp(lin, hm, w, h)
        for tex_lin, mask, path in layers:
            if hm is None:
                m, tex = mask[..., None], tex_lin
            else:
                # Objects move with the camera plus their own path.
                t = np.array([[1, 0, path[k].real], [0, 1, path[k].imag], [0, 0, 1]]) @ hm
                m, tex = _warp(mask, t, w, h)[..., None], _warp(tex_lin, t, w, h)
            frame = frame * (1 - m) + tex * m
        return frame

    blurred = sum(render(hm, k) for k, hm in enumerate(homs)) / n
    sharp_lin = render(None, None)

    if rng.uniform() < cfg.defocus_prob:
        blurred = cv2.GaussianBlur(blurred, (0, 0), _u(rng, cfg.defocus_sigma))
    blurred = np.clip(blurred, 0, 1)
    shot, read = _u(rng, cfg.shot_noise), _u(rng, cfg.read_noise)
    if shot > 0 or read > 0:
        std = np.sqrt(shot * blurred + read ** 2).astype(np.float32)
        blurred = np.clip(blurred + rng.standard_normal(blurred.shape, dtype=np.float32) * std,
                          0, 1)
    strength = _u(rng, cfg.tone_strength)
    out = _tone(blurred, gamma, strength)
    target = _tone(np.clip(sharp_lin, 0, 1), gamma, strength)
    if cfg.jpeg_prob > 0 and rng.uniform() < cfg.jpeg_prob:
        out = jpeg(out, int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
    return out.astype(np.float32), target
