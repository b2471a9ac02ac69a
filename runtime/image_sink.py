"""The image sink: `ImageSink` writes each sharpened frame as an image named after its input,
in a folder (numbered frame_000000.png ... for a video or camera), or as one image file for a
single input; in the input's depth where the format holds it, grey and alpha put back as the
input had them, its colour profile (ICC) kept, each file written whole or not at all."""
from __future__ import annotations

import os
import re
from pathlib import Path, PurePath
from typing import Iterable, Optional

import cv2
import numpy as np

from .atomic import atomic_path, atomic_write_bytes, remove_killed_writes, sync_files
from .exif import has_gps, with_exif
from .imageio import (IMAGE_EXTS, MAX_PNG_ICC_BYTES, decode_first_image, icc_problem,
                      is_cmyk, max_pixels, shown_path, with_icc_profile)
from .options import option
from .output_paths import folders_to_make, make_folder, remove_if_empty
from .prepost import FrameError, check_frame, to_8bit
from .sinks import Sink, SinkError
from .warn import warn


DEEP_EXTS = (".png", ".tif", ".tiff", ".ppm", ".pnm", ".pgm")   # OpenCV writes them in 16 bits
GRAY_EXTS = (".pgm", ".pbm")
ALPHA_EXTS = (".png", ".tif", ".tiff", ".webp")   # OpenCV writes their BGRA


# An image folder output syncs its images this many at a time, and the rest at close: synced
# one by one they cost more than writing them, all at close a day's live run held a GB of
# paths (380 bytes each, 2.6 million at 30 fps) and a power cut lost every image.
SYNC_BATCH = 256


def with_input_profile(data: bytes, icc: bytes, target: Path, gray: bool) -> bytes:
    """The encoded image `data` with its input's colour profile `icc`, or without it and
    a warning saying why where it cannot be kept as it is."""
    as_srgb = "colour-managed viewers show it as sRGB, its colours duller or off"
    if why := icc_problem(icc):
        # Written on, a damaged profile is misread by viewers or makes them refuse it.
        warn(f"{target.name}: its input's colour profile (ICC) is damaged ({why}) and "
             f"left out: {as_srgb}")
        return data
    # libwebp holds no grey: OpenCV writes a grey image's WebP as RGB.
    gray = gray and data[:4] != b"RIFF"
    # A profile describes the channels it came with: a CMYK JPEG's, on the RGB result
    # OpenCV converted it to (said as the photo was read), or an RGB one on a grey output,
    # would be misread.
    if icc[16:20] == b"GRAY" and not gray:
        # Colour-managed viewers apply no grey profile to RGB (LittleCMS builds no transform)
        webp = " (WebP holds no grey; PNG, JPEG and TIFF keep it, and the grey)"
        warn(f"{target.name}: its input's colour profile (ICC) is dropped: it describes grey, "
             f"and the image is written in colour{webp if data[:4] == b'RIFF' else ''}: "
             "colour-managed viewers show it as sRGB")
        return data
    if icc[16:20] != (b"GRAY" if gray else b"RGB "):
        return data
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(icc) > MAX_PNG_ICC_BYTES:
        warn(f"{target.name}: its input's colour profile (ICC, {len(icc):,} bytes) is "
             "dropped: PNG readers such as Pillow refuse one over 1 MiB, and would not "
             f"open the image (JPEG, TIFF and WebP keep it): {as_srgb}")
        return data
    kept = with_icc_profile(data, icc)
    if kept is None:
        warn(f"{target.name}: its input's colour profile (ICC) is dropped "
             f"({target.suffix} is written without one; PNG, JPEG, TIFF and WebP keep it): "
             f"{as_srgb}")
    return kept or data


def with_input_exif(data: bytes, exif: bytes, target: Path) -> bytes:
    """The encoded image `data` with its input's EXIF block, or without it and a warning
    saying why where its format cannot carry it."""
    kept = with_exif(data, exif)
    if kept is None:
        why = (f"{target.suffix} is written without it; JPEG, PNG and WebP keep it"
               if data[:2] != b"\xff\xd8" else
               f"{len(exif):,} bytes, more than a JPEG's EXIF segment holds; PNG and WebP keep it")
        warn(f"{target.name}: its input's EXIF (capture date, camera, GPS) is dropped ({why})")
    return kept or data


class ImageEncodeOutOfMemory(MemoryError):
    """Encoding an output image ran out of memory (an address-space cap, a small board): the
    message names the image's size, format and path, and what to try. A MemoryError, as
    sharpening's FrameOutOfMemory, which `sharpen run` reports the same way (exit 1)."""


# The largest side each format's encoder takes (libwebp's and libjpeg's); OpenCV says an
# image over it only as a failed encode, which the out-of-memory probe below would misread.
MAX_SIDE = {".webp": 16383, ".jpg": 65500, ".jpeg": 65500}


# OpenCV's own JPEG quality, said and kept as the default; its WebP default is lossless.
JPEG_QUALITY = 95
# From this JPEG quality up, colour is kept at every pixel (4:4:4), as ImageMagick writes it;
# below, at half the width and height (4:2:0, OpenCV's default), for size. At 95, 4:2:0 blurred
# a saturated edge's colour (a red sign) that the model had just sharpened.
JPEG_FULL_CHROMA = 90
# The formats --quality sets; the others are lossless or fixed.
QUALITY_EXTS = frozenset({".jpg", ".jpeg", ".webp"})


def effective_quality(quality: Optional[int], exts: Iterable[str]) -> dict[str, Optional[int]]:
    """What `--quality` (None: not given) writes each of `exts`' formats at, for those it
    sets: {"JPEG": 95} for a JPEG without it, {"WebP": None} for a lossless WebP; PNG and TIFF
    take none and are left out."""
    said: dict[str, Optional[int]] = {}
    for ext in {e.lower() for e in exts} & QUALITY_EXTS:
        if ext == ".webp":
            said["WebP"] = quality
        else:
            said["JPEG"] = quality or JPEG_QUALITY
    return said


def _encoded(image: np.ndarray, target: Path, quality: Optional[int] = None) -> bytes:
    """`image` encoded for `target`'s extension. SinkError where OpenCV cannot encode it (a
    side over the format's MAX_SIDE named); ImageEncodeOutOfMemory where it can encode a small
    image of the same kind but not this one (OpenCV reports an encoder's failed allocation
    only as an unknown exception)."""
    ext = target.suffix or ".png"
    h, w = image.shape[:2]
    side = MAX_SIDE.get(ext.lower())
    if side is not None and max(h, w) > side:
        raise SinkError(f"cannot encode image {target}: the image is {w}x{h} and "
                        f"{ext.lstrip('.').upper()} holds at most {side} pixels a side; "
                        "write a .png or .tif instead")
    try:
        params = ([cv2.IMWRITE_WEBP_QUALITY, quality] if ext.lower() == ".webp" and quality
                  else [])
        if ext.lower() in (".jpg", ".jpeg"):
            q = quality or JPEG_QUALITY
            params = [cv2.IMWRITE_JPEG_QUALITY, q]
            if q >= JPEG_FULL_CHROMA:
                params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
        ok, buf = cv2.imencode(ext, image, params)
        if ok:
            return buf.tobytes()
        failure: Optional[BaseException] = None
    except (cv2.error, MemoryError) as exc:
        ok, failure = False, exc
    buf = None   # the part encoded so far, freed before the probe
    if failure is not None and not isinstance(failure, MemoryError) \
            and "insufficient memory" not in str(failure).lower():
        raise SinkError(f"cannot encode image {target}: {failure}") from None
    try:
        small_ok = cv2.imencode(ext, np.zeros((8, 8, *image.shape[2:]), image.dtype))[0]
    except (cv2.error, MemoryError):
        small_ok = False
    if not small_ok and not isinstance(failure, MemoryError):
        raise SinkError(f"cannot encode image {target}")
    fmt = ext.lstrip(".").upper()
    raw = image.nbytes / (1 << 20)
    jpeg = ("write a JPEG instead (--out ending .jpg; its encoder streams the file out)"
            if fmt not in ("JPG", "JPEG") and max(h, w) <= MAX_SIDE[".jpg"] else "")
    raise ImageEncodeOutOfMemory(
        f"out of memory encoding the {w}x{h} {fmt} {target} ({raw:.0f} MiB of pixels"
        f"{'; a PNG encoder holds the whole encoded file too' if fmt == 'PNG' else ''}): "
        + ", ".join(filter(None, [
            jpeg, "lower SHARPEN_MAX_PIXELS to refuse frames this size",
            "or give the process more memory"]))) from None


def _in_depth_of(image: np.ndarray, target: Path) -> np.ndarray:
    """`image` in a depth `target`'s format holds: a 16-bit one as 8 bits (x / 257), said,
    where OpenCV's encoder casts it by saturation, every level above 255 white."""
    if image.dtype == np.uint16 and target.suffix.lower() not in DEEP_EXTS:
        warn(f"{target.name}: written as 8-bit ({target.suffix} holds 8 bits; PNG, TIFF "
             "and PPM keep the input's 16)")
        return to_8bit(image)
    return image


def encode_bytes(image: np.ndarray, ext: str = ".png", quality: Optional[int] = None, *,
                 like: Optional[bytes] = None, metadata: bool = True) -> bytes:
    """`image` (BGR, BGRA or grey, 8 or 16 bit, as FrameProcessor returns it) encoded as the
    file a `sharpen run --out` of that extension writes, in memory: ".jpg" at `quality` (95
    without), ".webp" lossless without one; with `like`, the input file's bytes, its alpha
    channel and greyness, colour profile (ICC) and EXIF (GPS position included; Orientation 1:
    decode_bytes turned the pixels upright) kept as `sharpen run` keeps them, the EXIF left out
    with `metadata=False` (`--no-metadata`'s). FrameError for an image FrameProcessor would
    refuse too, SinkError where the format cannot hold it, ImageEncodeOutOfMemory where
    memory runs out."""
    if not isinstance(ext, str) or ext.lower() not in IMAGE_EXTS:
        raise ValueError(f"encode_bytes: ext must be one of {', '.join(sorted(IMAGE_EXTS))}, "
                         f"got {ext!r}")
    if quality is not None and not (isinstance(quality, (int, np.integer))
                                    and not isinstance(quality, bool) and 1 <= quality <= 100):
        # 0 was written at 95 and 150 as OpenCV clamps it, both without a word
        raise ValueError(f"encode_bytes: quality must be 1 to 100, got {quality!r}")
    try:   # None (cv2.imread's failure), a float or batch: refused as FrameProcessor does
        check_frame(image)
    except FrameError as e:
        raise FrameError(f"encode_bytes: image: {e}") from None
    layout = None
    if like is not None:
        from .image_sources import Layout, cmyk_note, photo_metadata
        like = bytes(like)
        # Up to the result's size too: its caller decoded it, maybe under a larger limit=.
        # (None: SHARPEN_MAX_PIXELS's, which its refusal then names)
        size = image.shape[0] * image.shape[1]
        # Its other frames or pages are not said again: decode_bytes said them of the upload
        original = decode_first_image(like, "encode_bytes' like",
                                      size if size > max_pixels() else None)
        icc, exif = photo_metadata(like)
        if is_cmyk(like):   # a print file: said, as sharpen run says it
            warn(f"encode_bytes: like='s upload is {cmyk_note(icc)}")
        layout = Layout.of(original, icc, exif if metadata else None)
        # Alpha and grey, which FrameProcessor's BGR result lost, go back onto a result of
        # the upload's size (not one resized since, nor one already in their layout).
        bgr = image.ndim == 3 and image.shape[2] == 3
        if layout is not None and not (bgr and original.shape[:2] == image.shape[:2]):
            if bgr and (layout.gray or layout.alpha is not None):
                (h, w), (uh, uw) = image.shape[:2], original.shape[:2]
                lost = "greyness" if layout.gray else "alpha channel"
                warn(f"encode_bytes: the image is {w}x{h} and like='s upload {uw}x{uh}: the "
                     f"upload's {lost} is not put back (encode the result at the upload's size)")
            layout = Layout(icc=layout.icc, exif=layout.exif)
    return _encoded_as_input(image, Path(f"image{ext}"), layout, quality)[0]


def _encoded_as_input(image: np.ndarray, target: Path, layout, quality: Optional[int]
                      ) -> tuple[bytes, bool]:
    """The sharpened `image` encoded for `target`'s format as its input was (`layout`: the
    source's `Layout`, or None): in a depth the format holds, grey and alpha put back, its
    colour profile and EXIF kept; and whether that EXIF kept a GPS position. The image sink's
    and encode_bytes' one route."""
    image = _in_depth_of(image, target)
    if layout is not None:
        image = _restore_layout(image, layout, target)
    if target.suffix.lower() in GRAY_EXTS and image.ndim == 3:   # one channel only
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY if image.shape[2] == 4
                             else cv2.COLOR_BGR2GRAY)
    data = _encoded(image, target, quality)
    if layout is not None and layout.icc:
        data = with_input_profile(data, layout.icc, target, image.ndim == 2)
    gps = False
    if layout is not None and layout.exif:
        encoded, data = data, with_input_exif(data, layout.exif, target)
        gps = data is not encoded and has_gps(layout.exif)
    return data, gps


class ImageSink(Sink):
    """Images named after the input files in a folder, or one image file for a single input.
    With `layouts` (frame name -> the source's `Layout`), a grayscale input is written back as
    grayscale and an input's alpha channel is put back beside the sharpened colours."""

    def __init__(self, path: str | os.PathLike, single_file: bool = False,
                 layouts: Optional[dict] = None, flags: bool = False) -> None:
        self.path, self.single, self.layouts = Path(path), single_file, layouts
        # frame name -> its photo's (atime, mtime) in ns, which its output takes (cp -p's):
        # photo managers sort by file date. Set by run_stream for an image file source.
        self.times: Optional[dict[str, tuple[int, int]]] = None
        folder = self.path.parent if single_file else self.path
        # A run whose every input is unreadable should not leave an empty folder behind.
        self._made = folders_to_make(folder)
        self._written = 0
        self.gps_kept = 0   # images written with their photo's GPS position (said at the end)
        self._unsynced: dict[Path, None] = {}   # images in place, not yet synced
        self.flags = flags
        make_folder(folder, option("output", self.path, flags))
        if not single_file:
            # The image a killed run (SIGKILL, a power cut) was writing, under its hidden temp
            # name: each kill of a service writing frames left one more. Not in the folder of
            # a single image's output, which is the user's own.
            from .run_lock import holds_output
            remove_killed_writes(folder, ours_too=holds_output(self.path))
        # A camera's frames, which no rerun gives again, are named frame_000000 on at every
        # start: a restarted service wrote its frames over the last run's. With it (run_stream
        # sets it for a live source) they are numbered on from the last one there.
        self.number_on = False
        self.quality: Optional[int] = None   # JPEG's and WebP's, 1-100 (None: their defaults)
        self._offset: Optional[int] = None

    def write(self, original: np.ndarray, sharpened: np.ndarray, name: str) -> None:
        if self.number_on and not self.single:
            name = self._numbered_on(name)
        parts = PurePath(name).parts
        if not self.single and (not parts or PurePath(name).anchor or ".." in parts):
            # Names may hold subfolders, never a way out: an app's own Source may name its
            # frames as its uploaders named them ('' or '.', the folder itself, was written
            # beside it as folder.png).
            raise SinkError(f"frame name {shown_path(name)!r} would be written outside "
                            f"{shown_path(self.path)}: a frame's name is a file's path inside "
                            "the output folder, without '..' or a root")
        target = self.path if self.single else self.path / name
        if target.suffix.lower() not in IMAGE_EXTS:
            target = target.with_name(target.name + ".png")
        layout = self.layouts.pop(name, None) if self.layouts is not None else None
        # Atomic, so a run killed mid-write never leaves half an image under its final name.
        data, gps = _encoded_as_input(sharpened, target, layout, self.quality)
        self.gps_kept += gps
        try:
            target.parent.mkdir(parents=True, exist_ok=True)   # names may hold subfolders
            if self.single:
                atomic_write_bytes(target, data)   # synced: the run's one result
            else:
                # A stream of images is synced SYNC_BATCH at a time, the rest at close (a
                # Ctrl-C's too): an fsync of each image and its folder as it came took 0.45
                # of the 0.65 ms a small frame cost to write (ext4 here; an SD card's fsync
                # takes far longer). A power cut mid-run may lose the images of a batch; a
                # killed run never leaves half of one.
                with atomic_path(target) as tmp:
                    tmp.write_bytes(data)
                self._unsynced[target] = None
        except OSError as exc:
            # The cause alone (a full disk): str(exc) repeated the file name and the errno
            raise SinkError(f"cannot write image {target}: {exc.strerror or exc}") from None
        if self.times is not None and (times := self.times.pop(name, None)) is not None:
            try:
                os.utime(target, ns=times)
            except OSError:   # a file system that keeps no such times: the image is whole
                pass
        self._written += 1
        if len(self._unsynced) >= SYNC_BATCH:
            self._sync()

    def _numbered_on(self, name: str) -> str:
        m = re.fullmatch(r"frame_(\d+)", name)
        if m is None:
            return name
        if self._offset is None:
            self._offset = self._first_free_number()
        return f"frame_{int(m.group(1)) + self._offset:06d}" if self._offset else name

    def _first_free_number(self) -> int:
        """1 + the highest frame_N an earlier run left in the folder (0: none), said. Images
        only: a frame_N.json, or a folder so named, is no frame (it moved the numbers on)."""
        try:
            numbers = [int(m.group(1)) for e in os.scandir(self.path)
                       if (m := re.fullmatch(r"frame_(\d+)(\.[^.]+)", e.name))
                       and m.group(2).lower() in IMAGE_EXTS and e.is_file()]
        except OSError:
            return 0
        if not numbers:
            return 0
        last = max(numbers)
        warn(f"{option('output', self.path, self.flags)} holds an earlier run's frames, up to "
             f"frame_{last:06d}: this run's are numbered on from frame_{last + 1:06d}, not "
             "written over them (a camera's frames, which no rerun gives again)")
        return last + 1

    def _sync(self) -> None:
        """Sync the images written since the last sync, and their folders."""
        try:
            sync_files(self._unsynced)
        except OSError as exc:
            folder = option("output", self.path, self.flags)
            raise SinkError(f"cannot sync the images written to {folder} to disk: "
                            f"{exc}") from None
        finally:
            self._unsynced.clear()

    def close(self) -> None:
        self._sync()
        if not self._written:
            remove_if_empty(self._made)


def _restore_layout(sharpened: np.ndarray, layout, target: Path) -> np.ndarray:
    """The sharpened BGR image in its input's channel layout: grayscale again for a grayscale
    input (the model sharpens three equal channels), the input's alpha channel added back
    (unsharpened: it is a mask, not a picture) where the format holds one, said where not."""
    if layout.gray:
        return cv2.cvtColor(sharpened, cv2.COLOR_BGR2GRAY)
    alpha = layout.alpha
    if alpha is None:
        return sharpened
    if target.suffix.lower() not in ALPHA_EXTS:
        warn(f"{target.name}: alpha channel dropped ({target.suffix} holds none; PNG, TIFF "
             "and WebP keep it)")
        return sharpened
    if alpha.dtype != sharpened.dtype:   # a 16-bit input written in 8 bits, or the reverse
        alpha = to_8bit(alpha) if sharpened.dtype == np.uint8 else alpha.astype(np.uint16) * 257
    return np.dstack([sharpened, alpha])
