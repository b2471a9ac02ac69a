"""Mixed precision for the INT8 formats: the layers nearest the output stay in float
(`sharpen export --float-layers`).

A student's INT8 error is the 8-bit rounding of its activations accumulated over ~20 layers
(its weights alone in int8 cost almost nothing). Keeping the last layers in float removes their
share, at the price of float kernels there: ONNX Runtime (`nodes_to_exclude`), TFLite (the MLIR
quantizer's `denylisted_nodes`) and ModelOpt (`nodes_to_exclude`) allow it; the rest of the
network stays int8. How many layers a budget needs, and what they cost in speed, is in the
student cards.

Layers are named by the student's PyTorch modules ("dec.0", "edge_gate", `OUTPUT` for the global
residual add that makes the image), so one list means the same layers in every format: ONNX node
names carry the module scope ("/dec/dec.0/pw2/Conv") and the Keras rebuild names its layers
after the modules; a hand-written Keras twin (`register(keras_twin=...)`) by the names its
author gave its layers: a name it lacks is refused for tflite-int8 naming the twin's layers, and
"auto" keeps to the layers it names there. A named layer stays float *with everything downstream
of it*: a float layer whose output the next int8 layer rounds again gains nothing, so float
regions are closed toward the output. "auto" picks the list: it simulates INT8 in PyTorch
(`distill.qat.FakeQuantForward` with every convolution, block, add, product and sigmoid rounded)
on the parity images and grows the float region from the output, each step the cut that most
lowers the worst image's loss, until the simulated artifact passes the export's own gates with a
margin. The simulation is an estimate (for `fast` it over-states full INT8's loss and
under-states what the early layers cost in TFLite), so the real artifacts are gated as usual and
one that fails is rebuilt with the search's next larger regions.
"""
from __future__ import annotations

import difflib
import re
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from torch import nn

from distill.qat import covers
from runtime.warn import SharpenWarning

OUTPUT = "output"       # the layer that makes the image (the global residual add)
# The INT8 formats whose quantizers can keep layers in float; engine-int8 is built from
# onnx-qdq-trt and inherits its choice.
FORMATS = ("onnx-int8", "tflite-int8", "onnx-qdq-trt")
# The INT8 formats whose input and output stay int8 (full-integer TFLite): float layers end
# in a requantisation to the int8 output, so OUTPUT alone in float changes nothing there.
INT8_IO = ("tflite-int8",)
AUTO = "auto"
NONE = "none"           # every layer int8 (the default)
MARGIN = 0.75           # auto aims at this fraction of each gate's allowed loss


class FloatLayersError(ValueError):
    """An unknown layer name in --float-layers."""


def units(model: nn.Module) -> list[str]:
    """The layers that can be kept in float: every parameterised top-level module, blocks of
    its containers (nn.Sequential / nn.ModuleList, recursively), and `OUTPUT`."""
    out: list[str] = []

    def walk(prefix: str, mod: nn.Module) -> None:
        for name, child in mod.named_children():
            path = f"{prefix}{name}"
            if isinstance(child, (nn.Sequential, nn.ModuleList)):
                walk(path + ".", child)
            elif any(True for _ in child.parameters()):
                out.append(path)

    walk("", model)
    return out + [OUTPUT]


def parse(spec: str | Sequence[str] | None, model: nn.Module) -> list[str] | str:
    """'none' / None -> [], 'auto' -> AUTO, 'dec,head' -> ['dec', 'head'] (each a module of
    `model` or `OUTPUT`; a container covers its blocks). Unknown names raise FloatLayersError."""
    if spec is None:
        return []
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [s.strip() for s in items if s.strip()]
    # the keywords in any case: no layer is named so ('Auto' was "not a layer")
    words = [n.lower() if n.lower() in (AUTO, NONE) else n for n in names]
    if not words or words == [NONE]:
        return []
    if words == [AUTO]:
        return AUTO
    arch = getattr(model, "arch_name", type(model).__name__)
    choices = f"choose from {', '.join(units(model))} (or 'auto' / 'none' alone)"
    known = {n for n, _ in model.named_modules() if n} | {OUTPUT}
    # in a list, a layer of one's own student named 'auto' or 'None' is that layer
    alone = [n for n, w in zip(names, words) if w in (AUTO, NONE) and n not in known]
    if alone:
        raise FloatLayersError(
            f"--float-layers: {repr(alone[0])} must be given alone, not in a list of layers "
            f"('{AUTO}' picks the layers, '{NONE}' keeps every layer int8); or {choices}")
    unknown = [n for n in names if n not in known]
    if unknown:
        one = len(unknown) == 1
        owner = _other_student_with(unknown, arch)
        if owner:   # a list made for another student: each has its own layer names
            hint = (f" ({'it is a layer' if one else 'they are layers'} of {owner}: each "
                    f"student has its own layers, and --float-layers auto picks {arch}'s)")
        else:
            # a typo; only close matches: a looser one "corrected" names to unrelated layers
            near = difflib.get_close_matches(unknown[0], units(model) + [AUTO, NONE], n=1,
                                             cutoff=0.75)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise FloatLayersError(
            f"--float-layers: {', '.join(map(repr, unknown))} "
            f"{'is not a layer' if one else 'are not layers'} of {arch}{hint}; " + choices)
    return list(dict.fromkeys(names))


def _other_student_with(names: Sequence[str], arch: str) -> str | None:
    """The registered student other than `arch` that has every one of `names` as a layer."""
    from distill.students import create_student, list_students

    for other in list_students():
        if other == arch:
            continue
        try:
            model = create_student(other)
        except Exception:  # noqa: BLE001 (a student that does not build is no answer)
            continue
        if set(names) <= set(units(model)):
            return other
    return None



# --------------------------------------------------------------------------- ONNX

def onnx_module_path(node_name: str) -> str:
    """'/dec/dec.0/pw2/Conv' -> 'dec.0.pw2' (the TorchScript exporter's scope names hold the full
    path of Sequential children, the attribute name of others)."""
    parts = [p for p in node_name.split("/") if p][:-1]
    path = ""
    for p in parts:
        path = p if not path or p.startswith(path + ".") else f"{path}.{p}"
    return path


def _downstream(seeds: set[int], outputs_of: list[list], consumers: dict) -> set[int]:
    """Indices of the ops reachable from `seeds` (themselves included)."""
    todo, seen = list(seeds), set(seeds)
    while todo:
        for t in outputs_of[todo.pop()]:
            for j in consumers.get(t, ()):
                if j not in seen:
                    seen.add(j)
                    todo.append(j)
    return seen


def onnx_nodes(proto, names: Sequence[str]) -> list[str]:
    """Names of the ONNX nodes of `names` and of every node downstream of them (OUTPUT: the
    node making the graph's output), in graph order."""
    nodes = list(proto.graph.node)
    outputs = {o.name for o in proto.graph.output}
    seeds = {i for i, n in enumerate(nodes)
             if covers(names, onnx_module_path(n.name) or "\0")
             or (OUTPUT in names and outputs & set(n.output))}
    consumers: dict = {}
    for i, n in enumerate(nodes):
        for t in n.input:
            consumers.setdefault(t, []).append(i)
    keep = _downstream(seeds, [list(n.output) for n in nodes], consumers)
    return [nodes[i].name for i in sorted(keep)]


# --------------------------------------------------------------------------- TFLite

def _layer_names(tensor_name: str) -> list[str]:
    """Keras layer names in a converted tensor name ('fast_1/re_lu_1/Relu;fast_1/stem_1/BiasAdd'
    -> ['re_lu', 'stem']): TF's function scopes append '_<n>' to each layer name."""
    out = []
    for part in tensor_name.split(";"):
        bits = part.split("/")
        if len(bits) >= 3:
            out.append(re.sub(r"_\d+$", "", bits[1]))
    return out


def tflite_nodes(tflite_bytes: bytes, names: Sequence[str]) -> list[str]:
    """Output tensor names of the ops of a (calibrated) TFLite model that belong to `names` or
    lie downstream of them, as the MLIR quantizer's `denylisted_nodes` wants them. The Keras
    rebuild names its layers after the student's modules (`optimize.keras_student`)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=bytes(tflite_bytes))
    tensors = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    graph_out = {d["index"] for d in interp.get_output_details()}
    ops = interp._get_ops_details()   # noqa: SLF001 (no public op listing in LiteRT)
    outputs_of = [[int(t) for t in op["outputs"]] for op in ops]
    seeds = set()
    for i, outs in enumerate(outputs_of):
        for idx in outs:
            layers = _layer_names(tensors.get(idx, ""))
            if (any(covers(names, layer) for layer in layers)
                    or (OUTPUT in names and (idx in graph_out or OUTPUT in layers))):
                seeds.add(i)
    consumers: dict = {}
    for i, op in enumerate(ops):
        for t in op["inputs"]:
            consumers.setdefault(int(t), []).append(i)
    keep = _downstream(seeds, outputs_of, consumers)
    return [tensors[t] for i in sorted(keep) for t in outputs_of[i]]


def twin_layers(model: nn.Module) -> list[str] | None:
    """The layer names of the student's hand-written Keras twin, None for a student without one
    (the rebuild names every layer after its module)."""
    from distill.students import keras_twin

    if keras_twin(model) is None:
        return None
    from .keras_student import build_keras_student

    return twin_named_layers(build_keras_student(model.eval().cpu(), batch=1))


def keras_layer_names(km) -> list[str]:
    """The names of a Keras model's layers, its input's left out (no op to keep in float)."""
    return [la.name for la in km.layers if type(la).__name__ != "InputLayer"]


def twin_named_layers(km) -> list[str]:
    """The names a twin's author gave its layers: those Keras made up ("conv2d_3", counted
    over the process, so another in each build) name no module, even one called "conv2d"."""
    made = getattr(km, "_made_up_names", frozenset())
    return [n for n in keras_layer_names(km) if n not in made]


def twin_gaps(names: Sequence[str], layers: Sequence[str]) -> list[str]:
    """The names of `names` that no layer of a twin (`layers`) is named after (`OUTPUT`: the
    graph's output, always found)."""
    return [n for n in names if n != OUTPUT and not any(covers([n], la) for la in layers)]


def twin_gap_message(model: nn.Module, missing: Sequence[str], layers: Sequence[str]) -> str:
    from distill.students import keras_twin

    twin = keras_twin(model)
    shown = list(layers)
    return (f"float layers {', '.join(map(repr, missing))}: the Keras twin of student "
            f"{getattr(model, 'arch_name', type(model).__name__)!r} "
            f"({getattr(twin, '__module__', '?')}.{getattr(twin, '__qualname__', twin)}) has no "
            f"layer named after {'it' if len(missing) == 1 else 'them'} (its layers: "
            f"{', '.join(shown[:12]) + (', ...' if len(shown) > 12 else '') or 'none'}); "
            "TFLite finds a twin's layers by the student's module names: name them so "
            f"(keras.layers.Conv2D(..., name={missing[0]!r})), or choose layers it names")


def student_graph(model: nn.Module):
    """The student's ONNX graph (a tiny input: only its nodes and their scopes are read)."""
    import io

    import onnx
    import torch

    m = int(getattr(model, "multiple", 1))
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model.eval(), (torch.zeros(1, 3, 2 * m, 2 * m),), buf, dynamo=False,
                          opset_version=17, input_names=["input"], output_names=["output"])
    return onnx.load_from_string(buf.getvalue())


def float_units(model: nn.Module, names: Sequence[str], graph=None) -> list[str]:
    """The units (see `units`) that `names` keep in float: theirs and everything downstream,
    traced through the student's ONNX graph (`graph`: `student_graph(model)`, made once by a
    caller that asks about many units; an export per call was most of `choose`'s time)."""
    proto = graph if graph is not None else student_graph(model)
    paths = {onnx_module_path(n) for n in onnx_nodes(proto, names)}
    all_units = units(model)
    return [u for u in all_units if u == OUTPUT or any(covers([u], p) for p in paths)]


# --------------------------------------------------------------------------- auto

@dataclass
class Choice:
    """What `choose` found: the layers, the simulated worst-image losses after each step, and
    larger float regions to fall back on if the real artifact fails its gate (the simulation
    is an estimate), smallest first: `layers` plus one more cut each."""
    layers: list[str]
    target: dict
    steps: list[dict] = field(default_factory=list)
    met: bool = True
    fallbacks: list[list[str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"layers": self.layers, "target": self.target, "steps": self.steps,
                "met": self.met, "fallbacks": self.fallbacks}


def choose(model: nn.Module, crops: np.ndarray, images: Sequence[tuple[str, np.ndarray]],
           min_ssim: float | None, gt: dict[str, np.ndarray] | None = None,
           max_ssim_drop: float | None = None, weight_bits: int = 8,
           on_step: Callable[[str], None] | None = None, io_int8: bool = False,
           allowed: Sequence[str] | None = None) -> Choice:
    """Greedy search (see the module doc). `crops` (N x 3 x H x W) calibrate the simulated
    ranges (min/max), `images` (name, HxWx3 float in [0, 1]) are the parity images, `gt` their
    ground truth by name. `weight_bits` 7 simulates ONNX Runtime's reduce_range. `io_int8`: the
    artifact's output stays int8 whatever runs in float (full-integer TFLite), so the simulated
    output is always rounded and `OUTPUT` alone (which would change nothing there) is never a
    cut. Targets: worst SSIM to FP32 >= 1 - MARGIN * (1 - min_ssim), and with ground truth
    worst SSIM-to-GT lost <= MARGIN * max_ssim_drop. `allowed`: the units the artifact can keep
    in float (a Keras twin's named layers), the only cuts tried; None: all."""
    import torch

    from distill.metrics import ssim
    from distill.qat import FakeQuantForward

    m = int(getattr(model, "multiple", 1))
    model = model.eval()

    def tensor(img: np.ndarray) -> torch.Tensor:
        h, w = img.shape[0] // m * m, img.shape[1] // m * m
        return torch.from_numpy(np.ascontiguousarray(img[:h, :w], np.float32)
                                ).permute(2, 0, 1)[None]

    def image(y: torch.Tensor) -> np.ndarray:
        return y[0].permute(1, 2, 0).clamp(0, 1).numpy()

    xs = [(n, tensor(img)) for n, img in images]
    with torch.no_grad():
        refs = {n: image(model(x)) for n, x in xs}
    gts = {n: gt[n][:refs[n].shape[0], :refs[n].shape[1]] for n in refs if gt and n in gt}
    ref_gt = {n: ssim(refs[n], g) for n, g in gts.items()}
    use_drop = max_ssim_drop is not None and bool(gts)
    target = {"min_ssim": None if min_ssim is None else 1 - MARGIN * (1 - min_ssim),
              "max_ssim_drop": MARGIN * max_ssim_drop if use_drop else None}

    fq = FakeQuantForward(model, weight_qmax=2 ** (weight_bits - 1) - 1, round_glue=True)
    fq.calibrate(torch.from_numpy(np.asarray(crops, np.float32)))

    def measure(keep: list[str]) -> dict:
        # int8 output: the last rounding (FakeQuantForward's "output") stays in the simulation
        fq.keep_float = [k for k in keep if not (io_int8 and k == OUTPUT)]
        with torch.no_grad():
            outs = {n: image(fq(x)) for n, x in xs}
        r = {"ssim": min(ssim(outs[n], refs[n]) for n in outs)}
        if use_drop:
            r["ssim_drop"] = max(ref_gt[n] - ssim(outs[n], g) for n, g in gts.items())
        return r

    def passes(r: dict) -> bool:
        return ((target["min_ssim"] is None or r["ssim"] >= target["min_ssim"])
                and (not use_drop or r["ssim_drop"] <= target["max_ssim_drop"]))

    def badness(r: dict) -> float:   # how far from passing, in units of each allowed loss
        b = 0.0
        if target["min_ssim"] is not None:
            b = max(b, (1 - r["ssim"]) / max(1 - target["min_ssim"], 1e-9))
        if use_drop:
            b = max(b, r["ssim_drop"] / max(target["max_ssim_drop"], 1e-9))
        return b

    graph = student_graph(model)
    closure = {u: float_units(model, [u], graph) for u in units(model)
               if allowed is None or u in allowed}
    everything = set(units(model))
    keep: list[str] = []
    r = measure(keep)
    steps = [{"float": [], "units": [], **r}]
    if on_step:
        on_step(_describe([], r))
    def grow(keep: list[str]) -> dict[str, frozenset]:
        """Each further cut, with what it adds downstream (the whole network would make the
        "INT8" artifact a float one)."""
        region = set().union(*(closure[k] for k in keep)) if keep else set()
        # with int8 output, a cut that adds only OUTPUT to the float region changes nothing
        same = (lambda g: g - {OUTPUT} == region - {OUTPUT}) if io_int8 else (
            lambda g: g == region)
        trials: dict[str, frozenset] = {}
        for u in closure:
            grown = frozenset(region | set(closure[u]))
            if not same(grown) and grown != everything and grown not in trials.values():
                trials[u] = grown
        return trials

    while not passes(r):
        trials = grow(keep)
        if not trials:
            break
        results = {u: measure(sorted(g)) for u, g in trials.items()}
        # the smallest float region that passes, else the least bad
        ok = [u for u in results if passes(results[u])]
        best = (min(ok, key=lambda u: (len(trials[u]), badness(results[u]))) if ok
                else min(results, key=lambda u: (badness(results[u]), len(trials[u]))))
        keep.append(best)
        r = results[best]
        steps.append({"float": list(keep), "units": sorted(trials[best]), **r})
        if on_step:
            on_step(_describe(keep, r))
    fq.remove()
    target = {**target, "weight_bits": weight_bits, "io_int8": io_int8}
    if not passes(r):
        return Choice([], target, steps, False)
    larger = sorted(grow(keep).items(), key=lambda kv: (len(kv[1]), units(model).index(kv[0])))
    return Choice(list(keep), target, steps, True, [keep + [u] for u, _ in larger])


def plan(spec: list[str] | str, model: nn.Module, fmts: Sequence[str], crops, images, gt,
         thresholds, reduce_range: bool, say: Callable[[str], None]
         ) -> tuple[dict[str, list[str]], dict[str, dict], dict[str, list[list[str]]]]:
    """Per INT8 format of an export: the layers to keep in float, the "auto" searches (for the
    report), and the larger regions to try if the real artifact fails its gate. "auto" runs once
    per weight precision (ONNX Runtime's reduce_range rounds weights to 7 bits, the rest to 8)
    and output type (`INT8_IO`: int8 output, simulated as such).
    `spec` is what `parse` returned; `thresholds` the export's gates."""
    wanted = [f for f in fmts if f in FORMATS]
    if "engine-int8" in fmts and "onnx-qdq-trt" not in wanted:
        wanted.append("onnx-qdq-trt")
    fmts = wanted
    by_fmt: dict[str, list[str]] = {}
    choices: dict[str, dict] = {}
    tries: dict[str, list[list[str]]] = {}
    if spec == AUTO and fmts and crops is not None:
        # one search per weight precision (ONNX Runtime's reduce_range: 7 bits) and per output
        # type: full-integer TFLite's output is int8 whatever runs in float
        by_kind: dict[tuple, Choice] = {}
        # A hand-written Keras twin keeps in float only the layers its author named after the
        # student's modules: TFLite's search tries those alone.
        try:
            layers = twin_layers(model) if any(f.startswith("tflite") for f in fmts) else None
        except Exception:   # a twin that fails says so in its format's row, as it builds
            layers = None
        named = None if layers is None else tuple(
            u for u in units(model) if not twin_gaps([u], layers))
        for f in fmts:
            allowed = named if f.startswith("tflite") else None
            kind = (7 if f == "onnx-int8" and reduce_range else 8, f in INT8_IO, allowed)
            bits, io_int8, _ = kind
            if kind not in by_kind:
                say(f"choosing the layers to keep in float ({bits}-bit weights"
                    + (", int8 output" if io_int8 else "")
                    + ", simulated INT8 on the parity images)")
                if allowed is not None and len(allowed) < len(units(model)):
                    lacking = [u for u in units(model) if u not in allowed]
                    say(f"  {f}: the Keras twin of {model.arch_name} names "
                        + (f"only {', '.join(u for u in allowed if u != OUTPUT)}"
                           if set(allowed) - {OUTPUT} else "none")
                        + f" of the student's layers after its modules, so "
                        f"{', '.join(lacking)} cannot be kept in float there (name the twin's "
                        f"layers so: keras.layers.Conv2D(..., name={lacking[0]!r}))")
                by_kind[kind] = choose(model, crops, images, thresholds.min_ssim, gt,
                                       thresholds.max_ssim_drop, weight_bits=bits,
                                       on_step=lambda msg: say("  " + msg), io_int8=io_int8,
                                       allowed=allowed)
                if not by_kind[kind].met:   # float layers short of the gate: speed for nothing
                    say("  the simulation does not pass the gates short of a float model"
                        + ("; 7-bit weights limit it (--no-reduce-range on VNNI CPUs)"
                           if bits == 7 else "")
                        + (("; so do the few layers the Keras twin names"
                            if set(allowed) - {OUTPUT} else
                            "; the Keras twin names none of its layers after the student's")
                           if allowed is not None and len(allowed) < len(units(model)) else "")
                        + ": keeping every layer int8")
            by_fmt[f] = list(by_kind[kind].layers)
            choices[f] = by_kind[kind].to_dict()
            tries[f] = list(by_kind[kind].fallbacks)
    elif spec and spec != AUTO:
        by_fmt = {f: list(spec) for f in fmts}
        for f in INT8_IO:
            if f in by_fmt and set(spec) == {OUTPUT}:
                warnings.warn(f"{f}'s output is int8 whatever runs in float, so '{OUTPUT}' "
                              "alone in float changes nothing there (name an earlier layer, or "
                              "use tflite-fp16)", SharpenWarning)
    graph = None
    for f, layers in by_fmt.items():
        if layers:
            # how much: the closure toward the output can be most of the model ("stem" is
            # all but the edge branch in `fast`), which costs nearly a float model's speed
            share = ""
            if model is not None:
                graph = graph if graph is not None else student_graph(model)
                share = f": {len(float_units(model, layers, graph))} of {len(units(model))} layers"
            say(f"{f} keeps {', '.join(layers)} (and all after{share}) in float")
        elif f in choices and choices[f]["met"]:
            say(f"{f}: simulated full INT8 passes the gates ({_targets(choices[f]['target'])}): "
                "every layer stays int8")
    return by_fmt, choices, tries


def _targets(target: dict) -> str:
    """The simulated gates of a `Choice.target`, as the search aimed at them."""
    parts = []
    if target.get("min_ssim") is not None:
        parts.append(f"worst SSIM to FP32 >= {target['min_ssim']:.4g}")
    if target.get("max_ssim_drop") is not None:
        parts.append(f"SSIM to ground truth lost <= {target['max_ssim_drop']:.4g}")
    return ", ".join(parts) or "none set"


def _describe(keep: list[str], r: dict) -> str:
    s = (f"simulated INT8 with {', '.join(keep) or 'nothing'} (and all after) in float: "
         f"worst SSIM to FP32 {r['ssim']:.4f}")
    if "ssim_drop" in r:
        s += f", SSIM to ground truth lost {r['ssim_drop']:.4f}"
    return s
