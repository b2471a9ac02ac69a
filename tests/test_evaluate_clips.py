"""`sharpen evaluate` on a user's own clips (dashcam, drone) without ground truth: frames read
one at a time, sampled with --stride or picked with --frames, scored by the no-reference
measures, a damaged clip named and skipped."""
from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from distill.evaluate import evaluate_fns
from runtime import SharpenWarning


def _clip(path, n=6, size=(48, 40)):
    """An MJPG clip whose frame i is a texture with i bright columns (told apart after
    JPEG)."""
    w, h = size
    rng = np.random.default_rng(0)
    base = (rng.random((h, w, 3)) * 120).astype(np.uint8)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (w, h))
    for i in range(n):
        f = base.copy()
        f[:, : 4 * i] = 250
        vw.write(f)
    vw.release()
    return path


def _bright_columns(img):
    return int(round((img[img.shape[0] // 2].mean(1) > 0.9).sum() / 4))


def sharpen_(x):
    return np.clip(x + 0.5 * (x - cv2.GaussianBlur(x, (5, 5), 1.0)), 0, 1)


def test_a_clip_is_scored_frame_by_frame_at_a_stride(tmp_path):
    clip = _clip(tmp_path / "dash.avi")
    res = evaluate_fns({"id": lambda x: x, "sharp": sharpen_}, str(clip), progress=False,
                       clips=True, stride=2)
    assert res["images"] == 3 and not res["has_gt"]
    assert list(res["per_image"]) == ["dash_000000", "dash_000002", "dash_000004"]
    assert res["clip_frames"] == {f"dash_{i:06d}": [str(clip), i] for i in (0, 2, 4)}
    for name, outs in res["outputs"].items():
        assert _bright_columns(outs["input"]) == res["clip_frames"][name][1]
    for scores in res["per_image"].values():
        assert {"sharpness", "overshoot"} <= set(scores["sharp"])
    assert res["sharp"]["sharpness"] > 1 and res["id"]["sharpness"] == pytest.approx(1)


def test_frames_picks_frame_indices_of_each_clip_and_names_those_past_its_end(tmp_path):
    clip = _clip(tmp_path / "dash.avi")
    with pytest.warns(SharpenWarning, match=r"dash.avi has 6 frames: --frames 9 is past its end"):
        res = evaluate_fns({"id": lambda x: x}, str(clip), progress=False, clips=True,
                           frames=[5, 1, 9])
    assert list(res["per_image"]) == ["dash_000001", "dash_000005"]
    assert [_bright_columns(o["input"]) for o in res["outputs"].values()] == [1, 5]


def test_a_folder_of_clips_skips_a_damaged_one_by_name(tmp_path):
    folder = tmp_path / "footage"
    folder.mkdir()
    _clip(folder / "a.avi", n=3)
    _clip(folder / "b.avi", n=2)
    (folder / "broken.mp4").write_bytes(b"not a video" * 50)
    with pytest.warns(SharpenWarning, match=r"broken.mp4") as rec:
        res = evaluate_fns({"id": lambda x: x}, str(folder), progress=False, clips=True)
    assert list(res["per_image"]) == ["a_000000", "a_000001", "a_000002", "b_000000",
                                      "b_000001"]
    assert any("1 video left out" in str(w.message) for w in rec)


def test_without_clips_the_api_still_scores_images_only(tmp_path):
    clip = _clip(tmp_path / "dash.avi")
    with pytest.raises(ValueError, match="not a video's frames"):
        evaluate_fns({"id": lambda x: x}, str(clip), progress=False)


def test_sharpen_evaluate_on_a_clip_writes_frame_rows_and_the_figure(tmp_path, capsys):
    from sharpen.cli import main
    clip = _clip(tmp_path / "drone.avi", n=5, size=(64, 48))
    out = tmp_path / "eval"
    assert main(["evaluate", "--weights", "fast,teacher", "--data", str(clip), "--stride", "2",
                 "--out", str(out), "--quiet", "--figure-images", "2", "--device", "cpu"]) == 0
    said = capsys.readouterr().out
    assert "verdict per model:" in said and "3 frames of 1 clip" in said, said
    res = json.loads((out / "metrics.json").read_text())
    assert res["images"] == 3 and res["stride"] == 2
    rows = list(csv.DictReader(open(out / "per_image.csv", encoding="utf-8-sig")))
    assert {(r["clip"], r["frame"]) for r in rows} == {(str(clip), str(i)) for i in (0, 2, 4)}
    assert (out / "side_by_side.png").is_file()
    assert res["clip_frames"] == {f"drone_{i:06d}": [str(clip), i] for i in (0, 2, 4)}


def test_stride_and_frames_are_checked(tmp_path, capsys):
    from sharpen.cli import main
    clip = _clip(tmp_path / "drone.avi", n=2)
    assert main(["evaluate", "--weights", "fast", "--data", str(clip), "--stride", "0"]) == 2
    assert "--stride must be >= 1, got 0" in capsys.readouterr().err
    assert main(["evaluate", "--weights", "fast", "--data", str(clip), "--frames", "1,x"]) == 2
    assert "--frames 1,x" in capsys.readouterr().err
    assert main(["evaluate", "--weights", "fast", "--data", str(clip), "--frames", "1",
                 "--stride", "2"]) == 2
    assert "either" in capsys.readouterr().err


def test_without_a_teacher_the_verdict_says_sharper_and_where_it_overshoots_most(tmp_path):
    """A footage engineer who leaves the teacher out (minutes a 1080p frame on a CPU) got no
    verdict line at all: each model's sharpening and its worst frame for halos are said, and
    that the teacher would say which way it sharpens."""
    from distill.evaluate import format_table
    clip = _clip(tmp_path / "dash.avi")
    res = evaluate_fns({"id": lambda x: x, "sharp": sharpen_}, str(clip), progress=False,
                       clips=True)
    worst = max(res["per_image"], key=lambda n: res["per_image"][n]["sharp"]["overshoot"])
    table = format_table(res)
    lines = table.split("verdict per model:\n")[1].splitlines()
    sharp = next(v for v in lines if v.startswith("sharp: "))
    assert sharp.startswith(f"sharp: sharpens ({res['sharp']['sharpness']:.3f}x)"), sharp
    assert f"most on {worst}" in sharp and "teacher" in sharp, sharp
    assert any(v.startswith("id: no sharper than the input (1.000x)") for v in lines), lines


def test_stride_on_a_folder_without_clips_is_said_to_have_no_effect(tmp_path, capsys):
    from distill.images import write_image
    from sharpen.cli import main
    write_image(tmp_path / "a.png", np.random.default_rng(0).random((40, 48, 3)).astype(np.float32))
    assert main(["evaluate", "--weights", "fast", "--data", str(tmp_path / "a.png"),
                 "--stride", "5", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "holds no video clip: --stride applies to a clip's frames; every image was" in err, err


def test_a_cut_clip_is_named_as_damaged_and_its_frames_before_the_cut_scored(tmp_path):
    """A truncated AVI's header still declares its frames; those past the cut were dropped
    without a word, the run exiting 0 as if the clip were whole. Said as `sharpen run` says
    it, listed in "failed" (exit 1)."""
    full = _clip(tmp_path / "full.avi", n=40)
    cut = tmp_path / "cut.avi"
    data = full.read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    with pytest.warns(SharpenWarning, match=r"cut.avi: the video ended after \d+ of the 40 "
                                            r"frames its header declares \(truncated or "
                                            r"damaged file\?\)"):
        res = evaluate_fns({"id": lambda x: x}, str(cut), progress=False, clips=True,
                           stride=5)
    assert 0 < res["images"] < 8 and len(res["failed"]) == 1, res["failed"]
    assert "cut.avi: the video ended after" in res["failed"][0]


def test_sharpen_evaluate_exits_1_naming_the_cut_clip(tmp_path, capsys):
    from sharpen.cli import main
    full = _clip(tmp_path / "full.avi", n=40)
    data = full.read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[:len(data) // 2])
    assert main(["evaluate", "--weights", "fast", "--data", str(tmp_path / "cut.avi"),
                 "--stride", "10", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "cut.avi: the video ended after" in err
    assert "sharpen evaluate: 1 clip cut short (listed above); the rest were evaluated" in err


def test_frames_all_past_every_clips_end_is_refused_naming_the_lengths(tmp_path, capsys):
    """`--frames 100,200` of a 6-frame clip ended in "CLIP: no images", and beside stills in
    "holds no video clip: --frames applies to a clip's frames", though it holds one."""
    from distill.images import write_image
    from sharpen.cli import main
    clip = _clip(tmp_path / "dash.avi")
    assert main(["evaluate", "--weights", "fast", "--data", str(clip), "--frames", "100,200",
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"--frames 100,200: past the end of every clip ({clip} has 6 frames)" in err, err
    # the error alone: a warning saying the same just before it read as two problems
    assert "past its end" not in err, err
    write_image(tmp_path / "still.png",
                np.random.default_rng(0).random((40, 48, 3)).astype(np.float32))
    assert main(["evaluate", "--weights", "fast", "--data", str(tmp_path), "--frames", "100",
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--frames 100: past the end of every clip" in err and "no video clip" not in err, err


def test_a_clip_that_cannot_be_opened_in_a_folder_exits_1(tmp_path, capsys):
    """A folder's unopenable clip was named and the run exited 0, where a cut clip, an
    undecodable frame and `sharpen labels` on the same folder exit 1: a script checking the
    status lost the clip without knowing."""
    from sharpen.cli import main
    folder = tmp_path / "footage"
    folder.mkdir()
    _clip(folder / "a.avi", n=3)
    (folder / "broken.mp4").write_bytes(b"not a video" * 50)
    assert main(["evaluate", "--weights", "fast", "--data", str(folder), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "broken.mp4" in err
    assert "sharpen evaluate: 1 clip left out (listed above); the rest were evaluated" in err, err


def test_stride_is_not_said_to_miss_a_clip_that_limit_took_no_frame_of(tmp_path, capsys):
    """`--stride 5 --limit 1` of stills beside a clip scored a still and said the folder "holds
    no video clip", though --stride had picked the clip's frames --limit then spread over."""
    from distill.images import write_image
    from sharpen.cli import main
    rng = np.random.default_rng(0)
    for name in ("0.png", "1.png"):
        write_image(tmp_path / name, rng.random((40, 48, 3)).astype(np.float32))
    _clip(tmp_path / "z.avi", n=10)
    assert main(["evaluate", "--weights", "fast", "--data", str(tmp_path), "--stride", "5",
                 "--limit", "1", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "no video clip" not in err, err


def test_a_clip_stopped_part_way_resumes_from_its_record_with_the_same_results(tmp_path):
    """Frames recorded by a run stopped part way are not scored again, and the frames left and
    the figure's (spread over the clip, some scored earlier) are read where they are in the
    clip: the results and figure frames equal an uninterrupted run's."""
    from distill.evaluate_journal import ScoreJournal
    clip = _clip(tmp_path / "dash.avi", n=8)
    settings = {"models": {"sharp": ["s", 0, 0]}, "options": {}}

    def run(fn, out):
        return evaluate_fns({"sharp": fn}, str(clip), progress=False, clips=True,
                            keep_outputs=3, journal=ScoreJournal(out, settings))

    (tmp_path / "whole").mkdir()
    (tmp_path / "cut").mkdir()
    whole = run(sharpen_, tmp_path / "whole")
    calls = []

    def stops_at_the_fifth(x):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return sharpen_(x)

    with pytest.raises(KeyboardInterrupt):
        run(stops_at_the_fifth, tmp_path / "cut")
    calls.clear()

    def counted(x):
        calls.append(1)
        return sharpen_(x)

    res = run(counted, tmp_path / "cut")
    # 4 frames left, and the figure's frames that were scored before the stop
    assert len(calls) == 4 + sum(res["clip_frames"][n][1] < 4 for n in res["outputs"])
    assert {k: v for k, v in res.items() if k != "outputs"} == \
        {k: v for k, v in whole.items() if k != "outputs"}
    assert list(res["outputs"]) == list(whole["outputs"])
    for name, outs in res["outputs"].items():
        assert _bright_columns(outs["input"]) == res["clip_frames"][name][1]
        assert np.array_equal(outs["sharp"], whole["outputs"][name]["sharp"])
