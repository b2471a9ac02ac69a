"""The machine a benchmark ran on: CPU, cores, memory, GPUs, OS and library versions."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Optional


# Shared with export's up-to-date check (runtime.host), re-exported for the bench's modules.
from runtime.host import (LIBRARIES, cgroup_cpu_limit, code_info, cpu_model,  # noqa: E402,F401
                          dist_version, library_versions, parse_threads, usable_cores)


def peak_rss_mb(system: str | None = None) -> float | None:
    """Peak resident memory of this process so far, in MiB, on `system` (sys.platform's
    spelling, default this one): Linux reports KiB, macOS bytes, Windows its peak working set
    (it has no `resource` module: `sharpen bench` stopped there with ModuleNotFoundError
    after its first stage). None where the system cannot say."""
    import sys

    system = system or sys.platform
    if system == "win32":
        return _windows_peak_mb()
    try:
        import resource
    except ImportError:
        return None
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / (1024 * 1024 if system == "darwin" else 1024), 1)


def _windows_peak_mb() -> float | None:
    """The peak working set Windows keeps for this process, in MiB; None where its API is not
    there to ask (another system) or refuses."""
    try:
        import ctypes
        from ctypes import wintypes
        kernel32 = ctypes.WinDLL("kernel32")
    except (ImportError, AttributeError, OSError):
        return None

    class Counters(ctypes.Structure):   # PROCESS_MEMORY_COUNTERS
        _fields_ = [("cb", wintypes.DWORD), ("PageFaultCount", wintypes.DWORD),
                    *((name, ctypes.c_size_t) for name in (
                        "PeakWorkingSetSize", "WorkingSetSize", "QuotaPeakPagedPoolUsage",
                        "QuotaPagedPoolUsage", "QuotaPeakNonPagedPoolUsage",
                        "QuotaNonPagedPoolUsage", "PagefileUsage", "PeakPagefileUsage"))]

    kernel32.GetCurrentProcess.restype = wintypes.HANDLE
    kernel32.K32GetProcessMemoryInfo.argtypes = (wintypes.HANDLE, ctypes.POINTER(Counters),
                                                 wintypes.DWORD)
    counters = Counters(cb=ctypes.sizeof(Counters))
    if not kernel32.K32GetProcessMemoryInfo(kernel32.GetCurrentProcess(),
                                            ctypes.byref(counters), counters.cb):
        return None
    return round(counters.PeakWorkingSetSize / (1024 * 1024), 1)


def load_average() -> Optional[float]:
    """The machine's 1-minute load average (runnable threads, every process's); None where
    the system keeps none (Windows)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def machine_load(before: Optional[float], threads: Optional[int] = None) -> Optional[dict]:
    """The load average before and after the timings, against the machine's cores (the load
    counts the whole machine's, not this process's share of them: a container's taskset
    cores against the host's load would call every shared host busy), and the threads the
    backends ran on (None: the engines' default, at most the cores); None where unknown."""
    after = load_average()
    if before is None or after is None:
        return None
    return {"before": before, "after": after, "cores": os.cpu_count() or 1, "threads": threads}


def busy_text(load: Optional[dict]) -> Optional[str]:
    """What to say of timings taken while other processes wanted the CPU: more runnable
    threads than cores, beyond half a core of slack for the bench's own, or than the bench's
    own threads where --threads (or OMP_NUM_THREADS) gave more than the cores; None
    otherwise."""
    if not load:
        return None
    worst = max(load["before"], load["after"])
    own = load.get("threads") or 0
    if worst <= max(load["cores"], own) + 0.5:
        return None
    mine = f" ({own} threads of this run's own)" if own > load["cores"] else ""
    return (f"timed on a busy machine: load average {worst:g} (1 min) on {load['cores']} "
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
