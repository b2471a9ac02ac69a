"""A video file source's sound, copied into the sharpened video by an ffmpeg executable.

OpenCV's VideoWriter writes pictures only, and the FFmpeg backend of pip's OpenCV (5.1) refuses
the audio-stream parameters, so neither reading nor writing sound goes through it: an `ffmpeg`
on PATH, or the one SHARPEN_FFMPEG names, probes the source and copies its audio into the
finished video. Without one, an MP4/MOV source (what cameras and phones record) is still read
far enough to tell whether it has sound, so that the user is told what was left out.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

from .die_with_run import own_session
from .iso_boxes import ISO_EXTS, read_moov, tracks
from .transport_stream import TRANSPORT_STREAM_EXTS

ENV = "SHARPEN_FFMPEG"
PROBE_TIMEOUT_S = 30
MUX_TIMEOUT_S = 600     # a copy, not an encode: seconds even for an hour of sound
# ...plus the time to read both files and write the output at a slow USB or network disk's
# rate: a 2-hour recording's tens of GB would not be copied in 600 s there.
SLOW_DISK_BYTES_S = 5e6
TIMED_OUT = "it had not finished after"   # how a copy that ran out of time is said

_AUDIO_LINE = re.compile(r"^\s*Stream #\d+:\d+.*?: Audio: (\w+)", re.M)
# What an MP4 is played with (browsers, QuickTime, phones). Recent ffmpeg also copies PCM and
# Vorbis into one when asked, as tracks those players do not play: such sound is encoded.
MP4_EXTS = (".mp4", ".m4v", ".3gp", ".3g2")
MP4_PLAYED = ("aac", "mp3", "ac3", "eac3", "alac", "opus", "flac")
# Containers whose muxer refuses AAC, the sound an MP4/MOV source most often holds: a line that
# adds such a source's sound to one of them has ffmpeg encode it (to Vorbis, Opus, MPEG audio).
AAC_REFUSED_EXTS = (".webm", ".ogv", ".mpg", ".mpeg")


# Homebrew's folders (Apple silicon, Intel): on PATH in a terminal, but not for a run that
# launchd, cron or an app starts (PATH=/usr/bin:/bin:/usr/sbin:/sbin).
MACOS_FFMPEG_FOLDERS = ("/opt/homebrew/bin", "/usr/local/bin")


def find_ffmpeg() -> tuple[Optional[str], str]:
    """(the ffmpeg executable, '') or (None, why there is none, for a message)."""
    # cmd.exe's `set SHARPEN_FFMPEG="C:\Program Files\...\ffmpeg.exe"` keeps the quotes.
    named = os.environ.get(ENV, "").strip()
    if len(named) > 1 and named[0] == named[-1] and named[0] in "\"'":
        named = named[1:-1].strip()
    if named:
        if os.path.isdir(named):   # ffmpeg's bin folder, as Windows builds unpack it
            found = shutil.which("ffmpeg", path=named)
            return (found, "") if found else (None, f"{ENV}={named} is a folder with no "
                                                    "ffmpeg in it")
        found = shutil.which(named)
        if found:
            return found, ""
        return None, f"{ENV}={named} is not an executable file"
    found = shutil.which("ffmpeg")
    if not found and sys.platform == "darwin":
        found = shutil.which("ffmpeg", path=os.pathsep.join(MACOS_FFMPEG_FOLDERS))
    return (found, "") if found else (None, "no ffmpeg was found on PATH")


def has_audio(source: str | os.PathLike, ffmpeg: Optional[str]) -> Optional[bool]:
    """Whether the video file `source` holds an audio stream; None where it cannot be told
    (no ffmpeg and not an MP4/MOV, or a file ffmpeg cannot read)."""
    codecs = audio_codecs(source, ffmpeg) if ffmpeg else None
    if codecs is not None:
        return bool(codecs)
    if Path(source).suffix.lower() in ISO_EXTS:
        return _iso_has_sound_track(Path(source))
    return None


def source_listing(source: str | os.PathLike, ffmpeg: str) -> Optional[str]:
    """ffmpeg's listing of the file `source` (its streams, their colours, its tags); None where
    ffmpeg did not run or did not finish. The one probe the sound's, the colour tags' and the
    timecode's copies read (runtime/colour_tags.py, runtime/clip_metadata.py)."""
    try:
        # Without an output ffmpeg lists the streams and exits 1: the listing is the answer.
        return _run([ffmpeg, "-hide_banner", "-nostdin", "-i", os.fspath(source)],
                    PROBE_TIMEOUT_S).stderr
    except (OSError, subprocess.SubprocessError):
        return None


def audio_codecs(source: str | os.PathLike, ffmpeg: str) -> Optional[list[str]]:
    """The codec of each of `source`'s audio streams; None where ffmpeg cannot read it."""
    listing = source_listing(source, ffmpeg)
    return _AUDIO_LINE.findall(listing) if listing and "Stream #" in listing else None


def _run(command: list[str], timeout: float) -> subprocess.CompletedProcess:
    # In a session of its own: a terminal's Ctrl-C goes to its whole process group, and ffmpeg
    # would stop the copy at the first one, which the run takes as "finish what you are doing"
    # (the next ones stop waiting for it, and subprocess then kills it). It dies with the run:
    # a killed run's copy would otherwise go on, an orphan, writing a file no one renames.
    # ffmpeg writes UTF-8 on every system, not Windows' ANSI code page (Python's default).
    return subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace",
                          timeout=timeout, **own_session())


def copy_failure(done: subprocess.CompletedProcess, out: Path) -> str:
    """'' where an ffmpeg copy wrote `out`, else why not: its last error line, or how it
    ended where it said nothing."""
    if done.returncode == 0 and out.exists() and out.stat().st_size:
        return ""
    lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip()]
    return lines[-1] if lines else exit_said(done.returncode)


def exit_said(code: int) -> str:
    """How a child process that said nothing ended, in words: "exit code 1", or the signal
    that killed it (subprocess's negative code, "exit code -25", was a number to look up)."""
    import signal
    if code >= 0:
        return f"exit code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        return f"killed by signal {-code}"
    # SIGKILL, unasked, is mostly the OOM killer's, which dmesg names; SIGXFSZ is a limit on
    # one file's size, which Python ignores and its children (ffmpeg) do not.
    return f"killed by {name}" + {"SIGKILL": ", as the OOM killer kills",
                                  "SIGXFSZ": ": the limit on one file's size, ulimit -f"
                                  }.get(name, "")


def _iso_has_sound_track(path: Path) -> Optional[bool]:
    """Whether an MP4/MOV file has a track whose handler is 'soun' (moov/trak/mdia/hdlr);
    None when the file cannot be read as one."""
    return read_moov(path, lambda f, moov: next(tracks(f, moov, b"soun"), None) is not None)




def mux_audio(video: Path, source: str | os.PathLike, out: Path, seconds: float,
              ffmpeg: str, codecs: Optional[list[str]], video_options: Sequence[str] = (),
              start: float = 0.0, metadata: Sequence[str] = ()
              ) -> tuple[str, bool, list[tuple[int, str, str, str]]]:
    """Write `out`: `video`'s pictures, copied, with `source`'s audio over its first `seconds`
    (the video's length: a run that stopped early, --max-frames, gets that much of it), from
    `start` seconds after the first frame's time on (a segment of a recording, --segment). The
    audio is copied where `out`'s container takes its codec (and an MP4's or a TS's players
    play it), else encoded in the container's default one (AAC in MP4, from PCM or Vorbis).
    Returns ('' or why not, in words (ffmpeg's last error line); whether the sound was copied
    as it is, not encoded; the audio streams left out, each (its number from 1, its codec, why,
    ".mov" where a QuickTime file would keep it, else ''): where the copy of all fails, each
    stream is tried alone, and those `out` takes go in).
    `codecs`: `audio_codecs` of `source`, which the caller probed
    already to know there is sound. `video_options`: output options for the copied pictures
    (their colour tags, runtime/colour_tags.py). `metadata`: options that carry `source`'s
    (input 1's) timecode and metadata (runtime/clip_metadata.py)."""
    # OpenCV's first frame is the video stream's first, while ffmpeg would copy the sound from
    # its own start: where the sound begins earlier, skip to the first frame's time; where
    # later, delay it as much.
    lead = _sound_lead(source, ffmpeg) + start
    shift = (["-ss", f"{lead:.6f}"] if lead > 0.0005
             else ["-itsoffset", f"{-lead:.6f}"] if lead < -0.0005 else [])
    inputs = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
              "-i", os.fspath(video), *shift, "-i", os.fspath(source), "-map", "0:v:0"]
    rest = ["-c:v", "copy", *video_options, *metadata, "-t", f"{seconds:.6f}"]
    try:
        sizes = 2 * os.path.getsize(video) + os.path.getsize(source)
    except OSError:
        sizes = 0
    limit = MUX_TIMEOUT_S + sizes / SLOW_DISK_BYTES_S
    ext = out.suffix.lower()

    def copy(streams: Optional[list[int]], sound: Sequence[str], cut: Sequence[str] = (),
             reasons: Optional[dict[str, str]] = None) -> tuple[str, bool]:
        """('' or why not, whether copied as it is) of the copy of the audio `streams` (None:
        all) whose codecs are `sound`; `cut`: options that end it early (a trial's);
        `reasons`: filled with each failed way's first error line, by "copy" and "encode"."""
        maps = (["-map", "1:a?"] if streams is None
                else [a for i in streams for a in ("-map", f"1:a:{i}")])
        tries: list[list[str]] = [["-c:a", "copy"], []]
        # An MPEG-TS given PCM keeps it as a private data stream, which no player plays.
        if ((ext in MP4_EXTS and any(c not in MP4_PLAYED for c in sound))
                or (ext in TRANSPORT_STREAM_EXTS and any(c.startswith("pcm_") for c in sound))):
            del tries[0]
        why = ""
        for audio in tries:
            try:
                done = _run([*inputs, *maps, *rest, *cut, *audio, os.fspath(out)], limit)
            except subprocess.TimeoutExpired:
                return f"{TIMED_OUT} {limit:.0f} s", False
            except (OSError, subprocess.SubprocessError) as exc:
                return str(exc), False
            why = copy_failure(done, out)
            if not why:
                return "", bool(audio)
            if reasons is not None:
                reasons["copy" if audio else "encode"] = _first_error(done) or why
        return why, False

    why, copied = copy(None, codecs or [])
    if not why or why.startswith(TIMED_OUT) or len(codecs or []) < 2:
        return why, copied, []
    # One stream that the container takes neither copied nor encoded (an iPhone's spatial
    # audio, APAC, which ffmpeg cannot decode, beside its AAC) failed the copy of all, and the
    # video had no sound: each is tried alone over a second, and those that go in are copied.
    trials: dict[int, dict[str, str]] = {}
    for i, codec in enumerate(codecs or []):
        trials[i] = {}
        if not copy([i], [codec], ["-t", "1"], trials[i])[0]:
            del trials[i]
    taken = [i for i in range(len(codecs or [])) if i not in trials]
    # All went in alone: the copy of all failed for none's sake (a disk that filled up), and
    # would again, after as long
    if not taken or not trials:
        return why, False, []
    why, copied = copy(taken, [(codecs or [])[i] for i in taken])
    if why:
        return why, copied, []
    return "", copied, [(i + 1, (codecs or [])[i],
                         "; ".join(f"{way}: {said}" for way, said in reasons.items()),
                         _kept_in_mov(source, i, out, ffmpeg, limit) if ext != ".mov" else "")
                        for i, reasons in trials.items()]


def _kept_in_mov(source: str | os.PathLike, stream: int, out: Path, ffmpeg: str,
                 limit: float) -> str:
    """".mov" where a QuickTime file takes `source`'s audio stream `stream` (from 0) as it is,
    as it takes an iPhone's APAC, Apple's own, which MP4 and MKV refuse; else ''. A second of it
    is copied next to `out`, and removed."""
    trial = out.with_suffix(".mov")
    try:
        done = _run([ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                     "-i", os.fspath(source), "-map", f"0:a:{stream}", "-c", "copy",
                     "-t", "1", os.fspath(trial)], limit)
        return "" if copy_failure(done, trial) else ".mov"
    except (OSError, subprocess.SubprocessError):
        return ""
    finally:
        trial.unlink(missing_ok=True)


def _first_error(done: subprocess.CompletedProcess) -> str:
    """ffmpeg's first error line, the cause (its last ones say only that the output could
    not be opened), without the "[mp4 @ 0x55d0...]" that names its part (a Windows build's
    pointer has no 0x: "[mp4 @ 000001682C...]")."""
    for line in done.stderr.splitlines():
        line = re.sub(r"^\[[^]]*@ (0x)?[0-9a-fA-F]+\]\s*", "", line.strip())
        if line:
            return line
    return ""


NO_TIME = -(1 << 63)   # ffmpeg's AV_NOPTS_VALUE, a packet without a time


def _sound_lead(source: str | os.PathLike, ffmpeg: str) -> float:
    """Seconds by which `source`'s sound, as the copy reads it, starts before its first video
    frame (negative: after it); 0 when ffmpeg cannot tell. The copy reads the sound alone,
    which ffmpeg times from the file's start in MP4/MOV (an edit list's delay kept) but from
    its own first packet in MPEG-TS (a cut from a broadcast, whose first frame may come a
    second after the sound's, or before it). So the sound's start is read as the copy reads
    it, and the frame placed against it by the two streams' own timestamps (-copyts), which
    neither container's rule touches. framemd5 lists packets in every ffmpeg version (the
    stream listing shows a stream's start only in recent ones)."""
    sound = _first_time(source, ffmpeg, "a:0")
    sound_own = _first_time(source, ffmpeg, "a:0", copyts=True)
    frame_own = _first_time(source, ffmpeg, "v:0", copyts=True)
    if sound is None or sound_own is None or frame_own is None:
        return 0.0
    return sound + frame_own - sound_own


def video_lead(path: str | os.PathLike, ffmpeg: str) -> float:
    """Seconds from `path`'s start, the earliest first time of its streams, from which ffmpeg's
    concat demuxer times the file, to its first video frame; 0 where ffmpeg cannot tell. An
    MPEG-TS keeps an AAC sound's first packet, its encoder delay, one packet (23 ms) before the
    first frame, which MP4's edit list and MKV drop."""
    try:
        done = _run([ffmpeg, "-hide_banner", "-nostdin", "-copyts", "-i", os.fspath(path),
                     "-map", "0:v:0", "-c", "copy", "-frames:v", "1", "-f", "framemd5", "-"],
                    PROBE_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return 0.0
    start = re.search(r"^\s*Duration: .*?, start: (-?\d+\.\d+)", done.stderr, re.M)
    tb = re.search(r"^#tb 0: (\d+)/(\d+)$", done.stdout, re.M)
    first = re.search(r"^0,\s*-?\d+,\s*(-?\d+),", done.stdout, re.M)
    if (done.returncode or not start or not tb or not first or not int(tb.group(2))
            or int(first.group(1)) == NO_TIME):
        return 0.0
    return max(0.0, int(first.group(1)) * int(tb.group(1)) / int(tb.group(2))
               - float(start.group(1)))


def _first_time(source: str | os.PathLike, ffmpeg: str, stream: str,
                copyts: bool = False) -> Optional[float]:
    """The time of the first packet of `source`'s `stream` (v:0, a:0), read alone, in seconds
    (`copyts`: the file's own timestamp); None where ffmpeg cannot read it. One stream at a
    time: ffmpeg ends a copy at the first stream that has its -frames."""
    try:
        done = _run([ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error",
                     *(["-copyts"] if copyts else []), "-i", os.fspath(source),
                     "-map", f"0:{stream}", "-c", "copy", f"-frames:{stream[0]}", "1",
                     "-f", "framemd5", "-"], PROBE_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    tb = re.search(r"^#tb 0: (\d+)/(\d+)$", done.stdout, re.M)
    first = re.search(r"^0,\s*-?\d+,\s*(-?\d+),", done.stdout, re.M)
    # An AVI holds no presentation times: with B-frames ffmpeg prints its "none" (INT64_MIN),
    # which read as a time delayed the sound past what ffmpeg accepts, and the copy failed.
    if (done.returncode or not tb or not first or not int(tb.group(2))
            or int(first.group(1)) == NO_TIME):
        return None
    return int(first.group(1)) * int(tb.group(1)) / int(tb.group(2))
