"""What `sharpen export` (and `optimize.export.export`) can be told, and the checks that refuse a
bad setting before any work: the formats, the parity thresholds, ExportOptions, the output
folder."""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

from runtime.formats import FORMATS
from runtime.options import is_number


class ExportError(ValueError):
    """A usage problem (bad option, missing input, unwritable output) with a one-line message."""


def list_formats() -> list[str]:
    return list(FORMATS)


def parse_formats(text: str | Sequence[str] | None) -> list[str] | None:
    """'onnx,tflite-int8' -> ['onnx', 'tflite-int8']; None/'all' -> None (all buildable). An
    empty list is an error, not "all": `--formats "$FMTS"` with FMTS unset must not start a
    full export with 1080p timings."""
    if text is None:
        return None
    items = text.split(",") if isinstance(text, str) else list(text)
    names = [s.strip().lower() for s in items if s.strip()]
    if not names:
        raise ExportError(f"--formats is empty; name formats ({', '.join(FORMATS)}) or 'all'")
    if names == ["all"]:
        return None
    if "all" in names:
        raise ExportError("'all' stands alone in --formats (every format this machine can "
                          f"build); else name formats: {', '.join(FORMATS)}")
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise ExportError(f"unknown format {', '.join(map(_near_formats, unknown))}; choose "
                          f"from {', '.join(FORMATS)} (or 'all')")
    return list(dict.fromkeys(names))


def _near_formats(name: str) -> str:
    """`'tflite' (did you mean tflite-int8 or tflite-fp16?)`: the formats a typo is near, or
    that start with it (`tflite`, `engine`: there are two of each)."""
    import difflib

    near = [f for f in FORMATS if f.startswith(f"{name}-")] or difflib.get_close_matches(
        name.replace("_", "-"), list(FORMATS), n=2, cutoff=0.75)
    return repr(name) + (f" (did you mean {' or '.join(near)}?)" if near else "")


@dataclass
class Thresholds:
    fp32_max_abs: float = 1e-4   # FP32 artifacts: max abs error to the PyTorch output
    min_ssim: float = 0.98       # INT8 / FP16 artifacts: SSIM to the FP32 PyTorch output
    min_psnr: float | None = None  # optional extra gate for INT8 / FP16 artifacts (dB)
    # With ground truth for the parity images: the most SSIM to it an INT8 / FP16 artifact may
    # lose against the FP32 model, on its worst image (None: not gated, still reported).
    max_ssim_drop: float | None = None

    def check(self) -> None:
        """ExportError naming the flag when a threshold is out of range: NaN passed every
        artifact (its comparisons are all false), and a negative budget failed good ones and
        marked them so that `sharpen run` refused them."""

        def bad(v, lo, hi, lo_open=False):
            return v is not None and not (math.isfinite(v) and (lo < v if lo_open else lo <= v)
                                          and v <= hi)
        for flag, v, lo, hi, lo_open in (("--max-abs-fp32", self.fp32_max_abs, 0, 1, True),
                                         ("--min-ssim", self.min_ssim, 0, 1, True),
                                         ("--min-psnr", self.min_psnr, 0, 200, True),
                                         ("--max-ssim-drop", self.max_ssim_drop, 0, 1, False)):
            if v is None and flag in ("--max-abs-fp32", "--min-ssim"):
                raise ExportError(f"{flag} needs a value")
            if bad(v, lo, hi, lo_open):
                raise ExportError(f"{flag} must be in {'(' if lo_open else '['}{lo:g}, {hi:g}], "
                                  f"got {v!r}")

    def judge(self, gate: str, max_abs: float, ssim: float, psnr: float,
              ssim_drop: float | None) -> tuple[bool, str, float]:
        """The parity rule, shared by the export's gate and the bench: an "fp32" artifact must
        match the PyTorch output to `fp32_max_abs`; any other must keep SSIM (and PSNR, if set)
        to it and lose at most `max_ssim_drop` SSIM to ground truth (when measured). Returns
        (passed, the metric that decided, its threshold); the numbers are worst-image ones."""
        if gate == "fp32":
            return max_abs < self.fp32_max_abs, "max_abs", self.fp32_max_abs
        if ssim < self.min_ssim:
            return False, "ssim", self.min_ssim
        if self.min_psnr is not None and psnr < self.min_psnr:
            return False, "psnr", self.min_psnr
        if self.max_ssim_drop is not None and ssim_drop is not None \
                and ssim_drop > self.max_ssim_drop:
            return False, "ssim_drop", self.max_ssim_drop
        return True, "ssim", self.min_ssim


def check_out_dir(out_dir: str | os.PathLike) -> Path:
    """Create the folder and prove it is writable (a probe file), else ExportError."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError(f"output path {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ExportError(f"output folder {out} is not writable ({e.strerror or e})") from None
    return out


def default_formats() -> tuple[list[str], dict[str, str]]:
    """Formats this machine can build, and the reason for each one it cannot."""
    ok, skipped = [], {}
    for name, spec in FORMATS.items():
        reason = spec.availability()
        if reason:
            skipped[name] = reason
        else:
            ok.append(name)
    return ok, skipped


CALIB_SIZE = 256   # the calibration crops' side unless told (`sharpen export --calib-size`)


@dataclass
class ExportOptions:
    """Everything `export` can be told besides what and where (flags of `sharpen export`)."""
    calib: Sequence[str] | str | None = None   # calibration images/folders/globs/.npy
    calib_count: int = 64
    # None: CALIB_SIZE, fitted to the images and the model's multiple without a warning, for
    # a caller whose user cannot set it (`sharpen demo`): the warning names --calib-size.
    calib_size: int | None = CALIB_SIZE
    calib_blur: float = 0.0
    # Where the calibration crops are taken (as `sharpen distill`'s seed): the same seed, images
    # and options build byte-identical INT8 artifacts, another seed other crops.
    seed: int = 0
    calib_method: str | None = None            # percentile / entropy / minmax
    percentile: float | None = None
    reduce_range: bool = True                  # onnx-int8: 7-bit weights (see onnx_int8.py)
    float_layers: Sequence[str] | str | None = None  # INT8 formats: layers kept in float, or
    #                                            "auto" (optimize/float_layers.py)
    modelopt_method: str | None = None
    parity_images: Sequence[str] | str | None = None
    parity_gt: str | os.PathLike | None = None
    parity_teacher: str | os.PathLike | None = None
    thresholds: Thresholds | None = None
    opt_shape: str | tuple[int, int] | None = None   # None: 1080x1920 within [min, max]
    min_shape: str | tuple[int, int] = "64x64"
    max_shape: str | tuple[int, int] = "2160x3840"
    workspace_gb: float = 4.0
    latency: bool = True
    latency_runs: int = 5
    threads: int = 0
    simplify: bool = True
    opset: int = 17
    name: str | None = None                    # output file stem (default: the checkpoint's)
    quiet: bool = False
    rebuild: bool = False                      # rebuild artifacts that are up to date too


# The flags of `sharpen export` whose names are not their ExportOptions field's.
_FLAGS = {"workspace_gb": "--workspace", "thresholds.max_ssim_drop": "--max-ssim-drop",
          "out_dir": "--out"}


# The options that are numbers: whole (True) or any.
# The largest --workspace: TensorRT's pool is capped at the GPU's memory anyway, and 1e10 GB
# in bytes overflows the size_t that set_memory_pool_limit takes.
MAX_WORKSPACE_GB = 1024

_NUMBERS = {"opset": True, "calib_count": True, "calib_size": True, "latency_runs": True,
            "threads": True, "seed": True, "calib_blur": False, "percentile": False,
            "workspace_gb": False}


# `flags` of the functions below: False names keywords (Python callers), True `sharpen
# export`'s flags, a mapping another front end's: field -> its flag, None for a field it does
# not take (`sharpen bench` has no --parity-images); fields it leaves out as export names them.
Flags = Union[bool, Mapping[str, Optional[str]]]


def _option(field: str, flags: Flags) -> Optional[str]:
    """ExportOptions field `field` as `sharpen export`'s flag (with `flags`) or as a keyword;
    None where the front end of a `flags` mapping does not take it."""
    if isinstance(flags, Mapping) and field in flags:
        return flags[field]
    return _FLAGS.get(field, "--" + field.replace("_", "-")) if flags else field


def portrait_shape_warnings(shapes: tuple) -> list[str]:
    """The engine profile's shapes are HEIGHTxWIDTH (TensorRT's NCHW order) while every other
    frame size here (`sharpen bench --sizes`, the product's 1920x1080) is WIDTHxHEIGHT: a
    portrait shape the user gave is most likely a landscape one written the other way round,
    which would tune (or cap) the engine for frames the camera never sends."""
    out = []
    for flag, hw in zip(("--min-shape", "--opt-shape", "--max-shape"), shapes):
        if hw is not None and hw[0] > hw[1]:
            h, w = hw
            out.append(f"{flag} {h}x{w} is HEIGHTxWIDTH: a portrait frame {w} wide and {h} "
                       f"high; for landscape frames give {w}x{h} ({flag} takes TensorRT's "
                       "order, unlike `sharpen bench --sizes`)")
    return out


def check_options(o: ExportOptions, flags: bool = False) -> None:
    """ExportError for an option out of range, naming it as export() takes it (calib_size),
    or with `flags` as `sharpen export` does (--calib-size)."""
    from .onnx_export import MAX_OPSET, MIN_OPSET

    def n(field: str) -> str:
        return _option(field, flags)

    for name, whole in _NUMBERS.items():
        v = getattr(o, name)
        if v is not None and not is_number(v, whole):
            raise ExportError(f"{n(name)} must be {'an integer' if whole else 'a number'}, "
                              f"got {v!r}")
    if not MIN_OPSET <= o.opset <= MAX_OPSET:
        raise ExportError(f"{n('opset')} must be between {MIN_OPSET} and {MAX_OPSET} (the "
                          f"newest torch's TorchScript exporter writes), got {o.opset}")
    if o.calib_count < 1:
        raise ExportError(f"{n('calib_count')} must be >= 1, got {o.calib_count}")
    if o.seed < 0:   # numpy's generator refuses one with a traceback
        raise ExportError(f"{n('seed')} must be >= 0, got {o.seed}")
    if o.calib_size is not None and o.calib_size < 16:
        raise ExportError(f"{n('calib_size')} must be >= 16 pixels, got {o.calib_size}")
    if o.percentile is not None and not 50 < o.percentile <= 100:
        raise ExportError(f"{n('percentile')} must be in (50, 100], got {o.percentile}")
    # NaN passed `<= 0` and failed in the trtexec line as "cannot convert float NaN to
    # integer"; the pool defaults to the GPU's memory, so more than a GPU has limits nothing.
    if not 0 < o.workspace_gb <= MAX_WORKSPACE_GB:
        raise ExportError(f"{n('workspace_gb')} must be > 0 GB and at most {MAX_WORKSPACE_GB} GB, "
                          f"got {o.workspace_gb}")
    from .tensorrt_engine import as_hw
    for field in ("min_shape", "opt_shape", "max_shape"):
        if getattr(o, field) is not None:
            try:
                as_hw(getattr(o, field), n(field))
            except ValueError as e:
                raise ExportError(str(e)) from None
    if o.latency_runs < 0:
        raise ExportError(f"{n('latency_runs')} must be >= 0, got {o.latency_runs}")
    from runtime.host import check_threads
    try:   # here, not when the latency check loads a runtime after the whole export
        check_threads(o.threads, n("threads"))
    except ValueError as e:
        raise ExportError(str(e)) from None
    if o.thresholds is not None and o.thresholds.max_ssim_drop is not None and not o.parity_gt:
        raise ExportError(f"{n('thresholds.max_ssim_drop')} needs ground truth for the parity "
                          f"images: give {n('parity_gt')}{' DIR' if flags else '=DIR'} (same "
                          "file names)")
    if o.name is not None and (not o.name.strip() or o.name in (".", "..")
                               or any(c in o.name for c in "/\\")):
        raise ExportError(f"{n('name')} {o.name!r} must be a file name stem, not a path (the "
                          f"artifacts go in {n('out_dir')})")
