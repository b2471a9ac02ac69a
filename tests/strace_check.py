"""Durability of atomic writes, seen in the system calls a write makes (traced by strace in a
child process), not by replacing os functions: the temp file synced before its rename over the
target, and the target's folder synced after it. Where strace cannot run (no strace, ptrace
forbidden), the same order is seen from inside the child: Python's audit events (each open and
rename, with its paths) and the profiler's calls of os.fsync."""
from __future__ import annotations

import json
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


# Run in the child before `code`: prints [event, path...] of each open, rename and fsync call.
_OBSERVER = """
import json, os, sys
seen = []
def audit(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        seen.append(["open", os.path.abspath(os.fsdecode(args[0]))])
    elif event == "os.rename":
        seen.append(["rename", *(os.path.abspath(os.fsdecode(a)) for a in args[:2])])
sys.addaudithook(audit)
syncs = (os.fsync, getattr(os, "fdatasync", os.fsync))
def calls(frame, event, arg):
    if event == "c_call" and any(arg is f for f in syncs):
        seen.append(["fsync"])
sys.setprofile(calls)
try:
    exec(compile(sys.argv.pop(1), "<code>", "exec"))
finally:
    sys.setprofile(None)
    print("OBSERVED " + json.dumps(seen))
"""


def observed_calls(code: str, target: Path) -> list[list[str]]:
    """The opens (absolute paths), renames and fsync calls that `code` (Python, given
    `target` as sys.argv[1]) makes in a child process, in order."""
    run = subprocess.run([sys.executable, "-c", _OBSERVER, code, str(target)],
                         capture_output=True, text=True, timeout=300, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    return json.loads(run.stdout.split("OBSERVED ", 1)[1])


def assert_durable_write_observed(code: str, target: Path) -> None:
    """As assert_durable_write, from inside the child (no strace): after the last open of the
    temp file renamed onto `target` comes an fsync before that rename, and after it an open
    of the folder followed by an fsync."""
    seen = observed_calls(code, target)
    folder, dst = os.path.abspath(target.parent), os.path.abspath(target)
    renamed = [i for i, e in enumerate(seen) if e[0] == "rename" and e[2] == dst]
    assert len(renamed) == 1, seen
    r = renamed[0]
    tmp = seen[r][1]
    assert Path(tmp).parent == Path(folder) and Path(tmp).name.startswith(f".{target.name}."), \
        seen[r]
    opened = max(i for i, e in enumerate(seen[:r]) if e == ["open", tmp])
    assert ["fsync"] in seen[opened + 1:r], seen
    after = seen[r + 1:]
    assert ["open", folder] in after and ["fsync"] in after[after.index(["open", folder]):], seen


def assert_durable_write(code: str, target: Path, trace: Path) -> None:
    """Runs `code` (Python, given `target` as sys.argv[1]) under strace and checks that its one
    rename onto `target` follows an fsync of the temp file (`.NAME.*` beside it) and precedes
    an fsync of the folder. Without a working strace, seen from inside the child instead
    (assert_durable_write_observed)."""
    if not strace_works():
        assert_durable_write_observed(code, target)
        return
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
