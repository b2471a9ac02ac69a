"""Tables in a log, a pipe or a dumb terminal (CI, `> log 2>&1`, a screen reader's Emacs
shell): `sharpen models > models.txt` wrote rich's heavy box drawing, a long description folded
over three lines of a row, each line read aloud as "│ │ │ │ │ │ 1/4 res down to 1/32 │", and a
script reading rows got a third of one. There: plain aligned columns, a row a line."""
from __future__ import annotations

import io
import os
import re

import pytest

from runtime.console import print_table
from runtime_fixtures import drain, table_rows

BOX = re.compile("[\u2500-\u257f]")   # the box-drawing block
HEADERS = ["name", "params", "description"]
LONG = ("NAFNet-style gated U-Net at 1/4 res down to 1/32, width 32 (Jetson-class, ~20 GMAC), "
        "a description longer than any log's width " * 3).strip()
ROWS = [["edge", "4,294,800", LONG], ["fast", "40,880", "pixel-unshuffle x4"]]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def plain_env(monkeypatch):
    for name in ("FORCE_COLOR", "TERM", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_a_table_off_a_terminal_is_plain_rows_one_a_line(plain_env):
    out = io.StringIO()
    print_table("Models (per frame)", HEADERS, ROWS, file=out, right=["params"])
    text = out.getvalue()
    assert not BOX.search(text) and "\x1b" not in text and "\r" not in text, text
    lines = text.splitlines()
    assert lines[0] == "Models (per frame)", text
    assert table_rows(text) == [HEADERS, *ROWS], text
    # a right-aligned (numeric) column's numbers end where its header ends
    ends = {line.index(cell) + len(cell)
            for line, cell in zip(lines[1:], ("params", "4,294,800", "40,880"))}
    assert len(ends) == 1, text


def test_an_empty_cell_off_a_terminal_is_a_dash_not_a_gap(plain_env):
    """A blank cell closed up the columns: the row's next value read as this column's."""
    out = io.StringIO()
    print_table("bench", ["model", "ms", "SSIM"], [["fast", "", "0.91\n(7x7)  window"]],
                file=out)
    assert table_rows(out.getvalue()) == [["model", "ms", "SSIM"],
                                        ["fast", "-", "0.91 (7x7) window"]], out.getvalue()


def test_a_dumb_terminal_gets_the_plain_table_too(plain_env):
    plain_env.setenv("TERM", "dumb")
    out = _Terminal()
    print_table("Models", HEADERS, ROWS, file=out)
    assert not BOX.search(out.getvalue()) and table_rows(out.getvalue()) == [HEADERS, *ROWS]


def test_force_color_keeps_rich_tables_in_a_ci_log(plain_env):
    """CI runners that show colour set FORCE_COLOR (README: running unattended)."""
    pytest.importorskip("rich")
    plain_env.setenv("FORCE_COLOR", "1")
    out = io.StringIO()
    print_table("Models", HEADERS, ROWS, file=out)
    assert BOX.search(out.getvalue()), out.getvalue()


def test_columns_narrows_a_terminal_table_as_it_narrows_help(plain_env):
    """`COLUMNS=60 sharpen models` on a wider terminal: --help took 60 columns, the table the
    terminal's own width."""
    pytest.importorskip("rich")
    import fcntl
    import pty
    import struct
    import termios

    from rich.cells import cell_len

    plain_env.setenv("COLUMNS", "60")
    main_fd, term_fd = pty.openpty()
    fcntl.ioctl(term_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    with open(term_fd, "w", encoding="utf-8", closefd=True) as term:
        print_table("Models", HEADERS, ROWS, file=term)
    text = drain(main_fd)
    os.close(main_fd)
    lines = re.sub(r"\x1b\[[0-9;]*m", "", text.decode()).replace("\r", "").splitlines()
    assert lines and max(cell_len(line) for line in lines) <= 60, "\n".join(lines)


@pytest.mark.parametrize("boxes", [False, True])
def test_numbers_are_right_aligned_where_the_caller_named_no_column(plain_env, boxes):
    """`sharpen models` and `sharpen bench` name no `right` columns: their params, GMAC,
    PSNR and ms were left-aligned, 40,880 under 4,294,800's first digits, where export's and
    bench-compare's numbers line up on their last digit."""
    if boxes:
        pytest.importorskip("rich")
        plain_env.setenv("FORCE_COLOR", "1")
        plain_env.setenv("NO_COLOR", "1")
    out = io.StringIO()
    rows = [["edge", "4,294,800", "~20.88", "8.0 / 9.1", "1920x1080"],
            ["fast", "40,880", "-", "12.5 / 130.2", "320x180"]]
    print_table("Models", ["name", "params", "GMAC", "ms", "size"], rows, file=out)
    lines = [line for line in out.getvalue().splitlines() if "4,294,800" in line
             or "40,880" in line]
    assert len(lines) == 2, out.getvalue()
    for number in ("4,294,800|40,880", "~20.88|-", "8.0 / 9.1|12.5 / 130.2"):
        ends = {m.end() for line in lines for m in [re.search(number, line)]}
        assert len(ends) == 1, (number, out.getvalue())
    # what is no number (a size) stays left-aligned
    starts = {line.index(size) for line, size in zip(lines, ("1920x1080", "320x180"))}
    assert len(starts) == 1, out.getvalue()


def test_square_brackets_in_a_rich_table_are_text_not_markup(plain_env):
    """rich read a cell or title as markup: "student[draft].onnx" showed as "student.onnx",
    a data folder "Urlaub [2024]" lost its year, and a cell "a[/b]" stopped the command with
    rich's MarkupError, on a terminal and in a FORCE_COLOR CI log."""
    pytest.importorskip("rich")
    plain_env.setenv("FORCE_COLOR", "1")
    plain_env.setenv("NO_COLOR", "1")
    out = io.StringIO()
    print_table("compared with the baseline Urlaub [2024]/report.json", ["format", "file [name]"],
                [["onnx", "student[draft].onnx"], ["tflite", "a[/b]"]], file=out)
    text = out.getvalue()
    for said in ("Urlaub [2024]/report.json", "file [name]", "student[draft].onnx", "a[/b]"):
        assert said in text, text
