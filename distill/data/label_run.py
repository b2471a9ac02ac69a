"""`LabelRun`: the teacher's labelling loop over one rank's samples into a cache folder: resume
checks (an up-to-date label skipped, a moved input repointed, the other hold-out cache's label
reused), the teacher's tiled inference with a progress bar in tiles, ground-truth scores, and
each label put in place with its manifest entry (journaled, the manifest rewritten as it
grows). The files it writes are described in `labels.py`."""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from runtime.atomic import new_file_mode
from runtime.console import count
from runtime.warn import warn

from ..dist import DistInfo
from .label_cache import (FRAMES_DIR, MANIFEST, _manifest_lock, append_journal, describe_maker,
                          input_stat, journal_path, label_maker, label_relpath, link_or_copy,
                          made_on, merge_entries, png_whole, read_manifest_entries,
                          sha256_array, shard_paths, video_signature, write_manifest)
from .label_staging import remove_stale_temp_files, stage_image
from .label_stats import GT_METRICS, LabelStats, failed_advice, mean_of, psnr_ssim
from .sources import Sample, SampleReader


def not_compacted(manifest: Path, e: OSError) -> str:
    """The warning when `manifest` (or a rank's shard) could not be rewritten at a run's end."""
    return (f"could not compact {manifest} ({e.strerror or e}): its journal "
            f"{journal_path(manifest)} keeps every entry, and the next run into "
            f"{manifest.parent} folds it in")


class LabelRun:
    def __init__(self, out_dir: Path, teacher, tile: int, overlap: int, batch_size: int,
                 dist: DistInfo, reuse_from: Optional[str | os.PathLike] = None):
        self.out_dir = out_dir
        self.teacher = teacher
        self.tile, self.overlap, self.batch_size = int(tile), int(overlap), int(batch_size)
        self.dist = dist
        self.reader = SampleReader()
        self._video_ids: dict[str, str] = {}
        cfg = getattr(getattr(teacher, "model", None), "config", None)
        self.teacher_arch = cfg.to_dict() if hasattr(cfg, "to_dict") else None
        self.teacher_config = getattr(teacher, "config_name", None)
        self.weights_id = str(getattr(teacher, "weights_id", "unknown"))
        self.weights_path = getattr(teacher, "weights_path", None)
        # Recorded in each entry: a GPU's labels are computed in bf16/fp16, which evaluate,
        # reading them as the teacher's outputs, must say (label_cache.made_on).
        device = getattr(teacher, "device", None)
        self.device = getattr(device, "type", None) or (str(device) if device else None)
        self.precision = getattr(teacher, "precision", None)
        # What this run knows: the merged manifest plus shards of interrupted runs.
        self.known = merge_entries(
            read_manifest_entries(out_dir / MANIFEST),
            *(read_manifest_entries(p) for _, p in sorted(shard_paths(out_dir).items())))
        self.touched: dict[str, dict] = {}
        self.stats = LabelStats()
        self._video_sizes: dict[Path, Optional[tuple[int, int]]] = {}   # for the bar's plan
        # The other cache of a hold-out, whose labels of samples that moved to this one are
        # copied, not made again: its entries as they stood when this run began.
        self.donor = (Path(reuse_from) if reuse_from is not None
                      and Path(reuse_from).resolve() != out_dir.resolve() else None)
        self.donor_known = merge_entries(
            read_manifest_entries(self.donor / MANIFEST),
            *(read_manifest_entries(p) for _, p in sorted(shard_paths(self.donor).items()))
        ) if self.donor is not None else {}
        remove_stale_temp_files(out_dir)
        self.target = (out_dir / MANIFEST if dist.world == 1
                       else out_dir / f"manifest.rank{dist.rank}.json")
        # An interrupted run's entries in this rank's shard: this run skips their labels as up
        # to date, so its shard must keep them (rewritten with only this run's, they were lost).
        self.inherited = read_manifest_entries(self.target) if dist.world > 1 else {}
        # Entries in the journal since the manifest was rewritten: a killed run's count too,
        # so that this run's flush folds them in however it ends (for a version that reads
        # no journal), not only a run that makes a label or finishes.
        self.journaled = int(journal_path(self.target).exists())
        # The stat of the input file `process` hashed last (`input_stat`), which the entry it
        # makes or repoints records beside the hash.
        self._input_stat: Optional[list[int]] = None
        # A rewrite of the manifest failed (a full disk, a folder made read-only): the journal
        # keeps growing, read with the manifest, and the rewrite is tried again at the end.
        self.stuck = False
        self.not_compacted: Optional[str] = None   # the end's warning, when it failed too

    # One entry per input; see the module docstring for the files it points to.
    def _entry(self, sample: Sample, input_hash: str, **extra) -> dict:
        e = {
            "name": sample.name,
            "input": str(Path(sample.input).resolve()),
            "frame": sample.frame,
            "input_hash": input_hash,
            "gt": str(Path(sample.gt).resolve()) if sample.gt else None,
            "teacher_config": self.teacher_config,
            "teacher_arch": self.teacher_arch,
            "weights_hash": self.weights_id,
            "teacher_weights": self.weights_path,
            "teacher_device": self.device,
            "teacher_precision": self.precision,
            "tile": self.tile,
            "overlap": self.overlap,
            "label": label_relpath(sample.name),
            "input_file": label_relpath(sample.name, FRAMES_DIR) if sample.frame is not None
            else None,
            "input_stat": self._input_stat if sample.frame is None else None,
            "created": time.time(),
        }
        if sample.frame is not None:
            e["video_id"] = self._video_id(sample.input)
        e.update(extra)
        return e

    def _video_id(self, path: str | os.PathLike) -> str:
        key = str(Path(path).resolve())
        if key not in self._video_ids:
            self._video_ids[key] = video_signature(key)
        return self._video_ids[key]

    def _moved(self, old: dict, sample: Sample) -> dict:
        """What an up-to-date entry must change to point at this sample's files: its input, its
        ground truth, its video's signature (a clip copied elsewhere)."""
        here = {"input": str(Path(sample.input).resolve()),
                "gt": str(Path(sample.gt).resolve()) if sample.gt else None}
        if sample.frame is not None:
            here["video_id"] = self._video_id(sample.input)
        moved = {k: v for k, v in here.items() if old.get(k) != v}
        if sample.gt and "input_psnr" not in old:   # unusable when labelled: look again
            moved["gt"] = here["gt"]
        return moved

    def _repointed(self, old: dict, sample: Sample, image: np.ndarray, root: Path,
                   tag: str) -> dict:
        """`old`, an up-to-date entry of the cache at `root`, pointing at this sample's files
        (`_moved`), its ground-truth metrics measured again against a new ground truth.
        ImageReadError for a label that cannot be read back."""
        from ..images import read_image
        moved = self._moved(old, sample)
        if sample.frame is None:   # the stat of the file at its new path (or another cache's)
            moved["input_stat"] = self._input_stat
        kept = old
        if "gt" in moved:
            kept = {k: v for k, v in old.items() if k not in GT_METRICS}
            label = read_image(root / old["label"])
            moved.update(self._gt_metrics(sample, image, label, tag))
        return {**kept, **moved}

    def _reuse(self, sample: Sample, input_hash: str, image: np.ndarray, tag: str) -> bool:
        """Take the other cache's label of `sample` (and its video frame) when that cache's
        entry passes the checks that skip a label here (same input, teacher, tile settings;
        files there): the teacher would make the same label again, for hours on real footage.
        Records the entry labelling anew gives, but for its time and a `reused_from` note.
        False when there is none or it cannot be copied (the teacher makes it then)."""
        from ..images import ImageReadError
        old = self.donor_known.get(sample.name)
        if self.donor is None or not self._up_to_date(old, input_hash, self.donor):
            return False
        try:
            entry = self._repointed(old, sample, image, self.donor, tag)
            entry.update(teacher_config=self.teacher_config, label=label_relpath(sample.name),
                         input_file=label_relpath(sample.name, FRAMES_DIR)
                         if sample.frame is not None else None)
            link_or_copy(self.donor / old["label"], self.out_dir / entry["label"])
            if entry["input_file"]:
                link_or_copy(self.donor / old["input_file"], self.out_dir / entry["input_file"])
        except (ImageReadError, OSError) as e:   # gone since (another rank's clean-up), damaged
            warn(f"{tag}could not reuse the label of {sample.name} from {self.donor} ({e}); "
                  "labelling it again")
            return False
        self._record(sample.name, {**entry, "reused_from": str(self.donor.resolve()),
                                   "created": time.time()})
        return True

    def _gt_metrics(self, sample: Sample, image: np.ndarray, label: np.ndarray,
                    tag: str) -> dict:
        """PSNR/SSIM of the input and the label against the ground truth. A ground truth that
        cannot be used (unreadable, another size) is said and dropped from the entry
        (gt: None): the sample still trains on its label, without ground-truth terms."""
        from ..images import ImageReadError, misoriented, read_image
        if sample.gt is None:
            return {}
        try:
            gt = read_image(sample.gt)
            note = misoriented(sample.input, image, sample.gt, gt)
            if gt.shape != image.shape:
                raise ImageReadError(f"{sample.gt}: size {gt.shape[1]}x{gt.shape[0]} differs "
                                     f"from the input's {image.shape[1]}x{image.shape[0]}"
                                     + (note and f"; {note}"))
            if note:
                raise ImageReadError(f"{sample.gt}: {note}")
        except ImageReadError as e:
            warn(f"{tag}ground truth unusable for {sample.name}, which trains on its label "
                  f"alone: {e}")
            return {"gt": None}
        from ..metrics import SSIM_MIN_SIDE
        if min(image.shape[:2]) < SSIM_MIN_SIDE:   # no SSIM for it: labelled, unscored
            return {}
        tp, ts = psnr_ssim(label, gt)
        ip, is_ = psnr_ssim(image, gt)
        return {"teacher_psnr": round(tp, 4), "teacher_ssim": round(ts, 5),
                "input_psnr": round(ip, 4), "input_ssim": round(is_, 5)}

    def _up_to_date(self, e: Optional[dict], input_hash: str,
                    root: Optional[Path] = None) -> bool:
        """Whether entry `e` of the cache at `root` (this one by default) holds the label this
        run would make of an input hashing to `input_hash`."""
        return bool(e) and e.get("input_hash") == input_hash and self.made_alike(e, root)

    def made_alike(self, e: Optional[dict], root: Optional[Path] = None) -> bool:
        """Whether entry `e` holds a label made as this run makes them (teacher, tiling, its
        files there), its input unchecked (hashing every input is a run's work)."""
        root = self.out_dir if root is None else root
        if not e or e.get("status") != "ok":
            return False
        if (e.get("weights_hash") != self.weights_id
                or e.get("teacher_arch") != self.teacher_arch
                or e.get("tile") != self.tile or e.get("overlap") != self.overlap):
            return False
        if not png_whole(root / e["label"]):
            return False
        if e.get("input_file") and not png_whole(root / e["input_file"]):
            return False
        return True

    def _other_precision(self, e: dict) -> bool:
        """Whether entry `e`'s label was computed in another precision than this run's (cuda
        bf16 then, cpu fp32 now). Such labels are kept and said (`replacing`): bf16 and fp32
        outputs of one teacher differ far less than a student learns, and remaking a GPU's
        labels on a CPU takes hours. Neither the device alone nor a label from before entries
        recorded the precision is said."""
        theirs = e.get("teacher_precision")
        return bool(self.precision and theirs and theirs != self.precision)

    def replacing(self, samples: list[Sample]) -> list[str]:
        """What to say, before the teacher runs, of the labels here of `samples` that another
        teacher (or this one at another tiling or precision) made, which this run replaces:
        labels made with the official weights were replaced by the shipped teacher's, hours of
        work, when the command was run again without --teacher-weights, said as "5 done" at
        the end."""
        mine = label_maker({"weights_hash": self.weights_id, "teacher_arch": self.teacher_arch,
                            "tile": self.tile, "overlap": self.overlap})
        teachers: dict[tuple, int] = {}
        tilings: dict[tuple, int] = {}
        precisions: dict[str, int] = {}   # "cuda bf16" -> labels this teacher made so
        files = {mine: self.weights_path}
        for s in samples:
            e = self.known.get(s.name)
            if not e or e.get("status") != "ok" or not (self.out_dir / e["label"]).is_file():
                continue
            maker = label_maker(e)
            files.setdefault(maker, e.get("teacher_weights"))
            if maker[:2] != mine[:2]:
                teachers[maker] = teachers.get(maker, 0) + 1
            elif maker[2:] != mine[2:]:
                tilings[maker] = tilings.get(maker, 0) + 1
            elif self._other_precision(e):
                precisions[made_on(e)] = precisions.get(made_on(e), 0) + 1
        this = (f"{self.out_dir}: this run's teacher ({describe_maker(mine, file=files[mine])})"
                " replaces")
        said = []
        if teachers:
            shown = ", ".join(describe_maker(k, file=files[k]) for k in teachers)
            said.append(f"{this} {count(sum(teachers.values()), 'label')} that another teacher "
                        f"made here ({shown}), one by one as it reaches them; to keep them "
                        "(a --teacher-weights left out?), stop it now (Ctrl-C)")
        if tilings:
            shown = "; ".join(f"tile {k[2]}, overlap {k[3]}" for k in tilings)
            said.append(f"{this} {count(sum(tilings.values()), 'label')} that it made here at "
                        f"another tiling ({shown}), one by one as it reaches them")
        if precisions:
            shown = ", ".join(f"{n} on {m}" for m, n in precisions.items())
            said.append(f"{self.out_dir}: keeps {count(sum(precisions.values()), 'label')} "
                        f"made in another precision ({shown}; this run computes in "
                        f"{self.precision} on {self.device}); to remake them, label into a "
                        "new --out")
        return said

    def _save(self, staged: Optional[list[tuple[Path, Path]]] = None,
              entries: Optional[dict[str, dict]] = None) -> None:
        """`entries`, this run's newest, appended to the manifest's journal; `staged`: (temp
        file, final name) pairs of the files of the entry just made, renamed into place first.
        The manifest itself is rewritten (the journal folded in) once the journal has grown by
        half the manifest's entries, and when the run ends (`flush`): a run of n labels writes
        O(n) entries in all, where rewriting it per label wrote n^2/2 (4,000 labels of 16x16
        images: 601 s, 1,000: 43 s). A kill loses no entry: the journal is read with it."""
        if self.dist.world == 1:
            # Another run may write the same folder: its entries go to the same journal, and a
            # rewrite re-reads both under the lock and merges, so no entry is lost to a
            # last-writer-wins rewrite. The files go in place under the lock too, and the
            # entry is dated then: two runs (other teachers) labelling one name left one run's
            # label under the other's entry, when the other's label and entry went in between
            # this run's label and its entry. Now the newest entry, which the merge keeps, is
            # the one of the file renamed last.
            with _manifest_lock(self.out_dir):
                self._put_in_place(staged or [])
                self._journal(entries or {})
        else:   # the ranks of a run label names of their own
            self._put_in_place(staged or [])
            self._journal(entries or {})

    def _journal(self, entries: dict[str, dict]) -> None:
        """(Under the manifest lock where runs share the file.)"""
        if entries:
            append_journal(self.target, entries)
            self.journaled += len(entries)
        if not self.stuck and self.journaled and self.journaled >= len(self.known) // 2:
            try:
                self._rewrite()
            except OSError:
                # Not this label's failure: its file and entry are in place. Tried again at
                # the end, which says so if it fails (flush); each label's retry fails alike.
                self.stuck = True

    def _rewrite(self) -> None:
        """The manifest rewritten whole, its journal folded in (under the manifest lock where
        runs share the file)."""
        if self.dist.world == 1:
            self.known = merge_entries(read_manifest_entries(self.target), self.known,
                                       self.touched)
            write_manifest(self.out_dir, self.known, self.target)
        else:
            write_manifest(self.out_dir, merge_entries(self.inherited, self.touched),
                           self.target)
        self.journaled = 0

    def flush(self) -> None:
        """The manifest rewritten with what this run journaled since its last rewrite: at the
        run's end, however it ends, so that manifest.json is whole for an older version of
        this program (which reads no journal). A failure is a warning: raised, it replaced a
        Ctrl-C (or a finished run's end) with its own error, though the journal keeps every
        entry and the next run reads it."""
        if not self.journaled:
            return
        try:
            if self.dist.world == 1:
                with _manifest_lock(self.out_dir):
                    self._rewrite()
            else:
                self._rewrite()
        except OSError as e:
            self.not_compacted = not_compacted(self.target, e)
            warn(self.not_compacted)

    def _put_in_place(self, staged: list[tuple[Path, Path]]) -> None:
        """The staged files renamed into place, and the entry they belong to dated now."""
        while staged:   # each one taken off the list once renamed (_record's clean-up)
            tmp, path = staged[0]
            os.chmod(tmp, new_file_mode())   # mkstemp makes files owner-only
            os.replace(tmp, path)
            staged.pop(0)
        for e in self.touched.values():
            if e.pop("_now", False):
                e["created"] = time.time()

    def _record(self, name: str, entry: dict,
                staged: Optional[list[tuple[Path, Path]]] = None) -> None:
        if staged:
            entry["_now"] = True   # dated when its files are in place (_save)
        self.touched[name] = entry
        self.known[name] = entry
        try:
            self._save(staged, {name: entry})
        finally:
            for tmp, _ in staged or ():   # not renamed: an error or Ctrl-C came first
                with contextlib.suppress(OSError):
                    tmp.unlink()

    def _likely_kept(self, sample: Sample) -> bool:
        """Whether `sample`'s label is likely skipped or reused, its input unhashed (hashing
        every input before the bar starts would read the whole selection twice)."""
        if self.made_alike(self.known.get(sample.name)):
            return True
        return self.donor is not None and self.made_alike(self.donor_known.get(sample.name),
                                                          self.donor)

    def _planned_tiles(self, sample: Sample) -> int:
        """The tiles the teacher runs on `sample`, from its file's header or its video's frame
        size, without decoding it; 0 where they do not say (counted when it runs)."""
        from runtime.imageio import file_header_size
        from runtime.tiling import count_tiles

        from ..restormer import Restormer
        size = None
        try:
            if sample.frame is None:
                size = file_header_size(sample.input)
            else:
                sizes = self._video_sizes
                if sample.input not in sizes:
                    import cv2
                    cap = cv2.VideoCapture(str(sample.input))
                    w, h = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                            int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
                    cap.release()
                    sizes[sample.input] = (w, h) if w > 0 and h > 0 else None
                size = sizes[sample.input]
        except OSError:
            pass
        # Square tiles: an EXIF turn keeps the count.
        return count_tiles(size[1], size[0], self.tile, self.overlap,
                           Restormer.multiple) if size else 0

    def process(self, samples: list[Sample], progress: bool = True, tag: str = "") -> LabelStats:
        from tqdm import tqdm

        from ..images import (ImageReadError, OverPixelBudget, UndecodableImage, read_image,
                              to_rgb_float)
        from .sources import UnopenableVideo
        from ..teacher import file_hash

        stats = self.stats = LabelStats(total=len(samples))   # read when interrupted
        # One bar in tiles over the whole selection: counted in images it sat still for
        # minutes on a 48-megapixel photo, its rate and ETA those of the images so far.
        # Labels already made alike count none (their input's hash, checked as each comes,
        # may still call for the teacher: its tiles are added then).
        # Not read with the bar off: a selection's headers read before the first label, for
        # nothing shown.
        planned = ({s.name: self._planned_tiles(s) for s in samples if not self._likely_kept(s)}
                   if progress else {})
        bar = tqdm(total=sum(planned.values()), desc=f"{tag}labels", unit="tile",
                   disable=not progress, dynamic_ncols=True)
        # Stub teachers (tests, notebooks) may not take on_tile: their tiles count as each
        # image ends.
        tile_kw: dict[str, Any] = {}
        plan = [0]
        base = 0

        def on_tile(n: int, total: int) -> None:
            if total != plan[0]:   # a size the header did not give, or gave wrong
                bar.total += total - plan[0]
                plan[0] = total
            bar.n = base + n
            bar.refresh()
        if _takes_on_tile(self.teacher):
            tile_kw["on_tile"] = on_tile
        psnr = ""
        try:
            for i, sample in enumerate(samples):
                bar.set_postfix_str(f"{i + 1}/{len(samples)}: {sample.name}{psnr}",
                                    refresh=False)
                base, plan[0], ran = bar.n, planned.get(sample.name, 0), False
                try:
                    # 1. read and hash the input
                    try:
                        if sample.frame is None:
                            self._input_stat = input_stat(sample.input)[0]   # before the hash
                            input_hash = file_hash(sample.input, n=64)
                            old = self.known.get(sample.name)
                            if (self._up_to_date(old, input_hash)
                                    and not self._moved(old, sample)):
                                # Undecoded: a resume decoded every done image to skip it,
                                # 41 ms a 1080p PNG (19 ms a JPEG) against 2.6 ms (0.5) to hash
                                # it: 34 minutes of 50,000 frames' decoding to label nothing.
                                stats.skipped += 1
                                continue
                            image = read_image(sample.input)
                            raw = None
                        else:
                            raw = self.reader.input_raw(sample)
                            input_hash = sha256_array(raw)
                            image = to_rgb_float(raw, f"{sample.input}[frame {sample.frame}]")
                    except (ImageReadError, OSError) as e:
                        # One line, the bar cleared for it (e names the file).
                        warn(f"{tag}skipping {sample.name}: {e}")
                        stats.failed += 1
                        stats.undecodable += isinstance(e, UndecodableImage)
                        stats.unopenable += isinstance(e, UnopenableVideo)
                        stats.too_large += isinstance(e, OverPixelBudget)
                        self._record(sample.name, {"name": sample.name,
                                                   "input": str(sample.input),
                                                   "frame": sample.frame, "status": "failed",
                                                   "error": str(e), "created": time.time()})
                        continue
                    old = self.known.get(sample.name)
                    here = str(Path(sample.input).resolve())
                    if self._up_to_date(old, input_hash):
                        try:
                            if moved := self._moved(old, sample):
                                # Same content at a new path (a moved or copied folder): repoint
                                # the entry, its ground truth too, measured against that.
                                self._record(sample.name, {
                                    **self._repointed(old, sample, image, self.out_dir, tag),
                                    "created": time.time()})
                                # After: a label that cannot be read back is made again.
                                stats.repointed += "input" in moved
                            stats.skipped += 1
                            continue
                        except ImageReadError as e:   # a damaged label: made again below
                            warn(f"{tag}{e}; labelling {sample.name} again")
                    elif (old and old.get("status") == "ok"
                          and old.get("input_hash") == input_hash
                          and (cut := [self.out_dir / old[k] for k in ("label", "input_file")
                                       if old.get(k)
                                       and not png_whole(self.out_dir / old[k])])):
                        # Said as a label that fails to decode is: a killed run's, or damaged.
                        how = "is cut short or damaged" if cut[0].exists() else "is gone"
                        warn(f"{tag}{cut[0]} {how}; labelling {sample.name} again")
                    if (old and old.get("status") == "ok" and old.get("input") != here
                            and Path(old["input"]).is_file()):
                        # Names are the cache's keys: two sources labelled into one folder collide.
                        warn(f"{tag}{sample.input} has the name {sample.name!r} of "
                              f"{old['input']}, labelled here before; its label replaces that one "
                              "(label each source into its own --out)")
                    if self._reuse(sample, input_hash, image, tag):
                        stats.reused += 1
                        continue
                    # 2. teacher at full resolution (tiled, Gaussian-blended)
                    t0 = time.perf_counter()
                    try:
                        label = self.teacher.sharpen(image, tile=self.tile,
                                                     overlap=self.overlap,
                                                     batch_size=self.batch_size, **tile_kw)
                        ran = True
                    except Exception as e:  # e.g. out of memory on one huge image: keep going
                        warn(f"{tag}teacher failed on {sample.name}: {type(e).__name__}: {e}")
                        stats.failed += 1
                        self._record(sample.name, {"name": sample.name, "input": str(sample.input),
                                                   "frame": sample.frame, "status": "failed",
                                                   "error": f"{type(e).__name__}: {e}",
                                                   "created": time.time()})
                        continue
                    entry_extra: dict[str, Any] = {"status": "ok", "height": int(image.shape[0]),
                                                   "width": int(image.shape[1])}
                    entry_extra["seconds"] = round(time.perf_counter() - t0, 4)
                    # 3. metrics against ground truth
                    entry_extra.update(self._gt_metrics(sample, image, label, tag))
                    # 4. the label (and the video frame) written to temp files, put in place with
                    # the entry (_record)
                    staged = [(stage_image(self.out_dir / label_relpath(sample.name), label, 16),
                               self.out_dir / label_relpath(sample.name))]
                    if raw is not None:
                        frame = self.out_dir / label_relpath(sample.name, FRAMES_DIR)
                        staged.append((stage_image(frame, image, 8), frame))
                    self._record(sample.name, self._entry(sample, input_hash, **entry_extra),
                                 staged)
                    stats.done += 1
                    stats.seconds += time.perf_counter() - t0
                    if "teacher_psnr" in entry_extra:
                        psnr = f", psnr={entry_extra['teacher_psnr']:.2f}"
                finally:
                    if ran:
                        bar.n = base + plan[0]
                    else:   # skipped, reused or failed: its tiles that did not run
                        bar.total -= plan[0] - (bar.n - base)
                    bar.refresh()
        finally:
            bar.close()
            self.reader.close()
            self.flush()
        return stats

    def summary(self, stats: LabelStats, samples: list[Sample], tag: str = "",
                say: Callable[[str], None] = print,
                entries: Optional[dict[str, dict]] = None) -> None:
        """The run's closing lines; `entries`: where the samples' entries are (the merged
        manifest, for every rank's share) when not in this run's own."""
        known = self.known if entries is None else entries
        ents = [known.get(s.name) for s in samples]
        ents = [e for e in ents if e and e.get("status") == "ok"]
        per = f", {stats.seconds / stats.done:.2f} s per image" if stats.done else ""
        left = stats.videos_left_out
        left_out = (f"; {left} video{'s' * (left != 1)} left out (OpenCV cannot read "
                    f"{'them' if left != 1 else 'it'}: see the warning above)" if left else "")
        # Reused: made in the other cache of a hold-out from the same input by the same teacher
        reused = f", {stats.reused} reused from {self.donor}" if stats.reused else ""
        # Said: after a move, "skipped (up to date)" alone left users unsure the labels of the
        # old path were kept for the new one rather than stale.
        moved = (f"; {stats.repointed} of them found by content at their input's new path"
                 if stats.repointed else "")
        say(f"{tag}labels: {stats.done} done, {stats.skipped} skipped (up to date{moved})"
            f"{reused}, {stats.failed} failed, of {stats.total}{per}{left_out}")
        tp = mean_of([e.get("teacher_psnr") for e in ents])
        if tp is not None:
            n = sum(e.get("teacher_psnr") is not None for e in ents)
            ts, ip, is_ = (mean_of([e.get(k) for e in ents])
                           for k in ("teacher_ssim", "input_psnr", "input_ssim"))

            def f(v, spec):
                return "n/a" if v is None else format(v, spec)
            say(f"{tag}vs ground truth ({count(n, 'image')}): teacher PSNR {f(tp, '.2f')} dB SSIM "
                f"{f(ts, '.4f')}; input PSNR {f(ip, '.2f')} dB SSIM {f(is_, '.4f')}")
            if ip is not None and tp < ip:
                warn(f"{tag}the teacher's outputs are further from the ground truth than the "
                      f"blurred inputs ({tp:.2f} against {ip:.2f} dB PSNR): a student "
                      "distilled from these labels learns that; mix ground truth in (loss.gt, "
                      "data.gt_train) or use a teacher trained on such blur")
        if stats.failed:
            warn(f"{tag}{failed_advice(stats)}")


def _takes_on_tile(teacher) -> bool:
    """Whether `teacher.sharpen` takes on_tile= (distill.teacher.Teacher's does; a stub
    written before it may not). Named, not through **kw: a wrapper's **kw may be passed on to
    a sharpen that does not take it."""
    import inspect
    try:
        return "on_tile" in inspect.signature(teacher.sharpen).parameters
    except (TypeError, ValueError):
        return False
