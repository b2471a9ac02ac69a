"""The project used as a library from Python (a notebook, an app), not through `sharpen`: what
the functions take, the errors they give for what they do not, and what they leave alone."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from distill.checkpoint import CheckpointError, load_student
from distill.config import load_config
from distill.evaluate import load_model_fn
from distill.images import to_rgb_float
from distill.metrics import psnr, ssim
from distill.students import for_inference
from distill.teacher import Teacher, models_dir
from distill.trainer import Trainer, predict
from runtime.prepost import FrameError


def _bgr_u8(h: int = 40, w: int = 56) -> np.ndarray:
    import cv2
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur((rng.random((h, w, 3)) * 255).astype(np.uint8), (5, 5), 2)


def test_sharpen_refuses_what_is_not_float_rgb_in_0_1_and_says_how_to_convert():
    """Teacher.sharpen took OpenCV's BGR uint8 frame and returned an all-white image (255 x too
    bright, clamped) without a word, as it did a float image in [0, 255]; a student (`predict`)
    failed on float64 with torch's 'Input type (double) and bias type (float) should be the
    same', and on channels-first input with a convolution's shape complaint."""
    bgr = _bgr_u8()
    rgb = to_rgb_float(bgr)
    keep = rgb.copy()
    teacher = Teacher.load("teacher", device="cpu")
    student = for_inference(load_student("fast")[0])
    runs = {"teacher": lambda x: teacher.sharpen(x, tile=0),
            "student": lambda x: predict(student, x, "cpu")}
    for who, run in runs.items():
        out = run(rgb)
        assert out.dtype == np.float32 and out.shape == rgb.shape
        assert 0 <= out.min() <= out.max() <= 1
        assert np.array_equal(rgb, keep), who                     # the input is left alone
        assert np.allclose(run(rgb.astype(np.float64)), out, atol=1e-6), who
        with pytest.raises(FrameError, match=r"dtype uint8: expected float RGB in \[0, 1\].*"
                                             r"to_rgb_float"):
            run(bgr)
        with pytest.raises(FrameError, match=r"values up to .*divide it by 255"):
            run(rgb * 255)
        with pytest.raises(FrameError, match=r"shape \(3, 40, 56\).*channels first"):
            run(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
        with pytest.raises(ValueError, match=r"shape \(40, 56, 4\): expected HxWx3"):
            run(np.dstack([rgb, rgb[..., :1]]))


def test_metrics_refuse_integer_images_and_score_gray_ones_as_gray():
    """psnr/ssim clipped uint8 images to 0/1 and scored that (16.07 dB for a pair 26.96 dB
    apart); a 2-D image was read as one row per channel; mismatched shapes got scikit-image's
    message, which names neither image."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a = _bgr_u8(32, 32)
    b = np.clip(a.astype(int) + np.random.default_rng(1).integers(-20, 20, a.shape), 0,
                255).astype(np.uint8)
    af, bf = a / 255.0, b / 255.0
    for fn in (psnr, ssim):
        with pytest.raises(ValueError, match=r"a has dtype uint8: PSNR/SSIM take float images"):
            fn(a, b)
        with pytest.raises(ValueError, match=r"differ in shape: a \(32, 32, 3\), b \(16, 32, 3\)"):
            fn(af, bf[:16])
    assert psnr(af, bf) == pytest.approx(peak_signal_noise_ratio(af, bf, data_range=1.0))
    ga, gb = af[..., 0], bf[..., 0]
    assert ssim(ga, gb) == pytest.approx(structural_similarity(
        ga, gb, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(af[:5, :5], bf[:5, :5])


def test_library_loaders_take_shipped_names_as_the_command_line_does(tmp_path):
    """load_student('fast'), load_model_fn('fast' or 'teacher') and export('fast') failed with
    'checkpoint not found: fast', though every command's --weights takes the name and
    Teacher.load takes 'teacher' (given a student's name, it too said 'not found')."""
    from optimize.export import ExportOptions, export

    shipped = load_student(models_dir() / "student-fast.pt")[0].state_dict()
    by_name = load_student("fast")[0].state_dict()
    assert all(torch.equal(shipped[k], by_name[k]) for k in shipped)
    with pytest.raises(CheckpointError, match="neither a file nor a shipped model; shipped "
                                              "students: .*fast"):
        load_student("fastt")
    with pytest.raises(CheckpointError, match="'teacher' is the shipped teacher; this takes a "
                                              "student: .*fast"):   # not 'neither a file nor'
        load_student("teacher")
    with pytest.raises(CheckpointError, match="student-fast.pt is a student checkpoint, not a "
                                              "teacher"):
        Teacher.load("fast", device="cpu")
    rgb = to_rgb_float(_bgr_u8())
    assert load_model_fn("fast")(rgb).shape == rgb.shape
    assert load_model_fn("teacher", tile=0)(rgb).shape == rgb.shape
    rep = export("fast", ["onnx"], tmp_path / "out", ExportOptions(latency=False, quiet=True))
    assert rep.ok and rep.student == "fast"
    assert json.loads((tmp_path / "out" / "export_report.json").read_text())["ok"]


def test_train_config_takes_its_sections_as_mappings_as_from_dict_does():
    """TrainConfig(model={"arch": "edge"}) kept the dict: check_config and the trainer failed
    later with "'dict' object has no attribute 'lr'", while from_dict read the same mapping."""
    from distill.config import ModelConfig, TrainConfig, check_config, from_dict

    sections = {"model": {"arch": "edge"}, "data": {"crop": 64}, "loss": {"gt": 1},
                "optim": {"steps": 3, "lr": "1e-4", "betas": [0.9, 0.95]}}
    cfg = TrainConfig(out="runs/x", **sections)
    assert cfg == from_dict({"out": "runs/x", **sections})
    assert cfg.optim.lr == 1e-4 and cfg.optim.warmup_steps == 200   # defaults kept
    check_config(cfg)
    assert TrainConfig(model=ModelConfig("edge")).model.arch == "edge"
    with pytest.raises(KeyError, match="unknown config key 'model.arhc'; did you mean "
                                       "model.arch?"):
        TrainConfig(model={"arhc": "edge"})
    with pytest.raises(TypeError, match="optim.steps must be an integer, got 1.5"):
        TrainConfig(optim={"steps": 1.5})
    with pytest.raises(TypeError, match="^loss is a section; give a mapping"):
        TrainConfig(loss=[1.0])


def test_a_loss_section_assigned_as_a_mapping_is_read_as_a_config_files(tmp_path):
    """cfg.loss = {...} after the config was made: check_config and the trainer each turned it
    into LossConfig by hand (LossConfig(**mapping)), so a misspelt weight was a TypeError
    about __init__, and a partial one a bare KeyError: 'pixel' from the range check. One
    function reads it now, as a config file's section: defaults, named keys."""
    from distill.config import LossConfig, check_config

    cfg = load_config(None, [f"out={tmp_path / 'r'}", "device=cpu"])
    cfg.loss = {"gt": 0.5}
    check_config(cfg)
    assert Trainer(cfg, quiet=True).weights == LossConfig(gt=0.5)   # pixel, ssim: defaults
    cfg.loss = {"pixle": 1.0}
    for check in (check_config, lambda c: Trainer(c, quiet=True)):
        with pytest.raises(KeyError, match="unknown config key 'loss.pixle'; did you mean "
                                           "loss.pixel?"):
            check(cfg)
    cfg.loss = {"pixel": 0, "ssim": 0}
    with pytest.raises(ValueError, match="every loss weight is 0"):
        check_config(cfg)


def test_a_quiet_run_prints_nothing_on_stdout_and_leaves_no_lock_file(tmp_path, capfd):
    """train(cfg, quiet=True) left out/.lock behind after it finished (and after an error),
    among the run's results."""
    from distill.trainer import train

    out = tmp_path / "run"
    tiny = [f"out={out}", "task=teacher", "model.arch=fast",
            "model.args={width: 8, blocks: 1, low_blocks: 1}", "optim.steps=2",
            "optim.warmup_steps=1", "data.crop=32", "data.batch_size=2", "data.workers=0",
            "data.val_max_images=1", "data.val_max_side=64"]
    train(load_config(None, tiny), quiet=True)
    assert capfd.readouterr().out == ""
    assert (out / "last.pt").is_file() and not (out / ".lock").exists()
    with pytest.raises(ValueError, match="^device=meta: "):   # an error once the lock is held
        train(load_config(None, [*tiny, "device=meta"]), quiet=True)
    assert not (out / ".lock").exists()
    assert capfd.readouterr().out == ""


def test_trainer_checks_the_device_as_the_command_line_does(tmp_path):
    """Trainer(cfg) with device=gpu met torch's list of 19 device types, device=cuda on a CPU
    build an AssertionError, and device=meta left a run folder behind before failing."""
    bad = ["gpu", "meta"] + ([] if torch.cuda.is_available() else ["cuda"])
    for dev in bad:
        cfg = load_config(None, [f"out={tmp_path / dev}", f"device={dev}"])
        with pytest.raises(ValueError, match=rf"^device={dev}: "):
            Trainer(cfg, quiet=True)
        assert not (tmp_path / dev).exists()


def test_plots_leave_the_callers_matplotlib_backend_alone(tmp_path):
    """Trainer.plot, evaluate's side_by_side and the bench's figures called
    matplotlib.use("Agg"), which switched a notebook's backend (inline plots stopped showing)."""
    import matplotlib

    from benchmarks.figures import _saved, latency_figure
    from distill.evaluate import side_by_side

    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        (tmp_path / "metrics.jsonl").write_text(
            json.dumps({"step": 1, "loss": 0.5}) + "\n"
            + json.dumps({"step": 1, "val": {"model_gt_ssim": 0.5}}) + "\n")
        trainer = Trainer.__new__(Trainer)   # plot() reads only out/metrics.jsonl
        trainer.out = tmp_path
        assert trainer.plot().is_file()
        img = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
        side_by_side({"a": {"input": img, "out": img}}, tmp_path / "sbs.png", side=16)
        rows = [{"status": "ok", "model": "student", "student": "fast", "backend_label": "onnx",
                 "size": "64x64", "ms": 3.0}]
        rep = {"latency": {"rows": rows}}
        assert _saved(lambda: latency_figure(rep, 10.0), tmp_path / "lat.png", 110)
        assert (tmp_path / "sbs.png").is_file() and (tmp_path / "lat.png").is_file()
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)


def test_evaluate_takes_shipped_names_and_one_model_as_load_model_fn_does(tmp_path):
    """evaluate(["fast"], ...) failed with 'checkpoint not found: fast' (its teacher check read
    the name as a file), though load_model_fn("fast") works; evaluate("models/x.pt", ...) read
    the path letter by letter ('checkpoint path is a folder, not a file: /')."""
    import cv2

    from distill.evaluate import evaluate

    for sub, img in (("blur", _bgr_u8(32, 32)), ("sharp", _bgr_u8(32, 32)[::-1].copy())):
        (tmp_path / sub).mkdir()
        cv2.imwrite(str(tmp_path / sub / "a.png"), img)
    shipped = str(models_dir() / "student-fast.pt")
    for weights in (["fast"], "fast", shipped):
        res = evaluate(weights, str(tmp_path), progress=False)
        assert res["images"] == 1 and res["weights"] == {"student-fast": shipped}


@pytest.mark.filterwarnings("ignore:the parity images are at most")   # small for speed
def test_export_leaves_the_root_logger_as_it_found_it(tmp_path):
    """An INT8 export set the root logger to ERROR for good (an app's own warnings were gone
    afterwards), and a TFLite one left absl's logging.basicConfig() stderr handler on it (an
    app's later basicConfig(...) then did nothing)."""
    import logging

    import cv2

    from optimize.export import export

    cv2.imwrite(str(tmp_path / "p.png"), _bgr_u8(48, 48))
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    for h in handlers:   # pytest's capture handlers: absl configures a root without any
        root.removeHandler(h)
    root.setLevel(logging.WARNING)
    try:
        rep = export("fast", ["onnx-int8", "tflite-int8"], tmp_path / "out", quiet=True,
                     latency=False, calib_count=2, calib_size=32,
                     parity_images=[str(tmp_path / "p.png")])
        assert {r.format for r in rep.results} == {"onnx-int8", "tflite-int8"}
        assert root.level == logging.WARNING and root.handlers == []
    finally:
        root.setLevel(level)
        for h in handlers:
            root.addHandler(h)


def test_export_names_a_bad_option_by_its_keyword(tmp_path, capsys):
    """export(..., calib_size=8) said '--calib-size must be >= 16 pixels', a flag the caller
    never used; `sharpen export` still names its flags."""
    from optimize.export import ExportError, export
    from sharpen.cli import main

    for kw, said in ((dict(calib_size=8), r"^calib_size must be >= 16 pixels, got 8$"),
                     (dict(opset=99), r"^opset must be between 17 and"),
                     (dict(workspace_gb=0), r"^workspace_gb must be > 0 GB"),
                     # NaN and infinity failed mid-export, in int()'s words
                     (dict(workspace_gb=float("nan")), r"^workspace_gb must be > 0 GB and at "
                                                       r"most 1024 GB, got nan$"),
                     (dict(workspace_gb=float("inf")), r"^workspace_gb must .* got inf$"),
                     (dict(name="../x"), r"^name '../x' must be a file name stem, not a path "
                                         r"\(the artifacts go in out_dir\)$")):
        with pytest.raises(ExportError, match=said):
            export("fast", ["onnx"], tmp_path / "out", latency=False, quiet=True, **kw)
    assert not (tmp_path / "out").exists()
    assert main(["export", "--weights", "fast", "--formats", "onnx", "--out",
                 str(tmp_path / "out"), "--calib-size", "8"]) == 2
    assert "--calib-size must be >= 16 pixels, got 8" in capsys.readouterr().err
    assert main(["export", "--weights", "fast", "--formats", "engine", "--out",
                 str(tmp_path / "out"), "--workspace", "nan"]) == 2
    err = capsys.readouterr().err
    assert "--workspace must be > 0 GB and at most 1024 GB, got nan" in err, err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_export_says_how_to_give_an_option_given_the_wrong_way(tmp_path):
    """export(..., min_ssim=0.9) said only 'ExportOptions.__init__() got an unexpected keyword
    argument', thresholds={"min_ssim": 0.9} failed with "'dict' object has no attribute
    'max_ssim_drop'" and calib_size="256" with "'<' not supported between 'str' and 'int'"."""
    from optimize.export import ExportError, export

    def run(**kw):
        return export("fast", ["onnx"], tmp_path / "out", latency=False, quiet=True, **kw)

    for kw, said in ((dict(min_ssim=0.9), r"'min_ssim'; min_ssim is a parity threshold: "
                                          r"thresholds=Thresholds\(min_ssim=\.\.\.\)"),
                     (dict(calib_sise=64), r"'calib_sise'; options: .*calib_size"),
                     (dict(calib_size="256"), r"^calib_size must be an integer, got '256'$"),
                     (dict(thresholds={"min_sim": 0.9}), r"^thresholds: .*min_sim.*its keys: "
                                                         r"fp32_max_abs, min_ssim")):
        with pytest.raises(ExportError, match=said):
            run(**kw)
    # numpy's numbers are numbers (and the JSON report takes them)
    rep = run(thresholds={"fp32_max_abs": 1e-30}, calib_size=np.int64(64),
              percentile=np.float32(99.5))
    assert rep.result("onnx").status == "fail" and rep.settings["thresholds"]["fp32_max_abs"] \
        == 1e-30


def test_export_warns_through_python_and_quiet_silences_only_its_steps(tmp_path, capsys):
    """export(quiet=True) printed its warnings (`warning: ...`) and a `note:` (no --parity-gt
    image matching) on stderr: a program could neither silence nor record them. They are
    SharpenWarnings now, and quiet leaves nothing on stdout or stderr; `sharpen export` shows
    each once as a `warning:` line."""
    import warnings

    from distill.images import write_image
    from optimize.export import export
    from runtime import SharpenWarning
    from sharpen.cli import main

    gt = tmp_path / "gt"
    write_image(gt / "not-a-parity-image.png", np.full((16, 16, 3), 0.5, np.float32))
    kw = dict(latency=False, float_layers="output", parity_gt=gt)
    with pytest.warns(SharpenWarning) as rec:
        rep = export("fast", ["onnx"], tmp_path / "out", quiet=True, **kw)
    assert rep.ok
    said = [str(w.message) for w in rec if issubclass(w.category, SharpenWarning)]
    assert [m for m in said if m.startswith("--float-layers applies to the INT8 formats only")]
    assert f"no ground truth image in {gt} matches a parity image by name" in said, said
    assert capsys.readouterr() == ("", "")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SharpenWarning)   # or made errors by the program
        with pytest.raises(SharpenWarning, match="--float-layers applies"):
            export("fast", ["onnx"], tmp_path / "out", quiet=True, **kw)
    assert main(["export", "--weights", "fast", "--formats", "onnx", "--out",
                 str(tmp_path / "out"), "--no-latency", "--float-layers", "output",
                 "--parity-gt", str(gt), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: --float-layers applies to the INT8 formats only") == 1, err
    assert f"warning: no ground truth image in {gt} matches" in err, err
    # The float-layer planner's `note:` (through export's steps, silenced by quiet) too.
    from optimize import float_layers as fl
    steps: list[str] = []
    with pytest.warns(SharpenWarning, match="tflite-int8's output is int8 whatever runs in "
                                            "float, so 'output' alone"):
        fl.plan([fl.OUTPUT], None, ["tflite-int8"], None, [], {}, None, True, steps.append)
    assert steps == ["tflite-int8 keeps output (and all after) in float"], steps


def test_every_command_with_out_takes_output_too():
    """`sharpen run` takes --out or --output; `sharpen export --output exp/` said only
    'the following arguments are required: --out'. Every command's --out has the alias."""
    import argparse

    from sharpen.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    with_out = {name: p for name, p in sub.choices.items()
                if any("--out" in a.option_strings for a in p._actions)}
    assert {"run", "export", "bench", "evaluate"} <= set(with_out)
    for name, p in with_out.items():
        out = next(a for a in p._actions if "--out" in a.option_strings)
        assert "--output" in out.option_strings, name


def test_python_dash_m_sharpen_runs_the_command_line():
    """`python -m sharpen ...` (what a user types without the console script on PATH, e.g. from
    a source tree) said "No module named sharpen.__main__"; the rerun advice an interrupted
    command prints quotes it back as it was typed."""
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "sharpen", "--version"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("sharpen "), r.stderr
    from distill.dist import launch_command
    assert launch_command(["/src/sharpen/__main__.py", "labels", "--out", "a b"]) == \
        "python -m sharpen labels --out 'a b'"


def test_blur_synthesis_refuses_what_is_not_float_rgb_in_0_1():
    """`synthesize_pair` and `synthesize` (making one's own pairs in Python) took OpenCV's BGR
    uint8 photo, or a float one in [0, 255], and returned an all-white pair (clipped to 1)
    without a word; a channels-first one was an OpenCV traceback from inside filter2D."""
    from distill.data.blur import synthesize
    from distill.data.scene_blur import preset, synthesize_pair
    bgr = _bgr_u8(48, 64)
    runs = {"scene": lambda x: synthesize_pair(x, np.random.default_rng(0), preset("mild")),
            "kernel": lambda x: synthesize(x, np.random.default_rng(0))}
    for who, run in runs.items():
        for bad, says in ((bgr, "to_rgb_float"), (bgr.astype(np.float32), "divide it by 255"),
                          (to_rgb_float(bgr).transpose(2, 0, 1), "channels first")):
            with pytest.raises(FrameError, match=says):
                run(bad)
        out = run(to_rgb_float(bgr))   # what it takes still works
        out = out[0] if isinstance(out, tuple) else out
        assert out.shape == (48, 64, 3) and out.mean() < 0.9, who
    with pytest.raises(FrameError, match="other"):   # the moving objects' texture too
        synthesize_pair(to_rgb_float(bgr), np.random.default_rng(0), preset("gopro"), other=bgr)


def test_to_rgb_float_of_a_failed_cv2_imread_says_the_file_was_not_read():
    """The README's `to_rgb_float(cv2.imread("blurred.png"))` with a wrong path (imread gives
    None) was "'NoneType' object has no attribute 'dtype'"."""
    from distill.images import ImageReadError
    with pytest.raises(ImageReadError, match="cv2.imread.*read_image"):
        to_rgb_float(None)
    with pytest.raises(ImageReadError, match="pixel type object"):   # not an array at all
        to_rgb_float(np.array([["a"]], dtype=object))
