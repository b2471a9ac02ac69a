"""The one table of deployment formats, in the style of Ultralytics' exporter table.

`sharpen export` builds from it (builder, calibration, availability, parity gate), `sharpen run`
picks its engine by file suffix from it, `sharpen bench` makes one row per format from it, and
the help texts list it. It lives in the runtime, the lowest layer, so that every layer can read
it; the exporter's parts are named as strings and resolved only when exporting, so the runtime
never imports the exporter (or torch)."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Optional, Union


@dataclass(frozen=True)
class Format:
    name: str                 # what --formats takes
    suffix: str               # appended to the output stem; its extension picks the engine
    precision: str            # fp32 / fp16 / int8
    engine: str               # runtime backend: onnxruntime / litert / tensorrt
    label: str                # row label in benchmark tables
    target: str               # where the artifact is meant to run
    needs_calibration: bool   # INT8: calibration crops
    gate: str                 # parity gate: "fp32" = max abs error, "reduced" = SSIM
    description: str
    available: Union[str, Callable[[], Optional[str]]]  # "module:function" -> None or reason
    builder: str              # method of optimize.export's build context
    bench_key: str            # id of the benchmark row (test ids, report tables)
    # The libraries (runtime.host.LIBRARIES' names) that build the artifact or run its parity
    # gate: an upgrade of one rebuilds the artifacts whose formats list it, in the export and
    # in the bench's cache alike, and no others (a TensorFlow upgrade rebuilt the ONNX models).
    libraries: tuple[str, ...]
    providers: str = "auto"   # ONNX Runtime providers when benchmarking
    informational: bool = False
    note: str = ""

    def availability(self) -> Optional[str]:
        """None when this machine can build the format, else the reason it cannot."""
        fn = self.available
        if isinstance(fn, str):
            module, attr = fn.split(":")
            fn = getattr(importlib.import_module(module), attr)
        return fn()


_E = "optimize.export"
# torch for every format (it exports the student, gives the reference output and simulates
# INT8 for --float-layers auto); the FP32 ONNX model's for the formats built from it; onnx for
# TFLite INT8 too (auto traces float regions through the student's ONNX graph).
_ONNX_LIBS = ("torch", "onnx", "onnxslim")
FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("onnx", ".onnx", "fp32", "onnxruntime", "ONNX Runtime FP32", "ONNX Runtime (CPU/GPU)",
           False, "fp32", "FP32 ONNX, dynamic batch/height/width, with metadata",
           f"{_E}:_onnx_available", "_build_onnx", "ort-fp32",
           (*_ONNX_LIBS, "onnxruntime")),
    Format("onnx-int8", "_int8.onnx", "int8", "onnxruntime", "ONNX Runtime INT8",
           "ONNX Runtime CPU", True, "reduced",
           "ONNX Runtime static INT8 QDQ, per-channel, reduce_range",
           f"{_E}:_onnx_available", "_build_onnx_int8", "ort-int8",
           (*_ONNX_LIBS, "onnxruntime")),
    Format("onnx-qdq-trt", "_qdq_trt.onnx", "int8", "onnxruntime", "ModelOpt QDQ on ORT CPU",
           "TensorRT INT8", True, "reduced", "NVIDIA ModelOpt INT8 QDQ ONNX for TensorRT",
           f"{_E}:_modelopt_available", "_build_onnx_qdq_trt", "modelopt-qdq-ort",
           (*_ONNX_LIBS, "onnxruntime", "nvidia_modelopt"),
           providers="cpu", informational=True,
           note="informational: the QDQ model is meant for TensorRT INT8"),
    Format("tflite-int8", "_int8.tflite", "int8", "litert", "TFLite INT8 (LiteRT)",
           "LiteRT (XNNPACK)", True, "reduced",
           "full-integer TFLite (int8 weights, activations and I/O)",
           f"{_E}:_tflite_available", "_build_tflite_int8", "tflite-int8",
           ("torch", "onnx", "tensorflow", "ai_edge_litert")),
    Format("tflite-fp16", "_fp16.tflite", "fp16", "litert", "TFLite FP16 (LiteRT)",
           "LiteRT (XNNPACK / GPU)", False, "reduced", "TFLite with float16 weights",
           f"{_E}:_tflite_available", "_build_tflite_fp16", "tflite-fp16",
           ("torch", "tensorflow", "ai_edge_litert")),
    Format("engine", "_fp16.engine", "fp16", "tensorrt", "TensorRT FP16",
           "TensorRT (the GPU it is built on)", False, "reduced", "TensorRT FP16 engine",
           f"{_E}:_trt_available", "_build_engine", "trt-fp16", (*_ONNX_LIBS, "tensorrt")),
    Format("engine-int8", "_int8.engine", "int8", "tensorrt", "TensorRT INT8",
           "TensorRT (the GPU it is built on)", True, "reduced",
           "TensorRT INT8 engine from the ModelOpt QDQ model", f"{_E}:_trt_int8_available",
           "_build_engine_int8", "trt-int8",
           (*_ONNX_LIBS, "onnxruntime", "nvidia_modelopt", "tensorrt")),
)}

# File extension -> engine, from the table (.plan: trtexec's other name for an engine).
ENGINE_BY_SUFFIX: dict[str, str] = {
    **{"." + f.suffix.rsplit(".", 1)[-1]: f.engine for f in FORMATS.values()},
    ".plan": "tensorrt"}


def help_lines() -> str:
    """The table as `--help` text: one format per line."""
    width = max(map(len, FORMATS))
    return "\n".join(f"  {f.name:<{width}}  {f.description}; runs on {f.target}"
                     for f in FORMATS.values())
