"""A phone's clip is stored as the sensor saw it, with a display matrix that players apply:
a turn (portrait video stored landscape) and, from some front cameras and editing apps, a
mirror. OpenCV applies the turn only, and a mirrored matrix made it turn the picture instead
(a mirror alone read as a half turn: the picture upside down). Frames are read as ffmpeg,
as players, shows them: by `sharpen run` and by `labels`, which saves the frames it labels."""
from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime_fixtures import ffmpeg_or_skip, one_op_model, run_cli

W, H, N = 64, 48, 3


@pytest.fixture(scope="module")
def ffmpeg() -> str:
    exe = ffmpeg_or_skip("make clips with a display matrix")
    done = subprocess.run([exe, "-hide_banner", "-h", "full"], capture_output=True, text=True,
                          timeout=60)
    if "display_hflip" not in done.stdout:
        pytest.skip(f"{exe} cannot write a mirrored display matrix (-display_hflip: ffmpeg 7)")
    return exe


@pytest.fixture(scope="module")
def plain(tmp_path_factory, ffmpeg) -> Path:
    path = tmp_path_factory.mktemp("clips") / "plain.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-f", "lavfi", "-i",
                    f"testsrc2=size={W}x{H}:rate=10", "-frames:v", str(N), "-c:v", "libx264",
                    "-pix_fmt", "yuv444p", str(path)], check=True, timeout=60)
    return path


def _tagged(ffmpeg: str, plain: Path, path: Path, turn: int, flips: tuple[str, ...]) -> Path:
    """`plain`'s pictures as stored, with a display matrix of `turn` degrees (counter-clockwise,
    as ffmpeg's -display_rotation takes it) and the `flips` (hflip, vflip) added."""
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-display_rotation", str(turn),
                    *[f"-display_{f}" for f in flips], "-i", str(plain), "-c", "copy",
                    str(path)], check=True, timeout=60)
    return path


def _as_played(ffmpeg: str, clip: Path) -> list[np.ndarray]:
    """The frames as ffmpeg, as players, shows them (its display matrix applied)."""
    probe = cv2.VideoCapture(str(clip))
    ok, first = probe.read()
    probe.release()
    assert ok
    h, w = first.shape[:2]   # a turn or not: the mirror keeps the size of OpenCV's frame
    raw = subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-i", str(clip), "-f", "rawvideo",
                          "-pix_fmt", "bgr24", "-"], capture_output=True, check=True,
                         timeout=60).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)
    return list(frames)


CASES = [(90, ()), (0, ("hflip",)), (0, ("vflip",)), (180, ("hflip",)), (90, ("hflip",)),
         (-90, ("hflip",)), (90, ("vflip",)), (180, ("hflip", "vflip"))]


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    # The same decode but for where the chroma is interpolated from (a flip before or after
    # the conversion to BGR); a picture mirrored or turned against another differs by ~40.
    return a.shape == b.shape and float(np.abs(a.astype(int) - b).mean()) < 2.0


@pytest.mark.parametrize("turn, flips", CASES)
def test_run_shows_a_clips_frames_as_players_do(tmp_path, ffmpeg, plain, turn, flips, capsys):
    clip = _tagged(ffmpeg, plain, tmp_path / "phone.mp4", turn, flips)
    model = one_op_model(tmp_path / "identity.onnx", "Identity", ["input"], {})
    out = tmp_path / "frames"
    assert run_cli(["run", "--model", str(model), "--source", str(clip), "--out", str(out),
                    "--quiet"]) == 0, capsys.readouterr().err
    played = _as_played(ffmpeg, clip)
    got = [cv2.imread(str(p)) for p in sorted(out.glob("*.png"))]
    assert len(got) == len(played) == N
    diffs = [float(np.abs(a.astype(int) - b).mean()) if a.shape == b.shape else None
             for a, b in zip(got, played)]
    assert all(_close(a, b) for a, b in zip(got, played)), diffs


@pytest.mark.parametrize("turn, flips", [(0, ("hflip",)), (90, ("hflip",))])
def test_labels_saves_a_clips_frames_as_players_show_them(tmp_path, ffmpeg, plain, turn,
                                                          flips):
    """The frames `labels` saves (and labels) are those `evaluate` scores and training crops:
    a mirrored clip's were upside down, against what `sharpen run` gives and players show."""
    from distill.data.labels import run_labels

    class Same:   # a teacher whose output is its input
        device, config_name, weights_id, model = "cpu", "same", "same-weights", None

        def sharpen(self, image, tile=0, overlap=0, batch_size=1):
            return image

    clip = _tagged(ffmpeg, plain, tmp_path / "phone.mp4", turn, flips)
    out = tmp_path / "cache"
    stats = run_labels(str(clip), out, teacher=Same(), tile=0, overlap=0, progress=False)
    assert (stats.done, stats.failed) == (N, 0)
    played = _as_played(ffmpeg, clip)
    for i in range(N):
        saved = cv2.imread(str(out / "frames" / f"phone_{i:06d}.png"))
        label = cv2.imread(str(out / "labels" / f"phone_{i:06d}.png"), cv2.IMREAD_UNCHANGED)
        assert _close(saved, played[i]), i
        assert _close((label // 257).astype(np.uint8), played[i]), i
