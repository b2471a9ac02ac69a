"""Real blur in the benchmark report: the teacher and every PyTorch student on real blur/sharp
pairs (PSNR/SSIM and the gain over the blurred input) and on real blurred frames without ground
truth (side-by-side crops, looked at rather than averaged, and each model's PSNR to the
teacher's output: the sharpness ratio alone rewards a student that invents its own correction)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

from distill.evaluate import evaluate_fns, load_model_fn, side_by_side
from distill.real_verdicts import nogt_verdicts, pair_verdicts
from runtime.console import count
from runtime.imageio import shown_path   # a verdict names a stranger's image: one line

FIGURES = {"pairs": "real_blur_pairs.png", "nogt": "real_blur_nogt.png"}
FIGURE_CROP = 128
HEADERS = ["model", "PSNR dB", "SSIM", "PSNR gain", "SSIM gain", "worst image's PSNR gain",
           "sharpness (x input)", "overshoot (% px)"]
NOGT_HEADERS = ["model", "PSNR to the teacher's output (dB)", "sharpness (x input)",
                "overshoot (% px)"]


def run_real_blur(pairs: Optional[str], nogt: Optional[Sequence[str]], teacher: Callable,
                  students, out: Path, say, pairs_limit: Optional[int], nogt_limit: Optional[int],
                  quiet: bool = False, models: Sequence = (),
                  failed: Optional[dict] = None, stride: int = 1,
                  frames: Optional[Sequence[int]] = None, align: str = "none") -> dict:
    """{"pairs": {...metrics} | None, "nogt": {...} | None, "figures": {key: file name}}.
    The limits are the number of images spread over each set (None: all); `nogt` is image
    files, videos and folders of them, the limit spread over all of them, a clip's frames
    picked by `stride` or `frames` as `sharpen evaluate` picks them. `models`: the --model files
    (`benchmarks.given.GivenModel`), under their names, those this machine can run.
    `failed`: student name -> why its export (or checkpoint) failed: not run, its entry in
    each set {"status": "failed", "reason": why}, as its rows in the other tables.
    `teacher` None (no PyTorch here): the models alone, scored against ground truth; without
    it the frames' PSNR to the teacher's output is not given, their sharpness and overshoot
    are. `align` "ecc" or "ecc-homography": the pairs scored with each output aligned to its
    ground truth, as `sharpen evaluate --align` scores them."""
    failed = failed or {}
    fns = {**({"teacher": teacher} if teacher is not None else {}),
           **{s.name: load_model_fn(s.path) for s in students if s.name not in failed},
           **{gm.name: load_model_fn(gm.path) for gm in models if not gm.skipped}}
    res: dict = {"pairs": None, "nogt": None, "figures": {}}

    def scored(key: str, source, title: str, **kw) -> None:
        """One set scored by every model into res[key], its side-by-side figure written."""
        r = evaluate_fns(fns, source, progress=not quiet, **kw)
        for note in r.get("seek_notes") or []:   # as `sharpen evaluate` says it
            say(f"note: {note}")
        outputs = r.pop("outputs")
        res[key] = _with_failed(r, failed)
        if not can_draw:   # a device's runtime-only install: the numbers, said once
            return
        # 128 px crops come out at 2x for up to six columns (input, teacher, three
        # students, ground truth): a pixel of ringing is seen.
        side_by_side(outputs, out / FIGURES[key], side=FIGURE_CROP, title=title)
        res["figures"][key] = FIGURES[key]

    try:
        import matplotlib  # noqa: F401 - the side-by-side figures' only need
        can_draw = True
    except ImportError:
        can_draw = False
        say("matplotlib is not installed: no real-blur figures (the tables are written)")

    if pairs:
        say(f"real blur pairs: {pairs}")
        # The figure shows the four pairs the teacher gains least on.
        shown = "teacher | students" if teacher is not None else "models"
        scored("pairs", pairs, f"Real blur pairs ({pairs}): input | {shown} | ground truth",
               limit=pairs_limit, keep_outputs=4, align=align,
               rank=lambda outs: _psnr_gain(outs, "teacher"))
        # A student distilled on labels of these pairs (the README's reds-mini) gains on its
        # own training images: said, as `sharpen evaluate` says it, and kept in report.json.
        ckpts = {s.name: str(s.path) for s in students if s.name not in failed}
        if ckpts and res["pairs"]:
            from distill.evaluate_command import say_not_held_out
            if held := say_not_held_out(ckpts, pairs, res["pairs"].get("per_image") or {}):
                res["pairs"]["not_held_out"] = held
    if nogt:
        shown = data_text(nogt)
        say(f"real blur without ground truth: {shown}")
        # Centre crops keep the CPU teacher to one tile per frame.
        scored("nogt", nogt[0] if len(nogt) == 1 else list(nogt),
               f"Real blur, no ground truth ({shown}): input | "
               + ("teacher | students" if teacher is not None else "models"),
               limit=nogt_limit, crop=384,
               reference="teacher" if teacher is not None else None, clips=True, stride=stride,
               frames=frames)
    return res


def _with_failed(r: dict, failed: dict) -> dict:
    """`r` with an entry for each failed student: it vanished from these tables while the
    others said it failed."""
    return {**r, **{name: {"status": "failed", "reason": why} for name, why in failed.items()}}


def data_text(data) -> str:
    """A data spec, or several (--real-nogt), as the report shows it."""
    return data if isinstance(data, str) else ", ".join(map(str, data))


def _psnr_gain(outs: dict, key: str) -> float:
    from distill.metrics import psnr
    gt = outs.get("ground truth")
    if gt is None or key not in outs:
        return 0.0
    return psnr(outs[key], gt) - psnr(outs["input"], gt)


def _ratio(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def nogt_headers(r: dict) -> list[str]:
    """NOGT_HEADERS, less the PSNR to a reference where none was given (no teacher without
    PyTorch): that column held only dashes."""
    return NOGT_HEADERS if r.get("reference") is not None else [NOGT_HEADERS[0],
                                                                 *NOGT_HEADERS[2:]]


def table_rows(r: dict) -> list[list[str]]:
    """Rows under HEADERS for pairs (with ground truth), under nogt_headers(r) without it."""
    rows = []
    for k, d in r.items():
        if isinstance(d, dict) and d.get("status") == "failed":
            n = len(HEADERS if r.get("has_gt") else nogt_headers(r))
            rows.append([k, f"failed: {d['reason']}", *["-"] * (n - 2)])
            continue
        if not isinstance(d, dict) or "sharpness" not in d:
            continue
        if "psnr" in d:
            rows.append([k, f"{d['psnr']:.2f}", f"{d['ssim']:.4f}",
                         f"{d.get('psnr_gain', 0.0):+.2f}", f"{d.get('ssim_gain', 0.0):+.4f}",
                         f"{d['worst_psnr_gain']:+.2f} ({d['worst_image']})"
                         if "worst_image" in d else "-", _ratio(d["sharpness"]),
                         _percent(d.get("overshoot"))])
        elif r.get("reference") is None:
            rows.append([k, _ratio(d["sharpness"]), _percent(d.get("overshoot"))])
        else:
            to_ref = d.get("psnr_to_reference")
            rows.append([k, "reference" if k == r.get("reference") else
                         "-" if to_ref is None else f"{to_ref:.2f}", _ratio(d["sharpness"]),
                         _percent(d.get("overshoot"))])
    if r.get("has_gt") and r.get("ground_truth_overshoot") is not None:
        rows.append(["ground truth", *["-"] * (len(HEADERS) - 2),
                     _percent(r["ground_truth_overshoot"])])
    return rows


def print_tables(real: dict, file=None) -> None:
    """The real-blur tables on a terminal: `sharpen bench`'s and `pytest benchmarks/`'s
    summary (report.json's `real_blur`, or the suite's JSON `sharpen_real_blur`)."""
    from runtime.console import print_table

    if p := real.get("pairs"):
        # Aligned scores are read beside RealBlur's published tables, not beside unaligned ones.
        from distill.alignment import WARPS
        how = (f", aligned to the ground truth by ECC (--align {p['align']})"
               if p.get("align") in WARPS else "")
        print_table(f"real blur pairs ({p['data']}, {p['images']} images{how}; gains over the "
                    "blurred input)", HEADERS, table_rows(p), file=file)
    if n := real.get("nogt"):
        print_table(f"real blur without ground truth ({data_text(n['data'])}, "
                    f"{n['images']} crops)", nogt_headers(n), table_rows(n), file=file)


def _percent(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def markdown(res: dict, md_table) -> list[str]:
    if not res or not (res.get("pairs") or res.get("nogt")):
        return []
    lines = ["## Real blur", ""]
    if res.get("pairs"):
        p = res["pairs"]
        # The split and GoPro's blurred folder (blur/ or blur_gamma/) and how the scores are
        # computed: what a reader needs before setting them beside published tables.
        where = "".join([f", split {p['split']}" if p.get("split") else "",
                         f", inputs from {p['gopro_blur']}/" if p.get("gopro_blur") else ""])
        area = f"centre crops of at most {p['crop']} px" if p.get("crop") else "whole images"
        from distill.alignment import WARPS
        if warp := WARPS.get(p.get("align", "none")):   # RealBlur's way: beside its tables
            area += (", each output and the input aligned to the ground truth by ECC (a "
                     f"{warp}) and scored over the overlap (`--align {p['align']}`, as "
                     "RealBlur's evaluation script)")
            failed = p.get("alignment_failed") or []
            area += (f"; ECC did not converge on {count(len(failed), 'output')}, scored "
                     "unaligned (report.json's alignment_failed)" if failed else "")
        lines += [f"Real blur/sharp pairs: {p['data']} ({p['images']} images{where}). "
                  + ("PyTorch models (and the --model files); " if "teacher" in p
                     else "The --model files; ") +   # no PyTorch here: those alone
                  "the gain is over the blurred input. A model that sharpens real blur has a "
                  "positive PSNR and SSIM gain here: PSNR, SSIM and their gains, higher is "
                  "better; overshoot, lower is better. PSNR/SSIM (RGB, outputs rounded to 8 "
                  f"bits, data range 255, {area}, no border crop, as published tables; SSIM "
                  "with scikit-image's Gaussian window sigma 1.5, population covariances, "
                  "channels averaged, not published GoPro tables' 3-D SSIM: `sharpen "
                  "evaluate --ssim 3d`), mean over the images.", "",
                  md_table(HEADERS, table_rows(p)), ""]
        lines += ["Verdict per model (overshoot: the share of pixels pushed more than 8 levels "
                  "outside the input's 15x15 neighbourhood; a model is called out for pixels "
                  "past the ground truth's too, which restoring thin lines and highlights "
                  "does not reach):", "",
                  *[f"- **{k}**: {shown_path(v)}" for k, v in pair_verdicts(p)], ""]
        lines += _failed_lines(p)
        if held := p.get("not_held_out"):
            lines += [f"Not held out: {', '.join(sorted(held))} trained or chose best.pt on "
                      "some of these images (report.json's not_held_out names them): their "
                      "gains here include their training data.", ""]
    if res.get("nogt"):
        n = res["nogt"]
        stands_in = ("the teacher's output stands in for it: a student that sharpens real "
                     "blur the teacher's way comes closer to it than the blurred input; one "
                     "that invents its own correction (over-sharpening, tone shifts) moves "
                     "further away" if "teacher" in n else
                     "and no teacher here (PyTorch is not installed), no PSNR to its output "
                     "is given: sharpness and overshoot only")
        lines += [f"Real blurred frames without ground truth: {data_text(n['data'])} "
                  f"({n['images']} centre crops{_clip_frames_text(n)}). With no ground "
                  f"truth, {stands_in}. Sharpness is the mean "
                  "gradient magnitude relative to the input (higher is sharper, but ringing "
                  "raises it too" + (": look at the figure" if (res.get("figures") or {})
                                     .get("nogt") else "") + ").", "",
                  md_table(nogt_headers(n), table_rows(n)), ""]
        verdicts = [f"- **{k}**: {shown_path(v)}" for k, v in nogt_verdicts(n)]
        if verdicts:
            lines += ["Verdict per student (overshoot: the share of pixels pushed more than 8 "
                      "levels outside the input's 15x15 neighbourhood; wide real shake takes "
                      "the teacher's true restoration past it too, so a student is judged "
                      "against the teacher's):", "", *verdicts, ""]
        lines += _failed_lines(n)
    return lines


def _clip_frames_text(r: dict, most: int = 8) -> str:
    """Which frames of which clips were scored, e.g. "; frames 0, 18000, 35999 of dash.mp4":
    a reader of the report can find them again (the first `most` of each clip named)."""
    by_clip: dict[str, list[int]] = {}
    for clip, index in (r.get("clip_frames") or {}).values():
        by_clip.setdefault(clip, []).append(index)
    parts = []
    for clip, indices in by_clip.items():
        shown = ", ".join(map(str, sorted(indices)[:most]))
        more = f" and {len(indices) - most} more" if len(indices) > most else ""
        parts.append(f"{'frame' if len(indices) == 1 else 'frames'} {shown}{more} of "
                     f"{Path(clip).name}")
    return "".join(f"; {p}" for p in parts)


def _failed_lines(r: dict) -> list[str]:
    if not r.get("failed"):
        return []
    return [f"Not evaluated ({count(len(r['failed']), 'image')} skipped: unreadable, mismatched or "
            "failed):", "",
            *[f"- {f}" for f in r["failed"]], ""]
