"""`sharpen bench --out DIR`: measure and write the benchmark report.

DIR/report.md and DIR/report.json hold the quality table, the latency table (ms and fps per model,
backend and size, speedup over the teacher, whether the target frame rate is met), the streaming
pipeline's end-to-end fps, the checks, the machine description and the commands to reproduce; the
PNG figures are latency per backend, quality versus latency (real-time line drawn) and
side-by-side crops (blurred | students | teacher | ground truth) of the hardest test images.

Every number comes from a run made here (`benchmarks.latency.measure`, the same warm-up and
calibrated-rounds scheme as pytest-benchmark, median reported). Quick mode (default): 1920x1080
and 640x360, few rounds, QUICK_LIMIT held-out images; full mode: 1920x1080, 1280x720 and
640x360, more rounds, every held-out image. A failed check still writes the report, then the
command exits 1.
"""
from __future__ import annotations

import datetime
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from runtime.atomic import atomic_write_bytes

from .artifacts import (DEFAULT_CALIB_COUNT, BenchError, atomic_write_json, default_cache_root,
                        ensure_artifacts, resolve_students, split_list)
from .latency import (BACKENDS, SIZES_FULL, SIZES_QUICK_REPORT, TEACHER_OVERLAP, TEACHER_TILE,
                      SkipCase, TeacherTiles, frame_fn, make_video, measure, open_backend,
                      parse_sizes, result_row, size_label, stream)
from .quality import (DEFAULT_MIN_SSIM_RATIO, QUICK_LIMIT, TABLE_HEADERS, TeacherOutputs,
                      evaluate, format_table, load_pairs)

REPORT_FORMAT = "sharpen-bench/1"
FIGURES = {"latency": "latency_per_backend.png", "scatter": "quality_vs_latency.png",
           "crops": "hardest_crops.png"}


@dataclass
class BenchOptions:
    out: str
    full: bool = False
    target_fps: float = 30.0
    students: Optional[Sequence[str]] = None
    teacher_weights: Optional[str] = None
    teacher_config: Optional[str] = None
    data: Optional[str] = None
    real_pairs: Optional[str] = None         # real blur/sharp pairs (e.g. reds-mini, GoPro)
    real_nogt: Optional[str] = None          # real blurred frames without ground truth
    min_ssim_ratio: float = DEFAULT_MIN_SSIM_RATIO
    min_ssim_gain: Optional[float] = None    # when set, gates on the SSIM gain instead
    limit: Optional[int] = None
    sizes: Optional[str] = None
    formats: Optional[str] = None
    cache: Optional[str] = None
    threads: int = 0
    calib_count: int = DEFAULT_CALIB_COUNT
    stream_frames: Optional[int] = None
    latency: bool = True
    quiet: bool = False
    argv: list = field(default_factory=list)

    def mode(self) -> dict:
        """Sizes, rounds, images: quick (default) or full."""
        if self.full:
            m = dict(sizes=list(SIZES_FULL), warmup=2, min_rounds=5, max_rounds=100,
                     max_time=3.0, slow_s=None, teacher_tiles=2, teacher_rounds=3,
                     limit=None, stream_size=(1920, 1080), stream_frames=30)
        else:
            # Two warm-up calls: ONNX Runtime's first two runs at a new shape still allocate.
            m = dict(sizes=list(SIZES_QUICK_REPORT), warmup=2, min_rounds=3, max_rounds=20,
                     max_time=1.0, slow_s=2.0, teacher_tiles=1, teacher_rounds=1,
                     limit=QUICK_LIMIT, stream_size=(640, 360), stream_frames=24)
        sizes = parse_sizes(self.sizes)
        if sizes:
            m["sizes"] = sizes
        if self.limit is not None:
            m["limit"] = self.limit
        if self.stream_frames is not None:
            m["stream_frames"] = self.stream_frames
        return m


class Console:
    """Step messages on stderr (silent with quiet)."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- machine

def _version(*dists: str) -> Optional[str]:
    from importlib.metadata import PackageNotFoundError, version

    for d in dists:
        try:
            return version(d)
        except PackageNotFoundError:
            continue
    return None


def machine_info() -> dict:
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cpu = cpu or platform.processor() or platform.machine()
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    gpus = []
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                  "--format=csv,noheader"], capture_output=True, text=True,
                                 timeout=20)
            gpus = [ln.strip() for ln in out.stdout.splitlines() if ln.strip()]
        except (OSError, subprocess.SubprocessError):
            pass
    libs = {
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "torch": _version("torch"),
        "onnxruntime": _version("onnxruntime", "onnxruntime-gpu"),
        "onnx": _version("onnx"),
        "tensorflow": _version("tensorflow", "tensorflow-cpu", "tensorflow_cpu"),
        "ai_edge_litert": _version("ai-edge-litert", "ai_edge_litert"),
        "opencv": _version("opencv-python-headless", "opencv-python", "opencv-contrib-python"),
        "tensorrt": _version("tensorrt", "tensorrt-cu12", "tensorrt_cu12"),
        "nvidia_modelopt": _version("nvidia-modelopt"),
        "scikit_image": _version("scikit-image"),
        "pytest_benchmark": _version("pytest-benchmark"),
    }
    threads = None
    try:
        import torch

        threads = torch.get_num_threads()
    except ImportError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except (OSError, ValueError):
        pass
    return {"cpu": cpu, "logical_cores": os.cpu_count(), "usable_cores": affinity,
            "torch_threads": threads, "memory": mem, "gpus": gpus,
            "os": f"{platform.system()} {platform.release()}", "machine": platform.machine(),
            "libraries": {k: v for k, v in libs.items() if v is not None},
            "missing_libraries": sorted(k for k, v in libs.items() if v is None)}


# --------------------------------------------------------------------------- latency

def run_latency(opts: BenchOptions, students, artifact_sets: dict, teacher_tiles, say) -> dict:
    m = opts.mode()
    sizes, target = m["sizes"], opts.target_fps
    rows: list[dict] = []
    teacher_ms: dict[str, float] = {}
    timing = dict(warmup=m["warmup"], min_rounds=m["min_rounds"], max_rounds=m["max_rounds"],
                  max_time=m["max_time"], slow_s=m["slow_s"])

    # ---- teacher: one tile timing, scaled per size
    if teacher_tiles is not None:
        say(f"latency: teacher, {teacher_tiles.n_tiles} tile(s) of {teacher_tiles.tile}px "
            f"x {m['teacher_rounds']} round(s)")
        try:
            t = measure(teacher_tiles.fn(), warmup=1, min_rounds=m["teacher_rounds"],
                        max_rounds=m["teacher_rounds"], max_time=0.0)
            tile_ms = 1000.0 * t.median_s / teacher_tiles.n_tiles
            for wh in sizes:
                ms = teacher_tiles.frame_ms(t.median_s, *wh)
                teacher_ms[size_label(wh)] = ms
                rows.append(result_row(model="teacher", student=None, backend="teacher-tiled",
                                       size=wh, ms=ms, target_fps=target, precision="fp32",
                                       backend_label="PyTorch (tiled)",
                                       tile_ms=round(tile_ms, 3),
                                       tiles_per_frame=teacher_tiles.tiles(*wh),
                                       rounds=t.rounds, note=teacher_tiles.note(*wh),
                                       scaled=True))
        except Exception as e:  # noqa: BLE001
            for wh in sizes:
                rows.append(result_row(model="teacher", student=None, backend="teacher-tiled",
                                       size=wh, ms=None, target_fps=target, status="error",
                                       reason=f"{type(e).__name__}: {e}",
                                       backend_label="PyTorch (tiled)", precision="fp32"))

    # ---- students on every backend
    cases = [(st, spec) for st in students for spec in BACKENDS]
    bar = _bar(len(cases) * len(sizes), "latency", opts.quiet)
    for st, spec in cases:
        arts = artifact_sets.get(st.name)
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
                try:
                    t = measure(frame_fn(backend, *wh), **timing)
                    rows.append(result_row(
                        model=f"student {st.name}", student=st.name, backend=spec, size=wh,
                        ms=1000 * t.median_s, target_fps=target,
                        teacher_ms=teacher_ms.get(lbl), provider=backend.provider,
                        engine=backend.name, timing={k: round(v * 1000, 3) if k.endswith("_s")
                                                     else v for k, v in t.to_dict().items()}))
                except Exception as e:  # noqa: BLE001
                    rows.append(result_row(model=f"student {st.name}", student=st.name,
                                           backend=spec, size=wh, ms=None, target_fps=target,
                                           status="error", reason=f"{type(e).__name__}: {e}"))
                bar(1)
        finally:
            backend.close()
    bar(0, close=True)

    # ---- streaming pipeline over a generated video (ONNX Runtime FP32 model)
    streams = []
    if m["stream_frames"]:
        w, h = m["stream_size"]
        with tempfile.TemporaryDirectory(prefix="sharpen-bench-") as tmp:
            try:
                video = make_video(Path(tmp) / "bench", w, h, m["stream_frames"])
            except SkipCase as e:
                video, reason = None, str(e)
            for st in students:
                arts = artifact_sets.get(st.name)
                art = arts.get("onnx") if arts else None
                base = dict(model=f"student {st.name}", student=st.name,
                            backend="pipeline-ort-fp32", size=(w, h), target_fps=target,
                            backend_label="sharpen run pipeline (ONNX Runtime FP32)",
                            precision="fp32", frames=m["stream_frames"])
                if video is None or art is None or not art.usable:
                    why = reason if video is None else (
                        art.reason if art is not None else "no ONNX artifact")
                    streams.append(result_row(ms=None, status="skipped", reason=why, **base))
                    continue
                say(f"streaming pipeline: {st.name} ONNX FP32, {m['stream_frames']} frames "
                    f"of {w}x{h}")
                try:
                    s = stream(art.file, video, max_frames=m["stream_frames"],
                               threads=opts.threads or None)
                    fps = s["throughput_fps"]
                    e2e = s["end_to_end_ms"]
                    streams.append(result_row(
                        ms=1000.0 / fps if fps else None, teacher_ms=teacher_ms.get(
                            size_label((w, h))), stats={
                            "frames_processed": s["frames_processed"],
                            "throughput_fps": fps, "end_to_end_ms": e2e,
                            "latency_ms": s["latency_ms"],
                            "provider": s.get("backend", {}).get("provider")}, **base))
                except Exception as e:  # noqa: BLE001
                    streams.append(result_row(ms=None, status="error",
                                              reason=f"{type(e).__name__}: {e}", **base))
    return {"rows": rows, "stream": streams,
            "settings": {"sizes": [size_label(s) for s in sizes], "target_fps": target,
                         "warmup": m["warmup"], "min_rounds": m["min_rounds"],
                         "max_rounds": m["max_rounds"], "max_time_s": m["max_time"],
                         "slow_single_round_s": m["slow_s"],
                         "timed": "one BGR uint8 frame through runtime.prepost.FrameProcessor "
                                  "(pre + infer + post), median of the rounds",
                         "teacher": (teacher_tiles.note(*sizes[0]) if teacher_tiles else None),
                         "stream": (f"{m['stream_frames']} frames of "
                                    f"{size_label(m['stream_size'])}, generated video, "
                                    "run_stream lossless, no output file")}}


def _bar(total: int, desc: str, quiet: bool):
    if quiet:
        return lambda n, close=False: None
    try:
        from tqdm import tqdm
    except ImportError:
        return lambda n, close=False: None
    b = tqdm(total=total, desc=f"  {desc}", unit="case", leave=False, disable=None,
             file=sys.stderr)

    def update(n: int, close: bool = False) -> None:
        if n:
            b.update(n)
        if close:
            b.close()
    return update


# --------------------------------------------------------------------------- orchestration

def run_bench(opts: BenchOptions) -> tuple[dict, int]:
    """Measure everything, write the report; returns (report dict, exit code 0/1).
    Raises BenchError for usage problems."""
    say = Console(opts.quiet)
    t_start = time.perf_counter()
    out = Path(opts.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BenchError(f"cannot create the output folder {out}: {e.strerror or e}") from None
    if opts.target_fps <= 0:
        raise BenchError(f"--target-fps must be > 0, got {opts.target_fps}")
    if not 0 <= opts.min_ssim_ratio <= 1.5:
        raise BenchError(f"--min-ssim-ratio must be in [0, 1.5], got {opts.min_ssim_ratio}")
    if opts.min_ssim_gain is not None and not 0 <= opts.min_ssim_gain <= 1.5:
        raise BenchError(f"--min-ssim-gain must be in [0, 1.5], got {opts.min_ssim_gain}")
    try:
        m = opts.mode()
    except ValueError as e:
        raise BenchError(str(e)) from None
    cache = Path(opts.cache) if opts.cache else default_cache_root()
    students = resolve_students(opts.students)
    pairs, data_desc = load_pairs(opts.data, m["limit"])
    teacher_out = TeacherOutputs(opts.teacher_weights, opts.teacher_config, TEACHER_TILE,
                                 TEACHER_OVERLAP, cache)
    say(f"sharpen bench ({'full' if opts.full else 'quick'} mode): students "
        f"{', '.join(s.name for s in students)}; {data_desc}; cache {cache}")

    from distill.checkpoint import CheckpointError

    artifact_sets = {}
    for st in students:
        try:
            artifact_sets[st.name] = ensure_artifacts(st, cache, opts.formats, opts.calib_count,
                                                      quiet=opts.quiet, say=say)
        except CheckpointError as e:
            raise BenchError(str(e)) from None

    say(f"quality: {len(pairs)} held-out images; teacher outputs cached in {teacher_out.folder}")
    quality = evaluate(pairs, teacher_out, students, artifact_sets, opts.min_ssim_ratio,
                       min_ssim_gain=opts.min_ssim_gain, threads=opts.threads,
                       data_desc=data_desc, progress=not opts.quiet,
                       say=say)

    real = {}
    if opts.real_pairs or opts.real_nogt:
        from .realblur import run_real_blur
        out.mkdir(parents=True, exist_ok=True)
        real = run_real_blur(opts.real_pairs, opts.real_nogt, teacher_out, students, out,
                             opts.full, opts.quiet, say)

    latency = {"rows": [], "stream": [], "settings": {"skipped": "--no-latency"}}
    if opts.latency:
        tiles = TeacherTiles(teacher=teacher_out.teacher, n_tiles=m["teacher_tiles"])
        latency = run_latency(opts, students, artifact_sets, tiles, say)

    checks = quality.checks
    ok = all(c["passed"] for c in checks)
    report = {
        "format": REPORT_FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mode": "full" if opts.full else "quick", "ok": ok, "exit_code": 0 if ok else 1,
        "settings": {"target_fps": opts.target_fps,
                     "min_ssim_ratio": None if opts.min_ssim_gain is not None
                     else opts.min_ssim_ratio, "min_ssim_gain": opts.min_ssim_gain,
                     "limit": m["limit"], "data": opts.data or "embedded",
                     "formats": opts.formats or "all", "cache": str(cache),
                     "threads": opts.threads, "calib_count": opts.calib_count,
                     "students": [s.to_dict() for s in students],
                     "teacher": teacher_out.describe()},
        "machine": machine_info(),
        "commands": reproduce_commands(opts),
        "checks": checks,
        "quality": quality.to_dict(),
        "real_blur": real,
        "latency": latency,
        "artifacts": {k: v.to_dict() for k, v in artifact_sets.items()},
        "skipped": skipped_list(quality, latency),
        "figures": {},
    }
    report["figures"] = write_figures(report, quality, out, opts.target_fps, say)
    report["wall_s"] = round(time.perf_counter() - t_start, 1)
    atomic_write_json(out / "report.json", finite(report))
    write_text(out / "report.md", render_markdown(report))
    say(f"report: {out / 'report.md'} and {out / 'report.json'} ({report['wall_s']:.0f} s)")
    return report, report["exit_code"]


def reproduce_commands(opts: BenchOptions) -> list[str]:
    argv = [a for a in opts.argv] if opts.argv else ["--out", opts.out]
    cmd = "sharpen bench " + " ".join(shlex.quote(a) for a in argv)
    pyt = ["pytest", "benchmarks/"]
    if opts.full:
        pyt.append("--bench-full")
    if opts.students:
        pyt += ["--students", ",".join(split_list(opts.students))]
    if opts.teacher_weights:
        pyt += ["--teacher-weights", opts.teacher_weights]
    if opts.data:
        pyt += ["--data", opts.data]
    if opts.target_fps != 30:
        pyt += ["--target-fps", f"{opts.target_fps:g}"]
    if opts.min_ssim_gain is not None:
        pyt += ["--min-ssim-gain", f"{opts.min_ssim_gain:g}"]
    elif opts.min_ssim_ratio != DEFAULT_MIN_SSIM_RATIO:
        pyt += ["--min-ssim-ratio", f"{opts.min_ssim_ratio:g}"]
    pyt += ["--benchmark-json", "bench.json"]
    return [cmd, " ".join(shlex.quote(a) for a in pyt),
            "pytest benchmarks/ --benchmark-compare  # against the last saved run "
            "(save with --benchmark-autosave)"]


def skipped_list(quality, latency: dict) -> list[dict]:
    out, seen = [], set()
    for r in quality.rows:
        if r["status"] == "skipped":
            key = ("quality", r["key"])
            if key not in seen:
                seen.add(key)
                out.append({"what": f"quality {r['key']}", "reason": r["reason"]})
    for r in latency.get("rows", []) + latency.get("stream", []):
        if r["status"] == "skipped":
            key = ("latency", r["model"], r["backend"])
            if key not in seen:
                seen.add(key)
                out.append({"what": f"latency {r['model']} {r['backend_label']}",
                            "reason": r["reason"]})
    return out


def finite(obj):
    """JSON has no inf/nan: they become strings."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


# --------------------------------------------------------------------------- markdown

def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    def esc(s) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


LATENCY_HEADERS = ["model", "backend", "precision", "size", "ms / frame", "fps",
                   "speedup vs teacher", "meets target", "note"]


def short_reason(reason) -> str:
    """Table cell: the reason without its parenthesised advice (kept in the report JSON and the
    'Skipped' section)."""
    reason = str(reason or "")
    return reason.split(" (")[0] if " (" in reason and not reason.startswith("(") else reason


def latency_table(rows: list[dict]) -> list[list[str]]:
    """One row per measured result; a backend skipped (or failed) at every size is one row."""
    out = []
    sizes_of: dict = {}
    for r in rows:
        if r["status"] != "ok":
            sizes_of.setdefault((r["model"], r["backend"], r["status"], r["reason"]),
                                []).append(r["size"])
    done = set()
    for r in rows:
        if r["status"] != "ok":
            key = (r["model"], r["backend"], r["status"], r["reason"])
            if key in done:
                continue
            done.add(key)
            sizes = sizes_of[key]
            size = sizes[0] if len(sizes) == 1 else ", ".join(sizes)
            out.append([r["model"], r["backend_label"], (r.get("precision") or "").upper(),
                        size, "-", "-", "-", "-", f"{r['status']}: {short_reason(r['reason'])}"])
            continue
        note = r.get("note", "") if r.get("informational") else ""
        if r["model"] == "teacher":
            note = f"scaled: {r['tiles_per_frame']} tiles x {r['tile_ms']:.0f} ms"
        out.append([r["model"], r["backend_label"], (r.get("precision") or "").upper(),
                    r["size"], f"{r['ms']:.1f}", f"{r['fps']:.2f}",
                    f"{r['speedup_vs_teacher']:.0f}x" if r.get("speedup_vs_teacher")
                    else "-", "yes" if r["meets_target"] else "no", note])
    return out


STREAM_HEADERS = ["model", "size", "frames", "fps (throughput)", "end-to-end p50 ms",
                  "meets target"]


def stream_table(rows: list[dict]) -> list[list[str]]:
    out = []
    for r in rows:
        if r["status"] == "ok":
            st = r.get("stats", {})
            e2e = (st.get("end_to_end_ms") or {}).get("p50")
            out.append([r["model"], r["size"], str(st.get("frames_processed")),
                        f"{r['fps']:.2f}", "-" if e2e is None else f"{e2e:.1f}",
                        "yes" if r["meets_target"] else "no"])
        else:
            out.append([r["model"], r["size"], "-", "-", "-",
                        f"{r['status']}: {short_reason(r['reason'])}"])
    return out


def render_markdown(rep: dict) -> str:
    s = rep["settings"]
    q = rep["quality"]
    lat = rep["latency"]
    mach = rep["machine"]
    tgt = s["target_fps"]
    lines = [f"# Benchmark report ({rep['mode']} mode)", "",
             f"Created {rep['created']} in {rep.get('wall_s', 0):.0f} s. "
             f"Target: {tgt:g} fps (real time at 1920x1080 means <= {1000 / tgt:.1f} ms per "
             "frame).", ""]
    fails = [c for c in rep["checks"] if not c["passed"]]
    lines += ["## Checks", ""]
    if not rep["checks"]:
        lines.append("No checks ran.")
    lines += [f"- {'PASS' if c['passed'] else '**FAIL**'}: {c['message']}" for c in rep["checks"]]
    lines += ["", f"Result: {'all checks passed' if not fails else f'{len(fails)} check(s) FAILED'}",
              ""]
    lines += ["## Quality", "",
              f"Held-out set: {q['data']}. PSNR/SSIM (scikit-image, RGB, [0, 1]) against ground "
              "truth, mean over the images; SSIM vs teacher is against the teacher's output; "
              "parity is the worst image against the FP32 PyTorch student (gates from "
              f"`optimize.export.Thresholds`: FP32 max abs < "
              f"{q['settings']['thresholds']['fp32_max_abs']:g}, INT8/FP16 SSIM >= "
              f"{q['settings']['thresholds']['min_ssim']:g}). Teacher: "
              f"{Path(s['teacher']['weights']).name} (sha256 {s['teacher']['hash']}), tiled "
              f"{s['teacher']['tile']} px, overlap {s['teacher']['overlap']}, Gaussian-blended.",
              ""]
    from .quality import QualityResult

    qr = QualityResult(q["data"], q["images"], q["rows"], rep["checks"], {}, q["settings"])
    lines += [_md_table(TABLE_HEADERS, format_table(qr)), ""]
    from .realblur import markdown as real_markdown
    lines += real_markdown(rep.get("real_blur"), _md_table)
    lines += ["## Latency", "",
              f"Timed: {lat['settings'].get('timed', '-')}. Warm-up {lat['settings'].get('warmup')}"
              f", rounds calibrated to ~{lat['settings'].get('max_time_s')} s (min "
              f"{lat['settings'].get('min_rounds')}, max {lat['settings'].get('max_rounds')}"
              + (f"; calls slower than {lat['settings']['slow_single_round_s']:g} s: 1 round"
                 if lat["settings"].get("slow_single_round_s") else "") + ").", ""]
    if lat["settings"].get("teacher"):
        lines += [f"Teacher: {lat['settings']['teacher']}; the other sizes scale the same "
                  "per-tile time by their tile count.", ""]
    if lat["rows"]:
        lines += [_md_table(LATENCY_HEADERS, latency_table(lat["rows"])), ""]
    if lat.get("stream"):
        lines += ["### Streaming pipeline (end to end)", "",
                  f"{lat['settings'].get('stream')}: capture -> pre -> infer -> post in "
                  "threads (`runtime.pipeline.run_stream`).", ""]
        lines += [_md_table(STREAM_HEADERS, stream_table(lat["stream"])), ""]
    if rep["skipped"]:
        lines += ["## Skipped", ""]
        lines += [f"- {d['what']}: {d['reason']}" for d in rep["skipped"]]
        lines.append("")
    lines += ["## Figures", ""]
    for key, title in (("latency", "Latency per backend"),
                       ("scatter", "Quality versus latency"),
                       ("crops", "Hardest test images (lowest input PSNR)")):
        if rep["figures"].get(key):
            lines += [f"### {title}", "", f"![{title}]({rep['figures'][key]})", ""]
    for key, title in (("pairs", "Real blur pairs: the teacher's four worst"),
                       ("nogt", "Real blur without ground truth")):
        fig = (rep.get("real_blur") or {}).get("figures", {}).get(key)
        if fig:
            lines += [f"### {title}", "", f"![{title}]({fig})", ""]
    libs = ", ".join(f"{k} {v}" for k, v in mach["libraries"].items())
    lines += ["## Machine", "",
              f"- CPU: {mach['cpu']} ({mach['logical_cores']} logical cores, "
              f"{mach['usable_cores']} usable; torch threads {mach['torch_threads']})",
              f"- Memory: {mach['memory']}",
              f"- GPU: {'; '.join(mach['gpus']) if mach['gpus'] else 'none'}",
              f"- OS: {mach['os']} ({mach['machine']})",
              f"- Libraries: {libs}",
              f"- Not installed: {', '.join(mach['missing_libraries']) or '-'}", ""]
    lines += ["## Reproduce", "", "```"] + rep["commands"] + ["```", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- figures

def write_figures(rep: dict, quality, out: Path, target_fps: float, say) -> dict:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: F401
    except ImportError:
        say("matplotlib is not installed: no figures")
        return {}
    figs = {}
    for key, fn in (("latency", _fig_latency), ("scatter", _fig_scatter),
                    ("crops", _fig_crops)):
        try:
            if fn(rep, quality, out / FIGURES[key], target_fps):
                figs[key] = FIGURES[key]
        except Exception as e:  # noqa: BLE001 - a figure must not lose the report
            say(f"figure {FIGURES[key]} failed: {type(e).__name__}: {e}")
    return figs


def _fig_latency(rep, quality, path: Path, target_fps: float) -> bool:
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [r for r in rep["latency"]["rows"] if r["status"] == "ok"]
    if not rows:
        return False
    sizes = list(dict.fromkeys(r["size"] for r in rows))
    labels = list(dict.fromkeys(
        ("teacher" if r["model"] == "teacher" else f"{r['student']}\n{r['backend_label']}")
        for r in rows))
    ms = {(("teacher" if r["model"] == "teacher" else f"{r['student']}\n{r['backend_label']}"),
           r["size"]): r["ms"] for r in rows}
    x = np.arange(len(labels))
    wdt = 0.8 / len(sizes)
    fig, ax = plt.subplots(figsize=(max(8, 0.9 * len(labels) + 2), 5.5))
    for i, s in enumerate(sizes):
        vals = [ms.get((lb, s), np.nan) for lb in labels]
        ax.bar(x + (i - (len(sizes) - 1) / 2) * wdt, vals, wdt, label=s)
    ax.axhline(1000.0 / target_fps, color="red", ls="--", lw=1,
               label=f"{target_fps:g} fps ({1000 / target_fps:.1f} ms)")
    ax.set_yscale("log")
    ax.set_ylabel("ms per frame (log)")
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    ax.set_title("Latency per backend (teacher: tile time x tile count)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _fig_scatter(rep, quality, path: Path, target_fps: float) -> bool:
    import matplotlib.pyplot as plt

    rows = [r for r in rep["latency"]["rows"] if r["status"] == "ok"]
    if not rows:
        return False
    # The largest measured size (1920x1080 when measured).
    size = max((r["width"] * r["height"], r["size"]) for r in rows)[1]
    qrows = {r["key"]: r for r in rep["quality"]["rows"]}
    fmt_of = {b.key: b.fmt for b in BACKENDS}
    pts = []
    for r in rows:
        if r["size"] != size:
            continue
        if r["model"] == "teacher":
            q = qrows.get("teacher")
            label = "teacher"
        else:
            fmt = fmt_of.get(r["backend"]) or "pytorch"
            q = qrows.get(f"{r['student']}/{fmt}")
            label = f"{r['student']} {r['backend_label']}"
        if q and q.get("ssim") is not None:
            pts.append((r["ms"], q["ssim"], label))
    if not pts:
        return False
    fig, ax = plt.subplots(figsize=(11, 6))
    markers = "osD^vP*Xh<>"
    cmap = plt.get_cmap("tab10")
    for i, (ms, ss, lb) in enumerate(pts):
        ax.scatter(ms, ss, s=45, marker=markers[i % len(markers)], color=cmap(i % 10),
                   label=f"{lb} ({ms:.0f} ms, SSIM {ss:.3f})")
    inp = qrows.get("input")
    if inp and inp.get("ssim") is not None:
        ax.axhline(inp["ssim"], color="gray", ls=":", lw=1, label="blurred input SSIM")
    ax.axvline(1000.0 / target_fps, color="red", ls="--", lw=1,
               label=f"real time: {target_fps:g} fps = {1000 / target_fps:.1f} ms")
    ax.set_xscale("log")
    ax.set_xlabel(f"ms per frame at {size} (log)")
    ax.set_ylabel("SSIM vs ground truth (mean)")
    ax.set_title("Quality versus latency (one point per model and format)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _fig_crops(rep, quality, path: Path, target_fps: float) -> bool:
    import matplotlib.pyplot as plt

    from distill.evaluate import crop_box

    crops = quality.crops if quality is not None else {}
    if not crops:
        return False
    psnr_of = {d["image"]: d["input_psnr"] for d in rep["quality"]["images"]}
    names = sorted(crops, key=lambda n: psnr_of.get(n, 0.0))
    students = [s["name"] for s in rep["settings"]["students"]]
    cols = ["blurred"] + [s for s in students if any(s in crops[n] for n in names)] + \
        ["teacher", "sharp"]
    titles = {"blurred": "blurred", "teacher": "teacher", "sharp": "ground truth"}
    fig, axes = plt.subplots(len(names), len(cols), figsize=(2.6 * len(cols), 2.8 * len(names)),
                             squeeze=False)
    for i, n in enumerate(names):
        y, x, side = crop_box(crops[n]["sharp"], 160)
        for j, c in enumerate(cols):
            ax = axes[i][j]
            ax.axis("off")
            img = crops[n].get(c)
            if img is None:
                continue
            ax.imshow(img[y:y + side, x:x + side].clip(0, 1), interpolation="nearest")
            title = titles.get(c, f"student {c}")
            if j == 0:
                ax.set_title(f"{n}\nblurred ({psnr_of.get(n, float('nan')):.1f} dB)",
                             fontsize=8)
            elif i == 0:
                ax.set_title(title, fontsize=9)
    fig.suptitle("Hardest blur in the held-out set: blurred | students | teacher | "
                 "ground truth", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
