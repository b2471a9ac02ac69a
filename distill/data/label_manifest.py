"""`ManifestWriter`: where a labels run records what it made, one cache folder's manifest (or
this rank's shard): each label's files renamed into place with its entry, the entry appended to
the manifest's journal, the manifest rewritten (the journal folded in) as it grows and when the
run ends. A kill loses no entry: the journal is read with the manifest."""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Optional

from runtime.atomic import new_file_mode
from runtime.warn import warn

from .. import journal_compaction
from ..dist import DistInfo
from .label_cache import (MANIFEST, _manifest_lock, append_journal, journal_path,
                          merge_entries, read_cache_entries, read_manifest_entries,
                          write_manifest)


def not_compacted(manifest: Path, e: OSError) -> str:
    """The warning when `manifest` (or a rank's shard) could not be rewritten at a run's end."""
    return journal_compaction.not_compacted(manifest, journal_path(manifest), e, "every entry")


class ManifestWriter:
    def __init__(self, out_dir: Path, dist: DistInfo):
        self.out_dir = out_dir
        self.dist = dist
        # What this run knows: the merged manifest plus shards of interrupted runs.
        self.known = read_cache_entries(out_dir)
        self.touched: dict[str, dict] = {}
        self.target = (out_dir / MANIFEST if dist.world == 1
                       else out_dir / f"manifest.rank{dist.rank}.json")
        # An interrupted run's entries in this rank's shard: this run skips their labels as up
        # to date, so its shard must keep them (rewritten with only this run's, they were lost).
        self.inherited = read_manifest_entries(self.target) if dist.world > 1 else {}
        # Entries in the journal since the manifest was rewritten: a killed run's count too,
        # so that this run's flush folds them in however it ends (for a version that reads
        # no journal), not only a run that makes a label or finishes.
        self.journaled = int(journal_path(self.target).exists())
        # A rewrite of the manifest failed (a full disk, a folder made read-only): the journal
        # keeps growing, read with the manifest, and the rewrite is tried again at the end.
        self.stuck = False
        self.not_compacted: Optional[str] = None   # the end's warning, when it failed too

    def record(self, name: str, entry: dict,
               staged: Optional[list[tuple[Path, Path]]] = None) -> None:
        """`entry` recorded as `name`'s; `staged`: (temp file, final name) pairs of its files,
        renamed into place first (removed when an error or Ctrl-C comes first)."""
        if staged:
            entry["_now"] = True   # dated when its files are in place (_save)
        self.touched[name] = entry
        self.known[name] = entry
        try:
            self._save(staged, {name: entry})
        finally:
            for tmp, _ in staged or ():   # not renamed: an error or Ctrl-C came first
                with contextlib.suppress(OSError):
                    tmp.unlink()

    def _save(self, staged: Optional[list[tuple[Path, Path]]] = None,
              entries: Optional[dict[str, dict]] = None) -> None:
        """`entries`, this run's newest, appended to the manifest's journal; `staged`: (temp
        file, final name) pairs of the files of the entry just made, renamed into place first.
        The manifest itself is rewritten (the journal folded in) once the journal has grown by
        half the manifest's entries, and when the run ends (`flush`): a run of n labels writes
        O(n) entries in all, where rewriting it per label wrote n^2/2 (4,000 labels of 16x16
        images: 601 s, 1,000: 43 s). A kill loses no entry: the journal is read with it."""
        if self.dist.world == 1:
            # Another run may write the same folder: its entries go to the same journal, and a
            # rewrite re-reads both under the lock and merges, so no entry is lost to a
            # last-writer-wins rewrite. The files go in place under the lock too, and the
            # entry is dated then: two runs (other teachers) labelling one name left one run's
            # label under the other's entry, when the other's label and entry went in between
            # this run's label and its entry. Now the newest entry, which the merge keeps, is
            # the one of the file renamed last.
            with _manifest_lock(self.out_dir):
                self._put_in_place(staged or [])
                self._journal(entries or {})
        else:   # the ranks of a run label names of their own
            self._put_in_place(staged or [])
            self._journal(entries or {})

    def _journal(self, entries: dict[str, dict]) -> None:
        """(Under the manifest lock where runs share the file.)"""
        if entries:
            append_journal(self.target, entries)
            self.journaled += len(entries)
        if not self.stuck and journal_compaction.compaction_due(self.journaled, len(self.known)):
            try:
                self._rewrite()
            except OSError:
                # Not this label's failure: its file and entry are in place. Tried again at
                # the end, which says so if it fails (flush); each label's retry fails alike.
                self.stuck = True

    def _rewrite(self) -> None:
        """The manifest rewritten whole, its journal folded in (under the manifest lock where
        runs share the file)."""
        if self.dist.world == 1:
            self.known = merge_entries(read_manifest_entries(self.target), self.known,
                                       self.touched)
            write_manifest(self.out_dir, self.known, self.target)
        else:
            write_manifest(self.out_dir, merge_entries(self.inherited, self.touched),
                           self.target)
        self.journaled = 0

    def flush(self) -> None:
        """The manifest rewritten with what this run journaled since its last rewrite: at the
        run's end, however it ends, so that manifest.json is whole for an older version of
        this program (which reads no journal). A failure is a warning: raised, it replaced a
        Ctrl-C (or a finished run's end) with its own error, though the journal keeps every
        entry and the next run reads it."""
        if not self.journaled:
            return
        try:
            if self.dist.world == 1:
                with _manifest_lock(self.out_dir):
                    self._rewrite()
            else:
                self._rewrite()
        except OSError as e:
            self.not_compacted = not_compacted(self.target, e)
            warn(self.not_compacted)

    def _put_in_place(self, staged: list[tuple[Path, Path]]) -> None:
        """The staged files renamed into place, and the entry they belong to dated now."""
        while staged:   # each one taken off the list once renamed (record's clean-up)
            tmp, path = staged[0]
            os.chmod(tmp, new_file_mode())   # mkstemp makes files owner-only
            os.replace(tmp, path)
            staged.pop(0)
        for e in self.touched.values():
            if e.pop("_now", False):
                e["created"] = time.time()
