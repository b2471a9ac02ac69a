"""systemd's service notification protocol (sd_notify(3)), spoken over $NOTIFY_SOCKET directly:
READY=1 once frames come, STATUS= lines, WATCHDOG=1 while frames flow and STOPPING=1 while the
output closes, so that a `Type=notify` unit with `WatchdogSec=` restarts a run that hangs (a
camera read that never returns, a stuck ffmpeg). Nothing is sent where NOTIFY_SOCKET is unset.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from typing import Callable, Mapping, Optional

from .console import count
from .stats import Stats, periods

# How often STATUS= is refreshed where no watchdog asks for more: `systemctl status` shows it.
STATUS_INTERVAL = 10.0
# How many times its expected time a frame may spend in the engine and still count as progress.
ENGINE_SLACK = 4.0
# The share of a core the process uses or waits for, before READY=1, for its start to count as
# working (a TensorRT engine being built, a resumed clip decoded up to its stop, on a host so
# loaded it gets less); a hung open uses none and waits for none.
START_CPU_SHARE = 0.1
# EXTEND_TIMEOUT_USEC asks for this many ticks: one lost datagram does not time the start out.
EXTEND_TICKS = 3


def _address(env: Mapping[str, str]) -> Optional[str]:
    """The socket's address: a path, or an abstract one (`@name`, a leading NUL byte)."""
    addr = env.get("NOTIFY_SOCKET", "")
    if not addr or addr[0] not in "/@":   # sd_notify ignores other kinds (vsock) here too
        return None
    return "\0" + addr[1:] if addr[0] == "@" else addr


def _children_work() -> tuple[float, int]:
    """The CPU seconds (used, or waited for: `_waited`) and bytes written so far by this
    process's children (the ffmpeg that copies a recording's sound in), from /proc; (0, 0)
    where there is none to read."""
    me, cpu, written = str(os.getpid()), 0.0, 0
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return cpu, written
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()   # the name may hold spaces
            if fields[1].decode() != me:   # the parent's pid
                continue
            cpu += (int(fields[11]) + int(fields[12])) / tick   # utime, stime
            cpu += _waited(f"/proc/{pid}/task")   # starved on a loaded host
            with open(f"/proc/{pid}/io", "rb") as f:
                written += next(int(line.split()[1]) for line in f
                                if line.startswith(b"wchar:"))
        except (OSError, IndexError, ValueError, StopIteration):
            continue   # gone meanwhile, or not ours to read
    return cpu, written


def _waited(tasks: str = "/proc/self/task", skip: Optional[int] = None) -> float:
    """Seconds the threads under `tasks` (a /proc task folder) spent ready to run, waiting for
    a core (schedstat's second field), the thread `skip` (a native id) left out; 0 where
    there is none to read. A start or close starved on a loaded host waits so, a hung one
    sleeps. A thread ended since takes its wait with it: the next tick counts less."""
    waited = 0
    try:
        names = os.listdir(tasks)
    except OSError:
        return 0.0
    for name in names:
        if name == str(skip):
            continue
        try:
            with open(f"{tasks}/{name}/schedstat", "rb") as f:
                waited += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return waited / 1e9


def watchdog_seconds(env: Mapping[str, str]) -> Optional[float]:
    """WatchdogSec= as the service manager passes it (WATCHDOG_USEC), for this process only
    (WATCHDOG_PID, where set, names the main process: a child ffmpeg inherits the variables)."""
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1e6 if usec > 0 else None


class EngineWork:
    """The frame the engine is sharpening, for the watchdog: a 24 MP photo takes a dozen 1080p
    frames' time, which no `WatchdogSec=` set for a video's frames covers. Its expected time is
    its pixels at the slowest rate a frame went so far; none is known before the first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frame: Optional[tuple[float, int]] = None   # (monotonic start, pixels)
        self.seconds_per_pixel = 0.0
        # When a frame last came out of the engine: progress, whose writing comes next
        self.last_end = -float("inf")

    def begin(self, pixels: int, now: Optional[float] = None) -> None:
        with self._lock:
            self._frame = (time.monotonic() if now is None else now, max(1, pixels))

    def end(self, now: Optional[float] = None, runs: int = 1) -> None:
        """The frame is out of the engine, after `runs` runs on it (a warm-up's)."""
        with self._lock:
            if self._frame is not None and runs > 0:
                start, pixels = self._frame
                now = time.monotonic() if now is None else now
                self.seconds_per_pixel = max(self.seconds_per_pixel,
                                             (now - start) / runs / pixels)
                self.last_end = now
            self._frame = None

    def within_time(self, now: float) -> bool:
        """Whether a frame is in the engine and within ENGINE_SLACK times its expected time
        (any time for the first frame, which nothing measured: a single photo's run)."""
        with self._lock:
            if self._frame is None:
                return False
            start, pixels = self._frame
            return not self.seconds_per_pixel or \
                now - start < ENGINE_SLACK * self.seconds_per_pixel * pixels


class ServiceNotifier:
    """Tells the service manager how the run goes, from its own thread: STATUS= every
    STATUS_INTERVAL (or half the watchdog's period) with the state and the frames; before
    `ready()`, EXTEND_TIMEOUT_USEC at each of those where the start works (`_start_works`); after
    `ready()`, WATCHDOG=1 at each of those where a frame was written or came out of the engine
    within the watchdog's period, one is in the engine within its time (`work`), or the
    source is reconnecting within the attempt's delay and --timeout, none while the frames stop
    (a hung read or write: the manager then restarts the run)."""

    def __init__(self, stats: Stats, state: Callable[[], str],
                 env: Optional[Mapping[str, str]] = None,
                 work: Optional[EngineWork] = None) -> None:
        env = os.environ if env is None else env
        self.stats, self.state = stats, state
        self.work = work if work is not None else EngineWork()
        self.address = _address(env)
        self.watchdog = watchdog_seconds(env)
        self.interval = min(STATUS_INTERVAL, self.watchdog / 2) if self.watchdog else \
            STATUS_INTERVAL
        self._sock: Optional[socket.socket] = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready_at: Optional[float] = None
        self._stopping = False
        self._last = (time.monotonic(), 0)   # (when, frames) at the last STATUS
        self._progress = self._last          # (when, frames) when frames were last seen to come
        # While the source reconnects: when the attempt under way is due (VideoSource's
        # attempt_due), None where the source bounds its own attempts
        self.reconnect_due: Callable[[], Optional[float]] = lambda: None
        self._steps = self._steps_seen = 0   # the start's steps (`progress`), at the last tick
        self._cpu_seen = (time.monotonic(), time.process_time())   # (when, CPU s) at the last tick
        # After STOPPING=1, at the last tick: (when, CPU s, the children's CPU s and bytes written)
        self._close_seen: tuple[float, float, float, int] = (0.0, 0.0, 0.0, 0)
        self._thread = threading.Thread(target=self._run, name="service-notify", daemon=True)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> None:
        """One datagram; a manager gone or a full socket loses it (the run goes on): the socket
        does not block, as a manager that reads nothing would hold the run at each send."""
        if self.address is None:
            return
        with self._lock:   # the main thread's and the notifier's sends, and close
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    self._sock.setblocking(False)
                self._sock.sendto("\n".join(lines).encode(), self.address)
            except OSError:
                pass

    def start(self) -> "ServiceNotifier":
        if self.enabled:
            self._cpu_seen = (time.monotonic(), self._worked())
            self.send("STATUS=starting: loading the model, opening the source")
            self._thread.start()
        return self

    def ready(self) -> None:
        """The first frame is read and the model warm: frames come from now on."""
        if self.enabled and self._ready_at is None:
            self._ready_at = time.monotonic()
            self._last = self._progress = (self._ready_at, self.stats.frames_processed)
            self.send("READY=1", "STATUS=running: the first frame read")

    def progress(self) -> None:
        """A step of long work that writes no frame: before READY=1 (a frame a --resume read
        from a network share up to where the stopped run got, little CPU) systemd's start
        timeout is extended; after it (the stopped run's frames encoded again ahead of a
        resumed run's) the watchdog is pinged."""
        self._steps += 1

    def _start_works(self, now: float) -> bool:
        """Before READY=1: whether the start moved on since the last tick, by a step or the
        process's CPU, used or waited for (the model's load and first run, whose engine build
        says nothing)."""
        then, cpu_then = self._cpu_seen
        self._cpu_seen = (now, self._worked())
        steps, self._steps_seen = self._steps_seen, self._steps
        return self._steps != steps or \
            self._cpu_seen[1] - cpu_then >= START_CPU_SHARE * (now - then)

    def stopping(self) -> None:
        """The frames are over and the output closing: the manager's stop timeout applies, no
        longer the watchdog, extended while the close works (`_close_works`)."""
        if self.enabled and not self._stopping:
            self._close_seen = (time.monotonic(), self._others_worked(), *_children_work())
            self._steps_seen = self._steps
            self._stopping = True
            self.send("STOPPING=1", "STATUS=finishing: closing the output")

    def _others_cpu(self) -> float:
        """The process's CPU seconds but this notifier's: its look through /proc for the
        children, tens of ms a tick on a host of thousands of processes, is not the close."""
        # Alive only: a detached thread's id that ended names nothing (close() ends it, after)
        ident = self._thread.ident if self._thread.is_alive() else None
        try:
            own = time.clock_gettime(time.pthread_getcpuclockid(ident)) if ident else 0.0
        except (AttributeError, OSError):   # no per-thread clock (not Linux)
            own = 0.0
        return time.process_time() - own

    def _others_worked(self) -> float:
        """_others_cpu, and the threads' time waiting for a core but the notifier's."""
        return self._others_cpu() + _waited(skip=self._thread.native_id)

    def _worked(self) -> float:
        """The process's CPU seconds and its threads' seconds waiting for a core, but the
        notifier's wait (each tick's wake-up): what a start has used or asked for."""
        return time.process_time() + _waited(skip=self._thread.native_id)

    def _close_works(self, now: float) -> bool:
        """After STOPPING=1: whether the close moved on since the last tick, by a step (a
        resume's join), the CPU of the process or of its children (ffmpeg copying the sound
        in), used or waited for, or the bytes its children wrote (that copy on a slow disk). A
        write that hangs moves none of them."""
        seen = self._close_seen
        self._close_seen = (now, self._others_worked(), *_children_work())
        steps, self._steps_seen = self._steps_seen, self._steps
        cpu = sum(b - a for a, b in zip(seen[1:3], self._close_seen[1:3]))
        return (self._steps != steps or cpu >= START_CPU_SHARE * (now - seen[0])
                or self._close_seen[3] != seen[3])

    def _alive(self, now: float) -> bool:
        if self.watchdog is None or self._ready_at is None or self._stopping:
            return False
        steps, self._steps_seen = self._steps_seen, self._steps
        state = self.state()
        if state not in ("running", "reconnecting"):
            return False
        if self._steps != steps:
            return True
        # Frames seen to come, by the monotonic clock: the frames' wall times (last_frame_at)
        # look recent for as long as NTP set the clock back after the run started.
        frames = self.stats.frames_processed
        if frames != self._progress[1]:
            self._progress = (now, frames)
        if now - max(self._progress[0], self.work.last_end) < self.watchdog \
                or self.work.within_time(now):
            return True
        # An attempt that overran its delay and its open's and read's limits hangs (a GStreamer
        # or RTSP open that never returns): the watchdog is left to restart the run.
        due = self.reconnect_due() if state == "reconnecting" else None
        return state == "reconnecting" and (due is None or now < due)

    def _status(self, now: float) -> str:
        frames = self.stats.frames_processed
        then, before = self._last
        self._last = (now, frames)
        fps = (frames - before) / (now - then) if now > then else 0.0
        return (f"STATUS={self.state()}: {count(frames, 'frame')}, {fps:.1f} fps, "
                f"{self.stats.dropped_frames} dropped")

    def _run(self) -> None:
        for _ in periods(self._stop, self.interval, self.stats):
            now = time.monotonic()
            if self._stopping:
                # systemd >= 236 extends TimeoutStopSec= by it, as TimeoutStartSec= above
                if self._close_works(now):
                    self.send(f"EXTEND_TIMEOUT_USEC={int(EXTEND_TICKS * self.interval * 1e6)}")
                continue
            lines = [self._status(now)]
            if self._ready_at is None:
                # systemd >= 236; an older one ignores it, and TimeoutStartSec= alone applies.
                if self._start_works(now):
                    lines.append(f"EXTEND_TIMEOUT_USEC={int(EXTEND_TICKS * self.interval * 1e6)}")
            elif self._alive(now):
                lines.append("WATCHDOG=1")
            self.send(*lines)

    def close(self, status: Optional[str] = None) -> None:
        """Stops the thread; `status`: the run's last STATUS= (how it ended)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        if status:
            self.send(f"STATUS={status}")
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
