"""`sharpen teacher` on files and folders, with bad inputs."""
import argparse
import re

import cv2
import numpy as np
import pytest

from distill.checkpoint import atomic_save, make_checkpoint
from distill.restormer import build_restormer
from sharpen.cli import main

# What a --threads of 0 means, as the range errors say it (the runtimes: README "threads").
ZERO_THREADS = ("0: MKL_NUM_THREADS or else OMP_NUM_THREADS when set, else a CPU limit's count, "
                "else all cores")


@pytest.fixture()
def tiny_teacher(tmp_path):
    m = build_restormer("tiny")
    return str(atomic_save(make_checkpoint(m, kind="teacher", arch="restormer",
                                           arch_args=m.config.to_dict()), tmp_path / "t.pt"))


def test_folder_with_corrupt_file(tmp_path, tiny_teacher, capsys):
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(src / "a.png"), rng.integers(0, 255, (37, 45, 3), dtype=np.uint8))
    cv2.imwrite(str(src / "g16.png"), rng.integers(0, 65535, (20, 30), dtype=np.uint16))
    (src / "broken.png").write_bytes(b"\x89PNG garbage")
    rc = main(["teacher", str(src), "--out", str(tmp_path / "out"), "--teacher-weights",
               tiny_teacher, "--tile", "32", "--overlap", "8", "--quiet"])
    assert rc == 1  # one failure reported in the exit code
    err = capsys.readouterr().err
    assert "broken.png" in err
    # a SharpenWarning, which the command line shows itself (pytest recorded the UserWarning)
    assert f"warning: {src / 'g16.png'}: grayscale image converted to RGB\n" in err, err
    assert "g16.png is 16-bit; written as 8-bit PNG (--bits16 keeps 16 bits)" in err, err
    a = cv2.imread(str(tmp_path / "out" / "a.png"))
    assert a.shape == (37, 45, 3)
    assert cv2.imread(str(tmp_path / "out" / "g16.png")).shape == (20, 30, 3)
    assert not (tmp_path / "out" / "broken.png").exists()


def test_a_small_tile_without_overlap_takes_half_the_tile(tmp_path, tiny_teacher, capsys):
    """The default overlap was a fixed 64, so `--tile 64` (or Teacher.sharpen(tile=64)) without
    --overlap was refused ('need 0 <= overlap < tile'); it is now at most half the tile."""
    from distill.teacher import Teacher

    img = np.random.default_rng(0).integers(0, 255, (40, 72, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    rc = main(["teacher", str(tmp_path / "a.png"), "--out", str(tmp_path / "out"),
               "--teacher-weights", tiny_teacher, "--tile", "32", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert cv2.imread(str(tmp_path / "out" / "a.png")).shape == img.shape
    teacher = Teacher.load(tiny_teacher, device="cpu")
    x = np.random.default_rng(1).random((40, 72, 3)).astype(np.float32)
    np.testing.assert_array_equal(teacher.sharpen(x, tile=32),
                                  teacher.sharpen(x, tile=32, overlap=16))


def test_inputs_that_do_not_exist_are_a_usage_error_before_the_teacher_loads(tmp_path,
                                                                            capsys):
    """`sharpen teacher photos/` with no photos/ loaded the teacher, then exited 1 with
    'skipped: photos: no such file', where a missing checkpoint is a usage error (2). The
    weights here do not exist either: only the inputs are said, so nothing was loaded."""
    rc = main(["teacher", str(tmp_path / "photos"), str(tmp_path / "b.png"), "--out",
               str(tmp_path / "out"), "--teacher-weights", str(tmp_path / "no.pt"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "no such file or folder:" in err and "photos" in err, err
    assert "no.pt" not in err and not (tmp_path / "out").exists()


def test_missing_weights_explain_how_to_get_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SHARPEN_MODELS", str(tmp_path / "empty"))
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.zeros((8, 8, 3), np.uint8))
    assert main(["teacher", str(img), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "motion_deblurring.pth" in err and "--teacher-weights" in err
    # The advice's flags are the ones every command running the teacher takes (--config is an
    # alias of teacher, labels and demo only: evaluate and bench refused it).
    assert "--teacher-config motion-deblur" in err, err
    from sharpen.cli import build_parser
    for cmd in (["teacher", "x.png", "--out", "o"], ["labels", "--out", "o"],
                ["evaluate", "--data", "d"], ["bench", "--out", "o"], ["demo"]):
        build_parser().parse_args([*cmd, "--teacher-config", "motion-deblur"])


def test_wrong_config_for_weights(tmp_path, capsys):
    import torch
    torch.save({"params": build_restormer("tiny").state_dict()}, tmp_path / "off.pth")
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.zeros((8, 8, 3), np.uint8))
    rc = main(["teacher", str(img), "--out", str(tmp_path / "o"), "--teacher-weights",
               str(tmp_path / "off.pth"), "--config", "small"])
    assert rc == 2 and "does not match" in capsys.readouterr().err


def test_models_table(capsys):
    assert main(["models", "seed", "fast"]) == 0
    out = capsys.readouterr().out
    assert "seed" in out and "fast" in out and "45.34" in out


def test_every_command_has_help(capsys):
    from sharpen.cli import build_parser
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, p in sub.choices.items():
        for action in p._actions:
            if action.dest != "help" and action.option_strings:
                assert action.help, f"sharpen {name} {action.option_strings} has no help"


def test_every_option_default_shows_in_help():
    """A default the help leaves out is one a user cannot find: HelpFormatter adds
    `(default: X)` unless the help already mentions a default, and `sharpen demo
    --label-images` mentioned "the embedded default" (a data set), so its 6 was never shown."""
    from sharpen.cli import build_parser
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    number = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")
    for name, p in sub.choices.items():
        for action in p._actions:
            d = action.default
            if (not action.option_strings or action.required or d is None
                    or isinstance(d, bool) or d == argparse.SUPPRESS):
                continue
            text = p._get_formatter()._expand_help(action)
            values = d if isinstance(d, (list, tuple)) else [d]
            for v in values:
                if isinstance(v, (int, float)):
                    shown = any(float(t) == v for t in number.findall(text))
                else:
                    shown = str(v) in text
                assert shown, f"sharpen {name} {action.option_strings[0]}: default {v!r} " \
                    f"not in its help: {text!r}"


def test_a_flag_shared_by_commands_has_one_default():
    """One flag vocabulary: a flag that several commands take means the same and defaults the
    same in each (teacher ran 4 tiles per forward pass, labels 2, the same teacher)."""
    from sharpen.cli import build_parser
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    defaults: dict[str, dict[str, object]] = {}
    for name, p in sub.choices.items():
        for action in p._actions:
            if action.option_strings and action.dest != "help":
                defaults.setdefault(action.option_strings[0], {})[name] = action.default
    for flag in ("--batch-size", "--tile", "--overlap"):
        teacher_side = {k: v for k, v in defaults[flag].items() if k in ("teacher", "labels")}
        assert len(set(teacher_side.values())) == 1, (flag, teacher_side)
    for flag in ("--threads", "--device", "--quiet"):
        assert len(set(map(repr, defaults[flag].values()))) == 1, (flag, defaults[flag])


def test_every_threads_flag_states_the_limit_it_is_held_to(tmp_path, capsys):
    """Only `sharpen run --help` said --threads is held to at most 256 (or the cores where a
    machine has more); export, bench and demo did not even hold it there (a million threads
    reached torch and the runtimes after the exports). One wording, one check, everywhere."""
    import os

    from runtime.host import MAX_THREADS
    from sharpen.cli import build_parser

    sub = next(a for a in build_parser()._actions
               if a.__class__.__name__ == "_SubParsersAction")
    limit = f"at most {MAX_THREADS}, or the machine's cores where it has more)"
    helps = {name: a.help for name, p in sub.choices.items() for a in p._actions
             if "--threads" in a.option_strings}
    assert {"run", "evaluate", "export", "bench", "labels", "teacher", "distill", "train",
            "train-teacher", "demo", "models"} <= set(helps), sorted(helps)
    for name, text in helps.items():
        assert text.startswith("CPU threads for ") and text.endswith(limit), (name, text)
    top = max(MAX_THREADS, os.cpu_count() or 0)
    for argv in (["export", "--weights", "fast", "--out", str(tmp_path / "e")],
                 ["bench", "--out", str(tmp_path / "b")],
                 ["demo", "--out", str(tmp_path / "d")]):
        assert main([*argv, "--threads", "1000000", "--quiet"]) == 2, argv
        err = capsys.readouterr().err
        assert f"--threads must be 0 to {top} ({ZERO_THREADS}), got 1000000" in err, err
        assert not any(tmp_path.iterdir())   # refused before any work


def test_bad_options_and_outputs_are_refused_before_the_model_runs(tmp_path, tiny_teacher,
                                                                   capsys):
    """--tile/--overlap/--batch-size were checked per image (a traceback after the model
    loaded), and --out naming a file was found once per image, after the work."""
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.zeros((16, 16, 3), np.uint8))
    common = [str(img), "--teacher-weights", tiny_teacher, "--quiet"]
    for extra, says in ((["--tile", "-5"], "need 0 <= overlap < tile"),
                        (["--tile", "64", "--overlap", "64"], "got --tile 64 --overlap 64"),
                        (["--batch-size", "0"], "--batch-size must be >= 1")):
        assert main(["teacher", *common, "--out", str(tmp_path / "o"), *extra]) == 2
        assert says in capsys.readouterr().err
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    assert main(["teacher", *common, "--out", str(a_file)]) == 2
    assert f"--out: {a_file} is a file, not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("device", ["bogus", "meta", "mps"])
def test_every_command_taking_a_device_refuses_one_it_cannot_run_on(tmp_path, capsys, device):
    """`teacher` and `evaluate` passed --device to torch (a traceback; meta and mps without an
    Apple GPU even got past it); labels and distill said it in one line. All four share one
    check now, before any model loads or any folder is made."""
    import torch

    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine runs on mps")
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.zeros((16, 16, 3), np.uint8))
    out = tmp_path / "o"
    for argv, said in (
            (["teacher", str(img), "--out", str(out), "--device", device], f"--device {device}"),
            (["evaluate", "--weights", "fast", "--data", str(tmp_path), "--device", device],
             f"--device {device}"),
            (["labels", "--data", str(tmp_path), "--out", str(out), "--device", device],
             f"--device {device}"),
            (["distill", f"out={out}", f"device={device}"], f"device={device}")):
        rc = main([*argv, "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in err, err
        assert err.startswith(f"sharpen {argv[0]}: error: {said}: ") and "use auto, cpu, cuda" \
            in err and len(err.splitlines()) == 1, err
        assert not out.exists()


def test_equal_names_never_overwrite_each_other(tmp_path, tiny_teacher, capsys):
    """p1/x/a.png and p2/x/a.png both became x_a.png: one result was lost."""
    rng = np.random.default_rng(3)
    srcs = []
    for top in ("p1", "p2"):
        (tmp_path / top / "x").mkdir(parents=True)
        srcs.append(tmp_path / top / "x" / "a.png")
        cv2.imwrite(str(srcs[-1]), rng.integers(0, 255, (16, 24, 3), dtype=np.uint8))
    out = tmp_path / "out"
    rc = main(["teacher", str(srcs[0].parent), str(srcs[1].parent), str(srcs[0]), "--out",
               str(out), "--teacher-weights", tiny_teacher, "--tile", "0", "--quiet"])
    assert rc == 0
    assert "given more than once; sharpened once" in capsys.readouterr().err
    assert sorted(p.name for p in out.glob("*.png")) == ["x_a-2.png", "x_a.png"]


def test_a_config_that_contradicts_the_checkpoint_is_refused(tmp_path, tiny_teacher, capsys):
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.zeros((16, 16, 3), np.uint8))
    rc = main(["teacher", str(img), "--out", str(tmp_path / "o"), "--teacher-weights",
               tiny_teacher, "--teacher-config", "small"])
    assert rc == 2 and "carries its own Restormer config, which is not 'small'" in \
        capsys.readouterr().err
    assert main(["teacher", str(img), "--out", str(tmp_path / "o"), "--teacher-weights",
                 tiny_teacher, "--teacher-config", "tiny", "--quiet"]) == 0


def test_a_rerun_skips_what_the_same_run_wrote_and_redoes_the_rest(tmp_path, tiny_teacher,
                                                                   capsys):
    """A re-run after an interrupt wrote every image again (minutes each with the official
    teacher): outputs of the same input, weights and settings are now kept."""
    rng = np.random.default_rng(5)
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for name in ("a", "b"):
        cv2.imwrite(str(src / f"{name}.png"), rng.integers(0, 255, (16, 24, 3), dtype=np.uint8))
    cmd = ["teacher", str(src), "--out", str(out), "--teacher-weights", tiny_teacher,
           "--tile", "0", "--quiet"]
    assert main(cmd) == 0
    a, b = out / "a.png", out / "b.png"
    first = cv2.imread(str(a))
    written = {p: p.stat().st_mtime_ns for p in (a, b)}
    capsys.readouterr()

    assert main(cmd) == 0
    out_text = capsys.readouterr()
    assert "resuming: 2 of 2 images" in out_text.err and "(2 from an earlier run)" in \
        out_text.out
    assert {p: p.stat().st_mtime_ns for p in (a, b)} == written     # neither written again

    # A changed input, an output rewritten by another tool or missing, other settings or
    # --no-resume: written again.
    cv2.imwrite(str(src / "b.png"), rng.integers(0, 255, (16, 24, 3), dtype=np.uint8))
    assert main(cmd) == 0
    assert "resuming: 1 of 2 images" in capsys.readouterr().err
    assert a.stat().st_mtime_ns == written[a] and b.stat().st_mtime_ns != written[b]
    marker = np.full_like(first, 7)
    cv2.imwrite(str(a), marker)      # e.g. `sharpen run` into the same folder
    assert main(cmd) == 0
    assert "resuming: 1 of 2 images" in capsys.readouterr().err
    assert np.array_equal(cv2.imread(str(a)), first)
    a.unlink()
    assert main(cmd) == 0
    assert "resuming: 1 of 2 images" in capsys.readouterr().err
    assert np.array_equal(cv2.imread(str(a)), first)
    for extra in (["--no-resume"], ["--tile", "16", "--overlap", "4"]):
        before = a.stat().st_mtime_ns
        assert main([*cmd, *extra]) == 0
        assert "resuming" not in capsys.readouterr().err
        assert a.stat().st_mtime_ns != before


def test_threads_set_torchs_cpu_threads_and_a_negative_count_is_refused(tmp_path, tiny_teacher,
                                                                         capsys):
    """`sharpen teacher` had no --threads: the teacher took every core of a shared machine."""
    import torch

    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.zeros((16, 16, 3), np.uint8))
    common = ["teacher", str(img), "--teacher-weights", tiny_teacher, "--tile", "0",
              "--device", "cpu", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "bad"), "--threads", "-1"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"sharpen teacher: error: --threads must be >= 0 ({ZERO_THREADS}), got -1")
    assert not (tmp_path / "bad").exists()
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert main([*common, "--out", str(tmp_path / "o"), "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
        assert main([*common, "--out", str(tmp_path / "o2"), "--threads", "0"]) == 0
        assert torch.get_num_threads() == 1   # 0 leaves it as it is
    finally:
        torch.set_num_threads(before)
    assert (tmp_path / "o" / "x.png").is_file()


def test_the_official_weights_missing_say_where_they_come_from(tmp_path, capsys):
    """`sharpen teacher --teacher-weights motion_deblurring.pth --teacher-config motion-deblur`
    (the README's line) without the download said only 'checkpoint not found'."""
    src = tmp_path / "a.png"
    cv2.imwrite(str(src), np.zeros((16, 16, 3), np.uint8))
    rc = main(["teacher", str(src), "--out", str(tmp_path / "out"), "--teacher-weights",
               str(tmp_path / "motion_deblurring.pth"), "--teacher-config", "motion-deblur",
               "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "checkpoint not found" in err and "github.com/swz30/Restormer" in err, err
    rc = main(["teacher", str(src), "--out", str(tmp_path / "out"), "--teacher-weights",
               str(tmp_path / "mine.pt"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "checkpoint not found" in err and "swz30" not in err, err


def test_a_folders_clips_and_subfolders_left_out_are_said(tmp_path, tiny_teacher, capsys):
    """`sharpen teacher footage/` over a folder of a still, two clips and a subfolder of frames
    sharpened the still, said '1 image in OUT, 0 failed' and exit 0: the clips and the
    subfolder were left out without a word (a clip named alone is refused, pointing at labels)."""
    src = tmp_path / "footage"
    (src / "day1").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("still.png", "day1/f1.png"):
        cv2.imwrite(str(src / name), rng.integers(0, 255, (16, 24, 3), dtype=np.uint8))
    vw = cv2.VideoWriter(str(src / "walk.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (24, 16))
    vw.write(np.zeros((16, 24, 3), np.uint8))
    vw.release()
    (src / "notes.txt").write_text("shot on day 1")
    rc = main(["teacher", str(src), "--out", str(tmp_path / "out"), "--teacher-weights",
               tiny_teacher, "--tile", "0", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0 and (tmp_path / "out" / "still.png").is_file()
    assert f"{src}: 2 files that are not images skipped (notes.txt, walk.avi)" in err, err
    assert f"`sharpen labels --data {src}` runs the teacher over its clips' frames" in err, err
    assert "a student sharpens video: `sharpen run --model" in err, err   # not only labels
    assert f"{src}: its subfolder day1 is not searched: name it as an input too" in err, err
    # The --out folder inside the input folder is no subfolder left out.
    main(["teacher", str(src), "--out", str(src / "sharp"), "--teacher-weights", tiny_teacher,
          "--tile", "0", "--quiet"])
    err = capsys.readouterr().err
    assert "its subfolder day1 is not searched" in err, err   # one: day1, not sharp


def test_the_tile_bar_counts_its_tiles_from_the_start(tiny_teacher_pt, capsys, monkeypatch):
    """The bar began at total 0 ('photo.png: 0tile') until the first tile was done."""
    from distill.teacher import Teacher
    from runtime.tiling import count_tiles
    monkeypatch.setenv("SHARPEN_PROGRESS_INTERVAL", "0")   # a progress line each tile

    teacher = Teacher.load(tiny_teacher_pt, device="cpu")
    image = np.random.default_rng(0).random((96, 160, 3), dtype=np.float32)
    teacher.sharpen(image, tile=64, overlap=16, progress=True, desc="photo.png")
    n = count_tiles(96, 160, 64, 16, 8)
    first = capsys.readouterr().err.strip().splitlines()[0]
    assert n > 1 and re.search(rf"photo.png: \d+/{n} tile", first), first


def test_reading_and_writing_an_image_hold_one_float_copy(tmp_path):
    # Per 48-megapixel photo a float32 copy is 576 MB: reading one made two at once, writing
    # one two beside the image written.
    import tracemalloc

    from distill.images import read_image, to_rgb_float, write_image
    bgr = np.random.default_rng(0).integers(0, 256, (600, 800, 3), dtype=np.uint8)
    floats = bgr.size * 4
    tracemalloc.start()
    try:
        rgb = to_rgb_float(bgr)
        read_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        write_image(tmp_path / "x.png", rgb, bits=16)
        write_peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert np.array_equal(rgb, bgr[..., ::-1].astype(np.float32) / 255.0)
    assert read_peak < 1.3 * floats, f"reading: {read_peak / floats:.2f} float copies"
    assert write_peak < 1.8 * floats, f"writing: {write_peak / floats:.2f} float copies"
    back = read_image(tmp_path / "x.png")
    assert np.abs(back - rgb).max() < 1e-4


def test_an_inputs_colour_profile_is_kept_in_its_output(tmp_path, tiny_teacher):
    # A phone's Display P3 photo written without its profile is shown as sRGB by colour-
    # managed viewers, its colours duller: `sharpen run` keeps the profile, the teacher
    # dropped it without a word.
    from PIL import Image, ImageCms

    from runtime.imageio import icc_profile
    src = tmp_path / "in"
    src.mkdir()
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgb = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(src / "p3.jpg", icc_profile=profile, quality=95)
    Image.fromarray(rgb).save(src / "plain.jpg", quality=95)
    out = tmp_path / "out"
    for bits in ([], ["--bits16"]):
        assert main(["teacher", str(src), "--out", str(out), "--teacher-weights", tiny_teacher,
                     "--tile", "0", "--quiet", "--no-resume", *bits]) == 0
        written = (out / "p3.png").read_bytes()
        assert icc_profile(written) == profile
        assert icc_profile((out / "plain.png").read_bytes()) is None
        img = cv2.imread(str(out / "p3.png"), cv2.IMREAD_UNCHANGED)
        assert img.shape == (40, 48, 3) and img.dtype == (np.uint16 if bits else np.uint8)


def test_a_folders_progress_counts_tiles_over_all_its_images(tmp_path, tiny_teacher, capsys,
                                                             monkeypatch):
    # Counted in images, the bar's rate and ETA were those of the images so far: hours off
    # where a 48-megapixel photo follows 12-megapixel ones.
    from PIL import Image
    monkeypatch.setenv("SHARPEN_PROGRESS_INTERVAL", "0")   # a progress line each tile

    from runtime.tiling import count_tiles
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(src / "small.png"), rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rng.integers(0, 256, (56, 120, 3), dtype=np.uint8)).save(
        src / "turned.jpg", exif=exif.tobytes())
    (src / "cut.png").write_bytes(b"\x89PNG garbage")
    assert main(["teacher", str(src), "--out", str(tmp_path / "out"), "--teacher-weights",
                 tiny_teacher, "--tile", "32", "--overlap", "8"]) == 1
    err = capsys.readouterr().err
    n = count_tiles(40, 48, 32, 8) + count_tiles(120, 56, 32, 8)
    final = err.replace("\r", "\n").strip().splitlines()
    assert any(f"{n}/{n}" in line and "tile" in line for line in final), err
    # The bar's own counters only: the temp folder's path (pytest-1515/...) holds digits too.
    counters = re.findall(r"teacher: (\d+)/(\d+) tile", err)
    assert counters and all(int(total) == n and int(done) <= n for done, total in counters), err
    # A warning, as every command says a skipped input, and listed again at the end
    said = [ln for ln in err.splitlines() if "cut.png" in ln]
    assert said[0].startswith(f"warning: skipped: {src / 'cut.png'}: "), err
    assert err.splitlines()[-2:] == [
        "sharpen teacher: 1 image could not be sharpened; the rest were processed:",
        "  " + said[0].removeprefix("warning: skipped: ")], err


def test_a_folder_of_only_unreadable_images_says_nothing_was_processed(tmp_path,
                                                                         tiny_teacher, capsys):
    """Its closing lines said "...; the rest were processed:" where no image was: the
    list's heading is "nothing was processed" then."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "cut.png").write_bytes(b"\x89PNG garbage")
    assert main(_teacher_args(src, tmp_path / "out", tiny_teacher)) == 1
    said = capsys.readouterr()
    assert "teacher: 0 images in" in said.out, said.out
    assert said.err.splitlines()[-2] == ("sharpen teacher: 1 image could not be sharpened; "
                                         "nothing was processed:"), said.err


def test_an_image_that_could_not_be_written_stops_the_run_and_its_rerun_goes_on(tmp_path,
                                                                              tiny_teacher):
    """A full disk (a file size limit, `ulimit -f`, stands in for it: the same write fails)
    skipped the photo and went on running the teacher over every photo left, each failing the
    same way, to end on exit 1 after hours. The first result that cannot be written stops the
    run: one line naming it (a file size limit said as one: freeing space does not help), exit
    2, what was written kept; the same command, with room, goes on from there."""
    import os
    import subprocess
    import sys

    from child_fixtures import file_size_limit
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    noise = np.random.default_rng(0).integers(0, 256, (160, 200, 3), dtype=np.uint8)
    cv2.imwrite(str(src / "noise.png"), noise)   # its PNG is larger than the limit
    cv2.imwrite(str(src / "flat.png"), np.full((40, 48, 3), 128, np.uint8))   # first by name
    cv2.imwrite(str(src / "plain.png"), np.full((40, 48, 3), 64, np.uint8))   # after noise

    def teacher(limit: int) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "sharpen",
                               *_teacher_args(src, out, tiny_teacher)],
                              capture_output=True, text=True, timeout=300,
                              preexec_fn=file_size_limit(limit),
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    proc = teacher(60_000)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc
    assert err[-1].startswith(f"sharpen teacher: error: {out / 'noise.png'}: File too large"
                              " (the limit on one file's size"), err
    assert err[-1].endswith("; what is done is kept: raise it or write elsewhere, and run "
                            "the same command to continue"), err
    assert not [ln for ln in err if "skipped" in ln], err
    assert sorted(p.name for p in out.glob("*.png")) == ["flat.png"]   # plain.png never ran
    proc = teacher(10_000_000)
    assert proc.returncode == 0, proc
    assert "teacher: 3 images in" in proc.stdout and "(1 from an earlier run)" in proc.stdout
    assert sorted(p.name for p in out.glob("*.png")) == ["flat.png", "noise.png", "plain.png"]


def test_a_run_stopped_by_a_full_disk_does_not_say_the_rest_were_processed(tmp_path,
                                                                             tiny_teacher):
    """A photo skipped (unreadable) before the result a full disk refused: the closing list
    said "1 image could not be sharpened; the rest were processed:" (or "nothing was
    processed") above the error line, though the run stopped there, the photos after it never
    run and one before it written."""
    from child_fixtures import main_with_file_limit
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    (src / "a-cut.png").write_bytes(b"\x89PNG garbage")
    cv2.imwrite(str(src / "a-flat.png"), np.full((40, 48, 3), 128, np.uint8))   # written
    noise = np.random.default_rng(0).integers(0, 256, (160, 200, 3), dtype=np.uint8)
    cv2.imwrite(str(src / "noise.png"), noise)   # its PNG is larger than the limit
    cv2.imwrite(str(src / "plain.png"), np.full((40, 48, 3), 64, np.uint8))   # after noise
    said = main_with_file_limit(_teacher_args(src, out, tiny_teacher), 60_000)
    assert "error" not in said and said.get("rc") == 2, said
    err = said["err"].strip().splitlines()
    assert err[-1].startswith(f"sharpen teacher: error: {out / 'noise.png'}: "), err
    assert "sharpen teacher: 1 image could not be sharpened:" in err, err
    assert not [ln for ln in err if "were processed" in ln or "was processed" in ln], err


def test_a_stopped_run_lists_the_images_it_skipped_as_a_finished_one_does(
        tmp_path, tiny_teacher, capsys, monkeypatch):
    """Ctrl-C after a photo was skipped ended on the 'interrupted:' line alone: the skipped
    photo's warning was among the lines above, where `sharpen run` lists them again."""
    from distill.teacher import Teacher

    real, calls = Teacher.sharpen, []

    def sharpen(self, *a, **kw):   # the real teacher; Ctrl-C as it starts the second image
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(self, *a, **kw)
    monkeypatch.setattr(Teacher, "sharpen", sharpen)
    src = _folder(tmp_path / "in", 2)
    (src / "a-cut.png").write_bytes(b"\x89PNG garbage")   # first, by name
    out = tmp_path / "out"
    assert main(_teacher_args(src, out, tiny_teacher)) == 130
    err = capsys.readouterr().err.splitlines()
    said = [ln for ln in err if ln.startswith("warning: skipped: ")]
    assert len(said) == 1 and "a-cut.png" in said[0], err
    assert err[-3].startswith(f"interrupted: 1 of 3 images in {out}; "), err
    assert err[-2:] == ["sharpen teacher: 1 image could not be sharpened:",
                        "  " + said[0].removeprefix("warning: skipped: ")], err


def test_a_folders_bar_ends_at_its_tiles_where_a_header_does_not_give_the_size(
        tmp_path, tiny_teacher, capsys):
    # A JPEG whose size comes after 256 KB of APP segments (a large ICC profile or XMP) is
    # counted as 0 tiles before it runs; the bar then added its tile count once per batch,
    # so it ended short of its total (6/12 for 6 tiles in 2 batches).
    from runtime.imageio import header_size
    from runtime.tiling import count_tiles
    src = tmp_path / "in"
    src.mkdir()
    rgb = np.random.default_rng(0).integers(0, 256, (56, 72, 3), dtype=np.uint8)
    jpeg = cv2.imencode(".jpg", rgb)[1].tobytes()
    app15 = b"\xff\xef" + (65533).to_bytes(2, "big") + bytes(65531)
    (src / "late.jpg").write_bytes(jpeg[:2] + app15 * 5 + jpeg[2:])
    assert header_size((src / "late.jpg").read_bytes()[:1 << 18]) is None
    assert main(["teacher", str(src), "--out", str(tmp_path / "out"), "--teacher-weights",
                 tiny_teacher, "--tile", "32", "--overlap", "8", "--batch-size", "3"]) == 0
    err = capsys.readouterr().err
    n = count_tiles(56, 72, 32, 8)
    assert n > 3
    final = err.replace("\r", "\n").strip().splitlines()
    assert any(f"{n}/{n}" in line and "tile" in line for line in final), err


def test_a_rerun_removes_the_temp_files_of_writes_a_killed_run_cut_short(tmp_path,
                                                                          tiny_teacher):
    # A SIGKILL during a write left its hidden temp file in --out (up to ~100 MB for a
    # 48-megapixel 16-bit PNG), and no later run removed it. Only a dead process's are removed:
    # a live one's may be another run's write in progress.
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), np.full((16, 24, 3), 100, np.uint8))
    out = tmp_path / "out"
    out.mkdir()
    # A process that wrote part of an output, then was killed as a SIGKILL kills it.
    code = ("import sys, time; from runtime.atomic import atomic_path\n"
            "with atomic_path(sys.argv[1], suffix='.png') as tmp:\n"
            "    tmp.write_bytes(b'\\x89PNG half'); print(tmp, flush=True); time.sleep(60)\n")
    killed = subprocess.Popen([sys.executable, "-c", code, str(out / "a.png")],
                              stdout=subprocess.PIPE, text=True)
    dead = Path(killed.stdout.readline().strip())
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    killed.stdout.close()
    assert dead.exists() and dead.parent == out and dead.name.startswith(".a.png.")
    live = out / f".b.png.{os.getpid()}.abcd1234.png"   # a write of a run still at work
    live.write_bytes(b"\x89PNG half")
    mine = out / ".notes.png"                            # hidden files of the user's own
    mine.write_bytes(b"kept")
    dated = out / f".backup.{killed.pid}.holidays.png"
    dated.write_bytes(b"kept")
    assert main(["teacher", str(src), "--out", str(out), "--teacher-weights", tiny_teacher,
                 "--tile", "0", "--quiet"]) == 0
    assert not dead.exists()
    assert live.exists() and mine.exists() and dated.exists() and (out / "a.png").is_file()


def test_a_folders_images_are_sharpened_without_the_last_ones_result_held(tmp_path,
                                                                           tiny_teacher):
    # A 48-megapixel result is 576 MB of float32: kept until the next image's result replaced
    # it, it was held through that image's reading and tiling, one float copy more at the peak.
    import tracemalloc
    rng = np.random.default_rng(0)
    peaks = []
    # The first run's one-off allocations (imports, caches) are left out of the comparison.
    for run, n in enumerate((1, 1, 2)):
        src = tmp_path / f"in{run}"
        src.mkdir()
        for i in range(n):
            cv2.imwrite(str(src / f"{i}.png"), rng.integers(0, 256, (480, 640, 3), np.uint8))
        tracemalloc.start()
        try:
            assert main(["teacher", str(src), "--out", str(tmp_path / f"out{run}"),
                         "--teacher-weights", tiny_teacher, "--tile", "0", "--quiet"]) == 0
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    floats = 480 * 640 * 3 * 4
    assert peaks[2] - peaks[1] < 0.4 * floats, f"{(peaks[2] - peaks[1]) / floats:.2f} copies"


def test_an_earlier_runs_output_folder_in_the_input_folder_is_not_offered_as_an_input(
        tmp_path, tiny_teacher, capsys):
    """With an earlier run's --out inside the input folder, the warning said 'its subfolder
    sharp is not searched: name it as an input too': an invitation to sharpen the outputs."""
    src = tmp_path / "photos"
    (src / "day1").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a.png", "day1/b.png"):
        cv2.imwrite(str(src / name), rng.integers(0, 255, (16, 24, 3), dtype=np.uint8))
    args = ["--teacher-weights", tiny_teacher, "--tile", "0", "--quiet"]
    assert main(["teacher", str(src), "--out", str(src / "sharp"), *args]) == 0
    capsys.readouterr()
    assert main(["teacher", str(src), "--out", str(tmp_path / "elsewhere"), *args]) == 0
    err = capsys.readouterr().err
    assert (f"{src}: its subfolder sharp holds `sharpen teacher` outputs "
            "(.sharpen-teacher.json): left out") in err, err
    assert "sharp is not searched" not in err and "sharp, " not in err, err
    # Other subfolders keep their hint.
    assert f"{src}: its subfolder day1 is not searched: name it as an input too" in err, err
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()
                  if not p.name.startswith(".")) == ["a.png"]


# `sharpen teacher`'s look at the input folder's subfolders, as the user nobody where it
# would be root (whom no mode stops); its modules loaded before the switch.
_UNPRIVILEGED_LOOK = """
import os, sys
from pathlib import Path
import distill.teacher_command, distill.images, runtime.imageio, runtime.sources, runtime.warn
try:
    os.setgid(65534)
    os.setuid(65534)
except PermissionError:   # root of a container without CAP_SETUID
    sys.exit(3)
folder = Path(sys.argv[1])
distill.teacher_command._warn_left_out_of_folder(folder, folder / "sharp")
"""


def test_a_subfolder_this_user_cannot_enter_does_not_stop_the_teacher(tmp_path):
    """Looking for an earlier run's record in each subfolder raised PermissionError, a
    traceback, for one the user cannot enter (a disk's root/lost+found)."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    if os.geteuid() != 0:
        pytest.skip("needs root, to run as nobody")
    folder = Path(tempfile.mkdtemp(prefix="sharpen-test-"))   # nobody can reach /tmp's
    try:
        os.chmod(folder, 0o777)
        cv2.imwrite(str(folder / "a.png"), np.zeros((8, 8, 3), np.uint8))
        (folder / "lost+found").mkdir(mode=0o700)
        root = Path(__file__).resolve().parents[1]
        r = subprocess.run([sys.executable, "-c", _UNPRIVILEGED_LOOK, str(folder)],
                           capture_output=True, text=True, cwd=folder,
                           env=dict(os.environ, PYTHONPATH=str(root)))
        if r.returncode == 3:
            pytest.skip("cannot switch to nobody here")
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        assert (f"{folder}: its subfolder lost+found is not searched: name it as an input "
                "too") in r.stderr, r.stderr
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_quiet_run_reads_no_headers_for_a_bar_it_does_not_show(tmp_path, tiny_teacher,
                                                                  monkeypatch):
    """The bar's tile count read the first 256 KiB of every image before the first, under
    --quiet as well: a folder's worth of reads on a network disk, for no bar."""
    import runtime.imageio

    read = []
    real = runtime.imageio.file_header_size
    monkeypatch.setattr(runtime.imageio, "file_header_size",
                        lambda p: read.append(p) or real(p))
    src = tmp_path / "photos"
    src.mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(src / name), np.zeros((16, 24, 3), np.uint8))
    args = ["--teacher-weights", tiny_teacher, "--tile", "0"]
    assert main(["teacher", str(src), "--out", str(tmp_path / "q"), *args, "--quiet"]) == 0
    assert read == [] and len(list((tmp_path / "q").glob("*.png"))) == 2
    assert main(["teacher", str(src), "--out", str(tmp_path / "shown"), *args]) == 0
    assert len(read) == 2   # the bar's, when it is shown


def _folder(root, n):
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(root / f"f{i:03d}.png"), rng.integers(0, 255, (16, 16, 3), np.uint8))
    return root


def _teacher_args(images, out, weights) -> list[str]:
    """`sharpen teacher` over the folder `images` into `out`, untiled and quiet."""
    return ["teacher", str(images), "--out", str(out), "--teacher-weights", weights,
            "--tile", "0", "--quiet"]


def test_a_folder_rewrites_its_resume_record_a_logarithmic_number_of_times(
        tmp_path, tiny_teacher, monkeypatch, capsys):
    """.sharpen-teacher.json, the record a rerun resumes from, was rewritten whole after each
    image: a folder of n images wrote n^2/2 records (a day of frames, 50,000, wrote 1.25e9).
    Each image is now appended to a journal, folded into the record as it doubles and at the
    end."""
    import json

    import runtime.atomic
    sizes = []
    real = runtime.atomic.atomic_write_json

    def counted(path, obj, *a, **kw):
        if str(path).endswith(".sharpen-teacher.json"):
            sizes.append(len(obj["done"]))
        return real(path, obj, *a, **kw)
    monkeypatch.setattr(runtime.atomic, "atomic_write_json", counted)
    n, out = 40, tmp_path / "out"
    args = _teacher_args(_folder(tmp_path / "in", n), out, tiny_teacher)
    assert main(args) == 0, capsys.readouterr().err
    assert sum(sizes) <= 4 * n, sizes   # was 820
    assert len(sizes) <= 2 * n.bit_length() + 2, sizes   # was 40
    # Whole at the end, for a version that reads no journal.
    assert len(json.loads((out / ".sharpen-teacher.json").read_text())["done"]) == n
    assert not (out / ".sharpen-teacher.journal.jsonl").exists()
    capsys.readouterr()
    assert main(args) == 0
    assert f"resuming: {n} of {n} images" in capsys.readouterr().err


def test_a_killed_teacher_runs_journal_is_resumed_from(tmp_path, tiny_teacher, capsys):
    """What a kill leaves: images done since the record's last rewrite are in the journal only
    (a line cut short at the end). The rerun skips those, not the one cut short nor one done
    with other settings."""
    import json
    out = tmp_path / "out"
    args = _teacher_args(_folder(tmp_path / "in", 5), out, tiny_teacher)
    assert main(args) == 0
    record = out / ".sharpen-teacher.json"
    state = json.loads(record.read_text())
    record.unlink()
    lines = [json.dumps({"name": k, "stamp": v, "settings": state["settings"]})
             for k, v in sorted(state["done"].items())]
    other = json.dumps({"name": "f004.png", "stamp": state["done"]["f004.png"],
                        "settings": {**state["settings"], "tile": 64}})
    (out / ".sharpen-teacher.journal.jsonl").write_text(
        "\n" + "\n".join(lines[:3]) + "\n" + other + "\n" + lines[3][:40])
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "resuming: 3 of 5 images" in err, err
    assert len(json.loads(record.read_text())["done"]) == 5


def test_a_resume_with_nothing_left_folds_the_killed_runs_journal_in(tmp_path, tiny_teacher,
                                                                     capsys):
    """A killed run's journal was folded into .sharpen-teacher.json only when the rerun wrote
    an image: one that found every image done left the record without them for good, and a
    version that reads no journal wrote those images again."""
    import json
    out = tmp_path / "out"
    args = _teacher_args(_folder(tmp_path / "in", 3), out, tiny_teacher)
    assert main(args) == 0
    record = out / ".sharpen-teacher.json"
    state = json.loads(record.read_text())
    record.write_text(json.dumps({**state, "done": {}}))   # the kill: all in the journal
    (out / ".sharpen-teacher.journal.jsonl").write_text("".join(
        "\n" + json.dumps({"name": k, "stamp": v, "settings": state["settings"]})
        for k, v in state["done"].items()))
    capsys.readouterr()
    assert main(args) == 0
    assert "resuming: 3 of 3 images" in capsys.readouterr().err
    assert json.loads(record.read_text()) == state
    assert not (out / ".sharpen-teacher.journal.jsonl").exists()


def test_a_second_teacher_run_into_one_out_is_refused_naming_the_first(tmp_path, tiny_teacher,
                                                                        capsys):
    """Two `sharpen teacher` into one --out had no lock: each wrote the other's images again,
    and the first to compact its record removed the journal the other appended to. The second
    is refused before it writes anything, naming the first's process; a lock file that a
    killed run left (no process holds it) refuses nothing."""
    import os

    from distill.run_lock import run_lock

    out = tmp_path / "out"
    out.mkdir()
    journal = out / ".sharpen-teacher.journal.jsonl"
    journal.write_text('\n{"name": "f000.png"}')   # the first run's, mid-run
    args = _teacher_args(_folder(tmp_path / "in", 2), out, tiny_teacher)
    with run_lock(out, doing="writing teacher outputs", flag="--out",
                  name=".sharpen-teacher.lock"):   # the first run, as it holds the folder
        assert main(args) == 2
    err = capsys.readouterr().err
    assert (f"another run is writing teacher outputs into {out} (process {os.getpid()}); wait "
            "for it to finish or stop it, or give this run another --out") in err, err
    assert sorted(p.name for p in out.iterdir()) == [journal.name]
    assert journal.read_text() == '\n{"name": "f000.png"}'
    (out / ".sharpen-teacher.lock").write_text("999999\nrun\nwriting teacher outputs")   # killed
    assert main(args) == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.glob("*.png")) == ["f000.png", "f001.png"]
    assert not (out / ".sharpen-teacher.lock").exists()


def test_a_teacher_run_onto_a_filesystem_without_locks_runs_unlocked_with_a_warning(
        tmp_path, tiny_teacher, capsys, no_flock):
    """flock fails with ENOLCK or EOPNOTSUPP on some NFS, SMB and FUSE mounts: the lock only
    keeps two runs apart, so the run goes on there, saying so (as export, bench and training
    do)."""
    out = tmp_path / "nfs"
    assert main(["teacher", str(_folder(tmp_path / "in", 1)), "--out", str(out),
                 "--teacher-weights", tiny_teacher, "--tile", "0", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert (f"cannot lock {out / '.sharpen-teacher.lock'} (No locks available): writing "
            "teacher outputs unlocked; no other run may be writing teacher outputs into "
            f"{out} at the same time") in err, err
    assert (out / "f000.png").is_file() and not (out / ".sharpen-teacher.lock").exists()


@pytest.mark.parametrize("stop", [None, 2])
def test_a_record_that_cannot_be_rewritten_keeps_the_runs_outcome_and_its_journal(
        tmp_path, tiny_teacher, capsys, monkeypatch, stop):
    """.sharpen-teacher.json rewritten at the run's end, failing (a full disk; here its name
    taken by a folder), ended the run in a Python traceback, after a Ctrl-C too, whose
    summary and exit code it replaced; and a rewrite mid-run that failed counted the image
    it followed, written and journaled, as failed. The journal keeps every image: the end
    says so and the run's own outcome stands."""
    import json

    from distill.teacher import Teacher

    real, calls = Teacher.sharpen, []

    def sharpen(self, *a, **kw):   # the real teacher; Ctrl-C as it starts image `stop` + 1
        if len(calls) == stop:
            raise KeyboardInterrupt
        calls.append(1)
        return real(self, *a, **kw)
    monkeypatch.setattr(Teacher, "sharpen", sharpen)
    out = tmp_path / "out"
    record = out / ".sharpen-teacher.json"
    record.mkdir(parents=True)
    args = _teacher_args(_folder(tmp_path / "in", 3), out, tiny_teacher)
    rc = main(args)
    err = capsys.readouterr()
    said = (f"could not compact {record} (Is a directory): its journal "
            f"{out / '.sharpen-teacher.journal.jsonl'} keeps every image done, and the next "
            f"run into {out} folds it in")
    assert said in err.err, err.err
    if stop:
        assert rc == 130
        assert err.err.rstrip().endswith(f"interrupted: 2 of 3 images in {out}; the same "
                                         "command continues with the rest"), err.err
    else:
        assert rc == 0, err.err
        assert err.out == f"teacher: 3 images in {out}, 0 failed\n"
    assert not list(out.glob(".*.tmp"))   # the failed rewrites' temp files
    record.rmdir()
    monkeypatch.setattr(Teacher, "sharpen", real)
    assert main(args) == 0
    assert f"resuming: {stop or 3} of 3 images" in capsys.readouterr().err
    assert len(json.loads(record.read_text())["done"]) == 3


def test_the_pytorch_commands_say_a_cpu_limit_sets_threads_0(tmp_path, capsys):
    """teacher, labels, models and the training commands now take a cgroup CPU limit's count
    for --threads 0 (set_torch_threads), but their --help and range errors still called 0
    "PyTorch's default" (training's: "PyTorch's default, OMP_NUM_THREADS or all cores"),
    naming no limit: as the runtimes' commands, they say what 0 now means."""
    from sharpen.cli import build_parser

    sub = next(a for a in build_parser()._actions
               if a.__class__.__name__ == "_SubParsersAction")
    for name in ("teacher", "labels", "models", "distill", "train", "train-teacher"):
        text = next(a.help for a in sub.choices[name]._actions
                    if "--threads" in a.option_strings)
        assert f"(default {ZERO_THREADS}" in " ".join(text.split()), (name, text)
    for argv in (["teacher", "in.png", "--out", str(tmp_path / "t")],
                 ["labels", "--data", str(tmp_path), "--out", str(tmp_path / "l")],
                 ["models"], ["distill", f"out={tmp_path / 'd'}"]):
        assert main([*argv, "--threads", "-1"]) == 2, argv
        err = capsys.readouterr().err
        assert f"--threads must be >= 0 ({ZERO_THREADS}), got -1" in err, (argv, err)


@pytest.mark.parametrize("mkl,omp", [("1", "2"), ("2", "1")])
def test_torch_and_the_engines_take_one_count_from_mkl_and_omp_num_threads(mkl, omp):
    """The engines read MKL_NUM_THREADS over OMP_NUM_THREADS because PyTorch's default does
    (runtime.host.THREADS_VARS): a torch whose rule changed would leave them apart, unseen."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    if int(mkl) > (os.cpu_count() or 1):
        pytest.skip("torch caps its count at the cores")
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "MKL_NUM_THREADS": mkl, "OMP_NUM_THREADS": omp, "PYTHONPATH": root}
    code = ("import torch; from runtime.host import default_threads; "
            "print(torch.get_num_threads(), default_threads(None))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == [mkl, mkl], out


def test_a_photos_exif_is_kept_in_its_output_unless_no_exif(tmp_path, tiny_teacher):
    # A photographer's capture date, camera and GPS position: `sharpen run` keeps them, the
    # teacher wrote its PNGs without them, without a word. The pixels are turned upright on
    # reading, so the kept block says Orientation 1 (a viewer would turn them once more).
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "TestCam", "Model X", 6   # Make, Model, Orient.
    rgb = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(src / "shot.jpg", quality=95, exif=exif.tobytes())
    Image.fromarray(rgb).save(src / "plain.jpg", quality=95)
    out = tmp_path / "out"
    assert main(["teacher", str(src), "--out", str(out), "--teacher-weights", tiny_teacher,
                 "--tile", "0", "--quiet"]) == 0
    with Image.open(out / "shot.png") as im:
        kept = im.getexif()
        assert im.size == (40, 48)   # turned upright: a quarter turn of 48x40
    assert kept[0x010F] == "TestCam" and kept[0x0110] == "Model X" and kept[0x0112] == 1
    with Image.open(out / "plain.png") as im:
        assert not im.getexif()
    assert main(["teacher", str(src), "--out", str(out), "--teacher-weights", tiny_teacher,
                 "--tile", "0", "--quiet", "--no-exif"]) == 0
    with Image.open(out / "shot.png") as im:   # written again: the setting changed
        assert not im.getexif()


def test_no_metadata_leaves_a_photos_gps_out_as_sharpen_run_does(tmp_path, tiny_teacher,
                                                                 capsys):
    # One flag for both commands that write a sharpened photo: a desk that publishes them
    # gives `--no-metadata` to each (`sharpen run` leaves a clip's location out with it too).
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 30.0)})   # GPSLatitudeRef, Latitude
    rgb = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(src / "shot.jpg", quality=95, exif=exif.tobytes())
    out = tmp_path / "out"
    assert main(["teacher", str(src), "--out", str(tmp_path / "kept"), "--teacher-weights",
                 tiny_teacher, "--tile", "0", "--quiet"]) == 0
    said = "1 keeps its photo's GPS position (--no-metadata leaves it out)"
    assert said in capsys.readouterr().out   # as `sharpen run` says it
    assert main(["teacher", str(src), "--out", str(out), "--teacher-weights", tiny_teacher,
                 "--tile", "0", "--quiet", "--no-metadata"]) == 0
    with Image.open(out / "shot.png") as im:
        assert not im.getexif()
    assert "GPS" not in capsys.readouterr().out


def test_a_video_is_refused_before_the_teacher_loads_naming_sharpen_run(tmp_path, capsys):
    # The teacher writes images: a clip given to it loaded the model, was "skipped" (exit 1)
    # and pointed at `sharpen labels`, which caches training labels, not a sharpened video.
    clip = tmp_path / "clip.mp4"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 24, (64, 48))
    for _ in range(3):
        w.write(np.zeros((48, 64, 3), np.uint8))
    w.release()
    rc = main(["teacher", str(clip), "--out", str(tmp_path / "out"),
               "--teacher-weights", str(tmp_path / "not-loaded.pt")])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "not-loaded.pt" not in err   # said before the weights are looked for
    assert f"{clip}: a video" in err
    assert "sharpen run --model" in err and "--source" in err and "sharpen export" in err
    assert not (tmp_path / "out").exists()


def test_a_photo_stopped_part_way_is_continued_from_the_rows_it_had(tmp_path, tiny_teacher,
                                                                     monkeypatch, capsys):
    """A 12 MP photo takes an hour on a loaded CPU; Ctrl-C half-way kept nothing of it ('0 of
    1 image') and the next run began again at its first tile. Its finished rows are now kept
    in --out, and the same command computes only the rest, the same image as one run's."""
    from distill.teacher import Teacher
    from distill.teacher_partial import PartialImage

    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(src / "big.png"), rng.integers(0, 255, (200, 90, 3), dtype=np.uint8))
    args = ["teacher", str(src), "--out", None, "--teacher-weights", tiny_teacher,
            "--tile", "64", "--overlap", "16", "--quiet"]   # 4 tile rows of 2 tiles: 4 batches
    args[3] = str(tmp_path / "whole")
    assert main(args) == 0
    out = tmp_path / "out"
    args[3] = str(out)
    monkeypatch.setattr(PartialImage, "BAND_EVERY_S", 0.0)   # each batch's band kept
    real, batches = Teacher._run, []

    def stopped_at_the_last(self, batch):   # Ctrl-C while the last tile row runs
        batches.append(len(batch))
        if len(batches) == 4:
            raise KeyboardInterrupt
        return real(self, batch)
    monkeypatch.setattr(Teacher, "_run", stopped_at_the_last)
    capsys.readouterr()
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "big.png: 6 of its 8 tiles kept, 2 left to run); the same " \
        "command continues" in err, err
    assert not (out / "big.png").exists()
    batches.clear()
    monkeypatch.setattr(Teacher, "_run", lambda self, batch: (batches.append(len(batch)),
                                                              real(self, batch))[1])
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "big.png: going on where an earlier run was stopped (2 of its 8 tiles left to " \
        "run)" in err, err
    assert sum(batches) == 2   # of 8: the blend band of those run before the stop was kept
    assert np.array_equal(cv2.imread(str(out / "big.png")),
                          cv2.imread(str(tmp_path / "whole" / "big.png")))
    assert sorted(p.name for p in out.iterdir()) == [".sharpen-teacher.json", "big.png"]


@pytest.mark.parametrize("words,said", [
    (["--source", "photos/"], "the inputs take no flag: sharpen teacher photos/ --out sharp/"),
    (["photos/", "--overwrite"], "did you mean --no-resume?"),
    (["photos/", "--quality", "90"], "the teacher writes lossless PNG"),
])
def test_sharpen_runs_photo_options_point_at_the_teachers(words, said, capsys):
    # A user of `sharpen run --source photos/ --out sharp/ --overwrite --quality 90` trying
    # the teacher got no hint, or "did you mean --quiet?" for --quality.
    with pytest.raises(SystemExit) as e:
        main(["teacher", *words, "--out", "sharp/"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and said in err, err
    assert "--quiet" not in err


def test_the_teacher_resumed_from_any_kept_row_blends_what_one_run_does(tiny_teacher):
    """The teacher's tiles differ in their last bits with the batch they ran in (2e-7 between
    batches of 1 and 2 here): three tiles a row in batches of 2, a resumed run must batch them
    as the whole run did, or the rows it computes are not an uninterrupted run's."""
    from distill.teacher import Teacher

    teacher = Teacher.load(tiny_teacher, None, device="cpu")
    img = np.random.default_rng(3).uniform(size=(150, 130, 3)).astype(np.float32)
    full, rows_done = np.zeros_like(img), []
    teacher.sharpen(img, tile=64, overlap=16, batch_size=2, out=full, on_rows=rows_done.append)
    for from_row in rows_done[:-1]:
        part = np.full_like(img, -1.0)
        part[:from_row] = full[:from_row]
        teacher.sharpen(img, tile=64, overlap=16, batch_size=2, out=part, from_row=from_row)
        assert np.array_equal(part, full), (from_row, np.abs(part - full).max())


def _stopped_at_batch(monkeypatch, n: int) -> None:
    """The teacher interrupted (Ctrl-C) as its n-th batch of tiles runs."""
    from distill.teacher import Teacher

    real, batches = Teacher._run, []

    def stopped(self, batch):
        batches.append(len(batch))
        if len(batches) == n:
            raise KeyboardInterrupt
        return real(self, batch)
    monkeypatch.setattr(Teacher, "_run", stopped)


def test_a_photo_stopped_in_its_second_tile_row_keeps_its_first_rows_tiles(
        tmp_path, tiny_teacher, monkeypatch, capsys):
    """Stopped in its second row of tiles, a photo kept nothing ('nothing of it kept: the
    rows it finished need all its tiles again'): only finished rows were kept, and the first
    row of tiles reaches below them. A photographer's 12 MP photo stopped at 20 of its 70
    tiles ran those 20 again, and stopped later, a row of ten (minutes to an hour on a CPU).
    The blend band is now kept too: the next run runs only the tiles not yet run, and writes
    what one run does, to the bit."""
    from distill.teacher import Teacher
    from distill.teacher_partial import PartialImage

    src = tmp_path / "big.png"
    cv2.imwrite(str(src), np.random.default_rng(0).integers(0, 255, (200, 90, 3), np.uint8))
    out = tmp_path / "out"
    args = ["teacher", str(src), "--out", str(tmp_path / "whole"), "--teacher-weights",
            tiny_teacher, "--tile", "64", "--overlap", "16", "--quiet"]  # a batch a tile row
    assert main(args) == 0
    args[3] = str(out)
    monkeypatch.setattr(PartialImage, "BAND_EVERY_S", 0.0)
    _stopped_at_batch(monkeypatch, 3)
    capsys.readouterr()
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "big.png: 4 of its 8 tiles kept, 4 left to run)" in err, err
    assert "nothing of it kept" not in err
    real, ran = Teacher._run, []
    monkeypatch.setattr(Teacher, "_run", lambda self, b: (ran.append(len(b)), real(self, b))[1])
    assert main(args) == 0
    assert "(4 of its 8 tiles left to run)" in capsys.readouterr().err
    assert sum(ran) == 4
    assert np.array_equal(cv2.imread(str(out / "big.png")),
                          cv2.imread(str(tmp_path / "whole" / "big.png")))
    assert sorted(p.name for p in out.iterdir()) == [".sharpen-teacher.json", "big.png"]


def test_a_stopped_photo_s_tiles_are_kept_while_another_is_sharpened_into_its_out(
        tmp_path, tiny_teacher, monkeypatch, capsys):
    """One stopped photo was kept per --out: a photographer who stopped a.png and sharpened
    b.png into the same folder had a's rows dropped (minutes to hours of a CPU's work, said
    only as a warning). Each photo's are kept now, and a.png goes on from them afterwards.
    Other settings drop them, said; run again with --bits16 or --no-exif, which change how
    it is written, it goes on."""
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), rng.integers(0, 255, (200, 90, 3), np.uint8))
    out = tmp_path / "out"
    args = ["teacher", str(tmp_path / "a.png"), "--out", str(out), "--teacher-weights",
            tiny_teacher, "--tile", "64", "--overlap", "16", "--quiet"]
    _stopped_at_batch(monkeypatch, 4)
    assert main(args) == 130
    assert "a.png: 2 of its 8 tiles kept" in capsys.readouterr().err
    monkeypatch.undo()
    args[1] = str(tmp_path / "b.png")
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "dropped" not in err, err
    args[1] = str(tmp_path / "a.png")
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "a.png: going on where an earlier run was stopped (6 of its 8 tiles left" in err, err
    assert sorted(p.name for p in out.iterdir()) == [".sharpen-teacher.json", "a.png", "b.png"]
    args.append("--no-resume")
    _stopped_at_batch(monkeypatch, 4)
    assert main(args) == 130
    args.pop()
    monkeypatch.undo()
    capsys.readouterr()
    assert main([*args, "--bits16", "--no-exif"]) == 0   # how it is written, not its pixels
    err = capsys.readouterr().err
    assert "a.png: going on where" in err and "warning: the" not in err, err
    _stopped_at_batch(monkeypatch, 4)
    assert main(args) == 130
    monkeypatch.undo()
    capsys.readouterr()
    assert main([*args, "--overlap", "24"]) == 0
    err = capsys.readouterr().err
    assert ("warning: the 2 tiles of a.png an earlier stopped run finished are dropped: this "
            "run's settings differ from that run's (overlap 16, now 24)") in err, err


def _a_photo_stopped(src, tiny_teacher, monkeypatch) -> tuple[list[str], object]:
    """`src`, a random 200 x 90 photo, stopped by Ctrl-C in its 4th batch of tiles (2 of its
    8 kept) as it was sharpened into the folder `out` beside it: the command, and `out`."""
    cv2.imwrite(str(src), np.random.default_rng(0).integers(0, 255, (200, 90, 3), np.uint8))
    out = src.parent / "out"
    args = ["teacher", str(src), "--out", str(out), "--teacher-weights", tiny_teacher,
            "--tile", "64", "--overlap", "16", "--quiet"]
    _stopped_at_batch(monkeypatch, 4)
    assert main(args) == 130
    monkeypatch.undo()
    return args, out


def test_a_photo_an_earlier_version_kept_goes_on_from_its_files(tmp_path, tiny_teacher,
                                                               monkeypatch, capsys):
    """A photo stopped by a version that kept one per --out (under unhashed names) is not
    begun again after an upgrade: its files are taken over as that photo's."""
    from pathlib import Path

    from distill.teacher_partial import PartialImage

    args, out = _a_photo_stopped(tmp_path / "big.png", tiny_teacher, monkeypatch)
    for name, legacy in zip(PartialImage.names(Path("big.png")), PartialImage.LEGACY):
        (out / name).rename(out / legacy)
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "big.png: going on where an earlier run was stopped (6 of its 8 tiles" in err, err
    assert sorted(p.name for p in out.iterdir()) == [".sharpen-teacher.json", "big.png"]


def _main_with_file_size_limit(args: list[str], limit: int) -> int:
    """`main(args)` where no file may grow past `limit` bytes: a full disk, for --out alone."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        return main(args)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_photo_whose_rows_find_no_room_in_out_is_sharpened_without_them(tmp_path, tiny_teacher,
                                                                          capsys):
    """The stopped rows' file is 12 bytes a pixel, four times an 8-bit PNG: on a disk with
    room for the image but not for it, a photo that was written before was skipped ('File too
    large', or on a full disk a sparse file's first write crashed Python with a bus error).
    It is now sharpened without them, saying so. The file-size limit stands in for the disk."""
    src = tmp_path / "big.png"
    cv2.imwrite(str(src), np.random.default_rng(0).integers(0, 255, (200, 90, 3), np.uint8))
    out = tmp_path / "out"
    args = ["teacher", str(src), "--out", str(out), "--teacher-weights", tiny_teacher,
            "--tile", "64", "--overlap", "16", "--quiet"]
    code = _main_with_file_size_limit(args, 150_000)   # the rows: 216,000 bytes
    err = capsys.readouterr().err
    assert code == 0, err
    assert "big.png: its finished rows cannot be kept in" in err and "File too large" in err
    assert "a stop begins it again" in err
    assert sorted(p.name for p in out.iterdir()) == [".sharpen-teacher.json", "big.png"]


def test_a_photo_whose_blend_band_finds_no_room_keeps_its_rows_and_says_so(tmp_path,
                                                                        tiny_teacher, capsys):
    """The band kept after each batch is 16 bytes a pixel of a tile row: where --out has room
    for the rows' file but not for it, the photo is still sharpened, its rows kept, and the
    user told that a stop runs those tiles again (once, not at every batch). The file-size
    limit stands in for the disk: 80 rows of 96 columns are 92 kB, a 64-row band 98 kB."""
    src = tmp_path / "low.png"
    cv2.imwrite(str(src), np.random.default_rng(0).integers(0, 255, (80, 90, 3), np.uint8))
    out = tmp_path / "out"
    args = ["teacher", str(src), "--out", str(out), "--teacher-weights", tiny_teacher,
            "--tile", "64", "--overlap", "16", "--batch-size", "1", "--quiet"]
    code = _main_with_file_size_limit(args, 95_000)
    err = capsys.readouterr().err
    assert code == 0, err
    assert err.count("low.png: the tiles below its finished rows cannot be kept in") == 1, err
    assert "File too large" in err and "a stop runs them again" in err
    assert sorted(p.name for p in out.iterdir()) == [".sharpen-teacher.json", "low.png"]


def test_a_stopped_photo_goes_on_first_when_the_folder_has_gained_photos(tmp_path, tiny_teacher,
                                                                         monkeypatch, capsys):
    """A folder's photos run in name order: a photographer who added a.png beside the
    stopped b.png and ran the same command had b's rows dropped for a's (one stopped photo was
    kept per --out). The stopped photo runs first, its file of 12 bytes a pixel then gone."""
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(src / "b.png"), rng.integers(0, 255, (200, 90, 3), np.uint8))
    out = tmp_path / "out"
    args = ["teacher", str(src), "--out", str(out), "--teacher-weights", tiny_teacher,
            "--tile", "64", "--overlap", "16", "--quiet"]
    _stopped_at_batch(monkeypatch, 4)
    assert main(args) == 130
    monkeypatch.undo()
    cv2.imwrite(str(src / "a.png"), rng.integers(0, 255, (200, 90, 3), np.uint8))
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "b.png: going on where" in err and "dropped" not in err, err
    assert sorted(p.name for p in out.iterdir()) == [".sharpen-teacher.json", "a.png", "b.png"]


def test_a_photo_whose_gps_block_holds_no_position_is_not_said_to_keep_one(tmp_path,
                                                                          tiny_teacher, capsys):
    # A camera with its GPS off writes a GPS block with its version alone: 'teacher: 1 image
    # ...; 1 keeps its photo's GPS position' was said of a photo that held none.
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    exif = Image.Exif()
    exif.get_ifd(0x8825)[0] = b"\x02\x03\x00\x00"   # GPSVersionID
    rgb = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(src / "shot.jpg", quality=95, exif=exif.tobytes())
    assert main(["teacher", str(src), "--out", str(tmp_path / "out"), "--teacher-weights",
                 tiny_teacher, "--tile", "0", "--quiet"]) == 0
    assert "GPS" not in capsys.readouterr().out


def test_kept_files_no_run_can_go_on_from_are_removed_by_the_next_run(tmp_path, tiny_teacher,
                                                                      monkeypatch, capsys):
    """Each stopped photo's files (12 bytes a pixel) are kept under its own names: those a kill
    left that no run reads stayed for good, where one name per --out was reused before. A kill
    after a photo was written but before its files went (it is done, never opened again), and
    one before its first record (its data with no record), each left a photo's size on disk."""
    from pathlib import Path

    from distill.teacher_partial import PartialImage

    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(tmp_path / name), rng.integers(0, 255, (200, 90, 3), np.uint8))
    out = tmp_path / "out"
    args = ["teacher", None, "--out", str(out), "--teacher-weights", tiny_teacher,
            "--tile", "64", "--overlap", "16", "--quiet"]
    for name in ("a.png", "b.png"):
        args[1] = str(tmp_path / name)
        _stopped_at_batch(monkeypatch, 4)
        assert main(args) == 130
        monkeypatch.undo()
    (out / PartialImage.names(Path("b.png"))[0]).unlink()   # killed before it was recorded
    args[1] = str(tmp_path / "a.png")
    monkeypatch.setattr(PartialImage, "clear", lambda self: None)   # killed once it is written
    assert main(args) == 0
    monkeypatch.undo()
    assert any(p.name.startswith(".sharpen-teacher.partial.") for p in out.iterdir())
    args[1] = str(tmp_path / "c.png")
    capsys.readouterr()
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == [".sharpen-teacher.json", "a.png", "c.png"]


def test_a_fifo_or_link_planted_at_a_stopped_photos_names_is_not_read_through(
        tmp_path, tiny_teacher, monkeypatch, capsys):
    """A stopped photo's files are kept in --out under names anyone can work out (its output
    name's hash), and every run reads each record there: a FIFO planted as one held the run
    before its first photo until someone wrote to it, and a photo's rows planted as a link
    had the run blend its rows into the file linked to. Each is refused as a FIFO or a link
    is (open_no_follow): that photo begins again, and the other file is left as it was."""
    import os
    import signal
    from pathlib import Path

    from distill.teacher_partial import PartialImage

    args, out = _a_photo_stopped(tmp_path / "a.png", tiny_teacher, monkeypatch)
    data = out / PartialImage.names(Path("a.png"))[1]
    victim = tmp_path / "victim.npy"
    data.rename(victim)
    before = victim.read_bytes()
    data.symlink_to(victim)   # its record as the run left it: the link is all that is planted
    os.mkfifo(out / PartialImage.FILE.format("0" * 16))

    class Hung(Exception):   # not an OSError, which the run takes as no record
        pass

    def hung(*_):
        raise Hung("the run waited on the FIFO")
    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        assert main(args) == 0
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert victim.read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == [".sharpen-teacher.json", "a.png"]


def test_a_photo_whose_kept_rows_spare_no_tile_is_not_said_to_go_on(tmp_path, tiny_teacher,
                                                                     monkeypatch, capsys):
    """A kill between writing a photo's band and its record leaves the rows alone recorded,
    and the rows above the second tile row spare none of its tiles: the next run said 'going
    on where an earlier run was stopped (8 of its 8 tiles left to run)', and ran all 8."""
    import json
    from pathlib import Path

    from distill.teacher_partial import PartialImage

    args, out = _a_photo_stopped(tmp_path / "a.png", tiny_teacher, monkeypatch)
    record = out / PartialImage.names(Path("a.png"))[0]
    state = json.loads(record.read_text())
    del state["band"]   # as a kill there leaves it, in its second tile row (48 px apart)
    record.write_text(json.dumps({**state, "rows": 48}))
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "going on" not in err, err


def test_a_run_off_a_terminal_says_its_work_before_the_first_tiles(tiny_teacher_pt, tmp_path,
                                                                    capsys):
    """Off a terminal (`> log 2>&1`, nohup) `sharpen teacher` said nothing until its first
    batch of tiles was done: with the official teacher on a CPU a 1080p frame's first two
    512 px tiles take minutes, the log empty all the while. Its first line now says how many
    images and tiles, their size, the device and the weights."""
    from runtime.tiling import count_tiles

    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.zeros((192, 320, 3), np.uint8))
    rc = main(["teacher", str(img), "--out", str(tmp_path / "o"), "--teacher-weights",
               str(tiny_teacher_pt), "--tile", "128", "--overlap", "32", "--device", "cpu"])
    err = capsys.readouterr().err
    n = count_tiles(192, 320, 128, 32, 8)
    assert rc == 0 and err.splitlines()[0] == (
        f"teacher: 1 image, {n} tiles of 128 px (overlap 32) on cpu in fp32, "
        f"weights {tiny_teacher_pt.name}"), err


def test_images_an_earlier_run_wrote_with_other_settings_are_said_to_be_written_again(
        tmp_path, tiny_teacher_pt, capsys):
    """A record written before a project checkpoint's config was named alike with or without
    --teacher-config (it said 'tiny', now 'checkpoint'; the official file's 'checkpoint', now
    'motion-deblur') had every image written again without a word, as had any run with other
    settings: hours with the official teacher, the user expecting a resume."""
    import json

    out = tmp_path / "out"
    args = _teacher_args(_folder(tmp_path / "in", 2), out, str(tiny_teacher_pt))
    assert main(args) == 0
    record = out / ".sharpen-teacher.json"
    state = json.loads(record.read_text())
    assert state["settings"]["config"] == "checkpoint"
    record.write_text(json.dumps({**state, "settings": {**state["settings"], "config": "tiny"}}))
    written = {p: p.stat().st_mtime_ns for p in out.glob("*.png")}
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert (f"2 images in {out} were written by an earlier run with other settings (config "
            "'tiny', now 'checkpoint'): written again") in err, err
    assert all(p.stat().st_mtime_ns != t for p, t in written.items())
    assert main(args) == 0   # said once: the record is now this run's
    assert "other settings" not in capsys.readouterr().err


def test_the_opening_line_of_a_run_of_whole_images_counts_no_tiles(tiny_teacher_pt, tmp_path,
                                                                    capsys):
    """With --tile 0 the run's first line said "1 image, 1 tile of whole images": an image
    whole is no tile."""
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.zeros((16, 24, 3), np.uint8))
    rc = main(["teacher", str(img), "--out", str(tmp_path / "o"), "--teacher-weights",
               str(tiny_teacher_pt), "--tile", "0", "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 0 and err.splitlines()[0] == (
        f"teacher: 1 image, whole (--tile 0), on cpu in fp32, weights {tiny_teacher_pt.name}"), err
