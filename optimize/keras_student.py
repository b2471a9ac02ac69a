"""Rebuild a PyTorch student as a Keras (NHWC) model with the same weights, for TFLite export.

Why this route (and not PyTorch -> ONNX -> TF, ai-edge-torch, or onnx2tf): the students use a
handful of operators (conv incl. depthwise, ReLU, max-pool, nearest x2, pixel (un)shuffle, add,
a gate's channel split, sigmoid and multiply),
so a hand-written Keras twin is ~150 lines, needs nothing beyond the installed tensorflow-cpu,
and gives `TFLiteConverter.from_keras_model` a clean NHWC graph: every op maps 1:1 to a LiteRT
builtin with an int8 kernel (no NCHW<->NHWC transposes, no Flex ops), so a representative dataset
yields a *fully integer* model that XNNPACK runs fast. Converter-based routes from ONNX/PyTorch
either pull large extra packages, leave transposes around every op, or fall back to float ops.

Layout conventions carried over from PyTorch:
- conv weight [out, in/groups, kh, kw] -> Keras Conv2D kernel [kh, kw, in, out];
  depthwise [C, 1, kh, kw] -> DepthwiseConv2D kernel [kh, kw, C, 1].
- padding "same" equals PyTorch's padding=k//2 for odd k at stride 1 (symmetric).
- MaxPool2d(2) -> MaxPool2D(2) ("valid"; inputs are padded to the model's multiple).
- nn.Upsample(x2, nearest) -> tf.image.resize(method="nearest") on the *dynamic* shape (Keras'
  UpSampling2D bakes the static shape in and breaks size-agnostic models). TF's nearest resize
  with half-pixel centres picks floor(dst/2) at an exact 2x, the same pixel as PyTorch.
- PixelUnshuffle/PixelShuffle(r) -> tf.nn.space_to_depth/depth_to_space(r). The channel orders
  differ: PyTorch packs channel c, offset (i, j) at c*r*r + i*r + j, TF at (i*r + j)*C + c. The
  1x1 conv after the unshuffle gets its *input* channels permuted, the 1x1 conv before the
  shuffle its *output* channels (and bias), so the Keras model computes exactly the same function.
"""
from __future__ import annotations

import numpy as np
import torch.nn as nn

from .float_layers import OUTPUT


def torch_to_tf_channel_perm(c: int, r: int) -> np.ndarray:
    """perm[tf_index] = torch_index for a space-to-depth tensor of C=c base channels, block r.

    TF channel (i*r + j)*C + ch holds what PyTorch stores at ch*r*r + i*r + j.
    """
    perm = np.empty(c * r * r, dtype=np.int64)
    for i in range(r):
        for j in range(r):
            for ch in range(c):
                perm[(i * r + j) * c + ch] = ch * r * r + i * r + j
    return perm


def _np(t) -> np.ndarray:
    return t.detach().cpu().float().numpy()


def conv_kernel(conv: nn.Conv2d) -> np.ndarray:
    """PyTorch [out, in, kh, kw] -> Keras [kh, kw, in, out]."""
    return np.transpose(_np(conv.weight), (2, 3, 1, 0))


def depthwise_kernel(conv: nn.Conv2d) -> np.ndarray:
    """PyTorch depthwise [C, 1, kh, kw] -> Keras [kh, kw, C, 1]."""
    return np.transpose(_np(conv.weight), (2, 3, 0, 1))


class _Builder:
    """Creates Keras layers from PyTorch modules and remembers the weights to set after build."""

    def __init__(self):
        import keras

        self.keras = keras
        self.assign: list[tuple[object, list[np.ndarray]]] = []
        # Keras layers are named after the PyTorch modules they rebuild ("dec.0.pw2"; a block's
        # residual add after the block, the global residual "output"), so that converted
        # tensors can be traced back to the student's modules (mixed-precision export).
        self.names: dict[int, str] = {}

    def name(self, module: nn.Module | None) -> str | None:
        return self.names.get(id(module)) if module is not None else None

    def conv(self, x, conv: nn.Conv2d, in_perm: np.ndarray | None = None,
             out_perm: np.ndarray | None = None, name: str | None = None):
        k = self.keras
        kh, kw = conv.kernel_size
        if conv.stride != (1, 1) or conv.dilation != (1, 1) or kh % 2 == 0 or kw % 2 == 0:
            raise NotImplementedError(f"conv {conv} is not supported by the Keras rebuild")
        if tuple(conv.padding) != (kh // 2, kw // 2):
            raise NotImplementedError(f"conv {conv}: only padding=k//2 ('same') is supported")
        bias = conv.bias is not None
        name = name or self.name(conv)
        if conv.groups == 1:
            w = conv_kernel(conv)
            if in_perm is not None:
                w = w[:, :, in_perm, :]
            if out_perm is not None:
                w = w[:, :, :, out_perm]
            layer = k.layers.Conv2D(conv.out_channels, (kh, kw), padding="same", use_bias=bias,
                                    name=name)
            weights = [w]
        elif conv.groups == conv.in_channels == conv.out_channels:
            if (in_perm is None) != (out_perm is None) or (
                    in_perm is not None and not np.array_equal(in_perm, out_perm)):
                raise NotImplementedError("a depthwise conv keeps its channel order: "
                                          "in_perm and out_perm must be equal")
            layer = k.layers.DepthwiseConv2D((kh, kw), padding="same", use_bias=bias, name=name)
            w = depthwise_kernel(conv)
            weights = [w[:, :, out_perm, :] if out_perm is not None else w]
        else:
            raise NotImplementedError(f"grouped conv with groups={conv.groups} is not supported")
        if bias:
            b = _np(conv.bias)
            weights.append(b[out_perm] if out_perm is not None else b)
        y = layer(x)
        self.assign.append((layer, weights))
        return y

    def relu(self, x):
        return self.keras.layers.ReLU()(x)

    def add(self, a, b, name: str | None = None):
        return self.keras.layers.Add(name=name)([a, b])

    def maxpool2(self, x):
        return self.keras.layers.MaxPool2D(2)(x)


def _custom_layers():
    """Keras layers for the ops that need TensorFlow functions on dynamic shapes."""
    import keras
    import tensorflow as tf

    class Upsample2xNearest(keras.layers.Layer):
        def call(self, x):
            size = tf.shape(x)[1:3] * 2
            return tf.image.resize(x, size, method="nearest")

        def compute_output_shape(self, s):
            return (s[0], None if s[1] is None else 2 * s[1],
                    None if s[2] is None else 2 * s[2], s[3])

    class SpaceToDepth(keras.layers.Layer):
        def __init__(self, block: int, **kw):
            super().__init__(**kw)
            self.block = block

        def call(self, x):
            return tf.nn.space_to_depth(x, self.block)

        def compute_output_shape(self, s):
            r = self.block
            return (s[0], None if s[1] is None else s[1] // r,
                    None if s[2] is None else s[2] // r, s[3] * r * r)

        def get_config(self):
            return {**super().get_config(), "block": self.block}

    class DepthToSpace(keras.layers.Layer):
        def __init__(self, block: int, **kw):
            super().__init__(**kw)
            self.block = block

        def call(self, x):
            return tf.nn.depth_to_space(x, self.block)

        def compute_output_shape(self, s):
            r = self.block
            return (s[0], None if s[1] is None else s[1] * r,
                    None if s[2] is None else s[2] * r, s[3] // (r * r))

        def get_config(self):
            return {**super().get_config(), "block": self.block}

    return Upsample2xNearest, SpaceToDepth, DepthToSpace


def _gate(x):
    """distill.students.Gate: first half of the channels times the sigmoid of the second half
    (PyTorch's chunk order; the 1x1 conv before it keeps PyTorch's channel order, so no
    permutation is needed)."""
    import keras

    c = x.shape[-1] // 2
    return keras.layers.Multiply()([x[..., :c], keras.layers.Activation("sigmoid")(x[..., c:])])


def _build_seed(b: _Builder, x, m):
    Up, _, _ = _custom_layers()

    def sep(t, mod):
        return b.conv(b.conv(t, mod[0]), mod[1])

    e = b.relu(sep(b.relu(sep(x, m.enc1)), m.enc2))
    mid = b.relu(sep(b.relu(sep(b.maxpool2(e), m.mid1)), m.mid2))
    d = b.relu(sep(Up()(mid), m.dec1))
    if m.skip:
        d = b.add(d, e)
    y = b.conv(b.relu(sep(d, m.dec2)), m.head)
    return b.add(x, y) if m.residual else y


def _inverted_residual(b: _Builder, x, blk):
    return b.add(x, b.conv(b.relu(b.conv(b.conv(x, blk.dw), blk.pw1)), blk.pw2), b.name(blk))


def _build_fast(b: _Builder, x, m):
    Up, S2D, D2S = _custom_layers()
    r = m.scale
    perm = torch_to_tf_channel_perm(3, r)
    u = S2D(r)(x)
    f = b.relu(b.conv(u, m.stem, in_perm=perm))
    for blk in m.enc:
        f = _inverted_residual(b, f, blk)
    low = b.maxpool2(f)
    for blk in m.low:
        low = _inverted_residual(b, low, blk)

    def descend(t, i):
        if i >= len(m.deep):
            return t
        y = b.maxpool2(t)
        for blk in m.deep[i]:
            y = _inverted_residual(b, y, blk)
        return b.add(t, Up()(b.conv(descend(y, i + 1), m.deep_out[i])))

    f = b.add(f, Up()(descend(low, 0)))
    for blk in m.dec:
        f = _inverted_residual(b, f, blk)
    res = b.conv(f, m.head, out_perm=perm)
    if m.edge:
        e = b.conv(u, m.edge_dw, in_perm=perm, out_perm=perm)
        if m.edge_width:  # its hidden channels have no pixel-shuffle order to permute
            e = b.relu(b.add(b.conv(e, m.edge_in, in_perm=perm), b.conv(f, m.edge_gate)))
        res = b.add(res, b.conv(e, m.edge_pw, in_perm=None if m.edge_width else perm,
                                out_perm=perm))
    y = b.add(x, D2S(r)(res), None if m.detail else OUTPUT)
    if m.detail:
        perm2 = torch_to_tf_channel_perm(3, 2)
        g = b.relu(b.conv(S2D(2)(y), m.detail_stem, in_perm=perm2))
        for blk in m.detail_blocks:
            g = _inverted_residual(b, g, blk)
        y = b.add(y, D2S(2)(b.conv(g, m.detail_head, out_perm=perm2)), OUTPUT)
    return y


def _gated_block(b: _Builder, x, blk):
    x = b.add(x, b.conv(_gate(b.conv(b.conv(x, blk.pw1), blk.dw)), blk.pw2))
    return b.add(x, b.conv(_gate(b.conv(x, blk.ffn1)), blk.ffn2), b.name(blk))


def _build_edge(b: _Builder, x, m):
    _, S2D, D2S = _custom_layers()
    r = m.scale
    perm = torch_to_tf_channel_perm(3, r)
    u = S2D(r)(x)
    f = b.conv(u, m.stem, in_perm=perm)
    skips = []
    for blocks, down in zip(m.encoders, m.downs):
        for blk in blocks:
            f = _gated_block(b, f, blk)
        skips.append(f)
        f = b.conv(S2D(2)(f), down, in_perm=torch_to_tf_channel_perm(f.shape[-1], 2))
    for blk in m.middle:
        f = _gated_block(b, f, blk)
    for i in reversed(range(len(m.decoders))):
        up = m.ups[i]
        f = D2S(2)(b.conv(f, up, out_perm=torch_to_tf_channel_perm(up.out_channels // 4, 2)))
        f = b.add(f, skips[i])
        for blk in m.decoders[i]:
            f = _gated_block(b, f, blk)
    res = b.conv(f, m.head, out_perm=perm)
    if m.detail:
        e = b.conv(u, m.detail_dw, in_perm=perm, out_perm=perm)
        e = b.relu(b.add(b.conv(e, m.detail_in, in_perm=perm), b.conv(f, m.detail_gate)))
        res = b.add(res, b.conv(e, m.detail_out, out_perm=perm))
    return b.add(x, D2S(r)(res), OUTPUT)


def build_keras_student(model: nn.Module, batch: int | None = 1):
    """A Keras functional model, NHWC RGB float32 input [batch, None, None, 3], with the
    PyTorch student's weights. Raises NotImplementedError for unknown architectures."""
    import keras

    from distill.students import EdgeStudent, FastStudent, SeedStudent

    builders = {SeedStudent: _build_seed, FastStudent: _build_fast, EdgeStudent: _build_edge}
    build = builders.get(type(model))
    if build is None:
        raise NotImplementedError(f"no Keras rebuild for {type(model).__name__}; "
                                  f"supported: {[c.__name__ for c in builders]}")
    b = _Builder()
    b.names = {id(mod): name for name, mod in model.named_modules() if name}
    inp = keras.Input(shape=(None, None, 3), batch_size=batch, name="input")
    out = build(b, inp, model)
    km = keras.Model(inp, out, name=getattr(model, "arch_name", type(model).__name__))
    for layer, weights in b.assign:
        layer.set_weights(weights)
    return km
