"""The streaming pipeline: capture -> (pre, infer, post) -> output, each in its own thread.

Queues between stages are bounded, so memory stays flat whatever the source does. Two policies:
- lossless (files): a full queue blocks the producer; every frame is processed, in order.
- live (cameras, streams): the capture queue keeps only the newest frames; older ones are
  dropped and counted, so latency stays bounded when the model is slower than the camera.
The output stage runs in the calling thread: GUI toolkits want windows driven from one thread,
and signals are delivered there.
"""
from __future__ import annotations

import inspect
import math
import os
import signal
import stat
import sys
import threading
import time
from collections import deque
from contextlib import ExitStack
from dataclasses import dataclass, fields, replace
from difflib import get_close_matches
from itertools import chain
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

from .audio import find_ffmpeg
from .backends import BACKEND_BY_SUFFIX, Backend, check_providers, load_backend
from .cli_errors import drop_gone_outputs, signals_to_take
from .compare_sink import CompareSink
from .console import count, unread
from .host import check_threads
from .image_sink import QUALITY_EXTS, ImageSink
from .imageio import IMAGE_EXTS
from .locale_text import utf8_name
from .options import (AUTO_TILE_PIXELS, WHOLE_FRAME_BYTES_PER_PIXEL, is_number, option,
                      video_rate)
from .output_paths import make_folder, same_file
from . import resume as resume_mod
from .pipe_io import StdinSource, StdoutSink, is_stdio
from .prepost import FrameProcessor, Timings, auto_tile, beyond_whole
from .run_lock import LinkRefused, RunLocked, output_lock
from .sinks import (MultiSink, NullSink, Sink, SinkError, output_sink, raised_first,
                    refuse_unwritten_format)
from .sources import (MAX_FPS, MIN_FPS, ArraySource, Frame, ImageSource, Note, Source,
                      SourceError, SourceLost, VideoSource, open_source, refuse_live_images,
                      shown_url, spec_kind)
from .service_notify import EngineWork, ServiceNotifier
from .source_spec import is_glob, source_label
from .stats import (LiveReporter, Stats, StatsFile, stats_file_or_none, stats_paths,
                    write_stats_atomic)
from .tiling import tiling_warnings
from .segment_sink import SegmentSink, check_segment, segments_shown, set_aside_after
from .video_codecs import (FILE_PRESET, codec_problems, crf_used, encoded_by_ffmpeg,
                           preset_used)
from .video_sink import VideoFileSink, refuse_lossless
from .warn import warn
from .walk import glob_reaches
from .window_sink import WindowSink

_END = object()  # end-of-stream marker passed down the queues


# The decoded source frames a lossless queue holds at most (at least one, and at most its
# count): four 4K frames fit (100 MB), one 24 MP photo (72 MB) or 8K frame; four of those in
# each queue took 600 MB more than a tiled photo library run needed.
QUEUE_BYTES = 128 << 20


def _frame_bytes(item: Any) -> int:
    """The bytes of an item's source frame: a Frame's, or a (Frame, result) pair's."""
    frame = item[0] if isinstance(item, tuple) and item else item
    return getattr(getattr(frame, "image", None), "nbytes", 0)


class FrameQueue:
    """Bounded FIFO. With drop_oldest, put never blocks: the oldest item is discarded instead.
    Without, it holds `maxsize` items, and fewer where their source frames pass QUEUE_BYTES."""

    def __init__(self, maxsize: int, drop_oldest: bool) -> None:
        self.maxsize, self.drop_oldest = max(1, maxsize), drop_oldest
        self._items: deque = deque()
        self._bytes = 0
        self._cond = threading.Condition()

    def _full(self, item: Any) -> bool:
        return len(self._items) >= self.maxsize or (
            not self.drop_oldest and bool(self._items)
            and self._bytes + _frame_bytes(item) > QUEUE_BYTES)

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def put(self, item: Any, stop: threading.Event) -> int:
        """Enqueue; returns the number of items dropped to make room (live policy). In lossless
        mode a full queue blocks until there is room, or returns without enqueueing once `stop`
        is set (the consumer then sees the end of the stream)."""
        with self._cond:
            dropped = 0
            while self._full(item):
                if self.drop_oldest:
                    self._bytes -= _frame_bytes(self._items.popleft())
                    dropped += 1
                elif stop.is_set():
                    return 0
                else:
                    self._cond.wait(0.05)
            self._items.append(item)
            self._bytes += _frame_bytes(item)
            self._cond.notify_all()
            return dropped

    def get(self, stop: threading.Event) -> Any:
        """Next item, or _END once `stop` is set and nothing is queued."""
        return self.get_fresh(stop, None)[0]

    def get_fresh(self, stop: threading.Event, max_age: Optional[float]) -> tuple[Any, int]:
        """Next item, skipping frames captured more than `max_age` seconds ago while a newer
        one is queued (None: skip none); returns (item, frames skipped)."""
        with self._cond:
            while not self._items:
                if stop.is_set():
                    return _END, 0
                self._cond.wait(0.05)
            skipped = 0
            if max_age is not None:
                oldest = time.perf_counter() - max_age
                while (len(self._items) > 1 and self._items[1] is not _END
                       and getattr(self._items[0], "t_capture", oldest) < oldest):
                    self._bytes -= _frame_bytes(self._items.popleft())
                    skipped += 1
            item = self._items.popleft()
            self._bytes -= _frame_bytes(item)
            self._cond.notify_all()
            return item, skipped


WORKER_NAMES = ("capture", "infer")   # the pipeline's threads (the caller writes)
# How long a stopped run waits for each to end before closing the output without it: a frame
# in the engine (a 24 MP photo) takes seconds; a read takes a frame's time, or hangs in native
# code for good (a FIFO whose writer hangs), which under systemd TimeoutStopSec= would cut.
WORKER_JOIN_S = {"capture": 2.0, "infer": 10.0}
# A live frame older than this many frame periods (and at least LIVE_MIN_AGE_S) is dropped
# when a newer one is waiting: latency stays bounded, a burst of fresh frames is kept.
LIVE_MAX_AGE_FRAMES = 2.0
LIVE_MIN_AGE_S = 0.05
# Output video rates run from MIN_FPS to MAX_FPS (from sources: a header outside them counts as
# unknown, and the output then gets 30); --fps outside them is refused.


class _SignalStop:
    """Ctrl-C / SIGTERM / SIGHUP set the stop event (clean shutdown, output finalised); a second
    Ctrl-C raises KeyboardInterrupt for when something is stuck. Once the stream is over and the
    output is being closed (`closing`), a second one is said and absorbed, a third raises; the
    handlers stay until `restore()`. SIGUSR1 (where its action is the default, which ends the
    process, or `sharpen run`'s hold of it while the run starts) asks `stats`' readers for a
    live line and a --stats refresh now, as dd takes it."""

    def __init__(self, stop: threading.Event, stats: Optional[Stats] = None) -> None:
        self.stop, self.interrupted, self.signum = stop, False, 0
        self.stats = stats
        self.closing = self.warned = False
        self._old: dict = {}

    def _report(self, _signum: int, _frame: Any) -> None:
        if self.stats is not None:
            self.stats.ask_report()

    def _handler(self, signum: int, _frame: Any) -> None:
        if self.interrupted and signum == signal.SIGINT:
            if not self.closing or self.warned:
                raise KeyboardInterrupt
            # Closing the output: one more Ctrl-C stops waiting for the closer it lands in (a
            # stuck network sink, the audio copy); the other closers and the stats still run.
            self.warned = True
            print("\nclosing the output and writing the stats; Ctrl-C again to stop waiting "
                  "for the output", file=sys.stderr, flush=True)
        drop_gone_outputs(signum)
        self.interrupted, self.signum = True, self.signum or signum
        self.stop.set()

    def __enter__(self) -> "_SignalStop":
        self.closing = self.warned = False
        if threading.current_thread() is threading.main_thread():
            for sig in signals_to_take():
                self._old[sig] = signal.signal(sig, self._handler)
            usr1 = getattr(signal, "SIGUSR1", None)
            old = None if usr1 is None else signal.getsignal(usr1)
            if usr1 is not None and (old is signal.SIG_DFL
                                     or getattr(old, "sharpen_report", False)):
                self._old[usr1] = signal.signal(usr1, self._report)
        return self

    def __exit__(self, *exc: object) -> None:
        # Closing the output and writing the stats are short and worth finishing.
        self.closing = True

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


class _RunStop(threading.Event):
    """The run's own stop, set by the run (its end, an error, a signal) and also set, as read,
    once the app's `stop_event` is: the run used to set the app's event itself at its end, and
    the app's next run with that event read no frame."""

    def __init__(self, app: Optional[threading.Event]) -> None:
        super().__init__()
        self.app = app

    def is_set(self) -> bool:
        return super().is_set() or (self.app is not None and self.app.is_set())

    def wait(self, timeout: Optional[float] = None) -> bool:
        if self.app is None:
            return super().wait(timeout)
        # Slices, so that the app's set() ends a wait (a reconnect's delay) within 50 ms.
        end = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = 0.05 if end is None else min(0.05, end - time.monotonic())
            if left <= 0:
                break
            super().wait(left)
        return self.is_set()


class _Worker(threading.Thread):
    """A daemon thread whose exception is kept for the caller and stops the whole pipeline."""

    def __init__(self, name: str, target: Callable[[], None], stop: threading.Event,
                 errors: list) -> None:
        super().__init__(name=name, daemon=True)
        self._fn, self._stop_ev, self._errors = target, stop, errors
        self._finished = threading.Event()

    @property
    def running(self) -> bool:
        """Started and not yet returned. Not `is_alive()`: on Python 3.11 a join that a
        KeyboardInterrupt (a second Ctrl-C) interrupts marks the thread stopped while it still
        runs, maybe inside the engine, which must then be neither freed nor exited around."""
        return self.ident is not None and not self._finished.is_set()

    def run(self) -> None:
        try:
            self._fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, which re-raises
            self._errors.append(exc)
            self._stop_ev.set()
        finally:
            self._finished.set()


class StreamInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped `run_stream` after it closed the output and wrote the stats:
    `stats` is what it would have returned, `signum` the signal. A KeyboardInterrupt, as the
    trainer's TrainingInterrupted: a returned summary let a loop over streams go on to the
    next one, and a SIGTERM end nothing but the stream."""

    def __init__(self, stats: dict[str, Any], signum: int) -> None:
        super().__init__(f"run_stream interrupted by {signal.Signals(signum).name} after "
                         f"{count(stats.get('frames_processed', 0), 'frame')} (output closed)")
        self.stats, self.signum = stats, signum


@dataclass
class StreamOptions:
    """How `run_stream` runs (the flags of `sharpen run` besides model, source and --out)."""
    show: bool = False                  # window: original | sharpened, fps overlay
    view: str = "side"                  # side by side, or split
    # the --stats file, or several (a JSON summary and a .prom textfile), each written alike
    stats_path: Optional[Union[str, Path, Sequence[Union[str, Path]]]] = None
    # CPU threads of ONNX Runtime / LiteRT (0/None: runtime.host.ZERO_THREADS)
    threads: Optional[int] = None
    provider: Union[str, Sequence[str]] = "auto"
    # Gaussian-blended tiles of this side (0: whole frame; None: whole, but a frame above
    # auto_tile_above pixels in AUTO_TILE tiles, as `sharpen run` without --tile)
    tile: Optional[int] = 0
    auto_tile_above: int = AUTO_TILE_PIXELS
    overlap: Optional[int] = None       # None: the model's receptive field, at most tile/2
    width: int = 1920                   # camera capture size and fps
    height: int = 1080
    fps: float = 0.0
    max_frames: Optional[int] = None
    live: Optional[bool] = None         # drop stale frames (cameras) or keep all (files)
    quiet: bool = True
    queue_size: Optional[int] = None    # default 4
    reconnect_attempts: int = 5
    timeout: Optional[float] = None     # seconds a URL may take to open or give a frame
    # seconds between live stats lines (None: 1 on a terminal, 60 in a log, as a service's)
    # and refreshes of the stats_path file (None: 10)
    report_interval: Optional[float] = None
    force: bool = False                 # run a model that failed its export parity gate
    compare: bool = False               # write original | sharpened (per `view`) to the output
    audio: bool = True                  # copy a video file source's sound into a video output
    lossless: bool = False              # a video output in FFV1 (.mkv, .avi): every pixel kept
    quality: Optional[int] = None       # JPEG/WebP image outputs' 1-100 (None: JPEG 95, WebP
    #                                     lossless)
    codec: Optional[str] = None         # a video output's codec (runtime/video_codecs.py;
    #                                     None: its container's, by OpenCV)
    crf: Optional[int] = None           # --codec h264/hevc's quality (None: the codec's default)
    # --codec h264/hevc's speed preset (video_codecs.PRESETS; None: veryfast for a live source,
    # medium for a file)
    encoder_preset: Optional[str] = None
    resume: bool = False                # go on with a stopped run of a video file (resume.py)
    # a folder's or glob's images into a folder: sharpen again those whose output is there
    # (default: kept, unless older than their photo)
    overwrite: bool = False
    exif: bool = True                   # an image input's EXIF kept in its image output
    # a source's metadata kept in its output: a photo's EXIF (as `exif`), a video file's
    # container tags (a phone's location, creation time, title, device) and timecode
    metadata: bool = True
    segment: Optional[float] = None     # seconds of video a file of the output (segment_sink)
    keep_segments: Optional[int] = None  # the most segments kept, the oldest removed (None: all)
    keep_gb: Optional[float] = None     # the most GB of segments kept, the oldest removed
    # systemd's READY=1, STATUS= and WATCHDOG=1 where NOTIFY_SOCKET is set (service_notify);
    # `sharpen run` sets it, an app that speaks to its own service manager need not
    service_notify: bool = False


def _hold_run_lock(held: ExitStack, path: Union[str, Path], key: str,
                   flags: bool, **how: Any) -> None:
    """Hold the run lock on `path` (the output, or the --stats file) in `held`. Another live
    run's is a SinkError that `sharpen run` exits 4 on, a clash that ends with the other run;
    its default output name goes on past a held output, not past a held --stats file."""
    try:
        held.enter_context(output_lock(path, option(key, path, flags), option(key, flags=flags),
                                       **how))
    except LinkRefused as e:   # a usage error, which a retry repeats
        raise SinkError(str(e)) from None
    except RunLocked as e:
        err = SinkError(str(e))
        err.output_locked = True
        err.stats_locked = key == "stats_path"
        raise err from None


def run_stream(model: Union[str, Path, Backend],
               source: Union[str, Path, int, Source, Iterable[Any]],
               output: Optional[Union[str, Path, Sink]] = None,
               options: Optional[StreamOptions] = None, *,
               stop_event: Optional[threading.Event] = None, flags: bool = False,
               note: Optional[Note] = None, **overrides: Any) -> dict[str, Any]:
    """Sharpen a stream end to end and return the stats dict (also written to `stats_path`:
    from the start, before the model loads, and every `report_interval` seconds, 10 by
    default, until the output is closed, its `state` starting, running or reconnecting, then
    finishing; its last write says how the run ended, a start that failed too).

    model: a model path (.onnx/.engine/.plan/.tflite) or an already loaded Backend.
    source: a source spec (see runtime.sources.open_source: a file, folder, camera index, URL...),
        an opened Source, or frames the app holds: a list or iterable of numpy BGR frames (or
        one array), as `FrameProcessor` takes them (runtime.sources.ArraySource).
    output: video file (.mp4...), image folder, or image file for a single image; None: no file;
        or a Sink: its write(original, sharpened, name) gets every frame (BGR arrays) in order,
        in the calling thread, and close() once at the end.
    options: a StreamOptions; any of its fields may also be given as a keyword.
    stop_event: set it to stop the run from another thread (the stats are returned); the run
        only reads it (one already set is refused: clear() it to run again).
    flags: messages name the options as `sharpen run`'s flags (--out, --stats, --tile), not as
        these keywords (output=, stats_path=, tile=): the command line sets it.
    note: takes the run's informational lines (a source reconnected, a URL found to be a
        recording and processed losslessly); default: none. `sharpen run` prints them as
        `note: ...` lines; what needs attention comes as a SharpenWarning either way.
    Raises ModelError / SourceError / SinkError / FrameError with user-facing messages (a
    SinkError where another live run writes the same output or stats_path), and ValueError for
    options out of range (before anything is opened). In the main thread it
    holds SIGINT and SIGTERM (and SIGHUP where its action is the default) while it runs: either
    closes the output, writes the stats and raises StreamInterrupted (a KeyboardInterrupt,
    `.stats` the summary).
    """
    _check_keywords(overrides)
    o = replace(options or StreamOptions(), **overrides)
    _check_options(o, flags)
    _check_model(model)
    _check_output(output)
    if isinstance(output, (str, os.PathLike)):
        refuse_unwritten_format(output, flags, source)   # a usage error: before anything opens
        if o.lossless and _video_sink_for(Path(output)):
            refuse_lossless(output, flags)
        if _video_sink_for(Path(output)):   # OpenCV's writer's name: not after a camera's open
            utf8_name(output, SinkError)
    if problems := codec_problems(o.codec, o.crf, output if not isinstance(output, Sink)
                                  else None, flags, o.lossless, o.resume, o.encoder_preset):
        raise SinkError("; ".join(problems))
    if o.codec == "ffv1":   # OpenCV's FFV1, as --lossless writes it
        o = replace(o, lossless=True)
    if o.segment:
        _check_segmented_output(output, flags)
    # numpy's numbers pass the checks; the stats (JSON) take Python's.
    o = replace(o, **{k: (int if whole else float)(getattr(o, k)) for k, whole in _NUMBERS.items()
                      if getattr(o, k) is not None})
    _check_stats_kind(o.stats_path)
    paths = stats_paths(o.stats_path)
    for i, path in enumerate(paths):
        _check_stats_path(path, option("stats_path", path, flags))
        if any(same_file(path, other) for other in paths[:i]):
            # The two writers' renames would take turns over one file: JSON, then .prom text
            raise SinkError(f"{option('stats_path', path, flags)} is given twice; give each "
                            f"{option('stats_path', flags=flags)} file its own name (e.g. "
                            "stats.json and stats.prom)")
    _check_source(source)
    if stop_event is not None and stop_event.is_set():
        raise ValueError("run_stream: stop_event is already set (clear() it to run again)")
    # Before the model loads (a TensorRT engine takes seconds): a second run into the same
    # output replaced the first's video with its own, or mixed its frames into the folder and
    # its resume record, without a word.
    with ExitStack() as held:
        if isinstance(output, (str, os.PathLike)) and not is_stdio(output):
            _hold_run_lock(held, output, "output", flags)
        # Locked as the output is: two services given one --stats path (a template's missing
        # %i) each rewrote it every 10 s with its own numbers, and a monitor read either. The
        # output's own path is left to open()'s check, which says --stats names it.
        for path in paths:
            if not (isinstance(output, (str, os.PathLike)) and same_file(path, output)):
                _hold_run_lock(held, path, "stats_path", flags,
                               doing="writing its stats", replaced=True)
        # From here on (the output is this run's) the --stats file is: a killed run's, which
        # said `running` for good, is replaced before the model loads (a TensorRT engine, a
        # camera slow to open), and a start that fails says so where it wrote nothing. Any
        # other file waits for open()'s check that it is not the source or the output.
        stats = Stats()
        states: list[Callable[[], dict[str, Any]]] = [lambda: {"state": "starting"}]
        stats_file = (StatsFile(paths, stats, o.report_interval,
                                lambda: states[-1]()) if paths else None)
        notifier = ServiceNotifier(stats, lambda: states[-1]()["state"]) \
            if o.service_notify else None
        stream = summary = None
        try:
            if notifier is not None:
                notifier.start()
            # in the try: a thread that cannot start is said there
            named = [p for p in (source, output)
                     if isinstance(p, (str, os.PathLike)) and not is_stdio(p)]   # no files
            if stats_file is not None and all(
                    stats_file_or_none(path) and not any(same_file(path, p) for p in named)
                    for path in paths):
                stats_file.start()
            own_backend = not isinstance(model, Backend)
            backend = (load_backend(model, threads=o.threads, providers=o.provider,
                                    force=o.force, flags=flags) if own_backend else model)
            stream = _Stream(o, backend, own_backend, _RunStop(stop_event), flags, note, stats,
                             stats_file, notifier)
            states.append(stream._state)
            try:
                stream.open(source, output)
                stream.run()
            finally:
                stream.close()
            summary = stream.finish()
        except BaseException as exc:
            if stats_file is not None and stats_file.started and not stats_file.ended:
                _write_failed_start(stats_file, stats, exc)
            if notifier is not None:
                notifier.close(_ended_status(getattr(exc, "stats", None) or stats.summary(),
                                             exc))
            raise
        finally:
            if stream is not None:
                stream.sig.restore()
    if notifier is not None:
        notifier.close(_ended_status(summary))
    if stream.sig.signum:
        raise StreamInterrupted(summary, stream.sig.signum)
    return summary


def _check_segmented_output(output: Any, flags: bool) -> None:
    """SinkError, before anything is opened, where --segment cannot cut the output."""
    seg = option("segment", flags=flags)
    if output is None or isinstance(output, Sink) or is_stdio(output) \
            or not _video_sink_for(Path(output)):
        named = ("none" if output is None else "an app's Sink" if isinstance(output, Sink)
                 else f"{option('output', output, flags)} is a stream" if is_stdio(output)
                 else f"{option('output', output, flags)} is an image folder or file")
        raise SinkError(f"{seg} cuts a video file {option('output', flags=flags)} into files; "
                        f"{named} (give a video file, e.g. "
                        f"{option('output', 'rec.ts', flags)})")


def _ended_status(summary: dict[str, Any], exc: Optional[BaseException] = None) -> str:
    """The service manager's last STATUS=: how the run ended, its frames, its error."""
    if isinstance(exc, KeyboardInterrupt):
        state = "stopped"
    elif exc is not None:
        state = "source_lost" if isinstance(exc, SourceLost) else "failed"
    else:
        state = summary.get("state", "done")
    said = f"{state}: {count(summary.get('frames_processed', 0), 'frame')}"
    if skipped := summary.get("skipped_inputs"):
        # The exit 1 a unit then fails with, which "done: N frames" alone read as a clean run
        what = unread(len(skipped), (summary.get("source") or {}).get("kind"))
        first = str(skipped[0]).splitlines()[0]
        said += (f", {what} could not be read ({'the first: ' if len(skipped) > 1 else ''}"
                 f"{first})")
    if exc is not None and not isinstance(exc, KeyboardInterrupt):
        said += f", {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    return said


def _write_failed_start(stats_file: StatsFile, stats: Stats, exc: BaseException) -> None:
    """The --stats file's last write for a run that ended before its stream did (the model or
    the source did not open, a signal during the start): its state and error, as `finish`
    writes them."""
    summary = stats.summary()
    if isinstance(exc, KeyboardInterrupt):
        summary["state"] = "stopped"
        signum = getattr(exc, "signum", None) or signal.SIGINT
        summary["signal"] = signal.Signals(signum).name
    else:
        summary["state"] = "source_lost" if isinstance(exc, SourceLost) else "failed"
        summary["error"] = str(exc) or type(exc).__name__
    summary["recent"] = stats.recent()
    try:
        stats_file.final(summary)
    except OSError as e:   # the run's own error is the one to raise
        warn(f"cannot write the stats file {getattr(e, 'stats_path', stats_file.path)}: "
             f"{e.strerror or e}")


def _check_keywords(overrides: dict[str, Any]) -> None:
    """ValueError naming keywords that are no StreamOptions field, with the one likely meant:
    dataclasses' own message named StreamOptions.__init__, and neither run_stream nor what it
    takes."""
    names = [f.name for f in fields(StreamOptions)]
    bad = [k for k in overrides if k not in names]
    if not bad:
        return
    said = ", ".join(f"{k}={overrides[k]!r}" if isinstance(overrides[k], str)
                     else f"{k}={overrides[k]}" for k in bad)
    # Its own keywords too: `stop_evnet=` was offered no stop_event, nor told it is taken.
    own = [p for p in inspect.signature(run_stream).parameters
           if p not in ("model", "source", "overrides")]
    meant = get_close_matches(bad[0], names + own, n=1) if len(bad) == 1 else []
    raise ValueError(f"run_stream: unknown option{'s' if len(bad) > 1 else ''} {said}"
                     + (f" (did you mean {meant[0]}=?)" if meant else "")
                     + f"; it takes {', '.join(names)}, besides {', '.join(own)}")


def _check_model(model: Any) -> None:
    """TypeError naming run_stream's model argument: load_backend's own message named a
    function the app never called."""
    if isinstance(model, (Backend, str, os.PathLike)):
        return
    hint = " (its backend: proc.backend)" if isinstance(model, FrameProcessor) else ""
    raise TypeError(f"run_stream: model must be a model file path "
                    f"({', '.join(sorted(BACKEND_BY_SUFFIX))}) or a Backend from load_backend, "
                    f"got {type(model).__name__}{hint}")


def _check_stats_kind(given: Any) -> None:
    """TypeError naming stats_path for what is no path nor list of them: an int met "'int'
    object is not iterable" from deep inside. A list or tuple only: the paths are read again
    at each refresh, and a generator's were gone after the first."""
    items = given if isinstance(given, (list, tuple)) else [given] if given else []
    wrong = [p for p in items if not isinstance(p, (str, os.PathLike))]
    if wrong or not isinstance(given, (str, os.PathLike, list, tuple, type(None))):
        what = type(wrong[0] if wrong else given).__name__
        raise TypeError(f"run_stream: stats_path must be a file path or a list of them "
                        f"(s.json, s.prom), got {what}")


def _check_output(output: Any) -> None:
    """Refuse an output of no kind run_stream takes before the model loads: a callback or the
    Sink class itself met os.fspath's "expected str, bytes or os.PathLike object" once the
    model had loaded and the source opened."""
    if output is None or isinstance(output, (str, os.PathLike, Sink)):
        return
    if isinstance(output, type) and issubclass(output, Sink):
        got = f"the class {output.__name__}: pass an instance, {output.__name__}()"
    elif callable(output):
        got = (f"{type(output).__name__} (a callback? subclass runtime.Sink and call it from "
               "its write(original, sharpened, name))")
    else:
        got = type(output).__name__
    raise TypeError("run_stream: output must be a file or folder path, a runtime.Sink or "
                    f"None, got {got}")


def _check_source(source: Any) -> None:
    """Refuse a source of no kind run_stream takes before the model loads (a TensorRT engine
    takes seconds): ArraySource's TypeError, reached last, spoke only of frames."""
    if isinstance(source, Source) and source.closed:
        # Its released capture read nothing: "produced no frames", once the model had loaded.
        again = ("give it a new iterator: the one it holds (a generator) was read by a run"
                 if isinstance(source, ArraySource) else "open it again (open_source)")
        raise SourceError(f"source {source.spec!r} is closed: run_stream closes the Source it "
                          f"is given when the run ends; {again}")
    takes = (isinstance(source, (Source, str, os.PathLike)) or hasattr(source, "__iter__")
             or is_number(source))
    if takes and not isinstance(source, bytes):
        return
    raise TypeError("run_stream: source must be a spec (a file, folder, glob, camera index or "
                    "URL), an opened Source or numpy frames, got "
                    f"{type(source).__name__}")


class _Stream:
    """One run of `run_stream`: open the source and output, run capture and infer in worker
    threads while the caller's thread writes, close everything, summarise. Errors from any
    stage are collected in `errors`; the first one is raised by `finish`."""

    def __init__(self, o: StreamOptions, backend: Backend, own_backend: bool,
                 stop: threading.Event, flags: bool = False, note: Optional[Note] = None,
                 stats: Optional[Stats] = None, stats_file: Optional[StatsFile] = None,
                 notifier: Optional[ServiceNotifier] = None) -> None:
        self.o, self.backend, self.own_backend, self.stop = o, backend, own_backend, stop
        self.flags = flags   # messages name sharpen run's flags
        self.note = note     # the sources' informational lines
        self.stats = stats if stats is not None else Stats()
        self.stats_file = stats_file   # refreshed from the start until finish's final write
        self.notifier = notifier       # systemd's READY=1 and watchdog, where it listens
        # The frame in the engine, which the watchdog counts as progress within its time
        self.work = notifier.work if notifier is not None else EngineWork()
        self.phase = "starting"        # then running, then finishing while the output closes
        self.failing: Optional[str] = None   # an error that ends the run, said before it ends
        self.errors: list[BaseException] = []
        self.sig = _SignalStop(stop, self.stats)   # installed when the stream starts
        self.workers: list[_Worker] = []
        self.reporter: Optional[LiveReporter] = None   # the live line, until the output closed
        self.src: Optional[Source] = None
        self.sink: Optional[Sink] = None
        self.user_sink: Optional[Sink] = None   # an app's own output, closed even if open fails
        self.video_fps = 30.0
        self.timed = False   # the video output places a file's frames by their times
        self.warmup_runs = 0   # untimed runs on the first frame before the timed ones
        # A video file's run into a file or folder: what its resume record holds (resume.py),
        # and the writer's progress, which the record takes when the run stops.
        self.resume_record: Optional[dict[str, Any]] = None
        self.progress: dict[str, Any] = {}
        self.output: Optional[Union[str, Path]] = None
        self.resumed_from = 0   # the source frame a resumed run started at
        self.kept_images = 0    # a resumed library's images that the stopped run wrote
        self.nothing_to_do = False   # every image of a library run has its output there
        # the makers of a library's outputs kept (resume.made), where some made them otherwise
        self.kept_makers: list[dict[str, Any]] = []
        self.ran = False        # the stream ran to its end (or its limit, or an error)
        self.stopped_part_way = False   # by a signal, before the output closed

    def _own_stats_file(self) -> list:
        """The --stats file as this run's own, left out of an image folder it reads: only once
        this run has written it (an earlier run's stats, or no file), never a file that was
        something else (a photo of that folder, which the check in open() refuses)."""
        started = self.stats_file is not None and self.stats_file.started
        return stats_paths(self.o.stats_path) if started else []

    def open(self, source: Union[str, Path, int, Source, Iterable[Any]],
             output: Optional[Union[str, Path, Sink]]) -> None:
        """Open the source and the output, read the first frame and warm the model up on it."""
        o, stats = self.o, self.stats
        if isinstance(output, Sink):
            self.user_sink = output
        if isinstance(source, Source):
            src = source   # not closed: _check_source refused that
        elif isinstance(source, (str, os.PathLike)) or is_number(source):
            if o.resume and (kind := spec_kind(str(source))) not in ("video", "images"):
                # Before it opens: a camera not there raised SourceLost (exit 3: a restart may
                # find it), where no restart makes a camera's run resumable (exit 2).
                raise self._not_resumable(shown_url(str(source)), kind, bool(o.live))
            src = open_source(str(source), width=o.width, height=o.height, fps=o.fps,
                              live=o.live, reconnect_attempts=o.reconnect_attempts,
                              timeout=o.timeout, note=self.note, flags=self.flags,
                              own_files=self._own_stats_file())
        else:   # frames the app holds; a list of arrays was once read as a file name
            src = ArraySource(source, fps=o.fps)
        self.src = src
        if isinstance(src, ImageSource):
            src.keep_exif = o.exif and o.metadata
        if self.notifier is not None:
            self.notifier.reconnect_due = lambda: getattr(src, "attempt_due", None)
        refuse_live_images(src, o.live, self.flags)
        if o.live is not None:
            src.live = o.live
        out_file = [] if output is None or isinstance(output, Sink) or is_stdio(output) \
            else [output]
        # Any image the run reads, not only a single one: a folder's image named by --stats was
        # written over by the stats (the output is guarded by its folder, not each image).
        read = list(src.paths) if isinstance(src, ImageSource) else _input_files(src)
        for path in stats_paths(o.stats_path):
            if any(same_file(path, f) for f in [*read, *out_file]):
                raise SinkError(f"{option('stats_path', path, self.flags)} is the source or "
                                f"the {option('output', flags=self.flags)} file: the stats "
                                "would overwrite it; choose another path")
        self.processor = FrameProcessor(
            self.backend, tile=o.tile or 0, overlap=o.overlap, flags=self.flags,
            auto_tile_above=o.auto_tile_above if o.tile is None else None)
        self.auto_tiled = 0   # frames run in automatic tiles: the first is said
        # The output video's rate, and its slots' (see video_rate).
        self.video_fps = video_rate(src.kind, src.fps, o.fps) or 30.0
        if not 0 < self.video_fps <= MAX_FPS:
            self.video_fps = 30.0
        self.sink = _make_sink(src, output, o.show, o.view, self.stop, self.video_fps, stats,
                               o.compare, self.flags, o.audio, o.fps, self.note, o.lossless,
                               (o.segment or 0, o.keep_segments or 0, o.keep_gb or 0),
                               o.quality, (o.codec, o.crf, o.encoder_preset, o.threads))
        self._keep_metadata(o)
        start = self.resumed_from = self._resume_from(src, output)
        if start and self.resume_record.get("output") == "video":
            video = _video_sink(self.sink)
            if video is not None:
                video.join(Path(output), self.progress["slots"], self.notifier.progress
                           if self.notifier is not None else None)
        # A file's frames go into a video at its own rate by their times in the file: a phone
        # records at a variable rate, and written one per slot at the average rate they drifted
        # from the sound copied beside them (0.5 s by the middle of a clip). So does a
        # variable-rate clip at any --fps; a constant-rate clip's --fps other than its own
        # plays it faster or slower on purpose: frame by frame.
        self.timed = (isinstance(src, VideoSource) and src.kind == "video" and not src.live
                      and bool(src.fps) and src.placed_at(self.video_fps)
                      and _writes_video(self.sink))
        self.frames = src.frames(self.stop)
        first = next(self.frames, None)
        self.first = first
        if first is None and self.stop.is_set():
            # The app's stop_event, set while the run opened (a TensorRT engine loading): a
            # run stopped before its first frame, as the docstring says, not "produced no
            # frames", a SourceError.
            stats.info = self._info(output)
            return
        if first is None and (self.nothing_to_do or self.kept_images):
            # Every image's output kept, or those not kept could not be read (a rerun of a
            # library with its damaged photos in it): said, and listed at the end.
            stats.info = self._info(output)
            return
        if first is None:
            raise SourceError(f"source {src.spec!r} produced no frames")
        # One-off costs (allocation, kernel selection) are not timed: two warm-up runs on the
        # first frame. A single photo is its whole run, with no later frame to time warm:
        # warmed up, it took three runs. The processor says what its tiles of this first
        # frame may do (seams, wasted work) either way.
        single = isinstance(src, ImageSource) and src.frame_count == 1
        self.warmup_runs = 0 if single else 2
        # Timed for the watchdog: a photo's frame time is known before READY=1, from these.
        self.work.begin(first.image.shape[0] * first.image.shape[1])
        self.processor.warmup(first.image, runs=self.warmup_runs)
        self.work.end(runs=self.warmup_runs)
        first.t_capture = time.perf_counter()
        self.size, self.size_said = first.image.shape[:2], False
        stats.info = self._info(output)
        if (segmented := _inner_sink(self.sink, SegmentSink)) is not None:
            # Its keys made now, before the writer runs: the stats refresh reads this dict
            # from another thread while the sink names each segment in it.
            stats.info.update(segment=None, segments_closed=0, segment_frames=0,
                              segments_removed=0)
            segmented.stats_info = stats.info
            segmented.on_close_error = self._segment_failed
        # Live: a few frames of room, so that frames a network source delivers in a burst are
        # not dropped as stale (one slot dropped 30-50 % of a stream the model kept up with);
        # what bounds latency is their age (`max_age`), not the queue's length.
        qsize = o.queue_size or 4
        self.q_in = FrameQueue(qsize, drop_oldest=src.live)
        self.q_out = FrameQueue(qsize, drop_oldest=False)
        self.max_age = (max(LIVE_MAX_AGE_FRAMES / (src.fps or 30.0), LIVE_MIN_AGE_S)
                        if src.live else None)
        self.limit = o.max_frames if o.max_frames and o.max_frames > 0 else None
        if self.limit and start:   # counted from the source's first frame, as if not stopped
            self.limit = max(1, self.limit - start)
        if not src.live and src.frame_count:   # every frame of it is written
            stats.total = min(src.frame_count - start, self.limit or src.frame_count)

    def _resume_from(self, src: Source, output: Optional[Union[str, Path, Sink]]) -> int:
        """Keep the resume record of a video file's run into a file or folder, and with
        --resume go on where the stopped run got to: the source frame to start from."""
        o, resume = self.o, self.o.resume
        what = option("resume", True, self.flags)
        resumable = (isinstance(output, (str, os.PathLike)) and not is_stdio(output)
                     and isinstance(src, VideoSource)
                     and src.kind == "video" and not src.live and self.backend.path is not None
                     and _regular_file(src.target))   # a FIFO's frames are not given again
        if (isinstance(src, ImageSource) and src.paths
                and (src.frame_count > 1 or src.library)
                and isinstance(output, (str, os.PathLike)) and not is_stdio(output)
                and Path(output).suffix.lower() not in IMAGE_EXTS
                and not _video_sink_for(Path(output)) and self.backend.path is not None):
            self._resume_library(src, Path(output))
            return 0
        if not resumable:
            if resume and isinstance(src, ImageSource) and not src.live:
                raise resume_mod.ResumeError(
                    f"{what}: {shown_url(src.spec)} cannot be resumed into "
                    f"{option('output', output, self.flags)}: "
                    + ("one image is written whole or not at all; run without " + what
                       if src.frame_count == 1 else
                       "a folder's or glob's images resume into an image folder"))
            if resume:
                fifo = isinstance(src, VideoSource) and src.kind == "video" \
                    and not _regular_file(src.target)
                raise self._not_resumable(shown_url(src.spec), "FIFO" if fifo else src.kind,
                                          src.live)
            return 0
        out = Path(output)
        kind = ("images" if not _video_sink_for(out) else "segments" if o.segment
                else "video")
        # The tile its frames are run at: without one, whole up to the automatic tiling's
        # size, as a record from before that rule holds it (0), else its tile.
        tile = o.tile if o.tile is not None else (
            auto_tile(self.backend) if self.processor.auto_tiles(src.height, src.width) else 0)
        now = resume_mod.identity(self.backend.path, str(src.target), src.frame_count,
                                  {"tile": tile, "overlap": o.overlap, "fps": o.fps,
                                   "compare": o.compare, "view": o.view if o.compare else None,
                                   "lossless": o.lossless and kind != "images",
                                   # ffmpeg's encode, which --resume does not join
                                   "codec": o.codec if kind != "images"
                                   and encoded_by_ffmpeg(o.codec) else None,
                                   # as encoded: a --crf 18 given is h264's default
                                   "crf": crf_used(o.codec, o.crf) if kind != "images"
                                   else None,
                                   # as encoded, a resumed file's default (a record from
                                   # before the option: medium) left unrecorded
                                   "encoder_preset": _preset_recorded(o) if kind != "images"
                                   else None,
                                   "quality": o.quality if kind == "images" else None,
                                   # which frames each segment holds
                                   "segment": o.segment if kind == "segments" else None},
                                  kind, self.video_fps, getattr(src, "average_fps", None))
        self.output, self.resume_record = out, now
        self.progress = {"next": 0, "slots": 0}
        if kind == "images":
            # Saved with the first image: a run killed (SIGKILL) leaves its images, which
            # --resume goes on after; a video is only worth going on with once closed.
            def first() -> None:
                # When this run's images began: an earlier run's left in the folder are not
                # counted as this one's (`images_done`).
                self.progress["started_ns"] = time.time_ns()
                resume_mod.save(out, {**now, "next": 0, "slots": 0,
                                      "started_ns": self.progress["started_ns"]})

            self.progress["first"] = first
        if kind == "segments":
            self._keep_segment_records(now)
        if not resume:
            return 0
        named = option("output", out, self.flags)
        record = resume_mod.load(out, self.flags)
        # A video's frames go into a folder as PNG, which --quality leaves alone.
        if changed := resume_mod.changes(record, now, self.flags,
                                         formats=(".png",) if kind == "images" else None):
            raise resume_mod.ResumeError(
                f"{what}: {named} was made otherwise than this run would make it: "
                f"{'; '.join(changed)}; run without {what} to start from the first frame")
        if kind == "video":
            start, slots = int(record.get("next", 0)), int(record.get("slots", 0))
            try:
                there = resume_mod.output_stat(out)
            except OSError:
                there = None
            if not start or there != record.get("output_stat"):
                why = ("it is not there" if there is None else "the stopped run closed no "
                       "video there" if not start else "it was changed since the run stopped")
                raise resume_mod.ResumeError(f"{what}: {named}: {why}; run without "
                                             f"{what} to start from the first frame")
        elif kind == "segments":
            start, slots = self._segments_resumed(record, out)
        else:
            start = resume_mod.images_done(out, since_ns=record.get("started_ns"))
            slots = start
        self.progress = {k: record[k] for k in ("origin", "m_prev", "slack", "last_digest",
                                                "output_stat", "started_ns") if k in record}
        self.progress.update(next=start, slots=slots)
        if start and o.max_frames and start >= o.max_frames:
            limit = option("max_frames", o.max_frames, self.flags)
            raise resume_mod.ResumeError(f"{what}: {named} holds the first {start} "
                                         f"frames already ({limit})")
        if start and src.frame_count and start >= src.frame_count:
            raise resume_mod.ResumeError(f"{what}: {named} holds every frame of "
                                         f"{src.spec} already")
        if kind == "segments":
            self._set_aside_cut_segments(record, out)
        if start:
            # A folder's record tells the frame before `start` where the images in it end
            # at the stop's (not after a killed run's); else the source is read up to it.
            digest = (record.get("last_digest")
                      if kind != "images" or record.get("next") == start else None)
            how = src.start_at(start, digest, self.notifier.progress
                               if self.notifier is not None else None)
            if self.note:
                held = (f"{segments_shown(out)} hold" if kind == "segments"
                        else f"{out} holds")
                self.note(f"resuming at frame {start} of {src.spec} ("
                          f"{'seek' if how == 'seek' else 'read from the start'}); "
                          f"{held} the frames before it")
        return start

    def _keep_segment_records(self, now: dict[str, Any]) -> None:
        """A --segment run's record, saved as each segment closes whole (a run killed outright
        leaves its closed segments, which --resume goes on after): how far the frames in it
        got, and that segment, which --resume checks is still as it closed. A fresh run's
        replaces an earlier run's at its first frame, naming no segment yet."""
        seg = _inner_sink(self.sink, SegmentSink)
        out, sealed = self.output, {}
        if not self.o.resume:
            self.progress["first"] = lambda: resume_mod.save(
                out, {**now, "next": 0, "slots": 0, "first_number": seg.first_number})

        def snapshot() -> dict[str, Any]:
            # self.progress at the time: a resumed run's is the record's, set after this
            progress = self.progress
            taken = {k: progress[k] for k in ("next", "origin", "m_prev", "slack")
                     if k in progress}
            if "last" in progress:
                taken["last_digest"] = resume_mod.frame_digest(progress["last"])
            return taken

        def whole(path: Path, number: int, slots: int, taken: dict[str, Any]) -> None:
            if not sealed:   # the model hashed once, in the closing thread
                sealed.update(resume_mod.sealed(now))
            try:
                resume_mod.save(out, {**sealed, **taken, "slots": slots,
                                      "segment_file": path.name, "segment_number": number,
                                      "segment_stat": resume_mod.output_stat(path)})
            except OSError as exc:
                warn(f"{option('output', segments_shown(out), self.flags)}: cannot keep the "
                     f"record {option('resume', True, self.flags)} goes on from after "
                     f"{path.name} ({exc.strerror or exc})")

        seg.snapshot, seg.on_whole = snapshot, whole

    def _segments_resumed(self, record: dict[str, Any], out: Path) -> tuple[int, int]:
        """The source frame and video slot a --segment run resumes at: after the last segment
        the stopped run closed whole, which must be there as it closed."""
        what = option("resume", True, self.flags)
        if "segment_file" not in record:   # stopped before its first segment closed whole
            return 0, 0
        last = out.parent / record["segment_file"]
        try:
            there = resume_mod.output_stat(last)
        except OSError:
            there = None
        # Gone where --keep-segments or --keep-gb bound them: removed as the cut one closed.
        pruned = there is None and bool(self.o.keep_segments or self.o.keep_gb)
        if there != record.get("segment_stat") and not pruned:
            why = "is not there" if there is None else "was changed since the run stopped"
            raise resume_mod.ResumeError(
                f"{what}: {option('output', out, self.flags)}: its last whole segment, "
                f"{last}, {why}; run without {what} to start from the first frame")
        seg = _inner_sink(self.sink, SegmentSink)
        seg.frames = int(record.get("slots", 0))   # the sound of the next is from there
        return int(record.get("next", 0)), seg.frames

    def _set_aside_cut_segments(self, record: dict[str, Any], out: Path) -> None:
        """The stopped run's segments after its last whole one (the one a stop cut short, a
        killed run's already set aside) are kept as interrupted, not as part of the
        recording: their frames are sharpened again into the segments numbered on."""
        after = record.get("segment_number", record.get("first_number", 0) - 1)
        for old, kept in set_aside_after(out, after):
            if self.note:
                self.note(f"{old.name} was cut short by the stop: kept as {kept.name}, its "
                          "frames sharpened again")

    def _keep_metadata(self, o: StreamOptions) -> None:
        """Tell the video output whether to carry its source's metadata (--no-metadata); and
        say, where --no-exif alone was given a clip, that it leaves the clip's location in."""
        vs = _video_sink(self.sink)
        if vs is None:
            return
        vs.keep_metadata = o.metadata
        # Without ffmpeg, OpenCV's writer alone writes the video, none of the clip's tags.
        if not o.exif and o.metadata and vs.colour_source is not None \
                and find_ffmpeg()[0] is not None:
            no_exif, no_metadata = (option(k, False, self.flags) for k in ("exif", "metadata"))
            # Segments: named as the closing line names them, not as --out, never written.
            shown = segments_shown(vs.path) if isinstance(vs, SegmentSink) else vs.path
            warn(f"{no_exif} leaves photos' EXIF out; {option('output', shown, self.flags)} "
                 f"keeps the container metadata of {vs.colour_source} (a phone's location, "
                 f"creation time, title, device, where it has them): {no_metadata} leaves it "
                 "out")

    def _resume_library(self, src: ImageSource, out: Path) -> None:
        """Keep the resume record of a folder's or glob's images into an image folder, and
        with --resume leave out the images the stopped run wrote."""
        o = self.o
        now = resume_mod.library_identity(self.backend.path, src.spec, {
            "tile": o.tile, "overlap": o.overlap, "fps": o.fps, "compare": o.compare,
            "view": o.view if o.compare else None, "lossless": False, "quality": o.quality,
            "exif": o.exif and o.metadata})
        self.output, self.resume_record, self.progress = out, now, {}
        record: dict[str, Any] = {}
        if o.resume:
            what = option("resume", True, self.flags)
            record = resume_mod.load(out, self.flags)
            formats = {Path(n).suffix.lower() or ".png" for n in src.names}
            if changed := resume_mod.changes(record, now, self.flags, formats):
                raise resume_mod.ResumeError(
                    f"{what}: {option('output', out, self.flags)} was made otherwise than this "
                    f"run would make it: {'; '.join(changed)}; run without {what} to start "
                    "from the first image")
        # A resumed run stopped again goes on judging images by the first run's start, and
        # as it did (an older version's run wrote over every output: overwrite).
        started = record.get("started_ns")
        overwrite = record.get("overwrite", True) if o.resume else o.overwrite
        self.resume_record = {**now, "overwrite": overwrite}

        def first() -> None:
            self.progress["started_ns"] = started or time.time_ns()
            resume_mod.save(out, {**self.resume_record,
                                  "started_ns": self.progress["started_ns"]})

        self.progress["first"] = first
        if not o.resume:
            if not o.overwrite:
                self._keep_outputs_there(src, out)
            return
        done = resume_mod.images_written(out, src.names, src.paths, started, overwrite)
        if len(done) == src.frame_count:
            raise resume_mod.ResumeError(
                f"{option('resume', True, self.flags)}: {option('output', out, self.flags)} "
                f"holds every image of {src.spec} already")
        src.leave_out(done)
        self.kept_images = len(done)
        if self.note and done:
            self.note(f"resuming {src.spec}: {count(len(done), 'image')} written by the "
                      f"stopped run kept, {count(src.frame_count, 'image')} to go")

    def _keep_outputs_there(self, src: ImageSource, out: Path) -> None:
        """A library run into a folder that holds outputs of its images (a finished run's,
        new photos added since; outputs edited since): those are kept, said, and only the
        images without one, or changed since it was written, are sharpened."""
        kept, stale = resume_mod.outputs_there(out, src.names, src.paths)
        total = src.frame_count
        if kept and not (self.o.exif and self.o.metadata):
            self._strip_kept(src, out, kept)
        if stale:
            first = src.names[min(stale)]
            warn(f"{count(len(stale), 'image')} of {src.spec} changed since {out} got "
                 f"{'its output' if len(stale) == 1 else 'theirs'} ({first}"
                 f"{', ...' if len(stale) > 1 else ''}): sharpened again, replacing "
                 f"{'it' if len(stale) == 1 else 'them'}")
        if not kept:
            return
        # Those kept where this run writes no EXIF were read and hold none (`_strip_kept`):
        # what the run that made them wrote of it is no difference to say.
        self._made_otherwise(src, out, len(kept), exif_read=not (self.o.exif and self.o.metadata))
        src.leave_out(kept)
        self.kept_images = len(kept)
        self.nothing_to_do = not src.frame_count
        if self.note:
            left = (f"{count(src.frame_count, 'image')} of {total} to sharpen"
                    if src.frame_count else "nothing to sharpen")
            as_is = "it is" if len(kept) == 1 else "they are"
            self.note(f"{count(len(kept), 'image')} already in {out} kept as {as_is}, "
                      f"{left}; {option('overwrite', True, self.flags)} sharpens every "
                      "image again")

    def _strip_kept(self, src: ImageSource, out: Path, kept: set[int]) -> None:
        """Take out of `kept` the outputs there that hold EXIF where this run writes none
        (--no-exif, --no-metadata): kept, with a warning and exit 0, a folder rerun to be
        published without its photos' GPS position still held it. Each is read whole (a
        PNG's eXIf may follow its pixels), only on such a run."""
        from .imageio import exif_block
        holding = set()
        for i in kept:
            try:
                if exif_block((out / src.names[i]).read_bytes()) is not None:
                    holding.add(i)
            except OSError:   # gone meanwhile: sharpened again as well
                holding.add(i)
        if not holding:
            return
        kept -= holding
        asked = option("exif" if self.o.metadata else "metadata", False, self.flags)
        first = src.names[min(holding)]
        holds = "holds its photo's" if len(holding) == 1 else "hold their photos'"
        warn(f"{count(len(holding), 'image')} in {out} {holds} EXIF (capture date, "
             f"camera, GPS position; {first}{', ...' if len(holding) > 1 else ''}): sharpened "
             f"again without it, as {asked} asks")

    def _made_otherwise(self, src: ImageSource, out: Path, kept: int,
                        exif_read: bool = False) -> None:
        """Warn where the outputs kept in `out` were made by another model or with other
        options (the records of the runs that made them, or of a stopped one): an rsync user
        expects no change of model to go unsaid. Their makers stay in the folder's record,
        so that every rerun says it until they are made again (overwrite). `exif_read`: the
        outputs kept were read and hold no EXIF, whatever their makers' `exif` was."""
        now, formats = self.resume_record, {Path(n).suffix.lower() or ".png" for n in src.names}
        stopped = self._stopped_record(out)
        records = resume_mod.made(out) + ([stopped] if stopped else [])

        def as_made(r: dict[str, Any]) -> dict[str, Any]:
            if not exif_read:
                return now
            then = r.get("options", {}).get("exif", resume_mod.UNRECORDED["exif"])
            return {**now, "options": {**now["options"], "exif": then}}
        changed = next((c for r in records
                        if (c := resume_mod.rerun_changes(r, as_made(r), self.flags,
                                                          formats))), [])
        if not changed:
            return
        self.kept_makers = records
        warn(f"{count(kept, 'image')} kept in {out} were made otherwise than this run makes "
             f"them: {'; '.join(changed)}; {option('overwrite', True, self.flags)} sharpens "
             "them again")

    def _stopped_record(self, out: Path) -> Optional[dict[str, Any]]:
        try:
            return resume_mod.load(out, self.flags)
        except resume_mod.ResumeError:   # none: the last run into `out` ended whole
            return None

    def _not_resumable(self, spec: str, kind: str, live: bool) -> resume_mod.ResumeError:
        whose = "a FIFO's" if kind == "FIFO" else "a camera's or stream's"
        return resume_mod.ResumeError(
            f"{option('resume', True, self.flags)} goes on with a video file's run into a file "
            f"or folder; {spec} ({kind}{', live' if live else ''}) cannot be resumed "
            f"({whose} frames are not given again)")

    def _keep_resume_record(self) -> None:
        """After the output closed: no record for a finished run; a stopped run's, with how
        far it got, where its output holds what it wrote (a video replaced by this run's)."""
        out, rec, p = self.output, self.resume_record, self.progress
        if out is None or rec is None:
            return
        app = getattr(self.stop, "app", None)   # an app's stop_event: stopped part-way
        # An error raised while opening (a refused --resume) is in no list: `ran` tells. A
        # signal while the output closed (the sound's copy) came after every frame was in.
        if self.ran and not self.errors and not self.stopped_part_way \
                and not (app and app.is_set()):
            resume_mod.remove(out)
            if isinstance(self.src, ImageSource) and "last" in p:   # a library's (rerun)
                resume_mod.save_made(out, resume_mod.sealed(rec), self.kept_makers)
            return
        if "last" not in p:   # no frame of this run's reached the output
            return
        if rec["output"] == "segments":   # kept as each segment closed whole
            return
        if rec["output"] == "video":
            # Only where this run's video took the name: one discarded (a full disk, a join
            # refused) leaves an earlier run's there, which --resume would join whole to the
            # frames after this run's last.
            video = _video_sink(self.sink) if self.sink is not None else None
            if video is None or not video.replaced:
                return
            try:
                p["output_stat"] = resume_mod.output_stat(out)
            except OSError:
                return
        p["last_digest"] = resume_mod.frame_digest(p.pop("last"))
        resume_mod.save(out, resume_mod.sealed({**rec, **p}))

    def _info(self, output: Optional[Union[str, Path, Sink]]) -> dict[str, Any]:
        """What was measured, so that two stats files can be told apart: the model file and
        the thread count it ran with, --threads or else OMP_NUM_THREADS's (0: the engine's
        default, every core; None: an app's own backend, loaded with whatever it chose)."""
        o, src, proc, model = self.o, self.src, self.processor, self.backend.path
        assert src is not None
        return {"model": str(model) if model is not None else None,
                "threads": self.backend.threads if self.own_backend else None,
                "backend": dict(self.backend.describe()), "source": src.describe(),
                "live": src.live,
                "output": (type(output).__name__ if isinstance(output, Sink)
                           else str(output) if output else None),
                "show": o.show, "tile": proc.tile_runs_as,
                "overlap": proc.overlap if o.tile else 0,
                "overlap_auto": bool(o.tile) and proc.overlap_auto,
                "warmup_runs": self.warmup_runs}

    def _capture(self) -> None:
        src, stats, stop = self.src, self.stats, self.stop
        assert src is not None
        try:
            for n, fr in enumerate(chain([self.first], self.frames)):
                # Counted before the stop check: a frame whose read was under way when the run
                # stopped was still read from the source (a camera's, a paced file's last).
                stats.add("capture", fr.capture_s)
                stats.count("frames_captured")
                if stats.total and not src.frame_count:
                    stats.total = None   # read past its declared count: the count was wrong
                if stop.is_set():
                    break
                dropped = self.q_in.put(fr, stop)
                if dropped:
                    stats.count("dropped_frames", dropped)
                stats.queue_len("capture", len(self.q_in))
                # Lossless runs stop reading at the limit; live runs stop when enough frames
                # were written (frames in between may be dropped).
                if self.limit and not src.live and n + 1 >= self.limit:
                    break
            else:
                # Read to its end: a count that was an estimate (an MPEG-TS file's) is now the
                # frames it held, and the last progress line reads 60/60, not 60/65.
                if not src.live and src.frame_count and stats.total and not stop.is_set():
                    stats.total = min(src.frame_count - self.resumed_from,
                                      self.limit or src.frame_count)
        except Exception as exc:
            if src.live:
                raise
            # A lossless source failing part-way (an app's generator, a file on a dropped
            # mount): the frames it gave are written before its error is raised, where
            # stopping at once, as for Ctrl-C, lost those queued.
            self.errors.append(exc)
        finally:
            stats.count("dropped_frames", self.q_in.put(_END, stop))

    def _process(self) -> None:
        stats, stop = self.stats, self.stop
        while True:
            fr, stale = self.q_in.get_fresh(stop, self.max_age)
            if stale:
                stats.count("dropped_frames", stale)
            # Once stopped (Ctrl-C, an error, a live run's limit), the writer takes only what
            # is already sharpened: running the frames still queued would only delay the stop.
            if fr is _END or stop.is_set():
                self.q_out.put(_END, stop)
                return
            if fr.image.shape[:2] != self.size:
                self._size_changed(fr)
            t = Timings()
            self.work.begin(fr.image.shape[0] * fr.image.shape[1])
            if self.processor.auto_tiles(*fr.image.shape[:2]):
                self._say_auto_tiled(fr)
            try:
                result = self.processor(fr.image, t)
            finally:
                self.work.end()
            stats.add("pre", t.pre)
            stats.add("infer", t.infer)
            stats.add("post", t.post)
            self.q_out.put((fr, result), stop)
            stats.queue_len("output", len(self.q_out))

    def _say_auto_tiled(self, fr: Frame) -> None:
        """The first frame tiled without --tile: that it is, and why (its memory whole, or
        the engine's profile)."""
        self.auto_tiled += 1
        self.stats.info["auto_tiled"] = self.auto_tiled
        tile = self.stats.info["auto_tile"] = auto_tile(self.backend)
        if self.auto_tiled > 1 or not self.note:
            return
        h, w = fr.image.shape[:2]
        most = beyond_whole(self.backend, h, w)
        if most and h * w <= self.o.auto_tile_above:
            self.note(f"{fr.name}: {w}x{h} is larger than the engine takes whole (at most "
                      f"{most[1]}x{most[0]}, width x height, its optimisation profile): it is "
                      f"sharpened in {tile}-pixel tiles")
            return
        whole = h * w * WHOLE_FRAME_BYTES_PER_PIXEL / (1 << 30)
        self.note(f"{fr.name}: {w}x{h} ({h * w / 1e6:.1f} MP) is sharpened in {tile}-pixel "
                  f"tiles, as is every frame above {self.o.auto_tile_above / 1e6:.1f} MP: "
                  f"whole it would hold about {whole:.1f} GiB in float (README: peak memory); "
                  f"{option('tile', 0, self.flags)} runs it whole")

    def _size_changed(self, fr: Frame) -> None:
        """A stream whose frames change size part-way (a camera renegotiating, new GStreamer
        caps, an app's frames) is sharpened at each frame's own size, as the backends take any
        size (a TensorRT engine within its profile, else an error naming it) and tiles are
        planned per frame; a video output fits it into its first size and says so. Said once,
        with the tiling checks for the new size, which the first frame's did not cover. A folder
        of photos of mixed sizes is not a stream: nothing to say."""
        old, self.size = self.size, fr.image.shape[:2]
        if self.size_said or self.src is None or self.src.kind == "images":
            return
        self.size_said = True
        (h0, w0), (h, w) = old, self.size
        warn(f"{self.src.spec}: the frame size changed from {w0}x{h0} to {w}x{h} at {fr.name}; "
             "frames are sharpened at their own size")
        proc = self.processor
        for msg in tiling_warnings(h, w, self.o.tile or 0, proc.overlap, self.backend.multiple,
                                   self.backend.receptive_field, auto=proc.overlap_auto,
                                   flags=self.flags,
                                   unrecorded=self.backend.receptive_field_unrecorded,
                                   model=self.backend.path):
            if msg not in proc.tiling_said:
                proc.tiling_said.add(msg)
                warn(msg)

    def run(self) -> None:
        """Capture and infer in worker threads, write in this one, until the stream ends, the
        frame limit is reached, a stage fails or a signal stops it."""
        src, sink, stats, stop, sig = self.src, self.sink, self.stats, self.stop, self.sig
        assert src is not None and sink is not None
        if self.first is None:   # the app's stop_event came before the first frame
            stats.info["interrupted"] = False
            return
        stats.start()
        self.workers = [_Worker(name, fn, stop, self.errors)
                        for name, fn in zip(WORKER_NAMES, (self._capture, self._process))]
        if not self.o.quiet:
            self.reporter = LiveReporter(stats, self.o.report_interval,
                                         name=source_label(src.spec, src.kind)).start()
        self.phase = "running"
        if self.stats_file is not None and not self.stats_file.started:
            self.stats_file.start()   # open() found it is neither the source nor the output
        elif self.stats_file is not None:   # at once, not a period later: frames are coming
            self.stats_file.write()
        if self.notifier is not None:
            self.notifier.ready()
        with sig:
            try:
                # In the try: a thread that cannot start (a container's pids.max) ended the run
                # with the others running, the stats file left saying `running` and refreshed.
                for w in self.workers:
                    w.start()
                _write_loop(self.q_out, sink, stop, stats, self.limit if src.live else None,
                            src.live, self.video_fps, self.timed, self.progress)
            except KeyboardInterrupt as exc:
                # A second Ctrl-C leaves the queued frames unwritten and closes the output; one
                # before any signal is the app's own (its sink's "quit"), raised as an error.
                if not sig.interrupted:
                    self.errors.append(exc)
            except BaseException as exc:
                self.errors.append(exc)
            finally:
                stop.set()  # the stream is over (or failed): let capture and infer wind down
                try:
                    for w in self.workers:
                        if w.ident is not None:   # started (join refuses one that is not)
                            w.join(timeout=WORKER_JOIN_S[w.name])
                except KeyboardInterrupt:
                    pass  # a second Ctrl-C: stop waiting for a worker inside the engine
                sig.closing = True
                stats.stop()
                if self.reporter is not None:   # closed once the output is (SIGUSR1 meanwhile)
                    self.reporter.doing = "closing the output"
                # Closing the output (ffmpeg copying a long video's sound in) takes seconds
                # with no frame: said, and the file still refreshed, so that a watchdog sees
                # neither a stall nor a dead run.
                self.phase = "finishing"
                if self.notifier is not None:
                    self.notifier.stopping()
                if self.stats_file is not None:
                    self.stats_file.write()
        self.ran, self.stopped_part_way = True, sig.interrupted
        stats.info["interrupted"] = sig.interrupted
        stats.info["source"] = src.describe()   # a frame count found wrong by reading is gone
        if sig.signum:
            stats.info["signal"] = signal.Signals(sig.signum).name

    def _segment_failed(self, path: Path, exc: BaseException) -> None:
        """A segment that could not be closed (in its closing thread): the error ends the run,
        as a write's does, now rather than at the next frame, which a camera away (reconnecting)
        does not send; said at once, in a line and the --stats file (refreshed by its own
        thread: the writer, which the camera's frames wait on, does no I/O for it)."""
        self.failing = str(exc) or type(exc).__name__
        warn(f"segment {path} could not be closed, which ends the run (the one being written "
             f"is closed first): {self.failing}")
        self.stop.set()
        self.stats.ask_report()

    def _state(self) -> dict[str, Any]:
        """The --stats file's `state` while the run goes on."""
        reconnects = getattr(self.src, "reconnects", 0)
        if self.failing is not None:   # ending: what the last write will say
            return {"state": "failed", "error": self.failing, "reconnects": reconnects}
        return {"state": "reconnecting" if self.phase == "running"
                and getattr(self.src, "reconnecting", False) else self.phase,
                "reconnects": reconnects}

    def _ended(self) -> str:
        """The --stats file's `state` once the run is over: how it ended, for a monitor that
        reads the file and not the exit code."""
        if self.errors:
            return "source_lost" if isinstance(raised_first(self.errors), SourceLost) \
                else "failed"
        app = getattr(self.stop, "app", None)
        return "stopped" if self.sig.signum or (app is not None and app.is_set()) else "done"

    def close(self) -> None:
        """Close the output, the source and the backend (if this run loaded it); errors are
        kept, every closer still runs."""
        self.sig.closing = True
        # A worker still inside the engine or the source (a second Ctrl-C stopped waiting for
        # it) must not have them freed under it: the process exits right after.
        busy = {w.name for w in self.workers if w.running}
        sink = self.sink if self.sink is not None else self.user_sink
        closers = [c for c in (sink.close if sink is not None else None,
                               self.src.close if self.src is not None and "capture" not in busy
                               else None,
                               self.backend.close if self.own_backend and "infer" not in busy
                               else None) if c]
        _close_all(closers, self.errors)
        _close_all([self._keep_resume_record], self.errors)
        if self.reporter is not None:
            _close_all([self.reporter.close], self.errors)

    def finish(self) -> dict[str, Any]:
        """The stats summary, written to --stats (on failure too: what ran before the error is
        worth keeping); raises the first error."""
        summary = self.stats.summary()
        if self.output is not None:
            summary["resumed_from"] = self.resumed_from
            if self.kept_images:
                summary["kept_images"] = self.kept_images
            summary["resumable"] = resume_mod.record_path(self.output).exists()
        video = _video_sink(self.sink) if self.sink is not None else None
        if video is not None and video.frames:   # whether its video took the name (a camera's
            summary["output_replaced"] = video.replaced   # too: kept as NAME.new.EXT)
            summary["video"] = video.encoding()
        images = _inner_sink(self.sink, ImageSink) if self.sink is not None else None
        if images is not None:   # a photo's place kept, which a desk must not publish unawares
            summary["gps_kept"] = images.gps_kept
            left_out = getattr(self.src, "left_out", None)
            if left_out and left_out["images"]:   # an archive's captions: said, not lost unsaid
                summary["metadata_left_out"] = dict(left_out)
        piped = _inner_sink(self.sink, StdoutSink) if self.sink is not None else None
        if piped is not None:   # what stdout got whole: a stalled reader leaves frames out
            summary["stdout_frames"] = piped.writer.frames
        skipped = getattr(self.src, "skipped", None) if self.src is not None else None
        if skipped:
            summary["skipped_inputs"] = list(skipped)
        if self.errors:
            # Its type where it says nothing: a sink's bare `raise KeyboardInterrupt` left "".
            err = raised_first(self.errors)
            summary["error"] = str(err) or type(err).__name__
        summary["state"] = self._ended()
        summary["reconnects"] = getattr(self.src, "reconnects", 0)
        summary["recent"] = self.stats.recent()
        try:
            if self.stats_file is not None:
                self.stats_file.final(summary)
            else:
                for path in stats_paths(self.o.stats_path):
                    try:
                        write_stats_atomic(path, summary)
                    except OSError as e:
                        e.stats_path = path
                        raise
        except OSError as e:
            path = getattr(e, "stats_path", None) or stats_paths(self.o.stats_path)[0]
            # The run's own error is the one to raise, a stop's 130/143 the code to exit with
            if self.errors or summary["state"] == "stopped":
                warn(f"cannot write the stats file {path}: {e.strerror or e}")
            else:   # a full disk: "[Errno 28] ...: 'st.json'" named no option
                raise SinkError(f"{option('stats_path', path, self.flags)}: "
                                f"cannot write the run's last stats ({e.strerror or e})"
                                ) from e
        if self.errors:
            # As StreamInterrupted's: what ran before the error (an output with frames in it
            # is closed and kept), for the caller to say.
            err = raised_first(self.errors)
            try:
                err.stats = summary  # type: ignore[attr-defined]
            except AttributeError:   # an exception type without a __dict__
                pass
            raise err
        return summary


def _regular_file(path: Any) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, TypeError, ValueError):
        return False


def _close_all(closers: Iterable[Callable[[], None]], errors: list) -> None:
    """Run every closer, keeping what each raises in `errors`: a Ctrl-C landing in one (an
    app's sink flushing) left the camera open and the engine's threads running."""
    for close in closers:
        try:
            close()
        except BaseException as exc:  # noqa: BLE001 - raised by finish, once all are closed
            errors.append(exc)


# The options that are numbers: whole (True) or any; None leaves one to its default.
_NUMBERS = {"threads": True, "tile": True, "overlap": True, "width": True, "height": True,
            "fps": False, "max_frames": True, "queue_size": True, "reconnect_attempts": True,
            "timeout": False, "report_interval": False, "segment": False,
            "keep_segments": True, "keep_gb": False, "quality": True, "crf": True,
            "auto_tile_above": True}


def _check_options(o: StreamOptions, flags: bool = False) -> None:
    for name, whole in _NUMBERS.items():
        v = getattr(o, name)
        if v is not None and not is_number(v, whole):
            raise ValueError(f"run_stream: {name} must be "
                             f"{'an integer' if whole else 'a number'}, got {v!r}")
    problems = [msg for bad, msg in (
        (o.view not in ("side", "split"), f"view must be side or split, got {o.view!r}"),
        (o.max_frames is not None and o.max_frames < 0,
         f"max_frames must be >= 0 (0: all), got {o.max_frames}"),
        (o.queue_size is not None and o.queue_size < 1,
         f"queue_size must be >= 1, got {o.queue_size}"),
        (o.auto_tile_above is None or o.auto_tile_above < 1,
         f"auto_tile_above must be a number of pixels >= 1, got {o.auto_tile_above}"),
        ((o.tile or 0) < 0 or (o.overlap or 0) < 0,
         f"tile and overlap must be >= 0, got tile={o.tile} overlap={o.overlap}"),
        ((o.tile or 0) > 0 and (o.overlap or 0) >= o.tile,
         f"overlap must be smaller than tile, got tile={o.tile} overlap={o.overlap}"),
        (o.report_interval is not None and not 0 < o.report_interval < math.inf,
         f"{option('report_interval', flags=flags)} must be a number of seconds above 0, "
         f"got {o.report_interval}"),
        (o.quality is not None and not 1 <= o.quality <= 100,
         f"{option('quality', flags=flags)} must be 1 to 100, got {o.quality}"),
        (not (o.fps == 0 or o.fps is None or MIN_FPS <= o.fps <= MAX_FPS),
         f"fps must be 0 (the source's) or {MIN_FPS:g} to {MAX_FPS:g}, got {o.fps}"),
    ) if bad]
    problems += check_segment(o.segment, o.keep_segments, flags, o.keep_gb)
    # The engines' range, once, before anything is made or opened: load_backend checks it
    # too, but only after the stats folder was made, and in its own words.
    try:
        check_threads(o.threads, option("threads", flags=flags))
    except ValueError as e:
        problems.append(str(e))
    if problems:
        raise ValueError(f"run_stream: {'; '.join(problems)}")
    check_providers(o.provider, f"run_stream: {option('provider', flags=flags)}")


def _check_stats_path(path: Union[str, Path], what: str) -> None:
    """SinkError for a stats path that names stdout ('-'), or that cannot be written."""
    if is_stdio(path):   # it wrote a file named '-' where stdout was meant
        raise SinkError(f"{what}: the stats go to a file, rewritten while the run goes on "
                        "(its state, then how it ended), which '-' (stdout) cannot be; give a "
                        "file name (e.g. stats.json), or ./- for a file named '-'")
    # Spelled as a list of values is (--formats onnx,tflite-int8): it made one .prom file
    # named 's.json,s.prom'. A comma in a name of its own ('yard,north.json') is left alone.
    joined = str(path).split(",")[:-1]
    if joined and any(p.endswith((".json", ".prom")) for p in joined) \
            and not os.path.lexists(path):
        several = ("space separated (--stats s.json s.prom) or --stats again"
                   if what.startswith("--") else "as a list (stats_path=['s.json', 's.prom'])")
        raise SinkError(f"{what}: one file named with commas; several stats files are given "
                        f"{several}")
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = None
    # /dev/stdout is a link to /proc/self/fd/1, a plain file when the output is redirected.
    special = os.path.lexists(path) and any(p.startswith(("/dev/", "/proc/")) for p in
                                            (os.path.abspath(path), os.path.realpath(path)))
    if special or (mode is not None and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))):
        # The refresh renames a new file over the path: as root in a container, /dev/stdout
        # or /dev/null itself would become a plain file, and a monitor's FIFO got nothing.
        raise SinkError(f"{what} is not a regular file (a device, pipe or socket, such as "
                        "/dev/stdout): the stats file is replaced by a rename at every "
                        "refresh, which would put a plain file in its place; give a file name "
                        "(e.g. stats.json) and read it with jq or cat")
    _check_writable(path, what)


def _check_writable(path: Union[str, Path], what: str) -> None:
    """SinkError now, naming the option (`what`: `--stats PATH` or `stats_path=PATH`), if
    `path` cannot be written: otherwise the failure would come only after the whole stream had
    run."""
    if os.path.isdir(path):
        raise SinkError(f"{what} is a folder; give a file name (e.g. stats.json)")
    make_folder(Path(path).parent, what)


# A jump in a file's frame times longer than this is its clock's, not a pause to hold a frame
# over: ffmpeg's own threshold for MPEG-TS discontinuities (-dts_delta_threshold).
MAX_GAP_S = 10.0
# How many frame intervals a file's frame may be off its slot, either way, and still take the
# next one, while every gap between its frames so far was within EVEN_GAP of an interval.
# OpenCV 5 gives a file's average rate, its last frame's duration counted: a clip of even
# frames whose last one lasts twice as long, or not at all, drifts up to a frame from it by
# the end (held to half a frame, one was left out, or one repeated, and the clip called
# variable). Once a gap is uneven (a variable rate, frames lost), half a frame, as ffmpeg.
EVEN_SLACK, EVEN_GAP = 1.5, 0.25
# How far a live run's video may run ahead of the wall clock, in seconds: drops are filled in
# with repeats up to it, and frames past it (a source faster than the video's rate) left out.
LIVE_VIDEO_LEAD_S = 1.0


def _writes_video(sink: Sink) -> bool:
    """Whether `sink` writes a video file (alone, in a comparison, or beside a window)."""
    if isinstance(sink, CompareSink):
        return _writes_video(sink.inner)
    if isinstance(sink, MultiSink):
        return any(_writes_video(s) for s in sink.sinks)
    return isinstance(sink, VideoFileSink)


def _show_left_out(sink: Sink, fr: Frame, result: Any) -> None:
    """A frame left out of a live video still goes to a window beside it, which plays no rate
    (it showed a 50 fps camera at the video's 25)."""
    if isinstance(sink, MultiSink):
        for s in sink.sinks:
            if not _writes_video(s):
                s.write(fr.image, result, fr.name)


def _write_loop(q_out: FrameQueue, sink: Sink, stop: threading.Event, stats: Stats,
                live_limit: Optional[int], live: bool = False, video_fps: float = 30.0,
                timed: bool = False, progress: Optional[dict] = None) -> None:
    """Write each sharpened frame. `timed`: a file's frames go into the video's slots by their
    time in the file (Frame.t_media), as ffmpeg's -fps_mode cfr does: the last frame is
    repeated over a longer gap, a frame whose slot is already taken is left out. `progress`:
    where a stopped run got to (a resume record's), taken up and kept up to date."""
    progress = {} if progress is None else progress
    prev: Optional[int] = None
    t_first = 0.0   # capture time of the first frame written
    slots = progress.get("slots", 0)   # video slots written
    origin: Optional[float] = progress.get("origin")   # the file time of the video's first slot
    m_prev = progress.get("m_prev", 0.0)   # the last frame's time in the file
    # how far a frame may be off its slot: half a frame once a gap is uneven
    slack = progress.get("slack", EVEN_SLACK)

    def done(fr: Frame) -> None:
        progress.update(next=fr.index + 1, slots=slots, origin=origin, m_prev=m_prev,
                        slack=slack, last=fr.image)

    while True:
        # After `stop`, frames already queued are still written, then the end marker comes.
        item = q_out.get(stop)
        if item is _END:
            return
        fr, result = item
        t0 = time.perf_counter()
        if live and prev is not None:
            # The video's slots follow the wall clock, up to a second ahead of it (which
            # absorbs a paced source catching up after a slow start).
            due = round((fr.t_capture - t_first + LIVE_VIDEO_LEAD_S) * video_fps)
            if slots >= due and _writes_video(sink):
                # A source faster than the video's rate: an MJPEG camera declares none, and
                # FFmpeg's guess of 25 played a 50 fps camera's run at half speed.
                prev = fr.index
                _show_left_out(sink, fr, result)
                stats.count("left_out_frames")
                stats.count("frames_processed")
                if live_limit and stats.frames_processed >= live_limit:
                    return
                continue
            if fr.index > prev + 1:
                # Frames dropped since the last one written: a video holds the last frame over
                # the gap, as a constant-frame-rate recorder does, instead of playing the rest
                # too fast; but only up to that lead, this frame's slot kept: a source faster
                # than real time (a file streamed over HTTP, an unpaced synthetic source) drops
                # frames in no time.
                # (Past it, a sink frames are not left out of is asked for none, not fewer.)
                repeats = min(fr.index - prev - 1, max(due - slots - 1, 0))
                if repeats:
                    added = sink.repeat_last(repeats)
                    stats.count("repeated_frames", added)
                    slots += added
        if timed and fr.t_media is not None:
            t, gap, m_prev = fr.t_media, fr.t_media - m_prev, fr.t_media
            if origin is None or not 0 < gap <= MAX_GAP_S:
                # The first frame, or a clock that went back or leapt (MPEG-TS files joined, a
                # recorder's reset; a file without times reads 0 throughout): this frame takes
                # the next slot, and those after it are placed from it.
                origin = t - slots / video_fps
            elif abs(gap * video_fps - 1) > EVEN_GAP:
                slack = 0.5
            late = (t - origin) * video_fps - slots   # in frame intervals; < 0: early
            if late < -slack:
                stats.count("left_out_frames")
                stats.count("frames_processed")
                done(fr)
                continue
            if late > slack:
                added = sink.repeat_last(round(late))
                stats.count("repeated_frames", added)
                slots += added
        if prev is None:
            t_first = fr.t_capture
        prev = fr.index
        if first := progress.pop("first", None):   # before the first image is there
            first()
        sink.write(fr.image, result, fr.name)
        slots += 1
        done(fr)
        t1 = time.perf_counter()
        stats.add("write", t1 - t0)
        stats.add("end_to_end", t1 - fr.t_capture)
        stats.count("frames_processed")
        if live_limit and stats.frames_processed >= live_limit:
            return


def _refuse_output_the_glob_reaches(src: Source, output: Union[str, Path], single: bool,
                                    flags: bool) -> None:
    """SinkError where a glob source ('lib/**/*') would list the images written into the
    output folder (lib/sharp): a rerun or --resume would read them as photos of the library
    (and was refused as writing into an input folder), so a stopped run could not go on."""
    if (single or type(src) is not ImageSource or not is_glob(src.spec)
            or _video_sink_for(Path(output))
            # an input folder itself: refuse_overwriting_inputs says so in its own words
            or any(same_file(output, d) for d in {p.parent for p in src.paths})):
        return
    reached = next((n for n in src.names if glob_reaches(src.spec, Path(output) / n)), None)
    if reached is not None:
        raise SinkError(
            f"{option('output', output, flags)} lies inside what the source {src.spec!r} "
            f"reads: a rerun or {option('resume', True, flags)} would read its images "
            f"({reached}) as photos again; choose a folder outside it")


def _inner_sink(sink: Sink, kind: type) -> Optional[Any]:
    """The sink of that kind that `sink` is or holds (inside a comparison or a MultiSink)."""
    if isinstance(sink, kind):
        return sink
    if isinstance(sink, CompareSink):
        return _inner_sink(sink.inner, kind)
    if isinstance(sink, MultiSink):
        return next((v for s in sink.sinks if (v := _inner_sink(s, kind)) is not None), None)
    return None


def _video_sink(sink: Sink) -> Optional[VideoFileSink]:
    return _inner_sink(sink, VideoFileSink)


def _video_sink_for(output: Path) -> bool:
    """Whether `output_sink` writes a video to `output` (else an image folder)."""
    from .imageio import VIDEO_EXTS
    return output.suffix.lower() in VIDEO_EXTS


def _input_files(src: Source) -> list:
    """The files an output must not replace: a single input image, or a video file (a folder of
    images is guarded by its folder, cameras and streams have no file)."""
    if isinstance(src, ImageSource):
        return list(src.paths) if src.frame_count == 1 else []
    return [src.target] if isinstance(src, VideoSource) and src.kind == "video" else []


# (--codec, --crf, --encoder-preset, --threads), as a video output's encoder takes them
Codec_ = tuple[Optional[str], Optional[int], Optional[str], Optional[int]]


def _preset_recorded(o: StreamOptions) -> Optional[str]:
    """The preset a resume record holds for `o` (a file's run, never live): None for medium,
    which a record from before --encoder-preset was encoded at, as for no preset."""
    used = preset_used(o.codec, o.encoder_preset, False)
    return None if used == FILE_PRESET else used


def _make_sink(src: Source, output: Optional[Union[str, Path, Sink]], show: bool, view: str,
               stop: threading.Event, fps: float, stats: Stats, compare: bool = False,
               flags: bool = False, audio: bool = True,
               fps_asked: Optional[float] = None, note: Optional[Note] = None,
               lossless: bool = False, segment: tuple[float, int, float] = (0, 0, 0),
               quality: Optional[int] = None,
               codec: Codec_ = (None, None, None, None)) -> Sink:
    sinks: list[Sink] = []
    # The window first: one refused (no display, a headless OpenCV) leaves no output made.
    window = _window_sink(output, view, stop, stats, flags) if show else None
    try:
        if is_stdio(output):
            sinks.append(_stdout_sink(src, fps, stop, compare, view, flags, note, lossless))
        else:
            sinks += _output_sinks(src, output, view, fps, compare, flags, audio, fps_asked,
                                   lossless, segment, quality, codec)
    except BaseException:
        if window is not None:
            window.close()
        raise
    if window is not None:
        sinks.append(window)
    if not sinks:
        return NullSink()
    return sinks[0] if len(sinks) == 1 else MultiSink(sinks)


def _stdout_sink(src: Source, fps: float, stop: threading.Event, compare: bool, view: str,
                 flags: bool, note: Optional[Note], lossless: bool = False) -> Sink:
    """Y4M on stdout at the source's rate, 4:4:4 where a Y4M source was or `lossless` asks
    (else 4:2:0), with a Y4M source's pixel aspect and interlacing; raw BGR frames where the
    source's were (raw:WxH)."""
    y4m = src.reader.header if isinstance(src, StdinSource) else None
    chroma = "444" if lossless or (y4m is not None and y4m.chroma == "444") else "420jpeg"
    shape = dict(aspect=y4m.aspect, interlace=y4m.interlace) if y4m is not None else {}
    raw = isinstance(src, StdinSource) and src.raw is not None   # raw BGR out as in
    sink = StdoutSink(fps, chroma, stop=stop, note=note, flags=flags, raw=raw, **shape)
    return CompareSink(sink, view, flags) if compare else sink


def _output_sinks(src: Source, output: Optional[Union[str, Path, Sink]], view: str,
                  fps: float, compare: bool, flags: bool, audio: bool = True,
                  fps_asked: Optional[float] = None, lossless: bool = False,
                  segment: tuple[float, int, float] = (0, 0, 0),
                  quality: Optional[int] = None,
                  codec: Codec_ = (None, None, None, None)) -> list[Sink]:
    sinks: list[Sink] = []
    if isinstance(output, Sink):
        sinks.append(CompareSink(output, view, flags) if compare else output)
    elif output:
        single = isinstance(src, ImageSource) and src.frame_count == 1
        dirs = {p.parent for p in src.paths} if isinstance(src, ImageSource) else ()
        _refuse_output_the_glob_reaches(src, output, single, flags)
        file_sink = output_sink(output, fps, single, tuple(dirs),
                                _input_files(src), flags=flags, lossless=lossless,
                                segment=segment)
        if isinstance(file_sink, VideoFileSink) and encoded_by_ffmpeg(codec[0]):
            file_sink.codec, file_sink.crf, _, file_sink.encoder_threads = codec
            # A camera's encode must keep up beside the model; a file's may take its time.
            file_sink.preset = preset_used(codec[0], codec[2], src.live)
        if isinstance(file_sink, ImageSink) and isinstance(src, ImageSource):
            src.times = file_sink.times = {}   # each output dated as its photo
        if isinstance(file_sink, ImageSink) and isinstance(src, ImageSource):
            # Grayscale images are written back as grayscale, an alpha channel is kept; a
            # --compare image, colour beside colour, keeps only the colour profile its two
            # sides' values are in.
            src.layouts = file_sink.layouts = {}
            src.profile_only = compare
        # Not a FIFO's: the run read its frames, and ffmpeg's own open of it waits for a
        # writer gone or hung (the probe's 30 s, the copy's minutes).
        if audio and isinstance(file_sink, VideoFileSink) and isinstance(src, VideoSource) \
                and src.kind == "video" and os.path.isfile(src.target):
            # A local file's sound, which OpenCV's writer leaves out (a --compare video keeps
            # it too: both sides play in the source's time). A URL's is not fetched again.
            file_sink.audio_source, file_sink.audio_live = str(src.target), src.live
        # What a camera or a pipe gave is not given again: an earlier run's recording is kept,
        # and its frames numbered on.
        once = src.live or getattr(src, "once", False)
        if isinstance(file_sink, VideoFileSink) and once:
            file_sink.keep_previous = True
        if isinstance(file_sink, ImageSink) and once:
            file_sink.number_on = True
        if isinstance(file_sink, ImageSink):
            file_sink.quality = quality
            # The formats written: the output's, else each image's own (a video's frames PNG)
            exts = ({Path(output).suffix.lower()} if file_sink.single else
                    {Path(n).suffix.lower() or ".png" for n in src.names}
                    if isinstance(src, ImageSource) else {".png"})
            if quality is not None and not exts & QUALITY_EXTS:
                warn(f"{option('quality', quality, flags)} sets JPEG and WebP images' quality; "
                     f"{option('output', output, flags)} is written as "
                     f"{', '.join(sorted(exts))}, and it does not apply")
        elif quality is not None and isinstance(file_sink, VideoFileSink):
            # An editor reaching for the image knob is told the video's.
            warn(f"{option('quality', quality, flags)} sets JPEG and WebP images' quality; "
                 f"{option('output', output, flags)} is a video, whose quality "
                 f"{option('crf', None, flags)} sets (with {option('codec', 'h264', flags)} "
                 "or hevc)")
        elif quality is not None:
            warn(f"{option('quality', quality, flags)} sets JPEG and WebP images' quality; "
                 f"{option('output', output, flags)} is no image output, and it does not apply")
        if isinstance(file_sink, VideoFileSink) and isinstance(src, VideoSource) \
                and src.kind == "video":
            # Whose primaries and transfer the frames keep, said in the video's tags.
            file_sink.colour_source = str(src.target)
            # The rate the sound and the timecode are matched to: --fps where the frames are
            # placed by their times (or taken as the clip's), else the file's; 0 where neither
            # is known and the video's rate is a guess.
            file_sink.source_fps = (fps_asked if fps_asked and src.placed_at(fps_asked)
                                    else src.fps or fps_asked or 0.0)
            if src.fps_guessed and not fps_asked and not src.live:
                # Written frame by frame at the guess: a 10 fps camera's plays 2.5 times fast
                warn(f"{src.spec} declares no frame rate (raw MJPEG): "
                     f"{option('output', output, flags)} is written at FFmpeg's guess of "
                     f"{src.fps:g} fps, faster or slower than the camera recorded; "
                     f"{option('fps', flags=flags)} with the camera's rate sets it")
        if isinstance(file_sink, VideoFileSink) and isinstance(src, VideoSource) and src.sar:
            file_sink.source_sar = (src.sar, shown_url(src.spec))
        sinks.append(CompareSink(file_sink, view, flags) if compare else file_sink)
    return sinks


def _window_sink(output: Optional[Union[str, Path, Sink]], view: str, stop: threading.Event,
                 stats: Stats, flags: bool) -> WindowSink:
    ema = {"fps": 0.0, "t": None}

    def overlay() -> str:
        # Cheap running estimate: the full percentile summary is too slow per frame.
        now = time.perf_counter()
        if ema["t"] is not None and now > ema["t"]:
            inst = 1.0 / (now - ema["t"])
            ema["fps"] = inst if not ema["fps"] else 0.9 * ema["fps"] + 0.1 * inst
        ema["t"] = now
        return f"{ema['fps']:.1f} fps  dropped {stats.dropped_frames}"

    return WindowSink(view, stop, overlay, flags=flags,
                      output=None if isinstance(output, Sink) else output)
