"""`sharpen bench --streams N`: N concurrent `sharpen run` processes per exported row, as N
cameras on one box (benchmarks/streams.py). Tiny frames and N=2; no timings asserted: the
structure of the report, and that N separate processes ran the clip."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from bench_fixtures import _bench

pytestmark = pytest.mark.slow  # a bench run at toy size: tens of seconds


@pytest.fixture(scope="module")
def streams_run(env):
    rc = _bench(env, "streams", "--students", str(env / "student-good.pt"), "--formats",
                "onnx", "--sizes", "160x96", "--stream-frames", "0", "--streams", "2")
    return rc, json.loads((env / "streams" / "report.json").read_text())


def test_streams_run_n_processes_per_exported_row(streams_run):
    """The bench measured one stream at a time: an integrator sizing a box for N cameras could
    not see what N concurrent runs each get."""
    rc, report = streams_run
    assert rc == 0, report["checks"]
    assert report["settings"]["streams"] == [2]
    assert "sharpen run" in report["latency"]["settings"]["streams"]["method"]
    onnx = [r for r in report["latency"]["rows"]
            if r["backend"] == "ort-fp32" and r["status"] == "ok"]
    assert onnx, report["latency"]["rows"]
    (group,) = onnx[0]["streams"]
    assert "error" not in group, group
    assert group["streams"] == 2 and len(group["per_stream"]) == 2, group
    pids = {s["pid"] for s in group["per_stream"]}
    assert len(pids) == 2 and os.getpid() not in pids, group   # two processes, not the bench
    for s in group["per_stream"]:
        assert s["frames"] >= 12 and s["fps"] > 0, s   # each ran the whole clip
        assert s["infer_p90_ms"] >= s["infer_p50_ms"] > 0, s
        assert s["peak_rss_mib"] > 0, s
    assert group["frames"] == sum(s["frames"] for s in group["per_stream"])
    assert group["fps_min"] <= group["fps_median"]
    assert group["total_peak_rss_mib"] == pytest.approx(
        sum(s["peak_rss_mib"] for s in group["per_stream"]), abs=0.2)
    assert group["aggregate_fps"] > 0
    # Judged on the row's own target (--cpu-target-fps on the CPU): each stream's fps.
    assert group["target_fps"] == onnx[0]["target_fps"]
    assert group["keeps_target"] == (group["fps_min"] >= group["target_fps"])


def test_streams_are_in_report_md_and_what_to_ship(env, streams_run):
    rc, report = streams_run
    md = (env / "streams" / "report.md").read_text()
    assert "### Concurrent streams (--streams)" in md, md
    assert "| model | backend | size | streams | fps each (median, slowest) |" in md, md
    assert "| student good | ONNX Runtime FP32 | 160x96 | 2 |" in md, md
    answer = report["ship"]["answer"]
    assert "with 2 streams at once each makes " in answer, answer
    assert " MiB in all: " in answer and "this box serves " in answer, answer
    # The reproduce line asks for the same streams.
    assert any("--streams 2" in c for c in report["commands"]), report["commands"]


def test_without_streams_no_concurrent_runs(good_run):
    rc, report = good_run
    assert report["settings"]["streams"] == []
    assert not any(r.get("streams") for r in report["latency"]["rows"])


@pytest.mark.parametrize("bad, says", [("0", "give 1 to 64"), ("two", "'two' is not a number"),
                                       (",", "no number of streams")])
def test_a_bad_streams_value_is_refused_before_any_export(tmp_path, bad, says, capsys):
    from benchmarks import cli as bench_cli

    assert bench_cli.main(["--out", str(tmp_path / "o"), "--streams", bad]) == 2
    err = capsys.readouterr().err
    assert "--streams" in err and says in err, err
    assert not (tmp_path / "o").exists()


def test_a_sweep_is_sorted_and_deduplicated():
    from benchmarks.streams import parse_streams

    assert parse_streams("4,1,2,2") == [1, 2, 4]
    assert parse_streams(None) == []


def test_what_to_ship_leaves_out_a_model_whose_streams_miss_the_target(streams_run):
    """With --streams 4, What to ship picked the best-SSIM model that fit one stream's budget,
    ONNX FP32, whose four streams made 5.9 fps against 10, where TFLite INT8's kept it: the
    integrator shipped a box that does not serve its cameras."""
    import copy

    from benchmarks.ship import ship_section

    report = copy.deepcopy(streams_run[1])
    (row,) = [r for r in report["ship"]["rows"] if r["backend"] == "ort-fp32"]
    assert row["ship"], row   # one stream: within the budget
    for r in report["latency"]["rows"]:
        for g in r.get("streams") or []:
            g.update(fps_min=g["target_fps"] / 2, keeps_target=False)
    ship = ship_section(report)
    (row,) = [r for r in ship["rows"] if r["backend"] == "ort-fp32"]
    assert row["ship"] is None, row
    assert "2 streams at once" in row["why"] and "fps <" in row["why"], row["why"]
    assert ship["answer"].startswith("nothing serves 2 cameras at "), ship["answer"]
    assert "x the" not in ship["answer"], ship["answer"]   # not "0.4x the budget": it fits one


def test_a_model_that_misses_at_fewer_streams_is_not_picked_for_more():
    """A miss at 2 streams and a keep at 4 (noise on a busy host) let What to ship pick the
    model "for 4 cameras" while its answer said it serves 1: the pick must follow the same
    rule as the count, the first count that misses ends what the box serves."""
    from benchmarks.streams import most_served, short_of

    groups = [{"streams": n, "keeps_target": keeps, "fps_min": fps, "target_fps": 10.0}
              for n, keeps, fps in ((1, True, 30.0), (2, False, 9.0), (4, True, 11.0))]
    row = {"streams": groups}
    assert most_served(groups) == 1
    assert short_of(row) is not None and short_of(row)["streams"] == 2, short_of(row)
    assert short_of({"streams": [g for g in groups if g["keeps_target"]]}) is None


def _children_running_streams() -> list[int]:
    """This test process's `python -m benchmarks.memory video` children now."""
    pids = []
    for d in Path("/proc").iterdir():
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and b"benchmarks.memory" in cmd:
            pids.append(int(d.name))
    return pids


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_one_stream_failing_names_it_and_stops_the_others(tmp_path):
    """A stream killed (the out-of-memory killer, say) left the others running to the end of
    their clip, minutes at 1080p, for a group reported failed anyway, and the error did not say
    which of the N it was."""
    from benchmarks.latency import make_video
    from benchmarks.streams import measure_streams
    from runtime_fixtures import make_onnx_model

    model = make_onnx_model(tmp_path / "m.onnx")
    clip = make_video(tmp_path / "clip", 64, 48, 1000)   # seconds: longer than a kill takes
    killed: list[int] = []

    def kill_the_second():
        while len(pids := sorted(_children_running_streams())) < 2:
            time.sleep(0.02)
        os.kill(pids[1], signal.SIGKILL)
        killed.append(pids[1])

    killer = threading.Thread(target=kill_the_second, daemon=True)
    killer.start()
    group = measure_streams(3, model, clip, threads=1)
    killer.join(5)
    assert killed, "no stream started"
    assert group.keys() == {"streams", "error"}, group
    assert "stream 2 of 3 was killed by SIGKILL" in group["error"], group
    assert "stopped" in group["error"], group   # the others did not run their 3000 frames
    assert _children_running_streams() == []


def test_the_p90_is_labelled_the_infer_stages_and_the_slowest_streams(capsys, monkeypatch):
    """The help and the table said "p90" (the help: "fps and p90 per stream") of a number that
    is the infer stage's alone (not capture to output) and the slowest stream's of the N."""
    from benchmarks import cli as bench_cli
    from benchmarks.streams import HEADERS, _group, table_rows

    group = _group([{"pid": i, "fps": 12.0, "frames": 30, "infer_p50_ms": 20.0,
                     "infer_p90_ms": p90, "peak_rss_mib": 100.0, "started_at": 1.0,
                     "last_frame_at": 3.0} for i, p90 in enumerate((25.0, 60.0))])
    row = {"model": "m", "backend": "ort-fp32", "size": "64x48", "streams": [group]}
    (line,) = table_rows([row])
    assert line[HEADERS.index("infer ms (median, slowest stream's p90)")] == "20.0, 60.0"
    monkeypatch.setenv("COLUMNS", "100000")   # each option's entry on a line of its own
    with pytest.raises(SystemExit):
        bench_cli.main(["--help"])
    (streams_help,) = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()
                       if line.strip().startswith("--streams N,...")]
    assert "p90" in streams_help and " p90 " not in streams_help.replace("infer p90 ", ""), \
        streams_help


INTERRUPTED = """
import os, signal, sys, threading, time
from pathlib import Path
from benchmarks.streams import measure_streams

def parent(p):
    try:
        return (p / "stat").read_text().rsplit(")", 1)[1].split()[1]
    except OSError:   # a process that ended while the loop looked: one of a busy host's
        return None

def interrupt():
    me = str(os.getpid())
    while sum(parent(p) == me for p in Path("/proc").iterdir() if p.name.isdigit()) < 2:
        time.sleep(0.02)
    os.kill(os.getpid(), signal.SIGINT)

threading.Thread(target=interrupt, daemon=True).start()
try:
    measure_streams(2, sys.argv[1], sys.argv[2], threads=1)
except KeyboardInterrupt:
    sys.exit(130)
sys.exit(0)
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_ctrl_c_leaves_no_stream_running_and_no_temp_files(tmp_path):
    """Ctrl-C (SIGINT to the bench alone, as `kill -INT`) while N streams run: none of them
    outlives the bench, and their clips, outputs and stats files are gone."""
    import subprocess
    import sys

    from benchmarks.latency import make_video
    from runtime_fixtures import make_onnx_model

    model = make_onnx_model(tmp_path / "m.onnx")
    clip = make_video(tmp_path / "clip", 64, 48, 3000)   # runs far longer than the test
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]),
                                          os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-c", INTERRUPTED, str(model), str(clip)], env=env,
                         capture_output=True, text=True, timeout=120,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert res.returncode == 130, res.stderr
    left = [p.name for p in Path("/proc").iterdir() if p.name.isdigit()
            and str(clip).encode() in _cmdline(p)]
    assert left == [], left   # no orphan still reading the clip
    assert list(tmp.iterdir()) == []


# Ctrl-C as the second stream starts: after its fork, before Popen returns it to the bench.
INTERRUPTED_IN_A_START = """
import os, signal, subprocess, sys

class Popen(subprocess.Popen):
    started = 0

    def _execute_child(self, *args, **kwargs):
        super()._execute_child(*args, **kwargs)
        Popen.started += 1
        if Popen.started == 2:
            os.kill(os.getpid(), signal.SIGINT)

subprocess.Popen = Popen
from benchmarks.streams import measure_streams
try:
    measure_streams(2, sys.argv[1], sys.argv[2], threads=1)
except KeyboardInterrupt:
    sys.exit(130)
sys.exit(0)
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_ctrl_c_as_a_stream_starts_leaves_it_not_running_in_a_removed_folder(tmp_path):
    """Ctrl-C inside a stream's start (a busy host makes that window wide): the child ran, but
    its Popen never reached the bench's list, so nothing stopped it, and it went on writing
    into the temp folder the bench had removed (a `.bench-tmp` folder left in --out)."""
    import subprocess
    import sys

    from benchmarks.latency import make_video
    from runtime_fixtures import make_onnx_model

    model = make_onnx_model(tmp_path / "m.onnx")
    clip = make_video(tmp_path / "clip", 64, 48, 3000)   # runs far longer than the test
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]),
                                          os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-c", INTERRUPTED_IN_A_START, str(model), str(clip)],
                         env=env, capture_output=True, text=True, timeout=120)
    left = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
            and str(clip).encode() in _cmdline(p)]
    for pid in left:   # not left running past the test
        os.kill(pid, signal.SIGKILL)
    assert res.returncode == 130, res.stderr
    assert left == [], "a stream outlived the interrupted bench"
    assert list(tmp.iterdir()) == []


def _cmdline(p: Path) -> bytes:
    try:
        return (p / "cmdline").read_bytes()
    except OSError:
        return b""


def test_a_bench_interrupted_in_its_streams_lists_them_as_not_measured(env, tmp_path):
    """Ctrl-C while the N streams ran: the interrupted report said "Every row was measured;
    only the figures are missing", of a run whose --streams groups were never measured."""
    import subprocess
    import sys

    out, tmp = tmp_path / "out", tmp_path / "t"
    tmp.mkdir()
    cmd = [sys.executable, "-m", "sharpen.cli", "bench", "--out", str(out),
           "--weights", str(env / "student-good.pt"), "--teacher-weights",
           str(env / "teacher.pt"), "--data", str(env / "pairs"), "--cache", str(env / "cache"),
           "--formats", "onnx", "--sizes", "160x96", "--stream-frames", "0", "--streams", "2",
           "--quiet"]
    proc = subprocess.Popen(cmd, env={**os.environ, "TMPDIR": str(tmp)}, text=True,
                            stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        while proc.poll() is None and not any(
                b"stats-" in _cmdline(p) and str(out).encode() in _cmdline(p)
                for p in Path("/proc").iterdir() if p.name.isdigit()):
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    inc = json.loads((out / "report.json").read_text())["incomplete"]
    assert inc["missing"].get("streams") == ["student good ONNX Runtime FP32 160x96"], inc
    md = (out / "report.md").read_text()
    assert "Every row was measured" not in md and "Concurrent streams (--streams)" in md, md
    # the clips' and streams' temp folders: in the bench's scratch folder inside --out
    assert list(tmp.glob("sharpen-bench-*")) == [] and list(out.glob(".bench-tmp*")) == []


def test_a_generated_clip_cut_by_a_full_disk_is_an_error_naming_it(tmp_path):
    """The streaming rows' generated clip, cut by a full disk (a file size limit stands in):
    OpenCV's writer said nothing, and the bench timed the frames that were left, or the AVI it
    then tried, cut as well. It is the full disk's error naming the clip now."""
    from child_fixtures import file_size_limit, in_a_child

    from benchmarks.latency import make_video
    path = tmp_path / "clip.mp4"

    def work(said: dict) -> None:
        file_size_limit(5000)()
        try:
            make_video(path, 160, 96, 30)
        except OSError as e:
            said["errno"], said["filename"] = e.errno, e.filename
    said = in_a_child(work)
    assert said.get("filename") == str(path) and said.get("errno") == 27, said
    assert list(tmp_path.iterdir()) == []


def test_a_video_rows_clip_cut_by_a_full_disk_stops_the_bench_as_the_streams_clip_does():
    """The video rows' clips (one per size) cut by a full disk (a file size limit stands in)
    skipped each row, "the clip could not be made: [Errno 27] File too large", and the bench
    went on without them, where the streaming rows' clip, or a figure, stops it with
    the full disk's line. It is the full disk's error naming the clip now, as theirs is."""
    from child_fixtures import file_size_limit, in_a_child

    from benchmarks.latency_run import Clips

    def work(said: dict) -> None:
        file_size_limit(5000)()
        clips = Clips()
        try:
            said["got"] = str(clips.get((160, 96), 30))
        except OSError as e:
            said["errno"], said["filename"] = e.errno, e.filename
        finally:
            clips.close()
    said = in_a_child(work)
    assert said.get("errno") == 27 and said.get("filename", "").endswith(".mp4"), said
