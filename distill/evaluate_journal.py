"""The record `sharpen evaluate --out` keeps of each image's scores as it is scored, so that the
same command after a kill (SIGKILL, out of memory, power loss) scores only what is missing."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

from runtime.atomic import no_follow

from .journal_compaction import JournaledRecord


def file_stamp(path: str | os.PathLike) -> list:
    """A file as scores depend on it: resolved path, size and modification time."""
    st = os.stat(path)
    return [str(Path(path).resolve()), st.st_size, st.st_mtime_ns]


class ScoreJournal(JournaledRecord):
    """The scores an earlier `evaluate` into the same folder computed, by image name, each with
    the stamp (`file_stamp`) of its input and ground truth; `settings` are the models' files
    and the options that change every score ({"models": {label: stamp}, "options": {flag:
    value}}). An earlier image counts only under the same settings and stamp; `why_not` says
    what made the earlier run's scores not this one's.

    Each image scored is appended to JOURNAL, one line; FILE, the whole record, is rewritten
    (the journal folded in and removed) once the journal has grown by half of it and when the
    run ends, as `sharpen teacher`'s record is (`journal_compaction`)."""

    FILE = ".sharpen-evaluate.json"
    JOURNAL = ".sharpen-evaluate.journal.jsonl"
    KEPT = "every image scored"

    def __init__(self, out: str | os.PathLike, settings: dict) -> None:
        out = Path(out)
        self.path, self.journal, self.settings = out / self.FILE, out / self.JOURNAL, settings
        self.done: dict[str, dict] = {}
        self.journaled = 0
        self.stuck = self.closed = self.unwritable = False
        self.found = False   # an earlier run's record was there, this run's or not
        other: Optional[dict] = None
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            state = None
        if isinstance(state, dict) and isinstance(state.get("done"), dict):
            self.found = True
            if state.get("settings") == settings:
                self.done = state["done"]
            else:
                other = state.get("settings")
        try:
            lines = self.journal.read_text(encoding="utf-8").splitlines()
        except OSError:
            lines = []
        for line in lines:   # a line a kill cut short is skipped: that image is scored again
            try:
                rec = json.loads(line)
                name, stamp, entry = str(rec["name"]), rec["stamp"], rec["entry"]
            except (ValueError, KeyError, TypeError):
                continue
            self.found = True
            if rec.get("settings") == settings:
                self.done[name] = {"stamp": stamp, "entry": entry}
                self.journaled += 1   # folded in by this run's flush
            else:
                other = rec.get("settings")
        # Said only where nothing is taken: a run killed under new settings over an older
        # record leaves both, and its rerun goes on from its own.
        self.why_not = (_differences(other, settings) if other is not None and not self.done
                        else "")

    def get(self, name: str, stamp: list) -> Optional[dict]:
        """The entry scored earlier for `name` with this input and ground truth, else None."""
        rec = self.done.get(name)
        return rec["entry"] if rec is not None and rec["stamp"] == stamp else None

    def changed(self, name: str, stamp: list) -> bool:
        """Whether `name` was scored earlier from the same file (or clip frame), replaced or
        edited since; a file of the same name elsewhere (other --data) is not said to be."""
        rec = self.done.get(name)
        return (rec is not None and rec["stamp"] != stamp
                and _where(rec["stamp"]) == _where(stamp))

    def put(self, name: str, stamp: list, entry: dict) -> None:
        """`name`'s scores recorded. The record insures the run, it is not its result: one
        that cannot be written (a full disk) is warned of once and the run goes on."""
        from runtime.warn import warn

        self.done[name] = {"stamp": stamp, "entry": entry}
        if self.unwritable:
            return
        try:
            # Each record on a line of its own, after a newline: a line a kill cut short is
            # then followed by whole ones.
            with open(self.journal, "a", encoding="utf-8", opener=no_follow) as f:
                f.write("\n" + json.dumps({"name": name, "stamp": stamp, "entry": entry,
                                           "settings": self.settings}))
        except OSError as e:
            self.unwritable = True
            warn(f"could not record the scores in {self.journal} ({e.strerror or e}): the "
                 "run goes on, but one killed from now on is scored again from the images "
                 "recorded before")
            return
        self._appended()

    def say(self, earlier: int, to_go: int, changed: int) -> None:
        """What the run takes from the record, on stderr (`--quiet` too: it is why a run of
        hours ends in seconds, or starts over)."""
        if not self.found:
            return
        if self.why_not:
            print(f"evaluate: the scores recorded in {self.path.parent} are of other settings "
                  f"({self.why_not}): every image is scored again", file=sys.stderr)
        if changed:
            one = changed == 1
            print(f"evaluate: {changed} image{'' if one else 's'} changed since "
                  f"{'it was' if one else 'they were'} scored: scored again", file=sys.stderr)
        print(f"evaluate: {earlier} scored earlier, {to_go} to go", file=sys.stderr)


def _where(stamp: list) -> list:
    """An item stamp's input file and frame index (see `evaluate._item_stamp`)."""
    try:
        return [stamp[0][0], stamp[1]]
    except (IndexError, KeyError, TypeError):
        return []


def _differences(old: object, new: dict) -> str:
    """What differs between the settings of an earlier run and this one's, said as a user
    reads it: "--crop 32 (was 0)", "runs/a/best.pt changed", "the models were a, b"."""
    if not isinstance(old, dict):
        return "a record of another version"
    said = []
    om, nm = old.get("models") or {}, new["models"]
    if set(om) != set(nm):
        said.append(f"the models were {', '.join(om) or 'none'}")
    else:
        said += [f"{nm[k][0]} changed" for k in nm if om[k] != nm[k]]
    oo, no = old.get("options") or {}, new["options"]
    # An option newer than the record: "(was None)" read as if its scores had had none.
    said += [f"{k} {no[k]}" + (f" (was {oo[k]})" if k in oo else ", which the record predates")
             for k in no if oo.get(k) != no[k]]
    return "; ".join(said) or "a record of another version"
