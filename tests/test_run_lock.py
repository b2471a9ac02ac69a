"""distill.run_lock between processes of different users (a shared, group-writable folder)."""
from __future__ import annotations

import fcntl  # noqa: F401 - imported before the child drops to another user, who cannot
import os
from pathlib import Path

import pytest

import runtime.output_paths  # noqa: F401 - (the same: run_lock imports it when it runs)
import runtime.warn  # noqa: F401
from child_fixtures import in_a_child
from distill.run_lock import RunLocked, run_lock

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork (POSIX)")


def _as_another_user(folder: Path) -> dict:
    """run_lock on `folder` (an export's lock) in a child process, as user nobody where this
    process is root (as this user otherwise, the lock file then made read-only for it): what
    it saw inside the lock and after it, or the refusal."""
    def work(said: dict) -> None:
        os.chdir(folder)   # its parents (pytest's tmp folders) are root's alone
        if os.geteuid() == 0:
            os.setgid(65534)
            os.setuid(65534)
        try:
            with run_lock(Path("."), doing="exporting", flag="--out", name=".export.lock"):
                said["inside"] = Path(".export.lock").read_text().split("\n")
            said["after"] = sorted(os.listdir("."))
        except RunLocked as e:
            said["refused"] = str(e)

    return in_a_child(work)


def test_a_lock_file_another_users_killed_run_left_does_not_refuse_every_later_run(tmp_path):
    """An export (or bench, or training run) killed in a folder shared by a group leaves its
    lock file, its owner's, which the next user's run cannot open to write: every later run
    there ended in 'PermissionError: .export.lock', a refusal for good until someone removed
    the file. Its holder has ended, so the next run takes the folder; and a live run of another
    user refuses it by name, as one of the same user does."""
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    stale = folder / ".export.lock"
    stale.write_text("999999\nrun\nexporting")
    stale.chmod(0o444)
    said = _as_another_user(folder)
    assert "inside" in said, said
    assert said["inside"][1:] == ["run", "exporting"] and said["inside"][0] != "999999", said
    assert said["after"] == [], said
    with run_lock(folder, doing="exporting", flag="--out", name=".export.lock"):
        (folder / ".export.lock").chmod(0o444)   # another user's, for a run of this one
        said = _as_another_user(folder)
    assert said.get("refused", "").startswith(
        f"another run is exporting into . (process {os.getpid()}); wait for it to finish"), said


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="needs root, to be another user in the child")
def test_a_cache_lock_made_under_a_private_umask_still_keeps_another_users_run_waiting(
        tmp_path):
    """runtime.cache.cache_lock (the bench cache's, a TensorRT engine's) in a cache that two
    users share: a lock file made under systemd's UMask=0077 was its owner's alone, so the
    other user's run could not open it even to read, and built into the folder at the same
    time without a word. Made readable by all, as run_lock's is, that run waits, told whom."""
    from runtime.cache import cache_lock

    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o1777)

    class Waited(Exception):
        pass

    def work(said: dict) -> None:
        os.chdir(folder)   # its parents (pytest's tmp folders) are root's alone
        os.setgid(65534)
        os.setuid(65534)

        def say(message: str) -> None:
            raise Waited(message)   # what it would wait on, reported instead of waited for

        try:
            with cache_lock(Path("m"), say, "building"):
                said["entered"] = True
        except Waited as e:
            said["waited"] = str(e)

    umask = os.umask(0o077)
    try:
        with cache_lock(folder / "m", print, "building"):
            said = in_a_child(work)
    finally:
        os.umask(umask)
    assert said.get("waited") == f"waiting for process {os.getpid()}, which is building into m", \
        said


def test_an_out_folder_another_user_owns_is_refused_naming_it_and_its_owner(tmp_path):
    """A training run given out= in a colleague's read-only run folder (to resume or compare
    it) ended in a PermissionError traceback from mkdir; the refusal now names the out=, the
    folder that cannot be written and, where it is another user's, whose it is."""
    tmp_path.chmod(0o755)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    theirs.chmod(0o755 if os.geteuid() == 0 else 0o555)

    def work(said: dict) -> None:
        os.chdir(tmp_path)
        if os.geteuid() == 0:
            os.setgid(65534)
            os.setuid(65534)
        try:
            with run_lock(Path("theirs/run1")):
                said["inside"] = True
        except ValueError as e:
            said["refused"] = f"{type(e).__name__}: {e}"
        try:   # the folder itself, there already: an export's lock cannot be made in it
            with run_lock(Path("theirs"), doing="exporting", flag="--out", name=".e.lock"):
                said["inside"] = True
        except ValueError as e:
            said["export"] = f"{type(e).__name__}: {e}"

    said = in_a_child(work)
    theirs.chmod(0o755)
    assert said.get("refused", "").startswith(
        "ValueError: out=theirs/run1: cannot write in theirs (Permission denied"), said
    assert said.get("export", "").startswith(
        "ValueError: --out theirs: cannot write in theirs (Permission denied"), said
    if os.geteuid() == 0:   # the child was nobody, the folder root's
        assert said["refused"].endswith("; theirs belongs to user root)"), said
        assert said["export"].endswith("; theirs belongs to user root)"), said
