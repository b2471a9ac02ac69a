"""The user cache folder the project writes to outside any output folder (built datasets,
benchmark artifacts, TensorRT engines): $XDG_CACHE_HOME or ~/.cache, then sharpen/<name>; and
the lock that keeps processes sharing one of its folders from writing it at once."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Callable, Iterator, Optional


def cache_dir(name: str) -> Path:
    """OSError naming XDG_CACHE_HOME where there is no home to find it in: a container's user
    (`docker run --user 1000`) without HOME or an entry in /etc/passwd, where Path.home()'s
    RuntimeError "Could not determine home directory." named neither the cache nor the fix."""
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = Path.home() / ".cache"
        except RuntimeError:
            user = f"user id {os.getuid()}" if hasattr(os, "getuid") else "this user"
            raise OSError(f"no folder for sharpen's {name} cache: HOME is not set and {user} "
                          "has no home directory in the password database; set XDG_CACHE_HOME "
                          "to a folder that can be written") from None
    return Path(base) / "sharpen" / name


@contextlib.contextmanager
def cache_lock(folder: Path, say: Callable[[str], None], doing: str) -> Iterator[None]:
    """Held while a process writes a cache folder that others may read or write at the same
    time: a bench run's student artifacts and teacher outputs, or ONNX Runtime's TensorRT
    engine of one model (four camera services started together each built it and wrote over
    the others' files). The second process waits, then reuses what the first wrote. An
    advisory flock beside the folder (the folder itself is the writer's to make or remove),
    which the kernel drops however its holder ends. `doing` words the note that `say` gets
    ("exporting": "waiting for process N, which is exporting into FOLDER")."""
    try:
        import fcntl
    except ImportError:   # not POSIX: unlocked, as run_lock
        yield
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    path = folder.parent / f".{folder.name}.lock"
    fd = _open_lock_file(path)
    if fd is None:
        # A cache made beforehand in a folder that takes no file (a container image's
        # read-only layer): read, not written, so there is nothing to keep apart.
        yield
        return
    try:
        locked = True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            say(f"waiting for process {holder}, which is {doing} into {folder}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as e:
            # A filesystem without locks (some NFS, SMB and FUSE mounts: ENOLCK, EOPNOTSUPP):
            # the lock only keeps concurrent processes apart, so this one goes on without it.
            from .warn import warn

            locked = False
            warn(f"cannot lock {path} ({e.strerror or e}): {doing} unlocked; processes sharing "
                 f"the cache {folder.parent} must not be {doing} into {folder.name} at the "
                 "same time")
        if locked:
            with contextlib.suppress(OSError):   # held read-only: its owner's record stays
                os.ftruncate(fd, 0)
                os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)   # releases the lock


def _open_lock_file(path: Path) -> Optional[int]:
    """A descriptor of the lock file `path`, made where it is missing; None where it can be
    neither made nor opened."""
    from .atomic import LinkRefused, open_no_follow
    try:
        fd = open_no_follow(path, os.O_RDWR | os.O_CREAT)
    except LinkRefused:
        raise
    except OSError:
        pass
    else:
        # Readable by every user whatever the umask (systemd's UMask=0077 made it owner-only):
        # another user's process sharing the cache could not open it, and wrote there unlocked.
        with contextlib.suppress(OSError):   # another user's, writable by this one: theirs
            os.fchmod(fd, os.fstat(fd).st_mode & 0o777 | 0o444)
        return fd
    try:   # another user's, in a cache they share: flock needs no write access
        return open_no_follow(path, os.O_RDONLY)
    except LinkRefused:
        raise
    except OSError:
        return None
