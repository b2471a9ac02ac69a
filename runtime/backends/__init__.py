"""Inference backends behind one interface; `load_backend` picks one from the file extension."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Sequence, Union

from .base import DEFAULT_MULTIPLE, Backend, ModelError

__all__ = ["Backend", "ModelError", "DEFAULT_MULTIPLE", "load_backend", "BACKEND_BY_SUFFIX"]

from ..formats import ENGINE_BY_SUFFIX as BACKEND_BY_SUFFIX  # noqa: E402 - the format table
from ..options import option  # noqa: E402
from ..warn import warn  # noqa: E402


FAILED_MARK = ".parity-failed.json"


def failed_marker(path: Union[str, Path]) -> Path:
    """Beside an artifact that failed its export parity gate: why it failed."""
    return Path(str(path) + FAILED_MARK)


def read_marker(path: Union[str, Path]) -> dict:
    """The record of the failed-or-unchecked marker beside the artifact at `path` (status,
    reason); {} when there is none or it is unreadable."""
    try:
        data = json.loads(failed_marker(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def parity_failure(path: Union[str, Path], backend: Optional[Backend] = None) -> Optional[str]:
    """Why the artifact failed its export parity gate: the marker beside it, else the record
    inside it (`backend.parity_failed`, once loaded); None when nothing says it failed. A
    stranger's text, escaped (shown_path): no escape sequence or newline of it is printed."""
    from ..imageio import shown_path
    mark = failed_marker(path)
    if mark.exists():
        return shown_path(str(read_marker(path).get("reason") or f"see {mark}"))
    failed = backend.parity_failed if backend is not None else None
    return shown_path(str(failed)) if failed else None


def load_backend(path: Union[str, Path], threads: Optional[int] = None,
                 providers: Union[None, str, Sequence[str]] = "auto",
                 force: bool = False, say_forced: bool = True, *, flags: bool = False) -> Backend:
    """Load a model for inference.

    path: .onnx (ONNX Runtime), .engine/.plan (TensorRT), .tflite (LiteRT).
    threads: CPU threads for ONNX Runtime / LiteRT (None: MKL_NUM_THREADS's or else
    OMP_NUM_THREADS's count when set, else a CPU limit's, else every core); the backend's
    `threads` says the count it runs with.
    providers: ONNX Runtime only: "auto", "cpu", "cuda", "tensorrt" or a list of provider names.
    force: load a model that failed its export parity gate, with a warning unless `say_forced`
    is False (a caller that judges or reports the model itself).
    flags: messages name `sharpen run`'s flags (--provider, --tile), not these keywords (or
    FrameProcessor's and run_stream's, such as tile): the command line sets it (through
    run_stream).
    Raises ModelError with a user-facing message when the model is missing or cannot be loaded,
    TypeError for a path or providers of another type, ValueError for threads out of range.
    """
    if not isinstance(path, (str, os.PathLike)):   # Path(None) named no argument
        raise TypeError("load_backend: path must be a model file path (str or os.PathLike), "
                        f"got {type(path).__name__}")
    check_providers(providers)
    p = Path(path)
    if not p.exists():
        from .provenance import pending_engine
        how = pending_engine(p)
        raise ModelError(f"model not found: {p}" + (f": {how}" if how else ""))
    if p.is_dir():
        raise ModelError(f"model path is a folder, expected a file: {p}{_models_in(p)}")
    if not p.is_file():   # a FIFO: the runtime would wait for a writer that may never come
        from ..imageio import why_not_a_file
        raise ModelError(f"{p}: {why_not_a_file(p)}; give a model file")
    if p.stat().st_size == 0:   # cut short: each engine's own words for it mislead
        raise ModelError(f"{p}: an empty file (0 bytes: an interrupted export or copy?)")
    reason = parity_failure(p)
    if reason and not force:   # before loading: a failed model is not opened at all
        raise ModelError(_refused(p, reason))
    kind = BACKEND_BY_SUFFIX.get(p.suffix.lower())
    if kind in ("onnxruntime", "litert"):   # TensorRT's engine is read by Python
        from ..locale_text import utf8_name
        from .sniff import ENGINE_NAME
        utf8_name(p, ModelError, ENGINE_NAME[kind])
    from .sniff import content_engine, misnamed
    held = content_engine(p)
    if held is not None and held != kind:   # a copy renamed by mistake: say which it is
        raise ModelError(misnamed(p, held, kind))
    if kind not in (None, "onnxruntime") and providers not in (None, "auto", "cpu"):
        # ONNX Runtime says when a requested provider is not used; so does this.
        shown = providers if isinstance(providers, str) else ",".join(providers)
        # From Python the value is named, not a keyword: run_stream's is `provider`, this
        # function's `providers`.
        named = option("provider", shown, True) if flags else f"provider {shown!r}"
        warn(f"{named} is for ONNX models; {p.name} runs on {kind}")
    backend = _open(p, kind, threads, providers, flags)
    # What a model records of itself is a stranger's text, shown in the done line and the
    # --stats file: escaped, so that no escape sequence reaches the terminal nor a newline
    # forges a line of ours.
    from ..imageio import shown_path
    backend.precision = shown_path(str(backend.precision))
    # The marker file stays behind when the model alone is copied to the device; the record
    # inside the model (or its sidecar, which travels with it) does not.
    reason = reason or backend.parity_failed
    if reason and not force:
        backend.close()
        raise ModelError(_refused(p, reason))
    if reason and say_forced:
        _say_forced(p, reason)
    from .provenance import stale_reason
    _say_stale(p, stale_reason(p, backend.source_sha256))
    return backend


def check_providers(providers: object, name: str = "load_backend: providers") -> None:
    """TypeError naming `name` when `providers` is no provider spec: 3 met "'int' object is not
    iterable" in ONNX Runtime's resolver, or "can only join an iterable" in a warning."""
    if providers is None or isinstance(providers, str) or (
            isinstance(providers, (list, tuple)) and all(isinstance(n, str) for n in providers)):
        return
    raise TypeError(f"{name} must be 'auto', 'cpu', 'cuda', 'tensorrt', an ONNX Runtime "
                    f"provider name or a list of them, got {providers!r}")


def _models_in(folder: Path) -> str:
    """The models an export folder given as the model holds, for the user to pick one."""
    try:
        names = sorted(f.name for f in folder.iterdir()
                       if f.suffix.lower() in BACKEND_BY_SUFFIX and f.is_file())
    except OSError:
        return ""
    if not names:
        return ""
    more = f" and {len(names) - 6} more" if len(names) > 6 else ""
    return f" (it holds {', '.join(names[:6])}{more}: pass one of them)"


_said: set[tuple[str, str]] = set()


def _say_once(path: Path, message: str) -> None:
    """A warning about the artifact at `path`, once per artifact and message: the bench loads
    one several times (and reports a failure itself)."""
    key = (str(path.resolve()), message)
    if key not in _said:
        _said.add(key)
        warn(message)


def _say_forced(path: Path, reason: str) -> None:
    """A forced model runs, but not silently: its output may be wrong."""
    _say_once(path, f"{_failed(path, reason)}; running it anyway (forced), its output may be "
                    "wrong")


def _say_stale(path: Path, reason: Optional[str]) -> None:
    """An artifact left by an export of other weights runs (it passed its own gate), but not
    silently: beside a newer export it looks like part of it."""
    if reason:
        from ..imageio import shown_path
        _say_once(path, f"stale model: {shown_path(reason)}; re-export it (sharpen export "
                        "--formats ...) or remove it")


def _failed(path: Path, reason: str) -> str:
    from ..imageio import shown_path
    reason = shown_path(str(reason))   # a stranger's text (backend.parity_failed)
    if _marker_status(path) == "unchecked":   # an export stopped before judging (or while
        return f"{path} has no parity verdict: {reason}"   # replacing) it: not a failure
    return f"{path} failed its parity gate at export ({reason})"


def _marker_status(path: Path) -> Optional[str]:
    return read_marker(path).get("status")


def _refused(path: Path, reason: str) -> str:
    # An unchecked artifact's reason already says to export again.
    again = "" if _marker_status(path) == "unchecked" else "; re-export it"
    return (f"{_failed(path, reason)}{again}, or pass --force (force=True from Python) to run "
            "it anyway")


def _open(p: Path, kind: Optional[str], threads: Optional[int],
          providers: Union[None, str, Sequence[str]], flags: bool) -> Backend:
    # Imports stay inside the branches: each engine is an optional dependency on the device.
    if kind == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend
        return OnnxRuntimeBackend(p, threads=threads, providers=providers, flags=flags)
    if kind == "tensorrt":
        from .tensorrt_backend import TensorRTBackend
        return TensorRTBackend(p, flags=flags)
    if kind == "litert":
        from .litert_backend import LiteRTBackend
        return LiteRTBackend(p, threads=threads)
    raise ModelError(f"unknown model type {p.suffix or '(no extension)'!r} for {p}: expected "
                     f"one of {', '.join(sorted(BACKEND_BY_SUFFIX))}")
