"""TensorRT engines from the exported ONNX models (TensorRT Python API, 8.5 to 10.x).

- `engine` (FP16): the FP32 ONNX model with BuilderFlag.FP16.
- `engine-int8`: the ModelOpt QDQ model (explicit quantisation) with INT8 + FP16 flags; the Q/DQ
  scales come from the ONNX graph, so no TensorRT calibrator is involved.

One optimisation profile on "input" covers min/opt/max shapes (default opt 1x3x1080x1920,
rounded up to the model's size multiple, e.g. 1088x1920 for a multiple of 16, as the runtime pads),
the workspace pool is limited, and a timing cache file in the output folder is reused between
builds. The engine is written with a sidecar `<file>.engine.json` (tensorrt_version, gpu_name,
gpu_sms, gpu_compute, precision, profile, multiple) that the runtime checks before deserialising: engines only load
on the TensorRT version and GPU they were built with.

TensorRT is imported lazily. Without it (or without an NVIDIA GPU, or cuda-python, which the
runtime backend needs) `availability()` says so, and `trtexec_command()` gives the equivalent
command line to run on the target device (Jetson: trtexec ships with JetPack in
/usr/src/tensorrt/bin); export then writes the engine's sidecar ahead of it, so that an engine
built by that line gets the model's size multiple and profile. TensorRT 11 removed the
precision builder flags (strongly typed networks only): it is refused with that reason.
"""
from __future__ import annotations

import os
import shlex
import warnings
from dataclasses import dataclass
from pathlib import Path

from runtime.atomic import atomic_write_bytes, atomic_write_json
from runtime.backends.base import ModelError, read_sidecar
from runtime.cli_errors import raise_if_interrupted
from runtime.backends.tensorrt_backend import REPLACES_KEY, shared_logger, tensorrt_too_old
from runtime.tiling import round_up
from runtime.console import first_line
from runtime.warn import SharpenWarning, warn

DEFAULT_OPT = (1080, 1920)
DEFAULT_MIN = (64, 64)
DEFAULT_MAX = (2160, 3840)
DEFAULT_WORKSPACE_GB = 4.0


def parse_hw(text: str, name: str = "shape") -> tuple[int, int]:
    """'1080x1920' -> (1080, 1920) (height x width). `name`: the option, for the message."""
    try:
        h, w = (int(v) for v in str(text).lower().replace("*", "x").split("x"))
    except ValueError:
        raise ValueError(f"{name} {text!r} must be HEIGHTxWIDTH, e.g. 1080x1920") from None
    if h < 1 or w < 1:
        raise ValueError(f"{name} {text!r} must be positive")
    return h, w


def as_hw(value: "str | tuple[int, int]", name: str = "shape") -> tuple[int, int]:
    """A profile shape as export() takes it, 'HxW' or (h, w), as whole pixels. A tuple was
    used as given: (64,) failed with an IndexError, (0, 10) gave a profile of 0-pixel frames
    and (1080.5, 1920) a sidecar whose profile the trtexec line (1080) did not build."""
    if isinstance(value, str):
        return parse_hw(value, name)
    from runtime.options import is_number

    try:
        h, w = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} {value!r} must be HEIGHTxWIDTH, e.g. '1080x1920' or "
                         "(1080, 1920)") from None
    if not (is_number(h) and is_number(w)):
        raise ValueError(f"{name} {value!r} must be whole numbers of pixels")
    if h < 1 or w < 1:
        raise ValueError(f"{name} {value!r} must be positive")
    return int(h), int(w)


@dataclass(frozen=True)
class Profile:
    """Min/opt/max input shapes (N, 3, H, W) for the optimisation profile on "input"."""

    min: tuple[int, int, int, int]
    opt: tuple[int, int, int, int]
    max: tuple[int, int, int, int]

    @classmethod
    def from_hw(cls, min_hw=DEFAULT_MIN, opt_hw=DEFAULT_OPT, max_hw=DEFAULT_MAX,
                multiple: int = 8, batch: int = 1,
                names: tuple[str, str, str] = ("--min-shape", "--opt-shape", "--max-shape")
                ) -> "Profile":
        """`opt_hw` None: the default 1080x1920, brought within [min_hw, max_hw] (a
        --max-shape below 1080p alone is a complete request, not a contradiction). `names`:
        the three options as the caller gave them (export()'s keywords)."""
        if opt_hw is None:
            opt_hw = tuple(min(max(d, lo), hi) for d, lo, hi in zip(DEFAULT_OPT, min_hw, max_hw))
        given = (min_hw, opt_hw, max_hw)
        # Rounding up to the multiple keeps the order, so the shapes as given are compared and
        # said: the rounded ones, "rounded up" where nothing was, were not what the user wrote.
        for i, j in ((0, 2), (0, 1), (1, 2)):   # min vs max first: opt may be a default
            a, b = given[i], given[j]
            if a[0] > b[0] or a[1] > b[1]:
                raise ValueError(f"engine profile: {names[i]} {a[0]}x{a[1]} is larger than "
                                 f"{names[j]} {b[0]}x{b[1]} in height or width")
        return cls(*[(batch, 3, round_up(h, multiple), round_up(w, multiple))
                     for h, w in given])

    def to_dict(self) -> dict:
        return {"input": "input", "min": list(self.min), "opt": list(self.opt),
                "max": list(self.max)}

    @staticmethod
    def fmt(shape) -> str:
        return "x".join(str(int(v)) for v in shape)


# From 8.5: the export loads each engine through the runtime backend for its parity gate,
# whose named-tensor API 8.5 introduced (`tensorrt_too_old`); the builder's own calls
# (build_serialized_network, set_memory_pool_limit) need 8.4.
SUPPORTED = "TensorRT 8.5-10.x"


# The newest ONNX opset TensorRT 8.x's parser covers (onnx-tensorrt release/8.5-GA and
# release/8.6 docs/operators.md: "TensorRT 8.5 (8.6) supports operators up to Opset 17");
# 10.x's covers torch's newest TorchScript opset (20).
PARSER_MAX_OPSET_8X = 17


def supported_for(precision: str, opset: int | None = None) -> str:
    """The TensorRT versions that build the engine of this precision from an ONNX model of
    this opset, for the line that tells the user where to run trtexec: the INT8 one needs 10.x
    (`int8_problem`), and so does an FP16 one exported with --opset above 17."""
    if precision == "int8" or (opset or 0) > PARSER_MAX_OPSET_8X:
        return "TensorRT 10.x"
    return SUPPORTED


INSTALL_HINT = ("it ships with JetPack on Jetson, as python3-libnvinfer for the system Python "
                "(`sudo apt install python3-libnvinfer`), and installs with `pip install "
                "'tensorrt-cu12>=10,<11'` on x86 machines with an NVIDIA GPU")


def availability() -> str | None:
    """None when an engine can be built (and checked by the runtime backend) here, else why."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise_if_interrupted(e)
        # JetPack's bindings out of this Python's sight (a venv without the system packages,
        # another Python version) are said as such: installing them again changes nothing.
        from runtime.backends.tensorrt_backend import TRT_MISSING, tensorrt_missing
        why = tensorrt_missing(e, instead="")
        return why if why != TRT_MISSING else f"TensorRT is not installed ({INSTALL_HINT})"
    except Exception as e:
        return f"TensorRT cannot be imported: {type(e).__name__}: {e}"
    unsupported = version_problem(trt)
    if unsupported:
        return unsupported
    from runtime.backends.tensorrt_backend import _Cuda
    try:
        _Cuda().gpu_name()   # no cuda-python, a driver too old for it, or no GPU: each says so
    except ModelError as e:
        return f"{e} (TensorRT engines are built on the GPU they run on)"
    return None


def version_problem(trt) -> str | None:
    """Why this TensorRT cannot build the project's engines, or None."""
    # A skip reason: the engine is then built on the device, so no advice to run the .onnx.
    if too_old := tensorrt_too_old(trt.__version__, instead=""):
        return too_old
    if not hasattr(trt.BuilderFlag, "FP16"):
        return (f"TensorRT {trt.__version__} builds strongly typed networks only (11.x removed "
                f"the FP16/INT8 builder flags); this exporter supports {SUPPORTED}: "
                "pip install 'tensorrt-cu12>=10,<11'")
    return None


def int8_problem(trt) -> str | None:
    """Why this TensorRT cannot build the INT8 engine, or None: it is built from ModelOpt's QDQ
    model, which ModelOpt writes at ONNX opset 19, and TensorRT 8.x parses opsets up to 17."""
    major = int(str(trt.__version__).split(".")[0])
    if major < 10:
        return (f"the INT8 engine needs TensorRT 10.x (ModelOpt writes its QDQ model at ONNX "
                f"opset 19; TensorRT {trt.__version__} parses opsets up to 17); the FP16 engine "
                "builds with it")
    return None


def int8_availability() -> str | None:
    """None when the INT8 engine can be built here, else why."""
    reason = availability()
    if reason:
        return reason
    import tensorrt as trt

    return int8_problem(trt)


def network_flags(trt) -> int:
    """create_network flags: explicit batch, which the ONNX parser needs before TensorRT 10
    (where it is the only mode and the flag is deprecated)."""
    explicit = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    if explicit is not None and int(trt.__version__.split(".")[0]) < 10:
        return 1 << int(explicit)
    return 0


def gpu_identity() -> dict:
    """GPU 0 as the runtime backend reads it (cuda-python: name, SMs, compute capability), so
    that the sidecar matches what the device reports when the engine is loaded; a None name
    without a GPU."""
    from runtime.backends.tensorrt_backend import _Cuda
    try:
        return _Cuda().gpu()
    except ModelError:
        return {"gpu_name": None}


def workspace_flag(workspace_gb: float) -> str:
    """trtexec's workspace limit as a bare number of MiB, the one spelling both versions
    document: 8.6's help gives `poolfmt ::= pool:sizeInMiB` (a unit suffix such as "2048M" got
    through only because its parser, std::stod, stops at the first non-digit), 10.x's reads a
    number without a suffix as MiB. At least 1 MiB: a limit that rounds to 0 leaves the
    builder no workspace, where the Python build (bytes) still had some."""
    return f"--memPoolSize=workspace:{max(1, int(round(workspace_gb * 1024)))}"


def trtexec_command(onnx_path: str | os.PathLike, engine_path: str | os.PathLike,
                    profile: Profile, precision: str = "fp16",
                    workspace_gb: float = DEFAULT_WORKSPACE_GB,
                    timing_cache: str | os.PathLike | None = None) -> str:
    """The trtexec command line equivalent to `build_engine` (TensorRT 8.5-10.x flags)."""
    flags = ["--fp16"] if precision == "fp16" else ["--int8", "--fp16"]
    parts = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}", *flags,
             f"--minShapes=input:{Profile.fmt(profile.min)}",
             f"--optShapes=input:{Profile.fmt(profile.opt)}",
             f"--maxShapes=input:{Profile.fmt(profile.max)}",
             workspace_flag(workspace_gb)]
    if timing_cache:
        parts.append(f"--timingCacheFile={timing_cache}")
    return shlex.join(parts)


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, profile: Profile,
                 precision: str = "fp16", workspace_gb: float = DEFAULT_WORKSPACE_GB,
                 timing_cache: str | os.PathLike | None = None, multiple: int = 8,
                 extra_meta: dict | None = None) -> Path:
    """Build and serialise an engine (+ sidecar). precision: "fp16" or "int8" (QDQ model)."""
    reason = availability()
    if reason:
        raise RuntimeError(reason)
    import tensorrt as trt

    if precision not in ("fp16", "int8"):
        raise ValueError(f"engine precision must be fp16 or int8, got {precision!r}")
    if precision == "int8" and int8_problem(trt):
        raise RuntimeError(int8_problem(trt))
    logger = shared_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    prof = builder.create_optimization_profile()
    prof.set_shape("input", profile.min, profile.opt, profile.max)
    config.add_optimization_profile(prof)
    cache_path = Path(timing_cache) if timing_cache else None
    attach_timing_cache(config, cache_path)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build the engine (see its log above)")
    if cache_path:
        atomic_write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
    engine_path = atomic_write_bytes(engine_path, bytes(serialized))
    atomic_write_json(sidecar_path(engine_path), {
        "tensorrt_version": trt.__version__, **gpu_identity(),
        **engine_meta(onnx_path, profile, precision, multiple, workspace_gb),
        **(extra_meta or {})})
    return engine_path


def attach_timing_cache(config, cache_path: Path | None) -> None:
    """Give the builder config (trt.IBuilderConfig) the timing cache saved in `cache_path`, or
    a new, empty one. The file travels with the export folder: one that cannot be used is
    discarded with a warning, and the build's fresh cache replaces it. Not used: a file that
    cannot be read, a corrupt one or another TensorRT version's (create_timing_cache returns
    None, or raises in some versions' bindings), one made on another GPU (set_timing_cache
    refuses it: NVIDIA warns that mixing device properties gives functional or performance
    bugs)."""
    if cache_path is not None and cache_path.exists():
        try:
            why = _timing_cache_problem(config, cache_path.read_bytes())
        except OSError as e:
            why = f"cannot be read ({e.strerror or e})"
        if why is None:
            return
        warn(f"the timing cache {cache_path} {why}: starting a new timing cache, which the "
             "build writes over it")
    config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)


def _timing_cache_problem(config, blob: bytes) -> str | None:
    """Attach `blob` as `config`'s timing cache; why it could not be, or None."""
    try:
        cache = config.create_timing_cache(blob)
        if cache is None:
            return "is not a timing cache this TensorRT can read (corrupt, or another version's)"
        if not config.set_timing_cache(cache, ignore_mismatch=False):
            return "was made on another GPU"
    except Exception as e:  # noqa: BLE001 - a corrupt blob: the build goes on without it
        return f"is not a timing cache this TensorRT can read ({first_line(e)})"
    return None


def engine_meta(onnx_path: str | os.PathLike, profile: Profile, precision: str, multiple: int,
                workspace_gb: float) -> dict:
    """What the runtime needs to know of an engine besides where it was built, and the run
    contract of the ONNX model it is built from (`runtime.contract`), for an app's own code."""
    from .onnx_export import LAYOUT, onnx_contract

    return {"precision": precision, "profile": profile.to_dict(), "multiple": int(multiple),
            "layout": LAYOUT, "workspace_gb": workspace_gb,
            "source": Path(onnx_path).name, **onnx_contract(), "shapes": profile_shapes(profile)}


def profile_shapes(profile: Profile) -> str:
    """The contract's `shapes` for an engine: what its profile accepts, not the ONNX model's
    dynamic axes."""
    (n0, _, h0, w0), (n1, _, h1, w1) = profile.min, profile.max
    batch = f"batch {n0}" if n0 == n1 else f"batch {n0} to {n1}"
    return f"{batch}, height {h0} to {h1}, width {w0} to {w1} (its profile)"


def profile_miss(profile: "Profile | dict | None", hw: tuple[int, int],
                 multiple: int = 1) -> str | None:
    """Why a frame of `hw` (height, width), padded to `multiple` as the runtime pads it, is
    outside an engine's optimisation profile (a Profile, or the dict its sidecar records), or
    None; None too for a profile that cannot be read (TensorRT then says)."""
    try:
        lo, hi = ((profile.min, profile.max) if isinstance(profile, Profile)
                  else (profile["min"], profile["max"]))
        (h0, w0), (h1, w1) = [int(v) for v in lo[2:4]], [int(v) for v in hi[2:4]]
    except (TypeError, KeyError, ValueError, IndexError):
        return None
    m = max(int(multiple or 1), 1)
    h, w = round_up(int(hw[0]), m), round_up(int(hw[1]), m)
    if h0 <= h <= h1 and w0 <= w <= w1:
        return None
    padded = f", padded to a multiple of {m}" if (h, w) != (int(hw[0]), int(hw[1])) else ""
    return (f"{h}x{w} (height x width{padded}) is outside the engine's optimisation profile, "
            f"{h0}x{w0} to {h1}x{w1}")


def write_pending_sidecar(onnx_path: str | os.PathLike, engine_path: str | os.PathLike,
                          profile: Profile, precision: str, multiple: int,
                          workspace_gb: float, extra_meta: dict | None = None) -> Path:
    """The sidecar of an engine that the printed trtexec line will build on the device: the
    model's size multiple (an `edge` engine fed frames padded to 8 fails) and its profile.
    Without tensorrt_version and gpu_name the runtime skips those checks. An engine already
    there of the same build keeps its own sidecar (its version and GPU checks must stay).
    One of another build (other weights, student, precision or profile) kept its sidecar too,
    so the engine the line then built was described by the old one (its weights, so `sharpen
    run` called the fresh engine stale; its size multiple and TensorRT version): the sidecar
    is written for the new engine, with the old file's hash (`REPLACES_KEY`), by which the
    runtime refuses the old engine until the line has replaced it."""
    side = sidecar_path(engine_path)
    new = {**engine_meta(onnx_path, profile, precision, multiple, workspace_gb),
           "built_by": "trtexec (the line `sharpen export` printed)", **(extra_meta or {})}
    try:
        old = read_sidecar(engine_path)
    except ModelError:   # unreadable: replaced
        old = {}
    differs = [k for k in BUILD_KEYS if k in old and k in new and old[k] != new[k]]
    engine = Path(engine_path)
    if not differs and (engine.exists() or "tensorrt_version" in old):
        return side   # the same build (or nothing to compare with): its sidecar stays
    if differs and engine.exists():
        from distill.teacher import file_hash

        new[REPLACES_KEY] = file_hash(engine, n=64)
        warnings.warn(f"{engine} is of another build ({', '.join(BUILD_KEYS[k] for k in differs)}"
                      " differ): its sidecar now describes the engine that the printed trtexec "
                      "line builds, and `sharpen run` refuses the old engine until that line has "
                      "replaced it", SharpenWarning, stacklevel=2)
    return atomic_write_json(side, new)


# What makes an engine another build, for `write_pending_sidecar`, as said (the workspace
# does not: it limits the builder's scratch memory).
BUILD_KEYS = {"source_sha256": "weights", "student": "student", "precision": "precision",
              "profile": "profile", "multiple": "size multiple", "source": "ONNX model",
              "float_layers": "float layers"}


def sidecar_path(engine_path: str | os.PathLike) -> Path:
    p = Path(engine_path)
    return p.with_name(p.name + ".json")
