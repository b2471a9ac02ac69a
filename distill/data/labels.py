"""Teacher pseudo-labels, cached on disk.

`sharpen labels --data SPEC --out DIR` runs the teacher's Gaussian-blended tiled inference over
every blurred input at its full resolution and writes

    DIR/labels/<name>.png     one 16-bit lossless PNG per input ('/' in a name makes subfolders)
    DIR/frames/<name>.png     the decoded input frame, for video sources only (training reads it)
    DIR/manifest.json         one entry per input (see `label_run.LabelRun._entry`)

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

This module is `run_labels`, one run into one cache; the rest is by job: `label_run.py` the
labelling loop (`LabelRun`), `label_maker.py` how it makes labels, `label_manifest.py` its
journaled manifest, `label_progress.py` its bar in tiles, `label_replacing.py` what it says of
other teachers' labels, `label_staging.py` its temp files, `label_claims.py` the images
another run into the same cache is labelling, `label_stats.py` the counts
and scores it reports, `label_dist.py` the helpers of several ranks, `labels_hold_out.py`
--hold-out's two caches, `labels_command.py` the command line, `label_cache.py` the cache on
disk and its reader.
"""
from __future__ import annotations

import datetime
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Collection, Optional

from runtime.console import count
from runtime.warn import warn

from ..dist import DistInfo
from ..teacher_tiles import (BATCH as TEACHER_BATCH, TILE as TEACHER_TILE, overlap_for,
                             tiling_context, tiling_cost, tiling_problem)
from .label_cache import (MANIFEST, RUN_RECORD, prune_held_out, prune_missing_inputs,
                          read_cache_entries, read_manifest_entries, read_run_record,
                          write_run_record)
from .label_dist import (group_ready, interrupted_whole, load_teacher, maybe_init_process_group,
                         merged_shards, sum_stats)
from .label_run import LabelRun
from .label_stats import LabelStats, rescorable, rescoring, skipped_detail
from .sources import Sample, SourceError, _few, parse_spec, resolve_source, spread

__all__ = ["run_labels"]


def print_line(msg: str) -> None:
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
            or prior.get("data") != recorded_data(data) or prior.get("split") != split
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


def recorded_data(data: str) -> str:
    """--data as run.json keeps it: a relative path made absolute, since the commands that
    quote it (distill's advice to re-run `sharpen labels --data ...`) may run from another
    folder than the labelling did ("--data footage" named nothing there)."""
    kind, raw = parse_spec(data)   # gopro:data/GOPRO keeps its kind; `embedded` is a name
    if kind == "embedded" or not raw or not Path(raw).expanduser().exists():
        return data
    path = str(Path(raw).expanduser().resolve())
    return f"{kind}:{path}" if kind else path


def _clips_left_unseen(pool: list, samples: list) -> str:
    """Which clips of `pool` a --limit took no frame of (it spreads over frames, so a short
    clip beside long ones may give none), or ''."""
    clips = list(dict.fromkeys(s.input for s in pool if s.frame is not None))
    taken = {s.input for s in samples if s.frame is not None}
    unseen = [str(c) for c in clips if c not in taken]
    if not unseen:
        return ""
    gives = "gives" if len(unseen) == 1 else "give"
    return (f"{len(unseen)} of its {count(len(clips), 'video')} {gives} no frame at --limit "
            f"{len(samples)} ({_few(unseen)}): a clip's share of the limit follows its length")


def _whose(teacher, weights: Optional[str]) -> str:
    """The line's " with the teacher PATH" (as given) or " with the shipped teacher": a
    forgotten or mistyped --teacher-weights labelled with another than the user's own teacher
    unsaid."""
    from ..teacher import BUNDLED_TEACHER, models_dir
    path = getattr(teacher, "weights_path", None)
    if not path:
        return ""   # a teacher passed in already loaded (tests, notebooks)
    if Path(path).resolve() == (models_dir() / BUNDLED_TEACHER).resolve():
        return " with the shipped teacher"
    return f" with the teacher {weights or path}"


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
        say = print_line if progress else (lambda msg: None)
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
    elif split and info.split not in (None, split) and dist.rank == 0:
        # REDS/val given alone: --split train and --split val gave two identical caches.
        warn(f"{data} holds the {info.split} split alone: --split {split} does not apply; "
             f"labelling its {info.split} images")
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

    owned = maybe_init_process_group(dist)
    # A group the caller set up (--hold-out's two runs share one) serves as well as our own.
    pg = owned or group_ready(dist)
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
            f"{teacher.device} (tile {tile}, overlap {overlap}){_whose(teacher, teacher_weights)}"
            + (f", inputs from {gopro_blur}/" if info.kind == "gopro" else ""))
        if spread_over and dist.rank == 0 and (unseen := _clips_left_unseen(pool, samples)):
            say(unseen)
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
            # run on this --data can select them, which the advice of training must know. A
            # clip it holds but left out (over the pixel budget) is its own: a rerun selects it.
            listed = {s.name for s in info.samples}
            left_out = {str(Path(c).resolve()) for c in info.clips_left_out}
            here = read_cache_entries(out_dir)
            write_run_record(out_dir, run_id, **({"complete": False} if records else {}),
                             data=recorded_data(data),
                             split=info.split,
                             limit=limit, selected=len(samples),
                             # what a rerun needs to reuse these labels (distill quotes it back)
                             teacher_options=_teacher_options(teacher_weights, config, tile,
                                                              overlap, batch_size, gopro_blur),
                             selection=[s.name for s in samples], order="numbers",
                             elsewhere=sorted(n for n, e in here.items() if n not in listed
                                              and e.get("input") not in left_out),
                             # Training's advice for them: not a selection, a readable clip.
                             left_out=sorted(n for n, e in here.items()
                                             if e.get("input") in left_out),
                             **({"hold_out": hold_out} if hold_out else {}),
                             # a label is 1 apart in 16 bits under another thread count
                             environment=run_environment(teacher.device),
                             started=datetime.datetime.now(datetime.timezone.utc)
                             .isoformat(timespec="seconds"))
        run = LabelRun(out_dir, teacher, tile, overlap, batch_size, dist, reuse_from)
        for said in run.replacing(mine):
            warn(f"{tag}{said}")
        if note := rescoring(run.known, mine):
            say(f"{tag}{note}")
        try:
            stats = run.process(mine, progress=progress, tag=tag)
        except KeyboardInterrupt:
            # After hours of labelling, how far it got (the command's last line says only
            # that it was interrupted).
            if dist.world > 1 and dist.rank == 0:
                say(interrupted_whole(run, samples))
            elif not pg:   # ranks started by hand may be stopped alone: each says its share
                said = run.stats
                left = said.total - said.done - said.skipped - said.reused - said.failed
                reused = f", {said.reused} reused from {run.donor}" if said.reused else ""
                # Not all for the teacher: labels of an older version's SSIM are scored only.
                n = rescorable(run.known, mine)
                only = f" ({n} of them labelled already, only to score again)" if n else ""
                say(f"{tag}labels: interrupted: {said.done} done, {said.skipped} skipped (up "
                    f"to date{skipped_detail(said)}){reused}"
                    f"{f', {said.failed} failed' if said.failed else ''}, of {said.total}; "
                    f"{left} left for the same command to label into {out_dir}{only}")
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
            whole = sum_stats(shares)
        merged = None
        if not pg:
            merged = merged_shards(out_dir, dist, run)
        elif dist.rank == 0:   # after the barrier every shard is final
            merged = merged_shards(out_dir, dist, run, all_finished=True)
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


# `torchrun ... -m distill.data.labels` is how `sharpen labels --help` labels on several GPUs.
if __name__ == "__main__":
    from .labels_command import main
    sys.exit(main())
