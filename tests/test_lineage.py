"""A fine-tune's lineage: the weights it started from (init=) and the label caches it was
distilled on (their source data and teacher), recorded in its checkpoints and carried into
the export report, and said by `sharpen models` for both the checkpoint and its artifacts."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from pair_fixtures import noise_pairs
from runtime_fixtures import table_rows

pytest.importorskip("onnx")
pytestmark = pytest.mark.usefixtures("one_thread")


_pairs = partial(noise_pairs, size=32)


def _student(out: Path, cache: Path, steps: int, **extra) -> None:
    from distill.config import load_config
    from distill.trainer import train
    ov = [f"out={out}", "task=student", "model.arch=fast",
          "model.args={width: 8, blocks: 1, low_blocks: 1}", f"optim.steps={steps}",
          "optim.warmup_steps=1", "data.crop=16", "data.batch_size=2", "data.workers=0",
          f"data.labels={cache}", "val_every=1000", "ckpt_every=1000", "log_every=1"]
    train(load_config(None, ov + [f"{k}={v}" for k, v in extra.items()]), quiet=True)


def test_a_fine_tune_and_its_export_say_which_weights_and_labels_made_them(
        tmp_path, tiny_teacher_pt, capsys):
    from distill.data.labels_command import main as labels
    from distill.teacher import file_hash
    from sharpen.cli import main

    pairs = _pairs(tmp_path / "mine", 3)
    cache = tmp_path / "labels"
    assert labels(["--data", str(pairs), "--out", str(cache), "--teacher-weights",
                   str(tiny_teacher_pt), "--tile", "0", "--device", "cpu", "--quiet"]) == 0
    _student(tmp_path / "a", cache, 1)
    start = tmp_path / "a" / "last.pt"
    _student(tmp_path / "b", cache, 2, init=start)
    _student(tmp_path / "b", cache, 3, init=start)   # resumed: the lineage is the run's still
    capsys.readouterr()
    said = [f"fine-tuned from {start.resolve()} (sha256 {file_hash(start)})",
            f"distilled on labels {cache.resolve()} (3 images of {pairs.resolve()}, "
            f"teacher {tiny_teacher_pt.resolve()} {file_hash(tiny_teacher_pt)})"]
    assert main(["models", str(tmp_path / "b" / "last.pt")]) == 0
    out = capsys.readouterr().out
    for line in said:
        assert line in out, out
    assert main(["export", "--weights", str(tmp_path / "b" / "last.pt"), "--formats", "onnx",
                 "--out", str(tmp_path / "export"), "--no-latency", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["models", str(tmp_path / "export" / "b-last.onnx")]) == 0
    out = capsys.readouterr().out
    for line in said:
        assert line in out, out


def test_a_run_begun_before_lineage_was_recorded_still_names_its_init_once_resumed(
        tmp_path, tiny_teacher_pt, capsys):
    """Its last.pt records no lineage: resumed, the run's lineage had the label caches but no
    init, and `sharpen models` said nothing of a start, as of a run trained from scratch."""
    import torch

    from distill.checkpoint import read_checkpoint
    from distill.data.labels_command import main as labels
    from sharpen.cli import main

    cache = tmp_path / "labels"
    assert labels(["--data", str(_pairs(tmp_path / "mine", 2)), "--out", str(cache),
                   "--teacher-weights", str(tiny_teacher_pt), "--tile", "0", "--device", "cpu",
                   "--quiet"]) == 0
    _student(tmp_path / "a", cache, 1)
    start = tmp_path / "a" / "last.pt"
    _student(tmp_path / "b", cache, 3, init=start, stop_after=2)
    last = tmp_path / "b" / "last.pt"
    ck = read_checkpoint(last)
    del ck["lineage"]   # as an earlier version wrote it
    torch.save(ck, last)
    _student(tmp_path / "b", cache, 3, init=start)
    capsys.readouterr()
    assert main(["models", str(last)]) == 0
    out = capsys.readouterr().out
    assert (f"fine-tuned from init={start} (its file's path and sha256 not recorded: the run "
            "began before they were)") in out, out
    assert "None" not in out, out


def test_a_cache_labelled_before_teacher_files_were_named_gives_its_teacher_by_hash(
        tmp_path, tiny_teacher_pt):
    """Manifest entries from before the teacher's file was recorded hold its hash alone: the
    line read "teacher None <hash>"."""
    import json

    from distill.data.labels_command import main as labels
    from distill.lineage import describe_lineage, label_cache_origin
    from distill.teacher import file_hash

    cache = tmp_path / "labels"
    assert labels(["--data", str(_pairs(tmp_path / "mine", 2)), "--out", str(cache),
                   "--teacher-weights", str(tiny_teacher_pt), "--tile", "0", "--device", "cpu",
                   "--quiet"]) == 0
    manifest = json.loads((cache / "manifest.json").read_text())
    for entry in manifest["entries"].values():
        del entry["teacher_weights"]   # as an earlier version wrote them
    (cache / "manifest.json").write_text(json.dumps(manifest))
    [line] = describe_lineage({"labels": label_cache_origin(cache)})
    assert line.endswith(f"teacher {file_hash(tiny_teacher_pt)} (its file not recorded))"), line
    assert "None" not in line, line


def _two_label_caches(tmp_path: Path, teacher: Path) -> list[Path]:
    """Label caches `labels-first` (2 pairs) and `labels-second` (3) by the tiny teacher."""
    from distill.data.labels_command import main as labels

    caches = []
    for name, n in (("first", 2), ("second", 3)):
        caches.append(tmp_path / f"labels-{name}")
        assert labels(["--data", str(_pairs(tmp_path / name, n)), "--out", str(caches[-1]),
                       "--teacher-weights", str(teacher), "--tile", "0", "--device", "cpu",
                       "--quiet"]) == 0
    return caches


def _labels_lines(ckpt: Path, capsys) -> tuple[str, list[str]]:
    """`sharpen models CKPT`'s output and its "distilled on labels" lines."""
    from sharpen.cli import main

    capsys.readouterr()
    assert main(["models", str(ckpt)]) == 0
    out = capsys.readouterr().out
    return out, [line for line in out.splitlines() if "distilled on labels" in line]


def test_a_run_resumed_on_other_labels_names_the_labels_it_was_distilled_on_before(
        tmp_path, tiny_teacher_pt, capsys):
    """`resume=a/last.pt out=b data.labels=NEW` went on from weights distilled on a's labels,
    yet b's lineage named only the new cache."""
    caches = _two_label_caches(tmp_path, tiny_teacher_pt)
    _student(tmp_path / "a", caches[0], 2)
    _student(tmp_path / "b", caches[1], 3, resume=tmp_path / "a" / "last.pt")
    _student(tmp_path / "b", caches[1], 4)   # resumed on the same labels: said once
    out, said = _labels_lines(tmp_path / "b" / "last.pt", capsys)
    assert len(said) == 1 and said[0].startswith(
        f"{tmp_path / 'b' / 'last.pt'}: distilled on labels {caches[1].resolve()} (3 images"), out
    assert said[0].endswith(f", after labels {caches[0].resolve()} to step 2"), out


def test_a_cache_relabelled_in_part_names_the_teacher_of_the_labels_training_reads(
        tmp_path, tiny_teacher_pt):
    """A second `labels` run with another teacher and --limit 2 left two older labels outside
    its selection, which training never reads: the lineage named both teachers. And entries
    still in a rank's shard (an interrupted multi-rank run, which training reads) were left
    out, naming no teacher."""
    import shutil

    import torch

    from distill.checkpoint import atomic_save, make_checkpoint
    from distill.data.labels_command import main as labels
    from distill.lineage import label_cache_origin
    from distill.restormer import build_restormer
    from distill.teacher import file_hash

    torch.manual_seed(1)
    m = build_restormer("tiny")
    other = tmp_path / "other-teacher.pt"
    atomic_save(make_checkpoint(m, kind="teacher", arch="restormer",
                                arch_args=m.config.to_dict()), other)
    pairs, cache = _pairs(tmp_path / "mine", 4), tmp_path / "labels"
    for teacher, limit in ((tiny_teacher_pt, []), (other, ["--limit", "2"])):
        assert labels(["--data", str(pairs), "--out", str(cache), "--teacher-weights",
                       str(teacher), "--tile", "0", "--device", "cpu", "--quiet",
                       *limit]) == 0
    want = {"images": 2, "teachers": [{"path": str(other.resolve()),
                                       "sha256": file_hash(other)}]}
    origin = label_cache_origin(cache)
    assert {k: origin[k] for k in want} == want, origin
    shutil.move(cache / "manifest.json", cache / "manifest.rank0.json")
    origin = label_cache_origin(cache)
    assert {k: origin[k] for k in want} == want, origin


def test_sharpen_models_tells_a_validation_score_of_the_older_ssim_from_this_versions(
        tmp_path, tiny_teacher_pt, capsys):
    """The shipped students' checkpoints hold validation SSIMs of the 7x7 window, a new run's
    best.pt those of the Gaussian one: `sharpen models fast runs/x/best.pt` put the two side
    by side as if comparable."""
    from distill.checkpoint import atomic_save, make_checkpoint
    from distill.data.labels_command import main as labels
    from distill.students import create_student
    from sharpen.cli import main

    cache = tmp_path / "labels"
    assert labels(["--data", str(_pairs(tmp_path / "mine", 2)), "--out", str(cache),
                   "--teacher-weights", str(tiny_teacher_pt), "--tile", "0", "--device", "cpu",
                   "--quiet"]) == 0
    _student(tmp_path / "a", cache, 2, **{"data.val_labels": cache, "val_every": 2})
    old = create_student("fast", width=8, blocks=1, low_blocks=1)
    atomic_save(make_checkpoint(old, kind="student", arch="fast", arch_args=old.arch_args,
                                step=9, metrics={"model_gt_ssim": 0.5, "step": 9}),
                tmp_path / "old.pt")   # as checkpoints were saved before the formula changed
    capsys.readouterr()
    for name, older in (("a/best.pt", False), ("a/last.pt", False), ("old.pt", True)):
        assert main(["models", str(tmp_path / name), "--height", "64", "--width", "96"]) == 0
        text = " ".join(r[-1] for r in table_rows(capsys.readouterr().out))
        assert "model_gt_ssim" in text, text
        assert ("formula not recorded: an older version's 7x7 window" in text) == older, text


def test_a_run_begun_before_lineage_was_recorded_names_its_earlier_labels_once_branched(
        tmp_path, tiny_teacher_pt, capsys):
    """Its last.pt records no lineage, only its config's data.labels: branched onto other
    labels, the run named the new cache alone, as if its weights had seen no other."""
    import torch

    from distill.checkpoint import read_checkpoint

    caches = _two_label_caches(tmp_path, tiny_teacher_pt)
    _student(tmp_path / "a", caches[0], 2)
    last = tmp_path / "a" / "last.pt"
    ck = read_checkpoint(last)
    del ck["lineage"]   # as an earlier version wrote it
    torch.save(ck, last)
    _student(tmp_path / "b", caches[1], 3, resume=last)
    out, said = _labels_lines(tmp_path / "b" / "last.pt", capsys)
    assert len(said) == 1 and said[0].endswith(
        f", after labels {caches[0].resolve()} to step 2"), out
