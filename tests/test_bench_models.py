"""`sharpen bench --model FILE` and `pytest benchmarks/ --model`: exported model files
measured as rows beside the students (bench_fixtures). Timings are never asserted.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from bench_fixtures import ROOT, _bench, _run_suite
from distill.images import write_image
from distill.students import create_student

pytestmark = pytest.mark.slow  # whole pipelines at toy sizes: tens of seconds


# --------------------------------------------------------------------------- --model

def _given_files(env: Path, good_run, folder: Path) -> tuple[Path, Path]:
    """The FP32 ONNX model that good_run exported of the tiny student, copied alone (no export
    report beside it) as a user's deployed file, and a TensorRT engine (its first bytes and
    sidecar) that this machine cannot run: no TensorRT here, or not this GPU's."""
    import shutil

    _, report = good_run
    onnx = Path(report["artifacts"]["good"]["formats"]["onnx"]["file"])
    folder.mkdir(parents=True, exist_ok=True)
    deployed = Path(shutil.copy(onnx, folder / "deployed.onnx"))
    engine = folder / "jetson_fp16.engine"
    engine.write_bytes(b"ftrt" + bytes(60))
    (folder / "jetson_fp16.engine.json").write_text(json.dumps(
        {"student": "fast", "precision": "fp16", "multiple": 8}))
    return deployed, engine


@pytest.fixture(scope="module")
def model_run(env, good_run):
    deployed, engine = _given_files(env, good_run, env / "my-export")
    rc = _bench(env, "given", "--model", str(deployed), str(engine), "--sizes", "160x96",
                "--stream-frames", "0", "--real-pairs", str(env / "pairs"))
    return rc, json.loads((env / "given" / "report.json").read_text()), deployed, engine


def test_model_files_are_measured_as_rows(env, good_run, model_run):
    """`sharpen bench --model FILE` measures exported files as they are: the row is named after
    the file, its format comes from the format table and its student from the file's metadata;
    without --weights the default students are not measured."""
    rc, rep, deployed, _ = model_run
    assert rc == 0, rep["checks"]
    assert rep["settings"]["students"] == [] and "good" not in rep["artifacts"]
    assert "no --weights: the default students are not measured" in rep["settings"]["measured"]
    keys = [r["key"] for r in rep["quality"]["rows"]]
    assert keys == ["input", "teacher", "deployed", "jetson_fp16"], keys
    row = next(r for r in rep["quality"]["rows"] if r["key"] == "deployed")
    assert row["status"] == "ok" and row["format"] == "onnx" and row["source"] == "fast"
    assert row["model"] == "deployed (student fast)" and row["n_images"] == 3
    # The same model as good_run's own ONNX artifact, on the same images: the same numbers.
    built = next(r for r in good_run[1]["quality"]["rows"] if r["key"] == "good/onnx")
    for k in ("psnr", "ssim", "ssim_teacher"):
        assert row[k] == pytest.approx(built[k], abs=1e-6) and row[k] > 0, k
    gate = next(c for c in rep["checks"] if c["model"] == "deployed")
    assert gate["check"] == "ssim-ratio" and gate["passed"], gate
    # The backend's label names the precision: said once, not "ONNX Runtime FP32, FP32".
    assert gate["message"].startswith("model 'deployed' (ONNX Runtime FP32): "), gate
    lat = [r for r in rep["latency"]["rows"] if r.get("given") == "deployed"]
    assert [r["size"] for r in lat] == ["160x96"] and lat[0]["status"] == "ok"
    assert lat[0]["ms"] > 0 and lat[0]["speedup_vs_teacher"] > 0
    assert lat[0]["backend"] == "ort-fp32" and lat[0]["file"] == str(deployed.resolve())
    pairs = rep["real_blur"]["pairs"]   # the real-blur tables take it too, by its name
    assert set(pairs) >= {"teacher", "deployed"} and "jetson_fp16" not in pairs, pairs
    assert pairs["deployed"]["psnr"] == pytest.approx(row["psnr"], abs=1e-3)
    md = (env / "given" / "report.md").read_text()
    assert "| deployed (student fast) | onnx | ONNX Runtime FP32 |" in md
    assert f"- deployed: {deployed.resolve()} (onnx, FP32, student fast, sha256 " in md
    cmd = rep["commands"][1]
    assert f"--model {deployed} " in cmd and "--weights" not in cmd, cmd
    assert set(rep["figures"]) == {"latency", "scatter", "crops"}


def test_what_to_ship_takes_model_files_by_their_name(model_run):
    """A --model file is a candidate as the students are: under its name, gated on its own
    SSIM check, with its real-blur gain; a file this machine cannot run gets no row."""
    from benchmarks.ship import ship_section

    from runtime.console import shell_join

    _, rep, deployed, _ = model_run
    rep = json.loads(json.dumps(rep))
    # a budget its row meets whatever this machine's load
    rep["settings"]["target_fps"] = rep["settings"]["cpu_target_fps"] = 1.0
    ship = ship_section(rep)
    assert [r["backend"] for r in ship["rows"]] == ["ort-fp32"], ship["rows"]
    (row,) = ship["rows"]
    lat = next(r for r in rep["latency"]["rows"] if r.get("given") == "deployed")
    quality = next(r for r in rep["quality"]["rows"] if r["key"] == "deployed")
    assert (row["ship"], row["ms"], row["ssim"]) == ("deployed", lat["ms"], quality["ssim"])
    # the user's own file in the run line, not a copy in the bench's cache
    assert row["file"] == str(deployed.resolve()), row
    assert row["run"].startswith(shell_join(["sharpen", "run", "--model", row["file"]]) + " ")
    gain = rep["real_blur"]["pairs"]["deployed"]["ssim_gain"]
    assert row["real_blur_ssim_gain"] == gain
    # run as the file itself there too, not as a student's PyTorch checkpoint
    assert f"real-blur SSIM gain {gain:+.4f} (the file itself)" in row["why"], row["why"]


def test_a_model_only_run_does_not_claim_a_calibration_it_did_not_do(model_run):
    """Without --weights the bench exports nothing, yet report.json's settings.calibration
    said 'built-in sample photos': the --model files were calibrated by their own export
    (on the user's frames, say), which bench-compare then noted as a difference."""
    _, rep, _, _ = model_run
    calib = rep["settings"]["calibration"]
    assert "built-in" not in calib and "--model" in calib, calib


def test_a_model_only_run_reports_the_memory_of_the_stages_it_ran(env, good_run, model_run):
    """Without --weights nothing is exported: the report's peak memory has no export stage
    (it was the RSS after loading the --model files, under a stage that did not run)."""
    _, rep, _, _ = model_run
    assert list(rep["peak_rss_mb"]) == ["quality", "real_blur", "latency"], rep["peak_rss_mb"]
    assert "export" in good_run[1]["peak_rss_mb"]   # a run that exported says so
    md = (env / "given" / "report.md").read_text().splitlines()
    line = next(ln for ln in md if ln.startswith("Peak memory"))
    assert "export" not in line and "quality" in line, line


def test_a_model_file_this_machine_cannot_run_is_skipped_with_why(model_run):
    """A TensorRT engine where there is no TensorRT (or it is another GPU's) is reported as
    skipped, naming the file and why, as unbuildable formats are; the rest is measured."""
    _, rep, _, engine = model_run
    row = next(r for r in rep["quality"]["rows"] if r["key"] == "jetson_fp16")
    assert row["status"] == "skipped" and row["format"] == "engine", row
    assert row["precision"] == "fp16" and row["source"] == "fast"
    assert str(engine.resolve()) in row["reason"] and "TensorRT" in row["reason"], row
    assert row["psnr"] is None and not any(c["model"] == "jetson_fp16" for c in rep["checks"])
    lat = [r for r in rep["latency"]["rows"] if r.get("given") == "jetson_fp16"]
    assert lat and all(r["status"] == "skipped" and r["ms"] is None for r in lat)
    assert {d["what"] for d in rep["skipped"]} >= {"quality jetson_fp16"}
    assert any(d["what"].startswith("latency jetson_fp16 (student fast)")
               for d in rep["skipped"]), rep["skipped"]


def test_a_model_file_of_a_benchmarked_student_is_compared_with_its_pytorch_output(
        env, tmp_path):
    """`--weights S --model DIR/S_int8.onnx`: the file was exported from S's checkpoint (its
    metadata records the hash), so its parity is measured against S's FP32 PyTorch output and
    gated as S's own artifact is; the very file the bench built gives the same numbers."""
    import shutil

    from benchmarks.artifacts import DEFAULT_CALIB_COUNT, ensure_artifacts, resolve_students

    cache = tmp_path / "cache"
    st = resolve_students([str(env / "student-good.pt")])[0]
    built = ensure_artifacts(st, cache, "onnx-int8", DEFAULT_CALIB_COUNT, quiet=True, calib=[])
    mine = tmp_path / "mine"
    mine.mkdir()
    given = Path(shutil.copy(built.get("onnx-int8").file, mine / "student-good_int8.onnx"))
    out = tmp_path / "both"
    rc = _bench(env, str(out), "--weights", str(env / "student-good.pt"), "--model",
                str(given), "--formats", "onnx-int8", "--cache", str(cache), "--no-latency")
    rep = json.loads((out / "report.json").read_text())
    assert rc == 0, rep["checks"]
    # The bench's own artifact is the file copied (reused from the cache, not built again).
    assert rep["artifacts"]["good"]["built_now"] == [], rep["artifacts"]["good"]
    rows = {r["key"]: r for r in rep["quality"]["rows"]}
    assert list(rows)[-1] == "student-good_int8", list(rows)   # after the students' rows
    own, r = rows["good/onnx-int8"], rows["student-good_int8"]
    assert r["status"] == "ok" and r["student"] == "good" and r["format"] == "onnx-int8", r
    assert r["parity"] is not None and own["parity"] is not None, r
    for k in ("max_abs", "psnr", "ssim", "ssim_drop", "metric", "threshold", "passed",
              "worst_image"):
        assert r["parity"][k] == own["parity"][k], k
    for k in ("psnr", "ssim", "ssim_teacher"):
        assert r[k] == own[k], k
    checks = {(c["check"], c["model"]): c for c in rep["checks"]}
    par = checks["parity", "student-good_int8"]
    assert par["passed"] and par["value"] == checks["parity", "good/onnx-int8"]["value"]
    assert par["message"].startswith("model 'student-good_int8' (ONNX Runtime INT8; student "
                                     "'good'): worst-case "), par
    gate = checks["ssim-ratio", "student-good_int8"]
    assert gate["message"].startswith("model 'student-good_int8' (ONNX Runtime INT8): "), gate
    md = (out / "report.md").read_text()
    assert "| student-good_int8 (student fast) | onnx-int8 | ONNX Runtime INT8 |" in md, md


def test_bad_model_files_stop_the_bench_before_the_work(env, tmp_path, capsys):
    """A missing file, a checkpoint or another extension, an empty file and a file the runtime
    cannot read are named in a one-line error (exit 2) before the teacher or any export."""
    junk = tmp_path / "junk.onnx"
    junk.write_text("not a model at all\n")
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    cases = {tmp_path / "nope.onnx": "no such file",
             env / "student-good.pt": "not an exported model",
             empty: "an empty file",
             junk: "cannot load"}
    for path, why in cases.items():
        cache = tmp_path / "cache"
        rc = _bench(env, "never-made", "--model", str(path), "--cache", str(cache))
        err = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in err, err
        assert err.startswith(f"sharpen bench: error: --model {path}: ") and why in err, err
        assert not cache.exists() and not (env / "float-never-made").exists()


def test_a_missing_model_file_under_xdist_is_a_usage_error_not_a_crash(tmp_path):
    """`pytest benchmarks/ -n 1 --model missing.onnx` ended in an xdist INTERNALERROR (the
    worker's usage exit taken for a crash), exit 3; without -n the file is named, exit 4."""
    missing = tmp_path / "missing.onnx"
    _, out = _run_suite("-n", "1", "-k", "test_given_model_latency", "--model", str(missing),
                        expect=4, timeout=120)
    assert f"usage error: --model {missing}: no such file" in out, out
    assert "INTERNALERROR" not in out and "Traceback" not in out, out


def test_a_model_engine_not_built_yet_says_its_trtexec_line(env, tmp_path, capsys):
    """The README's `--model export/student-fast_int8.onnx export/student-fast_fp16.engine`
    run where `sharpen export` could not build the engine (no TensorRT): "no such file" said
    nothing of the trtexec line whose sidecar is beside it, as `sharpen run` does."""
    line = "trtexec --onnx=m.onnx --saveEngine=m_fp16.engine --fp16"
    engine = tmp_path / "export" / "m_fp16.engine"
    engine.parent.mkdir()
    (engine.parent / "m_fp16.engine.json").write_text(json.dumps(
        {"precision": "fp16", "multiple": 8, "trtexec": line,
         "built_by": "trtexec (the line `sharpen export` printed)"}))
    rc = _bench(env, "never-made", "--model", str(engine), "--cache", str(tmp_path / "cache"))
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"sharpen bench: error: --model {engine}: "), err
    assert "not built yet" in err and f"in {engine.parent}: {line}" in err, err


def test_the_pytest_suite_takes_model_files(env, good_run, tmp_path):
    """`pytest benchmarks/ --model FILE` (the shared option) measures the file's quality and
    latency, and skips the engine this machine cannot run, with the reason. A file named twice
    (another spelling of its path) is measured once, as `sharpen bench` does."""
    deployed, engine = _given_files(env, good_run, tmp_path / "my-export")
    again = os.path.relpath(deployed, ROOT)   # the run's working folder is ROOT
    _, out = _run_suite("-k", "given_model", "-rs", "--teacher-weights",
                        str(env / "teacher.pt"), "--data", str(env / "pairs"), "--cache",
                        str(tmp_path / "cache"), "--sizes", "160x96", "--model", str(deployed),
                        str(engine), again, expect=0)
    assert "2 passed, 2 skipped" in out, out
    assert f"{engine.resolve()}: " in out and "deployed (student fast)" in out, out


def test_small_parity_images_warning_names_what_the_bench_takes(env, tmp_path):
    """Under the bench, export's warning that the parity images are smaller than the model's
    receptive field told the user to give --parity-images, which `sharpen bench` does not
    take; it names --calib (a fifth of whose images is held out for parity) instead."""
    import warnings

    from benchmarks.artifacts import ensure_artifacts, resolve_students
    from distill.students import receptive_field
    from runtime.warn import SharpenWarning

    st = resolve_students([str(env / "student-good.pt")])[0]
    side = 24
    assert receptive_field(create_student("fast", width=8)) > side
    frames = tmp_path / "small"
    for i in range(5):
        write_image(frames / f"f{i}.png", np.full((side, side + 8, 3), 0.1 * (i + 1), np.float32))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ensure_artifacts(st, tmp_path / "cache", "onnx", calib_count=4, quiet=True,
                         calib=[str(frames)])
    said = [str(w.message) for w in caught if issubclass(w.category, SharpenWarning)
            and "receptive field" in str(w.message)]
    assert said, [str(w.message) for w in caught]
    for msg in said:
        assert "--parity-images" not in msg and "give --calib images at least" in msg, msg




def test_model_files_sharing_a_stem_are_named_alike_whatever_their_order(tmp_path):
    """student-fast_int8.tflite and student-fast_int8.onnx (an export's pair) were named
    `student-fast_int8` and `student-fast_int8-2` in the order given, and `bench-compare`
    paired the real-blur row of one file in the baseline with the other's in the new report.
    They take the names `pytest benchmarks/`'s ids give them (benchmarks.given.given_ids)."""
    import shutil

    from benchmarks.given import resolve_models
    from runtime_fixtures import make_onnx_model

    src = make_onnx_model(tmp_path / "m.onnx")
    files = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        files.append(str(shutil.copy(src, tmp_path / folder / "student-fast_int8.onnx")))
    names = [gm.name for gm in resolve_models(files)]
    assert names == ["a-student-fast_int8.onnx", "b-student-fast_int8.onnx"], names
    assert [gm.name for gm in resolve_models(files[::-1])] == names[::-1]
    # a file alone keeps its stem
    assert [gm.name for gm in resolve_models(files[:1])] == ["student-fast_int8"]


def test_a_model_files_sha256_is_in_the_report(tmp_path):
    """Which bytes were measured: a --model file re-exported under the same name (another
    calibration, another seed) got the same row, and report.md and report.json named only its
    path and the checkpoint it came from, not the file itself."""
    import hashlib

    from benchmarks.given import resolve_models
    from benchmarks.markdown import _models_lines
    from runtime_fixtures import make_onnx_model

    path = make_onnx_model(tmp_path / "mine.onnx")
    sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    (gm,) = resolve_models([str(path)])
    assert gm.to_dict()["sha256"] == sha
    lines = _models_lines({"measured": "--model mine", "models": [gm.to_dict()]})
    assert any(ln.startswith("- mine: ") and f"sha256 {sha[:12]}" in ln for ln in lines), lines


def test_an_export_folder_given_to_model_measures_its_model_files(tmp_path):
    """`--model export/` (the folder `sharpen export --out` wrote, or a CI job's folder of
    exported models) was refused, 'a folder; give the model files in it': each file had to be
    named, and a model added to the folder was left out of the job until its line changed. It
    stands for its model files, in name order (not its report, not hidden files)."""
    from benchmarks.artifacts import BenchError
    from benchmarks.given import resolve_models
    from runtime_fixtures import make_onnx_model

    folder = tmp_path / "export"
    folder.mkdir()
    make_onnx_model(folder / "b.onnx")
    make_onnx_model(folder / "a.onnx")
    (folder / "export_report.json").write_text("{}")
    (folder / ".c.onnx.part").write_text("")   # a copy under way
    # macOS's AppleDouble file, beside each file copied to a FAT or exFAT stick: its suffix
    # is a model's, its bytes are not
    (folder / "._a.onnx").write_bytes(b"\x00\x05\x16\x07")
    (folder / "sub").mkdir()
    make_onnx_model(folder / "sub" / "d.onnx")   # another folder's: not this one's
    assert [gm.path for gm in resolve_models([str(folder)])] == [
        (folder / "a.onnx").resolve(), (folder / "b.onnx").resolve()]
    # a file named beside its folder is measured once
    assert len(resolve_models([str(folder), str(folder / "a.onnx")])) == 2
    with pytest.raises(BenchError) as e:
        resolve_models([str(folder / "sub"), str(tmp_path)])
    assert str(e.value) == (f"--model {tmp_path}: a folder with no exported model in it "
                            "(.engine, .onnx, .plan, .tflite)"), e.value


def test_an_export_folder_says_which_engine_it_holds_only_the_trtexec_line_of(tmp_path):
    """`--model export/` where `sharpen export` could not build the engine (no TensorRT): the
    folder's files were measured without a word of the engine its sidecar is waiting for."""
    from benchmarks.given import model_files
    from runtime_fixtures import make_onnx_model

    folder = tmp_path / "export"
    folder.mkdir()
    make_onnx_model(folder / "m.onnx")
    line = "trtexec --onnx=m.onnx --saveEngine=m_fp16.engine --fp16"
    (folder / "m_fp16.engine.json").write_text(json.dumps(
        {"precision": "fp16", "multiple": 8, "trtexec": line,
         "built_by": "trtexec (the line `sharpen export` printed)"}))
    from runtime.warn import SharpenWarning

    with pytest.warns(SharpenWarning) as said:
        assert model_files([str(folder)]) == [str(folder / "m.onnx")]
    [msg] = [str(w.message) for w in said]
    assert msg.startswith(f"--model {folder}: {folder / 'm_fp16.engine'} is not measured: "
                          "not built yet"), msg
    assert f"in {folder}: {line}" in msg, msg


def test_calib_beside_model_files_alone_is_said_to_do_nothing(tmp_path):
    """`sharpen bench --model mine_int8.onnx --calib my_frames/` exports nothing (no --weights):
    --calib was taken without a word, and the report now says the files keep their own
    export's calibration, so the user's frames calibrated nothing unsaid."""
    from benchmarks.artifacts import BenchError
    from benchmarks.report import BenchOptions, run_bench
    from runtime.warn import SharpenWarning
    from runtime_fixtures import make_onnx_model

    model = make_onnx_model(tmp_path / "mine.onnx")
    rng = np.random.default_rng(0)
    write_image(tmp_path / "frames" / "a.png", rng.random((32, 32, 3)).astype(np.float32))
    # --data that is not there stops the run once its inputs are checked
    opts = BenchOptions(out=str(tmp_path / "out"), models=[str(model)], quiet=True,
                        calib=[str(tmp_path / "frames")], data=str(tmp_path / "none"))
    with pytest.warns(SharpenWarning, match="--calib .*: nothing is exported here"):
        with pytest.raises(BenchError):
            run_bench(opts)
