"""runtime/spreadsheet.py: the CSV tables (evaluate's per_image.csv, runs' runs.csv) as a
spreadsheet opens them, in the locales and import dialogs users have, and as pandas or
Python's csv module reads them back."""
from __future__ import annotations

import csv

import pytest

from runtime.spreadsheet import spreadsheet_cell, write_table_csv

FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _read(path, delimiter=","):
    with open(path, encoding="utf-8-sig", newline="") as f:
        return list(csv.reader(f, delimiter=delimiter))


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_a_name_holding_a_semicolon_or_tab_starts_no_formula_where_a_spreadsheet_splits_there(
        tmp_path, delimiter):
    """Excel in German or French opens a .csv split at `;` (the list separator), LibreOffice's
    import dialog at a tab too where ticked: an image named `a;=cmd|...` was written
    unquoted, so there its `=cmd|...` began a cell of its own and ran as a formula. Such
    a name is quoted now, as one holding a comma is, and stays one cell."""
    names = ["a;=cmd|' /C calc'!A0", "b\t@SUM(1+1)", "c;+1+2\t-3+4"]
    path = write_table_csv(tmp_path / "t.csv", ["image", "psnr"],
                           [[n, "20.5"] for n in names])
    cells = [c for row in _read(path, delimiter) for c in row]
    assert not [c for c in cells if c.startswith(FORMULA)], cells
    # read as written, at commas: the names as they are, the numbers numbers
    assert _read(path)[1:] == [[n, "20.5"] for n in names]


def test_quoted_cells_read_back_as_written(tmp_path):
    """Quotes, commas, line breaks, empty cells and non-UTF-8 names survive the table's own
    quoting: the csv module reads back every cell as it was given."""
    rows = [['say "hi"', "a,b", "two\r\nlines", "", "Stra\udcdfe", "x;y", "tab\there"],
            ["plain", "-0.25", "1e-05", "inf", "nan", "-", "'quoted"]]
    path = write_table_csv(tmp_path / "t.csv", list("abcdefg"), rows)
    back = _read(path)
    assert back[0] == list("abcdefg") and back[1][:4] == rows[0][:4], back
    assert back[1][4] == "Stra\\udcdfe" and back[1][5:] == rows[0][5:], back
    assert back[2] == rows[1], back
    assert len(back) == 3 and path.read_bytes().count(b"\r\n") == 4   # one a row, one in a cell


def test_the_none_mark_and_numbers_stay_as_they_are_only_formula_text_is_escaped():
    """runs.csv writes `-` for a setting that is none (null in config.yaml): it came out `'-`,
    which pandas and a spreadsheet read as text with a quote, though a lone `-` runs nothing.
    Numbers in other scripts' digits (`-١٢`, Arabic-Indic) are floats to Python but a formula to
    a spreadsheet: escaped."""
    assert [spreadsheet_cell(c) for c in ("-", "-0.25", "-1e-05", "+1", "0", None)] == \
        ["-", "-0.25", "-1e-05", "+1", "0", ""]
    assert [spreadsheet_cell(c) for c in ("-١٢", "-inf", "-1_0", "--", "-x", "=1", "@a")] == \
        ["'-١٢", "'-inf", "'-1_0", "'--", "'-x", "'=1", "'@a"]
