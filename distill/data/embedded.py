"""The embedded default dataset: needs nothing downloaded.

Sharp images come from real photographs that installed packages ship (scikit-image's
`skimage.data`; scikit-learn's sample images when installed) plus procedurally generated
dead-leaves images (occluding discs with a power-law size distribution: natural-image statistics,
a standard synthetic source for training restoration networks).

The split is fixed and documented so numbers are comparable from run to run:
- test:  photos chelsea, coffee, rocket + dead-leaves seeds 9000-9002, each blurred twice
         (a moderate and a heavy camera-shake kernel), 12 pairs;
- val:   dead-leaves seeds 8000-8003, one blur each;
- train: every other photo (astronaut, motorcycle left/right, hubble_deep_field,
         immunohistochemistry, retina, grayscale textures as RGB, scikit-learn's china/flower
         when installed) + dead-leaves seeds 0..N-1, four blurs each.
Blurred test/val/train pairs are written in the paired-folder layout
root/{train,val,test}/{input,target}/NAME.png by `build_embedded`.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from runtime.atomic import atomic_write_json

from ..images import write_image
from .blur import BlurConfig, synthesize

TEST_PHOTOS = ("chelsea", "coffee", "rocket")
TRAIN_PHOTOS = ("astronaut", "motorcycle_left", "motorcycle_right", "hubble_deep_field",
                "immunohistochemistry", "retina")
TRAIN_GRAY = ("camera", "grass", "gravel", "brick", "coins", "page", "text", "moon")
EMBEDDED_BLUR = BlurConfig(mode="mixed", kernel_kind="mixed", size_range=(7, 23),
                           noise_sigma=(0.0, 0.005))
VERSION = 1


def default_root() -> Path:
    """Where the built dataset lives: $SHARPEN_DATA, else the user cache
    ($XDG_CACHE_HOME or ~/.cache)/sharpen/embedded; never inside the installed package."""
    env = os.environ.get("SHARPEN_DATA")
    if env:
        return Path(env)
    from runtime.cache import cache_dir
    return cache_dir("embedded")


def _skimage_photo(name: str) -> np.ndarray:
    import skimage.data as d

    if name.startswith("motorcycle_"):
        left, right, _ = d.stereo_motorcycle()
        img = left if name.endswith("left") else right
    else:
        img = getattr(d, name)()
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3].astype(np.float32) / 255.0
    # Keep images moderate so CPU teacher inference over the set stays in minutes.
    h, w = img.shape[:2]
    s = 640 / max(h, w)
    if s < 1:
        img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img)


def _sklearn_photos() -> Iterator[tuple[str, np.ndarray]]:
    try:
        from sklearn.datasets import load_sample_images
    except ImportError:
        return
    data = load_sample_images()
    for fname, img in zip(data.filenames, data.images):
        img = cv2.resize(img, (480, 320), interpolation=cv2.INTER_AREA)
        yield Path(fname).stem, img.astype(np.float32) / 255.0


def dead_leaves(seed: int, size: int = 320, rmin: float = 2.0, rmax: float = 120.0,
                n: int = 4000) -> np.ndarray:
    """Dead-leaves image: discs with radius density ~ r^-3 (scale invariance), random colours,
    painted back to front, with a little smooth shading so edges are not all step edges."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), rng.uniform(0, 1, 3), dtype=np.float32)
    # Inverse-CDF sampling of p(r) ~ r^-3 on [rmin, rmax].
    u = rng.uniform(size=n)
    r = 1.0 / np.sqrt(1 / rmin ** 2 - u * (1 / rmin ** 2 - 1 / rmax ** 2))
    xs, ys = rng.uniform(-rmax / 2, size + rmax / 2, (2, n))
    cols = rng.uniform(0, 1, (n, 3))
    for x, y, rad, c in zip(xs, ys, r, cols):
        cv2.circle(img, (int(x), int(y)), int(rad), tuple(float(v) for v in c), -1,
                   lineType=cv2.LINE_AA)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    shade = 0.85 + 0.15 * np.sin(2 * np.pi * (xx * rng.uniform(0.5, 2) + yy * rng.uniform(0.5, 2)))
    return np.clip(img * shade[..., None], 0, 1)


def sharp_images(split: str, n_dead_leaves: int = 24) -> list[tuple[str, np.ndarray]]:
    """The sharp images of a split, as (name, HxWx3 float32 RGB)."""
    if split == "test":
        out = [(n, _skimage_photo(n)) for n in TEST_PHOTOS]
        out += [(f"deadleaves_{s}", dead_leaves(s)) for s in (9000, 9001, 9002)]
    elif split == "val":
        out = [(f"deadleaves_{s}", dead_leaves(s, size=256)) for s in (8000, 8001, 8002, 8003)]
    elif split == "train":
        out = [(n, _skimage_photo(n)) for n in TRAIN_PHOTOS + TRAIN_GRAY]
        out += list(_sklearn_photos())
        out += [(f"deadleaves_{s}", dead_leaves(s)) for s in range(n_dead_leaves)]
    else:
        raise ValueError(f"unknown split {split!r}; choose train, val or test")
    return out


def blurred_pairs(split: str, blur: BlurConfig = EMBEDDED_BLUR, n_dead_leaves: int = 24
                  ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(name, blurred, sharp) for a split, deterministic: the seed depends only on the split,
    the image index and the copy index."""
    copies = {"train": 4, "val": 1, "test": 2}[split]
    split_id = {"train": 1, "val": 2, "test": 3}[split]
    for i, (name, sharp) in enumerate(sharp_images(split, n_dead_leaves)):
        for c in range(copies):
            rng = np.random.default_rng([VERSION, split_id, i, c])
            cfg = blur
            if split == "test":
                # One moderate and one heavy blur per test image.
                lo, hi = blur.size_range
                mid = (lo + hi) // 2
                cfg = BlurConfig(**{**asdict(blur), "mode": "kernel",
                                    "size_range": (lo, mid) if c == 0 else (mid, hi)})
            yield f"{name}_{c}", synthesize(sharp, rng, cfg), sharp


def build_embedded(root: str | os.PathLike | None = None, splits=("train", "val", "test"),
                   n_dead_leaves: int = 24, progress: bool = True) -> Path:
    """Write the embedded default as paired folders; skips a split already built with the same
    settings (a stamp file records them)."""
    from runtime.cache import cache_lock
    root = Path(root) if root else default_root()
    # Processes sharing the cache (the test suite's workers, two commands started together)
    # each built the same split, writing the same files: the second waits, then finds the
    # first's stamp. A folder the caller names is theirs: no lock file beside it.
    shared = root == default_root()
    try:
        with (cache_lock(root, _note if progress else _quiet, "building the embedded data set")
              if shared else contextlib.nullcontext()):
            _build(root, splits, n_dead_leaves, progress)
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        # A cache another user made (a team's shared ~/.cache) said only the path it was
        # refused, which read as the caller's own output; a SourceError is said as it is.
        from runtime.output_paths import cannot_write
        from .sources import SourceError
        where = Path(e.filename) if e.filename else root
        where = next((p for p in (where, *where.parents) if os.path.isdir(p)), where)
        hint = ("set SHARPEN_DATA to a folder this user can write, where it is built once"
                if root == default_root() else "give it a folder this user can write")
        raise SourceError(f"the embedded data set cannot be built in {root}: "
                          f"{cannot_write('', where, e).removeprefix(': ')}: {hint}") from None
    return root


def _note(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _quiet(msg: str) -> None:
    pass


def _build(root: Path, splits, n_dead_leaves: int, progress: bool) -> None:
    for split in splits:
        d = root / split
        stamp = d / "embedded.json"
        settings = {"version": VERSION, "blur": asdict(EMBEDDED_BLUR),
                    "n_dead_leaves": n_dead_leaves}
        settings["blur"]["size_range"] = list(settings["blur"]["size_range"])
        settings["blur"]["noise_sigma"] = list(settings["blur"]["noise_sigma"])
        settings["blur"]["jpeg_quality"] = list(settings["blur"]["jpeg_quality"])
        if stamp.exists() and json.loads(stamp.read_text()) == settings:
            continue
        items = blurred_pairs(split, EMBEDDED_BLUR, n_dead_leaves)
        if progress:
            from runtime.progress import progress as bar
            items = bar(items, desc=f"embedded {split}", unit="img")
        for name, blurred, sharp in items:
            write_image(d / "input" / f"{name}.png", blurred)
            write_image(d / "target" / f"{name}.png", sharp)
        # Atomic: runs sharing the cache (parallel test workers, two commands) read the stamp
        # while another writes it.
        atomic_write_json(stamp, settings, indent=1)
