"""Whether a video file is HDR (a phone's HLG, or PQ), which OpenCV reads as SDR.

OpenCV's capture converts a frame to 8-bit BGR by its YUV matrix alone: an HDR clip's
BT.2020 colours and HLG/PQ transfer are not tone mapped, so the frames, and the SDR video
written from them, look washed out and flat beside what the phone or a player shows. An
iPhone records HLG by default, and says so in its MOV's `colr` box, as Android's MP4 writer
does: that box is read (the stream's own header, which ffmpeg reads, is not), and a Matroska
file's (MKV, WebM: a phone clip remuxed) video track's Colour element (runtime/ebml.py).
"""
from __future__ import annotations

import os
import re
import shlex
import struct
from pathlib import Path
from typing import BinaryIO, Optional

from .ebml import MATROSKA_EXTS, video_transfer
from .iso_boxes import ISO_EXTS, Span, find_box, read_moov, tracks

# ITU-T H.273 transfer characteristics
TRANSFERS = {16: "PQ", 18: "HLG"}
# An SDR copy that players and OpenCV read alike: tone mapped to BT.709 in linear light.
TONE_MAP = ("zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,"
            "tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv,format=yuv420p")


def _colr_transfer(path: Path) -> Optional[int]:
    """The transfer characteristic in the `colr` box (nclx, or QuickTime's nclc) of an
    MP4/MOV's first video track; None where there is none or the file cannot be read."""
    said = colr_values(path)
    return said[1] if said else None


def colr_values(path: Path) -> Optional[tuple[int, int, int]]:
    """The (primaries, transfer, matrix) H.273 codes in the `colr` box of an MP4/MOV's first
    video track; None where there is none or the file cannot be read."""
    return read_moov(path, _colr_in_moov)


def _colr_in_moov(f: BinaryIO, moov: Span) -> Optional[tuple[int, int, int]]:
    for _trak, mdia in tracks(f, moov, b"vide"):
        minf = find_box(f, *mdia, b"minf")
        stbl = minf and find_box(f, *minf, b"stbl")
        stsd = stbl and find_box(f, *stbl, b"stsd")
        if not stsd:
            return None
        # The sample entry's boxes follow its fixed fields, whose length differs by codec: the
        # colr box is found by its name and kind.
        f.seek(stsd[0])
        data = f.read(min(stsd[1] - stsd[0], 1 << 16))
        m = re.search(rb"colr(?:nclx|nclc)", data)
        if m is None or len(data) < m.end() + 6:
            return None
        return struct.unpack(">3H", data[m.end():m.end() + 6])
    return None


def hdr_transfer(path: str | os.PathLike) -> Optional[str]:
    """'HLG' or 'PQ' where the MP4/MOV or Matroska file `path` says it is HDR, else None (SDR,
    or not said: another container, no `colr` box or Colour element). No ffmpeg is asked: its
    probe before the first frame would cost every run a process, and wait on a file share that
    stopped answering."""
    path = Path(path)
    ext = path.suffix.lower()
    # A file only: a named pipe's bytes are OpenCV's (runtime/orientation.py)
    if ext not in (*ISO_EXTS, *MATROSKA_EXTS) or not path.is_file():
        return None
    transfer = video_transfer(path) if ext in MATROSKA_EXTS else _colr_transfer(path)
    return TRANSFERS.get(transfer) if transfer is not None else None


SHARPENED = "the sharpened video's colours come out washed out and its highlights flat"
# `labels`, training, `evaluate` and `export --calib` read footage alike
# (distill/data/sources.py).
LABELLED = ("its frames, and the labels, scores or calibration crops made of them, come out "
            "with washed-out colours and flat highlights")


def hdr_warning(path: str | os.PathLike, spec: str, outcome: str = SHARPENED
                ) -> Optional[str]:
    """What to say of `spec` (the video file `path`) where it is HDR; None where it is not.
    `outcome`: what reading it as SDR does to what the command makes of it."""
    transfer = hdr_transfer(path)
    if transfer is None:
        return None
    sdr = Path(path).with_name(f"{Path(path).stem}-sdr.mp4")
    return (f"{spec} is HDR video (BT.2020 colours, {transfer} transfer), which is read as SDR "
            f"without tone mapping: {outcome} against what the phone shows; convert it to SDR "
            "first: ffmpeg -i "
            f"{shlex.quote(os.fspath(path))} -vf {TONE_MAP} -c:v libx264 -crf 16 -c:a copy "
            f"{shlex.quote(str(sdr))}")
