"""What the shell would have done to command-line words that quotes kept from it."""
from __future__ import annotations

import os
import re
import sys

# An option's value given as `--out=~/x`: bash expands a ~ after = only in variable assignments.
_FLAG = re.compile(r"(--[\w-]+=)(~.*)", re.DOTALL)


def home_of(path: str) -> str:
    """`path` with a leading `~` or `~/` expanded to the home folder. `~name` is left: quoted,
    it is more likely a folder named so than another user's home (`~backup` is /var/backups
    on Debian). On Windows `~\\` too: cmd.exe never expands it, nor PowerShell in a word it
    passes to a program."""
    if sys.platform == "win32" and path.startswith("~\\"):
        return os.path.join(os.path.expanduser("~"), path[2:])
    return os.path.expanduser(path) if path == "~" or path.startswith("~/") else path


def home_expanded(words: list[str]) -> list[str]:
    """`words` with a leading `~`, or one after an option's `=`, expanded as the shell does
    unquoted: "~/Videos/Urlaub 2026" is quoted for its space, and its ~ then reached the
    program, where --out made a folder named ~ in the working directory (one `rm -rf ~` away
    from the home folder) and an input was "not found"."""
    out = []
    for word in words:
        m = _FLAG.fullmatch(word)
        out.append(m[1] + home_of(m[2]) if m else home_of(word))
    return out
