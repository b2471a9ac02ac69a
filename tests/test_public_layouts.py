"""The public deblurring sets in their official layouts (REDS, HIDE, RealBlur's pair lists) are
read as blurred/sharp pairs, matched by sequence and frame: read as footage, their sharp
frames were scored as blurred inputs with no ground truth."""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from distill.data.sources import SourceError, data_set_in, detect_kind, resolve_source


def _png(path: Path, seed: int = 0, shape: tuple[int, int, int] = (6, 8, 3)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    assert cv2.imwrite(str(path), img)
    return path


def _pairs(info) -> dict[str, tuple[Path, Path]]:
    return {s.name: (s.input, s.gt) for s in info.samples}


def _reds(root: Path, shape: tuple[int, int, int] = (6, 8, 3)) -> Path:
    for split in ("train", "val"):
        for seq in ("000", "001"):
            for i in range(3):
                for side in ("blur", "sharp"):
                    _png(root / split / f"{split}_{side}" / seq / f"{i:08d}.png", i, shape)
    (root / "train" / "train_sharp" / "000" / "00000001.png").unlink()
    return root


def test_reds_pairs_by_sequence_and_frame(tmp_path):
    reds = _reds(tmp_path / "REDS")
    assert detect_kind(reds) == "reds"
    with pytest.warns(UserWarning, match=r"000/00000001\.png"):
        info = resolve_source(reds, split="train")
    assert info.kind == "reds" and info.split == "train" and info.has_gt
    pairs = _pairs(info)
    assert len(pairs) == 5 and "000/00000001" not in pairs
    blur, sharp = pairs["000/00000002"]   # the missing frame shifts no other pair
    assert blur == reds / "train" / "train_blur" / "000" / "00000002.png"
    assert sharp == reds / "train" / "train_sharp" / "000" / "00000002.png"
    assert len(resolve_source(reds, split="val").samples) == 6
    # the split folder itself, as REDS' zips unpack it
    assert len(resolve_source(reds / "val", split="test").samples) == 6
    with pytest.raises(SourceError, match=r"no .test. split.*train, val.*give .*val for its "
                                          r"val split, or --split val"):
        resolve_source(reds, split="test")
    assert "REDS" in data_set_in(reds)
    only_train = tmp_path / "REDS-train"   # the train zip alone: never scored as the test split
    only_train.mkdir()
    (_reds(tmp_path / "copy") / "train").rename(only_train / "train")
    with pytest.raises(SourceError, match=r"no 'test' split \(it has: train"):
        resolve_source(only_train, split="test")


def _hide(root: Path) -> Path:
    for i in range(8):
        name = f"{i}fromGOPR{1000 + i}.MP4.png"
        where = "train" if i < 4 else "test/test-close-ups" if i < 6 else "test/test-long-shot"
        _png(root / where / name, i)
        if i != 5:
            _png(root / "GT" / name, i)
    return root


def test_hide_pairs_blurred_split_with_gt_by_name(tmp_path):
    hide = _hide(tmp_path / "HIDE_dataset")
    (hide / "train.txt").write_text("0fromGOPR1000.MP4.png\n")
    assert detect_kind(hide) == "hide"
    with pytest.warns(UserWarning, match=r"test-close-ups/5fromGOPR1005\.MP4\.png") as rec:
        info = resolve_source(hide, split="test")
    assert len(rec) == 1   # the train split's ground truth in GT/ is not "unmatched"
    assert info.kind == "hide" and info.split == "test"
    pairs = _pairs(info)
    assert sorted(pairs) == ["test-close-ups/4fromGOPR1004.MP4",
                             "test-long-shot/6fromGOPR1006.MP4",
                             "test-long-shot/7fromGOPR1007.MP4"]
    blur, sharp = pairs["test-long-shot/6fromGOPR1006.MP4"]
    assert blur == hide / "test" / "test-long-shot" / "6fromGOPR1006.MP4.png"
    assert sharp == hide / "GT" / "6fromGOPR1006.MP4.png"
    assert len(resolve_source(hide, split="train").samples) == 4
    with pytest.raises(SourceError, match=r"HIDE.*train and test"):
        resolve_source(hide, split="val")


def _realblur(root: Path) -> Path:
    top = "RealBlur-J_ECC_IMCORR_centroid_itensity_ref"
    lines = {"train": [], "test": []}
    for s in range(1, 5):
        for i in range(1, 3):
            scene = root / top / f"scene{s:03d}"
            _png(scene / "blur" / f"blur_{i}.png", s * 10 + i)
            _png(scene / "gt" / f"gt_{i}.png", s * 10 + i)
            lines["train" if s < 3 else "test"].append(
                f"{top}/scene{s:03d}/gt/gt_{i}.png {top}/scene{s:03d}/blur/blur_{i}.png\n")
    for split, ls in lines.items():
        (root / f"RealBlur_J_{split}_list.txt").write_text("".join(ls))
    return root


def test_realblur_list_pairs_each_line(tmp_path):
    rb = _realblur(tmp_path / "RealBlur")
    scene1 = rb / "RealBlur-J_ECC_IMCORR_centroid_itensity_ref" / "scene001"
    (scene1 / "gt" / "gt_2.png").unlink()
    listed = rb / "RealBlur_J_train_list.txt"
    assert detect_kind(listed) == "list" and detect_kind(rb) == "list"
    with pytest.warns(UserWarning, match=r"scene001/gt/gt_2\.png"):
        info = resolve_source(listed)
    assert info.kind == "list" and info.has_gt
    pairs = _pairs(info)
    assert list(pairs) == ["scene001/blur_1", "scene002/blur_1",
                           "scene002/blur_2"]
    assert pairs["scene001/blur_1"] == (scene1 / "blur" / "blur_1.png",
                                             scene1 / "gt" / "gt_1.png")
    # the root: the split's list
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        test = resolve_source(rb, split="test")
    assert test.split == "test" and len(test.samples) == 4
    assert test.samples[0].name == "scene003/blur_1"


def test_realblur_root_with_both_cameras_asks_for_one_list(tmp_path):
    rb = _realblur(tmp_path / "RealBlur")
    (rb / "RealBlur_R_test_list.txt").write_text((rb / "RealBlur_J_test_list.txt").read_text())
    with pytest.raises(SourceError, match=r"RealBlur_J_test_list\.txt.*RealBlur_R_test_list"):
        resolve_source(rb, split="test")


def test_pair_list_errors_name_the_line(tmp_path):
    rb = _realblur(tmp_path / "RealBlur")
    bad = rb / "bad_list.txt"
    bad.write_text("RealBlur-J_ECC_IMCORR_centroid_itensity_ref/scene001/gt/gt_1.png\n")
    with pytest.raises(SourceError, match=r"bad_list\.txt line 1: .*GT_PATH BLUR_PATH"):
        resolve_source(bad)
    gone = rb / "gone_list.txt"
    gone.write_text("a/gt.png a/blur.png\n")
    with pytest.raises(SourceError, match=r"no listed pair.*a/gt\.png"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            resolve_source(gone)


def test_ground_truth_folders_read_as_footage_are_named(tmp_path):
    rb = _realblur(tmp_path / "RealBlur")
    for listed in rb.glob("*_list.txt"):   # the lists not copied: no layout to pair by
        listed.unlink()
    assert detect_kind(rb) == "folder"
    with pytest.warns(UserWarning, match=r"8 images under ground-truth folders \(gt/\).*"
                      r"scene001/gt/gt_1\.png.*GT_PATH BLUR_PATH") as rec:
        info = resolve_source(rb)
    assert len(rec) == 1 and not info.has_gt
    footage = tmp_path / "footage"
    _png(footage / "day1" / "a.png")
    _png(footage / "sharpest" / "b.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(resolve_source(footage).samples) == 2


def test_pair_list_blurred_first_is_read_by_its_folder_names(tmp_path):
    rb = _realblur(tmp_path / "RealBlur")
    listed = rb / "RealBlur_J_test_list.txt"
    flipped = rb / "mine.txt"   # BLUR_PATH GT_PATH, as other sets' lists are written
    flipped.write_text("".join(" ".join(line.split()[::-1]) + "\n"
                               for line in listed.read_text().splitlines()))
    a, b = resolve_source(listed), resolve_source(flipped)
    assert [(s.name, s.input, s.gt) for s in a.samples] == [
        (s.name, s.input, s.gt) for s in b.samples]
    assert all(s.gt.parent.name == "gt" for s in b.samples)


def test_a_photo_folder_with_gt_and_test_subfolders_is_footage_not_hide(tmp_path):
    photos = tmp_path / "photos"   # GT/ and test/ beside other folders: no HIDE names shared
    for i, where in enumerate(("GT/a.png", "GT/b.png", "test/c.png", "test/d.png",
                               "holiday/e.png")):
        _png(photos / where, i)
    assert detect_kind(photos) == "folder"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for split in ("train", "test"):
            info = resolve_source(photos, split=split)
            assert info.kind == "folder" and len(info.samples) == 5
    assert "HIDE" not in data_set_in(photos)


def test_pair_list_blurred_first_is_read_by_its_blurred_folder_names(tmp_path):
    for i, side in enumerate(("blurred", "clean")):   # no gt/ or sharp/ folder to tell by
        _png(tmp_path / side / "a.png", i)
        _png(tmp_path / side / "b.png", i + 2)
    listed = tmp_path / "pairs.txt"
    listed.write_text("blurred/a.png clean/a.png\nblurred/b.png clean/b.png\n")
    info = resolve_source(listed)
    assert [(s.input.parent.name, s.gt.parent.name) for s in info.samples] == [
        ("blurred", "clean"), ("blurred", "clean")]
    for i, side in enumerate(("sharp_input", "degraded")):   # GT_PATH BLUR_PATH: as read
        _png(tmp_path / side / "a.png", i)
    listed.write_text("sharp_input/a.png degraded/a.png\n")
    assert resolve_source(listed).samples[0].input.parent.name == "degraded"


def test_footage_with_a_gt_like_folder_is_told_how_to_keep_it_footage(tmp_path):
    photos = tmp_path / "photos"   # photos of archery targets, not ground truth
    _png(photos / "target" / "a.png")
    _png(photos / "b.png", 1)
    with pytest.warns(UserWarning, match=r"target/.*folder:" + str(photos)):
        assert len(resolve_source(photos).samples) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(resolve_source(f"folder:{photos}").samples) == 2


class _Teacher:
    device, config_name, weights_id, model = "cpu", "fake", "fake-weights", None

    def sharpen(self, image, tile=0, overlap=0, batch_size=1):
        return image


def test_a_reds_split_folder_given_alone_says_another_split_does_not_apply(tmp_path, capsys):
    """REDS/val labelled with --split train and --split val gave two identical caches, and
    evaluated with --split test scored the val frames, neither said."""
    from distill.data.labels import run_labels
    from runtime import SharpenWarning
    val = _reds(tmp_path / "REDS", (16, 16, 3)) / "val"   # SSIM's least side: 11
    with pytest.warns(SharpenWarning, match=r"REDS/val holds the val split alone: --split "
                                            "train does not apply"):
        s = run_labels(str(val), tmp_path / "cache", split="train", teacher=_Teacher(),
                       tile=0, overlap=0, progress=False)
    assert s.done == 6
    with warnings.catch_warnings():
        warnings.simplefilter("error", SharpenWarning)
        run_labels(str(val), tmp_path / "cache-val", split="val", teacher=_Teacher(), tile=0,
                   overlap=0, progress=False)

    import torch

    from distill.checkpoint import atomic_save, make_checkpoint
    from distill.students import create_student
    from sharpen.cli import main
    torch.manual_seed(0)
    st = create_student("fast", width=8)
    ckpt = tmp_path / "student-mine.pt"
    atomic_save(make_checkpoint(st, kind="student", arch="fast", arch_args=st.arch_args), ckpt)
    assert main(["evaluate", "--weights", str(ckpt), "--data", str(val), "--split", "test",
                 "--quiet"]) == 0
    assert "REDS/val holds the val split alone: --split test does not apply" in \
        capsys.readouterr().err
    out = tmp_path / "eval"
    assert main(["evaluate", "--weights", str(ckpt), "--data", str(val), "--quiet",
                 "--out", str(out)]) == 0
    said = capsys.readouterr()
    assert "does not apply" not in said.err
    assert "per sequence:" in said.out   # the command's table, and metrics.json's entry
    seqs = json.loads((out / "metrics.json").read_text())["per_sequence"]
    assert list(seqs) == ["000", "001"] and seqs["000"]["images"] == 3


def test_a_reds_blurred_folder_given_alone_names_its_split_to_give(tmp_path):
    """`--data REDS/val/val_blur` was scored as footage without ground truth and no word,
    where `blur/` beside `sharp/` names the folder to give."""
    from distill.data.sources import paired_parent
    reds = _reds(tmp_path / "REDS")
    assert paired_parent(reds / "val" / "val_blur") == (reds / "val", "val_sharp")
    assert paired_parent(reds / "val" / "val_sharp") is None
    assert paired_parent(reds / "val") is None
    from benchmarks.report import BenchError, _check_real_blur
    with pytest.raises(BenchError, match=r"val_blur is the blurred half of a paired folder: "
                                         r"give .*REDS/val, whose val_sharp/"):
        _check_real_blur("--real-pairs", str(reds / "val" / "val_blur"), 4, need_gt=True)


def test_bench_given_a_reds_root_is_told_the_folder_to_give_not_a_split_option_it_lacks(tmp_path):
    """bench --real-pairs REDS (its test split has no sharp frames) was told to "score its val
    split with --split val": bench has no --split, and its help offered a REDS root."""
    reds = _reds(tmp_path / "REDS")
    from benchmarks.report import BenchError, _check_real_blur
    with pytest.raises(BenchError) as e:
        _check_real_blur("--real-pairs", str(reds), 4, need_gt=True)
    assert re.search(r"give \S*REDS/val for its val split", str(e.value)), str(e.value)
    assert "with --split val" not in str(e.value)
    import argparse

    from sharpen.cli import build_parser
    commands = next(a for a in build_parser()._actions
                    if isinstance(a, argparse._SubParsersAction))
    help_text = " ".join(commands.choices["bench"].format_help().split())
    assert "REDS' val/ folder" in help_text and "REDS or HIDE root" not in help_text


def test_a_hide_split_folder_given_alone_names_the_hide_root_to_give(tmp_path):
    """HIDE_dataset/test (or one of its subsets) given alone was footage without ground truth,
    unsaid: its ground truth is in GT/ beside it."""
    from distill.data.sources import paired_parent
    hide = _hide(tmp_path / "HIDE_dataset")
    for half in (hide / "test", hide / "train", hide / "test" / "test-long-shot"):
        assert paired_parent(half) == (hide, "GT"), half
    assert paired_parent(hide) is None and paired_parent(hide / "GT") is None


def test_help_names_every_layout():
    """`sharpen labels --help` listed the kinds of kind:path without reds:, hide:, list:."""
    import re

    from distill.data.commands import LABELS_DESCRIPTION
    from distill.data.sources import KINDS
    listed = set(re.findall(r"^  (\w+) ", LABELS_DESCRIPTION, re.MULTILINE))
    assert set(KINDS) <= listed, set(KINDS) - listed


def _bsd(root: Path) -> Path:
    """BSD (Zhong et al., ESTRNN) as published: a folder per clip, Blur/RGB/ beside Sharp/RGB/."""
    for split in ("train", "valid", "test"):
        for clip in ("000", "001"):
            for i in range(3):
                for side in ("Blur", "Sharp"):
                    _png(root / split / clip / side / "RGB" / f"{i:08d}.png", i)
    (root / "test" / "001" / "Sharp" / "RGB" / "00000002.png").unlink()
    return root


def test_bsd_pairs_by_clip_and_frame(tmp_path):
    """BSD_2ms16ms/test was footage without ground truth, its Sharp/ frames scored as blurred."""
    bsd = _bsd(tmp_path / "BSD_2ms16ms")
    assert detect_kind(bsd) == "bsd" and detect_kind(bsd / "test") == "bsd"
    with pytest.warns(UserWarning, match=r"001/00000002\.png") as rec:
        info = resolve_source(bsd, split="test")
    assert len(rec) == 1
    assert info.kind == "bsd" and info.split == "test" and info.has_gt
    pairs = _pairs(info)
    assert list(pairs) == ["000/00000000", "000/00000001", "000/00000002",
                           "001/00000000", "001/00000001"]
    clip = bsd / "test" / "001"
    assert pairs["001/00000001"] == (clip / "Blur" / "RGB" / "00000001.png",
                                     clip / "Sharp" / "RGB" / "00000001.png")
    assert len(resolve_source(bsd, split="val").samples) == 6   # BSD names it valid/
    assert resolve_source(bsd / "train", split="test").split == "train"   # a split's folder
    assert "BSD" in data_set_in(bsd)
    (bsd / "train").rename(tmp_path / "elsewhere")
    with pytest.raises(SourceError, match=r"no 'train' split \(it has: val, test"):
        resolve_source(bsd, split="train")


def test_a_paired_folder_whose_names_differ_is_told_to_list_its_pairs(tmp_path):
    """blur/0000_blur.png beside sharp/0000_gt.png (Lai et al.'s kernel-suffixed names, a
    set's own) stopped at "no file in blur has a same-named file in sharp", with no way on."""
    _png(tmp_path / "set" / "blur" / "0000_blur.png")
    _png(tmp_path / "set" / "sharp" / "0000_gt.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(SourceError, match=r"same-named.*'GT_PATH BLUR_PATH'.*"
                                              r"sharp/0000_gt\.png blur/0000_blur\.png"):
            resolve_source(tmp_path / "set")


def test_a_bsd_clip_given_alone_pairs_its_frames(tmp_path):
    """BSD's test/<clip>/ (one clip evaluated) read as footage, its Sharp/RGB frames scored as
    blurred inputs without ground truth; `bsd:` on it said it was not a BSD folder; its
    Blur/RGB/ alone was scored without ground truth, said nowhere."""
    from distill.data.sources import paired_parent
    clip = _bsd(tmp_path / "BSD_2ms16ms") / "valid" / "001"
    assert detect_kind(clip) == "bsd"
    for spec in (clip, f"bsd:{clip}"):
        info = resolve_source(spec, split="test")
        assert info.kind == "bsd" and info.split == "val", spec
        assert _pairs(info)["001/00000002"] == (clip / "Blur" / "RGB" / "00000002.png",
                                                clip / "Sharp" / "RGB" / "00000002.png")
        assert len(info.samples) == 3
    for half in (clip / "Blur", clip / "Blur" / "RGB"):
        assert paired_parent(half) == (clip, "Sharp/RGB"), half
    assert paired_parent(clip / "Sharp" / "RGB") is None


def test_a_bsd_clip_whose_names_differ_is_named_as_given(tmp_path):
    clip = tmp_path / "test" / "007"
    _png(clip / "Blur" / "RGB" / "0000_blur.png")
    _png(clip / "Sharp" / "RGB" / "0000.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(SourceError) as e:
            resolve_source(clip)
    assert f"no image in {clip / 'Blur' / 'RGB'} has a same-named file in " \
           f"{clip / 'Sharp' / 'RGB'}: pair them in a list of 'GT_PATH BLUR_PATH' lines in " \
           f"{clip} (paths from the list's folder, e.g. Sharp/RGB/0000.png " \
           "Blur/RGB/0000_blur.png)" in str(e.value), e.value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(SourceError, match=r"/test/<clip>/Blur/RGB has .* in .*/test \("
                                              r".* e\.g\. 007/Sharp/RGB/0000\.png "
                                              r"007/Blur/RGB/0000_blur"):
            resolve_source(clip.parent)
