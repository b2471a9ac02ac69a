"""The project's warnings (from the runtime: a frame converted, a video frame resized, a setting
that does not apply; from training, export, evaluation and the benchmarks alike): Python
warnings of their own category, SharpenWarning, so that a program calling any of them can
filter, record or raise them; the `sharpen` command line shows each once as a `warning: ...`
line. Here in runtime/ because the runtime ships alone and the other packages import it."""
from __future__ import annotations

import contextlib
import sys
import threading
import warnings
from typing import Callable, Iterator, Optional, TextIO


class SharpenWarning(UserWarning):
    """Something the job did that the user may not expect (a frame converted, an input
    skipped, a setting that does not apply); the job goes on."""


def warn(message: str, stacklevel: int = 1) -> None:
    """`message` as a SharpenWarning, attributed to the line that calls this; stacklevel as
    warnings.warn's (2: the line calling the function that calls this, for a warning about
    what that caller passed). Where tqdm is loaded (training, labelling, the corpus; the
    runtime never loads it), its bars are cleared while the line is shown: a warning printed
    into a bar broke it."""
    reword = getattr(_thread, "reword", None)
    if reword is not None and (message := reword(message)) is None:
        return
    if getattr(warnings.showwarning, "clears_bars", False):
        # shown_once_as_lines clears them itself, for a line it prints: clearing here too
        # redrew every bar on each repeat of a per-frame warning that it does not show.
        warnings.warn(message, SharpenWarning, stacklevel=stacklevel + 1)
        return
    with _bars_cleared(sys.stderr):
        warnings.warn(message, SharpenWarning, stacklevel=stacklevel + 1)


_thread = threading.local()


@contextlib.contextmanager
def reworded(reword: Callable[[str], Optional[str]]) -> Iterator[None]:
    """While the block runs, each warning `warn` gets in this thread is `reword(message)`
    instead, or dropped where that is None: a sink made of parts (a recording's segments) says
    what each part warns of once, for the whole. Per thread: the run's other threads, and an
    app's, warn as they did."""
    previous = getattr(_thread, "reword", None)
    _thread.reword = reword
    try:
        yield
    finally:
        _thread.reword = previous


def _bars_cleared(stream: TextIO) -> contextlib.AbstractContextManager:
    """tqdm's bars on `stream` cleared for the block, where tqdm is loaded."""
    tqdm = sys.modules.get("tqdm")
    return (tqdm.tqdm.external_write_mode(file=stream) if tqdm is not None
            else contextlib.nullcontext())


@contextlib.contextmanager
def shown_once_as_lines(stream: Optional[TextIO] = None) -> Iterator[None]:
    """While the block runs, each distinct SharpenWarning is written once to `stream` (default:
    the stderr of the moment) as `warning: MESSAGE`, without the file and line of Python's
    format: what a user of the command line can act on. Other warnings are shown as before.
    The pipeline warns from its worker threads too, hence the lock."""
    seen: set[str] = set()
    lock = threading.Lock()
    with warnings.catch_warnings():
        # "always": the filters' own once-registries outlive a run (a second run in the same
        # process said nothing); this block keeps its own.
        warnings.simplefilter("always", SharpenWarning)
        previous = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if not issubclass(category, SharpenWarning):
                return previous(message, category, filename, lineno, file, line)
            text = str(message)
            with lock:
                if text in seen:
                    return
                seen.add(text)
            out = stream or sys.stderr
            with _bars_cleared(out):   # warnings.warn's own callers: the trainer, export
                print(f"warning: {text}", file=out, flush=True)

        show.clears_bars = True   # (for warn())
        warnings.showwarning = show
        yield
