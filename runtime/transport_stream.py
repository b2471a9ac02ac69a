"""MPEG transport streams (.ts, .m2ts, .mts): whether a file's end shows that it was cut
(`_transport_cut`), read from its packets, as its frame count cannot tell."""
from __future__ import annotations

import os
from typing import Iterator


# MPEG transport streams (.ts; .m2ts, .mts from Blu-ray and AVCHD) keep no frame count, as
# program streams (.mpg) keep none (video_source.py's ESTIMATED_COUNT_EXTS). FFmpeg's
# is the span from their first packet to their last, any stream's, times the rate: 65 for 60
# frames whose sound runs on 0.2 s, 1229 for 90 where a joined file's clock jumps a minute.
# It is taken from what the file holds, so a file cut in half declares the half (33 for 32):
# the count tells no cut. A cut is told by the size instead, as transport streams are written
# in whole packets; the count serves the progress bar, and is what was read once read.
TRANSPORT_STREAM_EXTS = frozenset({".ts", ".m2ts", ".mts"})


def _transport_packet_size(head: bytes) -> tuple[int, int]:
    """(packet size, offset of the first sync byte) of an MPEG transport stream starting with
    `head`, by the sync byte (0x47) that starts each of its packets: 188 bytes, 192 with the
    timestamp a Blu-ray or AVCHD .m2ts puts before each, 204 with error correction. (0, 0) when
    its first packets show no such size."""
    for size, lead in ((188, 0), (192, 4), (204, 0)):
        n = min(8, (len(head) - lead) // size)
        if n >= 2 and all(head[lead + k * size] == 0x47 for k in range(n)):
            return size, lead
    return 0, 0


def _transport_packets(data: bytes, size: int, lead: int) -> Iterator[tuple[int, bool, bytes]]:
    """(PID, whether a PES or table starts there, payload) of each transport packet in `data`,
    which starts at a packet; stops at one that has lost its sync byte."""
    for at in range(lead, len(data) - 187, size):
        p = data[at:at + 188]
        if p[0] != 0x47:
            return
        field = p[3] >> 4 & 3
        start = 5 + p[4] if field & 2 else 4
        if field & 1 and start <= 188:
            yield ((p[1] & 0x1F) << 8) | p[2], bool(p[1] & 0x40), p[start:]


def _starts_inside_a_pes(head: bytes, size: int, lead: int) -> bool:
    """Whether a transport stream whose first bytes are `head` starts inside a PES begun
    before it: the first data of one of its streams goes on with one, as in a recording of a
    broadcast or a live stream, started wherever it was. A muxer starts each with a PES."""
    first: dict[int, bool] = {}   # per PID: whether its first packet starts a PES or table
    pes = set()
    for pid, starts, payload in _transport_packets(head, size, lead):
        first.setdefault(pid, starts)
        if starts and payload[:3] == b"\0\0\1":
            pes.add(pid)
    return any(not first[pid] for pid in pes)


def _transport_cut(path: object, tail: int = 4 << 20, head: int = 1 << 20) -> tuple[str, str]:
    """(a cut the end of the transport stream file `path` shows, one it may show), each '' when
    none. A writer ends each stream packet (PES: a picture, a few sound frames) at the end of a
    transport packet, padding the last: a file whose size is no whole number of packets, or
    whose last sized PES has fewer bytes than its header gives, was cut; one whose last unsized
    PES (video's, as a rule) fills its last packet may have been. A recording of a broadcast or
    live stream ends wherever it was stopped, as it starts: one that starts inside a PES is
    said to end so (a note). Read: the first `head` and the last `tail` bytes."""
    try:
        with open(str(path), "rb") as f:
            first = f.read(head)
            size, lead = _transport_packet_size(first)
            end = f.seek(0, os.SEEK_END)
            if not size:
                return "", ""
            live = _starts_inside_a_pes(first, size, lead)
            # Zeros (or 0xff) after the last packet, which a recorder or a copy padded the file
            # with, are no part of a packet: a cut one is found where the rest ends within one.
            f.seek(max(0, end - size))
            last = f.read()
            pad = len(last) - min(len(last.rstrip(b"\0")), len(last.rstrip(b"\xff")))
            if pad == len(last):
                f.seek(max(0, end - tail))
                last = f.read()
                pad = len(last) - min(len(last.rstrip(b"\0")), len(last.rstrip(b"\xff")))
            stop = -(-(end - pad) // size) * size
            if stop > end:
                cut = (f"its {end} bytes are no whole number of its {size}-byte packets, the "
                       "last one cut")
                return ("", _as_recorded(cut)) if live else (cut, "")
            at = f.seek(max(0, stop - tail // size * size))
            data = f.read(stop - at)
    except OSError:   # gone or unreadable since it was read: nothing to tell from
        return "", ""
    pes: dict[int, list[int]] = {}   # per PID: [length its header gives, bytes seen, last full]
    whole = len(data) - lead >= 188 and all(
        data[at] == 0x47 for at in range(lead, len(data) - 187, size))
    if not whole:   # its packets lost their sync: no end to tell from
        return "", ""
    for pid, starts, payload in _transport_packets(data, size, lead):
        if starts:   # a PES (or a table) starts here
            if payload[:3] == b"\0\0\1" and len(payload) >= 6:
                pes[pid] = [payload[4] << 8 | payload[5], len(payload), len(payload) == 184]
            else:
                pes.pop(pid, None)
        elif pid in pes:
            pes[pid][1] += len(payload)
            pes[pid][2] = len(payload) == 184
    for pid, (length, got, full) in sorted(pes.items()):
        if length and got < length + 6:
            cut = (f"its last packet of stream {pid} (0x{pid:x}) holds {got} of the "
                   f"{length + 6} bytes its header gives")
            return ("", _as_recorded(cut)) if live else (cut, "")
    for pid, (length, got, full) in sorted(pes.items()):
        if not length and full:
            return "", (f"the last data of its stream {pid} (0x{pid:x}) fills its packet, "
                        "where the end of a picture is padded unless it fills it exactly: the "
                        "file may have been cut short there")
    return "", ""


def _as_recorded(cut: str) -> str:
    return (f"{cut}, as a recording of a broadcast or live stream ends (it starts inside a "
            "stream packet begun before it too)")
