"""The one interface every inference backend implements.

The pipeline only ever talks to a `Backend`: it hands over a float32 batch in the backend's
layout (NCHW or NHWC, RGB in [0, 1], H and W already padded to `multiple`) and gets a float32
batch of the same layout back (not clamped; post-processing clips).
"""
from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Optional

import numpy as np

DEFAULT_MULTIPLE = 8


class ModelError(RuntimeError):
    """A model that cannot be found, loaded or run. The message is meant for the user as is."""


class Backend(ABC):
    """An inference engine holding one loaded model.

    Attributes reported in the stats: `name` (engine), `precision` (fp32/fp16/int8/unknown),
    `provider` (where it actually runs, e.g. CPUExecutionProvider). `layout` is "NCHW" or "NHWC";
    `multiple` is the size multiple H and W must be divisible by. `parity_failed` is why the
    export's parity gate failed the model, as recorded inside it (ONNX metadata) or in its sidecar.
    `receptive_field` is the side in pixels of what one output pixel sees, when the export
    recorded it (tiling's overlap should reach it); `receptive_field_unrecorded` says that the
    model is an export from before it was recorded (see `exported_without_receptive_field`).
    `source_sha256` is the sha256 of the checkpoint the export built it from, when recorded
    (see `provenance`). `float_layers`
    are the layers of an INT8 model that its export kept in float (`--float-layers`), as
    its record says (`recorded_float_layers`); () for a model of one precision. `max_hw` is
    the largest frame (height, width) it takes whole, a TensorRT engine's profile's; None: any.

    `infer` may be called from several threads: ONNX Runtime runs concurrent calls itself,
    LiteRT and TensorRT (one interpreter / execution context) take them in turn.

    `close()` frees the engine; `closed` then says so and running the model raises ModelError
    (`check_open`), the same for every engine.
    """

    name: str = "backend"
    precision: str = "unknown"
    provider: str = "unknown"
    layout: str = "NCHW"
    multiple: int = DEFAULT_MULTIPLE
    parity_failed: Optional[str] = None
    receptive_field: Optional[int] = None
    receptive_field_unrecorded: bool = False
    source_sha256: Optional[str] = None
    float_layers: tuple[str, ...] = ()
    max_hw: Optional[tuple[int, int]] = None
    threads: int = 0   # the CPU threads it runs with (0: the engine's default, or not the CPU)
    path: Optional[Path] = None   # the model file it was loaded from
    closed: bool = False

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run the model on a float32 batch in `self.layout`; returns float32, same layout."""

    def warmup(self, height: int, width: int, runs: int = 2) -> None:
        """Run the model on a zero frame of the given (padded) size so that lazy initialisation
        (kernel selection, engine builds, allocations) is not charged to the first real frame."""
        shape = (1, 3, height, width) if self.layout == "NCHW" else (1, height, width, 3)
        dummy = np.zeros(shape, dtype=np.float32)
        for _ in range(max(runs, 1)):
            self.infer(dummy)

    def close(self) -> None:
        """Release engine resources (the default has none beyond garbage collection) and mark
        the backend closed: a backend that frees its engine calls this first, and
        `check_open` where it runs it."""
        self.closed = True

    def check_open(self) -> None:
        """ModelError once close() has run. Without it each engine failed in its own way on
        what close() left (TensorRT on its None context, an AttributeError). Backends call it
        before running the engine, under their lock where calls take turns."""
        if self.closed:
            raise ModelError(f"the {self.name} backend for {self.path or 'this model'} was "
                             "closed; load it again to run it (load_backend)")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "precision": self.precision, "provider": self.provider,
                "layout": self.layout, "multiple": self.multiple,
                "float_layers": list(self.float_layers)}

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Where an artifact records, in itself or its sidecar, that it failed its export parity gate: a
# marker file beside it stays behind when the model alone is copied to the device.
PARITY_KEY = "parity_failed"


def recorded_float_layers(meta: dict) -> list[str]:
    """The layers an artifact's export kept in float, from its record: a sidecar's list
    (TFLite, TensorRT engines), else the "float layers: a, b" that the ONNX exporters write into the
    model's "quantization" metadata."""
    if isinstance(meta.get("float_layers"), list):
        return [str(n) for n in meta["float_layers"]]
    m = re.search(r"float layers: ([^);]+)", str(meta.get("quantization") or ""))
    return [n.strip() for n in m.group(1).split(",") if n.strip()] if m else []


def sidecar_path(model_path: str | Path) -> Path | None:
    """The JSON sidecar written next to an exported model, if any.

    Looked up as `<model>.<ext>.json` first (specific to this file), then `<model>.json`.
    """
    p = Path(model_path)
    for cand in (p.with_name(p.name + ".json"), p.with_suffix(".json")):
        if cand.is_file():
            return cand
    return None


def read_sidecar(model_path: str | Path) -> dict[str, Any]:
    """Contents of the model's sidecar JSON, or {} when there is none. A sidecar that exists but
    is not valid JSON is an error: silently ignoring it would skip the engine compatibility check."""
    path = sidecar_path(model_path)
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the model sidecar {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ModelError(f"model sidecar {path} must hold a JSON object")
    return data


def layout_hint(shape: tuple[int, ...], layout: str) -> str:
    """Why a batch of this shape failed, where its shape says: it is not N x 3 x H x W (NCHW)
    or N x H x W x 3 (NHWC), as the backend takes it; '' when it is. An NHWC batch given to
    ONNX Runtime was said to need H and W in multiples of 8."""
    if len(shape) == 4 and shape[1 if layout == "NCHW" else 3] == 3:
        return ""
    want = "(N, 3, H, W)" if layout == "NCHW" else "(N, H, W, 3)"
    return f" (the backend takes a batch in {layout}, {want}; FrameProcessor converts frames)"


def parse_receptive_field(value: Any) -> Optional[int]:
    """The recorded receptive field, or None when absent or unreadable (older exports)."""
    try:
        rf = int(str(value))
    except (TypeError, ValueError):
        return None
    return rf if rf > 0 else None


def exported_without_receptive_field(receptive_field: Optional[int], *records: Any) -> bool:
    """Whether a model whose record (ONNX metadata, sidecar) names its student, as every
    `sharpen export` wrote it, records no receptive field: an export from before it was
    recorded (2026-12-03), which tiles with a fixed overlap that a new export of the same
    student would not (`runtime.tiling.tiling_warnings`). A model of no export: not known."""
    return receptive_field is None and any(
        isinstance(r, dict) and r.get("student") for r in records)


def parse_multiple(value: Any, where: str) -> int:
    """A positive int from metadata (stored as a string in ONNX metadata_props)."""
    if value is None or value == "":
        return DEFAULT_MULTIPLE
    try:
        m = int(value)
    except (TypeError, ValueError):
        raise ModelError(f"{where}: size multiple must be an integer, got {value!r}") from None
    if m < 1:
        raise ModelError(f"{where}: size multiple must be >= 1, got {m}")
    return m
