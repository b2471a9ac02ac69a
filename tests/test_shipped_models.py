"""The shipped checkpoints keep the quality their model cards record."""
from pathlib import Path

import pytest
import yaml

from distill.checkpoint import read_checkpoint
from distill.regression import regression_metrics

MODELS = Path(__file__).resolve().parents[1] / "models"
CARDS = sorted(MODELS.glob("*.md"))
CARDS = [c for c in CARDS if c.name != "README.md"]


def front_matter(card: Path) -> dict:
    text = card.read_text()
    assert text.startswith("---\n"), f"{card} has no front matter"
    return yaml.safe_load(text.split("---\n")[1])


def test_every_checkpoint_has_a_card():
    assert {c.stem for c in CARDS} == {p.stem for p in MODELS.glob("*.pt")}
    assert len(CARDS) >= 3


@pytest.mark.parametrize("card", CARDS, ids=lambda c: c.stem)
def test_shipped_model_quality_matches_card(card):
    meta = front_matter(card)
    ckpt = MODELS / meta["file"]
    ck = read_checkpoint(ckpt)
    assert ck["kind"] == meta["kind"]
    assert "optimizer" not in ck, "ship slim checkpoints (distill.checkpoint.slim_checkpoint)"
    got = regression_metrics(ckpt)
    want = meta["regression"]
    assert got["psnr"] == pytest.approx(want["psnr"], abs=0.05), got
    assert got["ssim"] == pytest.approx(want["ssim"], abs=0.002), got
    if meta["kind"] == "teacher":  # the teacher must beat its input on these images
        assert got["psnr"] > got["input_psnr"] and got["ssim"] > got["input_ssim"]
