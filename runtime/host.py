"""The host a model is trained, exported, checked or benchmarked on: its CPU, the code (version,
git commit) and the versions of the libraries that build and run models, read from /proc, git
and package metadata (nothing imported), so that training's run records, export's up-to-date
check and the benchmark's reports and caches agree on them; and the thread counts the runtimes
and `--threads` accept on it."""
from __future__ import annotations

import math
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

from .options import is_number

# Each library with the distributions that install it (CPU and GPU builds have other names);
# the first one installed gives the version.
LIBRARIES: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy",),
    "torch": ("torch",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "onnx": ("onnx",),
    "onnxslim": ("onnxslim",),
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow_cpu"),
    "ai_edge_litert": ("ai-edge-litert", "ai_edge_litert"),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python"),
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt_cu12"),
    "nvidia_modelopt": ("nvidia-modelopt",),
    "scikit_image": ("scikit-image",),
    "pytest_benchmark": ("pytest-benchmark",),
}


def dist_version(*dists: str) -> Optional[str]:
    """The version of the first of `dists` installed, or None."""
    from importlib.metadata import PackageNotFoundError, version

    for d in dists:
        try:
            return version(d)
        except PackageNotFoundError:
            continue
    return None


# Libraries a system package installs without pip's metadata: JetPack's python3-libnvinfer is
# a bare `tensorrt` folder in /usr/lib/python3.10/dist-packages, which a Jetson's venv sees
# (--system-site-packages) but importlib.metadata does not. Its __init__.py, as TensorRT's
# build writes it, holds the version as a literal: (module, file in it, the name assigned).
MODULE_VERSIONS: dict[str, tuple[str, str, str]] = {
    "tensorrt": ("tensorrt", "__init__.py", "__version__"),
}


def module_version(module: str, file: str, name: str) -> Optional[str]:
    """`name = "VERSION"` as written in `file` of the package `module` where this Python finds
    it, or None; the package is found, not imported (TensorRT's loads CUDA libraries). A
    version starts with a digit: a template's placeholder ("##TENSORRT_PYTHON_VERSION##" in a
    checkout of TensorRT's sources) is none."""
    import re
    from importlib.util import find_spec

    try:
        spec = find_spec(module)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        try:
            text = (Path(folder) / file).read_text(encoding="utf-8-sig", errors="replace")
        except OSError:
            continue
        if m := re.search(rf"^{re.escape(name)}\s*=\s*[\"']([0-9][^\"']*)[\"']", text, re.M):
            return m[1]
    return None


def library_versions(names: Optional[Sequence[str]] = None) -> dict[str, Optional[str]]:
    """{library: installed version or None} for `names` (keys of LIBRARIES; default all), read
    from the installed packages' metadata, else (MODULE_VERSIONS) from the package's own file:
    nothing is imported, so it costs milliseconds."""
    return {n: dist_version(*LIBRARIES[n])
            or (module_version(*MODULE_VERSIONS[n]) if n in MODULE_VERSIONS else None)
            for n in (LIBRARIES if names is None else names)}


# code_info's limit on git: it runs as every run starts, and a stalled git must not hold it up.
GIT_TIMEOUT_S = 5


def code_info() -> dict:
    """The code that ran (trained, measured): the package's version and, in a git checkout,
    the commit and whether tracked files had uncommitted changes (then the commit alone does
    not rebuild it)."""
    repo = Path(__file__).resolve().parents[1]
    info: dict = {"package": "image-sharpening-kd",
                  "version": dist_version("image-sharpening-kd")}
    if not (repo / ".git").exists() or not shutil.which("git"):   # a worktree's .git is a file
        return info
    # GIT_DIR and the like, as a git hook that starts a run has them, name another repository.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    try:
        # One call, briefly: every training, labels and evaluate run (each torchrun rank)
        # asks as it starts, and a git stalled on a network filesystem must not hold it up.
        # No optional locks: a status that refreshes the index holds .git/index.lock, and the
        # user's own `git commit` at that moment fails on it.
        res = subprocess.run(["git", "-C", str(repo), "status", "--porcelain=v2", "--branch",
                              "--untracked-files=no"], capture_output=True, encoding="utf-8",
                             errors="replace", stdin=subprocess.DEVNULL, timeout=GIT_TIMEOUT_S,
                             env={**env, "GIT_OPTIONAL_LOCKS": "0"})
    except (OSError, subprocess.SubprocessError):
        return info
    if res.returncode != 0:
        return info
    lines = res.stdout.splitlines()
    commit = next((ln.split()[2] for ln in lines if ln.startswith("# branch.oid ")), None)
    if commit and commit != "(initial)":   # (initial): a repository with no commit yet
        info["commit"] = commit
        info["dirty"] = any(not ln.startswith("#") for ln in lines)
    return info


def cpu_model() -> str:
    """The CPU's name as /proc/cpuinfo gives it (x86 'model name', ARM 'Hardware' or 'CPU
    model'), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# A thread count above this is a slip, not a setting: ONNX Runtime asked for 10**6 threads
# hung creating them. A machine with more cores may still use them all.
MAX_THREADS = 256


def scheduled_cpus() -> list[int]:
    """The CPUs this process is scheduled on (taskset, a container's cpuset), or every CPU
    where the system does not say."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def usable_cores() -> int:
    """The CPU cores this process may use, not the machine's: taskset and a container's
    cpuset limit the cores it is scheduled on, and a CPU limit (`docker run --cpus 2`, a
    Kubernetes pod's limit) the time it gets on them, counted here rounded up."""
    cores = len(scheduled_cpus())
    limit = cgroup_cpu_limit()
    return min(cores, max(1, math.ceil(limit))) if limit else cores


def load_average() -> Optional[float]:
    """The machine's 1-minute load average (runnable threads, every process's); None where
    the system keeps none (Windows)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


# Where Linux shows the cgroups (v2 unified, or v1 one folder per controller) and this
# process's membership of them.
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_MEMBERSHIP = Path("/proc/self/cgroup")


def cgroup_cpu_limit(root: Optional[Path] = None,
                     membership: Optional[Path] = None) -> Optional[float]:
    """The CPUs a cgroup CPU limit gives this process (quota / period of its cgroup or of one
    above it, the least), or None where none is set or none can be read (not Linux). Without
    it a pod limited to 2 CPUs on a 64-core node ran LiteRT on 64 threads, which the kernel
    then throttled, and no thread count was warned of."""
    root, membership = root or CGROUP_ROOT, membership or CGROUP_MEMBERSHIP
    try:
        lines = membership.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "" and line.startswith("0::"):   # cgroup v2
            folders, files = [root], ("cpu.max",)
        elif "cpu" in controllers.split(","):               # cgroup v1's cpu controller
            folders = [root / controllers, *(root / c for c in controllers.split(","))]
            files = ("cpu.cfs_quota_us", "cpu.cfs_period_us")
        else:
            continue
        for mount in folders:
            limit = _least_limit(mount, path, files)
            if limit is not None:
                limits.append(limit)
                break
    return min(limits) if limits else None


def _least_limit(mount: Path, path: str, files: tuple[str, ...]) -> Optional[float]:
    """The least CPU limit from the process's cgroup folder up to the mount's root. Inside a
    container the mount's root is the container's own cgroup, and /proc/self/cgroup may still
    name its path on the host, which is not there: then the root alone is read."""
    if not _is_dir(mount):
        return None
    here = mount / path.strip("/")
    folders = [here, *(p for p in here.parents if mount in (p, *p.parents))] if _is_dir(here) \
        else [mount]
    limits = [cpus for f in folders if (cpus := _cpus(f, files)) is not None]
    return min(limits) if limits else None


def _is_dir(path: Path) -> bool:
    """Path.is_dir, False where the path cannot be looked up at all: it raises on EACCES (a
    folder above it this user may not search) and ENAMETOOLONG, which failed the whole run."""
    try:
        return path.is_dir()
    except OSError:
        return False


def _cpus(folder: Path, files: tuple[str, ...]) -> Optional[float]:
    """quota / period in one cgroup folder (v2 `cpu.max`: "max 100000" or "200000 100000";
    v1 cpu.cfs_quota_us, -1 for none, and cpu.cfs_period_us), None without a limit."""
    try:
        texts = [(folder / f).read_text(encoding="utf-8").split() for f in files]
    except OSError:
        return None
    words = texts[0] if len(texts) == 1 else [w for t in texts for w in t[:1]]
    if len(words) < 2 or not all(w.lstrip("-").isdigit() for w in words[:2]):
        return None
    quota, period = int(words[0]), int(words[1])
    return quota / period if quota > 0 and period > 0 else None


def peak_memory_mib(system: Optional[str] = None) -> Optional[float]:
    """This process's peak resident memory so far in MiB on `system` (sys.platform's spelling,
    default this one): getrusage's ru_maxrss (KiB on Linux, bytes on macOS), Windows' peak
    working set (it has no `resource` module); None where the system cannot say. What a board
    with 2-4 GB shared with its GPU is sized by: a 4K frame takes about three times a 1080p
    one's."""
    system = system or sys.platform
    if system == "win32":
        return _windows_peak_mib()
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1 << 20 if system == "darwin" else 1 << 10), 1)


def _windows_peak_mib() -> Optional[float]:
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
    return round(counters.PeakWorkingSetSize / (1 << 20), 1)


def threads_top() -> int:
    """The most threads a count may ask for: MAX_THREADS, or the machine's cores where it
    has more."""
    return max(MAX_THREADS, os.cpu_count() or 0)


# The variable torch, OpenMP builds and many numeric tools take their thread count from. ONNX
# Runtime and LiteRT read no variable of their own: given no thread count, the backends take it
# from here, so that one setting bounds every engine of a process (a container's share of the
# cores, a test worker's), as it already bounded torch.
THREADS_ENV = "OMP_NUM_THREADS"
# The variables read, first first: PyTorch's default (ATen's intraop_default_num_threads) takes
# MKL_NUM_THREADS over OMP_NUM_THREADS where it holds a count, so the engines do too. A
# container's MKL_NUM_THREADS=1 put torch on one thread and the engines on every core.
THREADS_VARS = ("MKL_NUM_THREADS", THREADS_ENV)
# What a thread count of 0 (or none) means, as the help and the range errors say it.
ZERO_THREADS = (f"{' or else '.join(THREADS_VARS)} when set, else a CPU limit's count, "
                "else all cores")


def threads_help(runs: str, zero: str = ZERO_THREADS) -> str:
    """The --threads help of every command, in the same words: what the threads run, what 0
    means (as check_threads says it) and the limit check_threads enforces."""
    return (f"CPU threads for {runs} (default 0: {zero}; at most {MAX_THREADS}, or the "
            "machine's cores where it has more)")


def check_threads(threads: Optional[int], name: str = "threads",
                  zero: str = ZERO_THREADS) -> None:
    """ValueError naming `name` (a keyword, or a flag such as --threads) and the range for a
    thread count below 0 or above max(MAX_THREADS, the machine's cores); `zero` says what 0
    means. None passes (the engine's default)."""
    if threads is None:
        return
    if not is_number(threads):   # "2" met `>=`
        raise ValueError(f"{name} must be a whole number (0: {zero}), got {threads!r}")
    top = threads_top()
    if not threads >= 0:
        raise ValueError(f"{name} must be >= 0 (0: {zero}), got {threads}")
    if threads > top:
        raise ValueError(f"{name} must be 0 to {top} (0: {zero}), got {threads}")


def parse_threads(raw: str) -> Optional[int]:
    """The thread count a variable such as OMP_NUM_THREADS holding `raw` sets, or None when it
    sets none (empty, not a whole number 1 to max(MAX_THREADS, cores)). A list ("4,2",
    OpenMP's nested levels) gives its first, outermost, level. Says nothing: env_threads warns,
    and the benchmark reads OPENBLAS_NUM_THREADS by the same rule."""
    first = raw.split(",")[0].strip()
    top = threads_top()
    # Digits past 9 (leading zeros aside) exceed any top: int() of over 4300 of them raised
    # Python's ValueError at every model load.
    digits = first.lstrip("0")
    n = int(digits) if first.isascii() and first.isdigit() and 0 < len(digits) < 10 else 0
    return n if 1 <= n <= top else None


def threads_variable() -> Optional[tuple[str, int]]:
    """(variable, count): the first of THREADS_VARS that holds a thread count, or None. Says
    nothing (env_threads warns)."""
    for name in THREADS_VARS:
        n = parse_threads(os.environ.get(name, ""))
        if n is not None:
            return name, n
    return None


def env_threads() -> Optional[int]:
    """The thread count the variables set (threads_variable: MKL_NUM_THREADS, else
    OMP_NUM_THREADS, as PyTorch reads them), or None when neither does. A variable set to
    what is no count, and read (none before it gave one), is warned of, naming it and its value.
    A list ("4,2", OpenMP's nested levels) gives its first, outermost, level."""
    found = threads_variable()
    for name in THREADS_VARS:
        if found and name == found[0]:
            break
        raw = os.environ.get(name, "")
        if raw.strip():
            _say_not_a_count(name, raw, found)
    return found[1] if found else None


def _say_not_a_count(name: str, raw: str, found: Optional[tuple[str, int]]) -> None:
    from .warn import warn

    shown = repr(raw) if len(raw) <= 40 else f"{raw[:20]!r}... ({len(raw)} characters)"
    # What they run instead: the next variable's count, else default_threads goes on to a CPU
    # limit's count.
    n = limit_threads()
    instead = (f"run {found[0]}'s {found[1]}" if found else
               f"run the {n} thread{'' if n == 1 else 's'} of a CPU limit of "
               f"{_cpus_said(cgroup_cpu_limit())} (cgroup)" if n else
               "use their own default thread counts")
    warn(f"{name}={shown} is not a thread count (a whole number 1 to {threads_top()}): "
         f"ignored; ONNX Runtime and LiteRT {instead}")


def limit_threads() -> Optional[int]:
    """The thread count a cgroup CPU limit sets (usable_cores) where it leaves fewer CPUs than
    the cores this process is scheduled on, else None. ONNX Runtime's and PyTorch's defaults
    follow the affinity mask (taskset, a cpuset: one thread each under `taskset -c 0`) but not
    a CPU quota: under `docker run --cpus 2` on a 64-core host each started 64 threads, which
    the kernel then throttled."""
    limit = cgroup_cpu_limit()
    if not limit:
        return None
    cores = len(scheduled_cpus())
    n = max(1, math.ceil(limit))
    return n if n < cores else None


def _cpus_said(limit: Optional[float]) -> str:
    """`1 CPU`, `1.5 CPUs`: a CPU limit as the messages say it."""
    return f"{limit:g} CPU{'' if limit == 1 else 's'}"


def limit_note(engines: str) -> str:
    """One line saying that a CPU limit sets the thread count `engines` run with when neither
    --threads nor a variable (THREADS_VARS) gives one; '' where none does, or where a
    variable sets the count."""
    n = limit_threads()
    if not n or threads_variable() is not None:
        return ""
    return (f"a CPU limit of {_cpus_said(cgroup_cpu_limit())} (cgroup) is in force: "
            f"{engines} run{'s' if ' and ' not in engines else ''} {n} "
            f"thread{'' if n == 1 else 's'} (--threads N or {THREADS_ENV} to change)")


def default_threads(threads: Optional[int]) -> Optional[int]:
    """The thread count an engine runs with: `threads` when given (not None or 0), else
    MKL_NUM_THREADS's or OMP_NUM_THREADS's (env_threads), else a cgroup CPU limit's
    (limit_threads), else None (the
    engine's own default, which follows the affinity mask)."""
    return threads or env_threads() or limit_threads()


def threads_warning(threads: Optional[int], name: str = "threads") -> str:
    """What to warn of when the thread count the engines run with, `threads` (named `name`)
    when given, else OMP_NUM_THREADS's (default_threads), is more than the cores this process
    may use; '' when it is not. The warning names where the count came from: an oversized
    OMP_NUM_THREADS, the runtimes' default, went unsaid where the same --threads was warned of."""
    cores = usable_cores()
    n = default_threads(threads)
    if not n or n <= cores:
        return ""
    var = threads_variable()
    said = (f"{name} {n}" if threads or var is None else
            f"{var[0]}={os.environ.get(var[0], '').strip()} (the thread count "
            f"when {name} is not given)")
    return (f"{said} is more than the {cores} CPU core{'' if cores == 1 else 's'} this "
            "process may use; the "
            "extra threads share cores and usually make inference slower")
