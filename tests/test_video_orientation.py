"""A phone's clip is stored as the sensor saw it, with a display matrix that players apply:
a turn (portrait video stored landscape) and, from some front cameras and editing apps, a
mirror. OpenCV applies the turn only, and a mirrored matrix made it turn the picture instead
(a mirror alone read as a half turn: the picture upside down). Frames are read as ffmpeg,
as players, shows them: by `sharpen run` and by `labels`, which saves the frames it labels."""
from __future__ import annotations

import os
import struct
import subprocess
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime_fixtures import ffmpeg_or_skip, one_op_model, run_cli, run_cli_subprocess

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


def _run_and_play(ffmpeg: str, clip: Path, folder: Path, capsys) -> tuple[list, list]:
    """`sharpen run` of `clip` through an identity model into PNGs under `folder`: the frames
    it wrote and those ffmpeg shows, as players do (N of each)."""
    model = one_op_model(folder / "identity.onnx", "Identity", ["input"], {})
    out = folder / "frames"
    assert run_cli(["run", "--model", str(model), "--source", str(clip), "--out", str(out),
                    "--quiet"]) == 0, capsys.readouterr().err
    played = _as_played(ffmpeg, clip)
    got = [cv2.imread(str(p)) for p in sorted(out.glob("*.png"))]
    assert len(got) == len(played) == N
    return got, played


@pytest.mark.parametrize("turn, flips", CASES)
def test_run_shows_a_clips_frames_as_players_do(tmp_path, ffmpeg, plain, turn, flips, capsys):
    clip = _tagged(ffmpeg, plain, tmp_path / "phone.mp4", turn, flips)
    got, played = _run_and_play(ffmpeg, clip, tmp_path, capsys)
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



def test_a_mirrored_clip_opening_on_a_black_frame_is_shown_as_players_do(tmp_path, ffmpeg,
                                                                         capsys):
    """What OpenCV did to the picture is seen on the first frame (runtime.orientation.laid_by),
    where a black one looks the same turned, mirrored or not: the turn OpenCV says it applied
    is taken then, not the first way that matches (none, which mirrored it once more)."""
    dark = tmp_path / "dark.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-f", "lavfi", "-i",
                    f"testsrc2=size={W}x{H}:rate=10", "-vf",
                    "drawbox=c=black:t=fill:enable='eq(n,0)'", "-frames:v", str(N), "-c:v",
                    "libx264", "-pix_fmt", "yuv444p", str(dark)], check=True, timeout=60)
    clip = _tagged(ffmpeg, dark, tmp_path / "phone.mp4", 0, ("hflip",))
    from runtime.orientation import laid_by
    cap = cv2.VideoCapture(str(clip))
    assert len(laid_by(cap, clip)) > 1   # the black frame tells nothing
    cap.release()
    got, played = _run_and_play(ffmpeg, clip, tmp_path, capsys)
    assert all(_close(a, b) for a, b in zip(got[1:], played[1:]))


def test_what_opencv_did_to_a_mirrored_clip_is_seen_on_its_first_frame(tmp_path, ffmpeg,
                                                                       plain):
    """Not assumed from CAP_PROP_ORIENTATION_META: an OpenCV (or a backend) that applied the
    mirror too would have it applied twice. A capture told not to turn is seen not to."""
    from runtime.orientation import _OPS, laid_by, oriented
    clip = _tagged(ffmpeg, plain, tmp_path / "phone.mp4", 90, ("hflip",))
    played = _as_played(ffmpeg, clip)
    for auto in (1, 0):
        cap = cv2.VideoCapture(str(clip))
        cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, auto)
        stored = cv2.VideoCapture(str(clip))
        stored.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
        ok, raw = stored.read()
        stored.release()
        seen = laid_by(cap, clip)
        ok, first = cap.read()
        assert ok and len(seen) == 1 and np.array_equal(_OPS[seen[0]](raw), first), (auto, seen)
        cap.release()
        ok, shown = oriented(cv2.VideoCapture(str(clip)), clip).read() if auto else (
            oriented(_no_turn(clip), clip).read())
        assert ok and _close(shown, played[0]), auto


def _no_turn(clip: Path) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(clip))
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
    return cap


def _movie_mirrored(clip: Path, path: Path) -> Path:
    """`clip` with its movie header's (`mvhd`) matrix a mirror, as some editors write it:
    ffmpeg shows a track by its own matrix times the movie's (no option of ffmpeg's writes
    it: the bytes are set)."""
    data = bytearray(clip.read_bytes())
    at = data.find(b"mvhd") + 4
    assert data[at] == 0   # version 0: the matrix 36 bytes into the box
    data[at + 36:at + 72] = struct.pack(">9i", -65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("flips", [(), ("hflip",)])
def test_a_movie_headers_mirror_is_shown_as_players_do(tmp_path, ffmpeg, plain, flips,
                                                       capsys):
    """The track's matrix alone was read: a mirrored movie over a plain track was turned
    upside down, and over a mirrored track, which players show as stored, mirrored."""
    clip = _movie_mirrored(_tagged(ffmpeg, plain, tmp_path / "track.mp4", 0, flips),
                           tmp_path / "phone.mp4")
    got, played = _run_and_play(ffmpeg, clip, tmp_path, capsys)
    diffs = [float(np.abs(a.astype(int) - b).mean()) for a, b in zip(got, played)]
    assert all(_close(a, b) for a, b in zip(got, played)), diffs


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_a_clip_given_through_a_named_pipe_is_read_once(tmp_path, ffmpeg, plain):
    """`--source clip.mp4` may be a named pipe a program writes a faststart MP4 into, which
    OpenCV reads as it comes. The display matrix and HDR tags are read from a file only: read
    from the pipe, each open waited for a writer that had gone, and the run hung."""
    fast = tmp_path / "fast.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-display_hflip", "-i", str(plain),
                    "-c", "copy", "-movflags", "+faststart", str(fast)], check=True,
                   timeout=60)
    pipe = tmp_path / "phone.mp4"
    os.mkfifo(pipe)

    def feed() -> None:
        with open(pipe, "wb") as w:
            w.write(fast.read_bytes())

    threading.Thread(target=feed, daemon=True).start()
    model = one_op_model(tmp_path / "identity.onnx", "Identity", ["input"], {})
    try:
        done = run_cli_subprocess(["run", "--model", str(model), "--source", str(pipe),
                                   "--out", str(tmp_path / "frames"), "--quiet"], timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the run hung on its named pipe")
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "frames").glob("*.png"))) == N

# --- HDR ---------------------------------------------------------------------------------------

def _hdr_clip(ffmpeg: str, path: Path, trc: str) -> Path:
    """A 10-bit HEVC clip tagged as a phone's HDR (BT.2020, `trc` transfer) in the stream's
    own header and in the MP4's `colr` box, as an iPhone writes it."""
    encoded = path.with_name(f"encoded-{path.name}")
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-f", "lavfi", "-i",
                    f"testsrc2=size={W}x{H}:rate=10", "-frames:v", str(N), "-c:v", "libx265",
                    "-x265-params", f"log-level=error:colorprim=bt2020:transfer={trc}:"
                    "colormatrix=bt2020nc", "-pix_fmt", "yuv420p10le", "-tag:v", "hvc1",
                    str(encoded)], check=True, timeout=60)
    # Copied, the stream's own tags reach the box (an encode writes it from the input's)
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-i", str(encoded), "-c", "copy",
                    "-movflags", "+write_colr", str(path)],
                   check=True, timeout=60)
    return path


@pytest.mark.parametrize("trc, said", [("arib-std-b67", "HLG"), ("smpte2084", "PQ"),
                                       ("bt709", None)])
def test_an_hdr_phone_clip_is_said_to_come_out_washed_out(tmp_path, ffmpeg, monkeypatch, capsys,
                                                          trc, said):
    """An iPhone records HDR (HLG in 10-bit HEVC) by default. OpenCV reads its pixels as SDR,
    with no tone mapping, and the sharpened video, written as SDR, showed washed-out colours
    and flat highlights against what the phone shows, without a word. The MP4's `colr` box
    tells it, without ffmpeg."""
    if "libx265" not in subprocess.run([ffmpeg, "-hide_banner", "-encoders"],
                                       capture_output=True, text=True, timeout=60).stdout:
        pytest.skip(f"{ffmpeg} has no HEVC encoder (libx265) to make an HDR clip with")
    clip = _hdr_clip(ffmpeg, tmp_path / "phone.mp4", trc)
    monkeypatch.setenv("SHARPEN_FFMPEG", "/no/such/ffmpeg")
    model = one_op_model(tmp_path / "identity.onnx", "Identity", ["input"], {})
    out = tmp_path / "sharp.mp4"
    assert run_cli(["run", "--model", str(model), "--source", str(clip), "--out", str(out),
                    "--quiet", "--no-audio"]) == 0
    err = capsys.readouterr().err
    if said is None:
        assert "HDR" not in err, err
    else:
        assert (f"{clip} is HDR video (BT.2020 colours, {said} transfer), which is read as "
                "SDR without tone mapping: the sharpened video's colours come out washed out "
                "and its highlights flat against what the phone shows; convert it to SDR "
                "first:") in err, err


@pytest.mark.parametrize("trc, said", [("arib-std-b67", "HLG"), ("smpte2084", "PQ"),
                                       ("bt709", None)])
def test_an_hdr_clip_in_matroska_is_said_to_come_out_washed_out(tmp_path, ffmpeg, monkeypatch,
                                                               capsys, trc, said):
    """A phone's HDR clip remuxed into MKV (an editor's or a screen recorder's export) says its
    transfer in the track's Colour element, not an MP4 `colr` box: it was told only that it is
    10-bit video read at 8 bits, as an SDR clip is, and came out washed out without a word."""
    if "libx265" not in subprocess.run([ffmpeg, "-hide_banner", "-encoders"],
                                       capture_output=True, text=True, timeout=60).stdout:
        pytest.skip(f"{ffmpeg} has no HEVC encoder (libx265) to make an HDR clip with")
    clip = tmp_path / "phone.mkv"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-i",
                    str(_hdr_clip(ffmpeg, tmp_path / "phone.mp4", trc)), "-c", "copy",
                    str(clip)], check=True, timeout=60)
    monkeypatch.setenv("SHARPEN_FFMPEG", "/no/such/ffmpeg")
    model = one_op_model(tmp_path / "identity.onnx", "Identity", ["input"], {})
    assert run_cli(["run", "--model", str(model), "--source", str(clip), "--out",
                    str(tmp_path / "sharp.mp4"), "--quiet", "--no-audio"]) == 0
    err = capsys.readouterr().err
    if said is None:
        assert "HDR" not in err and "is 10-bit video" in err, err
    else:
        assert (f"{clip} is HDR video (BT.2020 colours, {said} transfer), which is read as "
                "SDR without tone mapping:") in err, err
        assert "is 10-bit video" not in err, err


def test_a_damaged_matroska_file_is_taken_as_saying_nothing_of_hdr(tmp_path, ffmpeg):
    """The Colour element is read before the first frame, from a stranger's file: one cut
    short anywhere, or bytes that only claim to be Matroska, are read as saying nothing, never
    as an error of the reader's own."""
    from runtime.hdr import hdr_transfer
    clip = tmp_path / "whole.mkv"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-f", "lavfi", "-i",
                    f"testsrc2=size={W}x{H}:rate=10", "-frames:v", "1", "-vf",
                    "setparams=color_trc=arib-std-b67", "-c:v", "libx264", str(clip)],
                   check=True, timeout=60)
    data = clip.read_bytes()
    assert hdr_transfer(clip) == "HLG"
    cut = tmp_path / "cut.mkv"
    for end in range(0, len(data), 7):
        cut.write_bytes(data[:end])
        assert hdr_transfer(cut) in (None, "HLG")
    cut.write_bytes(b"\x1a\x45\xdf\xa3" + bytes(range(256)) * 8)
    assert hdr_transfer(cut) is None


def _element(eid: bytes, body: bytes) -> bytes:
    """A Matroska element: its id, its size in 8 bytes (a marker bit, then the size), body."""
    return eid + ((1 << 56) | len(body)).to_bytes(8, "big") + body


def test_a_matroska_file_of_countless_tiny_elements_is_not_walked_to_its_end(tmp_path):
    """The elements looked at were limited on each level alone, and the limits multiplied:
    a stranger's 33 MB file of 4096 track entries, each of 4096 two-byte elements, held the
    run before its first frame for over a minute. The whole read now has one limit, which
    the few dozen elements of any muxer's track headers are far below."""
    from runtime.ebml import MOST_ELEMENTS
    from runtime.hdr import hdr_transfer
    padding = _element(b"\xae", b"\xec\x80" * (MOST_ELEMENTS // 2))   # Void elements
    colour = _element(b"\x55\xb0", _element(b"\x55\xba", b"\x12"))     # transfer 18, HLG
    video = _element(b"\xae", _element(b"\x83", b"\x01") + _element(b"\xe0", colour))
    head = _element(b"\x1a\x45\xdf\xa3", _element(b"\x42\x82", b"matroska"))
    clip = tmp_path / "said.mkv"
    clip.write_bytes(head + _element(b"\x18\x53\x80\x67", _element(b"\x16\x54\xae\x6b", video)))
    assert hdr_transfer(clip) == "HLG"
    # Three entries of padding: each level holds fewer elements than the limit, the file more
    clip.write_bytes(head + _element(b"\x18\x53\x80\x67",
                                     _element(b"\x16\x54\xae\x6b", padding * 3 + video)))
    assert hdr_transfer(clip) is None


@pytest.mark.parametrize("trc, said", [("arib-std-b67", "HLG"), ("bt709", None)])
def test_labels_of_an_hdr_phone_clip_say_its_frames_come_out_washed_out(
        tmp_path, ffmpeg, capsys, tiny_teacher_pt, trc, said):
    """`sharpen labels` read an iPhone's HLG clip as SDR and labelled its washed-out frames
    without a word, where `sharpen run` warned of the same clip: the same warning, once."""
    if "libx265" not in subprocess.run([ffmpeg, "-hide_banner", "-encoders"],
                                       capture_output=True, text=True, timeout=60).stdout:
        pytest.skip(f"{ffmpeg} has no HEVC encoder (libx265) to make an HDR clip with")
    from sharpen.cli import main
    clip = _hdr_clip(ffmpeg, tmp_path / "phone.mp4", trc)
    assert main(["labels", "--data", str(clip), "--out", str(tmp_path / "cache"),
                 "--teacher-weights", str(tiny_teacher_pt), "--device", "cpu",
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    if said is None:
        assert "HDR" not in err, err
    else:
        assert err.count(f"{clip} is HDR video (BT.2020 colours, {said} transfer), which is "
                         "read as SDR without tone mapping: its frames, and the labels, "
                         "scores or calibration crops made of them, come out with washed-out "
                         "colours") == 1, err


def test_evaluate_of_an_hdr_phone_clip_says_its_scores_are_of_washed_out_frames(
        tmp_path, ffmpeg, capsys):
    """`sharpen evaluate` of an iPhone's HLG clip said its labels came out washed out, where it
    makes none: its scores are of the washed-out frames."""
    if "libx265" not in subprocess.run([ffmpeg, "-hide_banner", "-encoders"],
                                       capture_output=True, text=True, timeout=60).stdout:
        pytest.skip(f"{ffmpeg} has no HEVC encoder (libx265) to make an HDR clip with")
    from sharpen.cli import main
    clip = _hdr_clip(ffmpeg, tmp_path / "phone.mp4", "arib-std-b67")
    model = one_op_model(tmp_path / "identity.onnx", "Identity", ["input"], {})
    assert main(["evaluate", "--model", str(model), "--data", str(clip), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count(f"{clip} is HDR video (BT.2020 colours, HLG transfer), which is read as "
                     "SDR without tone mapping: its frames, and the labels, scores or "
                     "calibration crops made of them, come out with washed-out colours") == 1, err


@pytest.mark.parametrize("rank, warned", [("0", 1), ("1", 0)])
def test_an_hdr_clip_of_training_footage_is_said_by_the_main_rank_only(
        tmp_path, monkeypatch, rank, warned):
    """Every torchrun rank reads the data (resolve_source): the HDR warning of a clip was said
    once per rank, where the trainer's other data warnings are said by the main rank only."""
    import warnings

    import cv2
    import runtime.hdr
    from distill.data.sources import resolve_source
    from runtime.warn import SharpenWarning

    clip = tmp_path / "phone.mp4"
    out = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (W, H))
    for _ in range(N):
        out.write(np.zeros((H, W, 3), np.uint8))
    out.release()
    # No HEVC encoder here makes an HLG clip: its `colr` box is read as an iPhone's says it.
    monkeypatch.setattr(runtime.hdr, "hdr_transfer", lambda path: "HLG")
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert len(resolve_source(str(clip)).samples) == N
    said = [w for w in seen if issubclass(w.category, SharpenWarning)
            and "is HDR video" in str(w.message)]
    assert len(said) == warned, [str(w.message) for w in seen]
