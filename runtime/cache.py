"""The user cache folder the project writes to outside any output folder (built datasets,
benchmark artifacts): $XDG_CACHE_HOME or ~/.cache, then sharpen/<name>."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir(name: str) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sharpen" / name
