"""A student, format or calibration that fails under `sharpen bench` or `pytest benchmarks/`
fails alone and says why; float layers, seeds, locks on --out and --cache, and 8-bit quality
scoring (bench_fixtures). Timings are never asserted.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench_fixtures import ROOT, _bench, _blurred_frames, _run_suite
from distill.checkpoint import atomic_save, make_checkpoint
from distill.students import create_student
from runtime_fixtures import table_rows

pytestmark = pytest.mark.slow  # whole pipelines at toy sizes: tens of seconds


@pytest.mark.parametrize("case", ["unreadable checkpoint", "export error"])
def test_a_student_whose_export_fails_fails_once_with_why(env, tmp_path, case):
    """An export that raised (a checkpoint that is not one, a cache folder that is a file)
    failed each of the student's latency tests with the same traceback, the reason at its end;
    the quality evaluation stopped for every student. Then the summary's quality table and
    --benchmark-json's `sharpen_quality` left the failed student out, where `sharpen bench`'s
    report has its rows, status "failed" with the reason."""
    broken = tmp_path / "student-broken.pt"
    broken.write_bytes(bytes(range(256)) * 8)
    students, says, test_of = [str(env / "student-good.pt"), str(broken)], \
        "student-broken.pt is not a PyTorch checkpoint", "broken"
    if case == "export error":   # a valid checkpoint: its cache folder cannot be made
        from benchmarks.artifacts import artifact_folder, resolve_students

        blocker = artifact_folder(resolve_students(students[:1])[0], tmp_path / "cache")
        blocker.parent.mkdir(parents=True)
        blocker.write_text("a file where the export's folder goes")
        students, says, test_of = students[:1], "exists and is not a folder", "good"
    _, out = _run_suite("-rs", "-k", "not teacher_tiled", "--students", *students,
                        "--teacher-weights", str(env / "teacher.pt"), "--data",
                        str(env / "pairs"), "--formats", "onnx", "--cache",
                        str(tmp_path / "cache"), "--sizes", "96x64", "--min-ssim-ratio", "0",
                        "--benchmark-json", str(tmp_path / "bench.json"), expect=1)
    assert "1 failed" in out, out
    assert "Traceback" not in out and "Error: " not in out.split("short test summary")[0], out
    [failure] = [part for part in out.split("\n_") if f"[{test_of}-" in part.split("\n")[0]]
    # the checkpoint's path once: the reason names it where the checkpoint is unreadable
    where = "" if case == "unreadable checkpoint" else f" ({students[0]})"
    assert f"student {test_of}{where}: " in failure and says in failure, failure
    # the student's other tests skip with the reason; the rest run
    assert "(a failure at the first test that needed it)" in out and says in out, out
    if case == "unreadable checkpoint":
        assert "test_student_keeps_teacher_ssim" not in out.split("short test summary")[1], out
        table = out.split("sharpen quality")[1]
        assert "student good" in table, out
        # its rows, as in `sharpen bench`'s report: failed, with the reason
        [row] = [line for line in table.splitlines() if "student broken" in line
                 and "PyTorch eager" in line]
        assert "failed: exporting it to onnx failed: " in row and says in row, row
        rows = {r["key"]: r for r in json.loads((tmp_path / "bench.json").read_text())
                ["sharpen_quality"]["rows"] if r["student"] == "broken"}
        assert {k: r["status"] for k, r in rows.items() if r["status"] != "skipped"} == {
            "broken/pytorch": "failed", "broken/onnx": "failed"}, rows
        assert says in rows["broken/pytorch"]["reason"], rows


def test_a_quality_evaluation_that_fails_leaves_the_formats_not_requested_skipped(env,
                                                                                  tmp_path):
    """A teacher checkpoint of garbage bytes failed the quality evaluation, and with it the
    parity test of every format, those --formats left out too: 9 failures for one teacher,
    and the formats the user did not ask for among them."""
    teacher = tmp_path / "teacher-broken.pt"
    teacher.write_bytes(bytes(range(256)) * 8)
    _, out = _run_suite("-rs", "-k", "not teacher_tiled", "--students",
                        str(env / "student-good.pt"), "--teacher-weights", str(teacher),
                        "--data", str(env / "pairs"), "--formats", "onnx", "--cache",
                        str(tmp_path / "cache"), "--sizes", "96x64", expect=1)
    # the SSIM gate, onnx's parity and the reference rows: what the teacher's outputs judge
    assert "3 failed" in out, out
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert not [line for line in failed if "onnx-int8" in line or "tflite" in line], failed
    assert "not requested (--formats)" in out.split("short test summary")[1], out


def test_k_exports_only_the_formats_its_tests_use(env, tmp_path):
    """`-k fast` or `-k "onnx and not int8"` exported the selected students in every format of
    --formats (minutes of INT8 calibration and TFLite conversion on the real students) for
    tests that use one or two."""
    _, out = _run_suite("-k",
                        "test_artifact_parity and onnx or test_student_latency and ort-fp32",
                        "--students", str(env / "student-good.pt"), "--teacher-weights",
                        str(env / "teacher.pt"), "--data", str(env / "pairs"), "--formats",
                        "onnx,tflite-fp16", "--cache", str(tmp_path / "cache"), "--sizes",
                        "96x64", expect=0)
    assert "2 passed" in out, out   # onnx's parity and latency
    [stamp] = (tmp_path / "cache").glob("student-good*/bench_artifacts.json")
    assert list(json.loads(stamp.read_text())["formats"]) == ["onnx"], out
    built = sorted(p.suffix for p in stamp.parent.iterdir() if p.suffix in (".onnx", ".tflite"))
    assert built == [".onnx"], built
    assert "no selected test uses it (-k): tflite-fp16" in out, out


def test_a_student_that_fails_is_reported_failed_and_the_others_measured(env, tmp_path,
                                                                          capsys):
    """`sharpen bench --students good,broken` stopped the whole run at the broken student's
    export with a bare error (exit 2, no report): a checkpoint of garbage bytes, or a valid
    one of a student architecture this process does not know."""
    broken = tmp_path / "student-broken.pt"
    broken.write_bytes(bytes(range(256)) * 8)
    good = create_student("fast", width=8)
    atomic_save(make_checkpoint(good, kind="student", arch="nosuch", arch_args=good.arch_args),
                tmp_path / "student-other.pt")
    rc = _bench(env, "failed", "--students",
                f"{env / 'student-good.pt'},{broken},{tmp_path / 'student-other.pt'}",
                "--formats", "onnx", "--sizes", "96x64", "--stream-frames", "2",
                "--min-ssim-ratio", "0")
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "Traceback" not in err, err
    rep = json.loads((env / "failed" / "report.json").read_text())
    why = {"broken": "student-broken.pt is not a PyTorch checkpoint",
           "other": "student 'nosuch' is not registered"}
    assert {f["student"]: f["path"] for f in rep["failed"]} == {
        "broken": str(broken), "other": str(tmp_path / "student-other.pt")}
    for name, says in why.items():
        # (the formats --formats left out keep their skipped rows, as for any student)
        rows = [r for r in rep["quality"]["rows"]
                if r["student"] == name and r["status"] != "skipped"]
        assert {r["key"]: r["status"] for r in rows} == {f"{name}/pytorch": "failed",
                                                         f"{name}/onnx": "failed"}, rows
        assert all("exporting it to onnx failed" in r["reason"] and says in r["reason"]
                   for r in rows), rows
        lat = [r for r in rep["latency"]["rows"] + rep["latency"]["stream"]
               if r["student"] == name and r["status"] != "skipped"]
        assert {r["backend"] for r in lat} == {"pytorch", "ort-fp32", "pipeline-ort-fp32"}
        assert all(r["status"] == "failed" and says in r["reason"] for r in lat), lat
        [check] = [c for c in rep["checks"] if c["model"] == name]
        assert not check["passed"] and says in check["message"], check
        assert f"student {name!r}" in check["message"], check
        assert says in err, err
    # the good student is measured as usual, and its checks pass
    ok = {r["key"]: r["status"] for r in rep["quality"]["rows"]
          if r["student"] == "good" and r["status"] != "skipped"}
    assert ok == {"good/pytorch": "ok", "good/onnx": "ok"}, ok
    timed = {r["backend"] for r in rep["latency"]["rows"] + rep["latency"]["stream"]
             if r["student"] == "good" and r["status"] == "ok"}
    assert timed == {"pytorch", "ort-fp32", "pipeline-ort-fp32"}, rep["latency"]
    assert all(c["passed"] for c in rep["checks"] if c["model"].startswith("good")), rep["checks"]
    md = (env / "failed" / "report.md").read_text()
    assert "| student broken | pytorch |" in md and "failed: exporting it to onnx failed" in md
    assert "sharpen bench: 2 students failed, not measured: broken, other" in err, err
    # a bad --formats is still a usage error, not every student's failure
    assert _bench(env, "bogus", "--students", str(broken), "--formats", "bogus") == 2
    assert "unknown format 'bogus'" in capsys.readouterr().err


def test_k_selects_a_latency_test_by_student_and_backend_as_one_id(env, tmp_path):
    """`-k "good-ort-int8"`, the student and the backend as the test id spells them, selected
    nothing: the size stood between them (`good-96x64-ort-int8`)."""
    _, out = _run_suite("--collect-only", "-k", "good-ort-int8", "--students",
                        str(env / "student-good.pt"), "--sizes", "96x64,160x96", expect=0)
    assert [ln for ln in out.splitlines() if "::" in ln] == [
        f"benchmarks/test_latency.py::test_student_latency[good-ort-int8-{z}]"
        for z in ("96x64", "160x96")], out


def test_a_format_whose_export_failed_fails_its_first_test_not_a_skip(env, tmp_path):
    """A format whose build raised (the others built) skipped its latency tests as if this
    machine could not run it: `-k "ort-int8"` passed with the INT8 export broken. The first
    test that needs it fails with the export's reason, the later ones skip with it, and the
    student's other formats are measured."""
    (tmp_path / "break_int8.py").write_text(
        "import optimize.onnx_int8 as oi\n\n\n"
        "def fails(*args, **kw):   # a calibrator error, as test_export_cli's\n"
        "    raise RuntimeError('calibration failed')\n\n\n"
        "oi.quantize_onnx_int8 = fails\n")
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "benchmarks"), "-p", "no:cacheprovider",
           "-p", "break_int8", "-q", "-rs", "-k", "ort-int8 or ort-fp32", "--students",
           str(env / "student-good.pt"), "--formats", "onnx,onnx-int8", "--cache",
           str(tmp_path / "cache"), "--sizes", "96x64,64x48", "--calib-count", "2"]
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path})
    out = res.stdout + res.stderr
    assert res.returncode == 1 and "1 failed, 2 passed, 1 skipped" in out, out
    assert "Traceback" not in out, out
    says = (f"student good ({env / 'student-good.pt'}): exporting it to onnx-int8 failed: "
            "build failed: RuntimeError: calibration failed")
    [failure] = [part for part in out.split("\n_") if "[good-ort-int8-96x64]" in part]
    assert says in failure, failure
    assert f"{says} (a failure at the first test that needed it)" in out, out


def test_a_student_that_failed_in_a_test_is_not_exported_for_the_quality_evaluation(
        env, tmp_path):
    """A student whose checkpoint failed in its latency tests (quick mode reads it for its
    memory bound) was exported all the same when a later student's quality test evaluated the
    set (minutes of INT8 calibration), and evaluated where the summary said it was not."""
    broken = tmp_path / "student-broken.pt"
    broken.write_bytes(bytes(range(256)) * 8)
    _, out = _run_suite("-k", "pytorch or ort-fp32 or keeps_teacher", "--students",
                        f"{broken},{env / 'student-good.pt'}", "--teacher-weights",
                        str(env / "teacher.pt"), "--data", str(env / "pairs"), "--formats",
                        "onnx", "--cache", str(tmp_path / "cache"), "--sizes", "96x64",
                        "--min-ssim-ratio", "0", expect=1)
    assert "1 failed, 3 passed, 2 skipped" in out, out
    assert "reading its checkpoint failed" in out, out
    assert "students that failed, not measured: broken" in out, out
    # its row in the quality table says so, not a student left out
    [row] = [line for line in out.split("sharpen quality")[1].splitlines()
             if "student broken" in line and "PyTorch eager" in line]
    assert "failed: reading its checkpoint failed: " in row, row
    cached = os.listdir(tmp_path / "cache")
    assert not [n for n in cached if "broken" in n], cached   # no export (nor its lock) begun
    assert [n for n in cached if n.startswith("student-good-")], cached


def _calib_unreadable_but_one(folder: Path, good: Path) -> Path:
    """A --calib folder whose only readable image is the one the export holds out for parity:
    the FP32 formats' parity gate has an image, INT8 calibration has none."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(4):
        (folder / f"a{i}.png").write_bytes(b"not an image " * 20)
    (folder / "z.png").write_bytes(good.read_bytes())
    return folder


@pytest.fixture(scope="module")
def calibfail_run(env, tmp_path_factory):
    """A bench run whose INT8 export fails for its --calib images: report.json, report.md,
    the run's exit status, its stderr and its stdout (the tables)."""
    tmp = tmp_path_factory.mktemp("calibfail")
    calib = _calib_unreadable_but_one(tmp / "calib", env / "pairs" / "target" / "coffee.png")
    with pytest.MonkeyPatch.context() as mp:
        term, err = io.StringIO(), io.StringIO()
        mp.setattr(sys, "stdout", term)
        mp.setattr(sys, "stderr", err)
        rc = _bench(env, "calibfail", "--students", str(env / "student-good.pt"), "--formats",
                    "onnx,onnx-int8", "--calib", str(calib), "--cache", str(tmp / "cache"),
                    "--sizes", "96x64", "--stream-frames", "2", "--min-ssim-ratio", "0")
    out = env / "calibfail"
    return (json.loads((out / "report.json").read_text()), (out / "report.md").read_text(), rc,
            err.getvalue(), term.getvalue())


CALIB_FAILED = "no calibration images: none of the 4 files is a readable image"


def test_a_calibration_error_fails_the_calibrated_formats_alone(calibfail_run):
    """An export that raised for its INT8 calibration images (before building anything)
    failed the student in every format, FP32 and PyTorch included, though only the INT8
    formats calibrate: they fail with the reason, and the others are measured."""
    rep, _, rc, err, _ = calibfail_run
    assert rc == 1 and "Traceback" not in err, err
    assert rep["failed"] == [], rep["failed"]
    q = {r["key"]: r for r in rep["quality"]["rows"] if r["student"] == "good"}
    assert q["good/pytorch"]["status"] == "ok" and q["good/onnx"]["status"] == "ok", q
    assert q["good/onnx-int8"]["status"] == "error", q["good/onnx-int8"]
    assert CALIB_FAILED in q["good/onnx-int8"]["reason"], q["good/onnx-int8"]
    lat = {r["backend"]: r["status"] for r in rep["latency"]["rows"] + rep["latency"]["stream"]
           if r["student"] == "good"}
    assert {k: lat[k] for k in ("pytorch", "ort-fp32", "pipeline-ort-fp32")} == dict.fromkeys(
        ("pytorch", "ort-fp32", "pipeline-ort-fp32"), "ok"), lat
    [check] = [c for c in rep["checks"] if not c["passed"]]
    assert check["model"] == "good/onnx-int8" and CALIB_FAILED in check["message"], rep["checks"]
    assert rep["artifacts"]["good"]["formats"]["onnx"]["status"] == "pass", rep["artifacts"]


def test_a_format_whose_build_failed_has_failed_latency_rows(calibfail_run):
    """A format whose build failed (the student's others built) had its latency rows marked
    skipped, as a format this machine cannot run, in the terminal, report.md and report.json,
    while its quality row said the export failed: they say failed, with the reason."""
    rep, md, _, _, term = calibfail_run
    [row] = [r for r in rep["latency"]["rows"]
             if r["student"] == "good" and r["backend"] == "ort-int8"]
    assert row["status"] == "failed", row
    calib = rep["settings"]["calibration"].split()[1]   # "--calib DIR (a fifth held out ...)"
    # the folder named, and why its one readable image calibrated nothing
    assert row["reason"] == (f"exporting it to onnx-int8 failed: --calib {calib}: {CALIB_FAILED} "
                             "(besides the 1 image held out for parity)"), row
    assert "ONNX Runtime INT8" not in " ".join(s["what"] for s in rep["skipped"]), rep["skipped"]
    brief = row["reason"].split(" (besides")[0]   # the table leaves out the parenthesis
    assert (f"| student good | ONNX Runtime INT8 | INT8 | 96x64 | - | - | - | - | - | - | - | "
            f"- | failed: {brief} |") in md, md   # its peak and video run peak: none either
    # (the latency table's row, by its size: the quality and what-to-ship tables name the
    # backend too, each row on one line of the plain tables a pipe gets)
    [line] = [ln for ln in term.splitlines() if "ONNX Runtime INT8" in ln
              and "student good" in ln and "96x64" in ln]
    assert "failed: exporting it to" in line, term
    # no second check for it: the parity check says the export failed
    assert [c["model"] for c in rep["checks"] if not c["passed"]] == ["good/onnx-int8"]


def test_a_calib_folder_with_no_readable_image_fails_the_int8_formats_alone(env, tmp_path,
                                                                             capsys):
    """A --calib folder of corrupt files failed the whole student, FP32 formats and PyTorch
    eager included: the FP32 formats' parity images are held out of --calib, and it had none.
    The INT8 formats fail with a reason naming the folder; the others are gated on the
    built-in parity photos and measured, in `sharpen bench` and in the pytest suite."""
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(4):
        (calib / f"a{i}.png").write_bytes(b"not an image " * 20)
    says = f"--calib {calib}: none of its 4 images is readable"
    good = str(env / "student-good.pt")
    rc = _bench(env, "calib-unreadable", "--students", good, "--formats", "onnx,onnx-int8",
                "--calib", str(calib), "--cache", str(tmp_path / "cache"), "--sizes", "96x64",
                "--stream-frames", "2", "--min-ssim-ratio", "0")
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err, err
    rep = json.loads((env / "calib-unreadable" / "report.json").read_text())
    assert rep["failed"] == [], rep["failed"]
    q = {r["key"]: r for r in rep["quality"]["rows"] if r["student"] == "good"}
    assert q["good/pytorch"]["status"] == q["good/onnx"]["status"] == "ok", q
    assert q["good/onnx-int8"]["status"] == "error" and says in q["good/onnx-int8"]["reason"], q
    lat = {r["backend"]: r for r in rep["latency"]["rows"] + rep["latency"]["stream"]
           if r["student"] == "good"}
    assert {k: lat[k]["status"] for k in ("pytorch", "ort-fp32", "pipeline-ort-fp32")} == \
        dict.fromkeys(("pytorch", "ort-fp32", "pipeline-ort-fp32"), "ok"), lat
    assert lat["ort-int8"]["status"] == "failed" and says in lat["ort-int8"]["reason"], lat
    assert [c["model"] for c in rep["checks"] if not c["passed"]] == ["good/onnx-int8"]
    onnx = rep["artifacts"]["good"]["formats"]["onnx"]
    assert onnx["status"] == "pass" and onnx["export_parity"], onnx
    # the pytest suite: the INT8 test fails with the reason, the FP32 and PyTorch ones pass
    _, out = _run_suite("-k", "test_student_latency", "--students", good, "--formats",
                        "onnx,onnx-int8", "--calib", str(calib), "--cache",
                        str(tmp_path / "cache2"), "--sizes", "96x64", expect=1)
    assert "1 failed, 2 passed" in out, out
    [failure] = [part for part in out.split("\n_") if "[good-ort-int8-96x64]" in part]
    assert f"exporting it to onnx-int8 failed: {says}" in failure, failure


def test_a_calibration_error_does_not_pass_an_earlier_int8_build_for_this_one(env, tmp_path):
    """When the INT8 formats fail for their calibration images, the FP32 formats' export
    carries the folder's earlier INT8 build (other calibration images) into its report: that
    build must not stand for the failed one."""
    from benchmarks.artifacts import ensure_artifacts, resolve_students

    st = resolve_students([str(env / "student-good.pt")])[0]
    cache = tmp_path / "cache"
    first = ensure_artifacts(st, cache, "onnx,onnx-int8", calib_count=2, quiet=True)
    assert first.get("onnx-int8").status in ("pass", "fail"), first.to_dict()
    calib = _calib_unreadable_but_one(tmp_path / "calib", env / "pairs" / "target" / "coffee.png")
    from runtime.warn import SharpenWarning
    with pytest.warns(SharpenWarning) as warned:   # expected: each unreadable image, by name
        arts = ensure_artifacts(st, cache, "onnx,onnx-int8", calib_count=2, quiet=True,
                                calib=[str(calib)])
    assert {f"a{i}.png" for i in range(4)} <= {
        str(w.message).split("/")[-1].split(":")[0] for w in warned}, [str(w.message)
                                                                       for w in warned]
    assert arts.get("onnx").status == "pass", arts.to_dict()
    int8 = arts.get("onnx-int8")
    assert int8.status == "error" and not int8.usable, arts.to_dict()
    assert "none of the 4 files is a readable image" in int8.reason, int8


def test_a_failed_students_line_names_its_checkpoint_once(env, tmp_path, capsys):
    """"student 'broken' (PATH): ... failed: PATH is not a PyTorch checkpoint": the lines that
    say a student failed named its checkpoint twice where the reason names it already."""
    broken = tmp_path / "student-broken.pt"
    broken.write_bytes(bytes(range(256)) * 8)
    rc = _bench(env, "broken-once", "--students", str(broken), "--formats", "onnx",
                "--no-latency")
    err = capsys.readouterr().err
    assert rc == 1, err
    says = f"{broken} is not a PyTorch checkpoint"
    lines = [ln for ln in err.splitlines() if "student broken" in ln or "student 'broken'" in ln]
    assert len(lines) == 2 and all(says in ln and ln.count(str(broken)) == 1 for ln in lines), err
    rep = json.loads((env / "broken-once" / "report.json").read_text())
    [check] = rep["checks"]
    assert says in check["message"] and check["message"].count(str(broken)) == 1, check
    # ... and in the pytest suite's failure, and the skips that repeat it
    _, out = _run_suite("-k", "pytorch", "--students", str(broken), "--sizes", "96x64,64x48",
                        "--cache", str(tmp_path / "cache"), "-rs", expect=1)
    lines = [ln for ln in out.splitlines() if "student broken" in ln]
    assert len(lines) == 2 and all(says in ln and ln.count(str(broken)) == 1 for ln in lines), out
    # a reason that does not name it keeps it in the line (a --calib with no readable image
    # was one; it fails the INT8 formats alone now, each with a check of its own)
    from benchmarks.artifacts import resolve_students
    from benchmarks.quality import failed_checks

    [st] = resolve_students([str(env / "student-good.pt")])
    why = "exporting it to onnx failed: no space left on device"
    [check] = failed_checks([st], {"good": why})
    assert check["message"] == f"student 'good' ({st.path}): not measured: {why}", check


def test_a_failed_students_warning_promises_no_other_student_that_failed(env, tmp_path,
                                                                          capsys):
    """With every student broken, the last one's warning still said "not measured, the other
    students are" while none was: it spoke of the others without looking whether they had
    failed too."""
    paths = []
    for name in ("student-b1.pt", "student-b2.pt"):
        paths.append(tmp_path / name)
        paths[-1].write_bytes(bytes(range(256)) * 8)
    rc = _bench(env, "all-broken", "--students", ",".join(map(str, paths)), "--formats",
                "onnx", "--no-latency")
    err = capsys.readouterr().err
    assert rc == 1, err
    first, last = [ln for ln in err.splitlines() if ln.startswith("warning: student b")]
    assert "the run goes on with the other students" in first, err
    assert last.endswith("; not measured") and "other students" not in last, err


def test_a_failed_students_artifact_folder_is_the_one_its_export_uses(env, tmp_path):
    """report.json's "artifacts" folder of a student whose export raised was named without
    the --float-layers suffix that its export's cache folder has: a folder no run writes."""
    broken = tmp_path / "student-broken.pt"
    broken.write_bytes(bytes(range(256)) * 8)
    rc = _bench(env, "float-failed", "--students", str(broken), "--formats", "onnx-int8",
                "--float-layers", "head", "--cache", str(tmp_path / "cache"), "--no-latency")
    assert rc == 1
    rep = json.loads((env / "float-failed" / "report.json").read_text())
    assert rep["artifacts"]["broken"]["folder"].endswith("-float-head"), rep["artifacts"]


def test_a_failed_student_is_in_the_real_blur_tables_as_failed(env, tmp_path, capsys):
    """A student whose checkpoint failed had no row in the real-blur tables (--real-pairs,
    --real-nogt): it vanished there while every other table said it failed."""
    broken = tmp_path / "student-broken.pt"
    broken.write_bytes(bytes(range(256)) * 8)
    good = env / "student-good.pt"
    rc = _bench(env, "real-failed", "--students", f"{broken},{good}", "--formats", "onnx",
                "--no-latency", "--min-ssim-ratio", "0", "--real-pairs", str(env / "pairs"),
                "--real-nogt", str(_blurred_frames(env, "frames-failed")))
    term = capsys.readouterr().out
    assert rc == 1, term
    rep = json.loads((env / "real-failed" / "report.json").read_text())
    [why] = [f["reason"] for f in rep["failed"]]
    md = (env / "real-failed" / "report.md").read_text()
    for key in ("pairs", "nogt"):
        real = rep["real_blur"][key]
        assert real["broken"] == {"status": "failed", "reason": why}, real
        assert "sharpness" in real["good"] and "sharpness" in real["teacher"], real
    dashes = {"pairs": " - | - | - | - | - |", "nogt": " - |"}
    for key, rest in dashes.items():
        assert f"| broken | failed: {why} |{rest}" in md, md
    assert len([r for r in table_rows(term) if r[0] == "broken"]) == 2, term


def test_a_float_layer_a_student_lacks_is_a_usage_error_before_any_export(env, tmp_path,
                                                                           capsys):
    """--float-layers naming a layer a student lacks failed that student's whole export at its
    turn (FP32 and PyTorch included, minutes in): a typo, or a list meant for another
    architecture, refused at once as `sharpen export` refuses it, naming the layer and each
    such student's layers."""
    good, seed = env / "student-good.pt", env / "student-bad.pt"   # fast and seed students
    cache = tmp_path / "cache"
    for students, layers, says in (
            ([good], "nosuchlayer", "'nosuchlayer' is not a layer of fast"),
            # dec.0 is a layer of fast, not of seed: the one list cannot serve both
            ([good, seed], "dec.0", "'dec.0' is not a layer of seed")):
        rc = _bench(env, "float-never-made", "--students", ",".join(map(str, students)),
                    "--formats", "onnx,onnx-int8", "--float-layers", layers, "--cache",
                    str(cache))
        err = capsys.readouterr().err
        assert rc == 2 and says in err and "Traceback" not in err, err
        [line] = [ln for ln in err.splitlines() if says in ln]
        assert "--float-layers" in line and "choose from " in line and "output" in line, line
        assert not cache.exists() and not (env / "float-never-made").exists()
    assert "student bad" in line and str(seed) in line and "student good" not in line, line
    # the pytest suite, as it stops on a bad option value: once, pytest's usage error
    _, out = _run_suite("--students", str(good), "--float-layers", "nosuchlayer", "--cache",
                        str(cache), "--sizes", "96x64", expect=4)
    assert out.count("'nosuchlayer' is not a layer of fast") == 1, out
    assert "Traceback" not in out and not cache.exists(), out


def _blocked_cache(env: Path, cache: Path) -> Path:
    """A cache whose folder for student-good is a file: its export raises ("output path ...
    exists and is not a folder") while its checkpoint is sound."""
    from benchmarks.artifacts import artifact_folder, resolve_students

    blocker = artifact_folder(resolve_students([str(env / "student-good.pt")])[0], cache)
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the export's folder goes")
    return cache


@pytest.mark.parametrize("order", ["pytorch first", "ort-fp32 first"])
def test_pytorch_eager_is_timed_whatever_the_export_and_the_test_order(env, tmp_path, order):
    """A sound checkpoint whose export raised: its PyTorch eager latency was timed when its
    test ran before the first test that exported, and skipped ("exporting it ... failed")
    when it ran after. PyTorch eager needs the checkpoint alone: timed in either order; the
    ONNX test fails with the export's reason."""
    cache = _blocked_cache(env, tmp_path / "cache")
    ids = [f"test_latency.py::test_student_latency[good-{b}-96x64]" for b in ("pytorch",
                                                                              "ort-fp32")]
    first, second = ids if order == "pytorch first" else ids[::-1]
    _, out = _run_suite(str(ROOT / "benchmarks" / second), "-p", "no:randomly", "-rs",
                        "--students", str(env / "student-good.pt"), "--formats", "onnx",
                        "--cache", str(cache), "--sizes", "96x64", file=first, expect=1)
    assert "1 failed, 1 passed" in out and "Traceback" not in out, out
    [failure] = [part for part in out.split("\n_") if "[good-ort-fp32-96x64]" in part]
    assert (f"student good ({env / 'student-good.pt'}): exporting it to onnx failed: output "
            "path ") in failure and "exists and is not a folder" in failure, failure


def test_an_export_error_of_a_sound_checkpoint_fails_its_formats_not_pytorch(env, tmp_path,
                                                                            capsys):
    """`sharpen bench`: an export that raised for a sound checkpoint (here its cache folder is
    a file) failed the whole student, PyTorch eager included, which needs only the
    checkpoint: the formats fail with the reason, PyTorch eager is measured."""
    cache = _blocked_cache(env, tmp_path / "cache")
    rc = _bench(env, "export-blocked", "--students", str(env / "student-good.pt"), "--formats",
                "onnx", "--cache", str(cache), "--sizes", "96x64", "--stream-frames", "2",
                "--min-ssim-ratio", "0")
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err, err
    rep = json.loads((env / "export-blocked" / "report.json").read_text())
    assert rep["failed"] == [], rep["failed"]
    says = "exists and is not a folder"
    q = {r["key"]: r for r in rep["quality"]["rows"] if r["student"] == "good"}
    assert q["good/pytorch"]["status"] == "ok", q
    assert q["good/onnx"]["status"] == "error" and says in q["good/onnx"]["reason"], q
    lat = {r["backend"]: r for r in rep["latency"]["rows"] + rep["latency"]["stream"]
           if r["student"] == "good" and r["status"] != "skipped"}
    assert {k: r["status"] for k, r in lat.items()} == {
        "pytorch": "ok", "ort-fp32": "failed", "pipeline-ort-fp32": "failed"}, lat
    assert says in lat["ort-fp32"]["reason"] and says in lat["pipeline-ort-fp32"]["reason"], lat
    assert [c["model"] for c in rep["checks"] if not c["passed"]] == ["good/onnx"], rep["checks"]
    assert f"student good ({env / 'student-good.pt'}): exporting it to onnx failed: " in err, err


def test_float_layers_leave_a_checkpoint_that_does_not_load_to_its_student(env, tmp_path,
                                                                          capsys):
    """--float-layers' up-front check loads each student; a checkpoint that raised there
    anything but a CheckpointError (here a KeyError: its 'arch' missing) crashed the bench with
    a traceback and errored every test of the pytest suite. It is that student's failure, as
    without --float-layers; the others are measured."""
    model = create_student("fast", width=8)
    ckpt = make_checkpoint(model, kind="student", arch="fast", arch_args=model.arch_args)
    del ckpt["arch"]
    odd = tmp_path / "student-odd.pt"
    atomic_save(ckpt, odd)
    good = str(env / "student-good.pt")
    rc = _bench(env, "float-odd", "--students", f"{good},{odd}", "--formats", "onnx",
                "--float-layers", "output", "--cache", str(tmp_path / "cache"), "--no-latency",
                "--min-ssim-ratio", "0")
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err, err
    rep = json.loads((env / "float-odd" / "report.json").read_text())
    assert [f["student"] for f in rep["failed"]] == ["odd"], rep["failed"]
    q = {r["key"]: r["status"] for r in rep["quality"]["rows"] if r["student"] == "good"}
    assert q["good/pytorch"] == q["good/onnx"] == "ok", q
    _, out = _run_suite("-k", "pytorch", "--students", good, str(odd), "--float-layers",
                        "output", "--cache", str(tmp_path / "cache"), "--sizes", "96x64",
                        expect=1)
    assert "1 failed, 1 passed" in out and "Traceback" not in out, out
    assert "student odd: reading its checkpoint failed: " in out and "a student checkpoint " \
        "that names no architecture ('arch' is None)" in out, out


def test_an_export_error_leaves_the_cached_formats_measured(env, tmp_path, capsys):
    """An export that raised for a sound checkpoint failed every format of the student, those
    the run reused from the cache too (valid, and reused by the next run): only the formats it
    was building fail; the cached one is measured, in `sharpen bench` and the pytest suite."""
    good, cache = str(env / "student-good.pt"), tmp_path / "cache"
    assert _bench(env, "cached-onnx", "--students", good, "--formats", "onnx", "--cache",
                  str(cache), "--no-latency", "--min-ssim-ratio", "0") == 0
    from benchmarks.artifacts import artifact_folder, resolve_students

    folder = artifact_folder(resolve_students([good])[0], cache)
    # the export of onnx-int8 raises (IsADirectoryError) on the report it replaces
    (folder / "export_report.student-good.json").mkdir()
    capsys.readouterr()
    rc = _bench(env, "cached-onnx-2", "--students", good, "--formats", "onnx,onnx-int8",
                "--cache", str(cache), "--sizes", "96x64", "--stream-frames", "2",
                "--min-ssim-ratio", "0")
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err, err
    rep = json.loads((env / "cached-onnx-2" / "report.json").read_text())
    assert rep["failed"] == [] and rep["artifacts"]["good"]["formats"]["onnx"]["status"] == \
        "pass", rep["artifacts"]["good"]
    q = {r["key"]: r for r in rep["quality"]["rows"] if r["student"] == "good"}
    assert q["good/pytorch"]["status"] == q["good/onnx"]["status"] == "ok", q
    assert q["good/onnx-int8"]["status"] == "error" and "IsADirectoryError" in \
        q["good/onnx-int8"]["reason"], q
    lat = {r["backend"]: r["status"] for r in rep["latency"]["rows"] + rep["latency"]["stream"]
           if r["student"] == "good" and r["status"] != "skipped"}
    assert lat == {"pytorch": "ok", "ort-fp32": "ok", "ort-int8": "failed",
                   "pipeline-ort-fp32": "ok"}, lat
    assert [c["model"] for c in rep["checks"] if not c["passed"]] == ["good/onnx-int8"]
    [line] = [ln for ln in err.splitlines() if "PyTorch eager rows are measured" in ln]
    assert "exporting it to onnx-int8 failed: IsADirectoryError" in line, line
    assert line.endswith("as are those of onnx (cached)"), line
    _, out = _run_suite("-k", "test_student_latency and (ort-fp32 or ort-int8)", "--students",
                        good, "--formats", "onnx,onnx-int8", "--cache", str(cache), "--sizes",
                        "96x64", expect=1)
    assert "1 failed, 1 passed" in out and "Traceback" not in out, out
    [failure] = [part for part in out.split("\n_") if "[good-ort-int8-96x64]" in part]
    assert "exporting it to onnx-int8 failed: IsADirectoryError" in failure, failure


def test_the_report_says_where_the_parity_gate_ran_without_a_readable_calib(env, tmp_path,
                                                                           capsys):
    """With no --calib image readable the FP32 formats' parity gate runs on the built-in
    photos, but report.json's `settings.calibration` and report.md said a fifth of --calib
    was held out for it, and so did a later run reusing those artifacts (only the first run's
    console said otherwise). The artifact records it; a --calib with readable images rebuilds
    it, gated on the images held out."""
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(3):
        (calib / f"a{i}.png").write_bytes(b"not an image " * 20)
    good, cache = str(env / "student-good.pt"), str(tmp_path / "cache")
    says = (f"--calib {calib} (none of its images is readable: the INT8 formats failed; the "
            "export's parity gate ran on the built-in sample photos)")
    for run in ("nocalib-1", "nocalib-2"):   # built, then reused from the cache
        assert _bench(env, run, "--students", good, "--formats", "onnx,onnx-int8", "--calib",
                      str(calib), "--cache", cache, "--no-latency", "--min-ssim-ratio",
                      "0") == 1
        rep = json.loads((env / run / "report.json").read_text())
        assert rep["settings"]["calibration"] == says, rep["settings"]
        assert f"INT8 calibration: 32 crops per student from {says}." in \
            (env / run / "report.md").read_text()
        arts = rep["artifacts"]["good"]
        assert arts["formats"]["onnx"]["export_parity"]["images"] == \
            "built-in sample photos (no --calib image is readable)", arts
        assert arts["built_now"] == (["onnx"] if run == "nocalib-1" else []), arts
    capsys.readouterr()
    assert _bench(env, "readable-calib", "--students", good, "--formats", "onnx", "--calib",
                  str(env / "pairs" / "input"), "--cache", cache, "--no-latency",
                  "--min-ssim-ratio", "0") == 0
    rep = json.loads((env / "readable-calib" / "report.json").read_text())
    onnx = rep["artifacts"]["good"]["formats"]["onnx"]
    assert rep["artifacts"]["good"]["built_now"] == ["onnx"] and "images" not in \
        onnx["export_parity"], rep["artifacts"]["good"]
    assert "a fifth held out" in rep["settings"]["calibration"], rep["settings"]
def test_the_report_says_where_the_parity_gate_ran_with_a_calib_of_one_image(env, tmp_path):
    """A --calib of one image (or of .npy crops) holds none out for the export's parity gate,
    which runs on the built-in photos, yet settings.calibration said "a fifth held out"."""
    calib = tmp_path / "one"
    calib.mkdir()
    shutil.copy(sorted((env / "pairs" / "input").iterdir())[0], calib)
    says = (f"--calib {calib} (nothing held out: the export's parity gate ran on the built-in "
            "sample photos (--calib has one image, none to hold out besides it))")
    for run in ("one-calib-1", "one-calib-2"):   # built, then reused from the cache
        assert _bench(env, run, "--students", str(env / "student-good.pt"), "--formats",
                      "onnx", "--calib", str(calib), "--cache", str(tmp_path / "cache"),
                      "--no-latency", "--min-ssim-ratio", "0") == 0
        rep = json.loads((env / run / "report.json").read_text())
        assert rep["settings"]["calibration"] == says, rep["settings"]
        arts = rep["artifacts"]["good"]
        assert arts["built_now"] == (["onnx"] if run == "one-calib-1" else []), arts


def test_rows_of_mixed_precision_artifacts_say_which_layers_are_float(env, tmp_path):
    """--float-layers built mixed-precision artifacts, yet every table and report.json said
    only "INT8": with 'auto' nothing told which layers it kept in float, or that it kept none."""
    rc = _bench(env, "float-rows", "--students", str(env / "student-good.pt"), "--formats",
                "onnx-int8", "--float-layers", "head", "--sizes", "160x96",
                "--stream-frames", "0", "--min-ssim-ratio", "0",
                "--cache", str(tmp_path / "cache"))
    rep = json.loads((env / "float-rows" / "report.json").read_text())
    assert rc == 0, rep["checks"]
    q = next(r for r in rep["quality"]["rows"] if r["format"] == "onnx-int8")
    lat = next(r for r in rep["latency"]["rows"] if r.get("format") == "onnx-int8")
    assert q["float_layers"] == ["head"] and lat["float_layers"] == ["head"], (q, lat)
    md = (env / "float-rows" / "report.md").read_text()
    assert md.count("| INT8, float from head |") == 2, md   # quality and latency tables
    # ... and so do the rows of such a file given as it is (--model): the file's own record
    # (ONNX metadata, the TFLite sidecar) names its float layers
    path = rep["artifacts"]["good"]["formats"]["onnx-int8"]["file"]
    rc = _bench(env, "float-given", "--model", path, "--sizes", "160x96", "--stream-frames",
                "0", "--min-ssim-ratio", "0", "--cache", str(tmp_path / "cache"))
    rep = json.loads((env / "float-given" / "report.json").read_text())
    assert rc == 0, rep["checks"]
    q = next(r for r in rep["quality"]["rows"] if r.get("file") == path)
    lat = next(r for r in rep["latency"]["rows"] if r.get("file") == path)
    assert q["float_layers"] == ["head"] and lat["float_layers"] == ["head"], (q, lat)
    from benchmarks.given import recorded_float_layers
    assert recorded_float_layers({"float_layers": ["dec.1", "head"]}) == ["dec.1", "head"]
    assert recorded_float_layers({"quantization": "int8 QDQ static (percentile 99.999, "
                                  "reduce_range=True, float layers: edge_dw, enc.1)"}) \
        == ["edge_dw", "enc.1"]
    assert recorded_float_layers({"quantization": "full-integer int8"}) == []


def test_a_bench_into_an_out_another_bench_is_writing_is_refused(env, capsys):
    """Two `sharpen bench --out` into one folder at once both ran: each timed its backends
    while the other loaded the same cores (latencies and fps of neither alone), the second to
    end replaced the first's report without setting it aside as report.previous.*, and
    report.md, report.json and the figures of the two could be mixed. The second is refused
    before it measures or moves anything, naming the first."""
    from benchmarks import cli as bench_cli
    from distill.run_lock import run_lock

    out = env / "shared-out"
    out.mkdir()
    (out / "report.json").write_text('{"the other run": "finished"}\n')
    with run_lock(out, doing="benchmarking", flag="--out", name=".bench.lock"):   # another
        rc = bench_cli.main(["--out", str(out), "--students", str(env / "student-good.pt"),
                             "--teacher-weights", str(env / "teacher.pt"), "--data",
                             str(env / "pairs"), "--cache", str(env / "cache"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert (f"another run is benchmarking into {out} (process {os.getpid()}); wait for it to "
            "finish or stop it, or give this run another --out") in err
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]   # not set aside
    assert json.loads((out / "report.json").read_text()) == {"the other run": "finished"}


def test_a_cache_folder_a_users_export_is_writing_is_named_with_the_flag_of_the_bench(env):
    """`sharpen export --out` into a folder of the bench cache while the bench exports the
    student there: the bench's export is refused, as one export into another's --out is, and
    its reason (the formats' error in the report) said "give this run another out_dir", a
    keyword of the Python API the bench has no option for; the bench's is --cache."""
    from benchmarks.artifacts import (BenchError, artifact_folder, ensure_artifacts,
                                      resolve_students)
    from distill.run_lock import run_lock

    st = resolve_students([str(env / "student-good.pt")])[0]
    cache = env / "shared-cache"
    folder = artifact_folder(st, cache, None)
    with run_lock(folder, doing="exporting", flag="--out", name=".export.lock"):   # the user's
        with pytest.raises(BenchError) as e:
            ensure_artifacts(st, cache, "onnx", quiet=True)
    assert (f"another run is exporting into {folder} (process {os.getpid()}); wait for it to "
            "finish or stop it, or give this run another --cache") in str(e.value), e.value


def test_bench_takes_exports_seed_and_a_new_seed_rebuilds_its_int8_artifacts(env, tmp_path):
    """`sharpen export --seed` picks the calibration crops (another seed: other scales), but
    `sharpen bench` had no --seed: its INT8 rows were always seed 0's. It takes export's
    flag now and passes it to its exports; the cache keys on it, so an artifact calibrated
    on one seed's crops is not reused for another."""
    from benchmarks.artifacts import ensure_artifacts, resolve_students
    from benchmarks.cli import options_from_args
    from sharpen.cli import build_parser

    args = build_parser().parse_args(["bench", "--out", str(tmp_path / "r"), "--seed", "3"])
    opts = options_from_args(args)
    argv = opts.to_argv()
    assert opts.seed == 3 and argv[argv.index("--seed") + 1] == "3", argv
    from benchmarks.cli import main as bench_main
    assert bench_main(["--out", str(tmp_path / "r"), "--seed", "-1"]) == 2
    cache = tmp_path / "cache"
    st = resolve_students([str(env / "student-good.pt")])[0]
    first = ensure_artifacts(st, cache, "onnx-int8", calib_count=4, quiet=True)
    assert first.built_now == ["onnx-int8"]
    assert ensure_artifacts(st, cache, "onnx-int8", calib_count=4, quiet=True,
                            seed=0).built_now == []
    other = ensure_artifacts(st, cache, "onnx-int8", calib_count=4, quiet=True, seed=1)
    assert other.built_now == ["onnx-int8"]
    report = json.loads((other.folder / "export_report.json").read_text())
    assert report["settings"]["calib_seed"] == 1, report["settings"]
    assert ensure_artifacts(st, cache, "onnx-int8", calib_count=4, quiet=True,
                            seed=1).built_now == []


def test_a_tflite_given_alone_is_named_by_the_record_inside(fast_student_pt, export_data_dir,
                                                            tmp_path):
    """--model FILE.tflite copied without its sidecar: the export's record inside the file
    names its student and weights, which the row reads (it said "student unknown")."""
    from benchmarks.given import resolve_models
    from sharpen.cli import main

    out = tmp_path / "x"
    assert main(["export", "--weights", str(fast_student_pt), "--formats", "tflite-fp16",
                 "--out", str(out), "--parity-images", str(export_data_dir / "parity"),
                 "--no-latency", "--quiet"]) == 0
    alone = tmp_path / "alone" / "student_fp16.tflite"
    alone.parent.mkdir()
    shutil.copy(out / alone.name, alone)
    with_sidecar = json.loads((out / (alone.name + ".json")).read_text())
    (gm,) = resolve_models([str(alone)])
    assert gm.source == with_sidecar["student"] == "fast", gm
    assert gm.source_sha256 == with_sidecar["source_sha256"], gm


def test_bench_scores_quality_as_the_8bit_images_published_tables_score(tmp_path):
    """The bench's quality rows scored float outputs (a few thousandths of a dB above the 8-bit
    PNG a paper's number comes from) and its report.json named no convention: its rows could
    not stand beside `sharpen evaluate`'s or a published table's. They are scored as evaluate
    scores them, and the report says how."""
    import cv2
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from benchmarks.quality import Pair, QualityResult, _const, _row, _run_one
    rng = np.random.default_rng(3)
    y8 = cv2.GaussianBlur(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8), (5, 5), 1.0)
    x8 = cv2.GaussianBlur(y8, (7, 7), 2.0)
    x, y = x8.astype(np.float32) / 255, y8.astype(np.float32) / 255
    r = _row("m", "model m", "model", "onnx", "ONNX Runtime", "fp32")
    _run_one(r, lambda img: img * 0.9 + 0.3 / 255, Pair("a", _const(x), _const(y)), y, {}, {})
    out8 = np.clip(np.round((x * 0.9 + 0.3 / 255) * 255), 0, 255).astype(np.uint8)
    got = r["images"][0]
    assert got["psnr"] == pytest.approx(peak_signal_noise_ratio(y8, out8, data_range=255),
                                        abs=1e-5)   # k/255 in float32
    assert got["ssim"] == pytest.approx(structural_similarity(
        y8, out8, channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False), abs=1e-6)
    q = QualityResult("d", [], [r], [], {}, {}).to_dict()
    assert "gaussian_weights=True" in q["convention"]["ssim"]


def test_the_bench_teacher_row_is_scored_on_8bit_outputs_as_the_students(tmp_path):
    """The teacher's row scored its float output while the students' rows score the 8-bit
    image: report.json said one convention for both, and the SSIM-ratio gate divided a
    student's 8-bit gain by the teacher's float one."""
    from skimage.metrics import structural_similarity

    from benchmarks.quality import Pair, _const, evaluate
    rng = np.random.default_rng(5)
    y8 = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    y = y8.astype(np.float32) / 255
    x = np.clip(y * 0.8 + 0.1, 0, 1).astype(np.float32)

    class Dimmer:   # a teacher whose output falls between 8-bit levels
        cached = computed = 0

        def __call__(self, img):
            return img * 0.97 + 0.013

        def describe(self):
            return "dimmer"

    res = evaluate([Pair("a", _const(x), _const(y))], Dimmer(), [], {}, progress=False)
    (row,) = [r for r in res.rows if r["kind"] == "teacher"]
    out8 = np.round(np.clip(x * 0.97 + 0.013, 0, 1) * 255).astype(np.uint8)
    assert row["images"][0]["ssim"] == pytest.approx(structural_similarity(
        y8, out8, channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False), abs=1e-7)


def test_a_killed_benchs_scratch_folder_is_removed_by_the_next_bench(env, tmp_path):
    """A SIGKILLed bench left its generated clips in a hidden scratch folder of --out
    (runtime.atomic.scratch_folder); the next bench into that --out removes it, leaves none of
    its own, and gives the process its temp folder back."""
    import tempfile

    from bench_fixtures import _bench

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    out = env / "killed-scratch"
    dead = out / f".bench-tmp.{gone.stdout.strip()}.abcd1234"
    dead.mkdir(parents=True)
    (dead / "clip-160x96.mp4").write_bytes(b"x" * 1000)
    before = tempfile.gettempdir()
    assert _bench(env, out.name, "--students", str(env / "student-good.pt"), "--formats",
                  "onnx", "--sizes", "160x96", "--stream-frames", "3") == 0
    assert not dead.exists()
    assert not list(out.glob(".bench-tmp.*")) and tempfile.gettempdir() == before
