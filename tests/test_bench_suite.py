"""The benchmark suite (`pytest benchmarks/`, in a subprocess) takes `sharpen bench`'s options:
what -k selects is all it exports and evaluates, its quality summary and JSON say what the
bench's report says, the report's pytest and compare lines run, model files keep their test
ids, a bad option stops it once (bench_fixtures). Timings are never asserted.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from bench_fixtures import _run_suite

pytestmark = pytest.mark.slow  # whole pipelines at toy sizes: tens of seconds


def _collected(*args: str) -> list[str]:
    """The test ids `pytest benchmarks/` collects with these options (nothing runs)."""
    res, _ = _run_suite("--collect-only", *args, expect=0, timeout=120)
    return [line.split("::", 1)[1] for line in res.stdout.splitlines() if "::" in line]


def test_model_files_with_one_stem_keep_their_test_ids_whatever_the_order(tmp_path):
    """An export folder holds student-fast_int8.onnx and student-fast_int8.tflite: both were
    `[student-fast_int8_0]` / `[student-fast_int8_1]` in the order given, so a later run with
    the files in another order had --benchmark-compare compare the ONNX model's timing against
    the TFLite one's, under one name."""
    onnx = str(tmp_path / "student-fast_int8.onnx")
    tfl = str(tmp_path / "student-fast_int8.tflite")
    one = [i for i in _collected("--model", onnx, tfl) if "given_model" in i]
    other = [i for i in _collected("--model", tfl, onnx) if "given_model" in i]
    assert sorted(one) == sorted(other), (one, other)
    assert "test_given_model_latency[student-fast_int8.onnx-640x360]" in one, one
    assert "test_given_model_quality[student-fast_int8.tflite]" in one, one
    # a file whose stem no other file shares keeps the id it had
    alone = [i for i in _collected("--model", onnx) if "given_model" in i]
    assert "test_given_model_quality[student-fast_int8]" in alone, alone


def test_an_export_folder_given_to_model_is_its_model_files(tmp_path):
    """`pytest benchmarks/ --model export/` stopped with 'a folder; give the model files in
    it', where `sharpen bench` measures the folder's files: the same tests as the files named."""
    folder = tmp_path / "export"
    folder.mkdir()
    for name in ("student-fast.onnx", "student-fast_int8.tflite", "export_report.json"):
        (folder / name).write_bytes(b"x")   # collected only: nothing reads them
    ids = [i for i in _collected("--model", str(folder)) if "given_model" in i]
    named = [i for i in _collected("--model", str(folder / "student-fast.onnx"),
                                   str(folder / "student-fast_int8.tflite"))
             if "given_model" in i]
    assert ids == named and "test_given_model_quality[student-fast_int8]" in ids, ids


def test_the_suite_takes_real_blur_pairs_and_frames_without_ground_truth(env, tmp_path):
    """`pytest benchmarks/` took no --real-pairs or --real-nogt ("unrecognized arguments"):
    a CI job judging models with the suite could not score its own real blur, as `sharpen
    bench` and `sharpen evaluate` do. It takes both; its summary and its JSON hold the tables
    `sharpen bench`'s report holds (report.json's `real_blur`)."""
    from bench_fixtures import _blurred_frames

    nogt = _blurred_frames(env, "suite-nogt")
    _, out = _run_suite("-k", "test_real_blur or (test_student_latency and pytorch)",
                        "--students", str(env / "student-good.pt"), "--teacher-weights",
                        str(env / "teacher.pt"), "--real-pairs", str(env / "pairs"),
                        "--real-nogt", str(nogt), "--cache", str(tmp_path / "cache"),
                        "--sizes", "160x96", "--stream-frames", "0",
                        "--benchmark-json", str(tmp_path / "b.json"), expect=0)
    assert "2 passed" in out, out
    real = json.loads((tmp_path / "b.json").read_text())["sharpen_real_blur"]
    assert real["pairs"]["images"] == 3 and real["nogt"]["images"] == 3, real
    assert real["pairs"]["good"]["psnr"] > 0 and "figures" not in real, real
    assert real["nogt"]["good"]["psnr_to_reference"] > 0, real
    assert f"real blur pairs ({env / 'pairs'}, 3 images" in out, out
    assert f"real blur without ground truth ({nogt}, 3 crops)" in out, out
    assert f"{real['pairs']['good']['psnr']:.2f}" in out, out
    # without either, the test says which options it wants
    _, out = _run_suite("-rs", "-k", "test_real_blur", expect=0, timeout=120)
    assert "no --real-pairs or --real-nogt given" in out, out


def test_a_broken_student_leaves_the_others_real_blur_scored(env, tmp_path):
    """A student whose checkpoint cannot be read failed test_real_blur as a whole, the others
    not scored and the reason said twice ("During handling of the above exception"): as in
    `sharpen bench`, its real-blur rows say `failed`, the others are scored, and the test
    fails naming it."""
    broken = tmp_path / "student-broken.pt"
    broken.write_bytes(bytes(range(256)) * 8)
    _, out = _run_suite("-k", "test_real_blur", "--students", f"{broken},{env / 'student-good.pt'}",
                        "--teacher-weights", str(env / "teacher.pt"), "--real-pairs",
                        str(env / "pairs"), "--cache", str(tmp_path / "cache"), expect=1)
    assert "During handling" not in out and "Traceback" not in out, out
    assert "student broken" in out and "reading its checkpoint failed" in out, out
    table = out.split("real blur pairs (", 1)[1]
    assert "\n  good " in table or "\ngood " in table, out
    assert "broken" in table and "failed" in table, out


def test_k_selecting_one_student_evaluates_only_that_student(env, tmp_path):
    """`pytest benchmarks/ -k fast` with the default students still exported `seed` in every
    format and ran its quality evaluation (minutes for its INT8 calibrations), then listed it
    in the summary, though none of its tests was selected."""
    _, out = _run_suite("-k", "good", "--students", str(env / "student-good.pt"),
                        str(env / "student-bad.pt"), "--teacher-weights",
                        str(env / "teacher.pt"), "--data", str(env / "pairs"), "--formats",
                        "onnx", "--cache", str(tmp_path / "cache"), "--min-ssim-ratio", "0",
                        file="test_quality.py", expect=0)
    assert "student good" in out and "student bad" not in out, out
    assert not list((tmp_path / "cache").glob("student-bad*")), out
    assert "students with no selected quality test, not evaluated: bad" in out, out


def test_a_latency_test_alone_does_not_put_its_student_in_the_quality_evaluation(env,
                                                                                  tmp_path):
    """The quality evaluation covered every student with a selected test, latency tests too:
    with its PyTorch timing and the reference rows selected, `good` was exported to ONNX and
    evaluated in every format, though no quality test of it was selected."""
    _, out = _run_suite("-k", "test_student_latency and pytorch or test_reference_rows",
                        "--students", str(env / "student-good.pt"), "--teacher-weights",
                        str(env / "teacher.pt"), "--data", str(env / "pairs"), "--formats",
                        "onnx", "--cache", str(tmp_path / "cache"), "--sizes", "160x96",
                        "--stream-frames", "0", "--benchmark-json", str(tmp_path / "b.json"),
                        expect=0)
    assert "2 passed" in out, out
    # the user's set is named as it is, claimed neither synthetic nor real
    assert f"sharpen quality: mean over the held-out set ({env / 'pairs'}, 3 images)" in out
    assert not list((tmp_path / "cache").glob("student-good*")), out   # nothing exported
    assert "student good" not in out.split("sharpen quality")[1], out
    assert "students with no selected quality test, not evaluated: good" in out, out
    saved = json.loads((tmp_path / "b.json").read_text())
    assert {r["key"] for r in saved["sharpen_quality"]["rows"]} == {"input", "teacher"}
    [timed] = saved["benchmarks"]
    assert timed["extra_info"]["backend"] == "pytorch" and "quality" not in timed["extra_info"]


def test_the_suite_summary_says_the_held_out_set_is_synthetic_blur(env, tmp_path):
    """`pytest benchmarks/`'s quality summary was titled "mean over held-out images" when
    `sharpen bench`'s title said the embedded set's blur is synthetic: its SSIM read as a
    real-blur number there."""
    _, out = _run_suite("-k", "test_reference_rows", "--students", str(env / "student-good.pt"),
                        "--teacher-weights", str(env / "teacher.pt"), "--limit", "1",
                        "--cache", str(tmp_path / "cache"), expect=0)
    assert ("sharpen quality: mean over the held-out set (embedded test split, synthetic "
            "blur, 1 image)") in out, out


def test_benchmark_json_holds_the_quality_of_what_it_timed(env, tmp_path):
    """`pytest benchmarks/ --benchmark-json` wrote the timings alone: the PSNR/SSIM, parity and
    checks it printed went nowhere a script could read them. The file holds the quality section
    (as report.json's) and each timed model's quality beside its timing."""
    _run_suite("--students", str(env / "student-good.pt"), "--teacher-weights",
               str(env / "teacher.pt"), "--data", str(env / "pairs"), "--formats", "onnx",
               "--cache", str(tmp_path / "cache"), "--sizes", "160x96", "--min-ssim-ratio", "0",
               "--benchmark-json", str(tmp_path / "b.json"), expect=0)
    saved = json.loads((tmp_path / "b.json").read_text())
    quality = saved["sharpen_quality"]
    rows = {r["key"]: r for r in quality["rows"]}
    assert rows["good/onnx"]["ssim"] is not None and quality["checks"], quality
    timed = {b["extra_info"]["backend"]: b["extra_info"] for b in saved["benchmarks"]}
    for backend, key in (("ort-fp32", "good/onnx"), ("pytorch", "good/pytorch"),
                         ("teacher-tiled", "teacher")):
        q = timed[backend]["quality"]
        assert (q["psnr"], q["ssim"]) == (rows[key]["psnr"], rows[key]["ssim"]), q
    assert timed["ort-fp32"]["quality"]["parity"]["passed"] is True
    assert "quality" not in timed["pipeline-ort-fp32"]   # not the stream's own measure


def test_student_tests_without_students_say_why_they_skip(tmp_path):
    """`pytest benchmarks/ --model FILE` without --weights measures the files alone: the student
    tests were skipped as pytest's "got empty parameter set for (student)"."""
    _, out = _run_suite("-rs", "-k", "not given_model and not teacher and not reference",
                        "--model", str(tmp_path / "a.onnx"),   # never read: nothing needs it
                        expect=0, timeout=120)
    assert "empty parameter set" not in out, out
    assert "no students: --model without --weights measures those files alone" in out, out


def test_a_compare_that_compared_nothing_says_so(tmp_path):
    """`--benchmark-compare` where no benchmark this run timed is in the saved run (the
    README's `-k test_student_latency` on a --model run, whose rows are
    test_given_model_latency; a run saved under older ids) printed nothing about it."""
    saved = _saved_run(tmp_path / "0001_saved.json", ["test_given_model_latency[a-640x360]"])
    _, out = _run_suite("-k", "test_student_latency", "--model", str(tmp_path / "a.onnx"),
                        "--benchmark-compare", str(saved), expect=0, timeout=120)
    assert f"--benchmark-compare compared nothing: no benchmark this run timed is in " \
           f"{saved}" in out, out


def test_a_compare_gate_that_compared_nothing_fails(tmp_path):
    """A CI gate, `--benchmark-compare-fail`, that compared nothing (the saved run's ids are
    none of this run's) exited 0: the job passed, gating nothing. pytest-benchmark refuses the
    option without a saved run to compare ("requires valid --benchmark-compare"); a saved run
    with nothing in common is no more valid: a usage error, as `sharpen bench-compare`'s."""
    saved = _saved_run(tmp_path / "0001_saved.json", ["test_given_model_latency[a-640x360]"])
    _, out = _run_suite("-k", "test_student_latency", "--model", str(tmp_path / "a.onnx"),
                        "--benchmark-compare", str(saved),
                        "--benchmark-compare-fail=median:10%", expect=4, timeout=120)
    assert "--benchmark-compare compared nothing" in out, out
    assert "--benchmark-compare-fail gated nothing" in out, out
    # --benchmark-skip (the quality tests alone, the gate in the job's shared options) times
    # nothing on purpose: pytest-benchmark passes it, and so does this
    _run_suite("-k", "test_student_latency", "--model", str(tmp_path / "a.onnx"),
               "--benchmark-compare", str(saved), "--benchmark-compare-fail=median:10%",
               "--benchmark-skip", expect=0, timeout=120)


def test_a_compare_gate_under_xdist_that_timed_nothing_fails(tmp_path):
    """pytest-benchmark disables its timing under xdist's -n (a warning, not an error): the
    gate, taking that for --benchmark-disable given on purpose, passed a CI job's `-n auto`
    run that gated nothing. Only a --benchmark-disable the job gave passes."""
    saved = _saved_run(tmp_path / "0001_saved.json", ["test_given_model_latency[a-640x360]"])
    gate = ("-k", "test_student_latency", "--model", str(tmp_path / "a.onnx"),
            "--benchmark-compare", str(saved), "--benchmark-compare-fail=median:10%")
    _, out = _run_suite("-n", "1", *gate, expect=4, timeout=120)
    assert "--benchmark-compare-fail gated nothing" in out, out
    _run_suite("-n", "1", "--benchmark-disable", *gate, expect=0, timeout=120)

def _saved_run(path: Path, names: list[str]) -> Path:
    """A run pytest-benchmark saved, of benchmarks/test_latency.py's tests `names`."""
    stats = {"min": 0.01, "max": 0.01, "mean": 0.01, "stddev": 0.0, "rounds": 3,
             "median": 0.01, "iqr": 0.0, "q1": 0.01, "q3": 0.01, "iqr_outliers": 0,
             "stddev_outliers": 0, "outliers": "0;0", "ld15iqr": 0.01, "hd15iqr": 0.01,
             "ops": 100.0, "total": 0.03, "iterations": 1}
    path.write_text(json.dumps({"machine_info": {}, "commit_info": {}, "benchmarks": [
        {"fullname": f"benchmarks/test_latency.py::{name}", "name": name,
         "group": "latency " + name.rsplit("-", 1)[1].rstrip("]"), "params": None,
         "param": None, "extra_info": {}, "options": {}, "stats": stats}
        for name in names]}))
    return path


def test_a_compare_that_compared_some_benchmarks_says_nothing_of_it(tmp_path):
    """The other side of 'compared nothing': a run one of whose benchmarks is in the saved run
    (another there is not in this run) compared it, and gates on it."""
    from runtime_fixtures import make_onnx_model

    model = make_onnx_model(tmp_path / "a.onnx")
    saved = _saved_run(tmp_path / "0001_saved.json", ["test_given_model_latency[a-64x64]",
                                                      "test_given_model_latency[b-64x64]"])
    _, out = _run_suite("-k", "test_given_model_latency", "--model", str(model), "--sizes",
                        "64x64", "--threads", "1", "--benchmark-compare", str(saved),
                        expect=0, timeout=120)
    assert "test_given_model_latency[a-64x64] (NOW)" in out, out
    assert "compared nothing" not in out, out


@pytest.mark.parametrize("bad,says", [
    (["--target-fps", "0"], "--target-fps must be a finite number > 0, got 0"),
    (["--stream-frames", "-1"], "--stream-frames must be >= 0"),
    (["--formats", "onnx,bogus"], "unknown format 'bogus'; choose from onnx, "),
    (["--data", "no/such/set"], "no/such/set")])
def test_a_bad_option_value_stops_the_suite_once_with_its_message(env, tmp_path, bad, says):
    """A bad value raised a UsageError inside the session fixture (or the quality evaluation):
    pytest reported it as an ERROR with a full traceback at every test, the message buried
    in the tracebacks, and exited 1, as if tests had failed."""
    _, out = _run_suite("--students", str(env / "student-good.pt"), "--formats", "onnx",
                        "--teacher-weights", str(env / "teacher.pt"), "--cache",
                        str(tmp_path / "cache"), "--sizes", "96x64", *bad,
                        expect=4)   # pytest's usage error
    assert out.count(says) == 1 and "Traceback" not in out and "ERROR at" not in out, out


def _shell(cmd: str, cwd: Path) -> subprocess.CompletedProcess:
    """One of the report's reproduce commands, run by the shell as a user would, with this
    interpreter's pytest."""
    cmd = cmd.replace("pytest ", f"{shlex.quote(sys.executable)} -m pytest -p no:cacheprovider ",
                      1)
    return subprocess.run(["bash", "-c", cmd], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def saved_pytest_run(env, good_run, tmp_path_factory):
    """The report's pytest line, run (latency tests only, to keep it short)."""
    _, report = good_run
    cwd = tmp_path_factory.mktemp("pytest-run")
    only = ' -k "test_student_latency or test_teacher_tiled"'
    res = _shell(report["commands"][2] + only, cwd)
    assert res.returncode == 0, res.stdout + res.stderr
    return report, cwd, only, json.loads((cwd / "bench.json").read_text())


def test_reproduce_block_compares_the_same_benchmarks(saved_pytest_run):
    """The report's compare line compared nothing: the pytest line before it saved no run
    (--benchmark-json only), and the compare line left out the run's options, so it timed the
    default students at the default size, exporting them into the default cache."""
    report, cwd, only, saved = saved_pytest_run
    res = _shell(report["commands"][3].split("  #")[0] + only, cwd)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "Can't compare" not in out and "Comparing against benchmarks from" in out, out
    names = {b["name"] for b in saved["benchmarks"]}
    assert names and all(f"{n} (NOW)" in out and f"{n} (0001_" in out for n in names), out
    assert "160x96" in " ".join(names)   # the run's size, not the default's


def test_teacher_tile_times_are_not_ranked_with_frame_times(saved_pytest_run):
    """pytest-benchmark ranks the rows of a group against each other: the teacher's rows, the
    time of its timed tile(s) (a fifteenth of a 1080p frame), sat in the per-frame latency
    group, read as the teacher's frame time."""
    _, _, _, saved = saved_pytest_run
    groups = {b["name"].split("[")[0]: b["group"] for b in saved["benchmarks"]}
    assert groups["test_student_latency"] == "latency 160x96"
    assert groups["test_teacher_tiled"] != groups["test_student_latency"]
    assert "not per frame" in groups["test_teacher_tiled"]


def test_the_suite_scores_real_pairs_aligned_with_align_ecc(env, tmp_path):
    """`pytest benchmarks/ --real-pairs SPEC --align ecc` scores the pairs aligned to their
    ground truth, as `sharpen bench --align ecc` does, and its table says so: published
    RealBlur scores are read beside aligned ones only."""
    _, out = _run_suite("-k", "test_real_blur", "--weights", str(env / "student-good.pt"),
                        "--teacher-weights", str(env / "teacher.pt"), "--real-pairs",
                        str(env / "pairs"), "--align", "ecc", "--cache",
                        str(tmp_path / "cache"), expect=0)
    assert f"real blur pairs ({env / 'pairs'}, 3 images, aligned to the ground truth by ECC " \
           "(--align ecc); gains over the blurred input)" in out, out


def test_align_without_real_pairs_is_said_to_do_nothing_by_both_front_ends(tmp_path, capsys):
    """`sharpen bench --align ecc` and `pytest benchmarks/ --align ecc` without --real-pairs
    (the pairs it aligns) went on without a word, where --stride without --real-nogt is said
    to do nothing: both say it now, in one wording."""
    from benchmarks import cli as bench_cli

    says = "--align ecc has no effect without --real-pairs"
    # --seed -1 stops the bench after the options' warnings, before any work.
    rc = bench_cli.main(["--out", str(tmp_path / "out"), "--align", "ecc", "--seed", "-1"])
    err = capsys.readouterr().err
    assert rc == 2 and f"warning: {says}" in err, err
    _, out = _run_suite("--collect-only", "-k", "test_real_blur", "--align", "ecc",
                        expect=0, timeout=120)
    assert f"SharpenWarning: {says}" in out, out
    _, out = _run_suite("--collect-only", "-k", "test_real_blur", "--align", "ecc",
                        "--real-pairs", str(tmp_path), expect=0, timeout=120)
    assert "has no effect" not in out, out


def test_the_suites_real_blur_tables_are_the_bench_reports(env, tmp_path):
    """test_real_blur scores --real-pairs and --real-nogt as `sharpen bench` does: the same
    tables, cell for cell, from the same options (the suite's rerun line is the report's)."""
    import io

    from bench_fixtures import _bench, _blurred_frames
    from benchmarks.realblur import print_tables

    nogt = _blurred_frames(env, "parity-nogt")
    real = ("--real-pairs", str(env / "pairs"), "--real-nogt", str(nogt), "--limit", "2")
    assert _bench(env, "real-parity", "--students", str(env / "student-good.pt"), "--formats",
                  "onnx", "--no-latency", *real) == 0
    buf = io.StringIO()
    print_tables(json.loads((env / "real-parity" / "report.json").read_text())["real_blur"],
                 file=buf)
    _, out = _run_suite("-k", "test_real_blur", "--weights", str(env / "student-good.pt"),
                        "--teacher-weights", str(env / "teacher.pt"), "--cache",
                        str(env / "cache"), *real, expect=0)
    assert buf.getvalue() in out, (buf.getvalue(), out)
