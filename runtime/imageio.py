"""The one place image files are decoded: a pixel budget checked from the header before any
decoding, truncated files refused, and every decoder failure (OpenCV errors, out of memory)
turned into `ImageReadError` with the file name, so a command processing many files reports the
bad one and carries on. Also the one list of image and video file extensions."""
from __future__ import annotations

import io
import os
import re
import stat
import struct
import zlib
from pathlib import Path
from typing import Optional, Union

# numpy first: without it, cv2's import prints three lines of its own on stdout (the missing
# core dependency is said in one line, sharpen.cli).
import numpy as np
import cv2

from .console import native_stderr_captured
from .first_bytes import what_it_looks_like
from .exif import orientation_entry, orientation_value
from .warn import warn

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm",
                        ".pgm", ".pnm"})
VIDEO_EXTS = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts",
                        ".mts", ".m2ts", ".wmv", ".flv", ".3gp", ".ogv", ".h264", ".h265",
                        ".hevc"})
# Metadata files that photo tools keep beside each photo (Lightroom's and darktable's .xmp, an
# iPhone's edits .aae): no pictures, so not said as photos a source leaves out.
SIDECAR_EXTS = frozenset({".xmp", ".aae"})
# Generous for 8K frames (7680x4320 = 33 Mpx) with room to spare; SHARPEN_MAX_PIXELS raises it.
DEFAULT_MAX_PIXELS = 64_000_000


class ImageReadError(ValueError):
    """A file that is not a usable image; the message names the file and says why."""


class UndecodableImage(ImageReadError):
    """A file (or video frame) whose content cannot be made an image: damaged, truncated, not
    an image, or of a pixel type or layout no model takes. Unlike a file that is missing or
    unreadable for now, reading it again fails again (as one over the pixel budget does until
    the budget is raised: OverPixelBudget)."""


class OverPixelBudget(ImageReadError):
    """A file larger than the pixel budget (SHARPEN_MAX_PIXELS): read again, it fails again
    unless the budget is raised."""


class ImageDecodeOutOfMemory(ImageReadError, MemoryError):
    """Decoding a file ran out of memory (a memory limit, a small board, other work): no fault
    of the file's, unlike UndecodableImage; a MemoryError, as encoding's and sharpening's."""


# How far a TIFF's chain of pages is followed in a URL's bytes: past any real scan batch or
# stack, short of the 85 million directories a hostile 513 MB fetch can chain (each one
# remembered to spot a loop: gigabytes).
MAX_TIFF_PAGES = 65535


def max_pixels() -> int:
    env = os.environ.get("SHARPEN_MAX_PIXELS")
    try:
        return int(float(env)) if env else DEFAULT_MAX_PIXELS
    except ValueError:
        raise ImageReadError(f"SHARPEN_MAX_PIXELS={env!r} is not a number") from None


def frames_over_budget(where: str, width: int, height: int) -> str:
    """Why a video's frames of `width` x `height` are refused (a stranger's clip or stream of
    16000x16000 frames holds hundreds of MB a frame before the model's float copies), or ''
    where they are within the pixel budget that image files have."""
    limit = max_pixels()
    if width * height <= limit:
        return ""
    return (f"{where}: its frames are {width}x{height} = {width * height:,} pixels, over the "
            f"pixel budget of {limit:,} (raise it with the SHARPEN_MAX_PIXELS environment "
            "variable)")


def is_image(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTS


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTS


def tiff_pages(path: str | os.PathLike) -> int:
    """How many pages (images) a TIFF file holds: `decode_image` reads the first one only.
    1 for other files, and when OpenCV cannot tell (the first page decoded all the same)."""
    if Path(path).suffix.lower() not in (".tif", ".tiff"):
        return 1   # the other image formats hold one image; counting costs a second read
    return _images_counted(path)


def animation_frames(path: str | os.PathLike) -> int:
    """How many frames an animation (APNG, animated WebP, a GIF under any name) holds:
    `decode_image` reads the first one only. 1 for a still and for other files; told from its
    first bytes (a PNG's chunk headers), so that OpenCV counts the frames (a second read) of
    animations alone."""
    try:
        with _open_regular(path) as f:
            head = f.read(32)
            apng = head[:8] == b"\x89PNG\r\n\x1a\n" and f.seek(8) and _has_actl(f)
    except (OSError, ImageReadError, struct.error):
        return 1
    webp = head[:4] == b"RIFF" and head[8:16] == b"WEBPVP8X" and len(head) > 20 \
        and head[20] & 0x02   # VP8X's animation flag
    if not (apng or webp or head[:4] == b"GIF8"):
        return 1
    return _images_counted(path)


def _images_counted(path: str | os.PathLike) -> int:
    """OpenCV's count of the images in a file (a second read of it), 1 where it cannot tell."""
    try:
        with native_stderr_captured(DECODER_NOISE):   # libpng's lines, as decoding keeps them
            return max(1, int(cv2.imcount(str(path))))
    except cv2.error:
        return 1


def animation_frames_in(data: bytes) -> int:
    """`animation_frames` of an image held in memory (a URL's): counted in its chunks and
    blocks, which OpenCV counts in a file only."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            for kind, body in _png_chunks(data):
                if kind == b"acTL":
                    return max(1, struct.unpack(">I", body[:4])[0])
                if kind == b"IDAT":
                    break
        elif data[:4] == b"RIFF" and data[8:16] == b"WEBPVP8X" and len(data) > 20 \
                and data[20] & 0x02:
            return max(1, sum(kind == b"ANMF" for kind, _ in _webp_chunks(data)))
        elif data[:4] == b"GIF8":
            return _gif_frames(data)
    except (struct.error, IndexError):
        pass
    return 1


def say_other_images(where: str, pages: int = 1, floor: bool = False, frames: int = 1,
                     done: str = "sharpened", stacklevel: int = 1) -> None:
    """A multi-page TIFF (a scan batch, a stack) decodes as its first page, an animation
    (`animation_frames`) as its first frame: said once, or its one output passes for the whole
    file (`sharpen run`'s sources; decode_bytes', with `done` "decoded"). `floor`: the pages
    were counted up to a cap (a URL's bytes), and there are more. `stacklevel` as warn's."""
    if pages > 1:
        many = f"at least {pages} pages (counted no further)" if floor else f"{pages} pages"
        warn(f"{where}: a TIFF of {many}; only the first page is {done}", stacklevel + 1)
    if frames > 1:
        warn(f"{where}: an animation of {frames} frames; only the first frame is {done} "
             "(convert it to a video to sharpen them all)", stacklevel + 1)


def _gif_frames(data: bytes) -> int:
    """A GIF's image descriptors, each a frame; its extensions and image data are skipped by
    their sub-blocks' lengths."""
    def colour_table(flags: int) -> int:
        return 3 << ((flags & 7) + 1) if flags & 0x80 else 0

    i, frames = 13 + colour_table(data[10]), 0
    while i < len(data) and data[i] != 0x3B:   # the trailer
        if data[i] == 0x21:   # an extension: its label, then sub-blocks
            i += 2
        elif data[i] == 0x2C:   # an image: its descriptor, local colour table, LZW code size
            frames += 1
            i += 11 + colour_table(data[i + 9])
        else:
            break
        while i < len(data) and data[i]:
            i += data[i] + 1
        i += 1
    return max(1, frames)


def _has_actl(f) -> bool:
    """Whether the PNG open in `f`, at its first chunk, has an acTL (APNG's) before its image
    data. Walked by chunk headers: a camera's eXIf or a big iCCP may put it past any fixed
    number of bytes read."""
    for _ in range(10_000):   # a file of empty chunks ends the walk too
        head = f.read(8)
        if len(head) < 8:
            return False
        n, kind = struct.unpack(">I4s", head)
        if kind == b"acTL":
            return True
        if kind in (b"IDAT", b"IEND"):
            return False
        f.seek(n + 4, os.SEEK_CUR)   # the body and its CRC
    return False


# Classic TIFF (42): 2-byte entry counts, 12-byte entries, 4-byte offsets; BigTIFF (43):
# 8, 20 and 8, its first offset at 8.
_TIFF_LAYOUT = {42: ("H", 12, "I", 4), 43: ("Q", 20, "Q", 8)}
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

# The integer types libtiff takes a width or height in: BYTE, SHORT, LONG, their signed
# kinds, and LONG8/SLONG8.
_TIFF_INTS = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 16: "Q", 17: "q"}


def tiff_pages_in(data: bytes) -> int:
    """How many pages a TIFF's bytes (fetched from a URL) hold, as `tiff_pages` counts a
    file's: the chain of image directories, followed without decoding any. 1 for other
    formats. The bytes are anyone's: a chain that loops, points past the end or is cut short
    counts the whole directories read up to there, and at most MAX_TIFF_PAGES."""
    return tiff_page_count_in(data)[0]


def tiff_page_count_in(data: bytes) -> tuple[int, bool]:
    """`tiff_pages_in`, and whether the walk stopped at MAX_TIFF_PAGES with a page still
    chained after them: the count is then a floor, not the TIFF's page count."""
    order = {b"II": "<", b"MM": ">"}.get(bytes(data[:2]))
    if order is None or len(data) < 16:
        return 1, False
    layout = _TIFF_LAYOUT.get(struct.unpack_from(order + "H", data, 2)[0])
    if layout is None:
        return 1, False
    count, entry, offset, first = layout
    count_size, offset_size = struct.calcsize(count), struct.calcsize(offset)
    at = struct.unpack_from(order + offset, data, first)[0]
    pages, seen = 0, set()
    # Offsets are checked against the length before unpacking: a BigTIFF's reach 2**64, past
    # what struct takes (OverflowError, not struct.error).
    while at and at not in seen and pages < MAX_TIFF_PAGES:   # a loop in the chain ends it
        seen.add(at)
        if at + count_size > len(data):
            break
        n = struct.unpack_from(order + count, data, at)[0]
        next_at = at + count_size + n * entry
        if next_at + offset_size > len(data):
            break
        at = struct.unpack_from(order + offset, data, next_at)[0]
        pages += 1
    more = pages == MAX_TIFF_PAGES and bool(at) and at not in seen
    return max(1, pages), more


def _png_size(head: bytes) -> Optional[tuple[int, int]]:
    if len(head) >= 24 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        w, h = struct.unpack(">II", head[16:24])
        return w, h
    return None


# Radiance HDR's resolution line, right after its text header's first blank line ("-Y 64 +X 96":
# height first; "+X 96 -Y 64" for a picture stored rotated), and PFM's size line ("PF\n96 64\n"),
# spelt as loosely as OpenCV's sscanf reads them: any spaces or none, leading zeros, a plus.
_RADIANCE_SIZE = re.compile(rb"\s*([-+][XY])\s*\+?(\d+)\s*([-+][XY])\s*\+?(\d+)")
_PFM_SIZE = re.compile(rb"P[Ff]\s+\+?(\d+)\s+\+?(\d+)\s")


def _text_header_size(data: bytes) -> Optional[tuple[int, int]]:
    """(width, height) of a Radiance .hdr or a .pfm, which OpenCV decodes to float and no other
    parser here reads: a few KB of run-length-encoded HDR can say 30000x30000 (10 GB of
    floats). The whole header is read: a comment line can make it as long as the sender likes."""
    if data[:2] == b"#?":
        end = data.find(b"\n\n")
        found = _RADIANCE_SIZE.match(data, end + 2) if end >= 0 else None
        if found:
            first, a, _, b = found.groups()
            a, b = _header_int(a), _header_int(b)
            return (b, a) if first.endswith(b"Y") else (a, b)
    found = _PFM_SIZE.match(data)
    return (_header_int(found.group(1)), _header_int(found.group(2))) if found else None


def _header_int(digits: bytes) -> int:
    """A header's decimal number, one of thousands of digits taken as over any budget (int()
    refuses more than 4300 digits with a ValueError, which no caller of decode_bytes catches)."""
    digits = digits.lstrip(b"0") or b"0"
    return int(digits) if len(digits) <= 18 else 10 ** 18


def _jpeg_segments(data: bytes):
    """(marker, offset) of a JPEG's header segments, up to and including the first start of
    scan (FF DA) of the main image; embedded thumbnails sit inside APP segments and are skipped."""
    if data[:2] != b"\xff\xd8":
        return
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        yield marker, i
        if marker == 0xDA:
            return
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]


def _jpeg_size(data: bytes) -> Optional[tuple[int, int]]:
    for marker, i in _jpeg_segments(data):
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and i + 9 <= len(data):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
    return None


def is_cmyk(data: bytes) -> bool:
    """Whether an encoded image is CMYK (a print file: a JPEG of four components, a TIFF of
    Photometric 5), which OpenCV decodes to RGB by a plain formula, not a colour-managed one."""
    try:
        if data[:2] == b"\xff\xd8":
            for marker, i in _jpeg_segments(data):
                if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                    return data[i + 9:i + 10] == b"\x04"   # its component count
        elif data[:4] in _TIFF_MAGIC:
            value = _tiff_tag_bytes(data, 262, kinds=(3,))   # PhotometricInterpretation
            order = "<" if data[:2] == b"II" else ">"
            return value is not None and struct.unpack(order + "H", value[:2])[0] == 5
    except (struct.error, IndexError, OverflowError):
        pass
    return False


def file_header_size(path: Union[str, Path]) -> Optional[tuple[int, int]]:
    """An image file's (width, height) from its first 256 KiB (past a JPEG's EXIF and ICC
    segments), for a progress bar's tile count before anything is decoded; None where the
    header does not say or the file cannot be read."""
    try:
        with _open_regular(path) as f:
            return header_size(f.read(1 << 18))
    except (OSError, ImageReadError):
        return None


def shown_path(path: Union[str, os.PathLike]) -> str:
    """`path` as a message shows it: a control character in a stranger's file name (a newline,
    an escape sequence) written as Python escapes it, so the message stays one line and the
    terminal does what it is told by no file name; a byte of a name that is not UTF-8 (a
    Latin-1 ß, which Python keeps as the surrogate escape U+DCDF) as `\xdf`, as `ls -b` shows
    it; other characters as they are."""
    return "".join(c if c.isprintable() or c == " "
                   else f"\\x{ord(c) - 0xDC00:02x}" if "\udc80" <= c <= "\udcff"
                   else repr(c)[1:-1] for c in str(path))


def special_kind(mode: int) -> str:
    """What a file that is neither a regular file nor a folder is, by its `st_mode`."""
    return ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device")


def _special_kind(mode: int) -> str:
    return f"not a regular file ({special_kind(mode)})"


def why_not_a_file(path: Union[str, os.PathLike]) -> str:
    """Why `path`, listed in a folder, is no image file to read: a link that loops or whose
    target is gone, a folder, a FIFO, socket or device; '' for a regular file."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return ("a link that loops or points nowhere" if os.path.islink(path)
                else "gone since the folder was listed")
    if stat.S_ISREG(mode):
        return ""
    return "a folder, not an image file" if stat.S_ISDIR(mode) else _special_kind(mode)


def _open_regular(path: Union[str, os.PathLike]):
    """`path` opened for reading, or UndecodableImage where it is not a regular file: a FIFO
    (whose open and read wait for a writer that may never come), a device or a socket. Opened
    without waiting and checked after, so a FIFO swapped in after a check cannot block."""
    # O_BINARY: Windows' C runtime would otherwise translate the bytes as text
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
            raise UndecodableImage(f"{shown_path(path)}: {_special_kind(mode)}; give an "
                                   "image file")
        if hasattr(os, "O_NONBLOCK"):   # (Windows has neither, and no FIFOs to wait on)
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def header_size(data: bytes) -> Optional[tuple[int, int]]:
    """(width, height) from an image file's header without decoding, or None when unknown."""
    size = (_png_size(data[:32]) or _jpeg_size(data) or _tiff_size(data)
            or _text_header_size(data))
    if size is None and data[:2] == b"BM" and len(data) >= 26:
        w, h = struct.unpack("<ii", data[18:26])
        size = abs(w), abs(h)
    # A TIFF whose first directory cannot be read is not one libtiff reads either; and
    # Pillow's look at it prints warnings of its own.
    if size is None and data[:4] not in _TIFF_MAGIC:
        size = _pillow_size(data)
    return size


def _pillow_size(data: bytes) -> Optional[tuple[int, int]]:
    """(width, height) as Pillow's parsers read a header (WebP's, PNM's, GIF's...), or None.
    Its plugins are called as Image.open calls them, without Image.open's decompression-bomb
    check: our own budget applies, and Pillow's MAX_IMAGE_PIXELS, which turns that check off, is
    the process's (an app's own Image.open in another thread ran unchecked while it was off)."""
    try:
        from PIL import Image
        Image.init()
        for fmt in list(Image.ID):
            factory, accept = Image.OPEN[fmt]
            said = accept(data[:16]) if accept else True
            if not said or isinstance(said, str):   # a str: Pillow's "not this format"
                continue
            try:
                with factory(io.BytesIO(data), None) as im:
                    return im.size
            except (SyntaxError, IndexError, TypeError, struct.error):   # Image.open's "next"
                continue
    except Exception:  # noqa: BLE001 - unknown to PIL as well: let OpenCV decide
        return None
    return None


def _tiff_directory(data: bytes) -> Optional[tuple[str, tuple[str, int, str, int], range, int]]:
    """A TIFF's (classic or BigTIFF) first directory: its byte order, its _TIFF_LAYOUT row,
    the offsets of its entries (a range: a damaged count may say 2**64 of them), and where the
    next directory's offset follows them; None for bytes of no TIFF, struct.error (or
    OverflowError, past a BigTIFF's reach) where cut."""
    order = {b"II": "<", b"MM": ">"}.get(bytes(data[:2]))
    layout = order and _TIFF_LAYOUT.get(struct.unpack_from(order + "H", data, 2)[0])
    if not layout:
        return None
    count, entry, offset, first = layout
    at = struct.unpack_from(order + offset, data, first)[0]
    start = at + struct.calcsize(count)
    n = struct.unpack_from(order + count, data, at)[0]
    return order, layout, range(start, start + entry * n, entry), start + entry * n


def _tiff_size(data: bytes) -> Optional[tuple[int, int]]:
    """A TIFF's (classic or BigTIFF) first page's (width, height) from its first directory,
    read here rather than by Pillow, which prints its own warnings (with its source path) for
    a cut file's directory and reads no big-endian BigTIFF. A size stored in any integer type
    libtiff reads is read (a signed one may be negative: refused as invalid)."""
    try:
        directory = _tiff_directory(data)
        if directory is None:
            return None
        order, (_, _, offset, _), entries, _ = directory
        field = struct.calcsize(offset)   # a value this long or shorter is in the entry
        tags = {}
        for e in entries:
            tag, kind = struct.unpack_from(order + "HH", data, e)
            fmt = _TIFF_INTS.get(kind)
            if tag in (256, 257) and fmt:
                where = e + 4 + field
                if struct.calcsize(fmt) > field:   # a LONG8 in a classic TIFF: pointed at
                    where = struct.unpack_from(order + offset, data, where)[0]
                tags[tag] = struct.unpack_from(order + fmt, data, where)[0]
        return (tags[256], tags[257]) if len(tags) == 2 else None
    except (struct.error, OverflowError):   # cut before its first directory ends: OpenCV
        return None                          # decides


def _png_chunks(data: bytes):
    """(kind, body) of a PNG file's chunks, up to IEND."""
    i = 8
    while i + 8 <= len(data):
        n, kind = struct.unpack(">I", data[i:i + 4])[0], data[i + 4:i + 8]
        if kind == b"IEND":
            return
        yield kind, data[i + 8:i + 8 + n]
        i += 12 + n


def _webp_chunks(data: bytes):
    """(kind, body) of a WebP (RIFF) file's chunks."""
    i = 12
    while i + 8 <= len(data):
        kind, n = data[i:i + 4], struct.unpack("<I", data[i + 4:i + 8])[0]
        yield kind, data[i + 8:i + 8 + n]
        i += 8 + n + (n & 1)


def exif_block(data: bytes) -> Optional[bytes]:
    """The EXIF (TIFF-structured) block of a JPEG, PNG or WebP file, or None."""
    if data[:2] == b"\xff\xd8":
        for marker, i in _jpeg_segments(data):
            if marker == 0xE1 and data[i + 4:i + 10] == b"Exif\x00\x00":
                n = struct.unpack(">H", data[i + 2:i + 4])[0]
                return data[i + 10:i + 2 + n]
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        for kind, body in _png_chunks(data):   # eXIf may come after the image data
            if kind == b"eXIf":
                return _unprefixed(body)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        for kind, block in _webp_chunks(data):
            if kind == b"EXIF":
                return _unprefixed(block)
    return None


def _unprefixed(block: bytes) -> bytes:
    """A PNG's or WebP's EXIF without the JPEG segment's "Exif\\0\\0" that some writers put
    before it (Pillow and exiftool read past it)."""
    return block[6:] if block[:6] == b"Exif\x00\x00" else block


# In the order they are said.
KINDS_LEFT_OUT = ("XMP", "IPTC", "PNG text", "PNG gamma", "TIFF EXIF")
# A TIFF's tags of what `sharpen run` writes no output with: XMP, IPTC, and EXIF (read from
# JPEG, PNG and WebP only): a TIFF keeps its camera, date and caption among its own tags
# (ImageDescription, Make, Model, DateTime, Artist, Copyright), the rest in Exif and GPS
# directories of its own.
_TIFF_LEFT_OUT = {700: "XMP", 33723: "IPTC",
                  **dict.fromkeys((270, 271, 272, 306, 315, 33432, 34665, 34853), "TIFF EXIF")}


def metadata_left_out(data: bytes) -> list[str]:
    """What an encoded photo holds that its output is written without, by kind ("XMP", "IPTC",
    "PNG text", "PNG gamma", "TIFF EXIF"): an archive's captions, keywords and ratings, said
    at the end of a run rather than lost unsaid. Its EXIF and colour profile are kept (other
    code's)."""
    kinds: set[str] = set()
    try:
        if data[:2] == b"\xff\xd8":
            for marker, i in _jpeg_segments(data):
                if marker == 0xE1 and data[i + 4:i + 33] == b"http://ns.adobe.com/xap/1.0/\x00":
                    kinds.add("XMP")
                elif marker == 0xED and data[i + 4:i + 18] == b"Photoshop 3.0\x00":
                    n = struct.unpack(">H", data[i + 2:i + 4])[0]
                    if _holds_iptc(data[i + 18:i + 2 + n]):
                        kinds.add("IPTC")
        elif data[:8] == b"\x89PNG\r\n\x1a\n":
            chunks = {}
            for kind, body in _png_chunks(data):
                chunks.setdefault(kind, body)
                if kind in (b"tEXt", b"zTXt", b"iTXt") and not body.startswith(b"date:"):
                    kinds.add("XMP" if body.startswith(b"XML:com.adobe.xmp\x00") else "PNG text")
            if _png_gamma_not_srgb(chunks):
                kinds.add("PNG gamma")
        elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            kinds.update("XMP" for kind, _ in _webp_chunks(data) if kind == b"XMP ")
        elif (directory := _tiff_directory(data)) is not None:
            order, entries = directory[0], directory[2]
            for e in entries[:4096]:   # a damaged count may say 2**64 of them
                tag = struct.unpack_from(order + "H", data, e)[0]
                if tag in _TIFF_LEFT_OUT:
                    kinds.add(_TIFF_LEFT_OUT[tag])
    except (struct.error, OverflowError):   # cut short: what was found so far
        pass
    return [k for k in KINDS_LEFT_OUT if k in kinds]


def _holds_iptc(resources: bytes) -> bool:
    """Whether a JPEG's Photoshop segment (APP13: image resource blocks) holds an IPTC record
    (resource 0x0404): Photoshop writes the segment into every JPEG it saves, its resolution
    and a digest in it, caption or none."""
    i = 0
    while resources[i:i + 4] == b"8BIM" and i + 7 <= len(resources):
        resource = struct.unpack_from(">H", resources, i + 4)[0]
        i += 6 + ((resources[i + 6] + 2) & ~1)   # a Pascal name, padded to even
        size = struct.unpack_from(">I", resources, i)[0]
        if resource == 0x0404 and size:
            return True
        i += 4 + size + (size & 1)
    return False


# sRGB's gamma (1/2.2) and chromaticities (white, red, green, blue x and y) as a PNG's gAMA and
# cHRM give them, in 1/100000ths: what libpng writes beside an sRGB chunk.
_SRGB_GAMMA = 45455
_SRGB_CHRM = (31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000)


def _png_gamma_not_srgb(chunks: dict[bytes, bytes]) -> bool:
    """Whether a PNG's gAMA or cHRM (`chunks`: kind -> body) shows its values other than as
    sRGB, which an output without them is shown as. Where it has a profile (kept) or an sRGB
    chunk, colour-managed viewers follow that and ignore them."""
    if b"iCCP" in chunks or b"sRGB" in chunks:
        return False
    gamma, chrm = chunks.get(b"gAMA", b""), chunks.get(b"cHRM", b"")
    off_gamma = len(gamma) == 4 and abs(int.from_bytes(gamma, "big") - _SRGB_GAMMA) > 500
    off_chrm = len(chrm) == 32 and any(abs(v - s) > 100 for v, s in
                                       zip(struct.unpack(">8I", chrm), _SRGB_CHRM))
    return off_gamma or off_chrm


_ICC_JPEG = b"ICC_PROFILE\x00"
# The most a JPEG carries: 255 APP2 segments of at most 65,517 profile bytes. Also where a
# PNG's iCCP chunk stops being inflated: no profile is larger, and 40 KB of zlib data inflate
# to 40 MB (a URL's bytes are anyone's).
MAX_ICC_BYTES = 255 * 65517
# Pillow refuses to open a PNG whose iCCP chunk inflates past 1 MiB (its MAX_TEXT_CHUNK).
MAX_PNG_ICC_BYTES = 1 << 20


# A TIFF's InterColorProfile tag: its profile's bytes, UNDEFINED (7) or BYTE (1).
_TIFF_ICC_TAG = 34675


def _tiff_tag_bytes(data: bytes, tag: int, kinds: tuple[int, ...] = (1, 7)) -> Optional[bytes]:
    """The bytes of a TIFF's (classic or BigTIFF) `tag` in its first directory, as stored (in
    the file's byte order), where it is of one of `kinds`: BYTE, SHORT or UNDEFINED (1, 3, 7;
    default: a profile's 1 or 7); None where it has none or the value is cut."""
    directory = _tiff_directory(data)
    if directory is None:
        return None
    order, (_, _, offset, _), entries, _ = directory
    field = struct.calcsize(offset)   # a value this long or shorter is in the entry
    for e in entries:
        if struct.unpack_from(order + "H", data, e)[0] != tag:
            continue
        kind = struct.unpack_from(order + "H", data, e + 2)[0]
        n = struct.unpack_from(order + offset, data, e + 4)[0] * (2 if kind == 3 else 1)
        if kind not in kinds or n > MAX_ICC_BYTES:
            return None
        where = e + 4 + field
        if n > field:
            where = struct.unpack_from(order + offset, data, where)[0]
        value = bytes(data[where:where + n])
        return value if len(value) == n else None
    return None


def _tiff_with_tag(encoded: bytes, tag: int, value: bytes) -> Optional[bytes]:
    """A TIFF's bytes (as OpenCV encodes them) with UNDEFINED `tag` set to `value` in its first
    directory: the value and a copy of the directory with the tag in it are appended, and the
    header points at the copy (libtiff's own way of rewriting a directory; the old one is
    left unreferenced). None where the file cannot take it (past a classic TIFF's 4 GiB)."""
    directory = _tiff_directory(encoded)
    if directory is None:
        return None
    order, (count, entry, offset, first), where, end = directory
    field, n = struct.calcsize(offset), len(where)
    entries = [encoded[e:e + entry] for e in where]
    chained = encoded[end:end + field]   # the next page's offset
    out = bytearray(encoded)
    out += bytes(len(out) & 1)   # offsets are word-aligned
    value_at = len(out)
    out += value + bytes(len(value) & 1)
    if len(value) <= field or len(out) + entry * (n + 1) + 16 >= 1 << (8 * field):
        return None
    mine = (struct.pack(order + "HH", tag, 7) + struct.pack(order + offset, len(value))
            + struct.pack(order + offset, value_at))
    entries = [e for e in entries if struct.unpack_from(order + "H", e)[0] != tag] + [mine]
    entries.sort(key=lambda e: struct.unpack_from(order + "H", e)[0])   # as TIFF requires
    out[first:first + field] = struct.pack(order + offset, len(out))
    out += struct.pack(order + count, len(entries)) + b"".join(entries) + chained
    return bytes(out)


# The extended WebP header's (VP8X) flag for each metadata chunk it declares.
_WEBP_FLAGS = {b"ICCP": 0x20, b"EXIF": 0x08}


def webp_with_chunk(encoded: bytes, kind: bytes, body: bytes) -> Optional[bytes]:
    """A WebP's bytes (as OpenCV encodes them: a simple VP8 or VP8L file, or VP8X with ALPH
    where lossy with alpha) with an ICCP (a profile) or EXIF chunk, which only the extended
    format holds: a VP8X header first, its flag for the chunk set; ICCP right after it, EXIF
    after the image, as the container's order requires. None for a WebP of another layout."""
    chunks = [(k, b) for k, b in _webp_chunks(encoded) if k != kind]
    if not chunks:
        return None
    first, data = chunks[0]
    if first == b"VP8X" and len(data) == 10:
        header, chunks = bytes([data[0] | _WEBP_FLAGS[kind]]) + data[1:], chunks[1:]
    elif first == b"VP8L" and len(data) >= 5 and data[0] == 0x2F:
        bits = int.from_bytes(data[1:5], "little")   # 14 bits width-1, 14 height-1, alpha
        w, h, alpha = bits & 0x3FFF, (bits >> 14) & 0x3FFF, (bits >> 28) & 1
        header = (bytes([_WEBP_FLAGS[kind] | 0x10 * alpha, 0, 0, 0]) + w.to_bytes(3, "little")
                  + h.to_bytes(3, "little"))
    elif first == b"VP8 " and len(data) >= 10 and data[3:6] == b"\x9d\x01\x2a":
        w = (int.from_bytes(data[6:8], "little") & 0x3FFF) - 1
        h = (int.from_bytes(data[8:10], "little") & 0x3FFF) - 1
        header = (bytes([_WEBP_FLAGS[kind], 0, 0, 0]) + w.to_bytes(3, "little")
                  + h.to_bytes(3, "little"))
    else:
        return None
    chunks = ([(b"VP8X", header), (kind, body)] + chunks if kind == b"ICCP" else
              [(b"VP8X", header)] + chunks + [(kind, body)])
    riff = b"WEBP" + b"".join(k + struct.pack("<I", len(b)) + b + bytes(len(b) & 1)
                              for k, b in chunks)
    return b"RIFF" + struct.pack("<I", len(riff)) + riff


def icc_problem(profile: bytes) -> str:
    """Why `profile` is not a whole ICC profile (cut short, a segment of a JPEG's lost, or not
    one at all), '' where its header holds: the checks colour management makes first."""
    if len(profile) < 128:
        return f"not an ICC profile: {len(profile)} bytes, shorter than a profile's header"
    if profile[36:40] != b"acsp":
        return "not an ICC profile: its header lacks the 'acsp' signature"
    size = struct.unpack(">I", profile[:4])[0]
    # Bytes past the size are padding some writers add, which colour management ignores.
    if size > len(profile) or size < 128:
        return (f"its header gives {size:,} bytes and it holds {len(profile):,}: cut short, or "
                "a part lost")
    return ""


def icc_profile(data: bytes) -> Optional[bytes]:
    """The ICC colour profile embedded in a JPEG, PNG, WebP or TIFF file's bytes, or None
    (none, or one cut or damaged: the pixels are then shown as sRGB, as without one)."""
    try:
        if data[:2] == b"\xff\xd8":
            parts = {}
            for marker, i in _jpeg_segments(data):
                n = struct.unpack(">H", data[i + 2:i + 4])[0]
                if marker == 0xE2 and data[i + 4:i + 16] == _ICC_JPEG:
                    parts[data[i + 16]] = data[i + 18:i + 2 + n]   # sequence number: from 1
            return b"".join(parts[k] for k in sorted(parts)) or None
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            for kind, body in _png_chunks(data):
                if kind == b"iCCP":
                    inflate = zlib.decompressobj()
                    profile = inflate.decompress(body[body.index(b"\x00") + 2:],
                                                 MAX_ICC_BYTES + 1)
                    return profile if 0 < len(profile) <= MAX_ICC_BYTES else None
                if kind == b"IDAT":   # iCCP comes before the image data
                    break
        elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            for kind, body in _webp_chunks(data):
                if kind == b"ICCP":
                    return body or None
        elif data[:4] in _TIFF_MAGIC:
            return _tiff_tag_bytes(data, _TIFF_ICC_TAG) or None
    except (struct.error, ValueError, IndexError, OverflowError, zlib.error):
        pass
    return None


def with_icc_profile(encoded: bytes, profile: bytes) -> Optional[bytes]:
    """A PNG's, JPEG's, TIFF's or WebP's bytes (as OpenCV encodes them, without a profile)
    with `profile` embedded; None for other formats, whose encoders here cannot carry one."""
    if encoded[:4] in _TIFF_MAGIC:
        return _tiff_with_tag(encoded, _TIFF_ICC_TAG, profile)
    if encoded[:4] == b"RIFF" and encoded[8:12] == b"WEBP":
        return webp_with_chunk(encoded, b"ICCP", profile)
    if encoded[:8] == b"\x89PNG\r\n\x1a\n":
        body = b"icc\x00\x00" + zlib.compress(profile)   # name, compression method 0
        chunk = (struct.pack(">I", len(body)) + b"iCCP" + body
                 + struct.pack(">I", zlib.crc32(b"iCCP" + body)))
        at = 8 + 12 + struct.unpack(">I", encoded[8:12])[0]   # after IHDR, as it must be
        return encoded[:at] + chunk + encoded[at:]
    if encoded[:2] == b"\xff\xd8":
        step = 65533 - 2 - len(_ICC_JPEG) - 2   # a segment's length field counts itself
        parts = [profile[k:k + step] for k in range(0, len(profile), step)]
        if len(parts) > 255:
            return None
        segments = b"".join(b"\xff\xe2" + struct.pack(">H", 2 + len(_ICC_JPEG) + 2 + len(p))
                            + _ICC_JPEG + bytes([k + 1, len(parts)]) + p
                            for k, p in enumerate(parts))
        at = 2
        if encoded[2:4] == b"\xff\xe0":   # JFIF's APP0 stays first
            at = 4 + struct.unpack(">H", encoded[4:6])[0]
        return encoded[:at] + segments + encoded[at:]
    return None


def exif_orientation(data: bytes) -> int:
    """The EXIF Orientation tag (1-8; 1 = as stored) of an encoded image, 1 when absent; a
    TIFF's own Orientation tag (the same tag, which OpenCV's TIFF decoder applies). A cut or
    malformed block, or BigTIFF's 8-byte layout, shows the pixels as stored."""
    t = data if data[:2] in (b"II", b"MM") else exif_block(data)
    found = orientation_entry(t) if t else None
    value = orientation_value(t, found) if found else None
    return value if value is not None and 1 <= value <= 8 else 1


# Orientation tag -> what turns the stored pixels upright (as OpenCV's IMREAD_COLOR does).
_UPRIGHT = {
    2: lambda a: cv2.flip(a, 1),
    3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
    4: lambda a: cv2.flip(a, 0),
    5: lambda a: cv2.transpose(a),
    6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
    7: lambda a: cv2.rotate(cv2.transpose(a), cv2.ROTATE_180),
    8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
}


def turn_upright(img: np.ndarray, orientation: int) -> np.ndarray:
    """The stored pixels `img` turned as orientation tag `orientation` (1-8) shows them."""
    upright = _UPRIGHT.get(orientation)
    return upright(img) if upright else img


def _truncated(data: bytes) -> bool:
    """PNG without its IEND chunk; JPEG without an end-of-image marker (FF D9) after its first
    start of scan (byte stuffing keeps FF D9 out of the compressed data, so a cut file has none;
    data appended after the marker, as in motion photos, is allowed)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return b"IEND" not in data[-64:]
    if data[:2] == b"\xff\xd8":
        sos = [i for marker, i in _jpeg_segments(data) if marker == 0xDA]
        return bool(sos) and data.find(b"\xff\xd9", sos[0]) < 0
    return False


def decode_image(path: str | os.PathLike, limit: Optional[int] = None) -> np.ndarray:
    """The file decoded as OpenCV does (BGR/BGRA/gray, 8 or 16 bit), turned upright by its EXIF
    orientation, or ImageReadError."""
    where = shown_path(path)
    try:
        with _open_regular(path) as f:
            data = f.read()
    except FileNotFoundError:
        raise ImageReadError(f"{where}: no such file") from None
    except OSError as e:
        raise ImageReadError(f"{where}: cannot read ({e.strerror or e})") from None
    return decode_first_image(data, where, limit)   # its source counts the others in the file


# What the decoders OpenCV calls write to stderr: libjpeg's warnings and errors, libpng's,
# and OpenCV's own log ("[ WARN:0@0.06] global ...": libtiff's and libwebp's messages come
# through it). Spelled as they print them: fd 2 is the whole process's, and an app's own log
# line ("[INFO] ...", "Warning: ...") from another thread meanwhile must not be taken.
DECODER_NOISE = re.compile(r"(Corrupt JPEG data|Premature end of JPEG|libpng (warning|error)"
                           r"|\[ ?(ERROR|WARN|INFO|DEBUG|FATAL):\d+(@[\d.]+)?\] "
                           r"|Invalid JPEG|Not a JPEG|Bogus |Unsupported JPEG"
                           r"|Warning: (unknown JFIF|thumbnail image size)|JPEG datastream"
                           r"|Inconsistent progression|Huffman|Invalid (SOS|component|color)"
                           r"|Improper call)")

# libjpeg's warnings that the compressed data itself is damaged (it fills the rest of the
# picture with grey, or with garbage past a desync, and returns an image all the same), as
# against a stray byte before a marker or an odd ICC or JFIF segment, which cameras write and
# which decode whole.
_JPEG_DAMAGE = re.compile(r"(Corrupt JPEG data: (premature end of data segment|bad Huffman "
                          r"code|found marker .* instead of RST.*)|Premature end of JPEG file)")


# libjpeg prints only its first warning: a stray byte before a header marker (cameras write
# them) would hide the damage after it.
_JPEG_STRAY_IN_HEADER = re.compile(r"Corrupt JPEG data: \d+ extraneous bytes before marker "
                                   r"0x(c[0-9a-f]|d[ab]|dd|e[0-9a-f]|fe)\b")


def _jpeg_damage_past_header_stray(data: bytes) -> Optional[re.Match]:
    """_JPEG_DAMAGE in libjpeg's warnings on `data` decoded again with its header's segments
    put back to back (the stray bytes between them left out), where there were any."""
    segments = list(_jpeg_segments(data))
    if not segments or segments[-1][0] != 0xDA:
        return None
    parts = [b"\xff\xd8"]
    for _, i in segments:
        parts.append(data[i:i + 2 + struct.unpack(">H", data[i + 2:i + 4])[0]])
    i = segments[-1][1]
    parts.append(data[i + 2 + struct.unpack(">H", data[i + 2:i + 4])[0]:])
    clean = b"".join(parts)
    if len(clean) == len(data):
        return None
    try:
        with native_stderr_captured(DECODER_NOISE) as said:
            cv2.imdecode(np.frombuffer(clean, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:   # decoded once as it came: that image stands
        return None
    return _JPEG_DAMAGE.search(said[0])


def decode_bytes(data: bytes, where: str = "image", limit: Optional[int] = None) -> np.ndarray:
    """An image file's bytes (fetched from a URL, an upload) decoded as `decode_image` decodes a
    file, or ImageReadError naming `where`: UndecodableImage (damaged, empty, not an image) or
    OverPixelBudget (over `limit` pixels, SHARPEN_MAX_PIXELS's without it, said by its header
    before any decoding). Its first image: a SharpenWarning says where it holds others (an
    animation's frames, a TIFF's pages), as `sharpen run` says it of such a file."""
    if not isinstance(data, (bytes, bytearray, memoryview)):   # a path given by mistake
        raise TypeError(f"decode_bytes: data must be bytes (an image file's contents), got "
                        f"{type(data).__name__}")
    data = bytes(data)
    img = decode_first_image(data, where, limit)
    # Counted in the bytes (no temporary file for OpenCV to count them in); the warning is
    # the caller's line's: a service's upload, which a filter there can name.
    say_other_images(where, *tiff_page_count_in(data), animation_frames_in(data),
                     done="decoded", stacklevel=2)
    return img


def decode_first_image(data: bytes, where: str = "image",
                       limit: Optional[int] = None) -> np.ndarray:
    """`decode_bytes` without a word of the images after the first: for callers that say it
    themselves (a source, once for its file) or have said it (encode_bytes' like=)."""
    # Which budget to name: a caller's limit= is not raised by the environment variable
    raise_it = ("raise it with the SHARPEN_MAX_PIXELS environment variable" if limit is None
                else f"limit={limit}")
    limit = max_pixels() if limit is None else limit
    if not data:
        # Undecodable, not unreadable for now: reading it again gives the same 0 bytes.
        raise UndecodableImage(f"{where}: empty file (0 bytes)")
    size = header_size(data)
    if size is not None:
        w, h = size
        if w <= 0 or h <= 0:
            raise UndecodableImage(f"{where}: header gives an invalid size {w}x{h}")
        if w * h > limit:
            raise OverPixelBudget(f"{where}: {w}x{h} = {w * h:,} pixels exceeds the pixel "
                                  f"budget of {limit:,} ({raise_it})")
    if _truncated(data):
        raise UndecodableImage(f"{where}: truncated or damaged file (it has no end-of-image "
                               "marker)")
    try:
        # The decoders' own lines (libjpeg's, libpng's, libtiff's through OpenCV's log) are
        # kept off the terminal: the error or warning below names the file and says why.
        with native_stderr_captured(DECODER_NOISE) as said:
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except (cv2.error, MemoryError) as e:
        from .prepost import is_out_of_memory
        if is_out_of_memory(e):   # OpenCV's "Insufficient memory" too: not the file's fault
            shape = f"{size[0]}x{size[1]}, " if size else ""
            raise ImageDecodeOutOfMemory(
                f"{where}: out of memory decoding it ({shape}{len(data):,} bytes): give the "
                "process more memory (README: peak memory)") from None
        raise UndecodableImage(f"{where}: the decoder failed "
                               f"({str(e).strip().splitlines()[-1]})") from None
    if img is None:
        looks = what_it_looks_like(data[:256]).strip(" ()")
        if looks and "image" not in looks:   # a damaged JPEG or WebP is one
            raise UndecodableImage(f"{where}: not an image the runtime reads: by its first "
                                   f"bytes {looks}, whatever its extension says")
        raise UndecodableImage(f"{where}: not a readable image (corrupt or unsupported format)")
    damage = _JPEG_DAMAGE.search(said[0]) if data[:2] == b"\xff\xd8" else None
    if damage is None and _JPEG_STRAY_IN_HEADER.match(said[0]):
        damage = _jpeg_damage_past_header_stray(data)
    if damage:
        raise UndecodableImage(f"{where}: damaged JPEG data (the decoder reports: "
                               f"{damage.group(0)})")
    # IMREAD_UNCHANGED (kept for 16-bit and alpha) ignores the EXIF rotation that viewers and
    # IMREAD_COLOR apply, which would leave phone photos sideways; TIFF is already upright.
    upright = _UPRIGHT.get(exif_orientation(data)) if data[:2] not in (b"II", b"MM") else None
    if img.ndim == 3 and img.shape[2] == 4 and is_cmyk(data):
        # libtiff's RGBA decode of a CMYK TIFF: its alpha all 255, a channel the file never
        # had, which outputs and a service's answer would carry (OpenCV reads no CMYK + alpha)
        img = np.ascontiguousarray(img[..., :3])
    return upright(img) if upright else img
