"""`LabelRun`: the teacher's labelling loop over one rank's samples into a cache folder. Each
sample goes through `_read` (its input read and hashed), `_kept` (the resume checks: an
up-to-date label skipped, a moved input repointed, the other hold-out cache's label reused),
`_teach` (the teacher's tiled inference) and `_put` (ground-truth scores, the label put in place
with its manifest entry). The rest is by job: `label_maker.py` how this run makes labels and
which entries it takes as made alike, `label_manifest.py` the journaled manifest,
`label_progress.py` the bar in tiles, `label_replacing.py` what is said before the teacher runs
of other teachers' labels, `label_stats.py` the counts and the closing lines. The files it
writes are described in `labels.py`."""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from runtime.warn import warn

from ..dist import DistInfo
from .label_cache import (FRAMES_DIR, input_stat, label_relpath, link_or_copy, png_whole,
                          read_cache_entries, sha256_array, video_signature)
from .label_claims import LabelClaims
from .label_maker import LabelMaker
from .label_manifest import ManifestWriter
from .label_progress import TileBar, TilePlan, takes_on_tile
from .label_replacing import replacing
from .label_staging import remove_stale_temp_files, stage_image
from .label_stats import GT_METRICS, LabelStats, old_ssim, psnr_ssim, say_summary
from .sources import Sample, SampleReader


@dataclass
class _Input:
    """A sample's input as read: `image`, RGB float; `raw`, a video frame's pixels as decoded
    (None for an image file, whose label alone is written); `input_hash`, what the entry
    records of it."""
    image: np.ndarray
    raw: Optional[np.ndarray]
    input_hash: str


class LabelRun:
    """One rank's labels run into the cache at `out_dir`; `reuse_from`: the other cache of a
    hold-out, whose labels of the same inputs by the same teacher are copied."""

    def __init__(self, out_dir: Path, teacher, tile: int, overlap: int, batch_size: int,
                 dist: DistInfo, reuse_from: Optional[str | os.PathLike] = None):
        self.out_dir = out_dir
        self.teacher = teacher
        self.maker = LabelMaker.of(teacher, tile, overlap)
        self.tile, self.overlap = self.maker.tile, self.maker.overlap
        self.batch_size = int(batch_size)
        self.dist = dist
        self.reader = SampleReader()
        self._video_ids: dict[str, str] = {}
        # Before the manifest is read: a label put in place since was made by another run.
        self.began = time.time()
        self.started = self.began - 1.0   # a coarse file system clock's second
        self.writer = ManifestWriter(out_dir, dist)
        self.claims = LabelClaims(out_dir)
        self.stats = LabelStats()
        self._tiles = TilePlan(self.tile, self.overlap)   # for the bar's plan
        # The other cache of a hold-out, whose labels of samples that moved to this one are
        # copied, not made again: its entries as they stood when this run began.
        self.donor = (Path(reuse_from) if reuse_from is not None
                      and Path(reuse_from).resolve() != out_dir.resolve() else None)
        self.donor_known = read_cache_entries(self.donor) if self.donor is not None else {}
        remove_stale_temp_files(out_dir)
        # The stat of the input file `_read` hashed last (`input_stat`), which the entry it
        # makes or repoints records beside the hash.
        self._input_stat: Optional[list[int]] = None

    @property
    def known(self) -> dict[str, dict]:
        """The cache's entries as this run knows them: the manifest, shards and its own."""
        return self.writer.known

    @property
    def not_compacted(self) -> Optional[str]:
        """The end's warning when the manifest could not be rewritten (`flush`)."""
        return self.writer.not_compacted

    # One entry per input; see labels.py's docstring for the files it points to.
    def _entry(self, sample: Sample, input_hash: str, **extra) -> dict:
        e = {
            "name": sample.name,
            "input": str(Path(sample.input).resolve()),
            "frame": sample.frame,
            "input_hash": input_hash,
            "gt": str(Path(sample.gt).resolve()) if sample.gt else None,
            **self.maker.entry_fields(),
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

    def _failure(self, sample: Sample, error: str) -> dict:
        """The entry of a sample that could not be labelled: said by `error`, made again by the
        next run."""
        return {"name": sample.name, "input": str(sample.input), "frame": sample.frame,
                "status": "failed", "error": error, "created": time.time()}

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
        elif sample.gt and old_ssim(old):   # scored by an older version's SSIM: score again
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
            entry.update(teacher_config=self.maker.teacher_config, label=label_relpath(sample.name),
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
        from ..metrics import SSIM_ID, SSIM_MIN_SIDE
        if min(image.shape[:2]) < SSIM_MIN_SIDE:   # no SSIM for it: labelled, unscored
            return {}
        tp, ts = psnr_ssim(label, gt)
        ip, is_ = psnr_ssim(image, gt)
        return {"teacher_psnr": round(tp, 4), "teacher_ssim": round(ts, 5),
                "input_psnr": round(ip, 4), "input_ssim": round(is_, 5),
                "ssim_formula": SSIM_ID}

    def _up_to_date(self, e: Optional[dict], input_hash: str,
                    root: Optional[Path] = None) -> bool:
        """Whether entry `e` of the cache at `root` (this one by default) holds the label this
        run would make of an input hashing to `input_hash`."""
        return bool(e) and e.get("input_hash") == input_hash and self.made_alike(e, root)

    def made_alike(self, e: Optional[dict], root: Optional[Path] = None) -> bool:
        """`LabelMaker.made_alike` of entry `e` of the cache at `root` (this one by default)."""
        return self.maker.made_alike(e, self.out_dir if root is None else root)

    def replacing(self, samples: list[Sample]) -> list[str]:
        """What to say, before the teacher runs, of the labels here of `samples` that another
        teacher (or this one at another tiling or precision) made (`label_replacing`)."""
        return replacing(self.out_dir, self.known, samples, self.maker)

    def flush(self) -> None:
        """The manifest rewritten at the run's end, however it ends (`ManifestWriter.flush`)."""
        self.writer.flush()

    def _record(self, name: str, entry: dict,
                staged: Optional[list[tuple[Path, Path]]] = None) -> None:
        self.writer.record(name, entry, staged)

    def _likely_kept(self, sample: Sample) -> bool:
        """Whether `sample`'s label is likely skipped or reused, its input unhashed (hashing
        every input before the bar starts would read the whole selection twice)."""
        if self.made_alike(self.known.get(sample.name)):
            return True
        return self.donor is not None and self.made_alike(self.donor_known.get(sample.name),
                                                          self.donor)

    def process(self, samples: list[Sample], progress: bool = True, tag: str = "") -> LabelStats:
        self.stats = LabelStats(total=len(samples))   # read when interrupted
        # Not planned with the bar off: a selection's headers read before the first label, for
        # nothing shown.
        planned = ({s.name: self._tiles.tiles(s) for s in samples if not self._likely_kept(s)}
                   if progress else {})
        bar = TileBar(planned, len(samples), tag, progress)
        # Stub teachers (tests, notebooks) may not take on_tile: their tiles count as each
        # image ends.
        tile_kw: dict[str, Any] = {"on_tile": bar.on_tile} if takes_on_tile(self.teacher) else {}
        psnr = ""
        # Images another live run into this cache is labelling: left to it, and taken up at
        # the end, by then (almost always) its labels, skipped as up to date.
        theirs: list[Sample] = []
        try:
            for i, sample in enumerate(samples):
                bar.start(i, sample, psnr)
                ran = False
                try:
                    if not self.claims.take(sample.name):
                        theirs.append(sample)
                        continue
                    ran, psnr = self._claimed(sample, tag, tile_kw, psnr)
                finally:
                    bar.end(ran)
            bar.close()
            if theirs:
                print(f"{tag}{len(theirs)} image(s) being labelled by another run into "
                      f"{self.out_dir}: waiting for it", file=sys.stderr, flush=True)
            said = ""
            for sample in theirs:
                # Which run, once for each it waits on: 'waiting for it' alone left a user of
                # a shared server no way to tell whose run (a stopped one holds on for ever).
                if not self.claims.take(sample.name) and (who := self.claims.holder(
                        sample.name)) and who != said:
                    print(f"{tag}waiting for {sample.name}: the run labelling it is {who} "
                          "(Ctrl-C stops this one; the same command goes on later)",
                          file=sys.stderr, flush=True)
                    said = who
                self.claims.take(sample.name, wait=True)
                psnr = self._claimed(sample, tag, {}, psnr)[1]
        finally:
            bar.close()
            self.reader.close()
            self.claims.close()
            self.flush()
        return self.stats

    def _claimed(self, sample: Sample, tag: str, tile_kw: dict[str, Any],
                 psnr: str) -> tuple[bool, str]:
        """`sample`, claimed by this run, skipped where up to date or labelled (released
        after): whether the teacher ran, and the bar's PSNR note."""
        try:
            self._catch_up(sample)
            skipped = self.stats.skipped
            inp = self._read(sample, tag)
            if inp is None or self._kept(sample, inp, tag):
                # One another run made since this one began is said as theirs: "skipped (up
                # to date)" alone read as made before.
                e = self.known.get(sample.name) or {}
                self.stats.shared += (self.stats.skipped > skipped and sample.name not in
                                      self.writer.touched and e.get("created", 0) >= self.began)
                return False, psnr
            t0 = time.perf_counter()
            label = self._teach(sample, inp, tag, tile_kw)
            if label is None:
                return False, psnr
            return True, self._put(sample, inp, label, t0, tag) or psnr
        finally:
            self.claims.release(sample.name)

    def _catch_up(self, sample: Sample) -> None:
        """`sample`'s entry read again where another run put its label in place after this
        one read the manifest (two runs into one cache): made again, it was labelled twice.
        A stat per image; the manifest is read again only for those."""
        try:
            newer = (self.out_dir / label_relpath(sample.name)).stat().st_mtime >= self.started
        except OSError:
            return
        if newer and (entry := read_cache_entries(self.out_dir).get(sample.name)):
            self.known[sample.name] = entry

    def _read(self, sample: Sample, tag: str) -> Optional[_Input]:
        """`sample`'s input read and hashed; None where it is done with: an image file whose
        label is up to date where it was (skipped undecoded), or one that cannot be read
        (said, recorded as failed)."""
        from ..images import (ImageReadError, OverPixelBudget, UndecodableImage, read_image,
                              to_rgb_float)
        from ..teacher import file_hash
        from .sources import UnopenableVideo

        stats = self.stats
        try:
            if sample.frame is None:
                self._input_stat = input_stat(sample.input)[0]   # before the hash
                input_hash = file_hash(sample.input, n=64)
                old = self.known.get(sample.name)
                moved = self._up_to_date(old, input_hash) and self._moved(old, sample)
                if moved == {}:
                    # Undecoded: a resume decoded every done image to skip it, 41 ms a 1080p
                    # PNG (19 ms a JPEG) against 2.6 ms (0.5) to hash it: 34 minutes of 50,000
                    # frames' decoding to label nothing.
                    stats.skipped += 1
                    return None
                try:
                    return _Input(read_image(sample.input), None, input_hash)
                except OverPixelBudget as e:
                    if not moved or set(moved) != {"gt"} or moved["gt"] != old.get("gt"):
                        raise
                    # Decoded only to be scored again (an older version's SSIM, or a ground
                    # truth unusable then): the label stays up to date, as this version's do.
                    warn(f"{tag}{sample.name}: not scored again with this version's SSIM "
                         f"({e}); its label kept")
                    stats.skipped += 1
                    return None
            raw = self.reader.input_raw(sample)
            input_hash = sha256_array(raw)
            return _Input(to_rgb_float(raw, f"{sample.input}[frame {sample.frame}]"), raw,
                          input_hash)
        except (ImageReadError, OSError) as e:
            # One line, the bar cleared for it (e names the file); 'skipped:', as every
            # command words an input it could not read (teacher, synth, corpus, export).
            warn(f"{tag}skipped: {sample.name}: {e}")
            stats.failed += 1
            stats.undecodable += isinstance(e, UndecodableImage)
            stats.unopenable += isinstance(e, UnopenableVideo)
            stats.too_large += isinstance(e, OverPixelBudget)
            self._record(sample.name, self._failure(sample, str(e)))
            return None

    def _kept(self, sample: Sample, inp: _Input, tag: str) -> bool:
        """The resume checks: whether `sample`'s label is kept rather than made by the teacher
        (up to date here, repointed to a moved input, or reused from the other cache), with
        what is said of a damaged label or a name two sources share."""
        from ..images import ImageReadError

        old = self.known.get(sample.name)
        if self._up_to_date(old, inp.input_hash):
            try:
                if moved := self._moved(old, sample):
                    # Same content at a new path (a moved or copied folder): repoint the entry,
                    # its ground truth too, measured against that.
                    entry = self._repointed(old, sample, inp.image, self.out_dir, tag)
                    self._record(sample.name, {**entry, "created": time.time()})
                    # After: a label that cannot be read back is made again.
                    self.stats.repointed += "input" in moved
                    # Not one whose ground truth is gone or unusable now: unscored.
                    self.stats.rescored += old_ssim(old) and "ssim_formula" in entry
                self.stats.skipped += 1
                return True
            except ImageReadError as e:   # a damaged label: made again below
                warn(f"{tag}{e}; labelling {sample.name} again")
        elif (old and old.get("status") == "ok" and old.get("input_hash") == inp.input_hash
              and (cut := [self.out_dir / old[k] for k in ("label", "input_file")
                           if old.get(k) and not png_whole(self.out_dir / old[k])])):
            # Said as a label that fails to decode is: a killed run's, or damaged.
            how = "is cut short or damaged" if cut[0].exists() else "is gone"
            warn(f"{tag}{cut[0]} {how}; labelling {sample.name} again")
        if (old and old.get("status") == "ok"
                and old.get("input") != str(Path(sample.input).resolve())
                and Path(old["input"]).is_file()):
            # Names are the cache's keys: two sources labelled into one folder collide.
            warn(f"{tag}{sample.input} has the name {sample.name!r} of "
                 f"{old['input']}, labelled here before; its label replaces that one "
                 "(label each source into its own --out)")
        if self._reuse(sample, inp.input_hash, inp.image, tag):
            self.stats.reused += 1
            return True
        return False

    def _teach(self, sample: Sample, inp: _Input, tag: str,
               tile_kw: dict[str, Any]) -> Optional[np.ndarray]:
        """The teacher's label of `sample` at full resolution (tiled, Gaussian-blended); None
        where it fails (said, recorded as failed)."""
        try:
            return self.teacher.sharpen(inp.image, tile=self.tile, overlap=self.overlap,
                                        batch_size=self.batch_size, **tile_kw)
        except Exception as e:  # e.g. out of memory on one huge image: keep going
            warn(f"{tag}teacher failed on {sample.name}: {type(e).__name__}: {e}")
            self.stats.failed += 1
            self._record(sample.name, self._failure(sample, f"{type(e).__name__}: {e}"))
            return None

    def _put(self, sample: Sample, inp: _Input, label: np.ndarray, t0: float,
             tag: str) -> Optional[str]:
        """The label the teacher began at `t0` scored against the ground truth, written (with
        the video frame) to temp files and put in place with its entry; the bar's note of its
        PSNR, None where it has no ground-truth score."""
        image = inp.image
        extra: dict[str, Any] = {"status": "ok", "height": int(image.shape[0]),
                                 "width": int(image.shape[1])}
        extra["seconds"] = round(time.perf_counter() - t0, 4)
        extra.update(self._gt_metrics(sample, image, label, tag))
        staged = [(stage_image(self.out_dir / label_relpath(sample.name), label, 16),
                   self.out_dir / label_relpath(sample.name))]
        if inp.raw is not None:
            frame = self.out_dir / label_relpath(sample.name, FRAMES_DIR)
            staged.append((stage_image(frame, image, 8), frame))
        self._record(sample.name, self._entry(sample, inp.input_hash, **extra), staged)
        self.stats.done += 1
        self.stats.seconds += time.perf_counter() - t0
        if "teacher_psnr" in extra:
            return f", psnr={extra['teacher_psnr']:.2f}"
        return None

    def summary(self, stats: LabelStats, samples: list[Sample], tag: str = "",
                say: Callable[[str], None] = print,
                entries: Optional[dict[str, dict]] = None) -> None:
        """The run's closing lines (`label_stats.say_summary`); `entries`: where the samples'
        entries are (the merged manifest, for every rank's share) when not in this run's own."""
        say_summary(stats, samples, self.known if entries is None else entries, self.donor,
                    tag, say)
