"""Real blur as a QA lead signs it off: a measure of overshoot (halos, ringing) beside the
sharpness ratio, which rewards any high-frequency gain, and a plain verdict per model."""
from __future__ import annotations

import numpy as np
import pytest

from distill.images import write_image


def _edge_pair(side: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A sharp vertical step and its box-blurred version (RGB, [0, 1])."""
    import cv2
    sharp = np.full((side, side, 3), 0.2, np.float32)
    sharp[:, side // 2:] = 0.8
    return cv2.blur(sharp, (7, 7), borderType=cv2.BORDER_REFLECT), sharp


def _usm(x: np.ndarray, amount: float = 2.0) -> np.ndarray:
    """Unsharp masking hard enough to ring: halos on both sides of every edge."""
    import cv2
    return np.clip(x + amount * (x - cv2.GaussianBlur(x, (0, 0), 2)), 0, 1)


def test_overshoot_counts_halos_not_a_faithful_restoration():
    from distill.metrics import overshoot
    blur, sharp = _edge_pair()
    assert overshoot(blur, blur) == 0.0
    assert overshoot(sharp, blur) == 0.0            # the true edge stays within the range
    rung = overshoot(_usm(blur), blur)
    assert rung > 5.0, rung                        # percent of the pixels


@pytest.fixture()
def edge_pairs(tmp_path):
    root = tmp_path / "pairs"
    blur, sharp = _edge_pair()
    for i in range(2):
        write_image(root / "blur" / f"p{i}.png", blur)
        write_image(root / "sharp" / f"p{i}.png", sharp)
    return root


def test_evaluate_scores_overshoot_beside_sharpness_with_the_ground_truths(edge_pairs):
    from distill.evaluate import evaluate_fns, format_table
    res = evaluate_fns({"keeps": lambda x: x, "rings": _usm}, str(edge_pairs), progress=False)
    assert res["keeps"]["overshoot"] == 0.0 and res["input"]["overshoot"] == 0.0
    assert res["rings"]["overshoot"] > 5.0
    assert res["rings"]["sharpness"] > 1.0     # the ratio alone called it a gain
    # The ground truth's own overshoot: what real sharpening of this blur needs.
    assert res["ground_truth_overshoot"] == pytest.approx(0.0)
    for scores in res["per_image"].values():
        assert scores["rings"]["overshoot"] > 5.0
    head = format_table(res).splitlines()[0]
    assert "overshoot %" in head, head


def _pairs_res(**models) -> dict:
    res = {"data": "reds-mini", "images": 20, "has_gt": True, "failed": [],
           "ground_truth_overshoot": 1.4,
           "input": {"psnr": 25.0, "ssim": 0.85, "sharpness": 1.0, "overshoot": 0.0}}
    for name, (dp, ds, worst, over) in models.items():
        res[name] = {"psnr": 25 + dp, "ssim": 0.85 + ds, "psnr_gain": dp, "ssim_gain": ds,
                     "worst_psnr_gain": worst, "worst_image": "f9", "sharpness": 1.1,
                     "overshoot": over}
    return res


def test_the_report_states_a_verdict_per_model_on_real_pairs():
    from benchmarks.markdown import _md_table as md_table
    from benchmarks.realblur import markdown
    res = _pairs_res(teacher=(0.89, 0.0245, -0.36, 0.6), fast=(0.56, 0.0039, 0.12, 0.4),
                     seed=(0.10, -0.0166, -3.98, 1.2), ringer=(0.2, 0.001, -0.1, 6.0))
    md = "\n".join(markdown({"pairs": res}, md_table))
    verdicts = {ln.split("**")[1]: ln for ln in md.splitlines() if ln.startswith("- **")}
    assert set(verdicts) == {"teacher", "fast", "seed", "ringer"}, md
    assert "gains on real blur" in verdicts["teacher"] and "+0.89 dB" in verdicts["teacher"]
    assert "+0.0245" in verdicts["teacher"]
    assert "no clear gain" in verdicts["seed"] and "-0.0166" in verdicts["seed"]
    assert "-3.98 dB" in verdicts["seed"]          # the frame it makes worse is named
    assert "overshoots" in verdicts["ringer"] and "6.0%" in verdicts["ringer"]
    assert "1.4%" in verdicts["ringer"]            # against the ground truth's
    assert "overshoots" not in verdicts["teacher"]
    assert "| overshoot (% px) |" in md


def test_the_report_states_a_verdict_per_model_without_ground_truth():
    from benchmarks.markdown import _md_table as md_table
    from benchmarks.realblur import markdown
    res = {"data": "kohler", "images": 4, "has_gt": False, "failed": [], "reference": "teacher",
           "input": {"sharpness": 1.0, "psnr_to_reference": 27.7, "overshoot": 0.0},
           "teacher": {"sharpness": 1.35, "overshoot": 9.0},
           "fast": {"sharpness": 1.11, "psnr_to_reference": 29.2, "overshoot": 1.2},
           "flat": {"sharpness": 0.95, "psnr_to_reference": 28.8, "overshoot": 0.3},
           "own": {"sharpness": 1.6, "psnr_to_reference": 25.0, "overshoot": 12.0}}
    md = "\n".join(markdown({"nogt": res}, md_table))
    verdicts = {ln.split("**")[1]: ln for ln in md.splitlines() if ln.startswith("- **")}
    assert set(verdicts) == {"fast", "flat", "own"}, md
    assert "sharpens towards the teacher" in verdicts["fast"] and "29.2" in verdicts["fast"]
    assert "no sharper" in verdicts["flat"]
    assert "away from the teacher" in verdicts["own"] and "overshoots" in verdicts["own"]
    assert "| overshoot (% px) |" in md
