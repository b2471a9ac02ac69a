"""The latency half of `sharpen bench`: the tiled teacher, every student on every backend
this machine has, and the streaming pipeline over a generated video."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from runtime.cli_errors import NO_SPACE_ERRNOS, STOP_SIGNALS, Terminated
from runtime.console import count

from .latency import (BACKEND_BY_FORMAT, BACKENDS, SkipCase, frame_fn, make_video, measure,
                      open_backend, result_row, size_label, stream, stream_row, tiling_info)
from .streams import method_text as streams_method

if TYPE_CHECKING:
    from .report import BenchOptions


TEACHER_LABEL = "PyTorch (tiled)"
STREAM_KEY, STREAM_LABEL = "pipeline-ort-fp32", "sharpen run pipeline (ONNX Runtime FP32)"
# The artifact the streaming row runs: its row carries this format, so a --formats without it
# leaves the row out of the tables as it does the other formats' rows.
STREAM_FORMAT = "onnx"


def planned_rows(students, m: dict, artifact_sets: Optional[dict] = None,
                 buildable: Optional[Sequence[str]] = None, models: Sequence = (),
                 teacher: bool = True) -> list[dict]:
    """model, backend, backend_label and size of the rows run_latency makes, in its order,
    less those of formats the export skipped (not requested, not buildable here; for a student
    not exported yet, those not in `buildable`, when given): what an interrupted run lists as
    not measured. `teacher` False: no teacher rows (none is timed without PyTorch)."""
    def skipped(st, fmt) -> bool:
        if fmt is None:
            return False
        arts = (artifact_sets or {}).get(st.name)
        if arts is None:
            return buildable is not None and fmt not in buildable
        return arts.get(fmt).status == "skipped"

    sizes = [size_label(wh) for wh in m["sizes"]]
    rows = [{"model": "teacher", "backend": "teacher-tiled", "backend_label": TEACHER_LABEL,
             "size": z} for z in sizes if teacher]
    rows += [{"model": f"student {st.name}", "backend": spec.key, "backend_label": spec.label,
              "size": z} for st in students for spec in BACKENDS if not skipped(st, spec.fmt)
             for z in sizes]
    rows += [{"model": gm.label(), "backend": BACKEND_BY_FORMAT[gm.format].key,
              "backend_label": BACKEND_BY_FORMAT[gm.format].label, "size": z}
             for gm in models if not gm.skipped for z in sizes]
    if m["stream_frames"]:
        rows += [{"model": f"student {st.name}", "backend": STREAM_KEY,
                  "backend_label": STREAM_LABEL, "size": size_label(m["stream_size"])}
                 for st in students if not skipped(st, STREAM_FORMAT)]
    return rows


def missing_rows(planned: list[dict], done: list[dict]) -> list[str]:
    """'model backend size' of the planned rows not among `done`."""
    have = {(r["model"], r["backend"], r["size"]) for r in done}
    return [f"{r['model']} {r['backend_label']} {r['size']}" for r in planned
            if (r["model"], r["backend"], r["size"]) not in have]


def build_failed(art) -> Optional[str]:
    """Why `art` (an Artifact, or None) was not built, where its build failed while the
    student's other formats built: its rows are failed, as its quality row is, not skipped as
    for a format this machine cannot run. None for a built or skipped one."""
    if art is None or art.status in ("skipped", "failed") or art.usable:
        return None
    return f"exporting it to {art.format} failed: {art.reason or 'it wrote no file'}"


def run_latency(opts: "BenchOptions", students, artifact_sets: dict, teacher_tiles, say,
                partial: Optional[dict] = None, models: Sequence = (),
                failed: Optional[dict] = None) -> dict:
    """The latency section of the report. With `partial`, partial["latency"] is that section
    from the start, its rows added as each is measured (what an interrupted run has).
    `models`: the --model files (`benchmarks.given.GivenModel`), timed after the students.
    `failed`: student name -> why its export raised: its rows are status "failed" with that
    reason (its formats not built here skipped as usual), and nothing of it is loaded."""
    failed = failed or {}
    m = opts.mode()
    sizes, target = m["sizes"], opts.target_fps
    rows: list[dict] = []
    streams: list[dict] = []
    teacher_ms: dict[str, float] = {}
    timing = dict(warmup=m["warmup"], min_rounds=m["min_rounds"], max_rounds=m["max_rounds"],
                  max_time=m["max_time"], slow_s=m["slow_s"])
    from runtime.host import default_threads
    from runtime.pipeline import StreamInterrupted

    from .machine import blas_threads, cpu_sample, machine_load, sgemm_peak_gmacs

    result = {"rows": rows, "stream": streams,
              "settings": {"sizes": [size_label(s) for s in sizes], "target_fps": target,
                           "sgemm_peak_gmacs": None,
                           "sgemm_threads": blas_threads(),
                           # --threads, else OMP_NUM_THREADS's: what the backends ran on
                           "runtime_threads": default_threads(opts.threads) or None,
                           "warmup": m["warmup"], "min_rounds": m["min_rounds"],
                           "max_rounds": m["max_rounds"], "max_time_s": m["max_time"],
                           "slow_single_round_s": m["slow_s"],
                           "max_activation_gb": m.get("max_activation_gb"),
                           "tile": opts.tile,
                           "timed": "one BGR uint8 frame through runtime.prepost.FrameProcessor "
                                    "(pre + infer + post"
                                    + (f", in tiles of {opts.tile} as sharpen run --tile "
                                       f"{opts.tile}" if opts.tile else "")
                                    + "), median and 90th percentile of the rounds",
                           "teacher": (teacher_tiles.note(*sizes[0]) if teacher_tiles
                                       else None),
                           "memory": memory_settings(sizes, opts.tile),
                           "streams": ({"counts": opts.stream_counts(),
                                        "method": streams_method(opts.tile)}
                                       if opts.stream_counts() else None),
                           "stream": (f"{m['stream_frames']} frames of "
                                      f"{size_label(m['stream_size'])}, generated video, "
                                      "run_stream lossless, no output file"
                                      + (f", tiles of {opts.tile}" if opts.tile else ""))}}
    if partial is not None:
        partial["latency"] = result
    # Other processes on the CPU slow every timing below: the pick they lead to says so. The
    # window's own CPU (these threads, the memory and --streams children) is not theirs.
    window = cpu_sample()

    # ---- teacher: one timing per tile shape (frames smaller than a tile run one smaller
    # tile), scaled per size
    if teacher_tiles is not None:
        shapes = list(dict.fromkeys(teacher_tiles.tile_shape(*wh) for wh in sizes))
        say(f"latency: teacher, {count(teacher_tiles.n_tiles, 'tile')} of "
            f"{', '.join(f'{w}x{h}' for h, w in shapes)} px x "
            f"{count(m['teacher_rounds'], 'round')}")
        try:
            timed = {hw: measure(teacher_tiles.fn(hw), warmup=1, min_rounds=m["teacher_rounds"],
                                 max_rounds=m["teacher_rounds"], max_time=0.0) for hw in shapes}
            for wh in sizes:
                t = timed[teacher_tiles.tile_shape(*wh)]
                tile_ms = 1000.0 * t.median_s / teacher_tiles.n_tiles
                ms = teacher_tiles.frame_ms(t.median_s, *wh)
                teacher_ms[size_label(wh)] = ms
                rows.append(result_row(model="teacher", student=None, backend="teacher-tiled",
                                       size=wh, ms=ms, target_fps=target, precision="fp32",
                                       backend_label="PyTorch (tiled)",
                                       tile_ms=round(tile_ms, 3),
                                       tile_shape=teacher_tiles.tile_label(*wh),
                                       tiles_per_frame=teacher_tiles.tiles(*wh),
                                       rounds=t.rounds, note=teacher_tiles.note(*wh),
                                       scaled=True, provider=teacher_tiles.provider))
        except Exception as e:  # noqa: BLE001
            for wh in sizes:
                rows.append(result_row(model="teacher", student=None, backend="teacher-tiled",
                                       size=wh, ms=None, target_fps=target, status="error",
                                       reason=f"{type(e).__name__}: {e}",
                                       backend_label="PyTorch (tiled)", precision="fp32"))

    # ---- students on every backend; each row also says how much of the CPU's FP32 matrix rate
    # (measured once) the student reaches: its GMAC per frame over the median time.
    peak = sgemm_peak_gmacs()
    result["settings"]["sgemm_peak_gmacs"] = round(peak, 1)
    measured = [st for st in students if st.name not in failed]
    budget = {(st.name, wh): b for st in measured
              for wh, b in _student_budget(st.path, sizes, opts.tile).items()}
    gmac = {k: g for k, (g, _) in budget.items()}
    too_big = _too_big(measured, sizes, budget, m.get("max_activation_gb"))
    cases = [(st, spec) for st in students for spec in BACKENDS]
    bar = _bar((len(cases) + len(models)) * len(sizes), "latency", opts.quiet)
    clips = Clips()
    try:
        for st, spec in cases:
            arts = artifact_sets.get(st.name)
            art = arts.get(spec.fmt) if arts and spec.fmt else None
            if st.name in failed or build_failed(art):
                status, why = ((art.status, art.reason) if art and art.status == "skipped"
                               else ("failed", failed.get(st.name) or build_failed(art)))
                rows += [result_row(model=f"student {st.name}", student=st.name, backend=spec,
                                    size=wh, ms=None, target_fps=target, status=status,
                                    reason=why) for wh in sizes]
                bar(len(sizes))
                continue
            try:
                backend = open_backend(spec, st.path, arts, threads=opts.threads or None)
            except SkipCase as e:
                for wh in sizes:
                    rows.append(result_row(model=f"student {st.name}", student=st.name,
                                           backend=spec, size=wh, ms=None, target_fps=target,
                                           status="skipped", reason=str(e)))
                    bar(1)
                continue
            except Exception as e:  # noqa: BLE001
                for wh in sizes:
                    rows.append(result_row(model=f"student {st.name}", student=st.name,
                                           backend=spec, size=wh, ms=None, target_fps=target,
                                           status="error", reason=f"{type(e).__name__}: {e}"))
                    bar(1)
                continue
            try:
                for wh in sizes:
                    lbl = size_label(wh)
                    bar(0, what=f"{st.name} {spec.key} {lbl}")
                    if (st.name, wh) in too_big:
                        rows.append(result_row(model=f"student {st.name}", student=st.name,
                                               backend=spec, size=wh, ms=None, target_fps=target,
                                               status="skipped", reason=too_big[st.name, wh]))
                        bar(1)
                        continue
                    try:
                        t = measure(frame_fn(backend, *wh, tile=opts.tile), **timing)
                        rows.append(result_row(
                            model=f"student {st.name}", student=st.name, backend=spec, size=wh,
                            ms=1000 * t.median_s, p90_ms=round(1000 * t.p90_s, 3),
                            gmac=round(gmac[st.name, wh], 3),
                            peak_frac=round(gmac[st.name, wh] / t.median_s / peak, 4),
                            target_fps=target, teacher_ms=teacher_ms.get(lbl),
                            provider=backend.provider, engine=backend.name,
                            timing=_in_ms(t.to_dict()),
                            **tiling_info(backend, *wh, opts.tile),
                            **({"float_layers": list(art.float_layers)}
                               if art and art.float_layers else {})))
                    except Exception as e:  # noqa: BLE001
                        rows.append(result_row(model=f"student {st.name}", student=st.name,
                                               backend=spec, size=wh, ms=None, target_fps=target,
                                               status="error", reason=f"{type(e).__name__}: {e}"))
                    bar(1)
            finally:
                backend.close()
            # A minute and more with --streams at 1080p: the bar says what it waits on.
            bar(0, what=f"{st.name} {spec.key}: peak memory"
                        + (f", {opts.streams} streams at once" if opts.stream_counts() else ""))
            _add_peak_memory(rows, f"student {st.name}", spec,
                             art.file if art else st.path, sizes, opts.threads, opts.full,
                             opts.tile, clips, streams=opts.stream_counts())
        for gm in models:
            _time_given(gm, students, sizes, timing, target, teacher_ms, too_big, gmac, peak,
                        opts.threads, rows, bar, opts.tile, clips, opts.stream_counts())
    finally:   # on Ctrl-C too: the bar's line is cleared before the last words
        bar(0, close=True)
        clips.close()

    # ---- streaming pipeline over a generated video (ONNX Runtime FP32 model)
    if m["stream_frames"]:
        w, h = m["stream_size"]
        with tempfile.TemporaryDirectory(prefix="sharpen-bench-") as tmp:
            try:
                video = make_video(Path(tmp) / "bench", w, h, m["stream_frames"])
            except SkipCase as e:
                video, reason = None, str(e)
            for st in students:
                arts = artifact_sets.get(st.name)
                art = arts.get(STREAM_FORMAT) if arts else None
                base = dict(model=f"student {st.name}", student=st.name,
                            backend=STREAM_KEY, size=(w, h), target_fps=target,
                            backend_label=STREAM_LABEL, format=STREAM_FORMAT,
                            precision="fp32", frames=m["stream_frames"])
                # Failed whether the student's export raised (its artifacts "failed") or the
                # ONNX build alone did: one row, the reason the artifact gives.
                if why := (art.reason if art is not None and art.status == "failed"
                           else build_failed(art)):
                    streams.append(result_row(ms=None, status="failed", reason=why, **base))
                    continue
                if video is None or art is None or not art.usable:
                    why = reason if video is None else (
                        art.reason if art is not None else "no ONNX artifact")
                    streams.append(result_row(ms=None, status="skipped", reason=why, **base))
                    continue
                say(f"streaming pipeline: {st.name} ONNX FP32, {m['stream_frames']} frames "
                    f"of {w}x{h}")
                try:
                    s = stream(art.file, video, max_frames=m["stream_frames"],
                               threads=opts.threads or None, tile=opts.tile)
                    streams.append(stream_row(
                        s, teacher_ms=teacher_ms.get(size_label((w, h))), stats={
                            "frames_processed": s["frames_processed"],
                            "throughput_fps": s["throughput_fps"],
                            "end_to_end_ms": s["end_to_end_ms"],
                            "latency_ms": s["latency_ms"],
                            **({"tile": s.get("tile"), "overlap": s.get("overlap")}
                               if opts.tile else {}),
                            "provider": s.get("backend", {}).get("provider")}, **base))
                except StreamInterrupted as e:
                    # run_stream took the Ctrl-C / stop signal and closed the stream; the
                    # report tells a stop signal by its Terminated.
                    raise (Terminated(e.signum) if e.signum in STOP_SIGNALS
                           else KeyboardInterrupt()) from None
                except Exception as e:  # noqa: BLE001
                    streams.append(result_row(ms=None, status="error",
                                              reason=f"{type(e).__name__}: {e}", **base))
    result["settings"]["load"] = machine_load(window, default_threads(opts.threads))
    return result


def _time_given(gm, students, sizes, timing: dict, target: float, teacher_ms: dict,
                too_big: dict, gmac: dict, peak: float, threads: int, rows: list, bar,
                tile: int = 0, clips: Optional["Clips"] = None,
                streams: Sequence[int] = ()) -> None:
    """The rows of one --model file at every size; skipped (with the reason) where this
    machine cannot run it. The student it was exported from, when benchmarked too, gives its
    GMAC per frame and quick mode's memory bound; nothing else is known of the file."""
    spec = BACKEND_BY_FORMAT[gm.format]
    st = gm.student_of(students)
    base = dict(model=gm.label(), student=st, backend=spec, target_fps=target, given=gm.name,
                file=str(gm.path), source=gm.source, precision=gm.precision,
                **({"float_layers": list(gm.float_layers)} if gm.float_layers else {}))

    def row(wh, **kw) -> dict:   # (base's precision is the file's, not its format's)
        return result_row(size=wh, **{**base, **kw})

    try:
        backend = open_backend(spec, None, {gm.format: gm.artifact}, threads=threads or None)
    except SkipCase as e:
        rows += [row(wh, ms=None, status="skipped", reason=str(e)) for wh in sizes]
        bar(len(sizes))
        return
    try:
        for wh in sizes:
            bar(0, what=f"{gm.name} {size_label(wh)}")
            if (st, wh) in too_big:
                rows.append(row(wh, ms=None, status="skipped", reason=too_big[st, wh]))
            else:
                try:
                    t = measure(frame_fn(backend, *wh, tile=tile), **timing)
                    extra = tiling_info(backend, *wh, tile)
                    if (st, wh) in gmac:
                        extra.update(gmac=round(gmac[st, wh], 3),
                                     peak_frac=round(gmac[st, wh] / t.median_s / peak, 4))
                    rows.append(row(wh, ms=1000 * t.median_s, p90_ms=round(1000 * t.p90_s, 3),
                                    teacher_ms=teacher_ms.get(size_label(wh)),
                                    provider=backend.provider, engine=backend.name,
                                    timing=_in_ms(t.to_dict()), **extra))
                except Exception as e:  # noqa: BLE001
                    rows.append(row(wh, ms=None, status="error",
                                    reason=f"{type(e).__name__}: {e}"))
            bar(1)
    finally:
        backend.close()
    bar(0, what=f"{gm.name}: peak memory" + (f", {','.join(map(str, streams))} streams at once"
                                             if streams else ""))
    _add_peak_memory(rows, gm.label(), spec, gm.path, sizes, threads, full=True, tile=tile,
                     clips=clips, streams=streams)


def memory_size(sizes) -> tuple[int, int]:
    """What to ship's frame size (1920x1080, else the largest timed), the size its memory
    budget is judged at."""
    return (1920, 1080) if (1920, 1080) in sizes else max(sizes, key=lambda wh: wh[0] * wh[1])


# Quick mode's PyTorch rows: their child imports torch, seconds a row, for a model `sharpen
# run` does not take (What to ship prefers an exported file).
QUICK_NO_PYTORCH = ("not measured in quick mode (PyTorch eager is no file sharpen run takes, "
                    "and its child process imports torch; --full measures it)")


# PyTorch eager's rows: no video run's peak.
NO_VIDEO_RUN = "PyTorch eager is no file sharpen run takes: its exported files' rows have one"


def memory_settings(sizes, tile: int = 0) -> dict:
    """report.json's latency.settings.memory: `size` is What to ship's, `sizes` those with a
    peak each (every timed size), `tile` the tile the child ran (0: whole frames); `video`
    how a video run's peak is measured."""
    from .memory import FRAMES, UNIT, VIDEO_FRAMES, method_text, video_method_text

    return {"unit": UNIT, "size": size_label(memory_size(sizes)),
            "sizes": [size_label(wh) for wh in sizes], "tile": tile, "frames": FRAMES,
            "method": method_text(FRAMES, tile), "video_frames": VIDEO_FRAMES,
            "video": video_method_text(VIDEO_FRAMES, tile)}


class Clips:
    """The generated clips the video runs read, one per size, made on first use in a temp
    folder that close() removes."""

    def __init__(self) -> None:
        self._tmp: Optional[tempfile.TemporaryDirectory] = None
        self._made: dict[tuple[int, int], tuple[Optional[Path], Optional[str]]] = {}

    def get(self, wh: tuple[int, int], frames: Optional[int] = None
            ) -> tuple[Optional[Path], Optional[str]]:
        """(the clip, None), or (None, why there is none); `frames`: the video run's by
        default."""
        from .memory import VIDEO_FRAMES

        frames = frames or VIDEO_FRAMES
        if (wh, frames) not in self._made:
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="sharpen-bench-clips-")
            try:
                self._made[wh, frames] = (make_video(
                    Path(self._tmp.name) / f"clip-{size_label(wh)}-{frames}", *wh, frames), None)
            except SkipCase as e:
                self._made[wh, frames] = (None, str(e))
            except (OSError, MemoryError) as e:
                if isinstance(e, OSError) and e.errno in NO_SPACE_ERRNOS:
                    raise   # the report would not fit either: stopped, as by a figure
                self._made[wh, frames] = (None, f"the clip could not be made: {e}")
        return self._made[wh, frames]

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _add_peak_memory(rows: list, model: str, spec, source, sizes, threads: int,
                     full: bool, tile: int = 0, clips: Optional[Clips] = None,
                     streams: Sequence[int] = ()) -> None:
    """Sets `peak_rss_mib` on each row of `model` on `spec` timed ok, at its own size and
    tile (a child process per row: a frame's memory is what a board sized for that frame must
    hold), else `peak_rss_error` (the child failed) or `peak_rss_skipped` (quick mode's
    PyTorch row). With `clips`, an exported file's row gets `video_peak_rss_mib` too (else
    `video_peak_rss_error`; PyTorch's `video_peak_rss_skipped`), and with `streams` (--streams)
    `streams`: a group of that many concurrent video runs per count (benchmarks.streams)."""
    from .memory import measure_peak_mib, measure_video_peak_mib
    from .streams import clip_frames, measure_streams

    for wh in sizes:
        for r in rows:
            if (r["model"], r["backend"], r["size"], r["status"]) != (model, spec.key,
                                                                       size_label(wh), "ok"):
                continue
            if spec.fmt is None:   # PyTorch eager: no file sharpen run takes
                r["video_peak_rss_skipped"] = NO_VIDEO_RUN
                if not full:
                    r["peak_rss_skipped"] = QUICK_NO_PYTORCH
                    continue
            peak, why = measure_peak_mib(spec.key, source, wh, threads=threads or None,
                                         tile=tile)
            r.update({"peak_rss_mib": peak} if peak is not None else {"peak_rss_error": why})
            if spec.fmt is None or clips is None:
                continue
            clip, why = clips.get(wh)
            peak, why = (measure_video_peak_mib(source, clip, wh, threads=threads or None,
                                                tile=tile, providers=spec.providers)
                         if clip is not None else (None, why))
            r.update({"video_peak_rss_mib": peak} if peak is not None
                     else {"video_peak_rss_error": why})
            if streams:
                clip, why = clips.get(wh, clip_frames(r.get("ms")))
                r["streams"] = [measure_streams(n, source, clip, threads=threads or None,
                                                tile=tile, providers=spec.providers)
                                if clip is not None else {"streams": n, "error": why}
                                for n in streams]


def _student_budget(path, sizes, tile: int = 0) -> dict:
    """(GMAC per frame, GB of FP32 activations alive at once) of the student at each
    (width, height). Tiled, as FrameProcessor runs it: the GMAC of every tile, the overlap's
    recomputation included, and the activations of one tile (they run one at a time)."""
    from distill.checkpoint import load_student
    from distill.students import activation_bytes, count_macs, receptive_field
    from runtime.tiling import auto_overlap, count_tiles, round_up

    model = load_student(path)[0]
    if not tile:
        return {(w, h): (count_macs(model, h, w) / 1e9, activation_bytes(model, h, w) / 1e9)
                for w, h in sizes}
    multiple = int(getattr(model, "multiple", 1) or 1)
    runs_as = round_up(tile, multiple)
    overlap = auto_overlap(runs_as, receptive_field(model))
    out = {}
    for w, h in sizes:
        th, tw = min(runs_as, round_up(h, multiple)), min(runs_as, round_up(w, multiple))
        n = count_tiles(h, w, tile, overlap, multiple)
        out[w, h] = (n * count_macs(model, th, tw) / 1e9, activation_bytes(model, th, tw) / 1e9)
    return out


def _too_big(students, sizes, budget: dict, max_gb) -> dict:
    """{(student, size): reason} for the cases quick mode leaves out to bound its memory."""
    if max_gb is None:
        return {}
    return {(st.name, wh): f"quick mode: {budget[st.name, wh][1]:.2f} GB of activations alive "
                           f"at once > {max_gb:g} GB (left out to bound the bench's memory; "
                           "--full times it, and --tile N in tiles, as sharpen run --tile runs "
                           "it)"
            for st in students for wh in sizes if budget[st.name, wh][1] > max_gb}


def _bar(total: int, desc: str, quiet: bool):
    from runtime.progress import progress

    b = progress(total=total, desc=f"  {desc}", unit="case", leave=False, quiet=quiet,
                 file=sys.stderr)

    def update(n: int, close: bool = False, what: str = "") -> None:
        if what:
            b.set_postfix_str(what)
        if n:
            b.update(n)
        if close:
            b.close()
    return update


def _in_ms(timing: dict) -> dict:
    """A Timing's seconds (`*_s`) as milliseconds under `*_ms` keys, as the report's tables."""
    return {(k[:-2] + "_ms" if k.endswith("_s") else k): (round(v * 1000, 3)
            if k.endswith("_s") else v) for k, v in timing.items()}
