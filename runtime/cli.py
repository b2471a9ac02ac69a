"""`sharpen run`. Placeholder until the runtime work lands."""
from __future__ import annotations


def add_commands(sub) -> None:
    pass
