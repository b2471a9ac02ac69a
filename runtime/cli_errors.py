"""How the `sharpen` subcommands report a usage error or a failed job: one line on stderr naming
the command, exit code 2 (argparse's code for bad usage)."""
from __future__ import annotations

import sys


class SharpenError(Exception):
    """A failure reported as one line, `sharpen CMD: error: MESSAGE`, by the `sharpen` entry
    point; exit_code 2 for a usage error (bad option, missing file), 1 for failed work."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


def cli_error(command: str, msg: str) -> int:
    print(f"sharpen {command}: error: {msg}", file=sys.stderr)
    return 2


def one_line(e: BaseException) -> str:
    """An exception's message folded onto one line (the type name when it has none)."""
    return " ".join(line.strip() for line in str(e).strip().splitlines()) or type(e).__name__
