"""Progress for every long command: tqdm's bar on a terminal; off one (`> log 2>&1`, a pipe,
nohup, cron, a Kubernetes log collector, TERM=dumb) a plain timestamped line every
SHARPEN_PROGRESS_INTERVAL seconds (default 60) and one at the end, never a carriage return:
redrawn bars there were one line of the log megabytes long, which collectors split or drop.

tqdm is imported when a bar is made: the runtime-only install has none, and uses no bar."""
from __future__ import annotations

import os
import re
import sys
import time
from typing import Any, Iterable, Optional, TextIO

from runtime.cli_errors import SharpenError

INTERVAL_ENV = "SHARPEN_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 60.0

_KNOWN_TOTAL = ("{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%), {rate_fmt}, "
                "elapsed {elapsed}, eta {remaining}{postfix}")
_OPEN_TOTAL = "{desc}: {n_fmt} {unit}, {rate_fmt}, elapsed {elapsed}{postfix}"


class ProgressSettingError(SharpenError):
    """SHARPEN_PROGRESS_INTERVAL set to something that is not a number of seconds."""


def interactive(stream: Optional[TextIO] = None, notebook: bool = True,
                foreground: bool = True) -> bool:
    """Whether `stream` (default stderr) can redraw a bar in place: a terminal, but not where
    TERM=dumb (Emacs shells, some CI consoles), which take no cursor movement; a Jupyter
    notebook's output (unless `notebook` is False), which is no terminal but draws tqdm's
    carriage returns in place; and, unless `foreground` is False (a caller that asks
    `background_job` again as the job moves), not a terminal this process is a background
    job of."""
    stream = sys.stderr if stream is None else stream
    if type(stream).__module__.startswith("ipykernel."):   # Jupyter draws \r in place
        return notebook
    if os.environ.get("TERM") == "dumb":
        return False
    try:
        if not stream.isatty():
            return False
    except (AttributeError, OSError, ValueError):   # no isatty, or closed (a daemon's)
        return False
    return not (foreground and background_job(stream))


def background_job(stream: TextIO) -> bool:
    """Whether this process is a background job of the terminal `stream` is (`cmd &` from an
    interactive shell): the terminal's foreground process group is another's. Several runs
    started so, a camera each, redrew their lines in place over one another and the shell's;
    pv draws nothing there. False where the terminal is not this process's own (no job
    control to ask) or the system has none (Windows)."""
    try:
        return os.tcgetpgrp(stream.fileno()) != os.getpgrp()
    except (AttributeError, OSError, ValueError):
        return False


def line_interval() -> float:
    """Seconds between plain progress lines off a terminal (SHARPEN_PROGRESS_INTERVAL)."""
    raw = os.environ.get(INTERVAL_ENV, "").strip()
    if not raw:
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:   # NaN too
        raise ProgressSettingError(f"{INTERVAL_ENV}={raw!r} is not a number of seconds >= 0")
    return value


def progress(iterable: Optional[Iterable] = None, *, desc: str, unit: str,
             total: Optional[float] = None, quiet: bool = False,
             file: Optional[TextIO] = None, **kwargs: Any):
    """A tqdm bar, used as tqdm is (iterate it, or `update`/`set_postfix`/`close`): drawn on a
    terminal; off one, plain lines (module docstring). `quiet`: none at all. `leave=False`
    (a bar inside another job) gives off a terminal no closing line, and no line at all when
    it ends within the interval. Other keywords go to tqdm on a terminal."""
    from tqdm import tqdm

    stream = sys.stderr if file is None else file
    if quiet:
        return tqdm(iterable, total=total, desc=desc, unit=unit, file=stream, disable=True)
    if interactive(stream):
        return tqdm(iterable, total=total, desc=desc, unit=unit, file=stream, disable=False,
                    **kwargs)
    interval = line_interval()
    keep = {k: kwargs[k] for k in ("initial", "unit_scale", "smoothing", "postfix")
            if k in kwargs}
    return _lines_class(tqdm)(iterable, total=total, desc=desc.strip(), unit=unit,
                              file=stream, disable=False, leave=kwargs.get("leave", True),
                              mininterval=interval, maxinterval=max(interval, 10.0),
                              # the clock read at every update: tqdm's own count between
                              # reads (a past interval's steps) let a line come an interval late
                              miniters=1, ascii=True, interval=interval, **keep)


_LINES: dict = {}


def _lines_class(tqdm: type) -> type:
    """tqdm made to write lines (made once, as tqdm is only importable in here lazily)."""
    if tqdm in _LINES:
        return _LINES[tqdm]

    class LineProgress(tqdm):
        """Each display a whole line with its time, at most one an interval; no clearing."""

        def __init__(self, *args: Any, interval: float, **kwargs: Any) -> None:
            self._interval = interval
            self._said_n: Optional[float] = None
            self._said_at = self._began = time.time()
            super().__init__(*args, **kwargs)

        def update(self, n: float = 1) -> Optional[bool]:
            shown = super().update(n)
            # tqdm times its next redraw from last_print_t, which a pause left out of the rate
            # moves on (the trainer's validations, unpause()): the line is due by the clock.
            if not shown and not self.disable and time.time() - self._said_at >= self._interval:
                self.refresh()
            return shown

        def display(self, msg: Optional[str] = None, pos: Optional[int] = None) -> bool:
            # tqdm calls this on its own schedule (mininterval), after tqdm.write, and from
            # its monitor thread: a line only when the interval has passed and something moved.
            if msg is not None or self.disable:
                return False
            now = time.time()
            if (now - self._said_at < self._interval or self.n == self._said_n
                    or self.n == self.initial):   # nothing done yet: no rate, no eta
                return False
            self._say(now)
            return True

        def _say(self, now: float) -> None:
            self._said_at, self._said_n = now, self.n
            d = self.format_dict
            d["bar_format"] = _KNOWN_TOTAL if d.get("total") else _OPEN_TOTAL
            # Whole: tqdm cuts a line at the terminal's width as it does a bar, and these go
            # to terminals too (a background job's, TERM=dumb's), losing the ETA and loss.
            d["ncols"] = None
            # The rate (and ETA) leave out what the caller paused (the trainer's validations);
            # elapsed is the wall time since the job began, as the timestamps read: leaving
            # pauses out of it too made it go back (01:10, then 01:00) after a line said
            # during a pause.
            if d.get("rate") is None and d.get("elapsed"):
                d["rate"] = (d["n"] - d.get("initial", 0)) / d["elapsed"]
            d["elapsed"] = max(now - self._began, 0.0)
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
            try:
                # tqdm pads a rate to its bar's width (" 6.99photo/s"): one space in a line
                line = re.sub(" {2,}", " ", self.format_meter(**d))
                self.fp.write(f"{stamp} {line}\n")
                self.fp.flush()
            except (OSError, ValueError):   # a reader gone: progress is not worth an error
                pass

        def clear(self, nolock: bool = False) -> None:
            pass   # a written line stays

        def close(self) -> None:
            if self.disable:
                return
            said = self._said_n is not None
            # Nothing done (all of it done before: a rerun) says nothing.
            if (self.leave or said) and self.n not in (self._said_n, self.initial):
                self._ema_dt = lambda: None   # the closing rate: the whole run's average
                self._say(time.time())
            self.disable = True
            self._decr_instances(self)

    _LINES[tqdm] = LineProgress
    return LineProgress
