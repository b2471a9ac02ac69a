"""Fault injection: bad files, identical pairs, concurrent writers, clashing names, bad
checkpoints. Every command that processes many items reports the bad one and carries on."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from distill.checkpoint import CheckpointError, atomic_save, load_student, make_checkpoint
from distill.images import ImageReadError, read_image, write_image
from distill.restormer import build_restormer
from distill.students import create_student
from runtime.imageio import decode_image
from strace_check import assert_durable_write


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_header_png(path: Path, w: int = 100_000, h: int = 100_000) -> Path:
    """A few hundred bytes claiming w x h pixels."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    body = _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        _png_chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def bad_corpus(d: Path) -> dict[str, Path]:
    """Broken files (must raise ImageReadError naming the file) and odd but valid ones."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    img = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    ok, png = cv2.imencode(".png", img)
    ok, jpg = cv2.imencode(".jpg", img)
    files = {
        "truncated_png": d / "trunc.png", "truncated_jpeg": d / "trunc.jpg",
        "zero_bytes": d / "zero.png", "huge_header": d / "huge.png",
        "not_an_image": d / "text.png",
    }
    files["truncated_png"].write_bytes(png.tobytes()[: len(png) // 2])
    files["truncated_jpeg"].write_bytes(jpg.tobytes()[: len(jpg) // 2])
    files["zero_bytes"].write_bytes(b"")
    huge_header_png(files["huge_header"])
    files["not_an_image"].write_bytes(b"hello, this is text\n" * 10)
    valid = {"wrong_extension": d / "really_png.jpg", "bit16": d / "b16.png",
             "gray": d / "gray.png", "rgba": d / "rgba.png", "one_pixel": d / "one.png"}
    valid["wrong_extension"].write_bytes(png.tobytes())
    cv2.imwrite(str(valid["bit16"]), img.astype(np.uint16) * 257)
    cv2.imwrite(str(valid["gray"]), img[..., 0])
    cv2.imwrite(str(valid["rgba"]), np.dstack([img, img[..., :1]]))
    cv2.imwrite(str(valid["one_pixel"]), img[:1, :1])
    return {"bad": files, "valid": valid}


def test_bad_files_raise_read_error_naming_the_file(tmp_path):
    c = bad_corpus(tmp_path)
    for kind, p in c["bad"].items():
        with pytest.raises(ImageReadError) as e:
            read_image(p)
        assert p.name in str(e.value), kind
    with pytest.raises(ImageReadError, match="pixel budget"):
        decode_image(c["bad"]["huge_header"])
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(c["bad"]["truncated_jpeg"])
    for kind, p in c["valid"].items():
        with pytest.warns() if kind in ("gray", "rgba") else _nullctx():
            img = read_image(p)
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.float32, kind
    assert read_image(c["valid"]["one_pixel"]).shape == (1, 1, 3)


def test_pixel_budget_can_be_raised(tmp_path, monkeypatch):
    p = tmp_path / "a.png"
    cv2.imwrite(str(p), np.zeros((40, 50, 3), np.uint8))
    with pytest.raises(ImageReadError, match="2,000 pixels exceeds the pixel budget of 1,000"):
        decode_image(p, limit=1000)
    monkeypatch.setenv("SHARPEN_MAX_PIXELS", "1000")
    with pytest.raises(ImageReadError, match="SHARPEN_MAX_PIXELS"):
        read_image(p)
    monkeypatch.setenv("SHARPEN_MAX_PIXELS", "3000")
    assert read_image(p).shape == (40, 50, 3)
    # A setting that is not a number: one error before the command runs, not one per image.
    monkeypatch.setenv("SHARPEN_MAX_PIXELS", "abc")
    from sharpen.cli import main
    assert main(["evaluate", "--weights", "fast", "--data", str(tmp_path)]) == 2


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _sharpen(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sharpen.cli", *argv], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_teacher_folder_with_bad_files_processes_the_rest(tmp_path, tiny_teacher_pt):
    src = tmp_path / "in"
    bad_corpus(src)
    good = np.random.default_rng(1).random((32, 40, 3)).astype(np.float32)
    write_image(src / "a.png", good)
    write_image(src / "a.jpg", good)      # same stem: both must survive
    r = _sharpen("teacher", str(src), "--out", str(tmp_path / "out"), "--teacher-weights",
                 str(tiny_teacher_pt), "--tile", "0", "--quiet", cwd=tmp_path)
    assert r.returncode == 1, r.stderr        # some failed, and the run finished
    for name in ("huge.png", "trunc.png", "trunc.jpg", "zero.png", "text.png"):
        assert name in r.stderr
    outs = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert "a.png.png" in outs and "a.jpg.png" in outs
    assert {"b16.png", "gray.png", "rgba.png", "one.png", "really_png.png"} <= set(outs)
    assert "Traceback" not in r.stderr


def test_evaluate_folder_with_bad_files_says_so_in_plain_lines(tmp_path):
    m = create_student("fast", width=8)
    ck = tmp_path / "s.pt"
    atomic_save(make_checkpoint(m, kind="student", arch="fast", arch_args=m.arch_args), ck)
    rng = np.random.default_rng(3)
    for sub in ("input", "target"):
        (tmp_path / "pairs" / sub).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "pairs" / sub / "gray.png"),
                    (rng.random((32, 40)) * 255).astype(np.uint8))
        write_image(tmp_path / "pairs" / sub / "ok.png", rng.random((32, 40, 3)))
    (tmp_path / "pairs" / "input" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    write_image(tmp_path / "pairs" / "target" / "bad.png", rng.random((32, 40, 3)))
    r = _sharpen("evaluate", "--weights", str(ck), "--data", str(tmp_path / "pairs"), "--quiet",
                 cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "bad.png" in r.stderr and "1 image skipped (listed above)" in r.stderr
    assert "warning: " in r.stderr and "gray.png: grayscale image converted to RGB" in r.stderr
    assert "UserWarning" not in r.stderr and "Traceback" not in r.stderr
    assert "(2 images of" in r.stdout


def test_default_output_names_are_numbered_readably(tmp_path, monkeypatch):
    from runtime.cli import _default_output
    monkeypatch.chdir(tmp_path)
    (tmp_path / "clip1.mp4").write_bytes(b"")
    assert _default_output("clip1.mp4") == "runs/sharpen/clip1.mp4"
    (tmp_path / "runs" / "sharpen").mkdir(parents=True)
    (tmp_path / "runs" / "sharpen" / "clip1.mp4").write_bytes(b"")
    assert _default_output("clip1.mp4") == "runs/sharpen/clip1-2.mp4"   # not clip12.mp4


def test_a_recursive_globs_default_output_is_named_by_its_folder(tmp_path, monkeypatch):
    # The README's 'photos/**/*' without --out wrote into runs/sharpen/__, named by '**'.
    from runtime.cli import _default_output
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos" / "2024").mkdir(parents=True)
    for pattern in ("photos/**/*", "photos/*/*.jpg", "photos/20*/**/*.png", "photos/*.jpg"):
        assert _default_output(pattern) == "runs/sharpen/photos", pattern
    assert _default_output("*.png") == "runs/sharpen/images"


def test_one_line_warnings_are_installed_once():
    import warnings

    from sharpen.cli import _one_line_warnings
    _one_line_warnings()
    installed = warnings.formatwarning
    _one_line_warnings()   # main() runs many times in one process: no chain of wrappers
    assert warnings.formatwarning is installed
    from distill import images
    line = installed(UserWarning("x.png: grayscale image converted to RGB"), UserWarning,
                     images.__file__, 1)
    assert line == "warning: x.png: grayscale image converted to RGB\n"
    assert "DeprecationWarning" in installed("old", DeprecationWarning, images.__file__, 1)


def test_teacher_refuses_to_overwrite_its_inputs(tmp_path, tiny_teacher_pt, capsys):
    from sharpen.cli import main
    src = tmp_path / "in"
    write_image(src / "a.png", np.zeros((16, 16, 3), np.float32))
    before = (src / "a.png").read_bytes()
    assert main(["teacher", str(src), "--out", str(src), "--teacher-weights",
                 str(tiny_teacher_pt)]) == 2
    assert "overwrite the inputs" in capsys.readouterr().err
    assert (src / "a.png").read_bytes() == before


def test_labels_on_identical_pair_writes_valid_json(tmp_path, tiny_teacher_pt, capsys):
    from sharpen.cli import main
    img = np.random.default_rng(2).random((24, 32, 3)).astype(np.float32)
    for sub in ("input", "target"):
        write_image(tmp_path / "pairs" / sub / "same.png", img)
    for _ in range(2):   # the summary of a rerun used to crash on a None mean
        assert main(["labels", "--data", str(tmp_path / "pairs"), "--out",
                     str(tmp_path / "labels"), "--teacher-weights", str(tiny_teacher_pt),
                     "--tile", "0", "--device", "cpu", "--quiet"]) == 0, capsys.readouterr().err
    text = (tmp_path / "labels" / "manifest.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    entry = json.loads(text)["entries"]["same"]
    assert entry["input_psnr"] == 100.0 and entry["status"] == "ok"


def test_labels_exits_1_for_a_footage_clip_it_cannot_open(tmp_path, tiny_teacher_pt, capsys):
    """A clip OpenCV cannot open in a footage folder was left out with a warning and the run
    exited 0, where an undecodable image beside it exits 1: a script took the footage as
    labelled. The rest is still labelled, the summary names the clip left out."""
    from sharpen.cli import main
    footage = tmp_path / "footage"
    write_image(footage / "a.png", np.zeros((16, 16, 3), np.float32))
    (footage / "clip.mp4").write_text("not a video")
    argv = ["labels", "--data", str(footage), "--out", str(tmp_path / "labels"),
            "--teacher-weights", str(tiny_teacher_pt), "--tile", "0", "--device", "cpu",
            "--quiet"]
    assert main(argv) == 1
    said = capsys.readouterr()
    assert "clip.mp4: OpenCV cannot open this video" in said.err, said.err
    assert "labels: 1 done, 0 skipped (up to date), 0 failed, of 1, " in said.out, said.out
    assert "s per image; 1 video left out (the warning above says why)\n" \
        in said.out, said.out
    assert (tmp_path / "labels" / "labels" / "a.png").exists()
    assert main(argv) == 1   # a rerun still says it (the clip is listed again)
    (footage / "clip.mp4").unlink()
    assert main(argv) == 0


def test_labels_leaves_out_a_footage_clip_over_the_pixel_budget(tmp_path, tiny_teacher_pt,
                                                                 capsys, monkeypatch):
    """SHARPEN_MAX_PIXELS was checked by `sharpen run` only: `labels` fed every frame of a clip
    of any size to the teacher. The clip is named, left out, and the run exits 1."""
    from sharpen.cli import main
    footage = tmp_path / "footage"
    write_image(footage / "a.png", np.zeros((16, 16, 3), np.float32))
    vw = cv2.VideoWriter(str(footage / "big.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(2):
        vw.write(np.full((48, 64, 3), 128, np.uint8))
    vw.release()
    monkeypatch.setenv("SHARPEN_MAX_PIXELS", "1000")
    argv = ["labels", "--data", str(footage), "--out", str(tmp_path / "labels"),
            "--teacher-weights", str(tiny_teacher_pt), "--tile", "0", "--device", "cpu",
            "--quiet"]
    assert main(argv) == 1
    said = capsys.readouterr()
    assert "big.avi: its frames are 64x48 = 3,072 pixels, over the pixel budget of 1,000" \
        in said.err, said.err
    assert "labels: 1 done, 0 skipped (up to date), 0 failed, of 1, " in said.out, said.out
    assert "1 video left out (the warning above says why)" in said.out, said.out


def test_a_broken_clip_is_our_one_line_not_ffmpegs(tmp_path):
    """`sharpen labels` (and evaluate, bench) on a clip FFmpeg cannot read led with FFmpeg's own
    "[mov,mp4,...] moov atom not found" before the command's error: only `sharpen run` kept
    OpenCV's and FFmpeg's logs off stderr. SHARPEN_DEBUG=1 still shows them."""
    clip = tmp_path / "clip.mp4"
    clip.write_text("not a video")
    env = {k: v for k, v in os.environ.items()
           if k not in ("SHARPEN_DEBUG", "OPENCV_FFMPEG_LOGLEVEL", "OPENCV_LOG_LEVEL")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "sharpen.cli", "labels", "--data", str(clip), "--out",
           str(tmp_path / "labels"), "--device", "cpu", "--quiet"]
    said = {}
    for debug in ("", "1"):
        r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                           env=dict(env, **({"SHARPEN_DEBUG": debug} if debug else {})))
        assert r.returncode == 2, r.stderr
        said[debug] = r.stderr
    assert said[""] == (f"sharpen labels: error: {clip}: OpenCV cannot open this video "
                        "(damaged, or in a codec this OpenCV build cannot decode: convert it, "
                        "e.g. with ffmpeg to H.264 or MJPG)\n"), said[""]
    assert "moov atom not found" in said["1"], said["1"]


def test_concurrent_labels_runs_lose_no_entries(tmp_path, tiny_teacher_pt):
    rng = np.random.default_rng(3)
    for part, n in (("a", 6), ("b", 6)):
        for i in range(n):
            write_image(tmp_path / part / f"{part}{i}.png",
                        rng.random((24, 24, 3)).astype(np.float32))
    out = tmp_path / "labels"
    argv = ["--out", str(out), "--teacher-weights", str(tiny_teacher_pt), "--tile", "0",
            "--device", "cpu", "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-m", "sharpen.cli", "labels", "--data",
                               str(tmp_path / part), *argv], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for part in ("a", "b", "a")]    # two different inputs, and one identical pair
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    entries = json.loads((out / "manifest.json").read_text())["entries"]
    assert sorted(entries) == sorted([f"a{i}" for i in range(6)] + [f"b{i}" for i in range(6)])
    assert all(e["status"] == "ok" and (out / e["label"]).is_file() for e in entries.values())


def test_checkpoint_with_unexpected_arch_args_is_a_checkpoint_error(tmp_path):
    m = create_student("fast", width=8)
    p = tmp_path / "odd.pt"
    atomic_save(make_checkpoint(m, kind="student", arch="fast",
                                arch_args={**m.arch_args, "not_an_option": 3}), p)
    with pytest.raises(CheckpointError, match="not_an_option|architecture arguments"):
        load_student(p)
    t = build_restormer("tiny")
    pt = tmp_path / "odd_teacher.pt"
    atomic_save(make_checkpoint(t, kind="teacher", arch="restormer",
                                arch_args={**t.config.to_dict(), "bogus": 1}), pt)
    from distill.teacher import Teacher
    with pytest.raises(CheckpointError, match="architecture arguments"):
        Teacher.load(pt, device="cpu")


def test_pickled_object_refused_without_unsafe_hint(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"format": "image-sharpening-kd/1", "obj": _Evil()}, p)
    with pytest.raises(CheckpointError) as e:
        load_student(p)
    assert "weights_only=False" not in str(e.value) and "untrusted" in str(e.value)


class _Evil:
    pass


def test_truncated_checkpoint_says_so(tmp_path):
    """It read "not a readable PyTorch checkpoint ([Errno 22] Invalid argument)"."""
    good = tmp_path / "good.pt"
    model = create_student("fast")
    atomic_save(make_checkpoint(model, kind="student", arch="fast",
                                arch_args=model.arch_args), good)
    data = good.read_bytes()
    for cut in (len(data) // 2, len(data) - 30):
        bad = tmp_path / f"cut{cut}.pt"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated or damaged"):
            load_student(bad)


def test_run_over_folder_with_bad_file_processes_the_rest(tmp_path):
    from runtime_fixtures import make_onnx_model
    model = make_onnx_model(tmp_path / "m.onnx")
    src = tmp_path / "frames"
    rng = np.random.default_rng(4)
    src.mkdir()
    for i in range(3):
        cv2.imwrite(str(src / f"f{i}.png"), (rng.random((32, 48, 3)) * 255).astype(np.uint8))
    (src / "f1b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "sharp"
    r = _sharpen("run", "--model", str(model), "--source", str(src), "--out", str(out),
                 "--quiet", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "f1b.png" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["f0.png", "f1.png", "f2.png"]
    r = _sharpen("run", "--model", str(model), "--source", str(src), "--out", str(src),
                 "--quiet", cwd=tmp_path)
    assert r.returncode == 2 and "overwrite the inputs" in r.stderr


def test_run_refuses_to_overwrite_its_input_image_or_video(tmp_path):
    from runtime_fixtures import make_onnx_model
    model = make_onnx_model(tmp_path / "m.onnx")
    img = tmp_path / "one.png"
    cv2.imwrite(str(img), (np.random.default_rng(5).random((32, 48, 3)) * 255).astype(np.uint8))
    video = tmp_path / "clip.mp4"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"mp4v"), 10, (48, 32))
    for _ in range(3):
        w.write(cv2.imread(str(img)))
    w.release()
    for src in (img, video):
        before = src.read_bytes()
        for out in (str(src), os.path.relpath(src, tmp_path / "sub")):
            (tmp_path / "sub").mkdir(exist_ok=True)
            r = _sharpen("run", "--model", str(model), "--source", str(src), "--out", out,
                         "--quiet", cwd=tmp_path / "sub")
            assert r.returncode == 2 and "would overwrite it" in r.stderr, r.stderr
            assert src.read_bytes() == before


def test_run_without_out_saves_under_runs_and_says_where(tmp_path):
    from runtime_fixtures import make_onnx_model
    model = make_onnx_model(tmp_path / "m.onnx")
    img = tmp_path / "one.png"
    cv2.imwrite(str(img), np.full((32, 48, 3), 128, np.uint8))
    r = _sharpen("run", "--model", str(model), "--source", str(img), "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "runs" / "sharpen" / "one.png").is_file()
    assert "runs/sharpen/one.png" in r.stderr
    before = (tmp_path / "runs" / "sharpen" / "one.png").read_bytes()
    r = _sharpen("run", "--model", str(model), "--source", str(img), "--quiet", cwd=tmp_path)
    assert r.returncode == 0 and "runs/sharpen/one2.png" in r.stderr   # the first stays
    assert (tmp_path / "runs" / "sharpen" / "one.png").read_bytes() == before
    assert (tmp_path / "runs" / "sharpen" / "one2.png").is_file()
    r = _sharpen("run", "--model", str(tmp_path / "student.pt"), "--source", str(img),
                 cwd=tmp_path)
    assert r.returncode == 2 and "sharpen export --weights" in r.stderr


def test_run_refuses_an_artifact_marked_as_failing_parity(tmp_path):
    from runtime.backends import failed_marker
    from runtime_fixtures import make_onnx_model
    model = make_onnx_model(tmp_path / "m.onnx")
    failed_marker(model).write_text(json.dumps({"reason": "worst SSIM 0.91 < 0.98"}))
    img = tmp_path / "one.png"
    cv2.imwrite(str(img), np.full((32, 48, 3), 128, np.uint8))
    r = _sharpen("run", "--model", str(model), "--source", str(img), "--out",
                 str(tmp_path / "o.png"), cwd=tmp_path)
    assert r.returncode == 2 and "parity gate" in r.stderr and "0.91" in r.stderr
    r = _sharpen("run", "--model", str(model), "--source", str(img), "--out",
                 str(tmp_path / "o.png"), "--force", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def test_export_marks_failing_artifacts_and_records_the_checkpoint(tmp_path):
    from distill.teacher import file_hash
    from optimize.export import export
    from runtime.backends import failed_marker
    s = create_student("fast", width=8)
    ck = tmp_path / "s.pt"
    atomic_save(make_checkpoint(s, kind="student", arch="fast", arch_args=s.arch_args), ck)
    out = tmp_path / "export"
    out.mkdir()
    (out / "export_report.json").write_text('{"stale": "PASS"}')
    # An impossible FP32 gate: the artifact is built, fails, and is marked.
    from optimize.export import Thresholds
    rep = export(ck, ["onnx"], out, latency=False, quiet=True,
                 thresholds=Thresholds(fp32_max_abs=-1.0))
    r = rep.result("onnx")
    assert r.status == "fail" and failed_marker(r.file).exists()
    saved = json.loads((out / "export_report.json").read_text())
    assert saved.get("stale") == [] and saved["settings"]["weights_sha256"] == file_hash(ck, n=64)
    rep = export(ck, ["onnx"], out, latency=False, quiet=True)
    assert rep.result("onnx").status == "pass" and not failed_marker(r.file).exists()


def test_a_failed_artifact_copied_without_its_marker_is_still_refused(tmp_path):
    """The marker file stays behind when only the model (and the sidecar a .tflite needs) is
    copied to the device; the verdict is also written into the ONNX metadata or the sidecar."""
    import shutil

    from optimize.export import Thresholds, export
    from optimize.onnx_export import read_metadata
    from runtime.backends import ModelError, load_backend
    from runtime.backends.base import PARITY_KEY, read_sidecar
    from runtime.warn import SharpenWarning

    s = create_student("fast", width=8)
    ck = tmp_path / "s.pt"
    atomic_save(make_checkpoint(s, kind="student", arch="fast", arch_args=s.arch_args), ck)
    out, device = tmp_path / "export", tmp_path / "device"
    device.mkdir()
    # A few small calibration crops (the INT8 model's quality is not what is tested here).
    common = dict(latency=False, quiet=True, calib_count=8, calib_size=128)
    rep = export(ck, ["onnx", "onnx-int8", "tflite-fp16"], out, **common,
                 thresholds=Thresholds(fp32_max_abs=-1.0, min_ssim=1.01))
    assert [rep.result(f).status for f in ("onnx", "onnx-int8", "tflite-fp16")] == ["fail"] * 3
    onnx, tfl = Path(rep.result("onnx").file), Path(rep.result("tflite-fp16").file)
    assert "max abs error" in read_metadata(onnx)[PARITY_KEY]
    for f in (onnx, tfl, Path(str(tfl) + ".json")):
        shutil.copy(f, device / f.name)
    for f in (onnx, tfl):
        with pytest.raises(ModelError, match="failed its parity gate at export"):
            load_backend(device / f.name)
        with pytest.warns(SharpenWarning, match=f"{f.name} failed its parity gate at export "
                          r"\(.*\); running it anyway \(forced\)"):
            load_backend(device / f.name, force=True).close()
    # The INT8 model is quantised from the failed FP32 one and judged on its own.
    rep = export(ck, ["onnx", "onnx-int8", "tflite-fp16"], out, **common,
                 thresholds=Thresholds(fp32_max_abs=-1.0))
    assert rep.result("onnx-int8").status == "pass", rep.result("onnx-int8").reason
    assert PARITY_KEY not in read_metadata(rep.result("onnx-int8").file)
    assert rep.result("tflite-fp16").status == "pass" and PARITY_KEY not in read_sidecar(tfl)
    load_backend(rep.result("onnx-int8").file).close()
    load_backend(tfl).close()


def test_labels_removes_stale_temp_files_of_killed_writes(tmp_path, tiny_teacher_pt):
    import os as _os
    import time as _time
    img = np.random.default_rng(5).random((24, 32, 3)).astype(np.float32)
    write_image(tmp_path / "in" / "a.png", img)
    labels = tmp_path / "labels" / "labels"
    labels.mkdir(parents=True)
    old, young = labels / ".a.png.k1ll3d.png", labels / ".b.png.inflight.png"
    for p in (old, young):
        p.write_bytes(b"\x89PNG half")
    _os.utime(old, (_time.time() - 3600, _time.time() - 3600))
    r = _sharpen("labels", "--data", str(tmp_path / "in"), "--out", str(tmp_path / "labels"),
                 "--teacher-weights", str(tiny_teacher_pt), "--tile", "0", "--device", "cpu",
                 "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not old.exists() and young.exists()


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 120) -> None:
    """SIGKILL `proc` as soon as ready() holds (or let it finish, whichever comes first)."""
    import signal
    import time as _time
    t0 = _time.time()
    while _time.time() - t0 < timeout and proc.poll() is None and not ready():
        _time.sleep(0.01)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(60)


def _train_argv(tmp_path: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "sharpen.cli", "train", "--quiet", f"out={out}",
            "model.arch=fast", "model.args={width: 8, blocks: 1, low_blocks: 1}",
            f"data.train={tmp_path / 'pairs'}", "data.val=", "data.crop=32",
            "data.batch_size=2", "data.workers=0", "optim.warmup_steps=1", "optim.steps=12",
            "log_every=1", "val_every=1000", "ckpt_every=2", "seed=3"]


@pytest.mark.slow
def test_kill9_training_then_rerun_equals_uninterrupted(tmp_path, one_thread, capsys):
    from distill.checkpoint import read_checkpoint
    from sharpen.cli import main
    rng = np.random.default_rng(6)
    for i in range(3):
        sharp = rng.random((48, 48, 3)).astype(np.float32)
        write_image(tmp_path / "pairs" / "target" / f"p{i}.png", sharp)
        write_image(tmp_path / "pairs" / "input" / f"p{i}.png", cv2.blur(sharp, (5, 5)))
    # Only the run killed needs a process of its own; the others run here, on one thread as
    # it does (OMP_NUM_THREADS=1), so that the weights may be compared.
    env = dict(os.environ, OMP_NUM_THREADS="1")
    assert main(_train_argv(tmp_path, tmp_path / "ref")[3:]) == 0, capsys.readouterr().err
    out = tmp_path / "killed"
    log = out / "metrics.jsonl"
    proc = subprocess.Popen(_train_argv(tmp_path, out), cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_when(proc, lambda: log.exists() and len(log.read_text().splitlines()) >= 5)
    assert main(_train_argv(tmp_path, out)[3:]) == 0, capsys.readouterr().err
    a, b = read_checkpoint(tmp_path / "ref" / "last.pt"), read_checkpoint(out / "last.pt")
    assert a["step"] == b["step"] == 12
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], atol=1e-6, rtol=0)
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps == sorted(set(steps))


@pytest.mark.slow
def test_kill9_run_into_image_folder_leaves_no_partial_file(tmp_path):
    from runtime_fixtures import make_onnx_model
    model = make_onnx_model(tmp_path / "m.onnx")
    src = tmp_path / "frames"
    src.mkdir()
    rng = np.random.default_rng(7)
    for i in range(40):
        cv2.imwrite(str(src / f"f{i:03d}.png"), (rng.random((240, 320, 3)) * 255).astype(np.uint8))
    out = tmp_path / "sharp"
    argv = [sys.executable, "-m", "sharpen.cli", "run", "--model", str(model), "--source",
            str(src), "--out", str(out), "--quiet"]
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _kill_when(proc, lambda: out.is_dir() and len(list(out.glob("f*.png"))) >= 5)
    for p in out.glob("[!.]*"):
        img = cv2.imread(str(p))
        assert img is not None and img.shape == (240, 320, 3), p
    r = _sharpen("run", "--model", str(model), "--source", str(src), "--out", str(out),
                 "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(list(out.glob("f*.png"))) == 40


@pytest.mark.slow
def test_kill9_export_leaves_no_report_vouching_for_it(tmp_path, capsys):
    from distill.teacher import file_hash
    from runtime.backends import read_marker
    from runtime.backends.provenance import read_report
    from sharpen.cli import main
    s = create_student("fast", width=8)
    ck = tmp_path / "s.pt"
    atomic_save(make_checkpoint(s, kind="student", arch="fast", arch_args=s.arch_args), ck)
    out = tmp_path / "export"
    argv = ["export", "--weights", str(ck), "--out", str(out), "--formats", "onnx,onnx-int8",
            "--no-latency", "--quiet", "--calib-count", "8", "--calib-size", "128"]
    # Only the export killed needs a process of its own: the others run in this one (a
    # command's start-up, torch and ONNX imports, is seconds).
    assert main(argv) == 0, capsys.readouterr().err
    before = json.loads((out / "export_report.json").read_text())
    assert all(x["status"] == "pass" for x in before["results"] if x["status"] != "skipped")
    proc = subprocess.Popen([sys.executable, "-m", "sharpen.cli", *argv, "--rebuild"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def mid_export() -> bool:
        """The report of the export under way (interrupted until it ends) lists onnx: the
        INT8 model is being rebuilt."""
        rep = read_report(out / "export_report.json") or {}
        return bool(rep.get("settings", {}).get("interrupted")) and any(
            r.get("format") == "onnx" for r in rep.get("results", []))

    _kill_when(proc, mid_export)
    if proc.returncode != 0:   # killed mid-export: the report vouches for what passed only
        rep = json.loads((out / "export_report.json").read_text())
        assert rep["settings"]["interrupted"] is True and rep["ok"] is False
        for r in rep["results"]:
            path = Path(r["file"])
            assert r["status"] == "pass" and r["extra"]["file_sha256"] == file_hash(path, n=64)
            assert read_marker(path).get("status") != "unchecked", r["format"]
    assert main(argv) == 0, capsys.readouterr().err
    assert json.loads((out / "export_report.json").read_text())["settings"]["weights_sha256"]


def test_exported_files_record_their_checkpoint(tmp_path):
    from distill.teacher import file_hash
    from optimize.export import export
    from optimize.onnx_export import read_metadata
    s = create_student("fast", width=8)
    ck = tmp_path / "s.pt"
    atomic_save(make_checkpoint(s, kind="student", arch="fast", arch_args=s.arch_args), ck)
    rep = export(ck, ["onnx", "onnx-int8"], tmp_path / "e", latency=False, quiet=True,
                 calib_count=8, calib_size=128)
    for fmt in ("onnx", "onnx-int8"):
        assert read_metadata(rep.result(fmt).file)["source_sha256"] == file_hash(ck, n=64)


def test_jpeg_with_trailing_data_is_not_truncated_and_tiny_png_is_an_error(tmp_path):
    img = (np.random.default_rng(8).random((32, 48, 3)) * 255).astype(np.uint8)
    ok, jpg = cv2.imencode(".jpg", img)
    motion = tmp_path / "motion.jpg"   # a motion photo: video data after the end marker
    motion.write_bytes(jpg.tobytes() + b"\x00ftypmp42" + bytes(4096))
    assert read_image(motion).shape == (32, 48, 3)
    stub = tmp_path / "stub.png"       # signature and chunk header, IHDR cut short
    stub.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00")
    with pytest.raises(ImageReadError, match="stub.png"):
        read_image(stub)


@pytest.mark.parametrize("ext", ["jpg", "png", "webp"])
def test_exif_orientation_is_applied_as_opencv_and_viewers_do(tmp_path, ext):
    from PIL import Image
    rng = np.random.default_rng(3)
    rgb = (rng.random((30, 60, 3)) * 255).astype(np.uint8)
    for o in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        f = tmp_path / f"o{o}.{ext}"
        Image.fromarray(rgb).save(f, exif=exif.tobytes(), quality=95)
        want = cv2.imread(str(f), cv2.IMREAD_COLOR)   # OpenCV applies the tag here
        got = decode_image(f)
        assert got.shape == want.shape and np.array_equal(got, want), (ext, o)
    # 16 bit stays 16 bit, turned upright (a phone's 90-degree tag on a portrait shot)
    deep = (rng.random((30, 60)) * 65535).astype(np.uint16)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(deep).save(tmp_path / "deep.png", exif=exif.tobytes())
    got = decode_image(tmp_path / "deep.png")
    assert got.dtype == np.uint16 and np.array_equal(got, np.rot90(deep, -1))


def test_saving_the_same_checkpoint_twice_gives_the_same_bytes(tmp_path):
    """torch.save names the zip's folder after the file it writes, which atomic_save made a
    random temp name: every save of the same weights hashed differently, so a re-run of
    `sharpen demo` warned its export was 'replacing ... (other weights)' (same weights) and
    the bench's cache, keyed by the file's sha256, never hit."""
    import hashlib

    import torch

    from distill.checkpoint import read_checkpoint

    ckpt = {"format": "x", "model": {"w": torch.arange(6.0).reshape(2, 3)}}
    digests = []
    for name in ("a.pt", "a.pt", "b.pt"):
        atomic_save(ckpt, tmp_path / name)
        digests.append(hashlib.sha256((tmp_path / name).read_bytes()).hexdigest())
    assert len(set(digests)) == 1
    assert torch.equal(read_checkpoint(tmp_path / "b.pt")["model"]["w"], ckpt["model"]["w"])


class _FailsToPickle:
    def __reduce__(self):
        raise RuntimeError("cannot pickle this (the test's fault mid-save)")


def test_a_checkpoint_save_that_fails_midway_leaves_the_last_one_whole_and_no_temp_file(
        tmp_path):
    from distill.checkpoint import read_checkpoint
    path = tmp_path / "last.pt"
    atomic_save({"format": "x", "model": {"w": torch.ones(64, 64)}}, path)
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="cannot pickle this"):
        atomic_save({"format": "x", "model": {"w": torch.zeros(256, 256)},
                     "later": _FailsToPickle()}, path)
    assert path.read_bytes() == before
    assert torch.equal(read_checkpoint(path)["model"]["w"], torch.ones(64, 64))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_a_checkpoint_save_is_durable_fsync_before_the_rename_and_of_the_folder_after(
        tmp_path):
    """atomic_save renamed its temp file without an fsync (the project's other atomic writes,
    runtime.atomic's, sync theirs): after a power cut the rename could be on disk before the
    data, a last.pt of zeros or none, where the resume expected the last checkpoint. Seen in
    the system calls the save makes, traced by strace, not by replacing os functions."""
    code = ("import sys, torch; from distill.checkpoint import atomic_save; "
            "atomic_save({'format': 'x', 'w': torch.ones(8)}, sys.argv[1])")
    assert_durable_write(code, tmp_path / "run" / "last.pt", tmp_path / "trace.txt")


def test_labels_says_a_footage_clip_with_no_frames_is_empty_not_unopenable(tmp_path,
                                                                            tiny_teacher_pt,
                                                                            capsys):
    """A clip that opens but holds no frame (a recording stopped before its first) was
    summed up as one 'OpenCV cannot open', which sends the user to convert a codec."""
    from sharpen.cli import main
    footage = tmp_path / "footage"
    write_image(footage / "a.png", np.zeros((16, 16, 3), np.float32))
    empty = cv2.VideoWriter(str(footage / "empty.avi"), cv2.VideoWriter.fourcc(*"MJPG"), 10,
                            (16, 16))
    empty.release()
    cap = cv2.VideoCapture(str(footage / "empty.avi"))
    assert cap.isOpened() and not cap.read()[0]   # opens, and has nothing in it
    cap.release()
    assert main(["labels", "--data", str(footage), "--out", str(tmp_path / "labels"),
                 "--teacher-weights", str(tiny_teacher_pt), "--tile", "0", "--device", "cpu",
                 "--quiet"]) == 1
    said = capsys.readouterr()
    assert "empty.avi: no decodable frames (an empty recording" in said.err, said.err
    assert "1 video left out (the warning above says why)\n" in said.out, \
        said.out
