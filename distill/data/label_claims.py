"""Which images of a label cache a live labels run is labelling, so that two runs into one
cache (a team's shared cache, two users at once) share its images: each ran the teacher on
every image, the slow part, and the second's labels replaced the first's.

One lock file per cache, `.labelling.lock`, an image claimed by a POSIX record lock on one
byte of it at an offset its name hashes to: the kernel drops a claim when its process dies,
however it dies, and one file serves any number of images (a file per image left tens of
thousands behind). A run that cannot open the file to write (another user's, made before its
mode was shared) or a filesystem without locks labels unclaimed, as before."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import sys
from pathlib import Path

from runtime.atomic import open_no_follow

CLAIMS = ".labelling.lock"
_BUSY = frozenset({errno.EACCES, errno.EAGAIN})


def share_with_folder(fd: int, st: os.stat_result, folder: Path) -> None:
    """The file open as `fd` (`st`, its fstat) made writable by whoever may write `folder`
    (its group, every user where it is world-writable), whatever the umask: a team's cache
    is shared through its folder's mode, and a lock file made under umask 022 kept the rest
    of the group out of the cache. Not by more: a user who cannot write the cache could hold
    a claim on every image, and each run into it would wait at its end for ever. Only a file
    of this user's own that no other name shares: a hard link planted there to a file of
    theirs (where the system allows one) would have had it opened up."""
    if st.st_nlink == 1 and st.st_uid == os.geteuid():
        with contextlib.suppress(OSError):
            up = os.stat(folder)
            os.fchmod(fd, 0o600 | (0o060 if _folders_group(up, st, fd) else 0)
                      | (0o006 if up.st_mode & 0o002 else 0))


def _folders_group(up: os.stat_result, st: os.stat_result, fd: int) -> bool:
    """Whether what `fd` (a file or folder open; `st`, its stat) is may be made writable by
    its group, as the folder it is in (`up`) is: made in one that is not setgid,
    it has its maker's own group (every user of a server where that is `users`), whose
    members may not write the folder, and not the folder's, whose members were refused. It is
    given the folder's group where its maker is in it, else no group's write."""
    if not up.st_mode & 0o020:
        return False
    if st.st_gid != up.st_gid:
        try:
            os.chown(fd, -1, up.st_gid)
        except OSError:   # not in the folder's group: theirs alone, as before this version
            return False
    return True


def make_shared_folder(folder: Path) -> None:
    """`folder` made (a cache's labels/, frames/), writable by whoever may write the folder it
    is in, whatever the umask (as `share_with_folder`): one made under umask 022 in a team's
    group-writable cache kept every other member's labels run out of it. A folder already
    there is left as its owner set it."""
    if folder.is_dir():
        return
    if not folder.parent.is_dir():   # labels/sub/: each folder made shared
        make_shared_folder(folder.parent)
    folder.mkdir(exist_ok=True)
    if not (hasattr(os, "geteuid") and hasattr(os, "O_NOFOLLOW")):   # Windows: no modes
        return
    with contextlib.suppress(OSError):
        # Through the folder made, not its name: a link put in its place meanwhile (in a
        # cache anyone may write) had its target, a folder of this user's, opened up.
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            st, up = os.fstat(fd), os.stat(folder.parent)
            if st.st_uid == os.geteuid():
                group = 0o070 if _folders_group(up, st, fd) else 0
                os.fchmod(fd, stat.S_IMODE(st.st_mode) | group
                          | (0o007 if up.st_mode & 0o002 else 0))
        finally:
            os.close(fd)


def _user_of(pid: int) -> str:
    """The name (else the id) of the user running `pid`, '' where it cannot be told."""
    try:
        uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return ""
    try:
        import pwd
        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


class LabelClaims:
    def __init__(self, out_dir: Path):
        self.fd: int | None = None
        try:
            import fcntl  # noqa: F401 - POSIX only: elsewhere every image is this run's
            out_dir.mkdir(parents=True, exist_ok=True)
            # Never through a link (LinkRefused, naming it): anyone who can write into a
            # team's cache could plant `.labelling.lock -> ~/.ssh/id_ed25519`, made writable
            # by every user below. Not blocking on a FIFO planted there.
            fd = open_no_follow(out_dir / CLAIMS, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK,
                                0o666)
            st = os.fstat(fd)
        except (ImportError, OSError):
            return
        if not stat.S_ISREG(st.st_mode):   # a FIFO, a device: not a lock file of this run's
            os.close(fd)
            return
        # A record lock needs a writable file: a run of another user that could not open it
        # would label beside this one unclaimed.
        share_with_folder(fd, st, out_dir)
        self.fd = fd

    @staticmethod
    def _offset(name: str) -> int:
        digest = hashlib.sha1(name.encode("utf-8", "surrogateescape")).digest()
        return int.from_bytes(digest[:4], "big") >> 1   # a non-negative off_t anywhere

    def take(self, name: str, wait: bool = False) -> bool:
        """Claim `name`: False where another live run holds it (at once, unless `wait`)."""
        if self.fd is None:
            return True
        import fcntl
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB), 1,
                        self._offset(name))
        except OSError as e:
            if e.errno in _BUSY and not wait:
                return False
            self.close()   # no locks here (ENOLCK, some NFS and FUSE mounts): unclaimed
        return True

    def holder(self, name: str) -> str:
        """Who holds `name`'s claim, for a run waiting on it: 'process N, user U', as the
        lock messages name a holder (Linux, whose struct flock this reads), '' where none or
        it cannot be told."""
        if self.fd is None or not sys.platform.startswith("linux"):
            return ""
        import fcntl
        import struct
        layout = "@hhqqi4x"   # l_type, l_whence, l_start, l_len, l_pid (64-bit off_t)
        try:
            got = fcntl.fcntl(self.fd, fcntl.F_GETLK, struct.pack(
                layout, fcntl.F_WRLCK, os.SEEK_SET, self._offset(name), 1, 0))
            kind, _, _, _, pid = struct.unpack(layout, got)
        except (OSError, struct.error):
            return ""
        if kind == fcntl.F_UNLCK or pid <= 0:   # free now, or held from another pid space
            return ""
        return f"process {pid}" + (f", user {who}" if (who := _user_of(pid)) else "")

    def release(self, name: str) -> None:
        if self.fd is None:
            return
        import fcntl
        with contextlib.suppress(OSError):
            fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, self._offset(name))

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None
