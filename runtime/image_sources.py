"""Image sources: an image file, a folder of them or a glob (`ImageSource`), the grayscale,
alpha and colour profile a decoded image loses on its way to the model (`Layout`), and the
warnings for what a folder holds that is not an image."""
from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from .console import count
from .exif import upright_exif
from .imageio import (IMAGE_EXTS, KINDS_LEFT_OUT, SIDECAR_EXTS, VIDEO_EXTS, ImageReadError,
                      animation_frames, decode_image, exif_block, icc_profile, is_cmyk,
                      metadata_left_out, say_other_images, shown_path, tiff_pages,
                      why_not_a_file)
from .options import option
from .output_paths import same_file
from .prepost import FrameError, conversions, to_bgr
from .source_base import Frame, Source, SourceError
from .walk import walk_files
from .warn import warn


class ImageSource(Source):
    kind = "images"
    # A folder's or glob's images: a library, which a rerun into its output folder goes on
    # with however few it holds (one photo so far is no single-image run).
    library = False

    def __init__(self, spec: str, paths: list[Path], root: Optional[Path] = None) -> None:
        super().__init__(spec)
        if not paths:
            raise SourceError(f"no images found in {spec!r} (extensions: "
                              f"{', '.join(sorted(IMAGE_EXTS))})")
        self.paths = paths
        self.names = frame_names(paths, root)
        self.frame_count = len(paths)
        # One image given: its failure is the run's error. A library's last image left to
        # sharpen (the others' outputs kept) is one of many, skipped and listed as they are.
        self.single = len(paths) == 1
        self.skipped: list[str] = []
        # Set to {} by an output that writes each image back in its own channel layout (an
        # image folder or file): frame name -> `Layout` of the grayscale and BGRA files.
        self.layouts: Optional[dict[str, Layout]] = None
        # Set to {} by an image output, which gives each output its photo's times: frame name
        # -> (atime, mtime) in ns.
        self.times: Optional[dict[str, tuple[int, int]]] = None
        self.keep_exif = True   # False: the outputs get no EXIF (GPS, camera) from the photos
        self.profile_only = False   # True: layouts hold only the colour profile (--compare's)
        # The metadata its outputs are written without (XMP, IPTC, PNG text, a gamma not sRGB's, a
        # TIFF's EXIF): how many images, the kinds, the first image's name, and the first with
        # XMP or IPTC (name, photo: exiftool's example); said at the end.
        self.left_out = {"images": 0, "kinds": [], "first": None, "captioned": None,
                         "captioned_photo": None}

    def leave_out(self, done: set[int]) -> None:
        """Read only the images not in `done` (indices), each keeping its output name: a
        resumed library run's."""
        keep = [i for i in range(len(self.paths)) if i not in done]
        self.paths = [self.paths[i] for i in keep]
        self.names = [self.names[i] for i in keep]
        self.frame_count = len(keep)

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        for i, name in enumerate(self.names):
            if stop.is_set():
                return
            t0 = time.perf_counter()
            where = self._where(i)
            # Its times before the read: a photo written meanwhile (an import) is newer than
            # its output, which a rerun then makes again.
            times = self._times(i) if self.times is not None else None
            # UNCHANGED keeps 16-bit and alpha so pre-processing converts them knowingly.
            try:
                img = self._decode(i)
                changes = conversions(img)
                # Profile and EXIF only for an output that keeps the layout (read again: cheap)
                data = self._bytes(i) if self.layouts is not None else b""
                icc, exif = photo_metadata(data) if data else (None, None)
                if is_cmyk(data):   # a print file, sent on to print as RGB unless said
                    warn(f"{where}: {cmyk_note(icc)}")
                layout = (Layout(icc=icc) if icc else None) if self.profile_only else \
                    Layout.of(img, icc, exif if self.keep_exif else None)
                try:
                    img = to_bgr(img, warn=False)
                except FrameError as e:   # e.g. a float TIFF: name the file, like a bad one
                    raise ImageReadError(f"{where}: {e}") from None
                if data and self.keep_exif and not self.profile_only:   # read: to be written
                    self._count_left_out(i, data)
                if layout is not None and self.layouts is not None:
                    self.layouts[name] = layout   # the output restores it
                if changes and (layout is None or self.layouts is None or self.profile_only):
                    # Outputs are BGR; say which files that changes, one line each.
                    warn(f"{where}: {'; '.join(changes)}")
            except ImageReadError as e:
                if isinstance(e, MemoryError) and self.single:
                    raise   # the machine's, not the file's: as sharpening's (exit 1)
                if self.single:
                    raise SourceError(str(e)) from None
                # One bad file in a folder must not end the run: report it, go on, and let the
                # exit code say that some failed.
                self.skipped.append(str(e))
                warn(f"skipped: {e}")
                continue
            t1 = time.perf_counter()
            say_other_images(where, *self._pages(i), self._frames(i))
            if self.times is not None and times is not None:
                self.times[name] = times
            yield Frame(i, img, name, t1, t1 - t0)

    def _decode(self, i: int) -> np.ndarray:
        return decode_image(self.paths[i])

    def _times(self, i: int) -> Optional[tuple[int, int]]:
        """Image `i`'s access and modification times (ns), None where it has none to give."""
        try:
            st = self.paths[i].stat()
        except OSError:
            return None
        return st.st_atime_ns, st.st_mtime_ns

    def _count_left_out(self, i: int, data: bytes) -> None:
        """Count what image `i`'s output will be written without (`metadata_left_out`)."""
        if not (kinds := metadata_left_out(data)):
            return
        said = self.left_out
        said["images"] += 1
        said["kinds"] = [k for k in KINDS_LEFT_OUT if k in kinds or k in said["kinds"]]
        said["first"] = said["first"] or self.names[i]
        if said["captioned"] is None and {"XMP", "IPTC"} & set(kinds):   # exiftool's example
            said["captioned"], said["captioned_photo"] = self.names[i], str(self.paths[i])

    def _bytes(self, i: int) -> bytes:
        """Image `i`'s encoded bytes, for its colour profile and EXIF."""
        try:
            return self.paths[i].read_bytes()
        except OSError:   # gone since it was decoded: its result is written without them
            return b""

    def _where(self, i: int) -> str:
        """Image `i` as messages name it."""
        return shown_path(self.paths[i])

    def _pages(self, i: int) -> tuple[int, bool]:
        """Image `i`'s pages, and whether that count is only a floor (never, for a file)."""
        return tiff_pages(self.paths[i]), False

    def _frames(self, i: int) -> int:
        """Image `i`'s frames, where it is an animation: an upload's APNG or animated WebP
        came out as a still of its first frame without a word."""
        return animation_frames(self.paths[i])


def cmyk_note(icc: Optional[bytes]) -> str:
    """What becomes of a CMYK input (`is_cmyk`): sharpen run's words and encode_bytes'."""
    return ("CMYK, sharpened and written as RGB (not colour-managed: OpenCV's plain formula)"
            + ("; its CMYK colour profile is left out" if icc and icc[16:20] == b"CMYK" else ""))


def photo_metadata(data: bytes) -> tuple[Optional[bytes], Optional[bytes]]:
    """An encoded image's ICC profile and its EXIF, the latter's Orientation set to 1 since
    the decoded pixels were turned upright by it (`sharpen run`'s and `sharpen teacher`'s)."""
    exif = exif_block(data) if data[:2] not in (b"II", b"MM") else None   # a TIFF's own tags
    # Only a TIFF-structured block: other bytes copied made an output whose EXIF no reader
    # parses (Pillow's getexif raised on such a PNG).
    if exif is None or exif[:4] not in (b"II*\x00", b"MM\x00*"):
        exif = None
    return icc_profile(data), upright_exif(exif) if exif else None


@dataclass
class Layout:
    """What the model's BGR frame lost of a decoded image: that it was grayscale, or its alpha
    channel (kept as decoded, at the image's depth). The image sinks put it back."""
    gray: bool = False
    alpha: Optional[np.ndarray] = None
    # The file's ICC colour profile (a phone's Display P3): without it, colour-managed viewers
    # show the same pixel values as sRGB, duller than the input.
    icc: Optional[bytes] = None
    # Its EXIF block (capture date, camera, GPS), Orientation 1: the pixels are upright.
    exif: Optional[bytes] = None

    @classmethod
    def of(cls, img: np.ndarray, icc: Optional[bytes] = None,
           exif: Optional[bytes] = None) -> Optional["Layout"]:
        """The layout of a decoded image, None for plain BGR (or a shape to_bgr refuses)
        without a colour profile or EXIF."""
        if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
            return cls(gray=True, icc=icc, exif=exif)
        if img.ndim == 3 and img.shape[2] == 4:
            return cls(alpha=np.ascontiguousarray(img[..., 3]), icc=icc, exif=exif)
        return cls(icc=icc, exif=exif) if icc or exif else None


def frame_names(paths: list[Path], root: Optional[Path] = None) -> list[str]:
    """Output names for image files: the path below `root` (a glob's folder before its first
    wildcard), so that images from several folders (a glob such as 'photos/**/*') keep their
    subfolders, as a photo library's year/month folders, and no output overwrites another; the
    file name alone for one folder's images. Below the folders' common parent where `root` is
    not given or does not hold them all. Paths are taken as spelled, `..` folded, so that no
    name leads out of the output folder."""
    # Lexical, not resolved: a linked folder keeps the name it is reached by.
    norm = [Path(os.path.normpath(p.absolute())) for p in paths]
    # Not the photos' own common folder: a year's months came out as 01/, 02/ (the year lost),
    # and the layout moved when the next year's photos were added; so did one year's folder,
    # flat, which a rerun (that keeps the outputs there) then found none of.
    if root is not None:
        fixed = Path(os.path.normpath(root.absolute()))
        if all(p.is_relative_to(fixed) for p in norm):
            return [p.relative_to(fixed).as_posix() for p in norm]
    if len({p.parent for p in norm}) <= 1:
        return [p.name for p in norm]
    base = Path(os.path.commonpath([str(p.parent) for p in norm]))
    return [p.relative_to(base).as_posix() for p in norm]


def glob_root(spec: str) -> Path:
    """The folder a glob's wildcards start below: 'photos/**/*.jpg' -> photos."""
    parts = Path(spec).parts
    fixed = []
    for part in parts[:-1]:
        # A folder that is there is named, brackets and all ("[raw] photos/*.png")
        if any(c in part for c in "*?[") and not os.path.isdir(os.path.join(*fixed, part)):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def name_order(p: Path) -> tuple:
    """Sort key reading the numbers in a path as numbers: a camera run's image folder holds
    frame_999999 then frame_1000000 (9 hours at 30 fps), which by characters came between
    frame_100000 and frame_100001. Zero-padded names keep their order; the path itself breaks
    ties (img01, img1)."""
    parts = tuple(tuple(int(t) if k % 2 else t for k, t in enumerate(_DIGITS.split(part)))
                  for part in p.parts)
    return parts, p


_DIGITS = re.compile(r"(\d+)")


def _image_list(paths: list[str]) -> list[Path]:
    return sorted((Path(p) for p in paths
                   if Path(p).suffix.lower() in IMAGE_EXTS and Path(p).is_file()), key=name_order)


def _folder_source(spec: str, folder: Path, flags: bool = False,
                   own_files: Sequence[str | os.PathLike] = ()) -> ImageSource:
    """The images directly in `folder`; says what else is there that it does not read. Hidden
    files are left out: an atomic write killed mid-way leaves .NAME.png.XXXX.png, half written.
    So are `own_files`, the run's own (its --stats file, written before the folder is listed:
    said as a file left out, it was blamed on the folder at every start)."""
    # In the images' order, so the clips and other files said come in it too (clip2, clip10).
    # An own file's name first (casefolded: a case-insensitive disk): resolving each entry
    # tripled the listing of a 20,000-image folder.
    own = {Path(f).name.casefold() for f in own_files}
    entries = sorted((q for q in folder.iterdir() if not q.name.startswith(".")
                      and not (q.name.casefold() in own
                               and any(same_file(q, f) for f in own_files))), key=name_order)
    images = _image_list([str(q) for q in entries])
    videos = [q.name for q in entries if q.suffix.lower() in VIDEO_EXTS and q.is_file()]
    if not images:
        # Bounded: a hint must not walk a whole disk when someone passes their home folder.
        below = sum(1 for q in islice(walk_files(folder, broken=[]), 100_000)
                    if q.suffix.lower() in IMAGE_EXTS)
        hint = ""
        if videos:
            hint = (f"; it holds video files ({', '.join(videos[:3])}): pass one as "
                    f"{option('source', flags=flags)}")
        elif below:
            hint = (f"; its subfolders hold {count(below, 'image file')}: pass "
                    f"'{folder / '**' / '*'}' "
                    "(quoted) or one subfolder")
        raise SourceError(f"no images found in {spec!r} (extensions: "
                          f"{', '.join(sorted(IMAGE_EXTS))}){hint}")
    _say_not_images(spec, entries, bool(videos), flags)
    _say_subfolder_images(folder)
    src = ImageSource(spec, images)
    src.library = True
    # Named as images but no files (an upload folder's FIFO, a link loop, a folder x.png):
    # each said and counted as an input not read, as a damaged file is.
    for q in entries:
        why = why_not_a_file(q) if q.suffix.lower() in IMAGE_EXTS else ""
        if why:
            src.skipped.append(f"{shown_path(q)}: {why}")
            warn(f"skipped: {src.skipped[-1]}")
    return src


def _say_subfolder_images(folder: Path) -> None:
    """One warning for the images in a folder source's subfolders, which it does not read: a
    library with a few loose photos at its top and its year folders below looked done."""
    try:   # the folders from the listing's own types: no stat of each of 20,000 images
        subfolders = [e.path for e in os.scandir(folder)
                      if not e.name.startswith(".") and e.is_dir()]
    except OSError:
        return
    # Bounded: a hint must not walk a whole disk when someone passes their home folder.
    below = sum(1 for q in islice((q for d in subfolders for q in walk_files(d, broken=[])),
                                  100_000) if q.suffix.lower() in IMAGE_EXTS)
    if below:
        warn(f"{shown_path(folder)}: its subfolders hold {count(below, 'more image file')}, "
             f"not read: pass '{folder / '**' / '*'}' (quoted) to sharpen them too, each "
             "written in its subfolder")


def _say_not_images(spec: str, entries: list[Path], videos: bool, flags: bool = False) -> None:
    """One warning for the files in a folder source that are not images: a notes.txt, a video,
    photos in a format it does not read (.heic, RAW). Left out unsaid, the folder looked done."""
    names = [q.name for q in entries if q.suffix.lower() not in IMAGE_EXTS | SIDECAR_EXTS
             and q.is_file()]
    hint = f"; pass a video as {option('source', flags=flags)} to sharpen it" if videos else ""
    warn_not_images(spec, names, "a folder source", hint)


def warn_not_images(where: str, names: list[str], reader: str, hint: str = "",
                    videos: bool = False) -> None:
    """The one warning, worded alike wherever a folder's files that are not images are left out
    (`run`'s folder source, `evaluate`'s data): left out unsaid, the folder looked done.
    `videos`: the reader takes the folder's video clips too (footage for labels, training)."""
    if not names:
        return
    more = ", ..." if len(names) > 3 else ""
    clips = f" and {', '.join(sorted(VIDEO_EXTS))} clips" if videos else ""
    what = "that is not an image" if len(names) == 1 else "that are not images"
    warn(f"{where}: {count(len(names), 'file')} {what} skipped ({', '.join(names[:3])}"
         f"{more}); {reader} reads {', '.join(sorted(IMAGE_EXTS))}{clips} only{hint}",
         stacklevel=2)


def _maybe_live(src: Source, live: Optional[bool], flags: bool = False) -> Source:
    refuse_live_images(src, live, flags)
    return src


def refuse_live_images(src: Source, live: Optional[bool], flags: bool = False) -> None:
    """--live on images kept 2 of 20 (the rest "dropped"), exit 0: refused. flags: the message
    names `sharpen run`'s --live, not run_stream's live=True."""
    if live and isinstance(src, ImageSource):
        said = option("live", True, flags)
        raise SourceError(f"{said} drops the frames a model cannot keep up with, for cameras, "
                          "streams and videos; images are all processed, one by one: leave "
                          f"{said} out")
