"""Student CNNs and their registry.

Every student maps NCHW RGB in [0, 1] to NCHW RGB (not clamped; clamp at the output) and needs H
and W divisible by its `multiple`; `run_padded` pads (reflect) and crops back so any size works.
Only operators that export cleanly to ONNX, full-integer TFLite and TensorRT are used: conv
(incl. depthwise), ReLU, max-pool, nearest resize, pixel (un)shuffle, add, concat, and the
channel split, sigmoid and multiply of a gate.

Registry in the style of timm: `create_student(name, **overrides)`, `list_students()`;
`register()` adds a student, from a module of one's own too (named in SHARPEN_STUDENTS).
"""
from __future__ import annotations

import inspect
import math
import os
import re
import sys
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from runtime.tiling import GLOBAL_FIELD


class SeparableConv2d(nn.Sequential):
    """Keras SeparableConv2D: depthwise 3x3 then pointwise 1x1 (bias on the pointwise only)."""

    def __init__(self, cin: int, cout: int, k: int = 3):
        super().__init__(
            nn.Conv2d(cin, cin, k, padding=k // 2, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, bias=True),
        )


class SeedStudent(nn.Module):
    """The seed project's student, exactly as described:

    SepConv(32) -> SepConv(64) -> MaxPool(2) -> SepConv(128) x 2 -> UpSampling(2)
    -> SepConv(64) -> SepConv(32) -> Conv2D(3), ReLU after every hidden layer.

    residual: output = input + prediction. skip: add the 64-channel encoder features to the
    decoder's 64-channel features (U-Net style). Both off in the exact seed configuration.
    """

    def __init__(self, residual: bool = False, skip: bool = False):
        super().__init__()
        self.residual, self.skip = residual, skip
        self.multiple = 2
        self.enc1 = SeparableConv2d(3, 32)
        self.enc2 = SeparableConv2d(32, 64)
        self.pool = nn.MaxPool2d(2)
        self.mid1 = SeparableConv2d(64, 128)
        self.mid2 = SeparableConv2d(128, 128)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec1 = SeparableConv2d(128, 64)
        self.dec2 = SeparableConv2d(64, 32)
        self.head = nn.Conv2d(32, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = F.relu(self.enc2(F.relu(self.enc1(x))))
        m = F.relu(self.mid2(F.relu(self.mid1(self.pool(e)))))
        d = F.relu(self.dec1(self.up(m)))
        if self.skip:
            d = d + e
        y = self.head(F.relu(self.dec2(d)))
        return x + y if self.residual else y


class InvertedResidual(nn.Module):
    """Depthwise kxk -> 1x1 expand -> ReLU -> 1x1 project, plus identity."""

    def __init__(self, c: int, expand: int = 2, k: int = 3):
        super().__init__()
        self.dw = nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=True)
        self.pw1 = nn.Conv2d(c, c * expand, 1)
        self.pw2 = nn.Conv2d(c * expand, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pw2(F.relu(self.pw1(self.dw(x))))


class FastStudent(nn.Module):
    """Real-time student: all work at 1/`scale` resolution, a second stage at 1/(2*scale) for a
    large receptive field, pixel-shuffle back, global residual.

    PixelUnshuffle(scale) -> 1x1 (3*s^2 -> width) -> `blocks` inverted residuals
    -> [MaxPool(2) -> `low_blocks` inverted residuals -> nearest x2, add]
    -> `blocks` inverted residuals -> 1x1 (width -> 3*s^2) -> PixelShuffle(scale) -> + input.

    Full-resolution tensors are touched only by the (un)shuffles and the final add, which is what
    makes 1080p cheap; the low-resolution stage with kernel `k` sees blur tens of pixels long.
    Keep `low_k` <= 5 for TFLite: 7x7 depthwise runs several times slower in TFLite INT8
    (XNNPACK) on CPU (measurements in models/student-fast.md).

    `edge` > 0 adds a linear path around the network at 1/`scale` resolution: depthwise
    `edge` x `edge` then 1x1 (3*s^2 -> 3*s^2) on the unshuffled input, added to the head's
    output before the pixel shuffle. The main path predicts each s x s block's 3*s^2 values
    from `width` < 3*s^2 features, so it cannot express even a plain sharpening filter at full
    detail; this path can, cheaply, at 1/`scale` resolution (the same filter as a
    full-resolution 3x3 conv is slow in XNNPACK, which handles 3-channel tensors poorly).
    A fixed linear filter sharpens lightly blurred blocks as much as heavily blurred ones, so
    `edge_width` > 0 makes the path adaptive: ReLU(1x1(dw(u)) + 1x1(features)) with
    `edge_width` channels, then 1x1 to 3*s^2: the network's features decide, per block, how
    much of the input's detail to add.

    `detail` > 0 adds a refinement at 1/2 resolution on the output: PixelUnshuffle(2) -> 1x1
    (12 -> detail) -> `detail_blocks` inverted residuals -> 1x1 (-> 12) -> PixelShuffle(2), added.
    The 1/`scale` path rebuilds each scale x scale block from `width` features, which limits
    how sharp an edge inside a block can get; the half-resolution stage restores that detail.
    """

    def __init__(self, scale: int = 4, width: int = 32, blocks: int = 2, low_blocks: int = 3,
                 expand: int = 2, k: int = 3, low_k: int = 5, detail: int = 0,
                 detail_blocks: int = 1, edge: int = 0, edge_width: int = 0, deep: int = 0,
                 deep_blocks: int = 2):
        super().__init__()
        if not 0 <= deep <= 4:
            raise ValueError(f"deep={deep}: between 0 and 4 extra pyramid levels")
        self.scale, self.multiple = scale, scale * 2 ** (1 + deep)
        self.unshuffle = nn.PixelUnshuffle(scale)
        self.stem = nn.Conv2d(3 * scale * scale, width, 1)
        self.enc = nn.Sequential(*[InvertedResidual(width, expand, k) for _ in range(blocks)])
        self.pool = nn.MaxPool2d(2)
        self.low = nn.Sequential(*[InvertedResidual(width, expand, low_k)
                                   for _ in range(low_blocks)])
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        # Levels below 1/(2*scale): each halves the resolution again, so a few cheap blocks
        # there reach blur hundreds of pixels long. Their output projection starts at zero, so
        # a level added to a trained model (`sharpen grow ... deep=N`) changes nothing at first.
        self.deep = nn.ModuleList(nn.Sequential(*[InvertedResidual(width, expand, low_k)
                                                  for _ in range(deep_blocks)])
                                  for _ in range(deep))
        self.deep_out = nn.ModuleList(nn.Conv2d(width, width, 1) for _ in range(deep))
        for conv in self.deep_out:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.dec = nn.Sequential(*[InvertedResidual(width, expand, k) for _ in range(blocks)])
        self.head = nn.Conv2d(width, 3 * scale * scale, 1)
        self.shuffle = nn.PixelShuffle(scale)
        if edge and edge % 2 == 0:
            raise ValueError(f"edge={edge}: the kernel size must be odd")
        if edge_width and not edge:
            raise ValueError(f"edge_width={edge_width} needs edge > 0 (the path's kernel size)")
        self.edge, self.edge_width = edge, edge_width
        if edge:
            c = 3 * scale * scale
            self.edge_dw = nn.Conv2d(c, c, edge, padding=edge // 2, groups=c, bias=False)
            nn.init.dirac_(self.edge_dw.weight, groups=c)  # starts as a plain 1x1 skip
            if edge_width:
                self.edge_in = nn.Conv2d(c, edge_width, 1)
                self.edge_gate = nn.Conv2d(width, edge_width, 1, bias=False)
            self.edge_pw = nn.Conv2d(edge_width or c, c, 1)
            nn.init.zeros_(self.edge_pw.weight)
            nn.init.zeros_(self.edge_pw.bias)
        self.detail = detail
        if detail:
            self.detail_stem = nn.Conv2d(12, detail, 1)
            self.detail_blocks = nn.Sequential(*[InvertedResidual(detail, expand, k)
                                                 for _ in range(detail_blocks)])
            self.detail_head = nn.Conv2d(detail, 12, 1)
            nn.init.zeros_(self.detail_head.weight)
            nn.init.zeros_(self.detail_head.bias)
        # Start as the identity (output = input): training then only has to learn the correction.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.unshuffle(x)
        f = self.enc(F.relu(self.stem(u)))
        f = f + self.up(self._descend(self.low(self.pool(f)), 0))
        f = self.dec(f)
        r = self.head(f)
        if self.edge:
            e = self.edge_dw(u)
            if self.edge_width:
                e = F.relu(self.edge_in(e) + self.edge_gate(f))
            r = r + self.edge_pw(e)
        y = x + self.shuffle(r)
        if self.detail:
            g = self.detail_blocks(F.relu(self.detail_stem(F.pixel_unshuffle(y, 2))))
            y = y + F.pixel_shuffle(self.detail_head(g), 2)
        return y

    def _descend(self, x: torch.Tensor, i: int) -> torch.Tensor:
        if i >= len(self.deep):
            return x
        y = self._descend(self.deep[i](self.pool(x)), i + 1)
        return x + self.up(self.deep_out[i](y))


class Gate(nn.Module):
    """Split the channels in two halves a, b; a * sigmoid(b) (a GLU). NAFNet's SimpleGate is a * b;
    without NAFNet's LayerNorms that product grows without bound and training diverged (NaN
    after ~1000 steps); the sigmoid bounds it, and its fixed [0, 1] range quantises well."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return a * torch.sigmoid(b)


class GatedBlock(nn.Module):
    """A NAFNet block without its LayerNorms and channel attention, with a bounded gate:
    x + 1x1(gate(dw kxk(1x1 c -> 2c (x)))), then x + 1x1(gate(1x1 c -> 2c (x))).

    No normalisation: LayerNorm over channels breaks full-integer TFLite and needs care in FP16
    TensorRT. NAFNet's learned residual scales are replaced by zero-initialised output
    projections (the block starts as the identity), which keeps training stable without a norm
    and leaves nothing to fold at export. No channel attention: its global average makes every
    output pixel depend on the whole frame, so tiles and whole frames would disagree.
    """

    def __init__(self, c: int, k: int = 3):
        super().__init__()
        self.pw1 = nn.Conv2d(c, 2 * c, 1)
        self.dw = nn.Conv2d(2 * c, 2 * c, k, padding=k // 2, groups=2 * c)
        self.gate = Gate()
        self.pw2 = nn.Conv2d(c, c, 1)
        self.ffn1 = nn.Conv2d(c, 2 * c, 1)
        self.ffn2 = nn.Conv2d(c, c, 1)
        for conv in (self.pw2, self.ffn2):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pw2(self.gate(self.dw(self.pw1(x))))
        return x + self.ffn2(self.gate(self.ffn1(x)))


class EdgeStudent(nn.Module):
    """Student for Jetson-class accelerators: a NAFNet-style U-Net that does all its work at
    1/`scale` resolution and below.

    PixelUnshuffle(scale) -> 1x1 (3*s^2 -> width) -> encoder levels (GatedBlocks, then
    PixelUnshuffle(2) + 1x1 to twice the channels, i.e. a 2x2 stride-2 conv) -> `middle` blocks
    at the lowest level -> decoder levels (1x1 + PixelShuffle(2), add the encoder's skip,
    GatedBlocks) -> 1x1 (width -> 3*s^2) -> PixelShuffle(scale) -> + input.

    With `enc` of length L the lowest level is 1/(scale * 2^L) of the frame (1/32 for scale 4,
    L = 3): a few 3x3 convolutions there see camera shake hundreds of pixels long. Strided convs
    are written as pixel-unshuffle + 1x1 so that every op maps 1:1 to TFLite and TensorRT.

    The detail path (`detail` > 0 channels) is FastStudent's adaptive input path: the unshuffled
    input, depthwise 3x3, mixed with the decoder's features, decides per pixel how much of the
    input's high frequencies to add back; at 1/`scale` resolution it still addresses every
    full-resolution pixel (3*s^2 channels), cheaply.
    """

    def __init__(self, scale: int = 4, width: int = 32, enc: tuple[int, ...] = (2, 2, 4),
                 middle: int = 8, dec: tuple[int, ...] = (2, 2, 2), k: int = 3,
                 detail: int = 32):
        super().__init__()
        enc, dec = tuple(enc), tuple(dec)
        if len(enc) != len(dec) or not enc:
            raise ValueError(f"enc={list(enc)} and dec={list(dec)}: one entry per level, "
                             "the same number of levels (at least one) in both")
        if width < 1 or scale < 1 or k % 2 == 0:
            raise ValueError(f"width={width}, scale={scale}, k={k}: positive, and k odd")
        self.scale, self.multiple = scale, scale * 2 ** len(enc)
        c0 = 3 * scale * scale
        self.unshuffle, self.shuffle = nn.PixelUnshuffle(scale), nn.PixelShuffle(scale)
        self.stem = nn.Conv2d(c0, width, 1)
        chans = [width * 2 ** i for i in range(len(enc) + 1)]
        self.encoders = nn.ModuleList(nn.Sequential(*[GatedBlock(chans[i], k) for _ in range(n)])
                                      for i, n in enumerate(enc))
        self.downs = nn.ModuleList(nn.Conv2d(4 * chans[i], chans[i + 1], 1)
                                   for i in range(len(enc)))
        self.middle = nn.Sequential(*[GatedBlock(chans[-1], k) for _ in range(middle)])
        self.ups = nn.ModuleList(nn.Conv2d(chans[i + 1], 4 * chans[i], 1)
                                 for i in range(len(dec)))
        self.decoders = nn.ModuleList(nn.Sequential(*[GatedBlock(chans[i], k) for _ in range(n)])
                                      for i, n in enumerate(dec))
        self.head = nn.Conv2d(width, c0, 1)
        self.detail = detail
        if detail:
            self.detail_dw = nn.Conv2d(c0, c0, 3, padding=1, groups=c0, bias=False)
            nn.init.dirac_(self.detail_dw.weight, groups=c0)
            self.detail_in = nn.Conv2d(c0, detail, 1)
            self.detail_gate = nn.Conv2d(width, detail, 1, bias=False)
            self.detail_out = nn.Conv2d(detail, c0, 1)
            nn.init.zeros_(self.detail_out.weight)
            nn.init.zeros_(self.detail_out.bias)
        # Start as the identity (output = input): training only has to learn the correction.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.unshuffle(x)
        f = self.stem(u)
        skips = []
        for blocks, down in zip(self.encoders, self.downs):
            f = blocks(f)
            skips.append(f)
            f = down(F.pixel_unshuffle(f, 2))
        f = self.middle(f)
        for i in reversed(range(len(self.decoders))):
            f = self.decoders[i](F.pixel_shuffle(self.ups[i](f), 2) + skips[i])
        r = self.head(f)
        if self.detail:
            e = F.relu(self.detail_in(self.detail_dw(u)) + self.detail_gate(f))
            r = r + self.detail_out(e)
        return x + self.shuffle(r)


@dataclass(frozen=True)
class StudentSpec:
    name: str
    builder: Callable[..., nn.Module]
    defaults: dict
    description: str
    module: str = __name__   # the one that called register(), not the builder's own
    keras_twin: Callable | None = None   # see register()


_REGISTRY: dict[str, StudentSpec] = {}

# Names a command line or a checkpoint can carry as they are: no "." (`sharpen models my.net`
# and `--weights` read a suffix as a file), no "," (lists of names), no space.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


class RegistryError(ValueError):
    """A name register() cannot take."""


def register(name: str, builder: Callable[..., nn.Module], description: str, *,
             keras_twin: Callable | None = None, **defaults) -> None:
    """Add a student: `builder(**defaults, **overrides)` returns an nn.Module mapping NCHW RGB
    to the same shape (checked when it is built), with H and W a multiple of its attribute
    `multiple` (default 1). A module outside the project that calls this is found by every
    command when named in SHARPEN_STUDENTS (see `import_student_modules`).
    keras_twin(model, batch) -> keras.Model, for TFLite export: the student (eval mode, on the
    CPU) rebuilt by hand in Keras with its weights, input `keras.Input((None, None, 3),
    batch_size=batch)` NHWC RGB; without it the student is rebuilt from its torch.fx graph
    (`optimize/keras_student.py`). The export checks it computes what the student does."""
    if keras_twin is not None and not callable(keras_twin):
        raise RegistryError(f"student {name!r}: keras_twin={keras_twin!r} is not a function "
                            "(model, batch) -> keras.Model")
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name == "restormer":
        raise RegistryError(f"student name {name!r}: use letters, digits, '-' and '_' (no '.', "
                            "',' or space), and not restormer (the teacher)")
    # The caller, not builder.__module__: a variant of FastStudent registered elsewhere is that
    # module's (its checkpoints name it), and may not replace `fast`.
    module = sys._getframe(1).f_globals.get("__name__", "?")
    old = _REGISTRY.get(name)
    if old is not None and old.module != module:
        # A script run as __main__ and imported again by name (SHARPEN_STUDENTS naming it, for
        # its loader workers and ranks) registers the same class twice: the module name stays.
        again = "__main__" in (old.module, module) and __name__ not in (old.module, module) and (
            getattr(old.builder, "__qualname__", 0) == getattr(builder, "__qualname__", 1))
        if not again:
            raise RegistryError(f"student name {name!r} is already registered (by "
                                f"{old.module}); {module} must choose another")
        module = module if old.module == "__main__" else old.module
    _REGISTRY[name] = StudentSpec(name, builder, defaults, description, module, keras_twin)


register("seed", SeedStudent, "the seed project's separable CNN, exact layout")
register("seed-residual", SeedStudent, "seed layout + global residual + encoder-decoder skip",
         residual=True, skip=True)
register("fast", FastStudent,
         "pixel-unshuffle x4, width 32, 1/8-res stage, adaptive input path (about 10 fps at "
         "1080p in TFLite INT8 on 2 x86 cores)",
         scale=4, width=32, blocks=2, low_blocks=3, edge=3, edge_width=32)
register("fast-plain", FastStudent, "fast without the input path (the `fast` shipped before it)",
         scale=4, width=32, blocks=2, low_blocks=3, edge=0, edge_width=0)
register("fast-detail", FastStudent,
         "fast-plain + 1/2-res detail refinement of its output (width 8)",
         scale=4, width=32, blocks=2, low_blocks=3, detail=8, detail_blocks=1)
register("fast-wide", FastStudent, "pixel-unshuffle x4, width 48, deeper",
         scale=4, width=48, blocks=3, low_blocks=4)
register("edge", EdgeStudent,
         "NAFNet-style gated U-Net at 1/4 res down to 1/32, width 32 (Jetson-class, ~20 GMAC)",
         scale=4, width=32, enc=(2, 2, 4), middle=8, dec=(2, 2, 2), k=3, detail=32)
register("fast-s2", FastStudent, "pixel-unshuffle x2, width 24: finer detail, slower",
         scale=2, width=24, blocks=2, low_blocks=3)


_BUILT_IN = frozenset(_REGISTRY)

# Importable modules (their folder on PYTHONPATH), comma-separated, whose register() calls add
# students: a fresh process (every `sharpen` command, a DDP rank, a loader worker) knows only
# the built-in ones otherwise. Not read from checkpoints: those are untrusted input, and a
# checkpoint naming a module to import would run code of its choosing.
STUDENTS_ENV = "SHARPEN_STUDENTS"
# What the messages about a student not registered in this process advise.
OWN_STUDENT_HINT = f"a student of your own: name the module that registers it in {STUDENTS_ENV}"
_imported: set[str] = set()


def import_student_modules() -> None:
    """Import the modules named in SHARPEN_STUDENTS that are not imported yet."""
    import importlib

    from runtime.cli_errors import SharpenError
    value = os.environ.get(STUDENTS_ENV, "")
    for module in (m.strip() for m in value.split(",")):
        if not module or module in _imported:
            continue
        try:
            importlib.import_module(module)
        except ImportError as e:   # a typo, a folder not on the path, a package it lacks
            raise SharpenError(f"{STUDENTS_ENV}={value}: cannot import {module} ({e}); give "
                               "importable module names, comma-separated, with their folder "
                               "on PYTHONPATH") from e
        except RegistryError as e:   # the module's own bugs keep their tracebacks
            raise SharpenError(f"{STUDENTS_ENV}={value}: {module}: {e}") from e
        _imported.add(module)


def student_module(name: str) -> str | None:
    """The module that registered a student not built in, for a checkpoint to record."""
    module = _REGISTRY[name].module if name in _REGISTRY else None
    return None if name in _BUILT_IN or module == "__main__" else module


def keras_twin(model: nn.Module) -> Callable | None:
    """The hand-written Keras twin registered with the student `model` was built as."""
    spec = _REGISTRY.get(getattr(model, "arch_name", None))
    return spec.keras_twin if spec is not None else None


def list_students() -> list[str]:
    import_student_modules()
    return sorted(_REGISTRY)


def student_spec(name: str) -> StudentSpec:
    import_student_modules()
    if name not in _REGISTRY:
        raise ValueError(f"unknown student {name!r}; choose from {list_students()} (a student "
                         f"of your own: its module in {STUDENTS_ENV})")
    return _REGISTRY[name]


def create_student(name: str, **overrides) -> nn.Module:
    return _create(name, overrides)


def _create(name: str, overrides: dict, check_shape: bool = True) -> nn.Module:
    spec = student_spec(name)
    args = {**spec.defaults, **overrides}
    accepted = inspect.signature(spec.builder).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in accepted.values()):
        unknown = sorted(set(args) - set(accepted))
        if unknown:
            raise ValueError(f"student {name!r} has no argument {', '.join(map(repr, unknown))}"
                             f" (it takes: {', '.join(accepted)})")
    for key, value in args.items():
        if key in accepted:
            _check_arg(name, key, value, accepted[key].default, spec.module == __name__)
    model = spec.builder(**args)
    if check_shape:
        _check_shape(name, model)
    model.arch_name, model.arch_args = name, args
    return model


def _check_shape(name: str, model: nn.Module) -> None:
    """ValueError if the student's output is not its input's shape: a user's student that
    halved the frame failed in training deep inside the loss, in `sharpen models` inside
    the receptive-field probe. Shapes only (the meta device), at a size that is no square."""
    import copy

    m = int(getattr(model, "multiple", 1))
    h = m * -(-24 // m)
    x = torch.zeros(1, 3, h, h + m, device="meta")
    try:
        with torch.no_grad():
            y = copy.deepcopy(model).to("meta")(x)
    except NotImplementedError:
        return   # an op without a meta kernel: the first real forward pass tells
    except RuntimeError:
        # A size the student cannot take (pixel_unshuffle without `multiple`) passed, to fail
        # on the first frame of an odd size; an op the meta device lacks works on the CPU,
        # whose message is the one a frame would meet (the meta device's names no operator).
        cpu = copy.deepcopy(model).to_empty(device="cpu")
        try:
            with torch.no_grad():
                y = cpu(torch.zeros(x.shape))
        except RuntimeError as e:
            said = f"student {name!r} fails on a {'x'.join(map(str, x.shape))} input (" \
                   f"{str(e).splitlines()[0]})"
            # Only where a size of a larger multiple runs is `multiple` the cure: layers that
            # do not fit each other (8 channels into a conv of 4) fail at every size.
            big = m * 64 // math.gcd(m, 64)
            try:
                with torch.no_grad():
                    cpu(torch.zeros(1, 3, big, 2 * big))
            except RuntimeError:
                raise ValueError(f"{said}, at {big}x{2 * big} too") from None
            raise ValueError(f"{said}: if H and W must be multiples of a number, set the class "
                             f"attribute `multiple` to it (it is {m})") from None
    if not isinstance(y, torch.Tensor) or y.shape != x.shape:
        got = "x".join(map(str, y.shape)) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"student {name!r} maps a {'x'.join(map(str, x.shape))} input to "
                         f"{got}; a student must return the same shape as its input (N x 3 x "
                         f"H x W) for H and W multiples of its `multiple` ({m})")


# Sizes that no layer can be built with (a 0-wide convolution, a 0x0 kernel, no unshuffle).
_AT_LEAST_ONE = {"scale", "width", "k", "low_k", "expand"}
_MAX_INT = 4096   # far past any budget: a typo (width 32000) would otherwise exhaust memory


def _check_arg(name: str, key: str, value: object, default: object, sizes: bool) -> None:
    """ValueError naming the student and argument for a value of the wrong type or range
    (width='32' met a string-formatting TypeError, width=-1 a negative-dimension error from
    inside torch). The ranges (`sizes`) are the built-in students' layer sizes: a user's
    student's whole numbers mean what it says (shift=-1, seed=12345)."""
    where = f"student {name!r} argument {key}={value!r}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected a whole number")
        low = 1 if key in _AT_LEAST_ONE else 0
        if sizes and not low <= value <= _MAX_INT:
            raise ValueError(f"{where}: expected {low} to {_MAX_INT}")
    elif isinstance(default, tuple):
        if (not isinstance(value, (list, tuple)) or not value
                or not all(isinstance(v, int) and not isinstance(v, bool)
                           and 0 <= v <= _MAX_INT for v in value)):
            raise ValueError(f"{where}: expected a list of whole numbers from 0 to {_MAX_INT}, "
                             f"like {list(default)}")


# Registry defaults added after checkpoints had been shipped: a checkpoint that does not record
# one predates it and was trained without it.
_ADDED_LATER = {"edge": 0, "edge_width": 0, "deep": 0}


def student_from_saved_args(name: str, args: dict, layout_only: bool = False) -> nn.Module:
    """Rebuild `name` from the arguments a checkpoint recorded; options it predates stay off
    (see `_ADDED_LATER`), so older checkpoints keep loading when a registry default changes.
    `layout_only`: for the names and shapes of its weights alone (a probe on the meta device),
    without the forward pass checking its output's shape, which doubled a student's load."""
    spec = student_spec(name)
    missing = {k: v for k, v in _ADDED_LATER.items() if k in spec.defaults and k not in args}
    return _create(name, {**missing, **args}, check_shape=not layout_only)


def for_inference(model: nn.Module) -> nn.Module:
    """eval() and, on the CPU, channels-last weights: oneDNN then convolves without reordering
    each activation to its blocked layout and back, which at 1080p roughly halves both the time
    and the peak memory of eager inference (`run_padded` feeds it channels-last input)."""
    model = model.eval()
    if next(model.parameters()).device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
        model.channels_last_input = True
    return model


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Reflect-pad NCHW `x` on the bottom/right to a multiple of `multiple`, exactly as the
    runtime pads (numpy's reflect: repeated for pads longer than the image, a 1-pixel side
    repeated along its own axis), so PyTorch and the exported models see the same pixels even
    on frames smaller than the multiple."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if h == 1 and ph:
        x, ph = F.pad(x, (0, 0, 0, ph), mode="replicate"), 0
    if w == 1 and pw:
        x, pw = F.pad(x, (0, pw, 0, 0), mode="replicate"), 0
    while ph or pw:   # torch reflects at most size-1 pixels per call
        sh, sw = min(ph, x.shape[-2] - 1), min(pw, x.shape[-1] - 1)
        x = F.pad(x, (0, sw, 0, sh), mode="reflect")
        ph, pw = ph - sh, pw - sw
    return x


def run_padded(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run any-size NCHW input: reflect-pad to the model's multiple, crop the output back."""
    h, w = x.shape[-2:]
    x = pad_to_multiple(x, getattr(model, "multiple", 1))
    if getattr(model, "channels_last_input", False):
        x = x.contiguous(memory_format=torch.channels_last)
    return model(x)[..., :h, :w]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta_frame(model: nn.Module, h: int, w: int) -> tuple[nn.Module, torch.Tensor]:
    """A copy of `model` on the meta device (shapes only, no arithmetic) and one h x w frame
    padded to the model's multiple, to count what a forward pass does."""
    import copy

    from runtime.options import is_number

    # Checked here: torch's own complaint ("Kernel size can't be greater than actual input
    # size", "negative dimension") names neither argument.
    for name, v in (("h", h), ("w", w)):
        if not is_number(v) or v < 1:
            raise ValueError(f"{name} must be a frame size in pixels (an integer >= 1), "
                             f"got {v!r}")
    m = getattr(model, "multiple", 1)
    h, w = h + (-h) % m, w + (-w) % m
    return copy.deepcopy(model).to("meta"), torch.zeros(1, 3, h, w, device="meta")


def count_macs(model: nn.Module, h: int = 1080, w: int = 1920) -> int:
    """Multiply-accumulates of one h x w frame: every convolution (transposed, functional
    `F.conv2d` too) and matrix product (linear layers, attention), by torch's FLOP counter;
    hooks on nn.Conv2d missed the others in a student of one's own."""
    from torch.utils.flop_counter import FlopCounterMode

    model, x = _meta_frame(model, h, w)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() // 2   # the counter's FLOPs are 2 per MAC


def activation_bytes(model: nn.Module, h: int = 1080, w: int = 1920, bytes_per: int = 4) -> int:
    """Peak bytes of the activations alive at once in one forward pass of one h x w frame
    (batch 1, `bytes_per` a value: 4 for FP32), the frame in and out included, the weights
    not: what a device must hold, functional ops (torch.cat, x * y) counted as modules are.
    Freed as PyTorch frees them, a runtime's planner may reuse memory sooner or later."""
    return _activations(model, h, w, bytes_per).peak


def activation_traffic(model: nn.Module, h: int = 1080, w: int = 1920,
                       bytes_per: int = 4) -> int:
    """Bytes of every op's new output for one h x w frame (views none, an in-place op's
    none either): the activation traffic an accelerator moves through memory if nothing is
    fused, for a bandwidth estimate."""
    return _activations(model, h, w, bytes_per).written


def _activations(model: nn.Module, h: int, w: int, bytes_per: int):
    """A forward pass of one frame on the meta device counting every op's new storage: its
    `peak` alive at once (the frame in included) and what was `written` in all."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves
    import weakref

    class Count(TorchDispatchMode):
        """A storage is alive until the last tensor on it goes (views and in-place ops share
        it): weakref.finalize sees PyTorch free it."""

        def __init__(self, x: torch.Tensor):
            super().__init__()
            self.seen: weakref.WeakSet = weakref.WeakSet()
            self.live = self.peak = self.written = 0
            self.add(x)
            self.written = 0   # the frame in is read, not written

        def add(self, t: torch.Tensor) -> None:
            s = t.untyped_storage()
            if s not in self.seen:
                n = s.nbytes() // t.element_size() * bytes_per
                self.seen.add(s)
                self.live += n
                self.written += n
                self.peak = max(self.peak, self.live)
                weakref.finalize(s, self.free, n)

        def free(self, n: int) -> None:
            self.live -= n

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    self.add(t)
            return out

    model, x = _meta_frame(model, h, w)
    count = Count(x)
    with torch.no_grad(), count:
        model(x)
    return count


# By layout: a registry student's field depends on its architecture alone (the probe replaces
# the weights), and an export, a bench or `sharpen models` asked again for every model.
_FIELDS: dict[str, int] = {}


def receptive_field(model: nn.Module, size: int = 256) -> int:
    """Side in pixels of the input region that influences one output pixel at the centre,
    measured from the gradient with positive weights (no dead paths, no cancellation) on a
    random positive image (on a zero one, a gate's product x * f(x) passes no gradient to x's
    neighbours and max pooling's ties all go to one corner: `seed` measured 19 px, not 20);
    the probe grows until the field fits inside it, up to GLOBAL_FIELD (returned for a field
    still clipped there: global)."""
    import copy
    import json

    name, args = getattr(model, "arch_name", None), getattr(model, "arch_args", None)
    key = json.dumps([name, args, size], sort_keys=True, default=str) if name else None
    if key is None:
        return _probe_field(copy.deepcopy(model), size)
    if key not in _FIELDS:
        _FIELDS[key] = _probe_field(copy.deepcopy(model), size)
    return _FIELDS[key]


def _probe_field(net: nn.Module, size: int) -> int:
    net = net.float().eval()
    gen = torch.Generator().manual_seed(0)   # the same answer in every process
    with torch.no_grad():   # positive, scaled by fan-in so that gates' products stay finite
        for p in net.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_((torch.rand(p.shape, generator=gen) + 0.5) / (4 * fan_in) if p.dim() > 1
                    else p.fill_(0.01))
    m = int(getattr(net, "multiple", 1))
    size, thin = max(size, 4 * m), 4 * m
    # Two thin strips (one long across, one long down) instead of a size x size square: each
    # extent depends only on the kernels along its own axis, and the strips cost a fraction of
    # the square (the `edge` student's probe reaches 2048 px).
    while True:
        rf = max(_extent(net, thin, size, axis=1, gen=gen),
                 _extent(net, size, thin, axis=0, gen=gen))
        if rf <= size // 2:   # well inside the probe: not clipped by it
            return rf
        if size >= GLOBAL_FIELD:   # still clipped: global
            return GLOBAL_FIELD
        size *= 2


def _extent(net: nn.Module, h: int, w: int, axis: int, gen: torch.Generator) -> int:
    """Extent along `axis` (0 rows, 1 columns) of the inputs that reach the centre output pixel."""
    # In [0.25, 0.75]: positive activations everywhere (every ReLU passes), no ties.
    x = (torch.rand(1, 3, h, w, generator=gen) * 0.5 + 0.25).requires_grad_()
    run_padded(net, x)[0, :, h // 2, w // 2].sum().backward()
    hits = torch.nonzero(x.grad.abs().sum((0, 1)).sum(1 - axis) > 0)
    return int(hits.max() - hits.min() + 1) if len(hits) else 1
