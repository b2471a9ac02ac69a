"""Durability of atomic writes, seen in the system calls a write makes (traced by strace in a
child process), not by replacing os functions: the temp file synced before its rename over the
target, and the target's folder synced after it."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path


def strace_works() -> bool:
    if not shutil.which("strace"):
        return False
    try:   # ptrace may be forbidden (containers)
        return subprocess.run(["strace", "-o", os.devnull, "true"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def assert_durable_write(code: str, target: Path, trace: Path) -> None:
    """Runs `code` (Python, given `target` as sys.argv[1]) under strace and checks that its one
    rename onto `target` follows an fsync of the temp file (`.NAME.*` beside it) and precedes
    an fsync of the folder."""
    folder = target.parent
    subprocess.run(["strace", "-f", "-y", "-o", str(trace), "-e",
                    "trace=fsync,fdatasync,rename,renameat,renameat2", sys.executable, "-c",
                    code, str(target)], check=True, capture_output=True, timeout=300,
                   env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    calls = [ln for ln in trace.read_text().splitlines() if str(folder) in ln]
    renamed = [i for i, ln in enumerate(calls) if "rename" in ln and f'{target.name}"' in ln]
    assert len(renamed) == 1, calls
    r = renamed[0]
    temp = rf"/\.{re.escape(target.name)}\.[^>]*"
    assert any(re.search(rf"f(data)?sync\(\d+<[^>]*{temp}>\)", ln) for ln in calls[:r]), calls
    assert any(re.search(rf"f(data)?sync\(\d+<{re.escape(str(folder))}>\)", ln)
               for ln in calls[r + 1:]), calls
