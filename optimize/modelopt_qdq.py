"""INT8 QDQ ONNX for TensorRT with NVIDIA ModelOpt's ONNX post-training quantisation.

`modelopt.onnx.quantization.quantize` inserts TensorRT-style Q/DQ pairs (int8, symmetric,
per-channel weights) placed where TensorRT fuses them; TensorRT then builds INT8 kernels from
the QDQ model (`engine-int8`). Calibration runs through ONNX Runtime on the CPU here
(calibration_eps=["cpu"]) with a float32 high-precision dtype, so no GPU is needed to produce it.

Traps handled here:
- ModelOpt rewrites/annotates the model file it is given and drops intermediate files next to
  it: it gets a copy in a temporary folder, never the exported FP32 file.
- Its `[onnx]` extra pulls `onnxruntime-gpu`, which shares the `onnxruntime` folder with the CPU
  package; the project declares `nvidia-modelopt` without that extra (see pyproject's `modelopt`
  extra), so exactly one onnxruntime stays installed.
- It does not keep the model's metadata_props: they are copied back from the FP32 model.
- It monkey-patches onnxruntime.quantization for good, which changes every later ONNX Runtime
  INT8 export in the same process: it runs in a child interpreter.
"""
from __future__ import annotations

import contextlib
import inspect
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from runtime.cli_errors import raise_if_interrupted

METHODS = ("entropy", "max")
# On held-out photos with a trained `fast` student (min SSIM to FP32, run by ORT CPU):
# entropy 0.9988, max 0.9979. (ModelOpt hands "entropy" to ORT's histogram calibrator.)
DEFAULT_METHOD = "entropy"


def availability() -> str | None:
    """None when ModelOpt's ONNX quantisation can run here, else the reason it cannot."""
    try:
        import modelopt.onnx.quantization  # noqa: F401
    except ImportError as e:
        raise_if_interrupted(e)   # a Ctrl-C while it loads is not a missing package
        return (f"NVIDIA ModelOpt is not installed ({e.name or e}); install the project's "
                "'modelopt' extra: pip install -e '.[modelopt]'")
    except Exception as e:  # broken install (e.g. onnxruntime-gpu clobbering onnxruntime)
        return f"NVIDIA ModelOpt cannot be imported: {type(e).__name__}: {e}"
    try:
        import onnxruntime

        onnxruntime.InferenceSession  # noqa: B018 - a half-removed onnxruntime lacks it
    except Exception as e:
        raise_if_interrupted(e)
        return f"onnxruntime is broken ({e}); reinstall the CPU package 'onnxruntime'"
    return None


def conv_sum_adds(onnx_path: str | os.PathLike) -> list[str]:
    """Names of the Add nodes that sum two convolution outputs.

    ModelOpt quantizes one input of such an Add (so TensorRT can fuse it into the other conv).
    When the two terms largely cancel, as in `fast`'s gated input path (ReLU(conv(input) +
    conv(features))), the 8-bit rounding of one large term swamps their small difference:
    worst-case SSIM to FP32 fell to 0.97 on test photos, 0.997 with these Adds left in high
    precision. They are a small share of the model's work."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    producer = {out: node.op_type for node in graph.node for out in node.output}
    return [n.name for n in graph.node if n.op_type == "Add" and len(n.input) == 2
            and all(producer.get(i) == "Conv" for i in n.input)]


def quantize_qdq_trt(fp32_path: str | os.PathLike, out_path: str | os.PathLike,
                     crops: np.ndarray, method: str = DEFAULT_METHOD,
                     float_layers: Sequence[str] = (), threads: int | None = None) -> Path:
    """ModelOpt INT8 PTQ of an FP32 ONNX file, calibrated on `crops` (N x 3 x H x W float32).
    Writes `out_path` atomically and returns it.

    ModelOpt runs in a child process: it monkey-patches onnxruntime.quantization for its own use
    and never undoes it, so a later ONNX Runtime INT8 export in the same process (the next
    student in `sharpen bench`, say) came out different and worse (worst-case SSIM to FP32
    0.977 against 0.991 for a `fast` student).

    The nodes of the modules named in `float_layers` stay in high precision
    (`optimize/float_layers.py`). Its ONNX Runtime sessions run `threads` CPU threads (None or
    0: OMP_NUM_THREADS's count, else every core), as the runtime's backends do."""
    import onnx

    from runtime.host import THREADS_VARS, default_threads

    from .onnx_export import atomic_write_bytes, finish_onnx, read_metadata, set_metadata

    reason = availability()
    if reason:
        raise RuntimeError(reason)
    if method not in METHODS:
        raise ValueError(f"unknown ModelOpt calibration method {method!r}; choose {METHODS}")
    crops = np.ascontiguousarray(crops, dtype=np.float32)
    if crops.ndim != 4 or crops.shape[1] != 3:
        raise ValueError(f"calibration crops must be N x 3 x H x W, got {crops.shape}")
    meta = read_metadata(fp32_path)
    with tempfile.TemporaryDirectory(prefix="sharpen-modelopt-") as tmp:
        src = Path(tmp) / "model_fp32.onnx"
        shutil.copyfile(fp32_path, src)  # ModelOpt modifies its input in place
        dst = Path(tmp) / "model_qdq.onnx"
        np.save(Path(tmp) / "crops.npy", crops)
        # A fresh interpreter rather than multiprocessing's spawn, which re-runs the caller's
        # main script in the child when it lacks an `if __name__ == "__main__"` guard.
        root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
        # The child reads the count from the variable (_quantize_in_child): given here, it
        # replaces the one the child would inherit (export's --threads read only in this process).
        if n := default_threads(threads):   # each: the child reads MKL's over OMP's
            env.update(dict.fromkeys(THREADS_VARS, str(n)))
        code = ("import sys; from optimize.modelopt_qdq import _quantize_in_child as q; "
                "q(*sys.argv[1:])")
        proc = subprocess.run([sys.executable, "-c", code, str(src), str(dst),
                               str(Path(tmp) / "crops.npy"), method, ",".join(float_layers)],
                              env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            last = lines[-1] if lines else f"exit status {proc.returncode}"
            raise RuntimeError(last.removeprefix("RuntimeError: ")
                               if last.startswith("RuntimeError: ModelOpt")
                               else f"ModelOpt quantization failed: {last}")
        if not dst.exists():
            raise RuntimeError("ModelOpt finished without writing a quantized model")
        proto = onnx.load(str(dst))
    set_metadata(proto, {**meta, "precision": "int8", "activations": "int8 symmetric",
                         "quantization": f"int8 QDQ for TensorRT (NVIDIA ModelOpt, {method} "
                                         "calibration"
                                         + (f", float layers: {', '.join(float_layers)}"
                                            if float_layers else "") + ")"})
    finish_onnx(proto)
    onnx.checker.check_model(proto)
    return atomic_write_bytes(out_path, proto.SerializeToString())


def _sessions_on(threads: int) -> None:
    """Every ONNX Runtime session made in this (child) process from now on runs `threads`
    intra-op threads: ModelOpt makes its calibration sessions itself, on every core whatever
    OMP_NUM_THREADS says. The child is ModelOpt's alone, so the class is replaced for good."""
    import onnxruntime as ort

    base = ort.InferenceSession

    class Session(base):
        def __init__(self, path_or_bytes, sess_options=None, *args, **kwargs):
            sess_options = sess_options or ort.SessionOptions()
            sess_options.intra_op_num_threads = threads
            super().__init__(path_or_bytes, sess_options, *args, **kwargs)

    ort.InferenceSession = Session


def _quantize_in_child(src: str, dst: str, crops_path: str, method: str,
                       float_layers: str = "") -> None:
    import onnx
    from modelopt.onnx.quantization import quantize

    from runtime.host import default_threads

    from .float_layers import onnx_nodes

    if threads := default_threads(None):   # as the runtime's backends (README: threads)
        _sessions_on(threads)

    params = inspect.signature(quantize).parameters
    kwargs = dict(onnx_path=src, calibration_data=np.load(crops_path),
                  calibration_method=method, output_path=dst)
    # The mode argument was renamed across releases.
    kwargs["quantize_mode" if "quantize_mode" in params else "quantization_mode"] = "int8"
    keep = conv_sum_adds(src) + (onnx_nodes(onnx.load(src, load_external_data=False),
                                            float_layers.split(",")) if float_layers else [])
    optional = {"calibration_eps": ["cpu"], "high_precision_dtype": "fp32",
                "log_level": "CRITICAL",
                # ModelOpt reads each entry as a regular expression over node names.
                "nodes_to_exclude": [f"^{re.escape(n)}$" for n in dict.fromkeys(keep)] or None}
    kwargs.update({k: v for k, v in optional.items() if k in params})
    # ModelOpt/ORT calibration prints per-tensor progress bars; keep them for errors only.
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            quantize(**kwargs)
    except Exception as e:
        tail = " | ".join(log.getvalue().strip().splitlines()[-3:])
        raise RuntimeError(f"ModelOpt quantization failed: {type(e).__name__}: {e}"
                           + (f" ({tail})" if tail else "")) from None


def qdq_summary(path_or_proto) -> dict:
    """Q/DQ node counts and the integer types they quantise to (zero-point / quantized
    initializer dtypes), to check that a model really is INT8."""
    import onnx

    proto = path_or_proto if hasattr(path_or_proto, "graph") else onnx.load(str(path_or_proto))
    inits = {i.name: i for i in proto.graph.initializer}
    types: dict[str, int] = {}
    counts = {"QuantizeLinear": 0, "DequantizeLinear": 0}
    for node in proto.graph.node:
        if node.op_type in counts:
            counts[node.op_type] += 1
            # DQ input 0 is the quantized tensor when it is an initializer; input 2 (zero point)
            # carries the integer type for both Q and DQ.
            cands = list(node.input[2:3])
            if node.op_type == "DequantizeLinear":
                cands.append(node.input[0])
            for name in cands:
                if name in inits and inits[name].data_type in (
                        onnx.TensorProto.INT8, onnx.TensorProto.UINT8):
                    t = onnx.TensorProto.DataType.Name(inits[name].data_type)
                    types[t] = types.get(t, 0) + 1
    conv_inputs_dq = 0
    producers = {o: n for n in proto.graph.node for o in n.output}
    for node in proto.graph.node:
        if node.op_type == "Conv" and len(node.input) > 1:
            p = producers.get(node.input[1])
            if p is not None and p.op_type == "DequantizeLinear":
                conv_inputs_dq += 1
    return {**counts, "integer_types": types, "convs_with_quantized_weights": conv_inputs_dq,
            "convs": sum(n.op_type == "Conv" for n in proto.graph.node)}
