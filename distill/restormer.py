"""Restormer (Zamir et al., CVPR 2022), written from the paper.

Module and parameter names follow the official implementation so that the official
`motion_deblurring.pth` loads with strict key matching (see tests/test_restormer.py, which checks
every name and shape against the list of the official checkpoint).

Building blocks:
- MDTA: multi-Dconv-head transposed attention. Attention is computed across channels (a C x C map
  per head) instead of across pixels, so cost is linear in the number of pixels.
- GDFN: gated-Dconv feed-forward network, GELU(x1) * x2 after a depthwise 3x3.
- Pixel-unshuffle / pixel-shuffle down/up-sampling in a 4-level encoder-decoder, then a
  refinement stage at full resolution and a global residual.
"""
from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange


@dataclass(frozen=True)
class RestormerConfig:
    inp_channels: int = 3
    out_channels: int = 3
    dim: int = 48
    num_blocks: tuple[int, ...] = (4, 6, 6, 8)
    num_refinement_blocks: int = 4
    heads: tuple[int, ...] = (1, 2, 4, 8)
    ffn_expansion_factor: float = 2.66
    bias: bool = False
    LayerNorm_type: str = "WithBias"
    dual_pixel_task: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        d["num_blocks"] = list(self.num_blocks)
        d["heads"] = list(self.heads)
        return d


# Named configs. `motion-deblur` is the official one (26.1 M parameters); the small ones make CPU
# training and inference practical.
CONFIGS: dict[str, RestormerConfig] = {
    "motion-deblur": RestormerConfig(),
    "small": RestormerConfig(dim=24, num_blocks=(2, 2, 2, 3), num_refinement_blocks=1,
                             heads=(1, 2, 4, 8), ffn_expansion_factor=2.0),
    "tiny": RestormerConfig(dim=16, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1,
                            heads=(1, 2, 2, 4)),
}


def get_config(name_or_dict: str | dict) -> RestormerConfig:
    if isinstance(name_or_dict, dict):
        d = dict(name_or_dict)
        for k in ("num_blocks", "heads"):
            if k in d:
                d[k] = tuple(d[k])
        return RestormerConfig(**d)
    if name_or_dict not in CONFIGS:
        hint = ("; a YAML file is a training config, for `sharpen train-teacher/distill/train "
                "--config`" if str(name_or_dict).endswith((".yaml", ".yml")) else "")
        from runtime.suggest import did_you_mean
        meant = did_you_mean(str(name_or_dict), CONFIGS)
        raise ValueError(f"unknown Restormer config {name_or_dict!r}{meant}; choose from "
                         f"{', '.join(sorted(CONFIGS))}{hint}")
    return CONFIGS[name_or_dict]


def to_3d(x: torch.Tensor) -> torch.Tensor:
    return rearrange(x, "b c h w -> b (h w) c")


def to_4d(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return rearrange(x, "b (h w) c -> b c h w", h=h, w=w)


class BiasFreeLayerNorm(nn.Module):
    def __init__(self, normalized_shape):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        self.weight = nn.Parameter(torch.ones(normalized_shape))

    def forward(self, x):
        sigma = x.var(-1, keepdim=True, unbiased=False)
        return x / torch.sqrt(sigma + 1e-5) * self.weight


class WithBiasLayerNorm(nn.Module):
    def __init__(self, normalized_shape):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))

    def forward(self, x):
        mu = x.mean(-1, keepdim=True)
        sigma = x.var(-1, keepdim=True, unbiased=False)
        return (x - mu) / torch.sqrt(sigma + 1e-5) * self.weight + self.bias


class LayerNorm(nn.Module):
    """Channel LayerNorm on NCHW maps (normalises over C at each pixel)."""

    def __init__(self, dim: int, kind: str):
        super().__init__()
        self.body = BiasFreeLayerNorm(dim) if kind == "BiasFree" else WithBiasLayerNorm(dim)

    def forward(self, x):
        h, w = x.shape[-2:]
        return to_4d(self.body(to_3d(x)), h, w)


class FeedForward(nn.Module):
    """GDFN: 1x1 expand to 2 * hidden, depthwise 3x3, GELU gate, 1x1 project."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool):
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, kernel_size=3, stride=1, padding=1,
                                groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x):
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class Attention(nn.Module):
    """MDTA: queries/keys/values from 1x1 + depthwise 3x3 convs; attention over channels."""

    def __init__(self, dim: int, num_heads: int, bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, stride=1, padding=1,
                                    groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        q, k, v = (rearrange(t, "b (head c) h w -> b head c (h w)", head=self.num_heads)
                   for t in (q, k, v))
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1)) * self.temperature
        out = attn.softmax(dim=-1) @ v
        out = rearrange(out, "b head c (h w) -> b (head c) h w", head=self.num_heads, h=h, w=w)
        return self.project_out(out)


class TransformerBlock(nn.Module):
    def __init__(self, dim, num_heads, ffn_expansion_factor, bias, layernorm_type):
        super().__init__()
        self.norm1 = LayerNorm(dim, layernorm_type)
        self.attn = Attention(dim, num_heads, bias)
        self.norm2 = LayerNorm(dim, layernorm_type)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class OverlapPatchEmbed(nn.Module):
    def __init__(self, in_c=3, embed_dim=48, bias=False):
        super().__init__()
        self.proj = nn.Conv2d(in_c, embed_dim, kernel_size=3, stride=1, padding=1, bias=bias)

    def forward(self, x):
        return self.proj(x)


class Downsample(nn.Module):
    def __init__(self, n_feat):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat // 2, 3, 1, 1, bias=False),
                                  nn.PixelUnshuffle(2))

    def forward(self, x):
        return self.body(x)


class Upsample(nn.Module):
    def __init__(self, n_feat):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat * 2, 3, 1, 1, bias=False),
                                  nn.PixelShuffle(2))

    def forward(self, x):
        return self.body(x)


class Restormer(nn.Module):
    """Input and output: NCHW RGB in [0, 1]; H and W must be multiples of `multiple` (8)."""

    multiple = 8

    def __init__(self, config: RestormerConfig | None = None):
        super().__init__()
        cfg = config or RestormerConfig()
        self.config = cfg
        dim, heads, nb = cfg.dim, cfg.heads, cfg.num_blocks

        def stage(d, n, h):
            return nn.Sequential(*[TransformerBlock(d, h, cfg.ffn_expansion_factor, cfg.bias,
                                                    cfg.LayerNorm_type) for _ in range(n)])

        self.patch_embed = OverlapPatchEmbed(cfg.inp_channels, dim)
        self.encoder_level1 = stage(dim, nb[0], heads[0])
        self.down1_2 = Downsample(dim)
        self.encoder_level2 = stage(dim * 2, nb[1], heads[1])
        self.down2_3 = Downsample(dim * 2)
        self.encoder_level3 = stage(dim * 4, nb[2], heads[2])
        self.down3_4 = Downsample(dim * 4)
        self.latent = stage(dim * 8, nb[3], heads[3])
        self.up4_3 = Upsample(dim * 8)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, kernel_size=1, bias=cfg.bias)
        self.decoder_level3 = stage(dim * 4, nb[2], heads[2])
        self.up3_2 = Upsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, kernel_size=1, bias=cfg.bias)
        self.decoder_level2 = stage(dim * 2, nb[1], heads[1])
        self.up2_1 = Upsample(dim * 2)
        # Level 1 keeps the concatenated 2*dim channels (no channel reduction), as in the paper.
        self.decoder_level1 = stage(dim * 2, nb[0], heads[0])
        self.refinement = stage(dim * 2, cfg.num_refinement_blocks, heads[0])
        if cfg.dual_pixel_task:
            self.skip_conv = nn.Conv2d(dim, dim * 2, kernel_size=1, bias=cfg.bias)
        self.output = nn.Conv2d(dim * 2, cfg.out_channels, kernel_size=3, stride=1, padding=1,
                                bias=cfg.bias)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        if inp.shape[-2] % self.multiple or inp.shape[-1] % self.multiple:
            raise ValueError(f"Restormer needs H and W divisible by {self.multiple}, got "
                             f"{tuple(inp.shape[-2:])}; pad first (distill.tiling does)")
        e1 = self.encoder_level1(self.patch_embed(inp))
        e2 = self.encoder_level2(self.down1_2(e1))
        e3 = self.encoder_level3(self.down2_3(e2))
        lat = self.latent(self.down3_4(e3))
        d3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(lat), e3], 1)))
        d2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(d3), e2], 1)))
        d1 = self.decoder_level1(torch.cat([self.up2_1(d2), e1], 1))
        d1 = self.refinement(d1)
        if self.config.dual_pixel_task:
            return self.output(d1 + self.skip_conv(e1))
        return self.output(d1) + inp


def build_restormer(config: str | dict | RestormerConfig = "motion-deblur") -> Restormer:
    if not isinstance(config, RestormerConfig):
        config = get_config(config)
    return Restormer(config)
