"""Checks of a run's data against its config, said before the first step: validation images
that are training images too or labelled by another teacher, data keys the task does not read,
loss terms the data cannot feed; and the data signature a checkpoint keeps, to tell a resumed
run whose data changed underneath it."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np
from torch.utils.data import Dataset

from .config import TrainConfig, loss_weights
from .train_state import warmup_problem
from .validation import ValItem


def data_problems(cfg: TrainConfig, train_ds: Dataset, val_items: list[ValItem]) -> list[str]:
    """What to warn of before training, in words: said, not refused, as a user may mean it (a
    smoke test, one clip) and a short test run may not care."""
    leak = _validation_leak(cfg) or _gt_validation_leak(cfg, train_ds, val_items)
    said = [leak, _validation_teacher(cfg), warmup_problem(cfg), unused_data_keys(cfg),
            gt_loss_problem(cfg, train_ds)]
    return [s for s in said if s]


# What the training files' digest takes in (`train_digest_of` in the record): each file's name,
# size and last TAIL_BYTES. Not its mtime: a `cp -r` or `rsync` without -t of the same data read
# as other data (and an edit that kept the mtime as the same). Not its whole content: reading a
# big label cache whole at every start and resume costs minutes (722 photos, 133 MB: 0.2 s warm,
# 2.4 s from disk; sha256 runs at about 850 MB/s a core), while a PNG's last bytes hold its zlib
# checksum of every pixel, so a relabelled or edited image changes them.
TAIL_BYTES = 1 << 16
TRAIN_DIGEST_OF = "name, size, last 64 KiB"


def _tail(path: str, size: int) -> bytes:
    with open(path, "rb") as f:
        if size > TAIL_BYTES:
            f.seek(size - TAIL_BYTES)
        return f.read(TAIL_BYTES)


def data_signature(train_ds: Dataset, val_items: list[ValItem]) -> dict:
    """Counts and digests of the training files (name, size and last bytes, TRAIN_DIGEST_OF: a
    relabelled or added label changes it; how the folder is spelled, where it moved or a copy
    that set new file times does not) and of the validation images, to tell a resumed run
    whose data changed underneath it (labels added, or made by another teacher: its crops mix
    both, and best.pt compares scores taken on different validation sets)."""
    import hashlib

    h = hashlib.blake2b(digest_size=12)
    items = getattr(train_ds, "items", None) or []
    for item in items:
        for p in item:
            if p is not None:
                try:
                    size = os.stat(p).st_size
                    h.update(f"{Path(p).name}|{size}|".encode())
                    h.update(hashlib.sha256(_tail(p, size)).digest())
                    h.update(b"\n")
                except OSError:
                    h.update(f"{Path(p).name}|missing\n".encode())
    v = hashlib.blake2b(digest_size=12)
    for it in val_items:
        v.update(it.name.encode())
        for a in (it.input, it.target, it.gt):
            if a is not None:
                v.update(np.ascontiguousarray(a).data)
    from .metrics import SSIM_ID
    return {"train": len(items), "train_digest": h.hexdigest(),
            "train_digest_of": TRAIN_DIGEST_OF, "val": len(val_items),
            "val_digest": v.hexdigest(), "val_score": SSIM_ID}


def data_changes(before: dict, now: dict) -> list[str]:
    """What changed between two `data_signature`s, in words (empty: nothing, or unknown). A
    record of an older version, whose training digest took in file times, compares the
    training files by their count alone: its digest differs for a copy of the same files."""
    said = []
    for key, what in (("train", "training images"), ("val", "validation images")):
        if f"{key}_digest" not in before:
            continue
        n0, n1 = before.get(key), now[key]
        if n0 != n1:
            said.append(f"{what}: {n0} -> {n1}")
        elif (key == "val" or before.get("train_digest_of") == now.get("train_digest_of")) \
                and before[f"{key}_digest"] != now[f"{key}_digest"]:
            said.append(f"{what}: the same {n1}, but some changed (relabelled?)")
    return said


def unused_data_keys(cfg: TrainConfig) -> Optional[str]:
    """The data keys this task does not read, where they were set: `sharpen train
    data.labels=CACHE` trained on the embedded default and `sharpen distill data.val=corpus`
    validated on nothing, each without a word about the key it left aside."""
    from .config import DataConfig

    d, default = cfg.data, DataConfig()
    if cfg.task == "student":
        unused = [f"data.{k}={getattr(d, k)}" for k in ("train", "val")
                  if getattr(d, k) not in ("", getattr(default, k))]   # "": off, as unused
        why = ("`sharpen distill` trains on teacher labels (data.labels) and validates on a label "
               "cache (data.val_labels=CACHE, made by `sharpen labels --data DATA --out "
               "CACHE`); ground-truth pairs join it as data.gt_train, or train with `sharpen "
               "train`")
    else:
        unused = [f"data.{k}={getattr(d, k)}" for k in ("labels", "val_labels") if getattr(d, k)]
        why = ("training on ground truth (`sharpen train`, `train-teacher`) reads data.train and "
               "data.val; to train a student on the teacher's labels, use `sharpen distill`")
    said = [f"{' and '.join(unused)} {'is' if len(unused) == 1 else 'are'} not used: {why}"
            ] if unused else []
    if cfg.task == "student" and d.gopro_blur != default.gopro_blur and not d.gt_train:
        # Read as training on those inputs: the labels' inputs were chosen when they were made.
        said.append(f"data.gopro_blur={d.gopro_blur} is not used: `sharpen distill` reads it "
                    "only for a GoPro root given as data.gt_train; the labels' inputs are the "
                    "blurred folder they were made from (`sharpen labels --gopro-blur "
                    f"{d.gopro_blur}` for those)")
    read = [d.gt_train] if cfg.task == "student" else [d.train, d.val]
    if cfg.task != "student" or d.gt_train:
        from .data.sources import gopro_blur_unused
        if unused := gopro_blur_unused(read, d.gopro_blur, "data.gopro_blur"):
            said.append(unused)
    return "; ".join(said) or None


def gt_loss_problem(cfg: TrainConfig, train_ds: Dataset) -> Optional[str]:
    """Ground-truth loss terms a student's training data cannot feed: `loss.gt=0.5` over a
    cache of footage (no sharp frames) trained on the teacher's labels alone, the term silently
    absent from the loss."""
    if cfg.task != "student":
        return None
    w = loss_weights(cfg.loss)
    terms = [f"loss.{k}={getattr(w, k):g}" for k in ("gt", "gt_ssim") if getattr(w, k)]
    items = getattr(train_ds, "items", None) or []
    if not terms or not items or any(it[2] is not None for it in items):
        return None
    return (f"{' and '.join(terms)} {'has' if len(terms) == 1 else 'have'} no ground truth to "
            f"use: none of the {len(items)} training images of data.labels={cfg.data.labels} "
            "has a sharp image (footage has none), so the run trains on the teacher's labels "
            "alone; label paired data (blur/ + sharp/) or add sharp frames as data.gt_train")


def _label_caches(cfg: TrainConfig):
    """A student run's training and validation label caches, or None where it has not both
    (or one cannot be read: the run's own checks say why)."""
    d = cfg.data
    if cfg.task != "student" or not d.labels or not d.val_labels:
        return None
    from .data.label_cache import LabelCache
    from .data.sources import SourceError
    try:
        return LabelCache(d.labels), LabelCache(d.val_labels)
    except SourceError:
        return None


def _validation_leak(cfg: TrainConfig) -> Optional[str]:
    """What to say when the student's validation images are training images too: with
    footage, which has no ground truth and no split, a validation cache labelled from the same
    clip or folder (another --limit picks the same first and last frames) scored, and chose
    best.pt on, images the student trained on, without a word."""
    d = cfg.data
    caches = _label_caches(cfg)
    if caches is None:
        return None
    train_cache, val_cache = caches
    same = val_cache.shared_inputs(train_cache)
    if not same:
        return None
    n_val = len(val_cache)
    shown = ", ".join(same[:3]) + (f" and {len(same) - 3} more" if len(same) > 3 else "")
    return (f"{len(same)} of the {n_val} images of data.val_labels={d.val_labels} are training "
            f"images too, in data.labels={d.labels} ({shown}): validation, and the choice of "
            "best.pt, scores the student on images it trains on; label held-out images (another "
            "clip or folder) into data.val_labels")


def _validation_teacher(cfg: TrainConfig) -> Optional[str]:
    """What to say when the validation labels were made by a teacher the training labels were
    not: the training cache relabelled with new weights and the validation cache left as the
    old teacher made it scored the student (and chose best.pt) against a teacher it does not
    learn from, without a word."""
    d = cfg.data
    caches = _label_caches(cfg)
    if caches is None:
        return None
    train_cache, val_cache = caches
    from .data.label_cache import LabelCache, describe_maker

    def teachers(cache: LabelCache) -> dict[tuple, str]:   # (weights, arch) -> described
        return {k[:2]: describe_maker(k, file=cache.maker_file(names))
                for k, names in cache.makers().items()}
    trained, validated = teachers(train_cache), teachers(val_cache)
    if not trained or not validated or not set(validated) - set(trained):
        return None

    def named(makers: dict[tuple, str]) -> str:
        return ", ".join(makers.values())
    return (f"data.val_labels={d.val_labels} was labelled by another teacher "
            f"({named(validated)}) than data.labels={d.labels} ({named(trained)}): validation, "
            "and the choice of best.pt, scores the student against a teacher it does not learn "
            "from; label both with the same --teacher-weights (`sharpen labels --hold-out F "
            "--val-out DIR` labels both in one command)")


def _gt_validation_leak(cfg: TrainConfig, train_ds: Dataset,
                        val_items: list[ValItem]) -> Optional[str]:
    """What to say when validation pairs of ground-truth training are training pairs too:
    `sharpen train data.train=pairs data.val=pairs` over a flat paired folder (no val/ split)
    scored, and chose best.pt on, the pairs it trained on, without a word."""
    if cfg.task == "student":
        return None   # _validation_leak compares the label caches
    trained = {os.path.realpath(item[0]) for item in getattr(train_ds, "items", None) or []}
    same = [v.name for v in val_items if v.path and os.path.realpath(v.path) in trained]
    if not same:
        return None
    d = cfg.data
    shown = ", ".join(same[:3]) + (f" and {len(same) - 3} more" if len(same) > 3 else "")
    return (f"{len(same)} of the {len(val_items)} validation images of data.val={d.val} are "
            f"training images too, in data.train={d.train}"
            f"{f' + {d.gt_train}' if d.gt_train else ''} ({shown}): validation, and the "
            "choice of best.pt, scores the model on images it trains on; give data.val "
            "held-out pairs (another folder, or the val/ split of a folder holding train/ and "
            "val/)")
