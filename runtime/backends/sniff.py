"""Which engine a model file's first bytes belong to, whatever its extension says.

A model copied to a device under another name (`student.onnx` that is the `.tflite`), or cut
short by an interrupted copy, otherwise fails inside the engine with a parser error that names
neither cause ("Protobuf parsing failed", "not a valid Flatbuffer buffer"). The checks read a
few bytes and are only ever used to word a refusal, never to pick another engine silently.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from ..formats import ENGINE_BY_SUFFIX

# The extension suggested for each engine: its first in the format table (.engine before
# trtexec's .plan).
EXTENSION: dict[str, str] = {}
for _suffix, _engine in ENGINE_BY_SUFFIX.items():
    EXTENSION.setdefault(_engine, _suffix)
KIND_NAME = {"onnxruntime": "an ONNX model", "litert": "a TFLite model",
             "tensorrt": "a TensorRT engine"}

_QUESTION = {"onnxruntime": "is it an ONNX model?", "litert": "is it a .tflite model?",
             "tensorrt": "is it a TensorRT engine?"}
ENGINE_NAME = {"onnxruntime": "ONNX Runtime", "litert": "LiteRT", "tensorrt": "TensorRT"}
# How each engine says that a file's structure does not parse (a copy cut short or damaged),
# as against a whole model it cannot run (a newer IR version, opset or operator version).
_PARSE_FAILED = {"onnxruntime": ("INVALID_PROTOBUF", "Protobuf parsing failed"),
                 "litert": ("not a valid Flatbuffer",)}

# ONNX's ModelProto fields are written in field order, ir_version (field 1, a varint) first,
# then producer_name, ..., graph (7), opset_import (8) or metadata_props (14).
_ONNX_NEXT_FIELDS = range(2, 21)


def content_engine(path: Union[str, Path]) -> Optional[str]:
    """"litert", "tensorrt" or "onnxruntime" when the file starts as that engine's models do;
    None when it matches none of them (or cannot be read)."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    if head[4:8] == b"TFL3":       # the FlatBuffer file identifier of every .tflite
        return "litert"
    if head[:4] == b"ftrt":        # a serialised TensorRT plan (trtexec's and the API's)
        return "tensorrt"
    if (len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] < 0x80
            and head[2] & 7 in (0, 2) and head[2] >> 3 in _ONNX_NEXT_FIELDS):
        return "onnxruntime"       # ir_version = a small number, then the next field's tag
    return None


def misnamed(path: Path, held: str, expected: Optional[str]) -> str:
    """The refusal for a file whose content is another engine's than its extension names."""
    said = (f"not {KIND_NAME[expected]} as its extension {path.suffix} says" if expected
            else f"and its extension {path.suffix or '(none)'} names no engine")
    return (f"{path} holds {KIND_NAME[held]} (by its first bytes), {said}: rename it to "
            f"{path.with_suffix(EXTENSION[held])}")


def load_hint(path: Path, engine: str, error: str = "") -> str:
    """What to suspect when the engine cannot load a file with its extension (`error`: what
    the engine said): one that starts as its models do and does not parse was damaged or cut
    short; one that parses is a model this engine cannot run (an older ONNX Runtime or
    tflite-runtime than the export's: 'Unsupported model IR version', 'Didn't find op ...
    version'), not a damaged one; anything else is likely no model."""
    if content_engine(path) != engine:
        return _QUESTION[engine]
    if engine == "onnxruntime" and "External data path" in error:
        # A whole model that parses: "a newer version?" sent the user upgrading.
        return ("it keeps its weights in a separate file, ONNX external data, that ONNX "
                "Runtime will not read: one missing, or outside the model's folder by a path "
                "up, an absolute one or a link, refused as a model from elsewhere could read "
                "any file so; keep the data file beside the model")
    if not any(m in error for m in _PARSE_FAILED.get(engine, ())):
        return (f"by its first bytes {KIND_NAME[engine]}, which this {ENGINE_NAME[engine]} "
                "cannot load: made for a newer version, or a damaged copy?")
    try:
        size = f" at {path.stat().st_size:,} bytes"
    except OSError:
        size = ""
    return (f"it starts as {KIND_NAME[engine].split(' ', 1)[1]}s do, so it is damaged or cut "
            f"short{size}: export or copy it again")
