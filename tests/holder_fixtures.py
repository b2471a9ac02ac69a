"""Another process holding a run folder's lock (or a brief write's) for the tests that check
what a run, grow or slim says while one does."""
from __future__ import annotations

import contextlib
import subprocess
import sys
from typing import Iterator

# Holds sys.argv[1]'s run lock as a live run does.
RUN_LOCK_HOLDER = ("import sys, time; from distill.run_lock import run_lock\n"
                   "with run_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(120)")


@contextlib.contextmanager
def held_elsewhere(script: str, *args: str) -> Iterator[subprocess.Popen]:
    """A Python process running `script` (with `args`), yielded once it printed 'held'; killed
    when the block ends (SIGKILL: no clean-up runs, the kernel drops its locks)."""
    holder = subprocess.Popen([sys.executable, "-c", script, *args],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()
