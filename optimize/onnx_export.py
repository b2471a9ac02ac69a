"""FP32 ONNX export of a student: dynamic batch/height/width, one self-contained file, metadata.

Metadata (model.metadata_props), read back by the runtime:
    student   - registry name (e.g. "fast")
    arch_args - JSON of the constructor arguments
    layout    - "NCHW RGB float32 [0,1]"
    multiple  - H and W must be divisible by this (string int); pad (reflect) and crop otherwise
    metrics   - JSON of the training metrics stored in the checkpoint
    precision - "fp32" here; "int8" in the quantised models derived from it
    source_sha256 - sha256 of the checkpoint file it was exported from
and the keys of `runtime.contract.io_contract` (names, colour order, range, padding, clamping,
producer and version), also in words as the model's doc_string, for programs without this
project. Input "input" [N, 3, H, W], output "output" [N, 3, H, W] (not clamped).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from runtime.atomic import atomic_write_bytes
from runtime.warn import SharpenWarning

LAYOUT = "NCHW RGB float32 [0,1]"
INPUT_NAME, OUTPUT_NAME = "input", "output"
DEFAULT_OPSET = 17
MIN_OPSET = 17
try:   # the newest opset torch's TorchScript exporter (dynamo=False, used here) writes
    from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET as MAX_OPSET
except ImportError:   # a torch without the constant: the value of torch 2.x
    MAX_OPSET = 20


def student_metadata(model: nn.Module, ckpt: dict | None = None) -> dict[str, str]:
    ckpt = ckpt or {}
    return {
        "student": str(getattr(model, "arch_name", ckpt.get("arch", type(model).__name__))),
        "arch_args": json.dumps(getattr(model, "arch_args", ckpt.get("arch_args", {})),
                                sort_keys=True),
        "layout": LAYOUT,
        "multiple": str(int(getattr(model, "multiple", 1))),
        "receptive_field": str(ckpt.get("receptive_field") or ""),
        "metrics": json.dumps(ckpt.get("metrics", {}) or {}, sort_keys=True, default=str),
        "precision": "fp32",
        # Which checkpoint the artifact came from (sha256 of the file), set by `export`.
        "source_sha256": str(ckpt.get("source_sha256", "")),
    }


def onnx_contract() -> dict[str, str]:
    from runtime.contract import io_contract
    return io_contract(input_name=INPUT_NAME, output_name=OUTPUT_NAME, input_dtype="float32",
                       input_range="[0,1]", shapes="dynamic batch, height, width")


def finish_onnx(model_proto) -> None:
    """What every ONNX file this project writes carries, after its metadata is set: the
    recorded contract in words as doc_string, this project as producer (not torch's version nor
    the quantiser's name) and only the opset domains its nodes use (ONNX Runtime's quantiser
    imports eight more, com.microsoft and ai.onnx.training among them, which an app's
    runtime would have to accept)."""
    from runtime.contract import PRODUCER, contract_text, producer_version
    model_proto.doc_string = contract_text(read_metadata(model_proto))
    model_proto.producer_name, model_proto.producer_version = PRODUCER, producer_version()
    nodes = list(model_proto.graph.node) + [n for f in model_proto.functions for n in f.node]
    if any(a.g.node or a.graphs for n in nodes for a in n.attribute):
        return   # subgraphs (If, Loop): their nodes' domains count too; left as written
    used = {n.domain or "" for n in nodes} | {f.domain for f in model_proto.functions} | {""}
    kept = [o for o in model_proto.opset_import if (o.domain or "") in used
            or o.domain == "ai.onnx"]
    del model_proto.opset_import[:]
    model_proto.opset_import.extend(kept)


def set_metadata(model_proto, meta: dict[str, str]) -> None:
    existing = {p.key: p for p in model_proto.metadata_props}
    for k, v in meta.items():
        if k in existing:
            existing[k].value = str(v)
        else:
            p = model_proto.metadata_props.add()
            p.key, p.value = k, str(v)


def record_parity_failure(path: Path, reason: str | None) -> None:
    """Write the failed gate's reason into the model's metadata (the `parity_failed` key), where
    the runtime finds it even when the model is copied without the marker file beside it; None
    removes it (models quantised from a failed one inherit its metadata)."""
    import onnx

    from runtime.atomic import atomic_write_bytes
    from runtime.backends.base import PARITY_KEY

    proto = onnx.load(str(path), load_external_data=False)
    keys = [p.key for p in proto.metadata_props]
    if reason is not None:
        set_metadata(proto, {PARITY_KEY: reason})
    elif PARITY_KEY in keys:
        del proto.metadata_props[keys.index(PARITY_KEY)]
    else:
        return
    atomic_write_bytes(Path(path), proto.SerializeToString())


def read_metadata(path_or_proto) -> dict[str, str]:
    import onnx

    proto = path_or_proto
    if not hasattr(proto, "metadata_props"):
        proto = onnx.load(str(path_or_proto), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def export_onnx(model: nn.Module, path: str | os.PathLike, ckpt: dict | None = None,
                opset: int = DEFAULT_OPSET, simplify: bool = True,
                sample_hw: tuple[int, int] = (64, 64)) -> Path:
    """Export `model` (eval mode, CPU) to `path` as FP32 ONNX; returns the path.

    Uses the TorchScript exporter (dynamo=False): with `dynamic_axes` it gives a clean,
    fully dynamic graph for these conv nets. `simplify` runs onnxslim (constant folding, dead
    code) when it is installed and keeps the result only if it still passes the checker.
    """
    import onnx

    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"opset {opset}: use {MIN_OPSET} to {MAX_OPSET}")
    model = model.eval().cpu()
    m = int(getattr(model, "multiple", 1))
    h = max(m, sample_hw[0] // m * m)
    w = max(m, sample_hw[1] // m * m)
    dummy = torch.rand(1, 3, h, w)
    buf = io.BytesIO()
    from runtime.console import native_stderr_captured

    failed = None
    # Inside the window, which holds fd 2 for this thread alone: another export's dump waits.
    with native_stderr_captured(_IR_DUMP) as dump, _onnx_log_on_stderr(), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model, (dummy,), buf, dynamo=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                              OUTPUT_NAME: {0: "batch", 2: "height", 3: "width"}},
                do_constant_folding=True)
        except torch.onnx.errors.UnsupportedOperatorError as e:
            failed = e
    if failed is not None:
        failed.args = (f"{failed}{_where_used(failed, dump[0] if dump else '', model)}",)
        raise failed
    proto = onnx.load_from_string(buf.getvalue())
    if simplify:
        proto = _maybe_simplify(proto)
    set_metadata(proto, {**student_metadata(model, ckpt), **onnx_contract()})
    finish_onnx(proto)
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    if len(data) >= 2 ** 31 - 1:  # protobuf limit; students are a few hundred kB
        raise ValueError("model too large for a single-file ONNX")
    return atomic_write_bytes(path, data)


@contextlib.contextmanager
def _onnx_log_on_stderr():
    """Torch's ONNX log sent to fd 2 for the block, where a window can keep it: it goes to
    stdout, into `sharpen export`'s own output. Put back on stdout after, torch's default (it
    has no getter): left on stderr, a program exporting its own models after ours found its
    dumps moved."""
    with contextlib.suppress(AttributeError, RuntimeError):
        torch._C._jit_set_onnx_log_output_stream("stderr")
    try:
        yield
    finally:
        with contextlib.suppress(AttributeError, RuntimeError):
            torch._C._jit_set_onnx_log_output_stream("stdout")


# The graph torch's TorchScript exporter writes to fd 2 when an operator fails (always: its
# check of whether logging is on tests a function, not its result), kept off the terminal.
_IR_DUMP = re.compile(r"Torch IR graph at exception: |\s+(%|return \()|\s*$")


def _where_used(e: Exception, dump: str, model: nn.Module) -> str:
    """'; Net uses it in block (Block), at file.py:12: `code`': the student's block and line
    that call the operator `e` names, read off the exporter's graph dump ('... = aten::op(...),
    scope: mod.Net::/mod.Block::block # file.py:12:0'); '' where the dump does not say."""
    import linecache

    op = re.search(r"'([\w:.]+)'", str(e))
    line = next((ln for ln in dump.splitlines() if op and f"= {op[1]}(" in ln), "")
    scope, src = re.search(r"scope: (\S+)", line), re.search(r"# (.+):(\d+):\d+\s*$", line)
    if not scope:
        return ""
    said = f"; {type(model).__name__} uses it"
    parts = [p.split("::") for p in scope[1].split("/")]
    path = ".".join(name for _, name in parts if name)
    if path:
        said += f" in {path} ({parts[-1][0].rsplit('.', 1)[-1]})"
    if src and not src[1].startswith(os.path.dirname(torch.__file__) + os.sep):
        code = linecache.getline(src[1], int(src[2])).strip()
        said += f", at {src[1]}:{src[2]}" + (f": `{code}`" if code else "")
    return said


def _maybe_simplify(proto):
    import onnx

    try:
        import onnxslim
    except ImportError:
        return proto
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            slim = onnxslim.slim(proto)
        onnx.checker.check_model(slim)
        # onnxslim must not pin the dynamic dims.
        dims = [d.dim_param or d.dim_value for d in slim.graph.input[0].type.tensor_type.shape.dim]
        if any(isinstance(d, int) and d > 0 for i, d in enumerate(dims) if i != 1):
            return proto
        # onnxslim's symbolic shape inference names the dims it cannot solve in an order that
        # follows Python's string hashing: the edge student's ONNX, and the INT8 model built
        # from it, differed run to run (value_info alone). ONNX's own inference is the same
        # every run.
        del slim.graph.value_info[:]
        try:
            return onnx.shape_inference.infer_shapes(slim)
        except Exception:   # shapes are hints: the runtimes infer their own
            return slim
    except Exception as e:  # a simplifier bug must never break the export
        warnings.warn(f"onnxslim failed ({type(e).__name__}: {e}); keeping the unsimplified "
                      "model", SharpenWarning)
        return proto
