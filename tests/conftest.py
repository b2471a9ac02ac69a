import copy
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Tests share two cores with everything else: keep torch from oversubscribing, also when
# pytest-xdist runs several workers (scripts/test.sh): a core each on this 2-core machine.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
# The controller imports this file too, before it starts the workers, and they inherit its
# environment: a plain setdefault made the controller's "2" (one process, two cores) every
# worker's, two torch threads per worker on two cores, spin-waiting (a 0.3 CPU-second test took
# 30). The user's own OMP_NUM_THREADS, kept aside here by the first process, still wins.
# A shell's MKL_NUM_THREADS, which torch and the engines read over OMP_NUM_THREADS
# (runtime.host.THREADS_VARS), counts as the user's own and is then left to the tests to set.
_USER_OMP = os.environ.setdefault("SHARPEN_TESTS_USER_OMP", os.environ.get("MKL_NUM_THREADS")
                                  or os.environ.get("OMP_NUM_THREADS", ""))
os.environ.pop("MKL_NUM_THREADS", None)
# Once per process: imported again under another name (`from tests.conftest import ...`), it
# ran after the worker's PYTEST_XDIST_* were deleted below and gave the worker two threads.
if os.environ.get("SHARPEN_TESTS_OMP_PID") != str(os.getpid()):
    os.environ["SHARPEN_TESTS_OMP_PID"] = str(os.getpid())
    os.environ["OMP_NUM_THREADS"] = (_USER_OMP
                                     or str(max(1, min(2, (os.cpu_count() or 2) // _WORKERS))))
# Tables are read as a wide terminal shows them, whatever terminal (or pytest-xdist worker,
# which gets COLUMNS=80) runs the suite: 160 is the width a run without a terminal has always
# had (runtime/console.py's fallback).
os.environ["COLUMNS"] = "160"
# Child processes run as a user's would: a pytest started by a test (the bench report's
# reproduce command) that inherits a worker's PYTEST_XDIST_WORKER takes itself for an xdist
# worker, and pytest-benchmark then disables timing and writes no --benchmark-json.
for _name in [n for n in os.environ if n.startswith("PYTEST_XDIST_")]:
    del os.environ[_name]

# A suite started in the background of a non-interactive shell (`cmd &`, nohup) inherits SIGINT
# ignored, and so does every child it starts: the tests that Ctrl-C a child would wait on a
# child that never sees it. A handled signal is reset to its default in each child.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_configure(config):
    """The suite's caches (the embedded data set, 76 MB; bench artifacts; TensorRT engines;
    matplotlib's fonts) go to a folder of this run's, not $XDG_CACHE_HOME or ~/.cache: a test
    run wrote the embedded set into the user's cache, which on a CI runner outlives the job.
    The first process makes it and removes it at the end; pytest-xdist's workers (and a pytest a
    test starts) inherit it. A SHARPEN_DATA of the user's own still holds the embedded set."""
    ours = os.environ.get("SHARPEN_TESTS_CACHE")
    if not ours or os.environ.get("XDG_CACHE_HOME") != ours:
        ours = tempfile.mkdtemp(prefix="sharpen-tests-cache-")
        config.stash[_MADE_CACHE] = (ours, {k: os.environ.get(k) for k in _CACHE_VARS},
                                     _remove_on_sigterm(config, ours))
        os.environ["SHARPEN_TESTS_CACHE"] = os.environ["XDG_CACHE_HOME"] = ours
    # pytest-benchmark (its configure runs last) makes its storage, ./.benchmarks, wherever
    # pytest starts, though tests/ times nothing; a run asked to save one keeps it there.
    opt = config.option
    if (getattr(opt, "benchmark_storage", None) == "file://./.benchmarks"
            and not (opt.benchmark_save or opt.benchmark_autosave)):
        opt.benchmark_storage = f"file://{ours}/benchmarks"


def _remove_on_sigterm(config, folder: str):
    """`timeout`, `docker stop` and a cancelled CI job end a run with SIGTERM, which skips
    pytest_unconfigure: the folder (76 MB) stayed in the temporary folder for good. The run
    still ends as SIGTERM ends it (143). Only where pytest-xdist's workers run the tests
    (scripts/test.sh): a test run in this process must find SIGTERM's default handler, which
    `sharpen` takes over only when it is the default. The handler set, or None."""
    if getattr(config.option, "dist", "no") == "no" or not getattr(config.option, "tx", None):
        return None

    def remove_and_end(signum, frame):
        shutil.rmtree(folder, ignore_errors=True)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, remove_and_end)
            return remove_and_end
    except ValueError:   # pytest.main() called from a thread other than the main one
        pass
    return None


def pytest_unconfigure(config):
    made = config.stash.get(_MADE_CACHE, None)
    if made:
        folder, before, handler = made
        if handler is not None and signal.getsignal(signal.SIGTERM) is handler:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        shutil.rmtree(folder, ignore_errors=True)
        # Else a later pytest.main() in this process takes the removed folder for its own.
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


_CACHE_VARS = ("SHARPEN_TESTS_CACHE", "XDG_CACHE_HOME")
_MADE_CACHE = pytest.StashKey[tuple]()


@pytest.fixture
def registry():
    """The student registry as it was before the test: what a test registers is gone after."""
    from distill import students

    saved = dict(students._REGISTRY)
    yield
    students._REGISTRY.clear()
    students._REGISTRY.update(saved)


@pytest.fixture
def no_flock(monkeypatch):
    """flock failing with ENOLCK, as on some NFS, SMB and FUSE mounts (unlocking still works:
    a run that goes on unlocked releases nothing it holds)."""
    import errno
    import fcntl

    real = fcntl.flock

    def no_locks(fd, op):
        if op & fcntl.LOCK_UN:
            return real(fd, op)
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)


@pytest.fixture
def no_cpu_limit(tmp_path, monkeypatch):
    """No cgroup CPU limit, whatever the host's: without --threads or OMP_NUM_THREADS a CI
    runner's quota (a Kubernetes pod's, `docker run --cpus`) sets the engines' thread count,
    which tests of the engines' own default would otherwise read."""
    from runtime import host
    monkeypatch.setattr(host, "CGROUP_MEMBERSHIP", tmp_path / "no-cgroup", raising=False)


@pytest.fixture
def one_thread():
    """One torch thread for the test: two on a shared 2-core box make a tiny model ~20x slower
    (spin-waiting)."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_teacher_pt(tmp_path_factory) -> Path:
    """A tiny Restormer teacher checkpoint (random weights, seed 0) for command-line tests."""
    import torch

    from distill.checkpoint import atomic_save, make_checkpoint
    from distill.restormer import build_restormer
    torch.manual_seed(0)
    m = build_restormer("tiny")
    p = tmp_path_factory.mktemp("tiny-teacher") / "teacher.pt"
    atomic_save(make_checkpoint(m, kind="teacher", arch="restormer",
                                arch_args=m.config.to_dict()), p)
    return p


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    for cand in (ROOT.parent / "shared", ROOT / "shared"):
        if (cand / "restormer").exists():
            return cand
    # Which file, and where: every hosted CI sets CI, and an adopter's first job failed here.
    msg = ("shared/restormer/motion_deblurring_state_dict.txt (the official Restormer "
           "checkpoint's tensor names and shapes, a line each) not found in "
           f"{ROOT.parent / 'shared'} or {ROOT / 'shared'}")
    if os.environ.get("CI"):
        pytest.fail(msg + " (the project's CI lays shared/ beside the clone, and with CI set "
                    "the parity test must run; a job without it: run with CI unset)")
    pytest.skip(msg)


@pytest.fixture(scope="session")
def reds_mini() -> Path:
    """shared/data/reds-mini (60 real blur/sharp pairs, 320x180) beside the clone or in it;
    skipped where neither holds it (the data is never in the project)."""
    for cand in (ROOT.parent / "shared", ROOT / "shared"):
        if (cand / "data" / "reds-mini" / "sharp").is_dir():
            return cand / "data" / "reds-mini"
    pytest.skip(f"shared/data/reds-mini not found in {ROOT.parent} or {ROOT}")


@pytest.fixture(scope="session")
def export_data_dir(tmp_path_factory) -> Path:
    """Calibration, parity and ground-truth images of the export tests (export_fixtures)."""
    from export_fixtures import make_export_data
    return make_export_data(tmp_path_factory.mktemp("export-data"))


@pytest.fixture(scope="session")
def fast_student_pt(tmp_path_factory) -> Path:
    """The briefly trained `fast` student the export tests export (export_fixtures); the
    tests load their own models from it."""
    from export_fixtures import save_fast_student
    return save_fast_student(tmp_path_factory.mktemp("export-ckpt") / "student.pt")


@pytest.fixture(scope="session")
def bench_env(tmp_path_factory) -> Path:
    """The `sharpen bench` tests' models, paired folder and shared cache (bench_fixtures): once
    per worker, whichever of the tests/test_bench_*.py files it runs."""
    from bench_fixtures import make_bench_env
    return make_bench_env(tmp_path_factory.mktemp("bench"))


@pytest.fixture(scope="session")
def bench_good_run(bench_env):
    """The good student's `sharpen bench` run (bench_fixtures.good_bench_run): exit status and
    report.json, shared by the test_bench_*.py files; each takes its own copy (good_run)."""
    from bench_fixtures import good_bench_run
    return good_bench_run(bench_env)


# The bench test files' own names for the two above, per file: `good_run` hands each file its
# own copy of the report, so a test that edits it sees what it did before the files were split.
@pytest.fixture(scope="module")
def env(bench_env):
    return bench_env


@pytest.fixture(scope="module")
def good_run(bench_good_run):
    """The shared bench run's exit status and a copy of its report.json, this file's to edit."""
    rc, report = bench_good_run
    return rc, copy.deepcopy(report)
