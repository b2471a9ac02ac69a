"""`sharpen bench`'s exports and their cache: an interrupted export or bench keeps what it
finished, runs sharing a cache take turns, --calib calibrates the INT8 formats (bench_fixtures).
Timings are never asserted.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench_fixtures import ROOT, _bench, _run_suite
from distill.checkpoint import atomic_save, make_checkpoint
from distill.images import write_image
from distill.students import create_student

pytestmark = pytest.mark.slow  # whole pipelines at toy sizes: tens of seconds


# The second format of the export runs below: its build takes seconds (the INT8 calibration
# on the bench's 32 crops of 256x256, 5 s here), for a signal or a second run to land in. Any
# format shows the stamp, report and lock under test; a TFLite one took 14 s (TensorFlow's
# import and converter) in the child and again where the test rebuilds it.
SECOND = "onnx-int8"


def _bench_export_cmd(env, tmp_path: Path, cache: Path) -> list[str]:
    """A bench run whose export of the good student takes seconds in its second format
    (SECOND), for a signal to land in; skips where that format cannot be built."""
    from optimize.export import FORMATS as EXPORT_FORMATS

    if EXPORT_FORMATS[SECOND].availability():
        pytest.skip(f"needs a second format that takes seconds to build ({SECOND})")
    return [sys.executable, "-m", "sharpen.cli", "bench", "--out", str(tmp_path / "out"),
            "--weights", str(env / "student-good.pt"), "--teacher-weights",
            str(env / "teacher.pt"), "--data", str(env / "pairs"), "--cache", str(cache),
            "--formats", f"onnx,{SECOND}", "--no-latency"]


def test_interrupted_export_keeps_the_formats_it_finished(env, tmp_path):
    """SIGTERM while the bench exported a student's second format left no stamp in the cache,
    so the rerun that 'continues' (as the interrupted run says) built the first one again."""

    cache = tmp_path / "cache"
    cmd = _bench_export_cmd(env, tmp_path, cache)
    rc, out = _signal_at(cmd, f"[2/2] {SECOND}", "SIGTERM", 0.5)
    if rc in (0, 1):
        pytest.skip("the export finished before the signal landed")
    assert rc == 143 and "interrupted (SIGTERM)" in out, out
    from benchmarks.artifacts import STAMP, ensure_artifacts, resolve_students

    st = resolve_students([str(env / "student-good.pt")])[0]
    stamp = json.loads((cache / f"{st.path.stem}-{st.hash}" / STAMP).read_text())
    assert stamp["formats"]["onnx"]["status"] == "pass"
    assert SECOND not in stamp["formats"]
    again = ensure_artifacts(st, cache, "onnx", quiet=True)
    assert again.built_now == [] and again.get("onnx").usable


def _sharpen_warnings(caught) -> list[str]:
    from runtime.warn import SharpenWarning

    return [str(w.message) for w in caught if issubclass(w.category, SharpenWarning)]


def test_a_killed_export_leaves_no_format_out_of_the_next_report(env, tmp_path):
    """A bench run killed while it exported a student's second format (SIGKILL, a job's time
    limit) left the stamp of the first and no export report: the export removed the report
    when it began. The next run took the first format from the stamp, exported the rest, and
    the export warned 'student-fast.onnx, student-fast_int8.onnx in ... are not rebuilt by
    this export and not in its report' (seen in benchmarks/test_quality.py), leaving a report
    without them."""
    import warnings

    cache = tmp_path / "cache"
    cmd = _bench_export_cmd(env, tmp_path, cache)
    rc, out = _signal_at(cmd, f"[2/2] {SECOND}", "SIGKILL", 0.5)
    if rc in (0, 1):
        pytest.skip("the export finished before the signal landed")
    from benchmarks.artifacts import ensure_artifacts, resolve_students

    st = resolve_students([str(env / "student-good.pt")])[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = ensure_artifacts(st, cache, f"onnx,{SECOND}", quiet=True)
    assert _sharpen_warnings(caught) == []
    assert again.built_now == [SECOND] and again.get("onnx").usable
    report = json.loads((again.folder / "export_report.json").read_text())
    assert {r["format"] for r in report["results"]} == {"onnx", SECOND}, report
    assert report["ok"] and report["stale"] == []


def test_a_cached_format_its_export_report_does_not_hold_is_rebuilt(env, tmp_path):
    """A cache left by a killed export before its report was kept up to date (the stamp holds
    a format, the folder's report does not): the next run reused the format from its stamp,
    exported the others, and the export warned that the reused file was in no report and
    wrote a report without it. The stamp is an index; the report is the folder's record."""
    import warnings

    from benchmarks.artifacts import ensure_artifacts, resolve_students

    cache = tmp_path / "cache"
    st = resolve_students([str(env / "student-good.pt")])[0]
    first = ensure_artifacts(st, cache, "onnx", calib_count=4, quiet=True)
    (first.folder / "export_report.json").unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = ensure_artifacts(st, cache, "onnx,onnx-int8", calib_count=4, quiet=True)
    assert _sharpen_warnings(caught) == []
    assert again.built_now == ["onnx", "onnx-int8"]
    report = json.loads((again.folder / "export_report.json").read_text())
    assert {r["format"] for r in report["results"]} == {"onnx", "onnx-int8"}, report


def test_two_runs_exporting_one_student_take_turns(env, tmp_path):
    """Two runs sharing a cache (two bench runs, test sessions of worktrees that share the
    default cache) exported one student at once: the second took the formats the first had
    finished from the stamp and exported the rest beside the first's export, whose report
    was not written yet, and warned that those formats were in no report. Now it waits for
    the first and reuses what it built."""
    import warnings

    from optimize.export import FORMATS as EXPORT_FORMATS

    if EXPORT_FORMATS[SECOND].availability():
        pytest.skip(f"needs a second format that takes seconds to build ({SECOND})")
    from benchmarks.artifacts import ensure_artifacts, resolve_students

    cache = tmp_path / "cache"
    code = ("import sys; from benchmarks.artifacts import ensure_artifacts, resolve_students; "
            "ensure_artifacts(resolve_students([sys.argv[1]])[0], sys.argv[2], "
            f"'onnx,{SECOND}')")
    first = subprocess.Popen([sys.executable, "-c", code, str(env / "student-good.pt"),
                              str(cache)], cwd=ROOT, stderr=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    said: list[str] = []
    err: list[str] = []
    import threading

    try:
        for line in first.stderr:
            err.append(line)
            if line.startswith(f"[2/2] {SECOND}"):
                break
        # Read on while this run waits: a full pipe stalled the first run, holding the lock.
        reader = threading.Thread(target=lambda: err.extend(first.stderr), daemon=True)
        reader.start()
        st = resolve_students([str(env / "student-good.pt")])[0]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            second = ensure_artifacts(st, cache, f"onnx,{SECOND}", quiet=True,
                                      say=said.append)
        first.wait(timeout=300)
        reader.join(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, "".join(err)
    assert _sharpen_warnings(caught) == []
    assert second.built_now == [] and second.get(SECOND).usable, said
    assert any(m.startswith("waiting for process") for m in said), said
    report = json.loads((second.folder / "export_report.json").read_text())
    assert {r["format"] for r in report["results"]} == {"onnx", SECOND}, report


def _signal_at(cmd: list[str], line_start: str, sig: str, delay: float) -> tuple[int, str]:
    """Run `cmd`, send `sig` `delay` s after a stderr line starts with `line_start`; its exit
    code and stderr."""
    import signal
    import time

    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    err = []
    try:
        for line in proc.stderr:
            err.append(line)
            if line.startswith(line_start):
                time.sleep(delay)
                proc.send_signal(getattr(signal, sig))
                break
        rest = proc.communicate(timeout=300)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, "".join(err) + (rest or "")


@pytest.mark.parametrize("sig,when", [("SIGINT", "streaming pipeline:"),
                                      ("SIGTERM", "latency: teacher"),
                                      ("SIGHUP", "streaming pipeline:")])
def test_interrupted_bench_writes_the_rows_it_finished(env, tmp_path, sig, when):
    """Ctrl-C or SIGTERM part way through the bench lost everything measured, and Ctrl-C during
    the stream was taken by the stream's own handler: the bench wrote a row of part of the
    stream and went on to exit 0. Now the rows finished are written, marked incomplete with
    the rest listed, the command says where, and exits 130 / 143."""

    out = tmp_path / "out"
    out.mkdir()
    # An earlier run's whole report: kept as report.previous.* while this run measures.
    (out / "report.json").write_text(json.dumps({"format": "sharpen-bench/1", "whole": True}))
    (out / "report.md").write_text("# the earlier report\n")
    # A stream of thousands of small frames: seconds long, so the signal lands inside it.
    cmd = [sys.executable, "-m", "sharpen.cli", "bench", "--out", str(out),
           "--weights", str(env / "student-good.pt"), "--teacher-weights",
           str(env / "teacher.pt"), "--data", str(env / "pairs"), "--cache", str(env / "cache"),
           "--formats", "onnx", "--sizes", "160x96", "--stream-frames", "4000"]
    rc, err = _signal_at(cmd, when, sig, 0.2 if sig == "SIGTERM" else 1.0)
    if rc in (0, 1) and "interrupted" not in err:
        pytest.skip("the bench finished before the signal landed")
    code = {"SIGINT": 130, "SIGTERM": 143, "SIGHUP": 129}[sig]
    assert rc == code and "Traceback" not in err, err
    assert f"rows finished so far, marked incomplete (it lists those not measured), is in " \
           f"{out / 'report.md'}" in err, err
    said = "" if sig == "SIGINT" else f" ({sig})"
    assert err.strip().splitlines()[-1].startswith(f"sharpen bench: interrupted{said}"), err
    report = json.loads((out / "report.json").read_text())
    inc = report["incomplete"]
    assert inc["signal"] == sig and inc["stage"] == "latency", inc
    assert report["ok"] is False and report["exit_code"] == code
    # Quality finished before: all of it is there, with its checks.
    assert report["quality"]["rows"] and "quality" not in inc["missing"]
    assert all(r["status"] != "missing" for r in report["quality"]["rows"])
    assert any(c["check"] == "ssim-ratio" for c in report["checks"])
    # Every row the run would have measured is either there or listed as not measured (the
    # formats not requested are not); the stream never finished.
    lat = report["latency"]
    done = [f"{r['model']} {r['backend_label']} {r['size']}" for r in lat["rows"] + lat["stream"]
            if r["status"] != "skipped"]
    missing = inc["missing"]["latency"]
    stream = "student good sharpen run pipeline (ONNX Runtime FP32) 160x96"
    planned = {"teacher PyTorch (tiled) 160x96", "student good PyTorch eager 160x96",
               "student good ONNX Runtime FP32 160x96", stream}
    assert set(done) | set(missing) == planned and not set(done) & set(missing), (done, missing)
    assert stream in missing
    if when == "streaming pipeline:":   # the stream came last: every other row was measured
        assert missing == [stream] and all(r["status"] == "ok" for r in lat["rows"]
                                           if r["status"] != "skipped")
    md = (out / "report.md").read_text()
    assert "## Incomplete" in md and f"- {stream}" in md and "**INCOMPLETE**" in md
    assert not list(out.glob("*.png"))
    assert json.loads((out / "report.previous.json").read_text())["whole"]
    if sig == "SIGINT":
        # The next run drops the partial report, not the whole one before it.
        from benchmarks import cli as bench_cli
        assert bench_cli.main([*cmd[4:], "--no-latency", "--quiet"]) == 0
        assert "incomplete" not in json.loads((out / "report.json").read_text())
        assert json.loads((out / "report.previous.json").read_text())["whole"]


def _report_files(out: Path, name: str, rep: dict) -> None:
    (out / f"{name}.json").write_text(json.dumps(rep))
    (out / f"{name}.md").write_text(f"# {rep['run']}\n")


def test_only_a_finished_report_becomes_report_previous(tmp_path):
    """A rerun after an interrupted first run made its partial report report.previous.*; and
    a run killed between its report.json and report.md left report.previous.md an older run's
    beside a newer report.previous.json. report.previous.* is now a finished run's pair, or
    absent."""
    from benchmarks.report import set_aside_earlier_report

    out = tmp_path / "out"
    out.mkdir()
    _report_files(out, "report", {"run": "first", "incomplete": {"stage": "latency"}})
    assert "partial report" in set_aside_earlier_report(out)
    assert not list(out.iterdir())   # nothing to keep: the first run never finished

    _report_files(out, "report.previous", {"run": "old"})
    (out / "report.json").write_text(json.dumps({"run": "whole"}))   # its report.md never made
    assert "report.previous" in set_aside_earlier_report(out)
    assert json.loads((out / "report.previous.json").read_text())["run"] == "whole"
    assert sorted(p.name for p in out.iterdir()) == ["report.previous.json"]

    _report_files(out, "report.previous", {"run": "whole"})
    (out / "report.md").write_text("# written, its report.json not\n")
    assert "still the whole one" in set_aside_earlier_report(out)
    assert (out / "report.previous.md").read_text() == "# whole\n"
    assert sorted(p.name for p in out.iterdir()) == ["report.previous.json",
                                                     "report.previous.md"]

    _report_files(out, "report.previous", {"run": "partial", "incomplete": {}})
    assert set_aside_earlier_report(out) is None   # an older version's partial one, removed
    assert not list(out.iterdir())


def test_bench_interrupted_in_its_export_lists_only_the_rows_it_would_measure(env, tmp_path):
    """A SIGTERM while a student was exported listed every format's rows as not measured (its
    artifact set did not exist yet), those --formats left out and those this machine cannot
    build too: 'fast/tflite-fp16', 'fast/engine' for a run of --formats onnx."""
    from optimize.export import FORMATS

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "sharpen.cli", "bench", "--out", str(out),
           "--weights", str(env / "student-good.pt"), "--teacher-weights",
           str(env / "teacher.pt"), "--data", str(env / "pairs"), "--cache",
           str(tmp_path / "cache"), "--formats", "onnx,engine", "--sizes", "160x96",
           "--stream-frames", "3"]
    rc, err = _signal_at(cmd, "exporting", "SIGTERM", 0.0)
    report = json.loads((out / "report.json").read_text()) if rc == 143 else {}
    if report.get("incomplete", {}).get("stage") != "export":
        pytest.skip(f"the signal did not land in the export (exit {rc})")
    missing = report["incomplete"]["missing"]
    engine = [] if FORMATS["engine"].availability() else ["good/engine"]
    assert missing["quality"] == ["input", "teacher", "good/pytorch", "good/onnx", *engine]
    assert not [r for r in missing["latency"] if "TFLite" in r or "INT8" in r], missing
    assert "student good ONNX Runtime FP32 160x96" in missing["latency"]


def test_quality_interrupted_part_way_keeps_the_rows_it_finished(env, good_run):
    """Ctrl-C in the middle of the quality stage: the rows that ran on every image are kept with
    their checks, the row it was in is "missing" (no numbers, no check) and the interruption
    still goes on. The signal is real, sent while the ONNX row reads its first image."""
    import signal

    from benchmarks.artifacts import ensure_artifacts, resolve_students
    from benchmarks.quality import Pair, TeacherOutputs, evaluate, load_pairs

    _, report = good_run
    cache = report["settings"]["cache"]
    st = resolve_students([str(env / "student-good.pt")])[0]
    arts = {st.name: ensure_artifacts(st, cache, "onnx", quiet=True)}
    pairs, desc = load_pairs(str(env / "pairs"))
    reads = []

    def blurred(read=pairs[0]._blurred):
        # Read once for the difficulty, twice by the teacher's loop, once by PyTorch: the
        # fifth read is the ONNX row's.
        reads.append(1)
        if len(reads) == 5:
            os.kill(os.getpid(), signal.SIGINT)
        return read()
    pairs[0] = Pair(pairs[0].name, blurred, pairs[0]._sharp)
    got: dict = {}
    with pytest.raises(KeyboardInterrupt):
        evaluate(pairs, TeacherOutputs(env / "teacher.pt", cache_root=cache), [st], arts,
                 data_desc=desc, progress=False, partial=got)
    rows = {r["key"]: r for r in got["quality"].rows}
    assert all(rows[k]["status"] == "ok" and rows[k]["n_images"] == len(pairs)
               for k in ("input", "teacher", "good/pytorch")), rows
    assert rows["good/onnx"]["status"] == "missing" and rows["good/onnx"]["ssim"] is None
    assert rows["good/tflite-int8"]["status"] == "skipped"
    assert [c["model"] for c in got["quality"].checks] == ["good/pytorch"]


def test_the_report_gives_the_runtimes_threads_from_omp_num_threads(good_run):
    """Without --threads the backends run with OMP_NUM_THREADS's count (the suite sets it):
    the report said they ran on every core."""
    _, report = good_run
    n = int(os.environ["OMP_NUM_THREADS"])
    assert report["latency"]["settings"]["runtime_threads"] == n
    assert report["settings"]["threads"] == 0   # not given: the variable set them
    assert report["machine"]["env"].get("OMP_NUM_THREADS") == str(n)


def test_latency_section_says_where_pytorch_ran(good_run):
    """The section said how many threads the runtimes had, not PyTorch eager's: with
    OMP_NUM_THREADS=1 it ran on one thread beside runtimes on every core, read as a backend
    comparison."""
    import copy

    from benchmarks.markdown import render_markdown

    _, report = good_run
    rep = copy.deepcopy(report)
    rep["machine"].update(torch_threads=1, usable_cores=2)
    rep["latency"]["settings"]["runtime_threads"] = None
    for r in rep["latency"]["rows"]:
        if r["backend"] == "pytorch" and r["status"] == "ok":
            r["provider"] = "CPU (1 thread)"
    md = render_markdown(rep)
    assert "PyTorch eager ran on CPU (1 thread), fewer than the runtimes' 2" in md, md
    rep["machine"]["torch_threads"] = 2
    for r in rep["latency"]["rows"]:
        if r["backend"] == "pytorch" and r["status"] == "ok":
            r["provider"] = "CPU (2 threads)"
    md = render_markdown(rep)
    assert "PyTorch eager ran on CPU (2 threads)." in md and "fewer than" not in md


def test_a_backend_that_fails_while_timed_fails_the_run():
    """A latency row with status "error" was in neither the checks nor the skipped list and the
    bench exited 0: CI could not tell a backend that crashes from one that runs."""
    from benchmarks.latency import result_row
    from benchmarks.report import latency_checks, skipped_list
    rows = [result_row(model="student fast", student="fast", backend="onnx-fp32", size=(64, 48),
                       ms=None, target_fps=30, status="error",
                       reason="RuntimeError: bad allocation"),
            result_row(model="student fast", student="fast", backend="tflite-int8",
                       size=(64, 48), ms=None, target_fps=30, status="skipped",
                       reason="LiteRT not installed"),
            result_row(model="student fast", student="fast", backend="onnx-int8", size=(64, 48),
                       ms=12.0, target_fps=30)]
    checks = latency_checks({"rows": rows, "stream": []})
    assert len(checks) == 1 and checks[0]["passed"] is False
    assert "64x48" in checks[0]["message"] and "bad allocation" in checks[0]["message"]
    assert [s["what"] for s in skipped_list(type("Q", (), {"rows": []}), {"rows": rows})] == [
        "latency student fast " + rows[1]["backend_label"]]


def test_a_paired_folder_as_real_nogt_points_to_real_pairs(tmp_path):
    """`--real-nogt reds-mini` (blur/ + sharp/) scored against the sharp images and printed
    those PSNR/SSIM/gain rows under the no-ground-truth table's headers (PSNR "to the teacher's
    output" that was not, SSIM under "sharpness")."""
    from benchmarks.artifacts import BenchError
    from benchmarks.report import _check_real_blur
    for i in range(2):
        img = np.full((24, 32, 3), 0.2 + 0.3 * i, np.float32)
        write_image(tmp_path / "sharp" / f"f{i}.png", img)
        write_image(tmp_path / "blur" / f"f{i}.png", img)
    with pytest.raises(BenchError, match=r"--real-nogt .*: has ground truth .* real "
                                         r"blur/sharp pairs go to --real-pairs"):
        _check_real_blur("--real-nogt", str(tmp_path), 4, need_gt=False)
    _check_real_blur("--real-pairs", str(tmp_path), 4, need_gt=True)   # where it belongs


@pytest.mark.skipif(not os.path.isdir("/proc/sys"), reason="needs a folder no file can be made in")
def test_an_out_folder_that_cannot_be_written_is_refused_before_the_work(tmp_path, capsys):
    """`--out` on a read-only file system passed (the folder existed): every export and
    measurement ran, then writing report.json ended in a traceback, the work lost. A file given
    as --out said "cannot create the output folder ...: File exists"."""
    from benchmarks import cli as bench_cli
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    for out, says in (("/proc/sys", "--out: cannot write in /proc/sys"),
                      (str(afile), f"--out: {afile} is a file, not a folder")):
        rc = bench_cli.main(["--out", out, "--weights", str(tmp_path / "nowhere.pt"), "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and says in err and "Traceback" not in err, err
    assert afile.read_text() == "mine"


def test_timing_options_with_no_latency_are_said_to_do_nothing(tmp_path, capsys):
    """`--no-latency --sizes 640x360 --stream-frames 5` ran without a word about the two
    options it ignored."""
    from benchmarks import cli as bench_cli
    bench_cli.main(["--out", str(tmp_path / "b"), "--weights", str(tmp_path / "nowhere.pt"),
                    "--no-latency", "--sizes", "640x360", "--stream-frames", "5", "--quiet"])
    assert ("warning: --sizes and --stream-frames have no effect with --no-latency (nothing is "
            "timed)") in capsys.readouterr().err
    bench_cli.main(["--out", str(tmp_path / "b"), "--weights", str(tmp_path / "nowhere.pt"),
                    "--no-latency", "--target-fps", "10", "--quiet"])
    assert ("warning: --target-fps has no effect with --no-latency") in capsys.readouterr().err
    bench_cli.main(["--out", str(tmp_path / "b"), "--weights", str(tmp_path / "nowhere.pt"),
                    "--no-latency", "--target-fps", "10", "--cpu-target-fps", "5", "--quiet"])
    assert ("warning: --target-fps and --cpu-target-fps have no effect with --no-latency"
            in capsys.readouterr().err)
    bench_cli.main(["--out", str(tmp_path / "b"), "--weights", str(tmp_path / "nowhere.pt"),
                    "--no-latency", "--quiet"])
    assert "warning" not in capsys.readouterr().err


def test_the_blurred_half_as_real_pairs_names_the_folder_to_give(tmp_path):
    """`--real-pairs reds-mini/blur` said only that its images have no ground truth."""
    from benchmarks.artifacts import BenchError
    from benchmarks.report import _check_real_blur
    for side in ("blur", "sharp"):
        write_image(tmp_path / side / "a.png", np.full((24, 32, 3), 0.5, np.float32))
    with pytest.raises(BenchError, match=rf"is the blurred half of a paired folder: give "
                                         rf"{tmp_path}, whose sharp/ holds the ground truth"):
        _check_real_blur("--real-pairs", str(tmp_path / "blur"), 4, need_gt=True)


def test_two_runs_sharing_a_cache_compute_a_teacher_output_once(env, tmp_path):
    """The teacher-output cache had no lock, where the export cache has one: two bench runs
    sharing a cache both ran the teacher (minutes per image on a CPU) on an input neither had
    yet. The same lock keeps them apart now: one computes it, the other waits and reads it."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from benchmarks.quality import TeacherOutputs

    runs = [TeacherOutputs(env / "teacher.pt", cache_root=tmp_path / "cache") for _ in range(2)]
    blurred = np.random.default_rng(0).random((24, 32, 3), dtype=np.float32)
    start = threading.Barrier(2)

    def run(outputs):
        start.wait()   # both look for the output before either has written it
        return outputs(blurred)
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(run, runs))
    assert sorted((r.computed, r.cached) for r in runs) == [(0, 1), (1, 0)]
    assert np.array_equal(got[0], got[1])
    assert [p.name for p in runs[0].folder.iterdir()] == [runs[0]._path(blurred).name]


def test_a_cache_on_a_filesystem_without_locks_exports_unlocked_with_a_warning(tmp_path,
                                                                               monkeypatch):
    """flock fails with ENOLCK or EOPNOTSUPP on some NFS, SMB and FUSE mounts: the bench run
    ended there in a traceback from the lock, which only keeps concurrent runs apart."""
    import errno
    import fcntl
    import warnings

    from benchmarks.artifacts import cache_lock

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    ran = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with cache_lock(tmp_path / "cache" / "s-123", say=print, doing="exporting"):
            ran.append(True)
    assert ran == [True]
    said = _sharpen_warnings(caught)
    assert len(said) == 1 and said[0].startswith(
        f"cannot lock {tmp_path / 'cache' / '.s-123.lock'} (No locks available): exporting "
        "unlocked"), said


def test_training_runs_checkpoints_are_named_after_their_run(tmp_path):
    """Every training run writes best.pt and last.pt: the report called a run's best.pt
    "student best" (two runs: "best" and "best-2"), where `sharpen export` names its files
    after the run (runs/a/best.pt -> a-best)."""
    from benchmarks.artifacts import resolve_students
    m = create_student("fast", width=8, edge_width=8)
    paths = []
    for run in ("fast-mine", "fast-other"):
        p = tmp_path / run / "best.pt"
        p.parent.mkdir()
        atomic_save(make_checkpoint(m, kind="student", arch="fast", arch_args=m.arch_args), p)
        paths.append(str(p))
    assert [st.name for st in resolve_students(paths, hash_files=False)] == \
        ["fast-mine-best", "fast-other-best"]


def _calib_folder(root: Path, photo: str, n: int = 5) -> Path:
    """`n` small blurred crops of a scikit-image photo: a user's --calib frames."""
    import skimage.data

    img = getattr(skimage.data, photo)()[..., :3].astype(np.float32) / 255.0
    for i in range(n):
        crop = cv2.resize(img[40 * i:40 * i + 200, 30 * i:30 * i + 240], (160, 144),
                          interpolation=cv2.INTER_AREA)
        write_image(root / f"{photo}{i}.png", cv2.GaussianBlur(crop, (0, 0), 1.0))
    return root


def _exported_calibration(folder: Path) -> tuple[list, set]:
    """What the cache folder's export report says its INT8 artifact was calibrated on."""
    report = json.loads((folder / "export_report.json").read_text())
    inputs = {r["extra"]["inputs"]["calibration"] for r in report["results"]
              if r["format"] == "onnx-int8"}
    return report["settings"]["calib_images"], inputs


def test_bench_calibrates_on_calib_and_caches_per_calibration(env, tmp_path, monkeypatch):
    """`sharpen bench` had no --calib: its INT8 rows were always calibrated on the built-in
    sample photos, so a user who exported with --calib my_frames/ could not measure the
    artifact they deploy. Now it takes export's --calib, and its cache keys on the crops."""
    from benchmarks.artifacts import ensure_artifacts, resolve_students

    cache, a = tmp_path / "cache", _calib_folder(tmp_path / "frames-a", "astronaut")
    rc = _bench(env, "calib-a", "--students", str(env / "student-good.pt"), "--formats",
                "onnx-int8", "--no-latency", "--calib", str(a), "--calib-count", "4",
                "--cache", str(cache))
    assert rc in (0, 1)
    report = json.loads((env / "calib-a" / "report.json").read_text())
    folder = Path(report["artifacts"]["good"]["folder"])
    assert report["artifacts"]["good"]["built_now"] == ["onnx-int8"]
    # As `sharpen export --calib`: the last fifth held out for parity, the rest calibrates.
    names, _ = _exported_calibration(folder)
    assert names == [f"astronaut{i}" for i in range(4)]
    assert str(a) in report["settings"]["calibration"]
    md = (env / "calib-a" / "report.md").read_text()
    assert f"INT8 calibration: 4 crops per student from --calib {a}" in md
    assert f"--calib {a}" in "\n".join(report["commands"])

    st = resolve_students([str(env / "student-good.pt")])[0]
    b = _calib_folder(tmp_path / "frames-b", "coffee")
    other = ensure_artifacts(st, cache, "onnx-int8", calib_count=4, quiet=True, calib=[str(b)])
    assert other.built_now == ["onnx-int8"] and other.folder == folder
    names, digest = _exported_calibration(folder)
    assert names == [f"coffee{i}" for i in range(4)]
    # Everything cached: the run reads the files' bytes, neither the student nor the images
    # (it loaded the one and decoded every one of the others on every run).
    with monkeypatch.context() as mp:
        def not_now(*args, **kwargs):
            raise AssertionError("a cached --calib run loaded the student or decoded an image")
        mp.setattr("distill.checkpoint.load_student", not_now)
        mp.setattr("distill.images.read_image", not_now)
        same = ensure_artifacts(st, cache, "onnx-int8", calib_count=4, quiet=True,
                                calib=[str(b)])
    assert same.built_now == [] and same.get("onnx-int8").usable
    # A file of the folder changed (same names): other crops, rebuilt.
    write_image(b / "coffee1.png", np.full((144, 160, 3), 0.3, np.float32))
    changed = ensure_artifacts(st, cache, "onnx-int8", calib_count=4, quiet=True,
                               calib=[str(b)])
    assert changed.built_now == ["onnx-int8"]
    assert _exported_calibration(folder)[1] != digest
    # And back to the built-in photos: rebuilt again, not the --calib artifact reused.
    builtin = ensure_artifacts(st, cache, "onnx-int8", calib_count=4, quiet=True)
    assert builtin.built_now == ["onnx-int8"]
    assert _exported_calibration(folder)[0] == ["astronaut", "coffee", "rocket",
                                                "hubble_deep_field"]


def test_a_bad_calib_folder_stops_the_bench_with_exports_message(env, tmp_path, capsys):
    """A missing or empty --calib folder is refused before any export, in export's words."""
    import argparse

    from optimize.commands import add_commands as export_commands

    empty = tmp_path / "empty"
    empty.mkdir()
    for source in (tmp_path / "nope", empty):
        cache = tmp_path / "cache"
        rc = _bench(env, "never-made", "--students", str(env / "student-good.pt"),
                    "--formats", "onnx-int8", "--cache", str(cache), "--calib", str(source))
        err = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in err, err
        assert not cache.exists() and not (env / "float-never-made").exists()
        parser = argparse.ArgumentParser(prog="sharpen")
        export_commands(parser.add_subparsers())
        args = parser.parse_args(["export", "--weights", str(env / "student-good.pt"),
                                  "--formats", "onnx-int8", "--out", str(tmp_path / "exp"),
                                  "--calib", str(source), "--quiet"])
        assert args.func(args) == 2
        said = capsys.readouterr().err.strip().removeprefix("sharpen export: ")
        assert said.startswith("error: --calib: no ") and str(source) in said, said
        assert err.strip() == f"sharpen bench: {said}"


def test_the_pytest_suite_takes_calib(env, tmp_path):
    """`pytest benchmarks/` shares the bench's options: --calib too, checked as the bench
    checks it."""
    res, out = _run_suite("-k", "keeps_teacher", "--students", str(env / "student-good.pt"),
                          "--teacher-weights", str(env / "teacher.pt"), "--data",
                          str(env / "pairs"), "--formats", "onnx", "--cache",
                          str(tmp_path / "cache"), "--calib", str(tmp_path / "nope"),
                          file="test_quality.py")
    assert res.returncode != 0, out
    assert f"--calib: no such file or folder: {tmp_path / 'nope'}" in out, out
    assert not (tmp_path / "cache").exists()


