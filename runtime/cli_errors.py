"""How the `sharpen` subcommands report a usage error or a failed job: one line on stderr naming
the command, exit code 2 (argparse's code for bad usage)."""
from __future__ import annotations

import sys


def cli_error(command: str, msg: str) -> int:
    print(f"sharpen {command}: error: {msg}", file=sys.stderr)
    return 2


def one_line(e: BaseException) -> str:
    """An exception's message folded onto one line (the type name when it has none)."""
    return " ".join(line.strip() for line in str(e).strip().splitlines()) or type(e).__name__
