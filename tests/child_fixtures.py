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


def file_size_limit(limit: int) -> Callable[[], None]:
    """A subprocess's preexec_fn that lets its files grow to `limit` bytes (ulimit -f), a full
    disk's stand-in: a write past it fails with EFBIG as one on a full disk with ENOSPC
    (Python ignores SIGXFSZ, which would kill another program)."""
    def limited() -> None:
        import resource
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return limited


def main_with_file_limit(argv: list[str], limit: int) -> dict:
    """`sharpen ARGV` run by sharpen.cli.main in a forked child under file_size_limit(limit):
    said["rc"], its exit code, and said["err"], its stderr (or said["error"])."""
    import io
    import signal
    from contextlib import redirect_stderr

    def work(said: dict) -> None:
        from sharpen.cli import main
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # as Python's own start does
        file_size_limit(limit)()
        err = io.StringIO()
        with redirect_stderr(err):
            said["rc"] = main(argv)
        said["err"] = err.getvalue()

    return in_a_child(work)
