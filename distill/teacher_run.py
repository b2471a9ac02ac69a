"""The record `sharpen teacher` keeps in its --out of the images it wrote, so that a re-run
after an interrupt skips them."""
from __future__ import annotations

from pathlib import Path

from runtime.atomic import no_follow
from runtime.console import count

from .journal_compaction import JournaledRecord


def settings_differ(was: dict, now: dict) -> str:
    """What differs between an earlier run's recorded settings and this run's, each as
    "tile 128, now 256": the key a user can check, where "weights, --tile, --overlap or device"
    named none (an older record's config, a run with other weights)."""
    return ", ".join(f"{k} {was.get(k)!r}, now {now.get(k)!r}" for k in sorted({*was, *now})
                     if was.get(k) != now.get(k))


class TeacherRun(JournaledRecord):
    """What an earlier `sharpen teacher` into the same folder wrote, so that a re-run after an
    interrupt skips those images (the teacher takes seconds to minutes per image). An image counts
    as done when its output is the file that run wrote (size, mtime), from the same input file
    (path, size, mtime) with the same weights and settings; anything else is written again.

    Each image done is appended to JOURNAL, one line with its settings; FILE, the whole record,
    is rewritten (the journal folded in and removed) once the journal has grown by half of it
    and when the run ends. Rewriting FILE per image made a folder quadratic in its images (a
    record of 4,000 outputs rewritten 4,000 times); a killed run's journal is read back."""

    FILE = ".sharpen-teacher.json"
    JOURNAL = ".sharpen-teacher.journal.jsonl"
    KEPT = "every image done"
    LOCK = ".sharpen-teacher.lock"   # distill.run_lock's, held while a run writes the folder

    def __init__(self, out: Path, settings: dict, resume: bool = True):
        import json

        self.path, self.settings, self.done = out / self.FILE, settings, {}
        self.journal = out / self.JOURNAL
        self.journaled = 0   # images appended to the journal since FILE was rewritten
        # A rewrite of FILE failed (a full disk, FILE a folder): the journal keeps growing,
        # read back by the next run, and FILE is tried again once, at the end (close).
        self.stuck = False
        self.closed = False
        # The images an earlier run wrote with other settings, and those settings: this run
        # writes them again, which a user rerunning a command expects to resume.
        self.other: dict[str, dict] = {}
        if not resume:
            return
        if self.path.is_file():
            try:
                state = json.loads(self.path.read_text())
            except (OSError, ValueError):
                state = {}     # unreadable: treated as no earlier run, every image is redone
            if isinstance(state, dict) and isinstance(state.get("done"), dict):
                if state.get("settings") == settings:
                    self.done = state["done"]
                elif isinstance(state.get("settings"), dict):
                    self.other = dict.fromkeys(map(str, state["done"]), state["settings"])
        try:
            lines = self.journal.read_text().splitlines()
        except OSError:
            lines = []
        for line in lines:   # a line a kill cut short is skipped: that image is redone
            try:
                rec = json.loads(line)
                if rec["settings"] == settings:   # another run's settings: not done for this
                    self.done[str(rec["name"])] = rec["stamp"]
                    # folded in by this run's flush, even one with no image left to write
                    self.journaled += 1
                elif isinstance(rec["settings"], dict):
                    self.other[str(rec["name"])] = rec["settings"]
            except (ValueError, KeyError, TypeError):
                continue

    def written_otherwise(self, names: list[str]) -> str:
        """What is said of the images of `names` that an earlier run wrote into this folder
        with other settings, which this run writes again ("" where there are none): how many,
        and what differs (the first one's settings)."""
        again = [n for n in names if n in self.other and n not in self.done]
        if not again:
            return ""
        return (f"{count(len(again), 'image')} in {self.path.parent} "
                f"{'were' if len(again) > 1 else 'was'} written by an earlier run with other "
                f"settings ({settings_differ(self.other[again[0]], self.settings)}): "
                "written again")

    def _stamp(self, src: Path, rel: Path) -> list:
        """The input (path, size, mtime) and the output as written (size, mtime): an output
        that another tool rewrote since is not this run's."""
        st, so = src.stat(), (self.path.parent / rel).stat()
        return [str(src.resolve()), st.st_size, st.st_mtime_ns, so.st_size, so.st_mtime_ns]

    def is_done(self, src: Path, rel: Path) -> bool:
        try:
            return self.done.get(str(rel)) == self._stamp(src, rel)
        except OSError:      # the input or the output is gone
            return False

    def mark_done(self, src: Path, rel: Path) -> None:
        import json

        stamp = self.done[str(rel)] = self._stamp(src, rel)
        # Each record on a line of its own, after a newline: a line a kill cut short is then
        # followed by whole ones.
        with open(self.journal, "a", encoding="utf-8", opener=no_follow) as f:
            f.write("\n" + json.dumps({"name": str(rel), "stamp": stamp,
                                       "settings": self.settings}))
        self._appended()
