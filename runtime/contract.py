"""The contract every exported model records for programs that do not have this project.

An integrator's C++, Android or web application gets the model file alone. What it must do to
give `sharpen run`'s output (names, layout, colour order, value range, padding, clamping) is
written into the file by `sharpen export`: ONNX metadata_props plus the doc string, the JSON
sidecar of a .tflite or engine and, for a .tflite, the same JSON inside the file (its
flatbuffer metadata entry `sharpen`). The values are plain strings (ONNX metadata holds
nothing else), and are what this runtime does itself: `tiling.pad_to_multiple` pads with
numpy's "reflect", OpenCV's BORDER_REFLECT_101, and `prepost` clips the output.
README: "Using the exported files without this project".
"""
from __future__ import annotations

PRODUCER = "image-sharpening-kd"
PAD_MODE = "reflect101"     # mirror without repeating the edge pixel: dcb|abcd|cba
PAD_SIDES = "bottom,right"
TFLITE_METADATA = "sharpen"  # name of the .tflite flatbuffer's metadata entry


def producer_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(PRODUCER)
    except PackageNotFoundError:
        return "0+unknown"


def io_contract(*, input_name: str, output_name: str, input_dtype: str, input_range: str,
                shapes: str) -> dict[str, str]:
    """The contract's keys beside the ones the exporters already record (layout, multiple,
    source_sha256, precision); each exporter passes what its format has."""
    return {
        "producer": PRODUCER,
        "version": producer_version(),
        "input_name": input_name,
        "output_name": output_name,
        "colour_order": "RGB",
        "input_dtype": input_dtype,
        "input_range": input_range,
        "pad_mode": PAD_MODE,
        "pad_sides": PAD_SIDES,
        "output_clamped": "false",
        "shapes": shapes,
    }


def contract_text(meta: dict) -> str:
    """The contract in words, from the recorded keys (the ONNX doc string, which Netron shows)."""
    m = meta.get("multiple", "?")
    name = meta.get("student", "a student")
    return (
        f"{PRODUCER} {meta.get('version', '')} sharpening model ({name}, "
        f"{meta.get('precision', '')}). Input '{meta.get('input_name')}': "
        f"{meta.get('layout', '')}, colour order {meta.get('colour_order', 'RGB')} "
        f"(not BGR), {meta.get('input_dtype')} in {meta.get('input_range')} "
        f"(8-bit value / 255); shapes: {meta.get('shapes')}. Pad H and W at the bottom and "
        f"right up to a multiple of {m} by mirroring without repeating the edge pixel "
        "(OpenCV BORDER_REFLECT_101, numpy.pad mode='reflect'; not BORDER_REFLECT, not zeros), "
        f"then crop the output back to H x W. Output '{meta.get('output_name')}': the same "
        "shape, layout and colour order, not clamped: clip to [0,1], then round(x * 255). "
        "source_sha256 is the sha256 of the checkpoint it was exported from.")
