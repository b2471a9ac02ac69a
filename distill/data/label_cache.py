"""The pseudo-label cache on disk: its manifest (read, write, merge of rank shards under a file
lock) and `LabelCache`, the reader training uses. Torch-free; `label_run.py` writes the cache
(its manifest through `label_manifest.py`).

    DIR/labels/<name>.png     one 16-bit lossless PNG per input
    DIR/frames/<name>.png     the decoded input frame, for video sources only
    DIR/manifest.json         one entry per input
    DIR/manifest.journal.jsonl  entries a running (or killed) `labels` made since it last
                              rewrote manifest.json, one JSON line each; read with it
    DIR/run.json              the last labelling run: what it selected (what training uses)
                              and whether it finished
    DIR/input_stats.json      inputs whose hash training checked again since they were
                              labelled: their stat then (see `LabelCache.stale`)
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Collection, Iterable, Optional

import numpy as np

from runtime.atomic import atomic_path, atomic_write_json, no_follow
from runtime.warn import warn

from .sources import Sample, SourceError, name_key

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "sharpen-labels/1"
LABELS_DIR = "labels"
FRAMES_DIR = "frames"
LOCK_FILE = ".manifest.lock"
RUN_RECORD = "run.json"
RUN_FORMAT = "sharpen-labels-run/1"
INPUT_STATS = "input_stats.json"
INPUT_STATS_FORMAT = "sharpen-input-stats/1"
# A file changed within this of when it was looked at may be changed again with its size and
# timestamps kept (a coarse clock, FAT's 2 s): such a stat vouches for no content.
RACY_NS = 2_000_000_000


# --- small helpers (torch-free) -----------------------------------------------------------------

def sha256_array(arr: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(f"{arr.dtype}{arr.shape}".encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def video_signature(path: str | os.PathLike) -> str:
    """A cheap content signature of a video file (its size, first and last MiB): frame entries
    carry it, so that the labels of a clip replaced under the same name are found stale
    without hashing gigabytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        h.update(str(size).encode())
        h.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def input_stat(path: str | os.PathLike) -> tuple[Optional[list[int]], os.stat_result]:
    """([size, mtime_ns, ctime_ns] of `path`, or None when it changed too recently to vouch
    for its content (RACY_NS), and the stat). Taken before the file is hashed: recorded
    beside the hash, it lets `LabelCache.stale` trust that hash while the file keeps it (ctime
    too: a copy with its mtime kept, `rsync -a` or `cp -p` of another version, changes it)."""
    st = os.stat(path)
    now = time.time_ns()
    racy = max(st.st_mtime_ns, st.st_ctime_ns) > now - RACY_NS
    return (None if racy else [st.st_size, st.st_mtime_ns, st.st_ctime_ns]), st


_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"   # the IEND chunk, a PNG's last 12 bytes


def png_whole(path: str | os.PathLike) -> bool:
    """Whether `path` is a file that ends as a PNG ends: a label or frame cut short (a copy of
    the cache stopped part-way, a disk that filled) is then made again, not skipped as done
    for training to fail on. One seek, not a decode (a resume skips 50,000 of them)."""
    try:
        with open(path, "rb") as f:
            f.seek(-len(_PNG_END), os.SEEK_END)
            return f.read() == _PNG_END
    except OSError:   # missing, a folder, or shorter than the chunk
        return False


def _read_input_stats(root: Path) -> dict[str, list]:
    """INPUT_STATS's records, input path -> [hash, size, mtime_ns, ctime_ns]; {} when missing
    or unreadable (each input is then hashed again)."""
    try:
        obj = json.loads((root / INPUT_STATS).read_text(encoding="utf-8"))
        records = obj["inputs"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return ({p: r for p, r in records.items() if isinstance(r, list) and len(r) == 4}
            if isinstance(records, dict) else {})


def journal_path(path: str | os.PathLike) -> Path:
    """The journal of a manifest (or shard) file: manifest.json -> manifest.journal.jsonl,
    manifest.rank1.json -> manifest.rank1.journal.jsonl (which shard_paths' glob leaves out)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.journal.jsonl")


def read_manifest_entries(path: str | os.PathLike) -> dict[str, dict]:
    """Entries of a manifest (or shard) file and of its journal; {} when missing; a warning
    when unreadable."""
    path = Path(path)
    # The journal first: a rewrite that folds it into the manifest between the two reads
    # then leaves its entries in the manifest read second, not in neither.
    journal = _read_journal(journal_path(path))
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        entries = obj["entries"]
        if not isinstance(entries, dict):
            raise TypeError("entries is not an object")
    except FileNotFoundError:   # also a shard another rank merged and deleted just now
        entries = {}
    except Exception as e:  # a hand-edited or foreign file: start over rather than crash
        warn(f"{path}: unreadable label manifest ({e}); its entries are ignored and will be "
             "recomputed", stacklevel=2)
        entries = {}
    for name, e in journal:
        if _newer(entries.get(name), e):
            entries[name] = e
    return entries


def _read_journal(path: Path) -> list[tuple[str, dict]]:
    """The (name, entry) records of a journal, in the order written. A line a kill cut short
    is skipped: its label is made again (each record starts on a new line, so the next one
    still parses)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as e:
        warn(f"{path}: unreadable label journal ({e}); its entries are ignored and will be "
             "recomputed", stacklevel=3)
        return []
    records = []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
            if isinstance(rec, dict) and isinstance(rec.get("entry"), dict):
                records.append((str(rec["name"]), rec["entry"]))
        except (ValueError, KeyError):
            continue
    return records


def append_journal(path: str | os.PathLike, entries: dict[str, dict]) -> None:
    """`entries` appended to the journal of the manifest `path`: a label's cost on disk is its
    own entry, where rewriting the whole manifest for each label made a run quadratic in its
    labels (4,000 took 601 s with a tiny teacher, 1,000 took 43 s)."""
    text = "".join("\n" + json.dumps({"name": n, "entry": e}, default=str)
                   for n, e in entries.items())
    with open(journal_path(path), "a", encoding="utf-8", opener=no_follow) as f:
        f.write(text)


def _newer(a: Optional[dict], b: dict) -> bool:
    """True when entry b should replace entry a (newest wins)."""
    return a is None or b.get("created", 0) >= a.get("created", 0)


def merge_entries(*sources: dict[str, dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for entries in sources:
        for name, e in entries.items():
            if _newer(out.get(name), e):
                out[name] = e
    return out


def read_cache_entries(folder: Path) -> dict[str, dict]:
    """The entries of the label cache in `folder`: its manifest merged with every rank's shard
    (those of an interrupted multi-rank run, still unmerged), the newest entry of each name."""
    return merge_entries(
        read_manifest_entries(folder / MANIFEST),
        *(read_manifest_entries(p) for _, p in sorted(shard_paths(folder).items())))


def shard_paths(out_dir: Path) -> dict[int, Path]:
    """The shard file (manifest.rankK.json) of each rank, by K: those that exist, and those
    of which only the journal does (a rank resuming a large cache journals its entries before
    its shard's first rewrite: killed then, its journal is all it left)."""
    shards = {}
    for p in [*out_dir.glob("manifest.rank*.json"), *out_dir.glob("manifest.rank*.journal.jsonl")]:
        rank = p.name[len("manifest.rank"):].split(".", 1)[0]
        if rank.isdigit():
            shards[int(rank)] = out_dir / f"manifest.rank{rank}.json"
    return shards


@contextlib.contextmanager
def _manifest_lock(out_dir: Path):
    try:
        import fcntl
    except ImportError:  # Windows: no concurrent ranks there in practice
        yield
        return
    from .label_claims import share_with_folder
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        f = open(out_dir / LOCK_FILE, "a", opener=no_follow)
        share_with_folder(f.fileno(), os.fstat(f.fileno()), out_dir)   # as a team shares it
    except PermissionError:
        # Another user's, made under umask 022 by an earlier version: flock needs no write,
        # and a group member was refused the whole cache for it.
        f = open(out_dir / LOCK_FILE, "r", opener=no_follow)
    with f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def write_manifest(out_dir: Path, entries: dict[str, dict], path: Optional[Path] = None) -> Path:
    """`entries` as the whole manifest (or shard) `path`, its journal then removed: the caller
    read the journal into `entries` (under the manifest lock where runs share the file)."""
    path = path or out_dir / MANIFEST
    ordered = {k: entries[k] for k in sorted(entries)}
    written = atomic_write_json(path, {
        "format": MANIFEST_FORMAT,
        "updated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "entries": ordered})
    # After the manifest that holds its entries is in place: a kill between the two leaves
    # entries twice, never none.
    with contextlib.suppress(FileNotFoundError):
        journal_path(path).unlink()
    return written


def merge_shards(out_dir: str | os.PathLike, rank: int = 0, world: int = 1,
                 all_finished: bool = False) -> dict[str, dict]:
    """Merge manifest.json and every shard into manifest.json (under a file lock); delete this
    rank's shard and shards of ranks that do not exist in this run (all shards when every rank
    is known to have finished). Returns the merged entries."""
    out_dir = Path(out_dir)
    with _manifest_lock(out_dir):
        shards = shard_paths(out_dir)
        merged = merge_entries(read_manifest_entries(out_dir / MANIFEST),
                               *(read_manifest_entries(p) for _, p in sorted(shards.items())))
        write_manifest(out_dir, merged)
        for k, p in shards.items():
            if all_finished or k == rank or k >= world:
                for f in (p, journal_path(p)):
                    with contextlib.suppress(FileNotFoundError):
                        f.unlink()
    return merged


def prune_missing_inputs(out_dir: str | os.PathLike, names: Collection[str] = ()) -> list[str]:
    """Drop the entries (and files) that can never be used again: those of image inputs that no
    longer exist, of video frames whose video was replaced (another signature; a deleted
    video's frames stay: they train from the cache's own copies), and entries of an input that
    `names` (the source just labelled) now labels under another name (a file renamed when its
    same-stemmed partner was deleted). `distill` refuses a cache with stale entries. Returns
    what was dropped (inputs, frames as `video[frame N]`)."""
    out_dir = Path(out_dir)
    names = set(names)
    with _manifest_lock(out_dir):
        entries = read_manifest_entries(out_dir / MANIFEST)
        gone: dict[str, dict] = {}
        signatures: dict[str, Optional[str]] = {}
        current = {e.get("input"): n for n, e in entries.items()
                   if n in names and e.get("frame") is None}
        for n, e in entries.items():
            inp = e.get("input")
            if not inp:
                continue
            if e.get("frame") is None:
                if not Path(inp).exists() or (n not in names and inp in current):
                    gone[n] = e
                continue
            if not e.get("video_id"):   # older caches: no signature to compare
                continue
            if inp not in signatures:
                try:
                    signatures[inp] = video_signature(inp)
                except OSError:   # gone or unreadable: its frames still train from the cache
                    signatures[inp] = None
            if signatures[inp] is not None and e["video_id"] != signatures[inp]:
                gone[n] = e
        if not gone:
            return []
        write_manifest(out_dir, {n: e for n, e in entries.items() if n not in gone})
    _remove_files(out_dir, gone.values())
    return sorted(e["input"] if e.get("frame") is None else f"{e['input']}[frame {e['frame']}]"
                  for e in gone.values())


def _remove_files(out_dir: Path, entries: Iterable[dict]) -> None:
    """The label and input copy of each dropped entry (after the manifest no longer lists it)."""
    for e in entries:
        for key in ("label", "input_file"):
            if e.get(key):
                with contextlib.suppress(OSError):
                    (out_dir / e[key]).unlink()


def prune_held_out(out_dir: str | os.PathLike, names: Collection[str],
                   run_id: Optional[str] = None) -> Optional[list[str]]:
    """Drop the entries (and files) of `names`, the samples a run holds out of this cache: a
    hold-out added to a cache an earlier run labelled in full left the held-out images in it
    (and training on them scores validation on images the student trained on). Returns the
    names dropped; None, nothing dropped, where `run_id` is given and run.json is no longer
    that run's: another run into this cache started since, whose selection may hold them."""
    out_dir = Path(out_dir)
    names = set(names)
    with _manifest_lock(out_dir):
        if run_id is not None and read_run_record(out_dir).get("run_id") != run_id:
            return None
        entries = read_manifest_entries(out_dir / MANIFEST)
        gone = {n: e for n, e in entries.items() if n in names}
        if not gone:
            return []
        write_manifest(out_dir, {n: e for n, e in entries.items() if n not in gone})
    _remove_files(out_dir, gone.values())
    return sorted(gone)


def link_or_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """`dst` as a hard link to `src` where the filesystem allows (a label reused from the other
    cache of a hold-out takes no second copy of the disk), else a copy; atomically (a temp file
    beside `dst`, then a rename), like every file of a cache, so that a reader never sees half a
    label. Files of a cache are only ever replaced by a rename or unlinked, never rewritten in
    place, so the two names never see each other's changes. OSError when `src` is gone."""
    dst = Path(dst)
    with atomic_path(dst, suffix=dst.suffix or ".tmp") as tmp:
        tmp.unlink()   # os.link makes the name itself
        try:
            os.link(src, tmp)
        except FileNotFoundError:
            raise   # `src` is gone: no copy either
        except OSError:   # another filesystem, or one without hard links
            shutil.copyfile(src, tmp)


def write_run_record(out_dir: Path, run_id: Optional[str] = None,
                     **fields: Any) -> Optional[Path]:
    """DIR/run.json: the last `sharpen labels` run on this cache (its data, its selection, which
    training uses, the labels here its data does not list, and whether it finished). Written
    with complete=False when a run starts and True when it ends, so that training can tell a
    cache an interrupted run left part-labelled from a finished one (the manifest alone
    cannot: it is rewritten after every image). `run_id` names the run: its end marks the
    record complete only while the record is still its own. Another run into the same --out
    started meanwhile has replaced it with its own selection, and that run may be the one
    stopped part-way (None then: nothing written)."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    path = out_dir / RUN_RECORD
    ids = {"run_id": run_id} if run_id is not None else {}
    with _manifest_lock(out_dir):
        record = read_run_record(out_dir) if fields.get("complete") else {}
        if fields.get("complete") and run_id is not None and record.get("run_id") != run_id:
            return None
        record.update({"format": RUN_FORMAT, **ids, **fields, "updated": now})
        return atomic_write_json(path, record)


def is_label_cache(folder: Path) -> bool:
    """Whether `folder` is a `sharpen labels` output (its manifest says so): read as images,
    its labels/ are the teacher's outputs, not blurred inputs."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
        return manifest.get("format") == MANIFEST_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def read_run_record(out_dir: Path) -> dict:
    """The cache's run record; {} when absent (caches made before it existed) or unreadable."""
    try:
        obj = json.loads((Path(out_dir) / RUN_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def other_cache(root: Path, record: dict) -> Optional[Path]:
    """The other cache of a hold-out that the run record of the cache at `root` names: where its
    path relative to `root` leads (caches copied or moved together, to another machine or
    project folder, are still each other's), else the absolute path recorded; None without a
    hold-out."""
    held = record.get("hold_out")
    if not isinstance(held, dict) or not held.get("other_cache"):
        return None
    recorded = Path(held["other_cache"])
    rel = held.get("other_cache_from_here")
    beside = (Path(os.path.normpath(Path(root).resolve() / rel)) if isinstance(rel, str)
              else None)
    for where in (beside, recorded):
        if where is not None and where.exists():
            return where
    return beside or recorded


def label_maker(entry: dict) -> tuple:
    """What made a label: the teacher's weights and architecture, and the tiling (what a
    labels run compares to find a label up to date)."""
    return (entry.get("weights_hash"), json.dumps(entry.get("teacher_arch"), sort_keys=True),
            entry.get("tile"), entry.get("overlap"))


def made_on(entry: dict) -> str:
    """"cuda bf16" / "cpu fp32": the device and precision the teacher made a label in (on a
    GPU, autocast: not the FP32 teacher's output), or "unknown" for labels of caches from
    before entries recorded them."""
    device, precision = entry.get("teacher_device"), entry.get("teacher_precision")
    return f"{device} {precision}" if device and precision else "unknown"


def describe_maker(maker: tuple, tiling: bool = False, file: Optional[str] = None) -> str:
    """"weights 62902aa975fbe784 of FILE at --tile 512 --overlap 64" of a `label_maker`: the
    weights `file` where known (labels from before entries recorded it: the hash alone), the
    tiling where `tiling`."""
    weights, _, tile, overlap = maker
    return (f"weights {weights}" + (f" of {file}" if file else "")
            + (f" at --tile {tile} --overlap {overlap}" if tiling else ""))


def label_relpath(name: str, folder: str = LABELS_DIR) -> str:
    parts = [p for p in name.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise ValueError(f"bad sample name {name!r}")
    return "/".join([folder, *parts]) + ".png"


# --- reading the cache (for training) ---------------------------------------------------------

class LabelCache:
    """A labels folder written by `sharpen labels`, read back for training: the labels of the
    last run's selection (`run.json`), since labels that earlier runs with another --limit,
    hold-out or --data made stay in the folder (they are slow to make, and a run that selects
    them again skips them)."""

    def __init__(self, out_dir: str | os.PathLike):
        self.root = Path(out_dir)
        if not self.root.is_dir():
            raise SourceError(f"label cache not found: {self.root}")
        # Entries of an interrupted multi-rank run still sit in shards: include them.
        self.entries: dict[str, dict] = read_cache_entries(self.root)
        self.run = read_run_record(self.root)
        chosen = self.run.get("selection")
        # None: every entry (caches from before the record held the selection).
        self.selection: Optional[set[str]] = set(chosen) if isinstance(chosen, list) else None

    def __len__(self) -> int:
        return len(self.items())

    def _selected(self, name: str) -> bool:
        return self.selection is None or name in self.selection

    def unselected(self) -> list[str]:
        """Names of the finished labels here that the last run did not select (training
        leaves them out)."""
        return sorted(n for n, e in self.entries.items()
                      if e.get("status") == "ok" and not self._selected(n)
                      and (self.root / e["label"]).is_file())

    def elsewhere(self) -> Optional[set[str]]:
        """Names of the labels here that the last run's --data and --split do not list (another
        source's: no run on that --data selects them); None when the record does not say
        (caches from before it did)."""
        names = self.run.get("elsewhere")
        return set(names) if isinstance(names, list) else None

    def left_out(self) -> set[str]:
        """Names of the labels here of clips the last run's --data holds but that run left out
        (over the pixel budget, unreadable): only a run that reads the clip selects them."""
        names = self.run.get("left_out")
        return set(names) if isinstance(names, list) else set()

    def describe_run(self) -> str:
        """The last labelling run's selection as its flags gave it ("--data X --limit 5")."""
        r = self.run
        return " ".join([f"--data {r.get('data')}"]
                        + ([f"--split {r['split']}"] if r.get("split") else [])
                        + ([f"--limit {r['limit']}"] if r.get("limit") else [])
                        + ([f"--hold-out {r['hold_out'].get('fraction')}"]
                           if isinstance(r.get("hold_out"), dict) else []))

    def items(self, sequence: bool = False) -> list[tuple[Sample, Path]]:
        """(Sample, label path) for every finished entry of the last run's selection whose
        label file exists. For video frames, Sample.input is the saved frame PNG (frame=None)
        so it reads like any image. In the names' character order, which training's resume
        digest was taken in; `sequence`: with their numbers read as numbers (frame9 before
        frame10), as validation spreads its picks over them and replaces one by its
        neighbour."""
        out = []
        for name in sorted(self.entries, key=name_key if sequence else None):
            e = self.entries[name]
            if e.get("status") != "ok" or not self._selected(name):
                continue
            label = self.root / e["label"]
            if not label.is_file():
                continue
            if e.get("frame") is not None:
                if not e.get("input_file"):
                    continue
                inp, frame = self.root / e["input_file"], None
                if not inp.is_file():
                    continue
            else:
                inp, frame = Path(e["input"]), None
            gt = Path(e["gt"]) if e.get("gt") else None
            out.append((Sample(name, inp, gt, frame), label))
        return out

    def pairs(self, sequence: bool = False) -> list[tuple[Path, Path, Optional[Path]]]:
        """(input, label, gt or None) triples, the items of `distill.data.crops.CropDataset`
        (`sequence`: see `items`)."""
        return [(s.input, label, s.gt) for s, label in self.items(sequence)]

    def stale(self) -> list[str]:
        """Inputs of finished image entries that are missing or changed since they were
        labelled (their file hash differs): training on those would pair an input with another
        input's label. An input whose size, mtime and ctime are those taken when it was hashed
        (by the labels run: the entry's input_stat; or here: INPUT_STATS) is not read again:
        every input hashed in full at each `distill` start read 100 GB for 50,000 1080p
        frames. One whose stat differs is hashed; the same content, its new stat is recorded
        in INPUT_STATS (the manifest is the labels runs'), so a touched file is read once."""
        from ..teacher import file_hash
        known = _read_input_stats(self.root)
        checked: dict[str, list] = {}
        out = []
        for s, _ in self.items():
            e = self.entries[s.name]
            want = e.get("input_hash")
            if e.get("frame") is not None or not want:
                continue
            path = str(s.input)
            try:
                stat, st = input_stat(path)
                now = [st.st_size, st.st_mtime_ns, st.st_ctime_ns]
                rec = known.get(path)
                if now == e.get("input_stat") or rec == [want, *now]:
                    if rec == [want, *now]:
                        checked[path] = rec
                    continue
                same = file_hash(path, n=len(want)) == want
            except OSError:
                same = False
            if not same:
                out.append(path)
            elif stat is not None:
                checked[path] = [want, *stat]
        if checked != known:
            # Unwritable (a cache shared read-only): each start hashes those inputs again.
            with contextlib.suppress(OSError):
                atomic_write_json(self.root / INPUT_STATS,
                                  {"format": INPUT_STATS_FORMAT, "inputs": checked})
        return out

    def cut_short(self) -> list[str]:
        """The labels (and video frames' copies) training uses whose PNG does not end as one
        ends (`png_whole`), relative to the cache: what a `sharpen labels` killed as it wrote
        them (or a copy stopped part-way) left, on which training failed mid-run. One seek
        each, not a decode. The inputs of images are the user's own, in any format: not
        checked."""
        out = []
        for s, label in self.items():
            files = [label] + ([s.input] if self.entries[s.name].get("frame") is not None
                               else [])
            out += [Path(f).relative_to(self.root).as_posix() for f in files
                    if not png_whole(f)]
        return out

    def teacher_command(self) -> str:
        """The last labelling run as its flags gave it, its teacher's options too ("--data X
        --limit 5, --teacher-weights t.pt"), for advice to run it again."""
        opts = self.run.get("teacher_options")
        teacher = (" ".join(map(str, opts)) if isinstance(opts, list) and opts
                   else "the shipped teacher")
        return f"{self.describe_run()}, {teacher}"

    def incomplete(self) -> Optional[str]:
        """What is unfinished when the last labelling run on this cache did not end (interrupted,
        killed, or still running), else None."""
        run = read_run_record(self.root)
        if not run or run.get("complete") is not False:
            return None
        selected = run.get("selected")
        of = f" of the {selected} it selected" if isinstance(selected, int) else ""
        return (f"{self.root}: the last `sharpen labels` run on it did not finish (started "
                f"{run.get('started', '?')}; {len(self)} labels here{of}): it was interrupted or "
                f"is still running; run the same labels command again to finish it, or train "
                "on what is here knowingly")

    def makers(self) -> dict[tuple, list[str]]:
        """The names of the labels training uses, by what made them (`label_maker`), the
        newest maker first."""
        groups: dict[tuple, list[str]] = {}
        newest: dict[tuple, float] = {}
        for s, _ in self.items():
            e = self.entries[s.name]
            key = label_maker(e)
            groups.setdefault(key, []).append(s.name)
            newest[key] = max(newest.get(key, 0.0), float(e.get("created") or 0.0))
        return {k: groups[k] for k in sorted(groups, key=lambda k: -newest[k])}

    def maker_file(self, names: list[str]) -> Optional[str]:
        """The teacher's weights file that made the labels `names` (one maker), where the
        entries record it."""
        return next((f for n in names if (f := self.entries[n].get("teacher_weights"))), None)

    def mixed_teachers(self) -> Optional[str]:
        """What to say when the labels training uses were made by more than one teacher (or
        tiling), else None: a run with new weights stopped part-way left the old teacher's
        labels beside the new one's, and the student learnt from both."""
        makers = self.makers()
        if len(makers) < 2:
            return None
        tilings = len({k[2:] for k in makers}) > 1
        teachers = len({k[:2] for k in makers})
        what = (f"labels of {teachers} teachers" if teachers > 1
                else f"labels of one teacher at {len(makers)} tilings")
        shown = ", ".join(f"{'the newest ' if i == 0 else ''}{len(names)} by "
                          f"{describe_maker(k, tilings, self.maker_file(names))}"
                          for i, (k, names) in enumerate(makers.items()))
        return (f"{self.root}: {what}: {shown}; a student trained on them learns their "
                "outputs mixed: run the same labels "
                f"command again ({self.teacher_command()}), which relabels every label "
                "its teacher did not make, or train on them knowingly")

    def shared_inputs(self, other: "LabelCache") -> list[str]:
        """Names of this cache's finished entries whose input is one of `other`'s finished
        entries' too: the same file (and frame of the same clip) or the same content (input
        hash: a copy). A validation cache that shares inputs with the training cache scores
        the student on images it trains on."""
        def ok(cache: "LabelCache") -> list[tuple[str, dict]]:   # what trains or validates
            return [(n, e) for n, e in cache.entries.items()
                    if e.get("status") == "ok" and cache._selected(n)]
        theirs = ok(other)
        where = {(e.get("input"), e.get("frame")) for _, e in theirs}
        hashes = {e["input_hash"] for _, e in theirs if e.get("input_hash")}
        return sorted(n for n, e in ok(self)
                      if (e.get("input"), e.get("frame")) in where
                      or (e.get("input_hash") and e["input_hash"] in hashes))

    def failed(self) -> dict[str, str]:
        return {n: e.get("error", "") for n, e in self.entries.items()
                if e.get("status") == "failed"}


# --- the labelling run ------------------------------------------------------------------------
