"""How the `sharpen` subcommands report a usage error or a failed job: one line on stderr naming
the command, exit code 2 (argparse's code for bad usage)."""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Iterator, Optional

# The signals that stop a command as Ctrl-C does, the one list every handler reads: SIGTERM
# (kill, a job scheduler, `timeout`) and SIGHUP (the terminal closed, the SSH connection
# dropped), which would otherwise kill a job and lose what it had not saved.
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


class SharpenError(Exception):
    """A failure reported as one line, `sharpen CMD: error: MESSAGE`, by the `sharpen` entry
    point; exit_code 2 for a usage error (bad option, missing file), 1 for failed work."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


class Terminated(KeyboardInterrupt):
    """A stop signal (SIGTERM, SIGHUP), raised by the `sharpen` command line where that signal
    has its default action, so that commands clean up and say so as on Ctrl-C."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__()
        self.signum = signum


def stop_signal(e: BaseException) -> int:
    """The stop signal an interruption names (Terminated's, run_stream's, the trainer's);
    0 for Ctrl-C."""
    signum = getattr(e, "signum", None)
    return signum if signum in STOP_SIGNALS else 0


def interrupt_exit_code(e: BaseException) -> int:
    """The shell's 128 + signal number for an interruption: 143 for SIGTERM, 129 for SIGHUP,
    130 for Ctrl-C."""
    return 128 + (stop_signal(e) or signal.SIGINT)


def signals_to_take() -> list[int]:
    """The signals a stop handler installs now: SIGINT and SIGTERM as always; SIGHUP only where
    its action is the default or the `sharpen` command line's handler. Under `nohup` (which
    ignores it) a hang-up must not stop the job, and an app embedding run_stream or the trainer
    that handles SIGHUP itself keeps its handler."""
    def free(signum: int) -> bool:
        old = signal.getsignal(signum)
        return old is signal.SIG_DFL or getattr(old, "sharpen_stop", False)
    hup = getattr(signal, "SIGHUP", None)
    return [s for s in (signal.SIGINT, *STOP_SIGNALS) if s != hup or free(s)]


def drop_gone_outputs(signum: int) -> None:
    """After a hang-up the terminal is gone, and so may be the reader of a pipe the output
    went to: a write there raises (EIO, BrokenPipeError), which would cut short the save or
    the close it lands in, or end the process on its last message. Such a stdout/stderr is
    pointed at /dev/null; a file or a pipe still read keeps what follows."""
    global _hung_up
    if signum != getattr(signal, "SIGHUP", None) or not hasattr(os, "dup2"):
        return
    _hung_up = True
    _drop_gone()


# Whether a SIGHUP came: a quiet_native_stderr window that held fd 2 then puts back a gone
# terminal when it ends, and calls drop_gone_outputs_after_hang_up() to point it elsewhere.
_hung_up = False


def drop_gone_outputs_after_hang_up() -> None:
    """drop_gone_outputs again, where a SIGHUP came: for a descriptor put back since."""
    if _hung_up:
        _drop_gone()


@contextlib.contextmanager
def said_after_hang_up() -> Iterator[None]:
    """Around a last message to stdout/stderr: where a SIGHUP came, a reader gone since the
    handler looked (a `| tee` the hang-up ended with the job, a moment later) is dropped as
    the handler drops one, before the write or, when it went meanwhile, on the write's
    BrokenPipeError / EIO; that failure is not the command's. Elsewhere writes as ever."""
    drop_gone_outputs_after_hang_up()
    try:
        yield
    except OSError as e:
        if not _hung_up or e.errno not in (errno.EPIPE, errno.EIO):
            raise
        _drop_gone()


def _drop_gone() -> None:
    import select
    for fd in (1, 2):
        try:
            poll = select.poll()
            poll.register(fd, select.POLLOUT)
            # A hung-up terminal, and a pipe nobody reads any more, poll as error or hang-up.
            if not any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poll.poll(0)):
                continue
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)
        except (OSError, ValueError, AttributeError):   # closed, or no poll() (Windows)
            continue


# A write refused for want of room: a full disk, a user's quota, a file size limit
# (`ulimit -f`, which tests stand in for a full disk with).
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# What a stopped or failed command whose rerun skips its finished work says of that work:
# the interruption's line and sharpen.cli's for a full disk, in the same words.
KEPT = "what is done is kept"


def interrupted_message(command: str, e: BaseException, resumable: bool) -> str:
    """The line an interrupted command ends with; `resumable`: its rerun skips what is done."""
    signum = stop_signal(e)
    term = f" ({signal.Signals(signum).name})" if signum else ""
    again = f"; {KEPT}: run the same command to continue" if resumable else ""
    return f"sharpen {command}: interrupted{term}{again}"


def raise_if_interrupted(exc: BaseException) -> None:
    """Raise the Ctrl-C (or stop signal) an ImportError stands for. A compiled module built with
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


# pyproject.toml's dependencies, by import name: every install has them, whatever its extras;
# each with its distribution, for the one `pip install` that adds a missing one.
CORE_DISTRIBUTIONS = {"numpy": "numpy", "cv2": "opencv-python-headless", "tqdm": "tqdm"}
# The pip extra each command needs (pyproject.toml); commands not named need `train`.
EXTRA_BY_COMMAND = {"run": "runtime", "export": "export", "bench": "dev", "demo": "dev"}
OWN_PACKAGES = ("distill", "optimize", "runtime", "benchmarks", "sharpen")
# What such a command still does without its extra, said beside the install hint.
WITHOUT_EXTRA = {"models": "`sharpen models FILE.onnx` (.tflite, .engine) needs none of it: "
                           "how an exported model was made, from the export report beside it",
                 "evaluate": "`sharpen evaluate --model FILE.onnx` (.tflite, .engine) needs none "
                             "of it: an exported model's PSNR/SSIM, on pairs or footage",
                 "bench": "`sharpen bench --out DIR --model FILE.onnx` (.tflite, .engine, "
                          "no --weights) needs none of it: the files' latency and, with "
                          "--real-pairs, their PSNR/SSIM to ground truth (the rows scored "
                          "against the teacher are skipped); "
                          "`sharpen run --model FILE --source synthetic:1920x1080 --max-frames 100 "
                          "--out t.mp4 --stats t.json` times an exported model without it "
                          "(the stats file's per-stage latency, the done: line's peak memory), "
                          "and `sharpen evaluate --model FILE --data PAIRS` scores its quality "
                          "(PSNR/SSIM to the sharp images of a blur/+sharp/ folder)"}


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
    if top in CORE_DISTRIBUTIONS:   # an extra would not add it back, and may bring torch
        # The package alone: the checkout with its dependencies would also bring pip's OpenCV
        # and numpy over a Jetson's own (README "On a Jetson" installs it with --no-deps).
        jetson = JETSON_OPENCV if top in ("cv2", "numpy") and JETSON_RELEASE.is_file() else ""
        return (f"missing dependency {top!r}: a core dependency (pyproject.toml's "
                f"dependencies; an install made before it joined them, or with --no-deps as "
                f"on a Jetson, lacks it): pip install {shlex.quote(core_requirement(top))}"
                f"{jetson}")
    without = f"; {WITHOUT_EXTRA[command]}" if command in WITHOUT_EXTRA else ""
    jetson = JETSON_TORCH if top == "torch" and JETSON_RELEASE.is_file() else ""
    return (f"missing dependency {top!r}: `sharpen {command}` needs the {extra!r} extra: "
            f"{install_hint(extra)}{jetson}{without}")


# JetPack's (L4T's) release file: on a Jetson, pip's torch is the wrong one to let an extra fetch.
JETSON_RELEASE = Path("/etc/nv_tegra_release")
JETSON_TORCH = ("; on a Jetson, install NVIDIA's PyTorch wheel for your JetPack first (PyPI's "
                "torch has no build for the Jetson's GPU), which pip then keeps, or run "
                "`SKIP_TORCH=1 scripts/setup.sh` in the checkout once it is installed")
# A venv that does not see JetPack's OpenCV and numpy (made without --system-site-packages):
# pip's OpenCV, which the core requirement names, has no GStreamer for the CSI camera.
JETSON_OPENCV = ("; on a Jetson, rather make the venv with --system-site-packages as README's "
                 "\"On a Jetson\" does: it sees JetPack's OpenCV, built with GStreamer for the "
                 "CSI camera (pip's has none)")


def core_requirement(module: str) -> str:
    """The project's requirement on the core dependency that provides `module` ('tqdm>=4.66'),
    read from the installed project's metadata; the bare distribution where it cannot be."""
    from importlib.metadata import PackageNotFoundError, requires
    dist = CORE_DISTRIBUTIONS[module]
    try:
        reqs = requires("image-sharpening-kd") or []
    except PackageNotFoundError:
        reqs = []
    for req in reqs:
        if ";" not in req and re.match(rf"{re.escape(dist)}\s*[<>=!~(]", req):
            return re.sub(r"[\s()]", "", req)
    return dist


def install_hint(extra: str) -> str:
    """The pip command that adds `extra` to this install (a missing core dependency is named
    alone: core_requirement). The project is installed from a checkout, not from PyPI, where
    `pip install 'image-sharpening-kd[train]'` found no such package (or someone else's): the
    folder pip recorded (PEP 610's direct_url.json) is named, editable where it was, else a
    checkout in general."""
    import json
    from importlib.metadata import PackageNotFoundError, distribution
    from urllib.parse import urlsplit
    from urllib.request import url2pathname
    wanted = f"[{extra}]"
    try:
        info = json.loads(distribution("image-sharpening-kd").read_text("direct_url.json")
                          or "{}")
    except (PackageNotFoundError, ValueError, OSError):
        info = {}
    url = info.get("url", "") if isinstance(info, dict) else ""
    if url.startswith("file:") and isinstance(info.get("dir_info"), dict):
        folder = url2pathname(urlsplit(url).path)
        editable = "-e " if info["dir_info"].get("editable") else ""
        return (f"pip install {editable}{shlex.quote(folder + wanted)} (the checkout "
                "this was installed from; scripts/setup.sh there installs everything)")
    return (f"pip install '.{wanted}' in a checkout of the project (-e for one you edit; "
            "scripts/setup.sh installs everything)")


@contextlib.contextmanager
def stop_signals_held() -> Iterator[None]:
    """Ctrl-C or a stop signal arriving inside it acts at its end instead: around a child's
    start and its recording (`Popen(...)` then `procs.append(...)`), where the interrupt raised
    after the fork, before Popen returns, left a child that no cleanup knew of, running."""
    if threading.current_thread() is not threading.main_thread():
        yield   # Python raises a signal's exception in the main thread only
        return
    got: list[int] = []
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, *STOP_SIGNALS)}
    held = [(s, h) for s, h in old.items() if callable(h) or h == signal.SIG_DFL]
    try:   # from the first handler taken: a stop signal raising before the next left it taken
        for s, _ in held:
            signal.signal(s, lambda signum, frame: got.append(signum))
        yield
    finally:
        _put_back(held)
        for s in dict.fromkeys(got):
            if callable(old[s]):
                old[s](s, None)   # raises KeyboardInterrupt or Terminated here
            else:
                os.kill(os.getpid(), s)   # the default action: ends the process


def _put_back(handlers: list[tuple[int, object]]) -> None:
    """Each handler back, then the first interruption raised meanwhile: a signal whose own
    handler is back raises at once (a second Ctrl-C), which left the others not put back."""
    raised: Optional[BaseException] = None
    while True:
        try:
            for s, h in handlers:
                signal.signal(s, h)
            break
        except BaseException as e:   # noqa: BLE001 - only to finish, then raised again
            raised = raised or e
    if raised is not None:
        raise raised


@contextlib.contextmanager
def stop_signals_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise Terminated while a command runs, as Ctrl-C raises
    KeyboardInterrupt, so that it cleans up and says so."""
    # Only the stop signals that still have their default action (the trainer and `sharpen run`
    # install their own handlers, which replace this one while they run; `nohup` ignores
    # SIGHUP). Python runs the handler between bytecodes, so a long native call (a teacher
    # tile, an engine build) finishes first; schedulers follow SIGTERM with SIGKILL after
    # their grace period anyway.
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    taken = [s for s in STOP_SIGNALS if signal.getsignal(s) is signal.SIG_DFL]
    pid = os.getpid()

    def raise_terminated(signum, frame):
        if os.getpid() != pid:   # a forked worker (pool, loader): die as it would have
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        drop_gone_outputs(signum)
        raise Terminated(signum)
    raise_terminated.sharpen_stop = True   # run_stream and the trainer may take SIGHUP over
    for s in taken:
        signal.signal(s, raise_terminated)
    try:
        yield
    finally:
        for s in taken:   # not one ignored since (by a trainer ending on a lost process)
            if signal.getsignal(s) is not signal.SIG_IGN:
                signal.signal(s, signal.SIG_DFL)
