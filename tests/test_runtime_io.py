"""`sharpen run`'s inputs and outputs at their edges: output names it cannot write, an image
served over HTTP, a live stream that reconnects showing the picture it started with."""
from __future__ import annotations


import cv2
import pytest

from runtime_fixtures import onnx_model, run_cli, textured_frame  # noqa: E402

from runtime.pipeline import run_stream  # noqa: E402
from runtime.sinks import SinkError  # noqa: E402

__all__ = ["onnx_model"]  # the fixture is used by name


def _run(capsys, *argv: str) -> tuple[int, str]:
    rc = run_cli(["run", *argv, "--quiet"])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("name", ["x.gif", "x.GIF", "anim.apng"])
def test_an_animation_output_is_refused_before_the_run_naming_what_is_written(
        tmp_path, capsys, onnx_model, name):
    """--out x.gif wrote a folder of PNG frames named x.gif (with a warning): someone asking
    for a GIF wants one file, and OpenCV cannot be relied on to write GIF. Refused before the
    model loads or the source opens, naming the option and the extensions written."""
    video = tmp_path / "in.mp4"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"mp4v"), 10, (32, 24))
    for i in range(3):
        vw.write(textured_frame(i, 24, 32))
    vw.release()
    out = tmp_path / "sub" / name
    rc, err = _run(capsys, "--model", str(tmp_path / "missing.onnx"), "--source",
                   str(tmp_path / "missing.mp4"), "--out", str(out))
    # The output is refused first: neither the model nor the source was looked at.
    assert rc == 2 and err.count("error:") == 1, err
    assert f"--out {out}:" in err and "missing" not in err.replace(str(out), ""), err
    assert ".mp4" in err and ".avi" in err and ".png" in err and ".jpg" in err, err
    assert "folder" in err and "ffmpeg" in err, err
    assert not (tmp_path / "sub").exists()
    # From Python: the keyword, and nothing made either.
    with pytest.raises(SinkError, match=rf"^output={out}: .*GIF|^output={out}: .*APNG"):
        run_stream(onnx_model, str(video), out)
    assert not (tmp_path / "sub").exists()
