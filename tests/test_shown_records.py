"""What a stranger's model or checkpoint records about itself is shown escaped: a terminal
obeys the escape sequences a hostile file carries, and a newline in a record forges lines."""
from __future__ import annotations


import pytest

from runtime_fixtures import onnx_model

__all__ = ["onnx_model"]

onnx = pytest.importorskip("onnx")

FORGED = "fast\x1b]0;PWNED\x07\x1b[2J\nweights: models/student-fast.pt, PASS"


def test_sharpen_models_shows_a_models_own_record_escaped(onnx_model, tmp_path, capsys):
    """`sharpen models FILE` printed the metadata inside an ONNX model as it was: an escape
    sequence in it retitled or cleared the reviewer's terminal, and a newline wrote a line
    of its choosing ('weights: ..., PASS') under the file's name."""
    from sharpen.cli import main

    model = onnx.load(str(onnx_model))
    onnx.helper.set_model_props(model, {"student": FORGED, "precision": "fp32"})
    path = tmp_path / "stranger.onnx"
    onnx.save(model, str(path))
    assert main(["models", str(path)]) in (0, 1)
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out, repr(out)
    assert "student fast\\x1b]0;PWNED\\x07\\x1b[2J\\nweights: models/student-fast.pt, PASS" \
        in out, out
    assert not any(line.startswith("weights: models/student-fast.pt") for line in
                   out.splitlines()), out


def test_sharpen_run_shows_a_models_own_record_escaped(onnx_model, tmp_path, capsys):
    """`sharpen run` printed a stranger's model's `precision` in its done line and its
    `parity_failed` in the warning (or refusal) as they were: the reviewer's terminal obeyed
    the escape sequences in them, and a newline forged a line of its choosing."""
    import cv2
    import numpy as np

    from sharpen.cli import main

    model = onnx.load(str(onnx_model))
    onnx.helper.set_model_props(model, {"multiple": "8", "precision": FORGED,
                                        "parity_failed": FORGED})
    path = tmp_path / "stranger.onnx"
    onnx.save(model, str(path))
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.full((32, 32, 3), 128, np.uint8))
    for forced in ([], ["--force"]):
        main(["run", "--model", str(path), "--source", str(image), "--out",
              str(tmp_path / "out.png"), "--threads", "1", "--overwrite", *forced])
        err = capsys.readouterr().err
        assert "\x1b" not in err and "\x07" not in err, repr(err)
        assert "PWNED" in err, err   # shown, escaped
        assert not any(line.startswith("weights: models/student-fast.pt") for line in
                       err.splitlines()), err
