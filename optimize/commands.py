"""Subcommands of the optimize package (export). Placeholder until the export work lands."""
from __future__ import annotations


def add_commands(sub) -> None:
    pass
