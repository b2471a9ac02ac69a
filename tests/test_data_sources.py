"""Source detection and parsing on small generated trees."""
from __future__ import annotations

import os
import shlex
import tempfile
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from distill.data.sources import (Sample, SampleReader, SourceError, detect_kind,
                                  resolve_source)

REPO = Path(__file__).resolve().parents[1]


def _png(path: Path, seed: int = 0, h: int = 8, w: int = 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), img)
    return path


def _gopro(root: Path) -> Path:
    g = root / "GOPRO_Large"
    for split, seqs in (("train", ["GOPR0372_07_00", "GOPR0374_11_00"]),
                        ("test", ["GOPR0384_11_00"])):
        for seq in seqs:
            for i in range(3):
                for sub in ("blur", "blur_gamma", "sharp"):
                    _png(g / split / seq / sub / f"{i:06d}.png", i)
    # one sharp frame without a blurred one, one blurred without a sharp one
    _png(g / "train" / "GOPR0372_07_00" / "sharp" / "000099.png")
    _png(g / "train" / "GOPR0374_11_00" / "blur" / "000077.png")
    return g


def test_gopro_parsing(tmp_path):
    g = _gopro(tmp_path)
    with pytest.warns(UserWarning) as rec:
        info = resolve_source(str(g))
    msgs = " ".join(str(w.message) for w in rec)
    assert "000099.png" in msgs and "000077.png" in msgs
    assert info.kind == "gopro" and info.split == "train"
    assert len(info.samples) == 6
    names = [s.name for s in info.samples]
    assert names[0] == "GOPR0372_07_00/000000" and "GOPR0374_11_00/000002" in names
    s = info.samples[0]
    assert s.input == g / "train" / "GOPR0372_07_00" / "blur" / "000000.png"
    assert s.gt == g / "train" / "GOPR0372_07_00" / "sharp" / "000000.png"
    assert s.frame is None
    assert info.unmatched_targets == ["GOPR0372_07_00/sharp/000099.png"]
    assert info.unmatched_inputs == ["GOPR0374_11_00/blur/000077.png"]

    # test split, blur_gamma, explicit kind, and the folder above GOPRO_Large
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        test = resolve_source(f"gopro:{tmp_path}", split="test", gopro_blur="blur_gamma")
    assert test.kind == "gopro" and len(test.samples) == 3
    assert all(s.input.parent.name == "blur_gamma" for s in test.samples)
    assert test.samples[0].name == "GOPR0384_11_00/000000"
    # a single split folder given directly
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        direct = resolve_source(str(g / "test"))
    assert direct.kind == "gopro" and len(direct.samples) == 3
    with pytest.raises(SourceError, match="train and test"):
        resolve_source(str(g), split="val")


def test_gopro_missing_blur_gamma(tmp_path):
    g = tmp_path / "GOPRO_Large"
    for sub in ("blur", "sharp"):
        _png(g / "train" / "SEQ" / sub / "000000.png")
    assert len(resolve_source(str(g)).samples) == 1
    with pytest.raises(SourceError, match="blur_gamma"):
        resolve_source(str(g), gopro_blur="blur_gamma")


def test_gopro_sequence_without_sharp_folder_is_named(tmp_path):
    # A sequence copied without its sharp/ (or its blurred folders) was dropped without a word:
    # a user's GoPro-layout set trained on half its frames, the count the only hint.
    g = tmp_path / "GOPRO_Large"
    for seq in ("GOPR0372_07_00", "GOPR0374_11_00", "GOPR0378_13_00"):
        for sub in ("blur", "blur_gamma", "sharp"):
            _png(g / "train" / seq / sub / "000001.png")
            _png(g / "test" / "GOPR0384_11_00" / sub / "000001.png")
    import shutil
    shutil.rmtree(g / "train" / "GOPR0374_11_00" / "sharp")
    shutil.rmtree(g / "train" / "GOPR0378_13_00" / "blur")
    shutil.rmtree(g / "train" / "GOPR0378_13_00" / "blur_gamma")
    with pytest.warns(UserWarning) as rec:
        info = resolve_source(str(g))
    assert [s.name for s in info.samples] == ["GOPR0372_07_00/000001"]
    msgs = " ".join(str(w.message) for w in rec)
    assert "GOPR0374_11_00" in msgs and "no sharp/" in msgs
    assert "GOPR0378_13_00 (no blur/ or blur_gamma/)" in msgs
    # With none left, the refusal says why rather than only what was expected.
    shutil.rmtree(g / "train" / "GOPR0372_07_00" / "sharp")
    with pytest.raises(SourceError, match=r"GOPR0372_07_00.*no sharp/"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            resolve_source(str(g), split="train")


def test_a_gopro_set_with_no_sharp_folder_at_all_is_said_to_be_read_as_footage(tmp_path):
    # No sequence with its sharp/: not recognised as GoPro, the set was read as footage
    # without a word, train and test, blur/ and blur_gamma/ frames of one scene both.
    g = tmp_path / "GOPRO_Large"
    for split, seq in (("train", "GOPR0372_07_00"), ("test", "GOPR0384_11_00")):
        for sub in ("blur", "blur_gamma"):
            _png(g / split / seq / sub / "000001.png")
    with pytest.warns(UserWarning) as rec:
        info = resolve_source(str(g))
    assert info.kind == "folder" and len(info.samples) == 4
    msgs = " ".join(str(w.message) for w in rec)
    assert ("test/GOPR0384_11_00 (no sharp/), train/GOPR0372_07_00 (no sharp/): read as "
            "a folder of footage without ground truth") in msgs, msgs
    with warnings.catch_warnings():   # footage given as such is read without a word
        warnings.simplefilter("error")
        resolve_source(f"folder:{g}")


@pytest.mark.parametrize("dirs", [("input", "target"), ("blur", "sharp")])
def test_paired_parsing_reports_unmatched(tmp_path, dirs):
    a, b = dirs
    for i in range(4):
        _png(tmp_path / a / f"img{i}.png", i)
        _png(tmp_path / b / f"img{i}.png", i + 10)
    for i in range(7):
        _png(tmp_path / a / f"lonely{i}.png", i)
    _png(tmp_path / b / "orphan.png")
    _png(tmp_path / a / ".hidden.png")      # temp files of atomic writes are never samples
    (tmp_path / a / "notes.txt").write_text("x")
    with pytest.warns(UserWarning) as rec:
        info = resolve_source(str(tmp_path))
    msgs = [str(w.message) for w in rec]
    no_target = [m for m in msgs if "lonely0.png" in m]
    assert no_target and "7" in no_target[0] and "(7 in all)" in no_target[0]
    assert any("orphan.png" in m for m in msgs)
    assert info.kind == "paired"
    assert [s.name for s in info.samples] == [f"img{i}" for i in range(4)]
    assert all(s.gt == tmp_path / b / s.input.name for s in info.samples)
    assert len(info.unmatched_inputs) == 7 and info.unmatched_targets == [f"{b}/orphan.png"]


@pytest.mark.parametrize("blurred, gt", [("blur", "sharp"), ("input", "target")])
def test_half_a_paired_layout_is_said(tmp_path, blurred, gt):
    """A paired folder whose sharp half is missing (not copied, misnamed) was read as footage
    and scored without ground truth, unsaid: `evaluate` gave a sharpness table, no PSNR."""
    from runtime.warn import SharpenWarning
    _png(tmp_path / blurred / "a.png")
    (tmp_path / "Sharp images").mkdir()
    with pytest.warns(SharpenWarning, match=rf"{tmp_path} has {blurred}/ but no {gt}/ beside "
                                            rf"it: read as a folder of footage without ground "
                                            rf"truth; .* {tmp_path / gt}$"):
        info = resolve_source(str(tmp_path))
    assert info.kind == "folder" and [s.gt for s in info.samples] == [None]


def test_paired_matched_by_name_and_extension(tmp_path):
    _png(tmp_path / "input" / "a.png")
    _png(tmp_path / "input" / "a.jpg")
    _png(tmp_path / "target" / "a.png")
    _png(tmp_path / "target" / "b.png")
    with pytest.warns(UserWarning):
        info = resolve_source(f"paired:{tmp_path}")
    assert [(s.input.name, s.gt.name) for s in info.samples] == [("a.png", "a.png")]



def test_paired_blurred_jpegs_pair_with_png_ground_truth(tmp_path):
    """blur/x.jpg beside sharp/x.png was "no sharp image with the same name" for every image,
    though export's --parity-gt pairs them by name. The same name but for the extension pairs
    where that is one input and one target; two candidates stay unpaired, said."""
    for name in ("x.jpg", "y.jpg", "z.jpg", "z.webp"):
        _png(tmp_path / "blur" / name)
    for name in ("x.png", "y.png", "z.png"):
        _png(tmp_path / "sharp" / name)
    with pytest.warns(UserWarning) as rec:
        info = resolve_source(str(tmp_path))
    assert [(s.name, s.input.name, s.gt.name) for s in info.samples] == \
        [("x", "x.jpg", "x.png"), ("y", "y.jpg", "y.png")]
    assert info.unmatched_inputs == ["blur/z.jpg", "blur/z.webp"]
    assert info.unmatched_targets == ["sharp/z.png"]
    assert any("blur/z.jpg" in str(w.message) for w in rec)

def test_paired_split_root(tmp_path):
    for split in ("train", "val", "test"):
        for i in range(2 if split == "train" else 1):
            _png(tmp_path / split / "input" / f"{split}{i}.png", i)
            _png(tmp_path / split / "target" / f"{split}{i}.png", i)
    info = resolve_source(str(tmp_path), split="val")
    assert info.kind == "paired" and info.split == "val"
    assert [s.name for s in info.samples] == ["val0"]
    assert len(resolve_source(str(tmp_path)).samples) == 2
    (tmp_path / "test" / "input" / "test0.png").unlink()
    (tmp_path / "test" / "target" / "test0.png").unlink()
    with pytest.raises(SourceError):
        resolve_source(str(tmp_path), split="test")
    with pytest.raises(SourceError, match="no 'other' split"):
        resolve_source(str(tmp_path), split="other")


def test_paired_split_root_named_blur_sharp_is_not_gopro(tmp_path):
    """train/ val/ holding blur/ + sharp/ looked like two GoPro sequences: every split then
    held every image (bench scored training images as held out)."""
    for split, n in (("train", 3), ("val", 1)):
        for i in range(n):
            _png(tmp_path / split / "blur" / f"{split}{i}.png", i)
            _png(tmp_path / split / "sharp" / f"{split}{i}.png", i)
    info = resolve_source(str(tmp_path), split="val")
    assert info.kind == "paired" and info.split == "val"
    assert [s.name for s in info.samples] == ["val0"]
    assert len(resolve_source(str(tmp_path), split="train").samples) == 3
    # A GoPro split folder given directly stays GoPro.
    g = _gopro(tmp_path / "g")
    with pytest.warns(UserWarning, match="no .* with the same name and (is|are) ignored"):
        assert resolve_source(str(g / "train")).kind == "gopro"   # _gopro's unpaired frames


def test_unmatched_pairs_are_counted_in_the_number_they_take(tmp_path):
    """One unmatched file was reported as "1 sharp images have no blur image ... and are
    ignored"."""
    for i in range(3):
        _png(tmp_path / "blur" / f"b{i}.png", i)
    _png(tmp_path / "sharp" / "b0.png")
    _png(tmp_path / "sharp" / "x.png")
    with pytest.warns(UserWarning) as caught:
        info = resolve_source(str(tmp_path))
    said = [str(w.message) for w in caught]
    assert [s.name for s in info.samples] == ["b0"]
    assert any("2 blur images have no sharp image with the same name and are ignored: "
               in m for m in said), said
    assert any("1 sharp image has no blur image with the same name and is ignored: sharp/x.png"
               in m for m in said), said


def test_plain_folder(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "clip2" / "b.jpg")
    _png(tmp_path / "c.png")
    _png(tmp_path / "c.jpg")
    _png(tmp_path / ".tmp" / "x.png")
    info = resolve_source(str(tmp_path))
    assert info.kind == "folder" and not info.has_gt
    assert [s.name for s in info.samples] == ["a", "c.jpg", "c.png", "clip2/b"]
    assert all(s.gt is None and s.frame is None for s in info.samples)
    # a paired tree read explicitly as a plain folder: every image, no ground truth
    p = tmp_path / "paired"
    _png(p / "input" / "x.png")
    _png(p / "target" / "x.png")
    assert detect_kind(p) == "paired"
    with warnings.catch_warnings():   # both halves there: read as footage on purpose, unsaid
        warnings.simplefilter("error")
        assert [s.name for s in resolve_source(f"folder:{p}").samples] == [
            "input/x", "target/x"]
    # a single image file
    single = resolve_source(str(tmp_path / "a.png"))
    assert single.kind == "folder" and [s.name for s in single.samples] == ["a"]


def test_errors(tmp_path):
    with pytest.raises(SourceError, match="not found"):
        resolve_source(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        resolve_source(str(tmp_path / "empty"))
    with pytest.raises(SourceError, match="unknown data source kind 'flickr'"):
        resolve_source(f"flickr:{tmp_path}")
    with pytest.raises(SourceError, match="not a paired folder"):
        resolve_source(f"paired:{tmp_path}")
    with pytest.raises(SourceError, match="not a GoPro"):
        resolve_source(f"gopro:{tmp_path}")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SourceError):
        resolve_source(str(tmp_path / "notes.txt"))
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(SourceError):
        resolve_source(str(bad))


def write_video(path: Path, n: int = 5, h: int = 32, w: int = 48) -> list[np.ndarray]:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
    assert vw.isOpened()
    frames = []
    for i in range(n):
        f = np.full((h, w, 3), 20 + 40 * i, np.uint8)
        f[:, : 4 + 6 * i] = 250
        vw.write(f)
        frames.append(f)
    vw.release()
    return frames


def test_video(tmp_path):
    path = tmp_path / "shaky clip.avi"
    write_video(path, 5)
    info = resolve_source(str(path))
    assert info.kind == "video"
    assert [s.name for s in info.samples] == [f"shaky clip_{i:06d}" for i in range(5)]
    assert all(s.frame == i and s.gt is None for i, s in enumerate(info.samples))
    assert info.describe() == f"video source {path}: 5 frames, no ground truth"
    reader = SampleReader()
    means = [reader.input(s).mean() for s in info.samples]
    assert np.all(np.diff(means) > 0)           # frames in order
    again = reader.input(info.samples[1])       # going back reopens the video
    assert abs(again.mean() - means[1]) < 1e-6
    reader.close()
    assert resolve_source(f"video:{path}").kind == "video"


def _decode_count(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


def test_a_long_clip_is_indexed_without_decoding_every_frame(tmp_path):
    """Listing a clip's frames decoded all of them to count them: indexing a footage folder of
    long clips took as long as decoding the footage. The container's frame count is taken
    once a seek to its last frame confirms it, so listing costs a small part of a decode."""
    import time
    path = tmp_path / "long.mp4"
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (320, 240))
    assert vw.isOpened()
    # Long enough that decoding it dwarfs the listing's fixed cost (a seek to the last frame):
    # at 300 frames the two were 4x apart, and a busy machine failed the test.
    for i in range(1200):
        vw.write(np.roll(base, 3 * i, axis=1))
    vw.release()
    t = time.perf_counter()
    n = _decode_count(path)
    decode_s = time.perf_counter() - t
    listing_s = []
    for _ in range(3):   # the least of three: another process may take the CPU for a while
        t = time.perf_counter()
        info = resolve_source(str(path))
        listing_s.append(time.perf_counter() - t)
    assert n == 1200 and len(info.samples) == 1200
    assert min(listing_s) < decode_s / 4, (listing_s, decode_s)
    reader = SampleReader()   # the last frame listed is there
    assert reader.input(info.samples[-1]).shape == (240, 320, 3)
    reader.close()


def test_a_clip_whose_header_overstates_its_frames_is_counted_by_decoding(tmp_path):
    """A truncated AVI still says how many frames it had: those past the cut are not listed
    (each would fail to read), as the seek to the reported last frame finds none."""
    full = tmp_path / "full.avi"
    rng = np.random.default_rng(0)
    vw = cv2.VideoWriter(str(full), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(40):
        vw.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    vw.release()
    cut = tmp_path / "cut.avi"
    data = full.read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    cap = cv2.VideoCapture(str(cut))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 40   # what the header still says
    cap.release()
    n = _decode_count(cut)
    assert 0 < n < 40
    assert [s.frame for s in resolve_source(str(cut)).samples] == list(range(n))


def test_a_folder_of_footage_takes_its_clips_frames_beside_its_images(tmp_path):
    """README: `sharpen labels --data footage/` for unlabelled footage. A folder of clips was
    "no images found", and clips beside stills were left out without a word."""
    (tmp_path / "clips").mkdir()
    write_video(tmp_path / "clips" / "walk.avi", 3)
    (tmp_path / "day2").mkdir()
    write_video(tmp_path / "day2" / "walk.avi", 2)      # same file name, another day
    _png(tmp_path / "still.png")
    write_video(tmp_path / "still.avi", 2)              # a still and a clip of one stem
    _png(tmp_path / "z_000001.png")
    write_video(tmp_path / "z.avi", 2)                  # a clip whose frame names are taken
    info = resolve_source(str(tmp_path))
    assert info.kind == "folder" and not info.has_gt
    names = [s.name for s in info.samples]
    assert names == ["clips/walk_000000", "clips/walk_000001", "clips/walk_000002",
                     "day2/walk_000000", "day2/walk_000001",
                     "still.avi_000000", "still.avi_000001", "still.png",
                     "z.avi_000000", "z.avi_000001", "z_000001"]
    assert len(set(names)) == len(names)
    frames = [s for s in info.samples if s.frame is not None]
    assert [s.frame for s in frames[:3]] == [0, 1, 2] and frames[0].input == \
        tmp_path / "clips" / "walk.avi"
    assert info.describe() == (f"folder source {tmp_path}: 2 images and 9 frames of 4 videos, "
                               "no ground truth")
    # A folder of clips alone, and one broken clip among good ones: said, the rest kept.
    (tmp_path / "clips" / "broken.mp4").write_bytes(b"\x00" * 100)
    with pytest.warns(UserWarning, match=r"1 video left out: .*broken.mp4"):
        only = resolve_source(str(tmp_path / "clips"))
    assert [s.name for s in only.samples] == [f"walk_{i:06d}" for i in range(3)]
    assert only.describe().endswith("3 frames of 1 video, no ground truth")


def test_a_clip_over_the_pixel_budget_is_left_out_and_named(tmp_path, monkeypatch):
    """SHARPEN_MAX_PIXELS held only for `sharpen run`: `labels` read a stranger's clip of huge
    frames frame by frame into the teacher. Listing a clip checks its frame size as an image
    file's is checked: a footage folder names the clip and leaves it out, a video is refused."""
    write_video(tmp_path / "big.avi", 2, h=64, w=96)
    write_video(tmp_path / "small.avi", 2)
    monkeypatch.setenv("SHARPEN_MAX_PIXELS", "2000")
    with pytest.warns(UserWarning, match=r"1 video left out: .*big\.avi: its frames are 96x64 "
                                         r"= 6,144 pixels, over the pixel budget of 2,000 "
                                         r"\(raise it with the SHARPEN_MAX_PIXELS"):
        info = resolve_source(str(tmp_path))
    assert [s.name for s in info.samples] == ["small_000000", "small_000001"]
    assert len(info.unopenable_videos) == 1
    with pytest.raises(SourceError, match=r"big\.avi: its frames are 96x64 .* over the pixel"):
        resolve_source(str(tmp_path / "big.avi"))


def test_a_zero_byte_clip_is_called_empty_not_a_codec_to_convert(tmp_path):
    """A dashcam's 0-byte clip (power cut before the first write) was "OpenCV cannot open this
    video (damaged, or in a codec ...: convert it)": there is nothing to convert."""
    write_video(tmp_path / "good.avi", 2)
    (tmp_path / "cut.mp4").write_bytes(b"")
    with pytest.warns(UserWarning) as rec:
        info = resolve_source(str(tmp_path))
    said = " ".join(str(w.message) for w in rec)
    assert f"{tmp_path / 'cut.mp4'}: empty file (0 bytes)" in said, said
    assert "convert" not in said, said
    assert [s.name for s in info.samples] == ["good_000000", "good_000001"]
    with pytest.raises(SourceError, match=r"cut\.mp4: empty file \(0 bytes\)"):
        resolve_source(str(tmp_path / "cut.mp4"))


def test_every_clip_left_out_of_footage_is_named_its_reason_said_once(tmp_path):
    """A footage folder with four broken clips said three and "... (4 in all)": the user could
    not find the fourth to replace. Every clip is named, grouped under its reason."""
    write_video(tmp_path / "good.avi", 2)
    for name in ("a.mp4", "b.mp4", "c.mp4", "d.mp4"):
        (tmp_path / name).write_bytes(b"\x00" * 100)
    (tmp_path / "e.mp4").write_bytes(b"")
    with pytest.warns(UserWarning) as rec:
        resolve_source(str(tmp_path))
    said = " ".join(str(w.message) for w in rec)
    assert "5 videos left out" in said and "in all" not in said, said
    named = ", ".join(str(tmp_path / n) for n in ("a.mp4", "b.mp4", "c.mp4", "d.mp4"))
    assert f"{named}: OpenCV cannot open this video" in said, said
    assert said.count("OpenCV cannot open") == 1, said
    assert f"{tmp_path / 'e.mp4'}: empty file (0 bytes)" in said, said


def test_a_source_of_one_image_says_1_image(tmp_path):
    from distill.images import write_image
    write_image(tmp_path / "a.png", np.zeros((8, 8, 3), np.float32))
    assert resolve_source(str(tmp_path)).describe() == \
        f"folder source {tmp_path}: 1 image, no ground truth"
    from runtime.console import count
    assert [count(n, "frame") for n in (0, 1, 2)] == ["0 frames", "1 frame", "2 frames"]


def test_sources_and_commands_import_without_torch():
    code = ("import sys, argparse\n"
            "import distill.data, distill.data.sources, distill.data.commands as c\n"
            "p = argparse.ArgumentParser(); sub = p.add_subparsers()\n"
            "c.add_commands(sub)\n"
            "a = p.parse_args(['labels', '--data', 'x', '--out', 'y', '--tile', '64'])\n"
            "assert a.tile == 64 and a.overlap is None and a.split is None and a.func\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tempfile.gettempdir(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_sample_is_hashable_and_frozen():
    s = Sample("a", Path("a.png"))
    assert {s: 1}[Sample("a", Path("a.png"))] == 1


def test_embedded_spec(tmp_path, monkeypatch):
    from distill.data import embedded
    calls = []

    def fake_build(root, splits=("train", "val", "test"), **kw):
        calls.append((root, splits))
        for i in range(2):
            _png(root / splits[0] / "input" / f"e{i}.png")
            _png(root / splits[0] / "target" / f"e{i}.png")
        return root

    monkeypatch.setattr(embedded, "build_embedded", fake_build)
    monkeypatch.setattr(embedded, "default_root", lambda: tmp_path / "emb")
    info = resolve_source("embedded", split="val")
    assert info.kind == "embedded" and info.split == "val" and len(info.samples) == 2
    assert calls == [(tmp_path / "emb", ("val",))]
    assert resolve_source(f"embedded:{tmp_path / 'other'}").root == tmp_path / "other"


def test_a_process_waits_for_the_embedded_set_another_builds_in_the_cache(tmp_path):
    """Processes sharing the cache or SHARPEN_DATA (the test suite's workers, on a cache that
    each run makes afresh; two commands started together) each built the same split (about
    25 s for the three), writing the same files at once: the second now waits for the first,
    then finds its stamp."""
    from runtime.cache import cache_lock
    root = tmp_path / "emb"
    code = ("from distill.data.embedded import build_embedded; "
            "build_embedded(splits=('val',), n_dead_leaves=1)")
    with cache_lock(root, lambda msg: None, "building"):
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, "SHARPEN_DATA": str(root)})
        first = proc.stderr.readline()   # a builder that does not wait: its bar, or EOF
    out = first + proc.communicate(timeout=120)[1]
    assert first.startswith("waiting for process ") and str(root) in first, out
    assert proc.returncode == 0 and (root / "val" / "embedded.json").exists(), out


def _label_cache_of_one_frame(tmp_path: Path, data: Path) -> Path:
    """A finished label cache (as `sharpen labels` leaves it) of one frame of a clip `walk`,
    labelled from `data`."""
    import json

    from distill.data.label_cache import write_run_record
    from distill.images import write_image

    cache = tmp_path / "cache"
    img = np.full((16, 16, 3), 0.5, np.float32)
    write_image(cache / "labels" / "walk_000000.png", img)
    write_image(cache / "frames" / "walk_000000.png", img)
    (cache / "manifest.json").write_text(json.dumps({"format": "sharpen-labels/1",
                                                     "entries": {}}))
    write_run_record(cache, complete=True, data=str(data))
    return cache


def test_a_label_cache_given_as_data_is_refused_with_what_to_give(tmp_path):
    """`evaluate --data runs/labels/foot` (or `labels --data` of one) read the cache as a
    folder of footage: the teacher's outputs in labels/ scored as blurred inputs beside the
    saved frames (14 images of a 7-label cache)."""
    import json

    from distill.data.sources import SourceError, resolve_source

    cache = _label_cache_of_one_frame(tmp_path, tmp_path / "footage")
    for spec in (cache, f"folder:{cache}"):
        with pytest.raises(SourceError) as e:
            resolve_source(spec)
        msg = str(e.value)
        assert msg.startswith(f"{cache} is a label cache made by `sharpen labels`"), msg
        assert f"labelled from ({tmp_path / 'footage'})" in msg and \
            f"{cache / 'frames'}" in msg and f"data.labels={cache}" in msg, msg
    assert len(resolve_source(cache / "frames").samples) == 1   # what it suggests works
    (cache / "manifest.json").write_text(json.dumps({"format": "someone-else/2"}))
    assert len(resolve_source(cache).samples) == 2   # another program's manifest.json: a folder


def test_a_label_cache_of_clips_given_to_evaluate_points_at_its_frames_only(tmp_path):
    """`evaluate --data CACHE` of a footage cache of clips said "give the --data it was
    labelled from (footage/) or the video frames it saved": evaluate refuses footage/ in turn
    ("holds only videos"), a hint leading in a circle. `labels` takes clips, so it keeps both."""

    from distill.images import write_image

    footage = tmp_path / "footage"
    footage.mkdir()
    write_video(footage / "walk.avi", 3)
    cache = _label_cache_of_one_frame(tmp_path, footage)
    with pytest.raises(SourceError) as e:
        resolve_source(cache, frames=False)   # as evaluate, bench and the demo read sources
    msg = str(e.value)
    assert "labelled from" not in msg and f"the video frames it saved, {cache / 'frames'}" \
        in msg, msg
    with pytest.raises(SourceError) as e:
        resolve_source(cache)   # as labels reads them: the clips are a source for it
    assert f"labelled from ({footage})" in str(e.value), str(e.value)
    # A still beside the clip: evaluate scores it.
    write_image(footage / "still.png", np.full((16, 16, 3), 0.5, np.float32))
    with pytest.raises(SourceError) as e:
        resolve_source(cache, frames=False)
    assert f"labelled from ({footage})" in str(e.value), str(e.value)


def test_a_paired_folder_of_clips_says_pairs_are_frames(tmp_path):
    """blur/walk.mp4 beside sharp/walk.mp4 (a camera's real pairs, as clips) read "no images in
    blur", as if the folder were empty: the clips are named, and how to pair their frames, by
    the paths the error names (blur/walk.mp4 alone was no file where the user stood)."""
    root = tmp_path / "my pairs"
    for side in ("blur", "sharp"):
        (root / side).mkdir(parents=True)
        (root / side / "walk.mp4").write_bytes(b"\0" * 16)
    with pytest.raises(SourceError) as e:
        resolve_source(str(root))
    sharp = shlex.quote(str(root / "sharp"))
    assert f"no images in {root / 'blur'}: it holds 1 video clip (walk.mp4)" in str(e.value)
    assert (f"ffmpeg -i {shlex.quote(str(root / 'blur' / 'walk.mp4'))} "
            f"{shlex.quote(str(root / 'blur' / 'walk_%05d.png'))} and the same of {sharp}"
            in str(e.value)), str(e.value)


def test_paired_folders_inside_a_folder_read_as_footage_are_named(tmp_path):
    """Restormer's prepared test sets (Datasets/test/GoPro/{input,target}, and HIDE beside it)
    given one folder too high were read as footage, sharp images scored as blurred ones, with
    a warning that named no folder that pairs: the paired folders inside are named now."""
    from runtime.warn import SharpenWarning
    root = tmp_path / "Datasets"
    for i, name in enumerate(("GoPro", "HIDE")):
        for d in ("input", "target"):
            _png(root / "test" / name / d / f"{i}.png", seed=i)
    with pytest.warns(SharpenWarning) as caught:
        resolve_source(str(root))
    said = [str(w.message) for w in caught if "ground-truth folders" in str(w.message)]
    assert len(said) == 1, [str(w.message) for w in caught]
    assert (f"paired folders inside: --data {root / 'test' / 'GoPro'}, "
            f"--data {root / 'test' / 'HIDE'}") in said[0], said[0]


def test_a_folder_named_like_a_data_kind_is_told_to_be_given_as_a_path(tmp_path, monkeypatch):
    """`--data bsd` for a folder called bsd said only "no path given in data source spec
    'bsd'": the word is read as the kind bsd: with no path, and ./bsd is the folder."""
    (tmp_path / "bsd").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SourceError, match=r"for the folder named bsd here give \./bsd"):
        resolve_source("bsd")

