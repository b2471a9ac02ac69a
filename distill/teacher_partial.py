"""The rows of one image `sharpen teacher` had finished when it was stopped, kept in its --out
so that the same command goes on from them: a 12 MP photo is an hour of a loaded CPU's time,
and Ctrl-C half-way kept nothing of it."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np


class PartialImage:
    """One image's output rows so far, float32 in DATA (a memmap the tiles are blended into),
    and how many rows of it are done in FILE, for the image (its output name and input file's
    path, size and mtime) and the run's settings. One at a time: the run's lock is held."""

    DATA = ".sharpen-teacher.partial.npy"
    FILE = ".sharpen-teacher.partial.json"

    def __init__(self, out: Path, settings: dict):
        # Those that change its pixels: a photo stopped and run again with --bits16 or
        # --no-exif goes on from its rows (it is quantised and tagged when it is written).
        self.out = out
        self.settings = {k: v for k, v in settings.items() if k not in ("bits", "exif")}
        self.rows, self.height, self.shape = 0, 0, (0, 0)
        # Why open() dropped another image's or other settings' rows, for a warning: one
        # stopped photo is kept per --out, and the interrupted line said it goes on.
        self.dropped = ""
        self.unkept = ""
        self.array: Optional[np.ndarray] = None
        self._key: dict = {}

    def open(self, src: Path, rel: Path, shape: tuple[int, ...], resume: bool) -> int:
        """The array this image's output goes into, and the rows of it an earlier run of the
        same image and settings finished (0 where there is none, or `resume` is False)."""
        import json

        st = src.stat()
        self._key = {"name": str(rel), "input": [str(src.resolve()), st.st_size,
                                                  st.st_mtime_ns],
                     "shape": list(shape), "settings": self.settings}
        self.shape, self.height, self.rows, self.dropped = tuple(shape), shape[0], 0, ""
        self.unkept = ""   # why there is no array: no room for it in --out
        data = self.out / self.DATA
        if resume:
            state = {}
            try:
                state = json.loads((self.out / self.FILE).read_text())
                if {k: state.get(k) for k in self._key} == self._key:
                    self.array = np.lib.format.open_memmap(data, mode="r+")
                    if self.array.shape == tuple(shape) and self.array.dtype == np.float32:
                        self.rows = int(state["rows"])
                        return self.rows
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                pass   # none, cut short or another image's: this one starts at row 0
            self.dropped = self._why_dropped(state)
        self.clear()
        try:
            self.array = np.lib.format.open_memmap(data, mode="w+", dtype=np.float32,
                                                   shape=shape)
            _reserve(data)
        except OSError as e:   # the caller sharpens the image without them
            self.clear()
            self.unkept = str(e)
        return 0

    def _why_dropped(self, state: object) -> str:
        """What the user is told of an earlier stopped run's rows this image replaces."""
        try:
            name, rows = str(state["name"]), int(state["rows"])
        except (TypeError, KeyError, ValueError, IndexError):
            return ""   # none, or cut short: nothing a user was told is kept
        if not rows:
            return ""
        if name != self._key["name"]:
            why = f"one stopped photo is kept per --out, and this run sharpens {self._key['name']}"
        elif state.get("settings") != self.settings:
            why = "this run's weights, --tile, --overlap or device differ from that run's"
        elif {k: state.get(k) for k in self._key} == self._key:
            why = f"{self.DATA} is missing or cut short"
        else:
            why = f"{name}'s input file changed since"
        return f"the rows 0-{rows - 1} of {name} an earlier stopped run kept are dropped: {why}"

    def kept_name(self) -> Optional[str]:
        """The output name of the image whose rows an earlier stopped run kept, if any."""
        import json
        try:
            state = json.loads((self.out / self.FILE).read_text())
            return str(state["name"]) if int(state["rows"]) > 0 else None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def done_to(self, rows: int) -> None:
        """Rows up to `rows` are in the array: on disk, then recorded (a kill between the two
        leaves the older count, whose rows are there)."""
        from runtime.atomic import atomic_write_json
        assert self.array is not None
        self.array.flush()
        self.rows = rows
        atomic_write_json(self.out / self.FILE, {**self._key, "rows": rows})

    def clear(self) -> None:
        """The image is written (or another begins): its rows are no longer needed."""
        self.array = None   # the memmap closed before its file is removed (Windows)
        for name in (self.FILE, self.DATA):
            (self.out / name).unlink(missing_ok=True)


def _reserve(path: Path) -> None:
    """The blocks of `path` (a sparse file as numpy makes it) allocated now: where the disk
    has no room for them, a write into the memmap later is a bus error that kills Python."""
    import errno
    import os

    if not hasattr(os, "posix_fallocate"):   # macOS: APFS makes it sparse; nothing to ask
        return
    with open(path, "r+b") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise
            # a file system that cannot say: the sparse file, as before
