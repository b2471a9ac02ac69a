"""User errors end in one clear line on stderr and a non-zero exit, never a traceback."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime_fixtures import (FRAME_H, FRAME_W, damaged_video, one_op_model, onnx_model,  # noqa: E402
                              read_video, resize_model, run_cli, run_cli_subprocess, runtime_warnings,
                              textured_frame, write_video)

from runtime.prepost import FrameError, to_bgr8  # noqa: E402
from runtime.pipeline import run_stream  # noqa: E402
from runtime.sources import SourceError, open_source  # noqa: E402

__all__ = ["onnx_model"]

# What a --threads of 0 means, as the range errors say it (the runtimes: README "threads").
ZERO_THREADS = ("0: MKL_NUM_THREADS or else OMP_NUM_THREADS when set, else a CPU limit's count, "
                "else all cores")


def _run(capsys, *argv: str) -> tuple[int, str]:
    rc = run_cli(["run", *argv, "--quiet"])
    err = capsys.readouterr().err
    return rc, err


def _one_clear_line(err: str, *needles: str) -> None:
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1, err
    assert lines[0].startswith("sharpen run: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], err


def test_missing_source(tmp_path, capsys, onnx_model):
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(tmp_path / "nope.mp4"))
    assert rc != 0
    _one_clear_line(err, "source not found", "nope.mp4")


def test_garbage_video_and_image(tmp_path, capsys, onnx_model):
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(bad))
    assert rc != 0
    _one_clear_line(err, "garbage.mp4")
    img = tmp_path / "broken.png"
    img.write_bytes(b"\x89PNG not really")
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(img))
    assert rc != 0
    _one_clear_line(err, "not a readable image", "broken.png")


def test_folder_of_unreadable_images_names_each_and_leaves_no_empty_output(tmp_path, capsys,
                                                                           onnx_model):
    src = tmp_path / "bad"
    src.mkdir()
    (src / "a.png").write_bytes(b"\x89PNG not really")
    (src / "b.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(src), "--output", str(out))
    assert rc == 2, err
    assert "a.png" in err and "b.jpg" in err and "produced no frames" in err, err
    assert not out.exists()
    out.mkdir()   # a folder the user made is theirs: kept
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(src), "--output", str(out))
    assert rc == 2 and out.is_dir()


def test_a_rerun_with_only_unreadable_images_left_lists_them_not_no_frames(tmp_path, capsys,
                                                                           onnx_model):
    """A library sharpened, then run again (new photos looked for) with its damaged photos
    still there: every readable one kept, the rest unreadable, ended in "error: source
    produced no frames", exit 2, as though nothing had been found. It is done: exit 1 with the
    list, as the first run ended."""
    src = tmp_path / "lib" / "2024"
    src.mkdir(parents=True)
    cv2.imwrite(str(src / "ok.png"), textured_frame(0))
    (src / "empty.jpg").write_bytes(b"")
    out = tmp_path / "out"
    argv = ("--model", str(onnx_model), "--source", str(tmp_path / "lib" / "**" / "*"),
            "--output", str(out))
    rc, err = _run(capsys, *argv)
    assert rc == 1 and (out / "2024" / "ok.png").is_file(), err
    rc, err = _run(capsys, *argv)
    assert rc == 1, err
    assert "produced no frames" not in err and "error" not in err, err
    assert f"1 image already in {out} kept as it is, " in err, err   # not "as they are"
    assert "empty.jpg: empty file (0 bytes)" in err, err
    assert "1 image could not be read" in err, err


def test_empty_folder_and_missing_camera(tmp_path, capsys, onnx_model):
    (tmp_path / "empty").mkdir()
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(tmp_path / "empty"))
    assert rc != 0
    _one_clear_line(err, "no images found")
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", "/dev/video99")
    assert rc != 0
    _one_clear_line(err, "/dev/video99")


def test_a_clip_of_no_frames_is_said_to_have_none(tmp_path, capsys, onnx_model):
    """A clip whose container lists 0 frames (a recording stopped before its first) was
    called "corrupt or unsupported video?"."""
    clip = tmp_path / "empty.avi"
    cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"MJPG"), 10, (48, 40)).release()
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(clip))
    assert rc != 0
    _one_clear_line(err, f"{str(clip)!r} has no frames (its container lists 0: an empty "
                         "recording)")


def test_bad_models_cli(tmp_path, capsys):
    src = tmp_path / "in.mp4"
    write_video(src, n=3)
    rc, err = _run(capsys, "--model", str(tmp_path / "missing.onnx"), "--source", str(src))
    assert rc != 0
    _one_clear_line(err, "model not found")
    txt = tmp_path / "notonnx.onnx"
    txt.write_text("hello, I am a text file\n" * 20)
    rc, err = _run(capsys, "--model", str(txt), "--source", str(src))
    assert rc != 0
    _one_clear_line(err, "cannot load", "notonnx.onnx")


def test_a_shipped_models_name_as_model_says_to_export_it(tmp_path, capsys, monkeypatch):
    """`sharpen run --model fast`, as evaluate, export and distill's init= take it, said only
    "model not found: fast": run takes exported files, and a user trying the shipped student
    on their video before a fine-tune's export had to find out how to make one."""
    src = tmp_path / "in.mp4"
    write_video(src, n=3)
    monkeypatch.chdir(tmp_path)
    rc, err = _run(capsys, "--model", "fast", "--source", str(src))
    assert rc == 2, err
    _one_clear_line(err, "model not found: fast: `sharpen run` takes an exported model file "
                    "(.onnx, .tflite, .engine), not a checkpoint or a shipped model's name; "
                    "if fast is a shipped student, export it first: sharpen export --weights "
                    "fast --out export/ (then "
                    "--model export/student-fast.onnx)")
    rc, err = _run(capsys, "--model", "fast.onnx", "--source", str(src))   # a file name
    _one_clear_line(err, "model not found: fast.onnx")
    assert "export it first" not in err, err


def test_bad_model_subprocess(tmp_path):
    txt = tmp_path / "x.onnx"
    txt.write_text("not a model")
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), textured_frame(0))
    r = run_cli_subprocess(["run", "--model", str(txt), "--source", str(img)])
    assert r.returncode != 0
    _one_clear_line(r.stderr, "cannot load")


def test_show_without_display_fails_clearly(tmp_path, capsys, monkeypatch, onnx_model):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), textured_frame(0))
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(img), "--show")
    assert rc != 0
    _one_clear_line(err, "--show needs a display", "or use --out to save the result")


def test_show_without_display_beside_out_names_it_and_makes_nothing(tmp_path, capsys,
                                                                     monkeypatch, onnx_model):
    """With --out given, 'or use --out' told the user to do what they had done, and the
    refusal came after the output folder was made, leaving it empty."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), textured_frame(0))
    video = tmp_path / "clip.mp4"
    write_video(video, n=2)
    for source, out in ((src, tmp_path / "new" / "sharp"), (video, tmp_path / "new2" / "o.mp4")):
        rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(source), "--show",
                       "--out", str(out))
        assert rc == 2
        _one_clear_line(err, f"run without --show: --out {out} saves the result")
        assert not out.parent.exists(), list(out.parent.rglob("*"))
    if "GUI:                           NONE" in cv2.getBuildInformation():   # headless OpenCV
        monkeypatch.setenv("DISPLAY", ":99")
        out = tmp_path / "new3" / "sharp"
        rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(src), "--show",
                       "--out", str(out))
        _one_clear_line(err, "opencv-python-headless, or run without --show: --out "
                             f"{out} saves the result")
        assert rc == 2 and not out.parent.exists()
        rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(src), "--show")
        _one_clear_line(err, "opencv-python-headless, or use --out to save the result")
        assert rc == 2


def test_bad_output_and_options(tmp_path, capsys, onnx_model):
    src = tmp_path / "in.mp4"
    write_video(src, n=3)
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(src),
                   "--output", str(tmp_path / "x.png"))
    assert rc != 0
    _one_clear_line(err, "image file but the source is not a single image")
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(src), "--tile", "32",
                   "--overlap", "32")
    assert rc == 2   # a usage error, like argparse's
    _one_clear_line(err, "--overlap")


def test_unwritable_stats_and_video_fail_before_the_run_with_the_reason(tmp_path, capsys,
                                                                        onnx_model):
    src = tmp_path / "in.mp4"
    write_video(src, n=3)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = tmp_path / "out"
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(src), "--output",
                   str(out), "--stats", str(blocker / "stats.json"))
    assert rc == 2
    _one_clear_line(err, "--stats", f"{blocker} is a file, not a folder")
    assert not out.exists()   # refused before any frame was processed
    for bad in (blocker / "o.mp4", blocker / "o.png", blocker / "frames"):
        # a single image, so that an image --out is valid too
        rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(src_img(tmp_path)),
                       "--output", str(bad))
        assert rc == 2
        _one_clear_line(err, f"--out {bad}", "is a file, not a folder")
    # Permission bits pass for root on a virtual file system; the failure came at the end.
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(src), "--output",
                   str(out), "--stats", "/proc/stats.json")
    assert rc == 2
    _one_clear_line(err, "--stats /proc/stats.json", "cannot write in /proc")
    assert not out.exists()
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(src), "--output",
                   str(out), "--stats", str(tmp_path))
    assert rc == 2
    _one_clear_line(err, "--stats", "is a folder")
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(src), "--output",
                   "/sys/out.mp4")
    assert rc == 2
    _one_clear_line(err, "--out /sys/out.mp4", "cannot write in /sys")
    assert "without --out" not in err   # the user chose that path


def test_a_default_output_in_a_read_only_folder_says_it_was_the_default(tmp_path, capsys,
                                                                        onnx_model, monkeypatch):
    """A container's working directory is often read-only: `sharpen run` without --out said
    `--out runs/sharpen/in.mp4: cannot write in runs/sharpen`, naming a flag the user never gave
    and a folder they never chose. /proc stands in for it: root cannot write there either."""
    src = tmp_path / "in.mp4"
    write_video(src, n=3)
    frames = tmp_path / "frames"
    frames.mkdir()
    src_img(frames)
    monkeypatch.chdir("/proc")
    for source in (src, src_img(tmp_path), frames):
        rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(source))
        assert rc == 2
        _one_clear_line(err, "--out runs/sharpen/", "cannot write in runs/sharpen",
                        "without --out the results go to runs/sharpen/ in the current folder "
                        "(/proc): give --out a path that can be written")


def src_img(folder):
    img = folder / "one.png"
    cv2.imwrite(str(img), textured_frame(0))
    return img


def test_stats_must_not_replace_the_source_or_the_output(tmp_path, capsys, onnx_model):
    src = tmp_path / "in.mp4"
    write_video(src, n=3)
    before = src.read_bytes()
    for out, stats in ((tmp_path / "o.mp4", src), (tmp_path / "o.mp4", tmp_path / "o.mp4")):
        rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(src), "--output",
                       str(out), "--stats", str(stats))
        assert rc == 2
        _one_clear_line(err, "--stats", "is the source or the --out file")
    assert src.read_bytes() == before and not (tmp_path / "o.mp4").exists()


def test_output_errors_name_run_streams_keywords_from_python(tmp_path, onnx_model,
                                                             monkeypatch):
    """A SinkError from run_stream named --out and --stats, flags a Python caller never gave;
    it names output= and stats_path= (sharpen run keeps its flags: the tests above)."""
    from runtime.sinks import SinkError

    src = tmp_path / "in.mp4"
    write_video(src, n=3)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for output, stats, said in (
            (tmp_path / "o.mp4", tmp_path, f"stats_path={tmp_path} is a folder"),
            (tmp_path / "o.mp4", blocker / "s.json", f"stats_path={blocker / 's.json'}: "
                                                     f"{blocker} is a file, not a folder"),
            (tmp_path / "o.mp4", src, f"stats_path={src} is the source or the output file"),
            (blocker / "o.mp4", None, f"output={blocker / 'o.mp4'}: {blocker} is a file"),
            (blocker / "frames", None, f"output={blocker / 'frames'}: {blocker} is a file"),
            (src, None, f"output={src} is the input file"),
            (tmp_path / "o.png", None, f"output={tmp_path / 'o.png'} is an image file but the "
                                       "source is not a single image")):
        with pytest.raises(SinkError) as e:
            run_stream(str(onnx_model), str(src), output, stats_path=stats)
        assert str(e.value).startswith(said), e.value
        assert "--" not in str(e.value), e.value
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(SinkError, match=r"^show=True needs a display .*; run without show=True, "
                                        "or use output to save the result$"):
        run_stream(str(onnx_model), str(src), show=True)


def _closed_port_url() -> str:
    """A URL nothing listens at: opening it is refused at once, and the message says why a
    stream may not open, timeout included (a silent server would take the whole timeout)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/live.mp4"


def test_source_errors_name_run_streams_keywords_from_python(tmp_path, onnx_model, capsys):
    """A SourceError (and a source's warning) from Python named --source, --live, --timeout
    and --reconnect, flags a Python caller never gave; they name source, live=True, timeout and
    reconnect_attempts=0, and sharpen run (flags=True) keeps its flags."""
    import threading

    from runtime.sources import VideoSource

    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "a.mp4", n=3)
    write_video(videos / "b.mp4", n=3)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    write_video(mixed / "c.mp4", n=3)
    cv2.imwrite(str(mixed / "x.png"), np.full((16, 16, 3), 90, np.uint8))
    url = _closed_port_url()
    for spec, kw, said in (
            ("  ", {}, "empty source"),
            (str(videos / "*.mp4"), {}, "and no images: a run reads one video; pass each as "
                                        "source (a run_stream call each)"),
            (str(videos), {}, "video files (a.mp4, b.mp4): pass one as source"),
            (str(mixed / "x.png"), {"live": True},
             "live=True drops the frames a model cannot keep up with, for cameras, streams and "
             "videos; images are all processed, one by one: leave live=True out"),
            (url, {"timeout": 0}, "no answer within FFmpeg's own limit of about 30 s "
                                  "(timeout=0)?)"),
            (url, {"timeout": 2}, "no answer within 2 s (timeout)?)")):
        with pytest.raises(SourceError) as e:
            run_stream(str(onnx_model), spec, tmp_path / "out", **kw)
        assert said in str(e.value) and "--" not in str(e.value), e.value
    with runtime_warnings() as warned:
        run_stream(str(onnx_model), str(mixed), tmp_path / "out")
    assert any(w.endswith("; pass a video as source to sharpen it") for w in warned), warned
    write_video(tmp_path / "cam.mp4", n=3)
    # Not an HTTP download (an rtsp camera's part here), --no-live or not: a stop is a loss
    # (an HTTP download's end may be a recording's, and ends --no-live with a note).
    for flags, said, live in ((False, "reconnect_attempts=0", True),
                              (True, "--reconnect 0", False)):
        src = VideoSource("cam", str(tmp_path / "cam.mp4"), live=live, kind="stream",
                          reconnect_attempts=0, flags=flags)
        src.frame_count = None   # a live stream: its end is a disconnect
        with pytest.raises(SourceError, match=rf"\(reconnecting is off: {said}\)$"):
            list(src.frames(threading.Event()))
        src.close()
    capsys.readouterr()
    # sharpen run names its flags, as before
    for argv, said in (
            (["--source", "  "], "empty --source"),
            (["--source", str(videos / "*.mp4")], "pass each as --source (e.g. a shell loop)"),
            (["--source", str(videos)], "pass one as --source"),
            (["--source", str(mixed / "x.png"), "--live"], "--live drops the frames a model cannot keep "
                                                 "up with"),
            (["--source", str(mixed / "x.png"), "--live"], "leave --live out"),
            (["--source", url, "--timeout", "0"], "about 30 s (--timeout 0)?)"),
            (["--source", url, "--timeout", "2"], "no answer within 2 s (--timeout)?)")):
        rc, err = _run(capsys, "--model", str(onnx_model), *argv, "--output",
                       str(tmp_path / "cli"))
        assert rc == (3 if url in argv else 2), (rc, err)   # 3: a stream not there, for now
        _one_clear_line(err, said)
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(mixed), "--output",
                   str(tmp_path / "cli"))
    assert rc == 0 and "; pass a video as --source to sharpen it" in err, err


def test_image_folder_skips_an_unconvertible_file_by_name(tmp_path, capsys, onnx_model):
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "float.tiff"), np.random.default_rng(1).random((24, 32, 3),
                                                                         dtype=np.float32))
    cv2.imwrite(str(src / "ok.png"), np.full((24, 32, 3), 90, np.uint8))
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(src), "--output",
                   str(tmp_path / "out"))
    assert rc == 1   # one input skipped, the rest processed
    assert str(src / "float.tiff") in err and "float32" in err
    assert (tmp_path / "out" / "ok.png").is_file()


def test_image_folder_says_once_which_files_are_not_images(tmp_path, capsys, onnx_model):
    """A notes.txt, a video or .heic photos in a folder source were left out without a word."""
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "ok.png"), np.full((24, 32, 3), 90, np.uint8))
    for name in ("notes.txt", "IMG_1.heic", "IMG_2.heic", "clip.mp4"):
        (src / name).write_text("x")
    (src / "bad.png").write_bytes(b"\x89PNG not really")   # said on its own, when read
    (src / ".a.png.tmp").write_bytes(b"")   # hidden: an interrupted write, not an input
    (src / "sub").mkdir()
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(src), "--output",
                   str(tmp_path / "out"))
    assert rc == 1, err   # for bad.png; the files that are not images do not fail the run
    said = [ln for ln in err.splitlines() if "not images" in ln]
    assert len(said) == 1, err
    assert said[0].startswith(f"warning: {src}: 4 files that are not images skipped "
                              "(IMG_1.heic, IMG_2.heic, clip.mp4, ...); "), err
    assert ".png" in said[0] and "pass a video as --source" in said[0], err
    assert f"skipped: {src / 'bad.png'}" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ok.png"]
    (src / "ok.png").unlink()
    (src / "bad.png").unlink()
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(src))
    assert rc == 2
    _one_clear_line(err, "no images found", "video files (clip.mp4)")   # the error as before


def test_unknown_out_extension_and_resized_video_frames_are_said(tmp_path, capsys, onnx_model):
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), np.full((24, 32, 3), 90, np.uint8))
    cv2.imwrite(str(src / "b.png"), np.full((40, 48, 3), 90, np.uint8))
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(src), "--output",
                   str(tmp_path / "v.xyz"))
    assert rc == 0 and ".xyz is not a video or image extension" in err
    assert sorted(p.name for p in (tmp_path / "v.xyz").iterdir()) == ["a.png", "b.png"]
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(src), "--output",
                   str(tmp_path / "v.mp4"))
    assert rc == 0 and "b.png: 48x40 frames are resized to fit the video's 32x24" in err
    assert "in all were resized" not in err   # one frame: named above, no total
    cv2.imwrite(str(src / "c.png"), np.full((16, 16, 3), 90, np.uint8))
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(src), "--output",
                   str(tmp_path / "v3.mp4"))
    assert rc == 0 and "c.png" not in err and "2 frames in all were resized to 32x24" in err
    cap = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 2
    assert int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 32


def test_same_file_names_from_several_folders_keep_their_subfolders(tmp_path, capsys,
                                                                   onnx_model):
    for i, d in enumerate(("a", "b")):
        (tmp_path / "in" / d).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "in" / d / "x.png"), np.full((24, 32, 3), 60 + 80 * i,
                                                                  np.uint8))
    rc, err = _run(capsys, "--model", str(onnx_model), "--source",
                   str(tmp_path / "in" / "*" / "x.png"), "--output", str(tmp_path / "out"))
    assert rc == 0, err
    outs = [cv2.imread(str(tmp_path / "out" / d / "x.png")) for d in ("a", "b")]
    assert all(o is not None for o in outs), sorted(map(str, (tmp_path / "out").rglob("*")))
    assert outs[0].mean() < outs[1].mean()   # each went where it came from


def test_folder_without_images_says_what_it_holds(tmp_path, capsys, onnx_model):
    (tmp_path / "shots" / "day1").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "shots" / "day1" / "a.png"), np.full((24, 32, 3), 90, np.uint8))
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(tmp_path / "shots"))
    assert rc != 0
    _one_clear_line(err, "subfolders hold 1 image", "**")
    # ... and the glob it suggests works
    rc, err = _run(capsys, "--model", str(onnx_model), "--source",
                   str(tmp_path / "shots" / "**" / "*"), "--output", str(tmp_path / "out"))
    assert rc == 0 and (tmp_path / "out" / "day1" / "a.png").is_file(), err   # below the glob
    (tmp_path / "shots" / "clip.mp4").write_bytes(b"")
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(tmp_path / "shots"))
    _one_clear_line(err, "video files (clip.mp4)")


def test_runtime_warnings_are_python_warnings_that_the_cli_shows_once_each(tmp_path, capsys,
                                                                          onnx_model):
    """The runtime printed its warnings to stderr, so a program embedding it could neither
    filter nor record them. They are SharpenWarnings now; `sharpen run` shows each once, per
    run, as a plain `warning: ...` line."""
    import warnings

    from runtime import SharpenWarning
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), np.full((24, 32, 3), 90, np.uint8))
    cv2.imwrite(str(src / "b.png"), np.full((40, 48, 3), 90, np.uint8))
    cv2.imwrite(str(src / "c.png"), np.full((16, 16, 3), 90, np.uint8))
    (src / "notes.txt").write_text("x")
    with pytest.warns(SharpenWarning) as rec:
        run_stream(onnx_model, str(src), tmp_path / "lib.mp4")
    said = [str(w.message) for w in rec]
    assert said == [f"{src}: 1 file that is not an image skipped (notes.txt); a folder "
                    "source reads .bmp, .jpeg, .jpg, .pgm, .png, .pnm, .ppm, .tif, .tiff, .webp "
                    "only",
                    "b.png: 48x40 frames are resized to fit the video's 32x24 (the first "
                    "frame's size), black bars keeping their aspect ratio",
                    f"2 frames in all were resized to 32x24 in {tmp_path / 'lib.mp4'}"], said
    assert all(issubclass(w.category, UserWarning) for w in rec)
    assert "warning" not in capsys.readouterr().err   # the library prints nothing itself
    with warnings.catch_warnings():   # a program may make them errors (or ignore them)
        warnings.simplefilter("error", SharpenWarning)
        with pytest.raises(SharpenWarning, match="that is not an image skipped"):
            open_source(str(src))
    # A warning issued for every frame (here: grayscale frames converted) is shown once by
    # Python's default filter, as the command line shows it.
    gray = [np.full((24, 32), 90 + i, np.uint8) for i in range(3)]
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("default")
        run_stream(onnx_model, gray)
    assert [str(w.message) for w in rec] == ["grayscale frames are converted to BGR"]
    for run in ("first", "second"):   # each run says them, not only the first in a process
        rc = run_cli(["run", "--model", str(onnx_model), "--source", str(src), "--out",
                      str(tmp_path / f"{run}.mp4"), "--quiet"])
        err = capsys.readouterr().err
        assert rc == 0, err
        lines = err.splitlines()
        assert lines[:-2] == [f"warning: {m}" for m in said[:2]] + \
            [f"warning: 2 frames in all were resized to 32x24 in {tmp_path / f'{run}.mp4'}"], err
        # --quiet keeps the result and what the video was written in
        assert lines[-2].startswith(f"done: 3 frames from {src}, "), err
        assert lines[-1].startswith(f"sharpen run: {tmp_path / f'{run}.mp4'}: MPEG-4"), err


def test_truncated_video_is_said_and_a_whole_one_is_not(tmp_path, capsys, onnx_model):
    video = tmp_path / "cut.avi"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 10, (32, 24))
    rng = np.random.default_rng(0)
    for _ in range(20):
        vw.write((rng.random((24, 32, 3)) * 255).astype(np.uint8))
    vw.release()
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(video), "--output",
                   str(tmp_path / "whole.mp4"))
    assert rc == 0 and "ended after" not in err, err
    data = video.read_bytes()
    video.write_bytes(data[:len(data) // 2])
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(video), "--output",
                   str(tmp_path / "half.mp4"))
    assert rc == 1, err   # what could be read is written; the exit code says frames are missing
    assert (tmp_path / "half.mp4").is_file()
    assert "cut.avi: the video ended after" in err and "of the 20 frames" in err, err



def test_a_video_damaged_in_the_middle_is_read_past_the_damage(tmp_path, capsys, onnx_model):
    """It used to end at the first frame that failed to decode, exit 0 and keep 5 of 30. The
    video holds the frame before the damage over the frames lost, by the times of those after
    it: the clip's 3 s, in step with its sound."""
    video = damaged_video(tmp_path / "hurt.mp4")
    out = tmp_path / "out.mp4"
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(video), "--output",
                   str(out))
    assert rc == 1, err
    lost = re.search(r"(\d+) damaged frames? after frame \d+ could not be decoded and "
                     "(was|were) skipped", err)
    assert lost, err
    assert (f"(a variable frame rate, or frames lost to damage): the 10 fps video repeats the "
            f"frame before each longer gap ({lost.group(1)} frame") in err, err
    frames, _ = read_video(out)
    assert len(frames) == 30, len(frames)


def test_skipped_inputs_are_warnings_from_python_and_warning_lines_on_the_command_line(
        tmp_path, capsys, onnx_model):
    """run_stream from Python printed 'sharpen run: skipped: ...' on stderr for an unreadable
    image or a damaged stretch of video: a line an app could neither catch nor silence, naming
    a command it did not run."""
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "ok.png"), np.full((24, 32, 3), 90, np.uint8))
    (src / "bad.png").write_bytes(b"\x89PNG not really")
    video = damaged_video(tmp_path / "hurt.mp4")
    for source, said_as in ((src, f"skipped: {src / 'bad.png'}: "),
                            (video, f"{video}: ")):
        with runtime_warnings() as said:
            stats = run_stream(str(onnx_model), str(source), None)
        assert capsys.readouterr().err == ""
        assert len(stats["skipped_inputs"]) == 1, stats
        assert [m for m in said if "skipped" in m] == [
            m for m in said if m.startswith(said_as)] != [], said
        # The command line lists each as a warning line, above its closing line.
        rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(source), "--output",
                       str(tmp_path / f"out-{source.stem}"))
        lines = err.strip().splitlines()
        assert rc == 1 and "sharpen run: skipped" not in err, err
        assert [ln for ln in lines if ln.startswith("warning:") and "skipped" in ln] == [
            f"warning: {m}" for m in said if "skipped" in m], err
        # ... and again at the end, where a library's run of hours shows them with its
        # summary, not thousands of progress lines up.
        what = "1 image" if source == src else "1 input or stretch of the input"
        assert lines[-2] == (f"sharpen run: {what} could not be read; "
                             "the rest were processed:"), err
        assert lines[-1] == "  " + stats["skipped_inputs"][0], err


@pytest.mark.parametrize("limit, written, closing", [
    (1, ["b.png"], "the run stopped at --max-frames 1, before the rest"),
    (3, ["b.png", "c.png", "d.png"], "the rest were processed"),
])
def test_a_run_with_max_frames_says_whether_it_stopped_before_the_rest(
        tmp_path, capsys, onnx_model, limit, written, closing):
    """After `--max-frames 1` over a folder with an unreadable image, the closing lines said
    "1 image could not be read; the rest were processed:" where the images after the limit
    were never read; then `--max-frames 3`, which sharpened all three readable ones, said
    "the run stopped at --max-frames 3, before the rest": the limit was weighed against the
    folder's files, the unreadable one among them."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "a-bad.png").write_bytes(b"\x89PNG not really")
    for name in ("b.png", "c.png", "d.png"):
        cv2.imwrite(str(src / name), np.full((24, 32, 3), 90, np.uint8))
    out = tmp_path / "out"
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(src), "--output",
                   str(out), "--max-frames", str(limit))
    lines = err.strip().splitlines()
    assert rc == 1 and sorted(p.name for p in out.iterdir()) == written, err
    assert lines[-2] == f"sharpen run: 1 image could not be read; {closing}:", err


def test_a_video_that_did_not_get_written_is_an_error_not_done(tmp_path, onnx_model):
    """OpenCV's writer drops what does not fit on a full disk without a word: the run said
    'done', exit 0, and left an MP4 without its index under the final name."""
    from runtime.sinks import SinkError
    from runtime.video_sink import VideoFileSink

    out = tmp_path / "v.mp4"
    sink = VideoFileSink(out, 10)
    for i in range(5):
        sink.write(textured_frame(i), textured_frame(i), f"f{i}")
    sink.writer.release()          # what a full disk leaves: the data, no index (moov) at the end
    sink.writer = cv2.VideoWriter()  # released writer: close() finds nothing more to finish
    data = sink.tmp.read_bytes()
    sink.tmp.write_bytes(data[:len(data) // 2])
    with pytest.raises(SinkError, match="does not play back"):
        sink.close()
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_an_mp4_cut_short_is_an_error_while_a_given_up_open_holds_opencvs_ffmpeg(tmp_path):
    """A stop during a camera's hung reopen leaves that open running, and OpenCV opens one
    FFmpeg file at a time: the check that the recording plays was skipped, so an MP4 a full
    disk cut short (no index) was kept and said to be closed cleanly. Its index is looked for
    without OpenCV."""
    import threading
    import time

    from runtime.sinks import SinkError
    from runtime.source_base import OpenStopped, _interruptible, open_left_running
    from runtime.video_sink import VideoFileSink

    out = tmp_path / "v.mp4"
    sink = VideoFileSink(out, 10)
    for i in range(5):
        sink.write(textured_frame(i), textured_frame(i), f"f{i}")
    sink.writer.release()          # what a full disk leaves: the data, no index (moov) at the end
    sink.writer = cv2.VideoWriter()
    data = sink.tmp.read_bytes()
    sink.tmp.write_bytes(data[:len(data) // 2])
    fifo = tmp_path / "cam.fifo"   # a camera's reopen that never returns: nobody writes
    os.mkfifo(fifo)
    stop = threading.Event()
    stop.set()
    with pytest.raises(OpenStopped):   # given up, as a SIGTERM during a reconnect gives it up
        _interruptible(lambda: cv2.VideoCapture(str(fifo), cv2.CAP_FFMPEG), stop)
    try:
        assert open_left_running()
        with pytest.raises(SinkError, match="does not play back"):
            sink.close()
        assert not out.exists()
    finally:
        with open(fifo, "wb"):   # the open ends (no stream), OpenCV's FFmpeg free again
            pass
        for _ in range(100):
            if not open_left_running():
                break
            time.sleep(0.1)


def test_a_ts_too_short_for_ffmpeg_to_recognise_is_said_so_not_blamed_on_the_disk(tmp_path):
    """Two frames of a still 64x48 picture make a .ts of 5 packets, which FFmpeg's format probe
    (OpenCV's reader, the ffmpeg command) takes for MPEG-PS and opens no stream of: the run
    said "the write failed (disk full or I/O error?)" of a disk with room. It says why, and
    what to do."""
    from runtime.sinks import SinkError
    from runtime.video_sink import VideoFileSink

    out = tmp_path / "short.ts"
    sink = VideoFileSink(out, 30)
    frame = np.full((48, 64, 3), 100, np.uint8)
    for i in range(2):
        sink.write(frame, frame, f"f{i}")
    with pytest.raises(SinkError, match="does not play back") as e:
        sink.close()
    said = str(e.value)
    assert "disk" not in said and "too short" in said and "2 frames" in said, said
    assert not out.exists()


def test_a_full_disk_stops_the_run_with_an_error(tmp_path, capsys, onnx_model, monkeypatch):
    import runtime.video_sink as video_sink

    monkeypatch.setattr(video_sink, "DISK_CHECK_EVERY", 2)
    monkeypatch.setattr(video_sink, "free_bytes", lambda folder: 0)   # the statvfs answer
    src = tmp_path / "in.mp4"
    write_video(src, n=8)
    out = tmp_path / "o" / "v.mp4"
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(src), "--output",
                   str(out), "--stats", str(tmp_path / "s.json"))
    assert rc == 2, err
    assert "the disk is full (0 bytes free" in err, err
    # What became of the frames written, and what to do (it was "could not be written
    # completely" alone: a user looked for a half video, or for --resume, which has no record)
    assert err.strip().endswith("could not be written completely; nothing was written under "
                                "that name (free some space and run the same command again)")
    assert not out.parent.exists() or not list(out.parent.iterdir())
    assert "disk is full" in json.loads((tmp_path / "s.json").read_text())["error"]


@pytest.mark.parametrize("name, segment", [("v.ts", []), ("v.mkv", []),
                                           ("v.ts", ["--segment", "0.5"])])
def test_a_video_cut_by_a_file_size_limit_is_an_error_not_done(tmp_path, onnx_model, name,
                                                               segment):
    """A limit on one file's size (ulimit -f, systemd's LimitFSIZE=, a FAT32 card's 4 GiB)
    cut a .ts or .mkv output, or each segment, at the limit without a word from OpenCV's
    writer, and the disk's free space, the full disk's check, was plenty: the run said
    "done: 16 frames", exit 0, of files holding a part of them. It is the full disk's error
    now, said as the limit it is, with what gets past it; nothing cut is named as done."""
    from child_fixtures import main_with_file_limit
    src = tmp_path / "in.mp4"
    write_video(src, n=16)
    out = tmp_path / "o" / name
    said = main_with_file_limit(["run", "--model", str(onnx_model), "--source", str(src),
                                 "--out", str(out), "--threads", "1", "--quiet", *segment],
                                8_000)
    assert said.get("rc") == 2, said
    assert "done:" not in said["err"], said["err"]
    assert "reached the limit on one file's size (8000 bytes: ulimit -f)" in said["err"]
    assert ("--segment S)" in said["err"] and "; nothing was written under that name" in
            said["err"] if not segment else "or shorten --segment)" in said["err"]), said["err"]
    kept = list(out.parent.iterdir()) if out.parent.exists() else []
    assert all(p.stat().st_size < 8_000 for p in kept), kept


def test_a_segment_cut_by_a_file_size_limit_counts_its_frames_as_the_closing_line_does(
        tmp_path, onnx_model):
    """A segment found at the limit on one file's size while written (checked every 30
    frames) was said to stop "after 120 frames", counting the frame whose write the check
    ended, where the line under it said "0 of the 119 frames written before the error". The
    check comes before the next frame is written: a write that fails writes nothing, and
    both lines count the frames written."""
    from child_fixtures import main_with_file_limit
    src = tmp_path / "in.mp4"
    vw = cv2.VideoWriter(str(src), cv2.VideoWriter.fourcc(*"mp4v"), 30, (96, 64))
    for i in range(150):   # noise: kB a frame, written out in 32 KiB blocks
        vw.write(np.random.default_rng(i).integers(0, 256, (64, 96, 3), dtype=np.uint8))
    vw.release()
    out = tmp_path / "o" / "v.ts"
    said = main_with_file_limit(["run", "--model", str(onnx_model), "--source", str(src),
                                 "--out", str(out), "--threads", "1", "--quiet",
                                 "--segment", "10"], 60_000)
    assert said.get("rc") == 2, said
    after = re.search(r"ulimit -f\) after (\d+) frames", said["err"])
    closing = re.search(r"(\d+) of the (\d+) frames written before the error", said["err"])
    assert after and closing, said["err"]
    assert after.group(1) == closing.group(2) and closing.group(1) == "0", said["err"]


@pytest.mark.parametrize("frames", [1, 120])   # ffmpeg killed as it closes, or in the run
def test_a_video_ffmpeg_encodes_cut_by_a_file_size_limit_says_the_limit(tmp_path, onnx_model,
                                                                       monkeypatch, frames):
    """With --codec, ffmpeg encodes, and a limit on one file's size kills it (SIGXFSZ: Python
    ignores the signal, its children do not): the run said "ffmpeg could not encode the video
    (killed by SIGXFSZ)", or "ffmpeg stopped encoding (killed by SIGXFSZ)" where ffmpeg died
    between frames, not the limit nor what gets past it, as it says for OpenCV's writer."""
    from runtime_fixtures import ffmpeg_or_skip

    from child_fixtures import main_with_file_limit
    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg_or_skip("encode H.264"))
    src = tmp_path / "in.mp4"
    vw = cv2.VideoWriter(str(src), cv2.VideoWriter.fourcc(*"mp4v"), 10, (160, 128))
    for i in range(frames):   # noise: lossless, each frame is tens of kB
        vw.write(np.random.default_rng(i).integers(0, 256, (128, 160, 3), dtype=np.uint8))
    vw.release()
    out, limit = tmp_path / "o" / "v.mp4", 30_000
    said = main_with_file_limit(["run", "--model", str(onnx_model), "--source", str(src),
                                 "--out", str(out), "--threads", "1", "--quiet", "--codec",
                                 "h264", "--crf", "0"], limit)
    assert said.get("rc") == 2, said
    last = said["err"].strip().splitlines()[-1]
    assert f"reached the limit on one file's size ({limit} bytes: ulimit -f)" in last, last
    assert "SIGXFSZ" not in last and "; nothing was written under that name" in last, last
    assert not out.exists()


def test_the_file_size_limit_is_none_where_there_is_none_to_meet(monkeypatch):
    """The per-file limit every video is checked against: the soft limit in bytes where one is
    set, None where none is (RLIM_INFINITY: a check against it cut every video) or where the
    system has no `resource` module (Windows: `sharpen run` must still import and run)."""
    import resource
    import sys

    from child_fixtures import file_size_limit as limited, in_a_child

    from runtime.video_sink import file_size_limit
    if resource.getrlimit(resource.RLIMIT_FSIZE)[1] != resource.RLIM_INFINITY:
        pytest.skip("this process's files have a hard size limit")

    def unlimited(said: dict) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
        said["limit"] = file_size_limit()

    def work(said: dict) -> None:
        limited(123_456)()
        said["limit"] = file_size_limit()
    assert in_a_child(unlimited) == {"limit": None}
    assert in_a_child(work) == {"limit": 123_456}
    monkeypatch.setitem(sys.modules, "resource", None)   # as on Windows: ImportError
    assert file_size_limit() is None


def test_two_video_sinks_into_one_file_do_not_share_a_temp_file(tmp_path):
    from runtime.video_sink import VideoFileSink

    dead = tmp_path / ".v.4194999.abcdefgh.partial.mp4"   # above any pid_max: a dead run's
    dead.write_bytes(b"half a video")
    live = tmp_path / f".v.{os.getpid()}.abcdefgh.partial.mp4"   # a live run's (this one)
    live.write_bytes(b"being written")
    a, b = VideoFileSink(tmp_path / "v.mp4", 10), VideoFileSink(tmp_path / "v.mp4", 10)
    for s in (a, b):
        s.write(textured_frame(0), textured_frame(0), "f")
    assert a.tmp != b.tmp and not dead.exists() and live.exists()
    live.unlink()
    for s in (a, b):
        s.close()
    assert read_video(tmp_path / "v.mp4")[0] and [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


# A recording that writes noise frames until it is killed: noise fills the writer's buffer
# fast, so what reaches the disk before the kill is the same as after hours of a camera's.
_RECORDER = """
import sys
import numpy as np
from runtime.video_sink import VideoFileSink
sink, rng, n = VideoFileSink(sys.argv[1], 30.0), np.random.default_rng(0), 0
sink.codec = sys.argv[2] if len(sys.argv) > 2 else None   # --codec's, encoded by ffmpeg
while True:
    f = rng.integers(0, 255, (96, 128, 3), np.uint8)
    sink.write(f, f, "f")
    n += 1
"""


def _killed_recording(out: Path, at_least: int = 300_000, codec: str = "") -> Path:
    """The hidden file a recording into `out` (in `codec`, --codec's: ffmpeg's encode; '':
    OpenCV's) leaves when it is SIGKILLed (a power cut) once that file holds `at_least`
    bytes."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-c", _RECORDER, str(out), *([codec] * bool(codec))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    try:
        while time.time() < deadline and proc.poll() is None:
            left = list(out.parent.glob(f".{out.stem}.{proc.pid}.*.partial{out.suffix}"))
            if left and left[0].stat().st_size >= at_least:
                break
            time.sleep(0.01)
        assert proc.poll() is None, proc.stderr.read().decode()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        proc.stderr.close()
    (left,) = out.parent.glob(f".{out.stem}.{proc.pid}.*.partial{out.suffix}")
    return left


def _frames_read(path: Path) -> int:
    cap, n = cv2.VideoCapture(str(path)), 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


@pytest.mark.parametrize("ext", [".ts", ".mkv", ".avi"])
def test_a_killed_recording_is_kept_beside_its_output_and_said_once(tmp_path, ext):
    """A camera box recorded a day into day.ts; the power failed (SIGKILL) and the restarted
    service's first frame deleted the hidden leftover, whose frames played up to the cut. It
    is kept now under a visible name of its last write's time, never over another file."""
    import time

    from runtime.video_sink import VideoFileSink

    out = tmp_path / f"day{ext}"
    left = _killed_recording(out)
    size, mtime = left.stat().st_size, left.stat().st_mtime
    assert _frames_read(left) > 0
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(mtime))
    kept = tmp_path / f"day.interrupted-{stamp}{ext}"
    kept.write_bytes(b"someone's own file")   # not overwritten: the next free name is taken
    with runtime_warnings() as said:
        sink = VideoFileSink(out, 10)
        for i in range(3):
            sink.write(textured_frame(i), textured_frame(i), "f")
        sink.close()
    moved = tmp_path / f"day.interrupted-{stamp}-2{ext}"
    assert kept.read_bytes() == b"someone's own file"
    assert moved.stat().st_size == size and _frames_read(moved) > 0
    assert moved.stat().st_mode & 0o777 == 0o644   # not the temp file's owner-only mode
    assert not list(tmp_path.glob(".*")) and _frames_read(out) == 3
    (note,) = [s for s in said if "interrupted" in s]
    assert str(moved) in note and f"{size / 1e6:.1f} MB" in note and "cut" in note, note
    assert "plays up to the cut" in note, note


@pytest.mark.parametrize("ext", [".mp4", ".mov"])
def test_a_killed_mp4_recording_is_kept_and_the_way_to_rebuild_it_is_said(tmp_path, ext):
    """An MP4/MOV writer keeps its index until it closes: what a kill leaves opens in no
    player (OpenCV and ffmpeg: 'moov atom not found'), but its frames are all there. It is
    kept, and the warning's ffmpeg command, given a complete video of the same size and rate,
    rebuilds it."""
    import shlex
    import subprocess

    from runtime.video_sink import VideoFileSink
    from runtime_fixtures import find_ffmpeg

    out = tmp_path / f"day{ext}"
    left = _killed_recording(out)
    size = left.stat().st_size
    assert _frames_read(left) == 0
    with runtime_warnings() as said:
        sink = VideoFileSink(out, 30)
        for _ in range(3):
            f = np.random.default_rng(1).integers(0, 255, (96, 128, 3), np.uint8)
            sink.write(f, f, "f")
        sink.close()
    (moved,) = tmp_path.glob(f"day.interrupted-*{ext}")
    assert moved.stat().st_size == size and not list(tmp_path.glob(".*"))
    (note,) = [s for s in said if "interrupted" in s]
    assert str(moved) in note and "no player opens" in note, note
    command = note.split("rebuilds it: ", 1)[1].split("; ")[0]
    ffmpeg = find_ffmpeg()
    if ffmpeg is None:
        pytest.skip("no ffmpeg to try the rebuild the warning names")
    command = command.replace("ffmpeg ", f"{shlex.quote(ffmpeg)} ")
    command = command.replace(f"REF{ext}", shlex.quote(str(out)))
    r = subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (rebuilt,) = tmp_path.glob(f"day.interrupted-*-rebuilt{ext}")
    assert _frames_read(rebuilt) > 20   # the frames up to the cut, at 300 KB of noise


def test_a_killed_h264_mp4_recording_is_not_given_mp4v_s_rebuild(tmp_path, monkeypatch):
    """`--codec h264` into .mp4, killed: its frames are H.264, which the warning's mp4v
    rebuild (an MPEG-4 Part 2 stream behind a reference's header) cannot read back. The
    warning says what can rebuild it, and that .mkv plays up to a cut as it is."""
    from runtime.video_sink import VideoFileSink
    from runtime_fixtures import ffmpeg_or_skip

    monkeypatch.setenv("SHARPEN_FFMPEG", ffmpeg_or_skip("encode H.264"))
    out = tmp_path / "day.mp4"
    left = _killed_recording(out, codec="h264")
    assert _frames_read(left) == 0
    with runtime_warnings() as said:
        sink = VideoFileSink(out, 30)
        for _ in range(3):
            f = np.random.default_rng(1).integers(0, 255, (96, 128, 3), np.uint8)
            sink.write(f, f, "f")
        sink.close()
    (moved,) = tmp_path.glob("day.interrupted-*.mp4")
    (note,) = [s for s in said if "interrupted" in s]
    assert str(moved) in note and "no player opens" in note, note
    assert "-f m4v" not in note and "untrunc" in note and ".mkv" in note, note


def test_a_killed_recording_that_holds_no_frame_is_removed(tmp_path):
    """Killed before its first frame reached the disk: nothing worth a file of its own."""
    from runtime.video_sink import VideoFileSink

    # Cut to what precedes the first frame: two 188-byte MPEG-TS packets (PAT, PMT), the
    # MP4 boxes before the frames (ftyp, free, the mdat header).
    for ext, header in ((".ts", 376), (".mp4", 44)):
        out = tmp_path / f"day{ext}"
        left = _killed_recording(out, at_least=1)
        left.write_bytes(left.read_bytes()[:header])
        sink = VideoFileSink(out, 10)
        sink.write(textured_frame(0), textured_frame(0), "f")
        sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["day.mp4", "day.ts"]


def test_a_large_killed_recording_that_opencv_cannot_read_is_kept(tmp_path):
    """One failed OpenCV probe deleted whatever it could not open: a recording of megabytes
    whose start was damaged (a power cut mid-write) is kept for ffmpeg or VLC to try."""
    from runtime.video_sink import UNREAD_KEPT_BYTES, VideoFileSink

    out = tmp_path / "day.ts"
    left = _killed_recording(out, at_least=1)
    left.write_bytes(bytes(UNREAD_KEPT_BYTES))   # zeros: nothing OpenCV reads
    with runtime_warnings() as said:
        sink = VideoFileSink(out, 10)
        sink.write(textured_frame(0), textured_frame(0), "f")
        sink.close()
    (kept,) = tmp_path.glob("day.interrupted-*.ts")
    assert kept.stat().st_size == UNREAD_KEPT_BYTES
    (note,) = [s for s in said if "interrupted" in s]
    assert "could not read back" in note and str(kept) in note, note


def test_a_killed_recording_on_a_file_system_without_hard_links_takes_no_ones_name(
        tmp_path, monkeypatch):
    """FAT (a camera's SD card) has no hard links: the leftover is renamed, and a rename
    replaces. A file another run or person put under the kept name just before the rename
    (after the look that found the name free) was overwritten; the name is taken first now."""
    import errno

    from runtime.video_sink import VideoFileSink

    out = tmp_path / "day.ts"
    left = _killed_recording(out)
    size = left.stat().st_size
    link, rename, replace = os.link, os.rename, os.replace

    def fat_link(src, dst, *a, **k):   # as vfat answers: EEXIST for a taken name, else EPERM
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, "File exists", str(dst))
        raise PermissionError(errno.EPERM, "Operation not permitted", str(dst))

    theirs = []

    def someone_first(move):
        def moved(src, dst, *a, **k):   # another process takes a free kept name right then
            if "interrupted" in str(dst) and not os.path.lexists(dst):
                Path(dst).write_bytes(b"someone's own file")
                theirs.append(Path(dst))
            return move(src, dst, *a, **k)
        return moved

    monkeypatch.setattr(os, "link", fat_link)
    monkeypatch.setattr(os, "rename", someone_first(rename))
    monkeypatch.setattr(os, "replace", someone_first(replace))
    with runtime_warnings() as said:
        sink = VideoFileSink(out, 10)
        sink.write(textured_frame(0), textured_frame(0), "f")
        sink.close()
    monkeypatch.setattr(os, "link", link)
    (note,) = [s for s in said if "interrupted" in s]
    kept = [p for p in tmp_path.glob("day.interrupted-*.ts") if p.stat().st_size == size]
    assert len(kept) == 1 and str(kept[0]) in note, (note, list(tmp_path.iterdir()))
    assert all(p.read_bytes() == b"someone's own file" for p in theirs), theirs
    assert _frames_read(kept[0]) > 0 and not list(tmp_path.glob(".*"))


def test_a_killed_recording_kept_by_a_run_killed_in_turn_loses_its_hidden_name(tmp_path):
    """Kept is a hard link, then the hidden name's removal: a run killed between the two
    left the hidden name beside the kept file for good, looked into by every run after."""
    import time

    from runtime.video_sink import VideoFileSink

    out = tmp_path / "day.ts"
    left = _killed_recording(out)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(left.stat().st_mtime))
    kept = tmp_path / f"day.interrupted-{stamp}.ts"
    os.link(left, kept)
    sink = VideoFileSink(out, 10)
    sink.write(textured_frame(0), textured_frame(0), "f")
    sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["day.ts", kept.name])
    assert _frames_read(kept) > 0


def test_a_killed_recording_this_user_cannot_read_is_left_alone(tmp_path):
    """A recording another user's service left (mkstemp makes it owner-only) cannot be looked
    into: it was removed as one without a frame, a day of someone's footage, and in a folder
    with the sticky bit (/tmp's) the run stopped at its first frame with a PermissionError.
    It is left where it is, and said. Root reads every file, so a child drops to nobody."""
    import subprocess
    import sys
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="sharpen-test-"))   # nobody can reach /tmp's
    try:
        for sticky in (0, 0o1000):
            os.chmod(folder, 0o777 | sticky)
            out = folder / f"day{sticky}.ts"
            left = _killed_recording(out)
            size = left.stat().st_size
            if os.geteuid() != 0:
                left.chmod(0)
            r = subprocess.run([sys.executable, "-c", _UNPRIVILEGED_RUN, str(out)],
                               capture_output=True, text=True, timeout=120)
            if r.returncode == 3:
                pytest.skip("root here cannot become another user to be refused a read")
            assert r.returncode == 0, r.stderr
            assert left.exists() and left.stat().st_size == size, r.stderr
            assert str(left) in r.stderr and "cannot read" in r.stderr, r.stderr
            assert (folder / f"day{sticky}.ts").exists()
    finally:
        import shutil
        shutil.rmtree(folder, ignore_errors=True)


# The next run into an output, as the user nobody where it would be root (whose reads no mode
# stops), its modules loaded first (nobody may not reach the interpreter's own files).
_UNPRIVILEGED_RUN = """
import os, sys, warnings
import numpy as np
from runtime.video_sink import VideoFileSink
# This Python's standard library may lie in root's home, out of nobody's reach: what the
# sink imports lazily (signal, via cli_errors) is imported before the switch.
import runtime.cli_errors
if os.geteuid() == 0:
    try:
        os.setgid(65534)
        os.setuid(65534)
    except PermissionError:   # root of a container without CAP_SETUID
        sys.exit(3)
warnings.simplefilter("always")
warnings.showwarning = lambda m, *a, **k: print(m, file=sys.stderr)
sink, f = VideoFileSink(sys.argv[1], 10), np.full((96, 128, 3), 90, np.uint8)
sink.write(f, f, "f")
sink.close()
"""


def test_an_output_that_cannot_start_leaves_no_temp_file(tmp_path):
    from runtime.video_sink import VideoFileSink

    VideoFileSink(tmp_path / "v.mp4", 10).close()   # no frame came
    assert not list(tmp_path.iterdir())


def test_a_video_writer_that_does_not_open_leaves_its_reason_on_stderr(tmp_path, capfd):
    """Opening the writer hid all it wrote to fd 2, FFmpeg's reason for refusing (OpenCV's
    'Could not open codec mpeg4') with its note that it maps a tag itself; only the note is
    dropped now."""
    from runtime.sinks import SinkError
    from runtime.video_sink import VideoFileSink

    wide = np.zeros((16, 8200, 3), np.uint8)   # wider than MPEG-4 takes
    with pytest.raises(SinkError, match="the mp4v codec cannot store 8200x16 frames"):
        VideoFileSink(tmp_path / "wide.mp4", 10).write(wide, wide, "f")
    err = capfd.readouterr().err
    assert "Could not open codec mpeg4" in err, err
    small = np.zeros((48, 64, 3), np.uint8)
    sink = VideoFileSink(tmp_path / "v.webm", 10)   # VP80: FFmpeg maps the tag
    sink.write(small, small, "f")
    sink.close()
    assert capfd.readouterr().err == ""


def test_tiny_frames_keep_their_size(tmp_path, capsys, onnx_model):
    for h, w in ((1, 1), (1, 3), (2, 2), (3, 1)):
        img, out = tmp_path / f"i{h}x{w}.png", tmp_path / f"o{h}x{w}.png"
        cv2.imwrite(str(img), np.full((h, w, 3), 120, np.uint8))
        rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(img), "--output",
                       str(out))
        assert rc == 0, err
        assert cv2.imread(str(out)).shape == (h, w, 3)


def test_a_model_that_changes_the_size_is_refused(tmp_path, capsys):
    resize_model(tmp_path / "up2.onnx", 2.0)
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), textured_frame(1))
    for tiling in ([], ["--tile", "48", "--overlap", "8"]):
        rc, err = _run(capsys, "--model", str(tmp_path / "up2.onnx"), "--source", str(img),
                       "--output", str(tmp_path / "o.png"), *tiling)
        assert rc != 0 and not (tmp_path / "o.png").exists()
        last = err.strip().splitlines()[-1]   # (tiling may warn about its cost first)
        assert last.startswith("sharpen run: error: model returned shape") and \
            "expected an RGB image of the input's size" in last and "Traceback" not in err, err


def test_a_model_returning_nan_is_refused(tmp_path, capsys):
    # x * NaN: the output of weights that diverged, or of a broken export.
    one_op_model(tmp_path / "nan.onnx", "Mul", ["input", "nan"], {"nan": np.nan})
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), textured_frame(1))
    for tiling in ([], ["--tile", "48", "--overlap", "8"]):
        rc, err = _run(capsys, "--model", str(tmp_path / "nan.onnx"), "--source", str(img),
                       "--output", str(tmp_path / "o.png"), *tiling)
        assert rc != 0 and not (tmp_path / "o.png").exists()   # not a black image, exit 0
        last = err.strip().splitlines()[-1]
        assert "model returned NaN or infinite values" in last and "Traceback" not in err, err


def _failing_at_run(tmp_path: Path, kind: str) -> Path:
    """A model that ONNX Runtime loads and fails to run: a Conv whose weights take 2 channels
    (a corrupted export), or a Reshape to a fixed 16x16 (a model made for another input
    size)."""
    if kind == "conv":
        return one_op_model(tmp_path / "conv.onnx", "Conv", ["input", "w"],
                            {"w": np.zeros((3, 2, 3, 3))}, group=3, pads=[1, 1, 1, 1])
    path = one_op_model(tmp_path / "fixed.onnx", "Reshape", ["input", "shape"],
                        {"shape": [1, 3, 16, 16]})
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))   # a shape is int64, which one_op_model's constants are not
    model.graph.initializer[0].CopyFrom(
        numpy_helper.from_array(np.array([1, 3, 16, 16], np.int64), "shape"))
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("kind", ["conv", "fixed-size"])
def test_a_model_failing_at_run_says_so_once(tmp_path, capfd, kind):
    """ONNX Runtime printed its own log line of a failing run ("[E:onnxruntime:, sequential_
    executor.cc ... ExecuteKernel] Non-zero status code ...") before the error line that says
    it with the model, the input and the provider: two errors in different words. Only ours
    is left; from Python, a failed run prints nothing."""
    model = _failing_at_run(tmp_path, kind)
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), textured_frame(1))
    capfd.readouterr()
    rc = run_cli(["run", "--model", str(model), "--source", str(img), "--output",
                  str(tmp_path / "o.png"), "--quiet", "--threads", "1"])
    err = capfd.readouterr().err
    assert rc != 0
    _one_clear_line(err, str(model), "failed on a (1, 3, 64, 96) float32 input",
                    "with CPUExecutionProvider", "Non-zero status code")
    from runtime import ModelError, load_backend

    with load_backend(model, threads=1) as backend, pytest.raises(ModelError):
        backend.infer(np.zeros((1, 3, 8, 8), np.float32))
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("flag,value", [(f, "-1") for f in ("--fps", "--max-frames",
                                                              "--reconnect", "--threads")]
                         + [("--fps", "nan"), ("--fps", "inf")])
def test_negative_counts_and_rates_are_usage_errors(tmp_path, capsys, onnx_model, flag, value):
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", "synthetic:32x24",
                   flag, value)
    assert rc == 2
    _one_clear_line(err, f"{flag} must be >= 0", f"got {value}")


def test_fps_has_an_upper_limit(tmp_path, capsys, onnx_model):
    # 1e300 fps hung inside OpenCV's video writer, deaf to Ctrl-C and SIGTERM.
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", "synthetic:32x24",
                   "--max-frames", "2", "--out", str(tmp_path / "x.mp4"), "--fps", "1e300")
    assert rc == 2 and not (tmp_path / "x.mp4").exists()
    _one_clear_line(err, "--fps must be at most 1000")


def test_flags_that_would_do_nothing_are_said(tmp_path, capsys, onnx_model):
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.full((24, 32, 3), 90, np.uint8))
    # A capture size, reconnects or a stream timeout for a source that reads none of them.
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(img), "--width", "640",
                   "--reconnect", "3", "--timeout", "5", "--output", str(tmp_path / "c.png"))
    assert rc == 0
    for flag in ("--width applies to camera, v4l2, gstreamer, synthetic sources",
                 "--reconnect applies to", "--timeout applies to stream, stdin sources"):
        assert f"warning: {flag}" in err and f"not to --source {img} (images)" in err
    assert "--height" not in err
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(img), "--overlap", "8",
                   "--output", str(tmp_path / "b.png"))
    assert rc == 0 and "--overlap has no effect without --tile" in err
    assert "--threads" not in err
    too_many = len(os.sched_getaffinity(0)) + 1
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(img), "--threads",
                   str(too_many), "--output", str(tmp_path / "c.png"))
    assert rc == 0 and f"--threads {too_many} is more than the" in err, err


def test_an_oversized_omp_num_threads_is_warned_of_as_threads_are(tmp_path, capsys, onnx_model,
                                                                  monkeypatch):
    """Without --threads ONNX Runtime and LiteRT take OMP_NUM_THREADS's count, and a count
    above the cores went unsaid where the same --threads was warned of."""
    from runtime.host import threads_warning

    cores = len(os.sched_getaffinity(0))
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.full((24, 32, 3), 90, np.uint8))
    monkeypatch.setenv("OMP_NUM_THREADS", f"{cores + 1},1")
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(img), "--output",
                   str(tmp_path / "b.png"))
    said = [ln for ln in err.splitlines() if "CPU cores" in ln]
    assert rc == 0 and said == [
        f"warning: OMP_NUM_THREADS={cores + 1},1 (the thread count when --threads is not "
        f"given) is more than the {cores} CPU cores this process may use; the extra threads "
        "share cores and usually make inference slower"], err
    # An explicit count is the one run with, and the one named; within the cores, nothing.
    assert threads_warning(cores, "--threads") == ""
    assert threads_warning(cores + 2, "--threads").startswith(f"--threads {cores + 2} is more")
    monkeypatch.setenv("OMP_NUM_THREADS", str(cores))
    assert threads_warning(None, "--threads") == threads_warning(0, "--threads") == ""


def test_image_folder_names_each_file_it_converts(tmp_path, capsys, onnx_model):
    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "g16.png"), (rng.random((24, 32)) * 65535).astype(np.uint16))
    cv2.imwrite(str(src / "rgba.png"), (rng.random((24, 32, 4)) * 255).astype(np.uint8))
    cv2.imwrite(str(src / "ok.png"), (rng.random((24, 32, 3)) * 255).astype(np.uint8))
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(src), "--output",
                   str(tmp_path / "out"))
    assert rc == 0, err   # an image folder keeps each file's layout: nothing to say
    assert "g16.png" not in err and "rgba.png" not in err and "ok.png" not in err
    for name, shape, dtype in (("g16.png", (24, 32), np.uint16),
                               ("rgba.png", (24, 32, 4), np.uint8),
                               ("ok.png", (24, 32, 3), np.uint8)):
        out = cv2.imread(str(tmp_path / "out" / name), cv2.IMREAD_UNCHANGED)
        assert out.shape == shape and out.dtype == dtype, name
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(src), "--output",
                   str(tmp_path / "v.mp4"))   # a video holds neither: said, file by file
    assert rc == 0, err
    assert "g16.png: grayscale, sharpened as 3-channel" in err
    assert "rgba.png: alpha channel dropped" in err
    assert "ok.png" not in err
    cv2.imwrite(str(tmp_path / "g.pgm"), (rng.random((24, 32)) * 255).astype(np.uint8))
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(tmp_path / "g.pgm"),
                   "--output", str(tmp_path / "g-out.pgm"))   # PGM holds one channel
    assert rc == 0, err
    assert cv2.imread(str(tmp_path / "g-out.pgm"), cv2.IMREAD_UNCHANGED).shape == (24, 32)


def test_a_multi_page_tiff_says_only_its_first_page_is_sharpened(tmp_path, capsys, onnx_model):
    """A 2-page TIFF came out as its first page, without a word about the second."""
    tif = tmp_path / "scan.tif"
    assert cv2.imwritemulti(str(tif), [np.full((24, 32, 3), 60, np.uint8),
                                       np.full((24, 32, 3), 200, np.uint8)])
    assert cv2.imcount(str(tif)) == 2
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(tif), "--output",
                   str(tmp_path / "out.png"))
    assert rc == 0, err
    err = err.replace(str(tmp_path), "TMP")   # this test's folder's name holds "page"
    said = [ln for ln in err.splitlines() if "page" in ln]
    assert said == [f"warning: {tif}: a TIFF of 2 pages; only the first page is "
                    "sharpened".replace(str(tmp_path), "TMP")], err
    out = cv2.imread(str(tmp_path / "out.png"))
    # The first page, as before (its edges differ: the model pads with zeros).
    assert out.shape == (24, 32, 3) and np.median(out) == 60
    one = tmp_path / "one.tif"
    cv2.imwrite(str(one), np.full((24, 32, 3), 60, np.uint8))
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(one), "--output",
                   str(tmp_path / "one-out.png"))
    assert rc == 0 and "page" not in err.replace(str(tmp_path), "TMP"), err


def test_unsupported_frames():
    with pytest.raises(FrameError, match="dtype float32"):
        to_bgr8(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(FrameError, match="shape"):
        to_bgr8(np.zeros((8, 8, 5), np.uint8))
    with pytest.raises(FrameError, match="shape"):
        to_bgr8(np.zeros((2, 8, 8, 3), np.uint8))
    for empty in (np.zeros((0, 0, 3), np.uint8), np.zeros((0, 8), np.uint16)):
        with runtime_warnings() as said, \
                pytest.raises(FrameError, match=r"empty frame of shape \(0, "):
            to_bgr8(empty)
        # A refused frame is not also said to be "scaled to 8 bit".
        assert said == [], said
    with runtime_warnings() as said, pytest.raises(FrameError, match="shape"):
        to_bgr8(np.zeros((8, 8, 5), np.uint16))
    assert said == [], said


def test_run_stream_refuses_impossible_options(onnx_model, tmp_path):
    from runtime.pipeline import run_stream
    src = tmp_path / "a.png"
    cv2.imwrite(str(src), np.zeros((16, 16, 3), np.uint8))
    for bad, said in (({"view": "diag", "compare": True}, "view must be side or split"),
                      ({"threads": -3}, "threads must be >= 0"),
                      ({"max_frames": -1}, "max_frames must be >= 0"),
                      ({"queue_size": 0}, "queue_size must be >= 1"),
                      ({"fps": float("nan")}, "fps must be 0"), ({"fps": 1e300}, "fps must be 0"),
                      ({"tile": 32, "overlap": 32}, "overlap must be smaller than tile, got"),
                      # '<' not supported between 'str' and 'int'; 2.5 frames ran 3
                      ({"threads": "2"}, "threads must be an integer, got '2'"),
                      ({"fps": "30"}, "fps must be a number, got '30'"),
                      ({"max_frames": 2.5}, "max_frames must be an integer, got 2.5")):
        with pytest.raises(ValueError, match=said):
            run_stream(str(onnx_model), str(src), tmp_path / "out", **bad)


def test_run_stream_checks_the_thread_count_once_before_making_anything(onnx_model, tmp_path):
    """threads=-1 was refused as 'threads must be >= 0' and threads=10**6 by load_backend, in
    other words ('threads must be 0 to 256 ...', no run_stream:), after the stats folder was
    made, and not at all for a loaded Backend; both are one check now, before anything."""
    from runtime import load_backend
    from runtime.host import MAX_THREADS

    top = max(MAX_THREADS, os.cpu_count() or 0)
    with load_backend(onnx_model) as backend:
        for threads, said in ((-1, f"threads must be >= 0 ({ZERO_THREADS}), got -1"),
                              (10**6, f"threads must be 0 to {top} ({ZERO_THREADS}), got 1000000")):
            for model in (str(onnx_model), backend):
                stats = tmp_path / "new" / "stats.json"
                with pytest.raises(ValueError) as e:
                    run_stream(model, "synthetic:32x24", tmp_path / "o.mp4", threads=threads,
                               stats_path=stats)
                assert str(e.value) == f"run_stream: {said}", e.value
                assert not stats.parent.exists() and not (tmp_path / "o.mp4").exists()


def test_the_python_api_names_its_keywords_not_the_command_lines_flags(onnx_model, tmp_path):
    """FrameProcessor(backend, tile=32, overlap=32) said '--overlap (32) must be smaller than
    --tile (32)', and load_backend of a model that failed its parity gate said 'pass --force',
    to a caller who has keywords, not flags."""
    import shutil

    from runtime import FrameProcessor, ModelError, load_backend
    with load_backend(onnx_model) as backend:
        with pytest.raises(ValueError, match=r"^overlap \(32\) must be smaller than tile \(32\)"):
            FrameProcessor(backend, tile=32, overlap=32)
    failed = Path(shutil.copy(onnx_model, tmp_path / "m.onnx"))
    Path(f"{failed}.parity-failed.json").write_text(json.dumps({"reason": "SSIM 0.5 < 0.98"}))
    with pytest.raises(ModelError, match=r"force=True"):
        load_backend(failed)


def test_gstreamer_without_support_is_clear():
    if "GStreamer:                   YES" in cv2.getBuildInformation():
        pytest.skip("this OpenCV has GStreamer")
    with pytest.raises(SourceError, match="no GStreamer support"):
        open_source("videotestsrc ! videoconvert ! appsink")


def _write_frames(path, first: int, n: int = 4) -> None:
    from runtime_fixtures import FRAME_H, FRAME_W
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10, (FRAME_W, FRAME_H))
    for i in range(first, first + n):
        vw.write(textured_frame(i))
    vw.release()


def test_live_source_reconnects_then_fails_clearly(tmp_path, onnx_model, capsys):
    """A live source that stops delivering is reopened with backoff, saying so; when it stays
    gone the run ends with a clear SourceError. A video file opened as a 'stream' stands in for
    a camera: its end looks like a disconnect, and it is rewritten with later frames (a camera's
    picture moves on while it is away); deleting it makes reopening fail."""
    import threading

    from runtime.pipeline import run_stream
    from runtime.sources import VideoSource

    video = tmp_path / "cam.mp4"
    _write_frames(video, 0)
    notes: list[str] = []   # its informational lines, printed by sharpen run only
    src = VideoSource("cam", str(video), live=True, kind="stream", reconnect_attempts=3,
                      reconnect_delay=0.01, note=notes.append)
    src.frame_count = None   # a camera declares no length
    stop = threading.Event()
    got = []
    with runtime_warnings() as said, pytest.raises(
            SourceError, match="disconnected and did not come back after 3 attempts"):
        for fr in src.frames(stop):
            got.append(fr.index)
            if len(got) == 4:
                _write_frames(video, 10)
            if len(got) == 6:   # past the 4 frames of the file: it was reopened
                video.unlink()  # now the "camera" is gone for good
    assert len(got) >= 6
    assert "'cam': stopped after 4 frames in all; reconnecting (up to 3 attempts)" in said[0]
    assert notes == ["stream 'cam': reconnected (attempt 1)"], notes
    assert capsys.readouterr().err == ""   # printed from Python, it could not be silenced
    src.close()

    _write_frames(video, 0)
    src = VideoSource("cam", str(video), live=True, kind="stream", reconnect_attempts=1,
                      reconnect_delay=0.01)
    src.frame_count = None
    video.unlink()
    with runtime_warnings() as said, pytest.raises(
            SourceError, match="disconnected and did not come back after 1 attempt$"):
        run_stream(onnx_model, src)
    assert said == ["stream 'cam': stopped after 4 frames in all; reconnecting (up to 1 "
                    "attempt)"], said


def test_a_camera_index_beyond_a_c_int_is_refused_by_name(tmp_path):
    """--source 2147483648 (a mistyped index) ended in OpenCV's 'Overload resolution failed'
    page for the VideoCapture call, and '²' (a digit to str.isdigit, not to int) in a
    ValueError traceback from inside open_source."""
    with pytest.raises(SourceError, match=r"^no camera with index 2147483648: a camera index "
                                          r"is a small number \(0 for the first camera\)$"):
        open_source("2147483648")
    with pytest.raises(SourceError, match=r"^source not found: ²$"):
        open_source("²")
    # Past 4300 digits int() itself refuses (Python's guard against slow conversions): a
    # ValueError traceback, not the message.
    with pytest.raises(SourceError, match=r"^no camera with index 1{12}\.\.\. \(a number of "
                                          r"5000 digits\): a camera index is a small number"):
        open_source("1" * 5000)
    with pytest.raises(SourceError, match="cannot open camera source '00000000000099'"):
        open_source("00000000000099")   # leading zeros: camera 99, which is not there


@pytest.mark.parametrize("kind", ["camera", "v4l2", "stream", "gstreamer"])
def test_a_lossless_camera_that_disconnects_is_reopened_not_taken_as_ended(tmp_path, kind):
    """--no-live keeps every frame of a camera or live stream (a model slower than it), and
    took its disconnect for the end of a file: the run ended there, 'done', exit 0, with no
    reconnect and no word. Only files, URLs that declare their length and GStreamer pipelines
    that read a file end that way; a camera pipeline (nvarguscamerasrc on a Jetson) does not."""
    import threading

    from runtime.sources import VideoSource

    video = tmp_path / "cam.mp4"
    _write_frames(video, 0)
    src = VideoSource("cam", str(video), live=False, kind=kind, reconnect_attempts=2,
                      reconnect_delay=0.01)
    src.frame_count = None   # a camera declares no length
    got = []
    with runtime_warnings() as said, pytest.raises(
            SourceError, match="disconnected and did not come back after 2 attempts"):
        for fr in src.frames(threading.Event()):
            got.append(fr.index)
            if len(got) == 4:
                _write_frames(video, 10)
            if len(got) == 6:
                video.unlink()
    src.close()
    assert got[:6] == list(range(6)), got
    assert f"{kind} 'cam': stopped after 4 frames in all; reconnecting" in said[0], said


def test_a_lossless_gstreamer_pipeline_that_reads_a_file_ends_there(tmp_path):
    """The other side of the rule above: a filesrc pipeline run with --no-live has ended."""
    import threading

    from runtime.sources import VideoSource, pipeline_reads_file

    video = tmp_path / "clip.mp4"
    _write_frames(video, 0, n=5)
    src = VideoSource("clip", str(video), live=False, kind="gstreamer", reconnect_attempts=2,
                      reconnect_delay=0.01)
    src.frame_count = None   # an appsink declares no length
    src.spec = f"filesrc location={video} ! decodebin ! videoconvert ! appsink"
    with runtime_warnings() as said:
        got = [fr.index for fr in src.frames(threading.Event())]
    src.close()
    assert got == list(range(5)) and not said, (got, said)
    assert pipeline_reads_file("uridecodebin uri=file:///v.mp4 ! appsink")
    assert not pipeline_reads_file("rtspsrc location=rtsp://cam/filesrc ! decodebin ! appsink")
    assert not pipeline_reads_file("nvarguscamerasrc ! nvvidconv ! appsink")


@pytest.fixture
def http_folder(tmp_path):
    """tmp_path served over HTTP, as a recorded video on a web server is."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("declared", [True, False])
def test_recorded_video_over_http_ends_after_one_pass(http_folder, capsys, declared):
    """A URL is live, and a live source that stops is reopened; a recorded file served over
    HTTP then started again from its first frame, forever. It now ends after one pass, by its
    declared frame count, or, where the container declares none, because reopening gives its
    first frame again."""
    import threading

    folder, url = http_folder
    _write_frames(folder / "clip.mp4", 0, n=5)
    src = open_source(f"{url}/clip.mp4", reconnect_attempts=3, live=True)
    src.reconnect_delay = 0.01
    assert src.live and src.kind == "stream"
    if not declared:
        src.frame_count = None
    got = []
    with runtime_warnings() as said:
        for fr in src.frames(threading.Event()):
            got.append(fr.index)
            assert len(got) < 20, "the recording looped"
    src.close()
    assert got == list(range(5))
    # A warning (the run ends where a live stream would go on), no longer a printed note.
    assert capsys.readouterr().err == ""
    if not declared:
        assert f"stream '{url}/clip.mp4' started again from its first frame: it is a " \
               "recording, not a live stream; ending after one pass" in said, said


@pytest.fixture
def silent_server():
    """(URL, accepted connections) of a server that accepts and never answers."""
    import socket
    import threading
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    held: list = []
    threading.Thread(target=lambda: [held.append(srv.accept()) for _ in range(4)],
                     daemon=True).start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}/live.mp4", held
    srv.close()


def test_stream_that_never_answers_fails_within_the_timeout(monkeypatch, silent_server):
    """A server that accepts the connection and says nothing used to hold the run about 30 s
    in FFmpeg, without a word, and Ctrl-C waited for it."""
    import time

    import runtime.video_source as video_source

    # Patched where VideoSource reads it (runtime.sources only re-exports it).
    monkeypatch.setattr(video_source, "STREAM_TIMEOUT_S", 1.0)
    t0 = time.perf_counter()
    with pytest.raises(SourceError, match="no answer within 1 s"):
        open_source(silent_server[0])
    assert time.perf_counter() - t0 < 8


@pytest.mark.parametrize("ext", [".webm", ".mkv", ".ts", ".avi", ".mov"])
def test_each_video_container_is_written_with_a_codec_it_takes(tmp_path, ext):
    """mp4v in a .webm used to fail at the first frame; each container now gets its codec."""
    from runtime.video_sink import VideoFileSink, fourcc_for

    yy, xx = np.mgrid[0:48, 0:64]   # smooth, so that a low bit rate keeps it
    frame = np.stack([xx * 4, yy * 5, 255 - xx * 3], -1).astype(np.uint8)
    sink = VideoFileSink(tmp_path / f"v{ext}", fps=10)
    for _ in range(3):
        sink.write(frame, frame, "f")
    sink.close()
    frames, _ = read_video(tmp_path / f"v{ext}")
    assert len(frames) == 3 and frames[0].shape == frame.shape
    assert np.abs(frames[0].astype(int) - frame).mean() < 12   # lossy, but this frame
    assert fourcc_for(f"x{ext}") == ("VP80" if ext == ".webm" else "MPG2" if ext == ".ts"
                                     else "mp4v")


def test_a_uniform_first_frame_is_no_proof_of_a_recording_and_reconnect_0_says_so(tmp_path):
    """A live stream whose first frame is black (a covered lens, a 'no signal' card) gives the
    same black frame after reconnecting: that must not end it as a recording."""
    import threading

    from runtime.sources import VideoSource

    video = tmp_path / "cam.avi"

    def black(n):
        vw = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 10, (32, 24))
        for _ in range(n):
            vw.write(np.zeros((24, 32, 3), np.uint8))
        vw.release()

    black(3)
    src = VideoSource("cam", str(video), live=True, kind="stream", reconnect_attempts=2,
                      reconnect_delay=0.01)
    src.frame_count = None
    got = 0
    with runtime_warnings() as said, pytest.raises(SourceError, match="did not come back"):
        for _ in src.frames(threading.Event()):
            got += 1
            if got == 5:
                video.unlink()
    assert got >= 5 and not any("recording" in m for m in said), said
    src.close()

    black(3)
    src = VideoSource("cam", str(video), live=True, kind="stream", reconnect_attempts=0)
    src.frame_count = None
    with pytest.raises(SourceError, match=r"stopped after 3 frames in all \(reconnecting is "
                                          r"off: reconnect_attempts=0\)"):
        list(src.frames(threading.Event()))
    src.close()


def test_a_recording_that_ends_early_over_http_says_so(http_folder):
    import threading

    folder, url = http_folder
    _write_frames(folder / "clip.mp4", 0, n=4)
    for live in (True, None):
        src = open_source(f"{url}/clip.mp4", reconnect_attempts=2, live=live)
        src.reconnect_delay, src.frame_count = 0.01, 9   # as if the connection dropped at 4 of 9
        with runtime_warnings() as said:
            assert len(list(src.frames(threading.Event()))) == 4
        src.close()
        # Said, and listed: the run's exit code is 1, as for a truncated file.
        assert any(m.endswith("ended after 4 of the 9 frames its header declares (the "
                              "connection dropped?)") for m in said), said
        assert len(src.skipped) == 1


def test_a_recording_served_over_http_is_processed_losslessly(http_folder, capsys,
                                                              onnx_model, tmp_path):
    """A URL that declares a frame count is a recording: as a live source it was read faster
    than real time and 292 of its 300 frames were dropped."""
    folder, url = http_folder
    _write_frames(folder / "clip.mp4", 0, n=12)
    notes: list[str] = []
    src = open_source(f"{url}/clip.mp4", note=notes.append)
    # Said to note= (keywords named), not printed: from Python it could not be silenced.
    assert notes == [f"'{url}/clip.mp4' declares 12 frames: a recording, so every frame is "
                     "processed (live=True to drop frames as for a live stream)"], notes
    assert not src.live and capsys.readouterr().err == ""
    stats = run_stream(str(onnx_model), src, tmp_path / "o.mp4")
    assert stats["frames_processed"] == 12 and stats["dropped_frames"] == 0
    assert open_source(f"{url}/clip.mp4", live=True).live   # --live keeps the live policy
    # sharpen run prints it, naming its flag
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", f"{url}/clip.mp4",
                   "--output", str(tmp_path / "cli.mp4"))
    assert rc == 0, err
    assert (f"note: '{url}/clip.mp4' declares 12 frames: a recording, so every frame is "
            "processed (--live to drop frames as for a live stream)") in err.splitlines(), err


def test_live_on_images_is_refused(tmp_path, onnx_model):
    """--live on an image folder kept 2 of 20 images ("dropped"), exit 0."""
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((16, 16, 3), 9 * i, np.uint8))
    with pytest.raises(SourceError, match="images are all processed"):
        open_source(str(tmp_path), live=True)
    with pytest.raises(SourceError, match="images are all processed"):
        run_stream(str(onnx_model), str(tmp_path), tmp_path / "out", live=True)


def test_an_out_path_that_is_a_folder_with_a_video_name_is_refused_at_once(tmp_path,
                                                                          onnx_model):
    """It failed after the whole run ('[Errno 21] Is a directory'), leaving its temp file."""
    from runtime.sinks import SinkError
    (tmp_path / "out.mp4").mkdir()
    video = tmp_path / "in.mp4"
    _write_frames(video, 0, n=3)
    with pytest.raises(SinkError, match="out.mp4 is a folder"):
        run_stream(str(onnx_model), str(video), tmp_path / "out.mp4")
    assert list((tmp_path).glob(".out*")) == []


def test_spec_kind_agrees_with_the_source_opened(tmp_path):
    from runtime.sources import open_source, spec_kind

    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.full((24, 32, 3), 90, np.uint8))
    # In a subfolder: a video beside the images would make the folder source warn it skips it.
    (tmp_path / "videos").mkdir()
    vid = tmp_path / "videos" / "v.avi"
    w = cv2.VideoWriter(str(vid), cv2.VideoWriter.fourcc(*"MJPG"), 10, (32, 24))
    for _ in range(2):
        w.write(np.full((24, 32, 3), 90, np.uint8))
    w.release()
    for spec in ("synthetic:32x24", str(img), str(tmp_path), str(tmp_path / "*.png"), str(vid)):
        src = open_source(spec)
        try:
            assert spec_kind(spec) == src.kind, spec
        finally:
            src.close()
    assert [spec_kind(s) for s in ("0", "/dev/video3", "a ! appsink", "rtsp://h/x")] == \
        ["camera", "v4l2", "gstreamer", "stream"]


def test_an_odd_frame_size_in_a_video_is_said(tmp_path):
    from runtime.video_sink import VideoFileSink

    sink = VideoFileSink(tmp_path / "v.mp4", 10)
    frame = np.full((25, 33, 3), 128, np.uint8)
    with runtime_warnings() as said:
        sink.write(frame, frame, "f")
        sink.close()
    assert len(said) == 1 and "33x25 frames are stored as 32x24" in said[0], said
    frames, _ = read_video(tmp_path / "v.mp4")
    assert frames[0].shape == (24, 32, 3)


def test_a_pattern_of_videos_or_with_braces_says_why_nothing_runs(tmp_path, capsys, onnx_model):
    write_video(tmp_path / "a.mp4", n=2)
    write_video(tmp_path / "b.mp4", n=2)
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(tmp_path / "*.mp4"))
    assert rc == 2
    _one_clear_line(err, "matches 2 video files", "pass each as --source")
    rc, err = _run(capsys, "--model", str(onnx_model), "--source",
                   str(tmp_path / "{x,y}" / "*.png"))
    assert rc == 2
    _one_clear_line(err, "braces are not glob syntax here")


def test_a_broken_install_is_not_called_missing():
    """An installed package that fails to load (a missing system library) needs another fix
    than `pip install`: its own error is shown, not install advice."""
    from runtime.cli_errors import missing_dependency
    broken = ImportError("libGL.so.1: cannot open shared object file", name="cv2")
    msg = missing_dependency("run", broken)
    assert "cannot import cv2: libGL.so.1" in msg and "pip install" not in msg
    absent = ModuleNotFoundError("No module named 'torch'", name="torch")
    assert "missing dependency 'torch'" in missing_dependency("models", absent)
    assert "[train]" in missing_dependency("models", absent)


@pytest.mark.parametrize("signum, code, said", [(2, 130, ""), (15, 143, " (SIGTERM)")])
def test_ctrl_c_while_a_stream_url_opens_exits_at_once(tmp_path, onnx_model, silent_server,
                                                       signum, code, said):
    """FFmpeg's open of a URL that never answers held Ctrl-C until --timeout ran out, and the
    run then ended as "cannot open" (exit 2) instead of interrupted (130). Its line names the
    camera and the signal, as one camera of several stopped by `systemctl stop` while it
    opened said only `sharpen run: interrupted`."""
    import signal
    import subprocess
    import sys
    import time

    from runtime_fixtures import cli_module

    url, held = silent_server
    proc = subprocess.Popen([sys.executable, "-m", cli_module(), "run", "--model",
                             str(onnx_model), "--source", url, "--out", str(tmp_path / "o.mp4"),
                             "--timeout", "120", "--quiet"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # FFmpeg is connected and waiting: the run's start took over 20 s on a loaded host,
        # and a Ctrl-C before then is not the one this test means.
        deadline = time.time() + 300
        while not held and time.time() < deadline:
            time.sleep(0.05)
        assert held, "the run never connected"
        time.sleep(0.5)
        t0 = time.time()
        proc.send_signal(signal.Signals(signum))
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == code, err
        # Under --timeout (which the open used to wait out), with room for a loaded machine.
        assert time.time() - t0 < 90 and f"sharpen run: {url}: interrupted{said}\n" in err, err
    finally:
        if proc.poll() is None:
            proc.kill()


def test_frames_of_another_size_keep_their_aspect_ratio_in_a_video(tmp_path, capsys,
                                                                  onnx_model):
    """A portrait photo in a folder whose first image is landscape was stretched to the
    video's size (squashed to a third of its width): it is fitted, with black bars."""
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), np.full((40, 80, 3), 90, np.uint8))     # landscape, first
    cv2.imwrite(str(src / "b.png"), np.full((80, 40, 3), 200, np.uint8))    # portrait
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(src), "--output",
                   str(tmp_path / "v.avi"))
    assert rc == 0 and "b.png: 40x80 frames are resized to fit the video's 80x40" in err
    frames, _ = read_video(tmp_path / "v.avi")
    assert len(frames) == 2 and frames[1].shape == (40, 80, 3)
    b = frames[1].astype(int)
    # The picture: the middle 20 columns (40 px tall, 20 wide: its 1:2), black on both sides.
    assert np.abs(b[4:-4, 34:46] - 200).max() <= 12, b[20]
    assert b[:, :26].max() <= 12 and b[:, 54:].max() <= 12, b[20]


def test_frames_or_rates_a_codec_refuses_are_named_not_blamed_on_the_build(tmp_path, capsys,
                                                                          onnx_model):
    """A 1x1 image into a video said "this OpenCV build has no mp4v encoder" (.mkv: "try --out
    NAME.mp4", which fails the same way); a 3x5 one into WebM, which VP8 writes but cannot
    play back, "the write failed (disk full or I/O error?)"."""
    for size, out in (((1, 1), "t.mp4"), ((1, 1), "t.mkv"), ((5, 3), "t.webm")):
        img = tmp_path / f"{size[1]}x{size[0]}.png"
        cv2.imwrite(str(img), np.full((*size, 3), 90, np.uint8))
        rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(img), "--output",
                       str(tmp_path / out))
        assert rc == 2, err
        line = [ln for ln in err.splitlines() if ln.startswith("sharpen run: error: ")]
        assert len(line) == 1 and "Traceback" not in err, err
        assert f"cannot store {size[1]}x{size[0]} frames (too small for a video)" in line[0], err
        assert "encoder" not in line[0] and "disk full" not in line[0], err
        assert "--out DIR" in line[0], err
        assert not (tmp_path / out).exists() and not list(tmp_path.glob(".*"))


def _avi_with_rate(path, rate: int, scale: int, n: int = 3) -> None:
    """An MJPG AVI whose stream header declares rate/scale frames per second."""
    import struct
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (FRAME_W, FRAME_H))
    for i in range(n):
        writer.write(textured_frame(i))
    writer.release()
    data = bytearray(path.read_bytes())
    strh = data.find(b"strh")   # fccType, fccHandler, flags, priority+language, initial frames,
    struct.pack_into("<II", data, strh + 8 + 20, scale, rate)   # then dwScale, dwRate
    path.write_bytes(bytes(data))


def test_an_absurd_header_rate_is_said_and_the_video_written_at_30(tmp_path, capsys,
                                                                   onnx_model):
    """A header declaring 0.001 fps made the run fail with "this OpenCV build has no mp4v
    encoder"; 1e6 fps was replaced by 30 without a word."""
    for name, rate, scale, said in (("slow.avi", 1, 1000, "0.001 fps"),
                                    ("fast.avi", 1_000_000, 1, "1e+06 fps")):
        src = tmp_path / name
        _avi_with_rate(src, rate, scale)
        cap = cv2.VideoCapture(str(src))
        assert abs(cap.get(cv2.CAP_PROP_FPS) - rate / scale) < 1e-6 * rate / scale
        cap.release()
        out = tmp_path / f"{src.stem}-out.mp4"
        rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(src), "--output",
                       str(out))
        assert rc == 0, err
        assert (f"warning: {src} declares {said}, outside 0.1 to 1000: taken as unknown (a "
                "video output is written at 30 fps; --fps sets another)") in err, err
        frames, fps = read_video(out)
        assert len(frames) == 3 and fps == 30.0
        # From Python: a SharpenWarning naming the keyword (a print naming --fps before)
        with runtime_warnings() as warned:
            run_stream(str(onnx_model), str(src), tmp_path / f"{src.stem}-py.mp4")
        assert (f"{src} declares {said}, outside 0.1 to 1000: taken as unknown (a video output "
                "is written at 30 fps; fps sets another)") in warned, warned
        assert capsys.readouterr().err == ""
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(tmp_path / "slow.avi"),
                   "--output", str(tmp_path / "x.mp4"), "--fps", "0.001")
    assert rc == 2 and not (tmp_path / "x.mp4").exists()
    _one_clear_line(err, "--fps must be 0 (the source's) or at least 0.1, got 0.001")


# --- two ONNX Runtime builds (onnxruntime and onnxruntime-gpu share one `onnxruntime` folder) --

SITE_SCRIPT = """
import importlib, site, sys
from pathlib import Path
ort_site, new_site, argv = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != ort_site]
site.addsitedir(new_site)   # its copy of the project's install (.pth) makes it importable
importlib.invalidate_caches()
from sharpen.cli import main
sys.exit(main(argv))
"""


def _site_like_onnxruntimes(tmp_path, keep_onnxruntime: bool):
    """A copy (symlinks) of the site-packages that holds onnxruntime: with its onnxruntime, or
    with the `onnxruntime` folder as pip leaves it when one of two builds that shared it is
    uninstalled (the other build's files deleted; an empty subfolder left)."""
    import importlib.util
    ort_site = Path(importlib.util.find_spec("onnxruntime").origin).resolve().parents[1]
    site = tmp_path / "site-packages"
    site.mkdir()
    for entry in ort_site.iterdir():
        if keep_onnxruntime or not entry.name.lower().startswith("onnxruntime"):
            (site / entry.name).symlink_to(entry)
    if not keep_onnxruntime:
        (site / "onnxruntime" / "capi").mkdir(parents=True)
    return ort_site, site


def _gpu_build_metadata(site: Path) -> None:
    """What `pip install onnxruntime-gpu` records beside its files (which this test has not)."""
    info = site / "onnxruntime_gpu-1.31.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: onnxruntime-gpu\n"
                                   "Version: 1.31.1\n")
    (info / "top_level.txt").write_text("onnxruntime\n")


def _run_in_site(ort_site, site, pythonpath, *argv):
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(map(str, pythonpath)))
    return subprocess.run([sys.executable, "-c", SITE_SCRIPT, str(ort_site), str(site), *argv], capture_output=True, text=True, timeout=120, env=env,
                          cwd=site.parent)


def test_an_onnxruntime_emptied_by_uninstalling_its_twin_is_named(tmp_path, onnx_model):
    """`pip uninstall onnxruntime-gpu` after the runtime extra put onnxruntime over it deletes
    the shared files: `import onnxruntime` then gives an empty namespace package, which said
    "AttributeError: module 'onnxruntime' has no attribute 'get_available_providers'"."""
    ort_site, site = _site_like_onnxruntimes(tmp_path, keep_onnxruntime=False)
    img = tmp_path / "in.png"
    cv2.imwrite(str(img), textured_frame(0))
    r = _run_in_site(ort_site, site, [], "run", "--model", str(onnx_model), "--source", str(img),
                     "--out", str(tmp_path / "out.png"), "--quiet")
    assert r.returncode == 2, r.stderr
    _one_clear_line(r.stderr, "ONNX Runtime is broken here", str(site / "onnxruntime"),
                    "pip install --force-reinstall --no-deps onnxruntime")


@pytest.mark.parametrize("one_folder", [True, False])
def test_a_cpu_onnxruntime_hiding_the_gpu_build_is_named(tmp_path, onnx_model, one_folder):
    """`pip install '.[runtime]'` next to onnxruntime-gpu overwrites the GPU build's files with
    the CPU build's (one folder), or a CPU build earlier on sys.path hides it (a venv over
    JetPack's): --provider cuda said 'install onnxruntime-gpu' although it was installed, and
    auto ran on the CPU without a word."""
    ort_site, site = _site_like_onnxruntimes(tmp_path, keep_onnxruntime=True)
    gpu_site = site if one_folder else tmp_path / "gpu-site"
    gpu_site.mkdir(exist_ok=True)
    _gpu_build_metadata(gpu_site)
    pythonpath = [] if one_folder else [gpu_site]
    img = tmp_path / "in.png"
    cv2.imwrite(str(img), textured_frame(0))
    fix = ("pip uninstall -y onnxruntime onnxruntime-gpu, then install onnxruntime-gpu again"
           if one_folder else f"pip uninstall onnxruntime (in {site})")
    hides = "which the 'runtime' extra installs, hides onnxruntime-gpu 1.31.1"
    r = _run_in_site(ort_site, site, pythonpath, "run", "--model", str(onnx_model), "--source",
                     str(img), "--out", str(tmp_path / "cuda.png"), "--provider", "cuda")
    assert r.returncode == 2, r.stderr
    _one_clear_line(r.stderr, "provider 'cuda' is not available", hides, fix)
    assert "install onnxruntime-gpu on a CUDA machine" not in r.stderr
    r = _run_in_site(ort_site, site, pythonpath, "run", "--model", str(onnx_model), "--source",
                     str(img), "--out", str(tmp_path / "auto.png"), "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith("warning: running on the CPU: the CPU build onnxruntime "), r.stderr
    assert hides in r.stderr and fix in r.stderr, r.stderr
    r = _run_in_site(ort_site, site, pythonpath, "run", "--model", str(onnx_model), "--source",
                     str(img), "--out", str(tmp_path / "cpu.png"), "--quiet", "--provider", "cpu")
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr   # asked for the CPU


# --- Ctrl-C while an engine's compiled module loads --------------------------------------------

# What importing ONNX Runtime or LiteRT raises when Ctrl-C lands while its pybind11 extension
# initialises (seen with `timeout -s INT 1 sharpen run ...`): pybind11 turns the
# KeyboardInterrupt into ImportError('initialization failed') chained to it.
INTERRUPTED_INIT = 'raise ImportError("initialization failed") from KeyboardInterrupt()\n'


@pytest.mark.parametrize("package, suffix", [("onnxruntime", ".onnx"),
                                             ("ai_edge_litert", ".tflite")])
def test_ctrl_c_while_the_engine_loads_is_an_interruption_not_a_missing_package(
        tmp_path, package, suffix):
    """`sharpen run` interrupted in its first second said 'ONNX Runtime is not installed:
    `pip install onnxruntime`' and exited 2 (a usage error) instead of 130."""
    import subprocess
    import sys

    from runtime_fixtures import REPO, cli_module
    site = tmp_path / "site"
    (site / package).mkdir(parents=True)
    (site / package / "__init__.py").write_text(INTERRUPTED_INIT)
    model = tmp_path / f"model{suffix}"
    model.write_bytes(b"\0" * 64)   # never read: the engine's import comes first
    img = tmp_path / "in.png"
    cv2.imwrite(str(img), textured_frame(0))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(REPO)]))
    r = subprocess.run([sys.executable, "-m", cli_module(), "run", "--model", str(model),
                        "--source", str(img), "--out", str(tmp_path / "out.png"), "--quiet"],
                       capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert r.returncode == 130, r.stderr
    assert r.stderr.strip().splitlines()[-1] == f"sharpen run: {img}: interrupted", r.stderr
    assert "not installed" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "out.png").exists()


def test_an_import_error_raised_by_a_ctrl_c_raises_the_ctrl_c(tmp_path):
    """Export's format availability said onnx was 'not installed' when Ctrl-C landed while
    ONNX Runtime loaded (skipped with a warning, or NOT BUILT, exit 1); a real absence and
    other import errors still come back as the reason."""
    import subprocess
    import sys

    from runtime.cli_errors import raise_if_interrupted
    from runtime_fixtures import REPO
    site = tmp_path / "site"
    (site / "onnxruntime").mkdir(parents=True)
    (site / "onnxruntime" / "__init__.py").write_text(INTERRUPTED_INIT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(REPO)]))
    r = subprocess.run([sys.executable, "-c", "from optimize.export import _onnx_available; "
                        "print(_onnx_available())"], capture_output=True, text=True,
                       timeout=120, env=env, cwd=tmp_path)
    assert r.returncode != 0 and "KeyboardInterrupt" in r.stderr, (r.stdout, r.stderr)
    assert "not installed" not in r.stdout
    raise_if_interrupted(ImportError("No module named 'x'"))   # a real absence: nothing raised
    try:   # a chain that loops back on itself ends
        raise ImportError("a") from ValueError("b")
    except ImportError as e:
        e.__cause__.__cause__ = e
        raise_if_interrupted(e)
    try:   # a real absence found while an interruption is handled (the bench's partial report
        try:   # asks whether TensorRT is installed): not that interruption again
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise ImportError("No module named 'tensorrt'")
    except ImportError as e:
        assert isinstance(e.__context__, KeyboardInterrupt)
        raise_if_interrupted(e)


def test_ctrl_c_while_the_commands_load_is_one_line(tmp_path):
    """Ctrl-C in the first half second of any `sharpen` command (while build_parser imports
    the commands' modules) printed a 30-line traceback through argparse and gettext."""
    import subprocess
    import sys

    from runtime_fixtures import REPO
    if not (REPO / "distill" / "cli.py").exists():
        pytest.skip("the full sharpen CLI is not in this checkout")
    # A real KeyboardInterrupt at a real point: raised where build_parser imports distill.cli.
    script = ("import sys\n"
              "def hook(event, args):\n"
              "    if event == 'import' and args[0] == 'distill.cli':\n"
              "        raise KeyboardInterrupt\n"
              "sys.addaudithook(hook)\n"
              "from sharpen.cli import main\n"
              "sys.exit(main(['models']))\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=120, env=env, cwd=tmp_path)
    assert r.returncode == 130, r.stderr
    assert r.stderr.strip() == "sharpen: interrupted", r.stderr


def test_view_without_show_or_compare_is_said_to_do_nothing(tmp_path, capsys, onnx_model):
    """`--view split --out o.mp4` wrote the plain sharpened video without a word: --view lays
    out --show and --compare only, as --overlap does nothing without --tile (said)."""
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.full((24, 32, 3), 90, np.uint8))
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(img), "--view", "split",
                   "--output", str(tmp_path / "b.png"))
    assert rc == 0 and "warning: --view has no effect without --show or --compare" in err
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(img), "--view", "split",
                   "--compare", "--output", str(tmp_path / "c.png"))
    assert rc == 0 and "--view" not in err
    assert cv2.imread(str(tmp_path / "c.png")).shape == (24, 32, 3)   # split: one frame wide
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(img), "--compare",
                   "--output", str(tmp_path / "d.png"))
    assert rc == 0 and cv2.imread(str(tmp_path / "d.png")).shape == (24, 64, 3)   # side: default


def test_an_error_part_way_says_what_the_output_kept(tmp_path, capsys):
    """A camera unplugged or a model failing on the 4th frame ended in the error line alone:
    whether the video written so far was kept, and playable, was left to guess."""
    model = one_op_model(tmp_path / "log.onnx", "Log", ["input"], {})  # log(0): -inf
    src = tmp_path / "in"
    src.mkdir()
    for i, level in enumerate([128, 128, 128, 0]):
        cv2.imwrite(str(src / f"f{i}.png"), np.full((FRAME_H, FRAME_W, 3), level, np.uint8))
    out = tmp_path / "o.mp4"
    rc, err = _run(capsys, "--model", str(model), "--source", str(src), "--output", str(out))
    lines = err.strip().splitlines()
    assert rc == 1 and "model returned NaN or infinite values" in lines[-2], err
    assert lines[-1] == (f"sharpen run: {out} holds the 3 frames written before the error "
                         "(closed cleanly)"), err
    assert len(read_video(out)[0]) == 3
    with pytest.raises(FrameError) as ei:   # from Python, the summary rides on the error
        run_stream(model, src, tmp_path / "api.mp4")
    assert ei.value.stats["frames_processed"] == 3
    # Nothing written: nothing said beyond the error.
    rc, err = _run(capsys, "--model", str(model), "--source", str(src / "f3.png"), "--output",
                   str(tmp_path / "o.png"))
    assert rc == 1 and "holds" not in err, err


def test_a_stream_urls_password_stays_out_of_messages_stats_and_file_names(
        http_folder, capsys, onnx_model, tmp_path, monkeypatch):
    """IP cameras take their password in the URL (rtsp://admin:PASSWORD@camera/...): it was
    printed in every message, written to --stats and into the runs/sharpen/ file name."""
    folder, url = http_folder
    _write_frames(folder / "clip.mp4", 0, n=3)
    secret_url = url.replace("http://", "http://admin:s3cret@") + "/clip.mp4"
    shown = url.replace("http://", "http://admin:***@") + "/clip.mp4"
    monkeypatch.chdir(tmp_path)
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", secret_url, "--stats",
                   str(tmp_path / "s.json"), "--width", "640")
    assert rc == 0, err
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["frames_processed"] == 3 and data["source"]["spec"] == shown
    written = [str(p) for p in (tmp_path / "runs").rglob("*")]
    assert f"--source {shown} (stream)" in err and f"'{shown}' declares 3 frames" in err, err
    assert "s3cret" not in err + json.dumps(data) + " ".join(written), (err, written)
    (folder / "clip.mp4").unlink()
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", secret_url, "--timeout", "5")
    assert rc == 3 and f"'{shown}'" in err and "s3cret" not in err, err   # a stream not there


def test_an_empty_source_is_one_line_not_a_warning_about_images(tmp_path, capsys, onnx_model):
    """--source "" (an unset shell variable) with --timeout first warned that --timeout does
    not apply to '--source  (images)', then said the source was empty."""
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", " ", "--timeout", "3")
    assert rc == 2
    _one_clear_line(err, "empty --source")


def test_a_gstreamer_pipelines_url_password_stays_out_of_messages_and_names(capsys,
                                                                             onnx_model):
    """On a Jetson an IP camera is read through GStreamer (rtspsrc location=rtsp://admin:
    PASSWORD@camera/...): a URL password was masked as a --source URL only, and the
    pipeline's was printed in warnings and errors and written into the runs/sharpen/ name."""
    from runtime.cli import _default_output
    from runtime.sources import shown_url

    pipeline = ("rtspsrc location=rtsp://admin:s3cret@10.0.0.7:554/live latency=0 ! "
                "decodebin ! videoconvert ! appsink")
    assert shown_url(pipeline) == pipeline.replace("admin:s3cret@", "admin:***@")
    assert "s3cret" not in _default_output(pipeline)
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", pipeline, "--timeout", "3")
    assert rc == 2 and "s3cret" not in err, err
    assert "--source rtspsrc location=rtsp://admin:***@10.0.0.7:554/live" in err, err


def test_a_urls_password_in_its_query_stays_out_of_messages_stats_and_names(tmp_path, capsys,
                                                                             onnx_model):
    """Many IP cameras and signed URLs take the secret in the query string
    (videostream.cgi?user=admin&pwd=..., ?token=..., X-Amz-Signature=...), not as user info:
    only the latter was masked, and the secret was printed in the error, written into the
    --stats file and into the runs/sharpen/ name."""
    from runtime.cli import _default_output
    from runtime.sources import shown_url

    url = ("http://10.0.0.7/videostream.cgi?user=admin&pwd=s3cret&Access_Token=t0ken"
           "&X-Amz-Signature=s1g&channel=1#apiKey=k3y")
    assert shown_url(url) == ("http://10.0.0.7/videostream.cgi?user=admin&pwd=***"
                              "&Access_Token=***&X-Amz-Signature=***&channel=1#apiKey=***")
    pipeline = f"souphttpsrc location={url} ! jpegdec ! videoconvert ! appsink"
    assert "s3cret" not in shown_url(pipeline) and "appsink" in shown_url(pipeline)
    # A quoted location= keeps its closing quote: the pipeline shown as it was written
    quoted = 'rtspsrc location="rtsp://10.0.0.7/live?token=t0ken" latency=0 ! appsink'
    assert shown_url(quoted) == ('rtspsrc location="rtsp://10.0.0.7/live?token=***" '
                                 'latency=0 ! appsink')
    secrets = ("s3cret", "t0ken", "s1g", "k3y")
    assert not any(s in _default_output(url) for s in secrets)
    stats = tmp_path / "stats.json"
    url = url.replace("10.0.0.7", "127.0.0.1:9")   # nothing listens: refused at once
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", url, "--timeout", "3",
                   "--reconnect", "0", "--stats", str(stats))
    assert rc in (2, 3), err
    assert "pwd=***" in err and not any(s in err for s in secrets), err
    written = stats.read_text()
    assert not any(s in written for s in secrets), written


def test_camera_secrets_under_other_names_are_masked_too():
    """Secrets the first rule let through: the `loginuse=admin&loginpas=...` of many cheap
    cameras' CGI (pas, not pass), `?u=admin&p=...`, and a GStreamer pipeline's `user-pw=`
    and `proxy-pw=` properties (rtspsrc, souphttpsrc), quoted values whole."""
    from runtime.sources import shown_url

    cgi = "http://10.0.0.7/videostream.cgi?loginuse=admin&loginpas=s3cret&resolution=32"
    assert shown_url(cgi) == ("http://10.0.0.7/videostream.cgi?loginuse=admin&loginpas=***"
                              "&resolution=32")
    assert shown_url("http://10.0.0.7/snap.cgi?u=admin&p=s3cret") == \
        "http://10.0.0.7/snap.cgi?u=admin&p=***"
    pipeline = ('rtspsrc location=rtsp://10.0.0.7/live user-id=admin user-pw="s3cret two" '
                "proxy-pw=s3cret ! decodebin ! videoconvert ! appsink")
    assert shown_url(pipeline) == ("rtspsrc location=rtsp://10.0.0.7/live user-id=admin "
                                   "user-pw=*** proxy-pw=*** ! decodebin ! videoconvert ! "
                                   "appsink")
    assert shown_url("v4l2src ! videoconvert ! appsink") == "v4l2src ! videoconvert ! appsink"
    # Xiongmai (XMEye) DVRs and cameras take them in the path, `_` or `&` between
    xm = "rtsp://10.0.0.7:554/user=admin_password=s3cret_channel=1_stream=0.sdp?real_stream"
    assert shown_url(xm) == ("rtsp://10.0.0.7:554/user=admin_password=***_channel=1_stream=0"
                             ".sdp?real_stream")
    xm = "rtsp://10.0.0.7:554/user=admin&password=s3cret&channel=1&stream=0.sdp"
    assert "s3cret" not in shown_url(xm) and "channel=1" in shown_url(xm)
    # A file's own name is no URL, a word of it no parameter
    assert shown_url("clips/p=1 token=2.mp4") == "clips/p=1 token=2.mp4"


def test_a_password_with_an_unencoded_hash_or_question_mark_is_masked_whole():
    """A camera password typed as it is (`P#ss?1`, not `P%23ss%3F1`) ended the URL's
    authority at its # or ?: no @ was seen there, and the refusal printed the password, in
    the one run that fails because of it."""
    from runtime.sources import shown_url

    for url in ("rtsp://admin:P#ss?1@10.0.0.7:554/live", "http://admin:a?b#c@10.0.0.7"):
        shown = shown_url(url)
        assert shown.startswith("rtsp://admin:***@10.0.0.7") or \
            shown == "http://admin:***@10.0.0.7", shown
    # an @ in the path or query is no user info
    assert shown_url("http://10.0.0.7:8080/mail/a@b.c") == "http://10.0.0.7:8080/mail/a@b.c"


def test_an_http_videos_uneven_times_note_shows_its_url_masked():
    """A recorded video served over HTTP, read --no-live, whose frames came at uneven times:
    the note after the done: line named the URL as given, password and ?token= with it, the
    one message of a run that did not mask it (and the one `--source env:NAME` was to keep
    out of the journal)."""
    from runtime.cli import _retimed_note

    summary = {"repeated_frames": 3, "frames_processed": 40,
               "source": {"fps": 25.0, "average_fps": 24.0}}
    note = _retimed_note(summary, "http://admin:s3cret@10.0.0.7/clip.mp4?token=t0ken")
    assert "http://admin:***@10.0.0.7/clip.mp4?token=*** has frames at uneven times" in note
    assert "s3cret" not in note and "t0ken" not in note, note


def test_a_source_url_given_by_an_environment_variable_stays_off_the_command_line(
        tmp_path, capsys, onnx_model, monkeypatch):
    """A camera service's `--source rtsp://admin:PASSWORD@...` is in its command line, which
    every user of the host reads (`ps`, /proc/PID/cmdline). `--source env:NAME` reads it from
    the environment (a systemd EnvironmentFile readable by root alone), which only the
    service's own user can read; messages show it masked, as any URL."""
    url = "http://admin:s3cret@127.0.0.1:9/stream?pwd=s3cret"
    monkeypatch.setenv("CAM_URL", url)
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", "env:CAM_URL",
                   "--timeout", "3", "--reconnect", "0")
    assert rc in (2, 3), err
    assert "http://admin:***@127.0.0.1:9/stream?pwd=***" in err and "s3cret" not in err, err
    monkeypatch.delenv("CAM_URL")
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", "env:CAM_URL")
    assert rc == 2
    _one_clear_line(err, "--source env:CAM_URL: the environment variable CAM_URL is not set")
    monkeypatch.chdir(tmp_path)
    Path("env:CAM_URL").write_bytes(b"")   # a file so named is read as ./env:CAM_URL
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", "env:CAM_URL")
    assert rc == 2
    _one_clear_line(err, "(for the file of that name, give --source ./env:CAM_URL)")


def test_frames_of_the_wrong_kind_say_how_to_convert_them():
    """A float RGB [0, 1] image (what the PyTorch side and distill.images give), a
    channels-first array and a batch were refused with 'expected uint8 or uint16' or 'expected
    HxW, ...' alone; the message now says what the runtime takes and how to get there."""
    with pytest.raises(FrameError, match=r"dtype float32: expected BGR uint8 or uint16 \(a "
                                         r"float RGB image in \[0, 1\]: "):
        to_bgr8(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(FrameError, match=r"channels first\? use frame.transpose\(1, 2, 0\)"):
        to_bgr8(np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(FrameError, match=r"a batch\? pass one frame at a time"):
        to_bgr8(np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(FrameError, match=r"expected a numpy image array.*got None \(cv2.imread"):
        to_bgr8(None)


def test_the_python_api_says_what_it_wanted_instead_of_a_path_or_none(onnx_model):
    """FrameProcessor("model.onnx") failed at the first frame with "'str' object has no
    attribute 'layout'", FrameProcessor(None) not until then; load_backend(None) and
    run_stream(model, None) gave Python's own TypeError, naming no argument."""
    from runtime import FrameProcessor, load_backend
    for bad in (str(onnx_model), onnx_model, None):
        with pytest.raises(TypeError, match=r"FrameProcessor takes a loaded backend: "
                                            r"FrameProcessor\(load_backend\(path\)\)"):
            FrameProcessor(bad)
    with pytest.raises(TypeError, match=r"load_backend: path must be a model file path "
                                        r"\(str or os.PathLike\), got NoneType"):
        load_backend(None)
    with pytest.raises(TypeError, match=r"run_stream: source must be a spec \(a file, folder, "
                                        r"glob, camera index or URL\), an opened Source or "
                                        r"numpy frames, got NoneType"):
        run_stream(onnx_model, None)


def test_a_numpy_camera_index_opens_the_camera_as_an_int_does(onnx_model):
    """run_stream(model, np.int64(0)) passed the source check (an integer) and was then read
    as an array of frames: 'ArraySource' errors instead of the camera it names."""
    said = []
    for index in (97, np.int64(97)):
        with pytest.raises(Exception) as e:
            run_stream(onnx_model, index)
        said.append((type(e.value), str(e.value)))
    assert said[0] == said[1], said
    assert "97" in said[0][1], said


def test_a_negative_tile_is_one_problem_not_two(onnx_model):
    """run_stream(tile=-3) also said 'overlap must be smaller than tile, got tile=-3
    overlap=None', of an overlap the caller never gave (None: automatic)."""
    with pytest.raises(ValueError) as e:
        run_stream(onnx_model, [np.zeros((8, 8, 3), np.uint8)], tile=-3)
    assert str(e.value) == "run_stream: tile and overlap must be >= 0, got tile=-3 overlap=None"


def test_frame_processor_names_a_tile_that_is_not_a_number_of_pixels(onnx_model):
    """FrameProcessor(b, tile="256") raised "'>' not supported between instances of 'str' and
    'int'", tile=2.5 "'float' object cannot be interpreted as an integer", and tile=True ran
    as a tile of 1 pixel (rounded up to the model's multiple); run_stream names them."""
    from runtime import FrameProcessor, load_backend
    with load_backend(onnx_model) as backend:
        for kw, said in (({"tile": "256"}, "tile must be an integer (pixels), got '256'"),
                         ({"tile": 2.5}, "tile must be an integer (pixels), got 2.5"),
                         ({"tile": True}, "tile must be an integer (pixels), got True"),
                         ({"tile": 64, "overlap": 8.0},
                          "overlap must be an integer (pixels), got 8.0")):
            with pytest.raises(ValueError) as e:
                FrameProcessor(backend, **kw)
            assert str(e.value) == said, kw
        assert FrameProcessor(backend, tile=np.int64(64)).tile == 64   # numpy's ints are ints


def test_load_backend_names_a_thread_count_that_is_not_a_whole_number(onnx_model, tmp_path):
    """load_backend(path, threads="2") raised "'>=' not supported between instances of 'str'
    and 'int'"; threads=2.5 ran ONNX Runtime and made LiteRT's loader call the model 'made for
    a newer version, or a damaged copy'; threads=True ran 'XNNPACK (True thread)'."""
    from runtime import load_backend
    for bad in ("2", 2.5, True):
        with pytest.raises(ValueError) as e:
            load_backend(onnx_model, threads=bad)
        assert str(e.value) == f"threads must be a whole number ({ZERO_THREADS}), got {bad!r}"
    with load_backend(onnx_model, threads=np.int64(1)) as b:   # numpy's ints are ints
        assert not b.closed


def test_one_rule_says_which_values_a_numeric_option_takes():
    """The threads, tile, run_stream, export and model-size checks each wrote "a bool, or not
    an Integral, is refused" in their own words; `is_number` is that rule for all of them."""
    from runtime.options import is_number
    for v in (3, 0, -2, np.int64(64), np.uint8(1)):
        assert is_number(v) and is_number(v, whole=False), v
    for v in (2.5, 8.0, np.float32(99.5)):
        assert not is_number(v) and is_number(v, whole=False), v
    for v in (True, False, np.bool_(True), "2", None, [2], 1j):
        assert not is_number(v) and not is_number(v, whole=False), v


def test_load_backend_names_providers_of_the_wrong_type(onnx_model):
    """providers=3 raised "'int' object is not iterable" for an ONNX model and "can only join
    an iterable" for the others: neither named the argument."""
    from runtime import load_backend
    for bad in (3, [3], b"cpu"):
        with pytest.raises(TypeError) as e:
            load_backend(onnx_model, providers=bad)
        assert str(e.value) == ("load_backend: providers must be 'auto', 'cpu', 'cuda', "
                                "'tensorrt', an ONNX Runtime provider name or a list of them, "
                                f"got {bad!r}"), e.value
    with pytest.raises(TypeError, match=r"^run_stream: provider must be 'auto', .*, got 3$"):
        run_stream(onnx_model, "synthetic:32x24", provider=3, max_frames=1)


@pytest.mark.parametrize("ext, side", [(".webp", 16383), (".jpg", 65500)])
def test_an_image_wider_than_its_format_holds_is_said_not_called_out_of_memory(
        tmp_path, capfd, onnx_model, ext, side):
    """A 17920x400 panorama written as WebP, no memory cap, ended `error: out of memory
    encoding ...`, exit 1, advising --tile and more memory: WebP holds 16383 pixels a side,
    and an 8x8 image of the same kind encodes, so the failed encode was taken for memory.
    It is the format's limit, named, with what holds it (exit 2, as any output it cannot
    write)."""
    src, out = tmp_path / "wide.png", tmp_path / f"wide{ext}"
    cv2.imwrite(str(src), np.full((8, side + 8, 3), 128, np.uint8))
    rc = run_cli(["run", "--model", str(onnx_model), "--source", str(src), "--out", str(out),
                  "--quiet"])
    err = capfd.readouterr().err
    assert rc == 2, err
    _one_clear_line(err, f"{side + 8}x8", str(out), f"at most {side} pixels a side", ".png")
    assert "out of memory" not in err, err
    assert not out.exists()


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_a_stop_signal_inside_stop_signals_held_acts_at_its_end():
    """benchmarks.streams holds them over a child's start and its recording: the interrupt
    raised between the two left a child no cleanup knew of."""
    import signal

    from runtime.cli_errors import stop_signals_held

    reached = []
    with pytest.raises(KeyboardInterrupt):
        with stop_signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            reached.append("the recording")
    assert reached == ["the recording"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _held_with_a_signal_at_each_line(signum: int) -> list[str]:
    """`with stop_signals_held(): pass`, once per line the holder runs, `signum` raised just
    before that line (as a Ctrl-C or a `kill` lands anywhere): what went wrong at which line,
    '' where all did not."""
    import signal
    import sys

    from runtime.cli_errors import STOP_SIGNALS, stop_signals_held

    here = stop_signals_held.__wrapped__.__code__.co_filename   # its helpers' lines too

    def once(step: int) -> int:
        lines = 0

        def local(frame, event, arg):
            nonlocal lines
            if event == "line":
                lines += 1
                if lines == step:
                    signal.raise_signal(signum)
            return local

        tracer = sys.gettrace()   # a coverage run's, put back after
        sys.settrace(lambda frame, event, arg: local if frame.f_code.co_filename == here
                     else None)
        try:
            with stop_signals_held():
                pass
        finally:
            sys.settrace(tracer)
        return lines

    def run(step: int) -> tuple[int, int]:
        """(the signal's deliveries, the lines run)"""
        try:
            return 0, once(step)
        except KeyboardInterrupt:
            return 1, 0

    wrong = []
    lines = once(0)
    for step in range(1, lines + 1):
        before = {s: signal.getsignal(s) for s in (signal.SIGINT, *STOP_SIGNALS)}
        delivered, _ = run(step)
        after = {s: signal.getsignal(s) for s in before}
        for s in before:   # put back, for the next step and the tests after
            signal.signal(s, before[s])
        if delivered != 1:
            wrong.append(f"line {step} of {lines}: delivered {delivered} times")
        if after != before:
            wrong.append(f"line {step} of {lines}: handlers left replaced: "
                         f"{[signal.Signals(s).name for s in before if after[s] != before[s]]}")
    return wrong


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_a_signal_anywhere_in_stop_signals_held_acts_once_and_leaves_every_handler_put_back(
        name):
    """A second Ctrl-C as the holder put SIGINT's handler back, before SIGTERM's (a user
    pressing it twice), raised there: SIGTERM's and SIGHUP's handlers stayed the holder's,
    which swallow a signal, so a later `kill` or systemd's stop did nothing until SIGKILL. A
    stop signal as the holder took SIGINT over, before the stop signals, left SIGINT's so:
    Ctrl-C did nothing for the rest of the command."""
    import signal

    from runtime.cli_errors import STOP_SIGNALS, Terminated

    def raise_terminated(signum, frame):   # as under `sharpen` (stop_signals_as_interrupt)
        raise Terminated(signum)

    before = {s: signal.signal(s, raise_terminated) for s in STOP_SIGNALS}
    try:
        wrong = _held_with_a_signal_at_each_line(getattr(signal, name))
    finally:
        for s, h in before.items():
            signal.signal(s, h)
    assert wrong == [], wrong


HELD_WITH_DEFAULT_AND_IGNORED = """
import os, signal
from runtime.cli_errors import stop_signals_held

signal.signal(signal.SIGHUP, signal.SIG_IGN)   # as under nohup
with stop_signals_held():
    os.kill(os.getpid(), signal.SIGHUP)
    os.kill(os.getpid(), signal.SIGTERM)   # its default action: to end the process
    print("the work finished", flush=True)
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
print("past the hold", flush=True)
"""


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_a_default_stop_signal_held_ends_the_process_after_the_work_and_an_ignored_one_not():
    """Where SIGTERM has its default action (an app calling measure_streams, not `sharpen`),
    held, it still ends the process, once the held work is done; a SIGHUP `nohup` ignores is
    not taken, so stays ignored."""
    import signal
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-c", HELD_WITH_DEFAULT_AND_IGNORED], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == -signal.SIGTERM, res
    assert res.stdout == "the work finished\n", res


@pytest.mark.parametrize("command", ["evaluate", "run"])
def test_a_missing_core_dependency_names_the_core_install_not_an_extra(command):
    """tqdm became a core dependency (evaluate --model's progress on a device): a device install
    made before, its checkout pulled since, was told that `sharpen evaluate` needs the 'train'
    extra (torch, gigabytes on a Jetson), and the runtime extra would put the CPU onnxruntime
    over onnxruntime-gpu. The checkout itself, with no extra, installs it."""
    from runtime.cli_errors import missing_dependency
    msg = missing_dependency(command, ModuleNotFoundError("No module named 'tqdm'", name="tqdm"))
    assert msg.startswith("missing dependency 'tqdm': a core dependency (pyproject.toml's "
                          "dependencies; an install made before it joined them, or with "
                          "--no-deps as on a Jetson, lacks it): pip install "), msg
    assert "[" not in msg and "extra" not in msg, msg
    # torch still names its extra
    absent = ModuleNotFoundError("No module named 'torch'", name="torch")
    assert "[train]" in missing_dependency("evaluate", absent)


def test_a_missing_core_dependency_is_installed_alone_not_with_the_checkouts_others():
    """The README's Jetson install (`pip install --no-deps .` beside JetPack's OpenCV and numpy)
    has no tqdm: `sharpen evaluate --model` there was told to `pip install CHECKOUT`, which
    also brings pip's opencv-python-headless and numpy 2, hiding JetPack's OpenCV (no
    GStreamer) and breaking its import. The package is named with the project's own
    requirement, to install alone."""
    from runtime.cli_errors import missing_dependency
    msg = missing_dependency("evaluate", ModuleNotFoundError("No module named 'tqdm'",
                                                             name="tqdm"))
    assert "pip install 'tqdm>=4.66'" in msg, msg
    assert "checkout" not in msg, msg


def test_missing_torch_on_a_jetson_says_to_install_nvidias_wheel_first(monkeypatch, tmp_path):
    """On a Jetson, `sharpen export` without torch said only `pip install 'CHECKOUT[export]'`,
    which fetches PyPI's torch: no build for the Jetson's GPU (gigabytes of CUDA packages for
    other GPUs, or a CPU build). JetPack's release file marks the board."""
    from runtime import cli_errors
    absent = ModuleNotFoundError("No module named 'torch'", name="torch")
    monkeypatch.setattr(cli_errors, "JETSON_RELEASE", tmp_path / "nv_tegra_release")
    assert "Jetson" not in cli_errors.missing_dependency("export", absent)
    (tmp_path / "nv_tegra_release").write_text("# R36 (release), REVISION: 4.3\n")
    msg = cli_errors.missing_dependency("export", absent)
    assert "[export]" in msg and "NVIDIA's PyTorch wheel for your JetPack" in msg, msg
    assert "SKIP_TORCH=1" in msg, msg
    tqdm = ModuleNotFoundError("No module named 'tqdm'", name="tqdm")
    assert "Jetson's" not in cli_errors.missing_dependency("export", tqdm)


def test_missing_opencv_on_a_jetson_points_to_jetpacks_not_pips(monkeypatch, tmp_path):
    """A Jetson venv made without --system-site-packages has no cv2: `sharpen run` said only
    `pip install 'opencv-python-headless>=4.8'`, pip's OpenCV, which has no GStreamer for the
    README's CSI camera pipeline (and brings numpy 2, which JetPack's OpenCV is not built
    for), where the README's venv sees JetPack's own."""
    from runtime import cli_errors
    absent = ModuleNotFoundError("No module named 'cv2'", name="cv2")
    monkeypatch.setattr(cli_errors, "JETSON_RELEASE", tmp_path / "nv_tegra_release")
    assert "Jetson's" not in cli_errors.missing_dependency("run", absent)
    (tmp_path / "nv_tegra_release").write_text("# R36 (release), REVISION: 4.3\n")
    msg = cli_errors.missing_dependency("run", absent)
    assert "pip install 'opencv-python-headless>=4.8'" in msg, msg
    assert "--system-site-packages" in msg and "GStreamer" in msg, msg
    tqdm = ModuleNotFoundError("No module named 'tqdm'", name="tqdm")
    assert "--system-site-packages" not in cli_errors.missing_dependency("run", tqdm)


@pytest.mark.parametrize("missing", ["cv2", "numpy"])
def test_sharpen_without_opencv_or_numpy_says_so_in_one_line(missing, tmp_path):
    """The README's Jetson install (`pip install --no-deps .`) in a venv made without
    --system-site-packages has no cv2: `sharpen run` and every other command ended in a
    ModuleNotFoundError traceback as they loaded, while `python -m runtime.cli run` named the
    package; each now says it in one line, as for a missing tqdm."""
    import subprocess
    import sys
    code = (f"import sys\nsys.modules[{missing!r}] = None\n"
            "from sharpen.cli import main\nsys.exit(main(sys.argv[1:]))")
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for args in (["models", "m.onnx"], ["run", "--model", "m.onnx", "--source", "x.mp4"]):
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                              text=True, timeout=300, env=env, cwd=tmp_path)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.startswith(f"sharpen {args[0]}: error: missing dependency "
                                      f"{missing!r}: a core dependency"), done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        # Nothing on stdout: cv2 imported before numpy printed 'OpenCV bindings requires
        # "numpy" package. Install it via command: pip install numpy' there (a run's --out -).
        assert done.stdout == "", done.stdout
    # `python -m runtime.cli run`, a unit's ExecStart, exits as `sharpen run` does (README: the
    # same exit codes): 2, which RestartPreventExitStatus=2 takes as a restart repeating it;
    # it exited 1 and was restarted in a loop.
    code = code.replace("from sharpen.cli import", "from runtime.cli import")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == "", (done.stdout, done.stderr)
    assert done.stderr.startswith(f"sharpen run: error: missing dependency {missing!r}: a core "
                                  "dependency"), done.stderr


def test_evaluate_of_a_checkpoint_without_torch_names_evaluate_model():
    """On a device `sharpen evaluate --weights fast` said only that evaluate needs the train
    extra (torch), though evaluate --model scores the checkpoint's exported files there."""
    from runtime.cli_errors import missing_dependency
    msg = missing_dependency("evaluate", ModuleNotFoundError("No module named 'torch'",
                                                             name="torch"))
    assert msg.startswith("missing dependency 'torch': `sharpen evaluate` needs the 'train' "
                          "extra: pip install "), msg
    assert msg.endswith("; `sharpen evaluate --model FILE.onnx` (.tflite, .engine) needs none "
                        "of it: an exported model's PSNR/SSIM, on pairs or footage"), msg


def test_an_image_folder_run_stopped_by_a_full_disk_says_how_to_go_on(tmp_path, onnx_model):
    """A full disk part-way through a folder's run said "cannot write image X: [Errno 28] No
    space left on device: 'X'" (the file twice, the errno's number) and that the folder holds
    the images before it, but not that --resume goes on from there once space is freed. A
    file size limit (ulimit -f) in the child stands in for the full disk: the noisy image's
    PNG is over it, the flat ones before it are not."""
    import subprocess
    import sys
    import tempfile

    from child_fixtures import file_size_limit
    from runtime_fixtures import cli_module
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(src / name), np.full((128, 192, 3), 90, np.uint8))
    noise = np.random.default_rng(0).integers(0, 256, (128, 192, 3), dtype=np.uint8)
    cv2.imwrite(str(src / "c.png"), noise)
    argv = [sys.executable, "-m", cli_module(), "run", "--model", str(onnx_model), "--source",
            str(src), "--out", str(out), "--threads", "1", "--quiet"]
    r = subprocess.run(argv, cwd=tempfile.gettempdir(), capture_output=True, text=True,
                       timeout=120, preexec_fn=file_size_limit(20_000))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr   # README: a full disk is 2
    assert lines[-2] == f"sharpen run: error: cannot write image {out / 'c.png'}: File too large"
    assert lines[-1] == (f"sharpen run: {out} holds the 2 images written before the error "
                         "(closed cleanly); run the same command with --resume to go on from "
                         "there"), r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    r = subprocess.run([*argv, "--resume"], cwd=tempfile.gettempdir(), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "done: 1 frame" in r.stderr, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png"]


@pytest.mark.parametrize("name, fmt", [("anim.png", "PNG"), ("anim.webp", "WEBP"),
                                       ("gif-as.png", "GIF")])
def test_an_animated_image_says_only_its_first_frame_is_sharpened(tmp_path, capsys, onnx_model,
                                                                  name, fmt):
    """An upload that is an animation (APNG, animated WebP, a GIF under .png) came out as a
    still of its first frame, without a word about the others."""
    from PIL import Image

    frames = [Image.new("RGB", (32, 24), (v, v, v)) for v in (60, 200, 120)]
    anim = tmp_path / name
    frames[0].save(anim, fmt, save_all=True, append_images=frames[1:], duration=100)
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(anim), "--output",
                   str(tmp_path / "out.png"))
    assert rc == 0, err
    said = [ln for ln in err.splitlines() if "frame" in ln and "warning" in ln]
    assert said == [f"warning: {anim}: an animation of 3 frames; only the first frame is "
                    "sharpened (convert it to a video to sharpen them all)"], err
    still = tmp_path / "still.png"
    frames[0].save(still, "PNG")
    rc, err = _run(capsys, "--model", str(onnx_model), "--source", str(still), "--output",
                   str(tmp_path / "still-out.png"))
    assert rc == 0 and "animation" not in err, err


def test_an_apng_whose_animation_chunk_comes_after_64_kib_is_counted(tmp_path):
    """APNG's acTL may follow a large chunk (a camera's eXIf, a big iCCP): looked for in the
    first 64 KiB only, such an animation was taken for a still, its frames dropped unsaid."""
    from PIL import Image

    from runtime.imageio import animation_frames

    frames = [Image.new("RGB", (32, 24), (v, v, v)) for v in (60, 200, 120)]
    anim = tmp_path / "anim.png"
    exif = Image.Exif()
    exif[0x010E] = "x" * 100_000   # ImageDescription, written before acTL
    frames[0].save(anim, "PNG", save_all=True, append_images=frames[1:], exif=exif)
    assert anim.read_bytes().find(b"acTL") > 1 << 16
    assert animation_frames(anim) == 3


def test_counting_an_animations_frames_keeps_the_decoders_lines_aside(tmp_path, capfd):
    """OpenCV counting an APNG's frames let libpng's own line (`libpng warning: eXIf:
    invalid`) through to the terminal, which decoding the same file keeps aside."""
    from PIL import Image

    from runtime.imageio import animation_frames

    frames = [Image.new("RGB", (32, 24), (v, v, v)) for v in (60, 200, 120)]
    anim = tmp_path / "anim.png"
    frames[0].save(anim, "PNG", save_all=True, append_images=frames[1:], exif=b"not a TIFF")
    capfd.readouterr()
    assert animation_frames(anim) == 3
    assert capfd.readouterr().err == ""
