"""Atomic file writes: a temp file in the destination folder, fsync, then rename over the target,
so a reader (or a resumed run after a crash) never sees half a file; then the folder is synced,
or after a power cut the rename could be lost, or kept without the data."""
from __future__ import annotations

import errno
import glob
import json
import os
import re
import stat
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, Optional


def new_file_mode() -> int:
    """The mode open() gives a new file here, 0o666 less the umask: what the temp files that
    mkstemp makes owner-only get before their final name. A fixed 0o644 ignored the umask: a
    camera service's `UMask=0077` still left every recording readable by all users, and a
    shared folder's 0002 took away the group's write. Read from /proc (Linux), as os.umask
    sets it while it reads it, which another thread making a file meanwhile would get."""
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _mode_for(path: Path) -> int:
    """The mode a file written over `path` gets: the file's own where it is there (a team's
    shared manifest, group-writable, rewritten by a member under umask 077 became that
    member's alone, as `cp` onto a file or an editor's save would not), else a new file's."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        return new_file_mode()


class LinkRefused(ValueError):
    """A name sharpen writes in place (a lock file, a log it appends to) that is a symbolic
    link, a FIFO or anything else but a file, which none of its own is: refused, not written
    through nor waited on (open_no_follow)."""


# Files written in place, not renamed over (lock files, appended logs and journals), are
# opened without following a link: one planted in a shared folder (`.out.lock ->
# ~/.ssh/id_ed25519`) had a run make its target readable by every user and truncate it to a
# process id, and a shared runs folder's `train.log -> ~/.bashrc` got log lines appended.
# Only the name itself: a link among the folders above it is followed, as a folder the user
# linked to another disk must be.
_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)
# Opened without waiting: a FIFO planted under the name held the open (of a log, or of
# another user's lock file read-only) until someone read it, the run hung without a word.
_NO_WAIT = getattr(os, "O_NONBLOCK", 0)
# A folder is left to the OS's own error (IsADirectoryError), an OSError as callers expect
# of a name they cannot write (the evaluate journal's warning, and the run goes on).
_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
          (stat.S_ISBLK, "a device"))


def _odd(path: str | os.PathLike, st: Optional[os.stat_result] = None) -> str:
    """Why `path` (lstat, else `st` of what was opened) is refused, a link or no file; ''
    where it is a file or nothing is there."""
    try:
        st = os.lstat(path) if st is None else st
    except OSError:
        return ""
    where = f"anyone who can write into {Path(path).parent} can have planted it"
    if stat.S_ISLNK(st.st_mode):
        try:
            target = f" (to {os.readlink(path)})"
        except OSError:
            target = ""
        return (f"{path} is a symbolic link{target}, which no file sharpen writes there is: "
                f"not written through; remove it ({where})")
    kind = next((k for test, k in _KINDS if test(st.st_mode)), None)
    return (f"{path} is {kind}, not the file sharpen writes there: not opened; remove it "
            f"({where})") if kind else ""


def open_no_follow(path: str | os.PathLike, flags: int, mode: int = 0o644) -> int:
    """os.open of `path` (made with `mode` under the umask where O_CREAT is in `flags`), never
    through a link nor into a FIFO, a device or a socket: LinkRefused, naming it (and where a
    link points). Where the system has no O_NOFOLLOW (Windows), the name is looked at before
    and after the open instead, which a link swapped in between can slip past."""
    if not _NO_FOLLOW and (why := _odd(path)):
        raise LinkRefused(why)
    try:
        fd = os.open(path, flags | _NO_FOLLOW | _NO_WAIT, mode)
    except OSError:
        # A link is ELOOP on Linux and macOS, EMLINK on FreeBSD, EFTYPE on NetBSD; a FIFO
        # opened to write with no reader is ENXIO: each said as what is there.
        if why := _odd(path):
            raise LinkRefused(why) from None
        raise
    try:
        opened = os.fstat(fd)
        if stat.S_ISDIR(opened.st_mode):   # opened read-only
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if why := _odd(path, opened):
            raise LinkRefused(why)
        if not _NO_FOLLOW:
            after = os.lstat(path)
            if stat.S_ISLNK(after.st_mode) or not os.path.samestat(after, os.fstat(fd)):
                raise LinkRefused(_odd(path) or f"{path} was replaced while it was opened: "
                                  "not written through; look at what is there")
        if _NO_WAIT:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def no_follow(path: str, flags: int) -> int:
    """An `opener` for open() that never writes through a link (open_no_follow): a log or
    journal appended to in place."""
    return open_no_follow(path, flags, 0o666)


def _mode_for(path: Path) -> int:
    """The mode a file written over `path` gets: a new file's (new_file_mode), and what the
    regular file there gave to read and to write, but not write by every user (a team's shared
    manifest, group-writable, rewritten by a member under umask 077 became that member's
    alone). Not the old mode alone: a member's 0600 manifest, rewritten by another, stayed
    0600, now the other's, and the first locked out; a 0666 one (umask 000, a FAT stick's
    0777) stayed writable by anyone. Never a link's target's: the rename replaces the link."""
    new = new_file_mode()
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return new
    return new | (st.st_mode & 0o664) if stat.S_ISREG(st.st_mode) else new


# Windows refuses to replace a file another process has open without sharing its deletion (a
# monitor polling the --stats file, a virus scanner or thumbnailer reading the last one):
# ERROR_ACCESS_DENIED or ERROR_SHARING_VIOLATION. Such a reader holds it for milliseconds, so
# the replace is tried again for about a second: one such read failed the run's final stats
# write, and so the whole run.
_HELD_BY_A_READER = (5, 32)
REPLACE_RETRY_S = 1.0


def replace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """os.replace, retried while Windows says another process holds `dst` (only Windows sets
    `winerror`: elsewhere a PermissionError is the folder's and raised at once)."""
    deadline = time.monotonic() + REPLACE_RETRY_S
    while True:
        try:
            os.replace(src, dst)
            return
        except PermissionError as e:
            if getattr(e, "winerror", None) not in _HELD_BY_A_READER \
                    or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yields a temp path beside `path` to write; on success it becomes `path` (the mode of the
    file it replaces, else the mode a new file gets under the umask, new_file_mode: mkstemp
    makes files owner-only), on error it is removed and `path` is left as it was. `suffix`
    matters to writers that pick the format by extension (OpenCV). The temp name,
    .NAME.PID.XXXXXXXX+suffix, holds the writer's pid: what a SIGKILL left is told from a
    live write of another run by it (`remove_killed_writes`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=suffix,
                               dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _mode_for(path))
        replace(tmp, path)
    except OSError as e:
        if e.errno is None or e.filename not in (None, tmp, str(tmp)):
            raise
        # A write's own error (a full disk, a quota, a file size limit) names no file, or
        # this hidden temp name: every command said "[Errno 28] No space left on device"
        # without where. The file being written is named instead.
        raise OSError(e.errno, e.strerror, str(path)) from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def pid_alive(pid: int, platform: str | None = None) -> bool:
    """Whether process `pid` still runs here (`platform`: sys.platform's spelling, default
    this one's). Where it cannot say, True: the caller then leaves that process's file alone."""
    if not 0 < pid < 2**31:
        return True   # no process has it: not a name this package's writers give a file
    if (platform or sys.platform) == "win32":
        # Not os.kill(pid, 0): on Windows that is TerminateProcess, which killed the live run
        # (or whatever process had the pid since) it was asked about.
        return _windows_pid_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True   # another user's, or a system that cannot say: leave its file alone
    return True


_PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
_ERROR_INVALID_PARAMETER = 87   # OpenProcess's answer for a pid no process has
_STILL_ACTIVE = 259


def _windows_pid_alive(pid: int) -> bool:
    """pid_alive on Windows: the process opened for a query of its exit code, which kills
    nothing. True where the Windows API is not there to ask (another system)."""
    try:
        import ctypes
        from ctypes import wintypes
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    except (ImportError, AttributeError, OSError):
        return True
    kernel32.OpenProcess.restype = wintypes.HANDLE
    kernel32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
    kernel32.GetExitCodeProcess.argtypes = (wintypes.HANDLE, ctypes.POINTER(wintypes.DWORD))
    kernel32.CloseHandle.argtypes = (wintypes.HANDLE,)
    handle = kernel32.OpenProcess(_PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    if not handle:
        # Access denied: another user's (a service's), which runs.
        return ctypes.get_last_error() != _ERROR_INVALID_PARAMETER
    try:
        code = wintypes.DWORD()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == _STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


# .NAME.PID.XXXXXXXX.EXT: mkstemp's 8 of [a-z0-9_], EXT the name's own or .tmp.
_KILLED_WRITE = re.compile(r"^\.(.+)\.(\d+)\.[a-z0-9_]{8}(\.[A-Za-z0-9]+)$")


def remove_killed_writes(folder: str | os.PathLike, name: str | None = None,
                         ours_too: bool = False) -> list[Path]:
    """Remove the temp files `atomic_path` left in `folder` when its writer was killed mid-write
    (SIGKILL, a power cut), each up to an output's size, which no run reads; those of a process
    that still runs (another run's write in progress) stay. `name`: only those of the file so
    named (a folder that is not this run's own). `ours_too`: those under this process's number
    are a killed run's as well (the caller holds the folder's lock and writes nothing there
    yet: a container's runs are all process 1, the killed one too). Returns those removed."""
    removed = []
    for p in Path(folder).glob(f".{glob.escape(name)}.*" if name else ".*.*"):
        m = _KILLED_WRITE.match(p.name)
        # The extension as atomic_path's callers give it: a user's .backup.2023.holidays.png
        # is not one.
        if (not m or m.group(3) not in (".tmp", Path(m.group(1)).suffix)
                or name and m.group(1) != name):
            continue
        pid = int(m.group(2))
        if (ours_too and pid == os.getpid()) or (pid != os.getpid() and not pid_alive(pid)):
            try:
                p.unlink()
            except OSError:
                continue   # gone already, or not ours to remove
            removed.append(p)
    return removed


@contextmanager
def scratch_folder(folder: str | os.PathLike, name: str) -> Iterator[Path]:
    """A temp folder in `folder` (`.NAME-tmp.PID.XXXXXXXX`), which is also this process's
    temp folder (`tempfile.gettempdir()`) while it is there, so that what libraries write for
    the job (TensorFlow's SavedModel, ONNX Runtime's calibration models) goes in it too. In
    the system temp folder a SIGKILL left them, one set a kill, and no later run removed them;
    here each call first removes those of `name` whose process is gone (or is this one: a
    container's runs are all process 1: the caller holds `folder`'s lock). Removed (what
    cannot be, by the next call), and the temp folder restored, on exit. The temp folder is
    the whole process's: another thread's temp files made meanwhile go in it too, and are
    removed with it."""
    import shutil

    prefix = f".{name}-tmp."
    for old in Path(folder).glob(f"{glob.escape(prefix)}*"):
        pid = old.name[len(prefix):].split(".")[0]
        if old.is_dir() and pid.isdigit() and (int(pid) == os.getpid()
                                               or not pid_alive(int(pid))):
            shutil.rmtree(old, ignore_errors=True)
    # Absolute: a relative --out (export's default, `export`) would move with a chdir.
    tmp = os.path.abspath(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}.", dir=folder))
    with _scratch_lock:
        if not _scratch_open:
            _scratch_was[0] = tempfile.tempdir
        _scratch_open.append(tmp)
        tempfile.tempdir = tmp
    try:
        yield Path(tmp)
    finally:
        # Not the temp folder this call found: another thread's export, begun after this one
        # and still running, would be left with this removed folder as its own.
        with _scratch_lock:
            _scratch_open.remove(tmp)
            tempfile.tempdir = _scratch_open[-1] if _scratch_open else _scratch_was[0]
        # A file it cannot remove (on NFS, the .nfsXXXX of one still open) leaves the folder,
        # for the next run to remove, rather than fail a job that has done its work; not
        # TemporaryDirectory's ignore_cleanup_errors, which Python 3.11 does not honour there.
        shutil.rmtree(tmp, ignore_errors=True)


# The process's scratch folders open now, the newest its temp folder, and the temp folder
# before the first: tempfile.tempdir is one for all threads.
_scratch_lock = threading.Lock()
_scratch_open: list[str] = []
_scratch_was: list[str | None] = [None]


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file to write that becomes `path` durably: synced before the rename, its folder
    after it. Every durable write goes through here (distill's checkpoints too), so none of
    them forgets one of the two syncs."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        yield f
        f.flush()
        os.fsync(f.fileno())
    sync_folder(Path(path).parent)


def sync_folder(folder: str | os.PathLike) -> None:
    """A rename into `folder` made durable. Windows cannot open a folder to sync it, and some
    filesystems refuse to: the file's own data is synced already."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sync_files(paths: Iterable[str | os.PathLike]) -> None:
    """Files already renamed into place made durable together: each file's data, then each
    folder they were renamed into, once. For a writer of many files (an image folder output)
    that syncs at its end, not per file: the syncs then share the filesystem's commits (200
    small images: 9 ms at the end against 0.3 ms each as they came, ext4 here). A file gone
    since (removed by someone else) has nothing to sync."""
    folders: dict[Path, None] = {}
    for path in paths:
        try:
            with open(path, "r+b") as f:   # a writable handle: Windows' fsync needs one
                os.fsync(f.fileno())
        except FileNotFoundError:
            continue
        folders[Path(path).parent] = None
    for folder in folders:
        sync_folder(folder)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_file(path) as f:
        f.write(data)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    text = json.dumps(obj, indent=indent, default=str) + "\n"
    return atomic_write_bytes(path, text.encode())
