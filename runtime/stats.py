"""Pipeline statistics: per-stage latency percentiles, throughput, drops; live print and JSON.

A camera may run for days, so nothing grows with the frames: each stage keeps its last `window`
samples (the live line's last seconds) in a ring buffer, and the whole run in a `RunLatency`
(count, sum, min and max exact; the percentiles from log-spaced buckets). Every number the
summary gives is the whole run's: the samples' own percentiles while the window holds them all,
within RELATIVE_ACCURACY of them past it.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import stat
import sys
import threading
import time
from bisect import bisect_right
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from .atomic import atomic_write_bytes, atomic_write_json, remove_killed_writes
from .cli_errors import said_after_hang_up
from .console import count
from .host import peak_memory_mib
from .prometheus import HEAD, camera_name, is_prometheus, prometheus_text
from .warn import warn
from .progress import background_job, interactive

STAGES = ("capture", "pre", "infer", "post", "write", "end_to_end")
# How far a percentile of a run longer than the window may be from the samples' own, relative
# to it: the ring buffer gave the last 10000 frames' (5 minutes of a day's camera run), and a
# stall in its first hour was gone from the --stats file's max.
RELATIVE_ACCURACY = 0.005
# Below this a latency is a timer's resolution, counted as 0 (a held frame's capture is 0.0).
_TINY_S = 1e-9


class RunLatency:
    """One stage's latencies over a whole run in bounded memory, as DDSketch keeps them: count,
    sum, min and max exact; each sample in the bucket of its magnitude's logarithm, which
    stands for every value within RELATIVE_ACCURACY of it. Latencies of 1 ns to a day take
    about 3200 buckets however many frames come."""

    def __init__(self, accuracy: float = RELATIVE_ACCURACY) -> None:
        self.gamma = (1 + accuracy) / (1 - accuracy)
        self._per_log = 1 / math.log(self.gamma)
        self.n, self.total = 0, 0.0
        self.min, self.max = math.inf, -math.inf
        self.zeros = 0
        self.buckets: dict[int, int] = {}
        # Negative ones by their magnitude's bucket: counted as 0 they made p50 0.0 beside a
        # min and max of -1000 ms (a Source's t_capture taken from another clock).
        self.negative: dict[int, int] = {}

    def add(self, x: float) -> None:
        if not math.isfinite(x):   # no bucket holds it (math.ceil raised in the pipeline)
            raise ValueError(f"a latency must be a finite number of seconds, got {x}")
        self.n += 1
        # fsum's worth of care is not needed: 2.6 million latencies of about 1e-2 s sum to
        # 1e4 s, whose rounding (1e-12 s) is far below the 3 decimals of ms reported.
        self.total += x
        if x < self.min:
            self.min = x
        if x > self.max:
            self.max = x
        if abs(x) < _TINY_S:
            self.zeros += 1
            return
        k = math.ceil(math.log(abs(x)) * self._per_log)
        b = self.buckets if x > 0 else self.negative
        b[k] = b.get(k, 0) + 1

    def _value(self, k: int) -> float:
        """The value bucket k stands for: within the accuracy of all it holds."""
        return 2 * self.gamma ** k / (self.gamma + 1)

    def percentiles(self, qs: Sequence[float]) -> list[float]:
        """np.percentile's (linear) `qs` (0-100) of the samples, each order statistic read as
        its bucket's value, clamped to the exact min and max."""
        if not self.n:
            return [math.nan] * len(qs)
        # (sign, bucket) in value order; valued only where a rank falls (a second's summary)
        order = [(-1, k, c) for k, c in sorted(self.negative.items(), reverse=True)]
        order.append((0, 0, self.zeros))
        order += [(1, k, c) for k, c in sorted(self.buckets.items())]
        ends, upto = [], 0   # the rank just past each bucket
        for *_, c in order:
            upto += c
            ends.append(upto)

        def nth(i: int) -> float:   # the i-th smallest sample (0-based), as its bucket says
            sign, k, _ = order[bisect_right(ends, i)]
            return min(max(sign * self._value(k), self.min), self.max)

        out = []
        for q in qs:
            r = q / 100 * (self.n - 1)
            lo = math.floor(r)
            a = nth(lo)
            out.append(a + (r - lo) * (nth(lo + 1) - a) if r > lo else a)
        return out


class Stats:
    """Thread-safe collector shared by the pipeline's threads. `window`: the recent samples
    kept per stage, the live line's (and the exact percentiles of a run no longer)."""

    def __init__(self, window: int = 10000) -> None:
        self._lock = threading.Lock()
        self._samples: dict[str, deque] = {s: deque(maxlen=window) for s in STAGES}
        self._runs = {s: RunLatency() for s in STAGES}
        self.frames_captured = 0
        self.frames_processed = 0   # sharpened and written to the sink (or discarded by a null
        # sink), but for left_out_frames
        self.dropped_frames = 0     # stale frames discarded under the live policy
        # Video frames repeated over those drops (real-time file), or over a file's longer gaps
        # between frames (a variable frame rate, its frames placed by their times)...
        self.repeated_frames = 0
        self.left_out_frames = 0    # ...and frames sharpened but left out where they are closer
        self.max_queue_len: dict[str, int] = {}
        # Frames a lossless run will write (a file's count, or --max-frames): the live line's
        # progress and time left. None: unknown or live.
        self.total: Optional[int] = None
        self.t_start: Optional[float] = None
        self.t_end: Optional[float] = None
        self.info: dict[str, Any] = {}
        # The live line describes the frames since the line before last (about two seconds):
        # the window's p50 hid a latency that grew, or a stall, for minutes. Samples ever
        # added per stage, and (time, those counts, frames processed) at the last lines.
        self._added = dict.fromkeys(STAGES, 0)
        self._marks: deque = deque(maxlen=2)
        # (stage, finite) whose impossible latency was said: a negative, then a nan
        self._odd_said: set[tuple[str, bool]] = set()
        # Wall-clock times (Unix seconds) for an agent watching the --stats file from outside:
        # perf_counter's mean nothing to another process, and a stalled stream shows as a
        # last frame that grows old while the file is still refreshed.
        self.started_at: Optional[float] = None
        self.last_frame_at: Optional[float] = None
        # (time, samples added per stage, frames processed, dropped) at the last `recent()`
        self._recent_mark: Optional[tuple] = None
        # Reports asked for out of turn (SIGUSR1): a count each periodic reader compares with
        # the one it last saw. Bumped from a signal handler, so no lock is taken.
        self.reports_asked = 0

    def ask_report(self) -> None:
        """Have the live line printed and the --stats file rewritten now, not at their next
        period (SIGUSR1)."""
        self.reports_asked += 1

    def start(self) -> None:
        with self._lock:
            self.t_start = time.perf_counter()
            self.started_at = time.time()
            # The --stats file's refreshes while the model loaded marked no frames: `recent`
            # counts from here, or its first rate took in the start's seconds.
            self._recent_mark = None

    def stop(self) -> None:
        self.t_end = time.perf_counter()

    def add(self, stage: str, seconds: float) -> None:
        if not seconds >= 0 or seconds == math.inf:
            self._say_odd(stage, seconds)
            if not math.isfinite(seconds):
                # Not a time: kept, it ended the run (no log bucket holds it) or, inside the
                # window, made every percentile nan and the --stats file not JSON.
                return
        with self._lock:
            self._samples[stage].append(seconds)
            self._runs[stage].add(seconds)
            self._added[stage] += 1

    def _say_odd(self, stage: str, seconds: float) -> None:
        """Once a stage and kind: a latency no clock of this process gives, and where it came
        from (the runtime's own stages time with perf_counter; an app's Source gives the
        frames')."""
        kind = (stage, math.isfinite(seconds))
        with self._lock:
            if kind in self._odd_said:
                return
            self._odd_said.add(kind)
        fate = "kept in" if kind[1] else "left out of"
        why = {"capture": "a Source's Frame.capture_s must be the seconds its read took",
               "end_to_end": "a Source's Frame.t_capture must be time.perf_counter()'s when "
                             "the frame arrived (time.time() is another clock)"}
        warn(f"{stage} latency of {seconds} s: {why.get(stage, 'a timer went wrong')}; "
             f"such latencies are {fate} the stats")

    def kept_samples(self, stage: str) -> int:
        """What `stage` holds, in samples and buckets: bounded, however long the run."""
        with self._lock:
            run = self._runs[stage]
            return len(self._samples[stage]) + len(run.buckets) + len(run.negative) + 1

    def count(self, field: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, field, getattr(self, field) + n)
            if field == "frames_processed":
                self.last_frame_at = time.time()

    def queue_len(self, name: str, n: int) -> None:
        with self._lock:
            if n > self.max_queue_len.get(name, 0):
                self.max_queue_len[name] = n

    def elapsed(self) -> float:
        if self.t_start is None:
            return 0.0
        return (self.t_end or time.perf_counter()) - self.t_start

    def _percentiles(self, stage: str) -> dict[str, Optional[float]]:
        run = self._runs[stage]
        if run.n == 0:
            return {"p50": None, "p90": None, "p95": None, "p99": None, "mean": None,
                    "min": None, "max": None, "sum": None, "n": 0}
        # p90 too: `sharpen bench` reports median and p90 for every latency it times; min and
        # max as trtexec and onnxruntime_perf_test report them (max: the one stall p99 hides).
        qs = [50, 90, 95, 99]
        if len(self._samples[stage]) == run.n:   # the window holds them all: exact
            ps = np.percentile(np.asarray(self._samples[stage], dtype=np.float64), qs)
        else:
            ps = run.percentiles(qs)
        p50, p90, p95, p99 = (float(p) * 1000.0 for p in ps)
        return {"p50": round(p50, 3), "p90": round(p90, 3), "p95": round(p95, 3),
                "p99": round(p99, 3), "mean": round(run.total / run.n * 1000.0, 3),
                "min": round(run.min * 1000.0, 3), "max": round(run.max * 1000.0, 3),
                # exact, not mean * n: a Prometheus summary's `_sum`, which must never go down
                "sum": round(run.total * 1000.0, 3), "n": run.n}

    def summary(self) -> dict[str, Any]:
        """Everything as a JSON-ready dict (the --stats file and run_stream's return value)."""
        with self._lock:
            elapsed = self.elapsed()
            lat = {s: self._percentiles(s) for s in STAGES if s != "end_to_end"}
            e2e = self._percentiles("end_to_end")
            out = {
                **self.info,
                "frames_processed": self.frames_processed,
                # of all a file run writes (its frame count, or --max-frames): a monitor's
                # progress and time left; None for a camera's or stream's
                "frames_total": self.total,
                "frames_captured": self.frames_captured,
                "dropped_frames": self.dropped_frames,
                "repeated_frames": self.repeated_frames,
                "left_out_frames": self.left_out_frames,
                "elapsed_s": round(elapsed, 4),
                "throughput_fps": round(self.frames_processed / elapsed, 3) if elapsed > 0 else 0.0,
                "latency_ms": lat,
                "end_to_end_ms": e2e,
                "max_queue_len": dict(self.max_queue_len),
                # the whole process's peak so far (an app's own allocations too)
                "peak_memory_mib": peak_memory_mib(),
                "pid": os.getpid(),
                "started_at": _unix(self.started_at),
                "last_frame_at": _unix(self.last_frame_at),
                "updated_at": _unix(time.time()),
            }
        return out

    def recent(self) -> dict[str, Any]:
        """The frames since the last call (since the start at the first): their rate, drops
        and end-to-end p50/p90, where the run's own numbers hide a rate that fell an hour
        into a day's run."""
        with self._lock:
            now = (time.perf_counter(), dict(self._added), self.frames_processed,
                   self.dropped_frames)
            since = self._recent_mark or (self.t_start or now[0], dict.fromkeys(STAGES, 0), 0, 0)
            self._recent_mark = now
            n = now[1]["end_to_end"] - since[1]["end_to_end"]
            e2e = list(self._samples["end_to_end"])[-n:] if n else []
        seconds, done = now[0] - since[0], now[2] - since[2]
        p50, p90 = ((round(float(p) * 1000.0, 3) for p in np.percentile(e2e, [50, 90]))
                    if e2e else (None, None))
        top = round(max(e2e) * 1000.0, 3) if e2e else None   # a stall p90 hides
        return {"seconds": round(seconds, 3), "frames_processed": done,
                "fps": round(done / seconds, 3) if seconds > 0 else 0.0,
                "dropped_frames": now[3] - since[3],
                "end_to_end_ms": {"p50": p50, "p90": p90, "max": top}}

    def line(self) -> str:
        """One-line live summary: fps and p50s of the last seconds (and end-to-end's max), the
        counts of the run."""
        s = self.summary()
        with self._lock:
            mark = (time.perf_counter(), dict(self._added), self.frames_processed)
            since = self._marks[0] if self._marks else None
            recent: dict[str, Optional[list]] = dict.fromkeys(STAGES)
            for st in recent if since else ():
                n = mark[1][st] - since[1][st]
                recent[st] = list(self._samples[st])[-n:] if n else []
            self._marks.append(mark)

        def ms(stage: str) -> str:
            vals = recent[stage]
            if vals is None:   # the first line: the run so far
                p50 = (s["end_to_end_ms"] if stage == "end_to_end"
                       else s["latency_ms"][stage])["p50"]
                return "-" if p50 is None else f"{p50:.1f}"
            return f"{float(np.median(vals)) * 1000:.1f}" if vals else "-"

        def worst() -> str:   # end-to-end's max: a stall a line's p50 hides
            vals = recent["end_to_end"]
            if vals is None:
                top = s["end_to_end_ms"]["max"]
                return "-" if top is None else f"{top:.1f}"
            return f"{max(vals) * 1000:.1f}" if vals else "-"
        done, fps = s["frames_processed"], s["throughput_fps"]
        # Two lines in a row (the closing one) measure no rate, nor does one once the frames
        # have stopped (the output closing): the run's is given.
        rate = (done - since[2]) / (mark[0] - since[0]) if since and self.t_end is None \
            and mark[0] - since[0] >= 0.5 else fps
        frames = count(done, "frame")
        if self.total:   # a file: how far, and how long the rest takes at the run's rate
            rest = self.total - done
            left = f"  {duration(rest / fps)} left" if fps > 0 and rest > 0 else ""
            frames = f"{done}/{count(self.total, 'frame')}{left}"
        return (f"{frames}  {rate:.1f} fps  "
                f"e2e p50 {ms('end_to_end')} max {worst()} ms  infer {ms('infer')}  "
                f"pre {ms('pre')}  post {ms('post')}  cap {ms('capture')}  "
                f"write {ms('write')}  dropped {s['dropped_frames']}")


def duration(seconds: float) -> str:
    """12s, 3m05s, 1h20m: a time left, to the unit that matters."""
    seconds = max(int(round(seconds)), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


# How often a periodic reader looks for a report asked for out of turn (SIGUSR1).
ASKED_POLL_S = 0.2


def periods(stop: threading.Event, interval: float, stats: Stats) -> Iterator[None]:
    """Yields every `interval` seconds, and soon after `stats.ask_report()`, until `stop`."""
    seen, due = stats.reports_asked, time.monotonic() + interval
    while not stop.wait(max(0.0, min(due - time.monotonic(), ASKED_POLL_S))):
        if stats.reports_asked != seen or time.monotonic() >= due:
            seen, due = stats.reports_asked, time.monotonic() + interval
            yield


def _unix(t: Optional[float]) -> Optional[float]:
    return None if t is None else round(t, 3)


def write_stats_atomic(path: str | os.PathLike, data: dict[str, Any]) -> None:
    """The --stats file, whole or not at all: JSON, or Prometheus' text format for a name
    ending in .prom (node_exporter's textfile collector reads the folder's *.prom files)."""
    if is_prometheus(path):
        atomic_write_bytes(path, prometheus_text(data, camera_name(path)).encode())
    else:
        atomic_write_json(path, data)


# The `state`s a run's --stats file holds, while it goes on and once it ended.
STATS_STATES = frozenset({"starting", "running", "reconnecting", "finishing", "done",
                          "stopped", "source_lost", "failed"})


def stats_file_or_none(path: str | os.PathLike) -> bool:
    """Whether `path` holds no file, an empty one or an earlier run's stats: one a run may
    replace before it has checked that --stats names neither its source nor its output,
    which the first write would destroy."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False   # a FIFO's read waits for a writer: the run never started
        with open(path, "rb") as f:
            head = f.read(1 << 20)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    if not head.strip():
        return True
    if is_prometheus(path):
        return head.startswith(HEAD.encode())
    try:
        data = json.loads(head)
    except ValueError:   # not JSON, or over a megabyte: no stats file of ours
        return False
    # Every write of a run's has these: another program's status file has a state and a pid
    return (isinstance(data, dict) and isinstance(data.get("state"), str)
            and data["state"] in STATS_STATES
            and {"pid", "updated_at", "frames_processed"} <= data.keys())


# Seconds between refreshes of the --stats file while a run goes on, where --report-interval
# does not set it: a days-long camera run wrote the file only at its end, so a monitor had
# nothing to read and a crash (SIGKILL, a power cut) left none.
STATS_FILE_INTERVAL = 10.0


def stats_paths(paths: Any) -> list:
    """A run's --stats files: none, one path, or several (`--stats s.json --stats s.prom`: a
    JSON summary for a health check and jq, and a textfile for Prometheus), each written
    alike."""
    if not paths:
        return []
    return [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)


class StatsFile:
    """Rewrites the --stats file (atomically: a reader never sees half of it) every `interval`
    seconds from its own thread from the run's start (before the model loads) until its output
    is closed: the summary, `state()`'s fields (the run's state: starting, running,
    reconnecting, finishing), `refresh_s` (the period: a reader tells a dead run by an
    `updated_at` several periods old) and `recent` (the frames since the last write).
    `final()` stops the refreshes and writes how the run ended, which none can overwrite.
    `path` may be several (`stats_paths`), each written with the same numbers."""

    def __init__(self, path: Any, stats: Stats, interval: Optional[float],
                 state: Callable[[], dict[str, Any]]) -> None:
        self.paths, self.stats, self.state = stats_paths(path), stats, state
        self.path = self.paths[0]
        self.interval = STATS_FILE_INTERVAL if interval is None else interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._closed = False
        self._failed: set[str] = set()   # the paths whose refresh failed: said once each
        self.ended = False   # final() was called: the file says how the run ended
        self.started = False
        self._thread = threading.Thread(target=self._run, name="stats-file", daemon=True)

    def start(self) -> "StatsFile":
        self.started = True
        # A refresh a kill cut short left its temp file (one more a kill, for days of runs)
        for path in self.paths:
            with contextlib.suppress(OSError):
                remove_killed_writes(Path(path).parent, Path(path).name)
        self.write()   # at once: a monitor sees the run (its pid, state) before a frame is done
        self._thread.start()
        return self

    def write(self) -> None:
        with self._lock:
            if self._closed:
                return
            summary = {**self.stats.summary(), **self.state(), "refresh_s": self.interval,
                       "recent": self.stats.recent()}
            for path in self.paths:   # one that fails leaves the others refreshed
                try:
                    write_stats_atomic(path, summary)
                except Exception as e:  # noqa: BLE001 - a full disk, a folder gone: said below
                    # The run goes on (its frames matter more than its stats), where this
                    # thread's traceback said nothing of it; said once, and the final write,
                    # which raises, says it again if it still fails.
                    if str(path) not in self._failed:
                        self._failed.add(str(path))
                        why = getattr(e, "strerror", None) or e
                        warn(f"cannot refresh the stats file {path}: {why}; the run goes on")

    def _run(self) -> None:
        for _ in periods(self._stop, self.interval, self.stats):
            self.write()

    def close(self) -> None:
        self._stop.set()
        with self._lock:   # after a write under way: none comes after the final one
            self._closed = True
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def final(self, summary: dict[str, Any]) -> None:
        """The last write, how the run ended (raises where it cannot be written: the run's
        error then, where a refresh's failure was only said)."""
        self.close()
        self.ended = True
        failed: Optional[OSError] = None
        for path in self.paths:   # each written, though one fails: its error raised after
            try:
                write_stats_atomic(path, {**summary, "refresh_s": self.interval})
            except OSError as e:
                e.stats_path = path   # which of the files, for the message
                failed = failed or e
        if failed is not None:
            raise failed


# Seconds between live lines: on a terminal, where each replaces the last (rich) or scrolls
# past; and in a log (a file, a pipe, the journal of a service), where each stays: once a
# second was 86,400 lines a day of a camera service's journal.
TERMINAL_INTERVAL, LOG_INTERVAL = 1.0, 60.0


class LiveReporter:
    """Prints `stats.line()` every `interval` seconds from its own thread (None: once a second
    on a terminal, once a minute in a log); rich when available and the terminal is
    interactive, plain lines otherwise (logs, pipes, devices without rich, TERM=dumb), each
    with its time in a log, where nothing else dates it (cron's mail, `>> run.log`). On a
    terminal the job is asked again at each line, as `fg`, and Ctrl-Z then `bg`, move it while
    the run goes on: in the background, plain dated lines (a minute apart without `interval`),
    in the foreground the line redrawn in place. `name`: the source, which a dated line
    names after its time, as cameras' runs sharing one log are told apart by it."""

    def __init__(self, stats: Stats, interval: Optional[float] = None, stream=None,
                 name: Optional[str] = None) -> None:
        self.stream, self.name = stream or sys.stderr, name
        self.tty = interactive(self.stream, notebook=False, foreground=False)
        self.terminal = self.tty and not background_job(self.stream)   # rich's line
        # A background job's lines are a log's; a terminal's tick stays a second, to notice
        # `fg` within one.
        self._log_every = LOG_INTERVAL if interval is None else interval
        if interval is None:
            interval = TERMINAL_INTERVAL if self.tty else LOG_INTERVAL
        self.stats, self.interval = stats, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stats", daemon=True)
        self._live, self._rich = None, True
        self._logged_at = time.monotonic()   # a background job's first line: a minute on
        self._asks = stats.reports_asked
        # What the run does with no frame coming, said after the lines printed meanwhile (a
        # stop waits while the output closes): a line of 0 fps otherwise looks hung.
        self.doing: Optional[str] = None

    def start(self) -> "LiveReporter":
        self._follow_job()
        self._thread.start()
        return self

    def _follow_job(self) -> None:
        """rich's line while the job holds the terminal's foreground; none in the background,
        where its redraws went over the shell's and other jobs' lines."""
        if self.tty:
            self.terminal = not background_job(self.stream)
        if self.terminal and self._live is None and self._rich:
            try:
                from rich.console import Console
                from rich.live import Live
            except ImportError:
                self._rich = False
                return
            # Drawn at each line only: rich's own refresh thread, woken with the job by `bg`,
            # redrew it over the prompt the shell had just written, before the line's tick.
            self._live = Live("", console=Console(file=self.stream), auto_refresh=False,
                              transient=False)
            self._live.start()
        elif not self.terminal and self._live is not None:
            # Its last drawing stays as it was: rich's stop draws it once more, from where
            # it was, over what the shell wrote since (its prompt); only the cursor comes back.
            live, self._live, self._logged_at = self._live, None, time.monotonic()
            live.console.file = io.StringIO()
            live.stop()
            print("\x1b[?25h", end="", file=self.stream, flush=True)

    def _emit(self, final: bool = False) -> None:
        # The last line goes as the lines before it: a terminal hung up by then (the SIGHUP
        # that stops the run) has no foreground to follow.
        if not final:
            self._follow_job()
        asked, self._asks = self.stats.reports_asked != self._asks, self.stats.reports_asked
        now = time.monotonic()
        if (self.tty and not self.terminal and not (final or asked)
                and now - self._logged_at < self._log_every):
            return   # a background job ticks as a terminal's line does, logs as a log does
        text = self.stats.line()
        if self.doing and not final:
            text += f"  ({self.doing})"
        if self._live is not None:
            self._live.update(text, refresh=True)   # now, not at its next tick
            return
        self._logged_at = now
        stamp = "" if self.terminal else time.strftime("%Y-%m-%d %H:%M:%S ") + (
            f"{self.name}: " if self.name else "")
        print(stamp + text, file=self.stream, flush=True)

    def _run(self) -> None:
        for _ in periods(self._stop, self.interval, self.stats):
            self._emit()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        with said_after_hang_up():
            self._emit(final=True)
        if self._live is not None:
            self._live.stop()
