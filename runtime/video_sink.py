"""The video-file sink: `VideoFileSink` writes the sharpened frames to a video in the codec of
its container (`FOURCC`), under a temporary name renamed on close, so an interrupted run leaves
a complete, playable file and never a half-written one under the final name.

Around the writing: a resumed run's recording joined to the earlier one, free-space checks
while frames are written, an earlier recording under the name set aside rather than replaced,
and after the close the source's sound muxed in and the colours tagged (with ffmpeg).
"""
from __future__ import annotations

import contextlib
import glob
import itertools
import math
import os
import re
import shlex
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np

from .atomic import new_file_mode, replace, sync_folder
from .atomic import pid_alive as _pid_alive
from .clip_metadata import (LOCATION_EXTS, STRIPPED, TIMECODE_EXTS, metadata_options,
                            source_location)
from .audio import ENV, ISO_EXTS, MUX_TIMEOUT_S, SLOW_DISK_BYTES_S, exit_said, find_ffmpeg
from .video_codecs import CODECS as ENCODED, FFmpegEncoder, colour_names, pictures_said
from .video_codecs import encode_command, encoding, source_read_as_bt601
from .colour_tags import (copy_tagged, players_guess_hd, source_colours, tag_options, taggable,
                          wants_tags)
from .console import count, quiet_native_stderr, shell_quote
from .hdr import colr_values
from .iso_boxes import read_moov, tracks
from .locale_text import utf8_name
from .options import option
from .output_paths import folders_to_make, make_folder, remove_if_empty
from .prepost import to_8bit
from .sinks import Sink, SinkError
from .source_base import open_left_running
from .video_probe import size_refused, why_unwritable
from .warn import warn


# The codec each container is written with; mp4v (MPEG-4 Part 2) for the rest. WebM needs VP8
# (what browsers play; mp4v in .webm does not open), MPEG program/transport streams MPEG-2, FLV
# its own codec. H.264 is not here: pip's OpenCV builds do not ship its encoder.
FOURCC = {".webm": "VP80", ".ogv": "VP80", ".mpg": "MPG2", ".mpeg": "MPG2", ".ts": "MPG2",
          ".mts": "MPG2", ".m2ts": "MPG2", ".flv": "FLV1", ".wmv": "WMV2"}
DEFAULT_FOURCC = "mp4v"
# `lossless`: FFV1 keeps the frames bit for bit (stored as BGR, so no YUV matrix or chroma
# subsampling either), where the codecs above round off fine detail of the size a model adds
# (measured in README, beside the list of codecs). Of the containers written, Matroska and
# AVI hold it.
LOSSLESS_FOURCC = "FFV1"
# Each FOURCC's codec, as ffmpeg names it and as the run's closing lines say it.
CODECS = {"mp4v": ("mpeg4", "MPEG-4 Part 2 (mp4v)"), "VP80": ("vp8", "VP8"),
          "MPG2": ("mpeg2video", "MPEG-2"), "FLV1": ("flv1", "FLV1 (Sorenson H.263)"),
          "WMV2": ("wmv2", "WMV2"), LOSSLESS_FOURCC: ("ffv1", "FFV1 (lossless)")}
LOSSLESS_EXTS = (".mkv", ".avi")
# ffmpeg's options for a copy of a lossless (BGR) video to share: libx264 alone keeps 4:4:4,
# which browsers and phones do not play, and converts by BT.601 untagged, which players take
# as BT.709 at HD sizes.
SHARE_X264 = ("-vf scale=out_color_matrix=bt709 -c:v libx264 -crf 16 -pix_fmt yuv420p "
              "-colorspace bt709")
DISK_CHECK_EVERY = 30           # frames between free-space checks while a video is written
DISK_FULL_BYTES = 64 * 1024     # less free than this: the writer has been dropping data
DISK_BLOCK_BYTES = 4096         # at the end, less than a block free: the last writes were lost


# What FFmpeg says through OpenCV when it maps a codec's tag itself ("OpenCV: FFMPEG: tag
# 0x30385056/'VP80' is not supported with codec id 139 and format 'webm / WebM'", "... fallback
# to use tag 0x..."): it reads like a failure and is none. What else a writer says on opening
# (why it did not: "dimensions too large for MPEG-4") reaches stderr.
FFMPEG_TAG_NOISE = re.compile(r"OpenCV: FFMPEG: (tag 0x[0-9a-fA-F]+/'.*' is not supported with "
                              r"codec id|fallback to use tag 0x)")


def fourcc_for(path: str | os.PathLike, lossless: bool = False) -> str:
    return LOSSLESS_FOURCC if lossless else FOURCC.get(Path(path).suffix.lower(), DEFAULT_FOURCC)


def refuse_lossless(path: str | os.PathLike, flags: bool = False) -> None:
    """SinkError naming the option where a lossless video is asked for in a container that
    cannot hold FFV1."""
    p = Path(path)
    if p.suffix.lower() in LOSSLESS_EXTS:
        return
    asked = "--lossless" if flags else "lossless=True"
    raise SinkError(f"{asked} writes FFV1, which {p.suffix or 'a file without an extension'} "
                    f"does not hold: give {option('output', p.with_suffix('.mkv'), flags)} "
                    "(or .avi); ffmpeg makes a smaller copy for sharing from it, e.g. ffmpeg -i "
                    f"{shell_quote(str(p.with_suffix('.mkv')))} {SHARE_X264} "
                    f"{shell_quote(str(p.with_suffix('.mp4')))}")


def left_by_killed_run(pid: int, output: Path) -> bool:
    """Whether a hidden file beside `output` naming process `pid` is what a killed run left.
    A container's run is process 1, as the run a kill cut short there was: under the output's
    lock (this process's) no other run writes into it, so one under this process's number
    that this run did not make is the killed run's (it stayed hidden, one more a kill)."""
    from .run_lock import holds_output
    if pid == os.getpid():
        return holds_output(output)
    return not _pid_alive(pid)


def recordings_beside(output: Path) -> list[tuple[Path, int]]:
    """The recordings into `output` under their hidden names (`VideoFileSink._temp_file`),
    each with the process its name gives."""
    mine = re.compile(rf"^\.{re.escape(output.stem)}\.(\d+)\.[^.]+\.partial"
                      rf"{re.escape(output.suffix)}$")
    return [(p, int(m.group(1))) for p in sorted(output.parent.glob(
        f".{glob.escape(output.stem)}.*.partial{glob.escape(output.suffix)}"))
        if (m := mine.match(p.name))]


class VideoFileSink(Sink):
    """Video of the sharpened frames, same size and fps as the source, in the container's codec
    (`FOURCC`)."""

    def __init__(self, path: str | os.PathLike, fps: float, flags: bool = False,
                 lossless: bool = False) -> None:
        """`flags`: messages name `sharpen run`'s flags, not run_stream's keywords.
        `lossless`: FFV1 (`LOSSLESS_FOURCC`) in a .mkv or .avi, refused in other containers."""
        if lossless:
            refuse_lossless(path, flags)
        utf8_name(path, SinkError)   # before any frame is sharpened
        self.path = Path(path)
        self.lossless = lossless
        self.fps = fps if fps and fps > 0 else 30.0
        self.flags = flags
        self._made = folders_to_make(self.path.parent)   # removed again if no video is written
        make_folder(self.path.parent, option("output", self.path, flags))
        self.tmp: Optional[Path] = None   # made with the first frame
        self._own: set[Path] = set()   # the hidden files `_temp_file` made for this sink
        self._broken = False
        self.writer: Optional[cv2.VideoWriter] = None
        self.size: Optional[tuple[int, int]] = None
        self.edge_dropped = ""   # an odd size's last column and/or row, which the writer drops
        self.frames = 0
        self.resized = 0
        self.deep_warned = False
        self._last: Optional[np.ndarray] = None
        # The video file whose sound is copied in at close (run_stream sets it for a file
        # source; `audio_live`: a run that drops frames, which would put the sound out of step).
        self.audio_source: Optional[str] = None
        self.audio_live = False
        self.audio_start = 0.0   # where this video's frames begin in the source (a segment's)
        self.part = False   # a segment: a stretch of the source, not all of it from its start
        # A camera's or live stream's recording, which no rerun makes again: one that an earlier
        # run left under this name is kept beside it, not replaced (a service restarted after
        # its camera dropped off replaced the hours before at every restart). run_stream sets it.
        self.keep_previous = False
        self.source_fps = 0.0   # the source's rate (0: unknown), where --fps may differ
        # ((num, den), source): a source of non-square pixels, whose ratio the video lacks
        self.source_sar: Optional[tuple[tuple[int, int], str]] = None
        # A resumed run's: the video the stopped run left, whose `joined_frames` come before
        # this run's in the output (`join`).
        self.joined: Optional[Path] = None
        self.joined_frames = 0
        self._join_progress: Optional[Callable[[], None]] = None
        self._join_ffmpeg: Optional[str] = None
        self._joined_stat: Optional[tuple[int, int]] = None   # `joined`'s size and time then
        self.replaced = False   # this run's video took the output's name
        # The video file the frames came from, whose primaries and transfer the video is
        # tagged with (runtime/colour_tags.py); run_stream sets it for a file source.
        self.colour_source: Optional[str] = None
        self._colour: Optional[tuple[Optional[str], list[str], bool]] = None
        self._tagged = False   # an ffmpeg copy wrote the colour tags
        self._carried = False   # ... or the source's timecode and metadata
        # False: the copies carry none of the source's metadata (--no-metadata), and leave
        # out its streams' own (the sound's creation time); run_stream sets it.
        self.keep_metadata = True
        self._location: Optional[bool] = None   # whether the source's place came with it
        self._copies_stopped = False   # a Ctrl-C stopped one: no other is started
        self.audio_streams = 0   # the source's audio streams in the video
        self.audio_copied = False   # ... copied as they are, not encoded for its container
        # The source's audio streams its container takes neither way, for --stats (as a
        # library's metadata_left_out): each one's number from 1, codec, why, what keeps it.
        self.audio_left_out: list[dict] = []
        self.timecode: Optional[str] = None   # the source's start timecode, carried over
        # Why the copy at close that would tag them is not tried: the join's or the sound's
        # copy found them refused (an ffmpeg without mpeg2_metadata), or was stopped (Ctrl-C).
        self._not_tagged = ""
        # A codec ffmpeg encodes (runtime/video_codecs.py; None: OpenCV's writer) and its
        # --crf; run_stream sets them.
        self.codec: Optional[str] = None
        self.crf: Optional[int] = None
        self.preset: Optional[str] = None   # --encoder-preset as used (None: medium)
        self.encoder_threads: Optional[int] = None   # --threads (None: ffmpeg's own)
        self._encoded_colours = ("", "", "")   # its (matrix, primaries, transfer), as tagged

    def write(self, original: np.ndarray, sharpened: np.ndarray, name: str) -> None:
        if sharpened.dtype == np.uint16:   # video codecs here take 8 bits
            if not self.deep_warned:
                warn(f"{name}: 16-bit results are written as 8-bit video (write an image "
                     f"folder, {option('output', 'DIR', self.flags)}, to keep 16 bits in PNG)")
                self.deep_warned = True
            sharpened = to_8bit(sharpened)
        h, w = sharpened.shape[:2]
        if self.writer is None:
            self.tmp = self._temp_file()
            codec = fourcc_for(self.path, self.lossless)
            # FFmpeg's note that it maps the tag itself is dropped; whether the writer opened
            # is checked right after, and the reason sought when it did not.
            if self.codec is not None:
                self.writer, codec = self._ffmpeg_encoder((w, h)), self.codec
            else:
                with quiet_native_stderr(FFMPEG_TAG_NOISE):
                    self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter.fourcc(*codec),
                                                  self.fps, (w, h))
            if not self.writer.isOpened():
                raise SinkError(f"cannot open video writer for {self.path} ({codec}, {w}x{h}): "
                                f"{why_unwritable(self.tmp, codec, (w, h), self.fps, self.flags)}")
            if w % 2 or h % 2:   # FFmpeg's encoders drop it without a word
                self.edge_dropped = ("the last " + ("column and row" if w % 2 and h % 2
                                                    else "column" if w % 2 else "row"))
                warn(f"{self.path}: {w}x{h} frames are stored as {w - w % 2}x{h - h % 2} (the "
                     f"video codec takes even sizes: {self.edge_dropped} "
                     f"{'are' if w % 2 and h % 2 else 'is'} dropped); write an "
                     f"image folder ({option('output', 'DIR', self.flags)}) to keep every pixel")
            self.size = (w, h)
            if self.joined is not None and self._join_ffmpeg is None:
                try:
                    self._encode_joined()
                except BaseException:
                    self._broken = True   # not a video of part of the stopped run's frames
                    raise
        elif (w, h) != self.size:
            # A video has one size; fitting keeps the file valid if a stream changes resolution
            # (or a folder mixes sizes), and the picture's proportions (stretched, a portrait
            # photo in a landscape video came out squashed).
            if not self.resized:
                warn(f"{name}: {w}x{h} frames are resized to fit the video's "
                     f"{self.size[0]}x{self.size[1]} (the first frame's size), black bars "
                     "keeping their aspect ratio")
            self.resized += 1
            sharpened = letterbox(sharpened, self.size)
        if self.frames and self.frames % DISK_CHECK_EVERY == 0:
            # Before this frame, not after the one before: a write that fails writes nothing,
            # so "after N frames" counts the frames the run wrote, as its closing line does
            # (it said one more, the frame whose write failed). close() checks the last.
            try:
                self._check_disk()
            except SinkError:
                self._broken = True   # close() discards it rather than naming half a video
                raise
        try:
            self.writer.write(sharpened)
        except SinkError:   # ffmpeg stopped: close() discards the part written
            self._broken = True
            if said := self._at_size_limit():
                raise SinkError(said) from None
            raise
        self.frames += 1
        self._last = sharpened

    def join(self, earlier: Path, frames: int,
             progress: Optional[Callable[[], None]] = None) -> None:
        """Make the output `earlier`'s `frames` followed by this run's (a resumed run). With
        ffmpeg, joined at close by a stream copy: the earlier frames keep their encoding. Without
        it, OpenCV cannot append to a video, so they are decoded and encoded again ahead of this
        run's: a second lossy encode of those frames, said once. `progress`: called at each
        (a service's watchdog, which no frame of this run's feeds meanwhile)."""
        from .audio import find_ffmpeg
        self.joined, self.joined_frames, self._join_progress = earlier, frames, progress
        st = os.stat(earlier)
        self._joined_stat = (st.st_size, st.st_mtime_ns)
        self._join_ffmpeg, why = find_ffmpeg()
        if self._join_ffmpeg is None:
            # Why there is none: a SHARPEN_FFMPEG that names no executable was said to be unset.
            warn(f"{option('output', self.path, self.flags)}: the {frames} frames the stopped "
                 f"run wrote are encoded a second time ahead of this run's ({why}, and only "
                 "ffmpeg joins videos without it: install one, or set SHARPEN_FFMPEG, to keep "
                 "them as they are)")

    def _check_joined(self) -> None:
        """The earlier video is the output itself, which another run into it (a plain rerun in
        a second terminal) may have replaced meanwhile: all of that one joined to this run's
        frames made a video of nearly twice the length."""
        try:
            st = os.stat(self.joined)
            now: Optional[tuple[int, int]] = (st.st_size, st.st_mtime_ns)
        except OSError:
            now = None
        if now != self._joined_stat:
            raise SinkError(f"{option('output', self.path, self.flags)}: {self.joined} was "
                            f"{'removed' if now is None else 'replaced'} while this run went "
                            "on (by another run into it?): this run's frames, which go after "
                            f"the stopped run's {self.joined_frames}, are discarded, and what "
                            "is there is left as it is")

    def _encode_joined(self) -> None:
        self._check_joined()
        cap = cv2.VideoCapture(str(self.joined))
        try:
            for n in range(self.joined_frames):
                ok, img = cap.read()
                if not ok:
                    raise SinkError(f"{option('output', self.path, self.flags)}: {self.joined} "
                                    f"gave {n} of the {self.joined_frames} frames the stopped "
                                    "run wrote; run without --resume")
                if (img.shape[1], img.shape[0]) != self.size:
                    img = letterbox(img, self.size)
                self.writer.write(img)
                if self._join_progress is not None:
                    self._join_progress()
        finally:
            cap.release()
        self.frames += self.joined_frames

    def _concat_joined(self) -> None:
        """The earlier video then this run's, its pictures copied (an earlier part's sound,
        copied in when it closed, is left: the whole is given the source's at close). Run as
        the sound's copy is (audio._run): in a session of its own, so that a terminal's Ctrl-C,
        which the run takes as "finish what you are doing", does not stop it, and given the
        time a slow disk takes to copy hours of video."""
        import subprocess

        from .audio import MUX_TIMEOUT_S, SLOW_DISK_BYTES_S, _first_time, _run, video_lead
        fd, name = tempfile.mkstemp(prefix=f".{self.path.stem}.{os.getpid()}.", suffix=".txt",
                                    dir=self.path.parent)
        os.close(fd)
        listing, joined = Path(name), self._copy_file()
        try:
            # The earlier part's own length, not its file's: its sound, copied in when it
            # closed, ends with its last AAC packet, past its last frame, and ffmpeg starts the
            # next file after the longer stream (this run's frames came up to 42 ms late, and
            # the sound's copy at close then cut the last one). ffmpeg times a file from its
            # start, the sound's where it comes first: in MPEG-TS a packet before the first
            # frame, counted in. In MP4/MOV, the sound's encoder delay (23 ms) before it:
            # a timecode track there held the joined video's start at 0 and its frames 23 ms
            # behind their sound, so it is timed from its first frame (in point), which MP4's
            # index seeks exactly (an MPEG-TS's seek lost its first 12 frames).
            iso = self.path.suffix.lower() in ISO_EXTS
            first = (_first_time(self.joined, self._join_ffmpeg, "v:0", copyts=True)
                     if iso else None)
            inpoint = f"inpoint {first:.6f}\n" if first is not None else ""
            seconds = (0.0 if inpoint else video_lead(self.joined, self._join_ffmpeg)) \
                + self.joined_frames / self.fps
            listing.write_text("".join(
                "file '" + str(p.resolve()).replace("'", "'\\''") + "'\n"
                + (f"{inpoint}duration {seconds:.6f}\n" if p == self.joined else "")
                for p in (self.joined, self.tmp)))
            limit = MUX_TIMEOUT_S + 2 * (os.path.getsize(self.joined)
                                         + os.path.getsize(self.tmp)) / SLOW_DISK_BYTES_S
            # An AVI times a frame by its place, and the sound's copy into the earlier part
            # moved all its frames but the first a place on (AAC's encoder delay, before 0,
            # moves every stream later): joined so, and moved again by the whole's copy at
            # close, the last frame was cut. Its frames are put back in their places, one
            # after another (an ffmpeg before 4.4, without setts, joins them as they are).
            tries = ([["-bsf:v", "setts=ts=N"], []] if self.path.suffix.lower() == ".avi"
                     else [[]])
            # Tagged (runtime/colour_tags.py), else untagged: an ffmpeg that refuses the tags
            # (one built without mpeg2_metadata) still joins the frames. The source's timecode
            # and metadata come with the tags: a silent clip's join is then its only copy.
            colour = self._colour_options()[1]
            source = self.audio_source or self.colour_source
            carried = self._source_metadata(self._join_ffmpeg)
            first = [*colour, *carried]
            refused = ""
            # Without the tags, the parts' own metadata would come with the concat's copy.
            plain = [] if self.keep_metadata else list(STRIPPED)
            for renumber, tags in [(r, t) for t in ([first, plain] if first else [[]])
                                   for r in tries]:
                given = ["-i", os.fspath(source)] if tags and carried else []
                try:
                    # -copyts: ffmpeg moved every time by the joined input's start, its
                    # sound's encoder delay, which an H.264 part's first picture (its B-frames'
                    # decode time before 0) then kept: every picture 23 ms behind its sound.
                    done = _run([self._join_ffmpeg, "-hide_banner", "-nostdin", "-loglevel",
                                 "error", "-y", *(["-copyts"] if iso else []),
                                 "-f", "concat", "-safe", "0", "-i",
                                 str(listing), *given, "-map", "0:v:0", "-c", "copy",
                                 *renumber, *tags, str(joined)], limit)
                except subprocess.TimeoutExpired:
                    why = f"it had not finished after {limit:.0f} s"
                    break
                except (OSError, subprocess.SubprocessError) as exc:
                    why = f"{self._join_ffmpeg} did not run: {exc}"
                    break
                lines = done.stderr.strip().splitlines()
                why = ("" if not done.returncode and joined.stat().st_size
                       else lines[-1] if lines else exit_said(done.returncode))
                if not why:
                    break
                refused = refused or (why if tags else "")
            if why:
                raise SinkError(f"{option('output', self.path, self.flags)}: ffmpeg could not "
                                f"join {self.joined} and this run's frames ({why}); the "
                                "earlier video is left as it was")
            os.replace(joined, self.tmp)
            joined = None
            self._tagged = bool(tags) and bool(colour)
            self._not_tagged = "" if self._tagged or not colour else refused
            if tags and carried:
                self._carried, self.timecode = True, _timecode_of(carried)
        finally:
            listing.unlink(missing_ok=True)
            if joined is not None:
                joined.unlink(missing_ok=True)
        self.frames += self.joined_frames

    def _keep_cut(self) -> bool:
        """What an ffmpeg encoder killed mid-run wrote, kept beside the output and said where it
        plays up to the cut (an MKV's, a MOV's without its index does not), as a killed run's
        recording is (`_keep_or_remove`); False where nothing was kept."""
        # A resumed run's part is not the video (the output holds the rest); a source's
        # given-up open holds OpenCV's FFmpeg, which the look would wait for.
        if (self.joined is not None or open_left_running()
                or not _first_frame_reads(self.tmp)):
            return False
        st = self.tmp.stat()
        when = time.strftime("%Y%m%d-%H%M%S", time.localtime(st.st_mtime))
        kept = _move_aside(self.tmp, self.path.with_name(
            f"{self.path.stem}.interrupted-{when}{self.path.suffix}"))
        if kept is None:
            return False
        os.chmod(kept, new_file_mode())   # mkstemp made it owner-only
        cut = (f"{option('output', self.path, self.flags)}: ffmpeg was killed while encoding "
               f"it and left {st.st_size / 1e6:.1f} MB of video")
        if self._removed_past_bound(kept, cut):
            return False
        warn(f"{cut}; it is kept as {kept}, which plays up to the cut (less what ffmpeg still "
             "held then)")
        return True

    def _ffmpeg_encoder(self, size: tuple[int, int]) -> FFmpegEncoder:
        """ffmpeg encoding the frames into the hidden file in `self.codec`, in the YUV matrix
        players take `size` in, tagged so, with the source's SDR primaries and transfer."""
        ffmpeg, _ = find_ffmpeg()
        said = (source_colours(self.colour_source, ffmpeg)
                if ffmpeg is not None and self.colour_source is not None else None)
        self._encoded_colours = colour_names(size, *(said[1:3] if said else ()))
        # An untagged HD source's YUV goes back as it came, tagged as players showed it.
        untagged_hd = said is not None and source_read_as_bt601(said.matrix, said.size)
        read_by = "smpte170m" if untagged_hd else None
        command = encode_command(ffmpeg, ENCODED[self.codec], self.crf, size, self.fps,
                                 self.tmp, self._encoded_colours, read_by, self.preset,
                                 self.encoder_threads)
        return FFmpegEncoder(command, self.path, self.flags)

    def repeat_last(self, n: int) -> int:
        if self.writer is None or self._last is None or n <= 0:
            return 0
        for _ in range(n):
            self.writer.write(self._last)
        self.frames += n
        return n

    def _temp_file(self) -> Path:
        """A hidden name of this run's own beside the output (two runs may write the same --out
        at once), the real extension last (OpenCV picks the container from it), with the pid
        in it: what a killed run left is removed here, once that process is gone."""
        folder, stem, ext = self.path.parent, self.path.stem, self.path.suffix
        for old, pid in recordings_beside(self.path):
            # Absolute, as mkstemp names them: a relative --out lists relative names.
            if old.absolute() in self._own:
                continue
            if left_by_killed_run(pid, self.path):
                self._keep_or_remove(old, pid)
        remove_killed_copies(folder, re.escape(stem), ext, self.path, self._own)
        _remove_killed_listings(folder, stem)
        fd, tmp = tempfile.mkstemp(prefix=f".{stem}.{os.getpid()}.", suffix=f".partial{ext}",
                                   dir=folder)
        os.close(fd)
        self._own.add(Path(tmp).absolute())
        return Path(tmp)

    def _copy_file(self) -> Path:
        """A hidden name for an ffmpeg copy of the video (the join, the sound's, the colour
        tags'), unlike the recording's (`_temp_file`): a killed run's copy, half written (no
        index in an MP4), is removed by the next run, never kept as a recording."""
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.{os.getpid()}.",
                                   suffix=f"{COPY_SUFFIX}{self.path.suffix}",
                                   dir=self.path.parent)
        os.close(fd)
        self._own.add(Path(tmp).absolute())
        return Path(tmp)

    def _keep_or_remove(self, old: Path, pid: int) -> None:
        """What a killed run (SIGKILL, a power cut) left: a recording of hours, which MPEG-TS,
        MKV, AVI and the rest play up to the cut, is renamed beside the output and said once;
        one without a frame is removed. MP4/MOV hold their frames but no index (written at
        close), so no player opens them; kept too, with the ffmpeg command that rebuilds them.
        Measured (a writer SIGKILLed at 300 frames of 64x64): all but the writer's last 256 KB
        read back from .ts .mpg .mkv .webm .avi .flv .wmv .ogv, nothing from .mp4 .mov .m4v
        .3gp ('moov atom not found') until rebuilt, then as many as a closed file's."""
        try:
            st = old.stat()
            # Another user's (mkstemp makes it owner-only): what OpenCV cannot open is no
            # proof of an empty file, and a day of someone's footage was removed as one.
            with open(old, "rb"):
                pass
        except FileNotFoundError:
            return   # another run starting into the same output took it
        except OSError as exc:
            self._left_alone(old, pid, exc)
            return
        plays = _first_frame_reads(old)
        when = time.localtime(st.st_mtime)
        ext = self.path.suffix
        try:
            mp4_frames = _mp4_frame_bytes(old)
            # OpenCV's one probe is no proof of an empty file past what the writer flushes
            # before its first frame (a header; it writes in 256 KB blocks): kept unread.
            if not plays and not mp4_frames and st.st_size < UNREAD_KEPT_BYTES:
                old.unlink(missing_ok=True)
                return
            kept = _move_aside(old, self.path.with_name(
                f"{self.path.stem}.interrupted-{time.strftime('%Y%m%d-%H%M%S', when)}{ext}"))
        except OSError as exc:   # the sticky bit (/tmp's), another user's file: said, and
            self._left_alone(old, pid, exc)   # this run's own recording goes on
            return
        if kept is None:
            return
        try:
            os.chmod(kept, new_file_mode())   # mkstemp made it owner-only
        except OSError:
            pass
        cut = (f"{option('output', self.path, self.flags)}: a recording into it was cut (its "
               f"process, {pid}, was killed or the power failed) and left "
               f"{st.st_size / 1e6:.1f} MB of video, last written "
               f"{time.strftime('%Y-%m-%d %H:%M:%S', when)}")
        if self._removed_past_bound(kept, cut):
            return
        said = f"{cut}; it is kept as {kept}"
        if plays:
            warn(f"{said}, which plays up to the cut (less what the writer still held in "
                 "memory then, its last moments)")
            return
        if not mp4_frames:
            warn(f"{said}, which OpenCV could not read back (try ffmpeg or VLC; delete it if "
                 "it holds nothing of use)")
            return
        said = (f"{said}, which no player opens: its frames are there but not the index "
                f"{ext.lstrip('.').upper()} files get when they are closed")
        if not _holds_mpeg4_part2(kept):   # --codec's H.264, HEVC or ProRes
            warn(f"{said}. Its frames are not mp4v's, the one codec ffmpeg alone puts back "
                 "behind a complete video's header: a tool that rebuilds an index from a "
                 "complete video of the same --codec and frame size (untrunc, "
                 "github.com/anthwlock/untrunc; not tried by this runtime) may recover them; "
                 "record into .mkv, which plays up to a cut as it is")
            return
        rebuilt = kept.with_name(f"{kept.stem}-rebuilt{ext}")
        warn(f"{said}. Given REF{ext}, a "
             "complete video this runtime wrote at the same frame size and rate (a recording "
             f"of the same camera), ffmpeg rebuilds it: ffmpeg -i REF{ext} -c copy -bsf:v "
             f"dump_extra -frames:v 1 -f m4v - | cat - {shlex.quote(str(kept))} | ffmpeg -f "
             f"m4v -r {self.fps:g} -i - -c copy -bsf:v 'noise=drop=not(n)' "
             f"{shlex.quote(str(rebuilt))}; an .mkv, .avi or .ts recording plays up to a cut "
             "as it is")

    def _removed_past_bound(self, kept: Path, cut: str) -> bool:
        """Remove the cut recording `kept` (warned as `cut`) where it holds no more video than
        each of the INTERRUPTED_KEPT kept from earlier cuts; whether it was removed."""
        bound = self._interrupted_bound()
        if not self._bound_kept(kept, "interrupted-", INTERRUPTED_KEPT, bound,
                                "what an earlier cut recording left"):
            return False
        warn(f"{cut}; it was removed, holding no more video than each of the "
             f"{INTERRUPTED_KEPT} kept from earlier cuts: {bound}")
        return True

    def _interrupted_bound(self) -> str:
        return (f"at most {INTERRUPTED_KEPT} such recordings of {self.path.name} are kept, the "
                "ones holding the most video, so that a service killed in a loop does not "
                "fill the disk (rename one to keep it out of the count)")

    def _not_replaced(self, exc: OSError) -> str:
        """Why the finished video did not get its name, and where it is: beside the output under
        a name of its own, not the hidden temp name (which the next run into the output would
        take for a killed run's and rename). Windows refuses to replace a file another
        program holds open (the last run's video in a player), where a POSIX rename never
        fails that way."""
        try:
            kept = _move_aside(self.tmp, self.path.with_name(
                f"{self.path.stem}.new{self.path.suffix}")) or self.tmp
        except OSError:
            kept = self.tmp
        # Linux refuses it only for the folder's sake (a sticky /tmp, another user's file).
        busy = (" (is it open in another program, a video player? Windows cannot replace a "
                "file that is open)" if isinstance(exc, PermissionError)
                and sys.platform == "win32" else "")
        return (f"{option('output', self.path, self.flags)}: cannot replace {self.path} with "
                f"the new video: {exc.strerror or exc}{busy}; the new video is kept as {kept}")

    def _keep_previous(self) -> Optional[str]:
        """Move the video an earlier run left under this name aside, as NAME.<its last write's
        time>.EXT (never over another file), and say so: this run's recording takes the name.
        Where it cannot be moved, what to say once this run's has replaced it: the same cause
        (a player holding it open on Windows) may keep it from being replaced too."""
        try:
            st = os.lstat(self.path)
        except OSError:
            return None   # none there
        if not stat.S_ISREG(st.st_mode):   # a link the user made: theirs to point elsewhere
            return None
        when = time.localtime(st.st_mtime)
        try:
            kept = _move_aside(self.path, self.path.with_name(
                f"{self.path.stem}.{time.strftime('%Y%m%d-%H%M%S', when)}{self.path.suffix}"))
        except OSError as exc:
            # Not movable (another user's file in a shared folder): replaced, as before, but
            # not without a word.
            return (f"{option('output', self.path, self.flags)}: the recording an earlier run "
                    f"left there could not be kept aside ({exc.strerror or exc}); it is "
                    "replaced")
        if kept is None:
            return None
        out = option('output', self.path, self.flags)
        earlier = (f"the recording an earlier run left there ({st.st_size / 1e6:.1f} MB, last "
                   f"written {time.strftime('%Y-%m-%d %H:%M:%S', when)})")
        # Bounded as the cut recordings are: a developer's reruns of a quick test, or a service
        # whose camera drops off every few seconds, left one more file a run, without end.
        bound = (f"at most {PREVIOUS_KEPT} earlier runs' recordings of {self.path.name} are kept "
                 "(NAME.YYYYmmdd-HHMMSS), the ones holding the most video, so that runs "
                 "restarted in a loop do not fill the folder (rename one to keep it out of the "
                 "count)")
        if self._bound_kept(kept, "", PREVIOUS_KEPT, bound, "an earlier run's recording"):
            warn(f"{out}: {earlier} is replaced, holding no more video than each of the "
                 f"{PREVIOUS_KEPT} kept from earlier runs: {bound}")
            return None
        warn(f"{out}: {earlier} is kept as {kept}; this run's takes the name (a camera's "
             "or a pipe's recording, which no rerun makes again, is not replaced)")
        return None

    def _bound_kept(self, kept: Path, infix: str, most: int, bound: str, what: str) -> bool:
        """`_remove_past`, each removed but `kept` (the one just set aside) said as `what`,
        with `bound`, the rule; whether `kept` itself was removed (the caller says that)."""
        removed = self._remove_past(infix, most)
        for old_one, size, at in removed:
            if old_one != kept:
                warn(f"{option('output', self.path, self.flags)}: {old_one} ({size / 1e6:.1f} "
                     f"MB, last written {time.strftime('%Y-%m-%d %H:%M:%S', at)}), {what}, was "
                     f"removed: {bound}")
        return any(old_one == kept for old_one, _, _ in removed)

    def _remove_past(self, infix: str, most: int) -> list[tuple[Path, int, time.struct_time]]:
        """Remove the recordings of this output named NAME.<infix>YYYYmmdd-HHMMSS[-N].EXT past
        `most`, those holding the least video (bytes) first, the older of two alike; (path,
        size, last write) of each removed. Only the names `_keep_or_remove` and
        `_keep_previous` give count: a `-rebuilt` video, or one the user renamed, is theirs."""
        name = re.compile(rf"^{re.escape(self.path.stem)}\.{re.escape(infix)}\d{{8}}-\d{{6}}"
                          rf"(-\d+)?{re.escape(self.path.suffix)}$")
        found = []
        try:
            for p in self.path.parent.iterdir():
                if name.match(p.name):
                    with contextlib.suppress(OSError):   # gone meanwhile: not counted
                        st = p.stat()
                        found.append((st.st_size, st.st_mtime, p))
        except OSError:
            return []
        removed = []
        for size, mtime, p in sorted(found)[:max(0, len(found) - most)]:
            try:
                p.unlink()
            except FileNotFoundError:   # another run starting into this output took it
                continue
            except OSError:   # another user's: left to its owner, as a leftover is
                continue
            removed.append((p, size, time.localtime(mtime)))
        return removed

    def _left_alone(self, old: Path, pid: int, exc: OSError) -> None:
        warn(f"{option('output', self.path, self.flags)}: {old} is what a recording into it "
             f"left when its process ({pid}) was killed, which this user cannot read or move "
             f"({exc.strerror or exc}); it is left as it is for its owner to keep or remove")

    def _check_disk(self, below: int = DISK_FULL_BYTES) -> None:
        # OpenCV's writer drops what does not fit without a word; a full disk is the usual why.
        # The video is discarded (close): said, with what to do, since no --resume follows.
        free = free_bytes(self.path.parent)
        if free is not None and free < below:
            raise SinkError(f"{option('output', self.path, self.flags)}: the disk is full "
                            f"({free} bytes free in "
                            f"{self.path.parent}) after {count(self.frames, 'frame')}; the "
                            f"video could not be written completely{self._gone()} (free some "
                            "space and run the same command again)")
        if said := self._at_size_limit():
            raise SinkError(said)

    def _at_size_limit(self) -> str:
        """What to say where the video stopped at the limit on one file's size, else "". It
        cuts the file however much the disk holds: OpenCV's writer drops the rest as silently,
        and ffmpeg is killed (SIGXFSZ, which Python ignores and its children do not)."""
        limit = file_size_limit()
        try:
            cut = limit is not None and self.tmp is not None and self.tmp.stat().st_size >= limit
        except OSError:   # not there (an ffmpeg encoder's that never started): nothing cut
            cut = False
        if not cut:
            return ""
        cure = (f", or shorten {option('segment', flags=self.flags)}" if self.part else
                f", or cut the video into files with {option('segment', 'S', self.flags)}")
        return (f"{option('output', self.path, self.flags)}: the video reached the limit on one "
                f"file's size ({limit} bytes: ulimit -f) after {count(self.frames, 'frame')}; "
                f"the video could not be written completely{self._gone()} (raise the limit{cure})")

    def _gone(self) -> str:
        # A segment's run keeps those closed before it, which its closing note counts.
        return "" if self.part else "; nothing was written under that name"

    def close(self) -> None:
        if self.writer is None:   # no frame came (Ctrl-C before the first): no video
            if self.tmp is not None:
                self.tmp.unlink(missing_ok=True)
            remove_if_empty(self._made)
            return
        self.writer.release()
        failure = getattr(self.writer, "failure", "")   # an ffmpeg encoder's
        # Before a cut ffmpeg left is moved aside: that file tells the limit it stopped at
        limited = self._at_size_limit() if failure and not self._broken else ""
        kept = getattr(self.writer, "killed", False) and self._keep_cut()
        self.writer = None
        if limited:
            self._broken = True
            self.close()
            raise SinkError(limited)
        if failure and not self._broken:
            self._broken = True
            self.close()
            raise SinkError(f"{option('output', self.path, self.flags)}: ffmpeg could not "
                            f"encode the video ({failure}); nothing was written under that "
                            f"name{', what it wrote is kept beside it' if kept else ''}")
        if self._broken:
            self.tmp.unlink(missing_ok=True)
            remove_if_empty(self._made)
            return
        try:
            # Not one block left: what did not fit was dropped (an AVI cut this way still
            # plays, so playing back is not proof enough).
            self._check_disk(below=DISK_BLOCK_BYTES)
            if self.joined is not None and self._join_ffmpeg is not None:
                self._check_joined()
                self._concat_joined()
            self._check_playable()
            if self.audio_source is not None:
                try:
                    self._add_audio(self.audio_source)
                except KeyboardInterrupt:
                    # The Ctrl-C that stops waiting for ffmpeg (subprocess has killed it), in
                    # the copy or the look at the source before it: every frame is in the
                    # silent video, which is still worth its name.
                    warn(f"{option('output', self.path, self.flags)} has no sound: the copy "
                         f"of the audio of {self.audio_source} was stopped (Ctrl-C); the "
                         "video was written without it")
                    # That Ctrl-C stopped waiting for the output: no other copy is started.
                    self._not_tagged = ("the copy with the sound, which tags them, was stopped "
                                        "(Ctrl-C)")
                    self._copies_stopped = True
                except Exception as exc:   # noqa: BLE001 - said; the video is kept
                    # Every frame is in the video: an optional copy that failed in a way its
                    # own checks did not foresee (EMFILE or ENOSPC making its temporary file,
                    # ffmpeg output that does not parse) is no reason to throw hours away.
                    warn(f"{option('output', self.path, self.flags)} has no sound: the copy "
                         f"of the audio of {self.audio_source} failed ({_said(exc)}); the "
                         "video was kept without it")
            try:
                self._tag_colours()
            except KeyboardInterrupt:
                warn(f"{option('output', self.path, self.flags)}: the copy that tags its "
                     "colours was stopped (Ctrl-C); the video was written untagged")
                self._copies_stopped = True
            except Exception as exc:   # noqa: BLE001 - said; the video is kept, as above
                warn(f"{option('output', self.path, self.flags)}: the copy that tags its "
                     f"colours failed ({_said(exc)}); the video was kept untagged")
            try:
                self._carry_metadata()
            except KeyboardInterrupt:
                warn(f"{option('output', self.path, self.flags)}: the copy that keeps the "
                     "source's timecode was stopped (Ctrl-C); the video was written without it")
            except Exception as exc:   # noqa: BLE001 - said; the video is kept, as above
                warn(f"{option('output', self.path, self.flags)}: the copy that keeps the "
                     f"source's timecode failed ({_said(exc)}); the video was kept without it")
            with open(self.tmp, "r+b") as f:   # on disk before it gets its final name (a
                os.fsync(f.fileno())           # writable handle: Windows' fsync needs one)
            os.chmod(self.tmp, new_file_mode())   # mkstemp makes files owner-only
        except BaseException:
            self.tmp.unlink(missing_ok=True)   # a broken video, and the space it holds
            remove_if_empty(self._made)
            raise
        unkept = self._keep_previous() if self.keep_previous else None
        try:
            replace(self.tmp, self.path)   # retried while a scanner or thumbnailer reads it
        except OSError as exc:
            raise SinkError(self._not_replaced(exc)) from None
        self.replaced = True
        if unkept:
            warn(unkept)
        if self.source_sar and self.size:
            self._say_aspect(*self.source_sar)
        if self.resized > 1:   # the first one was named as it happened
            warn(f"{self.resized} frames in all were resized to {self.size[0]}x{self.size[1]} "
                 f"in {self.path}")

    def encoding(self) -> dict:
        """What the video was written in, for --stats and the run's closing lines
        (`encoding_said`): every codec here takes 8 bits; FFV1 stores the frames as BGR."""
        # Every codec here takes even sizes: an odd one's edge is dropped whichever wrote it.
        edge = {"edge_dropped": self.edge_dropped} if self.edge_dropped else {}
        if self.audio_left_out:   # said only where there is one, as edge_dropped
            edge = {**edge, "audio_left_out": self.audio_left_out}
        if self.codec is not None:
            return {**encoding(self.codec, self.crf, self._encoded_colours[0],
                               self.audio_streams, self.audio_copied, self.timecode,
                               self.preset), "location_kept": self._location_kept(), **edge}
        fourcc = fourcc_for(self.path, self.lossless)
        rgb = fourcc == LOSSLESS_FOURCC
        # MPEG program and transport streams (MPEG-2's containers) hold no timecode: ffmpeg's
        # copy into one drops it.
        timecode = None if fourcc == "MPG2" else self.timecode
        return {"codec": CODECS[fourcc][0], "fourcc": fourcc, "bit_depth": 8,
                "chroma": "4:4:4" if rgb else "4:2:0", "matrix": None if rgb else "bt601",
                "range": None if rgb else "limited", "tagged": self._tagged,
                "audio_streams": self.audio_streams, "audio_copied": self.audio_copied,
                "timecode": timecode, "location_kept": self._location_kept(), **edge}

    def _location_kept(self) -> bool:
        """Whether a copy carried the source's tags into the video, its place among them (a
        phone's location, which a desk must not publish unawares): said in the closing line."""
        source = self.audio_source or self.colour_source
        if self._location is None:
            ffmpeg = find_ffmpeg()[0]
            self._location = bool(self._carried and self.keep_metadata and source is not None
                                  and self.path.suffix.lower() in LOCATION_EXTS
                                  and ffmpeg is not None and source_location(source, ffmpeg))
        return self._location

    def _say_aspect(self, sar: tuple[int, int], source: str) -> None:
        """OpenCV's writer has no pixel aspect ratio to set: players show the video narrower
        or wider than the source. ffmpeg sets it in the container without re-encoding."""
        w, h = self.size[0] - self.size[0] % 2, self.size[1] - self.size[1] % 2
        dw, dh = w * sar[0], h * sar[1]
        g = math.gcd(dw, dh)
        fixed = self.path.with_name(f"{self.path.stem}-aspect{self.path.suffix}")
        warn(f"{source} has non-square pixels (sample aspect ratio {sar[0]}:{sar[1]}), which "
             f"players stretch; {self.path} holds its {w}x{h} pixels as square ones, so it "
             f"plays {'squeezed' if sar[0] > sar[1] else 'stretched'}; to show it as the "
             f"source is shown, without re-encoding: ffmpeg -i {shell_quote(str(self.path))} "
             f"-c copy -aspect {dw // g}:{dh // g} {shell_quote(str(fixed))}")

    def _add_audio(self, source: str) -> None:
        """Replace the written video by one that also holds `source`'s sound, over the video's
        length; where that cannot be done, say once that the output is silent, and why."""
        from .audio import (AAC_REFUSED_EXTS, ENV, TIMED_OUT, audio_codecs, find_ffmpeg,
                            has_audio, mux_audio)
        ffmpeg, no_ffmpeg = find_ffmpeg()
        # One ffmpeg probe of the source tells both whether it has sound and how to copy it.
        codecs = audio_codecs(source, ffmpeg) if ffmpeg else None
        sound = bool(codecs) if codecs is not None else has_audio(source, None)
        # Unknown (no ffmpeg, and a container other than MP4/MOV): nothing is said, since a
        # warning on every silent AVI or MKV would be noise; with ffmpeg a copy is tried.
        if sound is False or (sound is None and (ffmpeg is None or self.audio_live)):
            return
        silent = f"{option('output', self.path, self.flags)} has no sound:"
        off = f"{'--no-audio' if self.flags else 'audio=False'} leaves it out without a word"
        if not self.source_fps:
            warn(f"{silent} the frame rate of {source} is unknown, so the video's "
                 f"{self.fps:g} fps is a guess its audio would not match; "
                 f"{option('fps', 'RATE', self.flags)} with the clip's rate keeps it ({off})")
            return
        if abs(self.fps - self.source_fps) > 1e-3 * self.source_fps:
            warn(f"{silent} {option('fps', f'{self.fps:g}', self.flags)} plays the frames at "
                 f"another rate than the {self.source_fps:g} fps of {source}, so its audio "
                 f"would not match them; {off}")
            return
        if self.audio_live:
            warn(f"{silent} the audio of {source} is kept only when every frame is written "
                 f"({'--no-live' if self.flags else 'live=False'}): "
                 f"a live run drops frames, which would put it out of step; {off}")
            return
        if ffmpeg is None:
            # A long run need not be made again for its sound: an ffmpeg found later adds it.
            # Not to segments: their one warning names them all, each from its own time.
            sounded = self.path.with_name(f"{self.path.stem}-sound{self.path.suffix}")
            copy = "-c:v copy" if self.path.suffix.lower() in AAC_REFUSED_EXTS else "-c copy"
            later = ("" if self.part else
                     f", or add it to the video made: ffmpeg -i {shell_quote(str(self.path))} "
                     f"-i {shell_quote(str(source))} -map 0:v -map 1:a {copy} -shortest "
                     f"{shell_quote(str(sounded))}")
            warn(f"{silent} the audio of {source} is not copied, as {no_ffmpeg}; install "
                 f"ffmpeg, or set {ENV} to an ffmpeg executable, to keep it ({off}){later}")
            return
        muxed = self._copy_file()
        refused = ""
        try:
            tags = self._colour_options()[1]
            carried = self._source_metadata(ffmpeg)
            why, copied, left = mux_audio(self.tmp, source, muxed, self.frames / self.fps,
                                          ffmpeg, codecs, tags, start=self.audio_start,
                                          metadata=carried)
            # An ffmpeg that refuses the tags still copies the sound (and the copy at close
            # is not tried, to be refused as well); one that ran out of time is not run again
            # to wait as long for the same source. The retry is the plain copy, without the
            # timecode and metadata either.
            if why and (tags or carried) and not why.startswith(TIMED_OUT):
                refused, tried, tags = why, tags, []
                why, copied, left = mux_audio(self.tmp, source, muxed,
                                              self.frames / self.fps, ffmpeg, codecs,
                                              start=self.audio_start,
                                              metadata=[] if self.keep_metadata else carried)
                self._not_tagged = "" if why or not tried else refused
            if why:
                warn(f"{silent} {ffmpeg} could not copy the audio of {source} into it ({why}); "
                     "the video was written without it")
                return
            os.replace(muxed, self.tmp)   # one step: a Ctrl-C cannot leave neither file
            muxed = None
            self._tagged = bool(tags)
            self._carried = not refused
            self.audio_streams = (len(codecs or []) or 1) - len(left)
            self.audio_copied = copied
            self.audio_left_out = [dict(stream=number, codec=codec, why=failed,
                                        kept_in=kept_in or None)
                                   for number, codec, failed, kept_in in left]
            for number, codec, failed, kept_in in left:
                keep = (f"; {option('output', self.path.with_suffix(kept_in), self.flags)} "
                        "keeps it as it is" if kept_in else "")
                warn(f"{self.path} leaves out audio stream {number} of {source} ({codec}), "
                     f"which ffmpeg can neither copy into {self.path.suffix.lower()} nor "
                     f"encode for it ({failed}); the other audio is in it{keep}")
            if self._carried:
                self.timecode = _timecode_of(carried)
        finally:
            if muxed is not None:
                muxed.unlink(missing_ok=True)

    def _colour_options(self) -> tuple[Optional[str], list[str], bool]:
        """(the ffmpeg that tags the video's colours, or None; the output options that do;
        whether its frames want tags, runtime/colour_tags.py `wants_tags`), found once: the
        join, the sound's copy and the tags' own copy use the same."""
        if self._colour is None and self.codec is not None:
            # ffmpeg's encoder wrote the tags (`_ffmpeg_encoder`): no copy re-tags them.
            self._colour = (find_ffmpeg()[0], [], False)
        if self._colour is None:
            ffmpeg, _ = find_ffmpeg()
            source = (source_colours(self.colour_source, ffmpeg)
                      if ffmpeg is not None and self.colour_source is not None else None)
            if self.colour_source is None or source is not None:
                wanted = wants_tags(source)
            else:
                # Without ffmpeg only an MP4/MOV's colr box is read; a source that says no
                # matrix may be one whose frames are right untagged.
                said = (colr_values(Path(self.colour_source))
                        if Path(self.colour_source).suffix.lower() in ISO_EXTS
                        and Path(self.colour_source).is_file() else None)
                wanted = bool(said and said[2] not in (2, 3))
            # A lossless video holds the frames as BGR: no YUV matrix for players to guess.
            wanted = wanted and not self.lossless
            options = (tag_options(self.path, *(source[1:3] if source else ()))
                       if ffmpeg and wanted and taggable(self.path) else [])
            self._colour = (ffmpeg, options, wanted)
        return self._colour

    def _tag_colours(self) -> None:
        """Tag the video with the YUV matrix OpenCV's writer used (runtime/colour_tags.py),
        where neither the join nor the sound's copy did, by a stream copy (no re-encode).
        Where it cannot be tagged, an HD video, which players take as BT.709, is said to
        show shifted colours; SD, which they take as BT.601, as written, is not."""
        if self._tagged:
            return
        if self._copies_stopped and self._colour is None:
            # A Ctrl-C stopped the source's probe (a share that stopped answering): probing
            # it again would keep the user waiting as long; the closing line says "untagged".
            return
        ffmpeg, options, wanted = self._colour_options()
        if not wanted or self.size is None:
            return
        said = option('output', self.path, self.flags)
        hd = players_guess_hd(self.size)
        shifted = ("its frames are in BT.601 colours (OpenCV's writer), while players take "
                   f"untagged {self.size[0]}x{self.size[1]} video as BT.709: they show its "
                   "colours shifted (greens darker) beside its source") if hd else ""
        if not taggable(self.path):
            if hd:
                warn(f"{said}: {shifted}; {self.path.suffix} holds no colour tags: write "
                     ".mp4, .mkv, .webm or .ts, which are tagged where ffmpeg is found")
            return
        if ffmpeg is None:
            if hd:
                warn(f"{said}: {shifted}; {find_ffmpeg()[1]}, which tags them: install "
                     f"ffmpeg, or set {ENV} to an ffmpeg executable")
            return
        if self.keep_previous:
            # A camera's recording, hours of it, is not copied at its end (a service's stop
            # would wait minutes for it, and a full disk hold it twice): said, with the copy.
            if hd:
                tagged_name = self.path.with_name(f"{self.path.stem}-tagged{self.path.suffix}")
                warn(f"{said}: {shifted}; to tag them without re-encoding: ffmpeg -i "
                     f"{shell_quote(str(self.path))} -c copy {shlex.join(options)} "
                     f"{shell_quote(str(tagged_name))}")
            return
        size = os.path.getsize(self.tmp)
        free = free_bytes(self.path.parent)
        if self._not_tagged:
            why = self._not_tagged
        elif free is not None and free < size + DISK_FULL_BYTES:
            why = f"{free} bytes free in {self.path.parent}, for a copy of {size}"
        else:
            tagged: Optional[Path] = self._copy_file()
            try:
                source = self.audio_source or self.colour_source
                carried = [] if self._carried else self._source_metadata(ffmpeg)
                why = copy_tagged(self.tmp, tagged, ffmpeg, options,
                                  MUX_TIMEOUT_S + 2 * size / SLOW_DISK_BYTES_S, source, carried)
                if not why:
                    os.replace(tagged, self.tmp)
                    tagged = None
                    self._tagged = True
                    self._carried = self._carried or bool(carried)
                    self.timecode = self.timecode or _timecode_of(carried)
                    return
            finally:
                if tagged is not None:
                    tagged.unlink(missing_ok=True)
        warn(f"{said}: its colours (BT.601, limited range) were not tagged ({why})"
             + (f": {shifted}" if hd else ""))

    def _source_metadata(self, ffmpeg: str, said_only: bool = False) -> list[str]:
        """The options that carry the source's timecode and metadata into a copy that reads it
        as input 1 (runtime/clip_metadata.py `metadata_options`): its timecode counts its
        frames, so a video that plays them at another rate (--fps) gets none. Without
        `keep_metadata`, the options that carry none (said_only: no copy is made for that,
        as OpenCV's writer wrote none)."""
        if not self.keep_metadata:
            return [] if said_only else list(STRIPPED)
        same = (self.source_fps > 0
                and abs(self.fps - self.source_fps) <= 1e-3 * self.source_fps)
        return metadata_options(self.audio_source or self.colour_source, ffmpeg, 1,
                                self.audio_start, self.fps if same else 0.0, said_only,
                                part=self.part)

    def _carry_metadata(self) -> None:
        """Where neither the sound's copy nor the colour tags' ran (a silent clip whose output
        stays untagged, a lossless one), a copy of its own carries the source's timecode and
        creation time (runtime/clip_metadata.py), in a container that holds them."""
        source = self.audio_source or self.colour_source
        if (self._carried or self._copies_stopped or source is None or self.keep_previous
                or self.path.suffix.lower() not in TIMECODE_EXTS):
            return
        ffmpeg, _ = find_ffmpeg()
        carried = self._source_metadata(ffmpeg, said_only=True) if ffmpeg else []
        if not carried:
            return
        size = os.path.getsize(self.tmp)
        free = free_bytes(self.path.parent)
        if free is not None and free < size + DISK_FULL_BYTES:
            why = f"{free} bytes free in {self.path.parent}, for a copy of {size}"
        else:
            copy: Optional[Path] = self._copy_file()
            try:
                why = copy_tagged(self.tmp, copy, ffmpeg, [],
                                  MUX_TIMEOUT_S + 2 * size / SLOW_DISK_BYTES_S, source, carried)
                if not why:
                    os.replace(copy, self.tmp)
                    copy = None
                    self._carried = True
                    self.timecode = _timecode_of(carried)
                    return
            finally:
                if copy is not None:
                    copy.unlink(missing_ok=True)
        warn(f"{option('output', self.path, self.flags)}: the timecode and creation time of "
             f"{source} were not kept ({why})")

    def _check_playable(self) -> None:
        """The written file opens and gives its first frame: what a failed write (a full disk,
        an I/O error) leaves in MP4/MOV, which keep their index at the end, does not. Not
        opened while a source's given-up open holds OpenCV's FFmpeg (a stop during a
        camera's reconnect), which the check would wait for, the stop with it: then an MP4's
        or MOV's video track is looked for in its index, without OpenCV; other files pass."""
        if open_left_running():
            if self.tmp.suffix.lower() not in ISO_EXTS or read_moov(
                    self.tmp, lambda f, moov: next(tracks(f, moov, b"vide"), None) is not None):
                return
            # size_refused would open OpenCV's writer, which waits for that open as well
            raise SinkError(f"{option('output', self.path, self.flags)}: the video written "
                            f"({count(self.frames, 'frame')}) does not play back: it has no "
                            "index (disk full or I/O error?); nothing was written under that "
                            "name")
        with quiet_native_stderr():
            cap = cv2.VideoCapture(str(self.tmp))
            ok = cap.isOpened() and cap.read()[0]
            cap.release()
        if not ok:
            codec = fourcc_for(self.path, self.lossless)
            why = (size_refused(self.tmp, codec, self.size, self.fps, self.flags)
                   or _too_short_ts(self.tmp))
            raise SinkError(f"{option('output', self.path, self.flags)}: the video written "
                            f"({count(self.frames, 'frame')}) does not play back: "
                            f"{why or 'the write failed (disk full or I/O error?)'}; nothing was "
                            "written under that name")


# FFmpeg's format probe scores MPEG-TS by the sync bytes of its first packets: a file of 10 or
# fewer (two or three frames of a small, still picture) was taken for MPEG-PS, in which it
# found no stream, while `ffmpeg -f mpegts` read every frame (FFmpeg 9, OpenCV's own).
TS_PACKET = 188
TS_PROBE_PACKETS = 16


# The closing line's word that a copy carried a phone clip's place (`encoding_said`, and
# alone for --segment's segments)
LOCATION_KEPT = "the source's location kept (--no-metadata leaves it out)"


def encoding_said(written: dict) -> str:
    """`VideoFileSink.encoding` in words: `MPEG-4 Part 2 (mp4v), 8-bit 4:2:0, BT.601 limited
    range (tagged), OpenCV's fixed quality; 2 audio streams copied; timecode 01:00:00:00`."""
    name = CODECS.get(written["fourcc"], (None, written["fourcc"]))[1]
    if written.get("quality"):   # ffmpeg's encode (runtime/video_codecs.py)
        pictures = pictures_said(written)
    elif written["matrix"] is None:
        but = f" but {written['edge_dropped']}" if written.get("edge_dropped") else ""
        pictures = (f"{name}, {written['bit_depth']}-bit BGR {written['chroma']}, no YUV "
                    f"matrix, every pixel kept{but}")
    else:
        pictures = (f"{name}, {written['bit_depth']}-bit {written['chroma']}, BT.601 "
                    f"{written['range']} range ({'' if written['tagged'] else 'un'}tagged), "
                    "OpenCV's fixed quality")
    n = written["audio_streams"]
    kept = "copied" if written.get("audio_copied", True) else "encoded for the container"
    sound = f"{count(n, 'audio stream')} {kept}" if n else "no audio"
    timecode = f"; timecode {written['timecode']}" if written.get("timecode") else ""
    place = f"; {LOCATION_KEPT}" if written.get("location_kept") else ""
    return f"{pictures}; {sound}{timecode}{place}"


def _timecode_of(options: list[str]) -> Optional[str]:
    """The timecode that ffmpeg `options` set (runtime/clip_metadata.py), or None."""
    return options[options.index("-timecode") + 1] if "-timecode" in options else None


def _too_short_ts(path: Path) -> str:
    """Why the whole, intact MPEG-TS `path` does not open: too short for FFmpeg to recognise;
    '' for any other file."""
    try:
        if os.path.getsize(path) > TS_PROBE_PACKETS * TS_PACKET:
            return ""
        data = path.read_bytes()
    except OSError:
        return ""
    if not data or len(data) % TS_PACKET or any(data[i] != 0x47
                                                 for i in range(0, len(data), TS_PACKET)):
        return ""
    return (f"at {len(data) // TS_PACKET} MPEG-TS packets it is too short for FFmpeg (OpenCV's "
            "reader, the ffmpeg command) to recognise as MPEG-TS; more frames, or an .mp4 or "
            ".mkv, play")


def _said(exc: Exception) -> str:
    """An unforeseen error in words: an OSError's reason and file, else its kind and text."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def refused_write(written: Path, name: Path) -> Optional[OSError]:
    """The error the writes of `written` met, which OpenCV's writer does not report, told by its
    size and the room left (as `VideoFileSink` tells them), as an OSError naming `name` (the
    name it was to take): EFBIG where it stopped at the limit on one file's size, ENOSPC where
    its disk has not a block free; None where neither."""
    import errno
    limit = file_size_limit()
    if limit is not None and written.stat().st_size >= limit:
        return OSError(errno.EFBIG, os.strerror(errno.EFBIG), str(name))
    free = free_bytes(written.parent)
    if free is not None and free < DISK_BLOCK_BYTES:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(name))
    return None


def file_size_limit() -> Optional[int]:
    """The most bytes this process may write into one file (`ulimit -f`, systemd's
    LimitFSIZE=), or None: no limit, or a system without one (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def free_bytes(folder: Path, system: Optional[str] = None) -> Optional[int]:
    """Bytes this process may still write in `folder`'s file system (root may use the reserved
    blocks), or None where the system cannot say (a file system that reports no size at all,
    as some virtual ones do). `system`: sys.platform's spelling, default this one's. Windows
    has no statvfs: its answer is shutil.disk_usage's, or OpenCV's writer there dropped the
    frames a full disk could not hold without a word."""
    if (system or sys.platform) == "win32" or not hasattr(os, "statvfs"):
        import shutil
        try:
            return shutil.disk_usage(folder).free
        except (OSError, AttributeError):   # AttributeError: a system with neither
            return None
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    if not st.f_blocks:
        return None
    blocks = st.f_bfree if hasattr(os, "geteuid") and os.geteuid() == 0 else st.f_bavail
    return blocks * st.f_frsize


UNREAD_KEPT_BYTES = 1 << 20   # a killed recording this large is kept even if OpenCV reads none
# The cut recordings of one output kept at most (`.interrupted-` names): a service killed in a
# loop (out of memory, a watchdog) left one a restart, without end.
INTERRUPTED_KEPT = 10
# The recordings of earlier runs of a camera into one output kept at most (NAME.YYYYmmdd-HHMMSS
# names, `_keep_previous`'s): each rerun or restart set one more aside.
PREVIOUS_KEPT = 10


# What `_concat_joined` gives ffmpeg: one line "file '<path>'" for each video joined, the
# first followed by its length ("duration 0.840000").
_LISTING_LINE = re.compile(r"file '.*'|duration \d+\.\d+")


COPY_SUFFIX = ".copy"   # an ffmpeg copy's hidden name: .STEM.PID.XXXXXXXX.copy.EXT


def remove_killed_copies(folder: Path, stems: str, ext: str, output: Path,
                         own: frozenset[Path] | set[Path] = frozenset()) -> None:
    """Remove the ffmpeg copies (`VideoFileSink._copy_file`) that killed runs left in `folder`
    for videos whose stem matches the regex `stems`: the video copied is whole under its own
    hidden name. Unlinked even where an orphaned ffmpeg (one not tied to its run) still
    writes it: that one then writes into no name, and this run's copies have names of their
    own. `own`: this sink's files, never a killed run's."""
    mine = re.compile(rf"^\.(?:{stems})\.(\d+)\.[^.]+{re.escape(COPY_SUFFIX + ext)}$")
    with contextlib.suppress(OSError):
        for old in list(folder.iterdir()):
            m = mine.match(old.name)
            if not m or old.absolute() in own or not left_by_killed_run(int(m.group(1)), output):
                continue
            with contextlib.suppress(OSError):   # gone meanwhile, or another user's
                old.unlink()


def _remove_killed_listings(folder: Path, stem: str) -> None:
    """Remove the list of videos a resumed run killed while ffmpeg joined them left beside its
    output (.STEM.PID.XXXXXXXX.txt), once its process is gone. Only a file that holds such a
    list: a user's .day.2023.holidays.txt has a name of that shape."""
    mine = re.compile(rf"^\.{re.escape(stem)}\.(\d+)\.[a-z0-9_]{{8}}\.txt$")
    for old in folder.glob(f".{glob.escape(stem)}.*.txt"):
        m = mine.match(old.name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        try:
            if old.stat().st_size > 64 * 1024:   # two paths: not a list this run writes
                continue
            lines = old.read_text(errors="replace").splitlines()
            if lines and all(_LISTING_LINE.fullmatch(line) for line in lines):
                old.unlink()
        except OSError:   # gone meanwhile, or another user's: left to its owner
            continue


def _first_frame_reads(path: Path) -> bool:
    with quiet_native_stderr():
        cap = cv2.VideoCapture(str(path))
        ok = cap.isOpened() and cap.read()[0]
        cap.release()
    return bool(ok)


def _mp4_frame_bytes(path: Path) -> int:
    """The bytes of frames in an MP4/MOV file's mdat box (0: none, or not such a file): what a
    writer killed before it wrote the index at close leaves them in."""
    return _mdat(path)[1]


# MPEG-4 Part 2's start codes (GOV, VOP, visual object sequence and object): what OpenCV's
# mp4v puts first in the mdat, where H.264 and HEVC put a 4-byte NAL length and ProRes a
# frame's size.
MP4V_STARTS = (b"\x00\x00\x01\xb0", b"\x00\x00\x01\xb3", b"\x00\x00\x01\xb5",
               b"\x00\x00\x01\xb6")


def _holds_mpeg4_part2(path: Path) -> bool:
    """Whether the frames in an MP4/MOV file's mdat are mp4v's (OpenCV's), which ffmpeg reads
    as a raw stream behind a complete video's header, unlike --codec's."""
    at, size = _mdat(path)
    if size < 4:
        return False
    try:
        with open(path, "rb") as f:
            f.seek(at)
            return f.read(4) in MP4V_STARTS
    except OSError:
        return False


def _mdat(path: Path) -> tuple[int, int]:
    """(where the frames in an MP4/MOV file's mdat box start, their bytes); (0, 0): none."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            at = 0
            while at + 8 <= size:
                f.seek(at)
                head = f.read(16)
                box, kind = int.from_bytes(head[:4], "big"), head[4:8]
                header = 8
                if box == 1 and len(head) == 16:
                    box, header = int.from_bytes(head[8:16], "big"), 16
                if kind == b"mdat":   # size 0: up to the end, as the writer leaves it open
                    end = size if box == 0 else min(size, at + box)
                    return at + header, max(0, end - at - header)
                if box < header or (at == 0 and kind != b"ftyp"):
                    return 0, 0
                at += box
    except OSError:
        pass
    return 0, 0


def _move_aside(old: Path, name: Path) -> Optional[Path]:
    """`old` renamed to `name`, else to name-2, name-3, ...: never over another file (a link
    then an unlink, since a rename replaces). None when another run took it meanwhile."""
    for n in itertools.count(1):
        target = name if n == 1 else name.with_name(f"{name.stem}-{n}{name.suffix}")
        try:
            os.link(old, target)
        except FileExistsError:
            try:
                if os.path.samefile(old, target):   # linked there by another run, or by
                    old.unlink(missing_ok=True)      # one killed before it unlinked the old
                    return None                      # name, which stayed for good
            except OSError:
                return None
            continue
        except FileNotFoundError:
            return None
        except OSError:   # no hard links (FAT, as on a camera's SD card, some shares)
            # The name taken first, then replaced: a name found free, then renamed onto,
            # replaced a file another run or person put there in between.
            try:
                os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            except FileExistsError:
                continue
            try:
                os.replace(old, target)
            except BaseException as exc:
                target.unlink(missing_ok=True)
                if isinstance(exc, FileNotFoundError):
                    return None   # another run moved it first
                raise
            sync_folder(target.parent)
            return target
        try:
            old.unlink()
        except FileNotFoundError:
            pass
        except BaseException:
            target.unlink(missing_ok=True)   # not moved: one name, as before
            raise
        sync_folder(target.parent)
        return target
    return None


def letterbox(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`frame` scaled to fit (width, height) `size` whole, centred on black."""
    h, w = frame.shape[:2]
    W, H = size
    scale = min(W / w, H / h)
    nw, nh = max(1, min(W, round(w * scale))), max(1, min(H, round(h * scale)))
    out = np.zeros((H, W, *frame.shape[2:]), frame.dtype)
    y, x = (H - nh) // 2, (W - nw) // 2
    out[y:y + nh, x:x + nw] = cv2.resize(
        frame, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return out

