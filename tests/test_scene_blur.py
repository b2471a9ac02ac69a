"""Realistic scene blur (distill/data/scene_blur.py) and the photo corpus (distill/data/corpus.py)."""
import contextlib
import json
import os
import re
import warnings
import zlib
from dataclasses import replace

import cv2
import numpy as np
import pytest

from distill.data.corpus import CorpusOptions, build_corpus, split_photos
from distill.data.scene_blur import PRESETS, SceneBlurConfig, preset, synthesize_pair
from distill.images import read_image
from runtime import SharpenWarning

# A handful of test photos leaves the val split empty by hash, which build_corpus warns about
# (as it should for a real folder); the tests here are about other things.
pytestmark = pytest.mark.filterwarnings(
    "ignore:.* no photo fell in the val split:runtime.warn.SharpenWarning")

# Everything off: each test switches on the one effect it checks.
STILL = SceneBlurConfig(frames=(9, 9), shake_px=(0, 0), rotation_deg=(0, 0), zoom=(0, 0),
                        perspective=(0, 0), objects=(0, 0), saturation_prob=0.0,
                        shot_noise=(0, 0), read_noise=(0, 0), gamma=(2.2, 2.2),
                        tone_strength=(0, 0), defocus_prob=0.0, jpeg_prob=0.0)


def texture(h=96, w=96, seed=0):
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.uniform(0, 1, (h // 4, w // 4, 3)).astype(np.float32), (w, h),
                     interpolation=cv2.INTER_NEAREST)
    return img


def grad_energy(img):
    g = img.mean(2)
    return float(np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean())


def test_deterministic_per_seed_and_differs_across_seeds():
    img = texture()
    a = synthesize_pair(img, np.random.default_rng(3), PRESETS["gopro"])
    b = synthesize_pair(img, np.random.default_rng(3), PRESETS["gopro"])
    c = synthesize_pair(img, np.random.default_rng(4), PRESETS["gopro"])
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert a[0].dtype == np.float32 and a[0].shape == img.shape
    assert a[0].min() >= 0 and a[0].max() <= 1


def test_no_motion_no_effects_is_identity():
    img = texture()
    blurred, target = synthesize_pair(img, np.random.default_rng(0), STILL)
    np.testing.assert_allclose(blurred, img, atol=1e-4)
    np.testing.assert_allclose(target, img, atol=1e-4)


def test_camera_motion_blurs_and_target_stays_sharp():
    img = texture()
    cfg = replace(STILL, shake_px=(12, 12))
    blurred, target = synthesize_pair(img, np.random.default_rng(1), cfg)
    np.testing.assert_allclose(target, img, atol=1e-4)   # mean pose = the photo
    assert grad_energy(blurred) < 0.7 * grad_energy(target)


def test_target_sits_at_the_centre_of_the_blur_trail():
    """A point light's blur trail is centred on the target's point, for shake paths and moving
    objects alike. Were the target one sub-frame of a curving path (the middle one, as GoPro's
    straight motion allows), it would lie pixels off the trail in a direction the blurred image
    does not show, and a network trained on it learns to leave the blur in place."""
    dot = np.zeros((160, 160, 3), np.float32)
    dot[78:82, 78:82] = 1.0
    lin = replace(STILL, gamma=(1.0, 1.0))          # linear light: the blur is a plain average
    for seed in range(8):
        blurred, target = synthesize_pair(dot, np.random.default_rng(seed),
                                          replace(lin, shake_px=(20, 28)))
        yy, xx = np.mgrid[:160, :160]

        def centroid(img):
            g = img.mean(2)
            return np.array([(g * yy).sum(), (g * xx).sum()]) / g.sum()
        assert np.abs(centroid(blurred) - centroid(target)).max() < 0.5, seed
        assert blurred.max() < 0.5 * target.max()          # it is blurred, not still


def test_rotation_blur_is_non_uniform():
    """In-plane rotation about the centre moves the corners, not the middle."""
    img = texture(128, 128)
    cfg = replace(STILL, rotation_deg=(6, 6))
    blurred, target = synthesize_pair(img, np.random.default_rng(2), cfg)
    diff = np.abs(blurred - target).mean(2)
    centre, corner = diff[56:72, 56:72].mean(), diff[:16, :16].mean()
    assert corner > 3 * centre


def test_saturated_highlights_clip_flat_and_spread():
    img = np.full((64, 64, 3), 0.2, np.float32)
    img[28:36, 28:36] = 1.0                          # a light
    cfg = replace(STILL, shake_px=(16, 16), saturation_prob=1.0, highlight_gain=(5, 5))
    blurred, target = synthesize_pair(img, np.random.default_rng(0), cfg)
    plain, _ = synthesize_pair(img, np.random.default_rng(0), replace(cfg, saturation_prob=0))
    assert (blurred >= 0.999).sum() > 10             # the streak's core saturates
    assert (blurred >= 0.999).sum() > (plain >= 0.999).sum()
    assert target.max() <= 1.0


def test_noise_is_present_and_signal_dependent():
    img = np.concatenate([np.full((32, 64, 3), 0.05, np.float32),
                          np.full((32, 64, 3), 0.8, np.float32)])
    cfg = replace(STILL, shot_noise=(4e-3, 4e-3), read_noise=(1e-3, 1e-3), gamma=(1.0, 1.0))
    blurred, target = synthesize_pair(img, np.random.default_rng(0), cfg)
    resid = blurred - target
    dark, bright = resid[2:30].std(), resid[34:62].std()
    assert dark > 0.003 and bright > 1.5 * dark     # Poisson part grows with the signal
    assert np.abs(target - img).max() < 1e-5         # the target is noise-free


def test_objects_move_independently_of_the_camera():
    """Camera still, one object moving: only the object's region changes between blurred and
    target; with the object off, nothing changes."""
    img = texture(128, 128)
    other = texture(128, 128, seed=5)
    cfg = replace(STILL, objects=(1, 1), object_px=(20, 20), object_size=(0.3, 0.3))
    blurred, target = synthesize_pair(img, np.random.default_rng(7), cfg, other)
    diff = np.abs(blurred - target).mean(2)
    moved = diff > 0.02
    assert 0.005 < moved.mean() < 0.5                # a region moved, not the whole frame
    assert not np.allclose(target, img)              # the object is in the sharp target too
    still, _ = synthesize_pair(img, np.random.default_rng(7), replace(cfg, objects=(0, 0)),
                               other)
    np.testing.assert_allclose(still, img, atol=1e-4)


def test_still_preset_is_sharp_but_for_noise():
    """`still` frames teach a model to leave sharp frames alone: the input differs from the
    target by far less than `mild` blur does, but it does differ (noise, compression)."""
    from distill.metrics import psnr
    img = cv2.GaussianBlur(texture(128, 128), (0, 0), 1.0)
    still = [psnr(*synthesize_pair(img, np.random.default_rng(s), PRESETS["still"]))
             for s in range(6)]
    mild = [psnr(*synthesize_pair(img, np.random.default_rng(s), PRESETS["mild"]))
            for s in range(6)]
    assert np.mean(still) > np.mean(mild) + 6 and min(still) > max(mild) - 6 and max(still) < 60


def test_presets_and_bad_config():
    assert {"gopro", "handheld", "mild", "still"} <= set(PRESETS)
    with pytest.raises(ValueError, match="unknown blur preset 'nope'"):
        preset("nope")
    with pytest.raises(ValueError, match="frames"):
        SceneBlurConfig(frames=(1, 1))
    with pytest.raises(ValueError, match="HxWx3"):
        synthesize_pair(np.zeros((8, 8), np.float32), np.random.default_rng(0))


def _photos(root, names):
    for rel, size in names:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        img = (texture(size, size, seed=len(str(p))) * 255).astype(np.uint8)
        # Alike (a clip's frames), never the same bytes: the corpus skips a photo that copies
        # one of another split.
        img[0, 0] = list(zlib.crc32(rel.encode()).to_bytes(4, "little")[:3])
        cv2.imwrite(str(p), img)


def test_split_is_disjoint_by_photo_and_stable(tmp_path):
    names = [(f"kodak24/k{i}.png", 80) for i in range(3)] + \
            [(f"bsds/b{i}.jpg", 80) for i in range(40)]
    _photos(tmp_path, names)
    s = split_photos(tmp_path)
    assert {p.name for p in s["test"]} == {f"k{i}.png" for i in range(3)}
    sets = [set(s[k]) for k in ("train", "val", "test")]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert sum(map(len, sets)) == 43
    _photos(tmp_path, [("bsds/new.jpg", 80)])      # adding a photo moves no other photo
    s2 = split_photos(tmp_path)
    for k in ("train", "val", "test"):
        assert set(s[k]) <= set(s2[k])


def test_split_says_which_files_under_photos_are_not_images(tmp_path):
    _photos(tmp_path, [(f"set/p{i}.png", 64) for i in range(3)])
    (tmp_path / "README.md").write_text("where the photos come from")
    (tmp_path / "set" / "IMG_1.heic").write_bytes(b"\0")
    with pytest.warns(SharpenWarning, match=re.escape(f"--photos {tmp_path}: 2 files that are "
                      "not images skipped (README.md, set/IMG_1.heic); the corpus reads")):
        s = split_photos(tmp_path)
    assert sum(map(len, s.values())) == 3


def test_split_without_named_test_folders_holds_out_by_hash(tmp_path):
    _photos(tmp_path, [(f"p{i}.png", 64) for i in range(60)])
    s = split_photos(tmp_path)
    assert 1 <= len(s["test"]) <= 15 and len(s["train"]) > 40


def test_build_corpus_bad_inputs_named_and_rest_proceeds(tmp_path, capsys):
    """A skipped photo was a `skipped: ...` print: a Python caller could neither silence nor
    record it; it is a SharpenWarning, and progress=False prints nothing."""
    photos = tmp_path / "photos"
    _photos(photos, [(f"kodak24/k{i}.png", 72) for i in range(2)] +
            [(f"set/a{i}.png", 72) for i in range(4)] + [("set/small.png", 20)])
    (photos / "set" / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "corpus"
    opts = CorpusOptions(copies=2, crop=48, test_crop=64, margin=8)
    with pytest.warns(SharpenWarning) as warned:
        summary = build_corpus(photos, out, opts, progress=False)
    said = [str(w.message) for w in warned]
    assert any(m.startswith("skipped: ") and "broken.png" in m for m in said), said
    assert any("small.png" in m and "smaller than" in m for m in said), said
    assert capsys.readouterr().err == ""
    assert len(summary["failed"]) == 1 and "broken.png" in summary["failed"][0]
    assert len(summary["small"]) == 1 and "small.png" in summary["small"][0]
    assert summary["test"] == 2 and summary["train"] + 2 * summary["val"] >= 4
    a = read_image(next((out / "test" / "input").iterdir()))
    assert a.shape == (64, 64, 3)
    # Re-running is a no-op on what exists (resumable after a kill) and gives the same pairs.
    first = (out / "test" / "input" / "kodak24_k0.png").read_bytes()
    with pytest.warns(SharpenWarning) as again:   # each run names the photos it skips
        build_corpus(photos, out, opts, progress=False)
    said = [str(w.message) for w in again]
    assert any("broken.png" in m for m in said) and any("small.png" in m for m in said), said
    assert (out / "test" / "input" / "kodak24_k0.png").read_bytes() == first
    assert (out / "corpus.json").exists()


def test_corpus_says_once_that_16_bit_photos_are_written_as_8_bit_pairs(tmp_path, capsys):
    """16-bit photos became 8-bit corpus pairs without a word, where `synth` says so: the same
    one warning, with the count and the first names."""
    from distill.images import write_image
    from sharpen.cli import main

    photos = tmp_path / "photos"
    _photos(photos, [("kodak24/k0.png", 48), ("set/c.png", 48)])
    for rel in ("set/a.png", "set/b.tif"):
        write_image(photos / rel, texture(48, 48, seed=len(rel)), bits=16)
    out = tmp_path / "corpus"
    assert main(["corpus", "--photos", str(photos), "--out", str(out), "--copies", "1",
                 "--crop", "32", "--test-crop", "32", "--quiet"]) == 0
    said = capsys.readouterr()
    warned = [ln for ln in said.err.splitlines() if "16-bit" in ln]
    assert warned == ["warning: 2 of the 4 photos are 16-bit (set/a.png, set/b.tif): their "
                      "pairs are written in 8 bits, as every corpus pair is"], warned
    # It ends with the next step, as `labels` ends with the distill command.
    labels = tmp_path / "corpus-labels"
    assert said.out.splitlines()[-1] == (
        "label it with the teacher, whole training photos held out for validation (the "
        f"corpus has no val split): sharpen labels --data {out} --out {labels} "
        f"--hold-out 0.2 --val-out {labels}-val"), said.out
    pairs = list(out.glob("*/*/*.png"))
    assert len(pairs) == 8
    assert all(cv2.imread(str(f), cv2.IMREAD_UNCHANGED).dtype == np.uint8 for f in pairs)


def test_corpus_command_skips_small_photos_with_a_warning_and_fails_on_bad_ones(tmp_path, capsys):
    """Photos smaller than the crop are expected (the teacher card's `--crop 384` over a folder
    whose 500 BSDS500 photos are 481x321): named, skipped, summarised in one warning, and the
    run that made a corpus from the rest exits 0 (it exited 1, which stops a `set -e` script
    after a good corpus). An unreadable photo still exits 1, and so does a run that made no
    training pair at all."""
    from sharpen.cli import main

    photos = tmp_path / "photos"
    _photos(photos, [("kodak24/k0.png", 48)] + [(f"set/a{i}.png", 48) for i in range(6)] +
            [("set/small.png", 24)])
    args = ["corpus", "--photos", str(photos), "--copies", "1", "--quiet"]
    rc = main([*args, "--crop", "32", "--test-crop", "32", "--out", str(tmp_path / "c1")])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "warning: skipped: " in captured.err   # a SharpenWarning, shown as a line
    assert "small.png: 24x24 is smaller than the 32-px crop" in captured.err
    assert "warning: 1 photo smaller than the crop skipped" in captured.err
    assert "pairs" in captured.out and "Traceback" not in captured.err
    # An unreadable photo is a failure: named, the rest used, exit 1.
    (photos / "set" / "broken.png").write_bytes(b"not a png")
    rc = main([*args, "--crop", "32", "--test-crop", "32", "--out", str(tmp_path / "c2")])
    err = capsys.readouterr().err
    assert rc == 1 and "broken.png" in err and "1 photo could not be read" in err, err
    assert len(list((tmp_path / "c2" / "train" / "input").iterdir())) >= 4
    (photos / "set" / "broken.png").unlink()
    # Every photo smaller than the crop: nothing usable was made, exit 1 with a reason.
    rc = main([*args, "--crop", "64", "--test-crop", "64", "--out", str(tmp_path / "c3")])
    err = capsys.readouterr().err
    assert rc == 1 and "no training pair" in err and "--crop" in err, err


def test_build_corpus_refuses_to_mix_recipes(tmp_path):
    """Re-running skips pairs already written, so a corpus made another way (other options, an
    older synthesis) must be refused, not silently extended."""
    photos = tmp_path / "photos"
    _photos(photos, [(f"kodak24/k{i}.png", 72) for i in range(2)] +
            [(f"set/a{i}.png", 72) for i in range(3)])
    out = tmp_path / "corpus"
    opts = CorpusOptions(copies=1, crop=48, test_crop=64, margin=8)
    build_corpus(photos, out, opts, progress=False)
    counts = json.loads((out / "corpus.json").read_text())["counts"]
    build_corpus(photos, out, opts, splits=("test",), progress=False)   # same recipe: fine
    assert json.loads((out / "corpus.json").read_text())["counts"] == counts  # train kept
    # Only what differs, not both option sets in full (the changed one lost among eight).
    with pytest.raises(ValueError, match=r"other options \(copies: 1 -> 2; margin: 8 -> 4\); "
                                         r"its pairs would mix"):
        build_corpus(photos, out, replace(opts, margin=4, copies=2), progress=False)
    meta = json.loads((out / "corpus.json").read_text())
    del meta["synthesis"]                     # as written before version 2
    (out / "corpus.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="version 1 .*delete it"):
        build_corpus(photos, out, opts, progress=False)


def test_build_corpus_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        build_corpus(tmp_path / "empty", tmp_path / "out", progress=False)


def test_corpus_names_never_collide(tmp_path):
    from distill.data.corpus import _names
    files = [tmp_path / "x" / "a.jpg", tmp_path / "x" / "a.png", tmp_path / "x" / "a_b.png",
             tmp_path / "x_a" / "b.png", tmp_path / "k" / "c.png"]
    names = _names(tmp_path, files)
    assert len(set(names.values())) == len(files)
    assert names[tmp_path / "k" / "c.png"] == "k_c"   # unchanged where nothing collides


def test_build_corpus_says_when_a_split_is_empty(tmp_path, capsys):
    """Photos go to val/test by hash; a small folder can leave val empty, which used to pass
    unsaid until training failed to find a validation split."""
    photos = tmp_path / "photos"
    _photos(photos, [(f"kodak24/k{i}.png", 72) for i in range(2)] +
            [(f"set/a{i}.png", 72) for i in range(2)])
    assert not split_photos(photos)["val"]
    with pytest.warns(SharpenWarning, match=r"no photo fell in the val split \(4 photos"):
        build_corpus(photos, tmp_path / "corpus", CorpusOptions(copies=1, crop=48,
                                                                test_crop=64, margin=8),
                     progress=False)
    assert capsys.readouterr().err == ""   # a print before: a Python caller could not silence it
    # the command line shows it as before, as one `warning:` line
    from sharpen.cli import main
    assert main(["corpus", "--photos", str(photos), "--out", str(tmp_path / "c2"), "--copies",
                 "1", "--crop", "48", "--test-crop", "64", "--quiet"]) == 0
    assert f"warning: {photos}: no photo fell in the val split" in capsys.readouterr().err
    # ... and its notes, --quiet or not, on stderr as before
    sorted(split_photos(photos)["train"])[0].unlink()
    assert main(["corpus", "--photos", str(photos), "--out", str(tmp_path / "c2"), "--copies",
                 "1", "--crop", "48", "--test-crop", "64", "--quiet"]) == 0
    assert f"removed 1 stale pair from {tmp_path / 'c2'}" in capsys.readouterr().err


def test_build_corpus_in_parallel_writes_the_same_pairs(tmp_path, capsys):
    photos = tmp_path / "photos"
    _photos(photos, [(f"kodak24/k{i}.png", 72) for i in range(2)] +
            [(f"set/a{i}.png", 72) for i in range(5)] + [("set/small.png", 20)])
    opts = CorpusOptions(copies=2, crop=48, test_crop=64, margin=8)
    with pytest.warns(SharpenWarning, match="small.png"):
        one = build_corpus(photos, tmp_path / "one", opts, progress=False)
    with pytest.warns(SharpenWarning, match="small.png"):
        two = build_corpus(photos, tmp_path / "two", opts, progress=False, workers=2)
    assert one == two and len(two["small"]) == 1 and not two["failed"]
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.png"))
    assert files and files == sorted(p.relative_to(tmp_path / "two")
                                     for p in (tmp_path / "two").rglob("*.png"))
    for rel in files:
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes()


TINY = CorpusOptions(copies=1, crop=48, test_crop=64, margin=8)


def _tiny_photos(root, n=4):
    _photos(root, [(f"kodak24/k{i}.png", 72) for i in range(2)] +
            [(f"set/a{i}.png", 72) for i in range(n)])


def _on_disk(out, split):
    return sorted(p.name for p in (out / split / "input").glob("*.png"))


def test_build_corpus_refuses_out_inside_photos(tmp_path):
    """A corpus inside its photo folder was read back by the next run: blurred pairs taken for
    sharp photos, some in the test split."""
    photos = tmp_path / "photos"
    _tiny_photos(photos)
    with pytest.raises(ValueError, match=f"--out {photos / 'c'} is inside --photos {photos}"):
        build_corpus(photos, photos / "c", TINY, progress=False)
    assert not (photos / "c").exists()          # refused before writing anything
    one = next(photos.rglob("*.png"))
    with pytest.raises(FileNotFoundError, match=f"--photos {one} is a file; give the folder"):
        build_corpus(one, tmp_path / "c", TINY, progress=False)


def test_build_corpus_refuses_an_out_that_holds_another_data_set(tmp_path):
    """`--out` naming a `synth` paired folder by mistake put train/ val/ test/ beside its
    input/ + target/, and `labels --data` on it then labelled input/ alone, saying it "has no
    split folders"; into a label cache, its pairs left a cache that --data refuses."""
    from distill.images import write_image
    photos = tmp_path / "photos"
    _tiny_photos(photos)
    img = np.full((8, 8, 3), 0.5, np.float32)
    paired, loose, cache = tmp_path / "pairs", tmp_path / "loose", tmp_path / "cache"
    for rel in ("input/a.png", "target/a.png"):
        write_image(paired / rel, img)
    write_image(loose / "a.png", img)
    cache.mkdir()
    (cache / "manifest.json").write_text(json.dumps({"format": "sharpen-labels/1"}))
    for out, what in ((paired, "a paired data set"), (loose, "images or videos"),
                      (cache, "a label cache")):
        with pytest.raises(ValueError, match=f"--out {out} holds {what}.*choose a new folder"):
            build_corpus(photos, out, TINY, progress=False)
        assert not (out / "corpus.json").exists() and not (out / "train").exists()


def test_build_corpus_rerun_removes_pairs_of_moved_changed_and_deleted_photos(tmp_path, capsys):
    """A rerun only filled in missing pairs: a photo moved into kodak24/ kept its train pairs
    (tested on what it was trained on), a replaced photo kept its old pairs, a deleted one's
    pairs stayed and corpus.json's counts disagreed with the disk."""
    import os
    photos, out = tmp_path / "photos", tmp_path / "c"
    _tiny_photos(photos, n=6)
    build_corpus(photos, out, TINY, progress=False)
    train = sorted(split_photos(photos)["train"])
    moved, changed, deleted = train[:3]
    changed_pair = out / "train" / "target" / f"set_{changed.stem}_0.png"
    before = changed_pair.read_bytes()
    moved.rename(photos / "kodak24" / moved.name)
    cv2.imwrite(str(changed), (texture(72, 72, seed=99) * 255).astype(np.uint8))
    os.utime(changed, ns=(1, 1))               # mtime differs even on a coarse clock
    deleted.unlink()
    capsys.readouterr()
    said = []
    build_corpus(photos, out, TINY, progress=False, say=said.append)
    assert any("removed 3 stale pairs" in m for m in said), said
    assert capsys.readouterr().err == ""
    assert f"set_{moved.stem}_0.png" not in _on_disk(out, "train")
    assert f"kodak24_{moved.stem}.png" in _on_disk(out, "test")
    assert f"set_{deleted.stem}_0.png" not in _on_disk(out, "train")
    assert changed_pair.read_bytes() != before
    meta = json.loads((out / "corpus.json").read_text())
    assert meta["counts"] == {s: len(_on_disk(out, s)) for s in ("train", "val", "test")}
    assert meta["photo_index"][f"set/{changed.name}"]["mtime_ns"] == 1


def test_build_corpus_without_photo_signatures_keeps_pairs_drops_orphans(tmp_path, capsys):
    """A corpus.json written before photo signatures: existing pairs are trusted (not rebuilt),
    pairs no current photo accounts for still go."""
    photos, out = tmp_path / "photos", tmp_path / "c"
    _tiny_photos(photos, n=5)
    build_corpus(photos, out, TINY, progress=False)
    meta = json.loads((out / "corpus.json").read_text())
    del meta["photo_index"]
    (out / "corpus.json").write_text(json.dumps(meta))
    kept, deleted = sorted(split_photos(photos)["train"])[:2]
    kept_pair = out / "train" / "input" / f"set_{kept.stem}_0.png"
    mtime = kept_pair.stat().st_mtime_ns
    deleted.unlink()
    capsys.readouterr()
    said = []
    build_corpus(photos, out, TINY, progress=False, say=said.append)
    assert capsys.readouterr().err == ""   # a print before: the caller's `say` has it now
    assert any(m.startswith("note: ") and "predates photo signatures" in m for m in said)
    assert any("removed 1 stale pair" in m and ": its photo was deleted, moved" in m
               for m in said), said   # one pair: not "their photos were"
    assert kept_pair.stat().st_mtime_ns == mtime            # trusted, not made again
    assert f"set_{deleted.stem}_0.png" not in _on_disk(out, "train")
    assert "photo_index" in json.loads((out / "corpus.json").read_text())


def test_build_corpus_refuses_other_photos(tmp_path):
    """Another photo folder into an existing corpus mixed two corpora (and their splits)."""
    photos, other, out = tmp_path / "photos", tmp_path / "other", tmp_path / "c"
    _tiny_photos(photos)
    _tiny_photos(other, n=2)
    build_corpus(photos, out, TINY, progress=False)
    with pytest.raises(ValueError, match=f"built from the photos in {photos.resolve()}, not "
                                         f"{other.resolve()}.*choose another --out"):
        build_corpus(other, out, TINY, progress=False)


def test_build_corpus_removes_its_temp_files_and_listings_skip_them(tmp_path):
    """kill -9 mid-write left .NAME.png.XXXX.png: reruns kept it, and `sharpen run` on the folder
    read it as a damaged image."""
    from distill.images import list_images
    from distill.run_lock import RunLocked, run_lock
    from runtime.sources import open_source
    photos, out = tmp_path / "photos", tmp_path / "c"
    _tiny_photos(photos)
    build_corpus(photos, out, TINY, progress=False)
    folder = out / "test" / "input"
    temp = folder / ".kodak24_k0.png.abc123.png"
    temp.write_bytes(b"\x89PNG half")
    (out / ".corpus.json.xyz.tmp").write_text("{")
    assert temp not in list_images(folder)
    assert all(not p.name.startswith(".") for p in open_source(str(folder)).paths)
    with run_lock(out):                # another run at work: refused, its files left alone
        # (named as the holder says it is: training, not this command's "writing a corpus")
        with pytest.raises(RunLocked, match=f"another run is training into {out}"):
            build_corpus(photos, out, TINY, progress=False)
    assert temp.exists()
    build_corpus(photos, out, TINY, progress=False)
    assert not temp.exists() and not (out / ".corpus.json.xyz.tmp").exists()


def test_corpus_json_is_the_same_bytes_between_identical_runs(tmp_path):
    """`presets` came from a set: its order changed with the string hash seed of the process."""
    import subprocess
    import sys
    photos = tmp_path / "photos"
    _tiny_photos(photos, n=1)
    code = ("import sys; from distill.data.corpus import CorpusOptions, build_corpus\n"
            "build_corpus(sys.argv[1], sys.argv[2], CorpusOptions(copies=1, crop=48, "
            "test_crop=64, margin=8, mix=('gopro', 'handheld', 'mild', 'still')), "
            "progress=False)")
    runs = []
    for seed in range(4):
        out = tmp_path / f"c{seed}"
        subprocess.run([sys.executable, "-c", code, str(photos), str(out)], check=True,
                       env={**os.environ, "PYTHONHASHSEED": str(seed)})
        runs.append((out / "corpus.json").read_bytes())
    assert all(r == runs[0] for r in runs)


def _parent_pid(pid: int) -> int | None:
    from pathlib import Path
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _pids_with(marker: str) -> list[int]:
    """Live processes whose command line holds `marker` (zombies are not live)."""
    from pathlib import Path
    pids = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and marker in (d / "cmdline").read_bytes().decode(errors="replace") \
                    and (d / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                pids.append(int(d.name))
        except OSError:
            pass
    return pids


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="lists processes through /proc")
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_corpus_workers_exit_with_the_main_process(tmp_path, sig):
    """Killing `corpus --workers N` (kill, the OOM killer) left its workers writing into --out,
    then waiting forever, adopted by init."""
    import signal
    import subprocess
    import sys
    import time
    photos, out = tmp_path / "photos", tmp_path / "c"
    _photos(photos, [(f"set/a{i}.png", 200) for i in range(40)])
    code = ("import sys; from distill.data.corpus import CorpusOptions, build_corpus\n"
            "build_corpus(sys.argv[1], sys.argv[2], CorpusOptions(copies=4, crop=160, "
            "margin=16), progress=False, workers=2)")
    main = subprocess.Popen([sys.executable, "-c", code, str(photos), str(out)])
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not list((out / "train" / "input").glob("*.png")) and time.monotonic() < deadline:
            time.sleep(0.05)
        # Spawned: a worker's command line is multiprocessing's, not the run's.
        workers = [p for p in _pids_with("spawn_main") if _parent_pid(p) == main.pid]
        assert main.poll() is None and len(workers) == 2, "the run ended before the test"
        main.send_signal(getattr(signal, sig))
        main.wait(60)   # bounds on a loaded host, not speeds: each ends once it holds
        deadline = time.monotonic() + 60
        while set(_pids_with("spawn_main")) & set(workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not set(_pids_with("spawn_main")) & set(workers)
    finally:
        main.kill()
        for pid in workers:        # without the fix they would outlive the test
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def test_corpus_workers_run_under_every_start_method(tmp_path):
    """The parent-death guard compared the OS parent's pid, which under forkserver (Python
    3.14's default on Linux) is the fork server's: every worker exited at once."""
    import subprocess
    import sys
    photos = tmp_path / "photos"
    _tiny_photos(photos)
    code = ("import multiprocessing as mp, sys\n"
            "from distill.data.corpus import CorpusOptions, build_corpus\n"
            "if __name__ == '__main__':\n"
            "    mp.set_start_method(sys.argv[3])\n"
            "    s = build_corpus(sys.argv[1], sys.argv[2], CorpusOptions(copies=1, crop=48, "
            "test_crop=64, margin=8), progress=False, workers=2)\n"
            "    print(s['train'], len(s['failed']))")
    for method in ("forkserver", "spawn"):
        script = tmp_path / "build.py"
        script.write_text(code)
        r = subprocess.run([sys.executable, str(script), str(photos), str(tmp_path / method),
                            method], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["4", "0"], r.stdout


def test_a_corpus_survives_new_mtimes_and_a_moved_photo_folder(tmp_path, capsys):
    """`touch`, a copy without -p or a fresh download of the same photos rebuilt every pair
    (mtime differed); a copied or re-mounted photo folder was refused."""
    import shutil
    photos, out = tmp_path / "photos", tmp_path / "c"
    _tiny_photos(photos)
    build_corpus(photos, out, TINY, progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    for p in photos.rglob("*.png"):
        os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))
    said = []
    build_corpus(photos, out, TINY, progress=False, say=said.append)
    assert not any("stale" in m for m in said), said
    shutil.copytree(photos, tmp_path / "copy", copy_function=shutil.copy)   # new mtimes
    build_corpus(tmp_path / "copy", out, TINY, progress=False, say=said.append)
    assert any("now read from" in m for m in said), said
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == stamps   # nothing remade


def test_corpus_summary_words_one_photo_and_one_split_in_the_singular(capsys):
    """`sharpen corpus`'s closing lines said of one photo "a smaller one keeps them" and "all 1
    training photo skipped", and of one empty split "every photo in them was skipped"."""
    import argparse

    from distill.corpus_command import _corpus_outcome
    args = argparse.Namespace(out="c", crop=384)
    one_small = {"train": 3, "val": 0, "test": 1, "small": ["v.png"], "failed": [],
                 "small_in": {"train": 0, "val": 1, "test": 0},
                 "photos": {"train": 3, "val": 1, "test": 1}}
    assert _corpus_outcome(args, one_small) == 0
    err = capsys.readouterr().err
    assert "warning: 1 photo smaller than the crop skipped (val 1; listed above): expected " \
        "with a large --crop (384); a smaller one keeps it" in err, err
    assert "warning: the val split got no pair: every photo in it was skipped" in err, err
    no_train = {**one_small, "train": 0, "small_in": {"train": 1, "val": 1, "test": 0},
                "small": ["t.png", "v.png"], "photos": {"train": 1, "val": 1, "test": 1}}
    assert _corpus_outcome(args, no_train) == 1
    err = capsys.readouterr().err
    assert "no training pair was made: the one training photo skipped (smaller" in err, err


# Six photos whose path hashes put one in test and none in val: a user's small folder.
SIX = [(f"photo{i}.png", 72) for i in (0, 1, 2, 3, 4, 10)]


def test_corpus_says_what_an_empty_val_split_means_and_what_to_do(tmp_path, capsys):
    """A user's 6 photos left val empty; `corpus` said only that, and `labels --hold-out`
    then validated on the test split that `evaluate` reports on, without a word."""
    from sharpen.cli import main
    photos, out = tmp_path / "photos", tmp_path / "corpus"
    _photos(photos, SIX)
    assert [len(v) for v in split_photos(photos).values()] == [5, 0, 1]
    assert main(["corpus", "--photos", str(photos), "--out", str(out), "--copies", "1",
                 "--crop", "48", "--test-crop", "64", "--quiet"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    said = err[err.index("no photo fell in the val split"):]
    assert "(6 photos; 1 in 25 goes to val, by a hash of its path" in said
    # what it means for the next steps, and what the user can do (no option sets the sizes)
    assert "`sharpen labels --hold-out` holds out whole training photos instead" in said
    assert f"data.val={out} validate on its test split" in said
    assert "`sharpen evaluate` scores by default" in said
    assert "no option of `sharpen corpus` sets the split sizes: add photos" in said


def test_corpus_says_what_an_empty_test_split_means(tmp_path, capsys):
    from sharpen.cli import main
    photos = tmp_path / "photos"
    _photos(photos, SIX[:3])
    assert not split_photos(photos)["test"]
    assert main(["corpus", "--photos", str(photos), "--out", str(tmp_path / "corpus"),
                 "--copies", "1", "--crop", "48", "--test-crop", "64", "--quiet"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "no photo fell in the test split (3 photos; 1 in 10 goes to test" in err
    assert f"`sharpen evaluate --data {tmp_path / 'corpus'}` has nothing to score by default" in err
    assert "every photo under a subfolder named kodak24 or mcmaster is the test split (and" in err


def test_split_lists_photos_in_the_order_earlier_corpora_were_made_in(tmp_path):
    """Each pair's pasted objects come from the photo at a place in its split's list: listed
    with numbers read as numbers (p9 before p10, bsds500's 10081 before 100007), the same
    photos made other pairs than the versions before, so a corpus made again to reproduce a
    model differed from the one it was trained on."""
    names = [f"set/p{i}.png" for i in range(1, 40)]
    _photos(tmp_path, [(n, 48) for n in names])
    s = split_photos(tmp_path)
    for split, files in s.items():
        rels = [f.relative_to(tmp_path).as_posix() for f in files]
        assert rels == sorted(rels), split
    assert any("set/p10.png" in str(f) for f in s["train"]) and len(s["train"]) > 20


def test_a_corpus_killed_part_way_is_resumed_with_a_line_saying_what_was_kept(tmp_path, capsys):
    """A `sharpen corpus` SIGKILLed part-way (the OOM killer, a preempted job) was rerun without
    a word about the pairs it found: the user could not tell a resume from a fresh start. The
    rerun says how many pairs it keeps, makes the rest, and the corpus is the same as an
    uninterrupted run's."""
    import hashlib
    import signal
    import subprocess
    import sys
    import time
    from sharpen.cli import main
    photos = tmp_path / "photos"
    _photos(photos, [(f"set/a{i}.png", 200) for i in range(40)])
    argv = ["corpus", "--photos", str(photos), "--copies", "4", "--crop", "160", "--quiet"]
    out = tmp_path / "killed"

    def pairs(root):   # complete pairs: the input of each is written after its target
        return sum((root / "train" / "target" / p.name).exists()
                   for p in (root / "train" / "input").glob("[!.]*.png"))
    run = subprocess.Popen([sys.executable, "-m", "sharpen", *argv, "--out", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not pairs(out) and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert run.poll() is None, "the run ended before the test killed it"
        run.send_signal(signal.SIGKILL)
        run.wait(10)
    finally:
        run.kill()
    kept = pairs(out)
    assert 0 < kept < 4 * 40
    assert main([*argv, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    held = f"{kept} pair{'s' if kept > 1 else ''}"
    assert f"{out}: keeping {held} an earlier run wrote with these photos and options; only " \
        "missing pairs are made" in err, err
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    assert "keeping" not in capsys.readouterr().err

    def files(root):
        return {p.relative_to(root): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")}
    assert files(out) == files(tmp_path / "whole")


def _split_of(s):
    return {p: k for k, files in s.items() for p in files}


def test_frames_of_a_clip_never_land_in_two_splits(tmp_path):
    """A clip's frames, extracted one folder a clip (ffmpeg's %05d.png) or into one folder
    (clipA_00001.png), were split by photo: frame 4 tested, frames 3 and 5 trained on, and
    neighbouring frames are near-duplicates. Each clip now goes whole to one split."""
    _photos(tmp_path / "folders", [(f"clip{c}/{i:05d}.png", 64)
                                   for c in range(30) for i in range(1, 5)])
    _photos(tmp_path / "flat", [(f"clip{c}_{i:05d}.png", 64)
                                for c in range(30) for i in range(1, 5)])
    for root, clip_of in ((tmp_path / "folders", lambda p: p.parent.name),
                          (tmp_path / "flat", lambda p: p.name.split("_")[0])):
        split = _split_of(split_photos(root))
        clips: dict[str, set] = {}
        for p, k in split.items():
            clips.setdefault(clip_of(p), set()).add(k)
        assert len(split) == 120 and all(len(ks) == 1 for ks in clips.values()), clips
        assert len({k for ks in clips.values() for k in ks}) > 1   # not all in one split


def test_photos_numbered_in_order_are_still_split_by_photo(tmp_path):
    """Urban100's img_001..img_100 are numbered in order but differ in size: photos, each split
    on its own as before (the shared photos' corpus keeps its split)."""
    _photos(tmp_path, [(f"img_{i:03d}.png", 64 + i % 3) for i in range(1, 61)])
    split = split_photos(tmp_path)
    assert len(split["test"]) >= 1 and len(split["train"]) > 40


def test_the_frames_of_one_clip_alone_are_warned_about(tmp_path):
    """One clip's frames cannot be kept whole in one split without emptying the others: split
    by photo, with a warning that neighbouring frames may land in train and test."""
    _photos(tmp_path, [(f"walk/{i:05d}.png", 64) for i in range(1, 31)])
    with pytest.warns(SharpenWarning, match=r"30 images walk/\* look like the frames of one"):
        split = split_photos(tmp_path)
    assert len(split["train"]) < 30


def test_a_folder_of_clips_says_to_extract_their_frames(tmp_path):
    """`corpus --photos` on a folder of the user's sharp clips said "no images found under
    DIR", as if it were empty: it names the clips and how to turn them into photos."""
    (tmp_path / "day1").mkdir()
    for name in ("walk.mp4", "day1/bike.mov"):
        (tmp_path / name).write_bytes(b"\0" * 16)
    with pytest.raises(ValueError, match=r"no images found under .*: it holds 2 video clips "
                       r"\(day1/bike.mov, walk.mp4\).*extract.*ffmpeg -i"):
        split_photos(tmp_path)


def test_a_hold_out_of_a_corpus_of_clips_keeps_each_clip_whole(tmp_path):
    """`labels --hold-out` on a corpus of clips' frames (pairs named CLIP_FRAME_COPY) held out
    the last fifth of pairs by name: frames 9-10 of a clip validated on, frames 1-8 trained
    on. The corpus records each frame's clip, and the hold-out takes whole clips."""
    from distill.data.holdout import hold_out

    photos = tmp_path / "frames"
    _photos(photos, [(f"clip{c}/{i:05d}.png", 64) for c in range(4) for i in range(1, 8)])
    corpus = tmp_path / "corpus"
    build_corpus(photos, corpus, CorpusOptions(copies=1, crop=32, test_crop=48, margin=4),
                 progress=False)
    plan = hold_out(str(corpus), 0.2, progress=False)
    clip = {p.stem.rsplit("_", 1)[0]: p.stem.split("_")[0]
            for p in (corpus / "train" / "input").iterdir()}
    held = {clip[n.rsplit("_", 1)[0]] for n in plan.held}
    trained = {clip[n.rsplit("_", 1)[0]] for n in plan.train}
    assert held and trained and not held & trained, (held, trained)
    assert plan.rule == "clips"


def test_an_empty_split_of_clips_frames_counts_the_clips(tmp_path):
    """Frames of a few clips go to a split a clip at a time: "no photo fell in the test split
    (60 photos; 1 in 10 goes to test)" read as if 6 test photos were due; it names the clips,
    and `labels --hold-out` holding out whole clips."""
    photos = tmp_path / "frames"
    _photos(photos, [(f"clip{c}/{i:05d}.png", 40) for c in range(4) for i in range(1, 4)])
    with pytest.warns(SharpenWarning) as said:
        build_corpus(photos, tmp_path / "corpus",
                     CorpusOptions(copies=1, crop=32, test_crop=32, margin=4), progress=False)
    text = " ".join(str(w.message) for w in said)
    assert "no photo fell in the test split (12 photos, the frames of 4 clips, each clip " \
           "whole in one split; 1 in 10 goes to test, by a hash of its path or its clip's)" \
           in text
    assert "holds out whole training clips" in text
    assert "add clips (about 25 per val clip)" in text


def test_the_corpus_line_says_the_clips_went_whole_to_one_split(tmp_path, capsys):
    """The summary line gave pair counts alone: a user could not tell whether the frames of
    their clips were split by frame (a leak) or by clip."""
    from sharpen.cli import main

    photos = tmp_path / "frames"
    _photos(photos, [(f"clip{c}/{i:05d}.png", 40) for c in range(3) for i in range(1, 4)])
    assert main(["corpus", "--photos", str(photos), "--out", str(tmp_path / "c"), "--copies",
                 "1", "--crop", "32", "--test-crop", "32", "--quiet"]) == 0
    said = capsys.readouterr().out
    assert "pairs; the frames of 3 clips, each clip whole in one split" in said, said


def test_a_phones_numbered_photos_are_split_by_photo_not_as_clips(tmp_path):
    """A phone numbers its photos in order at one size (day1/IMG_0001.JPG .. day2/IMG_0030.JPG)
    as ffmpeg numbers a clip's frames: each day's folder went whole to one split as a clip
    (day1 all test, val empty), and one folder of them warned of one clip's frames. A camera's
    EXIF (Make, Model) marks a photo: each is split on its own, as before clips."""
    from PIL import Image

    from distill.data.corpus import _bucket

    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Apple", "iPhone 13"
    for i in range(1, 31):
        p = tmp_path / "phone" / f"day{1 if i <= 14 else 2}" / f"IMG_{i:04d}.JPG"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((texture(48, 64, seed=i) * 255).astype(np.uint8)).save(
            p, exif=exif.tobytes())
    root = tmp_path / "phone"
    with warnings.catch_warnings():
        warnings.simplefilter("error", SharpenWarning)
        split = _split_of(split_photos(root))
        split_photos(root / "day2")
    by_photo = {p: "test" if _bucket(r, 10) == 0 else "val" if _bucket("val:" + r, 25) == 0
                else "train" for p in split for r in [p.relative_to(root).as_posix()]}
    assert split == by_photo


def test_a_clip_with_frames_deleted_still_goes_whole_to_one_split(tmp_path):
    """Frames pruned by hand (the blurred ones of a sharp clip: 00001, 00002, 00004 ...) broke
    the run of consecutive numbers, and that clip alone was split frame by frame, its frames in
    train and test. Photos numbered far apart (bsds500's) stay photos."""
    _photos(tmp_path / "frames", [(f"clip{c}/{i:05d}.png", 40) for c in range(30)
                                  for i in (1, 2, 4, 5, 7, 8)])
    clips: dict[str, set] = {}
    for p, k in _split_of(split_photos(tmp_path / "frames")).items():
        clips.setdefault(p.parent.name, set()).add(k)
    assert all(len(ks) == 1 for ks in clips.values()), clips
    assert len({k for ks in clips.values() for k in ks}) > 1
    _photos(tmp_path / "photos", [(f"{c}/{i:05d}.png", 40) for c in range(2)
                                  for i in range(1, 200, 7)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", SharpenWarning)
        assert len(split_photos(tmp_path / "photos")["test"]) >= 1


def _pan(root, rel_pattern, n, size=64, step=3, seed=7):
    """`n` frames of a camera panning over one texture, as a clip's extracted frames are."""
    big = texture(size + n * step, size + n * step, seed=seed)
    for i in range(n):
        p = root / rel_pattern.format(i + 1)
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), (big[i * step:i * step + size, i * step:i * step + size] * 255)
                    .astype(np.uint8))


def test_one_clip_among_photos_goes_whole_to_one_split(tmp_path):
    """One clip's frames beside photos were split frame by frame, with the warning meant for a
    folder of one clip alone: a test frame between two training frames scored what was trained
    on, though the photos fill the other splits. The clip now goes whole to one split."""
    for i in range(40):
        cv2.imwrite(str(tmp_path / f"photo{i:02d}x.png"),
                    (texture(64, 80, seed=100 + i) * 255).astype(np.uint8))
    _pan(tmp_path, "walk/{:05d}.png", 30)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SharpenWarning)
        split = _split_of(split_photos(tmp_path))
    assert len({k for p, k in split.items() if p.parent.name == "walk"}) == 1, split
    assert len(set(split.values())) > 1


def test_numbered_photos_unlike_each_other_are_not_a_clip(tmp_path):
    """McMaster's 01.png .. 18.png are numbered in order at one size, as a clip's frames are:
    a corpus of them warned that they "look like the frames of one clip". A clip's neighbouring
    frames look alike and those photos do not: no warning, each photo split on its own."""
    for i in range(1, 19):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"),
                    (texture(64, 64, seed=i) * 255).astype(np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SharpenWarning)
        split_photos(tmp_path)
    # A clip's frames alone are still told apart from photos by how alike they are.
    _pan(tmp_path / "clip", "{:05d}.png", 18)
    with pytest.warns(SharpenWarning, match=r"18 images \* look like the frames of one clip"):
        split_photos(tmp_path / "clip")


def test_frames_smaller_than_the_crop_name_the_crop_that_keeps_them(tmp_path, capsys):
    """Frames extracted from 320x180 clips are all smaller than the default 256 px crop: the
    corpus printed a line a frame (84 for 8 short clips) and ended "smaller than --crop 256",
    leaving the user to guess a crop. A few are named, the rest counted, and the error names
    the largest crop that keeps them."""
    from sharpen.cli import main

    for c in range(3):
        _pan(tmp_path / "frames", f"clip{c}/{{:05d}}.png", 12, size=40, seed=c)
    rc = main(["corpus", "--photos", str(tmp_path / "frames"), "--out", str(tmp_path / "c"),
               "--copies", "1", "--crop", "64", "--test-crop", "64", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert err.count("is smaller than the") == 5 and "the first 5 listed above" in err, err
    assert "--crop 40 or less keeps them" in err, err


def test_photos_smaller_than_any_crop_are_not_told_a_smaller_crop_keeps_them(tmp_path, capsys):
    """24x24 photos: the corpus said "a smaller one keeps them", and --crop is 32 at least."""
    from sharpen.cli import main

    _photos(tmp_path / "icons", [(f"icon{i}.png", 24) for i in range(6)])
    rc = main(["corpus", "--photos", str(tmp_path / "icons"), "--out", str(tmp_path / "c"),
               "--copies", "1", "--crop", "32", "--test-crop", "32", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "smaller one keeps" not in err, err
    assert "no --crop keeps them (32 at least)" in err, err


def test_the_crop_the_corpus_advises_is_taken_on_the_same_out(tmp_path, capsys):
    """A corpus of frames all smaller than the crop wrote no pair, named "--crop 40 or less"
    as the crop that keeps them, and the rerun it advised was refused ("built with other
    options (crop: 64 -> 40)"): an --out without a pair has nothing to mix the new ones with."""
    from sharpen.cli import main

    for c in range(3):
        _pan(tmp_path / "frames", f"clip{c}/{{:05d}}.png", 12, size=40, seed=c)
    argv = ["corpus", "--photos", str(tmp_path / "frames"), "--out", str(tmp_path / "c"),
            "--copies", "1", "--test-crop", "64", "--quiet"]
    assert main(argv + ["--crop", "64"]) == 1
    capsys.readouterr()
    rc = main(argv + ["--crop", "40"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert len(list((tmp_path / "c" / "train" / "input").glob("*.png"))) > 0, err
    # Pairs on disk still pin the options.
    assert main(argv + ["--crop", "32"]) == 2
    assert "built with other options (crop: 40 -> 32)" in capsys.readouterr().err


def test_an_empty_test_split_of_clips_says_how_to_test_on_a_clip(tmp_path):
    """Of a few clips no frame fell in the test split, and the advice was to put photos under
    a folder named kodak24 or mcmaster, or add clips: with clips, a clip kept out of --photos
    is the test, its blurred and sharp frames scored as pairs by `sharpen evaluate`."""
    photos = tmp_path / "frames"
    _photos(photos, [(f"clip{c}/{i:05d}.png", 40) for c in range(4) for i in range(1, 4)])
    with pytest.warns(SharpenWarning) as said:
        build_corpus(photos, tmp_path / "corpus",
                     CorpusOptions(copies=1, crop=32, test_crop=32, margin=4), progress=False)
    text = " ".join(str(w.message) for w in said if "test split" in str(w.message))
    assert "keep a clip out of --photos" in text and "sharpen evaluate --data" in text, text


def test_a_folder_of_clips_names_the_command_for_its_own_first_clip_and_why(tmp_path):
    """The extraction hint was a template (ffmpeg -i CLIP.mp4 frames/CLIP/%05d.png) and did not
    say why a folder a clip: it names the folder's own first clip, and that each clip's folder
    goes whole to one split."""
    for name in ("walk.mp4", "bike.mov"):
        (tmp_path / name).write_bytes(b"\0" * 16)
    with pytest.raises(ValueError) as e:
        split_photos(tmp_path)
    bike = tmp_path / "bike.mov"
    assert f"mkdir -p frames/bike && ffmpeg -i {bike} frames/bike/%05d.png" in str(e.value)
    assert "each clip's frames go whole to one split" in str(e.value)


def test_a_folder_of_clips_names_the_labels_command_that_runs(tmp_path):
    """Blurred footage was pointed to "sharpen labels --data DIR", a template that does not run
    (labels requires --out): it names the folder, as synth's hint does."""
    clips = tmp_path / "my clips"
    clips.mkdir()
    (clips / "walk.mp4").write_bytes(b"\0" * 16)
    with pytest.raises(ValueError) as e:
        split_photos(clips)
    assert f"sharpen labels --data '{clips}' --out CACHE" in str(e.value), str(e.value)


def test_an_empty_val_split_of_photos_and_a_clip_speaks_of_both(tmp_path):
    """Photos beside one clip's frames: the empty val split's warning said the hold-out takes
    "whole training clips" and to "add clips", as if all were frames."""
    for i in range(6):
        cv2.imwrite(str(tmp_path / f"photo{i}x.png"),
                    (texture(40, 40, seed=100 + i) * 255).astype(np.uint8))
    _pan(tmp_path, "walk/{:05d}.png", 6, size=40)
    with pytest.warns(SharpenWarning) as said:
        build_corpus(tmp_path, tmp_path.with_name(tmp_path.name + "-corpus"),
                     CorpusOptions(copies=1, crop=32, test_crop=32, margin=4), progress=False)
    text = " ".join(str(w.message) for w in said if "val split" in str(w.message))
    assert "holds out whole training photos and clips" in text, text
    assert "add photos or clips" in text, text


def test_a_copy_of_a_test_photo_elsewhere_is_named_and_never_trained_on(tmp_path):
    """A copy of kodak24/k0.png under set/ (the same bytes) went to training by its path, so
    the test photo was trained on. Such a copy is named with the photo it copies and skipped
    (the copy in the held-out split is kept); a copy within one split is noted."""
    import shutil
    photos, out = tmp_path / "photos", tmp_path / "c"
    for seed, rel in enumerate(["kodak24/k0.png", "kodak24/k1.png",
                                *(f"set/a{i}.png" for i in range(4))]):
        (photos / rel).parent.mkdir(parents=True, exist_ok=True)   # _photos' are alike
        cv2.imwrite(str(photos / rel), (texture(72, 72, seed=seed) * 255).astype(np.uint8))
    shutil.copy(photos / "kodak24" / "k0.png", photos / "set" / "copy_of_k0.png")
    shutil.copy(photos / "set" / "a0.png", photos / "set" / "a0_again.png")
    said = []
    with pytest.warns(SharpenWarning) as warned:
        summary = build_corpus(photos, out, TINY, progress=False, say=said.append)
    warned = [str(w.message) for w in warned]
    assert any("set/copy_of_k0.png is a duplicate of" in m and "kodak24/k0.png" in m
               and "a test photo" in m for m in warned), warned
    assert len(summary["duplicates"]) == 1
    assert any("set/a0_again.png of" in m and "set/a0.png" in m for m in said), said
    pairs = [n for s in ("train", "val", "test") for n in _on_disk(out, s)]
    assert not [n for n in pairs if "copy_of_k0" in n], pairs
    assert "kodak24_k0.png" in _on_disk(out, "test")
    index = json.loads((out / "corpus.json").read_text())["photo_index"]
    assert index["set/copy_of_k0.png"]["duplicate_of"] == "kodak24/k0.png"
    assert "duplicate_of" not in index["set/a0_again.png"]
    # A corpus made before duplicates were found: the rerun removes the copy's pairs.
    from distill.images import write_image
    write_image(out / "train" / "input" / "set_copy_of_k0_0.png", np.zeros((8, 8, 3)))
    write_image(out / "train" / "target" / "set_copy_of_k0_0.png", np.zeros((8, 8, 3)))
    with pytest.warns(SharpenWarning, match="duplicate"):
        build_corpus(photos, out, TINY, progress=False)
    assert "set_copy_of_k0_0.png" not in _on_disk(out, "train")


def test_corpus_threads_reach_each_worker_and_the_parent_keeps_its_own(monkeypatch):
    """OpenCV ignores OMP_NUM_THREADS, so each of `corpus --workers N` ran a thread per core;
    setting the count in each forked worker deadlocked (the parent's OpenCV thread pool, run
    before the fork, is not there in the child). Workers start fresh, the count set in each."""
    from distill.data.corpus import corpus_pool, opencv_threads
    cv2.GaussianBlur(np.zeros((512, 512, 3), np.float32), (31, 31), 5)   # the parent's pool
    was = cv2.getNumThreads()
    with corpus_pool(2, 1) as pool:
        assert set(pool.map(opencv_threads, range(4))) == {1}
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")   # what --threads 0 means, as elsewhere
    with corpus_pool(2, 0) as pool:
        assert set(pool.map(opencv_threads, range(4))) == {1}
    assert cv2.getNumThreads() == was


def test_corpus_takes_threads_as_every_command_does(tmp_path, capsys):
    from sharpen.cli import main
    photos, out = tmp_path / "photos", tmp_path / "c"
    _photos(photos, [(f"a{i}.png", 72) for i in range(3)])
    args = ["corpus", "--photos", str(photos), "--out", str(out), "--copies", "1",
            "--crop", "48", "--test-crop", "64", "--quiet"]
    assert main([*args, "--threads", "1", "--workers", "2"]) == 0
    assert len(_on_disk(out, "train")) == 3
    assert main([*args, "--threads", "-1"]) == 2
    assert "--threads must be >= 0" in capsys.readouterr().err


def test_the_next_step_after_a_corpus_with_a_val_split_says_what_the_fraction_does(
        tmp_path, capsys):
    """The line after `corpus` gave --hold-out 0.2, and `labels` then said "--hold-out 0.2
    does not apply": --val-out takes a corpus's own val split, and the fraction (which
    --val-out needs) only holds out training photos where that split is empty."""
    from distill.data.corpus import _bucket
    from sharpen.cli import main
    rels = [f"set/p{i}.png" for i in range(60)]
    val = [r for r in rels if _bucket("val:" + r, 25) == 0]
    assert val   # the rule puts some of them in val
    photos, out = tmp_path / "photos", tmp_path / "c"
    _photos(photos, [("kodak24/k0.png", 72), *((r, 72) for r in [*rels[:4], val[0]])])
    assert main(["corpus", "--photos", str(photos), "--out", str(out), "--copies", "1",
                 "--crop", "48", "--test-crop", "64", "--quiet"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("label it with the teacher, its val split into --val-out (0.2 "
                           "holds out training photos only where a corpus has none): "), last
    assert last.endswith(f"--hold-out 0.2 --val-out {out}-labels-val"), last


def test_corpus_threads_hold_in_the_main_process_while_it_runs_then_go_back(tmp_path):
    """Without --workers the photos are blurred in the main process: --threads holds there,
    and a caller's own OpenCV setting comes back afterwards."""
    photos, out = tmp_path / "photos", tmp_path / "c"
    _tiny_photos(photos)
    was = cv2.getNumThreads()
    build_corpus(photos, out, TINY, progress=False)
    seen: list[int] = []
    # A rerun notes the pairs it keeps from inside the run.
    build_corpus(photos, out, TINY, progress=False, threads=1,
                 say=lambda msg: seen.append(cv2.getNumThreads()))
    assert seen and set(seen) == {1}, seen
    assert cv2.getNumThreads() == was
