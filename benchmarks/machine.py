"""The machine a benchmark ran on: CPU, cores, memory, GPUs, OS and library versions."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence


# Shared with export's up-to-date check (runtime.host), re-exported for the bench's modules.
from runtime.host import (LIBRARIES, cgroup_cpu_limit, code_info, cpu_model,  # noqa: E402,F401
                          dist_version, library_versions, parse_threads, scheduled_cpus,
                          usable_cores)


def peak_rss_mb(system: str | None = None) -> float | None:
    """Peak resident memory of this process so far, in MiB, on `system` (sys.platform's
    spelling, default this one): runtime.host's, the `done:` line's, Windows' peak working set
    included (it has no `resource` module: `sharpen bench` stopped there with
    ModuleNotFoundError after its first stage). None where the system cannot say."""
    from runtime import host
    return host.peak_memory_mib(system)


def load_average() -> Optional[float]:
    """The machine's 1-minute load average (runnable threads, every process's); None where
    the system keeps none (Windows): runtime.host's, which `sharpen run`'s drop note reads."""
    from runtime import host
    return host.load_average()


# Other processes' CPU beyond this, on average over the timings, slows them: half a core.
OTHERS_SLACK = 0.5
PROC_STAT = Path("/proc/stat")


@dataclass(frozen=True)
class CpuSample:
    """One end of the timing window: the clock, the load average, the CPU seconds any process
    has run on `cpus`, the cores this process may run on (None where /proc/stat is not there
    to read: macOS, Windows), and those of this process and the children it has waited for."""
    wall: float
    load: Optional[float]
    cpus: tuple[int, ...]
    machine_s: Optional[float]
    own_s: float


def machine_cpu_seconds(cpus: Sequence[int], stat: Path = PROC_STAT) -> Optional[float]:
    """CPU seconds the cores `cpus` have run anything (their `cpuN` lines of /proc/stat less
    idle and iowait; steal, another VM's turn on these cores, counts as taken); None where
    unreadable."""
    wanted = {f"cpu{n}" for n in cpus}
    total, seen = 0, 0
    try:
        with open(stat) as f:
            for line in f:
                fields = line.split()
                if not fields or fields[0] not in wanted:
                    continue
                # user nice system idle iowait irq softirq steal (guest is inside user, nice)
                ticks = [int(v) for v in fields[1:9]]
                total += sum(ticks) - ticks[3] - ticks[4]
                seen += 1
    except (OSError, ValueError, IndexError):
        return None
    return total / os.sysconf("SC_CLK_TCK") if seen else None


def own_cpu_seconds() -> float:
    """CPU seconds of this process's threads and of the children it has waited for (the
    bench's memory and --streams runs are waited for inside the timings)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def cpu_sample(cpus: Optional[Sequence[int]] = None) -> CpuSample:
    """Now, on `cpus` (default: the cores this process is scheduled on)."""
    cpus = tuple(cpus if cpus is not None else scheduled_cpus())
    return CpuSample(time.monotonic(), load_average(), cpus, machine_cpu_seconds(cpus),
                     own_cpu_seconds())


def machine_load(before: CpuSample, threads: Optional[int] = None) -> Optional[dict]:
    """What other processes took of the cores this process may run on (taskset, a container's
    cpuset: others on the rest take nothing from it) during the timings since `before`:
    `others_cores`, those cores' CPU seconds less this process's and its children's, per
    second of the window (`window_s`), of `cores`; `run_cores`, the cores the timings ran on
    (the backends' `threads`, None for the engines' default: the usable cores). Also the
    load average before and after (`before`, `after`), which decides where no CPU time can be
    read, against the machine's cores then (the load is the whole machine's). None where
    neither is known."""
    after = cpu_sample(before.cpus)
    wall = after.wall - before.wall
    if before.machine_s is not None and after.machine_s is not None and wall > 0:
        cores = len(before.cpus)
        taken = (after.machine_s - before.machine_s) - (after.own_s - before.own_s)
        others = round(min(max(taken / wall, 0.0), cores), 2)
    elif before.load is None or after.load is None:
        return None
    else:
        cores, others = os.cpu_count() or 1, None
    return {"before": before.load, "after": after.load, "cores": cores, "threads": threads,
            "others_cores": others, "run_cores": min(cores, threads or usable_cores()),
            "window_s": round(wall, 1)}


def busy_text(load: Optional[dict]) -> Optional[str]:
    """What to say of timings taken while other processes had the CPU; None otherwise.
    Where their CPU time was measured (`others_cores`): more than half a core beyond the
    cores the run left free. Else (macOS, Windows, reports of earlier versions) the load
    average before or after: more runnable threads than the cores, or than the bench's own
    threads where --threads (or OMP_NUM_THREADS) gave more, by over half a core."""
    if not load:
        return None
    cores = load["cores"]
    rerun = "CPU time these timings did not get; rerun on a quiet machine before deciding"
    if (others := load.get("others_cores")) is not None:
        run = load.get("run_cores") or cores
        if others <= cores - run + OTHERS_SLACK:
            return None
        mine = f" (this run's on {run})" if run < cores else ""
        return (f"timed on a busy machine: other processes took {others:.1f} of {cores} cores "
                f"during these timings{mine}, {rerun}")
    if load.get("before") is None or load.get("after") is None:
        return None
    worst = max(load["before"], load["after"])
    own = load.get("threads") or 0
    if worst <= max(cores, own) + OTHERS_SLACK:
        return None
    mine = f" ({own} threads of this run's own)" if own > cores else ""
    return (f"timed on a busy machine: load average {worst:g} (1 min) on {cores} "
            f"cores{mine}, other processes took CPU time from these timings; rerun on a quiet "
            "machine before deciding")


def sgemm_peak_gmacs(n: int = 1024, rounds: int = 8) -> float:
    """Measured FP32 matrix-multiply rate of this CPU (numpy's BLAS, all cores), in GMAC/s: the
    best of `rounds` n x n products. A student's rate over this says how much of the machine it
    uses; INT8 kernels (VNNI) can exceed it."""
    import time

    import numpy as np

    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), np.float32), rng.random((n, n), np.float32)
    a @ b
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return n ** 3 / best / 1e9


def blas_threads() -> int:
    """Threads numpy's BLAS (OpenBLAS) runs the peak measurement on: it reads
    OPENBLAS_NUM_THREADS, else OMP_NUM_THREADS, else takes every core. Both are read as the
    runtimes read OMP_NUM_THREADS (runtime.host.parse_threads): "4,2" is 4, as OpenBLAS's
    atoi takes it too, not every core."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if n := parse_threads(os.environ.get(var, "")):
            return n
    # The cores it may be scheduled on, as OpenBLAS counts them: it reads no cgroup CPU limit
    # (docker run --cpus), which usable_cores counts, and report.md took the smaller count
    # for an OMP_NUM_THREADS nobody set.
    return _affinity_cores() or usable_cores()


def _affinity_cores() -> Optional[int]:
    """The cores this process may be scheduled on (taskset, a cpuset), None where unknown."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


# Environment variables that change what is measured (threads of torch, numpy's BLAS and the
# runtimes' OpenMP builds; which GPU): the reproduce commands set them as this run had them.
MEASURE_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "CUDA_VISIBLE_DEVICES")


def measure_env() -> dict:
    """Those of MEASURE_ENV that are set, with their values."""
    return {k: os.environ[k] for k in MEASURE_ENV if k in os.environ}


def machine_info() -> dict:
    cpu = cpu_model()
    # What decides int8/fp32 speed on x86: AVX-512 and VNNI (int8 dot products) or not.
    flags: list[str] = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                flags = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni",
                                     "amx_int8") if f in have]
                break
    except OSError:
        pass
    affinity = _affinity_cores()
    gpus = []
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                  "--format=csv,noheader"], capture_output=True, text=True,
                                 timeout=20)
            gpus = [ln.strip() for ln in out.stdout.splitlines() if ln.strip()]
        except (OSError, subprocess.SubprocessError):
            pass
    libs = {"python": platform.python_version(), **library_versions()}
    threads = None
    try:
        import torch

        threads = torch.get_num_threads()
    except ImportError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except (OSError, ValueError):
        pass
    return {"cpu": cpu, "cpu_flags": flags, "logical_cores": os.cpu_count(), "usable_cores": affinity,
            # A container's CPU time (docker run --cpus): timings under it are not the cores'.
            "cpu_limit": cgroup_cpu_limit(),
            "torch_threads": threads, "memory": mem, "gpus": gpus,
            "os": f"{platform.system()} {platform.release()}", "machine": platform.machine(),
            "libraries": {k: v for k, v in libs.items() if v is not None},
            "missing_libraries": sorted(k for k, v in libs.items() if v is None),
            "code": code_info(), "env": measure_env()}
