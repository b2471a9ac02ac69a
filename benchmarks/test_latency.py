"""Latency benchmarks (pytest-benchmark): the tiled teacher, every student on every backend this
machine can run, and the streaming pipeline end to end.

Each benchmark's extra_info holds backend, precision, size, ms (median), p90_ms, fps,
target_fps, budget_ms, meets_target (judged as `sharpen bench` judges it: benchmarks/ship.py)
and speedup_vs_teacher (when the teacher was timed in the same run; its test runs first). Backends
that cannot run here skip with the reason; nothing is ever reported as zero.
"""
from __future__ import annotations

from typing import Callable

import pytest

from benchmarks.latency import (BACKEND_BY_FORMAT, BACKEND_BY_KEY, SkipCase, frame_fn,
                                open_backend, p90, result_row, size_label, stream, stream_row,
                                tiling_info)


def _median_s(benchmark):
    stats = getattr(benchmark, "stats", None)
    if stats is None:      # --benchmark-disable: the function ran once, untimed
        return None
    return stats.stats.median


def _p90_ms(benchmark):
    return round(1000 * p90(benchmark.stats.stats.data), 3)


def _record(bench, benchmark, row: dict, stream: bool = False) -> None:
    if row["status"] == "ok":   # meets_target as `sharpen bench` judges it, into the JSON too
        bench.judge(row, stream=stream)
    benchmark.extra_info.update(row)
    if row["status"] == "ok":
        bench.results.append(row)


def test_teacher_tiled(benchmark, bench, size):
    """Teacher time per frame = time of a fixed number of tiles (512x512, or the frame's shape
    where it is smaller) x tiles per frame."""
    try:
        tiles = bench.teacher_tiles
    except Exception as e:  # noqa: BLE001 - e.g. no bundled teacher weights
        pytest.skip(f"teacher unavailable: {e}")
    benchmark.pedantic(tiles.fn(tiles.tile_shape(*size)), rounds=bench.teacher_rounds,
                       warmup_rounds=1, iterations=1)
    med = _median_s(benchmark)
    if med is None:
        return
    ms = tiles.frame_ms(med, *size)
    bench.teacher_ms[size_label(size)] = ms
    _record(bench, benchmark, result_row(
        model="teacher", student=None, backend="teacher-tiled", size=size, ms=ms,
        target_fps=bench.target_fps, backend_label="PyTorch (tiled)", precision="fp32",
        tile=tiles.tile, tile_shape=tiles.tile_label(*size), overlap=tiles.overlap,
        tiles_timed=tiles.n_tiles,
        tiles_per_frame=tiles.tiles(*size), tile_ms=round(1000 * med / tiles.n_tiles, 3),
        scaled=True, note=tiles.note(*size), provider=tiles.provider,
        stats_unit=f"seconds per {tiles.n_tiles} tile(s), not per frame"))


def _time_frames(benchmark, bench, size, opener: Callable, **row) -> None:
    """Time one frame through FrameProcessor on the backend `opener()` gives (skipped with its
    reason where it cannot open) and record its row."""
    try:
        backend = opener()
    except SkipCase as e:
        pytest.skip(str(e))
    try:
        benchmark(frame_fn(backend, *size, tile=bench.tile))
        provider, engine = backend.provider, backend.name
        tiling = tiling_info(backend, *size, bench.tile)
        # The count ONNX Runtime / LiteRT ran on (--threads, else OMP_NUM_THREADS's; 0: ONNX
        # Runtime's default): a shell's OMP_NUM_THREADS=1 halves a 2-core timing, unseen.
        threads = backend.threads if row["backend"].fmt else None
    finally:
        backend.close()
    med = _median_s(benchmark)
    if med is None:
        return
    _record(bench, benchmark, result_row(
        size=size, ms=1000 * med, p90_ms=_p90_ms(benchmark), target_fps=bench.target_fps,
        teacher_ms=bench.teacher_ms.get(size_label(size)), provider=provider, engine=engine,
        threads=threads, **tiling, **row))


def test_student_latency(benchmark, bench, student, backend_key, size):
    """One frame through FrameProcessor (pre + infer + post) on the given backend."""
    spec = BACKEND_BY_KEY[backend_key]
    if why := bench.too_big(student, size):   # as `sharpen bench` leaves it out
        pytest.skip(why)
    st = bench.students[student]
    arts = bench.artifacts(student) if spec.fmt else None
    if spec.fmt:   # a build that failed: a failure, not a format this machine cannot run
        bench.artifact(student, spec.fmt)

    def opener():
        # PyTorch loads the checkpoint here (the runtimes' backends skip on their errors).
        backend = bench.attempt(student, "loading its checkpoint",
                                lambda: open_backend(spec, st.path, arts,
                                                     threads=bench.threads or None))
        bench.student_failed(student)
        return backend

    _time_frames(benchmark, bench, size, opener, model=f"student {student}", student=student,
                 backend=spec)


def test_given_model_latency(benchmark, bench, given_model, size):
    """A --model file, as it is: one frame through FrameProcessor on its format's backend."""
    gm = bench.model(given_model)
    spec = BACKEND_BY_FORMAT[gm.format]
    _time_frames(benchmark, bench, size,
                 lambda: open_backend(spec, None, {gm.format: gm.artifact},
                                      threads=bench.threads or None),
                 model=gm.label(), student=gm.student_of(list(bench.students.values())),
                 backend=spec, given=gm.name, file=str(gm.path), source=gm.source,
                 precision=gm.precision)


def test_stream_pipeline(benchmark, bench, student):
    """`sharpen run`'s threaded pipeline over a short generated video (ONNX Runtime FP32):
    frames per second end to end."""
    if bench.stream_frames == 0:
        pytest.skip("--stream-frames 0")
    art = bench.artifact(student, "onnx")
    if art.status == "skipped":
        pytest.skip(art.reason)
    w, h = bench.stream_size
    n = bench.stream_frames
    try:
        video = bench.video(w, h, n)
    except SkipCase as e:
        pytest.skip(str(e))
    stats = benchmark.pedantic(stream, args=(art.file, video, n, bench.threads or None),
                               kwargs={"tile": bench.tile}, rounds=1, iterations=1)
    assert stats["frames_processed"] == n, stats
    _record(bench, benchmark, stream_row(
        stats, model=f"student {student}", student=student, backend="pipeline-ort-fp32",
        size=(w, h), target_fps=bench.target_fps,
        teacher_ms=bench.teacher_ms.get(size_label((w, h))),
        backend_label="sharpen run pipeline (ONNX Runtime FP32)", precision="fp32",
        frames=n, end_to_end_ms=stats["end_to_end_ms"], stage_ms=stats["latency_ms"],
        **({"tile": stats.get("tile")} if bench.tile else {})),
        stream=True)
