"""The briefly trained `fast` student and the calibration / parity images that
tests/test_export_formats.py and tests/test_float_layers.py export. tests/conftest.py makes them
once per session (export_data_dir, fast_student_pt); each module loads its own model."""
from __future__ import annotations

from pathlib import Path

import numpy as np

BLUR = 1.5


def train_fast_student(steps: int = 80, seed: int = 0):
    """A quick fit (blurred -> sharp on real photo crops) so activations are not degenerate."""
    import torch

    from distill.students import create_student
    from optimize.calibration import gaussian_blur, sample_images
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    sharp = [img for _, img in sample_images(("astronaut", "coffee", "rocket"), blur_sigma=0)]
    pairs = [(gaussian_blur(s, BLUR), s) for s in sharp]
    model = create_student("fast")
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is faster and steadier on a busy box
    try:
        for _ in range(steps):
            xs, ys = [], []
            for _ in range(8):
                bl, sh = pairs[rng.integers(len(pairs))]
                y0 = rng.integers(0, sh.shape[0] - 64)
                x0 = rng.integers(0, sh.shape[1] - 64)
                xs.append(bl[y0:y0 + 64, x0:x0 + 64].transpose(2, 0, 1))
                ys.append(sh[y0:y0 + 64, x0:x0 + 64].transpose(2, 0, 1))
            loss = (model(torch.from_numpy(np.stack(xs))) - torch.from_numpy(np.stack(ys))).abs()
            opt.zero_grad()
            loss.mean().backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def save_fast_student(path: Path) -> Path:
    from distill.checkpoint import atomic_save, make_checkpoint
    model = train_fast_student()
    atomic_save(make_checkpoint(model, kind="student", arch="fast", arch_args=model.arch_args,
                                metrics={"val_psnr": 27.5}), path)
    return path


def make_export_data(d: Path) -> Path:
    """calib/ (three blurred photos), parity/ (two held-out ones at their full, odd sizes) and
    gt/ (their sharp ground truth)."""
    from distill.images import write_image
    from optimize.calibration import gaussian_blur, sample_images
    for sub in ("calib", "parity", "gt"):
        (d / sub).mkdir()
    for name, img in sample_images(("astronaut", "coffee", "rocket"), blur_sigma=BLUR):
        write_image(d / "calib" / f"{name}.png", img)
    for name, sharp in sample_images(("chelsea", "immunohistochemistry"), blur_sigma=0):
        sharp = sharp[:203, :301] if name == "immunohistochemistry" else sharp
        write_image(d / "parity" / f"{name}.png", gaussian_blur(sharp, BLUR))
        write_image(d / "gt" / f"{name}.png", sharp)
    return d
