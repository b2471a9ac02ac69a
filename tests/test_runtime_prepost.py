"""Pre/post-processing: layout, range, padding to the model's multiple and back."""
from __future__ import annotations


import numpy as np
import pytest


from runtime.backends.base import Backend  # noqa: E402
from runtime.prepost import FrameProcessor, from_batch, to_batch, to_bgr8  # noqa: E402
from runtime.warn import SharpenWarning  # noqa: E402


class Identity(Backend):
    """Checks what the backend receives, returns it unchanged."""

    def __init__(self, layout: str, multiple: int) -> None:
        self.layout, self.multiple, self.seen = layout, multiple, []

    def infer(self, batch):
        self.seen.append(batch.shape)
        assert batch.dtype == np.float32 and 0.0 <= batch.min() and batch.max() <= 1.0
        return batch


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("hw", [(64, 96), (37, 53), (1, 5)])
def test_roundtrip_identity(layout, hw):
    rng = np.random.default_rng(1)
    f = rng.integers(0, 256, size=(*hw, 3), dtype=np.uint8)
    b = Identity(layout, 16)
    out = FrameProcessor(b)(f)
    np.testing.assert_array_equal(out, f)  # exact: /255 then *255 + round
    shape = b.seen[0]
    h, w = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
    assert h % 16 == 0 and w % 16 == 0 and h >= hw[0] and w >= hw[1]


def test_rgb_order_and_range():
    f = np.zeros((8, 8, 3), np.uint8)
    f[..., 0] = 255  # blue in BGR
    batch, hw = to_batch(f, 8, "NCHW")
    assert hw == (8, 8) and batch.shape == (1, 3, 8, 8)
    assert batch[0, 2].min() == 1.0 and batch[0, :2].max() == 0.0  # channel 2 = B in RGB


def test_post_clips_and_rounds():
    out = np.full((1, 3, 8, 8), 1.7, np.float32)
    out[0, 0] = -0.3
    out[0, 1] = 0.5
    img = from_batch(out, (5, 6), "NCHW")
    assert img.shape == (5, 6, 3)
    assert (img[..., 2] == 0).all() and (img[..., 1] == 128).all() and (img[..., 0] == 255).all()


def test_conversions():
    g = np.full((4, 4), 77, np.uint8)
    with pytest.warns(SharpenWarning, match="grayscale frames are converted to BGR"):
        assert to_bgr8(g).shape == (4, 4, 3) and (to_bgr8(g) == 77).all()
        assert to_bgr8(g[..., None]).shape == (4, 4, 3)
    bgra = np.dstack([np.full((4, 4, 3), 9, np.uint8), np.zeros((4, 4), np.uint8)])
    with pytest.warns(SharpenWarning, match=r"BGRA frames are converted to BGR \(alpha dropped\)"):
        assert (to_bgr8(bgra) == 9).all()
    deep = np.full((4, 4, 3), 65535, np.uint16)
    with pytest.warns(SharpenWarning, match="16-bit frames are scaled to 8 bit"):
        assert (to_bgr8(deep) == 255).all()
    from runtime.prepost import to_bgr
    kept = to_bgr(deep[..., 0], warn=False)   # the grayscale warning is asserted above
    assert kept.dtype == np.uint16 and kept.shape == (4, 4, 3) and (kept == 65535).all()
    batch, hw = to_batch(kept, 8, "NCHW")
    assert batch.dtype == np.float32 and np.allclose(batch[0, :, :4, :4], 1.0)
    assert from_batch(batch, hw, "NCHW", np.uint16).dtype == np.uint16
    assert (from_batch(batch, hw, "NCHW", np.uint16) == 65535).all()


def test_tiled_identity_is_exact():
    f = np.random.default_rng(2).integers(0, 256, size=(70, 90, 3), dtype=np.uint8)
    b = Identity("NHWC", 8)
    out = FrameProcessor(b, tile=32, overlap=8)(f)
    np.testing.assert_array_equal(out, f)
    assert len(b.seen) > 4 and b.seen[0] == (1, 32, 32, 3)


def test_prepost_is_vectorised_fast():
    """1080p pre + post must be far below a frame time; a per-pixel Python loop would take
    seconds."""
    import time
    f = np.random.default_rng(3).integers(0, 256, size=(1080, 1920, 3), dtype=np.uint8)
    proc = FrameProcessor(Identity("NCHW", 8))
    proc(f)
    t0 = time.perf_counter()
    proc(f)
    assert time.perf_counter() - t0 < 0.5
    assert (proc(f) == f).all()


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_non_finite_outputs_are_found_in_both_float_widths(dtype):
    from runtime.prepost import FrameError, check_output

    out = np.full((1, 3, 16, 16), 0.5, dtype)
    check_output(out, out.shape, "NCHW")
    out[0, 1, 3, 4] = np.finfo(dtype).max   # large but finite: fine
    check_output(out, out.shape, "NCHW")
    for bad in (np.nan, np.inf, -np.inf):
        out[0, 2, 5, 6] = bad
        with pytest.raises(FrameError, match="NaN or infinite"):
            check_output(out, out.shape, "NCHW")


class _AppBackend:
    """An app's own backend, duck-typed as FrameProcessor takes one (infer, layout, multiple):
    no `path`, as a Backend subclass has. Its engine runs out of memory on every frame."""

    layout, multiple = "NCHW", 1

    def infer(self, batch):
        raise MemoryError(f"cannot allocate {batch.nbytes} bytes")


def test_a_frame_out_of_memory_names_the_size_and_the_keyword_and_keeps_its_cause():
    """FrameOutOfMemory read `backend.path`, which an app's duck-typed backend need not have:
    its out-of-memory failure became "AttributeError: ... no attribute 'path'". A Python caller
    was told of `--tile 512`, a flag it has no way to give, and the engine's own error was cut
    from the chain (`from None`), so SHARPEN_DEBUG's traceback ended at the rewrap."""
    from runtime.prepost import FrameOutOfMemory

    with pytest.raises(FrameOutOfMemory) as e:
        FrameProcessor(_AppBackend())(np.zeros((48, 64, 3), np.uint8))
    said = str(e.value)
    assert said.startswith("out of memory sharpening a 64x48 frame with the model: cannot "
                           "allocate "), said
    assert "tile=512 runs the model on 512-pixel tiles" in said and "--tile" not in said, said
    assert isinstance(e.value.__cause__, MemoryError), e.value.__cause__
    assert not isinstance(e.value.__cause__, FrameOutOfMemory)
    with pytest.raises(FrameOutOfMemory) as e:   # tiled already: a smaller tile, as a keyword
        FrameProcessor(_AppBackend(), tile=32, overlap=8)(np.zeros((48, 64, 3), np.uint8))
    assert "(tile 32): cannot allocate" in str(e.value), str(e.value)
    # What a tiled run holds, so that a user knows what a smaller tile can still save.
    assert ("tiled, it holds the 8-bit frame in and out (0.0 MiB each) and a band of 32 rows "
            "in float (0.0 MiB): a smaller tile or a smaller frame") in str(e.value), str(e.value)


def test_the_out_of_memory_advice_sizes_what_a_tiled_run_holds():
    from runtime.prepost import out_of_memory_message
    said = out_of_memory_message(MemoryError("x"), 4320, 7680, "m.onnx", 512, flags=True)
    assert ("tiled, it holds the 8-bit frame in and out (94.9 MiB each) and a band of 512 rows "
            "in float (60.0 MiB): a smaller --tile or a smaller frame") in said, said
    said = out_of_memory_message(MemoryError("x"), 2160, 3840, "m.onnx", 0, flags=True)
    assert ("--tile 512 runs the model on 512-pixel tiles, holding a band of 512 rows in float "
            "(30.0 MiB) instead of whole-frame float copies (95 MiB each)") in said, said


def test_the_out_of_memory_advice_sizes_a_16_bit_frame_at_its_depth():
    """A 16-bit TIFF is held at 2 bytes a sample in and out: the advice sized it as 8-bit,
    half of what a user has to make room for."""
    from runtime.prepost import FrameOutOfMemory, out_of_memory_message
    said = out_of_memory_message(MemoryError("x"), 4320, 7680, "m.onnx", 512, flags=True,
                                 depth=2)
    assert "it holds the 16-bit frame in and out (189.8 MiB each)" in said, said
    with pytest.raises(FrameOutOfMemory) as e:
        FrameProcessor(_AppBackend(), tile=32, overlap=8)(np.zeros((48, 64, 3), np.uint16))
    assert "the 16-bit frame in and out" in str(e.value), str(e.value)
