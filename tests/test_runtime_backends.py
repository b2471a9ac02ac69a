"""Backends: ONNX Runtime for real, LiteRT with a tiny converted model, TensorRT where present."""
from __future__ import annotations

import ctypes
import importlib.util
import json
import os
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import pytest

from runtime_fixtures import (band_index, lap_var, make_onnx_model,  # noqa: E402
                                   one_op_model, onnx_model, run_cli, runtime_warnings,
                                   textured_frame)

from runtime.backends import ModelError, load_backend  # noqa: E402
from runtime.backends.onnxruntime_backend import resolve_providers  # noqa: E402
from runtime.backends.tensorrt_backend import (TRT_MISSING, check_sidecar,  # noqa: E402
                                               io_problem)
from runtime.prepost import FrameProcessor  # noqa: E402
from runtime.warn import SharpenWarning  # noqa: E402

__all__ = ["onnx_model"]
HAS_TRT = importlib.util.find_spec("tensorrt") is not None

# What a --threads of 0 means, as the range errors say it (the runtimes: README "threads").
ZERO_THREADS = ("0: MKL_NUM_THREADS or else OMP_NUM_THREADS when set, else a CPU limit's count, "
                "else all cores")


def test_onnx_backend_reports_and_runs(onnx_model):
    b = load_backend(onnx_model, threads=1)
    assert (b.name, b.precision, b.provider, b.layout, b.multiple) == \
        ("onnxruntime", "fp32", "CPUExecutionProvider", "NCHW", 8)
    x = np.random.default_rng(0).random((2, 3, 16, 24), dtype=np.float32)
    y = b.infer(x)
    assert y.shape == x.shape and y.dtype == np.float32
    assert not np.allclose(x, y)


@pytest.mark.parametrize("kind,expected", [("int8", "int8"), ("fp16", "fp16")])
def test_onnx_precision_detection(tmp_path, kind, expected):
    b = load_backend(make_onnx_model(tmp_path / f"{kind}.onnx", kind=kind, multiple=16))
    assert b.precision == expected and b.multiple == 16
    out = FrameProcessor(b)(textured_frame(4, h=40, w=60))  # 40x60: padded to 48x64
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8
    assert band_index(out) == 4 and lap_var(out) > 1.5 * lap_var(textured_frame(4, h=40, w=60))
    with pytest.raises(ValueError, match="tile and overlap must be >= 0, got -8"):
        FrameProcessor(b, tile=-8)   # refused here, not at the first frame's tiling


def test_onnx_multiple_defaults_to_8(tmp_path):
    assert load_backend(make_onnx_model(tmp_path / "m.onnx", multiple=None)).multiple == 8


def test_provider_resolution():
    avail = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers("auto", avail) == avail
    assert resolve_providers("auto", ["AzureExecutionProvider", "CPUExecutionProvider"]) == \
        ["CPUExecutionProvider"]
    assert resolve_providers("cuda", avail) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(ModelError, match="not available"):
        resolve_providers("tensorrt", ["CPUExecutionProvider"])
    # What TensorRT cannot take goes to CUDA before CPU.
    assert resolve_providers("tensorrt", avail) == avail


def test_a_gpu_provider_missing_says_how_to_get_it_on_a_jetson(onnx_model, tmp_path, capsys):
    """--provider tensorrt with pip's CPU onnxruntime said 'install onnxruntime-gpu', which pip
    has no build of for a Jetson's ARM CPU (no matching distribution there), and not that the
    runtime runs TensorRT engines itself."""
    import onnxruntime as ort

    gpu = {"TensorrtExecutionProvider", "CUDAExecutionProvider"}
    if gpu & set(ort.get_available_providers()):
        pytest.skip("this onnxruntime has GPU providers")
    img = tmp_path / "in.png"
    cv2.imwrite(str(img), textured_frame(0))
    args = ["run", "--model", str(onnx_model), "--source", str(img), "--out",
            str(tmp_path / "o.png"), "--provider"]
    assert run_cli(args + ["tensorrt"]) == 2
    err = capsys.readouterr().err
    assert "provider 'tensorrt' is not available in this build" in err, err
    assert ("on a Jetson, where pip has none, NVIDIA's onnxruntime-gpu wheel for its JetPack; "
            "or build a TensorRT engine (sharpen export --formats engine) and run the .engine)"
            in err), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert run_cli(args + ["cuda"]) == 2
    err = capsys.readouterr().err
    assert "NVIDIA's onnxruntime-gpu wheel for its JetPack)" in err, err
    assert "TensorRT engine" not in err, err


def test_tensorrt_provider_options_key_the_cache_by_model_and_cover_1080p_to_4k(tmp_path):
    """ORT names cached engines after the graph, not the weights: a retrained model exported
    under the same name ran the old engine. Without a profile every larger frame rebuilt it."""
    from runtime.backends.onnxruntime_backend import asymmetric_int8, trt_provider_options

    a = trt_provider_options(tmp_path, "a" * 64, "input", 32, int8=False)
    b = trt_provider_options(tmp_path, "b" * 64, "input", 32, int8=True)
    assert a["trt_engine_cache_path"] != b["trt_engine_cache_path"]
    assert Path(a["trt_engine_cache_path"]).is_dir()
    assert a["trt_timing_cache_path"] == a["trt_engine_cache_path"]
    assert a["trt_profile_min_shapes"] == "input:1x3x32x32"
    assert a["trt_profile_opt_shapes"] == "input:1x3x1088x1920"   # 1080 padded to 32
    assert a["trt_profile_max_shapes"] == "input:1x3x2176x3840"
    assert "trt_int8_enable" not in a and b["trt_int8_enable"] == "True"
    assert asymmetric_int8({"activations": "uint8 asymmetric"})
    assert not asymmetric_int8({"activations": "int8 symmetric"}) and not asymmetric_int8({})


def test_the_tensorrt_providers_engine_cache_is_kept_per_tensorrt_version(tmp_path):
    """ORT names a cached engine after the graph, the GPU's compute capability (`_sm87`), its
    own version and the TensorRT major.minor it was compiled with, not the libnvinfer it loads:
    after a TensorRT upgrade under the same onnxruntime-gpu every start of the same model failed
    with "TensorRT EP could not deserialize engine from cache", which `sharpen run` called a
    model made for a newer ONNX Runtime or a damaged copy. The TensorRT version is libnvinfer's
    (getInferLibVersion)."""
    from runtime.backends.onnxruntime_backend import trt_provider_options

    old = trt_provider_options(tmp_path, "a" * 64, "input", 8, int8=False, trt_version="8602")
    new = trt_provider_options(tmp_path, "a" * 64, "input", 8, int8=False, trt_version="100300")
    assert old["trt_engine_cache_path"] != new["trt_engine_cache_path"]
    assert old["trt_timing_cache_path"] == old["trt_engine_cache_path"]
    for opts, tag in ((old, "trt8602"), (new, "trt100300")):
        folder = Path(opts["trt_engine_cache_path"])
        assert folder.is_dir() and folder.parent == tmp_path, folder
        assert folder.name == f"{'a' * 16}-{tag}", folder   # still the model's hash first
    unknown = trt_provider_options(tmp_path, "a" * 64, "input", 8, int8=False, trt_version=None)
    assert unknown["trt_engine_cache_path"] == str(tmp_path / ("a" * 16))


def test_a_failing_inference_is_a_model_error_naming_the_input(onnx_model):
    b = load_backend(onnx_model, threads=1)
    with pytest.raises(ModelError, match=r"failed on a \(1, 4, 16, 16\) float32 input"):
        b.infer(np.zeros((1, 4, 16, 16), np.float32))


def test_bad_models(tmp_path):
    with pytest.raises(ModelError, match="model not found"):
        load_backend(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01 this is not a protobuf" * 50)
    with pytest.raises(ModelError, match="cannot load .*ONNX"):
        load_backend(junk)
    other = tmp_path / "model.pt"
    other.write_bytes(b"x")
    with pytest.raises(ModelError, match="unknown model type"):
        load_backend(other)
    bad_tfl = tmp_path / "bad.tflite"
    bad_tfl.write_bytes(b"nope" * 100)
    with pytest.raises(ModelError, match="LiteRT"):
        load_backend(bad_tfl)


# --- TensorRT ------------------------------------------------------------------------------

@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed: the missing-TensorRT message is moot")
def test_tensorrt_missing_is_a_clear_error(tmp_path):
    eng = tmp_path / "student.engine"
    eng.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError) as ei:
        load_backend(eng)
    assert str(ei.value) == TRT_MISSING
    # On a Jetson it is there, in the system Python: a venv made without
    # --system-site-packages hides it, the usual way to meet this message there.
    assert "in a virtual environment, make it with --system-site-packages" in TRT_MISSING
    # It names JetPack's package, and the second thing the backend needs.
    assert "`sudo apt install python3-libnvinfer`" in TRT_MISSING
    assert "also needs cuda-python" in TRT_MISSING


def _jetpack_bindings(root: Path, py: str) -> Path:
    """A system site folder holding a `tensorrt` package whose extension module's name
    carries the Python it is built for (python3-libnvinfer's plain tensorrt.so is in
    test_jetpacks_untagged_bindings_are_said_to_be_for_their_folders_python)."""
    site = root / "dist-packages"
    (site / "tensorrt").mkdir(parents=True)
    (site / "tensorrt" / "__init__.py").write_text("from .tensorrt import *\n")
    (site / "tensorrt" / f"tensorrt.cpython-{py}-aarch64-linux-gnu.so").write_bytes(b"\0")
    return site


def test_jetpacks_untagged_bindings_are_said_to_be_for_their_folders_python(tmp_path):
    """python3-libnvinfer installs /usr/lib/python3.10/dist-packages/tensorrt/tensorrt.so, a
    name without the cpython tag: the Python it is for is its folder's. Another Python (a
    3.12 venv, a conda env) was told to make its venv with --system-site-packages, which
    shows it no python3.10 folder."""
    import sys

    from runtime.backends import tensorrt_backend as tb

    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    want = "3.10" if here != "3.10" else "3.12"
    site = tmp_path / "lib" / f"python{want}" / "dist-packages"
    (site / "tensorrt").mkdir(parents=True)
    (site / "tensorrt" / "__init__.py").write_text("from .tensorrt import *\n")
    (site / "tensorrt" / "tensorrt.so").write_bytes(b"\0")
    said = tb.tensorrt_missing(site_globs=(str(tmp_path / "lib" / "python3.*" / "dist-packages"),))
    assert said.startswith(f"TensorRT is installed in {site / 'tensorrt'} for Python {want}, "
                           f"but this is Python {here} ({sys.executable}): run with the system "
                           "python3"), said


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed: the missing-TensorRT message is moot")
def test_tensorrt_out_of_sight_is_said_as_such(tmp_path, monkeypatch, capsys):
    """JetPack's bindings were there, but out of this Python's sight (a venv made without
    --system-site-packages, or another Python than JetPack's): the message said they were
    not installed, and `apt install` then changes nothing."""
    import sys

    from runtime.backends import tensorrt_backend as tb

    here = f"{sys.version_info[0]}{sys.version_info[1]}"
    site = _jetpack_bindings(tmp_path / "same", here)
    monkeypatch.setattr(tb, "SYSTEM_SITE_GLOBS", (str(site),))
    eng = tmp_path / "student.engine"
    eng.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError) as ei:
        load_backend(eng)
    said = str(ei.value)
    assert said.startswith(f"TensorRT is installed in {site / 'tensorrt'}, which this Python "
                           f"({sys.executable}) does not see: make its virtual environment "
                           "with `python3 -m venv --system-site-packages`"), said
    assert said.endswith("; or use the .onnx model"), said
    # sharpen run says it in one line, no traceback
    assert run_cli(["run", "--model", str(eng), "--source", str(tmp_path), "--out",
                    str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "does not see: make its virtual environment" in err and "Traceback" not in err
    # JetPack 6's bindings are for its Python 3.10: another Python never sees them
    other = _jetpack_bindings(tmp_path / "other", "310" if here != "310" else "312")
    want = "3.10" if here != "310" else "3.12"
    said = tb.tensorrt_missing(site_globs=(str(other),))
    assert said.startswith(f"TensorRT is installed in {other / 'tensorrt'} for Python {want}, "
                           f"but this is Python {sys.version_info[0]}.{sys.version_info[1]} "
                           f"({sys.executable}): run with the system python3"), said
    # In sight but failing (a library of its own missing): the import's own words
    monkeypatch.syspath_prepend(str(site))
    said = tb.tensorrt_missing(ImportError("libnvinfer.so.10: cannot open shared object file"),
                               site_globs=(str(site),))
    assert said == (f"TensorRT in {site / 'tensorrt'} cannot be imported: libnvinfer.so.10: "
                    "cannot open shared object file")
    # Nothing there: the install advice; an export's skip reason gives no run advice
    assert tb.tensorrt_missing(site_globs=(str(tmp_path / "none"),)) == TRT_MISSING
    monkeypatch.setattr(tb, "SYSTEM_SITE_GLOBS", (str(other),))
    from optimize.tensorrt_engine import availability
    assert availability() == tb.tensorrt_missing(instead="")
    assert "run with the system python3" in availability()
    assert "onnx" not in availability()


def test_tensorrt_sidecar_mismatch_message():
    meta = {"tensorrt_version": "10.3.0", "gpu_name": "Orin", "precision": "fp16"}
    check_sidecar(meta, "10.3.0", "Orin", Path("m.engine"))  # same: accepted
    with pytest.raises(ModelError, match="TensorRT 10.3.0 .* 10.7.0: rebuild the engine"):
        check_sidecar(meta, "10.7.0", "Orin", Path("m.engine"))
    with pytest.raises(ModelError, match="GPU 'Orin' .*rebuild the engine"):
        check_sidecar(meta, "10.3.0", "NVIDIA H100", Path("m.engine"))
    # Every Jetson Orin is named "Orin": an AGX's engine (16 SMs) on a Nano (8) is refused.
    agx = {**meta, "gpu_sms": 16, "gpu_compute": "8.7"}
    nano = {"gpu_name": "Orin", "gpu_sms": 8, "gpu_compute": "8.7"}
    check_sidecar(agx, "10.3.0", {**nano, "gpu_sms": 16}, Path("m.engine"))
    check_sidecar(meta, "10.3.0", nano, Path("m.engine"))   # an older sidecar: name only
    with pytest.raises(ModelError, match=r"built on GPU 'Orin' \(16 SMs, compute 8.7\) but this "
                       r"device has 'Orin' \(8 SMs, compute 8.7\): rebuild"):
        check_sidecar(agx, "10.3.0", nano, Path("m.engine"))


def test_an_engine_without_its_sidecar_is_said_to_run_on_guesses(tmp_path):
    """An engine copied to the device without the sidecar `sharpen export` wrote beside it (or
    built by a trtexec line of one's own) ran without a word: frames padded to the default
    multiple of 8, which `edge` (32) fails at most sizes with no hint why, and no check of
    the TensorRT version and GPU it was built for. As LiteRT says a .tflite's missing sidecar,
    the TensorRT backend says it when it loads the engine (there, where TensorRT is)."""
    from runtime.backends.tensorrt_backend import unrecorded_engine

    engine = tmp_path / "student-edge_fp16.engine"
    assert unrecorded_engine(engine, {}) == (
        f"{engine} has no sidecar student-edge_fp16.engine.json (copy it along with the "
        "engine): frames are padded to multiples of 8, at which a model that needs 32 "
        "(`edge`) fails, and the TensorRT version and GPU it was built for are not checked")
    assert unrecorded_engine(engine, {"multiple": 32, "profile": {}}) is None


class _HostOnlyCudaRuntime:
    """The cuda-python runtime calls the TensorRT backend's buffers make, on host memory: there
    is no GPU here. Allocations fail while `fail` is set, as cudaMalloc does out of memory."""

    class cudaError_t:   # noqa: N801 - cuda-python's name
        cudaSuccess, cudaErrorMemoryAllocation = 0, 2

    def __init__(self):
        self.blocks, self.freed, self.fail, self.fail_pinned = {}, [], False, False

    def cudaMalloc(self, nbytes):   # noqa: N802 - cuda-python's name
        if self.fail:
            return (self.cudaError_t.cudaErrorMemoryAllocation, None)
        block = ctypes.create_string_buffer(nbytes)
        self.blocks[ctypes.addressof(block)] = block
        return (self.cudaError_t.cudaSuccess, ctypes.addressof(block))

    def cudaMallocHost(self, nbytes):   # noqa: N802 - cuda-python's name
        if self.fail_pinned:   # pinned memory runs out before device memory on a Jetson
            return (self.cudaError_t.cudaErrorMemoryAllocation, None)
        return self.cudaMalloc(nbytes)

    def cudaFree(self, ptr):   # noqa: N802 - cuda-python's name
        self.freed.append(ptr)
        return (self.cudaError_t.cudaSuccess,)

    cudaFreeHost = cudaFree


def test_a_tensorrt_buffer_freed_for_a_larger_frame_is_never_used_again():
    """The backend grows its pinned and device buffers for a larger frame by freeing the old
    pair, then allocating: where the allocation failed (a 4K frame on a Jetson short of
    memory), the freed pair stayed the backend's, and the next, smaller frame (the bench's
    next size, an app's loop going on) was written into freed pinned memory, and close()
    freed it again. A freed buffer is now empty: the next frame gets a new one, and it is
    freed once. (CUDA's calls run on host memory here: the bookkeeping is what is checked.)"""
    from runtime.backends.tensorrt_backend import TensorRTBackend, _Cuda

    cuda = _Cuda.__new__(_Cuda)
    cuda.rt = _HostOnlyCudaRuntime()

    class Holder:   # what TensorRTBackend._ensure uses of the backend
        pass

    b = Holder()
    b.cuda = cuda
    f32 = np.dtype(np.float32)
    first = TensorRTBackend._ensure(b, None, 64, f32)
    assert TensorRTBackend._ensure(b, first, 32, f32) is first   # big enough: kept
    cuda.rt.fail = True
    with pytest.raises(ModelError, match="cudaErrorMemoryAllocation|CUDA error: 2"):
        TensorRTBackend._ensure(b, first, 4096, f32)
    assert len(cuda.rt.freed) == 2 and first.nbytes == 0 and first.host.size == 0
    cuda.rt.fail = False
    again = TensorRTBackend._ensure(b, first, 32, f32)   # what the backend still held
    assert again is not first and again.nbytes == 32
    first.free()   # close(), on what it held
    assert len(cuda.rt.freed) == 2


def test_a_tensorrt_buffer_whose_pinned_half_is_refused_frees_its_device_half():
    """A buffer is a device allocation and a pinned one: where the pinned one failed, the
    device one was already made and nothing held it, leaked for the process's life (an app's
    loop retrying the frame lost it again each time)."""
    from runtime.backends.tensorrt_backend import _Buffer, _Cuda

    cuda = _Cuda.__new__(_Cuda)
    cuda.rt = _HostOnlyCudaRuntime()
    cuda.rt.fail_pinned = True
    with pytest.raises(ModelError, match="cudaErrorMemoryAllocation|CUDA error: 2"):
        _Buffer(cuda, 64, np.dtype(np.float32))
    assert cuda.rt.freed == list(cuda.rt.blocks), (cuda.rt.freed, cuda.rt.blocks)


def test_a_frame_beyond_an_engines_profile_is_tiled_not_refused(tmp_path, onnx_model):
    """A TensorRT engine takes frames up to its profile's largest (2160x3840 by default), and
    `sharpen run` tiles only frames above 8.9 MP: a portrait 4K frame (3840 high, 8.3 MP), or
    any frame under --max-shape 720x1280 beyond it, was refused whole ("outside the engine's
    optimisation profile ... run with --tile"). Where `sharpen run` tiles by itself, a frame
    beyond what the backend takes whole (`max_hw`, which the TensorRT backend reads from its
    engine's profile where TensorRT is; given to an ONNX Runtime backend here) is tiled as
    --tile 512 tiles it, and said. An app's own FrameProcessor (no automatic tiling) is not."""
    from runtime.options import AUTO_TILE, AUTO_TILE_PIXELS

    frame = np.random.default_rng(0).integers(0, 256, (600, 700, 3), np.uint8)
    with load_backend(str(onnx_model)) as b:
        proc = FrameProcessor(b, auto_tile_above=AUTO_TILE_PIXELS)
        assert not proc.auto_tiles(600, 700)
        b.max_hw = (520, 520)
        assert proc.auto_tiles(600, 700) and proc.auto_tiles(400, 600)
        assert not proc.auto_tiles(512, 520) and not FrameProcessor(b).auto_tiles(600, 700)
        with pytest.warns(SharpenWarning, match="tiles per 700x600 frame"):   # (--tile's)
            tiled, auto = FrameProcessor(b, tile=AUTO_TILE)(frame), proc(frame)
        assert np.array_equal(auto, tiled)
        cv2.imwrite(str(tmp_path / "tall.png"), frame)
        notes: list[str] = []
        from runtime.pipeline import run_stream
        with pytest.warns(SharpenWarning, match="tiles per 700x600 frame"):
            stats = run_stream(b, str(tmp_path / "tall.png"), tmp_path / "out", tile=None,
                               note=notes.append)
    assert stats["auto_tiled"] == 1, stats
    assert notes == [f"tall.png: 700x600 is larger than the engine takes whole (at most "
                     f"520x520, width x height, its optimisation profile): it is sharpened in "
                     f"{AUTO_TILE}-pixel tiles"], notes


def test_a_frame_beyond_an_engine_smaller_than_the_tile_is_tiled_within_it(tmp_path,
                                                                           onnx_model):
    """An engine built for a VGA camera (--max-shape 480x640) was handed a 720p frame in
    512-pixel tiles: 512 high is beyond its profile too, and TensorRT refused every tile. The
    tiles `sharpen run` picks by itself are no larger than the engine takes (480 here), and
    the note and the `done:` line say the tile it ran."""
    from runtime.cli import _result_line
    from runtime.pipeline import run_stream

    frame = np.random.default_rng(1).integers(0, 256, (600, 700, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "wide.png"), frame)
    with load_backend(str(onnx_model)) as b:
        b.max_hw = (480, 640)
        with pytest.warns(SharpenWarning):
            want = FrameProcessor(b, tile=480)(frame)
        notes: list[str] = []
        with pytest.warns(SharpenWarning, match="tiles per 700x600 frame"):
            stats = run_stream(b, str(tmp_path / "wide.png"), tmp_path / "out", tile=None,
                               note=notes.append)
    assert np.array_equal(cv2.imread(str(tmp_path / "out" / "wide.png")), want)
    assert notes == ["wide.png: 700x600 is larger than the engine takes whole (at most "
                     "640x480, width x height, its optimisation profile): it is sharpened in "
                     "480-pixel tiles"], notes
    assert _result_line(stats).endswith("; 1 frame in 480-pixel tiles)"), _result_line(stats)


def test_tensorrt_io_tensors_must_be_linear_float():
    """The backend feeds and reads plain NCHW float arrays: an engine whose I/O trtexec made
    int8 (--inputIOFormats=int8:chw) or vectorised (fp16:hwc8) is refused by name instead of
    being fed the wrong bytes. The TensorRT side (get_tensor_dtype / get_tensor_format) runs in
    test_tensorrt_engine_runs where TensorRT is installed."""
    assert io_problem("input", "DataType.FLOAT", True, True, "input") is None
    assert io_problem("output", "DataType.HALF", True, True, "output") is None
    why = io_problem("input", "DataType.INT8", False, True, "input")
    assert "input 'input' is DataType.INT8" in why and "float I/O" in why
    why = io_problem("output", "DataType.HALF", True, False, "output")
    assert "output 'output'" in why and "vectorised" in why and ":chw" in why


def test_tensorrt_refusals_name_the_callers_option_not_sharpen_runs_flag():
    """From Python, a frame outside an engine's profile said 'run with --tile' and an asymmetric
    INT8 model asked of ORT's TensorRT provider said 'or --provider cuda': flags of sharpen run,
    not the keywords the caller has. sharpen run (flags=True) keeps its wording. Both need
    TensorRT to happen (an engine; ORT's TensorRT provider): here the messages, the first
    through the backend in test_tensorrt_engine_runs where TensorRT is installed."""
    from runtime.backends.onnxruntime_backend import trt_int8_refusal
    from runtime.backends.tensorrt_backend import outside_profile

    assert outside_profile((1, 3, 256, 256), "1x3x16x16 to 1x3x128x128") == (
        "input shape (1, 3, 256, 256) is outside the engine's optimisation profile (1x3x16x16 to "
        "1x3x128x128): rebuild it with a profile covering this size, or run with tile")
    assert outside_profile((1, 3, 256, 256), "?", flags=True).endswith(
        "covering this size, or run with --tile")
    said = trt_int8_refusal(Path("m.onnx"))
    assert said == ("m.onnx is an ONNX Runtime INT8 model (uint8 activations with zero points), "
                    "which TensorRT cannot build: use the onnx-qdq-trt export (_qdq_trt.onnx) "
                    "or an engine with TensorRT, or provider 'cuda'"), said
    assert trt_int8_refusal(Path("m.onnx"), flags=True).endswith(
        "an engine with TensorRT, or --provider cuda")


@pytest.mark.skipif(not HAS_TRT, reason="TensorRT is not installed: this test builds and runs "
                    "a real engine (NVIDIA GPU, TensorRT and cuda-python)")
def test_tensorrt_engine_runs(tmp_path, onnx_model):
    """Builds an engine from the test ONNX model and runs it through the TensorRT backend."""
    from optimize.tensorrt_engine import availability
    reason = availability()
    if reason:   # TensorRT without a GPU or cuda-python: the backend cannot run an engine here
        pytest.skip(f"TensorRT is installed but cannot run an engine here: {reason}")
    import tensorrt as trt
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    from optimize.tensorrt_engine import network_flags
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(Path(onnx_model).read_bytes())
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("input", (1, 3, 16, 16), (1, 3, 64, 96), (1, 3, 128, 128))
    config.add_optimization_profile(profile)
    eng = tmp_path / "student.engine"
    eng.write_bytes(bytes(builder.build_serialized_network(network, config)))
    with pytest.warns(SharpenWarning, match="has no sidecar student.engine.json"):
        b = load_backend(eng)
    assert b.max_hw == (128, 128)   # the profile's largest: frames beyond it are tiled
    ref = load_backend(onnx_model)
    for h, w in ((64, 96), (32, 48), (128, 128)):  # grows, shrinks, grows the buffers
        x = np.random.default_rng(h).random((1, 3, h, w), dtype=np.float32)
        np.testing.assert_allclose(b.infer(x), ref.infer(x), atol=1e-3)
    # Outside the profile: the keyword from Python, the flag where sharpen run loaded it.
    big = np.zeros((1, 3, 256, 256), np.float32)
    with pytest.raises(ModelError, match=r"outside the engine's optimisation profile .* "
                       r"run with tile$"):
        b.infer(big)
    with pytest.warns(SharpenWarning, match="has no sidecar"):
        cli = load_backend(eng, flags=True)
    with cli, pytest.raises(ModelError, match=r"run with --tile$"):
        cli.infer(big)
    (tmp_path / "student.engine.json").write_text(json.dumps({"tensorrt_version": "0.0.1"}))
    with pytest.raises(ModelError, match="rebuild the engine"):
        load_backend(eng)
    b.close()


# --- LiteRT --------------------------------------------------------------------------------

def _make_tflite(path: Path, quantized: bool) -> Path:
    """A Keras depthwise unsharp-mask conv on NHWC [None,None,None,3], converted to .tflite."""
    tf = pytest.importorskip("tensorflow", reason="tensorflow is needed to build a .tflite model")
    from runtime_fixtures import unsharp_kernel
    inp = tf.keras.Input(shape=(None, None, 3), batch_size=1)
    conv = tf.keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)
    model = tf.keras.Model(inp, conv(inp))
    conv.set_weights([np.repeat(unsharp_kernel()[:, :, None, None], 3, axis=2)])
    try:
        import warnings
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        conv_ = tf.lite.TFLiteConverter.from_keras_model(model)
        if quantized:
            def rep():
                for i in range(8):
                    img = textured_frame(i, h=32, w=32)[..., ::-1].astype(np.float32) / 255
                    yield [img[None]]
            conv_.optimizations = [tf.lite.Optimize.DEFAULT]
            conv_.representative_dataset = rep
            conv_.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv_.inference_input_type = tf.uint8
            conv_.inference_output_type = tf.uint8
        path.write_bytes(conv_.convert())
    except Exception as exc:  # noqa: BLE001 - converter failures are environment problems
        pytest.skip(f"could not make a .tflite model here: {type(exc).__name__}: {exc}")
    # The sidecar `sharpen export` writes beside a .tflite: without it every load warns that
    # the size multiple was found by trial (tested on its own in the space-to-depth test).
    path.with_name(path.name + ".json").write_text(json.dumps({"multiple": 1}))
    return path


@pytest.fixture(scope="module")
def tflite_models(tmp_path_factory):
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert not installed")
    d = tmp_path_factory.mktemp("tflite")
    return _make_tflite(d / "f32.tflite", False), _make_tflite(d / "u8.tflite", True)


@pytest.mark.parametrize("which,precision,tol", [(0, "fp32", 1), (1, "int8", 12)])
def test_litert_backend(tflite_models, onnx_model, which, precision, tol):
    b = load_backend(tflite_models[which], threads=1)
    assert b.name == "litert" and b.layout == "NHWC" and b.precision == precision
    assert "XNNPACK" in b.provider
    ref = FrameProcessor(load_backend(onnx_model))
    proc = FrameProcessor(b)
    # Two sizes: the input tensor is resized and re-allocated when the frame size changes.
    for h, w in ((64, 96), (40, 56), (64, 96)):
        f = textured_frame(5, h=h, w=w)
        out = proc(f)
        assert out.shape == f.shape
        assert np.abs(out.astype(int) - ref(f).astype(int))[1:-1, 1:-1].mean() < tol
        assert lap_var(out) > 1.3 * lap_var(f)
    # Tiled mode transposes NCHW tiles for this NHWC backend.
    tiled = FrameProcessor(b, tile=32, overlap=8)(textured_frame(5))
    assert tiled.shape == (64, 96, 3) and lap_var(tiled) > 1.3 * lap_var(textured_frame(5))


def test_quantized_io_uint8_path_matches_float_path(tflite_models):
    """Integer-I/O TFLite models run uint8 -> uint8 through lookup tables; the result must equal
    the float path (quantize, invoke, dequantize, clip and round)."""
    from runtime.prepost import from_batch, to_batch
    b = load_backend(tflite_models[1], threads=1)
    assert b.quantized_io
    assert not load_backend(tflite_models[0], threads=1).quantized_io
    for h, w in ((64, 96), (37, 53)):
        f = textured_frame(3, h=h, w=w)
        fast = FrameProcessor(b)(f)
        batch, hw = to_batch(f, b.multiple, b.layout)
        slow = from_batch(b.infer(batch), hw, b.layout)
        assert fast.shape == f.shape
        assert np.abs(fast.astype(int) - slow.astype(int)).max() <= 1


@pytest.mark.parametrize("tile,rgb", [(0, False), (32, True)])
@pytest.mark.parametrize("which", ["onnx", 0, 1])
def test_one_frame_processor_shared_by_three_threads(tflite_models, onnx_model, which, tile, rgb):
    """An app may call one backend, and one FrameProcessor (README), from several threads;
    LiteRT's interpreter holds one set of tensors, and unguarded calls returned another
    thread's frame or raised. Whole and tiled, BGR and rgb=True, 8- and 16-bit and gray."""
    import threading
    model = onnx_model if which == "onnx" else tflite_models[which]
    proc = FrameProcessor(load_backend(model, threads=1), tile=tile, rgb=rgb)
    frames = [textured_frame(i, h=h, w=w) for i, (h, w) in
              enumerate([(64, 96), (40, 56), (48, 64), (64, 96)])]
    frames += [frames[1][..., 0], frames[2].astype(np.uint16) * 257, frames[0][::-1, ::2]]
    expected = [proc(f) for f in frames]
    errors, wrong = [], []

    def work(offset: int) -> None:
        try:
            for k in range(30):
                i = (k + offset) % len(frames)
                if not np.array_equal(proc(frames[i]), expected[i]):
                    wrong.append(i)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(o,)) for o in (0, 1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not wrong, (errors[:1], wrong[:5])


# Two threads load models (each load hides fd 2 from LiteRT's INFO line, several times when the
# size multiple is found by trial) while a third writes numbered lines to fd 2.
STDERR_SCRIPT = """
import os, sys, threading, time
from runtime.backends import load_backend
stop, said = threading.Event(), []
def chatter():
    while not stop.is_set():
        os.write(2, f"line {len(said)} from another thread\\n".encode())
        said.append(1)
        time.sleep(0.0005)
def loads():
    for _ in range(8):
        load_backend(sys.argv[1], threads=1)
talker, loaders = threading.Thread(target=chatter), [threading.Thread(target=loads) for _ in "ab"]
for t in [talker, *loaders]:
    t.start()
for t in loaders:
    t.join()
stop.set()
talker.join()
os.write(2, b"stderr still works\\n")
print(len(said))
"""


def test_loading_tflite_models_hides_litert_info_but_not_what_others_write(tflite_models):
    """Loading a .tflite pointed fd 2 at /dev/null: another thread's messages written meanwhile
    were lost, and two threads loading at once left fd 2 on /dev/null for good (each put back
    what it found). Now only LiteRT's INFO line is dropped, and stderr works afterwards."""
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", STDERR_SCRIPT, str(tflite_models[0])], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    n = int(r.stdout.split()[-1])
    lost = [i for i in range(n) if f"line {i} from another thread\n" not in r.stderr]
    assert not lost, f"{len(lost)} of {n} lines lost, e.g. {lost[:5]}"
    assert r.stderr.rstrip().endswith("stderr still works"), r.stderr[-300:]
    assert "XNNPACK" not in r.stderr


def test_a_broken_tflite_is_a_clear_error_and_stderr_works_after(tflite_models, tmp_path,
                                                                 capfd):
    """fd 2 itself is what LiteRT writes to: the INFO line came through where sys.stderr was
    another file (an app's log, pytest's capture), whose descriptor was the one hidden."""
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"TFL3" + bytes(60))
    with pytest.raises(ModelError, match=r"cannot load .*broken\.tflite with LiteRT \(is it a "
                                         r"\.tflite model\?\): The model is not a valid"):
        load_backend(bad, threads=1)
    load_backend(tflite_models[0], threads=1)
    os.write(2, b"stderr still works\n")
    assert capfd.readouterr().err == "stderr still works\n"


def test_fixture_model_sharpens(onnx_model):
    """Self-check of the helpers: the model increases the Laplacian variance of a blurred frame."""
    import onnxruntime as ort
    sess = ort.InferenceSession(str(onnx_model), providers=["CPUExecutionProvider"])
    f = textured_frame(3)
    x = (f[..., ::-1].astype(np.float32) / 255).transpose(2, 0, 1)[None].copy()
    y = sess.run(None, {"input": x})[0][0].transpose(1, 2, 0)[..., ::-1]
    out = np.clip(y * 255 + 0.5, 0, 255).astype(np.uint8)
    assert lap_var(out) > 1.5 * lap_var(f)
    assert band_index(out) == 3


def test_litert_size_multiple_without_or_with_a_wrong_sidecar(tmp_path):
    """A .tflite copied without its sidecar (or beside another model's) failed inside LiteRT at
    the first frame ('SPACE_TO_DEPTH ... 7 != 6'); its multiple is now checked and found."""
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert not installed")
    tf = pytest.importorskip("tensorflow", reason="tensorflow is needed to build a .tflite model")
    inp = tf.keras.Input(shape=(None, None, 3), batch_size=1)
    down = tf.keras.layers.Lambda(lambda x: tf.nn.space_to_depth(x, 4))(inp)
    out = tf.keras.layers.Lambda(lambda x: tf.nn.depth_to_space(x, 4))(down)
    path = tmp_path / "s2d.tflite"
    try:
        path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(
            tf.keras.Model(inp, out)).convert())
    except Exception as exc:  # noqa: BLE001 - converter failures are environment problems
        pytest.skip(f"could not make a .tflite model here: {type(exc).__name__}: {exc}")
    for sidecar, said in ((None, "it has no sidecar s2d.tflite.json"),
                          ({"multiple": 2}, "its sidecar s2d.tflite.json says 2, which the "
                                            "model refuses")):
        if sidecar:
            (tmp_path / "s2d.tflite.json").write_text(json.dumps(sidecar))
        with runtime_warnings() as warned:
            b = load_backend(path, threads=1)
        assert b.multiple == 4
        assert len(warned) == 1 and said in warned[0], warned
        f = textured_frame(2, h=37, w=53)
        assert np.array_equal(FrameProcessor(b)(f), f)   # space-to-depth and back: identity
    (tmp_path / "s2d.tflite.json").write_text(json.dumps({"multiple": 8}))
    with runtime_warnings() as warned:
        assert load_backend(path, threads=1).multiple == 8   # a larger one that works is kept
    assert warned == []


def test_a_forced_run_of_a_tflite_that_failed_its_parity_gate_says_so(tmp_path, capsys):
    """An INT8 .tflite whose sidecar records a failed export parity gate is refused; with
    --force it ran without a word, though its output may be wrong."""
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert not installed")
    model = _make_tflite(tmp_path / "student-int8.tflite", quantized=True)
    Path(str(model) + ".json").write_text(json.dumps(
        {"multiple": 1, "parity_failed": "worst SSIM 0.91 < 0.98"}))
    img = tmp_path / "one.png"
    cv2.imwrite(str(img), textured_frame(1, h=24, w=32))
    argv = ["run", "--model", str(model), "--source", str(img), "--out",
            str(tmp_path / "o.png"), "--threads", "1", "--quiet"]
    capsys.readouterr()
    assert run_cli(argv) == 2
    assert "failed its parity gate at export (worst SSIM 0.91" in capsys.readouterr().err
    assert run_cli([*argv, "--force"]) == 0
    said = [ln for ln in capsys.readouterr().err.splitlines() if "parity" in ln]
    assert said == [f"warning: {model} failed its parity gate at export (worst SSIM 0.91 < "
                    "0.98); running it anyway (forced), its output may be wrong"], said
    assert (tmp_path / "o.png").is_file()
    with runtime_warnings() as warned:
        load_backend(model, threads=1, force=True).close()   # said once per artifact
    assert warned == []


def test_16_bit_frames_through_a_float_io_int8_model_are_said_to_keep_8_bits(tmp_path):
    """An onnx-int8 model takes float input but quantises it to 8 bits inside: the 16-bit file
    it writes holds about 256 levels, which used to go unsaid."""
    b = load_backend(make_onnx_model(tmp_path / "q.onnx", kind="int8"))
    deep = textured_frame(1).astype(np.uint16) * 257
    with pytest.warns(SharpenWarning, match="16-bit frames through an INT8 model keep about 8 "
                      "bits"):
        assert FrameProcessor(b)(deep).dtype == np.uint16


def test_a_provider_for_another_engine_is_warned_about(tflite_models):
    """From Python it named sharpen run's --provider, a flag neither load_backend (providers=)
    nor run_stream (provider=) has; the value is named instead (sharpen run keeps its flag:
    the next test)."""
    from runtime import run_stream

    with runtime_warnings() as said:
        load_backend(tflite_models[0], threads=1, providers="tensorrt")
        run_stream(tflite_models[0], [textured_frame(0, h=32, w=48)], threads=1,
                   provider=["CUDAExecutionProvider"])
    assert [m for m in said if "provider" in m] == [
        "provider 'tensorrt' is for ONNX models; f32.tflite runs on litert",
        "provider 'CUDAExecutionProvider' is for ONNX models; f32.tflite runs on litert"], said


def test_sharpen_run_warns_once_about_a_provider_for_another_engine(tflite_models, tmp_path,
                                                                    capsys):
    """`sharpen run --provider cuda` with a .tflite said it twice (the CLI, then load_backend);
    the done line said 'XNNPACK (1 threads)'."""
    img = tmp_path / "in.png"
    cv2.imwrite(str(img), textured_frame(0, h=32, w=48))
    rc = run_cli(["run", "--model", str(tflite_models[0]), "--source", str(img), "--out",
                  str(tmp_path / "out.png"), "--provider", "cuda", "--threads", "1"])
    err = capsys.readouterr().err
    assert rc == 0, err
    said = [line for line in err.splitlines() if "--provider" in line]
    assert said == ["warning: --provider cuda is for ONNX models; f32.tflite runs on litert"], err
    assert "on XNNPACK (1 thread))" in err, err


@pytest.mark.parametrize("which", ["onnx", "tflite"])
def test_an_absurd_thread_count_is_refused_naming_the_range(request, onnx_model, which, capsys):
    """load_backend(threads=10**6) hung: ONNX Runtime set about making a million threads.
    Counts above the cores but within the cap still run (sharpen run warns of them)."""
    from runtime.host import MAX_THREADS

    model = onnx_model if which == "onnx" else request.getfixturevalue("tflite_models")[0]
    top = max(MAX_THREADS, os.cpu_count() or 0)
    with pytest.raises(ValueError, match=rf"^threads must be 0 to {top} \({ZERO_THREADS}\), got "
                                         rf"{top + 1}$"):
        load_backend(model, threads=top + 1)
    with pytest.raises(ValueError, match=rf"^threads must be >= 0 \({ZERO_THREADS}\), got -1$"):
        load_backend(model, threads=-1)
    assert run_cli(["run", "--model", str(model), "--source", "synthetic", "--threads",
                    str(10**6), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (f"sharpen run: error: --threads must be 0 to "
                                               f"{top} ({ZERO_THREADS}), got 1000000")
    assert run_cli(["run", "--model", str(model), "--source", "synthetic", "--threads", "-1",
                    "--quiet"]) == 2   # sharpen run's own check, before the range's
    assert capsys.readouterr().err.strip() == (f"sharpen run: error: --threads must be >= 0 "
                                               f"({ZERO_THREADS}), got -1")


@pytest.mark.parametrize("which", ["onnx", "tflite"])
def test_close_frees_the_engine_and_a_closed_backend_says_so(request, onnx_model, which):
    """close() (and leaving `with load_backend(...)`) freed nothing for ONNX Runtime and LiteRT:
    the session's arena or the interpreter's tensors stayed while the backend was referred to
    (a FrameProcessor kept it); a closed backend ran on as if open."""
    import gc
    import weakref

    model = onnx_model if which == "onnx" else request.getfixturevalue("tflite_models")[0]
    b = load_backend(model, threads=1)
    proc = FrameProcessor(b)
    frame = np.zeros((24, 32, 3), np.uint8)
    assert proc(frame).shape == frame.shape
    with b:
        engine = weakref.ref(b.session if which == "onnx" else b.interp)
    gc.collect()
    assert engine() is None
    with pytest.raises(ModelError, match="was closed; load it again"):
        proc(frame)


@pytest.mark.parametrize("which", ["onnx", "tflite-f32", "tflite-u8"])
def test_every_backend_run_after_close_says_so_alike(request, onnx_model, which):
    """Each backend said it in its own words, or not at all: TensorRT's failed on the None its
    close() left (AttributeError). Backend (the base class) says it for all, and `closed`
    tells; a TensorRT engine cannot be built here, but runs the same check_open."""
    model = (onnx_model if which == "onnx"
             else request.getfixturevalue("tflite_models")[which == "tflite-u8"])
    b = load_backend(model, threads=1)
    proc = FrameProcessor(b)   # the u8 model takes its integer path (infer_u8)
    frame = np.zeros((24, 32, 3), np.uint8)
    proc(frame)
    assert not b.closed
    b.close()
    b.close()   # twice: nothing more to free, no error
    assert b.closed
    said = (f"the {b.name} backend for {model} was closed; load it again to run it "
            "(load_backend)")
    for run in (lambda: proc(frame), lambda: b.warmup(8, 8)):
        with pytest.raises(ModelError) as e:
            run()
        assert str(e.value) == said


def test_a_16_bit_frame_through_int8_io_gives_8_bits_tiled_or_not(tflite_models):
    """A TFLite INT8 model's 8-bit I/O turns 16-bit frames into 8-bit results, and says so;
    with tiles (`--tile`) it returned a 16-bit result without a word, so the same model and
    image gave an 8-bit or a 16-bit file depending on --tile."""
    import warnings

    from runtime.warn import SharpenWarning

    b = load_backend(tflite_models[1], threads=1)
    f16 = textured_frame(3, h=64, w=96).astype(np.uint16) * 257
    for tile in (0, 32):
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            out = FrameProcessor(b, tile=tile, overlap=8 if tile else None)(f16)
        assert out.dtype == np.uint8 and out.shape == f16.shape, tile
        assert any(issubclass(w.category, SharpenWarning) and "results are 8-bit"
                   in str(w.message) for w in said), (tile, [str(w.message) for w in said])


def test_an_export_report_without_results_is_read_as_listing_nothing(tmp_path):
    """A report whose "results" is null (hand-edited, or written by a tool of its own) made
    the engine-not-built advice and the staleness check raise TypeError: a traceback where
    `sharpen run` says why a model cannot run."""
    from runtime.backends.provenance import pending_engine, stale_reason

    settings = {"stem": "m", "weights_sha256": "a" * 64}
    (tmp_path / "export_report.json").write_text(json.dumps({"settings": settings,
                                                             "results": None}))
    (tmp_path / "m_fp16.engine.json").write_text(json.dumps({"built_by": "trtexec"}))
    said = pending_engine(tmp_path / "m_fp16.engine")
    assert "the trtexec line that `sharpen export` printed" in said, said
    (tmp_path / "m.onnx").write_bytes(b"x")
    assert "is not in export_report.json" in stale_reason(tmp_path / "m.onnx", None)


def test_a_model_renamed_to_another_engines_extension_says_which_it_is(tmp_path, onnx_model,
                                                                       tflite_models):
    """A .tflite copied to the device as .onnx (or the other way round) failed inside the
    engine's parser ("Protobuf parsing failed"), which named neither the mix-up nor the fix."""
    cases = ((onnx_model, "as.tflite", "an ONNX model", "as.onnx"),
             (tflite_models[1], "as.onnx", "a TFLite model", "as.tflite"),
             (onnx_model, "as.bin", "an ONNX model", "as.onnx"))
    for model, name, held, fixed in cases:
        copy = tmp_path / name
        copy.write_bytes(model.read_bytes())
        with pytest.raises(ModelError) as ei:
            load_backend(copy, threads=1)
        msg = str(ei.value)
        assert f"holds {held} (by its first bytes)" in msg, msg
        assert msg.endswith(f"rename it to {tmp_path / fixed}"), msg
    plan = tmp_path / "engine.onnx"
    plan.write_bytes(b"ftrt" + bytes(200))   # how every serialised TensorRT plan starts
    with pytest.raises(ModelError, match=r"holds a TensorRT engine .* rename it to .*engine\."
                                         r"engine$"):
        load_backend(plan)


@pytest.mark.parametrize("which", ["onnx", "tflite"])
def test_a_model_cut_short_is_said_to_be_damaged_not_of_another_kind(request, tmp_path,
                                                                     onnx_model, which):
    """An interrupted copy leaves the start of a model: 'is it an ONNX model?' sent the user
    looking for a format mix-up."""
    model = onnx_model if which == "onnx" else request.getfixturevalue("tflite_models")[1]
    cut = tmp_path / f"cut{model.suffix}"
    data = model.read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(ModelError) as ei:
        load_backend(cut, threads=1)
    msg = str(ei.value)
    assert f"damaged or cut short at {len(data) // 2:,} bytes: export or copy it again" in msg
    assert "is it" not in msg, msg


def _tflite_of_op_version(model: Path, out: Path, version: int) -> Path:
    """`model` with every operator asking for `version` of its kernel (a newer converter's)."""
    schema = pytest.importorskip("tensorflow.lite.python.schema_py_generated")
    flatbuffers = pytest.importorskip("flatbuffers")
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model.read_bytes(), 0))
    for code in m.operatorCodes:
        code.version = version
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    out.write_bytes(bytes(b.Output()))
    return out


@pytest.mark.parametrize("which", ["onnx", "tflite"])
def test_a_whole_model_the_engine_cannot_run_is_not_said_to_be_damaged(request, tmp_path,
                                                                         which):
    """A model exported for a newer engine than the device's (ONNX IR version, a TFLite op
    version an older tflite-runtime lacks) parses whole: 'damaged or cut short: export or
    copy it again' sent the user copying it again, to the same error."""
    if which == "onnx":
        import onnx

        m = onnx.load(str(one_op_model(tmp_path / "relu.onnx", "Relu", ["input"], {})))
        m.ir_version = 60   # newer than any ONNX Runtime's
        newer = tmp_path / "newer.onnx"
        onnx.save(m, str(newer))
    else:
        model = request.getfixturevalue("tflite_models")[0]
        newer = _tflite_of_op_version(model, tmp_path / "newer.tflite", 99)
    with pytest.raises(ModelError) as ei:
        load_backend(newer, threads=1)
    msg = str(ei.value)
    engine = "ONNX Runtime" if which == "onnx" else "LiteRT"
    assert f"which this {engine} cannot load: made for a newer version, or a damaged copy?" \
        in msg, msg
    assert "cut short" not in msg and "is it" not in msg, msg


def test_an_export_folder_given_as_the_model_lists_its_models(tmp_path, onnx_model):
    """`--model export/` said only that a file was expected; the models in it are the choice."""
    (tmp_path / "student.onnx").write_bytes(onnx_model.read_bytes())
    (tmp_path / "student_int8.tflite").write_bytes(b"x")
    (tmp_path / "export_report.json").write_text("{}")
    with pytest.raises(ModelError, match=r"^model path is a folder, expected a file: .* \(it "
                                         r"holds student.onnx, student_int8.tflite: pass one "
                                         r"of them\)$"):
        load_backend(tmp_path)
    with pytest.raises(ModelError, match=r"expected a file: [^(]*$"):   # nothing to offer
        load_backend(tmp_path / "..")


TFLITE_RUNTIME_SCRIPT = """
import importlib.abc, sys, types
import ai_edge_litert.interpreter as real
# tflite-runtime (no wheel for this Python here) stands in as the same interpreter under its
# name, as the package is LiteRT's predecessor with the same API; ai_edge_litert is then gone.
pkg = types.ModuleType("tflite_runtime")
pkg.interpreter = real
sys.modules.update({"tflite_runtime": pkg, "tflite_runtime.interpreter": real})
for name in [m for m in sys.modules if m.split(".")[0] == "ai_edge_litert"]:
    del sys.modules[name]

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(name, name=name)

BLOCKED = {"ai_edge_litert"}
sys.meta_path.insert(0, Blocker())
from runtime.backends import ModelError, load_backend
b = load_backend(sys.argv[1], threads=1)
print("LOADED", b.name, b.precision)
BLOCKED.add("tflite_runtime")
del sys.modules["tflite_runtime"], sys.modules["tflite_runtime.interpreter"]
try:
    load_backend(sys.argv[1], threads=1)
except ModelError as e:
    print("MISSING", e)
"""


def test_tflite_runtime_runs_tflite_models_where_ai_edge_litert_is_missing(tflite_models):
    """Boards without an ai-edge-litert wheel (32-bit ARM) have tflite-runtime: its models were
    refused as 'LiteRT is not installed'."""
    import subprocess
    import sys
    from runtime_fixtures import REPO

    r = subprocess.run([sys.executable, "-c", TFLITE_RUNTIME_SCRIPT, str(tflite_models[1])],
                       capture_output=True, text=True, cwd=REPO, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert "LOADED litert int8" in r.stdout, r.stdout + r.stderr
    assert "MISSING LiteRT is not installed: `pip install ai-edge-litert` (tflite-runtime" in \
        r.stdout, r.stdout + r.stderr


def test_onnx_runtimes_pool_threads_do_not_spin_between_runs(onnx_model):
    """Busy-waiting pool threads took the cores the stream's decode and encode threads need
    (half the frame rate on a 2-core host); the session is made with spinning off."""
    b = load_backend(onnx_model, threads=2)
    opts = b.session.get_session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_the_installed_onnxruntime_builds_are_scanned_once():
    """Every model load on a CPU-only build scanned all installed packages' metadata for a
    GPU build hidden by the CPU one: a quarter of a second each time, for the same answer."""
    import onnxruntime

    from runtime.backends.onnxruntime_backend import installed_builds

    builds = installed_builds()
    assert ("onnxruntime", onnxruntime.__version__) in [b[:2] for b in builds], builds
    assert installed_builds() is builds


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def test_onnx_runtime_takes_omp_num_threads_when_no_thread_count_is_given(onnx_model,
                                                                         monkeypatch,
                                                                         no_cpu_limit):
    """Given no threads, ONNX Runtime took every core whatever OMP_NUM_THREADS said: two test
    workers on a 2-core host ran two pool threads each. The variable sets the default now;
    an explicit count still wins."""
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    with load_backend(onnx_model) as b:
        assert b.session.get_session_options().intra_op_num_threads == 3
        assert b.threads == 3
    with load_backend(onnx_model, threads=1) as b:
        assert b.session.get_session_options().intra_op_num_threads == 1
        assert b.threads == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    with load_backend(onnx_model) as b:   # ONNX Runtime's own default, said as 0
        assert b.session.get_session_options().intra_op_num_threads == 0
        assert b.threads == 0


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_litert_takes_omp_num_threads_when_no_thread_count_is_given(tflite_models,
                                                                   monkeypatch):
    """XNNPACK's pool holds a worker thread per thread beyond the caller's: counted in the
    process, OMP_NUM_THREADS=3 gives two, an explicit threads=1 none."""
    frame = textured_frame(0, h=32, w=32)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    for threads, workers in ((None, 2), (1, 0)):
        before = _os_threads()
        b = load_backend(tflite_models[0], threads=threads)
        try:
            FrameProcessor(b)(frame)
            assert _os_threads() - before == workers, (threads, b.provider)
            assert b.threads == (threads or 3)
        finally:
            b.close()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2,
                    reason="needs sched_setaffinity and two cores")
def test_litert_without_a_thread_count_takes_the_cores_this_process_may_use(tflite_models,
                                                                            monkeypatch):
    """A container or taskset gives a process fewer cores than the machine has: LiteRT's
    default is the cores it may use, not os.cpu_count() (threads fighting for one core)."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        b = load_backend(tflite_models[0])
    finally:
        os.sched_setaffinity(0, allowed)
    try:
        assert b.threads == 1, b.threads
    finally:
        b.close()


@pytest.mark.parametrize("value", ["two", "0", "-2", "1.5"])
def test_an_invalid_omp_num_threads_is_said_and_the_default_kept(onnx_model, monkeypatch,
                                                                 value, no_cpu_limit):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    with runtime_warnings() as said, load_backend(onnx_model) as b:
        assert b.session.get_session_options().intra_op_num_threads == 0
    assert any(m.startswith(f"OMP_NUM_THREADS={value!r} is not a thread count") for m in said), \
        said
    with runtime_warnings() as said, load_backend(onnx_model, threads=1):
        pass
    assert not said   # not read at all when a count is given


def test_mkl_num_threads_sets_the_engines_threads_as_it_sets_torchs(onnx_model, tflite_models,
                                                                    monkeypatch, no_cpu_limit):
    """A container's MKL_NUM_THREADS=1 put PyTorch on one thread (where it is set, ATen's
    default reads it over OMP_NUM_THREADS) and left ONNX Runtime and LiteRT on every core:
    the engines now take the count by PyTorch's rule, and name the variable that gave it."""
    from runtime.host import threads_top, threads_warning
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    with load_backend(onnx_model) as b, load_backend(tflite_models[0]) as t:
        assert b.session.get_session_options().intra_op_num_threads == 1 == b.threads
        assert t.threads == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")   # both set: MKL's, as PyTorch takes it
    with load_backend(onnx_model) as b:
        assert b.threads == 1
    if (os.cpu_count() or 1) < threads_top():
        monkeypatch.setenv("MKL_NUM_THREADS", str(threads_top()))
        assert threads_warning(None).startswith(f"MKL_NUM_THREADS={threads_top()} (the thread "
                                                "count when threads is not given) is more than")
    monkeypatch.setenv("MKL_NUM_THREADS", "two")   # not a count: said, OMP_NUM_THREADS's runs
    with runtime_warnings() as said, load_backend(onnx_model) as b:
        assert b.threads == 3
    assert [m for m in said if m.startswith("MKL_NUM_THREADS='two' is not a thread count") and
            m.endswith("ignored; ONNX Runtime and LiteRT run OMP_NUM_THREADS's 3")], said


def test_the_threads_help_and_errors_name_every_variable_that_sets_the_count():
    """The engines read MKL_NUM_THREADS over OMP_NUM_THREADS, yet every command's --threads
    help and range error said 0 meant "OMP_NUM_THREADS when set": a shell with both set to
    different counts ran the one the help did not name."""
    from runtime.host import THREADS_VARS, check_threads, threads_help
    said = threads_help("ONNX Runtime / LiteRT")
    with pytest.raises(ValueError) as e:
        check_threads(-1)
    for var in THREADS_VARS:
        assert var in said and var in str(e.value), (var, said, str(e.value))


def test_the_bench_names_each_variable_it_was_not_given_a_count_by(monkeypatch, no_cpu_limit):
    """The bench's summary said "no --threads, OMP_NUM_THREADS" where MKL_NUM_THREADS, which
    the engines read first, was as much unset; set, it names the one that gave the count."""
    from benchmarks.conftest import runtime_threads_line
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert runtime_threads_line(0) == ("ONNX Runtime and LiteRT on their default threads (no "
                                       "--threads, MKL_NUM_THREADS or OMP_NUM_THREADS)")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    assert runtime_threads_line(0) == ("ONNX Runtime and LiteRT on 1 thread (MKL_NUM_THREADS=1; "
                                       "--threads N sets another count)")


def test_an_omp_num_threads_of_thousands_of_digits_is_said_not_a_traceback(onnx_model,
                                                                          monkeypatch,
                                                                          no_cpu_limit):
    """int() of over 4300 digits raises Python's ValueError ("Exceeds the limit"): every model
    load failed with it, where another bad value is warned of and ignored. The warning gives
    the start of such a value and its length, not all of it."""
    monkeypatch.setenv("OMP_NUM_THREADS", "9" * 5000)
    with runtime_warnings() as said, load_backend(onnx_model) as b:
        assert b.threads == 0
    assert [m for m in said if m.startswith(f"OMP_NUM_THREADS={'9' * 20!r}... (5000 characters)"
                                            " is not a thread count")], said
    monkeypatch.setenv("OMP_NUM_THREADS", "0" * 5000 + "2")   # leading zeros: still two
    with load_backend(onnx_model) as b:
        assert b.threads == 2


def test_a_batch_in_the_other_layout_is_named_as_such(tflite_models, onnx_model):
    """Backend.infer, given an NHWC batch by ONNX Runtime (or NCHW by LiteRT), said that H and W
    must be multiples of 8, or only the engine's words (LiteRT's space_to_depth check): the
    batch's layout was the problem, which the message now names."""
    nhwc, nchw = np.zeros((1, 16, 16, 3), np.float32), np.zeros((1, 3, 16, 16), np.float32)
    with load_backend(onnx_model, threads=1) as b, pytest.raises(
            ModelError, match=r"failed on a \(1, 16, 16, 3\) float32 input \(the backend "
                              r"takes a batch in NCHW, \(N, 3, H, W\); FrameProcessor"):
        b.infer(nhwc)
    with load_backend(tflite_models[1], threads=1) as b, pytest.raises(
            ModelError, match=r"input \[1, 3, 16, 16\] \(the backend takes a batch in NHWC, "
                              r"\(N, H, W, 3\); FrameProcessor"):
        b.infer(nchw)


def test_litert_takes_a_cpu_limits_cores_by_default(tflite_models, tmp_path, monkeypatch):
    """LiteRT, given no thread count, takes the cores this process may use: in a container
    limited to 1 CPU (`docker run --cpus 1`) on a bigger machine it took every core of the
    machine, threads the kernel then throttled."""
    from runtime import host
    from runtime.backends import load_backend
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core here: a 1-CPU limit changes nothing")
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    (tmp_path / "self").write_text("0::/\n")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(host, "CGROUP_ROOT", tmp_path, raising=False)
    monkeypatch.setattr(host, "CGROUP_MEMBERSHIP", tmp_path / "self", raising=False)
    with load_backend(tflite_models[0]) as b:
        assert b.threads == 1 and b.provider == "XNNPACK (1 thread)"


_HOLD_TRT_CACHE = """
import sys, time, warnings
from pathlib import Path
from runtime.backends.onnxruntime_backend import trt_cache_held, trt_provider_options
root, digest, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[4]
marks, holder = Path(sys.argv[3]), Path(sys.argv[5])
warnings.simplefilter("always")
opts = trt_provider_options(root, digest, "input", 8, int8=False)
with trt_cache_held(opts):
    print("in, after the holder:", (holder / "released").exists(), flush=True)
    (marks / "in").touch()
    while mode == "hold" and not (marks / "go").exists():
        time.sleep(0.02)
    if mode == "hold":
        (marks / "released").touch()   # the engine written, as ORT does before the session
"""


def _hold_trt_cache(root: Path, digest: str, marks: Path, mode: str,
                    holder: Optional[Path] = None):
    import subprocess
    import sys

    marks.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen([sys.executable, "-c", _HOLD_TRT_CACHE, str(root), digest,
                             str(marks), mode, str(holder or marks)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _line_within(stream, seconds: float = 60) -> str:
    """The next line of a child's pipe, or "" where none comes in `seconds`: a child that
    waits without a word fails the test instead of hanging it."""
    import select

    return stream.readline() if select.select([stream], [], [], seconds)[0] else ""


def _appears(path: Path, child, seconds: float = 60) -> None:
    import time

    end = time.monotonic() + seconds
    while not path.exists():
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < end, f"{path} not made in {seconds} s"
        time.sleep(0.02)


def test_runs_started_together_build_one_tensorrt_engine_in_turn_not_over_each_other(tmp_path):
    """ONNX Runtime's TensorRT provider writes the engine and timing cache files in place: four
    camera services started at boot on a cold cache each built the engine, wrote over the
    others' files while another read them, and a torn engine fails every later start. The
    session is made under a lock per model: the second process waits (said, naming the first)
    and then finds the engine written; another model's cache does not wait."""
    first = _hold_trt_cache(tmp_path / "trt", "a" * 64, tmp_path / "a", "hold")
    try:
        _appears(tmp_path / "a" / "in", first)
        other = _hold_trt_cache(tmp_path / "trt", "b" * 64, tmp_path / "b", "pass")
        assert other.wait(60) == 0, other.communicate()   # while the first still holds its own
        second = _hold_trt_cache(tmp_path / "trt", "a" * 64, tmp_path / "a2", "pass",
                                 holder=tmp_path / "a")
        said = _line_within(second.stderr)   # said before it waits
        # On a warm cache the holder only loads the engine: "building" said at every boot of
        # a camera box read as a cache that never kept its engine.
        assert (f"waiting for process {first.pid}, which is loading (on a cold cache, "
                "building) the TensorRT engine") in said
        assert str(tmp_path / "trt" / ("a" * 16)) in said
        (tmp_path / "a" / "go").touch()
        out, err = second.communicate(timeout=60)
        assert second.returncode == 0, err
        # it went in only once the first had finished
        assert (tmp_path / "a" / "released").exists() and "after the holder: True" in out
        assert first.wait(60) == 0
    finally:
        first.kill()


def test_a_cpu_run_neither_makes_nor_locks_the_tensorrt_cache(onnx_model, tmp_path, monkeypatch):
    """Only a session with the TensorRT provider takes the engine cache's lock: a CPU run (the
    CPU build, or --provider cpu or cuda on a GPU one) beside a camera whose engine is being
    built neither waits for it nor leaves a cache folder or lock file of its own."""
    monkeypatch.setenv("SHARPEN_TRT_CACHE", str(tmp_path / "trt"))
    with load_backend(onnx_model, providers="cpu") as b:
        assert b.provider == "CPUExecutionProvider"
    assert not (tmp_path / "trt").exists()


def test_sharpen_models_names_an_nchw_tflites_height_and_width_where_they_are(tmp_path):
    """A .tflite from another tool may take NCHW (the backend runs it, reading the layout from
    the input's shape); its lines called the channel count H, the height W, and said the
    file was NHWC with a 3xH size as loaded."""
    tf = pytest.importorskip("tensorflow", reason="tensorflow is needed to build a .tflite model")
    from runtime.backends.litert_backend import tflite_io_lines

    @tf.function(input_signature=[tf.TensorSpec([1, 3, None, None], tf.float32)])
    def nchw(x):
        return tf.nn.relu(x - 0.5)

    conv = tf.lite.TFLiteConverter.from_concrete_functions([nchw.get_concrete_function()], nchw)
    path = tmp_path / "nchw.tflite"
    path.write_bytes(conv.convert())
    inp, out = tflite_io_lines(path, {})[:2]   # then the ops
    assert "float32 [1, 3, H, W] NCHW RGB" in inp, inp
    assert "(any size, 1x1 as loaded" in inp, inp
    assert "[1, 3, H, W]" in out, out


def test_sharpen_models_lists_a_tflites_ops_for_a_delegate(tmp_path):
    """An app developer choosing a GPU delegate or an NPU checks that it supports every op of
    the graph (an op it lacks runs on the CPU); `sharpen models X.tflite` gave the tensors but
    not the ops, so the file went to Netron or TensorFlow's analyzer for that."""
    tf = pytest.importorskip("tensorflow", reason="tensorflow is needed to build a .tflite model")
    from runtime.backends.litert_backend import tflite_io_lines

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
    def model(x):
        return tf.nn.relu(x - 0.5) + tf.nn.relu(x - 0.25)

    conv = tf.lite.TFLiteConverter.from_concrete_functions([model.get_concrete_function()],
                                                           model)
    path = tmp_path / "m.tflite"
    path.write_bytes(conv.convert())
    lines = tflite_io_lines(path, {})
    assert lines[-1] == "  ops: ADD x1, SUB x2", lines   # the converter fuses each relu


def test_sharpen_models_lists_the_ops_inside_a_tflites_control_flow_too(tmp_path):
    """A graph with a loop keeps its body in a subgraph of its own: the interpreter's op list
    (the main graph's) said only `WHILE x1`, hiding the ADD, MUL and LESS that a delegate
    must also support."""
    tf = pytest.importorskip("tensorflow", reason="tensorflow is needed to build a .tflite model")
    from runtime.backends.litert_backend import tflite_io_lines

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    def model(x):
        return tf.while_loop(lambda i, x: i < 3, lambda i, x: (i + 1, x * 2.0 + 1.0),
                             [tf.constant(0), x])[1]

    conv = tf.lite.TFLiteConverter.from_concrete_functions([model.get_concrete_function()],
                                                           model)
    path = tmp_path / "loop.tflite"
    path.write_bytes(conv.convert())
    ops = tflite_io_lines(path, {})[-1]
    assert ops.startswith("  ops: ") and all(
        f"{op} x" in ops for op in ("ADD", "LESS", "MUL", "WHILE")), ops


def test_a_tflite_named_beyond_ascii_is_given_to_litert_as_bytes_on_windows(
        tflite_models, tmp_path, monkeypatch):
    """LiteRT opens a model_path with the C library's narrow-character calls, which on Windows
    take the ANSI code page: 'Straße 東京' cannot be spelled there. There the runtime reads
    the file itself and hands LiteRT its bytes (model_content); the engine is the real one,
    only watched for the keyword it gets."""
    import shutil
    import sys

    import runtime.backends.litert_backend as litert
    named = tmp_path / "Straße 東京" / "fast.tflite"
    named.parent.mkdir()
    shutil.copy(tflite_models[0], named)
    shutil.copy(f"{tflite_models[0]}.json", f"{named}.json")
    real, given = litert._interpreter_class(), []

    def watched(**kwargs):
        given.append(sorted(kwargs))
        return real(**kwargs)

    monkeypatch.setattr(litert, "_interpreter_class", lambda: watched)
    monkeypatch.setattr(sys, "platform", "win32")
    b = load_backend(named, threads=1)
    out = FrameProcessor(b)(textured_frame(5))
    assert given and all("model_content" in k and "model_path" not in k for k in given)
    monkeypatch.setattr(sys, "platform", "linux")
    ref = FrameProcessor(load_backend(tflite_models[0], threads=1))(textured_frame(5))
    assert np.array_equal(out, ref)
    assert "model_path" in given[-1]


@pytest.mark.parametrize("name,platform", [("Straße 東京/fast.tflite", "win32"),
                                           ("fast.tflite", "linux"), ("m.onnx", "linux")])
def test_an_empty_model_file_is_said_empty(tmp_path, monkeypatch, name, platform):
    # An export or copy cut short at 0 bytes: on Windows a .tflite named beyond ASCII, given
    # to LiteRT as its bytes, was refused as "`model_path` or `model_content` must be
    # specified", which the user never wrote; elsewhere LiteRT said "mmap of size 0
    # requested", ONNX Runtime "No graph was found in the protobuf".
    import sys
    empty = tmp_path / name
    empty.parent.mkdir(exist_ok=True)
    empty.write_bytes(b"")
    monkeypatch.setattr(sys, "platform", platform)
    with pytest.raises(ModelError) as e:
        load_backend(empty, threads=1)
    assert str(e.value) == f"{empty}: an empty file (0 bytes: an interrupted export or copy?)"
