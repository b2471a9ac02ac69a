"""The training set a config names: teacher pairs (a paired folder, GoPro, the embedded images)
or a student's pseudo-label cache, with data.gt_train's ground-truth pairs mixed in; and the
config key named in every error about a data folder or checkpoint it points at."""
from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Callable

from torch.utils.data import Dataset

from .checkpoint import CheckpointError
from .config import TrainConfig
from .dist import DistInfo


@contextlib.contextmanager
def naming(key: str, value, hint: str | Callable[[], str] = ""):
    """A data folder or checkpoint that is missing or unusable named by the config key that
    points at it, and a missing one with how to make it: "label cache not found:
    runs/labels-centred/train" alone left a user of a shipped config guessing which setting
    that was and which command builds it, and "folder source X has no ground truth" read the
    same for data.train as for data.val. `hint` may be a function: worked out only when
    needed."""
    try:
        yield
    except (ValueError, FileNotFoundError, CheckpointError) as e:
        msg = str(e)
        if msg.startswith(f"{key}="):
            raise
        hint = (hint() if callable(hint) else hint) if "not found" in msg else ""
        kind = _absolute_and_gone(value) if "not found" in msg else None
        if kind is not None:
            # A config or command copied from another machine or an older project folder: what
            # it names is most often here under another path, not to be made again.
            hint += (f"{'; ' if hint else ''}or, if it was moved or copied from elsewhere, give "
                     f"{key}={kind}ITS_PATH_HERE")
        # The sources speak the commands' options (GoPro's "try --gopro-blur blur", a list
        # to "give as --data"), which training refuses: its settings are config keys.
        msg = msg.replace("--gopro-blur ", "data.gopro_blur=")
        # ("as --data", "inside: --data X"), not a command's ("`sharpen labels --data X`")
        msg = re.sub(r"(\bas |: |, )--data(?![\w-]) ?", rf"\1{key}=", msg)
        raise type(e)(f"{key}={value}: {msg}{f' ({hint})' if hint else ''}") from None


def _absolute_and_gone(value) -> str | None:
    """The `kind:` a data spec's absolute, missing path is given with ("" for none: a plain
    path or a checkpoint), None where the path is relative or there: gopro:/data/GOPRO of
    another machine was not told where to point data.train."""
    from .data.sources import parse_spec
    try:
        kind, raw = parse_spec(str(value))
        path = Path(raw).expanduser()
        if not path.is_absolute() or path.exists():
            return None
        return f"{kind}:" if kind else ""
    except (OSError, ValueError):
        return None


LABELS_HINT = "make it with `sharpen labels --data DATA --out {}`"
SOURCE_HINT = ("build it with `sharpen corpus --photos PHOTOS --out {}` (see the config's "
               "comments), or point it at a paired folder")


def _gt_train_items(cfg: TrainConfig, n_main: int) -> list:
    """data.gt_train's pairs with the ground truth as the label, as many as gt_train_share asks
    next to n_main other items."""
    d = cfg.data
    extra = [(inp, gt, None if cfg.task == "teacher" else gt)
             for inp, gt, _ in _source_pairs("data.gt_train", d.gt_train,
                                             gopro_blur=d.gopro_blur)]
    if d.gt_train_share > 0:
        n = max(1, round(n_main * d.gt_train_share / (1 - d.gt_train_share)))
        extra = [extra[i * len(extra) // n] for i in range(n)]
    return extra


def resolve_gt_source(spec: str, split: str, progress: bool = True, gopro_blur: str = "blur"):
    """resolve_source for training on ground truth: an empty folder was "no images or videos
    found" with a list of video extensions, though only pairs can be used here."""
    from runtime.sources import warn_not_images

    from .data.sources import NoImagesError, SourceError, resolve_source
    try:
        info = resolve_source(spec, split=split, progress=progress, gopro_blur=gopro_blur)
    except NoImagesError:
        raise SourceError(
            f"no images in {spec}: a ground-truth source is a paired folder, input/ + target/ "
            "(or blur/ + sharp/) holding same-named images, optionally under train/, val/, "
            f"test/, or a GoPro root (`sharpen corpus --photos PHOTOS --out {spec}` makes one "
            "from photos)") from None
    if DistInfo.from_env().main:   # every rank reads the data: said once
        warn_not_images(spec, [Path(p).name for p in info.not_images], "training",
                        videos=info.kind == "folder")
    return info


def _source_pairs(key: str, spec: str, progress: bool = True, gopro_blur: str = "blur") -> list:
    from .data.crops import pairs_from_source
    with naming(key, spec, SOURCE_HINT.format(spec)):
        pairs = pairs_from_source(resolve_gt_source(spec, "train", progress, gopro_blur))
    # In their paths' character order, as sources listed them before they read frame numbers
    # as numbers: random crops draw from them in any order, and the digest a resume compares
    # (data_signature) was taken in this one, which a new order would call changed data.
    return sorted(pairs, key=lambda t: Path(t[0]).as_posix())


def build_train_dataset(cfg: TrainConfig, progress: bool = True) -> Dataset:
    d = cfg.data
    if not 0 <= d.gt_train_share < 1:
        raise ValueError(f"data.gt_train_share must be in [0, 1), got {d.gt_train_share}")
    if d.gt_train_share and not d.gt_train:
        raise ValueError("data.gt_train_share is set but data.gt_train is empty: name the "
                         "source it draws from")
    if cfg.task == "teacher":
        if d.train == "embedded":
            if d.gt_train:
                raise ValueError("data.gt_train joins a folder source; with data.train=embedded "
                                 "(synthesised on the fly) set data.train to a folder too")
            from .data.embedded import EMBEDDED_BLUR, sharp_images
            from .data.synthetic import SyntheticBlurDataset
            return SyntheticBlurDataset([im for _, im in sharp_images("train")], crop=d.crop,
                                        blur=EMBEDDED_BLUR, seed=cfg.seed,
                                        brightness=d.brightness)
        from .data.crops import CropDataset
        items = _source_pairs("data.train", d.train, progress, d.gopro_blur)
    else:
        if not d.labels:
            raise ValueError("student training needs data.labels: the pseudo-label cache made "
                             "by `sharpen labels` (e.g. data.labels=runs/labels/train)")
        from .data.crops import CropDataset, pairs_from_labels
        with naming("data.labels", d.labels, LABELS_HINT.format(d.labels)):
            items = pairs_from_labels(d.labels, "data.labels")
    if d.gt_train:
        items = list(items) + _gt_train_items(cfg, len(items))
    if not items:
        raise ValueError(f"no training images found for task {cfg.task!r}")
    # A long virtual length: indices never wrap, so every step gets fresh random crops.
    return CropDataset(items, crop=d.crop, flips=d.flips, rot90=d.rot90,
                       brightness=d.brightness, seed=cfg.seed, length=10**9,
                       cache_size=d.cache_size)
