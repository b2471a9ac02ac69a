"""The rule of the records a run keeps as one whole file plus an append-only journal (a labels
run's manifest, `sharpen teacher`'s resume record): when the journal is folded into the file,
and what a run says when that rewrite failed at its end."""
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
