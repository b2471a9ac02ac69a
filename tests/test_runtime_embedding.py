"""The runtime embedded in an app's own loop (no `sharpen`): what the app hands run_stream and
FrameProcessor, and what it gets back when it stops a run itself or passes the wrong thing."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from types import ModuleType

import pytest

from runtime_fixtures import (make_onnx_model, onnx_model, runtime_warnings, textured_frame,
                              write_video)

from runtime import FrameError, FrameProcessor, Sink, load_backend, run_stream

__all__ = ["onnx_model"]  # the fixture is used by name


class Collect(Sink):
    def __init__(self) -> None:
        self.names: list[str] = []
        self.closed = 0

    def write(self, original, sharpened, name) -> None:
        self.names.append(name)

    def close(self) -> None:
        self.closed += 1


def test_a_keyboard_interrupt_from_the_apps_sink_reaches_the_app(onnx_model):
    """A sink that raises KeyboardInterrupt (an app's "q pressed, quit") had it swallowed as if
    it were a second Ctrl-C: run_stream returned the stats of a finished run (`interrupted`
    False), and the app's loop went on. It is now raised, after the output is closed, with
    the stats on it, as any other error of the sink."""
    class QuitOnSecond(Collect):
        def write(self, original, sharpened, name) -> None:
            super().write(original, sharpened, name)
            if len(self.names) == 2:
                raise KeyboardInterrupt

    before = set(threading.enumerate())
    backend = load_backend(onnx_model, threads=1)
    sink = QuitOnSecond()
    frames = (textured_frame(i % 8) for i in range(100))
    with pytest.raises(KeyboardInterrupt) as stopped:
        run_stream(backend, frames, sink)
    assert sink.closed == 1 and stopped.value.stats["frames_processed"] == 1
    assert set(threading.enumerate()) == before
    assert not backend.closed   # the app's backend is the app's to close


def test_an_output_of_another_kind_is_refused_before_the_model_loads(tmp_path):
    """A callback function (or the Sink class itself, not an instance) as the output met
    "expected str, bytes or os.PathLike object, not function" from deep inside, after the model
    had loaded; it now names what output takes, first."""
    missing = tmp_path / "no-such-model.onnx"
    frames = [textured_frame(0)]
    with pytest.raises(TypeError, match=r"run_stream: output must be a file or folder path, "
                                        r"a runtime\.Sink or None, got function \(a callback\? "
                                        r"subclass runtime\.Sink"):
        run_stream(missing, frames, lambda original, sharpened, name: None)
    with pytest.raises(TypeError, match=r"got the class Collect: pass an instance, Collect\(\)"):
        run_stream(missing, frames, Collect)
    with pytest.raises(TypeError, match=r"got int"):
        run_stream(missing, frames, 3)


def test_a_stats_path_of_another_kind_is_named_before_the_model_loads(tmp_path):
    """stats_path takes one path or a list of them: an int met "'int' object is not
    iterable", and a None in the list stat()'s message, neither naming stats_path."""
    missing = tmp_path / "no-such-model.onnx"
    for given, got in ((5, "int"), ([str(tmp_path / "s.json"), None], "NoneType"),
                       ([b"s.json"], "bytes")):
        with pytest.raises(TypeError, match=rf"run_stream: stats_path must be a file path or "
                                            rf"a list of them \(s\.json, s\.prom\), got {got}"):
            run_stream(missing, [textured_frame(0)], stats_path=given)


def test_a_frame_processor_in_tiles_warns_of_seams_as_run_stream_does(tmp_path):
    """FrameProcessor(backend, tile=48) on a model that sees 40 px ran tiles whose seams can
    show without a word, where run_stream(..., tile=48) warned: the warnings were the
    pipeline's. The processor now says them at its first frame, and run_stream once."""
    model = make_onnx_model(tmp_path / "rf40.onnx")
    model.with_name(model.name + ".json").write_text(json.dumps({"receptive_field": 40}))
    backend = load_backend(model, threads=1)
    frame = textured_frame(1, h=96, w=128)
    capped = "the automatic overlap 24 is capped at half of tile=48"
    with runtime_warnings() as said:
        proc = FrameProcessor(backend, tile=48)
        proc(frame)
    assert said[0].startswith(capped) and "2.8x the frame's pixels computed" in said[1], said
    with runtime_warnings() as said:
        proc(frame)
    assert said == []   # once, not per frame
    with runtime_warnings() as said:
        FrameProcessor(backend, tile=96)(frame)   # overlap 40: the receptive field
    assert said == []
    with runtime_warnings() as said:
        run_stream(backend, [frame, frame], Collect(), tile=48)
    assert len([m for m in said if m.startswith(capped)]) == 1, said


def test_each_frames_stage_times_come_from_the_api(onnx_model):
    """FrameProcessor's `timings` argument took a Timings, which `runtime` did not export (an
    app timing its own loop had to find runtime.prepost)."""
    from runtime import Timings

    proc = FrameProcessor(load_backend(onnx_model, threads=1))
    t = Timings()
    proc(textured_frame(0), t)
    assert t.pre > 0 and t.infer > 0 and t.post > 0


def test_an_unknown_keyword_is_named_with_the_option_meant(onnx_model):
    """A misspelt keyword met dataclasses' "StreamOptions.__init__() got an unexpected keyword
    argument 'tiles'", which names neither run_stream nor what it takes."""
    with pytest.raises(ValueError, match=r"^run_stream: unknown option tiles=64 \(did you "
                                         r"mean tile=\?\); it takes .*\bmax_frames\b"):
        run_stream(onnx_model, [textured_frame(0)], None, tiles=64)
    with pytest.raises(ValueError, match=r"^run_stream: unknown options bogus=1, other=2; it "
                                         r"takes show, view, "):
        run_stream(onnx_model, [textured_frame(0)], None, bogus=1, other=2)


def test_the_api_is_listed_to_completion_and_type_checkers():
    """`import runtime` loads its names on first use: dir(runtime), which IPython and Jupyter
    complete from, gave Any, annotations and importlib and none of the API, and type checkers
    (and editors' hover help) saw each name as the Any of a module __getattr__."""
    import ast

    import runtime

    submodules = {n for n in dir(runtime) if isinstance(getattr(runtime, n), ModuleType)
                  and getattr(runtime, n).__name__ == f"runtime.{n}"}
    assert sorted(n for n in dir(runtime) if not n.startswith("_")
                  and n not in submodules) == runtime.__all__
    tree = ast.parse(Path(runtime.__file__).read_text())
    checked = next(node for node in tree.body if isinstance(node, ast.If)
                   and ast.unparse(node.test) == "TYPE_CHECKING")
    imported = {(imp.module, alias.name) for imp in checked.body
                for alias in imp.names if isinstance(imp, ast.ImportFrom)}
    assert imported == {(where.lstrip("."), name) for name, where in runtime._API.items()}


def test_frames_an_apps_source_gave_before_failing_are_written(onnx_model):
    """A generator of frames (a batch job's reader, a web server's frames) that raised at its
    seventh frame lost the frames it had given and the pipeline had queued: the run stopped at
    once, as for Ctrl-C. A lossless run now writes them, then raises the source's error."""
    def frames():
        for i in range(6):
            yield textured_frame(i)
        raise OSError("the reader failed")

    sink = Collect()
    with pytest.raises(OSError, match="the reader failed") as failed:
        run_stream(load_backend(onnx_model, threads=1), frames(), sink)
    assert sink.names == [f"frame_{i:06d}" for i in range(6)] and sink.closed == 1
    assert failed.value.stats["frames_processed"] == 6


def test_a_model_of_another_kind_is_named_as_run_streams(onnx_model):
    """run_stream(FrameProcessor(...), ...) or a model of None said "load_backend: path must be
    a model file path", naming a function the app never called."""
    proc = FrameProcessor(load_backend(onnx_model, threads=1))
    with pytest.raises(TypeError, match=r"^run_stream: model must be a model file path "
                                        r"\(\.engine, \.onnx, \.plan, \.tflite\) or a Backend "
                                        r"from load_backend, got FrameProcessor \(its backend: "
                                        r"proc\.backend\)"):
        run_stream(proc, [textured_frame(0)], None)
    with pytest.raises(TypeError, match=r"^run_stream: model must be .* got NoneType$"):
        run_stream(None, [textured_frame(0)], None)


def test_an_apps_stop_event_is_the_apps_to_set(onnx_model):
    """run_stream set the app's stop_event itself at the end of every run, so the app's next
    run with the same event (one Stop button for a loop over clips) read no frame and failed
    with "source '<arrays>' produced no frames". The event is now only read: the app sets it
    to stop a run, and one already set is refused by name."""
    backend = load_backend(onnx_model, threads=1)
    stop = threading.Event()
    frames = [textured_frame(i) for i in range(5)]
    for _ in range(2):
        sink = Collect()
        assert run_stream(backend, frames, sink, stop_event=stop)["frames_processed"] == 5
        assert len(sink.names) == 5 and not stop.is_set()

    class StopAtThird(Collect):
        def write(self, original, sharpened, name) -> None:
            super().write(original, sharpened, name)
            if len(self.names) == 3:
                stop.set()

    sink = StopAtThird()
    endless = (textured_frame(i % 8) for i in iter(int, 1))
    assert run_stream(backend, endless, sink, stop_event=stop)["frames_processed"] >= 3
    assert stop.is_set() and sink.closed == 1
    with pytest.raises(ValueError, match=r"^run_stream: stop_event is already set \(clear\(\) "
                                         r"it to run again\)$"):
        run_stream(backend, frames, Collect(), stop_event=stop)


def test_a_video_source_run_stream_closed_is_said_to_be_closed(tmp_path, onnx_model):
    """An opened video Source, given to run_stream a second time (or after its `with`), read no
    frame from its released capture and said "produced no frames", as of an empty file."""
    from runtime import SourceError, open_source

    video = tmp_path / "in.mp4"
    write_video(video, n=4)
    backend = load_backend(onnx_model, threads=1)
    src = open_source(str(video))
    assert run_stream(backend, src, Collect(), max_frames=2)["frames_processed"] == 2
    with pytest.raises(SourceError, match=r"is closed: run_stream closes the Source it is given "
                                          r"when the run ends; open it again \(open_source\)"):
        run_stream(backend, src, Collect())


def test_the_installed_runtime_is_typed_for_an_apps_type_checker(tmp_path):
    """Without a py.typed marker (PEP 561), mypy stopped at `import runtime` in an app that
    installed the project ("module is installed, but missing library stubs or py.typed
    marker") and pyright took none of its annotations; the wheel now carries it."""
    import shutil
    import subprocess
    import sys
    import zipfile

    # Built offline (--no-build-isolation), as tests/test_packaging.py builds: the backend
    # must be in this environment (the dev extra has it; a venv from before it may not).
    pytest.importorskip("hatchling", reason="the build backend (hatchling, in the dev extra) "
                                            "is not installed here: pip install hatchling")
    repo = Path(__file__).resolve().parents[1]
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo / name, tmp_path / name)
    shutil.copytree(repo / "runtime", tmp_path / "runtime",
                    ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(tmp_path / "dist"), str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0 and "No module named pip" in r.stderr:
        pytest.skip("pip is not installed here")
    assert r.returncode == 0, r.stderr
    wheel, = (tmp_path / "dist").glob("*.whl")
    assert "runtime/py.typed" in zipfile.ZipFile(wheel).namelist()


def test_a_misspelt_keyword_of_run_stream_itself_is_named(onnx_model):
    """`stop_evnet=` (or `outptu=`) was said to be no option, with StreamOptions' fields as all
    run_stream takes: stop_event and output were not among them, nor suggested."""
    frames = [textured_frame(0)]
    with pytest.raises(ValueError, match=r"^run_stream: unknown option stop_evnet=.* \(did you "
                                         r"mean stop_event=\?\); it takes .*\bcompare, audio, "
                                         r"lossless, quality, codec, crf, encoder_preset, "
                                         r"resume, overwrite, "
                                         r"exif, metadata, segment, keep_segments, keep_gb, "
                                         r"service_notify, "
                                         r"besides output, options, "
                                         r"stop_event, flags, note$"):
        run_stream(onnx_model, frames, None, stop_evnet=threading.Event())
    with pytest.raises(ValueError, match=r"\(did you mean output=\?\)"):
        run_stream(onnx_model, frames, outptu="x.mp4")


def test_a_bare_keyboard_interrupt_from_the_sink_is_named_in_the_stats(tmp_path, onnx_model):
    """A sink's `raise KeyboardInterrupt` ended the run with "error": "" in the stats (its
    message is empty): the summary and --stats file said an error came and not which."""
    class Quit(Collect):
        def write(self, original, sharpened, name) -> None:
            raise KeyboardInterrupt

    stats = tmp_path / "s.json"
    with pytest.raises(KeyboardInterrupt) as stopped:
        run_stream(load_backend(onnx_model, threads=1), [textured_frame(0)] * 3, Quit(),
                   stats_path=stats)
    assert stopped.value.stats["error"] == "KeyboardInterrupt"
    assert json.loads(stats.read_text())["error"] == "KeyboardInterrupt"


def test_dir_of_runtime_keeps_the_modules_own_names():
    """dir(runtime) gave the API alone: `runtime.pipeline`, once imported, and `__file__` and
    `__path__` were gone from completion and from tools that walk a module's names."""
    import runtime
    import runtime.pipeline  # noqa: F401 - imported so that dir() lists it

    names = dir(runtime)
    assert {"pipeline", "__file__", "__path__", "__doc__"} <= set(names)
    assert set(runtime.__all__) <= set(names) and names == sorted(names)


def test_a_closed_source_is_refused_before_the_model_loads(tmp_path):
    """A closed video Source was refused only once the model had loaded (seconds for a TensorRT
    engine), after any error of the model's: the missing model here was said first."""
    from runtime import SourceError, open_source

    video = tmp_path / "in.mp4"
    write_video(video, n=2)
    with open_source(str(video)) as src:
        pass
    with pytest.raises(SourceError, match=r"is closed: run_stream closes the Source"):
        run_stream(tmp_path / "no-such-model.onnx", src, Collect())


def test_a_stop_event_set_while_the_run_opens_returns_the_summary(onnx_model):
    """The app's Stop pressed while run_stream opened (a TensorRT engine takes seconds to load)
    ended the run with SourceError "source '<arrays>' produced no frames", where a stop_event
    returns the run's summary."""
    stop = threading.Event()

    def frames():
        stop.set()   # the first frame is read once the model is loaded and the output open
        yield from (textured_frame(i) for i in range(5))

    sink = Collect()
    stats = run_stream(load_backend(onnx_model, threads=1), frames(), sink, stop_event=stop)
    assert stats["frames_processed"] == 0 and stats["interrupted"] is False
    assert sink.names == [] and sink.closed == 1 and stats["model"].endswith(".onnx")


def test_an_array_source_over_a_spent_generator_is_said_to_be_closed(onnx_model):
    """An ArraySource over a generator, given to a second run, had nothing left to read and
    said "produced no frames"; one over a list can be run again."""
    from runtime import SourceError
    from runtime.sources import ArraySource

    backend = load_backend(onnx_model, threads=1)
    frames = [textured_frame(i) for i in range(3)]
    listed = ArraySource(frames)
    for _ in range(2):
        assert run_stream(backend, listed, Collect())["frames_processed"] == 3
    once = ArraySource(f for f in frames)
    assert run_stream(backend, once, Collect())["frames_processed"] == 3
    with pytest.raises(SourceError, match="give it a new iterator: the one it holds "
                                          r"\(a generator\) was read by a run"):
        run_stream(backend, once, Collect())


@pytest.mark.parametrize("raised", [KeyboardInterrupt, SystemExit])
def test_a_sinks_close_interrupted_still_closes_the_source_and_the_backend(
        tmp_path, onnx_model, monkeypatch, raised):
    """A Ctrl-C landing while the app's sink flushed in close() (a KeyboardInterrupt, or a
    SystemExit from the app's handler) skipped closing the source and the backend: the video
    (a camera, in use) stayed open and ONNX Runtime's threads ran on. Every closer runs; the
    interrupt still reaches the app, with the stats on it."""
    import runtime.pipeline as pipeline
    from runtime import open_source

    loaded = []

    def load_and_keep(*args, **kwargs):
        loaded.append(real_load(*args, **kwargs))
        return loaded[-1]

    real_load = pipeline.load_backend
    monkeypatch.setattr(pipeline, "load_backend", load_and_keep)

    class InterruptedFlush(Collect):
        def close(self) -> None:
            super().close()
            raise raised

    video = tmp_path / "in.mp4"
    write_video(video, n=3)
    src, sink, stats = open_source(str(video)), InterruptedFlush(), tmp_path / "s.json"
    with pytest.raises(raised) as stopped:
        run_stream(onnx_model, src, sink, threads=1, stats_path=stats)
    assert sink.closed == 1 and src.closed and not src.cap.isOpened()
    assert len(loaded) == 1 and loaded[0].closed
    assert stopped.value.stats["frames_processed"] == 3
    assert json.loads(stats.read_text())["error"] == type(stopped.value).__name__


def test_a_multi_sink_closes_every_sink_when_one_is_interrupted():
    """A MultiSink (an app's sink with --show's window) stopped at the first close that raised
    KeyboardInterrupt: the window, or a second output, stayed open. Once all are closed the
    interrupt is raised, even after another sink's error, which it carries as its context."""
    from runtime.sinks import MultiSink

    class Interrupted(Collect):
        def close(self) -> None:
            super().close()
            raise KeyboardInterrupt

    class Failing(Collect):
        def close(self) -> None:
            super().close()
            raise OSError("disk full")

    sinks = [Failing(), Interrupted(), Collect()]
    with pytest.raises(KeyboardInterrupt) as stopped:
        MultiSink(sinks).close()
    assert [s.closed for s in sinks] == [1, 1, 1]
    assert str(stopped.value.__context__) == "disk full"
    sinks = [Failing(), Collect()]
    with pytest.raises(OSError, match="disk full"):
        MultiSink(sinks).close()
    assert [s.closed for s in sinks] == [1, 1]


def test_a_ctrl_c_in_the_sinks_close_after_an_error_still_reaches_the_app(onnx_model):
    """After an error (a frame the sink could not write), a Ctrl-C during the sink's close
    must not be dropped for that error: the app's `except SinkError: continue` would go on to
    its next stream. The interrupt is raised, the error as its context."""
    from runtime import SinkError

    class Broken(Collect):
        def write(self, original, sharpened, name) -> None:
            raise SinkError("cannot write frame")

        def close(self) -> None:
            super().close()
            raise KeyboardInterrupt

    sink = Broken()
    with pytest.raises(KeyboardInterrupt) as stopped:
        run_stream(load_backend(onnx_model, threads=1), [textured_frame(0)] * 3, sink)
    assert sink.closed == 1 and isinstance(stopped.value.__context__, SinkError)
    assert stopped.value.stats["error"] == "KeyboardInterrupt"


def test_rgb_frames_are_sharpened_as_their_bgr_twins_with_rgb_true(tmp_path):
    """An app holding RGB frames (PIL, imageio, a GStreamer RGB appsink) had no way to say so:
    the model, which mixes channels, saw red as blue without a word (the shipped `fast` on a
    Kodak photo: 36.8 dB from its own BGR result, about its whole sharpening). rgb=True takes
    RGB (or RGBA) in and gives RGB out, the BGR frame's result with its channels swapped."""
    import numpy as np
    from runtime_fixtures import one_op_model

    # Green out = half red + half green: a model that tells red from blue.
    w = np.array([[1, 0, 0], [0.5, 0.5, 0], [0, 0, 1]], np.float32)[:, :, None, None]
    model = one_op_model(tmp_path / "mix.onnx", "Conv", ["input", "w"], {"w": w},
                         kernel_shape=[1, 1])
    backend = load_backend(model, threads=1)
    bgr = textured_frame(2, h=37, w=53)
    bgr[..., 2] = 255 - bgr[..., 2]   # red unlike blue
    want_bgr = FrameProcessor(backend)(bgr)
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    proc = FrameProcessor(backend, rgb=True)
    assert np.array_equal(proc(rgb), want_bgr[..., ::-1])
    assert np.array_equal(proc(bgr[..., ::-1]), want_bgr[..., ::-1])   # a view as well
    assert not np.array_equal(FrameProcessor(backend)(rgb), want_bgr[..., ::-1])
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    with runtime_warnings() as said:
        assert np.array_equal(proc(rgba), want_bgr[..., ::-1])
    assert said == ["RGBA frames are converted to RGB (alpha dropped)"]
    assert np.array_equal(FrameProcessor(backend, tile=16, rgb=True)(rgb),
                          FrameProcessor(backend, tile=16)(bgr)[..., ::-1])
    with pytest.raises(FrameError, match=r"expected RGB uint8 or uint16 \(a float RGB image "
                                         r"in \[0, 1\]: \(np.clip\(img, 0, 1\) \* 255\)"):
        proc(rgb / 255.0)


def test_each_kind_of_failure_a_handler_catches_is_named_in_the_api(onnx_model):
    """A web handler maps failures to answers (a bad upload, a model that cannot run, a frame
    too big for the memory): FrameProcessor raised FrameOutOfMemory, which `runtime` did not
    export, so the handler caught MemoryError and could not tell it from its own."""
    import numpy as np
    import runtime

    kinds = {"FrameError": ValueError, "ModelError": RuntimeError,
             "FrameOutOfMemory": MemoryError, "SourceError": RuntimeError,
             "SinkError": RuntimeError,
             # encode_bytes' (an answer too big to encode), as FrameOutOfMemory is the model's
             "ImageEncodeOutOfMemory": MemoryError,
             # decode_bytes' (memory, not the upload, at fault), an ImageReadError as well
             "ImageDecodeOutOfMemory": MemoryError}
    for name, base in kinds.items():
        assert name in runtime.__all__ and issubclass(getattr(runtime, name), base), name
    backend = load_backend(onnx_model, threads=1)
    with pytest.raises(runtime.FrameError, match="dtype float32"):
        FrameProcessor(backend)(np.zeros((8, 8, 3), np.float32))
    backend.close()
    with pytest.raises(runtime.ModelError, match="was closed"):
        FrameProcessor(backend)(textured_frame(0))


def test_an_rgb_processor_says_rgb_in_its_errors_and_warnings(onnx_model):
    """rgb=True is for apps holding PIL or imageio frames, yet a PIL image passed as it is was
    told to send "HxWx3 BGR", and an int64 RGB frame "expected BGR": the errors now name the
    layout the processor takes, and a PIL image gets its conversion."""
    import numpy as np
    from PIL import Image

    proc = FrameProcessor(load_backend(onnx_model, threads=1), rgb=True)
    with pytest.raises(FrameError, match=r"^expected a numpy image array \(HxWx3 RGB uint8 or "
                                         r"uint16\), got Image \(a PIL image: "
                                         r"np.asarray\(img.convert\('RGB'\)\)\)$"):
        proc(Image.new("P", (16, 16)))   # np.asarray(img) alone: the palette's indices
    with pytest.raises(FrameError, match=r"dtype int64: expected RGB uint8 or uint16 \(an "):
        proc(np.zeros((16, 16, 3), np.int64))
    with runtime_warnings() as said:
        proc(np.zeros((16, 16), np.uint8))
    assert said == ["grayscale frames are converted to RGB"]
    with pytest.raises(FrameError, match=r"got Image \(a PIL image: np.asarray\(img.convert\("
                                         r"'RGB'\)\)\[\.\.\., ::-1\]\)$"):
        FrameProcessor(proc.backend)(Image.new("RGB", (16, 16)))


def test_rgb_takes_true_or_false_only(onnx_model):
    """rgb="false" (a config file's string) was true, and swapped the channels of every frame
    without a word; None too is no answer to "are the frames RGB"."""
    import numpy as np

    backend = load_backend(onnx_model, threads=1)
    for bad in ("false", "yes", None, 1):
        with pytest.raises(TypeError, match=rf"^rgb must be True or False, got {bad!r}$"):
            FrameProcessor(backend, rgb=bad)
    assert FrameProcessor(backend, rgb=np.bool_(True)).rgb is True
