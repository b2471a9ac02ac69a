"""Where a command writes, checked before it runs: an output folder made (or refused, naming
the file in its way) and found writable, the folders a run made removed again when it wrote
nothing, and an output that would overwrite the inputs or be read back as data refused. Every
command that writes files uses them, not only `sharpen run`'s sinks."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

from .sinks import SinkError


def file_in_the_way(folder: str | os.PathLike, what: str) -> str:
    """The message when `folder`, or the nearest of its parents that exists, is a file (so it
    cannot be a folder), naming `what`; '' when it is or can be made one. Creates nothing."""
    folder = Path(folder)
    # os.path's tests, not Path's: those raise on a parent without search permission.
    for above in (folder, *folder.parents):
        if os.path.lexists(above):
            return "" if os.path.isdir(above) else f"{what}: {above} is a file, not a folder"
    return ""


def cannot_write(what: str, folder: str | os.PathLike, exc: OSError) -> str:
    """The message when `folder` (or the nearest of its parents that exists) refused a write
    with `exc`, naming `what` and, on a server several users share, the folder's owner where
    that is another user: "Permission denied" alone left them guessing whose it was."""
    folder = Path(folder)
    near = next((p for p in (folder, *folder.parents) if os.path.lexists(p)), folder)
    return f"{what}: cannot write in {folder} ({exc.strerror or exc}{_owner_note(near)})"


def _owner_note(path: Path) -> str:
    """'; PATH belongs to user NAME' where `path` is not this user's, else ''."""
    try:
        uid = path.stat().st_uid
    except OSError:
        return ""
    if not hasattr(os, "geteuid") or uid == os.geteuid():
        return ""
    try:
        import pwd
        name = pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        name = f"id {uid}"
    return f"; {path} belongs to user {name}"


def make_folder(folder: str | os.PathLike, what: str) -> None:
    """Create `folder` and make sure a file can be written in it, or SinkError naming `what`:
    found at the start rather than after the whole stream has run."""
    folder = Path(folder)
    if problem := file_in_the_way(folder, what):
        raise SinkError(problem)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # Write permission bits say nothing to root, nor about read-only or virtual file
        # systems (/proc); creating a file does.
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise SinkError(cannot_write(what, folder, exc)) from None


def folders_to_make(folder: str | os.PathLike) -> list[Path]:
    """The folders that making `folder` creates, deepest first (none when it exists)."""
    folder, new = Path(folder), []
    for above in (folder, *folder.parents):
        if os.path.lexists(above):
            break
        new.append(above)
    return new


def remove_if_empty(folders: Sequence[Path]) -> None:
    """Remove the folders a run made (deepest first) while they are empty: a run that wrote
    nothing should not leave an empty output folder behind."""
    for folder in folders:
        try:
            folder.rmdir()   # only if still empty
        except OSError:
            return


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file: resolved (relative paths, symlinks), and by inode when
    both exist (case-insensitive file systems, where resolve() keeps the case given)."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def refuse_output_inside(out: str | os.PathLike, data: str | os.PathLike | None,
                         flag: str, what: str = "its figures", out_flag: str = "--out") -> None:
    """ValueError when the output folder lies in a data folder that is read as images: the
    images written there (`what`) would be read as data the next time."""
    folder = Path(data).resolve() if data else None
    where = Path(out).resolve()
    if folder and folder.is_dir() and folder in (where, *where.parents):
        raise ValueError(f"{out_flag} {out} is inside {flag} {data}: {what} would be read as "
                         "images of the data next time")


def refuse_overwriting_inputs(out: str | os.PathLike, input_dirs=(), input_files=(),
                              what: str = "") -> None:
    """ValueError when the output is one of the input folders or input files (an image or a
    video given as both --source and --out): writing there would destroy the inputs (every
    command that writes results per input checks this). `what` names the output (default
    `--out OUT`)."""
    out = Path(out)
    what = what or f"--out {out}"
    if any(same_file(out, d) for d in input_dirs):
        raise ValueError(f"{what} is an input folder: the results would overwrite the "
                         "inputs; choose another folder")
    if any(same_file(out, f) for f in input_files):
        raise ValueError(f"{what} is the input file: the result would overwrite it; "
                         "choose another path")
