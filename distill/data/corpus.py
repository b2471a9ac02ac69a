"""A paired training corpus from a folder of sharp photos, split by photo.

The split is a pure function of each photo's path relative to the root, so it never changes when
photos are added elsewhere and a test photo is never trained on:
- test:  every photo under a folder named in `TEST_FOLDERS` (Kodak24 and McMaster in
         `../shared/data/photos`); a root with none of them holds out 1 photo in 10 by hash;
- val:   1 in 25 of the remaining photos, by hash;
- train: the rest.
The frames of a clip (`_clips`: several runs of images numbered in order, of one size, as
ffmpeg extracts them) go whole to one split, by a hash of the clip: neighbouring frames are
near-duplicates, so a test frame between two training frames scored what was trained on.
Blurred pairs go to OUT/{train,val,test}/{input,target}/NAME.png (the paired-folder layout every
training and labelling command reads). Train pairs are random crops (several blurs per photo);
val and test pairs are one centre crop per photo (`test_crop`, or the photo's short side when
smaller), blurred with the `test` preset.

OUT/corpus.json records the recipe, the photo folder and, per photo, its split, name, size,
mtime and content digest. A rerun into the same OUT (same recipe and photos, else refused) first removes the pairs
of photos deleted, moved to another split or changed since, and temp files of a killed run, then
makes the pairs that are missing.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from runtime.atomic import atomic_write_json
from runtime.console import count
from runtime.imageio import shown_path
from runtime.warn import warn

from ..images import (ImageReadError, decode_image, read_image, to_rgb_float, warn_16_bit,
                      write_image)
from .scene_blur import SYNTHESIS_VERSION, SceneBlurConfig, preset, synthesize_pair

TEST_FOLDERS = ("kodak24", "mcmaster")
SPLITS = ("train", "val", "test")
SMALL_NAMED = 5   # photos smaller than the crop named a line each; the rest are counted
_NUMBERED = re.compile(r"^(.*?)(\d+)$")


def _bucket(rel: str, n: int) -> int:
    return int(hashlib.sha1(rel.encode()).hexdigest()[:8], 16) % n


def split_photos(root: str | Path) -> dict[str, list[Path]]:
    """Photos under `root` (recursively) by split; see the module docstring for the rule."""
    return _split(root)[0]


def corpus_clips(corpus: str | Path) -> dict[str, str]:
    """The clip of each training pair of a corpus (the pair's name without its copy number,
    as a sample of the corpus is named) whose photo is a video frame, from corpus.json; {}
    for another folder or a corpus made before clips were recorded. `labels --hold-out` holds
    out whole clips by it: by name it held out a clip's last frames and trained on the rest."""
    try:
        meta = json.loads((Path(corpus) / "corpus.json").read_text(encoding="utf-8"))
        index = meta.get("photo_index") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return {e["name"]: e["clip"] for e in index.values()
            if isinstance(e, dict) and e.get("clip") and e.get("split") == "train"}


def _split(root: str | Path) -> tuple[dict[str, list[Path]], dict[str, str]]:
    """`split_photos`, and the clip of each photo that is a video frame, by its path in root."""
    from .sources import _images_under

    root = Path(root)
    if root.is_file():
        raise FileNotFoundError(f"--photos {root} is a file; give the folder of photos "
                                f"({root.parent}?)")
    if not root.is_dir():
        raise FileNotFoundError(f"photo folder {root} does not exist")
    others: list[str] = []
    # In the characters' order of their paths, not the numbers' (_images_under): each pair's
    # pasted objects come from a photo picked by its place in this list, and bsds500's 10081
    # and 100007 swapped places, so the same photos made other pairs than before.
    files = [root / r for r in sorted(_images_under(root, others=others),
                                      key=lambda r: r.as_posix())]
    from runtime.imageio import VIDEO_EXTS
    others = sorted(Path(o).relative_to(root).as_posix() for o in others)
    clips = [o for o in others if Path(o).suffix.lower() in VIDEO_EXTS]
    # A folder of sharp clips read "no images found", as if empty: the corpus blurs photos,
    # so a clip's frames go in as photos, a folder a clip (each clip goes to one split).
    extract = ""
    if clips:
        from runtime.console import shell_join
        first = Path(clips[0])
        frames = f"frames/{first.with_suffix('').as_posix()}"
        extract = ("; extract their frames as photos first, a folder a clip, as for the first: "
                   f"mkdir -p {shell_join([frames])} && "
                   f"{shell_join(['ffmpeg', '-i', str(root / first), frames + '/%05d.png'])}, "
                   "and so on, then --photos frames (a folder a clip: each clip's frames go "
                   "whole to one split, as neighbouring frames are near-duplicates); blurred "
                   "footage is labelled as it is: "
                   f"{shell_join(['sharpen', 'labels', '--data', str(root), '--out', 'CACHE'])}")
    if not files:
        holds = (f": it holds {count(len(clips), 'video clip')} ({', '.join(clips[:5])}"
                 f"{', ...' if len(clips) > 5 else ''}){extract}") if clips else ""
        raise ValueError(f"no images found under {root}{holds}")
    from runtime.sources import warn_not_images
    warn_not_images(f"--photos {root}", others, "the corpus", extract)
    rels = [f.relative_to(root).as_posix() for f in files]
    named_test = any(part in TEST_FOLDERS for r in rels for part in r.split("/")[:-1])
    out: dict[str, list[Path]] = {s: [] for s in SPLITS}
    in_test = {rel: any(part in TEST_FOLDERS for part in rel.split("/")[:-1]) for rel in rels}
    clip = _clips(root, [rel for rel in rels if not in_test[rel]], len(rels))
    for f, rel in zip(files, rels):
        key = clip.get(rel, rel)
        if named_test:
            is_test = in_test[rel]
        else:
            is_test = _bucket(key, 10) == 0
        split = "test" if is_test else ("val" if _bucket("val:" + key, 25) == 0 else "train")
        out[split].append(f)
    return out, clip


def _clips(root: Path, rels: list[str], total: int) -> dict[str, str]:
    """The clip of each photo that is a video frame ("day1/walk/*", "walk_*"), by rel path.
    A clip's frames: 3 or more images of one folder named PREFIX + numbers in order (00001.png,
    walk_00002.png) and of one size, as ffmpeg writes them, at least half of the numbers from
    the first to the last (a sharp clip's blurred frames deleted by hand left a gap, and that
    clip was split by frame; bsds500's sparse numbers are photos), whose neighbours look
    alike (`_alike`: McMaster's 01.png..18.png, one size, are photos); and only where there
    are two clips at least, or photos beside one (`total` images in all). One run alone is
    left to the photo rule, with a warning: as one clip it went whole to one split, leaving the
    others empty. Urban100's img_001..img_100
    differ in size: photos. A phone numbers its photos alike (day1/IMG_0001.JPG ..., one size)
    but writes its make and model in their EXIF, which ffmpeg's frames lack: photos too."""
    runs: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for rel in rels:
        folder, _, name = rel.rpartition("/")
        if m := _NUMBERED.match(name.rpartition(".")[0] or name):
            runs.setdefault((folder, m.group(1)), []).append((int(m.group(2)), rel))
    clips: dict[str, list[str]] = {}
    for (folder, prefix), frames in runs.items():
        numbers = sorted(n for n, _ in frames)
        if len(numbers) < 3 or numbers[-1] - numbers[0] + 1 > 2 * len(numbers):
            continue
        headers = [_header(root / rel) for _, rel in frames]
        if any(camera for _, camera in headers) or len({size for size, _ in headers} - {None}) != 1:
            continue
        if not _alike(root, [rel for _, rel in sorted(frames)]):
            continue
        clips[f"{folder}/{prefix}*" if folder else f"{prefix}*"] = [rel for _, rel in frames]
    if len(clips) == 1 and len(next(iter(clips.values()))) == total:
        (name, frames), = clips.items()
        warn(f"--photos {root}: its {len(frames)} images {name} look like the frames of one "
             "clip (numbered in order, one size), split by photo as photos are, so a test "
             "frame's neighbours may be trained on; to keep whole clips apart, give the frames "
             "of several clips (a folder each, or CLIP_00001.png)")
        return {}
    return {rel: name for name, frames in clips.items() for rel in frames}


def _alike(root: Path, rels: list[str], pairs: int = 4) -> bool:
    """Whether neighbouring images of a numbered run look alike, as a clip's frames do: the
    middle of one found in the next (normalised cross-correlation of 64x64 grey thumbnails,
    shifts up to a quarter of the frame: a pan). Neighbouring frames of reds-mini's clips
    scored 0.86 at least, of a 5%-a-frame pan 0.99; neighbouring photos of the shared
    McMaster, Kodak24, Urban100, BSDS500 and Sun-Hays 80 0.75 at most but for one pair
    (Sun-Hays' img_077 and img_078, two landscapes of sky over ground: 0.91). The median of a
    few pairs spread over the run, so neither such a pair nor a scene cut decides it: of every
    run of 3 to 40 neighbouring photos of those sets it is under 0.8. It decodes 8 images at
    full size, about a second a 1080p clip of PNG frames."""
    import cv2

    def thumb(rel: str) -> np.ndarray | None:
        try:
            data = np.fromfile(root / rel, np.uint8)   # any path, as OpenCV's imread is not
        except OSError:
            return None
        img = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
        return None if img is None else cv2.resize(img, (64, 64), interpolation=cv2.INTER_AREA)

    scores = []
    for i in sorted({round(k * (len(rels) - 2) / max(1, pairs - 1)) for k in range(pairs)}):
        a, b = thumb(rels[i]), thumb(rels[i + 1])
        if a is None or b is None:
            continue   # unreadable: named when the photo is read
        score = cv2.matchTemplate(b, a[16:48, 16:48], cv2.TM_CCOEFF_NORMED).max()
        scores.append(1.0 if not np.isfinite(score) else float(score))   # flat: a fade
    return not scores or float(np.median(scores)) >= 0.8


def _header(path: Path) -> tuple[tuple[int, int] | None, bool]:
    """The pixel size from the file's header (no decoding), None where it cannot be read; and
    whether its EXIF names a camera's make or model (a photo, not an extracted frame)."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            # A PNG's EXIF may follow its pixels: Pillow decodes the whole image to find it.
            exif = im.getexif() if im.format != "PNG" or "exif" in im.info else {}
            return im.size, bool(exif.get(0x010F) or exif.get(0x0110))   # Make, Model
    except Exception:   # noqa: BLE001 - an unreadable photo is named when it is read
        return None, False


def _names(root: Path, files: list[Path]) -> dict[Path, str]:
    """Flat, distinct output names: the relative path without extension ('/' -> '_'); a name
    two photos would share (a.jpg and a.png, x/a_b and x_a/b) gets its extension and a counter.
    Shared letter case aside: on macOS' and Windows' file systems A.jpg's pairs are a.png's."""
    base = {f: f.relative_to(root).with_suffix("").as_posix().replace("/", "_") for f in files}
    seen: dict[str, int] = {}
    for v in base.values():
        seen[v.casefold()] = seen.get(v.casefold(), 0) + 1
    out, used = {}, set()
    for f, v in base.items():
        name = v if seen[v.casefold()] == 1 else f"{v}_{f.suffix.lstrip('.').lower()}"
        while name.casefold() in used:
            name += "_"
        used.add(name.casefold())
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
                 workers: int = 1, say: Callable[[str], None] | None = None,
                 threads: int = 0) -> dict:
    """Write the paired corpus; skips pairs already written (safe to re-run after a kill) and
    first removes the pairs of photos since deleted, moved to another split or changed.
    `workers` > 1 synthesises photos in that many processes (each pair is a pure function of its
    photo and name, so the corpus is the same); each process, this one too, runs `threads`
    OpenCV threads (0: runtime.host.default_threads, as --threads 0 means everywhere).
    Returns {split: pairs written or present, "failed": [messages of unreadable photos],
    "small": [messages of photos smaller than the crop, skipped], "small_in": {split: how
    many of those}, "photos": {split: photos in it}, "duplicates": [messages of the photos
    skipped as copies of another split's]}. `say` takes the run's notes (stale pairs removed,
    a moved photo folder); by default they go to stderr with `progress` and nowhere without
    it. Problems (a photo skipped, an empty split) are `runtime.SharpenWarning`s either way."""
    if say is None:
        say = _note if progress else (lambda msg: None)
    opts = opts or CorpusOptions()
    root, out = Path(photos), Path(out)
    _refuse_out_inside_photos(out, root)
    _refuse_another_data_set(out)
    by_split, clips = _split(root)
    names = {s: _names(root, by_split[s]) for s in SPLITS}
    meta = {"photos": str(root.resolve()), "synthesis": SYNTHESIS_VERSION,
            "options": asdict(opts),
            # Sorted: corpus.json is byte-identical between identical runs.
            "presets": {p: asdict(preset(p)) for p in sorted({*opts.mix, opts.test_preset})}}
    from ..run_lock import run_lock

    # One run per corpus: the clean-up below would otherwise delete another run's files.
    with run_lock(out, doing="writing a corpus", flag="--out"), _opencv_threads_set(threads):
        old = _check_same_recipe(out, meta)
        index = _photo_index(root, names, old.get("photo_index") or {}, clips)
        _check_same_photos(out, old, meta["photos"], index, say)
        duplicates = _skip_duplicates(root, index, by_split, say)
        _warn_empty_splits(root, out, by_split, splits, len(set(clips.values())), len(clips))
        _remove_temp_files(out)
        if old:   # only in a corpus of ours: --out may be another dataset by mistake
            _remove_stale_pairs(out, index, opts, old, say)
        counts = {s: _pairs_on_disk(out, s) for s in SPLITS}
        if old and (kept := sum(counts.values())):
            # A rerun after a kill and a fresh start looked the same until the bar moved.
            say(f"{out}: keeping {count(kept, 'pair')} an earlier run wrote with these photos "
                "and options; only missing pairs are made")
        # Written first too, so a run killed half-way still records how its pairs were made
        # (and, through photo_index, which photos the pairs on disk were made from).
        atomic_write_json(out / "corpus.json", {**meta, "counts": counts, "photo_index": index})
        summary = _write_pairs(root, out, by_split, names, opts, splits, progress, workers,
                               threads)
        counts.update({s: summary[s] for s in splits})
        summary["clips"] = len(set(clips.values()))
        summary["duplicates"] = duplicates
        atomic_write_json(out / "corpus.json", {**meta, "counts": counts, "photo_index": index})
    return summary


def _note(msg: str) -> None:
    print(msg, file=sys.stderr)


def _refuse_out_inside_photos(out: Path, root: Path) -> None:
    """A corpus written inside its photo folder would be read back as photos by the next run:
    blurred pairs taken for sharp photos, some of them in the test split."""
    where = out.resolve()
    if root.is_dir() and root.resolve() in (where, *where.parents):
        raise ValueError(f"--out {out} is inside --photos {root}: a rerun would take its "
                         f"blurred pairs for sharp photos; choose an --out outside {root}")


def _refuse_another_data_set(out: Path) -> None:
    """A corpus written into another data set (a `synth` paired folder, a label cache, a folder
    of photos: a slip of the path) mixed with it: `labels --data` on a paired folder labelled
    its input/ alone, and a label cache is refused as a data source."""
    from .label_cache import is_label_cache
    from .sources import data_set_in
    if (out / "corpus.json").is_file():
        return   # a corpus of ours: rerun, checked against its recipe
    what = "a label cache" if is_label_cache(out) else data_set_in(out)
    if what:
        raise ValueError(f"--out {out} holds {what}, not a corpus: its files and the corpus's "
                         "pairs would mix; choose a new folder")


def _warn_empty_splits(root: Path, out: Path, by_split: dict[str, list[Path]],
                       splits: tuple[str, ...], n_clips: int = 0, n_frames: int = 0) -> None:
    """A warning per empty val or test split, saying what it does to the steps after the corpus
    and what the user can do: by hash about 1 photo in 10 goes to test and 1 in 25 to val, so a
    small folder can leave both empty. "No photo fell in the val split" alone left a user's
    `labels --hold-out` validating on the test split that `evaluate` reported on. `n_clips`:
    the clips of frames among them, each whole in one split (a few clips leave val and test
    empty however many frames), `n_frames` their frames (fewer than the photos: photos too)."""
    n = sum(len(v) for v in by_split.values())
    mixed = n_clips and n_frames < n
    n = (f"{n} photos, {f'{n_frames} of them ' if mixed else ''}the frames of "
         f"{count(n_clips, 'clip')}, each clip whole in one split" if n_clips else f"{n} photos")
    whole = "photos and clips" if mixed else "clips" if n_clips else "photos"
    more, one = ("photos or clips", "photo or clip") if mixed else (whole, whole[:-1])
    # A clip's frames go by a hash of the clip: "of its path" told a user theirs went one by one.
    hashed = "its path or its clip's" if n_clips else "its path"
    if "val" in splits and not by_split["val"]:
        warn(f"{root}: no photo fell in the val split ({n}; 1 in 25 goes to val, by a "
             f"hash of {hashed}): `sharpen labels --hold-out` holds out whole training {whole} "
             f"instead, and `sharpen train`/`train-teacher` runs given data.val={out} validate "
             "on its test split, the images `sharpen evaluate` scores by default (they warn); "
             f"no option of `sharpen corpus` sets the split sizes: add {more} (about 25 per "
             f"val {one})")
    if "test" in splits and not by_split["test"]:
        # Never with a kodak24/ or mcmaster/ subfolder: every photo under one is a test photo.
        warn(f"{root}: no photo fell in the test split ({n}; 1 in 10 goes to test, by "
             f"a hash of {hashed}): `sharpen evaluate --data {out}` has nothing to score by "
             "default (its --split is test); "
             + ("keep a clip out of --photos and score its blurred and sharp frames as pairs "
                "(sharpen evaluate --data PAIRS, README: With sharp clips too), or add clips"
                if n_clips else
                f"every photo under a subfolder named {' or '.join(TEST_FOLDERS)} is the test "
                "split (and no other photo then), or add photos"))


def _photo_index(root: Path, names: dict[str, dict[Path, str]],
                 before: dict[str, dict], clips: dict[str, str]) -> dict[str, dict]:
    """Per photo (relative path): its split, its pairs' name, the clip it is a frame of (for
    `corpus_clips`), size and content digest, which a
    rerun compares to find photos changed since (`_same_photo`). The digest is taken again
    only when size or mtime moved: a copy, `touch` or a fresh download of the same photos
    changes mtimes, and must not cost the corpus its pairs."""
    index = {}
    for split, name_of in names.items():
        for f, name in name_of.items():
            rel, st = f.relative_to(root).as_posix(), f.stat()
            was = before.get(rel) or {}
            digest = (was.get("blake2b") if (was.get("size"), was.get("mtime_ns"))
                      == (st.st_size, st.st_mtime_ns) else None)
            if digest is None:
                digest = hashlib.blake2b(f.read_bytes(), digest_size=16).hexdigest()
            index[rel] = {"split": split, "name": name, "size": st.st_size,
                          "mtime_ns": st.st_mtime_ns, "blake2b": digest}
            if rel in clips:
                index[rel]["clip"] = clips[rel]
    return dict(sorted(index.items()))


def _skip_duplicates(root: Path, index: dict[str, dict], by_split: dict[str, list[Path]],
                     say: Callable[[str], None]) -> list[str]:
    """Photos with the same bytes as a photo of another split (by the index's digest) are left
    out of `by_split` and marked `duplicate_of` in `index`; returns a message naming each. By
    path alone a copy of kodak24/k0.png elsewhere went to training: the test photo was trained
    on. The copy in the held-out split stays (test, then val, then train). Copies within one
    split are only noted: they weigh a photo double, and leak nothing."""
    rank = {s: i for i, s in enumerate(("test", "val", "train"))}
    first: dict[str, str] = {}
    for rel in sorted(index, key=lambda r: (rank[index[r]["split"]], r)):
        first.setdefault(index[rel]["blake2b"], rel)
    said: list[str] = []
    same_split: list[str] = []
    for rel, entry in index.items():
        kept = first[entry["blake2b"]]
        if kept == rel:
            continue
        if index[kept]["split"] == entry["split"]:
            same_split.append(f"{shown_path(root / rel)} of {shown_path(root / kept)}")
            continue
        entry["duplicate_of"] = kept
        by_split[entry["split"]].remove(root / rel)
        said.append(f"{shown_path(root / rel)} is a duplicate of {shown_path(root / kept)} "
                    f"(the same bytes), a {index[kept]['split']} photo: it would be "
                    f"{'trained' if entry['split'] == 'train' else 'validated'} on")
    for msg in said[:SMALL_NAMED]:
        warn(f"skipped: {msg}")
    if len(said) > SMALL_NAMED:
        warn(f"skipped {len(said) - SMALL_NAMED} more duplicates of photos of another split "
             "(corpus.json's photo_index names the photo each copies, as duplicate_of)")
    if same_split:
        one = len(same_split) == 1
        say(f"note: {count(len(same_split), 'photo')} {'is a copy' if one else 'are copies'} "
            f"of another photo of {'its' if one else 'their'} split, the same bytes "
            f"({same_split[0]}{'' if one else ', ...'}); kept: "
            f"{'its' if one else 'their'} pairs weigh that photo double")
    return said


def _same_photo(was: dict | None, now: dict) -> bool:
    """The pairs made from `was` still stand for `now`: same split, name and content (mtime
    aside). An entry without a digest (the first version of the index) compares by mtime."""
    if not was:
        return False
    keys = ("split", "name", "size") + (("blake2b",) if "blake2b" in was else ("mtime_ns",))
    return all(was.get(k) == now.get(k) for k in keys)


def _pair_names(name: str, split: str, opts: CorpusOptions) -> list[str]:
    """The file names of one photo's pairs (in SPLIT/input and SPLIT/target)."""
    if split == "train":
        return [f"{name}_{c}.png" for c in range(opts.copies)]
    return [f"{name}.png"]


def _pair_files(out: Path, split: str) -> dict[str, list[Path]]:
    """The pair files on disk in a split, by name (hidden temp files left out)."""
    found: dict[str, list[Path]] = {}
    for side in ("input", "target"):
        folder = out / split / side
        if folder.is_dir():
            for p in folder.glob("*.png"):
                if not p.name.startswith("."):
                    found.setdefault(p.name, []).append(p)
    return found


def _pairs_on_disk(out: Path, split: str) -> int:
    return sum(len(v) == 2 for v in _pair_files(out, split).values())


def _remove_temp_files(out: Path) -> None:
    """Temp files of atomic writes killed mid-way (.NAME.png.XXXX.png, .corpus.json.XXXX.tmp):
    a rerun never overwrites them, and a reader that lists the folder would take one for a
    damaged image. The caller holds the corpus lock, so none belongs to a live run."""
    temps = [*out.glob(".corpus.json.*.tmp")]
    for split in SPLITS:
        for side in ("input", "target"):
            temps += (out / split / side).glob(".*.png")
    for p in temps:
        with contextlib.suppress(OSError):
            p.unlink()


def _remove_stale_pairs(out: Path, index: dict[str, dict], opts: CorpusOptions,
                        old: dict, say: Callable[[str], None]) -> int:
    """Remove every pair no current, unchanged photo accounts for: pairs of photos deleted or
    moved to another split (a photo moved into kodak24/ would be tested on what it was trained
    on), renamed, or changed since their pairs were made (their `photo_index` entry differs).
    Rerunning only fills in missing pairs, so these would stay. Returns how many it removed."""
    was = old.get("photo_index")
    if was is None:
        # Written before photos were recorded: the pairs present are trusted rather than the
        # corpus rebuilt (hours for a large one). Pairs of deleted or moved photos still go
        # (their names match no current photo); a photo replaced under its name is missed.
        say(f"note: {out / 'corpus.json'} predates photo signatures: existing pairs of "
            "current photos are kept (delete the corpus to rebuild it if a photo was "
            "replaced under the same name)")
    keep: dict[str, set[str]] = {s: set() for s in SPLITS}
    for rel, entry in index.items():
        if "duplicate_of" in entry:   # its pairs, made before duplicates were found, go
            continue
        if was is None or _same_photo(was.get(rel), entry):
            keep[entry["split"]].update(_pair_names(entry["name"], entry["split"], opts))
    removed = 0
    for split in SPLITS:
        on_disk = _pair_files(out, split)
        for name in set(on_disk) - keep[split]:
            for f in on_disk[name]:
                f.unlink(missing_ok=True)
            removed += 1
    if removed:
        copies = any("duplicate_of" in e for e in index.values())
        copy = ", or copies a photo of another split" if copies else ""
        whose = ("its photo was deleted, moved to another split or changed since (a changed "
                 f"one is made again){copy}" if removed == 1 else "their photos were deleted, "
                 f"moved to another split or changed since (changed ones are made again){copy}")
        say(f"removed {count(removed, 'stale pair')} from {out}: {whose}")
    return removed


def _write_pairs(root: Path, out: Path, by_split: dict[str, list[Path]],
                 names: dict[str, dict[Path, str]], opts: CorpusOptions,
                 splits: tuple[str, ...], progress: bool, workers: int,
                 threads: int = 0) -> dict:
    """Make the missing pairs of `splits`; returns {split: pairs written or present,
    "failed": [unreadable photos], "small": [photos smaller than the crop],
    "small_in": {split: how many of them}, "small_side": the shortest side among them,
    "photos": {split: photos}}. Says once how many of
    the photos read were 16-bit (their pairs are 8-bit), as `synth` does."""
    from runtime.progress import progress as bar

    summary: dict = {"failed": [], "small": [], "small_in": {s: 0 for s in splits},
                     "photos": {s: len(by_split[s]) for s in splits}}
    pool = corpus_pool(workers, threads) if workers > 1 else None
    deep: list[str] = []   # 16-bit photos made into pairs now (relative paths)
    read = 0               # photos decoded now; those whose pairs were all present are not
    try:
        for split in splits:
            files = by_split[split]
            jobs = [(i, files, names[split], split, opts, out) for i in range(len(files))]
            results = (pool.map(_photo_pairs, jobs, chunksize=4) if pool
                       else map(_photo_pairs, jobs))
            n = 0
            # The bar first: zip stops at the first iterator to end, and the bar counts a photo
            # when asked for the next one, so after the file list it ended a photo short.
            for (written, skipped, too_small, bits), f in zip(
                    bar(results, total=len(jobs), desc=f"corpus {split}", unit="photo",
                        quiet=not progress), files):
                n += written
                read += bits > 0
                if bits == 16 and written:
                    deep.append(f.relative_to(root).as_posix())
                if skipped:
                    # Smaller than the crop is expected (--crop 384 over photos of all sizes)
                    # and not a failure; an unreadable photo is. A few of the small are named:
                    # a clip's frames share a size, and 8 short clips printed 84 lines.
                    summary["small" if too_small else "failed"].append(skipped)
                    summary["small_in"][split] += bool(too_small)
                    if too_small:
                        summary["small_side"] = min(summary.get("small_side", too_small),
                                                    too_small)
                    if not too_small or len(summary["small"]) <= SMALL_NAMED:
                        warn(f"skipped: {skipped}")
            summary[split] = n
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    warn_16_bit(sorted(deep), read, "corpus")
    return summary


def corpus_pool(workers: int, threads: int = 0):
    """The process pool of `build_corpus`: `workers` processes, each on `threads` OpenCV
    threads (0: default_threads). OpenCV reads no OMP_NUM_THREADS, so each worker ran a thread
    per core. Spawned, not forked: cv2.setNumThreads in a forked worker hangs where the parent
    had run OpenCV's thread pool, whose threads a fork does not copy; a spawned worker starts
    with none (and its imports take a fraction of a second)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from runtime.host import default_threads

    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(default_threads(threads),))


def _start_worker(threads: int | None) -> None:
    _exit_with_parent()
    if threads:
        import cv2
        cv2.setNumThreads(threads)


def opencv_threads(_: object = None) -> int:
    """The OpenCV thread count of the process it runs in (a pool's worker)."""
    import cv2
    return cv2.getNumThreads()


@contextlib.contextmanager
def _opencv_threads_set(threads: int):
    """OpenCV on `threads` threads (0: default_threads; None of those: as it was) in this
    process while the corpus is made, as it was afterwards (a caller's own setting kept)."""
    import cv2

    from runtime.host import default_threads

    n, was = default_threads(threads), cv2.getNumThreads()
    if n:
        cv2.setNumThreads(n)
    try:
        yield
    finally:
        cv2.setNumThreads(was)


def _exit_with_parent() -> None:
    """Pool initializer: a worker ends when the corpus process does, however that dies (kill -9,
    the OOM killer, SIGTERM). Left alone it went on writing into --out, then waited for work
    forever, adopted by init. The parent's sentinel (a pipe multiprocessing keeps open to it)
    closes when it dies, under any start method (with forkserver, the OS parent is the fork
    server, so the parent pid says nothing)."""
    import multiprocessing
    from multiprocessing.connection import wait

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


def _photo_pairs(job: tuple) -> tuple[int, str | None, int, int]:
    """The pairs of photo `i` of a split: (pairs written or present, why it was skipped,
    its short side where that was because it is smaller than the crop (0: unreadable), the
    photo's bit depth: 8 or 16, 0 when it was not decoded)."""
    i, files, name_of, split, opts, out = job
    f = files[i]
    train = split == "train"
    cfgs = [preset(p) for p in (opts.mix if train else (opts.test_preset,))]
    names = _pair_names(name_of[f], split, opts)
    copies = len(names)
    if all((out / split / "input" / nm).exists() and (out / split / "target" / nm).exists()
           for nm in names):
        return copies, None, 0, 0
    try:
        raw = decode_image(f)   # its bit depth, which the float image no longer has
        img = to_rgb_float(raw, str(f))
    except ImageReadError as e:
        return 0, str(e), 0, 0
    bits = 16 if raw.dtype == np.uint16 else 8
    side = opts.crop
    if not train:  # one centre crop: as large as the photo allows, up to test_crop
        side = max(opts.crop, min(opts.test_crop, min(img.shape[:2])) // 8 * 8)
    if min(img.shape[:2]) < side:
        return (0, f"{shown_path(f)}: {img.shape[1]}x{img.shape[0]} is smaller than the "
                   f"{side}-px crop", min(img.shape[:2]), bits)
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
    return copies, None, 0, bits


def _check_same_photos(out: Path, old: dict, photos: str, index: dict[str, dict],
                       say: Callable[[str], None]) -> None:
    """A corpus rerun from another photo folder: fine when it holds the same photos (moved,
    copied, mounted elsewhere; most of the recorded ones are there with the same content),
    refused otherwise: its stale-pair clean-up would throw away the corpus, and without a
    recorded index its pairs would mix with those of other photos."""
    was = old.get("photos", photos)
    if was == photos:
        return
    before = old.get("photo_index")
    same = sum(_same_photo(e, index.get(rel, {})) for rel, e in (before or {}).items())
    if before and same >= len(before) / 2:
        say(f"note: {out} was built from the photos in {was}, now read from {photos}: the "
            f"pairs of the {same} of its {count(len(before), 'photo')} found unchanged are kept")
        return
    raise ValueError(f"{out} was built from the photos in {was}, not {photos} (of its "
                     f"{len(before or {})} recorded photos {same} are here unchanged); its "
                     "pairs would mix with, or be replaced by, pairs of other photos: choose "
                     "another --out, or delete it")


def _check_same_recipe(out: Path, meta: dict) -> dict:
    """Refuse to add pairs to a corpus whose existing pairs were made another way or from other
    photos: re-running skips pairs already written, so the corpus would silently mix two
    recipes or two photo sets. Returns the corpus.json found ({} when there is none)."""
    path = out / "corpus.json"
    if not path.exists():
        return {}
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is unreadable ({e}); delete it, or the corpus, to rebuild") from e
    if not any(_pair_files(out, s) for s in SPLITS):
        # Nothing to mix with: a run whose photos were all smaller than the crop wrote none,
        # and the --crop its error advises must not then be refused.
        return {}
    was, now = old.get("synthesis", 1), meta["synthesis"]
    if was != now:
        raise ValueError(
            f"{out} was built by blur synthesis version {was} and this is version {now} "
            "(2 puts the sharp target at the centre of the blur trail); its pairs would mix "
            "with new ones: delete it or choose another --out")
    # Through JSON so tuples and lists compare equal.
    now_opts, was_opts = json.loads(json.dumps(meta["options"])), old.get("options") or {}
    if now_opts != was_opts:
        # Only what differs: both option sets in full hid a changed --copies among eight.
        diff = "; ".join(f"{k}: {was_opts.get(k)!r} -> {now_opts.get(k)!r}"
                         for k in sorted(set(was_opts) | set(now_opts))
                         if was_opts.get(k) != now_opts.get(k))
        raise ValueError(
            f"{out} was built with other options ({diff}); its pairs would mix with new ones: "
            "give the options it was built with, delete it or choose another --out")
    return old
