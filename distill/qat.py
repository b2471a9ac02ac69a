"""Quantisation-aware fine-tuning: the student trains with INT8 rounding simulated in its forward,
so that the post-training INT8 exports (ONNX Runtime, TFLite, ModelOpt QDQ) lose less.

The simulation follows what those exporters do: convolution weights symmetric per output channel
(int8, -127..127); the outputs of every convolution, of the residual blocks (their adds) and
gates (their products), and of the network asymmetric per tensor (uint8 over a running min/max
range that always includes 0). Rounding passes gradients straight through
(torch.fake_quantize_*). The student itself is untouched: weights are fake-quantised on the way
into `torch.func.functional_call`, activations by forward hooks that act only inside
`FakeQuantForward`, so checkpoints, the EMA, validation and export see the plain float model.
The observed ranges live in the wrapper; a training checkpoint (last.pt) keeps them
(`ranges`, `load_ranges`), so a resumed run goes on with them as an uninterrupted one would. One
resumed from weights alone (best.pt, a stepN.pt) re-observes them within its first ~100 steps.
Under DDP the trainer gives every process the widest of the processes' ranges at each step, so
process 0's, which last.pt keeps, are every process's.

`keep_float` lists modules ("dec.0", "head", "output" for the network's output) whose weights
and outputs stay float, as in the mixed-precision exports (`optimize/float_layers.py`).
`round_glue=True` also rounds the functional adds, products and sigmoids the exporters quantise
(traced with torch.fx), with those downstream of a float module left float: a closer estimate
of the real runtimes for that search; training keeps the cheaper module-level simulation.
"""
from __future__ import annotations

import operator

import torch
from torch import nn

W_QMAX = 127          # int8 weights, symmetric (restricted range, as ORT and TFLite use)
A_LEVELS = 255        # uint8 activations


def fake_quant_weight(w: torch.Tensor, qmax: int = W_QMAX) -> torch.Tensor:
    """Per-output-channel symmetric int8 rounding of a conv weight (gradient passes through).
    qmax 63 is ONNX Runtime's reduce_range (7-bit weights)."""
    scale = w.detach().abs().amax(dim=tuple(range(1, w.dim()))).clamp_min(1e-8) / qmax
    zero = torch.zeros(scale.shape, dtype=torch.int32, device=w.device)
    return torch.fake_quantize_per_channel_affine(w, scale.float(), zero, 0, -qmax, qmax)


class RangeObserver:
    """Running min/max of a tensor (exponential moving average after the first batch)."""

    def __init__(self, momentum: float = 0.01):
        self.momentum = momentum
        self.lo: float | None = None
        self.hi: float | None = None

    def update(self, x: torch.Tensor) -> None:
        lo, hi = min(float(x.detach().min()), 0.0), max(float(x.detach().max()), 0.0)
        if self.lo is None:
            self.lo, self.hi = lo, hi
        else:
            m = self.momentum
            self.lo, self.hi = (1 - m) * self.lo + m * lo, (1 - m) * self.hi + m * hi

    def extend(self, x: torch.Tensor) -> None:
        """Widen the range to cover `x` (plain min/max calibration)."""
        lo, hi = min(float(x.detach().min()), 0.0), max(float(x.detach().max()), 0.0)
        self.lo = lo if self.lo is None else min(self.lo, lo)
        self.hi = hi if self.hi is None else max(self.hi, hi)

    def fake_quant(self, x: torch.Tensor, relu: bool = False) -> torch.Tensor:
        """Asymmetric uint8 rounding over the observed range (gradient passes through).
        relu: the range starts at 0, as for a convolution fused with the ReLU after it
        (negative values round to 0, which is what the ReLU makes of them)."""
        lo, hi = (0.0 if relu else float(self.lo)), float(self.hi)
        scale = max(hi - lo, 1e-8) / A_LEVELS
        zero = int(round(min(max(-lo / scale, 0), A_LEVELS)))
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, A_LEVELS)


def covers(names, module_path: str) -> bool:
    """Whether `module_path` ("dec.0.pw2") lies in one of `names` ("dec.0", "dec")."""
    return any(module_path == n or module_path.startswith(n + ".") for n in names)


_RELUS = (torch.relu, torch.nn.functional.relu, "relu")


def _trace(model: nn.Module):
    """torch.fx GraphModule of `model`, or None when its control flow cannot be traced."""
    from torch import fx

    try:
        return fx.symbolic_trace(model)
    except Exception:   # noqa: BLE001 (untraceable: simulate without what the graph tells)
        return None


def convs_before_relu(model: nn.Module, gm=None) -> set[str]:
    """Names of the convolutions whose only consumer is a ReLU (`gm`: the model traced with
    torch.fx, traced here if not given). The exporters fuse such pairs and quantise the ReLU's
    output, over a range that starts at 0. Empty if the model cannot be traced."""
    gm = gm if gm is not None else _trace(model)
    if gm is None:
        return set()
    graph = gm.graph
    mods = dict(model.named_modules())

    def is_relu(node) -> bool:
        return (node.op in ("call_function", "call_method") and node.target in _RELUS) or (
            node.op == "call_module" and isinstance(mods.get(node.target), nn.ReLU))

    return {str(n.target) for n in graph.nodes
            if n.op == "call_module" and isinstance(mods.get(n.target), nn.Conv2d)
            and len(n.users) == 1 and is_relu(next(iter(n.users)))}


class FakeQuantForward(nn.Module):
    """`model`'s forward with INT8 weights and activations simulated; gradients reach `model`'s
    own parameters. Ranges are observed while `model` is in training mode, frozen in eval mode."""

    def __init__(self, model: nn.Module, momentum: float = 0.01, weight_qmax: int = W_QMAX,
                 round_glue: bool = False):
        super().__init__()
        self.model = model
        self._gm = None
        self._float_nodes: tuple[tuple, set] = ((), set())
        self.weight_qmax = weight_qmax
        self._active = False
        self._calibrating = False
        self.keep_float: list[str] = []
        self.observers: dict[str, RangeObserver] = {"output": RangeObserver(momentum)}
        from .students import Gate, GatedBlock, InvertedResidual

        self._convs = {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
        traced = _trace(model)
        self._relu_after = convs_before_relu(model, traced)   # before the graph is rewritten
        self._hooks = []
        for name, mod in model.named_modules():
            if isinstance(mod, (nn.Conv2d, InvertedResidual, GatedBlock, Gate)):
                self.observers[name] = RangeObserver(momentum)
                self._hooks.append(mod.register_forward_hook(self._hook(name)))
        if len(self.observers) == 1:
            raise ValueError(f"{type(model).__name__} has no Conv2d layers to quantise")
        if round_glue and traced is not None:
            self._gm = self._glue_graph(traced, momentum)

    def _glue_graph(self, gm, momentum: float):
        """`gm` (the traced model) with a rounding call after every glue op."""
        funcs = {operator.add, torch.add, operator.mul, torch.mul, torch.sigmoid}
        methods = {"add", "mul", "sigmoid"}

        def glue(name: str, x: torch.Tensor) -> torch.Tensor:
            if not self._active or name in self._float_nodes[1]:
                return x
            return self._quant(name, x)

        graph = gm.graph
        for node in list(graph.nodes):
            if (node.op == "call_function" and node.target in funcs) or (
                    node.op == "call_method" and node.target in methods):
                name = f"glue:{node.name}"
                self.observers[name] = RangeObserver(momentum)
                with graph.inserting_after(node):
                    q = graph.call_function(glue, (name, node))
                node.replace_all_uses_with(q, delete_user_cb=lambda u, q=q: u is not q)
        graph.lint()
        gm.recompile()
        return gm

    def _update_float_nodes(self) -> None:
        """Glue nodes downstream of a float module (or of the output, for "output")."""
        key = tuple(self.keep_float)
        if self._gm is None or self._float_nodes[0] == key:
            return
        nodes = list(self._gm.graph.nodes)
        seeds = [n for n in nodes if n.op == "call_module" and self._float(str(n.target))]
        if "output" in self.keep_float:
            seeds += [a for n in nodes if n.op == "output" for a in n.all_input_nodes]
        seen, todo = set(), list(seeds)
        while todo:
            n = todo.pop()
            if n in seen:
                continue
            seen.add(n)
            todo.extend(n.users)
        names = {n.args[0] for n in seen if n.op == "call_function" and n.args
                 and isinstance(n.args[0], str) and n.args[0].startswith("glue:")}
        self._float_nodes = (key, names)

    def _hook(self, name: str):
        def hook(mod, inputs, out):
            return self._quant(name, out) if self._active else None
        return hook

    def _float(self, name: str) -> bool:
        return covers(self.keep_float, name)

    def _quant(self, name: str, x: torch.Tensor) -> torch.Tensor:
        obs = self.observers[name]
        if self._calibrating:
            obs.extend(x)
            return x
        if self._float(name):
            return x
        if self.model.training or obs.lo is None:
            obs.update(x)
        return obs.fake_quant(x, relu=name in self._relu_after)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = {n: fake_quant_weight(p, self.weight_qmax)
                  if n.endswith(".weight") and n[:-7] in self._convs
                  and not self._calibrating and not self._float(n[:-7])
                  else p for n, p in self.model.named_parameters()}
        self._active = True
        try:
            if self._gm is not None:
                self._update_float_nodes()
                own = dict(self._gm.named_parameters())
                y = torch.func.functional_call(self._gm, {n: params[n] for n in own}, (x,))
            else:
                y = torch.func.functional_call(self.model, params, (x,))
        finally:
            self._active = False
        return self._quant("output", y)

    @torch.no_grad()
    def calibrate(self, crops: torch.Tensor) -> None:
        """Set every range to the min/max over `crops` (N x 3 x H x W), one crop at a time, with
        the float model's activations (as the exporters' calibration sees them)."""
        for o in self.observers.values():
            o.lo = o.hi = None
        self._calibrating = True
        try:
            for x in crops:
                self(x[None])
        finally:
            self._calibrating = False

    def ranges(self) -> dict[str, list[float] | None]:
        """Every observed range as [lo, hi] (None: not observed yet), for a checkpoint."""
        return {n: None if o.lo is None else [float(o.lo), float(o.hi)]
                for n, o in self.observers.items()}

    def load_ranges(self, ranges: dict) -> None:
        """Go on with the ranges `ranges()` gave; ValueError naming the layers where they are
        another model's."""
        if set(ranges) != set(self.observers):
            diff = sorted(set(ranges) ^ set(self.observers))
            raise ValueError(f"the QAT ranges recorded are another model's ({len(diff)} "
                             f"layers differ: {', '.join(diff[:4])})")
        for n, r in ranges.items():
            o = self.observers[n]
            o.lo, o.hi = (None, None) if r is None else (float(r[0]), float(r[1]))

    def remove(self) -> None:
        """Detach the hooks: `model` is a plain float model again."""
        for h in self._hooks:
            h.remove()
        self._hooks = []
