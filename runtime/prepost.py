"""Frame conversion around the model, vectorised with numpy/cv2 (no per-pixel Python).

BGR uint8 frame -> RGB float32 [0,1] in the backend's layout, reflect-padded to the model's size
multiple -> model -> cropped back, clipped, rounded -> BGR uint8 frame of the input's size.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import cv2
import numpy as np

from .backends.base import Backend
from .options import AUTO_TILE, is_number, option
from .tiling import (OVERLAP, auto_overlap, cut_padded, pad_to_multiple, padded_indices,
                     round_up, tiled_rows, tiling_warnings)
from .warn import warn as _warn


class FrameError(ValueError):
    """A frame the pipeline cannot convert (unsupported shape or dtype)."""


def conversions(frame: np.ndarray) -> list[str]:
    """What `to_bgr` will do to this frame, as phrases for a warning ([] for BGR). 16-bit frames
    stay 16-bit up to the output, which says if it cannot hold them (JPEG, video)."""
    out = []
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        out.append("grayscale, sharpened as 3-channel")
    elif frame.ndim == 3 and frame.shape[2] == 4:
        out.append("alpha channel dropped")
    return out


def check_frame(frame: Any, order: str = "BGR") -> None:
    """FrameError where `frame` is not one the runtime takes: a numpy array, uint8 or uint16,
    HxW or HxWx1, 3 or 4, not empty (FrameProcessor's input, encode_bytes' image). `order`:
    the channel order the caller takes, as the messages name it."""
    if frame is None:   # OpenCV's answer to an image it cannot read, passed on unchecked
        raise FrameError(f"expected a numpy image array (HxWx3 {order} uint8 or uint16), got "
                         "None (cv2.imread and cv2.imdecode give None for an image they cannot "
                         "read: runtime.decode_bytes raises UndecodableImage, which says why)")
    if not isinstance(frame, np.ndarray):
        raise FrameError(f"expected a numpy image array (HxWx3 {order} uint8 or uint16), got "
                         f"{type(frame).__name__}{_type_hint(frame, order)}")
    if frame.dtype not in (np.uint8, np.uint16):
        raise FrameError(f"unsupported frame dtype {frame.dtype}: expected {order} uint8 or "
                         f"uint16{_dtype_hint(frame.dtype, order)}")
    if frame.ndim in (2, 3) and 0 in frame.shape[:2]:
        raise FrameError(f"empty frame of shape {frame.shape}")
    if not (frame.ndim == 2 or frame.ndim == 3 and frame.shape[2] in (1, 3, 4)):
        raise FrameError(f"unsupported frame shape {frame.shape}: expected HxW, HxWx1, HxWx3 or "
                         f"HxWx4{_shape_hint(frame.shape)}")


def to_bgr(frame: np.ndarray, warn: bool = True, order: str = "BGR") -> np.ndarray:
    """Any supported frame -> HxWx3 BGR of the same depth (uint8 or uint16). Grayscale and BGRA
    are converted (warned once unless `warn` is False: an image source names each file
    itself); other dtypes and shapes raise FrameError (`check_frame`). `order`: the channel
    order the caller takes ("RGB": FrameProcessor(rgb=True), which hands over a swapped view),
    as the messages name it."""
    check_frame(frame, order)
    if frame.ndim == 2 or frame.shape[2] == 1:
        if warn:   # per frame: the warnings filter shows it once, not 30 times a second
            _warn(f"grayscale frames are converted to {order}")
        return cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        if warn:
            _warn("BGRA frames are converted to BGR (alpha dropped)")
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame


def _type_hint(frame: Any, order: str) -> str:
    """How to pass an image object the runtime does not take: PIL's, converted to RGB first
    (np.asarray of a palette image gives its indices, of a CMYK image four channels)."""
    if not type(frame).__module__.startswith("PIL."):
        return ""
    rgb = "np.asarray(img.convert('RGB'))"
    return f" (a PIL image: {rgb})" if order == "RGB" else f" (a PIL image: {rgb}[..., ::-1])"


def _dtype_hint(dtype: np.dtype, order: str = "BGR") -> str:
    """How to turn a frame of this dtype into the runtime's: the PyTorch side and
    distill.images hand out float RGB in [0, 1], which a user passes on first."""
    if dtype.kind == "f":
        swap = "" if order == "RGB" else "[..., ::-1]"
        return (" (a float RGB image in [0, 1]: "
                f"(np.clip(img, 0, 1){swap} * 255).round().astype(np.uint8))")
    if dtype.kind in "iu":
        return " (an integer image with values 0-255: frame.astype(np.uint8))"
    return ""


def _shape_hint(shape: tuple) -> str:
    """The likely mistake behind a shape the runtime does not take (PyTorch's layouts)."""
    if len(shape) == 3 and shape[0] in (1, 3, 4):
        return " (channels first? use frame.transpose(1, 2, 0))"
    if len(shape) == 4:
        return " (a batch? pass one frame at a time, or a stack to run_stream)"
    return ""


def check_rgb_float(image: Any, what: str = "image") -> np.ndarray:
    """`image` as an HxWx3 float32 RGB array in [0, 1] (what the PyTorch models, the teacher's
    tiling and `sharpen evaluate` take), or FrameError naming `what` and the fix. An integer
    image (OpenCV's BGR uint8) became 255 x too bright and came back all white, and a float
    image in [0, 255] the same; channels-first data met an error from deep inside the model.
    Float16/64 arrays (and anything `np.asarray` reads, e.g. a CPU tensor) are converted; the
    input itself is never changed."""
    arr = np.asarray(image)
    if arr.dtype.kind in "iub":
        raise FrameError(
            f"{what} has dtype {arr.dtype}: expected float RGB in [0, 1] (HxWx3); convert an "
            "OpenCV BGR image with distill.images.to_rgb_float(img) (or img[..., ::-1] / 255.0)")
    if arr.dtype.kind != "f":
        raise FrameError(f"{what} has dtype {arr.dtype}: expected float RGB in [0, 1] (HxWx3)")
    if arr.ndim != 3 or arr.shape[2] != 3:
        hint = (" (channels first? use image.transpose(1, 2, 0))"
                if arr.ndim == 3 and arr.shape[0] == 3 else
                " (a batch? pass one image at a time)" if arr.ndim == 4 else "")
        raise FrameError(f"{what} has shape {arr.shape}: expected HxWx3 RGB{hint}")
    if 0 in arr.shape:
        raise FrameError(f"{what} is empty (shape {arr.shape})")
    top = float(np.max(arr))
    if top > 1.5:   # well above what a [0, 1] image (or one a little over-sharpened) reaches
        raise FrameError(f"{what} has values up to {top:g}: expected float RGB in [0, 1] (an "
                         "image in [0, 255]? divide it by 255)")
    return np.asarray(arr, dtype=np.float32)


def to_8bit(frame: np.ndarray) -> np.ndarray:
    """uint16 -> uint8, x / 257 rounded (65535 = 255 x 257); uint8 unchanged."""
    if frame.dtype != np.uint16:
        return frame
    # Not the high byte (x / 256 rounded down): a level too dark in the shadows and one too
    # bright in the highlights for about half the values. OpenCV rounds to nearest; x / 257 is
    # never a tie, and float32 is exact enough here (checked over all 65536 values).
    return cv2.convertScaleAbs(frame, alpha=1.0 / 257.0)


def to_bgr8(frame: np.ndarray, warn: bool = True) -> np.ndarray:
    """Any supported frame -> HxWx3 BGR uint8 (`to_bgr`, then 16-bit scaled to 8 bit)."""
    bgr = to_bgr(frame, warn)
    # After to_bgr: an empty or 5-channel uint16 frame is refused, not "scaled to 8 bit".
    if warn and bgr.dtype == np.uint16:
        _warn("16-bit frames are scaled to 8 bit")
    return to_8bit(bgr)


_SCALE = np.float32(1.0 / 255.0)


def _to_u8(x: np.ndarray) -> np.ndarray:
    """float [0,1] (any range) -> uint8, clipped and rounded, in two SIMD passes: cv2 saturates
    at 255 and rounds, but takes |x|, so negatives are clamped to 0 first. About 10x faster
    than the numpy clip/round/astype chain at 1080p."""
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    if x.size <= 4:   # OpenCV reads an array this small as a Scalar: a 1x1 image came back 4x1
        return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return cv2.convertScaleAbs(cv2.max(x, 0.0), alpha=255.0)


def _to_u16(x: np.ndarray) -> np.ndarray:
    """float [0,1] (any range) -> uint16, clipped and rounded."""
    return (np.clip(x, 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)


def _scale(dtype) -> np.float32:
    return _SCALE16 if dtype == np.uint16 else _SCALE


_SCALE16 = np.float32(1.0 / 65535.0)


def bgr_to_rgbf(frame: np.ndarray) -> np.ndarray:
    """HxWx3 BGR uint8 (or uint16) -> HxWx3 RGB float32 in [0, 1]."""
    return np.multiply(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), _scale(frame.dtype),
                       dtype=np.float32)


def _to_int(dtype):
    """The float [0,1] -> integer conversion for frames of `dtype` (uint8 or uint16)."""
    return _to_u16 if dtype == np.uint16 else _to_u8


def rgbf_to_bgr(img: np.ndarray, dtype=np.uint8) -> np.ndarray:
    """HxWx3 RGB float (any range) -> BGR uint8 (or `dtype` uint16), clipped and rounded."""
    return cv2.cvtColor(_to_int(dtype)(np.ascontiguousarray(img)), cv2.COLOR_RGB2BGR)


def to_batch(frame: np.ndarray, multiple: int, layout: str) -> tuple[np.ndarray, tuple[int, int]]:
    """BGR uint8 frame -> (1-image float32 batch in `layout`, original (h, w)).

    Padding happens on the uint8 frame (4x less memory traffic than on floats); NCHW planes are
    written straight into the batch, so the frame is converted in one pass, never transposed."""
    padded, hw = pad_to_multiple(frame, multiple)
    if layout == "NCHW":
        H, W = padded.shape[:2]
        batch = np.empty((1, 3, H, W), np.float32)
        b, g, r = cv2.split(padded)
        for c, plane in enumerate((r, g, b)):
            np.multiply(plane, _scale(frame.dtype), out=batch[0, c])
        return batch, hw
    return bgr_to_rgbf(padded)[None], hw


def check_output(out: np.ndarray, batch_shape: tuple[int, ...], layout: str) -> None:
    """FrameError unless the model returned an RGB batch of its input's size: a model that
    up- or downscales would otherwise be cropped or fail further on without a word."""
    want = tuple(batch_shape)
    if out.shape != want:
        c = 1 if layout == "NCHW" else 3
        hw = [i for i in (1, 2, 3) if i != c]
        raise FrameError(f"model returned shape {tuple(out.shape)} for a {want} input ({layout}): "
                         f"expected an RGB image of the input's size, "
                         f"{want[hw[0]]}x{want[hw[1]]} (a sharpening model; one that changes "
                         "the size is not supported)")
    if out.dtype.kind == "f" and not _all_finite(out):
        raise FrameError("model returned NaN or infinite values: the model is broken (e.g. an "
                         "export that failed its parity check, or weights that diverged in "
                         "training); re-export it from good weights")


def _all_finite(out: np.ndarray) -> bool:
    """No NaN or inf in a model's float output (written as black pixels without a word else).
    float32: one sum, which NaN and inf propagate into (~1 ms at 1080p, where isfinite's
    full mask costs more); float16: the exponent bits, all ones only for NaN and inf (~3 ms;
    numpy's float16 sums take ~12)."""
    if out.dtype == np.float16:
        return not ((out.view(np.uint16) & 0x7C00) == 0x7C00).any()
    return bool(np.isfinite(out.sum(dtype=np.float32)))


def from_batch(out: np.ndarray, hw: tuple[int, int], layout: str, dtype=np.uint8,
               batch_shape: Optional[tuple[int, ...]] = None) -> np.ndarray:
    """Model output batch -> BGR uint8 (or `dtype` uint16) frame cropped to `hw`.
    `batch_shape`: the input batch's, which the output must match (checked when given)."""
    h, w = hw
    if batch_shape is not None:
        check_output(out, batch_shape, layout)
    if layout == "NCHW":
        ok = out.ndim == 4 and out.shape[1] == 3 and out.shape[2] >= h and out.shape[3] >= w
    else:
        ok = out.ndim == 4 and out.shape[3] == 3 and out.shape[1] >= h and out.shape[2] >= w
    if not ok:
        raise FrameError(f"model returned shape {out.shape}, expected an RGB image of at least "
                         f"{h}x{w} in {layout}")
    if layout == "NCHW":
        to_int = _to_int(dtype)
        return cv2.merge([to_int(np.ascontiguousarray(out[0, c, :h, :w])) for c in (2, 1, 0)])
    return rgbf_to_bgr(out[0, :h, :w], dtype)


@dataclass
class Timings:
    """Seconds spent in each stage for one frame."""
    pre: float = 0.0
    infer: float = 0.0
    post: float = 0.0
    extra: dict = field(default_factory=dict)


def check_tiling(tile: int, overlap: int, flags: bool = False) -> None:
    """ValueError naming the options when `tile` / `overlap` cannot tile a frame, as keywords,
    or with `flags` as the command line's flags."""
    t, o = option("tile", flags=flags), option("overlap", flags=flags)
    if tile < 0 or overlap < 0:
        raise ValueError(f"{t} and {o} must be >= 0, got {tile} and {overlap}")
    if tile and overlap >= tile:
        raise ValueError(f"{o} ({overlap}) must be smaller than {t} ({tile})")


def _check_processor_args(backend: Any, tile: Any, overlap: Any) -> None:
    """TypeError / ValueError naming FrameProcessor's argument that cannot be one: a path
    failed only at the first frame ("'str' object has no attribute 'layout'"), a tile of "256"
    or 2.5 with Python's own words, and True ran as a tile of 1 pixel."""
    if not (hasattr(backend, "infer") and hasattr(backend, "layout")):
        shown = f" {str(backend)!r}" if isinstance(backend, (str, os.PathLike)) else ""
        raise TypeError("FrameProcessor takes a loaded backend: FrameProcessor(load_backend("
                        f"path)), got {type(backend).__name__}{shown}")
    for name, value in (("tile", tile), ("overlap", overlap)):
        if value is not None and not is_number(value):
            raise ValueError(f"{name} must be an integer (pixels), got {value!r}")


# How each engine and library says it ran out of memory where no MemoryError is raised: ONNX
# Runtime ("Failed to allocate memory for requested buffer"), C++ (std::bad_alloc), OpenCV
# ("Insufficient memory"), CUDA and TensorRT ("out of memory").
_OOM_WORDS = ("failed to allocate", "bad_alloc", "insufficient memory", "out of memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is a failure to allocate memory, by type or by an engine's words."""
    return isinstance(exc, MemoryError) or any(w in str(exc).lower() for w in _OOM_WORDS)


class FrameOutOfMemory(MemoryError):
    """Sharpening a frame (or reading one from stdin) ran out of memory (a memory limit, a
    small board): the message names the frame size, the model and what to change. A
    MemoryError, as the failure it replaces."""


def out_of_memory_message(exc: BaseException, h: int, w: int, model: Any, tile: int,
                          flags: bool = False, depth: int = 1) -> str:
    """The one line for a frame of h x w that ran out of memory sharpening with `model`; the
    tile named as `sharpen run`'s flag with `flags`, else as FrameProcessor's keyword.
    depth: the frame's bytes a sample (2: 16-bit)."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # Tiled, a frame is held as its 8- or 16-bit input and output and a band of tile-high
    # rows in float (the blend's sum and weight, 16 bytes a pixel); whole, as float copies
    # (README: peak memory).
    mib = 1 << 20

    def band(rows: int) -> str:
        return f"a band of {rows} rows in float ({16 * min(rows, h) * w / mib:.1f} MiB)"
    if tile:
        fix = (f"tiled, it holds the {8 * depth}-bit frame in and out "
               f"({h * w * 3 * depth / mib:.1f} MiB each) "
               f"and {band(tile)}: a smaller {option('tile', flags=flags)} or a smaller frame")
    else:
        fix = (f"{option('tile', 512, flags)} runs the model on 512-pixel tiles, holding "
               f"{band(512)} instead of whole-frame float copies ({h * w * 12 / mib:.0f} MiB "
               "each)")
    return (f"out of memory sharpening a {w}x{h} frame with {model or 'the model'}"
            f"{f' (tile {tile})' if tile else ''}: {detail}; {fix}, or give the process "
            "more memory")


def _as_bgr_view(frame: Any) -> Any:
    """An RGB(A) frame as a BGR view of its colour channels (RGBA's alpha dropped, said);
    grayscale and anything to_bgr refuses are passed on as they are."""
    if not (isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] in (3, 4)
            and frame.dtype in (np.uint8, np.uint16)):
        return frame
    if frame.shape[2] == 4:
        _warn("RGBA frames are converted to RGB (alpha dropped)")
    return frame[..., 2::-1]


def beyond_whole(backend: Backend, h: int, w: int) -> Optional[tuple[int, int]]:
    """The largest frame (height, width) `backend` takes whole, where an h x w frame padded to
    its multiple is beyond it, else None: a TensorRT engine refuses a frame outside its
    profile (`Backend.max_hw`), which its tiles fit."""
    most = getattr(backend, "max_hw", None)
    if not most:
        return None
    m = getattr(backend, "multiple", 1) or 1
    return tuple(most) if round_up(h, m) > most[0] or round_up(w, m) > most[1] else None


def auto_tile(backend: Backend) -> int:
    """The tile side a frame is run at without one given: AUTO_TILE, or the largest multiple
    of the model's that fits an engine's profile below it (`Backend.max_hw`): an engine for a
    VGA camera (--max-shape 480x640) refuses a 512-pixel tile as it refuses the frame."""
    most = getattr(backend, "max_hw", None)
    m = getattr(backend, "multiple", 1) or 1
    fits = min(most) // m * m if most else 0
    return min(AUTO_TILE, fits) if fits > 0 else AUTO_TILE


class FrameProcessor:
    """pre -> infer -> post for one frame, timing each stage. With tile > 0 the frame is run in
    Gaussian-blended tiles (runtime.tiling), one at a time, for devices that cannot hold the
    frame in float."""

    def __init__(self, backend: Backend, tile: int = 0, overlap: Optional[int] = None, *,
                 rgb: bool = False, flags: bool = False,
                 auto_tile_above: Optional[int] = None) -> None:
        """tile: the side of the tiles in pixels (0: the whole frame); overlap: theirs (None:
        the model's receptive field, at most half the tile). Tiles that can show seams or
        waste work are warned about (SharpenWarning) at the first frame. rgb: frames come in
        RGB (or RGBA) and go out RGB, as PIL, imageio and GStreamer's RGB caps hand them over,
        not OpenCV's BGR. flags: the warnings name `sharpen run`'s flags (--tile), not these
        keywords: run_stream sets it. auto_tile_above: with tile 0, a frame of more pixels
        than this is run in AUTO_TILE tiles with the automatic overlap, as `tile=AUTO_TILE`
        runs it (None: never; `sharpen run` gives AUTO_TILE_PIXELS)."""
        _check_processor_args(backend, tile, overlap)
        if auto_tile_above is not None and (not is_number(auto_tile_above)
                                            or auto_tile_above < 1):
            raise ValueError("auto_tile_above must be a whole number of pixels from 1, got "
                             f"{auto_tile_above!r}")
        self.auto_tile_above = None if tile else auto_tile_above
        self._auto: Optional[FrameProcessor] = None   # made at the first frame it takes
        # False: tiled without a tile asked for (the automatic one's); see tiling_warnings
        self.tile_given = True
        if not isinstance(rgb, (bool, np.bool_)):   # bool("false") is True: every frame swapped
            raise TypeError(f"rgb must be True or False, got {rgb!r}")
        self.rgb = bool(rgb)
        # None: from the model's receptive field (runtime.tiling.auto_overlap); `overlap_auto`
        # lets the warnings tell a capped automatic overlap from one the user chose.
        self.overlap_auto = overlap is None
        # The tile as tiled_apply runs it, rounded up to the model's multiple (`--tile 40` runs
        # as 64 for a multiple of 32): the automatic overlap is half of it, and the stats and
        # the `done:` line name it.
        runs_as = round_up(tile, getattr(backend, "multiple", 1) or 1) if tile > 0 else 0
        if overlap is None:
            overlap = (auto_overlap(runs_as, getattr(backend, "receptive_field", None))
                       if tile > 0 else OVERLAP)
            check_tiling(runs_as if tile > 0 else tile, overlap)   # (a negative tile: refused)
        else:
            check_tiling(tile, overlap)
        self.backend, self.tile, self.overlap = backend, tile, overlap
        self.tile_runs_as = runs_as
        self.flags = flags
        # Said at the first frame (its size decides them), as run_stream says them: an app's
        # own loop got tiles narrower than the model's receptive field without a word.
        self._tiling_said = not tile
        # What it said: a stream whose frames change size is checked again (run_stream), and
        # what does not depend on the size (a tile rounded up, an export without a receptive
        # field) was said twice.
        self.tiling_said: set[str] = set()

    def auto_tiles(self, h: int, w: int) -> bool:
        """Whether an h x w frame is run in automatic tiles: above auto_tile_above, or beyond
        what the backend takes whole (`beyond_whole`)."""
        return self.auto_tile_above is not None and (
            h * w > self.auto_tile_above or beyond_whole(self.backend, h, w) is not None)

    def _auto_tiled(self) -> FrameProcessor:
        if self._auto is None:
            self._auto = FrameProcessor(self.backend, auto_tile(self.backend), None,
                                        rgb=self.rgb, flags=self.flags)
            self._auto.tile_given = False   # its advice names the tile to give
        return self._auto

    def _infer_nchw(self, batch: np.ndarray) -> np.ndarray:
        # tiled_apply speaks NCHW; NHWC backends (TFLite) get transposed tiles.
        if self.backend.layout == "NCHW":
            out = self.backend.infer(batch)
            check_output(out, batch.shape, "NCHW")
            return out
        nhwc = np.ascontiguousarray(batch.transpose(0, 2, 3, 1))
        out = self.backend.infer(nhwc)
        check_output(out, nhwc.shape, "NHWC")
        return out.transpose(0, 3, 1, 2)

    def _sharpen_tiled(self, bgr: np.ndarray, t: Timings) -> np.ndarray:
        """The frame tile by tile: each tile cut from the uint8 frame (padding only at the
        frame's bottom/right border), converted, run and blended in a band of tiles, the band's
        finished rows written straight into the uint8 output. `t` gets the cutting and
        converting as pre and the model as infer."""
        h, w = bgr.shape[:2]
        rows, cols = padded_indices(h, w, self.backend.multiple)
        result = np.empty_like(bgr)
        t.pre = t.infer = 0.0

        def cut(y: int, x: int, th: int, tw: int) -> np.ndarray:
            t0 = time.perf_counter()
            tile = bgr_to_rgbf(cut_padded(bgr, rows, cols, y, x, th, tw))
            t.pre += time.perf_counter() - t0
            return tile

        def run(batch: np.ndarray) -> np.ndarray:
            t0 = time.perf_counter()
            out = self._infer_nchw(batch)
            t.infer += time.perf_counter() - t0
            return out

        for y, part in tiled_rows(cut, h, w, run, tile=self.tile, overlap=self.overlap,
                                  multiple=self.backend.multiple, batch_size=1):
            # A few rows at a time: the conversion's own float temporaries stay small.
            for i in range(0, len(part), 32):
                rows_out = rgbf_to_bgr(part[i:i + 32], bgr.dtype)
                result[y + i:y + i + len(rows_out)] = rows_out
        return result

    def _say_tiling(self, h: int, w: int) -> None:
        """At the first frame (h x w): what its tiles may do (seams, wasted work)."""
        if self._tiling_said:
            return
        self._tiling_said = True
        for msg in tiling_warnings(h, w, self.tile, self.overlap, self.backend.multiple,
                                   getattr(self.backend, "receptive_field", None),
                                   auto=self.overlap_auto, flags=self.flags,
                                   unrecorded=getattr(self.backend,
                                                      "receptive_field_unrecorded", False),
                                   model=getattr(self.backend, "path", None),
                                   tile_given=self.tile_given):
            self.tiling_said.add(msg)
            _warn(msg)

    def warmup(self, frame: np.ndarray, runs: int = 1) -> None:
        """Run the real path `runs` times on a frame so one-off costs are not timed, and say
        what its tiles may do (0 runs: only that). Tiled, on one tile's worth of it: the
        engine meets only the tile's shape, and every tile of an 8K photo made a warm-up as
        long as the run."""
        h, w = frame.shape[:2]
        if self.auto_tiles(h, w):   # on one tile's worth, as --tile's
            self._auto_tiled().warmup(frame, runs)
            return
        self._say_tiling(h, w)
        m = self.backend.multiple
        if self.tile and (self.tile_runs_as < round_up(h, m) or self.tile_runs_as < round_up(w, m)):
            frame = frame[:self.tile_runs_as, :self.tile_runs_as]
        for _ in range(runs):
            self(frame)

    def __call__(self, frame: np.ndarray, timings: Optional[Timings] = None) -> np.ndarray:
        """Sharpen one frame: HxWx3 BGR uint8 or uint16 in (HxW / HxWx1 grayscale and BGRA are
        converted, with a SharpenWarning; RGB and RGBA with `rgb`), HxWx3 BGR (RGB with
        `rgb`) of the same size and depth out (but uint8
        from a uint16 frame through a TFLite INT8 model's 8-bit I/O, warned). Anything else
        raises FrameError naming the dtype or shape, and running out of memory FrameOutOfMemory
        naming the frame size. `timings` gets each stage's seconds."""
        try:
            # rgb: the BGR path on a view of the frame's channels swapped (no copy), so that an
            # RGB frame gets exactly its BGR twin's result; the output's swap is one pass.
            return self._sharpen(_as_bgr_view(frame) if self.rgb else frame, timings)
        except Exception as exc:
            if not is_out_of_memory(exc) or isinstance(exc, FrameOutOfMemory):
                raise
            h, w = frame.shape[:2]
            tile = auto_tile(self.backend) if self.auto_tiles(h, w) else self.tile
            # `from exc`: SHARPEN_DEBUG's traceback goes on to the allocation that failed.
            raise FrameOutOfMemory(out_of_memory_message(
                exc, h, w, getattr(self.backend, "path", None), tile, self.flags,
                getattr(getattr(frame, "dtype", None), "itemsize", 1))) from exc

    def _sharpen(self, frame: np.ndarray, timings: Optional[Timings]) -> np.ndarray:
        # Not an array (a PIL image): to_bgr below says what to pass.
        if getattr(frame, "ndim", 0) >= 2 and self.auto_tiles(*frame.shape[:2]):
            return self._auto_tiled()._sharpen(frame, timings)
        t = timings if timings is not None else Timings()
        t0 = time.perf_counter()
        # 16-bit frames (e.g. 16-bit PNG/TIFF) stay 16-bit: float models see their full
        # precision and the result comes back in 16 bits.
        bgr = to_bgr(frame, order="RGB" if self.rgb else "BGR")
        layout, multiple = self.backend.layout, self.backend.multiple
        quantized_io = getattr(self.backend, "quantized_io", False)
        if bgr.dtype == np.uint16 and getattr(self.backend, "precision", "") == "int8" \
                and not quantized_io:
            # Float I/O, but the graph quantises its input to 8 bits first.
            _warn("16-bit frames through an INT8 model keep about 8 bits of precision (the "
                  "file stays 16-bit; use an FP32/FP16 model to keep all 16)")
        if bgr.dtype == np.uint16 and quantized_io:
            # The same 8-bit result whether tiled (the float path) or not (uint8 tables).
            _warn("16-bit frames pass through the INT8 model's 8-bit input and output: "
                  "results are 8-bit")
            bgr = to_8bit(bgr)
        self._say_tiling(*bgr.shape[:2])
        if self.tile:
            result = self._sharpen_tiled(bgr, t)
            if self.rgb:
                result = cv2.cvtColor(result, cv2.COLOR_BGR2RGB)
            # Blending, writing back and the swap to RGB are the post-processing.
            t.post = time.perf_counter() - t0 - t.pre - t.infer
            return result
        elif quantized_io:
            # Integer model I/O (TFLite INT8): stay in uint8 end to end, see LiteRTBackend.
            padded, (h, w) = pad_to_multiple(bgr, multiple)
            rgb = cv2.cvtColor(padded, cv2.COLOR_BGR2RGB)[None]
            t1 = time.perf_counter()
            out = self.backend.infer_u8(rgb)
            check_output(out, rgb.shape, "NHWC")
            t2 = time.perf_counter()
            result = cv2.cvtColor(np.ascontiguousarray(out[0, :h, :w]), cv2.COLOR_RGB2BGR)
        else:
            batch, hw = to_batch(bgr, multiple, layout)
            t1 = time.perf_counter()
            out = self.backend.infer(batch)
            t2 = time.perf_counter()
            result = from_batch(out, hw, layout, bgr.dtype, batch.shape)
        if self.rgb:   # in t.post: the stage that hands the frame back
            result = cv2.cvtColor(result, cv2.COLOR_BGR2RGB)
        t3 = time.perf_counter()
        t.pre, t.infer, t.post = t1 - t0, t2 - t1, t3 - t2
        return result
