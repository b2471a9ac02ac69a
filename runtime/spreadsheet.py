"""CSV tables that a person opens in Excel or LibreOffice as safely as pandas reads them.

Two things a plain `csv.writer` to UTF-8 got wrong there:
- no byte-order mark: Excel on Windows opens a UTF-8 file without one in the ANSI code page, so
  an image named `Straße 東京` read `StraÃŸe æ±äº¬`. The BOM costs pandas nothing (it skips
  it); Python's own csv module reads it with encoding="utf-8-sig".
- CSV injection: a text cell starting with `=`, `+`, `-` or `@` (an image or a run folder named
  `=HYPERLINK(...)`, `-3_frame`) is taken for a formula and run, or refused as a bad one. Such
  a cell gets a leading `'`, as OWASP advises, which shows it as the text it is; numbers, a
  negative one too, are left as they are.
"""
from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

# What a spreadsheet reads as the start of a formula (tab and CR too: Excel drops them first).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value: Any) -> str:
    """One cell as written: "" for None, numbers as Python writes them, text that a spreadsheet
    would run as a formula behind a `'`."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if text.startswith(FORMULA_STARTS) and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        number = float(text)
    except ValueError:
        return False
    # "-inf", "-1_0" and " -1" are floats to Python but text, or a formula, to a spreadsheet.
    return math.isfinite(number) and text.strip() == text and "_" not in text


def write_table_csv(path: str | os.PathLike, header: Sequence[str],
                    rows: Iterable[Sequence[Any]]) -> Path:
    """`header` and `rows` as a CSV at `path`, written atomically: UTF-8 with a BOM, cells by
    spreadsheet_cell, a name that is not UTF-8 (a Latin-1 folder) as its \\udcdf escape."""
    from runtime.atomic import atomic_write_bytes
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    for row in (header, *rows):
        w.writerow([spreadsheet_cell(c) for c in row])
    data = buf.getvalue().encode("utf-8-sig", "backslashreplace")
    return atomic_write_bytes(path, data)
