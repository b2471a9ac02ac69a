"""Text of any script in the figures (side-by-side crops, bench figures, runs compared): a photo
named `Straße 東京 🎥` or a folder `Urlaub 2026/写真` is labelled in a font that has its
characters where one is installed; where none is, one warning names the characters drawn as
boxes, not one matplotlib warning per character. A `$` is a `$`, never the start of TeX."""
from __future__ import annotations

import functools
import re
import warnings
from typing import Callable, TypeVar

from runtime.warn import warn

T = TypeVar("T")

# Families that draw Japanese, Chinese, Korean or emoji, as Linux packages, macOS and Windows
# name them; matplotlib (3.6+) takes a glyph from the first family in the list that has it.
FALLBACK_FAMILIES = ("Noto Sans CJK JP", "Noto Sans JP", "Source Han Sans JP", "IPAexGothic",
                     "IPAGothic", "TakaoGothic", "Hiragino Sans", "Yu Gothic", "Meiryo",
                     "MS Gothic", "Noto Sans CJK SC", "Microsoft YaHei", "WenQuanYi Zen Hei",
                     "Malgun Gothic", "Noto Emoji", "Segoe UI Emoji", "Segoe UI Symbol",
                     "Symbola")
_MISSING = re.compile(r"Glyph (\d+) \(.*\) missing from font\(s\)")


def any_script_text(draw: Callable[..., T]) -> Callable[..., T]:
    """`draw` (a function that builds and saves a matplotlib figure) with installed fallback
    fonts, and matplotlib's per-character "Glyph ... missing" warnings said as one."""
    @functools.wraps(draw)
    def drawn(*args, **kwargs) -> T:
        import matplotlib
        from matplotlib import font_manager
        installed = {f.name for f in font_manager.fontManager.ttflist}
        family = [*matplotlib.rcParams["font.family"],
                  *(f for f in FALLBACK_FAMILIES if f in installed)]
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            # Labels are file and folder names, which may hold `$`: matplotlib drew the text
            # between two as TeX, and died on `$\foo$.png`, losing the figure.
            with matplotlib.rc_context({"font.family": family, "text.parse_math": False}):
                result = draw(*args, **kwargs)
        missing = dict.fromkeys(chr(int(m.group(1))) for w in said
                                if (m := _MISSING.match(str(w.message))))
        # Outside catch_warnings: the caller's filters and `warning:` lines apply.
        for w in said:
            if not _MISSING.match(str(w.message)):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno,
                                       source=w.source)
        if missing:
            warn(f"no installed font draws {''.join(missing)}: the figure's labels "
                 "show them as boxes (a font such as Noto Sans CJK, package fonts-noto-cjk, "
                 "draws Japanese and Chinese)")
        return result
    return drawn


def plain_log_ticks(axis) -> None:
    """A log `axis`' tick labels as plain numbers (10, 100, 1000): matplotlib's default writes
    them as TeX (`$\\mathdefault{10^{2}}$`), drawn raw where any_script_text turns TeX off."""
    from matplotlib.ticker import LogFormatter

    class Plain(LogFormatter):
        # LogFormatter picks which ticks to label; its own text is an exponent below 1 and
        # past 10000 (1e−02, 1e+05), which runs.png's loss axis and sub-millisecond rows hit.
        def __call__(self, x, pos=None):
            return f"{x:g}" if super().__call__(x, pos) else ""

    axis.set_major_formatter(Plain())
    axis.set_minor_formatter(Plain(labelOnlyBase=False))
