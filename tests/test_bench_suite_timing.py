"""The benchmark suite (`pytest benchmarks/`, in a subprocess) times as `sharpen bench` does:
tiles, stream frames, quick mode's sizes, rounds, threads, where each row ran and how it is
judged (bench_fixtures). Timings are never asserted.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench_fixtures import _run_suite

pytestmark = pytest.mark.slow  # whole pipelines at toy sizes: tens of seconds


def test_the_suite_times_the_tiles_sharpen_bench_times(env, tmp_path):
    """`pytest benchmarks/` shares `sharpen bench`'s options: with --tile it times the frame
    in the tiles `sharpen run --tile` runs, and its JSON says which."""
    _run_suite("-k", "test_student_latency and pytorch or test_stream_pipeline", "--students",
               str(env / "student-good.pt"), "--teacher-weights", str(env / "teacher.pt"),
               "--data", str(env / "pairs"), "--formats", "onnx", "--cache",
               str(tmp_path / "cache"), "--sizes", "160x96", "--tile", "64",
               "--stream-frames", "2", "--benchmark-json", str(tmp_path / "b.json"),
               expect=0)
    timed = {b["name"].split("[")[0]: b["extra_info"]
             for b in json.loads((tmp_path / "b.json").read_text())["benchmarks"]}
    info = timed["test_student_latency"]
    assert info["tile"] == 64 and info["tiles_per_frame"] >= 2, info
    assert timed["test_stream_pipeline"]["tile"] == 64, timed


def test_the_pytest_suite_judges_latency_as_what_to_ship_does(env, tmp_path):
    """`pytest benchmarks/` judged each row's median against --target-fps (30) whatever its
    backend, and took no --cpu-target-fps, where `sharpen bench`'s What to ship judges the p90
    against the CPU's budget (10 fps) on the CPU: one model, two verdicts. The suite now
    judges with benchmarks/ship.py's rule and budgets, in its summary and its JSON."""
    _, out = _run_suite("-k", "test_student_latency and pytorch", "--students",
                        str(env / "student-good.pt"), "--sizes", "160x96",
                        "--cpu-target-fps", "0.5", "--target-fps", "100000",
                        "--benchmark-json", str(tmp_path / "b.json"),
                        file="test_latency.py", expect=0)
    [timed] = [b["extra_info"] for b in json.loads((tmp_path / "b.json").read_text())
               ["benchmarks"]]
    # PyTorch on the CPU: the CPU's 2000 ms budget, not --target-fps's 0.01 ms
    assert (timed["target_device"], timed["target_option"], timed["budget_ms"]) == (
        "CPU", "--cpu-target-fps", 2000.0), timed
    assert timed["judged_on"] == "p90" and timed["p90_ms"] >= timed["ms"], timed
    assert timed["meets_target"] is (timed["p90_ms"] <= 2000.0) is True, timed
    from benchmarks.ship import judge_latency
    again = {**timed, "meets_target": None}
    judge_latency({"settings": {"target_fps": 100000, "cpu_target_fps": 0.5},
                   "latency": {"rows": [again]}})
    assert again["meets_target"] == timed["meets_target"]   # the bench's verdict, the same
    assert "sharpen latency (per frame: median, p90)" in out, out
    assert "meets target: the 90th-percentile (p90) time per frame within the budget" in out
    assert "2000.0 ms per frame = 0.5 fps on a CPU (--cpu-target-fps)" in out, out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("student good"))
    assert (f"meets target ({timed['p90_ms']:.1f} ms at p90 vs 2000.0 ms, CPU, "
            "--cpu-target-fps)") in line, line


def test_the_teacher_and_the_stream_rows_say_where_they_ran(env, good_run, tmp_path):
    """The teacher's and the stream's latency rows named no provider, and on_gpu reads a row
    without one as run on the CPU: a teacher on CUDA, or a stream on ONNX Runtime's CUDA
    provider, was judged on --cpu-target-fps and said "CPU", in `sharpen bench` and now in
    `pytest benchmarks/` too, which judges as the bench does. Each row says where it ran."""
    import torch

    from benchmarks.ship import on_gpu

    cuda = torch.cuda.is_available()   # the teacher runs on a CUDA GPU where there is one
    _, report = good_run
    [teacher] = [r for r in report["latency"]["rows"] if r["backend"] == "teacher-tiled"]
    [stream] = report["latency"]["stream"]
    _, out = _run_suite("-k", "test_teacher_tiled or test_stream_pipeline", "--students",
                        str(env / "student-good.pt"), "--teacher-weights",
                        str(env / "teacher.pt"), "--formats", "onnx", "--cache",
                        str(tmp_path / "cache"), "--sizes", "160x96", "--stream-frames", "3",
                        "--benchmark-json", str(tmp_path / "b.json"),
                        file="test_latency.py", expect=0)
    timed = {b["extra_info"]["backend"]: b["extra_info"]
             for b in json.loads((tmp_path / "b.json").read_text())["benchmarks"]}
    for row in (teacher, timed["teacher-tiled"]):
        assert row["provider"].startswith("CUDA (" if cuda else "CPU ("), row
        assert (row["target_device"], on_gpu(row)) == (("GPU", True) if cuda
                                                       else ("CPU", False)), row
    for row in (stream, timed["pipeline-ort-fp32"]):
        # the provider run_stream's session ran on (ONNX Runtime's name for it)
        assert row["provider"].endswith("ExecutionProvider"), row
        assert row["target_device"] == ("GPU" if on_gpu(row) else "CPU"), row
    assert stream["provider"] == stream["stats"]["provider"]


def _stream_frames_timed(env: Path, tmp_path: Path, *extra: str) -> tuple:
    """Frames the pytest suite's streaming benchmark ran (None: not run), and its output."""
    (tmp_path / "b.json").unlink(missing_ok=True)   # none is written when nothing was timed
    _, out = _run_suite("-k", "stream", "-rs", "--students", str(env / "student-good.pt"),
                        "--formats", "onnx", "--cache", str(tmp_path / "cache"), "--sizes",
                        "160x96", "--benchmark-json", str(tmp_path / "b.json"), *extra,
                        file="test_latency.py", expect=0)
    if not (tmp_path / "b.json").exists():
        return None, out
    runs = json.loads((tmp_path / "b.json").read_text())["benchmarks"]
    return runs[0]["extra_info"]["frames"], out


def test_the_pytest_suite_streams_as_many_frames_as_the_bench(env, tmp_path):
    """`pytest benchmarks/` streamed 16 frames in quick mode where `sharpen bench` streams 24,
    and took no --stream-frames, so the report's pytest line timed another stream than the
    report's row (the run's fixed costs spread over fewer frames)."""
    from benchmarks.report import BenchOptions

    frames, _ = _stream_frames_timed(env, tmp_path)
    assert frames == BenchOptions(out="").mode()["stream_frames"]
    frames, _ = _stream_frames_timed(env, tmp_path, "--stream-frames", "3")
    assert frames == 3
    frames, out = _stream_frames_timed(env, tmp_path, "--stream-frames", "0")
    assert frames is None and "--stream-frames 0" in out, out
    opts = BenchOptions(out="r", stream_frames=3)
    assert "--stream-frames 3" in " ".join(opts.to_argv(pytest=True))


def test_the_pytest_suite_leaves_out_what_quick_mode_cannot_hold(env, tmp_path):
    """`sharpen bench` in quick mode leaves out a student at a size whose activations alive at
    once exceed QUICK_MAX_ACTIVATION_GB (seed at 1080p: 3.5 GB); its report's pytest line
    (which passes the quick sizes, 1920x1080 among them) timed it there all the same, past the
    memory the quick bench is held to, in a row the report does not have."""
    _, out = _run_suite("-k", "test_student_latency and pytorch", "-rs", "--students",
                        str(env / "student-bad.pt"), "--cache", str(tmp_path / "cache"),
                        "--sizes", "1920x1080,160x96",   # seed: 3.5 GB at 1920x1080
                        "--benchmark-disable", file="test_latency.py", expect=0)
    assert "1 passed, 1 skipped" in out and "GB of activations alive at once > 2 GB" in out, out


def test_grouping_by_a_parameter_the_teacher_lacks_keeps_it_in_its_group(env, tmp_path):
    """`--benchmark-group-by=param:backend_key` (the backends side by side) stopped the run with
    pytest-benchmark's KeyError after every benchmark ran: the teacher's has no backend_key."""
    _, out = _run_suite("-k", "test_teacher_tiled or test_student_latency", "--students",
                        str(env / "student-good.pt"), "--teacher-weights",
                        str(env / "teacher.pt"), "--formats", "onnx", "--cache",
                        str(tmp_path / "cache"), "--sizes", "160x96",
                        "--benchmark-group-by=param:backend_key", file="test_latency.py",
                        expect=0)
    assert "INTERNALERROR" not in out, out
    assert "benchmark 'backend_key=ort-fp32'" in out and "benchmark 'teacher at 160x96" in out, out


def test_benchmark_round_options_given_win_over_the_mode(env, tmp_path):
    """The suite's mode set min_rounds / max_time / warm-up in each test's benchmark marker,
    which pytest-benchmark puts above its command line: `--benchmark-min-rounds=100` timed the
    same 3+ rounds as without it, silently."""
    _run_suite("-k", "test_student_latency and ort-fp32", "--students",
               str(env / "student-good.pt"), "--formats", "onnx", "--cache",
               str(tmp_path / "cache"), "--sizes", "160x96", "--benchmark-min-rounds=7",
               "--benchmark-max-time", "0.000001", "--benchmark-json", str(tmp_path / "b.json"),
               file="test_latency.py", expect=0)
    (run,) = json.loads((tmp_path / "b.json").read_text())["benchmarks"]
    assert run["stats"]["rounds"] == 7, run["stats"]
    assert run["options"]["warmup"] == 1   # the mode's, where none was given


def test_the_pytest_suite_says_the_runtimes_threads_and_what_set_them(env, tmp_path):
    """Without --threads the runtimes take OMP_NUM_THREADS's count: a shell's =1 timed `fast`
    on one of two cores, and neither the summary nor the JSON said so (the 10 fps target is
    judged on both). Each timing's extra_info holds the count, the summary what set it."""
    args = ["-k", "test_student_latency and ort-fp32", "--students",
            str(env / "student-good.pt"), "--formats", "onnx", "--cache",
            str(tmp_path / "cache"), "--sizes", "96x64", "--benchmark-json",
            str(tmp_path / "b.json")]
    for extra, threads, said in (
            ((), 1, "ONNX Runtime and LiteRT on 1 thread (OMP_NUM_THREADS=1; --threads N sets"),
            (("--threads", "2"), 2, "ONNX Runtime and LiteRT on 2 threads (--threads 2)")):
        _, out = _run_suite(*args, *extra, file="test_latency.py", expect=0)
        assert said in out, out
        (run,) = json.loads((tmp_path / "b.json").read_text())["benchmarks"]
        assert run["extra_info"]["threads"] == threads, run["extra_info"]


def test_sgemm_threads_read_omp_num_threads_as_the_runtimes_do(monkeypatch):
    """OMP_NUM_THREADS=4,2 (OpenMP's nested levels) ran the runtimes on 4 threads, and the
    report's sgemm_threads said every core: the two counts of one run disagreed."""
    from benchmarks.machine import blas_threads
    from runtime.host import env_threads, usable_cores

    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    for value, n in (("4,2", 4), (" 3 ", 3), ("2,", 2)):
        monkeypatch.setenv("OMP_NUM_THREADS", value)
        assert blas_threads() == env_threads() == n, value
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "5,1")   # OpenBLAS's own variable wins
    assert blas_threads() == 5
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "0")
    monkeypatch.setenv("OMP_NUM_THREADS", "many")   # neither sets a count: every core
    assert blas_threads() == (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                              else usable_cores())


def test_the_sgemm_peaks_threads_under_a_cpu_limit_are_those_openblas_runs(good_run, tmp_path,
                                                                           monkeypatch):
    """Under a container's CPU limit (docker run --cpus 1) the report said numpy's peak ran on
    1 thread and that OMP_NUM_THREADS, which nobody set, limited it: blas_threads took the
    limit's count from usable_cores, but OpenBLAS reads no cgroup limit and runs on every core
    it may be scheduled on, the usable cores the Machine section gives."""
    from benchmarks.machine import blas_threads, machine_info
    from benchmarks.markdown import render_markdown
    from runtime import host

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if cores < 2:
        pytest.skip("one core here: a 1-CPU limit changes nothing")
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cpu.max").write_text("100000 100000\n")
    (tmp_path / "self").write_text("0::/\n")
    monkeypatch.setattr(host, "CGROUP_ROOT", root, raising=False)
    monkeypatch.setattr(host, "CGROUP_MEMBERSHIP", tmp_path / "self", raising=False)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    assert host.usable_cores() == 1   # the limit is read
    assert blas_threads() == cores
    _, report = good_run
    report = json.loads(json.dumps(report))
    report["machine"] = machine_info()
    report["latency"]["settings"].update(sgemm_threads=blas_threads(), runtime_threads=None)
    md = render_markdown(report)
    assert f"(numpy, {cores} threads)" in md
    assert "OMP_NUM_THREADS limited the peak" not in md
    # The limit the timings ran under, which run's thread warnings count, is said with them.
    assert report["machine"]["cpu_limit"] == 1.0
    assert f"({cores} usable cores, a CPU limit of 1 (cgroup); Machine below)" in md
    assert f"{cores} usable, a CPU limit of 1 (cgroup); torch threads" in md
    # LiteRT took the limit's count by default, as sharpen run does, not every core.
    assert "LiteRT backends ran on every core (LiteRT on 1 thread, the CPU limit's)" in md


