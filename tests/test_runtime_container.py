"""The runtime in a locked-down container: no HOME (or one that cannot be written), a read-only
working folder, only the output folder writable (README: "Container / runtime-only install")."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from child_fixtures import in_a_child
from runtime_fixtures import (REPO, cli_module, onnx_model, run_cli,  # noqa: E402
                              write_video)

__all__ = ["onnx_model"]


def _container_env(tmp_path) -> dict:
    """This environment as a container's: no HOME, and an XDG_CACHE_HOME below a file, which no
    user, root included, can make a folder in (a read-only home's stand-in)."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    env = {k: v for k, v in os.environ.items()
           if k not in ("HOME", "XDG_CACHE_HOME", "ORT_DISABLE_TELEMETRY", "SHARPEN_DEBUG")}
    env.update(XDG_CACHE_HOME=str(blocker / "cache"), PYTHONPATH=str(REPO))
    return env


def test_a_run_without_a_writable_home_shows_no_onnxruntime_telemetry_line(tmp_path,
                                                                          onnx_model):
    """ONNX Runtime 1.32 printed `[W:onnxruntime:Default, telemetry_1ds.cc:613 operator()]
    Failed to persist telemetry device ID` in yellow (escape codes in a log file) at the top of
    every `sharpen run` in a container, where its ~/.cache cannot be written: it read as the
    run's failure, though the run needs no such folder."""
    env = _container_env(tmp_path)
    bare = subprocess.run([sys.executable, "-c", "import onnxruntime"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert bare.returncode == 0, bare.stderr
    if "telemetry" not in bare.stderr:
        pytest.skip("this ONNX Runtime build says nothing of its telemetry without a cache "
                    "folder (no 1DS telemetry, or a version before 1.32)")
    video = tmp_path / "in.mp4"
    write_video(video, n=3)
    r = subprocess.run([sys.executable, "-m", "runtime.cli", "run", "--model", str(onnx_model),
                        "--source", str(video), "--out", str(tmp_path / "out.mp4")],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "telemetry" not in r.stderr and "\x1b[" not in r.stderr, r.stderr
    assert "done: 3 frames" in r.stderr, r.stderr


# What ONNX Runtime 1.32 reads to keep its telemetry off (its library's strings): a CI's own
# variables too, which a test's environment may have and a service's has not.
_TELEMETRY_OFF = ("ORT_DISABLE_TELEMETRY", "ORT_RUNNING_UNIT_TESTS", "CI", "TF_BUILD",
                  "GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI", "TRAVIS", "JENKINS_URL",
                  "CODEBUILD_BUILD_ID", "BUILDKITE", "TEAMCITY_VERSION", "APPVEYOR",
                  "BITBUCKET_BUILD_NUMBER", "SYSTEM_TEAMFOUNDATIONCOLLECTIONURI")


def test_a_run_with_a_writable_home_leaves_it_as_it_was(tmp_path, onnx_model):
    """A 35-minute soak of `sharpen run` as a service found
    ~/.cache/Microsoft/DeveloperTools/.onnxruntime/{deviceid,onnxruntime.db} in its user's
    home: ONNX Runtime 1.32's telemetry, on at its import, keeps an ID and its events there
    for Microsoft's collector, where the README says a run writes only to --out and --stats.
    The run (command line or Python) turns it off, unless ORT_DISABLE_TELEMETRY says
    otherwise."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("XDG_CACHE_HOME", "SHARPEN_DEBUG", *_TELEMETRY_OFF)}
    env.update(HOME=str(home), PYTHONPATH=str(REPO))
    bare = subprocess.run([sys.executable, "-c", "import onnxruntime"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert bare.returncode == 0, bare.stderr
    if not any(home.iterdir()):
        pytest.skip("this ONNX Runtime build writes nothing in HOME (no 1DS telemetry)")
    shutil.rmtree(home / ".cache")
    video = tmp_path / "in.mp4"
    write_video(video, n=3)
    r = subprocess.run([sys.executable, "-m", "runtime.cli", "run", "--model", str(onnx_model),
                        "--source", str(video), "--out", str(tmp_path / "out.mp4"),
                        "--threads", "1"],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert list(home.iterdir()) == [], sorted(str(p) for p in home.rglob("*"))
    api = ("import sys; from runtime import run_stream; "
           "run_stream(sys.argv[1], sys.argv[2], sys.argv[3], threads=1, quiet=True)")
    r = subprocess.run([sys.executable, "-c", api, str(onnx_model), str(video),
                        str(tmp_path / "api.mp4")],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert list(home.iterdir()) == [], sorted(str(p) for p in home.rglob("*"))
    # `sharpen models FILE` opens it with ONNX Runtime outside the run's backend
    r = subprocess.run([sys.executable, "-m", "sharpen", "models", str(onnx_model)], env=env,
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert list(home.iterdir()) == [], sorted(str(p) for p in home.rglob("*"))


def test_what_a_library_says_at_import_is_kept_where_no_temp_file_can_be_made(capfd):
    """The window that hides ONNX Runtime's telemetry line keeps what fd 2 gets in a temp file;
    where none can be made (`docker run --read-only`, no tmpfs on /tmp) it hid everything said
    meanwhile, a library's explanation of its failure to load too. It is kept in memory
    instead (Linux), or not hidden at all."""
    import re
    import tempfile

    from runtime.console import quiet_native_stderr
    was, tempfile.tempdir = tempfile.tempdir, "/proc"   # no file can be made there, by root too
    try:
        with quiet_native_stderr(re.compile("noise")):
            os.write(2, b"noise\nlibcudart.so.12: cannot open shared object file\n")
    finally:
        tempfile.tempdir = was   # before pytest's own capture needs one
    err = capfd.readouterr().err
    assert "cannot open shared object file" in err
    if hasattr(os, "memfd_create"):
        assert "noise" not in err


def _trt_options(cache_root):
    # The TensorRT version pinned: by default the folder also names the libnvinfer found here,
    # so on a host with TensorRT (a Jetson) the folder these tests expect was another one.
    from runtime.backends.onnxruntime_backend import trt_provider_options
    return trt_provider_options(cache_root, "c" * 64, "input", 8, int8=False,
                                trt_version="100300")


def test_a_tensorrt_cache_that_cannot_be_made_is_said_with_the_variable_that_moves_it(tmp_path):
    """ORT's TensorRT provider went on without its engine cache where the folder could not be
    made (a container's read-only home), without a word: every start then built the engine
    again, minutes on a Jetson, and nothing said why or how to keep it."""
    from runtime import SharpenWarning
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.warns(SharpenWarning) as said:
        opts = _trt_options(blocker / "trt")
    assert "trt_engine_cache_path" not in opts and opts["trt_profile_min_shapes"]
    (line,) = [str(w.message) for w in said]
    assert f"cannot make {blocker / 'trt' / ('c' * 16)}-trt100300 (" in line, line
    assert "every start builds it again" in line and "SHARPEN_TRT_CACHE" in line, line
    opts = _trt_options(tmp_path / "trt")   # a folder that can be made: cached, as before
    assert opts["trt_engine_cache_path"] == str(tmp_path / "trt" / f"{'c' * 16}-trt100300")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork (POSIX)")
def test_a_user_without_a_home_gets_the_cache_variable_named(tmp_path):
    """`docker run --user 1234` with no HOME: a user id without an /etc/passwd entry, for which
    Path.home() raised RuntimeError("Could not determine home directory."), named neither the
    cache nor XDG_CACHE_HOME. Root becomes such a user in a child; others cannot."""
    import pwd
    if os.geteuid() != 0:
        pytest.skip("becoming a user without a passwd entry needs root")
    uid = next(u for u in range(54321, 60000) if not _has_passwd_entry(pwd, u))
    def work(said: dict) -> None:
        from runtime.cache import cache_dir
        os.environ.pop("HOME", None)
        os.environ.pop("XDG_CACHE_HOME", None)
        try:
            os.setgid(uid)
            os.setuid(uid)
        except PermissionError:   # root of a container without CAP_SETUID
            said["skip"] = True
            return
        said["path"] = str(cache_dir("trt"))   # or its error, reported by in_a_child

    said = in_a_child(work)
    if said.get("skip"):
        pytest.skip("root here cannot become another user")
    assert said.get("error", "").startswith("OSError: no folder for sharpen's trt cache: HOME "
                                            f"is not set and user id {uid} has no "
                                            "home directory"), said
    assert "XDG_CACHE_HOME" in said["error"], said


def _has_passwd_entry(pwd, uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def test_a_container_run_writes_only_into_its_out_folder(tmp_path, onnx_model):
    """README "Container / runtime-only install": with no HOME, a working folder that cannot be
    written (/proc, even for root) and the model and source in folders of their own, a run and
    a stream stopped as `docker stop` stops it leave those folders as they were, writing only
    into the folder of --out and --stats."""
    import signal
    import time
    env = _container_env(tmp_path)
    models, data, out = tmp_path / "models", tmp_path / "data", tmp_path / "out"
    for d in (models, data, out):
        d.mkdir()
    model = shutil.copy(onnx_model, models / "student.onnx")
    write_video(data / "in.mp4", n=4)
    before = {p: sorted(os.listdir(p)) for p in (models, data)}
    argv = [sys.executable, "-m", "runtime.cli", "run", "--model", str(model), "--source",
            str(data / "in.mp4"), "--out", str(out / "in.mp4"), "--stats", str(out / "s.json")]
    r = subprocess.run(argv, env=env, cwd="/proc", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == ["in.mp4", "s.json"]
    # `docker stop`: SIGTERM, which the run takes as a clean stop (exit 143, 128 + 15).
    # As a container's PID 1 where root can make one (SIGTERM then has no default action: only
    # a handler stops it), else as any process.
    pid1 = os.geteuid() == 0 and shutil.which("unshare") is not None
    live = subprocess.Popen([*(["unshare", "--pid", "--fork"] if pid1 else []), *argv[:6],
                             "--source", "synthetic:64x48@20", "--out", str(out / "live.ts")],
                            env=env, cwd="/proc", stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    target = live.pid
    if pid1:   # the command is unshare's child; unshare exits with its status
        children = Path(f"/proc/{live.pid}/task/{live.pid}/children").read_text().split()
        assert len(children) == 1, children
        target = int(children[0])
    os.kill(target, signal.SIGTERM)
    _, err = live.communicate(timeout=60)
    assert live.returncode == 143, err
    assert "output closed cleanly" in err, err
    assert {p: sorted(os.listdir(p)) for p in (models, data)} == before
    assert (out / "live.ts").stat().st_size > 0


def _cgroup_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.mark.parametrize("membership,files,cpus", [
    # cgroup v2 in a container (its own cgroup is the mount's root): docker run --cpus 2
    ("0::/\n", {"cpu.max": "200000 100000\n"}, 2.0),
    ("0::/\n", {"cpu.max": "max 100000\n"}, None),
    # v2 on a host: a pod's limit above the container's folder counts, the least one wins
    ("0::/kubepods/pod1/ctr\n", {"kubepods/cpu.max": "max 100000\n",
                                 "kubepods/pod1/cpu.max": "150000 100000\n",
                                 "kubepods/pod1/ctr/cpu.max": "400000 100000\n"}, 1.5),
    # the host's path named inside a container, where only the mount's root is there
    ("0::/docker/abc\n", {"cpu.max": "50000 100000\n"}, 0.5),
    # cgroup v1 (one folder per controller), as Docker on older hosts
    ("4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n",
     {"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
      "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "300000\n",
      "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n"}, 3.0),
    ("1:cpu:/\n", {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ("0::/\n", {}, None),
])
def test_a_cgroup_cpu_limit_is_read_as_the_cpus_it_gives(tmp_path, membership, files, cpus):
    """`docker run --cpus 2` or a Kubernetes CPU limit leaves every core in the affinity mask
    and limits the time on them: usable_cores() counted the node's cores."""
    from runtime.host import cgroup_cpu_limit
    root = _cgroup_tree(tmp_path / "cgroup", files)
    (tmp_path / "cgroup").mkdir(exist_ok=True)
    (tmp_path / "self").write_text(membership)
    assert cgroup_cpu_limit(root, tmp_path / "self") == cpus


def test_a_cgroup_folder_that_cannot_be_looked_into_leaves_the_mounts_limit(tmp_path):
    """Path.is_dir raised where the process's cgroup folder could not be looked up (a folder
    above it this user may not search, EACCES): usable_cores() then failed every LiteRT run and
    thread warning. It is read as a folder that is not there: the mount's own limit counts. A
    name too long for the file system (ENAMETOOLONG) stands in, as root searches any folder."""
    from runtime.host import cgroup_cpu_limit
    root = _cgroup_tree(tmp_path / "cgroup", {
        "cpu.max": "200000 100000\n", "cpu,cpuacct/cpu.cfs_quota_us": "300000\n",
        "cpu,cpuacct/cpu.cfs_period_us": "100000\n"})
    for membership, cpus in (("0::/", 2.0), ("4:cpu,cpuacct:/", 3.0)):
        (tmp_path / "self").write_text(membership + "x" * 300 + "\n")
        assert cgroup_cpu_limit(root, tmp_path / "self") == cpus, membership


def test_usable_cores_and_the_thread_warning_follow_a_cpu_limit(tmp_path, monkeypatch,
                                                                no_cpu_limit):
    """Under a 1-CPU limit two threads oversubscribe it: OMP_NUM_THREADS=2 is warned of there,
    as it is where taskset leaves one core."""
    from runtime import host
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if cores < 2:
        pytest.skip("one core here: a 1-CPU limit changes nothing")
    root = _cgroup_tree(tmp_path / "cgroup", {"cpu.max": "100000 100000\n"})
    (tmp_path / "self").write_text("0::/\n")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert host.usable_cores() == cores and host.threads_warning(None, "--threads") == ""
    monkeypatch.setattr(host, "CGROUP_ROOT", root, raising=False)
    monkeypatch.setattr(host, "CGROUP_MEMBERSHIP", tmp_path / "self", raising=False)
    assert host.usable_cores() == 1
    assert host.threads_warning(None, "--threads").startswith(
        "OMP_NUM_THREADS=2 (the thread count when --threads is not given) is more than the 1 "
        "CPU core this process may use")
    (root / "cpu.max").write_text("150000 100000\n")   # 1.5 CPUs: two threads fit, rounded up
    assert host.usable_cores() == 2


@pytest.mark.parametrize("direct_url,hint", [
    ({"url": "file:///src", "dir_info": {}},
     "pip install '/src[train]' (the checkout this was installed from"),
    ({"url": "file:///home/me/my%20clone", "dir_info": {"editable": True}},
     "pip install -e '/home/me/my clone[train]' (the checkout this was installed from"),
    ({"url": "file:///tmp/image_sharpening_kd-0.1.0-py3-none-any.whl",
      "archive_info": {"hashes": {}}}, "pip install '.[train]' in a checkout of the project"),
    (None, "pip install '.[train]' in a checkout of the project"),
])
def test_a_missing_extra_is_installed_from_where_the_project_came_from(tmp_path, monkeypatch,
                                                                      direct_url, hint):
    """`sharpen models` in a runtime-only image said `pip install 'image-sharpening-kd[train]'`:
    the project is not on PyPI, so pip found nothing there (or another's package). Its
    distribution here, as pip records it (direct_url.json), says where it came from."""
    import json
    from runtime.cli_errors import missing_dependency
    info = tmp_path / "image_sharpening_kd-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: image-sharpening-kd\n"
                                   "Version: 0.1.0\n")
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))
    monkeypatch.syspath_prepend(str(tmp_path))   # found before the install running the tests
    said = missing_dependency("models", ModuleNotFoundError("No module named 'torch'",
                                                            name="torch"))
    assert said.startswith("missing dependency 'torch': `sharpen models` needs the 'train' "
                           f"extra: {hint}"), said
    assert "'image-sharpening-kd[" not in said


@pytest.mark.parametrize("umask", [0o077, 0o002])
def test_outputs_take_the_umask_as_any_new_file_does(tmp_path, onnx_model, umask):
    """Every output was made 0644 whatever the umask: a camera service run with systemd's
    `UMask=0077` (or a container's) still left its recordings readable by every user of the
    box, and a shared volume's 0002 lost the group's write."""
    import cv2
    from runtime.pipeline import run_stream
    from runtime_fixtures import textured_frame
    video = tmp_path / "in.mp4"
    write_video(video, n=3)
    image = tmp_path / "in.png"
    cv2.imwrite(str(image), textured_frame(0))
    out = tmp_path / "out"
    old = os.umask(umask)
    try:
        run_stream(str(onnx_model), str(video), str(out / "v.mp4"), stats_path=out / "s.json")
        run_stream(str(onnx_model), str(video), str(out / "frames"))
        run_stream(str(onnx_model), str(image), str(out / "one.png"))
    finally:
        os.umask(old)
    made = [out / "v.mp4", out / "s.json", out / "one.png", *(out / "frames").iterdir()]
    assert len(made) == 6
    for f in made:
        assert oct(f.stat().st_mode & 0o777) == oct(0o666 & ~umask), f


# A process that holds `sharpen run`'s lock of the output argv[1] until its stdin closes, or
# says, as the second run would be, that another holds it.
_HOLD_OUTPUT = """
import sys
from runtime.run_lock import RunLocked, output_lock
try:
    with output_lock(sys.argv[1], "--out " + sys.argv[1], "--out"):
        print("held", flush=True)
        sys.stdin.read()
except RunLocked as e:
    print("refused:", e, flush=True)
"""


def _lock_holder(prefix: list, out: Path, umask: int = 0o022) -> subprocess.Popen:
    holder = subprocess.Popen([*prefix, sys.executable, "-c", _HOLD_OUTPUT, str(out)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)},
                              preexec_fn=lambda: os.umask(umask))
    assert holder.stdout.readline() == "held\n", holder.communicate(timeout=60)
    return holder


def _second_run(prefix: list, out: Path) -> str:
    return subprocess.run([*prefix, sys.executable, "-c", _HOLD_OUTPUT, str(out)],
                          input="", capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)}).stdout


@pytest.mark.parametrize("own_root", ["tmpfs", "bind"])
def test_a_mounted_output_folder_is_locked_where_another_container_sees_it(tmp_path, own_root):
    """Two containers given one volume as their image folder (`-v ./frames:/out ... --out
    /out`) both wrote frames into it, numbering on over each other's: the folder's lock was
    `/.out.lock`, beside it in each container's own root, which the other never sees. A folder
    that is a mount point is locked inside it. The containers' own roots are tmpfs mounts in
    mount namespaces of their own, each with the one shared folder bound at out/; or folders
    of the volume's file system bound there, where the volume is no other device."""
    import shutil
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("mount namespaces need root and unshare")
    shared, root = tmp_path / "volume", tmp_path / "root"
    shared.mkdir()
    root.mkdir()
    container = ["unshare", "--mount", "sh", "-c",
                 ("mount -t tmpfs none" if own_root == "tmpfs" else
                  f"mount --bind $(mktemp -d -p {tmp_path})") + f" {root} && mkdir {root}/out && "
                 f"mount --bind {shared} {root}/out && exec \"$@\"", "container"]
    if subprocess.run([*container, "true"], capture_output=True).returncode:
        pytest.skip("no mount namespace here (a container without CAP_SYS_ADMIN)")
    first = _lock_holder(container, root / "out")
    try:
        said = _second_run(container, root / "out")
    finally:
        first.communicate(timeout=60)
    assert said.startswith(f"refused: --out {root}/out: another run is sharpening into it "
                           f"(process {first.pid}, which holds {root}/out/.sharpen-run.lock)"
                           ), said
    assert not list(shared.iterdir())   # the lock file goes with the run
    # A stopped run's record goes there too: the next container finds it to --resume.
    where = subprocess.run([*container, sys.executable, "-c", "import sys; from runtime.resume "
                            "import record_path; print(record_path(sys.argv[1]))",
                            str(root / "out")], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
    assert where.stdout == f"{root}/out/.sharpen-run.resume.json\n", where


def test_a_runs_lock_refuses_another_users_run_under_umask_0077():
    """A camera service under systemd's `UMask=0077` made its output's lock file owner-only:
    another user's run into the same --out (a shared folder) could not open it to see the
    lock held, took that for a folder it cannot write a lock file in, and ran unlocked beside
    the service. The lock file is readable by all, whatever the umask: it holds a process id.
    Root becomes user nobody in a child, which tries the lock this process holds."""
    import shutil
    import tempfile
    from runtime.run_lock import RunLocked, output_lock
    if os.geteuid() != 0:
        pytest.skip("a second user needs root")
    shared = Path(tempfile.mkdtemp(prefix="shared-", dir="/tmp"))   # pytest's is root's only
    try:
        os.chmod(shared, 0o777)
        out = shared / "cam.mp4"
        old = os.umask(0o077)
        try:
            held = output_lock(out, f"--out {out}", "--out")
            held.__enter__()
        finally:
            os.umask(old)

        def work(said: dict) -> None:   # the other user
            try:
                os.setgid(65534)
                os.setuid(65534)
            except PermissionError:   # root of a container without CAP_SETUID
                said["skip"] = True
                return
            try:
                with output_lock(out, f"--out {out}", "--out"):
                    said["held"] = True
            except RunLocked as e:
                said["refused"] = str(e)

        try:
            said = in_a_child(work)
        finally:
            held.__exit__(None, None, None)
    finally:
        shutil.rmtree(shared)
    if said.get("skip"):
        pytest.skip("root here cannot become another user")
    assert said.get("refused", "").startswith(
        f"--out {out}: another run is sharpening into it (process {os.getpid()}, which holds "
        f"{shared}/.cam.mp4.lock)"), said


def test_a_recording_a_killed_container_left_is_kept_aside_by_the_next(tmp_path, onnx_model):
    """A container's run is process 1, and so is the next one's after a kill (`docker kill`,
    the OOM killer, a power cut under `--restart always`): the recording the killed one left
    under its hidden name, which holds that process number, was taken for this live process's
    own and stayed hidden for good, one more a kill, where a run elsewhere keeps it aside and
    says so. The run holding the output's lock knows no other run writes into it: a hidden
    recording under its own number that it did not make is a killed run's. The killed run is
    its leftover here, named with this process's number, as a container's run finds it."""
    import cv2
    from runtime.pipeline import run_stream
    from runtime.video_sink import fourcc_for
    from runtime.warn import SharpenWarning
    from runtime_fixtures import FRAME_H, FRAME_W, textured_frame
    out = tmp_path / "cam.ts"
    left = tmp_path / f".cam.{os.getpid()}.k1ll3d00.partial.ts"
    vw = cv2.VideoWriter(str(left), cv2.VideoWriter.fourcc(*fourcc_for(out)), 10,
                         (FRAME_W, FRAME_H))
    for i in range(20):
        vw.write(textured_frame(i % 8))
    vw.release()
    video = tmp_path / "in.mp4"
    write_video(video, n=3)
    with pytest.warns(SharpenWarning, match=rf"a recording into it was cut \(its process, "
                                            rf"{os.getpid()}, was killed"):
        run_stream(str(onnx_model), str(video), str(out))
    assert not left.exists()
    (kept,) = tmp_path.glob("cam.interrupted-*.ts")
    assert kept.stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["cam.ts", kept.name, "in.mp4"])


def test_an_image_a_killed_container_was_writing_is_removed_by_the_next(tmp_path, onnx_model):
    """As a recording's: the image a container's run (process 1) was writing when killed,
    under its hidden temp name holding that number, was taken for the next run's own (process
    1 too) and stayed, one more a kill, where a run elsewhere removes it. Under the folder's
    lock it is a killed run's. Its leftover is named with this process's number here."""
    from runtime.pipeline import run_stream
    frames = tmp_path / "frames"
    frames.mkdir()
    left = frames / f".frame_000007.png.{os.getpid()}.k1ll3d00.png"
    left.write_bytes(b"half an image")
    video = tmp_path / "in.mp4"
    write_video(video, n=3)
    run_stream(str(onnx_model), str(video), str(frames))
    assert sorted(p.name for p in frames.iterdir()) == [f"frame_{i:06d}.png" for i in range(3)]


@pytest.fixture
def one_cpu_limit(tmp_path, monkeypatch):
    """This process under a 1-CPU cgroup limit (`docker run --cpus 1`) with no
    OMP_NUM_THREADS, on a host with at least two cores it may be scheduled on."""
    from runtime import host
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if cores < 2:
        pytest.skip("one core here: a 1-CPU limit changes nothing")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    root = _cgroup_tree(tmp_path / "cgroup", {"cpu.max": "100000 100000\n"})
    (tmp_path / "self").write_text("0::/\n")
    monkeypatch.setattr(host, "CGROUP_ROOT", root, raising=False)
    monkeypatch.setattr(host, "CGROUP_MEMBERSHIP", tmp_path / "self", raising=False)
    return root


def test_onnxruntime_runs_a_cgroup_cpu_limits_threads(one_cpu_limit, onnx_model, tmp_path,
                                                      capsys):
    """ONNX Runtime's default thread count follows the affinity mask, not a CPU quota: under
    `--cpus 2` on a 64-core host it ran 64 threads, which the kernel throttled, while LiteRT
    already ran 2. Without --threads or OMP_NUM_THREADS it now runs the limit's count, which
    the run says once and the stats record; --threads still wins."""
    from runtime.backends import load_backend
    backend = load_backend(onnx_model)
    assert backend.session.get_session_options().intra_op_num_threads == 1
    assert backend.threads == 1
    given = load_backend(onnx_model, threads=2)
    assert given.session.get_session_options().intra_op_num_threads == 2
    (one_cpu_limit / "cpu.max").write_text("max 100000\n")   # no limit: ORT's own default
    assert load_backend(onnx_model).session.get_session_options().intra_op_num_threads == 0
    (one_cpu_limit / "cpu.max").write_text("100000 100000\n")

    frames = tmp_path / "in.mp4"
    write_video(frames, n=2)
    stats = tmp_path / "stats.json"
    assert run_cli(["run", "--model", str(onnx_model), "--source", str(frames),
                    "--out", str(tmp_path / "out.mp4"), "--stats", str(stats)]) == 0
    err = capsys.readouterr().err
    assert err.count("note: a CPU limit of 1 CPU (cgroup) is in force: ONNX Runtime and "
                     "LiteRT run 1 thread (--threads N or OMP_NUM_THREADS to change)") == 1, err
    import json
    assert json.loads(stats.read_text())["threads"] == 1


def test_torch_runs_a_cgroup_cpu_limits_threads(one_cpu_limit, monkeypatch):
    """PyTorch's default (all the cores of the affinity mask) ignored a CPU quota as ONNX
    Runtime did: `teacher`, `labels`, `distill`/`train` and `evaluate` of checkpoints ran a
    thread per host core under `--cpus 2`. set_torch_threads, which each calls, takes the
    limit's count unless --threads gives one, and says so once."""
    import torch

    from distill.teacher import set_torch_threads
    before = torch.get_num_threads()
    said: list[str] = []
    try:
        torch.set_num_threads(2)
        assert set_torch_threads(0, said.append) == 1 == torch.get_num_threads()
        assert said == ["note: a CPU limit of 1 CPU (cgroup) is in force: PyTorch runs 1 "
                        "thread (--threads N or OMP_NUM_THREADS to change)"]
        said.clear()
        assert set_torch_threads(2, said.append) == 2 and said == []   # --threads wins
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert set_torch_threads(0, said.append) == 2 and said == []   # and the variable
    finally:
        torch.set_num_threads(before)


def test_train_from_python_runs_a_cgroup_cpu_limits_threads(one_cpu_limit, tmp_path, capsys):
    """Only the commands applied a CPU limit to PyTorch's threads: `distill.trainer.train`
    called from Python ran a thread per host core under `--cpus 1`. It now runs the limit's
    count where the caller left torch at its default, says so once, and gives the caller's
    count back afterwards; a count the caller set is kept."""
    import torch

    from distill.checkpoint import read_checkpoint
    from distill.config import load_config
    from distill.trainer import train

    def cfg(out):
        return load_config(None, [
            f"out={out}", "task=teacher", "model.arch=fast",
            "model.args={width: 8, blocks: 1, low_blocks: 1}", "optim.steps=1",
            "optim.warmup_steps=1", "data.crop=32", "data.batch_size=2", "data.workers=0",
            "data.val_max_images=1", "data.val_max_side=64"])

    before = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0))
    try:
        torch.set_num_threads(cores)                  # torch's own default
        train(cfg(tmp_path / "a"))
        ran = read_checkpoint(tmp_path / "a" / "last.pt")["environment"]["torch_threads"]
        assert ran == 1
        assert torch.get_num_threads() == cores
        assert capsys.readouterr().err.count(
            "note: a CPU limit of 1 CPU (cgroup) is in force: PyTorch runs 1 thread") == 1
        # The caller's own count (one above the cores: a count the default is not, on any
        # host; the check ran only on hosts of three cores or more)
        torch.set_num_threads(cores + 1)
        train(cfg(tmp_path / "b"), quiet=True)
        ran = read_checkpoint(tmp_path / "b" / "last.pt")["environment"]["torch_threads"]
        assert ran == cores + 1 and torch.get_num_threads() == cores + 1
    finally:
        torch.set_num_threads(before)



def test_train_takes_torchs_default_on_a_host_of_two_threads_a_core(one_cpu_limit, tmp_path,
                                                                      monkeypatch):
    """PyTorch's default is a thread per physical core: on a host of 32 cores, 64 CPUs (SMT, as
    most cloud machines), it ran 32, which default_torch_threads took for a count the caller
    set, so the CPU limit never applied there. Here every CPU is a thread of one core."""
    import torch

    from distill import teacher
    cpus = sorted(os.sched_getaffinity(0))
    for cpu in cpus:
        topology = tmp_path / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text("0\n")
        (topology / "core_id").write_text("0\n")
    monkeypatch.setattr(teacher, "CPU_TOPOLOGY", tmp_path, raising=False)
    before = torch.get_num_threads()
    notes = []
    try:
        torch.set_num_threads(1)   # torch's own default on that host: one core
        with teacher.default_torch_threads(notes.append):
            assert torch.get_num_threads() == 1
        assert notes == ["note: a CPU limit of 1 CPU (cgroup) is in force: PyTorch runs 1 "
                         "thread (--threads N or OMP_NUM_THREADS to change)"], notes
    finally:
        torch.set_num_threads(before)


def test_torchs_default_is_a_thread_per_cpu_or_per_core():
    """What default_torch_threads takes for torch's default, checked against a fresh torch."""
    from distill.teacher import physical_cores
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",
                                                              "MKL_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                          capture_output=True, text=True, env=env, timeout=120)
    cpus = sorted(os.sched_getaffinity(0))
    assert int(done.stdout) in (len(cpus), physical_cores(cpus)), (done.stdout, cpus)


def test_train_gives_the_callers_threads_back_when_the_note_raises(one_cpu_limit):
    """The count went back in a `finally` that the note was outside: a `say` that raised (a
    closed stderr) left torch on the limit's count."""
    import torch

    from distill.teacher import default_torch_threads

    def closed(note):
        raise BrokenPipeError(32, "Broken pipe")

    before = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0))
    try:
        torch.set_num_threads(cores)
        with pytest.raises(BrokenPipeError):
            with default_torch_threads(closed):
                pass
        assert torch.get_num_threads() == cores
    finally:
        torch.set_num_threads(before)

_UNDER_A_MEMORY_LIMIT = """
import re, resource, sys
from {module} import main
import cv2, numpy, onnxruntime  # noqa: F401 - loaded before the limit, as a run has them
status = open("/proc/self/status").read()
vm = int(re.search(r"VmSize:\\s+(\\d+)", status).group(1)) * 1024
# Room to load the model, start the threads and decode the frame, not for its float copy.
resource.setrlimit(resource.RLIMIT_AS, (vm + ({room} << 20), resource.RLIM_INFINITY))
sys.exit(main(sys.argv[1:]))
"""


def _under_a_memory_limit(room_mb: int = 300) -> str:
    """A program running `sharpen` with `room_mb` of address space above the loaded process."""
    from runtime_fixtures import cli_module
    return _UNDER_A_MEMORY_LIMIT.format(module=cli_module(), room=room_mb)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc: Linux")
def test_a_frame_too_big_for_the_memory_limit_is_named_with_what_to_change(tmp_path,
                                                                           onnx_model):
    """Under a memory limit (a 2 GB board, `docker run --memory`, `ulimit -v`) a 4K frame ended
    the run with `error: MemoryError: Unable to allocate 94.9 MiB for an array with shape (1, 3,
    2160, 3840)` (or OpenCV's `error: error: ... Insufficient memory`), which named neither the
    frame nor a way out. An 8K photo under a limit 300 MB above the loaded process stands in:
    its float copy alone is 400 MB, whole (--tile 0: without --tile it is tiled, and ran out
    of memory all the same, its 8-bit frames in and out and a band of tiles in float)."""
    import cv2
    import numpy as np
    photo = tmp_path / "big.png"
    cv2.imwrite(str(photo), np.full((4320, 7680, 3), 128, np.uint8))
    res = subprocess.run([sys.executable, "-c", _under_a_memory_limit(),
                          "run", "--model", str(onnx_model), "--source", str(photo),
                          "--out", str(tmp_path / "out.png"), "--quiet", "--tile", "0"],
                         env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"sharpen run: error: out of memory sharpening a 7680x4320 frame "
                           f"with {onnx_model}: "), res.stderr
    assert "--tile 512 runs the model on 512-pixel tiles" in last, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    # SHARPEN_DEBUG's traceback goes on to the allocation that failed: it ended at the rewrap.
    res = subprocess.run([sys.executable, "-c", _under_a_memory_limit(),
                          "run", "--model", str(onnx_model), "--source", str(photo),
                          "--out", str(tmp_path / "out.png"), "--quiet", "--tile", "0"],
                         env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
                              "SHARPEN_DEBUG": "1"},
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    assert "direct cause of the following exception" in res.stderr, res.stderr
    assert "in _sharpen" in res.stderr, res.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc: Linux")
def test_tile_sharpens_the_frame_that_ran_out_of_memory_under_the_same_limit(tmp_path,
                                                                            onnx_model):
    """What the out-of-memory message advises must work: `--tile 512` converted, padded and
    blended the whole frame in float (the 8K photo's 380 MiB float copy, then as much again
    to blend it in) and ran out of memory with 600 MB of room. Tile by tile, a band of tiles
    is all it holds beside the 8-bit frames in and out (95 MiB each)."""
    import cv2
    import numpy as np
    photo, out = tmp_path / "big.png", tmp_path / "out.png"
    cv2.imwrite(str(photo), np.full((4320, 7680, 3), 128, np.uint8))
    res = subprocess.run([sys.executable, "-c", _under_a_memory_limit(600),
                          "run", "--model", str(onnx_model), "--source", str(photo),
                          "--out", str(out), "--quiet", "--tile", "512"],
                         env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert cv2.imread(str(out)).shape == (4320, 7680, 3)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc: Linux")
def test_a_photo_too_big_to_decode_under_the_limit_is_said_as_out_of_memory(tmp_path,
                                                                          onnx_model):
    """An 8K photo that OpenCV could not decode under a memory limit ended with 'the decoder
    failed (... Insufficient memory ...)', exit 2 (a usage error, which a restart repeats): it
    is the out-of-memory line of encoding and sharpening, exit 1."""
    import cv2
    import numpy as np
    photo = tmp_path / "big.png"
    cv2.imwrite(str(photo), np.full((4320, 7680, 3), 128, np.uint8))
    res = subprocess.run([sys.executable, "-c", _under_a_memory_limit(60),
                          "run", "--model", str(onnx_model), "--source", str(photo),
                          "--out", str(tmp_path / "out.png"), "--quiet"],
                         env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith(
        f"sharpen run: error: {photo}: out of memory decoding it (7680x4320"), res.stderr


_CAPPED_AT_THE_WRITE = """
import re, resource, sys
from {module} import main
from runtime import image_sink
write = image_sink.ImageSink.write

def capped_write(self, *args, **kw):
    # Capped at the address space it holds once the frame is sharpened: room for a small
    # image's encoding, not for the PNG encoder's whole encoded file (as 1.5 GB an 8K photo's).
    vm = int(re.search(r"VmSize:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm, resource.RLIM_INFINITY))
    return write(self, *args, **kw)

image_sink.ImageSink.write = capped_write
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc: Linux")
@pytest.mark.parametrize("tile", [0, 256])
def test_a_png_too_big_to_encode_under_the_limit_is_said_as_out_of_memory(tmp_path, onnx_model,
                                                                        tile):
    """An 8000x8000 photo sharpened with --tile 512 under `prlimit --as` 1.5 GB ended with
    `error: cannot encode image y.png`, exit 2 (a usage error, which a restart repeats), naming
    neither memory nor a way out. It is the out-of-memory line the rest of the run gives:
    exit 1, the size and what ran out, and what to try."""
    import cv2
    import numpy as np
    photo, out = tmp_path / "noise.png", tmp_path / "out.png"
    cv2.imwrite(str(photo), np.random.default_rng(0).integers(0, 256, (2400, 3200, 3), np.uint8))
    res = subprocess.run([sys.executable, "-c",
                          _CAPPED_AT_THE_WRITE.format(module=cli_module()),
                          "run", "--model", str(onnx_model), "--source", str(photo),
                          "--out", str(out), "--quiet", *(["--tile", str(tile)] if tile else [])],
                         env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"sharpen run: error: out of memory encoding the 3200x2400 PNG {out}"), \
        res.stderr
    assert "JPEG" in last and "SHARPEN_MAX_PIXELS" in last, last
    assert ("--tile 512" in last) == (not tile), last
    assert not out.exists()


def test_the_run_reports_its_peak_memory(tmp_path, onnx_model):
    """Boards with 2-4 GB shared with the GPU are sized by a run's peak memory, which only
    /usr/bin/time told. The stats file and the done: line now give the process's peak resident
    memory: a 4K frame's float input and output alone (2 x 95 MiB) bound it from below."""
    import json

    import cv2
    import numpy as np
    photo = tmp_path / "uhd.png"
    cv2.imwrite(str(photo), np.full((2160, 3840, 3), 128, np.uint8))
    stats = tmp_path / "stats.json"
    res = subprocess.run([sys.executable, "-m", "runtime.cli", "run", "--model", str(onnx_model),
                          "--source", str(photo), "--out", str(tmp_path / "out.png"),
                          "--stats", str(stats), "--quiet"],
                         env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    peak = json.loads(stats.read_text())["peak_memory_mib"]
    assert peak > 2 * 3840 * 2160 * 3 * 4 / 2**20, peak
    assert f", 0 dropped, peak memory {peak:.0f} MiB (onnxruntime" in res.stderr, res.stderr


def test_the_bench_says_a_cpu_limit_set_its_runtimes_threads(one_cpu_limit):
    """The bench's summary line took any thread count it had not been given for
    OMP_NUM_THREADS's and read the variable, unset under a CPU limit: a KeyError."""
    from benchmarks.conftest import runtime_threads_line
    assert runtime_threads_line(0) == ("ONNX Runtime and LiteRT on 1 thread (a CPU limit of 1 "
                                       "(cgroup); --threads N sets another count)")
    assert runtime_threads_line(2) == "ONNX Runtime and LiteRT on 2 threads (--threads 2)"


def test_labels_says_a_cpu_limit_on_stderr_as_every_command(one_cpu_limit, tmp_path, capsys):
    """`sharpen labels` printed its CPU-limit note on stdout, among the labels it made, where
    every other command (and the README) says it on stderr."""
    import torch

    from sharpen.cli import main
    before = torch.get_num_threads()
    try:
        code = main(["labels", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "c")])
    finally:
        torch.set_num_threads(before)
    out, err = capsys.readouterr()
    assert code != 0 and "none" in err, err   # the data, not there: after the threads are set
    assert "CPU limit" not in out, out
    assert err.count("note: a CPU limit of 1 CPU (cgroup) is in force: PyTorch runs 1 thread")\
        == 1, err


def test_an_invalid_omp_num_threads_under_a_cpu_limit_says_the_limits_count(one_cpu_limit,
                                                                             onnx_model,
                                                                             monkeypatch):
    """OMP_NUM_THREADS=two is ignored with a warning that said ONNX Runtime and LiteRT "use
    their own default thread counts": under a CPU limit they use the limit's, which it now
    says."""
    from runtime.backends import load_backend
    from runtime_fixtures import runtime_warnings

    monkeypatch.setenv("OMP_NUM_THREADS", "two")
    with runtime_warnings() as said, load_backend(onnx_model) as b:
        assert b.threads == 1
    (line,) = [m for m in said if m.startswith("OMP_NUM_THREADS='two' is not a thread count")]
    assert line.endswith("ignored; ONNX Runtime and LiteRT run the 1 thread of a CPU limit of 1 "
                         "CPU (cgroup)"), line


def test_the_demos_threads_reach_every_stage_and_a_limit_is_said_once(one_cpu_limit,
                                                                       onnx_model, tmp_path):
    """`sharpen demo --threads N` ("training and inference") set PyTorch's count alone: the
    export's checks, the stream and the bench ran ONNX Runtime and LiteRT on their default,
    and under a CPU limit the bench stage said the limit's note again after the demo had. Each
    stage now gets the demo's count: --threads, else the limit's."""
    import json

    from sharpen.demo import _stream_stage, stage_threads
    assert stage_threads(0) == 1 and stage_threads(2) == 2
    (one_cpu_limit / "cpu.max").write_text("max 100000\n")   # no limit: each engine's own
    assert stage_threads(0) == 0
    clip = tmp_path / "in.mp4"
    write_video(clip, n=2)
    out = tmp_path / "d"
    out.mkdir()
    _stream_stage(str(onnx_model), clip, out, "clip", 2, quiet=True, threads=2)
    assert json.loads((out / "stream-stats.json").read_text())["threads"] == 2


def test_export_runs_pytorch_on_a_cpu_limits_threads_and_records_them(one_cpu_limit, tmp_path,
                                                                      capsys):
    """`sharpen export` was the one PyTorch command that kept torch's default (a thread per
    host core) under a CPU limit: its parity reference ran on it, and export_report.json's
    environment recorded that count beside settings' threads, the limit's. It now runs and
    records the limit's count, and says the limit once, as `sharpen bench` does."""
    import json

    import numpy as np
    import torch

    from distill.checkpoint import atomic_save, make_checkpoint
    from distill.images import write_image
    from distill.students import create_student
    from sharpen.cli import main
    torch.manual_seed(0)
    model = create_student("fast")
    weights = tmp_path / "s.pt"
    atomic_save(make_checkpoint(model, kind="student", arch="fast", arch_args=model.arch_args),
                weights)
    parity = tmp_path / "parity"
    parity.mkdir()
    write_image(parity / "a.png", np.random.default_rng(0).random((32, 48, 3), np.float32))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        rc = main(["export", "--weights", str(weights), "--formats", "onnx",
                   "--out", str(tmp_path / "x"), "--calib", str(parity),
                   "--parity-images", str(parity), "--no-latency", "--quiet"])
    finally:
        torch.set_num_threads(before)
    err = capsys.readouterr().err
    assert rc == 0, err
    report = json.loads((tmp_path / "x" / "export_report.json").read_text())
    assert report["settings"]["threads"] == report["environment"]["torch_threads"] == 1
    assert err.count("note: a CPU limit of 1 CPU (cgroup) is in force: ONNX Runtime, LiteRT "
                     "and PyTorch run 1 thread") == 1, err


def test_the_pytest_suite_runs_pytorch_on_a_cpu_limits_threads(one_cpu_limit, tmp_path):
    """`sharpen bench` set PyTorch to a CPU limit's count (its default counted the cores the
    quota leaves idle); `pytest benchmarks/`, which times the same rows, kept torch's default:
    one model, timed on two thread counts. The suite now runs the bench's count. In-process:
    the limit here is this process's (a subprocess would read the host's cgroup)."""
    import json

    import torch

    from distill.checkpoint import atomic_save, make_checkpoint
    from distill.students import create_student
    torch.manual_seed(0)
    model = create_student("fast")
    weights = tmp_path / "student-tiny.pt"
    atomic_save(make_checkpoint(model, kind="student", arch="fast", arch_args=model.arch_args),
                weights)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        rc = pytest.main([str(REPO / "benchmarks" / "test_latency.py"), "-q", "-p",
                          "no:cacheprovider", "-k", "test_student_latency and pytorch",
                          "--students", str(weights), "--sizes", "64x48",
                          "--cache", str(tmp_path / "cache"),
                          "--benchmark-json", str(tmp_path / "b.json")])
    finally:
        torch.set_num_threads(before)
    assert rc == 0
    [timed] = [b["extra_info"] for b in json.loads((tmp_path / "b.json").read_text())
               ["benchmarks"]]
    assert timed["provider"] == "CPU (1 thread)", timed
