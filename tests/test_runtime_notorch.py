"""The runtime ships without torch/tensorflow: import it and run a stream with those made
unimportable (a meta-path finder that refuses them), in a fresh interpreter."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap

import pytest
from runtime_fixtures import REPO, onnx_model, read_video, write_video  # noqa: E402

__all__ = ["onnx_model"]

SCRIPT = textwrap.dedent("""
    import importlib.abc, importlib.util, sys
    from pathlib import Path

    # tqdm: `sharpen run` draws no bar (runtime.progress imports it lazily, for evaluate)
    BLOCKED = {"torch", "tensorflow", "keras", "distill", "optimize", "tqdm"}

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"import of {name} blocked by the no-torch test",
                                          name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    try:
        import torch  # noqa: F401
        raise SystemExit("the blocker does not work")
    except ImportError:
        pass
    model, video, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])

    import runtime, runtime.cli, runtime.pipeline, runtime.progress, runtime.sinks, runtime.stats
    import runtime.backends.onnxruntime_backend, runtime.backends.litert_backend
    import runtime.backends.tensorrt_backend
    from runtime.backends import load_backend
    from runtime.pipeline import run_stream

    s = run_stream(model, video, out / "api.mp4", stats_path=out / "api.json")
    assert s["frames_processed"] == 6, s
    assert load_backend(model).precision == "fp32"
    rc = runtime.cli.main(["run", "--model", model, "--source", video,
                           "--output", str(out / "cli.mp4"), "--quiet"])
    assert rc == 0, rc
    if importlib.util.find_spec("ai_edge_litert") is not None:
        from ai_edge_litert.interpreter import Interpreter  # LiteRT itself must not need TF

    # The full `sharpen` CLI imports distill.cli and optimize at parse time: both must stay
    # importable without torch/tensorflow too (their handlers import those lazily).
    BLOCKED -= {"distill", "optimize"}
    if (Path(runtime.__file__).parents[1] / "distill" / "cli.py").exists():
        import contextlib, io
        from sharpen.cli import main
        rc = main(["run", "--model", model, "--source", video,
                   "--output", str(out / "sharpen.mp4"), "--quiet"])
        assert rc == 0, rc
        print("SHARPEN_CLI_OK")
        # `sharpen --help` starts a device user with what this install runs, not `sharpen demo`.
        shown = io.StringIO()
        with contextlib.redirect_stdout(shown), contextlib.suppress(SystemExit):
            main(["--help"])
        start = shown.getvalue().split("start here:")[-1]
        assert "sharpen run --model" in start and "sharpen demo" not in start, shown.getvalue()
        # ... and the bench that times an exported file there
        assert "sharpen bench --out bench/ --model export/" in start, shown.getvalue()
        assert "no PyTorch" in shown.getvalue(), shown.getvalue()
        # A command that needs torch says what to install, in one line, not a traceback.
        for argv in (["models"], ["labels", "--data", video, "--out", str(out / "lab")]):
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                rc = main(argv)
            msg = err.getvalue()
            assert rc == 2 and "missing dependency 'torch'" in msg and "[train]" in msg, (rc, msg)
            assert "Traceback" not in msg and msg.count(chr(10)) == 1, msg
            # ... and what the command does without it
            assert ("`sharpen models FILE.onnx`" in msg) == (argv == ["models"]), msg
        # `sharpen bench` of a checkpoint needs the dev extra; a device times a model with
        # `sharpen bench --model` or `sharpen run`.
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = main(["bench", "--out", str(out / "bench"), "--weights", "fast"])
        msg = err.getvalue()
        assert rc == 2 and "[dev]" in msg and msg.count(chr(10)) == 1, (rc, msg)
        assert "missing dependency 'torch'" in msg, msg
        assert "`sharpen bench --out DIR --model FILE.onnx`" in msg, msg
        assert "--source synthetic:1920x1080 --max-frames" in msg, msg
        # ... and scores its quality on the device's own pairs without it
        assert "`sharpen evaluate --model FILE --data PAIRS`" in msg, msg
        print("NEEDS_TORCH_OK")
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "tensorflow", "keras"})
    assert not leaked, leaked
    print("NO_TORCH_OK")
""")


def test_runtime_runs_without_torch_or_tensorflow(tmp_path, onnx_model):
    video = tmp_path / "in.mp4"
    write_video(video, n=6)
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(onnx_model), str(video), str(tmp_path)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "NO_TORCH_OK" in r.stdout
    if (REPO / "distill" / "cli.py").exists():
        assert "SHARPEN_CLI_OK" in r.stdout, "sharpen.cli run was not exercised"
        assert "NEEDS_TORCH_OK" in r.stdout
        assert len(read_video(tmp_path / "sharpen.mp4")[0]) == 6
    assert len(read_video(tmp_path / "api.mp4")[0]) == 6
    assert len(read_video(tmp_path / "cli.mp4")[0]) == 6


def imports_of(pkg: str, forbidden: set[str]) -> list[str]:
    """Every absolute import in the package `pkg` (also lazy ones, inside a function) whose top
    package is in `forbidden`, as 'pkg/file.py:LINE name'."""
    bad = []
    for path in sorted((REPO / pkg).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            bad += [f"{path.relative_to(REPO)}:{node.lineno} {n}" for n in names
                    if n.split(".")[0] in forbidden]
    return bad


def test_runtime_sources_never_import_training_stacks():
    """Also lazy imports inside functions: none of runtime/ may import these packages."""
    bad = imports_of("runtime", {"torch", "tensorflow", "keras", "distill", "optimize"})
    assert not bad, bad


def test_no_package_imports_a_layer_above_it():
    """README's layout: distill depends on torch and runtime, optimize on distill and runtime;
    neither imports the layers built on them (also lazily, inside a function: `sharpen models
    ARTIFACT`'s export-report reading in distill/cli.py imported optimize). The `sharpen`
    command line sits on all of them: the bench's memory child ran `sharpen run` through
    sharpen.cli, where runtime.cli's `run` is the same command on a runtime-only device."""
    above = {"distill": {"optimize", "benchmarks", "sharpen"},
             "optimize": {"benchmarks", "sharpen"},
             "runtime": {"benchmarks", "sharpen"},
             "benchmarks": {"sharpen"}}
    bad = [line for pkg, forbidden in above.items() for line in imports_of(pkg, forbidden)]
    assert not bad, bad


@pytest.mark.parametrize("cli", ["runtime.cli", "sharpen.cli"])
def test_run_cli_imports_no_numpy_before_its_handler(cli):
    """`sharpen run --help` on a device: runtime.cli builds its parser with argparse alone (its
    help named tiling's default overlap, and importing runtime.tiling for it loaded numpy), and
    so does the `sharpen` command line, every command's parser (sharpen.demo imported numpy:
    a third of a second of every `sharpen` start on this host, more on a Raspberry Pi)."""
    script = textwrap.dedent(f"""
        import contextlib, io, sys
        import {cli}
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            {cli}.main(["run", "--help"])
        assert "--overlap" in out.getvalue(), out.getvalue()
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"numpy", "cv2"})
        assert not heavy, heavy
        print("LIGHT_OK")
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    r = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "LIGHT_OK" in r.stdout, r.stdout + r.stderr


MODELS_SCRIPT = textwrap.dedent("""
    import contextlib, importlib.abc, io, os, sys

    # What a device install (the runtime extra) lacks: the training and export stacks.
    BLOCKED = {"torch", "tensorflow", "keras", "skimage", "yaml", "tqdm", "onnx"}

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] == "onnx" and os.environ.get("ONNX_IMPORT") == "broken":
                # an onnx older than the protobuf another package upgraded
                raise TypeError("Descriptors cannot be created directly.")
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"import of {name} blocked", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    from sharpen.cli import main
    for model in sys.argv[1:]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["models", model])
        print(out.getvalue(), end="")
        assert rc == 0, (rc, err.getvalue())
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not leaked, leaked
    print("MODELS_OK")
""")


@pytest.mark.parametrize("onnx_import", ["missing", "broken"])
def test_models_traces_an_exported_model_without_torch(tmp_path, onnx_model, onnx_import):
    """`sharpen models FILE.onnx` on a device: how the file was made is read from the export
    report beside it, JSON and a sha256, so the runtime extra alone must do (it needed torch
    and scikit-image, and a device image has neither). An onnx package that fails to import
    (protobuf's TypeError) is read past as a missing one: it ended the command in a traceback."""
    import hashlib
    import json
    import shutil

    import onnx

    traced, alone = tmp_path / "exp" / "student-fast.onnx", tmp_path / "alone" / "copy.onnx"
    for p in (traced, alone):
        p.parent.mkdir()
        shutil.copy(onnx_model, p)
    # A model copied alone to the device keeps the record the export wrote into it; the
    # device has ONNX Runtime, not the onnx package.
    model = onnx.load(str(alone))
    onnx.helper.set_model_props(model, {"student": "fast", "precision": "fp32",
                                        "source_sha256": "ab" * 32, "multiple": "8"})
    onnx.save(model, str(alone))
    sha = hashlib.sha256(traced.read_bytes()).hexdigest()
    (traced.parent / "export_report.json").write_text(json.dumps({
        "weights_path": "models/student-fast.pt", "ssim_formula": None,
        "results": [{"format": "onnx-int8", "status": "pass", "precision": "int8",
                     "ssim": 0.99, "extra": {"file_sha256": sha}}]}))
    env = dict(os.environ, ONNX_IMPORT=onnx_import, PYTHONPATH=os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    r = subprocess.run([sys.executable, "-c", MODELS_SCRIPT, str(traced), str(alone)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "MODELS_OK" in r.stdout, r.stdout + r.stderr
    assert f"{traced} (sha256 {sha[:16]}): onnx-int8 of " in r.stdout, r.stdout
    assert "weights: models/student-fast.pt" in r.stdout, r.stdout
    assert "parity SSIM 0.9900, its formula not recorded" in r.stdout, r.stdout
    assert f"{alone} (sha256 " in r.stdout, r.stdout
    assert "the record inside the file gives: student fast, precision fp32, weights sha256 " \
           "abababababababab" in r.stdout, r.stdout


@pytest.mark.parametrize("lacking, shown", [("onnxruntime", "student-fast_int8.tflite"),
                                            ("ai_edge_litert", "student-fast.onnx")])
def test_help_without_torch_starts_with_a_model_this_install_runs(lacking, shown):
    """`sharpen --help` in the Dockerfile's default image (the litert extra alone) began with
    `sharpen run --model export/student-fast.onnx`, which ends in "ONNX Runtime is not
    installed" there."""
    script = textwrap.dedent(f"""
        import contextlib, importlib.abc, io, sys

        class Blocker(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in {{"torch", "tflite_runtime", {lacking!r}}}:
                    raise ModuleNotFoundError(f"import of {{name}} blocked", name=name)
                return None

        sys.meta_path.insert(0, Blocker())
        from sharpen.cli import main
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            main(["--help"])
        print(out.getvalue().split("start here:")[-1])
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    r = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    models = set(re.findall(r"export/(\S+)", r.stdout))
    assert models == {shown}, r.stdout


# A Jetson's runtime-only install (the runtime extra: no training, export or dev stack), as
# a sitecustomize on PYTHONPATH: the bench's peak-memory and video children start their own
# interpreters, which a blocker set up in the parent alone left free to import torch.
DEVICE_SITE = textwrap.dedent("""
    import importlib.abc, importlib.util, sys

    BLOCKED = {"torch", "tensorflow", "keras", "skimage", "scipy", "matplotlib", "einops",
               "yaml", "rich", "onnx", "pytest", "pytest_benchmark"}

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"import of {name} blocked", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    # ... and find_spec says "not installed" of them, as it does where they are not
    found = importlib.util.find_spec
    importlib.util.find_spec = lambda name, package=None: (
        None if name.split(".")[0] in BLOCKED else found(name, package))
""")



def device_env(tmp_path, **extra) -> dict:
    """The environment of a device's interpreter (DEVICE_SITE first on PYTHONPATH), and of
    every child it starts."""
    (tmp_path / "device").mkdir(exist_ok=True)
    (tmp_path / "device" / "sitecustomize.py").write_text(DEVICE_SITE)
    return dict(os.environ, **extra, PYTHONPATH=os.pathsep.join(
        [str(tmp_path / "device"), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))


def write_pairs(folder) -> None:
    """Two 64x48 blur/sharp pairs under folder/{blur,sharp}."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    for i in range(2):
        sharp = cv2.GaussianBlur(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), (3, 3), 0.7)
        for sub, img in (("sharp", sharp), ("blur", cv2.GaussianBlur(sharp, (5, 5), 1.2))):
            (folder / sub).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / sub / f"{i}.png"), img)


EVALUATE_SCRIPT = textwrap.dedent("""
    import contextlib, io, json, sys

    from sitecustomize import BLOCKED   # the device's blocker
    from sharpen.cli import main
    model, data, out = sys.argv[1:4]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["evaluate", "--model", model, "--data", data, "--out", out, "--quiet",
                   "--threads", "1"])
    print(err.getvalue(), file=sys.stderr)
    assert rc == 0, (rc, err.getvalue())
    # A checkpoint's name as --reference, among exported models: this mistake, not torch's
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["evaluate", "--model", model, "--reference", "fast", "--data", data,
                   "--quiet"])
    assert rc == 2 and "--reference fast: not one of the models given" in err.getvalue(), (
        rc, err.getvalue())
    # ... and `sharpen --help` there names it beside `run`
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown), contextlib.suppress(SystemExit):
        main(["--help"])
    assert "sharpen evaluate --model export/" in shown.getvalue(), shown.getvalue()
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not leaked, leaked
    print("EVALUATE_OK")
""")


def test_evaluate_scores_an_exported_model_on_pairs_without_torch(tmp_path, onnx_model):
    """A device (the runtime extra: no torch, scikit-image or matplotlib) deciding whether an
    INT8 file keeps quality on its own blurred/sharp pairs: `sharpen evaluate --model` said
    "missing dependency 'torch'", and nothing else there measured PSNR/SSIM."""
    import csv
    import json

    write_pairs(tmp_path / "pairs")
    out = tmp_path / "scores"
    env = device_env(tmp_path)
    r = subprocess.run([sys.executable, "-c", EVALUATE_SCRIPT, str(onnx_model),
                        str(tmp_path / "pairs"), str(out)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "EVALUATE_OK" in r.stdout, r.stdout + r.stderr
    res = json.loads((out / "metrics.json").read_text())
    assert res["has_gt"] and res["images"] == 2 and not res["failed"], res
    scores = res[onnx_model.name]
    # The unsharp model sharpens a blurred pair: it gains on the input, as scored with
    # scikit-image in the dev install (tests/test_evaluate.py checks the numbers agree).
    assert scores["ssim_gain"] > 0 and 0 < scores["ssim"] < 1, scores
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    assert len(rows) >= 2, rows
    assert "side_by_side.png" in r.stderr and "matplotlib" in r.stderr, r.stderr
    # The device's table is the dev install's (scikit-image's PSNR/SSIM), image by image.
    from sharpen.cli import main
    assert main(["evaluate", "--model", str(onnx_model), "--data", str(tmp_path / "pairs"),
                 "--out", str(tmp_path / "dev"), "--quiet", "--threads", "1"]) == 0
    dev = json.loads((tmp_path / "dev" / "metrics.json").read_text())
    for name, image in res["per_image"].items():
        for who in ("input", onnx_model.name):
            for m in ("psnr", "ssim"):
                assert image[who][m] == pytest.approx(dev["per_image"][name][who][m],
                                                      abs=1e-9), (name, who, m)


BENCH_SCRIPT = textwrap.dedent("""
    import contextlib, io, json, sys
    from pathlib import Path

    from sitecustomize import BLOCKED   # the device's blocker, in every child too
    from sharpen.cli import main
    model, pairs, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["bench", "--out", str(out), "--model", model, "--real-pairs", pairs,
                   "--sizes", "64x48", "--stream-frames", "0", "--threads", "1", "--quiet",
                   "--data", pairs, "--min-ssim-gain", "0.01"])
    assert rc == 0, (rc, err.getvalue())
    # --data names the held-out pairs scored against the teacher, and the gate is on them:
    # neither is used here, said
    assert "--data, --min-ssim-gain have no effect without PyTorch" in err.getvalue(), (
        err.getvalue())
    rc = main(["bench-compare", str(out), str(out)])
    assert rc == 0, rc
    # --weights (a checkpoint) needs PyTorch: one line naming the extra, and what runs here
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["bench", "--out", str(out / "w"), "--weights", "fast", "--model", model])
    msg = err.getvalue()
    assert rc == 2 and "missing dependency 'torch'" in msg and "--model" in msg, (rc, msg)
    assert "Traceback" not in msg and msg.count(chr(10)) == 1, msg
    # --no-latency without real pairs or frames: nothing left to measure, said before the work
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["bench", "--out", str(out / "n"), "--model", model, "--no-latency"])
    msg = err.getvalue()
    assert rc == 2 and "nothing to measure" in msg and "--real-pairs" in msg, (rc, msg)
    assert not (out / "n").exists()
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not leaked, leaked
    print("BENCH_OK")
""")


def test_bench_times_and_scores_an_exported_model_without_torch(tmp_path, onnx_model):
    """A device (no torch) timing the exported file it will run, as `sharpen bench --model`:
    it said "missing dependency 'torch'" even though nothing of its latency rows needs
    PyTorch. The rows that need the teacher (held-out quality, SSIM to the teacher) are
    skipped and the report says so; the file's latency and its real-pair PSNR/SSIM against
    ground truth are measured, in a report `sharpen bench-compare` reads."""
    import json

    write_pairs(tmp_path / "pairs")
    out = tmp_path / "bench"
    env = device_env(tmp_path, SHARPEN_BENCH_CACHE=str(tmp_path / "cache"))
    r = subprocess.run([sys.executable, "-c", BENCH_SCRIPT, str(onnx_model),
                        str(tmp_path / "pairs"), str(out)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "BENCH_OK" in r.stdout, r.stdout + r.stderr
    said = r.stdout + r.stderr
    assert "skipped" in said and "PyTorch" in said, said
    rep = json.loads((out / "report.json").read_text())
    rows = [x for x in rep["latency"]["rows"] if x["model"].startswith(onnx_model.stem)]
    assert rows and rows[0]["status"] == "ok" and rows[0]["ms"] > 0, rep["latency"]["rows"]
    # the peak-memory children, which run on the device's install as the bench does
    assert rows[0]["peak_rss_mib"] > 0 and rows[0]["video_peak_rss_mib"] > 0, rows[0]
    assert not [x for x in rep["latency"]["rows"] if x["model"] == "teacher"], rep["latency"]
    assert "PyTorch" in rep["quality"]["settings"]["skipped"], rep["quality"]["settings"]
    # What to ship said "no model passes its checks" with no check failed: none was made
    assert "not judged" in rep["ship"]["answer"] and "PyTorch" in rep["ship"]["answer"], rep["ship"]
    pairs = rep["real_blur"]["pairs"]
    assert pairs[onnx_model.stem]["ssim"] > 0, pairs
    md = (out / "report.md").read_text()
    assert "Skipped: PyTorch is not installed" in md, md
    assert "torch threads None" not in md and "usable; no PyTorch)" in md, md
    # with no check made (none without the held-out rows), none 'all passed'
    assert "Result: all checks passed" not in md and "Result: none ran" in md, md
    # its Reproduce section gave `pytest benchmarks/` lines, which need the dev extra
    reproduce = md.split("## Reproduce")[1]
    assert "sharpen bench" in reproduce and "--benchmark-" not in reproduce, reproduce
    # its Figures heading stood over nothing
    assert "## Figures\n\nNone drawn: matplotlib is not installed" in md, md


def test_bench_report_without_a_teacher_says_what_stands_in_for_ground_truth():
    """The real-blur section of a device's bench (no PyTorch, so no teacher) said the
    teacher's output stands in for the missing ground truth, above a column of dashes."""
    from benchmarks.markdown import _md_table
    from benchmarks.realblur import markdown

    nogt = {"images": 2, "has_gt": False, "failed": [], "data": "frames/",
            "input": {"sharpness": 1.0, "overshoot": 0.0},
            "fast.onnx": {"sharpness": 1.02, "overshoot": 0.1}, "per_image": {}}
    text = "\n".join(markdown({"nogt": nogt}, _md_table))
    assert "the teacher's output stands in" not in text, text
    assert "no teacher here (PyTorch is not installed)" in text, text
    # ... and the column of dashes under "PSNR to the teacher's output" is gone, in the
    # terminal's table too
    from benchmarks.realblur import nogt_headers, table_rows
    assert "teacher's output (dB)" not in text, text
    # no figure drawn (no matplotlib there either): none to look at
    assert "raises it too)." in text, text
    pairs = {"images": 1, "has_gt": True, "failed": [], "data": "pairs/",
             "input": {"psnr": 25.0, "ssim": 0.8, "sharpness": 1.0, "overshoot": 0.0},
             "fast.onnx": {"psnr": 25.5, "ssim": 0.81, "sharpness": 1.1, "overshoot": 0.1,
                           "psnr_gain": 0.5, "ssim_gain": 0.01}, "per_image": {}}
    text = "\n".join(markdown({"pairs": pairs}, _md_table))
    assert "PyTorch models" not in text and "The --model files; the gain" in text, text
    assert nogt_headers(nogt) == ["model", "sharpness (x input)", "overshoot (% px)"]
    assert table_rows(nogt) == [["input", "1.000", "0.00"], ["fast.onnx", "1.020", "0.10"]]


def test_an_interrupted_bench_without_a_teacher_does_not_list_its_rows_as_missing():
    """A device's bench (no PyTorch) stopped part way listed the teacher's latency rows among
    those not measured, rows it never meant to time."""
    from benchmarks.latency_run import planned_rows

    m = {"sizes": [(64, 48)], "stream_frames": 0}
    assert [r["model"] for r in planned_rows([], m)] == ["teacher"]
    assert planned_rows([], m, teacher=False) == []


def test_what_to_ship_without_a_teacher_says_each_backend_was_not_judged():
    """A device's bench (no PyTorch, no held-out SSIM): the answer said "not judged", yet each
    backend's row said "none passes its checks", as if a check had failed; none was made."""
    from benchmarks.report import NO_TEACHER
    from benchmarks.ship import ship_section

    row = {"model": "fast_int8", "student": None, "backend": "ort-int8",
           "backend_label": "ONNX Runtime INT8", "precision": "int8", "size": "320x180",
           "width": 320, "height": 180, "status": "ok", "reason": None, "ms": 12.0,
           "p90_ms": 20.0, "fps": 83.3, "given": "fast_int8", "file": "fast_int8.onnx",
           "timing": {"rounds": 20}}
    rep = {"latency": {"rows": [row], "settings": {"runtime_threads": 1}},
           "quality": {"rows": [], "settings": {"skipped": NO_TEACHER}}, "checks": [],
           "settings": {"target_fps": 30.0, "cpu_target_fps": 10.0, "students": []}}
    for max_mib in (None, 500.0):
        rep["settings"]["max_memory_mib"] = max_mib
        ship = ship_section(rep)
        assert "not judged" in ship["answer"], ship["answer"]
        why = ship["rows"][0]["why"]
        assert why.startswith("not judged: no held-out SSIM (PyTorch is not installed); "
                              "the fastest, fast_int8, takes 20.0 ms at p90"), why
        assert "passes its checks" not in why, why


def test_an_interrupted_bench_without_a_teacher_says_nothing_was_cached():
    """Its Incomplete section said 'the exports and teacher outputs made so far are cached'
    where neither is made: --model files alone, and no teacher without PyTorch."""
    from benchmarks.markdown import _incomplete
    from benchmarks.report import NO_TEACHER

    inc = {"signal": "SIGINT", "stage": "latency", "missing": {}}
    text = " ".join(_incomplete(inc, {"students": [], "teacher": {"skipped": NO_TEACHER}}))
    assert "made so far" not in text and "the same command again measures them all" in text, text
    text = " ".join(_incomplete(inc, {"students": [], "teacher": {"hash": "abc"}}))
    assert "The teacher outputs made so far are cached" in text, text
    text = " ".join(_incomplete(inc, {"students": [{"name": "fast"}], "teacher": {}}))
    assert "The exports and teacher outputs made so far are cached" in text, text
