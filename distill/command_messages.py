"""The small pieces every distill command uses to refuse an input or say a line beside its
results, so that their usage errors read alike."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from runtime.cli_errors import SharpenError


def refuse(msg: str) -> int:
    """Refuse the command with a usage error naming `msg` (exit 2, no traceback)."""
    raise SharpenError(msg)


def note_line(line: str) -> None:
    """A line beside the results (a CPU limit that set the threads), on stderr."""
    print(line, file=sys.stderr)


def out_of_range(flag: str, value: float, lo: float, hi: float | None = None,
                  note: str = "") -> str:
    """The usage error when `value` is not within [lo, hi] (hi None: no upper bound), else ''.
    Written as comparisons that NaN fails (a `value < lo` test lets it through), and a finite
    hi refuses inf."""
    if lo <= value if hi is None else lo <= value <= hi:
        return ""
    want = f"in [{lo:g}, {hi:g}]" if hi is not None else f">= {lo:g}"
    return f"{flag} must be {want}{note}, got {value:g}"


def out_folder_problem(out: Path) -> str:
    """The message when --out cannot be a folder to write in (a file, or under one), found
    before any work rather than as a traceback after it; '' when it can."""
    from runtime.output_paths import file_in_the_way
    if problem := file_in_the_way(out, f"--out {out}"):
        return problem
    above = next((p for p in (out, *out.parents) if os.path.isdir(p)), None)
    if above is not None and not os.access(above, os.W_OK):
        return f"--out {out}: cannot write in {above} (permission denied)"
    return ""

