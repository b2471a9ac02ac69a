"""A photo library (year/month folders of camera files) sharpened in one run, as a
photographer batch-processes one: the output mirrors its folders."""
from __future__ import annotations

import cv2
import numpy as np

from runtime.pipeline import run_stream
from runtime_fixtures import onnx_model

__all__ = ["onnx_model"]  # the fixture is used by name


def _library(root, names: list[str]) -> None:
    for k, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / name), np.full((24, 32, 3), 40 + 20 * k, np.uint8))


def test_a_libraries_folders_are_mirrored_in_the_output(tmp_path, onnx_model):
    """Unique names came out flat in one folder: a library of thousands lost its year/month
    order, and a later month's IMG_0001 (a camera's counter wraps) then moved the rest."""
    names = ["2024/01/IMG_0001.jpg", "2024/02/IMG_0002.png", "2025/12/IMG_0003.jpg"]
    _library(tmp_path / "lib", names)
    run_stream(onnx_model, str(tmp_path / "lib" / "**" / "*"), tmp_path / "out")
    got = sorted(p.relative_to(tmp_path / "out").as_posix()
                 for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert got == names


def test_a_folder_source_says_the_images_in_its_subfolders_are_not_read(tmp_path,
                                                                        onnx_model):
    """A library with a few loose photos at its top read those alone and said nothing of the
    year folders below: the run looked done."""
    import pytest

    from runtime import SharpenWarning
    _library(tmp_path / "lib", ["loose.jpg", "2024/01/a.jpg", "2024/02/b.jpg"])
    with pytest.warns(SharpenWarning, match=r"subfolders hold 2 more image files, not read: "
                                            r"pass '.*\*\*/\*' \(quoted\)"):
        run_stream(onnx_model, str(tmp_path / "lib"), tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").rglob("*")] == ["loose.jpg"]


def test_a_glob_says_the_photos_it_cannot_read_and_not_their_sidecars(tmp_path, onnx_model):
    """'lib/**/*' left a phone's HEIC photos out without a word, so the library looked done;
    a folder said them among every Lightroom .xmp sidecar, which are no pictures."""
    import warnings

    import pytest

    from runtime import SharpenWarning
    _library(tmp_path / "lib", ["2024/01/a.jpg", "2024/02/b.jpg"])
    (tmp_path / "lib" / "2024" / "01" / "a.xmp").write_text("<x:xmpmeta/>")
    (tmp_path / "lib" / "2024" / "02" / "IMG_9.HEIC").write_bytes(b"\0" * 16)
    with pytest.warns(SharpenWarning, match=r"1 file that is not an image skipped "
                                            r"\(IMG_9\.HEIC\)") as said:
        run_stream(onnx_model, str(tmp_path / "lib" / "**" / "*"), tmp_path / "out")
    assert not any("xmp" in str(w.message) for w in said), [str(w.message) for w in said]
    (tmp_path / "lib" / "2024" / "02" / "IMG_9.HEIC").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error", SharpenWarning)   # the sidecar alone: nothing to say
        run_stream(onnx_model, str(tmp_path / "lib" / "2024" / "01"), tmp_path / "out2")


def _jpeg_tables(path) -> dict:
    from PIL import Image
    with Image.open(path) as im:
        return im.quantization


def test_jpeg_quality_is_settable_and_its_default_is_said(tmp_path, onnx_model):
    """A JPEG output took OpenCV's fixed quality 95, which no option changed: a library came
    out half again as large as the camera's files, with no way to match them."""
    import pytest
    from PIL import Image

    _library(tmp_path / "lib", ["a.jpg", "b.jpg"])
    ref = tmp_path / "ref"
    ref.mkdir()
    for q in (95, 80):   # libjpeg's tables at each quality, as Pillow writes them
        Image.new("RGB", (8, 8)).save(ref / f"q{q}.jpg", quality=q)
    run_stream(onnx_model, str(tmp_path / "lib"), tmp_path / "default")
    run_stream(onnx_model, str(tmp_path / "lib"), tmp_path / "q80", quality=80)
    assert _jpeg_tables(tmp_path / "default" / "a.jpg") == _jpeg_tables(ref / "q95.jpg")
    assert _jpeg_tables(tmp_path / "q80" / "b.jpg") == _jpeg_tables(ref / "q80.jpg")
    for bad in (0, 101):
        with pytest.raises(ValueError, match=f"quality must be 1 to 100, got {bad}"):
            run_stream(onnx_model, str(tmp_path / "lib"), tmp_path / "bad", quality=bad)
    from runtime import SharpenWarning
    with pytest.warns(SharpenWarning, match=r"quality=80 sets JPEG .*/v\.mp4 is a video, whose "
                                            r"quality crf sets"):
        run_stream(onnx_model, str(tmp_path / "lib"), tmp_path / "v.mp4", quality=80)


def test_a_jpeg_at_quality_90_or_more_keeps_full_colour_resolution(tmp_path, onnx_model):
    """A JPEG output was written with its colour at half the width and height (4:2:0, OpenCV's
    default) at every quality: a saturated edge (a red sign, a blue sky against a roof) came
    out blurred in colour from the sharpening tool. At 90 or more, where the file is kept
    for its quality, colour keeps every pixel (4:4:4), as ImageMagick writes it."""
    from PIL import Image, JpegImagePlugin

    rng = np.random.default_rng(0)
    src = tmp_path / "signs.png"
    red_blue = np.where(rng.random((48, 64, 1)) < 0.5, [255, 0, 0], [0, 0, 255])
    Image.fromarray(red_blue.astype(np.uint8)).save(src)
    Image.fromarray(red_blue[..., 0].astype(np.uint8)).save(tmp_path / "grey.png")
    errors = {}
    for quality, sampling in ((None, 0), (90, 0), (89, 2), (80, 2)):
        out = tmp_path / f"q{quality}.jpg"
        run_stream(onnx_model, str(src), out, quality=quality)
        with Image.open(out) as im:
            assert JpegImagePlugin.get_sampling(im) == sampling, quality
            errors[quality] = np.abs(np.asarray(im).astype(int) - red_blue).mean()
    assert errors[None] < errors[89] / 2   # each pixel's own red or blue, not the average
    run_stream(onnx_model, str(tmp_path / "grey.png"), tmp_path / "grey.jpg")
    with Image.open(tmp_path / "grey.jpg") as im:
        assert im.mode == "L"


def test_a_library_keeps_the_folders_below_the_glob_not_below_its_photos_common_one(
        tmp_path, onnx_model):
    """A library of one year's months came out as 01/, 02/ (its year lost, the common folder
    of the photos taken as the root), and a later run with the next year's photos added wrote
    2024/01/... beside them: the layout moved with the photos, so --resume redid them all."""
    _library(tmp_path / "lib", ["2024/01/IMG_0001.jpg", "2024/02/IMG_0002.jpg"])
    run_stream(onnx_model, str(tmp_path / "lib" / "**" / "*"), tmp_path / "out")
    got = sorted(p.relative_to(tmp_path / "out").as_posix()
                 for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert got == ["2024/01/IMG_0001.jpg", "2024/02/IMG_0002.jpg"]


def test_a_glob_through_dot_dot_writes_nothing_outside_the_output_folder(tmp_path,
                                                                          onnx_model):
    """'lib/2024/*/../../*.jpg' named its outputs '01/../../top.jpg': written beside the
    output folder, over whatever was there."""
    _library(tmp_path / "lib", ["top.jpg", "2024/01/a.jpg", "2024/02/b.jpg"])
    (tmp_path / "out").mkdir()
    run_stream(onnx_model, str(tmp_path / "lib" / "2024" / "*" / ".." / ".." / "*.jpg"),
               tmp_path / "out" / "sharp")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib", "out"]
    assert [p.name for p in (tmp_path / "out").iterdir()
            if not p.name.endswith(".made.json")] == ["sharp"]   # what made it, beside it
    for p in (tmp_path / "out").rglob("*"):
        assert ".." not in p.relative_to(tmp_path / "out").parts, p


def test_quality_for_an_output_it_does_not_apply_to_is_said(tmp_path, onnx_model):
    """--quality 80 with a PNG or TIFF output (or a folder of PNG photos) was taken without a
    word: the user believed the files had been made smaller."""
    import warnings

    import pytest

    from runtime import SharpenWarning
    _library(tmp_path / "png", ["a.png", "b.png"])
    _library(tmp_path / "mixed", ["a.png", "b.jpg"])
    for out in ("one.png", "one.tif"):
        with pytest.warns(SharpenWarning, match=rf"quality=80 sets JPEG .*{out}.* does not"):
            run_stream(onnx_model, str(tmp_path / "png" / "a.png"), tmp_path / out,
                       quality=80)
    with pytest.warns(SharpenWarning, match=r"quality=80 sets JPEG .*\.png.* does not apply"):
        run_stream(onnx_model, str(tmp_path / "png"), tmp_path / "pngs", quality=80)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SharpenWarning)   # its JPEG takes it: nothing to say
        run_stream(onnx_model, str(tmp_path / "mixed"), tmp_path / "mixed-out", quality=80)
        run_stream(onnx_model, str(tmp_path / "png" / "a.png"), tmp_path / "one.webp",
                   quality=80)


def test_an_output_folder_the_glob_would_read_again_is_refused_before_the_run(tmp_path,
                                                                               onnx_model):
    """'lib/**/*' into lib/sharp ran once, then its rerun and its --resume were refused as
    writing into 'an input folder' (its own results, read as photos): a stopped library run
    could not go on. Refused at once instead; an output the glob does not reach is fine."""
    import pytest

    from runtime.sinks import SinkError
    _library(tmp_path / "lib", ["a.jpg", "2024/01/b.jpg"])
    with pytest.raises(SinkError, match=r"sharp.* the source .*\*\*.* would read .* again"):
        run_stream(onnx_model, str(tmp_path / "lib" / "**" / "*"), tmp_path / "lib" / "sharp")
    assert not (tmp_path / "lib" / "sharp").exists()
    run_stream(onnx_model, str(tmp_path / "lib" / "*.jpg"), tmp_path / "lib" / "sharp")
    assert [p.name for p in (tmp_path / "lib" / "sharp").iterdir()] == ["a.jpg"]
    # A video there is no image folder the glob reads again.
    run_stream(onnx_model, str(tmp_path / "lib" / "**" / "*"), tmp_path / "lib" / "v.mp4")
    assert (tmp_path / "lib" / "v.mp4").stat().st_size > 0


def test_a_stopped_library_run_counts_the_images_its_folder_holds(tmp_path, onnx_model):
    """A library's run stopped part-way said 'holds 1 of 3 frames only' of a folder of
    photos, and after a --resume stopped again counted only that run's images, as though
    the photos kept from the first run were not there."""
    from runtime.cli import _interrupted_note

    _library(tmp_path / "lib", ["2024/01/a.jpg", "2024/02/b.jpg", "2024/03/c.jpg"])
    out = tmp_path / "out"
    stats = run_stream(onnx_model, str(tmp_path / "lib" / "**" / "*"), out, quiet=True,
                       max_frames=1)
    stats["interrupted"] = True
    assert f"{out} holds 1 of 3 images only" in _interrupted_note(stats, str(out))
    # A resumed run of the 3 left, 10 kept from the stopped run, stopped after 1
    resumed = {**stats, "kept_images": 10, "resumable": True}
    assert f"{out} holds 11 of 13 images only" in _interrupted_note(resumed, str(out))
    none_yet = {**resumed, "frames_processed": 0}
    assert f"{out} holds the 10 images it held" in _interrupted_note(none_yet, str(out))


def _noise_library(root, sizes: dict[str, tuple[int, int]]) -> None:
    rng = np.random.default_rng(0)
    for name, (h, w) in sizes.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / name), rng.integers(0, 256, (h, w, 3), np.uint8))


def test_a_large_photo_is_tiled_without_tile_and_said(tmp_path, onnx_model):
    """A 24-megapixel JPEG took 2 GB sharpened whole: a library run on a small board died
    unless the user knew --tile. Above the automatic threshold (forced down here) a photo is
    tiled as --tile 512 tiles it, and said; a smaller one stays whole."""
    from runtime.options import AUTO_TILE
    _noise_library(tmp_path / "lib", {"a/big.png": (560, 600), "b/small.png": (40, 48)})
    src = str(tmp_path / "lib" / "**" / "*")
    notes: list[str] = []
    stats = run_stream(onnx_model, src, tmp_path / "auto", tile=None,
                       auto_tile_above=100 * 100, note=notes.append)
    assert stats["auto_tiled"] == 1 and stats["tile"] == 0, stats
    run_stream(onnx_model, src, tmp_path / "tiled", tile=AUTO_TILE)
    whole = run_stream(onnx_model, src, tmp_path / "whole", tile=0, auto_tile_above=100 * 100)
    assert "auto_tiled" not in whole, whole   # tile=0 (--tile 0): every frame whole

    def read(out: str, name: str) -> np.ndarray:
        return cv2.imread(str(tmp_path / out / name))
    assert np.array_equal(read("auto", "a/big.png"), read("tiled", "a/big.png"))
    assert np.array_equal(read("auto", "b/small.png"), read("whole", "b/small.png"))
    said = [n for n in notes if "tiles" in n]
    assert len(said) == 1 and "big.png" in said[0] and "600x560" in said[0], notes
    assert f"{AUTO_TILE}-pixel tiles" in said[0] and "tile=0" in said[0], said


def test_a_rerun_keeps_the_outputs_there_and_sharpens_only_new_photos(tmp_path, onnx_model):
    """A library run again after it finished (new photos added) sharpened every photo again,
    replacing outputs the user had edited since without a word: outputs already there are
    kept and said, a photo changed since its output sharpened again, and overwrite=True
    redoes them all."""
    import os

    import pytest

    from runtime import SharpenWarning
    _library(tmp_path / "lib", ["2024/01/a.jpg", "2024/02/b.png"])
    src, out = str(tmp_path / "lib" / "**" / "*"), tmp_path / "out"
    run_stream(onnx_model, src, out)
    edited = out / "2024" / "01" / "a.jpg"
    edited.write_bytes(b"edited in another program")
    _library(tmp_path / "lib", ["2024/01/a.jpg", "2024/02/b.png", "2025/c.jpg"][2:])
    changed = tmp_path / "lib" / "2024" / "02" / "b.png"
    os.utime(out / "2024" / "02" / "b.png", ns=(10**18, 10**18))   # made before the change
    notes: list[str] = []
    with pytest.warns(SharpenWarning, match=r"1 image of .* changed since .* got its output "
                                            r"\(2024/02/b\.png\): sharpened again"):
        stats = run_stream(onnx_model, src, out, note=notes.append)
    assert stats["frames_processed"] == 2, stats   # c.jpg, new, and b.png, changed
    assert edited.read_bytes() == b"edited in another program"
    assert (out / "2025" / "c.jpg").is_file()
    assert (out / "2024" / "02" / "b.png").stat().st_mtime_ns >= changed.stat().st_mtime_ns
    said = " ".join(notes)
    assert "1 image already in" in said and "overwrite=True" in said, notes
    notes.clear()
    stats = run_stream(onnx_model, src, out, note=notes.append)
    assert stats["frames_processed"] == 0 and "3 images already in" in " ".join(notes), notes
    run_stream(onnx_model, src, out, overwrite=True)
    assert edited.read_bytes() != b"edited in another program"


def test_outputs_keep_their_photos_modification_time(tmp_path, onnx_model):
    """Every output was dated by the run, so a photo manager sorting by file date put a
    decade of photos on one day: an output takes its photo's times, as `cp -p` and
    `rsync -t` keep them, and a rerun still knows it for done."""
    import os
    names = ["2014/07/a.jpg", "2019/01/b.png"]
    _library(tmp_path / "lib", names)
    for k, name in enumerate(names):
        os.utime(tmp_path / "lib" / name, ns=(10**18 + k, 1_400_000_000 * 10**9 + k))
    src, out = str(tmp_path / "lib" / "**" / "*"), tmp_path / "out"
    run_stream(onnx_model, src, out)
    for name in names:
        assert (out / name).stat().st_mtime_ns == (tmp_path / "lib" / name).stat().st_mtime_ns
    assert run_stream(onnx_model, src, out)["frames_processed"] == 0
    one = tmp_path / "one.jpg"
    run_stream(onnx_model, tmp_path / "lib" / names[0], one)
    assert one.stat().st_mtime_ns == (tmp_path / "lib" / names[0]).stat().st_mtime_ns


def test_a_rerun_with_another_model_or_option_says_the_outputs_it_keeps_were_made_otherwise(
        tmp_path, onnx_model):
    """A rerun into the folder kept every output there whatever made it: a user who reran
    with a new model, another quality or --no-exif (to publish without GPS) got the old
    outputs, the GPS in them, with a note alone. The rerun warns, naming what changed, until
    overwrite=True makes them again."""
    import pytest

    from runtime import SharpenWarning
    from runtime_fixtures import make_onnx_model, runtime_warnings
    other = make_onnx_model(tmp_path / "other.onnx", kind="int8")
    _library(tmp_path / "lib", ["2024/01/a.jpg", "2024/02/b.jpg"])
    src, out = str(tmp_path / "lib" / "**" / "*"), tmp_path / "out"
    run_stream(onnx_model, src, out)
    for given, said in (({"model": other}, r"the model \(.*\) differs"),
                        ({"quality": 50}, r"quality was not given, now 50")):
        kw = {"model": onnx_model, **given}
        with pytest.warns(SharpenWarning, match=r"2 images kept in .*out were made otherwise "
                                                rf"than this run makes them: .*{said}.*"
                                                r"overwrite=True sharpens them again"):
            stats = run_stream(kw.pop("model"), src, out, **kw)
        assert stats["frames_processed"] == 0, stats
    # exif=False: the outputs there that hold EXIF are sharpened again; these hold none (their
    # photos had none), so what made them differs in nothing they hold, and is not said.
    with runtime_warnings() as warned:
        assert run_stream(onnx_model, src, out, exif=False)["frames_processed"] == 0
    assert not [w for w in warned if "otherwise" in w], warned
    with runtime_warnings() as warned:
        run_stream(onnx_model, src, out)   # as they were made: no warning
    assert not [w for w in warned if "otherwise" in w], warned
    _library(tmp_path / "lib", ["2024/01/a.jpg", "2024/02/b.jpg", "2025/c.jpg"][2:])
    with pytest.warns(SharpenWarning, match="2 images kept"):
        assert run_stream(other, src, out)["frames_processed"] == 1   # c.jpg, by `other`
    with pytest.warns(SharpenWarning, match="3 images kept .* the model"):   # c.jpg's
        run_stream(onnx_model, src, out)
    run_stream(other, src, out, overwrite=True)
    with runtime_warnings() as warned:
        run_stream(other, src, out)
    assert not [w for w in warned if "otherwise" in w], warned


def test_a_glob_librarys_one_folder_keeps_its_name_so_a_rerun_finds_its_outputs(tmp_path,
                                                                                  onnx_model):
    """'lib/**/*' with this year's folder alone came out flat (out/a.jpg); with the next
    year's folder added it came out as 2024/a.jpg, 2025/c.jpg: the rerun found none of its
    outputs, sharpened every photo again and left the flat ones behind."""
    _library(tmp_path / "lib", ["2024/a.jpg", "2024/b.jpg"])
    src, out = str(tmp_path / "lib" / "**" / "*"), tmp_path / "out"
    run_stream(onnx_model, src, out)
    _library(tmp_path / "lib", ["2024/a.jpg", "2024/b.jpg", "2025/c.jpg"][2:])
    assert run_stream(onnx_model, src, out)["frames_processed"] == 1
    got = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert got == ["2024/a.jpg", "2024/b.jpg", "2025/c.jpg"]


def test_outputs_on_a_file_system_of_coarser_times_are_not_taken_for_older_than_their_photos(
        tmp_path, onnx_model):
    """An output folder on a NAS share or a FAT card keeps times to 100 ns or 2 s: an output
    given its photo's time read older than the photo, and every rerun sharpened the whole
    library again, warning that every photo had changed."""
    import os

    from runtime_fixtures import runtime_warnings
    names = ["2024/a.jpg", "2024/b.jpg"]
    _library(tmp_path / "lib", names)
    src, out = str(tmp_path / "lib" / "**" / "*"), tmp_path / "out"
    for name in names:   # a photo's time to the nanosecond, as ext4 keeps it
        os.utime(tmp_path / "lib" / name, ns=(1_700_000_001_234_567_891,) * 2)
    run_stream(onnx_model, src, out)
    for name in names:   # as FAT kept it: to 2 s, rounded down
        os.utime(out / name, ns=(1_700_000_000 * 10**9,) * 2)
    with runtime_warnings() as warned:
        assert run_stream(onnx_model, src, out)["frames_processed"] == 0
    assert not [w for w in warned if "changed since" in w], warned


def test_an_output_takes_the_time_its_photo_had_when_read_not_a_later_one(tmp_path):
    """A photo still being written (an import into the library) when the run read it: its
    output took the time the photo had after the read, so a rerun took the finished photo
    for the one sharpened and never made it again. The time is the one before the read."""
    import os
    import threading
    from pathlib import Path

    from runtime.image_sources import ImageSource
    _library(tmp_path, ["a.jpg", "b.jpg"])
    photos = [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    for p in photos:
        os.utime(p, ns=(10**18, 10**18))

    class Importing(ImageSource):   # the real reader, with the import going on meanwhile
        def _decode(self, i: int) -> np.ndarray:
            img = super()._decode(i)
            os.utime(self.paths[i], ns=(2 * 10**18, 2 * 10**18))
            return img

    src = Importing(str(tmp_path / "*.jpg"), [Path(p) for p in photos], tmp_path)
    src.times = {}
    assert len(list(src.frames(threading.Event()))) == 2
    assert src.times == {"a.jpg": (10**18, 10**18), "b.jpg": (10**18, 10**18)}


def test_an_automatically_tiled_photo_s_advice_on_the_overlap_names_the_tile_it_needs(
        tmp_path):
    """Above the size a photo is tiled without --tile, and an export that recorded no
    receptive field was told to 'give a wider --overlap': given alone, --overlap has no
    effect without --tile (said so). The advice names the tile to give with it."""
    import onnx

    from runtime.options import AUTO_TILE
    from runtime_fixtures import make_onnx_model, runtime_warnings
    old = make_onnx_model(tmp_path / "old.onnx")
    m = onnx.load(str(old))
    onnx.helper.set_model_props(m, {"student": "fast", "multiple": "8", "precision": "fp32",
                                    "arch_args": '{"width": 8, "blocks": 1}',
                                    "layout": "NCHW RGB float32 [0,1]"})
    onnx.save(m, str(old))
    _noise_library(tmp_path / "lib", {"big.png": (600, 640), "b.png": (20, 24)})
    with runtime_warnings() as said:
        run_stream(old, str(tmp_path / "lib" / "*"), tmp_path / "out", tile=None,
                   auto_tile_above=100 * 100)
    said = [w for w in said if "records no receptive field" in w]
    assert len(said) == 1 and said[0].endswith(
        f"give a wider overlap with tile={AUTO_TILE}"), said
