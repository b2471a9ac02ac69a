"""On-the-fly synthetic training pairs: random crop of a sharp image, fresh camera-shake blur.

Every item is a pure function of (seed, index), so a run resumed at step N, or sharded over
several ranks, sees exactly the batches an uninterrupted run would have seen."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .blur import BlurConfig, synthesize
from .scene_blur import SceneBlurConfig, synthesize_pair


class SyntheticBlurDataset(Dataset):
    def __init__(self, sharp: list[np.ndarray], crop: int = 192,
                 blur: BlurConfig | SceneBlurConfig | None = None,
                 seed: int = 0, length: int = 10**9, brightness: float = 0.1):
        if not sharp:
            raise ValueError("SyntheticBlurDataset needs at least one sharp image")
        self.sharp, self.crop, self.blur = sharp, crop, blur or BlurConfig()
        self.seed, self.length, self.brightness = seed, length, brightness
        # Room for the blur to come in from outside the crop, as it does in a real frame.
        self.margin = self.blur.size_range[1] if isinstance(self.blur, BlurConfig) else 48

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng([self.seed, i])
        img = self.sharp[int(rng.integers(len(self.sharp)))]
        big = self.crop + 2 * self.margin
        h, w = img.shape[:2]
        if h < big or w < big:
            img = np.pad(img, ((0, max(0, big - h)), (0, max(0, big - w)), (0, 0)), mode="reflect")
            h, w = img.shape[:2]
        y, x = int(rng.integers(0, h - big + 1)), int(rng.integers(0, w - big + 1))
        patch = img[y:y + big, x:x + big]
        if rng.uniform() < 0.5:
            patch = patch[:, ::-1]
        if rng.uniform() < 0.5:
            patch = patch[::-1]
        patch = np.ascontiguousarray(np.rot90(patch, int(rng.integers(4))))
        if self.brightness:
            patch = np.clip(patch * rng.uniform(1 - self.brightness, 1 + self.brightness), 0, 1)
        if isinstance(self.blur, SceneBlurConfig):
            blurred, patch = synthesize_pair(patch.astype(np.float32), rng, self.blur)
        else:
            blurred = synthesize(patch.astype(np.float32), rng, self.blur)
        m = self.margin
        sl = (slice(m, m + self.crop), slice(m, m + self.crop))

        def t(a):
            return torch.from_numpy(np.ascontiguousarray(a[sl].transpose(2, 0, 1))).float()

        return {"input": t(blurred), "target": t(patch), "name": f"synthetic_{i}"}
