"""The user cache folder the project writes to outside any output folder (built datasets,
benchmark artifacts): $XDG_CACHE_HOME or ~/.cache, then sharpen/<name>."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir(name: str) -> Path:
    """OSError naming XDG_CACHE_HOME where there is no home to find it in: a container's user
    (`docker run --user 1000`) without HOME or an entry in /etc/passwd, where Path.home()'s
    RuntimeError "Could not determine home directory." named neither the cache nor the fix."""
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = Path.home() / ".cache"
        except RuntimeError:
            user = f"user id {os.getuid()}" if hasattr(os, "getuid") else "this user"
            raise OSError(f"no folder for sharpen's {name} cache: HOME is not set and {user} "
                          "has no home directory in the password database; set XDG_CACHE_HOME "
                          "to a folder that can be written") from None
    return Path(base) / "sharpen" / name
