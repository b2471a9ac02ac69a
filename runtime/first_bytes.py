"""What a file is by its first bytes, for the messages refusing it: an upload's extension may
lie (a phone's clip or HEIC photo saved as photo.jpg, an MP4 piped where Y4M is read), and
"corrupt or unsupported" sent the user looking for damage. Used only to word a refusal."""
from __future__ import annotations

# ISO base media brands of still images (HEIF/HEIC, AVIF), as against an MP4/MOV's.
_STILL_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis")


def what_it_looks_like(head: bytes) -> str:
    """' (an MP4/MOV file)' and the like for a few formats named by their first bytes (a
    dozen bytes do; a transport stream is told by its second packet at 188); '' for others."""
    if head[4:8] == b"ftyp":
        return " (a HEIC/AVIF photo)" if head[8:12] in _STILL_BRANDS else " (an MP4/MOV file)"
    if head[:4] == b"\x1aE\xdf\xa3":
        return " (a Matroska/WebM file)"
    if head[:1] == b"G" and len(head) > 188 and head[188:189] == b"G":
        return " (an MPEG transport stream)"
    if head[:4] == b"\x00\x00\x01\x00":   # before MPEG's start code, which it begins with
        return " (a Windows ICO icon)"
    if head[:4] == b"\x00\x00\x00\x01" or head[:3] == b"\x00\x00\x01":
        return " (a raw H.264/HEVC or MPEG stream)"
    if head[:2] == b"\xff\xd8":
        return " (a JPEG image)"
    if head[:4] == b"RIFF":
        return " (a WebP image)" if head[8:12] == b"WEBP" else " (an AVI or WAV file)"
    return ""
