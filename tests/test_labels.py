"""Teacher pseudo-label cache: resume, invalidation, interruption, corrupt inputs, sharding."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from distill.checkpoint import atomic_save, make_checkpoint
from distill.data.crops import CropDataset, pairs_from_labels
from distill.data.label_cache import LabelCache, merge_entries, merge_shards, write_manifest
from distill.data.labels import run_labels
from distill.data.labels_command import main
from distill.images import write_image
from distill.restormer import build_restormer
from runtime import SharpenWarning
from runtime_fixtures import damaged_video
from torchrun_fixtures import torchrun

REPO = Path(__file__).resolve().parents[1]


pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    # FakeTeacher and the untrained tiny Restormers are worse than the blurred input, so most
    # runs here warn so; the tests that are about that warning assert it with pytest.warns.
    pytest.mark.filterwarnings("ignore:the teacher's outputs are further from the ground truth "
                               "than the blurred inputs:runtime.warn.SharpenWarning"),
    # Tiny tiles keep these tests fast; the warning that they are too small for the teacher
    # is asserted by name where it is the subject.
    pytest.mark.filterwarnings("ignore:--tile 32 gives the teacher:runtime.warn.SharpenWarning"),
]


def _teacher(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    m = build_restormer("tiny")
    atomic_save(make_checkpoint(m, kind="teacher", arch="restormer",
                                arch_args=m.config.to_dict()), path)
    return path


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    d = tmp_path_factory.mktemp("teachers")
    return _teacher(d / "t0.pt", 0), _teacher(d / "t1.pt", 1)


def _paired(root: Path, n: int, h: int = 40, w: int = 56, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(n):
        sharp = rng.random((h, w, 3)).astype(np.float32)
        blurred = cv2.blur(sharp, (5, 5))
        write_image(root / "input" / f"im{i:02d}.png", blurred)
        write_image(root / "target" / f"im{i:02d}.png", sharp)
    return root


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def _cli(data, out, weights, *extra) -> list[str]:
    return [sys.executable, "-m", "distill.data.labels", "--data", str(data), "--out", str(out),
            "--teacher-weights", str(weights), "--tile", "32", "--overlap", "8",
            "--device", "cpu", "--quiet", *extra]


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())["entries"]


def _label_ok(path: Path, shape) -> bool:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return img is not None and img.dtype == np.uint16 and img.shape == shape


def test_the_labelling_line_names_the_teacher_and_gopro_s_blurred_folder(tmp_path, teachers):
    """`labelling 4 on cpu (tile 512, overlap 64)` was all a user saw: a mistyped or forgotten
    --teacher-weights labelled with the shipped teacher, and --gopro-blur blur_gamma with blur/,
    without a word before the manifest was opened."""
    g = tmp_path / "GOPRO_Large"
    for sub in ("blur", "blur_gamma", "sharp"):
        write_image(g / "train" / "GOPR0372_07_00" / sub / "000001.png",
                    np.full((16, 16, 3), 0.5, np.float32))
    said = []
    run_labels(str(g), tmp_path / "c", teacher_weights=str(teachers[0]), tile=32, overlap=8,
               device="cpu", progress=False, say=said.append, gopro_blur="blur_gamma")
    line = next(ln for ln in said if "; labelling 1" in ln)
    assert line.endswith(f"with the teacher {teachers[0]}, inputs from blur_gamma/"), line
    said.clear()
    run_labels(str(g), tmp_path / "d", tile=32, overlap=8, device="cpu", progress=False,
               say=said.append)
    line = next(ln for ln in said if "; labelling 1" in ln)
    assert line.endswith("with the shipped teacher, inputs from blur/"), line


def test_an_overlap_that_computes_each_pixel_many_times_is_said(tmp_path, teachers):
    """--tile 100 --overlap 80 labelled 8x slower than the default, without a word."""
    data = _paired(tmp_path / "data", 1)
    with pytest.warns(SharpenWarning, match=r"--tile 32 --overlap 24: the tiles advance by 8 "
                      r"px, so the teacher computes each pixel about 16 times; an overlap of "
                      r"at most half the tile \(the default for --tile 32: 16\)"):
        run_labels(str(data), tmp_path / "c", teacher_weights=str(teachers[0]), tile=32,
                   overlap=24, device="cpu", progress=False)


def test_a_tile_smaller_than_the_teachers_training_crops_is_said(tmp_path, teachers, capsys):
    """`labels --tile 7` (and `teacher --tile 7`) ran without a word: 7 px of context per tile
    cannot remove blur tens of pixels long."""
    from sharpen.cli import main
    data = _paired(tmp_path / "data", 1)
    with pytest.warns(SharpenWarning, match=r"--tile 32 gives the teacher 32 px of context per "
                      r"tile, less than 128 px, the smallest crops Restormer is "
                      r"trained on"):
        run_labels(str(data), tmp_path / "c", teacher_weights=str(teachers[0]), tile=32,
                   overlap=8, device="cpu", progress=False)
    img = next((data / "input").iterdir())
    assert main(["teacher", str(img), "--out", str(tmp_path / "t"), "--teacher-weights",
                         str(teachers[0]), "--tile", "7", "--device", "cpu", "--quiet"]) == 0
    assert "warning: --tile 7 gives the teacher 7 px of context" in capsys.readouterr().err
    assert main(["teacher", str(img), "--out", str(tmp_path / "t0"), "--teacher-weights",
                         str(teachers[0]), "--tile", "0", "--device", "cpu", "--quiet"]) == 0
    assert "context" not in capsys.readouterr().err


def test_cache_resume_and_invalidation(tmp_path, teachers, capsys):
    t0, t1 = teachers
    data = _paired(tmp_path / "data", 3)
    out = tmp_path / "cache"
    kw = dict(tile=32, overlap=8, device="cpu", progress=False)

    s = run_labels(str(data), out, teacher_weights=str(t0), **kw)
    assert (s.done, s.skipped, s.failed) == (3, 0, 0)
    # what a rerun needs to reuse these labels, for the commands that quote it back
    assert json.loads((out / "run.json").read_text())["teacher_options"] == [
        "--teacher-weights", str(t0.resolve()), "--tile", "32", "--overlap", "8"]
    entries = _manifest(out)
    assert sorted(entries) == ["im00", "im01", "im02"]
    e = entries["im01"]
    assert e["status"] == "ok" and e["tile"] == 32 and e["overlap"] == 8
    assert e["input"] == str((data / "input" / "im01.png").resolve())
    assert len(e["input_hash"]) == 64 and e["weights_hash"] and e["teacher_arch"]["dim"] == 16
    for k in ("teacher_psnr", "teacher_ssim", "input_psnr", "input_ssim"):
        assert np.isfinite(e[k])
    assert _label_ok(out / e["label"], (40, 56, 3))
    mtimes = {n: (out / en["label"]).stat().st_mtime_ns for n, en in entries.items()}

    # second run: everything up to date
    s = run_labels(str(data), out, teacher_weights=str(t0), **kw)
    assert (s.done, s.skipped) == (0, 3)
    assert {n: (out / en["label"]).stat().st_mtime_ns for n, en in _manifest(out).items()} \
        == mtimes

    # modified input: only that one
    write_image(data / "input" / "im01.png", np.full((40, 56, 3), 0.5, np.float32))
    s = run_labels(str(data), out, teacher_weights=str(t0), **kw)
    assert (s.done, s.skipped) == (1, 2)
    new = _manifest(out)
    assert new["im01"]["input_hash"] != e["input_hash"]
    assert new["im00"]["created"] == entries["im00"]["created"]

    # a deleted label file is recomputed
    (out / "labels" / "im02.png").unlink()
    with pytest.warns(SharpenWarning, match=r"im02\.png is gone; labelling im02 again"):
        s = run_labels(str(data), out, teacher_weights=str(t0), **kw)
    assert (s.done, s.skipped) == (1, 2)

    # new teacher weights: everything, said before the teacher runs
    with pytest.warns(SharpenWarning, match=rf"teacher \(weights \w+ of {t1.resolve()}\) "
                      rf"replaces 3 labels that another teacher made here \(weights \w+ of "
                      rf"{t0.resolve()}\)"):
        s = run_labels(str(data), out, teacher_weights=str(t1), **kw)
    assert (s.done, s.skipped) == (3, 0)
    assert len({en["weights_hash"] for en in _manifest(out).values()}) == 1
    assert _manifest(out)["im00"]["weights_hash"] != e["weights_hash"]

    # other tile settings: everything
    with pytest.warns(SharpenWarning, match=r"replaces 3 labels that it made here at another "
                                            r"tiling \(tile 32, overlap 8\)"):
        s = run_labels(str(data), out, teacher_weights=str(t1), **{**kw, "overlap": 4})
    assert (s.done, s.skipped) == (3, 0)

    # the cache feeds training crops
    items = pairs_from_labels(out)
    assert [(i.name, l.name, g.name) for i, l, g in items] == \
        [(f"im0{k}.png",) * 3 for k in range(3)]
    batch = CropDataset(items, crop=16)[0]
    assert set(batch) == {"input", "target", "gt", "name"}

    # an input changed after labelling: training refuses the stale cache, naming the file,
    # and the re-run it asks for fixes exactly that entry
    write_image(data / "input" / "im02.png", np.full((40, 56, 3), 0.25, np.float32))
    with pytest.raises(ValueError, match=r"1 of 3 labels no longer matches its input.*im02\.png"):
        pairs_from_labels(out)
    s = run_labels(str(data), out, teacher_weights=str(t1), **{**kw, "overlap": 4})
    assert (s.done, s.skipped) == (1, 2)
    assert len(pairs_from_labels(out)) == 3

    # an input deleted after labelling: the same re-run drops its entry and label (it used to
    # stay in the manifest, and training refused the cache for good)
    label01 = out / _manifest(out)["im01"]["label"]
    for side in ("input", "target"):
        (data / side / "im01.png").unlink()
    with pytest.raises(ValueError, match=r"1 of 3 labels no longer matches its input.*im01\.png"):
        pairs_from_labels(out)
    s = run_labels(str(data), out, teacher_weights=str(t1), **{**kw, "overlap": 4}, say=print)
    assert (s.done, s.skipped) == (0, 2)
    assert sorted(_manifest(out)) == ["im00", "im02"] and not label01.exists()
    assert [i.name for i, _, _ in pairs_from_labels(out)] == ["im00.png", "im02.png"]
    assert "removed 1 label whose input is gone or replaced" in capsys.readouterr().out


def test_corrupt_input_warns_and_fails_run(tmp_path, teachers, capsys):
    data = tmp_path / "footage"
    rng = np.random.default_rng(1)
    for name in ("a", "c"):
        write_image(data / f"{name}.png", rng.random((24, 32, 3)))
    (data / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage, not an image")
    out = tmp_path / "cache"
    argv = ["--data", str(data), "--out", str(out), "--teacher-weights", str(teachers[0]),
            "--tile", "32", "--overlap", "8", "--device", "cpu", "--quiet"]
    rc = main(argv)
    assert rc != 0
    captured = capsys.readouterr()
    assert "2 done" in captured.out and "1 failed" in captured.out
    said = [ln for ln in captured.err.splitlines() if "b.png" in ln]
    # 'skipped:', as teacher, synth, corpus, evaluate and export word an input they could not
    # read; 'skipping b:' read apart from them, and beside this run's '0 skipped (up to date)'
    assert len(said) == 1 and said[0].startswith("warning: skipped: b:"), captured.err
    entries = _manifest(out)
    assert entries["a"]["status"] == "ok" and entries["c"]["status"] == "ok"
    assert entries["b"]["status"] == "failed" and "b.png" in entries["b"]["error"]
    cache = LabelCache(out)
    assert [s.name for s, _ in cache.items()] == ["a", "c"] and list(cache.failed()) == ["b"]
    # fixed file: the re-run labels it and succeeds
    write_image(data / "b.png", rng.random((24, 32, 3)))
    assert main(argv) == 0
    assert _manifest(out)["b"]["status"] == "ok"



def test_a_clip_damaged_in_the_middle_fails_only_its_damaged_frames(tmp_path, teachers,
                                                                    capsys):
    """A clip is listed with the frame count of its container, damaged frames included. Those
    failed decoding uncounted, so every frame after them was read under a later frame's name,
    the ones skipped over failed too ('frame 6 not found (video has 5 frames)') and so did
    the clip's last, intact frames. Each damaged frame now fails alone, saying so; the rest
    are labelled under their own index."""
    from distill.data.label_cache import sha256_array
    clip = damaged_video(tmp_path / "hurt.mp4")
    cap = cv2.VideoCapture(str(clip))   # what reading it straight through decodes
    decoded = {}
    for i in range(30):
        ok, frame = cap.read()
        if ok:
            decoded[i] = frame
    cap.release()
    bad = sorted(set(range(30)) - set(decoded))
    assert bad and bad[-1] < 29 and len(bad) < 10, bad   # damage in the middle, not the end
    out = tmp_path / "cache"
    assert main(["--data", str(clip), "--out", str(out), "--teacher-weights", str(teachers[0]),
                 "--tile", "0", "--device", "cpu", "--quiet"]) == 1
    said = capsys.readouterr()
    last = bad[0] - 1
    assert [ln for ln in said.err.splitlines() if "skipped:" in ln] == [
        f"warning: skipped: hurt_{i:06d}: {clip}: frame {i} cannot be decoded (the file is "
        f"damaged there or ends before it; frame {last} is the last decoded before it)"
        for i in bad], said.err
    assert f"{30 - len(bad)} done, 0 skipped (up to date), {len(bad)} failed" in said.out
    # not "re-run to retry": a damaged frame fails on every run
    assert f"warning: {len(bad)} image{'s' * (len(bad) > 1)} failed (see warnings above): " \
        f"{'its' if len(bad) == 1 else 'their'} input cannot be decoded" in said.err, said.err
    assert "re-run to retry" not in said.err, said.err
    entries = _manifest(out)
    assert sorted(n for n, e in entries.items() if e["status"] == "failed") == \
        [f"hurt_{i:06d}" for i in bad]
    for i, frame in decoded.items():   # each label is of the frame its name says
        assert entries[f"hurt_{i:06d}"]["input_hash"] == sha256_array(frame), i


def test_bad_source_and_weights_exit_2(tmp_path, teachers, capsys):
    assert main(["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o"),
                 "--teacher-weights", str(teachers[0])]) == 2
    (tmp_path / "d").mkdir()
    write_image(tmp_path / "d" / "a.png", np.zeros((8, 8, 3), np.float32))
    assert main(["--data", str(tmp_path / "d"), "--out", str(tmp_path / "o"),
                 "--teacher-weights", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert "not found" in err


def test_an_out_that_holds_a_data_set_is_refused_before_it_becomes_a_label_cache(
        tmp_path, teachers, capsys):
    """`--out` naming a data set by mistake (a corpus, a paired folder, a folder of photos)
    wrote manifest.json and labels/ into it, after which `--data` refused it as "a label cache
    made by `sharpen labels`, not a data source"."""
    data = _paired(tmp_path / "data", 1, h=16, w=24)
    argv = ["--data", str(data), "--teacher-weights", str(teachers[0]), "--tile", "0",
            "--device", "cpu", "--quiet"]
    corpus = _paired(tmp_path / "corpus" / "train", 1, h=16, w=24).parent
    (corpus / "corpus.json").write_text("{}")
    photos = tmp_path / "photos"
    write_image(photos / "a.png", np.zeros((8, 8, 3), np.float32))
    for folder, what in ((corpus, "a photo corpus"), (_paired(tmp_path / "p", 1), "a paired"),
                         (photos, "images")):
        assert main([*argv, "--out", str(folder)]) == 2
        err = capsys.readouterr().err
        assert f"--out {folder} holds {what}" in err and "choose a new folder" in err, err
        assert not (folder / "manifest.json").exists()
    assert main([*argv, "--out", str(tmp_path / "cache")]) == 0   # a new folder
    assert main([*argv, "--out", str(tmp_path / "cache")]) == 0   # and its own cache again
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*argv, "--out", str(empty)]) == 0   # an empty folder


def test_threads_set_torchs_cpu_threads_and_a_negative_count_is_refused(tmp_path, teachers,
                                                                         capsys):
    """`sharpen labels` had no --threads: the teacher took every core of a shared machine."""
    data = _paired(tmp_path / "data", 1, h=16, w=24)
    argv = ["--data", str(data), "--teacher-weights", str(teachers[0]), "--tile", "0",
            "--device", "cpu", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "bad"), "--threads", "-1"]) == 2
    assert capsys.readouterr().err.strip() == (
        "sharpen labels: error: --threads must be >= 0 (0: MKL_NUM_THREADS or else "
        "OMP_NUM_THREADS when set, else a CPU limit's count, else all cores), got -1")
    assert not (tmp_path / "bad").exists()
    torch.set_num_threads(2)   # the autouse fixture puts it back
    assert main([*argv, "--out", str(tmp_path / "cache"), "--threads", "1"]) == 0
    assert torch.get_num_threads() == 1
    assert _manifest(tmp_path / "cache")["im00"]["status"] == "ok"


def test_labelling_twice_gives_the_same_pngs_and_run_json_names_the_software(tmp_path,
                                                                             teachers):
    """A colleague's labels made again: the same PNGs byte for byte with the same teacher,
    tiling and threads; another thread count moves a pixel by one in 16 bits, so run.json
    names the thread count and versions it ran with (it named none)."""
    from runtime.host import library_versions
    data = _paired(tmp_path / "data", 2)
    argv = ["--data", str(data), "--teacher-weights", str(teachers[0]), "--tile", "32",
            "--overlap", "8", "--device", "cpu", "--threads", "1", "--quiet"]
    for name in ("a", "b"):
        assert main([*argv, "--out", str(tmp_path / name)]) == 0
    for label in sorted((tmp_path / "a" / "labels").iterdir()):
        assert label.read_bytes() == (tmp_path / "b" / "labels" / label.name).read_bytes()
    env = json.loads((tmp_path / "a" / "run.json").read_text())["environment"]
    assert env["torch_threads"] == 1 and env["device"] == "cpu", env
    assert env["torch"] == library_versions(["torch"])["torch"] and "sharpen" in env


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_run_keeps_valid_files(tmp_path, teachers, sig, capsys):
    n, shape = 20, (48, 64, 3)   # enough that the signal usually lands mid-run
    data = _paired(tmp_path / "data", n, h=shape[0], w=shape[1], seed=3)
    out = tmp_path / "cache"
    proc = subprocess.Popen(_cli(data, out, teachers[0]), cwd=tmp_path, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            # kill after the second label: the manifest then holds at least one entry
            if (out / "labels").is_dir() and len(list((out / "labels").glob("[!.]*.png"))) >= 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None or proc.returncode == 0, proc.stderr.read().decode()
        if proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(30)
            err = proc.stderr.read().decode()
            # On a loaded machine the run can end between the check above and the signal.
            finished_first = (proc.returncode == 0 and "interrupted" not in err
                              and len(list((out / "labels").glob("[!.]*.png"))) == n)
            if sig == signal.SIGINT and not finished_first:   # one line and 130 (no traceback)
                assert proc.returncode == 130 and "Traceback" not in err, err
                assert err.strip().endswith("interrupted; what is done is kept: run the same "
                                            "command to continue"), err
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    labels = sorted(p for p in (out / "labels").glob("[!.]*.png"))
    assert labels
    for p in labels:
        assert _label_ok(p, shape), p
    # What a rerun finds: the manifest (written atomically, so it parses) and, after a kill,
    # the journal of the entries made since its last rewrite.
    from distill.data.label_cache import read_manifest_entries
    done_before = read_manifest_entries(out / "manifest.json")
    if done_before:
        for e in done_before.values():
            assert (out / e["label"]).is_file()
    if proc.returncode != 0 and done_before:
        # Training on the part-labelled cache is allowed, but not without a word.
        with pytest.warns(UserWarning, match=f"did not finish .*{len(done_before)} labels here "
                                             f"of the {n} it selected"):
            assert len(pairs_from_labels(out)) == len(done_before)
    # The rerun in this process (only the run interrupted needs one of its own).
    capsys.readouterr()
    rc = main(_cli(data, out, teachers[0])[3:])
    said = capsys.readouterr()
    assert rc == 0, said.err
    assert f"{len(done_before)} skipped" in said.out
    entries = _manifest(out)
    assert len(entries) == n and all(e["status"] == "ok" for e in entries.values())
    for e in entries.values():
        assert _label_ok(out / e["label"], shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # finished: nothing to say
        assert len(pairs_from_labels(out)) == n
    assert json.loads((out / "run.json").read_text())["complete"] is True


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_sigterm_is_an_interruption_that_says_so(tmp_path, teachers, name):
    """`kill` (or a scheduler, or `timeout`) ended the run with exit 143 and not a word; a
    dropped SSH connection (SIGHUP) killed it outright."""
    signum = getattr(signal, name)
    # Enough images that the signal lands mid-run, not while the run is already ending.
    data = _paired(tmp_path / "data", 40, seed=3)
    out = tmp_path / "cache"
    cmd = [sys.executable, "-m", "sharpen.cli", "labels", *_cli(data, out, teachers[0])[3:]]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        # Signalled once the manifest is on disk, not once a label is: a label goes in place
        # before the manifest that holds its entry is written (both under the manifest lock),
        # and a signal between the two left no manifest to check (FileNotFoundError).
        deadline = time.time() + 120
        while (time.time() < deadline and proc.poll() is None
               and not (out / "manifest.json").exists()):
            time.sleep(0.02)
        if proc.poll() is not None:
            pytest.skip("finished before it could be interrupted")
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if proc.returncode == 0 and "interrupted" not in err:
        pytest.skip("finished between the check and the signal")
    assert proc.returncode == 128 + signum and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == (f"sharpen labels: interrupted ({name}); what is done "
                                            "is kept: run the same command to continue"), err
    entries = _manifest(out)   # the cache stays consistent: every entry's label is whole
    assert entries and all(cv2.imread(str(out / e["label"]), cv2.IMREAD_UNCHANGED) is not None
                           for e in entries.values() if e["status"] == "ok")


def test_two_ranks_merge_into_one_manifest(tmp_path, teachers):
    n = 5
    data = _paired(tmp_path / "data", n, h=32, w=40, seed=4)
    out = tmp_path / "cache"
    procs = []
    for rank in range(2):
        env = dict(_env(), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
        procs.append(subprocess.Popen(_cli(data, out, teachers[0]), cwd=tmp_path, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (so, se) in zip(procs, outs):
        assert p.returncode == 0, se
    assert "labelling 3 (this rank's share of 5)" in outs[0][0]
    assert "labelling 2 (this rank's share of 5)" in outs[1][0]
    entries = _manifest(out)
    assert sorted(entries) == [f"im{i:02d}" for i in range(n)]
    assert all(e["status"] == "ok" and (out / e["label"]).is_file() for e in entries.values())
    assert not list(out.glob("manifest.rank*.json"))
    # a single-process re-run sees the merged cache as complete
    s = run_labels(str(data), out, teacher_weights=str(teachers[0]), tile=32, overlap=8,
                   device="cpu", progress=False)
    assert (s.done, s.skipped) == (0, n)


def test_merge_newest_entry_wins(tmp_path):
    old = {"a": {"status": "ok", "created": 1.0, "v": "old"},
           "b": {"status": "ok", "created": 5.0, "v": "b"}}
    new = {"a": {"status": "ok", "created": 2.0, "v": "new"}}
    assert merge_entries(new, old)["a"]["v"] == "new"
    assert merge_entries(old, new)["a"]["v"] == "new"
    # stale shard of an interrupted run with more ranks, plus this run's shard of rank 1
    write_manifest(tmp_path, old)
    write_manifest(tmp_path, new, tmp_path / "manifest.rank1.json")
    write_manifest(tmp_path, {"c": {"status": "ok", "created": 3.0}},
                   tmp_path / "manifest.rank5.json")
    write_manifest(tmp_path, {"d": {"status": "ok", "created": 3.0}},
                   tmp_path / "manifest.rank0.json")
    merged = merge_shards(tmp_path, rank=1, world=2)
    assert sorted(merged) == ["a", "b", "c", "d"] and merged["a"]["v"] == "new"
    # this rank's shard and the stale one are gone; rank 0's (still running) is kept
    assert sorted(p.name for p in tmp_path.glob("manifest.rank*.json")) == ["manifest.rank0.json"]
    assert sorted(_manifest(tmp_path)) == ["a", "b", "c", "d"]


class FakeTeacher:
    device = "cpu"
    config_name = "fake"
    weights_id = "fake-weights"
    model = None

    def sharpen(self, image, tile=0, overlap=0, batch_size=1):
        return np.clip(image * 1.2, 0, 1)


def test_video_frames_are_labelled_and_saved(tmp_path):
    video = tmp_path / "clip.avi"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 32))
    for i in range(4):
        vw.write(np.full((32, 48, 3), 30 + 50 * i, np.uint8))
    vw.release()
    out = tmp_path / "cache"
    s = run_labels(str(video), out, teacher=FakeTeacher(), tile=0, overlap=0, progress=False)
    assert (s.done, s.failed) == (4, 0)
    e = _manifest(out)["clip_000002"]
    assert e["frame"] == 2 and e["gt"] is None and e["input_file"] == "frames/clip_000002.png"
    items = LabelCache(out).items()
    assert [smp.name for smp, _ in items] == [f"clip_{i:06d}" for i in range(4)]
    smp, label = items[2]
    assert smp.input == out / "frames" / "clip_000002.png" and smp.frame is None
    s = run_labels(str(video), out, teacher=FakeTeacher(), tile=0, overlap=0, progress=False)
    assert (s.done, s.skipped) == (0, 4)
    ds = CropDataset(pairs_from_labels(out), crop=16)
    assert "gt" not in ds[0] and ds[0]["input"].shape == (3, 16, 16)


def test_limit_and_split(tmp_path):
    for split, n in (("train", 4), ("val", 2)):
        _paired(tmp_path / "data" / split, n, h=16, w=16)
    out = tmp_path / "cache"
    s = run_labels(str(tmp_path / "data"), out, teacher=FakeTeacher(), tile=0, overlap=0,
                   limit=3, progress=False)
    assert (s.done, s.total) == (3, 3)
    assert len(LabelCache(out)) == 3
    s = run_labels(str(tmp_path / "data"), tmp_path / "val", teacher=FakeTeacher(), tile=0,
                   overlap=0, split="val", progress=False)
    assert (s.done, s.total) == (2, 2)
    assert all("/val/input/" in e["input"] for e in _manifest(tmp_path / "val").values())


def test_same_names_from_two_sources_in_one_cache_are_warned_about(tmp_path, capsys):
    day1 = _paired(tmp_path / "day1", 2, h=16, w=16, seed=1)
    day2 = _paired(tmp_path / "day2", 2, h=16, w=16, seed=2)
    out = tmp_path / "cache"
    kw = dict(teacher=FakeTeacher(), tile=0, overlap=0, progress=False)
    run_labels(str(day1), out, **kw)
    with pytest.warns(SharpenWarning) as rec:
        run_labels(str(day2), out, **kw)
    said = " ".join(str(w.message) for w in rec)
    assert "has the name 'im00' of" in said and "its own --out" in said, said
    assert all("/day2/" in e["input"] for e in _manifest(out).values())


def test_a_teacher_worse_than_the_input_is_warned_about(tmp_path, capsys):
    data = _paired(tmp_path / "data", 2, h=16, w=16)
    # FakeTeacher brightens by 20 %: further from the ground truth than the blurred input
    with pytest.warns(SharpenWarning, match="further from the ground truth than the blurred "
                                            "inputs"):
        run_labels(str(data), tmp_path / "cache", teacher=FakeTeacher(), tile=0, overlap=0,
                   progress=False)


def test_without_progress_a_run_prints_nothing_and_warns_as_python_warnings(tmp_path, capsys):
    """run_labels(progress=False) hid the bar only: from Python it still printed what it
    labelled, its summary and its warnings, which a program could neither silence nor record.
    Its lines now go to `say` (printed with progress only; `sharpen labels --quiet` keeps them)
    and its warnings are SharpenWarnings."""
    data = _paired(tmp_path / "data", 2, h=16, w=16)
    (data / "input" / "im01.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage, not an image")
    with pytest.warns(SharpenWarning) as rec:
        s = run_labels(str(data), tmp_path / "cache", teacher=FakeTeacher(), tile=0, overlap=0,
                       progress=False)
    assert (s.done, s.failed) == (1, 1)
    said = [str(w.message) for w in rec]
    assert any(m.startswith("skipped: im01: ") for m in said), said
    assert ("1 image failed (see warnings above): its input cannot be decoded (damaged, "
            "truncated or not an image); replace or remove the damaged files: re-running fails "
            "it again") in said, said
    assert capsys.readouterr() == ("", "")
    lines: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SharpenWarning)   # a program may silence them
        run_labels(str(data), tmp_path / "cache", teacher=FakeTeacher(), tile=0, overlap=0,
                   progress=False, say=lines.append)
    assert capsys.readouterr() == ("", "")
    assert any(ln.startswith("labels: 0 done, 1 skipped (up to date), 1 failed") for ln in lines)


def test_failed_images_are_told_apart_damaged_ones_from_ones_a_rerun_may_label(tmp_path):
    """Every failure ended in "re-run to retry", a damaged image or video frame too, which
    fails on every run; only the others (the teacher out of memory, say) are retried now."""
    data = _paired(tmp_path / "data", 3, h=16, w=16)
    (data / "input" / "im01.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage, not an image")

    class OutOfMemoryOnIm02(FakeTeacher):
        def sharpen(self, image, **kw):
            if image.mean() == seen["im02"]:
                raise RuntimeError("CUDA out of memory")
            return super().sharpen(image, **kw)

    from distill.images import read_image
    seen = {"im02": read_image(data / "input" / "im02.png").mean()}
    with pytest.warns(SharpenWarning) as rec:
        s = run_labels(str(data), tmp_path / "cache", teacher=OutOfMemoryOnIm02(), tile=0,
                       overlap=0, progress=False)
    assert (s.done, s.failed, s.undecodable) == (1, 2, 1)
    said = [str(w.message) for w in rec if "failed (see warnings above)" in str(w.message)]
    assert said == ["2 images failed (see warnings above): 1 cannot be decoded (damaged, "
                    "truncated or not an image; replace or remove the damaged files: "
                    "re-running fails it again); re-run to retry the other 1"], said


def test_an_empty_input_file_is_counted_as_undecodable_not_retried(tmp_path):
    """A 0-byte input was among the failures 're-run to retry'; it never decodes, so it is
    told apart with the damaged ones."""
    data = _paired(tmp_path / "data", 2, h=16, w=16)
    (data / "input" / "im01.png").write_bytes(b"")
    with pytest.warns(SharpenWarning) as rec:
        s = run_labels(str(data), tmp_path / "cache", teacher=FakeTeacher(), tile=0, overlap=0,
                       progress=False)
    assert (s.done, s.failed, s.undecodable) == (1, 1, 1)
    said = [str(w.message) for w in rec if "failed (see warnings above)" in str(w.message)]
    assert said == ["1 image failed (see warnings above): its input cannot be decoded "
                    "(damaged, truncated or not an image); replace or remove the damaged "
                    "files: re-running fails it again"], said


def test_demo_validates_a_one_split_source_on_images_it_did_not_train_on(tmp_path, teachers,
                                                                         capsys):
    """`sharpen demo --data FOLDER` labelled the same images for training and validation, so
    its "validation after the fine-tune" scored the training images."""
    from distill.data.label_cache import MANIFEST, read_manifest_entries
    from distill.data.sources import SourceError
    from sharpen.demo import _validation_split
    from sharpen.cli import main as sharpen_main

    flat = _paired(tmp_path / "flat", 5)
    split, not_train, not_val = _validation_split(str(flat))
    # names that all end in a number read as a folder of frames: im03, next to the held-out
    # im04, is used by neither (the gap a clip gets)
    assert split == "train" and not_train == {"im03", "im04"} and \
        not_val == {f"im0{i}" for i in range(4)}
    split_root = tmp_path / "splits"
    _paired(split_root / "train", 2)
    _paired(split_root / "test", 2, seed=1)
    # train/test only: held out of train, so that stage 6 scores a test split it never saw
    # (validating on test chose the student on the images its quality gate then scored)
    assert _validation_split(str(split_root)) == ("train", {"im01"}, {"im00"})
    _paired(split_root / "val", 1, seed=2)
    assert _validation_split(str(split_root)) == ("val", set(), set())
    assert _validation_split(str(_paired(tmp_path / "two", 2)))[1:] == ({"im01"}, {"im00"})
    # A video: its held-out frames are not the neighbours of training frames.
    video = tmp_path / "clip.avi"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 32))
    for i in range(20):
        vw.write(np.full((32, 48, 3), 10 * i, np.uint8))
    vw.release()
    v_split, v_not_train, v_not_val = _validation_split(str(video))
    names = sorted(v_not_train | v_not_val)
    val = set(names) - v_not_val
    assert v_split == "train" and len(val) == 4 and val <= v_not_train
    trained = sorted(set(names) - v_not_train)
    assert len(trained) == 12 and names.index(min(val)) - names.index(max(trained)) == 5
    one = _paired(tmp_path / "one", 1)
    with pytest.raises(ValueError, match="at least 2 images"):
        _validation_split(str(one))
    assert sharpen_main(["demo", "--data", str(one), "--out", str(tmp_path / "d"),
                         "--quiet"]) == 2
    assert "the demo needs at least 2 images" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()

    # As the demo labels: every image it may train on, then validation; re-run with another
    # limit into the same folders (label manifests keep earlier entries), still disjoint.
    out = tmp_path / "labels"
    common = dict(teacher_weights=str(teachers[0]), tile=32, overlap=8, device="cpu",
                  progress=False)
    for limit in (2, 6):
        run_labels(str(flat), out / "train", exclude=not_train, limit=limit, **common)
        run_labels(str(flat), out / "val", exclude=not_val, limit=limit, **common)
        trained = set(read_manifest_entries(out / "train" / MANIFEST))
        held = set(read_manifest_entries(out / "val" / MANIFEST))
        assert held == {"im04"} and trained and not trained & held
    assert trained == not_val - not_train   # all but the held out and the gap
    with pytest.raises(SourceError, match="none left once the 5 held out"):
        run_labels(str(flat), out / "none", exclude={f"im{i:02d}" for i in range(5)}, **common)


def test_a_moved_folder_repoints_input_and_ground_truth(tmp_path, capsys):
    """Moving the data folder and re-running labels (what the stale-cache error asks) repointed
    the inputs only: the ground truth stayed at the old path (gone: no sample loaded; still
    there: training used the old folder's sharp images)."""
    import shutil
    kw = dict(teacher=FakeTeacher(), tile=0, overlap=0, progress=False)
    out = tmp_path / "cache"
    run_labels(str(_paired(tmp_path / "day1", 2, h=16, w=16)), out, **kw)
    shutil.move(tmp_path / "day1", tmp_path / "day2")
    s = run_labels(str(tmp_path / "day2"), out, **kw)
    assert (s.done, s.skipped) == (0, 2)
    for e in _manifest(out).values():
        assert "/day2/input/" in e["input"] and "/day2/target/" in e["gt"], e
        assert e["input_psnr"] < e["teacher_psnr"] or e["teacher_psnr"] > 0
    assert all(g.parent.parent.name == "day2" for _, _, g in pairs_from_labels(out))
    # A copy whose sharp image differs: measured against the copy's ground truth.
    shutil.copytree(tmp_path / "day2", tmp_path / "day3")
    write_image(tmp_path / "day3" / "target" / "im00.png", np.zeros((16, 16, 3), np.float32))
    before = _manifest(out)["im00"]["input_psnr"]
    run_labels(str(tmp_path / "day3"), out, **kw)
    e = _manifest(out)["im00"]
    assert "/day3/target/" in e["gt"] and e["input_psnr"] != before


def test_a_moved_input_whose_label_is_damaged_is_labelled_again_not_counted_as_found(tmp_path):
    """The summary's "N of them found by content at their input's new path" counted a moved
    input whose label could not be read back, and was made again: more than were skipped."""
    import shutil
    kw = dict(teacher=FakeTeacher(), tile=0, overlap=0, progress=False)
    out = tmp_path / "cache"
    run_labels(str(_paired(tmp_path / "day1", 2, h=16, w=16)), out, **kw)
    (out / _manifest(out)["im00"]["label"]).write_bytes(b"not an image")
    shutil.move(tmp_path / "day1", tmp_path / "day2")
    with pytest.warns(SharpenWarning, match="labelling im00 again"):
        s = run_labels(str(tmp_path / "day2"), out, **kw)
    assert (s.done, s.skipped, s.repointed) == (1, 1, 1)


def test_labels_of_an_embedded_set_that_moved_say_where_sharpen_data_must_point(tmp_path,
                                                                              monkeypatch):
    """SHARPEN_DATA moved (or the cache copied to a machine whose user cache holds the set
    elsewhere): training said the inputs "changed or went missing" and to label "that data"
    again, the embedded set, which is read from SHARPEN_DATA: not said."""
    kw = dict(teacher=FakeTeacher(), tile=0, overlap=0, progress=False, split="val", limit=1)
    out = tmp_path / "cache"
    monkeypatch.setenv("SHARPEN_DATA", str(tmp_path / "emb1"))
    run_labels("embedded", out, **kw)
    (tmp_path / "emb1").rename(tmp_path / "emb2")
    monkeypatch.setenv("SHARPEN_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(ValueError) as e:
        pairs_from_labels(out)
    said = str(e.value)
    assert ("as is the embedded set they were labelled from" in said
            and f"read from {tmp_path / 'elsewhere'} here" in said
            and f"`sharpen labels --data embedded --split val --limit 1 --tile 0 --overlap 0 "
                f"--out {out}` with SHARPEN_DATA set to the folder that set is in now" in said
            ), said
    monkeypatch.setenv("SHARPEN_DATA", str(tmp_path / "emb2"))
    s = run_labels("embedded", out, **kw)
    assert (s.done, s.skipped) == (0, 1)
    assert [i.parents[2] for i, _, _ in pairs_from_labels(out)] == [tmp_path / "emb2"]


def test_a_replaced_video_drops_its_old_frames(tmp_path, capsys):
    from distill.data.label_cache import prune_missing_inputs

    def clip(n: int, base: int) -> Path:
        vw = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10,
                             (48, 32))
        for i in range(n):
            vw.write(np.full((32, 48, 3), base + 30 * i, np.uint8))
        vw.release()
        return tmp_path / "clip.avi"

    out = tmp_path / "cache"
    kw = dict(teacher=FakeTeacher(), tile=0, overlap=0, progress=False, say=print)
    run_labels(str(clip(6, 20)), out, **kw)
    assert len(LabelCache(out)) == 6
    run_labels(str(clip(3, 40)), out, **kw)       # a shorter clip under the same name
    assert sorted(_manifest(out)) == [f"clip_{i:06d}" for i in range(3)]
    assert not (out / "frames" / "clip_000004.png").exists()
    assert not (out / "labels" / "clip_000004.png").exists()
    assert "removed 3 labels" in capsys.readouterr().out
    # A deleted video's frames stay: they train from the cache's own copies.
    (tmp_path / "clip.avi").unlink()
    assert prune_missing_inputs(out) == [] and len(LabelCache(out)) == 3


def _clip(path: Path, n: int, base: int, step: int = 30) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 32))
    for i in range(n):
        vw.write(np.full((32, 48, 3), base + step * i, np.uint8))
    vw.release()
    return path


def test_a_limit_that_takes_no_frame_of_some_clips_says_which(tmp_path, capsys):
    """--limit spreads over all frames of all clips, so a long clip takes most of them and a
    short one may give none: the run said only "spread over its N", and a user found whole
    clips missing from training."""
    foot = tmp_path / "footage"
    _clip(foot / "a_long.avi", 20, 20, step=5)
    _clip(foot / "b_short.avi", 2, 100)
    _clip(foot / "c_long.avi", 20, 20, step=5)
    s = run_labels(str(foot), tmp_path / "cache", teacher=FakeTeacher(), tile=0, overlap=0,
                   progress=False, say=print, limit=2)
    assert s.done == 2
    said = capsys.readouterr().out
    assert "labelling 2, spread over its 42 (--limit 2) on cpu" in said, said
    assert f"1 of its 3 videos gives no frame at --limit 2 ({foot / 'b_short.avi'}): a " \
           "clip's share of the limit follows its length" in said, said


def test_labels_of_a_clip_left_out_over_the_budget_are_not_called_another_sources(
        tmp_path, monkeypatch):
    """A clip labelled, then over SHARPEN_MAX_PIXELS on a rerun (the budget lowered), is left
    out of the listing: its labels were recorded as of inputs the --data does not list, and
    training advised labelling "one --data that holds all their images" into a new cache, when
    the clip is in that --data and raising the budget selects its labels again."""
    foot = tmp_path / "footage"
    _clip(foot / "a.avi", 2, 20)
    big = foot / "big.avi"
    big.parent.mkdir(parents=True, exist_ok=True)
    vw = cv2.VideoWriter(str(big), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 64))
    for i in range(2):
        vw.write(np.full((64, 96, 3), 40 + 60 * i, np.uint8))
    vw.release()
    cache = tmp_path / "cache"
    run_labels(str(foot), cache, teacher=FakeTeacher(), tile=0, overlap=0, progress=False)
    monkeypatch.setenv("SHARPEN_MAX_PIXELS", "2000")   # 96x64 = 6,144: big.avi is over it
    with pytest.warns(UserWarning, match=r"big\.avi: its frames are 96x64"):
        run_labels(str(foot), cache, teacher=FakeTeacher(), tile=0, overlap=0, progress=False)
    assert json.loads((cache / "run.json").read_text())["elsewhere"] == []
    with pytest.warns(SharpenWarning) as rec:
        assert len(pairs_from_labels(cache)) == 2
    said = " ".join(str(w.message) for w in rec)
    assert "another --data" not in said, said
    assert "big_000000" in said, said
    # Not "label a selection of that run's --data that includes them": that --data does, and
    # the same command leaves the clip out again.
    assert "includes them" not in said, said
    assert ("the 2 of clips that run left out (its warnings say why: over the pixel budget, "
            "SHARPEN_MAX_PIXELS, or unreadable) come back with a run that reads them") in said, said
    monkeypatch.delenv("SHARPEN_MAX_PIXELS")   # raised: its labels are selected, not made again
    again = run_labels(str(foot), cache, teacher=FakeTeacher(), tile=0, overlap=0, progress=False)
    assert (again.done, again.skipped) == (0, 4)


def test_a_folder_of_clips_is_labelled_frame_by_frame_without_collisions(tmp_path, capsys):
    """`sharpen labels --data footage/` on a folder of clips said "no images found"; labelled
    one by one into one cache (distill takes one), same-named clips of two days took each
    other's labels."""
    foot = tmp_path / "footage"
    _clip(foot / "day1" / "walk.avi", 3, 20)
    _clip(foot / "day2" / "walk.avi", 2, 100)
    write_image(foot / "still.png", np.full((32, 48, 3), 0.5, np.float32))
    out = tmp_path / "cache"
    kw = dict(teacher=FakeTeacher(), tile=0, overlap=0, progress=False, say=print)
    s = run_labels(str(foot), out, **kw)
    assert (s.done, s.failed) == (6, 0)
    said = capsys.readouterr()
    assert "1 images and" not in said.out and "1 image and 5 frames of 2 videos" in said.out
    m = _manifest(out)
    assert sorted(m) == ["day1/walk_000000", "day1/walk_000001", "day1/walk_000002",
                         "day2/walk_000000", "day2/walk_000001", "still"]
    assert m["day2/walk_000001"]["frame"] == 1 and m["day2/walk_000001"]["input_file"] == \
        "frames/day2/walk_000001.png"
    # each frame trains on its own clip's frame and label
    pairs = {Path(i).relative_to(out).as_posix(): lab for i, lab, _ in pairs_from_labels(out)
             if out in Path(i).parents}
    assert set(pairs) == {f"frames/day{d}/walk_{i:06d}.png" for d, n in ((1, 3), (2, 2))
                          for i in range(n)}
    day1 = cv2.imread(str(out / "frames/day1/walk_000001.png"))
    day2 = cv2.imread(str(out / "frames/day2/walk_000001.png"))
    assert abs(int(day1.mean()) - 50) < 8 and abs(int(day2.mean()) - 130) < 8
    # A clip added later is picked up; the others are up to date.
    _clip(foot / "day3" / "walk.avi", 2, 60)
    s = run_labels(str(foot), out, **kw)
    assert (s.done, s.skipped) == (2, 6)
    # A clip replaced under the same name: its old frames go, the new ones are labelled.
    _clip(foot / "day1" / "walk.avi", 2, 200)
    capsys.readouterr()
    s = run_labels(str(foot), out, **kw)
    assert s.done == 2 and "removed 1 label" in capsys.readouterr().out
    assert "day1/walk_000002" not in _manifest(out) and len(LabelCache(out)) == 7


def test_a_ground_truth_of_another_size_is_dropped_not_the_sample(tmp_path, capsys):
    """Labelled, then thrown away whole by distill (gt of another size), even with no
    ground-truth loss: the entry now keeps the sample and drops the ground truth."""
    data = _paired(tmp_path / "data", 2, h=16, w=16)
    write_image(data / "target" / "im01.png", np.zeros((20, 16, 3), np.float32))
    out = tmp_path / "cache"
    with pytest.warns(SharpenWarning, match="ground truth unusable for im01, which trains on "
                                            "its label alone"):
        run_labels(str(data), out, teacher=FakeTeacher(), tile=0, overlap=0, progress=False)
    e = _manifest(out)["im01"]
    assert e["status"] == "ok" and e["gt"] is None and "input_psnr" not in e
    items = pairs_from_labels(out)
    assert [(i.name, g is None) for i, _, g in items] == [("im00.png", False), ("im01.png", True)]
    # Batches mixing the two collate (a sample without ground truth takes its label there).
    from torch.utils.data import DataLoader
    ds = CropDataset(items, crop=8)
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["gt"].shape == (2, 3, 8, 8)
    assert torch.equal(ds[1]["gt"], ds[1]["target"]) and not torch.equal(ds[0]["gt"],
                                                                           ds[0]["target"])


def test_an_image_smaller_than_ssims_window_is_labelled_unscored(tmp_path):
    # It crashed the whole run (scikit-image: win_size exceeds image extent), every rerun too.
    data = _paired(tmp_path / "data", 2, h=16, w=16)
    rng = np.random.default_rng(1)
    for sub in ("input", "target"):
        write_image(data / sub / "im01.png", rng.random((3, 5, 3)).astype(np.float32))
    out = tmp_path / "cache"
    stats = run_labels(str(data), out, teacher=FakeTeacher(), tile=0, overlap=0, progress=False)
    assert stats.done == 2 and stats.failed == 0
    m = _manifest(out)
    assert m["im01"]["status"] == "ok" and "teacher_ssim" not in m["im01"]
    assert "teacher_ssim" in m["im00"]


def test_an_input_renamed_by_its_partners_deletion_is_labelled_once(tmp_path, capsys):
    """x.jpg and x.png are named x.jpg / x.png; once x.jpg is gone, x.png is named x: its old
    entry under x.png stayed beside the new one (the image trained twice)."""
    data = tmp_path / "data"
    rng = np.random.default_rng(3)
    for ext in ("png", "jpg"):
        img = rng.random((16, 16, 3)).astype(np.float32)
        write_image(data / "input" / f"x.{ext}", img)
        write_image(data / "target" / f"x.{ext}", img)
    out = tmp_path / "cache"
    kw = dict(teacher=FakeTeacher(), tile=0, overlap=0, progress=False)
    run_labels(str(data), out, **kw)
    names = sorted(_manifest(out))
    assert len(names) == 2, names
    for side in ("input", "target"):
        (data / side / "x.jpg").unlink()
    run_labels(str(data), out, **kw)
    entries = _manifest(out)
    assert len(entries) == 1 and next(iter(entries.values()))["input"].endswith("x.png"), entries
    assert len(pairs_from_labels(out)) == 1
    # Two names for one file (symlinks into a pool) are both the source's: both stay, and a
    # re-run labels nothing again.
    pool = tmp_path / "pool.png"
    write_image(pool, rng.random((16, 16, 3)).astype(np.float32))
    links = tmp_path / "links"
    for name in ("a", "b"):
        (links).mkdir(exist_ok=True)
        (links / f"{name}.png").symlink_to(pool)
    run_labels(str(links), tmp_path / "c2", **kw)
    s = run_labels(str(links), tmp_path / "c2", **kw)
    assert (s.done, s.skipped) == (0, 2) and len(_manifest(tmp_path / "c2")) == 2


def test_a_split_of_a_flat_folder_is_said_not_silently_ignored(tmp_path, capsys):
    data = tmp_path / "flat"
    for i in range(2):
        write_image(data / f"f{i}.png", np.random.default_rng(i).random((16, 16, 3)))
    kw = dict(teacher=FakeTeacher(), tile=0, overlap=0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SharpenWarning)
        run_labels(str(data), tmp_path / "a", **kw)
    with pytest.warns(SharpenWarning, match=r"has no split folders \(train/, val/, test/\): "
                                            "--split val does not apply"):
        s = run_labels(str(data), tmp_path / "b", split="val", **kw)
    assert s.done == 2


def test_quiet_labels_build_the_embedded_set_without_a_bar(tmp_path, capsys):
    s = run_labels(f"embedded:{tmp_path / 'emb'}", tmp_path / "cache", split="val",
                   teacher=FakeTeacher(), tile=0, overlap=0, progress=False)
    assert s.done == 4
    assert "embedded val" not in capsys.readouterr().err


def test_a_last_run_that_labelled_none_of_its_selection_is_not_called_an_empty_cache(
        tmp_path):
    """A `sharpen labels` run on new data interrupted before its first label selects what
    training uses, none of it labelled: `distill` said '<cache>: no finished labels (run
    `sharpen labels --out <cache>` first)' of a cache holding an earlier run's labels. It says
    that the last run labelled none of its selection, and what to do."""
    class Interrupted(FakeTeacher):
        def sharpen(self, image, tile=0, overlap=0, batch_size=1):
            raise KeyboardInterrupt

    out = tmp_path / "cache"
    kw = dict(tile=0, overlap=0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SharpenWarning)   # FakeTeacher is worse than the input
        run_labels(str(_paired(tmp_path / "a", 3, h=16, w=16)), out, teacher=FakeTeacher(),
                   **kw)
    new = tmp_path / "b"
    write_image(new / "clip.png", np.zeros((16, 16, 3), np.float32))
    with pytest.raises(KeyboardInterrupt):
        run_labels(str(new), out, teacher=Interrupted(), **kw)
    with pytest.raises(ValueError) as e:
        pairs_from_labels(out)
    said = str(e.value)
    assert "no finished labels" not in said, said
    assert (f"none of the 1 inputs that its last `sharpen labels` run (--data {new}) selected "
            "is labelled; that run did not finish, and data.labels uses that run's selection, "
            "not the 3 labels that earlier runs with another selection made there") in said


def test_training_uses_the_last_runs_selection_not_every_run_s_labels(tmp_path):
    """`sharpen labels --limit 4` and then `--limit 2` into one --out left the labels of both
    selections, and `sharpen distill data.labels=...` trained on all of them without a word.
    Training uses the last run's selection, and says what it leaves out; the labels stay, so
    that a run selecting them again skips them."""
    data = _paired(tmp_path / "data", 6, h=16, w=16)
    out = tmp_path / "cache"
    kw = dict(teacher=FakeTeacher(), tile=0, overlap=0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SharpenWarning)   # FakeTeacher is worse than the input
        run_labels(str(data), out, limit=4, **kw)
        run_labels(str(data), out, limit=2, **kw)
    from distill.data.sources import resolve_source, spread
    chosen = [smp.name for smp in spread(resolve_source(str(data), progress=False).samples, 2)]
    others = len(_manifest(out)) - 2
    assert len(chosen) == 2 and others > 0
    with pytest.warns(SharpenWarning, match=rf"uses the 2 labels that its last `sharpen labels` "
                                            rf"run \(--data {data} --limit 2\) selected; the "
                                            rf"{others} that earlier runs"):
        pairs = pairs_from_labels(out)
    assert sorted(inp.stem for inp, _, _ in pairs) == sorted(chosen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SharpenWarning)
        s = run_labels(str(data), out, **kw)
    assert (s.done, s.skipped) == (6 - 2 - others, 2 + others)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # every label selected: nothing to say
        assert len(pairs_from_labels(out)) == 6
    # Ranks without a process group (RANK/WORLD_SIZE by hand) record their selection too: the
    # record of the run before them must not select for them.
    from distill.dist import DistInfo
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SharpenWarning)
        run_labels(str(data), out, limit=2, **kw)
        for rank in (0, 1):
            run_labels(str(data), out, dist=DistInfo(rank, 2), **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(pairs_from_labels(out)) == 6


def test_labels_of_another_data_left_out_of_training_get_advice_that_can_be_followed(tmp_path):
    """`sharpen labels --data A` then `--data B` into one --out: training uses B's only and
    advised 'label a selection that includes them', which no run on B can do (and data.labels
    names one cache). It now says A's are of inputs B does not list and how to train on both;
    labels of B's own left out by --limit keep the advice to select them."""
    out = tmp_path / "cache"
    kw = dict(teacher=FakeTeacher(), tile=0, overlap=0, progress=False)
    a = _paired(tmp_path / "a", 3, h=16, w=16)
    b = tmp_path / "b"
    for i in range(3):
        write_image(b / f"shot{i}.png", np.full((16, 16, 3), i / 4, np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SharpenWarning)   # FakeTeacher is worse than the input
        run_labels(str(a), out, **kw)
        run_labels(str(b), out, **kw)
        run_labels(str(b), out, limit=2, **kw)
    with pytest.warns(SharpenWarning) as rec:
        assert len(pairs_from_labels(out)) == 2
    said = " ".join(str(w.message) for w in rec)
    assert ("to use the 1 of inputs it lists too, label a selection of that run's --data that "
            "includes them into this cache") in said, said
    assert ("the other 3 are of inputs it does not list (another --data or --split), which no "
            "run on it selects: data.labels reads one cache, so to train on both, label one "
            "--data that holds all their images") in said, said
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SharpenWarning)
        run_labels(str(b), out, **kw)
    with pytest.warns(SharpenWarning) as rec:
        assert len(pairs_from_labels(out)) == 3
    said = " ".join(str(w.message) for w in rec)
    assert "they are of inputs that run's --data does not list" in said, said
    assert "label a selection" not in said, said


def test_images_over_the_pixel_budget_are_told_to_raise_it_not_to_re_run(tmp_path,
                                                                         monkeypatch):
    """An image over SHARPEN_MAX_PIXELS was among the failures 're-run to retry', which fails
    it again: the closing warning says to raise SHARPEN_MAX_PIXELS, and so raised the re-run
    labels it."""
    data = _paired(tmp_path / "data", 2, h=16, w=16)
    out = tmp_path / "cache"
    kw = dict(teacher=FakeTeacher(), tile=0, overlap=0, progress=False)
    monkeypatch.setenv("SHARPEN_MAX_PIXELS", "100")   # 16x16 = 256 pixels each
    with pytest.warns(SharpenWarning) as rec:
        s = run_labels(str(data), out, **kw)
    said = [str(w.message) for w in rec if "failed (see warnings above)" in str(w.message)]
    assert said == ["2 images failed (see warnings above): they exceed the pixel budget; "
                    "raise SHARPEN_MAX_PIXELS above their size (the warnings above give it) and "
                    "re-run: a re-run alone fails them again"], said
    assert (s.done, s.failed, s.too_large, s.undecodable) == (0, 2, 2, 0)
    monkeypatch.setenv("SHARPEN_MAX_PIXELS", "1000")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SharpenWarning)   # FakeTeacher is worse than the input
        assert run_labels(str(data), out, **kw).done == 2


def test_a_video_opencv_cannot_open_may_be_a_codec_and_is_told_to_convert_it(tmp_path):
    """'OpenCV cannot open this video' was counted as damaged, with the advice to replace or
    remove the damaged files; it may be a codec this OpenCV build lacks. Both the file's
    message and the closing warning say so, and to convert it."""
    from distill.data.label_run import LabelRun
    from distill.data.sources import Sample
    from distill.dist import DistInfo
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video" * 8)
    out = tmp_path / "cache"
    out.mkdir()
    run = LabelRun(out, FakeTeacher(), 0, 0, 1, DistInfo())
    frames = [Sample(f"clip_{i:06d}", clip, None, i) for i in range(2)]
    with pytest.warns(SharpenWarning) as rec:
        stats = run.process(frames, progress=False)
        run.summary(stats, frames, "", lambda msg: None)
    said = [str(w.message) for w in rec]
    assert (f"skipped: clip_000000: {clip}: OpenCV cannot open this video (damaged, or in a "
            "codec this OpenCV build cannot decode: convert it, e.g. with ffmpeg to H.264 or "
            "MJPG)") in said, said
    assert ("2 images failed (see warnings above): their input cannot be decoded (damaged, "
            "truncated, not an image, or a video in a codec this OpenCV build lacks); replace "
            "or remove the damaged files, and convert the videos this OpenCV build cannot open "
            "(e.g. with ffmpeg to H.264 or MJPG): re-running fails them again") in said, said
    assert (stats.failed, stats.undecodable, stats.unopenable) == (2, 2, 2)
    # A footage folder lists such a clip as left out, in the same words.
    write_image(tmp_path / "footage" / "a.png", np.zeros((8, 8, 3), np.float32))
    (tmp_path / "footage" / "b.mp4").write_bytes(clip.read_bytes())
    from distill.data.sources import resolve_source
    with pytest.warns(UserWarning, match=r"b\.mp4: OpenCV cannot open this video \(damaged, or "
                                         r"in a codec this OpenCV build cannot decode"):
        resolve_source(str(tmp_path / "footage"))


def test_the_failed_images_advice_agrees_with_one_image():
    """One failed image was told "they exceed the pixel budget", "their size", "fails them
    again", and beside other failures "1 exceed the pixel budget"."""
    from distill.data.label_stats import LabelStats, failed_advice
    big = failed_advice(LabelStats(failed=1, too_large=1))
    assert big.startswith("1 image failed (see warnings above): it exceeds the pixel budget; "
                          "raise SHARPEN_MAX_PIXELS above its size"), big
    assert big.endswith("a re-run alone fails it again"), big
    mixed = failed_advice(LabelStats(failed=3, undecodable=1, too_large=1))
    assert mixed.startswith("3 images failed (see warnings above): 1 cannot be decoded "), mixed
    assert "re-running fails it again); 1 exceeds the pixel budget (raise SHARPEN_MAX_PIXELS " \
        "above its size" in mixed, mixed
    assert mixed.endswith("re-run to retry the other 1"), mixed
    two = failed_advice(LabelStats(failed=2, too_large=2))   # as before
    assert "2 images failed (see warnings above): they exceed the pixel budget; " in two


class _OtherTeacher(FakeTeacher):
    """Another teacher's weights; Ctrl-C (KeyboardInterrupt) before its label number `stop`."""
    weights_id = "other-weights"

    def __init__(self, stop: int = 10**9):
        self.calls, self.stop = 0, stop

    def sharpen(self, image, tile=0, overlap=0, batch_size=1):
        self.calls += 1
        if self.calls >= self.stop:
            raise KeyboardInterrupt
        return np.clip(image * 0.8, 0, 1)


def test_labels_of_two_teachers_in_one_cache_are_said_before_training(tmp_path):
    """A cache labelled by one teacher, then relabelled by another (new weights) and stopped
    part-way, held 2 labels of the new teacher and 3 of the old: `distill` warned only that the
    run did not finish, '5 labels here of the 5 it selected', and trained on both teachers'
    outputs mixed."""
    data = _paired(tmp_path / "data", 5, h=16, w=16)
    out = tmp_path / "cache"
    kw = dict(tile=0, overlap=0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SharpenWarning)   # FakeTeacher is worse than the input
        run_labels(str(data), out, teacher=FakeTeacher(), **kw)
        with pytest.raises(KeyboardInterrupt):
            run_labels(str(data), out, teacher=_OtherTeacher(stop=3), **kw)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        assert len(pairs_from_labels(out)) == 5
    said = " ".join(str(w.message) for w in rec)
    assert ("labels of 2 teachers: the newest 2 by weights other-weights, 3 by weights "
            "fake-weights") in said, said
    assert "run the same labels command again" in said, said
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SharpenWarning)
        run_labels(str(data), out, teacher=_OtherTeacher(), **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # one teacher again: nothing to say
        assert len(pairs_from_labels(out)) == 5


def test_a_run_that_replaces_another_teachers_labels_says_so_before_it_starts(tmp_path):
    """Labels made with the official weights, then the README's command run again without
    --teacher-weights: the shipped teacher replaced every label, hours of work, said only as
    '5 done, 0 skipped'. It is said before the teacher runs (a wrong flag can be stopped)."""
    data = _paired(tmp_path / "data", 5, h=16, w=16)
    out = tmp_path / "cache"
    kw = dict(overlap=0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SharpenWarning)   # FakeTeacher is worse than the input
        run_labels(str(data), out, teacher=FakeTeacher(), tile=0, **kw)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        s = run_labels(str(data), out, teacher=_OtherTeacher(), tile=0, limit=3, **kw)
    said = " ".join(str(w.message) for w in rec)
    assert s.done == 3
    assert (f"{out}: this run's teacher (weights other-weights) replaces 3 labels that "
            "another teacher made here (weights fake-weights)") in said, said
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        run_labels(str(data), out, teacher=_OtherTeacher(), tile=0, **kw)
    said = " ".join(str(w.message) for w in rec)
    assert "replaces 2 labels" in said and "replaces 3" not in said, said
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        run_labels(str(data), out, teacher=_OtherTeacher(), tile=16, **kw)
    said = " ".join(str(w.message) for w in rec)
    assert ("replaces 5 labels that it made here at another tiling (tile 0, overlap 0)"
            in said), said


def test_an_interrupted_run_says_how_far_it_got(tmp_path):
    """Ctrl-C ended a run with 'interrupted; what is done is kept' alone: after hours of
    labelling, nothing said how many labels were made and how many remain."""
    data = _paired(tmp_path / "data", 5, h=16, w=16)
    out = tmp_path / "cache"
    kw = dict(tile=0, overlap=0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SharpenWarning)   # FakeTeacher is worse than the input
        run_labels(str(data), out, teacher=_OtherTeacher(), limit=1, **kw)
        said: list[str] = []
        with pytest.raises(KeyboardInterrupt):
            run_labels(str(data), out, teacher=_OtherTeacher(stop=3), say=said.append, **kw)
    assert said[-1] == f"labels: interrupted: 2 done, 1 skipped (up to date), of 5; 2 left " \
                      f"for the same command to label into {out}", said


def test_the_run_ends_naming_the_caches_as_training_takes_them(tmp_path, teachers, capsys,
                                                               monkeypatch):
    """The last lines counted the labels but named no folder, and the distill keys that take
    the caches were only in --help: the user had to piece `data.labels=...` together."""
    data = tmp_path / "footage"
    rng = np.random.default_rng(3)
    for i in range(5):
        write_image(data / f"shot{i}.png", rng.random((24, 32, 3)))
    out, val = tmp_path / "my labels" / "train", tmp_path / "my labels" / "val"
    base = ["--data", str(data), "--out", str(out), "--teacher-weights", str(teachers[0]),
            "--tile", "32", "--overlap", "8", "--device", "cpu", "--quiet"]
    monkeypatch.chdir(REPO)   # the config is named as the README names it, from the checkout
    assert main(base) == 0
    said = capsys.readouterr().out.splitlines()
    run = "sharpen distill --config configs/distill-fast.yaml"
    assert said[-2] == f"train on it: {run} 'data.labels={out}'", said
    assert main([*base, "--hold-out", "0.2", "--val-out", str(val)]) == 0
    said = capsys.readouterr().out.splitlines()
    assert said[-2] == f"train on them: {run} 'data.labels={out}' 'data.val_labels={val}'", said
    # Footage users fine-tune the shipped student (README's recipe): the line above alone
    # led them to train from scratch, the config's 8000 steps at lr 2e-3, hours on a CPU.
    # Into a folder named for the cache: in the config's runs/student-fast, the from-scratch
    # line's too, one resumed the other (init= then ignored), and evaluate and export named
    # the fine-tune student-fast-best beside the shipped student-fast.
    assert said[-1] == (f"or fine-tune the shipped fast on them: {run} init=fast "
                        "val_start=true optim.lr=5e-5 optim.warmup_steps=10 optim.steps=300 "
                        f"'data.labels={out}' 'data.val_labels={val}' out=runs/fast-train"), said
    monkeypatch.chdir(tmp_path)   # elsewhere: the checkout's config by its full path
    assert main(base) == 0
    said = capsys.readouterr().out.splitlines()
    assert said[-2].startswith(f"train on it: sharpen distill --config "
                               f"{REPO / 'configs' / 'distill-fast.yaml'} "), said


def test_labels_made_in_another_precision_are_kept_and_said(tmp_path, teachers):
    """Labels record the device and precision they were made in; a run in another precision
    (cuda bf16 labels, now `--device cpu`: fp32) keeps them, as remaking a GPU's labels on a CPU
    takes hours, but says so before the teacher runs, with how to remake them. Labels in the
    same precision on another device are kept unsaid."""
    from distill.teacher import Teacher

    data = _paired(tmp_path / "data", 3, h=16, w=16)
    out = tmp_path / "cache"
    kw = dict(tile=0, overlap=0, progress=False)
    bf16 = Teacher.load(teachers[0], device="cpu")
    bf16.amp_dtype = torch.bfloat16   # autocast on the CPU: what a GPU's labels are made in
    assert bf16.precision == "bf16"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SharpenWarning)
        assert run_labels(str(data), out, teacher=bf16, limit=2, **kw).done == 2
    assert {e["teacher_precision"] for e in _manifest(out).values()} == {"bf16"}
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        s = run_labels(str(data), out, teacher=Teacher.load(teachers[0], device="cpu"), **kw)
    said = " ".join(str(w.message) for w in rec)
    assert (s.done, s.skipped) == (1, 2), said
    assert (f"{out}: keeps 2 labels made in another precision (2 on cpu bf16; this run "
            "computes in fp32 on cpu); to remake them, label into a new --out") in said, said
    assert sorted(e["teacher_precision"] for e in _manifest(out).values()) == [
        "bf16", "bf16", "fp32"]
    # the same precision on another device: kept, unsaid
    entries = _manifest(out)
    for e in entries.values():
        e["teacher_device"] = "cuda"
        e["teacher_precision"] = "fp32"
    write_manifest(out, entries, out / "manifest.json")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        s = run_labels(str(data), out, teacher=Teacher.load(teachers[0], device="cpu"), **kw)
    assert (s.done, s.skipped) == (0, 3)
    assert "precision" not in " ".join(str(w.message) for w in rec)


def _torchrun_labels(cli: list[str]) -> tuple[str, str]:
    """`sharpen labels` (its arguments as `_cli` gives them) under torchrun with 2 processes on
    a free port; its stdout and stderr, once it exited 0. The group is killed if it hangs."""
    with torchrun(["-m", "distill.data.labels", *cli[3:]], REPO, env=_env(),
                  stderr=subprocess.PIPE) as proc:
        out, err = proc.communicate(timeout=150)
    assert proc.returncode == 0, err[-3000:]
    return out, err


def test_a_hold_out_under_torchrun_labels_both_caches(tmp_path, teachers):
    """`labels --hold-out` under torchrun set up its gloo group again for --val-out under the
    same store: rank 1 connected to rank 0's closed first group and failed, rank 0 hung in
    the barrier until torchrun killed it; the validation cache was never labelled."""
    data = tmp_path / "GOPRO_Large"
    rng = np.random.default_rng(0)
    for seq in ("GOPR0372_07_00", "GOPR0374_11_00", "GOPR0378_13_00"):   # one held out whole
        for i in range(2):
            sharp = rng.random((32, 40, 3)).astype(np.float32)
            write_image(data / "train" / seq / "sharp" / f"{i:06d}.png", sharp)
            write_image(data / "train" / seq / "blur" / f"{i:06d}.png", cv2.blur(sharp, (5, 5)))
    out, err = _torchrun_labels(_cli(data, tmp_path / "train", teachers[0], "--hold-out", "0.34",
                                     "--val-out", str(tmp_path / "val")))
    assert len(_manifest(tmp_path / "train")) == 4 and len(_manifest(tmp_path / "val")) == 2
    for cache in ("train", "val"):
        assert json.loads((tmp_path / cache / "run.json").read_text())["complete"] is True
    # Rank 1 started the validation run, which reads the training cache for labels to reuse,
    # while rank 0 still merged that cache's shards and deleted them (a shard gone as it was
    # read: "unreadable label manifest", its labels made again). Rank 0 says it merged only
    # after; rank 1's first line of the validation run must come later.
    # Positions in the text, not lines: torchrun's two ranks can write into one line.
    merged = [m.start() for m in re.finditer(
        re.escape(f"merged manifest: {tmp_path / 'train'}"), out)]
    val_start = [m.start() for m in re.finditer(r"\[rank 1/2\][^\n\[]*labelling", out)]
    assert len(merged) == 1 and len(val_start) == 2 and merged[0] < val_start[1], out
    assert "unreadable label manifest" not in err, err
    # Rank 0's lines of the whole cache carry no rank tag, as its summary.
    assert not re.search(r"\[rank \d+/\d+\] merged manifest", out), out


@pytest.mark.filterwarnings(   # the ranks' warnings carry their tag in front
    "ignore:\\[rank .*the teacher's outputs are further:runtime.warn.SharpenWarning")
def test_a_rank_resuming_an_interrupted_run_keeps_the_labels_its_shard_holds(tmp_path, teachers):
    """A Ctrl-C under torchrun leaves each rank's entries in manifest.rank<k>.json. The re-run
    skipped those labels as up to date, then rewrote its shard with only the labels it made
    itself: the merged manifest lost every label of the interrupted run (4 of GoPro's 8),
    and run.json called the cache complete."""
    from distill.dist import DistInfo
    data = _paired(tmp_path / "data", 6, h=32, w=40, seed=5)
    out = tmp_path / "cache"
    kw = dict(teacher_weights=str(teachers[0]), tile=32, overlap=8, device="cpu",
              progress=False)
    for rank in (0, 1):
        run_labels(str(data), out, dist=DistInfo(rank, 2), **kw)
    entries = _manifest(out)
    # What the Ctrl-C left: each rank's first label, in its shard; no manifest.json yet.
    (out / "manifest.json").unlink()
    for rank in (0, 1):
        first, *rest = sorted(entries)[rank::2]
        write_manifest(out, {first: entries[first]}, out / f"manifest.rank{rank}.json")
        for name in rest:
            (out / entries[name]["label"]).unlink()
    for rank in (0, 1):
        s = run_labels(str(data), out, dist=DistInfo(rank, 2), **kw)
        assert (s.done, s.skipped) == (2, 1)
    assert sorted(_manifest(out)) == sorted(entries)
    assert not list(out.glob("manifest.rank*.json"))


def test_under_torchrun_the_summary_and_the_teacher_warning_are_said_once_for_the_whole_cache(
        tmp_path, teachers):
    """Each rank printed its own `labels: ... of 3` / `of 2`, `vs ground truth` and "the
    teacher's outputs are further from the ground truth" lines, each of its share only: two
    summaries, neither of the cache, and the same warning twice."""
    data = _paired(tmp_path / "data", 5, h=32, w=40, seed=6)
    out, err = _torchrun_labels(_cli(data, tmp_path / "cache", teachers[0]))
    entries = _manifest(tmp_path / "cache")
    said = [ln for ln in out.splitlines() if "labels: " in ln]
    assert len(said) == 1 and said[0].startswith("labels: 5 done, 0 skipped (up to date), "
                                                 "0 failed, of 5"), out
    gt = [ln for ln in out.splitlines() if "vs ground truth" in ln]
    tp = np.mean([e["teacher_psnr"] for e in entries.values()])
    assert gt == [f"vs ground truth (5 images): teacher PSNR {tp:.2f} dB SSIM "
                  f"{np.mean([e['teacher_ssim'] for e in entries.values()]):.4f}; input PSNR "
                  f"{np.mean([e['input_psnr'] for e in entries.values()]):.2f} dB SSIM "
                  f"{np.mean([e['input_ssim'] for e in entries.values()]):.4f}"], out
    worse = [ln for ln in err.splitlines() if "further from the ground truth" in ln]
    assert len(worse) == 1 and "[rank" not in worse[0] and f"({tp:.2f} against" in worse[0], err
    # what only a rank knows stays said by it
    assert "labelling 3 (this rank's share of 5)" in out and "labelling 2 (this rank's" in out


class _InterruptedTeacher(FakeTeacher):
    """Ctrl-C as the teacher runs on its `after`+1-th image."""
    def __init__(self, after: int):
        self.left = after

    def sharpen(self, image, tile=0, overlap=0, batch_size=1):
        if not self.left:
            raise KeyboardInterrupt
        self.left -= 1
        return super().sharpen(image, tile, overlap, batch_size)


# FakeTeacher's outputs are worse than its inputs: rank 1 (no process group) says so, expected
@pytest.mark.filterwarnings("ignore:.*further from the ground truth:UserWarning")
def test_an_interrupted_rank_0_says_how_far_the_whole_cache_got(tmp_path, capsys):
    """Each rank said `[rank k/2] labels: interrupted: 1 done, 0 skipped, of 3; 2 left ...`
    of its share: nobody said how much of the cache the same command had left to label."""
    from distill.dist import DistInfo
    data = _paired(tmp_path / "data", 5, h=32, w=40, seed=7)
    out = tmp_path / "cache"
    kw = dict(tile=0, overlap=0, say=print)
    run_labels(str(data), out, teacher=FakeTeacher(), dist=DistInfo(1, 2), **kw)   # 2 of 5
    capsys.readouterr()
    with pytest.raises(KeyboardInterrupt):
        run_labels(str(data), out, teacher=_InterruptedTeacher(1), dist=DistInfo(0, 2),
                   progress=False, **kw)
    said = [ln for ln in capsys.readouterr().out.splitlines() if "labels: interrupted" in ln]
    assert said == [f"labels: interrupted: 3 of 5 labelled in {out} (all ranks' shares); 2 "
                    "left for the same command to label"], said


class _NewTeacher(_InterruptedTeacher):
    weights_id = "new-weights"


@pytest.mark.filterwarnings("ignore:.*further from the ground truth:UserWarning")
def test_an_interrupted_rank_0_does_not_count_another_teachers_labels_as_done(tmp_path,
                                                                              capsys):
    """Relabelling a cache with a new teacher under torchrun, a Ctrl-C after one label said
    `interrupted: 5 of 5 labelled ...; 0 left`: the old teacher's labels, which the same
    command makes again, counted as this run's."""
    from distill.dist import DistInfo
    data = _paired(tmp_path / "data", 5, h=32, w=40, seed=8)
    out = tmp_path / "cache"
    kw = dict(tile=0, overlap=0, say=print)
    run_labels(str(data), out, teacher=FakeTeacher(), progress=False, **kw)   # the old teacher
    capsys.readouterr()
    with pytest.raises(KeyboardInterrupt), pytest.warns(
            SharpenWarning, match=r"teacher \(weights new-weights\) replaces 3 labels"):
        run_labels(str(data), out, teacher=_NewTeacher(1), dist=DistInfo(0, 2),
                   progress=False, **kw)
    said = [ln for ln in capsys.readouterr().out.splitlines() if "labels: interrupted" in ln]
    assert said == [f"labels: interrupted: 1 of 5 labelled in {out} (all ranks' shares); 4 "
                    "left for the same command to label"], said


def test_the_tile_warning_names_the_crops_the_teacher_recorded_it_was_trained_on(tmp_path,
                                                                                capsys):
    """The --tile warning said "less than its 128 px training crops" of every teacher, the
    shipped one too, whose checkpoint records 256 px crops (configs/teacher-crop256.yaml)."""
    from sharpen.cli import main
    torch.manual_seed(0)
    m = build_restormer("tiny")
    weights = tmp_path / "t256.pt"
    atomic_save(make_checkpoint(m, kind="teacher", arch="restormer",
                                arch_args=m.config.to_dict(), config={"data": {"crop": 256}}),
                weights)
    data = _paired(tmp_path / "data", 1)
    with pytest.warns(SharpenWarning, match=r"--tile 192 gives the teacher 192 px of context "
                      r"per tile, less than the 256 px training crops its checkpoint records"):
        run_labels(str(data), tmp_path / "c", teacher_weights=str(weights), tile=192,
                   device="cpu", progress=False)
    img = next((data / "input").iterdir())
    assert main(["teacher", str(img), "--out", str(tmp_path / "t"), "--teacher-weights",
                 str(weights), "--tile", "64", "--device", "cpu", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "--tile 64 gives the teacher 64 px of context per tile, less than the 256 px " \
           "training crops its checkpoint records" in err and "128" not in err, err
    assert main(["teacher", str(img), "--out", str(tmp_path / "t3"), "--teacher-weights",
                 str(weights), "--tile", "256", "--device", "cpu", "--quiet"]) == 0
    assert "context" not in capsys.readouterr().err


def test_gopro_blur_on_a_source_that_is_not_a_gopro_root_is_said_to_be_ignored(
        tmp_path, teachers, capsys):
    """`labels --gopro-blur blur_gamma` on a paired folder labelled its input/ images as the
    option did not exist, without a word: read as labels of GoPro's gamma-blurred inputs."""
    data = _paired(tmp_path / "data", 2, h=32, w=40, seed=8)
    assert main(["--data", str(data), "--out", str(tmp_path / "cache"), "--teacher-weights",
                 str(teachers[0]), "--tile", "32", "--overlap", "8", "--device", "cpu",
                 "--quiet", "--gopro-blur", "blur_gamma"]) == 0
    err = capsys.readouterr().err
    said = [ln for ln in err.splitlines() if "--gopro-blur" in ln]
    assert len(said) == 1 and (f"--gopro-blur blur_gamma is ignored: {data} (paired) is not a "
                               "GoPro layout") in said[0], err
    assert len(_manifest(tmp_path / "cache")) == 2


class _StartsAnotherRun(FakeTeacher):
    """On its first image, a second run into the same cache starts (another terminal, a cron
    job) with its own --data, and is stopped (Ctrl-C) after one label."""

    def __init__(self, other_data: Path, out: Path):
        self.other_data, self.out, self.started = other_data, out, False

    def sharpen(self, image, tile=0, overlap=0, batch_size=1):
        if not self.started:
            self.started = True
            with pytest.raises(KeyboardInterrupt):
                run_labels(str(self.other_data), self.out, teacher=_OtherTeacher(stop=2),
                           tile=0, overlap=0, progress=False)
        return super().sharpen(image)


def test_a_run_that_ends_does_not_call_a_later_interrupted_runs_record_complete(tmp_path):
    """Two `labels` runs into one --out at once: the one started second (another --data) was
    stopped part-way, then the first ended and marked the run record, by then the second's,
    complete: training took the second run's selection as finished, 1 label of its 4, without
    the 'did not finish' warning."""
    first = _paired(tmp_path / "first", 3, h=16, w=16, seed=1)
    second = tmp_path / "second"
    for i in range(4):
        rng = np.random.default_rng(10 + i)
        write_image(second / "input" / f"s{i}.png", rng.random((16, 16, 3)).astype(np.float32))
        write_image(second / "target" / f"s{i}.png", rng.random((16, 16, 3)).astype(np.float32))
    out = tmp_path / "cache"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SharpenWarning)   # FakeTeacher is worse than the input
        s = run_labels(str(first), out, teacher=_StartsAnotherRun(second, out), tile=0,
                       overlap=0, progress=False)
    assert s.done == 3
    record = json.loads((out / "run.json").read_text())
    assert record["data"] == str(second.resolve()) and record["selected"] == 4
    assert record["complete"] is False, record
    with pytest.warns(SharpenWarning, match="the 3 that earlier runs .* are left out"), \
            pytest.warns(UserWarning, match="did not finish .*; 1 labels? here of the 4 it"):
        assert len(pairs_from_labels(out)) == 1


def test_a_label_and_its_entry_come_from_the_same_run_when_two_label_one_name(tmp_path,
                                                                              monkeypatch):
    """Two `labels` runs with other teachers into one --out at once, labelling the same image:
    the other run's label and entry went in between this run's label and its entry, which
    left the other teacher's label under an entry naming this run's teacher, and every later
    run took it as this teacher's, up to date. The other run is started where this one
    measures the label against the ground truth, between making it and recording it."""
    from distill.data.label_run import LabelRun

    data = _paired(tmp_path / "data", 1, h=16, w=16)
    out = tmp_path / "cache"
    measure = LabelRun._gt_metrics
    other_ran = []

    def gt_metrics(self, sample, image, label, tag):
        if not other_ran:
            other_ran.append(True)
            run_labels(str(data), out, teacher=_OtherTeacher(), tile=0, overlap=0,
                       progress=False)
        return measure(self, sample, image, label, tag)

    monkeypatch.setattr(LabelRun, "_gt_metrics", gt_metrics)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SharpenWarning)   # FakeTeacher is worse than the input
        run_labels(str(data), out, teacher=FakeTeacher(), tile=0, overlap=0, progress=False)
    assert other_ran
    entry = _manifest(out)["im00"]
    label = cv2.imread(str(out / entry["label"]), cv2.IMREAD_UNCHANGED)[..., ::-1] / 65535.0
    blurred = cv2.imread(str(data / "input" / "im00.png"))[..., ::-1] / 255.0
    made = {"fake-weights": FakeTeacher().sharpen(blurred),
            "other-weights": _OtherTeacher().sharpen(blurred)}
    assert np.abs(label - made[entry["weights_hash"]]).max() < 1e-3, entry["weights_hash"]


def _bar_ends(err: str, n: int) -> bool:
    """Whether the progress lines in `err` ended at n of n tiles, their total never above n."""
    lines = err.splitlines()
    return (any(f" {n}/{n} tile" in line for line in lines)
            and not any(re.search(rf" \d+/{n + k} tile", line) for line in lines
                        for k in range(1, 4 * n)))


def test_the_bar_counts_tiles_over_the_selection_not_the_labels_already_made(tmp_path,
                                                                             teachers, capsys,
                                                                             monkeypatch):
    """Counted in images, the bar sat still for minutes on a 48-megapixel photo (seconds per
    tile on a CPU), its rate and ETA those of the images so far."""
    monkeypatch.setenv("SHARPEN_PROGRESS_INTERVAL", "0")   # a progress line each tile
    from runtime.tiling import count_tiles
    data = _paired(tmp_path / "data", 2)
    out = tmp_path / "cache"
    kw = dict(tile=32, overlap=8, device="cpu")
    s = run_labels(str(data), out, teacher_weights=str(teachers[0]), **kw)
    small = count_tiles(40, 56, 32, 8)
    err = capsys.readouterr().err
    assert s.done == 2 and _bar_ends(err, 2 * small), err
    assert "2/2: im01" in err, err   # the image in flight is named
    # A bigger image added: the labels already made do not count.
    rng = np.random.default_rng(1)
    big = rng.random((72, 96, 3)).astype(np.float32)
    write_image(data / "input" / "im09.png", cv2.blur(big, (5, 5)))
    write_image(data / "target" / "im09.png", big)
    s = run_labels(str(data), out, teacher_weights=str(teachers[0]), **kw)
    err = capsys.readouterr().err
    assert (s.done, s.skipped) == (1, 2) and _bar_ends(err, count_tiles(72, 96, 32, 8)), err
    # A teacher whose sharpen takes no on_tile=: its tiles count as each image ends.
    s = run_labels(str(data), tmp_path / "stub", teacher=FakeTeacher(), tile=32, overlap=8)
    err = capsys.readouterr().err
    assert s.done == 3 and _bar_ends(err, 2 * small + count_tiles(72, 96, 32, 8)), err


def test_a_run_without_its_bar_reads_no_headers_for_it(tmp_path, monkeypatch):
    """The bar's tile count read the first 256 KiB of every input before the first label,
    with the bar off (--quiet, the demo's --quiet) as well: a selection's worth of reads on a
    network disk, for nothing shown."""
    import runtime.imageio

    read = []
    real = runtime.imageio.file_header_size
    monkeypatch.setattr(runtime.imageio, "file_header_size",
                        lambda p: read.append(p) or real(p))
    data = _paired(tmp_path / "data", 2)
    s = run_labels(str(data), tmp_path / "quiet", teacher=FakeTeacher(), tile=32, overlap=8,
                   progress=False)
    assert s.done == 2 and read == []
    s = run_labels(str(data), tmp_path / "shown", teacher=FakeTeacher(), tile=32, overlap=8)
    assert s.done == 2 and len(read) == 2   # the bar's, when it is shown


def _spy_manifest_writes(monkeypatch) -> list[int]:
    """The entry count of each manifest.json written, by the real writer (called through)."""
    from distill.data import label_cache
    sizes: list[int] = []
    real = label_cache.atomic_write_json

    def counted(path, obj, *a, **kw):
        if Path(path).name == "manifest.json":
            sizes.append(len(obj["entries"]))
        return real(path, obj, *a, **kw)
    monkeypatch.setattr(label_cache, "atomic_write_json", counted)
    return sizes


def test_a_run_of_n_labels_writes_o_n_manifest_entries_not_n_squared(tmp_path, monkeypatch):
    """The manifest was rewritten whole after each label: a run of n labels wrote n^2/2
    entries (4,000 16x16 images took 601 s with the tiny teacher, 1,000 took 43 s; 50,000
    dashcam frames, a 50 MB manifest per label). Each entry now goes to a journal, folded into
    the manifest as it doubles and when the run ends."""
    n = 96
    data = _paired(tmp_path / "data", n, h=16, w=16)
    out = tmp_path / "cache"
    sizes = _spy_manifest_writes(monkeypatch)
    s = run_labels(str(data), out, teacher=FakeTeacher(), tile=0, overlap=0, progress=False)
    assert s.done == n
    assert sum(sizes) <= 4 * n, sizes   # was 4752: n(n+1)/2, and the closing merge
    assert len(sizes) <= 2 * n.bit_length() + 2, sizes   # was n + 1
    # Whole at the end, for a version that reads no journal.
    assert len(_manifest(out)) == n and not (out / "manifest.journal.jsonl").exists()
    # A resume over the finished cache rewrites nothing (there was one write per run before)
    sizes.clear()
    s = run_labels(str(data), out, teacher=FakeTeacher(), tile=0, overlap=0, progress=False)
    assert (s.done, s.skipped) == (0, n) and sizes == [n]   # the closing merge


def test_a_ctrl_c_leaves_every_label_made_in_manifest_json(tmp_path):
    """The journal's entries are folded into manifest.json however the run ends: an older
    version, which reads no journal, finds every label an interrupted run made."""
    data = _paired(tmp_path / "data", 40, h=16, w=16)
    out = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        run_labels(str(data), out, teacher=_InterruptedTeacher(29), tile=0, overlap=0,
                   progress=False)
    entries = _manifest(out)
    assert len(entries) == 29 and not (out / "manifest.journal.jsonl").exists()
    s = run_labels(str(data), out, teacher=FakeTeacher(), tile=0, overlap=0, progress=False)
    assert (s.done, s.skipped) == (11, 29)


def test_the_journal_a_kill_left_is_read_with_the_manifest(tmp_path):
    """A SIGKILL leaves the entries since the last rewrite in the journal only; a line the
    kill cut short is skipped, the records after it read."""
    from distill.data.label_cache import append_journal, journal_path, read_manifest_entries
    path = tmp_path / "manifest.json"
    write_manifest(tmp_path, {"a": {"v": 1, "created": 1.0}, "b": {"v": 1, "created": 1.0}})
    append_journal(path, {"b": {"v": 2, "created": 2.0}})
    with open(journal_path(path), "a") as f:
        f.write('\n{"name": "c", "entry": {"v": ')   # the kill
    append_journal(path, {"d": {"v": 1, "created": 3.0}})   # the next run's
    got = read_manifest_entries(path)
    assert {k: e["v"] for k, e in got.items()} == {"a": 1, "b": 2, "d": 1}
    write_manifest(tmp_path, got)   # the rewrite folds the journal in and removes it
    assert not journal_path(path).exists() and read_manifest_entries(path) == got


def test_a_killed_run_loses_no_label_it_made(tmp_path, teachers, capsys):
    """SIGKILL (the OOM killer, a scheduler) after some labels: each label whose entry was
    journaled is skipped by the rerun, not made again, though manifest.json lacks it."""
    from distill.data.label_cache import journal_path, read_manifest_entries
    n = 40
    data = _paired(tmp_path / "data", n, h=16, w=16, seed=4)
    out = tmp_path / "cache"
    proc = subprocess.Popen(_cli(data, out, teachers[0]), cwd=tmp_path, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = journal_path(out / "manifest.json")
    deadline = time.time() + 120
    try:
        # Killed while its journal holds entries manifest.json lacks: looked at with the run
        # stopped (SIGSTOP), as a compaction between a look and the kill emptied the journal.
        while time.time() < deadline and proc.poll() is None:
            if len(list((out / "labels").glob("[!.]*.png"))) >= 10 and journal.exists():
                proc.send_signal(signal.SIGSTOP)
                try:
                    if len(read_manifest_entries(out / "manifest.json")) > len(_manifest(out)):
                        break
                except (OSError, ValueError):   # the manifest mid-replace: look again
                    pass
                proc.send_signal(signal.SIGCONT)
            time.sleep(0.01)
        if proc.poll() is not None:
            pytest.skip("finished before it could be killed")
        proc.kill()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    made = read_manifest_entries(out / "manifest.json")
    assert len(made) > len(_manifest(out)), "nothing in the journal: the kill came too late"
    capsys.readouterr()
    assert main(_cli(data, out, teachers[0])[3:]) == 0
    said = capsys.readouterr().out
    assert f"{n - len(made)} done, {len(made)} skipped" in said, said
    assert len(_manifest(out)) == n and not journal.exists()


def test_a_resume_skips_done_images_without_decoding_them(tmp_path, monkeypatch):
    """A rerun decoded every input it then skipped as up to date: 41 ms a 1080p PNG against
    2.6 ms to hash it, half an hour for 50,000 done frames. An up-to-date label at its input's
    path is skipped on the hash alone; a moved input is still decoded (its ground-truth
    scores are measured again) and a changed one labelled again."""
    from distill import images
    data = _paired(tmp_path / "data", 6, h=16, w=16)
    out = tmp_path / "cache"
    kw = dict(teacher=FakeTeacher(), tile=0, overlap=0, progress=False)
    assert run_labels(str(data), out, **kw).done == 6
    decoded: list[Path] = []
    real = images.read_image

    def counted(path, *a, **k):
        decoded.append(Path(path))
        return real(path, *a, **k)
    monkeypatch.setattr(images, "read_image", counted)
    s = run_labels(str(data), out, **kw)
    assert (s.done, s.skipped) == (0, 6) and decoded == []
    changed = data / "input" / "im03.png"
    write_image(changed, np.full((16, 16, 3), 0.5, np.float32))
    s = run_labels(str(data), out, **kw)
    assert (s.done, s.skipped) == (1, 5)
    assert [p for p in decoded if p.parent.name == "input"] == [changed]


def test_frames_of_many_clips_keep_two_videos_open(tmp_path):
    """SampleReader kept every clip it had read open: 300 short clips held 300 file
    descriptors and 520 MB, and past the descriptor limit each further clip failed as a video
    OpenCV cannot open (damaged). It keeps the two read last; a clip read again reopens."""
    from distill.data.sources import Sample, SampleReader
    clips = []
    for i in range(8):
        clip = tmp_path / f"c{i}.avi"
        vw = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 16))
        for k in range(3):
            vw.write(np.full((16, 32, 3), 10 * i + 60 * k, np.uint8))
        vw.release()
        clips.append(clip)

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))
    reader = SampleReader()
    before = fds()
    try:
        for i, clip in enumerate(clips):
            for k in range(3):
                frame = reader.input_raw(Sample(f"c{i}_{k}", clip, None, k))
                assert abs(int(frame.mean()) - (10 * i + 60 * k)) <= 3
            assert fds() - before <= 2
        frame = reader.input_raw(Sample("c0_1", clips[0], None, 1))   # reopened
        assert abs(int(frame.mean()) - 60) <= 3 and fds() - before <= 2
    finally:
        reader.close()
    assert fds() == before


@pytest.mark.filterwarnings("ignore:.*further from the ground truth:UserWarning")
def test_a_killed_ranks_journal_without_its_shard_is_read_and_merged(tmp_path, monkeypatch):
    """A rank resuming a cache of many labels journals its entries without writing its shard
    (manifest.rankK.json) until the journal grows by half the cache: killed before (torchrun
    stops every rank with SIGTERM when one fails), it left manifest.rankK.journal.jsonl alone,
    which nothing read (the shards are found by their .json): training lost those labels, a
    rerun made them again, and the journal stayed in the folder for ever."""
    from distill.data.label_run import LabelRun
    from distill.dist import DistInfo
    data = _paired(tmp_path / "data", 8, h=16, w=16)
    out = tmp_path / "cache"
    kw = dict(tile=0, overlap=0, progress=False)
    assert run_labels(str(data), out, teacher=FakeTeacher(), **kw).done == 8
    _paired(tmp_path / "more", 12, h=16, w=16, seed=1)
    for i in range(8, 12):   # four new images: rank 1 of 2 gets im09 and im11
        for side in ("input", "target"):
            os.replace(tmp_path / "more" / side / f"im{i:02d}.png",
                       data / side / f"im{i:02d}.png")
    monkeypatch.setattr(LabelRun, "flush", lambda self: None)   # the kill: no closing rewrite
    with pytest.raises(KeyboardInterrupt):
        run_labels(str(data), out, teacher=_InterruptedTeacher(1), dist=DistInfo(1, 2), **kw)
    monkeypatch.undo()
    assert not (out / "manifest.rank1.json").exists()
    assert (out / "manifest.rank1.journal.jsonl").exists()
    assert "im09" in LabelCache(out).entries   # what training reads
    s = run_labels(str(data), out, teacher=FakeTeacher(), **kw)
    assert (s.done, s.skipped) == (3, 9)   # im09 not made again
    assert len(_manifest(out)) == 12 and not list(out.glob("manifest.rank*"))


def test_training_hashes_only_the_inputs_whose_stat_changed(tmp_path, monkeypatch):
    """LabelCache.stale hashed every input in full at each `distill` start (100 GB for 50,000
    1080p frames). An input with the size, mtime and ctime taken when it was hashed is not
    read; one touched is hashed once (its new stat kept beside the cache); one edited is still
    found, its mtime set back or not."""
    from distill import teacher
    from distill.data import label_cache
    monkeypatch.setattr(label_cache, "RACY_NS", 0)   # files written just now vouch here
    data = _paired(tmp_path / "data", 4, h=16, w=16)
    out = tmp_path / "cache"
    run_labels(str(data), out, teacher=FakeTeacher(), tile=0, overlap=0, progress=False)
    hashed: list[str] = []
    real = teacher.file_hash

    def counted(path, *a, **k):
        hashed.append(Path(path).name)
        return real(path, *a, **k)
    monkeypatch.setattr(teacher, "file_hash", counted)

    def stale() -> list[str]:
        hashed.clear()
        return [Path(p).name for p in LabelCache(out).stale()]
    assert stale() == [] and hashed == []
    touched = data / "input" / "im01.png"
    st = touched.stat()
    # (in the past: a file dated ahead of the clock vouches for nothing, RACY_NS or not)
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))
    assert stale() == [] and hashed == ["im01.png"]
    assert stale() == [] and hashed == []   # its new stat, recorded
    edited = data / "input" / "im02.png"
    st = edited.stat()
    content = bytearray(edited.read_bytes())
    content[len(content) // 2] ^= 0xFF   # the same size
    edited.write_bytes(bytes(content))
    os.utime(edited, ns=(st.st_atime_ns, st.st_mtime_ns))   # and mtime
    assert stale() == ["im02.png"] and hashed == ["im02.png"]
    edited.unlink()
    assert stale() == ["im02.png"]
    # The record of a file that changed since is not trusted: the cache hashes it again.
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns - 3 * 10**9))
    assert stale() == ["im02.png"] and hashed == ["im01.png"]


def test_a_label_cut_short_is_made_again_not_skipped(tmp_path):
    """A resume skipped a label as done on its file's existence alone: one cut short (a copy
    of the cache stopped part-way, a disk that filled) stayed, and training failed on it
    hours later. A label or frame that does not end as a PNG ends is made again."""
    data = _paired(tmp_path / "data", 3, h=16, w=16)
    out = tmp_path / "cache"
    kw = dict(teacher=FakeTeacher(), tile=0, overlap=0, progress=False)
    assert run_labels(str(data), out, **kw).done == 3
    label = out / _manifest(out)["im01"]["label"]
    whole = label.read_bytes()
    label.write_bytes(whole[:len(whole) // 2])
    with pytest.warns(SharpenWarning, match=rf"{re.escape(str(label))} is cut short or damaged; "
                                            "labelling im01 again"):
        s = run_labels(str(data), out, **kw)
    assert (s.done, s.skipped) == (1, 2)
    assert label.read_bytes() == whole
    # a video's frame, which training reads as the input
    video = _clip(tmp_path / "clip.avi", 2, 30, step=50)
    out = tmp_path / "clips"
    assert run_labels(str(video), out, **kw).done == 2
    frame = out / _manifest(out)["clip_000001"]["input_file"]
    whole = frame.read_bytes()
    frame.write_bytes(whole[:-1])
    with pytest.warns(SharpenWarning, match="clip_000001 again"):
        s = run_labels(str(video), out, **kw)
    assert (s.done, s.skipped) == (1, 1) and frame.read_bytes() == whole


def test_an_interrupted_rerun_folds_a_killed_runs_journal_in(tmp_path):
    """A killed run's journal was folded into manifest.json only by a rerun that made a label
    or finished: one stopped before either (Ctrl-C on its first new image) left manifest.json
    without those entries, and a version that reads no journal labelled them again."""
    from distill.data.label_cache import append_journal, journal_path
    data = _paired(tmp_path / "data", 4, h=16, w=16)
    out = tmp_path / "cache"
    kw = dict(tile=0, overlap=0, progress=False)
    assert run_labels(str(data), out, teacher=FakeTeacher(), **kw).done == 4
    entries = _manifest(out)
    write_manifest(out, {k: entries[k] for k in ("im00", "im01")})   # the kill
    append_journal(out / "manifest.json", {k: entries[k] for k in ("im02", "im03")})
    _paired(tmp_path / "more", 5, h=16, w=16, seed=1)
    for side in ("input", "target"):
        os.replace(tmp_path / "more" / side / "im04.png", data / side / "im04.png")
    with pytest.raises(KeyboardInterrupt):
        run_labels(str(data), out, teacher=_InterruptedTeacher(0), **kw)
    assert _manifest(out) == entries and not journal_path(out / "manifest.json").exists()


class _ManifestTakenAway(FakeTeacher):
    """manifest.json's name taken by a folder (the real one set aside), so that its rewrites
    fail as on a full disk, as the teacher starts its `after`+1-th image; then Ctrl-C there
    where `interrupt`."""
    def __init__(self, out: Path, after: int, interrupt: bool):
        self.out, self.left, self.interrupt = out, after, interrupt

    def sharpen(self, image, tile=0, overlap=0, batch_size=1):
        if not self.left:
            os.replace(self.out / "manifest.json", self.out / "aside.json")
            (self.out / "manifest.json").mkdir()
            if self.interrupt:
                raise KeyboardInterrupt
        self.left -= 1
        return super().sharpen(image, tile, overlap, batch_size)


@pytest.mark.parametrize("interrupt", [True, False])
def test_a_manifest_that_cannot_be_rewritten_keeps_the_runs_outcome_and_its_journal(
        tmp_path, interrupt):
    """manifest.json rewritten at the run's end, failing (a full disk, a folder made
    read-only; here its name taken by a folder), raised its OSError in place of a Ctrl-C, or
    of a finished run's summary. The journal keeps every entry: the end says so, and the run
    ends as it would have."""
    from distill.data.label_cache import journal_path
    n = 7   # the manifest is rewritten after the 1st, 2nd, 3rd and 5th label
    data = _paired(tmp_path / "data", n, h=16, w=16)
    out = tmp_path / "cache"
    said: list[str] = []
    # Ctrl-C with the 6th label in the journal alone; or a run whose rewrite after the 5th
    # fails too, mid-run (that label is made, not failed, and no rewrite is tried per label).
    teacher = _ManifestTakenAway(out, 6 if interrupt else 4, interrupt)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if interrupt:
            with pytest.raises(KeyboardInterrupt):
                run_labels(str(data), out, teacher=teacher, tile=0, overlap=0, progress=False,
                           say=said.append)
        else:
            s = run_labels(str(data), out, teacher=teacher, tile=0, overlap=0, progress=False,
                           say=said.append)
            assert (s.done, s.failed) == (n, 0)
    warned = [str(w.message) for w in caught]
    journal = journal_path(out / "manifest.json")
    want = (f"could not compact {out / 'manifest.json'} (Is a directory): its journal "
            f"{journal} keeps every entry, and the next run into {out} folds it in")
    assert warned.count(want) == 1, warned
    if interrupt:
        assert said[-1].startswith("labels: interrupted: 6 done"), said
    else:
        assert any(line.startswith(f"labels: {n} done") for line in said), said
    assert journal.is_file() and not list(out.glob(".*.tmp"))
    (out / "manifest.json").rmdir()
    os.replace(out / "aside.json", out / "manifest.json")
    s = run_labels(str(data), out, teacher=FakeTeacher(), tile=0, overlap=0, progress=False)
    assert (s.done, s.skipped) == ((1, 6) if interrupt else (0, n))
    assert len(_manifest(out)) == n and not journal.exists()



class _DiskFull:
    """The cache's JSON records (manifest, run.json) failing as on a full disk once `full`
    and the path is one `fails` accepts: the labels' PNGs go in, as the last ones did before
    the disk filled."""
    def __init__(self, monkeypatch, fails=lambda path: True):
        import errno

        from distill.data import label_cache
        self.full, real = False, label_cache.atomic_write_json

        def write(path, obj, indent=2):
            if self.full and fails(Path(path)):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            return real(path, obj, indent)
        monkeypatch.setattr(label_cache, "atomic_write_json", write)


class _FillsTheDisk(FakeTeacher):
    def __init__(self, disk: _DiskFull):
        self.disk = disk

    def sharpen(self, image, tile=0, overlap=0, batch_size=1):
        self.disk.full = True
        return super().sharpen(image, tile, overlap, batch_size)


def test_a_disk_that_fills_at_a_runs_end_keeps_its_outcome_and_says_what_is_left(
        tmp_path, monkeypatch):
    """A labels run whose last label took the disk's last space ended in a traceback as it
    marked run.json complete, or dropped the entries of inputs that are gone: its labels
    made, its summary never said. Each is a warning naming the file, and the next run, the
    disk freed, finishes both."""
    from distill.data.label_cache import journal_path
    n = 4
    data = _paired(tmp_path / "data", n, h=16, w=16)
    out = tmp_path / "cache"
    kw = dict(tile=0, overlap=0, progress=False)
    run_labels(str(data), out, teacher=FakeTeacher(), **kw)
    for side in ("input", "target"):   # one input gone, one new one for the teacher
        os.replace(data / side / "im00.png", data / side / "im09.png")
    disk = _DiskFull(monkeypatch)
    said: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = run_labels(str(data), out, teacher=_FillsTheDisk(disk), say=said.append, **kw)
    assert (s.done, s.skipped, s.failed) == (1, n - 1, 0)
    assert any(line.startswith(f"labels: 1 done, {n - 1} skipped") for line in said), said
    warned = [str(w.message) for w in caught]
    full = "No space left on device"
    assert warned.count(f"could not mark {out / 'run.json'} complete ({full}): training takes "
                        f"{out} for an interrupted run's and says so; run the same labels "
                        "command again once the folder can be written (it skips every label "
                        "made)") == 1, warned
    assert warned.count(f"could not drop the entries of inputs that are gone or replaced from "
                        f"{out / 'manifest.json'} ({full}): training refuses {out} while it "
                        "lists them; run the same labels command again once the folder can be "
                        "written (it skips every label made)") == 1, warned
    assert sum(w.startswith("could not compact") for w in warned) == 1, warned
    assert LabelCache(out).incomplete() and journal_path(out / "manifest.json").is_file()
    disk.full = False
    s = run_labels(str(data), out, teacher=FakeTeacher(), **kw)
    assert (s.done, s.skipped) == (0, n)
    assert sorted(_manifest(out)) == ["im01", "im02", "im03", "im09"]
    assert LabelCache(out).incomplete() is None


def test_a_hold_outs_prune_that_cannot_write_the_manifest_is_a_warning(
        tmp_path, teachers, monkeypatch, capsys):
    """--hold-out on a cache labelled in full drops the held-out images' labels from it after
    both runs, in a `finally`: a manifest that could not be written raised its OSError there,
    a traceback in place of the two runs' outcome."""
    data = tmp_path / "footage"
    rng = np.random.default_rng(3)
    for i in range(5):
        write_image(data / f"shot{i}.png", rng.random((24, 32, 3)))
    out, val = tmp_path / "train", tmp_path / "val"
    base = ["--data", str(data), "--out", str(out), "--teacher-weights", str(teachers[0]),
            "--tile", "32", "--overlap", "8", "--device", "cpu", "--quiet"]
    assert main(base) == 0
    disk = _DiskFull(monkeypatch, fails=lambda path: path == out / "manifest.json")
    disk.full = True
    assert main([*base, "--hold-out", "0.2", "--val-out", str(val)]) == 0
    said = capsys.readouterr()
    want = (f"warning: could not drop the labels of the images this run holds out from "
            f"{out / 'manifest.json'} (No space left on device): training leaves them out (the "
            "run's selection does), and the same labels command run again once the folder "
            "can be written drops them")
    assert said.err.splitlines().count(want) == 1, said.err
    assert "train on them:" in said.out
    held = LabelCache(val).run["selection"]
    assert len(held) == 1 and held[0] in LabelCache(out).unselected()
    disk.full = False
    assert main([*base, "--hold-out", "0.2", "--val-out", str(val)]) == 0
    assert held[0] not in _manifest(out) and sorted(_manifest(val)) == held



class _AnotherRunMeanwhile(FakeTeacher):
    """At its `after`+1-th image, a plain `labels` run (no --hold-out) into `out`, as a second
    terminal's would be."""
    def __init__(self, data: Path, out: Path, after: int):
        self.data, self.out, self.left = data, out, after

    def sharpen(self, image, tile=0, overlap=0, batch_size=1):
        if not self.left:
            run_labels(str(self.data), self.out, teacher=FakeTeacher(), tile=0, overlap=0,
                       progress=False)
        self.left -= 1
        return super().sharpen(image, tile, overlap, batch_size)


def test_a_hold_out_leaves_the_labels_of_a_run_into_out_started_meanwhile(
        tmp_path, monkeypatch, capsys):
    """--hold-out drops the held-out images' labels from --out after labelling --val-out. A
    `labels` run into --out meanwhile (run.json then its, selecting every image) lost those
    labels to that prune, after it had skipped them as made: its complete cache lacked labels
    of its own selection, training on fewer without a word."""
    data = _paired(tmp_path / "data", 5, h=16, w=16)
    out, val = tmp_path / "train", tmp_path / "val"
    from distill.data import labels_hold_out
    # 3 labels for --out, then --val-out's first: the other run labels all 5 into --out
    monkeypatch.setattr(labels_hold_out, "load_teacher",
                        lambda *a, **k: _AnotherRunMeanwhile(data, out, 3))
    assert main(["--data", str(data), "--out", str(out), "--val-out", str(val),
                 "--hold-out", "0.2", "--tile", "0", "--overlap", "0", "--quiet"]) == 0
    cache = LabelCache(out)
    assert len(cache.run["selection"]) == 5 and len(cache) == 5
    err = " ".join(capsys.readouterr().err.split())
    assert (f"warning: {out}: another labels run into it started after this one (its "
            "run.json is now that run's): the labels of the images this run holds out are "
            "kept for its selection") in err, err


def test_a_label_that_cannot_be_written_mid_run_is_an_error_naming_it(tmp_path, capsys,
                                                                     monkeypatch):
    """A label that could not be put in place (a full disk, a read-only folder; here its name
    taken by a folder) ended `sharpen labels` in a traceback that said nothing of the labels
    made before it, which the same command then skips."""
    data = _paired(tmp_path / "data", 4, h=16, w=16)
    out = tmp_path / "cache"
    (out / "labels" / "im02.png" / "x").mkdir(parents=True)
    argv = ["--data", str(data), "--out", str(out), "--tile", "0", "--quiet"]
    from distill.data import labels
    monkeypatch.setattr(labels, "load_teacher", lambda *a, **k: FakeTeacher())
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        f"sharpen labels: error: {out / 'labels' / 'im02.png'}: Is a directory (the labels "
        f"made before it stay in {out}: the same command run again skips them)"), err
    (out / "labels" / "im02.png" / "x").rmdir()
    (out / "labels" / "im02.png").rmdir()
    assert main(argv) == 0
    assert "2 done, 2 skipped" in capsys.readouterr().out


def test_training_refuses_labels_cut_short_at_its_start_naming_them(tmp_path, capsys):
    """`sharpen distill` took a cache whose labels a killed `labels` run cut short and failed
    on them mid-training. They are found as it starts (the PNG end the labels resume checks)
    and named, with the labels command that makes them again; a video frame's copy, which
    training reads as the input, too."""
    from distill.data.crops import pairs_from_labels
    from sharpen.cli import main as sharpen
    data = _paired(tmp_path / "data", 3, h=16, w=16)
    out = tmp_path / "cache"
    kw = dict(teacher=FakeTeacher(), tile=0, overlap=0, progress=False)
    assert run_labels(str(data), out, **kw).done == 3
    label = out / "labels" / "im01.png"
    whole = label.read_bytes()
    label.write_bytes(whole[:len(whole) // 2])   # the kill
    rc = sharpen(["distill", "optim.steps=1", "--quiet", f"out={tmp_path / 'run'}",
                  f"data.labels={out}", "data.val=", "device=cpu"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert (f"{out}: 1 file of the cache cut short (labels/im01.png), which training fails "
            "on: a `sharpen labels` run killed as it wrote it, or a copy of the cache stopped "
            f"part-way; run the same labels command again with --out {out} (--data {data}, "
            "--tile 0 --overlap 0): it makes it again") in " ".join(err.split()), err
    assert not (tmp_path / "run" / "last.pt").exists()
    with pytest.warns(SharpenWarning, match="labelling im01 again"):
        assert run_labels(str(data), out, **kw).done == 1   # as it says
    assert len(pairs_from_labels(out)) == 3
    video = _clip(tmp_path / "clip.avi", 2, 30, step=50)
    clips = tmp_path / "clips"
    assert run_labels(str(video), clips, **kw).done == 2
    frame = clips / "frames" / "clip_000001.png"
    frame.write_bytes(frame.read_bytes()[:-1])
    with pytest.raises(ValueError, match=r"1 file of the cache cut short "
                                         r"\(frames/clip_000001\.png\)"):
        pairs_from_labels(clips)


class _NoTeacher(FakeTeacher):
    def sharpen(self, image, tile=0, overlap=0, batch_size=1):
        raise AssertionError("the teacher ran: an up-to-date label was made again")


def test_a_cache_scored_with_the_old_ssim_is_rescored_not_relabelled(tmp_path, capsys):
    """A cache labelled before the SSIM became the published 11x11 Gaussian one holds its
    teacher's and input's SSIM against the ground truth by the 7x7 window, with nothing saying
    so: the next run printed them as this version's means, and averaged them with new ones."""
    from skimage.metrics import structural_similarity

    from distill.images import read_image
    from distill.metrics import SSIM_ID, ssim

    data = _paired(tmp_path / "data", 2, h=24, w=24)
    out = tmp_path / "cache"
    run_labels(str(data), out, teacher=FakeTeacher(), tile=0, overlap=0, progress=False)
    # The entries as the version before wrote them: no formula, its 7x7 window on floats.
    entries = _manifest(out)
    for name, e in entries.items():
        assert e["ssim_formula"] == SSIM_ID
        del e["ssim_formula"]
        gt = read_image(data / "target" / f"{name}.png")
        for key, img in (("teacher_ssim", read_image(out / e["label"])),
                         ("input_ssim", read_image(data / "input" / f"{name}.png"))):
            e[key] = round(structural_similarity(img, gt, win_size=7, channel_axis=-1,
                                                 data_range=1.0), 5)
    write_manifest(out, entries)
    capsys.readouterr()
    s = run_labels(str(data), out, teacher=_NoTeacher(), tile=0, overlap=0)
    assert (s.done, s.skipped, s.failed) == (0, 2, 0)
    said = capsys.readouterr().out
    assert "2 of them re-scored against the ground truth with this version's SSIM" in said
    for name, e in _manifest(out).items():
        gt = read_image(data / "target" / f"{name}.png")
        assert e["ssim_formula"] == SSIM_ID
        assert e["teacher_ssim"] == pytest.approx(ssim(read_image(out / e["label"]), gt), abs=1e-5)
        assert e["input_ssim"] == pytest.approx(
            ssim(read_image(data / "input" / f"{name}.png"), gt), abs=1e-5)
    # Once re-scored, up to date: nothing said the next time.
    run_labels(str(data), out, teacher=_NoTeacher(), tile=0, overlap=0)
    assert "re-scored" not in capsys.readouterr().out


def test_an_old_ssim_entry_whose_ground_truth_is_unusable_now_is_not_called_rescored(tmp_path,
                                                                                    capsys):
    """A cache scored by an older version's SSIM whose ground truth is now another size: the
    entry drops its scores (said in a warning), and the summary counted it as re-scored
    against the ground truth."""
    data = _paired(tmp_path / "data", 2, h=24, w=24)
    out = tmp_path / "cache"
    run_labels(str(data), out, teacher=FakeTeacher(), tile=0, overlap=0, progress=False)
    entries = _manifest(out)
    for e in entries.values():
        del e["ssim_formula"]   # as an older version wrote them
    write_manifest(out, entries)
    write_image(data / "target" / "im01.png", np.zeros((20, 20, 3), np.float32))
    capsys.readouterr()
    with pytest.warns(SharpenWarning, match="ground truth unusable for im01"):
        s = run_labels(str(data), out, teacher=_NoTeacher(), tile=0, overlap=0)
    assert (s.done, s.skipped, s.rescored) == (0, 2, 1)
    assert "1 of them re-scored against the ground truth" in capsys.readouterr().out
    assert "teacher_ssim" not in _manifest(out)["im01"]


def test_a_rescoring_pass_is_said_before_it_starts(tmp_path, capsys):
    """Re-scoring reads each label's input, label and ground truth (1.3 s of SSIM alone a 1080p
    image on this host): a cache of thousands took hours with nothing said before its
    summary, under a bar that counts no tiles."""
    data = _paired(tmp_path / "data", 3, h=24, w=24)
    out = tmp_path / "cache"
    run_labels(str(data), out, teacher=FakeTeacher(), tile=0, overlap=0, progress=False)
    entries = _manifest(out)
    for e in list(entries.values())[:2]:
        del e["ssim_formula"]   # as an older version wrote them
    write_manifest(out, entries)
    capsys.readouterr()
    run_labels(str(data), out, teacher=_NoTeacher(), tile=0, overlap=0)
    said = capsys.readouterr().out
    note = ("2 labels here were scored against the ground truth with an older version's SSIM: "
            "each is scored again")
    assert note in said, said
    assert said.index(note) < said.index("labels: 0 done"), said
    run_labels(str(data), out, teacher=_NoTeacher(), tile=0, overlap=0)
    assert "older version's SSIM" not in capsys.readouterr().out


class _StopTeacher(FakeTeacher):
    """The cache's own teacher (its labels up to date), Ctrl-C as it is asked for a label."""

    def sharpen(self, image, tile=0, overlap=0, batch_size=1):
        raise KeyboardInterrupt


def test_an_interrupted_rescoring_pass_says_what_is_left_to_score_not_label(tmp_path):
    """Ctrl-C during a pass over an older version's cache said 'N skipped (up to date) ...; M
    left for the same command to label': the labels re-scored went unsaid, and the M, labelled
    already and left to score again without the teacher, read as hours of labelling."""
    data = _paired(tmp_path / "data", 5, h=24, w=24)
    out = tmp_path / "cache"
    kw = dict(tile=0, overlap=0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SharpenWarning)   # FakeTeacher is worse than the input
        run_labels(str(data), out, teacher=FakeTeacher(), **kw)
        entries = _manifest(out)
        for e in entries.values():
            del e["ssim_formula"]   # as an older version wrote them
        del entries["im02"]   # its label for the teacher to make
        write_manifest(out, entries)
        said: list[str] = []
        with pytest.raises(KeyboardInterrupt):
            run_labels(str(data), out, teacher=_StopTeacher(), say=said.append, **kw)
    assert said[-1] == (
        "labels: interrupted: 0 done, 2 skipped (up to date; 2 of them re-scored against the "
        "ground truth with this version's SSIM, their labels kept), of 5; 3 left for the same "
        f"command to label into {out} (2 of them labelled already, only to score again)"), said


@pytest.mark.filterwarnings("ignore:.*further from the ground truth:UserWarning")
def test_an_interrupted_rank_0_says_which_labels_are_left_to_score_again(tmp_path, capsys):
    """Under torchrun, Ctrl-C in a pass over an older version's cache said `4 of 5 labelled
    ...; 1 left`: the 4, scored by the older SSIM, are scored again by the same command."""
    from distill.dist import DistInfo
    data = _paired(tmp_path / "data", 5, h=24, w=24)
    out = tmp_path / "cache"
    kw = dict(tile=0, overlap=0, say=print, progress=False)
    run_labels(str(data), out, teacher=FakeTeacher(), **kw)
    entries = _manifest(out)
    for e in entries.values():
        del e["ssim_formula"]   # as an older version wrote them
    del entries["im00"]   # the first of rank 0's share: the teacher is asked for it
    write_manifest(out, entries)
    capsys.readouterr()
    with pytest.raises(KeyboardInterrupt):
        run_labels(str(data), out, teacher=_StopTeacher(), dist=DistInfo(0, 2), **kw)
    said = [ln for ln in capsys.readouterr().out.splitlines() if "labels: interrupted" in ln]
    assert said == [f"labels: interrupted: 4 of 5 labelled in {out} (all ranks' shares; 4 of "
                    "them left to score again with this version's SSIM); 1 left for the same "
                    "command to label"], said


def test_an_old_ssim_label_of_an_image_over_the_budget_now_is_kept_not_failed(
        tmp_path, monkeypatch, capsys):
    """Re-scoring decodes the input, which an up-to-date label skips: an image over a lowered
    SHARPEN_MAX_PIXELS had its label's entry replaced by a failure (the teacher made it again
    once the budget was raised), where this version's entries are kept as up to date."""
    data = _paired(tmp_path / "data", 2, h=24, w=24)
    out = tmp_path / "cache"
    kw = dict(tile=0, overlap=0, progress=False)
    run_labels(str(data), out, teacher=FakeTeacher(), **kw)
    entries = _manifest(out)
    for e in entries.values():
        del e["ssim_formula"]   # as an older version wrote them
    write_manifest(out, entries)
    monkeypatch.setenv("SHARPEN_MAX_PIXELS", "500")   # 24x24 = 576
    with pytest.warns(SharpenWarning, match=r"im00: not scored again with this version's SSIM "
                                            r"\(.*576 pixels exceeds the pixel budget of 500"):
        s = run_labels(str(data), out, teacher=_NoTeacher(), say=print, **kw)
    assert (s.done, s.skipped, s.failed, s.rescored) == (0, 2, 0, 0)
    # Its older SSIM is not averaged into this version's means.
    said = capsys.readouterr().out
    assert ("vs ground truth (2 images): teacher PSNR" in said and "SSIM n/a" in said
            and "(SSIM: 2 scored by an older version's left out)" in said), said
    assert all(e["status"] == "ok" and "ssim_formula" not in e
               for e in _manifest(out).values()), _manifest(out)
    monkeypatch.delenv("SHARPEN_MAX_PIXELS")
    s = run_labels(str(data), out, teacher=_NoTeacher(), **kw)   # scored once it may be read
    assert (s.done, s.skipped, s.rescored) == (0, 2, 2)


@pytest.mark.skipif(not os.path.isdir("/proc/sys"), reason="needs a folder no file can be made in")
def test_an_out_that_cannot_be_written_is_refused_before_the_teacher_loads(tmp_path, capsys,
                                                                         monkeypatch):
    """A label cache another user owns (a team's shared cache, read-only to this one; /proc/sys
    stands in, as root cannot write there either) warned its manifest unreadable, then ended
    in '.manifest.lock: Permission denied' with 'the same command run again skips them', which
    fails again alike. It is refused at once, naming --out and the folder."""
    data = _paired(tmp_path / "data", 2, h=16, w=16)
    from distill.data import labels

    def no_teacher(*a, **k):
        raise AssertionError("the teacher loaded for an --out that cannot be written")

    monkeypatch.setattr(labels, "load_teacher", no_teacher)
    assert main(["--data", str(data), "--out", "/proc/sys/cache", "--tile", "0",
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith(
        "sharpen labels: error: --out /proc/sys/cache: cannot write in /proc/sys ("), err
    assert "run again" not in err and "warning" not in err, err


@pytest.mark.skipif(not os.path.isdir("/sys"), reason="needs a folder no folder can be made in")
def test_a_cache_folder_that_cannot_be_written_names_the_embedded_set_and_sharpen_data(
        tmp_path, capsys, monkeypatch):
    """A team's shared ~/.cache (or one whose sharpen/ another user made) ended `sharpen
    labels` on the embedded set in '.../sharpen: Permission denied (the labels made before it
    stay in OUT: the same command run again skips them)': no word of the data set being built
    nor of SHARPEN_DATA, and a rerun failed alike. /sys stands in: root cannot write there."""
    monkeypatch.delenv("SHARPEN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/sys/no-cache")
    from distill.data import labels
    monkeypatch.setattr(labels, "load_teacher", lambda *a, **k: FakeTeacher())
    assert main(["--out", str(tmp_path / "cache"), "--limit", "1", "--tile", "0",
                 "--quiet"]) == 2
    last = " ".join(capsys.readouterr().err.split("sharpen labels: error: ")[-1].split())
    assert last.startswith("the embedded data set cannot be built in "
                           "/sys/no-cache/sharpen/embedded: cannot write in /sys ("), last
    assert last.endswith("): set SHARPEN_DATA to a folder this user can write, where it "
                         "is built once"), last
    assert "run again" not in last, last


def test_a_full_disk_mid_run_names_the_file_it_could_not_write(tmp_path, monkeypatch):
    """A disk (or a user's quota) full while a label was written said only
    'error: [Errno 28] No space left on device': not which file, nor on which disk. A file
    size limit (ulimit -f) in a child stands in for the full disk: the same write fails."""
    from child_fixtures import main_with_file_limit
    data = _paired(tmp_path / "data", 2, h=64, w=64)
    out = tmp_path / "cache"
    from distill.data import labels
    monkeypatch.setattr(labels, "load_teacher", lambda *a, **k: FakeTeacher())
    said = main_with_file_limit(["labels", "--data", str(data), "--out", str(out), "--tile",
                                 "0", "--quiet"], 4000)
    assert said.get("rc") == 2, said
    last = said["err"].strip().splitlines()[-1]
    assert last.startswith(f"sharpen labels: error: {out / 'labels'}/im0"), last
    assert "File too large (the labels made before it stay in" in last, last


class _CountingTeacher(FakeTeacher):
    """A teacher that takes a while per image (as the real one's seconds) and counts its
    images in a file, one line each, whichever process runs it."""

    def __init__(self, tally: Path):
        self.tally = tally

    def sharpen(self, image, tile=0, overlap=0, batch_size=1):
        time.sleep(0.3)
        with open(self.tally, "a") as f:
            f.write("1\n")
        return super().sharpen(image)


def test_two_labels_runs_into_one_cache_share_the_images_not_label_each_twice(tmp_path):
    """Two users labelling the same footage into a team's shared cache at once both ran the
    teacher on every image (the slow part: 13 s an image on a CPU here), the second's labels
    replacing the first's. An image one run is labelling is left to it, and one it finished
    since the other began is skipped: the teacher runs once per image, and both runs end
    with every label."""
    data = _paired(tmp_path / "data", 8, h=24, w=24)
    out, tally = tmp_path / "cache", tmp_path / "tally"
    pid = os.fork()
    if pid == 0:   # the other user's run
        try:
            s = run_labels(str(data), out, teacher=_CountingTeacher(tally), tile=0, overlap=0,
                           progress=False)
            os._exit(0 if s.failed == 0 else 1)
        except BaseException:   # noqa: BLE001 - its exit status says it
            os._exit(2)
    s = run_labels(str(data), out, teacher=_CountingTeacher(tally), tile=0, overlap=0,
                   progress=False)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert s.failed == 0 and s.done + s.skipped == 8, s
    assert len(tally.read_text().splitlines()) == 8   # no image labelled twice
    assert len(LabelCache(out)) == 8


def test_a_shared_caches_manifest_keeps_its_mode_when_a_private_umask_rewrites_it(tmp_path):
    """A team's cache (group-writable, umask 002) relabelled by a member whose umask is 077:
    the rewritten manifest.json became 0600, that member's alone, so every other member's
    next run read no manifest, warned it unreadable and ran the teacher on every image again.
    A file rewritten keeps its mode; a new one (a new label) takes the umask as before."""
    data = _paired(tmp_path / "data", 3, h=16, w=16)
    out = tmp_path / "cache"
    old = os.umask(0o002)
    try:
        run_labels(str(data), out, teacher=FakeTeacher(), tile=0, overlap=0, limit=2,
                   progress=False)
        os.umask(0o077)
        s = run_labels(str(data), out, teacher=FakeTeacher(), tile=0, overlap=0,
                       progress=False)
    finally:
        os.umask(old)
    assert (s.done, s.skipped) == (1, 2), s
    assert oct((out / "manifest.json").stat().st_mode & 0o777) == oct(0o664)
    modes = sorted(oct(p.stat().st_mode & 0o777) for p in (out / "labels").iterdir())
    assert modes == [oct(0o600), oct(0o664), oct(0o664)], modes


@pytest.mark.skipif(not hasattr(os, "O_NOFOLLOW"), reason="needs O_NOFOLLOW (POSIX)")
def test_a_lock_file_planted_as_a_link_in_a_shared_cache_is_refused(tmp_path, teachers,
                                                                   capsys):
    """A team's cache is writable by all: `.labelling.lock` made a link to a file of the
    user's had `sharpen labels` make that file readable and writable by every user (its
    claims file is 0666 by design), and the manifest's lock link ended in a traceback.
    Refused, exit 2, naming the link; the file it points to is untouched."""
    import stat

    data = _paired(tmp_path / "data", 1, h=16, w=24)
    victim = tmp_path / "id_ed25519"
    victim.write_bytes(b"private\n")
    victim.chmod(0o600)
    for name in (".labelling.lock", ".manifest.lock"):
        out = tmp_path / f"cache{name}"
        out.mkdir()
        (out / name).symlink_to(victim)
        rc = main(["--data", str(data), "--out", str(out), "--teacher-weights",
                   str(teachers[0]), "--tile", "0", "--device", "cpu", "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2, err
        assert f"{out / name} is a symbolic link" in err and "Traceback" not in err, err
        assert stat.S_IMODE(victim.stat().st_mode) == 0o600
        assert victim.read_bytes() == b"private\n"


def _private_key(tmp_path: Path) -> Path:
    """An owner-only file of the user's outside the cache, as a private key is."""
    victim = tmp_path / "id_ed25519"
    victim.write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\n")
    victim.chmod(0o600)
    return victim


@pytest.mark.skipif(not hasattr(os, "O_NOFOLLOW"), reason="needs O_NOFOLLOW (POSIX)")
def test_a_labelling_lock_planted_as_a_link_is_refused_and_its_target_untouched(
        tmp_path, monkeypatch, capsys):
    """Anyone who can write into a team's cache could make `.labelling.lock` a link to a file
    of the next user to label there (a key, ~/.bashrc): the run opened it through the link
    and made it readable and writable by every user. Refused now, naming the link."""
    data = _paired(tmp_path / "data", 2, h=16, w=16)
    out = tmp_path / "cache"
    out.mkdir()
    victim = _private_key(tmp_path)
    (out / ".labelling.lock").symlink_to(victim)
    from distill.data import labels

    def no_teacher(*a, **k):   # refused first: the teacher takes long to load
        raise AssertionError("the teacher loaded for a cache that is refused")

    monkeypatch.setattr(labels, "load_teacher", no_teacher)
    rc = main(["--data", str(data), "--out", str(out), "--tile", "0", "--quiet"])
    assert oct(victim.stat().st_mode & 0o777) == oct(0o600)
    assert victim.read_bytes() == b"-----BEGIN OPENSSH PRIVATE KEY-----\n"
    err = capsys.readouterr().err
    assert rc == 2, err
    assert f"sharpen labels: error: {out / '.labelling.lock'} is a symbolic link" in err, err
    assert "Traceback" not in err, err
    assert (out / ".labelling.lock").is_symlink()   # left for the user to look at


def test_a_labelling_lock_planted_as_a_hard_link_leaves_its_target_private(tmp_path):
    """A hard link to the user's file (where the system lets a user make one to a file not
    theirs: fs.protected_hardlinks off, BSDs, macOS) is no link to O_NOFOLLOW: its target
    is not made writable by every user, and the run labels every image."""
    data = _paired(tmp_path / "data", 2, h=16, w=16)
    out = tmp_path / "cache"
    out.mkdir()
    victim = _private_key(tmp_path)
    os.link(victim, out / ".labelling.lock")
    s = run_labels(str(data), out, teacher=FakeTeacher(), tile=0, overlap=0, progress=False)
    assert oct(victim.stat().st_mode & 0o777) == oct(0o600)
    assert victim.read_bytes() == b"-----BEGIN OPENSSH PRIVATE KEY-----\n"
    assert (s.done, s.failed) == (2, 0)


def test_a_labelling_lock_planted_as_a_fifo_does_not_hang_the_run(tmp_path):
    """A FIFO in the lock file's place: refused at once, naming it, as a planted link is (no
    lock file of sharpen's is a FIFO), not a run stuck opening it."""
    from runtime.atomic import LinkRefused

    data = _paired(tmp_path / "data", 2, h=16, w=16)
    out = tmp_path / "cache"
    out.mkdir()
    os.mkfifo(out / ".labelling.lock")
    with pytest.raises(LinkRefused, match=r"\.labelling\.lock"):
        run_labels(str(data), out, teacher=FakeTeacher(), tile=0, overlap=0, progress=False)


class _HandingOverTeacher(FakeTeacher):
    """A teacher that, on its first image, starts another user's run into the same cache
    and waits until that run has labelled the second image: the hand-over two runs into one
    cache make, without timing. That run writes its counts and lines to `said`."""

    def __init__(self, data: Path, out: Path, said: Path):
        self.data, self.out, self.said, self.child = data, out, said, 0

    def sharpen(self, image, tile=0, overlap=0, batch_size=1):
        if not self.child:
            self.child = os.fork()
            if self.child == 0:   # the other user's run
                lines: list[str] = []
                try:
                    s = run_labels(str(self.data), self.out, teacher=FakeTeacher(), tile=0,
                                   overlap=0, progress=False, say=lines.append)
                    self.said.write_text(json.dumps({"stats": vars(s), "lines": lines}))
                finally:
                    os._exit(0)
            from distill.data.label_cache import read_cache_entries
            for _ in range(6000):   # until its label of im01 is in (a minute at most)
                if "im01" in read_cache_entries(self.out):
                    break
                time.sleep(0.01)
        return super().sharpen(image)


def test_labels_another_run_made_meanwhile_are_said_as_theirs(tmp_path):
    """Two users labelling into one cache at once: each run's summary said the other's labels
    as '3 skipped (up to date)', as if made before it began. Said as another run's now."""
    data = _paired(tmp_path / "data", 2, h=16, w=16)
    out, said = tmp_path / "cache", tmp_path / "said.json"
    teacher = _HandingOverTeacher(data, out, said)
    lines: list[str] = []
    s = run_labels(str(data), out, teacher=teacher, tile=0, overlap=0, progress=False,
                   say=lines.append)
    os.waitpid(teacher.child, 0)
    theirs = json.loads(said.read_text())
    assert (s.done, s.skipped, s.shared) == (1, 1, 1), s
    assert {k: theirs["stats"][k] for k in ("done", "skipped", "shared")} == {
        "done": 1, "skipped": 1, "shared": 1}, theirs
    for said_lines in (lines, theirs["lines"]):
        summary = next(x for x in said_lines if x.startswith("labels: "))
        assert summary.startswith("labels: 1 done, 1 skipped (up to date; 1 of them labelled "
                                  "by another run into this cache while this one ran)"), summary


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="needs root, to label as another user (nobody)")
def test_a_shared_cache_whose_labels_or_lock_another_user_owns_is_refused_before_the_teacher(
        passable_tmp, monkeypatch):
    """A team's cache folder writable by all, but its labels/ folder and .manifest.lock made
    by a member under umask 077 (theirs alone): the folder's check passed, the teacher
    loaded, and the first label ended in 'Permission denied' with 'the same command
    run again skips them', which fails alike. Refused at once, naming what cannot be written
    and whose it is."""
    tmp_path = passable_tmp
    from child_fixtures import in_a_child
    from distill.data import labels

    def no_teacher(*a, **k):
        raise AssertionError("the teacher loaded for a cache that cannot be written")

    monkeypatch.setattr(labels, "load_teacher", no_teacher)
    tmp_path.chmod(0o755)
    _paired(tmp_path / "data", 2, h=16, w=16)
    cache = tmp_path / "cache"
    (cache / "labels").mkdir(parents=True)
    cache.chmod(0o777)
    (cache / "labels").chmod(0o755)
    (cache / ".manifest.lock").touch(0o600)   # 0o644 locks as well: read, flock needs no write

    def work(said: dict) -> None:
        import io
        from contextlib import redirect_stderr
        os.chdir(tmp_path)
        os.setgid(65534)
        os.setuid(65534)
        err = io.StringIO()
        with redirect_stderr(err):
            said["rc"] = main(["--data", "data", "--out", "cache", "--tile", "0", "--quiet"])
        said["err"] = err.getvalue()

    said = in_a_child(work)
    assert said.get("rc") == 2, said
    assert said["err"].strip().splitlines()[-1].startswith(
        "sharpen labels: error: --out cache: cannot write in cache/labels (Permission "
        "denied; cache/labels belongs to user root)"), said
    (cache / "labels").chmod(0o777)
    said = in_a_child(work)
    assert said.get("rc") == 2, said
    assert said["err"].strip().splitlines()[-1].startswith(
        "sharpen labels: error: --out cache: cannot write in cache/.manifest.lock (Permission "
        "denied; cache/.manifest.lock belongs to user root)"), said


def test_the_out_check_runs_where_os_has_no_o_nonblock(tmp_path, monkeypatch):
    """Windows' os has no O_NONBLOCK: the check of a cache's .manifest.lock (made by any
    earlier run) must not end every labels run there in an AttributeError."""
    from distill.data.labels_command import _unwritable
    (tmp_path / ".manifest.lock").touch()
    monkeypatch.delattr(os, "O_NONBLOCK")
    assert _unwritable(tmp_path, "--out") == ""


def test_the_labelling_lock_is_writable_by_those_who_may_write_the_cache_not_by_all(tmp_path):
    """.labelling.lock was made 0666 in any cache: a user who could not write the cache (a
    folder 0755, a group's 0775) could still open it and hold a claim on every image, and each
    run into it then waited at its end for ever. It is opened up as far as the folder is."""
    from distill.data.label_claims import CLAIMS, LabelClaims
    for folder_mode, lock_mode in ((0o755, 0o600), (0o2775, 0o660), (0o1777, 0o666)):
        out = tmp_path / oct(folder_mode)
        out.mkdir()
        out.chmod(folder_mode)
        LabelClaims(out).close()
        assert oct((out / CLAIMS).stat().st_mode & 0o777) == oct(lock_mode), oct(folder_mode)


@pytest.fixture
def passable_tmp():
    """A folder other users can pass through, for the tests that label as them. pytest's own
    tmp folders sit in /tmp/pytest-of-USER, 0700; opening that up for a test's while raced
    with the other workers' pytest, which closes it again when it finds it open, and with
    each other: a child then failed at random with a PermissionError."""
    import shutil
    import tempfile
    d = Path(tempfile.mkdtemp(prefix="sharpen-labels-"))
    if any(not p.stat().st_mode & 0o001 for p in d.parents):
        shutil.rmtree(d)
        pytest.skip(f"{d.parent} is not passable for other users (TMPDIR)")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _group_cache(tmp_path, mode: int, gid: int) -> Path:
    """tmp_path/cache, root's with group `gid` and `mode`, to label tmp_path/data into."""
    tmp_path.chmod(0o755)
    _paired(tmp_path / "data", 2, h=16, w=16)
    cache = tmp_path / "cache"
    cache.mkdir()
    os.chown(cache, 0, gid)
    cache.chmod(mode)
    return cache


def _label_as(tmp_path, said: dict, uid: int, names: int, gid: int = 65534,
              groups: tuple[int, ...] = ()) -> None:
    """In a child: `names` images of tmp_path/data labelled into tmp_path/cache as user `uid`
    (primary group `gid`, also in `groups`) under umask 022; what came of it put in `said`."""
    import io
    from contextlib import redirect_stderr
    os.chdir(tmp_path)
    os.setgroups(list(groups))
    os.setgid(gid)
    os.setuid(uid)
    os.umask(0o022)
    err = io.StringIO()
    with redirect_stderr(err):
        try:
            s = run_labels("data", "cache", teacher=FakeTeacher(), tile=0, overlap=0,
                           progress=False, limit=names)
            said["done"] = s.done
        except Exception as e:   # noqa: BLE001 - the child reports it
            said["error"] = repr(e)
    said["err"] = err.getvalue()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="needs root, to label as another user (nobody)")
def test_a_group_cache_first_labelled_under_umask_022_is_open_to_the_rest_of_the_group(
        passable_tmp):
    """A studio's cache folder, group-writable (2775), first labelled by a member whose umask
    is 022: its labels/ and .manifest.lock were that member's alone to write, and every other
    member's labels run into it was refused ('cannot write in cache/labels'). They are now
    made as writable as the folder they are in; a lock file an earlier version made so is
    locked through a read-only handle (flock needs no write)."""
    tmp_path = passable_tmp
    import stat

    from child_fixtures import in_a_child
    cache, label = _group_cache(tmp_path, 0o2775, 65534), partial(_label_as, tmp_path)
    said = in_a_child(lambda d: label(d, 65534, 1))   # the first member (nobody)
    assert said.get("done") == 1, said
    assert stat.S_IMODE((cache / "labels").stat().st_mode) & 0o070 == 0o070
    assert stat.S_IMODE((cache / ".manifest.lock").stat().st_mode) == 0o660
    (cache / ".manifest.lock").chmod(0o644)   # as an earlier version left it
    said = in_a_child(lambda d: label(d, 65533, 2))   # another member of the group
    assert said.get("done") == 1 and "error" not in said, said


# Holds the claim on sys.argv[2] in the cache sys.argv[1], as a live run labelling it, until
# a run waits on it (Linux's /proc/locks lists the waiter), or a minute has passed.
CLAIM_HOLDER = ("import sys, time; from pathlib import Path\n"
                "from distill.data.label_claims import LabelClaims\n"
                "c = LabelClaims(Path(sys.argv[1])); assert c.take(sys.argv[2])\n"
                "ino = f':{__import__(\"os\").fstat(c.fd).st_ino} '\n"
                "print('held', flush=True); end = time.time() + 60\n"
                "while time.time() < end and not any(\n"
                "        ' -> ' in x and ino in x for x in open('/proc/locks')):\n"
                "    time.sleep(0.05)")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's struct flock, /proc")
def test_a_run_waiting_on_another_runs_claim_names_that_run(tmp_path, capsys):
    """Two accounts labelling into one shared cache: the second waited on the first's image
    saying only 'being labelled by another run: waiting for it', for ever where that run was
    stopped (kill -STOP, a suspended terminal), with no way to tell whose run it was. It now
    names the run's process and user, worded as every lock's refusal names its holder
    ('process N'), not 'pid N' here alone."""
    import getpass

    from holder_fixtures import held_elsewhere
    _paired(tmp_path / "data", 2, h=16, w=16)
    cache = tmp_path / "cache"
    cache.mkdir()
    with held_elsewhere(CLAIM_HOLDER, str(cache), "im01") as holder:
        s = run_labels(str(tmp_path / "data"), cache, teacher=FakeTeacher(), tile=0,
                       overlap=0, progress=False)
    err = capsys.readouterr().err
    assert s.done == 2, err
    assert "1 image(s) being labelled by another run" in err, err
    assert (f"waiting for im01: the run labelling it is process {holder.pid}, user "
            f"{getpass.getuser()} (Ctrl-C stops this one") in err, err


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="needs root, to label as other users")
def test_a_group_cache_without_setgid_is_shared_with_its_own_group_not_the_first_members(
        passable_tmp):
    """A lab's cache folder, 0775 of the group lab but not setgid: what a member made in it
    has the member's own primary group. labels/ and .manifest.lock were made writable by that
    group (every user of a server where it is `users`), not the cache's: the rest of lab was
    still refused ('cannot write in cache/labels'), and users who may not write the cache
    could write its labels. They are now the cache folder's group where the member is in it,
    and writable by no group where not."""
    tmp_path = passable_tmp
    import stat

    from child_fixtures import in_a_child
    lab, users = 65534, 65533
    cache, label = _group_cache(tmp_path, 0o775, lab), partial(_label_as, tmp_path)
    said = in_a_child(lambda d: label(d, 65534, 1, gid=users, groups=(users, lab)))
    assert said.get("done") == 1, said
    for made in (cache / "labels", cache / ".manifest.lock"):
        st = made.stat()
        assert (st.st_gid, stat.S_IMODE(st.st_mode) & 0o020) == (lab, 0o020), made
    said = in_a_child(lambda d: label(d, 65533, 2, gid=lab))   # lab's other member
    assert said.get("done") == 1 and "error" not in said, said


def test_a_caches_labels_folder_is_made_on_windows_too(tmp_path, monkeypatch):
    """Making a cache's labels/ shared with whoever may write the cache (3efe2bfc) asked
    os.geteuid, which Windows' os has not: the first label staged into a new cache there
    ended in an AttributeError."""
    from distill.data.label_claims import make_shared_folder
    monkeypatch.delattr(os, "geteuid")
    make_shared_folder(tmp_path / "cache" / "labels")
    assert (tmp_path / "cache" / "labels").is_dir()


@pytest.mark.skipif(not hasattr(os, "O_NOFOLLOW"), reason="POSIX modes")
def test_a_link_swapped_in_for_a_labels_folder_just_made_is_not_opened_up(tmp_path,
                                                                          monkeypatch):
    """labels/ is made, then made as writable as the cache it is in, by its name: in a cache
    anyone may write, a link put in its place between the two (to ~/.ssh, say) had its
    target made writable by every user. What is opened up is the folder made, or nothing."""
    from distill.data.label_claims import make_shared_folder
    cache, victim = tmp_path / "cache", tmp_path / "victim"
    cache.mkdir()
    cache.chmod(0o777)
    victim.mkdir(mode=0o700)
    real = Path.mkdir

    def swapped(self, *args, **kwargs):   # the other user wins the race
        real(self, *args, **kwargs)
        if self.name == "labels":
            self.rename(cache / "moved")
            self.symlink_to(victim)
    monkeypatch.setattr(Path, "mkdir", swapped)
    make_shared_folder(cache / "labels")
    assert oct(victim.stat().st_mode & 0o777) == oct(0o700)
