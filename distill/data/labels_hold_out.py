"""`sharpen labels --hold-out FRACTION --val-out DIR`: its options checked, and both caches
labelled (--out without the held-out images, --val-out with them only), the teacher loaded
once, each cache reusing the other's labels of samples that moved to it."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Optional

from runtime.cli_errors import SharpenError
from runtime.console import count

from ..dist import DistInfo
from .label_cache import read_run_record
from .label_dist import group_ready, load_teacher, maybe_init_process_group
from .label_stats import LabelStats
from .labels import recorded_data, run_labels
from .sources import SourceError


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
            or prior.get("data") != recorded_data(args.data)):
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


def check_hold_out(args: argparse.Namespace) -> None:
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


def run_with_hold_out(args: argparse.Namespace, common: dict) -> LabelStats:
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
    owned = maybe_init_process_group(dist)
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
    if group_ready(dist):
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
                      # one listing: both runs leave out the same videos of the source
                      videos_left_out=max(train.videos_left_out, val.videos_left_out))
