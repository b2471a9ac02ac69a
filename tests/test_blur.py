import cv2
import numpy as np
import pytest
import skimage.data

from distill.data.blur import (BlurConfig, apply_kernel, camera_shake_kernel, frames_blur,
                               linear_motion_kernel, random_kernel, synthesize)
from distill.data.embedded import blurred_pairs, dead_leaves, sharp_images


def lap_var(img):
    g = cv2.cvtColor((np.clip(img, 0, 1) * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    return cv2.Laplacian(g, cv2.CV_64F).var()


@pytest.mark.parametrize("kind", ["shake", "linear", "mixed"])
def test_kernel_properties(kind):
    for seed in range(20):
        k = random_kernel(np.random.default_rng(seed), (7, 41), kind)
        assert k.dtype == np.float32 and k.ndim == 2 and k.shape[0] == k.shape[1]
        assert 7 <= k.shape[0] <= 41 and k.shape[0] % 2 == 1
        assert k.min() >= 0 and abs(float(k.sum()) - 1) < 1e-5
        assert (k > 0).sum() > 1  # a path, not a delta


def test_kernels_deterministic_and_varied():
    a = camera_shake_kernel(np.random.default_rng(3))
    b = camera_shake_kernel(np.random.default_rng(3))
    c = camera_shake_kernel(np.random.default_rng(4))
    assert np.array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_size_range_is_validated():
    with pytest.raises(ValueError, match="size range"):
        random_kernel(np.random.default_rng(0), (9, 5))
    with pytest.raises(ValueError, match="size range"):   # not an 80 GB kernel
        random_kernel(np.random.default_rng(0), (7, 100000))


def test_linear_kernel_subpixel_length():
    k = linear_motion_kernel(10.0, 0.0, 15)
    row = k.sum(axis=0)
    assert (row > 1e-3).sum() in (10, 11, 12)  # ~10 px long, bilinear ends
    assert np.allclose(k.sum(axis=1)[:6], 0) and abs(k.sum() - 1) < 1e-5


def test_blur_really_blurs_real_photo():
    img = skimage.data.astronaut().astype(np.float32) / 255
    rng = np.random.default_rng(0)
    for mode in ("kernel", "frames"):
        out = synthesize(img, rng, BlurConfig(mode=mode, size_range=(15, 25),
                                              noise_sigma=(0, 0)))
        assert out.shape == img.shape and out.dtype == np.float32
        assert lap_var(out) < lap_var(img) / 4


def test_synthesis_deterministic_with_noise_and_jpeg():
    img = dead_leaves(1, size=96)
    cfg = BlurConfig(mode="mixed", noise_sigma=(0.01, 0.02), jpeg_prob=1.0)
    a = synthesize(img, np.random.default_rng([1, 2]), cfg)
    b = synthesize(img, np.random.default_rng([1, 2]), cfg)
    assert np.array_equal(a, b) and 0 <= a.min() and a.max() <= 1


def test_gamma_blur_in_linear_light_keeps_highlights_brighter():
    img = np.zeros((41, 41, 3), np.float32)
    img[20, 20] = 1.0
    k = linear_motion_kernel(9, 0, 11)
    lin = apply_kernel(img, k, gamma=2.2)
    srgb = apply_kernel(img, k, gamma=1.0)
    assert lin[20, 20, 0] > srgb[20, 20, 0]  # averaging light, then encoding, brightens streaks


def test_frames_blur_shape():
    img = dead_leaves(2, size=64)
    out = frames_blur(img, np.random.default_rng(0), extent=8, n_frames=5)
    assert out.shape == img.shape and lap_var(out) < lap_var(img)


def test_embedded_split_is_fixed():
    names = [n for n, _ in sharp_images("test")]
    assert names[:3] == ["chelsea", "coffee", "rocket"]
    a = [(n, b.sum()) for n, b, _ in blurred_pairs("val")]
    b = [(n, b.sum()) for n, b, _ in blurred_pairs("val")]
    assert a == b and len(a) == 4
    train = {n for n, _ in sharp_images("train", n_dead_leaves=2)}
    assert not train & set(names)


def test_synth_reads_subfolders_keeps_every_photo_and_checks_its_flags(tmp_path, capsys):
    """`synth` read the top folder only (a folder of day1/, day2/ gave 'no images found'), wrote
    IMG_1.JPG and IMG_1.png to one name, and took --copies 0 or an empty kernel range."""
    from distill.images import write_image
    from sharpen.cli import main

    rng = np.random.default_rng(0)
    photos = tmp_path / "photos"
    for rel in ("day1/IMG_1.png", "day2/IMG_1.png", "day2/IMG_2.jpg", "day2/IMG_2.png"):
        write_image(photos / rel, rng.random((40, 48, 3)).astype(np.float32))
    out = photos / "synth"     # inside the photos: its pairs must not be read back as photos
    argv = ["synth", "--sharp", str(photos), "--out", str(out), "--size", "3", "7", "--quiet"]
    for _ in range(2):
        assert main(argv) == 0
        names = sorted(p.name for p in (out / "input").iterdir())
        assert names == ["day1_IMG_1.png", "day2_IMG_1.png", "day2_IMG_2_jpg.png",
                         "day2_IMG_2_png.png"]
    capsys.readouterr()
    for bad, what in ((["--copies", "0"], "--copies must be >= 1"),
                      (["--size", "50", "10"], "--size MIN MAX needs 3 <= MIN <= MAX")):
        assert main([*argv, *bad]) == 2
        assert what in capsys.readouterr().err


def test_synth_says_an_unreadable_photo_as_a_warning_and_lists_it_at_the_end(tmp_path, capsys):
    """`synth` said "skipped: PATH: why" where every other command says "warning: skipped:"
    (a CI log's grep for warnings missed it), and its last line a count alone ("1
    unreadable"): which photo, among a long log's lines, the user had to scroll back for."""
    from distill.images import write_image
    from sharpen.cli import main

    photos = tmp_path / "photos"
    write_image(photos / "good.png", np.random.default_rng(0).random((40, 48, 3)).astype(
        np.float32))
    (photos / "cut.png").write_bytes(b"\x89PNG garbage")
    assert main(["synth", "--sharp", str(photos), "--out", str(tmp_path / "out"),
                 "--quiet"]) == 1
    err = capsys.readouterr().err.splitlines()
    said = [ln for ln in err if "cut.png" in ln]
    assert said[0].startswith(f"warning: skipped: {photos / 'cut.png'}: "), err
    assert err[-2:] == ["sharpen synth: 1 image could not be read; the rest were processed:",
                        "  " + said[0].removeprefix("warning: skipped: ")], err


def test_a_stopped_synth_lists_the_photos_it_skipped_as_run_and_teacher_do(tmp_path, capsys,
                                                                         monkeypatch):
    """Ctrl-C after a photo was skipped ended on 'sharpen synth: interrupted' alone: the
    skipped photo's warning was among the lines above, where `sharpen run` and `teacher`
    list them again under their stop line (not saying the rest were processed)."""
    from distill.data import blur
    from distill.images import write_image
    from sharpen.cli import main

    photos = tmp_path / "photos"
    (photos).mkdir()
    (photos / "a-cut.png").write_bytes(b"\x89PNG garbage")
    for name in ("b.png", "c.png"):
        write_image(photos / name, np.random.default_rng(0).random((40, 48, 3)).astype(
            np.float32))

    def stops(*a, **k):   # Ctrl-C as the first readable photo is blurred
        raise KeyboardInterrupt
    monkeypatch.setattr(blur, "synthesize", stops)
    assert main(["synth", "--sharp", str(photos), "--out", str(tmp_path / "out"),
                 "--quiet"]) == 130
    err = capsys.readouterr().err.splitlines()
    said = [ln for ln in err if ln.startswith("warning: skipped: ")]
    assert len(said) == 1 and "a-cut.png" in said[0], err
    assert err[-3:] == ["sharpen synth: interrupted", "sharpen synth: 1 image could not be read:",
                        "  " + said[0].removeprefix("warning: skipped: ")], err


def test_synth_of_only_unreadable_photos_says_nothing_was_written(tmp_path, capsys):
    """A folder whose every photo was cut said "synthetic pairs written to OUT/input and
    OUT/target (1 unreadable)", a folder that was never made, and "the rest were processed"
    where there was no rest."""
    from sharpen.cli import main

    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    (photos / "cut.png").write_bytes(b"\x89PNG garbage")
    assert main(["synth", "--sharp", str(photos), "--out", str(out), "--quiet"]) == 1
    said = capsys.readouterr()
    assert "written" not in said.out and not (out / "input").exists(), said.out
    err = said.err.splitlines()
    assert err[-2:] == ["sharpen synth: 1 image could not be read; nothing was processed:",
                        f"  {photos / 'cut.png'}: " + err[-1].split(": ", 1)[1]], err


def _folder_of_one_clip(clips):
    """A folder holding one 2-frame grey clip, drive.avi."""
    clips.mkdir()
    vw = cv2.VideoWriter(str(clips / "drive.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 32))
    for _ in range(2):
        vw.write(np.full((32, 48, 3), 128, np.uint8))
    vw.release()
    return clips


def test_synth_names_the_clips_it_leaves_out(tmp_path, capsys):
    """A folder of sharp dashcam clips gave "--sharp DIR: no images found", and clips beside
    photos were left out without a word: synth takes photos, and says what to do with clips."""
    from distill.images import write_image
    from sharpen.cli import main

    clips = _folder_of_one_clip(tmp_path / "clips")
    argv = ["synth", "--sharp", str(clips), "--out", str(tmp_path / "out"), "--size", "3", "7",
            "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{clips}: no images found; it holds 1 video (drive.avi)" in err, err
    # A command that runs as given: labels requires --out.
    assert f"sharpen labels --data {clips} --out CACHE" in err, err
    write_image(clips / "a.png", np.random.default_rng(0).random((32, 48, 3)).astype(np.float32))
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "1 video left out (drive.avi): synth takes photos" in err, err


def test_synth_says_once_that_16_bit_photos_are_written_as_8_bit_pairs(tmp_path, capsys):
    """16-bit PNG/TIFF photos became 8-bit pairs without a word."""
    import cv2

    from distill.images import write_image
    from sharpen.cli import main

    rng = np.random.default_rng(0)
    photos = tmp_path / "photos"
    for name, bits in (("a.png", 16), ("b.tif", 16), ("c.png", 8)):
        write_image(photos / name, rng.random((24, 32, 3)).astype(np.float32), bits=bits)
    out = tmp_path / "out"
    assert main(["synth", "--sharp", str(photos), "--out", str(out), "--size", "3", "7",
                 "--quiet"]) == 0
    warned = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning:")]
    assert warned == ["warning: 2 of the 3 photos are 16-bit (a.png, b.tif): their pairs are "
                      "written in 8 bits, as every synth pair is"], warned
    for half in ("input", "target"):
        for f in (out / half).iterdir():
            assert cv2.imread(str(f), cv2.IMREAD_UNCHANGED).dtype == np.uint8, f


@pytest.mark.parametrize("bad, what", [
    (["--gamma", "0"], "--gamma must be in [0.1, 10]"),       # was ZeroDivisionError
    (["--gamma", "nan"], "--gamma must be in [0.1, 10]"),     # was black inputs, exit 0
    (["--gamma", "-1"], "--gamma must be in [0.1, 10]"),
    (["--seed", "-1"], "--seed must be >= 0, got -1"),        # was numpy's traceback
    (["--noise", "nan"], "--noise must be in [0, 1]"),
    (["--noise", "-1"], "--noise must be in [0, 1]"),
    (["--jpeg-prob", "2"], "--jpeg-prob must be in [0, 1]"),
    (["--jpeg-prob", "-1"], "--jpeg-prob must be in [0, 1]"),
    (["--size", "7", "100000"], "--size MIN MAX needs 3 <= MIN <= MAX <= 1023"),  # 80 GB
])
def test_synth_refuses_bad_numbers_naming_the_option(tmp_path, capsys, bad, what):
    from distill.images import write_image
    from sharpen.cli import main

    write_image(tmp_path / "photos" / "a.png", np.full((24, 24, 3), 0.5, np.float32))
    out = tmp_path / "out"
    assert main(["synth", "--sharp", str(tmp_path / "photos"), "--out", str(out), "--quiet",
                 *bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sharpen synth: error: {what}") and len(err.splitlines()) == 1, err
    assert not out.exists()


@pytest.mark.parametrize("bad, what", [
    (["--seed", "-1"], "--seed must be >= 0, got -1"),   # numpy's message named no option
    (["--crop", "-5"], "--crop must be >= 32, got -5"),  # one line named all three options
    (["--test-crop", "16"], "--test-crop must be >= 32, got 16"),
    (["--copies", "0"], "--copies must be >= 1, got 0"),
])
def test_corpus_names_the_option_out_of_range(tmp_path, capsys, bad, what):
    from sharpen.cli import main

    assert main(["corpus", "--photos", str(tmp_path), "--out", str(tmp_path / "c"),
                 *bad, "--quiet"]) == 2
    assert f"sharpen corpus: error: {what}" in capsys.readouterr().err


def test_synth_into_a_folder_of_other_names_says_the_old_pairs_stay_beside_the_new(tmp_path,
                                                                                  capsys):
    """A second `synth` with another --copies into the same --out said "those with the names
    written now are replaced", yet replaced none (a_0.png, a_1.png against a.png): the folder
    silently became a mix of two recipes' pairs."""
    from distill.images import write_image
    from sharpen.cli import main

    write_image(tmp_path / "photos" / "a.png", np.full((24, 24, 3), 0.5, np.float32))
    argv = ["synth", "--sharp", str(tmp_path / "photos"), "--out", str(tmp_path / "o"),
            "--size", "3", "7", "--quiet"]
    assert main([*argv, "--copies", "2"]) == 0
    capsys.readouterr()
    assert main(argv) == 0   # a.png beside a_0.png and a_1.png
    err = capsys.readouterr().err
    assert "already holds 2 pairs, none of them under a name this run writes: they stay" in err
    assert sorted(p.name for p in (tmp_path / "o" / "input").iterdir()) == \
        ["a.png", "a_0.png", "a_1.png"]
    assert main(argv) == 0   # the same run again replaces its own pair
    err = capsys.readouterr().err
    assert "already holds 3 pairs, 1 of them under a name this run writes (replaced:" in err
    assert "2 others stay" in err


def test_synth_counts_one_held_pair_in_the_singular(tmp_path):
    """The warning about the pairs a folder already holds said "holds 1 pairs", "they stay"
    of one pair, and "1 others stay"."""
    from distill.synth_command import _held_pairs

    one_stays = _held_pairs(tmp_path, {"a.png"}, {"a_0.png", "a_1.png"})
    assert "holds 1 pair, not under a name this run writes: it stays beside" in one_stays
    one_other = _held_pairs(tmp_path, {"a.png", "a_0.png"}, {"a.png"})
    assert "holds 2 pairs, 1 of them under a name" in one_other
    assert "; 1 other stays beside" in one_other
    replaced = _held_pairs(tmp_path, {"a.png"}, {"a.png"})
    assert "holds 1 pair; the one with a name written now is replaced" in replaced


def test_a_synth_into_an_out_another_run_is_writing_is_refused(tmp_path, capsys):
    """Two `synth` into one --out at once (other seeds or presets) wrote each pair's input and
    target one after the other: a pair could take its blurred input from one run and its
    target from the other, which with a --preset is another frame (misaligned), and the
    warning about the pairs already there counted none of the other run's. The second is
    refused before it writes anything, naming the first."""
    import os

    from distill.images import write_image
    from distill.run_lock import run_lock
    from sharpen.cli import main

    write_image(tmp_path / "photos" / "a.png", np.full((24, 24, 3), 0.5, np.float32))
    out = tmp_path / "o"
    argv = ["synth", "--sharp", str(tmp_path / "photos"), "--out", str(out), "--size", "3", "7",
            "--quiet"]
    with run_lock(out, doing="writing synthetic pairs", flag="--out"):   # the other synth
        assert main(argv) == 2
        assert sorted(p.name for p in out.iterdir()) == [".lock"]
    err = capsys.readouterr().err
    assert (f"another run is writing synthetic pairs into {out} (process {os.getpid()}); wait "
            "for it to finish or stop it, or give this run another --out") in err, err
    assert not out.exists()   # the lock's holder made the folder, and it was left empty
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["input", "target"]


def test_a_synth_rerun_removes_the_temp_files_a_killed_run_left(tmp_path, capsys):
    """A synth SIGKILLed while writing a pair left its hidden temp file (.NAME.png.PID.XXXX.png,
    as large as the pair) in input/ or target/, and every rerun left them there: a pile that grew
    with each kill. A live process's temp file (another writer's) stays."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path
    from distill.images import write_image
    from sharpen.cli import main

    write_image(tmp_path / "photos" / "a.png", np.full((24, 24, 3), 0.5, np.float32))
    out = tmp_path / "o"
    (out / "target").mkdir(parents=True)
    code = ("import sys, time; from runtime.atomic import atomic_path\n"
            "with atomic_path(sys.argv[1], suffix='.png') as tmp:\n"
            "    tmp.write_bytes(b'\\x89PNG half'); print(tmp, flush=True); time.sleep(60)\n")
    killed = subprocess.Popen([sys.executable, "-c", code, str(out / "target" / "a.png")],
                              stdout=subprocess.PIPE, text=True)
    dead = Path(killed.stdout.readline().strip())
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    killed.stdout.close()
    assert dead.exists() and dead.name.startswith(".a.png.")
    live = out / "target" / f".b.png.{os.getppid()}.abcd1234.png"
    live.write_bytes(b"\x89PNG half")
    assert main(["synth", "--sharp", str(tmp_path / "photos"), "--out", str(out),
                 "--size", "3", "7", "--quiet"]) == 0
    assert not dead.exists() and live.exists()
    assert "removed 1 temp file a killed synth left" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "target").iterdir()) == sorted([live.name, "a.png"])


def test_a_synth_rerun_after_a_kill_says_its_pairs_come_out_the_same(tmp_path, capsys):
    """The rerun of a killed synth warned that the pairs it replaced made their labels stale,
    which `sharpen distill` refuses: untrue of the same command, whose pairs are the same bytes
    (labels are matched to their inputs by hash), and it told the user to start over."""
    import hashlib
    from distill.images import write_image
    from sharpen.cli import main

    for i in range(2):
        write_image(tmp_path / "photos" / f"a{i}.png", np.full((24, 24, 3), 0.2 * i, np.float32))
    out = tmp_path / "o"
    argv = ["synth", "--sharp", str(tmp_path / "photos"), "--out", str(out), "--size", "3", "7",
            "--noise", "0.05", "--quiet"]

    def pairs():
        return {p.relative_to(out): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in out.rglob("*.png")}
    assert main(argv) == 0
    first = pairs()
    (out / "target" / "a1.png").unlink()   # as a kill between a pair's two files leaves it
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert ("the same photos, options and --seed write the same pairs, which keeps their "
            "labels") in err
    assert pairs() == first


def test_a_synth_rerun_with_a_photo_added_does_not_promise_the_same_pairs(tmp_path, capsys):
    """Each pair's blur is drawn from --seed and its photo's place in the sorted list: a photo
    added before the others shifts them, and the same options and --seed give them other blur
    (their labels go stale). The rerun's warning promised the same pairs for the same options
    and --seed alone."""
    import hashlib
    from distill.images import write_image
    from sharpen.cli import main

    for i in (1, 2):
        write_image(tmp_path / "photos" / f"a{i}.png", np.full((24, 24, 3), 0.2 * i, np.float32))
    out = tmp_path / "o"
    argv = ["synth", "--sharp", str(tmp_path / "photos"), "--out", str(out), "--size", "3", "7",
            "--noise", "0.05", "--quiet"]
    assert main(argv) == 0
    before = hashlib.sha256((out / "input" / "a2.png").read_bytes()).hexdigest()
    write_image(tmp_path / "photos" / "a0.png", np.full((24, 24, 3), 0.5, np.float32))
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert hashlib.sha256((out / "input" / "a2.png").read_bytes()).hexdigest() != before
    assert "the same options and --seed write the same pairs" not in err, err
    assert "the same photos, options and --seed write the same pairs" in err, err


def test_synth_names_the_command_for_its_own_first_clip_and_why_a_frame_a_second(tmp_path,
                                                                                  capsys):
    """The extraction hint was a template (ffmpeg -i CLIP -vf fps=1 DIR/%06d.png) with no word
    on why a frame a second: it names the folder's first clip, and why."""
    from sharpen.cli import main

    clips = _folder_of_one_clip(tmp_path / "clips")
    assert main(["synth", "--sharp", str(clips), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"ffmpeg -i {clips / 'drive.avi'} -vf fps=1 frames/drive_%06d.png" in err, err
    assert "neighbouring frames are near-duplicates" in err and "--sharp frames" in err, err
