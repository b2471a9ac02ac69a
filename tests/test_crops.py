"""Aligned training crops: identical augmentation of input, target and ground truth."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from distill.data.crops import (CropDataset, WholeImageDataset, pairs_from_labels,
                                pairs_from_source)
from distill.data.sources import resolve_source
from distill.images import ImageReadError, read_image, write_image


def _img(path: Path, arr: np.ndarray) -> Path:
    write_image(path, arr, bits=16)
    return path


def _pattern(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([yy / h, xx / w, rng.random((h, w))], axis=-1)
    return (0.1 + 0.6 * base).astype(np.float32)


@pytest.fixture
def same_triplet(tmp_path):
    arr = _pattern(50, 70)
    return [(_img(tmp_path / "in.png", arr), _img(tmp_path / "tg.png", arr),
             _img(tmp_path / "gt.png", arr))]


def test_identical_images_give_identical_crops(same_triplet):
    ds = CropDataset(same_triplet, crop=32, flips=True, rot90=True, brightness=0.3, seed=1,
                     length=64)
    seen = set()
    for i in range(len(ds)):
        s = ds[i]
        assert s["input"].shape == (3, 32, 32) and s["input"].dtype == torch.float32
        assert torch.equal(s["input"], s["target"]) and torch.equal(s["input"], s["gt"])
        seen.add(s["input"].numpy().tobytes())
    assert len(seen) > 32   # crops, flips, rotations and brightness really vary


def test_related_images_stay_aligned(tmp_path):
    """target = 0.5 * input, gt = input[::-1] of a full-size window: every geometric op must
    hit all three the same way."""
    a = _pattern(40, 60, seed=3)
    items = [(_img(tmp_path / "a.png", a), _img(tmp_path / "b.png", 0.5 * a),
              _img(tmp_path / "c.png", 1.0 - a))]
    ds = CropDataset(items, crop=24, flips=True, rot90=True, brightness=0.0, length=40)
    for i in range(len(ds)):
        s = ds[i]
        np.testing.assert_allclose(s["target"].numpy(), 0.5 * s["input"].numpy(), atol=1e-4)
        np.testing.assert_allclose(s["gt"].numpy(), 1.0 - s["input"].numpy(), atol=1e-4)


def test_crop_is_a_window_and_rotations_happen(tmp_path):
    a = _pattern(16, 16, seed=5)
    items = [(_img(tmp_path / "a.png", a), _img(tmp_path / "b.png", a))]
    ref = read_image(items[0][0])
    ds = CropDataset(items, crop=16, flips=False, rot90=True, brightness=0.0, length=40)
    ks = set()
    for i in range(len(ds)):
        out = ds[i]["input"].numpy().transpose(1, 2, 0)
        match = [k for k in range(4) if np.array_equal(out, np.rot90(ref, k, axes=(0, 1)))]
        assert match, "not a rotation of the image"
        ks.add(match[0])
    assert ks == {0, 1, 2, 3}


def test_brightness_applied_identically(tmp_path):
    items = [(_img(tmp_path / "a.png", np.full((30, 30, 3), 0.4, np.float32)),
              _img(tmp_path / "b.png", np.full((30, 30, 3), 0.6, np.float32)),
              _img(tmp_path / "c.png", np.full((30, 30, 3), 0.2, np.float32)))]
    ds = CropDataset(items, crop=16, brightness=0.5, length=30, seed=7)
    factors = []
    for i in range(len(ds)):
        s = ds[i]
        f_in = s["input"].mean().item() / 0.4
        f_tg = s["target"].mean().item() / 0.6
        f_gt = s["gt"].mean().item() / 0.2
        assert abs(f_in - f_tg) < 1e-3 and abs(f_in - f_gt) < 1e-3
        assert 0.5 - 1e-3 <= f_in <= 1.5 + 1e-3
        factors.append(f_in)
    assert np.std(factors) > 0.05
    # clipping to [0, 1]
    items2 = [(_img(tmp_path / "w.png", np.full((20, 20, 3), 0.95, np.float32)),) * 2]
    ds2 = CropDataset(items2, crop=8, brightness=0.5, length=20)
    assert max(ds2[i]["input"].max().item() for i in range(20)) <= 1.0


def test_small_images_are_reflect_padded(tmp_path):
    a = _pattern(20, 12)
    items = [(_img(tmp_path / "a.png", a), _img(tmp_path / "b.png", a))]
    with pytest.warns(UserWarning, match="smaller than the 32 px crop"):
        s = CropDataset(items, crop=32, flips=False, brightness=0.0)[0]
    assert s["input"].shape == (3, 32, 32) and "gt" not in s
    x = s["input"].numpy().transpose(1, 2, 0)
    ref = read_image(items[0][0])
    np.testing.assert_array_equal(x[:20, :12], ref)
    np.testing.assert_array_equal(x[20:22, :12], ref[18:16:-1])   # reflection, not zeros


def test_corrupt_file_is_skipped_with_warning(tmp_path):
    good = _pattern(24, 24)
    items = [(_img(tmp_path / f"g{i}.png", good), _img(tmp_path / f"t{i}.png", good))
             for i in range(3)]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not a png")
    items.insert(1, (bad, items[0][1]))
    ds = CropDataset(items, crop=16, length=8)
    with pytest.warns(UserWarning, match="broken.png"):
        s = ds[1]
    assert s["name"] in {"g0", "g1", "g2"} and s["input"].shape == (3, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # warned once per process, then skipped silently
        for i in range(len(ds)):
            assert ds[i]["name"] != "broken"
    whole = WholeImageDataset(items)
    with pytest.warns(UserWarning, match="broken.png"):
        assert whole[1]["name"] == "g1"
    # mismatched sizes are a decoding error too
    _img(tmp_path / "small.png", _pattern(10, 10))
    ds3 = CropDataset([(tmp_path / "small.png", items[0][1]), items[0]], crop=8)
    with pytest.warns(UserWarning, match="differs"):
        ds3[0]
    all_bad = CropDataset([(bad, bad)], crop=8)
    with pytest.warns(UserWarning), pytest.raises(ImageReadError, match="no readable sample: all 1"):
        all_bad[0]


def test_dataloader_workers_and_cache(tmp_path):
    items = [(_img(tmp_path / f"a{i}.png", _pattern(40, 40, i)),
              _img(tmp_path / f"b{i}.png", _pattern(40, 40, i))) for i in range(3)]
    ds = CropDataset(items, crop=16, length=12, cache_size=2, rot90=True)
    dl = DataLoader(ds, batch_size=4, num_workers=2)
    batches = list(dl)
    assert len(batches) == 3
    for b in batches:
        assert b["input"].shape == (4, 3, 16, 16)
        assert torch.equal(b["input"], b["target"])
        assert len(b["name"]) == 4
    # workers draw different augmentations (streams derived from the worker seeds)
    assert not torch.equal(batches[0]["input"], batches[1]["input"])
    whole = DataLoader(WholeImageDataset(items), batch_size=1, num_workers=0)
    assert [b["input"].shape for b in whole] == [(1, 3, 40, 40)] * 3


def test_pairs_from_source(tmp_path):
    for i in range(2):
        _img(tmp_path / "input" / f"x{i}.png", _pattern(20, 20, i))
        _img(tmp_path / "target" / f"x{i}.png", _pattern(20, 20, i + 5))
    items = pairs_from_source(resolve_source(str(tmp_path)))
    assert items == [(tmp_path / "input" / f"x{i}.png", tmp_path / "target" / f"x{i}.png", None)
                     for i in range(2)]
    s = CropDataset(items, crop=8)[0]
    assert set(s) == {"input", "target", "name"}
    with pytest.raises(ValueError, match="no ground truth"):
        pairs_from_source(resolve_source(f"folder:{tmp_path / 'input'}"))


def test_pairs_from_labels_requires_labels(tmp_path):
    """A data folder given as the cache used to get 'run sharpen labels --out DATA', which
    would write the cache into the dataset."""
    (tmp_path / "cache").mkdir()
    with pytest.raises(ValueError, match=r"is not a label cache \(no manifest.json\): make one "
                                         r"from data with `sharpen labels --data DATA --out "
                                         r"CACHE`"):
        pairs_from_labels(tmp_path / "cache")
    (tmp_path / "cache" / "manifest.json").write_text('{"entries": {}}')
    with pytest.raises(ValueError, match="no finished labels"):
        pairs_from_labels(tmp_path / "cache")


def test_images_smaller_than_the_crop_are_warned_about_once(tmp_path):
    small = _pattern(12, 20)
    items = [(_img(tmp_path / f"s{i}.png", small), _img(tmp_path / f"t{i}.png", small))
             for i in range(2)]
    ds = CropDataset(items, crop=16, length=4)
    with pytest.warns(UserWarning, match=r"s\d\.png is 20x12, smaller than the 16 px crop"):
        assert ds[0]["input"].shape == (3, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds[1], ds[2]
