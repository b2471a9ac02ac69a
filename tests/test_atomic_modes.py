"""The mode a file written by runtime.atomic gets when it replaces one already there (a team's
shared label cache, a folder other users write into): the access the old file gave its group
and others is kept, but never write access for every user, and never a link's target's."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from runtime.atomic import atomic_write_json


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> str:
    return oct(path.stat().st_mode & 0o777)


def test_a_file_writable_by_every_user_is_not_kept_so_when_rewritten(tmp_path):
    """A manifest 0666 (made by a user under umask 000, copied off a FAT stick as 0777)
    rewritten under umask 022 stayed writable by every user, and executable: anyone could
    then change the labels a team trains on. Group access is kept, world write is not."""
    for old in (0o666, 0o777):
        path = tmp_path / f"manifest-{oct(old)}.json"
        path.write_text("{}")
        path.chmod(old)
        with umask(0o022):
            atomic_write_json(path, {"a": 1})
        assert _mode(path) == oct(0o664), oct(old)


def test_a_private_file_of_another_member_is_given_the_umask_when_rewritten(tmp_path):
    """A member under umask 077 made the team cache's manifest 0600; the next member's
    rewrite (umask 002) kept 0600, now that member's alone, so the first (and everyone else)
    was locked out for good. It gets what the writer's umask gives, as before modes were
    kept, besides what the old file gave."""
    path = tmp_path / "manifest.json"
    path.write_text("{}")
    path.chmod(0o600)
    with umask(0o002):
        atomic_write_json(path, {"a": 1})
    assert _mode(path) == oct(0o664)


def test_a_link_in_the_files_place_gives_the_new_file_no_mode_of_its_target(tmp_path):
    """A link planted as report.json to a folder every user writes (/tmp: 1777): the rename
    replaces the link, and the file took its target's mode, 0777."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    path = tmp_path / "report.json"
    path.symlink_to(shared)
    with umask(0o022):
        atomic_write_json(path, {"a": 1})
    assert not path.is_symlink()
    assert _mode(path) == oct(0o644)
    assert _mode(shared) == oct(0o777)


def test_a_group_writable_file_stays_so_under_a_private_umask(tmp_path):
    """What the keeping of modes is for: a team member under umask 077 rewriting the shared
    manifest (0664) left it 0600."""
    path = tmp_path / "manifest.json"
    path.write_text("{}")
    path.chmod(0o664)
    with umask(0o077):
        atomic_write_json(path, {"a": 1})
    assert _mode(path) == oct(0o664)
