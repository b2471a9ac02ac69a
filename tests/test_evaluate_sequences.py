"""`sharpen evaluate` on a set of sequences (GoPro, REDS, HIDE, RealBlur scenes) gives each
sequence's scores, as the published tables break them down."""
from __future__ import annotations

import pytest

from distill.evaluate_sequences import format_sequences, per_sequence


def _res(names: dict[str, tuple[float, float]], gains: dict[str, float]) -> dict:
    """A result of evaluate_fns with ground truth: each image's input PSNR/SSIM, and model
    "m" gaining gains[name] dB and a tenth of that in SSIM."""
    per_image = {n: {"input": {"psnr": p, "ssim": s},
                     "m": {"psnr": p + gains[n], "ssim": s + gains[n] / 10}}
                 for n, (p, s) in names.items()}
    return {"has_gt": True, "input": {}, "m": {"sharpness": 1.0}, "per_image": per_image}


def _rows(text: str) -> list[list[str]]:
    return [w for w in map(str.split, text.splitlines()) if len(w) > 1 and w[1].isdigit()]


def test_means_per_sequence_in_name_order():
    res = _res({"seq10/000001": (20.0, 0.5), "seq2/000001": (30.0, 0.8),
                "seq2/000002": (32.0, 0.9), "seq10/000002": (22.0, 0.7)},
               {"seq10/000001": 1.0, "seq2/000001": -0.5, "seq2/000002": 0.5,
                "seq10/000002": 2.0})
    seqs = per_sequence(res)
    assert list(seqs) == ["seq2", "seq10"]
    assert seqs["seq2"]["images"] == 2
    assert seqs["seq2"]["input"]["psnr"] == pytest.approx(31.0)
    assert seqs["seq2"]["m"]["psnr_gain"] == pytest.approx(0.0)
    assert seqs["seq10"]["m"]["psnr_gain"] == pytest.approx(1.5)
    assert seqs["seq10"]["m"]["ssim_gain"] == pytest.approx(0.15)
    text = format_sequences(res, seqs)
    rows = _rows(text)
    assert rows == [["seq2", "2", "31.00", "+0.00", "+0.0000"],
                    ["seq10", "2", "21.00", "+1.50", "+0.1500"]]


def test_only_for_several_sequences_with_ground_truth():
    one = _res({"seq/1": (20.0, 0.5), "seq/2": (20.0, 0.5)}, {"seq/1": 1.0, "seq/2": 1.0})
    assert per_sequence(one) == {} and format_sequences(one, {}) == ""
    flat = _res({"a": (20.0, 0.5), "b": (20.0, 0.5)}, {"a": 1.0, "b": 1.0})
    assert per_sequence(flat) == {}


def test_many_sequences_show_the_worst_and_say_so():
    names = {f"s{i:02d}/0": (20.0, 0.5) for i in range(30)}
    gains = {n: float(i) for i, n in enumerate(names)}
    res = _res(names, gains)
    text = format_sequences(res, per_sequence(res), most=5)
    rows = [r[0] for r in _rows(text)]
    assert rows == ["s00", "s01", "s02", "s03", "s04"]
    assert "the 5 of 30 sequences m gains least PSNR on" in text
