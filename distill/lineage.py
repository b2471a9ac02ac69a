"""Where a trained student came from: the checkpoint a fine-tune started from (init=) and
the label caches it was distilled on, with their source data and teacher. Recorded in every
checkpoint of the run and carried into the export report, so `sharpen models` can say of a
best.pt, or of the .onnx made from it months later, which corpus and which weights made it
(the config records only `init=fast`, a name whose file may since have been replaced)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional


def run_lineage(cfg: Any, init: Optional[Path]) -> dict:
    """The lineage of a run of `cfg` that starts from the checkpoint `init` (None: from
    scratch, or resumed, whose own checkpoint recorded it, or only its init= name where it was
    saved before lineage was recorded)."""
    from .teacher import file_hash
    lineage: dict = {}
    if init is not None:
        lineage["init"] = {"given": str(cfg.init), "path": os.path.realpath(init),
                           "sha256": file_hash(init)}
    if cfg.task == "student":
        for key in ("labels", "val_labels"):
            if getattr(cfg.data, key, None):
                lineage[key] = label_cache_origin(Path(getattr(cfg.data, key)))
    return lineage


def resumed_lineage(lineage: dict, before: Any, step: int) -> dict:
    """`lineage` of a run resumed at `step` from a checkpoint that recorded `before`: weights
    distilled on other labels up to there (a branch with new data.labels) name them too."""
    was = before.get("labels") if isinstance(before, dict) else None
    now = lineage.get("labels")
    if not (isinstance(was, dict) and isinstance(now, dict)):
        return lineage
    earlier = [e for e in was.get("earlier") or [] if isinstance(e, dict)]
    if was.get("path") != now.get("path"):
        earlier.append({**{k: v for k, v in was.items() if k != "earlier"}, "until_step": step})
    return {**lineage, "labels": {**now, "earlier": earlier}} if earlier else lineage


def label_cache_origin(cache: Path) -> dict:
    """A label cache's source data, split, image count and teacher, from its run.json and
    the entries training reads (LabelCache's: the manifest with any rank's unmerged shard,
    within the last run's selection); what cannot be read is left out."""
    from .data.label_cache import read_cache_entries, read_run_record
    origin: dict = {"path": os.path.realpath(cache)}
    try:
        run = read_run_record(cache) or {}
        entries = read_cache_entries(cache)
    except (OSError, ValueError, TypeError, AttributeError):   # not a cache: said elsewhere
        return origin
    for k in ("data", "split"):
        if run.get(k):
            origin[k] = run[k]
    selected = run.get("selection")
    if isinstance(selected, list):
        # Labels an earlier run left outside it (another teacher's) are never trained on.
        chosen = set(selected)
        entries = {n: e for n, e in entries.items() if n in chosen}
    origin["images"] = len(selected) if isinstance(selected, list) else len(entries)
    teachers = {(e.get("teacher_weights"), e.get("weights_hash")) for e in entries.values()}
    origin["teachers"] = [{"path": p, "sha256": h} for p, h in sorted(teachers, key=str)]
    return origin


def describe_lineage(lineage: Any) -> list[str]:
    """`lineage` in lines for `sharpen models`; none for a checkpoint that records none."""
    if not isinstance(lineage, dict):
        return []
    lines = []
    init = lineage.get("init")
    if isinstance(init, dict) and init.get("path"):
        lines.append(f"fine-tuned from {init['path']} (sha256 {init.get('sha256')})")
    elif isinstance(init, dict) and init.get("given"):   # a run resumed from an older version
        lines.append(f"fine-tuned from init={init['given']} (its file's path and sha256 not "
                     "recorded: the run began before they were)")
    for key, what in (("labels", "distilled on labels"), ("val_labels", "validated on labels")):
        origin = lineage.get(key)
        if not isinstance(origin, dict):
            continue
        about = []
        if origin.get("images") is not None:
            about.append(f"{origin['images']} images of {origin.get('data', '?')}")
            if origin.get("split"):
                about.append(f"split {origin['split']}")
        # Caches labelled before the teacher's file was recorded hold its hash alone.
        teachers = [f"{t['path']} {t.get('sha256')}" if t.get("path")
                    else f"{t['sha256']} (its file not recorded)"
                    for t in origin.get("teachers") or []
                    if isinstance(t, dict) and (t.get("path") or t.get("sha256"))]
        if teachers:
            about.append("teacher " + ", ".join(teachers))
        before = "".join(f", after labels {e.get('path')} to step {e.get('until_step')}"
                         for e in origin.get("earlier") or [] if isinstance(e, dict))
        lines.append(f"{what} {origin.get('path')}"
                     + (f" ({', '.join(about)})" if about else "") + before)
    return lines


def not_held_out(lineage: Any, data: str, scored: Any,
                 val_max_images: Optional[int] = None) -> dict[str, list[str]]:
    """The images of `scored` (names `sharpen evaluate` scored from `data`) that the label
    caches of `lineage` took from `data`: "trained" (data.labels, and the labels a branch's
    weights were distilled on before it: "earlier") and "validated" (the `val_max_images` of
    data.val_labels that validation spread over it, which chose best.pt); empty where none, or
    the caches are not here to read. An image is one the cache labelled from under `data`, or
    a copy of it there (_copied). A sweep's runs distilled on labels of reds-mini and scored
    on all of it read as held out."""
    from .data.label_cache import LabelCache
    from .data.sources import SourceError, spread
    if not isinstance(lineage, dict):
        return {}
    root = os.path.realpath(data)
    scored = set(scored)
    out: dict[str, list[str]] = {}
    for key, role in (("labels", "trained"), ("val_labels", "validated")):
        origin = lineage.get(key)
        if not isinstance(origin, dict):
            continue
        earlier = [e for e in origin.get("earlier") or [] if isinstance(e, dict)]
        found: set[str] = set()
        for one in (origin, *earlier):
            if not one.get("path"):
                continue
            try:
                cache = LabelCache(one["path"])
            except (SourceError, OSError, ValueError):
                continue
            if role == "validated":   # as validation.load_val_items picks them
                names = spread([s.name for s, _ in cache.items(sequence=True)], val_max_images)
            else:
                names = [n for n in cache.entries if cache._selected(n)]
            # By name and by file: another folder's im000 is another image, a copy's the same.
            ran_on = cache.run.get("data")
            found.update(n for n in names if n in scored and (
                _from(cache.entries.get(n), cache.root, root)
                or _copied(cache.entries.get(n), ran_on if isinstance(ran_on, str) else None,
                           root)))
        if found:
            out[role] = sorted(found)
    return out


def _from(entry: Any, cache: Path, root: str) -> bool:
    """Whether a label cache's entry labelled an image under the folder `root`: its input, or
    the frame the cache saved of a clip (CACHE/frames, the --data its refusal points to)."""
    if not (isinstance(entry, dict) and entry.get("status") == "ok"):
        return False
    files = [entry.get("input"), entry.get("input_file") and str(cache / entry["input_file"])]
    return any(isinstance(f, str) and (os.path.realpath(f) + os.sep).startswith(root + os.sep)
               for f in files)


def _copied(entry: Any, ran_on: Optional[str], root: str) -> bool:
    """Whether the folder `root` holds a copy of a cache entry's input image (labelled from
    `ran_on`, its labels run's --data): the file at its place under `root` (blur/im000.png of
    a copied reds-mini, or im000.png of its blur/) with its bytes, by the hash the entry keeps
    (file_hash, 64 digits; a frame's is its pixels', so a clip's frames are not matched).
    Hashed only where the size is the entry's: an image of another folder, another image."""
    from .teacher import file_hash
    if not (isinstance(entry, dict) and entry.get("status") == "ok" and entry.get("frame") is None
            and isinstance(entry.get("input"), str) and isinstance(entry.get("input_hash"), str)):
        return False
    inp = os.path.realpath(entry["input"])
    base = os.path.realpath(ran_on) if ran_on else None
    rel = (os.path.relpath(inp, base) if base and (inp + os.sep).startswith(base + os.sep)
           else os.path.basename(inp))
    parts = Path(rel).parts
    stat = entry.get("input_stat")
    size = stat[0] if isinstance(stat, list) and stat and isinstance(stat[0], int) else None
    for i in range(len(parts)):   # blur/im000.png, then im000.png
        cand = os.path.join(root, *parts[i:])
        try:
            if size is not None and os.path.getsize(cand) != size:
                continue
            if file_hash(cand, n=64) == entry["input_hash"]:
                return True
        except OSError:   # not there
            continue
    return False


def gone_caches(lineage: Any, data: str) -> list[tuple[str, dict]]:
    """(key, origin) of the label caches of `lineage` (data.labels, a branch's earlier ones,
    data.val_labels) that are not found, whose recorded --data holds `data` or lies in it:
    which images of `data` they held is not known, where not_held_out reads the caches."""
    if not isinstance(lineage, dict):
        return []
    root = os.path.realpath(data)
    out = []
    for key in ("labels", "val_labels"):
        origin = lineage.get(key)
        if not isinstance(origin, dict):
            continue
        for one in (origin, *(e for e in origin.get("earlier") or [] if isinstance(e, dict))):
            src, path = one.get("data"), one.get("path")
            if not (isinstance(path, str) and isinstance(src, str)) or os.path.isdir(path):
                continue
            src = os.path.realpath(src)
            if any((a + os.sep).startswith(b + os.sep) for a, b in ((root, src), (src, root))):
                out.append((key, one))
    return out
