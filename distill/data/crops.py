"""Training batches: aligned random crops of (blurred input, target, optional ground truth).

`CropDataset` yields identical crops, flips, optional 90-degree rotations and brightness changes
for every image of an item, so the input stays pixel-aligned with its target. Files are decoded on
access (nothing is opened in __init__), which suits DataLoader workers; a decoding error names the
file in a warning and another sample is returned instead, so one bad file never ends a long run.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from runtime.console import count, shell_quote
from runtime.warn import warn

from ..images import ImageReadError, misoriented, read_image
from .sources import SourceInfo



def _norm_items(items: Sequence) -> list[tuple[Path, Path, Optional[Path]]]:
    out = []
    for it in items:
        if len(it) == 2:
            inp, tgt, gt = it[0], it[1], None
        elif len(it) == 3:
            inp, tgt, gt = it
        else:
            raise ValueError(f"an item is (input, target[, gt]), got {it!r}")
        out.append((Path(inp), Path(tgt), Path(gt) if gt is not None else None))
    if not out:
        raise ValueError("no training items (empty dataset)")
    return out


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))


def _reflect_pad(img: np.ndarray, h: int, w: int) -> np.ndarray:
    ph, pw = max(h - img.shape[0], 0), max(w - img.shape[1], 0)
    if not (ph or pw):
        return img
    mode = "reflect" if min(img.shape[:2]) > 1 else "edge"
    return np.pad(img, ((0, ph), (0, pw), (0, 0)), mode=mode)


class _DecodeMixin:
    """Decoding with an optional per-process LRU cache and per-process bad-sample bookkeeping."""

    items: list
    cache_size: int

    def _init_decode(self, cache_size: int) -> None:
        self.cache_size = int(cache_size)
        self._cache: Optional[OrderedDict] = None
        self._bad: set[int] = set()
        self._in_line: set[int] = set()
        self._pid = None

    def __getstate__(self):
        # Never ship decoded images to worker processes.
        state = dict(self.__dict__)
        state["_cache"] = None
        state["_pid"] = None
        return state

    def _read(self, path: Path) -> np.ndarray:
        if self.cache_size <= 0:
            return read_image(path)
        if self._cache is None or self._pid != os.getpid():
            self._cache, self._pid = OrderedDict(), os.getpid()
        key = str(path)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        img = read_image(path)
        self._cache[key] = img
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return img

    def _load(self, idx: int) -> list[np.ndarray]:
        paths = [p for p in self.items[idx] if p is not None]
        imgs = [self._read(p) for p in paths]
        shape = imgs[0].shape
        for p, im in zip(paths[1:], imgs[1:]):
            # Once per sample and process: the tags are read from the files again.
            note = "" if idx in self._in_line else misoriented(paths[0], imgs[0], p, im)
            if im.shape != shape:
                raise ImageReadError(f"{p}: size {im.shape[1]}x{im.shape[0]} differs from "
                                     f"{paths[0]} ({shape[1]}x{shape[0]})"
                                     + (note and f"; {note}"))
            if note:
                raise ImageReadError(f"{p}: {note}")
        self._in_line.add(idx)
        return imgs

    def _load_with_fallback(self, idx: int, pick_other) -> tuple[int, list[np.ndarray]]:
        n = len(self.items)

        def candidates():
            # A few picks of the caller's choosing, then (a small set with bad files) every
            # sample in order, so that the run stops only when none can be read at all.
            i = idx
            for _ in range(min(n, 50)):
                yield i
                i = pick_other(i)
            yield from range(n)
        for k in candidates():
            if k in self._bad:
                continue
            try:
                return k, self._load(k)
            except (ImageReadError, OSError) as e:
                self._bad.add(k)
                # Attributed here: the caller is torch's data loader, and the CLI prints the
                # project's own warnings as one `warning:` line.
                warn(f"skipping training sample {self.items[k][0].name}: {e}")
        raise ImageReadError(f"no readable sample: all {n} failed to load (the "
                             "warnings above name each file and why)")


class CropDataset(_DecodeMixin, Dataset):
    """Random aligned crops for training.

    items: (input_path, target_path, gt_path_or_None) triples (see `pairs_from_labels`,
        `pairs_from_source`).
    crop: crop side; images smaller than that are reflect-padded.
    flips: random horizontal and vertical flips. rot90: random multiples of 90 degrees.
    brightness: max relative brightness change (factor in [1-b, 1+b], then clipped to [0, 1]).
    seed: augmentation seed; sample `index` uses the generator seeded by (seed, index), so
        the same index always gives the same crop, whichever worker or rank loads it.
    length: samples per epoch (default: number of items); longer epochs draw more random crops.
    cache_size: decoded images kept per process (LRU), 0 = none.

    Yields {"input": CHW float32, "target": CHW, "gt": CHW (only when the item has one),
    "name": str}.
    """

    def __init__(self, items: Sequence, crop: int = 192, flips: bool = True, rot90: bool = False,
                 brightness: float = 0.1, seed: int = 0, length: Optional[int] = None,
                 cache_size: int = 0):
        if crop < 1:
            raise ValueError(f"crop must be positive, got {crop}")
        if not 0 <= brightness < 1:
            raise ValueError(f"brightness must be in [0, 1), got {brightness}")
        self.items = _norm_items(items)
        # Batches must be alike: where some items have ground truth, one without (a label
        # whose ground truth was unusable) takes its label in that place.
        self._any_gt = any(it[2] is not None for it in self.items)
        self.crop = int(crop)
        self.flips, self.rot90 = bool(flips), bool(rot90)
        self.brightness = float(brightness)
        self.seed = int(seed)
        self.length = int(length) if length is not None else len(self.items)
        self._init_decode(cache_size)

    def __len__(self) -> int:
        return self.length

    def augment(self, imgs: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        """Apply one random crop/flip/rotation/brightness to all images alike."""
        c = self.crop
        imgs = [_reflect_pad(im, c, c) for im in imgs]
        h, w = imgs[0].shape[:2]
        y = int(rng.integers(0, h - c + 1))
        x = int(rng.integers(0, w - c + 1))
        imgs = [im[y:y + c, x:x + c] for im in imgs]
        if self.flips:
            if rng.random() < 0.5:
                imgs = [im[:, ::-1] for im in imgs]
            if rng.random() < 0.5:
                imgs = [im[::-1, :] for im in imgs]
        if self.rot90:
            k = int(rng.integers(0, 4))
            if k:
                imgs = [np.rot90(im, k, axes=(0, 1)) for im in imgs]
        if self.brightness > 0:
            f = float(rng.uniform(1 - self.brightness, 1 + self.brightness))
            imgs = [np.clip(im * f, 0.0, 1.0) for im in imgs]
        return imgs

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(index)
        # One generator per index: a sample is a pure function of (seed, index), so the trainer's
        # step-based sampler makes resumed and multi-rank runs see the same batches.
        rng = np.random.default_rng([self.seed, index])
        n = len(self.items)
        idx, imgs = self._load_with_fallback(index % n, lambda i: int(rng.integers(0, n)))
        h, w = imgs[0].shape[:2]
        if (min(h, w) < self.crop and not getattr(self, "_warned_small", False)
                and _first_worker()):
            # Once, from the main process or the first loader worker (each worker holds its own
            # copy of the dataset): a folder of small images is one issue.
            self._warned_small = True
            warn(f"{self.items[idx][0]} is {w}x{h}, smaller than the {self.crop} px crop: its "
                 "crops are filled out by mirroring (lower data.crop, or use larger images); "
                 "other such files are not listed")
        imgs = self.augment(imgs, rng)
        out = {"input": _to_tensor(imgs[0]), "target": _to_tensor(imgs[1])}
        if len(imgs) > 2 or self._any_gt:
            out["gt"] = _to_tensor(imgs[-1])
        out["name"] = _item_name(self.items[idx][0])
        return out


def _first_worker() -> bool:
    info = torch.utils.data.get_worker_info()
    return info is None or info.id == 0


def _item_name(p: Path) -> str:
    """The file stem; GoPro inputs (<sequence>/blur/<file>) get their sequence as a prefix."""
    if p.parent.name in ("blur", "blur_gamma") and p.parent.parent.name:
        return f"{p.parent.parent.name}/{p.stem}"
    return p.stem


class WholeImageDataset(_DecodeMixin, Dataset):
    """Whole images, no augmentation, for validation (use batch_size=1: sizes differ). An
    unreadable item is replaced by the next readable one, with a warning."""

    def __init__(self, items: Sequence, cache_size: int = 0):
        self.items = _norm_items(items)
        self._init_decode(cache_size)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self.items):
            raise IndexError(index)
        n = len(self.items)
        idx, imgs = self._load_with_fallback(index, lambda i: (i + 1) % n)
        out = {"input": _to_tensor(imgs[0]), "target": _to_tensor(imgs[1])}
        if len(imgs) > 2:
            out["gt"] = _to_tensor(imgs[2])
        out["name"] = _item_name(self.items[idx][0])
        return out


def pairs_from_labels(cache_dir: str | os.PathLike, key: str = "data.labels",
                      sequence: bool = False, refuse_cut_short: bool = True,
                      ) -> list[tuple[Path, Path, Optional[Path]]]:
    """(input, teacher label, gt or None) for every finished entry of a `sharpen labels` cache.
    `key`: the setting that named it, which the advice names; `sequence`: in the order of the
    numbers in their names (see `LabelCache.items`); `refuse_cut_short`: False where the caller
    reads only some of the pairs and replaces one it cannot read (validation's picks)."""
    from .label_cache import LabelCache
    from .label_cache import MANIFEST
    cache = LabelCache(cache_dir)
    items = cache.pairs(sequence)
    if not items and not (Path(cache_dir) / MANIFEST).exists():
        # Most often the data folder itself, given where its label cache belongs.
        raise ValueError(f"{cache_dir} is not a label cache (no {MANIFEST}): make one from "
                         f"data with `sharpen labels --data DATA --out CACHE` and give "
                         f"{key}=CACHE")
    if not items and (others := cache.unselected()):
        # Not "no finished labels": earlier runs' are there, outside the last run's selection
        # (that run interrupted before its first label, or every image of it failed).
        unfinished = "; that run did not finish" if cache.run.get("complete") is False else ""
        raise ValueError(f"{cache_dir}: none of the {len(cache.selection or ())} inputs that "
                         f"its last `sharpen labels` run ({cache.describe_run()}) selected is "
                         f"labelled{unfinished}, and {key} uses that run's selection, not the "
                         f"{len(others)} labels that earlier runs with another selection made "
                         "there: run that labels command again to finish it; "
                         f"{_left_out_advice(cache, others, key)}")
    if not items:
        raise ValueError(f"{cache_dir}: no finished labels (run `sharpen labels --out "
                         f"{cache_dir}` first)")
    if refuse_cut_short and (cut := cache.cut_short()):
        # Before the inputs' hashes are checked (stale): one seek per file, and a rerun of
        # labels is needed either way.
        shown = ", ".join(cut[:3]) + (f" and {len(cut) - 3} more" if len(cut) > 3 else "")
        them = "it" if len(cut) == 1 else "them"
        raise ValueError(f"{cache_dir}: {count(len(cut), 'file')} of the cache cut short "
                         f"({shown}), which training fails on: a `sharpen labels` run killed "
                         f"as it wrote {them}, or a copy of the cache stopped part-way; run the "
                         f"same labels command again with --out {cache_dir} "
                         f"({cache.teacher_command()}): it makes {them} again")
    stale = cache.stale()
    if stale and (moved := _moved_data_advice(cache, cache_dir, stale, len(items))):
        raise ValueError(moved)
    if stale:
        shown = ", ".join(stale[:3]) + (f" and {len(stale) - 3} more" if len(stale) > 3 else "")
        raise ValueError(f"{cache_dir}: {len(stale)} of {count(len(items), 'label')} no longer "
                         f"{'matches its' if len(stale) == 1 else 'match their'} "
                         f"input, which changed or went missing since it was labelled "
                         f"({shown}); run `sharpen labels` on that data with --out {cache_dir} "
                         "again (it relabels what changed and drops what is gone)")
    if unfinished := cache.incomplete():
        warn(unfinished, stacklevel=2)
    if mixed := cache.mixed_teachers():
        warn(mixed, stacklevel=2)
    if others := cache.unselected():
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3
                                         else "")
        warn(f"{cache_dir}: {key} uses the {len(items)} labels that its last `sharpen labels` "
             f"run ({cache.describe_run()}) selected; the {len(others)} that earlier runs with "
             f"another selection made there ({shown}) are left out; "
             f"{_left_out_advice(cache, others, key)}", stacklevel=2)
    return items


def _moved_data_advice(cache, cache_dir, stale: list[str], n: int) -> Optional[str]:
    """Where every stale input is gone along with the data the cache's last run named (the data
    moved, renamed, or labelled on another machine), the command that repoints the labels: the
    generic "changed or went missing" advice sent users to the old path, or to label again
    what `sharpen labels` finds by content and keeps (with the same teacher and tiling)."""
    from ..teacher import names_a_file
    from .label_cache import other_cache
    from .sources import parse_spec
    data = cache.run.get("data")
    if not data or any(Path(p).exists() for p in stale):
        return None
    try:
        kind, raw = parse_spec(str(data))
    except ValueError:
        return None
    if kind == "embedded":
        from .embedded import default_root
        root = default_root()
        if any(Path(p).is_relative_to(root) for p in stale):
            return None
        gone = ("as is the embedded set they were labelled from (moved, or labelled on another "
                f"machine?), which is read from {root} here (SHARPEN_DATA, else the user cache)")
        where = ("with SHARPEN_DATA set to the folder that set is in now (without it, the set "
                 f"is built again in {root})")
        new_data = "embedded"
    elif not raw or Path(raw).expanduser().exists():
        return None
    else:
        gone = (f"as is {raw}, the data they were labelled from (moved, renamed, or labelled "
                "on another machine?)")
        where = "with NEW_PATH where that data is now"
        new_data = f"{kind}:NEW_PATH" if kind else "NEW_PATH"
    # From the record's fields, not cut from describe_run: a data path with a space in it
    # left its tail there as a stray word.
    run, this = cache.run, shell_quote(str(cache_dir))
    held = run.get("hold_out") if isinstance(run.get("hold_out"), dict) else None
    validation = bool(held) and held.get("role") == "validation"
    words = ["--data", new_data]
    # A validation cache's split is the one --hold-out picked, not a flag: quoted, it is refused.
    words += ["--split", str(run["split"])] if run.get("split") and not validation else []
    words += ["--limit", str(run["limit"])] if run.get("limit") else []
    outs = ["--out", this]
    if held:
        other = other_cache(Path(cache_dir), run)
        theirs = (shell_quote(str(other)) if other and other.is_dir()
                  else "TRAIN_CACHE" if validation else "VAL_CACHE")
        words += ["--hold-out", str(held.get("fraction"))]
        # The command of the pair: a validation cache's is the training cache's, --out and
        # --val-out as that one gave them (swapped, it labelled each cache's images into the
        # other).
        outs = ["--out", theirs, "--val-out", this] if validation else [*outs,
                                                                         "--val-out", theirs]
    opts = run.get("teacher_options")
    for flag, value in zip(opts[::2], opts[1::2]) if isinstance(opts, list) else ():
        # A shipped name (`teacher`) is no file here, and not lost.
        lost = (flag == "--teacher-weights" and names_a_file(str(value))
                and not Path(value).expanduser().exists())
        words += [flag, "TEACHER_PT" if lost else shell_quote(str(value))]
    shown = ", ".join(stale[:2]) + (f" and {len(stale) - 2} more" if len(stale) > 2 else "")
    return (f"{cache_dir}: the inputs of {len(stale)} of {count(n, 'label')} are gone ({shown}), "
            f"{gone}: run `sharpen labels {' '.join(words + outs)}` {where}"
            + (" and TEACHER_PT the teacher's weights" if "TEACHER_PT" in words else "")
            + (" and TRAIN_CACHE the training cache" if "TRAIN_CACHE" in outs else "")
            + (" and VAL_CACHE the validation cache" if "VAL_CACHE" in outs else "")
            + "; labels of the same images by the same teacher and tiling are found by their "
            "content and kept, not made again")


def _left_out_advice(cache, others: list[str], key: str) -> str:
    """How to train on `others`, labels in the cache that its last run did not select. Those of
    that run's --data come back with a run selecting them; those of another --data or --split
    no run on that --data selects, and `key` names one cache: both train together only from a
    cache labelled from one --data holding all their images."""
    reselect = ("to use {} too, label a selection of that run's --data that includes them into "
                "this cache (what is labelled is skipped)")
    merge = (f"{key} reads one cache, so to train on both, label one --data that holds all "
             "their images (e.g. one folder of both) into a new cache")
    clips = cache.left_out()
    if skipped := sum(n in clips for n in others):
        said = (f"the {skipped} of clips that run left out (its warnings say why: over the pixel "
                "budget, SHARPEN_MAX_PIXELS, or unreadable) come back with a run that reads them")
        rest = [n for n in others if n not in clips]
        return said + (f"; of the other {len(rest)}: {_left_out_advice(cache, rest, key)}"
                       if rest else "")
    elsewhere = cache.elsewhere()
    if elsewhere is None:   # a record from before it listed them: either may be true
        return (f"{reselect.format('those of its --data')}; those of another --data or --split "
                f"no run on that --data selects: {merge}")
    foreign = sum(n in elsewhere for n in others)
    if not foreign:
        return reselect.format("them")
    if foreign == len(others):
        return ("they are of inputs that run's --data does not list (another --data or --split), "
                f"which no run on it selects: {merge}")
    return (f"{reselect.format(f'the {len(others) - foreign} of inputs it lists')}; the other "
            f"{foreign} are of inputs it does not list (another --data or --split), which no "
            f"run on it selects: {merge}")


def pairs_from_source(info: SourceInfo) -> list[tuple[Path, Path, None]]:
    """(input, gt, None) for the samples of a source that have ground truth (teacher training)."""
    with_gt = [s for s in info.samples if s.gt is not None and s.frame is None]
    if not with_gt:
        root = shell_quote(str(info.root))
        # What to do with it, not only what it is not: a user's own folder is often photos or
        # footage, and the commands that make training data of either were left unsaid.
        photos = (f"sharp photos become pairs with `sharpen synth --sharp {root} --out "
                  "PAIRS`; " if info.kind == "folder" else "")
        raise ValueError(f"{info.kind} source {info.root} has no ground truth; training on "
                         f"ground truth needs a GoPro or paired source ({photos}blurred "
                         f"footage trains a student with `sharpen labels --data {root} --out "
                         "CACHE` then `sharpen distill data.labels=CACHE`)")
    if len(with_gt) < len(info.samples):
        warn(f"{count(len(info.samples) - len(with_gt), 'sample')} without ground truth ignored",
             stacklevel=2)
    return [(s.input, s.gt, None) for s in with_gt]
