"""The Keras (NHWC) rebuild of the students used for TFLite: weight layouts and the pixel
(un)shuffle channel permutation, checked against PyTorch (no training needed: FP32 paths)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")

from distill.students import create_student  # noqa: E402
from optimize.keras_student import build_keras_student, torch_to_tf_channel_perm  # noqa: E402


def _seeded(name: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    model = create_student(name, **overrides)
    with torch.no_grad():  # non-zero weights and biases everywhere so a wrong order would show
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                if not m.weight.any():  # zero-initialised heads
                    m.weight.uniform_(-0.1, 0.1)
                if m.bias is not None:
                    m.bias.uniform_(-0.1, 0.1)
    return model.eval()


@pytest.mark.parametrize("r", [2, 4])
def test_channel_permutation_matches_pixel_unshuffle(r):
    x = torch.rand(1, 3, 4 * r, 6 * r)
    torch_s2d = torch.nn.functional.pixel_unshuffle(x, r)[0].permute(1, 2, 0).numpy()
    tf_s2d = tf.nn.space_to_depth(x.permute(0, 2, 3, 1).numpy(), r)[0].numpy()
    perm = torch_to_tf_channel_perm(3, r)
    np.testing.assert_array_equal(tf_s2d, torch_s2d[..., perm])
    # and the inverse: depth_to_space of TF-ordered channels == pixel_shuffle
    back = tf.nn.depth_to_space(torch_s2d[None][..., perm], r)[0].numpy()
    np.testing.assert_array_equal(back, x[0].permute(1, 2, 0).numpy())


@pytest.mark.parametrize("name, overrides", [
    ("fast", {}), ("fast", {"edge": 3}), ("fast", {"edge": 3, "edge_width": 8}),
    ("fast", {"deep": 2, "deep_blocks": 1}),
    ("fast-detail", {}), ("fast-s2", {}), ("seed", {}),
    ("seed-residual", {}), ("edge", {"width": 8, "middle": 1}),
    ("edge", {"enc": (1,), "dec": (1,), "detail": 0})])
def test_keras_rebuild_matches_pytorch(name, overrides):
    model = _seeded(name, **overrides)
    km = build_keras_student(model)
    m = model.multiple
    x = torch.rand(1, 3, m * -(-40 // m), m * -(-56 // m))
    with torch.no_grad():
        ref = model(x)[0].permute(1, 2, 0).numpy()
    out = km(x.permute(0, 2, 3, 1).numpy()).numpy()[0]
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() < 1e-4


@pytest.mark.parametrize("quant, tol", [("fp32", 1e-4), ("fp16", 5e-3)])
def test_tflite_fast_student_matches_pytorch(tmp_path, quant, tol):
    """Pixel-shuffle permutation survives conversion: LiteRT output == PyTorch, two sizes
    through one interpreter (input tensor resized)."""
    from optimize.parity import load_runner, torch_runner
    from optimize.tflite_export import export_tflite

    model = _seeded("fast", seed=3)
    path = export_tflite(model, tmp_path / f"fast_{quant}.tflite", quant)
    runner, ref = load_runner(path, threads=1)[0], torch_runner(model)
    rng = np.random.default_rng(0)
    for h, w in ((64, 96), (37, 51)):
        img = rng.random((h, w, 3), dtype=np.float32)
        out = runner(img)
        assert out.shape == (h, w, 3)
        assert np.abs(out - ref(img)).max() < tol


def test_export_leaves_tensorflow_logging_settings_as_it_found_them(tmp_path, monkeypatch):
    """export_tflite set TF_CPP_MIN_LOG_LEVEL (inherited by an app's subprocesses), and
    TF_ENABLE_ONEDNN_OPTS where unset, and absl's verbosity to ERROR, for the rest of the process;
    a failed conversion too."""
    import os

    import absl.logging

    from optimize.tflite_export import convert_keras, export_tflite

    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    verbosity = absl.logging.get_verbosity()
    absl.logging.set_verbosity(absl.logging.INFO)
    try:
        export_tflite(_seeded("fast"), tmp_path / "fast.tflite", "fp32")
        assert (tmp_path / "fast.tflite").stat().st_size
        with pytest.raises(ValueError, match="unknown TFLite quantization 'int4'"):
            convert_keras(build_keras_student(_seeded("fast")), "int4")
        for name in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS"):
            assert os.environ.get(name) is None, f"{name}={os.environ.get(name)}"
        assert absl.logging.get_verbosity() == absl.logging.INFO
    finally:
        absl.logging.set_verbosity(verbosity)


def test_unsupported_architecture_is_reported():
    class Other(torch.nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(NotImplementedError, match="no Keras rebuild"):
        build_keras_student(Other())
