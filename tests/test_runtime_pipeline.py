"""End-to-end streaming: `sharpen run` on real videos and images with the ONNX backend."""
from __future__ import annotations

import contextlib
import itertools
import json
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime_fixtures import (FRAME_H, FRAME_W, STEP, assert_in_order,  # noqa: E402
                                   band_level, cli_module, lap_var, make_onnx_model, onnx_model,
                                   read_video, run_cli, run_cli_subprocess, runtime_warnings,
                                   textured_frame, write_video)

from runtime.backends import Backend, load_backend  # noqa: E402
from runtime.pipeline import FrameQueue, run_stream  # noqa: E402
from runtime.sources import SyntheticSource, VideoSource  # noqa: E402
from runtime.warn import SharpenWarning  # noqa: E402

__all__ = ["onnx_model"]  # the fixture is used by name

STAT_KEYS = {"backend", "source", "live", "frames_processed", "frames_captured",
             "dropped_frames", "throughput_fps", "elapsed_s", "latency_ms", "end_to_end_ms",
             "max_queue_len", "interrupted"}


def check_sharpened_video(inp: list[np.ndarray], out_path: Path, fps: float) -> None:
    out, out_fps = read_video(out_path)
    assert len(out) == len(inp), "output frame count differs from the input's"
    assert out[0].shape == inp[0].shape
    assert out_fps == pytest.approx(fps, rel=0.01)
    assert_in_order(out, len(inp))
    for a, b in zip(inp, out):
        assert np.abs(a.astype(int) - b.astype(int)).mean() > 1.0, "output equals the input"
    ratio = np.mean([lap_var(b) for b in out]) / np.mean([lap_var(a) for a in inp])
    assert ratio > 1.5, f"output not sharper (Laplacian variance ratio {ratio:.2f})"


def test_video_in_video_out_cli(tmp_path, onnx_model):
    src = tmp_path / "blurred.mp4"
    frames = write_video(src, n=14, fps=12.0)
    decoded, _ = read_video(src)  # compare against what the decoder gives, not what was encoded
    out, stats = tmp_path / "out" / "sharp.mp4", tmp_path / "stats.json"
    rc = run_cli(["run", "--model", str(onnx_model), "--source", str(src), "--output", str(out),
                  "--stats", str(stats), "--threads", "1", "--quiet"])
    assert rc == 0
    assert out.exists() and not list(out.parent.glob(".*partial*")), "temp file left behind"
    check_sharpened_video(decoded, out, 12.0)
    data = json.loads(stats.read_text())
    assert STAT_KEYS <= set(data)
    assert set(data["latency_ms"]) == {"capture", "pre", "infer", "post", "write"}
    for stage in ("capture", "pre", "infer", "post", "write"):
        assert set(data["latency_ms"][stage]) >= {"p50", "p95", "p99"}
        assert data["latency_ms"][stage]["n"] == len(frames)
    assert data["frames_processed"] == len(frames) and data["dropped_frames"] == 0
    assert data["live"] is False and data["interrupted"] is False
    assert data["backend"]["name"] == "onnxruntime"
    assert data["backend"]["precision"] == "fp32"
    assert data["backend"]["provider"] == "CPUExecutionProvider"
    assert data["throughput_fps"] > 0 and data["end_to_end_ms"]["p99"] >= data["end_to_end_ms"]["p50"]


def test_video_subprocess(tmp_path, onnx_model):
    src = tmp_path / "in.mp4"
    write_video(src, n=10, fps=10.0)
    decoded, _ = read_video(src)
    out = tmp_path / "out.mp4"
    r = run_cli_subprocess(["run", "--model", str(onnx_model), "--source", str(src),
                            "--output", str(out), "--threads", "1"])
    assert r.returncode == 0, r.stderr
    assert "done: 10 frames" in r.stderr
    check_sharpened_video(decoded, out, 10.0)


def test_image_folder_in_folder_out(tmp_path, onnx_model):
    src = tmp_path / "imgs"
    src.mkdir()
    names = ["b.png", "a.png", "c_10.jpg", "d.bmp"]
    for i, n in enumerate(names):
        cv2.imwrite(str(src / n), textured_frame(i))
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "sharp"
    rc = run_cli(["run", "--model", str(onnx_model), "--source", str(src), "--output", str(out),
                  "--quiet"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    for n in names:
        a, b = cv2.imread(str(src / n)), cv2.imread(str(out / n))
        assert a.shape == b.shape and lap_var(b) > 1.5 * lap_var(a)


def test_the_done_line_says_how_long_the_run_took(tmp_path, onnx_model, capsys):
    """A library's overnight run ended in "done: 4000 frames, 0.4 fps": how long it took was
    left to arithmetic. The line gives the time the rate is over."""
    src = tmp_path / "lib"
    src.mkdir()
    for i in range(2):
        cv2.imwrite(str(src / f"{i}.png"), textured_frame(i))
    assert run_cli(["run", "--model", str(onnx_model), "--source", str(src), "--output",
                    str(tmp_path / "out"), "--threads", "1", "--quiet"]) == 0
    done = capsys.readouterr().err.strip().splitlines()[0]
    assert re.match(rf"done: 2 frames from {re.escape(str(src))}, [0-9.]+ fps over "
                    r"[0-9]+\.[0-9]+s, 0 dropped, ", done), done


def test_quiet_drops_the_live_line_not_the_result(tmp_path, onnx_model, capsys):
    """--quiet silences progress, as every command's does, not the final `done:` line (it hid
    that too, though its help said only "no live stats line")."""
    img = tmp_path / "in.png"
    cv2.imwrite(str(img), textured_frame(0))
    assert run_cli(["run", "--model", str(onnx_model), "--source", str(img), "--output",
                    str(tmp_path / "out.png"), "--threads", "1", "--quiet"]) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"done: 1 frame from {img}, "), lines
    assert "(onnxruntime fp32 on CPUExecutionProvider)" in lines[0], lines


def test_glob_and_single_image(tmp_path, onnx_model):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), textured_frame(i))
    stats = run_stream(onnx_model, str(tmp_path / "f*.png"), tmp_path / "g")
    assert stats["frames_processed"] == 3
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["f0.png", "f1.png", "f2.png"]
    run_stream(onnx_model, str(tmp_path / "f1.png"), tmp_path / "one.png")
    assert cv2.imread(str(tmp_path / "one.png")).shape == (FRAME_H, FRAME_W, 3)


def test_a_day_long_runs_image_folder_reads_back_in_frame_order(tmp_path):
    """A camera's image folder output names its frames frame_000000, ...; past frame 999999
    (9 hours at 30 fps) the names take a seventh digit, and read back by name, frame_1000000
    came between frame_100000 and frame_100001: a day's run made into a video jumped back
    and forth. Numbers in names are read as numbers (as file managers show them)."""
    from runtime.sources import open_source

    frames = [99_999, 100_000, 100_001, 999_999, 1_000_000, 1_000_001, 2_591_999]
    for i in reversed(frames):
        cv2.imwrite(str(tmp_path / f"frame_{i:06d}.png"), textured_frame(0, h=8, w=8))
    want = [f"frame_{i:06d}.png" for i in frames]
    for spec in (tmp_path, tmp_path / "frame_*.png"):
        with open_source(str(spec)) as src:
            assert src.names == want, (spec, src.names)
    # Zero-padded names keep their order; unpadded ones (an export's img1, img2, img10) too.
    for n in ("img1.png", "img2.png", "img10.png"):
        cv2.imwrite(str(tmp_path / n), textured_frame(0, h=8, w=8))
    with open_source(str(tmp_path / "img*.png")) as src:
        assert src.names == ["img1.png", "img2.png", "img10.png"], src.names


def test_the_videos_a_folder_or_glob_holds_are_named_in_the_order_of_its_images(tmp_path):
    """The folder's images are read in name order with numbers read as numbers; the clips its
    message names came by characters (clip1, clip10, clip11), and a glob's in the order the
    file system listed them (clip7, clip2, ... from run to run)."""
    from runtime.sources import SourceError, open_source

    for i in (7, 2, 11, 1, 10, 3, 12):
        (tmp_path / f"clip{i}.mp4").write_bytes(b"x")
    for spec in (tmp_path, tmp_path / "clip*.mp4"):
        with pytest.raises(SourceError, match=r"\(clip1\.mp4, clip2\.mp4, clip3\.mp4[,)]"):
            open_source(str(spec))


def test_odd_size_gray_bgra_uint16(tmp_path, onnx_model, capsys):
    """Sizes that are not a multiple of 8 are padded and cropped back; grayscale and BGRA
    inputs are sharpened as BGR and written back in their own layout (grayscale, alpha kept);
    16-bit stays 16-bit."""
    src = tmp_path / "in"
    src.mkdir()
    base = textured_frame(2, h=37, w=53)
    cv2.imwrite(str(src / "gray.png"), cv2.cvtColor(base, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(src / "bgra.png"), cv2.cvtColor(base, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(src / "deep.png"), base.astype(np.uint16) * 257)
    run_stream(onnx_model, str(src), tmp_path / "out")
    for n, shape in (("gray.png", (37, 53)), ("bgra.png", (37, 53, 4)),
                     ("deep.png", (37, 53, 3))):
        out = cv2.imread(str(tmp_path / "out" / n), cv2.IMREAD_UNCHANGED)
        assert out.shape == shape, n
    err = capsys.readouterr().err
    assert "gray.png" not in err and "bgra.png" not in err and "deep.png" not in err
    deep = cv2.imread(str(tmp_path / "out" / "deep.png"), cv2.IMREAD_UNCHANGED)
    eight = cv2.imread(str(tmp_path / "out" / "bgra.png"), cv2.IMREAD_UNCHANGED)
    assert deep.dtype == np.uint16   # the same picture, in 16 bits
    assert np.abs(deep.astype(np.float64) / 257 - eight[..., :3]).max() <= 1.0


def test_16_bit_precision_is_kept_where_the_output_holds_it(tmp_path, onnx_model):
    """A smooth 16-bit ramp spanning 2 of 256 8-bit levels comes back with many more levels
    in PNG and TIFF; JPEG and video outputs say they take 8 bits."""
    ramp = np.linspace(30000, 30600, 64)[None, :, None] * np.ones((48, 1, 3))
    src = tmp_path / "ramp.png"
    cv2.imwrite(str(src), ramp.astype(np.uint16))
    cv2.imwrite(str(tmp_path / "ramp8.png"), np.round(ramp / 257).astype(np.uint8))
    run_stream(onnx_model, str(tmp_path / "ramp8.png"), tmp_path / "out8.png")
    out8 = cv2.imread(str(tmp_path / "out8.png"), cv2.IMREAD_UNCHANGED)
    assert out8.dtype == np.uint8 and len(np.unique(out8[:, 8:-8])) < 20
    for ext in (".png", ".tif"):
        run_stream(onnx_model, str(src), tmp_path / f"out{ext}")
        out = cv2.imread(str(tmp_path / f"out{ext}"), cv2.IMREAD_UNCHANGED)
        assert out.dtype == np.uint16 and len(np.unique(out[:, 8:-8])) > 5 * len(np.unique(out8)), ext
        # the same result as the 8-bit path, within its rounding
        assert np.abs(out[8:-8, 8:-8] / 257 - out8[8:-8, 8:-8]).max() <= 2.5, ext
    with pytest.warns(SharpenWarning, match=r"out.jpg: written as 8-bit \(.jpg holds 8 bits"):
        run_stream(onnx_model, str(src), tmp_path / "out.jpg")
    with pytest.warns(SharpenWarning, match="16-bit results are written as 8-bit video"):
        run_stream(onnx_model, str(src), tmp_path / "out.mp4")
    with pytest.warns(SharpenWarning, match=r"the compare=True view is 8-bit \(run without "
                                            r"compare=True"):
        run_stream(onnx_model, str(src), tmp_path / "cmp.png", compare=True)


def test_a_stream_that_changes_frame_size_is_sharpened_at_each_size_and_says_so(tmp_path,
                                                                                 onnx_model):
    """Frames of a new size part-way through a stream went through without a word, and the
    tiling checks had looked at the first size only. Each frame is sharpened at its own size
    (as alone, not stretched), the change is said once with both sizes, and the tiles planned
    for the new size are checked; a video output fits the new size into its first one."""
    from runtime import FrameProcessor, Sink
    small = [textured_frame(i, h=40, w=48) for i in range(2)]
    large = [textured_frame(i, h=96, w=128) for i in range(2, 5)]
    frames = [*small, large[0], small[0], *large[1:]]   # back and forth: said once
    backend = load_backend(onnx_model, threads=1)

    class Collect(Sink):
        def __init__(self):
            self.got = []

        def write(self, original, sharpened, name):
            self.got.append(sharpened)

    sink = Collect()
    with runtime_warnings() as said:
        run_stream(backend, frames, sink, tile=48, overlap=16)
    assert said == ["<arrays>: the frame size changed from 48x40 to 128x96 at frame_000002; "
                    "frames are sharpened at their own size",
                    "tile=48, overlap=16: 12 tiles per 128x96 frame, 2.2x the frame's pixels "
                    "computed; a larger tile or a smaller overlap is faster"], said
    alone = FrameProcessor(backend, tile=48, overlap=16)
    assert len(sink.got) == len(frames)
    for got, f in zip(sink.got, frames):
        assert np.array_equal(got, alone(f))
    with runtime_warnings() as said:
        run_stream(backend, frames, tmp_path / "out.avi")
    assert said[0].endswith("the frame size changed from 48x40 to 128x96 at frame_000002; "
                            "frames are sharpened at their own size"), said
    assert "frame_000002: 128x96 frames are resized to fit the video's 48x40" in said[1], said
    written, _ = read_video(tmp_path / "out.avi")
    assert [f.shape for f in written] == [(40, 48, 3)] * len(frames)
    # A folder of photos of mixed sizes is no stream whose size changed.
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, f in enumerate(frames[:3]):
        cv2.imwrite(str(folder / f"p{i}.png"), f)
    with runtime_warnings() as said:
        run_stream(backend, str(folder), tmp_path / "sharp")
    assert said == [], said


def test_tiled_matches_whole_frame(tmp_path, onnx_model):
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), textured_frame(1, h=96, w=128))
    run_stream(onnx_model, str(src), tmp_path / "whole.png")
    # Tiles this small for the frame do much more work than the whole frame, which is said.
    with pytest.warns(SharpenWarning, match=r"tile=48, overlap=16: 12 tiles per 128x96 frame"):
        s = run_stream(onnx_model, str(src), tmp_path / "tiled.png", tile=48, overlap=16)
    assert s["tile"] == 48
    a = cv2.imread(str(tmp_path / "whole.png")).astype(int)
    b = cv2.imread(str(tmp_path / "tiled.png")).astype(int)
    # Tile borders see zero padding instead of their neighbours; the Gaussian blending weights
    # them down (or out), so the result matches the whole-frame one closely.
    diff = np.abs(a - b)
    assert diff.mean() < 1.0 and np.percentile(diff, 50) == 0
    assert lap_var(b.astype(np.uint8)) > 1.5 * lap_var(textured_frame(1, h=96, w=128))


def _model_seeing(tmp_path: Path, receptive_field: int) -> Path:
    """The unsharp test model with a receptive field recorded in its sidecar, as `sharpen
    export` records it for `fast` (136 px)."""
    model = make_onnx_model(tmp_path / f"rf{receptive_field}.onnx")
    model.with_name(model.name + ".json").write_text(
        json.dumps({"receptive_field": receptive_field}))
    return model


def test_the_overlap_follows_the_models_receptive_field_unless_given(tmp_path):
    """--overlap defaulted to 32 whatever the model, and `run --tile` then warned that its own
    default was narrower than the receptive field; without --overlap the overlap is now the
    receptive field (at most half the tile), and only a narrower one that the user chose, or
    one the tile capped, is said."""
    model = _model_seeing(tmp_path, 40)
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), textured_frame(1, h=96, w=128))
    with runtime_warnings() as said:
        s = run_stream(model, str(src), tmp_path / "auto.png", tile=96)
    assert (s["overlap"], s["overlap_auto"]) == (40, True)
    assert not any("receptive field" in m for m in said), said
    with runtime_warnings() as said:
        s = run_stream(model, str(src), tmp_path / "capped.png", tile=48)
    assert (s["overlap"], s["overlap_auto"]) == (24, True)
    assert any(m.startswith("the automatic overlap 24 is capped at half of tile=48, narrower "
                            "than the model's receptive field (40 px)") for m in said), said
    with runtime_warnings() as said:
        s = run_stream(model, str(src), tmp_path / "given.png", tile=96, overlap=16)
    assert (s["overlap"], s["overlap_auto"]) == (16, False)
    assert any(m.startswith("overlap=16 is narrower than the model's receptive field (40 px)")
               for m in said), said
    # run_stream's keywords from Python (it said --overlap, --tile); sharpen run's flags there
    assert not any("--" in m for m in said), said
    # an export that did not record it: the overlap of before
    plain = make_onnx_model(tmp_path / "plain.onnx")
    s = run_stream(plain, str(src), tmp_path / "plain.png", tile=96)
    assert (s["overlap"], s["overlap_auto"]) == (32, True)
    run_stream(plain, str(src), tmp_path / "whole.png")
    whole = cv2.imread(str(tmp_path / "whole.png")).astype(int)
    for name in ("auto", "capped", "given", "plain"):
        diff = np.abs(cv2.imread(str(tmp_path / f"{name}.png")).astype(int) - whole)
        assert diff.mean() < 1.0, name


def test_an_export_from_before_the_receptive_field_was_recorded_is_said_when_tiled(tmp_path,
                                                                                   capsys):
    """`sharpen export` before 2026-12-03 recorded its student but no receptive field: `run
    --tile` on such a model took the overlap of before (32 px) without a word, while the same
    student exported now overlaps its tiles by its receptive field (136 px for fast): seams
    of up to 26/255 that a new export does not show. A model of no export stays unsaid."""
    import onnx

    old = make_onnx_model(tmp_path / "old.onnx")
    m = onnx.load(str(old))
    # the metadata as the export of 2026-12-02 wrote it (no receptive_field)
    onnx.helper.set_model_props(m, {"student": "fast", "multiple": "8", "precision": "fp32",
                                    "arch_args": '{"width": 8, "blocks": 1}',
                                    "layout": "NCHW RGB float32 [0,1]"})
    onnx.save(m, str(old))
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), textured_frame(1, h=96, w=128))
    with runtime_warnings() as said:
        s = run_stream(old, str(src), tmp_path / "old.png", tile=96)
    assert (s["overlap"], s["overlap_auto"]) == (32, True)
    assert [m for m in said if m.startswith(
        f"{old}: its export records no receptive field (an export from before it was "
        "recorded): the automatic overlap 32 may be narrower than it, and tile seams may show; "
        "export it again with `sharpen export` to record it, or give a wider overlap")], said
    # Once however the frames change size (a stream checks each new size again, which said
    # it, and the rounded tile, a second time), and not for an export that records the field.
    frames = [textured_frame(i, h=96, w=128) for i in range(2)] + [
        textured_frame(i, h=120, w=160) for i in range(2)]
    with runtime_warnings() as said:
        run_stream(old, frames, None, tile=90)
    assert sum("records no receptive field" in m for m in said) == 1, said
    assert sum(m.startswith("tile=90 runs as 96") for m in said) == 1, said
    props = {p.key: p.value for p in m.metadata_props}
    recorded = tmp_path / "recorded.onnx"
    onnx.helper.set_model_props(m, {**props, "receptive_field": "40"})
    onnx.save(m, str(recorded))
    with runtime_warnings() as said:
        run_stream(recorded, frames, None, tile=96)
    assert not [m for m in said if "receptive field" in m], said
    with runtime_warnings() as said:   # an overlap given, or no tiles: nothing to say
        run_stream(old, str(src), tmp_path / "given.png", tile=96, overlap=48)
        run_stream(old, str(src), tmp_path / "whole.png")
    assert not [m for m in said if "receptive field" in m], said
    plain = make_onnx_model(tmp_path / "plain.onnx")   # no export's: nothing known, as before
    with runtime_warnings() as said:
        run_stream(plain, str(src), tmp_path / "plain.png", tile=96)
    assert not [m for m in said if "receptive field" in m], said
    assert run_cli(["run", "--model", str(old), "--source", str(src), "--threads", "1",
                    "--out", str(tmp_path / "cli.png"), "--tile", "96"]) == 0
    assert "or give a wider --overlap" in capsys.readouterr().err


def test_run_says_the_overlap_it_chose(tmp_path, capsys):
    model = _model_seeing(tmp_path, 40)
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), textured_frame(1, h=96, w=128))
    stats = tmp_path / "stats.json"
    argv = ["run", "--model", str(model), "--source", str(src), "--threads", "1"]
    assert run_cli([*argv, "--out", str(tmp_path / "a.png"), "--tile", "96", "--stats",
                    str(stats)]) == 0
    err = capsys.readouterr().err
    assert "on CPUExecutionProvider; tile 96, automatic overlap 40)" in err, err
    assert "warning" not in err, err
    data = json.loads(stats.read_text())
    assert (data["tile"], data["overlap"], data["overlap_auto"]) == (96, 40, True)
    assert run_cli([*argv, "--out", str(tmp_path / "b.png"), "--tile", "96", "--overlap",
                    "48"]) == 0
    err = capsys.readouterr().err
    assert "tile 96, overlap 48)" in err and "warning" not in err, err
    assert run_cli([*argv, "--out", str(tmp_path / "d.png"), "--tile", "48", "--overlap",
                    "16"]) == 0
    err = capsys.readouterr().err
    assert ("warning: --overlap 16 is narrower than the model's receptive field (40 px): tile "
            "seams may show; an --overlap near 40 (with a --tile above 80) hides them") in err, err
    # --overlap at the old default's value, without --tile, is no longer taken for the default
    assert run_cli([*argv, "--out", str(tmp_path / "c.png"), "--overlap", "32"]) == 0
    assert "warning: --overlap has no effect without --tile" in capsys.readouterr().err


class SlowBackend(Backend):
    """A real ONNX backend made slow, standing in for a model slower than the camera."""

    def __init__(self, inner: Backend, delay: float) -> None:
        self.inner, self.delay = inner, delay
        self.name, self.precision, self.provider = "slow-" + inner.name, inner.precision, inner.provider
        self.layout, self.multiple = inner.layout, inner.multiple

    def infer(self, batch):
        time.sleep(self.delay)
        return self.inner.infer(batch)


def test_live_policy_drops_stale_frames_bounded_queue(onnx_model):
    backend = SlowBackend(load_backend(onnx_model, threads=1), delay=0.03)
    src = SyntheticSource("synthetic", width=FRAME_W, height=FRAME_H, fps=0.0, live=True)
    stats = run_stream(backend, src, max_frames=12)
    assert stats["live"] is True
    assert stats["frames_processed"] == 12
    assert stats["dropped_frames"] > 12, "fast live source with a slow model must drop frames"
    assert stats["max_queue_len"]["capture"] <= 4
    assert stats["max_queue_len"].get("output", 0) <= 4
    # Bounded latency: nothing waits behind a backlog of stale frames.
    assert stats["end_to_end_ms"]["p95"] < 10 * 1000 * 0.03


def test_live_frames_arriving_in_bursts_are_kept_when_the_model_keeps_up(onnx_model):
    """A network stream delivers frames in bursts; with one queue slot a model 5x faster
    than real time still lost 30-50 % of them as "stale". Only old frames are dropped."""
    from runtime.sources import Frame, SyntheticSource

    class Bursts(SyntheticSource):
        def frames(self, stop):
            for k, fr in enumerate(super().frames(stop)):
                if k and k % 3 == 0:
                    time.sleep(0.06)          # three frames at once, every 3 periods of 20 ms
                t = time.perf_counter()
                yield Frame(fr.index, fr.image, fr.name, t, 0.0)

    src = Bursts("bursts", width=FRAME_W, height=FRAME_H, fps=0.0, live=True, count=30)
    src.fps = 50.0
    stats = run_stream(load_backend(onnx_model, threads=1), src)
    assert stats["frames_processed"] == 30 and stats["dropped_frames"] == 0, stats


def test_file_policy_is_lossless_even_with_slow_model(tmp_path, onnx_model):
    src = tmp_path / "in.mp4"
    write_video(src, n=8)
    backend = SlowBackend(load_backend(onnx_model), delay=0.02)
    stats = run_stream(backend, str(src), tmp_path / "o.mp4", queue_size=2)
    assert stats["frames_processed"] == 8 and stats["dropped_frames"] == 0
    assert stats["max_queue_len"]["capture"] <= 2
    assert_in_order(read_video(tmp_path / "o.mp4")[0], 8)


def test_live_recording_holds_frames_over_drops_so_it_keeps_real_time(tmp_path, onnx_model):
    src = tmp_path / "in.mp4"
    write_video(src, n=16, fps=50.0)      # --live paces it like a 50 fps camera
    backend = SlowBackend(load_backend(onnx_model, threads=1), delay=0.05)
    stats = run_stream(backend, str(src), tmp_path / "o.mp4", live=True)
    assert stats["dropped_frames"] > 0 and stats["repeated_frames"] > 0
    frames, fps = read_video(tmp_path / "o.mp4")
    assert fps == 50.0
    assert len(frames) == stats["frames_processed"] + stats["repeated_frames"]
    # Slot k of the recording shows camera frame k, or the last one before it over a drop.
    # (Levels relative to slot 0, which is frame 0: the codec shifts them all a little.)
    levels = np.array([band_level(f) for f in frames])
    est = (levels - levels[0]) / STEP
    shown = np.round(est)
    assert np.all(np.abs(est - shown) < 0.35), np.round(est, 2)
    slots = np.arange(len(frames))
    assert np.all(shown <= slots) and np.all(np.diff(shown) >= 0), shown
    assert int((shown == slots).sum()) == stats["frames_processed"], shown


def test_frames_captured_counts_every_frame_a_live_source_read(tmp_path, onnx_model):
    """A live run that stops at --max-frames: the frame whose read was under way when it
    stopped (here a file paced like a camera) was read, but frames_captured left it out."""
    class Counted(VideoSource):
        read = 0

        def frames(self, stop):
            for fr in super().frames(stop):
                self.read += 1
                yield fr

    path = tmp_path / "in.mp4"
    write_video(path, n=16, fps=50.0)
    src = Counted(str(path), str(path), live=True, kind="video")
    stats = run_stream(load_backend(onnx_model, threads=1), src, max_frames=5)
    assert stats["frames_processed"] == 5
    assert stats["frames_captured"] == src.read, (stats["frames_captured"], src.read)


def test_a_source_faster_than_real_time_does_not_pad_the_recording(tmp_path, onnx_model):
    """An unpaced live source drops thousands of frames in no time; the recording holds the
    last frame only as long as the wall clock allows (it grew to hours of video before)."""
    stats = run_stream(onnx_model, "synthetic:64x48", tmp_path / "o.mp4", max_frames=20,
                       fps=30.0, live=True)
    assert stats["live"] and stats["frames_processed"] == 20
    frames, _ = read_video(tmp_path / "o.mp4")
    # Frames past a second ahead of the clock are left out too: the video keeps real time.
    assert len(frames) == 20 - stats["left_out_frames"] + stats["repeated_frames"]
    # at most a second ahead of the clock, plus the warm-up before the first frame was timed
    assert len(frames) <= (stats["elapsed_s"] + 2.0) * 30, (len(frames), stats["dropped_frames"])


def test_frame_queue_bounds():
    stop = threading.Event()
    q = FrameQueue(3, drop_oldest=True)
    dropped = sum(q.put(i, stop) for i in range(100))
    assert dropped == 97 and len(q) == 3 and q.get(stop) == 97
    lossless = FrameQueue(2, drop_oldest=False)
    lossless.put(1, stop)
    lossless.put(2, stop)
    stop.set()
    assert lossless.put(3, stop) == 0 and len(lossless) == 2  # full + stopped: returns, no growth


def test_a_lossless_frame_queue_holds_big_frames_by_their_bytes():
    """A library of 24 MP photos (72 MB each decoded) held 4 in each queue, 600 MB more than
    the tiled model needed: a queue takes frames up to a byte budget, at least one."""
    from runtime.pipeline import QUEUE_BYTES
    from runtime.source_base import Frame
    stop = threading.Event()
    big = np.zeros(QUEUE_BYTES // 2 + 1, np.uint8)
    q = FrameQueue(4, drop_oldest=False)
    q.put((Frame(0, big, "a.jpg", 0.0), big), stop)   # one frame always fits, however big
    stop.set()
    assert q.put((Frame(1, big, "b.jpg", 0.0), big), stop) == 0 and len(q) == 1
    small = FrameQueue(4, drop_oldest=False)
    for i in range(4):   # 4K frames: four fit, as before
        small.put(Frame(i, np.zeros((2160, 3840, 3), np.uint8), f"{i}.png", 0.0), stop)
    assert len(small) == 4


def test_stop_event_leaves_playable_video(tmp_path, onnx_model):
    stop = threading.Event()
    out = tmp_path / "live.mp4"
    src = SyntheticSource("synthetic", width=FRAME_W, height=FRAME_H, fps=100.0, live=True)
    threading.Timer(0.8, stop.set).start()
    stats = run_stream(onnx_model, src, out, stop_event=stop, fps=25.0)
    frames, fps = read_video(out)
    assert stats["frames_processed"] > 5
    # A 100 fps source in a 25 fps video: frames past a second ahead of the clock left out.
    assert len(frames) == (stats["frames_processed"] - stats["left_out_frames"]
                           + stats["repeated_frames"])
    assert frames[0].shape == (FRAME_H, FRAME_W, 3)


def _wait_for_frames_written(proc: subprocess.Popen, folder: Path, out: Path) -> None:
    """Returns once the run `proc` has frames in its temp video of `out` in `folder`. Its
    start (imports, the model's load) took over the 30 s these tests gave it on a loaded host:
    the signal then came before any frame, and the test failed on what it did not mean."""
    deadline = time.monotonic() + 300
    while not any(p.stat().st_size for p in folder.glob(f".{out.stem}.*partial*")):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run wrote no frame (exit status {proc.wait()}, -9: 300 s passed)")
        time.sleep(0.1)


def _stream_until_frames_are_written(tmp_path, onnx_model, out, stats) -> subprocess.Popen:
    """`sharpen run` of a live synthetic source into `out`, returned once its temp video has
    frames in it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", cli_module(), "run", "--model", str(onnx_model),
         "--source", f"synthetic:{FRAME_W}x{FRAME_H}@50", "--output", str(out),
         "--stats", str(stats), "--quiet"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_frames_written(proc, tmp_path, out)
    return proc


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_stops_cleanly(tmp_path, onnx_model):
    out, stats = tmp_path / "term.mp4", tmp_path / "s.json"
    proc = _stream_until_frames_are_written(tmp_path, onnx_model, out, stats)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert "interrupted" in err
    frames, _ = read_video(out)
    data = json.loads(stats.read_text())
    assert data["interrupted"] is True
    assert len(frames) == data["frames_processed"] + data["repeated_frames"] > 0


def _hang_up_run(tmp_path, onnx_model, out, stats, closed: bool, ignored: bool = False):
    """`sharpen run` into a video, sent SIGHUP once frames are written, as a dropped SSH
    connection sends it; `closed`: its stdout and stderr are pipes nobody reads any more (the
    terminal is gone); `ignored`: started under nohup (SIGHUP ignored). Returns (rc, stderr)."""
    import os
    r, w = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", cli_module(), "run", "--model", str(onnx_model),
         "--source", f"synthetic:{FRAME_W}x{FRAME_H}@50", "--output", str(out),
         "--stats", str(stats), "--quiet"], cwd=tmp_path, stdout=w, stderr=w,
        preexec_fn=(lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN)) if ignored else None)
    os.close(w)
    try:
        _wait_for_frames_written(proc, tmp_path, out)
        time.sleep(0.5)
        if closed:
            os.close(r)
        proc.send_signal(signal.SIGHUP)
        if ignored:
            time.sleep(1.0)
            assert proc.poll() is None, "nohup's SIGHUP stopped the run"
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        return proc.returncode, "" if closed else os.read(r, 1 << 20).decode()
    finally:
        if proc.poll() is None:
            proc.kill()
        if not closed:
            os.close(r)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("closed", [False, True])
def test_a_hang_up_closes_the_video_even_with_the_terminal_gone(tmp_path, onnx_model, closed):
    """A dropped SSH connection (SIGHUP) killed `sharpen run`: the video was left a partial
    temp file and no stats written. It now stops as on SIGTERM, exit 129, also when writing to
    the terminal that went away fails."""
    out, stats = tmp_path / "hup.mp4", tmp_path / "s.json"
    rc, err = _hang_up_run(tmp_path, onnx_model, out, stats, closed)
    assert rc == 128 + signal.SIGHUP, err
    assert closed or "interrupted (SIGHUP)" in err and "Traceback" not in err, err
    frames, _ = read_video(out)
    data = json.loads(stats.read_text())
    assert data["interrupted"] is True and data["signal"] == "SIGHUP"
    assert len(frames) == data["frames_processed"] + data["repeated_frames"] > 0


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_hang_up_under_nohup_leaves_the_run_going(tmp_path, onnx_model):
    out, stats = tmp_path / "nohup.mp4", tmp_path / "s.json"
    rc, err = _hang_up_run(tmp_path, onnx_model, out, stats, closed=False, ignored=True)
    assert rc == 128 + signal.SIGTERM, err
    assert json.loads(stats.read_text())["signal"] == "SIGTERM"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("own_handler", [True, False])
def test_run_stream_takes_sighup_only_where_the_app_left_it_alone(tmp_path, onnx_model,
                                                                  own_handler):
    """An app embedding run_stream that handles SIGHUP itself (reloading its settings, say)
    keeps its handler during the run; where SIGHUP has its default action, a hang-up stops the
    run as SIGTERM does (output closed, StreamInterrupted). In a process of its own: the
    default action ends the process."""
    script = tmp_path / "app.py"
    script.write_text(
        "import os, signal, sys\n"
        "from runtime import Sink, StreamInterrupted, run_stream\n"
        "seen = []\n"
        f"if {own_handler}:\n"
        "    signal.signal(signal.SIGHUP, lambda s, f: seen.append(s))\n"
        "class HangUp(Sink):\n"
        "    n = 0\n"
        "    def write(self, original, sharpened, name):\n"
        "        self.n += 1\n"
        "        if self.n == 3:\n"
        "            os.kill(os.getpid(), signal.SIGHUP)\n"
        "sink = HangUp()\n"
        "try:\n"
        f"    s = run_stream({str(onnx_model)!r}, 'synthetic:64x48@200', sink, max_frames=10)\n"
        "    print('finished', s['frames_processed'], seen)\n"
        "except StreamInterrupted as e:\n"
        "    print('stopped', e.signum, sink.n < 10,\n"
        "          signal.getsignal(signal.SIGHUP) is signal.SIG_DFL)\n")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    want = (f"finished 10 [{int(signal.SIGHUP)}]" if own_handler
            else f"stopped {int(signal.SIGHUP)} True True")
    assert done.stdout.strip() == want, done.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_hang_up_that_also_ends_a_tee_still_exits_129(tmp_path, onnx_model):
    """`sharpen run ... 2>&1 | tee log` over SSH: the hang-up ends tee too, after the handler
    found its pipe still read. The closing stats line then raised BrokenPipeError and the run
    exited 1 ("error"), its video closed and stats written all the same."""
    import os
    out, stats, rc = tmp_path / "tee.mp4", tmp_path / "s.json", tmp_path / "rc"
    # bash's own trap: its children keep SIGHUP's default action (an ignored one they would
    # inherit), and it outlives the hang-up to say the run's exit status.
    job = (f"trap true HUP; {shlex.join([sys.executable, '-m', cli_module(), 'run'])} "
           f"--model {shlex.quote(str(onnx_model))} --source synthetic:{FRAME_W}x{FRAME_H}@50 "
           f"--output {shlex.quote(str(out))} --stats {shlex.quote(str(stats))} 2>&1 "
           f"| tee {shlex.quote(str(tmp_path / 'log'))}; echo ${{PIPESTATUS[0]}} > {rc.name}")
    proc = subprocess.Popen(["bash", "-c", job], cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_frames_written(proc, tmp_path, out)
        os.killpg(proc.pid, signal.SIGHUP)   # its own session: the job, never pytest
        proc.wait(timeout=60)
    finally:
        # The whole job, bash ended or not: a start that wrote no frame is failed by killing
        # bash alone, which left the live run and tee running after the test.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert rc.read_text().strip() == str(128 + signal.SIGHUP)
    assert json.loads(stats.read_text())["signal"] == "SIGHUP"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_hang_up_inside_a_quiet_stderr_window_still_drops_the_gone_terminal(tmp_path):
    """A hang-up landing while a quiet_native_stderr window held fd 2 (an FFmpeg sink opening,
    TFLite's converter and its calibration) found fd 2 on the window's file, left it, and the
    window put the gone terminal back: the command's last line then raised BrokenPipeError
    and it exited 1, not 129."""
    script = tmp_path / "win.py"
    script.write_text(
        "import os, signal, sys\n"
        "from runtime.cli_errors import stop_signals_as_interrupt\n"
        "from runtime.cli_errors import Terminated\n"
        "from runtime.console import quiet_native_stderr\n"
        "sys.stdin.read(1)   # the reader of stdout and stderr is gone now\n"
        "try:\n"
        "    with stop_signals_as_interrupt(), quiet_native_stderr():\n"
        "        os.kill(os.getpid(), signal.SIGHUP)\n"
        "        while True:   # the handler raises at the next bytecode\n"
        "            pass\n"
        "except Terminated as e:\n"
        "    print('interrupted', file=sys.stderr, flush=True)\n"
        "    print('said', flush=True)\n"
        "    sys.exit(128 + e.signum)\n")
    import os
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, stdin=subprocess.PIPE,
                            stdout=w, stderr=w)
    os.close(w)
    os.close(r)
    proc.communicate(b"x", timeout=60)
    assert proc.returncode == 128 + signal.SIGHUP


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_second_ctrl_c_still_closes_the_output_and_exits_130(tmp_path, onnx_model):
    """Two Ctrl-C in quick succession (common where winding down takes long) aborted the process
    (SIGABRT from the engine's threads at exit) without writing the stats."""
    out, stats = tmp_path / "twice.mp4", tmp_path / "s.json"
    proc = _stream_until_frames_are_written(tmp_path, onnx_model, out, stats)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    # 130, or killed by the second SIGINT once everything was closed (the shell's 130 too);
    # never SIGABRT (-6).
    assert proc.returncode in (130, -signal.SIGINT), err
    assert stats.exists(), err
    assert json.loads(stats.read_text())["interrupted"] is True
    assert read_video(out)[0]


def test_compose_views():
    from runtime.compare_sink import compose
    a = np.zeros((20, 30, 3), np.uint8)
    b = np.full((20, 30, 3), 200, np.uint8)
    side = compose(a, b, "side")
    assert side.shape == (20, 60, 3) and side[:, :30].max() == 0 and side[:, 31:].min() == 200
    split = compose(a, b, "split")
    assert split.shape == (20, 30, 3) and split[:, :14].max() == 0 and split[:, 16:].min() == 200
    big = compose(np.zeros((1080, 1920, 3), np.uint8), np.zeros((1080, 1920, 3), np.uint8), "side")
    assert big.shape[1] == 1920  # scaled to fit one screen


@pytest.mark.parametrize("rate, live", [("", False), ("@200", True)])
def test_an_unthrottled_synthetic_source_is_lossless_one_at_a_rate_live(tmp_path, onnx_model,
                                                                        rate, live):
    """`--source synthetic` made frames as fast as it could and ran live: a 15-frame run said
    thousands dropped and wrote a video of repeats. Made on demand, no frame goes stale."""
    stats = tmp_path / "s.json"
    rc = run_cli(["run", "--model", str(onnx_model), "--source",
                  f"synthetic:{FRAME_W}x{FRAME_H}{rate}", "--max-frames", "15",
                  "--stats", str(stats), "--out", str(tmp_path / "s.mp4"), "--quiet"])
    data = json.loads(stats.read_text())
    assert rc == 0 and data["live"] is live and data["frames_processed"] == 15
    if not live:
        assert data["dropped_frames"] == 0


def test_synthetic_source_cli_and_live_override(tmp_path, onnx_model):
    stats, out = tmp_path / "s.json", tmp_path / "s.mp4"
    rc = run_cli(["run", "--model", str(onnx_model), "--source", f"synthetic:{FRAME_W}x{FRAME_H}",
                  "--max-frames", "15", "--no-live", "--stats", str(stats), "--out", str(out),
                  "--quiet"])
    assert rc == 0 and out.stat().st_size > 0
    data = json.loads(stats.read_text())
    assert data["live"] is False and data["frames_processed"] == 15 and data["dropped_frames"] == 0
    assert data["source"]["kind"] == "synthetic"


def test_compare_writes_original_and_sharpened_together_captioned(tmp_path, onnx_model, capsys):
    """--compare wrote the two frames with nothing saying which was which (the demo's line
    said it, run did not): each side carries a small caption, and run says the layout. Outside
    the captions the sides are the input and the model's output, pixel for pixel."""
    from runtime.compare_sink import CAPTIONS, caption_boxes
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), textured_frame(0))
    plain = tmp_path / "plain.png"
    assert run_cli(["run", "--model", str(onnx_model), "--source", str(src), "--out",
                    str(plain), "--quiet"]) == 0
    x, y = textured_frame(0), cv2.imread(str(plain))
    expected = {"side": np.hstack([x, y]),
                "split": np.hstack([x[:, :FRAME_W // 2], y[:, FRAME_W // 2:]])}
    said = {}
    for view, width in (("side", 2 * FRAME_W), ("split", FRAME_W)):
        out = tmp_path / f"{view}.png"
        capsys.readouterr()
        rc = run_cli(["run", "--model", str(onnx_model), "--source", str(src), "--out", str(out),
                      "--compare", "--view", view, "--quiet"])
        said[view] = capsys.readouterr().err
        assert rc == 0
        img = cv2.imread(str(out))
        assert img.shape == (FRAME_H, width, 3)
        boxes = caption_boxes(img.shape)
        assert len(boxes) == len(CAPTIONS) == 2
        mask = np.zeros(img.shape[:2], bool)
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            # Each caption on its own side, in its lower part, and small.
            half = (0, width // 2) if i == 0 else (width // 2, width)
            assert half[0] <= x0 < x1 <= half[1] and y0 > FRAME_H // 2 and y1 <= FRAME_H
            assert (img[y0:y1, x0:x1] != expected[view][y0:y1, x0:x1]).any(), (view, i)
            mask[y0:y1, x0:x1] = True
        assert mask.mean() < 0.2, mask.mean()   # a 96x64 frame: at 360p and up, under 1%
        want = expected[view].copy()
        if view == "split":   # the dividing line
            want[:, FRAME_W // 2] = 255
        np.testing.assert_array_equal(img[~mask], want[~mask])
    assert f"{tmp_path / 'side.png'}: input on the left, sharpened on the right" in said["side"]
    assert f"{tmp_path / 'split.png'}: left half input, right half sharpened" in said["split"]
    side = cv2.imread(str(tmp_path / "side.png"))
    assert lap_var(side[:, FRAME_W:]) > lap_var(side[:, :FRAME_W])


def test_captions_fit_the_frame_or_are_left_out():
    """Captions scale with the frame (readable at 1080p, small beside it) and are left out
    where a side is too narrow to hold them."""
    from runtime.compare_sink import caption_boxes, compose
    for (h, w), view in itertools.product(((1080, 1920), (360, 640)), ("side", "split")):
        shape = (h, 2 * w if view == "side" else w, 3)
        boxes = caption_boxes(shape)
        assert len(boxes) == 2 and all(0.015 * h < y1 - y0 < 0.06 * h
                                       for _, y0, _, y1 in boxes), (h, view, boxes)
        covered = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in boxes)
        assert covered < 0.01 * shape[0] * shape[1], (h, view, boxes)
    assert caption_boxes((40, 24, 3)) == []
    a, b = np.zeros((40, 12, 3), np.uint8), np.full((40, 12, 3), 200, np.uint8)
    np.testing.assert_array_equal(compose(a, b, "side", captions=True), np.hstack([a, b]))


def test_fps_flag_sets_the_output_rate_of_a_video_or_stream(tmp_path, onnx_model):
    """--fps names the output video's rate for any source but a camera; a stream's own rate
    (often FFmpeg's guess of 25) used to override it."""
    src = tmp_path / "in.mp4"
    write_video(src, n=6, fps=12.0)
    for flags, want in (([], 12.0), (["--fps", "20"], 20.0)):
        out = tmp_path / f"out{len(flags)}.mp4"
        rc = run_cli(["run", "--model", str(onnx_model), "--source", str(src), "--output",
                      str(out), "--threads", "1", "--quiet", *flags])
        assert rc == 0
        frames, fps = read_video(out)
        assert len(frames) == 6 and fps == pytest.approx(want, rel=0.01)


def test_an_app_gets_every_frame_through_its_own_sink(tmp_path, onnx_model):
    """The Python API: `run_stream(model, source, MySink())` hands each (original, sharpened)
    pair to the app, in order, in the calling thread, then closes the sink once (a Sink given
    as output used to fail with a TypeError: only files and folders were outputs)."""
    import runtime

    inp = write_video(tmp_path / "in.mp4", n=8)
    caller = threading.current_thread()

    class Collect(runtime.Sink):
        def __init__(self):
            self.got, self.closed, self.threads = [], 0, set()

        def write(self, original, sharpened, name):
            self.threads.add(threading.current_thread())
            self.got.append((original.copy(), sharpened.copy(), name))

        def close(self):
            self.closed += 1

    sink = Collect()
    stats = runtime.run_stream(str(onnx_model), str(tmp_path / "in.mp4"), sink)
    assert stats["frames_processed"] == 8 and stats["output"] == "Collect"
    assert sink.closed == 1 and sink.threads == {caller}
    assert_in_order([o for o, _, _ in sink.got], len(inp))
    proc = runtime.FrameProcessor(runtime.load_backend(str(onnx_model)))
    for original, sharpened, _ in sink.got:
        assert np.array_equal(sharpened, proc(original))
    side = Collect()
    runtime.run_stream(str(onnx_model), str(tmp_path / "in.mp4"), side, compare=True,
                       max_frames=2)
    assert len(side.got) == 2 and side.got[0][1].shape == (FRAME_H, 2 * FRAME_W, 3)


def test_an_apps_sink_is_closed_when_the_source_fails(tmp_path, onnx_model):
    from runtime import Sink, SourceError

    class Counting(Sink):
        closed = 0

        def write(self, original, sharpened, name):
            raise AssertionError("no frame expected")

        def close(self):
            Counting.closed += 1

        def __len__(self):   # an empty container-like sink is still closed
            return 0

    with pytest.raises(SourceError):
        run_stream(str(onnx_model), str(tmp_path / "missing.mp4"), Counting(), fps=None)
    assert Counting.closed == 1


def test_an_interrupted_recording_says_its_output_is_partial(tmp_path, onnx_model):
    """A rerun stopped by Ctrl-C replaced a complete video with a shorter one under the same
    name, saying only "interrupted, output closed cleanly", then "done: 153 frames"."""
    from runtime.cli import _interrupted_note

    clip = tmp_path / "clip.mp4"
    write_video(clip, n=6, fps=10.0)
    stats = run_stream(onnx_model, str(clip), tmp_path / "o.mp4", quiet=True, max_frames=2)
    assert stats["source"]["frame_count"] == 6 and not stats["source"]["live"]
    stats["interrupted"] = True
    assert _interrupted_note(stats, "o.mp4") == (
        "interrupted: o.mp4 holds 2 of 6 frames only (closed cleanly); run again for all of them")
    assert "holds 2 of 4 frames" in _interrupted_note(stats, "o.mp4", max_frames=4)
    live = {**stats, "source": {**stats["source"], "live": True}}
    assert _interrupted_note(live, "o.mp4") == "interrupted, output closed cleanly"
    # `--source -`: no rerun gives a pipe's frames again (a service's `systemctl stop`)
    piped = {**stats, "source": {**stats["source"], "kind": "stdin", "frame_count": None}}
    assert _interrupted_note(piped, "o.mp4") == (
        "interrupted: o.mp4 holds the 2 frames stdin gave (closed cleanly)")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("out_name", ["o.mp4", "frames"])
def test_ctrl_c_before_the_first_frame_writes_nothing_and_says_so(tmp_path, onnx_model,
                                                                   out_name):
    """Ctrl-C in the first second of `sharpen run --out new/o.mp4` said "new/o.mp4 holds 0 of
    40 frames only (closed cleanly)" of a file that was never written (a complete one from
    before stayed as it was), and left the folder `new` it had made, empty, behind."""
    import os

    from runtime import StreamInterrupted
    from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from runtime.cli import _interrupted_note

    class SignalOnFirstFrame(OnnxRuntimeBackend):
        sent = False

        def infer(self, x):
            # The warm-up runs in the caller's thread; the stream's frames in a worker, by
            # which time run_stream's handler is in place.
            if threading.current_thread() is not threading.main_thread() and not self.sent:
                self.sent = True
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)   # the signal stops the stream before this frame comes out
            return super().infer(x)

    clip = tmp_path / "clip.mp4"
    write_video(clip, n=6, fps=10.0)
    out = tmp_path / "new" / "sub" / out_name
    with pytest.raises(StreamInterrupted) as stopped:
        run_stream(SignalOnFirstFrame(onnx_model), str(clip), out, quiet=True)
    stats = stopped.value.stats
    assert stats["frames_processed"] == 0, stats
    assert not (tmp_path / "new").exists()
    assert _interrupted_note(stats, str(out)) == (
        f"interrupted before the first frame was written: nothing written to {out}")
    live = {**stats, "source": {**stats["source"], "live": True}}
    assert "nothing written" in _interrupted_note(live, str(out))


def test_images_are_written_back_in_their_own_channel_layout(tmp_path, onnx_model, capsys):
    """A grayscale photo came back as a 3-channel file with colour noise (the model's three
    channels differ slightly); a PNG's alpha channel was dropped, so its transparent parts
    showed whatever colour lay under them. Now grayscale stays grayscale and alpha is kept,
    unchanged, where the output format holds it (said where it does not)."""
    rng = np.random.default_rng(3)
    src = tmp_path / "in"
    src.mkdir()
    base = textured_frame(1, h=29, w=45)
    gray = cv2.cvtColor(base, cv2.COLOR_BGR2GRAY)
    alpha = (rng.random((29, 45)) * 255).astype(np.uint8)
    alpha16 = (rng.random((29, 45)) * 65535).astype(np.uint16)
    cv2.imwrite(str(src / "gray.png"), gray)
    cv2.imwrite(str(src / "gray.jpg"), gray)
    cv2.imwrite(str(src / "rgba.png"), np.dstack([base, alpha]))
    cv2.imwrite(str(src / "rgba.webp"), np.dstack([base, alpha]), [cv2.IMWRITE_WEBP_QUALITY, 101])
    cv2.imwrite(str(src / "rgba16.tiff"), np.dstack([base.astype(np.uint16) * 257, alpha16]))
    cv2.imwrite(str(src / "ok.png"), base)
    with runtime_warnings() as said:
        run_stream(onnx_model, str(src), tmp_path / "out")
    assert said == [] and capsys.readouterr().err == ""

    def read(name: str) -> np.ndarray:
        return cv2.imread(str(tmp_path / "out" / name), cv2.IMREAD_UNCHANGED)

    for name in ("gray.png", "gray.jpg"):
        out = read(name)
        assert out.shape == (29, 45) and out.dtype == np.uint8, name
    # The grey result is the colour pipeline's, sharpened: a 3-channel grey copy run through
    # the model, then made grey.
    cv2.imwrite(str(tmp_path / "gray3.png"), cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    run_stream(onnx_model, str(tmp_path / "gray3.png"), tmp_path / "gray3-out.png")
    three = cv2.imread(str(tmp_path / "gray3-out.png"), cv2.IMREAD_UNCHANGED)
    assert three.shape == (29, 45, 3)
    assert (read("gray.png") == cv2.cvtColor(three, cv2.COLOR_BGR2GRAY)).all()
    assert lap_var(cv2.cvtColor(read("gray.png"), cv2.COLOR_GRAY2BGR)) > lap_var(base)
    ref = read("ok.png")
    for name in ("rgba.png", "rgba.webp"):
        out = read(name)
        assert out.shape == (29, 45, 4), name
        assert (out[..., 3] == alpha).all(), name      # alpha as it was, not sharpened
    # The colours sharpened as without alpha (WebP may change colours under alpha 0).
    assert (read("rgba.png")[..., :3] == ref).all()
    deep = read("rgba16.tiff")
    assert deep.shape == (29, 45, 4) and deep.dtype == np.uint16
    assert (deep[..., 3] == alpha16).all()

    # Formats without alpha say they drop it; a 16-bit alpha written in 8 bits is scaled.
    with pytest.warns(SharpenWarning, match=r"one.jpg: alpha channel dropped \(.jpg holds none"):
        run_stream(onnx_model, str(src / "rgba.png"), tmp_path / "one.jpg")
    assert cv2.imread(str(tmp_path / "one.jpg"), cv2.IMREAD_UNCHANGED).shape == (29, 45, 3)
    with pytest.warns(SharpenWarning, match=r"one.webp: written as 8-bit \(.webp holds 8 bits"):
        run_stream(onnx_model, str(src / "rgba16.tiff"), tmp_path / "one.webp")
    out = cv2.imread(str(tmp_path / "one.webp"), cv2.IMREAD_UNCHANGED)
    assert out.shape == (29, 45, 4) and out.dtype == np.uint8
    assert np.abs(out[..., 3].astype(int) - (alpha16 >> 8)).max() <= 1


def test_run_stream_takes_frames_the_app_holds(tmp_path, onnx_model):
    """A list of numpy frames was read as a file name ('OSError: [Errno 36] File name too long:
    '[array([[[179, ...'); a list, a generator, a stack and one frame now stream as frames, in
    order, with the same result as FrameProcessor, and a frame that is not an image is named."""
    from runtime import ArraySource, FrameError, FrameProcessor, Sink

    frames = [textured_frame(i) for i in range(3)]
    before = [f.copy() for f in frames]
    backend = load_backend(onnx_model, threads=1)
    want = [FrameProcessor(backend)(f) for f in frames]

    class Collect(Sink):
        def __init__(self):
            self.got = []

        def write(self, original, sharpened, name):
            self.got.append((name, sharpened))

    for source, n in ((frames, 3), (iter(frames), 3), (np.stack(frames), 3), (frames[1], 1)):
        sink = Collect()
        stats = run_stream(backend, source, sink)
        assert stats["frames_processed"] == n and stats["source"]["kind"] == "arrays"
        assert [name for name, _ in sink.got] == [f"frame_{i:06d}" for i in range(n)]
        for (_, got), ref in zip(sink.got, want if n == 3 else want[1:2]):
            assert np.array_equal(got, ref)
    assert all(np.array_equal(a, b) for a, b in zip(frames, before))   # inputs untouched
    out = tmp_path / "out.mp4"
    assert run_stream(onnx_model, frames, out, threads=1)["frames_processed"] == 3
    assert len(read_video(out)[0]) == 3
    with pytest.raises(FrameError, match=r"frame 1: unsupported frame dtype float32"):
        run_stream(backend, [frames[0], frames[0].astype(np.float32) / 255], Collect())
    with pytest.raises(TypeError, match="frames must be numpy arrays"):
        ArraySource(3.5)


def test_an_opened_source_is_a_context_manager_that_releases_it(tmp_path):
    """open_source gave a Source with close() but no `with`, unlike load_backend's Backend: an
    app reading a camera or file itself kept the capture open after an error."""
    from runtime import open_source

    video = tmp_path / "in.mp4"
    write_video(video, n=3)
    with open_source(str(video)) as src:
        assert len(list(src.frames(threading.Event()))) == 3
    assert not src.cap.isOpened()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_run_stream_reaches_the_caller(tmp_path, onnx_model, signum):
    """run_stream took Ctrl-C / SIGTERM, closed the stream and returned its stats, so
    `for clip in clips: run_stream(...)` went on to the next clip at every Ctrl-C, and a SIGTERM
    ended nothing but the stream (the demo went on to its benchmark); it now raises
    StreamInterrupted, a KeyboardInterrupt carrying the stats, once the output is closed."""
    import os

    from runtime import Sink, StreamInterrupted

    class SignalOnThirdFrame(Sink):
        def __init__(self) -> None:
            self.n = 0

        def write(self, original, sharpened, name) -> None:
            self.n += 1
            if self.n == 3:   # run_stream's handler is in place by now
                os.kill(os.getpid(), signum)

    before = signal.getsignal(signum)
    stats, sinks = tmp_path / "s.json", []
    with pytest.raises(StreamInterrupted) as stopped:
        for _ in range(2):
            sinks.append(SignalOnThirdFrame())
            run_stream(str(onnx_model), "synthetic:64x48@200", sinks[-1], max_frames=100,
                       stats_path=stats)
    assert len(sinks) == 1 and isinstance(stopped.value, KeyboardInterrupt)
    assert stopped.value.signum == signum and stopped.value.stats["interrupted"] is True
    assert json.loads(stats.read_text())["frames_processed"] == sinks[0].n < 100
    assert signal.getsignal(signum) is before


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_worker_whose_join_a_ctrl_c_interrupted_still_counts_as_running(tmp_path):
    """Python 3.11's Thread.join, interrupted by a KeyboardInterrupt, marks the thread stopped
    (`is_alive()` False) while it still runs: a second Ctrl-C during the pipeline's join let
    `sharpen run` shut the interpreter down around the infer thread inside ONNX Runtime
    ("terminate called without an active exception", SIGABRT, exit 134)."""
    script = tmp_path / "join.py"
    script.write_text(
        "import signal, threading\n"
        "from runtime.cli import _exit_now_if_workers_run\n"
        "from runtime.pipeline import _Worker\n"
        "release = threading.Event()\n"
        "w = _Worker('infer', lambda: release.wait(30), threading.Event(), [])\n"
        "w.start()\n"
        "def ctrl_c(*_):\n"
        "    raise KeyboardInterrupt\n"
        "signal.signal(signal.SIGALRM, ctrl_c)\n"
        "signal.setitimer(signal.ITIMER_REAL, 0.2)\n"
        "try:\n"
        "    w.join(timeout=10)\n"
        "except KeyboardInterrupt:\n"
        "    pass\n"
        "_exit_now_if_workers_run(130)\n"
        "print('returned')\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 130, proc.stderr
    assert "not waiting for the infer thread" in proc.stderr
    assert "returned" not in proc.stdout


def test_a_synthetic_source_takes_width_and_height_and_refuses_an_empty_size(
        tmp_path, onnx_model, capsys):
    """`--source synthetic` reads its size from --width/--height, which `sharpen run` said had
    no effect; a zero size (synthetic:0x0, or --width 0) failed later with 'empty frame of
    shape (0, 0, 3)' and exit 1 instead of a usage error naming the source."""
    out = tmp_path / "s"
    rc = run_cli(["run", "--model", str(onnx_model), "--source", "synthetic", "--width", "40",
                  "--height", "24", "--max-frames", "2", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0 and "no effect" not in err, err
    written = sorted(out.glob("*.png"))   # a live source: which frames is up to the timing
    assert written and cv2.imread(str(written[0])).shape == (24, 40, 3)
    for argv in (["--source", "synthetic:0x0"], ["--source", "synthetic:64x0@5"],
                 ["--source", "synthetic", "--width", "0"]):
        rc = run_cli(["run", "--model", str(onnx_model), *argv, "--max-frames", "2",
                      "--out", str(tmp_path / "z.mp4"), "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and "synthetic" in err and "at least 1x1" in err, (argv, err)


def test_a_stopped_stream_runs_no_more_frames_through_the_model(tmp_path, onnx_model):
    """After Ctrl-C (the stop event) the infer thread went on running every frame still in the
    capture queue, whose results nobody wrote: with a 1080p model at ~0.4 s a frame,
    `sharpen run` took two seconds more to stop, and the stats' throughput counted them."""
    from runtime.sinks import Sink

    src = tmp_path / "in.mp4"
    write_video(src, n=12)
    stop = threading.Event()
    calls_after_stop = []

    class Counting(SlowBackend):
        def infer(self, batch):
            calls_after_stop.append(stop.is_set())
            return super().infer(batch)

    class StopAfterFirst(Sink):
        def write(self, original, sharpened, name):
            stop.set()

    run_stream(Counting(load_backend(onnx_model, threads=1), delay=0.1), str(src),
               StopAfterFirst(), stop_event=stop, queue_size=4)
    # The frame under way when the stop came may finish; no new one starts.
    assert sum(calls_after_stop) <= 1, calls_after_stop


def test_the_automatic_overlap_is_half_the_tile_that_runs(tmp_path):
    """A tile is rounded up to the model's size multiple (`--tile 40` runs as 64 for `edge`),
    but the automatic overlap was capped at half the tile as given (20), not as run (32): a
    narrower overlap than the tile allows, and a warning naming a tile that does not run."""
    from runtime.backends import load_backend as load

    model = _model_seeing(tmp_path, 40)
    multiple = load(model).multiple
    tile = 4 * multiple - 2                         # runs as 4 x multiple
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), textured_frame(1, h=96, w=128))
    with runtime_warnings() as said:
        s = run_stream(model, str(src), tmp_path / "t.png", tile=tile)
    assert (s["overlap"], s["overlap_auto"]) == (min(40, 2 * multiple), True), said
    assert s["tile"] == 4 * multiple   # what ran, as the stats and `done:` line say
    assert not any(f"tile={tile}," in m or f"tile={tile} " in m for m in said
                   if "capped" in m), said
    # A tile below the multiple runs as one multiple, its automatic overlap half of that:
    # not refused as 'overlap (4) must be smaller than tile (3)'.
    with runtime_warnings() as said:
        s = run_stream(model, str(src), tmp_path / "t1.png", tile=multiple - 1)
    assert s["overlap"] == multiple // 2 and s["tile"] == multiple
    assert any(f"tile={multiple - 1} runs as {multiple}" in m for m in said), said


def test_the_stats_file_says_what_was_measured_and_each_stages_extremes(tmp_path, onnx_model):
    """Two stats files (--threads 1 and 2, two models) could not be told apart, and a stall
    hid below p99: trtexec and onnxruntime_perf_test report min and max as well."""
    src = tmp_path / "in.mp4"
    write_video(src, n=6)
    stats = tmp_path / "stats.json"
    rc = run_cli(["run", "--model", str(onnx_model), "--source", str(src), "--output",
                  str(tmp_path / "out.mp4"), "--stats", str(stats), "--threads", "1", "--quiet"])
    assert rc == 0
    data = json.loads(stats.read_text())
    assert data["model"] == str(onnx_model) and data["threads"] == 1
    for d in [*data["latency_ms"].values(), data["end_to_end_ms"]]:
        assert d["min"] <= d["p50"] <= d["p90"] <= d["p99"] <= d["max"], d
    with load_backend(onnx_model, threads=1) as backend:   # an app's own: its threads unknown
        summary = run_stream(backend, [textured_frame(0)], stats_path=stats, threads=2)
    assert summary["model"] == str(onnx_model) and summary["threads"] is None


def test_the_live_line_of_a_file_says_how_far_and_the_time_left(tmp_path, onnx_model, capsys):
    """An hour-long video said '1200 frames  3.1 fps' and nothing of how many were left."""
    from runtime.stats import Stats

    src = tmp_path / "in.mp4"
    write_video(src, n=6)
    rc = run_cli(["run", "--model", str(onnx_model), "--source", str(src), "--output",
                  str(tmp_path / "o.mp4"), "--max-frames", "4"])
    lines = capsys.readouterr().err.splitlines()
    live = [ln for ln in lines if " frames  " in ln][-1]   # dated; then done: and the codec
    assert rc == 0 and live.split(" ", 2)[2].startswith(f"{src}: 4/4 frames  "), lines
    stats = Stats()
    stats.total, stats.frames_processed, stats.t_start = 9000, 1800, time.perf_counter() - 600
    assert stats.line().startswith("1800/9000 frames  40m00s left  3.0 fps  "), stats.line()
    stats.total = None   # a camera: no end to count down to
    assert stats.line().startswith("1800 frames  3.0 fps  "), stats.line()


def test_the_live_line_gives_the_last_seconds_not_the_whole_run():
    """Watching a camera's latency: the line gave the p50 of the last 10000 frames (5 minutes
    at 30 fps) and the whole run's fps, so a latency that grew, or a stream that stalled, hardly
    moved it. It gives the frames since the line before last (about two seconds); the --stats
    file and the closing line keep the whole run."""
    from runtime.stats import Stats

    stats = Stats()
    stats.t_start = time.perf_counter() - 600
    for _ in range(1000):   # ten minutes at 500 ms
        stats.add("end_to_end", 0.5)
        stats.add("infer", 0.4)
    stats.frames_processed = 1000
    stats.line()
    time.sleep(1.0)
    for _ in range(20):    # then a second at 100 ms, 20 frames
        stats.add("end_to_end", 0.1)
        stats.add("infer", 0.05)
    stats.frames_processed = 1020
    line = stats.line()
    assert " e2e p50 100.0 max 100.0 ms  infer 50.0 " in line, line
    fps = float(line.split(" fps")[0].split()[-1])
    assert 10 <= fps <= 21, line   # not the run's 1020 in 601 s, 1.7
    time.sleep(1.0)
    stats.line()
    time.sleep(1.0)
    line = stats.line()  # a stall: two seconds without a frame
    assert " 0.0 fps  e2e p50 - max - ms  infer - " in line, line
    assert stats.summary()["end_to_end_ms"]["n"] == 1020


def test_the_live_line_gives_the_worst_end_to_end_since_the_last_line():
    """A service's journal, read days later, holds a line a minute: its p50 hid a frame that
    took seconds (a stall, a swap storm) among a minute's 1800, which only the whole run's
    --stats max kept, with no time to it. Each line gives the worst since the line before."""
    from runtime.stats import Stats

    stats = Stats()
    stats.t_start = time.perf_counter() - 60
    stats.line()
    for i in range(300):
        stats.add("end_to_end", 2.5 if i == 150 else 0.01)
    stats.frames_processed = 300
    line = stats.line()
    assert " e2e p50 10.0 max 2500.0 ms " in line, line
    for _ in range(300):
        stats.add("end_to_end", 0.01)
    stats.frames_processed = 600
    stats.line()
    line = stats.line()   # the spike is two lines back: gone from this one
    assert " e2e p50 10.0 max 10.0 ms " in line, line


def test_the_stats_of_a_day_long_run_are_the_whole_runs_in_bounded_memory():
    """A camera run for a day: --stats gave the p50s, mean, min and max of the last 10000
    frames (5 minutes at 30 fps), so a stall in its first hour was gone from `max`, and `n`
    said 10000 of 2.6 million. A small window stands in for the day: the numbers are the
    whole run's (min, max, mean exact; percentiles within the stated accuracy), and what is
    kept per stage stays bounded however long it runs."""
    from runtime.stats import RELATIVE_ACCURACY, Stats

    rng = np.random.default_rng(0)
    # 50000 frames of 5-50 ms, and one 3 s stall early on
    lat = rng.uniform(0.005, 0.05, 50_000)
    lat[100] = 3.0
    stats = Stats(window=100)
    for x in lat:
        stats.add("infer", float(x))
    got = stats.summary()["latency_ms"]["infer"]
    want = np.percentile(lat * 1000, [50, 90, 95, 99])
    for key, w in zip(("p50", "p90", "p95", "p99"), want):
        assert abs(got[key] - w) <= RELATIVE_ACCURACY * w + 1e-3, (key, got[key], w)
    assert got["n"] == 50_000 and got["max"] == 3000.0, got
    assert got["min"] == round(lat.min() * 1000, 3), got
    assert got["mean"] == round(lat.mean() * 1000, 3), got
    # Bounded: the recent samples the live line reads, and the run's buckets, which a
    # thousand times more frames of the same latencies would not add to.
    kept = stats.kept_samples("infer")
    assert kept <= 100 + 1000, kept
    for x in rng.uniform(0.005, 0.05, 20_000):
        stats.add("infer", float(x))
    assert stats.kept_samples("infer") == kept


def test_the_stats_of_a_short_run_are_exact():
    """Up to the window, the percentiles are the samples' own (np.percentile's)."""
    from runtime.stats import Stats

    lat = [0.001 * k for k in range(1, 101)]
    stats = Stats(window=100)
    for x in lat:
        stats.add("write", x)
    got = stats.summary()["latency_ms"]["write"]
    assert got["p50"] == round(float(np.percentile(lat, 50)) * 1000, 3) == 50.5, got
    assert got["p90"] == round(float(np.percentile(lat, 90)) * 1000, 3), got


def test_the_run_stats_of_negative_latencies_are_their_samples_percentiles():
    """Past the window the percentiles came from log buckets of positive values only: a
    negative latency (an app's Source stamping t_capture with time.time(), another clock)
    counted as 0, so p50 said 0.0 ms beside a min, max and mean of -1000 ms, and a p50 of
    5.0 where the samples' own was -495."""
    from runtime.stats import RELATIVE_ACCURACY, RunLatency, Stats

    rng = np.random.default_rng(1)
    for lat in ([-1.0] * 200, [-1.0] * 100 + [0.01] * 100,
                list(rng.uniform(-0.05, 0.05, 3000)) + [0.0] * 50):
        stats = Stats(window=10)
        with pytest.warns(SharpenWarning, match=r"end_to_end latency of -.* s: a Source's "
                          r"Frame.t_capture must be time.perf_counter\(\)'s"):
            for x in lat:
                stats.add("end_to_end", x)
        got = stats.summary()["end_to_end_ms"]
        ms = np.sort(np.asarray(lat) * 1000)
        for key, q in (("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99)):
            # Each of the two samples np.percentile interpolates between is within the
            # accuracy; across a change of sign, relative to the larger of them.
            r = q / 100 * (len(ms) - 1)
            near = max(abs(ms[int(r)]), abs(ms[min(int(r) + 1, len(ms) - 1)]))
            w = np.percentile(ms, q)
            assert abs(got[key] - w) <= RELATIVE_ACCURACY * near + 1e-3, (key, got, w)
            assert got["min"] <= got[key] <= got["max"], got
    run = RunLatency()
    for x in (-2.0, -1.0, 0.0, 1.0, 2.0):
        run.add(x)
    assert run.percentiles([0, 25, 50, 75, 100]) == pytest.approx(
        [-2.0, -1.0, 0.0, 1.0, 2.0], rel=RELATIVE_ACCURACY)


def test_a_latency_that_is_not_a_number_does_not_end_the_run():
    """nan or inf as a latency (an app's Source giving Frame.capture_s or t_capture as nan)
    raised ValueError/OverflowError from the log buckets in the pipeline's thread, ending
    the run; inside the window it made every percentile nan (and the --stats file then held
    NaN, which is not JSON). It is left out of the numbers, and said once."""
    from runtime.stats import Stats

    for window in (10, 10000):
        stats = Stats(window=window)
        with pytest.warns(SharpenWarning) as said:
            for k in range(100):
                stats.add("capture", 0.01)
                stats.add("capture", float("nan") if k % 2 else float("inf"))
        assert len(said) == 1 and "capture latency of" in str(said[0].message) and \
            "left out of the stats" in str(said[0].message) and \
            "Frame.capture_s" in str(said[0].message), [str(w.message) for w in said]
        got = stats.summary()["latency_ms"]["capture"]
        assert got == {"p50": 10.0, "p90": 10.0, "p95": 10.0, "p99": 10.0, "mean": 10.0,
                       "min": 10.0, "max": 10.0, "sum": 1000.0, "n": 100}, got
        json.dumps(stats.summary(), allow_nan=False)


def test_an_apps_source_with_a_capture_time_of_nan_runs_to_its_end(onnx_model):
    """An app's own Source giving Frame.capture_s as nan (no read timed) ended run_stream
    with "cannot convert float NaN to integer" from the stats, its frames not all written."""
    from runtime import Sink
    from runtime.source_base import Frame, Source

    class Held(Source):
        def frames(self, stop):
            for i in range(3):
                yield Frame(i, textured_frame(i), f"f{i}", time.perf_counter(), float("nan"))

    written = []

    class Keep(Sink):
        def write(self, original, sharpened, name):
            written.append(name)

    with pytest.warns(SharpenWarning, match="capture latency of nan s: a Source's "
                      "Frame.capture_s must be"):
        stats = run_stream(str(onnx_model), Held("held"), Keep(), quiet=True)
    assert written == ["f0", "f1", "f2"]
    assert stats["latency_ms"]["capture"]["n"] == 0 and stats["end_to_end_ms"]["n"] == 3


def test_the_stats_give_the_thread_count_taken_from_omp_num_threads(tmp_path, onnx_model,
                                                                     monkeypatch):
    """Without --threads the engine runs with OMP_NUM_THREADS's count: the stats said 0 (the
    engine's default), which it no longer was."""
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    summary = run_stream(onnx_model, [textured_frame(0)], stats_path=tmp_path / "s.json")
    assert summary["threads"] == 3
    assert json.loads((tmp_path / "s.json").read_text())["threads"] == 3
    assert run_stream(onnx_model, [textured_frame(0)], threads=1)["threads"] == 1


@pytest.mark.parametrize("kind", ["video", "synthetic"])
def test_a_paced_source_does_not_catch_up_the_time_its_first_frame_was_held(tmp_path, kind):
    """A file run with --live (and a synthetic source at a rate) is paced from when it was
    opened; the pipeline holds the first frame through the model's warm-up (seconds on a GPU),
    and the frames due meanwhile then came at once. A live video, which follows the clock,
    left out all but a second of them: the opening seconds of a file the model kept up with."""
    if kind == "video":
        path = tmp_path / "in.mp4"
        write_video(path, n=16, fps=20.0)
        src = VideoSource(str(path), str(path), live=True, kind="video")
    else:
        src = SyntheticSource("synthetic", width=FRAME_W, height=FRAME_H, fps=20.0, live=True)
    stop = threading.Event()
    frames = src.frames(stop)
    try:
        next(frames)
        time.sleep(1.5)   # the warm-up
        t0 = time.perf_counter()
        for _ in range(10):
            next(frames)
        took = time.perf_counter() - t0
    finally:
        stop.set()
        frames.close()
        src.close()
    assert took >= 0.4, took   # ten frames at 20 fps: half a second, not a burst


def test_a_live_video_left_out_frame_is_still_shown_in_the_window(tmp_path):
    """Frames a live video leaves out (a source faster than its rate) were left out of --show's
    window beside it too, which plays no rate: it showed a 50 fps camera at 25 fps."""
    from runtime.pipeline import _END, _write_loop
    from runtime.sinks import MultiSink, Sink
    from runtime.video_sink import VideoFileSink
    from runtime.source_base import Frame
    from runtime.stats import Stats

    class Shown(Sink):
        """What a window is given (the real one needs a display)."""
        def __init__(self):
            self.names = []

        def write(self, original, sharpened, name):
            self.names.append(name)

    shown = Shown()
    video = VideoFileSink(tmp_path / "o.mp4", fps=10.0)
    q, stop, stats = FrameQueue(100, drop_oldest=False), threading.Event(), Stats()
    t = time.perf_counter()
    img = textured_frame(0)
    for i in range(40):   # 40 frames in no time, for a 10 fps video: past a second ahead
        q.put((Frame(i, img, f"frame_{i:06d}", t + i * 1e-4), img), stop)
    q.put(_END, stop)
    sink = MultiSink([video, shown])
    _write_loop(q, sink, stop, stats, None, live=True, video_fps=10.0)
    sink.close()
    assert stats.left_out_frames > 0, stats.summary()
    assert len(shown.names) == 40, len(shown.names)
    assert len(read_video(tmp_path / "o.mp4")[0]) == 40 - stats.left_out_frames


def test_an_apps_sink_is_never_asked_to_repeat_a_negative_count(onnx_model):
    """Past a second ahead of the clock (a live source faster than its rate), an app's sink,
    which frames are not left out of, was asked to repeat the frame before a drop a negative
    number of times (the count of slots it was ahead), not none."""
    from runtime import Sink

    class Recording(Sink):
        def __init__(self):
            self.asked, self.written = [], 0

        def write(self, original, sharpened, name):
            self.written += 1

        def repeat_last(self, n):
            self.asked.append(n)
            return n

    sink = Recording()
    stats = run_stream(onnx_model, "synthetic:64x48", sink, max_frames=300, fps=30.0, live=True)
    assert stats["dropped_frames"] > 0, stats   # drops, else nothing is asked
    assert all(n > 0 for n in sink.asked), sink.asked
    assert stats["repeated_frames"] >= 0 and stats["left_out_frames"] == 0, stats


class CountingRuns(SlowBackend):
    """A real ONNX backend that counts the model runs."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner, delay=0.0)
        self.runs = 0

    def infer(self, batch):
        self.runs += 1
        return super().infer(batch)


def test_a_single_photo_runs_the_model_once(tmp_path, onnx_model):
    """A single photo is its whole run: two warm-up runs on it before the real one made it
    take three times as long (a 4K photo 4.5 s instead of 1.8 on 2 cores), for stats that
    had no later frame to time warm. A folder and a video still warm up first, untimed, and
    the stats say how many warm-up runs there were."""
    photo = tmp_path / "one.png"
    cv2.imwrite(str(photo), textured_frame(1, h=64, w=96))
    backend = CountingRuns(load_backend(onnx_model, threads=1))
    stats = run_stream(backend, str(photo), tmp_path / "out.png")
    assert backend.runs == 1
    assert stats["warmup_runs"] == 0
    folder = tmp_path / "two"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"f{i}.png"), textured_frame(i, h=64, w=96))
    backend.runs = 0
    stats = run_stream(backend, str(folder), tmp_path / "out2")
    assert backend.runs == 2 + 2
    assert stats["warmup_runs"] == 2


@pytest.mark.parametrize("seconds, said", [(0.0181, " over 0.018s"), (0.26, " over 0.3s"),
                                           (59.94, " over 59.9s"), (185.0, " over 3m05s"),
                                           (0.00001, " over 0.001s")])
def test_the_done_line_s_time_is_never_zero_seconds(seconds, said):
    """A folder of small photos sharpened in 18 ms said "220.5 fps over 0.0s"."""
    from runtime.cli import _over
    assert _over({"elapsed_s": seconds}) == said
