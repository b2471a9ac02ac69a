"""`sharpen export` usage errors: one clear line on stderr and a non-zero exit, before any work.
Also the format registry, option help texts and the TensorRT fallback (trtexec line)."""
from __future__ import annotations

import argparse
import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

torch = pytest.importorskip("torch")

from distill.checkpoint import atomic_save, make_checkpoint  # noqa: E402
from distill.students import create_student  # noqa: E402
from optimize.calibration import CalibrationError  # noqa: E402
from sharpen.cli import build_parser, main  # noqa: E402


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = create_student("fast")
    path = tmp_path_factory.mktemp("ckpt") / "student.pt"
    atomic_save(make_checkpoint(model, kind="student", arch="fast", arch_args=model.arch_args),
                path)
    return path


def _run(argv, capsys):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    return rc, err


def _one_line_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("sharpen export: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_missing_checkpoint(tmp_path, capsys):
    rc, err = _run(["export", "--weights", str(tmp_path / "nope.pt"), "--format", "onnx",
                    "--out", str(tmp_path / "out")], capsys)
    assert rc == 2
    assert "checkpoint not found" in _one_line_error(err)
    assert not (tmp_path / "out").exists()


def test_not_a_student_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    rc, err = _run(["export", "--weights", str(bad), "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "is not a PyTorch checkpoint" in _one_line_error(err)
    onnx = tmp_path / "student.onnx"
    onnx.write_bytes(b"\x08\x07")   # what an ONNX protobuf starts with
    rc, err = _run(["export", "--weights", str(onnx), "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "is an exported model" in _one_line_error(err)
    assert f"sharpen run --model {onnx}" in _one_line_error(err)


def test_the_official_teacher_file_is_said_to_be_a_teacher_not_exported(tmp_path, capsys):
    """`sharpen export --weights motion_deblurring.pth` said "not a student checkpoint of this
    project (kind=None)": not that the file is the Restormer teacher, which is not exported,
    nor which commands take it."""
    from distill.restormer import build_restormer

    official = tmp_path / "motion_deblurring.pth"
    torch.save({"params": build_restormer("tiny").state_dict()}, official)
    rc, err = _run(["export", "--weights", str(official), "--out", str(tmp_path / "o")], capsys)
    line = _one_line_error(err)
    assert rc == 2 and "kind=None" not in line, line
    assert "Restormer teacher weights" in line and "sharpen teacher" in line, line
    assert not (tmp_path / "o").exists()


def test_restormers_denoising_file_is_named_by_export_too(tmp_path, capsys):
    """The official motion file was named by export (and bench, which exports), Restormer's
    denoising file still "not a student checkpoint of this project (kind=None)", where the
    teacher, labels and evaluate name it a model for another job."""
    from dataclasses import replace

    from distill.restormer import CONFIGS, build_restormer

    denoiser = tmp_path / "real_denoising.pth"
    model = build_restormer(replace(CONFIGS["tiny"], LayerNorm_type="BiasFree"))
    torch.save({"params": model.state_dict()}, denoiser)
    rc, err = _run(["export", "--weights", str(denoiser), "--out", str(tmp_path / "o")], capsys)
    line = _one_line_error(err)
    assert rc == 2 and "kind=None" not in line, line
    assert "Restormer's denoising model" in line and "not a student" in line, line


def test_unknown_format(ckpt, tmp_path, capsys):
    rc, err = _run(["export", "--weights", str(ckpt), "--format", "onnx,coreml",
                    "--out", str(tmp_path)], capsys)
    assert rc == 2
    line = _one_line_error(err)
    assert "unknown format 'coreml'" in line and "tflite-int8" in line


@pytest.mark.parametrize("given, said", [
    ("onnx,tflite", "unknown format 'tflite' (did you mean tflite-int8 or tflite-fp16?)"),
    ("tflite_int8", "unknown format 'tflite_int8' (did you mean tflite-int8?)"),
    # 'all' said to be unknown, then offered in the same line
    ("all,onnx", "'all' stands alone in --formats (every format this machine can build)"),
])
def test_a_mistyped_format_is_answered_with_the_near_ones(given, said):
    from optimize.export import ExportError, parse_formats

    with pytest.raises(ExportError) as e:
        parse_formats(given)
    assert said in str(e.value), e.value


@pytest.mark.parametrize("kind", ["file", "below-file"])
def test_unwritable_output_path(ckpt, tmp_path, capsys, kind):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = blocker if kind == "file" else blocker / "sub"
    rc, err = _run(["export", "--weights", str(ckpt), "--format", "onnx", "--out", str(out)],
                   capsys)
    assert rc == 2
    line = _one_line_error(err)
    assert "not a folder" in line or "not writable" in line


def test_calibration_array_of_wrong_shape(ckpt, tmp_path, capsys):
    arr = tmp_path / "calib.npy"
    np.save(arr, np.random.default_rng(0).random((4, 1, 64, 64), dtype=np.float32))
    rc, err = _run(["export", "--weights", str(ckpt), "--format", "onnx-int8", "--out",
                    str(tmp_path / "out"), "--calib", str(arr)], capsys)
    assert rc == 2
    line = _one_line_error(err)
    assert "(4, 1, 64, 64)" in line and "N x 3 x H x W" in line
    assert not list((tmp_path / "out").glob("*.onnx"))


def test_calibration_images_too_small(ckpt, tmp_path, capsys):
    import cv2

    d = tmp_path / "tiny"
    d.mkdir()
    cv2.imwrite(str(d / "a.png"), np.zeros((6, 9, 3), np.uint8))
    rc, err = _run(["export", "--weights", str(ckpt), "--format", "tflite-int8", "--out",
                    str(tmp_path / "out"), "--calib", str(d)], capsys)
    assert rc == 2 and "only 6x9" in _one_line_error(err)


def test_calibration_values_out_of_range(ckpt, tmp_path, capsys):
    arr = tmp_path / "c.npy"
    np.save(arr, np.full((2, 3, 32, 32), 200.0, np.float32))
    rc, err = _run(["export", "--weights", str(ckpt), "--format", "onnx-int8", "--out",
                    str(tmp_path / "out"), "--calib", str(arr)], capsys)
    assert rc == 2 and "expected RGB floats in [0, 1]" in _one_line_error(err)


def test_missing_calibration_source(ckpt, tmp_path, capsys):
    rc, err = _run(["export", "--weights", str(ckpt), "--format", "onnx-int8", "--out",
                    str(tmp_path / "out"), "--calib", str(tmp_path / "nowhere")], capsys)
    assert rc == 2 and "no such file or folder" in _one_line_error(err)


@pytest.mark.parametrize("flag", ["--calib", "--parity-images"])
def test_bad_calibration_or_parity_images_name_their_flag_and_leave_no_empty_out(
        tmp_path, capsys, ckpt, flag):
    """`--parity-images nowhere` said only 'no such file or folder: nowhere' (which of the
    two image options?) and left the --out folder it had just made behind, empty, though the
    export's own comment says a mistake leaves none."""
    out = tmp_path / "new" / "out"
    rc, err = _run(["export", "--weights", str(ckpt), "--format", "onnx-int8", "--out",
                    str(out), flag, str(tmp_path / "nowhere"), "--no-latency"], capsys)
    assert rc == 2
    assert f"{flag}: no such file or folder: {tmp_path / 'nowhere'}" in _one_line_error(err)
    assert not (tmp_path / "new").exists()
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    rc, err = _run(["export", "--weights", str(ckpt), "--format", "onnx-int8", "--out",
                    str(out), flag, str(empty), "--no-latency"], capsys)
    assert rc == 2 and f"{flag}: {empty}: empty file" in _one_line_error(err)
    assert not (tmp_path / "new").exists()
    # From Python: the keyword, as export() names its other options
    from optimize.calibration import CalibrationError
    from optimize.export import export
    keyword = flag[2:].replace("-", "_")
    with pytest.raises(CalibrationError, match=f"^{keyword}: no such file or folder: "):
        export(str(ckpt), ["onnx-int8"], out, latency=False, quiet=True,
               **{keyword: str(tmp_path / "nowhere")})
    assert not (tmp_path / "new").exists()


def test_bad_engine_shape(ckpt, tmp_path, capsys):
    rc, err = _run(["export", "--weights", str(ckpt), "--format", "onnx", "--out",
                    str(tmp_path), "--opt-shape", "1080by1920"], capsys)
    assert rc == 2 and "HEIGHTxWIDTH" in _one_line_error(err)
    # The message named no option ("shape '0x10' must be positive": which of the three?)
    rc, err = _run(["export", "--weights", str(ckpt), "--format", "engine", "--out",
                    str(tmp_path / "o"), "--min-shape", "0x10"], capsys)
    assert rc == 2 and _one_line_error(err).endswith("--min-shape '0x10' must be positive")


def test_engine_shapes_from_python_are_checked_and_named_by_keyword(tmp_path):
    """A tuple went in as given: (64,) failed with an IndexError, (0, 10) made a profile of
    0-pixel frames, (1080.5, 1920) a sidecar profile that the trtexec line (1080) did not
    build."""
    from optimize.export import ExportError, export

    for kw, said in ((dict(min_shape=(64,)), r"^min_shape \(64,\) must be HEIGHTxWIDTH, "
                                             r"e\.g\. '1080x1920' or \(1080, 1920\)$"),
                     (dict(min_shape=(0, 10)), r"^min_shape \(0, 10\) must be positive$"),
                     (dict(opt_shape=(1080.5, 1920)), r"^opt_shape \(1080\.5, 1920\) must be "
                                                      r"whole numbers of pixels$"),
                     (dict(max_shape="4k"), r"^max_shape '4k' must be HEIGHTxWIDTH"),
                     # named as sharpen export's flags, and said 'rounded up' where none was
                     (dict(min_shape=(1080, 1920), max_shape=(720, 1280)),
                      r"^engine profile: min_shape 1080x1920 is larger than max_shape 720x1280 "
                      r"in height or width$")):
        with pytest.raises(ExportError, match=said):
            export("fast", ["engine"], tmp_path / "out", latency=False, quiet=True, **kw)
    assert not (tmp_path / "out").exists()
    from optimize.tensorrt_engine import as_hw
    assert as_hw((np.int64(720), 1280)) == (720, 1280) and as_hw("1080*1920") == (1080, 1920)


def test_every_option_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    export = sub.choices["export"]
    opts = [a for a in export._actions if a.option_strings and a.dest != "help"]
    assert len(opts) > 20
    for action in opts:
        assert action.help and len(action.help) > 10, action.option_strings
    text = export.format_help()
    for fmt in ("onnx-int8", "onnx-qdq-trt", "tflite-int8", "tflite-fp16", "engine"):
        assert fmt in text


def test_format_registry_and_parsing():
    from optimize.export import ExportError, FORMATS, parse_formats

    assert list(FORMATS)[:5] == ["onnx", "onnx-int8", "onnx-qdq-trt", "tflite-int8",
                                 "tflite-fp16"]
    assert parse_formats("all") is None and parse_formats(None) is None
    for empty in ("", " , "):
        with pytest.raises(ExportError, match="--formats is empty"):
            parse_formats(empty)
    assert parse_formats(" ONNX, tflite-int8,onnx") == ["onnx", "tflite-int8"]
    with pytest.raises(ExportError):
        parse_formats("onnx,trt")


def test_engine_profile_and_trtexec_line(tmp_path):
    from optimize.tensorrt_engine import Profile, availability, trtexec_command

    prof = Profile.from_hw((61, 97), (1080, 1920), (2160, 3840), multiple=8)
    assert prof.min == (1, 3, 64, 104) and prof.opt == (1, 3, 1080, 1920)
    with pytest.raises(ValueError, match="--opt-shape 1080x1920 is larger than --max-shape "
                                         "720x1280"):
        Profile.from_hw((64, 64), (1080, 1920), (720, 1280), multiple=8)
    # --max-shape (or --min-shape) alone: the default opt comes within the range.
    assert Profile.from_hw((64, 64), None, (720, 1280), multiple=8).opt == (1, 3, 720, 1280)
    assert Profile.from_hw((64, 64), None, (2160, 1000), multiple=8).opt == (1, 3, 1080, 1000)
    assert Profile.from_hw((1200, 64), None, (2160, 3840), multiple=8).opt == (1, 3, 1200, 1920)
    assert Profile.from_hw((64, 64), None, (2160, 3840), multiple=8).opt == (1, 3, 1080, 1920)
    with pytest.raises(ValueError, match="--min-shape 2000x2000 is larger than --max-shape"):
        Profile.from_hw((2000, 2000), None, (1000, 1000), multiple=8)
    # Rounding up keeps the order, so a refused shape is said as given: 1081 was 1088.
    with pytest.raises(ValueError, match=r"--opt-shape 1081x1920 is larger than --max-shape "
                                         r"1080x1920 in height or width$"):
        Profile.from_hw((64, 64), (1081, 1920), (1080, 1920), multiple=8)
    line = trtexec_command(tmp_path / "m.onnx", tmp_path / "m.engine", prof, "fp16", 2.0,
                           tmp_path / "timing.cache")
    for part in (f"--onnx={tmp_path / 'm.onnx'}", f"--saveEngine={tmp_path / 'm.engine'}",
                 "--fp16", "--minShapes=input:1x3x64x104", "--optShapes=input:1x3x1080x1920",
                 "--maxShapes=input:1x3x2160x3840", "--memPoolSize=workspace:2048",
                 f"--timingCacheFile={tmp_path / 'timing.cache'}"):
        assert part in shlex.split(line), (part, line)
    assert "--int8" in trtexec_command("q.onnx", "q.engine", prof, "int8")
    assert "'--onnx=my models/q.onnx'" in trtexec_command("my models/q.onnx", "q.engine", prof)
    reason = availability()
    if reason is not None:
        assert "TensorRT" in reason or "GPU" in reason


def test_an_engine_is_not_timed_at_1080p_outside_its_profile(tmp_path):
    """An engine exported with --max-shape 720x1280 (a 720p camera, a Jetson's memory) passed
    its parity images, then its 1080p latency ran the frame through it anyway: TensorRT refused
    the shape and the engine's row said "parity run failed" (exit 1) for an engine that works.
    Its latency is left out, said, from the profile its sidecar records."""
    from optimize.parity_gate import latency_outside_profile
    from optimize.tensorrt_engine import Profile, profile_miss

    frame = np.zeros((1080, 1920, 3), np.float32)
    engine = tmp_path / "m_fp16.engine"
    small = Profile.from_hw(opt_hw=None, max_hw=(720, 1280), multiple=8)
    (tmp_path / "m_fp16.engine.json").write_text(json.dumps(
        {"profile": small.to_dict(), "multiple": 8}))
    why = latency_outside_profile(engine, frame)
    assert why == ("1080x1920 (height x width) is outside the engine's optimisation profile, "
                   "64x64 to 720x1280")
    # Within it, padded to the multiple as the runtime pads it: 1080 is 1088 for `edge`.
    upto_1080p = {m: Profile.from_hw(opt_hw=None, max_hw=(1080, 1920), multiple=m)
                  for m in (8, 32)}
    assert profile_miss(upto_1080p[32], (1080, 1920), 32) is None
    assert profile_miss(upto_1080p[8], (1080, 1921), 8).startswith(
        "1080x1928 (height x width, padded to a multiple of 8) is outside")
    from_720p = Profile.from_hw(min_hw=(720, 1280), opt_hw=None, multiple=8)
    assert profile_miss(from_720p, (300, 451), 8).startswith("304x456 ")
    (tmp_path / "m_fp16.engine.json").write_text(json.dumps(
        {"profile": Profile.from_hw(multiple=8).to_dict(), "multiple": 8}))
    assert latency_outside_profile(engine, frame) is None
    # Not an engine, or no profile recorded (an engine trtexec built from its own line):
    # timed, and TensorRT says what it says.
    assert latency_outside_profile(tmp_path / "m.onnx", frame) is None
    (tmp_path / "m_fp16.engine.json").write_text("{}")
    assert latency_outside_profile(engine, frame) is None


def test_an_engine_profile_that_leaves_out_the_parity_images_is_said_before_its_build():
    """An engine for one camera size (--min-shape 720x1280, or min = opt = max, as TensorRT
    users build for a fixed camera) was built for minutes, then its parity check ran the
    default 300x451 photo through it: TensorRT refused the shape and the row said "parity run
    failed ... or run with --tile", a `sharpen run` flag the export has not. The engine is not
    built, its row says why and what to give (the other formats go on: `sharpen bench`'s
    exports, whose held-out --calib photos may be larger, take no shape options)."""
    from optimize.export import parity_outside_profile
    from optimize.tensorrt_engine import Profile

    images = [("chelsea", np.zeros((300, 451, 3), np.float32)),
              ("frame", np.zeros((720, 1280, 3), np.float32))]
    from_720p = Profile.from_hw(min_hw=(720, 1280), opt_hw=None, multiple=8)
    assert parity_outside_profile(images, from_720p, 8, flags=True) == (
        "the engine's parity check cannot run parity image chelsea: 304x456 (height x width, "
        "padded to a multiple of 8) is outside the engine's optimisation profile, 720x1280 to "
        "2160x3840: give --parity-images within it (frames of the camera the engine is for), "
        "or a --min-shape/--max-shape that covers them")
    assert "give parity_images within it" in parity_outside_profile(images, from_720p, 8, False)
    from benchmarks.artifacts import EXPORT_FLAGS
    # `sharpen bench` holds its parity images out of --calib (a 24 MP photo is beyond the
    # default profile): that is what it can change.
    assert parity_outside_profile(images, from_720p, 8, EXPORT_FLAGS).endswith(
        "optimisation profile, 720x1280 to 2160x3840: give --calib within it (frames of the "
        "camera the engine is for)")
    assert parity_outside_profile(images[1:], from_720p, 8, flags=True) is None
    assert parity_outside_profile(images, Profile.from_hw(multiple=8), 8, flags=True) is None


def test_an_engine_left_out_for_its_parity_images_lets_the_other_formats_go_on(
        ckpt, tmp_path, monkeypatch, capsys):
    """Where TensorRT builds (its availability said so here: the engine is refused before any
    TensorRT call), `--min-shape 720x1280` against the 300x451 parity photo leaves the engine
    out, its row saying why and what to give; the ONNX model is built and passes, and the
    export exits 1 with the engine not shipped."""
    import optimize.tensorrt_engine as trt_mod

    monkeypatch.setattr(trt_mod, "availability", lambda: None)
    out = tmp_path / "out"
    rc = main(["export", "--weights", str(ckpt), "--formats", "onnx,engine", "--out", str(out),
               "--min-shape", "720x1280", "--no-latency", "--threads", "1", "--quiet"])
    said = capsys.readouterr()
    rows = {r["format"]: r for r in json.loads((out / "export_report.json").read_text())[
        "results"]}
    assert rc == 1, said
    assert rows["onnx"]["status"] == "pass", rows["onnx"]
    assert rows["engine"]["status"] == "error" and rows["engine"]["reason"].startswith(
        "not built: the engine's parity check cannot run parity image "), rows["engine"]
    assert rows["engine"]["reason"].endswith(
        "give --parity-images within it (frames of the camera the engine is for), or a "
        "--min-shape/--max-shape that covers them"), rows["engine"]
    assert "Traceback" not in json.dumps(rows["engine"]), rows["engine"]
    assert not list(out.glob("*.engine")), list(out.iterdir())


def test_a_pending_engine_keeps_its_trtexec_line_after_a_later_export(ckpt, tmp_path):
    """The README's two lines, `--formats engine` then `--formats engine-int8` into one folder:
    the second report lists only its own engine, so `sharpen run` given the FP16 engine
    before its line had built it said only "the trtexec line that `sharpen export` printed",
    a line gone with the first run's terminal. The sidecar, which travels with the engine,
    holds the line."""
    from optimize.tensorrt_engine import availability

    if availability() is None:
        pytest.skip("TensorRT and a GPU are present: the engine is really built here")
    out = tmp_path / "export"
    assert main(["export", "--weights", str(ckpt), "--format", "engine", "--out", str(out),
                 "--no-latency", "--quiet"]) == 1
    # A later export of other formats of the same weights replaces the report.
    assert main(["export", "--weights", str(ckpt), "--format", "onnx", "--out", str(out),
                 "--no-latency", "--quiet"]) == 0
    from runtime.backends import ModelError, load_backend
    engine = out / f"{ckpt.stem}_fp16.engine"
    with pytest.raises(ModelError) as e:
        load_backend(engine)
    assert f"in {out}: trtexec --onnx={ckpt.stem}.onnx --saveEngine={engine.name}" \
        in str(e.value), e.value


def test_trtexec_workspace_is_a_bare_number_of_mib():
    """--memPoolSize takes `workspace:sizeInMiB` in TensorRT 8.6's trtexec (no unit suffix in its
    grammar; "2048M" passed only because std::stod stops at the M) and a bare number as MiB in
    10.x: the line uses that spelling, and never 0 MiB, which left the builder no workspace
    where the Python build had some."""
    from optimize.tensorrt_engine import Profile, trtexec_command, workspace_flag

    assert workspace_flag(4.0) == "--memPoolSize=workspace:4096"
    assert workspace_flag(0.5) == "--memPoolSize=workspace:512"
    assert workspace_flag(1e-5) == "--memPoolSize=workspace:1"
    line = shlex.split(trtexec_command("m.onnx", "m.engine", Profile.from_hw(), "int8", 0.25))
    assert [p for p in line if p.startswith("--memPoolSize")] == ["--memPoolSize=workspace:256"]


def test_engine_without_tensorrt_prints_trtexec(ckpt, tmp_path, capsys):
    from optimize.tensorrt_engine import availability

    reason = availability()
    if reason is None:
        pytest.skip("TensorRT and a GPU are present: the engine is really built elsewhere")
    rc = main(["export", "--weights", str(ckpt), "--format", "engine", "--out", str(tmp_path),
               "--no-latency"])
    cap = capsys.readouterr()
    # Asked for by name and not built: a script must not go on as if the engine were there
    # (it exited 0); the last lines say what is missing and how to build it on the device.
    assert rc == 1
    assert reason in cap.err
    assert "trtexec --onnx=" in cap.err and "--saveEngine=" in cap.err
    assert "SKIPPED" in cap.out
    tail = cap.err[cap.err.index("sharpen export: NOT BUILT on this machine: engine ("):]
    assert reason in tail and "on the Jetson or GPU machine" in tail
    assert f"trtexec --onnx={ckpt.stem}.onnx --saveEngine={ckpt.stem}_fp16.engine" in tail
    # JetPack puts trtexec where no PATH looks: `trtexec: command not found` on the device.
    assert "on a Jetson, trtexec is /usr/src/tensorrt/bin/trtexec" in tail
    report = json.loads((tmp_path / "export_report.json").read_text())
    assert report["settings"]["formats_requested"] == ["engine"]   # not the stand-in onnx
    # The report's verdict is the exit code's: the engine asked for is not there.
    assert report["ok"] is False and report["not_built"] == ["engine"]
    # The engine the printed line builds finds its sidecar: the model's multiple and profile,
    # and no TensorRT version or GPU for the runtime to refuse it on.
    from runtime.backends.base import parse_multiple, read_sidecar
    from runtime.backends.tensorrt_backend import check_sidecar
    engine = tmp_path / f"{ckpt.stem}_fp16.engine"
    meta = read_sidecar(engine)
    assert parse_multiple(meta["multiple"], "") == create_student("fast").multiple
    assert meta["profile"]["opt"] == [1, 3, 1080, 1920] and meta["precision"] == "fp16"
    check_sidecar(meta, "10.3.0", "Orin", engine)
    # The folder copied to the device and run before the line: "model not found" said nothing
    # of the line that builds it, which the report holds.
    from runtime.backends import ModelError, load_backend
    with pytest.raises(ModelError) as e:
        load_backend(engine)
    assert f"model not found: {engine}: not built yet" in str(e.value), e.value
    assert f"in {tmp_path}: trtexec --onnx={ckpt.stem}.onnx" in str(e.value), e.value
    assert "on a Jetson, trtexec is /usr/src/tensorrt/bin/trtexec" in str(e.value), e.value
    # A built engine's sidecar (with its TensorRT version) is never replaced by a pending one.
    built = {**meta, "tensorrt_version": "10.3.0", "gpu_name": "Orin"}
    (tmp_path / f"{engine.name}.json").write_text(json.dumps(built))
    assert main(["export", "--weights", str(ckpt), "--format", "engine", "--out", str(tmp_path),
                 "--no-latency", "--quiet"]) == 1
    assert read_sidecar(engine) == built
    # --quiet leaves the line out of the progress, not out of the error; file names only,
    # for the export folder copied to the device.
    cap = capsys.readouterr()
    out = cap.out
    assert f"trtexec --onnx={ckpt.stem}.onnx --saveEngine={engine.name}" in cap.err
    assert json.loads((tmp_path / "export_report.json").read_text())["not_built"] == ["engine"]
    # Under the table: what PASS means (the thresholds were only in the JSON) and what runs
    # each format (only in --help).
    assert "PASS means FP32: max abs error < 0.0001 (pixels in [0, 1]); INT8/FP16: SSIM >= " \
           "0.98; ship only PASS rows." in out, out
    assert "runs on: onnx: ONNX Runtime" in out and "engine: TensorRT" in out, out


def _trt_reason():
    from optimize.tensorrt_engine import availability

    return availability()


def test_a_group_skips_what_cannot_be_built_with_a_warning_a_named_format_fails(
        ckpt, tmp_path, capsys, monkeypatch):
    """`--formats all` (or none) skips what this machine cannot build, warns, lists it as
    SKIPPED and exits 0, as Ultralytics' benchmark does; a format named in --formats that
    cannot be built here exits 1 naming what is missing (it exited 0)."""
    import dataclasses

    from runtime.formats import FORMATS

    for f in FORMATS:   # only onnx here, so that 'all' stays seconds long
        if f != "onnx":
            monkeypatch.setitem(FORMATS, f, dataclasses.replace(
                FORMATS[f], available=lambda f=f: f"{f} needs what this test lacks (pip "
                                                  "install it)"))
    base = ["export", "--weights", str(ckpt), "--no-latency", "--quiet"]
    assert main([*base, "--out", str(tmp_path / "a"), "--formats", "all"]) == 0
    cap = capsys.readouterr()
    assert "warning: skipped tflite-fp16: tflite-fp16 needs what this test lacks" in cap.err
    assert "warning: skipped engine: engine needs" in cap.err and "NOT BUILT" not in cap.err
    assert cap.out.count("SKIPPED") == len(FORMATS) - 1 and "PASS" in cap.out
    rep = json.loads((tmp_path / "a" / "export_report.json").read_text())
    assert rep["ok"] and rep["not_built"] == []
    assert main([*base, "--out", str(tmp_path / "b"), "--formats", "onnx,tflite-fp16"]) == 1
    err = capsys.readouterr().err
    assert "sharpen export: NOT BUILT on this machine: tflite-fp16 (tflite-fp16 needs what " \
           "this test lacks)" in err
    assert "install that, or leave tflite-fp16 out of --formats" in err
    assert (tmp_path / "b" / f"{ckpt.stem}.onnx").is_file()   # what could be built, was


def test_tensorrt_11_is_refused_with_the_supported_versions():
    from types import SimpleNamespace

    from optimize.tensorrt_engine import network_flags, version_problem

    class Flags10:
        FP16, INT8 = 0, 1

    class Flags11:
        pass

    assert version_problem(SimpleNamespace(__version__="10.3.0", BuilderFlag=Flags10)) is None
    why = version_problem(SimpleNamespace(__version__="11.4.0", BuilderFlag=Flags11))
    assert "TensorRT 11.4.0" in why and "8.5-10.x" in why and "tensorrt-cu12>=10,<11" in why
    creation = SimpleNamespace(EXPLICIT_BATCH=0)
    assert network_flags(SimpleNamespace(__version__="8.6.1",
                                         NetworkDefinitionCreationFlag=creation)) == 1
    assert network_flags(SimpleNamespace(__version__="10.3.0",
                                         NetworkDefinitionCreationFlag=creation)) == 0
    # ModelOpt's QDQ model is opset 19; TensorRT 8.6 parses up to 17.
    from optimize.tensorrt_engine import int8_problem
    assert "opset 19" in int8_problem(SimpleNamespace(__version__="8.6.2"))
    assert int8_problem(SimpleNamespace(__version__="10.3.0")) is None


def test_tensorrt_older_than_8_5_is_refused_naming_both_versions():
    """The backend runs engines with TensorRT's named-tensor API (num_io_tensors,
    get_tensor_name, set_input_shape, set_tensor_address, execute_async_v3), which came with
    8.5 (JetPack 5.1): on 8.4 or JetPack 4.6's 8.2 the export's parity gate and `sharpen run`
    died on an AttributeError deep in the backend."""
    from types import SimpleNamespace

    from optimize.tensorrt_engine import SUPPORTED, version_problem
    from runtime.backends.tensorrt_backend import tensorrt_too_old

    for old in ("8.2.1.8", "8.4.3.1", "7.1.3"):
        why = tensorrt_too_old(old)
        assert why and f"TensorRT {old}" in why and "needs TensorRT 8.5 or newer" in why, why
        assert "execute_async_v3" in why
    for ok in ("8.5.2.2", "8.6.1.post1", "10.3.0", "11.0.0", "unknown"):
        assert tensorrt_too_old(ok) is None, ok

    class Flags:
        FP16, INT8 = 0, 1

    why = version_problem(SimpleNamespace(__version__="8.4.1", BuilderFlag=Flags))
    assert "TensorRT 8.4.1" in why and "8.5 or newer" in why
    assert version_problem(SimpleNamespace(__version__="8.5.2.2", BuilderFlag=Flags)) is None
    assert SUPPORTED == "TensorRT 8.5-10.x"


def test_tensorrt_too_old_as_an_export_skip_reason_gives_no_run_advice():
    """`sharpen run` with an engine on a too old TensorRT is told to use the .onnx model; the
    same reason, shown by `sharpen export` for the engine it skips, ended with that advice too,
    which does not fit there (the engine is built on the device from the .onnx model). One
    message, the advice for running only."""
    from types import SimpleNamespace

    from optimize.tensorrt_engine import version_problem
    from runtime.backends.tensorrt_backend import tensorrt_too_old

    class Flags:
        FP16, INT8 = 0, 1

    run = tensorrt_too_old("8.4.1")
    export = version_problem(SimpleNamespace(__version__="8.4.1", BuilderFlag=Flags))
    assert run.endswith("JetPack 6.1 10.3; or use the .onnx model"), run
    assert export.endswith("JetPack 6.1 10.3"), export
    assert run.startswith(export)   # one text: the export's is the run's without its advice


class _TimingCacheConfig:
    """IBuilderConfig's documented timing-cache calls, as TensorRT answers them: None from
    create_timing_cache for a blob it cannot read (some versions raise instead), False from
    set_timing_cache for one made on another GPU. TensorRT itself cannot be installed here."""

    def __init__(self, raises: bool = False, other_gpu: bool = False) -> None:
        self.raises, self.other_gpu, self.attached = raises, other_gpu, None

    def create_timing_cache(self, blob: bytes):
        if blob and not blob.startswith(b"TRTCACHE"):
            if self.raises:
                raise RuntimeError("Error Code 1: Serialization (corrupt timing cache)\nmore")
            return None
        return ("cache", bytes(blob))

    def set_timing_cache(self, cache, ignore_mismatch: bool) -> bool:
        if cache[1] and self.other_gpu and not ignore_mismatch:
            return False
        self.attached = cache
        return True


@pytest.mark.parametrize("blob, config, why", [
    (b"\x00garbage", _TimingCacheConfig(), "not a timing cache this TensorRT can read"),
    (b"\x00garbage", _TimingCacheConfig(raises=True), "Error Code 1: Serialization"),
    (b"TRTCACHE1", _TimingCacheConfig(other_gpu=True), "made on another GPU"),
])
def test_an_unusable_timing_cache_is_discarded_and_the_build_starts_afresh(tmp_path, blob,
                                                                           config, why):
    """A corrupt timing cache file raised out of the build (or, where create_timing_cache
    returned None, was caught only by a check the raising bindings skip)."""
    from optimize.tensorrt_engine import attach_timing_cache
    from runtime.warn import SharpenWarning

    path = tmp_path / "timing.cache"
    path.write_bytes(blob)
    with pytest.warns(SharpenWarning) as got:
        attach_timing_cache(config, path)
    assert config.attached == ("cache", b"")   # a new, empty cache
    msg = str(got[0].message)
    assert str(path) in msg and why in msg and "starting a new timing cache" in msg, msg
    assert "\n" not in msg


def test_a_usable_or_missing_timing_cache_is_attached_without_a_word(tmp_path):
    import warnings

    from optimize.tensorrt_engine import attach_timing_cache

    path = tmp_path / "timing.cache"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for blob in (None, b"TRTCACHE1"):
            if blob:
                path.write_bytes(blob)
            config = _TimingCacheConfig(other_gpu=False)
            attach_timing_cache(config, path)
            assert config.attached == ("cache", blob or b"")
        config = _TimingCacheConfig()
        attach_timing_cache(config, None)
        assert config.attached == ("cache", b"")


def test_not_built_advice_names_the_tensorrt_that_builds_each_engine():
    """The INT8 engine is built from ModelOpt's opset-19 QDQ model, which TensorRT 8.6 does not
    parse (int8_problem): its advice said 'TensorRT 8.6-10.x' like the FP16 engine's, sending a
    JetPack 6.0 user to a trtexec line that fails there."""
    from optimize.commands import not_built_advice
    from optimize.export import ExportReport, FormatResult

    def skipped(fmt, precision):
        return FormatResult(fmt, "skipped", precision=precision, reason="TensorRT is not "
                            "installed", extra={"trtexec": f"trtexec --onnx=m.onnx ({fmt})",
                                                "trtexec_sidecar": f"m_{fmt}.engine.json"})

    fp16, int8 = skipped("engine", "fp16"), skipped("engine-int8", "int8")
    report = ExportReport("m.pt", "fast", "out", [fp16, int8], {},
                          {"formats_requested": ["engine", "engine-int8"]})
    lines = not_built_advice(report, report.not_built)
    fp16_line = next(ln for ln in lines if ln.startswith("engine:"))
    int8_line = next(ln for ln in lines if ln.startswith("engine-int8:"))
    assert "with TensorRT 8.5-10.x, run" in fp16_line
    assert "with TensorRT 10.x, run" in int8_line and "8.5" not in int8_line


def test_not_built_advice_names_tensorrt_10_for_an_onnx_model_above_opset_17():
    """TensorRT 8.6's ONNX parser covers opsets up to 17 (onnx-tensorrt release/8.6
    docs/operators.md); `--opset 18` to 20 is allowed, and the FP16 engine's advice still said
    'TensorRT 8.6-10.x', sending a JetPack 6.0 user to a trtexec line for a model its parser
    does not cover."""
    from optimize.commands import not_built_advice
    from optimize.export import ExportReport, FormatResult
    from optimize.tensorrt_engine import supported_for

    assert supported_for("fp16") == supported_for("fp16", 17) == "TensorRT 8.5-10.x"
    assert supported_for("fp16", 18) == supported_for("int8", 17) == "TensorRT 10.x"
    fp16 = FormatResult("engine", "skipped", precision="fp16", reason="TensorRT is not installed",
                        extra={"trtexec": "trtexec --onnx=m.onnx", "trtexec_sidecar": "m.json"})
    for opset, where in ((17, "TensorRT 8.5-10.x"), (20, "TensorRT 10.x")):
        report = ExportReport("m.pt", "fast", "out", [fp16], {},
                              {"formats_requested": ["engine"], "opset": opset})
        line = not_built_advice(report, report.not_built)[0]
        assert f"with {where}, run" in line, line


def test_tensorrt_engine_build(tmp_path):
    from optimize.tensorrt_engine import availability

    reason = availability()
    if reason:
        pytest.skip(reason)
    from optimize.export import export

    torch.manual_seed(0)
    model = create_student("fast")
    path = tmp_path / "s.pt"
    atomic_save(make_checkpoint(model, kind="student", arch="fast", arch_args=model.arch_args),
                path)
    rep = export(path, "engine", tmp_path / "out", min_shape="64x64", opt_shape="256x256",
                 max_shape="512x512", latency=False, quiet=True)
    res = rep.result("engine")
    assert res.status == "pass", res.reason
    assert (Path(res.file).with_name(Path(res.file).name + ".json")).is_file()


def test_an_unreadable_calibration_or_parity_image_is_skipped_by_name(tmp_path, capsys):
    """`export --calib/--parity-images FOLDER` stopped at the first unreadable file, where every
    other command skips it and names it."""
    import cv2

    from optimize.calibration import CalibrationError, load_images

    d = tmp_path / "calib"
    d.mkdir()
    for name in ("a", "b"):
        cv2.imwrite(str(d / f"{name}.png"), np.full((24, 32, 3), 90, np.uint8))
    (d / "bad.png").write_bytes(b"not an image")
    paths = sorted(d.iterdir())
    from runtime import SharpenWarning
    with pytest.warns(SharpenWarning, match=r"skipped: .*bad.png"):   # a print before
        assert [n for n, _ in load_images(paths)] == ["a", "b"]
    with pytest.raises(CalibrationError, match="bad.png"):
        load_images([d / "bad.png"])
    (d / "a.png").write_bytes(b"no")
    (d / "b.png").write_bytes(b"no")
    with pytest.raises(CalibrationError, match="none of the 3 files is a readable image"), \
            pytest.warns(SharpenWarning) as warned:   # each named before the error
        load_images(paths)
    assert sorted(str(w.message).split("/")[-1].split(":")[0] for w in warned) == \
        ["a.png", "b.png", "bad.png"], [str(w.message) for w in warned]


def test_a_parity_image_too_small_for_ssim_is_skipped_by_name(ckpt, tmp_path, capsys):
    """A 3x5 parity image failed a good artifact ("parity run failed: win_size exceeds image
    extent"), which `sharpen run` then refused."""
    import cv2

    from optimize.calibration import CalibrationError, load_images

    d = tmp_path / "parity"
    d.mkdir()
    cv2.imwrite(str(d / "big.png"), np.full((24, 32, 3), 90, np.uint8))
    cv2.imwrite(str(d / "tiny.png"), np.full((3, 5, 3), 90, np.uint8))
    out = tmp_path / "out"
    assert main(["export", "--weights", str(ckpt), "--formats", "onnx", "--out", str(out),
                 "--no-latency", "--quiet", "--parity-images", str(d)]) == 0
    err = capsys.readouterr().err
    assert "tiny.png: 5x3 is smaller than SSIM's 11x11 window" in err, err
    assert json.loads((out / "export_report.json").read_text())["settings"]["parity_images"] \
        == ["big"]
    from runtime import SharpenWarning
    with pytest.raises(CalibrationError, match="no parity images: none of the 2 files is a "
                                               "readable image of at least 7x7"), \
            pytest.warns(SharpenWarning, match=r"skipped: .*tiny.png: 5x3 is smaller than "):
        load_images([d / "tiny.png", d / "tiny.png"], what="parity", min_side=7)


def test_runs_best_pt_exports_get_their_run_name_and_replacing_other_weights_is_said(
        ckpt, tmp_path, capsys):
    """Every training run writes best.pt, so every export was named best.*: exporting a second
    run into the same folder replaced the first without a word."""
    import shutil

    from distill.checkpoint import run_stem as default_stem   # export's artifact stem

    assert default_stem(Path("runs/edge-a/best.pt")) == "edge-a-best"
    assert default_stem(Path("models/student-fast.pt")) == "student-fast"
    # a run's snapshots (snapshot_every) are named alike in every run too
    assert default_stem(Path("runs/edge-a/step1000.pt")) == "edge-a-step1000"
    run_a = tmp_path / "edge-a" / "best.pt"
    run_a.parent.mkdir()
    shutil.copy(ckpt, run_a)
    torch.manual_seed(1)
    other = create_student("fast")
    run_b = tmp_path / "edge-b" / "best.pt"
    atomic_save(make_checkpoint(other, kind="student", arch="fast", arch_args=other.arch_args),
                run_b)
    out = tmp_path / "export"
    assert main(["export", "--weights", str(run_a), "--formats", "onnx", "--out", str(out),
                 "--no-latency", "--quiet"]) == 0
    assert (out / "edge-a-best.onnx").is_file()
    # A second run's export into the folder keeps the first one's report beside its files.
    assert main(["export", "--weights", str(run_b), "--formats", "onnx", "--out", str(out),
                 "--no-latency", "--quiet"]) == 0
    latest = json.loads((out / "export_report.json").read_text())
    kept = json.loads((out / "export_report.edge-a-best.json").read_text())
    assert latest["weights"] == str(run_b) and latest["settings"]["stem"] == "edge-b-best"
    assert kept["weights"] == str(run_a) and kept["results"][0]["file"].endswith("edge-a-best.onnx")
    capsys.readouterr()
    assert main(["export", "--weights", str(run_b), "--formats", "onnx", "--out", str(out),
                 "--no-latency", "--quiet", "--name", "edge-a-best"]) == 0
    out_text = capsys.readouterr()
    assert f"warning: replacing edge-a-best.onnx, exported from {run_a}" in \
        out_text.out + out_text.err
    reports = sorted(p.name for p in out.glob("export_report*.json"))
    assert reports == ["export_report.edge-b-best.json", "export_report.json"]


def test_held_out_parity_skips_an_unreadable_file_and_unapplicable_gates_are_refused(
        ckpt, tmp_path, capsys):
    """With --calib DIR the last fifth of the images is held out for parity; an unreadable one
    there stopped the export. --max-ssim-drop without ground truth passed without being
    applied. A video as --calib was called a corrupt image."""
    import cv2

    d = tmp_path / "calib"
    d.mkdir()
    for i in range(5):
        cv2.imwrite(str(d / f"p{i}.png"), np.full((40, 48, 3), 40 * i, np.uint8))
    (d / "zz.png").write_bytes(b"junk")
    out = tmp_path / "out"
    base = ["export", "--weights", str(ckpt), "--formats", "onnx", "--out", str(out),
            "--no-latency", "--quiet"]
    assert main([*base, "--calib", str(d)]) == 0
    err = capsys.readouterr().err
    assert "skipped" in err and "zz.png" in err
    assert json.loads((out / "export_report.json").read_text())["settings"]["parity_images"] \
        == ["p4"]
    rc, err = _run([*base, "--calib", str(d), "--max-ssim-drop", "0.002"], capsys)
    assert rc == 2 and "--max-ssim-drop needs ground truth" in _one_line_error(err)
    video = tmp_path / "clip.mp4"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"mp4v"), 10, (48, 40))
    vw.write(np.zeros((40, 48, 3), np.uint8))
    vw.release()
    # ... and a clip is its frames (tests/test_calib_video.py), this one's one frame
    rc, err = _run([*base, "--formats", "onnx-int8", "--calib", str(video)], capsys)
    assert rc == 0, err


def test_the_report_says_where_parity_ran_when_calib_leaves_nothing_to_hold_out(
        ckpt, tmp_path, capsys):
    """A --calib of one image, or of .npy crops, holds none out: the gate runs on the built-in
    photos, which only the console said (not with --quiet); the report said nothing of it."""
    import cv2

    one = tmp_path / "one.png"
    cv2.imwrite(str(one), np.full((40, 48, 3), 90, np.uint8))
    crops = tmp_path / "crops.npy"
    np.save(crops, np.zeros((2, 3, 32, 32), np.float32))
    d = tmp_path / "calib"
    d.mkdir()
    for i in range(5):
        cv2.imwrite(str(d / f"p{i}.png"), np.full((40, 48, 3), 40 * i, np.uint8))
    for calib, says in ((one, "--calib has one image, none to hold out besides it"),
                        (crops, "--calib holds .npy crops only, no image to hold out"),
                        (d, None)):
        out = tmp_path / f"out-{calib.stem}"
        assert main(["export", "--weights", str(ckpt), "--formats", "onnx", "--out", str(out),
                     "--no-latency", "--quiet", "--calib", str(calib)]) == 0
        parity = json.loads((out / "export_report.json").read_text())["settings"]["parity"]
        if says:
            assert parity.startswith("built-in sample photos (") and parity.endswith(
                f"): {says}"), parity
        else:
            assert parity == "1 image held out of --calib", parity
    capsys.readouterr()


def test_name_must_be_a_stem_and_float_layers_without_int8_is_warned(ckpt, tmp_path, capsys):
    base = ["export", "--weights", str(ckpt), "--formats", "onnx", "--out",
            str(tmp_path / "o"), "--no-latency", "--quiet"]
    rc, err = _run([*base, "--name", "../escaped"], capsys)
    assert rc == 2 and "must be a file name stem, not a path" in _one_line_error(err)
    assert not (tmp_path / "escaped.onnx").exists()
    rc, err = _run([*base, "--float-layers", "head"], capsys)
    assert rc == 0 and "--float-layers applies to the INT8 formats only" in err
    # 'none' is the default (full integer): nothing to warn about with FP32 formats
    for spelling in ("none", " none ", ""):
        rc, err = _run([*base, "--float-layers", spelling], capsys)
        assert rc == 0 and "--float-layers" not in err, (spelling, err)


def test_parity_images_that_are_also_calibration_images_are_warned_about(ckpt, tmp_path,
                                                                          capsys):
    import cv2

    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(3):
        cv2.imwrite(str(d / f"p{i}.png"), np.full((40, 48, 3), 50 * i, np.uint8))
    rc, err = _run(["export", "--weights", str(ckpt), "--formats", "onnx", "--out",
                    str(tmp_path / "o"), "--no-latency", "--quiet", "--calib", str(d),
                    "--parity-images", str(d / "p2.png")], capsys)
    assert rc == 0 and "1 parity image is also a --calib image (p2.png)" in err
    # 40x48 images against the fast layout's 136 px receptive field: the gate sees padding
    assert "the parity images are at most 40 px on their short side, under the model's " \
        "receptive field (136 px)" in err
    cv2.imwrite(str(d / "big.png"), np.full((140, 150, 3), 90, np.uint8))
    rc, err = _run(["export", "--weights", str(ckpt), "--formats", "onnx", "--out",
                    str(tmp_path / "o"), "--no-latency", "--quiet", "--parity-images",
                    str(d / "big.png"), str(d / "p1.png")], capsys)
    assert rc == 0 and "receptive field" not in err and "--calib" not in err, err


def test_builtin_parity_images_under_the_receptive_field_warn_with_the_fix(tmp_path, capsys):
    """`edge` (744 px) met "the parity images are at most 512 px ..." on every default export:
    images it was never given, and "(--parity-images)" without the size that would do. Still
    a warning (the gate really sees padding; a note would vanish with --quiet), but one naming
    the built-in images, the size needed and both options that give larger ones."""
    torch.manual_seed(0)
    model = create_student("fast", width=8, deep=2)   # 560 px: over the samples' 512 px
    path = tmp_path / "deep.pt"
    atomic_save(make_checkpoint(model, kind="student", arch="fast", arch_args=model.arch_args),
                path)
    rc, err = _run(["export", "--weights", str(path), "--formats", "onnx", "--out",
                    str(tmp_path / "o"), "--no-latency", "--quiet"], capsys)
    said = [ln for ln in err.splitlines() if "receptive field" in ln]
    assert rc == 0 and said == [
        "warning: the built-in parity images (scikit-image's chelsea, immunohistochemistry) "
        "are at most 512 px on their short side, under the model's receptive field (560 px): "
        "the gate sees mostly padding; give held-out images at least 560 px on their short "
        "side with --parity-images (or --calib images that large: a fifth of them is held out "
        "for parity)"], err
    # export() called from Python names its keywords, as its other messages do.
    from optimize.export import Progress
    from optimize.export_data import _warn_small_parity
    from runtime.warn import SharpenWarning
    with pytest.warns(SharpenWarning, match=r"the parity images are at most 40 px .* "
                      r"with parity_images \(or calib images that large"):
        _warn_small_parity([("p", np.zeros((40, 48, 3), np.float32))], 136, Progress(True))


@pytest.mark.parametrize("flag, value, message", [
    ("--max-ssim-drop", "nan", "--max-ssim-drop must be in [0, 1], got nan"),
    ("--max-ssim-drop", "-1", "--max-ssim-drop must be in [0, 1], got -1.0"),
    ("--min-ssim", "2", "--min-ssim must be in (0, 1], got 2.0"),
    ("--min-ssim", "nan", "--min-ssim must be in (0, 1], got nan"),
    ("--max-abs-fp32", "-1", "--max-abs-fp32 must be in (0, 1], got -1.0"),
])
def test_parity_thresholds_out_of_range_are_usage_errors(ckpt, tmp_path, capsys, flag, value,
                                                         message):
    """NaN passed every artifact (its comparisons are all false); a negative budget failed
    good ones and marked them so that `sharpen run` refused them."""
    out = tmp_path / "x"
    rc, err = _run(["export", "--weights", str(ckpt), "--formats", "onnx", "--out", str(out),
                    "--no-latency", flag, value], capsys)
    assert rc == 2 and message in _one_line_error(err)
    assert not out.exists()


def test_an_export_of_more_formats_keeps_the_earlier_ones_in_the_report(ckpt, tmp_path,
                                                                       capsys):
    """`--formats onnx`, then `--formats tflite-fp16` into the same folder: the report held the
    second alone; from other weights, the first export's files are stale and said so. (The
    second format here is onnx-int8, on a few small crops: the report's merge is the same for
    every format, and a TFLite conversion costs seconds.)"""
    out = tmp_path / "x"
    common = ["--weights", str(ckpt), "--out", str(out), "--no-latency", "--name", "m"]
    second = ["--formats", "onnx-int8", "--calib-count", "16", "--calib-size", "128"]
    assert _run(["export", *common, "--formats", "onnx"], capsys)[0] == 0
    assert main(["export", *common, *second]) == 0
    table = capsys.readouterr().out   # the carried row is marked, not shown as this run's
    assert "(earlier export) PASS" in table and table.count("(earlier export)") == 1, table
    rep = json.loads((out / "export_report.json").read_text())
    by = {r["format"]: r for r in rep["results"]}
    assert by["onnx"]["status"] == "pass" and by["onnx"]["extra"]["earlier_export"]
    assert by["onnx-int8"]["status"] == "pass" and "earlier_export" not in by["onnx-int8"][
        "extra"]
    # Another stem's export in between moves this one's report aside; it is still found.
    assert _run(["export", "--weights", str(ckpt), "--out", str(out), "--no-latency", "--name",
                 "n", "--formats", "onnx"], capsys)[0] == 0
    assert (out / "export_report.m.json").is_file()
    rc, err = _run(["export", *common, *second], capsys)
    assert rc == 0 and "not rebuilt" not in err, err
    rep = json.loads((out / "export_report.json").read_text())
    assert {r["format"] for r in rep["results"]} == {"onnx", "onnx-int8"}
    assert all(Path(r["file"]).parent == out for r in rep["results"])
    other = tmp_path / "other.pt"
    torch.manual_seed(1)
    model = create_student("fast")
    atomic_save(make_checkpoint(model, kind="student", arch="fast", arch_args=model.arch_args),
                other)
    rc, err = _run(["export", "--weights", str(other), "--out", str(out), "--no-latency",
                    "--name", "m", "--formats", "onnx"], capsys)
    assert rc == 0 and "m_int8.onnx in" in err and "is not rebuilt by this export" in err
    rep = json.loads((out / "export_report.json").read_text())
    assert [r["format"] for r in rep["results"]] == ["onnx"]
    # The report names the stale file too, with why, not the warning alone.
    assert [(s["format"], s["file"]) for s in rep["stale"]] == [("onnx-int8", "m_int8.onnx")]
    assert "other weights" in rep["stale"][0]["reason"], rep["stale"]


def test_the_report_describes_the_finished_formats_while_the_export_runs(ckpt, tmp_path):
    """The report was removed when an export began and written when it ended: an export
    killed part-way (SIGKILL, a job's time limit) left none, and so did one still running
    when a second export into the folder began. The next export of other formats then
    carried none of the finished ones (the bench, whose stamp held them: 'not rebuilt by this
    export and not in its report'). Now the report is rewritten as each format is finished,
    marked interrupted until the export ends."""
    from optimize.export import export

    out = tmp_path / "x"
    opts = dict(latency=False, quiet=True, name="m", calib_count=4, calib_size=64,
                thresholds={"min_ssim": 0.5})   # (an untrained student: no gate tested)
    assert export(ckpt, "onnx", out, **opts).ok
    seen = []

    def on_result(res):
        rep = json.loads((out / "export_report.json").read_text())   # there, mid-export
        seen.append((res.format, [r["format"] for r in rep["results"]],
                     rep["settings"].get("interrupted")))

    report = export(ckpt, "onnx-int8,tflite-fp16", out, on_result=on_result, **opts)
    built = [r.format for r in report.results if not r.extra.get("earlier_export")]
    # Each format is in the report (beside the carried onnx) before on_result hears of it.
    assert seen[0] == ("onnx-int8", ["onnx-int8", "onnx"], True), seen
    if "tflite-fp16" in built:   # (where LiteRT is installed)
        assert seen[1] == ("tflite-fp16", ["onnx-int8", "tflite-fp16", "onnx"], True), seen
    final = json.loads((out / "export_report.json").read_text())
    assert "interrupted" not in final["settings"] and final["ok"] and final["stale"] == []
    assert {r["format"] for r in final["results"]} == {"onnx", *built}


def test_an_export_ended_by_an_error_is_not_ok_in_its_report(ckpt, tmp_path):
    """An error that ended the export part-way (here the caller's on_result; a full disk
    writing the bench's stamp) rewrote the report as finished: "ok": true, with the formats
    after it never built, for a script that reads "ok" to ship."""
    from optimize.export import export

    out = tmp_path / "x"

    def fail(res):
        raise RuntimeError("the caller's record could not be written")

    with pytest.raises(RuntimeError):
        export(ckpt, "onnx,onnx-int8", out, on_result=fail, latency=False, quiet=True,
               name="m", calib_count=4, calib_size=64, thresholds={"min_ssim": 0.5})
    rep = json.loads((out / "export_report.json").read_text())
    assert [r["format"] for r in rep["results"]] == ["onnx"]
    assert rep["ok"] is False and rep["settings"]["interrupted"] is True, rep["settings"]
    assert rep["settings"]["error"] == "RuntimeError: the caller's record could not be written"


def test_an_onnx_model_of_other_weights_drops_the_pending_engine_sidecar(ckpt, tmp_path,
                                                                        capsys):
    """`--formats engine` without TensorRT writes the engine's sidecar for the printed trtexec
    line; an export of other weights under the same name then replaced the ONNX model that
    line builds from and left that sidecar, not named among the stale files: the engine built
    on the device from the new model got the old weights' hash (`sharpen run` called the
    fresh engine stale), size multiple and receptive field."""
    if not _trt_reason():
        pytest.skip("TensorRT is here: the engine itself is built")
    out = tmp_path / "o"
    common = ["--out", str(out), "--no-latency", "--quiet", "--name", "m"]
    assert main(["export", "--weights", str(ckpt), "--formats", "engine", *common]) == 1
    side = out / "m_fp16.engine.json"
    assert side.is_file()
    # The same weights rebuilt: the sidecar still describes the engine the line builds.
    assert main(["export", "--weights", str(ckpt), "--formats", "onnx", "--rebuild",
                 *common]) == 0
    assert side.is_file()
    capsys.readouterr()
    other = tmp_path / "other.pt"
    torch.manual_seed(1)
    model = create_student("fast")
    atomic_save(make_checkpoint(model, kind="student", arch="fast", arch_args=model.arch_args),
                other)
    rc, err = _run(["export", "--weights", str(other), "--formats", "onnx", *common], capsys)
    assert rc == 0, err
    assert not side.exists()
    assert "removed m_fp16.engine.json" in err and "--formats engine" in err, err


def test_engine_shapes_and_opset_usage(ckpt, tmp_path, capsys):
    base = ["export", "--weights", str(ckpt), "--format", "engine", "--no-latency", "--quiet"]
    engine_here = not _trt_reason()
    assert main([*base, "--out", str(tmp_path / "a"), "--max-shape", "512x512"]) == \
        (0 if engine_here else 1)
    sidecar = json.loads(next((tmp_path / "a").glob("*.engine.json")).read_text())
    assert sidecar["profile"]["opt"] == [1, 3, 512, 512]
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "b"), "--opt-shape", "1080x1920",
                 "--max-shape", "720x1280"]) == 2
    assert "--opt-shape 1080x1920 is larger than --max-shape 720x1280" in capsys.readouterr().err
    for opset in ("16", "99"):
        assert main(["export", "--weights", str(ckpt), "--format", "onnx", "--opset", opset,
                     "--out", str(tmp_path / "c")]) == 2
        err = capsys.readouterr().err
        assert "--opset must be between 17 and" in err and "Traceback" not in err
    assert not (tmp_path / "c").exists()


def test_a_failed_export_says_what_it_left_and_what_to_try(ckpt, tmp_path, capsys):
    """The FAILED line gave only the reason: not that the failed artifact stays in --out
    (refused by `sharpen run`) beside the passing ones, nor what to try for an INT8 format."""
    out = tmp_path / "o"
    rc, err = _run(["export", "--weights", str(ckpt), "--formats", "onnx,onnx-int8", "--out",
                    str(out), "--no-latency", "--quiet", "--calib-count", "2", "--calib-size",
                    "64", "--min-ssim", "0.999999"], capsys)
    assert rc == 1 and "sharpen export: FAILED: onnx-int8 (SSIM" in err
    assert ("student_int8.onnx stays in " + str(out) + ", marked so that `sharpen run` refuses "
            "it (--force runs anyway): do not ship it; student.onnx passed") in err
    assert "onnx-int8: INT8 loses too much here; try --float-layers auto" in err
    assert "a float format (onnx, tflite-fp16)" in err
    assert (out / "student_int8.onnx.parity-failed.json").exists()
    # an explicit '--float-layers none' is the default: auto is still worth trying
    rc, err = _run(["export", "--weights", str(ckpt), "--formats", "onnx-int8", "--out",
                    str(out), "--no-latency", "--quiet", "--calib-count", "2", "--calib-size",
                    "64", "--min-ssim", "0.999999", "--float-layers", "none"], capsys)
    assert rc == 1 and "INT8 loses too much here; try --float-layers auto" in err, err


@pytest.mark.parametrize("size, said", [
    (512, ("--calib-size 512 is larger than calibration image a (250x190); its short side 190 "
           "rounded down to a multiple of 8 (the model's input multiple): calibrating on "
           "184x184 crops")),
    (100, ("--calib-size 100 is not a multiple of 8 (the model's input multiple): calibrating "
           "on 96x96 crops")),
    (96, None),
], ids=["images-smaller", "not-a-multiple", "as-asked"])
def test_a_shrunk_calib_size_is_said_once(ckpt, tmp_path, capsys, size, said):
    """The crops were silently smaller than --calib-size when the calibration images were (or
    the size was no multiple of the model's): the export now says what it used and why."""
    from distill.images import write_image

    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    # a.png calibrates; b.png, the last fifth, is held out for parity.
    for name, (h, w) in (("a", (190, 250)), ("b", (240, 320))):
        write_image(calib / f"{name}.png", rng.random((h, w, 3)).astype(np.float32))
    # An untrained student on noise: a low --min-ssim, the parity gate is not what is tested.
    rc, err = _run(["export", "--weights", str(ckpt), "--format", "onnx-int8", "--out",
                    str(tmp_path / "o"), "--no-latency", "--quiet", "--calib", str(calib),
                    "--calib-count", "2", "--calib-size", str(size), "--min-ssim", "0.01"], capsys)
    assert rc == 0, err
    lines = [ln for ln in err.splitlines() if "--calib-size" in ln]
    assert lines == ([f"warning: {said}"] if said else []), err
    report = json.loads((tmp_path / "o" / "export_report.json").read_text())
    assert report["settings"]["calib_size"] == (184 if size == 512 else 96)


def test_a_calib_size_left_to_the_export_is_fitted_without_a_warning(ckpt, tmp_path):
    """`sharpen demo` calibrates on its 256 px training crops (one of them 256x172) or on the
    user's frames (96x64): export's default --calib-size warned of a flag the demo does not
    have. calib_size=None fits the default to the images unsaid; the report says the side."""
    import warnings

    from distill.images import write_image
    from optimize.export import export
    from runtime.warn import SharpenWarning

    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in (("a", (172, 256)), ("b", (240, 320))):
        write_image(calib / f"{name}.png", rng.random((h, w, 3)).astype(np.float32))
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        report = export(ckpt, ["onnx-int8"], tmp_path / "o", calib=[str(calib)], calib_size=None,
                        calib_count=2, latency=False, quiet=True)
    shown = [str(w.message) for w in said if issubclass(w.category, SharpenWarning)]
    assert not [m for m in shown if "calib" in m], shown
    assert report.settings["calib_size"] == 168   # 172 rounded down to the multiple of 8


def test_an_artifact_left_by_an_export_of_other_weights_is_warned_about_when_loaded(
        ckpt, tmp_path, capsys):
    """A full export, then `--formats onnx` from new weights into the same folder: the old
    .tflite and _int8.onnx stayed beside the new model and `sharpen run` used them without a
    word. Each artifact records its checkpoint; the runtime compares it with the folder's
    latest export of that stem."""
    import shutil

    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert not installed")
    from runtime.backends import load_backend
    from runtime.backends.base import read_sidecar
    from runtime_fixtures import runtime_warnings

    out = tmp_path / "export"
    common = ["--out", str(out), "--no-latency", "--quiet", "--name", "m"]
    assert main(["export", "--weights", str(ckpt), *common, "--formats",
                 "onnx,onnx-int8,tflite-fp16", "--calib-count", "4", "--calib-size", "64",
                 "--min-ssim", "0.5"]) == 0   # (an untrained student: the gate is not tested)
    tfl, int8, onnx = out / "m_fp16.tflite", out / "m_int8.onnx", out / "m.onnx"
    from distill.teacher import file_hash
    assert read_sidecar(tfl)["source_sha256"] == file_hash(ckpt, n=64)
    def said(p):
        with runtime_warnings() as w:
            load_backend(p).close()
        return "\n".join(w)

    for p in (tfl, int8, onnx):   # the export's own artifacts: nothing to say
        assert "stale" not in said(p)
    torch.manual_seed(1)
    model = create_student("fast")
    newer = tmp_path / "newer.pt"
    atomic_save(make_checkpoint(model, kind="student", arch="fast", arch_args=model.arch_args),
                newer)
    assert main(["export", "--weights", str(newer), *common, "--formats", "onnx"]) == 0
    assert "stale" not in said(onnx)
    for p in (tfl, int8):
        err = said(p)
        assert f"stale model: {p} was exported from other weights" in err, err
        assert f"the latest export of m there (export_report.json) is from {newer}" in err
    # Copied without the report there is nothing to compare with; nothing is said.
    device = tmp_path / "device"
    device.mkdir()
    for f in (tfl, Path(str(tfl) + ".json")):
        shutil.copy(f, device / f.name)
    assert "stale" not in said(device / tfl.name)
    # A sidecar from before the record: not listed in the latest report is said too.
    side = Path(str(tfl) + ".json")
    side.write_text(json.dumps({k: v for k, v in json.loads(side.read_text()).items()
                                if k != "source_sha256"}))
    err = said(tfl)
    assert f"{tfl} records no source weights and is not in export_report.json" in err, err


def test_a_re_export_keeps_what_is_up_to_date_and_says_why_it_rebuilds_the_rest(
        ckpt, tmp_path, capsys):
    """The same command twice rebuilt and re-judged every artifact without a word (minutes for
    TFLite and engines). An artifact built from the same weights and inputs that passed and is
    unchanged is kept, saying so; each one rebuilt is said with why; --rebuild rebuilds."""
    out = tmp_path / "x"
    base = ["export", "--weights", str(ckpt), "--out", str(out), "--no-latency", "--formats",
            "onnx"]
    onnx = out / f"{ckpt.stem}.onnx"

    def export(*extra):
        rc = main([*base, *extra])
        cap = capsys.readouterr()
        assert rc == 0, cap.err
        return cap, json.loads((out / "export_report.json").read_text())["results"][0]

    export()
    first = onnx.stat().st_mtime_ns
    cap, res = export()
    assert f"onnx: {onnx.name} is up to date" in cap.err and "--rebuild rebuilds it" in cap.err
    assert "PASS (up to date, kept)" in cap.out and onnx.stat().st_mtime_ns == first
    assert res["status"] == "pass" and res["extra"]["up_to_date"] and res["max_abs"] is not None
    cap, res = export("--opset", "18")
    assert f"onnx: rebuilding {onnx.name}: changed since it was built: --opset" in cap.err
    assert "up_to_date" not in res["extra"] and onnx.stat().st_mtime_ns != first
    cap, _ = export("--opset", "18", "--rebuild")
    assert f"onnx: rebuilding {onnx.name}: --rebuild" in cap.err
    onnx.write_bytes(onnx.read_bytes())   # same bytes: still up to date
    assert "is up to date" in export("--opset", "18")[0].err
    import onnx as onnx_lib
    from optimize.onnx_export import set_metadata
    proto = onnx_lib.load(str(onnx))
    set_metadata(proto, {"student": "edited"})
    onnx.write_bytes(proto.SerializeToString())
    cap, _ = export("--opset", "18")
    assert "the file changed since it passed its gate" in cap.err
    assert "PASS (up to date, kept)" in export("--opset", "18", "--quiet")[0].out


def test_an_artifact_built_with_no_latency_is_measured_not_rebuilt(ckpt, tmp_path, capsys):
    """Exported again without --no-latency, an up-to-date artifact was rebuilt (minutes of
    calibration for an INT8 model, to the same bytes) to measure its latency."""
    out = tmp_path / "x"
    base = ["export", "--weights", str(ckpt), "--out", str(out), "--formats", "onnx"]
    onnx = out / f"{ckpt.stem}.onnx"
    assert main([*base, "--no-latency"]) == 0
    first = onnx.stat().st_mtime_ns
    capsys.readouterr()
    assert main([*base, "--latency-runs", "1"]) == 0
    err = capsys.readouterr().err
    assert f"onnx: {onnx.name} is up to date" in err, err
    assert f"onnx: measuring the 1080p latency of {onnx.name} (built with --no-latency)" in err
    assert onnx.stat().st_mtime_ns == first
    report = json.loads((out / "export_report.json").read_text())
    assert report["results"][0]["latency_ms_1080p"] > 0
    assert report["reference"]["latency_ms_1080p"] > 0


def test_the_order_of_parity_images_does_not_rebuild(ckpt, tmp_path, capsys):
    import cv2

    for i in range(2):
        cv2.imwrite(str(tmp_path / f"p{i}.png"), np.full((40, 48, 3), 60 * i, np.uint8))
    a, b = str(tmp_path / "p0.png"), str(tmp_path / "p1.png")
    base = ["export", "--weights", str(ckpt), "--out", str(tmp_path / "x"), "--no-latency",
            "--formats", "onnx", "--parity-images"]
    assert main([*base, a, b]) == 0
    capsys.readouterr()
    assert main([*base, b, a]) == 0
    err = capsys.readouterr().err
    assert f"onnx: {ckpt.stem}.onnx is up to date" in err, err
    assert main([*base, a]) == 0
    assert "changed since it was built: the parity images" in capsys.readouterr().err


def test_a_calibrator_option_rebuilds_only_the_formats_it_applies_to(ckpt, tmp_path, capsys):
    """--calib-method (onnx-int8's calibrator) rebuilt the TFLite INT8 model too, to the same
    bytes and minutes for a real student: each INT8 format's record held every format's
    calibrator options."""
    out = tmp_path / "x"
    base = ["export", "--weights", str(ckpt), "--out", str(out), "--no-latency", "--formats",
            "onnx-int8,tflite-int8", "--calib-count", "4", "--calib-size", "64",
            "--min-ssim", "0.01"]
    # (--min-ssim: a random student, whose INT8 gate is not the point here)
    assert main(base) == 0
    tfl = out / f"{ckpt.stem}_int8.tflite"
    first = tfl.stat().st_mtime_ns
    capsys.readouterr()
    assert main([*base, "--calib-method", "minmax"]) == 0
    err = capsys.readouterr().err
    assert (f"onnx-int8: rebuilding {ckpt.stem}_int8.onnx: changed since it was built: "
            "--calib-method") in err, err
    assert f"tflite-int8: {tfl.name} is up to date" in err, err
    assert tfl.stat().st_mtime_ns == first


def test_what_an_artifact_does_not_depend_on_keeps_it(ckpt, tmp_path, capsys, monkeypatch):
    """Every artifact's record held every option and library: --min-ssim (which the FP32
    gate does not read) or a TensorFlow or TensorRT upgrade rebuilt the ONNX model, --opset the
    TFLite models (built from the weights, not the ONNX model), and `--float-layers 'dec.1,
    head'` (or 'head,dec.1') the artifact that 'dec.1,head' built. What an artifact does depend on still
    rebuilds it."""
    import optimize.export as ex
    import optimize.export_reuse as reuse
    from runtime.host import library_versions

    upgraded: dict[str, str] = {}   # an upgrade, as the installed packages' metadata says
    monkeypatch.setattr(reuse, "library_versions", lambda names: {
        **library_versions(names), **{n: v for n, v in upgraded.items() if n in names}})
    out = tmp_path / "x"
    base = ["export", "--weights", str(ckpt), "--out", str(out), "--no-latency", "--formats",
            "onnx"]
    onnx = out / f"{ckpt.stem}.onnx"

    def export(*extra) -> str:
        rc = main([*base, *extra])
        err = capsys.readouterr().err
        assert rc == 0, err
        return err

    export()
    upgraded.update(tensorflow="99.0", tensorrt="99.0")
    err = export("--min-ssim", "0.5", "--min-psnr", "20")
    assert f"onnx: {onnx.name} is up to date" in err, err
    upgraded["onnx"] = "99.0"
    err = export("--min-ssim", "0.5", "--min-psnr", "20")
    assert f"onnx: rebuilding {onnx.name}: changed since it was built: library versions" in err
    err = export("--max-abs-fp32", "0.001")   # its max abs error (0) passes that too
    assert f"onnx: {onnx.name} is up to date" in err, err

    o = ex.ExportOptions(thresholds=ex.Thresholds())
    crops = np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)
    parity = [("p", np.zeros((16, 16, 3), np.float32))]

    def inputs(**changed) -> dict:
        return ex.build_inputs(["onnx", "onnx-int8", "tflite-int8", "tflite-fp16"], "w",
                               ex.replace(o, **changed), None, crops, parity, {}, {})
    before, after = inputs(), inputs(opset=18, simplify=False)
    assert [f for f in before if before[f] != after[f]] == ["onnx", "onnx-int8"]
    assert inputs(float_layers="dec.1, head") == inputs(float_layers=["dec.1", "head"])
    # Each named layer stays float with everything downstream: the set decides, not the order.
    assert inputs(float_layers="head,dec.1") == inputs(float_layers="dec.1,head")
    assert inputs(float_layers="none") == inputs()
    # the keywords in any case, as --float-layers takes them
    assert inputs(float_layers="NONE") == inputs()
    assert inputs(float_layers="Auto") == inputs(float_layers="auto")
    assert inputs(float_layers="head")["tflite-int8"] != inputs()["tflite-int8"]


def test_when_an_engine_is_stale_is_decided_without_tensorrt(tmp_path, monkeypatch):
    """What decides that a TensorRT engine is stale, on real files and without TensorRT: the
    export rebuilds it for a TensorRT upgrade (and keeps the ONNX model), another GPU or
    profile, other weights or ONNX options, a file changed since it passed (trtexec run again)
    and a missing sidecar; `sharpen run` warns about an engine whose sidecar records other
    weights than its folder's latest export."""
    import optimize.export as ex
    import optimize.export_reuse as reuse
    from distill.teacher import file_hash
    from optimize.tensorrt_engine import Profile
    from runtime.backends.base import read_sidecar
    from runtime.backends.provenance import stale_reason

    installed = {"tensorrt": "10.3.0"}
    monkeypatch.setattr(reuse, "library_versions",
                        lambda names: {n: installed.get(n, "1.0") for n in names})
    o = ex.ExportOptions(thresholds=ex.Thresholds(), latency=False)
    profile = Profile.from_hw(multiple=8)
    parity = [("p", np.zeros((16, 16, 3), np.float32))]

    def inputs(weights="w", prof=profile, **changed) -> dict:
        return ex.build_inputs(["onnx", "engine"], weights, ex.replace(o, **changed), prof,
                               None, parity, {}, {})

    engine, onnx = tmp_path / "m_fp16.engine", tmp_path / "m.onnx"
    engine.write_bytes(b"a serialised engine")
    onnx.write_bytes(b"an onnx model")
    (tmp_path / "m_fp16.engine.json").write_text(json.dumps(
        {"tensorrt_version": "10.3.0", "source_sha256": "w", "multiple": 8}))
    built = inputs()
    record = {f: {"status": "pass", "extra": {"inputs": built[f],
                                             "file_sha256": file_hash(p, n=64)}}
              for f, p in (("engine", engine), ("onnx", onnx))}

    def why(now: dict, fmt: str = "engine") -> str | None:
        return reuse._rebuild_reason(engine if fmt == "engine" else onnx, record[fmt], now[fmt], o)

    assert why(inputs()) is None and why(inputs(), "onnx") is None
    installed["tensorrt"] = "10.7.0"
    assert why(inputs()) == "changed since it was built: library versions"
    assert why(inputs(), "onnx") is None
    installed["tensorrt"] = "10.3.0"
    elsewhere = {**inputs()["engine"], "gpu": {"gpu_name": "Orin", "gpu_sms": 16}}
    assert why({"engine": elsewhere}) == "changed since it was built: the GPU"
    smaller = Profile.from_hw(opt_hw=None, max_hw=(1080, 1920), multiple=8)
    assert "the engine profile" in why(inputs(prof=smaller))
    assert "--workspace" in why(inputs(workspace_gb=2.0))
    assert "the weights" in why(inputs(weights="w2"))
    assert "--opset" in why(inputs(opset=18))
    # Stricter thresholds that its recorded numbers fail: an engine is rebuilt to measure
    # again (TensorRT picks kernels by timing: a new build may measure otherwise), saying so.
    record["engine"].update(format="engine", max_abs=0.01, ssim=0.97, psnr=40.0)
    for min_ssim, said in ((0.9, None), (0.99, "its recorded numbers fail the changed parity "
                           "thresholds (SSIM 0.9700 < 0.99); rebuilding to measure again (its "
                           "build may differ: TensorRT picks kernels by timing)")):
        th = ex.Thresholds(min_ssim=min_ssim)
        now = ex.build_inputs(["engine"], "w", ex.replace(o, thresholds=th), profile, None,
                              parity, {}, {})["engine"]
        assert reuse._rebuild_reason(engine, record["engine"], now,
                                     ex.replace(o, thresholds=th)) == said
    engine.write_bytes(b"an engine trtexec built again")
    assert why(inputs()) == "the file changed since it passed its gate"
    (tmp_path / "m_fp16.engine.json").unlink()
    assert "its sidecar m_fp16.engine.json, which the runtime needs, is missing" in why(inputs())

    (tmp_path / "m_fp16.engine.json").write_text(json.dumps({"source_sha256": "w" * 12}))
    (tmp_path / "export_report.json").write_text(json.dumps(
        {"weights": "new.pt", "settings": {"stem": "m", "weights_sha256": "v" * 12},
         "results": [{"format": "onnx", "file": str(onnx)}]}))
    said = stale_reason(engine, read_sidecar(engine)["source_sha256"])
    assert said and "was exported from other weights (wwwwwwwwwwww)" in said and "new.pt" in said
    assert stale_reason(engine, "v" * 12) is None
    # Built from the printed trtexec line before sidecars carried the weights: not in the
    # report, which cannot list it, and not said to be stale.
    assert stale_reason(engine, None) is None


def test_a_pending_sidecar_over_an_engine_of_another_build_refuses_the_old_engine(tmp_path):
    """`sharpen export --formats engine` without TensorRT, with an engine of other weights (or
    another student or profile) in --out, kept that engine's sidecar: the engine its printed
    trtexec line then built was described by the old sidecar (other weights, so `sharpen run`
    called the fresh engine stale; the old size multiple; the old TensorRT version). The
    sidecar now describes the new engine and names the old one, which the runtime refuses
    until the line has replaced it; an engine of the same build keeps its sidecar."""
    from optimize.tensorrt_engine import Profile, engine_meta, write_pending_sidecar
    from runtime import SharpenWarning
    from runtime.backends.base import read_sidecar
    from runtime.backends.tensorrt_backend import replaced_problem

    engine, onnx = tmp_path / "m_fp16.engine", tmp_path / "m.onnx"
    engine.write_bytes(b"an engine of weights a")
    fast = Profile.from_hw(multiple=8)
    built = {"tensorrt_version": "10.3.0", "gpu_name": "Orin", "student": "fast",
             "source_sha256": "a", **engine_meta(onnx, fast, "fp16", 8, 4.0)}
    (tmp_path / "m_fp16.engine.json").write_text(json.dumps(built))
    write_pending_sidecar(onnx, engine, fast, "fp16", 8, 4.0,
                          {"student": "fast", "source_sha256": "a"})
    assert read_sidecar(engine) == built
    assert replaced_problem(built, engine.read_bytes(), engine) is None
    with pytest.warns(SharpenWarning, match=r"m_fp16.engine is of another build \(weights, "
                                            r"student, profile, size multiple differ\)"):
        write_pending_sidecar(onnx, engine, Profile.from_hw(multiple=32), "fp16", 32, 4.0,
                              {"student": "edge", "source_sha256": "b"})
    meta = read_sidecar(engine)
    assert meta["multiple"] == 32 and meta["source_sha256"] == "b"
    assert "tensorrt_version" not in meta   # the new engine is built by another TensorRT
    why = replaced_problem(meta, engine.read_bytes(), engine)
    assert why and "is the engine of an earlier export" in why and "run that line" in why
    engine.write_bytes(b"the engine trtexec built from weights b")
    assert replaced_problem(meta, engine.read_bytes(), engine) is None


def test_changed_thresholds_rejudge_the_recorded_numbers_instead_of_rebuilding(
        ckpt, tmp_path, capsys):
    """A stricter or looser --min-ssim / --min-psnr rebuilt every INT8 and FP16 artifact
    (minutes for TFLite) to measure the same numbers again. An artifact whose recorded
    worst-image numbers pass the new thresholds is kept; one they fail was rebuilt to fail
    the same way ('changed since it was built: the parity thresholds'): its build measures
    the same every time, so it fails on those numbers, marked failed as a failed build is."""
    out = tmp_path / "x"
    base = ["export", "--weights", str(ckpt), "--out", str(out), "--no-latency", "--formats",
            "onnx-int8", "--calib-count", "4", "--calib-size", "64", "--min-ssim", "0.01"]
    assert main(base) == 0
    capsys.readouterr()
    res = json.loads((out / "export_report.json").read_text())["results"][0]
    psnr = float(res["psnr"])
    name = f"{ckpt.stem}_int8.onnx"
    assert main([*base, "--min-psnr", f"{psnr - 1:.3f}"]) == 0
    err = capsys.readouterr().err
    assert f"onnx-int8: {name} is up to date" in err, err
    report = json.loads((out / "export_report.json").read_text())
    assert report["results"][0]["extra"]["inputs"]["thresholds"]["min_psnr"] == \
        pytest.approx(psnr - 1, abs=1e-3)   # recorded as judged
    assert main([*base, "--min-psnr", f"{psnr + 1:.3f}"]) == 1
    cap = capsys.readouterr()
    assert (f"onnx-int8: {name} is not rebuilt: built again from the same weights, calibration "
            "and options it measures the same, and its recorded numbers fail the changed "
            "parity thresholds") in cap.err, cap.err
    assert f"(PSNR {psnr:.2f} < {psnr + 1:.3f} dB)" in cap.err, cap.err
    assert "rebuilding" not in cap.err and "[1/1] onnx-int8" not in cap.err, cap.err
    res = json.loads((out / "export_report.json").read_text())["results"][0]
    assert res["status"] == "fail" and res["psnr"] == pytest.approx(psnr)
    from runtime.backends import failed_marker, parity_failure
    assert failed_marker(out / name).is_file()   # `sharpen run` refuses it unless forced
    assert "PSNR" in (parity_failure(out / name) or "")
    assert main(base) == 0   # the thresholds it passed: built again, and passes
    assert f"onnx-int8: rebuilding {name}: its last build failed its gate" in \
        capsys.readouterr().err
    assert not failed_marker(out / name).exists()


def test_best_pt_named_from_inside_its_run_folder_keeps_the_runs_name(tmp_path, monkeypatch):
    """`sharpen export --weights best.pt` from inside runs/a named the artifacts best.*, and the
    same export spelled runs/a/best.pt built a second set, a-best.*."""
    from distill.checkpoint import run_stem as default_stem   # export's artifact stem

    (tmp_path / "a").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    assert default_stem(Path("best.pt")) == default_stem(tmp_path / "a" / "best.pt") == "a-best"
    (tmp_path / "latest").symlink_to(tmp_path / "a")   # a link's own name, as given
    assert default_stem(tmp_path / "latest" / "last.pt") == "latest-last"


def test_a_passing_export_does_not_say_its_artifacts_failed_their_gate(ckpt, tmp_path, capsys):
    """The gate loads each fresh artifact (marked unchecked until judged) past that mark, and
    the runtime's "failed its parity gate ... running it anyway (forced)" warning came with
    every export, --quiet too, of artifacts that then passed."""
    assert main(["export", "--weights", str(ckpt), "--formats", "onnx", "--out", str(tmp_path),
                 "--no-latency", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "parity gate" not in err and "forced" not in err, err


def test_a_calibration_that_fails_closes_its_progress_bars_stderr(ckpt, tmp_path, monkeypatch):
    """The calibration bar writes to a duplicate of fd 2, closed by the bar's last update: an
    INT8 build that failed before that (a calibrator error, Ctrl-C) left it open, found only
    by the garbage collector ('ResourceWarning: unclosed file <... name=6 ...>'), once per
    failed build of a float-layers search or a bench."""
    import gc
    import sys
    import warnings

    import optimize.onnx_int8 as oi
    from optimize.export import Progress, export

    def fails_midway(*args, on_batch=None, **kw):   # as a calibrator error after one crop
        on_batch(1, 4)
        raise RuntimeError("calibration failed")

    monkeypatch.setattr(oi, "quantize_onnx_int8", fails_midway)
    with open(2, "w", closefd=False) as fd2, warnings.catch_warnings(record=True) as said:
        monkeypatch.setattr(sys, "stderr", fd2)   # a user's stderr: fd 2, so the bar dups it
        warnings.simplefilter("always")
        with Progress(quiet=False).bar("ORT calibration") as bar:
            bar(1, 4)
        assert bar.out.closed   # left before its last update
        report = export(ckpt, "onnx-int8", tmp_path / "x", latency=False, calib_count=4,
                        calib_size=64, progress=Progress(quiet=False))
        gc.collect()
        monkeypatch.setattr(sys, "stderr", sys.__stderr__)
    assert report.result("onnx-int8").status == "error"
    assert "calibration failed" in report.result("onnx-int8").reason
    unclosed = [str(w.message) for w in said if issubclass(w.category, ResourceWarning)]
    assert not unclosed, unclosed


def test_a_portrait_engine_shape_is_said_as_height_by_width(ckpt, tmp_path, capsys):
    """`--opt-shape` takes HEIGHTxWIDTH (TensorRT's NCHW order), `sharpen bench --sizes` and
    every frame size said elsewhere WIDTHxHEIGHT: `--opt-shape 1920x1080`, meant as full HD,
    silently tuned the engine (and the printed trtexec line) for a portrait frame."""
    base = ["export", "--weights", str(ckpt), "--format", "engine", "--no-latency", "--quiet"]
    engine_here = not _trt_reason()
    assert main([*base, "--out", str(tmp_path / "a"), "--opt-shape", "1920x1080"]) == \
        (0 if engine_here else 1)
    err = capsys.readouterr().err
    assert "warning: --opt-shape 1920x1080 is HEIGHTxWIDTH" in err and "1080x1920" in err
    assert main([*base, "--out", str(tmp_path / "b"), "--opt-shape", "720x1280"]) == \
        (0 if engine_here else 1)
    assert "HEIGHTxWIDTH" not in capsys.readouterr().err


def test_a_folder_with_images_only_below_it_says_what_to_pass(tmp_path):
    """`export --calib footage/` (stills in day1/) or `--calib CACHE/frames` (one subfolder
    per clip) said only 'no images in folder', though the images were a level down."""
    import cv2

    from optimize.calibration import CalibrationError, resolve_paths

    footage = tmp_path / "footage"
    (footage / "day1").mkdir(parents=True)
    for name in ("a", "b"):
        cv2.imwrite(str(footage / "day1" / f"{name}.png"), np.full((24, 32, 3), 90, np.uint8))
    with pytest.raises(CalibrationError) as e:
        resolve_paths(footage)
    msg = str(e.value)
    assert f"no images or clips in folder {footage}" in msg
    assert "subfolders hold 2 image files" in msg and f"'{footage / '**' / '*'}'" in msg
    # ... and the glob it suggests finds them
    assert [p.name for p in resolve_paths(str(footage / "**" / "*"))] == ["a.png", "b.png"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CalibrationError, match=r"no images or clips in folder .*empty$"):
        resolve_paths(empty)


def test_a_label_cache_as_calibration_folder_points_at_its_frames_not_its_labels(tmp_path):
    """`--calib runs/labels/foot` was told to pass 'runs/labels/foot/**/*', which takes the
    teacher's sharp outputs in labels/ as the student's blurred inputs."""
    import cv2

    from optimize.calibration import CalibrationError, resolve_paths

    cache = tmp_path / "cache"
    for sub in ("labels", "frames"):
        (cache / sub).mkdir(parents=True)
        cv2.imwrite(str(cache / sub / "walk_000000.png"), np.full((24, 32, 3), 90, np.uint8))
    (cache / "manifest.json").write_text('{"format": "sharpen-labels/1", "entries": {}}')
    with pytest.raises(CalibrationError) as e:
        resolve_paths(cache)
    msg = str(e.value)
    assert "label cache" in msg and f"'{cache / 'frames' / '**' / '*'}'" in msg, msg
    assert f"'{cache / '**' / '*'}'" not in msg, msg


def test_an_artifact_left_unchecked_is_rebuilt_saying_so(tmp_path):
    """An export stopped while it replaced an artifact leaves it marked unchecked and its
    record without the inputs; the next export said "no record of what it was built from
    (its export report is gone...)", though the report was there."""
    import optimize.export as ex
    import optimize.export_reuse as reuse
    from runtime.backends import failed_marker

    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"an onnx model")
    o = ex.ExportOptions(thresholds=ex.Thresholds(), latency=False)
    prev = {"format": "onnx", "status": "pass", "extra": {}}
    failed_marker(onnx).write_text(json.dumps({"format": "onnx", "status": "unchecked"}))
    assert "stopped before its gate judged it" in reuse._rebuild_reason(onnx, prev, {}, o)
    failed_marker(onnx).unlink()
    assert "no record of what it was built from" in reuse._rebuild_reason(onnx, prev, {}, o)
    failed_marker(onnx).write_text(json.dumps({"status": "fail", "reason": "worst SSIM 0.9"}))
    prev["extra"]["inputs"] = {}
    assert reuse._rebuild_reason(onnx, prev, {}, o) == \
        "it is marked as failed (m.onnx.parity-failed.json: worst SSIM 0.9)"


def _parses(line: str) -> argparse.Namespace:
    """The parsed `sharpen ...` command at the end of a next-step line."""
    words = shlex.split(line[line.index("sharpen "):])
    return build_parser().parse_args(words[1:])


def test_an_export_ends_with_the_run_command_of_what_it_built(ckpt, tmp_path, capsys):
    """Export ended with its table and report: the user had to work out which file of the
    folder `sharpen run --model` takes, as `labels` and `distill` say their next command."""
    out = tmp_path / "export"
    assert main(["export", "--weights", str(ckpt), "--formats", "onnx", "--out", str(out),
                 "--no-latency"]) == 0
    said = capsys.readouterr().out.splitlines()
    run = next(ln for ln in said if ln.startswith("run it"))
    assert run == (f"run it: sharpen run --model {out / 'student.onnx'} --source "
                   "VIDEO_OR_CAMERA"), said
    args = _parses(run)
    assert args.command == "run" and Path(args.model).is_file()
    assert said.index(run) > next(i for i, ln in enumerate(said) if ln.startswith("report: "))
    bench = _parses(next(ln for ln in said if ln.startswith("measure it as deployed")))
    assert bench.command == "bench" and bench.models == [str(out / "student.onnx")], said
    # --quiet: the table, the report and errors only.
    assert main(["export", "--weights", str(ckpt), "--formats", "onnx", "--out", str(out),
                 "--no-latency", "--quiet"]) == 0
    assert "sharpen run" not in capsys.readouterr().out


def test_the_next_commands_carry_the_exports_threads(ckpt, tmp_path, capsys):
    """An export with --threads 1 (a shared machine's) ended by telling the user to run and
    bench the artifact without it: on all cores, as the export did not. Now both lines carry
    it, as distill's compare line carries the run's options; without --threads, neither."""
    out = tmp_path / "export"
    assert main(["export", "--weights", str(ckpt), "--formats", "onnx", "--out", str(out),
                 "--no-latency", "--threads", "1"]) == 0
    said = capsys.readouterr().out.splitlines()
    for start, command in (("run it", "run"), ("measure it as deployed", "bench")):
        args = _parses(next(ln for ln in said if ln.startswith(start)))
        assert args.command == command and args.threads == 1, said
    assert main(["export", "--weights", str(ckpt), "--formats", "onnx", "--out", str(out),
                 "--no-latency"]) == 0
    said = capsys.readouterr().out.splitlines()
    assert not [ln for ln in said if ln.startswith(("run it", "measure it")) and "--threads" in ln]


def test_the_run_command_takes_the_fastest_artifact_that_passed(tmp_path):
    """Of several artifacts, the one measured fastest at 1080p (all passed the parity gate);
    without timings the first built. Failed ones and an earlier export's rows are not offered."""
    from optimize.commands import next_steps
    from optimize.export import ExportReport, FormatResult

    files = {}
    for name in ("m.onnx", "m_int8.onnx", "m_int8.tflite", "old.onnx"):
        files[name] = tmp_path / name
        files[name].write_bytes(b"x")

    def report(*results):
        return ExportReport("m.pt", "fast", str(tmp_path), list(results), {}, {})

    onnx = FormatResult("onnx", "pass", str(files["m.onnx"]), latency_ms_1080p=210.0)
    int8 = FormatResult("onnx-int8", "pass", str(files["m_int8.onnx"]), latency_ms_1080p=95.0)
    bad = FormatResult("tflite-int8", "fail", str(files["m_int8.tflite"]), latency_ms_1080p=60.)
    old = FormatResult("onnx", "pass", str(files["old.onnx"]), latency_ms_1080p=1.0,
                       extra={"earlier_export": True})
    lines = next_steps(report(onnx, int8, bad, old))
    assert lines[0] == (f"run it (m_int8.onnx, the fastest here: 95 ms at 1080p): sharpen run "
                        f"--model {files['m_int8.onnx']} --source VIDEO_OR_CAMERA"), lines
    for line in lines:
        assert _parses(line).command in ("run", "bench"), line
    untimed = [FormatResult(r.format, "pass", r.file) for r in (onnx, int8)]
    assert next_steps(report(*untimed))[0].startswith(
        f"run it (m.onnx, the first built): sharpen run --model {files['m.onnx']} ")
    assert next_steps(report(bad, old)) == []


def test_the_run_command_offers_the_qdq_model_only_where_tensorrt_or_cuda_runs_it(tmp_path):
    """The ModelOpt QDQ model (onnx-qdq-trt) is for TensorRT: timed on ONNX Runtime's CPU it
    came out fastest and a CPU user was told to run it. Here (no GPU provider) the fastest of
    the ONNX Runtime and TFLite artifacts that passed is offered; with TensorRT or CUDA, it."""
    import onnxruntime as ort

    from optimize.commands import next_steps
    from optimize.export import ExportReport, FormatResult

    files = {}
    for name in ("m.onnx", "m_qdq_trt.onnx", "m_int8.tflite"):
        files[name] = tmp_path / name
        files[name].write_bytes(b"x")

    def report(*results):
        return ExportReport("m.pt", "fast", str(tmp_path), list(results), {}, {})

    onnx = FormatResult("onnx", "pass", str(files["m.onnx"]), latency_ms_1080p=210.0)
    qdq = FormatResult("onnx-qdq-trt", "pass", str(files["m_qdq_trt.onnx"]),
                       latency_ms_1080p=80.0)
    tfl = FormatResult("tflite-int8", "pass", str(files["m_int8.tflite"]),
                       latency_ms_1080p=120.0)
    gpu = {"TensorrtExecutionProvider", "CUDAExecutionProvider"} & \
        set(ort.get_available_providers())
    # Without the argument, this machine is asked: its ONNX Runtime's providers decide.
    cpu = next_steps(report(onnx, qdq, tfl)) if not gpu else \
        next_steps(report(onnx, qdq, tfl), gpu_here=False)
    assert cpu[0] == (f"run it (m_int8.tflite, the fastest here: 120 ms at 1080p): sharpen run "
                      f"--model {files['m_int8.tflite']} --source VIDEO_OR_CAMERA"), cpu
    assert all("qdq" not in line for line in cpu), cpu
    assert next_steps(report(onnx, qdq, tfl), gpu_here=True)[0].startswith(
        f"run it (m_qdq_trt.onnx, the fastest here: 80 ms at 1080p): sharpen run --model "
        f"{files['m_qdq_trt.onnx']} ")
    # Untimed: the first built that suits, not the QDQ model listed first.
    untimed = [FormatResult(r.format, "pass", r.file) for r in (qdq, onnx)]
    assert next_steps(report(*untimed), gpu_here=False)[0].startswith(
        f"run it: sharpen run --model {files['m.onnx']} ")
    # The QDQ model alone on a CPU machine: no command to run it, but where it runs.
    only = next_steps(report(qdq), gpu_here=False)
    assert len(only) == 1 and "sharpen run" not in only[0], only
    assert "m_qdq_trt.onnx: for TensorRT" in only[0] and "engine-int8" in only[0], only
    assert next_steps(report(onnx, qdq, tfl)) == \
        next_steps(report(onnx, qdq, tfl), gpu_here=bool(gpu))


def test_more_threads_than_cores_is_warned_of_once_naming_where_the_count_came_from(
        ckpt, tmp_path, capsys, monkeypatch):
    """`sharpen run` and `sharpen bench` warned when --threads or OMP_NUM_THREADS asks for more
    threads than this process's cores; export, whose parity checks and 1080p latencies run on
    that count too, did not."""
    import os

    cores = len(os.sched_getaffinity(0))
    argv = ["export", "--weights", str(ckpt), "--formats", "onnx", "--out",
            str(tmp_path / "out"), "--no-latency", "--quiet"]
    monkeypatch.setenv("OMP_NUM_THREADS", str(cores + 1))
    rc, err = _run(argv, capsys)
    assert rc == 0, err
    assert err.count("CPU cores") == 1, err
    assert (f"warning: OMP_NUM_THREADS={cores + 1} (the thread count when --threads is not "
            f"given) is more than the {cores} CPU cores this process may use") in err, err
    rc, err = _run([*argv, "--threads", str(cores + 2)], capsys)
    assert rc == 0 and err.count("CPU cores") == 1, err
    assert f"warning: --threads {cores + 2} is more than the {cores} CPU cores" in err, err
    rc, err = _run([*argv, "--threads", "1"], capsys)   # --threads wins over the variable
    assert rc == 0 and "CPU cores" not in err, err
    rc, err = _run([*argv, "--threads", "-1"], capsys)   # a bad count: its error, no warning
    assert rc == 2 and "CPU cores" not in err, err


def test_a_calib_folder_with_no_readable_image_is_named_as_given(ckpt, tmp_path, capsys):
    """`--calib DIR` whose images are all unreadable said "--calib ['DIR']: none of its 3
    images is readable": the option's list, as Python prints it."""
    d = tmp_path / "calib"
    d.mkdir()
    for i in range(3):
        (d / f"a{i}.png").write_bytes(b"not an image")
    rc, err = _run(["export", "--weights", str(ckpt), "--format", "onnx", "--out",
                    str(tmp_path / "out"), "--calib", str(d)], capsys)
    assert rc == 2 and f"--calib {d}: none of its 3 images is readable" in err, err


def test_a_calib_folder_readable_only_in_its_held_out_image_is_named(ckpt, tmp_path, capsys):
    """`--calib DIR` whose one readable image is the one held out for parity, the rest corrupt,
    said "--calib: no calibration images: none of the 4 files is a readable image": neither
    the folder nor why its readable image was not among them."""
    import cv2

    d = tmp_path / "calib"
    d.mkdir()
    for i in range(4):
        (d / f"a{i}.png").write_bytes(b"not an image")
    cv2.imwrite(str(d / "z.png"), np.full((64, 96, 3), 90, np.uint8))
    rc, err = _run(["export", "--weights", str(ckpt), "--format", "onnx-int8", "--out",
                    str(tmp_path / "out"), "--calib", str(d), "--calib-count", "2",
                    "--no-latency"], capsys)
    assert rc == 2, err
    line = _one_line_error(err)
    assert (f"--calib {d}: no calibration images: none of the 4 files is a readable image "
            "(besides the 1 image held out for parity)") in line, line


def test_an_export_into_a_folder_another_export_is_writing_is_refused(ckpt, tmp_path, capsys):
    """Two `sharpen export` into one --out at once (two terminals, a cron job) each marked,
    replaced and gated the other's artifacts and rewrote one export_report.json: a report could
    vouch for the file the other run built with its own options (its hash recorded as gated), a
    marker for the other's verdict. The second is refused before it writes anything, naming
    the first."""
    import os

    from distill.run_lock import run_lock

    out = tmp_path / "export"
    out.mkdir()
    (out / "student.onnx").write_bytes(b"the other export's model, being written")
    argv = ["export", "--weights", str(ckpt), "--format", "onnx", "--out", str(out),
            "--no-latency", "--quiet"]
    with run_lock(out, doing="exporting", flag="--out", name=".export.lock"):   # another export
        rc, err = _run(argv, capsys)
    assert rc == 2
    assert (f"another run is exporting into {out} (process {os.getpid()}); wait for it to "
            "finish or stop it, or give this run another --out") in _one_line_error(err)
    assert sorted(p.name for p in out.iterdir()) == ["student.onnx"]   # no marker, no report
    assert (out / "student.onnx").read_bytes() == b"the other export's model, being written"
    # Once it has ended the same command runs, also beside a training run in the folder
    # (its best.pt exported where it trains), which writes none of the export's files.
    with run_lock(out, doing="training"):
        rc, err = _run(argv, capsys)
    assert rc == 0, err
    assert json.loads((out / "export_report.json").read_text())["ok"] is True
    assert not (out / ".export.lock").exists()


def test_an_export_onto_a_filesystem_without_locks_runs_unlocked_with_a_warning(
        ckpt, tmp_path, capsys, no_flock):
    """flock fails with ENOLCK or EOPNOTSUPP on some NFS, SMB and FUSE mounts: the export,
    which ran there before it took a lock of its own, ended in a traceback from the lock and
    left its --out holding an empty .export.lock. The lock only keeps two exports apart."""
    out = tmp_path / "nfs" / "export"
    rc, err = _run(["export", "--weights", str(ckpt), "--format", "onnx", "--out", str(out),
                    "--no-latency", "--quiet"], capsys)
    assert rc == 0, err
    assert (f"cannot lock {out / '.export.lock'} (No locks available): exporting unlocked; "
            f"no other run may be exporting into {out} at the same time") in err, err
    assert sorted(p.name for p in out.iterdir()) == ["export_report.json", "student.onnx"]


def test_a_hang_up_mid_export_keeps_the_finished_formats_and_says_so(ckpt, tmp_path):
    """A dropped SSH connection (SIGHUP) killed the export mid-format with no word and no exit
    code of ours; it now stops as on SIGTERM: the report holds the formats finished, marked
    interrupted, and the command says so and exits 129."""
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "x"
    cmd = [sys.executable, "-m", "sharpen.cli", "export", "--weights", str(ckpt), "--out",
           str(out), "--no-latency", "--name", "m", "--formats", "onnx,onnx-int8,tflite-fp16",
           "--calib-count", "4", "--calib-size", "64", "--min-ssim", "0.5"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    said = []
    try:
        for line in proc.stdout:
            said.append(line)
            if line.startswith("[3/3]"):   # the TFLite conversion: seconds
                proc.send_signal(signal.SIGHUP)
                break
        said.append(proc.communicate(timeout=120)[0])
    finally:
        if proc.poll() is None:
            proc.kill()
    said = "".join(said)
    if proc.returncode == 0:
        pytest.skip("the export finished before the signal landed")
    assert proc.returncode == 128 + signal.SIGHUP and "Traceback" not in said, said
    assert said.strip().splitlines()[-1] == ("sharpen export: interrupted (SIGHUP); what is "
                                             "done is kept: run the same command to continue")
    rep = json.loads((out / "export_report.json").read_text())
    assert rep["ok"] is False and rep["settings"]["interrupted"] is True, rep["settings"]
    assert [r["format"] for r in rep["results"]] == ["onnx", "onnx-int8"]


def test_a_killed_exports_temp_folders_are_removed_by_the_next_export(ckpt, tmp_path):
    """A SIGKILLed export (the OOM killer, a preempted job) left its scratch folder, and the
    converters' own (TensorFlow's SavedModel), in the system temp folder, one set a kill, which
    no later run removed. They are made inside --out now, where the next export removes a
    killed one's, and an export that ends leaves none."""
    import os
    import signal
    import subprocess
    import sys
    import time

    systmp, out = tmp_path / "systmp", tmp_path / "x"
    systmp.mkdir()
    env = {**os.environ, "TMPDIR": str(systmp)}
    argv = [sys.executable, "-m", "sharpen", "export", "--weights", str(ckpt), "--out", str(out),
            "--formats", "onnx,onnx-int8", "--no-latency", "--calib-count", "4",
            "--calib-size", "64", "--min-ssim", "0.5", "--quiet"]
    run = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (out / "student.onnx").exists() and run.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        assert run.poll() is None, "the export ended before the test killed it"
        run.send_signal(signal.SIGKILL)
        run.wait(10)
    finally:
        run.kill()
    left = [p for p in [*systmp.iterdir(), *out.iterdir()] if p.is_dir()]
    assert left, "the killed export left no scratch folder: nothing to test"
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert not any(p.exists() for p in left)
    # (files a library keeps there, as a 51-byte .ses, are not this package's)
    assert [p for p in [*systmp.iterdir(), *out.iterdir()] if p.is_dir()] == []


def test_fewer_crops_than_calibration_frames_come_from_across_them(ckpt, tmp_path, capsys):
    """16 crops of a folder of 48 time-ordered frames came from the first 16 (the first two of
    six clips), every one of the 48 read into memory, and the export said "from 48 images":
    the crops now come from frames spread over the folder, only those are read, and the
    console and the report say which."""
    from distill.images import write_image
    from optimize.calibration import random_crops

    images = [(f"f{i}", np.full((40, 48, 3), i / 10, np.float32)) for i in range(10)]
    crops = random_crops(images, 3, 32, seed=0)
    assert sorted(float(c[0, 0, 0]) for c in crops) == pytest.approx([0.0, 0.4, 0.9])
    calib = tmp_path / "frames"
    calib.mkdir()
    for i in range(10):   # p08 and p09, the last fifth, are held out for parity
        write_image(calib / f"p{i:02d}.png", np.full((40, 48, 3), i / 10, np.float32))
    rc, err = _run(["export", "--weights", str(ckpt), "--format", "onnx-int8", "--out",
                    str(tmp_path / "o"), "--no-latency", "--calib", str(calib),
                    "--calib-count", "2", "--calib-size", "32", "--min-ssim", "0.01"], capsys)
    assert rc == 0, err
    assert "calibration: 2 crops of 32x32 from 2 of 8 images, spread over them (--calib)" in err
    settings = json.loads((tmp_path / "o" / "export_report.json").read_text())["settings"]
    assert settings["calib_images"] == ["p00", "p07"]
    assert settings["calibration"]["files"] == 8 and settings["calibration"]["images"] == 2
    # An unreadable pick (p04 of p00, p04, p07) gave its place to p01, beside p00: now to the
    # frame farthest from the others picked.
    (calib / "p04.png").write_bytes(b"not a png")
    rc, err = _run(["export", "--weights", str(ckpt), "--format", "onnx-int8", "--out",
                    str(tmp_path / "o3"), "--no-latency", "--calib", str(calib),
                    "--calib-count", "3", "--calib-size", "32", "--min-ssim", "0.01"], capsys)
    assert rc == 0 and "skipped: " in err and "p04.png" in err, err
    settings = json.loads((tmp_path / "o3" / "export_report.json").read_text())["settings"]
    assert settings["calib_images"] == ["p00", "p07", "p02"]


def test_onnx_int8_calibrated_on_dark_frames_still_takes_pixels_up_to_white(ckpt, tmp_path):
    """onnx-int8 calibrated on night frames (brightest pixel 0.30) set its input's range from
    them: every brighter pixel clipped to 0.30, SSIM 0.745 to FP32 on daylight HIDE frames.
    The input (a frame) and the output (the delivered image, clipped) now span [0, 1]."""
    import onnx
    from onnx import numpy_helper

    from distill.images import write_image

    calib = tmp_path / "night"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        write_image(calib / f"n{i}.png", (rng.random((48, 64, 3)) * 0.3).astype(np.float32))
    assert main(["export", "--weights", str(ckpt), "--format", "onnx-int8", "--out",
                 str(tmp_path / "o"), "--no-latency", "--quiet", "--calib", str(calib),
                 "--calib-count", "4", "--calib-size", "32", "--min-ssim", "0.01"]) == 0
    model = onnx.load(str(tmp_path / "o" / "student.onnx").replace(".onnx", "_int8.onnx"))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    spans = {}
    for node in model.graph.node:
        if (node.op_type == "QuantizeLinear" and node.input[0] == "input") or (
                node.op_type == "DequantizeLinear" and node.output[0] == "output"):
            scale, zero = float(inits[node.input[1]]), int(inits[node.input[2]])
            spans[node.op_type] = (-zero * scale, (255 - zero) * scale)
    assert spans["QuantizeLinear"] == pytest.approx((0.0, 1.0))
    assert spans["DequantizeLinear"] == pytest.approx((0.0, 1.0))


def test_onnx_qdq_trt_calibrated_on_dark_frames_keeps_its_input_and_output_in_float(ckpt,
                                                                                   tmp_path):
    """onnx-qdq-trt needs no [0, 1] pin as onnx-int8 and tflite-int8 have: ModelOpt quantises
    neither the input nor the output (the residual sum is float), so calibrated on night crops
    (brightest 0.30) a white frame still comes out white. Only the first convolution's input
    takes the crops' range, which the export warns of; pinned too, that lowered parity
    (README: Calibrating on your camera's footage)."""
    import onnx
    import onnxruntime as ort

    from optimize.modelopt_qdq import availability, quantize_qdq_trt

    if availability():
        pytest.skip(availability())
    assert main(["export", "--weights", str(ckpt), "--format", "onnx", "--out",
                 str(tmp_path / "o"), "--no-latency", "--quiet"]) == 0
    fp32 = tmp_path / "o" / "student.onnx"
    rng = np.random.default_rng(0)
    crops = (rng.random((4, 3, 32, 32)) * 0.3).astype(np.float32)
    qdq = quantize_qdq_trt(fp32, tmp_path / "q.onnx", crops, threads=1)
    model = onnx.load(str(qdq))
    for node in model.graph.node:
        assert not (node.op_type == "QuantizeLinear" and node.input[0] == "input"), node
        assert not (node.op_type == "DequantizeLinear" and node.output[0] == "output"), node
    white = np.full((1, 3, 32, 32), 0.95, np.float32)
    runs = [ort.InferenceSession(str(f), providers=["CPUExecutionProvider"]).run(
        None, {"input": white})[0] for f in (qdq, fp32)]
    assert float(runs[0].mean()) == pytest.approx(float(runs[1].mean()), abs=0.05)
    assert float(runs[0].mean()) > 0.8


def test_parity_images_unlike_the_calibration_crops_are_warned_about(ckpt, tmp_path, capsys):
    """Calibrated on night frames and judged on daylight ones (or the other way round), the
    gate's verdict said nothing of the camera's frames, and the export printed only "16 crops
    of 128x128": it now says how bright the crops and the parity images are, and warns when
    they are far apart, or when the crops are so dark that a format whose input range they
    set clips brighter pixels."""
    from distill.images import write_image
    from optimize.export_data import _Data, say_calibration_look
    from optimize.export_progress import Progress
    from runtime.warn import SharpenWarning

    rng = np.random.default_rng(0)
    night, day = tmp_path / "night", tmp_path / "day"
    for folder, lo, hi in ((night, 0.0, 0.3), (day, 0.4, 1.0)):
        folder.mkdir()
        for i in range(5):
            write_image(folder / f"{folder.name}{i}.png",
                        (lo + rng.random((48, 64, 3)) * (hi - lo)).astype(np.float32))
    base = ["export", "--weights", str(ckpt), "--format", "onnx-int8", "--no-latency",
            "--calib", str(night), "--calib-count", "4", "--calib-size", "32", "--min-ssim",
            "0.01"]
    for parity, unlike in ((day, True), (night / "night4.png", False)):
        rc, err = _run([*base, "--out", str(tmp_path / f"o-{unlike}"), "--parity-images",
                        str(parity)], capsys)
        assert rc == 0, err
        assert "calibration crops: brightness 0.1" in err and "parity images (--parity-" \
            "images): brightness " in err, err
        said = [ln for ln in err.splitlines() if "look unlike" in ln]
        assert len(said) == unlike, err
        # onnx-int8's "input" spans [0, 1], yet its first convolution reads the crops' range
        assert "brightest pixel is 0.30: onnx-int8 takes its first layer's input range" in err
    crops = (rng.random((2, 3, 32, 32)) * 0.3).astype(np.float32)
    data = _Data([("d", np.full((40, 48, 3), 0.7, np.float32))], crops, ["n0"])
    with pytest.warns(SharpenWarning) as got:
        say_calibration_look(data, ["onnx-int8", "tflite-int8", "onnx-qdq-trt"], Progress(True),
                             flags=True)
    messages = [str(w.message) for w in got]
    assert any(m.startswith("the parity images look unlike the calibration crops (median "
                            "brightness 0.70 against 0.15)") for m in messages), messages
    # tflite-int8's input and the pixel-unshuffle after it span [0, 1] whatever the crops
    assert any("is 0.30: onnx-int8, onnx-qdq-trt take their first layer's input range from "
               "the crops, so brighter pixels" in m for m in messages), messages


def test_calib_of_a_paired_label_cache_frames_says_where_its_images_are(tmp_path):
    """`--calib runs/lab/frames` (as the README's footage line) of a cache labelled from a
    corpus said only 'no such file or folder': such a cache keeps no frames/, its inputs
    are the corpus's."""
    from distill.data.label_cache import MANIFEST, MANIFEST_FORMAT
    from optimize.calibration import CalibrationError, resolve_paths

    corpus, cache = tmp_path / "corpus", tmp_path / "lab"
    for side in ("input", "target"):
        (corpus / "train" / side).mkdir(parents=True)
    cache.mkdir()
    (cache / MANIFEST).write_text(json.dumps({"format": MANIFEST_FORMAT, "entries": {}}))
    (cache / "run.json").write_text(json.dumps({"data": str(corpus), "split": "train"}))
    with pytest.raises(CalibrationError, match=r"no such file or folder: .*frames: .*keeps "
                       r"frames/ only of footage .*" + re.escape(str(corpus / "train" / "input"))):
        resolve_paths(cache / "frames")


def test_a_full_disk_is_one_line_naming_the_report_it_could_not_write(tmp_path, ckpt):
    """With the disk full, the model's own write failed into the report's table, but the
    report's then ended the export in a traceback through atomic.py. A file size limit
    (ulimit -f) in a child stands in for the full disk: the same writes fail."""
    from child_fixtures import main_with_file_limit
    out = tmp_path / "out"
    said = main_with_file_limit(["export", "--weights", str(ckpt), "--format", "onnx", "--out",
                                 str(out), "--no-latency", "--threads", "1", "--quiet"], 2000)
    assert "error" not in said and said.get("rc") == 2, said
    assert said["err"].strip().splitlines()[-1] == (
        f"sharpen export: error: {out / 'export_report.json'}: File too large (the limit "
        "on one file's size, ulimit -f or a FAT32 disk's 4 GiB, not the disk's space); what "
        "is done is kept: raise it or write elsewhere, and run the same command to continue"
    ), said["err"]
    assert not out.exists() or not list(out.iterdir()), list(out.iterdir())


def test_a_model_the_disk_has_no_room_for_stops_the_export_and_its_rerun_goes_on(tmp_path,
                                                                                ckpt):
    """A full disk as the ONNX model was written (a file size limit stands in, under the model's
    size and over the report's) made a failed row of the format, and of every format built from
    it, each "build failed: OSError: [Errno 27] File too large", and exit 1, the export's verdict
    of a failed parity check. It stops at the file now, one line naming it, exit 2."""
    from child_fixtures import main_with_file_limit
    out = tmp_path / "out"
    argv = ["export", "--weights", str(ckpt), "--format", "onnx,onnx-int8", "--out", str(out),
            "--no-latency", "--threads", "1", "--quiet", "--calib-count", "2", "--calib-size",
            "32"]
    size = _onnx_size(tmp_path / "probe", ckpt)
    said = main_with_file_limit(argv, size - 1000)
    assert "error" not in said and said.get("rc") == 2, said
    assert said["err"].strip().splitlines()[-1].startswith(
        f"sharpen export: error: {out / 'student.onnx'}: File too large"), said["err"]
    assert "build failed" not in said["err"], said["err"]
    said = main_with_file_limit(argv, 10**9)
    assert said.get("rc") == 0, said


def _onnx_size(out: Path, ckpt) -> int:
    from optimize.export import export
    report = export(str(ckpt), ["onnx"], out, latency=False, quiet=True)
    return report.results[0].size_bytes


def test_a_full_disk_keeps_its_traceback_with_sharpen_debug(tmp_path, ckpt, monkeypatch):
    """SHARPEN_DEBUG=1 is how a user sees where any one-line error came from: the full
    disk's line must not stand in for the traceback then."""
    from child_fixtures import main_with_file_limit
    monkeypatch.setenv("SHARPEN_DEBUG", "1")
    out = tmp_path / "out"
    said = main_with_file_limit(["export", "--weights", str(ckpt), "--format", "onnx", "--out",
                                 str(out), "--no-latency", "--threads", "1", "--quiet"], 2000)
    assert said.get("error") == (
        f"OSError: [Errno 27] File too large: '{out / 'export_report.json'}'"), said


def test_a_build_that_fails_with_little_room_left_says_the_disk_is_nearly_full(
        ckpt, tmp_path, monkeypatch):
    """TensorFlow's conversion, its SavedModel filling --out's disk (its scratch folder is
    there), failed with "TypeError: 'NoneType' object is not callable" and removed what it
    wrote: the export's row said that alone, the cause left to guess. A failed build where
    the disk has less room than a build's scratch files take says how much was free. (The
    room is said by free_bytes, this project's own; the failure is the library's as it came.)"""
    import optimize.export as export_mod
    from optimize.export import export

    def build(self, fmt):
        raise TypeError("'NoneType' object is not callable")

    monkeypatch.setattr(export_mod._BuildContext, "build", build)
    monkeypatch.setattr(export_mod, "free_bytes", lambda folder: 409600)
    out = tmp_path / "out"
    report = export(str(ckpt), ["onnx"], out, latency=False, quiet=True)
    assert report.results[0].reason == (
        "build failed: TypeError: 'NoneType' object is not callable (only 0.4 MB free on the "
        f"disk of {out}, where the build writes its scratch files: free some space)")
    monkeypatch.setattr(export_mod, "free_bytes", lambda folder: 10 ** 9)
    report = export(str(ckpt), ["onnx"], out, latency=False, quiet=True)
    assert report.results[0].reason == "build failed: TypeError: 'NoneType' object is not callable"


def test_calib_of_a_label_cache_of_blur_sharp_pairs_names_the_blurred_half(tmp_path):
    """A cache labelled from pairs/{blur,sharp} (no split) named pairs/ itself: `--calib pairs`
    then found no image directly in it, and 'pairs/**/*' took the sharp ground truth too."""
    from distill.data.label_cache import MANIFEST, MANIFEST_FORMAT
    from optimize.calibration import CalibrationError, resolve_paths

    pairs, cache = tmp_path / "pairs", tmp_path / "lab"
    for side in ("blur", "sharp"):
        (pairs / side).mkdir(parents=True)
    cache.mkdir()
    (cache / MANIFEST).write_text(json.dumps({"format": MANIFEST_FORMAT, "entries": {}}))
    (cache / "run.json").write_text(json.dumps({"data": str(pairs), "split": None}))
    with pytest.raises(CalibrationError, match=r"labelled from images: pass those, e\.g\. "
                       + re.escape(str(pairs / "blur")) + "$"):
        resolve_paths(cache / "frames")


@pytest.mark.parametrize("failure, said", [
    (ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow"),
     "ModuleNotFoundError: No module named 'tensorflow'"),
    (PermissionError(13, "Permission denied", "/opt/trt/libnvinfer.so"),
     "PermissionError: [Errno 13] Permission denied: '/opt/trt/libnvinfer.so'"),
    (MemoryError("cannot allocate 2 GiB"), "MemoryError: cannot allocate 2 GiB"),
    (CalibrationError("--calib: 3 images, under 8"), "CalibrationError: --calib: 3 images, "
     "under 8"),
])
def test_a_build_failure_with_its_own_cause_does_not_blame_a_nearly_full_disk(
        ckpt, tmp_path, monkeypatch, failure, said):
    """With under 16 MB free, every failed build said the disk was nearly full and to free
    some space: a missing package, a refused library or a lack of memory too, whose cause the
    failure names and which no free space mends."""
    import optimize.export as export_mod
    from optimize.export import export

    def build(self, fmt):
        raise failure

    monkeypatch.setattr(export_mod._BuildContext, "build", build)
    monkeypatch.setattr(export_mod, "free_bytes", lambda folder: 409600)
    report = export(str(ckpt), ["onnx"], tmp_path / "out", latency=False, quiet=True)
    assert report.results[0].reason == f"build failed: {said}"


def test_a_fresh_build_whose_unchecked_marker_cannot_be_written_is_not_left_unmarked(
        ckpt, tmp_path):
    """A disk that filled between the model's write and its "unchecked" marker's left a model
    no parity check had seen, with no marker: as a passing build's, so that `sharpen run` took
    it, while the export's line said what was finished is kept. A folder in the marker's
    place stands in for the full disk: the marker's write fails as it would."""
    from runtime.backends import failed_marker
    out = tmp_path / "out"
    out.mkdir()
    failed_marker(out / "student.onnx").mkdir()
    with pytest.raises(IsADirectoryError):
        main(["export", "--weights", str(ckpt), "--format", "onnx", "--out", str(out),
              "--no-latency", "--threads", "1", "--quiet"])
    assert not (out / "student.onnx").exists(), list(out.iterdir())


@pytest.mark.parametrize("opt, bound, cap", [("3840x2160", "--max-shape", "2160x2160"),
                                              ("32x48", "--min-shape", "40x40")])
def test_a_tflite_only_export_takes_an_opt_shape_outside_the_engine_profiles_defaults(
        ckpt, tmp_path, capsys, opt, bound, cap):
    """`--formats tflite-fp16 --opt-shape 3840x2160` (a phone's portrait 4K) was refused with
    'engine profile: --opt-shape 3840x2160 is larger than --max-shape 2160x3840', and
    `--opt-shape 32x48` with '--min-shape 64x64 is larger than --opt-shape 32x48': the
    TensorRT profile's default bounds capped a .tflite, which has no profile, only the size
    --opt-shape gives its input until an app resizes it."""
    pytest.importorskip("ai_edge_litert")
    from ai_edge_litert.interpreter import Interpreter

    rc = main(["export", "--weights", str(ckpt), "--format", "tflite-fp16", "--out",
               str(tmp_path / "a"), "--opt-shape", opt, "--no-latency", "--quiet",
               "--threads", "1"])
    err = capsys.readouterr().err
    assert rc == 0, err
    path = next((tmp_path / "a").glob("*.tflite"))
    assert list(Interpreter(model_path=str(path)).get_input_details()[0]["shape"]) == \
        [1, *map(int, opt.split("x")), 3]
    # An engine asked for keeps its profile's check, as does a bound given.
    for extra in (["--format", "engine"], ["--format", "tflite-fp16", bound, cap]):
        assert main(["export", "--weights", str(ckpt), *extra, "--out", str(tmp_path / "b"),
                     "--opt-shape", opt, "--no-latency", "--quiet"]) == 2
        assert "is larger than" in (err := capsys.readouterr().err) and opt in err, err


def test_an_export_of_every_format_keeps_the_engine_profiles_default_max_on_any_host(
        ckpt, tmp_path, capsys):
    """With no --formats the engines are asked for too: where TensorRT is missing each is
    skipped with a trtexec line to run on the device. That line took --maxShapes 3840x3840, a
    maximum no one gave, where a host with TensorRT refused the same command."""
    out = tmp_path / "all"
    assert main(["export", "--weights", str(ckpt), "--out", str(out), "--opt-shape",
                 "3840x2160", "--no-latency", "--quiet", "--threads", "1"]) == 2
    assert "--opt-shape 3840x2160 is larger than --max-shape 2160x3840" in \
        capsys.readouterr().err
    assert not out.exists(), list(out.iterdir())
