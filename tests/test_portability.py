"""Windows and macOS code paths, exercised here on Linux: each POSIX-only call has a branch for
the other systems, run directly (a platform argument, sys.platform set for the test, or a
module such as fcntl or resource made unimportable in a fresh interpreter)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from runtime.atomic import pid_alive, remove_killed_writes


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def test_windows_liveness_probe_never_signals_the_process(monkeypatch, tmp_path):
    """On Windows os.kill(pid, 0) is TerminateProcess: asked whether the run that owns a temp
    file still writes it, remove_killed_writes killed that run (or any process that had its pid
    since). There the process is queried instead; here, with no Windows API to query, it counts
    as alive and its file stays."""
    child = _sleeper()
    try:
        sent = []
        monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
        monkeypatch.setattr(sys, "platform", "win32")
        live = tmp_path / f".out.png.{child.pid}.abcd1234.png"
        live.write_bytes(b"half an image")
        assert remove_killed_writes(tmp_path) == []
        assert pid_alive(child.pid) is True
        monkeypatch.undo()
        assert sent == [], "a signal was sent to ask whether a process is alive"
        assert live.exists() and child.poll() is None
    finally:
        child.kill()
        child.wait()


def test_posix_liveness_probe_tells_a_dead_writer_from_a_live_one(tmp_path):
    child = _sleeper()
    try:
        assert pid_alive(child.pid, platform="linux") is True
    finally:
        child.kill()
        child.wait()
    assert pid_alive(child.pid, platform="darwin") is False
    left = tmp_path / f".out.png.{child.pid}.abcd1234.png"
    left.write_bytes(b"half an image")
    assert remove_killed_writes(tmp_path) == [left] and not left.exists()


def _fresh_python(code: str, blocked: tuple[str, ...]) -> subprocess.CompletedProcess:
    """`code` run in a new interpreter where the modules `blocked` cannot be imported, as on a
    system that has none of them (fcntl and resource on Windows)."""
    prelude = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in blocked)
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_bench_memory_figures_on_a_system_without_the_resource_module():
    """Windows has no `resource` module: `sharpen bench` ended in ModuleNotFoundError after
    exporting, where it noted its peak memory. The report now leaves out what the system cannot
    say, and on Windows asks it for the peak working set."""
    from benchmarks.machine import peak_rss_mb

    assert peak_rss_mb() > 0                       # Linux: from resource
    assert peak_rss_mb(system="win32") is None     # no Windows API to ask here
    done = _fresh_python(
        "from benchmarks.machine import peak_rss_mb\n"
        "from benchmarks.report import _Progress\n"
        "assert peak_rss_mb() is None\n"
        "progress = _Progress()\n"
        "progress.note_peak('quality')\n"
        "print(progress.peak_mb)\n", blocked=("resource",))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{}"


def _image(path) -> None:
    import numpy as np

    from distill.images import write_image
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, np.full((40, 40, 3), 0.5, np.float32))


def _distinct_ignoring_case(names) -> bool:
    names = [str(n) for n in names]
    return len({n.casefold() for n in names}) == len(names)


def test_label_names_differ_on_a_case_insensitive_file_system(tmp_path):
    """A.png and a.jpg both live in one folder on macOS and Windows, whose file systems take
    labels/A.png and labels/a.png for one file: one image was labelled with the other's
    label, and trained on it. They keep their extensions, as a.png and a.jpg do."""
    from distill.data.sources import resolve_source

    for name in ("A.png", "a.jpg", "b.png"):
        _image(tmp_path / "shots" / name)
    names = sorted(s.name for s in resolve_source(tmp_path / "shots").samples)
    assert names == ["A.png", "a.jpg", "b"]
    assert _distinct_ignoring_case(names)


def test_corpus_and_teacher_output_names_differ_on_a_case_insensitive_file_system(tmp_path):
    """The corpus's pair names and `sharpen teacher`'s output names: A.jpg's and a.png's were
    A.png and a.png, one file where the photos are on a Mac."""
    from distill.cli import _unique_png_names
    from distill.data.corpus import _names

    files = [tmp_path / "A.jpg", tmp_path / "a.png", tmp_path / "Trip_x" / "1.png",
             tmp_path / "trip" / "X_1.png"]
    pairs = _names(tmp_path, files)
    assert _distinct_ignoring_case(pairs.values()), pairs
    out = _unique_png_names([(f, f.relative_to(tmp_path)) for f in files[:2]]
                            + [(tmp_path / "B" / "c.png", Path("c.png")),
                               (tmp_path / "b" / "C.png", Path("C.png"))])
    assert _distinct_ignoring_case(rel for _, rel in out), out
