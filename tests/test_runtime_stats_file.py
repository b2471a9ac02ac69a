"""`sharpen run --stats` watched from outside while the run goes on (a monitoring agent, a
container's HEALTHCHECK): the file is refreshed during the run, not only at its end, and its
last write says how the run ended. The real command line in a subprocess; the file is polled
for with generous timeouts, nothing is timed."""
from __future__ import annotations

import contextlib
import json
import os
import stat
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import cv2
import pytest

from tests.runtime_fixtures import (camera_stream, cli_module, make_onnx_model, textured_frame,
                                     write_video)

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_onnx_model(tmp_path_factory.mktemp("models") / "student.onnx")


def _start(*argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", cli_module(), "run", *argv],
                            cwd=tempfile.gettempdir(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _read(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None   # not written yet (a half-written one is never there: it is atomic)


def _wait_for(path: Path, proc: subprocess.Popen, ok: Callable[[dict], bool],
              timeout: float = 90) -> dict:
    """The stats file's first content that `ok` accepts, read while the run goes on."""
    end = time.monotonic() + timeout
    seen = None
    while time.monotonic() < end:
        seen = _read(path)
        if seen is not None and ok(seen):
            return seen
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    out, err = proc.communicate()
    raise AssertionError(f"never seen; last {seen}; exit {proc.returncode}; {err}")


def test_a_camera_runs_stats_file_is_refreshed_while_it_runs_and_says_how_it_ended(
        model, tmp_path):
    """A days-long camera run wrote --stats only at its end: an agent watching it had nothing
    to read, and a run killed (SIGKILL, a power cut) left no file at all. It is now rewritten
    every --report-interval seconds (10 by default) with the run's state, pid, the time of its
    last frame (a stall shows as that time growing old while the file is refreshed) and the
    frames since the last write; SIGTERM's final write says the run was stopped, and which
    signal stopped it."""
    stats = tmp_path / "s.json"
    proc = _start("--model", str(model), "--source", "synthetic:32x24@30", "--out",
                  str(tmp_path / "o.ts"), "--stats", str(stats), "--report-interval", "0.2",
                  "--quiet")
    first = _wait_for(stats, proc, lambda s: s["frames_processed"] > 0)
    assert first["state"] == "running" and first["pid"] == proc.pid, first
    # (frames left out of the live video, to keep it real-time, have no end-to-end latency)
    later = _wait_for(stats, proc, lambda s: s["frames_processed"] > first["frames_processed"]
                      and s["recent"]["end_to_end_ms"]["p50"] is not None)
    assert later["state"] == "running" and later["updated_at"] > first["updated_at"], later
    assert later["frames_total"] is None, later   # a camera's: no end to count to
    assert later["started_at"] <= later["last_frame_at"] <= later["updated_at"], later
    assert abs(later["updated_at"] - time.time()) < 60, later   # Unix time, not perf_counter
    recent = later["recent"]
    assert recent["seconds"] > 0 and recent["fps"] > 0 and recent["dropped_frames"] >= 0, recent
    assert recent["end_to_end_ms"]["p90"] >= recent["end_to_end_ms"]["p50"] > 0, recent
    assert later["end_to_end_ms"]["p90"] >= later["end_to_end_ms"]["p50"] > 0, later
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    final = _read(stats)
    assert final["state"] == "stopped" and final["signal"] == "SIGTERM", final
    assert final["frames_processed"] >= later["frames_processed"], final
    assert "warning" not in err, err   # --report-interval with --quiet is used: no effect said

    done = tmp_path / "done.json"
    r = subprocess.run([sys.executable, "-m", cli_module(), "run", "--model", str(model),
                        "--source", "synthetic:32x24", "--max-frames", "5", "--out",
                        str(tmp_path / "d.mp4"), "--stats", str(done), "--quiet"],
                       cwd=tempfile.gettempdir(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    final = _read(done)
    assert final["state"] == "done" and final["frames_processed"] == 5, final
    assert final["recent"]["frames_processed"] <= 5, final


def test_a_lost_cameras_stats_file_says_reconnecting_then_that_the_source_was_lost(
        model, tmp_path):
    """While the camera is away the file says `reconnecting` (the frames stop, the file is
    still refreshed); once --reconnect's attempts are spent, the final write says
    `source_lost`, with the error, as the exit code 3 does."""
    stats = tmp_path / "cam.json"
    with camera_stream(tmp_path, 20, once=True) as url:
        proc = _start("--model", str(model), "--source", url, "--live", "--reconnect", "4",
                      "--out", str(tmp_path / "rec.ts"), "--stats", str(stats),
                      "--report-interval", "0.2", "--quiet")
        away = _wait_for(stats, proc, lambda s: s["state"] == "reconnecting")
        out, err = proc.communicate(timeout=120)
    assert away["frames_processed"] > 0 and away["last_frame_at"] is not None, away
    assert proc.returncode == 3, err
    final = _read(stats)
    assert final["state"] == "source_lost", final
    assert "did not come back after 4 attempts" in final["error"], final
    assert final["frames_processed"] >= away["frames_processed"], final


def test_a_second_run_into_the_same_output_is_refused_naming_the_first_and_a_killed_one_is_not(
        model, tmp_path):
    """Two `sharpen run`s given one --out (a second service, a command run again by hand) ran
    side by side: the last to close replaced the other's video, or both numbered frames into
    one folder. The second is refused (exit 4: a restart takes over once the first ends), naming
    the first's process, whichever spelling or link names the output; a run killed with
    SIGKILL leaves its lock file, which holds no lock and refuses no later run."""
    (tmp_path / "rec").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "rec")
    cases = {"video": (tmp_path / "rec" / "cam.ts", tmp_path / "link" / "cam.ts"),
             "folder": (tmp_path / "frames", f"{tmp_path}/rec/../frames/")}
    for what, (out, again) in cases.items():
        stats = tmp_path / f"{what}.json"
        first = _start("--model", str(model), "--source", "synthetic:64x48@30", "--out",
                       str(out), "--stats", str(stats), "--report-interval", "0.2", "--quiet")
        _wait_for(stats, first, lambda s: s["frames_processed"] > 0)
        r = subprocess.run([sys.executable, "-m", cli_module(), "run", "--model", str(model),
                            "--source", "synthetic:64x48", "--max-frames", "10", "--out",
                            str(again), "--quiet"], cwd=tempfile.gettempdir(),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 4, (what, r.stderr)
        assert f"another run is sharpening into it (process {first.pid}, which holds" in \
            r.stderr and "or give this run another --out" in r.stderr, (what, r.stderr)
        assert first.poll() is None, first.communicate()   # the first goes on
        first.kill()   # SIGKILL: no clean-up, its lock file stays
        first.communicate(timeout=60)
        # the --stats files' locks (beside them) are left too, unheld
        left = [p.name for p in out.parent.iterdir() if p.name.endswith(".lock")
                and not p.name.endswith(".json.lock")]
        assert left == [f".{out.name}.lock"], (what, left)
        r = subprocess.run([sys.executable, "-m", cli_module(), "run", "--model", str(model),
                            "--source", "synthetic:64x48", "--max-frames", "10", "--out",
                            str(again), "--quiet"], cwd=tempfile.gettempdir(),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and r.stderr.startswith("done: 10 frames"), (what, r.stderr)
        assert not [p for p in out.parent.iterdir() if p.name.endswith(".lock")
                    and not p.name.endswith(".json.lock")], what


def test_a_stats_file_that_cannot_be_refreshed_is_said_once_and_the_run_goes_on(model, tmp_path):
    """A refresh that fails part-way (the stats folder gone, a full disk) is said once, and the
    camera's run goes on writing its video, where the refresh thread's traceback said nothing
    of it; the final write's failure is the run's error, as before."""
    folder = tmp_path / "stats"
    folder.mkdir()
    stats, out = folder / "s.json", tmp_path / "cam.mp4"
    proc = _start("--model", str(model), "--source", "synthetic:64x48@30", "--out", str(out),
                  "--stats", str(stats), "--report-interval", "0.2", "--quiet")
    _wait_for(stats, proc, lambda s: s["frames_processed"] > 0)
    shutil.rmtree(folder)   # the stats file and its lock
    folder.write_text("a file where the stats folder was")
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.extend(proc.stderr), daemon=True)
    reader.start()
    end = time.monotonic() + 90
    while not any("cannot refresh the stats file" in ln for ln in said):
        assert time.monotonic() < end and proc.poll() is None, said
        time.sleep(0.05)
    assert proc.poll() is None, said   # still running
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    reader.join(timeout=10)
    refreshes = [ln for ln in said if "cannot refresh the stats file" in ln]
    assert len(refreshes) == 1 and str(stats) in refreshes[0], said
    assert "Traceback" not in "".join(said), said
    cap = cv2.VideoCapture(str(out))
    assert cap.isOpened() and cap.read()[0], said   # the video was closed and kept
    cap.release()


def test_a_second_camera_run_without_out_takes_the_next_default_name(model, tmp_path):
    """Without --out a run writes runs/sharpen/<name>, numbered on past an earlier result; a
    live run's result is not there until it closes, so a second camera run took the same name
    and was refused as a run into the first's --out. It takes the next name."""
    def start(*more: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", cli_module(), "run", "--model",
                                 str(model), "--source", "synthetic:64x48@30", "--quiet",
                                 *more], cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    first = start("--stats", "first.json", "--report-interval", "0.2")
    _wait_for(tmp_path / "first.json", first, lambda s: s["frames_processed"] > 0)
    second = start("--max-frames", "10")
    _, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    first.send_signal(signal.SIGTERM)
    _, first_err = first.communicate(timeout=60)
    names = sorted(p.name for p in (tmp_path / "runs" / "sharpen").iterdir())
    assert len(names) == 2 and all(n.endswith(".mp4") for n in names), (names, err, first_err)
    said = [[n for n in names if f"runs/sharpen/{n} " in e] for e in (first_err, err)]
    assert len(said[0]) == len(said[1]) == 1 and said[0] != said[1], (names, err, first_err)


def test_a_run_without_out_started_with_another_takes_the_next_name_not_an_error(
        model, tmp_path, monkeypatch, capsys):
    """Two runs without --out started at once (a script running clips of one name from two
    folders side by side) both found runs/sharpen/<name> free; the one whose lock came second
    was refused, exit 2, and told to give --out a path that can be written, as if the working
    folder were read-only. It takes the next name, as it would have a moment later. The race
    is set up here: the name is locked after the run looked at it."""
    from runtime import cli, run_lock
    monkeypatch.chdir(tmp_path)
    name = tmp_path / "runs" / "sharpen" / "synthetic_64x48.mp4"
    looked, in_use = [], run_lock.output_in_use

    def in_use_once_locked(out) -> bool:
        if not looked:   # the first look finds it free; another run locks it right after
            looked.append(out)
            held.enter_context(run_lock.output_lock(name, f"--out {name}", "--out"))
            return False
        return in_use(out)

    with contextlib.ExitStack() as held:
        monkeypatch.setattr(run_lock, "output_in_use", in_use_once_locked)
        code = cli.main(["run", "--model", str(model), "--source", "synthetic:64x48",
                         "--max-frames", "3", "--quiet"])
        err = capsys.readouterr().err
    assert looked == [Path("runs/sharpen/synthetic_64x48.mp4")], looked
    assert code == 0, err
    assert "runs/sharpen/synthetic_64x48-2.mp4 " in err and "error" not in err, err
    assert (tmp_path / "runs" / "sharpen" / "synthetic_64x48-2.mp4").is_file()


def test_a_file_runs_stats_say_how_many_frames_it_writes_in_all(model, tmp_path):
    """A monitor of a long file's run reads its progress from the file: frames done of all
    (`frames_total`, as the live line's 120/300), none for a camera's endless run."""
    video = tmp_path / "clip.mp4"
    write_video(video, n=12)
    stats = tmp_path / "s.json"
    r = subprocess.run([sys.executable, "-m", cli_module(), "run", "--model", str(model),
                        "--source", str(video), "--out", str(tmp_path / "o.mp4"), "--stats",
                        str(stats), "--quiet"], cwd=tempfile.gettempdir(), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    final = _read(stats)
    assert final["frames_total"] == final["frames_processed"] == 12, final
    assert final["state"] == "done", final


def test_a_killed_runs_default_name_is_taken_again_and_its_recording_seen_to(model, tmp_path):
    """A run without --out killed (SIGKILL, a power cut) leaves its lock file, which holds no
    lock: the next run without --out took the next name as if the killed one still ran, and so
    never saw to the killed run's recording (kept aside, or removed when it holds nothing),
    which stayed under its hidden temp name for good, with one more such pair a kill."""
    def run(*more: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", cli_module(), "run", "--model",
                                 str(model), "--source", "synthetic:64x48@30", "--quiet",
                                 *more], cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    first = run("--stats", "first.json", "--report-interval", "0.2")
    _wait_for(tmp_path / "first.json", first, lambda s: s["frames_processed"] > 0)
    first.kill()
    first.communicate(timeout=60)
    folder = tmp_path / "runs" / "sharpen"
    killed = sorted(p.name for p in folder.iterdir())
    assert any(n.endswith(".lock") for n in killed), killed   # left by the kill
    _, err = run("--max-frames", "10").communicate(timeout=120)
    names = sorted(p.name for p in folder.iterdir())
    assert not [n for n in names if n.startswith(".")], (killed, names, err)
    # (a cut recording holding video is kept aside as NAME.interrupted-...; an empty one goes)
    written = [n for n in names if ".interrupted-" not in n]
    assert len(written) == 1 and f"runs/sharpen/{written[0]} " in err, (killed, names, err)
    assert f".{written[0]}.lock" in killed, (killed, names)   # the killed run's name


def test_a_stats_refresh_cut_by_a_kill_is_removed_by_the_next_run(model, tmp_path):
    """A run killed while it refreshed --stats (every 10 s for days: SIGKILL after a stop's
    timeout, the OOM killer, a power cut) left the write's temp file, .NAME.PID.XXXXXXXX.tmp,
    beside the stats file, one more each such kill, which nothing removed. The next run with
    that --stats removes it; a live process's, and another file's, stay."""
    stats = tmp_path / "s.json"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    cut = tmp_path / f".s.json.{gone.pid}.abcd_123.tmp"
    live = tmp_path / f".s.json.{__import__('os').getpid()}.abcd_123.tmp"
    other = tmp_path / f".o.json.{gone.pid}.abcd_123.tmp"
    for p in (cut, live, other):
        p.write_text('{"state": "runn')
    r = subprocess.run([sys.executable, "-m", cli_module(), "run", "--model", str(model),
                        "--source", "synthetic:32x24", "--max-frames", "3", "--out",
                        str(tmp_path / "o.mp4"), "--stats", str(stats), "--quiet"],
                       cwd=tempfile.gettempdir(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert _read(stats)["state"] == "done"
    assert not cut.exists() and live.exists() and other.exists(), sorted(tmp_path.iterdir())


def test_an_apps_stop_and_a_failed_write_are_the_stats_files_last_state(model, tmp_path):
    """How an app's run ended, as its --stats file's last write says it: `stopped` by its
    stop_event (no signal named), `failed` where its Sink raised, with the error."""
    from runtime import Sink, run_stream

    class StopAfter(Sink):
        def __init__(self, stop: threading.Event, then: Optional[Exception] = None):
            self.stop, self.then, self.n = stop, then, 0

        def write(self, original, sharpened, name):
            self.n += 1
            if self.n == 5:
                if self.then is not None:
                    raise self.then
                self.stop.set()

    stop = threading.Event()
    stats = tmp_path / "stop.json"
    run_stream(str(model), "synthetic:32x24@30", StopAfter(stop), stop_event=stop,
               stats_path=str(stats), quiet=True)
    final = _read(stats)
    assert final["state"] == "stopped" and "signal" not in final, final
    assert final["frames_processed"] >= 5, final

    stats = tmp_path / "failed.json"
    with pytest.raises(OSError, match="disk full"):
        run_stream(str(model), "synthetic:32x24@30",
                   StopAfter(threading.Event(), OSError(28, "disk full")),
                   stats_path=str(stats), quiet=True)
    final = _read(stats)
    assert final["state"] == "failed" and "disk full" in final["error"], final


def test_a_run_whose_worker_cannot_start_ends_failed_with_no_thread_left(model, tmp_path,
                                                                         monkeypatch):
    """A thread that cannot start (a container's pids.max reached: "can't start new thread")
    ended the run before the stats file's final write: the file said `running` and the
    refresh thread, with the capture thread started before, went on in the app for good,
    refreshing a run that had ended. Now it is the run's error, and its last state `failed`."""
    from runtime import pipeline, run_stream

    start = pipeline._Worker.start

    def refuse_infer(self):
        if self.name == "infer":
            raise RuntimeError("can't start new thread")
        start(self)

    monkeypatch.setattr(pipeline._Worker, "start", refuse_infer)
    stats = tmp_path / "s.json"
    with pytest.raises(RuntimeError, match="can't start new thread"):
        run_stream(str(model), "synthetic:32x24@30", str(tmp_path / "o.mp4"),
                   stats_path=str(stats), report_interval=0.05, quiet=True)
    final = _read(stats)
    assert final["state"] == "failed" and "new thread" in final["error"], final
    time.sleep(0.3)   # several refresh periods: none comes after the final write
    assert _read(stats) == final
    left = [t.name for t in threading.enumerate() if t.name in ("stats-file", "capture")]
    assert not left, left


def test_a_killed_runs_stats_file_is_replaced_at_the_next_start_and_a_failed_open_written(
        model, tmp_path):
    """A run killed by SIGKILL or the OOM killer leaves its file saying `running`; the next
    run into that --stats kept it until its first frame (a model load, a camera slow to open)
    and wrote nothing at all where the source did not open: a watchdog waiting for the file
    could not tell a failed start from one not yet begun. The next run replaces it at once
    (`starting`, its own pid, `refresh_s`) and its last write says how the start failed."""
    import socket

    stats = tmp_path / "cam.json"
    killed = _start("--model", str(model), "--source", "synthetic:32x24@30", "--out",
                    str(tmp_path / "killed.ts"), "--stats", str(stats), "--quiet")
    _wait_for(stats, killed, lambda s: s["state"] == "running")
    killed.kill()
    killed.communicate()
    assert _read(stats)["pid"] == killed.pid
    with socket.socket() as mute:   # takes the connection, never answers: the open waits
        mute.bind(("127.0.0.1", 0))
        mute.listen(5)
        url = f"http://127.0.0.1:{mute.getsockname()[1]}/cam.ts"
        proc = _start("--model", str(model), "--source", url, "--timeout", "6", "--out",
                      str(tmp_path / "rec.ts"), "--stats", str(stats),
                      "--report-interval", "0.2", "--quiet")
        starting = _wait_for(stats, proc, lambda s: s["pid"] == proc.pid)
        out, err = proc.communicate(timeout=120)
    assert starting["state"] == "starting" and starting["refresh_s"] == 0.2, starting
    assert starting["frames_processed"] == 0 and starting["last_frame_at"] is None, starting
    assert proc.returncode == 3, err
    final = _read(stats)
    assert final["state"] == "source_lost" and final["pid"] == proc.pid, final
    assert "cannot open stream source" in final["error"], final
    assert final["frames_processed"] == 0, final
    # `systemctl stop` while it starts: stopped, as the exit code 143 says, not `starting`
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(5)
        url = f"http://127.0.0.1:{mute.getsockname()[1]}/cam.ts"
        proc = _start("--model", str(model), "--source", url, "--timeout", "60", "--out",
                      str(tmp_path / "rec.ts"), "--stats", str(stats), "--quiet")
        _wait_for(stats, proc, lambda s: s["pid"] == proc.pid)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    final = _read(stats)
    assert final["state"] == "stopped" and final["signal"] == "SIGTERM", final

    missing = tmp_path / "missing.json"
    r = subprocess.run([sys.executable, "-m", cli_module(), "run", "--model", str(model),
                        "--source", str(tmp_path / "nope.mp4"), "--out",
                        str(tmp_path / "o.mp4"), "--stats", str(missing), "--quiet"],
                       cwd=tempfile.gettempdir(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    final = _read(missing)
    assert final is not None and final["state"] == "failed", (final, r.stderr)
    assert "nope.mp4" in final["error"] and final["error"] in r.stderr, (final, r.stderr)


def test_a_run_whose_output_is_closing_says_finishing_and_is_still_refreshed(model, tmp_path):
    """Closing the output can take many seconds after the last frame (ffmpeg copying a long
    video's sound in, its colour tags): the file went on saying `running` and was no longer
    refreshed, a run that looked hung or dead to a watchdog. It now says `finishing` and is
    refreshed until the final write says how the run ended."""
    from runtime import Sink, run_stream

    closing, release = threading.Event(), threading.Event()

    class SlowClose(Sink):
        def write(self, original, sharpened, name):
            pass

        def close(self):
            closing.set()
            release.wait(60)

    stats = tmp_path / "s.json"
    run = threading.Thread(target=run_stream, args=(str(model), "synthetic:32x24", SlowClose()),
                           kwargs=dict(max_frames=3, stats_path=str(stats), quiet=True,
                                       report_interval=0.05))
    run.start()
    try:
        assert closing.wait(60)
        first = None
        end = time.monotonic() + 60
        while time.monotonic() < end:
            seen = _read(stats)
            if seen["state"] == "finishing":
                first = first or seen
                if seen["updated_at"] > first["updated_at"]:
                    break
            time.sleep(0.02)
        else:
            raise AssertionError(f"never refreshed as finishing; last {seen}")
        assert seen["frames_processed"] == 3 and seen["refresh_s"] == 0.05, seen
    finally:
        release.set()
        run.join(60)
    final = _read(stats)
    assert final["state"] == "done" and final["frames_processed"] == 3, final


def test_recent_counts_from_the_runs_start_not_from_a_refresh_while_it_started():
    """The --stats file is refreshed while the model loads (`starting`), each refresh marking
    where `recent` counts from: the first `recent` of the run took in the start's seconds, a
    rate too low at every camera's start. It counts from the run's start."""
    from runtime.stats import Stats

    stats = Stats()
    stats.recent()   # a refresh while the run starts
    time.sleep(0.05)
    stats.start()
    first = stats.recent()
    assert first["seconds"] <= stats.elapsed(), (first, stats.elapsed())


def test_recent_gives_the_worst_end_to_end_since_the_last_refresh():
    """A monitor polling --stats saw `recent` p50/p90 only: one frame that took seconds among
    300 was in neither, and the whole run's max gave no time. `recent` has the max too."""
    from runtime.stats import Stats

    stats = Stats()
    stats.start()
    for i in range(300):
        stats.add("end_to_end", 2.5 if i == 150 else 0.01)
    assert stats.recent()["end_to_end_ms"] == {"p50": 10.0, "p90": 10.0, "max": 2500.0}
    stats.add("end_to_end", 0.02)
    assert stats.recent()["end_to_end_ms"]["max"] == 20.0
    assert stats.recent()["end_to_end_ms"] == {"p50": None, "p90": None, "max": None}


def test_a_stats_path_that_is_a_fifo_or_another_programs_json_is_not_read_or_replaced_at_start(
        model, tmp_path):
    """The early write (before the model loads) replaces only an earlier run's stats file: it
    read the file to tell, and a FIFO at --stats (a monitor's pipe) held the run there for
    good, before the model loaded; a JSON of another program's that has a `state` and a `pid`
    (a supervisor's status file --stats names by mistake) was taken for a run's and replaced
    by a start that failed, where the run would have written nothing. A failed start's last
    write has `recent`, as every other write does."""
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    try:
        r = subprocess.run([sys.executable, "-m", cli_module(), "run", "--model", str(model),
                            "--source", "synthetic:32x24", "--max-frames", "3", "--out",
                            str(tmp_path / "f.mp4"), "--stats", str(fifo), "--quiet"],
                           cwd=tempfile.gettempdir(), capture_output=True, text=True,
                           timeout=90)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):   # a writer lets a reader stuck on it go
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        raise AssertionError("the run never got past reading the FIFO --stats names") from None
    # Refused before anything: the refresh's rename would have put a plain file in its place.
    assert r.returncode == 2, r.stderr
    assert "not a regular file" in r.stderr and str(fifo) in r.stderr, r.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)

    theirs = tmp_path / "status.json"
    text = json.dumps({"state": "running", "pid": 1, "service": "nginx"})
    theirs.write_text(text)
    missing = tmp_path / "failed.json"
    for stats in (theirs, missing):
        r = subprocess.run([sys.executable, "-m", cli_module(), "run", "--model", str(model),
                            "--source", str(tmp_path / "nope.mp4"), "--out",
                            str(tmp_path / "o.mp4"), "--stats", str(stats), "--quiet"],
                           cwd=tempfile.gettempdir(), capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 2 and "nope.mp4" in r.stderr, r.stderr
    assert theirs.read_text() == text
    final = _read(missing)
    assert final["state"] == "failed" and final["recent"]["frames_processed"] == 0, final


def _readme_health_check() -> str:
    """The README's shell health check, reading the stats file named by $1."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("```sh\nf=/var/lib/sharpen/yard.json\n", 1)[1].split("```", 1)[0]
    return 'f="$1"\n' + block


@pytest.mark.skipif(not shutil.which("jq"), reason="needs jq")
def test_the_readmes_health_check_passes_a_live_run_only_and_fails_cleanly_on_every_other_state(
        model, tmp_path):
    """The README's jq check for a monitor or HEALTHCHECK: healthy for a run writing frames;
    unhealthy, with no jq error in the health log, for each other state the file can hold
    (the run's immediate `running` write comes before its first frame: `last_frame_at` null,
    which jq cannot subtract), for a file no longer refreshed and for a killed run."""
    script = _readme_health_check()

    def check(path: Path) -> subprocess.CompletedProcess:
        return subprocess.run(["sh", "-c", script, "sh", str(path)], capture_output=True,
                              text=True, timeout=30)

    stats = tmp_path / "s.json"
    proc = _start("--model", str(model), "--source", "synthetic:32x24@30", "--out",
                  str(tmp_path / "o.ts"), "--stats", str(stats), "--report-interval", "0.2",
                  "--quiet")
    try:
        _wait_for(stats, proc, lambda s: s["frames_processed"] > 0)
        r = check(stats)
        assert r.returncode == 0, (r.stderr, _read(stats))
        live = _read(stats)
    finally:
        proc.kill()
        proc.communicate()
    r = check(stats)   # SIGKILL: the file says `running`, its pid is gone
    assert r.returncode != 0, (r.stderr, _read(stats))

    now = time.time()
    alive = {**live, "pid": os.getpid(), "refresh_s": 10}   # alive: the fields decide
    for name, fields in (("starting", {"state": "starting", "last_frame_at": None,
                                       "started_at": None}),
                         ("first write", {"state": "running", "last_frame_at": None}),
                         ("reconnecting", {"state": "reconnecting"}),
                         ("finishing", {"state": "finishing"}),
                         ("done", {"state": "done"}),
                         ("source lost at the start", {"state": "source_lost",
                                                       "last_frame_at": None}),
                         ("stale", {"updated_at": now - 60})):
        seen = tmp_path / f"{name}.json"
        seen.write_text(json.dumps({**alive, "last_frame_at": now, "updated_at": now,
                                    **fields}))
        r = check(seen)
        assert r.returncode == 1 and not r.stderr, (name, r.returncode, r.stderr)
    seen.write_text(json.dumps({**alive, "last_frame_at": now, "updated_at": now}))
    assert check(seen).returncode == 0   # the same file, healthy: the fields above decide


@pytest.mark.parametrize("path", ["/dev/null", "/dev/stdout", "/dev/stderr"])
def test_a_stats_path_on_a_device_is_refused_by_name(path):
    """`--stats /dev/stdout` (stats in a container's log) had the refresh rename a plain file
    over /dev/stdout itself where the run could write /dev (root in a container): the stats
    file is rewritten, never appended, so no device or /proc link can take it."""
    from runtime.pipeline import _check_stats_path
    from runtime.sinks import SinkError
    with pytest.raises(SinkError, match="not a regular file") as e:
        _check_stats_path(path, f"--stats {path}")
    assert f"--stats {path}" in str(e.value)


def test_a_second_run_given_another_runs_stats_file_is_refused_not_overwriting_it(
        model, tmp_path):
    """Two camera services whose template gave them one --stats path (a missing %i): each
    rewrote the file every 10 s with its own camera's numbers, and a monitor read whichever
    wrote last, without a word. The second is refused as a second run into one --out is
    (exit 4, naming the first's process and the file), under any spelling of the path; the
    first run's file is left to it."""
    stats = tmp_path / "cams" / "stats.json"
    first = _start("--model", str(model), "--source", "synthetic:96x64@30",
                   "--out", str(tmp_path / "cam1.ts"), "--stats", str(stats), "--quiet")
    try:
        _wait_for(stats, first, lambda s: s["state"] == "running")
        (tmp_path / "link").symlink_to(tmp_path / "cams")
        for spelling in (stats, tmp_path / "link" / "stats.json"):
            r = subprocess.run([sys.executable, "-m", cli_module(), "run", "--model",
                                str(model), "--source", "synthetic:96x64@30", "--out",
                                str(tmp_path / "cam2.ts"), "--stats", str(spelling),
                                "--quiet"], cwd=tempfile.gettempdir(), capture_output=True,
                               text=True, timeout=120)
            assert r.returncode == 4, (r.returncode, r.stderr)
            assert f"--stats {spelling}: " in r.stderr and f"process {first.pid}" in r.stderr, \
                r.stderr
            assert not (tmp_path / "cam2.ts").exists(), r.stderr   # refused before it began
        assert _read(stats)["pid"] == first.pid
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 143 and _read(stats)["state"] == "stopped"
    # Once the first has ended, the path is free: a later run takes it over.
    r = subprocess.run([sys.executable, "-m", cli_module(), "run", "--model", str(model),
                        "--source", "synthetic:96x64", "--max-frames", "2", "--out",
                        str(tmp_path / "cam2.mp4"), "--stats", str(stats), "--quiet"],
                       cwd=tempfile.gettempdir(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and _read(stats)["state"] == "done", r.stderr
    assert not list((tmp_path / "cams").glob(".*.lock")), list((tmp_path / "cams").iterdir())


@pytest.mark.skipif(not shutil.which("jq"), reason="needs jq")
def test_the_readmes_table_of_cameras_gives_a_line_per_cameras_stats_file(model, tmp_path):
    """An operator of several camera units reads all their --stats files at once: the
    README's jq line gives a header and one line per camera, named by its instance, with its
    state, frames and the age of its last refresh (a killed run's file still says running)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (block,) = [b for b in readme.split("```sh\n")[1:] if "input_filename" in b]
    block = block.split("```", 1)[0].replace("/var/lib/sharpen", str(tmp_path))
    for cam, frames in (("yard", 3), ("gate", 5)):
        r = subprocess.run([sys.executable, "-m", cli_module(), "run", "--model", str(model),
                            "--source", "synthetic:64x48", "--max-frames", str(frames),
                            "--out", str(tmp_path / f"{cam}.mp4"), "--stats",
                            str(tmp_path / f"{cam}.json"), "--quiet"],
                           cwd=tempfile.gettempdir(), capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
    r = subprocess.run(["sh", "-c", block], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr, r.stderr
    rows = [ln.split("\t") for ln in r.stdout.splitlines()]
    assert rows[0][:3] == ["camera", "state", "frames"], rows
    assert [row[:3] for row in rows[1:]] == [["gate", "done", "5"], ["yard", "done", "3"]], rows
    assert all(0 <= int(row[-1]) < 120 for row in rows[1:]), rows   # seconds since a refresh


def test_a_stats_file_in_the_image_folder_read_is_not_called_a_file_left_out(model, tmp_path):
    """--stats inside the image folder the run reads: the run's own file (written at its
    start, before the folder is listed) was warned about as a file that is not an image, at
    every run; left out without a word. Another file that is no image is still said."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"f{i}.png"), textured_frame(i, 24, 32))
    stats = folder / "stats.json"
    argv = [sys.executable, "-m", cli_module(), "run", "--model", str(model), "--source",
            str(folder), "--out", str(tmp_path / "sharp"), "--stats", str(stats), "--quiet",
            "--overwrite"]   # each run sharpens both, not only those without an output
    for _ in range(2):   # the first run makes the file, the second finds it there
        r = subprocess.run(argv, cwd=tempfile.gettempdir(), capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
        assert _read(stats)["frames_processed"] == 2
    (folder / "notes.txt").write_text("camera 2")
    r = subprocess.run(argv, cwd=tempfile.gettempdir(), capture_output=True, text=True,
                       timeout=120)
    assert "1 file that is not an image skipped (notes.txt)" in r.stderr, r.stderr


def test_a_stats_path_naming_an_image_of_the_folder_read_is_refused_not_written_over_it(
        model, tmp_path):
    """--stats naming one of the images of the folder (or glob) the run reads: the run left
    that image out of its frames as its own file, then wrote its JSON over the photo, exit 0.
    Refused before anything is written (exit 2), as --stats naming a single source image is;
    the photo is kept."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"f{i}.png"), textured_frame(i, 24, 32))
    photo = (folder / "f0.png").read_bytes()
    for source in (folder, folder / "*.png"):
        r = subprocess.run([sys.executable, "-m", cli_module(), "run", "--model", str(model),
                            "--source", str(source), "--out", str(tmp_path / "sharp"),
                            "--stats", str(folder / "f0.png"), "--quiet"],
                           cwd=tempfile.gettempdir(), capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 2 and f"--stats {folder / 'f0.png'}" in r.stderr, r.stderr
        assert (folder / "f0.png").read_bytes() == photo, source
        assert not (tmp_path / "sharp").exists(), r.stderr



def test_a_second_run_given_a_link_to_a_live_runs_stats_file_by_the_same_name_is_refused(
        model, tmp_path):
    """--stats yard.json, a link to real.json: the first write renames a file over the link
    (it is replaced, not written through), so the lock beside real.json kept nothing: a second
    run given yard.json went on writing the same file, and one given real.json, which neither
    writes, was refused. The lock is the name written, in its folder's real path."""
    cams = tmp_path / "cams"
    cams.mkdir()
    (cams / "yard.json").symlink_to("real.json")
    stats = cams / "yard.json"
    first = _start("--model", str(model), "--source", "synthetic:64x48@30",
                   "--out", str(tmp_path / "cam1.ts"), "--stats", str(stats), "--quiet")
    try:
        _wait_for(stats, first, lambda s: s["state"] == "running")
        argv = [sys.executable, "-m", cli_module(), "run", "--model", str(model), "--source",
                "synthetic:64x48", "--max-frames", "2", "--quiet", "--stats"]
        r = subprocess.run([*argv, str(stats), "--out", str(tmp_path / "cam2.mp4")],
                           cwd=tempfile.gettempdir(), capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 4 and f"process {first.pid}" in r.stderr, r.stderr
        r = subprocess.run([*argv, str(cams / "real.json"), "--out", str(tmp_path / "c3.mp4")],
                           cwd=tempfile.gettempdir(), capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        assert _read(stats)["pid"] == first.pid
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)


def test_a_run_without_out_refused_for_a_live_runs_stats_file_does_not_try_other_names(
        model, tmp_path, monkeypatch, capsys):
    """A run without --out whose --stats another live run holds was taken for one whose default
    output name another run had just locked: it tried the next name, and the next, ten times,
    refused each time for the same --stats. Refused at once (exit 4), naming the --stats."""
    from runtime import cli, pipeline, run_lock
    monkeypatch.chdir(tmp_path)
    stats = tmp_path / "s.json"
    tries, run_stream = [], pipeline.run_stream

    def counted(*args, **kwargs):
        tries.append(args[2])
        return run_stream(*args, **kwargs)

    monkeypatch.setattr(pipeline, "run_stream", counted)
    with run_lock.output_lock(stats, f"--stats {stats}", "--stats", doing="writing its stats",
                              replaced=True):
        code = cli.main(["run", "--model", str(model), "--source", "synthetic:64x48",
                         "--max-frames", "3", "--stats", str(stats), "--quiet"])
    err = capsys.readouterr().err
    assert code == 4 and f"--stats {stats}: " in err, err
    assert tries == ["runs/sharpen/synthetic_64x48.mp4"], tries
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs SIGUSR1")
def test_sigusr1_prints_the_live_line_and_refreshes_the_stats_file_now(model, tmp_path):
    """An operator checking a camera run days in (`kill -USR1`, as dd takes it) killed it on
    the spot, its video left under a hidden name and its stats saying `running`: SIGUSR1 now
    prints the live line and rewrites the --stats file at once, between their periods, and
    the run goes on."""
    stats = tmp_path / "s.json"
    proc = _start("--model", str(model), "--source", "synthetic:32x24@30", "--out",
                  str(tmp_path / "o.ts"), "--stats", str(stats), "--report-interval", "3600")
    _wait_for(stats, proc, lambda s: s["state"] == "running")

    def asked(s: dict) -> bool:   # the periodic refresh is an hour away: only asked-for ones
        if s["frames_processed"] == 0 and proc.poll() is None:
            proc.send_signal(signal.SIGUSR1)
            time.sleep(0.2)
        return s["frames_processed"] > 0
    seen = _wait_for(stats, proc, asked)
    assert seen["state"] == "running" and proc.poll() is None, seen
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    lines = [ln for ln in err.splitlines() if " fps  e2e p50 " in ln]
    assert len(lines) >= 2, err   # the asked-for line(s) and the closing one
    assert _read(stats)["state"] == "stopped"


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs SIGUSR1")
def test_sigusr1_before_the_first_frame_does_not_end_the_run(model, tmp_path):
    """SIGUSR1 while the run starts (the model loading, a source slow to give its first
    frame) ended it as its default action does: it is taken from the command's start."""
    stats = tmp_path / "s.json"
    header = b"YUV4MPEG2 W24 H16 F30:1 Ip A1:1 C444\n"   # and then no frame
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", cli_module(), "run", "--model", str(model),
                             "--source", "-", "--out", str(tmp_path / "o"), "--stats",
                             str(stats)], stdin=r, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tempfile.gettempdir())
    os.close(r)
    try:
        os.write(w, header)
        _wait_for(stats, proc, lambda s: s["state"] == "starting")
        proc.send_signal(signal.SIGUSR1)   # by default the end of it: exit -10, not 143
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(w)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert _read(stats)["state"] == "stopped"


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs SIGUSR1")
def test_sigusr1_as_the_run_exits_does_not_kill_it(model, tmp_path):
    """A monitor sending SIGUSR1 now and then to refresh --stats killed a run that had just
    finished (exit -10, not 0: its service saw a failure), as the interpreter's shutdown
    gave SIGUSR1 its default action back. Sent over and over until the run exits, SIGUSR1
    never ends it."""
    stats = tmp_path / "s.json"
    proc = _start("--model", str(model), "--source", "synthetic:32x24@30", "--max-frames", "20",
                  "--out", str(tmp_path / "o.ts"), "--stats", str(stats), "--quiet")
    _wait_for(stats, proc, lambda s: s["state"] in ("starting", "running", "done"))
    while proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGUSR1)
        time.sleep(0.005)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, (proc.returncode, err)
    assert _read(stats)["state"] == "done"


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs SIGUSR1")
def test_sigusr1_while_the_output_closes_prints_a_line_saying_so(model, monkeypatch):
    """A stop waits while the last segment is closed (an ffmpeg copy, seconds for 10 minutes
    of 1080p): `kill -USR1` then printed nothing, the live line's reporter already gone, and
    an operator could not tell a run closing its output from a hung one."""
    import io

    from runtime import Sink, run_stream

    printed = threading.Event()

    class Err(io.StringIO):
        def write(self, s: str) -> int:
            if " fps  e2e p50 " in s:
                printed.set()
            return super().write(s)

    err = Err()
    monkeypatch.setattr(sys, "stderr", err)
    said: list[bool] = []

    class SlowClose(Sink):
        def write(self, original, sharpened, name):
            pass

        def close(self):
            printed.clear()
            os.kill(os.getpid(), signal.SIGUSR1)
            said.append(printed.wait(30))

    run_stream(str(model), "synthetic:32x24", SlowClose(), max_frames=3, quiet=False,
               report_interval=3600)
    assert said == [True], err.getvalue()
    during = [ln for ln in err.getvalue().splitlines() if "closing the output" in ln]
    assert len(during) == 1 and " fps  e2e p50 " in during[0], err.getvalue()


def test_a_stats_file_named_prom_is_prometheus_text_that_a_textfile_collector_reads(
        model, tmp_path):
    """A Prometheus scrape of a camera box had only JSON to read (a jq cron job to convert
    it): `--stats NAME.prom` writes the same numbers in Prometheus' text format, atomically, for
    node_exporter's textfile collector, each sample labelled with the camera (NAME)."""
    import re

    from runtime import run_stream
    from runtime.stats import stats_file_or_none

    prom = tmp_path / "textfile" / "yard.prom"
    prom.parent.mkdir()
    run_stream(str(model), "synthetic:32x24@10", str(tmp_path / "rec.ts"), segment=1,
               max_frames=25, stats_path=str(prom), quiet=True)
    text = prom.read_text()
    assert text.endswith("\n") and not text.lstrip().startswith("{"), text
    samples, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("# HELP "):
            continue
        m = re.fullmatch(r'(sharpen_[a-z_]+)\{camera="yard"((?:,[a-z_]+="[^"\n]*")*)\} (\S+)',
                         line)
        assert m, line
        base = re.sub(r"_(sum|count)$", "", m[1]) if m[1].startswith("sharpen_latency") \
            else m[1]
        assert base in typed, line   # each family's TYPE comes before its samples
        samples[m[1] + m[2]] = float(m[3])
    assert samples["sharpen_frames_processed_total"] == 25
    assert samples['sharpen_state,state="done"'] == 1
    assert samples['sharpen_state,state="running"'] == 0 and samples["sharpen_up"] == 0
    assert samples["sharpen_segments_closed_total"] == 3
    assert samples["sharpen_reconnects_total"] == 0
    p50 = samples['sharpen_latency_seconds,stage="end_to_end",quantile="0.5"']
    assert 0 < p50 < samples['sharpen_latency_seconds_sum,stage="end_to_end"']
    assert samples['sharpen_latency_seconds_count,stage="end_to_end"'] == 25
    assert samples["sharpen_updated_timestamp_seconds"] > time.time() - 600
    assert sorted(p.name for p in prom.parent.iterdir()) == ["yard.prom"]   # no temp file
    # A later run replaces its own file at its start; another program's .prom is not ours.
    assert stats_file_or_none(prom)
    other = tmp_path / "textfile" / "node.prom"
    other.write_text("# HELP node_x x\n# TYPE node_x gauge\nnode_x 1\n")
    assert not stats_file_or_none(other)


def test_stats_given_twice_writes_a_json_summary_and_a_prom_file_both_refreshed(model, tmp_path):
    """An operator wants node_exporter's textfile for Prometheus and a JSON summary for the
    health check and jq: `--stats` wrote one file, JSON or .prom, and a second --stats replaced
    the first without a word. Given twice, both are written and refreshed while the run goes
    on, each locked as one is; one path given twice is refused by name."""
    js, prom = tmp_path / "yard.json", tmp_path / "textfile" / "yard.prom"
    run = _start("--model", str(model), "--source", "synthetic:32x24@30", "--out",
                 str(tmp_path / "yard.ts"), "--stats", str(js), "--stats", str(prom),
                 "--report-interval", "0.2", "--quiet")
    try:
        seen = _wait_for(js, run, lambda s: s["state"] == "running" and s["frames_processed"])
        assert prom.exists() and 'sharpen_state{camera="yard",state="running"} 1' in \
            prom.read_text(), prom.read_text()
        r = subprocess.run([sys.executable, "-m", cli_module(), "run", "--model", str(model),
                            "--source", "synthetic:32x24@30", "--out", str(tmp_path / "gate.ts"),
                            "--stats", str(tmp_path / "gate.json"), "--stats", str(prom),
                            "--quiet"], cwd=tempfile.gettempdir(), capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 4 and f"--stats {prom}: " in r.stderr, (r.returncode, r.stderr)
    finally:
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=60)
    assert run.returncode == 143, err
    done = _read(js)
    assert done["state"] == "stopped" and done["pid"] == seen["pid"], done
    text = prom.read_text()
    assert 'sharpen_state{camera="yard",state="stopped"} 1' in text, text
    assert f'sharpen_frames_processed_total{{camera="yard"}} {done["frames_processed"]}' in text
    r = subprocess.run([sys.executable, "-m", cli_module(), "run", "--model", str(model),
                        "--source", "synthetic:32x24", "--max-frames", "1", "--out",
                        str(tmp_path / "twice.ts"), "--stats", str(js), "--stats",
                        str(tmp_path / "." / "yard.json")], cwd=tempfile.gettempdir(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--stats" in r.stderr and "twice" in r.stderr, r.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_run_from_a_fifo_stopped_part_way_is_not_offered_resume(model, tmp_path):
    """ffmpeg writing into a FIFO that `sharpen run --source FIFO` reads (a camera's feed):
    SIGTERM said `run the same command with --resume to go on from there`, and --resume then
    skipped as many frames of the new feed as the stopped run had written. A FIFO's frames are
    not given again: the stop says what it gave, as for stdin, and keeps no resume record."""
    w, h = 32, 24
    fifo, out, stats = tmp_path / "feed.y4m", tmp_path / "o.ts", tmp_path / "s.json"
    os.mkfifo(fifo)
    done = threading.Event()

    def feed() -> None:
        with open(fifo, "wb") as f:
            f.write(f"YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n".encode())
            for i in range(5):
                f.write(b"FRAME\n" + bytes([40 * i]) * (w * h * 3 // 2))
            f.flush()
            done.wait(60)   # the writer alive, writing nothing more

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    proc = _start("--model", str(model), "--source", str(fifo), "--out", str(out),
                  "--stats", str(stats), "--report-interval", "0.1", "--quiet")
    try:
        _wait_for(stats, proc, lambda s: s["frames_processed"] >= 5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        done.set()
    assert proc.returncode == 143, err
    assert "--resume" not in err and "holds the 5 frames " in err, err
    assert not _read(stats).get("resumable"), _read(stats)


def test_a_prom_files_latency_sum_never_goes_down_as_frames_come():
    """Prometheus takes a summary's `_sum` for a counter: `rate(sharpen_latency_seconds_sum[5m])
    / rate(..._count[5m])` is the mean latency. The sum was the mean, rounded to a microsecond,
    times the count: a frame faster than the mean could lower it (by up to half a microsecond a
    frame of the run, a day's run: seconds), which rate() reads as a restart."""
    import re

    from runtime.prometheus import prometheus_text
    from runtime.stats import Stats

    def latency_sum(stats: Stats) -> float:
        text = prometheus_text(stats.summary(), "yard")
        return float(re.search(r'^sharpen_latency_seconds_sum\{camera="yard",stage="infer"\} '
                               r'(\S+)$', text, re.M)[1])

    stats = Stats()
    for _ in range(1000):
        stats.add("infer", 0.00012351)
    before = latency_sum(stats)
    stats.add("infer", 0.0001)
    assert latency_sum(stats) >= before
    assert latency_sum(stats) == pytest.approx(1000 * 0.00012351 + 0.0001, abs=1e-9)


def test_a_prom_files_last_frame_time_is_0_before_the_first_frame_so_the_alert_fires():
    """The README's alert rule, `time() - sharpen_last_frame_timestamp_seconds > 60 or
    sharpen_up == 0`, stands for the JSON health check, which fails before the first frame. A
    run stuck there (a camera whose opening hangs, its state `starting` and up 1) wrote no
    such sample, and a rule over a missing series never fires."""
    import re

    from runtime.prometheus import prometheus_text
    from runtime.stats import Stats

    text = prometheus_text({**Stats().summary(), "state": "starting"}, "yard")
    m = re.search(r'^sharpen_last_frame_timestamp_seconds\{camera="yard"\} (\S+)$', text, re.M)
    assert m and time.time() - float(m[1]) > 60, text


def test_a_prom_file_counts_the_frames_a_video_left_out_beside_those_it_repeated():
    """A variable-rate clip's video repeats frames before its longer gaps and leaves out those
    closer together than its interval (`left_out_frames` in the JSON, which --fps at the
    clip's average makes many of). The .prom file gave the repeats alone, as "over drops",
    the live case's, and not the frames a video lost."""
    import re

    from runtime.prometheus import prometheus_text
    from runtime.stats import Stats

    text = prometheus_text({**Stats().summary(), "repeated_frames": 87,
                            "left_out_frames": 180}, "clip")
    assert re.search(r'^sharpen_left_out_frames_total\{camera="clip"\} 180$', text, re.M), text
    help_ = re.search(r"^# HELP sharpen_repeated_frames_total (.*)$", text, re.M)
    assert help_ and "variable-rate" in help_[1], text


def test_a_prom_file_gives_the_sources_rate_so_a_camera_behind_it_can_be_told():
    """Three cameras into one textfile-collector folder, one sharpening 4 fps of its 30: the
    .prom files gave each one's fps and drops, but not the rate its camera sends (the JSON's
    `source.fps`), so no rule or panel could set a camera's fps against its own rate."""
    import re

    from runtime.prometheus import prometheus_text
    from runtime.stats import Stats

    live = {**Stats().summary(), "source": {"kind": "camera", "live": True, "fps": 30.0}}
    text = prometheus_text(live, "gate")
    assert re.search(r'^sharpen_source_fps\{camera="gate"\} 30(\.0)?$', text, re.M), text
    # images (no rate, 0 in the JSON) give no sample rather than a rate of 0
    photos = prometheus_text({**live, "source": {"kind": "images", "fps": 0.0}}, "lib")
    assert "sharpen_source_fps" not in photos, photos


def test_a_library_runs_prom_file_counts_the_photos_it_could_not_read(model, tmp_path):
    """A library run with a damaged photo exits 1 and its JSON --stats lists it under
    `skipped_inputs`; its .prom said `done` and nothing else, so no alert rule could tell it
    from a run that sharpened every photo."""
    import re

    import cv2

    lib = tmp_path / "lib"
    lib.mkdir()
    cv2.imwrite(str(lib / "a.jpg"), textured_frame(0))
    (lib / "b.jpg").write_bytes((lib / "a.jpg").read_bytes()[:300])   # cut short
    prom = tmp_path / "lib.prom"
    r = subprocess.run([sys.executable, "-m", cli_module(), "run", "--model", str(model),
                        "--source", str(lib), "--out", str(tmp_path / "out"), "--stats",
                        str(prom), "--quiet"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    text = prom.read_text()
    assert re.search(r'^sharpen_skipped_inputs_total\{camera="lib"\} 1$', text, re.M), text
    assert re.search(r'^sharpen_frames_processed_total\{camera="lib"\} 1$', text, re.M), text


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_resume_from_a_fifo_is_refused_naming_the_fifo(model, tmp_path):
    """`--resume` from a FIFO was refused as `feed.y4m (video) cannot be resumed (a camera's or
    stream's frames are not given again)`: a file, called a video, refused for a camera's
    reason. It says the source is a FIFO."""
    w, h = 32, 24
    fifo = tmp_path / "feed.y4m"
    os.mkfifo(fifo)

    def feed() -> None:
        with contextlib.suppress(BrokenPipeError), open(fifo, "wb") as f:
            f.write(f"YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n".encode())
            for i in range(5):
                f.write(b"FRAME\n" + bytes([40 * i]) * (w * h * 3 // 2))

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    proc = _start("--model", str(model), "--source", str(fifo), "--out",
                  str(tmp_path / "o.mkv"), "--resume", "--quiet")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert f"{fifo} (FIFO) cannot be resumed" in err and "camera's" not in err, err


def test_a_prometheus_metric_named_as_a_json_field_holds_that_fields_number():
    """`frames_total` in the JSON file is the frames a file run will write (the 300 of
    `120/300 frames`), and `sharpen_frames_total` in the .prom file was the frames written:
    one name, two numbers, which a dashboard moved from one file to the other mixed up. The
    frames written are `sharpen_frames_processed_total` (the JSON's `frames_processed`), the
    frames to come `sharpen_frames_expected`."""
    import re

    from runtime.prometheus import prometheus_text

    summary = {"state": "running", "frames_processed": 120, "frames_total": 300,
               "frames_captured": 125, "dropped_frames": 5, "reconnects": 0,
               "throughput_fps": 9.5}
    samples = dict(re.findall(r'^sharpen_([a-z_]+)\{camera="c"\} (\S+)$',
                              prometheus_text(summary, "c"), re.M))
    assert samples["frames_processed_total"] == "120", samples
    assert samples["frames_expected"] == "300", samples
    for name, value in samples.items():
        if name in summary:
            assert float(value) == summary[name], (name, value, summary[name])
    camera = prometheus_text({**summary, "frames_total": None}, "c")
    assert "sharpen_frames_expected" not in camera, camera   # a camera's run has no end


def test_a_prom_file_counts_the_segments_the_bound_removed_as_the_readme_lists_it(model,
                                                                                   tmp_path):
    """A service soak (--segment 10 --keep-segments 5) counted `segments_removed` in its JSON
    --stats file, the segments --keep-segments had removed, but its .prom file had no such
    metric: `sharpen_segments_closed_total` alone read as every closed segment on disk. Each
    counter of the .prom file is in the README's table, with its JSON field."""
    import re

    from runtime import run_stream

    prom = tmp_path / "yard.prom"
    run_stream(str(model), "synthetic:32x24@10", str(tmp_path / "rec.ts"), segment=0.5,
               keep_segments=2, max_frames=25, stats_path=str(prom), quiet=True, threads=1)
    text = prom.read_text()
    closed = int(re.search(r'^sharpen_segments_closed_total\{camera="yard"\} (\d+)$', text,
                           re.M)[1])
    assert closed > 2, text
    assert re.search(rf'^sharpen_segments_removed_total\{{camera="yard"\}} {closed - 2}$', text,
                     re.M), text
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = dict(re.findall(r"^\| `sharpen_([a-z_]+_total)` \(`([a-z_]+)`", readme, re.M))
    for name in re.findall(r"^# TYPE sharpen_([a-z_]+) counter$", text, re.M):
        assert name in table, f"sharpen_{name} is not in the README's table of counters"
    assert table["segments_removed_total"] == "segments_removed", table


def test_a_stats_file_that_cannot_be_written_at_the_end_is_one_line_naming_the_option(
        model, tmp_path):
    """A full disk at the run's last stats write ended it with "error: [Errno 28] No space
    left on device: 'st.json'": the errno and a bare path, not which option. A file size
    limit (ulimit -f) in the child stands in for the full disk: the small image is written,
    the stats file is over the limit."""
    import numpy as np
    from child_fixtures import file_size_limit
    src, out, st = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "st.json"
    cv2.imwrite(str(src), np.full((24, 32, 3), 90, np.uint8))

    r = subprocess.run([sys.executable, "-m", cli_module(), "run", "--model", str(model),
                        "--source", str(src), "--out", str(out), "--stats", str(st),
                        "--threads", "1", "--quiet"], cwd=tempfile.gettempdir(),
                       capture_output=True, text=True, timeout=120,
                       preexec_fn=file_size_limit(1500))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        f"sharpen run: error: --stats {st}: cannot write the run's last stats (File too "
        "large)"), r.stderr
    assert out.exists() and not st.exists(), list(tmp_path.iterdir())


def test_stats_files_joined_by_a_comma_are_refused_saying_how_several_are_given(model, tmp_path,
                                                                                 capsys):
    """`--stats s.json,s.prom`, spelled as the project's lists of values are (--formats
    onnx,tflite-int8), wrote one Prometheus file named 's.json,s.prom' and no JSON for the
    health check, without a word. Refused, saying several files are given space separated; a
    name with a comma of its own ('yard,north.json') is still a name."""
    from sharpen.cli import main
    given = f"{tmp_path / 's.json'},{tmp_path / 's.prom'}"
    argv = ["run", "--model", str(model), "--source", "synthetic:32x24", "--max-frames", "1",
            "--out", str(tmp_path / "o.ts"), "--quiet", "--stats"]
    assert main([*argv, given]) == 2
    err = capsys.readouterr().err
    assert f"--stats {given}: " in err and "--stats s.json s.prom" in err, err
    assert not list(tmp_path.glob("s.*")), list(tmp_path.iterdir())
    named = tmp_path / "yard,north.json"
    assert main([*argv, str(named)]) == 0, capsys.readouterr().err
    assert _read(named)["state"] == "done"
