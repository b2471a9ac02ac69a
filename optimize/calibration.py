"""Calibration and parity data: real images, never random noise.

Sources (`--calib`, `--parity-images`): a folder of images and clips, a glob, image or video
files, or a .npy/.npz array of crops (N x 3 x H x W or N x H x W x 3, float in [0, 1]). A clip
gives its frames (`frame_items`), read only where a crop or parity image is taken. Without one,
scikit-image's bundled photographs are used, blurred with a small Gaussian so they look like the
blurred inputs the student sees (calibration and parity use disjoint photos).
"""
from __future__ import annotations

import os
import warnings
from itertools import islice
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from distill.sample_photos import BUILTIN_BLUR_SIGMA, BUILTIN_CALIB, gaussian_blur, sample_photos
from distill.sample_photos import BUILTIN_PARITY  # noqa: F401  (export_data reads it here)
from runtime.console import count
from runtime.walk import glob_files, walk_files
from runtime.warn import SharpenWarning


class CalibrationError(ValueError):
    """Calibration/parity data that cannot be used, with a one-line reason."""


# Frames of the clips' held-out last fifth the parity gate runs on, spread over it.
PARITY_FRAMES = 8


def sample_images(names: Sequence[str] = BUILTIN_CALIB,
                  blur_sigma: float = BUILTIN_BLUR_SIGMA) -> list[tuple[str, np.ndarray]]:
    """scikit-image's bundled photos as (name, HxWx3 float32 RGB in [0, 1]), Gaussian-blurred."""
    try:
        return sample_photos(names, blur_sigma)
    except ImportError as e:
        raise CalibrationError("no calibration images given (--calib) and scikit-image, which "
                               "provides the built-in sample photos, is not installed") from e


def resolve_paths(specs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Folders, globs and files -> sorted, de-duplicated list of files (clips among them:
    `frame_items` lists their frames)."""
    from distill.images import is_image
    from runtime.imageio import is_video

    if isinstance(specs, (str, os.PathLike)):
        specs = [specs]
    paths: list[Path] = []
    for spec in specs:
        s = str(spec)
        p = Path(s)
        if p.is_dir():
            found = _images_and_clips(p)
            if not found:
                raise CalibrationError(f"no images or clips in folder {p}"
                                       f"{_empty_folder_hint(p)}")
            paths += found
        elif p.is_file():
            paths.append(p)
        elif any(ch in s for ch in "*?["):
            found = sorted(Path(f) for f in glob_files(s)
                           if is_image(f) or is_video(f) or f.endswith((".npy", ".npz")))
            if not found:
                raise CalibrationError(f"no images or clips match {s!r}")
            paths += found
        else:
            raise CalibrationError(f"no such file or folder: {s}{_no_frames_hint(p)}")
    seen, unique = set(), []
    for p in paths:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append(p)
    return unique


def _no_frames_hint(path: Path) -> str:
    """Where a label cache's images are when it has no frames/: `--calib CACHE/frames`, as the
    README's footage line has it, of a cache labelled from images (a corpus, a paired folder)
    said only "no such file or folder": only video frames are saved in a cache."""
    from distill.data.label_cache import FRAMES_DIR, is_label_cache, read_run_record
    from distill.data.sources import pair_dirs
    if path.name != FRAMES_DIR or not is_label_cache(path.parent):
        return ""
    record = read_run_record(path.parent)
    data, split = record.get("data"), record.get("split")
    if not isinstance(data, str):
        return ""
    # The blurred half: pairs/ itself held no image directly, and pairs/**/* the sharp ones too.
    dirs = pair_dirs(Path(data) / split if isinstance(split, str) else Path(data))
    where = dirs[0] if dirs else Path(data)
    return (f": a label cache keeps frames/ only of footage (video clips' frames); "
            f"{path.parent} was labelled from images: pass those, e.g. {where}")


def _images_and_clips(folder: Path) -> list[Path]:
    """The images and video clips directly in `folder`, sorted by name (hidden ones left out,
    as `list_images` leaves them)."""
    from distill.images import is_image
    from runtime.imageio import is_video

    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file()
                  and (is_image(p) or is_video(p)))


def frame_items(paths: Sequence[Path], what: str = "calibration",
                per_clip: int | None = None) -> list:
    """`paths` with each clip replaced by its frames (`distill.data.sources.Sample`s, named
    CLIP_000123, none decoded here); `per_clip`: that many spread over each clip. A clip that
    cannot be read (not a video, no frame) is skipped by name among other files, as an
    unreadable image is; alone it is an error."""
    from distill.data.sources import SourceError, resolve_source
    from runtime.imageio import is_video

    out = []
    for p in paths:
        if not is_video(p):
            out.append(p)
            continue
        try:
            frames = resolve_source(f"video:{p}", frames=True).samples
            out += (frames if per_clip is None
                    else [frames[i] for i in spread(len(frames), per_clip)])
        except SourceError as e:
            if len(paths) == 1:
                raise CalibrationError(str(e)) from None
            warnings.warn(f"skipped: {e}", SharpenWarning)
    if not out:
        raise CalibrationError(f"no {what} images: none of the {len(paths)} clips is readable")
    return out


def is_frame(item) -> bool:
    """A clip's frame among `frame_items`, not a file."""
    return not isinstance(item, Path)


def item_files(items: Sequence) -> list[Path]:
    """The files `frame_items` came from, each once, in order: a clip's frames are one file."""
    return list(dict.fromkeys(it.input if is_frame(it) else it for it in items))


def _empty_folder_hint(folder: Path) -> str:
    """What a folder without images or clips directly in it holds instead, and what to pass:
    a user's footage folder (stills in day1/, day2/) or a label cache's frames/ (one subfolder
    per clip) drew only "no images in folder", though its images were one level down."""
    from distill.data.label_cache import FRAMES_DIR, is_label_cache
    from distill.images import is_image
    from runtime.imageio import is_video

    if is_label_cache(folder):
        # A label cache: '**/*' would take the teacher's outputs in labels/ as inputs.
        frames = folder / FRAMES_DIR
        return ("; it is a label cache, whose labels/ are the teacher's outputs: pass its blurred "
                + (f"frames, '{frames / '**' / '*'}' (quoted), " if frames.is_dir() else "")
                + "or the images it was labelled from")
    # Bounded: a hint must not walk a whole disk when someone passes their home folder.
    below = [q for q in islice(walk_files(folder, broken=[]), 100_000)
             if is_image(q) or is_video(q)]
    clips = sum(map(is_video, below))
    held = " and ".join(([count(len(below) - clips, "image file")] if len(below) > clips else [])
                        + ([count(clips, "clip")] if clips else []))
    hints = []
    if below:
        hints.append(f"its subfolders hold {held}, which a folder does not "
                     f"include: pass '{folder / '**' / '*'}' (quoted) or one subfolder")
    return "; " + "; ".join(hints) if hints else ""


def _array_images(path: Path) -> list[tuple[str, np.ndarray]]:
    try:
        arr = np.load(path)
        if isinstance(arr, np.lib.npyio.NpzFile):
            if not arr.files:
                raise CalibrationError(f"{path}: empty .npz")
            arr = arr[arr.files[0]]
    except CalibrationError:
        raise
    except Exception as e:
        raise CalibrationError(f"{path}: not a readable numpy array ({type(e).__name__})") from None
    arr = np.asarray(arr)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or not (arr.shape[1] == 3 or arr.shape[3] == 3):
        raise CalibrationError(f"{path}: calibration array has shape {tuple(arr.shape)}; expected "
                               "N x 3 x H x W or N x H x W x 3 (RGB)")
    if not np.issubdtype(arr.dtype, np.floating):
        if arr.dtype == np.uint8:
            arr = arr.astype(np.float32) / 255.0
        else:
            raise CalibrationError(f"{path}: calibration array has dtype {arr.dtype}; expected "
                                   "float32 in [0, 1] or uint8")
    arr = arr.astype(np.float32)
    if arr.shape[1] == 3 and arr.shape[3] != 3:
        arr = arr.transpose(0, 2, 3, 1)
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -0.05 or hi > 1.05:
        raise CalibrationError(f"{path}: values span [{lo:.3g}, {hi:.3g}]; expected RGB floats in "
                               "[0, 1]")
    return [(f"{path.stem}[{i}]", np.ascontiguousarray(a)) for i, a in enumerate(arr)]


def load_images(paths: Sequence, blur_sigma: float = 0.0, what: str = "calibration",
                min_side: int = 1, limit: int | None = None,
                reader=None) -> list[tuple[str, np.ndarray]]:
    """Read image files / arrays / clips' frames (`frame_items`) as (name, HxWx3 float32 RGB in
    [0, 1]). `what` names the images in messages ("calibration", "parity"); images with a side
    below `min_side` (parity: SSIM's window) are skipped by name. `limit`: stop once that many
    images are read (the paths in the order to try them: an unreadable one's place goes to the
    next). A clip among `paths` gives all its frames: pass `frame_items` to read some.
    `reader`: a `SampleReader` the caller keeps open (and closes), so frames read by a later
    call go on from where this one left a clip, rather than decoding it again."""
    from distill.data.sources import SampleReader
    from distill.images import ImageReadError, read_image
    from runtime.imageio import is_video

    if any(not is_frame(p) and is_video(p) for p in paths):
        paths = frame_items(paths, what)
    out, skipped, small_clips = [], [], set()
    own = reader is None
    reader = reader or SampleReader()   # a clip stays open while its frames are read in order
    try:
        for p in paths:
            if limit is not None and len(out) >= limit:
                break
            if is_frame(p):
                try:
                    items = [(p.name, reader.input(p))]
                except ImageReadError as e:   # a damaged frame, or a clip cut short
                    if len(paths) == 1:
                        raise CalibrationError(str(e)) from None
                    warnings.warn(f"skipped: {e}", SharpenWarning)
                    skipped.append(p)
                    continue
            elif p.suffix.lower() in (".npy", ".npz"):
                items = _array_images(p)
            else:
                try:
                    items = [(p.stem, read_image(p))]
                except ImageReadError as e:
                    if len(paths) == 1:
                        raise CalibrationError(str(e)) from None
                    # One bad file in a folder is skipped, as `labels`, `corpus` and `evaluate`
                    # do.
                    warnings.warn(f"skipped: {e}", SharpenWarning)
                    skipped.append(p)
                    continue
            for name, img in items:
                if img.ndim != 3 or img.shape[2] != 3:
                    raise CalibrationError(f"{name}: image has shape {img.shape}; expected "
                                           "H x W x 3")
                if min(img.shape[:2]) < min_side:
                    where = f"{p.input}[frame {p.frame}]" if is_frame(p) else p
                    problem = (f"{where}: {img.shape[1]}x{img.shape[0]} is smaller than SSIM's "
                               f"{min_side}x{min_side} window")
                    if len(paths) == 1 and len(items) == 1:
                        raise CalibrationError(problem)
                    # A clip's frames are all one size: once for the clip, not a line a frame.
                    if not is_frame(p) or p.input not in small_clips:
                        warnings.warn(f"skipped: {problem}"
                                      + (", as its other frames are" if is_frame(p) else ""),
                                      SharpenWarning)
                        small_clips.add(p.input if is_frame(p) else None)
                    skipped.append(p)
                    continue
                out.append((name, gaussian_blur(img, blur_sigma) if blur_sigma > 0 else img))
    finally:
        if own:
            reader.close()
    if not out:
        raise CalibrationError(f"no {what} images" + (
            f": none of the {_skipped_items(skipped)} is a readable image"
            + (f" of at least {min_side}x{min_side} pixels" if min_side > 1 else "")
            if skipped else ""))
    return out


def _skipped_items(skipped: Sequence) -> str:
    """The files and clips' frames `load_images` skipped, counted: "4 files" said of 4 frames
    of one clip named files that were not there."""
    files = sum(not is_frame(p) for p in skipped)
    clips = list(dict.fromkeys(p.input for p in skipped if is_frame(p)))
    frames = count(len(skipped) - files, "frame")
    of = (f"{frames} of {clips[0]}" if len(clips) == 1 else f"{frames} of {len(clips)} clips")
    if not clips:
        return count(files, "file")
    return of if not files else f"{count(files, 'file')} and {of}"


def crop_side(images: Sequence[tuple[str, np.ndarray]], size: int,
              multiple: int = 8) -> tuple[int, str]:
    """The side of the crops `random_crops` takes for `size`, and why it is not `size` ("" when
    it is): shrunk to fit the smallest image, then rounded down to `multiple` (the model's:
    every crop must run through it unpadded)."""
    name, img = min(images, key=lambda it: min(it[1].shape[:2]))
    smallest = min(img.shape[:2])
    s = min(size, smallest) // multiple * multiple
    if s == size:
        return s, ""
    rounded = f"a multiple of {multiple} (the model's input multiple)"
    if smallest < size:
        why = f"is larger than calibration image {name} ({img.shape[1]}x{img.shape[0]})"
        if s < smallest:
            why += f"; its short side {smallest} rounded down to {rounded}"
        return s, why
    return s, f"is not {rounded}"


def spread(n: int, k: int) -> list[int]:
    """`k` indices spread evenly over range(n), first and last among them; all n when k >= n.
    The calibration images of a folder of video frames are in time order: the first k of them
    are the clip's first seconds, not the footage."""
    if k >= n:
        return list(range(n))
    if k == 1:
        return [0]
    return [round(i * (n - 1) / (k - 1)) for i in range(k)]


def random_crops(images: Sequence[tuple[str, np.ndarray]], count: int, size: int,
                 multiple: int = 8, seed: int = 0) -> np.ndarray:
    """`count` crops (N x 3 x S x S float32) cycling over the images at random positions; with
    fewer crops than images, one crop from each of `count` images spread over them (`spread`).
    S is `size` rounded down to `multiple`, shrunk to fit the smallest image (`crop_side`)."""
    if count < 1:
        raise CalibrationError(f"calibration count must be >= 1, got {count}")
    s, _ = crop_side(images, size, multiple)
    if s < max(multiple, 16):
        name, img = min(images, key=lambda it: min(it[1].shape[:2]))
        raise CalibrationError(f"calibration image {name} is only {img.shape[0]}x{img.shape[1]}; "
                               f"crops need at least {max(multiple, 16)} pixels a side")
    rng = np.random.default_rng(seed)
    crops = np.empty((count, 3, s, s), dtype=np.float32)
    # permutation(count) % n alone took only images 0..count-1 when count < n: 16 crops of
    # 48 frames came from the first 16, the first two of six clips.
    order = (rng.permutation(count) % len(images) if count >= len(images)
             else rng.permutation(spread(len(images), count)))
    for k in range(count):
        img = images[order[k]][1]
        h, w = img.shape[:2]
        y = int(rng.integers(0, h - s + 1))
        x = int(rng.integers(0, w - s + 1))
        crops[k] = img[y:y + s, x:x + s].transpose(2, 0, 1)
    return crops
