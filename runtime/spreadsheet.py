"""CSV tables that a person opens in Excel or LibreOffice as safely as pandas reads them.

Two things a plain `csv.writer` to UTF-8 got wrong there:
- no byte-order mark: Excel on Windows opens a UTF-8 file without one in the ANSI code page, so
  an image named `Straße 東京` read `StraÃŸe æ±äº¬`. The BOM costs pandas nothing (it skips
  it); Python's own csv module reads it with encoding="utf-8-sig".
- CSV injection: a text cell starting with `=`, `+`, `-` or `@` (an image or a run folder named
  `=HYPERLINK(...)`, `-3_frame`) is taken for a formula and run, or refused as a bad one. Such
  a cell gets a leading `'`, as OWASP advises, which shows it as the text it is; numbers, a
  negative one too, and a lone `-` (the "none" of runs.csv, which runs nothing) are left as
  they are. A cell holding a `;` or a tab is quoted, as one holding a comma is: Excel in German
  or French splits a .csv at `;`, LibreOffice's import dialog at a tab where ticked, and there
  `a;=cmd|...` unquoted began a cell of its own with a formula.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

# What a spreadsheet reads as the start of a formula (tab and CR too: Excel drops them first).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A cell holding one of these is quoted: the comma and the quote as any CSV, line breaks so a
# row stays one row, `;` and tab where a spreadsheet splits a row at them.
QUOTED_IF_IN = (",", '"', "\r", "\n", ";", "\t")


def spreadsheet_cell(value: Any) -> str:
    """One cell as written: "" for None, numbers as Python writes them, text that a spreadsheet
    would run as a formula behind a `'`."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if text.startswith(FORMULA_STARTS) and text != "-" and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        number = float(text)
    except ValueError:
        return False
    # "-inf", "-1_0", " -1" and "-١" (Arabic-Indic digits) are floats to Python but text, or a
    # formula, to a spreadsheet.
    return (math.isfinite(number) and text.strip() == text and "_" not in text
            and text.isascii())


def _field(text: str) -> str:
    """A cell as a CSV field: quoted (its quotes doubled) where it holds a QUOTED_IF_IN."""
    if any(c in text for c in QUOTED_IF_IN):
        return '"' + text.replace('"', '""') + '"'
    return text


def write_table_csv(path: str | os.PathLike, header: Sequence[str],
                    rows: Iterable[Sequence[Any]]) -> Path:
    """`header` and `rows` as a CSV at `path`, written atomically: UTF-8 with a BOM, CR LF line
    ends, cells by spreadsheet_cell, a name that is not UTF-8 (a Latin-1 folder) as its \\udcdf
    escape. The quoting is csv.writer's (QUOTE_MINIMAL) with `;` and tab added, which it has
    no option for."""
    from runtime.atomic import atomic_write_bytes
    text = "".join(",".join(_field(spreadsheet_cell(c)) for c in row) + "\r\n"
                   for row in (header, *rows))
    data = text.encode("utf-8-sig", "backslashreplace")
    return atomic_write_bytes(path, data)
