"""A photo's EXIF (capture date, camera, lens, GPS) carried from its input file to the
sharpened image, which OpenCV writes without one: the block is copied as it was, but for its
Orientation, set to 1 since the pixels were turned upright on reading."""
from __future__ import annotations

import struct
import zlib
from typing import Optional

ORIENTATION = 0x0112
_JPEG_EXIF = b"Exif\x00\x00"
# A JPEG APP1 segment's length field counts itself and "Exif\0\0" too.
MAX_JPEG_EXIF_BYTES = 0xFFFF - 2 - len(_JPEG_EXIF)


def upright_exif(block: bytes) -> bytes:
    """The EXIF (TIFF-structured) `block` of a photo whose pixels were turned upright by its
    Orientation tag: that tag set to 1 (as stored) and its thumbnail (IFD1, still stored as
    the camera took it) unlinked, so no viewer turns either once more. Unchanged where the tag
    is 1 or absent, or the block is not one `exif_orientation` reads."""
    if block[:2] not in (b"II", b"MM"):
        return block
    e = "<" if block[:2] == b"II" else ">"
    try:
        if struct.unpack(e + "H", block[2:4])[0] != 42:
            return block
        ifd = struct.unpack(e + "I", block[4:8])[0]
        n = struct.unpack(e + "H", block[ifd:ifd + 2])[0]
        for k in range(n):
            at = ifd + 2 + 12 * k
            if struct.unpack(e + "H", block[at:at + 2])[0] != ORIENTATION:
                continue
            if not 2 <= struct.unpack(e + "H", block[at + 8:at + 10])[0] <= 8:
                return block
            out = bytearray(block)
            out[at + 8:at + 10] = struct.pack(e + "H", 1)
            link = ifd + 2 + 12 * n
            if link + 4 <= len(out):
                out[link:link + 4] = b"\x00\x00\x00\x00"
            return bytes(out)
    except struct.error:
        pass
    return block


def with_exif(encoded: bytes, block: bytes) -> Optional[bytes]:
    """A JPEG's or PNG's bytes (as OpenCV encodes them, without EXIF) with the EXIF `block`;
    None where the format is another (its encoder here writes none) or the block is larger
    than a JPEG segment holds."""
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
