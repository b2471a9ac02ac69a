"""What ships to the device: sharpen frames and streams through ONNX Runtime, TensorRT or LiteRT.

The Python API, for an app that embeds the runtime (no torch, no TensorFlow):

    from runtime import FrameProcessor, Sink, Timings, load_backend, run_stream

    backend = load_backend("export/student-fast.onnx")
    proc = FrameProcessor(backend)
    sharp = proc(frame)                          # one BGR uint8/uint16 frame -> same size/depth
    proc(frame, t := Timings())                  # t.pre, t.infer, t.post: that frame's seconds
    FrameProcessor(backend, rgb=True)(rgb)       # RGB(A) frames in, RGB out (PIL...)
    frame = decode_bytes(upload)                 # an image file's bytes in (no temp file)
    encode_bytes(proc(frame), ".png", like=upload)   # out, alpha, ICC, EXIF (GPS) kept
                                                 # (metadata=False: no EXIF); a bad upload
                                                 # raises UndecodableImage, and one over
                                                 # SHARPEN_MAX_PIXELS OverPixelBudget

    class Collect(Sink):                         # every frame of a stream, in order
        def write(self, original, sharpened, name): ...
    stats = run_stream("export/student-fast.onnx", "in.mp4", Collect())   # as --stats writes
    held = run_stream("export/student-fast.onnx", [frame1, frame2], Collect())   # arrays too
    # Ctrl-C / SIGTERM during a run: output closed, then StreamInterrupted (.stats) is raised.

Its warnings (a frame converted or resized, a setting that does not apply) are Python warnings
of category `SharpenWarning`, to filter, record or turn into errors with the `warnings` module.

Names are imported on first use, so `import runtime` stays cheap for the command line.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:   # for type checkers and editors, which do not run __getattr__
    # `X as X`: a re-export, as PEP 484 spells it.
    from .backends import Backend as Backend, ModelError as ModelError
    from .backends import load_backend as load_backend
    from .image_sink import ImageEncodeOutOfMemory as ImageEncodeOutOfMemory
    from .image_sink import encode_bytes as encode_bytes
    from .imageio import ImageReadError as ImageReadError, OverPixelBudget as OverPixelBudget
    from .imageio import UndecodableImage as UndecodableImage, decode_bytes as decode_bytes
    from .imageio import ImageDecodeOutOfMemory as ImageDecodeOutOfMemory
    from .pipeline import StreamInterrupted as StreamInterrupted
    from .pipeline import StreamOptions as StreamOptions, run_stream as run_stream
    from .prepost import FrameError as FrameError, FrameProcessor as FrameProcessor
    from .prepost import FrameOutOfMemory as FrameOutOfMemory, Timings as Timings
    from .sinks import Sink as Sink, SinkError as SinkError
    from .sources import ArraySource as ArraySource, Source as Source
    from .sources import SourceError as SourceError, open_source as open_source
    from .sources import SourceLost as SourceLost
    from .warn import SharpenWarning as SharpenWarning

_API = {
    "load_backend": ".backends", "Backend": ".backends", "ModelError": ".backends",
    "FrameProcessor": ".prepost", "FrameError": ".prepost", "Timings": ".prepost",
    "FrameOutOfMemory": ".prepost",
    "run_stream": ".pipeline", "StreamOptions": ".pipeline", "StreamInterrupted": ".pipeline",
    "Sink": ".sinks", "SinkError": ".sinks",
    "open_source": ".sources", "Source": ".sources", "SourceError": ".sources",
    "SourceLost": ".sources", "ArraySource": ".sources",
    "SharpenWarning": ".warn",
    "decode_bytes": ".imageio", "ImageReadError": ".imageio", "UndecodableImage": ".imageio",
    "OverPixelBudget": ".imageio", "encode_bytes": ".image_sink",
    "ImageEncodeOutOfMemory": ".image_sink", "ImageDecodeOutOfMemory": ".imageio",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(_API[name], __name__), name)


def __dir__() -> list[str]:
    # What IPython and Jupyter complete `runtime.` from: the API, loaded or not yet, with the
    # module's own names (__file__, __path__) and its submodules imported so far (the API
    # alone hid `runtime.pipeline`), but not the helpers imported above (Any, importlib).
    own = [n for n, v in globals().items() if n.startswith("_")
           or isinstance(v, ModuleType) and v.__name__.startswith(f"{__name__}.")]
    return sorted({*own, *__all__})
