"""Frame sources: camera, V4L2 device, video file, URL, GStreamer pipeline, images, synthetic.

`open_source(spec)` classifies the string and returns a `Source`; iterating a source yields
`Frame`s. `live` decides the pipeline's policy: live sources (cameras, streams) keep only the
newest frame, files are processed losslessly.

Each kind lives in a module of its own, its names imported here too: `source_base` (Source,
Frame, SourceError), `source_spec` (spec_kind, shown_url), `image_sources`, `url_image`,
`video_source` (with `transport_stream`), `memory_sources` (synthetic, arrays).
"""
from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Optional, Sequence, Union

import cv2

from .console import count
from .image_sources import (ImageSource as ImageSource, Layout as Layout,
                            _folder_source, _image_list, _maybe_live,
                            frame_names as frame_names, glob_root, name_order,
                            refuse_live_images as refuse_live_images,
                            warn_not_images as warn_not_images)
from .imageio import IMAGE_EXTS, SIDECAR_EXTS, VIDEO_EXTS, shown_path, why_not_a_file
from .memory_sources import ArraySource as ArraySource, SyntheticSource as SyntheticSource
from .options import option
from .pipe_io import StdinSource as StdinSource, is_stdio
from .source_base import (Frame as Frame, Note as Note, Source as Source,
                          SourceError as SourceError, SourceLost as SourceLost)
from .source_spec import (_SYNTH, RAW_STDIN, is_glob, pipeline_reads_file as pipeline_reads_file,
                          shown_url as shown_url, spec_kind as spec_kind)
from .transport_stream import TRANSPORT_STREAM_EXTS as TRANSPORT_STREAM_EXTS
from .url_image import (UrlImageSource as UrlImageSource, _fetch_image,
                        url_image_name as url_image_name)
from .video_source import (ESTIMATED_COUNT_EXTS as ESTIMATED_COUNT_EXTS,
                           GUESSED_TIMES_EXTS as GUESSED_TIMES_EXTS,
                           LIVE_HOLD_S as LIVE_HOLD_S, MAX_DAMAGED_READS as MAX_DAMAGED_READS,
                           MAX_FPS as MAX_FPS, MIN_FPS as MIN_FPS,
                           NO_DECODABLE_FRAMES as NO_DECODABLE_FRAMES,
                           STREAM_TIMEOUT_S as STREAM_TIMEOUT_S, VideoSource as VideoSource)
from .walk import glob_files


def _spelled_rate(spec: str, typed: Optional[str], without: str, flags: bool) -> float:
    """The @FPS of raw:WxH@FPS or synthetic[:WxH]@FPS (0 where left out), refused as --fps's
    is outside MIN_FPS to MAX_FPS: 0.0001 waited hours for a frame or failed the video
    writer, 100000 wrote a video no player keeps up with. `without`: the spelling with none."""
    rate = float(typed or 0)
    if rate and not MIN_FPS <= rate <= MAX_FPS:
        raise SourceError(f"{option('source', spec, flags)}: its rate must be "
                          f"{MIN_FPS:g} to {MAX_FPS:g} fps, or left out ({without})")
    return rate


def open_source(spec: str, width: int = 1920, height: int = 1080, fps: float = 0.0,
                live: Optional[bool] = None, reconnect_attempts: int = 5,
                reconnect_delay: float = 0.5, timeout: Optional[float] = None,
                note: Optional[Note] = None, flags: bool = False,
                own_files: Sequence[Union[str, os.PathLike]] = ()) -> Source:
    """Open a source from its command-line spelling.

    "0" camera index; "/dev/video0" V4L2 device; "rtsp://..", "http://.." stream (an http(s)
    URL whose path names an image file, https://host/photo.jpg, is read as that image unless
    it answers with a stream); a string
    containing "!" a GStreamer pipeline (e.g. nvarguscamerasrc ! ... ! appsink); a video file;
    an image file, folder or glob; "synthetic[:WxH][@FPS]"; "-" Y4M video on stdin;
    "raw:WxH[@FPS]" raw BGR frames on stdin (raw_frames). width/height/fps apply to cameras,
    timeout (seconds to open or read; 0: FFmpeg's own) to URLs, and to stdin the seconds it
    may give nothing before it counts as lost (default and 0: no bound).
    live overrides the policy (None: live for cameras and streams, lossless for files).
    note takes informational lines (a URL found to be a recording, a source reconnected);
    default: none (`sharpen run` prints them as `note: ...`). flags: messages name `sharpen
    run`'s flags (--source, --fps, --live), not run_stream's keywords (source, fps, live).
    own_files: the run's own files (its --stats file), left out of a folder source unsaid.
    """
    spec = str(spec).strip()
    if not spec:
        raise SourceError(f"empty {option('source', flags=flags)}")
    if is_stdio(spec):   # Y4M piped in; a pipe waits for its reader: lossless unless --live
        return StdinSource(live=bool(live), flags=flags, note=note, timeout=timeout)
    if m := RAW_STDIN.match(spec):   # raw BGR frames piped in, of the size spelled
        w, h = int(m.group(1)), int(m.group(2))
        if w < 1 or h < 1:
            raise SourceError(f"{option('source', spec, flags)}: a frame size must be at "
                              "least 1x1")
        rate = _spelled_rate(spec, m.group(3), f"raw:{w}x{h}", flags)
        return StdinSource(live=bool(live), flags=flags, note=note, timeout=timeout,
                           raw=(w, h, rate, spec))
    spelt = ("raw frames on stdin are spelt raw:WxH[@FPS], their width, height and rate "
             "(raw:1280x720@25)")
    if spec[:4].lower() == "raw:" and not os.path.exists(spec):   # else "source not found"
        raise SourceError(f"{option('source', spec, flags)}: {spelt}")
    if spec.lower() == "raw" and not os.path.exists(spec):   # a folder, or raw:WxH meant
        raise SourceError(f"source not found: {spec}; {spelt}")
    cam = dict(width=width, height=height, fps=fps, reconnect_attempts=reconnect_attempts,
               reconnect_delay=reconnect_delay, note=note, flags=flags)

    kind = spec_kind(spec)
    if kind == "synthetic":
        m = _SYNTH.match(spec)
        w, h = (int(m.group(1)), int(m.group(2))) if m.group(1) else (width, height)
        if w < 1 or h < 1:   # else an 'empty frame' error from deep in the pipeline
            raise SourceError(
                f"{option('source', spec, flags)}: a synthetic source's frames must be at "
                f"least 1x1, got {w}x{h}" + ("" if m.group(1) else
                                             f" (from {option('width', flags=flags)} and "
                                             f"{option('height', flags=flags)})"))
        fps = _spelled_rate(spec, m.group(3), spec.split("@")[0], flags)
        # Unthrottled, live dropped all but the frames the model took: thousands "dropped" in
        # a short run and a written video padded with repeats of the few it kept.
        return SyntheticSource(spec, w, h, fps, fps > 0 if live is None else live)
    if kind == "camera":
        # OpenCV takes a C int (its refusal is a page of overloads), and int() refuses over
        # 4300 digits (a ValueError): a long spelling is refused before either sees it.
        digits = spec.lstrip("0") or "0"
        if len(digits) > 10 or int(digits) > 2**31 - 1:
            shown = (digits if len(digits) <= 20
                     else f"{digits[:12]}... (a number of {len(digits)} digits)")
            raise SourceError(f"no camera with index {shown}: a camera index is a small "
                              "number (0 for the first camera)")
        return VideoSource(spec, int(spec), live=True if live is None else live, kind="camera",
                           **cam)
    if kind == "v4l2":
        if not os.path.exists(spec):
            raise SourceLost(f"camera device not found: {spec}")   # unplugged, as a rule
        return VideoSource(spec, spec, cv2.CAP_V4L2, live=True if live is None else live,
                           kind="v4l2", **cam)
    if kind == "gstreamer":
        if not _gstreamer_available():
            raise SourceError(_no_gstreamer(spec, flags))
        return VideoSource(shown_url(spec), spec, cv2.CAP_GSTREAMER,
                           live=True if live is None else live, kind="gstreamer", **cam)
    if kind == "stream":
        if (name := url_image_name(spec)) is not None:
            data = _fetch_image(spec, timeout, flags)
            if data is not None:   # else a stream after all, which FFmpeg reads
                return _maybe_live(UrlImageSource(shown_url(spec), data, name), live, flags)
        src = VideoSource(shown_url(spec), spec, cv2.CAP_FFMPEG,
                          live=True if live is None else live, kind="stream", timeout=timeout,
                          **cam)
        if live is None and (src.frame_count or src.count_found_short):
            # A recording served over HTTP: as live, most of its frames were dropped (it is
            # read faster than real time) and the rest repeated.
            src.live = False
            length = (count(src.frame_count, 'frame') if src.frame_count
                      else "a length (a frame count found short)")
            src.note(f"{src.spec!r} declares {length}: a recording, so every frame "
                     f"is processed ({option('live', True, flags)} to drop frames as for a live "
                     "stream)")
        return src

    p = Path(spec)
    if p.is_dir():
        return _maybe_live(_folder_source(spec, p, flags, own_files), live, flags)
    if is_glob(spec):
        found = glob_files(spec)
        images = _image_list(found)
        # Sorted as the images are: glob gives the file system's order, not one from run to run
        videos = [f.name for f in sorted(map(Path, found), key=name_order)
                  if f.suffix.lower() in VIDEO_EXTS]
        if not images and videos:   # one run reads one video: say so, not "no images"
            raise SourceError(f"{spec!r} matches {count(len(videos), 'video file')} "
                              f"({', '.join(videos[:3])}) and no images: a run reads one video; "
                              f"pass each as {option('source', flags=flags)} "
                              f"({'e.g. a shell loop' if flags else 'a run_stream call each'})")
        if not images and "{" in spec:
            raise SourceError(f"no images match {spec!r}: braces are not glob syntax here (the "
                              "shell expands them unquoted); give a folder or a '*' pattern")
        if images:   # a phone's .heic or a camera's RAW in a library, left out unsaid
            warn_not_images(spec, [f.name for f in sorted(map(Path, found), key=name_order)
                                   if f.suffix.lower() not in IMAGE_EXTS | SIDECAR_EXTS
                                   and f.is_file()], "a glob source")
        src = ImageSource(spec, images, glob_root(spec))
        src.library = True
        return _maybe_live(src, live, flags)
    if not p.exists():
        if p.is_symlink():   # exists() follows it: a loop or a gone target is no file
            raise SourceError(f"{shown_path(spec)}: {why_not_a_file(p)}")
        raise SourceError(f"source not found: {spec}")
    if "*" in spec or "?" in spec:   # brackets are common in names ("clip [1080p].mp4")
        _warn_also_a_pattern(spec)
    if kind == "images":
        return _maybe_live(ImageSource(spec, [p]), live, flags)
    return VideoSource(spec, str(p), cv2.CAP_ANY, live=bool(live), kind="video", **cam)


def _warn_also_a_pattern(spec: str) -> None:
    """A file whose name is also a pattern that matches others ("*.png" beside a.png) is read,
    as a name that is there is; said, as the pattern may have been meant."""
    others = sorted((f for f in map(Path, glob_files(spec)) if f != Path(spec)), key=name_order)
    if others:
        from .warn import warn
        more = ", ..." if len(others) > 3 else ""
        warn(f"{spec!r} is read as the file of that name; as a pattern it would also match "
             f"{count(len(others), 'file')} ({', '.join(f.name for f in others[:3])}{more}): "
             "give their folder, or rename the file, to read them all", stacklevel=3)


def _no_gstreamer(pipeline: str, flags: bool) -> str:
    """Why a GStreamer pipeline does not open here, and the ways round it: an OpenCV built
    with GStreamer, or the pipeline run by gst-launch-1.0 with its video piped in as Y4M."""
    # The pipeline's own source and decoding, its appsink (OpenCV's end) replaced.
    head = re.split(r"!\s*appsink\b", shown_url(pipeline))[0].strip().rstrip("!").strip()
    if not re.search(r"!\s*videoconvert$", head):
        head += " ! videoconvert"   # y4menc takes planar YUV, not the BGR appsink was given
    piped = (f"gst-launch-1.0 -q {shell_pipeline(head)} ! y4menc ! fdsink | sharpen run "
             "--source - ..." if flags else "")
    return ("this OpenCV build has no GStreamer support (cv2.getBuildInformation() lists "
            "none), which a pipeline source needs; use an OpenCV built with it (on "
            "Jetson the system OpenCV from JetPack)"
            + (f", or run the pipeline with gst-launch-1.0 and pipe its video in as Y4M: "
               f"{piped}" if flags else
               ", or read the video as Y4M from stdin (source='-')"))


def shell_pipeline(pipeline: str) -> str:
    """A GStreamer pipeline as gst-launch-1.0's words for a shell: each quoted where the shell
    would read it otherwise (the caps `video/x-raw(memory:NVMM),...` of a Jetson's camera: a
    syntax error at the parenthesis), `!` left bare as GStreamer's own examples write it.
    gst-launch-1.0 escapes each word's spaces as it joins them, so `location="a b.mkv"` stays
    one value. A pipeline whose quotes do not pair is given as it was."""
    try:
        words = shlex.split(pipeline)
    except ValueError:
        return pipeline
    return " ".join(w if w == "!" else shlex.quote(w) for w in words)


def _gstreamer_available() -> bool:
    info = cv2.getBuildInformation()
    m = re.search(r"GStreamer:\s*(\w+)", info)
    return bool(m and m.group(1).upper() == "YES")
