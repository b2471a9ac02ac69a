"""What `sharpen export` says as it goes: step messages, warnings and progress bars."""
from __future__ import annotations

import sys
import warnings

from runtime.console import Console
from runtime.warn import SharpenWarning


class Progress(Console):
    """Step messages (`say`) on stderr and progress bars (runtime.progress: plain lines off a
    terminal); warnings (`warn`) as SharpenWarnings."""

    def say(self, msg: str) -> None:
        self(msg)

    def warn(self, msg: str) -> None:
        """Said with quiet too, which silences progress, not problems; a Python warning, not a
        print, so that a program calling export() can filter or record it (`sharpen` shows it
        as a `warning:` line)."""
        warnings.warn(msg, SharpenWarning, stacklevel=2)

    def bar(self, desc: str) -> "_Bar":
        """A callback (done, total) driving a progress bar; call with done == total to close,
        or use it as a context manager (a build that fails before its last call must not keep
        its duplicate of fd 2 open). Make it before a quiet_native_stderr window that calls
        it: the TFLite converter's calibration runs inside one, where a bar on sys.stderr was
        hidden with TF's noise."""
        return _Bar(desc, self.quiet)


class _Bar:
    """`Progress.bar`: a tqdm bar on a duplicate of fd 2 taken when it is made
    (runtime.console.stderr_past_windows), closed with the bar."""

    def __init__(self, desc: str, quiet: bool) -> None:
        from runtime.console import stderr_past_windows

        self.desc, self.quiet = desc, quiet
        self.out = sys.stderr if quiet else stderr_past_windows()
        self.own = self.out is not sys.stderr   # the duplicate: ours to close
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        from runtime.progress import progress

        if self.bar is None:
            self.bar = progress(total=total, desc=f"  {self.desc}", unit="crop", leave=False,
                                quiet=self.quiet, file=self.out)
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()   # (a closed bar ignores later updates)
        if self.own:
            self.out.close()

    def __enter__(self) -> "_Bar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
