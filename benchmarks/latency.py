"""Latency: the backends a student runs on, the per-frame timed path, the tiled teacher, and the
streaming pipeline over a generated video.

What is timed for a student is one full frame as `sharpen run` processes it: BGR uint8 frame ->
pre-processing (pad, layout, scale) -> backend.infer -> post-processing (crop, clip, BGR uint8),
i.e. `runtime.prepost.FrameProcessor`. PyTorch eager goes through the same path via a small
`Backend` adapter, so every backend is timed on equal terms.

The teacher (Restormer) is too slow to run whole 1080p frames on a CPU (minutes each): a fixed
number of 512x512 tiles is timed and the time per tile is multiplied by the number of tiles its
Gaussian-blended tiled inference runs for the frame (`runtime.tiling.count_tiles`); the blending
itself (numpy, well under a second) is not included.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from runtime.console import count, first_line
from runtime.formats import FORMATS
from distill.teacher_tiles import OVERLAP as TEACHER_OVERLAP, TILE as TEACHER_TILE

SIZES_FULL = ((1920, 1080), (1280, 720), (640, 360))    # (width, height)
SIZES_REDUCED = ((640, 360),)
SIZES_QUICK_REPORT = ((1920, 1080), (640, 360))
# Quick mode times a student at a size only when its FP32 activations alive at once in a frame's
# forward pass (distill.students.activation_bytes) stay under this: the runtimes' peak memory
# follows it, and the seed layout at 1080p (3.5 GB alive at once, 3.5-4.3 GB resident in every
# CPU runtime) alone would take the quick bench past 4 GB.
QUICK_MAX_ACTIVATION_GB = 2.0


class SkipCase(Exception):
    """This backend cannot run here; the message is the reason."""


def stream_size(sizes: Sequence[tuple[int, int]], full: bool) -> tuple[int, int]:
    """The streaming row's frame size: the largest timed size with --full, the smallest in
    quick mode (the defaults' 1920x1080 and 640x360), so --sizes steers it too."""
    pick = max if full else min
    return pick(sizes, key=lambda wh: wh[0] * wh[1])


def size_label(wh: tuple[int, int]) -> str:
    return f"{wh[0]}x{wh[1]}"


def parse_sizes(spec: str | None) -> Optional[list[tuple[int, int]]]:
    """'1920x1080,640x360' -> [(1920, 1080), (640, 360)] (WIDTHxHEIGHT); None/'' -> None."""
    if not spec:
        return None
    out = []
    for item in str(spec).split(","):
        item = item.strip().lower()
        if not item:
            continue
        try:
            w, h = (int(v) for v in item.split("x"))
        except ValueError:
            raise ValueError(f"bad size {item!r}: expected WIDTHxHEIGHT such as 1920x1080") \
                from None
        if w < 8 or h < 8:
            raise ValueError(f"size {item!r} is too small (at least 8x8)")
        out.append((w, h))
    return out or None


# --------------------------------------------------------------------------- backends

@dataclass(frozen=True)
class BackendSpec:
    key: str             # short id used in test ids and tables
    label: str           # human name
    fmt: Optional[str]   # export format that provides the model (None: PyTorch)
    precision: str
    providers: str = "auto"
    informational: bool = False
    note: str = ""


# PyTorch eager, then one row per deployment format of the one table (runtime.formats).
BACKENDS: tuple[BackendSpec, ...] = (BackendSpec("pytorch", "PyTorch eager", None, "fp32"),) + tuple(
    BackendSpec(f.bench_key, f.label, f.name, f.precision, f.providers, f.informational, f.note)
    for f in FORMATS.values())
BACKEND_BY_KEY = {b.key: b for b in BACKENDS}
BACKEND_BY_FORMAT = {b.fmt: b for b in BACKENDS if b.fmt}


def _torch_backend(model):
    import torch

    from runtime.backends.base import Backend

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    class TorchBackend(Backend):
        """The FP32 PyTorch student behind the runtime's Backend interface (eager mode)."""

        name = "pytorch"
        precision = "fp32"
        layout = "NCHW"

        def __init__(self) -> None:
            from distill.students import for_inference

            from distill.students import receptive_field

            self.model = for_inference(model.to(device))
            self.multiple = int(getattr(model, "multiple", 1))
            # As an export records it: --tile's overlap is then the exported file's.
            self.receptive_field = receptive_field(model)
            self.provider = (f"CUDA ({torch.cuda.get_device_name(0)})" if device.type == "cuda"
                             else f"CPU ({torch.get_num_threads()} thread"
                             f"{'' if torch.get_num_threads() == 1 else 's'})")

        def infer(self, batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                x = torch.from_numpy(batch).to(device)
                if getattr(self.model, "channels_last_input", False):
                    x = x.contiguous(memory_format=torch.channels_last)
                y = self.model(x)
            return y.float().cpu().numpy()

    return TorchBackend()


def open_backend(spec: BackendSpec, weights: str | Path | None, artifacts=None,
                 threads: Optional[int] = None):
    """A loaded runtime Backend for `spec`, or SkipCase(reason) when it cannot run here."""
    if spec.fmt is None:
        try:
            from distill.checkpoint import load_student
        except ImportError as e:
            raise SkipCase(f"PyTorch is not installed ({e.name})") from None
        model, _ = load_student(weights)
        return _torch_backend(model)
    if artifacts is None:
        raise SkipCase(f"no exported {spec.fmt} artifact")
    art = artifacts.get(spec.fmt)
    if art.status == "skipped":
        raise SkipCase(art.reason or f"{spec.fmt} not built")
    if not art.usable:
        raise SkipCase(f"{spec.fmt} export failed: {art.reason or 'no file'}")
    from runtime.backends import load_backend

    try:
        # The bench reports parity failures itself; a failing artifact is still timed.
        return load_backend(art.file, threads=threads or None, providers=spec.providers,
                            force=True)
    except Exception as e:  # noqa: BLE001 - e.g. a TensorRT engine built for another GPU
        first = first_line(e, None)
        raise SkipCase(f"cannot load {Path(art.file).name} here: {first}") from None


# --------------------------------------------------------------------------- frames

_PHOTO: Optional[np.ndarray] = None


def sample_frame(width: int, height: int) -> np.ndarray:
    """A deterministic real-looking BGR uint8 frame of the given size (a scikit-image photo,
    resized; noise when scikit-image is missing). Content does not change a CNN's cost."""
    global _PHOTO
    import cv2

    if _PHOTO is None:
        try:
            import skimage.data

            _PHOTO = np.ascontiguousarray(skimage.data.astronaut()[..., ::-1])
        except Exception:  # noqa: BLE001
            _PHOTO = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    return np.ascontiguousarray(cv2.resize(_PHOTO, (width, height),
                                           interpolation=cv2.INTER_AREA))


def frame_fn(backend, width: int, height: int, tile: int = 0) -> Callable[[], np.ndarray]:
    """The timed call: one frame through FrameProcessor (pre + infer + post), in tiles of
    `tile` as `sharpen run --tile` runs it (0: whole)."""
    from runtime.prepost import FrameProcessor

    # flags: its warnings name --tile, the bench's flag and sharpen run's, not the keyword.
    proc = FrameProcessor(backend, tile=tile, flags=True)
    frame = sample_frame(width, height)
    return lambda: proc(frame)


def tiling_info(backend, width: int, height: int, tile: int) -> dict:
    """A latency row's `tile`, `overlap` and `tiles_per_frame`: the tiles FrameProcessor runs
    a width x height frame in ({} for whole frames), the tile as it runs, rounded up to the
    model's multiple, as `sharpen run --stats` records it."""
    if not tile:
        return {}
    from runtime.prepost import FrameProcessor
    from runtime.tiling import count_tiles

    proc = FrameProcessor(backend, tile=tile)
    return {"tile": proc.tile_runs_as, "overlap": proc.overlap,
            "tiles_per_frame": count_tiles(height, width, proc.tile, proc.overlap,
                                           backend.multiple)}


# --------------------------------------------------------------------------- timing

@dataclass
class Timing:
    median_s: float
    mean_s: float
    stddev_s: float
    min_s: float
    rounds: int
    warmup: int
    p90_s: float = 0.0

    def to_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def p90(times: Sequence[float]) -> float:
    """90th percentile (linear interpolation, numpy's default): the frame time a stream misses
    one frame in ten at."""
    return float(np.percentile(np.asarray(times, np.float64), 90))


def measure(fn: Callable[[], object], *, warmup: int = 1, min_rounds: int = 3,
            max_rounds: int = 50, max_time: float = 1.0, slow_s: Optional[float] = None
            ) -> Timing:
    """pytest-benchmark style: `warmup` untimed calls (the last one estimates the duration), then
    rounds = ceil(max_time / estimate) clamped to [min_rounds, max_rounds]; median reported.
    With `slow_s`, a call slower than that needs only one round (quick mode on slow models)."""
    est = None
    for _ in range(max(warmup, 0)):
        t0 = time.perf_counter()
        fn()
        est = time.perf_counter() - t0
    if est is None:
        t0 = time.perf_counter()
        fn()
        est = time.perf_counter() - t0
        times = [est]
    else:
        times = []
    lo = 1 if slow_s is not None and est >= slow_s else min_rounds
    rounds = max(lo, min(max_rounds, math.ceil(max_time / max(est, 1e-9))))
    while len(times) < rounds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return Timing(statistics.median(times), statistics.fmean(times),
                  statistics.stdev(times) if len(times) > 1 else 0.0, min(times), len(times),
                  max(warmup, 0), p90(times))


# --------------------------------------------------------------------------- teacher tiles

class TeacherTiles:
    """Times the teacher on `n_tiles` tiles and scales to whole frames. A frame smaller than the
    tile on a side runs as one smaller tile (`tiled_apply`), so it is timed at that shape."""

    def __init__(self, weights: str | Path | None = None, config: Optional[str] = None,
                 tile: int = TEACHER_TILE, overlap: int = TEACHER_OVERLAP, n_tiles: int = 1,
                 teacher=None):
        from distill.restormer import Restormer
        from distill.teacher import Teacher

        self.teacher = teacher or Teacher.load(weights, config)
        self.tile, self.overlap, self.n_tiles = tile, overlap, max(1, int(n_tiles))
        self.multiple = Restormer.multiple
        img = sample_frame(max(tile, 64), max(tile, 64))[..., ::-1].astype(np.float32) / 255.0
        self.chw = np.ascontiguousarray(img.transpose(2, 0, 1))

    @property
    def provider(self) -> str:
        """Where the teacher runs, worded as the PyTorch student's backend words it: its row
        named nothing, and ship.on_gpu judged a teacher on CUDA on the CPU's budget."""
        import torch

        device = self.teacher.device
        if device.type == "cuda":
            return f"CUDA ({torch.cuda.get_device_name(device)})"
        n = torch.get_num_threads()
        return f"CPU ({n} thread{'' if n == 1 else 's'})"

    def tile_shape(self, width: int, height: int) -> tuple[int, int]:
        """(h, w) of the tiles a width x height frame runs as."""
        from runtime.tiling import round_up

        return (min(self.tile, round_up(height, self.multiple)),
                min(self.tile, round_up(width, self.multiple)))

    def tile_label(self, width: int, height: int) -> str:
        h, w = self.tile_shape(width, height)
        return f"{w}x{h}"

    def fn(self, shape: Optional[tuple[int, int]] = None) -> Callable[[], None]:
        h, w = shape or (self.tile, self.tile)
        batch = np.ascontiguousarray(self.chw[None, :, :h, :w])

        def run() -> None:
            for _ in range(self.n_tiles):
                self.teacher._run(batch)
        return run

    def tiles(self, width: int, height: int) -> int:
        from runtime.tiling import count_tiles

        return count_tiles(height, width, self.tile, self.overlap, self.multiple)

    def frame_ms(self, timed_s: float, width: int, height: int) -> float:
        """timed_s: the time of `n_tiles` tiles of `tile_shape(width, height)`."""
        return 1000.0 * timed_s / self.n_tiles * self.tiles(width, height)

    def note(self, width: int, height: int) -> str:
        return (f"timed on {count(self.n_tiles, 'tile')} of {self.tile_label(width, height)}, "
                "scaled "
                f"by the {count(self.tiles(width, height), 'tile')} (overlap {self.overlap}) of a "
                f"{width}x{height} frame (runtime.tiling.count_tiles); blending not included")


# --------------------------------------------------------------------------- streaming

def make_video(path: str | Path, width: int, height: int, frames: int, fps: float = 30.0
               ) -> Path:
    """A short generated video: a photo panning slowly (motion, real texture). MP4 (mp4v) when
    OpenCV can write it, else MJPG AVI next to it; returns the path actually written."""
    import cv2

    from runtime.video_sink import refused_write
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    big = sample_frame(width + 64, height + 64)
    for p, fourcc in ((path.with_suffix(".mp4"), "mp4v"), (path.with_suffix(".avi"), "MJPG")):
        w = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
        if not w.isOpened():
            continue
        for i in range(frames):
            dx, dy = (2 * i) % 64, i % 64
            w.write(np.ascontiguousarray(big[dy:dy + height, dx:dx + width]))
        w.release()
        # Cut by a full disk, it is no encoder's fault (nor would the AVI fit): said as the disk
        if (refused := refused_write(p, p)) is not None:
            p.unlink(missing_ok=True)
            raise refused
        cap = cv2.VideoCapture(str(p))
        ok = cap.read()[0]
        cap.release()
        if ok:
            return p
    raise SkipCase("OpenCV cannot write a video here (no mp4v / MJPG encoder)")


def stream(model_path: str | Path, video: str | Path, max_frames: Optional[int] = None,
           threads: Optional[int] = None, providers: str = "auto", tile: int = 0) -> dict:
    """run_stream over the video (lossless, no output file, in tiles of `tile` as `sharpen
    run --tile`); returns its stats dict."""
    from runtime.pipeline import run_stream

    return run_stream(str(model_path), str(video), None, threads=threads, provider=providers,
                      max_frames=max_frames, live=False, quiet=True, force=True, tile=tile,
                      flags=True)   # its warnings name --tile as the timed rows' do


# --------------------------------------------------------------------------- rows

STREAM_NOTE = ("ms: end-to-end latency per frame (read to written, queue waits included), "
               "median and p90; fps: frames written per second of the whole run (capture, "
               "infer and write overlap in threads, so fps is not 1000 / ms)")


def stream_row(summary: dict, /, *, teacher_ms: Optional[float] = None, **base) -> dict:
    """The streaming pipeline's row from run_stream's stats `summary`: its own per-frame
    end-to-end latency (median, p90) as ms, its throughput as fps. 1000 / throughput was
    reported as "ms" before, a frame interval read as a latency."""
    e2e = summary.get("end_to_end_ms") or {}
    fps = summary.get("throughput_fps") or None
    # The provider its session ran on (ship.on_gpu judges a row by it): a stream on ONNX
    # Runtime's CUDA provider was judged on the CPU's budget, its row naming none.
    provider = (summary.get("backend") or {}).get("provider")
    return result_row(ms=e2e.get("p50"), p90_ms=e2e.get("p90"), fps=fps, teacher_ms=teacher_ms,
                      frames_processed=summary.get("frames_processed"), note=STREAM_NOTE,
                      **{"provider": provider, **base})


def result_row(*, model: str, student: Optional[str], backend: BackendSpec | str,
               size: tuple[int, int], ms: Optional[float], target_fps: float,
               teacher_ms: Optional[float] = None, status: str = "ok",
               reason: Optional[str] = None, fps: Optional[float] = None, **extra) -> dict:
    """One latency result as stored in report.json and pytest-benchmark's extra_info.
    Skipped results carry a reason and no numbers (never zeros). `fps`: a measured throughput
    where it is not 1000 / ms (the streaming pipeline, whose stages overlap in threads): the
    target and the speedup are then judged on it, `ms` stays the per-frame latency."""
    spec = BACKEND_BY_KEY.get(backend) if isinstance(backend, str) else backend
    row = {"model": model, "student": student,
           "backend": spec.key if spec else str(backend),
           "backend_label": spec.label if spec else str(backend),
           "format": spec.fmt if spec else None,
           "precision": spec.precision if spec else extra.pop("precision", None),
           "size": size_label(size), "width": size[0], "height": size[1],
           "status": status, "reason": reason, "target_fps": target_fps,
           "ms": None, "fps": None, "meets_target": None, "speedup_vs_teacher": None}
    if spec is not None and spec.informational:
        row["informational"] = True
        row["note"] = spec.note
    if status == "ok" and (ms is not None or fps is not None):
        if fps is None:
            fps = 1000.0 / ms if ms > 0 else float("inf")
        row.update(ms=None if ms is None else round(ms, 3), fps=round(fps, 3),
                   meets_target=bool(fps >= target_fps))
        if teacher_ms:
            row["speedup_vs_teacher"] = round(teacher_ms * fps / 1000.0, 2)
    row.update(extra)
    return row
