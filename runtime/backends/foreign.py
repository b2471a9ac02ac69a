"""How a model takes its image, read from its contract (runtime.contract: what `sharpen export`
records in the model and its sidecar) or, for a model exported elsewhere (a published network's
ONNX), from its input's shape and a sidecar JSON written by its user.

Such a model may take BGR, values in [-1,1], NHWC, a fixed size, or give a residual: a wrong
guess gives visibly wrong colours or contrast with no error, so what is assumed is said.
README: Runtime, "Models exported elsewhere".
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..cli_errors import raise_if_interrupted
from ..console import brief
from .base import ModelError, sidecar_path

# The contract's keys a user may set in a sidecar, with their values (the first: the default).
CHOICES = {
    "layout": ("NCHW", "NHWC"),
    "colour_order": ("RGB", "BGR"),
    "input_range": ("[0,1]", "[-1,1]", "[0,255]"),
    "output": ("image", "residual"),
}
# Keys only `sharpen export` writes: a model with none of them is foreign. A sidecar's
# "multiple" is a user's too (a UNet's 16), so it alone does not make the model an export.
_OURS = ("producer", "student", "multiple")
_OURS_SIDECAR = ("producer", "student")
EXAMPLE = ('{"colour_order": "BGR", "input_range": "[-1,1]", "layout": "NHWC", '
           '"output": "residual"}')


@dataclass(frozen=True)
class IoContract:
    layout: str = "NCHW"
    colour_order: str = "RGB"
    input_range: str = "[0,1]"
    output: str = "image"
    fixed_hw: Optional[tuple[int, int]] = None
    foreign: bool = False
    output_name: str = ""   # the output taken as the image (of several, the record's or first)
    note: str = ""   # what was assumed, for a foreign model ("" for ours)

    def record(self) -> dict[str, str]:
        """How it is run, for a stats file or report (a foreign model's)."""
        fixed = f"{self.fixed_hw[0]}x{self.fixed_hw[1]}" if self.fixed_hw else "dynamic"
        return {**{k: getattr(self, k) for k in CHOICES}, "output_name": self.output_name,
                "fixed_size": fixed}

    @property
    def plain(self) -> bool:
        """RGB in [0,1] out as the image: the runtime's own convention, nothing to convert."""
        return (self.colour_order, self.input_range, self.output) == ("RGB", "[0,1]", "image")


def _value(key: str, raw: Any, where: str) -> str:
    # An export's layout is in words ("NCHW RGB float32 [0,1]"): its first one names it.
    text = (str(raw).split() or [""])[0] if key == "layout" else str(raw).replace(" ", "")
    for choice in CHOICES[key]:
        if text.lower() == choice.lower():
            return choice
    raise ModelError(f"{where}: {key} {raw!r} is none of {', '.join(CHOICES[key])}")


def read_contract(path: Path, meta: dict[str, str], sidecar: dict[str, Any],
                  shape: list[Any], outputs: Sequence[str] = ()) -> IoContract:
    """The contract of the model at `path`, whose ONNX metadata is `meta`, sidecar `sidecar`,
    input shape `shape` (ints for fixed dimensions, names or None for dynamic ones) and output
    names `outputs`."""
    found = sidecar_path(path) if sidecar else None
    side = found.name if found else f"{path.name}.json"
    out_name = outputs[0] if outputs else ""
    named = sidecar.get("output_name") or meta.get("output_name")
    if named and outputs:
        if named not in outputs:
            raise ModelError(f"{path}: output_name {named!r} ({side} or its metadata) is none of "
                             f"its outputs: {', '.join(outputs)}")
        out_name = named
    given: dict[str, str] = {}
    origin: dict[str, str] = {}
    for key in CHOICES:
        for record, where in ((sidecar, side), (meta, f"{path.name}'s metadata")):
            if record.get(key) not in (None, ""):
                given[key] = _value(key, record[key], f"{path}: {where}")
                origin[key] = where
                break
    foreign = not any(k in meta for k in _OURS) and not any(k in sidecar for k in _OURS_SIDECAR)
    if not foreign:
        _agree(path, side, meta, sidecar)
    dims = [d if isinstance(d, int) and d > 0 else None for d in shape]
    if "layout" not in given and len(dims) == 4 and dims[3] == 3 and dims[1] != 3:
        given["layout"], origin["layout"] = "NHWC", f"its input {io_shape(shape)}"
    layout = given.get("layout", "NCHW")
    hw = dims[1:3] if layout == "NHWC" else dims[2:4]
    fixed = (hw[0], hw[1]) if len(dims) == 4 and None not in hw else None
    c = IoContract(**{k: given.get(k, v[0]) for k, v in CHOICES.items()},
                   fixed_hw=fixed, foreign=foreign, output_name=out_name)
    if not foreign:
        return c
    said = []
    for key, choices in CHOICES.items():
        value = getattr(c, key)
        shown = f"output the {value}" if key == "output" else value
        if key == "layout" and key not in origin and len(dims) == 4 and dims[1] == 3:
            origin[key] = f"its input {io_shape(shape)}"
        said.append(f"{shown} (from {origin[key]})" if key in origin else shown)
    note = (f"{path.name} was not exported by sharpen export (no image-sharpening-kd contract "
            f"in it): run as {', '.join(said)}")
    if len(outputs) > 1:
        how = f"from {side}" if sidecar.get("output_name") else \
            f'set "output_name" in {side} for another'
        note += f"; the image is its output {out_name!r} of its {len(outputs)} outputs ({how})"
    if fixed:
        note += (f"; fixed input size {fixed[0]}x{fixed[1]}: frames run in tiles of that size "
                 "(smaller ones padded)")
    note += (f". Where it takes otherwise the output looks wrong (colours, contrast) without "
             f"an error: write {side} beside it, e.g. {EXAMPLE} (README: Runtime)")
    return IoContract(c.layout, c.colour_order, c.input_range, c.output, fixed, True,
                      out_name, note)


def size_hint(path: Path, multiple: int) -> str:
    """For a foreign model's failed run: it was fed H and W padded to `multiple` only, where a
    network that halves its input k times needs 2**k (an ORT broadcast error says no more)."""
    found = sidecar_path(path)
    side = found.name if found else f"{Path(path).name}.json"
    return (f". It was fed H and W padded to a multiple of {multiple}; a network that halves "
            f'its input k times needs 2^k: set "multiple" (e.g. 16 or 32) in {side}')


def _agree(path: Path, side: str, meta: dict[str, str], sidecar: dict[str, Any]) -> None:
    """An export's own metadata says how it takes its image: a sidecar that says otherwise is
    refused, not obeyed (the model would be fed what it was not trained on)."""
    for key, choices in CHOICES.items():
        if sidecar.get(key) in (None, ""):
            continue
        told = _value(key, sidecar[key], f"{path}: {side}")
        recorded = _value(key, meta[key], f"{path}: its metadata") if meta.get(key) else \
            choices[0]
        if told != recorded:
            raise ModelError(f"{path}: {side} says {key} {sidecar[key]!r}, its export's contract "
                             f"{recorded}: remove {side} or that key (a sidecar describes a "
                             "model exported elsewhere)")


def io_shape(shape: list[Any]) -> str:
    """An ONNX input's shape as the messages show it: [n,3,h,w], ? for an unnamed dimension."""
    return "[" + ",".join(str(d) if isinstance(d, int) else str(d or "?") for d in shape) + "]"


def run_in_contract(c: IoContract, batch: np.ndarray, run: Callable[[np.ndarray], np.ndarray],
                    dtype: Any) -> np.ndarray:
    """`run` (the engine on the model's own input) on a float32 batch in c.layout, RGB in
    [0,1]; returns float32, same layout and convention. A fixed size is met by tiles."""
    if c.fixed_hw and _hw(c, batch.shape) != c.fixed_hw:
        return _tiled(c, batch, lambda b: _once(c, b, run, dtype))
    return _once(c, batch, run, dtype)


def _hw(c: IoContract, shape: tuple[int, ...]) -> tuple[int, int]:
    return (shape[1], shape[2]) if c.layout == "NHWC" else (shape[2], shape[3])


def _once(c: IoContract, batch: np.ndarray, run: Callable[[np.ndarray], np.ndarray],
          dtype: Any) -> np.ndarray:
    axis = 3 if c.layout == "NHWC" else 1
    x = batch
    if c.colour_order == "BGR":
        x = np.flip(x, axis)
    if c.input_range == "[-1,1]":
        x = x * 2 - 1
    elif c.input_range == "[0,255]":
        x = x * 255
    x = np.ascontiguousarray(x, dtype=dtype)
    y = np.asarray(run(x), dtype=np.float32)
    if c.output == "residual":
        y = y + x.astype(np.float32)
    if c.input_range == "[-1,1]":
        y = (y + 1) / 2
    elif c.input_range == "[0,255]":
        y = y / 255
    if c.colour_order == "BGR":
        y = np.ascontiguousarray(np.flip(y, axis))
    return y


def _tiled(c: IoContract, batch: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]
           ) -> np.ndarray:
    """Each image of the batch in tiles of the model's fixed size (Gaussian-blended, as
    `sharpen run --tile`), tiles at an image's border smaller than it padded up to it."""
    from ..prepost import check_output
    from ..tiling import auto_overlap, tiled_rows

    fh, fw = c.fixed_hw or (0, 0)
    nhwc = c.layout == "NHWC"
    images = batch if nhwc else batch.transpose(0, 2, 3, 1)

    def one_tile(nchw: np.ndarray) -> np.ndarray:
        th, tw = nchw.shape[2:]
        padded = np.pad(nchw, ((0, 0), (0, 0), (0, fh - th), (0, fw - tw)), mode="reflect")
        x = padded.transpose(0, 2, 3, 1) if nhwc else padded
        y = fn(np.ascontiguousarray(x))
        check_output(y, x.shape, c.layout)   # a 2x model's output is no tile to crop
        y = y.transpose(0, 3, 1, 2) if nhwc else y
        return y[:, :, :th, :tw]

    tile = min(fh, fw)
    outs = []
    for img in images:
        h, w = img.shape[:2]
        out = np.empty((h, w, 3), np.float32)
        for y, rows in tiled_rows(lambda y, x, th, tw: img[y:y + th, x:x + tw], h, w,
                                  one_tile, tile=tile, overlap=auto_overlap(tile),
                                  multiple=1, batch_size=1):
            out[y:y + len(rows)] = rows
        outs.append(out)
    result = np.stack(outs)
    return result if nhwc else np.ascontiguousarray(result.transpose(0, 3, 1, 2))


def _inspection_session(path: Path) -> Any:
    """An ONNX Runtime session on the CPU that loads `path` as it is (no graph optimisation,
    errors only), to read its inputs and metadata or why it does not load."""
    import onnxruntime as ort
    o = ort.SessionOptions()
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    o.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=o, providers=["CPUExecutionProvider"])


def onnx_open_error(path: Path) -> Optional[str]:
    """Why ONNX Runtime cannot load the .onnx at `path` (`sharpen models FILE`: a file copied
    over wrong or cut short), in one line; None where it loads or ONNX Runtime is absent."""
    try:
        import onnxruntime  # noqa: F401 - absent: nothing to say
    except ImportError:
        return None
    try:
        _inspection_session(path)
    except Exception as exc:
        raise_if_interrupted(exc)
        return f"  input and output: ONNX Runtime cannot open it ({brief(exc)})"
    return None


def onnx_io_lines(path: Path) -> Optional[list[str]]:
    """For a foreign .onnx (`sharpen models FILE`): its inputs and outputs and how the runtime
    runs it, in lines; None for one of this project's exports, or where ONNX Runtime cannot
    open it (the runtime says why when it runs it)."""
    from .base import read_sidecar

    try:
        s = _inspection_session(path)
    except Exception:   # no onnxruntime, or a file it cannot load
        return None
    meta = dict(s.get_modelmeta().custom_metadata_map or {})
    inputs, outputs = s.get_inputs(), s.get_outputs()
    c = read_contract(Path(path), meta, read_sidecar(path), inputs[0].shape if inputs else [],
                      [o.name for o in outputs])
    if not c.foreign:
        return None

    def io(kind: str, args: list[Any]) -> str:
        return ", ".join(f"{kind} {a.name!r} {io_shape(a.shape)} {_dtype(a.type)}" for a in args)
    return [f"  {io('input', inputs)}, {io('output', outputs)}", f"  {c.note}"]


def _dtype(onnx_type: str) -> str:
    """ONNX Runtime's 'tensor(float)' as numpy names it: float32."""
    name = onnx_type.removeprefix("tensor(").removesuffix(")")
    return {"float": "float32", "double": "float64"}.get(name, name)
