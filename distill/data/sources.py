"""Where training images come from: detect a dataset's layout and list its samples.

A source SPEC is a path whose layout is detected, or an explicit ``kind:path``:

- ``gopro``  GoPro root: ``GOPRO_Large/{train,test}/<sequence>/{blur,blur_gamma,sharp}/*.png``
             (the folder holding ``GOPRO_Large`` or a single split folder also work); samples are
             named ``<sequence>/<stem>``.
- ``paired`` ``input/`` + ``target/`` (Restormer/NAFNet preprocessed GoPro, HIDE, RealBlur) or
             ``blur/`` + ``sharp/``, matched by file name (relative path); also a root with split
             subfolders ``root/{train,val,test}/{input,target}`` (what ``sharpen synth`` and the
             embedded dataset write).
- ``reds``, ``hide``, ``list``: REDS, HIDE and RealBlur's pair lists as published (see
             public_layouts).
- ``folder`` a folder of (blurred) images and/or video clips without ground truth, searched
             recursively (footage); a clip's frames are named ``<relative path without
             extension>_<index:06d>``, so same-named clips in different subfolders differ.
- ``video``  a video file; each frame is a sample named ``<video-stem>_<index:06d>``.
- ``embedded`` the embedded default dataset (built on first use), in the paired layout.

This module needs only numpy and OpenCV (no torch).
"""
from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import cv2
import numpy as np

from runtime.console import count, shell_join
from runtime.hdr import LABELLED, hdr_warning
from runtime.imageio import VIDEO_EXTS, frames_over_budget
from runtime.locale_text import utf8_name
from runtime.orientation import oriented
from runtime.sources import NO_DECODABLE_FRAMES
from runtime.walk import walk_files
from runtime.warn import warn

from ..dist import DistInfo
from ..images import UndecodableImage, is_image, read_image, to_rgb_float
from .frame_seek import SeekCheck

KINDS = ("gopro", "paired", "reds", "hide", "list", "bsd", "folder", "video", "embedded")
SPLITS = ("train", "val", "test")
PAIR_DIRS = (("input", "target"), ("blur", "sharp"))
GOPRO_BLUR = ("blur", "blur_gamma")


class SourceError(ValueError):
    """A data source that cannot be used, with a message saying why."""


class UnopenableVideo(UndecodableImage):
    """A video OpenCV cannot open: damaged, or in a codec this OpenCV build lacks (converting
    it helps there, replacing it does not)."""


# Either may be why: OpenCV says no more.
UNOPENABLE_VIDEO = ("OpenCV cannot open this video (damaged, or in a codec this OpenCV build "
                    "cannot decode: convert it, e.g. with ffmpeg to H.264 or MJPG)")


class NoImagesError(SourceError):
    """A folder (footage) source with no image or video in it; a caller that needs pairs says
    what a paired folder holds instead of listing video extensions."""


@dataclass(frozen=True)
class Sample:
    """One blurred input. `gt` is the sharp ground truth when the source has one; `frame` is the
    frame index when `input` is a video file."""
    name: str
    input: Path
    gt: Optional[Path] = None
    frame: Optional[int] = None


@dataclass
class SourceInfo:
    kind: str
    root: Path
    samples: list[Sample]
    split: Optional[str] = None
    unmatched_inputs: list[str] = field(default_factory=list)
    unmatched_targets: list[str] = field(default_factory=list)
    videos_left_out: list[str] = field(default_factory=list)   # resolve_source(frames=False)
    # Files in the samples' folders that no sample reads (a notes.txt; in a paired or GoPro
    # folder a video too), as paths: for callers that say what they leave out (evaluate).
    not_images: list[str] = field(default_factory=list)
    unopenable_videos: list[str] = field(default_factory=list)   # a footage folder's, left out
    # Their paths: a cache's labels of one are of this source still (its budget raised, or it
    # replaced, a rerun selects them), not of another --data.
    clips_left_out: list[str] = field(default_factory=list)

    @property
    def has_gt(self) -> bool:
        return any(s.gt is not None for s in self.samples)

    def describe(self) -> str:
        n_gt = sum(s.gt is not None for s in self.samples)
        split = f", split {self.split}" if self.split else ""
        gt = f", {n_gt} with ground truth" if n_gt else ", no ground truth"
        if self.kind == "video" and self.samples:   # the file, not the folder it is in
            return f"video source {self.samples[0].input}: {count(len(self.samples), 'frame')}{gt}"
        frames = [s for s in self.samples if s.frame is not None]
        if frames:   # footage: say what came from clips, not "N images"
            n_img, n_vid = len(self.samples) - len(frames), len({s.input for s in frames})
            what = (f"{count(n_img, 'image')} and " if n_img else "") + \
                f"{count(len(frames), 'frame')} of {count(n_vid, 'video')}"
            return f"{self.kind} source {self.root}{split}: {what}{gt}"
        return f"{self.kind} source {self.root}{split}: {count(len(self.samples), 'image')}{gt}"


_DIGITS = re.compile(r"\d+")


def name_key(name: str | os.PathLike) -> tuple[str, str]:
    """Sort key for sample names and paths that reads their numbers as numbers, as `sharpen run`
    orders a folder (runtime.image_sources.name_order): frame9 before frame10, where characters
    put frame10 between frame1 and frame2, and `--limit`'s spread, the hold-out's last frames
    and validation's nearest neighbour then took frames out of sequence. Each number is padded
    to one width, so every other order is the characters' as before: zero-padded names
    (000009, 000010), and so existing selections and splits, keep theirs. name_order reads
    them apart there (a1.png before a.png, day1/ before day1-b/): a listing's order alone."""
    s = Path(name).as_posix() if isinstance(name, os.PathLike) else name
    return _DIGITS.sub(lambda m: m.group().zfill(20), s), s


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTS


def _visible(rel: Path) -> bool:
    return not any(part.startswith(".") for part in rel.parts)


def _images_under(folder: Path, recursive: bool = True, kind=None,
                  others: Optional[list[str]] = None,
                  broken: Optional[list[Path]] = None) -> list[Path]:
    """Image files (or, with kind=is_video, video files) under `folder` as paths relative to
    it (hidden files and folders skipped, so the temp files of interrupted atomic writes are
    never picked up; linked subfolders followed, see runtime.walk). `others`, when given,
    receives the paths of the other visible files; `broken`, the links whose target is gone
    (else a warning names them)."""
    kind = kind or is_image
    if recursive:
        files = walk_files(folder, broken)
    else:
        files = (p for p in folder.iterdir() if _visible(p.relative_to(folder)) and p.is_file())
    out = []
    for p in files:
        if kind(p):
            out.append(p.relative_to(folder))
        elif others is not None:
            others.append(str(p))
    return sorted(out, key=name_key)


def _sample_names(rels: list[Path], prefix: str = "") -> dict[Path, str]:
    """Names for files: the relative path without extension, or with it where two files differ
    only by extension (a.png and a.jpg), letter case aside: a name is a label's file name, and
    on macOS' and Windows' file systems A.png's label (labels/A.png) is a.jpg's (labels/a.png).
    A.png and a.png, which only a case-sensitive file system holds, keep A and a: their
    extensions would not tell them apart there either, and renamed labels are made again."""
    stems: dict[str, int] = {}
    folded: dict[str, set[str]] = {}
    for r in rels:
        key = r.with_suffix("").as_posix()
        stems[key] = stems.get(key, 0) + 1
        folded.setdefault(key.casefold(), set()).add(r.as_posix().casefold())
    names = {}
    for r in rels:
        key = r.with_suffix("").as_posix()
        alone = stems[key] == 1 and len(folded[key.casefold()]) == 1
        names[r] = prefix + (key if alone else r.as_posix())
    return names


def spread(items: list, limit: Optional[int]) -> list:
    """`limit` items spread evenly over the list (first and last included), order kept; all of
    them when limit is None or not smaller than the list."""
    n = len(items)
    if not limit or limit >= n:
        return list(items)
    if limit == 1:
        return [items[0]]
    idx = sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})
    return [items[i] for i in idx]


def _few(items: list[str], n: int = 5) -> str:
    more = f", ... ({len(items)} in all)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


# --- layout detection -------------------------------------------------------------------------

def pair_dirs(root: Path) -> Optional[tuple[Path, Path]]:
    """`root`'s blurred folder and its ground truth's (input/ + target/, blur/ + sharp/), or
    None where it holds neither pair."""
    for a, b in PAIR_DIRS:
        if (root / a).is_dir() and (root / b).is_dir():
            return root / a, root / b
    return None


def paired_parent(path: str | os.PathLike) -> Optional[tuple[Path, str]]:
    """(the paired folder, its ground truth's folder name) where `path` is the blurred half of
    one (`blur/` beside `sharp/`, `input/` beside `target/`, and the public layouts' halves:
    see public_layouts.blurred_half): given alone, it reads as real blur without ground truth.
    None otherwise."""
    p = Path(path)
    if not p.is_dir():
        return None
    for blurred, gt in PAIR_DIRS:
        if p.name == blurred and (p.parent / gt).is_dir():
            return p.parent, gt
    from .public_layouts import blurred_half
    return blurred_half(p)


def _gopro_sequences(split_dir: Path) -> list[Path]:
    if not split_dir.is_dir():
        return []
    return sorted((p for p in split_dir.iterdir()
                   if p.is_dir() and not p.name.startswith(".")
                   and (p / "sharp").is_dir() and any((p / b).is_dir() for b in GOPRO_BLUR)),
                  key=lambda p: name_key(p.name))


def _gopro_halves(split_dir: Path) -> list[str]:
    """What the folders of `split_dir` that hold a GoPro sequence's blurred frames without its
    sharp/ (or sharp/ without them) lack, as "SEQ (no sharp/)": _gopro_sequences leaves them
    out, and a sequence copied in part was dropped without a word."""
    if not split_dir.is_dir():
        return []
    out = []
    for p in sorted(split_dir.iterdir(), key=lambda p: name_key(p.name)):
        if not p.is_dir() or p.name.startswith("."):
            continue
        sharp, blurred = (p / "sharp").is_dir(), any((p / b).is_dir() for b in GOPRO_BLUR)
        if sharp != blurred:
            out.append(f"{p.name} (no {'/ or '.join(GOPRO_BLUR) + '/' if sharp else 'sharp/'})")
    return out


def _gopro_halves_under(path: Path) -> list[str]:
    """_gopro_halves of `path` read as a GoPro root (its train/ and test/, or GOPRO_Large/'s)
    and as a split folder, named from `path`."""
    out = []
    for d in (path, *(r / s for r in (path, path / "GOPRO_Large") for s in ("test", "train"))):
        where = d.relative_to(path).as_posix()
        out += [h if where == "." else f"{where}/{h}" for h in _gopro_halves(d)]
    return out


def _gopro_root(path: Path) -> Optional[Path]:
    """The GoPro root (the folder with train/ and test/) for `path`, if it is one."""
    for cand in (path, path / "GOPRO_Large"):
        if any(_gopro_sequences(cand / s) for s in ("train", "test")):
            return cand
    return None


def _paired_split_root(path: Path) -> bool:
    return any(pair_dirs(path / s) for s in SPLITS if (path / s).is_dir())


def data_set_in(folder: Path) -> str:
    """What data set `folder` holds, in words ("a paired data set (...)"), or '' for none (a
    new, empty or other folder): an output folder that holds one was named by mistake, and
    writing into it mixes its files with the output's."""
    if not folder.is_dir():
        return ""
    if (folder / "corpus.json").is_file():
        return "a photo corpus (corpus.json)"
    if pair_dirs(folder) or _paired_split_root(folder):
        return "a paired data set (input/ + target/ or blur/ + sharp/)"
    if _gopro_root(folder) is not None:
        return "a GoPro data set"
    from .public_layouts import describe, layout_of
    if layout := layout_of(folder):
        return describe(layout)
    if any(p.is_file() and not p.name.startswith(".") and (is_image(p) or is_video(p))
           for p in folder.iterdir()):
        return "images or videos"
    return ""


def detect_kind(path: Path) -> str:
    if not path.exists():
        raise SourceError(f"data source not found: {path}")
    from .public_layouts import layout_of
    if path.is_file():
        if layout_of(path):
            return "list"
        if is_video(path):
            return "video"
        if is_image(path):
            return "folder"
        raise SourceError(f"{path} is neither a video ({', '.join(sorted(VIDEO_EXTS))}) nor an "
                          "image file nor a folder")
    # A paired root's train/ val/ test/ holding blur/ + sharp/ look like GoPro sequences of a
    # single split folder; sequences are never named like splits.
    seqs = _gopro_sequences(path)
    if _gopro_root(path) is not None or (seqs and any(p.name not in SPLITS for p in seqs)):
        return "gopro"
    if pair_dirs(path) or _paired_split_root(path):
        return "paired"
    return layout_of(path) or "folder"


def gopro_blur_unused(specs: Iterable[str], gopro_blur: str, option: str) -> Optional[str]:
    """Why `option` (--gopro-blur, data.gopro_blur) set to other than its default changes
    nothing, when none of `specs` is a GoPro root: it picks a GoPro sequence's blurred folder
    and was ignored without a word elsewhere. None where it applies or a source cannot be
    read (resolving it says why)."""
    if gopro_blur == GOPRO_BLUR[0]:
        return None
    others = []
    for spec in specs:
        if not spec:
            continue
        try:
            kind, raw = parse_spec(os.fspath(spec))
            if kind is None:
                kind = detect_kind(Path(raw).expanduser())
        except SourceError:
            return None
        if kind == "gopro":
            return None
        others.append(f"{spec} ({kind})")
    if not others:
        return None
    setting = f"{option} {gopro_blur}" if option.startswith("-") else f"{option}={gopro_blur}"
    return (f"{setting} is ignored: {' and '.join(others)} "
            f"{'is not a GoPro layout' if len(others) == 1 else 'are not GoPro layouts'} "
            "(it picks a GoPro sequence's blurred folder)")


def parse_spec(spec: str) -> tuple[Optional[str], str]:
    """'kind:path' -> (kind, path); a plain path -> (None, path). A path that exists is never
    split at a colon."""
    if spec in KINDS:
        return spec, ""
    if ":" in spec and not Path(spec).exists():
        kind, rest = spec.split(":", 1)
        if kind in KINDS:
            return kind, rest
        if len(kind) > 1 and kind.isidentifier():   # not a Windows drive letter
            from runtime.suggest import did_you_mean
            raise SourceError(f"unknown data source kind {kind!r}{did_you_mean(kind, KINDS)} in "
                              f"{spec!r}; use one of {', '.join(KINDS)} (kind:path) or a plain "
                              "path")
    return None, spec


def resolve_source(spec: str | os.PathLike, split: str = "train",
                   gopro_blur: str = "blur", progress: bool = True,
                   frames: bool = True) -> SourceInfo:
    """Detect (or take from ``kind:path``) the layout of SPEC and list its samples.
    progress: a bar while the embedded dataset is built (first use only).
    frames=False: a folder's video clips are not decoded (listing their frames reads every
    one) but named in `videos_left_out`, for callers that take images only."""
    if gopro_blur not in GOPRO_BLUR:
        raise SourceError(f"gopro_blur must be one of {GOPRO_BLUR}, got {gopro_blur!r}")
    kind, raw = parse_spec(os.fspath(spec))
    if kind == "embedded":
        return _resolve_embedded(raw, split, progress)
    if not raw:
        if kind == os.fspath(spec) and Path(kind).is_dir():
            raise SourceError(f"{kind!r} is read as the data source kind {kind}: with no path; "
                              f"for the folder named {kind} here give ./{kind}")
        raise SourceError(f"no path given in data source spec {spec!r}")
    path = Path(raw).expanduser()
    if not path.exists():
        raise SourceError(f"data source not found: {path}")
    if kind in (None, "folder") and path.is_dir():
        _refuse_label_cache(path, frames)
    chosen = kind is not None   # folder:PATH reads a paired tree as footage on purpose
    if kind is None:
        kind = detect_kind(path)
    if kind == "gopro":
        return _resolve_gopro(path, split, gopro_blur)
    if kind == "paired":
        return _resolve_paired(path, split)
    from . import public_layouts
    if kind in public_layouts.LAYOUTS:
        return public_layouts.resolve(kind, path, split)
    if kind == "video":
        return _resolve_video(path)
    return _resolve_folder(path, frames, warn_gt=not chosen)


def _refuse_label_cache(path: Path, frames: bool = True) -> None:
    """SourceError for a `sharpen labels` output given as data: read as a folder of footage,
    its teacher outputs (labels/) and saved frames (frames/) were scored or labelled as blurred
    inputs side by side (`evaluate --data runs/labels/train`: "14 images" of a cache of 7).
    frames=False (a caller that takes images only): the source it was labelled from is offered
    only where it holds images; `evaluate` told to give a folder of clips refused that too."""
    from .label_cache import FRAMES_DIR, is_label_cache, read_run_record

    if not is_label_cache(path):
        return
    origin = read_run_record(path).get("data")
    saved = path / FRAMES_DIR
    where = []
    if frames or not saved.is_dir() or not origin or _holds_images(origin):
        where.append(f"the --data it was labelled from ({origin})" if origin else
                     "the --data it was labelled from")
    if saved.is_dir():
        where.append(f"the video frames it saved, {saved}")
    raise SourceError(f"{path} is a label cache made by `sharpen labels`, not a data source: "
                      "its labels/ are the teacher's outputs, not blurred inputs; give "
                      f"{' or '.join(where)}; to train on it: data.labels={path}")


def _holds_images(spec: str) -> bool:
    """Whether SPEC is a source with images of its own, not only video clips (nor gone)."""
    try:
        info = resolve_source(spec, frames=False)
    except SourceError:
        return False
    return any(s.frame is None for s in info.samples)


def _resolve_embedded(raw: str, split: str, progress: bool = True) -> SourceInfo:
    try:
        from . import embedded
    except ImportError as e:
        raise SourceError(f"the embedded dataset is not available ({e})") from None
    if raw:
        root = Path(raw).expanduser()
    elif hasattr(embedded, "default_root"):
        root = Path(embedded.default_root())
    else:
        root = Path(embedded.EMBEDDED_ROOT)
    if split not in SPLITS:
        raise SourceError(f"the embedded dataset has splits {', '.join(SPLITS)}, not {split!r}")
    # build_embedded returns at once when the split is already built with the same settings
    embedded.build_embedded(root, splits=(split,), progress=progress)
    info = _resolve_paired(root, split)
    info.kind = "embedded"
    return info


def _resolve_gopro(path: Path, split: str, blur: str) -> SourceInfo:
    root = _gopro_root(path)
    if root is not None:
        if split not in ("train", "test"):
            raise SourceError(f"GoPro has splits train and test, not {split!r}")
        split_dir = root / split
        seqs = _gopro_sequences(split_dir)
        if not seqs:
            halves = _gopro_halves(split_dir)
            raise SourceError(f"GoPro root {root} has no {split}/ sequences "
                              f"(<sequence>/{{{','.join(GOPRO_BLUR)},sharp}}/*.png)"
                              + (f"; {split_dir} holds {_few(halves)}" if halves else ""))
    else:
        split_dir = path   # a single split folder given directly
        seqs = _gopro_sequences(path)
        if not seqs:
            raise SourceError(f"{path} is not a GoPro folder: expected "
                              f"GOPRO_Large/{{train,test}}/<sequence>/{{{','.join(GOPRO_BLUR)},"
                              "sharp}/*.png")
        root, split = path, None
    samples: list[Sample] = []
    unmatched_in: list[str] = []
    unmatched_gt: list[str] = []
    others: list[str] = []
    if halves := _gopro_halves(split_dir):
        one = len(halves) == 1
        warn(f"{split_dir}: {count(len(halves), 'sequence folder')} "
             f"{'is' if one else 'are'} ignored, half a GoPro sequence: {_few(halves)}",
             stacklevel=2)
    missing_blur = [s.name for s in seqs if not (s / blur).is_dir()]
    if missing_blur:
        one = len(missing_blur) == 1
        raise SourceError(f"{count(len(missing_blur), 'GoPro sequence')} "
                          f"{'has' if one else 'have'} no {blur}/ folder: "
                          f"{_few(missing_blur)}"
                          + (" (try --gopro-blur blur)" if blur == "blur_gamma" else ""))
    for seq in seqs:
        ins = {r.as_posix(): r for r in _images_under(seq / blur, False, others=others)}
        gts = {r.as_posix(): r for r in _images_under(seq / "sharp", False, others=others)}
        both = [ins[k] for k in sorted(ins, key=name_key) if k in gts]
        unmatched_in += [f"{seq.name}/{blur}/{k}" for k in sorted(ins, key=name_key)
                         if k not in gts]
        unmatched_gt += [f"{seq.name}/sharp/{k}" for k in sorted(gts, key=name_key)
                         if k not in ins]
        names = _sample_names(both, prefix=f"{seq.name}/")
        samples += [Sample(names[r], seq / blur / r, seq / "sharp" / r) for r in both]
    _report_unmatched(split_dir, unmatched_in, unmatched_gt, "sharp image", "blurred image")
    if not samples:
        raise SourceError(f"no blurred/sharp pairs found in {split_dir}")
    return SourceInfo("gopro", root, samples, split, unmatched_in, unmatched_gt,
                      not_images=sorted(others))


def _report_unmatched(where: Path, ins: list[str], gts: list[str], gt_word: str = "target",
                      in_word: str = "input") -> None:
    # In the number it takes: "1 sharp images have no blur image ... and are ignored".
    for these, word, other in ((ins, in_word, gt_word), (gts, gt_word, in_word)):
        if these:
            one = len(these) == 1
            warn(f"{where}: {count(len(these), word)} {'has' if one else 'have'} no {other} "
                 f"with the same name and {'is' if one else 'are'} ignored: {_few(these)}",
                 stacklevel=3)


def _resolve_paired(path: Path, split: str) -> SourceInfo:
    dirs = pair_dirs(path)
    used_split: Optional[str] = None
    root = path
    if dirs is None:
        present = [s for s in SPLITS if (path / s).is_dir() and pair_dirs(path / s)]
        if not present:
            raise SourceError(f"{path} is not a paired folder: expected input/ + target/ or "
                              "blur/ + sharp/ (optionally under train/, val/, test/)")
        if split not in present:
            raise SourceError(f"{path} has no {split!r} split (it has: {', '.join(present)})")
        dirs = pair_dirs(path / split)
        used_split = split
    assert dirs is not None
    return pair_folders(*dirs, "paired", root, used_split)


def pair_folders(in_dir: Path, gt_dir: Path, kind: str, root: Path,
                 split: Optional[str]) -> SourceInfo:
    """The pairs of a blurred folder and its ground truth's, matched by relative path (a
    sequence's frame: a file missing from one side drops that pair, never shifts the others),
    the unmatched named in a warning."""
    others: list[str] = []
    ins = {r.as_posix(): r for r in _images_under(in_dir, others=others)}
    gts = {r.as_posix(): r for r in _images_under(gt_dir, others=others)}
    pairs = _match_pairs(ins, gts)
    un_in = [f"{in_dir.name}/{k}" for k in sorted(ins, key=name_key) if k not in pairs]
    used = {g.as_posix() for g in pairs.values()}
    un_gt = [f"{gt_dir.name}/{k}" for k in sorted(gts, key=name_key) if k not in used]
    _report_unmatched(in_dir.parent, un_in, un_gt, gt_dir.name + " image", in_dir.name + " image")
    if not ins:
        raise SourceError(f"no images in {in_dir}{_clips_in(in_dir, gt_dir, others)}")
    if not pairs:
        how = (list_hint(f"{gt_dir.name}/{min(gts, key=name_key)}",
                         f"{in_dir.name}/{min(ins, key=name_key)}", "beside those folders")
               if gts else "")
        raise SourceError(f"no file in {in_dir} has a same-named file in {gt_dir}{how}")
    both = [ins[k] for k in sorted(pairs, key=name_key)]
    names = _sample_names(both)
    samples = [Sample(names[r], in_dir / r, gt_dir / pairs[r.as_posix()]) for r in both]
    return SourceInfo(kind, root, samples, split, un_in, un_gt, not_images=sorted(others))


def list_hint(gt_example: str, in_example: str, where: str) -> str:
    """How to pair images whose names differ, an error's end: `where` is the list's folder in
    words, the examples are paths from it. Names that differ by a suffix (Lai et al.'s
    _kernel_01, a set's _blur/_gt) pair only by a list: which blurred image is which sharp
    one's is the set's to say."""
    return (f": pair them in a list of 'GT_PATH BLUR_PATH' lines {where} (paths from the "
            f"list's folder, e.g. {gt_example} {in_example}) and give the list as --data")


def _clips_in(in_dir: Path, gt_dir: Path, others: list[str]) -> str:
    """What to do with the clips of a blurred folder (a camera's real pairs recorded as
    blur/walk.mp4 beside sharp/walk.mp4): pairs are matched image to image, so their frames.
    It read "no images in blur", as if the folder were empty."""
    clips = sorted(Path(o).relative_to(in_dir).as_posix() for o in others
                   if Path(o).is_relative_to(in_dir) and is_video(o))
    if not clips:
        return ""
    stem = Path(clips[0]).with_suffix("").as_posix()
    # By the paths the error names: blur/walk.mp4 was no file where the user stood.
    ffmpeg = shell_join(["ffmpeg", "-i", in_dir / clips[0], in_dir / f"{stem}_%05d.png"])
    return (f": it holds {count(len(clips), 'video clip')} ({_few(clips)}); pairs are "
            f"matched image to image: extract each clip's frames on both sides, e.g. {ffmpeg} "
            f"and the same of {shell_join([gt_dir])} (ffmpeg numbers both alike)")


def _match_pairs(ins: dict[str, Path], gts: dict[str, Path]) -> dict[str, Path]:
    """Each input's ground truth, by relative path: the same file name, else the same name
    but for the extension where that leaves one input and one target (blurred JPEGs beside PNG
    ground truth were all "unmatched", though export's --parity-gt pairs them by name)."""
    pairs = {k: gts[k] for k in ins if k in gts}
    left_in: dict[str, list[str]] = {}
    left_gt: dict[str, list[str]] = {}
    for k, r in ins.items():
        if k not in pairs:
            left_in.setdefault(r.with_suffix("").as_posix(), []).append(k)
    for k, r in gts.items():
        if k not in pairs:
            left_gt.setdefault(r.with_suffix("").as_posix(), []).append(k)
    for stem, ks in left_in.items():
        gk = left_gt.get(stem, [])
        if len(ks) == 1 and len(gk) == 1:   # a.jpg + a.png beside a.webp: which one is unknown
            pairs[ks[0]] = gts[gk[0]]
    return pairs


def _resolve_folder(path: Path, frames: bool = True, warn_gt: bool = True) -> SourceInfo:
    """A folder of footage: its images, and every frame of its video clips (a folder of clips
    was "no images found", and clips beside images were left out without a word)."""
    if path.is_file():
        if not is_image(path):
            raise SourceError(f"{path} is not an image file")
        return SourceInfo("folder", path.parent, [Sample(path.stem, path)])
    if not path.is_dir():
        raise SourceError(f"{path} is not a folder")
    for blurred, gt in PAIR_DIRS:
        if (path / blurred).is_dir() and not (path / gt).is_dir():
            # Half of a paired layout: its sharp half missing (not copied, misnamed), the
            # blurred images are read as footage with no ground truth to score against.
            warn(f"{path} has {blurred}/ but no {gt}/ beside it: read as a folder of footage "
                 f"without ground truth; for blur/sharp pairs put the sharp images in "
                 f"{path / gt}")
    others: list[str] = []
    rels = _images_under(path, others=others)
    if warn_gt:
        _warn_ground_truth_as_footage(path, rels)
        if halves := _gopro_halves_under(path):
            # A GoPro-layout set none of whose sequences has both halves is not taken for
            # GoPro: its blur/ and blur_gamma/ frames of each scene were read as two clips.
            warn(f"{path} holds GoPro sequences without their pairs, {_few(halves)}: read as "
                 "a folder of footage without ground truth, every image under it; for pairs "
                 "give each sequence its sharp/ beside blur/ (footage indeed: give it as "
                 f"folder:{path})", stacklevel=3)
    clips = _images_under(path, kind=is_video, broken=[])   # (its broken links: said above)
    not_images = sorted(o for o in others if not is_video(o))   # clips: frames, or left out
    if not frames and rels:
        info = _resolve_folder_images(path, rels)
        info.videos_left_out = [str(path / r) for r in clips]
        info.not_images = not_images
        return info
    if not rels and not clips:
        raise NoImagesError(f"no images or videos found in {path} (looked for "
                          f"{', '.join(sorted(e.lstrip('.') for e in _image_exts()))} and "
                          f"{', '.join(sorted(e.lstrip('.') for e in VIDEO_EXTS))})")
    if not frames:
        return SourceInfo("folder", path, [], videos_left_out=[str(path / r) for r in clips],
                          not_images=not_images)
    names = _sample_names(rels + clips)   # a.png beside a.mp4: both keep their extension
    taken = {names[r] for r in rels}
    by_file: dict[str, list[Sample]] = {r.as_posix(): [Sample(names[r], path / r)]
                                        for r in rels}
    unusable = []
    why: dict[str, list[str]] = {}   # reason -> the clips left out for it
    for r in clips:
        try:
            n = _count_frames(path / r)
        except SourceError as e:   # one broken clip does not lose the rest of the footage
            unusable.append(str(e))
            clip = str(path / r)
            reason = str(e).removeprefix(f"{clip}: ")
            why.setdefault(reason, []).append(clip)
            continue
        base = names[r]
        if any(f"{base}_{i:06d}" in taken for i in range(n)):   # beside a_000001.png
            base = r.as_posix()
        by_file[r.as_posix()] = [Sample(f"{base}_{i:06d}", path / r, None, i) for i in range(n)]
    if unusable:
        # Every one named (a day of footage may hold many): each is for the user to replace
        said = "; ".join(f"{', '.join(named)}: {reason}" for reason, named in why.items())
        warn(f"{path}: {count(len(unusable), 'video')} left out: {said}", stacklevel=3)
    samples = [s for key in sorted(by_file, key=name_key) for s in by_file[key]]
    if not samples:
        raise SourceError(f"no readable images or video frames in {path}")
    return SourceInfo("folder", path, samples, not_images=not_images,
                      unopenable_videos=unusable,
                      clips_left_out=[c for named in why.values() for c in named])


_GT_FOLDER = re.compile(r"(.*_)?(sharp|gt|target|groundtruth|ground_truth)", re.IGNORECASE)


def _warn_ground_truth_as_footage(path: Path, rels: list[Path]) -> None:
    """A warning naming the images of a footage folder that sit in ground-truth folders (gt/,
    train_sharp/): a paired set in a layout not recognised (RealBlur without its lists) is
    read as footage, and its sharp images then scored and labelled as blurred inputs."""
    gt = [r for r in rels if any(_GT_FOLDER.fullmatch(p) for p in r.parts[:-1])]
    if not gt:
        return
    folders = sorted({next(p for p in r.parts[:-1] if _GT_FOLDER.fullmatch(p)) for r in gt})
    # A paired set one folder down (Restormer's Datasets/test/GoPro/{input,target}): given
    # one folder too high, the folder to give is named.
    inside = sorted({str(path / r.parents[1]) for r in gt
                     if len(r.parts) > 2 and pair_dirs(path / r.parents[1])}, key=name_key)
    pairs = (f"paired folders inside: {', '.join(f'--data {d}' for d in inside[:4])}"
             f"{', ...' if len(inside) > 4 else ''}; " if inside else "")
    warn(f"{path}: {count(len(gt), 'image')} under ground-truth folders "
         f"({', '.join(f + '/' for f in folders)}) are read as blurred footage without ground "
         f"truth, e.g. {gt[0].as_posix()}: the layout is none that pairs (input/ + target/, "
         f"blur/ + sharp/, GoPro, REDS, HIDE, BSD); {pairs}give the blurred images alone, or a "
         "list of 'GT_PATH BLUR_PATH' lines (RealBlur's) as --data; footage indeed: give it as "
         f"folder:{path}", stacklevel=3)


def _resolve_folder_images(path: Path, rels: list[Path]) -> SourceInfo:
    names = _sample_names(rels)
    return SourceInfo("folder", path, [Sample(names[r], path / r) for r in rels])


def _image_exts() -> Iterable[str]:
    from ..images import IMAGE_EXTS
    return IMAGE_EXTS


def _count_frames(path: Path) -> int:
    """The number of decodable frames of a video (SourceError when there is none).
    CAP_PROP_FRAME_COUNT is taken when its last frame is where it says (a seek to it finds one
    frame, then none): decoding every frame to count them took as long as the clip lasts for
    every long clip of a footage folder. Where it is missing, or an estimate that is wrong (a
    truncated file, a duration times a frame rate), every frame is grabbed."""
    if path.is_file() and path.stat().st_size == 0:   # not a codec to convert: nothing there
        raise SourceError(f"{path}: empty file (0 bytes)")
    # Each clip of a source is counted here before it is read: a name OpenCV would crash on
    # (not UTF-8) is refused once, by name, before any frame is labelled or trained on.
    cap = cv2.VideoCapture(utf8_name(path, SourceError))
    try:
        if not cap.isOpened():
            raise SourceError(f"{path}: {UNOPENABLE_VIDEO}")
        # As `sharpen run` refuses it: every frame would be over the budget image files have.
        over = frames_over_budget(str(path), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                                  int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        if over:
            raise SourceError(over)
        # Here, where each clip of a source is opened once: `labels` of an iPhone's HLG clip
        # went on without a word where `sharpen run` warned. Every torchrun rank reads the
        # data: the main rank says it, as train_data says its other warnings.
        if DistInfo.from_env().main and (hdr := hdr_warning(path, str(path), LABELLED)):
            warn(hdr, stacklevel=4)
    finally:
        cap.release()
    st = path.stat()
    n = _frame_count(str(path.resolve()), st.st_size, st.st_mtime_ns)
    if n == 0:
        raise SourceError(f"{path}: {NO_DECODABLE_FRAMES}")
    return n


@functools.lru_cache(maxsize=4096)
def _frame_count(path: str, size: int, mtime_ns: int) -> int:
    """The frames of the clip `path` is while it has this size and time. Cached: `sharpen
    bench` resolves --real-nogt's clips in its check and again in its run, and the seek to the
    last frame a count takes is tens of seconds on a long clip with keyframes minutes apart."""
    cap = cv2.VideoCapture(path)
    try:
        n = _checked_frame_count(cap)
        if n is None:
            cap.release()
            cap = cv2.VideoCapture(path)   # from the start, whatever the seek did
            n = 0
            while cap.grab():
                n += 1
    finally:
        cap.release()
    return n


def _checked_frame_count(cap: cv2.VideoCapture) -> Optional[int]:
    """The container's frame count if a frame is decodable at its last index and none after it
    (the position read back, as a seek may land elsewhere); None when that does not hold."""
    reported = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    n = int(reported) if math.isfinite(reported) and reported >= 1 else 0
    if n <= 0 or not cap.set(cv2.CAP_PROP_POS_FRAMES, n - 1) or not cap.grab():
        return None
    if int(cap.get(cv2.CAP_PROP_POS_FRAMES)) != n or cap.grab():
        return None
    return n


def _resolve_video(path: Path) -> SourceInfo:
    if not path.is_file():
        raise SourceError(f"video not found: {path}")
    n = _count_frames(path)
    samples = [Sample(f"{path.stem}_{i:06d}", path, None, i) for i in range(n)]
    return SourceInfo("video", path.parent, samples)


# --- reading samples --------------------------------------------------------------------------

class FrameReader:
    """Frame access to one video by index. Far ahead, where a keyframe lies between, a clip
    that `frame_seek.SeekCheck` found exact is sought (a frame 20 minutes into a 720p clip in
    a fraction of a second, not the minutes decoding every frame before it takes); else, and
    on a clip where seeking is not frame-accurate (variable frame rate, timestamps out of
    step), frames are decoded forward; going back reopens the file. `seeks` counts the seeks
    taken, `decoded` the frames decoded forward."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._cap = None
        self._next = 0
        self._decoded = -1   # the last frame decoded, for the message of one that is not
        self._seek = SeekCheck(self.path)
        self.seeks = 0
        self.decoded = 0

    def _open(self) -> None:
        self.close()
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            # Not kept: each later frame would fail as "cannot be decoded" at its index.
            self.close()
            raise UnopenableVideo(f"{self.path}: {UNOPENABLE_VIDEO}")
        # As `sharpen run` reads it: a mirrored clip as players show it, not turned
        self._cap = oriented(self._cap, self.path)
        self._next = 0
        self._decoded = -1

    def _sought(self, index: int) -> Optional[np.ndarray]:
        """Frame `index` by a seek where the clip allows an exact one and it saves decoding;
        None: read forward (from a reopened file where a seek moved the capture)."""
        if self._seek.exact is None and self._seek.worth(self._next, index):
            # On a capture of its own: where seeking is ruled out, reading goes on from the
            # frame reached, not from frame 0 again.
            cap = cv2.VideoCapture(str(self.path))
            try:
                n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
                exact = cap.isOpened() and self._seek.check(oriented(cap, self.path), n, index)
            finally:
                cap.release()
            if not exact:
                return None
        if not self._seek.worth(self._next, index):
            return None
        frame = self._seek.read_at(self._cap, index)
        if frame is None:   # landed elsewhere: this clip is read forward from now on
            self._seek.exact, self._seek.why = False, f"a seek to frame {index} landed elsewhere"
            self._open()
            return None
        self.seeks += 1
        self._next, self._decoded = index + 1, index
        return frame

    def read_bgr(self, index: int) -> np.ndarray:
        if self._cap is None or index < self._next:
            self._open()
        if (frame := self._sought(index)) is not None:
            return frame
        # A frame that fails to decode still takes its place (FFmpeg goes on with the next
        # one), so it is counted: counting only decoded frames named every frame after a
        # damaged one by a later frame's index, failed the clip's last frames as "not found"
        # and failed the frames after the damage too while skipping to them.
        # runtime.video_source counts the same way.
        self.decoded += index + 1 - self._next
        while self._next < index:
            if self._cap.grab():
                self._decoded = self._next
            self._next += 1
        ok, frame = self._cap.read()
        self._next += 1
        if not ok or frame is None:
            before = (f"frame {self._decoded} is the last decoded before it" if self._decoded >= 0
                      else "no frame before it decoded")
            raise UndecodableImage(f"{self.path}: frame {index} cannot be decoded (the file "
                                   f"is damaged there or ends before it; {before})")
        self._decoded = index
        return frame

    def read(self, index: int) -> np.ndarray:
        return to_rgb_float(self.read_bgr(index), f"{self.path}[frame {index}]")

    @property
    def seek_note(self) -> Optional[str]:
        """Why this clip is decoded forward where a seek would have saved decoding, in one
        line for the user (a slow evaluation says why); None where nothing was ruled out."""
        if self._seek.exact is not False:
            return None
        return f"{self.path}: decoded forward from its start ({self._seek.why})"

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __del__(self):
        self.close()


class SampleReader:
    """Reads samples' inputs (files or video frames), keeping the `keep` videos read last open.
    Samples come clip by clip, so one closed is rarely read again (and then reopened). All of
    them were kept open: 300 short 320x240 clips held 300 file descriptors and 520 MB (58 MB
    now), and past the descriptor limit (1,024 by default; 256 tried) every further clip failed
    as "OpenCV cannot open this video (damaged, ...)": a day of dashcam clips."""

    def __init__(self, keep: int = 2):
        self.keep = keep
        self._videos: dict[Path, FrameReader] = {}   # in the order last read
        # FrameReader.seek_note of each clip read, once (a clip closed and reopened repeats it)
        self.seek_notes: list[str] = []

    def _closed(self, reader: FrameReader) -> None:
        reader.close()
        if (note := reader.seek_note) and note not in self.seek_notes:
            self.seek_notes.append(note)

    def input_raw(self, sample: Sample) -> np.ndarray:
        """Video frames: the decoded uint8 BGR frame; files: raise (use read_image)."""
        assert sample.frame is not None
        reader = self._videos.pop(sample.input, None)
        if reader is None:
            while len(self._videos) >= self.keep:   # the one read longest ago
                self._closed(self._videos.pop(next(iter(self._videos))))
            reader = FrameReader(sample.input)
        self._videos[sample.input] = reader
        return reader.read_bgr(sample.frame)

    def input(self, sample: Sample) -> np.ndarray:
        if sample.frame is None:
            return read_image(sample.input)
        return to_rgb_float(self.input_raw(sample), f"{sample.input}[frame {sample.frame}]")

    def close(self) -> None:
        for r in self._videos.values():
            self._closed(r)
        self._videos.clear()
