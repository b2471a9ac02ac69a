"""A camera photo's EXIF (capture date, camera, GPS) kept in the sharpened image. OpenCV writes
none: a batch over a photo library lost every date and place the photos were sorted by. The
pixels are turned upright on reading, so the kept Orientation says 1 (as stored), or viewers
turned the upright result once more."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from runtime import SharpenWarning
from runtime.pipeline import run_stream
from runtime_fixtures import onnx_model

__all__ = ["onnx_model"]  # the fixture is used by name

DATE = "2024:06:01 12:34:56"


def _exif(orientation: int = 1) -> Image.Exif:
    e = Image.Exif()
    e[0x010F], e[0x0110], e[0x0112], e[0x0132] = "Canon", "EOS R6", orientation, DATE
    e.get_ifd(0x8769)[0x9003] = DATE   # DateTimeOriginal, in the Exif IFD
    e.get_ifd(0x8825)[1] = "N"         # GPSLatitudeRef, in the GPS IFD
    return e


def _photo(path, orientation: int = 1, w: int = 56, h: int = 40) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(
        path, exif=_exif(orientation))


@pytest.mark.parametrize("src_ext", ["jpg", "png", "webp"])
@pytest.mark.parametrize("out_ext", ["jpg", "png", "webp"])
def test_the_photo_s_exif_is_kept(tmp_path, onnx_model, src_ext, out_ext):
    src, out = tmp_path / f"photo.{src_ext}", tmp_path / f"sharp.{out_ext}"
    _photo(src)
    run_stream(onnx_model, str(src), out)
    with Image.open(out) as im:
        e = im.getexif()
        assert (e[0x010F], e[0x0110], e[0x0132]) == ("Canon", "EOS R6", DATE)
        assert e.get_ifd(0x8769)[0x9003] == DATE
        assert e.get_ifd(0x8825)[1] == "N"
        im.load()   # a whole file


def test_a_webp_output_keeps_both_the_profile_and_the_exif(tmp_path, onnx_model):
    """A phone photo (Display P3, EXIF) into WebP: both go in the extended header's chunks, in
    the container's order, and the file decodes whole."""
    from PIL import ImageCms
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "phone.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((40, 56, 3)) * 255).astype(np.uint8)).save(
        src, exif=_exif(), icc_profile=profile)
    for quality in (None, 80):
        out = tmp_path / f"sharp{quality}.webp"
        run_stream(onnx_model, str(src), out, quality=quality)
        with Image.open(out) as im:
            assert im.info["icc_profile"] == profile
            assert im.getexif()[0x0132] == DATE
            im.load()
        data = out.read_bytes()
        assert data[12:16] == b"VP8X" and data[20] == 0x28   # ICC and EXIF flags
        assert data.index(b"ICCP") < data.index(b"VP8 " if quality else b"VP8L") \
            < data.index(b"EXIF")


def test_an_exif_block_over_a_jpeg_segment_is_kept_in_png_and_webp(tmp_path, onnx_model):
    """A PNG's EXIF of 70 KB (a long description, a maker note) fits no JPEG segment: the
    JPEG's warning named PNG alone as keeping it, where WebP does too."""
    e = _exif()
    e[0x010E] = "x" * 70_000   # ImageDescription
    src = tmp_path / "photo.png"
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((40, 56, 3)) * 255).astype(np.uint8)).save(src, exif=e)
    with pytest.warns(SharpenWarning, match=r"sharp\.jpg: its input's EXIF .* is dropped "
                                            r"\(70,\d{3} bytes, more than a JPEG's EXIF "
                                            r"segment holds; PNG and WebP keep it\)"):
        run_stream(onnx_model, str(src), tmp_path / "sharp.jpg")
    for ext in ("png", "webp"):
        run_stream(onnx_model, str(src), tmp_path / f"sharp.{ext}")
        with Image.open(tmp_path / f"sharp.{ext}") as im:
            assert len(im.getexif()[0x010E]) == 70_000, ext


def test_a_turned_photo_is_written_upright_and_its_exif_says_so(tmp_path, onnx_model):
    (tmp_path / "in").mkdir()
    e = _exif(6)   # stored on its side, as the camera's sensor took it
    e.get_ifd(0x8769).update({0xA002: 56, 0xA003: 40})   # PixelXDimension, PixelYDimension
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((40, 56, 3)) * 255).astype(np.uint8)).save(
        tmp_path / "in" / "portrait.jpg", exif=e)
    run_stream(onnx_model, str(tmp_path / "in"), tmp_path / "out")
    with Image.open(tmp_path / "out" / "portrait.jpg") as im:
        assert im.size == (40, 56)   # turned upright
        e = im.getexif()
        assert e[0x0112] == 1 and e[0x0132] == DATE
        exif_ifd = e.get_ifd(0x8769)
        assert (exif_ifd[0xA002], exif_ifd[0xA003]) == (40, 56)   # the upright size


def test_a_photo_without_exif_gets_none(tmp_path, onnx_model):
    src = tmp_path / "plain.jpg"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(src)
    run_stream(onnx_model, str(src), tmp_path / "sharp.jpg")
    with Image.open(tmp_path / "sharp.jpg") as im:
        assert not im.getexif()


def test_a_format_written_without_exif_says_so(tmp_path, onnx_model):
    src = tmp_path / "photo.jpg"
    _photo(src)
    with pytest.warns(SharpenWarning, match=r"sharp\.tif: its input's EXIF .* dropped"):
        run_stream(onnx_model, str(src), tmp_path / "sharp.tif")


def _png_with_exif_chunk(path, body: bytes) -> None:
    """A PNG whose eXIf chunk holds `body` as it is (a tool's bad one, or one prefixed with
    JPEG's "Exif\\0\\0", which Pillow and exiftool read past)."""
    import struct
    import zlib

    import cv2
    ok, buf = cv2.imencode(".png", np.full((20, 24, 3), 90, np.uint8))
    data = buf.tobytes()
    at = 8 + 12 + struct.unpack(">I", data[8:12])[0]
    chunk = (struct.pack(">I", len(body)) + b"eXIf" + body
             + struct.pack(">I", zlib.crc32(b"eXIf" + body)))
    path.write_bytes(data[:at] + chunk + data[at:])


@pytest.mark.parametrize("out_ext", ["jpg", "png"])
def test_an_eXIf_chunk_that_is_no_exif_is_not_copied(tmp_path, onnx_model, out_ext):
    """A PNG's eXIf chunk of other bytes was copied as it was: a PNG output whose getexif()
    raised in Pillow (and in a photo manager reading it)."""
    _png_with_exif_chunk(tmp_path / "odd.png", b"not a TIFF header at all")
    run_stream(onnx_model, str(tmp_path / "odd.png"), tmp_path / f"sharp.{out_ext}")
    with Image.open(tmp_path / f"sharp.{out_ext}") as im:
        assert not im.getexif()


@pytest.mark.parametrize("out_ext", ["jpg", "png"])
def test_a_png_exif_with_jpeg_s_prefix_is_read_and_written_without_it(tmp_path, onnx_model,
                                                                       out_ext):
    """"Exif\\0\\0" before a PNG's EXIF (some writers put it there) hid its Orientation: the
    photo was not turned, and the block was copied with the prefix twice in a JPEG."""
    from runtime.imageio import exif_block
    e = _exif(6)
    _png_with_exif_chunk(tmp_path / "p.png", b"Exif\x00\x00" + e.tobytes()[6:])
    run_stream(onnx_model, str(tmp_path / "p.png"), tmp_path / f"sharp.{out_ext}")
    with Image.open(tmp_path / f"sharp.{out_ext}") as im:
        assert im.size == (20, 24)   # turned upright
        assert im.getexif()[0x0112] == 1 and im.getexif()[0x0132] == DATE
    assert exif_block((tmp_path / f"sharp.{out_ext}").read_bytes())[:4] == e.tobytes()[6:10]


@pytest.mark.parametrize("out_ext", ["jpg", "png", "tif"])
def test_exif_false_writes_no_exif_and_says_no_drop(tmp_path, onnx_model, out_ext):
    """No option left a photo's EXIF out: its GPS position went with every sharpened photo a
    user published. exif=False (--no-exif) writes none, and no format then warns it drops it."""
    import warnings
    src, out = tmp_path / "photo.jpg", tmp_path / f"sharp.{out_ext}"
    _photo(src)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SharpenWarning)
        run_stream(onnx_model, str(src), out, exif=False)
    with Image.open(out) as im:
        assert not im.getexif().get_ifd(0x8825) and 0x010F not in im.getexif()


def test_what_a_library_s_outputs_leave_out_of_their_photos_is_said_at_the_end(tmp_path,
                                                                             onnx_model,
                                                                             capsys):
    """An archive's captions and keywords (a JPEG's XMP and IPTC, a PNG's text chunks) and a
    TIFF scan's EXIF were left out of every output without a word: only EXIF and the colour
    profile are written. The closing lines say which kinds, how many images and the first."""
    from PIL import PngImagePlugin
    from runtime_fixtures import run_cli
    lib = tmp_path / "lib" / "2020"
    lib.mkdir(parents=True)
    rng = np.random.default_rng(0)
    img = Image.fromarray((rng.random((40, 56, 3)) * 255).astype(np.uint8))
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/'
           b'02/22-rdf-syntax-ns#"/></x:xmpmeta>')
    img.save(lib / "a caption.jpg", exif=_exif(), xmp=xmp)
    text = PngImagePlugin.PngInfo()
    text.add_text("Title", "Harbour")
    text.add(b"gAMA", (100000).to_bytes(4, "big"))   # gamma 1.0, a linear scan's: no profile
    img.save(lib / "b.png", pnginfo=text)
    img.save(lib / "c.tif", exif=_exif())
    img.save(lib / "d.jpg", exif=_exif())   # EXIF alone: all of it kept
    out = tmp_path / "out"
    argv = ["run", "--model", str(onnx_model), "--source", str(tmp_path / "lib" / "**" / "*"),
            "--quiet"]
    assert run_cli([*argv, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    said = [ln for ln in err.splitlines() if "written without" in ln]
    assert said == [f"sharpen run: {out}: 3 images are written without their photos' XMP, "
                    "PNG text, PNG gamma, TIFF EXIF (2020/a caption.jpg, ...): only EXIF (of a "
                    "JPEG, PNG or WebP) and the colour profile are kept; exiftool "
                    f"-tagsFromFile '{lib}/a caption.jpg' -XMP-dc:all -IPTC:all "
                    f"'{out}/2020/a caption.jpg' copies the captions and keywords of "
                    "2020/a caption.jpg (each photo's likewise)"], err
    assert run_cli([*argv, "--out", str(tmp_path / "bare"), "--no-metadata"]) == 0
    assert "written without" not in capsys.readouterr().err


def _png(path, *chunks: tuple[bytes, bytes]) -> bytes:
    """A small PNG with `chunks` (kind, body) added as Pillow writes them."""
    from PIL import PngImagePlugin
    info = PngImagePlugin.PngInfo()
    for kind, body in chunks:
        info.add(kind, body)
    Image.new("RGB", (56, 40), (90, 120, 40)).save(path, pnginfo=info)
    return path.read_bytes()


def _text(key: str, value: str) -> tuple[bytes, bytes]:
    return b"tEXt", key.encode() + b"\x00" + value.encode()


SRGB_CHRM = b"".join(v.to_bytes(4, "big") for v in (31270, 32900, 64000, 33000, 30000, 60000,
                                                     15000, 6000))


@pytest.mark.parametrize("chunks, said", [
    # libpng's sRGB file (the Kodak set's): its gAMA and cHRM say sRGB's, as outputs are read
    ([(b"gAMA", (45455).to_bytes(4, "big")), (b"sRGB", b"\x00")], []),
    ([(b"gAMA", (45455).to_bytes(4, "big")), (b"cHRM", SRGB_CHRM)], []),
    ([(b"gAMA", (45455).to_bytes(4, "big"))], []),
    ([(b"gAMA", (100000).to_bytes(4, "big"))], ["PNG gamma"]),   # a linear scan's
    # Adobe RGB's green
    ([(b"cHRM", SRGB_CHRM[:16] + (21000).to_bytes(4, "big") + SRGB_CHRM[20:])], ["PNG gamma"]),
    # ImageMagick stamps every PNG it writes with the file's times, which the output keeps
    ([_text("date:create", "2012-02-07T13:25:16+01:00"),
      _text("date:modify", "2012-02-07T13:25:16+01:00")], []),
    ([_text("date:create", "2012-02-07"), _text("Title", "Harbour")], ["PNG text"]),
])
def test_png_metadata_an_sRGB_output_shows_alike_is_not_said_left_out(tmp_path, chunks, said):
    from runtime.imageio import metadata_left_out
    assert metadata_left_out(_png(tmp_path / "a.png", *chunks)) == said


def _left_out_said(model, lib, out, capsys, rc: int = 0) -> list[str]:
    """The closing lines of `sharpen run` over folder `lib` into `out` that say what its
    outputs are written without."""
    from runtime_fixtures import run_cli
    assert run_cli(["run", "--model", str(model), "--source", str(lib), "--quiet", "--out",
                    str(out)]) == rc
    return [ln for ln in capsys.readouterr().err.splitlines() if "written without" in ln]

def test_the_exiftool_line_is_given_only_where_it_copies_something(tmp_path, onnx_model,
                                                                   capsys):
    """A PNG's text and a TIFF's EXIF are no XMP or IPTC: the exiftool line that copies those
    (-XMP-dc:all -IPTC:all) copied nothing from them, though given. A stranger's file name is
    said as shown_path shows it, not as a newline that splits the closing line."""
    lib = tmp_path / "lib"
    lib.mkdir()
    _png(lib / "a\nb.png", _text("Title", "Harbour"))
    out = tmp_path / "out"
    said = _left_out_said(onnx_model, lib, out, capsys)
    assert said == [f"sharpen run: {out}: 1 image is written without its photo's PNG text "
                    "(a\\nb.png): only EXIF (of a JPEG, PNG or WebP) and the colour profile "
                    "are kept"], said


def test_the_exiftool_line_names_the_first_photo_with_xmp_or_iptc(tmp_path, onnx_model,
                                                                  capsys):
    """The line's example was the library's first image left out of, a PNG whose text it
    does not copy, where the second's XMP was what it copies."""
    lib = tmp_path / "lib"
    lib.mkdir()
    _png(lib / "a.png", _text("Title", "Harbour"))
    Image.new("RGB", (56, 40)).save(lib / "b.jpg", xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>')
    out = tmp_path / "out"
    said = _left_out_said(onnx_model, lib, out, capsys)
    assert len(said) == 1 and said[0].endswith(
        f"(a.png, ...): only EXIF (of a JPEG, PNG or WebP) and the colour profile are kept; "
        f"exiftool -tagsFromFile {lib}/b.jpg -XMP-dc:all -IPTC:all {out}/b.jpg copies the "
        "captions and keywords of b.jpg (each photo's likewise)"), said


def _irb(resource: int, data: bytes) -> bytes:
    """One Photoshop image resource block (8BIM, id, an empty name, size, data)."""
    return (b"8BIM" + resource.to_bytes(2, "big") + b"\x00\x00" + len(data).to_bytes(4, "big")
            + data + bytes(len(data) & 1))


@pytest.mark.parametrize("resources, said", [
    # Photoshop's JPEG of no caption: resolution and a digest, no IPTC record
    ([(0x03ED, bytes(16)), (0x0425, bytes(16))], []),
    ([(0x03ED, bytes(16)), (0x0404, b"\x1c\x02\x78\x00\x07Harbour")], ["IPTC"]),
])
def test_a_jpeg_s_photoshop_segment_is_iptc_only_where_it_holds_an_iptc_record(tmp_path,
                                                                             resources, said):
    from runtime.imageio import metadata_left_out
    Image.new("RGB", (8, 6), (90, 120, 40)).save(tmp_path / "a.jpg")
    body = b"Photoshop 3.0\x00" + b"".join(_irb(r, d) for r, d in resources)
    jpeg = (tmp_path / "a.jpg").read_bytes()
    segment = b"\xff\xed" + (2 + len(body)).to_bytes(2, "big") + body
    assert metadata_left_out(jpeg[:2] + segment + jpeg[2:]) == said


def test_an_image_that_could_not_be_read_is_not_counted_as_written_without(tmp_path,
                                                                          onnx_model, capsys):
    """A float TIFF (its caption in ImageDescription), skipped as unreadable after its bytes
    were looked at, was counted among the images written without their metadata, and named
    as the first of them."""
    lib = tmp_path / "lib"
    lib.mkdir()
    Image.fromarray(np.zeros((40, 56), np.float32)).save(lib / "a.tif", tiffinfo={270: "Pier"})
    _png(lib / "b.png", _text("Title", "Harbour"))
    out = tmp_path / "out"
    said = _left_out_said(onnx_model, lib, out, capsys, rc=1)   # a.tif: unreadable
    assert said == [f"sharpen run: {out}: 1 image is written without its photo's PNG text "
                    "(b.png): only EXIF (of a JPEG, PNG or WebP) and the colour profile are "
                    "kept"], said


@pytest.mark.parametrize("ext", ["jpg", "png", "webp", "tif"])
def test_left_out_metadata_of_a_cut_or_damaged_file_is_what_was_found(tmp_path, ext):
    """The photos are anyone's: a file cut anywhere, or with a length or count garbled, gives
    what was found so far, never an exception from the closing line's count."""
    from runtime.imageio import KINDS_LEFT_OUT, metadata_left_out
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>'
    if ext == "png":   # Pillow writes no XMP into a PNG
        data = _png(tmp_path / "a.png", _text("Title", "Harbour"), (b"eXIf", _exif().tobytes()))
    else:
        Image.new("RGB", (8, 6), (90, 120, 40)).save(tmp_path / f"a.{ext}", xmp=xmp,
                                                      exif=_exif(), tiffinfo={270: "Harbour"})
        data = (tmp_path / f"a.{ext}").read_bytes()
    rng = np.random.default_rng(0)
    for n in range(len(data)):
        damaged = bytearray(data)
        damaged[rng.integers(0, len(data))] = rng.integers(0, 256)
        for case in (data[:n], bytes(damaged)):
            assert set(metadata_left_out(case)) <= set(KINDS_LEFT_OUT)
    assert metadata_left_out(data), data[:64]   # the whole file's are found
