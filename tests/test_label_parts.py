"""The pieces of a `sharpen labels` run by themselves: the bar in tiles (`TileBar`) and how a
run tells a label made as it makes them (`LabelMaker`). The run as a whole: test_labels.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from distill.data.label_maker import LabelMaker
from distill.data.label_progress import TileBar
from distill.data.sources import Sample


def test_the_bar_follows_the_teachers_tiles_and_drops_those_that_never_ran(capsys):
    bar = TileBar({"a": 4, "b": 4}, 2, "", progress=True)
    bar.start(0, Sample("a", Path("a.png")), "")
    bar.on_tile(1, 6)   # the header planned 4; the teacher runs 6
    assert (bar.bar.n, bar.bar.total) == (1, 10)
    bar.end(ran=True)
    assert (bar.bar.n, bar.bar.total) == (6, 10)
    bar.start(1, Sample("b", Path("b.png")), ", psnr=30.00")
    bar.end(ran=False)   # skipped: its 4 planned tiles never run
    assert (bar.bar.n, bar.bar.total) == (6, 6)
    bar.close()
    assert "6/6" in capsys.readouterr().err


def test_a_selection_of_one_tile_images_is_counted_in_images(capsys):
    """The photo corpus's 256x256 pairs at --tile 512 are one tile each: the bar read
    '12/1956 tile' beside '13/1956: name', two counts of what seemed different things. It counts
    images where each is planned as one tile, an image done once its tiles all are."""
    bar = TileBar({"a": 1, "b": 1, "c": 1}, 3, "", progress=True)
    assert bar.bar.format_dict["unit"] == "image"
    bar.start(0, Sample("a", Path("a.png")), "")
    bar.on_tile(1, 2)   # the header said one tile; the teacher runs two
    assert (bar.bar.n, bar.bar.total) == (0, 3)
    bar.on_tile(2, 2)
    bar.end(ran=True)
    bar.start(1, Sample("b", Path("b.png")), "")
    bar.end(ran=False)   # skipped
    assert (bar.bar.n, bar.bar.total) == (1, 2)
    bar.start(2, Sample("c", Path("c.png")), "")
    bar.on_tile(1, 1)
    bar.end(ran=True)
    bar.close()
    assert "2/2 image" in capsys.readouterr().err
    mixed = TileBar({"a": 1, "b": 4}, 2, "", progress=True)
    assert mixed.bar.format_dict["unit"] == "tile"
    mixed.close()


class _Teacher:
    weights_id = "w1"
    precision = "fp32"
    device = "cpu"


def _png(path: Path) -> None:
    import cv2
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((8, 8, 3), np.uint16))


def test_a_label_is_made_alike_by_the_same_teacher_tiling_and_whole_files(tmp_path):
    maker = LabelMaker.of(_Teacher(), tile=256, overlap=32)
    _png(tmp_path / "labels" / "a.png")
    entry = {"status": "ok", **maker.entry_fields(), "label": "labels/a.png"}
    assert maker.made_alike(entry, tmp_path)
    assert not maker.made_alike({**entry, "weights_hash": "w2"}, tmp_path)
    assert not maker.made_alike({**entry, "tile": 512}, tmp_path)
    assert not maker.made_alike({**entry, "status": "failed"}, tmp_path)
    assert not maker.made_alike({**entry, "label": "labels/gone.png"}, tmp_path)
    # Another precision is still made alike: kept, and said (label_replacing).
    assert maker.made_alike({**entry, "teacher_precision": "bf16"}, tmp_path)
    assert maker.other_precision({**entry, "teacher_precision": "bf16"})


def test_the_readme_and_labels_docstring_name_every_piece_of_a_labels_run():
    """The README's layout row and labels.py's list of the pieces by job name each
    distill/data/label_*.py, so a reader looking for the manifest or the bar finds its file."""
    import distill.data.labels as labels
    repo = Path(__file__).resolve().parents[1]
    readme = (repo / "README.md").read_text(encoding="utf-8")
    pieces = sorted(p.name for p in (repo / "distill" / "data").glob("label_*.py"))
    assert [p for p in pieces if f"`{p}`" not in readme] == []
    assert [p for p in pieces if f"`{p}`" not in labels.__doc__] == []
