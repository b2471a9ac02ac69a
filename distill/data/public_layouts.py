"""The public deblurring sets in the layouts they are published in, read as blurred/sharp pairs:

- ``reds``  REDS: ``{split}/{split}_blur/<sequence>/<frame>.png`` beside
            ``{split}/{split}_sharp/...`` (or ``{split}_blur/`` + ``{split}_sharp/`` in the
            folder given); samples are named ``<sequence>/<frame>``.
- ``hide``  HIDE: blurred images under ``train/`` and ``test/`` (``test-close-ups/``,
            ``test-long-shot/``), the ground truth of both in ``GT/`` under the same file name;
            samples are named by the path under the split (``test-long-shot/<name>``).
- ``list``  a pair list, ``GT_PATH BLUR_PATH`` per line, paths from the list's folder
            (RealBlur's ``RealBlur_J_test_list.txt``; ``BLUR_PATH GT_PATH`` where every
            line's second path, and no first one, is in a gt/, sharp/ or target/ folder, or
            every first path, and no second one, in a blur/, blurred/ or input/ folder), or
            the folder holding the lists, whose ``*_{split}_list.txt`` is read; samples are
            named by the blurred path, less a top folder and a blurred folder all share
            (``scene001/blur_1``).
- ``bsd``   BSD (Zhong et al., ESTRNN): ``{train,valid,test}/<clip>/Blur/RGB/<frame>.png``
            beside ``<clip>/Sharp/RGB/``, or a split's or a clip's folder; samples are named
            ``<clip>/<frame>``.

Read as footage, these sets' sharp frames were scored as blurred inputs with no ground truth.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from runtime.console import count
from runtime.walk import walk_files
from runtime.warn import warn

from .sources import (_GT_FOLDER, SPLITS, Sample, SourceError, SourceInfo, _few, _images_under,
                      _match_pairs, _report_unmatched, _sample_names, is_image, list_hint,
                      name_key, pair_folders)

LAYOUTS = ("reds", "hide", "list", "bsd")
HIDE_SPLITS = ("train", "test")
LIST_SUFFIX = ".txt"


def layout_of(path: Path) -> Optional[str]:
    """Which of LAYOUTS `path` is in, or None."""
    if path.is_file():
        return "list" if path.suffix.lower() == LIST_SUFFIX else None
    if _reds_splits(path):
        return "reds"
    if _hide_root(path):
        return "hide"
    if _split_lists(path):
        return "list"
    if _bsd_splits(path):
        return "bsd"
    return None


def describe(kind: str) -> str:
    """The layout in words, for a folder named as an output by mistake."""
    return {"reds": "a REDS data set ({split}_blur/ + {split}_sharp/)",
            "hide": "a HIDE data set (train/, test/ + GT/)",
            "list": "a data set with pair lists (*_train_list.txt, *_test_list.txt)",
            "bsd": "a BSD data set (<clip>/Blur/RGB/ + <clip>/Sharp/RGB/)"}[kind]


def blurred_half(folder: Path) -> Optional[tuple[Path, str]]:
    """(the folder to give, its ground truth's folder name) where `folder` holds the blurred
    images of one of LAYOUTS alone: REDS' `val_blur/` beside `val_sharp/`, HIDE's `test/` (or
    `test/test-long-shot/`) whose ground truth is in `GT/` beside it, a BSD clip's `Blur/RGB/`
    beside `Sharp/RGB/`. None otherwise."""
    for s in SPLITS:
        if folder.name == f"{s}_blur" and (folder.parent / f"{s}_sharp").is_dir():
            return folder.parent, f"{s}_sharp"
    for split_dir in (folder, folder.parent):
        if split_dir.name in HIDE_SPLITS and _hide_root(split_dir.parent):
            return split_dir.parent, "GT"
    blur = folder.parent if folder.name == "RGB" else folder   # BSD's <clip>/Blur/RGB/, Blur/
    if blur.name == BSD_SIDES[0] and _is_bsd_clip(blur.parent):
        return blur.parent, f"{BSD_SIDES[1]}/RGB"
    return None


def resolve(kind: str, path: Path, split: str) -> SourceInfo:
    if kind == "reds":
        return _resolve_reds(path, split)
    if kind == "hide":
        return _resolve_hide(path, split)
    if kind == "bsd":
        return _resolve_bsd(path, split)
    return _resolve_list(path, split)


# --- REDS ---------------------------------------------------------------------------------------

def _reds_pair(folder: Path, split: str) -> Optional[tuple[Path, Path]]:
    blur, sharp = folder / f"{split}_blur", folder / f"{split}_sharp"
    return (blur, sharp) if blur.is_dir() and sharp.is_dir() else None


def _reds_splits(path: Path) -> dict[str, tuple[Path, Path]]:
    """Each split's (blurred, sharp) folders, under the split's folder or in `path` itself."""
    found = {}
    for s in SPLITS:
        dirs = (_reds_pair(path / s, s) if (path / s).is_dir() else None) or _reds_pair(path, s)
        if dirs:
            found[s] = dirs
    return found


def _resolve_reds(path: Path, split: str) -> SourceInfo:
    found = _reds_splits(path)
    if not found:
        raise SourceError(f"{path} is not a REDS folder: expected {{train,val}}/"
                          "{train,val}_blur/<sequence>/*.png beside {train,val}_sharp/")
    given = [s for s, (blur, _) in found.items() if blur.parent == path]
    if len(found) == 1 and given:   # a split's folder given alone: its pairs, whatever --split
        split = given[0]
    elif split not in found:
        # bench has no --split: the folder first, which every command takes
        raise SourceError(f"{path} has no {split!r} split (it has: {', '.join(found)}; REDS' "
                          f"test split has no sharp frames: give {path / 'val'} for its val "
                          "split, or --split val in evaluate and labels)")
    return pair_folders(*found[split], "reds", path, split)


# --- HIDE ---------------------------------------------------------------------------------------

def _hide_root(path: Path) -> bool:
    """GT/ beside train/ or test/ holding an image of the same name as one in GT/: a folder of
    photos with GT/ and test/ subfolders is footage, not a HIDE set that matches nothing."""
    gt = path / "GT"
    if not gt.is_dir():
        return False
    return any(is_image(f) and (gt / f.name).is_file()
               for s in HIDE_SPLITS if (path / s).is_dir()
               for f in walk_files(path / s, broken=[]))


def _resolve_hide(path: Path, split: str) -> SourceInfo:
    if split not in HIDE_SPLITS:
        raise SourceError(f"HIDE has splits train and test, not {split!r}")
    split_dir, gt_dir = path / split, path / "GT"
    if not split_dir.is_dir():
        raise SourceError(f"HIDE folder {path} has no {split}/ folder")
    others: list[str] = []
    blurred = _images_under(split_dir, others=others)
    if not blurred:
        raise SourceError(f"no images in {split_dir}")
    both = [r for r in blurred if (gt_dir / r.name).is_file()]
    unmatched = [f"{split}/{r.as_posix()}" for r in blurred if not (gt_dir / r.name).is_file()]
    _report_unmatched(path, unmatched, [], "GT/ image", "blurred image")
    if not both:
        raise SourceError(f"no image in {split_dir} has a same-named file in {gt_dir}")
    names = _sample_names(both)
    samples = [Sample(names[r], split_dir / r, gt_dir / r.name) for r in both]
    return SourceInfo("hide", path, samples, split, unmatched, [], not_images=sorted(others))


# --- pair lists (RealBlur) ----------------------------------------------------------------------

# Folders of blurred images: blur/, blurred/, input/, train_blur/, blur_gamma/; no wider (a
# sharp_input/ is no blurred folder).
_BLUR_FOLDER = re.compile(r"((train|val|test)_)?(blur|blurred|blurry|input)(_(gamma|comp))?",
                          re.IGNORECASE)


def _in_gt_folder(path: Path) -> bool:
    return any(_GT_FOLDER.fullmatch(p) for p in path.parts[:-1])


def _in_blur_folder(path: Path) -> bool:
    return any(_BLUR_FOLDER.fullmatch(p) for p in path.parts[:-1])


def _blurred_first(rows: list[tuple[Path, Path]]) -> bool:
    """Whether the folders name a list's lines BLUR_PATH GT_PATH (rows as read, second path
    first): every second path, and no first one, in a gt/ folder, or every first path, and no
    second one, in a blur/ folder."""
    return bool(rows) and (all(_in_gt_folder(b) and not _in_gt_folder(g) for b, g in rows)
                           or all(_in_blur_folder(g) and not _in_blur_folder(b)
                                  for b, g in rows))


def _split_lists(folder: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        for s in SPLITS:
            if p.is_file() and p.name.lower().endswith(f"_{s}_list{LIST_SUFFIX}"):
                found.setdefault(s, []).append(p)
    return found


def _resolve_list(path: Path, split: str) -> SourceInfo:
    if path.is_file():
        return _read_list(path, None)
    found = _split_lists(path)
    if split not in found:
        raise SourceError(f"{path} has no *_{split}_list{LIST_SUFFIX} (it has lists for: "
                          f"{', '.join(found) or 'no split'})")
    if len(found[split]) > 1:
        names = ", ".join(p.name for p in found[split])
        raise SourceError(f"{path} has {len(found[split])} {split} lists ({names}): give the "
                          f"one to read as --data, e.g. {found[split][0]}")
    return _read_list(found[split][0], split)


def _read_list(listed: Path, split: Optional[str]) -> SourceInfo:
    base = listed.parent
    rows: list[tuple[Path, Path]] = []
    try:
        text = listed.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SourceError(f"cannot read the pair list {listed}: {e}") from None
    for no, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise SourceError(f"{listed} line {no}: {line.strip()!r} is not 'GT_PATH BLUR_PATH' "
                              "(two paths from the list's folder, the ground truth's first, as "
                              "RealBlur's lists)")
        gt, blurred = (Path(f) for f in fields)
        for f in (gt, blurred):
            if not is_image(f):
                raise SourceError(f"{listed} line {no}: {f} is not an image file")
        rows.append((blurred, gt))
    if _blurred_first(rows):
        rows = [(g, b) for b, g in rows]   # BLUR_PATH GT_PATH, as other sets' lists have it
    missing = [f.as_posix() for b, g in rows for f in (g, b) if not (base / f).is_file()]
    kept = [(b, g) for b, g in rows if (base / b).is_file() and (base / g).is_file()]
    if missing:
        one = len(missing) == 1
        warn(f"{listed}: {count(len(missing), 'listed file')} "
             f"{'is' if one else 'are'} missing from {base}, "
             f"{'its pair is' if one else 'their pairs are'} left out: {_few(missing)}",
             stacklevel=3)
    if not kept:
        raise SourceError(f"no listed pair of {listed} has both files"
                          + (f" ({count(len(missing), 'file')} missing, the first "
                             f"{base / missing[0]})" if missing else ": the list is empty"))
    rels = [b for b, _ in kept]
    tops = {r.parts[0] for r in rels}
    if len(tops) == 1 and all(len(r.parts) > 2 for r in rels):   # the camera's folder
        rels = [Path(*r.parts[1:]) for r in rels]
    if len({r.parent.name for r in rels}) == 1 and all(len(r.parts) > 2 for r in rels):
        rels = [r.parent.parent / r.name for r in rels]   # scene001/blur/: the scene's frames
    names = _sample_names(rels)
    if len(set(names.values())) < len(rels):
        raise SourceError(f"{listed} lists a blurred image twice")
    samples = [Sample(names[r], base / b, base / g) for r, (b, g) in zip(rels, kept)]
    return SourceInfo("list", listed, samples, split, missing, [])


# --- BSD ----------------------------------------------------------------------------------------

BSD_SPLIT_DIRS = {"train": "train", "val": "valid", "test": "test"}
BSD_SIDES = ("Blur", "Sharp")


def _is_bsd_clip(folder: Path) -> bool:
    return all((folder / side / "RGB").is_dir() for side in BSD_SIDES)


def _bsd_clips(folder: Path) -> list[Path]:
    """The clip folders of a BSD split: Blur/RGB/ beside Sharp/RGB/."""
    if not folder.is_dir():
        return []
    return sorted((c for c in folder.iterdir() if _is_bsd_clip(c)),
                  key=lambda c: name_key(c.name))


def _bsd_splits(path: Path) -> dict[str, Path]:
    """Each split's folder, under the root or (a split's folder, or one clip's, given alone)
    `path` itself."""
    found = {s: path / d for s, d in BSD_SPLIT_DIRS.items() if _bsd_clips(path / d)}
    if not found and (_bsd_clips(path) or _is_bsd_clip(path)):
        split_dir = path.parent if _is_bsd_clip(path) else path
        found = ({s: path for s, d in BSD_SPLIT_DIRS.items() if split_dir.name == d}
                 or {"test": path})
    return found


def _resolve_bsd(path: Path, split: str) -> SourceInfo:
    found = _bsd_splits(path)
    if not found:
        raise SourceError(f"{path} is not a BSD folder: expected {{train,valid,test}}/<clip>/"
                          "Blur/RGB/*.png beside <clip>/Sharp/RGB/")
    if len(found) == 1 and path in found.values():   # a split's or a clip's folder given alone
        split = next(iter(found))
    elif split not in found:
        raise SourceError(f"{path} has no {split!r} split (it has: {', '.join(found)}; BSD's "
                          "val split is its valid/ folder)")
    split_dir = found[split]
    clips = {c.name: c for c in ([split_dir] if _is_bsd_clip(split_dir) else
                                 _bsd_clips(split_dir))}
    others: list[str] = []
    sides: list[dict[str, Path]] = [{}, {}]
    for clip in clips.values():
        for files, side in zip(sides, BSD_SIDES):
            for r in _images_under(clip / side / "RGB", others=others):
                files[f"{clip.name}/{r.as_posix()}"] = Path(clip.name, r)
    ins, gts = sides
    pairs = _match_pairs(ins, gts)
    used = {g.as_posix() for g in pairs.values()}
    un_in = [k for k in sorted(ins, key=name_key) if k not in pairs]
    un_gt = [k for k in sorted(gts, key=name_key) if k not in used]
    _report_unmatched(split_dir, un_in, un_gt, "Sharp/RGB image", "Blur/RGB image")
    if not pairs:
        one = _is_bsd_clip(split_dir)   # a clip's folder given alone: its own paths
        rgb = {side: split_dir / side / "RGB" if one else f"{split_dir}/<clip>/{side}/RGB"
               for side in BSD_SIDES}

        def listed(files: dict[str, Path], side: str) -> str:
            clip, rel = min(files, key=name_key).split("/", 1)
            return f"{side}/RGB/{rel}" if one else f"{clip}/{side}/RGB/{rel}"

        how = (list_hint(listed(gts, "Sharp"), listed(ins, "Blur"), f"in {split_dir}")
               if gts else "")
        raise SourceError(f"no image in {rgb['Blur']} has a same-named file in "
                          f"{rgb['Sharp']}{how}")

    def file(rel: Path, side: str) -> Path:
        return clips[rel.parts[0]] / side / "RGB" / Path(*rel.parts[1:])

    both = [ins[k] for k in sorted(pairs, key=name_key)]
    names = _sample_names(both)
    samples = [Sample(names[r], file(r, "Blur"), file(pairs[r.as_posix()], "Sharp"))
               for r in both]
    return SourceInfo("bsd", path, samples, split, un_in, un_gt, not_images=sorted(others))
