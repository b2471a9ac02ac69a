"""A plain verdict per model on real blur, from `distill.evaluate.evaluate_fns`'s results: a
gain on real pairs or not (with the numbers and the worst frame), sharper towards the reference
(the teacher's) output or away from it without ground truth, and whether it overshoots (halos,
ringing) beyond the ground truth's or the reference's own overshoot. `sharpen evaluate` prints
them and the bench's report.md states them."""
from __future__ import annotations

from typing import Optional

import numpy as np

# A model's overshoot above the ground truth's (or the teacher's) by this many points of the
# pixels is called out: halos a user sees, not the 8-bit noise of a frame or two.
OVERSHOOT_MARGIN = 1.0
# Pixels past both the input's and the ground truth's local range (what true sharpening does
# not reach), in percent, over which a model's mean is called out: the shipped students stay
# at 0.06-0.24 on reds-mini, unsharp masking with visible halos reaches 1.3.
BEYOND_GT_MARGIN = 0.5
# A sharpness ratio within this of 1 is no visible change.
SHARPER = 1.02


def _models(r: dict) -> list[str]:
    return [k for k, d in r.items() if k != "input" and isinstance(d, dict)
            and "sharpness" in d and k != r.get("reference")]


def _installed(package: str) -> bool:
    """Whether `package` can be imported: a device install (the runtime extra) has neither
    torch nor matplotlib, and its verdicts named a teacher and a figure it cannot have."""
    from importlib.util import find_spec
    try:
        return find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def _look() -> str:
    """A verdict's pointer to side_by_side.png, where matplotlib is there to draw it."""
    return ": look at the figure" if _installed("matplotlib") else ""


def _over_text(d: dict, ref: Optional[float], whose: str) -> str:
    """The overshoot clause of a verdict: called out above `ref` (the ground truth's or the
    teacher's), else stated."""
    v = d.get("overshoot")
    if v is None:
        return ""
    if ref is not None and v > ref + OVERSHOOT_MARGIN:
        return (f"; overshoots (halos or ringing): {v:.1f}% of pixels past the input's "
                f"local range, against {whose} {ref:.1f}%{_look()}")
    return f"; no overshoot beyond {whose} ({v:.1f}% of pixels, {whose} {ref:.1f}%)" \
        if ref is not None else f"; overshoot {v:.1f}% of pixels"


def _worst_over(r: dict, k: str, gt_mean: Optional[float]) -> str:
    """The frame `k` overshoots most on beyond that frame's ground truth, where the mean over
    the set does not already say it overshoots: one ringing frame in twenty is seen."""
    d = r[k]
    if gt_mean is None or d.get("overshoot") is None \
            or d["overshoot"] > gt_mean + OVERSHOOT_MARGIN:
        return ""
    excess = {n: m[k]["overshoot"] - m["ground truth"]["overshoot"]
              for n, m in (r.get("per_image") or {}).items()
              if "overshoot" in m.get(k, {}) and "overshoot" in m.get("ground truth", {})}
    if not excess:
        return ""
    n = max(excess, key=excess.get)
    if excess[n] <= OVERSHOOT_MARGIN:
        return ""
    m = r["per_image"][n]
    return (f"; but overshoots on {n} (halos or ringing): {m[k]['overshoot']:.1f}% of pixels, "
            f"its ground truth {m['ground truth']['overshoot']:.1f}%: look at it")


def _beyond_gt_text(r: dict, k: str) -> str:
    """The overshoot clause on pairs scored per pixel against the ground truth's range too: a
    count compared with the ground truth's own excused halos wherever the true image has thin
    lines or highlights to restore."""
    d, gt = r[k], r.get("ground_truth_overshoot")
    b = d["overshoot_beyond_gt"]
    own = f", the ground truth's own {gt:.1f}%" if gt is not None else ""
    if b > BEYOND_GT_MARGIN:
        return (f"; overshoots (halos or ringing): {b:.2f}% of pixels past both the input's "
                f"and the ground truth's local range{_look()}")
    text = (f"; no overshoot beyond the ground truth ({b:.2f}% of pixels past both its and "
            f"the input's local range; past the input's alone {d['overshoot']:.1f}%{own})")
    frames = {n: m[k]["overshoot_beyond_gt"] for n, m in (r.get("per_image") or {}).items()
              if "overshoot_beyond_gt" in m.get(k, {})}
    if frames:
        n = max(frames, key=frames.get)
        if frames[n] > OVERSHOOT_MARGIN:
            text += (f"; but overshoots on {n} (halos or ringing): {frames[n]:.1f}% of pixels "
                     f"past both ranges: look at it")
    return text


def _clear_sign(r: dict, k: str, metric: str, mean: float) -> int:
    """+1 or -1 where `k`'s mean gain in `metric` over the input stands clear of the spread over
    the frames (two standard errors of the per-frame gains), 0 where it is within it; the sign
    of `mean` where the frames are too few to say (under two)."""
    gains = [m[k][metric] - m["input"][metric] for m in (r.get("per_image") or {}).values()
             if metric in m.get(k, {}) and metric in m.get("input", {})]
    if len(gains) < 2:
        return (mean > 0) - (mean < 0)
    g = np.asarray(gains, float)
    noise = 2 * g.std(ddof=1) / np.sqrt(len(g))
    return int(g.mean() > noise) - int(g.mean() < -noise)


def _gain_word(dp: float, ds: float, cp: int, cs: int) -> tuple[str, str]:
    """Gain, loss or neither over the blurred input from the mean PSNR and SSIM gains and their
    `_clear_sign`s, and why a gain is not called clear ("" where nothing needs saying). A
    measure that clearly moves is named beside one that does not, whichever the sign of the
    other's mean: "no clear gain" read as a model that changes nothing (`fast` in TFLite INT8 on
    reds-mini: +0.58 dB on all but one frame, +0.0024 SSIM)."""
    spread = "within the frames' spread, two standard errors"
    if cp > 0 and cs > 0:
        return "gains over the blurred input", ""
    if dp < 0 and ds < 0 and min(cp, cs) < 0:
        return "worse than the blurred input", ""
    if max(cp, cs) > 0 > min(cp, cs):
        up, down = ("PSNR", "SSIM") if cp > 0 else ("SSIM", "PSNR")
        return f"gains over the blurred input in {up}, worse than it in {down}", ""
    # At most one measure clear of the spread from here on.
    name, other, c, od = ("PSNR", "SSIM", cp, ds) if cp else ("SSIM", "PSNR", cs, dp)
    note = f"its {other} {'gain' if od > 0 else 'change'} is {spread}"
    if c > 0:
        return f"gains over the blurred input in {name} only", note
    if c < 0:
        return f"worse than the blurred input in {name}", note
    if dp > 0 and ds > 0:
        return "no clear gain over the blurred input", f"the gain is {spread}"
    return "no clear gain over the blurred input", ""


def pair_verdicts(r: dict) -> list[tuple[str, str]]:
    """(model, verdict) per model on pairs: a gain or not, with its numbers, the worst frame
    and whether it overshoots beyond the ground truth."""
    lines = []
    gt = r.get("ground_truth_overshoot")
    # Models only: "convention" (how PSNR/SSIM were computed) is a dict with a "psnr" too.
    for k in (k for k in r if k != "input" and isinstance(r[k], dict) and "psnr_gain" in r[k]):
        d = r[k]
        dp, ds = d.get("psnr_gain", 0.0), d.get("ssim_gain", 0.0)
        word, why = _gain_word(dp, ds, _clear_sign(r, k, "psnr", dp),
                               _clear_sign(r, k, "ssim", ds))
        worst = (f"; worst frame {d['worst_psnr_gain']:+.2f} dB ({d['worst_image']})"
                 if "worst_image" in d else "")
        over = (_beyond_gt_text(r, k) if "overshoot_beyond_gt" in d else
                f"{_over_text(d, gt, 'the ground truth')}{_worst_over(r, k, gt)}")
        why = f"; {why}" if why else ""
        lines.append((k, f"{word} ({dp:+.2f} dB PSNR, {ds:+.4f} SSIM{why}){worst}{over}"))
    return lines


def nogt_verdicts(r: dict) -> list[tuple[str, str]]:
    """(model, verdict) per model without ground truth: sharper or not, towards the reference's
    output (the teacher's, or --reference's) or away from it, or sharper where the reference is
    not, and whether it overshoots more than the reference."""
    ref = r.get("reference")
    if ref is None:
        return _unreferenced_verdicts(r)
    if not isinstance(r.get(ref), dict):
        return []
    base = (r.get("input") or {}).get("psnr_to_reference")
    ref_over, ref_sharp = r[ref].get("overshoot"), r[ref].get("sharpness")
    lines = []
    for k in _models(r):
        d = r[k]
        s, to = d.get("sharpness"), d.get("psnr_to_reference")
        if s is None or to is None or base is None:
            continue
        side = _clear_sign(r, k, "psnr_to_reference", to - base)
        if s < SHARPER:
            word = f"no sharper than the input ({s:.3f}x)"
        elif ref_sharp is not None and ref_sharp < SHARPER:
            # An INT8 file beside an FP32 reference that does not sharpen this footage: the
            # sharpness is quantisation noise or halos, not sharpening towards the reference.
            word = (f"sharper than the input ({s:.3f}x) though the {ref}'s output is not "
                    f"({ref_sharp:.3f}x): sharpness of its own (noise, halos); {to:.2f} dB to "
                    f"that output, input {base:.2f}")
        elif side == 0:
            word = (f"sharpens ({s:.3f}x), neither clearly towards nor away from the {ref}'s "
                    f"output ({to:.2f} dB to it, input {base:.2f}: within the frames' spread, "
                    "two standard errors)")
        elif side > 0:
            word = (f"sharpens towards the {ref}'s output ({s:.3f}x sharper, {to:.2f} dB to it, "
                    f"input {base:.2f})")
        else:
            word = (f"sharpens its own way, away from the {ref}'s output ({s:.3f}x sharper, "
                    f"{to:.2f} dB to it, input {base:.2f})")
        lines.append((k, f"{word}{_close_text(r, k)}{_over_text(d, ref_over, f'the {ref}')}"))
    return lines


def _close_text(r: dict, k: str) -> str:
    """How close `k`'s output stays to the reference's, by SSIM, the measure the export's
    parity gate takes (an INT8 file against its FP32 one), with the frame furthest from it:
    the sharpness ratio counts quantisation noise as sharpening."""
    ref, to = r["reference"], r[k].get("ssim_to_reference")
    base = (r.get("input") or {}).get("ssim_to_reference")
    if to is None or base is None:
        return ""
    per = {n: m[k]["ssim_to_reference"] for n, m in (r.get("per_image") or {}).items()
           if m.get(k, {}).get("ssim_to_reference") is not None}
    worst = min(per, key=per.get) if per else None
    return (f"; SSIM {to:.4f} to {ref}'s output (the input's {base:.4f})"
            + (f", worst frame {per[worst]:.4f} ({worst})" if worst is not None else ""))


def _unreferenced_verdicts(r: dict) -> list[tuple[str, str]]:
    """Without ground truth or a teacher (left out of a long clip's run: minutes a 1080p frame
    on a CPU): sharper or not, its overshoot and the frame it overshoots most on; which way
    it sharpens only the teacher's output says."""
    lines = []
    for k in _models(r):
        d = r[k]
        s = d.get("sharpness")
        if s is None:
            continue
        if s < SHARPER:
            lines.append((k, f"no sharper than the input ({s:.3f}x){_over_text(d, None, '')}"))
            continue
        over = {n: m[k]["overshoot"] for n, m in (r.get("per_image") or {}).items()
                if m.get(k, {}).get("overshoot") is not None}
        worst = max(over, key=over.get) if over else None
        most = (f", most on {worst} ({over[worst]:.1f}%)" if worst and over[worst] >= 0.05
                else "")
        lines.append((k, f"sharpens ({s:.3f}x){_over_text(d, None, '')}{most}; whether "
                         "towards a true restoration or with halos of its own: "
                         + ("add teacher to --weights (it is the reference)" if _installed("torch")
                            else "another model's output says, given with --model and "
                            "--reference (the teacher's needs torch)")
                         + (", or look at the figure" if _installed("matplotlib") else "")))
    return lines
