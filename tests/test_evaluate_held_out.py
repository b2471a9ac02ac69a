"""`sharpen evaluate` of a distilled student on the data its label caches came from: the images
it trained on, and those that chose its best.pt, are named, as their scores are not held out."""
from __future__ import annotations

import json
import shutil

from distill.images import read_image, write_image
from sharpen.cli import main
from test_evaluate_resume import _pairs

TINY = ["model.arch=fast", "model.args={width: 8, blocks: 1, low_blocks: 1}", "optim.steps=1",
        "optim.warmup_steps=0", "data.crop=32", "data.batch_size=1", "data.workers=0",
        "device=cpu", "--quiet", "--threads", "1"]


def test_a_students_own_training_and_validation_images_are_named_when_scored(
        tmp_path, tiny_teacher_pt, capsys, monkeypatch):
    """A sweep's runs, distilled on labels of reds-mini and scored by `sharpen evaluate` on all
    of reds-mini, read as held-out scores: 26 of the 60 images had been trained on or had chosen
    best.pt, and nothing said so."""
    monkeypatch.chdir(tmp_path)
    _pairs(tmp_path / "pairs", 4, side=48)
    shutil.copytree(tmp_path / "pairs", tmp_path / "copy")   # the same images, elsewhere
    _pairs(tmp_path / "other", 4, side=48)
    for p in (tmp_path / "other").rglob("*.png"):   # other images under the same names
        write_image(p, 1 - read_image(p))
    assert main(["labels", "--data", "pairs", "--out", "train", "--hold-out", "0.5",
                 "--val-out", "val", "--teacher-weights", str(tiny_teacher_pt), "--tile", "0",
                 "--quiet", "--threads", "1"]) == 0
    assert main(["distill", "data.labels=train", "data.val_labels=val", "out=run", *TINY]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--weights", "run/best.pt", "--data", "pairs", "--out", "ev",
                 "--threads", "1", "--quiet"]) == 0
    err = capsys.readouterr().err
    said = [ln for ln in err.splitlines() if "not held out" in ln]
    assert len(said) == 1, err
    assert "run/best.pt trained on 1 of the 4 images scored (data.labels=" in said[0], said
    assert "im000" in said[0] and "validated on 2 (data.val_labels=" in said[0], said
    rec = json.loads((tmp_path / "ev" / "metrics.json").read_text())["not_held_out"]
    assert rec == {"run-best": {"trained": ["im000"], "validated": ["im002", "im003"]}}, rec
    # A copy of the data holds the same images (the same bytes), other data other ones
    assert main(["evaluate", "--weights", "run/best.pt", "--data", "copy", "--out", "ev-copy",
                 "--threads", "1", "--quiet"]) == 0
    assert "not held out" in capsys.readouterr().err
    copied = json.loads((tmp_path / "ev-copy" / "metrics.json").read_text())["not_held_out"]
    assert copied == rec, copied
    assert main(["evaluate", "--weights", "run/best.pt", "--data", "other", "--threads", "1",
                 "--quiet"]) == 0
    assert "not held out" not in capsys.readouterr().err
    # Only the images scored: --limit 1 takes im000 alone
    assert main(["evaluate", "--weights", "run/best.pt", "--data", "pairs", "--limit", "1",
                 "--threads", "1", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "trained on 1 of the 1 image scored" in err and "validated on" not in err, err


def _labels(data: str, out: str, teacher, *more: str) -> None:
    assert main(["labels", "--data", data, "--out", out, "--teacher-weights", str(teacher),
                 "--tile", "0", "--quiet", "--threads", "1", *more]) == 0


def test_only_the_validation_images_that_chose_best_pt_are_named(
        tmp_path, tiny_teacher_pt, capsys, monkeypatch):
    """Validation reads data.val_max_images of data.val_labels, spread over it (8 of reds-mini's
    20 held-out frames by default): the warning named all 20 as having chosen best.pt, the 12
    never scored in training among them, and metrics.json listed them as not held out."""
    monkeypatch.chdir(tmp_path)
    _pairs(tmp_path / "pairs", 4, side=48)
    _labels("pairs", "train", tiny_teacher_pt, "--limit", "1")
    _labels("pairs", "val", tiny_teacher_pt)
    assert main(["distill", "data.labels=train", "data.val_labels=val", "out=run",
                 "data.val_max_images=2", *TINY]) == 0
    capsys.readouterr()
    log = (tmp_path / "run" / "train.log").read_text()
    assert "validating on 2 of them" in log and "name order (im000, im003)" in log, log
    assert main(["evaluate", "--weights", "run/best.pt", "--data", "pairs", "--out", "ev",
                 "--threads", "1", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "validated on 2 (data.val_labels=" in err, err
    rec = json.loads((tmp_path / "ev" / "metrics.json").read_text())["not_held_out"]
    assert rec == {"run-best": {"trained": ["im000"], "validated": ["im000", "im003"]}}, rec


def test_a_branchs_earlier_labels_are_named_too(tmp_path, tiny_teacher_pt, capsys, monkeypatch):
    """A run resumed into another folder with new data.labels holds weights distilled on the
    earlier labels up to its step too (its lineage names them under "earlier"): scored on the
    earlier labels' images, nothing was said of them."""
    monkeypatch.chdir(tmp_path)
    _pairs(tmp_path / "pairs", 2, side=48)
    _pairs(tmp_path / "more", 2, side=48)
    _labels("pairs", "first", tiny_teacher_pt)
    _labels("more", "second", tiny_teacher_pt)
    assert main(["distill", "data.labels=first", "out=a", *TINY]) == 0
    assert main(["distill", "data.labels=second", "out=b", "resume=a/last.pt",
                 *[o if o != "optim.steps=1" else "optim.steps=2" for o in TINY]]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--weights", "b/last.pt", "--data", "pairs", "--out", "ev",
                 "--threads", "1", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "b/last.pt trained on 2 of the 2 images scored (data.labels=" in err, err
    assert "first" in err, err
    rec = json.loads((tmp_path / "ev" / "metrics.json").read_text())["not_held_out"]
    assert rec == {"b-last": {"trained": ["im000", "im001"]}}, rec


def test_the_frames_a_footage_cache_saved_are_named_when_scored(
        tmp_path, tiny_teacher_pt, capsys, monkeypatch):
    """`sharpen evaluate --data CACHE` is refused, pointing at the frames the cache saved
    (CACHE/frames): scored there, the very frames trained on read as held out, as the cache
    names the clip as their input."""
    from runtime_fixtures import write_video
    monkeypatch.chdir(tmp_path)
    (tmp_path / "clips").mkdir()
    write_video(tmp_path / "clips" / "c.mp4", n=3)
    _labels("clips", "lab", tiny_teacher_pt)
    assert main(["distill", "data.labels=lab", "out=run", *TINY]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--weights", "run/last.pt", "--data", "lab/frames", "--out", "ev",
                 "--threads", "1", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "run/last.pt trained on 3 of the 3 images scored (data.labels=" in err, err
    rec = json.loads((tmp_path / "ev" / "metrics.json").read_text())["not_held_out"]
    assert rec == {"run-last": {"trained": ["c_000000", "c_000001", "c_000002"]}}, rec


def test_a_gone_label_cache_of_the_data_scored_is_said(tmp_path, tiny_teacher_pt, capsys,
                                                       monkeypatch):
    """A student whose label cache was deleted after training (a sweep's caches cleaned up, the
    runs kept) and scored on the data labelled said nothing, as if held out: its lineage still
    names the cache's --data."""
    monkeypatch.chdir(tmp_path)
    _pairs(tmp_path / "pairs", 2, side=48)
    _pairs(tmp_path / "other", 2, side=48)
    _labels("pairs", "lab", tiny_teacher_pt)
    assert main(["distill", "data.labels=lab", "out=run", *TINY]) == 0
    shutil.rmtree(tmp_path / "lab")
    capsys.readouterr()
    assert main(["evaluate", "--weights", "run/last.pt", "--data", "pairs", "--threads", "1",
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    said = [ln for ln in err.splitlines() if "not found" in ln]
    assert len(said) == 1 and "run/last.pt" in said[0] and "data.labels=" in said[0], err
    assert str(tmp_path / "pairs") in said[0], said
    assert main(["evaluate", "--weights", "run/last.pt", "--data", "other", "--threads", "1",
                 "--quiet"]) == 0
    assert "not found" not in capsys.readouterr().err


def test_the_bench_names_a_students_own_images_among_its_real_pairs(
        tmp_path, tiny_teacher_pt, capsys, monkeypatch):
    """`sharpen evaluate` names the scored images a student's label caches trained on, but
    `sharpen bench --real-pairs` of the same data, the README's reds-mini, gave their gains as
    held out without a word: the bench says it too, and report.json's pairs hold not_held_out
    as metrics.json does."""
    from benchmarks.artifacts import Student
    from benchmarks.realblur import markdown, run_real_blur
    monkeypatch.chdir(tmp_path)
    _pairs(tmp_path / "pairs", 4, side=48)
    assert main(["labels", "--data", "pairs", "--out", "train", "--hold-out", "0.5",
                 "--val-out", "val", "--teacher-weights", str(tiny_teacher_pt), "--tile", "0",
                 "--quiet", "--threads", "1"]) == 0
    assert main(["distill", "data.labels=train", "data.val_labels=val", "out=run", *TINY]) == 0
    capsys.readouterr()
    student = Student("mine", tmp_path / "run" / "best.pt", "")
    res = run_real_blur("pairs", None, None, [student], tmp_path / "bench", print, None, None,
                        quiet=True)
    err = capsys.readouterr().err
    assert "run/best.pt trained on 1 of the 4 images scored (data.labels=" in err, err
    assert res["pairs"]["not_held_out"] == {
        "mine": {"trained": ["im000"], "validated": ["im002", "im003"]}}, res["pairs"]
    text = "\n".join(markdown(res, lambda h, rows: ""))
    assert "Not held out: mine trained or chose best.pt on some" in text, text
