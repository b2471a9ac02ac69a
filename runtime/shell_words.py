"""What the shell would have done to command-line words that quotes kept from it."""
from __future__ import annotations

import os
import re

# A word's leading ~ (`~/x`, `~`, `~name/x`), alone or as an option's `--out=~/x` value.
_TILDE = re.compile(r"(?P<flag>--[\w-]+=)?(?P<path>~[^/\\]*(?:[/\\].*)?)", re.DOTALL)


def home_expanded(words: list[str]) -> list[str]:
    """`words` with a leading `~` expanded as the shell does unquoted: "~/Videos/Urlaub 2026"
    is quoted for its space, and its ~ then reached the program, where --out made a folder
    named ~ in the working directory (one `rm -rf ~` away from the home folder) and an input
    was "not found". `~name` of no known user stays as it is."""
    out = []
    for word in words:
        m = _TILDE.fullmatch(word)
        if m:
            word = (m["flag"] or "") + os.path.expanduser(m["path"])
        out.append(word)
    return out
