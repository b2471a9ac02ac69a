"""The one walk over a folder of user data at any depth (photos, footage, pairs, calibration
images, a recursive glob): symlinked subfolders are followed, as users link their data sets in
(`ln -s /data/gopro data/gopro`, `photos/extra -> /mnt/photos`); pathlib's rglob before Python
3.13 does not follow them, and their images were left out without a word. Here in runtime/
because the runtime ships alone and the other packages import it."""
from __future__ import annotations

import glob as globmod
import os
from collections import deque
from fnmatch import fnmatch
from pathlib import Path
from typing import Iterator, Optional

from .console import count
from .imageio import shown_path, special_kind
from .warn import warn


def walk_files(folder: str | os.PathLike, broken: Optional[list[Path]] = None,
               hidden: bool = False) -> Iterator[Path]:
    """The files under `folder` at any depth, by name in each folder, hidden files and folders
    left out unless `hidden` (an atomic write killed mid-way leaves its temp file as
    .NAME.png.XXXX.png).
    Linked folders are entered once each: a link back up (a loop) or a second link to a folder
    already walked adds nothing, so no file comes twice and a loop ends. A link whose target is
    gone is appended to `broken` when given, else said in one warning after the walk."""
    root = Path(folder)
    said = broken is None
    broken = [] if broken is None else broken
    try:
        seen = {_identity(root)}
    except OSError:
        return
    # The real folders are walked first, all of them, and the linked ones after (a link's own
    # real folders before the links found in it): a folder reached both directly and through
    # a link keeps its real name wherever the link is (photos/kodak -> bench/kodak24 lists
    # bench/kodak24/x.png), the name rglob gave it, on which the corpus split, the test-folder
    # rule and the label caches are keyed.
    links: deque[Path] = deque()
    special: list[Path] = []
    stack = [root]
    while stack or links:
        if not stack:
            link = links.popleft()
            try:
                key = _identity(link)
            except OSError:   # gone since it was listed
                continue
            if key not in seen:
                seen.add(key)
                stack.append(link)
            continue
        here = stack.pop()
        try:
            with os.scandir(here) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:   # unreadable (permissions), or gone since: as rglob, left out
            continue
        subs = []
        for e in entries:
            if e.name.startswith(".") and not hidden:
                continue
            try:
                if e.is_dir():   # follows a link
                    if e.is_symlink():
                        links.append(here / e.name)
                    elif (key := _identity(e.path)) not in seen:   # (a bind mount of .. etc.)
                        seen.add(key)
                        subs.append(here / e.name)
                elif e.is_file():
                    yield here / e.name
                elif e.is_symlink() and not os.path.exists(e.path):
                    broken.append(here / e.name)
                else:   # a FIFO, socket or device: no data file, and a FIFO's read waits
                    special.append(here / e.name)
            except OSError:   # a link loop on a file (a -> b -> a) resolves to nothing
                broken.append(here / e.name)
        stack.extend(reversed(subs))   # depth first
    if said:
        say_broken(folder, broken)
        _say_special(folder, special)


def _say_special(folder: str | os.PathLike, special: list[Path]) -> None:
    """One warning naming the FIFOs, sockets and devices under `folder`, left out."""
    if not special:
        return
    shown = ", ".join(f"{shown_path(p)}: {_kind(p)}" for p in special[:3])
    more = f", ... ({len(special)} in all)" if len(special) > 3 else ""
    warn(f"{folder}: {count(len(special), 'entry', 'entries')} that "
         f"{'is' if len(special) == 1 else 'are'} not a regular file skipped ({shown}{more})",
         stacklevel=4)


def _kind(path: Path) -> str:
    try:
        return special_kind(os.stat(path).st_mode)   # a link to a FIFO is said as one
    except OSError:
        return "gone"


def _identity(path: str | os.PathLike) -> tuple[int, int] | str:
    """What tells one folder from another however it is reached: os.stat's device and inode
    (DirEntry.stat's are 0 on Windows, as os.stat's are on a few file systems: there, the
    resolved path)."""
    st = os.stat(path)
    return (st.st_dev, st.st_ino) if st.st_ino else os.path.realpath(path)


def say_broken(folder: str | os.PathLike, broken: list[Path]) -> None:
    """One warning naming the links under `folder` whose target is gone (a data set unmounted,
    moved): their files are not there to read, which would otherwise go unsaid."""
    if not broken:
        return
    one = len(broken) == 1
    shown = ", ".join(f"{p} -> {_target(p)}" for p in broken[:3])
    more = f", ... ({len(broken)} in all)" if len(broken) > 3 else ""
    warn(f"{folder}: {len(broken)} broken link{'' if one else 's'} skipped ({shown}{more}): "
         f"{'its target is' if one else 'their targets are'} missing (unmounted or moved?) "
         "or a link loop",
         stacklevel=3)


def _target(link: Path) -> str:
    try:
        return os.readlink(link)
    except OSError:
        return "?"


def _existing_folders_escaped(pattern: str) -> str:
    """`pattern` with its leading folders that are there taken as named: brackets are common
    in Windows and macOS names ("[raw] photos/*.png"), which glob read as a character class
    matching nothing."""
    parts = Path(pattern).parts
    at = 0
    for i in range(1, len(parts)):
        if not os.path.isdir(os.path.join(*parts[:i])):
            break
        at = i
    if at == 0 or "[" not in os.path.join(*parts[:at]):
        return pattern
    return os.path.join(globmod.escape(os.path.join(*parts[:at])), *parts[at:])


def glob_files(pattern: str) -> list[str]:
    """glob.glob(pattern, recursive=True) for files, with each `**` walked by walk_files: glob
    follows linked folders but not loops, which listed a file once per turn (and two links to
    `.` in one folder never ended). Hidden names are matched as glob matches them: only by a
    part that starts with '.' (`**/.thumbs/*.png`), never by `*` or `**`."""
    pattern = _existing_folders_escaped(pattern)
    parts = Path(pattern).parts
    if "**" not in parts:
        return [f for f in globmod.glob(pattern) if os.path.isfile(f)]
    at = parts.index("**")
    head, rest = parts[:at], parts[at:]
    bases = globmod.glob(os.path.join(*head)) if head else ["."]
    # Hidden folders are walked only for a pattern that names one: most hold no images (.git)
    hidden = any(p.startswith(".") for p in rest)
    found: list[str] = []
    for base in bases:
        if not os.path.isdir(base):
            continue
        for f in walk_files(base, hidden=hidden):
            rel = f.relative_to(base).parts
            if _matches(rel, rest):
                found.append(str(f))   # relative when the pattern is: Path('.') / 'x' is 'x'
    return found


def glob_reaches(pattern: str, path: str | os.PathLike) -> bool:
    """Whether `glob_files(pattern)` would list a file at `path` (both taken as absolute,
    `..` folded): an output folder's images that a rerun would read as its source's."""
    def parts(p: str | os.PathLike) -> tuple[str, ...]:
        return Path(os.path.normpath(os.path.abspath(p))).parts
    # Escaped once absolute: the working folder's brackets ("[raw] photos") are a name too.
    return _matches(parts(path), parts(_existing_folders_escaped(os.path.abspath(pattern))))


def _matches(parts: tuple[str, ...], pats: tuple[str, ...]) -> bool:
    """Whether a relative path's parts match a glob's: `**` stands for any number of folders
    (none hidden); a hidden name matches only a part that starts with '.', as in glob."""
    if not pats:
        return not parts
    if pats[0] == "**":
        for i in range(len(parts) + 1):
            if _matches(parts[i:], pats[1:]):
                return True
            if i < len(parts) and parts[i].startswith("."):
                return False
        return False
    return (bool(parts) and (pats[0].startswith(".") or not parts[0].startswith("."))
            and fnmatch(parts[0], pats[0]) and _matches(parts[1:], pats[1:]))
