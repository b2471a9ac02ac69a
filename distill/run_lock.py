"""One training run per out folder: the runtime's lock (runtime.run_lock), which `sharpen run`
takes on its --out too, under the names the training code and its callers import."""
from __future__ import annotations

from runtime.run_lock import (LOCK_NAME, NO_LOCKS, RunLocked, run_lock,  # noqa: F401
                              writing_into)
