"""A forked child for tests that must act as another user (setuid drops for good) or change
what a process holds (its folder, its environment) without it reaching pytest's process."""
from __future__ import annotations

import json
import os
from typing import Callable


def in_a_child(work: Callable[[dict], None]) -> dict:
    """What `work` put in the dict it is given, run in a forked child that reports through a
    pipe and never returns into pytest; an exception it lets out is reported as
    said["error"], "Type: message", as the test's to judge."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child
        said: dict = {}
        try:
            work(said)
        except BaseException as e:  # noqa: BLE001 - reported to the test
            said["error"] = f"{type(e).__name__}: {e}"
        os.write(w, json.dumps(said).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        said = json.loads(f.read() or "{}")
    os.waitpid(pid, 0)
    return said
