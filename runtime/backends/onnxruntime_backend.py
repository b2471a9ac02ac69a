"""ONNX Runtime backend: the default on every device (CPU build, or onnxruntime-gpu on CUDA)."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
from pathlib import Path
from typing import ContextManager, Optional, Sequence, Union

import numpy as np

from ..cli_errors import raise_if_interrupted
from ..console import brief, first_line, onnxruntime_telemetry_off, quiet_native_stderr
from ..host import check_threads, default_threads
from ..options import option
from ..prepost import FrameError
from ..tiling import round_up
from .base import (PARITY_KEY, Backend, ModelError, exported_without_receptive_field,
                   layout_hint, parse_multiple,
                   parse_receptive_field, read_sidecar, recorded_float_layers)
from .foreign import io_shape, read_contract, run_in_contract, size_hint
from .sniff import load_hint
from ..warn import warn

# Preference order for "auto": fastest first. Only providers this onnxruntime build offers are
# used; ORT itself falls back to the next one when a provider cannot take a node.
_AUTO_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}
# Op types that only appear in quantised graphs (QDQ format or QOperator format).
_INT8_OPS = (b"QuantizeLinear", b"DequantizeLinear", b"QLinearConv", b"ConvInteger",
             b"MatMulInteger", b"QLinearMatMul")

ProviderSpec = Union[None, str, Sequence[str]]

# ONNX Runtime 1.32's 1DS telemetry keeps a device ID under $XDG_CACHE_HOME or ~/.cache and,
# where it cannot (a container: HOME unset or read-only), says so in yellow on fd 2 while it is
# imported, on every start: it reads as a failure of the run, and nothing of ours needs that
# folder. The run turns the telemetry off (onnxruntime_telemetry_off); where a user kept it on
# (ORT_DISABLE_TELEMETRY=0), or imported onnxruntime before, only that line is hidden.
ORT_IMPORT_NOISE = re.compile(r".*\[W:onnxruntime:[^\]]*telemetry[^\]]*\] Failed to persist "
                              r"telemetry device ID")


# Providers every onnxruntime build has; a GPU build (onnxruntime-gpu, JetPack's) offers more.
_BASE_PROVIDERS = {"CPUExecutionProvider", "AzureExecutionProvider"}


# Cached: the scan reads every installed package's metadata (a quarter of a second here) and
# every model load on a CPU-only build asked it again.
@functools.lru_cache(maxsize=1)
def installed_builds() -> tuple[tuple[str, str, Path], ...]:
    """The installed distributions that provide the `onnxruntime` module (onnxruntime,
    onnxruntime-gpu, -directml, -openvino ...): (name, version, site folder), in sys.path order.
    They are different pip names for one folder, so pip installs one next to another."""
    from importlib import metadata

    found, seen = [], set()
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if not name.startswith(("onnxruntime", "ort-")) or name in seen:
            continue
        top = (dist.read_text("top_level.txt") or "").split()
        if "onnxruntime" in top or any(f.parts[:2] == ("onnxruntime", "__init__.py")
                                       for f in dist.files or ()):
            seen.add(name)
            found.append((name, dist.version, Path(dist.locate_file(""))))
    return tuple(found)


def hidden_build(available: Sequence[str]) -> Optional[str]:
    """Why this onnxruntime offers only the CPU although a GPU build is installed: the CPU build
    (what the `runtime` extra installs) overwrote its files or comes first on sys.path. None
    when this build has GPU providers or no other build is installed."""
    if set(available) - _BASE_PROVIDERS:
        return None
    builds = installed_builds()
    gpu = [b for b in builds if b[0] != "onnxruntime"]
    cpu = [b for b in builds if b[0] == "onnxruntime"]
    if not gpu or not cpu:
        return None
    names = " ".join(b[0] for b in gpu)
    said = ", ".join(f"{n} {v}" for n, v, _ in gpu)
    if any(b[2] == cpu[0][2] for b in gpu):   # one folder: the CPU build's files won
        fix = (f"pip uninstall -y onnxruntime {names}, then install {gpu[0][0]} again "
               "(uninstalling one alone leaves neither working)")
    else:                                       # two folders: the CPU build comes first
        fix = f"pip uninstall onnxruntime (in {cpu[0][2]})"
    return (f"the CPU build onnxruntime {cpu[0][1]}, which the 'runtime' extra installs, hides "
            f"{said}, which provides the same `onnxruntime` module; keep the GPU build alone: "
            f"{fix}")


# pip's onnxruntime-gpu is built for x86 (and Windows) only: on a Jetson the advice to install
# it ended in "no matching distribution".
GPU_BUILD_HINT = ("install onnxruntime-gpu on a CUDA machine, never next to onnxruntime; on a "
                  "Jetson, where pip has none, NVIDIA's onnxruntime-gpu wheel for its JetPack")
# TensorRT without ONNX Runtime's GPU build: the engine the runtime runs itself.
ENGINE_HINT = "; or build a TensorRT engine (sharpen export --formats engine) and run the .engine"


def resolve_providers(spec: ProviderSpec, available: Sequence[str],
                      hidden: Optional[str] = None) -> list[str]:
    """Turn `auto` / `cpu` / `cuda` / `tensorrt` (or full provider names) into the ordered list
    handed to InferenceSession. CPU is always appended as the last resort. `hidden`: why a GPU
    build that is installed is not the one loaded (hidden_build), said instead of the hint."""
    if spec is None or spec == "auto" or spec == ["auto"]:
        chosen = [p for p in _AUTO_ORDER if p in available]
        return chosen or ["CPUExecutionProvider"]
    names = [spec] if isinstance(spec, str) else list(spec)
    chosen = []
    for n in names:
        full = _ALIASES.get(n.lower(), n)
        if full not in available:
            hint = ("" if full == "CPUExecutionProvider" else f": {hidden}" if hidden else
                    f" ({GPU_BUILD_HINT}{ENGINE_HINT if full == _ALIASES['tensorrt'] else ''})")
            raise ModelError(f"ONNX Runtime provider {n!r} is not available in this build; "
                             f"available: {', '.join(available)}{hint}")
        chosen.append(full)
    # TensorRT takes whole subgraphs; what it cannot take runs on CUDA before it falls to CPU.
    if ("TensorrtExecutionProvider" in chosen and "CUDAExecutionProvider" in available
            and "CUDAExecutionProvider" not in chosen):
        chosen.insert(chosen.index("TensorrtExecutionProvider") + 1, "CUDAExecutionProvider")
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def detect_precision(model_bytes: bytes, input_type: str, metadata: dict[str, str]) -> str:
    """int8 if the graph holds quantisation ops, else fp16/fp32 from the input type.

    The graph is scanned as raw protobuf bytes (op types are stored as plain strings) because
    the `onnx` package is not part of the device install.
    """
    declared = metadata.get("precision")
    if declared:
        return declared
    if any(op in model_bytes for op in _INT8_OPS):
        return "int8"
    return "fp16" if "float16" in input_type else "fp32"


# Frames the TensorRT provider's engine covers (padded to the model's multiple): its optimisation
# profile spans one multiple to 4K and is tuned for 1080p. Without an explicit profile ONNX
# Runtime rebuilds the engine (minutes on a Jetson) whenever a larger frame arrives.
TRT_OPT_HW = (1080, 1920)
TRT_MAX_HW = (2160, 3840)


# TensorRT's shared library, as ONNX Runtime's TensorRT provider loads it (10.x, 8.x; Windows).
NVINFER_LIBRARIES = ("libnvinfer.so.10", "libnvinfer.so.8", "libnvinfer.so", "nvinfer_10.dll",
                     "nvinfer.dll")


@functools.lru_cache(maxsize=1)
def nvinfer_version() -> Optional[str]:
    """The TensorRT library the TensorRT provider runs on, as its getInferLibVersion() number
    (100300 for 10.3.0, 8602 for 8.6.2), else the Python bindings' version, else None. The
    library, not the bindings: on a Jetson ONNX Runtime loads JetPack's libnvinfer whether or
    not python3-libnvinfer is installed."""
    import ctypes

    for name in NVINFER_LIBRARIES:
        try:
            return str(int(ctypes.CDLL(name).getInferLibVersion()))
        except (OSError, AttributeError):
            continue
    from ..host import library_versions
    return library_versions(["tensorrt"])["tensorrt"]


_DETECT = "detect"


def trt_provider_options(cache_root: Optional[Path], digest: str, input_name: str,
                         multiple: int, int8: bool, *, layout: str = "NCHW",
                         fixed_hw: Optional[tuple[int, int]] = None,
                         trt_version: Optional[str] = _DETECT) -> dict[str, str]:
    """Options of ONNX Runtime's TensorRT provider for one model. Engines and timing caches go
    to a folder of this model's bytes: ORT names cached engines after the graph and its names,
    not the weights, so a re-exported model under the same name would run the old engine.
    The folder is also the TensorRT version's (`trt_version`, default nvinfer_version(); None:
    unknown, the model's hash alone): ORT names an engine after the GPU's compute capability,
    its own version and the TensorRT major.minor it was compiled with, not the libnvinfer it
    loads, so after a TensorRT upgrade under the same onnxruntime-gpu (pip's tensorrt, or
    JetPack's libnvinfer by apt) it found the old engine and failed with "could not
    deserialize engine from cache".
    cache_root None: trt_cache_root()'s. layout and fixed_hw: a foreign model's
    (runtime.backends.foreign), which its profile of input shapes follows."""
    if trt_version == _DETECT:
        trt_version = nvinfer_version()
    tag = f"-trt{re.sub(r'[^0-9A-Za-z.]+', '_', trt_version)}" if trt_version else ""
    m = max(int(multiple), 1)

    def shape(hw: tuple[int, int], exact: bool = False) -> str:
        h, w = hw if exact else (round_up(hw[0], m), round_up(hw[1], m))
        return f"{input_name}:" + (f"1x{h}x{w}x3" if layout == "NHWC" else f"1x3x{h}x{w}")

    if fixed_hw:   # tiles of the one size it takes
        opts = {f"trt_profile_{k}_shapes": shape(fixed_hw, True) for k in ("min", "opt", "max")}
    else:
        opts = {"trt_profile_min_shapes": shape((m, m)),
                "trt_profile_opt_shapes": shape(TRT_OPT_HW),
                "trt_profile_max_shapes": shape(TRT_MAX_HW)}
    if int8:
        opts["trt_int8_enable"] = "True"   # QDQ scales come from the model, no calibration table
    try:
        cache = (cache_root or trt_cache_root()) / f"{digest[:16]}{tag}"
    except OSError as exc:   # no home at all (a container's user without one)
        problem = str(exc)
    else:
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            problem = f"cannot make {cache} ({exc.strerror or exc})"
        else:
            opts.update({"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache),
                         "trt_timing_cache_enable": "True", "trt_timing_cache_path": str(cache)})
            return opts
    # It still runs, but builds the engine again at every start (minutes on a Jetson), which
    # a container's read-only or missing home made happen without a word.
    warn(f"TensorRT's engine cannot be cached: {problem}; every start builds it again "
         "(minutes on a Jetson): set SHARPEN_TRT_CACHE to a folder that can be written (in a "
         "container, a volume)")
    return opts


def trt_cache_held(opts: dict[str, str]) -> ContextManager[None]:
    """The lock of the engine cache folder that `opts` (trt_provider_options') name, held
    while the session is made: ONNX Runtime's TensorRT provider builds the engine then and
    writes it and the timing cache in place, so processes started together on a cold cache
    (a camera service each, at boot) built it at once and wrote over the files another was
    reading; a torn engine then fails every start. The others wait for the first and load
    its engine. A warm cache's starts take turns too (whether ORT will build is not known
    before it runs), and are told the holder is loading. No lock where nothing is cached."""
    cache = opts.get("trt_engine_cache_path")
    if not cache:
        return contextlib.nullcontext()
    from ..cache import cache_lock

    return cache_lock(Path(cache), warn, "loading (on a cold cache, building) the TensorRT "
                      "engine")


def trt_cache_root() -> Path:
    """SHARPEN_TRT_CACHE, else sharpen/trt in the user's cache folder; OSError where there is
    no such folder (runtime.cache.cache_dir)."""
    from ..cache import cache_dir

    return Path(os.environ.get("SHARPEN_TRT_CACHE") or cache_dir("trt"))


def trt_int8_refusal(path: Path, flags: bool = False) -> str:
    """Why the TensorRT provider asked for by name cannot run an asymmetric INT8 model, and what
    to use instead: the CUDA provider as a Python caller names it (its value: the keyword is
    load_backend's `providers`, run_stream's `provider`), or with `flags` sharpen run's flag."""
    cuda = option("provider", "cuda", True) if flags else "provider 'cuda'"
    return (f"{path} is an ONNX Runtime INT8 model (uint8 activations with zero points), which "
            "TensorRT cannot build: use the onnx-qdq-trt export (_qdq_trt.onnx) or an engine "
            f"with TensorRT, or {cuda}")


def asymmetric_int8(metadata: dict[str, str]) -> bool:
    """An ONNX Runtime INT8 export (uint8 activations with zero points): TensorRT takes only
    symmetric quantisation, so the TensorRT provider cannot build it (the `onnx-qdq-trt` format
    is the TensorRT one)."""
    return metadata.get("activations", "").startswith("uint8")


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    layout = "NCHW"

    def __init__(self, path: Union[str, Path], threads: Optional[int] = None,
                 providers: ProviderSpec = "auto", *, flags: bool = False) -> None:
        """flags: messages name `sharpen run`'s flags (--provider), not the keywords."""
        check_threads(threads)
        try:
            onnxruntime_telemetry_off()   # run_stream() from Python too
            with quiet_native_stderr(ORT_IMPORT_NOISE):
                import onnxruntime as ort
        except ImportError as e:
            raise_if_interrupted(e)   # a Ctrl-C while it loads is not a missing package
            raise ModelError("ONNX Runtime is not installed: `pip install onnxruntime` "
                             "(or onnxruntime-gpu on a CUDA machine)") from None
        if not hasattr(ort, "InferenceSession"):
            # An `onnxruntime` folder without its __init__.py imports as an empty namespace
            # package: two builds (onnxruntime, onnxruntime-gpu) shared the folder and one was
            # uninstalled, deleting the files they shared; pip still lists the other.
            where = ", ".join(getattr(ort, "__path__", [])) or "?"
            raise ModelError(f"ONNX Runtime is broken here: {where} holds only part of it (two "
                             "builds, e.g. onnxruntime and onnxruntime-gpu, were installed and one "
                             "was uninstalled, which deletes the files they share); reinstall "
                             "the one you keep: pip install --force-reinstall --no-deps "
                             "onnxruntime (or onnxruntime-gpu)")
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read model {path}: {exc.strerror or exc}") from None
        available = ort.get_available_providers()
        hidden = hidden_build(available)
        chosen = resolve_providers(providers, available, hidden)
        if hidden and providers in (None, "auto", ["auto"]):   # auto: it would go unsaid
            warn(f"running on the CPU: {hidden}")
        trt = "TensorrtExecutionProvider"
        provider_opts: dict[str, dict[str, str]] = {}
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if trt in chosen:
            meta, input_name, peeked = _peek(ort, path)
            sidecar = read_sidecar(path)
            told = read_contract(path, meta, sidecar, peeked)
            int8 = detect_precision(data, "", meta) == "int8"
            if int8 and asymmetric_int8(meta):
                if providers not in (None, "auto", ["auto"]):
                    raise ModelError(trt_int8_refusal(path, flags))
                chosen.remove(trt)
            else:
                provider_opts[trt] = trt_provider_options(
                    None, hashlib.sha256(data).hexdigest(), input_name,
                    _multiple(meta, sidecar, path), int8,
                    layout=told.layout, fixed_hw=told.fixed_hw)
                if int8:   # ORT's own QDQ fusions can leave graphs TensorRT does not build
                    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        threads = default_threads(threads)   # else MKL_/OMP_NUM_THREADS's
        if threads:
            opts.intra_op_num_threads = int(threads)
        # ORT's pool threads busy-wait between runs by default, on cores that the stream's
        # decode and encode threads (and the device's other work) need: on a 2-core host the
        # pipeline ran `fast` at 360p at 6-9 fps on both cores spinning, 14-18 without, 11-16
        # on one thread (a host loaded by other work too, as a device often is).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3  # ORT warns about every node it puts on CPU; too noisy live.
        # The memory pattern pre-plans one block per input shape that keeps every intermediate
        # tensor: at 1080p that block is several times the live set (README: peak memory), and
        # turning it off costs no measurable latency on CPU.
        opts.enable_mem_pattern = False
        try:
            # Loading from the path (not the bytes) keeps external-data models working.
            with trt_cache_held(provider_opts.get(trt, {})):
                self.session = ort.InferenceSession(
                    str(path), sess_options=opts,
                    providers=[(p, provider_opts.get(p, {})) for p in chosen])
        except Exception as exc:  # ORT raises its own exception types, one per failure kind
            hint = load_hint(path, "onnxruntime", str(exc))
            raise ModelError(f"cannot load {path} with ONNX Runtime ({hint}): "
                             f"{first_line(exc)}") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            given = ", ".join(f"{a.name!r} {io_shape(a.shape)}" for a in inputs) or "none"
            raise ModelError(f"{path}: expected one image input and at least one output, got "
                             f"inputs {given} and {len(outputs)} outputs (a model that takes "
                             "more, such as a noise level, is not supported)")
        self.input_name = inputs[0].name
        self.output_name = outputs[0].name
        shape = inputs[0].shape
        self.input_dtype = np.float16 if "float16" in inputs[0].type else np.float32
        meta = dict(self.session.get_modelmeta().custom_metadata_map or {})
        sidecar = read_sidecar(path)
        self.contract = read_contract(path, meta, sidecar, shape, [o.name for o in outputs])
        self.output_name = self.contract.output_name
        self.layout = self.contract.layout
        channels = shape[3 if self.layout == "NHWC" else 1] if len(shape) == 4 else None
        if len(shape) != 4 or (isinstance(channels, int) and channels != 3):
            want = "[N,H,W,3]" if self.layout == "NHWC" else "[N,3,H,W]"
            raise ModelError(f"{path}: expected an {self.layout} RGB input {want}, got {shape}")
        if self.contract.note:
            warn(self.contract.note)
        self.multiple = _multiple(meta, sidecar, path)
        self.parity_failed = meta.get(PARITY_KEY) or sidecar.get(PARITY_KEY) or None
        self.receptive_field = parse_receptive_field(
            meta.get("receptive_field") or sidecar.get("receptive_field"))
        self.receptive_field_unrecorded = exported_without_receptive_field(
            self.receptive_field, meta, sidecar)
        self.source_sha256 = meta.get("source_sha256") or sidecar.get("source_sha256") or None
        self.precision = detect_precision(data, inputs[0].type, meta)
        self.float_layers = tuple(recorded_float_layers(meta) or recorded_float_layers(sidecar))
        self.provider = self.session.get_providers()[0]
        self.threads = int(threads or 0)   # 0: ONNX Runtime's default (a thread per core)
        self.path = path
        # A failing run is raised as a ModelError that says what ORT said, and what it was
        # given; ORT's own log line of it ([E:onnxruntime:...] ExecuteKernel) came first, a
        # second error in other words. Runs log fatal errors only; the session's level stays.
        self._run_options = ort.RunOptions()
        self._run_options.log_severity_level = 4

    def infer(self, batch: np.ndarray) -> np.ndarray:
        # Read before the check: a close() from another thread after it then leaves this call
        # its session, not a None to run.
        session = self.session
        self.check_open()
        if self.contract.plain and batch.dtype != self.input_dtype:
            batch = batch.astype(self.input_dtype)
        try:
            out = run_in_contract(
                self.contract, batch,
                lambda x: session.run([self.output_name], {self.input_name: x},
                                      self._run_options)[0], self.input_dtype)
        except (ModelError, FrameError):   # said already (a fixed-size model's tile)
            raise
        except Exception as exc:  # ORT's own exception types; TensorRT builds fail here too
            off = layout_hint(batch.shape, self.layout)
            hw = batch.shape[1:3] if self.layout == "NHWC" else batch.shape[2:]
            if not off and any(n % self.multiple for n in hw):
                off = f" (H and W must be multiples of {self.multiple}; FrameProcessor pads)"
            why = size_hint(self.path, self.multiple) if self.contract.foreign else ""
            raise ModelError(f"{self.path} failed on a {tuple(batch.shape)} {batch.dtype} "
                             f"input{off} with {self.provider}: {brief(exc)}{why}") from None
        return out if out.dtype == np.float32 else out.astype(np.float32)

    def describe(self) -> dict:
        # A foreign model's stats say what it was taken to take: a wrong guess shows only
        # in the pictures.
        d = super().describe()
        return {**d, "foreign": self.contract.record()} if self.contract.foreign else d

    def close(self) -> None:
        # The session keeps its memory arena while anything refers to the backend (a
        # FrameProcessor, the name of a `with` block): freed now, as close says.
        super().close()
        self.session = None


def _multiple(meta: dict[str, str], sidecar: dict, path: Path) -> int:
    """The size multiple H and W are padded to: the export's, else a sidecar's (a foreign
    UNet's 16), for the session and for a TensorRT profile's smallest shape alike."""
    return parse_multiple(meta.get("multiple", sidecar.get("multiple")), str(path))


def onnx_metadata(path: Union[str, Path]) -> dict[str, str]:
    """The metadata_props of an .onnx as ONNX Runtime reads them (`sharpen models FILE` on a
    device, which has no onnx package); ModelError where it cannot load the file."""
    import onnxruntime as ort
    return _peek(ort, Path(path))[0]


def _peek(ort, path: Path) -> tuple[dict[str, str], str, list]:
    """Metadata, input name and input shape of a model, from an unoptimised CPU session: the
    TensorRT provider's options (profile, INT8) need them before its own session is made."""
    o = ort.SessionOptions()
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    o.log_severity_level = 3
    try:
        s = ort.InferenceSession(str(path), sess_options=o, providers=["CPUExecutionProvider"])
    except Exception as exc:
        hint = load_hint(path, "onnxruntime", str(exc))
        raise ModelError(f"cannot load {path} with ONNX Runtime ({hint}): "
                         f"{first_line(exc)}") from None
    inputs = s.get_inputs()
    return (dict(s.get_modelmeta().custom_metadata_map or {}),
            inputs[0].name if inputs else "input", inputs[0].shape if inputs else [])
