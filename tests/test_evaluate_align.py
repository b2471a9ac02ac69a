"""`sharpen evaluate --align ecc`: outputs registered to their ground truth before they are
scored, as RealBlur's published scores are (its evaluation_RealBlur_ecc.py), with the offset of
each image recorded and an image ECC does not converge on named."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from distill.evaluate import evaluate_fns, format_table
from distill.images import read_image, write_image
from distill.metrics import psnr, quantise_8bit, ssim
from runtime import SharpenWarning


def _moved(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """`img`'s content moved by (dx, dy) px (bicubic, border reflected), rounded to 8 bits."""
    import cv2
    h, w = img.shape[:2]
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    return (np.round(np.clip(out, 0, 1) * 255) / 255).astype(np.float32)


def _smooth(seed: int, h: int = 72, w: int = 96) -> np.ndarray:
    import cv2
    rng = np.random.default_rng(seed)
    y8 = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (7, 7), 1.5)
    return y8.astype(np.float32) / 255


def _sharp_images(reds_mini, n: int = 2) -> list[np.ndarray]:
    return [read_image(p) for p in sorted((reds_mini / "sharp").glob("*.png"))[:n]]


@pytest.mark.parametrize("shift", [(3, 2), (-2, 1), (0.5, -0.25), (1.25, 0.75)])
def test_ecc_recovers_a_known_offset_and_scores_higher(reds_mini, shift):
    """A reds-mini ground truth moved by a known integer or sub-pixel offset: ECC finds the
    offset within 0.1 px, and the aligned score beats the unaligned one."""
    from distill.alignment import align_ecc
    for gt in _sharp_images(reds_mini):
        out = _moved(gt, *shift)
        a = align_ecc(out, gt)
        assert a.failed is None
        assert a.offset == pytest.approx(shift, abs=0.1), (a.offset, shift)
        assert a.psnr > psnr(out, gt) + 3, (a.psnr, psnr(out, gt))
        assert a.ssim > ssim(out, gt), (a.ssim, ssim(out, gt))


def test_an_unshifted_output_scores_as_unaligned(reds_mini):
    """An output blurred in place (a symmetric blur moves nothing): offset 0, and the aligned
    score is the unaligned one but for the script's intensity gain (0.025 dB, 0.001 SSIM on
    reds-mini's first pair); the very ground truth scores as itself."""
    import cv2

    from distill.alignment import align_ecc
    for gt in [*_sharp_images(reds_mini), _smooth(0)]:
        out = (np.round(cv2.GaussianBlur(gt, (5, 5), 1.0) * 255) / 255).astype(np.float32)
        a = align_ecc(out, gt)
        assert a.offset == pytest.approx((0, 0), abs=0.02)
        # The script's one intensity gain (1.007 here) is all that differs: scored unaligned
        # with it, the numbers are the aligned ones.
        gain = np.float32(np.sum(gt * out) / np.sum(out * out))
        assert a.psnr == pytest.approx(psnr(out * gain, gt), abs=2e-3)
        assert a.ssim == pytest.approx(ssim(out * gain, gt), abs=1e-4)
        assert a.psnr == pytest.approx(psnr(out, gt), abs=0.05)
        assert a.ssim == pytest.approx(ssim(out, gt), abs=2e-3)
        same = align_ecc(gt, gt)
        assert (same.psnr, same.offset) == (100.0, (0.0, 0.0))
        assert same.ssim == pytest.approx(1.0)


def _realblur_scores(img: np.ndarray, gt: np.ndarray, homography: bool = False
                     ) -> tuple[float, float, np.ndarray]:
    """RealBlur's evaluation_RealBlur_ecc.py (image_align, compute_psnr, compute_ssim) as it
    reads, all 100 iterations run; its homography, or a translation in its place."""
    import cv2
    from skimage.metrics import structural_similarity
    z, x = img.astype(np.float32), gt.astype(np.float32)
    zs = (np.sum(x * z) / np.sum(z * z)) * z
    grey = [cv2.cvtColor(a, cv2.COLOR_RGB2GRAY) for a in (x, zs)]
    motion, warp = ((cv2.MOTION_HOMOGRAPHY, np.eye(3, 3, dtype=np.float32)) if homography
                    else (cv2.MOTION_TRANSLATION, np.eye(2, 3, dtype=np.float32)))
    _, warp = cv2.findTransformECC(*grey, warp, motion,
                                   (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 0),
                                   None, 5)
    size, inverse = (x.shape[1], x.shape[0]), cv2.WARP_INVERSE_MAP
    warped = cv2.warpPerspective if homography else cv2.warpAffine
    zr = warped(zs, warp, size, flags=cv2.INTER_CUBIC + inverse, borderMode=cv2.BORDER_REFLECT)
    cr = warped(np.ones_like(zs), warp, size, flags=cv2.INTER_NEAREST + inverse,
                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    zr, xr = zr * cr, x * cr
    err = np.sum((xr - zr) ** 2, dtype=np.float64) / np.sum(cr)
    _, smap = structural_similarity(xr, zr, channel_axis=-1, gaussian_weights=True,
                                    use_sample_covariance=False, data_range=1.0, full=True)
    pad = 5
    s = (smap * cr)[pad:-pad, pad:-pad].sum(axis=(0, 1)) / cr[pad:-pad, pad:-pad].sum(axis=(0, 1))
    return float(10 * np.log10(1 / err)), float(np.mean(s)), warp[:, 2]


def test_aligned_scores_are_realblurs_script_on_real_pairs(reds_mini):
    """reds-mini's blurred inputs, as given and moved 3.4, -2.6 px, scored by align_ecc and by
    RealBlur's script (its masked PSNR, its SSIM map weighted by the mask with the window's
    5 px border cropped): the same numbers, though ECC stops once converged where the script
    runs all 100 iterations."""
    from distill.alignment import align_ecc
    for p in sorted((reds_mini / "blur").glob("*.png"))[::15]:
        gt = read_image(reds_mini / "sharp" / p.name)
        for blurred in (read_image(p), _moved(read_image(p), 3.4, -2.6)):
            a = align_ecc(blurred, gt)
            want_psnr, want_ssim, want_offset = _realblur_scores(blurred, gt)
            assert a.offset == pytest.approx(tuple(want_offset), abs=1e-3), p.name
            assert a.psnr == pytest.approx(want_psnr, abs=1e-4), p.name
            # The script's SSIM map is float32 (its images are), the project's float64.
            assert a.ssim == pytest.approx(want_ssim, abs=1e-5), p.name


def test_align_ecc_homography_scores_as_realblurs_script_exactly(reds_mini):
    """--align ecc-homography: the script's homography, all 100 iterations, its numbers; the
    offset is where the ground truth's centre lies in the image (3.4, -2.6 px moved)."""
    from distill.alignment import align_ecc
    for p in sorted((reds_mini / "blur").glob("*.png"))[::30]:
        gt = read_image(reds_mini / "sharp" / p.name)
        for blurred, shift in ((read_image(p), (0, 0)), (_moved(read_image(p), 3.4, -2.6),
                                                        (3.4, -2.6))):
            a = align_ecc(blurred, gt, "ecc-homography")
            want_psnr, want_ssim, _ = _realblur_scores(blurred, gt, homography=True)
            assert a.psnr == pytest.approx(want_psnr, abs=1e-4), p.name
            assert a.ssim == pytest.approx(want_ssim, abs=1e-5), p.name
            assert a.offset == pytest.approx(shift, abs=0.6), (p.name, a.offset)
            assert a.psnr != pytest.approx(align_ecc(blurred, gt).psnr, abs=1e-3)


def test_sharpen_evaluate_align_ecc_homography_says_so(tmp_path, reds_mini, capsys):
    from sharpen.cli import main
    data = _shifted_pairs(tmp_path / "pairs", reds_mini, n=1)
    out = tmp_path / "eval"
    assert main(["evaluate", "--weights", "fast", "--data", str(data), "--out", str(out),
                 "--threads", "1", "--align", "ecc-homography"]) == 0, capsys.readouterr().err
    assert "aligned to the ground truth by ECC (homography)" in capsys.readouterr().out
    res = json.loads((out / "metrics.json").read_text())
    assert res["align"] == "ecc-homography"
    assert "ECC homography" in res["convention"]["alignment"]
    offset = next(s["input"]["offset_x"] for s in res["per_image"].values())
    assert offset == pytest.approx(-3, abs=0.6)


def test_ecc_that_does_not_converge_is_said_and_scored_unaligned():
    """Noise against a photo: ECC stops without converging; the image is scored as given
    (the unaligned numbers exactly) and OpenCV's reason kept, without its source path."""
    from distill.alignment import align_ecc
    gt = _smooth(1)
    noise = np.random.default_rng(0).random(gt.shape).astype(np.float32)
    a = align_ecc(noise, gt)
    assert a.offset is None and "do not converge" in a.failed and "ecc.cpp" not in a.failed
    assert a.psnr == pytest.approx(psnr(noise, gt), abs=1e-9)
    assert a.ssim == pytest.approx(ssim(noise, gt), abs=1e-9)


def _shifted_pairs(root, reds_mini, n: int = 3, shift=(3, 2)):
    """reds-mini's first `n` pairs with the sharp side moved by `shift`: a camera pair not
    registered, as RealBlur's are by a few pixels."""
    for p in sorted((reds_mini / "blur").glob("*.png"))[:n]:
        write_image(root / "blur" / p.name, read_image(p))
        write_image(root / "sharp" / p.name, _moved(read_image(reds_mini / "sharp" / p.name),
                                                     *shift))
    return root


def test_evaluate_align_ecc_scores_the_overlap_and_records_the_offsets(tmp_path, reds_mini):
    """The input and every model are aligned (gains stay comparable): on pairs whose ground
    truth is moved by (3, 2) px the aligned input reads higher than unaligned, each image's
    offset (about -3, -2: the output lies that far from its ground truth) is in per_image, and
    the convention and table say what was done."""
    data = _shifted_pairs(tmp_path / "pairs", reds_mini)
    with pytest.warns(SharpenWarning, match=r"sits about \+3, \+2 px .*--align ecc"):
        plain = evaluate_fns({"m": lambda x: x}, str(data), progress=False)
    res = evaluate_fns({"m": lambda x: x}, str(data), progress=False, align="ecc")
    assert res["align"] == "ecc" and "ECC translation" in res["convention"]["alignment"]
    assert res["input"]["psnr"] > plain["input"]["psnr"] + 3, (res["input"], plain["input"])
    assert res["input"]["ssim"] > plain["input"]["ssim"]
    assert res["m"]["psnr_gain"] == pytest.approx(0, abs=1e-9)
    for scores in res["per_image"].values():
        for k in ("input", "m"):
            assert (scores[k]["offset_x"], scores[k]["offset_y"]) == pytest.approx(
                (-3, -2), abs=0.5), scores
    assert res["alignment_failed"] == []
    table = format_table(res)
    assert "aligned to the ground truth by ECC (translation)" in table, table
    assert "not aligned" not in table


def test_sharpen_evaluate_align_ecc_writes_offsets_to_metrics_and_per_image(
        tmp_path, reds_mini, capsys):
    from sharpen.cli import main
    data = _shifted_pairs(tmp_path / "pairs", reds_mini, n=2)
    out = tmp_path / "eval"
    assert main(["evaluate", "--weights", "fast", "--data", str(data), "--out", str(out),
                 "--quiet", "--threads", "1", "--align", "ecc"]) == 0, capsys.readouterr().err
    res = json.loads((out / "metrics.json").read_text())
    assert res["align"] == "ecc" and "ECC" in res["convention"]["alignment"]
    with open(out / "per_image.csv", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    fast = [r for r in rows if r["model"] not in ("input", "ground truth")]
    assert len(fast) == 2 and all(abs(float(r["offset_x"]) + 3) < 0.5 for r in fast), rows
    # Another --align is another run's numbers: scored again, not taken from the journal.
    assert main(["evaluate", "--weights", "fast", "--data", str(data), "--out", str(out),
                 "--quiet", "--threads", "1"]) == 0
    res = json.loads((out / "metrics.json").read_text())
    assert res["align"] == "none" and "no alignment" in res["convention"]["alignment"]


def test_an_image_ecc_fails_on_is_named_with_its_model(tmp_path):
    """A collapsed model (a grey output) gives ECC nothing to register: the image and model
    are named, scored unaligned, listed in alignment_failed and counted under the table."""
    gt = _smooth(2)
    write_image(tmp_path / "blur" / "a.png", gt)
    write_image(tmp_path / "sharp" / "a.png", gt)

    def grey(x):
        return np.full(x.shape, 0.5, np.float32)
    with pytest.warns(SharpenWarning, match=r"^a: ECC did not converge on grey's output "
                                            r".*scored unaligned"):
        res = evaluate_fns({"grey": grey}, str(tmp_path), progress=False, align="ecc")
    assert [(f["image"], f["model"]) for f in res["alignment_failed"]] == [("a", "grey")]
    assert res["per_image"]["a"]["grey"]["offset_x"] is None
    assert res["grey"]["psnr"] == pytest.approx(psnr(quantise_8bit(grey(gt)), gt), abs=1e-9)
    assert "ECC did not converge on 1 output" in format_table(res)


def test_align_ecc_with_ssim_3d_is_refused_by_name(tmp_path, capsys):
    from sharpen.cli import main
    gt = _smooth(3)
    write_image(tmp_path / "pairs" / "blur" / "a.png", gt)
    write_image(tmp_path / "pairs" / "sharp" / "a.png", gt)
    assert main(["evaluate", "--weights", "fast", "--data", str(tmp_path / "pairs"),
                 "--align", "ecc", "--ssim", "3d", "--quiet"]) == 2
    assert "--align ecc scores RealBlur's SSIM" in capsys.readouterr().err


def test_align_without_ground_truth_says_it_does_nothing(tmp_path, capsys):
    from sharpen.cli import main
    write_image(tmp_path / "frames" / "a.png", _smooth(4, 32, 40))
    assert main(["evaluate", "--weights", "fast", "--data", str(tmp_path / "frames"),
                 "--align", "ecc", "--quiet", "--threads", "1"]) == 0
    assert "--align ecc has no effect: " in capsys.readouterr().err


def test_the_figure_shows_the_images_worst_by_the_aligned_gains(tmp_path):
    """With --align ecc the table's worst image is by the aligned gains: the figure, "the
    images some model gains least PSNR on", ranked them by the unaligned ones, so a model that
    merely moved an image (no loss aligned) was shown before one that degraded another."""
    import cv2

    from distill.evaluate import least_gain
    for name, seed in (("moved", 5), ("noisy", 6)):
        y = _smooth(seed)
        write_image(tmp_path / "blur" / f"{name}.png", cv2.GaussianBlur(y, (5, 5), 1.0))
        write_image(tmp_path / "sharp" / f"{name}.png", y)
    rng = np.random.default_rng(0)

    def model(x):
        if x.mean() == read_image(tmp_path / "blur" / "moved.png").mean():
            return _moved(x, 2, 1)
        return np.clip(x + rng.normal(0, 0.02, x.shape), 0, 1).astype(np.float32)
    res = evaluate_fns({"m": model}, str(tmp_path), progress=False, align="ecc",
                       keep_outputs=1, rank=least_gain)
    assert res["m"]["worst_image"] == "noisy"
    assert list(res["outputs"]) == ["noisy"], list(res["outputs"])


def test_a_checkpoint_named_like_a_result_key_of_align_keeps_its_folder():
    """res["align"] and res["alignment_failed"] are results; a checkpoint align.pt labelled
    "align" would have had its scores overwritten by the setting."""
    from distill.evaluate import model_labels
    assert model_labels(["runs/a/align.pt", "runs/b/alignment_failed.pt"]) == [
        "a/align", "b/alignment_failed"]


def test_an_offset_far_off_is_said_with_the_image_and_model(tmp_path, reds_mini):
    """A ground truth of another clip (reds-mini's pairs 10 and 40): ECC converges 58 px off,
    on content the two do not share, and the overlap scored is 78% of the image; the image,
    model and offset are named. A pair 3, 2 px apart (a camera pair) is not."""
    blur, sharp = sorted((reds_mini / "blur").glob("*.png")), sorted(
        (reds_mini / "sharp").glob("*.png"))
    data = _shifted_pairs(tmp_path / "pairs", reds_mini, n=1)
    write_image(data / "blur" / "other.png", read_image(blur[10]))
    write_image(data / "sharp" / "other.png", read_image(sharp[40]))
    with pytest.warns(SharpenWarning) as said:
        res = evaluate_fns({"m": lambda x: x}, str(data), progress=False, align="ecc")
    far = [str(w.message) for w in said if "ECC moved" in str(w.message)]
    assert len(far) == 1, [str(w.message) for w in said]
    assert "other: input +57.8, +7.5 px, m +57.8, +7.5 px" in far[0], far[0]
    assert "2 outputs" in far[0] and res["per_image"]["other"]["m"]["offset_x"] > 50
    assert blur[0].name not in far[0]


def test_a_homography_far_off_is_said_by_the_corner_it_moves_most(tmp_path, reds_mini):
    """The same pair of two clips under --align ecc-homography: ECC shrinks the image to half
    its width, its centre moved 1 px but a corner 81 px; that corner's move is named."""
    blur, sharp = sorted((reds_mini / "blur").glob("*.png")), sorted(
        (reds_mini / "sharp").glob("*.png"))
    write_image(tmp_path / "blur" / "other.png", read_image(blur[10]))
    write_image(tmp_path / "sharp" / "other.png", read_image(sharp[40]))
    said = r"ECC moved 2 outputs .*other: input \+81\.\d, -38\.\d px"
    with pytest.warns(SharpenWarning, match=said):
        res = evaluate_fns({"m": lambda x: x}, str(tmp_path), progress=False,
                           align="ecc-homography")
    assert abs(res["per_image"]["other"]["m"]["offset_x"]) < 2
