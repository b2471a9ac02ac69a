"""A 2-process torchrun job for tests, on a port free now and in a session of its own, so a
job that hangs is killed whole and never outlives the test."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    """A port free now, not a fixed one another test run on the machine may hold."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def torchrun(args: list[str], cwd: Path, *, env: dict[str, str] | None = None,
             stderr: int = subprocess.STDOUT) -> Iterator[subprocess.Popen]:
    """`python -m torch.distributed.run --nproc_per_node=2 ... args`, its output as text
    (stderr into stdout unless `stderr` says otherwise), one thread per process unless `env`
    says otherwise; the whole group is killed on leaving if it is still running."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           f"--master_port={free_port()}", *args]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env or dict(os.environ, OMP_NUM_THREADS="1"),
                            stdout=subprocess.PIPE, stderr=stderr, text=True,
                            start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
