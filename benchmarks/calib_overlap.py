"""Which --calib images the bench also scores. INT8 calibrated on the very frames its quality
is then measured on scores better there than on frames it has not seen: the report's INT8 rows
would flatter the deployed model, so the bench says so (report.py) rather than keep quiet."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional, Sequence


def calib_overlap(calib: Sequence[str] | str, scored: Iterable[str | os.PathLike]
                  ) -> Optional[dict]:
    """{"images": how many --calib images are also scored, "calib_images", "scored_images",
    "examples": up to three of their names}, or None where none is. The same file by resolved
    path, or a copy of it: content compared only where the sizes match (a stat per file, a
    hash only of the few that could be copies), so a large scored set is not read for it."""
    from .artifacts import EXPORT_FLAGS, file_hash
    from optimize.export import resolve_calib

    calib_paths = resolve_calib(calib, flags=EXPORT_FLAGS)   # checked by the bench already
    scored_paths = {Path(p).resolve() for p in scored}
    by_size: dict[int, list[Path]] = {}
    for p in scored_paths:
        if (size := _size(p)) is not None:
            by_size.setdefault(size, []).append(p)
    hashes: dict[Path, Optional[str]] = {}

    def digest(p: Path) -> Optional[str]:
        if p not in hashes:
            try:
                hashes[p] = file_hash(p, 32)
            except OSError:
                hashes[p] = None
        return hashes[p]

    hits = []
    for p in calib_paths:
        real = Path(p).resolve()
        if real in scored_paths:
            hits.append(p)
            continue
        twins = by_size.get(_size(real), [])
        if twins and (d := digest(real)) is not None and any(digest(t) == d for t in twins):
            hits.append(p)
    if not hits:
        return None
    return {"images": len(hits), "calib_images": len(calib_paths),
            "scored_images": len(scored_paths), "examples": [Path(p).name for p in hits[:3]]}


def _size(p: Path) -> Optional[int]:
    try:
        return p.stat().st_size
    except OSError:
        return None
