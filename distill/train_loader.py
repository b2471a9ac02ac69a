"""The training data loader's plumbing: which samples each step reads, how many loader processes
this machine's cores allow, and loader workers that leave stop signals to the training process.

Batches are a pure function of (seed, step, rank) and the samples taken before a resume:
`StepSampler` hands out dataset indices by global step, which is what makes resume and
multi-rank training reproducible (a shuffled DistributedSampler would need its epoch/offset
state restored as well).
"""
from __future__ import annotations

import os
import signal
from typing import Iterator

from torch.utils.data import Sampler

from runtime.cli_errors import STOP_SIGNALS
from runtime.console import count


class StepSampler(Sampler[int]):
    """Indices for steps start_step.. : batch b of rank r at step s gets
    start_sample + ((s - start_step) * world + r) * b + j, mod len(dataset). Stateless, so a
    resume needs only the step and the samples taken before it (start_sample; by default those
    of an unbroken run at this batch of a step, start_step * world * b). A resume under
    another number of processes or batch size goes on at the first sample not yet trained on,
    as Megatron's consumed_samples does: counted from the step alone, the crop stream jumped
    back (training on the same crops again) or ahead."""

    def __init__(self, n: int, batch_size: int, start_step: int, total_steps: int,
                 rank: int = 0, world: int = 1, start_sample: int | None = None):
        self.n, self.b, self.start, self.total = n, batch_size, start_step, total_steps
        self.rank, self.world = rank, world
        self.start_sample = start_step * world * batch_size if start_sample is None \
            else start_sample

    def __iter__(self) -> Iterator[int]:
        for s in range(self.start, self.total):
            base = self.start_sample + ((s - self.start) * self.world + self.rank) * self.b
            for j in range(self.b):
                yield (base + j) % self.n

    def __len__(self) -> int:
        return max(0, self.total - self.start) * self.b


def leave_stop_signals_to_main(worker_id: int) -> None:
    # Ctrl-C, `timeout`, Slurm and systemd signal the whole process group. A loader worker that
    # died of it would make the main process raise mid-step instead of finishing the step and
    # saving; the workers exit with the main process anyway.
    for s in (signal.SIGINT, *STOP_SIGNALS):   # a hang-up's SIGHUP reaches the group too
        signal.signal(s, signal.SIG_IGN)


def shut_down_workers(batches) -> None:
    # The workers ignore SIGTERM, and after an error multiprocessing's exit handler stops them
    # with SIGTERM and then waits for them: forever. The loader's own shutdown asks them to
    # finish, which they do.
    shutdown = getattr(batches, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


def _local_world() -> int:
    """The training processes on this machine (torchrun's LOCAL_WORLD_SIZE; 1 without it)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    except ValueError:
        return 1


def loader_workers(workers: int) -> int:
    """The data loader processes for data.workers: at most this process's share of the CPU
    cores it may use (a config written for a large machine, e.g. workers: 4, on a 2-core one;
    under torchrun each of the machine's processes starts its own loaders on the same cores).
    0 where the processes outnumber the cores: each loads its batches itself."""
    from runtime.host import usable_cores
    return min(workers, usable_cores() // _local_world())


def cores_share() -> str:
    """The cores loader_workers allows, as its note says it."""
    from runtime.host import usable_cores
    cores, procs = usable_cores(), _local_world()
    if procs == 1:
        return f"the {count(cores, 'CPU core')} this process may use"
    return (f"this process's share of the {count(cores, 'CPU core')} that the "
            f"{procs} training processes on this machine may use "
            f"({count(cores // procs, 'core')} each)")
