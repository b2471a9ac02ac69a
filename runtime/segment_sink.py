"""A recording cut into files (`--segment S`): `SegmentSink` closes each video after S seconds
of it, at a frame boundary, and opens the next, as ffmpeg's segment muxer and NVRs do, so that a
camera's days are files that can be copied off, played and pruned while the run goes on.

Each segment is a `VideoFileSink` of its own: written under a hidden temporary name and renamed
to `STEM-NNNNNN-YYYYmmdd-HHMMSS.EXT` when it closes (N its number, counted on from the highest
there, so a restarted run never writes over an earlier one; the time its first frame was
written, local time), complete and playable from that moment. A segment is closed (checked,
its colours tagged by an ffmpeg copy, renamed) in a thread of its own while the next one is
written: the copy of a 10-minute 1080p segment takes seconds, in which a camera's frames
would be dropped. A video file source's sound goes into each segment, from its first
frame's time. `keep` bounds the disk: past that
many segments, or past `keep_gb` GB of them, the lowest-numbered are removed.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from .options import is_number, option
from .sinks import raised_first
from .video_sink import VideoFileSink, _move_aside, left_by_killed_run, remove_killed_copies
from .warn import reworded, warn

NUMBER_WIDTH = 6


def segment_name(base: Path, number: int, when: float) -> Path:
    """The file segment `number` of the recording `base` (an --out) takes."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    return base.with_name(f"{base.stem}-{number:0{NUMBER_WIDTH}d}-{stamp}{base.suffix}")


def segments_shown(base: str | os.PathLike) -> Path:
    """How messages name the segments of the recording `base` (an --out) as one."""
    base = Path(base)
    return base.with_name(f"{base.stem}-{'N' * NUMBER_WIDTH}-YYYYmmdd-HHMMSS{base.suffix}")


def segment_pattern(base: Path) -> re.Pattern[str]:
    """Names of `base`'s segments, group 1 the number; a segment a killed run left, kept as
    NAME.interrupted-TIME.EXT by `VideoFileSink`, counts too."""
    return re.compile(rf"^{re.escape(base.stem)}-(\d{{{NUMBER_WIDTH},}})-\d{{8}}-\d{{6}}"
                      rf"(\.interrupted-\d{{8}}-\d{{6}}(-\d+)?)?{re.escape(base.suffix)}$")


def existing_segments(base: Path) -> list[tuple[int, Path]]:
    """(number, path) of the segments of `base` in its folder, lowest number first."""
    name = segment_pattern(base)
    found = []
    with contextlib.suppress(OSError):
        for p in base.parent.iterdir():
            if m := name.match(p.name):
                found.append((int(m.group(1)), p))
    return sorted(found)


def set_aside_after(base: Path, after: int) -> list[tuple[Path, Path]]:
    """`base`'s segments numbered past `after` (a stopped run's cut last one), renamed
    NAME.interrupted-TIME.EXT as a killed run's are: kept, but no longer counted as part of
    the recording that --resume goes on with. (old, new) of each."""
    moved = []
    for number, path in existing_segments(base):
        if number <= after or ".interrupted-" in path.name:
            continue
        try:
            when = time.localtime(path.stat().st_mtime)
        except FileNotFoundError:
            continue
        kept = _move_aside(path, path.with_name(
            f"{path.stem}.interrupted-{time.strftime('%Y%m%d-%H%M%S', when)}{path.suffix}"))
        if kept is not None:
            moved.append((path, kept))
    return moved


class SegmentSink(VideoFileSink):
    """A video output written as segments of `seconds` of video each (`seconds` * fps frames:
    a live run's repeated frames count, so a segment is that long in real time). Takes the
    options run_stream sets on a `VideoFileSink` (colours, pixel aspect) and passes them to
    each segment; `path` itself is never written."""

    def __init__(self, path: str | os.PathLike, fps: float, seconds: float, keep: int = 0,
                 flags: bool = False, lossless: bool = False, keep_gb: float = 0) -> None:
        super().__init__(path, fps, flags=flags, lossless=lossless)
        self.seconds = seconds
        self.frames_each = max(1, round(seconds * self.fps))
        self.keep = keep
        self.keep_gb = keep_gb
        self.current: Optional[VideoFileSink] = None
        self.opened = 0
        self.closed_count = 0
        self.frames_closed = 0   # frames in the segments closed whole
        self._said: set[str] = set()   # what a segment warned of, said once for all
        self._said_lock = threading.Lock()   # segments warn from the closing thread too
        # Set when the segment being closed apart is: not the thread's join, which on Python
        # 3.11 takes the thread for ended once a Ctrl-C interrupts it.
        self._closing: Optional[threading.Event] = None
        self._close_error: Optional[BaseException] = None
        # run_stream points it at the stats' info, so the --stats file names the segment.
        self.stats_info: Optional[dict[str, Any]] = None
        # Called in the closing thread with a segment's path and the error that kept it from
        # closing, when it happens: a camera away (reconnecting) sends no frame to raise it at.
        self.on_close_error: Optional[Callable[[Path, BaseException], None]] = None
        self._recover_killed()
        found = existing_segments(self.path)
        self.next_number = found[-1][0] + 1 if found else 0
        # This run's own segments that the bound removed: its closing note said the frames
        # of every segment it closed were there, where --keep-segments had removed most.
        self.first_number = self.next_number
        self.removed_own = 0
        # --resume's record (pipeline): `snapshot` takes the run's progress as a segment ends
        # whole, `on_whole(path, number, slots, taken)` keeps it once that segment closed.
        self.snapshot: Optional[Callable[[], dict[str, Any]]] = None
        self.on_whole: Optional[Callable[[Path, int, int, dict[str, Any]], None]] = None

    def _recover_killed(self) -> None:
        """A killed run's segment under its temporary name: kept or removed as a killed run's
        whole recording is (`VideoFileSink._keep_or_remove`), under that segment's name."""
        hidden = re.compile(rf"^\.({re.escape(self.path.stem)}-\d{{{NUMBER_WIDTH},}}-\d{{8}}-"
                            rf"\d{{6}})\.(\d+)\.[^.]+\.partial{re.escape(self.path.suffix)}$")
        with contextlib.suppress(OSError):
            for old in list(self.path.parent.iterdir()):
                # Before this sink's first segment: one naming this process is a killed one's.
                if not (m := hidden.match(old.name)) \
                        or not left_by_killed_run(pid := int(m.group(2)), self.path):
                    continue
                seg = VideoFileSink(self.path.with_name(m.group(1) + self.path.suffix),
                                    self.fps, flags=self.flags)
                seg._keep_or_remove(old, pid)
        # ffmpeg's copies of them (the colour tags'), half written: the segment is whole.
        stems = rf"{re.escape(self.path.stem)}-\d{{{NUMBER_WIDTH},}}-\d{{8}}-\d{{6}}"
        remove_killed_copies(self.path.parent, stems, self.path.suffix, self.path)

    def _open_next(self) -> None:
        seg = VideoFileSink(segment_name(self.path, self.next_number, time.time()), self.fps,
                            flags=self.flags, lossless=self.lossless)
        self.next_number += 1
        self.opened += 1
        seg.colour_source = self.colour_source
        seg.keep_metadata = self.keep_metadata
        # ffmpeg's codec (--codec h264...), each segment a file of its own
        seg.codec, seg.crf, seg.preset = self.codec, self.crf, self.preset
        seg.encoder_threads = self.encoder_threads
        seg.source_fps = self.source_fps
        # The source's sound under this segment's frames: from the time of its first slot.
        seg.audio_source, seg.audio_live = self.audio_source, self.audio_live
        seg.audio_start, seg.part = self.frames / self.fps, True
        # Not `closed_count`: the first may still be closing while the second opens.
        if self.opened == 1:   # said once, not at every segment
            seg.source_sar = self.source_sar
        else:   # said of the first (naming its frame), not again
            seg.deep_warned = True
        self.current = seg
        if self.stats_info is not None:
            self.stats_info["segment"] = str(seg.path)

    def _once(self, seg: VideoFileSink) -> contextlib.AbstractContextManager:
        """`seg`'s warnings naming the recording's pattern rather than the segment's own
        file, each said once: the same one at every segment (an HD video's untagged colours,
        an odd frame size) came 144 times a day."""
        pattern = segments_shown(self.path)

        def reword(message: str) -> Optional[str]:
            message = message.replace(str(seg.path), str(pattern))
            message = message.replace(seg.path.stem, pattern.stem)   # (a name made from it)
            with self._said_lock:
                if message in self._said:
                    return None
                self._said.add(message)
            return message

        return reworded(reword)

    def _close_current(self, wait: bool = False) -> None:
        """Close the segment being written: in the closing thread, or with `wait` here. One
        close at a time, in order, so that the bounds count every segment closed before."""
        if self.current is None:
            return
        # Before it is let go: the one before's error (or a Ctrl-C in the wait) leaves it
        # `current`, for `close` to close whole rather than hidden and never released.
        self._join_closing()
        seg, self.current = self.current, None
        # Taken here, in the writing thread, before the next segment's first frame: the
        # progress then is where this one ends.
        taken = (self.snapshot() if self.snapshot is not None
                 and seg.frames >= self.frames_each else None)
        whole = (self.next_number - 1, self.frames, taken) if taken is not None else None
        if seg._encoded_colours[0]:   # --codec: the colours ffmpeg tagged its segments with,
            self._encoded_colours = seg._encoded_colours   # which --stats' `video` names
        if wait:
            self._finish(seg, whole)
            return
        done = threading.Event()
        try:
            threading.Thread(target=self._finish_apart, args=(seg, done, whole),
                             name="sharpen-segment-close", daemon=True).start()
        except RuntimeError:   # no thread to be had (a container's pids.max): closed here
            self._finish(seg, whole)
            return
        self._closing = done

    def _join_closing(self) -> None:
        """Wait for the segment being closed; its error (a full disk, a video that does not
        play back) is raised here, ending the run as a write's would."""
        if self._closing is not None:
            self._closing.wait()
            self._closing = None
        if self._close_error is not None:
            exc, self._close_error = self._close_error, None
            raise exc

    def _finish_apart(self, seg: VideoFileSink, done: threading.Event,
                      whole: Optional[tuple] = None) -> None:
        try:
            self._finish(seg, whole)
        except BaseException as exc:  # noqa: BLE001 - raised in the writing thread
            self._close_error = exc
            if self.on_close_error is not None:
                try:
                    self.on_close_error(seg.path, exc)
                except Exception:  # noqa: BLE001 - the error itself is still raised
                    pass
        finally:
            done.set()

    def _finish(self, seg: VideoFileSink, whole: Optional[tuple] = None) -> None:
        """Close `seg`; `whole`: (its number, the slots up to its end, the progress then),
        given `on_whole` with its path once it closed under its name."""
        with self._once(seg):
            seg.close()
        # A segment's copy carried the source's tags (its place among them): --stats' `video`
        # and the closing line say it of the recording, as of a single video.
        self._carried = self._carried or seg._carried
        if seg.replaced:
            self.closed_count += 1
            self.frames_closed += seg.frames
            self.replaced = True
            if self.stats_info is not None:
                self.stats_info["segments_closed"] = self.closed_count
                self.stats_info["segment_frames"] = self.frames_closed
            if whole is not None and self.on_whole is not None:
                self.on_whole(seg.path, *whole)
            self._prune()

    def _prune(self) -> None:
        """Past `keep` segments, or `keep_gb` GB of them, the lowest-numbered are removed (a
        killed run's among them); the newest is kept whatever its size."""
        if not self.keep and not self.keep_gb:
            return
        found = existing_segments(self.path)
        past = max(0, len(found) - self.keep) if self.keep else 0
        bound = option("keep_segments", self.keep, self.flags)
        if self.keep_gb:
            sizes = []
            for _, p in found:
                try:
                    sizes.append(p.stat().st_size)
                except OSError:
                    sizes.append(0)
            total = sum(sizes[past:])
            while past < len(found) - 1 and total > self.keep_gb * 1e9:
                total -= sizes[past]
                past += 1
            if past > (max(0, len(found) - self.keep) if self.keep else 0):
                bound = option("keep_gb", f"{self.keep_gb:g}", self.flags)
        for number, old in found[:past]:
            try:
                old.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:   # another user's: said, and left
                warn(f"{option('output', self.path, self.flags)}: {old} is past {bound} but "
                     f"could not be removed ({exc.strerror or exc})")
                continue
            if number >= self.first_number:
                self.removed_own += 1
                if self.stats_info is not None:
                    self.stats_info["segments_removed"] = self.removed_own

    def write(self, original: np.ndarray, sharpened: np.ndarray, name: str) -> None:
        if self._close_error is not None:
            self._join_closing()
        if self.current is not None and self.current.frames >= self.frames_each:
            self._close_current()
        if self.current is None:
            self._open_next()
        with self._once(self.current):
            self.current.write(original, sharpened, name)
        self.frames += 1
        self._last = sharpened
        self._original = original

    def repeat_last(self, n: int) -> int:
        if self.current is None or self._last is None:
            return 0
        added = 0
        while added < n:
            if self.current.frames >= self.frames_each:
                # The repeats go on in the next segment, which opens with one of them.
                self._close_current()
                self._open_next()
                with self._once(self.current):
                    self.current.write(self._original, self._last, "repeated")
                got = 1
                self.frames += 1   # before the next segment's start is taken from it
            else:
                got = self.current.repeat_last(min(self.frames_each - self.current.frames,
                                                   n - added))
                self.frames += got
            if not got:
                break
            added += got
        return added

    def close(self) -> None:
        # The one being written is closed even where the one before failed to.
        errors: list[BaseException] = []
        for step in (self._join_closing, lambda: self._close_current(wait=True)):
            try:
                step()
            except BaseException as exc:  # noqa: BLE001 - raised below, the first
                errors.append(exc)
        if not self.closed_count:
            from .output_paths import remove_if_empty
            remove_if_empty(self._made)
        if errors:
            raise raised_first(errors)


def check_segment(seconds: Optional[float], keep: Optional[int], flags: bool,
                  keep_gb: Optional[float] = None) -> list[str]:
    """What is wrong with the segment options' values (messages naming them)."""
    problems = []
    if seconds is not None and not (is_number(seconds, whole=False) and seconds > 0
                                    and math.isfinite(seconds)):
        problems.append(f"{option('segment', flags=flags)} must be a number of seconds above "
                        f"0, got {seconds}")
    if keep is not None and not (is_number(keep) and keep >= 1):
        problems.append(f"{option('keep_segments', flags=flags)} must be a whole number of "
                        f"segments from 1, got {keep}")
    if keep_gb is not None and not (is_number(keep_gb, whole=False) and keep_gb > 0
                                    and math.isfinite(keep_gb)):
        problems.append(f"{option('keep_gb', flags=flags)} must be a number of GB above 0, "
                        f"got {keep_gb}")
    for name, given in (("keep_segments", keep), ("keep_gb", keep_gb)):
        if given and not seconds:
            problems.append(f"{option(name, flags=flags)} applies with "
                            f"{option('segment', flags=flags)} (it bounds the segments kept)")
    return problems
