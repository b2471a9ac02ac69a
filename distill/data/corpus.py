"""A paired training corpus from a folder of sharp photos, split by photo.

The split is a pure function of each photo's path relative to the root, so it never changes when
photos are added elsewhere and a test photo is never trained on:
- test:  every photo under a folder named in `TEST_FOLDERS` (Kodak24 and McMaster in
         `../shared/data/photos`); a root with none of them holds out 1 photo in 10 by hash;
- val:   1 in 25 of the remaining photos, by hash;
- train: the rest.
Blurred pairs go to OUT/{train,val,test}/{input,target}/NAME.png (the paired-folder layout every
training and labelling command reads). Train pairs are random crops (several blurs per photo);
val and test pairs are one centre crop per photo (`test_crop`, or the photo's short side when
smaller), blurred with the `test` preset.
"""
from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from runtime.atomic import atomic_write_json

from ..images import ImageReadError, read_image, write_image
from .scene_blur import SYNTHESIS_VERSION, SceneBlurConfig, preset, synthesize_pair

TEST_FOLDERS = ("kodak24", "mcmaster")
SPLITS = ("train", "val", "test")


def _bucket(rel: str, n: int) -> int:
    return int(hashlib.sha1(rel.encode()).hexdigest()[:8], 16) % n


def split_photos(root: str | Path) -> dict[str, list[Path]]:
    """Photos under `root` (recursively) by split; see the module docstring for the rule."""
    from .sources import _images_under

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"photo folder {root} does not exist")
    files = [root / r for r in _images_under(root)]
    if not files:
        raise ValueError(f"no images found under {root}")
    rels = [f.relative_to(root).as_posix() for f in files]
    named_test = any(part in TEST_FOLDERS for r in rels for part in r.split("/")[:-1])
    out: dict[str, list[Path]] = {s: [] for s in SPLITS}
    for f, rel in zip(files, rels):
        if named_test:
            is_test = any(part in TEST_FOLDERS for part in rel.split("/")[:-1])
        else:
            is_test = _bucket(rel, 10) == 0
        split = "test" if is_test else ("val" if _bucket("val:" + rel, 25) == 0 else "train")
        out[split].append(f)
    return out


def _names(root: Path, files: list[Path]) -> dict[Path, str]:
    """Flat, distinct output names: the relative path without extension ('/' -> '_'); a name
    two photos would share (a.jpg and a.png, x/a_b and x_a/b) gets its extension and a counter."""
    base = {f: f.relative_to(root).with_suffix("").as_posix().replace("/", "_") for f in files}
    seen: dict[str, int] = {}
    for v in base.values():
        seen[v] = seen.get(v, 0) + 1
    out, used = {}, set()
    for f, v in base.items():
        name = v if seen[v] == 1 else f"{v}_{f.suffix.lstrip('.').lower()}"
        while name in used:
            name += "_"
        used.add(name)
        out[f] = name
    return out


def _crop(img: np.ndarray, side: int, rng: np.random.Generator | None) -> np.ndarray:
    h, w = img.shape[:2]
    if h < side or w < side:
        img = np.pad(img, ((0, max(0, side - h)), (0, max(0, side - w)), (0, 0)), mode="reflect")
        h, w = img.shape[:2]
    if rng is None:
        y, x = (h - side) // 2, (w - side) // 2
    else:
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    return img[y:y + side, x:x + side]


@dataclass
class CorpusOptions:
    preset: str = "gopro"          # training blur preset (distill.data.scene_blur.PRESETS)
    mix: tuple[str, ...] = ("gopro", "handheld", "mild")  # presets cycled over train copies
    test_preset: str = "gopro"
    copies: int = 3                # blurred crops per training photo
    crop: int = 256                # training crop side
    test_crop: int = 384           # val/test centre crop side
    margin: int = 48               # blurred on a larger window, so borders see real motion
    seed: int = 0


def _pair(img: np.ndarray, side: int, margin: int, rng: np.random.Generator,
          cfg: SceneBlurConfig, centre: bool, other: np.ndarray | None):
    big = _crop(img, side + 2 * margin, None if centre else rng)
    blurred, target = synthesize_pair(np.ascontiguousarray(big), rng, cfg, other)
    sl = (slice(margin, margin + side), slice(margin, margin + side))
    return blurred[sl], target[sl]


def build_corpus(photos: str | Path, out: str | Path, opts: CorpusOptions | None = None,
                 splits: tuple[str, ...] = SPLITS, progress: bool = True,
                 workers: int = 1) -> dict:
    """Write the paired corpus; skips pairs already written (safe to re-run after a kill).
    `workers` > 1 synthesises photos in that many processes (each pair is a pure function of its
    photo and name, so the corpus is the same). Returns {split: pairs written or present,
    "failed": [messages]}."""
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    opts = opts or CorpusOptions()
    root, out = Path(photos), Path(out)
    by_split = split_photos(root)
    empty = [s for s in splits if s != "train" and not by_split[s]]
    if empty:
        # By hash about 1 photo in 10 goes to test and 1 in 25 to val: a few photos can leave
        # both empty, and training would then have nothing to validate on.
        print(f"warning: {root}: no photo fell in the {' or '.join(empty)} split "
              f"({sum(len(v) for v in by_split.values())} photos; about 1 in 10 go to test, "
              f"1 in 25 to val); add photos (a subfolder named {' or '.join(TEST_FOLDERS)} "
              "becomes the test split)", file=sys.stderr)
    meta = {"photos": str(root.resolve()), "synthesis": SYNTHESIS_VERSION,
            "options": asdict(opts),
            "presets": {p: asdict(preset(p)) for p in set(opts.mix) | {opts.test_preset}}}
    counts = _check_same_recipe(out, meta)
    # Written first too, so a run killed half-way still records how its pairs were made.
    atomic_write_json(out / "corpus.json", {**meta, "counts": counts})
    summary: dict = {"failed": []}
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    try:
        for split in splits:
            files = by_split[split]
            name_of = _names(root, files)
            jobs = [(i, files, name_of, split, opts, out) for i in range(len(files))]
            results = (pool.map(_photo_pairs, jobs, chunksize=4) if pool
                       else map(_photo_pairs, jobs))
            n = 0
            for written, failed in tqdm(results, total=len(jobs), desc=f"corpus {split}",
                                        unit="photo", disable=not progress):
                n += written
                if failed:
                    summary["failed"].append(failed)
                    print(f"skipped: {failed}", file=sys.stderr)
            summary[split] = n
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    atomic_write_json(out / "corpus.json",
                      {**meta, "counts": {**counts, **{s: summary.get(s, 0) for s in splits}}})
    return summary


def _photo_pairs(job: tuple) -> tuple[int, str | None]:
    """The pairs of photo `i` of a split: (pairs written or present, why it was skipped)."""
    i, files, name_of, split, opts, out = job
    f = files[i]
    train = split == "train"
    cfgs = [preset(p) for p in (opts.mix if train else (opts.test_preset,))]
    copies = opts.copies if train else 1
    names = [f"{name_of[f]}_{c}.png" if train else f"{name_of[f]}.png" for c in range(copies)]
    if all((out / split / "input" / nm).exists() and (out / split / "target" / nm).exists()
           for nm in names):
        return copies, None
    try:
        img = read_image(f)
    except ImageReadError as e:
        return 0, str(e)
    side = opts.crop
    if not train:  # one centre crop: as large as the photo allows, up to test_crop
        side = max(opts.crop, min(opts.test_crop, min(img.shape[:2])) // 8 * 8)
    if min(img.shape[:2]) < side:
        return 0, f"{f}: {img.shape[1]}x{img.shape[0]} is smaller than the {side}-px crop; skipped"
    for c, nm in enumerate(names):
        rng = np.random.default_rng([opts.seed, SPLITS.index(split), _bucket(nm, 2**31), c])
        # Objects come from another photo of the same split (never across splits).
        other = None
        if len(files) > 1 and rng.uniform() < 0.7:
            j = int(rng.integers(len(files) - 1))
            try:
                other = read_image(files[j + (j >= i)])
            except ImageReadError:
                other = None
        blurred, target = _pair(img, side, opts.margin, rng, cfgs[c % len(cfgs)],
                                centre=not train, other=other)
        write_image(out / split / "target" / nm, target)
        write_image(out / split / "input" / nm, blurred)
    return copies, None


def _check_same_recipe(out: Path, meta: dict) -> dict:
    """Refuse to add pairs to a corpus whose existing pairs were made another way: re-running
    skips pairs already written, so the corpus would silently mix two recipes. Returns the
    pair counts the corpus records (kept for splits this run does not build)."""
    path = out / "corpus.json"
    if not path.exists():
        return {}
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is unreadable ({e}); delete it, or the corpus, to rebuild") from e
    was, now = old.get("synthesis", 1), meta["synthesis"]
    if was != now:
        raise ValueError(
            f"{out} was built by blur synthesis version {was} and this is version {now} "
            "(2 puts the sharp target at the centre of the blur trail); its pairs would mix "
            "with new ones: delete it or choose another --out")
    # Through JSON so tuples and lists compare equal.
    if json.loads(json.dumps(meta["options"])) != old.get("options"):
        raise ValueError(
            f"{out} was built with other options ({old.get('options')}); its pairs would mix "
            f"with new ones made with {meta['options']}: delete it or choose another --out")
    return old.get("counts", {})
