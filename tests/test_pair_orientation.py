"""Blurred/sharp pairs whose EXIF orientation tags differ. Both files are read upright, as
viewers show them; where one of the pair has lost or gained its tag (re-saved by a tool that
drops EXIF, or rotated by one that keeps the tag) the pixels line up only as stored, and the
pair, scored or trained on, compared a picture with its rotated self: a 180-degree tag keeps
the size, and so does a 90-degree one on a square photo, so nothing said so."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from distill.data.crops import CropDataset
from distill.data.labels import run_labels
from distill.evaluate import evaluate_fns
from runtime import SharpenWarning
from runtime.imageio import decode_image, exif_orientation

# The stored pixels of a photo that orientation tag N shows upright (np.rot90 turns
# counter-clockwise): tag 6 shows its pixels turned 90 degrees clockwise.
_STORED = {1: lambda a: a, 3: lambda a: np.rot90(a, 2), 6: lambda a: np.rot90(a, 1),
           8: lambda a: np.rot90(a, -1)}


def _scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Blocks of colour, nothing symmetric: turned or flipped, it is another picture."""
    rng = np.random.default_rng(seed)
    small = (rng.random((6, 6, 3)) * 200 + 30).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.NEAREST))


def _save(path: Path, upright: np.ndarray, tag: int, stored_as: int | None = None) -> Path:
    """`upright` saved with orientation `tag` (1: none), its pixels stored as tag `stored_as`
    (default: `tag`, a correct file) would show them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.ascontiguousarray(_STORED[tag if stored_as is None else stored_as](upright))
    kw = {"quality": 95, "subsampling": 0} if path.suffix == ".jpg" else {}
    if tag != 1:
        exif = Image.Exif()
        exif[0x0112] = tag
        kw["exif"] = exif.tobytes()
    Image.fromarray(pixels).save(path, **kw)
    return path


def _pairs(root: Path) -> Path:
    """input/ and target/ with one pair in line and three that line up only as stored."""
    sq, wide = _scene(64, 64, 1), _scene(48, 80, 2)
    # in line: a phone's portrait JPEG (stored sideways, tag 6), its target saved upright
    _save(root / "input" / "good.jpg", sq, 6)
    _save(root / "target" / "good.png", sq, 1)
    # the target lost the tag, keeping the sideways pixels (a square photo: same size)
    _save(root / "input" / "lost.jpg", sq, 6)
    _save(root / "target" / "lost.png", sq, 1, stored_as=6)
    # upside down: tag 3 on the input only, both stored alike (any size stays the size)
    _save(root / "input" / "flip.jpg", wide, 3)
    _save(root / "target" / "flip.png", np.rot90(wide, 2), 1)
    # the target gained a tag its pixels did not need (a tool rotated them and kept it)
    _save(root / "input" / "gained.png", _scene(64, 64, 3), 1)
    _save(root / "target" / "gained.png", _scene(64, 64, 3), 8, stored_as=1)
    return root


def test_the_pairs_are_what_the_test_says(tmp_path):
    root = _pairs(tmp_path)
    assert exif_orientation((root / "input" / "lost.jpg").read_bytes()) == 6
    good = decode_image(root / "input" / "good.jpg"), decode_image(root / "target" / "good.png")
    assert good[0].shape == good[1].shape
    assert np.abs(good[0].astype(int) - good[1]).mean() < 3   # JPEG's loss only


def test_evaluate_skips_by_name_a_pair_that_lines_up_only_as_stored(tmp_path):
    root = _pairs(tmp_path)
    with pytest.warns(SharpenWarning, match="EXIF orientation"):
        res = evaluate_fns({"m": lambda x: x}, str(root), progress=False)
    assert res["images"] == 1, res["failed"]
    failed = "\n".join(res["failed"])
    for name in ("lost", "flip", "gained"):
        assert f"target/{name}.png" in failed and f"input/{name}." in failed, failed
    assert "orientation 6 (turned 90 degrees clockwise) on lost.jpg, 1 (none) on lost.png" in failed
    assert "orientation 3 (turned 180 degrees) on flip.jpg" in failed
    assert "8 (turned 90 degrees counter-clockwise) on target/gained.png" in failed


def test_a_pair_of_other_sizes_whose_tags_differ_says_so(tmp_path):
    wide = _scene(48, 80, 3)
    _save(tmp_path / "input" / "side.jpg", wide, 6)
    _save(tmp_path / "target" / "side.png", np.rot90(wide, 1), 1)   # lost the tag
    _save(tmp_path / "input" / "good.jpg", wide, 6)
    _save(tmp_path / "target" / "good.png", wide, 1)
    with pytest.warns(SharpenWarning, match="size 48x80 differs"):
        res = evaluate_fns({"m": lambda x: x}, str(tmp_path), progress=False)
    assert res["images"] == 1
    assert "orientation 6 (turned 90 degrees clockwise) on side.jpg" in res["failed"][0]
    assert "as stored they are the same size" in res["failed"][0]


def test_training_crops_skip_a_pair_that_lines_up_only_as_stored(tmp_path):
    root = _pairs(tmp_path)
    items = [(root / "input" / "lost.jpg", root / "target" / "lost.png", None),
             (root / "input" / "good.jpg", root / "target" / "good.png", None)]
    ds = CropDataset(items, crop=16, flips=False, brightness=0)
    with pytest.warns(SharpenWarning, match=r"skipping training sample lost.jpg: .*lost.png"):
        names = {ds[i]["name"] for i in range(2)}
    assert names == {"good"}


class _Identity:
    device = "cpu"
    config_name = "identity"
    weights_id = "identity-weights"
    model = None

    def sharpen(self, image, tile=0, overlap=0, batch_size=1):
        return image


@pytest.mark.usefixtures("one_thread")
def test_labels_drop_a_ground_truth_that_lines_up_only_as_stored(tmp_path):
    import json
    root = _pairs(tmp_path / "data")
    out = tmp_path / "cache"
    with pytest.warns(SharpenWarning) as said:
        run_labels(str(root), out, teacher=_Identity(), tile=0, overlap=0, progress=False)
    for name in ("lost", "flip", "gained"):
        assert [w for w in said if f"ground truth unusable for {name}," in str(w.message)
                and "EXIF orientation" in str(w.message)], name
    entries = json.loads((out / "manifest.json").read_text())["entries"]
    assert {n for n, e in entries.items() if e["gt"] is None} == {"lost", "flip", "gained"}
    assert entries["good"]["gt"] is not None and entries["good"]["input_psnr"] > 30


def test_a_tiffs_own_orientation_tag_counts_as_a_jpegs_exif_one(tmp_path):
    """OpenCV turns a TIFF upright by its Orientation tag (no EXIF block: the TIFF's own)."""
    tifffile = pytest.importorskip("tifffile")
    sq = _scene(64, 64, 4)
    (tmp_path / "input").mkdir()
    tifffile.imwrite(tmp_path / "input" / "t.tif", np.ascontiguousarray(np.rot90(sq, 1)),
                     photometric="rgb", extratags=[(274, "H", 1, 6, True)])
    assert np.array_equal(decode_image(tmp_path / "input" / "t.tif")[..., ::-1], sq)
    _save(tmp_path / "target" / "t.png", sq, 1, stored_as=6)   # lost the tag
    _save(tmp_path / "input" / "u.png", _scene(64, 64, 5), 1)
    _save(tmp_path / "target" / "u.png", _scene(64, 64, 5), 1)
    with pytest.warns(SharpenWarning, match="orientation 6 .* on t.tif, 1 .* on t.png"):
        res = evaluate_fns({"m": lambda x: x}, str(tmp_path), progress=False)
    assert res["images"] == 1


def test_the_bench_stops_at_a_held_out_pair_that_lines_up_only_as_stored(tmp_path):
    from benchmarks.artifacts import BenchError
    from benchmarks.quality import evaluate, load_pairs
    root = tmp_path / "pairs"
    _save(root / "input" / "good.jpg", _scene(64, 64, 1), 6)
    _save(root / "target" / "good.png", _scene(64, 64, 1), 1)
    _save(root / "input" / "lost.jpg", _scene(64, 64, 2), 6)
    _save(root / "target" / "lost.png", _scene(64, 64, 2), 1, stored_as=6)
    pairs, _ = load_pairs(str(root))
    assert [p.name for p in pairs] == ["good", "lost"]
    # Stopped before any model runs (none is given): the pairs are checked first.
    with pytest.raises(BenchError, match=r"held-out pair lost of --data: its sharp image .*"
                                         r"lost.png lines up with .*lost.jpg only as stored"):
        evaluate(pairs, None, [], {}, progress=False)


def test_validation_skips_a_pair_that_lines_up_only_as_stored(tmp_path):
    from distill.validation import _read_val_item
    root = _pairs(tmp_path)
    good = _read_val_item(root / "input" / "good.jpg", None, root / "target" / "good.png")
    assert good is not None and good.gt.shape == good.input.shape
    with pytest.warns(SharpenWarning, match=r"validation pair skipped: .*flip.png: lines up "
                                            r"with .*flip.jpg only as stored"):
        assert _read_val_item(root / "input" / "flip.jpg", None,
                              root / "target" / "flip.png") is None


def test_a_large_pair_is_compared_on_thumbnails_with_the_same_verdicts(tmp_path):
    """A photo taken upside down (tag 3) beside its untagged ground truth, at a camera's size:
    the thumbnails are made before they are turned (turning and averaging the full-size float
    images cost 0.75 of reading the pair; a timing belongs in a benchmark, not here), and the
    verdicts stay: the aligned pair passes, the one that lost its tag is found."""
    from distill.images import misoriented, read_image
    wide = np.asarray(Image.fromarray(_scene(48, 64, 6)).resize((2400, 1800), Image.BILINEAR))
    inp = _save(tmp_path / "in.jpg", wide, 3)
    gt = _save(tmp_path / "gt.jpg", wide, 1)
    lost = _save(tmp_path / "lost.jpg", wide, 1, stored_as=3)
    x, y, z = read_image(inp), read_image(gt), read_image(lost)
    noted = misoriented(inp, x, gt, y), misoriented(inp, x, lost, z)
    assert noted[0] == "" and "lines up with" in noted[1], noted
