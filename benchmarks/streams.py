"""`sharpen bench --streams N[,N...]`: what N cameras on one box each get.

One stream at a time says nothing of N at once: N `sharpen run` processes share the cores'
throughput and each loads its own model. So per exported file's row and size, N copies of the
bench's video-run child (benchmarks/memory.py: `sharpen run` on a generated clip, writing an
MP4, with the bench's --threads and --tile, as a user runs one per camera) start together; each
writes its `--stats` file, and the group gives each stream's fps and infer-stage median and p90
time per frame, the frames all made per second of the group's wall time, and the sum of the
processes' peak resident sets (shared library pages counted in each: on the safe side).
A stream keeps the target when its fps is at least the row's (--cpu-target-fps on the CPU,
--target-fps on a GPU): a camera at that rate is then served without drops.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

from runtime.cli_errors import stop_signals_held

from .memory import TIMEOUT_S, VIDEO_FRAMES, child_command, child_failure, peak_of

OPTION = "--streams"
MAX_STREAMS = 64
# Each stream's clip holds about this much work alone (from the row's median time per frame):
# a 12-frame 640x360 clip ran 0.2 s, shorter than the processes' staggered starts, so the first
# ran alone and read faster than N at once.
SECONDS_ALONE = 3.0
MAX_FRAMES = 300


def parse_streams(text: Optional[str]) -> list[int]:
    """`--streams 4` or a sweep `1,2,4` as a sorted list of distinct counts; ValueError naming
    the option and the bad item."""
    if text is None:
        return []
    out = set()
    for item in str(text).replace(" ", ",").split(","):
        if not item:
            continue
        try:
            n = int(item)
        except ValueError:
            raise ValueError(f"{OPTION}: {item!r} is not a number of streams (e.g. 4, or a "
                             "sweep 1,2,4)") from None
        if not 1 <= n <= MAX_STREAMS:
            raise ValueError(f"{OPTION}: {n} streams: give 1 to {MAX_STREAMS}")
        out.add(n)
    if not out:
        raise ValueError(f"{OPTION}: no number of streams given (e.g. 4, or a sweep 1,2,4)")
    return sorted(out)


def clip_frames(median_ms: Optional[float]) -> int:
    """Frames of a stream's clip: SECONDS_ALONE of one process's work at the row's median,
    at least the video run's and at most MAX_FRAMES."""
    if not median_ms:
        return VIDEO_FRAMES
    return max(VIDEO_FRAMES, min(MAX_FRAMES, int(SECONDS_ALONE * 1000.0 / median_ms)))


def method_text(tile: int = 0) -> str:
    return (f"N `sharpen run --model FILE --source clip.mp4 --out out.mp4 --stats s.json"
            f"{f' --tile {tile}' if tile else ''}` processes started together per exported "
            "file's row (each on the bench's --threads, else its own default, as a user's "
            "runs are), on a generated clip of the row's size "
            f"(about {SECONDS_ALONE:g} s of one process's work, {VIDEO_FRAMES} to {MAX_FRAMES} "
            "frames): per stream its frames per second of its run and its infer stage's median "
            "and p90 ms per frame; all fps, every stream's frames over the group's wall time "
            "from the first start to the last frame; total peak MiB, the sum of each "
            "process's VmHWM; a stream keeps the target at fps >= the row's target fps")


def measure_streams(n: int, model: str | Path, clip: str | Path, threads: Optional[int] = None,
                    tile: int = 0, providers: str = "auto") -> dict:
    """N video-run children of `model` on `clip` at once: {"streams", "frames", "per_stream":
    [{"pid", "fps", "frames", "infer_p50_ms", "infer_p90_ms", "peak_rss_mib"}], "fps_median",
    "fps_min", "infer_p50_ms", "infer_p90_ms", "aggregate_fps", "total_peak_rss_mib"}, or
    {"streams": n, "error": why} where a child failed (the others are stopped then: the group
    is reported failed whatever they make)."""
    with tempfile.TemporaryDirectory(prefix="sharpen-bench-streams-") as tmp:
        procs: list[subprocess.Popen] = []
        try:   # one try from the first start: Ctrl-C between two starts leaves none running
            for i in range(n):
                out, stats = Path(tmp) / f"out-{i}.mp4", Path(tmp) / f"stats-{i}.json"
                cmd, env = child_command(["video", str(model), str(clip), str(out),
                                          str(threads or 0), str(tile), providers, str(stats)])
                # Files, not pipes: a child whose pipe filled while the bench waited on
                # another would stall, and read slower than it runs.
                with open(Path(tmp) / f"stdout-{i}", "w") as so, \
                        open(Path(tmp) / f"stderr-{i}", "w") as se:
                    try:
                        with stop_signals_held():   # each child started is one _stop ends
                            procs.append(subprocess.Popen(cmd, stdout=so, stderr=se, env=env))
                    except OSError as e:
                        return {"streams": n, "error": f"stream {i + 1} of {n} could not "
                                                       f"start: {e}"}
            why = _wait(procs, Path(tmp), TIMEOUT_S * n)
            if why:
                return {"streams": n, "error": why}
            results = []
            for i, p in enumerate(procs):
                peak, _ = peak_of((Path(tmp) / f"stdout-{i}").read_text())
                try:
                    summary = json.loads((Path(tmp) / f"stats-{i}.json").read_text())
                except (OSError, ValueError) as e:
                    return {"streams": n, "error": f"stream {i + 1} of {n} wrote no stats: {e}"}
                results.append(_stream_result(p.pid, summary, peak))
        finally:
            _stop(procs)
    return _group(results)


def _wait(procs: list[subprocess.Popen], tmp: Path, timeout_s: float) -> Optional[str]:
    """Waits for every child; at the first that fails or past `timeout_s`, why (naming the
    stream), and the caller stops the rest: their fps would be of fewer streams than N."""
    n, deadline = len(procs), time.monotonic() + timeout_s
    while True:
        for i, p in enumerate(procs):
            if p.poll():
                stderr = (tmp / f"stderr-{i}").read_text(errors="replace")
                res = subprocess.CompletedProcess(p.args, p.returncode, "", stderr)
                running = sum(q.poll() is None for q in procs)
                return (f"stream {i + 1} of {n} "
                        + child_failure(res).replace("the memory run ", "")
                        + (f"; the {running} still running were stopped" if running else ""))
        if all(p.returncode is not None for p in procs):
            return None
        if time.monotonic() > deadline:
            return f"the {n} streams took over {timeout_s:g} s"
        time.sleep(0.1)


def _stop(procs: list[subprocess.Popen]) -> None:
    """Ends the children still running (an error, a timeout, Ctrl-C): none outlives the bench."""
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def _stream_result(pid: int, s: dict, peak: Optional[float]) -> dict:
    infer = (s.get("latency_ms") or {}).get("infer") or {}
    return {"pid": pid, "fps": s.get("throughput_fps"), "frames": s.get("frames_processed"),
            "infer_p50_ms": infer.get("p50"), "infer_p90_ms": infer.get("p90"),
            "peak_rss_mib": peak if peak is not None else s.get("peak_memory_mib"),
            "started_at": s.get("started_at"), "last_frame_at": s.get("last_frame_at")}


def _group(results: list[dict]) -> dict:
    import numpy as np

    fps = [r["fps"] or 0.0 for r in results]
    frames = sum(r["frames"] or 0 for r in results)
    span = (max(r["last_frame_at"] for r in results) - min(r["started_at"] for r in results)
            if all(r["started_at"] and r["last_frame_at"] for r in results) else None)
    peaks = [r["peak_rss_mib"] for r in results]
    return {"streams": len(results), "frames": frames,
            "per_stream": [{k: v for k, v in r.items() if k not in ("started_at",
                                                                    "last_frame_at")}
                           for r in results],
            "fps_median": round(float(np.median(fps)), 3), "fps_min": round(min(fps), 3),
            "infer_p50_ms": round(float(np.median([r["infer_p50_ms"] or 0.0
                                                   for r in results])), 3),
            "infer_p90_ms": max(r["infer_p90_ms"] or 0.0 for r in results),
            "aggregate_fps": round(frames / span, 3) if span else None,
            "total_peak_rss_mib": (round(sum(peaks), 1) if all(p is not None for p in peaks)
                                   else None)}


def judge(groups: Sequence[dict], target: float) -> None:
    """Each measured group's `target_fps` and `keeps_target`: every stream at >= target fps."""
    for g in groups:
        if "error" not in g:
            g.update(target_fps=target, keeps_target=bool(g["fps_min"] >= target))


HEADERS = ["model", "backend", "size", "streams", "fps each (median, slowest)",
           "infer ms (median, slowest stream's p90)", "all fps", "total peak MiB", "keeps target"]


def table_rows(rows: list[dict]) -> list[list[str]]:
    """report.md's and the terminal's concurrent-streams table: a line per row, size and N."""
    out = []
    for r in rows:
        for g in r.get("streams") or []:
            head = [r["model"], r.get("backend_label") or r["backend"], r["size"],
                    str(g["streams"])]
            if "error" in g:
                out.append(head + [f"failed: {g['error']}", "-", "-", "-", "-"])
                continue
            keeps = ("yes" if g.get("keeps_target") else "no") + (
                f" ({g['target_fps']:g} fps)" if g.get("target_fps") is not None else "")
            out.append(head + [f"{g['fps_median']:.1f}, {g['fps_min']:.1f}",
                               f"{g['infer_p50_ms']:.1f}, {g['infer_p90_ms']:.1f}",
                               f"{g['aggregate_fps']:.1f}" if g.get("aggregate_fps") else "-",
                               f"{g['total_peak_rss_mib']:.0f}"
                               if g.get("total_peak_rss_mib") is not None else "-", keeps])
    return out


def not_measured(rows: list[dict]) -> list[str]:
    """'model backend size' of each exported file's row timed ok that has no --streams groups
    yet (an interrupted run's report lists them)."""
    from .latency import BACKEND_BY_KEY

    return [f"{r['model']} {r.get('backend_label') or r['backend']} {r['size']}" for r in rows
            if r.get("status") == "ok" and "streams" not in r
            and getattr(BACKEND_BY_KEY.get(r["backend"]), "fmt", None) is not None]


def ship_text(r: dict) -> str:
    """What to ship's words on its pick's concurrent streams: '; with 2 streams at once each
    makes 12.3 fps (slowest 11.9), 410 MiB in all: keeps 10 fps; with 4 ...'."""
    parts = []
    for g in r.get("streams") or []:
        if "error" in g:
            parts.append(f"{g['streams']} streams at once failed: {g['error']}")
            continue
        parts.append(f"with {g['streams']} {'stream' if g['streams'] == 1 else 'streams'} at "
                     f"once each makes {g['fps_median']:.1f} fps (slowest {g['fps_min']:.1f}, "
                     f"p90 infer {g['infer_p90_ms']:.0f} ms)"
                     + (f", {g['total_peak_rss_mib']:.0f} MiB in all"
                        if g.get("total_peak_rss_mib") is not None else "")
                     + (f": {'keeps' if g['keeps_target'] else 'misses'} "
                        f"{g['target_fps']:g} fps" if "keeps_target" in g else ""))
    judged = [g for g in r.get("streams") or [] if "keeps_target" in g]
    if judged:
        counts, fps = ",".join(str(g["streams"]) for g in judged), judged[0]["target_fps"]
        n = most_served(judged)
        parts.append(f"so this box serves {n} {'camera' if n == 1 else 'cameras'} at {fps:g} "
                     f"fps (of {counts} at once measured)" if n else
                     f"so this box serves no camera at {fps:g} fps (of {counts} at once "
                     "measured)")
    return "; ".join(parts)


def most_served(groups: Sequence[dict]) -> int:
    """The most streams that each kept the target, counting up until the first count that
    missed it (a larger count that kept it past a miss is noise, not capacity); 0: none."""
    n = 0
    for g in sorted(groups, key=lambda g: g["streams"]):
        if not g.get("keeps_target"):
            break
        n = g["streams"]
    return n


def short_of(r: dict) -> Optional[dict]:
    """The group of the fewest streams measured where one missed the target (What to ship
    leaves such a model out: by most_served's rule it does not serve the cameras asked for,
    whatever a larger count made), else None."""
    judged = sorted((g for g in r.get("streams") or [] if "keeps_target" in g),
                    key=lambda g: g["streams"])
    return next((g for g in judged if not g["keeps_target"]), None)


def short_text(g: dict) -> str:
    return (f"{g['streams']} streams at once: slowest {g['fps_min']:.1f} fps < "
            f"{g['target_fps']:g} fps")


def not_run(r: dict, counts: Sequence[int]) -> str:
    """Why a row asked for --streams has no judged group of the most streams (What to ship
    cannot say it serves that many cameras), else ""."""
    n = max(counts)
    g = next((g for g in r.get("streams") or [] if g["streams"] == n), None)
    if g is not None and "keeps_target" in g:
        return ""
    if g is not None and g.get("error"):
        return f"{n} streams at once (--streams) failed: {g['error']}"
    return (f"not run as {n} streams at once (--streams): "
            + ("PyTorch eager is no file sharpen run takes" if r.get("backend") == "pytorch"
               else "no video run of it"))
