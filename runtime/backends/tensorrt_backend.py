"""TensorRT engine backend (.engine / .plan), written against the TensorRT 10 Python API.

Engines are tied to the TensorRT version and the GPU they were built on, so the JSON sidecar
written at build time (tensorrt_version, the GPU's name, SM count and compute capability,
precision, profile) is checked before
deserialising: a mismatch otherwise shows up as an opaque deserialisation failure.

Device buffers and pinned host buffers are allocated once and only re-allocated when a frame
needs more room; copies and the launch go on one CUDA stream, synchronised once per frame.
"""
from __future__ import annotations

import ctypes
import hashlib
import re
import threading
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import numpy as np

from ..cli_errors import raise_if_interrupted
from ..options import option
from ..warn import warn
from .base import (DEFAULT_MULTIPLE, PARITY_KEY, Backend, ModelError,
                   exported_without_receptive_field, layout_hint, parse_multiple,
                   parse_receptive_field, read_sidecar, recorded_float_layers)

RUN_ONNX_INSTEAD = "or use the .onnx model"

# JetPack's apt package of TensorRT's Python bindings: in the default JetPack install, absent
# from a minimal L4T image or container (`nvidia-tensorrt` pulls it in too).
JETPACK_TRT = "python3-libnvinfer"

TRT_MISSING = ("TensorRT is not installed: on a Jetson it is JetPack's python3-libnvinfer "
               f"(`sudo apt install {JETPACK_TRT}`), for the system Python only (in a virtual "
               "environment, make it with --system-site-packages to see it); on x86 `pip "
               f"install 'tensorrt-cu12>=10,<11'`; the backend also needs cuda-python; "
               f"{RUN_ONNX_INSTEAD}")

# Where JetPack's (and Debian's) python3-libnvinfer puts the `tensorrt` package.
SYSTEM_SITE_GLOBS = ("/usr/lib/python3/dist-packages", "/usr/lib/python3.*/dist-packages")


def tensorrt_missing(error: Optional[BaseException] = None, instead: str = RUN_ONNX_INSTEAD,
                     site_globs: Optional[tuple[str, ...]] = None) -> str:
    """Why `import tensorrt` failed, as the user fixes it. The usual case on a Jetson is not a
    missing package but JetPack's bindings out of sight: a virtual environment made without
    --system-site-packages, or a Python other than the one they were built for (JetPack 6's
    are for 3.10), which the generic message would send to `apt install` in vain. `error`:
    the ImportError, said where the bindings are in sight (a library of theirs missing).
    `instead`, as `tensorrt_too_old` takes it: '' for none. `site_globs`: where to look
    (default SYSTEM_SITE_GLOBS)."""
    import glob
    import sys

    here = f"cpython-{sys.version_info[0]}{sys.version_info[1]}"
    path = {str(Path(p).resolve()) for p in sys.path if p}
    for pattern in SYSTEM_SITE_GLOBS if site_globs is None else site_globs:
        for site in sorted(glob.glob(pattern)):
            pkg = Path(site) / "tensorrt"
            if not (pkg / "__init__.py").is_file():
                continue
            tags = {m[1] for f in pkg.glob("*.so")
                    if (m := re.search(r"\.(cpython-\d+)", f.name))}
            # python3-libnvinfer's module is plain tensorrt.so: the Python it is built for
            # is its folder's (/usr/lib/python3.10/dist-packages).
            if not tags and (m := re.fullmatch(r"python(\d)\.(\d+)", Path(site).parent.name)):
                tags = {f"cpython-{m[1]}{m[2]}"}
            if tags and here not in tags:
                built = ", ".join("Python {}.{}".format(t[8], t[9:]) for t in sorted(tags))
                return (f"TensorRT is installed in {pkg} for {built}, but this is Python "
                        f"{sys.version_info[0]}.{sys.version_info[1]} ({sys.executable}): "
                        "run with the system python3 (a virtual environment made from it "
                        f"with --system-site-packages){'; ' + instead if instead else ''}")
            if str(Path(site).resolve()) not in path:
                return (f"TensorRT is installed in {pkg}, which this Python ({sys.executable}) "
                        "does not see: make its virtual environment with `python3 -m venv "
                        "--system-site-packages` (README \"On a Jetson\")"
                        f"{'; ' + instead if instead else ''}")
            if error is not None:
                return f"TensorRT in {pkg} cannot be imported: {error}"
    return TRT_MISSING


# cuda-python 13 links the CUDA 13 runtime, which a CUDA 12 driver (JetPack 6) refuses; 12 a
# CUDA 11 one (JetPack 5).
CUDA_PYTHON_HINT = ("pip install 'cuda-python>=12,<13' (its major version must match the "
                    "driver's CUDA: 12 on JetPack 6, 11 on JetPack 5, whose CUDA is 11.4: "
                    "'cuda-python>=11.4,<12'; `nvidia-smi` or `nvcc --version` shows it)")


_LOGGER: list = []


def shared_logger(trt: Any) -> Any:
    """One trt.Logger for every builder and runtime of the process: TensorRT keeps the first
    it is given and warns that "the logger passed into createInferRuntime differs" for an
    export that builds an engine and then loads it for its parity gate."""
    if not _LOGGER:
        _LOGGER.append(trt.Logger(trt.Logger.WARNING))
    return _LOGGER[0]


# The named-tensor API this backend runs engines with (num_io_tensors, get_tensor_name,
# set_input_shape, set_tensor_address, execute_async_v3, get_tensor_profile_shape) came with
# TensorRT 8.5 (JetPack 5.1); 8.4 and older (JetPack 4.6: 8.0, 4.6.1-4.6.6: 8.2) have only
# binding indices.
MIN_TENSORRT = (8, 5)



def tensorrt_too_old(version: str, instead: str = RUN_ONNX_INSTEAD) -> Optional[str]:
    """Why TensorRT `version` cannot run this backend's engines, or None. A version string
    without a leading major.minor passes: the API calls themselves then say what is missing.
    `instead`: what else to do, ending the message; '' for none (an export that skips the
    engine builds it on the device from the .onnx model, which running it is advised to use)."""
    m = re.match(r"(\d+)\.(\d+)", str(version))
    if not m or (int(m[1]), int(m[2])) >= MIN_TENSORRT:
        return None
    need = ".".join(map(str, MIN_TENSORRT))
    return (f"TensorRT {version} is too old: sharpen needs TensorRT {need} or newer (its "
            "named-tensor API: get_tensor_name, set_tensor_address, execute_async_v3); JetPack "
            f"5.1 ships 8.5 and JetPack 6.1 10.3{'; ' + instead if instead else ''}")


def _import_tensorrt() -> Any:
    try:
        import tensorrt as trt  # noqa: PLC0415 - optional, only present on GPU devices
    except ImportError as e:
        raise_if_interrupted(e)
        raise ModelError(tensorrt_missing(e)) from None
    except Exception as e:   # e.g. an OSError for a missing libnvinfer: a broken install
        raise ModelError(f"TensorRT cannot be imported: {type(e).__name__}: {e}") from None
    if why := tensorrt_too_old(trt.__version__):   # else an AttributeError mid-load
        raise ModelError(why)
    return trt


def _import_cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError as e:
        raise_if_interrupted(e)
        try:
            from cuda import cudart  # older cuda-python layout
        except ImportError as e2:
            raise_if_interrupted(e2)
            raise ModelError("the TensorRT backend needs cuda-python for GPU memory and streams: "
                             f"{CUDA_PYTHON_HINT}") from None
    return cudart


class _Cuda:
    """The handful of CUDA runtime calls the backend needs, with errors turned into exceptions."""

    def __init__(self) -> None:
        self.rt = _import_cudart()

    def call(self, result: Any) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if err != self.rt.cudaError_t.cudaSuccess:
            if "InsufficientDriver" in str(err):
                raise ModelError(f"CUDA error: {err}: this cuda-python is newer than the "
                                 f"driver's CUDA; {CUDA_PYTHON_HINT}")
            raise ModelError(f"CUDA error: {err}")
        return rest[0] if len(rest) == 1 else (rest or None)

    def gpu(self, device: int = 0) -> dict[str, Any]:
        """What an engine is tied to: the GPU's name, multiprocessor count and compute
        capability. The name alone is not enough: every Jetson Orin reports "Orin", an AGX with
        14-16 SMs as a Nano with 4-8, and TensorRT only warns when a plan moves between them."""
        props = self.call(self.rt.cudaGetDeviceProperties(device))
        name = props.name
        name = (name.decode(errors="replace") if isinstance(name, bytes) else str(name))
        return {"gpu_name": name.strip("\x00 "), "gpu_sms": int(props.multiProcessorCount),
                "gpu_compute": f"{props.major}.{props.minor}"}

    def gpu_name(self, device: int = 0) -> str:
        return self.gpu(device)["gpu_name"]


class _Buffer:
    """A pinned host buffer and a device buffer of the same byte size."""

    def __init__(self, cuda: _Cuda, nbytes: int, dtype: np.dtype) -> None:
        self.cuda, self.nbytes, self.dtype = cuda, nbytes, np.dtype(dtype)
        self.device = cuda.call(cuda.rt.cudaMalloc(nbytes))
        try:
            self.host_ptr = cuda.call(cuda.rt.cudaMallocHost(nbytes))
        except ModelError:   # out of pinned memory: the device half is not kept either
            cuda.rt.cudaFree(self.device)
            raise
        count = nbytes // self.dtype.itemsize
        ctype = ctypes.c_byte * nbytes
        raw = np.ctypeslib.as_array(ctype.from_address(int(self.host_ptr)))
        self.host = raw.view(self.dtype)[:count]

    def free(self) -> None:
        """Frees both halves once, and leaves the buffer empty: one freed to grow it, where the
        larger allocation then failed, is still the backend's (`_ensure`), and the next frame
        wrote into the freed pinned memory, and close() freed it again."""
        if self.device is None:
            return
        device, host = self.device, self.host_ptr
        self.device = self.host_ptr = None
        self.nbytes, self.host = 0, np.empty(0, self.dtype)
        self.cuda.rt.cudaFree(device)
        self.cuda.rt.cudaFreeHost(host)


GPU_KEYS = ("gpu_name", "gpu_sms", "gpu_compute")   # written by the export, checked here


def io_problem(name: str, type_name: str, is_float: bool, linear: bool,
               what: str) -> Optional[str]:
    """Why an engine's input or output tensor cannot go through this backend, or None. The
    backend hands over, and reads back, plain NCHW float arrays: the tensor must be float32 or
    float16 in TensorRT's LINEAR format. An engine that trtexec built with e.g.
    --inputIOFormats=int8:chw or fp16:hwc8 would otherwise be fed bytes of the wrong type or
    layout and return garbage without an error."""
    if not is_float:
        return (f"its {what} {name!r} is {type_name}, but this backend feeds and reads float32/"
                "float16 RGB in [0, 1]: build the engine with float I/O (the default; trtexec "
                "without an int8 --inputIOFormats/--outputIOFormats)")
    if not linear:
        return (f"its {what} {name!r} is in a vectorised TensorRT format, but this backend "
                "feeds and reads plain NCHW arrays: build the engine with linear I/O (the "
                "default; with trtexec --inputIOFormats/--outputIOFormats, the :chw format)")
    return None


def outside_profile(shape: tuple[int, ...], profile: str, flags: bool = False) -> str:
    """An input shape the engine's optimisation profile (`profile`, its range) does not cover,
    and the fixes: tiling named as a Python caller's keyword (FrameProcessor's and
    run_stream's `tile`), or with `flags` as sharpen run's flag."""
    return (f"input shape {shape} is outside the engine's optimisation profile ({profile}): "
            "rebuild it with a profile covering this size, or run with "
            f"{option('tile', flags=flags)}")


def _describe_gpu(info: Mapping[str, Any]) -> str:
    extra = [f"{info['gpu_sms']} SMs" if info.get("gpu_sms") is not None else "",
             f"compute {info['gpu_compute']}" if info.get("gpu_compute") else ""]
    extra = ", ".join(e for e in extra if e)
    return repr(str(info.get("gpu_name") or "?")) + (f" ({extra})" if extra else "")


def check_sidecar(meta: dict[str, Any], trt_version: str,
                  gpu: Union[None, str, Mapping[str, Any]], path: Path) -> None:
    """Refuse an engine built for another TensorRT version or GPU, with the fix in the message.
    `gpu`: this device's `_Cuda.gpu()` (or its name); what a sidecar lacks is not checked."""
    built_ver = meta.get("tensorrt_version")
    if built_ver and str(built_ver) != trt_version:
        raise ModelError(f"{path} was built with TensorRT {built_ver} but this device has "
                         f"{trt_version}: rebuild the engine on this device from the .onnx model")
    here = {"gpu_name": gpu} if isinstance(gpu, str) else dict(gpu or {})
    for key in GPU_KEYS:
        built = meta.get(key)
        if built is not None and here.get(key) is not None \
                and str(built).strip() != str(here[key]).strip():
            raise ModelError(f"{path} was built on GPU {_describe_gpu(meta)} but this device "
                             f"has {_describe_gpu(here)}: rebuild the engine on this device "
                             "from the .onnx model")


def unrecorded_engine(path: Path, meta: Mapping[str, Any]) -> Optional[str]:
    """Why an engine runs on guesses, or None: it has no sidecar (copied to the device without
    the one `sharpen export` wrote, or built by a trtexec line of one's own). An engine holds
    no size multiple: frames are padded to the default, at which `edge` fails, and the
    TensorRT version and GPU it was built for cannot be checked. Said as LiteRT says a
    .tflite's missing sidecar."""
    if meta:
        return None
    return (f"{path} has no sidecar {Path(path).name}.json (copy it along with the engine): "
            f"frames are padded to multiples of {DEFAULT_MULTIPLE}, at which a model that "
            "needs 32 (`edge`) fails, and the TensorRT version and GPU it was built for are "
            "not checked")


# In a sidecar that `sharpen export` wrote for the engine its printed trtexec line builds, over
# an engine of another build: that engine's sha256.
REPLACES_KEY = "replaces_sha256"


def replaced_problem(meta: Mapping[str, Any], engine: bytes, path: Path) -> Optional[str]:
    """Why the engine at `path` (its bytes) is not the one its sidecar describes, or None: the
    sidecar was written for the engine a trtexec line is to build, over this older engine of
    other weights, student or profile, which it names by hash. Loaded, the old engine ran as
    the new one (the sidecar's weights match the export), padded to the new size multiple."""
    old = meta.get(REPLACES_KEY)
    if old and hashlib.sha256(engine).hexdigest() == old:
        return (f"{path} is the engine of an earlier export, not the one its sidecar describes "
                "(`sharpen export` wrote that for the engine its printed trtexec line builds, "
                f"from {meta.get('source', 'the .onnx model')}): run that line on this device, "
                "or export the engine here")
    return None


class TensorRTBackend(Backend):
    name = "tensorrt"
    layout = "NCHW"

    def __init__(self, path: Union[str, Path], *, flags: bool = False, **_: Any) -> None:
        # flags: messages name `sharpen run`'s flags (--tile), not the keywords.
        self._flags = flags
        # One execution context and one pair of buffers: calls from several threads take turns.
        self._lock = threading.Lock()
        trt = _import_tensorrt()
        self.trt = trt
        self.cuda = _Cuda()
        path = Path(path)
        meta = read_sidecar(path)
        if why := unrecorded_engine(path, meta):
            warn(why)
        try:
            blob = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read engine {path}: {exc.strerror or exc}") from None
        why = replaced_problem(meta, blob, path)
        if why:
            raise ModelError(why)
        info = self.cuda.gpu()
        check_sidecar(meta, trt.__version__, info, path)
        gpu = info["gpu_name"]
        self.logger = shared_logger(trt)
        self.runtime = trt.Runtime(self.logger)
        engine = self.runtime.deserialize_cuda_engine(blob)
        if engine is None:
            raise ModelError(f"TensorRT could not deserialise {path}: not an engine, or built "
                             "with another TensorRT version or GPU; rebuild it on this device")
        self.engine = engine
        self.context = engine.create_execution_context()
        if self.context is None:   # typically GPU memory for the profile's largest shape
            raise ModelError(f"TensorRT could not create an execution context for {path} (out "
                             "of GPU memory?); rebuild it with a smaller --max-shape")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        ins = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(ins) != 1 or len(outs) != 1:   # execute_async_v3 needs every I/O tensor bound
            raise ModelError(f"{path}: expected one input and one output tensor, got {names}")
        self.input_name, self.output_name = ins[0], outs[0]
        self.in_dtype = self._io_dtype(path, self.input_name, "input")
        self.max_hw = self._profile_max()   # frames beyond it are tiled (prepost.beyond_whole)
        self.out_dtype = self._io_dtype(path, self.output_name, "output")
        self.stream = self.cuda.call(self.cuda.rt.cudaStreamCreate())
        self._in: Optional[_Buffer] = None
        self._out: Optional[_Buffer] = None
        self.multiple = parse_multiple(meta.get("multiple"), str(path))
        self.parity_failed = meta.get(PARITY_KEY) or None
        self.receptive_field = parse_receptive_field(meta.get("receptive_field"))
        self.receptive_field_unrecorded = exported_without_receptive_field(
            self.receptive_field, meta)
        self.source_sha256 = meta.get("source_sha256") or None
        self.precision = str(meta.get("precision", "unknown"))
        self.float_layers = tuple(recorded_float_layers(meta))
        self.provider = f"TensorRT {trt.__version__} on {gpu}"
        self.path = path

    def _io_dtype(self, path: Path, name: str, what: str) -> np.dtype:
        """The numpy dtype of an I/O tensor, refused unless it is linear float32/float16. Not
        trt.nptype: it raises for BF16/FP8, and TensorRT 8.5's (JetPack 5) builds its table
        with np.bool, which numpy 1.24-1.26 lacks, so it fails for every type there."""
        trt, engine = self.trt, self.engine
        dt = engine.get_tensor_dtype(name)
        np_dtype = {trt.DataType.FLOAT: np.float32, trt.DataType.HALF: np.float16}.get(dt)
        linear = engine.get_tensor_format(name) == trt.TensorFormat.LINEAR
        why = io_problem(name, str(dt), np_dtype is not None, linear, what)
        if why:
            raise ModelError(f"{path}: {why}")
        return np.dtype(np_dtype)

    def _ensure(self, buf: Optional[_Buffer], nbytes: int, dtype: np.dtype) -> _Buffer:
        # Grow only: a stream of same-sized frames never re-allocates.
        if buf is not None and buf.nbytes >= nbytes:
            return buf
        if buf is not None:
            buf.free()
        return _Buffer(self.cuda, nbytes, dtype)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=self.in_dtype)
        with self._lock:
            self.check_open()   # the context and buffers are None once closed
            return self._infer(batch)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        rt = self.cuda.rt
        # An NHWC batch (an app's own loop) would be called outside the optimisation profile,
        # with advice to rebuild the engine: say the layout, as the other backends do.
        hint = layout_hint(tuple(batch.shape), self.layout)
        if hint:
            raise ModelError(f"{self.path}: TensorRT cannot run input {list(batch.shape)}{hint}")
        if not self.context.set_input_shape(self.input_name, tuple(batch.shape)):
            raise ModelError(outside_profile(tuple(batch.shape), self._profile_range(),
                                             self._flags))
        out_shape = tuple(self.context.get_tensor_shape(self.output_name))
        out_bytes = int(np.prod(out_shape)) * self.out_dtype.itemsize
        self._in = self._ensure(self._in, batch.nbytes, self.in_dtype)
        self._out = self._ensure(self._out, out_bytes, self.out_dtype)
        self._in.host[:batch.size] = batch.ravel()
        c = self.cuda.call
        c(rt.cudaMemcpyAsync(self._in.device, self._in.host_ptr, batch.nbytes,
                             rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream))
        self.context.set_tensor_address(self.input_name, int(self._in.device))
        self.context.set_tensor_address(self.output_name, int(self._out.device))
        if not self.context.execute_async_v3(int(self.stream)):
            raise ModelError("TensorRT execution failed (see the TensorRT log above)")
        c(rt.cudaMemcpyAsync(self._out.host_ptr, self._out.device, out_bytes,
                             rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream))
        c(rt.cudaStreamSynchronize(self.stream))
        n = out_bytes // self.out_dtype.itemsize
        # Copy out of the pinned buffer: the next frame overwrites it while this one is post-processed.
        return self._out.host[:n].reshape(out_shape).astype(np.float32, copy=True)

    def _profile_max(self) -> Optional[tuple[int, int]]:
        """The largest height and width profile 0 takes (get_tensor_profile_shape's max,
        TensorRT 8.5+), or None where TensorRT does not say."""
        try:
            hi = self.engine.get_tensor_profile_shape(self.input_name, 0)[2]
            return int(hi[2]), int(hi[3])
        except Exception:   # noqa: BLE001 - then TensorRT refuses a frame beyond it, by name
            return None

    def _profile_range(self) -> str:
        try:   # [min, opt, max] of profile 0 (TensorRT 8.5+)
            lo, _, hi = self.engine.get_tensor_profile_shape(self.input_name, 0)
            return f"{'x'.join(map(str, lo))} to {'x'.join(map(str, hi))}"
        except Exception:
            return "see the engine's sidecar"

    def close(self) -> None:
        with self._lock:
            super().close()
            for buf in (self._in, self._out):
                if buf is not None:
                    buf.free()
            self._in = self._out = None
            if getattr(self, "stream", None) is not None:
                self.cuda.rt.cudaStreamDestroy(self.stream)
                self.stream = None
            # The context holds activation memory for the profile's largest shape: free it
            # now, not at garbage collection.
            self.context = self.engine = None
