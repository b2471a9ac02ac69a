"""Child processes that end with the run that started them: an ffmpeg copying a closed video
runs in a session of its own (a terminal's Ctrl-C must not stop it), so a run killed by SIGKILL
or the OOM killer left it writing on, an orphan, into a file no one would rename. On Linux the
kernel kills it when the run dies (PR_SET_PDEATHSIG); elsewhere the next run removes what it
left (`VideoFileSink`'s copies)."""
from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Any, Callable, Optional

from .cli_errors import STOP_SIGNALS

PR_SET_PDEATHSIG = 1


def _load_prctl() -> Optional[Callable[..., int]]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):   # a libc without it (or none to load)
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                      ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


# Looked up here, once: the child between fork and exec calls it and nothing more.
_PRCTL = _load_prctl()


def dies_with_run() -> Optional[Callable[[], None]]:
    """A `preexec_fn` for subprocess that has the child killed when this process dies, and
    deaf to the stop signals (None where the system has no such thing: no preexec_fn, which
    Python's docs warn of in a threaded process, where it is not needed). Called in the
    thread that waits for the child: the kernel ties it to the thread that started it."""
    if _PRCTL is None:
        return None
    parent, prctl = os.getpid(), _PRCTL
    # `systemctl stop` sends SIGTERM to every process of the unit (KillMode=control-group),
    # these children too: the encoder ended at once (exit 255) and the stopping run threw the
    # recording away. Blocked, the signals wait unseen (ffmpeg unblocks none), and the run,
    # which they stop, ends its children as a stop should: the encode closed after the last
    # frame. A SIGKILL (TimeoutStopSec=, the OOM killer) still ends them.
    deaf = (signal.SIGINT, *STOP_SIGNALS)

    def tie() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, deaf)
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:   # the run died before the tie was made
            os._exit(1)

    return tie


# Windows' CREATE_NEW_PROCESS_GROUP (subprocess names it only there).
_NEW_PROCESS_GROUP = 0x200


def own_session() -> dict[str, Any]:
    """subprocess keywords that keep a terminal's Ctrl-C from a child (an ffmpeg encoding or
    copying a video: the run takes a Ctrl-C as "finish what you are doing" and ends its
    children itself): a session of its own, tied to the run (`dies_with_run`), where there are
    sessions; on Windows, which ignores start_new_session, a process group of its own, for
    which the console's Ctrl-C is turned off. Called where `dies_with_run` would be."""
    if sys.platform == "win32":
        return {"creationflags": _NEW_PROCESS_GROUP}
    return {"start_new_session": True, "preexec_fn": dies_with_run()}
