"""`sharpen export --calib` on a camera's clips: a video, a folder of clips among images, a
glob; crops spread over the clip's frames, only those read; bad clips named."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")


def _clip(path: Path, n: int, w: int = 48, h: int = 40) -> Path:
    """A clip of `n` frames, frame i a flat grey level of its own (20 + 10 i)."""
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10, (w, h))
    assert vw.isOpened()
    for i in range(n):
        vw.write(np.full((h, w, 3), 20 + 10 * i, np.uint8))
    vw.release()
    return path


def _data(calib, count: int, parity_images=None, said: list | None = None,
          needs_calib: bool = True):
    """The export's calibration data and its warnings (also into `said`, for one that
    raises); `needs_calib` False: an FP32 export's, parity images alone."""
    from optimize.export_data import _calibration_data
    from optimize.export_options import ExportOptions
    from optimize.export_progress import Progress

    o = ExportOptions(calib=calib, calib_count=count, calib_size=32,
                      parity_images=parity_images)
    said = [] if said is None else said
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            data = _calibration_data(o, 8, needs_calib, None, Progress(True), True)
        finally:
            said += [str(w.message) for w in caught]
    return data, said


def test_a_clip_calibrates_on_frames_spread_over_it_and_holds_its_end_out(tmp_path):
    """`--calib clip.mp4` was refused ("a video; ... extract frames first"): a device's
    engineer has clips, not frame folders."""
    clip = _clip(tmp_path / "street.mp4", 20)
    data, said = _data(str(clip), 4)
    # The last fifth of the frames is the parity gate's; the crops come from frames spread
    # over the rest, not from its first four.
    assert data.calib_names == [f"street_{i:06d}" for i in (0, 5, 10, 15)], said
    assert data.held_out == 4 and data.parity.startswith("4 frames held out of --calib")
    levels = sorted(round(float(img.mean()) * 255) for _, img in data.parity_list)
    assert levels == pytest.approx([180, 190, 200, 210], abs=4)
    assert data.crops.shape == (4, 3, 32, 32)
    assert data.calibration["files"] == 1 and data.calibration["images"] == 4


def test_a_folder_of_clips_and_images_calibrates_on_both(tmp_path):
    d = tmp_path / "footage"
    d.mkdir()
    _clip(d / "a.mp4", 10)
    cv2.imwrite(str(d / "b.png"), np.full((40, 48, 3), 99, np.uint8))
    _clip(d / "c.mp4", 10)
    data, said = _data(str(d), 64)
    names = set(data.calib_names)
    assert "b" in names and "a_000000" in names and "c_000005" in names, said
    assert data.calibration["files"] == 3
    # and a glob finds the clips too
    data, _ = _data(str(d / "*"), 64)
    assert "a_000009" in data.calib_names


def test_a_bad_clip_is_named(tmp_path):
    """A clip OpenCV cannot open: alone, the export stops naming it and why; in a folder of
    footage it is skipped by name, as an unreadable image there is."""
    from optimize.calibration import CalibrationError

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(CalibrationError, match=r"--calib.*broken\.mp4.*OpenCV cannot open"):
        _data(str(bad), 4)
    d = tmp_path / "footage"
    d.mkdir()
    _clip(d / "good.mp4", 10)
    (d / "broken.mp4").write_bytes(b"not a video at all" * 100)
    data, said = _data(str(d), 4)
    assert any("skipped" in s and "broken.mp4" in s for s in said), said
    assert all(n.startswith("good_") for n in data.calib_names)


def test_a_clip_as_parity_images_is_judged_on_frames_spread_over_it(tmp_path):
    """--parity-images CLIP: a few frames spread over it, not every full frame of a minute of
    footage held in memory and run through every artifact."""
    from optimize.calibration import PARITY_FRAMES

    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(3):
        cv2.imwrite(str(calib / f"p{i}.png"), np.full((40, 48, 3), 60 * i, np.uint8))
    clip = _clip(tmp_path / "gate.mp4", 20)
    data, said = _data(str(calib), 3, parity_images=str(clip))
    names = [n for n, _ in data.parity_list]
    assert len(names) == PARITY_FRAMES and names[0] == "gate_000000", said
    assert names[-1] == "gate_000019"


def test_the_export_says_it_calibrated_on_a_clips_frames(tmp_path, capsys):
    from optimize.export_data import _calibration_data
    from optimize.export_options import ExportOptions
    from optimize.export_progress import Progress

    clip = _clip(tmp_path / "street.mp4", 5)
    o = ExportOptions(calib=str(clip), calib_count=64, calib_size=32, parity_images=str(clip))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # (the parity images are the calib's: warned)
        _calibration_data(o, 8, True, None, Progress(False), True)
    assert "64 crops of 32x32 from 5 frames (--calib)" in capsys.readouterr().err


def test_a_clip_too_small_for_the_gate_is_named_as_a_clip_once(tmp_path):
    """A 8x6 clip's held-out frames, all under SSIM's window, were warned of frame by frame
    and ended in 'none of the 4 files is a readable image': they were frames of one file.
    (An INT8 export stops first at its calibration crops, which need 16 px: an FP32 one.)"""
    from optimize.calibration import CalibrationError

    clip = _clip(tmp_path / "tiny.mp4", 20, w=8, h=6)
    said = []
    with pytest.raises(CalibrationError) as e:
        _data(str(clip), 4, said=said, needs_calib=False)
    msg = str(e.value)
    assert f"none of the 4 frames of {clip} is a readable image of at least 11x11" in msg, msg
    assert said == [f"skipped: {clip}[frame 16]: 8x6 is smaller than SSIM's 11x11 window, as "
                    "its other frames are"], said


def test_a_one_frame_clip_says_it_has_one_frame_to_hold_out(tmp_path):
    clip = _clip(tmp_path / "still.mp4", 1)
    data, _ = _data(str(clip), 4)
    assert data.parity.endswith("--calib has one frame, none to hold out besides it")


def test_a_glob_matching_nothing_names_clips_too(tmp_path):
    from optimize.calibration import CalibrationError, resolve_paths

    with pytest.raises(CalibrationError, match=r"no images or clips match '.*\*\.mp4'"):
        resolve_paths(str(tmp_path / "*.mp4"))


def test_an_hdr_phone_clip_says_the_calibration_crops_come_out_washed_out(tmp_path):
    """An iPhone's HLG clip as --calib was warned of as 'its frames, and the labels or scores
    made of them': the export makes neither, it calibrates on those frames."""
    import subprocess

    from runtime_fixtures import ffmpeg_or_skip

    ffmpeg = ffmpeg_or_skip("tag a clip as HDR")
    clip = tmp_path / "phone.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-i", str(_clip(tmp_path / "sdr.mp4", 10)),
                    "-c", "copy", "-color_primaries", "bt2020", "-color_trc", "arib-std-b67",
                    "-colorspace", "bt2020nc", "-movflags", "+write_colr", str(clip)],
                   check=True, timeout=60)
    _, said = _data(str(clip), 4)
    hdr = [s for s in said if "is HDR video" in s]
    assert len(hdr) == 1 and "the labels, scores or calibration crops made of them" in hdr[0], said


def test_a_clip_beside_npy_crops_reads_only_frames_crops_can_come_from(tmp_path):
    """With .npy crops among --calib every image was read, to count the arrays' crops: a
    clip's every frame (a minute of 1080p, 45 GB as floats) was held in memory for 4 crops."""
    clip = _clip(tmp_path / "street.mp4", 20)
    np.save(tmp_path / "crops.npy", np.full((2, 3, 40, 48), 0.5, np.float32))
    data, said = _data([str(clip), str(tmp_path / "crops.npy")], 4)
    frames = [n for n in data.calib_names if n.startswith("street_")]
    # the last fifth held out, the crops spread over the other 16 frames
    assert frames == [f"street_{i:06d}" for i in (0, 5, 10, 15)], said
    assert "crops[0]" in data.calib_names and data.crops.shape == (4, 3, 32, 32)


def test_a_folder_with_clips_only_below_it_says_what_to_pass(tmp_path):
    """A camera's dump by day (footage/day1/walk.mp4) said only 'no images or clips in folder':
    the hint counted the images in its subfolders, not the clips it now reads."""
    from optimize.calibration import CalibrationError, resolve_paths

    footage = tmp_path / "footage"
    (footage / "day1").mkdir(parents=True)
    _clip(footage / "day1" / "walk.mp4", 3)
    with pytest.raises(CalibrationError) as e:
        resolve_paths(footage)
    msg = str(e.value)
    assert "its subfolders hold 1 clip, which a folder does not include" in msg, msg
    assert [p.name for p in resolve_paths(str(footage / "**" / "*"))] == ["walk.mp4"]


def test_a_clips_calibration_is_the_same_twice_and_its_record_follows_the_clip(tmp_path):
    """The export keeps an artifact whose crops and parity images digest the same ("up to
    date"): the frames a clip gives must be the same each time, and the report's record of
    the clip must change when the clip does (a frame re-recorded), not when only its time does."""
    import os

    clip = _clip(tmp_path / "street.mp4", 20)
    first, _ = _data(str(clip), 4)
    os.utime(clip, (1, 1))
    again, _ = _data(str(clip), 4)
    assert again.calibration == first.calibration
    assert [n for n, _ in again.parity_list] == [n for n, _ in first.parity_list]
    vw = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"mp4v"), 10, (48, 40))
    for i in range(20):
        vw.write(np.full((40, 48, 3), 20 + 10 * i + (5 if i == 18 else 0), np.uint8))
    vw.release()
    edited, _ = _data(str(clip), 4)
    assert edited.calibration["files_digest"] != first.calibration["files_digest"]


def test_a_held_out_tail_of_frames_and_an_image_is_not_called_frames(tmp_path):
    """The last fifth of a folder of a clip and a photo after it (walk.mp4, z.png) held out
    three frames and the photo: it said 'the last 4 frames' and '4 frames held out'."""
    d = tmp_path / "footage"
    d.mkdir()
    _clip(d / "walk.mp4", 20)
    cv2.imwrite(str(d / "z.png"), np.full((40, 48, 3), 99, np.uint8))
    data, said = _data(str(d), 4)
    assert sorted(n for n, _ in data.parity_list) == ["walk_000017", "walk_000018",
                                                      "walk_000019", "z"], said
    assert data.parity.startswith("4 frames and images held out of --calib"), data.parity


def _found_again(data, tmp_path):
    """The parity images `sharpen runs --same` finds again from what the report records."""
    from distill.exports_same import Export, _parity_images
    settings = {"parity_images": [n for n, _ in data.parity_list],
                "parity_folders": data.parity_folders}
    return _parity_images(Export(tmp_path, "x", {"settings": settings, "results": []}))


def test_a_clips_held_out_frames_are_found_again_by_runs_same(tmp_path):
    """Held out of --calib CLIP, the parity frames' folder was not recorded (parity_folders
    []) and runs --same looked among images only: two exports' INT8 files of other bytes were
    'not recorded', never compared by their outputs."""
    clips = tmp_path / "clips"
    clips.mkdir()
    clip = _clip(clips / "street.mp4", 20)
    data, said = _data(str(clip), 4)
    assert data.parity_folders == [str(clips.resolve())], said
    again = _found_again(data, tmp_path)
    assert [n for n, _ in again] == [n for n, _ in data.parity_list]
    for (_, x), (_, y) in zip(again, data.parity_list):
        np.testing.assert_array_equal(x, y)


def test_the_built_in_parity_photos_are_found_again_blurred_by_runs_same(tmp_path):
    """Without --calib the gate runs on scikit-image's photos blurred, as the student's input
    is; runs --same ran two exports' artifacts on them sharp, so the largest difference of
    their outputs it said was not on the images the gate measured."""
    pytest.importorskip("skimage")
    data, said = _data(None, 4)
    assert data.parity.startswith("built-in sample photos"), said
    again = _found_again(data, tmp_path)
    assert [n for n, _ in again] == [n for n, _ in data.parity_list]
    for (_, x), (_, y) in zip(again, data.parity_list):
        np.testing.assert_array_equal(x, y)


def test_a_clip_given_as_parity_images_is_found_again_by_runs_same(tmp_path):
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(3):
        cv2.imwrite(str(calib / f"p{i}.png"), np.full((40, 48, 3), 60 * i, np.uint8))
    gate = tmp_path / "gate"
    gate.mkdir()
    _clip(gate / "other.mp4", 5)   # beside it, not the one judged on
    clip = _clip(gate / "gate.mp4", 20)
    data, _ = _data(str(calib), 3, parity_images=str(clip))
    again = _found_again(data, tmp_path)
    assert [n for n, _ in again] == [n for n, _ in data.parity_list]
    for (_, x), (_, y) in zip(again, data.parity_list):
        np.testing.assert_array_equal(x, y)


def test_a_clip_is_read_once_for_its_calibration_and_parity_frames(tmp_path, monkeypatch):
    """The held-out parity frames (the clip's end) were read first, then the calibration frames
    before them on a reader of their own: the clip was opened and decoded again from its start
    (1080 frames decoded for a 600-frame clip with one keyframe). Both are read in time order
    on one reader, so no frame is decoded twice."""
    from distill.data import sources

    opened, decoded = [], []
    real_open, real_close = sources.FrameReader._open, sources.FrameReader.close

    def counting_open(self):
        opened.append(self.path.name)
        real_open(self)

    def counting_close(self):
        if self._cap is not None:
            decoded.append(self.decoded + self.seeks)
        real_close(self)

    monkeypatch.setattr(sources.FrameReader, "_open", counting_open)
    monkeypatch.setattr(sources.FrameReader, "close", counting_close)
    clip = _clip(tmp_path / "street.mp4", 20)
    data, said = _data(str(clip), 4)
    assert data.calib_names == [f"street_{i:06d}" for i in (0, 5, 10, 15)], said
    assert data.held_out == 4 and len(data.parity_list) == 4
    assert opened == ["street.mp4"] and sum(decoded) <= 20, (opened, decoded)
