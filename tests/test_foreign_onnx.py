"""ONNX models exported elsewhere (a published network, not `sharpen export`): no contract in
them, a fixed input size, NHWC, [-1,1], BGR, a residual output. The runtime says what it
assumes, reads what it can from the graph, and takes the rest from a sidecar JSON."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from runtime_fixtures import run_cli, runtime_warnings

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def save_graph(graph, path: Path) -> Path:
    """`graph` saved as a model at opset 13, IR 7: as old a file as a published network's."""
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.save(model, str(path))
    return path


def foreign_model(path: Path, op: str = "Abs", dims=("n", 3, "h", "w"),
                  consts: dict | None = None) -> Path:
    """A model of one operator on "image" (plus constants), with no metadata at all."""
    from onnx import helper, numpy_helper

    inputs = ["image", *(consts or {})]
    graph = helper.make_graph(
        [helper.make_node(op, inputs, ["restored"])], "foreign",
        [helper.make_tensor_value_info("image", 1, list(dims))],
        [helper.make_tensor_value_info("restored", 1, list(dims))],
        [numpy_helper.from_array(np.asarray(v, np.float32), k)
         for k, v in (consts or {}).items()])
    save_graph(graph, path)
    return path


def frame(h: int = 40, w: int = 72) -> np.ndarray:
    rng = np.random.default_rng(0)
    f = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    f[:4] = 0   # a black band: Abs in [-1,1] turns it white, in [0,1] keeps it black
    return f


def sharpened(model: Path, img: np.ndarray, **kw) -> tuple[np.ndarray, list[str]]:
    from runtime import FrameProcessor, load_backend

    with runtime_warnings() as said:
        with load_backend(model, providers="cpu") as backend:
            out = FrameProcessor(backend, **kw)(img)
    return out, said


def test_a_model_without_the_contract_is_said_to_be_foreign_with_what_is_assumed(tmp_path):
    out, said = sharpened(foreign_model(tmp_path / "net.onnx"), frame())
    assert np.array_equal(out, frame())   # Abs on [0,1]: the image itself
    text = " ".join(said)
    assert "net.onnx" in text and "not exported by sharpen export" in text
    for assumed in ("RGB", "[0,1]", "NCHW", "net.onnx.json"):
        assert assumed in text, text


def test_a_fixed_input_size_runs_in_tiles_of_that_size(tmp_path):
    model = foreign_model(tmp_path / "fixed.onnx", dims=(1, 3, 32, 32))
    img = frame(40, 72)   # larger than 32 on both sides
    out, said = sharpened(model, img)
    assert np.array_equal(out, img)
    assert any("fixed input size 32x32" in s for s in said), said
    small = frame(20, 24)   # smaller: padded up to 32x32, cropped back
    out, _ = sharpened(model, small)
    assert np.array_equal(out, small)


def test_a_fixed_input_size_under_a_larger_tile_runs_each_tile_in_the_models_size(tmp_path):
    model = foreign_model(tmp_path / "fixed.onnx", dims=(1, 3, 32, 32))
    img = frame(80, 96)
    out, _ = sharpened(model, img, tile=64)
    assert np.array_equal(out, img)


def test_nhwc_is_read_from_the_input_shape(tmp_path):
    from runtime import load_backend

    model = foreign_model(tmp_path / "nhwc.onnx", dims=("n", "h", "w", 3))
    with load_backend(model, providers="cpu") as backend:
        assert backend.layout == "NHWC"
    out, said = sharpened(model, frame())
    assert np.array_equal(out, frame())
    assert any("NHWC" in s for s in said), said


def test_the_sidecar_sets_the_range_of_a_foreign_model(tmp_path):
    model = foreign_model(tmp_path / "gan.onnx")
    out, _ = sharpened(model, frame())
    assert out[:4].max() == 0                     # taken as [0,1]: black stays black
    (tmp_path / "gan.onnx.json").write_text(json.dumps({"input_range": "[-1,1]"}))
    out, said = sharpened(model, frame())
    assert out[:4].min() == 255                   # fed 2x-1 and read back (y+1)/2: |-1| = 1
    assert any("[-1,1]" in s and "gan.onnx.json" in s for s in said), said


def test_the_sidecar_sets_bgr(tmp_path):
    # Zeroes the model's first channel: red when it takes RGB, blue when it takes BGR.
    model = foreign_model(tmp_path / "bgr.onnx", op="Mul",
                          consts={"keep": np.array([0, 1, 1]).reshape(1, 3, 1, 1)})
    img = np.full((16, 16, 3), 200, np.uint8)
    out, _ = sharpened(model, img)
    assert out[..., 2].max() == 0 and out[..., 0].min() == 200   # OpenCV order: B, G, R
    (tmp_path / "bgr.onnx.json").write_text(json.dumps({"colour_order": "BGR"}))
    out, _ = sharpened(model, img)
    assert out[..., 0].max() == 0 and out[..., 2].min() == 200


def test_the_sidecar_sets_a_residual_output(tmp_path):
    model = foreign_model(tmp_path / "res.onnx", op="Mul", consts={"zero": np.zeros(1)})
    (tmp_path / "res.onnx.json").write_text(json.dumps({"output": "residual"}))
    out, _ = sharpened(model, frame())
    assert np.array_equal(out, frame())           # input + 0


def test_a_sidecar_value_that_is_none_of_the_choices_names_the_key_and_the_choices(tmp_path):
    from runtime import ModelError, load_backend

    model = foreign_model(tmp_path / "net.onnx")
    (tmp_path / "net.onnx.json").write_text(json.dumps({"input_range": "0..255"}))
    with pytest.raises(ModelError, match=r"input_range.*0\.\.255.*\[-1,1\]"):
        load_backend(model, providers="cpu")


def test_sharpen_run_on_a_fixed_size_foreign_model_writes_the_image(tmp_path, capsys):
    import cv2

    model = foreign_model(tmp_path / "fixed.onnx", dims=(1, 3, 32, 32))
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), frame(50, 70))
    out = tmp_path / "out.png"
    assert run_cli(["run", "--model", str(model), "--source", str(src), "--out", str(out),
                    "--quiet"]) == 0
    assert np.array_equal(cv2.imread(str(out)), frame(50, 70))
    err = capsys.readouterr().err
    assert "not exported by sharpen export" in err and "32x32" in err


def test_sharpen_models_on_a_foreign_onnx_says_how_the_runtime_runs_it(tmp_path, capsys):
    pytest.importorskip("torch")
    from sharpen.cli import main

    model = foreign_model(tmp_path / "fixed.onnx", dims=(1, 3, 32, 32))
    (tmp_path / "fixed.onnx.json").write_text(json.dumps({"input_range": "[-1,1]"}))
    assert main(["models", str(model)]) == 0
    out = capsys.readouterr().out
    assert "not exported by sharpen export" in out, out
    assert "input 'image' [1,3,32,32] float32, output 'restored'" in out, out
    assert "[-1,1] (from fixed.onnx.json)" in out and "tiles of that size" in out, out
    assert "look for its sha256" not in out, out   # no export folder holds it


def two_output_model(path: Path) -> Path:
    """A network that gives a half-scale output first and the image second (multi-scale
    deblurring networks give one per scale)."""
    from onnx import helper

    dims = ["n", 3, "h", "w"]
    graph = helper.make_graph(
        [helper.make_node("AveragePool", ["image"], ["half"], kernel_shape=[2, 2],
                          strides=[2, 2]),
         helper.make_node("Identity", ["image"], ["restored"])], "two",
        [helper.make_tensor_value_info("image", 1, dims)],
        [helper.make_tensor_value_info("half", 1, ["n", 3, "h2", "w2"]),
         helper.make_tensor_value_info("restored", 1, dims)], [])
    save_graph(graph, path)
    return path


def test_a_model_with_several_outputs_says_which_is_taken_and_the_sidecar_picks(tmp_path):
    from runtime import load_backend

    model = two_output_model(tmp_path / "multi.onnx")
    with runtime_warnings() as said:
        load_backend(model, providers="cpu").close()
    assert any("'half' of its 2 outputs" in s and "output_name" in s for s in said), said
    (tmp_path / "multi.onnx.json").write_text(json.dumps({"output_name": "restored"}))
    out, _ = sharpened(model, frame())
    assert np.array_equal(out, frame())
    (tmp_path / "multi.onnx.json").write_text(json.dumps({"output_name": "nope"}))
    with pytest.raises(Exception, match="nope.*half, restored"):
        load_backend(model, providers="cpu")


def test_the_tensorrt_profile_follows_a_foreign_models_layout_and_fixed_size(tmp_path):
    """ONNX Runtime's TensorRT provider is given a profile of input shapes: [1,3,H,W] from one
    size multiple to 4K fits this project's exports only."""
    from runtime.backends.onnxruntime_backend import trt_provider_options

    nhwc = trt_provider_options(tmp_path, "a" * 64, "image", 8, int8=False, layout="NHWC")
    assert nhwc["trt_profile_min_shapes"] == "image:1x8x8x3"
    assert nhwc["trt_profile_opt_shapes"] == "image:1x1080x1920x3"
    fixed = trt_provider_options(tmp_path, "a" * 64, "image", 8, int8=False,
                                 fixed_hw=(256, 256))
    assert {fixed[k] for k in fixed if k.startswith("trt_profile")} == {"image:1x3x256x256"}


def test_the_sidecar_sets_a_0_255_range(tmp_path):
    # Adds 51 in the model's own units: 51/255 = 0.2 of the range when it takes [0,255].
    model = foreign_model(tmp_path / "caffe.onnx", op="Add", consts={"b": np.full(1, 51.0)})
    (tmp_path / "caffe.onnx.json").write_text(json.dumps({"input_range": "[0,255]"}))
    img = np.full((16, 16, 3), 100, np.uint8)
    out, _ = sharpened(model, img)
    assert np.array_equal(out, img + 51)


def test_the_stats_file_records_how_a_foreign_model_was_run(tmp_path):
    import cv2

    model = foreign_model(tmp_path / "gan.onnx", dims=(1, 3, 32, 32))
    (tmp_path / "gan.onnx.json").write_text(json.dumps({"input_range": "[-1,1]"}))
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), frame(40, 40))
    stats = tmp_path / "stats.json"
    assert run_cli(["run", "--model", str(model), "--source", str(src), "--out",
                    str(tmp_path / "o.png"), "--stats", str(stats), "--quiet"]) == 0
    told = json.loads(stats.read_text())["backend"]["foreign"]
    assert told == {"layout": "NCHW", "colour_order": "RGB", "input_range": "[-1,1]",
                    "output": "image", "output_name": "restored", "fixed_size": "32x32"}


def test_the_bench_row_of_a_foreign_model_says_how_it_was_run(tmp_path):
    from benchmarks.given import resolve_models

    model = foreign_model(tmp_path / "nafnet.onnx", dims=(1, 3, 32, 32))
    (tmp_path / "nafnet.onnx.json").write_text(json.dumps({"colour_order": "BGR"}))
    with runtime_warnings():
        (given,) = resolve_models([str(model)], threads=1)
    assert given.label() == "nafnet (foreign: NCHW BGR [0,1] image, 32x32 tiles)"


def test_a_sidecar_size_multiple_leaves_a_foreign_model_foreign(tmp_path):
    # A UNet's fix ("multiple": 16) must not hide what else is assumed about it.
    from runtime import load_backend

    model = foreign_model(tmp_path / "unet.onnx")
    (tmp_path / "unet.onnx.json").write_text(json.dumps({"multiple": 16}))
    with runtime_warnings() as said:
        with load_backend(model, providers="cpu") as backend:
            assert backend.multiple == 16 and backend.contract.foreign
    assert any("not exported by sharpen export" in s for s in said), said


def test_a_sidecar_that_contradicts_an_exports_contract_is_refused(tmp_path):
    from runtime import ModelError, load_backend

    model = foreign_model(tmp_path / "ours.onnx")
    m = onnx.load(str(model))
    onnx.helper.set_model_props(m, {"producer": "image-sharpening-kd", "multiple": "8",
                                    "colour_order": "RGB", "input_range": "[0,1]"})
    onnx.save(m, str(model))
    (tmp_path / "ours.onnx.json").write_text(json.dumps({"colour_order": "BGR"}))
    with pytest.raises(ModelError, match=r"ours\.onnx\.json.*colour_order 'BGR'.*RGB"):
        load_backend(model, providers="cpu")


def test_a_message_about_the_sidecar_names_the_file_read(tmp_path):
    # <stem>.json is read too where there is no <name>.onnx.json (runtime's sidecar_path).
    from runtime import ModelError, load_backend

    model = foreign_model(tmp_path / "net.onnx")
    (tmp_path / "net.json").write_text(json.dumps({"input_range": "0..255"}))
    with pytest.raises(ModelError, match=r"net\.json: input_range") as err:
        load_backend(model, providers="cpu")
    assert "net.onnx.json" not in str(err.value)


def halving_model(path: Path) -> Path:
    """A foreign model that pools 16x16 and adds the upsampled result back: like a UNet with
    four halvings, it fails unless H and W are multiples of 16."""
    from onnx import helper, numpy_helper

    dims = ["n", 3, "h", "w"]
    graph = helper.make_graph(
        [helper.make_node("AveragePool", ["image"], ["p"], kernel_shape=[16, 16],
                          strides=[16, 16]),
         helper.make_node("Resize", ["p", "", "scales"], ["u"], mode="nearest"),
         helper.make_node("Add", ["image", "u"], ["s"]),
         helper.make_node("Sub", ["s", "u"], ["restored"])], "unet",
        [helper.make_tensor_value_info("image", 1, dims)],
        [helper.make_tensor_value_info("restored", 1, dims)],
        [numpy_helper.from_array(np.array([1, 1, 16, 16], np.float32), "scales")])
    save_graph(graph, path)
    return path


def test_a_foreign_model_that_needs_a_larger_multiple_says_how_to_set_it(tmp_path):
    from runtime import ModelError

    model = halving_model(tmp_path / "unet.onnx")
    with pytest.raises(ModelError, match=r'"multiple".*unet\.onnx\.json'):
        sharpened(model, frame(40, 72))   # padded to a multiple of 8, not of 16
    (tmp_path / "unet.onnx.json").write_text(json.dumps({"multiple": 16}))
    out, _ = sharpened(model, frame(40, 72))
    assert np.array_equal(out, frame(40, 72))


def test_a_failed_nhwc_model_is_not_said_to_need_a_size_multiple_for_its_channels(tmp_path):
    # Its batch is N x H x W x 3: the 3 is no H or W to pad.
    from runtime import ModelError

    model = foreign_model(tmp_path / "nhwc.onnx", op="Add", dims=("n", "h", "w", 3),
                          consts={"bias": np.zeros((1, 8, 8, 3))})
    with pytest.raises(ModelError) as err:
        sharpened(model, frame(16, 16))
    assert "must be multiples of" not in str(err.value), err.value


def test_sharpen_models_on_a_foreign_onnx_with_a_bad_sidecar_names_it_without_a_traceback(
        tmp_path, capsys):
    pytest.importorskip("torch")
    from sharpen.cli import main

    model = foreign_model(tmp_path / "net.onnx")
    (tmp_path / "net.onnx.json").write_text(json.dumps({"input_range": "0..255"}))
    assert main(["models", str(model)]) == 2
    err = capsys.readouterr().err
    assert "net.onnx.json: input_range '0..255'" in err and "Traceback" not in err, err


def test_a_fixed_size_model_that_changes_the_size_is_refused_not_cropped(tmp_path):
    # A published 2x super-resolution network at 32x32 gives 64x64: cropping its top-left
    # quarter back to 32x32 would write a wrong image without a word.
    from onnx import helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Resize", ["image", "", "scales"], ["restored"], mode="nearest")],
        "sr", [helper.make_tensor_value_info("image", 1, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("restored", 1, [1, 3, 64, 64])],
        [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")])
    save_graph(graph, tmp_path / "sr.onnx")
    with pytest.raises(Exception, match=r"returned shape \(1, 3, 64, 64\).*not supported") as e:
        sharpened(tmp_path / "sr.onnx", frame(40, 72))
    assert "multiple" not in str(e.value), e.value


def test_a_model_with_a_second_input_is_refused_naming_its_inputs(tmp_path):
    # A denoiser that also takes its noise level (FFDNet's sigma) cannot be fed by the runtime.
    from onnx import helper
    from runtime import ModelError, load_backend

    dims = ["n", 3, "h", "w"]
    graph = helper.make_graph(
        [helper.make_node("Add", ["image", "sigma"], ["restored"])], "two",
        [helper.make_tensor_value_info("image", 1, dims),
         helper.make_tensor_value_info("sigma", 1, [1, 1, 1, 1])],
        [helper.make_tensor_value_info("restored", 1, dims)])
    save_graph(graph, tmp_path / "ffd.onnx")
    with pytest.raises(ModelError, match=r"'image' \[n,3,h,w\], 'sigma' \[1,1,1,1\]"):
        load_backend(tmp_path / "ffd.onnx", providers="cpu")
