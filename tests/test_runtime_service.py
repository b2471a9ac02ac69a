"""`sharpen run` as an always-on service (systemd, Restart=always, stderr to the journal): the
exit codes a supervisor acts on, and what the run writes to a log that is not a terminal."""
from __future__ import annotations

import argparse
import configparser
import contextlib
import json
import os
import re
import select
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import pytest

from runtime.video_sink import fourcc_for
from tests.runtime_fixtures import (camera_stream, cli_module, live_lines, make_onnx_model,
                                   textured_frame, write_video)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_onnx_model(tmp_path_factory.mktemp("models") / "student.onnx")


def _sharpen_run(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real command line, stderr a pipe as under a service manager (not a terminal)."""
    return subprocess.run([sys.executable, "-m", cli_module(), "run", *argv],
                          cwd=tempfile.gettempdir(), capture_output=True, text=True,
                          timeout=timeout)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_config_error_exits_2_and_a_camera_not_there_or_lost_exits_3(model, tmp_path):
    """A camera unplugged, unreachable or gone part-way exited 2, as a misspelt --model or
    --source did: a unit file's RestartPreventExitStatus=2, which stops a crash loop on a
    configuration error, also stopped the service for good when the camera dropped off (a
    reboot of the camera, a loose cable), and `Restart=` could not tell them apart."""
    out = str(tmp_path / "rec" / "cam.ts")
    config_errors = {
        "--model": ["--model", str(tmp_path / "nothere.onnx"), "--source", "synthetic:32x24",
                    "--max-frames", "2"],
        "--fps": ["--model", str(model), "--source", "synthetic:32x24", "--fps", "-1"],
        "--source": ["--model", str(model), "--source", str(tmp_path / "nothere.mp4")],
        "argparse": ["--model", str(model), "--source", "0", "--reconect", "3"],
    }
    for what, argv in config_errors.items():
        r = _sharpen_run(*argv, "--out", out, "--quiet")
        assert r.returncode == 2 and "error:" in r.stderr, (what, r.returncode, r.stderr)
    not_there = {
        "/dev/video99": "camera device not found: /dev/video99",
        f"http://127.0.0.1:{_closed_port()}/cam.mjpg": "cannot open stream source",
    }
    for source, said in not_there.items():
        r = _sharpen_run("--model", str(model), "--source", source, "--timeout", "5",
                         "--out", out, "--quiet")
        assert r.returncode == 3 and said in r.stderr, (source, r.returncode, r.stderr)
    with camera_stream(tmp_path, 30) as url:
        r = _sharpen_run("--model", str(model), "--source", url, "--live", "--reconnect", "0",
                         "--out", out, "--quiet")
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert "stopped after 30 frames in all (reconnecting is off: --reconnect 0)" in r.stderr
    assert f"sharpen run: {out} holds the " in r.stderr, r.stderr   # kept, closed cleanly


def _status_lines(err: str) -> list[str]:
    """The live lines, their date and source off (a log's lines are dated and named)."""
    return live_lines(err)


def test_a_live_line_goes_to_a_log_once_a_minute_not_once_a_second(model, tmp_path):
    """Run under a service manager, stderr is the journal: the live stats line, made for a
    terminal, went there once a second, 86,400 lines a day of a camera service's log. Where
    stderr is no terminal it now comes once a minute (and the closing one), --report-interval
    sets it, and --quiet still drops it."""
    def argv(out: str) -> list[str]:   # 3.3 s of a 30 fps camera
        return ["--model", str(model), "--source", "synthetic:32x24@30", "--max-frames", "100",
                "--out", str(tmp_path / out)]

    r = _sharpen_run(*argv("a.ts"))
    assert r.returncode == 0, r.stderr
    assert len(_status_lines(r.stderr)) == 1, r.stderr   # the closing one, with the run's counts
    assert _status_lines(r.stderr)[0].startswith("100 frames  "), r.stderr
    r = _sharpen_run(*argv("b.ts"), "--report-interval", "1")
    assert r.returncode == 0 and len(_status_lines(r.stderr)) >= 3, r.stderr
    r = _sharpen_run(*argv("c.ts"), "--quiet")
    assert r.returncode == 0 and not _status_lines(r.stderr), r.stderr
    assert r.stderr.startswith("done: 100 frames"), r.stderr
    for bad in ("0", "-1", "inf", "nan"):
        r = _sharpen_run(*argv("d.ts"), "--report-interval", bad)
        assert r.returncode == 2 and r.stderr == (
            "sharpen run: error: --report-interval must be a number of seconds above 0, got "
            f"{float(bad):g}\n"), r.stderr


def test_cameras_sharing_one_log_name_their_source_in_each_line(model, tmp_path):
    """Three cameras' runs with `2>> cameras.log` wrote `40 frames  24.8 fps ...` and
    `done: 40 frames, ...` alike: which camera fell behind, or ended, could not be told. A
    log's dated live line and the done: line name the source (a pipeline by its source
    element, stdin as stdin)."""
    clip = tmp_path / "yard cam.mp4"
    write_video(clip, n=6)
    for source, name in {"synthetic:32x24@30": "synthetic:32x24@30", str(clip): str(clip)}.items():
        r = _sharpen_run("--model", str(model), "--source", source, "--max-frames", "6",
                         "--out", str(tmp_path / f"{len(name)}.ts"))
        assert r.returncode == 0, r.stderr
        lines = [ln for ln in r.stderr.splitlines() if " frames  " in ln]
        named = re.compile(r"\S+ \S+ " + re.escape(name) + r": \d+(?:/\d+)? frames  ")
        assert lines and all(named.match(ln) for ln in lines), r.stderr
        assert f"done: 6 frames from {name}, " in r.stderr, r.stderr
    from runtime.source_spec import source_label
    labels = {"nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM) ! nvvidconv ! appsink":
             "nvarguscamerasrc sensor-id=1", "-": "stdin", "0": "camera 0",
             "rtsp://admin:secret@10.0.0.7/ch1": "rtsp://admin:***@10.0.0.7/ch1",
             # a stranger's file name: one log line still, as messages show it
             "yard\ncam\x1b[2J.mp4": "yard\\ncam\\x1b[2J.mp4"}
    assert {spec: source_label(spec) for spec in labels} == labels


def _started_run(args: list, out) -> subprocess.Popen:
    """`sharpen run ARGS` started in the background, returned once it has written frames to
    `out`'s partial file (a stop before that tests the start, not the recording)."""
    proc = subprocess.Popen([sys.executable, "-m", cli_module(), "run", *args],
                            cwd=tempfile.gettempdir(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(out.parent.glob(f".{out.stem}.*.partial{out.suffix}")):   # frames written
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    return proc


def test_a_cameras_closing_notes_in_a_shared_log_name_its_source(model, tmp_path):
    """The live lines and done: named the camera, and the notes a camera's run ends with did
    not: three cameras stopped by `systemctl stop` wrote `sharpen run: interrupted (SIGTERM),
    output closed cleanly` thrice into one log, and a `N frames were dropped` note that could
    be any camera's. A live run's closing notes name its source."""
    from runtime.cli import _note_line
    out = tmp_path / "yard.mp4"
    proc = _started_run(["--model", str(model), "--source", "synthetic:32x24@30", "--out",
                         str(out), "--quiet"], out)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert ("sharpen run: synthetic:32x24@30: interrupted (SIGTERM), output closed cleanly\n"
            in err), err
    camera = {"live": True, "source": {"spec": "rtsp://admin:pw@10.0.0.7/ch1", "kind": "stream"}}
    assert _note_line(camera, "86 frames were dropped: ...") == \
        "sharpen run: rtsp://admin:***@10.0.0.7/ch1: 86 frames were dropped: ..."
    # a file's notes name its output, as before
    clip = {"live": False, "source": {"spec": "clip.mp4", "kind": "video"}}
    assert _note_line(clip, "interrupted: o.mp4 holds ...") == \
        "sharpen run: interrupted: o.mp4 holds ..."


def test_a_terminal_still_gets_the_live_line_once_a_second(monkeypatch):
    """The interval follows what stderr is: a terminal's line is replaced in place."""
    from runtime.stats import LiveReporter, Stats

    monkeypatch.setenv("TERM", "xterm")   # TERM=dumb (some CI consoles) is a log

    main, second = os.openpty()
    with os.fdopen(second, "w") as tty, open(os.devnull, "w") as log:
        assert LiveReporter(Stats(), stream=tty).interval == 1.0
        assert LiveReporter(Stats(), stream=log).interval == 60.0
        assert LiveReporter(Stats(), 5.0, stream=tty).interval == 5.0
    os.close(main)


def test_a_log_gets_dated_live_lines_and_term_dumb_is_a_log(monkeypatch):
    """`sharpen run` over a folder from cron (`>> run.log 2>&1`) wrote a line a minute that
    no date placed; under TERM=dumb rich's in-place line showed nothing until the end."""
    import io

    from runtime.stats import LiveReporter, Stats

    log = io.StringIO()
    reporter = LiveReporter(Stats(), 60.0, stream=log).start()
    reporter.close()
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d 0 frames  ", log.getvalue()), log.getvalue()
    monkeypatch.setenv("TERM", "dumb")
    main, second = os.openpty()
    with os.fdopen(second, "w") as tty:
        assert LiveReporter(Stats(), stream=tty).interval == 60.0
    os.close(main)


def test_run_stream_refuses_a_report_interval_of_0_by_name(model):
    """0 made the live line's thread print without a pause, as fast as it could."""
    from runtime import run_stream

    for bad in (0, -1.0, float("inf")):
        with pytest.raises(ValueError, match=rf"report_interval must be a number of seconds "
                                             rf"above 0, got {bad}"):
            run_stream(model, "synthetic:8x8", None, report_interval=bad, quiet=False)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _recording(path: Path, frames: int) -> Path:
    """A video of noise (its size grows with its frames), in its container's codec."""
    rng = np.random.default_rng(frames)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc_for(path)), 10, (32, 24))
    for _ in range(frames):
        vw.write(rng.integers(0, 255, (24, 32, 3), np.uint8))
    vw.release()
    return path


def test_a_service_killed_in_a_loop_keeps_ten_cut_recordings_and_names_what_it_removes(
        model, tmp_path):
    """Each restart of a service killed in a loop (out of memory, a watchdog's SIGKILL) kept
    the video the last run was recording as day.interrupted-*.ts: one file more a restart,
    without end, until the disk was full. Ten are kept now, those holding the most video (the
    hours before a crash loop, not its seconds-long stubs), and each removed is named with its
    size; a video the user made of one (-rebuilt) or renamed is not counted."""
    rec = tmp_path / "rec"
    rec.mkdir()
    out = rec / "day.ts"
    earlier = [_recording(rec / f"day.interrupted-20261201-0000{i:02d}.ts", 20 + 10 * i)
               for i in range(10)]
    sizes = [p.stat().st_size for p in earlier]
    assert sizes == sorted(set(sizes)), sizes
    theirs = {p: _recording(p, 5).read_bytes() for p in (
        rec / "day.interrupted-20261201-000000-rebuilt.ts", rec / "day-saved.ts")}
    argv = ["--model", str(model), "--source", "synthetic:96x64", "--max-frames", "5",
            "--out", str(out), "--quiet"]

    def cut_recordings() -> set[Path]:
        return {p for p in rec.iterdir()
                if re.fullmatch(r"day\.interrupted-\d{8}-\d{6}(-\d+)?\.ts", p.name)}

    _recording(rec / f".day.{_dead_pid()}.k1ll3d.partial.ts", 60)   # more than the least
    r = _sharpen_run(*argv)
    assert r.returncode == 0, r.stderr
    (new,) = cut_recordings() - set(earlier)
    assert cut_recordings() == {new, *earlier[1:]}, sorted(p.name for p in cut_recordings())
    assert f"it is kept as {new}" in r.stderr, r.stderr
    assert (f"warning: --out {out}: {earlier[0]} ({sizes[0] / 1e6:.1f} MB, last written "
            in r.stderr and "what an earlier cut recording left, was removed: at most 10 such "
            "recordings of day.ts are kept, the ones holding the most video" in r.stderr), \
        r.stderr
    # A stub shorter than every one kept: removed itself, and said to be.
    _recording(rec / f".day.{_dead_pid()}.k1ll3d.partial.ts", 10)
    r = _sharpen_run(*argv)
    assert r.returncode == 0, r.stderr
    assert cut_recordings() == {new, *earlier[1:]}, sorted(p.name for p in cut_recordings())
    assert "; it was removed, holding no more video than each of the 10 kept from earlier " \
           "cuts: at most 10" in r.stderr, r.stderr
    assert not list(rec.glob(".*partial*")), list(rec.iterdir())
    assert all(p.read_bytes() == data for p, data in theirs.items())


def test_a_restarted_camera_run_keeps_the_recording_before_it(model, tmp_path):
    """A service restarted after its camera dropped off (exit 3, Restart=always) wrote the same
    --out again, and its first close replaced the recording of the hours before without a word:
    every restart lost what the camera gave, which no rerun can give again. That recording is
    kept now, named by its last write's time; a file's output, which a rerun makes again, is
    still replaced."""
    out = tmp_path / "rec" / "day.ts"
    argv = ["--model", str(model), "--source", "synthetic:96x64@30", "--max-frames", "5",
            "--out", str(out), "--quiet"]
    r = _sharpen_run(*argv)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    first = out.read_bytes()
    os.utime(out, (1.7e9, 1.7e9))
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(1.7e9))
    r = _sharpen_run(*argv)
    assert r.returncode == 0, r.stderr
    kept = out.with_name(f"day.{stamp}.ts")
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(["day.ts", kept.name])
    assert kept.read_bytes() == first and out.stat().st_mtime > 1.7e9
    assert r.stderr.startswith(
        f"warning: --out {out}: the recording an earlier run left there ({len(first) / 1e6:.1f} "
        f"MB, last written {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(1.7e9))}) is kept "
        f"as {kept}; this run's takes the name"), r.stderr
    # A file's sharpened copy: the rerun's replaces it, as a rerun is for.
    clip = _recording(tmp_path / "clip.ts", 20)
    again = tmp_path / "sharp.ts"
    for _ in range(2):
        r = _sharpen_run("--model", str(model), "--source", str(clip), "--out", str(again),
                         "--quiet")
        assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.glob("sharp*")) == ["sharp.ts"]


def test_a_camera_run_keeps_ten_earlier_recordings_and_names_what_it_removes(model, tmp_path):
    """Each rerun of a camera's run set the recording before it aside, without end: a
    developer's quick test rerun all day, or a service whose camera drops off every few
    seconds (Restart=always), left one file more a run. Ten are kept, as ten cut recordings
    are, those holding the most video, each removed named with its size; one renamed is not
    counted, and a name taken in the same second gets -2, never replacing it."""
    rec = tmp_path / "rec"
    rec.mkdir()
    out = rec / "day.ts"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(1.7e9))
    earlier = [_recording(rec / f"day.20261201-0000{i:02d}.ts", 20 + 10 * i) for i in range(9)]
    earlier.append(_recording(rec / f"day.{stamp}.ts", 120))   # the previous one's second
    sizes = [p.stat().st_size for p in earlier]
    assert sizes == sorted(set(sizes)), sizes
    renamed = _recording(rec / "day.monday.ts", 5).read_bytes()
    previous = _recording(out, 60).read_bytes()   # more than the least kept
    os.utime(out, (1.7e9, 1.7e9))
    argv = ["--model", str(model), "--source", "synthetic:96x64@30", "--max-frames", "5",
            "--out", str(out), "--quiet"]

    def kept_ones() -> set[Path]:
        return {p for p in rec.iterdir() if re.fullmatch(r"day\.\d{8}-\d{6}(-\d+)?\.ts", p.name)}

    r = _sharpen_run(*argv)
    assert r.returncode == 0, r.stderr
    kept = rec / f"day.{stamp}-2.ts"
    assert kept.read_bytes() == previous, sorted(p.name for p in rec.iterdir())
    assert kept_ones() == {kept, *earlier[1:]}, sorted(p.name for p in kept_ones())
    assert f"is kept as {kept}; this run's takes the name" in r.stderr, r.stderr
    assert (f"warning: --out {out}: {earlier[0]} ({sizes[0] / 1e6:.1f} MB, last written "
            in r.stderr and "an earlier run's recording, was removed: at most 10 earlier runs' "
            "recordings of day.ts are kept" in r.stderr), r.stderr
    # A stub shorter than every one kept (a camera lost a second in): replaced, and said to be.
    _recording(out, 10)
    r = _sharpen_run(*argv)
    assert r.returncode == 0, r.stderr
    assert kept_ones() == {kept, *earlier[1:]}, sorted(p.name for p in kept_ones())
    assert "is replaced, holding no more video than each of the 10 kept from earlier runs: " \
           "at most 10 earlier runs' recordings" in r.stderr, r.stderr
    assert (rec / "day.monday.ts").read_bytes() == renamed and out.stat().st_size > 0


def _readme_unit() -> configparser.ConfigParser:
    """The systemd unit file of README.md's "As a service", read as systemd reads it: a line
    ending in a backslash goes on on the next."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```ini\n(.*?)```", readme, flags=re.S)
                if "[Service]" in b]
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str   # systemd's keys are CamelCase
    unit.read_string(block.replace("\\\n", " "))
    return unit


def test_the_readmes_unit_file_restarts_a_lost_camera_and_stops_on_a_config_error(
        model, tmp_path):
    """The README's unit runs `sharpen run` with Restart=always; its RestartPreventExitStatus
    and SuccessExitStatus must be the codes the command exits with: its ExecStart, with this
    machine's model, camera stand-ins and folder, is run here as systemd would run it."""
    from runtime.cli import add_commands

    service = _readme_unit()["Service"]
    assert service["Restart"] == "always"
    # a camera away for hours is retried at most once a minute, not every RestartSec
    assert int(service["RestartMaxDelaySec"]) >= 60 and int(service["RestartSteps"]) > 0
    prevent = {int(c) for c in service["RestartPreventExitStatus"].split()}
    clean = {int(c) for c in service["SuccessExitStatus"].split()}
    exec_start = shlex.split(service["ExecStart"])
    assert Path(exec_start[0]).name == "sharpen" and exec_start[1] == "run", exec_start
    parser = argparse.ArgumentParser(prog="sharpen")
    add_commands(parser.add_subparsers())
    args = parser.parse_args(exec_start[1:])
    # A template (sharpen@.service), one instance a camera: a run per camera given one --out
    # or --stats is refused (exit 4), so each must name its own, by the instance's name.
    assert all("%i" in p for p in (args.output, *args.stats, service["EnvironmentFile"])), \
        (args.output, args.stats)
    out = tmp_path / Path(args.output).name

    def argv(**given: str) -> list[str]:
        """ExecStart's arguments, these flags' values swapped for the ones given."""
        swap = {"--model": str(model), "--out": str(out),
                "--stats": str(tmp_path / Path(args.stats[0]).name), **given}
        words = exec_start[2:]
        return [swap.get(words[i - 1], w) if i else w for i, w in enumerate(words)]

    def restarts(code: int) -> bool:   # Restart=always, but for these
        return code not in prevent and code not in clean and code != 0

    # The camera not there at boot: exit 3, restarted (each start a few seconds later).
    for _ in range(2):
        r = _sharpen_run(*argv(**{"--source": f"rtsp://127.0.0.1:{_closed_port()}/stream"}))
        assert r.returncode == 3 and restarts(r.returncode), (r.returncode, r.stderr)
    # Back: recording until `systemctl stop` (SIGTERM), a clean stop.
    proc = _started_run(argv(**{"--source": "synthetic:96x64@30"}), out)
    # The same command run by hand (or a second unit) while the service records: refused, exit
    # 4, told from a configuration error (2): restarted, it takes over once the other run
    # ends. The service's --stats file is left to the run that holds the output.
    r = _sharpen_run(*argv(**{"--source": "synthetic:96x64@30"}))
    assert r.returncode == 4 and restarts(r.returncode), (r.returncode, r.stderr)
    assert f"process {proc.pid}" in r.stderr, r.stderr
    stats = json.loads((tmp_path / Path(args.stats[0]).name).read_text())
    assert stats["pid"] == proc.pid and stats["state"] == "running", stats
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in clean and not restarts(proc.returncode), (proc.returncode, err)
    assert "interrupted (SIGTERM), output closed cleanly" in err and out.exists(), err
    assert (tmp_path / Path(args.stats[0]).name).exists()
    # A model misnamed after an upgrade: exit 2, not restarted in a loop.
    r = _sharpen_run(*argv(**{"--model": str(tmp_path / "student-fast.onnx"),
                              "--source": "synthetic:96x64@30"}))
    assert r.returncode == 2 and r.returncode in prevent, (r.returncode, r.stderr)
    assert "model not found" in r.stderr, r.stderr


def test_a_restarted_camera_run_into_an_image_folder_numbers_its_frames_on(model, tmp_path):
    """A camera's frames are named frame_000000 on at every start: a restarted run into the
    same image folder wrote its frames over the last run's, without a word. They are
    numbered on from the last one there now; images' outputs keep their inputs' names."""
    out = tmp_path / "frames"
    argv = ["--model", str(model), "--source", "synthetic:96x64@30", "--max-frames", "3",
            "--out", str(out), "--quiet"]
    r = _sharpen_run(*argv)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(first) == [f"frame_{i:06d}.png" for i in range(3)], sorted(first)
    r = _sharpen_run(*argv)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"frame_{i:06d}.png" for i in range(6)]
    assert all((out / name).read_bytes() == data for name, data in first.items())
    assert r.stderr.startswith(
        f"warning: --out {out} holds an earlier run's frames, up to frame_000002: this run's "
        "are numbered on from frame_000003, not written over them"), r.stderr
    # Images sharpened again: written over, under their own names, as a rerun is for.
    for _ in range(2):
        r = _sharpen_run("--model", str(model), "--source", str(out), "--out",
                         str(tmp_path / "again"), "--quiet")
        assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == sorted(
        p.name for p in out.iterdir())


def test_numbering_on_counts_the_frames_there_not_other_files_named_frame_n(model, tmp_path):
    """The last frame_N there is an image's: a stats file, a note or a folder named frame_N
    moved the numbers on past it (to frame_500001), leaving a gap the folder's order then
    showed; images of another extension (a run written as .jpg) count as frames."""
    out = tmp_path / "frames"
    out.mkdir()
    cv2.imwrite(str(out / "frame_000000.png"), textured_frame(0))
    cv2.imwrite(str(out / "frame_000007.jpg"), textured_frame(1))
    (out / "frame_500000.json").write_text("{}")
    (out / "frame_900000.d").mkdir()
    (out / "frame_800000.png.txt").write_text("")
    r = _sharpen_run("--model", str(model), "--source", "synthetic:96x64@30", "--max-frames",
                     "2", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    assert {"frame_000008.png", "frame_000009.png"} <= {p.name for p in out.iterdir()}, \
        sorted(p.name for p in out.iterdir())
    assert "up to frame_000007: this run's are numbered on from frame_000008" in r.stderr, \
        r.stderr


def test_a_killed_joins_listing_is_removed_by_the_next_run_into_the_output(tmp_path):
    """A resumed run killed while ffmpeg joined the videos left its hidden list of the two
    (.day.PID.XXXXXXXX.txt) beside the output, which no cleanup knew: one more file each
    time. The next run into the output removes it once its process is gone; a live run's
    list, and a user's hidden .txt of another content, stay."""
    from runtime.video_sink import VideoFileSink

    rec = tmp_path / "rec"
    rec.mkdir()
    listing = "file '/x/day.ts'\nduration 1.500000\nfile '/x/.day.1.abcdefgh.partial.ts'\n"
    killed = rec / f".day.{_dead_pid()}.k1ll3d_x.txt"
    live = rec / f".day.{os.getppid()}.l1ve0000.txt"
    theirs = rec / f".day.{_dead_pid()}.holidays.txt"
    for p, text in ((killed, listing), (live, listing), (theirs, "packing list\n")):
        p.write_text(text)
    sink = VideoFileSink(rec / "day.ts", 10)
    sink.write(textured_frame(0), textured_frame(0), "frame_000000")
    sink.close()
    assert not killed.exists(), sorted(p.name for p in rec.iterdir())
    assert live.read_text() == listing and theirs.read_text() == "packing list\n"


def test_a_recording_neither_kept_aside_nor_replaced_is_not_said_to_be_replaced(model, tmp_path):
    """A camera run whose earlier recording could not be moved aside said "it is replaced",
    then could not replace it either (the same cause: Windows' player holding it open, an
    immutable file here) and kept its own as day.new.ts: the earlier one is there still."""
    out = tmp_path / "day.ts"
    argv = ["--model", str(model), "--source", "synthetic:96x64@30", "--max-frames", "5",
            "--out", str(out), "--quiet"]
    assert _sharpen_run(*argv).returncode == 0
    before = out.read_bytes()
    if subprocess.run(["chattr", "+i", str(out)], capture_output=True).returncode:
        pytest.skip("chattr +i is refused here (not root, or a file system without it)")
    try:
        r = _sharpen_run(*argv)
    finally:
        subprocess.run(["chattr", "-i", str(out)], check=True)
    assert r.returncode == 2, r.stderr
    assert out.read_bytes() == before
    assert "it is replaced" not in r.stderr, r.stderr
    assert f"the new video is kept as {tmp_path / 'day.new.ts'}" in r.stderr, r.stderr
    # Nor that day.ts holds this run's frames.
    assert f"{out} is as it was before this run, which wrote no video there" in r.stderr, \
        r.stderr


def test_an_image_folder_run_removes_what_a_killed_runs_writes_left_in_it(tmp_path):
    """A run into an image folder killed mid-write (SIGKILL, a power cut) left the image it was
    writing under a hidden temp name, which no later run removed: one more file, up to a
    frame's size, each kill of a service that writes frames. The next run into the folder
    removes those of a process that is gone; a live run's stay."""
    from runtime.image_sink import ImageSink

    out = tmp_path / "frames"
    out.mkdir()
    killed = out / f".frame_000003.png.{_dead_pid()}.abcdefgh.tmp"
    live = out / f".frame_000007.png.{os.getppid()}.ijklmnop.tmp"
    for p in (killed, live):
        p.write_bytes(b"\x89PNG half")
    sink = ImageSink(out)
    sink.write(textured_frame(0), textured_frame(0), "frame_000000")
    sink.close()
    assert sorted(p.name for p in out.iterdir()) == sorted([live.name, "frame_000000.png"])


def _y4m_frame(w: int, h: int, value: int) -> bytes:
    return b"FRAME\n" + bytes([value]) * (w * h * 3 // 2)


def test_under_type_notify_the_run_says_ready_and_pings_the_watchdog_only_while_frames_flow(
        model, tmp_path):
    """A `Type=notify` unit with `WatchdogSec=` heard nothing from the run: systemd timed its
    start out, or with `Type=simple` a camera read that hung (a stuck ffmpeg on stdin) left the
    service `active` for days with no frame. The run now says READY=1 once frames come,
    STATUS= lines, WATCHDOG=1 while frames are written and none once they stop, STOPPING=1 while
    the output closes, over a NOTIFY_SOCKET bound here as systemd binds it."""
    w, h = 32, 24
    addr = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(addr))
        sock.settimeout(60)
        env = {**os.environ, "NOTIFY_SOCKET": str(addr), "WATCHDOG_USEC": "1000000"}
        proc = subprocess.Popen([sys.executable, "-m", cli_module(), "run", "--model",
                                 str(model), "--source", "-", "--out", str(tmp_path / "o.ts"),
                                 "--quiet"], stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=tempfile.gettempdir(), env=env)
        assert proc.stdin is not None
        proc.stdin.write(f"YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n".encode())
        got: list[list[str]] = []

        def receive() -> list[str]:
            got.append(sock.recv(4096).decode().split("\n"))
            return got[-1]

        try:
            pings = 0
            for _ in range(600):   # frames flow: READY=1 first, then the watchdog's pings
                if pings >= 3:
                    break
                proc.stdin.write(_y4m_frame(w, h, 100))
                proc.stdin.flush()
                sock.settimeout(0.1)
                try:
                    pings += "WATCHDOG=1" in receive()
                except socket.timeout:
                    pass
            assert pings >= 3, got
            sock.settimeout(60)
            ready = [i for i, m in enumerate(got) if "READY=1" in m]
            first_ping = next(i for i, m in enumerate(got) if "WATCHDOG=1" in m)
            assert ready and ready[0] < first_ping, got
            assert got[0][0].startswith("STATUS=starting"), got
            # The source hangs (its writer alive, writing nothing): the pings stop within the
            # watchdog's second, the STATUS= lines go on.
            quiet = after = 0
            while quiet < 5:
                msg = receive()
                after += 1
                quiet = 0 if "WATCHDOG=1" in msg else quiet + 1
                assert after < 12, got[-12:]
            assert msg[0].startswith("STATUS=running: ") and " frames, " in msg[0], msg
        finally:
            proc.stdin.close()
        assert proc.wait(60) == 0, proc.stderr.read().decode()
        rest = []
        sock.settimeout(1)
        with contextlib.suppress(socket.timeout):
            while True:
                rest.append(sock.recv(4096).decode().split("\n"))
        proc.stderr.close()
    flat = [line for m in rest for line in m]
    assert "STOPPING=1" in flat and "WATCHDOG=1" not in flat, rest
    assert flat[-1].startswith("STATUS=done: "), rest


def test_a_notify_socket_nobody_reads_neither_hangs_nor_fails_the_run(model, tmp_path):
    """NOTIFY_SOCKET bound by a manager that reads nothing (PID 1 busy, a wrapper that took the
    socket over): its queue full, each blocking send waited for room, and the run hung at its
    start before its first frame. A datagram the manager has no room for is lost instead."""
    addr = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, \
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as filler:
        sock.bind(str(addr))
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            for _ in range(10_000):   # the receiver's queue (max_dgram_qlen) filled
                filler.sendto(b"STATUS=filler", str(addr))
        env = {**os.environ, "NOTIFY_SOCKET": str(addr), "WATCHDOG_USEC": "1000000"}
        done = subprocess.run([sys.executable, "-m", cli_module(), "run", "--model", str(model),
                               "--source", "synthetic:32x24", "--max-frames", "5",
                               "--out", str(tmp_path / "o.mkv"), "--quiet"],
                              cwd=tempfile.gettempdir(), capture_output=True, text=True,
                              env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "o.mkv").stat().st_size > 0


def _ready_with_a_30s_watchdog(stats, tmp_path: Path, work=None):
    """A notifier that has said READY=1 under `WatchdogSec=30`, its socket bound by nobody."""
    from runtime.service_notify import ServiceNotifier

    notifier = ServiceNotifier(stats, lambda: "running",
                               env={"NOTIFY_SOCKET": str(tmp_path / "none"),
                                    "WATCHDOG_USEC": "30000000"}, work=work)
    notifier.ready()
    return notifier


def test_the_watchdog_stops_being_pinged_when_frames_stop_though_the_clock_was_set_back(
        tmp_path):
    """A camera box without a clock (a Raspberry Pi) has its time set by NTP after the run
    started: a frame written before the clock was set back an hour looked written "in the
    future", and the watchdog went on being pinged for that hour while the camera read hung.
    Whether frames still come is told by the monotonic clock."""
    from runtime.stats import Stats

    stats = Stats()
    notifier = _ready_with_a_30s_watchdog(stats, tmp_path)
    t0 = time.monotonic()
    stats.count("frames_processed")
    assert notifier._alive(t0 + 10)
    stats.last_frame_at = time.time() + 3600   # the last frame's wall time, then the clock set back
    assert notifier._alive(t0 + 20)            # within 30 s of a frame seen
    assert not notifier._alive(t0 + 60)        # no frame since: the watchdog is left to fire
    stats.count("frames_processed")
    assert notifier._alive(t0 + 70)


def test_a_photo_many_times_a_video_frames_size_keeps_the_watchdog_pinged_while_sharpened(
        tmp_path):
    """A library of 24 MP photos took 5 to 10 s a photo here with the `fast` model (a small
    CPU, a minute): with `WatchdogSec=` above a 1080p frame's time, as the README says, the
    pings stopped inside each photo and systemd killed the healthy run, and again after each
    restart, at the same photo. A frame in the engine counts as progress for as long as its
    pixels, at the slowest rate a frame went, take four times over; a hung engine does not."""
    from runtime.service_notify import EngineWork
    from runtime.stats import Stats

    stats, work = Stats(), EngineWork()
    notifier = _ready_with_a_30s_watchdog(stats, tmp_path, work)
    t0 = time.monotonic()
    stats.count("frames_processed")
    assert notifier._alive(t0 + 1)
    work.begin(2_000_000, t0)        # a 1080p frame, 1 s: the rate
    work.end(t0 + 1)
    work.begin(24_000_000, t0 + 1)   # then a 24 MP photo: 12 s expected, 48 allowed
    assert notifier._alive(t0 + 40)
    assert not notifier._alive(t0 + 60)   # past four times its time: a hung engine
    work.end(t0 + 50)
    # Out of the engine is progress: the last photo's encoding (seconds for a 24 MP PNG) gets
    # a watchdog period of its own, where the last frame written was a photo's time ago.
    assert notifier._alive(t0 + 70)
    assert not notifier._alive(t0 + 90)   # not written since: a hung write
    stats.count("frames_processed")
    assert notifier._alive(t0 + 91)
    assert not notifier._alive(t0 + 130)   # no frame, none in the engine: the source hangs


def test_a_reconnect_whose_open_never_returns_stops_the_watchdogs_pings(model, tmp_path):
    """While the source reconnected, WATCHDOG=1 went out whatever the reconnect did: an open
    that never returned (a GStreamer or RTSP open that hangs, here FFmpeg opening a FIFO nobody
    writes to again) kept systemd's watchdog fed forever and the camera box recorded nothing.
    Pings go on for as long as an attempt may take (its delay, its open's and first read's
    --timeout), then stop."""
    w, h = 32, 24
    fifo = tmp_path / "cam.fifo"
    os.mkfifo(fifo)
    addr = tmp_path / "notify"

    def write() -> None:   # one connection's frames, then the camera is gone for good
        with open(fifo, "wb") as f:
            f.write(f"YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n".encode())
            for i in range(40):
                f.write(_y4m_frame(w, h, 40 + i * 4))
                f.flush()
                time.sleep(0.05)

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(addr))
        sock.settimeout(30)
        env = {**os.environ, "NOTIFY_SOCKET": str(addr), "WATCHDOG_USEC": "1000000"}
        proc = subprocess.Popen([sys.executable, "-m", cli_module(), "run", "--model",
                                 str(model), "--source", f"file://{fifo}", "--live",
                                 "--timeout", "1", "--reconnect", "3",
                                 "--out", str(tmp_path / "o.ts"), "--quiet"],
                                stderr=subprocess.PIPE, cwd=tempfile.gettempdir(), env=env)
        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        try:
            got: list[list[str]] = []
            while not any(m[0].startswith("STATUS=reconnecting") for m in got):
                got.append(sock.recv(4096).decode().split("\n"))
                assert len(got) < 200, got
            # The reopen hangs: a ping or so within the attempt's bound, then none.
            reconnecting = len(got)
            quiet = 0
            while quiet < 8:
                got.append(sock.recv(4096).decode().split("\n"))
                quiet = 0 if "WATCHDOG=1" in got[-1] else quiet + 1
                assert len(got) - reconnecting < 40, got[reconnecting:]
            assert got[-1][0].startswith("STATUS=reconnecting"), got[-1]
            # within its bound (0.5 s delay, 1 s open, 1 s read and slack) a slow reopen is fed
            assert sum("WATCHDOG=1" in m for m in got[reconnecting:]) >= 3, got[reconnecting:]
        finally:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()


def _notices(sock: socket.socket, seconds: float) -> list[str]:
    """The lines the run sent over `seconds`."""
    lines, end = [], time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        sock.settimeout(left)
        with contextlib.suppress(socket.timeout):
            lines += sock.recv(4096).decode().split("\n")
    return lines


def test_a_slow_start_extends_systemds_start_timeout_while_it_works_and_not_once_it_hangs(
        tmp_path):
    """A model that loads for minutes (the TensorRT provider building its engine on a Jetson)
    or a --resume reading a long clip up to where the stopped run got counted against
    `TimeoutStartSec=` (90 s): systemd killed the start and restarted it, which built or read
    it all again, forever. While the start works (the process uses CPU, or the resume reads
    frames) EXTEND_TIMEOUT_USEC asks for more time; a start that hangs asks for none."""
    from runtime.service_notify import ServiceNotifier
    from runtime.stats import Stats

    addr = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(addr))
        notifier = ServiceNotifier(Stats(), lambda: "starting",
                                   env={"NOTIFY_SOCKET": str(addr), "WATCHDOG_USEC": "400000"})
        notifier.start()
        try:
            assert _notices(sock, 0.1)[0].startswith("STATUS=starting")
            end = time.monotonic() + 1.5
            while time.monotonic() < end:   # an engine being built: CPU, no frames
                sum(i * i for i in range(10_000))
            busy = _notices(sock, 0.3)
            extends = [ln for ln in busy if ln.startswith("EXTEND_TIMEOUT_USEC=")]
            assert extends, busy
            assert all(int(ln.split("=")[1]) >= 3 * 200_000 for ln in extends), extends
            # A hung open (no CPU) asks for no more time: TimeoutStartSec= is left to act
            _notices(sock, 0.4)
            hung = _notices(sock, 1.5)
            assert hung and not any(ln.startswith("EXTEND_TIMEOUT_USEC=") for ln in hung), hung
            # A resume reading a network share's clip (little CPU) counts each frame read
            for _ in range(8):
                notifier.progress()
                time.sleep(0.1)
            assert any(ln.startswith("EXTEND_TIMEOUT_USEC=") for ln in _notices(sock, 0.3))
            notifier.ready()   # the run's own watchdog from here: no more extensions
            for _ in range(5):
                notifier.progress()
                time.sleep(0.1)
            after = _notices(sock, 0.5)
            assert not any(ln.startswith("EXTEND_TIMEOUT_USEC=") for ln in after), after
        finally:
            notifier.close()


# A start that works, starved: pinned to one core at nice 19 beside a busy process at nice 0,
# it gets under 2% of that core; `start` on stdout once its notifier runs, `done` after.
STARVED_START = """
import os, sys, time
from runtime.service_notify import ServiceNotifier
from runtime.stats import Stats

os.sched_setaffinity(0, {int(sys.argv[3])})
os.nice(19)
notifier = ServiceNotifier(Stats(), lambda: "starting", env={
    "NOTIFY_SOCKET": sys.argv[1], "WATCHDOG_USEC": sys.argv[2]}).start()
print("start", flush=True)
end = time.monotonic() + 3.0
while time.monotonic() < end:   # an engine being built, on what the host leaves it
    sum(i * i for i in range(1000))
print("done", flush=True)
notifier.close()
"""


@contextlib.contextmanager
def _busy_core(cpu: int):
    """A process at nice 0 busy on core `cpu` while it runs: one at nice 19 pinned there gets
    under 2% of it."""
    hog = subprocess.Popen([sys.executable, "-c", "import os\n"
                            f"os.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"])
    try:
        yield
    finally:
        hog.kill()
        hog.wait()


STARVED = pytest.mark.skipif(not hasattr(os, "sched_setaffinity")
                             or not Path("/proc/self/task").is_dir(), reason="Linux's scheduler")


@STARVED
def test_a_start_that_works_on_a_starved_core_still_extends_systemds_start_timeout(tmp_path):
    """On an overloaded host a start that works got under START_CPU_SHARE of a core: judged
    hung, it asked for no more time and systemd killed it at TimeoutStartSec=, then restarted
    it into the same load, forever. Time spent ready to run, waiting for a core, counts."""
    cpu = min(os.sched_getaffinity(0))
    addr = tmp_path / "notify"
    with _busy_core(cpu):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(str(addr))
            proc = subprocess.Popen([sys.executable, "-c", STARVED_START, str(addr), "400000",
                                     str(cpu)], stdout=subprocess.PIPE, text=True,
                                    env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
            try:
                assert proc.stdout.readline() == "start\n"
                busy = []
                while not select.select([proc.stdout], [], [], 0)[0]:
                    busy += _notices(sock, 0.1)
                assert proc.stdout.readline() == "done\n"
                assert proc.wait(timeout=60) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    assert any(ln.startswith("STATUS=") for ln in busy), busy   # the notifier ticked
    assert any(ln.startswith("EXTEND_TIMEOUT_USEC=") for ln in busy), busy


def test_a_resume_re_encoding_the_stopped_runs_frames_keeps_the_watchdog_pinged(tmp_path,
                                                                                monkeypatch):
    """A --resume without ffmpeg encodes the stopped run's frames again ahead of its own, after
    READY=1 and before its first frame is written: minutes for an hour of 1080p, which no
    `WatchdogSec=` set for a frame covered, so systemd killed the resumed run and the next
    restart did the same, forever. Each frame encoded again counts as progress."""
    from runtime.stats import Stats
    from runtime.video_sink import VideoFileSink

    earlier = tmp_path / "earlier.avi"
    vw = cv2.VideoWriter(str(earlier), cv2.VideoWriter.fourcc(*fourcc_for(earlier)), 10, (64, 48))
    for i in range(6):
        vw.write(textured_frame(i, 48, 64))
    vw.release()
    stats = Stats()
    notifier = _ready_with_a_30s_watchdog(stats, tmp_path)
    t0 = time.monotonic()
    assert notifier._alive(t0 + 1)
    assert not notifier._alive(t0 + 40)   # nothing written for longer than WatchdogSec=
    monkeypatch.setenv("SHARPEN_FFMPEG", str(tmp_path / "no-ffmpeg"))   # as on a bare box
    sink = VideoFileSink(tmp_path / "out.avi", 10)
    with pytest.warns(UserWarning, match="encoded a second time"):
        sink.join(earlier, 6, progress=notifier.progress)
    frame = textured_frame(9, 48, 64)
    sink.write(frame, frame, "9")   # opens the writer: the 6 are encoded first
    sink.close()
    assert notifier._alive(t0 + 45)
    assert not notifier._alive(t0 + 50)   # none since


def test_a_library_run_with_photos_it_could_not_read_says_so_in_its_last_status(model,
                                                                               tmp_path):
    """A `Type=notify` library run that exited 1 because a photo could not be read ended
    with `Status: done: 2 frames` in `systemctl status`, which read as a clean run: the
    failed unit's status did not say what failed."""
    lib = tmp_path / "lib"
    for name in ("2024/a.jpg", "2024/b.png"):
        (lib / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(lib / name), np.full((24, 32, 3), 90, np.uint8))
    (lib / "2024" / "broken.jpg").write_bytes(b"not a jpeg")
    addr = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(addr))
        env = {**os.environ, "NOTIFY_SOCKET": str(addr)}
        done = subprocess.run([sys.executable, "-m", cli_module(), "run", "--model", str(model),
                               "--source", str(lib / "**" / "*"), "--out", str(tmp_path / "o"),
                               "--quiet"], cwd=tempfile.gettempdir(), capture_output=True,
                              text=True, env=env, timeout=120)
        sock.settimeout(1)
        said = []
        with contextlib.suppress(socket.timeout):
            while True:
                said += sock.recv(4096).decode().split("\n")
    assert done.returncode == 1, done.stderr
    last = [m for m in said if m.startswith("STATUS=")][-1]
    assert last.startswith("STATUS=done: 2 frames, 1 image could not be read ("), said
    assert "broken.jpg" in last, last


def test_sigterm_while_a_reconnects_open_hangs_stops_at_once_with_the_recording_playable(
        model, tmp_path):
    """SIGTERM while the camera's reopen hung (FFmpeg opening a FIFO nobody writes to, as an
    RTSP open that never answers) waited for that open: forever here, and under systemd until
    TimeoutStopSec's SIGKILL cut the recording. The reopen is given up, and the recording,
    whose check would wait on OpenCV's FFmpeg lock that the open holds, closed at once."""
    w, h = 32, 24
    fifo = tmp_path / "cam.fifo"
    os.mkfifo(fifo)
    out, stats = tmp_path / "o.ts", tmp_path / "o.json"

    def write() -> None:   # one connection's frames, then the camera is gone for good
        with open(fifo, "wb") as f:
            f.write(f"YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n".encode())
            for i in range(20):
                f.write(_y4m_frame(w, h, 40 + i * 8))
                f.flush()
                time.sleep(0.05)

    proc = subprocess.Popen([sys.executable, "-m", cli_module(), "run", "--model", str(model),
                             "--source", f"file://{fifo}", "--live", "--timeout", "1",
                             "--reconnect", "3", "--out", str(out), "--stats", str(stats),
                             "--quiet", "--report-interval", "1"], stderr=subprocess.PIPE,
                            text=True, cwd=tempfile.gettempdir())
    threading.Thread(target=write, daemon=True).start()
    try:
        for _ in range(600):   # the second attempt's open is the one that hangs
            if stats.exists() and '"state": "reconnecting"' in stats.read_text():
                time.sleep(3)
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read()
    proc.stderr.close()
    assert rc == 143, err
    assert json.loads(stats.read_text())["state"] == "stopped", err
    cap = cv2.VideoCapture(str(out))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames >= 10, (frames, err)


def test_sigterm_while_a_fifos_writer_hangs_stops_within_seconds(model, tmp_path):
    """A FIFO source whose writer hangs (`--source feed.y4m`, an ffmpeg stuck) holds the
    capture thread in a read that nothing ends: SIGTERM waited 10 s for it before closing the
    recording, a third of the README unit's TimeoutStopSec. The read is left behind sooner."""
    w, h = 32, 24
    fifo = tmp_path / "feed.y4m"
    os.mkfifo(fifo)
    out, stats = tmp_path / "o.ts", tmp_path / "o.json"
    hold = threading.Event()

    def write() -> None:
        with open(fifo, "wb") as f:
            f.write(f"YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n".encode())
            for i in range(12):
                f.write(_y4m_frame(w, h, 40 + i * 8))
                f.flush()
            hold.wait(120)   # alive, writing nothing

    threading.Thread(target=write, daemon=True).start()
    proc = subprocess.Popen([sys.executable, "-m", cli_module(), "run", "--model", str(model),
                             "--source", str(fifo), "--out", str(out), "--stats", str(stats),
                             "--quiet", "--report-interval", "1"], stderr=subprocess.PIPE,
                            text=True, cwd=tempfile.gettempdir())
    try:
        for _ in range(600):
            if stats.exists() and json.loads(stats.read_text())["frames_processed"] >= 12:
                break
            time.sleep(0.1)
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        rc = proc.wait(30)
        took = time.monotonic() - sent
    finally:
        hold.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read()
    proc.stderr.close()
    assert rc == 143, err
    assert took < 8, (took, err)
    assert json.loads(stats.read_text())["state"] == "stopped", err
    cap = cv2.VideoCapture(str(out))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames == 12, (frames, err)


def test_a_fifo_sources_run_closes_without_ffmpeg_waiting_on_the_fifo_for_its_sound(
        model, tmp_path):
    """A FIFO source (`--source feed.y4m`) was given to ffmpeg again at the close, to probe
    and copy its sound: ffmpeg's open of the FIFO waited for a writer that had gone (or hung),
    30 s of probe and up to 10 minutes of copy, where an ffmpeg is installed. The frames the
    run read are all there is: its output closes at once."""
    from tests.runtime_fixtures import ffmpeg_or_skip
    ffmpeg = ffmpeg_or_skip("copy a sound")
    w, h = 32, 24
    fifo = tmp_path / "feed.y4m"
    os.mkfifo(fifo)
    out = tmp_path / "o.mp4"

    def write() -> None:
        with open(fifo, "wb") as f:
            f.write(f"YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n".encode())
            for i in range(6):
                f.write(_y4m_frame(w, h, 40 + i * 8))

    threading.Thread(target=write, daemon=True).start()
    r = subprocess.run([sys.executable, "-m", cli_module(), "run", "--model", str(model),
                        "--source", str(fifo), "--out", str(out), "--quiet"],
                       capture_output=True, text=True, timeout=60, cwd=tempfile.gettempdir(),
                       env=dict(os.environ, SHARPEN_FFMPEG=ffmpeg))
    assert r.returncode == 0, r.stderr
    assert "done: 6 frames" in r.stderr, r.stderr
    assert "has no sound" not in r.stderr, r.stderr
    cap = cv2.VideoCapture(str(out))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 6


# ["run"]: its pointer's example, runtime.cli's own copy of sharpen/help_text's (a layer above)
@pytest.mark.parametrize("argv", [["run"], ["run", "--model"], ["run", "--modle", "m.onnx"],
                                  ["run", "--model", "m.onnx", "--source", "a", "-o", "b"],
                                  ["run", "--model", "m.onnx", "--source", "a", "--view", "sid"]])
def test_the_module_form_of_sharpen_run_says_its_usage_errors_as_sharpen_run_does(argv):
    """A unit's ExecStart may run `python -m runtime.cli run ...` (a device without the
    console script on PATH): its usage errors were argparse's, the whole usage and no "did you
    mean", where `sharpen run` says one line and a pointer to its --help."""
    def said(module: str) -> tuple[int, str]:
        r = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True,
                           text=True, timeout=60, cwd=tempfile.gettempdir())
        return r.returncode, r.stderr

    assert said("runtime.cli") == said("sharpen.cli")


def test_the_module_form_of_sharpen_run_refuses_a_bad_pixel_budget_as_sharpen_run_does(
        model, tmp_path):
    """SHARPEN_MAX_PIXELS=lots: `sharpen run` says so and exits 2 (a unit's
    RestartPreventExitStatus=2 stops there); `python -m runtime.cli run` exited 1, which
    Restart= retries for good, or skipped every photo of a folder with it, one by one."""
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.png"), np.full((24, 32, 3), 90, np.uint8))
    clip = tmp_path / "a.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"mp4v"), 10, (32, 24))
    writer.write(np.full((24, 32, 3), 90, np.uint8))
    writer.release()
    env = dict(os.environ, SHARPEN_MAX_PIXELS="lots")

    def said(module: str, source: Path) -> tuple[int, str]:
        r = subprocess.run([sys.executable, "-m", module, "run", "--model", str(model),
                            "--source", str(source), "--out", str(tmp_path / module / "o")],
                           capture_output=True, text=True, timeout=60,
                           cwd=tempfile.gettempdir(), env=env)
        return r.returncode, r.stderr

    for source in (photos, clip):
        assert said("runtime.cli", source) == said("sharpen.cli", source) == (
            2, "sharpen run: error: SHARPEN_MAX_PIXELS='lots' is not a number\n")


# A ServiceNotifier past READY=1 and STOPPING=1 (a run closing its output), in a process that
# runs nothing else: `busy SECONDS` on its stdin starts a child as busy (ffmpeg copying the
# sound in) and answers `done` once it ended; `progress` is a closer's own step.
NOTIFIER_STOPPING = """
import os, subprocess, sys
from runtime.service_notify import ServiceNotifier
from runtime.stats import Stats

if len(sys.argv) > 3:   # starved: pinned to that core at nice 19, its children too
    os.sched_setaffinity(0, {int(sys.argv[3])})
    os.nice(19)
notifier = ServiceNotifier(Stats(), lambda: "finishing", env={
    "NOTIFY_SOCKET": sys.argv[1], "WATCHDOG_USEC": sys.argv[2]})
notifier.start()
notifier.ready()
notifier.stopping()
print("stopping", flush=True)
for line in sys.stdin:
    if line.startswith("busy "):
        subprocess.run([sys.executable, "-c", "import time\\nend = time.time() + "
                        + line.split()[1] + "\\nwhile time.time() < end: sum(range(10000))"])
        print("done", flush=True)
    elif line.strip() == "progress":
        notifier.progress()
notifier.close()
"""


@contextlib.contextmanager
def _notifier_stopping(tmp_path, watchdog_usec: int, starved_on: Optional[int] = None):
    """NOTIFIER_STOPPING on a socket this test reads: (socket, its process). Not in the test's
    own process: the notifier counts every thread's CPU there but its own as the close
    working, and a thread another test left running there made a hung close look busy.
    `starved_on`: a core it and its children are pinned to, at nice 19."""
    addr = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(addr))
        starved = [] if starved_on is None else [str(starved_on)]
        proc = subprocess.Popen([sys.executable, "-c", NOTIFIER_STOPPING, str(addr),
                                 str(watchdog_usec), *starved], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True,
                                env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
        try:
            assert proc.stdout.readline() == "stopping\n"
            yield sock, proc
            proc.stdin.close()
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _tell(proc: subprocess.Popen, line: str) -> None:
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def test_closing_after_stopping_extends_the_stop_timeout_while_the_close_works(tmp_path):
    """After STOPPING=1 the run sent nothing: a long close (ffmpeg copying an hour's sound in,
    a segment's colour-tagging copy) ran into TimeoutStopSec=, whose SIGKILL cut the
    recording. The close asks for more time while it or its ffmpeg child works, and for none
    once nothing moves (a write that hangs), which the stop timeout is then left to end."""
    with _notifier_stopping(tmp_path, watchdog_usec=400_000) as (sock, proc):
        _notices(sock, 0.5)
        _tell(proc, "busy 1.5")   # ffmpeg copying, as a child process busy for 1.5 s
        busy = []   # over the child's whole run, however late a loaded host starts it
        while not select.select([proc.stdout], [], [], 0)[0]:
            busy += _notices(sock, 0.1)
        assert proc.stdout.readline() == "done\n"
        extends = [ln for ln in busy if ln.startswith("EXTEND_TIMEOUT_USEC=")]
        assert extends, busy
        assert all(int(ln.split("=")[1]) >= 3 * 200_000 for ln in extends), extends
        _notices(sock, 0.5)
        hung = _notices(sock, 1.5)   # nothing moves: no more time asked
        assert not any(ln.startswith("EXTEND_TIMEOUT_USEC=") for ln in hung), hung
        for _ in range(8):   # a closer's own steps (a resume's join) count too
            _tell(proc, "progress")
            time.sleep(0.1)
        assert any(ln.startswith("EXTEND_TIMEOUT_USEC=") for ln in _notices(sock, 0.3))


@STARVED
def test_a_close_that_works_on_a_starved_core_still_extends_the_stop_timeout(tmp_path):
    """An ffmpeg copying the sound in, on an overloaded host, got under START_CPU_SHARE of a
    core: the close was judged hung and asked for no more time, and TimeoutStopSec='s SIGKILL
    cut the recording. Its (and the run's) time waiting for a core counts as its CPU does."""
    cpu = min(os.sched_getaffinity(0))
    with _busy_core(cpu), \
            _notifier_stopping(tmp_path, watchdog_usec=400_000, starved_on=cpu) as (sock, proc):
        _notices(sock, 0.5)
        _tell(proc, "busy 3")
        busy = []
        while not select.select([proc.stdout], [], [], 0)[0]:
            busy += _notices(sock, 0.1)
        assert proc.stdout.readline() == "done\n"
    extends = [ln for ln in busy if ln.startswith("EXTEND_TIMEOUT_USEC=")]
    assert extends, busy


def test_a_hung_close_asks_for_no_more_time_however_busy_the_notifiers_own_look_is(tmp_path):
    """After STOPPING=1 each tick reads every process's /proc files to find the ffmpeg child:
    on a host of thousands of processes that look costs tens of ms of the notifier's own CPU,
    which counted as the close working, so a write that hung was given more time each tick,
    never reaching TimeoutStopSec=. A 2 ms tick makes the look's share of it as large here."""
    with _notifier_stopping(tmp_path, watchdog_usec=4000) as (sock, _):
        _notices(sock, 0.2)
        hung = _notices(sock, 1.0)   # the close waits on a write: nothing moves
        extends = [ln for ln in hung if ln.startswith("EXTEND_TIMEOUT_USEC=")]
        assert not extends, f"{len(extends)} extensions while nothing but the look ran"


def test_an_open_given_up_still_calling_opencv_does_not_abort_the_exit(tmp_path):
    """A stop during a camera's reopen leaves that open running in its helper thread (it may
    never return). One that returns while the interpreter shuts down, in OpenCV's wrapper,
    aborts the process ("terminate called without an active exception", exit 134 and a core
    dump for systemd, not 143). Here the open goes on calling OpenCV, so it always does."""
    script = tmp_path / "left_open.py"
    script.write_text(
        "import sys, threading\n"
        "import cv2, numpy as np\n"
        "from runtime.cli import _exit_now_if_workers_run\n"
        "from runtime.source_base import OpenStopped, _interruptible\n"
        "img = np.zeros((240, 320, 3), np.uint8)\n"
        "def opening():   # native, returning to Python every few ms\n"
        "    while True:\n"
        "        cv2.GaussianBlur(img, (31, 31), 5)\n"
        "stop = threading.Event()\n"
        "stop.set()\n"
        "try:\n"
        "    _interruptible(opening, stop)\n"
        "except OpenStopped:\n"
        "    pass\n"
        "_exit_now_if_workers_run(143)\n"
        "sys.exit(143)\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, OMP_NUM_THREADS="1",
                                            PYTHONPATH=os.pathsep.join(sys.path)))
    assert r.returncode == 143, r.stderr
    assert "not waiting for the source-open thread" in r.stderr, r.stderr


def test_a_live_run_ending_at_its_frame_limit_leaves_a_stalled_read_behind(model, tmp_path):
    """`--max-frames` on a live source ends the run while the capture thread may be inside a
    read (a stream that stalled). The run waits 2 s for it, then finishes without it: it exits
    at once too, exit 0, rather than shut the interpreter down around a read in OpenCV."""
    w, h = 32, 24
    fifo = tmp_path / "cam.y4m"
    os.mkfifo(fifo)
    out = tmp_path / "o.ts"
    hold = threading.Event()

    def write() -> None:
        with open(fifo, "wb") as f:
            f.write(f"YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n".encode())
            for i in range(5):   # the limit's frames, then the read of a sixth stalls
                f.write(_y4m_frame(w, h, 40 + i * 8))
                f.flush()
                time.sleep(0.1)
            hold.wait(120)   # alive, writing nothing

    threading.Thread(target=write, daemon=True).start()
    try:
        r = subprocess.run([sys.executable, "-m", cli_module(), "run", "--model", str(model),
                            "--source", f"file://{fifo}", "--live", "--max-frames", "5",
                            "--out", str(out), "--quiet"], capture_output=True, text=True,
                           timeout=120, cwd=tempfile.gettempdir())
    finally:
        hold.set()
    assert r.returncode == 0, r.stderr
    assert "done: 5 frames" in r.stderr, r.stderr
    assert "not waiting for the capture thread" in r.stderr, r.stderr
