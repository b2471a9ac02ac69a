"""`sharpen bench`'s figures as a report's reader sees them: pasted into slides, printed in
greyscale, read by someone who does not tell red from green. Drawn from hand-made report dicts
(the figures read report.json's rows alone), rendered by matplotlib as the bench renders them."""
from __future__ import annotations

import numpy as np
import pytest

SIZES = (("1920x1080", 1920, 1080), ("1280x720", 1280, 720), ("640x360", 640, 360))


def _report(held_out: str = "embedded") -> dict:
    rows = [{"status": "ok", "model": "teacher", "student": None, "backend": "pytorch",
             "backend_label": "PyTorch (tiled)", "size": s, "width": w, "height": h,
             "ms": 9e4 * w / 1920, "target_fps": 10.0, "target_device": "CPU"}
            for s, w, h in SIZES]
    for backend, label, fmt_ms in (("ort-fp32", "ONNX Runtime FP32", 900.0),
                                   ("ort-int8", "ONNX Runtime INT8", 400.0)):
        rows += [{"status": "ok", "model": "student", "student": "fast", "backend": backend,
                  "backend_label": label, "size": s, "width": w, "height": h,
                  "ms": fmt_ms * w / 1920, "target_fps": 10.0, "target_device": "CPU"}
                 for s, w, h in SIZES]
    quality = [{"key": "input", "ssim": 0.578}, {"key": "teacher", "ssim": 0.658},
               {"key": "fast/onnx", "ssim": 0.585}, {"key": "fast/onnx-int8", "ssim": 0.579}]
    return {"latency": {"rows": rows, "settings": {"runtime_threads": 1}},
            "quality": {"rows": quality, "images": [{"image": f"im{i}"} for i in range(4)]},
            "settings": {"target_fps": 30.0, "cpu_target_fps": 10.0, "data": held_out},
            "machine": {"cpu": "AMD EPYC", "torch_threads": 2}}


def _grey(rgba) -> float:
    r, g, b = rgba[:3]
    return 0.299 * r + 0.587 * g + 0.114 * b


def test_latency_bars_of_each_frame_size_differ_in_greyscale_and_by_pattern():
    """The latency figure told its frame sizes apart by colour alone, matplotlib's blue, orange
    and green: printed in greyscale 1920x1080's bars and 640x360's were the same grey, and a
    deuteranope saw 1280x720's and 640x360's alike. Each size now has its own hatch and a
    colour of its own lightness."""
    from benchmarks.figures import latency_figure
    fig = latency_figure(_report(), 30.0)
    ax = fig.axes[0]
    by_size = {c.get_label(): c.patches for c in ax.containers}
    assert list(by_size) == [s for s, _, _ in SIZES], by_size
    hatches = {s: {p.get_hatch() for p in bars} for s, bars in by_size.items()}
    assert all(len(h) == 1 for h in hatches.values()), hatches
    assert len({h.pop() for h in hatches.values()}) == len(SIZES), hatches
    greys = sorted(_grey(bars[0].get_facecolor()) for bars in by_size.values())
    assert min(b - a for a, b in zip(greys, greys[1:])) >= 0.15, greys


@pytest.mark.parametrize("held_out", ["embedded", "/data/a long folder name/of the footage "
                                      "that the held-out set came from/val"])
def test_quality_figure_labels_do_not_overlap_and_read_at_slide_size(held_out):
    """quality_vs_latency.png's two-line y label ran up into the title (its last words over
    the title's second line), and its legend was 7 pt: pasted into a slide, unreadable. Now no
    text of the figure overlaps another's box, and none is under 9 pt."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from benchmarks.figures import latency_figure, scatter_figure
    scatter = scatter_figure(_report(held_out), 30.0)
    # every model and format of the report a point, the legend its longest
    assert len(scatter.axes[0].collections) == 3, scatter.axes[0].collections
    for fig in (scatter, latency_figure(_report(), 30.0)):
        renderer = FigureCanvasAgg(fig).get_renderer()   # savefig's, to PNG
        fig.draw(renderer)
        ax = fig.axes[0]
        title, ylabel = ax.title, ax.yaxis.label
        assert not title.get_window_extent(renderer).overlaps(
            ylabel.get_window_extent(renderer)), (title.get_text(), ylabel.get_text())
        box = fig.bbox
        for t in (title, ylabel, ax.xaxis.label):
            e = t.get_window_extent(renderer)
            assert e.x0 >= box.x0 - 1 and e.y1 <= box.y1 + 1, (t.get_text(), e, box)
        small = {t.get_text(): t.get_fontsize() for t in fig.findobj(
            lambda o: hasattr(o, "get_fontsize") and hasattr(o, "get_text"))
            if t.get_text() and t.get_visible() and t.get_fontsize() < 9}
        assert not small, small


def test_hardest_crops_titles_read_at_slide_size():
    """hardest_crops.png titled each crop (whose output, its PSNR) in 8 pt at 100 dpi, the
    smallest text of the bench's figures: pasted into a slide it did not read."""
    import types

    import numpy as np

    from benchmarks.figures import crops_figure
    rng = np.random.default_rng(0)
    names = ["deadleaves_9002_1", "chelsea_0"]
    crops = {n: {c: rng.random((48, 64, 3)).astype(np.float32)
                 for c in ("blurred", "teacher", "fast", "sharp")} for n in names}
    rep = {"settings": {"students": [{"name": "fast"}], "data": "embedded"},
           "quality": {"images": [{"image": n, "input_psnr": 16.0 + i}
                                  for i, n in enumerate(names)],
                       "rows": [{"key": k, "images": [{"image": n, "psnr": 17.0} for n in names]}
                                for k in ("teacher", "fast/pytorch")]}}
    fig = crops_figure(rep, types.SimpleNamespace(crops=crops))
    titles = [ax.title for ax in fig.axes if ax.title.get_text()]
    assert len(titles) == 8 and "student fast (PSNR 17.0 dB)" in [t.get_text() for t in titles]
    assert min(t.get_fontsize() for t in titles) >= 9, [t.get_fontsize() for t in titles]
    # At 9 pt under tight_layout the second row's image name ran into the crop above it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    top, below = fig.axes[:4], fig.axes[4:]
    for upper, lower in zip(top, below):
        assert not lower.title.get_window_extent(renderer).overlaps(
            upper.get_images()[0].get_window_extent(renderer)), lower.title.get_text()


def test_hardest_crops_keeps_a_long_image_name_on_the_figure():
    """A held-out image's name titles its row's blurred crop, centred over it: a footage
    frame's name (`2024-06-12 flight over the harbour/frame_000123`) ran off the figure's left
    edge, its start cut, at 9 pt from about 35 characters on. It wraps now, whole."""
    import types

    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from benchmarks.figures import crops_figure
    rng = np.random.default_rng(0)
    names = ["2024-06-12 flight over the harbour/frame_000123",
             "GOPR0384_11_00_deblur_long_sequence_name/000001", "chelsea_0"]
    crops = {n: {c: rng.random((48, 64, 3)).astype(np.float32)
                 for c in ("blurred", "teacher", "fast", "sharp")} for n in names}
    rep = {"settings": {"students": [{"name": "fast"}], "data": "embedded"},
           "quality": {"images": [{"image": n, "input_psnr": 16.0 + i}
                                  for i, n in enumerate(names)], "rows": []}}
    fig = crops_figure(rep, types.SimpleNamespace(crops=crops))
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    for ax in fig.axes:
        e = ax.title.get_window_extent(renderer)
        assert e.x0 >= fig.bbox.x0 and e.x1 <= fig.bbox.x1, (ax.title.get_text(), e)
    shown = ["".join(ax.title.get_text().split("\n")[:-1]) for ax in fig.axes[::4]]
    assert [s.replace(" ", "") for s in shown] == [n.replace(" ", "") for n in names], shown


def test_a_figure_cut_by_a_full_disk_leaves_the_earlier_one_whole(tmp_path):
    """A figure was saved straight under its name: a full disk (a file size limit stands in)
    left a cut PNG there, which the bench then deleted, the earlier run's figure, that its
    report.md still shows, gone with it. It is written beside and renamed into place now."""
    from child_fixtures import file_size_limit, in_a_child

    from benchmarks.figures import _saved
    path = tmp_path / "hardest_crops.png"
    path.write_bytes(b"an earlier run's figure")

    def noise():
        import matplotlib.figure
        fig = matplotlib.figure.Figure(figsize=(4, 4))
        fig.add_subplot().imshow(np.random.default_rng(0).random((200, 200, 3)))
        return fig

    def work(said: dict) -> None:
        file_size_limit(20_000)()
        try:
            _saved(noise, path, 100)
        except OSError as e:
            said["errno"], said["filename"] = e.errno, e.filename
    said = in_a_child(work)
    assert said.get("errno") == 27 and said.get("filename") == str(path), said
    assert path.read_bytes() == b"an earlier run's figure"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_figure_that_fails_other_than_for_room_is_a_warning_quiet_does_not_hide(tmp_path,
                                                                                   capsys):
    """A figure that could not be saved for another reason than room (here a folder in its
    place) loses that figure alone: the report goes on without it, and the warning is said
    under --quiet too (it was a step message, which --quiet hides)."""
    from benchmarks.figures import FIGURES, write_figures
    from runtime.console import Console
    (tmp_path / FIGURES["latency"]).mkdir()
    figs = write_figures(_report(), None, tmp_path, 30.0, Console(quiet=True))
    assert "latency" not in figs and "scatter" in figs, figs
    err = capsys.readouterr().err
    assert err.startswith(f"warning: figure {FIGURES['latency']} failed: "), err
    assert len(err.strip().splitlines()) == 1, err


def test_log_axes_read_as_numbers_and_the_latency_title_stays_on_the_figure():
    """The figures draw with `text.parse_math` off (labels are file names, which may hold `$`),
    and the log axes' ticks came out as the raw TeX `$\\mathdefault{10^{2}}$`: wide, they pushed
    the latency figure's axes right, and its title ran off the figure's right edge."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from benchmarks.figures import latency_figure, scatter_figure
    from distill.figure_fonts import any_script_text

    rep = _report()
    rep["machine"]["cpu"] = "Intel(R) Xeon(R) Processor"
    rep["latency"]["rows"] = [r for r in rep["latency"]["rows"] if r["size"] == "640x360"]

    @any_script_text
    def drawn(make):
        fig = make(rep, 30.0)
        renderer = FigureCanvasAgg(fig).get_renderer()
        fig.draw(renderer)
        ax = fig.axes[0]
        ticks = [t.get_text() for t in ax.xaxis.get_ticklabels(which="both")
                 + ax.yaxis.get_ticklabels(which="both") if t.get_visible()]
        return ticks, ax.title.get_window_extent(renderer), fig.bbox

    for make in (latency_figure, scatter_figure):
        ticks, title, box = drawn(make)
        assert ticks and not [t for t in ticks if "$" in t or "mathdefault" in t], ticks
        assert title.x1 <= box.x1 + 1 and title.x0 >= box.x0 - 1, (make.__name__, title, box)


def test_log_ticks_below_one_and_past_ten_thousand_read_as_plain_numbers():
    """runs.png's loss axis (0.01 to 0.5) and a GPU's sub-millisecond rows: the plain log
    ticks read 1e−02 and 2e−01 (matplotlib's LogFormatter writes an exponent below 1, and
    above 10000 while 10000 itself read 1e4), not 0.01 and 0.2 beside the 10 and 100."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from distill.figure_fonts import plain_log_ticks

    def ticks(lo, hi):
        fig = Figure()
        ax = fig.add_subplot()
        ax.plot([0, 1], [lo, hi])
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis)
        FigureCanvasAgg(fig).draw()
        lo_, hi_ = ax.get_ylim()
        return [t.get_text() for t in ax.yaxis.get_ticklabels(which="both")
                if t.get_text() and lo_ <= t.get_position()[1] <= hi_]

    small = ticks(0.01, 0.5)
    assert "0.01" in small and "0.1" in small, small
    assert not [t for t in small if "e" in t], small
    assert "0.2" in ticks(0.15, 0.9)
    large = ticks(20, 2e5)
    assert {"100", "1000", "10000", "100000"} <= set(large), large
