"""`sharpen evaluate`'s numbers on real blur without ground truth: the reference model."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from distill.evaluate import evaluate_fns, format_table
from distill.images import write_image
from distill.metrics import quantise_8bit
from runtime import SharpenWarning

# What a --threads of 0 means, as the range errors say it (the runtimes: README "threads").
ZERO_THREADS = ("0: MKL_NUM_THREADS or else OMP_NUM_THREADS when set, else a CPU limit's count, "
                "else all cores")


@pytest.fixture()
def nogt(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        write_image(tmp_path / "frames" / f"frame{i}.png",
                    rng.random((40, 56, 3)).astype(np.float32))
    return tmp_path / "frames"


def test_reference_stands_in_for_ground_truth(nogt):
    """Without ground truth every other model (and the input) is scored by PSNR to the
    reference's output, per image and as the mean; a model that moves towards it scores higher
    than the input, one that moves elsewhere lower."""
    ref = lambda x: x * 0.8                       # noqa: E731  the "teacher"
    towards = lambda x: x * 0.9                   # noqa: E731  half-way to it
    away = lambda x: np.clip(x * 1.2, 0, 1)       # noqa: E731  its own correction
    res = evaluate_fns({"teacher": ref, "towards": towards, "away": away}, str(nogt),
                       progress=False, reference="teacher")
    assert not res["has_gt"] and res["reference"] == "teacher"
    assert "psnr_to_reference" not in res["teacher"]
    per = res["per_image"]
    assert len(per) == 3
    for name, scores in per.items():
        x = res["outputs"][name]["input"]
        q = quantise_8bit   # outputs are scored as the 8-bit images a user saves
        want = peak_signal_noise_ratio(q(x * 0.9), q(x * 0.8), data_range=1.0)
        assert scores["towards"]["psnr_to_reference"] == pytest.approx(want, abs=1e-3)
    for k in ("input", "towards", "away"):
        assert res[k]["psnr_to_reference"] == pytest.approx(
            np.mean([v[k]["psnr_to_reference"] for v in per.values()]))
    assert res["towards"]["psnr_to_reference"] > res["input"]["psnr_to_reference"] \
        > res["away"]["psnr_to_reference"]
    table = format_table(res)
    assert "PSNR to teacher's output" in table and "sharpness" in table
    # Which way is better: the ground-truth table's PSNR/SSIM need no word, these two did.
    assert ("(higher is better in each: PSNR and SSIM to teacher's output, closer to it; "
            "sharpness, though halos and noise raise it too)") in table.splitlines(), table


def test_no_reference_and_unknown_reference(nogt):
    res = evaluate_fns({"m": lambda x: x}, str(nogt), progress=False)
    assert "reference" not in res
    assert "psnr_to_reference" not in res["per_image"]["frame0"]["m"]
    assert "PSNR to" not in format_table(res)
    assert "(sharpness: higher is sharper, though halos and noise raise it too)" \
        in format_table(res).splitlines()
    with pytest.raises(ValueError, match="reference 'teacher' is not one of the models"):
        evaluate_fns({"m": lambda x: x}, str(nogt), progress=False, reference="teacher")


def test_per_image_sharpness_without_ground_truth(nogt):
    """Without ground truth and without a reference, metrics.json named no image: which frames
    a --limit took, and which of them a model over-sharpened, could not be told."""
    from distill.evaluate import sharpness
    write_image(nogt / "flat.png", np.full((40, 56, 3), 0.5, np.float32))
    res = evaluate_fns({"blur": lambda x: (x + np.roll(x, 1, axis=1)) / 2}, str(nogt),
                       progress=False)
    per = res["per_image"]
    assert set(per) == {"flat", "frame0", "frame1", "frame2"}
    for name in ("frame0", "frame1", "frame2"):
        x = res["outputs"][name]["input"]
        want = sharpness(res["outputs"][name]["blur"]) / sharpness(x)
        assert per[name]["blur"]["sharpness"] == pytest.approx(want)
        assert per[name]["input"]["sharpness"] == 1.0
    # A frame without detail is left out of the ratio, here as in the mean.
    assert per["flat"]["blur"]["sharpness"] is None
    assert res["blur"]["sharpness"] == pytest.approx(
        np.mean([per[n]["blur"]["sharpness"] for n in ("frame0", "frame1", "frame2")]))
    assert res["blur"]["sharpness"] < 1


def test_psnr_of_identical_images_is_capped_without_warning():
    import warnings

    from distill.metrics import psnr
    img = np.random.default_rng(0).random((16, 16, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # skimage's divide-by-zero used to warn here
        assert psnr(img, img) == 100.0   # not inf: it poisoned means and metrics.json
        assert psnr(img, np.clip(img + 0.01, 0, 1)) < 60


def test_psnr_ssim_name_a_channels_first_image_and_warn_of_a_0_255_one():
    """A CxHxW image was scored with its columns as channels, and a [0, 255] float image
    clipped to white scored a few dB, both without a word."""
    from distill.metrics import psnr, ssim
    img = np.random.default_rng(0).random((16, 16, 3))
    for f in (psnr, ssim):
        with pytest.raises(ValueError, match=r"a has shape \(3, 16, 20\), channels first"):
            f(np.zeros((3, 16, 20)), np.zeros((3, 16, 20)))
        with pytest.warns(UserWarning, match="b has mean value .*divide by 255"):
            f(img, img * 255)


def test_split_must_exist_and_a_mismatched_pair_is_skipped_by_name(tmp_path):
    from distill.data.sources import SourceError
    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        for i in range(2):
            img = rng.random((24, 32, 3)).astype(np.float32)
            write_image(tmp_path / split / "target" / f"{split}{i}.png", img)
            write_image(tmp_path / split / "input" / f"{split}{i}.png", img * 0.9)
    # no val split: an error, not the test split in its place
    with pytest.raises(SourceError, match="has no 'val' split"):
        evaluate_fns({"m": lambda x: x}, str(tmp_path), split="val", progress=False)
    write_image(tmp_path / "test" / "target" / "test1.png",
                rng.random((20, 32, 3)).astype(np.float32))
    from runtime import SharpenWarning
    with pytest.warns(SharpenWarning, match=r"skipped: .*test1.png: size 32x20"):   # not a print
        res = evaluate_fns({"m": lambda x: x}, str(tmp_path), split="test", progress=False)
    assert res["images"] == 1 and len(res["failed"]) == 1
    assert "test1.png: size 32x20 differs from its input" in res["failed"][0]


def test_shipped_models_by_name_and_clear_errors(nogt, tmp_path, capsys, monkeypatch):
    import torch

    from distill.checkpoint import CheckpointError, atomic_save, make_checkpoint
    from distill.students import create_student
    from distill.teacher import resolve_weights
    from sharpen.cli import main

    models = tmp_path / "models"
    models.mkdir()
    torch.manual_seed(0)
    st = create_student("fast", width=8)
    atomic_save(make_checkpoint(st, kind="student", arch="fast", arch_args=st.arch_args),
                models / "student-mine.pt")
    monkeypatch.setenv("SHARPEN_MODELS", str(models))
    assert resolve_weights("mine") == models / "student-mine.pt"
    assert resolve_weights("student-mine") == models / "student-mine.pt"
    assert resolve_weights("x/mine.pt") == Path("x/mine.pt")   # a path stays a path
    with pytest.raises(CheckpointError, match="'mien' is neither a file nor a shipped model; "
                                              "shipped students: mine"):
        resolve_weights("mien")
    out = tmp_path / "eval"
    assert main(["evaluate", "--weights", "mine", "--data", str(nogt), "--out", str(out),
                 "--quiet"]) == 0
    assert (out / "metrics.json").is_file()
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for bad in (a_file, a_file / "sub"):   # said before any model runs, not after
        assert main(["evaluate", "--weights", "mine", "--data", str(nogt), "--out", str(bad),
                     "--quiet"]) == 2
        assert f"--out: {a_file} is a file, not a folder" in capsys.readouterr().err
    assert main(["evaluate", "--weights", "mine", "--data", str(nogt), "--out",
                 str(nogt / "eval")]) == 2   # its figure would be read as an image next time
    assert f"--out {nogt / 'eval'} is inside --data {nogt}" in capsys.readouterr().err
    assert main(["evaluate", "--weights", "mine", "--data", str(nogt), "--crop", "5"]) == 2
    assert "--crop 5: SSIM needs at least 11x11 pixels" in capsys.readouterr().err
    # Each named alone, with its value (one line listed all three conditions)
    for flag, value, said in (("--crop", "-5", "--crop must be >= 0 (0 = whole images), got -5"),
                              ("--figure-images", "0", "--figure-images must be >= 1, got 0"),
                              ("--figure-crop", "8", "--figure-crop must be >= 16, got 8")):
        assert main(["evaluate", "--weights", "mine", "--data", str(nogt), flag, value]) == 2
        assert capsys.readouterr().err.strip() == f"sharpen evaluate: error: {said}"
    assert main(["evaluate", "--weights", "mine", "mine", "--data", str(nogt), "--split", "val",
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "given more than once; evaluated once" in err
    assert "has no split folders (train/, val/, test/): --split val does not apply" in err
    assert main(["evaluate", "--weights", "mine", "--data", str(nogt), "--device", "cpu",
                 "--quiet"]) == 0
    if not torch.cuda.is_available():
        assert main(["evaluate", "--weights", "mine", "--data", str(nogt), "--device",
                     "cuda"]) == 2
        assert "--device cuda: " in capsys.readouterr().err


def test_bad_pairs_and_failing_models_are_skipped_by_name_and_numbers_stay_finite(tmp_path):
    """A crop hid pairs of unequal size, a 6x6 image or one model failing on one image ended
    the run (skimage's or torch's message, no file named), an identical pair made every mean
    inf (invalid JSON) and a flat frame made the sharpness ratio 1e5."""
    import json

    rng = np.random.default_rng(2)
    d = tmp_path / "pairs"
    for i in range(3):
        img = rng.random((40, 48, 3)).astype(np.float32)
        write_image(d / "target" / f"p{i}.png", img)
        write_image(d / "input" / f"p{i}.png", img * 0.8)
    write_image(d / "target" / "same.png", np.full((40, 48, 3), 0.5, np.float32))
    write_image(d / "input" / "same.png", np.full((40, 48, 3), 0.5, np.float32))
    write_image(d / "target" / "short.png", rng.random((30, 48, 3)).astype(np.float32))
    write_image(d / "input" / "short.png", rng.random((40, 48, 3)).astype(np.float32))
    write_image(d / "target" / "tiny.png", rng.random((6, 6, 3)).astype(np.float32))
    write_image(d / "input" / "tiny.png", rng.random((6, 6, 3)).astype(np.float32))

    calls = []

    def fragile(x):   # fails on its second image, p1
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory")
        return x

    seen = []
    with pytest.warns(SharpenWarning) as warned:   # each skip is said as it happens, too
        res = evaluate_fns({"m": lambda x: x, "fragile": fragile}, str(d), crop=16,
                           progress=False, keep_outputs=1,
                           rank=lambda o: seen.append(1) or -len(seen))
    said = sorted(str(w.message) for w in warned)
    assert len(said) == 3 and all(m.startswith("skipped: ") for m in said), said
    assert [n for n in ("p1.png", "short.png", "tiny.png") if any(n in m for m in said)] == \
        ["p1.png", "short.png", "tiny.png"], said
    failed = "\n".join(res["failed"])
    assert "short.png: size 48x30 differs from its input" in failed
    assert "tiny.png: 6x6 is smaller than SSIM's 11x11 window" in failed
    assert "p1.png: fragile failed on it: DefaultCPUAllocator" in failed
    assert res["images"] == len(seen) == 3 and len(res["failed"]) == 3
    json.dumps({k: v for k, v in res.items() if k != "outputs"}, allow_nan=False)
    assert res["input"]["psnr"] < 101 and res["flat_images"] == 1
    assert np.isfinite(res["m"]["sharpness"]) and res["m"]["sharpness"] == pytest.approx(1.0)
    assert len(res["outputs"]) == 1   # only what a figure needs is kept
    assert "(3 images of" in format_table(res) and "1 flat image" in format_table(res)


def test_a_video_as_data_says_where_its_frames_can_come_from(tmp_path):
    import cv2

    video = tmp_path / "clip.mp4"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"mp4v"), 10, (32, 24))
    for _ in range(3):
        vw.write(np.full((24, 32, 3), 100, np.uint8))
    vw.release()
    with pytest.raises(ValueError, match=r"evaluate scores images, not a video's frames; "
                                         r"`sharpen labels --data VIDEO --out CACHE`"):
        evaluate_fns({"id": lambda im: im}, str(video))


def test_the_clips_of_a_folder_of_footage_are_named_as_left_out(nogt, capsys):
    """A folder of stills and clips (what `sharpen labels` takes as footage) was scored on its
    stills with the clips left out without a word; a folder of clips only said "no images".
    Said as a SharpenWarning (a `note:` print before, which a program could not filter)."""
    import cv2

    from runtime import SharpenWarning

    clips = nogt / "clips"
    clips.mkdir()
    vw = cv2.VideoWriter(str(clips / "walk.avi"), cv2.VideoWriter.fourcc(*"MJPG"), 10, (32, 24))
    for _ in range(3):
        vw.write(np.full((24, 32, 3), 100, np.uint8))
    vw.release()
    with pytest.warns(SharpenWarning) as rec:
        res = evaluate_fns({"id": lambda im: im}, str(nogt), progress=False)
    assert res["images"] == 3
    said = " ".join(str(w.message) for w in rec)
    assert f"1 video left out ({clips / 'walk.avi'})" in said and "CACHE/frames" in said, said
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError, match=r"holds only videos \(1\): evaluate scores images"):
        evaluate_fns({"id": lambda im: im}, str(clips))


def test_a_refused_run_leaves_no_empty_out_folder(nogt, tmp_path, capsys):
    """`sharpen evaluate --data clip.mp4 --out eval/x` of a clip OpenCV cannot open (or a
    missing --data) was refused after --out was made, leaving an empty folder; one that
    existed stays."""
    from sharpen.cli import main
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not a video" * 50)
    for data in (clip, tmp_path / "missing"):
        out = tmp_path / "eval" / "x"
        assert main(["evaluate", "--weights", "fast", "--data", str(data), "--out", str(out),
                     "--quiet"]) == 2
        assert not out.exists()
    out.mkdir(parents=True)
    assert main(["evaluate", "--weights", "fast", "--data", str(clip), "--out", str(out),
                 "--quiet"]) == 2
    assert out.is_dir()
    capsys.readouterr()


def test_an_artifact_that_failed_its_parity_gate_is_named_when_scored(nogt, tmp_path, capsys):
    """Named with a SharpenWarning, which a program can filter or make an error (a print on
    stderr before); `sharpen evaluate` shows it as a `warning:` line."""
    import json
    import warnings

    from runtime_fixtures import make_onnx_model

    from distill.evaluate import load_model_fn
    from runtime import SharpenWarning
    from runtime.backends import failed_marker
    from sharpen.cli import main

    model = make_onnx_model(tmp_path / "m.onnx")
    failed_marker(model).write_text(json.dumps({"reason": "worst SSIM 0.91 < 0.98"}))
    with pytest.warns(SharpenWarning, match="failed its parity gate at export"):
        load_model_fn(model)
    assert capsys.readouterr().err == ""
    with warnings.catch_warnings():
        warnings.simplefilter("error", SharpenWarning)
        with pytest.raises(SharpenWarning, match="failed its parity gate"):
            load_model_fn(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SharpenWarning)
            load_model_fn(model)
    assert capsys.readouterr().err == ""
    assert main(["evaluate", "--model", str(model), "--data", str(nogt), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count(f"warning: {model} failed its parity gate at export") == 1, err


def test_converted_images_are_sharpen_warnings_shown_as_warning_lines(tmp_path, capsys):
    """A grayscale or RGBA image was converted with a plain UserWarning: a program filtering
    SharpenWarning missed it, and `sharpen evaluate` left it to Python's own display (the
    file:line `UserWarning:` format, or nothing where the process records or filters
    UserWarnings, as pytest does). Now each is named once as a `warning:` line."""
    import cv2

    from runtime_fixtures import make_onnx_model

    from distill.images import read_image
    from sharpen.cli import main

    d = tmp_path / "frames"
    d.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(d / "gray.png"), (rng.random((24, 32)) * 255).astype(np.uint8))
    cv2.imwrite(str(d / "rgba.png"), (rng.random((24, 32, 4)) * 255).astype(np.uint8))
    with pytest.warns(SharpenWarning, match="grayscale image converted to RGB"):
        read_image(d / "gray.png")
    model = make_onnx_model(tmp_path / "m.onnx")
    assert main(["evaluate", "--model", str(model), "--data", str(d), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count(f"warning: {d / 'gray.png'}: grayscale image converted to RGB\n") == 1, err
    assert err.count(f"warning: {d / 'rgba.png'}: alpha channel dropped (RGBA -> RGB)\n") == 1, err
    assert "UserWarning" not in err, err


@pytest.mark.parametrize("scale, returned", [(0.5, "8x8"), (2.0, "32x32")])
def test_a_model_that_changes_the_size_is_named_with_the_image_and_both_sizes(
        tmp_path, capsys, scale, returned):
    """A downscaler ended evaluate with scikit-image's 'Input images must have the same
    dimensions.' (no model, no image); an upscaler's output was cropped and scored."""
    from sharpen.cli import main

    d = tmp_path / "pairs"
    img = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    write_image(d / "target" / "a.png", img)
    write_image(d / "input" / "a.png", img * 0.8)
    from runtime_fixtures import resize_model

    model = resize_model(tmp_path / "resize.onnx", scale)
    assert main(["evaluate", "--model", str(model), "--data", str(d), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == (
        f"sharpen evaluate: error: {model}: the model returned {returned} for the 16x16 image "
        f"{d / 'input' / 'a.png'}: a sharpening model keeps the image's size; one that changes "
        "it is not supported"), err


def test_an_interrupt_keeps_the_images_already_scored(nogt):
    """Ctrl-C after minutes of teacher inference used to print "interrupted" and nothing
    else; the images scored so far are reported, marked as a part of the set. They come with
    the interruption, which goes on: returned, they let a loop over evaluations (the bench's
    real-blur sets) go on to the next one at every Ctrl-C."""
    calls = []

    def stop_at_third(x):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return x * 0.9

    with pytest.raises(KeyboardInterrupt) as stopped:
        evaluate_fns({"m": stop_at_third}, str(nogt), progress=False)
    res = stopped.value.results
    assert res["interrupted"] and res["images"] == 2 and len(res["m"]) >= 1
    assert res["exit_code"] == 130
    from runtime.cli_errors import Terminated   # SIGTERM, as `sharpen` raises it: 143

    def terminated_at_second(x):
        calls.append(1)
        if len(calls) == 5:
            raise Terminated
        return x
    with pytest.raises(Terminated) as stopped:
        evaluate_fns({"m": terminated_at_second}, str(nogt), progress=False)
    assert stopped.value.results["exit_code"] == 143
    assert "(interrupted: a part of the set)" in format_table(res)
    with pytest.raises(KeyboardInterrupt):   # nothing scored: nothing to report
        evaluate_fns({"m": lambda x: (_ for _ in ()).throw(KeyboardInterrupt)}, str(nogt),
                     progress=False)


def _cut_short(monkeypatch):
    """distill.evaluate.evaluate patched to end as a Ctrl-C after the first images leaves
    its result; returns the real one."""
    import distill.evaluate as ev
    real = ev.evaluate

    def cut_short(*a, **k):
        stop = KeyboardInterrupt()
        stop.results = {**real(*a, **k), "interrupted": True}
        raise stop
    monkeypatch.setattr(ev, "evaluate", cut_short)
    return real


def test_an_interrupted_rerun_keeps_the_complete_results(nogt, tmp_path, capsys, monkeypatch):
    """Ctrl-C during a rerun replaced the finished run's metrics.json (12 images) and figure
    with a part of the set."""
    import json

    import torch

    from distill.checkpoint import atomic_save, make_checkpoint
    from distill.students import create_student
    from sharpen.cli import main

    torch.manual_seed(0)
    st = create_student("fast", width=8)
    weights = tmp_path / "student.pt"
    atomic_save(make_checkpoint(st, kind="student", arch="fast", arch_args=st.arch_args), weights)
    out = tmp_path / "eval"
    cmd = ["evaluate", "--weights", str(weights), "--data", str(nogt), "--out", str(out),
           "--quiet"]
    assert main(cmd) == 0
    complete = (out / "metrics.json").read_bytes()
    _cut_short(monkeypatch)
    capsys.readouterr()
    assert main(cmd) == 130
    assert (out / "metrics.json").read_bytes() == complete
    assert json.loads((out / "metrics.partial.json").read_text())["interrupted"] is True
    assert (out / "side_by_side.partial.png").is_file()
    assert "the complete results already in" in capsys.readouterr().err
    (out / "metrics.json").unlink()   # nothing complete to keep: the part is the result
    assert main(cmd) == 130
    assert json.loads((out / "metrics.json").read_text())["interrupted"] is True


def test_a_finished_rerun_removes_the_part_an_interrupted_one_left(nogt, tmp_path, capsys,
                                                                   monkeypatch):
    """After Ctrl-C in a rerun, the next run finished but left metrics.partial.json and
    side_by_side.partial.png beside its complete results: a part of another run, with other
    numbers, read as this one's."""
    import distill.evaluate as ev
    from sharpen.cli import main

    out = tmp_path / "eval"
    cmd = ["evaluate", "--weights", "fast", "--data", str(nogt), "--out", str(out), "--quiet"]
    assert main(cmd) == 0
    real = _cut_short(monkeypatch)
    assert main(cmd) == 130
    assert (out / "metrics.partial.json").is_file()
    monkeypatch.setattr(ev, "evaluate", real)
    assert main(cmd) == 0
    # (and the hidden record of the scores, which a rerun resumes from)
    assert sorted(p.name for p in out.iterdir()) == [".sharpen-evaluate.json", "metrics.json",
                                                     "per_image.csv", "side_by_side.png"]
    assert "metrics.partial.json" in capsys.readouterr().err   # the user is told


def test_an_interrupt_before_any_image_leaves_no_empty_out(nogt, tmp_path, capsys,
                                                          monkeypatch):
    """Ctrl-C while the models loaded, before an image was scored, left the --out folders
    evaluate had just made (new/eval) behind, empty; a refused run already removed its one."""
    import distill.evaluate as ev
    from sharpen.cli import main

    def stopped_early(*a, **k):   # as a Ctrl-C before the first image leaves it: no results
        raise KeyboardInterrupt
    monkeypatch.setattr(ev, "evaluate", stopped_early)
    out = tmp_path / "new" / "eval"
    assert main(["evaluate", "--weights", "fast", "--data", str(nogt), "--out", str(out),
                 "--quiet"]) == 130
    assert capsys.readouterr().err.strip() == "sharpen evaluate: interrupted"
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()   # a folder that was there stays
    assert main(["evaluate", "--weights", "fast", "--data", str(nogt), "--out",
                 str(tmp_path / "kept"), "--quiet"]) == 130
    assert (tmp_path / "kept").is_dir()


def test_the_figure_shows_the_images_a_model_does_worst_on(tmp_path):
    """The figure showed the first images, so the one pair a model made worse (the question a
    user asks of it) was named in the table but never shown."""
    from distill.evaluate import evaluate_fns, least_gain

    rng = np.random.default_rng(0)
    root = tmp_path / "pairs"
    for sub in ("blur", "sharp"):
        (root / sub).mkdir(parents=True)
    for i in range(5):
        sharp = rng.random((48, 48, 3)).astype(np.float32)
        blur = np.clip(sharp + rng.normal(0, 0.05, sharp.shape), 0, 1).astype(np.float32)
        for sub, img in (("blur", blur), ("sharp", sharp)):
            write_image(root / sub / f"p{i}.png", img)

    def hurts_p3(x):   # a model that sharpens nothing and ruins one image
        return x * 0.5 if float(x.mean()) == hurts_p3.mean_of_p3 else x
    from distill.images import read_image
    hurts_p3.mean_of_p3 = float(read_image(root / "blur" / "p3.png").mean())
    res = evaluate_fns({"m": hurts_p3}, str(root), keep_outputs=2, progress=False,
                       rank=least_gain)
    assert list(res["outputs"])[0] == "p3"
    assert least_gain(res["outputs"]["p3"]) < -1


def test_the_figure_title_fits_the_figure(tmp_path):
    """With one model (three columns) `sharpen evaluate --out`'s title, which names the data
    and the columns, ran off both sides of side_by_side.png: cut at both ends."""
    import cv2

    from distill.evaluate import side_by_side

    rng = np.random.default_rng(0)
    img = rng.random((64, 64, 3)).astype(np.float32)
    outputs = {"frame": {"input": img, "student-fast": img, "ground truth": img}}
    title = ("/some/rather/long/path/to/the/data/reds-mini, the 1 image some model gains "
             "least PSNR on, worst first: input | student-fast | ground truth")
    path = side_by_side(outputs, tmp_path / "fig.png", title=title)
    png = cv2.imread(str(path))   # (the figure's PNG has an alpha channel)
    edges = np.concatenate([png[:, :3], png[:, -3:]], axis=1)
    assert edges.min() > 230, "the title (or a crop) touches the figure's left or right edge"


def test_the_blurred_half_of_a_paired_folder_names_the_folder_to_give(tmp_path, capsys):
    """`--data reds-mini/blur` was scored as real blur without ground truth (a sharpness
    ratio, no PSNR) without a word, though reds-mini/sharp held the ground truth beside it."""
    from sharpen.cli import main

    rng = np.random.default_rng(0)
    for side in ("blur", "sharp"):
        write_image(tmp_path / "pairs" / side / "a.png", rng.random((32, 40, 3)).astype(np.float32))
    assert main(["evaluate", "--weights", "fast", "--data", str(tmp_path / "pairs" / "blur"),
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    assert (f"warning: {tmp_path / 'pairs' / 'blur'} is the blurred half of a paired folder: "
            f"--data {tmp_path / 'pairs'} scores against its sharp/ images") in err, err
    assert main(["evaluate", "--weights", "fast", "--data", str(tmp_path / "pairs"),
                 "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_official_style_teacher_weights_with_teacher_config(nogt, tmp_path, capsys):
    """Restormer weights without a config of their own (the official motion_deblurring.pth:
    {'params': state_dict}) could not be scored: evaluate had no --teacher-config. Without
    one they were refused ("neither a teacher nor a student"), though --help says it defaults
    to motion-deblur: they are a teacher, of the named config their tensors fit."""
    import torch

    from distill.restormer import build_restormer
    from sharpen.cli import main
    torch.manual_seed(0)
    official = tmp_path / "motion_deblurring.pth"
    torch.save({"params": build_restormer("tiny").state_dict()}, official)
    argv = ["evaluate", "--weights", str(official), "--data", str(nogt), "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "motion_deblurring" in out and "sharpness" in out
    assert main([*argv, "--teacher-config", "tiny"]) == 0
    # A config that does not fit says which one does.
    assert main([*argv, "--teacher-config", "small"]) == 2
    assert "pass --teacher-config tiny" in capsys.readouterr().err
    # Tensors that are no Restormer's still name both flags.
    torch.save({"params": {"conv.weight": torch.zeros(3, 3, 3, 3)}}, official)
    assert main(argv) == 2
    assert "give --teacher-config motion-deblur" in capsys.readouterr().err


def test_threads_and_provider_reach_the_runtime_as_in_sharpen_run(nogt, tmp_path, capsys):
    """evaluate ran artifacts on all cores with the `auto` provider, with no --threads or
    --provider as `sharpen run` has: a number measured on a device could not be checked under
    the settings the device runs."""
    import onnxruntime as ort
    from runtime_fixtures import make_onnx_model

    from distill.evaluate import load_model_fn
    from sharpen.cli import main

    model = make_onnx_model(tmp_path / "m.onnx")
    runner = load_model_fn(model, threads=3, provider="cpu")
    assert runner.backend.session.get_session_options().intra_op_num_threads == 3
    assert runner.backend.provider == "CPUExecutionProvider"
    argv = ["evaluate", "--model", str(model), "--data", str(nogt), "--quiet"]
    assert main([*argv, "--threads", "1", "--provider", "cpu"]) == 0
    assert "sharpness" in capsys.readouterr().out
    missing = [p for p, full in (("tensorrt", "TensorrtExecutionProvider"),
                                 ("cuda", "CUDAExecutionProvider"))
               if full not in ort.get_available_providers()]
    if missing:   # the provider is asked for, not quietly replaced by another
        assert main([*argv, "--provider", missing[0]]) == 2
        assert f"ONNX Runtime provider {missing[0]!r} is not available in this build" in \
            capsys.readouterr().err
    assert main([*argv, "--threads", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"sharpen evaluate: error: --threads must be >= 0 ({ZERO_THREADS}), "
                           "got -1"), err


def test_threads_above_the_cores_are_warned_of_and_absurd_ones_refused(nogt, tmp_path, capsys):
    """sharpen run warned of more --threads than cores and evaluate, which runs the same
    runtimes, did not; a million threads reached ONNX Runtime, which hung making them."""
    from runtime.host import MAX_THREADS
    from runtime_fixtures import make_onnx_model

    from sharpen.cli import main

    argv = ["evaluate", "--model", str(make_onnx_model(tmp_path / "m.onnx")), "--data",
            str(nogt), "--provider", "cpu", "--quiet"]
    cores = len(os.sched_getaffinity(0))
    assert main([*argv, "--threads", str(cores + 1)]) == 0
    said = [ln for ln in capsys.readouterr().err.splitlines() if "--threads" in ln]
    assert said == [f"warning: --threads {cores + 1} is more than the {cores} CPU cores this "
                    "process may use; the extra threads share cores and usually make "
                    "inference slower"], said
    assert main([*argv, "--threads", str(cores)]) == 0
    assert "--threads" not in capsys.readouterr().err
    top = max(MAX_THREADS, os.cpu_count() or 0)
    assert main([*argv, "--threads", str(10**6)]) == 2
    assert capsys.readouterr().err.strip() == (f"sharpen evaluate: error: --threads must be 0 "
                                               f"to {top} ({ZERO_THREADS}), got 1000000")


def test_threads_set_torchs_threads_for_checkpoints_on_the_cpu(nogt, tmp_path, capsys):
    import torch

    from distill.checkpoint import atomic_save, make_checkpoint
    from distill.students import create_student
    from sharpen.cli import main

    st = create_student("seed")
    ckpt = atomic_save(make_checkpoint(st, kind="student", arch="seed",
                                       arch_args=st.arch_args),
                       tmp_path / "s.pt")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert main(["evaluate", "--weights", str(ckpt), "--data", str(nogt), "--device", "cpu",
                     "--threads", "1", "--provider", "cpu", "--quiet"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert ("warning: --provider applies to .onnx models (ONNX Runtime); --provider cpu has no "
            "effect without one") in capsys.readouterr().err


def test_files_that_are_not_images_are_named_as_run_names_them(nogt, tmp_path, capsys):
    """A notes.txt in a data folder was left out without a word, where `sharpen run` over the
    same folder warned; now one SharpenWarning names the files skipped, footage or pairs."""
    from runtime_fixtures import make_onnx_model

    from runtime.imageio import IMAGE_EXTS
    from sharpen.cli import main

    (nogt / "notes.txt").write_text("shot on the tram")
    with pytest.warns(SharpenWarning, match=r"1 file that is not an image skipped \("
                      + str(nogt / "notes.txt").replace("\\", "\\\\")):
        res = evaluate_fns({"m": lambda x: x}, str(nogt), progress=False)
    assert res["images"] == 3
    pairs = tmp_path / "pairs"
    img = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    write_image(pairs / "target" / "a.png", img)
    write_image(pairs / "input" / "a.png", img * 0.8)
    (pairs / "input" / "README.txt").write_text("how these were made")
    (pairs / "input" / "a.heic").write_bytes(b"\0")
    (pairs / "meta.json").write_text("{}")   # beside input/ and target/: no sample's folder
    model = make_onnx_model(tmp_path / "m.onnx")
    assert main(["evaluate", "--model", str(model), "--data", str(pairs), "--quiet"]) == 0
    err = capsys.readouterr().err
    said = [ln for ln in err.splitlines() if "not images" in ln]
    assert said == [f"warning: {pairs}: 2 files that are not images skipped "
                    f"({pairs / 'input' / 'README.txt'}, {pairs / 'input' / 'a.heic'}); evaluate "
                    f"reads {', '.join(sorted(IMAGE_EXTS))} only"], err


def test_a_run_folder_given_as_weights_names_its_checkpoints(nogt, tmp_path, capsys):
    """`--weights runs/mine` (the run's out= folder) said 'no such checkpoint' though the
    folder was there, and `export --weights`, `resume=` and `init=` named only the folder;
    each now names the checkpoints in it."""
    import torch

    from distill.checkpoint import CheckpointError, atomic_save, make_checkpoint, read_checkpoint
    from distill.students import create_student
    from sharpen.cli import main

    run = tmp_path / "runs" / "mine"
    run.mkdir(parents=True)
    torch.manual_seed(0)
    st = create_student("fast", width=8)
    for name in ("best.pt", "last.pt"):
        atomic_save(make_checkpoint(st, kind="student", arch="fast", arch_args=st.arch_args),
                    run / name)
    assert main(["evaluate", "--weights", str(run), "--data", str(nogt), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"--weights {run}: checkpoint path is a folder, not a file: {run} (give " \
           f"{run / 'best.pt'} or {run / 'last.pt'})" in err, err
    with pytest.raises(CheckpointError, match=r"a folder, not a file: .*mine \(give .*best\.pt"):
        read_checkpoint(run)
    with pytest.raises(CheckpointError, match=r"a folder, not a file: .*runs$"):
        read_checkpoint(run.parent)   # no checkpoint in it: nothing to name


def test_a_runs_checkpoint_is_labelled_after_its_run():
    """A training run's best.pt was the row "best" (and, beside another run's, "a/best"), where
    `sharpen export` names its artifacts after the run: runs/a/best.pt -> a-best."""
    from distill.evaluate import model_labels
    assert model_labels(["runs/fast-mine/best.pt", "models/student-fast.pt"]) == \
        ["fast-mine-best", "student-fast"]
    assert model_labels(["runs/a/best.pt", "runs/b/best.pt", "runs/a/last.pt"]) == \
        ["a-best", "b-best", "a-last"]
    assert model_labels(["runs/a/step500.pt", "runs/b/step500.pt"]) == \
        ["a-step500", "b-step500"]   # snapshot_every's, as export names them
    # exported artifacts keep their file name, which already holds the run
    assert model_labels(["export/fast-mine-best_int8.tflite"]) == ["fast-mine-best_int8.tflite"]


def _result_keys() -> set[str]:
    """The keys evaluate and its command write into the results beside the models' (res[...]
    = ..., e.results[...] = ..., the literal `res` starts from), read from their source."""
    import ast
    keys: set[str] = set()
    for module in ("evaluate.py", "evaluate_command.py"):
        tree = ast.parse((Path(__file__).parents[1] / "distill" / module).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store) and (
                    isinstance(node.value, ast.Name) and node.value.id == "res"
                    or isinstance(node.value, ast.Attribute) and node.value.attr == "results"):
                if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                    keys.add(node.slice.value)
            elif (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                  and node.target.id == "res" and isinstance(node.value, ast.Dict)):
                keys |= {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
    return keys


def test_every_key_the_results_hold_is_reserved_from_model_labels():
    """A model's label is a key of the results beside theirs: RESERVED keeps each result key
    from a checkpoint's stem. Two trials added align and not_held_out each to it, and
    ground_truth_overshoot had never been: models/ground_truth_overshoot.pt's row was written
    over by the ground truth's overshoot."""
    from distill.evaluate import RESERVED, model_labels
    keys = _result_keys()
    assert {"align", "not_held_out", "images", "teacher_tile"} <= keys, keys   # read at all
    assert keys <= RESERVED, sorted(keys - RESERVED)
    for key in sorted(keys):
        assert model_labels([f"models/{key}.pt"]) == [f"models/{key}"], key


def _labelled_clip(tmp_path: Path, teacher: Path) -> Path:
    """A label cache of a 4-frame clip by `teacher` (default tiling), its frames in
    CACHE/frames, as `sharpen labels` leaves footage for evaluate."""
    import cv2

    from sharpen.cli import main
    clip = tmp_path / "clip.avi"
    vw = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 32))
    rng = np.random.default_rng(3)
    for _ in range(4):
        vw.write(cv2.GaussianBlur((rng.random((32, 48, 3)) * 255).astype(np.uint8), (5, 5), 1))
    vw.release()
    cache = tmp_path / "cache"
    assert main(["labels", "--data", str(clip), "--out", str(cache), "--teacher-weights",
                 str(teacher), "--device", "cpu", "--quiet"]) == 0
    assert len(list((cache / "frames").rglob("*.png"))) == 4
    return cache


def test_a_label_caches_frames_take_the_teachers_outputs_from_its_labels(
        tmp_path, tiny_teacher_pt, capsys):
    """`evaluate --weights ... teacher --data CACHE/frames` ran the teacher again on frames whose
    outputs the cache holds (seconds a frame on a CPU): where the labels are provably the
    teacher's asked for (same weights, architecture and tiling, and the frame the very input
    labelled) they are its outputs, and the run says so; the scores are those of running it."""
    import shutil

    import torch

    from distill.checkpoint import atomic_save, make_checkpoint
    from distill.restormer import build_restormer
    from distill.teacher import file_hash
    from sharpen.cli import main
    cache = _labelled_clip(tmp_path, tiny_teacher_pt)
    frames = cache / "frames"
    copy = tmp_path / "copy"   # the same frames outside a cache: the teacher runs on them
    shutil.copytree(frames, copy)
    capsys.readouterr()
    common = ["--weights", "fast", str(tiny_teacher_pt), "--device", "cpu", "--quiet"]
    assert main(["evaluate", *common, "--data", str(copy), "--out", str(tmp_path / "ran")]) == 0
    ran = capsys.readouterr().out
    assert "labels" not in ran, ran
    assert main(["evaluate", *common, "--data", str(frames), "--out", str(tmp_path / "read")]) == 0
    said = capsys.readouterr().out
    assert (f"teacher: its outputs for the 4 images are the labels of {cache} (the same "
            "weights, architecture and tiling made them), not computed again") in said, said
    got, want = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("read", "ran"))
    assert got["teacher_labels"] == {"model": "teacher", "cache": str(cache), "read": 4, "ran": 0,
                                     "made_on": "cpu fp32", "runs_on": "cpu fp32"}
    # Rerun into the same --out: the scores recorded there, the labels' counts still of all 4.
    assert main(["evaluate", *common, "--data", str(frames), "--out", str(tmp_path / "read"),
                 "--figure-images", "1"]) == 0
    assert "4 scored earlier, 0 to go" in capsys.readouterr().err
    again = json.loads((tmp_path / "read" / "metrics.json").read_text())
    assert again["teacher_labels"] == got["teacher_labels"]
    for k in ("input", "student-fast"):   # 16-bit labels: the same scores to a hundredth of a dB
        assert got[k]["psnr_to_reference"] == pytest.approx(want[k]["psnr_to_reference"],
                                                            abs=0.01)
    # A frame changed since it was labelled is no longer the input of its label: run on.
    any_frame = sorted(frames.rglob("*.png"))[0]
    write_image(any_frame, np.zeros((32, 48, 3), np.float32))
    assert main(["evaluate", *common, "--data", str(frames)]) == 0
    assert "outputs for 3 of the 4 images are the labels of" in capsys.readouterr().out
    # Other teacher weights: the labels are not theirs, said with why.
    torch.manual_seed(1)
    other = build_restormer("tiny")
    other_pt = tmp_path / "other-teacher.pt"
    atomic_save(make_checkpoint(other, kind="teacher", arch="restormer",
                                arch_args=other.config.to_dict()), other_pt)
    assert main(["evaluate", "--weights", "fast", str(other_pt), "--device", "cpu", "--quiet",
                 "--data", str(frames)]) == 0
    said = capsys.readouterr().out
    assert (f"note: the labels of {cache} are not other-teacher's outputs (made by weights "
            in said and f"not weights {file_hash(other_pt)} of {other_pt}): it ran on every "
            "image" in said), said
    # Beside a teacher that did make them, given after the other: its outputs are still read.
    assert main(["evaluate", "--weights", str(other_pt), str(tiny_teacher_pt), "--device", "cpu",
                 "--quiet", "--data", str(frames), "--out", str(tmp_path / "two")]) == 0
    said = capsys.readouterr().out
    assert "are the labels of" in said and "it ran on every image" not in said, said
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())["teacher_labels"]
    assert two["model"] != "other-teacher" and two["read"] == 3, two


def _evaluated(frames: Path, limit=None) -> set:
    from distill.evaluate import source_items
    return {Path(inp).resolve() for _, inp, _ in source_items(frames, "test", limit)}


def test_a_label_caches_frames_beyond_limit_are_not_read(tmp_path, tiny_teacher_pt, capsys,
                                                         monkeypatch):
    """`evaluate --data CACHE/frames --limit 2` decoded and hashed every frame of the cache to
    find the labels of the 2 it evaluates (a clip's cache holds thousands): only theirs."""
    import distill.images
    from sharpen.cli import main
    cache = _labelled_clip(tmp_path, tiny_teacher_pt)
    frames = cache / "frames"
    real, decoded = distill.images.decode_image, []

    def counting(path, *a, **kw):   # the real decoder, its files noted
        decoded.append(Path(path).resolve())
        return real(path, *a, **kw)
    monkeypatch.setattr(distill.images, "decode_image", counting)
    capsys.readouterr()
    assert main(["evaluate", "--weights", "fast", str(tiny_teacher_pt), "--device", "cpu",
                 "--quiet", "--data", str(frames), "--limit", "2",
                 "--out", str(tmp_path / "two")]) == 0
    assert "its outputs for the 2 images are the labels of" in capsys.readouterr().out
    frames_read = {p for p in decoded if p.parent == frames.resolve()
                   or frames.resolve() in p.parents}
    assert frames_read == _evaluated(frames, 2) and len(frames_read) == 2, frames_read
    got = json.loads((tmp_path / "two" / "metrics.json").read_text())["teacher_labels"]
    assert got["read"] == 2 and got["ran"] == 0, got


def test_crop_runs_the_teacher_on_the_crops_and_says_why_it_reads_no_label(
        tmp_path, tiny_teacher_pt, capsys):
    """A label is the teacher's output on the whole frame; with --crop every model sees only
    the centre crop, on which the teacher gives another output (its attention spans the whole
    input). The teacher runs on the crops, as on frames of no cache, and the run says why."""
    import shutil

    from sharpen.cli import main
    cache = _labelled_clip(tmp_path, tiny_teacher_pt)
    frames = cache / "frames"
    copy = tmp_path / "copy"
    shutil.copytree(frames, copy)
    common = ["--weights", "fast", str(tiny_teacher_pt), "--device", "cpu", "--quiet",
              "--crop", "24"]
    capsys.readouterr()
    assert main(["evaluate", *common, "--data", str(copy), "--out", str(tmp_path / "ran")]) == 0
    assert main(["evaluate", *common, "--data", str(frames), "--out", str(tmp_path / "crop")]) == 0
    said = capsys.readouterr().out
    assert (f"note: teacher ran on every image, not reading the labels of {cache} (--crop 24: "
            "they are its outputs on the whole frames, cropped, and on a 24 px crop alone, as "
            "every model here sees it, it computes other ones); without --crop it reads them"
            in said), said
    got, want = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("crop", "ran"))
    rec = got["teacher_labels"]
    assert rec["crop"] == 24 and rec["model"] == "teacher" and "read" not in rec, rec
    for k in ("input", "student-fast"):   # the teacher ran on the crops: the same numbers
        assert got[k]["psnr_to_reference"] == want[k]["psnr_to_reference"], k


def _manifest_entries(cache: Path, change) -> None:
    """Each entry of `cache`'s manifest changed in place by `change(entry)`."""
    path = cache / "manifest.json"
    man = json.loads(path.read_text())
    for e in man["entries"].values():
        change(e)
    path.write_text(json.dumps(man))


def test_labels_say_the_device_and_precision_that_made_them(tmp_path, tiny_teacher_pt, capsys):
    """A GPU labels in bf16/fp16 (autocast), not as the FP32 teacher: entries record the device
    and precision, and evaluate, reading labels as the teacher's outputs, says them (in the
    output and metrics.json's teacher_labels), and where they differ from this run's; a cache
    from before the record still reads, its labels made on "unknown"."""
    from distill.data.label_cache import LabelCache
    from sharpen.cli import main
    cache = _labelled_clip(tmp_path, tiny_teacher_pt)
    frames = cache / "frames"
    entries = LabelCache(cache).entries.values()
    assert {(e["teacher_device"], e["teacher_precision"]) for e in entries} == {("cpu", "fp32")}
    common = ["--weights", "fast", str(tiny_teacher_pt), "--device", "cpu", "--quiet",
              "--data", str(frames)]

    def run(out: str) -> tuple[str, dict]:
        capsys.readouterr()
        assert main(["evaluate", *common, "--out", str(tmp_path / out)]) == 0
        said = capsys.readouterr().out
        return said, json.loads((tmp_path / out / "metrics.json").read_text())["teacher_labels"]

    said, rec = run("cpu")
    assert "not computed again (labels made on cpu fp32)" in said, said
    assert rec["made_on"] == "cpu fp32" and rec["read"] == 4, rec
    # Labels a GPU made (this cache's entries as `sharpen labels --device cuda` writes them).
    _manifest_entries(cache, lambda e: e.update(teacher_device="cuda",
                                                teacher_precision="bf16"))
    said, rec = run("gpu")
    assert "not computed again (labels made on cuda bf16; here it runs on cpu fp32)" in said
    assert rec["made_on"] == "cuda bf16" and rec["runs_on"] == "cpu fp32", rec
    assert rec["read"] == 4, rec
    # A cache from before entries recorded them: read still, said unknown.
    _manifest_entries(cache, lambda e: [e.pop(k) for k in ("teacher_device",
                                                           "teacher_precision")])
    said, rec = run("old")
    assert "labels made on an unknown device and precision" in said, said
    assert rec["made_on"] == "unknown" and rec["read"] == 4, rec


def test_crop_with_labels_another_teacher_made_says_they_are_not_its_own(
        tmp_path, tiny_teacher_pt, capsys):
    """With --crop, a teacher whose weights did not make the cache's labels was told
    'without --crop it reads them', which it would not: the note says whose they are. Beside
    it, the teacher that did make them is the one the --crop note names."""
    import torch

    from distill.checkpoint import atomic_save, make_checkpoint
    from distill.restormer import build_restormer
    from sharpen.cli import main
    cache = _labelled_clip(tmp_path, tiny_teacher_pt)
    torch.manual_seed(1)
    other = build_restormer("tiny")
    other_pt = tmp_path / "other-teacher.pt"
    atomic_save(make_checkpoint(other, kind="teacher", arch="restormer",
                                arch_args=other.config.to_dict()), other_pt)
    common = ["--device", "cpu", "--quiet", "--crop", "24", "--data", str(cache / "frames")]
    capsys.readouterr()
    assert main(["evaluate", "--weights", "fast", str(other_pt), *common,
                 "--out", str(tmp_path / "other")]) == 0
    said = capsys.readouterr().out
    assert f"note: the labels of {cache} are not other-teacher's outputs (made by " in said, said
    assert "without --crop it reads them" not in said, said
    assert main(["evaluate", "--weights", str(other_pt), str(tiny_teacher_pt), *common,
                 "--out", str(tmp_path / "two")]) == 0
    said = capsys.readouterr().out
    rec = json.loads((tmp_path / "two" / "metrics.json").read_text())["teacher_labels"]
    assert rec["crop"] == 24 and rec["model"] != "other-teacher", rec
    assert f"ran on every image, not reading the labels of {cache} (--crop 24: " in said, said


def test_gopro_blur_picks_a_gopro_roots_blurred_folder_as_labels_and_training_do(tmp_path,
                                                                                  capsys):
    """`labels --gopro-blur` and training's data.gopro_blur read GoPro's blur_gamma/ images;
    evaluate always read blur/, so a model trained on blur_gamma was scored on other inputs."""
    from sharpen.cli import main

    rng = np.random.default_rng(0)
    gopro = tmp_path / "GOPRO_Large"
    sharp = rng.random((32, 40, 3)).astype(np.float32)
    blurred = {"blur": np.clip(sharp + 0.05, 0, 1), "blur_gamma": np.clip(sharp - 0.2, 0, 1)}
    for folder in ("sharp", *blurred):
        for split in ("train", "test"):
            write_image(gopro / split / "GOPR0384_11_00" / folder / "000001.png",
                        blurred.get(folder, sharp))
    for folder, image in blurred.items():
        out = tmp_path / f"eval-{folder}"
        args = ["--gopro-blur", folder] if folder == "blur_gamma" else []
        assert main(["evaluate", "--weights", "fast", "--data", str(gopro), "--out", str(out),
                     "--quiet", *args]) == 0, capsys.readouterr().err
        said = capsys.readouterr()
        assert "is not a GoPro layout" not in said.err
        res = json.loads((out / "metrics.json").read_text())
        want = peak_signal_noise_ratio(sharp, image.astype(np.float32), data_range=1.0)
        assert res["input"]["psnr"] == pytest.approx(want, abs=0.05), folder
        # Published GoPro tables differ by the folder scored: the results say which it was
        # (neither the table nor metrics.json did).
        assert res["gopro_blur"] == folder
        assert f"(1 image of {gopro}, split test, inputs from {folder}/)" in said.out, said.out
    # Elsewhere the option changes nothing, which was not said.
    one_split = gopro / "test" / "GOPR0384_11_00"
    assert main(["evaluate", "--weights", "fast", "--data", str(one_split), "--out",
                 str(tmp_path / "eval-paired"), "--quiet", "--gopro-blur", "blur_gamma"]) == 0
    err = capsys.readouterr().err
    assert [ln for ln in err.splitlines() if "--gopro-blur" in ln] == [
        f"warning: --gopro-blur blur_gamma is ignored: {one_split} (paired) is not a GoPro "
        "layout (it picks a GoPro sequence's blurred folder)"], err
    with pytest.raises(SystemExit):
        main(["evaluate", "--weights", "fast", "--data", str(gopro), "--gopro-blur", "gamma"])
    assert ("argument --gopro-blur: invalid choice: 'gamma' (choose from 'blur', 'blur_gamma')"
            in capsys.readouterr().err)


def test_evaluating_twice_gives_the_same_numbers_and_records_the_software(nogt, tmp_path,
                                                                          one_thread):
    """Numbers to compare with a colleague's: two runs give the same metrics.json, which names
    the code, library versions (the runtimes' too) and threads behind them (it named none)."""
    import torch

    from distill.checkpoint import atomic_save, make_checkpoint
    from distill.students import create_student
    from runtime.host import library_versions
    from sharpen.cli import main
    torch.manual_seed(0)
    st = create_student("fast", width=8)
    ckpt = tmp_path / "mine.pt"
    atomic_save(make_checkpoint(st, kind="student", arch="fast", arch_args=st.arch_args), ckpt)
    for name in ("a", "b"):
        assert main(["evaluate", "--weights", str(ckpt), "--data", str(nogt), "--out",
                     str(tmp_path / name), "--threads", "1", "--quiet"]) == 0
    a, b = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("a", "b"))
    assert a == b
    env = a["environment"]
    want = library_versions(["torch", "numpy", "onnxruntime"])
    assert {k: env[k] for k in want} == want and env["threads"] == 1, env
    assert env["torch_threads"] == 1 and env["device"] == "cpu" and "sharpen" in env
    assert "environment" not in format_table(a)   # not a model's row


def test_metrics_json_records_the_threads_the_runtimes_took_from_omp_num_threads(
        nogt, tmp_path, monkeypatch, one_thread):
    """Without --threads the runtimes run on OMP_NUM_THREADS's count, which changes an
    artifact's last digits: metrics.json recorded 0 whatever it was, so runs under 1 and 2
    threads had the same record."""
    from runtime_fixtures import make_onnx_model

    from sharpen.cli import main
    onnx = make_onnx_model(tmp_path / "m.onnx")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert main(["evaluate", "--model", str(onnx), "--data", str(nogt), "--out",
                 str(tmp_path / "two"), "--quiet"]) == 0
    env = json.loads((tmp_path / "two" / "metrics.json").read_text())["environment"]
    assert env["threads"] == 2, env
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert main(["evaluate", "--model", str(onnx), "--data", str(nogt), "--out",
                 str(tmp_path / "own"), "--quiet", "--threads", "1"]) == 0
    env = json.loads((tmp_path / "own" / "metrics.json").read_text())["environment"]
    assert env["threads"] == 1, env


def _field_ssim(y8: np.ndarray, out8: np.ndarray) -> float:
    """SSIM as published deblurring tables report it (Wang et al. 2004; BasicSR): scikit-image
    on 8-bit RGB, an 11x11 Gaussian window of sigma 1.5, population covariances."""
    from skimage.metrics import structural_similarity
    return float(structural_similarity(y8, out8, channel_axis=-1, data_range=255,
                                       gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))


def _smooth_pair(seed: int, h: int = 40, w: int = 48) -> tuple[np.ndarray, np.ndarray]:
    import cv2
    rng = np.random.default_rng(seed)
    y8 = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (5, 5), 1.0)
    x8 = cv2.GaussianBlur(y8, (7, 7), 2.0)
    return x8, y8


def test_ssim_is_the_gaussian_window_convention_of_published_tables():
    """ssim used scikit-image's default (7x7 uniform window, sample covariances): 0.001-0.014
    above the Gaussian-window SSIM of published GoPro tables on reds-mini pairs, so a row next
    to Restormer's 0.961 was not comparable."""
    from skimage.metrics import structural_similarity

    from distill.metrics import ssim
    x8, y8 = _smooth_pair(0)
    ours = ssim(x8.astype(np.float32) / 255, y8.astype(np.float32) / 255)
    assert ours == pytest.approx(_field_ssim(y8, x8), abs=1e-6)
    uniform = structural_similarity(y8, x8, channel_axis=-1, data_range=255)
    assert abs(ours - uniform) > 1e-3   # the two conventions do differ on this pair


def _nafnet_ssim_3d(y8: np.ndarray, out8: np.ndarray) -> float:
    """The SSIM of NAFNet's GoPro table (its basicsr/metrics/psnr_ssim.py, calculate_ssim with
    its default ssim3d=True), as that code computes it, on the CPU: an 11x11x11 Gaussian
    (sigma 1.5) over rows, columns and the RGB channels, replicate padding, data range 255.
    It stands in for MATLAB's ssim() on an RGB array (Restormer's evaluate_gopro_hide.m)."""
    import cv2
    import torch
    k = cv2.getGaussianKernel(11, 1.5)
    window = np.outer(k, k.transpose())
    kernel = torch.tensor(np.stack([window * c for c in k], axis=0))
    conv = torch.nn.Conv3d(1, 1, (11, 11, 11), padding=(5, 5, 5), bias=False,
                           padding_mode="replicate").double()
    with torch.no_grad():
        conv.weight[0, 0] = kernel

        def g(x):
            return conv(x[None, None])[0, 0]
        a = torch.tensor(out8.astype(np.float64))
        b = torch.tensor(y8.astype(np.float64))
        c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
        ma, mb = g(a), g(b)
        va, vb, vab = g(a * a) - ma ** 2, g(b * b) - mb ** 2, g(a * b) - ma * mb
        m = ((2 * ma * mb + c1) * (2 * vab + c2)) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2))
    return float(m.mean())


def test_ssim_3d_is_the_ssim_of_published_gopro_tables():
    """Restormer's (MATLAB ssim() on the RGB array) and NAFNet's (calculate_ssim, ssim3d) GoPro
    SSIMs slide the window across the channels too; evaluate's channel-averaged SSIM was
    called theirs, and no option scored theirs."""
    from distill.metrics import ssim, ssim_3d
    for seed in range(2):
        x8, y8 = _smooth_pair(seed)
        ours = ssim_3d(x8.astype(np.float32) / 255, y8.astype(np.float32) / 255)
        assert ours == pytest.approx(_nafnet_ssim_3d(y8, x8), abs=1e-6)   # k/255 in float32
        flat = ssim(x8.astype(np.float32) / 255, y8.astype(np.float32) / 255)
        assert abs(ours - flat) > 1e-3   # the two do differ


def test_evaluate_ssim_3d_scores_and_says_it(tmp_path, capsys):
    """`sharpen evaluate --ssim 3d`: every SSIM (the input's and each model's) is the 3-D one,
    and the table, metrics.json's convention and the record of options say so."""
    from distill.images import write_image
    from sharpen.cli import main
    x8, y8 = _smooth_pair(3, 24, 32)
    for d, img in (("blur", x8), ("sharp", y8)):
        write_image(tmp_path / "pairs" / d / "a.png", img.astype(np.float32) / 255)
    out = tmp_path / "eval"
    assert main(["evaluate", "--weights", "fast", "--data", str(tmp_path / "pairs"), "--out",
                 str(out), "--quiet", "--ssim", "3d"]) == 0, capsys.readouterr().err
    said = capsys.readouterr().out
    res = json.loads((out / "metrics.json").read_text())
    assert res["input"]["ssim"] == pytest.approx(_nafnet_ssim_3d(y8, x8), abs=1e-6)
    assert res["ssim_window"] == "3d"
    assert "3-D" in res["convention"]["ssim"], res["convention"]
    assert "SSIM: an 11x11x11 Gaussian window" in said, said
    # The default stays the channel-averaged SSIM, and a rerun with the other one rescores.
    assert main(["evaluate", "--weights", "fast", "--data", str(tmp_path / "pairs"), "--out",
                 str(out), "--quiet"]) == 0
    res = json.loads((out / "metrics.json").read_text())
    assert res["input"]["ssim"] == pytest.approx(_field_ssim(y8, x8), abs=1e-6)
    with pytest.raises(ValueError, match=r"ssim_window must be one of \['2d', '3d'\]"):
        evaluate_fns({"m": lambda x: x}, str(tmp_path / "pairs"), progress=False,
                     ssim_window="4d")


def test_ground_truth_table_says_how_it_scores(tmp_path):
    """The table's PSNR/SSIM named no colour space, range, window or quantisation: checking
    one pair by hand with scikit-image meant reading the source. Model outputs were scored in
    float, 0.003-0.005 dB above the 8-bit PNG a paper's numbers come from. Now they are
    rounded to 8 bits first, and the numbers match scikit-image on the 8-bit files, whole."""
    from distill.images import write_image
    x8, y8 = _smooth_pair(1, 24, 32)
    for d, img in (("blur", x8), ("sharp", y8)):
        write_image(tmp_path / d / "a.png", img.astype(np.float32) / 255)
    model = lambda x: x * 0.9 + 0.3 / 255   # noqa: E731 - between 8-bit levels
    res = evaluate_fns({"m": model}, str(tmp_path), progress=False)
    out8 = np.clip(np.round((x8.astype(np.float32) / 255 * 0.9 + 0.3 / 255) * 255), 0, 255)
    out8 = out8.astype(np.uint8)
    assert res["m"]["psnr"] == pytest.approx(peak_signal_noise_ratio(y8, out8, data_range=255),
                                             abs=1e-5)   # k/255 in float32
    assert res["m"]["ssim"] == pytest.approx(_field_ssim(y8, out8), abs=1e-6)
    assert res["input"]["psnr"] == pytest.approx(
        peak_signal_noise_ratio(y8, x8, data_range=255), abs=1e-6)
    lines = format_table(res).splitlines()
    assert any(line.startswith("(PSNR/SSIM: RGB, outputs rounded to 8 bits, data range 255, "
                               "whole images, no border crop") for line in lines), lines
    assert any("Gaussian window sigma 1.5" in line for line in lines), lines


def test_metrics_json_and_csv_name_the_convention_each_image_and_sequence(tmp_path, capsys):
    """A paper's table needs the convention in the results file and per-image (per-sequence
    for GoPro) numbers in a form pandas reads; metrics.json had neither a convention nor a
    table, only nested per-image dicts."""
    import csv

    from distill.images import write_image
    from sharpen.cli import main
    root = tmp_path / "GOPRO_Large"
    for i in range(3):
        x8, y8 = _smooth_pair(10 + i, 24, 32)
        seq = f"GOPR038{4 + i // 2}_11_00"
        for d, img in (("blur", x8), ("sharp", y8)):
            write_image(root / "test" / seq / d / f"{i:06d}.png", img.astype(np.float32) / 255)
    student = tmp_path / "s.pt"
    _tiny_student(student)
    out = tmp_path / "out"
    assert main(["evaluate", "--weights", str(student), "--data", str(root), "--quiet",
                 "--out", str(out)]) == 0
    res = json.loads((out / "metrics.json").read_text())
    conv = res["convention"]
    assert "8 bits" in conv["psnr"] and "data range 255" in conv["psnr"]
    assert "gaussian_weights=True" in conv["ssim"] and "mean over images" in conv["mean"]
    with open(out / "per_image.csv", encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["image", "sequence", "model", "psnr", "ssim", "overshoot",
                             "overshoot_beyond_gt"]
    assert {r["sequence"] for r in rows} == {"GOPR0384_11_00", "GOPR0385_11_00"}
    # The ground truth's row holds its overshoot only: what sharpening that frame takes.
    assert {r["model"] for r in rows} == {"input", "s", "ground truth"}
    assert all(r["psnr"] == "" and r["overshoot"] != ""
               for r in rows if r["model"] == "ground truth")
    for model in ("input", "s"):
        mine = [float(r["psnr"]) for r in rows if r["model"] == model]
        assert len(mine) == 3 and np.mean(mine) == pytest.approx(res[model]["psnr"], abs=1e-4)
    assert "per_image.csv" in capsys.readouterr().out


def _tiny_student(path) -> None:
    import torch

    from distill.checkpoint import atomic_save, make_checkpoint
    from distill.students import create_student
    torch.manual_seed(0)
    st = create_student("fast", width=8)
    atomic_save(make_checkpoint(st, kind="student", arch="fast", arch_args=st.arch_args), path)


def test_help_says_how_psnr_ssim_are_computed_and_what_out_writes(capsys):
    """`sharpen evaluate --help` named neither the PSNR/SSIM convention nor per_image.csv: a
    reviewer's first question had no answer where the command is described."""
    from sharpen.cli import main
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "8-bit RGB outputs, data range 255, no border crop" in text, text
    assert "Gaussian window sigma 1.5" in text and "per_image.csv" in text, text


def test_a_partial_restormer_state_dict_is_not_read_as_a_named_config(tmp_path):
    """Weights without a config load as the named Restormer config whose tensors they have
    exactly: a state dict missing a tensor is refused by name, never loaded into a config it
    only partly fits."""
    import torch

    from distill.checkpoint import CheckpointError
    from distill.evaluate import load_model_fn
    from distill.restormer import build_restormer

    sd = build_restormer("tiny").state_dict()
    torch.save(sd, tmp_path / "whole.pth")
    assert load_model_fn(tmp_path / "whole.pth") is not None
    partial = dict(sd)
    partial.pop(next(iter(partial)))
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match="partial.pth is neither a teacher nor a student"):
        load_model_fn(tmp_path / "partial.pth")


def test_a_file_of_no_tensors_is_still_said_to_be_neither_a_teacher_nor_a_student(tmp_path):
    """The check for Restormer's other tasks read the file's state dict unguarded: a .pth with
    no tensors (an optimizer's state, a run's settings) was "has no state dict of tensors"
    where it had been "neither a teacher nor a student", with the --teacher-config that the
    official file takes."""
    import torch

    from distill.checkpoint import CheckpointError
    from distill.evaluate import load_model_fn

    torch.save({"step": 3, "optimizer": {"lr": 0.1}}, tmp_path / "opt.pth")
    with pytest.raises(CheckpointError, match="opt.pth is neither a teacher nor a student"):
        load_model_fn(tmp_path / "opt.pth")


def test_per_image_csv_opens_in_a_spreadsheet_without_running_names_as_formulas(tmp_path,
                                                                                 capsys):
    """per_image.csv had no byte-order mark, so Excel on Windows read `Straße 東京` in the ANSI
    code page (`StraÃŸe`), and wrote images named `=HYPERLINK(...)`, `+1`, `-3_x` or `@SUM` as
    cells a spreadsheet runs as formulas (CSV injection). Names now come behind a `'`; numbers,
    negative ones too, stay numbers."""
    import csv

    from distill.images import write_image
    from sharpen.cli import main
    names = ['=HYPERLINK("x","y")', "+1+2", "-3_frame", "@SUM(A1)", "Straße 東京"]
    for i, name in enumerate(names):
        x8, y8 = _smooth_pair(20 + i, 24, 32)
        for d, img in (("blur", x8), ("sharp", y8)):
            write_image(tmp_path / "pairs" / d / f"{name}.png", img.astype(np.float32) / 255)
    student = tmp_path / "s.pt"
    _tiny_student(student)
    out = tmp_path / "out"
    assert main(["evaluate", "--weights", str(student), "--data", str(tmp_path / "pairs"),
                 "--quiet", "--out", str(out), "--figure-images", "1"]) == 0, capsys.readouterr()
    raw = (out / "per_image.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfimage,"), raw[:20]
    with open(out / "per_image.csv", encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    cells = {r["image"] for r in rows}
    assert cells == {"'" + n for n in names[:4]} | {"Straße 東京"}, cells
    assert all(not c.startswith(("=", "+", "-", "@")) for r in rows for c in r.values()), rows
    assert sum(float(r["psnr"]) > 0 for r in rows if r["psnr"]) == 10, rows
    # metrics.json keeps the names as they are: it is what programs read.
    res = json.loads((out / "metrics.json").read_text())
    assert set(res["per_image"]) == set(names), res["per_image"].keys()


def test_per_image_csv_keeps_negative_scores_numbers_and_escapes_only_text(tmp_path):
    """The formula guard of per_image.csv is for text: a negative score (-0.25) stays a number
    a spreadsheet sums; a name like -inf or -1_0, which Python reads as a float but a
    spreadsheet as a formula, is escaped."""
    import csv

    from distill.evaluate import write_per_image_csv
    res = {"per_image": {n: {"input": {"psnr": 20.0, "gain": -0.25}} for n in ("-inf", "-1_0")}}
    path = write_per_image_csv(res, tmp_path / "per_image.csv")
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["image"], r["gain"]) for r in rows] == [("'-inf", "-0.25"), ("'-1_0", "-0.25")]


@pytest.mark.parametrize("shape", [(40, 48, 3), (11, 13, 3), (37, 29), (64, 96, 3)])
def test_psnr_ssim_without_scikit_image_are_its_numbers(shape, monkeypatch):
    """A device install (the runtime extra) has no scikit-image (about 200 MB with scipy, 2.5-3.4
    s to import here): psnr/ssim then compute the same convention with OpenCV, and must give
    scikit-image's numbers, or a device's table would not be comparable with the dev box's."""
    import sys

    from distill.metrics import psnr, ssim
    rng = np.random.default_rng(sum(shape))
    y8 = rng.integers(0, 256, shape, dtype=np.uint8)
    x8 = np.clip(y8.astype(np.int16) + rng.integers(-40, 41, shape), 0, 255).astype(np.uint8)
    x, y = x8.astype(np.float32) / 255, y8.astype(np.float32) / 255
    field = ssim(x, y), psnr(x, y)
    assert field[0] == pytest.approx(_field_ssim(y8, x8) if len(shape) == 3 else
                                     _field_ssim(y8[..., None], x8[..., None]), abs=1e-6)
    monkeypatch.setitem(sys.modules, "skimage.metrics", None)   # import fails, as not installed
    with pytest.raises(ImportError):
        from skimage.metrics import structural_similarity  # noqa: F401
    assert ssim(x, y) == pytest.approx(field[0], abs=1e-9)
    assert psnr(x, y) == pytest.approx(field[1], abs=1e-9)
    assert ssim(y, y) == 1.0 and psnr(y, y) == 100.0


def test_reference_scores_an_int8_file_against_its_fp32_one_on_footage(nogt, tmp_path, capsys):
    """On footage without ground truth (a device's own clips) the sharpness ratio alone called
    student-fast's INT8 file "sharpens (1.086x)" and its FP32 one "no sharper (0.956x)" on
    HIDE: quantisation noise reads as sharpness. --reference names the file whose output
    stands in for ground truth, and each other model gets its PSNR and SSIM to it, the
    measure the export's parity gate takes."""
    from runtime_fixtures import make_onnx_model, one_op_model

    from sharpen.cli import main

    fp32 = make_onnx_model(tmp_path / "m.onnx")
    # a quantised file's error stood in by a dimmer output (the fixture's own INT8 model
    # quantises 8-bit images losslessly)
    int8 = one_op_model(tmp_path / "m_int8.onnx", "Mul", ["input", "k"], {"k": [0.95]})
    out = tmp_path / "scores"
    argv = ["evaluate", "--model", str(fp32), str(int8), "--data", str(nogt), "--quiet",
            "--threads", "1", "--out", str(out)]
    assert main([*argv, "--reference", str(fp32)]) == 0
    shown = capsys.readouterr().out
    res = json.loads((out / "metrics.json").read_text())
    assert res["reference"] == "m.onnx", res
    to = res["m_int8.onnx"]
    assert 0.5 < to["ssim_to_reference"] < 1 and 10 < to["psnr_to_reference"] < 100, to
    assert "ssim_to_reference" in res["input"], res["input"]
    assert "PSNR to m.onnx's output, SSIM" in shown, shown
    # The verdict gives the distance, and the frame furthest from the reference's output.
    verdict = next(ln for ln in shown.splitlines() if ln.startswith("m_int8.onnx: "))
    worst = min(res["per_image"].items(), key=lambda kv: kv[1]["m_int8.onnx"]["ssim_to_reference"])
    assert (f"SSIM {to['ssim_to_reference']:.4f} to m.onnx's output (the input's "
            f"{res['input']['ssim_to_reference']:.4f}), worst frame "
            f"{worst[1]['m_int8.onnx']['ssim_to_reference']:.4f} ({worst[0]})") in verdict, verdict
    line = next(ln for ln in shown.splitlines() if ln.startswith("m_int8.onnx "))
    assert f"{to['ssim_to_reference']:.4f}" in line, line
    rows = (out / "per_image.csv").read_text().splitlines()
    assert "ssim_to_reference" in rows[0], rows[0]
    # Not one of the models: named, with those it could be.
    assert main([*argv, "--reference", str(tmp_path / "other.onnx")]) == 2
    err = capsys.readouterr().err
    assert "--reference" in err and "other.onnx" in err and "m_int8.onnx" in err, err
    # ... and how to make it one: it is run beside them, not only named
    assert "give it with --model (an exported model) or --weights (a checkpoint)" in err, err


def test_reference_that_is_the_only_model_is_refused_before_it_runs(nogt, tmp_path, capsys):
    """`--model m.onnx --reference m.onnx` (the INT8 file left off) ran the model over every
    frame and printed a table with no verdict: nothing was compared with the reference, and
    nothing said so. Refused before any model loads, naming what to add."""
    from runtime_fixtures import make_onnx_model

    from sharpen.cli import main
    fp32 = str(make_onnx_model(tmp_path / "m.onnx"))
    assert main(["evaluate", "--model", fp32, "--reference", fp32, "--data", str(nogt),
                 "--threads", "1", "--quiet"]) == 2
    captured = capsys.readouterr()
    assert f"--reference {fp32} is the only model given" in captured.err, captured.err
    assert "--model" in captured.err and not captured.out, captured


def test_device_without_checkpoints_is_said_to_apply_to_checkpoints(nogt, tmp_path, capsys):
    """Exported models alone load no torch (a device install has none), so --device is not
    checked against torch's devices there; it was taken without a word instead."""
    from runtime_fixtures import make_onnx_model

    from sharpen.cli import main
    assert main(["evaluate", "--model", str(make_onnx_model(tmp_path / "m.onnx")), "--data",
                 str(nogt), "--device", "cuda", "--threads", "1", "--quiet"]) == 0
    assert ("warning: --device applies to checkpoints (--weights); exported models run on "
            "their runtime (--provider for .onnx)") in capsys.readouterr().err


def test_out_without_matplotlib_runs_no_model_again_for_a_figure_it_cannot_draw(
        nogt, tmp_path, capsys, monkeypatch):
    """A device install has no matplotlib: the same command again after every frame was scored
    (a rerun after a kill) ran the models again on the figure's frames, seconds each on a
    device, for a side_by_side.png it then did not write; and the warning said 'the scores
    are complete' of an interrupted run too."""
    import sys

    from runtime_fixtures import make_onnx_model

    from sharpen.cli import main
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # import fails, as not installed
    out = tmp_path / "scores"
    argv = ["evaluate", "--model", str(make_onnx_model(tmp_path / "m.onnx")), "--data",
            str(nogt), "--threads", "1", "--out", str(out)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert ("warning: --out gets no side_by_side.png: the figure needs matplotlib (pip install "
            "matplotlib); metrics.json and per_image.csv are written") in err, err
    assert (out / "metrics.json").is_file() and not (out / "side_by_side.png").exists()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "scored earlier" in err and "running the models again" not in err, err


def _flat_and_step(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    x = np.full(shape, 0.2, np.float32)
    y = x.copy()
    y[:, shape[1] // 2:] = 0.9
    return x, y


@pytest.mark.parametrize("case", ["smooth", "flat", "flat-step", "one-channel", "four-channel",
                                  "strided"])
def test_ssim_without_scikit_image_on_flat_smooth_and_odd_layouts(case, monkeypatch):
    """Noise alone (the test above) leaves the luminance term's C1 and flat areas' near-zero
    variances barely tried; a device's footage is mostly smooth. The OpenCV fallback gives
    scikit-image's numbers on them too, and on other channel counts and strided views."""
    import sys

    from distill.metrics import ssim
    rng = np.random.default_rng(3)
    if case == "smooth":
        x8, y8 = _smooth_pair(1, 37, 53)
        x, y = x8.astype(np.float32) / 255, y8.astype(np.float32) / 255
    elif case == "flat":
        x, y = np.full((24, 30, 3), 0.2, np.float32), np.full((24, 30, 3), 0.7, np.float32)
    elif case == "flat-step":
        x, y = _flat_and_step((24, 30, 3))
    elif case == "one-channel":
        x, y = rng.random((2, 20, 25, 1)).astype(np.float32)
    elif case == "four-channel":
        x, y = rng.random((2, 20, 25, 4))
    else:
        x, y = rng.random((2, 60, 80, 3))[:, ::2, ::3]
    field = ssim(x, y)
    monkeypatch.setitem(sys.modules, "skimage.metrics", None)   # import fails, as not installed
    assert ssim(x, y) == pytest.approx(field, abs=1e-9)


def test_evaluate_tile_runs_the_teacher_on_whole_images_and_records_it(tmp_path, tiny_teacher_pt,
                                                                      capsys):
    """Published Restormer numbers run whole images; evaluate always tiled the teacher at 512
    px (Gaussian-blended, other outputs on a 1280x720 GoPro frame), with no option and no word
    in metrics.json. `--tile 0` runs whole images, and metrics.json records the tile."""
    from distill.images import write_image
    from sharpen.cli import main
    rng = np.random.default_rng(0)
    for d in ("blur", "sharp"):
        write_image(tmp_path / "pairs" / d / "a.png", rng.random((40, 56, 3)).astype(np.float32))
    common = ["--weights", str(tiny_teacher_pt), "--data", str(tmp_path / "pairs"), "--device",
              "cpu", "--quiet"]
    assert main(["evaluate", *common, "--out", str(tmp_path / "whole"), "--tile", "0"]) == 0
    assert json.loads((tmp_path / "whole" / "metrics.json").read_text())["teacher_tile"] == 0
    assert main(["evaluate", *common, "--out", str(tmp_path / "tiled")]) == 0
    assert json.loads((tmp_path / "tiled" / "metrics.json").read_text())["teacher_tile"] == 512
    # The tile reaches the teacher: 32 px tiles of this 40x56 image give other outputs than
    # the whole image (metrics.json's record alone would not show that it ran them).
    assert main(["evaluate", *common, "--out", str(tmp_path / "small"), "--tile", "32"]) == 0
    scores = [json.loads((tmp_path / d / "metrics.json").read_text())["teacher"]["psnr"]
              for d in ("whole", "small")]
    assert abs(scores[0] - scores[1]) > 1e-5, scores   # 1e-4 dB apart: a random tiny teacher
    capsys.readouterr()
    assert main(["evaluate", *common, "--tile", "-8"]) == 2
    assert "--tile must be >= 0 (0 = whole images), got -8" in capsys.readouterr().err


def test_evaluate_tile_without_a_teacher_is_said_and_rescores_nothing(tmp_path, capsys):
    """--tile tiles the teacher alone: with students only it changed nothing, without a word,
    yet a rerun into the same --out with another --tile scored every image again, saying
    'tile 0 (was 512)' as if the scores depended on it."""
    from distill.images import write_image
    from sharpen.cli import main
    x8, y8 = _smooth_pair(4, 24, 32)
    for d, img in (("blur", x8), ("sharp", y8)):
        write_image(tmp_path / "pairs" / d / "a.png", img.astype(np.float32) / 255)
    common = ["evaluate", "--weights", "fast", "--data", str(tmp_path / "pairs"), "--out",
              str(tmp_path / "eval"), "--quiet"]
    assert main(common) == 0
    capsys.readouterr()
    assert main([*common, "--tile", "0"]) == 0
    err = capsys.readouterr().err
    assert "1 scored earlier, 0 to go" in err, err
    assert "warning: --tile 0 has no effect: it tiles teacher checkpoints" in err, err


def test_evaluate_tile_smaller_than_the_teachers_crops_is_warned(tmp_path, tiny_teacher_pt,
                                                                   capsys):
    """`sharpen teacher --tile 64` and `sharpen labels --tile 64` say what a tile under the
    teacher's training crops costs; evaluate's --tile ran it without a word."""
    from distill.images import write_image
    from sharpen.cli import main
    rng = np.random.default_rng(1)
    for d in ("blur", "sharp"):
        write_image(tmp_path / "pairs" / d / "a.png", rng.random((40, 56, 3)).astype(np.float32))
    assert main(["evaluate", "--weights", str(tiny_teacher_pt), "--data",
                 str(tmp_path / "pairs"), "--device", "cpu", "--quiet", "--tile", "32"]) == 0
    err = capsys.readouterr().err
    assert "--tile 32 gives the teacher 32 px of context per tile" in err, err


def test_evaluate_ssim_3d_without_ground_truth_is_said(tmp_path, capsys):
    """--ssim 3d on images without ground truth: with no reference no SSIM is computed, and
    the option changed nothing without a word; with one, the SSIM to its output was the 3-D
    one, which the table did not say (it said so only against ground truth)."""
    from distill.images import write_image
    from sharpen.cli import main
    x8, _ = _smooth_pair(5, 24, 32)
    write_image(tmp_path / "frames" / "a.png", x8.astype(np.float32) / 255)
    common = ["evaluate", "--data", str(tmp_path / "frames"), "--quiet", "--ssim", "3d"]
    assert main([*common, "--weights", "fast"]) == 0
    said = capsys.readouterr()
    assert "warning: --ssim 3d has no effect: " in said.err, said.err
    assert main([*common, "--weights", "fast", "edge", "--reference", "fast"]) == 0
    said = capsys.readouterr()
    assert "--ssim" not in said.err, said.err
    assert "SSIM to student-fast's output: 3-D (--ssim 3d)" in said.out, said.out


def test_evaluate_refuses_an_unknown_ssim_before_any_model_loads(tmp_path):
    """evaluate(ssim_window=) was checked by evaluate_fns, after every model (a teacher:
    seconds to minutes) had loaded; a misspelt one is refused first now."""
    from distill.evaluate import evaluate
    with pytest.raises(ValueError, match=r"ssim_window must be one of \['2d', '3d'\], got '3D'"):
        evaluate([str(tmp_path / "missing.pt")], str(tmp_path), ssim_window="3D")


def test_a_model_failing_on_an_image_named_with_a_newline_is_said_on_one_line(tmp_path):
    """A model that fails on an upload named `p\\nforged.png`: the skip, in its warning and
    in bench's report.md, printed the newline as it is, a line of its own (the image's
    other messages name it escaped)."""
    from runtime.warn import SharpenWarning

    d = tmp_path / "pairs"
    rng = np.random.default_rng(0)
    for name in ("a.png", "p\nforged.png"):
        img = rng.random((40, 48, 3)).astype(np.float32)
        write_image(d / "target" / name, img)
        write_image(d / "input" / name, img * 0.8)

    def fragile(x):   # fails on the second image, the one with the newline
        fragile.calls = getattr(fragile, "calls", 0) + 1
        if fragile.calls == 2:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory")
        return x

    with pytest.warns(SharpenWarning) as warned:
        res = evaluate_fns({"fragile": fragile}, str(d), crop=16, progress=False)
    said = [str(w.message) for w in warned if "failed on it" in str(w.message)]
    assert len(said) == 1 and "p\\nforged.png" in said[0] and "\n" not in said[0], said
    assert ["\n" in f for f in res["failed"]] == [False], res["failed"]


def test_realblur_scores_say_they_are_not_aligned_as_its_published_ones_are(tmp_path):
    """RealBlur's published PSNR/SSIM align each output to its ground truth first
    (evaluate_RealBlur.py: an ECC homography, the overlap scored); scored here without, a
    paper's RealBlur numbers read lower than the table they were set beside, and neither the
    table nor metrics.json said why."""
    x8, y8 = _smooth_pair(1, 24, 32)
    for d, img in (("blur", x8), ("gt", y8)):
        write_image(tmp_path / "RealBlur" / "scene001" / d / f"{d}_1.png",
                    img.astype(np.float32) / 255)
        write_image(tmp_path / "pairs" / ("sharp" if d == "gt" else d) / "a.png",
                    img.astype(np.float32) / 255)
    listed = tmp_path / "RealBlur" / "RealBlur_J_test_list.txt"
    listed.write_text("scene001/gt/gt_1.png scene001/blur/blur_1.png\n")
    res = evaluate_fns({"m": lambda x: x}, str(listed), progress=False)
    assert "no alignment" in res["convention"]["alignment"], res["convention"]
    said = [line for line in format_table(res).splitlines() if "evaluate_RealBlur.py" in line]
    assert len(said) == 1 and "not aligned" in said[0], format_table(res)
    res = evaluate_fns({"m": lambda x: x}, str(tmp_path / "pairs"), progress=False)
    assert "no alignment" in res["convention"]["alignment"]
    assert "evaluate_RealBlur.py" not in format_table(res)   # said of RealBlur alone


def test_pairs_whose_ground_truth_is_shifted_are_named(tmp_path):
    """Ground truth a few pixels off its blurred input (another crop, a camera pair not
    registered) was scored as it lay: reds-mini's pairs shifted by (3, 2) px read 17.3 dB
    instead of 27 and every model a loss, without a word."""
    import cv2
    for seed in range(3):
        x8, y8 = _smooth_pair(seed, 64, 80)
        moved = cv2.warpAffine(y8, np.float32([[1, 0, 3], [0, 1, 2]]), (80, 64),
                               borderMode=cv2.BORDER_REFLECT)
        for root, gt in (("aligned", y8), ("shifted", moved)):
            write_image(tmp_path / root / "blur" / f"{seed}.png", x8.astype(np.float32) / 255)
            write_image(tmp_path / root / "sharp" / f"{seed}.png", gt.astype(np.float32) / 255)
    with pytest.warns(SharpenWarning, match=r"shifted: the ground truth sits about \+3, \+2 px "
                                            r"from its blurred input \(median of 3 pairs"):
        evaluate_fns({"m": lambda x: x}, str(tmp_path / "shifted"), progress=False)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate_fns({"m": lambda x: x}, str(tmp_path / "aligned"), progress=False)


def test_blur_that_moves_each_pair_its_own_way_is_not_called_an_offset(tmp_path):
    """The project's own shake blur moves each pair's phase-correlation peak by up to 13 px,
    each its own way: `evaluate --data runs/corpus --split test --limit 5` (synthetic blur,
    pairs exactly aligned) warned its ground truth sat +3 px off, from the median of 5 such
    peaks. A crop or registration error moves every pair alike; only that is said."""
    import warnings

    import cv2

    from distill.data.blur import apply_kernel, camera_shake_kernel
    for seed in (1, 2, 6):   # peaks at about (3, 2), (8, 6), (3, 4): a median of (3, 4)
        rng = np.random.default_rng(seed)
        y = cv2.GaussianBlur(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8), (5, 5), 1.0)
        y = y.astype(np.float32) / 255
        x = apply_kernel(y, camera_shake_kernel(rng, (15, 21)))
        write_image(tmp_path / "blur" / f"{seed}.png", x)
        write_image(tmp_path / "sharp" / f"{seed}.png", y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate_fns({"m": lambda x: x}, str(tmp_path), progress=False)
