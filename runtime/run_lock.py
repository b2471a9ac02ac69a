"""One run per output: one training run per out folder (two resuming from the same last.pt
would each overwrite the other's checkpoints and interleave one metrics log), one `sharpen run`
per --out (`output_lock`: two into one video or image folder each replaced the other's file or
mixed their frames), so the second is refused, naming the first's process. Here in the runtime,
which a device without the training code has; distill.run_lock gives the same names.

The lock is an advisory `flock` on `<out>/.lock` (a `sharpen run` output's: `.NAME.lock`
beside it): the kernel drops it when its process dies, however it dies, so a killed run never
leaves a stale lock behind. A run that ends, normally or by an exception, also removes the
file; a killed one leaves it, unlocked, for the next."""
from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path
from typing import Iterator

from .atomic import LinkRefused as LinkRefused, open_no_follow

LOCK_NAME = ".lock"
# flock's errors on a filesystem without locks (some NFS, SMB and FUSE mounts): the lock only
# keeps concurrent runs apart, so a run there goes on without it (as the bench cache's lock).
NO_LOCKS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS})
# The lock files this process holds, by (device, inode): flock is per open file, so this
# process's own lock would refuse writing_into. Known here, not from the pid in the file: a
# run in another PID namespace (a container's process 1) can have this process's number.
_HELD: set[tuple[int, int]] = set()


class RunLocked(ValueError):
    """Another live process is writing into this out folder (training, a corpus, a checkpoint
    of grow or slim_checkpoint); `holder` is its process id as its lock file says it
    ("unknown" when it says nothing), `doing` what it says it is doing ("training", "writing
    a corpus", "writing g.pt"; None when it says nothing, as the lock of older code)."""

    def __init__(self, message: str, holder: str = "unknown", doing: str | None = None,
                 kind: str = "run"):
        super().__init__(message)
        self.holder, self.doing, self.kind = holder, doing, kind


def _stamp(fd: int, kind: str, doing: str) -> None:
    """The holder's record in its lock file: process id, then whether it is a run or a short
    write, then what it is doing, a line each; a refused process says which it met (a
    training run was named for grow's brief write, and the other way round)."""
    with contextlib.suppress(OSError):   # a file held read-only, another user's (_acquire)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{kind}\n{doing}".encode(), 0)


def _holding(holder: RunLocked) -> str:
    """'another run is training', 'another process is writing g.pt', ...: the holder as its
    lock file describes it ('another run', doing what it does not say, for older code's)."""
    doing = holder.doing or "writing"
    return f"another {'run' if holder.kind == 'run' else 'process'} is {doing}"


@contextlib.contextmanager
def run_lock(out: Path, enabled: bool = True, doing: str = "training",
             flag: str = "out=", name: str = LOCK_NAME) -> Iterator[None]:
    """Hold the out folder's lock for the block. A folder this call had to create is removed
    again if the run left nothing in it (a run that could not start leaves no folder).
    `doing` (written into the lock file, for another's refusal to name) and `flag` (this
    one's refusal) word it for other commands (`sharpen corpus`: "writing a corpus",
    "--out"). `name`: the lock file's, for a command whose files a training run in the same
    folder never touches (`export`, `bench`), so that only runs of that command exclude
    each other."""
    try:
        import fcntl
    except ImportError:
        fcntl = None
    if not enabled:
        yield
        return
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out={out} is a file; a run's out= is a folder (its checkpoints and "
                         "log go there)")
    from .output_paths import file_in_the_way
    if problem := file_in_the_way(out, f"out={out}"):
        raise ValueError(problem)
    if fcntl is None:
        # Not on POSIX (Windows): unlocked rather than not at all, but with the checks above,
        # without which an out= naming a file ended in the trainer's FileExistsError traceback.
        yield
        return
    created = not out.exists()
    what = f"{flag}{out}" if flag.endswith("=") else f"{flag} {out}"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:   # another user's folder, a read-only mount: was a traceback
        from .output_paths import cannot_write
        above = next((p for p in out.parents if os.path.isdir(p)), out.parent)
        raise ValueError(cannot_write(what, above, e)) from None
    path = out / name
    try:
        fd = _acquire(path)
    except RunLocked as e:
        wait = ("it is done in moments: try again" if e.kind == "write"
                else "wait for it to finish or stop it")
        raise RunLocked(f"{_holding(e)} into {out} (process {e.holder}); {wait}, or give this "
                        f"run another {flag}", e.holder, e.doing, e.kind) from None
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            from .output_paths import cannot_write
            raise ValueError(cannot_write(what, out, e)) from None
        if e.errno not in NO_LOCKS:
            raise
        # An export or bench (and training) there ended in this traceback, where they ran
        # before they took a lock. The file, which locks nothing, is not left behind either.
        from .warn import warn
        with contextlib.suppress(OSError):
            path.unlink()
        warn(f"cannot lock {path} ({e.strerror or e}): {doing} unlocked; no other run may be "
             f"{doing} into {out} at the same time")
        try:
            yield
        finally:
            if created:
                with contextlib.suppress(OSError):
                    out.rmdir()
        return
    try:
        with _held(fd, path, "run", doing):
            yield
    finally:
        if created:   # removed only when empty: a run that could not start leaves no folder
            with contextlib.suppress(OSError):
                out.rmdir()


def _acquire(path: Path) -> int:
    """An open descriptor of `path`, locked by this process; RunLocked, naming the holder
    and what it is doing, when another holds it (each caller words the refusal)."""
    while True:
        try:
            fd = open_no_follow(path, os.O_RDWR | os.O_CREAT)
        except PermissionError as denied:
            # Another user's, left by a run of theirs that was killed in a shared folder: it
            # refused every later run in a traceback. Locked through a read-only descriptor
            # (flock needs none other), it shows whether that run is alive.
            try:
                fd = open_no_follow(path, os.O_RDONLY)
            except FileNotFoundError:   # none there: the folder itself takes no file
                raise denied from None
            _lock_or_refuse(fd, path)
            try:
                path.unlink()   # that run has ended: its file goes, and this run makes its own
            except OSError:
                # A folder whose files only their owners remove (the sticky bit): held as it
                # is, its holder's record not this run's (_stamp).
                if _still_there(fd, path):
                    return fd
            os.close(fd)
            continue
        # Readable by every user whatever the umask (systemd's UMask=0077 made it owner-only):
        # another user's run opens it read-only to see whether it is held (above), and one
        # that could not open it ran unlocked beside this one. It holds a process id.
        with contextlib.suppress(OSError):   # another user's, writable by this one: theirs
            os.fchmod(fd, os.fstat(fd).st_mode & 0o777 | 0o444)
        _lock_or_refuse(fd, path)
        # Locked after the run that held it ended and removed it: that file is no longer
        # <out>/.lock, and a third run would lock the new one too. Try again on the new one.
        if _still_there(fd, path):
            return fd
        os.close(fd)


def _lock_or_refuse(fd: int, path: Path) -> None:
    """`fd` (of `path`) locked by this process, or closed and RunLocked naming its holder."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        said = os.pread(fd, 4096, 0).decode(errors="replace").strip().split("\n", 2)
        os.close(fd)
        holder = said[0].strip() or "unknown"
        # a lock of older code holds its process id alone
        kind, doing = (said[1], said[2]) if len(said) == 3 else ("run", None)
        raise RunLocked(f"process {holder} holds {path}", holder, doing, kind) from None
    except BaseException:
        os.close(fd)
        raise


def _still_there(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def writing_into(folder: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold `folder`'s run lock while `what` (a checkpoint written outside training: `sharpen
    grow`, slim_checkpoint) is written into it. A live run there refuses it, naming its
    process: it could overwrite the file, or remove its temp file as a killed save's when it
    starts (train's clean-up); and a run started meanwhile is refused until the write is done.
    A missing folder has no run: the write makes it. The lock is per open file, so this
    process's own lock (a run's out= written from inside it) would refuse it: not taken again."""
    try:
        import fcntl
    except ImportError:      # not on POSIX: unlocked, as run_lock
        fcntl = None
    folder = Path(folder)
    path = folder / LOCK_NAME
    fd = None
    if fcntl is not None and folder.is_dir() and not _held_by_this_process(path):
        try:
            fd = _acquire(path)
        except RunLocked as e:
            named = folder if folder.parts else Path.cwd()   # "." for a bare file name
            path = named / LOCK_NAME
            if e.kind == "write":
                raise RunLocked(f"{_holding(e)} into {named} (process {e.holder}, which "
                                f"holds {path}): it is done in moments: try again, or write "
                                f"{Path(what).name} to another folder", e.holder, e.doing,
                                e.kind) from None
            raise RunLocked(f"{named} is the folder of a live run (process {e.holder}, which "
                            f"holds {path}): writing {what} there could clash with its "
                            "checkpoints; wait for it to finish or stop it, or write "
                            f"{Path(what).name} to another folder", e.holder, e.doing,
                            e.kind) from None
        except OSError:      # a folder this user cannot write to: the write says so itself
            fd = None
    if fd is None:
        yield
        return
    with _held(fd, path, "write", f"writing {Path(what).name}"):
        yield


@contextlib.contextmanager
def _held(fd: int, path: Path, kind: str, doing: str) -> Iterator[None]:
    """Hold the lock `fd` (of `path`, taken by _acquire) for the block, stamped with `kind` and
    `doing` for a refused run's message, and let it go."""
    import fcntl
    held = _hold(fd)
    try:
        _stamp(fd, kind, doing)
        yield
    finally:
        # Unlinked while still held: a run that opened the file meanwhile and locks it next
        # sees that it is gone and locks a new one (_acquire), never two runs at once.
        with contextlib.suppress(OSError):
            path.unlink()
        _HELD.discard(held)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _hold(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    _HELD.add((st.st_dev, st.st_ino))
    return st.st_dev, st.st_ino


def _held_by_this_process(path: Path) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) in _HELD


@contextlib.contextmanager
def output_lock(output: str | os.PathLike, named: str, flag: str = "output",
                doing: str = "sharpening", replaced: bool = False) -> Iterator[None]:
    """Hold the lock of a `sharpen run` output (a video or image file, an image folder) for
    the block: `.NAME.lock` beside it, where NAME is the output's own name once links are
    followed (two names of one file are one output); inside a folder output whose parent takes
    no file (a service's state folder in /var/lib), `.sharpen-run.lock`. A live run holding
    it refuses this one, naming its process (`named`, `flag`: the output as the message
    names it, `--out x.mp4`, `--out`); a killed run's file holds no lock (flock ends with its
    process) and is taken over. `doing`: what the holder's lock file says it does, for a
    refused run's message (a --stats file's holder is "writing its stats"). `replaced`: the
    file is written by renaming a new one over its name (a --stats file), which replaces a
    link there rather than writing through it: the name is locked, in its folder's real path.
    Unlocked where no lock can be had (no flock: Windows, some network mounts)."""
    try:
        import fcntl  # noqa: F401 - whether this system has flock at all (Windows has not)
    except ImportError:
        yield
        return
    real = (Path(os.path.realpath(Path(output).parent)) / Path(output).name if replaced
            else Path(os.path.realpath(output)))
    made = None   # the first folder this call made: removed again if the run leaves it empty
    if real.name and not real.parent.exists():
        made = next((p for p in [real.parent, *real.parent.parents] if p.parent.exists()), None)
        with contextlib.suppress(OSError):   # the sink says why, by name, if it cannot
            real.parent.mkdir(parents=True, exist_ok=True)
    fd = path = None
    for path in _output_lock_paths(real):
        try:
            fd = _acquire(path)
            break
        except RunLocked as e:
            _remove_empty(real.parent, made)
            raise RunLocked(f"{named}: {_holding(e)} into it (process {e.holder}, which "
                            f"holds {path}); wait for it to finish or stop it, or give this "
                            f"run another {flag}", e.holder, e.doing, e.kind) from None
        except OSError as e:
            if e.errno in NO_LOCKS:
                from .warn import warn
                with contextlib.suppress(OSError):
                    path.unlink()
                warn(f"cannot lock {path} ({e.strerror or e}): no other run may write into "
                     f"{named} at the same time")
                break
            # A folder this user cannot write a file into: the next place, else unlocked
            # (the sink says so, by name, if it cannot write the output either).
    if fd is None:
        try:
            yield
        finally:
            _remove_empty(real.parent, made)
        return
    try:
        with _held(fd, path, "run", doing):
            yield
    finally:
        _remove_empty(real.parent, made)


def _output_lock_paths(real: Path) -> list[Path]:
    """Where output_lock may hold the lock of the output `real` (its links followed), in the
    order it tries them: a folder that is a mount point (a container's volume, `-v
    ./frames:/out ... --out /out`) inside it first, as its parent is each container's own,
    where another container's run into the same volume never looked."""
    beside = [real.parent / f".{real.name}.lock"] if real.name else []
    inside = [real / ".sharpen-run.lock"] if real.is_dir() else []
    return inside + beside if inside and mount_point(real) else beside + inside


def mount_point(folder: Path) -> bool:
    """Whether `folder` is a mount point: one of another file system (os.path.ismount), or a
    bind mount of a folder on its parent's, which only the mount table tells."""
    if os.path.ismount(folder):
        return True
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            # Field 5 is where it is mounted, with space, tab, newline and backslash octal
            # escaped (\040).
            points = {re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)),
                             line.split(" ")[4]) for line in f if line.count(" ") >= 4}
    except OSError:   # not Linux
        return False
    return str(folder) in points


def holds_output(output: str | os.PathLike) -> bool:
    """Whether this process holds `output`'s lock (output_lock): then no other live run
    writes into it, whatever process number its hidden files name (a container's runs are
    all process 1, the one a kill cut short too)."""
    return any(_held_by_this_process(p)
               for p in _output_lock_paths(Path(os.path.realpath(output))))


def output_in_use(output: str | os.PathLike) -> bool:
    """Whether a live run holds `output`'s lock (output_lock). A killed run's lock file, let go
    of by the kernel when its process died, is no run: a name skipped for it was never taken
    again, and what the killed run had recorded under it never seen to."""
    try:
        import fcntl
    except ImportError:   # output_lock takes no lock there, nor leaves a file
        return False
    for path in _output_lock_paths(Path(os.path.realpath(output))):
        try:
            # Not through a link nor into a FIFO, whose open waited for a writer: the run
            # hung before its first frame.
            fd = open_no_follow(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        except (OSError, LinkRefused):
            return True   # cannot tell: taken for a live run's, as a name not to write
        try:
            # Shared, and let go of at once: a live run's exclusive lock refuses it.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            # No locks on this filesystem: output_lock leaves no file there, this one is old.
            if e.errno not in NO_LOCKS:
                return True
        finally:
            os.close(fd)
    return False


def _remove_empty(folder: Path, top: Path | None) -> None:
    """Remove `folder` and its parents up to `top` (the first this run made) while empty."""
    if top is None:
        return
    for p in [folder, *folder.parents]:
        try:
            p.rmdir()
        except OSError:
            return
        if p == top:
            return
