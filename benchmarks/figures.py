"""The PNG figures of `sharpen bench`: latency per backend, quality versus latency and crops
of the hardest held-out images."""
from __future__ import annotations

from pathlib import Path

from distill.figure_fonts import any_script_text, plain_log_ticks
from runtime.atomic import atomic_path
from runtime.cli_errors import NO_SPACE_ERRNOS

from .latency import BACKENDS
from .markdown import where_timed
from .quality import held_out_label

FIGURES = {"latency": "latency_per_backend.png", "scatter": "quality_vs_latency.png",
           "crops": "hardest_crops.png"}

# The smallest text of the charts: 9 pt at their 110 dpi still reads on a slide they are
# pasted into at half its width (7 pt did not).
MIN_FONT_PT = 9
# Bar styles per frame size, for greyscale prints and colour-blind readers: Okabe-Ito colours
# of well-spaced lightness (blue, orange, yellow: greys 0.34, 0.63, 0.84) and a hatch each.
SIZE_STYLES = (("#0072B2", ""), ("#E69F00", "//"), ("#F0E442", ".."), ("#CC79A7", "xx"),
               ("#56B4E9", "\\\\"), ("#009E73", "++"))


def write_figures(rep: dict, quality, out: Path, target_fps: float, say) -> dict:
    try:
        # Figures of their own, never pyplot's: matplotlib.use("Agg") switched the backend of
        # a notebook or app that called the report.
        import matplotlib.figure  # noqa: F401
    except ImportError:
        say("matplotlib is not installed: no figures")
        return {}
    figs = {}
    makers = {"latency": (lambda: latency_figure(rep, target_fps), 110),
              "scatter": (lambda: scatter_figure(rep, target_fps), 110),
              "crops": (lambda: crops_figure(rep, quality), 100)}
    for key, (make, dpi) in makers.items():
        try:
            if any_script_text(_saved)(make, out / FIGURES[key], dpi):
                figs[key] = FIGURES[key]
        except OSError as e:
            if e.errno not in NO_SPACE_ERRNOS:
                say.warn(f"figure {FIGURES[key]} failed: {type(e).__name__}: {e}")
                continue
            # A full disk stops the bench: the report after it would not fit either. The
            # command line says it in one line naming the figure (atomic_path names it;
            # matplotlib's error does not).
            raise
        except Exception as e:  # noqa: BLE001 - a figure must not lose the report
            say.warn(f"figure {FIGURES[key]} failed: {type(e).__name__}: {e}")
    return figs


def _saved(make, path: Path, dpi: int) -> bool:
    """`make()`'s figure saved at `path` (its text drawn there, under any_script_text's
    fonts); False where it has nothing to draw."""
    fig = make()
    if fig is None:
        return False
    # Beside it first: cut by a full disk or a stop, an earlier run's figure stays whole
    with atomic_path(path, suffix=path.suffix) as tmp:
        fig.savefig(tmp, dpi=dpi)
    return True


def _targets(rows: list[dict], target_fps: float) -> list[tuple[float, str, str]]:
    """(fps, " on a CPU", line style) per budget the rows were judged on (`judge_latency`):
    a line at --target-fps alone read a CPU row as missing a target it was not judged on."""
    got = sorted({(r["target_fps"], r["target_device"]) for r in rows
                  if r.get("target_device")}, key=lambda t: t[1])
    if not got:   # a report from before the per-backend targets
        return [(target_fps, "", "--")]
    return [(fps, f" on a {dev}" if len(got) > 1 or dev == "CPU" else "", style)
            for (fps, dev), style in zip(got, ("--", ":", "-."))]


def latency_figure(rep: dict, target_fps: float):
    """latency_per_backend.png's Figure: a bar per row, grouped by model and backend, a bar
    colour and hatch per frame size; None without a timed row."""
    from matplotlib.figure import Figure
    import numpy as np

    rows = [r for r in rep["latency"]["rows"] if r["status"] == "ok"]
    if not rows:
        return None
    sizes = list(dict.fromkeys(r["size"] for r in rows))
    labels = list(dict.fromkeys(_label(r, "\n") for r in rows))
    ms = {(_label(r, "\n"), r["size"]): r["ms"] for r in rows}
    x = np.arange(len(labels))
    wdt = 0.8 / len(sizes)
    fig = Figure(figsize=(max(8, 0.9 * len(labels) + 2), 5.5))
    ax = fig.subplots()
    for i, s in enumerate(sizes):
        vals = [ms.get((lb, s), np.nan) for lb in labels]
        colour, hatch = SIZE_STYLES[i % len(SIZE_STYLES)]
        ax.bar(x + (i - (len(sizes) - 1) / 2) * wdt, vals, wdt, label=s, color=colour,
               hatch=hatch, edgecolor="black", linewidth=0.6)
    for fps, where, style in _targets(rows, target_fps):
        ax.axhline(1000.0 / fps, color="red", ls=style, lw=1,
                   label=f"{fps:g} fps ({1000 / fps:.1f} ms){where}")
    ax.set_yscale("log")
    plain_log_ticks(ax.yaxis)
    ax.set_ylabel("ms per frame (log)")
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=MIN_FONT_PT)
    import textwrap
    ax.set_title(textwrap.fill(f"Latency per backend ({where_timed(rep)}; teacher: tile time "
                               "x tile count)", width=int(fig.get_figwidth() * 72 / 6)),
                 fontsize=10)
    ax.legend(fontsize=MIN_FONT_PT)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def _label(r: dict, sep: str) -> str:
    """A latency row's name in the figures: a --model file's by its name, the students' by
    theirs, each with the backend."""
    if r["model"] == "teacher":
        return "teacher"
    return f"{r.get('given') or r['student']}{sep}{r['backend_label']}"


def scatter_figure(rep: dict, target_fps: float):
    """quality_vs_latency.png's Figure: a point per model and format at the largest size
    timed, each its own marker; None without a timed row that has a held-out SSIM."""
    from matplotlib.figure import Figure

    rows = [r for r in rep["latency"]["rows"] if r["status"] == "ok"]
    if not rows:
        return None
    # The largest measured size (1920x1080 when measured).
    size = max((r["width"] * r["height"], r["size"]) for r in rows)[1]
    qrows = {r["key"]: r for r in rep["quality"]["rows"]}
    fmt_of = {b.key: b.fmt for b in BACKENDS}
    pts = []
    plotted = set()
    for r in rows:
        if r["size"] != size:
            continue
        if r["model"] == "teacher":
            q = qrows.get("teacher")
            label = "teacher"
        else:
            fmt = fmt_of.get(r["backend"]) or "pytorch"
            q = qrows.get(r.get("given") or f"{r['student']}/{fmt}")
            label = _label(r, " ")
        if q and q.get("ssim") is not None:
            pts.append((r["ms"], q["ssim"], label))
            plotted.add(r.get("given") or r["student"] or "teacher")
    if not pts:
        return None
    fig = Figure(figsize=(11, 6))
    ax = fig.subplots()
    markers = "osD^vP*Xh<>"
    from matplotlib import colormaps
    cmap = colormaps["tab10"]
    for i, (ms, ss, lb) in enumerate(pts):
        ax.scatter(ms, ss, s=45, marker=markers[i % len(markers)], color=cmap(i % 10),
                   label=f"{lb} ({ms:.0f} ms, SSIM {ss:.3f})")
    inp = qrows.get("input")
    if inp and inp.get("ssim") is not None:
        ax.axhline(inp["ssim"], color="gray", ls=":", lw=1, label="blurred input SSIM")
    for fps, where, style in _targets(rows, target_fps):
        ax.axvline(1000.0 / fps, color="red", ls=style, lw=1,
                   label=f"real time: {fps:g} fps = {1000 / fps:.1f} ms{where}")
    ax.set_xscale("log")
    plain_log_ticks(ax.xaxis)
    ax.set_xlabel(f"median ms per frame at {size} (log)")
    # The held-out set goes in the title, which wraps: in the y label, a long --data path ran
    # up over the title and off the figure.
    ax.set_ylabel("SSIM vs ground truth (higher is better)")
    import textwrap
    ax.set_title(textwrap.fill(f"Quality versus latency, one point per model and format "
                               f"(better: up and to the left; SSIM: mean over the held-out set: "
                               f"{held_out_label(rep)}; {where_timed(rep)})",
                               # the axes' width: the legend takes a third of the figure's
                               width=int(fig.get_figwidth() * 72 / 6 * 0.65)),
                 fontsize=MIN_FONT_PT)
    # Quick mode times some students at small sizes only: say so rather than drop them quietly.
    missing = sorted({r.get("given") or r["student"] or "teacher" for r in rows} - plotted)
    if missing:
        fig.text(0.01, 0.01, f"not timed at {size}, so not shown: {', '.join(missing)} (see the "
                 "latency table for their sizes)", fontsize=MIN_FONT_PT)
    ax.legend(fontsize=MIN_FONT_PT, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


# The characters of an image's name a crop's title holds on a line: about what 9 pt fits over
# a 2.6 in column. Longer, a footage frame's name ran off the figure's left edge, its start cut.
CROP_NAME_CHARS = 28


def _wrapped_name(name: str) -> str:
    import textwrap
    return "\n".join(textwrap.wrap(name, CROP_NAME_CHARS, break_on_hyphens=False)) or name


def crop_titles(rep: dict, names: list[str], cols: list[str], n_students: int) -> dict:
    """(image, column) -> the crop's title: every crop says whose output it is and that
    model's PSNR on the whole image (the first row alone was titled, and the outputs had no
    number to tell the better one by eye)."""
    students = [s["name"] for s in rep["settings"]["students"]][:n_students]
    rows = {r["key"]: r for r in rep["quality"]["rows"]}
    psnr_in = {d["image"]: d["input_psnr"] for d in rep["quality"]["images"]}
    out = {}
    for n in names:
        for c in cols:
            if c == "sharp":
                out[n, c] = "ground truth"
                continue
            if c == "blurred":
                who, db = f"{_wrapped_name(n)}\nblurred", psnr_in.get(n)
            else:
                key = f"{c}/pytorch" if c in students else c
                who = f"student {c}" if c in students else c
                db = next((d["psnr"] for d in (rows.get(key) or {}).get("images") or []
                           if d["image"] == n), None)
            out[n, c] = who + ("" if db is None else f" (PSNR {db:.1f} dB)")
    return out


def crops_figure(rep: dict, quality):
    """hardest_crops.png's Figure: a row per held-out image, lowest input PSNR first, a crop
    per model, each titled; None without crops (`quality.crops`)."""
    from matplotlib.figure import Figure

    from distill.evaluate import crop_box

    crops = quality.crops if quality is not None else {}
    if not crops:
        return None
    psnr_of = {d["image"]: d["input_psnr"] for d in rep["quality"]["images"]}
    names = sorted(crops, key=lambda n: psnr_of.get(n, 0.0))
    students = [s["name"] for s in rep["settings"]["students"]]
    n_students = len(students)
    students += [gm["name"] for gm in rep["settings"].get("models") or []]
    # The real-blur figures' order (input | teacher | students), with the ground truth last.
    cols = ["blurred", "teacher"] + [s for s in students if any(s in crops[n] for n in names)] \
        + ["sharp"]
    titles = crop_titles(rep, names, cols, n_students)
    # Constrained layout: tight_layout let a row's two-line titles at 9 pt run into the crops
    # above them.
    fig = Figure(figsize=(2.6 * len(cols), 2.9 * len(names)), layout="constrained")
    axes = fig.subplots(len(names), len(cols), squeeze=False)
    for i, n in enumerate(names):
        y, x, side = crop_box(crops[n]["sharp"], 160)
        for j, c in enumerate(cols):
            ax = axes[i][j]
            ax.axis("off")
            img = crops[n].get(c)
            if img is None:
                continue
            ax.imshow(img[y:y + side, x:x + side].clip(0, 1), interpolation="nearest")
            ax.set_title(titles[n, c], fontsize=MIN_FONT_PT)
    fig.suptitle(f"Hardest blur in the held-out set ({held_out_label(rep)}): blurred | "
                 "teacher | students | ground truth", fontsize=10)
    return fig
