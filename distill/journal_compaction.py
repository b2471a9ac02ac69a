"""The rule of the records a run keeps as one whole file plus an append-only journal (a labels
run's manifest, `sharpen teacher`'s and `sharpen evaluate`'s resume records): when the
journal is folded into the file, and what a run says when that rewrite failed at its end."""
from __future__ import annotations

from pathlib import Path


def compaction_due(journaled: int, recorded: int) -> bool:
    """Whether the file is rewritten now, `journaled` entries appended to its journal since its
    last rewrite and `recorded` in all: once the journal has grown by half of them. A run of n
    entries then writes O(n) in all, where rewriting the file per entry wrote n^2/2 (4,000
    labels of 16x16 images: 601 s; a teacher record of 4,000 outputs rewritten 4,000 times)."""
    return journaled > 0 and journaled >= recorded // 2


def not_compacted(record: Path, journal: Path, e: OSError, kept: str) -> str:
    """The warning when `record` could not be rewritten at a run's end; `kept`: what its
    journal holds ("every entry")."""
    return (f"could not compact {record} ({e.strerror or e}): its journal {journal} keeps "
            f"{kept}, and the next run into {record.parent} folds it in")


class JournaledRecord:
    """A record kept as FILE (`path`) plus an append-only `journal`, the part its runs share:
    FILE rewritten, the journal folded in, when compaction is due and at the run's end. A
    subclass sets `path`, `journal`, `settings`, `done` (FILE's "done"), `journaled` (entries
    appended since FILE's last rewrite), `stuck` and `closed` (False), and `KEPT`: what its
    journal holds, in the warning when the last rewrite failed."""

    KEPT = "every entry"
    path: Path
    journal: Path
    settings: dict
    done: dict
    journaled: int
    stuck: bool
    closed: bool

    def _appended(self) -> None:
        """One more entry appended to the journal; FILE rewritten if compaction is due."""
        self.journaled += 1
        if not self.stuck and compaction_due(self.journaled, len(self.done)):
            try:
                self.flush()
            except OSError:
                # Not the entry's failure: it is journaled. Tried again at the end, where a
                # failure is said (close); each entry's retry would fail alike.
                self.stuck = True

    def close(self) -> None:
        """FILE rewritten at the run's end, however it ends (once). A failure is a warning:
        raised, it replaced a Ctrl-C's summary and exit code, or a finished run's, with a
        traceback, though the journal keeps `KEPT` and the next run reads it."""
        from runtime.warn import warn

        if self.closed:
            return
        self.closed = True
        try:
            self.flush()
        except OSError as e:
            warn(not_compacted(self.path, self.journal, e, self.KEPT))

    def flush(self) -> None:
        """FILE rewritten with every entry, then the journal removed (after FILE is in place: a
        kill between the two leaves entries twice, never none)."""
        from runtime.atomic import atomic_write_json

        if not self.journaled:
            return
        atomic_write_json(self.path, {"settings": self.settings, "done": self.done})
        self.journal.unlink(missing_ok=True)
        self.journaled = 0
