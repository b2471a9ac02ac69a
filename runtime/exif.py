"""A photo's EXIF (capture date, camera, lens, GPS) carried from its input file to the
sharpened image, which OpenCV writes without one: the block is copied as it was, but for its
Orientation, set to 1 since the pixels were turned upright on reading."""
from __future__ import annotations

import contextlib
import struct
import zlib
from typing import Optional

ORIENTATION = 0x0112
EXIF_IFD, PIXEL_X, PIXEL_Y = 0x8769, 0xA002, 0xA003
GPS_IFD = 0x8825   # GPSInfo: where the GPS tags (a photo's position) are
GPS_LATITUDE, GPS_LONGITUDE = 2, 4   # in the GPS IFD
_JPEG_EXIF = b"Exif\x00\x00"
# A JPEG APP1 segment's length field counts itself and "Exif\0\0" too.
MAX_JPEG_EXIF_BYTES = 0xFFFF - 2 - len(_JPEG_EXIF)


def orientation_entry(block: bytes) -> Optional[tuple[str, int, int, int]]:
    """Where the TIFF-structured `block`'s Orientation entry is, in its first IFD: (struct's
    byte order, the IFD's offset, its entry count, the entry's offset); None where it has none
    or is no block read here (BigTIFF's 8-byte layout, a cut or malformed one)."""
    if block[:2] not in (b"II", b"MM"):
        return None
    e = "<" if block[:2] == b"II" else ">"
    try:
        if struct.unpack(e + "H", block[2:4])[0] != 42:
            return None
        ifd = struct.unpack(e + "I", block[4:8])[0]
        n = struct.unpack(e + "H", block[ifd:ifd + 2])[0]
        for k in range(n):
            at = ifd + 2 + 12 * k
            if struct.unpack(e + "H", block[at:at + 2])[0] == ORIENTATION:
                return e, ifd, n, at
    except struct.error:
        pass
    return None


def orientation_value(block: bytes, found: tuple[str, int, int, int]) -> Optional[int]:
    """The value of the Orientation entry `orientation_entry` found; None where it is cut."""
    e, _, _, at = found
    try:
        return struct.unpack(e + "H", block[at + 8:at + 10])[0]
    except struct.error:
        return None


def upright_exif(block: bytes) -> bytes:
    """The EXIF (TIFF-structured) `block` of a photo whose pixels were turned upright by its
    Orientation tag: that tag set to 1 (as stored) and its thumbnail (IFD1, still stored as
    the camera took it) unlinked, so no viewer turns either once more; after a quarter turn
    its pixel width and height are swapped. Unchanged where the tag is 1 or absent, or the
    block is not one `exif_orientation` reads."""
    found = orientation_entry(block)
    turned = orientation_value(block, found) if found else None
    if turned is None or not 2 <= turned <= 8:
        return block
    e, ifd, n, at = found
    out = bytearray(block)
    out[at + 8:at + 10] = struct.pack(e + "H", 1)
    link = ifd + 2 + 12 * n
    if link + 4 <= len(out):
        out[link:link + 4] = b"\x00\x00\x00\x00"
    if turned >= 5:   # a quarter turn: the stored width is the upright height
        with contextlib.suppress(struct.error):   # a cut Exif IFD: left as it is
            _swap_pixel_dimensions(out, e, ifd, n)
    return bytes(out)


def _entries(block: bytes | bytearray, e: str, ifd: int, n: int) -> dict[int, int]:
    """Tag -> offset of its 12-byte entry in the IFD at `ifd` of `n` entries."""
    return {struct.unpack(e + "H", block[ifd + 2 + 12 * k:ifd + 4 + 12 * k])[0]: ifd + 2 + 12 * k
            for k in range(n)}


def has_gps(block: bytes) -> bool:
    """Whether the TIFF-structured EXIF `block` holds a GPS position: its first IFD points at
    a GPS IFD with a latitude or longitude in it (a camera with its GPS off writes one with
    its version alone); False where it is no block read here."""
    if block[:2] not in (b"II", b"MM"):
        return False
    e = "<" if block[:2] == b"II" else ">"
    try:
        ifd = struct.unpack(e + "I", block[4:8])[0]
        at = _entries(block, e, ifd, struct.unpack(e + "H", block[ifd:ifd + 2])[0]).get(GPS_IFD)
        if at is None:
            return False
        gps = struct.unpack(e + "I", block[at + 8:at + 12])[0]
        tags = _entries(block, e, gps, struct.unpack(e + "H", block[gps:gps + 2])[0])
    except struct.error:
        return False
    return GPS_LATITUDE in tags or GPS_LONGITUDE in tags


def gps_kept_said(n: int, images: bool = True) -> str:
    """The closing lines' word that `n` images were written with their photos' GPS position
    (`sharpen run`; `sharpen teacher`, whose line named them already: not `images`)."""
    from .console import count
    keep = "keeps its photo's" if n == 1 else "keep their photos'"
    return f"{count(n, 'image') if images else n} {keep} GPS position (--no-metadata leaves it out)"


def left_out_said(left_out: dict, output: str) -> str:
    """The closing lines' word on what a run's images are written without (`--stats`'
    `metadata_left_out`), `output` the output of its first image with XMP or IPTC: where
    there is one, the exiftool line that copies them back."""
    from .console import count, shell_join
    from .imageio import shown_path
    n, first = left_out["images"], left_out["first"]
    its = "is written without its photo's" if n == 1 else "are written without their photos'"
    said = (f"{count(n, 'image')} {its} {', '.join(left_out['kinds'])} ({shown_path(first)}"
            f"{', ...' if n > 1 else ''}): only EXIF (of a JPEG, PNG or WebP) and the colour "
            "profile are kept")
    if not (photo := left_out.get("captioned_photo")):   # PNG text, a TIFF's tags: no exiftool
        return said   # group copies them into every output format, nor leaves them upright
    # XMP's Dublin Core alone: its tiff namespace's Orientation would turn an upright output.
    line = shell_join(["exiftool", "-tagsFromFile", photo, "-XMP-dc:all", "-IPTC:all", output])
    return (f"{said}; {shown_path(line)} copies the captions and keywords of "
            f"{shown_path(left_out['captioned'])} (each photo's likewise)")


def _swap_pixel_dimensions(out: bytearray, e: str, ifd: int, n: int) -> None:
    """Swap the Exif IFD's PixelXDimension and PixelYDimension (type, count and value each,
    as one may be a SHORT and the other a LONG) in `out`, where both are there."""
    pointer = _entries(out, e, ifd, n).get(EXIF_IFD)
    if pointer is None:
        return
    sub = struct.unpack(e + "I", out[pointer + 8:pointer + 12])[0]
    entries = _entries(out, e, sub, struct.unpack(e + "H", out[sub:sub + 2])[0])
    x, y = entries.get(PIXEL_X), entries.get(PIXEL_Y)
    if x is not None and y is not None and max(x, y) + 12 <= len(out):
        out[x + 2:x + 12], out[y + 2:y + 12] = out[y + 2:y + 12], out[x + 2:x + 12]


def with_exif(encoded: bytes, block: bytes) -> Optional[bytes]:
    """A JPEG's, PNG's or WebP's bytes (as OpenCV encodes them, without EXIF) with the EXIF
    `block`; None where the format is another (its encoder here writes none) or the block is
    larger than a JPEG segment holds."""
    if encoded[:4] == b"RIFF" and encoded[8:12] == b"WEBP":
        from .imageio import webp_with_chunk   # imageio reads the orientation here
        return webp_with_chunk(encoded, b"EXIF", block)
    if encoded[:8] == b"\x89PNG\r\n\x1a\n":
        chunk = (struct.pack(">I", len(block)) + b"eXIf" + block
                 + struct.pack(">I", zlib.crc32(b"eXIf" + block)))
        at = 8 + 12 + struct.unpack(">I", encoded[8:12])[0]   # after IHDR, before the pixels
        return encoded[:at] + chunk + encoded[at:]
    if encoded[:2] == b"\xff\xd8" and len(block) <= MAX_JPEG_EXIF_BYTES:
        segment = (b"\xff\xe1" + struct.pack(">H", 2 + len(_JPEG_EXIF) + len(block))
                   + _JPEG_EXIF + block)
        at = 2
        if encoded[2:4] == b"\xff\xe0":   # JFIF's APP0 stays first, as cameras' readers expect
            at = 4 + struct.unpack(">H", encoded[4:6])[0]
        return encoded[:at] + segment + encoded[at:]
    return None
