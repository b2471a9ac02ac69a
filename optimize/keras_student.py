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
- padding "same" equals PyTorch's padding="same", and padding=dilation*(k//2) for odd k, at
  stride 1 (dilated too: both pad dilation*(k-1) in all, the smaller half first).
- MaxPool2d(2) -> MaxPool2D(2) ("valid"; inputs are padded to the model's multiple).
- nn.Upsample(x2, nearest) -> the channels four times, then depth_to_space(2): every output
  pixel is its floor(dst/2) source, as in PyTorch, for any input size (Keras' UpSampling2D bakes
  the static shape in; a resize to 2 * tf.shape(x) adds SHAPE ops and a dynamic-sized tensor).
- PixelUnshuffle/PixelShuffle(r) -> tf.nn.space_to_depth/depth_to_space(r). The channel orders
  differ: PyTorch packs channel c, offset (i, j) at c*r*r + i*r + j, TF at (i*r + j)*C + c. The
  1x1 conv after the unshuffle gets its *input* channels permuted, the 1x1 conv before the
  shuffle its *output* channels (and bias), so the Keras model computes exactly the same function.
"""
from __future__ import annotations

import collections
import contextlib
import re

import numpy as np
import torch.fx as fx
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
        dh, dw = conv.dilation
        if conv.stride != (1, 1):
            raise NotImplementedError(f"conv {conv}: stride {conv.stride} (only stride 1; "
                                      "pixel_unshuffle or max pooling downsample)")
        # Keras' "same" pads dilation*(k-1) in all, the smaller half first, as PyTorch's
        # padding="same" does (even kernels too); a number equals it for odd kernels only
        # ("valid" is padding 0: 'same' for a 1x1 kernel).
        pad = (0, 0) if conv.padding == "valid" else conv.padding
        if pad != "same" and (kh % 2 == 0 or kw % 2 == 0 or tuple(pad) != (
                dh * (kh // 2), dw * (kw // 2))):
            raise NotImplementedError(f"conv {conv}: only 'same' padding is supported "
                                      "(padding='same', or dilation*(k//2) for an odd kernel k)")
        if conv.padding_mode != "zeros":   # Keras' "same" pads with zeros only
            raise NotImplementedError(f"conv {conv}: padding_mode={conv.padding_mode!r} (only "
                                      "'zeros' is supported)")
        bias = conv.bias is not None
        name = name or self.name(conv)
        if conv.groups == 1:
            w = conv_kernel(conv)
            if in_perm is not None:
                w = w[:, :, in_perm, :]
            if out_perm is not None:
                w = w[:, :, :, out_perm]
            layer = k.layers.Conv2D(conv.out_channels, (kh, kw), padding="same", use_bias=bias,
                                    dilation_rate=(dh, dw), name=name)
            weights = [w]
        elif conv.groups == conv.in_channels == conv.out_channels:
            if (in_perm is None) != (out_perm is None) or (
                    in_perm is not None and not np.array_equal(in_perm, out_perm)):
                raise NotImplementedError("a depthwise conv keeps its channel order: "
                                          "in_perm and out_perm must be equal")
            layer = k.layers.DepthwiseConv2D((kh, kw), padding="same", use_bias=bias,
                                             dilation_rate=(dh, dw), name=name)
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
        # Four copies of the channels, then depth-to-space: each pixel fills its 2x2 block,
        # PyTorch's nearest x2, from constant shapes only (a resize to a size taken from
        # tf.shape leaves LiteRT's output dynamic, which GPU delegates and NNAPI refuse).
        def call(self, x):
            return tf.nn.depth_to_space(tf.concat([x, x, x, x], axis=-1), 2)

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


# What `_build_traced` rebuilds, by the name torch.fx gives each call.
TRACED_OPS = ("Conv2d or F.conv2d (stride 1, zero padding 'same'; groups 1 or depthwise)", "ReLU",
              "sigmoid",
              "max pooling (kernel = stride, or stride 1 and padding k//2 for an odd kernel)",
              "nearest x2 upsampling", "pixel_shuffle", "pixel_unshuffle",
              "add, sub (alpha= too) and mul (of tensors, numbers, or one value a channel), "
              "div (by a number or one value a channel)",
              "BatchNorm2d, its subclasses and F.batch_norm (eval mode)",
              "cat, chunk and split over channels",
              "Identity and dropout (eval mode)")


def _build_traced(b: _Builder, x, model: nn.Module):
    """Any student made of the operators in TRACED_OPS, rebuilt from its torch.fx graph (a
    student of a user's own, registered outside the project, has no hand-written twin).

    Each Keras tensor carries `perm` (TF channel k holds PyTorch channel perm[k], None: the
    same order) as the hand-written builders pass it by hand: a conv reads its input's order
    (its kernel's input axis permuted) and writes PyTorch's, or the order the pixel_shuffle it
    feeds needs; where two orders meet that no conv can absorb, a channel gather restores
    PyTorch's. What depends on the weights alone (a weight-standardised conv's weight) is
    computed here, once. An operator outside TRACED_OPS raises NotImplementedError naming it."""
    import operator

    import keras
    import tensorflow as tf
    import torch
    import torch.nn.functional as F

    Up, S2D, D2S = _custom_layers()
    cls = type(model).__name__
    try:
        gm = fx.GraphModule(model, _Tracer().trace(model))
    except Exception as e:   # control flow on values, an untraceable call
        raise NotImplementedError(f"{cls} cannot be traced by torch.fx for the Keras rebuild "
                                  f"({type(e).__name__}: {e})") from None
    for node in list(gm.graph.nodes):
        _canonical(gm.graph, node)
    mods = dict(gm.named_modules())
    users = {n: list(n.users) for n in gm.graph.nodes}
    # Layers are named below, from the graph: the module names `build_keras_student` set gave a
    # conv called twice its name twice, which Keras refused ("used 2 times").
    b.names = {}

    def unsupported(node, why: str = ""):
        if node.op == "call_module":
            what = f"{node.target} ({type(mods[node.target]).__name__})"
        elif node.op == "call_method":
            what = f"Tensor.{node.target}"
        elif node.target is getattr:   # x.shape: sizes computed in the graph
            what = f"Tensor.{node.args[1]}"
        else:
            what = getattr(node.target, "__name__", str(node.target))
        # Which block and line: "uses Tensor.permute" named neither, in a student with a
        # permute in every block.
        block, stack = "", list((node.meta.get("nn_module_stack") or {}).values())
        if node.op != "call_module" and stack:
            path, kind = stack[-1][0], stack[-1][1]
            block = f" in {path} ({getattr(kind, '__name__', str(kind).rsplit('.', 1)[-1])})"
        where = f", at {_source(node)[2:-1]}" if _source(node) else ""
        raise NotImplementedError(
            f"{cls} uses {what}{why}{block}, which the Keras rebuild for TFLite does not "
            f"cover{where} (it covers {', '.join(TRACED_OPS)})")

    def gather(t, idx):
        return keras.layers.Lambda(lambda a, i=idx: tf.gather(a, i, axis=-1))(t)

    def ident(v):   # the tensor in PyTorch's channel order, by a gather if it is in another
        t, perm = v
        return t if perm is None else gather(t, np.argsort(perm))

    def shuffle_perm(node):   # the order a conv must write for the pixel_shuffle it feeds
        us = users[node]
        if len(us) == 1 and _is(us[0], F.pixel_shuffle, nn.PixelShuffle, mods):
            r = _block(us[0], mods)
            return torch_to_tf_channel_perm(node.meta["channels"] // (r * r), r)
        return None

    def take_order(node, perm) -> bool:
        """Give a conv whose output only meets `perm`'s tensor that order: its weights are set
        after the graph is built, so they are permuted still (`mix(u) + dw(u)`, u unshuffled,
        needs no gather)."""
        if node not in free:
            return False
        weights = free.pop(node)
        weights[0] = weights[0][..., perm]
        if len(weights) > 1:
            weights[1] = weights[1][perm]
        env[node] = (env[node][0], perm)
        return True

    def layer_name(target, name):
        """The module's name for its layer, as float layers are chosen by (`name`: OUTPUT for
        the last). "input" and OUTPUT are the model's own layers: a module named so, or called a
        second time, gets a name Keras makes up."""
        lname = name or (target if target not in (*named, "input", OUTPUT, None) else None)
        named.add(target)
        return lname

    def channels_of(a):   # None for a number or a constant tensor
        return a.meta.get("channels") if isinstance(a, fx.Node) else None

    def per_channel(node, value, c: int, perm):
        """A number, or a tensor of one value a channel (shape C x 1 x 1, as NAFNet's learned
        scales): the float32 constant an NHWC tensor of `c` channels in order `perm` takes."""
        v = torch.as_tensor(value, dtype=torch.float32).detach()
        if v.numel() == 1:
            return np.float32(v.item())
        try:
            ok = torch.broadcast_shapes(v.shape, (1, c, 1, 1)) == (1, c, 1, 1)
        except RuntimeError:   # shapes that do not broadcast
            ok = False
        if not ok:
            unsupported(node, f" with a constant of shape {tuple(v.shape)} (covered: a number, "
                        f"or one a channel: {c} x 1 x 1)")
        v = v.expand(1, c, 1, 1).reshape(c).numpy()
        return v if perm is None else v[perm]

    def affine(node, arg, scale=None, shift=None, name=None):
        """arg * scale + shift, in arg's channel order (scale, shift: see per_channel; None:
        none). The converter folds it into the conv before it where there is one."""
        (t, perm), c = env[arg], channels_of(arg)
        s = None if scale is None else per_channel(node, scale, c, perm)
        b = None if shift is None else per_channel(node, shift, c, perm)
        y = keras.layers.Lambda(lambda a, s=s, b=b: (a if s is None else a * s)
                                + (0 if b is None else b), name=name)(t)
        env[node], node.meta["channels"] = (y, perm), c

    ADD = (operator.add, operator.iadd, torch.add, "add")
    SUB = (operator.sub, operator.isub, torch.sub, "sub")
    DIV = (operator.truediv, operator.itruediv, torch.div, "div")   # by a constant only
    BINARY = (*ADD, *SUB, operator.mul, operator.imul, torch.mul, "mul")
    CAT, CHUNK = (torch.cat, torch.concat, torch.concatenate), (torch.chunk, "chunk")
    SPLIT = (torch.split, "split")
    env: dict = {}
    consts: dict = {}   # node -> its value, for what depends on no input
    free: dict = {}   # conv node -> its weights, while no consumer has read its order
    named: set[str] = set()
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    final = out_node.args[0]
    for node in gm.graph.nodes:
        if node.op in ("get_attr", "call_function", "call_method", "call_module") and all(
                a in consts for a in node.all_input_nodes):
            # Computed from the weights alone (a weight-standardised conv's weight): its value.
            consts[node] = _evaluate(gm, mods, node, consts)
            # unless drawn anew each call (torch.randn_like of a weight), which no constant is
            if node.op != "get_attr" and isinstance(consts[node], torch.Tensor) and not (
                    torch.equal(consts[node], _evaluate(gm, mods, node, consts))):
                unsupported(node, " (a random draw each call, no weight)")
            continue
        args = [(env[a] if a in env else consts[a]) if isinstance(a, fx.Node) else a
                for a in node.args]
        name = OUTPUT if node is final else None
        if node.op == "placeholder":
            if env:
                unsupported(node, " (a second input)")
            env[node], node.meta["channels"] = (x, None), 3
            continue
        if node.op == "output":
            break
        mod = mods.get(node.target) if node.op == "call_module" else None
        # A module's target is its attribute path: `self.relu = nn.LeakyReLU()` is no "relu".
        fn = None if mod is not None else node.target
        if fn in (torch.conv2d, F.conv2d):   # a Conv2d subclass's own forward, or F.conv2d
            mod, target = _functional_conv(node, consts, unsupported)
        else:
            target = node.target
        if isinstance(mod, nn.Conv2d):
            t, perm = args[0]
            node.meta["channels"] = mod.out_channels
            # depthwise keeps its input's order
            out_perm = shuffle_perm(node) if mod.groups == 1 else perm
            try:
                y = b.conv(t, mod, in_perm=perm, out_perm=out_perm, name=layer_name(target, name))
            except NotImplementedError as e:
                unsupported(node, f" ({e})")
            env[node] = (y, out_perm)
            if mod.groups == 1 and out_perm is None and len(users[node]) == 1:
                free[node] = b.assign[-1][1]
            continue
        if isinstance(mod, _DROPOUT) or fn in _F_DROPOUT:
            # Dropout is the identity in eval mode, the one exported; in training mode (or
            # F.dropout's default training=True) it drops channels the rebuild would keep.
            if mod is not None and mod.training:
                unsupported(node, " in training mode (call .eval() first)")
            if mod is None and node.kwargs.get("training", True):
                unsupported(node, " with training=True, which drops in eval mode too (pass "
                            "training=self.training)")
            mod = nn.Identity()
        if isinstance(mod, nn.Identity):
            env[node], node.meta["channels"] = args[0], channels_of(node.args[0])
            continue
        c_in = channels_of(node.args[0]) if node.args else None
        if _is(node, F.relu, nn.ReLU, mods) or fn in (torch.relu, "relu"):
            t, perm = args[0]
            y = keras.layers.ReLU(name=name)(t)
            env[node], node.meta["channels"] = (y, perm), c_in
        elif fn in (torch.sigmoid, F.sigmoid, "sigmoid") or isinstance(mod, nn.Sigmoid):
            t, perm = args[0]
            y = keras.layers.Activation("sigmoid", name=name)(t)
            env[node], node.meta["channels"] = (y, perm), c_in
        elif (pool := _max_pool(node, mod)) is not None:
            layer, why = _max_pool_layer(pool)
            if layer is None:
                unsupported(node, f" with {why}")
            t, perm = args[0]
            env[node], node.meta["channels"] = (layer(t), perm), c_in
        elif _nearest2(node, mod):
            t, perm = args[0]
            env[node], node.meta["channels"] = (Up()(t), perm), c_in
        elif _is(node, F.pixel_unshuffle, nn.PixelUnshuffle, mods):
            r = _block(node, mods)
            t, perm = args[0]
            new = torch_to_tf_channel_perm(c_in, r)
            if perm is not None:   # the input's channel ch is PyTorch's perm[ch]
                new = perm[new // (r * r)] * r * r + new % (r * r)
            env[node], node.meta["channels"] = (S2D(r)(t), new), c_in * r * r
        elif _is(node, F.pixel_shuffle, nn.PixelShuffle, mods):
            r = _block(node, mods)
            t, perm = args[0]
            c = c_in // (r * r)
            if perm is None or not np.array_equal(perm, torch_to_tf_channel_perm(c, r)):
                # PyTorch's order, then the one depth_to_space reads
                t = gather(ident(args[0]), torch_to_tf_channel_perm(c, r))
            env[node], node.meta["channels"] = (D2S(r)(t), None), c
        elif fn is F.batch_norm:   # a batch norm subclass's own forward, or F.batch_norm
            a = _bound(F.batch_norm, node)
            stats = [a.get(k) for k in ("running_mean", "running_var")]
            owner = _owner(stats[0]) or _owner(a.get("weight"))
            if None in stats:   # eval mode too: each frame normalised by its own statistics
                unsupported(node, " without running statistics ("
                            + (f"{owner}: " if owner else "") + "track_running_stats=False: it "
                            "normalises each frame by its own statistics)")
            if a.get("training"):
                unsupported(node, " in training mode (call .eval() first, or pass "
                            "training=False)")
            if not all(a.get(k) is None or a[k] in consts for k in (
                    "running_mean", "running_var", "weight", "bias")):
                unsupported(node, " with statistics computed from the input")
            mean, var = consts[a["running_mean"]], consts[a["running_var"]]
            scale = 1 / torch.sqrt(var + a.get("eps", 1e-5))
            if a.get("weight") is not None:
                scale = scale * consts[a["weight"]]
            shift = -mean * scale + (consts[a["bias"]] if a.get("bias") is not None else 0)
            affine(node, a["input"], scale.reshape(-1, 1, 1), shift.reshape(-1, 1, 1),
                   layer_name(owner, name))
        elif isinstance(mod, (nn.BatchNorm2d, nn.SyncBatchNorm)):
            if mod.training:
                unsupported(node, " in training mode (call .eval() first)")
            if mod.running_var is None:
                unsupported(node, " without running statistics (track_running_stats=False: it "
                            "normalises each frame by its own statistics)")
            scale = 1 / torch.sqrt(mod.running_var + mod.eps)
            if mod.affine:
                scale = scale * mod.weight
            shift = -mod.running_mean * scale + (mod.bias if mod.affine else 0)
            affine(node, node.args[0], scale.reshape(-1, 1, 1), shift.reshape(-1, 1, 1),
                   layer_name(node.target, name))
        elif fn in BINARY + DIV and len(args) == 2 and not node.kwargs and not all(
                isinstance(a, tuple) for a in args):
            # A tensor and a number or a constant tensor (a learned scale of a residual)
            i = 0 if isinstance(args[0], tuple) else 1
            value = args[1 - i]
            if fn in DIV and i == 1:
                unsupported(node, " of a constant by a tensor")
            if fn in DIV and bool(torch.as_tensor(value).eq(0).any()):
                # PyTorch's output is inf or NaN there too; 1 / 0 was a bare ZeroDivisionError
                raise ValueError(f"{cls} divides by zero at node {node.name!r}"
                                 f"{_source(node)}: its output is inf or NaN there, in "
                                 "PyTorch too; nothing to export")
            scale, shift = ((None, value) if fn in ADD else
                            ((None, -value) if i == 0 else (-1, value)) if fn in SUB else
                            (1 / value, None) if fn in DIV else (value, None))
            affine(node, node.args[i], scale, shift, name=name)
        elif fn in DIV and not node.kwargs:
            unsupported(node, " by a tensor (covered: by a number or one value a channel)")
        elif fn in BINARY and len(args) == 2 and not node.kwargs:
            (ta, pa), (tb, pb) = args
            na, nb = node.args

            def same(p, q):
                return p is None and q is None or (p is not None and q is not None
                                                   and np.array_equal(p, q))
            if not same(pa, pb):
                # A conv free to take the other's order does; else (a broadcast too) both in
                # PyTorch's order.
                if channels_of(na) == channels_of(nb) and (
                        pa is None and take_order(na, pb) or pb is None and take_order(nb, pa)):
                    pa = pb if pa is None else pa
                else:
                    ta, tb, pa = ident(env[na]), ident(env[nb]), None
            layer = (keras.layers.Add if fn in ADD else keras.layers.Subtract if fn in SUB
                     else keras.layers.Multiply)
            env[node] = (layer(name=name)([ta, tb]), pa)
            node.meta["channels"] = max(channels_of(node.args[0]), channels_of(node.args[1]))
        elif fn in CAT + CHUNK + SPLIT and node.kwargs:   # keywords `_canonical` did not know
            known = {"tensors", "dim", "axis", "input", "tensor", "chunks",
                     "split_size_or_sections", "split_size"}   # (`dim=` was named for `out=`)
            odd = [k for k in node.kwargs if k not in known] or list(node.kwargs)
            unsupported(node, f" with {', '.join(f'{k}={node.kwargs[k]!r}' for k in odd)}")
        elif fn in CAT + CHUNK + SPLIT and _dim(node, 1 if fn in CAT else 2) not in (1, -3):
            unsupported(node, f" over dim={_dim(node, 1 if fn in CAT else 2)} (only over the "
                        "channels of N x C x H x W: dim=1 or dim=-3)")
        elif fn in CAT:
            if not isinstance(node.args[0], (list, tuple)):
                unsupported(node, " of a list computed in the graph (covered: a list of tensors)")
            if not all(a in env for a in node.args[0]):
                unsupported(node, " with a constant")
            parts = [env[a] for a in node.args[0]]
            perms, off = [], 0
            for a, (_, p_) in zip(node.args[0], parts):
                perms.append((np.arange(a.meta["channels"]) if p_ is None else p_) + off)
                off += a.meta["channels"]
            perm = np.concatenate(perms)
            y = keras.layers.Concatenate(axis=-1, name=name)([t for t, _ in parts])
            env[node] = (y, None if np.array_equal(perm, np.arange(off)) else perm)
            node.meta["channels"] = off
        elif fn in CHUNK + SPLIT:
            size = node.args[1]
            if fn in CHUNK:   # PyTorch's chunks: ceil(C / k) channels each, the last the rest
                if not isinstance(size, int) or isinstance(size, bool) or size < 1:
                    unsupported(node, f" into {size!r} chunks (covered: a positive number)")
                size = -(-c_in // size)
            if isinstance(size, int) and not isinstance(size, bool) and size > 0:
                sizes = [size] * (c_in // size) + ([c_in % size] if c_in % size else [])
            elif isinstance(size, (list, tuple)) and all(
                    isinstance(s_, int) and not isinstance(s_, bool) and s_ > 0 for s_ in size):
                sizes = list(size)
                if sum(sizes) != c_in:   # PyTorch refuses it when run; tracing did not run it
                    unsupported(node, f" into sizes {sizes}, which sum to {sum(sizes)}, not its "
                                f"{c_in} channels")
            else:
                unsupported(node, f" into {size!r} (covered: a positive number of channels, or "
                            "a list of them)")
            t, ends = ident(args[0]), np.cumsum([0, *sizes]).tolist()
            env[node] = ([t[..., a:e] for a, e in zip(ends, ends[1:])], None)
            node.meta["channels"] = sizes   # each part's, read by the getitem of one
        elif fn is operator.getitem and isinstance(args[0], tuple) and isinstance(
                args[0][0], list):
            if not isinstance(node.args[1], int):
                unsupported(node, f" with index {node.args[1]!r} (covered: one part by its "
                            "number)")
            env[node] = (args[0][0][node.args[1]], None)
            node.meta["channels"] = node.args[0].meta["channels"][node.args[1]]
        else:
            unsupported(node)
    return ident(env[final])


class _Tracer(fx.Tracer):
    record_stack_traces = True   # a refusal names the line of the student's code

    def is_leaf_module(self, m, qualname):
        # fx traces modules not defined in torch.nn into their code: a user's
        # `class MyConv(nn.Conv2d)` that keeps Conv2d's forward is the conv it was built as,
        # and a `class MyBN(nn.BatchNorm2d)` the batch norm (traced, its input check failed:
        # "symbolically traced variables cannot be used as inputs to control flow").
        return (isinstance(m, nn.Conv2d) and type(m).forward is nn.Conv2d.forward
                and type(m)._conv_forward is nn.Conv2d._conv_forward
                ) or (isinstance(m, nn.BatchNorm2d) and type(m).forward is nn.BatchNorm2d.forward
                      ) or super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):
        # A batch norm subclass with a forward of its own is traced into: its
        # `super().forward(x)` checks the input's dim (control flow fx cannot trace) and then
        # calls F.batch_norm, which the rebuild reads; the input here is N x C x H x W.
        if not isinstance(m, nn.modules.batchnorm._BatchNorm) or self.is_leaf_module(
                m, self.path_of_module(m)):
            return super().call_module(m, forward, args, kwargs)
        m._check_input_dim = lambda input: None
        try:
            return super().call_module(m, forward, args, kwargs)
        finally:
            del m._check_input_dim


def _source(node) -> str:
    """' (file.py:12: `code`)', the student's line that made `node`, or ''. The trace runs from
    the student's forward, through each block it calls, into torch's own tracing code: the
    line is the last one outside torch (the first named the block's call, not its division)."""
    import os

    import torch

    own = os.path.dirname(torch.__file__) + os.sep
    frames = [m for m in re.finditer(r'File "([^"]+)", line (\d+), in [^\n]*\n\s*([^\n]*)',
                                     node.meta.get("stack_trace") or "")
              if not m[1].startswith(own)]
    return f" ({frames[-1][1]}:{frames[-1][2]}: `{frames[-1][3].strip()}`)" if frames else ""


def _canonical(graph, node) -> None:
    """Rewrites the calls the rebuild reads by position, as a user may spell them with keywords
    (`torch.cat(tensors=[a, b], dim=1)`, `x.split(8, dim=1)`), to positional arguments (tensors,
    dim / input, chunks or sizes, dim); `torch.add(a, b, alpha=k)` and sub to `a + b * k`, the
    multiplication a node of its own. A call it cannot bind is left as it is, for the rebuild
    to refuse naming it."""
    import inspect
    import operator

    import torch

    def cat(tensors, dim=0, axis=None):
        return (tensors, dim if axis is None else axis)

    def chunk(input, chunks, dim=0):
        return (input, chunks, dim)

    def split(tensor, split_size_or_sections=None, dim=0, split_size=None):
        return (tensor, split_size if split_size_or_sections is None else
                split_size_or_sections, dim)

    def add(input, other, *, alpha=1):
        return (input, other, alpha)

    target = node.target
    method = node.op == "call_method"
    if node.op not in ("call_function", "call_method"):
        return
    form = {torch.cat: cat, torch.concat: cat, torch.concatenate: cat, torch.chunk: chunk,
            torch.split: split, torch.add: add, torch.sub: add} if not method else {
            "chunk": chunk, "split": split, "add": add, "sub": add}
    try:
        fn = form.get(target)
    except TypeError:   # an unhashable target
        return
    if fn is None:
        return
    if "out" in node.kwargs and node.kwargs["out"] is None:   # PyTorch's default: a new tensor
        node.kwargs = {k: v for k, v in node.kwargs.items() if k != "out"}
    try:
        args = inspect.signature(fn).bind(*node.args, **node.kwargs)
    except TypeError:
        return
    canon = fn(*args.args, **args.kwargs)
    if fn is add:
        *canon, alpha = canon
        if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
            return
        if alpha != 1:
            with graph.inserting_before(node):
                canon[1] = graph.call_function(operator.mul, (canon[1], alpha))
            canon[1].meta["stack_trace"] = node.meta.get("stack_trace")
    node.args, node.kwargs = tuple(canon), {}


def _bound(fn, node) -> dict:
    """`node`'s arguments by the names of `fn`'s parameters (defaults left out)."""
    import inspect

    return dict(inspect.signature(fn).bind(*node.args, **node.kwargs).arguments)


def _owner(arg) -> str | None:
    """The module a weight or buffer read by `arg` (a get_attr node) belongs to ("bn" for
    bn.running_mean), None for anything else."""
    if not isinstance(arg, fx.Node) or arg.op != "get_attr":
        return None
    owner, _, attr = arg.target.rpartition(".")
    return owner or attr


def _evaluate(gm, mods, node, consts):
    import torch

    if node.op == "get_attr":
        value = gm
        for part in node.target.split("."):
            value = getattr(value, part)
        return value
    args = fx.node.map_arg(node.args, consts.__getitem__)
    kwargs = fx.node.map_arg(node.kwargs, consts.__getitem__)
    with torch.no_grad():
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], node.target)(*args[1:], **kwargs)
        return mods[node.target](*args, **kwargs)


def _functional_conv(node, consts, unsupported):
    """The nn.Conv2d that F.conv2d(x, weight, bias, stride, padding, dilation, groups) computes,
    its weight and bias computed from the model's weights alone (a subclass of nn.Conv2d with its
    own forward, a weight-standardised conv, traces to this); with the name of the module the
    weight belongs to."""
    import inspect

    import torch

    def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        return locals()

    a = inspect.signature(conv2d).bind(*node.args, **node.kwargs).arguments
    if not all(a.get(k) is None or a[k] in consts for k in ("weight", "bias")):
        unsupported(node, " (its weight computed from the input)")
    w = consts[a["weight"]]
    bias = consts[a["bias"]] if a.get("bias") is not None else None
    groups = a.get("groups", 1)
    conv = nn.Conv2d(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), a.get("stride", 1),
                     a.get("padding", 0), a.get("dilation", 1), groups, bias=bias is not None)
    with torch.no_grad():
        conv.weight.copy_(w)
        if bias is not None:
            conv.bias.copy_(bias)
    src = a["weight"]
    while src.op != "get_attr" and src.all_input_nodes:
        src = src.all_input_nodes[0]
    if src.op != "get_attr":
        return conv, None
    owner, _, attr = src.target.rpartition(".")
    return conv, owner or attr   # a parameter of the model itself: its own name


# The identity in eval mode (their base class is private).
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
            nn.FeatureAlphaDropout)
_F_DROPOUT = tuple(getattr(nn.functional, f) for f in (
    "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout"))


def _max_pool(node, mod) -> dict | None:
    """The settings of nn.MaxPool2d or F.max_pool2d (None: neither), pairs as pairs."""
    import torch.nn.functional as F

    def pair(v):
        return tuple(v) if isinstance(v, (tuple, list)) else (v, v)

    if isinstance(mod, nn.MaxPool2d):
        a = {k: getattr(mod, k) for k in ("kernel_size", "stride", "padding", "dilation",
                                          "ceil_mode", "return_indices")}
    elif node.op == "call_function" and node.target is F.max_pool2d:
        def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                       return_indices=False):
            return locals()
        a = max_pool2d(*node.args, **node.kwargs)
        del a["input"]
    else:
        return None
    if a["stride"] in (None, ()):   # PyTorch's default: the kernel size
        a["stride"] = a["kernel_size"]
    return {k: pair(v) if k in ("kernel_size", "stride", "padding", "dilation") else v
            for k, v in a.items()}


def _max_pool_layer(p: dict) -> tuple[object, str]:
    """The Keras MaxPool2D computing what a max pooling with settings `p` does, or (None, the
    setting it cannot rebuild). Windows side by side (kernel = stride, no padding) floor the
    size as PyTorch does; stride 1 with padding k//2 is Keras' "same", whose padding, like
    PyTorch's, is never the maximum."""
    import keras

    k, st, pad = p["kernel_size"], p["stride"], p["padding"]
    for key in ("dilation", "ceil_mode", "return_indices"):
        if p[key] not in ((1, 1), False):
            value = p[key] if not isinstance(p[key], tuple) or p[key][0] != p[key][1] \
                else p[key][0]
            return None, f"{key}={value}"
    if k == st and pad == (0, 0):
        return keras.layers.MaxPool2D(k, strides=st, padding="valid"), ""
    if st == (1, 1) and k[0] % 2 and k[1] % 2 and pad == (k[0] // 2, k[1] // 2):
        return keras.layers.MaxPool2D(k, strides=1, padding="same"), ""
    return None, (f"kernel_size={k}, stride={st}, padding={pad} (covered: kernel_size = "
                  "stride with padding 0, or stride 1 with an odd kernel and padding k//2)")


def _nearest2(node, mod) -> bool:
    """nn.Upsample or F.interpolate by 2, nearest."""
    import torch.nn.functional as F

    if isinstance(mod, nn.Upsample):
        mode, scale, size = mod.mode, mod.scale_factor, mod.size
    elif node.op == "call_function" and node.target is F.interpolate:
        kw = node.kwargs
        mode, scale, size = kw.get("mode", "nearest"), kw.get("scale_factor"), kw.get("size")
        if len(node.args) > 1:
            size = node.args[1]
        if len(node.args) > 2:
            scale = node.args[2]
    else:
        return False
    return mode == "nearest" and size is None and scale in (2, 2.0, (2, 2), (2.0, 2.0))


def _is(node, fn, module_cls, mods) -> bool:
    return (node.op == "call_function" and node.target is fn) or (
        node.op == "call_module" and isinstance(mods.get(node.target), module_cls))


def _block(node, mods) -> int:
    if node.op == "call_module":
        m = mods[node.target]
        return m.upscale_factor if isinstance(m, nn.PixelShuffle) else m.downscale_factor
    return node.args[1] if len(node.args) > 1 else next(iter(node.kwargs.values()))


def _dim(node, pos: int) -> int | None:
    return node.args[pos] if len(node.args) > pos else node.kwargs.get("dim", 0)


def build_keras_student(model: nn.Module, batch: int | None = 1):
    """A Keras functional model, NHWC RGB float32 input [batch, None, None, 3], with the
    PyTorch student's weights: the hand-written twin of a built-in student, else one rebuilt
    from the student's torch.fx graph (`_build_traced`). NotImplementedError names what
    neither covers."""
    import keras

    from distill.students import EdgeStudent, FastStudent, SeedStudent, keras_twin

    if (twin := keras_twin(model)) is not None:
        return _checked_twin(model, twin, batch)
    builders = {SeedStudent: _build_seed, FastStudent: _build_fast, EdgeStudent: _build_edge}
    build = builders.get(type(model), _build_traced)
    b = _Builder()
    b.names = {id(mod): name for name, mod in model.named_modules() if name}
    inp = keras.Input(shape=(None, None, 3), batch_size=batch, name="input")
    out = build(b, inp, model)
    km = keras.Model(inp, out, name=_scope_name(getattr(model, "arch_name",
                                                         type(model).__name__)))
    for layer, weights in b.assign:
        layer.set_weights(weights)
    return km


def _scope_name(name: str) -> str:
    """`name` as TensorFlow takes a model's name, as a root scope: a class named `_Mine`, or a
    twin named "my twin", failed to convert ("not a valid root scope name", or a TypeError)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip("_-") or "student"


@contextlib.contextmanager
def fresh_keras_names():
    """Keras's name counters as a new process starts them, for the models built inside: names
    are counted per process ("fast", then "fast_1"; "re_lu", then "re_lu_9") and the converter
    writes them into the .tflite, so a second export in one process (a notebook, the bench, a
    test) built other bytes from the same weights, crops and seed. The caller's counters are
    put back after."""
    try:
        from keras.src.backend.common import global_state
    except ImportError:   # another Keras: its names as they come
        yield
        return
    key = "object_name_uids"
    was = global_state.get_global_attribute(key)
    global_state.set_global_attribute(key, collections.defaultdict(int))
    try:
        yield
    finally:
        global_state.set_global_attribute(key, was)


@contextlib.contextmanager
def _made_up_names(into: set):
    """Collects the names Keras makes up (`into`) for the layers a twin gives no name: the
    first Conv2D of a process is "conv2d", a later one "conv2d_3", so such a name is no module's
    even where a module is called so (float layers are found by the names a twin's author
    gave)."""
    try:
        from keras.src.ops import operation
        made_up = operation.auto_name
    except (ImportError, AttributeError):   # another Keras: every name counts as given
        yield
        return

    def auto_name(prefix):
        name = made_up(prefix)
        into.add(name)
        return name

    operation.auto_name = auto_name
    try:
        yield
    finally:
        operation.auto_name = made_up


def _checked_twin(model: nn.Module, twin, batch: int | None):
    """A hand-written twin registered with a user's student (`register(keras_twin=...)`),
    checked against the student: a wrong weight layout would otherwise surface as a failed
    parity gate after a long INT8 calibration, naming no cause."""
    import keras
    import torch

    what = (f"the Keras twin of student {model.arch_name!r} "
            f"({getattr(twin, '__module__', '?')}.{getattr(twin, '__qualname__', twin)})")
    made: set[str] = set()
    try:
        with _made_up_names(made):
            km = twin(model, batch)
    except Exception as e:   # Keras' own message ("The name "b" is used 2 times") names no twin
        raise ValueError(f"{what} failed: {type(e).__name__}: {e}") from e
    if not isinstance(km, keras.Model):
        raise ValueError(f"{what} returned {type(km).__name__ if km is not None else None}, "
                         "not a keras.Model")
    km._made_up_names = frozenset(made)   # read by float_layers.twin_named_layers
    km.name = _scope_name(km.name)
    shape = tuple(getattr(km, "input_shape", ()) or ())   # a subclassed Model never called: ()
    if shape != (batch, None, None, 3):
        raise ValueError(f"{what} takes input {shape}; it must take keras.Input((None, None, 3),"
                         f" batch_size={batch}), NHWC RGB of any size")
    m = int(getattr(model, "multiple", 1))
    h, w = m * -(-40 // m), m * -(-56 // m)
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x)[0].permute(1, 2, 0).numpy()
    out = np.asarray(km(x.permute(0, 2, 3, 1).numpy()))[0]
    if out.shape != ref.shape:
        raise ValueError(f"{what} maps a 1x{h}x{w}x3 input to {'x'.join(map(str, out.shape))}; "
                         f"the student to {h}x{w}x3")
    diff = float(np.abs(out - ref).max())
    if not diff <= 1e-3:
        raise ValueError(f"{what} differs from the student by up to {diff:.3g} on a {h}x{w} "
                         "frame (float32); it must compute the same function with the same "
                         "weights (a kernel's axes: PyTorch [out, in, kh, kw] is Keras "
                         "[kh, kw, in, out])")
    return km
