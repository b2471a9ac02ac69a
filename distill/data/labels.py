"""Teacher pseudo-labels, cached on disk.

`sharpen labels --data SPEC --out DIR` runs the teacher's Gaussian-blended tiled inference over
every blurred input at its full resolution and writes

    DIR/labels/<name>.png     one 16-bit lossless PNG per input ('/' in a name makes subfolders)
    DIR/frames/<name>.png     the decoded input frame, for video sources only (training reads it)
    DIR/manifest.json         one entry per input (see `LabelRun._entry`)

Every file is written atomically (temp file + rename) and each image's entry is appended to
DIR/manifest.journal.jsonl once its label is in place (read with the manifest, folded into it
as it grows and when the run ends), so an interrupted run, even a killed one, loses at most the
image in flight. A re-run skips entries whose input
hash, teacher (weights hash and architecture) and tile settings match and whose label exists.
With --hold-out, each of the two caches takes such a label from the other (a hard link, else a
copy) for a sample that moved to it, rather than running the teacher again.

Sharding: under `torchrun` (or with RANK/WORLD_SIZE set by hand) rank k labels samples[k::world]
and writes its entries to DIR/manifest.rank<k>.json as it goes; at the end every rank merges all
shards into manifest.json under a file lock (newest entry per name wins), so the last rank to
finish leaves the complete manifest. When torchrun's rendezvous variables are present a gloo
process group is used only for a final barrier, so that a rank that hit a corrupt image (and
exits non-zero) does not make torchrun stop ranks that are still working. The output folder must
be on a filesystem all ranks share.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import sys
import time
import uuid
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Collection, Optional

import numpy as np

from runtime.atomic import new_file_mode
from runtime.cli_errors import SharpenError, interrupt_exit_code, interrupted_message
from runtime.console import count, shell_join
from runtime.warn import shown_once_as_lines, warn
from ..teacher_tiles import (BATCH as TEACHER_BATCH, TILE as TEACHER_TILE, overlap_for,
                             tiling_context, tiling_cost, tiling_problem)

from ..dist import DistInfo
from .label_cache import (FRAMES_DIR, MANIFEST, LabelCache, _manifest_lock,
                          append_journal, describe_maker, input_stat, journal_path, label_maker,
                          made_on, png_whole,
                          label_relpath, link_or_copy, merge_entries, merge_shards, prune_held_out,
                          prune_missing_inputs, read_manifest_entries, sha256_array, shard_paths, video_signature,
                          RUN_RECORD, read_run_record, write_manifest, write_run_record)
from .sources import (Sample, SampleReader, SourceError, gopro_blur_unused, parse_spec,
                      resolve_source, spread)

from .label_stats import (GT_METRICS, psnr_ssim, mean_of, LabelStats, failed_advice)
from .label_staging import (remove_stale_temp_files, stage_image)

__all__ = ["LabelCache", "LabelRun", "merge_entries", "merge_shards", "run_labels",
           "sha256_array", "write_manifest", "main"]


def _line(msg: str) -> None:
    print(msg, flush=True)   # flushed: the ranks of a torchrun share the terminal


def _teacher_options(weights: Optional[str], config: Optional[str], tile: int, overlap: int,
                     batch_size: int, gopro_blur: str) -> list[str]:
    """The `sharpen labels` flags of this run that differ from their defaults: a rerun without
    them labels with another teacher or tiling, and reuses no label."""
    if weights and Path(weights).exists():   # a shipped name ("teacher") stays a name
        weights = str(Path(weights).resolve())
    flags = []
    for flag, value, default in (
            ("--teacher-weights", weights, None), ("--teacher-config", config, None),
            ("--tile", tile, TEACHER_TILE), ("--overlap", overlap, overlap_for(tile)),
            ("--batch-size", batch_size, TEACHER_BATCH), ("--gopro-blur", gopro_blur, "blur")):
        if value is not None and value != default:
            flags += [flag, str(value)]
    return flags


def _reordered_selection(out_dir: Path, data: str, split: Optional[str], limit: Optional[int],
                         pool: list[Sample], samples: list[Sample]) -> Optional[str]:
    """What to say where the cache's last run, with the same --data, --split and --limit, was
    made by a version that listed names by their characters (its run.json records no order)
    and selected other images than this run does, now that numbers read as numbers
    (frame9 before frame10): the rerun labels frames it did not before, and training leaves
    the earlier ones out, which would otherwise go unsaid."""
    prior = read_run_record(out_dir)
    chosen = prior.get("selection")
    if (not isinstance(chosen, list) or "order" in prior or not limit
            or prior.get("data") != _recorded_data(data) or prior.get("split") != split
            or prior.get("limit") != limit):
        return None
    names = {s.name for s in samples}
    before = spread(sorted(pool, key=lambda s: (s.input.as_posix(), s.frame or 0)), limit)
    if set(chosen) == names or set(chosen) != {s.name for s in before}:
        return None
    new = len(names - set(chosen))
    return (f"{out_dir}: its last labels run (--data {data} --limit {limit}) spread its "
            f"{limit} over the names in the order of their characters (frame10 before frame2); "
            "numbers now read as numbers (frame2 before frame10), so this run selects "
            f"{count(new, 'image')} that one did not (labelled where the cache lacks them), "
            f"and training leaves out {count(len(set(chosen) - names), 'label')} of its "
            "selection (kept in the cache)")


def _reheld(args: argparse.Namespace, plan) -> Optional[str]:
    """What to say where --out's last run, with the same --data and --hold-out, was
    made by a version that listed names by their characters (its run.json records no order)
    and trained on images this run holds out, now that numbers read as numbers: the rerun
    moves them to --val-out, and a student trained on the earlier labels is then validated
    on images it has seen, its scores there too high, with nothing else to say why."""
    from .holdout import hold_out
    prior = read_run_record(Path(args.out))
    held, chosen = prior.get("hold_out"), prior.get("selection")
    if (plan.rule == "split" or "order" in prior or not isinstance(held, dict)
            or not isinstance(chosen, list) or held.get("role") != "training"
            or held.get("fraction") != args.hold_out
            or prior.get("data") != _recorded_data(args.data)):
        return None
    seen = sorted(set(chosen) & set(plan.held))
    if not seen:
        return None
    before = hold_out(args.data, args.hold_out, gopro_blur=args.gopro_blur, progress=False,
                      characters=True)
    if set(chosen) & before.not_train:   # not that hold-out's: the images changed
        return None
    shown = ", ".join(seen[:3]) + (f" and {len(seen) - 3} more" if len(seen) > 3 else "")
    return (f"{args.out}: its last labels run (--data {args.data} --hold-out "
            f"{args.hold_out:g}) held out {before.describe()} in the order of the names' "
            "characters (frame10 before frame2); numbers now read as numbers (frame2 before "
            f"frame10), so this run holds out {count(len(seen), 'image')} that one trained on "
            f"({shown}): a student trained on its labels has seen them, and scores higher on "
            f"{args.val_out} than on images it never saw; train it again (resume=never) to "
            "validate on unseen images")


def _recorded_data(data: str) -> str:
    """--data as run.json keeps it: a relative path made absolute, since the commands that
    quote it (distill's advice to re-run `sharpen labels --data ...`) may run from another
    folder than the labelling did ("--data footage" named nothing there)."""
    kind, raw = parse_spec(data)   # gopro:data/GOPRO keeps its kind; `embedded` is a name
    if kind == "embedded" or not raw or not Path(raw).expanduser().exists():
        return data
    path = str(Path(raw).expanduser().resolve())
    return f"{kind}:{path}" if kind else path


def run_labels(data: str, out: str | os.PathLike, teacher_weights: Optional[str] = None,
               config: Optional[str] = None, tile: int = TEACHER_TILE,
               overlap: Optional[int] = None,
               batch_size: int = TEACHER_BATCH, split: Optional[str] = None, gopro_blur: str = "blur",
               device: str = "auto", limit: Optional[int] = None, progress: bool = True,
               teacher=None, dist: Optional[DistInfo] = None,
               exclude: Collection[str] = (),
               hold_out: Optional[dict[str, Any]] = None,
               say: Optional[Callable[[str], None]] = None,
               reuse_from: Optional[str | os.PathLike] = None,
               prune_later: Optional[list[Callable[[], None]]] = None) -> LabelStats:
    """Label every sample of `data` (this rank's share) into `out`. `teacher` may be passed
    already loaded (tests, notebooks); otherwise it is loaded from `teacher_weights`/`config`.
    `exclude`: sample names left out (images held out of a source that has one split, see
    `holdout.py`); their entries from earlier runs are dropped at the end. `hold_out`: what
    the run record (run.json) keeps of the hold-out (`HoldOut.record`).
    `reuse_from`: another cache (the other of a hold-out) whose up-to-date label of a sample,
    by the checks that skip one here, is copied rather than made again by the teacher.
    `prune_later`: where the dropping of the `exclude` entries is put off to (a callable
    appended), so that the other cache's run can still reuse them.
    `split`: of a source with split folders (None: train); said when the source has none.
    `say` takes the run's lines (what it labels, the summary, labels removed); by default they
    are printed with `progress` and not without it. Problems (an image skipped or failed, a
    --split that does not apply) are `runtime.SharpenWarning`s either way."""
    if say is None:
        say = _line if progress else (lambda msg: None)
    try:
        dist = dist or DistInfo.from_env()
    except ValueError as e:
        raise SourceError(str(e)) from None
    if overlap is None:
        overlap = overlap_for(tile)
    problem = tiling_problem(tile, overlap, batch_size)
    if problem:
        raise SourceError(problem)
    info = resolve_source(data, split=split or "train", gopro_blur=gopro_blur,
                          progress=progress)
    if dist.rank == 0:
        said = tiling_cost(tile, overlap)
        if said:
            warn(said)
    if dist.rank == 0:
        from runtime.sources import warn_not_images
        warn_not_images(data, [Path(p).name for p in info.not_images], "labelling",
                        videos=info.kind == "folder")
    if split and info.split is None and dist.rank == 0:
        # Labelling --split train and --split val of a flat folder gave two identical caches.
        warn(f"{data} has no split folders (train/, val/, test/): --split {split} does not "
              "apply; labelling all of it")
    pool = [s for s in info.samples if s.name not in exclude] if exclude else info.samples
    if not pool:
        raise SourceError(f"{info.describe()}: none left once the {len(exclude)} held out "
                          "are left out; give more images")
    # Spread over the source, not its first N: a folder sorted by name would otherwise give
    # N crops of the same few photos.
    samples = spread(pool, limit)
    mine = samples[dist.rank::dist.world]
    out_dir = Path(out)
    tag = f"[rank {dist.rank}/{dist.world}] " if dist.world > 1 else ""

    owned = _maybe_init_process_group(dist)
    # A group the caller set up (--hold-out's two runs share one) serves as well as our own.
    pg = owned or _group_ready(dist)
    try:
        if teacher is None:
            teacher = load_teacher(teacher_weights, config, device, dist)
        from ..provenance import run_environment
        # Once it is loaded: its checkpoint says which crops it was trained on.
        said = tiling_context(tile, getattr(teacher, "train_crop", None))
        if said and dist.rank == 0:
            warn(said)
        # After the teacher loads: wrong weights leave no empty --out behind.
        out_dir.mkdir(parents=True, exist_ok=True)
        share = f" (this rank's share of {len(samples)})" if dist.world > 1 else ""
        spread_over = (f", spread over its {len(pool)} (--limit {limit})"
                       if len(samples) < len(pool) else "")
        say(f"{tag}{info.describe()}; labelling {len(mine)}{share}{spread_over} on "
            f"{teacher.device} (tile {tile}, overlap {overlap})")
        # Only a run that knows when every rank has finished can say the cache is complete.
        records = dist.world == 1 or pg
        # Names this run's record, which another run into this --out may replace meanwhile.
        run_id = uuid.uuid4().hex
        if dist.rank == 0:
            if said := _reordered_selection(out_dir, data, info.split, limit, pool, samples):
                warn(said)
            # The selection by name: training uses these labels only, not those earlier runs
            # with another --limit, hold-out or --data left here. Ranks without a process
            # group record it too (an earlier run's would select instead), not whether it
            # finished.
            # The labels here that this --data and --split do not list (another source's): no
            # run on this --data can select them, which the advice of training must know.
            listed = {s.name for s in info.samples}
            here = merge_entries(read_manifest_entries(out_dir / MANIFEST),
                                 *(read_manifest_entries(p) for p in shard_paths(out_dir).values()))
            write_run_record(out_dir, run_id, **({"complete": False} if records else {}),
                             data=_recorded_data(data),
                             split=info.split,
                             limit=limit, selected=len(samples),
                             # what a rerun needs to reuse these labels (distill quotes it back)
                             teacher_options=_teacher_options(teacher_weights, config, tile,
                                                              overlap, batch_size, gopro_blur),
                             selection=[s.name for s in samples], order="numbers",
                             elsewhere=sorted(n for n in here if n not in listed),
                             **({"hold_out": hold_out} if hold_out else {}),
                             # a label is 1 apart in 16 bits under another thread count
                             environment=run_environment(teacher.device),
                             started=datetime.datetime.now(datetime.timezone.utc)
                             .isoformat(timespec="seconds"))
        run = LabelRun(out_dir, teacher, tile, overlap, batch_size, dist, reuse_from)
        for said in run.replacing(mine):
            warn(f"{tag}{said}")
        try:
            stats = run.process(mine, progress=progress, tag=tag)
        except KeyboardInterrupt:
            # After hours of labelling, how far it got (the command's last line says only
            # that it was interrupted).
            if dist.world > 1 and dist.rank == 0:
                say(_interrupted_whole(run, samples))
            elif not pg:   # ranks started by hand may be stopped alone: each says its share
                said = run.stats
                left = said.total - said.done - said.skipped - said.reused - said.failed
                reused = f", {said.reused} reused from {run.donor}" if said.reused else ""
                say(f"{tag}labels: interrupted: {said.done} done, {said.skipped} skipped (up "
                    f"to date){reused}{f', {said.failed} failed' if said.failed else ''}, of "
                    f"{said.total}; {left} left for the same command to label into {out_dir}")
            raise
        stats.videos_left_out = len(info.unopenable_videos)
        whole = stats
        if pg:
            import torch.distributed as tdist
            tdist.barrier()
            # The summary is rank 0's, of every rank's share: each rank said its own before,
            # two summaries of no cache, and the teacher's warning once per rank.
            shares: list = [None] * dist.world
            tdist.all_gather_object(shares, stats)
            whole = _sum_stats(shares)
        merged = None
        if not pg:
            merged = _merged(out_dir, dist, run)
        elif dist.rank == 0:   # after the barrier every shard is final
            merged = _merged(out_dir, dist, run, all_finished=True)
        if records and dist.rank == 0:
            _mark_complete(out_dir, run_id)
    finally:
        if owned:
            import torch.distributed as tdist
            tdist.destroy_process_group()
    if not pg:
        run.summary(stats, mine, tag, say)
    elif dist.rank == 0:
        run.summary(whole, samples, "", say, entries=merged)
    if merged is not None and exclude:
        def prune() -> None:
            # Rank 0's run owns run.json; another rank's prunes as before.
            _prune_excluded(out_dir, exclude, tag, say, run_id if dist.rank == 0 else None)
        if prune_later is None:
            prune()
        else:
            prune_later.append(prune)
    if merged is not None:
        try:
            gone = prune_missing_inputs(out_dir, names=[s.name for s in pool])
        except OSError as e:   # the labels are made: a warning, not their run's traceback
            warn(f"{tag}could not drop the entries of inputs that are gone or replaced from "
                 f"{out_dir / MANIFEST} ({e.strerror or e}): training refuses {out_dir} while "
                 "it lists them; run the same labels command again once the folder can be "
                 "written (it skips every label made)")
            gone = []
        if gone:
            shown = ", ".join(gone[:3]) + (f" and {len(gone) - 3} more" if len(gone) > 3 else "")
            say(f"{tag}removed {count(len(gone), 'label')} whose input is gone or replaced, or "
                f"labelled under another name ({shown})")
            merged = read_manifest_entries(out_dir / MANIFEST)
    if merged is not None and dist.world > 1:
        # Entries held out and not dropped yet (`prune_later`) are not this cache's labels.
        n_ok = sum(e.get("status") == "ok" and n not in exclude for n, e in merged.items())
        # Rank 0's line of the whole cache, untagged as the summary above it.
        say(f"{tag if not pg else ''}merged manifest: {out_dir / MANIFEST} "
            f"({count(n_ok, 'label')})")
    return stats


def _mark_complete(out_dir: Path, run_id: str) -> None:
    """run.json marked complete; where it cannot be written (a full disk, a folder made
    read-only) a warning: every label is made, and raised, the error replaced the summary."""
    try:
        write_run_record(out_dir, run_id, complete=True)
    except OSError as e:
        warn(f"could not mark {out_dir / RUN_RECORD} complete ({e.strerror or e}): training "
             f"takes {out_dir} for an interrupted run's and says so; run the same labels "
             "command again once the folder can be written (it skips every label made)")


def not_compacted(manifest: Path, e: OSError) -> str:
    """The warning when `manifest` (or a rank's shard) could not be rewritten at a run's end."""
    return (f"could not compact {manifest} ({e.strerror or e}): its journal "
            f"{journal_path(manifest)} keeps every entry, and the next run into "
            f"{manifest.parent} folds it in")


def _merged(out_dir: Path, dist: DistInfo, run: "LabelRun", all_finished: bool = False
            ) -> dict[str, dict]:
    """`merge_shards`' entries; where the manifest cannot be rewritten (a full disk, a folder
    made read-only), the same merged in memory and said (once: the run's flush may have
    said it), the files left as they are, the journals holding every entry."""
    try:
        return merge_shards(out_dir, dist.rank, dist.world, all_finished=all_finished)
    except OSError as e:
        if run.not_compacted is None:
            warn(not_compacted(out_dir / MANIFEST, e))
        return merge_entries(read_manifest_entries(out_dir / MANIFEST),
                             *(read_manifest_entries(p)
                               for _, p in sorted(shard_paths(out_dir).items())))


def _sum_stats(shares: list[LabelStats]) -> LabelStats:
    """Every rank's counts as one run's. The unopenable videos are the source's, listed alike
    by every rank."""
    whole = LabelStats()
    for f in fields(LabelStats):   # a count added later is summed too
        values = [getattr(s, f.name) for s in shares]
        setattr(whole, f.name, max(values) if f.name == "videos_left_out" else sum(values))
    return whole


def _interrupted_whole(run: LabelRun, samples: list[Sample]) -> str:
    """How far a run of several ranks got, from every rank's manifest shard on disk: the
    ranks stop together, and none knows the others' counts. Labels another teacher or tiling
    made are not counted: the same command makes them again."""
    out_dir = run.out_dir
    entries = merge_entries(read_manifest_entries(out_dir / MANIFEST),
                            *(read_manifest_entries(p) for p in shard_paths(out_dir).values()))
    found = [entries.get(s.name) for s in samples]
    ok = sum(run.made_alike(e) for e in found)
    failed = sum((e or {}).get("status") == "failed" for e in found)
    return (f"labels: interrupted: {ok} of {len(samples)} labelled in {out_dir} (all ranks' "
            f"shares){f', {failed} failed' if failed else ''}; {len(samples) - ok - failed} "
            "left for the same command to label")


def _prune_excluded(out_dir: Path, exclude: Collection[str], tag: str,
                    say: Callable[[str], None], run_id: Optional[str]) -> None:
    try:
        dropped = prune_held_out(out_dir, exclude, run_id)
    except OSError as e:
        # Run in a `finally` too: raised, it replaced the runs' summaries (or a Ctrl-C).
        warn(f"{tag}could not drop the labels of the images this run holds out from "
             f"{out_dir / MANIFEST} ({e.strerror or e}): training leaves them out (the "
             "run's selection does), and the same labels command run again once the folder "
             "can be written drops them")
        return
    if dropped is None:
        # Run after --val-out's labelling: a `labels` run into --out meanwhile (without
        # --hold-out) selected these, skipped them as made, and lost them to this prune.
        warn(f"{tag}{out_dir}: another labels run into it started after this one (its "
             "run.json is now that run's): the labels of the images this run holds out are "
             "kept for its selection")
        return
    if dropped:
        shown = ", ".join(dropped[:3]) + (f" and {len(dropped) - 3} more"
                                          if len(dropped) > 3 else "")
        say(f"{tag}removed {count(len(dropped), 'label')} an earlier run made here of images "
            f"this run holds out of {out_dir} ({shown}): the training and "
            "validation caches must not share an image")


def load_teacher(teacher_weights: Optional[str], config: Optional[str], device: str,
                 dist: DistInfo):
    """The teacher for a labels run; under torchrun with device auto, on this rank's GPU."""
    from ..teacher import Teacher
    if device == "auto" and dist.world > 1:
        import torch
        if torch.cuda.is_available():
            device = f"cuda:{dist.local_rank % torch.cuda.device_count()}"
    return Teacher.load(teacher_weights, config, device=device)


def _maybe_init_process_group(dist: DistInfo) -> bool:
    """A gloo group for the final barrier, only under torchrun (rendezvous vars present)."""
    if dist.world <= 1 or not os.environ.get("MASTER_ADDR") or not os.environ.get("MASTER_PORT"):
        return False
    import torch.distributed as tdist
    if not tdist.is_available():
        return False
    if tdist.is_initialized():
        return False  # the caller owns it
    # Ranks finish at different times; the barrier must outwait the slowest shard.
    tdist.init_process_group("gloo", rank=dist.rank, world_size=dist.world,
                             timeout=datetime.timedelta(days=7))
    return True


def _group_ready(dist: DistInfo) -> bool:
    if dist.world <= 1:
        return False
    import torch.distributed as tdist
    return tdist.is_available() and tdist.is_initialized()


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


def _check_out(out: Path, data: str, flag: str = "--out") -> None:
    """SharpenError for an --out (or --val-out) that is (under) a file, or inside the data it
    labels: a paired folder or footage read again would take the label images in as data."""
    from runtime.sinks import file_in_the_way, refuse_output_inside
    if problem := file_in_the_way(out, f"{flag} {out}") or _data_set_in_the_way(out, flag):
        raise SharpenError(problem)
    try:
        _, path = parse_spec(data)
    except SourceError:
        return   # said by the source itself, with the kinds it knows
    if path:
        try:
            refuse_output_inside(out, path, "--data", what="the labels", out_flag=flag)
        except ValueError as e:
            raise SharpenError(str(e)) from None


def _data_set_in_the_way(out: Path, flag: str) -> str:
    """The message when --out names a data set rather than a cache (a corpus's folder, a
    paired folder, a folder of photos: a slip of the path): the manifest written into it made
    it a label cache, which `--data` then refused; '' for a new, empty or cache folder."""
    from .label_cache import RUN_RECORD
    from .sources import data_set_in
    if (out / MANIFEST).exists() or (out / RUN_RECORD).exists() or not (what := data_set_in(out)):
        return ""
    return (f"{flag} {out} holds {what}, not a label cache: labelling into it would make it "
            "one, which --data then refuses as a data source; choose a new folder")


def _check_hold_out(args: argparse.Namespace) -> None:
    """SharpenError for --hold-out / --val-out options that cannot make two caches."""
    from .holdout import check_fraction
    fraction, val_out = getattr(args, "hold_out", None), getattr(args, "val_out", None)
    if fraction is None and val_out is None:
        return
    if fraction is None:
        raise SharpenError("--val-out is written only with --hold-out FRACTION (the share of "
                           "--data held out of --out for it)")
    if problem := check_fraction(fraction):
        raise SharpenError(problem)
    if val_out is None:
        raise SharpenError("--hold-out needs --val-out DIR: the validation cache it labels the "
                           "held-out images into (--out gets the rest)")
    out, val = Path(args.out).resolve(), Path(val_out).resolve()
    if out == val:
        raise SharpenError(f"--val-out {val_out} is --out: the training and validation caches "
                           "must be two folders")
    if out in val.parents or val in out.parents:
        inner, outer = (("--val-out", "--out") if out in val.parents else ("--out", "--val-out"))
        raise SharpenError(f"{inner} must not be inside {outer} ({args.out}, {val_out}): give "
                           "the training and validation caches folders of their own")
    if args.split not in (None, "train"):
        raise SharpenError(f"--split {args.split} with --hold-out: --out is labelled from the "
                           "train split and --val-out from the source's val split, where it "
                           "has one, or from images held out of train; drop --split")


def run_from_args(args: argparse.Namespace) -> int:
    from ..teacher import check_device, check_threads
    check_device(args.device)
    check_threads(args.threads)
    if args.limit is not None and args.limit < 1:
        raise SharpenError(f"--limit must be >= 1, got {args.limit}")
    _check_hold_out(args)
    _check_out(Path(args.out), args.data)
    if getattr(args, "val_out", None):
        _check_out(Path(args.val_out), args.data, "--val-out")
    unused = gopro_blur_unused([args.data], args.gopro_blur, "--gopro-blur")
    if unused and DistInfo.from_env().rank == 0:
        warn(unused)
    from ..teacher import set_torch_threads
    # On stderr, as every command says it: stdout has the labels' own lines.
    set_torch_threads(args.threads, lambda note: print(note, file=sys.stderr, flush=True))
    common = dict(tile=args.tile, overlap=args.overlap, batch_size=args.batch_size,
                  gopro_blur=args.gopro_blur, device=args.device, limit=args.limit,
                  progress=not args.quiet, say=_line)   # --quiet: no bar, the lines stay
    try:
        if getattr(args, "hold_out", None) is not None:
            stats = _run_with_hold_out(args, common)
        else:
            stats = run_labels(args.data, args.out, teacher_weights=args.teacher_weights,
                               config=args.config, split=args.split, **common)
    except SourceError as e:
        raise SharpenError(str(e)) from None
    except OSError as e:
        # A full disk or a folder made read-only as a label, a frame or run.json is written:
        # the run cannot go on, and its traceback said nothing of the labels it made.
        where = e.filename2 or e.filename
        raise SharpenError(f"{f'{where}: {e.strerror}' if where and e.strerror else e} (the "
                           f"labels made before it stay in {args.out}: the same command run "
                           "again skips them)") from None
    except Exception as e:
        from ..checkpoint import CheckpointError
        if isinstance(e, CheckpointError):
            raise SharpenError(str(e)) from None
        raise
    if stats.done + stats.skipped + stats.reused and DistInfo.from_env().rank == 0:
        print(_next_step(args), flush=True)
    # A footage folder's clip that cannot be opened is a bad file too: the rest is labelled,
    # and the exit code says not all of it was (it was 0, with a warning a script never read).
    return 1 if stats.failed or stats.videos_left_out else 0


def _next_step(args: argparse.Namespace) -> str:
    """The distill commands that train on the caches just written: the keys that take them
    were said only in --help, and the folders nowhere after the run. Two lines: training from
    scratch, and the README's fine-tune of the shipped `fast`, what a user with a little
    footage of their own wants (the first alone is the config's 8000 steps at lr 2e-3: hours
    on a CPU, and below the shipped weights on a few labels)."""
    config = Path(__file__).resolve().parents[2] / "configs" / "distill-fast.yaml"
    words = ["sharpen", "distill"]
    if config.is_file():   # a checkout: named as the README names it, from its root
        here = Path.cwd().resolve()
        words += ["--config", str(config.relative_to(here) if here in config.parents
                                  else config)]
    caches = [f"data.labels={args.out}"]
    val = getattr(args, "val_out", None)
    if val:
        caches.append(f"data.val_labels={val}")
    them = "them" if val else "it"
    fine_tune = [*words, "init=fast", "val_start=true", "optim.lr=5e-5",
                 "optim.warmup_steps=10", "optim.steps=300", *caches]
    return (f"train on {them}: {shell_join(words + caches)}\n"
            f"or fine-tune the shipped fast on {them}: {shell_join(fine_tune)}")


def _run_with_hold_out(args: argparse.Namespace, common: dict) -> LabelStats:
    """Both caches of `--hold-out`: --out without the held-out images, --val-out with them only
    (or the source's own val/test split), the teacher loaded once. Its stats: both runs'.
    Each cache takes the other's up-to-date labels of samples that moved to it (a hold-out
    added to, or changed on, a cache labelled before) rather than running the teacher again:
    so the training cache drops its held-out labels only once the validation run has ended."""
    from .holdout import hold_out
    try:
        dist = DistInfo.from_env()
    except ValueError as e:
        raise SourceError(str(e)) from None
    plan = hold_out(args.data, args.hold_out, gopro_blur=args.gopro_blur,
                    progress=not args.quiet)
    if dist.rank == 0:
        extra = (f" (--hold-out {args.hold_out:g} does not apply)" if plan.rule == "split"
                 else "")
        if plan.reason:   # a source with splits: said before which images, not after
            print(f"hold-out: {plan.reason}", flush=True)
        print(f"hold-out: {args.val_out} validates on {plan.describe()}{extra}; {args.out} "
              "trains on the rest", flush=True)
        if short := plan.shortfall():   # run.json has the counts, but nobody reads it
            print(f"warning: --hold-out {args.hold_out:g}: {short}", file=sys.stderr,
                  flush=True)
        if said := _reheld(args, plan):
            print(f"warning: {said}", file=sys.stderr, flush=True)
    teacher = load_teacher(args.teacher_weights, args.config, args.device, dist)
    # One gloo group for both runs: one set up again under torchrun's store reuses the first
    # one's keys, and rank 1 connected to rank 0's closed group (it failed, rank 0 hung).
    owned = _maybe_init_process_group(dist)
    try:
        return _both_caches(args, common, plan, teacher, dist)
    finally:
        if owned:
            import torch.distributed as tdist
            tdist.destroy_process_group()


def _hold_out_record(plan, role: str, here: str, other: str) -> dict:
    """The hold-out as the run record of the cache `here` keeps it, naming `other` both
    absolute and relative to `here`: copied together elsewhere, the caches still find each
    other (label_cache.other_cache)."""
    rec = plan.record(role, str(Path(other).resolve()))
    try:
        rec["other_cache_from_here"] = os.path.relpath(Path(other).resolve(),
                                                       Path(here).resolve())
    except ValueError:   # on two Windows drives: no relative path, the absolute one serves
        pass
    return rec


def _both_caches(args: argparse.Namespace, common: dict, plan, teacher,
                 dist: DistInfo) -> LabelStats:
    later: list[Callable[[], None]] = []
    # The teacher is loaded once for both, but each run.json records the flags that chose it:
    # without them, the commands quoted back (distill's advice) named the shipped teacher.
    common = dict(common, teacher_weights=args.teacher_weights, config=args.config)
    train = run_labels(args.data, args.out, split=args.split, teacher=teacher, dist=dist,
                       exclude=plan.not_train, reuse_from=args.val_out, prune_later=later,
                       hold_out=_hold_out_record(plan, "training", args.out, args.val_out),
                       **common)
    if _group_ready(dist):
        # Rank 0 merges the training cache's shards and deletes them after its run; the other
        # ranks' validation runs read that cache for labels to reuse: mid-merge, a shard
        # vanished as it was read and its labels were made again.
        import torch.distributed as tdist
        tdist.barrier()
    try:
        val = run_labels(args.data, args.val_out,
                         split=None if plan.split == "train" else plan.split,
                         teacher=teacher, dist=dist, exclude=plan.not_val, reuse_from=args.out,
                         hold_out=_hold_out_record(plan, "validation", args.val_out, args.out),
                         **common)
    finally:
        # Even when the validation run fails or is interrupted, the training cache must not
        # keep the held-out images: those not reused yet are left for the teacher next time.
        for prune in later:
            prune()
    return LabelStats(done=train.done + val.done, skipped=train.skipped + val.skipped,
                      failed=train.failed + val.failed, seconds=train.seconds + val.seconds,
                      total=train.total + val.total,
                      undecodable=train.undecodable + val.undecodable,
                      unopenable=train.unopenable + val.unopenable,
                      too_large=train.too_large + val.too_large,
                      reused=train.reused + val.reused,
                      repointed=train.repointed + val.repointed,
                      videos_left_out=max(train.videos_left_out, val.videos_left_out))   # one listing


def main(argv: Optional[list[str]] = None) -> int:
    from .commands import add_labels_arguments
    p = argparse.ArgumentParser(prog="python -m distill.data.labels",
                                description="Cache teacher pseudo-labels (same as "
                                            "`sharpen labels`).")
    add_labels_arguments(p)
    try:
        with shown_once_as_lines():   # as `sharpen labels` shows its warnings
            return run_from_args(p.parse_args(argv))
    except SharpenError as e:
        print(f"sharpen labels: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:   # as `sharpen labels`: finished labels are kept
        print(interrupted_message("labels", e, resumable=True), file=sys.stderr)
        return interrupt_exit_code(e)


if __name__ == "__main__":
    sys.exit(main())
