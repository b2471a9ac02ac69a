""""did you mean": the one suggestion every command's errors give for a misspelled name (a
command, an option, a choice, a shipped model, a preset), found the same way everywhere."""
from __future__ import annotations

import difflib
from typing import Iterable


def near(word: str, choices: Iterable[str]) -> str | None:
    """The choice `word` most likely meant: one it starts (a prefix typed short), else the
    closest spelling, else None."""
    choices = list(choices)
    starts = [c for c in choices if word and c.startswith(word)]
    if len(starts) == 1:
        return starts[0]
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """" (did you mean fast?)" for a word near one of `choices`, else ""."""
    meant = near(word, choices)
    return f" (did you mean {meant}?)" if meant else ""
