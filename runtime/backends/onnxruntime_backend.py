"""ONNX Runtime backend: the default on every device (CPU build, or onnxruntime-gpu on CUDA)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from .base import Backend, ModelError, parse_multiple, read_sidecar

# Preference order for "auto": fastest first. Only providers this onnxruntime build offers are
# used; ORT itself falls back to the next one when a provider cannot take a node.
_AUTO_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}
# Op types that only appear in quantised graphs (QDQ format or QOperator format).
_INT8_OPS = (b"QuantizeLinear", b"DequantizeLinear", b"QLinearConv", b"ConvInteger",
             b"MatMulInteger", b"QLinearMatMul")

ProviderSpec = Union[None, str, Sequence[str]]


def resolve_providers(spec: ProviderSpec, available: Sequence[str]) -> list[str]:
    """Turn `auto` / `cpu` / `cuda` / `tensorrt` (or full provider names) into the ordered list
    handed to InferenceSession. CPU is always appended as the last resort."""
    if spec is None or spec == "auto" or spec == ["auto"]:
        chosen = [p for p in _AUTO_ORDER if p in available]
        return chosen or ["CPUExecutionProvider"]
    names = [spec] if isinstance(spec, str) else list(spec)
    chosen = []
    for n in names:
        full = _ALIASES.get(n.lower(), n)
        if full not in available:
            hint = (" (install onnxruntime-gpu on a CUDA machine, never next to onnxruntime)"
                    if full != "CPUExecutionProvider" else "")
            raise ModelError(f"ONNX Runtime provider {n!r} is not available in this build; "
                             f"available: {', '.join(available)}{hint}")
        chosen.append(full)
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def detect_precision(model_bytes: bytes, input_type: str, metadata: dict[str, str]) -> str:
    """int8 if the graph holds quantisation ops, else fp16/fp32 from the input type.

    The graph is scanned as raw protobuf bytes (op types are stored as plain strings) because
    the `onnx` package is not part of the device install.
    """
    declared = metadata.get("precision")
    if declared:
        return declared
    if any(op in model_bytes for op in _INT8_OPS):
        return "int8"
    return "fp16" if "float16" in input_type else "fp32"


def _provider_options(provider: str) -> dict[str, str]:
    if provider == "TensorrtExecutionProvider":
        # Building a TensorRT engine takes minutes on a Jetson: cache it across runs.
        cache = Path(os.environ.get("SHARPEN_TRT_CACHE", Path.home() / ".cache" / "sharpen" / "trt"))
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError:
            return {}  # read-only home: still runs, only without the cache
        return {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache)}
    return {}


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    layout = "NCHW"

    def __init__(self, path: Union[str, Path], threads: Optional[int] = None,
                 providers: ProviderSpec = "auto") -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError("ONNX Runtime is not installed: `pip install onnxruntime` "
                             "(or onnxruntime-gpu on a CUDA machine)") from None
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read model {path}: {exc.strerror or exc}") from None
        chosen = resolve_providers(providers, ort.get_available_providers())
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.log_severity_level = 3  # ORT warns about every node it puts on CPU; too noisy live.
        # The memory pattern pre-plans one block per input shape that keeps every intermediate
        # tensor: at 1080p that block is several times the live set (README: peak memory), and
        # turning it off costs no measurable latency on CPU.
        opts.enable_mem_pattern = False
        try:
            # Loading from the path (not the bytes) keeps external-data models working.
            self.session = ort.InferenceSession(
                str(path), sess_options=opts,
                providers=[(p, _provider_options(p)) for p in chosen])
        except Exception as exc:  # ORT raises its own exception types, one per failure kind
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"cannot load {path} with ONNX Runtime (is it an ONNX model?): "
                             f"{msg[:300]}") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ModelError(f"{path}: expected one image input and one output, got "
                             f"{len(inputs)} inputs and {len(outputs)} outputs")
        self.input_name = inputs[0].name
        self.output_name = outputs[0].name
        shape = inputs[0].shape
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            raise ModelError(f"{path}: expected an NCHW RGB input [N,3,H,W], got {shape}")
        self.input_dtype = np.float16 if "float16" in inputs[0].type else np.float32
        meta = dict(self.session.get_modelmeta().custom_metadata_map or {})
        sidecar = read_sidecar(path)
        self.multiple = parse_multiple(meta.get("multiple", sidecar.get("multiple")), str(path))
        self.precision = detect_precision(data, inputs[0].type, meta)
        self.provider = self.session.get_providers()[0]
        self.path = path

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if batch.dtype != self.input_dtype:
            batch = batch.astype(self.input_dtype)
        out = self.session.run([self.output_name], {self.input_name: batch})[0]
        return out if out.dtype == np.float32 else out.astype(np.float32)
