"""Tracing an exported artifact back to how it was made: export_report.json records the
software, the source weights, the calibration images and seed, and each artifact's sha256;
`sharpen export --seed` gives byte-identical INT8 artifacts for the same seed, other ones for
another. Real exports of the briefly trained `fast` student (tests/export_fixtures.py)."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("skimage")

pytestmark = pytest.mark.slow  # real exports at toy sizes


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _formats() -> list[str]:
    from runtime.formats import FORMATS
    return [f for f in ("onnx-int8", "tflite-int8") if not FORMATS[f].availability()]


def _export(weights, data_dir, out: Path, seed: int | None, calib=None) -> dict:
    from sharpen.cli import main

    argv = ["export", "--weights", str(weights), "--formats", ",".join(_formats()),
            "--out", str(out), "--calib", str(calib or data_dir / "calib"),
            "--calib-count", "8", "--calib-size", "64", "--parity-images",
            str(data_dir / "parity"), "--no-latency", "--quiet"]
    rc = main(argv + (["--seed", str(seed)] if seed is not None else []))
    assert rc == 0
    return json.loads((out / "export_report.json").read_text())


@pytest.fixture(scope="module")
def exports(fast_student_pt, export_data_dir, tmp_path_factory):
    """Seed 3 twice (into two folders, the second from a copy of the calibration folder
    whose files' times differ) and seed 4 once."""
    root = tmp_path_factory.mktemp("provenance")
    copy = root / "calib-copy"
    shutil.copytree(export_data_dir / "calib", copy, copy_function=shutil.copyfile)
    return {name: _export(fast_student_pt, export_data_dir, root / name, seed, calib)
            for name, seed, calib in (("a", 3, None), ("b", 3, copy), ("c", 4, None))}


def test_the_same_seed_builds_byte_identical_int8_artifacts(exports):
    for fmt in _formats():
        a, b, c = (next(r for r in exports[k]["results"] if r["format"] == fmt)
                   for k in "abc")
        assert a["status"] == b["status"] == c["status"] == "pass", fmt
        assert _sha(a["file"]) == _sha(b["file"]), f"{fmt}: seed 3 twice built different files"
        # Another seed: other crops, other activation ranges, another file.
        assert _sha(a["file"]) != _sha(c["file"]), f"{fmt}: seeds 3 and 4 built the same file"


def test_the_report_records_each_artifacts_sha256(exports):
    for rep in exports.values():
        for r in rep["results"]:
            assert r["extra"]["file_sha256"] == _sha(r["file"])


def test_the_report_records_the_calibration_set_and_seed(exports, export_data_dir):
    a, b, c = (exports[k] for k in "abc")
    cal = a["settings"]["calibration"]
    assert a["settings"]["calib_seed"] == cal["seed"] == 3 and c["settings"]["calib_seed"] == 4
    assert cal["source"] == [str(export_data_dir / "calib")]
    assert cal["folders"] == [str((export_data_dir / "calib").resolve())]
    # (--parity-images given: none of --calib is held out for parity)
    assert cal["files"] == cal["images"] == len(list((export_data_dir / "calib").iterdir()))
    assert cal["crops"] == 8 and cal["crop_size"] == 64
    # The copy (other folder, other file times) has the same files; another seed other crops.
    assert b["settings"]["calibration"]["files_digest"] == cal["files_digest"]
    assert b["settings"]["calibration"]["crops_digest"] == cal["crops_digest"]
    assert c["settings"]["calibration"]["files_digest"] == cal["files_digest"]
    assert c["settings"]["calibration"]["crops_digest"] != cal["crops_digest"]


def test_an_edited_calibration_image_changes_the_files_digest(fast_student_pt,
                                                              export_data_dir, tmp_path):
    import cv2

    calib = tmp_path / "calib"
    shutil.copytree(export_data_dir / "calib", calib)
    first = sorted(calib.iterdir())[0]
    img = cv2.imread(str(first))
    img[0, 0] = 255 - img[0, 0]
    cv2.imwrite(str(first), img)
    from optimize.export_data import calibration_record
    from optimize.export_options import ExportOptions
    import numpy as np

    crops = np.zeros((1, 3, 16, 16), np.float32)
    o = ExportOptions(calib=str(calib))
    edited = calibration_record(o, sorted(calib.iterdir()), 1, crops)
    kept = calibration_record(o, sorted((export_data_dir / "calib").iterdir()), 1, crops)
    assert edited["files_digest"] != kept["files_digest"]


def test_the_report_records_the_weights_and_the_software(exports, fast_student_pt):
    from runtime.host import library_versions

    rep = exports["a"]
    assert rep["weights_path"] == str(Path(fast_student_pt).resolve())
    assert rep["weights_sha256"] == _sha(fast_student_pt)
    env = rep["environment"]
    for lib in ("onnx", "onnxruntime", "tensorflow", "ai_edge_litert", "nvidia_modelopt",
                "torch"):
        assert env[lib] == library_versions((lib,))[lib]
    assert env["onnxruntime"] and env["python"] and env["device"] == "cpu"


def test_a_negative_seed_is_refused_naming_the_flag(fast_student_pt, tmp_path, capsys):
    from sharpen.cli import main

    rc = main(["export", "--weights", str(fast_student_pt), "--formats", "onnx-int8",
               "--out", str(tmp_path / "x"), "--seed", "-1", "--quiet"])
    assert rc == 2
    assert "--seed must be >= 0, got -1" in capsys.readouterr().err


def test_sharpen_models_says_how_an_artifact_was_made(exports, fast_student_pt, tmp_path,
                                                      capsys):
    """`sharpen models ARTIFACT`: the report row that records its sha256, read back as the
    weights, the software and the calibration; a file that no report beside it records (a
    device's copy that differs) is said to be no file the export built."""
    from sharpen.cli import main

    rep = exports["a"]
    art = next(r["file"] for r in rep["results"] if r["format"] == "onnx-int8")
    assert main(["models", art]) == 0
    out = capsys.readouterr().out
    cal = rep["settings"]["calibration"]
    assert f"{art} (sha256 {_sha(art)[:16]}): onnx-int8 of " in out, out
    assert f"weights: {Path(fast_student_pt).resolve()} (sha256 {_sha(fast_student_pt)[:16]})" \
        in out
    assert f"onnxruntime {rep['environment']['onnxruntime']}" in out
    assert (f"calibration: 8 crops of 64 px, seed 3, from {cal['source'][0]} (3 images, files "
            f"digest {cal['files_digest']})") in out
    # Seed 4's file beside seed 3's report: not the file that export built.
    other = Path(art).parent / "device_int8.onnx"
    shutil.copyfile(next(r["file"] for r in exports["c"]["results"]
                         if r["format"] == "onnx-int8"), other)
    assert main(["models", str(other)]) == 0
    assert "no export report in" in capsys.readouterr().out


def test_sharpen_models_on_a_carried_artifact_says_what_built_it(fast_student_pt,
                                                                 export_data_dir, tmp_path,
                                                                 capsys):
    """`--formats onnx-int8 --seed 1`, then `--formats onnx --seed 2` into the same folder: the
    INT8 row is carried into the second report, whose settings are of a run that took no
    crops. `sharpen models` on the INT8 file said "seed not recorded (exported by an older
    version: 0)" and the second run's software; it must say seed 1, as the first export did."""
    from sharpen.cli import main

    out = tmp_path / "x"
    common = ["--weights", str(fast_student_pt), "--out", str(out), "--calib",
              str(export_data_dir / "calib"), "--calib-count", "8", "--calib-size", "64",
              "--parity-images", str(export_data_dir / "parity"), "--no-latency", "--quiet"]
    assert main(["export", "--formats", "onnx-int8", "--seed", "1", *common]) == 0
    first = json.loads((out / "export_report.json").read_text())
    assert main(["export", "--formats", "onnx", "--seed", "2", *common]) == 0
    art = next(r["file"] for r in first["results"] if r["format"] == "onnx-int8")
    capsys.readouterr()
    assert main(["models", art]) == 0
    said = capsys.readouterr().out
    cal = first["settings"]["calibration"]
    assert "carried from an earlier export" in said, said
    assert (f"calibration: 8 crops of 64 px, seed 1, from {cal['source'][0]} (3 images, files "
            f"digest {cal['files_digest']})") in said, said
    assert f"onnxruntime {first['environment']['onnxruntime']}" in said, said


def test_sharpen_models_on_an_older_versions_report(fast_student_pt, export_data_dir, tmp_path,
                                                    capsys):
    """A report written before the provenance fields (no environment, calibration or file
    sha256) is named as such, not read as "not a file an export there built"; an engine that
    trtexec built on the device (no row records it) is traced by its sidecar."""
    from sharpen.cli import main

    out = tmp_path / "x"
    assert main(["export", "--weights", str(fast_student_pt), "--formats", "onnx", "--out",
                 str(out), "--parity-images", str(export_data_dir / "parity"), "--no-latency",
                 "--quiet"]) == 0
    path = out / "export_report.json"
    rep = json.loads(path.read_text())
    art = rep["results"][0]["file"]
    for k in ("environment", "weights_path", "weights_sha256"):
        rep.pop(k)
    for r in rep["results"]:
        r["extra"].pop("file_sha256")
    path.write_text(json.dumps(rep))
    capsys.readouterr()
    assert main(["models", art]) == 0
    said = capsys.readouterr().out
    assert "export_report.json records no artifact's sha256 (written by an older version)" \
        in said, said
    engine = Path(art).with_name(Path(art).stem + "_fp16.engine")
    engine.write_bytes(b"built by trtexec on the device")
    engine.with_name(engine.name + ".json").write_text(json.dumps(
        {"student": "fast", "precision": "fp16", "source_sha256": _sha(fast_student_pt)}))
    assert main(["models", str(engine)]) == 0
    said = capsys.readouterr().out
    assert (f"its sidecar records: student fast, precision fp16, weights sha256 "
            f"{_sha(fast_student_pt)[:16]}") in said, said


def test_a_rebuild_for_another_seed_names_seed(fast_student_pt, export_data_dir, tmp_path,
                                               capsys):
    """The same export again with another --seed rebuilds the INT8 model (other crops); the
    reason named --calib, --calib-count, --calib-size and --calib-blur but not --seed, the
    one option changed."""
    from sharpen.cli import main

    argv = ["export", "--weights", str(fast_student_pt), "--formats", "onnx-int8", "--out",
            str(tmp_path / "x"), "--calib", str(export_data_dir / "calib"), "--calib-count",
            "8", "--calib-size", "64", "--parity-images", str(export_data_dir / "parity"),
            "--no-latency"]
    assert main([*argv, "--seed", "1"]) == 0
    capsys.readouterr()
    assert main([*argv, "--seed", "2"]) == 0
    said = " ".join(capsys.readouterr())
    assert "onnx-int8: rebuilding student_int8.onnx: changed since it was built: the " \
           "calibration crops (--calib, " \
           "--calib-count, --calib-size, --calib-blur, --seed)" in " ".join(said.split()), said


def test_sharpen_models_on_a_missing_artifact_names_it_as_one(tmp_path, capsys):
    """A mistyped artifact path was reported as "checkpoint not found"."""
    from sharpen.cli import main

    gone = tmp_path / "student_int8.onnx"
    assert main(["models", str(gone)]) == 2
    err = capsys.readouterr().err
    assert f"exported artifact not found: {gone}" in err and "checkpoint" not in err, err


def test_sharpen_models_on_an_engine_not_built_yet_gives_its_trtexec_line(tmp_path, capsys):
    """The export folder copied to a Jetson before its trtexec line ran: `sharpen run` said the
    engine was not built yet, with the line, while `sharpen models` on the same path said only
    "exported artifact not found", as for a mistyped name."""
    from sharpen.cli import main

    line = "trtexec --onnx=m.onnx --saveEngine=m_fp16.engine --fp16"
    (tmp_path / "m_fp16.engine.json").write_text(json.dumps(
        {"built_by": "trtexec (the line `sharpen export` printed)", "trtexec": line}))
    assert main(["models", str(tmp_path / "m_fp16.engine")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "not built yet" in err and line in err and "/usr/src/tensorrt/bin/trtexec" in err, err


def test_sharpen_models_on_a_kept_artifact_says_what_built_it(fast_student_pt, export_data_dir,
                                                              tmp_path, capsys):
    """The same export run again keeps the up-to-date INT8 model: `sharpen models` said the
    software of the run that kept it, not of the one that built it (the first report's
    environment is changed here to stand for an export under another Python)."""
    from sharpen.cli import main

    out = tmp_path / "x"
    argv = ["export", "--weights", str(fast_student_pt), "--formats", "onnx-int8", "--out",
            str(out), "--calib", str(export_data_dir / "calib"), "--calib-count", "8",
            "--calib-size", "64", "--parity-images", str(export_data_dir / "parity"),
            "--no-latency", "--quiet", "--seed", "1"]
    assert main(argv) == 0
    path = out / "export_report.json"
    first = json.loads(path.read_text())
    first["environment"]["python"] = "3.0.1"
    path.write_text(json.dumps(first))
    assert main(argv) == 0
    assert json.loads(path.read_text())["results"][0]["extra"]["up_to_date"]
    capsys.readouterr()
    assert main(["models", first["results"][0]["file"]]) == 0
    said = capsys.readouterr().out
    assert "(kept from an earlier export: up to date)" in said and "python 3.0.1" in said, said
    assert main(argv) == 0   # kept twice: still the first export's record
    assert main(["models", first["results"][0]["file"]]) == 0
    assert "python 3.0.1" in capsys.readouterr().out


def test_sharpen_models_on_a_file_copied_alone_reads_the_record_inside(
        fast_student_pt, export_data_dir, tmp_path, capsys):
    """A .onnx or .tflite copied without its report and sidecar carries the export's record
    (ONNX metadata, the .tflite's metadata entry): `sharpen models FILE` says which student
    and weights it records, not only that no report there records it."""
    from sharpen.cli import main

    out = tmp_path / "x"
    assert main(["export", "--weights", str(fast_student_pt), "--formats", "onnx,tflite-fp16",
                 "--out", str(out), "--parity-images", str(export_data_dir / "parity"),
                 "--no-latency", "--quiet"]) == 0
    alone = tmp_path / "alone"
    alone.mkdir()
    for name in ("student.onnx", "student_fp16.tflite"):
        shutil.copy(out / name, alone / name)
        capsys.readouterr()
        assert main(["models", str(alone / name)]) == 0
        said = capsys.readouterr().out
        assert "no export report" in said, said
        line = next((ln for ln in said.splitlines()
                     if "the record inside the file gives:" in ln), "")
        assert "student fast" in line and f"weights sha256 {_sha(fast_student_pt)[:16]}" in line, \
            said


def test_sharpen_models_on_a_failed_file_copied_alone_says_its_gate_failed(
        fast_student_pt, export_data_dir, tmp_path, capsys):
    """A file whose export gate failed, copied alone (no marker, no report): the record inside
    it says so, which `sharpen run` reads to refuse it; `sharpen models FILE` says it too."""
    from sharpen.cli import main

    out = tmp_path / "x"
    assert main(["export", "--weights", str(fast_student_pt), "--formats", "onnx", "--out",
                 str(out), "--parity-images", str(export_data_dir / "parity"), "--no-latency",
                 "--max-abs-fp32", "1e-12", "--quiet"]) != 0
    alone = tmp_path / "alone" / "student.onnx"
    alone.parent.mkdir()
    shutil.copy(out / alone.name, alone)
    capsys.readouterr()
    assert main(["models", str(alone)]) == 0
    said = capsys.readouterr().out
    assert "failed its parity gate at export (max abs error" in said, said


def test_an_older_exports_carried_int8_row_keeps_its_formula_unrecorded(fast_student_pt,
                                                                      export_data_dir,
                                                                      tmp_path, capsys):
    """An older version's INT8 export (its report naming no SSIM formula), then `--formats
    onnx` into its folder: the INT8 row is carried, not judged again, into a report that names
    this version's formula, and `sharpen models` gave its older parity SSIM as this one's."""
    from sharpen.cli import main

    out = tmp_path / "x"
    common = ["--weights", str(fast_student_pt), "--out", str(out), "--calib",
              str(export_data_dir / "calib"), "--calib-count", "8", "--calib-size", "64",
              "--parity-images", str(export_data_dir / "parity"), "--no-latency", "--quiet"]
    assert main(["export", "--formats", "onnx-int8", *common]) == 0
    path = out / "export_report.json"
    older = json.loads(path.read_text())
    older.pop("ssim_formula")   # as an older version wrote it
    path.write_text(json.dumps(older))
    assert main(["export", "--formats", "onnx", *common]) == 0
    art = next(r["file"] for r in older["results"] if r["format"] == "onnx-int8")
    capsys.readouterr()
    assert main(["models", art]) == 0
    said = capsys.readouterr().out
    assert "carried from an earlier export" in said, said
    assert "its formula not recorded" in said, said
    assert "`sharpen export --formats onnx-int8` into this folder judges it again" in said, said
    assert "session" not in said, said
    # The FP32 model this export built: its own formula, nothing said.
    fp32 = next(r["file"] for r in json.loads(path.read_text())["results"]
                if r["format"] == "onnx")
    assert main(["models", fp32]) == 0
    assert "formula not recorded" not in capsys.readouterr().out


@pytest.mark.parametrize("name", ["garbage.onnx", "garbage.tflite"])
def test_sharpen_models_on_a_file_that_is_no_model_says_so_and_fails(tmp_path, capsys, name):
    """A file copied over wrong (an HTML error page saved as .onnx, a truncated download) was
    traced with exit 0 and, for .onnx, not a word that no engine can open it; a deploy script
    checking `sharpen models FILE` went on to ship it."""
    from sharpen.cli import main

    bad = tmp_path / name
    bad.write_bytes(b"<html>404 Not Found</html>\n" * 40)
    assert main(["models", str(bad)]) == 1
    out = capsys.readouterr().out
    engine = "ONNX Runtime" if name.endswith(".onnx") else "LiteRT"
    assert f"{engine} cannot open it (" in out, out


def test_the_onnx_export_is_the_same_under_any_string_hashing(tmp_path):
    """The edge student's ONNX (and the INT8 model made from it) differed from one
    `sharpen export` to the next with the same weights: onnxslim names the dims it cannot solve
    in the order Python's per-process string hashing gives. Two processes, two hash seeds."""
    import os
    import subprocess
    import sys

    pytest.importorskip("onnxslim")
    script = ("import sys, torch; from distill.students import create_student; "
              "from optimize.onnx_export import export_onnx; torch.manual_seed(0); "
              "export_onnx(create_student('edge'), sys.argv[1])")
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", script, str(tmp_path / f"{seed}.onnx")],
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    assert _sha(tmp_path / "1.onnx") == _sha(tmp_path / "2.onnx")
