"""What an exported file tells a program that does not have this project: the keys it records
(ONNX metadata_props and doc_string, the metadata inside a .tflite), and that a program written
from those alone, with onnxruntime, OpenCV's DNN or LiteRT plus numpy and OpenCV, gives
`sharpen run`'s output. Frames have odd sizes, so the padding rule is exercised."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

CONTRACT_KEYS = ("producer", "version", "input_name", "output_name", "layout", "colour_order",
                 "input_dtype", "input_range", "multiple", "pad_mode", "pad_sides",
                 "output_clamped", "shapes", "source_sha256")


@pytest.fixture(scope="module")
def student():
    from distill.students import create_student
    torch.manual_seed(0)
    return create_student("fast").eval()


@pytest.fixture(scope="module")
def onnx_path(student, tmp_path_factory) -> Path:
    from optimize.onnx_export import export_onnx
    return export_onnx(student, tmp_path_factory.mktemp("contract") / "m.onnx",
                       ckpt={"source_sha256": "ab" * 32})


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    """A real photo's crop with odd sides (not multiples of 8), BGR uint8."""
    from skimage import data
    return cv2.cvtColor(data.astronaut()[:203, :301], cv2.COLOR_RGB2BGR)


def _sharpen_run(model: Path, frame: np.ndarray) -> np.ndarray:
    from runtime.backends import load_backend
    from runtime.prepost import FrameProcessor
    with load_backend(model, threads=1) as backend:
        return FrameProcessor(backend)(frame)


def plain_program(meta: dict[str, str], frame: np.ndarray, run) -> np.ndarray:
    """What the README's "Using the exported files without this project" tells an integrator
    to write: every choice read from the model's metadata, nothing from this project."""
    assert meta["layout"].startswith("NCHW") and meta["colour_order"] == "RGB"
    assert meta["input_dtype"] == "float32" and meta["input_range"] == "[0,1]"
    m = int(meta["multiple"])
    border = {"reflect101": cv2.BORDER_REFLECT_101, "zeros": cv2.BORDER_CONSTANT}[
        meta["pad_mode"]]
    assert meta["pad_sides"] == "bottom,right"
    h, w = frame.shape[:2]
    padded = cv2.copyMakeBorder(frame, 0, (-h) % m, 0, (-w) % m, border)
    x = cv2.dnn.blobFromImage(padded, 1 / 255.0, swapRB=True)   # NCHW RGB float32
    y = run(x)[0, :, :h, :w].transpose(1, 2, 0)
    if meta["output_clamped"] == "false":
        y = np.clip(y, 0, 1)
    return cv2.cvtColor((y * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR)


def test_the_onnx_model_records_its_whole_contract(onnx_path):
    model = onnx.load(str(onnx_path))
    meta = {p.key: p.value for p in model.metadata_props}
    assert set(CONTRACT_KEYS) <= set(meta), sorted(set(CONTRACT_KEYS) - set(meta))
    assert meta["input_name"] == model.graph.input[0].name == "input"
    assert meta["output_name"] == model.graph.output[0].name == "output"
    assert meta["pad_mode"] == "reflect101" and meta["output_clamped"] == "false"
    assert meta["shapes"] == "dynamic batch, height, width"
    assert meta["producer"] == "image-sharpening-kd" and meta["version"]
    # Netron and onnx.helper.printable_graph show the doc string: the contract in words.
    assert "BORDER_REFLECT_101" in model.doc_string and "multiple of 8" in model.doc_string


def test_a_plain_onnxruntime_program_reproduces_sharpen_run(onnx_path, frame):
    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = plain_program(meta, frame, lambda x: sess.run([meta["output_name"]],
                                                        {meta["input_name"]: x})[0])
    want = _sharpen_run(onnx_path, frame)
    assert np.abs(got.astype(int) - want).max() <= 1


def test_opencv_dnn_reads_the_onnx_model_and_reproduces_sharpen_run(onnx_path, frame):
    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    net = cv2.dnn.readNetFromONNX(str(onnx_path))

    def run(x):
        net.setInput(x)
        return net.forward()
    got = plain_program(meta, frame, run)
    assert np.abs(got.astype(int) - _sharpen_run(onnx_path, frame)).max() <= 1


def test_the_int8_onnx_model_keeps_the_contract(onnx_path, tmp_path):
    from optimize.onnx_int8 import quantize_onnx_int8
    crops = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    q = quantize_onnx_int8(onnx_path, tmp_path / "m_int8.onnx", crops)
    model = onnx.load(str(q))
    meta = {p.key: p.value for p in model.metadata_props}
    assert set(CONTRACT_KEYS) <= set(meta)
    assert meta["precision"] == "int8" and "BORDER_REFLECT_101" in model.doc_string
    # The quantiser's name and version were the file's producer, and it imported eight opset
    # domains (com.microsoft, ai.onnx.training, org.pytorch.aten, ...) that no node uses.
    assert (model.producer_name, model.producer_version) == ("image-sharpening-kd",
                                                            meta["version"])
    assert {o.domain for o in model.opset_import} == {n.domain for n in model.graph.node} == {""}


def test_the_onnx_producer_version_is_this_projects(onnx_path):
    """It was torch's version (2.13.0) beside this project's name."""
    model = onnx.load(str(onnx_path))
    meta = {p.key: p.value for p in model.metadata_props}
    assert (model.producer_name, model.producer_version) == ("image-sharpening-kd",
                                                            meta["version"])


@pytest.fixture(scope="module")
def tflite_path(student, tmp_path_factory) -> Path:
    pytest.importorskip("tensorflow")
    pytest.importorskip("ai_edge_litert")
    from optimize.tflite_export import export_tflite
    return export_tflite(student, tmp_path_factory.mktemp("contract") / "m_fp16.tflite", "fp16",
                         ckpt={"source_sha256": "ab" * 32, "receptive_field": 136})


@pytest.mark.slow
def test_the_tflite_file_carries_its_sidecar_inside(tflite_path, frame):
    from ai_edge_litert import interpreter as litert
    from ai_edge_litert import schema_py_generated as schema

    path = tflite_path
    side = json.loads(Path(f"{path}.json").read_text())
    # Read with the flatbuffers schema alone, as an app does: the metadata entry "sharpen".
    fb = schema.Model.GetRootAs(path.read_bytes(), 0)
    entries = {fb.Metadata(i).Name().decode(): fb.Metadata(i).Buffer()
               for i in range(fb.MetadataLength())}
    inside = json.loads(fb.Buffers(entries["sharpen"]).DataAsNumpy().tobytes())
    assert inside == side
    assert set(CONTRACT_KEYS) - {"multiple"} <= set(inside) and inside["multiple"] == 8
    interp = litert.Interpreter(model_path=str(path))
    # The ONNX models' names, for the tensors and for the signature an app runs by name.
    assert interp.get_input_details()[0]["name"] == inside["input_name"] == "input"
    assert interp.get_output_details()[0]["name"] == inside["output_name"] == "output"
    assert interp.get_signature_list() == {
        "serving_default": {"inputs": ["input"], "outputs": ["output"]}}
    assert inside["layout"] == "NHWC RGB" and inside["input_dtype"] == "float32"
    # The plain program, NHWC: reflect101 padding, clip, round.
    m, (h, w) = inside["multiple"], frame.shape[:2]
    padded = cv2.copyMakeBorder(frame, 0, (-h) % m, 0, (-w) % m, cv2.BORDER_REFLECT_101)
    x = cv2.cvtColor(padded, cv2.COLOR_BGR2RGB)[None].astype(np.float32) / 255
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], x.shape)
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    y = np.clip(interp.get_tensor(interp.get_output_details()[0]["index"])[0, :h, :w], 0, 1)
    got = cv2.cvtColor((y * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR)
    assert np.abs(got.astype(int) - _sharpen_run(path, frame)).max() <= 1


def test_an_engines_sidecar_records_the_contract_too(tmp_path):
    """The sidecar `sharpen export` writes for an engine (built here or by the printed trtexec
    line on the device): the same keys as the ONNX model it is built from."""
    from optimize.tensorrt_engine import Profile, engine_meta
    meta = engine_meta(tmp_path / "m.onnx", Profile.from_hw(), "fp16", 8, 4.0)
    assert set(CONTRACT_KEYS) - {"source_sha256"} <= set(meta)
    assert meta["input_name"] == "input" and meta["pad_mode"] == "reflect101"


@pytest.mark.slow
def test_sharpen_run_reads_the_record_inside_a_tflite_copied_without_its_sidecar(
        tflite_path, tmp_path, frame):
    """Copied alone, the model kept none of its record: its size multiple was found by trial
    with a warning, and its weights were not checked against the folder's export."""
    import shutil

    from runtime_fixtures import runtime_warnings

    from runtime.backends import load_backend
    alone = Path(shutil.copy(tflite_path, tmp_path / "m_fp16.tflite"))
    with runtime_warnings() as warned, load_backend(alone, threads=1) as b:
        assert b.multiple == 8 and b.source_sha256 == "ab" * 32
        assert b.receptive_field == 136 and not b.receptive_field_unrecorded
    assert warned == []


def test_the_readme_table_lists_every_recorded_key():
    """The README's table of keys is one Markdown table: rows after a paragraph render as text."""
    import re

    from runtime.contract import io_contract
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("### Using the exported files without this project", 1)[1]
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append(line)
    keys = {k for row in table for k in re.findall(r"`(\w+)`", row.split("|")[1])}
    recorded = set(io_contract(input_name="", output_name="", input_dtype="", input_range="",
                               shapes="")) | {"layout", "multiple", "precision", "source_sha256"}
    assert recorded <= keys, sorted(recorded - keys)


def test_a_change_to_the_contract_rebuilds_kept_exports():
    """`sharpen export` keeps an artifact whose inputs (the exporter's code among them) did not
    change: the contract's module writes into every file, so it is part of that code."""
    from optimize.export_reuse import CODE
    import runtime.contract
    assert Path(runtime.contract.__file__).resolve() in {p.resolve() for p in CODE}


def test_a_change_to_how_parity_is_scored_judges_kept_exports_again():
    """A kept artifact carries its parity verdict: one judged with the 7x7 SSIM stayed "up to
    date" under the Gaussian one, its INT8 gate (SSIM >= 0.98) never taken again, so the
    module the gate scores with is part of the exporter's code."""
    import inspect

    import optimize.parity
    from optimize.export_reuse import CODE
    assert Path(inspect.getfile(optimize.parity.ssim)).resolve() in {p.resolve() for p in CODE}


@pytest.mark.parametrize("h,w,m", [(203, 301, 8), (5, 7, 32), (1, 6, 8), (5, 1, 8), (1, 1, 8)])
def test_the_runtime_pads_as_the_contract_tells_an_app_to(h, w, m):
    """The recorded pad rule is what `sharpen run` does, frames with a 1-pixel side included
    (the runtime repeated such a frame's edge along both sides, OpenCV only along that one)."""
    from runtime.contract import PAD_MODE, PAD_SIDES
    from runtime.tiling import pad_to_multiple
    assert (PAD_MODE, PAD_SIDES) == ("reflect101", "bottom,right")
    img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    app = cv2.copyMakeBorder(img, 0, (-h) % m, 0, (-w) % m, cv2.BORDER_REFLECT_101)
    np.testing.assert_array_equal(pad_to_multiple(img, m)[0], app)


@pytest.mark.slow
def test_a_tflite_that_failed_its_gate_says_so_inside_when_copied_alone(tflite_path, tmp_path):
    """The gate's verdict went into the sidecar only: copied alone, the record inside the file
    (which `sharpen run` then reads) let a failed model run, and told an app nothing."""
    import shutil

    from optimize.parity_gate import _record_failure_inside
    from runtime.backends import load_backend
    from runtime.backends.base import ModelError
    from runtime.backends.litert_backend import embedded_record

    failed = Path(shutil.copy(tflite_path, tmp_path / "m_fp16.tflite"))
    shutil.copy(f"{tflite_path}.json", f"{failed}.json")
    _record_failure_inside(failed, "SSIM 0.5 < 0.98")
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(failed, alone / failed.name)
    assert embedded_record(alone / failed.name)["parity_failed"] == "SSIM 0.5 < 0.98"
    with pytest.raises(ModelError, match="SSIM 0.5"):
        load_backend(alone / failed.name, threads=1)
    _record_failure_inside(failed, None)   # a later passing gate clears it inside too
    assert "parity_failed" not in embedded_record(failed)
    assert embedded_record(failed) == json.loads(Path(f"{failed}.json").read_text())


def test_an_engines_sidecar_gives_the_shapes_its_profile_accepts():
    """It said the ONNX model's "dynamic batch, height, width": an engine runs only the shapes
    of its optimisation profile (batch 1, up to 2160x3840 by default)."""
    from optimize.tensorrt_engine import Profile, engine_meta
    meta = engine_meta("m.onnx", Profile.from_hw((64, 64), (720, 1280), (1080, 1920)), "fp16", 8,
                       4.0)
    assert meta["shapes"] == "batch 1, height 64 to 1080, width 64 to 1920 (its profile)"


def test_finishing_an_onnx_model_keeps_every_domain_a_node_uses(tmp_path):
    """Unused opset imports go; one a node uses (com.microsoft, as ONNX Runtime's 16-bit QDQ
    and fused kernels write) stays, and the file still loads and runs in ONNX Runtime."""
    from onnx import TensorProto, helper

    from optimize.onnx_export import finish_onnx
    graph = helper.make_graph(
        [helper.make_node("Gelu", ["input"], ["g"], domain="com.microsoft"),
         helper.make_node("Relu", ["g"], ["output"])], "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3])])
    model = helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1),
        helper.make_opsetid("ai.onnx.training", 1), helper.make_opsetid("ai.onnx.ml", 3)])
    finish_onnx(model)
    assert {o.domain for o in model.opset_import} == {"", "com.microsoft"}
    onnx.checker.check_model(model)
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"input": np.array([[-1.0, 0.0, 2.0]], np.float32)})[0]
    assert y[0, 0] == 0 and y[0, 2] > 1.9


@pytest.mark.slow
def test_a_tflite_copied_over_another_models_keeps_its_own_record(tflite_path, tmp_path):
    """A .tflite pushed over an older one keeps the old sidecar beside it: the runtime took that
    sidecar's weights hash (and calls the model stale) though the file says which it is."""
    import shutil

    from runtime_fixtures import runtime_warnings

    from runtime.backends import load_backend
    new = Path(shutil.copy(tflite_path, tmp_path / "m_fp16.tflite"))
    old = {**json.loads(Path(f"{tflite_path}.json").read_text()), "source_sha256": "cd" * 32,
           "receptive_field": 64}
    Path(f"{new}.json").write_text(json.dumps(old))
    with runtime_warnings() as warned, load_backend(new, threads=1) as b:
        assert b.source_sha256 == "ab" * 32 and b.receptive_field == 136
    assert any(f"{new}.json" in str(w) and "another model" in str(w) for w in warned), warned
    assert any("(source_sha256 differs from the record inside the file)" in str(w)
               for w in warned), warned


@pytest.mark.slow
def test_sharpen_models_describes_a_tflite_by_the_record_sharpen_run_takes(tflite_path, tmp_path):
    """`sharpen models ARTIFACT` read the sidecar only: a .tflite copied alone was described by
    nothing, and one copied over another model by the stale sidecar's weights, the ones that
    `sharpen run` warns of and sets aside for the record inside the file."""
    import shutil

    from distill.provenance import artifact_provenance
    alone = Path(shutil.copy(tflite_path, tmp_path / "m_fp16.tflite"))
    said = "\n".join(artifact_provenance(alone))
    assert f"the record inside the file gives: student fast, weights sha256 {'ab' * 8}" in said, \
        said
    old = {**json.loads(Path(f"{tflite_path}.json").read_text()), "source_sha256": "cd" * 32}
    Path(f"{alone}.json").write_text(json.dumps(old))
    said = "\n".join(artifact_provenance(alone))
    assert f"weights sha256 {'ab' * 8}" in said and "cd" * 8 not in said, said
    assert f"{alone.name}.json describes another model than the record inside the file " \
        "(source_sha256 differs)" in said, said
    # The sidecar of this model: described as before.
    shutil.copy(f"{tflite_path}.json", f"{alone}.json")
    said = "\n".join(artifact_provenance(alone))
    assert f"its sidecar records: student fast, weights sha256 {'ab' * 8}" in said, said


@pytest.mark.slow
def test_a_damaged_tflite_has_no_record_inside_rather_than_a_crash(tflite_path, tmp_path):
    """A .tflite cut short (a copy that stopped) or not a model at all: reading the record
    inside it raised struct.error from the flatbuffer, and `sharpen models ARTIFACT` crashed
    with a traceback."""
    from distill.provenance import artifact_provenance
    from runtime.backends.litert_backend import embedded_record
    data = tflite_path.read_bytes()
    for name, cut in [("cut.tflite", data[:5000]), ("tiny.tflite", data[:100]),
                      ("text.tflite", b"hello")]:
        path = tmp_path / name
        path.write_bytes(cut)
        assert embedded_record(path) == {}
        assert "no export report" in "\n".join(artifact_provenance(path))


@pytest.mark.slow
def test_which_record_of_a_tflite_counts_is_one_rule(tflite_path, tmp_path):
    """`sharpen run` (own_record) and `sharpen models` (artifact_provenance) take the same
    record of a .tflite: its sidecar, else the record inside, which also wins over a sidecar
    of another export."""
    import shutil

    from runtime.backends.litert_backend import choose_record
    alone = Path(shutil.copy(tflite_path, tmp_path / "m_fp16.tflite"))
    chosen = choose_record(alone)
    assert chosen.inside and not chosen.differ
    assert chosen.record["source_sha256"] == "ab" * 32
    side = {**json.loads(Path(f"{tflite_path}.json").read_text()), "note": "sidecar"}
    Path(f"{alone}.json").write_text(json.dumps(side))
    chosen = choose_record(alone)
    assert not chosen.inside and chosen.record["note"] == "sidecar"
    Path(f"{alone}.json").write_text(json.dumps({**side, "source_sha256": "cd" * 32}))
    chosen = choose_record(alone)
    assert chosen.inside and chosen.differ == ["source_sha256"]
    assert chosen.record["source_sha256"] == "ab" * 32


@pytest.mark.slow
def test_sharpen_models_gives_a_tflites_tensors_as_an_app_sets_them(student, tmp_path):
    """An app developer (Android, LiteRT) needs the signature and the int8 input's and output's
    scale and zero point; `sharpen models X.tflite` said only where the file came from."""
    pytest.importorskip("tensorflow")
    from ai_edge_litert import interpreter as litert

    from distill.provenance import artifact_provenance
    from optimize.tflite_export import export_tflite

    crops = np.random.default_rng(0).random((4, 3, 32, 32), dtype=np.float32)
    path = export_tflite(student, tmp_path / "m_int8.tflite", "int8", crops=crops)
    det = litert.Interpreter(model_path=str(path))
    (s_in, z_in), (s_out, z_out) = (det.get_input_details()[0]["quantization"],
                                    det.get_output_details()[0]["quantization"])
    said = "\n".join(artifact_provenance(path))
    assert ("input 'input' int8 [1, H, W, 3] NHWC RGB, H and W multiples of 8 (any size, "
            "256x256 as loaded: resize the input tensor, then allocate tensors)") in said, said
    assert f"scale {s_in:.9g}, zero point {z_in}: q = round(x / scale) + zero point" in said
    assert f"output 'output' int8 [1, H, W, 3], scale {s_out:.9g}, zero point {z_out}: " \
        "x = (q - zero point) * scale" in said, said
    Path(f"{path}.json").unlink()   # copied alone: read from the file itself
    assert f"scale {s_out:.9g}, zero point {z_out}" in "\n".join(artifact_provenance(path))


@pytest.mark.slow
def test_sharpen_models_says_when_litert_cannot_open_a_tflite(tflite_path, tmp_path):
    """A .tflite cut short gave no input/output lines and no word why (the lines above only
    say that no export report records it); a sidecar-less file read 'NHWC RGB, (any size'."""
    from runtime.backends.litert_backend import tflite_io_lines

    cut = tmp_path / "cut.tflite"
    cut.write_bytes(tflite_path.read_bytes()[:4000])
    lines = tflite_io_lines(cut, {})
    assert len(lines) == 1 and "LiteRT cannot open it" in lines[0], lines
    said = tflite_io_lines(tflite_path, {})[0]
    assert "NHWC RGB (any size, 256x256 as loaded" in said, said
