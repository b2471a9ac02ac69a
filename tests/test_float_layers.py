"""Mixed-precision INT8 (`sharpen export --float-layers`): layer names, the downstream closure,
the simulated search, and real ONNX Runtime / TFLite artifacts with float layers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from distill.qat import FakeQuantForward  # noqa: E402
from distill.students import create_student  # noqa: E402
from optimize import float_layers as fl  # noqa: E402
from optimize.export import ExportError, Thresholds, export  # noqa: E402

import test_export_formats as _formats  # noqa: E402

# the briefly trained student and its data, from the export tests (made once per session)
data_dir, student = _formats.data_dir, _formats.student


def test_units_and_parse():
    model = create_student("fast")
    units = fl.units(model)
    assert units[0] == "stem" and units[-1] == fl.OUTPUT
    assert {"enc.0", "low.2", "dec.1", "head", "edge_gate"} <= set(units)
    assert "enc" not in units and "pool" not in units   # containers, parameter-free modules
    assert fl.parse(None, model) == [] and fl.parse("none", model) == []
    assert fl.parse("auto", model) == fl.AUTO
    assert fl.parse("dec, head,dec", model) == ["dec", "head"]
    with pytest.raises(fl.FloatLayersError, match=r"'nope' is not a layer of fast.*; choose from "
                                                  r"stem, enc\.0"):
        fl.parse("head,nope", model)
    # 'auto' and 'none' are whole values: beside layer names they are not called unknown layers
    # (the list of choices offered them in the same breath)
    for spec, word in (("auto,dec.1", "auto"), ("dec.1, none", "none")):
        with pytest.raises(fl.FloatLayersError) as e:
            fl.parse(spec, model)
        msg = str(e.value)
        assert f"'{word}' must be given alone" in msg and "is not a layer" not in msg, msg
        assert "--float-layers" in msg and "stem, enc.0" in msg, msg
    # a list made for another student (each has its own layer names) is said to be that, not
    # "corrected" to a look-alike of this one ('low.0' -> edge's 'downs.0')
    edge = create_student("edge")
    with pytest.raises(fl.FloatLayersError) as e:
        fl.parse("low.0,edge_dw", edge)
    msg = str(e.value)
    assert "'low.0', 'edge_dw' are not layers of edge (they are layers of fast" in msg, msg
    assert "did you mean" not in msg and "choose from stem, encoders.0.0" in msg, msg
    # the keywords in any case; a misspelt one, or layer, is pointed at the nearest choice
    assert fl.parse("Auto", model) == fl.AUTO and fl.parse("NONE", model) == []
    for typo, near in (("atuo", "auto"), ("aut", "auto"), ("dec1", "dec.1")):
        with pytest.raises(fl.FloatLayersError, match=rf"'{typo}' is not a layer of fast "
                                                      rf"\(did you mean '{near}'\?\)"):
            fl.parse(typo, model)


def test_onnx_scope_names_map_to_modules():
    assert fl.onnx_module_path("/dec/dec.0/pw2/Conv") == "dec.0.pw2"
    assert fl.onnx_module_path("/encoders.1/encoders.1.0/ffn1/Conv") == "encoders.1.0.ffn1"
    assert fl.onnx_module_path("/Add_3") == ""
    assert fl.covers(["dec"], "dec.1.dw") and not fl.covers(["dec.1"], "dec.10.dw")


def test_float_region_is_closed_toward_the_output():
    model = create_student("fast")
    assert fl.float_units(model, ["head"]) == ["head", fl.OUTPUT]
    region = fl.float_units(model, ["dec.1"])
    assert {"dec.1", "head", "edge_gate", "edge_pw", fl.OUTPUT} == set(region)
    assert "edge_in" not in region and "dec.0" not in region   # upstream / parallel branch


def test_simulation_with_everything_float_is_the_float_model():
    torch.manual_seed(0)
    model = create_student("fast").eval()
    x = torch.rand(2, 3, 32, 32)
    fq = FakeQuantForward(model)
    fq.calibrate(x)
    with torch.no_grad():
        ref, q = model(x), fq(x)
        fq.keep_float = fl.units(model)
        full = fq(x)
    assert (q - ref).abs().max() > 1e-4                 # INT8 really simulated
    assert torch.allclose(full, ref, atol=1e-6)         # and float where asked


def test_simulation_rounds_glue_ops_unless_downstream_of_float(student):
    """round_glue: the functional adds/products the exporters quantise are rounded too, except
    downstream of a float layer (the closure the exports use)."""
    from optimize.calibration import sample_images

    model = student[0]
    img = sample_images(("chelsea",), blur_sigma=1.5)[0][1]
    x = torch.from_numpy(np.ascontiguousarray(img[:64, :128].transpose(2, 0, 1)))[None]
    plain, glue = FakeQuantForward(model), FakeQuantForward(model, round_glue=True)
    assert sum(k.startswith("glue:") for k in glue.observers) >= 8
    for fq in (plain, glue):
        fq.calibrate(x)
    with torch.no_grad():
        ref = model(x)
        assert (plain(x) - glue(x)).abs().max() > 1e-3
        glue.keep_float = fl.float_units(model, ["head"])
        tail = glue(x)
        tail_float = set(glue._float_nodes[1])
        glue.keep_float = fl.units(model)
        assert torch.allclose(glue(x), ref, atol=1e-6)
    assert (tail - ref).abs().max() > 1e-4    # the rest is still int8
    all_glue = {k for k in glue.observers if k.startswith("glue:")}
    assert tail_float and tail_float < all_glue   # only what lies after `head`


def _parity_crop() -> list[tuple[str, np.ndarray]]:
    """A 128x192 crop of the blurred chelsea photo as the search's parity image: the search
    simulates each candidate on every parity image, and the whole photo (300x451) made these
    tests five times slower without changing what they check."""
    from optimize.calibration import gaussian_blur, sample_images
    (name, img), = sample_images(("chelsea",), blur_sigma=0)
    return [(name, np.ascontiguousarray(gaussian_blur(img, 1.5)[64:192, 96:288]))]


def test_auto_search_lowers_the_simulated_loss(student):
    model = student[0]
    imgs = _parity_crop()
    crops = np.stack([imgs[0][1][:64, :64].transpose(2, 0, 1)] * 2)
    loose = fl.choose(model, crops, imgs, min_ssim=0.5)
    assert loose.met and loose.layers == [] and loose.steps == [loose.steps[0]]
    # larger regions to fall back on: one cut each, smallest region first, never everything
    sizes = [len(fl.float_units(model, f)) for f in loose.fallbacks]
    assert all(len(f) == 1 for f in loose.fallbacks) and sizes == sorted(sizes)
    assert loose.fallbacks[0] == [fl.OUTPUT] and ["stem"] in loose.fallbacks
    assert max(sizes) < len(fl.units(model))
    strict = fl.choose(model, crops, imgs, min_ssim=0.999999)
    first, last = strict.steps[0], strict.steps[-1]
    assert len(strict.steps) > 1 and last["ssim"] > first["ssim"]
    assert set(last["units"]) != set(fl.units(model))   # never the whole network in float
    if not strict.met:   # float layers that do not reach the target are not worth their cost
        assert strict.layers == [] and strict.fallbacks == []


def test_auto_for_tflite_int8_keeps_its_output_int8(student):
    """Full-integer TFLite's output is int8 whatever runs in float, so `output` alone in float
    changes nothing there (the real artifact's numbers are those of full INT8). "auto" chose it
    anyway, from a simulation whose output was float, and the real gate then failed and cost
    several rebuilds: for tflite-int8 the simulation keeps the output rounded and never offers
    `output` alone."""
    from distill.metrics import ssim

    model = student[0]
    imgs = _parity_crop()
    crops = np.stack([imgs[0][1][:64, :64].transpose(2, 0, 1)] * 2)
    m = int(model.multiple)
    img = imgs[0][1]
    x = torch.from_numpy(np.ascontiguousarray(
        img[:img.shape[0] // m * m, :img.shape[1] // m * m].transpose(2, 0, 1)))[None]
    image = lambda y: y[0].permute(1, 2, 0).clamp(0, 1).numpy()   # noqa: E731
    fq = FakeQuantForward(model.eval(), weight_qmax=127, round_glue=True)
    fq.calibrate(torch.from_numpy(crops))
    with torch.no_grad():
        ref = image(model(x))
        full = ssim(image(fq(x)), ref)
        fq.keep_float = [fl.OUTPUT]
        out_float = ssim(image(fq(x)), ref)
    fq.remove()
    assert out_float > full   # a float output helps where the output can be float
    # a gate that the simulated full INT8 misses and a float output meets (after the margin)
    min_ssim = 1 - (1 - (full + out_float) / 2) / fl.MARGIN
    th = Thresholds(min_ssim=min_ssim)
    said = []
    by_fmt, choices, tries = fl.plan(fl.AUTO, model, ["onnx-qdq-trt", "tflite-int8"], crops,
                                     imgs, None, th, True, said.append)
    assert by_fmt["onnx-qdq-trt"] == [fl.OUTPUT]   # its output can be float
    assert by_fmt["tflite-int8"] != [fl.OUTPUT]   # a no-op there
    tfl = choices["tflite-int8"]
    assert by_fmt["tflite-int8"] == tfl["layers"]
    assert tfl["target"]["io_int8"] and not choices["onnx-qdq-trt"]["target"]["io_int8"]
    assert all(step["float"] != [fl.OUTPUT] for step in tfl["steps"])
    assert [fl.OUTPUT] not in tries["tflite-int8"]
    assert tfl["steps"][0]["ssim"] == pytest.approx(full, abs=1e-6)
    assert any("int8 output" in s for s in said)
    # named explicitly, it is kept (the user's choice) but said to change nothing there
    from runtime_fixtures import runtime_warnings
    with runtime_warnings() as warned:   # a warning, not a note: the user asked for it
        by_fmt, _, _ = fl.plan([fl.OUTPUT], model, ["tflite-int8", "onnx-int8"], None, [],
                               None, Thresholds(), True, said.append)
    assert by_fmt["tflite-int8"] == [fl.OUTPUT]
    assert any("tflite-int8's output is int8" in s and "changes nothing" in s for s in warned)


def test_fallback_search_bisects():
    """The smallest passing region of the fallbacks, in about log2(n) builds."""
    from optimize.export import FormatResult
    from optimize.parity_gate import _search_float_layers

    tries = [[f"r{i}"] for i in range(9)]
    built = []

    def attempt(layers):
        built.append(layers[0])
        return FormatResult("x", "pass" if int(layers[0][1:]) >= 3 else "fail")

    res = _search_float_layers(attempt, tries)
    assert res.status == "pass" and built[-1] == "r3" and len(built) <= 6
    built.clear()
    res = _search_float_layers(lambda layers: built.append(layers[0]) or FormatResult(
        "x", "fail"), tries)
    assert res.status == "fail" and built == ["r8"]   # the largest fails: nothing smaller tried


def test_export_falls_back_to_larger_regions_when_the_real_gate_fails(student, data_dir,
                                                                      tmp_path, monkeypatch):
    """auto's choice is simulated; an artifact that fails its real gate is rebuilt with the
    next larger float region, and the report says which one was built."""
    monkeypatch.setattr(fl, "choose", lambda *a, **k: fl.Choice(
        ["output"], {}, [], True, [["head"], ["dec.1"]]))
    rep = export(student[1], ["onnx-int8", "tflite-int8"], tmp_path, float_layers="auto",
                 thresholds=Thresholds(min_ssim=0.999999), calib=[str(data_dir / "calib")],
                 calib_count=8, calib_size=128, parity_images=[str(data_dir / "parity")],
                 latency=False, quiet=True)
    r = rep.result("onnx-int8")
    assert r.status == "fail" and r.extra["float_layers"] == ["dec.1"]
    assert rep.settings["float_layers"] == {"onnx-int8": ["dec.1"], "tflite-int8": ["dec.1"]}
    # TFLite INT8 cannot get below its 8-bit input and output, and the report says so.
    assert "input and output stay 8-bit" in rep.result("tflite-int8").reason
    assert "8-bit" not in (r.reason or "")
    meta = {p.key: p.value for p in onnx.load(r.file).metadata_props}
    assert "float layers: dec.1" in meta["quantization"]


def test_export_keeps_named_layers_float(student, data_dir, tmp_path, capsys):
    """ONNX Runtime and TFLite artifacts with float layers: those layers' weights stay float,
    the rest int8, the TFLite model keeps int8 input/output, both pass parity."""
    common = dict(calib=[str(data_dir / "calib")], calib_count=8, calib_size=128,
                  parity_images=[str(data_dir / "parity")], latency=False, quiet=True)
    fmts = ["onnx-int8", "tflite-int8"]
    full = export(student[1], fmts, tmp_path / "full", **common)
    mixed = export(student[1], fmts, tmp_path / "mixed", float_layers="dec.1", **common)
    assert mixed.settings["float_layers"] == {"onnx-int8": ["dec.1"], "tflite-int8": ["dec.1"]}
    from optimize.export import table_rows
    rows = {row[0]: row for row in table_rows(mixed)}
    assert rows["tflite-int8"][1] == "INT8, float from dec.1"
    assert {row[1] for row in table_rows(full)} == {"FP32", "INT8"}

    proto = onnx.load(mixed.result("onnx-int8").file)
    dq_outputs = {o for n in proto.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    inits = {i.name for i in proto.graph.initializer}
    convs = {n.name: n for n in proto.graph.node if n.op_type == "Conv"}
    assert convs["/head/Conv"].input[1] in inits               # float weight
    assert convs["/dec/dec.1/pw2/Conv"].input[1] in inits
    assert convs["/dec/dec.0/pw2/Conv"].input[1] in dq_outputs  # int8 weight
    meta = {p.key: p.value for p in proto.metadata_props}
    assert "float layers: dec.1" in meta["quantization"]
    # ONNX Runtime's TensorRT provider is kept off these (TensorRT takes symmetric QDQ only).
    assert meta["activations"] == "uint8 asymmetric"

    from optimize.tflite_export import tensor_types
    path = mixed.result("tflite-int8").file
    assert tensor_types(path).get("float32", 0) > 0
    assert tensor_types(full.result("tflite-int8").file).get("float32", 0) == 0
    import json
    side = json.loads(open(path + ".json").read())
    assert side["float_layers"] == ["dec.1"] and side["input"]["dtype"] == "int8"
    for f in fmts:
        assert mixed.result(f).status == "pass", mixed.result(f).reason
    # ONNX Runtime's output is float: the float tail takes its rounding away (TFLite's int8
    # output keeps one rounding of the image)
    assert mixed.result("onnx-int8").psnr > full.result("onnx-int8").psnr + 1

    # `sharpen run` read the file's record of it too: its line and --stats said plain int8.
    from runtime_fixtures import run_cli
    photo = sorted((data_dir / "parity").iterdir())[0]
    for rep, floats in ((mixed, ["dec.1"]), (full, [])):
        for f in fmts:
            stats = tmp_path / f"{f}-{len(floats)}.json"
            capsys.readouterr()
            assert run_cli(["run", "--model", rep.result(f).file, "--source", str(photo),
                            "--out", str(tmp_path / f"{f}-{len(floats)}.png"), "--stats",
                            str(stats), "--quiet"]) == 0
            said = ("int8, float from dec.1, on " if floats else "int8 on ")
            err = capsys.readouterr().err
            assert said in err, (f, err)
            assert json.loads(stats.read_text())["backend"]["float_layers"] == floats, f


def test_export_auto_and_bad_names(student, data_dir, tmp_path):
    common = dict(calib=[str(data_dir / "calib")], calib_count=8, calib_size=128,
                  parity_images=[str(data_dir / "parity")], latency=False, quiet=True)
    with pytest.raises(ExportError, match="--float-layers: 'bogus' is not a layer"):
        export(student[1], ["onnx-int8"], tmp_path / "bad", float_layers="bogus", **common)
    rep = export(student[1], ["onnx-int8"], tmp_path / "auto", float_layers="auto",
                 parity_gt=data_dir / "gt", thresholds=Thresholds(max_ssim_drop=0.0005),
                 **common)
    auto = rep.settings["float_layers_auto"]["onnx-int8"]
    assert auto["target"]["weight_bits"] == 7 and auto["target"]["max_ssim_drop"] == 0.0005 * 0.75
    assert rep.settings["float_layers"]["onnx-int8"] == auto["layers"]
    assert auto["steps"][0]["float"] == []
    # The layers auto chose, given by name, build the same file: kept, not rebuilt (the
    # other way, auto searches again, its choice depending on the crops and thresholds).
    built = rep.result("onnx-int8")
    again = export(student[1], ["onnx-int8"], tmp_path / "auto",
                   float_layers=",".join(auto["layers"]) or "none", parity_gt=data_dir / "gt",
                   thresholds=Thresholds(max_ssim_drop=0.0005), **common)
    kept = again.result("onnx-int8")
    assert kept.extra.get("up_to_date") and kept.extra["float_layers"] == auto["layers"], \
        kept.extra
    assert kept.file == built.file and kept.psnr == built.psnr


def test_plan_per_format():
    """Explicit layers go to every INT8 format (engine-int8's through onnx-qdq-trt, which it is
    built from); FP32/FP16 formats get none."""
    model = create_student("fast")
    said = []
    by_fmt, choices, tries = fl.plan(["head"], model, ["onnx", "tflite-fp16", "tflite-int8",
                                                        "engine-int8"], None, [], None,
                                     Thresholds(), True, said.append)
    assert by_fmt == {"tflite-int8": ["head"], "onnx-qdq-trt": ["head"]}
    assert choices == {} and tries == {}
    assert "tflite-int8 keeps head (and all after: 2 of 14 layers) in float" in said
    assert fl.plan([], model, ["onnx-int8"], None, [], None, Thresholds(), True,
                   said.append)[0] == {}


def test_plan_says_how_much_stays_float_and_when_auto_keeps_none():
    """The export said "tflite-int8 keeps stem (and all after) in float" for a model with 12 of
    its 14 layers float (`fast`: the edge branch alone int8), and nothing at all when auto
    found full INT8 good enough: the table's "INT8" then read like a search that did not run."""
    torch.manual_seed(0)
    model = create_student("fast").eval()
    said: list[str] = []
    fl.plan(["dec.1"], model, ["onnx-int8", "onnx"], None, [], {}, Thresholds(), True,
            said.append)
    assert said == ["onnx-int8 keeps dec.1 (and all after: 5 of 14 layers) in float"], said
    said.clear()
    rng = np.random.default_rng(0)
    crops = rng.random((2, 3, 32, 32), dtype=np.float32)
    images = [("a", rng.random((32, 32, 3), dtype=np.float32))]
    by_fmt, _, _ = fl.plan(fl.AUTO, model, ["onnx-int8"], crops, images, {},
                           Thresholds(min_ssim=0.0), True, said.append)
    assert by_fmt == {"onnx-int8": []}
    assert said[-1] == ("onnx-int8: simulated full INT8 passes the gates (worst SSIM to FP32 "
                        ">= 0.25): every layer stays int8"), said


def test_layers_named_like_the_keywords_are_layers_in_a_list():
    """A student of one's own (SHARPEN_STUDENTS) may name a module 'auto' or 'None'. Alone,
    the words are the keywords, in any case; in a list of layers such a name is its layer (it
    was refused as "must be given alone", and the cache key made 'None' 'none', so the bench
    handed the export a list it refused)."""
    from optimize.export_reuse import _float_layers_key

    class Tiny(torch.nn.Module):
        arch_name = "tiny"

        def __init__(self):
            super().__init__()
            self.add_module("auto", torch.nn.Conv2d(3, 3, 1))
            self.add_module("None", torch.nn.Conv2d(3, 3, 1))
            self.head = torch.nn.Conv2d(3, 3, 1)

    model = Tiny()
    assert fl.parse("auto, head", model) == ["auto", "head"]
    assert fl.parse("head,None", model) == ["head", "None"]
    assert fl.parse(_float_layers_key("head,None"), model) == ["None", "head"]
    assert fl.parse("auto", model) == fl.AUTO and fl.parse("None", model) == []
    assert _float_layers_key("Auto") == "auto" and _float_layers_key(" NONE ") is None
    # a keyword that is no layer of this student is still refused beside layers
    with pytest.raises(fl.FloatLayersError, match="'none' must be given alone"):
        fl.parse("head,none", model)


def test_an_int8_engines_sidecar_records_its_float_layers(student, data_dir, tmp_path):
    """An INT8 engine built from a QDQ model with float layers said nothing of them: its
    sidecar, which `sharpen run` and `bench --model` read, had no float_layers."""
    import json

    from optimize.export import FORMATS
    if FORMATS["onnx-qdq-trt"].availability():
        pytest.skip(FORMATS["onnx-qdq-trt"].availability())
    rep = export(student[1], ["engine-int8"], tmp_path, float_layers="dec.1",
                 calib=[str(data_dir / "calib")], calib_count=8, calib_size=128,
                 parity_images=[str(data_dir / "parity")], latency=False, quiet=True)
    res = rep.result("engine-int8")
    side = tmp_path / (res.extra.get("trtexec_sidecar") or Path(res.file).name + ".json")
    assert json.loads(side.read_text())["float_layers"] == ["dec.1"]
