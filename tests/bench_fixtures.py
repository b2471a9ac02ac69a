"""What the `sharpen bench` tests (tests/test_bench_*.py) share: tiny models and a 3-image
paired folder, the bench run in-process, the benchmark suite in a subprocess. tests/conftest.py
makes the models and the plain bench run once per session (bench_env, bench_good_run), so the
files, spread over pytest-xdist's workers, do not each export and time them again."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from distill.checkpoint import atomic_save, make_checkpoint
from distill.images import read_image, write_image
from distill.restormer import build_restormer
from distill.students import create_student

ROOT = Path(__file__).resolve().parents[1]
MISSING_REASON = "TensorRT is not installed (simulated by the test)"
# What to ship's peak is the model's: a tiled 4K clip's run peaked ~440 MiB above it (README).
NO_VIDEO_IO = "video decoding and encoding not counted"


def make_bench_env(d: Path) -> Path:
    """A tiny teacher, a `fast` student (good), a zeroed `seed` one (bad: black output) and a
    3-image paired folder under `d`; the tests' bench runs share `d / "cache"`."""
    torch.manual_seed(0)
    teacher = build_restormer("tiny")
    atomic_save(make_checkpoint(teacher, kind="teacher", arch="restormer",
                                arch_args=teacher.config.to_dict()), d / "teacher.pt")
    good = create_student("fast", width=8)
    atomic_save(make_checkpoint(good, kind="student", arch="fast", arch_args=good.arch_args),
                d / "student-good.pt")
    bad = create_student("seed")
    with torch.no_grad():
        for p in bad.parameters():
            p.zero_()
    atomic_save(make_checkpoint(bad, kind="student", arch="seed", arch_args=bad.arch_args),
                d / "student-bad.pt")
    import skimage.data

    for i, name in enumerate(("astronaut", "coffee", "chelsea")):
        img = getattr(skimage.data, name)()[..., :3].astype(np.float32) / 255.0
        img = cv2.resize(img, (96, 64), interpolation=cv2.INTER_AREA)
        write_image(d / "pairs" / "target" / f"{name}.png", img)
        write_image(d / "pairs" / "input" / f"{name}.png",
                    cv2.GaussianBlur(img, (0, 0), 1.0 + i))
    return d


def _bench(env: Path, out: str, *extra: str) -> int:
    """Run `sharpen bench` in-process through benchmarks.cli, with the TensorRT engine
    reported as unavailable whatever this machine has (the missing backend under test)."""
    from benchmarks import cli as bench_cli
    from optimize.export import FORMATS

    args = ["--out", str(env / out), "--teacher-weights", str(env / "teacher.pt"),
            "--data", str(env / "pairs"), "--cache", str(env / "cache"), "--quiet", *extra]
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(FORMATS, "engine", dataclasses.replace(FORMATS["engine"],
                                                          available=lambda: MISSING_REASON))
        return bench_cli.main(args)


def good_bench_run(env: Path) -> tuple[int, dict]:
    """The good student's bench (ONNX, and the engine reported missing) at one small size:
    its exit status and report.json."""
    rc = _bench(env, "good", "--students", str(env / "student-good.pt"),
                "--formats", "onnx,engine", "--sizes", "160x96", "--stream-frames", "3")
    return rc, json.loads((env / "good" / "report.json").read_text())


SUITE_FILES = ("test_latency.py", "test_quality.py")


def _run_suite(*args: str, file: str = "", expect: int | None = None, timeout: int = 300
               ) -> tuple[subprocess.CompletedProcess, str]:
    """`pytest benchmarks/[FILE] -q -p no:cacheprovider ARGS` in a subprocess, from the
    repository root, on one OpenMP thread; its result and its stdout and stderr together.
    `expect`: the exit status it must end with (the output is the assertion's message).
    Without FILE, the latency and quality files: what `sharpen bench` measures (the synthesis
    benchmark, timed for issue 17 alone, added seconds to each of these runs)."""
    files = [ROOT / "benchmarks" / f for f in ([file] if file else SUITE_FILES)]
    cmd = [sys.executable, "-m", "pytest", *map(str, files), "-q", "-p", "no:cacheprovider",
           *args]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    out = res.stdout + res.stderr
    if expect is not None:
        assert res.returncode == expect, out
    return res, out


def _pairs(env: Path):
    names = sorted(p.stem for p in (env / "pairs" / "input").glob("*.png"))
    return [(n, read_image(env / "pairs" / "input" / f"{n}.png"),
             read_image(env / "pairs" / "target" / f"{n}.png")) for n in names]


def _blurred_frames(env: Path, name: str) -> Path:
    """The test pairs' blurred inputs alone: real blur without ground truth, for --real-nogt."""
    folder = env / name
    for i, (_, blurred, _) in enumerate(_pairs(env)):
        write_image(folder / f"frame{i}.png", blurred)
    return folder
