"""scripts/service_uploads.py: the README's measure of a web service's pool of workers sharing
one backend (same bytes as one thread, resident memory level), run on a tiny model."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from runtime_fixtures import make_onnx_model

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "service_uploads.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-W", "ignore", str(SCRIPT), *args],
                          capture_output=True, text=True, timeout=300)


def test_workers_give_the_one_thread_bytes_and_memory_is_sampled(tmp_path):
    model = make_onnx_model(tmp_path / "student.onnx")
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(photos / f"p{i}.png"), rng.integers(0, 256, (40, 60, 3), np.uint8))
    r = _run(str(model), "--photos", str(photos), "--uploads", "20", "--workers", "3",
             "--every", "5", "--large", "64x48", "--small", "32x24")
    assert r.returncode == 0, r.stderr
    assert "20 uploads (10 distinct) through 3 workers" in r.stdout, r.stdout
    assert "20 answers the one-thread bytes" in r.stdout
    memory = r.stdout.split("every 5 calls: ", 1)[1].splitlines()[0].split(", ")
    assert len(memory) == 1 + 20 // 5 and all(m.isdigit() for m in memory), memory
    assert "host: " in r.stdout


def test_a_folder_without_images_or_a_bad_size_is_one_line(tmp_path):
    model = make_onnx_model(tmp_path / "student.onnx")
    r = _run(str(model), "--photos", str(tmp_path / "none"))
    assert r.returncode == 2 and "no images in it" in r.stderr and "Traceback" not in r.stderr
    r = _run(str(model), "--photos", str(tmp_path), "--small", "32")
    assert r.returncode == 2 and "'32' is not WIDTHxHEIGHT" in r.stderr
