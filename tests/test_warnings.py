"""Every warning the project gives is a SharpenWarning: what a program embedding it can filter or
record by that one category, and what the `sharpen` command line shows once, as a `warning: ...`
line. A plain `warnings.warn(msg)` (a UserWarning) escaped both."""
from __future__ import annotations

import ast
import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("distill", "optimize", "benchmarks", "runtime", "sharpen")


def _warnings_names(tree: ast.Module) -> tuple[set[str], set[str]]:
    """The names the module binds to the `warnings` module and to its warn functions."""
    modules, functions = {"warnings"}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.asname or a.name for a in node.names if a.name == "warnings"}
        elif isinstance(node, ast.ImportFrom) and node.module == "warnings":
            functions |= {a.asname or a.name for a in node.names
                          if a.name in ("warn", "warn_explicit")}
    return modules, functions


def _is_warnings_warn(call: ast.Call, modules: set[str], functions: set[str]) -> bool:
    f = call.func
    if isinstance(f, ast.Attribute):
        return (f.attr in ("warn", "warn_explicit") and isinstance(f.value, ast.Name)
                and f.value.id in modules)
    return isinstance(f, ast.Name) and f.id in functions


def _category(call: ast.Call) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg == "category":
            return kw.value
    return call.args[1] if len(call.args) > 1 else None


def _is_sharpen_warning(node: ast.expr | None) -> bool:
    """SharpenWarning, or a caught warning's own category (`w.category`): a library's warning
    recorded and given back unchanged is not the project's to classify."""
    return ((isinstance(node, ast.Name) and node.id == "SharpenWarning")
            or (isinstance(node, ast.Attribute) and node.attr in ("SharpenWarning",
                                                                   "category")))


def test_every_warnings_warn_of_the_project_is_a_sharpen_warning():
    """Without a category (UserWarning) or with another, a warning bypasses the command line's
    one-line display and a program's SharpenWarning filter: use `runtime.warn.warn(msg)`
    (stacklevel= for a caller's line), or pass SharpenWarning."""
    bad = []
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            modules, functions = _warnings_names(tree)
            bad += [f"{path.relative_to(REPO)}:{node.lineno}" for node in ast.walk(tree)
                    if isinstance(node, ast.Call) and _is_warnings_warn(node, modules, functions)
                    and not _is_sharpen_warning(_category(node))]
    assert not bad, "warnings.warn without SharpenWarning at " + ", ".join(bad)


def test_a_warning_clears_the_progress_bars_while_it_is_shown(capsys):
    """A warning given while a tqdm bar was drawn (labelling, the corpus, training) was
    printed onto the bar's line, breaking both; the bar is now cleared first and redrawn."""
    from tqdm import tqdm

    from runtime.warn import SharpenWarning, shown_once_as_lines, warn

    with shown_once_as_lines():
        bar = tqdm(total=10, file=sys.stderr, desc="labels", mininterval=0, ascii=True)
        bar.update(3)
        warn("a file was skipped")
        bar.update(1)
        warnings.warn("a setting does not apply", SharpenWarning)   # the trainer's way
        bar.close()
    err = capsys.readouterr().err
    for msg in ("a file was skipped", "a setting does not apply"):
        at = err.index(f"warning: {msg}")
        assert at > 0 and err[at - 1] in "\r\n", repr(err)   # not after the bar's text


def test_a_warning_shown_already_leaves_the_bars_alone(capsys):
    """The runtime warns per frame ("grayscale frames are converted to BGR"), shown once: with
    tqdm loaded (bench, a program of the user's) each repeat cleared and redrew every bar,
    30 times a second and from the pipeline's worker threads, though no line was printed."""
    from tqdm import tqdm

    from runtime.warn import shown_once_as_lines, warn

    with shown_once_as_lines():
        bar = tqdm(total=10, file=sys.stderr, desc="stream", mininterval=0, ascii=True)
        bar.update(1)
        warn("grayscale frames are converted to BGR")
        before = capsys.readouterr().err
        for _ in range(3):
            warn("grayscale frames are converted to BGR")
        again = capsys.readouterr().err
        bar.close()
    assert "warning: grayscale frames" in before
    assert again == "", repr(again)   # nothing shown, so nothing cleared or redrawn
