"""Options and shared state of the benchmark suite (`pytest benchmarks/`).

Self-contained: nothing here depends on the root pyproject's [tool.pytest.ini_options] (whose
testpaths is tests/), so the suite runs by path. Quick mode (default, for CI): 640x360 only,
few rounds, 4 held-out images. --full: 1920x1080, 1280x720 and 640x360, calibrated rounds
with more warm-up, every held-out image. Results go to pytest-benchmark (--benchmark-json,
--benchmark-compare, --benchmark-autosave work as usual) with the fields of
`benchmarks.latency.result_row` in each benchmark's extra_info, and the quality the run measured
in the JSON (`pytest_benchmark_update_json`). Per-frame timings are grouped by size; the
teacher's (time of its timed tiles) and the stream's (a whole run) have groups of their own,
so that pytest-benchmark does not rank them against frame times.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Optional

import pytest

ROOT = Path(__file__).resolve().parents[1]

from benchmarks.artifacts import BenchError, path_unless_named  # noqa: E402
from benchmarks.given import (bench_students, given_ids, model_files,  # noqa: E402
                              resolve_models)
from benchmarks.options import (ALIGN_HELP, DEFAULT_MIN_SSIM_RATIO, GATE_GAIN,  # noqa: E402
                                GATE_RATIO, REAL_NOGT_HELP, REAL_PAIRS_HELP, add_to_pytest,
                                align_unused)
from benchmarks.latency import (BACKENDS, SIZES_FULL, SIZES_REDUCED, parse_sizes,  # noqa: E402
                                size_label, stream_size)

# pytest-benchmark settings per mode (a `benchmark` marker on each latency test).
MODE_MARKS = {
    "quick": dict(max_time=0.5, min_rounds=3, warmup=True, warmup_iterations=1),
    "full": dict(max_time=3.0, min_rounds=5, warmup=True, warmup_iterations=2),
}


def pytest_addoption(parser):
    g = parser.getgroup("sharpen-bench", "sharpen benchmarks (benchmarks/)")
    add_to_pytest(g)   # the options `sharpen bench` shares (benchmarks/options.py)
    # As `sharpen bench` words them (benchmarks/options.py).
    (ratio, r, ratio_help), (gain, gn, gain_help) = GATE_RATIO, GATE_GAIN
    g.addoption(ratio, type=float, default=DEFAULT_MIN_SSIM_RATIO, metavar=r,
                help=f"{ratio_help} (default {DEFAULT_MIN_SSIM_RATIO:g})")
    g.addoption(gain, type=float, default=None, metavar=gn, help=gain_help)
    g.addoption("--real-pairs", dest="real_pairs", default=None, metavar="SPEC",
                help=REAL_PAIRS_HELP + " (test_real_blur)")
    g.addoption("--real-nogt", dest="real_nogt", default=None, nargs="+", action="extend",
                metavar="PATH", help=REAL_NOGT_HELP.format(clips=", a clip's frames included")
                + " (test_real_blur)")
    from distill.alignment import ALIGNS
    g.addoption("--align", dest="align", choices=ALIGNS, default="none",
                help=f"{ALIGN_HELP} (test_real_blur; default: none)")


def _mode(config) -> str:
    return "full" if config.getoption("full") else "quick"


def _sizes(config) -> list[tuple[int, int]]:
    try:
        sizes = parse_sizes(config.getoption("sizes"))
    except ValueError as e:
        raise pytest.UsageError(f"--sizes: {e}") from None
    return sizes or list(SIZES_FULL if _mode(config) == "full" else SIZES_REDUCED)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    # Once, on the controller under xdist's -n (its workers configure too): in pytest's
    # warnings summary, as `sharpen bench` says it before any work.
    if not hasattr(config, "workerinput") and (idle := align_unused(
            config.getoption("align"), config.getoption("real_pairs"))):
        from runtime.warn import SharpenWarning
        config.issue_config_time_warning(SharpenWarning(idle), stacklevel=2)


def pytest_generate_tests(metafunc):
    config = metafunc.config
    if "student" in metafunc.fixturenames:
        try:
            names = [s.name for s in bench_students(config.getoption("students"),
                                                    config.getoption("models"),
                                                    hash_files=False)]
        except BenchError as e:
            raise pytest.UsageError(str(e)) from None
        ids = None
        if not names:   # as the --model files' tests below: said, not "empty parameter set"
            names, ids = _skipped("no students: --model without --weights measures those "
                                  "files alone")
        metafunc.parametrize("student", names, ids=ids, scope="session")
    if "given_model" in metafunc.fixturenames:   # --model files, by their paths
        # One test per file, however it is spelled (a.onnx ./a.onnx), as `sharpen bench`.
        by_file: dict = {}
        try:
            files = model_files(config.getoption("models"))
        except BenchError as e:
            raise pytest.UsageError(str(e)) from None
        for p in files:
            by_file.setdefault(Path(p).resolve(), p)
        paths: list = list(by_file.values())
        ids = given_ids(paths)
        if not paths:   # said as what it is, not as pytest's "got empty parameter set"
            paths, ids = _skipped("no --model files given (exported models measured as they are)")
        metafunc.parametrize("given_model", paths, ids=ids, scope="session")
    # The backend before the size: ids join in this order, and `-k "fast-ort-int8"` (the
    # student and the backend as one id) selected nothing with the size between them.
    if "backend_key" in metafunc.fixturenames:
        keys = [b.key for b in BACKENDS]
        metafunc.parametrize("backend_key", keys, ids=keys)
    if "size" in metafunc.fixturenames:
        sizes = _sizes(config)
        metafunc.parametrize("size", sizes, ids=[size_label(s) for s in sizes])


def _skipped(reason: str) -> tuple[list, list[str]]:
    """The values and ids of a parameter with nothing to run: one test, id `none`, skipped
    with `reason`."""
    return [pytest.param(None, marks=pytest.mark.skip(reason=reason))], ["none"]


# pytest-benchmark's options for the marker's keys: one given on the command line wins.
TIMING_FLAGS = {"--benchmark-min-rounds": "min_rounds", "--benchmark-max-time": "max_time",
                "--benchmark-warmup": "warmup",
                "--benchmark-warmup-iterations": "warmup_iterations"}


def _given_timing(config) -> set[str]:
    """The marker keys whose pytest-benchmark option the user gave (command line, addopts,
    PYTEST_ADDOPTS): a marker's value is above the option's, so the mode's would hide it."""
    import shlex

    args = [*config.invocation_params.args, *config.getini("addopts"),
            *shlex.split(os.environ.get("PYTEST_ADDOPTS", ""))]
    return {key for flag, key in TIMING_FLAGS.items()
            if any(a == flag or a.startswith(flag + "=") for a in map(str, args))}


def pytest_collection_modifyitems(config, items):
    has_plugin = config.pluginmanager.hasplugin("pytest_benchmark") or \
        config.pluginmanager.hasplugin("benchmark")
    given = _given_timing(config)
    mark = {k: v for k, v in MODE_MARKS[_mode(config)].items() if k not in given}
    no_real = not (config.getoption("real_pairs") or config.getoption("real_nogt"))
    for item in items:
        if no_real and getattr(item, "originalname", None) == "test_real_blur":
            item.add_marker(pytest.mark.skip(reason="no --real-pairs or --real-nogt given"))
        if "benchmark" not in getattr(item, "fixturenames", ()):
            continue
        if not has_plugin:
            item.add_marker(pytest.mark.skip(reason="pytest-benchmark is not installed "
                                                    "(pip install -e '.[dev]')"))
            continue
        if item.get_closest_marker("benchmark") is None:
            params = getattr(getattr(item, "callspec", None), "params", {})
            size = params.get("size")
            # Only per-frame times share a group (pytest-benchmark ranks a group's rows against
            # each other): the teacher's timing is of its timed tiles, a fraction of a frame,
            # and the stream's of a whole run, model loading included.
            if item.originalname == "test_teacher_tiled":
                group = (f"teacher at {size_label(size)}: time of the timed tile(s), not per "
                         "frame (see extra_info.ms)")
            elif item.originalname == "test_stream_pipeline":
                group = ("stream pipeline: time of the whole run (see extra_info.ms and "
                         "p90_ms per frame, fps for throughput)")
            else:
                group = f"latency {size_label(size)}" if size else item.originalname
            item.add_marker(pytest.mark.benchmark(group=group, **mark))


class BenchContext:
    """Session state shared by the latency and quality tests (built lazily)."""

    def __init__(self, config, cache_dir: Path, items: Optional[list] = None):
        self.config = config
        self.items = items   # the tests selected to run (after -k, -m), None: all
        self.mode = _mode(config)
        self.full = self.mode == "full"
        self.target_fps = float(config.getoption("--target-fps"))
        self.cpu_target_fps = float(config.getoption("--cpu-target-fps"))
        for flag, fps in (("--target-fps", self.target_fps),
                          ("--cpu-target-fps", self.cpu_target_fps)):
            if not 0 < fps < float("inf"):   # as `sharpen bench`: NaN and inf too
                raise pytest.UsageError(f"{flag} must be a finite number > 0, got {fps:g}")
        from benchmarks.ship import targets_of
        # The budgets `sharpen bench`'s What to ship judges by (benchmarks/ship.py).
        self.targets = targets_of({"target_fps": self.target_fps,
                                   "cpu_target_fps": self.cpu_target_fps})
        self.min_ssim_ratio = float(config.getoption("--min-ssim-ratio"))
        self.min_ssim_gain = config.getoption("--min-ssim-gain")
        for flag, v in (("--min-ssim-ratio", self.min_ssim_ratio),
                        ("--min-ssim-gain", self.min_ssim_gain)):
            if v is not None and not 0 <= v <= 1.5:   # as `sharpen bench`
                raise pytest.UsageError(f"{flag} must be in [0, 1.5], got {v:g}")
        self.teacher_weights = config.getoption("--teacher-weights")
        self.teacher_config = config.getoption("--teacher-config")
        self.data = config.getoption("--data")
        self.formats = config.getoption("formats")
        from optimize.export import FORMATS, parse_formats
        try:   # once, here: each latency test that exported failed on it with a traceback
            self._requested = parse_formats(self.formats) or list(FORMATS)
        except ValueError as e:
            raise pytest.UsageError(str(e)) from None
        self.calib_count = int(config.getoption("calib_count"))
        self.seed = int(config.getoption("seed"))
        if self.seed < 0:
            raise pytest.UsageError(f"--seed must be >= 0, got {self.seed}")
        if self.calib_count < 1:
            raise pytest.UsageError(f"--calib-count must be >= 1, got {self.calib_count}")
        self.calib = config.getoption("calib")
        from benchmarks.artifacts import check_calib
        try:   # as `sharpen bench` checks it, before any export
            check_calib(self.calib)
        except BenchError as e:
            raise pytest.UsageError(str(e)) from None
        self.tile = int(config.getoption("tile") or 0)
        if self.tile < 0:   # as `sharpen bench`
            raise pytest.UsageError(f"--tile must be >= 0 (0: whole frames), got {self.tile}")
        self.threads = int(config.getoption("threads") or 0)
        from runtime.host import check_threads
        try:   # as `sharpen bench` checks it
            check_threads(self.threads, "--threads")
        except ValueError as e:
            raise pytest.UsageError(str(e)) from None
        # PyTorch eager on a CPU limit's count, as `sharpen bench` runs it (its default
        # counted the cores a quota leaves idle): the two timed one model on two counts.
        from distill.teacher import set_torch_threads
        set_torch_threads(None)
        cache = config.getoption("cache")
        from benchmarks.artifacts import default_cache_root
        from benchmarks.quality import QUICK_LIMIT

        self.cache = Path(cache) if cache else default_cache_root()
        limit = config.getoption("limit")
        self.limit = limit if limit is not None else (None if self.full else QUICK_LIMIT)
        self.sizes = _sizes(config)
        self.teacher_rounds = 3 if self.full else 1
        self.teacher_n_tiles = 2 if self.full else 1
        from benchmarks.report import BenchOptions
        # As `sharpen bench` streams: the report's pytest line times the report's stream.
        frames = config.getoption("stream_frames")
        if frames is not None and frames < 0:
            raise pytest.UsageError(f"--stream-frames must be >= 0 (0 skips the streaming "
                                    f"row), got {frames}")
        self.stream_frames = BenchOptions(out="", full=self.full,
                                          stream_frames=frames).mode()["stream_frames"]
        self.stream_size = stream_size(self.sizes, self.full)
        self.students = {s.name: s for s in bench_students(config.getoption("students"),
                                                           config.getoption("models"))}
        self.float_layers = config.getoption("float_layers")
        from benchmarks.artifacts import check_float_layers
        check_float_layers(list(self.students.values()), self.float_layers)   # as the bench
        # Read now, as `sharpen bench` reads them: a bad file is a usage error before any work.
        self.models = resolve_models(config.getoption("models"), list(self.students),
                                     self.threads)
        self.real_pairs = config.getoption("real_pairs")
        self.real_nogt = config.getoption("real_nogt")
        self.align = config.getoption("align")
        self._real: Optional[dict] = None
        from benchmarks.options import real_blur_limits
        self.real_limits = real_blur_limits(limit, self.full)
        if self._runs_real_blur():   # read now, as `sharpen bench` does: a bad path stops it
            from benchmarks.report import _check_real_blur

            for flag, spec in (("--real-pairs", self.real_pairs),
                               ("--real-nogt", self.real_nogt)):
                if spec:
                    _check_real_blur(flag, spec, self.real_limits[flag],
                                     need_gt=flag == "--real-pairs")
        self._pairs = None
        if self._runs_quality():   # read now, as `sharpen bench` does: a bad --data stops it
            from benchmarks.quality import load_pairs   # before the latency tests' minutes
            self._pairs = load_pairs(self.data, self.limit)
        self.teacher_ms: dict[str, float] = {}
        self.results: list[dict] = []
        self._artifacts: dict = {}
        # student -> [why it failed, said in a test yet, the reason its quality rows give]
        self._failed: dict[str, list] = {}
        self._format_failed: set = set()    # (student, format) whose export failure was said
        self._teacher_outputs = None
        self._teacher_tiles = None
        self._quality = None
        self._quality_error: Optional[BaseException] = None
        self._videos: dict = {}
        self._too_big: dict = {}
        self._video_dir = cache_dir
        self.session: Optional[pytest.Session] = None   # the bench fixture's (usage_exit)

    def model(self, path: str):
        """The --model file given as `path` (a `given_model` parameter)."""
        return next(gm for gm in self.models if gm.path == Path(path).resolve())

    def say(self, msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    def artifacts(self, name: str):
        """Student `name`'s exported artifacts, built (or taken from the cache) once per
        session. An export that raises fails the first test that needs it and skips the
        others, with the reason (see `student_failed`)."""
        self.student_failed(name)
        arts = self._export(name)
        self.student_failed(name)
        return arts

    def artifact(self, name: str, fmt: str):
        """Student `name`'s `fmt` artifact (see `artifacts`). One whose build failed while the
        student's other formats built fails the first test that needs it, with the export's
        reason and no traceback, and skips the later ones: its latency tests skipped it as if
        this machine could not run the format, and `-k ort-int8` passed with the INT8 export
        broken. Only that format: the student's others are measured."""
        art = self.artifacts(name).get(fmt)
        if art.status == "skipped" or art.usable:
            return art
        why = art.reason or "it wrote no file"
        msg = (f"student {name}{path_unless_named(self.students[name].path, why)}: exporting it "
               f"to {fmt} failed: {why}")
        if (name, fmt) not in self._format_failed:
            self._format_failed.add((name, fmt))
            pytest.fail(msg, pytrace=False)
        pytest.skip(f"{msg} (a failure at the first test that needed it)")

    def _export(self, name: str):
        """`artifacts` without the test outcome: None where the export raised (the reason
        kept for `student_failed`), so that the quality evaluation goes on without `name`.
        None too for a student that failed before (its checkpoint, read for quick mode's
        memory bound): exported anyway, it took minutes and was evaluated where the summary
        said it was not."""
        if name in self._failed:
            return None
        if name not in self._artifacts:
            from benchmarks.artifacts import buildable_formats

            used = self.formats_used(name)
            fmts = ", ".join(buildable_formats(used)) if used else "no format"
            self._artifacts[name] = self.attempt(name, f"exporting it to {fmts}",
                                                 lambda: self._ensure_or_failed(name, used))
        return self._artifacts[name]

    def _ensure_or_failed(self, name: str, used: list[str]):
        """`_ensure`, or where the export raised for a sound checkpoint, its formats failed
        with the reason: the student is not failed, so its PyTorch eager tests, which need only
        the checkpoint, run whether they come before or after the first test that exported
        (they were skipped after it). A checkpoint's failure raises on: the student's."""
        from benchmarks.artifacts import checkpoint_failed, failed_artifacts, failure_reason

        partial: dict = {}
        try:
            return self._ensure(name, used, partial)
        except Exception as e:  # noqa: BLE001 - sorted below; `attempt` takes the student's
            if checkpoint_failed(self.students[name], e):
                raise
            # (those reused from the cache or built before it raised are measured)
            arts = failed_artifacts(self.students[name], self.cache, used,
                                    failure_reason(name, e), self.float_layers, status="error",
                                    kept=partial.get("items"))
            return self._unselected_skipped(arts, used)

    def _ensure(self, name: str, used: list[str], partial: Optional[dict] = None):
        """ensure_artifacts for the formats `used`; the others of --formats as skipped, no
        selected test using them."""
        from benchmarks.artifacts import ensure_artifacts

        st = self.students[name]
        if used:
            arts = ensure_artifacts(st, self.cache, used, self.calib_count, quiet=True,
                                    say=self.say, float_layers=self.float_layers,
                                    calib=self.calib, seed=self.seed, partial=partial)
        else:
            arts = self._nothing_to_export(name)
        return self._unselected_skipped(arts, used)

    def _nothing_to_export(self, name: str):
        """Student `name`'s ArtifactSet where no selected test uses a format: each skipped
        (nor a cache folder to name)."""
        from benchmarks.artifacts import NOT_REQUESTED, Artifact, ArtifactSet
        from optimize.export import FORMATS

        return ArtifactSet(self.students[name], self.cache,
                           {f: Artifact(f, FORMATS[f].precision, "skipped", reason=NOT_REQUESTED)
                            for f in FORMATS})

    def _unselected_skipped(self, arts, used: list[str]):
        """`arts` with the formats of --formats that no selected test uses as skipped."""
        from benchmarks.artifacts import NOT_SELECTED, Artifact
        from optimize.export import FORMATS

        for f in self._requested:
            if f not in used:
                arts.items[f] = Artifact(f, FORMATS[f].precision, "skipped", reason=NOT_SELECTED)
        return arts

    def _failed_artifacts(self, name: str):
        """The ArtifactSet of student `name`, which failed: its formats "failed" with the
        reason, as `sharpen bench` gives a student whose export raised."""
        from benchmarks.artifacts import failed_artifacts

        used = self.formats_used(name)
        if not used:   # failed_artifacts reads no format as every format
            return self._unselected_skipped(self._nothing_to_export(name), used)
        arts = failed_artifacts(self.students[name], self.cache, used, self._failed[name][2],
                                self.float_layers)
        return self._unselected_skipped(arts, used)

    def formats_used(self, name: str) -> list[str]:
        """The formats of --formats that a selected test of student `name` uses: its latency
        tests' backends, its parity tests' formats, the stream's ONNX model. `-k fast` or
        `-k "onnx and not int8"` exported every format (minutes of INT8 calibration and TFLite
        conversion) for tests that use one or two."""
        if self.items is None:
            return list(self._requested)
        from benchmarks.latency import BACKEND_BY_KEY

        used = set()
        for it in self.items:
            p = getattr(getattr(it, "callspec", None), "params", {})
            if p.get("student") != name or it.get_closest_marker("skip") is not None:
                continue
            if "backend_key" in p:
                used.add(BACKEND_BY_KEY[p["backend_key"]].fmt)
            elif "fmt" in p:
                used.add(p["fmt"])
            elif it.originalname == "test_stream_pipeline" and self.stream_frames:
                used.add("onnx")
        return [f for f in self._requested if f in used]

    def attempt(self, name: str, doing: str, fn: Callable):
        """fn()'s result, or None where it raised: student `name` has then failed, its reason
        kept for `student_failed`. A backend's SkipCase passes through: it is a skip."""
        from benchmarks.artifacts import failure_reason
        from benchmarks.latency import SkipCase

        try:
            return fn()
        except SkipCase:
            raise
        except Exception as e:  # noqa: BLE001 - said as the test's failure, without a traceback
            why = failure_reason(name, e)   # as `sharpen bench` words it
            st = self.students[name]
            where = path_unless_named(st.path, why)
            self._failed.setdefault(name, [f"student {name}{where}: {doing} failed: {why}",
                                           False, f"{doing} failed: {why}"])
            return None

    def failed_students(self) -> list[str]:
        """Why each student that failed (its checkpoint, its export) did, so far."""
        return [f[0] for f in self._failed.values()]

    def student_failed(self, name: str) -> None:
        """Nothing while student `name` has not failed (`attempt`). After it has, the first
        test that asks fails with the reason, without a traceback, and the later ones skip
        with it: each of the student's tests failed with the same traceback, the reason at
        its end."""
        if name not in self._failed:
            return
        msg, said, _ = self._failed[name]
        if not said:
            self._failed[name][1] = True
            pytest.fail(msg, pytrace=False)
        pytest.skip(f"{msg} (a failure at the first test that needed it)")

    @property
    def teacher_outputs(self):
        if self._teacher_outputs is None:
            from benchmarks.quality import TeacherOutputs

            self._teacher_outputs = TeacherOutputs(self.teacher_weights, self.teacher_config,
                                                   cache_root=self.cache)
        return self._teacher_outputs

    @property
    def teacher_tiles(self):
        if self._teacher_tiles is None:
            from benchmarks.latency import TeacherTiles

            self._teacher_tiles = TeacherTiles(teacher=self.teacher_outputs.teacher,
                                               n_tiles=self.teacher_n_tiles)
        return self._teacher_tiles

    def quality(self):
        """The QualityResult over the held-out set, computed once per session."""
        if self._quality_error is not None:
            pytest.fail(f"quality evaluation failed earlier: {self._quality_error}",
                        pytrace=False)
        if self._quality is None:
            from benchmarks.quality import evaluate, load_pairs

            try:
                pairs, desc = self._pairs or load_pairs(self.data, self.limit)
                self._pairs = None
                # A student that failed (its export, its checkpoint) is not run: its rows say
                # "failed" with the reason, as in `sharpen bench`'s report; its tests say why.
                students = self.selected_students()
                sets = {n: self._failed_artifacts(n) if (arts := self._export(n)) is None
                        else arts for n in students}
                failed = {n: self._failed[n][2] for n in students if n in self._failed}
                self._quality = evaluate(pairs, self.teacher_outputs,
                                         [self.students[n] for n in students], sets,
                                         self.min_ssim_ratio, threads=self.threads,
                                         min_ssim_gain=self.min_ssim_gain,
                                         data_desc=desc, progress=False, n_crops=0,
                                         models=self.models, failed=failed)
            except BenchError as e:
                self._quality_error = e
                usage_exit(str(e), self.session)
            except Exception as e:
                self._quality_error = e
                raise
        return self._quality

    def real_blur(self) -> dict:
        """The real-blur tables of --real-pairs and --real-nogt, as report.json's `real_blur`
        (its figures left out: drawn into the session's temporary folder), computed once per
        session: the teacher, every student that has not failed and the --model files."""
        if self._real is None:
            from distill.evaluate import load_model_fn
            from benchmarks.realblur import run_real_blur
            from benchmarks.report import nogt_paths

            # A checkpoint that cannot be read fails its student alone, as in `sharpen bench`:
            # it stopped the set for every model.
            for name, st in self.students.items():
                if name not in self._failed:
                    self.attempt(name, "reading its checkpoint",
                                 lambda path=st.path: load_model_fn(path))
            failed = {n: f[2] for n, f in self._failed.items()}
            try:
                real = run_real_blur(self.real_pairs, nogt_paths(self.real_nogt),
                                     self.teacher_outputs, list(self.students.values()),
                                     self._video_dir / "real_blur", lambda msg: None,
                                     self.real_limits["--real-pairs"],
                                     self.real_limits["--real-nogt"], quiet=True,
                                     models=self.models, failed=failed,
                                     align=self.align)
            except (BenchError, ValueError) as e:   # e.g. every image unreadable after all
                real = {"error": f"real blur: {e}"}
            real.pop("figures", None)
            self._real = real
        if "error" in self._real:   # outside the except: said once, not chained
            pytest.fail(self._real["error"], pytrace=False)
        return self._real

    def _runs_real_blur(self) -> bool:
        """Whether test_real_blur is selected and not skipped (it has a real-blur set)."""
        return any(it.originalname == "test_real_blur" and it.get_closest_marker("skip") is None
                   for it in (self.items if self.items is not None else []))

    def _quality_items(self) -> list:
        """The selected tests, not skipped (--benchmark-only), that evaluate the held-out set:
        those of the bench that time nothing, but the real-blur one."""
        return [it for it in self.items or []
                if "bench" in it.fixturenames and "benchmark" not in it.fixturenames
                and it.get_closest_marker("skip") is None
                and it.originalname != "test_real_blur"]

    def _runs_quality(self) -> bool:
        """Whether a selected test evaluates quality."""
        return self.items is None or bool(self._quality_items())

    def selected_students(self) -> list[str]:
        """The students the quality evaluation covers: those with a selected quality test.
        `-k fast` exported and evaluated every default student (minutes of INT8 calibration
        for one nobody asked about), and a student's latency tests counted too: `-k
        "test_student_latency and pytorch or test_reference_rows"` exported and evaluated it
        in every format, for nothing but its timed rows' extra_info.quality. A --model file's
        parity compares it with its student's PyTorch output, so with one of those selected
        every student stays."""
        if self.items is None:
            return list(self.students)
        params = [getattr(getattr(it, "callspec", None), "params", {})
                  for it in self._quality_items()]
        if any(p.get("given_model") is not None for p in params):
            return list(self.students)
        chosen = {p["student"] for p in params if "student" in p}
        return [n for n in self.students if n in chosen]

    def too_big(self, student: str, size: tuple[int, int]) -> Optional[str]:
        """Why quick mode leaves `student` out at `size` (its activations past the quick
        bench's memory bound), as `sharpen bench` does; None: it is timed."""
        if self.full:
            return None
        key = (student, tuple(size))
        if key not in self._too_big:
            from benchmarks.latency import QUICK_MAX_ACTIVATION_GB
            from benchmarks.latency_run import _student_budget, _too_big

            st = self.students[student]
            self.student_failed(student)
            per_size = self.attempt(student, "reading its checkpoint",
                                    lambda: _student_budget(st.path, [key[1]], self.tile))
            self.student_failed(student)
            budget = {(student, wh): b for wh, b in per_size.items()}
            self._too_big[key] = _too_big([st], [key[1]], budget,
                                          QUICK_MAX_ACTIVATION_GB).get(key)
        return self._too_big[key]

    def judge(self, row: dict, stream: bool = False) -> dict:
        """The row's verdict as `sharpen bench` gives it (benchmarks/ship.py): its p90 within
        its backend's budget, --cpu-target-fps on the CPU, --target-fps on a GPU."""
        from benchmarks.ship import judge_row
        return judge_row(row, self.targets, stream=stream)

    def video(self, width: int, height: int, frames: int) -> Path:
        key = (width, height, frames)
        if key not in self._videos:
            from benchmarks.latency import make_video

            self._videos[key] = make_video(self._video_dir / f"bench_{width}x{height}_{frames}",
                                           width, height, frames)
        return self._videos[key]


# The key of an xdist worker's output that hands its usage error to the controller.
USAGE_ERROR = "sharpen_usage_error"


def usage_exit(msg: str, session: pytest.Session):
    """Stop the session on a bad option value, once, with the message and pytest's usage exit
    status: a UsageError raised in a fixture or a test was an ERROR with a traceback at every
    test that used it, and exit 1 as if tests had failed. Under xdist's -n the check runs on a
    worker, whose exit the controller took for a crash (an INTERNALERROR): the worker stops
    the run as -x does and hands the message on (pytest_testnodedown)."""
    said = f"usage error: {msg}"
    if (out := getattr(session.config, "workeroutput", None)) is not None:
        out[USAGE_ERROR] = said
        session.shouldstop = said   # said by the controller: "Interrupted: usage error: ..."
    pytest.exit(said, returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.hookimpl(optionalhook=True)   # xdist's, on its controller
def pytest_testnodedown(node, error):
    if said := getattr(node, "workeroutput", {}).get(USAGE_ERROR):
        node.config._sharpen_usage_error = said   # the exit status: pytest_sessionfinish


@pytest.fixture(scope="session")
def bench(request, tmp_path_factory) -> BenchContext:
    try:
        ctx = BenchContext(request.config, tmp_path_factory.mktemp("bench"),
                           items=list(request.session.items))
    except (BenchError, pytest.UsageError) as e:
        usage_exit(str(e), request.session)
    ctx.session = request.session   # for usage_exit in the quality evaluation
    request.config._sharpen_bench = ctx
    return ctx


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    ctx: Optional[BenchContext] = getattr(config, "_sharpen_bench", None)
    if line := compared_nothing(config):   # said first: a run of skips has no sections
        terminalreporter.write_line(line, yellow=True)
        if _compare_gate(config):
            terminalreporter.write_line(COMPARE_GATED_NOTHING, red=True)
    if ctx is None:
        return
    tr = terminalreporter
    if ctx.results:
        from benchmarks.ship import RULE, budgets_text
        tr.section("sharpen latency (per frame: median, p90)")
        # The rule and budgets of `sharpen bench`'s What to ship (benchmarks/ship.py), said.
        budgets = budgets_text({"target_fps": ctx.target_fps,
                                "cpu_target_fps": ctx.cpu_target_fps})
        tr.write_line(f"meets target: {RULE}; budget {budgets}")
        tr.write_line(f"mode {ctx.mode}; {runtime_threads_line(ctx.threads)}")
        for line in latency_lines(ctx.results):
            tr.write_line(line)
    if ctx._real and "error" not in ctx._real:
        _real_blur_summary(tr, ctx._real)
    if ctx._quality is not None:
        from benchmarks.quality import TABLE_HEADERS, format_table, held_out_label

        # As `sharpen bench`'s title: the embedded set's blur is synthetic, not real blur.
        held_out = {"settings": {"data": ctx.data}, "quality": {"images": ctx._quality.images}}
        tr.section(f"sharpen quality: mean over the held-out set ({held_out_label(held_out)})")
        tr.write_line(ctx._quality.data)
        rows = [TABLE_HEADERS] + format_table(ctx._quality)
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(TABLE_HEADERS))]
        for r in rows:
            tr.write_line("  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
        from benchmarks.artifacts import not_requested_line
        from benchmarks.quality import quality_legend
        if left := not_requested_line(ctx._quality.rows):
            tr.write_line(f"  {left}")
        chosen = ctx.selected_students()
        if left := [n for n in ctx.students if n not in chosen]:
            tr.write_line(f"  students with no selected quality test, not evaluated: "
                          f"{', '.join(left)}")
        if failed := [n for n in chosen if n in ctx._failed]:
            tr.write_line(f"  students that failed, not measured: {', '.join(failed)} (why: "
                          "their rows, their first test's failure)")
        tr.write_line(f"  {quality_legend(ctx._quality.settings)}")   # as `sharpen bench`
        for c in ctx._quality.checks:
            tr.write_line(f"  {'PASS' if c['passed'] else 'FAIL'}: {c['message']}")


COMPARE_GATED_NOTHING = ("--benchmark-compare-fail gated nothing: a usage error (exit 4), as "
                         "pytest-benchmark's without a saved run")


def _compare_gate(config) -> bool:
    """Whether --benchmark-compare-fail was given (a CI gate on the compare) to a run that
    times: --benchmark-skip and --benchmark-disable time nothing on purpose. The session's
    `disabled` is not asked: pytest-benchmark sets it under xdist's -n too, with a warning."""
    bs = getattr(config, "_benchmarksession", None)
    disabled = (config.getoption("benchmark_disable")
                and not config.getoption("benchmark_enable"))
    return bool(getattr(bs, "compare_fail", None)) and not (bs.skip or disabled)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    """A --benchmark-compare-fail gate that compared nothing fails the run: it exited 0, a CI
    job passing with nothing gated (pytest-benchmark stops the option only where no saved run
    loads, "--benchmark-compare-fail requires valid --benchmark-compare")."""
    if exitstatus == 0 and _compare_gate(session.config) and compared_nothing(session.config):
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
    if getattr(session.config, "_sharpen_usage_error", None):   # a worker's (usage_exit)
        session.exitstatus = pytest.ExitCode.USAGE_ERROR


def _real_blur_summary(tr, real: dict) -> None:
    """The real-blur tables as `sharpen bench` prints them (benchmarks/realblur.py)."""
    import io

    from benchmarks.realblur import print_tables

    tr.section("sharpen real blur")
    buf = io.StringIO()   # not a terminal: plain columns, a row a line
    print_tables(real, file=buf)
    for line in buf.getvalue().splitlines():
        tr.write_line(line)


def compared_nothing(config) -> Optional[str]:
    """A line where --benchmark-compare loaded a saved run and none of this run's benchmarks
    is in it: pytest-benchmark then says nothing, and --benchmark-compare-fail passes (-k
    test_student_latency on a --model run, whose rows are test_given_model_latency)."""
    bs = getattr(config, "_benchmarksession", None)
    if bs is None or not getattr(bs, "compare", None) or not bs.compared_mapping:
        return None
    saved = {name for names in bs.compared_mapping.values() for name in names}
    ran = [b for b in bs.benchmarks if b]
    if any(b.fullname in saved for b in ran):
        return None
    from runtime.console import count
    return (f"--benchmark-compare compared nothing: no benchmark this run timed is in "
            f"{', '.join(map(str, bs.compared_mapping))} ({count(len(ran), 'benchmark')} timed; "
            "-k test_given_model_latency selects --model files' rows, "
            "-k test_student_latency the students'; ids saved by an older version: save anew)")


def latency_lines(results: list[dict]) -> list[str]:
    """The summary's latency rows, in columns as wide as their longest cell: a --model file's
    name (`student-edge_int8 (student edge)`) is longer than a student's."""
    wm = max([16] + [len(r["model"]) for r in results])
    wb = max([20] + [len(r["backend_label"]) for r in results])
    ms = [_ms_text(r) for r in results]
    wt = max(len(t) for t in ms) if ms else 0
    out = []
    for r, t in zip(results, ms):
        sp = r.get("speedup_vs_teacher")
        out.append(
            f"  {r['model']:<{wm}} {r['backend_label']:<{wb}} {r['size']:>9}  "
            f"{t:<{wt}}  {r['fps']:>8.2f} fps  "
            f"{'meets' if r['meets_target'] else 'misses'} target ({_judged_text(r)})"
            + (f"  {sp:.0f}x teacher" if sp else "") + (f"  ({r['note']})"
                                                      if r.get("note") else ""))
    return out


def _ms_text(r: dict) -> str:
    p90 = r.get("p90_ms")
    return (f"{r['ms']:>10.1f} ms" if r.get("ms") is not None else f"{'-':>10} ms") + (
        f" (p90 {p90:.1f})" if p90 is not None else "")


def _judged_text(r: dict) -> str:
    """What the row's verdict was judged on, against which budget: its p90 (one round's
    time, or the median where none), or a stream's throughput (its stages overlap)."""
    from benchmarks.ship import NO_P90, budget_text, judged
    where = f"{r['target_device']}, {r['target_option']}"
    if r.get("judged_on") is None:
        return f"{r['fps']:.2f} fps throughput vs {r['target_fps']:g} fps, {where}"
    ms, on = judged(r)
    on = {"p90": "at p90", NO_P90: NO_P90}.get(on, f"({on})")
    return f"{ms:.1f} ms {on} vs {budget_text(r['budget_ms'])} ms, {where}"


def runtime_threads_line(threads: int) -> str:
    """The threads ONNX Runtime and LiteRT were timed on, and what set them: without --threads
    a shell's OMP_NUM_THREADS sets them (README "threads"), which the summary did not say."""
    from runtime.console import count
    from runtime.host import THREADS_VARS, cgroup_cpu_limit, default_threads, threads_variable

    n = default_threads(threads)
    var = threads_variable()
    if threads:
        why = f"--threads {threads}"
    elif var:
        why = f"{var[0]}={os.environ[var[0]]}; --threads N sets another count"
    elif n:   # not the variable: a cgroup CPU limit's count (runtime.host.limit_threads)
        why = f"a CPU limit of {cgroup_cpu_limit():g} (cgroup); --threads N sets another count"
    else:
        return ("ONNX Runtime and LiteRT on their default threads (no --threads, "
                f"{' or '.join(THREADS_VARS)})")
    return f"ONNX Runtime and LiteRT on {count(n, 'thread')} ({why})"


@pytest.hookimpl(optionalhook=True)   # pytest-benchmark's hook: absent without the plugin
def pytest_benchmark_update_json(config, benchmarks, output_json):
    """Quality into --benchmark-json (and --benchmark-autosave's file), where it was measured
    (the quality tests ran; not with --benchmark-only): `sharpen_quality` as report.json's
    `quality`, and each timed model's PSNR/SSIM and parity in its benchmark's
    extra_info.quality. The terminal showed them and no file held them."""
    ctx: Optional[BenchContext] = getattr(config, "_sharpen_bench", None)
    if ctx is not None and ctx._real and "error" not in ctx._real:
        from benchmarks.report import finite
        output_json["sharpen_real_blur"] = finite(ctx._real)   # as report.json's real_blur
    if ctx is None or ctx._quality is None:
        return
    from benchmarks.report import finite

    q = ctx._quality
    output_json["sharpen_quality"] = finite(q.to_dict())
    for b in output_json.get("benchmarks", []):
        info = b.get("extra_info") or {}
        if info.get("given"):
            key = info["given"]
        elif info.get("backend") == "teacher-tiled":
            key = "teacher"
        elif info.get("student") and info.get("backend") == "pytorch":
            key = f"{info['student']}/pytorch"
        elif info.get("student") and info.get("format"):   # the stream's has none
            key = f"{info['student']}/{info['format']}"
        else:
            continue
        row = q.row(key)
        if row is not None and row["status"] == "ok":
            info["quality"] = finite({k: row[k] for k in ("key", "n_images", "psnr", "ssim",
                                                          "ssim_teacher", "parity")})


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_group_stats(config, benchmarks, group_by):
    """pytest-benchmark's grouping, except that a benchmark without a parameter
    --benchmark-group-by names (`param:backend_key`: the teacher's and the stream's have none)
    keeps its own group: pytest-benchmark stopped the run with a KeyError after every
    benchmark had run."""
    from pytest_benchmark.plugin import pytest_benchmark_group_stats as by_plugin

    names = [g[len("param:"):] for g in group_by.split(",") if g.startswith("param:")]
    lacking = [b for b in benchmarks if any(n not in (b.get("params") or {}) for n in names)]
    if not lacking:
        return by_plugin(config=config, benchmarks=benchmarks, group_by=group_by)
    rest = [b for b in benchmarks if all(b is not x for x in lacking)]
    groups = by_plugin(config=config, benchmarks=rest, group_by=group_by) if rest else []
    groups += by_plugin(config=config, benchmarks=lacking, group_by="group")
    return sorted(groups, key=lambda pair: pair[0] or "")


# TensorFlow (TFLite export) logs every step at INFO otherwise.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
