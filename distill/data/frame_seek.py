"""Reaching a clip's frame N without decoding every frame before it, where that is exact.

OpenCV's CAP_PROP_POS_FRAMES seeks to the keyframe before N and decodes forward, numbering
frames by their timestamps times the frame rate: exact on a constant-rate clip whose
timestamps start where the decoder's first frame is, wrong (a frame early or late, or seconds
off) on a variable-rate clip or where timestamps and decode order disagree. So a clip is sought
only after `SeekCheck` found it exact: a frame reached by a seek is the very frame decoding
forward gives, its timestamps run at the declared rate from the first frame to the last, and
each seek lands on the index and timestamp asked for. That needs every keyframe listed
(a pause between the frames checked goes unseen otherwise) and no open GOP. Otherwise
frames are decoded forward, and `SeekCheck.why` says why.

Only OpenCV is needed (no torch).
"""
from __future__ import annotations

import math
import os
from typing import Optional

import cv2
import numpy as np

from runtime.orientation import oriented

# Frames ahead below which decoding forward is taken without looking for a keyframe: a seek
# decodes from the keyframe before the frame anyway, and most clips have one every 1-10 s.
SEEK_AHEAD = 64
# The probe frame is at most this far in, so that the check decodes little of a long clip.
PROBE_SPAN = 600
# OpenCV's seek to frame N goes to the keyframe at or before N - 16 (its first try), then
# decodes forward: a seek to a keyframe itself decodes the whole GOP before it.
SEEK_BACK = 16


def keyframes(path: str | os.PathLike) -> tuple[Optional[list[tuple[int, float]]], str]:
    """(index, timestamp in ms) of a clip's keyframes, the index in packet order (where
    B-frames reorder a closed GOP its keyframe's is the same), read from the packets without
    decoding them, and why seeking is unsafe ("" where the list allows it): None and why
    where the list cannot be read whole (not FFmpeg, an OpenCV without raw packet reads, a
    first packet that is no keyframe), the list and "open GOP..." where a packet after a
    keyframe shows before it (a seek to that keyframe drops or garbles those frames)."""
    flag = getattr(cv2, "CAP_PROP_LRF_HAS_KEY_FRAME", None)
    if flag is None:
        return None, "its keyframes cannot be listed: this OpenCV reads no raw packets"
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_FORMAT, -1])
    try:
        if not cap.isOpened():
            return None, "its keyframes cannot be listed: its packets cannot be read"
        declared = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        keys, stamps = [], []
        while cap.grab():
            stamps.append(cap.get(cv2.CAP_PROP_POS_MSEC))
            if cap.get(flag):
                keys.append((len(stamps) - 1, stamps[-1]))
    finally:
        cap.release()
    if not keys or keys[0][0] != 0:
        return None, "its keyframes cannot be listed: its first packet is no keyframe"
    if math.isfinite(declared) and declared >= 1 and len(stamps) < int(declared):
        # Packets unread past a damaged one: a keyframe among them goes unchecked.
        return None, (f"its keyframes cannot be listed whole: {len(stamps)} packets read "
                      f"of the {int(declared)} frames it declares")
    # Earliest timestamp from each packet on: a keyframe later than it leads an open GOP.
    later = stamps[:]
    for i in range(len(later) - 2, -1, -1):
        later[i] = min(later[i], later[i + 1])
    if any(i + 1 < len(later) and later[i + 1] < t for i, t in keys):
        return keys, "open GOP: a seek may land elsewhere"
    return keys, ""


class SeekCheck:
    """Whether a clip may be sought, found once (the first time a seek would save decoding),
    and each seek's landing checked. `exact` is None until checked."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        self.exact: Optional[bool] = None
        self.why = ""   # why seeking was ruled out, for a test or a curious user
        self.keys: Optional[list[tuple[int, float]]] = None
        self._scanned = False
        self._unsafe = ""
        self._t0 = 0.0
        self._fps = 0.0

    def worth(self, start: int, index: int) -> bool:
        """Whether seeking to `index` saves decoding over reading forward from `start`:
        the keyframe the seek decodes from is after `start` (else it decodes more)."""
        if self.exact is False or index - start < SEEK_AHEAD:
            return False
        if unsafe := self._scan():
            self.exact, self.why = False, unsafe
            return False
        return any(start < k <= index - SEEK_BACK for k, _ in self.keys or [])

    def _scan(self) -> str:
        """Lists the keyframes once; why seeking is unsafe, "" where the list allows it."""
        if not self._scanned:
            self._scanned = True
            self.keys, self._unsafe = keyframes(self.path)
        return self._unsafe

    def check(self, cap, frame_count: int, near: int) -> bool:
        """Set `exact` for the clip `cap` reads (its position is then anywhere): the frame a
        seek reaches (a keyframe or a few past one, near `near`) against the same frame decoded
        forward by a second capture, the timestamps of the frames that decodes against the
        declared rate, every keyframe's timestamp against its index, and where a seek to the last
        keyframe (else the last frame) lands."""
        self.exact, self.why = self._check(cap, frame_count, near)
        return self.exact

    def _check(self, cap, frame_count: int, near: int) -> tuple[bool, str]:
        if unsafe := self._scan():
            # Without the whole keyframe list a pause past the frames checked goes unseen.
            return False, unsafe
        fps = cap.get(cv2.CAP_PROP_FPS)
        if not (math.isfinite(fps) and fps > 0) or frame_count < 2:
            return False, "it declares no frame rate or frame count"
        # A few frames past a keyframe: the seek decodes forward from it, as most seeks do.
        past = SEEK_BACK + 2
        later = [k for k, _ in (self.keys or []) if 0 < k <= min(near, PROBE_SPAN) - past]
        probe = min(later[-1] + past if later else min(near, PROBE_SPAN), frame_count - 1)
        ref = cv2.VideoCapture(self.path)
        try:
            if not ref.isOpened():
                return False, "it cannot be opened a second time"
            ref = oriented(ref, self.path)
            stamps, want = [], None
            for _ in range(probe + 1):
                ok, want = ref.read()
                if not ok:
                    return False, f"frame {len(stamps)} does not decode"
                stamps.append(ref.get(cv2.CAP_PROP_POS_MSEC))
        finally:
            ref.release()
        self._t0, self._fps = stamps[0], fps
        if any(not self._on_time(i, t) for i, t in [*enumerate(stamps), *(self.keys or [])]):
            # Every keyframe is checked, not the first frames alone: a pause an hour into a
            # clip barely moves its mean rate, and every seek past it would land early.
            return False, "variable frame rate: a seek may land frames early or late"
        got = self.read_at(cap, probe)
        if got is None or not np.array_equal(got, want):
            return False, f"a seek to frame {probe} gave another frame than decoding forward"
        # Just past the last keyframe, not the last frame: reaching that decodes a whole GOP
        # (40 s of a 720p clip with a keyframe every 5 minutes).
        last = (min(self.keys[-1][0] + SEEK_BACK, frame_count - 1) if self.keys
                else frame_count - 1)
        if self.read_at(cap, last) is None:
            return False, f"a seek to frame {last} lands elsewhere"
        return True, ""

    def _on_time(self, index: int, msec: float) -> bool:
        return abs(msec - (self._t0 + index * 1000.0 / self._fps)) <= 400.0 / self._fps

    def read_at(self, cap, index: int) -> Optional[np.ndarray]:
        """Frame `index` by a seek, or None where the seek lands elsewhere (by the position and
        timestamp OpenCV reports) or the frame does not decode."""
        if not cap.set(cv2.CAP_PROP_POS_FRAMES, index):
            return None
        ok, frame = cap.read()
        if not ok or frame is None or int(cap.get(cv2.CAP_PROP_POS_FRAMES)) != index + 1:
            return None
        return frame if self._on_time(index, cap.get(cv2.CAP_PROP_POS_MSEC)) else None
