"""Peak memory per latency row: what a 1-2 GiB board must leave the model.

The bench's own process holds every student, the teacher and the cache's artifacts, so its
resident set says nothing of one model's. Each row's model is loaded in a child process of its
own, which sharpens a few frames of the row's size through the runtime's FrameProcessor, in the
bench's --tile as `sharpen run --tile` runs them, and reports its peak resident set: /proc's
VmHWM, which counts the engines' native allocations (tracemalloc does not). Not getrusage's
ru_maxrss there: Linux carries the parent's peak across fork and exec into it, so every child
read as large as the bench.

A clip adds what the model's peak leaves out: OpenCV's video decoder and encoder and `sharpen
run`'s queues (about 440 MiB on a tiled 4K clip, README: Peak memory). So each exported file's
row also has a video run's peak: `sharpen run` itself, in a child, on a short generated clip of
the row's size, writing an MP4, the one number a camera box under a memory cap is sized by.

Run as `python -m benchmarks.memory KEY SOURCE WxH FRAMES THREADS [TILE]`, or
`python -m benchmarks.memory video MODEL CLIP OUT THREADS [TILE [PROVIDERS [STATS]]]` (STATS:
`sharpen run --stats`'s file): prints {"peak_rss_mib": X}.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Optional

from runtime.cli_errors import stop_signals_held

UNIT = "MiB"
FRAMES = 2   # the first frame's allocations, and a second that reuses them
# A video run's clip: long enough to fill sharpen run's two 4-frame queues with a frame in
# each stage besides. Its peak grows until then: 1080p ONNX FP32 peaked at 328 MiB on 4
# frames, 364 on 12 and on 40 (LiteRT INT8: 246 on 4, 264 on 6, 287 on 12, 293 on 40).
VIDEO_FRAMES = 12
TIMEOUT_S = 300


def method_text(frames: int = FRAMES, tile: int = 0) -> str:
    return (f"peak resident set (VmHWM in /proc/PID/status, else getrusage's ru_maxrss) of a "
            f"child process per row that loads the model "
            f"and sharpens {frames} noise frames of the row's size through "
            "runtime.prepost.FrameProcessor"
            + (f" in tiles of {tile} (as sharpen run --tile {tile})" if tile else
               " whole (no --tile)")
            + "; Python, OpenCV and the engine included, video decoding and encoding not; host "
            "memory only: a GPU row's CUDA device memory is not counted (its cell says host)")


def video_method_text(frames: int = VIDEO_FRAMES, tile: int = 0) -> str:
    return (f"peak resident set (VmHWM) of `sharpen run --model FILE --source clip.mp4 --out "
            f"out.mp4{f' --tile {tile}' if tile else ''}` in a child process per exported "
            f"file's row, on a generated {frames}-frame clip of the row's size (mp4v, else "
            "MJPG): the model's peak plus OpenCV's video decoder and encoder and the "
            "pipeline's queues")


def measure_video_peak_mib(model: str | Path, clip: str | Path, size: tuple[int, int],
                           threads: Optional[int] = None, tile: int = 0,
                           providers: str = "auto") -> tuple[Optional[float], Optional[str]]:
    """(peak resident MiB of `sharpen run` on `clip`, None), or (None, why). Its output goes
    beside the clip, removed after."""
    out = Path(clip).with_name(f"out-{os.getpid()}-{size[0]}x{size[1]}.mp4")
    try:
        return _run_child(["video", str(model), str(clip), str(out), str(threads or 0),
                           str(tile), providers])
    finally:
        out.unlink(missing_ok=True)


def measure_peak_mib(backend_key: str, source: str | Path, size: tuple[int, int],
                     threads: Optional[int] = None, frames: int = FRAMES, tile: int = 0
                     ) -> tuple[Optional[float], Optional[str]]:
    """(peak resident MiB, None), or (None, why) where the child failed. `source`: the
    exported file, or the checkpoint for the PyTorch row; `tile`: as FrameProcessor's."""
    return _run_child([backend_key, str(source), f"{size[0]}x{size[1]}", str(frames),
                       str(threads or 0), str(tile)])


def child_command(args: list[str]) -> tuple[list[str], dict]:
    """(command line, environment) of this module's child with `args` (benchmarks.streams
    starts N of its video runs at once)."""
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    return [sys.executable, "-m", "benchmarks.memory", *args], env


def _run_child(args: list[str]) -> tuple[Optional[float], Optional[str]]:
    cmd, env = child_command(args)
    proc: Optional[subprocess.Popen] = None
    try:   # subprocess.run's, but an interrupt inside Popen left a child it never had, running
        with stop_signals_held():
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, env=env)
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, f"the memory run took over {TIMEOUT_S} s"
    except OSError as e:   # fork's ENOMEM on a machine already short of memory, among others
        if proc is not None:
            raise
        return None, f"the memory run could not start: {e}"
    finally:
        if proc is not None:
            with proc:   # closes its pipes and reaps it
                if proc.poll() is None:   # timed out, or the bench interrupted (Ctrl-C)
                    proc.kill()
    res = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    if res.returncode != 0:
        return None, child_failure(res)
    return peak_of(res.stdout)


def peak_of(stdout: str) -> tuple[Optional[float], Optional[str]]:
    """The child's last line's peak, or why there is none (null where the child could read no
    peak: no /proc and no getrusage, as on Windows)."""
    try:
        return float(json.loads(stdout.strip().splitlines()[-1])["peak_rss_mib"]), None
    except (ValueError, KeyError, IndexError, TypeError):
        return None, f"the memory run printed no peak: {stdout.strip()[-200:]!r}"


def child_failure(res: subprocess.CompletedProcess) -> str:
    """Why a child gave no peak: the signal that ended it (its last stderr line is then some
    earlier warning, not the cause), else its error's last line."""
    if res.returncode < 0:
        try:
            name = signal.Signals(-res.returncode).name
        except ValueError:
            name = f"signal {-res.returncode}"
        oom = (" (the out-of-memory killer, most likely: the model needs more memory than is "
               "free here)" if -res.returncode == signal.SIGKILL else "")
        return f"the memory run was killed by {name}{oom}"
    tail = (res.stderr.strip().splitlines() or [f"exit status {res.returncode}"])[-1]
    return f"the memory run failed: {tail}"


def _video_child(argv: list[str]) -> int:
    optional = ["0", "auto", ""]   # TILE, PROVIDERS, STATS
    model, clip, out, threads, tile, providers, stats = (argv + optional[len(argv) - 4:])[:7]
    # runtime.cli's `sharpen run`, as a runtime-only device has it (the `sharpen` command line
    # sits above the bench; its `run` is this one, at the same peak within a few MiB).
    from runtime.cli import main

    rc = main(["run", "--model", model, "--source", clip, "--out", out, "--quiet", "--force",
               "--provider", providers, *(["--threads", threads] if int(threads) else []),
               *(["--tile", tile] if int(tile) else []),
               *(["--stats", stats] if stats else [])])
    if rc:
        return rc   # its one error line is on stderr, the row's reason
    from runtime.host import peak_memory_mib

    print(json.dumps({"peak_rss_mib": _vm_hwm_mib() or peak_memory_mib()}))
    return 0


def _child(argv: list[str]) -> int:
    if argv[:1] == ["video"]:
        return _video_child(argv[1:])
    key, source, size, frames, threads, tile = (argv + ["0"])[:6]
    width, height = (int(v) for v in size.split("x"))
    from runtime.host import peak_memory_mib

    import numpy as np

    from runtime.prepost import FrameProcessor

    from .latency import BACKEND_BY_KEY, open_backend

    spec = BACKEND_BY_KEY[key]
    if spec.fmt is None:
        backend = open_backend(spec, source)
    else:
        from runtime.backends import load_backend

        backend = load_backend(source, threads=int(threads) or None, providers=spec.providers,
                               force=True)
    try:
        # Noise, not latency.sample_frame's photo: scikit-image's import (SciPy with it) added
        # about 40 MiB that `sharpen run` never holds; content does not change a CNN's cost.
        frame = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        proc = FrameProcessor(backend, tile=int(tile))
        for _ in range(int(frames)):
            proc(frame)
    finally:
        backend.close()
    print(json.dumps({"peak_rss_mib": _vm_hwm_mib() or peak_memory_mib()}))
    return 0


def _vm_hwm_mib() -> Optional[float]:
    """This process's peak resident set in MiB from /proc (Linux), None elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)   # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
