"""The codecs a video --out is written in on request (`sharpen run --codec`), beyond what
OpenCV's writer encodes (mp4v at a fixed quality, FFV1).

H.264, HEVC and ProRes are encoded by an ffmpeg executable (runtime/audio.py `find_ffmpeg`):
the sharpened frames are piped to it raw (BGR, 8-bit), so nothing but ffmpeg's own lookahead
is held in memory and no intermediate file is written, however long the recording. ffmpeg
converts them to YUV by the matrix players take the size in (BT.709 for HD, BT.601 below)
and tags the stream so; the sound, timecode and creation time are then copied in by the same
stream copies as OpenCV's videos get (runtime/video_sink.py).
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .options import FILE_PRESET, LIVE_PRESET, PRESETS, option
from .sinks import SinkError


@dataclass(frozen=True)
class Codec:
    name: str                   # as --codec takes it
    said: str                   # as the run's closing line says it
    encoder: str                # ffmpeg's encoder; '' for OpenCV's writer
    exts: tuple[str, ...]       # the containers that hold it
    pix_fmt: str = ""           # what ffmpeg encodes (sets the chroma and bit depth)
    crf: Optional[int] = None   # the default --crf (None: the codec takes none)
    crf_max: int = 51
    args: tuple[str, ...] = ()  # ffmpeg's encoder options beyond the quality and speed
    presets: bool = False       # takes x264/x265's speed presets (--encoder-preset)
    install: str = ""           # what to install where ffmpeg lacks the encoder


# x264's CRF 18 and x265's 20 are the usual "visually lossless" settings (HandBrake's RF 18-20
# for HD); ProRes 422 HQ (profile 3) is what an NLE's editor asks for, its rate set by the
# profile. mp4v and FFV1 are OpenCV's (the default and --lossless).
CODECS: dict[str, Codec] = {c.name: c for c in (
    Codec("h264", "H.264 (libx264)", "libx264", (".mp4", ".mov", ".mkv"), "yuv420p", 18,
          presets=True, install="an ffmpeg built with libx264 (most are: "
          "apt install ffmpeg, brew install ffmpeg)"),
    Codec("hevc", "HEVC (libx265)", "libx265", (".mp4", ".mov", ".mkv"), "yuv420p", 20,
          args=("-x265-params", "log-level=error"), presets=True,
          install="an ffmpeg built with libx265 (apt install ffmpeg, brew install ffmpeg)"),
    Codec("prores", "ProRes 422 HQ (prores_ks)", "prores_ks", (".mov", ".mkv"),
          "yuv422p10le", args=("-profile:v", "3", "-vendor", "apl0"),
          install="an ffmpeg with prores_ks (any full build)"),
    Codec("ffv1", "FFV1 (lossless)", "", (".mkv", ".avi")),
    Codec("mp4v", "MPEG-4 Part 2 (mp4v)", "", (".mp4", ".mov", ".mkv", ".avi")),
)}
CHROMA = {"yuv420p": ("4:2:0", 8), "yuv422p10le": ("4:2:2", 10)}


def encoded_by_ffmpeg(codec: Optional[str]) -> bool:
    return codec is not None and bool(CODECS[codec].encoder)


def crf_used(codec: Optional[str], crf: Optional[int]) -> Optional[int]:
    """The CRF `codec` is encoded at with --crf `crf` (None: the codec takes none)."""
    c = CODECS.get(codec) if codec else None
    if c is None or c.crf is None:
        return None
    return c.crf if crf is None else crf


def preset_used(codec: Optional[str], preset: Optional[str], live: bool) -> Optional[str]:
    """The speed preset `codec` is encoded at with --encoder-preset `preset` (None: the codec
    takes none), for a `live` source or a file."""
    c = CODECS.get(codec) if codec else None
    if c is None or not c.presets:
        return None
    return preset or (LIVE_PRESET if live else FILE_PRESET)


def codec_problems(codec: Optional[str], crf: Optional[int], output: Optional[str | Path],
                   flags: bool = False, lossless: bool = False, resume: bool = False,
                   preset: Optional[str] = None) -> list[str]:
    """What is wrong with asking `codec` (and `crf`, `preset`) for `output`, one message each;
    [] when nothing is. Asked before anything is opened: a usage error, not one after the
    model ran."""
    from .imageio import VIDEO_EXTS
    from .pipe_io import is_stdio
    if codec is None:
        return [f"{option(name, value, flags)} sets the {what} of --codec h264 or hevc; give "
                "one of them" for name, value, what in (("crf", crf, "quality"),
                                                       ("encoder_preset", preset, "speed"))
                if value is not None]
    if codec not in CODECS:
        return [f"{option('codec', codec, flags)}: unknown codec; one of "
                f"{', '.join(CODECS)}"]
    c = CODECS[codec]
    asked = option("codec", codec, flags)
    ext = Path(output).suffix.lower() if output and not is_stdio(output) else ""
    if not output or is_stdio(output) or ext not in VIDEO_EXTS:
        what = ("no output" if not output else "Y4M on stdout" if is_stdio(output)
                else f"{output}, which is not a video file")
        return [f"{asked} applies to a video {option('output', flags=flags)} "
                f"({', '.join(c.exts)}), not to {what}"]
    problems = []
    if ext not in c.exts:
        problems.append(f"{asked}: {ext} does not hold {c.said}; give "
                        f"{option('output', Path(output).with_suffix(c.exts[0]), flags)} "
                        f"(or {', '.join(c.exts[1:])})")
    if lossless and codec != "ffv1":
        problems.append(f"{asked} and {'--lossless' if flags else 'lossless=True'} ask for "
                        "two codecs (--lossless is --codec ffv1); give one")
    if crf is not None:
        if c.crf is None:
            problems.append(f"{option('crf', crf, flags)} sets the quality of h264 and hevc; "
                            f"{c.said} takes none")
        elif not 0 <= crf <= c.crf_max:
            problems.append(f"{option('crf', flags=flags)} must be 0 to {c.crf_max} (lower is "
                            f"better, {c.crf} by default), got {crf}")
    if preset is not None:
        if not c.presets:
            problems.append(f"{option('encoder_preset', preset, flags)} sets the speed of "
                            f"h264 and hevc; {c.said} takes none")
        elif preset not in PRESETS:
            problems.append(f"{option('encoder_preset', preset, flags)}: unknown preset; one "
                            f"of {', '.join(PRESETS)}")
    if c.encoder and not problems:
        why = encoder_missing(c)
        if why:
            problems.append(f"{asked}: {why}")
    return problems


def encoder_missing(codec: Codec) -> str:
    """'' where the ffmpeg found has `codec`'s encoder, else why not and what to install."""
    from .audio import ENV, _run, find_ffmpeg
    ffmpeg, why = find_ffmpeg()
    if ffmpeg is None:
        return (f"{codec.said} is encoded by ffmpeg, and {why}: install {codec.install}, or "
                f"set {ENV} to an ffmpeg executable; without --codec OpenCV writes mp4v")
    try:
        done = _run([ffmpeg, "-hide_banner", "-nostdin", "-encoders"], 30)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{ffmpeg} did not run ({exc})"
    if f" {codec.encoder} " not in done.stdout:
        return (f"{ffmpeg} has no {codec.encoder} encoder: install {codec.install}, or set "
                f"{ENV} to one that has it")
    return ""


def colour_names(size: tuple[int, int], primaries: Optional[str] = None,
                 transfer: Optional[str] = None) -> tuple[str, str, str]:
    """(matrix, primaries, transfer) in ffmpeg's names for a video of `size`: BT.709 for what
    players take as HD, BT.601 (smpte170m) below, the source's own primaries and transfer
    where it says SDR ones."""
    from .colour_tags import players_guess_hd
    family = "bt709" if players_guess_hd(size) else "smpte170m"
    return family, primaries or family, transfer or family


def source_read_as_bt601(matrix: Optional[str], size: Optional[tuple[int, int]]) -> bool:
    """Whether a video file source whose stream says `matrix` (None: untagged) at `size` was
    read by OpenCV as BT.601 while players show it as BT.709: an untagged HD clip."""
    from .colour_tags import players_guess_hd
    return matrix is None and size is not None and players_guess_hd(size)


def encode_command(ffmpeg: str, codec: Codec, crf: Optional[int], size: tuple[int, int],
                   fps: float, out: Path, colours: Sequence[str],
                   read_by: Optional[str] = None, preset: Optional[str] = None,
                   threads: Optional[int] = None) -> list[str]:
    """ffmpeg's command that encodes raw BGR frames of `size` from stdin into `out`, tagged
    with `colours` (matrix, primaries, transfer). `read_by`: the matrix the frames were read
    from YUV by, where it is not the one tagged (an untagged HD source's, see
    `source_read_as_bt601`), so that the source's YUV is written back as it was. `preset`: the
    codec's speed preset (None: `medium`); `threads`: the encoder's (None: ffmpeg's own, one
    a core and more)."""
    matrix, primaries, transfer = colours
    convert = read_by or matrix
    rate = Fraction(fps).limit_denominator(1001)
    # The even size 4:2:0 and 4:2:2 take (the sink warns of the column or row dropped).
    scale = (f"crop=trunc(iw/2)*2:trunc(ih/2)*2,scale=out_color_matrix="
             f"{'bt709' if convert == 'bt709' else 'bt601'}:out_range=tv:"
             # swscale's default rounding put a green of BGR 40,180,60 back at 37,178,56
             f"flags=accurate_rnd+full_chroma_int,format={codec.pix_fmt},"
             # The frames' own tags, which recent ffmpeg writes over the -color_* options
             f"setparams=colorspace={matrix}:color_primaries={primaries}:"
             f"color_trc={transfer}:range=tv")
    quality = ["-crf", str(crf_used(codec.name, crf))] if codec.crf is not None else []
    speed = ["-preset", preset or FILE_PRESET] if codec.presets else []
    # --threads bounds the encoder too: x264 alone took more than a core from the model.
    cores = ["-threads", str(threads)] if threads else []
    args = list(codec.args)
    if threads and "-x265-params" in args:
        # -threads sets x265's frame threads alone; its pool (wavefront rows, lookahead) took a
        # thread a core whatever it said, until told its size.
        args[args.index("-x265-params") + 1] += f":pools={threads}"
    # Apple's players open HEVC in MP4/MOV only under the hvc1 tag (ffmpeg's default is hev1).
    tag = (["-tag:v", "hvc1"] if codec.name == "hevc" and out.suffix.lower() in (".mp4", ".mov")
           else [])
    return [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{size[0]}x{size[1]}",
            "-framerate", f"{rate.numerator}/{rate.denominator}", "-i", "-",
            "-vf", scale, "-c:v", codec.encoder, *args, *speed, *cores, *quality, *tag,
            "-colorspace", matrix, "-color_primaries", primaries, "-color_trc", transfer,
            "-color_range", "tv", "-an",
            # Each packet (an .mkv's cluster, about 5 s) to disk as the muxer gives it, not
            # in 256 KB blocks: a still scene's few KB a second left minutes of a recording
            # cut by a kill or a power cut in ffmpeg's buffer, lost.
            "-flush_packets", "1", os.fspath(out)]


class FFmpegEncoder:
    """An ffmpeg process encoding the frames written to it, in cv2.VideoWriter's manner
    (`isOpened`, `write`, `release`). A failure is a SinkError naming ffmpeg's reason; at
    `release` it is kept in `failure` ('' when the video was written whole)."""

    def __init__(self, command: list[str], out: Path, flags: bool = False) -> None:
        from .die_with_run import own_session
        self.out, self.flags, self.failure = out, flags, ""
        self._log = tempfile.TemporaryFile()
        # In a session of its own, as the sound's copy is (runtime/audio.py `_run`): a
        # terminal's Ctrl-C, which the run takes as "finish what you are doing", would stop
        # ffmpeg before the frames it holds are written; it dies with a killed run.
        self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                      stderr=self._log, **own_session())

    def isOpened(self) -> bool:  # noqa: N802 - cv2.VideoWriter's name
        # Started: an ffmpeg that refused its options at once is said in its own words by
        # the first `write` (not by OpenCV's reasons, which a closed writer gets).
        return True

    def write(self, frame: np.ndarray) -> None:
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).data)
        except (BrokenPipeError, OSError, ValueError):
            self._proc.wait()
            raise SinkError(f"{option('output', self.out, self.flags)}: ffmpeg stopped "
                            f"encoding ({self._said()})") from None

    def release(self) -> None:
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
        code = self._proc.wait()
        if code:
            self.failure = self._said()
        self._log.close()

    @property
    def killed(self) -> bool:
        """Whether ffmpeg was ended by a signal (the OOM killer, a kill), not by an error of
        its own: what it wrote stops at the cut, as a killed run's video does."""
        return self._proc.returncode is not None and self._proc.returncode < 0

    def _said(self) -> str:
        code = self._proc.returncode
        self._log.seek(0)
        lines = [ln.strip() for ln in self._log.read().decode(errors="replace").splitlines()
                 if ln.strip()]
        if lines:
            return lines[-1]
        from .audio import exit_said
        return exit_said(code) if code is not None else "exit code None"


FOURCCS = {"h264": "avc1", "hevc": "hvc1", "prores": "apch"}


def encoding(codec: str, crf: Optional[int], matrix: str, audio_streams: int,
             audio_copied: bool, timecode: Optional[str], preset: Optional[str] = None) -> dict:
    """What ffmpeg encoded, in the keys of VideoFileSink.encoding (--stats `video`)."""
    c = CODECS[codec]
    chroma, depth = CHROMA[c.pix_fmt]
    quality = f"CRF {crf_used(codec, crf)}" if c.crf is not None else "profile HQ"
    if c.presets:
        quality += f", preset {preset or FILE_PRESET}"
    return {"codec": c.encoder.removeprefix("lib").removesuffix("_ks").replace("x265", "hevc")
            .replace("x264", "h264"), "fourcc": FOURCCS[codec], "bit_depth": depth,
            "chroma": chroma, "matrix": "bt709" if matrix == "bt709" else "bt601",
            "range": "limited", "tagged": True, "audio_streams": audio_streams,
            "audio_copied": audio_copied, "timecode": timecode, "quality": quality,
            "preset": preset or FILE_PRESET if c.presets else None}


def pictures_said(written: dict) -> str:
    """`encoding`'s pictures in words: `H.264 (libx264), 8-bit 4:2:0, BT.709 limited range
    (tagged), CRF 18, preset medium` (the sound and timecode are said as OpenCV's videos' are)."""
    name = CODECS[next(k for k, v in FOURCCS.items() if v == written["fourcc"])].said
    matrix = "BT.709" if written["matrix"] == "bt709" else "BT.601"
    return (f"{name}, {written['bit_depth']}-bit {written['chroma']}, {matrix} "
            f"{written['range']} range (tagged), {written['quality']}")
