"""The parts of a labels run that span its ranks (torchrun, or RANK/WORLD_SIZE set by hand):
the teacher on this rank's GPU, the gloo group for the final barrier, the shards merged into
the manifest, every rank's counts summed, and how far an interrupted run of several ranks
got."""
from __future__ import annotations

import datetime
import os
from dataclasses import fields
from pathlib import Path
from typing import Optional

from runtime.warn import warn

from ..dist import DistInfo
from .label_cache import MANIFEST, merge_shards, read_cache_entries
from .label_manifest import not_compacted
from .label_run import LabelRun
from .label_stats import LabelStats, rescorable
from .sources import Sample


def merged_shards(out_dir: Path, dist: DistInfo, run: LabelRun, all_finished: bool = False
                  ) -> dict[str, dict]:
    """`merge_shards`' entries; where the manifest cannot be rewritten (a full disk, a folder
    made read-only), the same merged in memory and said (once: the run's flush may have
    said it), the files left as they are, the journals holding every entry."""
    try:
        return merge_shards(out_dir, dist.rank, dist.world, all_finished=all_finished)
    except OSError as e:
        if run.not_compacted is None:
            warn(not_compacted(out_dir / MANIFEST, e))
        return read_cache_entries(out_dir)


def sum_stats(shares: list[LabelStats]) -> LabelStats:
    """Every rank's counts as one run's. The unopenable videos are the source's, listed alike
    by every rank."""
    whole = LabelStats()
    for f in fields(LabelStats):   # a count added later is summed too
        values = [getattr(s, f.name) for s in shares]
        setattr(whole, f.name, max(values) if f.name == "videos_left_out" else sum(values))
    return whole


def interrupted_whole(run: LabelRun, samples: list[Sample]) -> str:
    """How far a run of several ranks got, from every rank's manifest shard on disk: the
    ranks stop together, and none knows the others' counts. Labels another teacher or tiling
    made are not counted: the same command makes them again."""
    out_dir = run.out_dir
    entries = read_cache_entries(out_dir)
    found = [entries.get(s.name) for s in samples]
    ok = sum(run.made_alike(e) for e in found)
    failed = sum((e or {}).get("status") == "failed" for e in found)
    # Labelled, but scored by an older version's SSIM: the same command scores them only.
    old = rescorable({s.name: e for s, e in zip(samples, found) if run.made_alike(e)}, samples)
    again = f"; {old} of them left to score again with this version's SSIM" if old else ""
    return (f"labels: interrupted: {ok} of {len(samples)} labelled in {out_dir} (all ranks' "
            f"shares{again}){f', {failed} failed' if failed else ''}; "
            f"{len(samples) - ok - failed} left for the same command to label")


def load_teacher(teacher_weights: Optional[str], config: Optional[str], device: str,
                 dist: DistInfo):
    """The teacher for a labels run; under torchrun with device auto, on this rank's GPU."""
    from ..teacher import Teacher
    if device == "auto" and dist.world > 1:
        import torch
        if torch.cuda.is_available():
            device = f"cuda:{dist.local_rank % torch.cuda.device_count()}"
    return Teacher.load(teacher_weights, config, device=device)


def maybe_init_process_group(dist: DistInfo) -> bool:
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


def group_ready(dist: DistInfo) -> bool:
    if dist.world <= 1:
        return False
    import torch.distributed as tdist
    return tdist.is_available() and tdist.is_initialized()
