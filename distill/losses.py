"""Training losses: Charbonnier, (1 - SSIM), frequency-domain L1, combined by weights."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import LossConfig


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


def _gaussian_kernel(size: int = 11, sigma: float = 1.5, device=None, dtype=None):
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_torch(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Differentiable mean SSIM over channels (Gaussian window 11, sigma 1.5, valid region), the
    Wang et al. definition scikit-image implements with gaussian_weights=True."""
    c = pred.shape[1]
    k = _gaussian_kernel(device=pred.device, dtype=pred.dtype).expand(c, 1, 11, 11)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x = F.conv2d(pred, k, groups=c)
    mu_y = F.conv2d(target, k, groups=c)
    sxx = F.conv2d(pred * pred, k, groups=c) - mu_x ** 2
    syy = F.conv2d(target * target, k, groups=c) - mu_y ** 2
    sxy = F.conv2d(pred * target, k, groups=c) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    return s.mean()


def frequency_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    fp = torch.fft.rfft2(pred.float(), norm="ortho")
    ft = torch.fft.rfft2(target.float(), norm="ortho")
    return (fp - ft).abs().mean()


def combined_loss(pred: torch.Tensor, target: torch.Tensor, gt: torch.Tensor | None,
                  w: LossConfig) -> tuple[torch.Tensor, dict[str, float]]:
    terms: dict[str, torch.Tensor] = {}
    if w.pixel:
        terms["pixel"] = w.pixel * charbonnier(pred, target)
    if w.ssim:
        terms["ssim"] = w.ssim * (1 - ssim_torch(pred.float(), target.float()))
    if w.gt and gt is not None:
        terms["gt"] = w.gt * charbonnier(pred, gt)
    if w.gt_ssim and gt is not None:
        terms["gt_ssim"] = w.gt_ssim * (1 - ssim_torch(pred.float(), gt.float()))
    if w.freq:
        terms["freq"] = w.freq * frequency_l1(pred, target)
    if not terms:
        raise ValueError("all loss weights are zero: nothing to train on")
    total = sum(terms.values())
    return total, {k: float(v.detach()) for k, v in terms.items()}
