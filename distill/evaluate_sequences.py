"""Scores per sequence (a GoPro or REDS sequence, a HIDE subset, a RealBlur scene: the folder
part of an image's name), as the published tables break a test set down: a mean over a set
can hide the one sequence a model makes worse."""
from __future__ import annotations

import numpy as np

from .data.sources import name_key

NOT_MODELS = ("input", "ground truth")


def sequence_of(name: str) -> str:
    """The sequence of an image's name: its folder part ("" where there is none)."""
    return name.rsplit("/", 1)[0] if "/" in name else ""


def per_sequence(res: dict) -> dict[str, dict]:
    """{sequence: {"images": n, "input": {psnr, ssim}, MODEL: {psnr, ssim, psnr_gain,
    ssim_gain}}} in name order, for a result with ground truth whose images come from two or
    more sequences; {} otherwise."""
    per_image = res.get("per_image") or {}
    if not res.get("has_gt") or not per_image:
        return {}
    groups: dict[str, list[dict]] = {}
    for name, scores in per_image.items():
        groups.setdefault(sequence_of(name), []).append(scores)
    if len(groups) < 2 or "" in groups:
        return {}
    labels = [k for k in next(iter(per_image.values())) if k not in NOT_MODELS]
    out: dict[str, dict] = {}
    for seq in sorted(groups, key=name_key):
        rows = groups[seq]
        entry: dict = {"images": len(rows)}
        for label in ("input", *labels):
            entry[label] = {m: float(np.mean([r[label][m] for r in rows]))
                            for m in ("psnr", "ssim")}
        for label in labels:
            for m in ("psnr", "ssim"):
                entry[label][f"{m}_gain"] = entry[label][m] - entry["input"][m]
        out[seq] = entry
    return out


def format_sequences(res: dict, seqs: dict[str, dict], most: int = 12) -> str:
    """A table of `seqs` (per_sequence's): each sequence's images, the input's PSNR and each
    model's gains; past `most` sequences, the `most` the first model gains least PSNR on."""
    if not seqs:
        return ""
    labels = [k for k in next(iter(seqs.values())) if k not in ("images", *NOT_MODELS)]
    shown = list(seqs)
    note = ""
    if len(shown) > most:
        first = labels[0]
        shown = sorted(shown, key=lambda s: seqs[s][first]["psnr_gain"])[:most]
        shown.sort(key=name_key)
        note = (f" (the {most} of {len(seqs)} sequences {first} gains least PSNR on; all in "
                "--out's metrics.json, per_sequence)")
    width = max(len("sequence"), *(len(s) for s in shown)) + 1
    head = f"{'sequence':{width}s} {'images':>6s} {'input PSNR':>10s}" + "".join(
        f"  {label + ' dPSNR':>{max(len(label) + 6, 7)}s} {'dSSIM':>7s}" for label in labels)
    lines = [f"per sequence{note}:", head]
    for s in shown:
        e = seqs[s]
        lines.append(f"{s:{width}s} {e['images']:6d} {e['input']['psnr']:10.2f}" + "".join(
            f"  {e[label]['psnr_gain']:+{max(len(label) + 6, 7)}.2f} "
            f"{e[label]['ssim_gain']:+7.4f}" for label in labels))
    from runtime.imageio import shown_path
    return "\n".join(map(shown_path, lines))   # a sequence's name, one line as format_table's
