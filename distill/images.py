"""Image I/O: OpenCV decode to float32 RGB in [0, 1], atomic lossless writes."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from runtime.atomic import atomic_path
from runtime.console import count
from runtime.imageio import (IMAGE_EXTS, ImageReadError, OverPixelBudget, UndecodableImage,
                             decode_image, exif_orientation, is_image, turn_upright)
from runtime.warn import warn

__all__ = ["IMAGE_EXTS", "ImageReadError", "OverPixelBudget", "UndecodableImage", "centre_crop",
           "is_image",
           "list_images", "misoriented", "read_image", "to_rgb_float", "warn_16_bit",
           "write_image"]


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files directly in `folder`, sorted. Hidden ones are left out: an atomic write
    killed mid-way leaves its temp file as .NAME.png.XXXX.png, half written."""
    return sorted(p for p in Path(folder).iterdir()
                  if not p.name.startswith(".") and p.is_file() and is_image(p))


def to_rgb_float(img: np.ndarray, source: str = "<array>") -> np.ndarray:
    """BGR/gray/BGRA uint8 or uint16 (OpenCV layout) -> HxWx3 float32 RGB in [0, 1]."""
    if img is None:   # cv2.imread's answer for a file it cannot read; it names no file
        where = "" if source == "<array>" else f"{source}: "
        raise ImageReadError(f"{where}got None, not an image: cv2.imread returns None for a path "
                             "that is missing or not an image; distill.images.read_image(path) "
                             "reads a file and names it when it cannot")
    if img.dtype == np.uint8:
        scale = 255.0
    elif img.dtype == np.uint16:
        scale = 65535.0
    elif img.dtype in (np.float32, np.float64):
        scale = 1.0
    else:
        raise UndecodableImage(f"{source}: unsupported pixel type {img.dtype} "
                               "(expected uint8, uint16 or float)")
    if img.ndim == 2:
        warn(f"{source}: grayscale image converted to RGB", stacklevel=2)
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        warn(f"{source}: alpha channel dropped (RGBA -> RGB)", stacklevel=2)
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    elif img.ndim != 3 or img.shape[2] != 3:
        raise UndecodableImage(f"{source}: unsupported image shape {img.shape}")
    # Scaled in place: `astype(...) / scale` held two float copies of a 48-megapixel photo
    # (576 MB each) at once.
    rgb = np.ascontiguousarray(img[..., ::-1], dtype=np.float32)
    rgb /= scale
    return rgb


def read_image(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as HxWx3 float32 RGB in [0, 1] (8/16-bit, gray and RGBA accepted).
    Unreadable, truncated or over-budget files raise ImageReadError naming the file."""
    return to_rgb_float(decode_image(path, max_pixels), str(path))


_TURNS = {1: "none", 2: "mirrored left to right", 3: "turned 180 degrees",
          4: "flipped top to bottom", 5: "mirrored along the main diagonal",
          6: "turned 90 degrees clockwise", 7: "mirrored along the other diagonal",
          8: "turned 90 degrees counter-clockwise"}
# The tag whose turn undoes tag N's: 6 and 8 undo each other, every other turn undoes itself.
_UNDO = {6: 8, 8: 6}


def _orientation(path: str | os.PathLike) -> int:
    try:
        return exif_orientation(Path(path).read_bytes())
    except OSError:   # gone since it was decoded: nothing to compare
        return 1


def _thumb(img: np.ndarray) -> np.ndarray:
    """A small grey version: blur and sharpening leave it alike, a turn does not. Shrunk
    before it is made grey: averaging the channels of a 12-megapixel float image cost more
    than the shrinking."""
    h, w = img.shape[:2]
    f = min(1.0, 64 / max(h, w))
    size = (max(1, round(w * f)), max(1, round(h * f)))
    small = cv2.resize(np.asarray(img, np.float32), size, interpolation=cv2.INTER_AREA)
    return small.mean(axis=2) if small.ndim == 3 else small


# Tags whose turn swaps width and height.
_SIDEWAYS = {5, 6, 7, 8}


def misoriented(ref_path: str | os.PathLike, ref: np.ndarray, path: str | os.PathLike,
                img: np.ndarray) -> str:
    """Why `img` (read from `path`) may not line up with `ref` (read from `ref_path`, its
    pair's input), or '' where nothing says so. Both were read upright by their orientation
    tags; where the tags differ, one of the pair may have lost its tag (re-saved by a tool that
    drops EXIF) or kept one its pixels no longer need, so that the pixels line up only as
    stored: said where the sizes differ but match as stored, or where the sizes match (a
    180-degree tag, a square photo) and the pictures agree far better as stored."""
    a, b = _orientation(ref_path), _orientation(path)
    if a == b:
        return ""
    # Paired folders give both files one name: then their folders say which had which tag.
    names = [Path(ref_path).name, Path(path).name]
    if names[0] == names[1]:
        names = [Path(p).parent.name + "/" + Path(p).name for p in (ref_path, path)]
    tags = f"EXIF orientation {a} ({_TURNS[a]}) on {names[0]}, {b} ({_TURNS[b]}) on {names[1]}"
    advice = ("one of the pair has likely lost or gained its tag: save both upright (without "
              "the tag) or both as stored with the same tag")
    # `ref`'s shape shown by `img`'s tag, from the shapes alone: turning the full image to
    # find it cost as much as reading the pair.
    stored_shape = ref.shape
    if (a in _SIDEWAYS) != (b in _SIDEWAYS):
        stored_shape = (ref.shape[1], ref.shape[0]) + ref.shape[2:]
    if ref.shape != img.shape:
        if stored_shape != img.shape:
            return ""
        return f"as stored they are the same size, with {tags}; {advice}"
    if stored_shape != img.shape:
        return ""
    t, r = _thumb(img), _thumb(ref)
    upright = float(np.mean((r - t) ** 2))
    # The thumbnail turned, not the image: the shapes match, so the sizes the thumbnails
    # were shrunk to do too (a side's rounding is the same turned or not).
    stored = float(np.mean((turn_upright(turn_upright(r, _UNDO.get(a, a)), b) - t) ** 2))
    # Blur and sharpening change little at 64 px; a turned picture differs everywhere.
    if upright > 1e-4 and stored * 4 < upright:
        return f"lines up with {ref_path} only as stored, with {tags}; {advice}"
    return ""


def warn_16_bit(deep: list[Path], read: int, command: str) -> None:
    """One warning for all the 16-bit photos `command` (synth, corpus) made 8-bit pairs of:
    they lose the low 8 bits, as the 8-bit camera frames the students are made for have none.
    `deep` names them (the first three are shown); `read` is how many photos were read."""
    if not deep:
        return
    shown = ", ".join(str(p) for p in deep[:3]) + (", ..." if len(deep) > 3 else "")
    warn(f"{len(deep)} of the {count(read, 'photo')} {'is' if len(deep) == 1 else 'are'} "
         f"16-bit ({shown}): their pairs are written in 8 bits, as every {command} pair is")


def centre_crop(a: np.ndarray | None, side: int) -> np.ndarray | None:
    """The centred side x side window (less where the image is smaller); None and side 0 pass
    through."""
    if a is None or not side:
        return a
    h, w = a.shape[:2]
    y, x = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return a[y:y + side, x:x + side]


def _quantised_bgr(rgb: np.ndarray, top: float, dtype) -> np.ndarray:
    # One float temporary, scaled in place: the chained expression held two beside `rgb`.
    q = np.clip(rgb, 0, 1)
    q *= top
    q += 0.5
    return q[..., ::-1].astype(dtype, order="C")


def to_uint8_bgr(rgb: np.ndarray) -> np.ndarray:
    return _quantised_bgr(rgb, 255.0, np.uint8)


def write_image(path: str | os.PathLike, rgb: np.ndarray, bits: int = 8,
                icc: bytes | None = None, exif: bytes | None = None) -> Path:
    """Write HxWx3 float RGB atomically (temp file + rename). PNG is lossless; bits=16 keeps the
    full precision of a float result. `icc`, `exif`: the input's colour profile and EXIF block
    (its Orientation 1: the pixels are upright), kept where `sharpen run` keeps them (else
    left out with a warning saying why, as it does)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if bits == 16:
        data = _quantised_bgr(rgb, 65535.0, np.uint16)
    else:
        data = to_uint8_bgr(rgb)
    suffix = path.suffix or ".png"
    with atomic_path(path, suffix=suffix) as tmp:
        # Encoded here and written by Python: cv2.imwrite takes the name as UTF-8 (a Latin-1
        # folder name crashed it) or, on Windows, in the ANSI code page (東京 fails there).
        ok, encoded = cv2.imencode(suffix, np.ascontiguousarray(data))
        if not ok:
            raise OSError(f"OpenCV could not encode {path}")
        del data
        if icc or exif:
            from runtime.image_sink import with_input_exif, with_input_profile
            kept = encoded.tobytes()
            if icc:
                kept = with_input_profile(kept, icc, path, False)
            if exif:
                kept = with_input_exif(kept, exif, path)
            Path(tmp).write_bytes(kept)
        else:
            with open(tmp, "wb") as f:
                f.write(encoded)
    return path
