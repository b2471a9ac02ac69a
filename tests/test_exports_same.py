"""`sharpen runs A B --same` on two export folders: whether two `sharpen export`s are the same
release (weights, settings, calibration, software; each artifact byte for byte, else its output
on the parity images), with runs --same's table and exit codes (0 the same, 1 they differ, 2
bad input). Real exports of the briefly trained `fast` student (tests/export_fixtures.py)."""
from __future__ import annotations

import shutil

import pytest

from runtime import host
from sharpen.cli import main
from test_runs_same import COMMIT, same, verdicts

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("skimage")

pytestmark = pytest.mark.slow  # real exports at toy sizes


def _formats() -> list[str]:
    from runtime.formats import FORMATS as ALL
    return ["onnx", "onnx-int8", *(["tflite-int8"] if not ALL["tflite-int8"].availability()
                                   else [])]


FORMATS = _formats()


@pytest.fixture(scope="module")
def exports(fast_student_pt, export_data_dir, tmp_path_factory):
    """a and b: one export run twice (b from another working directory, with 2 threads);
    c: the same with --seed 1. Exported as from a clean checkout at one commit: code with
    uncommitted changes cannot be shown the same."""
    root = tmp_path_factory.mktemp("exports")
    # Parity images named unlike scikit-image's photos: found again only where they were.
    parity = root / "held"
    parity.mkdir()
    for i, p in enumerate(sorted((export_data_dir / "parity").iterdir())):
        shutil.copyfile(p, parity / f"frame_{i}{p.suffix}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(host, "code_info", lambda: {"version": "0.1.0", "commit": COMMIT,
                                               "dirty": False})
        for name, extra in (("a", ["--threads", "1"]), ("b", ["--threads", "2"]),
                            ("c", ["--threads", "1", "--seed", "1"])):
            if name == "b":
                mp.chdir(root)
            assert main(["export", "--weights", str(fast_student_pt), "--formats",
                         ",".join(FORMATS), "--out", str(root / name), "--calib",
                         str(export_data_dir / "calib"), "--parity-images", str(parity),
                         "--calib-count", "4",
                         "--calib-size", "64", "--no-latency", "--quiet", *extra]) == 0
    return root


def test_one_export_run_twice_is_the_same_release(exports, capsys):
    code, text = same(capsys, exports / "a", exports / "b")
    assert code == 0, text
    rows = verdicts(text)
    for check in ("weights", "student", "settings", "code version"):
        assert rows[check] == "same", text
    for fmt in FORMATS:
        assert rows[f"artifact {fmt}"] == "same (byte for byte)", text
    # The thread count is shown, not counted: the artifacts say it did not matter.
    assert rows["setting threads"].startswith("not compared"), text
    assert text.splitlines()[-1] == "same: a and b"


def test_another_calibration_seed_differs_and_says_by_how_much(exports, capsys):
    code, text = same(capsys, exports / "a", exports / "c")
    assert code == 1, text
    rows = verdicts(text)
    # once: --seed's row was there twice, as calib_seed and as the calibration's own record
    assert rows["setting calibration.seed"] == "DIFFERS", text
    assert "setting calib_seed" not in rows, text
    assert rows["artifact onnx"] == "same (byte for byte)", text
    assert rows["artifact onnx-int8"].startswith("DIFFERS: largest difference "), text
    for fmt in FORMATS[1:]:   # the INT8 ones: their sidecars differ too, as their scales
        assert rows[f"artifact {fmt}"].startswith("DIFFERS: largest difference "), text
        assert "output on 2 parity images" in rows[f"artifact {fmt}"], text
    assert text.splitlines()[-1].startswith("differ: a and c (")


def test_a_tolerance_admits_int8_outputs_that_differ_little(exports, capsys):
    code, text = same(capsys, exports / "a", exports / "c", "--tolerance", "1")
    assert verdicts(text)["artifact onnx-int8"].startswith("same (within 1:"), text


def test_an_artifact_changed_after_its_export_differs(exports, tmp_path, capsys):
    shutil.copytree(exports / "b", tmp_path / "b")
    int8 = next((tmp_path / "b").glob("*_int8.onnx"))
    with open(int8, "ab") as f:
        f.write(b"\0")
    code, text = same(capsys, exports / "a", tmp_path / "b")
    assert code == 1, text
    row = verdicts(text)["artifact onnx-int8"]
    assert row.startswith("DIFFERS: a file differs from the one its export built"), text


def test_an_export_beside_a_folder_without_a_report_is_bad_input(exports, tmp_path, capsys):
    code, text = same(capsys, exports / "a", tmp_path)
    assert code == 2
    assert f"{tmp_path}: no export_report.json" in text


def test_the_report_records_the_command_and_where_it_ran(exports):
    """What produced the release: the command line as typed again, and its working directory
    (its relative paths are relative to it)."""
    import json
    rep = json.loads((exports / "b" / "export_report.json").read_text())
    assert rep["command"]["line"].startswith("sharpen export --weights ")
    assert "--threads 2" in rep["command"]["line"]
    assert rep["command"]["cwd"] == str(exports)


def test_an_edited_sidecar_beside_the_same_model_differs(exports, tmp_path, capsys):
    """An app reads a .tflite's input and output scales from its sidecar: one edited beside
    the same model bytes is another release."""
    if "tflite-int8" not in FORMATS:
        pytest.skip("tflite-int8 cannot be built here")
    import json
    shutil.copytree(exports / "b", tmp_path / "b")
    sidecar = next((tmp_path / "b").glob("*_int8.tflite.json"))
    record = json.loads(sidecar.read_text())
    record["output"]["scale"] *= 2
    sidecar.write_text(json.dumps(record))
    code, text = same(capsys, exports / "a", tmp_path / "b")
    assert code == 1, text
    assert verdicts(text)["artifact tflite-int8"].startswith(
        f"DIFFERS: its sidecar {sidecar.name} differs"), text


def test_a_deleted_sidecar_is_named_missing(exports, tmp_path, capsys):
    """A .tflite whose sidecar was deleted beside the same model bytes: 'its sidecar differs'
    sent the engineer comparing two files one of which is not there."""
    if "tflite-int8" not in FORMATS:
        pytest.skip("tflite-int8 cannot be built here")
    shutil.copytree(exports / "b", tmp_path / "b")
    sidecar = next((tmp_path / "b").glob("*_int8.tflite.json"))
    sidecar.unlink()
    code, text = same(capsys, exports / "a", tmp_path / "b")
    assert code == 1, text
    assert verdicts(text)["artifact tflite-int8"] == (
        f"DIFFERS: its sidecar {sidecar.name} is missing from b"), text


def test_an_export_beside_a_folder_that_is_not_there_names_it_so(exports, tmp_path, capsys):
    """A mistyped folder was 'no export_report.json', as if the folder were there without
    one (two mistyped training runs say 'no such folder')."""
    code, text = same(capsys, exports / "a", tmp_path / "nosuch")
    assert code == 2, text
    assert f"{tmp_path / 'nosuch'}: no such folder" in text, text


def test_out_writes_the_verdict_and_each_check_for_ci(exports, tmp_path, capsys):
    """A release pipeline keeps what --same found beside its exit code: --out was refused with
    --same ('--same prints its table'), leaving a CI job to parse a table of padded columns.
    Bad input writes its error there too, so a same.json of an earlier run is never read as
    this one's."""
    import json
    out = tmp_path / "verdict"
    code, text = same(capsys, exports / "a", exports / "c", "--out", out)
    assert code == 1, text
    rec = json.loads((out / "same.json").read_text())
    assert rec["same"] is False and rec["exit_code"] == 1, rec
    assert rec["a"] == str(exports / "a") and rec["b"] == str(exports / "c"), rec
    assert rec["verdict"] == text.splitlines()[-2], (rec, text)   # (the line saying where)
    checks = {c["check"]: c for c in rec["checks"]}
    assert list(checks) == [row.split("  ")[0] for row in text.splitlines()[2:-2]], text
    assert checks["artifact onnx"]["status"] == "same", rec
    assert checks["artifact onnx-int8"]["status"] == "differs", rec
    assert checks["artifact onnx-int8"]["verdict"] == verdicts(text)["artifact onnx-int8"]
    assert rec["differ"] == [w for w, c in checks.items() if c["status"] == "differs"], rec
    assert f"{out / 'same.json'}" in text.splitlines()[-1], text
    code, text = same(capsys, exports / "a", exports / "b", "--out", out)
    assert code == 0, text
    rec = json.loads((out / "same.json").read_text())
    assert rec["same"] is True and rec["exit_code"] == 0 and rec["differ"] == [], rec
    assert {c["check"]: c["status"] for c in rec["checks"]}["setting threads"] == "not compared"
    code, text = same(capsys, exports / "a", tmp_path / "nosuch", "--out", out)
    assert code == 2, text
    rec = json.loads((out / "same.json").read_text())
    assert rec["same"] is False and rec["exit_code"] == 2, rec
    assert rec["error"] == f"{tmp_path / 'nosuch'}: no such folder", rec


def test_a_long_list_setting_is_shown_by_its_length_and_ends(exports, tmp_path, capsys):
    """Exports parity-checked on 12 held-out REDS frames against one on the built-in photos:
    the 12 names, in full, made the table 560 columns wide, each row wrapped on a terminal."""
    import json
    shutil.copytree(exports / "b", tmp_path / "b")
    report = tmp_path / "b" / "export_report.json"
    rep = json.loads(report.read_text())
    names = [f"train_001_resized_{i:08d}" for i in range(12)]
    rep["settings"]["parity_images"] = names
    report.write_text(json.dumps(rep))
    code, text = same(capsys, exports / "a", tmp_path / "b")
    assert code == 1, text
    row = next(r for r in text.splitlines() if r.startswith("setting parity_images"))
    assert f"12: {names[0]} ... {names[-1]}" in row, text
    assert max(map(len, text.splitlines()[:-1])) < 200, text


def test_long_lists_of_the_same_ends_say_where_they_differ(exports, tmp_path, capsys):
    """Twelve parity images of which the 6th was another: shown by length and ends alone,
    both cells read the same beside 'DIFFERS', and the engineer could not see what did."""
    import json
    names = [f"train_001_resized_{i:08d}" for i in range(12)]
    for folder, sixth in (("a", names[5]), ("b", "train_001_resized_other")):
        shutil.copytree(exports / "b", tmp_path / folder)
        report = tmp_path / folder / "export_report.json"
        rep = json.loads(report.read_text())
        rep["settings"]["parity_images"] = [*names[:5], sixth, *names[6:]]
        report.write_text(json.dumps(rep))
    code, text = same(capsys, tmp_path / "a", tmp_path / "b")
    assert code == 1, text
    row = next(r for r in text.splitlines() if r.startswith("setting parity_images"))
    assert f"12: {names[0]} ... {names[-1]}; item 6: {names[5]}" in row, text
    assert f"12: {names[0]} ... {names[-1]}; item 6: train_001_resized_other" in row, text


def test_another_machine_is_shown_not_counted(exports, tmp_path, capsys):
    """The same bytes built on another CPU are the same release; the CPU is said."""
    import json
    shutil.copytree(exports / "b", tmp_path / "b")
    report = tmp_path / "b" / "export_report.json"
    rep = json.loads(report.read_text())
    for r in rep["results"]:
        r["extra"]["inputs"]["machine"] = "aarch64 Neoverse-V2"
    report.write_text(json.dumps(rep))
    code, text = same(capsys, exports / "a", tmp_path / "b")
    assert code == 0, text
    row = [line for line in text.splitlines() if line.startswith("machine ")]
    assert row and "aarch64 Neoverse-V2" in row[0] and "not compared" in row[0], text


@pytest.fixture(scope="module")
def clip_exports(fast_student_pt, tmp_path_factory):
    """clip: calibrated on a clip, its last fifth held out for the gate; clip-s1: the same
    with --seed 1; frames: calibrated on the clip's frames, as OpenCV decodes them, saved as
    PNGs named as its frames are (CLIP_000123); parity: on the frames, gated on another clip
    (--parity-images CLIP), and parity-s1 the same with --seed 1."""
    import cv2
    from runtime_fixtures import read_video, write_video
    root = tmp_path_factory.mktemp("clip-exports")
    (root / "clips").mkdir()
    (root / "frames").mkdir()
    (root / "held").mkdir()
    write_video(root / "clips" / "walk.mp4", n=15)
    for i, f in enumerate(read_video(root / "clips" / "walk.mp4")[0]):
        cv2.imwrite(str(root / "frames" / f"walk_{i:06d}.png"), f)
    shutil.copyfile(root / "clips" / "walk.mp4", root / "held" / "yard.mp4")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(host, "code_info", lambda: {"version": "0.1.0", "commit": COMMIT,
                                               "dirty": False})
        for name, extra in (("clip", ["--calib", "clips/walk.mp4"]),
                            ("clip-s1", ["--calib", "clips/walk.mp4", "--seed", "1"]),
                            ("frames", ["--calib", "frames"]),
                            ("parity", ["--calib", "frames", "--parity-images", "held"]),
                            ("parity-s1", ["--calib", "frames", "--parity-images", "held",
                                           "--seed", "1"])):
            mp.chdir(root)
            assert main(["export", "--weights", str(fast_student_pt), "--formats",
                         "onnx,onnx-int8", "--out", name, "--calib-count", "4",
                         "--calib-size", "32", "--no-latency", "--quiet", "--threads", "1",
                         *extra]) == 0
    return root


@pytest.mark.parametrize("a, b", [("clip", "clip-s1"), ("parity", "parity-s1")])
def test_int8_files_gated_on_a_clips_frames_are_compared_on_them(clip_exports, capsys, a, b):
    """The gate's frames of a clip (its held-out last fifth, or --parity-images CLIP) are
    found again in the clip: they were 'not recorded: ... not found here'."""
    code, text = same(capsys, clip_exports / a, clip_exports / b)
    assert code == 1, text
    row = verdicts(text)["artifact onnx-int8"]
    assert row.startswith("DIFFERS: largest difference "), text
    assert f"output on {3 if a == 'clip' else 8} parity images" in row, text



def test_a_clip_held_out_of_calib_records_its_folder(clip_exports):
    import json
    rep = json.loads((clip_exports / "clip" / "export_report.json").read_text())
    assert rep["settings"]["parity_folders"] == [str((clip_exports / "clips").resolve())]


def test_a_clip_and_its_frames_calibrate_the_same_release(clip_exports, capsys):
    """The same crops from a clip and from its frames saved as images build the same bytes:
    the files they came from (one clip, 15 PNGs) and the parity line's 'frames' for 'images'
    are shown, not counted."""
    code, text = same(capsys, clip_exports / "clip", clip_exports / "frames")
    assert code == 0, text
    rows = verdicts(text)
    assert rows["artifact onnx-int8"] == "same (byte for byte)", text
    files = rows["setting calibration.files_digest"]
    assert files.startswith("not compared (the same crops "), text
    assert rows["setting parity"].startswith("not compared"), text
    assert text.splitlines()[-1] == "same: clip and frames"


def test_an_artifact_missing_or_skipped_in_a_folder_is_named_so(exports, tmp_path, capsys):
    """Both reports name the format: a deleted file, or a format one export skipped, was
    'DIFFERS: in one export only', as a format only one export was asked for; deleted from
    both folders it was that too, though neither can be compared."""
    import json
    for name in ("a", "b"):
        shutil.copytree(exports / name, tmp_path / name)
    int8 = next((tmp_path / "b").glob("*_int8.onnx"))
    int8.unlink()
    code, text = same(capsys, tmp_path / "a", tmp_path / "b")
    assert code == 1, text
    assert verdicts(text)["artifact onnx-int8"] == (f"DIFFERS: its file {int8.name} is "
                                                    "missing from b"), text
    (tmp_path / "a" / int8.name).unlink()
    code, text = same(capsys, tmp_path / "a", tmp_path / "b")
    assert code == 1, text
    assert verdicts(text)["artifact onnx-int8"] == (f"not recorded: its file {int8.name} is "
                                                    "missing from both folders"), text
    report = tmp_path / "a" / "export_report.json"
    rep = json.loads(report.read_text())
    for r in rep["results"]:
        if r["format"] == "onnx-int8":
            r.update(status="skipped", file=None)
    report.write_text(json.dumps(rep))
    code, text = same(capsys, exports / "b", tmp_path / "a")
    assert code == 1, text
    assert verdicts(text)["artifact onnx-int8"] == "DIFFERS: built in b only (a: skipped)", text
    shutil.copyfile(report, tmp_path / "b" / "export_report.json")   # skipped in both
    code, text = same(capsys, tmp_path / "b", tmp_path / "a")
    assert verdicts(text)["artifact onnx-int8"] == "not compared (built in neither: skipped)"


def test_an_export_beside_a_training_run_is_named_as_each(exports, tmp_path, capsys):
    """An export and a training run: 'RUN: no export_report.json' left the user to see that
    the other folder was a training run, which --same compares only with another."""
    run = tmp_path / "fast-a"
    run.mkdir()
    (run / "train.log").write_text("sharpen distill: step 1/4\n")
    for pair in ((exports / "a", run), (run, exports / "a")):
        code, text = same(capsys, *pair)
        assert code == 2, text
        assert (f"{run} is a training run and {exports / 'a'} an export folder: --same "
                "compares two export folders or two training runs") in text, text


def test_an_older_versions_export_is_not_recorded_where_it_lacks_a_record(exports, tmp_path,
                                                                         capsys):
    """A report written before the weights' sha256, software and calibration were recorded
    (and the command, parity_folders): each calibration key it lacks read 'DIFFERS' and the
    weights 'sha256 -  DIFFERS', a release of the same bytes named as differing by what an
    older version did not write; the software was 'a checkpoint records no software'."""
    import json
    shutil.copytree(exports / "b", tmp_path / "old")
    report = tmp_path / "old" / "export_report.json"
    rep = json.loads(report.read_text())
    for key in ("command", "environment", "weights_sha256", "weights_path"):
        rep.pop(key)
    for key in ("calibration", "parity_folders", "weights_sha256"):
        rep["settings"].pop(key)
    report.write_text(json.dumps(rep))
    code, text = same(capsys, exports / "a", tmp_path / "old")
    assert code == 1, text
    rows = verdicts(text)
    assert rows["weights"] == ("not recorded: old's export_report.json (an older version's) "
                               "has no weights_sha256"), text
    assert rows["setting calibration.files_digest"] == (
        "not recorded: not in an older version's export_report.json"), text
    assert rows["code version"] == ("not recorded: old's export_report.json (an older "
                                    "version's) records no software"), text
    assert not [w for w, v in rows.items() if v.startswith("DIFFERS")], text
    assert "settings" not in rows, text   # ('calibration -, crops -  same' it said)
    # (no digest of the parity images is taken: 'compared by their digest' it said)
    assert rows["setting parity_folders"] == ("not compared (a path: the parity images are "
                                              "compared by name)"), text
    for fmt in FORMATS:
        assert rows[f"artifact {fmt}"] == "same (byte for byte)", text
    assert text.splitlines()[-1].startswith("not shown the same: a and old agree"), text


def test_a_folder_holding_two_exports_stands_for_them(exports, tmp_path, capsys):
    """`sharpen runs runs/ --same` takes the two runs in runs/; a folder holding two exports
    said '--same compares two run folders, got 1'."""
    shelf = tmp_path / "releases"
    shelf.mkdir()
    for name in ("a", "b"):
        shutil.copytree(exports / name, shelf / name)
    code, text = same(capsys, shelf)
    assert code == 0, text
    assert text.splitlines()[-1] == "same: a and b", text
    shutil.copytree(exports / "c", shelf / "c")
    code, text = same(capsys, shelf)
    assert code == 2, text
    assert f"--same compares two export folders, got 3 in {shelf}" in text, text


def test_two_fp32_exports_of_other_seeds_are_the_same_release(exports, fast_student_pt,
                                                              tmp_path, capsys, monkeypatch):
    """Neither export built an INT8 format, so neither drew calibration crops: a pipeline's
    --seed 1 and --calib-count 8 on one were 'DIFFERS' beside the same FP32 bytes."""
    import json
    monkeypatch.setattr(host, "code_info", lambda: {"version": "0.1.0", "commit": COMMIT,
                                                    "dirty": False})
    for name, extra in (("p", []), ("q", ["--seed", "1", "--calib-count", "8"])):
        assert main(["export", "--weights", str(fast_student_pt), "--formats", "onnx", "--out",
                     str(tmp_path / name), "--parity-images", str(exports / "held"),
                     "--no-latency", "--quiet", "--threads", "1", *extra]) == 0
    settings = json.loads((tmp_path / "q" / "export_report.json").read_text())["settings"]
    assert (settings["calib_seed"], settings["calib_count"]) == (1, 8), settings
    capsys.readouterr()   # (the exports' tables)
    code, text = same(capsys, tmp_path / "p", tmp_path / "q")
    assert code == 0, text
    rows = verdicts(text)
    for k in ("setting calib_seed", "setting calib_count"):
        assert rows[k] == ("not compared (neither export built a calibrated format: no crops "
                           "were drawn)"), text
    assert rows["artifact onnx"] == "same (byte for byte)", text
    assert text.splitlines()[-1] == "same: p and q", text


def test_an_export_without_int8_beside_one_with_it_says_so_once(exports, fast_student_pt,
                                                                 export_data_dir, tmp_path,
                                                                 capsys, monkeypatch):
    """Mixed formats: an FP32-only export calibrates nothing. Each calibration record of the
    other read 'DIFFERS' against '<unset>' (12 rows); the artifact in one export only is what
    differs, and the calibration is one row saying why it is not compared. Exported as a user
    exports FP32 alone, without the calibration options: its default --calib-count (64) and
    the other's --seed 1 were 'DIFFERS', though it draws no crops."""
    monkeypatch.setattr(host, "code_info", lambda: {"version": "0.1.0", "commit": COMMIT,
                                                    "dirty": False})
    assert main(["export", "--weights", str(fast_student_pt), "--formats", "onnx", "--out",
                 str(tmp_path / "fp32"), "--parity-images", str(exports / "held"),
                 "--no-latency", "--quiet", "--threads", "1"]) == 0
    capsys.readouterr()   # (the export's table)
    code, text = same(capsys, tmp_path / "fp32", exports / "c")
    assert not [k for k in verdicts(text) if k.startswith(("setting calib", "settings"))], text
    code, text = same(capsys, tmp_path / "fp32", exports / "a")
    assert code == 1, text
    rows = verdicts(text)
    assert not [k for k in rows if k.startswith(("setting calib", "settings"))], text
    assert rows["calibration"] == ("not compared (fp32 built no calibrated format: the "
                                   "artifacts say what differs)"), text
    assert rows["artifact onnx"] == "same (byte for byte)", text
    assert rows["artifact onnx-int8"] == "DIFFERS: in one export only", text
    assert text.splitlines()[-1] == ("differ: fp32 and a (" + ", ".join(
        f"artifact {f}" for f in FORMATS[1:]) + ")"), text
