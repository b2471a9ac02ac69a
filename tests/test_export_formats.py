"""`sharpen export` end to end on a briefly trained `fast` student: every format this machine can
build, parity-gated against PyTorch, dynamic shapes, integer kernels, the report and the CLI.

One module-scoped export builds all artifacts once (the expensive part); the tests inspect them.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("skimage")

from distill.students import run_padded  # noqa: E402
from export_fixtures import BLUR  # noqa: E402
from optimize.calibration import sample_images  # noqa: E402

pytestmark = pytest.mark.slow  # whole pipelines at toy sizes: tens of seconds

REPO = Path(__file__).resolve().parents[1]


# Made once per session (tests/conftest.py): test_float_layers exports the same student.
@pytest.fixture(scope="module")
def data_dir(export_data_dir) -> Path:
    return export_data_dir


@pytest.fixture(scope="module")
def student(fast_student_pt):
    """(model, checkpoint): a model of this module's own (a test may hook it), loaded from the
    shared checkpoint."""
    from distill.checkpoint import load_student
    return load_student(fast_student_pt)[0], fast_student_pt


@pytest.fixture(scope="module")
def report(student, data_dir, tmp_path_factory):
    from optimize.export import default_formats, export

    formats, _ = default_formats()
    out = tmp_path_factory.mktemp("export-out")
    rep = export(student[1], formats, out, calib=[str(data_dir / "calib")], calib_count=16,
                 calib_size=128, parity_images=[str(data_dir / "parity")],
                 parity_gt=data_dir / "gt", latency=False, quiet=True)
    return rep


def _built(report, fmt):
    res = report.result(fmt)
    if res is None or res.status == "skipped":
        reason = res.reason if res else "not requested"
        pytest.skip(f"{fmt} not built on this machine: {reason}")
    return res


def _torch_out(model, img: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]
    with torch.no_grad():
        return run_padded(model, x)[0].permute(1, 2, 0).numpy()


# --------------------------------------------------------------------------- report & parity

def test_the_report_gives_the_thread_count_the_checks_ran_on(report):
    """No --threads: the parity runs took OMP_NUM_THREADS's count (the suite sets it), which
    the report said as 0, all cores."""
    assert report.settings["threads"] == int(os.environ["OMP_NUM_THREADS"])


def test_every_buildable_format_passes_parity(report):
    assert report.ok, [(r.format, r.status, r.reason) for r in report.results]
    built = [r for r in report.results if r.status != "skipped"]
    assert {r.format for r in built} >= {"onnx", "onnx-int8", "tflite-int8", "tflite-fp16"}
    for r in built:
        assert r.status == "pass"
        assert Path(r.file).is_file() and r.size_bytes == Path(r.file).stat().st_size
        # run by the runtime's own backend, at full resolution, against ground truth too
        assert r.runner.startswith("runtime.backends"), r.runner
        assert {tuple(i["shape"]) for i in r.images} == {(300, 451, 3), (203, 301, 3)}
        assert r.ssim_gt is not None and 0 < r.ssim_gt <= 1
    onnx_fp32 = report.result("onnx")
    assert onnx_fp32.max_abs < 1e-4
    for fmt in ("onnx-int8", "tflite-int8", "tflite-fp16"):
        r = report.result(fmt)
        assert r.ssim >= 0.98 and r.psnr > 35
        assert r.max_abs > 0  # really reduced precision, not a copy of the FP32 model
        # what the artifact loses against FP32 in SSIM to ground truth, worst image
        assert r.ssim_gt_drop == max(i["ssim_gt_drop"] for i in r.images)
        assert abs(r.ssim_gt_drop) < 0.05


def test_ssim_drop_gate(student, data_dir, tmp_path):
    """--max-ssim-drop fails an artifact that loses more SSIM to ground truth than allowed
    against the FP32 model, naming the worst image; without ground truth it is refused."""
    from optimize.export import ExportError, Thresholds, export

    common = dict(calib=[str(data_dir / "calib")], calib_count=8, calib_size=128,
                  parity_images=[str(data_dir / "parity")], latency=False, quiet=True)
    rep = export(student[1], ["onnx-int8"], tmp_path / "a", parity_gt=data_dir / "gt",
                 thresholds=Thresholds(max_ssim_drop=-1.0), **common)
    r = rep.result("onnx-int8")
    assert r.status == "fail" and "SSIM to ground truth against FP32 on" in r.reason
    assert any(i["image"] in r.reason for i in r.images)
    rep = export(student[1], ["onnx-int8"], tmp_path / "b", parity_gt=data_dir / "gt",
                 thresholds=Thresholds(max_ssim_drop=0.05), **common)
    assert rep.result("onnx-int8").status == "pass"
    # Without ground truth the gate cannot apply: refused, not passed unapplied.
    with pytest.raises(ExportError, match="^thresholds.max_ssim_drop needs ground truth.*"
                                          "give parity_gt=DIR"):
        export(student[1], ["onnx-int8"], tmp_path / "c",
               thresholds=Thresholds(max_ssim_drop=-1.0), **common)


def test_parity_rule_order_and_thresholds():
    """One rule judges an artifact for the export and the bench: FP32 by max abs error, the rest
    by SSIM to the FP32 output, then PSNR, then the SSIM lost to ground truth; the first that
    fails decides, and a drop that was not measured cannot fail."""
    from optimize.export import Thresholds

    th = Thresholds(fp32_max_abs=1e-4, min_ssim=0.98, min_psnr=40.0, max_ssim_drop=0.002)
    assert th.judge("fp32", 5e-5, 0.0, 0.0, 1.0) == (True, "max_abs", 1e-4)
    assert th.judge("fp32", 2e-4, 1.0, 99.0, 0.0) == (False, "max_abs", 1e-4)
    assert th.judge("ssim", 1.0, 0.97, 30.0, 0.01) == (False, "ssim", 0.98)
    assert th.judge("ssim", 1.0, 0.99, 30.0, 0.01) == (False, "psnr", 40.0)
    assert th.judge("ssim", 1.0, 0.99, 45.0, 0.003) == (False, "ssim_drop", 0.002)
    assert th.judge("ssim", 1.0, 0.99, 45.0, None) == (True, "ssim", 0.98)
    assert th.judge("ssim", 1.0, 0.99, 45.0, 0.002) == (True, "ssim", 0.98)
    assert Thresholds().judge("ssim", 1.0, 0.99, 10.0, 0.5)[0]   # PSNR and drop off by default


def test_full_range_int8_weights_on_request(student, data_dir, tmp_path):
    """--no-reduce-range: 8-bit ONNX Runtime weights (for VNNI CPUs), recorded in the model's
    metadata and the report; the default stays 7-bit, portable to AVX2-only CPUs."""
    import onnx

    from optimize.export import export

    common = dict(calib=[str(data_dir / "calib")], calib_count=8, calib_size=128,
                  parity_images=[str(data_dir / "parity")], latency=False, quiet=True)
    descs = {}
    for rr in (True, False):
        rep = export(student[1], ["onnx-int8"], tmp_path / str(rr), reduce_range=rr, **common)
        assert rep.result("onnx-int8").status == "pass" and rep.settings["reduce_range"] is rr
        meta = {p.key: p.value for p in onnx.load(rep.result("onnx-int8").file).metadata_props}
        descs[rr] = meta["quantization"]
    assert "reduce_range=True" in descs[True] and "reduce_range=False" in descs[False]


def test_report_json_written(report):
    data = json.loads((Path(report.out_dir) / "export_report.json").read_text())
    assert data["ok"] is True
    assert data["student"] == "fast"
    fmts = {r["format"]: r for r in data["results"]}
    assert fmts["onnx"]["status"] == "pass"
    assert data["settings"]["profile"]["opt"] == [1, 3, 1080, 1920]
    assert "ssim_gt" in data["reference"]
    for name in ("engine", "engine-int8"):
        if fmts.get(name, {}).get("status") == "skipped":
            assert "trtexec --onnx=" in fmts[name]["extra"]["trtexec"]


def test_table_has_every_format(report, capsys):
    from optimize.export import print_table

    print_table(report)
    text = capsys.readouterr().out
    assert "SSIM lost vs GT" in text   # the parity images have ground truth
    for r in report.results:
        assert r.format in text
    assert "PASS" in text and "SSIM" in text


# --------------------------------------------------------------------------- ONNX FP32

def test_onnx_file_checker_metadata_and_dynamic_axes(report):
    path = Path(_built(report, "onnx").file)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    # single self-contained file: no external data anywhere
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["student"] == "fast"
    assert json.loads(meta["arch_args"])["scale"] == 4
    assert meta["layout"] == "NCHW RGB float32 [0,1]"
    assert meta["multiple"] == "8"
    assert json.loads(meta["metrics"]) == {"val_psnr": 27.5}
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["output"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[1].dim_value == 3
    assert all(d.dim_param and not d.dim_value for i, d in enumerate(dims) if i != 1)


def test_onnx_dynamic_shapes_one_session(report, student):
    """720p-ish, 1080p-ish and odd sizes, batch 2, and a real 1080x1920 frame, one session."""
    from optimize.parity import load_runner

    model = student[0]
    runner = load_runner(_built(report, "onnx").file, threads=1)[0]
    rng = np.random.default_rng(1)
    for h, w in ((72, 128), (108, 192), (61, 97), (1080, 1920)):
        img = rng.random((h, w, 3), dtype=np.float32)
        out = runner(img)
        assert out.shape == (h, w, 3)
        assert np.abs(out - _torch_out(model, img)).max() < 1e-4
    batch = rng.random((2, 3, 48, 64), dtype=np.float32)
    y = runner.backend.session.run(None, {"input": batch})[0]
    with torch.no_grad():
        ref = model(torch.from_numpy(batch)).numpy()
    assert y.shape == (2, 3, 48, 64) and np.abs(y - ref).max() < 1e-4


# --------------------------------------------------------------------------- ONNX INT8

def test_onnx_int8_has_integer_kernels(report):
    from optimize.modelopt_qdq import qdq_summary
    from optimize.onnx_int8 import integer_weight_initializers

    path = _built(report, "onnx-int8").file
    model = onnx.load(path)
    summary = qdq_summary(model)
    assert summary["QuantizeLinear"] > 0 and summary["DequantizeLinear"] > 0
    assert summary["convs_with_quantized_weights"] == summary["convs"] > 0
    weights = integer_weight_initializers(model)
    assert {t for n, t in weights.items() if n.endswith("weight_quantized")} == {"INT8"}
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["precision"] == "int8" and meta["multiple"] == "8"
    # ONNX Runtime really fuses them into integer kernels (QLinearConv) on this CPU
    so = ort.SessionOptions()
    opt_path = Path(path).with_name("optimized_int8_check.onnx")
    so.optimized_model_filepath = str(opt_path)
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(opt_path)).graph.node]
    opt_path.unlink()
    assert ops.count("QLinearConv") == summary["convs"]
    assert "Conv" not in ops


def test_onnx_int8_dynamic_shapes(report, student):
    from optimize.parity import compare, load_runner

    runner = load_runner(_built(report, "onnx-int8").file, threads=1)[0]
    blurred = dict(sample_images(("chelsea",), blur_sigma=BLUR))["chelsea"]
    for h, w in ((72, 128), (108, 192), (61, 97)):
        img = np.ascontiguousarray(blurred[:h, :w])
        out = runner(img)
        assert out.shape == (h, w, 3)
        assert compare(out, _torch_out(student[0], img))["psnr"] > 30


def test_modelopt_qdq_model(report):
    from optimize.modelopt_qdq import availability, conv_sum_adds, qdq_summary

    reason = availability()
    if reason:
        pytest.skip(reason)
    res = _built(report, "onnx-qdq-trt")
    model = onnx.load(res.file)
    summary = qdq_summary(model)
    assert summary["convs_with_quantized_weights"] == summary["convs"] > 0
    assert summary["integer_types"].get("INT8", 0) > 0
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["student"] == "fast" and meta["precision"] == "int8"
    assert meta["activations"] == "int8 symmetric"
    assert not any(i.data_type == onnx.TensorProto.UINT8 for i in model.graph.initializer)
    assert res.ssim >= 0.98
    # The sums of two conv outputs in fast's gated input path stay in high precision.
    sums = conv_sum_adds(_built(report, "onnx").file)
    assert len(sums) == 2
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.name in sums:
            assert "DequantizeLinear" not in {producer.get(i) for i in node.input}, node.name


def test_modelopt_leaves_ort_int8_untouched(report, tmp_path):
    """ModelOpt patches onnxruntime.quantization on import and use; once it had run in a
    process, ORT INT8 exports there came out as a different (worse) graph. The ORT INT8 model
    built after a ModelOpt export must equal one built in a fresh interpreter."""
    from optimize.modelopt_qdq import availability
    from optimize.onnx_int8 import quantize_onnx_int8

    reason = availability()
    if reason:
        pytest.skip(reason)
    # The module's export has run ModelOpt in this process (its onnx-qdq-trt artifact), as
    # `sharpen bench` does before its next student's ORT INT8 export; a second ModelOpt run
    # here would cost 13 s and patch nothing the first did not.
    assert _built(report, "onnx-qdq-trt").status == "pass"
    fp32 = _built(report, "onnx").file
    crops = np.random.default_rng(0).random((8, 3, 64, 64), dtype=np.float32)
    np.save(tmp_path / "crops.npy", crops)
    quantize_onnx_int8(fp32, tmp_path / "here.onnx", crops)
    code = ("import sys, numpy as np; from optimize.onnx_int8 import quantize_onnx_int8 as q; "
            "q(sys.argv[1], sys.argv[2], np.load(sys.argv[3]))")
    subprocess.run([sys.executable, "-c", code, str(fp32), str(tmp_path / "fresh.onnx"),
                    str(tmp_path / "crops.npy")], check=True, cwd=tmp_path)
    here, fresh = onnx.load(tmp_path / "here.onnx"), onnx.load(tmp_path / "fresh.onnx")
    assert [n.op_type for n in here.graph.node] == [n.op_type for n in fresh.graph.node]
    assert here.SerializeToString() == fresh.SerializeToString()


def test_calibration_in_chunks_equals_all_at_once(report, tmp_path):
    """Calibration feeds ONNX Runtime a few crops at a time (its calibrators otherwise hold every
    intermediate tensor of every crop: tens of GB for a full-resolution student); min-max ranges
    merged over chunks are the ranges of the whole set, so the model is byte-identical."""
    from optimize.onnx_int8 import _chunked, quantize_onnx_int8

    seen = []
    _chunked(lambda r: seen.append(len(list(iter(r.get_next, None)))), 3)(
        type("R", (), {"it": iter(range(1, 9)), "get_next": lambda self: next(self.it, None)})())
    assert seen == [3, 3, 2]
    fp32 = _built(report, "onnx").file
    crops = np.random.default_rng(1).random((6, 3, 64, 64), dtype=np.float32)
    import optimize.onnx_int8 as q
    chunk = q.CALIB_CHUNK
    try:
        q.CALIB_CHUNK = 2
        quantize_onnx_int8(fp32, tmp_path / "chunked.onnx", crops, method="minmax")
        q.CALIB_CHUNK = 100
        quantize_onnx_int8(fp32, tmp_path / "whole.onnx", crops, method="minmax")
    finally:
        q.CALIB_CHUNK = chunk
    assert (onnx.load(tmp_path / "chunked.onnx").SerializeToString()
            == onnx.load(tmp_path / "whole.onnx").SerializeToString())


def test_the_calibration_session_takes_the_runtimes_thread_default(tmp_path, monkeypatch):
    """ONNX Runtime's calibrator made its session on every core whatever OMP_NUM_THREADS said
    (two test workers: four threads on two cores); it takes the variable's count now, as the
    runtime's backends do, and export's --threads before it."""
    import importlib

    from onnxruntime.quantization.calibrate import CalibrationMethod
    from runtime_fixtures import make_onnx_model

    from optimize.onnx_int8 import _calibrator_options

    qmod = importlib.import_module("onnxruntime.quantization.quantize")   # (`quantize`: a function)
    model = make_onnx_model(tmp_path / "m.onnx")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    for threads, want in ((None, 3), (1, 1)):
        with _calibrator_options(threads):
            cal = qmod.create_calibrator(str(model), calibrate_method=CalibrationMethod.MinMax,
                                         augmented_model_path=str(tmp_path / f"a{want}.onnx"))
        assert cal.infer_session.get_session_options().intra_op_num_threads == want


@pytest.mark.parametrize("threads", [1, None])
def test_a_calibration_run_that_fails_leaves_onnx_runtimes_own_log_line_out(
        tmp_path, capfd, threads):
    """A model that ONNX Runtime loads and fails to run (a Conv whose weights take 2 of its 3
    channels: a corrupted export): the calibrator's session printed ORT's own log line of it
    ("[E:onnxruntime:, sequential_executor.cc ... ExecuteKernel] Non-zero status code ...") on
    stderr, then the export said the failure again in its report. Its runs log fatal errors
    only now, as the runtime's sessions do; the error itself is still raised, whole."""
    from runtime_fixtures import one_op_model

    from optimize.onnx_int8 import quantize_onnx_int8

    model = one_op_model(tmp_path / "conv.onnx", "Conv", ["input", "w"],
                         {"w": np.zeros((3, 2, 3, 3))}, group=3, pads=[1, 1, 1, 1])
    crops = np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)
    capfd.readouterr()
    with pytest.raises(Exception, match="Non-zero status code returned while running Conv"):
        quantize_onnx_int8(model, tmp_path / "q.onnx", crops, threads=threads)
    err = capfd.readouterr().err
    assert "onnxruntime" not in err and "ExecuteKernel" not in err, err


MODELOPT_SESSIONS = """
import sys
import onnxruntime as ort
from optimize.modelopt_qdq import _sessions_on
_sessions_on(3)
opts = ort.SessionOptions()
for s in (ort.InferenceSession(sys.argv[1]), ort.InferenceSession(sys.argv[1], opts),
          ort.InferenceSession(open(sys.argv[1], "rb").read(), sess_options=opts)):
    print(s.get_session_options().intra_op_num_threads)
"""


def test_modelopts_calibration_sessions_take_the_thread_count(tmp_path):
    """ModelOpt makes its ONNX Runtime sessions itself (with options, without, from bytes), on
    every core: its child process makes each of them run the runtime's thread count."""
    from runtime_fixtures import REPO, make_onnx_model

    model = make_onnx_model(tmp_path / "m.onnx")
    r = subprocess.run([sys.executable, "-c", MODELOPT_SESSIONS, str(model)], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.stdout.split() == ["3", "3", "3"], r.stdout + r.stderr


CHILD_SESSIONS_HOOK = """
import atexit, inspect, os, sys

def _said():   # the count ModelOpt's child gave its ONNX Runtime sessions (_sessions_on)
    if "modelopt" not in sys.modules:
        return
    ort = sys.modules.get("onnxruntime")
    init = getattr(getattr(ort, "InferenceSession", None), "__init__", None)
    got = inspect.getclosurevars(init).nonlocals.get("threads") if init else None
    with open(os.environ["SHARPEN_TEST_SAID"], "a") as f:
        f.write(f"{got}\\n")

atexit.register(_said)
"""


@pytest.mark.skipif(importlib.util.find_spec("modelopt") is None,
                    reason="NVIDIA ModelOpt is not installed")
def test_modelopt_calibrates_on_the_exports_thread_count(tmp_path, monkeypatch):
    """Export's --threads reached ONNX Runtime's INT8 calibration but not ModelOpt's: its child
    read OMP_NUM_THREADS alone, so `sharpen export --threads 1` calibrated on every core (or
    OMP_NUM_THREADS's count). The count given wins; without one the variable's holds."""
    from runtime_fixtures import make_onnx_model

    from optimize.modelopt_qdq import quantize_qdq_trt

    hook = tmp_path / "hook"   # Python imports sitecustomize from PYTHONPATH at start
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(CHILD_SESSIONS_HOOK)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(hook), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]))
    said = tmp_path / "said.txt"
    monkeypatch.setenv("SHARPEN_TEST_SAID", str(said))
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    model = make_onnx_model(tmp_path / "m.onnx")
    crops = np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)
    for threads in (2, None):
        quantize_qdq_trt(model, tmp_path / f"q{threads}.onnx", crops, threads=threads)
    assert said.read_text().split() == ["2", "3"]


# --------------------------------------------------------------------------- TFLite

def test_tflite_int8_is_fully_integer(report):
    from optimize.tflite_export import tensor_types

    path = _built(report, "tflite-int8").file
    types = tensor_types(path)
    assert types.get("int8", 0) > 20
    assert "float32" not in types and "float16" not in types
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=path)
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert interp.get_output_details()[0]["dtype"] == np.int8
    assert list(interp.get_input_details()[0]["shape_signature"]) == [1, -1, -1, 3]
    side = json.loads(Path(path + ".json").read_text())
    assert side["student"] == "fast" and side["multiple"] == 8
    assert side["layout"] == "NHWC RGB" and side["metrics"] == {"val_psnr": 27.5}
    assert side["input"]["dtype"] == "int8"


def test_tflite_dynamic_shapes_one_interpreter(report, student):
    from optimize.parity import compare, load_runner

    blurred = dict(sample_images(("coffee",), blur_sigma=BLUR))["coffee"]
    for fmt, min_psnr in (("tflite-int8", 30), ("tflite-fp16", 60)):
        runner = load_runner(_built(report, fmt).file, threads=1)[0]
        for h, w in ((72, 128), (108, 192), (61, 97), (72, 128)):
            img = np.ascontiguousarray(blurred[:h, :w])
            out = runner(img)
            assert out.shape == (h, w, 3)
            assert compare(out, _torch_out(student[0], img))["psnr"] > min_psnr, (fmt, h, w)


@pytest.mark.parametrize("record_inside", [True, False], ids=["record", "older-file"])
def test_tflite_without_its_sidecar_finds_the_multiple_that_runs(report, student, tmp_path,
                                                                 monkeypatch, record_inside):
    """`fast` allocates at 12 px but fails there when run ('SPACE_TO_DEPTH ... (3 != 0)'), so
    a .tflite copied without its sidecar was given multiple 4 and failed on every frame. A
    file carries its record inside now and says nothing; one exported before that (its
    record read as missing) is probed for a multiple that runs, and says so."""
    import warnings

    from runtime import SharpenWarning
    from runtime.backends import litert_backend, load_backend
    from runtime.pipeline import FrameProcessor

    model = tmp_path / "copied_int8.tflite"
    shutil.copy(_built(report, "tflite-int8").file, model)
    if record_inside:
        with warnings.catch_warnings():
            warnings.simplefilter("error", SharpenWarning)
            b = load_backend(model, threads=1)
    else:
        monkeypatch.setattr(litert_backend, "embedded_record", lambda path: {})
        with pytest.warns(SharpenWarning, match="no sidecar copied_int8.tflite.json"):
            b = load_backend(model, threads=1)
    assert b.multiple == student[0].multiple > 4
    rgb = dict(sample_images(("coffee",), blur_sigma=BLUR))["coffee"][:61, :97]
    frame = np.ascontiguousarray((rgb[..., ::-1] * 255).round().astype(np.uint8))
    assert FrameProcessor(b)(frame).shape == frame.shape


def test_every_artifact_records_the_receptive_field_for_tiling(report, student):
    """`sharpen run --tile` says when its overlap is narrower than what one output pixel sees;
    the runtime has no torch, so the export records it."""
    from distill.students import receptive_field
    from runtime.backends import load_backend

    rf = receptive_field(student[0])
    for fmt in ("onnx", "onnx-int8", "tflite-int8"):
        b = load_backend(_built(report, fmt).file, threads=1)
        assert b.receptive_field == rf > 8, fmt
        b.close()


def test_tflite_fp16_has_half_weights(report):
    from optimize.tflite_export import tensor_types

    types = tensor_types(_built(report, "tflite-fp16").file)
    assert types.get("float16", 0) > 0


# --------------------------------------------------------------------------- CLI

def test_cli_export_onnx_with_latency(student, data_dir, tmp_path, capsys):
    from sharpen.cli import main

    rc = main(["export", "--weights", str(student[1]), "--format", "onnx", "--out",
               str(tmp_path), "--parity-images", str(data_dir / "parity" / "chelsea.png"),
               "--latency-runs", "1", "--threads", "1", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert (tmp_path / "student.onnx").is_file()
    data = json.loads((tmp_path / "export_report.json").read_text())
    (res,) = data["results"]
    assert res["format"] == "onnx" and res["status"] == "pass"
    assert res["latency_ms_1080p"] > 0  # measured (no speed claim here; see benchmarks)
    assert "student.onnx" in out


def test_cli_parity_failure_exits_nonzero(student, data_dir, tmp_path, capsys):
    from sharpen.cli import main

    rc = main(["export", "--weights", str(student[1]), "--format", "onnx-int8", "--out",
               str(tmp_path), "--calib", str(data_dir / "calib"), "--calib-count", "4",
               "--calib-size", "64", "--parity-images", str(data_dir / "parity" / "chelsea.png"),
               "--min-ssim", "0.99999", "--no-latency", "--quiet"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "FAIL" in captured.out and "onnx-int8" in captured.err
    data = json.loads((tmp_path / "export_report.json").read_text())
    assert data["ok"] is False and data["results"][0]["status"] == "fail"


def test_an_artifact_whose_check_was_cut_short_is_refused(student, data_dir, tmp_path,
                                                          monkeypatch):
    """Ctrl-C during the parity check of a rebuilt artifact left it without any verdict (the
    earlier failure cleared before judging), and `sharpen run` used it without a word."""
    import optimize.export as ex
    from runtime.backends import ModelError, load_backend

    common = dict(calib=[str(data_dir / "calib")], calib_count=8, calib_size=128,
                  parity_images=[str(data_dir / "parity")], latency=False, quiet=True)
    rep = ex.export(student[1], ["onnx"], tmp_path, **common)
    path = Path(rep.result("onnx").file)
    load_backend(path)                              # passed: runs

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(ex, "_gate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ex.export(student[1], ["onnx"], tmp_path, rebuild=True, **common)
    with pytest.raises(ModelError, match="parity check did not finish"):
        load_backend(path)
    monkeypatch.undo()
    ex.export(student[1], ["onnx"], tmp_path, **common)   # (marked: rebuilt, not kept)
    load_backend(path)                              # checked again: runs


def _ctrl_c_in_the_second_format(ex, monkeypatch) -> list[str]:
    """A Ctrl-C as export starts its second format; the formats it started, as it goes."""
    real, calls = ex._build_and_gate, []

    def stop_at_the_second(*a, **k):
        calls.append(a[1])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(ex, "_build_and_gate", stop_at_the_second)
    return calls


def test_artifacts_an_interrupted_re_export_was_replacing_are_refused(student, data_dir,
                                                                     tmp_path, monkeypatch):
    """Re-exporting into a folder, stopped after its first format: the second format's old
    artifact stayed beside the new first one, with no report, and `sharpen run` used it."""
    import optimize.export as ex
    from runtime.backends import ModelError, load_backend

    common = dict(calib=[str(data_dir / "calib")], calib_count=8, calib_size=128,
                  parity_images=[str(data_dir / "parity")], latency=False, quiet=True)
    rep = ex.export(student[1], ["onnx", "onnx-int8"], tmp_path, **common)
    old_int8 = Path(rep.result("onnx-int8").file)
    load_backend(old_int8)
    calls = _ctrl_c_in_the_second_format(ex, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        ex.export(student[1], ["onnx", "onnx-int8"], tmp_path, rebuild=True, **common)
    assert calls == ["onnx", "onnx-int8"]
    load_backend(Path(rep.result("onnx").file))     # rebuilt and checked: runs
    with pytest.raises(ModelError, match="an export replacing it .* did not finish") as e:
        load_backend(old_int8)
    # Unchecked, not failed: it was said to have failed its parity gate.
    assert f"{old_int8} has no parity verdict: an export replacing it" in str(e.value)
    assert "failed its parity gate" not in str(e.value)


def test_an_interrupted_export_reports_what_it_finished_and_the_next_keeps_it(
        student, data_dir, tmp_path, monkeypatch):
    """Ctrl-C in the second format left no export_report.json: the next export found no
    record of the first one's build and rebuilt it (minutes for an INT8 model)."""
    import optimize.export as ex

    common = dict(calib=[str(data_dir / "calib")], calib_count=8, calib_size=128,
                  parity_images=[str(data_dir / "parity")], latency=False, quiet=True)
    calls = _ctrl_c_in_the_second_format(ex, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        ex.export(student[1], ["onnx", "onnx-int8"], tmp_path, **common)
    assert calls == ["onnx", "onnx-int8"]
    report = json.loads((tmp_path / "export_report.json").read_text())
    assert report["settings"]["interrupted"] is True
    # Not this export's verdict: a script that reads "ok" must not ship half an export.
    assert report["ok"] is False
    assert [(r["format"], r["status"]) for r in report["results"]] == [("onnx", "pass")]
    monkeypatch.undo()
    onnx = Path(report["results"][0]["file"])
    first = onnx.stat().st_mtime_ns
    rep = ex.export(student[1], ["onnx", "onnx-int8"], tmp_path, **common)
    assert rep.result("onnx").extra.get("up_to_date") and onnx.stat().st_mtime_ns == first
    assert rep.result("onnx-int8").status == "pass"
    done = json.loads((tmp_path / "export_report.json").read_text())
    assert "interrupted" not in done["settings"] and done["ok"] is True and rep.ok


def test_ground_truth_for_some_parity_images_only_is_said(student, data_dir, tmp_path):
    import shutil

    from optimize.export import export
    gt = tmp_path / "gt"
    gt.mkdir()
    shutil.copy(data_dir / "gt" / "chelsea.png", gt)
    from runtime_fixtures import runtime_warnings
    with runtime_warnings() as said:
        export(student[1], ["onnx"], tmp_path / "o", parity_images=[str(data_dir / "parity")],
               parity_gt=gt, latency=False, quiet=True, calib=[str(data_dir / "calib")],
               calib_count=8, calib_size=128)
    assert any("ground truth for 1 of the 2 parity images" in m and "immunohistochemistry" in m
               for m in said), said
