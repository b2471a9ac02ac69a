"""The Keras (NHWC) rebuild of the students used for TFLite: weight layouts and the pixel
(un)shuffle channel permutation, checked against PyTorch (no training needed: FP32 paths)."""
from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional
tf = pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")

from distill.students import create_student  # noqa: E402
from optimize.keras_student import build_keras_student, torch_to_tf_channel_perm  # noqa: E402


def _seeded(name: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    model = create_student(name, **overrides)
    with torch.no_grad():  # non-zero weights and biases everywhere so a wrong order would show
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                if not m.weight.any():  # zero-initialised heads
                    m.weight.uniform_(-0.1, 0.1)
                if m.bias is not None:
                    m.bias.uniform_(-0.1, 0.1)
    return model.eval()


@pytest.mark.parametrize("r", [2, 4])
def test_channel_permutation_matches_pixel_unshuffle(r):
    x = torch.rand(1, 3, 4 * r, 6 * r)
    torch_s2d = torch.nn.functional.pixel_unshuffle(x, r)[0].permute(1, 2, 0).numpy()
    tf_s2d = tf.nn.space_to_depth(x.permute(0, 2, 3, 1).numpy(), r)[0].numpy()
    perm = torch_to_tf_channel_perm(3, r)
    np.testing.assert_array_equal(tf_s2d, torch_s2d[..., perm])
    # and the inverse: depth_to_space of TF-ordered channels == pixel_shuffle
    back = tf.nn.depth_to_space(torch_s2d[None][..., perm], r)[0].numpy()
    np.testing.assert_array_equal(back, x[0].permute(1, 2, 0).numpy())


@pytest.mark.parametrize("name, overrides", [
    ("fast", {}), ("fast", {"edge": 3}), ("fast", {"edge": 3, "edge_width": 8}),
    ("fast", {"deep": 2, "deep_blocks": 1}),
    ("fast-detail", {}), ("fast-s2", {}), ("seed", {}),
    ("seed-residual", {}), ("edge", {"width": 8, "middle": 1}),
    ("edge", {"enc": (1,), "dec": (1,), "detail": 0})])
def test_keras_rebuild_matches_pytorch(name, overrides):
    model = _seeded(name, **overrides)
    km = build_keras_student(model)
    m = model.multiple
    x = torch.rand(1, 3, m * -(-40 // m), m * -(-56 // m))
    with torch.no_grad():
        ref = model(x)[0].permute(1, 2, 0).numpy()
    out = km(x.permute(0, 2, 3, 1).numpy()).numpy()[0]
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() < 1e-4


@pytest.mark.parametrize("quant, tol", [("fp32", 1e-4), ("fp16", 5e-3)])
def test_tflite_fast_student_matches_pytorch(tmp_path, quant, tol):
    """Pixel-shuffle permutation survives conversion: LiteRT output == PyTorch, two sizes
    through one interpreter (input tensor resized)."""
    from optimize.parity import load_runner, torch_runner
    from optimize.tflite_export import export_tflite

    model = _seeded("fast", seed=3)
    path = export_tflite(model, tmp_path / f"fast_{quant}.tflite", quant)
    runner, ref = load_runner(path, threads=1)[0], torch_runner(model)
    rng = np.random.default_rng(0)
    for h, w in ((64, 96), (37, 51)):
        img = rng.random((h, w, 3), dtype=np.float32)
        out = runner(img)
        assert out.shape == (h, w, 3)
        assert np.abs(out - ref(img)).max() < tol


def test_export_leaves_tensorflow_logging_settings_as_it_found_them(tmp_path, monkeypatch):
    """export_tflite set TF_CPP_MIN_LOG_LEVEL (inherited by an app's subprocesses), and
    TF_ENABLE_ONEDNN_OPTS where unset, and absl's verbosity to ERROR, for the rest of the process;
    a failed conversion too."""
    import os

    import absl.logging

    from optimize.tflite_export import convert_keras, export_tflite

    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    verbosity = absl.logging.get_verbosity()
    absl.logging.set_verbosity(absl.logging.INFO)
    try:
        export_tflite(_seeded("fast"), tmp_path / "fast.tflite", "fp32")
        assert (tmp_path / "fast.tflite").stat().st_size
        with pytest.raises(ValueError, match="unknown TFLite quantization 'int4'"):
            convert_keras(build_keras_student(_seeded("fast")), "int4")
        for name in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS"):
            assert os.environ.get(name) is None, f"{name}={os.environ.get(name)}"
        assert absl.logging.get_verbosity() == absl.logging.INFO
    finally:
        absl.logging.set_verbosity(verbosity)


class UserStudent(nn.Module):
    """A student of a user's own (no hand-written Keras twin), whose channel orders meet where
    no conv can absorb them: an unshuffled input added to a conv's output, a depthwise conv and
    a concatenation in the unshuffled order, a gate's chunk, pooling and upsampling."""
    multiple = 4

    def __init__(self):
        super().__init__()
        self.dw = nn.Conv2d(12, 12, 3, padding=1, groups=12)
        self.mix = nn.Conv2d(12, 12, 1)
        self.wide = nn.Conv2d(24, 16, 3, padding=1)
        self.pool, self.up = nn.MaxPool2d(2), nn.Upsample(scale_factor=2, mode="nearest")
        self.low = nn.Conv2d(8, 8, 5, padding=2)
        self.head = nn.Conv2d(8, 12, 1)

    def forward(self, x):
        u = F.pixel_unshuffle(x, 2)
        f = F.relu(self.mix(u) + u)
        g = torch.cat([self.dw(u), f], dim=1)
        a, b = torch.chunk(self.wide(g), 2, dim=1)
        h = a * torch.sigmoid(b)
        h = h + self.up(F.relu(self.low(self.pool(h))))
        h = h + F.interpolate(F.max_pool2d(h, 2), scale_factor=2, mode="nearest")
        return x + F.pixel_shuffle(self.head(h), 2) + F.pixel_shuffle(f, 2)


def _seeded_module(model: nn.Module, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.3, 0.3)
    return model.eval()


def _same_function(model: nn.Module, km) -> float:
    m = getattr(model, "multiple", 1)
    x = torch.rand(1, 3, m * -(-40 // m), m * -(-56 // m))
    with torch.no_grad():
        ref = model(x)[0].permute(1, 2, 0).numpy()
    out = km(x.permute(0, 2, 3, 1).numpy()).numpy()[0]
    assert out.shape == ref.shape
    return float(np.abs(out - ref).max())


def test_a_student_of_ones_own_is_rebuilt_from_its_graph():
    # It was "no Keras rebuild for UserStudent": a registered student could not reach TFLite.
    model = _seeded_module(UserStudent())
    assert _same_function(model, build_keras_student(model)) < 1e-4


class _UserResidual(nn.Module):
    multiple = 2

    def __init__(self):
        super().__init__()
        self.dw = nn.Conv2d(12, 12, 3, padding=1, groups=12)
        self.mix = nn.Conv2d(12, 12, 1)
        self.body = nn.Conv2d(12, 16, 3, padding=1)
        self.head = nn.Conv2d(16, 12, 3, padding=1)

    def forward(self, x):
        u = F.pixel_unshuffle(x, 2)
        f = F.relu(self.mix(u) + self.dw(u))
        return x + F.pixel_shuffle(self.head(F.relu(self.body(f))), 2)


def test_a_student_of_ones_own_exports_to_full_integer_tflite(tmp_path):
    """The graph rebuild absorbs the unshuffled channel order into the convs, as the
    hand-written twins do: no gather, every tensor int8, the output PyTorch's within INT8's
    error."""
    from optimize.parity import load_runner, torch_runner
    from optimize.tflite_export import export_tflite, tensor_types

    model = _seeded_module(_UserResidual())
    with torch.no_grad():
        model.head.weight.mul_(0.1)   # a residual model's small correction
    rng = np.random.default_rng(0)
    path = export_tflite(model, tmp_path / "user_int8.tflite", "int8",
                         crops=rng.random((8, 3, 64, 64), dtype=np.float32))
    assert set(tensor_types(path)) == {"int8", "int32"}
    img = rng.random((37, 51, 3), dtype=np.float32)
    out, ref = load_runner(path, threads=1)[0](img), torch_runner(model)(img)
    assert out.shape == (37, 51, 3) and np.abs(out - ref).mean() < 0.01


@pytest.mark.parametrize("name, overrides", [
    ("fast", {"edge": 3, "deep": 1, "deep_blocks": 1}), ("fast-detail", {}), ("seed", {}),
    ("edge", {"width": 8, "middle": 1})])
def test_the_graph_rebuild_computes_what_the_hand_written_twins_do(name, overrides):
    """The built-in students, rebuilt from their graphs as a user's student would be."""
    import keras

    from optimize.keras_student import _build_traced, _Builder

    model = _seeded(name, **overrides)
    b = _Builder()
    b.names = {id(mod): n for n, mod in model.named_modules() if n}
    inp = keras.Input(shape=(None, None, 3), batch_size=1)
    km = keras.Model(inp, _build_traced(b, inp, model))
    for layer, weights in b.assign:
        layer.set_weights(weights)
    assert _same_function(model, km) < 1e-4


class _NamedLikeTheModel(nn.Module):
    multiple = 2

    def __init__(self):
        super().__init__()
        self.input = nn.Conv2d(12, 12, 3, padding=1)
        self.output = nn.Conv2d(12, 12, 1)

    def forward(self, x):
        u = F.relu(self.input(F.pixel_unshuffle(x, 2)))
        return x + F.pixel_shuffle(self.output(F.relu(self.input(u))), 2)


def test_modules_named_input_and_output_or_called_twice_are_rebuilt():
    # Keras refused a second layer named "input" (the model's input is), "output" (the residual
    # add is) or "input" again (the conv called twice): "used 2 times".
    model = _seeded_module(_NamedLikeTheModel())
    assert _same_function(model, build_keras_student(model)) < 1e-4


class _Gelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return x + F.gelu(self.conv(x))


class _Strided(nn.Module):
    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(3, 12, 3, padding=1, stride=2)

    def forward(self, x):
        return x + F.pixel_shuffle(self.down(x), 2)


class _SizeDependent(nn.Module):
    def forward(self, x):
        return F.interpolate(F.avg_pool2d(x, 2), size=x.shape[-2:])


class _Branching(nn.Module):
    def forward(self, x):
        return x * 2 if x.mean() > 0.5 else x


class _LeakyNamedRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.relu = nn.LeakyReLU(0.2)   # a module's name is no operator: it was rebuilt as ReLU

    def forward(self, x):
        return x + self.relu(self.conv(x))


class _Reflect(nn.Module):
    def __init__(self):
        super().__init__()   # Keras' "same" pads zeros: it was rebuilt with zero padding
        self.conv = nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect")

    def forward(self, x):
        return x + self.conv(x)


class _Scaled(nn.Module):
    def __init__(self):
        super().__init__()   # one gain a column: not one a channel
        self.gain = nn.Parameter(torch.ones(1, 3, 1, 56))

    def forward(self, x):
        return x * self.gain


class _CatOverWidth(nn.Module):
    def forward(self, x):
        return torch.cat([x, x], dim=-1)[..., ::2]


class _Noisy(nn.Module):
    def __init__(self):
        super().__init__()
        self.sigma = nn.Parameter(torch.full((1, 3, 1, 1), 0.1))

    def forward(self, x):   # drawn anew each call: it was folded into one constant draw
        return x + self.sigma * torch.randn_like(self.sigma)


class _DividedByATensor(nn.Module):
    def forward(self, x):
        return x / (1 + x)


class _ColumnCat(nn.Module):
    def __init__(self):
        super().__init__()
        self.extra = nn.Parameter(torch.ones(1, 1, 40, 56))

    def forward(self, x):   # it was a KeyError
        return torch.cat([x, self.extra], 1)[:, :3]


class _BatchStatistics(nn.Module):
    def __init__(self):
        super().__init__()   # normalises each frame by its own statistics, in eval mode too
        self.bn = nn.BatchNorm2d(3, track_running_stats=False)

    def forward(self, x):
        return x + self.bn(x)


class _ChunkOverHeight(nn.Module):
    def forward(self, x):
        a, b = x.chunk(2, dim=2)
        return torch.cat([b, a], 2)


class _SplitIntoWrongSizes(nn.Module):
    def forward(self, x):
        a, b = torch.split(x, [1, 1], dim=1)
        return x + torch.cat([a, b, a], 1)


class _Pooled(nn.Module):
    def __init__(self, **pool):
        super().__init__()
        self.conv, self.pool = nn.Conv2d(3, 3, 3, padding=1), nn.MaxPool2d(**pool)

    def forward(self, x):
        return x + F.interpolate(self.pool(self.conv(x)), scale_factor=2, mode="nearest")


class _DilatedPool(nn.Module):
    def forward(self, x):
        return x + F.max_pool2d(x, 3, stride=1, padding=2, dilation=2)


@pytest.mark.parametrize("model, named", [
    # dilation was ignored: a 2x2 window rebuilt where PyTorch took a 3x3 one's corners
    (_Pooled(kernel_size=2, dilation=2), r"uses pool \(MaxPool2d\) with dilation=2, which"),
    (_DilatedPool(), r"_DilatedPool uses max_pool2d with dilation=2, which"),
    (_Pooled(kernel_size=2, ceil_mode=True), r"uses pool \(MaxPool2d\) with ceil_mode=True"),
    (_Pooled(kernel_size=3, stride=2, padding=1),
     r"pool \(MaxPool2d\) with kernel_size=\(3, 3\), stride=\(2, 2\), padding=\(1, 1\) "
     r"\(covered: kernel_size = stride with padding 0, or stride 1 with an odd kernel and "
     r"padding k//2\)"),
    (_CatOverWidth(), r"_CatOverWidth uses cat over dim=-1 \(only over the channels of N x C x H "
                      r"x W: dim=1 or dim=-3\)"),
    (_ChunkOverHeight(), r"_ChunkOverHeight uses Tensor.chunk over dim=2 \(only"),
    (_SplitIntoWrongSizes(), r"_SplitIntoWrongSizes uses split into sizes \[1, 1\], which sum to "
                             r"2, not its 3 channels, which"),
    (_Scaled(), r"_Scaled uses mul with a constant of shape \(1, 3, 1, 56\) \(covered: a "
                r"number, or one a channel: 3 x 1 x 1\), which"),
    (_LeakyNamedRelu(), r"_LeakyNamedRelu uses relu \(LeakyReLU\), which"),
    (_Reflect(), r"_Reflect uses conv \(Conv2d\) \(conv .*padding_mode='reflect' \(only "
                 r"'zeros'"),
    (_ColumnCat(), r"_ColumnCat uses cat with a constant, which"),
    (_BatchStatistics().eval(), r"uses bn \(BatchNorm2d\) without running statistics "
                         r"\(track_running_stats=False"),
    (_Noisy(), r"_Noisy uses randn_like \(a random draw each call, no weight\), which"),
    (_DividedByATensor(), r"_DividedByATensor uses truediv by a tensor \(covered: by a "
                          r"number or one value a channel\), which"),
    (_Gelu(), "_Gelu uses gelu, which the Keras rebuild for TFLite does not cover"),
    # It said the conv "is not supported", the stride only in the module's repr
    (_Strided(), r"_Strided uses down \(Conv2d\) \(conv Conv2d\(3, 12, .*\): stride \(2, 2\) "
                 r"\(only stride 1; pixel_unshuffle or max pooling downsample\)\)"),
    (_SizeDependent(), "_SizeDependent uses avg_pool2d, which"),
    (_Branching(), "_Branching cannot be traced by torch.fx for the Keras rebuild")])
def test_an_operator_the_rebuild_lacks_is_named(model, named):
    with pytest.raises(NotImplementedError, match=named):
        build_keras_student(model)


class _ChannelNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln = nn.LayerNorm(3)

    def forward(self, x):
        return self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _WithChannelNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.norm = _ChannelNorm()

    def forward(self, x):
        return x + self.norm(self.conv(x))


def test_an_operator_the_rebuild_lacks_is_named_with_its_layer_and_line():
    """A LayerNorm over channels (permute, LayerNorm, permute back) in a block of its own was
    refused as "_WithChannelNorm uses Tensor.permute": neither which block nor which line, in a
    student with a permute in every block."""
    with pytest.raises(NotImplementedError) as e:
        build_keras_student(_WithChannelNorm())
    first = str(e.value).split(" (it covers")[0]
    assert first.startswith("_WithChannelNorm uses Tensor.permute in norm (_ChannelNorm), which "
                            "the Keras rebuild for TFLite does not cover, at "), first
    line = inspect.getsourcelines(_ChannelNorm.forward)[1] + 1
    assert first.endswith(f"test_export_tflite_rebuild.py:{line}: `return self.ln(x.permute("
                          "0, 2, 3, 1)).permute(0, 3, 1, 2)`"), first


def _export_matches(model, tmp_path, quant: str, tol: float):
    """`export_tflite` (the exporter `sharpen export` runs) of `model`, its LiteRT output
    PyTorch's on a frame of another size than the calibration crops."""
    from optimize.parity import load_runner, torch_runner
    from optimize.tflite_export import export_tflite

    m = getattr(model, "multiple", 1)
    rng = np.random.default_rng(0)
    path = export_tflite(model, tmp_path / f"mine_{quant}.tflite", quant,
                         crops=rng.random((8, 3, 32, 32), dtype=np.float32))
    img = rng.random((m * -(-37 // m), m * -(-51 // m), 3), dtype=np.float32)
    out, ref = load_runner(path, threads=1)[0](img), torch_runner(model)(img)
    assert out.shape == ref.shape
    err = float(np.abs(out - ref).mean() if quant == "int8" else np.abs(out - ref).max())
    assert err < tol, err


class _SamePadding(nn.Module):
    """padding="same", as an engineer writes it, odd and even kernels, dilated too; and
    padding="valid" of a 1x1 conv, no padding either way (it was refused as not 'same')."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding="same")
        self.b = nn.Conv2d(8, 8, 5, padding="same", dilation=2, groups=8)
        self.c = nn.Conv2d(8, 8, 3, padding=2, dilation=2)
        self.d = nn.Conv2d(8, 8, 2, padding="same")
        self.e = nn.Conv2d(8, 3, (4, 3), padding="same", dilation=(1, 3))
        self.f = nn.Conv2d(8, 8, 1, padding="valid")

    def forward(self, x):
        f = F.relu(self.a(x))
        f = F.relu(self.c(F.relu(self.b(f))))
        return x + self.e(F.relu(self.d(self.f(f))))


# torch's own note that an even kernel with padding="same" pads a copy of the input
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("quant, tol", [("fp32", 1e-4), ("int8", 0.01)])
def test_same_padding_and_dilated_convs_export(tmp_path, quant, tol):
    # It was "only padding=k//2 ('same') is supported" for padding="same", and dilation refused.
    _export_matches(_seeded_module(_SamePadding()), tmp_path, quant, tol)


class _ScaledResiduals(nn.Module):
    """Learned scales of a residual, as NAFNet's beta and gamma, a learned scalar and EDSR's
    literal res_scale, over channels in pixel_unshuffle's order too: it was a KeyError
    ('channels') for `self.alpha * y`, and "uses mul with a constant" for `y * self.beta`."""

    multiple = 2

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(12, 12, 3, padding=1), nn.Conv2d(12, 12, 1)
        self.beta = nn.Parameter(torch.zeros(1, 12, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(12, 1, 1))
        self.alpha = nn.Parameter(torch.zeros(()))
        self.register_buffer("offset", torch.full((1, 12, 1, 1), 0.1))

    def forward(self, x):
        u = F.pixel_unshuffle(x, 2) * self.gamma + self.offset
        y = u + self.alpha * F.relu(self.a(u)) * 0.2
        return F.pixel_shuffle(u + 0.5 + self.b(y) * self.beta, 2)


@pytest.mark.parametrize("quant, tol", [("fp32", 1e-4), ("int8", 0.01)])
def test_learned_and_literal_scales_of_a_residual_export(tmp_path, quant, tol):
    _export_matches(_seeded_module(_ScaledResiduals()), tmp_path, quant, tol)


class _Normalised(nn.Module):
    """Subtraction and division by a constant, as a user writes them: input normalisation, a
    gate's complement, a difference of branches (all refused as "uses sub" or "truediv")."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 3, 3, padding=1)
        self.g = nn.Conv2d(3, 3, 1)
        self.register_buffer("mean", torch.tensor([0.4, 0.5, 0.6]).reshape(3, 1, 1))

    def forward(self, x):
        u = (x - self.mean) / 0.25
        y = self.b(F.relu(self.a(u))) - u / self.mean
        g = torch.sigmoid(self.g(x))
        return (1 - g) * x + g * (x - 0.1 * y)


@pytest.mark.parametrize("quant, tol", [("fp32", 1e-4), ("int8", 0.01)])
def test_subtraction_and_division_by_a_constant_export(tmp_path, quant, tol):
    _export_matches(_seeded_module(_Normalised()), tmp_path, quant, tol)


class _ConvBatchNorm(nn.Module):
    """Conv then BatchNorm2d, the most common pattern, and a BatchNorm2d on its own (no affine
    too): it was "uses bn (BatchNorm2d), which the Keras rebuild ... does not cover"."""

    def __init__(self):
        super().__init__()
        self.a, self.bn_a = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.b, self.bn_b = nn.Conv2d(8, 3, 3, padding=1), nn.BatchNorm2d(3, affine=False)
        self.bn_in = nn.BatchNorm2d(3)

    def forward(self, x):
        return x + self.bn_b(self.b(F.relu(self.bn_a(self.a(self.bn_in(x))))))


def _with_running_statistics(model: nn.Module) -> nn.Module:
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("quant, tol", [("fp32", 1e-4), ("int8", 0.01)])
def test_batch_norm_exports_with_its_running_statistics(tmp_path, quant, tol):
    model = _with_running_statistics(_seeded_module(_ConvBatchNorm()))
    _export_matches(model, tmp_path, quant, tol)
    if quant == "int8":   # it was "no TFLite ops found for float layers ['bn_in']"
        from optimize.tflite_export import export_tflite, tensor_types

        path = export_tflite(model, tmp_path / "bn_in_float.tflite", "int8", float_layers=["bn_in"],
                             crops=np.random.default_rng(0).random((4, 3, 32, 32), np.float32))
        assert tensor_types(path).get("float32")
    with pytest.raises(NotImplementedError, match=r"uses bn_in \(BatchNorm2d\) in training mode "
                                                  r"\(call .eval\(\) first\)"):
        build_keras_student(model.train())


class _WithDropout(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 3, 3, padding=1)
        self.drop, self.drop2d, self.skip = nn.Dropout(0.2), nn.Dropout2d(0.1), nn.Identity()

    def forward(self, x):
        f = self.drop2d(F.relu(self.a(x)))
        f = F.dropout(self.drop(f), 0.1, training=self.training)
        return self.skip(x) + self.b(f)


@pytest.mark.parametrize("quant, tol", [("fp32", 1e-4), ("int8", 0.01)])
def test_dropout_and_identity_export_as_the_identity(tmp_path, quant, tol):
    # It was "_WithDropout uses drop2d (Dropout2d), which the Keras rebuild ... does not cover".
    _export_matches(_seeded_module(_WithDropout()), tmp_path, quant, tol)


class _AlwaysDropping(nn.Module):
    def forward(self, x):
        return x + F.dropout(x, 0.5)   # training=True by default: drops in eval mode too


def test_dropout_that_drops_in_eval_mode_is_refused():
    # It said "call .eval() first", which `sharpen export` had done: the model is in eval mode.
    with pytest.raises(NotImplementedError, match=r"_AlwaysDropping uses dropout with "
                                                  r"training=True, which drops in eval mode too "
                                                  r"\(pass training=self.training\)"):
        build_keras_student(_AlwaysDropping().eval())
    with pytest.raises(NotImplementedError, match=r"uses drop2d \(Dropout2d\) in training mode"):
        build_keras_student(_WithDropout().train())


class _MyConv(nn.Conv2d):
    """A subclass of one's own that keeps Conv2d's forward (fx traced it into F.conv2d of a
    weight read directly, which was refused)."""


class _StandardisedConv(nn.Conv2d):
    """Weight standardisation: a forward of its own, its weight computed from the weights."""

    def forward(self, x):
        w = self.weight
        w = (w - w.mean(dim=(1, 2, 3), keepdim=True)) / (w.std(dim=(1, 2, 3), keepdim=True) + 1e-5)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class _ConvSubclasses(nn.Module):
    def __init__(self):
        super().__init__()
        self.mine = _MyConv(3, 8, 3, padding=1)
        self.ws = _StandardisedConv(8, 8, 3, padding="same", groups=8)
        self.head = nn.Parameter(torch.zeros(3, 8, 1, 1))

    def forward(self, x):
        f = F.relu(self.ws(F.relu(self.mine(x))))
        return x + F.conv2d(f, self.head * 0.1)


@pytest.mark.parametrize("quant, tol", [("fp32", 1e-4), ("int8", 0.01)])
def test_conv2d_subclasses_and_functional_convs_export(tmp_path, quant, tol):
    _export_matches(_seeded_module(_ConvSubclasses()), tmp_path, quant, tol)


def test_a_conv2d_subclass_keeps_its_module_name():
    # Layers are named after the modules (float_layers= names them).
    km = build_keras_student(_seeded_module(_ConvSubclasses()))
    assert {"mine", "ws", "head"} <= {layer.name for layer in km.layers}


class _NegativeDims(nn.Module):
    """The channel dim spelt from the end, as code written for any batch rank does."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(3, 8, 1)
        self.head = nn.Conv2d(16, 3, 3, padding=1)

    def forward(self, x):
        f = torch.cat([F.relu(self.a(x)), self.b(x)], dim=-3)
        g, h = torch.chunk(f, 2, dim=-3)
        u, v = torch.cat((g, h), 1).chunk(2, dim=1)
        return x + self.head(torch.cat([u * torch.sigmoid(v), g], -3))


@pytest.mark.parametrize("quant, tol", [("fp32", 1e-4), ("int8", 0.01)])
def test_cat_and_chunk_over_dim_minus_3_export(tmp_path, quant, tol):
    # It was "_NegativeDims uses cat, which the Keras rebuild for TFLite does not cover".
    _export_matches(_seeded_module(_NegativeDims()), tmp_path, quant, tol)


class _MyBatchNorm(nn.BatchNorm2d):
    """A BatchNorm2d subclass of one's own, keeping its forward (fx traced into it: "cannot be
    traced by torch.fx ... control flow")."""

    def __init__(self, c: int):
        super().__init__(c, eps=1e-3)


class _KeywordsAndSplits(nn.Module):
    """How NAFNet/EDSR-style code spells channel splits and scaled residuals: `cat(tensors=...)`
    was an IndexError, `split` (a number or a list of sizes, uneven too, function and method)
    and `add`/`sub` with `alpha=` were refused as "uses split" and "uses add"."""

    def __init__(self):
        super().__init__()
        self.a, self.bn = nn.Conv2d(3, 8, 3, padding=1), _MyBatchNorm(8)
        self.b, self.head = nn.Conv2d(8, 8, 1), nn.Conv2d(10, 3, 3, padding=1)

    def forward(self, x):
        f = F.relu(self.bn(self.a(x.sub(0.25, alpha=2))))
        p, q = torch.split(f, 4, dim=1)
        g = torch.cat(tensors=[p * torch.sigmoid(q), q], dim=1)
        u, v, w = self.b(g).split([2, 3, 3], dim=-3)
        r = torch.split(g, 3, 1)   # 3, 3 and 2 channels
        h = torch.cat([u, torch.add(v, w, alpha=0.5), torch.sub(r[0], v, alpha=2), r[2]], 1)
        return torch.add(x, self.head(h), alpha=0.2)


@pytest.mark.parametrize("quant, tol", [("fp32", 1e-4), ("int8", 0.01)])
def test_keyword_cat_split_alpha_and_batch_norm_subclasses_export(tmp_path, quant, tol):
    _export_matches(_with_running_statistics(_seeded_module(_KeywordsAndSplits())), tmp_path,
                    quant, tol)


class _DividedByZero(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return x + self.a(x) / 0


def test_division_by_zero_names_the_node_and_its_line():
    # It was a bare "ZeroDivisionError: division by zero" from inside the rebuild.
    with pytest.raises(ValueError, match=r"_DividedByZero divides by zero at node 'truediv' "
                                         r"\(.*test_export_tflite_rebuild.py:\d+: `return x \+ "
                                         r"self.a\(x\) / 0`\): its output is inf or NaN there"):
        build_keras_student(_DividedByZero().eval())


class _Scales(nn.Module):
    """A block of one's own (fx traces into it) dividing by a per-channel scale with a zero."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 3, 1)
        self.register_buffer("s", torch.tensor([1.0, -0.0, 2.0]).reshape(3, 1, 1))

    def forward(self, x):
        y = self.c(x)
        return y / self.s


class _DividedInABlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = _Scales()

    def forward(self, x):
        return x + self.body(x * 2)


def test_division_by_zero_in_a_block_names_the_line_that_divides():
    # It named the outermost line of the student's forward, `return x + self.body(x * 2)`,
    # not the division inside the block.
    with pytest.raises(ValueError, match=r"_DividedInABlock divides by zero at node 'truediv' "
                                         r"\(.*test_export_tflite_rebuild.py:\d+: `return y / "
                                         r"self.s`\)"):
        build_keras_student(_DividedInABlock().eval())


class _ScaledBatchNorm(nn.BatchNorm2d):
    """A BatchNorm2d subclass with a forward of its own, calling BatchNorm2d's."""

    def forward(self, x):
        return super().forward(x) * 0.5


class _OwnForwards(nn.Module):
    """A batch norm subclass with its own forward, F.batch_norm, chunks of unequal size and
    `out=None`, as code spells them: fx traced into BatchNorm2d's input check ("cannot be
    traced by torch.fx ... control flow"), chunk(3) of 8 channels was refused as "unequal
    chunks" (PyTorch's are 3, 3 and 2), and `out=None` as "uses cat with dim=, out="."""

    def __init__(self):
        super().__init__()
        self.a, self.bn = nn.Conv2d(3, 8, 3, padding=1), _ScaledBatchNorm(8)
        self.norm = nn.BatchNorm2d(8)
        self.head = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x):
        f = F.relu(self.bn(self.a(x)))
        f = F.batch_norm(f, self.norm.running_mean, self.norm.running_var, self.norm.weight,
                         self.norm.bias, False, 0.1, 1e-3)
        p, q, r = f.chunk(3, dim=1)
        g = torch.cat([r, torch.add(q, p, alpha=0.5, out=None), p], dim=1, out=None)
        return x + self.head(g)


class _UntrackedBatchNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.bn = nn.Conv2d(3, 3, 1), _ScaledBatchNorm(3, track_running_stats=False)

    def forward(self, x):
        return x + self.bn(self.a(x))


def test_batch_norm_with_a_forward_of_its_own_and_unequal_chunks_are_rebuilt():
    model = _with_running_statistics(_seeded_module(_OwnForwards()))
    assert _same_function(model, build_keras_student(model)) < 1e-4
    # eval mode without running statistics normalises each frame by its own: not a constant
    with pytest.raises(NotImplementedError, match=r"_UntrackedBatchNorm uses batch_norm without "
                                                  r"running statistics \(bn: track_running_st"):
        build_keras_student(_seeded_module(_UntrackedBatchNorm()))
    model.bn.train()
    with pytest.raises(NotImplementedError, match=r"_OwnForwards uses batch_norm in training "
                                                  r"mode \(call .eval\(\) first"):
        build_keras_student(model)


class _Pools(nn.Module):
    """Max pooling as small CNNs use it: 2x2 and 4x4 windows side by side, a 3x3 and a 5x3
    one at stride 1 (SPP-like), functional and as modules."""
    multiple = 8

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 3, 3, padding=1)
        self.spp = nn.MaxPool2d(3, stride=1, padding=1)
        self.quarter = nn.MaxPool2d(4)

    def forward(self, x):
        f = F.relu(self.a(x))
        f = f + self.spp(f) + F.max_pool2d(f, (5, 3), 1, (2, 1))
        low = F.interpolate(self.quarter(F.max_pool2d(f, 2)), scale_factor=2, mode="nearest")
        f = f + F.interpolate(F.interpolate(low, scale_factor=2), scale_factor=2)
        return x + self.b(f)


@pytest.mark.parametrize("quant, tol", [("fp32", 1e-4), ("int8", 0.01)])
def test_max_pooling_as_small_cnns_use_it_exports(tmp_path, quant, tol):
    model = _seeded_module(_Pools())
    with torch.no_grad():
        model.b.weight.mul_(0.1)   # a residual model's small correction: INT8's steps small
    _export_matches(model, tmp_path, quant, tol)


class _Leaky(nn.Module):
    """A student with an operator the graph rebuild lacks (LeakyReLU)."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, width, 3, padding=1), nn.Conv2d(width, 3, 3, padding=1)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x):
        return x + self.b(self.act(self.a(x)))


def _leaky_twin(model, batch, transpose_wrong=False, name=None):
    import keras

    from optimize.keras_student import conv_kernel

    inp = keras.Input((None, None, 3), batch_size=batch)
    a = keras.layers.Conv2D(model.a.out_channels, 3, padding="same", name="a")
    b = keras.layers.Conv2D(3, 3, padding="same", name="b")
    out = keras.layers.Add()([inp, b(keras.layers.LeakyReLU(0.2)(a(inp)))])
    km = keras.Model(inp, out, name=name)
    ka = conv_kernel(model.a)
    a.set_weights([ka.transpose(1, 0, 2, 3) if transpose_wrong else ka,
                   model.a.bias.detach().numpy()])
    b.set_weights([conv_kernel(model.b), model.b.bias.detach().numpy()])
    return km


@pytest.mark.parametrize("quant, tol", [("fp32", 1e-4), ("int8", 0.01)])
def test_a_student_of_ones_own_exports_through_its_own_keras_twin(tmp_path, registry, quant, tol):
    from distill.students import register

    with pytest.raises(NotImplementedError, match=r"uses act \(LeakyReLU\)"):
        build_keras_student(_seeded_module(_Leaky()))   # no twin: the graph rebuild lacks it
    # A name TensorFlow takes for no scope: the conversion failed ("'NoneType' object is not
    # callable")
    register("leaky-own", _Leaky, "LeakyReLU",
             keras_twin=lambda m, b: _leaky_twin(m, b, name="_my twin"))
    model = create_student("leaky-own")
    model.load_state_dict(_seeded_module(_Leaky()).state_dict())
    _export_matches(model.eval(), tmp_path, quant, tol)


def test_a_keras_twin_that_computes_another_function_is_refused(registry):
    from distill.students import register

    register("leaky-wrong", _Leaky, "LeakyReLU",
             keras_twin=lambda m, b: _leaky_twin(m, b, transpose_wrong=True))
    model = _seeded_module(create_student("leaky-wrong"))
    with pytest.raises(ValueError, match=r"the Keras twin of student 'leaky-wrong' \(.*<lambda>\)"
                                         r" differs from the student by up to [0-9.e-]+ on a "
                                         r"40x56 frame"):
        build_keras_student(model)
    with pytest.raises(ValueError, match=r"keras_twin='_leaky_twin' is not a function"):
        register("leaky-name", _Leaky, "LeakyReLU", keras_twin="_leaky_twin")
    register("leaky-batch", _Leaky, "LeakyReLU", keras_twin=lambda m, b: _leaky_twin(m, 2))
    with pytest.raises(ValueError, match=r"takes input \(2, None, None, 3\); it must take "
                                         r"keras.Input\(\(None, None, 3\), batch_size=1\)"):
        build_keras_student(_seeded_module(create_student("leaky-batch")))
    # A twin that forgot its return: it was "takes input (); it must take keras.Input(...)"
    register("leaky-none", _Leaky, "LeakyReLU", keras_twin=lambda m, b: None)
    with pytest.raises(ValueError, match=r"the Keras twin of student 'leaky-none' \(.*<lambda>\) "
                                         r"returned None, not a keras.Model"):
        build_keras_student(_seeded_module(create_student("leaky-none")))


class _Leaky3(nn.Module):
    """Three convolutions and LeakyReLU (which the graph rebuild lacks): a twin's float
    layers."""

    def __init__(self):
        super().__init__()
        self.a, self.mid = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.b, self.act = nn.Conv2d(8, 3, 3, padding=1), nn.LeakyReLU(0.2)

    def forward(self, x):
        return x + self.b(self.act(self.mid(self.act(self.a(x)))))


def _leaky3_twin(model, batch, named=("b",)):
    """A twin that names only the layers in `named` after the student's modules."""
    import keras

    from optimize.keras_student import conv_kernel

    inp = f = keras.Input((None, None, 3), batch_size=batch)
    weights = []
    for n in ("a", "mid", "b"):
        conv = getattr(model, n)
        layer = keras.layers.Conv2D(conv.out_channels, 3, padding="same",
                                    name=n if n in named else None)
        f = layer(f) if n == "a" else layer(keras.layers.LeakyReLU(0.2)(f))
        weights.append((layer, [conv_kernel(conv), conv.bias.detach().numpy()]))
    km = keras.Model(inp, keras.layers.Add()([inp, f]))
    for layer, w in weights:
        layer.set_weights(w)
    return km


def test_float_layers_of_a_keras_twin_are_the_layers_it_names(tmp_path, registry):
    """A twin's layers are found by the names its author gave them: a name it lacks was "no
    TFLite ops found" after the calibration, or, beside one it has, dropped unsaid; and "auto"
    chose layers the twin could not keep in float."""
    from distill.students import register
    from optimize import float_layers as fl
    from optimize.export import Thresholds
    from optimize.tflite_export import export_tflite, tensor_types

    register("leaky3-b", _Leaky3, "LeakyReLU, only b named", keras_twin=_leaky3_twin)
    model = _seeded_module(create_student("leaky3-b"))
    rng = np.random.default_rng(0)
    crops = rng.random((4, 3, 32, 32), dtype=np.float32)
    path = export_tflite(model, tmp_path / "b.tflite", "int8", crops=crops, float_layers=["b"])
    assert tensor_types(path).get("float32")
    with pytest.raises(ValueError, match=r"float layers 'mid': the Keras twin of student "
                                         r"'leaky3-b' \(.*_leaky3_twin\) has no layer named "
                                         r"after it \(its layers: conv2d.*, b, add.*\); TFLite "
                                         r"finds a twin's layers by the student's module names"):
        export_tflite(model, tmp_path / "mid.tflite", "int8", crops=crops,
                      float_layers=["mid", "b"])
    said: list[str] = []
    images = [(f"{i}.png", rng.random((32, 32, 3), dtype=np.float32)) for i in range(2)]
    by_fmt, choices, tries = fl.plan(fl.AUTO, model, ["tflite-int8", "onnx-int8"], crops,
                                     images, None, Thresholds(min_ssim=0.999999), False,
                                     said.append)
    assert any("the Keras twin of leaky3-b names only b of the student's layers after its "
               "modules, so a, mid cannot be kept in float there" in s for s in said), said
    tfl = [u for step in choices["tflite-int8"]["steps"] for u in step["float"]]
    assert tfl and set(tfl) <= {"b"}, choices["tflite-int8"]["steps"]
    assert all(set(t) <= {"b", fl.OUTPUT} for t in tries["tflite-int8"])
    # ONNX Runtime's search is the student's own graph's: every layer
    onnx_steps = choices["onnx-int8"]["steps"]
    assert any("mid" in step["float"] or "a" in step["float"] for step in onnx_steps), onnx_steps


class _AutoNamedModules(nn.Module):
    """Modules named as Keras names a layer it is given no name for."""

    def __init__(self):
        super().__init__()
        self.conv2d, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x):
        return x + self.b(F.leaky_relu(self.conv2d(x), 0.2))


def _auto_named_twin(model, batch, names=(None, "b")):
    import keras

    from optimize.keras_student import conv_kernel

    inp = keras.Input((None, None, 3), batch_size=batch)
    a = keras.layers.Conv2D(8, 3, padding="same", name=names[0])
    b = keras.layers.Conv2D(3, 3, padding="same", name=names[1])
    km = keras.Model(inp, keras.layers.Add()([inp, b(keras.layers.LeakyReLU(0.2)(a(inp)))]))
    a.set_weights([conv_kernel(model.conv2d), model.conv2d.bias.detach().numpy()])
    b.set_weights([conv_kernel(model.b), model.b.bias.detach().numpy()])
    return km


def test_a_name_keras_made_up_for_a_twin_layer_names_no_module(tmp_path, registry):
    """A twin layer given no name is named by Keras, from a count of the layers made in the
    process so far: the first Conv2D is "conv2d", a later one "conv2d_3". It was taken for the
    student's module `conv2d`: `auto` could choose it (the plan's build named a layer so) and
    the export's build then refuse it, or keep its ops in float for a layer the twin never
    named."""
    import keras

    from distill.students import register
    from optimize import float_layers as fl
    from optimize.tflite_export import export_tflite

    register("auto-named", _AutoNamedModules, "conv2d not named", keras_twin=_auto_named_twin)
    model = _seeded_module(create_student("auto-named"))
    keras.backend.clear_session()   # as in a fresh process: the twin's first Conv2D is "conv2d"
    layers = fl.twin_layers(model)
    assert fl.twin_gaps(["conv2d", "b"], layers) == ["conv2d"], layers
    assert fl.twin_gaps(["conv2d"], fl.twin_layers(model)) == ["conv2d"]
    keras.backend.clear_session()
    crops = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    with pytest.raises(ValueError, match=r"float layers 'conv2d': the Keras twin of student "
                                         r"'auto-named' \(.*_auto_named_twin\) has no layer "
                                         r"named after it \(its layers: conv2d, .*b"):
        export_tflite(model, tmp_path / "c.tflite", "int8", crops=crops, float_layers=["conv2d"])
    # a layer its author named "conv2d" is the module's
    register("conv2d-named", _AutoNamedModules, "conv2d named",
             keras_twin=lambda m, b: _auto_named_twin(m, b, ("conv2d", "b")))
    assert not fl.twin_gaps(["conv2d", "b"], fl.twin_layers(create_student("conv2d-named")))


def test_a_keras_twin_that_fails_is_named(registry):
    # It was Keras' own message alone: 'The name "b" is used 2 times in the model.'
    from distill.students import register

    register("dup-named", _AutoNamedModules, "two layers named b",
             keras_twin=lambda m, b: _auto_named_twin(m, b, ("b", "b")))
    with pytest.raises(ValueError, match=r"the Keras twin of student 'dup-named' \(.*<lambda>\) "
                                         r"failed: ValueError: The name \"b\" is used 2 times"):
        build_keras_student(create_student("dup-named").eval())


class _CatIntoABuffer(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("buf", torch.zeros(1, 6, 32, 32))

    def forward(self, x):
        return torch.cat([x, x], dim=1, out=self.buf)[:, :3]


def test_a_keyword_the_rebuild_lacks_is_the_one_named():
    # It was "uses cat with dim=, out=": dim= is covered.
    with pytest.raises(NotImplementedError, match=r"_CatIntoABuffer uses cat with out=buf, which"):
        build_keras_student(_CatIntoABuffer().eval())


@pytest.mark.parametrize("quant", ["int8", "fp16"])
def test_the_tflite_graph_computes_no_tensor_size_at_run_time(tmp_path, quant):
    """GPU delegates and NNAPI take static-sized graphs only: a size computed from SHAPE (the
    nearest x2 of `fast`) fed a resize whose output LiteRT leaves dynamic. The upsample is a
    channel copy and a depth-to-space instead, and the model still resizes to any frame."""
    from ai_edge_litert.interpreter import Interpreter

    from optimize.parity import load_runner, torch_runner
    from optimize.tflite_export import export_tflite

    model = _seeded("fast", seed=5)
    rng = np.random.default_rng(0)
    path = export_tflite(model, tmp_path / f"fast_{quant}.tflite", quant,
                         crops=rng.random((8, 3, 32, 32), dtype=np.float32))
    ops = {o["op_name"] for o in Interpreter(model_path=str(path))._get_ops_details()}
    assert not ops & {"SHAPE", "SLICE", "RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR"}, ops
    runner, ref = load_runner(path, threads=1)[0], torch_runner(model)
    for h, w in ((64, 96), (40, 56)):
        img = rng.random((h, w, 3), dtype=np.float32)
        err = np.abs(runner(img) - ref(img))
        assert (err.mean() if quant == "int8" else err.max()) < (0.01 if quant == "int8" else 5e-3)


def test_the_tflite_input_has_the_size_it_is_exported_for_until_resized(tmp_path):
    """An app that runs one size (1080p, or 720p with --opt-shape) needs no resize: Android's
    Interpreter allocates, and a GPU delegate prepares, at the file's own input size (it was
    256x256, so every app prepared twice). The signature stays [1, -1, -1, 3]: any size runs."""
    from ai_edge_litert.interpreter import Interpreter

    from optimize.export_options import ExportOptions, Thresholds
    from optimize.export_reuse import build_inputs
    from optimize.tensorrt_engine import Profile
    from optimize.tflite_export import export_tflite

    path = export_tflite(_seeded("fast", seed=1), tmp_path / "m.tflite", "fp32",
                         input_hw=(72, 128))
    interp = Interpreter(model_path=str(path))
    inp = interp.get_input_details()[0]
    assert list(inp["shape"]) == [1, 72, 128, 3]
    assert list(inp["shape_signature"]) == [1, -1, -1, 3]
    interp.allocate_tensors()
    assert list(interp.get_output_details()[0]["shape"]) == [1, 72, 128, 3]
    assert "72x128 until resized" in json.loads(Path(f"{path}.json").read_text())["shapes"]
    # --opt-shape rebuilds the TFLite files (and the engines), not the ONNX models.
    o = ExportOptions(thresholds=Thresholds())

    def inputs(opt: str) -> dict:
        return build_inputs(["onnx", "tflite-fp16"], "w", o,
                            Profile.from_hw(opt_hw=tuple(map(int, opt.split("x")))), None,
                            [], {}, {})
    a, b = inputs("1080x1920"), inputs("720x1280")
    assert [f for f in a if a[f] != b[f]] == ["tflite-fp16"]


def test_a_float_tflites_record_gives_no_scale_to_divide_by_and_its_output_its_size(tmp_path):
    """The FP16 file's sidecar gave its float input and output "scale": 0.0, "zero_point": 0,
    which an app applying the INT8 formula divides by; and the output read [1, 1, 1, 3]
    (Netron, an app's check before allocating) however the input was sized."""
    from ai_edge_litert.interpreter import Interpreter

    from optimize.tflite_export import export_tflite

    path = export_tflite(_seeded("fast", seed=1), tmp_path / "m.tflite", "fp16",
                         input_hw=(72, 128))
    side = json.loads(Path(f"{path}.json").read_text())
    for key in ("input", "output"):
        assert side[key]["dtype"] == "float32"
        assert side[key]["scale"] is None and side[key]["zero_point"] is None, side[key]
    out = Interpreter(model_path=str(path)).get_output_details()[0]
    assert list(out["shape"]) == [1, 72, 128, 3]
    assert list(out["shape_signature"]) == [1, -1, -1, 3]


def test_int8_calibrated_on_dark_crops_takes_pixels_up_to_white(tmp_path):
    """Calibrated on night frames (brightest pixel 0.30) TFLite INT8 took its input's and
    output's ranges from them: every brighter pixel clipped to 0.30, SSIM 0.745 to FP32 on
    daylight HIDE frames. The input and the pixel-unshuffle that moves its pixels now span
    [0, 1], the output at least that, and a daylight frame comes out nearer PyTorch's (the
    layers after the input keep the crops' ranges)."""
    from ai_edge_litert.interpreter import Interpreter

    from optimize.parity import load_runner, torch_runner
    from optimize.tflite_export import export_tflite

    model = _seeded("fast", seed=3)
    rng = np.random.default_rng(0)
    path = export_tflite(model, tmp_path / "night_int8.tflite", "int8",
                         crops=rng.random((8, 3, 32, 32), dtype=np.float32) * 0.3)
    interp = Interpreter(model_path=str(path))
    spans = [((-128 - zero) * scale, (127 - zero) * scale) for scale, zero in (
        d["quantization"] for d in (interp.get_input_details()[0], interp.get_output_details()[0]))]
    assert spans[0] == pytest.approx((0, 1), abs=0.01)
    assert spans[1][0] < 0.01 and spans[1][1] > 0.99, spans   # widened, an overshoot kept
    day = rng.random((64, 96, 3), dtype=np.float32) * 0.6 + 0.4
    out, ref = load_runner(path, threads=1)[0](day), torch_runner(model)(day)
    assert float(np.abs(out - ref).mean()) < 0.2   # 0.39 clipped at 0.30, 0.11 now


def test_int8_calibrated_on_crops_spanning_black_to_white_keeps_their_range(tmp_path):
    """Crops reaching 0.999 (the built-in photos: 0.99999) were widened to 1.0 all the same:
    a new artifact of the shipped student, its worst Kodak photo 0.0002 SSIM worse. Within an
    int8 step of [0, 1] the crops' own range is kept."""
    from ai_edge_litert.interpreter import Interpreter

    from optimize.tflite_export import export_tflite

    rng = np.random.default_rng(0)
    crops = rng.random((4, 3, 32, 32), dtype=np.float32) * 0.999
    path = export_tflite(_seeded("fast", seed=3), tmp_path / "day_int8.tflite", "int8",
                         crops=crops)
    scale, zero = Interpreter(model_path=str(path)).get_input_details()[0]["quantization"]
    assert (127 - zero) * scale == pytest.approx(float(crops.max()), abs=1e-4)
