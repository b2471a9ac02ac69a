"""Pipeline statistics: per-stage latency percentiles, throughput, drops; live print and JSON.

Samples live in fixed-size ring buffers so a camera running for days keeps flat memory; the
percentiles then describe the most recent `window` frames, the counters the whole run.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from typing import Any, Optional

import numpy as np

from .atomic import atomic_write_json
from .console import count

STAGES = ("capture", "pre", "infer", "post", "write", "end_to_end")


class Stats:
    """Thread-safe collector shared by the pipeline's threads."""

    def __init__(self, window: int = 10000) -> None:
        self._lock = threading.Lock()
        self._samples: dict[str, deque] = {s: deque(maxlen=window) for s in STAGES}
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

    def start(self) -> None:
        self.t_start = time.perf_counter()

    def stop(self) -> None:
        self.t_end = time.perf_counter()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._samples[stage].append(seconds)
            self._added[stage] += 1

    def count(self, field: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, field, getattr(self, field) + n)

    def queue_len(self, name: str, n: int) -> None:
        with self._lock:
            if n > self.max_queue_len.get(name, 0):
                self.max_queue_len[name] = n

    def elapsed(self) -> float:
        if self.t_start is None:
            return 0.0
        return (self.t_end or time.perf_counter()) - self.t_start

    def _percentiles(self, stage: str) -> dict[str, Optional[float]]:
        vals = np.asarray(self._samples[stage], dtype=np.float64) * 1000.0
        if vals.size == 0:
            return {"p50": None, "p90": None, "p95": None, "p99": None, "mean": None,
                    "min": None, "max": None, "n": 0}
        # p90 too: `sharpen bench` reports median and p90 for every latency it times; min and
        # max as trtexec and onnxruntime_perf_test report them (max: the one stall p99 hides).
        p50, p90, p95, p99 = np.percentile(vals, [50, 90, 95, 99])
        return {"p50": round(float(p50), 3), "p90": round(float(p90), 3),
                "p95": round(float(p95), 3),
                "p99": round(float(p99), 3), "mean": round(float(vals.mean()), 3),
                "min": round(float(vals.min()), 3), "max": round(float(vals.max()), 3),
                "n": int(vals.size)}

    def summary(self) -> dict[str, Any]:
        """Everything as a JSON-ready dict (the --stats file and run_stream's return value)."""
        with self._lock:
            elapsed = self.elapsed()
            lat = {s: self._percentiles(s) for s in STAGES if s != "end_to_end"}
            e2e = self._percentiles("end_to_end")
            out = {
                **self.info,
                "frames_processed": self.frames_processed,
                "frames_captured": self.frames_captured,
                "dropped_frames": self.dropped_frames,
                "repeated_frames": self.repeated_frames,
                "left_out_frames": self.left_out_frames,
                "elapsed_s": round(elapsed, 4),
                "throughput_fps": round(self.frames_processed / elapsed, 3) if elapsed > 0 else 0.0,
                "latency_ms": lat,
                "end_to_end_ms": e2e,
                "max_queue_len": dict(self.max_queue_len),
            }
        return out

    def line(self) -> str:
        """One-line live summary: fps and p50s of the last seconds, the counts of the run."""
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
        done, fps = s["frames_processed"], s["throughput_fps"]
        # Two lines in a row (the closing one) measure no rate: the run's is given.
        rate = (done - since[2]) / (mark[0] - since[0]) if since and \
            mark[0] - since[0] >= 0.5 else fps
        frames = count(done, "frame")
        if self.total:   # a file: how far, and how long the rest takes at the run's rate
            rest = self.total - done
            left = f"  {_duration(rest / fps)} left" if fps > 0 and rest > 0 else ""
            frames = f"{done}/{count(self.total, 'frame')}{left}"
        return (f"{frames}  {rate:.1f} fps  "
                f"e2e p50 {ms('end_to_end')} ms  infer {ms('infer')}  "
                f"pre {ms('pre')}  post {ms('post')}  cap {ms('capture')}  "
                f"write {ms('write')}  dropped {s['dropped_frames']}")


def _duration(seconds: float) -> str:
    """12s, 3m05s, 1h20m: a time left, to the unit that matters."""
    seconds = max(int(round(seconds)), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def write_json_atomic(path: str | os.PathLike, data: dict[str, Any]) -> None:
    atomic_write_json(path, data)


class LiveReporter:
    """Prints `stats.line()` about once a second from its own thread; rich when available and
    the terminal is interactive, plain lines otherwise (logs, pipes, devices without rich)."""

    def __init__(self, stats: Stats, interval: float = 1.0, stream=None) -> None:
        self.stats, self.interval = stats, interval
        self.stream = stream or sys.stderr
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stats", daemon=True)
        self._live = None

    def start(self) -> "LiveReporter":
        if self.stream.isatty():
            try:
                from rich.console import Console
                from rich.live import Live
                self._live = Live("", console=Console(file=self.stream), refresh_per_second=2,
                                  transient=False)
                self._live.start()
            except ImportError:
                self._live = None
        self._thread.start()
        return self

    def _emit(self) -> None:
        text = self.stats.line()
        if self._live is not None:
            self._live.update(text)
        else:
            print(text, file=self.stream, flush=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._emit()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self._emit()
        if self._live is not None:
            self._live.stop()
