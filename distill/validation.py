"""The validation images a config names (ground-truth pairs for the teacher, a label cache for a
student) and how a model scores on them; `predict`, the whole-image inference they use."""
from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn as nn

from runtime.console import shell_join
from runtime.warn import SharpenWarning

from .config import TrainConfig
from .metrics import psnr, ssim
from .train_data import LABELS_HINT, SOURCE_HINT, naming, resolve_gt_source


@dataclass
class ValItem:
    name: str
    input: np.ndarray
    target: Optional[np.ndarray]   # teacher output (students) or None
    gt: Optional[np.ndarray]
    path: Optional[Path] = None    # the input's file, where it is one


def load_val_items(cfg: TrainConfig, progress: bool = True,
                   note: Optional[Callable[[str], None]] = None,
                   warn: Optional[Callable[[str], None]] = None) -> list[ValItem]:
    """The validation images. `note` is told what was chosen for validation (the embedded
    images, the ones data.val_max_images keeps; default: a `note:` line on stderr), `warn` that
    it is data.val's test split (default: a SharpenWarning); an unreadable pair is skipped with
    a SharpenWarning."""
    from .images import centre_crop
    d = cfg.data
    note = note or (lambda msg: print(f"note: {msg}", file=sys.stderr, flush=True))
    warn = warn or (lambda msg: warnings.warn(msg, SharpenWarning, stacklevel=3))
    out: list[ValItem] = []
    if cfg.task == "teacher":
        if d.val == "embedded":
            if d.train != "embedded":
                note(f"training on data.train={d.train} and validating (choosing best.pt) on "
                     "the built-in embedded images; set data.val to your own held-out pairs "
                     "to choose on those")
            from .data.embedded import blurred_pairs
            for name, blurred, sharp in blurred_pairs("val"):
                out.append(ValItem(name, blurred, None, sharp))
        elif d.val:
            from .data.crops import pairs_from_source
            from .data.sources import SourceError
            try:
                info = resolve_gt_source(d.val, "val", progress, d.gopro_blur)
            except SourceError as no_val:  # GoPro and many paired sets have train/test only
                try:
                    info = resolve_gt_source(d.val, "test", progress, d.gopro_blur)
                except SourceError:
                    with naming("data.val", d.val, SOURCE_HINT.format(d.val)):
                        raise no_val from None
                from .data.holdout import evaluate_command
                # A warning, not a note: a corpus of a few photos has no val pairs, and the
                # user then reported evaluate's scores of the images best.pt was chosen on.
                warn(f"data.val={d.val} has no 'val' split; validating (and choosing best.pt) "
                     f"on its 'test' split, the images `{evaluate_command(d.val, d.gopro_blur)}`"
                     " scores by default: its scores there favour the model chosen on them; "
                     "evaluate on other pairs, or give data.val a val split (for a corpus: "
                     "more photos, 1 in 25 goes to val)")
            with naming("data.val", d.val):
                pairs = pairs_from_source(info)
            # The note names the sources' samples: GoPro's frame names recur in each sequence
            # ("000001, 000003, 000001, 000003" said nothing of which were taken).
            shown = {s.input: s.name for s in info.samples}
            out = _read_val_items([(inp, None, gt) for inp, gt, _ in pairs],
                                  d.val_max_images, f"data.val={d.val}", note, shown)
            # Picked in the order of the numbers in their names, kept in their paths' character
            # order: the one sources listed them in before, which the digest a resume compares
            # (data_checks.data_signature) was taken in; another called them changed.
            out.sort(key=lambda v: v.path.as_posix())
            if not out:
                raise ValueError(f"data.val={d.val}: no readable validation pair")
    elif d.val_labels:
        from .data.crops import pairs_from_labels
        with naming("data.val_labels", d.val_labels, lambda: _val_labels_hint(d)):
            pairs = pairs_from_labels(d.val_labels, "data.val_labels", sequence=True,
                                      refuse_cut_short=False)
        out = _read_val_items(pairs, d.val_max_images, f"data.val_labels={d.val_labels}", note)
        # As data.val's (above): in the cache's order of names by their characters.
        listed = {Path(inp): i for i, (inp, _, _) in enumerate(
            pairs_from_labels(d.val_labels, "data.val_labels", refuse_cut_short=False))}
        out.sort(key=lambda v: listed[v.path])
        if not out:
            raise ValueError(f"data.val_labels={d.val_labels}: no readable validation pair")
    out = out[:d.val_max_images] if d.val_max_images else out
    s = d.val_max_side
    return [ValItem(v.name, centre_crop(v.input, s), centre_crop(v.target, s),
                    centre_crop(v.gt, s), v.path) for v in out]


def _read_val_items(triples: list, n: Optional[int], what: str = "",
                    note: Optional[Callable[[str], None]] = None,
                    shown_as: Optional[dict] = None) -> list[ValItem]:
    """`n` readable (input, target, gt) triples spread evenly over the list (in name order), read
    one by one: reading every pair of a large validation cache (300 labelled 1080p frames: ~15
    GB of float images) to keep `data.val_max_images` of them ran out of memory before the
    first step. The first `n` were taken before, which for footage is the opening frames of
    one clip. An unreadable pick is replaced by its nearest neighbour not yet tried. `shown_as`
    maps an input's path to the name the note gives it (its sample's)."""
    from .data.sources import spread
    total = len(triples)
    queue = spread(list(range(total)), n)
    tried = set(queue)
    got: dict[int, ValItem] = {}
    while queue and not (n and len(got) >= n):
        i = queue.pop(0)
        item = _read_val_item(*triples[i])
        if item is not None:
            got[i] = item
            continue
        # The next frame (or image) after it first, then the one before, and so on.
        near = min((k for k in range(total) if k not in tried),
                   key=lambda k: (abs(k - i), k < i), default=None)
        if near is not None:
            tried.add(near)
            queue.append(near)
    out = [got[i] for i in sorted(got)]
    if note and out and n and total > n:
        names = [(shown_as or {}).get(v.path, v.name) for v in out]
        shown = ", ".join(names[:4]) + (f", ... {names[-1]}" if len(names) > 4 else "")
        note(f"{what} holds {total} validation pairs: validating on {len(out)} of them "
             f"(data.val_max_images={n}), spread evenly over them in name order ({shown})")
    return out


def _read_val_item(inp: Path, target: Optional[Path], gt: Optional[Path]) -> Optional[ValItem]:
    """A validation pair, or None (a SharpenWarning naming the file) when a file is unreadable or
    the sizes differ: as the training set does, rather than failing at the first validation,
    after the steps since the last checkpoint."""
    from .images import ImageReadError, misoriented, read_image
    paths = [p for p in (inp, target, gt) if p]
    try:
        imgs = {p: read_image(p) for p in paths}
    except ImageReadError as e:
        warnings.warn(f"validation pair skipped: {e}", SharpenWarning)
        return None
    sizes = {p: f"{im.shape[1]}x{im.shape[0]}" for p, im in imgs.items()}
    notes = [(p, n) for p in paths[1:] if (n := misoriented(inp, imgs[inp], p, imgs[p]))]
    if len(set(sizes.values())) > 1:
        warnings.warn("validation pair skipped, sizes differ: "
                      + ", ".join(f"{p} {sz}" for p, sz in sizes.items())
                      + "".join(f"; {p}: {n}" for p, n in notes), SharpenWarning)
        return None
    if notes:
        warnings.warn(f"validation pair skipped: {notes[0][0]}: {notes[0][1]}", SharpenWarning)
        return None
    from .metrics import SSIM_MIN_SIDE
    if min(imgs[inp].shape[:2]) < SSIM_MIN_SIDE:
        # Else the first validation failed on it, after every step since the last checkpoint.
        warnings.warn(f"validation pair skipped: {inp} is {sizes[inp]}, under SSIM's "
                      f"{SSIM_MIN_SIDE}x{SSIM_MIN_SIDE} window", SharpenWarning)
        return None
    return ValItem(Path(inp).stem, imgs[inp], imgs.get(target) if target else None,
                   imgs.get(gt) if gt else None, Path(inp))


def _val_labels_hint(d) -> str:
    """How to make a missing data.val_labels: where data.labels' last `sharpen labels` run held
    it out (--hold-out --val-out) and was stopped before labelling it, that run again. "make it
    with `sharpen labels --data DATA --out VAL`", followed, labelled the training footage
    itself into the validation cache."""

    from .data.label_cache import other_cache, read_run_record

    rec = read_run_record(Path(d.labels)) if d.labels else {}
    held = rec.get("hold_out") if isinstance(rec.get("hold_out"), dict) else {}
    other = other_cache(Path(d.labels), rec) if d.labels else None
    if not (other and held.get("role") == "training" and rec.get("data")
            and other.resolve() == Path(d.val_labels).resolve()):
        return LABELS_HINT.format(d.val_labels)
    data, moved = str(rec["data"]), ""
    kind, raw = _spec(data)
    where = Path(raw).expanduser()
    if kind != "embedded" and raw and where.is_absolute() and not where.exists():
        # Gone from there with the caches (moved, or another machine): quoted, it failed. A
        # relative one (recorded by earlier versions) may be there from another folder.
        data = f"{kind}:NEW_PATH" if kind else "NEW_PATH"
        moved = f" with NEW_PATH where {raw} is now"
    cmd = ["sharpen", "labels", "--data", data]
    cmd += ["--split", str(rec["split"])] if rec.get("split") else []
    cmd += ["--out", str(d.labels), "--hold-out", f"{held.get('fraction')}", "--val-out",
            str(d.val_labels)]
    cmd += ["--limit", str(rec["limit"])] if rec.get("limit") else []
    opts = rec.get("teacher_options")   # the teacher and tiling its labels were made with
    cmd += [str(o) for o in opts] if isinstance(opts, list) else []
    return (f"the `sharpen labels` run that labelled data.labels={d.labels} holds it out into "
            f"this cache{'' if rec.get('complete') else ' and was stopped before it got there'}"
            f": run it again to finish both, `{shell_join(cmd)}`{moved}")


def _spec(data: str) -> tuple:
    """(kind, path) of a recorded --data; (None, "") for one that reads as no source."""
    from .data.sources import parse_spec
    try:
        return parse_spec(data)
    except ValueError:
        return None, ""


def predict(model: nn.Module, image: np.ndarray, device: torch.device | str) -> np.ndarray:
    """Whole-image inference of a student (or any NCHW RGB model) in its current mode (call
    `distill.students.for_inference(model)` first): HxWx3 float RGB in [0, 1] in (float32, or
    float16/64, converted), HxWx3 float32 RGB clipped to [0, 1] out, the input's size (padded
    to the model's multiple and cropped back). OpenCV's BGR uint8 is not accepted (FrameError,
    a ValueError, saying so): convert it with `distill.images.to_rgb_float`."""
    from runtime.prepost import check_rgb_float

    from .students import run_padded
    image = check_rgb_float(image)
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].to(device)
    with torch.no_grad():
        y = run_padded(model, x)
    return y[0].float().clamp(0, 1).cpu().numpy().transpose(1, 2, 0)


def evaluate(model: nn.Module, items: list[ValItem], device: torch.device,
             outputs: Optional[list[np.ndarray]] = None, keep: int = 0) -> dict[str, float]:
    """Mean PSNR/SSIM of input, teacher (targets) and model vs ground truth, and model vs
    teacher; keys like `model_gt_ssim`, `teacher_gt_psnr`, `model_teacher_ssim`. The model's
    outputs for the first `keep` items are appended to `outputs` (the validation picture's)."""
    acc: dict[str, list[float]] = {}

    def add(key, a, b):
        acc.setdefault(f"{key}_psnr", []).append(psnr(a, b))
        acc.setdefault(f"{key}_ssim", []).append(ssim(a, b))

    model.eval()
    for i, it in enumerate(items):
        out = predict(model, it.input, device)
        if outputs is not None and i < keep:
            outputs.append(out)
        if it.gt is not None:
            add("input_gt", it.input, it.gt)
            add("model_gt", out, it.gt)
            if it.target is not None:
                add("teacher_gt", it.target, it.gt)
        if it.target is not None:
            add("model_teacher", out, it.target)
    return {k: float(np.mean(v)) for k, v in acc.items()}


def _gain(v: float, digits: int) -> str:
    """A signed difference; one that rounds to zero unsigned: a model equal to its input is
    neither "-0.0000" nor "+0.0000" over it."""
    said = f"{v:+.{digits}f}"
    return said[1:] if float(said) == 0 else said


def val_summary(m: dict) -> str:
    """The console's validation line: PSNR and SSIM of each comparison `evaluate` made, the
    model's first with its gain over the blurred input (train.log has every key). SSIM
    alone hid the PSNR that BasicSR users read first."""
    parts = []
    for key in ("model_gt", "input_gt", "teacher_gt", "model_teacher"):
        if f"{key}_psnr" not in m or f"{key}_ssim" not in m:
            continue
        said = f"{key} PSNR {m[key + '_psnr']:.2f} dB SSIM {m[key + '_ssim']:.4f}"
        if key == "model_gt" and "input_gt_psnr" in m and "input_gt_ssim" in m:
            said += (f" ({_gain(m['model_gt_psnr'] - m['input_gt_psnr'], 2)} dB "
                     f"{_gain(m['model_gt_ssim'] - m['input_gt_ssim'], 4)} over the input)")
        parts.append(said)
    return "  ".join(parts)
