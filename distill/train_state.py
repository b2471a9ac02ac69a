"""The training state besides the weights and the optimizer: the learning-rate schedule (linear
warmup, cosine decay), the EMA of the weights, and the RNGs a checkpoint carries to resume
exactly."""
from __future__ import annotations

import math
import random
from typing import Optional

import numpy as np
import torch
import torch.nn as nn

from .config import TrainConfig


def lr_lambda(cfg: TrainConfig):
    o = cfg.optim

    def f(step: int) -> float:
        if step < o.warmup_steps:
            return (step + 1) / max(1, o.warmup_steps)
        t = (step - o.warmup_steps) / max(1, o.steps - o.warmup_steps)
        return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1)))

    return f


def warmup_problem(cfg: TrainConfig) -> Optional[str]:
    """What a warmup as long as the run does: `sharpen distill optim.steps=150` with the
    default optim.warmup_steps=200 trained the whole run on the rising ramp (its last step at
    0.75 of optim.lr) and never on the cosine decay, without a word."""
    o = cfg.optim
    if o.warmup_steps < o.steps or o.warmup_steps <= 1:
        return None
    reached = o.steps / o.warmup_steps   # the schedule's factor at the last step (steps - 1)
    return (f"optim.warmup_steps={o.warmup_steps} is not below optim.steps={o.steps}: the "
            f"learning rate rises for the whole run, to {reached:.2g} x optim.lr={o.lr:g} at its "
            "last step, and never decays; set optim.warmup_steps lower (e.g. "
            f"optim.warmup_steps={max(1, o.steps // 20)}"
            f"{', a twentieth of the steps' if o.steps >= 20 else ''})")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    random.setstate((3, tuple(s["python"]), None))
    if s.get("cuda") and torch.cuda.is_available():
        # A checkpoint from a box with more GPUs holds a state per GPU there; set_rng_state_all
        # would stop at the first device this one lacks.
        torch.cuda.set_rng_state_all(s["cuda"][:torch.cuda.device_count()])


def ema_decay_at(decay: float, updates: int, warmup: bool = True) -> float:
    """EMA decay for the `updates`-th update (1-based)."""
    return min(decay, (1 + updates) / (10 + updates)) if warmup else decay


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for e, p in zip(ema.state_dict().values(), model.state_dict().values()):
        if e.dtype.is_floating_point:
            e.mul_(decay).add_(p.detach(), alpha=1 - decay)
        else:
            e.copy_(p)
