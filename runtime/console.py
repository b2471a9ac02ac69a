"""One table printer for every command: a rich table on a terminal when rich is installed,
aligned plain text, a row a line, otherwise (a log, a pipe, TERM=dumb, a device with only the
runtime, which has no rich)."""
from __future__ import annotations

import argparse
import atexit
import contextlib
import faulthandler
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
from typing import Callable, Iterator, Optional, Sequence, TextIO


def count(n: int, noun: str, plural: Optional[str] = None) -> str:
    """`n` and the noun in the number it takes: "1 frame", "3 frames", "0 frames" (`plural`
    where it is not noun + "s": "loader processes")."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def unread(n: int, source_kind: Optional[str]) -> str:
    """`n` inputs that could not be read, as the source has them: a library's photos, a
    video's damaged stretches (or a folder's files among them)."""
    return (count(n, "image") if source_kind == "images"
            else count(n, "input or stretch", "inputs or stretches") + " of the input")


# The unreadable inputs the closing lines list again, the rest left to the warnings above.
SKIPPED_LISTED = 20


def unread_listed(command: str, skipped: Sequence[str], source_kind: Optional[str],
                  limit: int = SKIPPED_LISTED, processed: Optional[bool] = True,
                  failed_as: str = "could not be read", stopped: str = "") -> str:
    """The closing lines of a command that skipped inputs it could not read: how many, and
    each as its warning said it (the first `limit`), listed again where a long log said them
    among thousands of lines. `processed`: whether anything else was (not where every input
    given was unreadable), None where that is not said (a stopped run, whose own line says
    how far it got); `failed_as`: what befell them, where it was not only reading; `stopped`:
    what ended the run before the rest were read (a frame limit), said instead."""
    n, shown = len(skipped), list(skipped[:limit])
    more = f"\n  ... and {n - len(shown)} more (listed above)" if n > len(shown) else ""
    rest = (f"; {stopped}" if stopped else "" if processed is None
            else "; the rest were processed" if processed
            else "; nothing was processed")
    return (f"sharpen {command}: {unread(n, source_kind)} {failed_as}{rest}:\n"
            + "\n".join(f"  {m}" for m in shown) + more)


def shell_join(words: Sequence[str], system: Optional[str] = None) -> str:
    """`words` as one command line to paste into this system's shell (`system`: sys.platform's
    spelling, default this one's): shlex's quoting, but on Windows, whose cmd.exe takes single
    quotes as part of a word, double quotes as its programs read them, which PowerShell takes
    too: `sharpen run --model 'C:\\my models\\a.onnx'` found no file there."""
    if (system or sys.platform) == "win32":
        return " ".join(_windows_word(str(w)) for w in words)
    import shlex
    return shlex.join(str(w) for w in words)


# What cmd.exe (&|<>^ and parentheses) or PowerShell (the rest) read as syntax outside quotes.
_WINDOWS_SYNTAX = set("&|<>^(),;{}$@#'`")


def _windows_word(word: str) -> str:
    """One word as Windows programs split their command line (list2cmdline), in double quotes
    also where it holds shell syntax: list2cmdline quotes for spaces alone, and C:\\R&D\\x,
    pasted into cmd.exe, ran D\\x as a command of its own."""
    import subprocess
    plain = subprocess.list2cmdline([word])
    if plain.startswith('"') or '"' in word or not _WINDOWS_SYNTAX.intersection(word):
        return plain
    # Backslashes before the closing quote doubled, or the last one escapes it.
    tail = "\\" * (len(word) - len(word.rstrip("\\")))
    return f'"{word}{tail}"'


def shell_quote(word: str, system: Optional[str] = None) -> str:
    """One word of a command line, quoted where this system's shell needs it (shell_join)."""
    return shell_join([word], system)


def first_line(exc: BaseException, limit: Optional[int] = 300) -> str:
    """The first line of an exception's message (its type's name when it has none), cut to
    `limit` characters: engines raise messages with tracebacks and dumps in them."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:limit] if limit else line


def brief(exc: BaseException, limit: int = 400) -> str:
    """An exception's whole message on one line, cut to `limit` characters: engines put the
    useful part (which index, what size) on the lines after the first."""
    text = " ".join(str(exc).split())
    if not text:
        return type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]],
                file: Optional[TextIO] = None, right: Sequence[str] = (),
                row_style: Optional[Callable[[Sequence[str]], Optional[str]]] = None) -> None:
    """`right`: headers of right-aligned columns besides those of numbers, which are found
    (`_numeric_columns`); `row_style(row)`: a rich style.
    A rich table on a terminal (or where FORCE_COLOR asks for one); plain aligned columns, a
    row a line, in a log, a pipe, on a dumb terminal or without rich (`_plain_table`)."""
    file = file or sys.stdout
    rows = [[str(c) for c in r] for r in rows]
    right = [*right, *_numeric_columns(headers, rows)]
    try:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table
    except ImportError:
        Table = None
    if Table is None or not _boxes_wanted(file):
        _plain_table(title, headers, rows, file, right)
        return
    # Text, not rich's markup: "student[draft].onnx" lost "[draft]", and "a[/b]" raised.
    title, said = escape(title), {h: escape(h) for h in headers}
    table = Table(title=title)
    for h in headers:
        table.add_column(said[h], justify="right" if h in right else "left", overflow="fold")
    for r in rows:
        table.add_row(*map(escape, r), style=row_style(r) if row_style else None)
    console = Console(file=file, width=_table_width(file))
    # A FORCE_COLOR log keeps the columns (a long description folds in its cell); only a
    # terminal narrower than the table gets a record per row.
    if _on_terminal(file) and \
            console.measure(table, options=console.options.update_width(10_000)).maximum \
            > console.width:
        # Folded into narrow columns, 179.6 KiB became "179." over "6 KiB": a record per row,
        # a line per column, as psql's expanded display, keeps every value whole.
        table = Table(title=title, show_header=False)
        table.add_column(style="bold", no_wrap=True)
        table.add_column(overflow="fold")
        for r in rows:
            for h, c in zip(headers, r):
                table.add_row(said[h], escape(c), style=row_style(r) if row_style else None)
            table.add_section()
    console.print(table)


# A number as the tables write one: "4,294,800", "0.5473", "+0.12", "~45", "1.2e-07", "12%",
# "3.1x", and a median with its p90, "8.0 / 9.1".
_NUMBER = r"[~+-]?\d[\d,]*(\.\d+)?(e[+-]?\d+)?[%x]?"
_NUMERIC_CELL = re.compile(rf"{_NUMBER}( / {_NUMBER})?|-|")


def _numeric_columns(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The headers of the columns whose cells are all numbers (or "-", or empty), at least one
    of them a number: right-aligned, so that digits line up, also where the caller (`sharpen
    models`, `sharpen bench`) named no `right` column."""
    return [h for i, h in enumerate(headers)
            if all(_NUMERIC_CELL.fullmatch(r[i].strip()) for r in rows if i < len(r))
            and any(r[i].strip() not in ("", "-") for r in rows if i < len(r))]


def _plain_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]],
                 file: TextIO, right: Sequence[str] = ()) -> None:
    """The title, then the headers and each row on a line of its own, in columns two spaces
    apart (numeric ones right-aligned): what a script splits, a CI log shows whole and a
    screen reader reads as words, where box drawing was read out as lines and a long cell
    folded one row over several."""
    try:
        from rich.cells import cell_len   # CJK and emoji take two columns
    except ImportError:
        cell_len = len

    def cell(text: str, width: int, header: str) -> str:
        pad = " " * (width - cell_len(text))
        return pad + text if header in right else text + pad

    # A cell on one line, single-spaced; an empty one as "-", as the tables write "none":
    # blank, the row's next value was read (by a script or a screen reader) as this column's.
    rows = [[" ".join(c.split()) or "-" for c in r] for r in rows]
    widths = [max([cell_len(h), *(cell_len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    print(title, file=file)
    for r in [list(headers), *rows]:
        print("  ".join(cell(c, w, h) for c, w, h in zip(r, widths, headers)).rstrip(),
              file=file)


def _boxes_wanted(file: TextIO) -> bool:
    """Whether a table to `file` is drawn with rich's boxes: on a terminal that is not dumb,
    or where FORCE_COLOR asks for rich output (CI runners that show colour)."""
    if os.environ.get("TERM") == "dumb":
        return False
    return _on_terminal(file) or bool(os.environ.get("FORCE_COLOR"))


def _on_terminal(file: TextIO) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def _table_width(file: TextIO) -> int:
    """A terminal's own width (a laptop's may be 60 columns: a wider table wrapped every row
    into broken lines); a log or pipe gets 120 to 200, so that no column is folded there."""
    try:
        # 0 columns: a pty nobody sized (`docker exec -t`, a CI runner), which printed nothing.
        if file.isatty() and (columns := os.get_terminal_size(file.fileno()).columns) > 0:
            # COLUMNS narrows it, as it does --help (argparse reads it): a user's own width
            return min(columns, _columns_env() or columns)
    except (AttributeError, OSError, ValueError):   # no descriptor (StringIO) or no size
        pass
    return max(120, min(200, shutil.get_terminal_size((160, 24)).columns))


def _columns_env() -> Optional[int]:
    """COLUMNS as a positive number of columns, or None."""
    try:
        return max(int(os.environ.get("COLUMNS", "")), 0) or None
    except ValueError:
        return None


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default once: not when the help already names it, and never
    `(default: None)` or `(default: False)` for required options and switches."""

    def _get_help_string(self, action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default is None or action.default is False \
                or action.default is argparse.SUPPRESS or action.required \
                or not action.option_strings:
            return text
        return super()._get_help_string(action)


# What TensorFlow, TFLite/LiteRT and absl write to fd 2 that nobody can act on: XNNPACK's
# "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", absl's INFO/WARNING lines
# ("I0000 00:00:1712345678.123456   4242 loader.cc:236] ...": before absl is set up its seconds
# are the Unix time; "I1204 22:19:35.123456 ..." after), TensorFlow's older
# "2024-05-01 12:00:00.123456: I tensorflow/...") and its note that it logs before being set up.
TF_NOISE = re.compile(r"(INFO: .*(TensorFlow Lite|delegate)"
                      r"|WARNING: All log messages before absl::InitializeLog"
                      r"|[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] "
                      r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IW] )")

def onnxruntime_telemetry_off() -> None:
    """Keep ONNX Runtime's telemetry off, before it is imported: the Linux build of 1.32, at
    its import, keeps an ID and an event store in ~/.cache/Microsoft/DeveloperTools/.onnxruntime
    for Microsoft's collector, where a run writes only to --out and --stats (a service's
    home, ProtectHome=, a camera's privacy). A variable a user set is theirs
    (ORT_DISABLE_TELEMETRY=0 keeps it on)."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def quiet_library_logs() -> None:
    """Keep OpenCV's and FFmpeg's own warnings ("moov atom not found", "can't open camera by
    index", imread's "can't open/read file") off stderr: the command's one-line error or
    warning already names the file and what failed, and printed first, theirs read as the
    error. Every command line calls it (it was `sharpen run`'s alone, so `labels` and
    `evaluate` on a broken clip led with FFmpeg's line). SHARPEN_DEBUG keeps them; a level a
    user set in the environment is theirs."""
    if os.environ.get("SHARPEN_DEBUG"):
        return
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")   # read when FFmpeg is first used
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")      # read when OpenCV first logs
    cv2 = sys.modules.get("cv2")   # imported already: its logger may be set up
    if cv2 is not None and os.environ["OPENCV_LOG_LEVEL"] == "ERROR":
        with contextlib.suppress(AttributeError):   # very old OpenCV builds lack it
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


# One redirection of fd 2 at a time: two overlapping ones (two threads loading models) restored
# fd 2 out of order, to the other's hiding place, and stderr was gone for the rest of the process.
_STDERR_LOCK = threading.RLock()


def _memory_file():
    """A file in memory (Linux's memfd_create) that fd 2 can be pointed at, or None."""
    try:
        return open(os.memfd_create("sharpen-stderr"), "w+b")
    except (AttributeError, OSError):
        return None


@contextlib.contextmanager
def quiet_native_stderr(noise: Optional[re.Pattern] = None) -> Iterator[None]:
    """Hide what native libraries (TFLite's converter and XNNPACK delegate, absl, FFmpeg) write
    straight to file descriptor 2 while the block runs; Python exceptions still propagate.
    What reaches fd 2 meanwhile is kept aside and, when the block ends (raising or not),
    written to it again except the lines matching `noise`, so another thread's messages, Python's
    own and a library's explanation of a failure are not lost. Without `noise`, nothing is
    written again (a probe whose failure is expected). Where no temp file can be made to keep
    it in, it is kept in memory (Linux), else a window with `noise` hides nothing.

    With SHARPEN_DEBUG set, nothing is hidden: what a library wrote before it crashed the
    process is lost with the window's file (no Python code runs after a fatal signal), so
    rerunning with SHARPEN_DEBUG=1 is how a user sees it."""
    if os.environ.get("SHARPEN_DEBUG"):
        yield
        return
    with _fd2_aside(to_devnull=noise is None, noise=noise):
        yield


@contextlib.contextmanager
def native_stderr_captured(noise: re.Pattern) -> Iterator[list[str]]:
    """The lines matching `noise` that native libraries (libjpeg, libpng, OpenCV's log) write
    to fd 2 while the block runs, kept off the terminal and handed to the caller: the list
    yielded holds them, as one string (their first KEPT_NOISE bytes), once the block ends
    (empty where fd 2 could not be moved). The other lines (another thread's, the window hides
    fd 2 for the whole process) are written to fd 2 then, and with SHARPEN_DEBUG set all of
    them are. For a caller that turns a library's warning into its own message naming the
    file."""
    text: list[str] = []
    debug = bool(os.environ.get("SHARPEN_DEBUG"))
    with _fd2_aside(to_devnull=False, noise=noise, show_noise=debug) as said:
        yield text
    text.append(b"".join(said).decode("utf-8", "replace"))


# How much of a library's lines a window hands its caller: the first say why; a hostile file
# can make a decoder print megabytes (libpng: two lines per 13-byte chunk with a bad CRC).
KEPT_NOISE = 1 << 16


def _write_fd2(data: bytes) -> None:
    with contextlib.suppress(OSError):
        while data:
            data = data[os.write(2, data):]


def _sort_aside(aside, noise: Optional[re.Pattern], show_noise: bool,
                said: list[bytes]) -> None:
    """The lines in `aside` matching `noise` (all of them where it is None) into `said`, up to
    KEPT_NOISE bytes, and the others (all with `show_noise`) to fd 2, a block at a time, so
    what a library printed is never all in memory at once."""
    kept, rest = 0, b""
    while True:
        block = aside.read(1 << 20)
        lines = (rest + block).splitlines(keepends=True)
        rest = b""
        if block and lines and not lines[-1].endswith((b"\n", b"\r")) and len(lines[-1]) < 1 << 20:
            rest = lines.pop()   # its end is in the next block
        shown = []
        for line in lines:
            ours = noise is None or noise.match(line.decode("utf-8", "replace"))
            if ours and kept < KEPT_NOISE:
                said.append(line)
                kept += len(line)
            if show_noise or not ours:
                shown.append(line)
        _write_fd2(b"".join(shown))
        if not block:
            return


@contextlib.contextmanager
def _fd2_aside(to_devnull: bool, noise: Optional[re.Pattern],
               show_noise: bool = False) -> Iterator[list[bytes]]:
    """fd 2 pointed at a file for the block; once it ends (raising or not) the lines written
    there meanwhile are sorted by `_sort_aside`: those matching `noise` (all where None) into
    the list yielded, the rest to fd 2 again, before another window can take fd 2. The list
    stays empty where fd 2 could not be moved: no stderr at all (a daemon), or no temp file nor
    memory file (`to_devnull`: then fd 2 goes to /dev/null, hidden all the same)."""
    said: list[bytes] = []
    with _STDERR_LOCK:
        try:
            os.fstat(2)
        except OSError:   # no stderr at all (a daemon): nothing to hide
            yield said
            return
        with contextlib.suppress(AttributeError, OSError, ValueError):
            sys.stderr.flush()
        try:
            aside = tempfile.TemporaryFile()
        except OSError:   # no folder for it (`docker run --read-only`, no tmpfs on /tmp)
            aside = _memory_file()
        if aside is None and to_devnull:
            aside = open(os.devnull, "w+b")   # a probe's: hidden, as before
        if aside is None:   # shown whole: a failure's explanation is worth the noise
            yield said
            return
        window = _Window(os.dup(2), aside, noise, show_noise)
        try:
            with _WINDOW_END:
                os.dup2(aside.fileno(), 2)
                _OPEN_WINDOWS.append(window)
            yield said
        finally:
            with _WINDOW_END:
                ended = window.ended
                if not ended:   # else the process's exit has put fd 2 back and said all
                    _OPEN_WINDOWS.remove(window)
                    _put_fd2_back(window)
            os.close(window.saved)
            if not ended:
                # A hang-up inside the window saw fd 2 on `aside`, not on the terminal now gone.
                from .cli_errors import drop_gone_outputs_after_hang_up
                drop_gone_outputs_after_hang_up()
            with aside:
                if not ended:
                    _sort_window(window, said)


class _Window:
    """A `_fd2_aside` window: fd 2's own file (`saved`), where fd 2 points meanwhile, how to
    sort what reached it, and whether fd 2 has been put back."""

    def __init__(self, saved: int, aside, noise: Optional[re.Pattern], show_noise: bool):
        self.saved, self.aside, self.noise, self.show_noise = saved, aside, noise, show_noise
        self.ended = False
        self.owner = threading.get_ident()


def _put_fd2_back(window: _Window) -> None:
    """fd 2 back on the file it had before `window`, what Python wrote in the window flushed
    into it first; with _WINDOW_END held, by the window's end or, sooner, the process's exit
    (`ended` then tells the window's end that it has been done)."""
    window.ended = True
    with contextlib.suppress(AttributeError, OSError, ValueError):
        sys.stderr.flush()
    os.dup2(window.saved, 2)


def _sort_window(window: _Window, said: list[bytes]) -> None:
    """What reached `window` while it was open, sorted (`_sort_aside`) into `said` and fd 2."""
    window.aside.seek(0)
    _sort_aside(window.aside, window.noise, window.show_noise, said)


# The windows open now, innermost last (a thread's window can hold another), and the lock on
# putting fd 2 back, which a window's end and the process's exit both do.
_OPEN_WINDOWS: list[_Window] = []
_WINDOW_END = threading.Lock()


def end_stderr_windows() -> None:
    """For a process about to exit while another thread is inside a window (the capture thread
    decoding a large image at a second Ctrl-C, which leaves by os._exit): fd 2 put back, and
    what reached it since sorted as the window's end would have, so the run's closing lines are
    not lost with the window's file. The window's own end then only closes its files. Called
    at exit too (atexit)."""
    with _WINDOW_END:
        while _OPEN_WINDOWS:
            window = _OPEN_WINDOWS.pop()
            with contextlib.suppress(OSError, ValueError):
                _put_fd2_back(window)
                _sort_window(window, [])


atexit.register(end_stderr_windows)


def _windows_of_threads_gone() -> None:
    """In a child forked while another thread was inside a window (an app's fork beside a
    decode): that thread is not in the child, so its window would never end; fd 2 is put back
    and the locks made anew, or the child's first decode waited for ever and its stderr went
    into the parent's window file. The parent's window sorts what reached that file."""
    global _STDERR_LOCK, _WINDOW_END
    me = threading.get_ident()
    gone = [w for w in _OPEN_WINDOWS if w.owner != me]
    if not gone:   # none open, or the forking thread's own: it ends them in the child too
        return
    with contextlib.suppress(OSError):
        os.dup2(gone[0].saved, 2)   # the outermost: fd 2 as it was before any window
    for w in gone:
        w.ended = True
    _OPEN_WINDOWS.clear()
    _STDERR_LOCK, _WINDOW_END = threading.RLock(), threading.Lock()


if hasattr(os, "register_at_fork"):   # (not on Windows, which does not fork)
    os.register_at_fork(after_in_child=_windows_of_threads_gone)


# The standard descriptors (0-2) that `open_closed_std_fds` found closed.
_CLOSED_AT_START: set[int] = set()


def open_closed_std_fds() -> None:
    """A command started with stdin, stdout or stderr closed (`2>&-`, a service) gets /dev/null
    there: Python then had no sys.stderr, so print(file=sys.stderr) wrote errors and warnings
    into stdout (into the video of `--out -`), and the next file opened (the output's lock)
    became fd 2, where native libraries write their messages. Which were closed is kept
    (`closed_at_start`): `--out -` into a closed stdout is still refused, not sent to
    /dev/null. For command lines' main()."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            _CLOSED_AT_START.add(fd)
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    for name, fd in (("stdout", 1), ("stderr", 2)):
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, "w", closefd=False))


def closed_at_start(fd: int) -> bool:
    """Whether standard descriptor `fd` was closed when the command started (and is /dev/null
    now: `open_closed_std_fds`)."""
    return fd in _CLOSED_AT_START


# The descriptor `report_fatal_errors` gave faulthandler; kept open for the whole process, as
# faulthandler writes to it from a signal handler at any moment.
_FATAL_FD: Optional[int] = None


def report_fatal_errors() -> None:
    """Make a native crash (a segfault or abort in the TFLite converter, a delegate, FFmpeg)
    say "Fatal Python error: Segmentation fault" and where Python was, on the real stderr even
    inside a `quiet_native_stderr` window: faulthandler writes to a duplicate of fd 2 taken
    now, which no window redirects. Without it the command vanished with status -11 and no word.

    For command lines only (their main()), not for code that embeds the API. A faulthandler
    someone else enabled (pytest, the embedding program) keeps its own file; one enabled by
    `python -X faulthandler`, PYTHONFAULTHANDLER or -X dev writes to fd 2, which a window hides,
    and is moved to the duplicate: same destination, not hidden. Nothing is done when sys.stderr
    is not fd 2 (pytest's capture, an app's log): a duplicate of fd 2 would be the wrong place.

    Why not also keep what a native library wrote inside the window before it crashed: after a
    fatal signal no Python code runs, so the window's aside file cannot be copied out then;
    copying it out as it arrives needs a forwarding thread or process (a thread can deadlock
    with the crash), and a file left behind at some path nobody is told of helps nobody."""
    global _FATAL_FD
    if _FATAL_FD is not None:   # main() runs many times in one test process
        return
    if faulthandler.is_enabled() and not _faulthandler_on_stderr_by_option():
        return
    try:
        if sys.stderr.fileno() != 2:
            return
        sys.stderr.flush()
        fd = os.dup(2)   # not inherited by children (PEP 446)
    except (AttributeError, OSError, ValueError):   # no fileno (a StringIO), or fd 2 closed
        return
    faulthandler.enable(file=fd, all_threads=True)
    _FATAL_FD = fd


def _faulthandler_on_stderr_by_option() -> bool:
    """Whether the interpreter's own options enabled faulthandler, on sys.stderr (fd 2)."""
    return bool(sys.flags.dev_mode or "faulthandler" in getattr(sys, "_xoptions", {})
                or (os.environ.get("PYTHONFAULTHANDLER") and not sys.flags.ignore_environment))


def stderr_past_windows() -> TextIO:
    """Where to write what must reach the user while a `quiet_native_stderr` window hides fd 2
    (a progress bar driven from inside one, as a converter's calibration callback is): where
    sys.stderr writes to fd 2, a stream on a duplicate of fd 2 taken now, before the window,
    that the caller closes; otherwise sys.stderr itself (an app's log, pytest's capture), which
    no window redirects."""
    try:
        if sys.stderr.fileno() == 2:
            sys.stderr.flush()
            return os.fdopen(os.dup(2), "w", buffering=1, encoding=sys.stderr.encoding,
                             errors="replace")
    except (AttributeError, OSError, ValueError):   # no fileno (a StringIO), or fd 2 closed
        pass
    return sys.stderr


@contextlib.contextmanager
def root_logging_kept(at_least: int = logging.NOTSET) -> Iterator[None]:
    """While the block runs, the root logger passes records of `at_least` and above only (ONNX
    Runtime's quantiser warns through it); afterwards its level and handlers are as they were.
    absl (TensorFlow) and logging.warning() call logging.basicConfig() on a root logger without
    handlers: the stderr handler it left made a program's own basicConfig() do nothing."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    if at_least:
        root.setLevel(max(level, at_least))
    try:
        yield
    finally:
        root.setLevel(level)
        for h in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(h)


class Console:
    """Step messages on stderr, or nothing with quiet: what every long command says."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=sys.stderr, flush=True)

    def warn(self, msg: str) -> None:
        """A warning: said with quiet too, which silences progress, not problems."""
        print(f"warning: {msg}", file=sys.stderr, flush=True)
