"""TFLite / LiteRT export: full-integer INT8 and FP16 (and FP32 for checks).

Route: the student is rebuilt in Keras with the PyTorch weights (`optimize.keras_student`, which
explains the choice) and converted with `tf.lite.TFLiteConverter.from_keras_model`. With
tensorflow-cpu 2.21 / Keras 3 this gives, with a representative dataset of real crops,
`TFLITE_BUILTINS_INT8` and int8 input/output, a fully integer model whose every op has an int8
XNNPACK kernel; FP16 stores float16 weights that are dequantised at load time.

Runtime conventions (the runtime loads these with `ai_edge_litert` only, no TensorFlow):
input NHWC RGB [1, H, W, 3] (resize the input tensor, then allocate_tensors), H and W divisible
by `multiple`; int8 input/output use the scale/zero point in the tensor details. The sidecar
`<file>.json` holds student, arch_args, multiple, layout, quantization, metrics and the keys of
`runtime.contract`; the same JSON is inside the .tflite (flatbuffer metadata `sharpen`).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch.nn as nn

from runtime.atomic import atomic_write_bytes, atomic_write_json
from runtime.console import TF_NOISE
from runtime.contract import io_contract

QUANTIZATIONS = ("int8", "fp16", "fp32")


# What TensorFlow is imported with: no C++ INFO/WARNING lines, no oneDNN start-up note.
_TF_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}

# What importing TensorFlow and converting write to fd 2 that nobody can act on, besides
# TF_NOISE: a GPU build's E lines that its CUDA plugins registered twice (written before the
# log level applies), the CPU-feature note's second line and the converter's settings ("fully_quantize: 0, inference_type: 6, ...",
# at times without a newline: a line glued to it does not match and is kept). Anything else
# there, a native error's explanation included, reaches stderr.
TF_EXPORT_NOISE = re.compile(
    rf"{TF_NOISE.pattern}"
    r"|(E\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] "
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: E \S+\] )Unable to register cu\w+ factory"
    r"|To enable the following instructions: .*rebuild TensorFlow"   # an I line's second line
    r"|fully_quantize: \d+, inference_type: \d+, input_inference_type: \w+, "
    r"output_inference_type: \w+\s*$")


@contextlib.contextmanager
def _quiet_tf() -> Iterator[None]:
    """Import TensorFlow without its start-up chatter (C++ INFO lines and absl's pre-init
    warning, written straight to file descriptor 2, which nobody can act on), and keep absl's
    Python logging at ERROR while the block runs; the caller's own values of the variables and
    absl's verbosity are back afterwards (they stayed changed for an app's own TensorFlow).
    TensorFlow reads the variables once, when it is imported: set before that is the only way
    they work, and its C++ logging stays quiet for the process whatever the variable says after."""
    env = {k: os.environ.get(k) for k in _TF_ENV}
    for k, v in _TF_ENV.items():
        os.environ.setdefault(k, v)
    try:
        if "tensorflow" not in sys.modules:
            from runtime.console import quiet_native_stderr
            # An ImportError is reported where TensorFlow is used.
            with quiet_native_stderr(TF_EXPORT_NOISE), contextlib.suppress(ImportError):
                import tensorflow  # noqa: F401
        import absl.logging

        verbosity = absl.logging.get_verbosity()
        absl.logging.set_verbosity(absl.logging.ERROR)
        try:
            yield
        finally:
            absl.logging.set_verbosity(verbosity)
    finally:
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@_quiet_tf()
def convert_keras(keras_model, quantization: str, crops: np.ndarray | None = None,
                  on_sample: Callable[[int, int], None] | None = None,
                  float_layers: Sequence[str] = ()) -> bytes:
    """Convert a Keras NHWC model to a .tflite flatbuffer.
    crops: N x 3 x H x W float32 in [0, 1] (NCHW, as everywhere else), needed for int8.
    float_layers: int8 only, student modules whose ops stay float (`optimize/float_layers.py`):
    the model is calibrated, then quantized by the MLIR quantizer with those ops denylisted
    (what `tf.lite.experimental.QuantizationDebugger` does for selective quantization); input
    and output stay int8."""
    import tensorflow as tf

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown TFLite quantization {quantization!r}; choose {QUANTIZATIONS}")
    conv = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    if quantization == "int8":
        if crops is None or len(crops) == 0:
            raise ValueError("int8 conversion needs calibration crops")
        nhwc = np.ascontiguousarray(np.asarray(crops, np.float32).transpose(0, 2, 3, 1))

        def representative():
            for i in range(len(nhwc)):
                if on_sample:
                    on_sample(i + 1, len(nhwc))
                yield [nhwc[i:i + 1]]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        # Calibrated only, then quantized by the MLIR quantizer (as `float_layers` needs) after
        # the input's and output's ranges are widened to [0, 1] (`_widen_pixel_ranges`).
        conv._experimental_calibrate_only = True  # noqa: SLF001
    elif quantization == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from runtime.console import quiet_native_stderr
        with quiet_native_stderr(TF_EXPORT_NOISE):   # the converter prints its settings
            data = conv.convert()
            if quantization == "int8":
                from tensorflow.lite.python.convert import mlir_quantize

                from .float_layers import tflite_nodes
                data = _widen_pixel_ranges(data)
                nodes = tflite_nodes(data, float_layers) if float_layers else []
                if float_layers and not nodes:
                    raise ValueError(f"no TFLite ops found for float layers {list(float_layers)}")
                data = mlir_quantize(data, input_data_type=tf.int8, output_data_type=tf.int8,
                                     denylisted_nodes=nodes)
            return data


# Ops that pass a tensor's values on unchanged, only moved: the pixel-unshuffle (SPACE_TO_DEPTH)
# and the reshapes around it hold the frame's pixels too.
_MOVES_VALUES = ("SPACE_TO_DEPTH", "DEPTH_TO_SPACE", "RESHAPE", "TRANSPOSE", "SQUEEZE",
                 "EXPAND_DIMS")


def _widen_pixel_ranges(calibrated: bytes) -> bytes:
    """A calibrated (not yet quantized) model with the ranges of its input, the tensors that
    only move the input's values, and its output widened to take [0, 1] in: the input is a
    frame and the output the image delivered. Calibrated on night frames (brightest pixel
    0.30) the input and output clipped every brighter pixel, SSIM 0.745 to FP32 on daylight
    HIDE frames."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils as fbu

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = fbu.convert_bytearray_to_object(bytearray(calibrated))
    sg = model.subgraphs[0]
    pinned, todo = set(sg.inputs[:1]), list(sg.inputs[:1])
    while todo:
        t = todo.pop()
        for op in sg.operators:
            code = model.operatorCodes[op.opcodeIndex]
            kind = names.get(max(code.builtinCode, code.deprecatedBuiltinCode))
            if kind in _MOVES_VALUES and len(op.inputs) and op.inputs[0] == t \
                    and op.outputs[0] not in pinned:
                pinned.add(op.outputs[0])
                todo.append(op.outputs[0])
    for t in pinned | set(sg.outputs[:1]):
        q = sg.tensors[t].quantization
        if q is not None and q.min is not None and len(q.min) == 1:
            # Widened to take [0, 1] in, never narrowed (a model's output may overshoot it),
            # and only past an int8 step: crops of 0.99999 at most, widened to 1, cost the 9
            # Kodak photos' worst image 0.0002 SSIM.
            if float(q.min[0]) > 1 / 255:
                q.min = np.array([0.0], np.float32)
            if float(q.max[0]) < 1 - 1 / 255:
                q.max = np.array([1.0], np.float32)
    return bytes(fbu.convert_object_to_bytearray(model))


def set_default_input_shape(tflite_bytes: bytes, hw: tuple[int, int]) -> bytes:
    """Give the size-agnostic input ([1, -1, -1, 3]) a valid default shape, and the input and
    output the ONNX models' names.

    The converter stores [1, 1, 1, 3] as the default, which SPACE_TO_DEPTH / MAX_POOL cannot
    prepare, so a plain `allocate_tensors()` right after loading (before any resize) fails.
    The shape signature stays dynamic; runtimes still resize to the frame size. Its names
    ("serving_default_input:0", "StatefulPartitionedCall_1:0", signature output "output_0")
    are Keras internals that an app's code would otherwise hard-code."""
    from tensorflow.lite.tools import flatbuffer_utils as fbu

    from .onnx_export import INPUT_NAME, OUTPUT_NAME

    model = fbu.convert_bytearray_to_object(bytearray(tflite_bytes))
    sg = model.subgraphs[0]
    t = sg.tensors[sg.inputs[0]]
    if len(t.shape) == 4 and int(t.shape[-1]) == 3:
        t.shape = np.array([int(t.shape[0]) or 1, int(hw[0]), int(hw[1]), 3], dtype=np.int32)
        # The output's too (the converter leaves [1, 1, 1, 3]), as Netron and an app see it
        # before allocating: the students keep the frame's size.
        o = sg.tensors[sg.outputs[0]]
        if len(sg.outputs) == 1 and len(o.shape) == 4 and int(o.shape[-1]) == 3:
            o.shape = t.shape.copy()
    if len(sg.inputs) == 1 and len(sg.outputs) == 1:
        t.name = INPUT_NAME.encode()
        sg.tensors[sg.outputs[0]].name = OUTPUT_NAME.encode()
        for sig in model.signatureDefs or []:
            for entry, name in ((sig.inputs or [], INPUT_NAME), (sig.outputs or [], OUTPUT_NAME)):
                if len(entry) == 1:
                    entry[0].name = name.encode()
    return bytes(fbu.convert_object_to_bytearray(model))


def sidecar(model: nn.Module, ckpt: dict | None, quantization: str, tflite_bytes: bytes,
            float_layers: Sequence[str] = (), input_hw: tuple[int, int] | None = None) -> dict:
    from .onnx_export import student_metadata

    meta = student_metadata(model, ckpt)
    info = {
        "student": meta["student"],
        "arch_args": json.loads(meta["arch_args"]),
        "multiple": int(meta["multiple"]),
        "receptive_field": int(meta["receptive_field"]) if meta["receptive_field"] else None,
        "layout": "NHWC RGB",
        "quantization": {"int8": "full-integer int8 (weights, activations, input and output)",
                         "fp16": "float16 weights, float32 input/output",
                         "fp32": "float32"}[quantization]
                        + (f"; float layers: {', '.join(float_layers)}" if float_layers else ""),
        "float_layers": list(float_layers),
        "metrics": json.loads(meta["metrics"]),
        # The checkpoint it came from: the runtime warns when its folder's latest export used
        # other weights (runtime/backends/provenance.py).
        "source_sha256": meta["source_sha256"] or None,
    }
    io = tensor_io_quantization(tflite_bytes)
    info.update(io_contract(
        input_name=io["input"]["name"], output_name=io["output"]["name"],
        input_dtype=io["input"]["dtype"],
        input_range="[0,1]" if quantization != "int8" else
                    "int8 = round(x / scale + zero_point), x in [0,1]",
        shapes="batch 1, dynamic height, width"
               + (f", {input_hw[0]}x{input_hw[1]} until resized" if input_hw else "")
               + " (resize_tensor_input, then allocate_tensors)"))
    info.update(io)
    return info


def embed_metadata(tflite_bytes: bytes, info: dict) -> bytes:
    """The sidecar's JSON inside the .tflite too (the flatbuffer metadata entry named
    `runtime.contract.TFLITE_METADATA`): a file copied alone still says how to run it."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils as fbu

    from runtime.contract import TFLITE_METADATA

    model = fbu.convert_bytearray_to_object(bytearray(tflite_bytes))
    buf = schema.BufferT()
    buf.data = np.frombuffer(json.dumps(info, sort_keys=True).encode(), np.uint8)
    model.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name, entry.buffer = TFLITE_METADATA, len(model.buffers) - 1
    model.metadata = [e for e in (model.metadata or []) if e.name != TFLITE_METADATA.encode()]
    model.metadata.append(entry)
    return bytes(fbu.convert_object_to_bytearray(model))


def _litert_interpreter(path: str, threads: int):
    from runtime.backends.litert_backend import _interpreter_class
    return _interpreter_class()(model_path=path, num_threads=int(threads) if threads else None)


def tensor_io_quantization(tflite_bytes: bytes) -> dict:
    """dtype/scale/zero point of the input and output tensors."""
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(tflite_bytes)
        f.flush()
        interp = _litert_interpreter(f.name, 1)
        io = {}
        for key, det in (("input", interp.get_input_details()[0]),
                         ("output", interp.get_output_details()[0])):
            scale, zp = det["quantization"]
            # A float tensor's (0.0, 0) means "not quantized": null, not a scale to divide by.
            quantized = np.issubdtype(np.dtype(det["dtype"]), np.integer) and scale
            io[key] = {"name": det["name"], "dtype": np.dtype(det["dtype"]).name,
                       "scale": float(scale) if quantized else None,
                       "zero_point": int(zp) if quantized else None}
    return io


@_quiet_tf()
def export_tflite(model: nn.Module, path: str | os.PathLike, quantization: str = "int8",
                  crops: np.ndarray | None = None, ckpt: dict | None = None,
                  on_sample: Callable[[int, int], None] | None = None,
                  float_layers: Sequence[str] = (),
                  input_hw: tuple[int, int] | None = None) -> Path:
    """Keras rebuild + conversion; writes `path` and `path.json` atomically. input_hw: the
    input's size until an app resizes it (the size an Android Interpreter allocates and a GPU
    delegate prepares at load), rounded up to the model's multiple; default 256x256."""
    from .keras_student import fresh_keras_names

    with fresh_keras_names():   # the same inputs, the same bytes, however many exports ran
        return _export_tflite(model, path, quantization, crops, ckpt, on_sample, float_layers,
                              input_hw)


def _export_tflite(model: nn.Module, path: str | os.PathLike, quantization: str,
                   crops: np.ndarray | None, ckpt: dict | None,
                   on_sample: Callable[[int, int], None] | None,
                   float_layers: Sequence[str], input_hw: tuple[int, int] | None) -> Path:
    from .keras_student import build_keras_student

    km = build_keras_student(model.eval().cpu(), batch=1)
    if quantization == "int8" and float_layers:
        from distill.students import keras_twin

        from .float_layers import (keras_layer_names, twin_gap_message, twin_gaps,
                                   twin_named_layers)
        # A twin names its layers as its author chose: a name it lacks found no ops (or, beside
        # one it has, was dropped unsaid), after the calibration.
        if keras_twin(model) is not None and (
                missing := twin_gaps(float_layers, twin_named_layers(km))):
            raise ValueError(twin_gap_message(model, missing, keras_layer_names(km)))
    data = convert_keras(km, quantization, crops, on_sample, float_layers)
    m = int(getattr(model, "multiple", 1))
    hw = tuple(max(m, -(-int(d) // m) * m) for d in (input_hw or (256, 256)))
    data = set_default_input_shape(data, hw)
    path = Path(path)
    info = sidecar(model, ckpt, quantization, data, float_layers, hw)
    data = embed_metadata(data, info)
    atomic_write_bytes(path, data)
    atomic_write_json(Path(str(path) + ".json"), info)
    return path


def tensor_types(path: str | os.PathLike) -> dict[str, int]:
    """Count of tensor dtypes in a .tflite model (via the interpreter's tensor details)."""
    from collections import Counter

    interp = _litert_interpreter(str(path), 1)
    return dict(Counter(np.dtype(d["dtype"]).name for d in interp.get_tensor_details()))
