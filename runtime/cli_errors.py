"""How the `sharpen` subcommands report a usage error or a failed job: one line on stderr naming
the command, exit code 2 (argparse's code for bad usage)."""
from __future__ import annotations

import signal
import sys


class SharpenError(Exception):
    """A failure reported as one line, `sharpen CMD: error: MESSAGE`, by the `sharpen` entry
    point; exit_code 2 for a usage error (bad option, missing file), 1 for failed work."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, a job scheduler, `timeout`), raised by the `sharpen` command line where
    SIGTERM has its default action, so that commands clean up and say so as on Ctrl-C."""


def _sigterm(e: BaseException) -> bool:
    # Terminated, or an interruption that names its signal (run_stream's, the trainer's).
    return isinstance(e, Terminated) or getattr(e, "signum", None) == signal.SIGTERM


def interrupt_exit_code(e: BaseException) -> int:
    """The shell's 128 + signal number for an interruption: 143 for SIGTERM, 130 for Ctrl-C."""
    return 143 if _sigterm(e) else 130


def interrupted_message(command: str, e: BaseException, resumable: bool) -> str:
    """The line an interrupted command ends with; `resumable`: its rerun skips what is done."""
    term = " (SIGTERM)" if _sigterm(e) else ""
    again = "; what is done is kept: run the same command to continue" if resumable else ""
    return f"sharpen {command}: interrupted{term}{again}"


def raise_if_interrupted(exc: BaseException) -> None:
    """Raise the Ctrl-C (or SIGTERM) an ImportError stands for. A compiled module built with
    pybind11 (ONNX Runtime, LiteRT) turns any exception raised while it initialises, the
    KeyboardInterrupt of a Ctrl-C too, into ImportError('initialization failed') chained to
    it; an import guard that read that as the package missing told a user who pressed
    Ctrl-C to install it (exit 2). Call it first in such a guard's `except ImportError`.
    Only explicit causes count (pybind11 sets one): `__context__` is also whatever was being
    handled, and a guard that ran while an interruption was handled (the bench writing its
    partial report checks whether TensorRT is installed) re-raised that interruption."""
    seen: set[int] = set()
    cause = exc.__cause__
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            raise cause from None   # the ImportError said nothing of its own
        seen.add(id(cause))
        cause = cause.__cause__


def cli_error(command: str, msg: str) -> int:
    print(f"sharpen {command}: error: {msg}", file=sys.stderr)
    return 2


def one_line(e: BaseException) -> str:
    """An exception's message folded onto one line (the type name when it has none)."""
    return " ".join(line.strip() for line in str(e).strip().splitlines()) or type(e).__name__


# The pip extra each command needs (pyproject.toml); commands not named need `train`.
EXTRA_BY_COMMAND = {"run": "runtime", "export": "export", "bench": "dev", "demo": "dev"}
OWN_PACKAGES = ("distill", "optimize", "runtime", "benchmarks", "sharpen")


def missing_dependency(command: str, exc: ImportError) -> str:
    """What to do when `sharpen COMMAND` cannot import a package. Not installed: which extra
    to install (a device install, the runtime extra, runs `sharpen run` only; the other
    commands need torch and friends). Installed but failing to load (a missing system library
    such as libGL): ImportError's own words, which reinstalling would not fix."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return (f"cannot import {exc.name or 'a dependency'}: {one_line(exc)} (installed but "
                "not loadable here: a missing system library?)")
    extra = EXTRA_BY_COMMAND.get(command, "train")
    top = exc.name.split(".")[0]
    return (f"missing dependency {top!r}: `sharpen {command}` needs the {extra!r} extra: "
            f"pip install 'image-sharpening-kd[{extra}]' (in a clone: pip install -e "
            f"'.[{extra}]', or scripts/setup.sh for everything)")
