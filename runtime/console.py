"""One table printer for every command: a rich table when rich is installed, aligned plain
text otherwise (a device with only the runtime has no rich)."""
from __future__ import annotations

import shutil
import sys
from typing import Callable, Optional, Sequence, TextIO


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]],
                file: Optional[TextIO] = None, right: Sequence[str] = (),
                row_style: Optional[Callable[[Sequence[str]], Optional[str]]] = None) -> None:
    """`right`: headers of right-aligned (numeric) columns; `row_style(row)`: a rich style."""
    file = file or sys.stdout
    rows = [[str(c) for c in r] for r in rows]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
                  for i, h in enumerate(headers)]
        print(title, file=file)
        for r in [list(headers), *rows]:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip(), file=file)
        return
    table = Table(title=title)
    for h in headers:
        table.add_column(h, justify="right" if h in right else "left", overflow="fold")
    for r in rows:
        table.add_row(*r, style=row_style(r) if row_style else None)
    width = max(120, min(200, shutil.get_terminal_size((160, 24)).columns))
    Console(file=file, width=width).print(table)
