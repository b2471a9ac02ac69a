"""What the TFLite conversion lets through on file descriptor 2: it hides TensorFlow's noise
there (the converter's settings line), not what else is written meanwhile, and the calibration
progress bar of `sharpen export --formats tflite-int8` shows on a terminal. A tiny student,
two 16x16 crops: a real INT8 conversion in a few seconds."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("tensorflow")

from distill.students import create_student  # noqa: E402
from optimize.keras_student import build_keras_student  # noqa: E402
from optimize.tflite_export import convert_keras  # noqa: E402
from runtime_fixtures import drain  # noqa: E402


@pytest.fixture(scope="module")
def tiny_keras():
    return build_keras_student(create_student("fast", width=8, blocks=1, low_blocks=1).eval(),
                               batch=1)


CROPS = np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)


def test_int8_conversion_hides_tfs_settings_line_but_not_other_lines_on_fd_2(tiny_keras,
                                                                              capfd):
    """The conversion's window dropped everything written to fd 2, a native library's account
    of a failure as much as the converter's 'fully_quantize: 0, inference_type: 6, ...'."""
    def on_sample(done: int, total: int) -> None:   # runs inside the window, as native code
        os.write(2, f"a line of another library's ({done} of {total})\n".encode())

    data = convert_keras(tiny_keras, "int8", CROPS, on_sample=on_sample)
    assert data[4:8] == b"TFL3"
    err = capfd.readouterr().err
    assert "a line of another library's (1 of 2)\n" in err, err
    assert "a line of another library's (2 of 2)\n" in err, err
    assert "fully_quantize" not in err and "inference_type" not in err, err


def test_the_tflite_calibration_bar_shows_on_a_terminal(tiny_keras, monkeypatch):
    """The bar was made inside the converter's window, on a stderr that was then a temporary
    file: never shown (not a terminal), nor anything the bar wrote. It writes to the terminal
    now, and TensorFlow's settings line still does not."""
    from optimize.export import Progress

    monkeypatch.setenv("TERM", "xterm")   # TERM=dumb (some CI consoles) draws no bar
    master, slave = os.openpty()
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(slave, 2)   # stderr is a terminal, as for a user at one
    try:
        with open(2, "w", closefd=False) as term:
            monkeypatch.setattr(sys, "stderr", term)
            convert_keras(tiny_keras, "int8", CROPS,
                          on_sample=Progress(quiet=False).bar("TFLite calibration"))
            term.flush()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(slave)
    shown = drain(master).decode("utf-8", "replace")
    os.close(master)
    assert "TFLite calibration" in shown and "crop" in shown, repr(shown)
    assert "fully_quantize" not in shown, repr(shown)


def test_the_noise_patterns_match_tensorflows_lines_and_no_others():
    """absl's lines from before it is set up carry the Unix time as seconds ('00:00:1712345678
    .123456'), which TF_NOISE's pattern took for two digits: they were never dropped."""
    from optimize.tflite_export import TF_EXPORT_NOISE
    from runtime.console import TF_NOISE

    noise = ["I0000 00:00:1796423133.740003     348 cpu_feature_guard.cc:227] This TensorFlow "
             "binary is optimized to use available CPU instructions\n",
             "W0000 00:00:1744708234.960672 1370911 computation_placer.cc:177] computation "
             "placer already registered.\n",
             "I1204 22:19:35.123456    4242 loader.cc:236] Loading\n",
             "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"]
    export_noise = [
        "E0000 00:00:1744708234.717753 1370911 cuda_dnn.cc:8579] Unable to register cuDNN "
        "factory: Attempting to register factory for plugin cuDNN when one has already been "
        "registered\n",
        "2024-11-21 15:11:08.496721: E external/local_xla/xla/stream_executor/cuda/cuda_fft.cc:"
        "607] Unable to register cuFFT factory: Attempting to register factory\n",
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild "
        "TensorFlow with the appropriate compiler flags.\n",
        "fully_quantize: 0, inference_type: 6, input_inference_type: INT8, "
        "output_inference_type: INT8"]
    kept = ["E0000 00:00:1744708234.717753 1370911 conv.cc:85] a real failure\n",
            "fully_quantize: 0, inference_type: 6, input_inference_type: INT8, "
            "output_inference_type: INT8error: glued to it\n",
            "Segmentation fault\n"]
    assert all(TF_NOISE.match(line) for line in noise)
    assert all(TF_EXPORT_NOISE.match(line) for line in noise + export_noise)
    assert not any(TF_EXPORT_NOISE.match(line) or TF_NOISE.match(line) for line in kept)
