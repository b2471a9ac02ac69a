"""Data sets linked into a data folder (`ln -s /data/gopro data/gopro`, `photos/extra ->
/mnt/photos`) are read like folders: pathlib's rglob (Python < 3.13) skipped linked
subfolders without a word. A link loop ends with each file once; a broken link is named."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from distill.data.corpus import split_photos
from distill.data.sources import resolve_source
from optimize.calibration import CalibrationError, resolve_paths
from runtime.source_base import SourceError
from runtime.sources import open_source
from runtime.walk import glob_files, walk_files

pytestmark = pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt",
                                reason="needs symlinks")


def _png(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), img)
    return path


def _photos_with_linked_folder(tmp_path: Path) -> Path:
    """photos/own/a.png, and photos/extra -> a folder elsewhere holding b.png and c/d.png."""
    photos = tmp_path / "photos"
    _png(photos / "own" / "a.png", 1)
    mnt = tmp_path / "mnt" / "photos"
    _png(mnt / "b.png", 2)
    _png(mnt / "c" / "d.png", 3)
    (photos / "extra").symlink_to(mnt, target_is_directory=True)
    return photos


def _messages(rec) -> str:
    return " | ".join(str(w.message) for w in rec)


def test_the_corpus_reads_the_photos_of_a_linked_subfolder(tmp_path):
    photos = _photos_with_linked_folder(tmp_path)
    found = sorted(p.relative_to(photos).as_posix()
                   for files in split_photos(photos).values() for p in files)
    assert found == ["extra/b.png", "extra/c/d.png", "own/a.png"]


def test_footage_and_paired_folders_read_linked_subfolders(tmp_path):
    photos = _photos_with_linked_folder(tmp_path)
    info = resolve_source(str(photos))
    assert info.kind == "folder"
    assert [s.name for s in info.samples] == ["extra/b", "extra/c/d", "own/a"]
    # A paired set whose halves each link in a day's folder: pairs matched below the links.
    pairs = tmp_path / "pairs"
    for half, seed in (("input", 5), ("target", 6)):
        day = _png(tmp_path / "store" / half / "day1" / "x.png", seed).parent
        _png(pairs / half / "y.png", seed)
        (pairs / half / "day1").symlink_to(day, target_is_directory=True)
    info = resolve_source(str(pairs))
    assert info.kind == "paired"
    assert [s.name for s in info.samples] == ["day1/x", "y"]
    assert all(s.gt is not None and s.gt.is_file() for s in info.samples)


def test_a_gopro_root_linked_in_and_with_linked_sequences_is_read(tmp_path):
    store = tmp_path / "store"
    for i, seq in enumerate(("GOPR0001_00_00", "GOPR0002_00_00")):
        for sub in ("blur", "sharp"):
            _png(store / seq / sub / "000000.png", i)
    train = tmp_path / "gopro" / "GOPRO_Large" / "train"
    train.mkdir(parents=True)
    (train / "GOPR0001_00_00").symlink_to(store / "GOPR0001_00_00", target_is_directory=True)
    (train / "GOPR0002_00_00").symlink_to(store / "GOPR0002_00_00", target_is_directory=True)
    data = tmp_path / "data"
    data.mkdir()
    (data / "gopro").symlink_to(tmp_path / "gopro", target_is_directory=True)
    info = resolve_source(str(data / "gopro"))
    assert info.kind == "gopro"
    assert [s.name for s in info.samples] == ["GOPR0001_00_00/000000", "GOPR0002_00_00/000000"]


def _looped(tmp_path: Path) -> Path:
    """photos/a.png, photos/sub/b.png, a loop photos/sub/back -> .. and a second link to sub."""
    photos = tmp_path / "photos"
    _png(photos / "a.png", 1)
    _png(photos / "sub" / "b.png", 2)
    (photos / "sub" / "back").symlink_to("..", target_is_directory=True)
    (photos / "again").symlink_to("sub", target_is_directory=True)
    return photos


def test_a_link_loop_ends_and_lists_each_image_once(tmp_path):
    photos = _looped(tmp_path)
    assert sorted(p.relative_to(photos).as_posix() for p in walk_files(photos)) == \
        ["a.png", "sub/b.png"]
    assert [s.name for s in resolve_source(str(photos)).samples] == ["a", "sub/b"]
    found = [p for files in split_photos(photos).values() for p in files]
    assert len(found) == 2
    # The quoted '**' glob that `sharpen run` and --calib take: glob.glob went round the loop
    # once per link it could resolve (each image 40 times here).
    pattern = str(photos / "**" / "*.png")
    assert sorted(Path(f).name for f in glob_files(pattern)) == ["a.png", "b.png"]
    assert sorted(p.name for p in open_source(pattern).paths) == ["a.png", "b.png"]
    assert sorted(p.name for p in resolve_paths(pattern)) == ["a.png", "b.png"]


def test_two_links_to_the_same_folder_do_not_walk_forever(tmp_path):
    """Two links to `.` in one folder: glob's '**' walked 2**40 paths (never ended)."""
    photos = tmp_path / "photos"
    _png(photos / "a.png")
    (photos / "x").symlink_to(".", target_is_directory=True)
    (photos / "y").symlink_to(".", target_is_directory=True)
    assert glob_files(str(photos / "**" / "*.png")) == [str(photos / "a.png")]


def test_a_broken_link_is_named_once(tmp_path):
    photos = _photos_with_linked_folder(tmp_path)
    (photos / "gone").symlink_to(tmp_path / "unmounted" / "photos", target_is_directory=True)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        info = resolve_source(str(photos))
    said = [str(w.message) for w in rec if "gone" in str(w.message)]
    assert len(said) == 1, _messages(rec)
    assert f"{photos / 'gone'} -> {tmp_path / 'unmounted' / 'photos'}" in said[0]
    assert "broken link" in said[0] and "missing" in said[0]
    assert len(info.samples) == 3   # the rest is read
    with pytest.warns(UserWarning, match="1 broken link skipped"):
        split_photos(photos)


def test_the_hints_count_images_in_linked_subfolders(tmp_path):
    """A folder of linked subfolders given where a folder's own images are read (calibration,
    a `sharpen run` folder source): the hint to pass '**/*' counts the linked images too."""
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "extra").symlink_to(_photos_with_linked_folder(tmp_path / "t") / "extra",
                                  target_is_directory=True)
    with pytest.raises(CalibrationError, match="subfolders hold 2 image files"):
        resolve_paths(photos)
    with pytest.raises(SourceError, match="subfolders hold 2 image files"):
        open_source(str(photos))
    assert sorted(p.name for p in resolve_paths(str(photos / "**" / "*"))) == ["b.png", "d.png"]


def test_a_folder_reached_directly_and_through_a_link_keeps_its_real_name(tmp_path):
    """The corpus split, its test-folder rule and the label caches are keyed on each photo's
    path: a convenience link above the real folder (photos/kodak -> bench/kodak24) must not
    rename its photos, whichever comes first in the walk. Named through the link, kodak24's
    photos lost their test folder and were split by hash, most of them into training."""
    photos = tmp_path / "photos"
    for i in range(10):
        _png(photos / "bench" / "kodak24" / f"k{i}.png", i)
        _png(photos / "own" / f"o{i}.png", 100 + i)
    (photos / "kodak").symlink_to("bench/kodak24", target_is_directory=True)
    (photos / "bench" / "alias").symlink_to("../own", target_is_directory=True)
    want = sorted([f"bench/kodak24/k{i}.png" for i in range(10)] +
                  [f"own/o{i}.png" for i in range(10)])
    assert sorted(p.relative_to(photos).as_posix() for p in walk_files(photos)) == want
    splits = split_photos(photos)
    assert sorted(p.relative_to(photos).as_posix() for p in splits["test"]) == want[:10]
    assert sorted(p.name for p in open_source(str(photos / "**" / "k*.png")).paths) == \
        [f"k{i}.png" for i in range(10)]
    assert all("kodak24" in f for f in glob_files(str(photos / "**" / "k*.png")))


def test_recursive_globs_without_links_list_what_glob_listed(tmp_path, monkeypatch):
    """Without links glob_files gives glob.glob's files, the same strings (relative ones too):
    `sharpen run` and --calib take the patterns users wrote for glob."""
    import glob
    for rel in ("frames/a/1.png", "frames/2.png", "frames/.h.png", "frames/.t/3.png",
                "x[1]/4.png", "frames/a/b/c/1.png", "z.png"):
        _png(tmp_path / rel)
    monkeypatch.chdir(tmp_path)
    for pattern in ("**/*.png", "frames/**/*.png", "f*/**", "frames/**/1.png", "x[[]1]/**",
                    str(tmp_path / "**" / "*.png"), "frames/*.png", "z.png",
                    # A hidden name written out is matched, as glob matches it: '*' and '**'
                    # alone pass hidden names by.
                    "**/.h*.png", "frames/**/.t/*.png", "**/.*/*.png", "frames/**/.h.png"):
        want = sorted(f for f in glob.glob(pattern, recursive=True) if os.path.isfile(f))
        assert sorted(glob_files(pattern)) == want, pattern
