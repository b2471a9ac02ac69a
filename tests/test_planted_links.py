"""Links a hostile or careless colleague can plant in a shared folder, where a run writes its
lock file. Each test was a real hole first."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime_fixtures import onnx_model, run_cli

__all__ = ["onnx_model"]

pytestmark = pytest.mark.skipif(not hasattr(os, "O_NOFOLLOW"), reason="needs O_NOFOLLOW (POSIX)")

SECRET = b"-----BEGIN OPENSSH PRIVATE KEY-----\nnot for anyone\n"


def _victim(tmp_path: Path) -> Path:
    """An owner-only file outside the output folder, as a private key is."""
    victim = tmp_path / "id_ed25519"
    victim.write_bytes(SECRET)
    victim.chmod(0o600)
    return victim


def _untouched(victim: Path) -> None:
    assert victim.read_bytes() == SECRET
    assert victim.stat().st_mode & 0o777 == 0o600


def test_a_run_does_not_write_through_a_lock_file_planted_as_a_link(tmp_path, onnx_model,
                                                                    capsys):
    """`sharpen run --out shared/out/` locks `shared/.out.lock`; anyone who can write into
    `shared/` could make that name a link to a file of the user's (a key, a config): the run
    opened it, made it readable by every user, truncated it to its process id and removed the
    link, all without a word. It is refused now, naming the link, and the file is untouched."""
    victim = _victim(tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir()
    image = shared / "a.png"
    cv2.imwrite(str(image), np.full((32, 32, 3), 128, np.uint8))
    (shared / ".out.lock").symlink_to(victim)
    rc = run_cli(["run", "--model", str(onnx_model), "--source", str(image),
                  "--out", str(shared / "out") + "/", "--quiet"])
    err = capsys.readouterr().err
    _untouched(victim)
    assert rc == 2, err
    assert f"{shared / '.out.lock'} is a symbolic link" in err, err
    assert "Traceback" not in err, err
    assert (shared / ".out.lock").is_symlink()   # left for the user to look at


def test_a_training_or_corpus_lock_planted_as_a_link_is_refused(tmp_path):
    """The same for `<out>/.lock` (train, distill, corpus, synth) and `.export.lock`."""
    from runtime.run_lock import run_lock

    victim = _victim(tmp_path)
    for name in (".lock", ".export.lock"):
        out = tmp_path / f"run{name}"
        out.mkdir()
        (out / name).symlink_to(victim)
        with pytest.raises(ValueError, match=rf"{out / name} is a symbolic link"):
            with run_lock(out, doing="training", name=name):
                pass
        _untouched(victim)


def _assert_a_cache_lock_link_is_refused(tmp_path: Path) -> None:
    """`.engines.lock` planted as a link to a private file: cache_lock refuses it, naming
    it, and the file is untouched."""
    from runtime.cache import cache_lock

    victim = _victim(tmp_path)
    (tmp_path / ".engines.lock").symlink_to(victim)
    with pytest.raises(ValueError, match=r"\.engines\.lock is a symbolic link"):
        with cache_lock(tmp_path / "engines", print, "building"):
            pass
    _untouched(victim)


def test_a_cache_lock_planted_as_a_link_is_refused(tmp_path):
    """The TensorRT engine cache and the bench cache, which camera services share."""
    _assert_a_cache_lock_link_is_refused(tmp_path)


def test_a_training_runs_logs_are_not_appended_through_a_planted_link(tmp_path):
    """A runs folder shared on the internal server and resumed into (`out=`): train.log or
    metrics.jsonl made a link to ~/.bashrc had each log line, which holds paths of the
    config's choosing, appended to that file. Refused, naming the link."""
    from distill.train_log import append_jsonl, append_text

    victim = _victim(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    for name, append in (("train.log", lambda p: append_text(p, "resumed at step 10")),
                         ("metrics.jsonl", lambda p: append_jsonl(p, {"step": 10}))):
        (out / name).symlink_to(victim)
        with pytest.raises(ValueError, match=rf"{out / name} is a symbolic link"):
            append(out / name)
        _untouched(victim)
    append_text(out / "other.log", "a file of its own is written")
    assert (out / "other.log").read_text().endswith("a file of its own is written\n")


def test_without_o_nofollow_a_planted_lock_link_is_still_refused(tmp_path, monkeypatch):
    """Where the system has no O_NOFOLLOW (Windows, which has links too), the open fell back
    to following the link: the planted `.lock` had the victim truncated to a process id."""
    import runtime.atomic
    from runtime.run_lock import run_lock

    monkeypatch.setattr(runtime.atomic, "_NO_FOLLOW", 0)
    victim = _victim(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").symlink_to(victim)
    with pytest.raises(ValueError, match=rf"{out / '.lock'} is a symbolic link"):
        with run_lock(out, doing="training"):
            pass
    _untouched(victim)


def test_a_link_is_refused_whatever_errno_the_system_gives_for_it(tmp_path, monkeypatch):
    """O_NOFOLLOW on a link is ELOOP on Linux and macOS but EMLINK on FreeBSD and EFTYPE on
    NetBSD: those went out as 'Too many links', and a cache lock as none at all."""
    import errno

    real = os.open

    def bsd_open(path, flags, mode=0o777, **kw):   # FreeBSD's documented open(2)
        if flags & os.O_NOFOLLOW and os.path.islink(path):
            raise OSError(errno.EMLINK, os.strerror(errno.EMLINK), str(path))
        return real(path, flags, mode, **kw)

    monkeypatch.setattr(os, "open", bsd_open)
    _assert_a_cache_lock_link_is_refused(tmp_path)


def test_a_fifo_planted_as_a_log_or_a_lock_is_refused_not_waited_on(tmp_path):
    """A FIFO planted as `train.log` held the run's open until someone read it (a training
    run hung without a word); with a reader there, the log lines went to whoever read."""
    from distill.train_log import append_text
    from runtime.run_lock import run_lock

    out = tmp_path / "run"
    out.mkdir()
    for name in ("train.log", ".lock"):
        os.mkfifo(out / name)
    reader = os.open(out / "train.log", os.O_RDONLY | os.O_NONBLOCK)   # the one listening
    try:
        with pytest.raises(ValueError, match=rf"{out / 'train.log'} is a FIFO"):
            append_text(out / "train.log", "resumed at step 10")
        assert os.read(reader, 4096) == b""   # nothing went its way
    finally:
        os.close(reader)
    with pytest.raises(ValueError, match=rf"{out / 'train.log'} is a FIFO"):
        append_text(out / "train.log", "no one listening: refused, not waited on")
    with pytest.raises(ValueError, match=rf"{out / '.lock'} is a FIFO"):
        with run_lock(out, doing="training"):
            pass


def test_every_command_refuses_a_planted_link_in_one_line_not_a_traceback(tmp_path, capsys):
    """Only `sharpen run` and the engine cache turned the refusal into an error line: `synth`,
    `teacher`, `corpus`, training and `evaluate --out` ended in a traceback."""
    from sharpen.cli import main

    victim = _victim(tmp_path)
    sharp, out = tmp_path / "sharp", tmp_path / "out"
    sharp.mkdir()
    out.mkdir()
    cv2.imwrite(str(sharp / "a.png"), np.full((64, 64, 3), 100, np.uint8))
    (out / ".lock").symlink_to(victim)
    assert main(["synth", "--sharp", str(sharp), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"sharpen synth: error: {out / '.lock'} is a symbolic link" in err, err
    assert "Traceback" not in err, err
    _untouched(victim)


def test_a_fifo_planted_as_a_runs_lock_file_is_no_free_name_and_no_hang(tmp_path):
    """Picking the default output (runs/sharpen/cam.mp4, else cam2.mp4) opens each name's lock
    file to see whether a live run holds it: a FIFO planted as `.cam.mp4.lock` held that open
    until someone wrote to it, and `sharpen run` hung before its first frame."""
    from runtime.run_lock import output_in_use

    out = tmp_path / "cam.mp4"
    os.mkfifo(tmp_path / ".cam.mp4.lock")
    holder = os.open(tmp_path / ".cam.mp4.lock", os.O_RDWR)   # a writer, so no wait here
    try:
        assert output_in_use(out)   # a name not to write, as one that cannot be looked at
    finally:
        os.close(holder)
    assert output_in_use(out)   # no writer: said at once, not waited on
    victim = _victim(tmp_path)
    (tmp_path / ".linked.mp4.lock").symlink_to(victim)
    assert output_in_use(tmp_path / "linked.mp4")
    _untouched(victim)


def test_the_journals_of_labels_teacher_and_evaluate_are_not_appended_through_a_link(tmp_path):
    """The README names them beside train.log; only train.log and metrics.jsonl were tried."""
    from distill.data.label_cache import append_journal, journal_path
    from distill.evaluate_journal import ScoreJournal
    from distill.teacher_run import TeacherRun

    victim = _victim(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"x")
    journal = journal_path(out / "manifest.json")
    score, teacher = ScoreJournal(out, {"k": 1}), TeacherRun(out, {"k": 1})
    for link, append in (
            (journal, lambda: append_journal(out / "manifest.json", {"a": {"hash": "0"}})),
            (score.journal, lambda: score.put("a.png", [1], {"psnr": 30.0})),
            (teacher.journal, lambda: teacher.mark_done(out / "a.png", Path("a.png")))):
        link.symlink_to(victim)
        with pytest.raises(ValueError, match=rf"{link} is a symbolic link"):
            append()
        _untouched(victim)


def test_a_folder_under_a_lock_or_log_name_is_still_the_oss_own_error(tmp_path):
    """A folder there is no planted file: callers that go on without a log they cannot
    write (the evaluate journal's one warning) get the OSError they expect, not a refusal."""
    from runtime.atomic import open_no_follow

    (tmp_path / "train.log").mkdir()
    for flags in (os.O_WRONLY | os.O_APPEND | os.O_CREAT, os.O_RDONLY):
        with pytest.raises(IsADirectoryError):
            os.close(open_no_follow(tmp_path / "train.log", flags))


def test_a_label_caches_claims_file_planted_as_a_link_is_refused(tmp_path):
    """Two labels runs into a team's shared cache claim its images in `.labelling.lock`; a
    link planted under that name (to ~/.ssh/id_ed25519) had the run open its target and make
    it readable and writable by every user (mode 666), without a word. Refused, naming the
    link, before any image is labelled, and the file is untouched."""
    from distill.data.label_claims import CLAIMS, LabelClaims

    victim = _victim(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / CLAIMS).symlink_to(victim)
    with pytest.raises(ValueError, match=rf"{cache / CLAIMS} is a symbolic link"):
        LabelClaims(cache)
    _untouched(victim)
    assert (cache / CLAIMS).is_symlink()   # left for the user to look at


@pytest.mark.parametrize("name", [".labelling.lock", ".manifest.lock",
                                  "manifest.journal.jsonl"])
def test_sharpen_labels_into_a_cache_with_a_planted_link_says_so_in_one_line(
        tmp_path, tiny_teacher_pt, capsys, name):
    """`sharpen labels` into a shared cache holding such a link: its claims file, the manifest
    lock and the label journal are refused (above), which ended the command in a
    LinkRefused traceback. One line naming the link, exit 2, the file untouched."""
    victim = _victim(tmp_path)
    data, cache = tmp_path / "data", tmp_path / "cache"
    rng = np.random.default_rng(0)
    for half in ("input", "target"):
        (data / half).mkdir(parents=True)
        cv2.imwrite(str(data / half / "im0.png"), rng.integers(0, 256, (16, 16, 3), np.uint8))
    cache.mkdir()
    (cache / name).symlink_to(victim)
    rc = run_cli(["labels", "--data", str(data), "--out", str(cache), "--teacher-weights",
                  str(tiny_teacher_pt), "--tile", "0", "--threads", "1", "--quiet"])
    err = capsys.readouterr().err
    _untouched(victim)
    assert rc == 2, err
    assert f"{cache / name} is a symbolic link" in err, err
    assert "Traceback" not in err, err


def test_sharpen_teacher_into_a_folder_with_its_journal_planted_as_a_link_says_so(
        tmp_path, tiny_teacher_pt, capsys):
    """`sharpen teacher photos/ --out shared/` appends each photo done to its journal, never
    through a link (above): that refusal ended the command in a LinkRefused traceback after
    the first photo. One line naming the link, exit 2, the file untouched."""
    victim = _victim(tmp_path)
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.png"), np.full((16, 16, 3), 128, np.uint8))
    out.mkdir()
    (out / ".sharpen-teacher.journal.jsonl").symlink_to(victim)
    rc = run_cli(["teacher", str(photos), "--out", str(out), "--teacher-weights",
                  str(tiny_teacher_pt), "--threads", "1", "--quiet"])
    err = capsys.readouterr().err
    _untouched(victim)
    assert rc == 2, err
    assert f"{out / '.sharpen-teacher.journal.jsonl'} is a symbolic link" in err, err
    assert "Traceback" not in err, err


@pytest.mark.parametrize("command, lock", [
    (["synth", "--copies", "1"], ".lock"),
    (["export", "--weights", "fast", "--formats", "onnx"], ".export.lock"),
])
def test_every_command_refuses_a_planted_lock_link_in_one_line(tmp_path, capsys, command,
                                                                lock):
    """run_lock refuses a `.lock` or `.export.lock` planted as a link (above), but `sharpen
    synth` and `sharpen export` let that refusal out as a LinkRefused traceback, exit 1. The
    command line says it as every usage error: one line naming the link, exit 2."""
    victim = _victim(tmp_path)
    sharp, out = tmp_path / "sharp", tmp_path / "out"
    sharp.mkdir()
    cv2.imwrite(str(sharp / "a.png"), np.full((32, 32, 3), 128, np.uint8))
    out.mkdir()
    (out / lock).symlink_to(victim)
    argv = [*command, "--out", str(out)]
    if command[0] == "synth":
        argv += ["--sharp", str(sharp)]
    rc = run_cli(argv)
    err = capsys.readouterr().err
    _untouched(victim)
    assert rc == 2, err
    assert f"sharpen {command[0]}: error: {out / lock} is a symbolic link" in err, err
    assert "Traceback" not in err, err
