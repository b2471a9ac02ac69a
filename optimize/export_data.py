"""The images `sharpen export` calibrates on and judges parity on: the calibration crops, the
parity images (given, held out of --calib, or the built-in samples), the ground truth or
teacher outputs matched to them by name, and the 1080p frame the latencies are timed on."""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from runtime.console import count

from .export_options import CALIB_SIZE, ExportOptions, Flags, _option
from .export_progress import Progress


def _warn_small_parity(parity_list: list, field: int | None, prog: Progress,
                       builtin: bool = False, flags: Flags = False) -> None:
    """Parity images all smaller than what one output pixel sees (24x16 against 136 px) check
    the artifact on nothing but padding and borders: it passes whatever INT8 does to frames.
    A warning even for the built-in images (`edge`, 744 px, always meets it): the user can act
    on it, and a note would vanish with --quiet, leaving a weak gate unsaid. `builtin`: the
    images are the built-in samples, which the user never chose."""
    from runtime.tiling import GLOBAL_FIELD

    # A global field (pooling over the frame): every pixel sees the whole of any image.
    if not field or not parity_list or field >= GLOBAL_FIELD:
        return
    largest = max(min(img.shape[:2]) for _, img in parity_list)
    if largest < field:
        from .calibration import BUILTIN_PARITY
        which = (f"the built-in parity images (scikit-image's {', '.join(BUILTIN_PARITY)})"
                 if builtin else "the parity images")
        pi, calib = _option("parity_images", flags), _option("calib", flags)
        held = "a fifth of them is held out for parity"
        how = (f"give held-out images at least {field} px on their short side with {pi} (or "
               f"{calib} images that large: {held})" if pi else
               f"give {calib} images at least {field} px on their short side ({held})")
        prog.warn(f"{which} are at most {largest} px on their short side, under the model's "
                  f"receptive field ({field} px): the gate sees mostly padding; {how}")


@contextlib.contextmanager
def _naming(field: str, flags: Flags, source: str = "", note: str = ""):
    """A CalibrationError about the images of option `field` names it, as a keyword (calib)
    or with `flags` as its flag (--calib): 'no such file or folder: x' did not say whether
    --calib or --parity-images held x. `source`: the option's value, named too where the
    message does not name it ('no calibration images: none of the 4 files ...' said neither
    which folder nor which files); `note` ends a message that no image was read."""
    from .calibration import CalibrationError

    try:
        yield
    except CalibrationError as e:
        flag = _option(field, flags) or field
        if source and source not in str(e):
            end = note if str(e).startswith("no ") else ""   # (a note on what was read)
            raise CalibrationError(f"{flag} {source}: {e}{end}") from None
        raise CalibrationError(f"{flag}: {e}") from None


def _shown(spec) -> str:
    """An option's sources as given on the command line: a list printed as one read
    "['DIR']"."""
    return spec if isinstance(spec, (str, os.PathLike)) else " ".join(map(str, spec))


@dataclass
class _Data:
    """The images an export calibrates on and judges parity on (`_calibration_data`)."""
    parity_list: list
    crops: np.ndarray | None
    calib_names: list[str]
    held_out: int = 0   # calib images held out for parity
    parity: str = ""    # where the parity gate runs, for the report (settings.parity)
    calibration: dict | None = None   # what the crops came from, for the report (files_digest)
    # The folders of the parity images (settings.parity_folders): `sharpen runs --same` runs
    # two exports' artifacts on them again. [] for the built-in photos.
    parity_folders: list[str] = field(default_factory=list)


def no_parity_held_out(calib_paths: Sequence[Path]) -> str | None:
    """Why --calib leaves no image to hold out for the parity gate, which then runs on the
    built-in sample photos; None when it holds a fifth of its images out. Shared with the
    bench, whose report said "a fifth held out" where none was."""
    from .calibration import is_frame
    from runtime.imageio import is_video

    imgs = [p for p in calib_paths if is_frame(p) or p.suffix.lower() not in (".npy", ".npz")]
    # A clip (not yet listed as its frames: the bench keys on the files) holds frames to spare.
    if len(imgs) >= 2 or any(not is_frame(p) and is_video(p) for p in imgs):
        return None
    return ("--calib holds .npy crops only, no image to hold out" if not imgs
            else f"--calib has one {'frame' if is_frame(imgs[0]) else 'image'}, none to hold "
                 "out besides it")


def _calibration_data(o: ExportOptions, multiple: int, needs_calib: bool,
                      receptive_field: int | None, prog: Progress, flags: Flags) -> _Data:
    """Calibration crops (when `needs_calib`) and parity images from `o`'s calib and
    parity_images: a fifth of the calib images held out for parity when no parity images are
    given, else the built-in sample photos."""
    from distill.metrics import SSIM_MIN_SIDE

    from . import calibration as cal

    calib_paths = resolve_calib(o.calib, flags) if o.calib else None
    calib_files = calib_paths
    if calib_paths:
        with _naming("calib", flags, str(_shown(o.calib))):
            calib_paths = cal.frame_items(calib_paths)   # a clip's frames, none read yet
    parity_list, parity_paths, parity_picks = None, [], []
    held_out_note, held_out, why_none, held_noun = "", 0, None, ("image",)
    if o.parity_images:
        with _naming("parity_images", flags):
            parity_paths = cal.resolve_paths(o.parity_images)
        both = {q.resolve() for q in parity_paths} & {q.resolve() for q in calib_files or []}
        if both:
            # Calibrated on the very images it is judged on, INT8 looks better than it is.
            also = ("is also a --calib image" if len(both) == 1
                    else "are also --calib images")
            prog.warn(f"{count(len(both), 'parity image')} {also} ({min(both).name}"
                      f"{'' if len(both) == 1 else ', ...'}); parity is meant to be measured "
                      "on held-out images")
        with _naming("parity_images", flags):
            # A clip: a few frames spread over it, not each full frame run through every format
            parity_list = cal.load_images(cal.frame_items(parity_paths, "parity",
                                                          cal.PARITY_FRAMES),
                                          what="parity", min_side=SSIM_MIN_SIDE)
    elif calib_paths is not None:
        imgs = [p for p in calib_paths
                if cal.is_frame(p) or p.suffix.lower() not in (".npy", ".npz")]
        why_none = no_parity_held_out(calib_paths)
        tail = imgs[-max(1, len(imgs) // 5):]
        if why_none is None and any(cal.is_frame(p) for p in tail):
            # A clip's last fifth is held out, but a minute of it is hundreds of full frames,
            # each run through every artifact: the gate takes a few spread over it, read in
            # order (one pass through the clip).
            # They are read after the calibration frames, which come before them in the clip,
            # on the same reader: read first, the clip was decoded again for calibration.
            parity_picks = [tail[i] for i in cal.spread(len(tail), cal.PARITY_FRAMES)]
            picks, parity_list = parity_picks, []
            # A photo named after the clip is held out with its last frames.
            held_noun = (("frame",) if all(map(cal.is_frame, tail))
                         else ("frame or image", "frames and images"))
            held_out = len(picks)
            parity_paths = cal.item_files(picks)   # the clips: parity_folders is theirs
            gone = set(tail)
            calib_paths = [p for p in calib_paths if p not in gone]
            held_out_note = (f"held out the last {count(len(tail), *held_noun)} of --calib for "
                             "parity" + (f" (the gate runs on {held_out} spread over them)"
                                         if held_out < len(tail) else ""))
        elif why_none is None:
            # The last readable fifth: an unreadable file is skipped by name, not fatal.
            k, held, bad, loaded = max(1, len(imgs) // 5), [], [], []
            for p in reversed(imgs):
                if len(held) == k:
                    break
                try:
                    loaded += cal.load_images([p], what="parity", min_side=SSIM_MIN_SIDE)
                    held.append(p)
                except cal.CalibrationError as e:
                    prog.warn(f"skipped: {e}")
                    bad.append(p)
            calib_paths = [p for p in calib_paths if p not in held and p not in bad]
            if held and calib_paths:
                parity_list, held_out, parity_paths = loaded[::-1], len(held), held
                held_out_note = f"held out {held_out} of the --calib images for parity"
            else:   # too few readable ones to hold any out: calibrate on what there is
                why_none = "--calib has too few readable images to hold one out"
                calib_paths = calib_paths or held
                if not calib_paths:
                    raise cal.CalibrationError(f"--calib {_shown(o.calib)}: none of its "
                                               f"{len(bad)} images is readable")
    builtin = parity_list is None
    if builtin:
        parity_list = cal.sample_images(cal.BUILTIN_PARITY)
        held_out_note = ("parity on scikit-image sample photos "
                         f"{', '.join(cal.BUILTIN_PARITY)} (blurred)"
                         + (f": {why_none}" if why_none else ""))
        parity = (f"built-in sample photos ({', '.join(cal.BUILTIN_PARITY)})"
                  + (f": {why_none}" if why_none else ""))
    elif held_out:
        parity = f"{count(held_out, *held_noun)} held out of --calib"
    else:
        parity = "--parity-images"
    if held_out_note:
        prog.say(held_out_note)
    from distill.data.sources import SampleReader
    reader = SampleReader()   # the clip's calibration frames, then its parity frames after them
    try:
        crops, calib_names, calibration = _calibration_crops(
            o, multiple, needs_calib, calib_paths, held_out, held_noun, reader, prog, flags)
        if parity_picks:
            with _naming("calib", flags, str(_shown(o.calib))):
                parity_list = cal.load_images(parity_picks, what="parity",
                                              min_side=SSIM_MIN_SIDE, reader=reader)
            held_out = len(parity_list)
    finally:
        reader.close()
    _warn_small_parity(parity_list, receptive_field, prog, builtin, flags)
    folders = sorted({str(p.resolve().parent) for p in parity_paths}) if not builtin else []
    return _Data(parity_list, crops, calib_names, held_out, parity, calibration, folders)


def _calibration_crops(o: ExportOptions, multiple: int, needs_calib: bool, calib_paths,
                       held_out: int, held_noun: tuple, reader, prog: Progress, flags: Flags):
    """The calibration crops, the names of the images they came from and the report's record
    of them (None, [], None without `needs_calib`); clips' frames read on `reader`."""
    from . import calibration as cal

    crops, calib_names, calibration = None, [], None
    if needs_calib:
        held = (f" (besides the {count(held_out, *held_noun)} held out for parity)" if held_out
                else "")
        offered, limit = len(calib_paths or ()), None
        if calib_paths and not any(not cal.is_frame(p) and p.suffix.lower() in (".npy", ".npz")
                                   for p in calib_paths):
            # One crop an image: only the images crops are taken from are read, spread over
            # the folder (time order for frames), not 3000 1080p frames held in memory at once;
            # an unreadable one's place goes to the other frame farthest from those picked (the
            # first of the others, as it was, bunched the crops at the clip's start).
            picked = cal.spread(len(calib_paths), o.calib_count)
            rest = sorted(set(range(len(calib_paths))) - set(picked),
                          key=lambda i: (-min(abs(i - j) for j in picked), i))
            calib_paths = [calib_paths[i] for i in picked + rest]
            limit = len(picked)
        elif calib_paths:
            # .npy crops among them: all are read (an array's crops are not counted unread),
            # but of a clip only the frames a crop can come from, not a minute of 1080p frames.
            frames = [p for p in calib_paths if cal.is_frame(p)]
            keep = {frames[i] for i in cal.spread(len(frames), o.calib_count)}
            calib_paths = [p for p in calib_paths if not cal.is_frame(p) or p in keep]
        with (_naming("calib", flags, str(_shown(o.calib)), held) if calib_paths
              else contextlib.nullcontext()):
            calib_images = (cal.load_images(calib_paths, o.calib_blur, limit=limit,
                                            reader=reader)
                            if calib_paths else cal.sample_images(cal.BUILTIN_CALIB))
        size = CALIB_SIZE if o.calib_size is None else o.calib_size
        crops = cal.random_crops(calib_images, o.calib_count, size, multiple, seed=o.seed)
        side, why = cal.crop_side(calib_images, size, multiple)
        if why and o.calib_size is not None:
            # The crop side sets what calibration sees (and the report records it): a size the
            # user chose must not change unsaid.
            prog.warn(f"--calib-size {o.calib_size} {why}: calibrating on {side}x{side} crops")
        calib_names = [n for n, _ in calib_images]
        calibration = calibration_record(o, calib_paths and cal.item_files(calib_paths),
                                         len(calib_names), crops)
        src = "--calib" if calib_paths else "built-in sample photos"
        frames = sum(map(cal.is_frame, calib_paths or ()))
        offer = (count(offered, "image") if not frames else count(offered, "frame")
                 if frames == offered else f"{offered} images and clip frames")
        used = (f"{len(calib_names)} of {offer}, spread over them"
                if len(calib_names) < offered and limit else
                count(len(calib_names), "frame" if frames and frames == offered else "image"))
        prog.say(f"calibration: {count(len(crops), 'crop')} of {crops.shape[2]}x{crops.shape[3]} "
                 f"from {used} ({src})")
    return crops, calib_names, calibration


def calibration_record(o: ExportOptions, paths: Sequence[Path] | None, images: int,
                       crops: np.ndarray) -> dict:
    """What an INT8 artifact was calibrated on, for the report: the sources as given, the
    files the crops were drawn from (after the parity hold-out) with a digest of their names
    and contents (a copy elsewhere digests the same; an edited image does not), the seed and
    a digest of the crops themselves. A device's artifact is traced to its images by these."""
    import hashlib

    from distill.teacher import file_hash

    h = hashlib.sha256()
    if paths:
        for p in sorted(paths, key=lambda q: q.name):
            h.update(f"{p.name}\0{file_hash(p, n=64)}\n".encode())
        source = [str(s) for s in ([o.calib] if isinstance(o.calib, (str, os.PathLike))
                                   else o.calib)]
        folders = sorted({str(p.resolve().parent) for p in paths})
    else:
        from .calibration import BUILTIN_BLUR_SIGMA, BUILTIN_CALIB
        h.update(f"{','.join(BUILTIN_CALIB)}|blur {BUILTIN_BLUR_SIGMA}".encode())
        source = f"built-in sample photos ({', '.join(BUILTIN_CALIB)})"
        folders = []
    from .export_reuse import _digest
    return {"source": source, "folders": folders, "files": len(paths or ()), "images": images,
            "files_digest": h.hexdigest()[:16], "seed": o.seed, "crops": int(len(crops)),
            "crop_size": int(crops.shape[2]), "blur": o.calib_blur,
            "crops_digest": _digest(crops)}


def resolve_calib(calib: Sequence[str] | str, flags: Flags = False) -> list[Path]:
    """The files of `calib` (folders, globs, files) as export() reads them; CalibrationError
    naming the option (--calib with `flags`) for one that is missing or lists no images."""
    from . import calibration as cal

    with _naming("calib", flags):
        return cal.resolve_paths(calib)


def _load_matching(folder, parity_list, what: str, prog: Progress) -> dict[str, np.ndarray]:
    """Reference images (ground truth / teacher outputs) matched to parity images by stem."""
    if not folder:
        return {}
    from distill.images import ImageReadError, list_images, read_image

    from .calibration import CalibrationError

    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"{what} folder not found: {folder}")
    by_stem = {p.stem: p for p in list_images(folder)}
    out = {}
    for n, img in parity_list:
        p = by_stem.get(n)
        if p is None:
            continue
        try:
            ref = read_image(p)
        except ImageReadError as e:
            prog.warn(f"skipped {what} image: {e}")
            continue
        if ref.shape != img.shape:
            raise CalibrationError(f"{what} image {p} is {ref.shape[1]}x{ref.shape[0]} but the "
                                   f"parity image {n} is {img.shape[1]}x{img.shape[0]}")
        out[n] = ref
    if not out:
        prog.warn(f"no {what} image in {folder} matches a parity image by name")
    elif len(out) < len(parity_list):
        missing = [n for n, _ in parity_list if n not in out]
        prog.warn(f"{what} for {len(out)} of the {len(parity_list)} parity images in {folder} "
                  f"(none for {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}): "
                  f"the numbers against {what} cover only those")
    return out


def _latency_image(img: np.ndarray) -> np.ndarray:
    import cv2

    return np.ascontiguousarray(cv2.resize(img, (1920, 1080), interpolation=cv2.INTER_LINEAR))


# Formats whose first layer's input range is calibrated on the crops (tflite-int8's spans
# [0, 1]). onnx-int8's too: its "input" and "output" span [0, 1], but the pixel-unshuffle's
# tensors the first convolution reads keep the crops' range (0.30 for night frames). Pinning
# those too lowered the night calibration's daylight HIDE parity (SSIM 0.9633 -> 0.9299).
_INPUT_RANGE_CALIBRATED = ("onnx-int8", "onnx-qdq-trt", "engine-int8")
_DARK_CROPS = 0.9    # the crops' brightest pixel below this: brighter inputs clip
_UNLIKE = 2.0        # median brightness of parity and calibration this many times apart


def _brightness(images: Sequence[np.ndarray]) -> np.ndarray:
    """Mean luma (Rec. 601) of each HxWx3 RGB image in [0, 1]."""
    luma = np.array([0.299, 0.587, 0.114], np.float32)
    return np.array([float((np.asarray(im, np.float32) @ luma).mean()) for im in images])


def say_calibration_look(data: _Data, fmts: Sequence[str], prog: Progress,
                         flags: Flags = False) -> None:
    """What the calibration crops and the parity images look like (brightness, the crops'
    pixel range), and a warning where the gate cannot speak for the camera's frames: parity
    images far brighter or darker than the crops (night footage judged on daylight photos,
    or the other way round), or crops so dark that the formats whose input range they set
    clip brighter pixels. A night-street export printed only "16 crops of 128x128"."""
    if data.crops is None or not len(data.crops):
        return
    crops = data.crops.transpose(0, 2, 3, 1)
    cb = _brightness(crops)
    top = float(crops.max())
    pb = _brightness([img for _, img in data.parity_list])
    # Which parity images, not again why the built-in ones (the 'parity on' line said it).
    which = data.parity.split(": ", 1)[0]
    prog.say(f"calibration crops: brightness {cb.min():.2f}-{cb.max():.2f} (mean luma, median "
             f"{np.median(cb):.2f}), pixels {float(crops.min()):.2f}-{top:.2f}; parity images "
             f"({which}): brightness {pb.min():.2f}-{pb.max():.2f}")
    calib, pi = _option("calib", flags), _option("parity_images", flags)
    ratio = (max(np.median(pb), 0.02) / max(np.median(cb), 0.02))
    if ratio > _UNLIKE or ratio < 1 / _UNLIKE:
        how = (f"give {pi} from the camera's own footage" if pi else
               "give parity images from the camera's own footage")
        prog.warn(f"the parity images look unlike the calibration crops (median brightness "
                  f"{np.median(pb):.2f} against {np.median(cb):.2f}): the gate checks INT8 on "
                  f"other frames than it was calibrated for, so its verdict does not speak for "
                  f"the camera's; {how}, and {calib} frames like them")
    clipped = [f for f in fmts if f in _INPUT_RANGE_CALIBRATED]
    if top < _DARK_CROPS and clipped:
        takes = "takes its" if len(clipped) == 1 else "take their"
        prog.warn(f"the calibration crops' brightest pixel is {top:.2f}: {', '.join(clipped)} "
                  f"{takes} first layer's input range from the crops, so brighter pixels "
                  f"(lamps, headlights, daylight) clip to {top:.2f} there; add {calib} frames "
                  "with highlights")
