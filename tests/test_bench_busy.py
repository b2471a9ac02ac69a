"""The bench's "timed on a busy machine" verdict: the CPU time other processes took during the
timings, not the load average, which counts the bench's own threads and children (a quiet
2-core CI runner timing at 2 threads called itself busy, and its latency was never gated)."""
from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from benchmarks.machine import busy_text, cpu_sample, machine_load

needs_proc_stat = pytest.mark.skipif(not Path("/proc/stat").exists(),
                                     reason="the machine's CPU time is read from /proc/stat")
BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\n"


def _window(seconds: float, threads=None) -> dict:
    start = cpu_sample()
    time.sleep(seconds)
    return machine_load(start, threads)


@needs_proc_stat
def test_a_process_burning_a_core_during_the_timings_makes_them_busy():
    burner = subprocess.Popen([sys.executable, "-c", BURN.format(s=30)])
    try:
        time.sleep(0.2)   # running before the window opens
        load = _window(1.0)
    finally:   # reaped after the window: not one of this process's children in it
        burner.kill()
        burner.wait()
    assert load["others_cores"] >= 0.5, load
    assert busy_text(load).startswith("timed on a busy machine: other processes took "), load


@needs_proc_stat
def test_the_bench_s_own_threads_and_children_are_not_other_processes():
    idle = _window(0.5)
    if busy_text(idle):
        pytest.skip(f"other processes took {idle['others_cores']} cores of this host already")
    stop = time.monotonic() + 1.0
    data = b"x" * (8 << 20)

    def work():   # hashing a large buffer runs without the GIL: a core per thread
        while time.monotonic() < stop:
            hashlib.sha256(data).digest()

    start = cpu_sample()
    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    # a child timed inside the window, as the bench's memory and --streams runs are
    subprocess.run([sys.executable, "-c", BURN.format(s=0.5)], check=True)
    for t in threads:
        t.join()
    load = machine_load(start, 2)
    assert busy_text(load) is None, load
    assert load["others_cores"] < 0.5 and load["window_s"] > 0.9, load


def test_a_high_load_average_from_the_bench_itself_is_not_busy():
    """A quiet 2-core runner's load average counts the bench's 2 threads and its export
    minutes before: 2.9. Other processes' CPU time, where measured, decides."""
    quiet = {"before": 2.9, "after": 3.1, "cores": 2, "threads": 2, "others_cores": 0.12,
             "run_cores": 2, "window_s": 41.0}
    assert busy_text(quiet) is None
    busy = {**quiet, "others_cores": 1.66}
    assert busy_text(busy) == (
        "timed on a busy machine: other processes took 1.7 of 2 cores during these timings, "
        "CPU time these timings did not get; rerun on a quiet machine before deciding")
    # on a 64-core host, others on the cores a 2-thread run leaves free take none of its time
    big = {**quiet, "cores": 64, "run_cores": 2}
    assert busy_text({**big, "others_cores": 40.0}) is None
    assert busy_text({**big, "others_cores": 62.7}) == (
        "timed on a busy machine: other processes took 62.7 of 64 cores during these timings "
        "(this run's on 2), CPU time these timings did not get; rerun on a quiet machine "
        "before deciding")
    # where no CPU time could be read (macOS, Windows; older reports) the load average decides
    assert busy_text({**quiet, "others_cores": None}).startswith(
        "timed on a busy machine: load average 3.1 (1 min) on 2 cores")


def test_only_the_cores_this_process_may_run_on_count(tmp_path):
    """Under taskset or a container's cpuset, others on the host's other cores take nothing
    from the timings: a 2-core slice of a busy 64-core host is not busy for them."""
    import os

    from benchmarks.machine import machine_cpu_seconds

    stat = tmp_path / "stat"
    stat.write_text("cpu  900 0 900 100 0 0 0 0 0 0\n"
                    "cpu0 400 0 400 50 7 0 0 0 0 0\n"
                    "cpu1 100 0 100 50 3 0 0 20 0 0\n"
                    "intr 12345\n")
    hz = os.sysconf("SC_CLK_TCK")
    assert machine_cpu_seconds([1], stat) == 220 / hz   # user + system + steal of cpu1 only
    assert machine_cpu_seconds([0, 1], stat) == 1020 / hz
    assert machine_cpu_seconds([5], stat) is None
    assert machine_cpu_seconds([0], tmp_path / "missing") is None
