"""benchmarks/memory.py's child process: what a row says where the child did not report."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest


def _killed_child() -> subprocess.CompletedProcess:
    # A child that wrote a warning before the kernel killed it, as an engine's child does
    # before the out-of-memory killer's SIGKILL.
    code = ("import os, signal, sys; print('UserWarning: provider note', file=sys.stderr); "
            "sys.stderr.flush(); os.kill(os.getpid(), signal.SIGKILL)")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_a_child_killed_by_a_signal_says_so_not_its_last_warning():
    """The row of a child the out-of-memory killer ended gave its last stderr line (a
    warning) as the reason: the reader sizing a board read an unrelated warning."""
    from benchmarks.memory import child_failure

    res = _killed_child()
    assert res.returncode == -signal.SIGKILL, res
    why = child_failure(res)
    assert "killed by SIGKILL" in why and "out-of-memory killer" in why, why
    assert "UserWarning" not in why, why


def test_a_child_that_failed_gives_its_error_line():
    from benchmarks.memory import child_failure

    res = subprocess.run([sys.executable, "-c", "raise SystemExit('no model here')"],
                         capture_output=True, text=True)
    assert child_failure(res) == "the memory run failed: no model here"
    res = subprocess.run([sys.executable, "-c", "raise SystemExit(3)"],
                         capture_output=True, text=True)
    assert child_failure(res) == "the memory run failed: exit status 3"


def test_a_child_that_cannot_start_gives_a_row_reason_not_a_crash(tmp_path, monkeypatch):
    """fork or exec failing (ENOMEM on a board already short of memory, a Python removed
    under a long bench) raised out of `sharpen bench`, losing every row measured so far."""
    from benchmarks.memory import measure_peak_mib

    missing = tmp_path / "no-python"
    monkeypatch.setattr(sys, "executable", str(missing))
    peak, why = measure_peak_mib("ort-fp32", tmp_path / "m.onnx", (16, 16))
    assert peak is None
    assert why.startswith("the memory run could not start: ") and str(missing) in why, why


def test_a_child_that_could_not_read_its_peak_gives_a_reason_not_a_crash():
    """Where neither /proc nor getrusage gives a peak (Windows has no `resource`), the child
    printed {"peak_rss_mib": null} and float(None) raised a TypeError out of the bench."""
    from benchmarks.memory import peak_of

    assert peak_of('noise\n{"peak_rss_mib": 212.3}\n') == (212.3, None)
    peak, why = peak_of('{"peak_rss_mib": null}\n')
    assert peak is None and why.startswith("the memory run printed no peak: "), why
    peak, why = peak_of("")
    assert peak is None and why.startswith("the memory run printed no peak: "), why


def test_the_childs_peak_leaves_out_the_benchs_sample_photo_libraries():
    """The child took its frame from scikit-image's sample photo: importing scikit-image (and
    SciPy) added about 40 MiB to each row's peak that `sharpen run` never holds."""
    root = Path(__file__).resolve().parents[1]
    code = ("import sys; from benchmarks.memory import _child; "
            f"_child(['pytorch', {str(root / 'models' / 'student-fast.pt')!r}, '32x16', '1', "
            "'1']); print(sorted(m for m in ('skimage', 'scipy') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    assert res.returncode == 0, res.stderr
    peak_line, loaded = res.stdout.strip().splitlines()[-2:]
    assert json.loads(peak_line)["peak_rss_mib"] > 0, res.stdout
    assert loaded == "[]", loaded


# Ctrl-C as the memory run starts: after its fork, before Popen returns it to subprocess.run.
INTERRUPTED_IN_ITS_START = """
import os, signal, subprocess, sys

class Popen(subprocess.Popen):
    def _execute_child(self, *args, **kwargs):
        super()._execute_child(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)

subprocess.Popen = Popen
from benchmarks.memory import measure_video_peak_mib
try:
    measure_video_peak_mib(sys.argv[1], sys.argv[2], (64, 48), threads=1)
except KeyboardInterrupt:
    sys.exit(130)
sys.exit(0)
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_ctrl_c_as_the_memory_run_starts_leaves_it_not_running(tmp_path):
    """As bench --streams' streams (benchmarks.streams): an interrupt after the child's fork,
    before subprocess.run had its Popen, left a child nothing stopped, writing its video beside
    the bench's clip in a folder the bench removed."""
    from benchmarks.latency import make_video
    from runtime_fixtures import make_onnx_model

    model = make_onnx_model(tmp_path / "m.onnx")
    clip = make_video(tmp_path / "clip", 64, 48, 3000)   # runs far longer than the test
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-c", INTERRUPTED_IN_ITS_START, str(model), str(clip)],
                         env=env, capture_output=True, text=True, timeout=120)
    left = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and str(clip).encode() in (p / "cmdline").read_bytes():
                left.append(int(p.name))
        except OSError:
            continue
    for pid in left:   # not left running past the test
        os.kill(pid, signal.SIGKILL)
    assert res.returncode == 130, res.stderr
    assert left == [], "the memory run outlived the interrupted bench"
