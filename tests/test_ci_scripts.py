"""scripts/test.sh and scripts/setup.sh as a CI job runs them (`.ci/run`): on a copy of the
scripts, with an environment setup.sh made before (its stamp) whose `python` is a stand-in that
writes down each command it is given and exits with the status the test asks of it."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not (shutil.which("bash") and shutil.which("sha256sum")),
                                reason="the scripts need bash and sha256sum")

# The stand-in for $VENV/bin/python: `-m pip config` goes to the real Python (what setup.sh
# reads of pip's settings), every other command is written down and answered with the exit
# status STUB_TESTS_RC (the tests/ run), STUB_BENCH_RC (the benchmarks run) or STUB_PIP_RC (a
# `pip install` but pip's own upgrade) asks for.
STUB = f"""#!/usr/bin/env bash
if [ "$2 $3" = "pip config" ]; then exec {sys.executable} "$@"; fi
printf '%s\\n' "$*" >> "$STUB_LOG"
case " $* " in
  *" -m pytest benchmarks "*) exit "${{STUB_BENCH_RC:-0}}";;
  *" -m pytest tests "*) exit "${{STUB_TESTS_RC:-0}}";;
  *" -m pip install -q --upgrade pip "*) exit 0;;
  *" -m pip install "*) exit "${{STUB_PIP_RC:-0}}";;
esac
exit 0
"""


def _checkout(tmp_path: Path, installed: bool = True,
              stamped: bool = True) -> tuple[Path, Path]:
    """(a checkout holding the scripts and pyproject.toml, the environment VENV names: made
    where `installed`, its install done where `stamped`)."""
    src = tmp_path / "src"
    (src / "scripts").mkdir(parents=True)
    for name in ("setup.sh", "test.sh"):
        shutil.copy2(REPO / "scripts" / name, src / "scripts" / name)
    shutil.copy2(REPO / "pyproject.toml", src / "pyproject.toml")
    venv = tmp_path / "venv"
    if installed:
        (venv / "bin").mkdir(parents=True)
        (venv / "bin" / "python").write_text(STUB)
        (venv / "bin" / "python").chmod(0o755)
    if installed and stamped:
        stamp = subprocess.run(["sha256sum"], input=(src / "pyproject.toml").read_bytes(),
                               capture_output=True).stdout[:16].decode()
        (venv / f".installed-{stamp}-dev").write_text("")
    return src, venv


def _test_sh(src: Path, venv: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess,
                                                                     list[str]]:
    log = src.parent / "commands.log"
    # PYTHON=false: a setup.sh that went on to make an environment (a test.sh that ran it
    # before --help) stops there, rather than install torch and the rest (minutes, GBs).
    r = subprocess.run(["bash", str(src / "scripts" / "test.sh"), *args],
                       env={**os.environ, "VENV": str(venv), "STUB_LOG": str(log),
                            "PYTHON": "false", **env},
                       capture_output=True, text=True, timeout=60)
    return r, (log.read_text().splitlines() if log.exists() else [])


def test_help_says_how_to_run_the_tests_without_setting_up_an_environment(tmp_path):
    """`scripts/test.sh --help` created .venv and installed torch, TensorFlow and the rest (minutes,
    GBs) before pytest printed its own help: a CI maintainer reading what the script takes got
    an install instead."""
    src, venv = _checkout(tmp_path, installed=False)
    r, _ = _test_sh(src, venv, "--help")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SHARPEN_TEST_WORKERS" in r.stdout and "usage: scripts/test.sh" in r.stdout, r.stdout
    assert not venv.exists(), "set up an environment to print its help"


def test_the_suites_run_in_the_environment_venv_names(tmp_path):
    """setup.sh set up $VENV, but test.sh then ran .venv/bin/python: `VENV=/opt/venv
    scripts/test.sh` (a CI image's environment) stopped with 'No such file or directory'."""
    src, venv = _checkout(tmp_path)
    r, ran = _test_sh(src, venv, "-k", "name")
    assert r.returncode == 0, r.stdout + r.stderr
    assert [c.split()[:3] for c in ran] == [["-m", "pytest", "tests"],
                                            ["-m", "pytest", "benchmarks"]], ran


@pytest.mark.parametrize("tests_rc, bench_rc, expected", [
    (0, 0, 0), (1, 0, 1), (0, 1, 1), (2, 1, 2), (5, 0, 0), (0, 5, 0), (5, 5, 5)])
def test_the_exit_status_is_the_first_failing_suites(tmp_path, tests_rc, bench_rc, expected):
    src, venv = _checkout(tmp_path)
    r, ran = _test_sh(src, venv, STUB_TESTS_RC=str(tests_rc), STUB_BENCH_RC=str(bench_rc))
    assert r.returncode == expected, (r.returncode, ran)
    assert len(ran) == 2, ran   # the benchmark suite runs also after a failing tests/


def test_ci_reports_go_to_one_file_each_in_the_folder_named(tmp_path):
    """Extra arguments go to both pytest runs, so `scripts/test.sh --junitxml=junit.xml` wrote the
    tests/ report and then the benchmark suite's over it: CI collected the benchmarks' alone, a
    failing test nowhere in it. SHARPEN_TEST_REPORTS=DIR (relative to where the job is, not
    the checkout) gets one JUnit file a suite, each test's duration in it, and the benchmark
    JSON."""
    src, venv = _checkout(tmp_path)
    job = tmp_path / "job"
    job.mkdir()
    log = tmp_path / "commands.log"
    r = subprocess.run(["bash", str(src / "scripts" / "test.sh"), "-x"], cwd=job,
                       env={**os.environ, "VENV": str(venv), "STUB_LOG": str(log),
                            "SHARPEN_TEST_REPORTS": "reports"},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    tests, bench = log.read_text().splitlines()
    out = job / "reports"
    assert out.is_dir()
    assert f"--junitxml={out / 'tests.xml'}" in tests.split(), tests
    assert {f"--junitxml={out / 'benchmarks.xml'}",
            f"--benchmark-json={out / 'benchmarks.json'}"} <= set(bench.split()), bench
    assert "-x" in tests.split() and "-x" in bench.split()


@pytest.mark.parametrize("arg", ["--junitxml=junit.xml", "--junit-xml=junit.xml", "--junitxml"])
def test_a_junit_file_both_suites_would_write_is_refused_naming_the_way(tmp_path, arg):
    src, venv = _checkout(tmp_path)
    r, ran = _test_sh(src, venv, "-q", arg)
    assert r.returncode == 2 and not ran, (r.returncode, ran)
    assert "SHARPEN_TEST_REPORTS=DIR" in r.stderr and arg in r.stderr, r.stderr


def _setup_sh(src: Path, venv: Path, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    log = src.parent / "commands.log"
    r = subprocess.run(["bash", str(src / "scripts" / "setup.sh")],
                       env={**os.environ, "VENV": str(venv), "STUB_LOG": str(log), **env},
                       capture_output=True, text=True, timeout=60)
    return r, (log.read_text().splitlines() if log.exists() else [])


def test_an_install_pip_could_not_do_says_what_and_how_to_go_on_offline(tmp_path):
    """With the package index unreachable (a CI runner without network, a proxy down), pip
    retries and ends 'No matching distribution found for torch==2.13.0 (from versions: none)',
    as if the pinned torch did not exist, and setup.sh ended there without a word of its own:
    now it names what it could not install, the index as the likely cause and the offline way
    (a folder of wheels)."""
    src, venv = _checkout(tmp_path, stamped=False)
    r, ran = _setup_sh(src, venv, STUB_PIP_RC="1")
    assert r.returncode == 1, r.stdout + r.stderr
    said = r.stderr
    assert "[setup] pip could not install torch==2.13.0" in said, said
    assert "unreachable" in said and "PIP_NO_INDEX=1 PIP_FIND_LINKS=" in said, said
    assert not list(venv.glob(".installed-*"))


@pytest.mark.parametrize("extras, torch", [("dev", True), ("runtime", False)])
def test_the_offline_way_downloads_all_an_offline_install_needs(tmp_path, extras, torch):
    """The offline way said "'pip download -d DIR' the same requirements (torch first, then
    '.[dev]')": the install from DIR then stopped at 'No matching distribution found for
    hatchling' (the build backend, which pip download does not keep), then for editables
    (hatchling's for an editable install), and a torch downloaded from PyPI on Linux was the
    CUDA build. It now gives the commands, with setup.sh's own torch requirement."""
    src, venv = _checkout(tmp_path, stamped=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    r = subprocess.run(["bash", str(src / "scripts" / "setup.sh")],
                       env={**env, "PIP_CONFIG_FILE": os.devnull, "EXTRAS": extras,
                            "VENV": str(venv), "STUB_LOG": str(tmp_path / "log"),
                            "STUB_PIP_RC": "1"},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    said = r.stderr
    assert f"pip download -d DIR '.[{extras}]' hatchling editables" in said, said
    cpu = " --index-url https://download.pytorch.org/whl/cpu" if sys.platform == "linux" else ""
    assert (f"pip download -d DIR torch==2.13.0{cpu}\n" in said) == torch, said


@pytest.mark.skipif(sys.platform != "linux", reason="PyPI's CUDA torch is Linux's")
@pytest.mark.parametrize("pip_env, cpu_index", [
    ({}, True),                                           # pip as installed: PyPI
    ({"PIP_FIND_LINKS": "/srv/wheels"}, False),           # a wheel folder of the runner's own
    ({"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "w"}, False),   # offline
    ({"PIP_INDEX_URL": "https://mirror.example/simple"}, False),   # a mirror
    ({"PIP_EXTRA_INDEX_URL": "https://more.example/simple"}, False),   # one more index
    ({"PIP_CONFIG_FILE": "pip.conf"}, False),   # a pip.conf's, as a runner image has it
])
def test_the_default_torch_is_the_cpu_build_from_pytorchs_cpu_index(tmp_path, pip_env,
                                                                     cpu_index):
    """The README and setup.sh promise torch==2.13.0's CPU build (~200 MB), but PyPI's Linux
    wheel of it is the CUDA build (cuda-toolkit 13, cuDNN, NCCL: GBs): a CI runner that installs
    from PyPI downloaded those. PyTorch's CPU index serves the CPU one; a pip given an index or
    a wheel folder of its own (a mirror, an offline wheelhouse) is left to it."""
    src, venv = _checkout(tmp_path, stamped=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    if pip_env.get("PIP_CONFIG_FILE"):   # a section and a spelling of its own: pip reads both
        (tmp_path / "pip.conf").write_text("[install]\nindex_url = https://mirror.example/s\n")
        pip_env = {"PIP_CONFIG_FILE": str(tmp_path / "pip.conf")}
    log = tmp_path / "commands.log"
    r = subprocess.run(["bash", str(src / "scripts" / "setup.sh")],
                       env={**env, "PIP_CONFIG_FILE": os.devnull, **pip_env,
                            "VENV": str(venv), "STUB_LOG": str(log)},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    torch, = [c for c in log.read_text().splitlines() if "torch==" in c]
    assert ("--index-url https://download.pytorch.org/whl/cpu" in torch) == cpu_index, torch
    assert torch.split()[4] == "torch==2.13.0", torch


def test_the_suite_caches_in_a_folder_of_its_own_not_the_users():
    """A test run wrote the embedded data set (76 MB) into ~/.cache/sharpen/embedded, the
    user's cache, which on a CI runner outlives the job: the suite's caches go to a folder of
    the run's own (pytest-xdist's workers share it), removed after it."""
    import tempfile

    from runtime.cache import cache_dir
    users = Path(os.path.expanduser("~")) / ".cache"
    for name in ("bench", "trt"):
        assert users not in cache_dir(name).parents, cache_dir(name)
        assert Path(tempfile.gettempdir()).resolve() in cache_dir(name).resolve().parents
    if "SHARPEN_DATA" not in os.environ:   # the user's own SHARPEN_DATA is theirs to give
        from distill.data.embedded import default_root
        assert users not in default_root().parents, default_root()


def test_a_hung_test_fails_with_its_stack_not_the_whole_job(tmp_path):
    """pytest-timeout is in the dev extra, but nothing set a timeout: a test hung on a camera
    that never answers held the CI job until the runner's own limit (GitHub's is 6 hours) and
    said nothing of where. Each test now has SHARPEN_TEST_TIMEOUT seconds (default 1800, several
    times the whole suite's 7-15 minutes); a --timeout of the caller's, later, wins."""
    src, venv = _checkout(tmp_path)
    r, ran = _test_sh(src, venv)
    assert r.returncode == 0, r.stdout + r.stderr
    assert all("--timeout=1800" in c.split() for c in ran), ran
    (tmp_path / "commands.log").unlink()
    r, ran = _test_sh(src, venv, "--timeout=60", SHARPEN_TEST_TIMEOUT="300")
    assert all(c.split().index("--timeout=300") < c.split().index("--timeout=60")
               for c in ran), ran


@pytest.mark.skipif((REPO.parent / "shared" / "restormer").exists()
                    or (REPO / "shared" / "restormer").exists(),
                    reason="shared/restormer lies beside this checkout: the parity test runs")
def test_a_ci_job_without_shared_beside_the_clone_is_told_what_to_lay_there_or_unset():
    """Every hosted CI (GitHub Actions, GitLab) sets CI, under which the Restormer state-dict
    parity test fails when shared/restormer is not beside the clone, as the project's own CI
    wants; an adopter's first job failed on 'shared/restormer (official state-dict listing)
    not found', with no word of which file, where, or how to run without it."""
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "tests/test_restormer.py::test_official_config_matches_checkpoint_listing"],
                       cwd=REPO, env={**os.environ, "CI": "true"}, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    said = r.stdout
    assert "shared/restormer/motion_deblurring_state_dict.txt" in said, said
    assert str(REPO.parent / "shared") in said and "CI unset" in said, said


def test_the_suite_leaves_nothing_in_the_folder_it_is_started_in(tmp_path):
    """pytest-benchmark makes its storage, ./.benchmarks, wherever pytest starts, also for
    tests/, which times nothing: `pytest ~/src/sharpen/tests/...` from a job's workspace left
    an empty .benchmarks there."""
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        f"{REPO / 'tests' / 'test_ci_scripts.py'}::"
                        "test_help_says_how_to_run_the_tests_without_setting_up_an_environment"],
                       cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not list(tmp_path.iterdir()), list(tmp_path.iterdir())


def test_a_run_leaves_no_cache_folder_nor_its_environment_behind(tmp_path):
    """The suite's cache folder was removed at the end of a run, but XDG_CACHE_HOME and
    SHARPEN_TESTS_CACHE still named it: a second pytest.main() in that process (a script, an
    IDE's runner) took the removed folder for its own, made it again (pytest-benchmark's
    storage, the embedded set) and left it in the temporary folder for good."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    test = (f"{REPO / 'tests' / 'test_ci_scripts.py'}::"
            "test_help_says_how_to_run_the_tests_without_setting_up_an_environment")
    code = ("import os, pytest\n"
            f"args = ['-q', '-p', 'no:cacheprovider', {test!r}]\n"
            "for _ in range(2): assert pytest.main(args) == 0\n"
            "print(os.environ.get('XDG_CACHE_HOME'), os.environ.get('SHARPEN_TESTS_CACHE'))\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("XDG_CACHE_HOME", "SHARPEN_TESTS_CACHE")}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300,
                       env={**env, "TMPDIR": str(tmp), "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1] == "None None", r.stdout
    assert not list(tmp.glob("sharpen-tests-cache-*")), list(tmp.glob("*/*"))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX signals")
def test_a_run_stopped_by_sigterm_removes_its_cache_folder(tmp_path):
    """`timeout`, `docker stop` and a cancelled CI job end pytest with SIGTERM, which ended it
    at once: its cache folder (the embedded set, 76 MB) stayed in the temporary folder, one
    more a stopped run, on a runner that outlives its jobs. It is removed first, and the run
    still ends as SIGTERM ends it. As scripts/test.sh runs it: the tests in an xdist worker."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    said = tmp_path / "said"
    os.mkfifo(said)
    (tmp_path / "test_waits.py").write_text(
        "import os, time\n"
        "def test_waits():\n"
        "    with open(os.environ['SAID'], 'w') as f:\n"
        "        f.write(os.environ['XDG_CACHE_HOME'])\n"
        "    time.sleep(300)\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("XDG_CACHE_HOME", "SHARPEN_TESTS_CACHE")}
    # The suite's conftest as a plugin: a test file of its own would join the suite.
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "-p", "conftest", "-n", "1", str(tmp_path / "test_waits.py")],
                            cwd=tmp_path, stdout=subprocess.DEVNULL,
                            env={**env, "TMPDIR": str(tmp), "SAID": str(said),
                                 "PYTHONPATH": os.pathsep.join([str(REPO / "tests"),
                                                                str(REPO)])})
    def unblock():   # a run that ends before its test writes: the read gets ''
        proc.wait()
        with contextlib.suppress(OSError):   # ENXIO: read already
            os.close(os.open(said, os.O_WRONLY | os.O_NONBLOCK))

    threading.Thread(target=unblock, daemon=True).start()
    try:
        with open(said) as f:   # until the test, in the worker, writes
            cache = Path(f.read())
        proc.terminate()
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert cache.parent == tmp, cache
    assert proc.returncode == -signal.SIGTERM, proc.returncode
    assert not cache.exists() and not list(tmp.glob("sharpen-tests-cache-*"))
