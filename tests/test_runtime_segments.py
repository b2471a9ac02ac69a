"""`sharpen run --segment S`: a recording cut into files of S seconds of video each, as a
recorder (ffmpeg's segment muxer, an NVR) writes a camera's days, every one complete and
playable under its final name the moment it closes, with `--keep-segments N` bounding the
disk. Segments are counted in frames of the output's rate (tests: 10 fps, 0.5 s = 5 frames)."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import pytest

from runtime.pipeline import run_stream
from tests.runtime_fixtures import cli_module, make_onnx_model, textured_frame

NAME = re.compile(r"^rec-(\d{6})-(\d{8}-\d{6})\.(mp4|ts)$")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_onnx_model(tmp_path_factory.mktemp("models") / "student.onnx")


def _frames(n: int) -> list:
    return [textured_frame(i % 16, 64, 96) for i in range(n)]


def _count(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def _segments(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if NAME.match(p.name))


def _sharpen_run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", cli_module(), "run", *argv],
                          cwd=tempfile.gettempdir(), capture_output=True, text=True,
                          timeout=120)


def test_segments_are_whole_videos_of_the_asked_length_named_by_number_and_time(model, tmp_path):
    out = tmp_path / "rec.mp4"
    stats = run_stream(model, _frames(23), out, fps=10, segment=0.5)
    segs = _segments(tmp_path)
    assert [NAME.match(p.name).group(1) for p in segs] == [f"{i:06d}" for i in range(5)]
    assert [_count(p) for p in segs] == [5, 5, 5, 5, 3]
    # Nothing under the base name, and no hidden temporary file left.
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in segs]
    assert stats["segment"] == str(segs[-1]) and stats["segments_closed"] == 5


def test_keep_segments_removes_the_oldest_and_a_rerun_numbers_on(model, tmp_path):
    out = tmp_path / "rec.mp4"
    run_stream(model, _frames(20), out, fps=10, segment=0.5, keep_segments=3)
    assert [NAME.match(p.name).group(1) for p in _segments(tmp_path)] == [
        "000001", "000002", "000003"]
    mine = tmp_path / "rec-keep-me.mp4"   # a name of the user's own is not counted
    mine.write_bytes(b"x")
    run_stream(model, _frames(7), out, fps=10, segment=0.5, keep_segments=3)
    assert [NAME.match(p.name).group(1) for p in _segments(tmp_path)] == [
        "000003", "000004", "000005"]
    assert [_count(p) for p in _segments(tmp_path)] == [5, 5, 2]
    assert mine.exists()


@pytest.mark.parametrize("argv, said", [
    (["--out", "-"], "--segment cuts a video file --out into files; --out - is a stream"),
    (["--out", "{tmp}/frames"], "--segment cuts a video file --out into files"),
    (["--out", "{tmp}/rec.mp4", "--resume"], "--resume: no stopped run into --out"),
    (["--out", "{tmp}/rec.mp4", "--segment", "0"], "--segment must be a number of seconds"),
    (["--out", "{tmp}/rec.mp4", "--keep-segments", "0"], "--keep-segments must be"),
])
def test_segment_refusals_name_the_flag_and_exit_2(model, tmp_path, argv, said):
    clip = tmp_path / "in.mp4"
    vw = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"mp4v"), 10, (96, 64))
    for f in _frames(3):
        vw.write(f)
    vw.release()
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--segment" not in argv:
        argv += ["--segment", "1"]
    r = _sharpen_run("--model", str(model), "--source", str(clip), *argv, "--quiet")
    assert r.returncode == 2, r.stderr
    assert said in r.stderr, r.stderr
    assert not list(tmp_path.glob("rec*")) and not (tmp_path / "frames").exists()


@pytest.mark.parametrize("flag", ["--keep-segments", "--keep-gb"])
def test_a_bound_on_segments_without_segment_is_refused(model, tmp_path, flag):
    r = _sharpen_run("--model", str(model), "--source", "synthetic:96x64", "--max-frames", "2",
                     "--out", str(tmp_path / "rec.mp4"), flag, "3", "--quiet")
    assert r.returncode == 2 and f"{flag} applies with --segment" in r.stderr, r.stderr


def test_sigterm_mid_segment_closes_it_playable_and_the_stats_name_it(model, tmp_path):
    out, stats = tmp_path / "rec.ts", tmp_path / "rec.json"
    proc = subprocess.Popen([sys.executable, "-m", cli_module(), "run", "--model", str(model),
                             "--source", "synthetic:96x64@30", "--out", str(out),
                             "--segment", "0.5", "--stats", str(stats),
                             "--report-interval", "0.2", "--quiet"],
                            cwd=tempfile.gettempdir(), stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):   # until two segments are closed and the third under way
            with_stats = json.loads(stats.read_text()) if stats.exists() else {}
            if with_stats.get("segments_closed", 0) >= 2:
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    segs = _segments(tmp_path)
    assert len(segs) >= 3, err
    assert all(_count(p) >= 1 for p in segs)
    assert all(_count(p) == 15 for p in segs[:-1])   # 0.5 s at 30 fps
    final = json.loads(stats.read_text())
    assert final["state"] == "stopped" and final["segment"] == str(segs[-1])
    assert final["segments_closed"] == len(segs)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".rec")
                and p.name.endswith(".partial.ts")]


def test_a_silent_clip_cut_into_segments_says_nothing_of_sound(model, tmp_path):
    clip = tmp_path / "in.mp4"
    vw = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"mp4v"), 10, (96, 64))
    for f in _frames(12):
        vw.write(f)
    vw.release()
    r = _sharpen_run("--model", str(model), "--source", str(clip), "--out",
                     str(tmp_path / "rec.mp4"), "--segment", "0.5", "--quiet")
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    assert [_count(p) for p in _segments(tmp_path)] == [5, 5, 2]


def test_a_stream_that_stalls_past_timeout_exits_3_its_segments_closed_and_named(model, tmp_path):
    """--source - silent for --timeout: a lost stream (exit 3), the segment under way closed
    playable, and the line under the error names where the frames are."""
    from runtime.y4m import Y4MWriter
    out = tmp_path / "rec.ts"
    proc = subprocess.Popen([sys.executable, "-m", cli_module(), "run", "--model", str(model),
                             "--source", "-", "--out", str(out), "--segment", "0.5",
                             "--timeout", "1", "--quiet"],
                            cwd=tempfile.gettempdir(), stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        w = Y4MWriter(proc.stdin.write, 10)
        for f in _frames(12):
            w.write(f)
        proc.stdin.flush()   # and then nothing, the pipe left open
        err = proc.stderr.read().decode()
        proc.wait(timeout=60)
    finally:
        proc.stdin.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, err
    segs = _segments(tmp_path)
    assert [_count(p) for p in segs] == [5, 5, 2]
    assert (f"the 12 frames written before the error are in 3 segments of {out}, the last "
            f"{segs[-1]} (each closed cleanly)") in err, err


def test_a_killed_runs_segment_is_kept_by_the_next_run_and_counted(model, tmp_path):
    """SIGKILL (the OOM killer, a power cut) leaves the segment under way under its hidden
    name: the next run into the output gives an MPEG-TS one, which plays up to the cut, a
    visible name beside the segments, counted by --keep-segments, and numbers on past it."""
    out, stats = tmp_path / "rec.ts", tmp_path / "rec.json"
    # Frames large enough that the writer has flushed some of the second segment to disk.
    argv = ["--model", str(model), "--source", "synthetic:640x360@30", "--out", str(out),
            "--segment", "2", "--stats", str(stats), "--report-interval", "0.2", "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", cli_module(), "run", *argv],
                            cwd=tempfile.gettempdir(), stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):   # the first segment closed, the second some way in
            s = json.loads(stats.read_text()) if stats.exists() else {}
            if s.get("segments_closed", 0) >= 1 and s.get("frames_processed", 0) >= 110:
                break
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
    hidden = [p for p in tmp_path.iterdir() if p.name.endswith(".partial.ts")]
    # On a loaded host the stats file can lag the writer by a segment: count what closed.
    closed = len(_segments(tmp_path))
    assert len(hidden) == 1 and 1 <= closed <= 3, (hidden, closed)
    r = _sharpen_run(*argv[:-5], "--max-frames", "3", "--keep-segments", "5", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "a recording into it was cut" in r.stderr, r.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial.ts")]
    segs = sorted(tmp_path.glob("rec-*.ts"))
    assert [NAME.match(p.name) is not None for p in segs] == [True] * closed + [False, True]
    cut = segs[closed]
    assert ".interrupted-" in cut.name and cut.name.startswith(f"rec-{closed:06d}-")
    assert _count(cut) >= 1 and segs[-1].name.startswith(f"rec-{closed + 1:06d}-")


def test_a_stopped_file_run_into_segments_says_where_its_frames_are(model, tmp_path):
    """A video file's run stopped part-way said `rec.mp4 holds 135 of 600 frames`, a file it
    never wrote: the frames are in the segments."""
    from runtime.cli import _interrupted_note
    out = tmp_path / "rec.mp4"
    stats = run_stream(model, _frames(12), out, fps=10, segment=0.5)
    stats["source"] = {"kind": "video", "live": False, "frame_count": 40}
    said = _interrupted_note(stats, str(out))
    last = _segments(tmp_path)[-1]
    assert said == (f"interrupted: 3 segments of {out}, the last {last}, hold 12 of 40 frames "
                    "only (each closed cleanly); run again for all of them (into segments "
                    "numbered on from these)"), said


def test_a_stopped_runs_note_says_which_segments_the_bound_removed(model, tmp_path):
    """A service soak (--segment 10 --keep-segments 5, SIGTERM after 11 minutes) said
    `66 segments of gate.mkv, the last gate-000209-....mkv, hold the 6580 frames stdin gave`,
    where 61 of them had been removed by the bound: the operator read 6,580 frames on disk,
    not 500. The note and the --stats file now say how many the bound removed."""
    from runtime.cli import _interrupted_note, _kept_before_error
    out = tmp_path / "rec.ts"
    stats = run_stream(model, _frames(12), out, fps=10, segment=0.2, keep_segments=2)
    segs = _segments(tmp_path)
    assert len(segs) == 2 and stats["segments_closed"] == 6, segs
    assert stats["segments_removed"] == 4, stats
    stats["source"] = {"kind": "stdin", "live": False, "spec": "-"}
    said = _interrupted_note(stats, str(out))
    assert said == (f"interrupted: 6 segments of {out}, the last {segs[-1]}, held the 12 frames "
                    "stdin gave (each closed cleanly); the first 4 were removed past "
                    "--keep-segments or --keep-gb, the last 2 kept"), said
    lost = _kept_before_error(stats, str(out))
    assert lost.endswith("(each closed cleanly); the first 4 were removed past "
                         "--keep-segments or --keep-gb, the last 2 kept"), lost


def test_a_stopped_runs_note_on_one_removed_segment_reads_as_english():
    """A restarted service run stopped after 3 segments (--keep-segments 2) said `the first 1
    were removed past --keep-segments or --keep-gb, the last 2 kept`."""
    from runtime.cli import _interrupted_note
    stats = {"frames_processed": 26, "segment": "gate-000007.mkv", "segments_closed": 3,
             "segments_removed": 1, "source": {"kind": "stdin", "live": False, "spec": "-"}}
    said = _interrupted_note(stats, "gate.mkv")
    assert said.endswith("; the first was removed past --keep-segments or --keep-gb, the last "
                         "2 kept"), said
    said = _interrupted_note({**stats, "segments_closed": 4, "segments_removed": 3}, "gate.mkv")
    assert said.endswith("; the first 3 were removed past --keep-segments or --keep-gb, the "
                         "last kept"), said


def test_keep_gb_removes_the_oldest_segments_past_that_size(model, tmp_path):
    """A camera's bitrate varies with its scene: a bound in bytes keeps the disk from filling
    where a count of segments may not."""
    (tmp_path / "a").mkdir()
    run_stream(model, _frames(20), tmp_path / "a" / "rec.mp4", fps=10, segment=0.5)
    sizes = [p.stat().st_size for p in _segments(tmp_path / "a")]
    assert len(sizes) == 4
    (tmp_path / "b").mkdir()
    run_stream(model, _frames(20), tmp_path / "b" / "rec.mp4", fps=10, segment=0.5,
               keep_gb=(sizes[2] + sizes[3] + 1) / 1e9)
    assert [NAME.match(p.name).group(1) for p in _segments(tmp_path / "b")] == [
        "000002", "000003"]
    # The newest is kept whatever its size.
    (tmp_path / "c").mkdir()
    run_stream(model, _frames(10), tmp_path / "c" / "rec.mp4", fps=10, segment=0.5,
               keep_gb=1e-9)
    assert [NAME.match(p.name).group(1) for p in _segments(tmp_path / "c")] == ["000001"]


def test_what_a_segment_warns_of_is_said_once_for_the_recording(model, tmp_path, monkeypatch):
    """A day of 10-minute segments said the same warning (an HD video's untagged colours, an
    odd frame size) 144 times, once a segment, each naming its own file."""
    from tests.runtime_fixtures import runtime_warnings
    monkeypatch.setenv("SHARPEN_FFMPEG", str(tmp_path / "no-ffmpeg"))
    frames = [textured_frame(i % 16, 720, 1281) for i in range(6)]   # HD, and an odd width
    with runtime_warnings() as said:
        run_stream(model, frames, tmp_path / "rec.mp4", fps=10, segment=0.2)
    assert len(_segments(tmp_path)) == 3
    odd = [w for w in said if "1281x720 frames are stored as 1280x720" in w]
    colours = [w for w in said if "BT.601 colours" in w]
    assert len(odd) == 1 and len(colours) == 1, said
    assert "rec-NNNNNN-YYYYmmdd-HHMMSS.mp4" in colours[0], colours[0]


def test_a_segments_close_does_not_hold_up_the_next(tmp_path, monkeypatch):
    """Closing a segment copies it once with ffmpeg to tag its colours: 0.19 s for 10 s of
    1080p here, so about 11 s for a 10-minute segment, during which a camera's frames were
    dropped, a frozen picture at every segment's end. The close runs beside the next segment's
    writing. The ffmpeg here waits for the test's word before it answers (refusing the copy)."""
    from runtime.segment_sink import SegmentSink
    from tests.runtime_fixtures import runtime_warnings
    go, gave_up = tmp_path / "go", tmp_path / "gave-up"
    ffmpeg = tmp_path / "ffmpeg"
    ffmpeg.write_text(f"#!/bin/sh\ni=0\nwhile [ ! -e {go} ]; do\n  i=$((i + 1))\n"
                      f"  if [ $i -gt 200 ]; then touch {gave_up}; exit 1; fi\n  sleep 0.1\n"
                      "done\necho 'tags refused' >&2\nexit 1\n")
    ffmpeg.chmod(0o755)
    monkeypatch.setenv("SHARPEN_FFMPEG", str(ffmpeg))
    out = tmp_path / "rec" / "rec.mp4"
    with runtime_warnings() as said:
        sink = SegmentSink(out, 10, 0.5)
        for i, f in enumerate(_frames(8)):
            sink.write(f, f, f"frame_{i}")
        # Frames 5-7 went into the second segment while the first's copy still waited.
        assert not gave_up.exists() and sink.current.frames == 3
        go.touch()
        sink.close()
    assert not gave_up.exists()
    assert [_count(p) for p in _segments(out.parent)] == [5, 3]
    assert any("tags refused" in w for w in said), said


def test_a_live_runs_repeated_frames_fill_segments_across_their_ends(tmp_path, monkeypatch):
    """A camera's dropped frames are filled in by repeats (the recording keeps real time): they
    count towards a segment's length and go on into the next."""
    from runtime.segment_sink import SegmentSink
    monkeypatch.setenv("SHARPEN_FFMPEG", str(tmp_path / "no-ffmpeg"))
    sink = SegmentSink(tmp_path / "rec.mp4", 10, 0.5)
    for i, f in enumerate(_frames(3)):
        sink.write(f, f, f"frame_{i}")
    assert sink.repeat_last(9) == 9 and sink.frames == 12
    sink.close()
    assert [_count(p) for p in _segments(tmp_path)] == [5, 5, 2]


def test_a_16_bit_recording_says_once_that_segments_are_8_bit(model, tmp_path):
    """Said of the first segment's first frame, not again for the next, which opens while the
    first may still be closing."""
    from tests.runtime_fixtures import runtime_warnings
    frames = [f.astype("uint16") * 257 for f in _frames(12)]
    with runtime_warnings() as said:
        run_stream(model, frames, tmp_path / "rec.mkv", fps=10, segment=0.5)
    assert len(_segments_any(tmp_path, ".mkv")) == 3
    assert len([w for w in said if "16-bit results are written as 8-bit" in w]) == 1, said


def _segments_any(folder: Path, ext: str) -> list[Path]:
    return sorted(folder.glob(f"rec-*{ext}"))


def _ffmpeg_waiting_for(go: Path, only: str = "") -> Path:
    """An ffmpeg beside `go` that refuses its copy once `go` exists (30 s at most); with
    `only`, one whose command line does not name it refuses at once."""
    ffmpeg = go.with_name("ffmpeg")
    first = f"case \"$*\" in *{only}*) ;; *) exit 1 ;; esac\n" if only else ""
    ffmpeg.write_text(f"#!/bin/sh\n{first}i=0\nwhile [ ! -e {go} ] && [ $i -lt 300 ]; do\n"
                      "  i=$((i + 1)); sleep 0.1\ndone\nexit 1\n")
    ffmpeg.chmod(0o755)
    return ffmpeg


def test_a_segment_whose_close_fails_leaves_the_next_one_closed_whole(tmp_path, monkeypatch):
    """The first segment's close fails (its name taken by a folder) while the writer waits on
    it to cut the second: the error ends the run, and the second, whose frames are all
    written, is still closed under its name, not left as a hidden partial file."""
    import threading

    from runtime.segment_sink import SegmentSink
    from runtime.sinks import SinkError
    go = tmp_path / "go"   # answers (refusing the tag copy) once told to
    monkeypatch.setenv("SHARPEN_FFMPEG", str(_ffmpeg_waiting_for(go)))
    out = tmp_path / "rec" / "rec.mp4"
    sink = SegmentSink(out, 10, 0.5)
    frames = _frames(11)
    for i, f in enumerate(frames[:10]):
        sink.write(f, f, f"frame_{i}")
        if i == 0:
            sink.current.path.mkdir()   # the first segment cannot take its name
    # The first is still closing; the writer waits for it to cut the second.
    timer = threading.Timer(1.0, go.touch)
    timer.start()
    try:
        with pytest.raises(SinkError, match="rec-000000-"):
            sink.write(frames[10], frames[10], "frame_10")
        sink.close()
    finally:
        timer.cancel()
    closed = [p for p in _segments(out.parent) if p.is_file()]
    assert [_count(p) for p in closed] == [5] and closed[0].name.startswith("rec-000001-")
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".partial.mp4")
                and "000001" in p.name]


def test_compare_into_segments_names_the_segments_not_the_unwritten_out(model, tmp_path):
    out = tmp_path / "rec.mp4"
    r = _sharpen_run("--model", str(model), "--source", "synthetic:96x64", "--max-frames", "3",
                     "--out", str(out), "--segment", "1", "--compare", "--quiet")
    assert r.returncode == 0, r.stderr
    assert f"{tmp_path / 'rec-NNNNNN-YYYYmmdd-HHMMSS.mp4'}: input on the left" in r.stderr, \
        r.stderr
    assert f"{out}:" not in r.stderr and not out.exists()


def _take_first_segments_name(folder: Path) -> None:
    """A folder under the name segment 0 of `folder`/rec.mp4 will close to, made once the
    writer has chosen that name (its time): the segment cannot be closed."""
    for _ in range(200):
        if hidden := list(folder.glob(".rec-000000-*.partial.mp4")):
            break
        time.sleep(0.05)
    stamp = re.match(r"^\.(rec-000000-\d{8}-\d{6})\.", hidden[0].name).group(1)
    (folder / f"{stamp}.mp4").mkdir()


def test_after_a_segment_that_could_not_be_closed_the_error_says_which_frames_are_kept(
        model, tmp_path, monkeypatch):
    """A full disk lost a segment and the run went on to the next; the line under the error
    said all the frames written were in the segments closed, each closed cleanly."""
    from runtime.cli import _kept_before_error
    from runtime.sinks import SinkError
    monkeypatch.setenv("SHARPEN_FFMPEG", str(tmp_path / "no-ffmpeg"))
    out = tmp_path / "rec.mp4"

    def frames():
        for i, f in enumerate(_frames(12)):
            yield f
            if i == 0:
                _take_first_segments_name(tmp_path)

    with pytest.raises(SinkError) as failed:
        run_stream(model, frames(), out, fps=10, segment=0.5)
    summary = failed.value.stats
    closed = [p for p in _segments(tmp_path) if p.is_file()]
    assert summary["segment_frames"] == sum(_count(p) for p in closed) > 0
    said = _kept_before_error(summary, str(out))
    assert said.startswith(f"{summary['segment_frames']} of the ") and \
        f"are in {len(closed)} segment" in said and "could not be closed" in said, said


def test_a_killed_containers_segment_is_kept_though_it_names_this_process(model, tmp_path):
    """In a container every run is process 1, the killed one too: the segment it left under
    way names this run's own process number, and was left hidden for good, uncounted."""
    import os
    hidden = tmp_path / f".rec-000004-20260101-120000.{os.getpid()}.abc123.partial.ts"
    vw = cv2.VideoWriter(str(hidden), cv2.VideoWriter.fourcc(*"mpeg"), 10, (96, 64))
    for f in _frames(4):   # what the killed run had written of it
        vw.write(f)
    vw.release()
    assert _count(hidden) >= 1
    run_stream(model, _frames(3), tmp_path / "rec.ts", fps=10, segment=0.5)
    assert not hidden.exists()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[0].startswith("rec-000004-20260101-120000.interrupted-"), names
    assert names[1].startswith("rec-000005-") and len(names) == 2, names


def test_numpys_numbers_are_taken_for_the_segment_options(model, tmp_path):
    """As for every other number of run_stream: an app's config read into numpy gave
    `segment must be a number of seconds above 0, got 0.5`."""
    import numpy as np
    stats = run_stream(model, _frames(12), tmp_path / "rec.mp4", fps=10,
                       segment=np.float32(0.5), keep_segments=np.int64(2),
                       keep_gb=np.float64(1.0))
    assert stats["segments_closed"] == 3
    assert [NAME.match(p.name).group(1) for p in _segments(tmp_path)] == ["000001", "000002"]


def test_a_ctrl_c_while_waiting_on_a_close_still_has_close_wait_for_it(tmp_path, monkeypatch):
    """A second Ctrl-C landing while the writer waits for a segment's close: on Python 3.11
    an interrupted join takes the thread for ended, and `close` then returned, and the process
    exited, with that segment still closing (its ffmpeg killed, the file left hidden)."""
    import threading

    from runtime.segment_sink import SegmentSink
    go = tmp_path / "go"   # the first segment's copy waits for the word; others fail
    monkeypatch.setenv("SHARPEN_FFMPEG", str(_ffmpeg_waiting_for(go, "rec-000000-")))
    out = tmp_path / "rec" / "rec.mp4"
    sink = SegmentSink(out, 10, 0.5)
    frames = _frames(11)
    for i, f in enumerate(frames[:10]):
        sink.write(f, f, f"frame_{i}")
    main = threading.main_thread().ident
    ctrl_c = threading.Timer(0.5, signal.pthread_kill, (main, signal.SIGINT))
    ctrl_c.start()
    with pytest.raises(KeyboardInterrupt):
        sink.write(frames[10], frames[10], "frame_10")   # waits on the first's close
    answer = threading.Timer(1.0, go.touch)
    answer.start()
    try:
        sink.close()
        assert [_count(p) for p in _segments(out.parent)] == [5, 5]
    finally:
        answer.cancel()
        go.touch()


def test_a_segment_is_closed_in_the_writer_where_no_thread_can_be_started(tmp_path,
                                                                          monkeypatch):
    """A container at its pids.max: the closing thread cannot start. The segment is closed
    where it is written, not lost, and the run's close does not wait for it for ever."""
    import threading

    import runtime.segment_sink as segment_sink

    class NoThread(threading.Thread):
        def start(self) -> None:
            raise RuntimeError("can't start new thread")

    monkeypatch.setenv("SHARPEN_FFMPEG", str(tmp_path / "no-ffmpeg"))
    sink = segment_sink.SegmentSink(tmp_path / "rec.mp4", 10, 0.5)
    with monkeypatch.context() as m:
        m.setattr(segment_sink.threading, "Thread", NoThread)
        for i, f in enumerate(_frames(8)):
            sink.write(f, f, f"frame_{i}")
    closing = threading.Thread(target=sink.close, daemon=True)
    closing.start()
    closing.join(timeout=30)
    assert not closing.is_alive(), "close() waits on a thread that never started"
    assert [_count(p) for p in _segments(tmp_path)] == [5, 3]


def _clip(path: Path, n: int) -> Path:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10, (96, 64))
    for f in _frames(n):
        vw.write(f)
    vw.release()
    return path


def _pid_gone(pid: int) -> bool:
    """Whether process `pid` has ended (reaped, or a zombie no longer running)."""
    import os
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.skipif(sys.platform != "linux", reason="a copy's ffmpeg dies with its run on Linux")
@pytest.mark.parametrize("out_name,argv", [("rec.ts", ["--segment", "0.5"]),
                                           ("rec.mp4", ["--segment", "0.5"]),
                                           ("rec.mp4", [])])
def test_a_run_killed_in_the_colour_tag_copy_leaves_one_recording_not_the_copy_too(
        model, tmp_path, out_name, argv):
    """SIGKILL while ffmpeg copied a closed video to tag its colours: the copy had the same
    kind of hidden name as the recording, so the next run kept ffmpeg's half-written copy as a
    second cut recording (`...interrupted-TIME-2`, junk for an .mp4), counted by
    --keep-segments, and the orphaned ffmpeg went on writing it. The copy dies with the run and
    the next run removes what it left; the recording itself, whole, is kept once."""
    import os
    from tests.runtime_fixtures import ffmpeg_or_skip
    real = ffmpeg_or_skip("copy the videos")
    clip, pid_file = _clip(tmp_path / "in.mp4", 12), tmp_path / "copy.pid"
    rec = tmp_path / "rec"
    rec.mkdir()
    ffmpeg = tmp_path / "ffmpeg"   # the tag copy writes part of its file, then hangs
    ffmpeg.write_text("#!/bin/sh\ncase \"$*\" in *' -c copy '*) ;; *) exec "
                      f"'{real}' \"$@\" ;; esac\nfor out; do :; done\n"
                      f"head -c 3000 \"$7\" > \"$out\"\necho $$ > '{pid_file}.new'\n"
                      f"mv '{pid_file}.new' '{pid_file}'\nexec sleep 600\n")
    ffmpeg.chmod(0o755)
    cmd = [sys.executable, "-m", cli_module(), "run", "--model", str(model), "--source",
           str(clip), "--out", str(rec / out_name), *argv, "--quiet"]
    proc = subprocess.Popen(cmd, cwd=tempfile.gettempdir(), stderr=subprocess.DEVNULL,
                            env={**os.environ, "SHARPEN_FFMPEG": str(ffmpeg)})
    copier = None
    try:
        for _ in range(1200):   # until the copy's file is there and its ffmpeg waits
            if pid_file.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert pid_file.exists(), "the tag copy never started"
        copier = int(pid_file.read_text())
        proc.kill()
        proc.wait()
        for _ in range(600):   # the copy's ffmpeg ends with the run (bounded, not timed)
            if _pid_gone(copier):
                break
            time.sleep(0.05)
        assert _pid_gone(copier), "the tag copy's ffmpeg outlived the run killed"
    finally:
        if proc.poll() is None:
            proc.kill()
        if copier is not None and not _pid_gone(copier):
            os.kill(copier, signal.SIGKILL)
    again = [*cmd[:cmd.index("--quiet")], "--max-frames", "3", "--quiet"]
    if argv:
        again += ["--keep-segments", "5"]
    r = subprocess.run(again, cwd=tempfile.gettempdir(), capture_output=True, text=True,
                       timeout=120, env={**os.environ, "SHARPEN_FFMPEG": real})
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in rec.iterdir() if p.name != f".{out_name}.lock")
    stem = "rec-000000-" if argv else "rec."
    cut = [n for n in names if n.startswith(stem) and ".interrupted-" in n]
    assert len(cut) == 1 and not re.search(r"-\d{6}-2\.", cut[0]), names
    assert _count(rec / cut[0]) >= 1, names
    assert not [n for n in names if n.startswith(".")], names


def test_a_segments_close_error_is_said_and_in_the_stats_while_the_camera_is_away(
        model, tmp_path, monkeypatch):
    """A segment that cannot be closed (its name taken, a full disk) while the camera is gone
    (reconnecting, no frame coming): the error waited for the next frame or the end, the
    --stats file saying `running` all the while. It is said, the file says `failed`, and the
    run ends, at once, without a frame."""
    import warnings

    from runtime.sinks import SinkError
    from runtime.warn import SharpenWarning
    monkeypatch.setenv("SHARPEN_FFMPEG", str(tmp_path / "no-ffmpeg"))
    out, stats = tmp_path / "rec.mp4", tmp_path / "rec.json"
    seen: dict = {}

    def camera():
        for i, f in enumerate(_frames(6)):
            yield f
            if i == 0:
                _take_first_segments_name(tmp_path)
        # The sixth frame opened the second segment, the first closing apart; then no frame
        # comes (a camera away) until the run is seen to have said the error, or a minute.
        for _ in range(1200):
            s = json.loads(stats.read_text()) if stats.exists() else {}
            said = [str(w.message) for w in list(rec) if issubclass(w.category, SharpenWarning)]
            if s.get("state") != "running" and any("rec-000000-" in w for w in said):
                break
            time.sleep(0.05)
        seen.update(state=s.get("state"), error=s.get("error", ""), said=said)

    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        with pytest.raises(SinkError, match="rec-000000-"):
            run_stream(model, camera(), out, fps=10, segment=0.5, stats_path=stats,
                       report_interval=30)
    assert seen["state"] == "failed" and "rec-000000-" in seen["error"], seen
    assert [w for w in seen["said"] if "rec-000000-" in w and "could not be closed" in w], seen
    final = json.loads(stats.read_text())
    assert final["state"] == "failed" and final["frames_processed"] == 6, final


def test_a_run_into_segments_without_out_names_the_segments_it_wrote(model, tmp_path):
    """Without --out the result line named runs/sharpen/clip.mp4, a file never written."""
    clip = _clip(tmp_path / "clip.mp4", 12)
    r = subprocess.run([sys.executable, "-m", cli_module(), "run", "--model", str(model),
                        "--source", str(clip), "--segment", "0.5", "--quiet"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "runs" / "sharpen"
    assert not (folder / "clip.mp4").exists()
    assert len(list(folder.glob("clip-000*.mp4"))) == 3, sorted(folder.iterdir())
    assert ("results written to runs/sharpen/clip-NNNNNN-YYYYmmdd-HHMMSS.mp4 (no --out given)"
            in r.stderr), r.stderr
