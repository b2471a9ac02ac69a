"""LiteRT (TFLite) backend for .tflite models, CPU with the XNNPACK delegate (LiteRT's default).

Models exported from Keras are NHWC ([1,H,W,3]); the layout is read from the input shape so an
NCHW-converted model works too. Integer models are (de)quantised here with the tensors' own
scale and zero point, so the pipeline always sees float32 in [0, 1].
"""
from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..cli_errors import raise_if_interrupted
from ..console import TF_NOISE, brief, first_line, quiet_native_stderr
from ..host import check_threads, default_threads, usable_cores
from .base import (PARITY_KEY, Backend, ModelError, exported_without_receptive_field,
                   layout_hint, parse_multiple,
                   parse_receptive_field, read_sidecar, recorded_float_layers, sidecar_path)
from .sniff import load_hint
from ..warn import warn


LITERT_MISSING = ("LiteRT is not installed: `pip install ai-edge-litert` (tflite-runtime, its "
                  "predecessor, also works where ai-edge-litert has no wheel, e.g. 32-bit ARM), "
                  "or use the .onnx model")


def _interpreter_class() -> Any:
    """LiteRT's interpreter; else tflite-runtime's, the same API under its old name, which is
    what boards without an ai-edge-litert wheel (32-bit ARM, older Pythons) have."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:
        raise_if_interrupted(e)   # a Ctrl-C while it loads is not a missing package
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as e2:
            raise_if_interrupted(e2)
            raise ModelError(LITERT_MISSING) from None
    return Interpreter


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    q = np.rint(x / scale + zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


def model_source(path: Union[str, Path]) -> dict[str, Any]:
    """The interpreter's keyword for the model: its path, or on Windows, where the path is
    beyond ASCII, its bytes: LiteRT opens a path with the C library's narrow-character calls,
    which there take the ANSI code page, so 'Straße 東京' cannot be spelled (a model is a few
    MB at most: read whole, as the interpreter keeps it anyway)."""
    name = str(path)
    if sys.platform == "win32" and not name.isascii():
        return {"model_content": Path(path).read_bytes()}
    return {"model_path": name}


class LiteRTBackend(Backend):
    name = "litert"

    def __init__(self, path: Union[str, Path], threads: Optional[int] = None, **_: Any) -> None:
        check_threads(threads)
        Interpreter = self._interpreter = _interpreter_class()
        # One interpreter holds one set of tensors: calls from several threads take turns
        # (unlocked, they returned each other's frames or failed).
        self._lock = threading.Lock()
        path = Path(path)
        # LiteRT runs XNNPACK single-threaded unless told otherwise; use MKL_/OMP_NUM_THREADS's
        # count, or every core this process may use (a container or taskset limits them).
        threads = default_threads(threads) or usable_cores()
        try:
            # Hides "INFO: Created TensorFlow Lite XNNPACK delegate"; what else is said stays.
            with quiet_native_stderr(TF_NOISE):
                self.interp = Interpreter(**model_source(path), num_threads=threads or None)
        except (ValueError, RuntimeError) as exc:
            hint = load_hint(path, "litert", str(exc))
            raise ModelError(f"cannot load {path} with LiteRT ({hint}): "
                             f"{first_line(exc)}") from None
        self._last_error = ""
        ins, outs = self.interp.get_input_details(), self.interp.get_output_details()
        if len(ins) != 1 or not outs:
            raise ModelError(f"{path}: expected one image input, got {len(ins)} inputs")
        self.inp, self.out = ins[0], outs[0]
        shape = list(self.inp["shape"])
        if len(shape) != 4 or 3 not in (shape[-1], shape[1]):
            raise ModelError(f"{path}: expected a 4-D RGB input, got shape {shape}")
        self.layout = "NHWC" if shape[-1] == 3 else "NCHW"
        self.in_dtype = np.dtype(self.inp["dtype"])
        self._shape = tuple(shape)
        sidecar = own_record(path)
        self._model_path = path
        self.multiple = self._checked_multiple(path, sidecar.get("multiple"))
        self._shape = ()   # not allocated yet: the first frame allocates
        self.parity_failed = sidecar.get(PARITY_KEY) or None
        self.receptive_field = parse_receptive_field(sidecar.get("receptive_field"))
        self.receptive_field_unrecorded = exported_without_receptive_field(
            self.receptive_field, sidecar)
        self.source_sha256 = sidecar.get("source_sha256") or None
        self.precision = self._precision()
        self.float_layers = tuple(recorded_float_layers(sidecar))
        self.provider = (f"XNNPACK ({threads} thread{'s' if threads != 1 else ''})" if threads
                         else "XNNPACK")
        self.threads = threads
        self.path = path

    def _checked_multiple(self, path: Path, declared: Any) -> int:
        """The size multiple H and W must have: the sidecar's, checked against the model. A
        .tflite copied without its sidecar (or with another model's) otherwise failed inside
        LiteRT at the first frame ('SPACE_TO_DEPTH ... 7 != 6')."""
        m = parse_multiple(declared, str(path)) if declared not in (None, "") else None
        if m is not None and self._accepts(3 * m):
            return m
        found = next((k for k in (1, 2, 4, 8, 16, 32, 64, 128, 256) if self._accepts(3 * k)),
                     None)
        side = sidecar_path(path) or Path(f"{path}.json")
        if m is None:
            why = f"it has no sidecar {side.name} (copy it along with the model)"
        else:
            why = f"its sidecar {side.name} says {m}, which the model refuses (another model's?)"
        if found is None:
            raise ModelError(f"{path}: LiteRT cannot prepare the model at any frame size "
                             f"({self._last_error}); {why}")
        warn(f"{path}: {why}; its size multiple, found by trial, is {found}")
        return found

    def _accepts(self, side: int) -> bool:
        """Whether the model runs a side x side frame. It is run, not only allocated: some
        graphs allocate at sizes they then fail on ('SPACE_TO_DEPTH ... (3 != 0)'), and a
        failed run leaves an interpreter unusable, so each trial gets its own."""
        shape = [1, side, side, 3] if self.layout == "NHWC" else [1, 3, side, side]
        try:
            with quiet_native_stderr(TF_NOISE):
                trial = self._interpreter(**model_source(self._model_path), num_threads=1)
                inp = trial.get_input_details()[0]
                trial.resize_tensor_input(inp["index"], shape, strict=False)
                trial.allocate_tensors()
                trial.set_tensor(inp["index"], np.zeros(shape, dtype=inp["dtype"]))
                trial.invoke()
            return True
        except (RuntimeError, ValueError) as exc:
            self._last_error = brief(exc)
            return False

    def _precision(self) -> str:
        if self.in_dtype in (np.int8, np.uint8):
            return "int8"
        dtypes = {np.dtype(t["dtype"]) for t in self.interp.get_tensor_details()}
        if np.dtype(np.int8) in dtypes:
            return "int8"  # float I/O around an int8 graph
        if np.dtype(np.float16) in dtypes:
            return "fp16"
        return "fp32"

    def _resize(self, shape: tuple[int, ...]) -> None:
        # Re-allocating is expensive, so only when the frame size actually changes.
        if shape == self._shape:
            return
        try:
            self.interp.resize_tensor_input(self.inp["index"], list(shape), strict=False)
            self.interp.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            raise ModelError(f"{self.path}: LiteRT cannot run input {list(shape)}"
                             f"{self._why(shape)}: {brief(exc)}") from None
        self.out = self.interp.get_output_details()[0]
        self._shape = shape

    def infer(self, batch: np.ndarray) -> np.ndarray:
        scale, zp = self.inp["quantization"]
        if self.in_dtype.kind in "iu" and scale:
            x = quantize(batch, scale, zp, self.in_dtype)
        else:
            x = np.ascontiguousarray(batch, dtype=self.in_dtype)
        y = self._run(x)
        oscale, ozp = self.out["quantization"]
        if y.dtype.kind in "iu" and oscale:
            return dequantize(y, oscale, ozp)
        return y.astype(np.float32, copy=True)

    def _run(self, x: np.ndarray) -> np.ndarray:
        """The interpreter on one input tensor (resized to it), its output copied out; calls
        from several threads take turns (one interpreter holds one set of tensors)."""
        with self._lock:
            self.check_open()
            self._resize(tuple(int(n) for n in x.shape))
            self.interp.set_tensor(self.inp["index"], x)
            self._invoke()
            return self.interp.get_tensor(self.out["index"])

    def _invoke(self) -> None:
        try:
            self.interp.invoke()
        except (RuntimeError, ValueError) as exc:
            raise ModelError(f"{self.path}: LiteRT failed on input {list(self._shape)}"
                             f"{self._why(self._shape)}: {brief(exc)}") from None

    def _why(self, shape: Optional[tuple[int, ...]]) -> str:
        # The batch's layout where it is not the model's, else the size multiple it needs.
        return (shape is not None and layout_hint(shape, self.layout)
                or f" (size multiple {self.multiple})")

    def close(self) -> None:
        # The interpreter keeps its tensors (allocated at the last frame size) while anything
        # refers to the backend: freed now, as close says.
        with self._lock:
            super().close()
            self.interp = None

    @property
    def quantized_io(self) -> bool:
        """Integer input and output: frames can go in and out as uint8 through lookup tables."""
        return (self.layout == "NHWC" and self.in_dtype.kind in "iu"
                and bool(self.inp["quantization"][0])
                and np.dtype(self.out["dtype"]).kind in "iu"
                and bool(self.out["quantization"][0]))

    def _luts(self) -> tuple[np.ndarray, np.ndarray]:
        # Input: pixel u -> quantize(u / 255); output: quantized value (as its byte) ->
        # round(255 * dequantize(q)). Same arithmetic as the float path, one table lookup each,
        # instead of four float passes over a 1080p frame.
        if getattr(self, "_lut_cache", None) is None:
            scale, zp = self.inp["quantization"]
            u = np.arange(256, dtype=np.float32) * np.float32(1.0 / 255.0)
            lut_in = quantize(u, scale, zp, self.in_dtype).view(np.uint8)
            odt = np.dtype(self.out["dtype"])
            q = np.arange(256, dtype=np.uint8).view(np.int8 if odt == np.int8 else np.uint8)
            oscale, ozp = self.out["quantization"]
            y = dequantize(q, oscale, ozp) * np.float32(255.0)
            lut_out = np.clip(np.rint(y), 0, 255).astype(np.uint8)
            self._lut_cache = (lut_in, lut_out)
        return self._lut_cache

    def infer_u8(self, rgb: np.ndarray) -> np.ndarray:
        """1xHxWx3 RGB uint8 batch -> 1xHxWx3 RGB uint8 batch (clipped, rounded) for models with
        quantized input and output."""
        import cv2

        lut_in, lut_out = self._luts()
        x = cv2.LUT(rgb[0], lut_in).view(self.in_dtype)[None]
        y = self._run(x)
        return cv2.LUT(y[0].view(np.uint8), lut_out)[None]


# What tells one export from another in a record (`tflite_export.sidecar`).
IDENTITY_KEYS = ("source_sha256", "student", "arch_args", "multiple", "quantization")


@dataclass(frozen=True)
class ChosenRecord:
    """Which of a .tflite's two records of its export describes it: `record`; `inside`, whether
    that is the record inside the file rather than its sidecar; `differ`, the IDENTITY_KEYS in
    which the sidecar describes another export (the reason the record inside won)."""
    record: dict[str, Any]
    inside: bool
    differ: list[str]


def choose_record(path: Path) -> ChosenRecord:
    """The rule for which record of the .tflite at `path` counts, said by no one: its sidecar,
    else the record inside the file (a model copied alone keeps it), which also wins over a
    sidecar of another export (left beside a model copied over an older one). ModelError for
    a sidecar that cannot be read."""
    sidecar, inside = read_sidecar(path), embedded_record(path)
    differ = stale_keys(sidecar, inside)
    if differ or not sidecar:
        return ChosenRecord(inside, True, differ)
    return ChosenRecord(sidecar, False, [])


def own_record(path: Path) -> dict[str, Any]:
    """The export's record of the .tflite at `path` (`choose_record`), a sidecar of another
    export passed over said as a warning."""
    chosen = choose_record(path)
    if chosen.differ:
        warn(f"{sidecar_path(path)} describes another model than {path.name} "
             f"({', '.join(chosen.differ)} differ{'s' if len(chosen.differ) == 1 else ''} "
             "from the record inside the file): using the record inside; remove or replace "
             "that sidecar")
    return chosen.record


def stale_keys(sidecar: dict[str, Any], inside: dict[str, Any]) -> list[str]:
    """The IDENTITY_KEYS in which a sidecar describes another export than the record inside
    its .tflite; [] where either is missing or they agree. A key only one of them records (a
    sidecar from before that key) tells nothing apart."""
    return [k for k in IDENTITY_KEYS
            if k in sidecar and k in inside and sidecar[k] != inside[k]]


def embedded_record(path: Path) -> dict[str, Any]:
    """The export's record inside a .tflite (its flatbuffer metadata entry
    `runtime.contract.TFLITE_METADATA`, the sidecar's JSON when it was written), or {}."""
    import json
    import struct

    from ..contract import TFLITE_METADATA
    try:
        from ai_edge_litert import schema_py_generated as schema
        fb = schema.Model.GetRootAs(Path(path).read_bytes(), 0)
        for i in range(fb.MetadataLength()):
            if fb.Metadata(i).Name() == TFLITE_METADATA.encode():
                data = json.loads(fb.Buffers(fb.Metadata(i).Buffer()).DataAsNumpy().tobytes())
                return data if isinstance(data, dict) else {}
    except (ImportError, OSError, ValueError, AttributeError, IndexError, TypeError,
            struct.error):
        # No schema module, or a record that does not parse (the flatbuffer reader follows
        # offsets out of a file cut short): the model runs without it.
        pass
    return {}


def tflite_io_lines(path: Path, record: dict[str, Any]) -> list[str]:
    """The .tflite's input and output as an app sets and reads them (`sharpen models FILE`):
    name, dtype and shape from the interpreter (its shape signature: -1 is any size), the
    layout and size multiple from the export's `record`, and an integer tensor's scale and zero
    point with the formula that applies them; one line saying why where LiteRT cannot open
    the file."""
    try:
        with quiet_native_stderr(TF_NOISE):
            interp = _interpreter_class()(**model_source(path))
        inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    except Exception as exc:   # a damaged file or no LiteRT: said, the other lines stand
        raise_if_interrupted(exc)
        return [f"  input and output: LiteRT cannot open it ({brief(exc)})"]

    # Where H and W are: a .tflite of another tool may take NCHW, as the backend does.
    nchw = len(inp["shape"]) == 4 and int(inp["shape"][-1]) != 3 and int(inp["shape"][1]) == 3
    h_at = 2 if nchw else 1

    def shape(det: dict) -> str:
        sig = [int(d) for d in det.get("shape_signature", det["shape"])]
        return "[" + ", ".join("HW"[i - h_at] if d < 0 and i in (h_at, h_at + 1) else str(d)
                               for i, d in enumerate(sig)) + "]"

    def head(det: dict) -> str:
        return f"'{det['name']}' {np.dtype(det['dtype']).name} {shape(det)}"

    def quant(det: dict, formula: str) -> str:
        scale, zero = det["quantization"]
        if not np.issubdtype(np.dtype(det["dtype"]), np.integer) or not scale:
            return "float in [0,1]" if formula.startswith("q =") else "clip to [0,1]"
        return f"scale {scale:.9g}, zero point {zero}: {formula}"

    dynamic = any(int(d) < 0 for d in inp.get("shape_signature", []))
    try:
        m = int(record.get("multiple") or 1)
    except (TypeError, ValueError):   # a record another tool wrote: the shape still says it
        m = 1
    size = (f"H and W multiples of {m} " if m > 1 else "") + (
        f"(any size, {int(inp['shape'][h_at])}x{int(inp['shape'][h_at + 1])} as loaded: "
        "resize the input tensor, then allocate tensors)" if dynamic
        else "(fixed size)")
    layout = record.get("layout") or ("NCHW RGB" if nchw else "NHWC RGB")
    return [f"  input {head(inp)} {layout}{', ' if m > 1 else ' '}{size}, "
            + quant(inp, "q = round(x / scale) + zero point, x in [0,1]"),
            f"  output {head(out)}, "
            + quant(out, "x = (q - zero point) * scale, then clip to [0,1]"),
            *_ops_line(path)]


def _ops_line(path: Path) -> list[str]:
    """The graph's ops and how often each occurs: what a GPU delegate or an NPU must support,
    an op it lacks running on the CPU. Read from the file, every subgraph: the interpreter's op
    list (not public API) has the main graph's only, so a loop's body went unlisted, and once
    tensors are allocated a DELEGATE node of its own. Without LiteRT's schema module, no line."""
    import collections
    import struct

    try:
        from ai_edge_litert import schema_py_generated as schema
        fb = schema.Model.GetRootAs(Path(path).read_bytes(), 0)
        builtin = {v: k for k, v in vars(schema.BuiltinOperator).items() if k.isupper()}
        names = []
        for g in range(fb.SubgraphsLength()):
            sub = fb.Subgraphs(g)
            for i in range(sub.OperatorsLength()):
                code = fb.OperatorCodes(sub.Operators(i).OpcodeIndex())
                # Codes past 127 are in BuiltinCode alone; older files set only the deprecated
                # byte (the schema's rule, as the interpreter applies it).
                op = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
                names.append((code.CustomCode() or b"?").decode(errors="replace")
                             if op == schema.BuiltinOperator.CUSTOM else builtin.get(op, str(op)))
    except (ImportError, OSError, ValueError, AttributeError, IndexError, TypeError,
            struct.error):
        # No schema module, or a file the flatbuffer reader cannot follow (cut short): the
        # input and output lines stand without it.
        return []
    counts = sorted(collections.Counter(names).items())
    return ["  ops: " + ", ".join(f"{n} x{c}" for n, c in counts)] if counts else []
