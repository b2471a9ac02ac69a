"""Progress off a terminal (cron, nohup, `> log 2>&1`, a Kubernetes Job's log collector):
tqdm redrew its bar with carriage returns into the file, one "line" megabytes long over a
training run, or showed nothing at all for minutes. There: a timestamped line an interval
(SHARPEN_PROGRESS_INTERVAL), one at the end, never a carriage return; a terminal keeps the bar."""
from __future__ import annotations

import io
import os
import re

import numpy as np
import pytest

from runtime.cli_errors import SharpenError
from runtime.progress import INTERVAL_ENV, progress
from runtime_fixtures import drain

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "


def test_off_a_terminal_each_interval_is_one_timestamped_line_with_an_eta(monkeypatch):
    monkeypatch.setenv(INTERVAL_ENV, "0")
    out = io.StringIO()
    bar = progress(total=4, desc="train fast", unit="step", file=out, dynamic_ncols=True)
    for _ in range(4):
        bar.update(1)
        bar.set_postfix(loss="0.1234", refresh=False)
    bar.close()
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert lines, text
    assert all(re.match(STAMP + "train fast: ", line) for line in lines), text
    assert re.search(r"4/4 step \(100%\), .*elapsed .*, eta ", lines[-1]), lines[-1]
    assert "loss=0.1234" in lines[-1]


def test_off_a_terminal_a_short_job_says_only_where_it_ended(monkeypatch):
    monkeypatch.delenv(INTERVAL_ENV, raising=False)   # the default: a line a minute
    out = io.StringIO()
    for _ in progress(range(50), desc="synth", unit="img", file=out):
        pass
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and re.match(STAMP + r"synth: 50/50 img \(100%\)", lines[0]), lines
    # A bar inside another job (leave=False) that ends within the interval says nothing.
    inner = io.StringIO()
    for _ in progress(range(5), desc="tiles", unit="tile", file=inner, leave=False):
        pass
    assert inner.getvalue() == ""


def test_quiet_says_nothing_and_a_bad_interval_is_named(monkeypatch):
    out = io.StringIO()
    for _ in progress(range(3), desc="x", unit="img", file=out, quiet=True):
        pass
    assert out.getvalue() == ""
    monkeypatch.setenv(INTERVAL_ENV, "soon")
    with pytest.raises(SharpenError, match="SHARPEN_PROGRESS_INTERVAL='soon'"):
        progress(range(3), desc="x", unit="img", file=io.StringIO())


@pytest.mark.parametrize("term, bar", [("xterm", True), ("dumb", False)])
def test_a_terminal_keeps_the_bar_unless_term_is_dumb(monkeypatch, term, bar):
    monkeypatch.setenv("TERM", term)
    monkeypatch.setenv(INTERVAL_ENV, "0")
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "w", closefd=True) as tty:
            for _ in progress(range(3), desc="corpus", unit="photo", file=tty):
                pass
        said = drain(master).decode()   # one read could give only its first line
    finally:
        os.close(master)
    # (a terminal writes each newline as \r\n)
    assert bool(re.search("\r(?!\n)", said)) is bar, repr(said)
    assert bool(re.search(STAMP + "corpus: 3/3", said)) is not bar, repr(said)


def test_the_corpus_progress_ends_at_its_count(tmp_path, capsys, monkeypatch):
    """`sharpen corpus`'s bar ended at 26/27 photos, 0/1 for one photo: the last photo was
    never counted (zip took the photo list's end before the bar's)."""
    from distill.images import write_image
    from sharpen.cli import main

    monkeypatch.setenv(INTERVAL_ENV, "60")
    rng = np.random.default_rng(0)
    for i in range(3):
        write_image(tmp_path / "photos" / f"p{i}.png", rng.random((80, 96, 3)).astype(np.float32))
    assert main(["corpus", "--photos", str(tmp_path / "photos"), "--out", str(tmp_path / "c"),
                 "--crop", "32", "--test-crop", "32", "--copies", "1"]) == 0
    said = re.findall(r"corpus (\w+): (\d+)/(\d+) photo", capsys.readouterr().err)
    assert said and all(done == total for _, done, total in said), said


def test_a_line_has_single_spaces_and_none_says_nothing_was_done(monkeypatch):
    monkeypatch.setenv(INTERVAL_ENV, "60")
    out = io.StringIO()
    bar = progress(total=10, desc="corpus test", unit="photo", file=out)
    bar.start_t -= 0.5   # 6 photos/s: tqdm pads the rate to " 6.00photo/s"
    bar.update(3)
    bar.close()
    assert "  " not in out.getvalue(), out.getvalue()
    out = io.StringIO()
    progress(total=2, desc="corpus val", unit="photo", file=out).close()   # all done before
    assert out.getvalue() == ""


def test_a_notebook_keeps_its_bar(monkeypatch):
    """A Jupyter cell's stderr is no terminal, yet it redraws a bar's carriage returns in
    place: lines a minute apart there would take the live bar from a notebook's training."""
    from runtime.progress import interactive

    class OutStream(io.StringIO):   # as ipykernel's
        pass
    OutStream.__module__ = "ipykernel.iostream"
    monkeypatch.delenv("TERM", raising=False)
    assert interactive(OutStream()) and not interactive(io.StringIO())


# A session on a pseudo-terminal of its own (setsid, then TIOCSCTTY makes it the session's
# terminal), asking interactive() in its foreground process group and in a background one, as
# `sharpen run ... &` is from an interactive shell. Prints "foreground background".
_JOB_CONTROL = """
import fcntl, os, sys, termios
from runtime.progress import interactive
os.setsid()
tty = open(os.ttyname(int(sys.argv[1])), "w")
fcntl.ioctl(tty.fileno(), termios.TIOCSCTTY, 0)
os.environ.pop("TERM", None)
read, write = os.pipe()
child = os.fork()
if child == 0:
    os.setpgid(0, 0)
    os.write(write, b"1" if interactive(tty) else b"0")
    os._exit(0)
os.waitpid(child, 0)
print(interactive(tty), bool(int(os.read(read, 1))))
"""


@pytest.mark.skipif(not hasattr(os, "tcgetpgrp"), reason="no job control (Windows)")
def test_a_background_job_of_a_terminal_writes_lines_not_a_redrawn_bar(tmp_path):
    """Three camera runs started with `&` from one shell each redrew its live line in place on
    the shared terminal, erasing the others' and the shell's: the lines flickered between
    cameras with nothing to tell them apart. A job in the background gets plain lines, as pv
    draws nothing there; the foreground job keeps its bar."""
    import pty
    import subprocess
    import sys
    from pathlib import Path

    master, slave = pty.openpty()
    try:
        root = str(Path(__file__).resolve().parents[1])   # this tree's runtime, not another
        r = subprocess.run([sys.executable, "-c", _JOB_CONTROL, str(slave)], pass_fds=(slave,),
                           capture_output=True, text=True, timeout=60, cwd=root,
                           env={**os.environ, "PYTHONPATH": root})
    finally:
        os.close(master)
        os.close(slave)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "False"], (r.stdout, r.stderr)


def test_synth_to_a_log_file_writes_progress_lines_not_bars(tmp_path, capsys, monkeypatch):
    """`sharpen synth > log 2>&1` showed no progress at all (tqdm hides itself off a terminal),
    and `sharpen corpus` the same way wrote carriage-return bars."""
    from distill.images import write_image
    from sharpen.cli import main

    monkeypatch.setenv(INTERVAL_ENV, "0")
    rng = np.random.default_rng(0)
    for i in range(3):
        write_image(tmp_path / "photos" / f"p{i}.png", rng.random((40, 48, 3)).astype(np.float32))
    assert main(["synth", "--sharp", str(tmp_path / "photos"), "--out", str(tmp_path / "out"),
                 "--size", "3", "7"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    assert re.search(STAMP + r"synth: 3/3 img \(100%\)", err), err


def test_a_bad_interval_stops_a_command_before_any_work(tmp_path, capsys, monkeypatch):
    """A mistyped SHARPEN_PROGRESS_INTERVAL failed a training run at its bar, after its data
    checks and its train.log were written; it is one error at the start, as SHARPEN_MAX_PIXELS."""
    from sharpen.cli import main

    monkeypatch.setenv(INTERVAL_ENV, "5m")
    out = tmp_path / "out"
    assert main(["synth", "--sharp", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        "sharpen synth: error: SHARPEN_PROGRESS_INTERVAL='5m' is not a number of seconds >= 0\n")
    assert not out.exists()


def test_a_bad_interval_does_not_stop_sharpen_run_which_draws_no_bar(tmp_path, capsys,
                                                                  monkeypatch):
    """`sharpen run` draws no progress bar (its live line is its own), so a bad
    SHARPEN_PROGRESS_INTERVAL set for the whole environment must not stop a camera service."""
    from sharpen.cli import main

    monkeypatch.setenv(INTERVAL_ENV, "5m")
    code = main(["run", "--model", str(tmp_path / "none.onnx"), "--source", "synthetic:64x64",
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert INTERVAL_ENV not in err
    assert code == 2 and "none.onnx" in err


def _training_bar_on_a_set_clock(monkeypatch, total: int):
    """A training bar writing lines a minute apart into a StringIO, on a clock the test moves
    on by hand (`clock[0] += seconds`): the bar, the clock and what it wrote."""
    import time

    import tqdm.std

    clock = [1000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    monkeypatch.setattr(tqdm.std, "time", lambda: clock[0])
    monkeypatch.setenv(INTERVAL_ENV, "60")
    out = io.StringIO()
    return progress(total=total, desc="train fast", unit="step", file=out), clock, out


def test_a_pause_left_out_of_the_rate_does_not_hold_back_the_next_line(monkeypatch):
    """The trainer leaves each validation and checkpoint save out of the bar's rate by moving
    tqdm's clock marks on by its time: off a terminal the next line came that much later, an
    interval plus every validation in it apart, not once a minute."""
    from distill.trainer import _pause_bar

    bar, clock, out = _training_bar_on_a_set_clock(monkeypatch, total=100)
    clock[0] += 10
    bar.update(1)
    clock[0] += 60   # a validation of 30 s among them
    _pause_bar(bar, 30.0)
    clock[0] += 5
    bar.update(1)   # 75 s after the start: a line is due
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and "train fast: 2/100 step" in lines[0], lines
    bar.close()


def test_elapsed_is_the_wall_time_and_never_goes_back_across_a_pause(monkeypatch):
    """A training log said "20/40 step ..., elapsed 00:04" and then "40/40 step ...,
    elapsed 00:02": the validations left out of the rate were left out of the elapsed time
    too, except in a line said during one (a validation's own line redraws the bar). Elapsed
    is the time since the job began, as its timestamps read; the rate leaves pauses out."""
    from distill.trainer import _pause_bar

    bar, clock, out = _training_bar_on_a_set_clock(monkeypatch, total=40)
    for _ in range(20):
        clock[0] += 2.5
        bar.update(1)   # 50 s: no line yet
    clock[0] += 20
    bar.refresh()   # 20 s into a validation of 40 s: a line is due (70 s)
    clock[0] += 20
    _pause_bar(bar, 40.0)
    for _ in range(20):
        clock[0] += 0.5
        bar.update(1)
    bar.close()   # 100 s after the start, 60 s of them training
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    elapsed = [re.search(r"elapsed (\d\d):(\d\d)", ln).groups() for ln in lines]
    assert [int(m) * 60 + int(s) for m, s in elapsed] == [70, 100], lines
    assert "40/40 step (100%), 1.50s/step" in lines[-1], lines[-1]


def test_an_interrupted_job_says_where_it_stopped_once(monkeypatch):
    """Ctrl-C (or SIGTERM, raised as KeyboardInterrupt) inside the loop: one closing line with
    the count reached, not none (the log would end an interval earlier) nor two (the bar's
    close and its garbage collection)."""
    import gc

    monkeypatch.setenv(INTERVAL_ENV, "60")
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        for i in progress(range(100), desc="synth", unit="img", file=out):
            if i == 5:
                raise KeyboardInterrupt
    bar = progress(total=100, desc="train fast", unit="step", file=out)
    try:
        with pytest.raises(KeyboardInterrupt):
            bar.update(7)
            raise KeyboardInterrupt
    finally:
        bar.close()
    bar.close()
    del bar
    gc.collect()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert re.match(STAMP + r"synth: 5/100 img", lines[0]), lines
    assert re.match(STAMP + r"train fast: 7/100 step", lines[1]), lines


# A run's live line on a terminal of its own session, its job moved as a shell's `fg` and
# Ctrl-Z then `bg` move it (tcsetpgrp): started in the background, brought to the foreground,
# sent back. Marks each step on the terminal (<bg>, <fg>, <back>) after the lines it drew.
_MOVED_JOB = """
import fcntl, os, signal, sys, termios
from runtime.stats import LiveReporter, Stats
os.setsid()
tty = open(os.ttyname(int(sys.argv[1])), "w")
fcntl.ioctl(tty.fileno(), termios.TIOCSCTTY, 0)
shell = os.getpgrp()
read, write = os.pipe()
child = os.fork()
if child == 0:
    os.setpgid(0, 0)
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)   # a background job may take the terminal
    reporter = LiveReporter(Stats(), stream=tty)
    reporter._emit()                                  # within the minute: nothing
    reporter.stats.ask_report()                       # SIGUSR1: a line at once
    reporter._emit()
    tty.write("<bg>"); tty.flush()
    os.tcsetpgrp(tty.fileno(), os.getpgrp())          # fg
    reporter._emit()
    tty.write("<fg>"); tty.flush()
    os.tcsetpgrp(tty.fileno(), shell)                 # Ctrl-Z, bg
    reporter._emit()
    reporter._emit()
    tty.write("<back>"); tty.flush()
    reporter.close()
    os._exit(0)
sys.exit(os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))
"""


@pytest.mark.skipif(not hasattr(os, "tcgetpgrp"), reason="no job control (Windows)")
def test_a_live_line_follows_its_job_into_the_foreground_and_back(monkeypatch):
    """A camera run started with `&` and brought back with `fg` kept writing a dated line a
    minute, as in the background: the foreground showed nothing for up to a minute, as if
    hung. One sent from the foreground to the background (Ctrl-Z, `bg`) kept redrawing its
    line in place over the shell's and the other cameras'. The live line follows the job."""
    import pty
    import select
    import subprocess
    import sys
    from pathlib import Path

    monkeypatch.setenv("TERM", "xterm")
    master, slave = pty.openpty()
    drawn = b""
    try:
        root = str(Path(__file__).resolve().parents[1])   # this tree's runtime, not another
        child = subprocess.Popen([sys.executable, "-c", _MOVED_JOB, str(slave)],
                                 pass_fds=(slave,), cwd=root, stderr=subprocess.PIPE,
                                 env={**os.environ, "PYTHONPATH": root})
        os.close(slave)
        while True:   # read as it draws: a full terminal would hold the run's writes
            if select.select([master], [], [], 1.0)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:   # EIO: every writer closed the terminal
                    break
                if not chunk:
                    break
                drawn += chunk
            elif child.poll() is not None:
                break
        assert child.wait(timeout=60) == 0, child.stderr.read()
    finally:
        os.close(master)
    text = drawn.decode(errors="replace")
    bg, rest = text.split("<bg>", 1)
    fg, back = rest.split("<fg>", 1)
    assert re.fullmatch(STAMP + "0 frames  .*\r\n", bg), repr(bg)
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", fg)
    assert "\x1b[" in fg and plain.startswith("0 frames  "), repr(fg)   # rich's, in place
    moved, closing = back.split("<back>", 1)
    # rich's line stays as last drawn, nothing drawn over the shell's since: only the cursor
    # comes back; within the minute no line; the closing line is a dated one
    assert moved == "\x1b[?25h", repr(back)
    assert re.fullmatch(STAMP + "0 frames  .*\r\n", closing), repr(closing)


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="no pseudo-terminals")
def test_without_job_control_a_terminal_keeps_its_line(monkeypatch):
    """Windows has no os.tcgetpgrp (nor getpgrp): its console is asked nothing of jobs, and
    keeps the line redrawn in place, rather than failing on the missing call."""
    from runtime.progress import background_job, interactive
    from runtime.stats import LiveReporter, Stats

    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.delattr(os, "tcgetpgrp", raising=False)
    monkeypatch.delattr(os, "getpgrp", raising=False)
    main, second = os.openpty()
    try:
        with os.fdopen(second, "w") as tty:
            assert not background_job(tty) and interactive(tty)
            reporter = LiveReporter(Stats(), stream=tty)
            assert reporter.terminal and reporter.interval == 1.0
    finally:
        os.close(main)


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="no pseudo-terminals")
def test_progress_lines_on_a_terminal_are_not_cut_at_its_width(monkeypatch):
    """`sharpen train ... &` (a background job) or under TERM=dumb (an Emacs shell) writes
    plain lines to a terminal: tqdm cut each at the terminal's width, as it does its bar, and
    an 80-column one lost the ETA's last digit and the loss after it."""
    import fcntl
    import struct
    import sys
    import termios

    monkeypatch.setenv("TERM", "dumb")
    monkeypatch.setenv(INTERVAL_ENV, "0")
    main, second = os.openpty()
    fcntl.ioctl(second, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 60, 0, 0))
    try:
        with os.fdopen(second, "w") as tty:
            monkeypatch.setattr(sys, "stderr", tty)   # tqdm asks the width of stderr's only
            bar = progress(total=4, desc="train fast", unit="step")
            for _ in range(4):
                bar.update(1)
                bar.set_postfix(loss="0.1234", refresh=False)
            bar.close()
            monkeypatch.undo()
        text = drain(main).decode()
    finally:
        os.close(main)
    last = text.splitlines()[-1]
    assert re.match(STAMP + r"train fast: 4/4 step \(100%\)", last), text
    assert last.endswith("loss=0.1234"), text
