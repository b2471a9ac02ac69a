"""A validation set held out of the user's own footage: the rule (`distill.data.holdout`) and
`sharpen labels --hold-out FRACTION --val-out DIR`, which labels both caches."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from distill.data.holdout import hold_out
from distill.data.label_cache import LabelCache, read_run_record
from distill.data.labels_command import main
from distill.images import write_image
from pair_fixtures import noise_pairs


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def teacher(tiny_teacher_pt) -> Path:
    return tiny_teacher_pt


def _clip(path: Path, n: int, base: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 32))
    rng = np.random.default_rng(base)
    for i in range(n):
        vw.write((rng.random((32, 48, 3)) * 255).astype(np.uint8))
    vw.release()
    return path


def _frames(folder: Path, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(n):
        write_image(folder / f"{i:04d}.png", rng.random((16, 16, 3)).astype(np.float32))
    return folder


def _names(cache: Path) -> set[str]:
    return set(json.loads((cache / "manifest.json").read_text())["entries"])


def _labels(data, out, val_out, teacher, *extra) -> list[str]:
    return ["--data", str(data), "--out", str(out), "--val-out", str(val_out),
            "--teacher-weights", str(teacher), "--tile", "0", "--device", "cpu", "--quiet",
            *extra]


def test_several_clips_are_held_out_whole_into_a_disjoint_validation_cache(tmp_path, teacher,
                                                                          capsys):
    foot = tmp_path / "footage"
    for day, n in (("day1", 4), ("day2", 4), ("day3", 4)):
        _clip(foot / day / "walk.avi", n, ord(day[-1]))
    out, val = tmp_path / "train", tmp_path / "val"
    assert main(_labels(foot, out, val, teacher, "--hold-out", "0.3")) == 0
    said, err = capsys.readouterr()
    assert f"hold-out: {val} validates on 1 of its 3 clips/folders, whole (day3/walk): 4 of " \
           "its 12 images (33%)" in said, said
    assert "warning" not in err, err   # 33% for 30%: near enough to say nothing
    trained, held = _names(out), _names(val)
    assert held == {f"day3/walk_{i:06d}" for i in range(4)}
    assert trained == {f"day{d}/walk_{i:06d}" for d in (1, 2) for i in range(4)}
    assert not LabelCache(val).shared_inputs(LabelCache(out))
    rec = read_run_record(out)["hold_out"]
    assert (rec["role"], rec["rule"], rec["fraction"], rec["groups"]) == \
        ("training", "clips", 0.3, ["day3/walk"])
    assert rec["other_cache"] == str(val.resolve())
    assert read_run_record(val)["hold_out"]["role"] == "validation"
    assert read_run_record(out)["complete"] is True
    # The same command again: the same split, nothing labelled anew.
    assert main(_labels(foot, out, val, teacher, "--hold-out", "0.3")) == 0
    assert "labels: 0 done, 8 skipped" in capsys.readouterr().out
    assert (_names(out), _names(val)) == (trained, held)


def test_a_hold_out_over_a_cache_labelled_in_full_drops_the_held_out_images(tmp_path, teacher,
                                                                           capsys):
    """Adding a hold-out to a cache an earlier run labelled in full left the held-out frames in
    the training cache (the end-of-run clean-up kept every entry whose input still exists)."""
    clip = _clip(tmp_path / "clip.avi", 10, 0)
    out, val = tmp_path / "train", tmp_path / "val"
    base = ["--data", str(clip), "--out", str(out), "--teacher-weights", str(teacher),
            "--tile", "0", "--device", "cpu", "--quiet"]
    assert main(base) == 0
    assert len(_names(out)) == 10
    capsys.readouterr()
    assert main([*base, "--hold-out", "0.2", "--val-out", str(val)]) == 0
    said = capsys.readouterr().out
    # the last 2 frames for validation, the 2 before them (near-duplicates) in neither cache
    assert _names(val) == {"clip_000008", "clip_000009"}
    assert _names(out) == {f"clip_{i:06d}" for i in range(6)}
    assert (f"removed 4 labels an earlier run made here of images this run holds out of {out} "
            "(clip_000006, clip_000007, clip_000008 and 1 more): the training and validation "
            "caches must not share an image") in said, said
    for i in range(6, 10):
        assert not (out / "labels" / f"clip_{i:06d}.png").exists()
        assert not (out / "frames" / f"clip_{i:06d}.png").exists()
    assert len(LabelCache(out)) == 6 and not LabelCache(val).shared_inputs(LabelCache(out))
    # `sharpen labels --help` names every file a cache holds (run.json was missing).
    from distill.data.commands import LABELS_DESCRIPTION
    held = [p.name for p in out.iterdir() if not p.name.startswith(".")]
    assert {"run.json", "frames"} <= set(held)
    assert all(f"OUT/{name}" in LABELS_DESCRIPTION for name in held), held
    rec = read_run_record(out)["hold_out"]
    assert (rec["rule"], rec["training"], rec["validation"], rec["gap"]) == ("tail", 6, 2, 2)


@pytest.mark.parametrize("extra, message", [
    (["--hold-out", "0"], "--hold-out must be a fraction in (0, 1) of the source's images "
                          "(e.g. 0.2), got 0"),
    (["--hold-out", "1"], "--hold-out must be a fraction in (0, 1)"),
    (["--hold-out", "nan"], "--hold-out must be a fraction in (0, 1)"),
    (["--hold-out", "0.2"], "--hold-out needs --val-out DIR"),
    (["--val-out", "VAL"], "--val-out is written only with --hold-out FRACTION"),
    (["--hold-out", "0.2", "--val-out", "OUT"], "is --out: the training and validation caches "
                                                "must be two folders"),
    (["--hold-out", "0.2", "--val-out", "OUT/val"], "--val-out must not be inside --out"),
    (["--hold-out", "0.2", "--val-out", "VAL", "--split", "val"],
     "--split val with --hold-out"),
    (["--hold-out", "0.2", "--val-out", "DATA/val"], "--val-out DATA/val is inside --data"),
])
def test_hold_out_options_are_checked_before_any_work(tmp_path, teacher, capsys, extra,
                                                      message):
    data = _frames(tmp_path / "data", 3, 0)
    out = tmp_path / "out"
    subs = {"OUT": str(out), "VAL": str(tmp_path / "val"), "DATA": str(data)}
    extra = [next((a.replace(k, v) for k, v in subs.items() if a.startswith(k)), a)
             for a in extra]
    message = message.replace("DATA", str(data))
    argv = ["--data", str(data), "--out", str(out), "--teacher-weights", str(teacher),
            "--tile", "0", "--device", "cpu", "--quiet", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("sharpen labels: error: ") and message in err, err
    assert not out.exists() and not (tmp_path / "val").exists() and not (data / "val").exists()


def test_a_source_with_its_own_split_validates_on_it(tmp_path, teacher, capsys):
    root = tmp_path / "pairs"
    for split, n in (("train", 3), ("val", 2)):
        for sub in ("input", "target"):
            _frames(root / split / sub, n, 0)
    out, val = tmp_path / "train", tmp_path / "val"
    assert main(_labels(root, out, val, teacher, "--hold-out", "0.5")) == 0
    assert "validates on its own val split (nothing held out of train) (--hold-out 0.5 does " \
           "not apply)" in capsys.readouterr().out
    assert _names(out) == {"0000", "0001", "0002"} and _names(val) == {"0000", "0001"}
    assert all("/val/input/" in e["input"] for e in LabelCache(val).entries.values())
    assert read_run_record(val)["hold_out"]["rule"] == "split"


def test_the_rule_holds_out_whole_folders_nearest_the_fraction_and_never_all(tmp_path):
    foot = tmp_path / "frames"
    for name, n, seed in (("a", 6, 1), ("b", 2, 2), ("c", 30, 3)):
        _frames(foot / name, n, seed)
    plan = hold_out(str(foot), 0.2, progress=False)   # 38 images: 8 asked for
    # c (30) alone is far more than 8: skipped; b (2) and a (6) are 8
    assert (plan.rule, plan.groups, len(plan.held), plan.gap) == ("clips", ("a/", "b/"), 8, ())
    assert plan.not_val == {f"c/{i:04d}" for i in range(30)} and plan.not_train.isdisjoint(
        plan.not_val)
    assert hold_out(str(foot), 0.2, progress=False) == plan   # deterministic
    # Whole clips are never all of them (38 of 38): 36 (a + c, 95%) is the nearest to 90%
    # (34.2 images; b + c, 32, is 84%).
    assert hold_out(str(foot), 0.9, progress=False).groups == ("a/", "c/")
    two = tmp_path / "two"
    _frames(two / "x", 10, 4)
    _frames(two / "y", 10, 5)
    plan = hold_out(str(two), 0.1, progress=False)
    assert plan.groups == ("y/",) and len(plan.train) == 10
    with pytest.raises(ValueError, match="a validation hold-out needs at least 2 images"):
        hold_out(str(_frames(tmp_path / "one", 1, 0)), 0.2, progress=False)


def test_whole_clips_far_from_the_fraction_asked_are_said(tmp_path, teacher, capsys):
    """Whole clips held out of two clips, 4 and 6 frames, are 40% or 60% whatever was asked:
    run.json had the counts, the command said nothing of --hold-out 0.1 getting 40%."""
    foot = tmp_path / "footage"
    _clip(foot / "a.avi", 4, 1)
    _clip(foot / "b.avi", 6, 2)
    out, val = tmp_path / "train", tmp_path / "val"
    assert main(_labels(foot, out, val, teacher, "--hold-out", "0.1")) == 0
    said, err = capsys.readouterr()
    assert "validates on 1 of its 2 clips/folders, whole (a): 4 of its 10 images (40%)" in said
    assert err.splitlines() == [
        "warning: --hold-out 0.1: 40% of the images (4 of 10) held out, not 10%: whole "
        "clips/folders are held out, so that no frame of a held-out clip is trained on (its "
        "neighbours are near-duplicates), and no choice of its 2 clips/folders (4 to 6 images "
        "each) comes nearer; more, shorter clips would let a share nearer 10% be held out"], err
    assert (len(_names(out)), len(_names(val))) == (6, 4)
    # A source of 3 images: a third is the nearest share to 0.2 with one image in each cache.
    assert hold_out(str(_frames(tmp_path / "three", 3, 0)), 0.2, progress=False).shortfall() \
        == "33% of the images (1 of 3) held out, not 20%: it has 3 images, and each cache " \
           "needs one at least"


def test_whole_clips_held_out_are_the_nearest_choice_not_the_first_near_one(tmp_path):
    """Each clip was taken, from the last, when it brought the share no further from the
    fraction: 0.3 of folders of 1 and 4 images held out the 4 (80%; as near as nothing), and
    0.45 of 5, 3 and 9 the 9 (53%) where 5 + 3 is 8 of the 8 asked for."""
    foot = tmp_path / "f1"
    _frames(foot / "a", 1, 1)
    _frames(foot / "b", 4, 2)
    plan = hold_out(str(foot), 0.3, progress=False)
    assert (plan.groups, len(plan.held)) == (("a/",), 1)
    assert plan.shortfall() is None   # 20% for 30%
    foot = tmp_path / "f2"
    for name, n, seed in (("a", 5, 1), ("b", 3, 2), ("c", 9, 3)):
        _frames(foot / name, n, seed)
    plan = hold_out(str(foot), 0.45, progress=False)   # 17 images: 8 asked for
    assert (plan.groups, len(plan.held), len(plan.train)) == (("a/", "b/"), 8, 9)
    assert hold_out(str(foot), 0.45, progress=False) == plan   # deterministic


def test_a_folder_of_frames_gets_the_gap_a_clip_gets(tmp_path):
    """A clip's held-out frames had a gap before them, used by neither cache; the same frames
    exported into a folder had none, so the training set held the neighbours (near-duplicates)
    of the first frames validated on. A folder of numbered images is now taken as frames, in
    the order of their numbers (frame_10 after frame_9); other images keep no gap."""
    frames = tmp_path / "frames"
    rng = np.random.default_rng(0)
    for i in range(1, 11):
        write_image(frames / f"frame_{i}.png", rng.random((16, 16, 3)).astype(np.float32))
    plan = hold_out(str(frames), 0.2, progress=False)
    assert (plan.rule, set(plan.held), set(plan.gap)) == (
        "tail", {"frame_9", "frame_10"}, {"frame_7", "frame_8"})
    assert set(plan.train) == {f"frame_{i}" for i in range(1, 7)}
    assert plan.describe() == ("its last 2 of its 10 images (20%), the 2 frames before them "
                               "used by neither (near-duplicates of both sides)")
    # as a clip of the same length
    clip = hold_out(str(_clip(tmp_path / "clip.avi", 10, 0)), 0.2, progress=False)
    assert (len(clip.train), len(clip.held), len(clip.gap)) == (6, 2, 2)
    photos = tmp_path / "photos"   # not frames of one take: no gap
    for name in ("beach", "dog", "hill", "lake", "tree"):
        write_image(photos / f"{name}.png", rng.random((16, 16, 3)).astype(np.float32))
    plan = hold_out(str(photos), 0.2, progress=False)
    assert (plan.held, plan.gap) == (("tree",), ())


def test_one_folder_of_the_frames_of_several_clips_holds_out_whole_clips(tmp_path):
    """reds-mini keeps six clips' frames in one folder (test_000_00000013.png ...): taken as
    one run of frames, its last fifth cut a clip in two and the gap before it held frames of
    another clip. Named photos (a1, b2) are not frames: no gap."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "frames"
    for clip, n in (("walk_", 4), ("bike_", 3), ("car_", 3)):
        for i in range(7, 7 + n):
            write_image(folder / f"{clip}{i:08d}.png", rng.random((8, 8, 3)).astype(np.float32))
    plan = hold_out(str(folder), 0.3, progress=False)
    assert (plan.rule, plan.n_groups, plan.gap) == ("clips", 3, ())
    assert len(plan.groups) == 1 and plan.groups[0] in ("bike_*", "car_*")
    assert {n.rpartition("_")[0] + "_*" for n in plan.held} == set(plan.groups)
    assert "1 of its 3 clips/folders, whole" in plan.describe()
    named = tmp_path / "named"
    for name in ("a1", "b2", "c3", "d4", "e5"):
        write_image(named / f"{name}.png", rng.random((8, 8, 3)).astype(np.float32))
    plan = hold_out(str(named), 0.2, progress=False)
    assert (plan.rule, plan.held, plan.gap) == ("tail", ("e5",), ())
    take = tmp_path / "take"   # one take and a stray cover1.png: not two clips
    for i in range(1, 11):
        write_image(take / f"frame_{i:04d}.png", rng.random((8, 8, 3)).astype(np.float32))
    write_image(take / "cover1.png", rng.random((8, 8, 3)).astype(np.float32))
    plan = hold_out(str(take), 0.2, progress=False)
    assert (plan.rule, len(plan.held), len(plan.gap)) == ("tail", 2, 2)
    assert plan.held == ("frame_0009", "frame_0010"), plan.held


def _files(cache: Path) -> dict[str, bytes]:
    """The label and frame files of a cache, by path inside it."""
    return {str(p.relative_to(cache)): p.read_bytes()
            for sub in ("labels", "frames") for p in sorted((cache / sub).rglob("*.png"))}


def _entries(cache: Path) -> dict[str, dict]:
    """Manifest entries without what differs between two runs making the same label (when,
    how long the teacher took) and the note a reused one carries."""
    return {n: {k: v for k, v in e.items() if k not in ("created", "seconds", "reused_from")}
            for n, e in json.loads((cache / "manifest.json").read_text())["entries"].items()}


def test_a_hold_out_takes_the_labels_already_made_instead_of_running_the_teacher_again(
        tmp_path, teacher, capsys):
    """Footage labelled in full, then again with a hold-out: the held-out frames' labels were
    dropped from --out and the teacher made them again into --val-out (10 s a tile on a CPU)."""
    clip = _clip(tmp_path / "clip.avi", 10, 0)
    out, val = tmp_path / "train", tmp_path / "val"
    base = ["--data", str(clip), "--out", str(out), "--teacher-weights", str(teacher),
            "--tile", "0", "--device", "cpu", "--quiet"]
    assert main(base) == 0
    capsys.readouterr()
    assert main([*base, "--hold-out", "0.2", "--val-out", str(val)]) == 0
    said = capsys.readouterr().out
    assert "labels: 0 done, 6 skipped (up to date), 0 failed, of 6" in said, said
    assert (f"labels: 0 done, 0 skipped (up to date), 2 reused from {out}, 0 failed, of 2"
            in said), said
    assert _names(val) == {"clip_000008", "clip_000009"}
    assert _names(out) == {f"clip_{i:06d}" for i in range(6)}   # still dropped, afterwards
    assert not (out / "labels" / "clip_000008.png").exists()
    entries = json.loads((val / "manifest.json").read_text())["entries"]
    assert all(e["reused_from"] == str(out.resolve()) for e in entries.values())
    # Indistinguishable from caches the teacher labelled anew: the same files, byte for byte,
    # and the same entries.
    out2, val2 = tmp_path / "train2", tmp_path / "val2"
    assert main(_labels(clip, out2, val2, teacher, "--hold-out", "0.2")) == 0
    assert "reused" not in capsys.readouterr().out
    assert _files(val) == _files(val2) and set(_files(val)) == {
        f"{d}/clip_00000{i}.png" for d in ("labels", "frames") for i in (8, 9)}
    assert _files(out) == _files(out2)
    assert _entries(val) == _entries(val2) and _entries(out) == _entries(out2)
    assert LabelCache(val).items() and not LabelCache(val).shared_inputs(LabelCache(out))


def _photos(folder: Path) -> Path:
    """Five photos that are not frames of one take: a hold-out takes the last, with no gap."""
    rng = np.random.default_rng(0)
    for name in ("beach", "dog", "hill", "lake", "tree"):
        write_image(folder / f"{name}.png", rng.random((16, 16, 3)).astype(np.float32))
    return folder


def test_a_label_of_the_validation_cache_moving_to_training_is_taken_from_it(tmp_path, teacher,
                                                                             capsys):
    photos = _photos(tmp_path / "photos")
    out, val = tmp_path / "train", tmp_path / "val"
    assert main(_labels(photos, out, val, teacher, "--hold-out", "0.4")) == 0
    assert _names(val) == {"lake", "tree"}
    label = (val / "labels" / "lake.png").read_bytes()
    capsys.readouterr()
    assert main(_labels(photos, out, val, teacher, "--hold-out", "0.2")) == 0
    said = capsys.readouterr().out
    assert (f"labels: 0 done, 3 skipped (up to date), 1 reused from {val}, 0 failed, of 4"
            in said), said
    assert "labels: 0 done, 1 skipped (up to date), 0 failed, of 1" in said, said
    assert (_names(out), _names(val)) == ({"beach", "dog", "hill", "lake"}, {"tree"})
    assert (out / "labels" / "lake.png").read_bytes() == label
    assert not (val / "labels" / "lake.png").exists()


def _other_teacher(path: Path) -> Path:
    import torch

    from distill.checkpoint import atomic_save, make_checkpoint
    from distill.restormer import build_restormer
    torch.manual_seed(1)
    m = build_restormer("tiny")
    atomic_save(make_checkpoint(m, kind="teacher", arch="restormer",
                                arch_args=m.config.to_dict()), path)
    return path


@pytest.mark.parametrize("change", ["teacher", "tile"])
def test_a_label_made_by_another_teacher_or_tiling_is_not_taken(tmp_path, teacher, capsys,
                                                                change):
    photos = _photos(tmp_path / "photos")
    out, val = tmp_path / "train", tmp_path / "val"
    assert main(["--data", str(photos), "--out", str(out), "--teacher-weights", str(teacher),
                 "--tile", "0", "--device", "cpu", "--quiet"]) == 0
    capsys.readouterr()
    now = (_labels(photos, out, val, _other_teacher(tmp_path / "t1.pt"), "--hold-out", "0.2")
           if change == "teacher" else
           [*_labels(photos, out, val, teacher, "--hold-out", "0.2"), "--tile", "32",
            "--overlap", "8"])
    assert main(now) == 0
    said = capsys.readouterr().out
    assert "labels: 4 done, 0 skipped (up to date), 0 failed, of 4" in said, said
    assert "labels: 1 done, 0 skipped (up to date), 0 failed, of 1" in said, said
    assert "reused" not in said
    assert json.loads((val / "manifest.json").read_text())["entries"]["tree"].get(
        "reused_from") is None


def test_recorded_data_keeps_a_kind_and_the_embedded_name(tmp_path, monkeypatch):
    from distill.data.labels import recorded_data

    monkeypatch.chdir(tmp_path)
    (tmp_path / "embedded").mkdir()        # a folder so named: `embedded` is still the set
    (tmp_path / "pairs").mkdir()
    assert recorded_data("embedded") == "embedded"
    assert recorded_data("paired:pairs") == f"paired:{tmp_path / 'pairs'}"
    assert recorded_data("pairs") == str(tmp_path / "pairs")
    assert recorded_data("missing") == "missing"


def test_run_json_records_a_relative_data_as_an_absolute_path(tmp_path, teacher, capsys,
                                                              monkeypatch):
    """`sharpen labels --data footage` kept "footage" in run.json, which distill quotes back
    (the re-run advice for a hold-out stopped before its validation cache, the selection
    warnings): from another folder it named nothing there."""
    from distill.config import load_config
    from distill.validation import load_val_items

    _frames(tmp_path / "footage" / "a", 3, 0)
    _frames(tmp_path / "footage" / "b", 3, 1)
    monkeypatch.chdir(tmp_path)
    assert main(["--data", "footage", "--out", "train", "--teacher-weights", str(teacher),
                 "--tile", "0", "--quiet"]) == 0
    foot = str((tmp_path / "footage").resolve())
    assert read_run_record(tmp_path / "train")["data"] == foot
    assert main(["--data", "embedded", "--split", "val", "--out", "emb", "--teacher-weights",
                 str(teacher), "--tile", "0", "--limit", "1", "--quiet"]) == 0
    assert read_run_record(tmp_path / "emb")["data"] == "embedded"   # a name stays a name
    # distill's advice for the validation cache the hold-out had not reached yet, elsewhere
    rec = read_run_record(tmp_path / "train")
    (tmp_path / "train" / "run.json").write_text(json.dumps({**rec, "hold_out": {
        "fraction": 0.5, "role": "training", "other_cache": str(tmp_path / "val")}}))
    monkeypatch.chdir(tmp_path / "footage")
    cfg = load_config(None, ["task=student", f"data.labels={tmp_path / 'train'}",
                             f"data.val_labels={tmp_path / 'val'}"])
    with pytest.raises(ValueError, match=f"`sharpen labels --data {foot} --out "):
        load_val_items(cfg, progress=False)


def test_whole_clips_held_out_are_nearest_the_fraction_itself_not_its_rounded_count(tmp_path):
    """0.3 of a still and two 5-frame clips (11 images) held out the still (9%), and warned
    that no choice of clips came nearer than 30%: the count asked for, 3.3, was rounded to 3
    first, to which 1 and 5 are as near, and the smaller won; 5 (45%) is the nearer to 30%."""
    foot = tmp_path / "footage"
    _frames(foot, 1, 0)                 # a still at the top level: the group "./"
    _frames(foot / "day1", 5, 1)
    _frames(foot / "day2", 5, 2)
    plan = hold_out(str(foot), 0.3, progress=False)
    assert (len(plan.groups), len(plan.held)) == (1, 5), plan.groups


def test_one_frame_of_gap_is_said_in_the_singular(tmp_path):
    """'the 1 frames before them used by neither'."""
    plan = hold_out(str(_frames(tmp_path / "take", 5, 0)), 0.2, progress=False)
    assert "its last 1 of its 5 images (20%), the 1 frame before it used by neither" \
        in plan.describe(), plan.describe()
    plan = hold_out(str(_frames(tmp_path / "long", 10, 0)), 0.2, progress=False)
    assert "the 2 frames before them used by neither" in plan.describe(), plan.describe()


def _small_corpus(tmp_path: Path) -> Path:
    """A user's 6 photos through `sharpen corpus`: by the hash of their paths 5 train photos
    (2 pairs each), 1 test photo and no val split."""
    from distill.data.corpus import CorpusOptions, build_corpus
    photos = tmp_path / "photos"
    for i in (0, 1, 2, 3, 4, 10):
        rng = np.random.default_rng(i)
        img = cv2.resize((rng.random((18, 18, 3)) * 255).astype(np.uint8), (72, 72),
                         interpolation=cv2.INTER_NEAREST)
        photos.mkdir(exist_ok=True)
        cv2.imwrite(str(photos / f"photo{i}.png"), img)
    corpus = tmp_path / "corpus"
    with pytest.warns(Warning, match="no photo fell in the val split"):
        build_corpus(photos, corpus, CorpusOptions(copies=2, crop=48, test_crop=64, margin=8),
                     progress=False)
    assert not (corpus / "val").exists() and len(list((corpus / "test/input").iterdir())) == 1
    return corpus


def test_a_corpus_without_val_holds_out_whole_training_photos_not_its_test_split(
        tmp_path, teacher, capsys):
    """A corpus of a few photos has no val split: `--hold-out` validated on its test split,
    the images `sharpen evaluate` scores by default, so the user tuned on what they reported
    on. Whole photos of train are held out instead (both pairs of a photo on one side)."""
    corpus = _small_corpus(tmp_path)
    plan = hold_out(str(corpus), 0.2, progress=False)
    assert plan.split == "train" and plan.held == ("photo4_0", "photo4_1")
    assert not {n.rpartition("_")[0] for n in plan.train} & {"photo4", "photo10"}
    assert "has no val split" in plan.reason and "`sharpen evaluate`" in plan.reason
    out, val = tmp_path / "train", tmp_path / "val"
    assert main(_labels(corpus, out, val, teacher, "--hold-out", "0.2")) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert (f"hold-out: {corpus} has no val split: held out of its train split instead, so "
            "that its test split, which `sharpen evaluate` scores by default, stays unseen by "
            "training and validation") in said
    assert _names(val) == {"photo4_0", "photo4_1"} and len(_names(out)) == 8
    assert all("/train/input/" in e["input"]
               for c in (out, val) for e in LabelCache(c).entries.values())


def test_a_hold_out_that_must_take_the_test_split_warns_naming_evaluate(tmp_path):
    """With one training image nothing can be held out of train: the test split validates, and
    the user is told it is what `sharpen evaluate` reports on."""
    from runtime import SharpenWarning
    root = tmp_path / "pairs"
    for split, n in (("train", 1), ("test", 2)):
        for sub in ("input", "target"):
            _frames(root / split / sub, n, 0)
    with pytest.warns(SharpenWarning) as said:
        plan = hold_out(str(root), 0.2, progress=False)
    assert plan.split == "test" and plan.rule == "split"
    msg = " ".join(str(w.message) for w in said)
    assert (f"{root} has no val split and 1 training image, too few to hold one out: "
            "validating on its test split, the images `sharpen evaluate "
            f"--data {root}` scores by default") in msg


def test_the_hold_out_warning_names_evaluates_gopro_blur_when_labels_read_blur_gamma(tmp_path):
    """The warning's command read blur/ (evaluate's default) of a GoPro root labelled from its
    blur_gamma/ images: the scores it gave were of other inputs than validation's."""
    from runtime import SharpenWarning
    gopro = tmp_path / "GOPRO_Large"
    for split, n in (("train", 1), ("test", 2)):
        for sub in ("blur", "blur_gamma", "sharp"):
            _frames(gopro / split / "GOPR0384_11_00" / sub, n, 0)
    for blur, said in (("blur", ""), ("blur_gamma", " --gopro-blur blur_gamma")):
        with pytest.warns(SharpenWarning) as warned:
            assert hold_out(str(gopro), 0.2, gopro_blur=blur, progress=False).split == "test"
        msg = " ".join(str(w.message) for w in warned)
        assert f"the images `sharpen evaluate --data {gopro}{said}` scores by default" in msg


def _tiny(folder: Path, names: list[str]) -> Path:
    img = np.full((16, 16, 3), 0.5, np.float32)
    for name in names:
        write_image(folder / name, img)
    return folder


def test_unpadded_frame_numbers_are_read_as_numbers_in_limit_and_hold_out(tmp_path):
    """A user's frames named frame1.png ... frame12.png were listed by characters (frame1,
    frame10, frame11, frame12, frame2, ...): --limit's spread took frames out of sequence, and
    a folder of them with one other image held out frame7-frame9, not the last frames."""
    from distill.data.sources import resolve_source, spread

    folder = _tiny(tmp_path / "shots", ["cover.png", *(f"frame{i}.png" for i in range(1, 13))])
    names = [s.name for s in resolve_source(str(folder), split="train").samples]
    assert names == ["cover", *(f"frame{i}" for i in range(1, 13))]
    assert [n for n in spread(names, 3)] == ["cover", "frame6", "frame12"]
    plan = hold_out(str(folder), 0.25)   # not all named alike: the tail of the listing
    assert plan.rule == "tail" and plan.held == ("frame10", "frame11", "frame12"), plan


def test_zero_padded_and_other_names_keep_their_character_order(tmp_path):
    """Reading numbers as numbers must not move anything else: zero-padded frames, folders
    (day1/ beside day1-b/), names with and without a number (a.png, a1.png), so existing
    --limit selections, hold-outs and label caches' training order stay as they were."""
    from distill.data.sources import name_key, resolve_source

    names = ["0009.png", "0010.png", "a.png", "a1.png", "a-b.png", "day1/x_000002.png",
             "day1-b/x_000001.png", "day1/x_000010.png", "img01.png", "img02.png", "z_9.png"]
    folder = _tiny(tmp_path / "mixed", names)
    listed = [s.input.relative_to(folder).as_posix()
              for s in resolve_source(str(folder), split="train").samples]
    assert listed == sorted(names), listed
    assert sorted(names, key=name_key) == sorted(names)
    frames = [f"clip_{i:06d}" for i in (1, 9, 10, 100, 999, 1000)]
    assert sorted(frames, key=name_key) == sorted(frames)


def test_validation_spreads_over_a_label_cache_s_frames_in_number_order(tmp_path, teacher):
    """data.val_labels of frames named frame1 ... frame12 validated on the picks of a
    character-ordered list (frame1, frame10, frame11, ...): `data.val_max_images=3` took
    frame1, frame2 and frame9 instead of the first, middle and last frames."""
    from distill.config import load_config
    from distill.validation import load_val_items

    folder = _tiny(tmp_path / "shots", [f"frame{i}.png" for i in range(1, 13)])
    out = tmp_path / "val"
    assert main(["--data", str(folder), "--out", str(out), "--teacher-weights", str(teacher),
                 "--tile", "0", "--device", "cpu", "--quiet"]) == 0
    cache = LabelCache(out)
    assert [s.name for s, _ in cache.items()] == sorted(f"frame{i}" for i in range(1, 13))
    cfg = load_config(None, ["task=student", f"data.val_labels={out}",
                             "data.val_max_images=3"])
    picked = [v.name for v in load_val_items(cfg, False, lambda m: None, lambda m: None)]
    assert sorted(picked) == ["frame1", "frame12", "frame7"], picked


def test_a_limit_selection_made_in_character_order_is_said_to_change(tmp_path, teacher, capsys):
    """A cache labelled with --limit by a version that listed frame10 before frame2 selected
    other frames than the same command does now: the rerun labelled new frames and training
    left the earlier ones out, with nothing to say why."""
    folder = _tiny(tmp_path / "shots", [f"frame{i}.png" for i in range(1, 13)])
    out = tmp_path / "cache"
    argv = ["--data", str(folder), "--out", str(out), "--teacher-weights", str(teacher),
            "--tile", "0", "--device", "cpu", "--quiet", "--limit", "3"]
    assert main(argv) == 0
    run = read_run_record(out)
    assert run["selection"] == ["frame1", "frame7", "frame12"] and run["order"] == "numbers"
    capsys.readouterr()
    assert main(argv) == 0   # recorded in this order: nothing to say
    assert "order of their characters" not in capsys.readouterr().err
    del run["order"]   # as the versions before wrote it, of the characters' spread
    (out / "run.json").write_text(json.dumps({**run, "selection": ["frame1", "frame4",
                                                                   "frame9"]}))
    capsys.readouterr()
    assert main(argv) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert (f"warning: {out}: its last labels run (--data {folder} --limit 3) spread its 3 over "
            "the names in the order of their characters (frame10 before frame2); numbers now "
            "read as numbers (frame2 before frame10), so this run selects 2 images that one "
            "did not (labelled where the cache lacks them), and training leaves out 2 labels "
            "of its selection (kept in the cache)") in err, err
    assert LabelCache(out).selection == {"frame1", "frame7", "frame12"}


def test_a_label_cache_s_validation_images_keep_the_order_their_digest_was_taken_in(
        tmp_path, teacher):
    """Validation's picks go by the numbers in the names, but the digest a resume compares
    (data_signature) was taken in the names' character order (frame1, frame10, frame11, ...):
    in the new order, every run resumed on such a cache said its validation images had changed
    ("relabelled?") and scored best.pt again."""
    from distill.config import load_config
    from distill.data_checks import data_signature
    from distill.validation import load_val_items

    folder = _tiny(tmp_path / "shots", [f"frame{i}.png" for i in range(1, 13)])
    out = tmp_path / "val"
    assert main(["--data", str(folder), "--out", str(out), "--teacher-weights", str(teacher),
                 "--tile", "0", "--device", "cpu", "--quiet"]) == 0
    cfg = load_config(None, ["task=student", f"data.val_labels={out}",
                             "data.val_max_images=12"])
    items = load_val_items(cfg, False, lambda m: None, lambda m: None)
    then = sorted(items, key=lambda v: v.name)   # as the versions before listed the cache
    assert [v.name for v in then] == sorted(f"frame{i}" for i in range(1, 13))
    assert data_signature([], items) == data_signature([], then)


def test_a_hold_out_made_in_character_order_that_now_moves_trained_images_is_said(
        tmp_path, teacher, capsys):
    """A cache pair labelled with --hold-out by a version that listed frame10 before frame2
    held out other frames than the same command does now: the rerun moved frames the student
    had trained on into the validation cache, and said only that it removed their labels."""
    folder = _tiny(tmp_path / "shots", ["cover.png", *(f"frame{i}.png" for i in range(1, 13))])
    out, val = tmp_path / "train", tmp_path / "val"
    argv = _labels(folder, out, val, teacher, "--hold-out", "0.25")
    assert main(argv) == 0
    run = read_run_record(out)
    assert set(run["selection"]) == {"cover", *(f"frame{i}" for i in range(1, 10))}
    capsys.readouterr()
    assert main(argv) == 0   # recorded in this order: nothing to say
    assert "order of the names' characters" not in capsys.readouterr().err
    del run["order"]   # as the versions before wrote it, of the characters' hold-out
    then = ["cover", *(f"frame{i}" for i in (1, 10, 11, 12, 2, 3, 4, 5, 6))]
    (out / "run.json").write_text(json.dumps({**run, "selection": then}))
    assert main(argv) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert (f"warning: {out}: its last labels run (--data {folder} --hold-out 0.25) held out "
            "its last 3 of its 13 images (23%) in the order of the names' characters (frame10 "
            "before frame2); numbers now read as numbers (frame2 before frame10), so this run "
            "holds out 3 images that one trained on (frame10, frame11, frame12): a student "
            f"trained on its labels has seen them, and scores higher on {val} than on images "
            "it never saw; train it again (resume=never) to validate on unseen images") in err, err


def test_a_hold_out_cache_whose_data_moved_says_the_command_that_keeps_its_labels(tmp_path,
                                                                                  teacher,
                                                                                  capsys):
    """Caches labelled on one machine and copied, with the data, to another (or the data
    folder renamed): training said the inputs "changed or went missing" and to label "that
    data" again, naming the old path; a hold-out's run.json did not record --teacher-weights,
    so the command quoted back labelled with the shipped teacher, and reused nothing."""
    import shlex

    from distill.data.crops import pairs_from_labels
    gpu = tmp_path / "gpu"
    noise_pairs(gpu / "shots", 6)
    assert main(_labels(gpu / "shots", gpu / "labels", gpu / "labels-val", teacher,
                        "--hold-out", "0.34")) == 0
    for cache in ("labels", "labels-val"):
        opts = read_run_record(gpu / cache)["teacher_options"]
        assert opts[:2] == ["--teacher-weights", str(teacher.resolve())], opts
    laptop = tmp_path / "laptop"
    gpu.rename(laptop)
    (laptop / "shots").rename(laptop / "work")
    with pytest.raises(ValueError) as e:
        pairs_from_labels(laptop / "labels")
    said = str(e.value)
    assert f"as is {gpu / 'shots'}, the data they were labelled from" in said, said
    command = said.split("`")[1].replace("NEW_PATH", str(laptop / "work"))
    assert (f"--teacher-weights {teacher} --tile 0 --out {laptop / 'labels'} --val-out "
            f"{laptop / 'labels-val'}") in command, command
    capsys.readouterr()
    assert main([*shlex.split(command)[2:], "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.count("labels: 0 done, 2 skipped (up to date; 2 of them found by content at "
                     "their input's new path), 0 failed") == 2, out
    assert all(i.parent.parent == laptop / "work" for i, _, _ in pairs_from_labels(
        laptop / "labels"))
    assert all(i.parent.parent == laptop / "work" for i, _, _ in pairs_from_labels(
        laptop / "labels-val"))


def test_caches_of_a_hold_out_moved_together_still_name_each_other(tmp_path, teacher):
    """run.json named the other cache of a hold-out by its absolute path alone: with both moved
    to another project folder or machine, a missing validation cache was told to be made with
    `sharpen labels --data DATA --out VAL`, which labels the training images into it."""
    from distill.config import load_config
    from distill.data.label_cache import other_cache
    from distill.validation import load_val_items
    old = tmp_path / "gpu"
    _frames(old / "shots", 6, 0)
    assert main(_labels(old / "shots", old / "labels", old / "labels-val", teacher,
                        "--hold-out", "0.34")) == 0
    new = tmp_path / "laptop"
    old.rename(new)
    assert other_cache(new / "labels", read_run_record(new / "labels")) == new / "labels-val"
    assert other_cache(new / "labels-val", read_run_record(new / "labels-val")) == new / "labels"
    for p in sorted((new / "labels-val").rglob("*"), reverse=True):   # as if never made
        p.rmdir() if p.is_dir() else p.unlink()
    (new / "labels-val").rmdir()
    cfg = load_config(None, ["task=student", f"data.labels={new / 'labels'}",
                             f"data.val_labels={new / 'labels-val'}"])
    with pytest.raises(ValueError) as e:
        load_val_items(cfg, progress=False)
    assert (f"--out {new / 'labels'} --hold-out 0.34 --val-out {new / 'labels-val'}"
            in str(e.value)), e.value
    # The data, moved with them, is not quoted at its old path, where the command failed.
    assert ("--data NEW_PATH --out" in str(e.value)
            and f"with NEW_PATH where {old / 'shots'} is now" in str(e.value)), e.value


def test_the_moved_data_advice_of_either_cache_relabels_each_into_its_own(tmp_path, teacher,
                                                                           capsys):
    """The command quoted back for a moved data folder was cut from the cache's description
    at its second space: a data path with a space left its tail as a stray word in it. And
    the validation cache's was the training cache's with the two swapped (--out labels-val
    --val-out labels): it moved the training images' labels into the validation cache."""
    import shlex

    from distill.data.crops import pairs_from_labels
    gpu = tmp_path / "gpu"
    noise_pairs(gpu / "my shots", 6)
    assert main(_labels(gpu / "my shots", gpu / "labels", gpu / "labels-val", teacher,
                        "--hold-out", "0.34", "--limit", "5")) == 0
    names = {c: _names(gpu / c) for c in ("labels", "labels-val")}
    laptop = tmp_path / "laptop"
    gpu.rename(laptop)
    now = laptop / "my work"
    (laptop / "my shots").rename(now)
    for cache in ("labels-val", "labels"):
        with pytest.raises(ValueError) as e:
            pairs_from_labels(laptop / cache)
        command = str(e.value).split("`")[1].replace("NEW_PATH", shlex.quote(str(now)))
        capsys.readouterr()
        assert main([*shlex.split(command)[2:], "--device", "cpu"]) == 0, command
        out = capsys.readouterr().out
        assert "0 done" in out and ", 0 failed" in out, (command, out)
        for c in ("labels", "labels-val"):
            assert _names(laptop / c) == names[c], (command, c)
            assert all(i.parent.parent == now for i, _, _ in pairs_from_labels(laptop / c)), (
                command, c)
        now = now.rename(laptop / "my work 2")   # moved again, for the other cache's advice


def test_the_moved_data_advice_keeps_a_shipped_teacher_by_its_name(tmp_path, teacher,
                                                                    monkeypatch, capsys):
    """`--teacher-weights teacher` (the shipped one, by name) is no file in the current
    folder: the command quoted back for a moved data folder asked for TEACHER_PT, "the
    teacher's weights", as if the file were lost."""
    import shlex
    import shutil

    from distill.data.crops import pairs_from_labels
    from distill.teacher import BUNDLED_TEACHER
    (tmp_path / "models").mkdir()
    shutil.copy(teacher, tmp_path / "models" / BUNDLED_TEACHER)
    monkeypatch.setenv("SHARPEN_MODELS", str(tmp_path / "models"))
    _frames(tmp_path / "shots", 3, 0)
    assert main(["--data", str(tmp_path / "shots"), "--out", str(tmp_path / "labels"),
                 "--teacher-weights", "teacher", "--tile", "0", "--device", "cpu",
                 "--quiet"]) == 0
    (tmp_path / "shots").rename(tmp_path / "work")
    with pytest.raises(ValueError) as e:
        pairs_from_labels(tmp_path / "labels")
    command = str(e.value).split("`")[1]
    assert "--teacher-weights teacher " in command and "TEACHER_PT" not in str(e.value), e.value
    capsys.readouterr()
    command = command.replace("NEW_PATH", str(tmp_path / "work"))
    assert main([*shlex.split(command)[2:], "--device", "cpu"]) == 0
    assert "labels: 0 done, 3 skipped" in capsys.readouterr().out
