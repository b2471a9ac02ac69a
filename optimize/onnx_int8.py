"""INT8 ONNX for CPU deployment: ONNX Runtime static quantisation (QDQ, per-channel weights).

Choices, and why:
- QDQ format: portable (any runtime that reads ONNX), and ORT CPU fuses Q/DQ pairs into
  QLinearConv & co. at session creation.
- activations uint8 (asymmetric), weights int8 per channel (symmetric).
- reduce_range=True: weights use 7 bits. CPUs without VNNI (AVX2 only, like this machine) run
  u8s8 products with `vpmaddubsw`, whose int16 intermediate saturates with full 8-bit weights;
  the lost bit avoids the saturation (wrong pixels), at a precision cost (about twice
  the error of 8-bit weights). `sharpen export --no-reduce-range` is for deployments on CPUs
  with VNNI only.
- calibration that really clips: ORT's default entropy settings (128 bins, 128 quantized bins)
  cannot clip anything, so they give the same ranges as min-max. "percentile" (default 99.999)
  clips the rare extreme activations; "entropy" here uses 2048 histogram bins so the KL search
  has room to clip. The default is the method that gave the best SSIM to the FP32 output on
  real photos with the trained students (see `DEFAULT_METHOD`).
- `quant_pre_process` (ONNX shape inference + graph optimisation) runs first.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

METHODS = ("percentile", "entropy", "minmax")
# Measured on held-out photos (skimage chelsea + immunohistochemistry, blurred, full size) with
# a briefly trained `fast` student, min SSIM to FP32: percentile 99.999 asymmetric 0.9970,
# percentile 99.99 0.9965, min-max 0.9962, entropy (2048 bins) 0.9927 and 12x slower to
# calibrate. Percentile 99.999 is the default.
DEFAULT_METHOD = "percentile"
DEFAULT_PERCENTILE = 99.999


def make_reader(crops: np.ndarray, input_name: str = "input",
                on_batch: Callable[[int, int], None] | None = None):
    """An onnxruntime CalibrationDataReader over N x 3 x H x W float32 crops (one per call)."""
    from onnxruntime.quantization import CalibrationDataReader

    class CropReader(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= len(crops):
                return None
            x = np.ascontiguousarray(crops[self.i:self.i + 1], dtype=np.float32)
            self.i += 1
            if on_batch:
                on_batch(self.i, len(crops))
            return {input_name: x}

        def rewind(self):
            self.i = 0

        def __len__(self):
            return len(crops)

    return CropReader()


# Crops whose intermediate outputs are held at once during calibration. ONNX Runtime's
# calibrators keep every intermediate tensor of every crop before building histograms; for a
# student with full-resolution layers that is hundreds of MB per 256x256 crop (tens of GB for
# 64 crops). Fed in chunks, the histograms and ranges are merged across chunks instead.
CALIB_CHUNK = 4


class _ListReader:
    def __init__(self, items: list):
        self.items = iter(items)

    def get_next(self):
        return next(self.items, None)


def _chunked(collect_data: Callable, chunk: int) -> Callable:
    """calibrator.collect_data over `chunk` items of the reader at a time."""
    def collect(reader) -> None:
        while True:
            items = []
            while len(items) < chunk:
                item = reader.get_next()
                if not item:
                    break
                items.append(item)
            if items:
                collect_data(_ListReader(items))
            if len(items) < chunk:
                return
    return collect


def _quiet_runs(base: type) -> type:
    """An ONNX Runtime session class whose runs log fatal errors only. ORT's calibrator runs its
    session itself, without run options: a failing run printed ORT's own log line of it
    ([E:onnxruntime:...] ExecuteKernel) on stderr, then the export said the error raised
    again, in its report; the runtime's sessions run so too (onnxruntime_backend.py)."""
    import onnxruntime

    class QuietRuns(base):
        def run(self, output_names, input_feed, run_options=None):
            if run_options is None:
                run_options = onnxruntime.RunOptions()
                run_options.log_severity_level = 4
            return super().run(output_names, input_feed, run_options)

    return QuietRuns


@contextlib.contextmanager
def _calibrator_options(threads: int | None = None, **opts):
    """quantize_static forwards only a few calibrator options (not the histogram sizes): wrap
    its create_calibrator to add them, and to feed the calibrator CALIB_CHUNK crops at a time.
    Its session runs on `threads`, else OMP_NUM_THREADS's count, as the runtime's backends do
    (ORT's calibrator took every core, its threads spinning, whatever the variable said), and
    its runs log fatal errors only (`_quiet_runs`)."""
    import importlib

    from onnxruntime.quantization.calibrate import CalibraterBase

    from runtime.host import default_threads

    qmod = importlib.import_module("onnxruntime.quantization.quantize")
    original = qmod.create_calibrator
    original_session = CalibraterBase.create_inference_session
    threads = default_threads(threads)

    def session(self) -> None:
        import onnxruntime

        so = onnxruntime.SessionOptions()   # as ORT's own, with the thread count
        so.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        if threads:
            so.intra_op_num_threads = threads
            # Not spinning between runs, as the runtime's sessions: beside other work (a test
            # worker, a bench) spinning threads take the cores it needs.
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.infer_session = _quiet_runs(onnxruntime.InferenceSession)(
            self.augmented_model_path, sess_options=so, providers=self.execution_providers)

    def create(*args, **kw):
        extra = dict(kw.get("extra_options") or {})
        extra.update(opts)
        kw["extra_options"] = extra
        calibrator = original(*args, **kw)
        calibrator.collect_data = _chunked(calibrator.collect_data, CALIB_CHUNK)
        return calibrator

    qmod.create_calibrator = create
    CalibraterBase.create_inference_session = session
    try:
        yield
    finally:
        qmod.create_calibrator = original
        CalibraterBase.create_inference_session = original_session


def quantize_onnx_int8(fp32_path: str | os.PathLike, out_path: str | os.PathLike,
                       crops: np.ndarray, method: str = DEFAULT_METHOD,
                       percentile: float = DEFAULT_PERCENTILE, reduce_range: bool = True,
                       per_channel: bool = True, preprocess: bool = True,
                       float_layers: Sequence[str] = (),
                       on_batch: Callable[[int, int], None] | None = None,
                       threads: int | None = None) -> Path:
    """Static INT8 QDQ quantisation of an FP32 ONNX file; written atomically to `out_path`.
    Metadata of the FP32 model is carried over (plus "quantization"). The nodes of the
    student's modules named in `float_layers` stay float (`optimize/float_layers.py`).
    threads: of the calibration's ONNX Runtime session (None: OMP_NUM_THREADS's, else ORT's
    default)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from runtime.console import root_logging_kept

    from .onnx_export import atomic_write_bytes, finish_onnx, read_metadata, set_metadata

    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose from {METHODS}")
    crops = np.asarray(crops, np.float32)
    if crops.ndim != 4 or crops.shape[1] != 3:
        raise ValueError(f"calibration crops must be N x 3 x H x W, got {crops.shape}")
    meta = read_metadata(fp32_path)
    calib_method = {"percentile": CalibrationMethod.Percentile,
                    "entropy": CalibrationMethod.Entropy,
                    "minmax": CalibrationMethod.MinMax}[method]
    # Asymmetric activation ranges: most activations follow a ReLU, a symmetric range would
    # waste half of the uint8 codes (percentile asymmetric was also best in SSIM).
    extra: dict = {"ActivationSymmetric": False, "WeightSymmetric": True,
                   "CalibTensorRangeSymmetric": False}
    if not float_layers:
        # The input is a frame and the output the image delivered (clipped), both in [0, 1]
        # whatever the crops held: calibrated on night frames (brightest pixel 0.30) the input
        # clipped every brighter pixel, SSIM 0.745 to FP32 on daylight HIDE frames. (The
        # pixel-unshuffle's tensors the first convolution reads keep the crops' range: pinned
        # too, that parity fell from 0.9633 to 0.9299, the later layers clipping instead.)
        extra["TensorQuantOverrides"] = {name: [{"rmin": np.float32(0), "rmax": np.float32(1)}]
                                         for name in ("input", "output")}
    calib_opts: dict = {}
    if method == "percentile":
        extra["CalibPercentile"] = float(percentile)
        calib_opts = {"num_bins": 2048}
    elif method == "entropy":
        calib_opts = {"num_bins": 2048, "num_quantized_bins": 128}

    with tempfile.TemporaryDirectory(prefix="sharpen-int8-") as tmp:
        src = Path(tmp) / "fp32.onnx"
        shutil.copyfile(fp32_path, src)
        model_in = src
        if preprocess:
            model_in = _preprocess(src, Path(tmp) / "pre.onnx")
        q_path = Path(tmp) / "int8.onnx"
        exclude = []
        if float_layers:
            from .float_layers import onnx_nodes
            exclude = onnx_nodes(onnx.load(str(model_in)), float_layers)
        with root_logging_kept(logging.ERROR), _calibrator_options(threads, **calib_opts), \
                open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
            quantize_static(
                str(model_in), str(q_path), make_reader(crops, "input", on_batch),
                quant_format=QuantFormat.QDQ, per_channel=per_channel,
                reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, calibrate_method=calib_method,
                nodes_to_exclude=exclude, extra_options=extra)
        proto = onnx.load(str(q_path))
    desc = (f"int8 QDQ static ({method}" + (f" {percentile}" if method == "percentile" else "")
            + f", per-channel={per_channel}, reduce_range={reduce_range}"
            + (f", float layers: {', '.join(float_layers)}" if float_layers else "") + ")")
    set_metadata(proto, {**meta, "precision": "int8", "quantization": desc,
                         "activations": "uint8 asymmetric"})
    finish_onnx(proto)
    onnx.checker.check_model(proto)
    return atomic_write_bytes(out_path, proto.SerializeToString())


def _preprocess(src: Path, dst: Path) -> Path:
    """onnxruntime's quant_pre_process; falls back to the input model if it fails."""
    try:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        # Symbolic shape inference gives up on the students' dynamic Resize, and on failure it
        # dumps sym_shape_infer_temp.onnx + <uuid>.data into the *current directory*: skip it.
        # ONNX shape inference and ORT's graph optimisation still run.
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
        return dst if dst.exists() else src
    except Exception as e:
        logging.getLogger(__name__).warning("quant_pre_process failed (%s); quantising the "
                                            "model as exported", e)
        return src


def integer_weight_initializers(path_or_proto) -> dict[str, str]:
    """Names and element types of integer initializers feeding DequantizeLinear nodes."""
    import onnx

    proto = path_or_proto if hasattr(path_or_proto, "graph") else onnx.load(str(path_or_proto))
    inits = {i.name: i for i in proto.graph.initializer}
    out = {}
    for node in proto.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            t = inits[node.input[0]]
            out[t.name] = onnx.TensorProto.DataType.Name(t.data_type)
    return out
