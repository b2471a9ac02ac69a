"""Windows and macOS code paths, exercised here on Linux: each POSIX-only call has a branch for
the other systems, run directly (a platform argument, sys.platform set for the test, or a
module such as fcntl or resource made unimportable in a fresh interpreter)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from runtime.atomic import pid_alive, remove_killed_writes


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def test_windows_liveness_probe_never_signals_the_process(monkeypatch, tmp_path):
    """On Windows os.kill(pid, 0) is TerminateProcess: asked whether the run that owns a temp
    file still writes it, remove_killed_writes killed that run (or any process that had its pid
    since). There the process is queried instead; here, with no Windows API to query, it counts
    as alive and its file stays."""
    child = _sleeper()
    try:
        sent = []
        monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
        monkeypatch.setattr(sys, "platform", "win32")
        live = tmp_path / f".out.png.{child.pid}.abcd1234.png"
        live.write_bytes(b"half an image")
        assert remove_killed_writes(tmp_path) == []
        assert pid_alive(child.pid) is True
        monkeypatch.undo()
        assert sent == [], "a signal was sent to ask whether a process is alive"
        assert live.exists() and child.poll() is None
    finally:
        child.kill()
        child.wait()


def test_posix_liveness_probe_tells_a_dead_writer_from_a_live_one(tmp_path):
    child = _sleeper()
    try:
        assert pid_alive(child.pid, platform="linux") is True
    finally:
        child.kill()
        child.wait()
    assert pid_alive(child.pid, platform="darwin") is False
    left = tmp_path / f".out.png.{child.pid}.abcd1234.png"
    left.write_bytes(b"half an image")
    assert remove_killed_writes(tmp_path) == [left] and not left.exists()


@pytest.mark.parametrize("platform", ["linux", "win32"])
def test_a_temp_name_with_a_pid_no_process_can_have_is_left_alone(tmp_path, platform,
                                                                   monkeypatch):
    """A file named like a killed write's but with a pid past any system's (copied from
    elsewhere, or a user's own) stopped the cleanup with an OverflowError."""
    monkeypatch.setattr(sys, "platform", platform)
    odd = tmp_path / f".out.png.{2**64}.abcd1234.png"
    odd.write_bytes(b"not ours")
    assert pid_alive(2**64) is True and pid_alive(0) is True
    assert remove_killed_writes(tmp_path) == [] and odd.exists()


def _fresh_python(code: str, blocked: tuple[str, ...]) -> subprocess.CompletedProcess:
    """`code` run in a new interpreter where the modules `blocked` cannot be imported, as on a
    system that has none of them (fcntl and resource on Windows)."""
    prelude = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in blocked)
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_bench_memory_figures_on_a_system_without_the_resource_module():
    """Windows has no `resource` module: `sharpen bench` ended in ModuleNotFoundError after
    exporting, where it noted its peak memory. The report now leaves out what the system cannot
    say, and on Windows asks it for the peak working set."""
    from benchmarks.machine import peak_rss_mb

    assert peak_rss_mb() > 0                       # Linux: from resource
    assert peak_rss_mb(system="win32") is None     # no Windows API to ask here
    done = _fresh_python(
        "from benchmarks.machine import peak_rss_mb\n"
        "from benchmarks.report import _Progress\n"
        "assert peak_rss_mb() is None\n"
        "progress = _Progress()\n"
        "progress.note_peak('quality')\n"
        "print(progress.peak_mb)\n", blocked=("resource",))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{}"


def _image(path) -> None:
    import numpy as np

    from distill.images import write_image
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, np.full((40, 40, 3), 0.5, np.float32))


def _distinct_ignoring_case(names) -> bool:
    names = [str(n) for n in names]
    return len({n.casefold() for n in names}) == len(names)


def test_label_names_differ_on_a_case_insensitive_file_system(tmp_path):
    """A.png and a.jpg both live in one folder on macOS and Windows, whose file systems take
    labels/A.png and labels/a.png for one file: one image was labelled with the other's
    label, and trained on it. They keep their extensions, as a.png and a.jpg do."""
    from distill.data.sources import resolve_source

    for name in ("A.png", "a.jpg", "b.png"):
        _image(tmp_path / "shots" / name)
    names = sorted(s.name for s in resolve_source(tmp_path / "shots").samples)
    assert names == ["A.png", "a.jpg", "b"]
    assert _distinct_ignoring_case(names)


def test_corpus_and_teacher_output_names_differ_on_a_case_insensitive_file_system(tmp_path):
    """The corpus's pair names and `sharpen teacher`'s output names: A.jpg's and a.png's were
    A.png and a.png, one file where the photos are on a Mac."""
    from distill.teacher_command import _unique_png_names
    from distill.data.corpus import _names

    files = [tmp_path / "A.jpg", tmp_path / "a.png", tmp_path / "Trip_x" / "1.png",
             tmp_path / "trip" / "X_1.png"]
    pairs = _names(tmp_path, files)
    assert _distinct_ignoring_case(pairs.values()), pairs
    out = _unique_png_names([(f, f.relative_to(tmp_path)) for f in files[:2]]
                            + [(tmp_path / "B" / "c.png", Path("c.png")),
                               (tmp_path / "b" / "C.png", Path("C.png"))])
    assert _distinct_ignoring_case(rel for _, rel in out), out


@pytest.mark.slow
def test_training_loader_workers_start_under_spawn(tmp_path):
    """macOS and Windows start processes by 'spawn': the data set and the worker setup are
    pickled into each loader process, which a lambda or closure among them cannot be. Both
    training sets (a paired folder's crops; the embedded set blurred on the fly) train here
    with loader processes started that way."""
    import cv2
    import numpy as np

    from distill.images import write_image
    rng = np.random.default_rng(0)
    for i in range(2):
        sharp = rng.random((48, 48, 3)).astype(np.float32)
        write_image(tmp_path / "pairs" / "target" / f"p{i}.png", sharp)
        write_image(tmp_path / "pairs" / "input" / f"p{i}.png", cv2.blur(sharp, (5, 5)))
    common = ["train-teacher", "--quiet", "model.args={config: tiny}", "data.val=",
              "data.crop=32", "data.batch_size=1", "data.workers=1", "optim.warmup_steps=1",
              "optim.steps=3", "val_every=100000", "ckpt_every=100000"]
    runs = [[*common, f"out={tmp_path / 'pairs-run'}", f"data.train={tmp_path / 'pairs'}"],
            [*common, f"out={tmp_path / 'embedded-run'}", "data.train=embedded"]]
    script = tmp_path / "spawned.py"   # spawn re-imports the main module: a guarded file
    script.write_text(
        "import multiprocessing, sys\n"
        "if __name__ == '__main__':\n"
        "    multiprocessing.set_start_method('spawn')\n"
        "    from sharpen.cli import main\n"
        f"    for argv in {runs!r}:\n"
        "        code = main(argv)\n"
        "        if code:\n"
        "            sys.exit(code)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    from distill.checkpoint import read_checkpoint
    for run in ("pairs-run", "embedded-run"):
        assert read_checkpoint(tmp_path / run / "last.pt")["step"] == 3


def test_windows_paths_in_key_value_overrides_are_taken_as_written():
    """A path key's value is the text as written, quoted or not: read as YAML, the quoting the
    error message advised turned data.gt_train="C:\\new\\tmp" into a newline and a tab, and
    "C:\\Users\\me" into an error; unquoted, ' #' cut a path short as a YAML comment."""
    from distill.config import as_overrides, load_config

    cfg = load_config(None, [r'data.gt_train="C:\new\tmp"', r'data.val="C:\Users\me\val"',
                             r"data.labels=D:\shots #2\labels", r"out=\\server\share\runs\a",
                             "data.val_labels=null", "optim.lr=3e-4", "device='cpu'"])
    assert cfg.data.gt_train == r"C:\new\tmp"
    assert cfg.data.val == r"C:\Users\me\val"
    assert cfg.data.labels == r"D:\shots #2\labels"
    assert cfg.out == r"\\server\share\runs\a"
    assert cfg.data.val_labels == "" and cfg.optim.lr == 3e-4 and cfg.device == "cpu"
    # The command a run records for itself (as_overrides) still gives the same config.
    assert load_config(None, as_overrides(cfg)).to_dict() == cfg.to_dict()


def _recorded(sink, frames: int = 3) -> None:
    from runtime_fixtures import textured_frame
    for i in range(frames):
        sink.write(textured_frame(i), textured_frame(i), "f")


def test_a_video_that_cannot_replace_its_output_is_kept_under_a_visible_name(tmp_path,
                                                                             monkeypatch):
    """Windows refuses to replace a file another program holds open (the last run's video in
    a player): close() ended in a bare `[WinError 5] ... '.out.PID.x.partial.avi' ->
    'out.avi'`, the new video left under a hidden name that the next run took for a killed
    run's. It is kept beside the output, and the message says where and the likely cause."""
    import cv2

    from runtime.sinks import SinkError
    from runtime.video_sink import VideoFileSink

    def frames_in(path) -> int:
        cap, n = cv2.VideoCapture(str(path)), 0
        while cap.read()[0]:
            n += 1
        cap.release()
        return n

    out = tmp_path / "out.avi"
    out.write_bytes(b"the last run's video")
    sink = VideoFileSink(out, 10)
    _recorded(sink)
    real_replace = os.replace

    def held_open(src, dst):   # what Windows answers for a file open in a player
        if os.fspath(dst) == str(out):
            raise PermissionError(13, "Access is denied", str(src), None, str(dst))
        real_replace(src, dst)
    monkeypatch.setattr(os, "replace", held_open)
    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.raises(SinkError) as said:
        sink.close()
    monkeypatch.undo()
    kept = tmp_path / "out.new.avi"
    assert f"the new video is kept as {kept}" in str(said.value), said.value
    assert "open in another program" in str(said.value)
    assert out.read_bytes() == b"the last run's video" and frames_in(kept) == 3
    assert not list(tmp_path.glob(".*")), list(tmp_path.glob(".*"))

    # Linux refuses such a rename only for the folder's sake (a sticky /tmp, another user's
    # out.avi): a video player and Windows have nothing to do with it, and go unsaid.
    sink = VideoFileSink(out, 10)
    _recorded(sink)
    monkeypatch.setattr(os, "replace", held_open)
    with pytest.raises(SinkError) as said:
        sink.close()
    monkeypatch.undo()
    assert f"the new video is kept as {tmp_path / 'out.new-2.avi'}" in str(said.value)
    assert "Windows" not in str(said.value) and "player" not in str(said.value), said.value
    (tmp_path / "out.new-2.avi").unlink()

    # Any system: a folder put in the output's place (a real rename failure here).
    out.unlink()
    out.mkdir()
    (out / "x").write_bytes(b"")
    sink = VideoFileSink(out, 10)
    _recorded(sink, 2)
    with pytest.raises(SinkError) as said:
        sink.close()
    kept = tmp_path / "out.new-2.avi"
    assert f"the new video is kept as {kept}" in str(said.value), said.value
    assert "open in another program" not in str(said.value) and frames_in(kept) == 2


def test_printed_commands_quote_as_the_windows_shells_read_them(monkeypatch):
    """The next-step commands the tools print (and train.log's command to run again) were
    shlex-quoted: cmd.exe keeps single quotes as part of a word, so a pasted
    `--data 'C:\\Users\\me\\my corpus'` named a folder that does not exist. On Windows they
    are double-quoted as its programs (and PowerShell) read them; elsewhere shlex's, as ever."""
    import shlex

    from distill.corpus_command import _corpus_next_step
    from distill.dist import launch_command
    from runtime.console import shell_join

    corpus = r"C:\Users\me\my corpus"
    words = ["sharpen", "run", "--model", r"C:\my models\a.onnx", "model.args={width: 8}", ""]
    assert shlex.split(shell_join(words, "linux")) == words
    assert shell_join(words, "win32") == (r'sharpen run --model "C:\my models\a.onnx" '
                                          r'"model.args={width: 8}" ""')
    posix = _corpus_next_step(corpus)
    assert f"--data {shlex.quote(corpus)}" in posix, posix
    monkeypatch.setattr(sys, "platform", "win32")
    said = _corpus_next_step(corpus)
    assert f'--data "{corpus}" --out "{corpus}-labels"' in said and "'" not in said, said
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    line = launch_command(["sharpen", "train", rf"out={corpus}\run"])
    assert line == rf'sharpen train "out={corpus}\run"', line


@pytest.mark.slow
def test_training_without_fcntl_runs_unlocked_and_still_refuses_a_file_as_out(tmp_path):
    """Windows has no fcntl: the out folder's lock is skipped there, and so were the checks
    of out= that came with it: an out= naming a file ended in the trainer's FileExistsError
    traceback. A run in a folder trains as ever."""
    import cv2
    import numpy as np

    from distill.images import write_image
    rng = np.random.default_rng(0)
    for i in range(2):
        sharp = rng.random((48, 48, 3)).astype(np.float32)
        write_image(tmp_path / "pairs" / "target" / f"p{i}.png", sharp)
        write_image(tmp_path / "pairs" / "input" / f"p{i}.png", cv2.blur(sharp, (5, 5)))
    (tmp_path / "notes.txt").write_text("mine")
    common = ["train-teacher", "--quiet", "model.args={config: tiny}", "data.val=",
              f"data.train={tmp_path / 'pairs'}", "data.crop=32", "data.batch_size=1",
              "data.workers=0", "optim.warmup_steps=1", "optim.steps=2"]
    into_file, into_folder = f"out={tmp_path / 'notes.txt'}", f"out={tmp_path / 'run'}"
    code = ("from sharpen.cli import main\n"
            f"print('rc', main({[*common, into_file]!r}))\n"
            f"print('rc', main({[*common, into_folder]!r}))\n")
    done = _fresh_python(code, blocked=("fcntl",))
    assert done.returncode == 0, done.stderr[-3000:]
    codes = [ln for ln in done.stdout.splitlines() if ln.startswith("rc ")]
    assert codes == ["rc 2", "rc 0"], (done.stdout, done.stderr[-3000:])
    assert "Traceback" not in done.stderr
    assert f"out={tmp_path / 'notes.txt'} is a file; a run's out= is a folder" in done.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert (tmp_path / "run" / "last.pt").is_file() and not (tmp_path / "run" / ".lock").exists()


def test_free_disk_space_is_known_without_statvfs(tmp_path):
    """Windows has no os.statvfs: free_bytes said "cannot say" there, so a recording that
    filled the disk (OpenCV's writer drops what does not fit, silently) ended as a success."""
    import shutil

    from runtime.video_sink import free_bytes

    free = free_bytes(tmp_path, system="win32")
    assert free is not None and abs(free - shutil.disk_usage(tmp_path).free) < 1 << 30
    assert free_bytes(tmp_path / "gone", system="win32") is None


def test_a_forward_slash_path_is_a_path_on_windows_too(monkeypatch, tmp_path):
    """Windows takes '/' as a separator as well as its os.sep, '\\': `--weights runs/fast`
    (a run's folder, as PowerShell users type it) was looked up as a shipped model's name and
    refused as "neither a file nor a shipped model", not as the folder it is."""
    from distill.teacher import resolve_weights

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "fast").mkdir(parents=True)
    monkeypatch.setattr(os, "sep", "\\")
    assert resolve_weights("runs/fast") == Path("runs/fast")
    assert resolve_weights("runs\\fast") == Path("runs\\fast")


def test_an_image_urls_output_name_is_one_windows_can_write():
    """`sharpen run https://host/a%3Ab.jpg` named its output after the URL's file, a:b.jpg:
    on Windows an alternate stream of a file `a`, not an image; nul.jpg is a device there."""
    from runtime.url_image import url_image_name

    assert url_image_name("https://host/img/photo.jpg?w=800") == "photo.jpg"
    assert url_image_name("https://host/shots/a%3Ab%3F%2A.jpg") == "a_b__.jpg"
    assert url_image_name("https://host/x%5Cy.png") == "y.png"
    assert url_image_name("https://host/nul.jpg") == "_nul.jpg"
    assert url_image_name("https://host/live.mjpg") is None


def test_a_runs_equivalent_command_names_its_non_ascii_paths_as_they_are():
    """train.log's equivalent command of a run started from Python (as_overrides) wrote a
    non-ASCII path as YAML escapes, data.val="/home/jos\\xE9/val": with a path key's value
    taken as written, that command trained on a folder named with a backslash."""
    from distill.config import TrainConfig, as_overrides, load_config

    paths = {"data.val": "/home/josé/val", "data.labels": "/data/照片 #1/labels",
             "data.gt_train": "a\tb", "out": " runs/lead", "init": "'q'.pt", "teacher": "null",
             "data.val_labels": 'C:\\Users\\"me"'}
    cfg = TrainConfig()
    for key, value in paths.items():
        section, _, name = key.rpartition(".")
        setattr(getattr(cfg, section) if section else cfg, name, value)
    said = as_overrides(cfg)
    assert "data.val=/home/josé/val" in said and "data.labels=/data/照片 #1/labels" in said, said
    assert load_config(None, said).to_dict() == cfg.to_dict(), said


def test_names_that_differ_only_in_case_and_share_an_extension_keep_their_names(tmp_path):
    """A.png beside a.png exists only on a case-sensitive file system (Linux), where labels/A.png
    and labels/a.png are two files: their names stay A and a, as before, rather than A.png and
    a.png, which renamed their labels (relabelled by the teacher) and still differ only in case."""
    from distill.data.sources import resolve_source

    for name in ("A.png", "a.png", "b.jpg", "c.png", "c.PNG"):
        _image(tmp_path / "shots" / name)
    if len(list((tmp_path / "shots").iterdir())) < 5:
        pytest.skip("a case-insensitive file system holds one of A.png and a.png")
    names = sorted(s.name for s in resolve_source(tmp_path / "shots").samples)
    assert names == ["A", "a", "b", "c.PNG", "c.png"]   # c's extensions tell them apart, as ever


def test_a_video_urls_default_output_is_a_name_windows_can_write(tmp_path, monkeypatch):
    """An image URL's output name was made one Windows can write, a video URL's was not:
    `sharpen run --source https://host/a%3Ab.mp4` wrote runs/sharpen/a:b.mp4, on Windows a
    stream of a file `a`, and https://host/nul.mp4 the device NUL."""
    from runtime.cli import _default_output

    monkeypatch.chdir(tmp_path)
    assert _default_output("https://host/clips/walk.mp4?t=3") == str(Path("runs/sharpen/walk.mp4"))
    assert _default_output("https://host/a%3Ab%2A.mp4") == str(Path("runs/sharpen/a_b_.mp4"))
    assert _default_output("https://host/nul.mp4") == str(Path("runs/sharpen/_nul.mp4"))


def test_printed_windows_commands_quote_the_shells_own_characters():
    """list2cmdline quotes a word for its spaces alone: `--data C:\\R&D\\shots`, pasted into
    cmd.exe, ran `D\\shots` as a second command, and PowerShell read `a,b` as two words. Such a
    word is double-quoted, a trailing backslash doubled so that it does not escape the quote."""
    from runtime.console import shell_join

    words = ["sharpen", "labels", "--data", r"C:\R&D\shots", "--out", "C:\\R&D\\labels\\",
             "data.val=x,y", "model.args={width:8}", r"C:\plain\path", r"\\srv\C$\x"]
    assert shell_join(words, "win32") == (
        r'sharpen labels --data "C:\R&D\shots" --out "C:\R&D\labels\\" "data.val=x,y" '
        r'"model.args={width:8}" C:\plain\path "\\srv\C$\x"')


class _SharingViolation(PermissionError):
    """What os.replace raises on Windows while another process reads the target (a monitor
    polling the --stats file): ERROR_SHARING_VIOLATION. Linux has no winerror to set."""
    winerror = 32


def test_a_replace_refused_while_a_reader_holds_the_file_is_retried(monkeypatch, tmp_path):
    import runtime.atomic as atomic
    real, refusals = os.replace, []

    def held_twice(src, dst):
        if len(refusals) < 2:
            refusals.append(dst)
            raise _SharingViolation(13, "The process cannot access the file", str(dst))
        real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", held_twice)
    target = tmp_path / "stats.json"
    atomic.atomic_write_json(target, {"state": "done"})
    assert len(refusals) == 2 and json.loads(target.read_text()) == {"state": "done"}
    assert [p.name for p in tmp_path.iterdir()] == ["stats.json"]   # no temp file left


def test_a_replace_refused_for_good_still_fails_naming_the_file(monkeypatch, tmp_path):
    import runtime.atomic as atomic

    def held(src, dst):
        raise _SharingViolation(13, "The process cannot access the file", str(dst))

    monkeypatch.setattr(atomic.os, "replace", held)
    monkeypatch.setattr(atomic, "REPLACE_RETRY_S", 0.2)
    with pytest.raises(PermissionError, match="stats.json"):
        atomic.atomic_write_json(tmp_path / "stats.json", {"state": "done"})
    assert list(tmp_path.iterdir()) == []


def test_a_video_opencv_cannot_open_on_windows_says_its_name_is_why(monkeypatch, tmp_path):
    # OpenCV's video I/O on Windows takes a path in the ANSI code page: a name beyond ASCII
    # fails there (opencv/opencv#4242) with no reason given; here a file it cannot read stands
    # in for that failure.
    from runtime.source_base import SourceError
    from runtime.sources import open_source
    clip = tmp_path / "Urlaub 東京" / "Straße.mp4"
    clip.parent.mkdir()
    clip.write_bytes(b"not a video")
    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.raises(SourceError) as e:
        open_source(str(clip))
    assert "beyond ASCII" in str(e.value) and "'東', '京', 'ß'" in str(e.value)
    monkeypatch.setattr(sys, "platform", "linux")
    with pytest.raises(SourceError, match="corrupt or unsupported") as e:
        open_source(str(clip))
    assert "ASCII" not in str(e.value)


def test_a_video_output_opencv_cannot_write_on_windows_says_its_name_is_why(monkeypatch,
                                                                          tmp_path):
    from runtime.video_probe import why_unwritable
    out = tmp_path / "Straße 東京.mp4"
    monkeypatch.setattr(sys, "platform", "win32")
    assert "beyond ASCII" in why_unwritable(out, "mp4v", (64, 48))
    assert "beyond ASCII" not in why_unwritable(tmp_path / "plain.mp4", "mp4v", (64, 48))


def _fake_ffmpeg(folder: Path, script: str = "") -> Path:
    """An executable named ffmpeg in `folder` that runs the shell `script`."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "ffmpeg"
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(0o755)
    return exe


def test_sharpen_ffmpeg_as_cmd_sets_it_quoted_or_naming_its_folder(monkeypatch, tmp_path):
    # cmd.exe's `set SHARPEN_FFMPEG="C:\Program Files\ffmpeg\bin\ffmpeg.exe"` keeps the quotes
    # in the value; a folder (ffmpeg's bin, as its Windows builds unpack) is named as often.
    from runtime.audio import find_ffmpeg
    folder = tmp_path / "Program Files" / "ffmpeg" / "bin"
    exe = _fake_ffmpeg(folder)
    for value in (f'"{exe}"', f"'{exe}'", f" {exe} ", str(folder), f'"{folder}"'):
        monkeypatch.setenv("SHARPEN_FFMPEG", value)
        assert find_ffmpeg() == (str(exe), ""), value
    monkeypatch.setenv("SHARPEN_FFMPEG", str(tmp_path))
    assert find_ffmpeg() == (None, f"SHARPEN_FFMPEG={tmp_path} is a folder with no ffmpeg in it")


def test_ffmpegs_messages_are_read_as_utf8_under_a_windows_code_page(monkeypatch, tmp_path):
    # ffmpeg writes UTF-8 whatever the system; Python's text mode decoded its stderr in the
    # ANSI code page (cp1252 on a western Windows): 'Straße.mp4' was said as 'StraÃŸe.mp4'.
    import locale

    from runtime.audio import _run, copy_failure
    if sys.flags.utf8_mode:
        pytest.skip("Python's UTF-8 mode decodes as UTF-8 whatever the code page")
    fake = _fake_ffmpeg(tmp_path, "printf 'Stra\\303\\237e.mp4: Invalid data found\\n' >&2\n"
                                  "exit 1\n")
    monkeypatch.setattr(locale, "getencoding", lambda: "cp1252")
    done = _run([str(fake)], 10)
    assert copy_failure(done, tmp_path / "out.mp4") == "Straße.mp4: Invalid data found"


@pytest.mark.parametrize("name", ["[2024] trip.mp4", "Wow!.mp4", "photo [1].png", "Hey!.png",
                                  "what?.png"])
def test_a_file_whose_name_has_glob_or_pipeline_characters_is_that_file(tmp_path, name):
    # Brackets and '!' are common in Windows and macOS names (a download's "clip [1080p].mp4");
    # such a file given as --source was read as a glob matching nothing ("no images found") or
    # as a GStreamer pipeline. '?' exists only off Windows, where the same holds.
    import cv2
    import numpy as np

    from runtime.image_sources import ImageSource
    from runtime.sources import open_source, spec_kind
    from runtime.video_source import VideoSource
    path = tmp_path / name
    frame = np.full((48, 64, 3), 90, np.uint8)
    if path.suffix == ".png":
        path.write_bytes(cv2.imencode(".png", frame)[1].tobytes())
    else:
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10, (64, 48))
        for _ in range(3):
            writer.write(frame)
        writer.release()
    kind = "images" if path.suffix == ".png" else "video"
    assert spec_kind(str(path)) == kind
    with open_source(str(path)) as src:
        assert isinstance(src, ImageSource if kind == "images" else VideoSource)
        assert sum(1 for _ in src.frames(threading.Event())) == (1 if kind == "images" else 3)


def test_a_name_with_an_exclamation_mark_that_is_no_file_yet_is_not_a_pipeline(tmp_path):
    # A glob in a folder named with '!' ("Wow!/*.png") is no file, and was taken for a
    # GStreamer pipeline ("this OpenCV build has no GStreamer support ... gst-launch-1.0 -q
    # 'Wow!/*.png'"), as was a mistyped "Wow!.mp4": the images are read, the missing file
    # is said missing. A pipeline is still one.
    import cv2
    import numpy as np

    from runtime.source_base import SourceError
    from runtime.sources import open_source, spec_kind
    folder = tmp_path / "Wow!"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        (folder / name).write_bytes(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1])
    assert spec_kind(f"{folder}/*.png") == "images"
    with open_source(f"{folder}/*.png") as src:
        assert sorted(src.names) == ["a.png", "b.png"]
    # The README's recursive spelling ('photos/**/*'): its folder part ("Wow!/**") is no
    # folder, and it was taken for a pipeline too; a subfolder's images are read with it.
    (folder / "sub").mkdir()
    (folder / "b.png").rename(folder / "sub" / "b.png")
    for pattern in (f"{folder}/**/*", f"{folder}/*/*.png"):
        assert spec_kind(pattern) == "images", pattern
    with open_source(f"{folder}/**/*") as src:
        assert sorted(src.names) == ["a.png", "sub/b.png"]
    for missing in (f"{folder}/clip.mp4", "Gone!.mp4"):
        assert spec_kind(missing) == "video", missing
        with pytest.raises(SourceError, match="source not found"):
            open_source(missing)
    for pipeline in ("videotestsrc ! appsink", "v4l2src device=/dev/video0 ! videoconvert ! "
                     "appsink", "filesrc location=a.mp4 ! decodebin ! videoconvert ! appsink"):
        assert spec_kind(pipeline) == "gstreamer", pipeline


# What Windows lacks of a POSIX Python, taken away in a fresh interpreter after the standard
# library and the engines (which have their own Windows code) are imported.
_NOT_ON_WINDOWS = """
import os, select, signal, sys
import subprocess, shutil, tempfile, threading, multiprocessing, platform, socket  # noqa
import numpy, cv2, onnxruntime  # noqa
for m in ("fcntl", "resource", "pwd", "grp", "termios", "tty", "pty"):
    sys.modules[m] = None
for mod, names in ((os, "geteuid getuid getegid getgid posix_fallocate O_NOFOLLOW O_NONBLOCK "
                        "statvfs sched_getaffinity getloadavg getpgid setsid killpg fork "
                        "mkfifo chown O_DIRECTORY sync getpgrp setpgrp nice"),
                   (signal, "SIGHUP SIGUSR1 SIGUSR2 SIGALRM SIGPIPE SIGCHLD SIGQUIT SIGKILL "
                            "pthread_sigmask pthread_kill alarm setitimer siginterrupt"),
                   (select, "poll PIPE_BUF POLLIN POLLOUT POLLERR POLLHUP epoll")):
    for name in names.split():
        if hasattr(mod, name):
            delattr(mod, name)
"""


def _without_posix(tmp_path, commands: list[list[str]]) -> None:
    """`sharpen` COMMAND for each of `commands`, all exiting 0, in a fresh interpreter without
    _NOT_ON_WINDOWS, importing this checkout's code, run in `tmp_path` (runs/sharpen, a
    cache, stay there)."""
    code = ("from sharpen.cli import main\n"
            + "".join(f"print('rc', main({argv!r}))\n" for argv in commands))
    path = os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                            os.environ.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", _NOT_ON_WINDOWS + code], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path,
                          env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path))
    codes = [ln for ln in done.stdout.splitlines() if ln.startswith("rc ")]
    assert codes == ["rc 0"] * len(commands), (done.stdout[-2000:], done.stderr[-3000:])


def test_sharpen_run_and_models_need_no_posix_only_module_or_call(tmp_path):
    """`sharpen run` into images, a video and a stats file, and `sharpen models` on the model,
    in an interpreter without fcntl, resource, pwd, SIGHUP, SIGUSR1, os.geteuid,
    select.poll...: a POSIX-only module or call used unguarded on the runtime's path fails
    here, not first on a Windows laptop."""
    from runtime_fixtures import make_onnx_model
    model = make_onnx_model(tmp_path / "m.onnx")
    runs = [["run", "--model", str(model), "--source", "synthetic:64x48@10", "--max-frames",
             "3", "--threads", "1", "--out", str(tmp_path / out), "--stats",
             str(tmp_path / f"{out}.json")] for out in ("frames", "clip.mp4")]
    _without_posix(tmp_path, [*runs, ["models", str(model)]])
    assert len(list((tmp_path / "frames").iterdir())) == 3
    assert (tmp_path / "clip.mp4").stat().st_size > 0
    assert json.loads((tmp_path / "clip.mp4.json").read_text())["state"] == "done"


@pytest.mark.slow
def test_sharpen_models_list_needs_no_posix_only_module_or_call(tmp_path):
    # The architectures' table: torch builds each one to count it (about 25 s on 2 cores).
    _without_posix(tmp_path, [["models"]])


def test_ffmpeg_children_are_kept_from_the_consoles_ctrl_c_on_windows_too(monkeypatch):
    # Windows ignores start_new_session: the console's Ctrl-C, which the run takes as "finish
    # what you are doing", reached the ffmpeg encoding --codec h264 or copying the sound and
    # ended it at once, the recording with it. A process group of its own has Ctrl-C off.
    from runtime.die_with_run import own_session
    from runtime.audio import _run
    monkeypatch.setattr(sys, "platform", "win32")
    assert own_session() == {"creationflags": 0x200}   # CREATE_NEW_PROCESS_GROUP
    monkeypatch.setattr(sys, "platform", "linux")
    assert own_session()["start_new_session"] is True
    done = _run([sys.executable, "-c", "import os; print(os.getsid(0))"], 30)
    assert int(done.stdout) != os.getsid(0)   # a session of its own, as ever


@pytest.mark.parametrize("platform,setting", [
    ("darwin", "Privacy & Security > Camera"),
    ("win32", "Privacy & security > Camera"),
    ("linux", None)])
def test_a_camera_that_does_not_open_names_the_systems_camera_permission(monkeypatch,
                                                                         platform, setting):
    # macOS and Windows refuse a terminal or desktop app the camera until the user allows it
    # in the system's settings; OpenCV then fails as for a camera that is not there.
    from runtime.source_base import SourceLost
    from runtime.sources import open_source
    monkeypatch.setattr(sys, "platform", platform)
    with pytest.raises(SourceLost, match="no camera with this index") as e:
        open_source("7")
    assert (setting in str(e.value)) if setting else "Privacy" not in str(e.value)


def test_a_home_folder_written_windows_style_is_expanded_there(monkeypatch):
    # cmd.exe never expands ~, nor PowerShell for a program it runs: `--out ~\Videos\sharp`
    # made a folder named ~ in the working folder.
    from runtime.shell_words import home_expanded
    home = os.path.expanduser("~")
    monkeypatch.setattr(sys, "platform", "win32")
    out = home_expanded(["--out", "~\\Videos\\sharp", "--stats=~\\s.json", "~backup\\x"])
    assert out[1] == os.path.join(home, "Videos\\sharp")
    assert out[2] == "--stats=" + os.path.join(home, "s.json")
    assert out[3] == "~backup\\x"
    monkeypatch.setattr(sys, "platform", "linux")   # a backslash is part of a name there
    assert home_expanded(["~\\x"]) == ["~\\x"]


def test_the_runs_peak_memory_asks_windows_for_its_peak_working_set(monkeypatch):
    """Windows has no `resource` module: the `done:` line and --stats left peak memory out
    there, while `sharpen bench` asked Windows. Both ask the same function now."""
    import runtime.host as host
    from benchmarks.machine import peak_rss_mb
    asked = []
    monkeypatch.setattr(host, "_windows_peak_mib", lambda: asked.append(1) or 321.0)
    assert host.peak_memory_mib(system="win32") == 321.0
    assert peak_rss_mb(system="win32") == 321.0 and len(asked) == 2
    assert host.peak_memory_mib() > 0 and not asked[2:]   # Linux: from resource, as ever


def test_homebrews_ffmpeg_is_found_on_macos_without_it_on_path(monkeypatch, tmp_path):
    # A run started by launchd, cron or an app gets PATH=/usr/bin:/bin:/usr/sbin:/sbin, which
    # leaves out Homebrew's folders (/opt/homebrew/bin on Apple silicon, /usr/local/bin).
    import runtime.audio as audio
    brew = tmp_path / "opt" / "homebrew" / "bin"
    exe = _fake_ffmpeg(brew)
    monkeypatch.delenv("SHARPEN_FFMPEG", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(audio, "MACOS_FFMPEG_FOLDERS", (str(tmp_path / "none"), str(brew)))
    monkeypatch.setattr(sys, "platform", "darwin")
    assert audio.find_ffmpeg() == (str(exe), "")
    monkeypatch.setattr(sys, "platform", "linux")
    assert audio.find_ffmpeg() == (None, "no ffmpeg was found on PATH")


def test_a_glob_inside_a_folder_named_with_brackets_finds_its_images(tmp_path):
    # "[raw] photos/*.png": glob read the folder's brackets as a character class and found
    # nothing ("no images found"); a folder that is there is taken as named.
    import cv2
    import numpy as np

    from runtime.sources import open_source
    from runtime.walk import glob_reaches
    folder = tmp_path / "[raw] photos"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        (folder / name).write_bytes(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1])
    for pattern in (f"{folder}/*.png", f"{folder}/**/*.png"):
        with open_source(pattern) as src:
            assert sorted(src.names) == ["a.png", "b.png"], pattern
        assert glob_reaches(pattern, folder / "sharp" / "a.png") == ("**" in pattern)


def test_a_glob_run_in_a_folder_named_with_brackets_is_kept_from_its_own_output(tmp_path,
                                                                               monkeypatch):
    # In "[raw] photos", `--source '**/*.png' --out sharp` was let write into what the glob
    # reads (the working folder's brackets, part of the absolute pattern, matched nothing), and
    # its rerun was refused as "an input folder"; it is refused up front, as elsewhere.
    from runtime.walk import glob_reaches
    folder = tmp_path / "[raw] photos"
    folder.mkdir()
    monkeypatch.chdir(folder)
    assert glob_reaches("**/*.png", "sharp/a.png")
    assert glob_reaches("./**/*.png", folder / "sharp" / "a.png")
    assert not glob_reaches("*.png", "sharp/a.png")


def test_a_file_named_as_a_pattern_that_matches_others_too_is_read_and_said(tmp_path,
                                                                             monkeypatch):
    # A file named "*.png" beside a.png and b.png: --source '*.png' read that one image, as a
    # name that is there now is, and said nothing of the two a pattern would have read.
    import cv2
    import numpy as np
    from runtime_fixtures import runtime_warnings

    from runtime.sources import open_source
    monkeypatch.chdir(tmp_path)
    png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1]
    for name in ("*.png", "a.png", "b.png", "c[1].png", "c1.png"):
        (tmp_path / name).write_bytes(png)
    with runtime_warnings() as said, open_source("*.png") as src:
        assert src.names == ["*.png"]
    assert said == ["'*.png' is read as the file of that name; as a pattern it would also "
                    "match 4 files (a.png, b.png, c1.png, ...): give their folder, or rename "
                    "the file, to read them all"], said
    # Brackets are common in names, and more likely meant as such than as a character class.
    with runtime_warnings() as said, open_source("c[1].png") as src:
        assert src.names == ["c[1].png"]
    assert said == [], said
