"""The rows of an image `sharpen teacher` had finished when it was stopped, kept in its --out
so that the same command goes on from them: a 12 MP photo is an hour of a loaded CPU's time,
and Ctrl-C half-way kept nothing of it. Each stopped photo's are kept, under names its output
name hashes to, until that photo is written."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np

from runtime.tiling import Band


class PartialImage:
    """One image's output rows so far, float32 in DATA (a memmap the tiles are blended into),
    and how many rows of it are done in FILE, for the image (its output name and input file's
    path, size and mtime) and the run's settings. One image at a time: the run's lock is held.
    DATA, FILE and BAND name an image's files with `{}` for its hash (`names`)."""

    DATA = ".sharpen-teacher.partial.{}.npy"
    FILE = ".sharpen-teacher.partial.{}.json"
    # The blend sums of the rows below those done (`runtime.tiling.Band`): without them the
    # row of tiles above the rows left ran again, minutes to an hour of a CPU's time.
    BAND = ".sharpen-teacher.band.{}.npz"
    # Where an earlier version kept its one stopped photo's: taken over by that photo.
    LEGACY = (".sharpen-teacher.partial.json", ".sharpen-teacher.partial.npy",
              ".sharpen-teacher.band.npz")
    # At most one band written in this many seconds: a CPU's batch takes minutes, each kept;
    # a GPU's a fraction of a second, where tens of MB a batch would slow it.
    BAND_EVERY_S = 30.0

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
        self.band: Optional[Band] = None   # the kept band open() found, to go on from
        # The last band kept: the tiles before it (Band.at, 0: none) and its top row.
        self.band_at, self._band_top = 0, 0
        self._band_saved = float("-inf")
        self._key: dict = {}
        # This image's files (`names`), set by open(): none of a user's can be named so.
        self.file, self.data, self.band_file = (out / n for n in self.names(Path("")))

    @classmethod
    def names(cls, rel: Path) -> tuple[str, str, str]:
        """The FILE, DATA and BAND names of the image written as `rel`: one photo's no longer
        dropped for another's (one was kept per --out: a photographer who stopped a photo and
        sharpened another into the same folder lost the first's hour)."""
        import hashlib
        h = hashlib.sha1(str(rel).encode("utf-8", "surrogateescape")).hexdigest()[:16]
        return cls.FILE.format(h), cls.DATA.format(h), cls.BAND.format(h)

    def open(self, src: Path, rel: Path, shape: tuple[int, ...], resume: bool) -> int:
        """The array this image's output goes into, and the rows of it an earlier run of the
        same image and settings finished (0 where there is none, or `resume` is False)."""
        st = src.stat()
        self._key = {"name": str(rel), "input": [str(src.resolve()), st.st_size,
                                                  st.st_mtime_ns],
                     "shape": list(shape), "settings": self.settings}
        self.shape, self.height, self.rows, self.dropped = tuple(shape), shape[0], 0, ""
        self.band, self.band_at, self._band_saved = None, 0, float("-inf")
        self.unkept = ""   # why there is no array: no room for it in --out
        self.file, self.data, self.band_file = (self.out / n for n in self.names(rel))
        data = self.data
        if resume:
            self._take_over_legacy(rel)
            state = {}
            try:
                state = _read_record(self.file)
                if {k: state.get(k) for k in self._key} == self._key:
                    self.array = _open_kept(data)
                    if self.array.shape == tuple(shape) and self.array.dtype == np.float32:
                        self.rows = int(state["rows"])
                        self.band = self._read_band(state.get("band"))
                        if self.band is not None:
                            self.band_at, self._band_top = self.band.at, self.band.top
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

    def _read_band(self, recorded: object) -> Optional[Band]:
        """The kept band, where it is the one the record names (a kill between writing it and
        the record leaves a newer one: the rows alone are then gone on from)."""
        import os
        import zipfile

        from runtime.atomic import open_no_follow
        try:
            with os.fdopen(open_no_follow(self.band_file, os.O_RDONLY), "rb") as file, \
                    np.load(file) as f:
                band = Band(int(f["at"]), int(f["top"]), f["acc"], f["wsum"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None   # none, or cut short
        return band if [band.at, band.top] == recorded else None

    def _why_dropped(self, state: object) -> str:
        """What the user is told of an earlier stopped run's rows this image replaces."""
        try:
            name, rows = str(state["name"]), int(state["rows"])
            tiles = int((state.get("band") or [0])[0])
        except (TypeError, KeyError, ValueError, IndexError, AttributeError):
            return ""   # none, or cut short: nothing a user was told is kept
        if not rows and not tiles:
            return ""
        if name != self._key["name"]:
            why = f"one stopped photo is kept per --out, and this run sharpens {self._key['name']}"
        elif state.get("settings") != self.settings:
            from .teacher_run import settings_differ
            was = state.get("settings")
            why = ("this run's settings differ from that run's "
                   f"({settings_differ(was if isinstance(was, dict) else {}, self.settings)})")
        elif {k: state.get(k) for k in self._key} == self._key:
            why = f"{self.data.name} is missing or cut short"
        else:
            why = f"{name}'s input file changed since"
        what = (f"the {tiles} tiles of {name} an earlier stopped run finished are" if tiles
                else f"the rows 0-{rows - 1} of {name} an earlier stopped run kept are")
        return f"{what} dropped: {why}"

    def kept_names(self) -> set[str]:
        """The output names of the images whose rows earlier stopped runs kept."""
        kept = set()
        for path in [*self.out.glob(self.FILE.format("*")), self.out / self.LEGACY[0]]:
            try:
                state = _read_record(path)
                if int(state["rows"]) > 0 or state.get("band"):
                    kept.add(str(state["name"]))
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue
        return kept

    def remove_dead(self, done: Callable[[Path, Path], bool]) -> None:
        """The kept files no run can go on from removed, 12 bytes a pixel each: those of a
        photo `done(input, name)` says is written (a kill after writing it, before they went),
        and data or a band with no record (a kill before a photo's first record, or inside
        `clear`). Each photo's are kept under its own names: one name per --out was reused,
        these stayed for good. The run's lock is held: no other run is writing them."""
        import re
        names = re.compile(r"\.sharpen-teacher\.(?:partial|band)\.([0-9a-f]{16})\.(?:json|np[yz])")
        found: dict[str, list[Path]] = {}
        for path in self.out.glob(".sharpen-teacher.*.*.*"):
            if m := names.fullmatch(path.name):
                found.setdefault(m.group(1), []).append(path)
        for h, paths in found.items():
            try:
                state = _read_record(self.out / self.FILE.format(h))
                name, src = Path(str(state["name"])), Path(str(state["input"][0]))
                if self.names(name)[0] != self.FILE.format(h) or not done(src, name):
                    continue
            except (OSError, ValueError, KeyError, TypeError, IndexError):
                pass   # no record, or cut short: nothing goes on from its data
            for path in paths:
                path.unlink(missing_ok=True)

    def _take_over_legacy(self, rel: Path) -> None:
        """The one stopped photo an earlier version kept, renamed to its own names where it is
        `rel` (its record last: a kill between leaves the legacy record, tried again)."""
        import os
        try:
            if _read_record(self.out / self.LEGACY[0])["name"] != str(rel):
                return
        except (OSError, ValueError, KeyError, TypeError):
            return
        for old, new in ((self.LEGACY[1], self.data), (self.LEGACY[2], self.band_file),
                         (self.LEGACY[0], self.file)):
            if (self.out / old).exists():
                os.replace(self.out / old, new)

    def done_to(self, rows: int) -> None:
        """Rows up to `rows` are in the array: on disk, then recorded (a kill between the two
        leaves the older count, whose rows are there). A kept band stays recorded: it goes on
        from rows it recomputes as they were."""
        assert self.array is not None
        self.array.flush()
        self.rows = rows
        self._record()

    def keep_band(self, band: Band) -> None:
        """The band after a batch kept (at most one in BAND_EVERY_S), so that a stop after it
        runs none of the tiles blended so far again: the rows above it are on disk, the band
        written whole, then recorded (a kill between the two leaves the older record, whose
        band is not this one: the rows alone are gone on from). An OSError (no room) leaves
        the record without a band, and is raised for the caller to say."""
        import time

        from runtime.atomic import atomic_file
        if time.monotonic() - self._band_saved < self.BAND_EVERY_S:
            return
        assert self.array is not None
        self.array.flush()
        try:
            with atomic_file(self.band_file) as f:
                np.savez(f, at=band.at, top=band.top, acc=band.acc, wsum=band.wsum)
        except OSError:
            self.band_at = 0
            self._record()
            self.band_file.unlink(missing_ok=True)
            raise
        self._band_saved = time.monotonic()
        self.band_at, self._band_top = band.at, band.top
        self._record()

    def _record(self) -> None:
        from runtime.atomic import atomic_write_json
        band = {"band": [self.band_at, self._band_top]} if self.band_at else {}
        atomic_write_json(self.file, {**self._key, "rows": self.rows, **band})

    def clear(self) -> None:
        """The image is written (or another begins): its rows are no longer needed."""
        self.array = None   # the memmap closed before its file is removed (Windows)
        self.band, self.band_at = None, 0
        for path in (self.file, self.data, self.band_file):
            path.unlink(missing_ok=True)


def _read_record(path: Path) -> dict:
    """A kept photo's record (JSON), never read through a link nor from a FIFO planted under
    its name (open_no_follow: LinkRefused, a ValueError): the names are a hash anyone can
    work out, and a FIFO held every run into --out before its first photo."""
    import json
    import os

    from runtime.atomic import open_no_follow
    with os.fdopen(open_no_follow(path, os.O_RDONLY), "rb") as f:
        return json.load(f)


def _open_kept(path: Path) -> np.ndarray:
    """The kept rows at `path` (an .npy) as a memmap to go on blending into, never through a
    link planted under its name (open_no_follow): the rows went into the file linked to."""
    import os

    from runtime.atomic import open_no_follow
    with os.fdopen(open_no_follow(path, os.O_RDWR), "r+b") as f:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read(f)
        return np.memmap(f, dtype=dtype, mode="r+", shape=shape, order="F" if fortran else "C",
                         offset=f.tell())


def _reserve(path: Path) -> None:
    """The blocks of `path` (a sparse file as numpy makes it) allocated now: where the disk
    has no room for them, a write into the memmap later is a bus error that kills Python."""
    import os

    from runtime.cli_errors import NO_SPACE_ERRNOS
    if not hasattr(os, "posix_fallocate"):   # macOS: APFS makes it sparse; nothing to ask
        return
    with open(path, "r+b") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
        except OSError as e:
            if e.errno in NO_SPACE_ERRNOS:
                raise
            # a file system that cannot say: the sparse file, as before
