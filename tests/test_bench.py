"""`sharpen bench` and the benchmark suite, on tiny models and a 3-image paired folder.

- the report's numbers agree with metrics computed directly from the models;
- a deliberately bad student (zeroed weights: black output) fails the SSIM check, in the report
  command (exit 1, report still written) and in the pytest suite;
- missing backends are listed as skipped with reasons, never as zeros;
- report.md, report.json and the PNG figures exist.
Timings are never asserted.
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from distill.checkpoint import atomic_save, make_checkpoint
from distill.images import read_image, write_image
from distill.metrics import psnr, ssim
from distill.restormer import build_restormer
from distill.students import create_student, run_padded
from distill.teacher import OVERLAP as TEACHER_OVERLAP, TILE as TEACHER_TILE

pytestmark = pytest.mark.slow  # whole pipelines at toy sizes: tens of seconds

ROOT = Path(__file__).resolve().parents[1]
MISSING_REASON = "TensorRT is not installed (simulated by the test)"
# What to ship's peak is the model's: a tiled 4K clip's run peaked ~440 MiB above it (README).
NO_VIDEO_IO = "video decoding and encoding not counted"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    teacher = build_restormer("tiny")
    atomic_save(make_checkpoint(teacher, kind="teacher", arch="restormer",
                                arch_args=teacher.config.to_dict()), d / "teacher.pt")
    good = create_student("fast", width=8)
    atomic_save(make_checkpoint(good, kind="student", arch="fast", arch_args=good.arch_args),
                d / "student-good.pt")
    bad = create_student("seed")
    with torch.no_grad():
        for p in bad.parameters():
            p.zero_()
    atomic_save(make_checkpoint(bad, kind="student", arch="seed", arch_args=bad.arch_args),
                d / "student-bad.pt")
    import skimage.data

    for i, name in enumerate(("astronaut", "coffee", "chelsea")):
        img = getattr(skimage.data, name)()[..., :3].astype(np.float32) / 255.0
        img = cv2.resize(img, (96, 64), interpolation=cv2.INTER_AREA)
        write_image(d / "pairs" / "target" / f"{name}.png", img)
        write_image(d / "pairs" / "input" / f"{name}.png",
                    cv2.GaussianBlur(img, (0, 0), 1.0 + i))
    return d


def _bench(env: Path, out: str, *extra: str) -> int:
    """Run `sharpen bench` in-process through benchmarks.cli, with the TensorRT engine
    reported as unavailable whatever this machine has (the missing backend under test)."""
    from benchmarks import cli as bench_cli
    from optimize.export import FORMATS

    args = ["--out", str(env / out), "--teacher-weights", str(env / "teacher.pt"),
            "--data", str(env / "pairs"), "--cache", str(env / "cache"), "--quiet", *extra]
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(FORMATS, "engine", dataclasses.replace(FORMATS["engine"],
                                                          available=lambda: MISSING_REASON))
        return bench_cli.main(args)


def _run_suite(*args: str, file: str = "", expect: int | None = None, timeout: int = 300
               ) -> tuple[subprocess.CompletedProcess, str]:
    """`pytest benchmarks/[FILE] -q -p no:cacheprovider ARGS` in a subprocess, from the
    repository root, on one OpenMP thread; its result and its stdout and stderr together.
    `expect`: the exit status it must end with (the output is the assertion's message)."""
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "benchmarks" / file), "-q", "-p",
           "no:cacheprovider", *args]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    out = res.stdout + res.stderr
    if expect is not None:
        assert res.returncode == expect, out
    return res, out


@pytest.fixture(scope="module")
def good_run(env):
    rc = _bench(env, "good", "--students", str(env / "student-good.pt"),
                "--formats", "onnx,engine", "--sizes", "160x96", "--stream-frames", "3")
    report = json.loads((env / "good" / "report.json").read_text())
    return rc, report


def _pairs(env: Path):
    names = sorted(p.stem for p in (env / "pairs" / "input").glob("*.png"))
    return [(n, read_image(env / "pairs" / "input" / f"{n}.png"),
             read_image(env / "pairs" / "target" / f"{n}.png")) for n in names]


def _blurred_frames(env: Path, name: str) -> Path:
    """The test pairs' blurred inputs alone: real blur without ground truth, for --real-nogt."""
    folder = env / name
    for i, (_, blurred, _) in enumerate(_pairs(env)):
        write_image(folder / f"frame{i}.png", blurred)
    return folder


def test_report_files_exist(env, good_run):
    rc, report = good_run
    assert rc == 0, report["checks"]
    out = env / "good"
    assert (out / "report.md").stat().st_size > 0
    md = (out / "report.md").read_text()
    for section in ("## Quality", "## Latency", "## Machine", "## Reproduce", "## Checks"):
        assert section in md
    assert "sharpen bench --out" in md
    # Relative paths in the commands are from the folder the run started in, which the block
    # names; pytest gets the suite's own folder, wherever that is.
    assert report["commands"][0] == f"cd {shlex.quote(os.getcwd())}"
    env_prefix = "".join(f"{k}={shlex.quote(v)} " for k, v in report["machine"]["env"].items())
    assert report["commands"][2].startswith(f"{env_prefix}pytest {ROOT / 'benchmarks'} ")
    assert set(report["figures"]) == {"latency", "scatter", "crops"}
    for name in report["figures"].values():
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000, name
    assert report["machine"]["cpu"] and report["machine"]["logical_cores"] >= 1
    assert "numpy" in report["machine"]["libraries"]
    assert report["ok"] is True and report["exit_code"] == 0


def test_tables_leave_out_the_formats_not_requested(good_run, capsys):
    """`--formats onnx,engine` printed a "skipped: not requested" row for every other format in
    each table, in the terminal and in report.md, and listed each again under Skipped. They
    are one line now; report.json keeps every row."""
    from benchmarks.cli import _print_summary
    from benchmarks.markdown import render_markdown

    _, report = good_run
    left = "not requested (--formats): onnx-int8, onnx-qdq-trt, tflite-int8, tflite-fp16, " \
           "engine-int8"
    keys = {r["key"] for r in report["quality"]["rows"]}
    assert {"good/onnx-int8", "good/engine-int8"} <= keys   # the full matrix stays in the JSON
    _print_summary(report)
    term = capsys.readouterr().out
    md = render_markdown(report)
    for text in (term, md):
        assert "skipped: not requested" not in text
        assert text.count(left) == 2 + (text is md), text   # quality, latency (+ Skipped)
        # Requested but not buildable here: still a row with its reason.
        assert "TensorRT FP16" in text and "TensorRT INT8" not in text
        assert "ONNX Runtime INT8" not in text and "TFLite" not in text
    assert "onnx-int8:" not in md and f"engine: {MISSING_REASON}" in md


def test_the_streaming_row_is_left_out_when_onnx_is_not_requested(env, capsys):
    """`--formats` without onnx left the other formats out of the tables but kept a streaming
    row reading "skipped: not requested" (it runs the ONNX model), in the terminal and
    report.md, and listed it again under Skipped. Now it goes as they do: the one line under
    the latency table names onnx, and report.json keeps the row."""
    from benchmarks.cli import _print_summary
    from benchmarks.markdown import render_markdown

    rc = _bench(env, "no-onnx", "--students", str(env / "student-good.pt"), "--formats",
                "engine", "--sizes", "96x64", "--stream-frames", "2", "--limit", "1")
    report = json.loads((env / "no-onnx" / "report.json").read_text())
    assert rc == 0, report["checks"]
    (row,) = report["latency"]["stream"]   # kept in the JSON, with its format
    assert (row["status"], row["format"]) == ("skipped", "onnx"), row
    capsys.readouterr()
    _print_summary(report)
    term = capsys.readouterr().out
    md = render_markdown(report)
    for text in (term, md):
        assert "skipped: not requested" not in text, text
        assert "streaming pipeline" not in text.lower(), text
        line = next(ln for ln in text.splitlines() if "not requested (--formats):" in ln
                    and "tflite-fp16" in ln)
        assert "onnx," in line, line
    assert "pipeline (ONNX Runtime FP32): not requested" not in md, md


def test_quality_table_says_what_ssim_to_the_teacher_is(good_run, capsys):
    """The terminal's "SSIM vs teacher" column (a model's output against the teacher's output)
    read as the gate's ratio (student SSIM over teacher SSIM, both to ground truth), and only
    report.md said which. One header in both, and a legend under the terminal table that
    names the gate the run used."""
    from benchmarks.cli import _print_summary
    from benchmarks.markdown import render_markdown
    from benchmarks.quality import TABLE_HEADERS, quality_legend

    _, report = good_run
    header = "SSIM to teacher output"
    assert header in TABLE_HEADERS and "SSIM vs teacher" not in TABLE_HEADERS
    _print_summary(report)
    term = capsys.readouterr().out
    legend = quality_legend(report["quality"]["settings"])
    assert legend in term.splitlines()
    assert f"{header}: a model's output against the teacher's output" in legend
    assert "gate: student SSIM >= 0.95 x teacher SSIM (--min-ssim-ratio)" in legend
    md = render_markdown(report)
    assert f"| {header} |" in md and f"{header}: a model's output against the teacher's" in md
    gain = quality_legend({"min_ssim_ratio": None, "min_ssim_gain": 0.5})
    assert "gate: student's SSIM gain over the blurred input >= 0.5 x the teacher's " \
           "(--min-ssim-gain)" in gain


def test_a_row_failing_parity_is_not_ok_in_the_quality_table(good_run, capsys):
    """The quality table's status said "ok" (it was measured) on a row whose parity column
    said FAIL (edge in TFLite INT8 in a real run): read as fit to deploy. The JSON's status
    stays "ok" (measured) for its readers; the tables say the parity failed."""
    from benchmarks.cli import _print_summary
    from benchmarks.markdown import render_markdown

    _, report = good_run
    report = json.loads(json.dumps(report))
    [row] = [r for r in report["quality"]["rows"] if r["key"] == "good/onnx"]
    assert row["status"] == "ok" and row["parity"]["passed"], row
    row["parity"]["passed"] = False   # as a failing artifact's row is written
    for c in report["checks"]:
        if c["check"] == "parity" and c["model"] == "good/onnx":
            c["passed"] = False
    md = render_markdown(report)
    [line] = [ln for ln in md.splitlines() if ln.startswith("| student good | onnx |")]
    assert " FAIL |" in line and line.endswith("| parity FAILED: do not deploy |"), line
    [other] = [ln for ln in md.splitlines() if ln.startswith("| student good | pytorch |")]
    assert other.endswith("| ok |"), other
    capsys.readouterr()
    _print_summary(report)
    # the table's cells wrap: read them without the borders and the line breaks
    term = " ".join(re.sub("[\u2502\u2503]", " ", capsys.readouterr().out).split())
    assert "FAIL" in term and "parity FAILED: do not deploy" in term, term


@pytest.fixture(scope="module")
def ship_run(env, good_run):
    """The good student and the bad one (black output: it fails the quality gate), both timed
    at one size on ONNX Runtime and PyTorch, on the CPU, with a budget either meets
    (--cpu-target-fps 1: 1000 ms per frame), so that only the checks tell them apart."""
    rc = _bench(env, "ship", "--students", str(env / "student-good.pt"),
                str(env / "student-bad.pt"), "--formats", "onnx", "--sizes", "160x96",
                "--stream-frames", "0", "--cpu-target-fps", "1")
    return rc, json.loads((env / "ship" / "report.json").read_text())


def _unloaded(report: dict) -> dict:
    """A copy of a run's report as if timed on a quiet machine: its answer then ends with
    what the test asserts, not with a note on the load of the machine the tests ran on."""
    report = json.loads(json.dumps(report))
    report["latency"]["settings"]["load"] = None
    return report


def _md_answer(ship: dict) -> str:
    """report.md's answer line: the answer, its closing command set as code."""
    from benchmarks.ship import command_of

    cmd = command_of(ship)
    answer = ship["answer"]
    if cmd:
        answer = answer[:answer.rindex(cmd)] + f"`{cmd}`" + answer[answer.rindex(cmd) + len(cmd):]
    return f"**Answer:** {answer}."


def _latency_ms(report: dict, student: str, backend: str, key: str = "ms") -> float:
    (row,) = [r for r in report["latency"]["rows"] if r["student"] == student
              and r["backend"] == backend and r["status"] == "ok"]
    return row[key]


def test_the_report_says_what_to_ship_on_each_backend(env, ship_run, capsys):
    """Which student to ship on which backend was left to the reader, who had to cross the
    quality table, the checks and the latency table of every size by hand (and could take a
    fast student failing its gate for the answer). Now report.json, report.md and the terminal
    give it: per backend, the best held-out SSIM among the models passing their checks within
    the budget (--cpu-target-fps on the CPU), and the models left out with why."""
    from benchmarks.cli import _print_summary
    from benchmarks.markdown import render_markdown

    rc, report = ship_run
    assert rc == 1   # the bad student fails its gate
    ship = report["ship"]
    assert (ship["size"], ship["cpu_target_fps"], ship["target_fps"]) == ("160x96", 1.0, 30.0)
    rows = {r["backend"]: r for r in ship["rows"]}
    assert set(rows) == {"pytorch", "ort-fp32"}, rows   # TensorRT was not run here
    assert all((r["device"], r["budget_ms"]) == ("CPU", 1000.0) for r in rows.values()), rows
    assert any("sharpen bench " in c and "--cpu-target-fps 1 " in c
               for c in report["commands"]), report["commands"]
    quality = {q["key"]: q["ssim"] for q in report["quality"]["rows"]}
    for backend, fmt in (("pytorch", "pytorch"), ("ort-fp32", "onnx")):
        r = rows[backend]
        assert r["ship"] == "good", r
        assert r["ms"] == _latency_ms(report, "good", backend)
        assert r["judged_ms"] == r["p90_ms"] == _latency_ms(report, "good", backend, "p90_ms")
        assert r["ssim"] == quality[f"good/{fmt}"]
        assert "left out: bad (quality gate failed: SSIM " in r["why"], r["why"]
    best = rows["ort-fp32"]   # a file `sharpen run` takes, before PyTorch's checkpoint
    assert ship["answer"] == (f"good on {best['backend_label']}: held-out SSIM "
                              f"{best['ssim']:.4f}, {best['p90_ms']:.1f} ms at p90 (median "
                              f"{best['ms']:.1f} ms) per 160x96 frame (peak memory "
                              f"{best['peak_rss_mib']:.0f} MiB, "
                              f"{best['video_peak_rss_mib']:.0f} MiB running a 160x96 clip), "
                              f"{best['p90_ms'] / 1000:.2f}x the 1000.0 ms budget (1 fps, "
                              "the CPU target, --cpu-target-fps); not timed at 1920x1080, the "
                              "product's size" + (f"; {ship['busy']}" if ship["busy"] else "")
                              + f"; run it: {best['run']}"), ship["answer"]
    md = (env / "ship" / "report.md").read_text()
    assert md == render_markdown(report)
    assert md.index("## What to ship") < md.index("## Checks")
    assert _md_answer(ship) in md and _md_answer(ship).endswith(f"`{best['run']}`.")
    for r in rows.values():
        assert (f"| {r['backend_label']} | FP32 | good | {r['ms']:.1f} | {r['p90_ms']:.1f} | "
                f"1000.0 (1 fps, CPU) | {r['ssim']:.4f} | " in md), md
    capsys.readouterr()
    _print_summary(report)
    term = capsys.readouterr().out
    assert f"what to ship: {ship['answer']}" in term.splitlines()


def test_latency_table_judges_each_row_on_the_budget_of_its_backend(env, ship_run, capsys):
    """The report's head and the Latency table's "meets target" judged every row on
    --target-fps (30 fps) while What to ship judged a CPU backend on --cpu-target-fps: a user
    read TFLite INT8 at 1080p as "no" in the table, then saw it picked. Each row now carries
    its backend's budget, the pick's, judged as the pick judges (p90), and report.md, its
    head and the terminal name it."""
    from benchmarks.cli import _print_summary
    from benchmarks.markdown import LATENCY_HEADERS, latency_table, render_markdown
    from benchmarks.ship import judge_latency, judged, ship_section

    _, report = ship_run   # --cpu-target-fps 1, --target-fps 30; every row on the CPU
    timed = [r for r in report["latency"]["rows"] if r["status"] == "ok"]
    assert timed
    for r in timed:
        assert (r["target_fps"], r["target_device"], r["target_option"], r["budget_ms"]) \
            == (1.0, "CPU", "--cpu-target-fps", 1000.0), r
        assert r["meets_target"] is (judged(r)[0] <= 1000.0), r
    col = {h: i for i, h in enumerate(LATENCY_HEADERS)}
    cells = {(c[col["model"]], c[col["backend"]]): c for c in
             latency_table(report["latency"]["rows"])}
    for p in report["ship"]["rows"]:   # each pick reads "yes" on its own budget
        c = cells["student good", p["backend_label"]]
        assert c[col["meets target"]] == "yes (CPU)", c
    md = (env / "ship" / "report.md").read_text()
    assert ("Targets, per backend: on the CPU (ONNX Runtime CPU, LiteRT, PyTorch) 1 fps, i.e. "
            "<= 1000.0 ms per frame (--cpu-target-fps); on a GPU (TensorRT, CUDA) 30 fps, "
            "<= 33.3 ms (--target-fps).") in md, md
    assert "Target: 30 fps" not in md
    capsys.readouterr()
    _print_summary(report)
    term = " ".join(re.sub("[\u2502\u2503]", " ", capsys.readouterr().out).split())
    assert "meets target: p90 <= 1000.0 ms (1 fps) on a CPU, 33.3 ms (30 fps) on a GPU" in term
    assert " yes (CPU) " in term, term
    # A GPU budget nothing meets moves no CPU row; a backend on a GPU is judged on it, in
    # the table as in the pick.
    report = json.loads(json.dumps(report))
    report["settings"]["target_fps"] = 100000.0
    for r in report["latency"]["rows"]:
        if r["backend"] == "ort-fp32":
            r["provider"] = "CUDAExecutionProvider"
    judge_latency(report)
    report["ship"] = ship = ship_section(report)
    picks = {p["backend"]: p["ship"] for p in ship["rows"]}
    assert picks == {"pytorch": "good", "ort-fp32": None}, ship["rows"]
    for r in report["latency"]["rows"]:
        if r["status"] == "ok" and r["student"] == "good":
            gpu = r["backend"] == "ort-fp32"
            assert (r["target_device"], r["meets_target"]) == (("GPU", False) if gpu
                                                                else ("CPU", True)), r
    md = render_markdown(report)
    assert "| no (GPU) |" in md and "| yes (CPU) |" in md


def test_what_to_ship_says_how_far_the_fastest_is_from_the_budget(ship_run, capsys):
    """With no model within the budget, the answer is "nothing", with the fastest that passes
    its checks and how many times the budget it takes; with none passing, that none does.
    The terminal said "what to ship: nothing to ship: ..."."""
    from benchmarks.cli import _print_summary
    from benchmarks.ship import ship_section

    _, report = ship_run
    report = _unloaded(report)
    report["settings"]["cpu_target_fps"] = 100000.0   # 0.01 ms per frame: nothing is that fast
    ship = ship_section(report)
    assert all(r["ship"] is None for r in ship["rows"]), ship["rows"]
    fastest = min(ship["rows"], key=lambda r: r["fastest"]["judged_ms"])
    ms = _latency_ms(report, "good", fastest["backend"])
    p90 = _latency_ms(report, "good", fastest["backend"], "p90_ms")
    assert fastest["fastest"] == {"model": "good", "ms": ms, "p90_ms": p90, "judged_ms": p90,
                                  "judged_on": "p90", "rounds": fastest["fastest"]["rounds"],
                                  "ssim": fastest["fastest"]["ssim"]}
    assert ship["answer"] == (
        "nothing within its budget at 160x96: of the models that pass their checks, the "
        f"nearest, good on {fastest['backend_label']}, takes {p90:.1f} ms at p90 (median "
        f"{ms:.1f} ms) per frame, {p90 / 0.01:.1f}x the 0.01 ms budget (100000 fps, the CPU "
        "target, --cpu-target-fps); not timed at 1920x1080, the product's size")
    assert (f"none within 0.01 ms at p90; the fastest that passes its checks, good, takes "
            f"{p90:.1f} ms at p90 (median {ms:.1f} ms), {p90 / 0.01:.1f}x the budget") \
        in fastest["why"]
    report["ship"] = ship
    capsys.readouterr()
    _print_summary(report)
    assert f"what to ship: {ship['answer']}" in capsys.readouterr().out.splitlines()
    for c in report["checks"]:   # the good student failing its gate too
        if c["model"] == "good/pytorch":
            c["passed"] = False
    report["settings"]["cpu_target_fps"] = 1.0
    ship = ship_section(report)
    assert ship["answer"] == ("nothing: no model timed at 160x96 passes its checks (the "
                              "quality gate and parity: see Checks); not timed at 1920x1080, "
                              "the product's size")
    for r in ship["rows"]:
        assert r["ship"] is None and r["why"].startswith("none passes its checks: ")
        assert "good (quality gate failed: SSIM" in r["why"], r["why"]


def test_what_to_ship_judges_a_cpu_backend_on_the_cpu_target(env, ship_run, good_run):
    """One --target-fps (default 30, the Jetson's real time) judged every backend: on a CPU,
    where a student's target is 10 fps at 1080p, the answer was "nothing to ship" where README
    ships `fast` in TFLite INT8. A backend on the CPU is judged on --cpu-target-fps (default
    10), one on a GPU (TensorRT, CUDA) on --target-fps."""
    from benchmarks.ship import on_gpu, ship_section

    _, report = ship_run
    report = json.loads(json.dumps(report))
    report["settings"]["target_fps"] = 100000.0   # no CPU row is judged on it
    ship = ship_section(report)
    assert [r["ship"] for r in ship["rows"]] == ["good", "good"], ship["rows"]
    assert ship["answer"].startswith("good on "), ship["answer"]
    _, default = good_run   # no --cpu-target-fps: 10 fps, 100 ms per frame
    assert default["settings"]["cpu_target_fps"] == 10.0
    assert {(r["device"], r["target_fps"], r["budget_ms"]) for r in default["ship"]["rows"]} \
        == {("CPU", 10.0, 100.0)}, default["ship"]["rows"]
    # where a row ran on a GPU, --target-fps is its budget
    row = next(r for r in report["latency"]["rows"] if r["backend"] == "ort-fp32")
    assert not on_gpu(row), row["provider"]
    for r in report["latency"]["rows"]:
        if r["backend"] == "ort-fp32":
            r["provider"] = "CUDAExecutionProvider"
    report["settings"]["target_fps"] = 1.0
    report["settings"]["cpu_target_fps"] = 100000.0
    rows = {r["backend"]: r for r in ship_section(report)["rows"]}
    assert (rows["ort-fp32"]["device"], rows["ort-fp32"]["ship"]) == ("GPU", "good"), rows
    assert (rows["pytorch"]["device"], rows["pytorch"]["ship"]) == ("CPU", None), rows
    assert on_gpu({"backend": "trt-fp16", "provider": None})


def _timed_as(report: dict, backend: str, median: float, p90: float, rounds: int = 12) -> None:
    """The good student's row on `backend` as a loaded machine times it: a median and a p90
    (the record stays the run's own; only its times are set, for a budget to fall between)."""
    for r in report["latency"]["rows"]:
        if r.get("student") == "good" and r["backend"] == backend and r["status"] == "ok":
            r.update(ms=median, p90_ms=p90)
            r["timing"].update(median_ms=median, p90_ms=p90, rounds=rounds)


def test_what_to_ship_judges_the_p90_time_not_the_median(ship_run, capsys):
    """The pick judged the median with no margin: the demo shipped TFLite FP16 at 92.6 ms
    median against a 100 ms budget over INT8 at 34.5 ms, a pick that flips with machine noise
    and misses the budget on its slow frames. A model ships on a backend where its p90 is
    within the budget; one whose median alone is, is named as over it, with both numbers."""
    from benchmarks.cli import _print_summary
    from benchmarks.markdown import render_markdown
    from benchmarks.ship import ship_section

    _, report = ship_run
    report = json.loads(json.dumps(report))
    report["settings"]["cpu_target_fps"] = 10.0   # 100 ms per frame
    _timed_as(report, "ort-fp32", 92.6, 112.4)
    _timed_as(report, "pytorch", 34.5, 41.2)
    # the slower one has the better SSIM: the median's rule picked it
    for q in report["quality"]["rows"]:
        if q["key"] == "good/onnx":
            q["ssim"] += 0.01
    ship = ship_section(report)
    rows = {r["backend"]: r for r in ship["rows"]}
    assert rows["ort-fp32"]["ship"] is None, rows["ort-fp32"]
    assert rows["ort-fp32"]["why"].startswith(
        "none within 100.0 ms at p90; the fastest that passes its checks, good, takes 112.4 ms "
        "at p90 (median 92.6 ms), 1.1x the budget"), rows["ort-fp32"]["why"]
    pick = rows["pytorch"]
    assert (pick["ship"], pick["ms"], pick["p90_ms"], pick["judged_ms"], pick["judged_on"],
            pick["rounds"]) == ("good", 34.5, 41.2, 41.2, "p90", 12), pick
    assert ship["answer"].startswith(
        f"good on PyTorch eager: held-out SSIM {pick['ssim']:.4f}, 41.2 ms at p90 (median "
        "34.5 ms) per 160x96 frame, 0.41x the 100.0 ms budget (10 fps, the CPU target, "
        "--cpu-target-fps)"), ship["answer"]
    assert "p90" in ship["rule"] and "one frame in ten" in ship["rule"], ship["rule"]
    # every surface says the same: the table's columns, the rule, the answer
    report["ship"] = ship
    md = render_markdown(report)
    assert _md_answer(ship) in md
    assert "whose 90th-percentile (p90) time per frame is within its budget" in md, md
    assert (f"| PyTorch eager | FP32 | good | 34.5 | 41.2 | 100.0 (10 fps, CPU) | "
            f"{pick['ssim']:.4f} | ") in md, md
    assert "| ONNX Runtime FP32 | FP32 | none | - | - | 100.0 (10 fps, CPU) | - | - | none " \
        "within 100.0 ms at p90" in md, md
    capsys.readouterr()
    _print_summary(report)
    term = capsys.readouterr().out
    assert f"what to ship: {ship['answer']}" in term.splitlines()
    assert "p90 ms" in term
    # the rule, where the terminal has no paragraph for it: the table's title (it wraps)
    assert "what to ship at 160x96 (p90 time per frame within the budget: 100.0 ms" \
        in " ".join(term.split()), term
    # both within the budget at p90: the better SSIM ships, the other named as within too
    _timed_as(report, "ort-fp32", 82.0, 96.0)
    ship = ship_section(report)
    assert {r["backend"]: r["ship"] for r in ship["rows"]} == {"ort-fp32": "good",
                                                               "pytorch": "good"}
    assert ship["answer"].startswith("good on ONNX Runtime FP32: "), ship["answer"]
    # a slow model timed once (quick mode): its one time is judged, and said to be one
    _timed_as(report, "ort-fp32", 2500.0, 2500.0, rounds=1)
    report["settings"]["cpu_target_fps"] = 0.1
    row = next(r for r in ship_section(report)["rows"] if r["backend"] == "ort-fp32")
    assert (row["ship"], row["judged_on"]) == ("good", "one round"), row


def test_each_latency_row_gives_its_peak_memory_and_a_memory_budget_leaves_out_a_row(
        env, ship_run, capsys):
    """An engineer sizing a 1-2 GiB board had latency and quality per row, not memory (the
    README's peak-memory tables were measured by hand). Each model and backend now has its
    peak resident MiB at each size, measured in a child process, with its unit and method;
    `--max-memory-mib` keeps What to ship from picking a row over it, and says why."""
    from benchmarks.markdown import render_markdown
    from benchmarks.ship import ship_section

    rc, report = ship_run
    mem = report["latency"]["settings"]["memory"]
    assert (mem["unit"], mem["size"]) == ("MiB", "160x96"), mem
    assert "child process" in mem["method"] and "VmHWM" in mem["method"], mem
    ram_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    model_mib = (env / "student-good.pt").stat().st_size / 2**20
    good = {r["backend"]: r for r in report["latency"]["rows"]
            if r["student"] == "good" and r["status"] == "ok"}
    assert set(good) == {"pytorch", "ort-fp32"}, good
    # Each exported file's row; quick mode leaves out PyTorch's (its child imports torch),
    # saying so (--full measures it).
    ort = good["ort-fp32"]
    assert model_mib < ort["peak_rss_mib"] < ram_mib, ort
    assert "peak_rss_mib" not in good["pytorch"], good["pytorch"]
    assert "--full measures it" in good["pytorch"]["peak_rss_skipped"], good["pytorch"]
    md = render_markdown(report)
    assert "| peak MiB | video run MiB | note |" in md, md
    assert "Peak MiB (at each row's size; MiB)" in md, md
    assert f"| {ort['peak_rss_mib']:.0f} | " in md, md

    # A budget over the file's peak: it still ships, with its peak; PyTorch's row, not
    # measured, is not picked under a budget.
    capped = _unloaded(report)
    capped["settings"]["max_memory_mib"] = budget = ort["video_peak_rss_mib"] + 1
    ship = ship_section(capped)
    rows = {r["backend"]: r for r in ship["rows"]}
    assert ship["max_memory_mib"] == budget
    assert rows["ort-fp32"]["ship"] == "good", rows
    assert rows["ort-fp32"]["peak_rss_mib"] == ort["peak_rss_mib"]
    assert rows["pytorch"]["ship"] is None, rows
    assert "good (peak memory not measured in quick mode" in rows["pytorch"]["why"], rows
    # Under it: not picked, and the row says by how much (judged on the model's peak where
    # no video run's was measured).
    for r in capped["latency"]["rows"]:
        r.pop("video_peak_rss_mib", None)
    capped["settings"]["max_memory_mib"] = budget = ort["peak_rss_mib"] - 1
    ship = ship_section(capped)
    over = {r["backend"]: r for r in ship["rows"]}["ort-fp32"]
    assert over["ship"] is None, over
    assert (f"good (peak memory {ort['peak_rss_mib']:.0f} MiB > {budget:g} MiB, "
            "--max-memory-mib)") in over["why"], over["why"]
    assert all(r["ship"] is None for r in ship["rows"]), ship["rows"]
    assert f"within {budget:g} MiB of peak memory (--max-memory-mib)" in ship["answer"], \
        ship["answer"]

    # The flag reaches the report, and is refused where it is no budget.
    assert _bench(env, "never-made", "--max-memory-mib", "0") == 2
    assert "--max-memory-mib must be a finite number > 0, got 0" in capsys.readouterr().err


def test_tile_is_timed_and_its_peak_memory_measured_at_each_size(env, capsys):
    """An integrator sizing a 2 GiB board for 4K with `sharpen run --tile 512` could not
    bench with --tile (a usage error), and the peak-memory column was measured at one size
    on whole frames: at 4K it read 3-5x what the tiled run peaks at, and What to ship left
    out every model under --max-memory-mib. Each size's row now has its own peak, the
    latency and the memory both run the tiles `sharpen run --tile` runs, and the pick's run
    line carries the tile."""
    from benchmarks.markdown import render_markdown
    from benchmarks.ship import ship_section

    rc = _bench(env, "tiled", "--students", str(env / "student-good.pt"), "--formats",
                "onnx", "--sizes", "160x96,128x96", "--tile", "96", "--stream-frames", "2",
                "--cpu-target-fps", "1", "--max-memory-mib", "100000")
    assert rc == 0, capsys.readouterr().err
    report = _unloaded(json.loads((env / "tiled" / "report.json").read_text()))
    lat = report["latency"]
    assert lat["settings"]["tile"] == 96, lat["settings"]
    mem = lat["settings"]["memory"]
    assert mem["sizes"] == ["160x96", "128x96"] and mem["tile"] == 96, mem
    assert "tiles of 96" in mem["method"], mem
    ort = {r["size"]: r for r in lat["rows"]
           if (r["student"], r["backend"], r["status"]) == ("good", "ort-fp32", "ok")}
    assert set(ort) == {"160x96", "128x96"}, lat["rows"]
    for r in ort.values():   # each size its own peak, measured tiled
        assert r["peak_rss_mib"] > 0 and r["tile"] == 96, r
    assert ort["160x96"]["tiles_per_frame"] > ort["128x96"]["tiles_per_frame"] >= 2, ort
    # PyTorch eager tiles as the exported file does: its overlap is the model's receptive
    # field too (the default 32 px ran it in fewer, thinner-overlapped tiles)
    torch_row = next(r for r in lat["rows"] if (r["student"], r["backend"], r["size"])
                     == ("good", "pytorch", "160x96"))
    assert (torch_row["overlap"], torch_row["tiles_per_frame"]) == (
        ort["160x96"]["overlap"], ort["160x96"]["tiles_per_frame"]), (torch_row, ort)
    # sharpen run's pipeline row runs those tiles too
    [piped] = lat["stream"]
    assert piped["status"] == "ok" and piped["stats"]["tile"] == 96, piped
    md = render_markdown(report)
    assert "at 160x96 only" not in md and "--tile 96" in md, md
    ship = ship_section(report)
    row = {r["backend"]: r for r in ship["rows"]}["ort-fp32"]
    assert row["ship"] == "good" and row["peak_rss_mib"] == ort["160x96"]["peak_rss_mib"], row
    assert "--tile 96" in row["run"], row["run"]
    assert any("--tile 96" in c for c in report["commands"]), report["commands"]

    # A tile the runtime cannot run is refused before any work, naming the flag.
    assert _bench(env, "never-made", "--tile", "-1") == 2
    assert "--tile" in capsys.readouterr().err


def test_a_model_files_tiled_row_keeps_its_tiles_beside_its_students_gmac(env, tmp_path):
    """A --model file exported from a benchmarked student gets that student's GMAC per frame;
    that replaced the row's tile, overlap and tiles_per_frame, so What to ship's run line for
    the file, timed in tiles of 96, ran it whole."""
    from benchmarks.artifacts import DEFAULT_CALIB_COUNT, ensure_artifacts, resolve_students
    from benchmarks.ship import run_command

    cache = tmp_path / "cache"
    st = resolve_students([str(env / "student-good.pt")])[0]
    built = ensure_artifacts(st, cache, "onnx", DEFAULT_CALIB_COUNT, quiet=True, calib=[])
    (tmp_path / "mine").mkdir()
    given = Path(shutil.copy(built.get("onnx").file, tmp_path / "mine" / "deployed.onnx"))
    rc = _bench(env, str(tmp_path / "out"), "--weights", str(env / "student-good.pt"),
                "--model", str(given), "--formats", "onnx", "--cache", str(cache), "--sizes",
                "160x96", "--tile", "96", "--stream-frames", "0", "--cpu-target-fps", "1")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rc == 0, report["checks"]
    rows = {r["model"]: r for r in report["latency"]["rows"]
            if r["backend"] == "ort-fp32" and r["status"] == "ok"}
    own, file_row = rows["student good"], rows["deployed (student fast)"]
    assert file_row["gmac"] == own["gmac"], file_row
    for k in ("tile", "overlap", "tiles_per_frame"):
        assert file_row.get(k) == own[k], (k, file_row)
    line = run_command(file_row, {}, False, None)[1]
    assert line.endswith(" --tile 96"), line


def test_a_tile_off_the_models_multiple_is_recorded_and_named_as_sharpen_run_says_it(
        env, tmp_path, capsys):
    """`sharpen run --tile 90 --stats` records tile 96 (the student's multiple of 8) and warns
    with its flag; the bench's rows said 90 where its own streaming row said 96, and its
    warnings named the keyword (`tile=90`) the user never typed."""
    rc = _bench(env, str(tmp_path / "out"), "--students", str(env / "student-good.pt"),
                "--formats", "onnx", "--sizes", "160x96", "--tile", "90", "--stream-frames",
                "2", "--cpu-target-fps", "1")
    err = capsys.readouterr().err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rc == 0, err
    [piped] = report["latency"]["stream"]
    assert piped["stats"]["tile"] == 96, piped
    for r in report["latency"]["rows"]:
        if r["student"] == "good" and r["status"] == "ok":
            assert r["tile"] == 96, r
    assert "--tile 90 runs as 96" in err and "tile=" not in err, err


def test_each_exported_row_gives_a_video_runs_peak_and_a_budget_judges_it(ship_run):
    """An integrator picking the model for a camera box under a memory cap had the model's
    peak alone: a clip adds OpenCV's video decoder and encoder (about 360 MiB at 4K), which
    they had to add by hand from the README. Each exported file's row now has the peak of
    `sharpen run` itself on a generated clip of the row's size, measured in a child, and
    --max-memory-mib judges that: the one number for "this model on this clip size"."""
    from benchmarks.markdown import render_markdown
    from benchmarks.ship import ship_section

    rc, report = ship_run
    report = _unloaded(report)
    mem = report["latency"]["settings"]["memory"]
    assert "sharpen run" in mem["video"] and "clip" in mem["video"], mem
    rows = {r["backend"]: r for r in report["latency"]["rows"]
            if r["student"] == "good" and r["status"] == "ok"}
    ort = rows["ort-fp32"]
    assert ort["video_peak_rss_mib"] > ort["peak_rss_mib"] > 0, ort
    assert "video_peak_rss_mib" not in rows["pytorch"], rows["pytorch"]
    assert "sharpen run" in rows["pytorch"]["video_peak_rss_skipped"], rows["pytorch"]
    md = render_markdown(report)
    assert "| peak MiB | video run MiB | note |" in md, md
    assert f"| {ort['video_peak_rss_mib']:.0f} | " in md, md

    # No budget: the answer gives both numbers.
    ship = ship_section(report)
    assert (f"peak memory {ort['peak_rss_mib']:.0f} MiB, {ort['video_peak_rss_mib']:.0f} MiB "
            "running a 160x96 clip") in ship["answer"], ship["answer"]
    # A budget the model fits and the video run does not: not picked, and the row says why.
    report["settings"]["max_memory_mib"] = budget = ort["video_peak_rss_mib"] - 1
    assert budget > ort["peak_rss_mib"], ort
    over = {r["backend"]: r for r in ship_section(report)["rows"]}["ort-fp32"]
    assert over["ship"] is None, over
    assert (f"good (video run peak memory {ort['video_peak_rss_mib']:.0f} MiB > {budget:g} "
            "MiB, --max-memory-mib)") in over["why"], over["why"]
    report["settings"]["max_memory_mib"] = ort["video_peak_rss_mib"] + 1
    fits = {r["backend"]: r for r in ship_section(report)["rows"]}["ort-fp32"]
    assert fits["ship"] == "good", fits
    assert fits["video_peak_rss_mib"] == ort["video_peak_rss_mib"], fits


def test_a_memory_budget_is_judged_at_the_size_what_to_ship_answers_for(ship_run):
    """With a peak per size, What to ship judges --max-memory-mib on the row at its own
    size: a small size's peak within the budget does not let a model over it at the size
    asked be picked."""
    from benchmarks.ship import ship_section

    rc, report = ship_run
    report = _unloaded(report)
    ort = next(r for r in report["latency"]["rows"]
               if (r["student"], r["backend"], r["status"]) == ("good", "ort-fp32", "ok"))
    small = {**ort, "size": "32x16", "width": 32, "height": 16, "peak_rss_mib": 1.0}
    report["latency"]["rows"].append(small)
    report["settings"]["max_memory_mib"] = ort["peak_rss_mib"] - 1
    row = {r["backend"]: r for r in ship_section(report)["rows"]}["ort-fp32"]
    assert row["ship"] is None and "--max-memory-mib" in row["why"], row


def test_the_memory_budgets_help_says_a_video_runs_decoder_and_encoder_are_counted(capsys):
    """A camera integrator set --max-memory-mib to a 2 GiB board's free memory from its help
    ("peak resident memory ... e.g. a 2 GiB board's share"); the model's peak leaves out the
    video decoder and encoder, which took ~360 MiB more on a 4K clip (README: Peak memory).
    The budget is judged on a video run's peak, which counts them: the help says so."""
    from benchmarks import cli as bench_cli

    with pytest.raises(SystemExit):
        bench_cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    budget = text[text.index("--max-memory-mib MIB What"):text.index("--no-latency quality")]
    assert "video decoding and encoding included" in budget, budget
    assert "generated clip" in budget and "else the model's alone" in budget, budget


def test_a_gpu_rows_peak_memory_says_it_counts_host_memory_only(ship_run):
    """A child's VmHWM counts no CUDA device memory: a TensorRT or CUDA row's peak read as the
    whole model's, and a unified-memory board (a Jetson's 2 GiB) shares that memory too."""
    from benchmarks.markdown import render_markdown
    from benchmarks.ship import ship_section

    rc, report = ship_run
    report = _unloaded(report)
    assert "CUDA device memory" in report["latency"]["settings"]["memory"]["method"]
    report["settings"]["target_fps"] = 1   # the GPU's budget, as the CPU's in ship_run
    for r in report["latency"]["rows"]:
        if r["backend"] == "ort-fp32":
            r["provider"] = "CUDAExecutionProvider (NVIDIA test)"
    ort = next(r for r in report["latency"]["rows"]
               if (r["backend"], r["student"], r["status"]) == ("ort-fp32", "good", "ok"))
    peak = f"{ort['peak_rss_mib']:.0f}"
    assert f"| {peak} (host) | " in render_markdown(report)
    ship = ship_section(report)
    row = {r["backend"]: r for r in ship["rows"]}["ort-fp32"]
    assert (row["device"], row["ship"]) == ("GPU", "good"), row
    assert (f"(peak host memory {peak} MiB, {ort['video_peak_rss_mib']:.0f} MiB running a "
            "160x96 clip; CUDA device memory not counted)" in ship["answer"]), ship["answer"]
    # A report without a video run's peak (one from before it, or its run failed) says what
    # its peak leaves out.
    for r in report["latency"]["rows"]:
        r.pop("video_peak_rss_mib", None)
    assert (f"(peak host memory {peak} MiB; CUDA device memory and {NO_VIDEO_IO})"
            in ship_section(report)["answer"]), ship_section(report)["answer"]


def test_report_md_says_the_seed_the_bench_exported_with(ship_run):
    """report.json had the --seed the INT8 formats were calibrated with, report.md did not:
    a reader comparing two reports could not tell their artifacts apart."""
    from benchmarks.markdown import render_markdown

    rc, report = ship_run
    assert report["settings"]["calib_seed"] == 0
    head = render_markdown(report).split("## What to ship")[0]
    assert "Exported with `--seed 0`" in head, head
    report = json.loads(json.dumps(report))
    report["settings"]["calib_seed"] = 3
    assert "Exported with `--seed 3`" in render_markdown(report)


def test_a_median_fit_over_budget_at_p90_is_named_beside_the_pick(ship_run):
    """Where one model ships on a backend and another fits on its median alone, the row says
    so with both of its times: the reader justifying the pick sees why the other lost."""
    from benchmarks.ship import _backend_row

    _, report = ship_run
    report = json.loads(json.dumps(report))
    rows = [r for r in report["latency"]["rows"] if r["backend"] == "ort-fp32"
            and r.get("student") == "good"]
    other = json.loads(json.dumps(rows[0]))
    other.update(given="faster-but-jittery", ms=60.0, p90_ms=130.0)
    other["timing"].update(median_ms=60.0, p90_ms=130.0)
    rows[0].update(ms=70.0, p90_ms=80.0)
    rows[0]["timing"].update(median_ms=70.0, p90_ms=80.0)
    quality = {q["key"]: q for q in report["quality"]["rows"]}
    quality["faster-but-jittery"] = dict(quality["good/onnx"], ssim=quality["good/onnx"]["ssim"]
                                         + 0.01, key="faster-but-jittery")
    checks = report["checks"] + [{"check": "ssim-ratio", "model": "faster-but-jittery",
                                  "passed": True}]
    row = _backend_row("ort-fp32", rows + [other], "160x96", 10.0, False, checks, quality, {})
    assert row["ship"] == "good", row
    assert "; over budget: faster-but-jittery (130.0 ms at p90 (median 60.0 ms))" in row["why"]


def test_what_to_ship_names_the_file_and_the_command_that_runs_it(env, ship_run, tmp_path):
    """The answer named a model ("good on ONNX Runtime FP32") but not the file: the artifact
    the bench timed sits in its cache under a hash, and a PyTorch pick is no file `sharpen
    run` takes. Each pick now carries its file and the `sharpen run` line (on the threads it
    was timed on); the answer names a file the runtime takes before a checkpoint it refuses,
    and that line runs."""
    from benchmarks.ship import ship_section
    from runtime.cli import main as run_main

    _, report = ship_run
    report = _unloaded(report)
    report["settings"]["threads"] = 1
    for q in report["quality"]["rows"]:   # PyTorch scoring higher does not make it the answer
        if q["key"] == "good/pytorch":
            q["ssim"] += 0.01
    ship = ship_section(report)
    rows = {r["backend"]: r for r in ship["rows"]}
    onnx = next(q for q in report["quality"]["rows"] if q["key"] == "good/onnx")
    assert rows["ort-fp32"]["file"] == onnx["file"] and Path(onnx["file"]).is_file(), onnx
    line = f"sharpen run --model {onnx['file']} --source INPUT --out OUTPUT --threads 1"
    assert rows["ort-fp32"]["run"] == line, rows["ort-fp32"]
    assert rows["pytorch"]["file"] is None
    assert rows["pytorch"]["run"] == (
        "sharpen run takes an exported file: export it first (sharpen export --weights "
        f"{env / 'student-good.pt'} --out export/)"), rows["pytorch"]
    assert ship["answer"].startswith("good on ONNX Runtime FP32: "), ship["answer"]
    assert ship["answer"].endswith(f"; run it: {line}"), ship["answer"]
    src = env / "pairs" / "input" / "astronaut.png"
    argv = shlex.split(line)[1:]
    argv[argv.index("INPUT")], argv[argv.index("OUTPUT")] = str(src), str(tmp_path / "o.png")
    assert run_main(argv) == 0
    assert read_image(tmp_path / "o.png").shape == read_image(src).shape


def test_the_run_line_of_what_to_ship_is_quoted_for_the_shell(env, ship_run, tmp_path):
    """The `sharpen run` line put the file in unquoted: a cache or --model file under a
    folder with a space (C:\\Users\\Jane Doe) pasted as two words, and `sharpen run` found no
    file. The line is quoted for the shell, runs as pasted, and so is the export line of a
    checkpoint under such a folder."""
    from benchmarks.ship import ship_section
    from runtime.cli import main as run_main

    _, report = ship_run
    report = _unloaded(report)
    folder = tmp_path / "my models & co"
    folder.mkdir()
    for q in report["quality"]["rows"]:
        if q["key"] == "good/onnx":
            q["file"] = str(shutil.copy(q["file"], folder / Path(q["file"]).name))
    ckpt = tmp_path / "my students" / "student-good.pt"
    ckpt.parent.mkdir()
    for st in report["settings"]["students"]:
        if st["name"] == "good":
            st["path"] = str(ckpt)
    rows = {r["backend"]: r for r in ship_section(report)["rows"]}
    line = rows["ort-fp32"]["run"]
    argv = shlex.split(line)
    assert argv[:4] == ["sharpen", "run", "--model", rows["ort-fp32"]["file"]], line
    src = env / "pairs" / "input" / "astronaut.png"
    argv[argv.index("INPUT")], argv[argv.index("OUTPUT")] = str(src), str(tmp_path / "o.png")
    assert run_main(argv[1:]) == 0
    assert read_image(tmp_path / "o.png").shape == read_image(src).shape
    export = rows["pytorch"]["run"].split("export it first (", 1)[1].rstrip(")")
    assert shlex.split(export) == ["sharpen", "export", "--weights", str(ckpt), "--out",
                                   "export/"], rows["pytorch"]["run"]


def test_the_run_line_of_what_to_ship_has_the_threads_the_bench_ran_on(ship_run):
    """The run line took --threads from the bench's own option alone: a bench run under
    OMP_NUM_THREADS=1 (the backends' thread count where --threads is not given) timed every
    backend on one thread, and its line ran on the engine's default, every core, where the
    shell pasting it has no OMP_NUM_THREADS: not the speed judged."""
    from benchmarks.ship import ship_section

    _, report = ship_run
    report = _unloaded(report)
    report["settings"]["threads"] = 0                        # no --threads
    report["latency"]["settings"]["runtime_threads"] = 1     # OMP_NUM_THREADS=1's
    rows = {r["backend"]: r for r in ship_section(report)["rows"]}
    assert rows["ort-fp32"]["run"].endswith(" --threads 1"), rows["ort-fp32"]["run"]
    report["latency"]["settings"]["runtime_threads"] = None   # the engines' own default
    rows = {r["backend"]: r for r in ship_section(report)["rows"]}
    assert "--threads" not in rows["ort-fp32"]["run"], rows["ort-fp32"]["run"]
    # a report from before runtime_threads was kept: --threads, as the bench took it
    del report["latency"]["settings"]["runtime_threads"]
    report["settings"]["threads"] = 3
    rows = {r["backend"]: r for r in ship_section(report)["rows"]}
    assert rows["ort-fp32"]["run"].endswith(" --threads 3"), rows["ort-fp32"]["run"]


def test_what_to_ship_from_a_report_without_p90_says_it_judged_the_median(ship_run):
    """A report.json from before the p90 was kept, read back, is judged on its medians, but
    each row said "within budget at p90" and its p90 column showed the median: a rule it
    was not judged on and a number that is not a p90. The rows now say the median."""
    from benchmarks.ship import ship_section, table_rows

    _, report = ship_run
    report = _unloaded(report)
    for r in report["latency"]["rows"]:
        r.pop("p90_ms", None)
        r.pop("timing", None)
    ship = ship_section(report)
    for row, cells in zip(ship["rows"], table_rows(ship)):
        assert row["judged_on"] == "median (no p90 recorded)", row
        assert "at p90" not in row["why"], row["why"]
        assert row["why"].startswith("the only one within budget on the median (no p90 "
                                     "recorded) that passes its checks"), row["why"]
        assert cells[4] == "-", cells   # the p90 column: none recorded
    assert "ms (median; no p90 recorded) per 160x96 frame" in ship["answer"], ship["answer"]
    report["settings"]["cpu_target_fps"] = 100000.0
    ship = ship_section(report)
    for row in ship["rows"]:
        assert row["why"].startswith("none within 0.01 ms on the median (no p90 recorded); "
                                     "the fastest that passes"), row["why"]


def test_a_pytorch_pick_says_no_exported_file_timed_here_fits(ship_run):
    """Where only PyTorch's checkpoint fit, the answer said "export it first" as if the
    export would do, when the bench had timed that export over its budget: the reader
    exported the file the bench had judged too slow. The answer says none of the exported
    files timed fits, before the export line."""
    from benchmarks.ship import ship_section

    _, report = ship_run
    report = _unloaded(report)
    report["settings"]["cpu_target_fps"] = 10.0   # 100 ms per frame
    _timed_as(report, "ort-fp32", 92.6, 112.4)
    _timed_as(report, "pytorch", 34.5, 41.2)
    ship = ship_section(report)
    assert ship["answer"].startswith("good on PyTorch eager: "), ship["answer"]
    assert ship["answer"].endswith(
        "; no exported file benchmarked here is within its budget and passes its checks (each "
        "backend's row says why); sharpen run takes an exported file: export it first "
        f"(sharpen export --weights {shlex.quote(report['settings']['students'][0]['path'])} "
        "--out export/)"), ship["answer"]


def test_a_file_sharpen_run_refuses_is_never_what_to_ship(env, ship_run, tmp_path):
    """The bench times an artifact whose export parity gate failed (it loads it forced) and
    judges it on its own held-out parity, which it may pass: it was picked, and its run line
    failed, `sharpen run` refusing the file without --force. Such a file is left out, with
    why, whether the bench's cache built it or --model gave it."""
    from benchmarks.given import resolve_models
    from benchmarks.ship import ship_section
    from runtime.backends import failed_marker
    from runtime.cli import main as run_main

    _, report = ship_run
    report = _unloaded(report)
    onnx = Path(report["artifacts"]["good"]["formats"]["onnx"]["file"])
    bad = tmp_path / "gate" / onnx.name
    bad.parent.mkdir()
    shutil.copy(onnx, bad)
    # what the export leaves beside a file its gate failed
    failed_marker(bad).write_text(json.dumps({"format": "onnx", "status": "fail",
                                              "reason": "max abs 0.2 >= 0.01"}))
    src = env / "pairs" / "input" / "astronaut.png"
    assert run_main(["run", "--model", str(bad), "--source", str(src), "--out",
                     str(tmp_path / "o.png")]) != 0   # the premise: the run line would fail
    report["artifacts"]["good"]["formats"]["onnx"].update(status="fail",
                                                          reason="max abs 0.2 >= 0.01")
    rows = {r["backend"]: r for r in ship_section(report)["rows"]}
    assert rows["ort-fp32"]["ship"] is None, rows["ort-fp32"]
    assert rows["ort-fp32"]["why"].startswith(
        "none passes its checks: good (its export's parity gate failed, which sharpen run "
        "refuses without --force: max abs 0.2 >= 0.01)"), rows["ort-fp32"]["why"]
    # a --model file: its export's verdict is read with it
    (gm,) = resolve_models([str(bad)], taken=["good", "bad"])
    assert gm.export_gate == "max abs 0.2 >= 0.01", gm
    assert gm.to_dict()["export_gate"] == gm.export_gate
    (fine,) = resolve_models([str(onnx)], taken=["good", "bad"])
    assert fine.export_gate is None, fine


def test_report_md_gives_what_to_ship_s_command_as_code(ship_run):
    """report.md ended the answer with the run line and a full stop: copied from the
    rendered page, `--threads 1.` failed to parse (or `--out OUTPUT.` named a file with a
    dot), and Markdown read a Windows path's backslash before a dot (C:\\Users\\me\\.cache)
    as an escape, showing another path. The command is a code span there, the full stop
    outside it; the terminal and report.json keep the plain line."""
    from benchmarks.markdown import render_markdown
    from benchmarks.ship import ship_section

    _, report = ship_run
    report = _unloaded(report)
    report["settings"]["threads"] = 1
    report["ship"] = ship = ship_section(report)
    run = next(r["run"] for r in ship["rows"] if r["backend"] == "ort-fp32")
    assert ship["answer"].endswith(f"; run it: {run}"), ship["answer"]
    (line,) = [ln for ln in render_markdown(report).splitlines() if ln.startswith("**Answer:")]
    assert line == f"**Answer:** {ship['answer'][:-len(run)]}`{run}`.", line
    # a PyTorch pick: the export line is the command
    report["settings"]["cpu_target_fps"] = 10.0
    _timed_as(report, "ort-fp32", 92.6, 112.4)
    _timed_as(report, "pytorch", 34.5, 41.2)
    report["ship"] = ship = ship_section(report)
    export = ship["answer"].rsplit("(", 1)[1].rstrip(")")
    assert export.startswith("sharpen export --weights "), ship["answer"]
    (line,) = [ln for ln in render_markdown(report).splitlines() if ln.startswith("**Answer:")]
    assert line.endswith(f"export it first (`{export}`)."), line


def test_a_model_failing_parity_is_never_what_to_ship(ship_run):
    """However fast and however good its SSIM, an artifact whose parity failed is no pick:
    its backend says none passes, with the failed check, and the answer names another."""
    from benchmarks.ship import ship_section

    _, report = ship_run
    report = json.loads(json.dumps(report))
    _timed_as(report, "ort-fp32", 1.0, 1.0)
    for q in report["quality"]["rows"]:
        if q["key"] == "good/onnx":
            q["ssim"] += 0.5
    for c in report["checks"]:
        if c["check"] == "parity" and c["model"] == "good/onnx":
            c["passed"] = False
    ship = ship_section(report)
    rows = {r["backend"]: r for r in ship["rows"]}
    assert rows["ort-fp32"]["ship"] is None, rows["ort-fp32"]
    assert rows["ort-fp32"]["why"].startswith("none passes its checks: good (parity failed: ")
    assert rows["pytorch"]["ship"] == "good"
    assert ship["answer"].startswith("good on PyTorch eager: "), ship["answer"]


def test_what_to_ship_says_when_the_machine_was_busy_while_timing(ship_run, capsys):
    """Two quick runs of the same two TFLite files on a shared 2-core machine gave FP16 153.8
    and then 562.5 ms at 1080p: the pick flipped from FP16 to INT8 with no word that other
    processes had the CPU. The run records the load average before and after the timings, and
    where it exceeds the machine's cores the answer says so, on every surface."""
    from benchmarks.cli import _print_summary
    from benchmarks.markdown import render_markdown
    from benchmarks.ship import ship_section

    _, report = ship_run
    load = report["latency"]["settings"]["load"]
    assert set(load) == {"before", "after", "cores", "threads"}, load
    assert load["threads"] == report["latency"]["settings"]["runtime_threads"], load
    assert load["cores"] == os.cpu_count() and all(
        isinstance(load[k], float) and load[k] >= 0 for k in ("before", "after")), load
    report = json.loads(json.dumps(report))
    report["latency"]["settings"]["load"] = {"before": 3.1, "after": 4.27, "cores": 2}
    ship = ship_section(report)
    note = ("timed on a busy machine: load average 4.27 (1 min) on 2 cores, other processes "
            "took CPU time from these timings; rerun on a quiet machine before deciding")
    assert ship["busy"] == note, ship["busy"]
    # before the run line, which ends the answer for a reader to copy
    assert f"; {note}; run it: sharpen run --model " in ship["answer"], ship["answer"]
    report["ship"] = ship
    assert _md_answer(ship) in render_markdown(report)
    capsys.readouterr()
    _print_summary(report)
    assert f"what to ship: {ship['answer']}" in capsys.readouterr().out.splitlines()
    # the bench's own threads on every core, with half a core of slack, are not "busy"
    for quiet in ({"before": 1.0, "after": 2.4, "cores": 2}, None):
        report["latency"]["settings"]["load"] = quiet
        ship = ship_section(report)
        assert ship["busy"] is None and "busy" not in ship["answer"], ship["answer"]


def test_a_bench_on_more_threads_than_cores_is_not_called_busy_for_its_own():
    """--threads 4 on 2 cores (warned of) keeps about 4 threads runnable by itself: the note
    blamed "other processes" for the load the bench's own threads made. Its threads count
    beside the cores; a load beyond both is still other processes'."""
    from benchmarks.machine import busy_text

    assert busy_text({"before": 3.6, "after": 4.2, "cores": 2, "threads": 4}) is None
    assert busy_text({"before": 3.6, "after": 5.3, "cores": 2, "threads": 4}) == (
        "timed on a busy machine: load average 5.3 (1 min) on 2 cores (4 threads of this "
        "run's own), other processes took CPU time from these timings; rerun on a quiet "
        "machine before deciding")
    # a report from before the threads were kept, and a run on fewer threads than cores
    for threads in ({}, {"threads": None}, {"threads": 1}):
        load = {"before": 1.0, "after": 2.7, "cores": 2, **threads}
        assert busy_text(load).startswith("timed on a busy machine: load average 2.7 (1 min) "
                                          "on 2 cores, other processes"), busy_text(load)


def test_the_report_says_the_held_out_set_is_synthetic_blur(env, good_run, capsys):
    """The embedded held-out set is synthetic camera shake, and the report said only
    "embedded default, fixed test split": its SSIM read as a real-blur number. The terminal
    title, report.md and report.json say so now, and what measures real blur; a set of the
    user's is named as it is, claimed neither synthetic nor real."""
    from benchmarks import cli as bench_cli

    out = env / "embedded"
    rc = bench_cli.main(["--out", str(out), "--teacher-weights", str(env / "teacher.pt"),
                         "--cache", str(env / "cache"), "--quiet", "--students",
                         str(env / "student-good.pt"), "--formats", "onnx", "--no-latency",
                         "--limit", "1"])
    report = json.loads((out / "report.json").read_text())
    assert rc in (0, 1), report["checks"]   # the tiny teacher's gate is not under test
    assert "synthetic camera-shake blur" in report["quality"]["data"]
    term = " ".join(capsys.readouterr().out.split())
    assert ("quality: mean over the held-out set (embedded test split, synthetic blur, 1 "
            "image)") in term, term
    md = (out / "report.md").read_text()
    assert ("Its blur is synthetic, and this run measured no real blur (`--real-pairs DIR`"
            in md), md
    from benchmarks.quality import held_out_label
    _, user = good_run
    assert held_out_label(user) == f"{env / 'pairs'}, 3 images"
    assert "synthetic" not in render_quality_intro(user)


def render_quality_intro(report: dict) -> str:
    from benchmarks.markdown import render_markdown
    md = render_markdown(report)
    return md[md.index("## Quality"):md.index("| model |")]


def test_latency_titles_say_what_the_numbers_are_and_where_they_ran(good_run, capsys):
    """The terminal's latency table was titled "latency (target 30 fps)": not the statistic,
    which way is better, the CPU or the threads its numbers came from (report.md had them
    sections away, the figure not at all)."""
    from benchmarks.cli import _print_summary
    from benchmarks.markdown import render_markdown

    _, report = good_run
    cpu = report["machine"]["cpu"]
    threads = report["latency"]["settings"]["runtime_threads"]
    capsys.readouterr()
    _print_summary(report)
    term = " ".join(capsys.readouterr().out.split())
    assert ("latency (median ms per frame, lower is better; meets target: p90 <= 100.0 ms "
            f"(10 fps) on a CPU, 33.3 ms (30 fps) on a GPU; {cpu}, ONNX Runtime / LiteRT on ") \
        in term, term
    if threads:
        assert f"LiteRT on {threads} thread" in term
    assert f"Timed on {cpu} (" in render_markdown(report)


def test_every_crop_of_the_hardest_images_says_whose_it_is_and_its_psnr(env, good_run):
    """hardest_crops.png titled its first row alone, and only the blurred crops had a number:
    a reader of the lower rows counted columns, and told the better output by eye."""
    from benchmarks.figures import crop_titles

    _, report = good_run
    rows = {r["key"]: r for r in report["quality"]["rows"]}
    names = [d["image"] for d in report["quality"]["images"]]
    cols = ["blurred", "teacher", "good", "sharp"]
    titles = crop_titles(report, names, cols, 1)
    assert set(titles) == {(n, c) for n in names for c in cols}
    for d in report["quality"]["images"]:
        n = d["image"]
        psnr = {k: next(i["psnr"] for i in rows[k]["images"] if i["image"] == n)
                for k in ("teacher", "good/pytorch")}
        assert titles[n, "blurred"] == f"{n}\nblurred (PSNR {d['input_psnr']:.1f} dB)"
        assert titles[n, "teacher"] == f"teacher (PSNR {psnr['teacher']:.1f} dB)"
        assert titles[n, "good"] == f"student good (PSNR {psnr['good/pytorch']:.1f} dB)"
        assert titles[n, "sharp"] == "ground truth"
    assert (env / "good" / "hardest_crops.png").is_file()


def test_report_numbers_agree_with_direct_metrics(env, good_run):
    _, report = good_run
    rows = {r["key"]: r for r in report["quality"]["rows"]}
    pairs = _pairs(env)
    assert rows["input"]["n_images"] == len(pairs) == 3

    from distill.checkpoint import load_student
    from distill.metrics import quantise_8bit
    from distill.teacher import Teacher

    model, _ = load_student(env / "student-good.pt")
    teacher = Teacher.load(env / "teacher.pt", device="cpu")
    import onnxruntime as ort

    onnx_file = rows["good/onnx"]["file"]
    sess = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    name_in = sess.get_inputs()[0].name
    got = {k: {"psnr": [], "ssim": [], "ssim_teacher": []} for k in
           ("input", "teacher", "good/pytorch", "good/onnx")}
    for _, blurred, sharp in pairs:
        t_out = teacher.sharpen(blurred, tile=TEACHER_TILE, overlap=TEACHER_OVERLAP)
        x = torch.from_numpy(blurred.transpose(2, 0, 1).copy())[None]
        with torch.no_grad():
            s_out = run_padded(model, x)[0].permute(1, 2, 0).numpy()
        h, w = blurred.shape[:2]
        pad = np.pad(blurred, ((0, (-h) % 8), (0, (-w) % 8), (0, 0)), mode="reflect")
        o_out = sess.run(None, {name_in: pad.transpose(2, 0, 1)[None].copy()})[0]
        o_out = o_out[0].transpose(1, 2, 0)[:h, :w]
        # The bench scores models' outputs as the 8-bit images a user saves (the input as given).
        t_out, s_out, o_out = (quantise_8bit(o) for o in (t_out, s_out, o_out))
        for key, out in (("input", blurred), ("teacher", t_out), ("good/pytorch", s_out),
                         ("good/onnx", o_out)):
            got[key]["psnr"].append(psnr(out, sharp))
            got[key]["ssim"].append(ssim(out, sharp))
            if key.startswith("good/"):
                got[key]["ssim_teacher"].append(ssim(out, t_out))
    for key, vals in got.items():
        assert rows[key]["status"] == "ok", rows[key]
        assert rows[key]["psnr"] == pytest.approx(np.mean(vals["psnr"]), abs=1e-3), key
        assert rows[key]["ssim"] == pytest.approx(np.mean(vals["ssim"]), abs=1e-4), key
        if vals["ssim_teacher"]:
            assert rows[key]["ssim_teacher"] == pytest.approx(np.mean(vals["ssim_teacher"]),
                                                              abs=1e-4), key
    # What the artifact loses against the FP32 student in SSIM to ground truth, worst image.
    drops = np.array(got["good/pytorch"]["ssim"]) - np.array(got["good/onnx"]["ssim"])
    assert rows["good/onnx"]["parity"]["ssim_drop"] == pytest.approx(drops.max(), abs=1e-4)
    # The check's threshold is derived from the reported teacher SSIM.
    check = next(c for c in report["checks"] if c["check"] == "ssim-ratio")
    assert check["threshold"] == pytest.approx(0.95 * rows["teacher"]["ssim"])
    assert check["value"] == pytest.approx(rows["good/pytorch"]["ssim"])
    # Per-image input PSNRs are what the 'hardest blur' figure sorts by.
    by_img = {d["image"]: d["input_psnr"] for d in report["quality"]["images"]}
    for (n, blurred, sharp) in pairs:
        assert by_img[n] == pytest.approx(psnr(blurred, sharp), abs=1e-6)


def test_missing_backends_are_skipped_with_reasons(good_run):
    _, report = good_run
    lat = report["latency"]["rows"]
    eng = [r for r in lat if r["backend"] == "trt-fp16"]
    assert eng and all(r["status"] == "skipped" for r in eng)
    assert all(r["reason"] == MISSING_REASON for r in eng)
    q = next(r for r in report["quality"]["rows"] if r["key"] == "good/engine")
    assert q["status"] == "skipped" and q["reason"] == MISSING_REASON
    assert q["psnr"] is None and q["ssim"] is None
    assert any(d["reason"] == MISSING_REASON for d in report["skipped"])
    # Never zeros: anything not measured has no numbers, everything measured is positive.
    for r in lat + report["latency"]["stream"]:
        if r["status"] == "ok":
            assert r["ms"] > 0 and r["fps"] > 0 and isinstance(r["meets_target"], bool), r
        else:
            assert r["reason"], r
            assert r["ms"] is None and r["fps"] is None and r["meets_target"] is None, r
    measured = {r["backend"] for r in lat if r["status"] == "ok"}
    assert {"teacher-tiled", "pytorch", "ort-fp32"} <= measured
    sp = next(r for r in lat if r["backend"] == "ort-fp32")
    assert sp["speedup_vs_teacher"] and sp["speedup_vs_teacher"] > 0
    # A frame smaller than the teacher's tile runs as one tile of its own size, and is timed so
    # (it was timed as a 512x512 tile, which inflated the speedups).
    tr = next(r for r in lat if r["backend"] == "teacher-tiled")
    assert tr["tile_shape"] == "160x96" and tr["tiles_per_frame"] == 1
    # Medians and p90s, never minima; the share of the CPU's measured FP32 matrix rate.
    assert sp["p90_ms"] >= sp["ms"] > 0 and sp["timing"]["min_ms"] <= sp["ms"]
    assert report["latency"]["settings"]["sgemm_peak_gmacs"] > 0
    assert sp["gmac"] > 0 and sp["peak_frac"] == pytest.approx(
        sp["gmac"] / (sp["ms"] / 1000) / report["latency"]["settings"]["sgemm_peak_gmacs"],
        rel=0.1)   # both rounded in the report
    assert report["latency"]["stream"][0]["status"] == "ok"
    # The export cache is reused: a second call builds nothing.
    from benchmarks.artifacts import ensure_artifacts, resolve_students

    st = resolve_students([report["settings"]["students"][0]["path"]])[0]
    again = ensure_artifacts(st, report["settings"]["cache"], "onnx", quiet=True)
    assert again.built_now == [] and again.get("onnx").usable
    # ... also when the cache is named by a path relative to another directory.
    here = os.getcwd()
    os.chdir(report["settings"]["cache"])
    try:
        rel = ensure_artifacts(st, ".", "onnx", quiet=True)
    finally:
        os.chdir(here)
    assert rel.built_now == [] and Path(rel.get("onnx").file).is_absolute()
    # ... unless it was built by other exporter code: then it is rebuilt, not reused.
    from benchmarks.artifacts import STAMP

    stamp_path = Path(report["settings"]["cache"]) / f"{st.path.stem}-{st.hash}" / STAMP
    stamp = json.loads(stamp_path.read_text())
    stamp["settings"]["exporter"] = "older-code"
    stamp_path.write_text(json.dumps(stamp))
    rebuilt = ensure_artifacts(st, report["settings"]["cache"], "onnx", quiet=True)
    assert rebuilt.built_now == ["onnx"] and rebuilt.get("onnx").usable
    # '--float-layers none' is the default: the same cache, nothing exported again
    for spelling in ("none", " None "):
        same = ensure_artifacts(st, report["settings"]["cache"], "onnx", quiet=True,
                                float_layers=spelling)
        assert same.folder == rebuilt.folder and same.built_now == [], (spelling, same.folder)
    # Mixed-precision artifacts (--float-layers) are cached beside the full-integer ones, and a
    # layer the student does not have is a clear error naming it.
    mixed = ensure_artifacts(st, report["settings"]["cache"], "onnx-int8", quiet=True,
                             float_layers="head")
    assert mixed.built_now == ["onnx-int8"] and mixed.folder.name.endswith("-float-head")
    assert "float layers: head" in str(__import__("onnx").load(mixed.get("onnx-int8").file)
                                       .metadata_props)
    from benchmarks.artifacts import BenchError
    with pytest.raises(BenchError, match="'nope' is not a layer of"):
        ensure_artifacts(st, report["settings"]["cache"], "onnx-int8", quiet=True,
                         float_layers="nope")


def test_a_library_upgrade_misses_the_cache(env, good_run, monkeypatch):
    """The cache keys held no library versions: after an ONNX Runtime, LiteRT, torch or OpenCV
    upgrade the bench reused artifacts built (and parity measured) by the old ones, and teacher
    outputs the old torch computed. An upgrade is simulated where it shows: in the installed
    packages' metadata."""
    import importlib.metadata

    from benchmarks.artifacts import STAMP, ensure_artifacts, resolve_students
    from benchmarks.quality import TeacherOutputs, load_pairs

    _, report = good_run
    cache = report["settings"]["cache"]
    st = resolve_students([report["settings"]["students"][0]["path"]])[0]
    ensure_artifacts(st, cache, "onnx", quiet=True)
    assert ensure_artifacts(st, cache, "onnx", quiet=True).built_now == []
    blurred = load_pairs(str(env / "pairs"))[0][0].blurred
    assert TeacherOutputs(env / "teacher.pt", cache_root=cache).has(blurred)

    installed = importlib.metadata.version

    def upgraded(*libs):
        return lambda dist: "99.0" if dist in libs else installed(dist)
    with monkeypatch.context() as mp:
        mp.setattr(importlib.metadata, "version", upgraded("onnxruntime"))
        rebuilt = ensure_artifacts(st, cache, "onnx", quiet=True)
        assert rebuilt.built_now == ["onnx"] and rebuilt.get("onnx").usable
        # Stamped with the version that built it: the next run reuses it.
        assert ensure_artifacts(st, cache, "onnx", quiet=True).built_now == []
        # torch's kernels compute the teacher outputs.
        assert TeacherOutputs(env / "teacher.pt", cache_root=cache).has(blurred)
    with monkeypatch.context() as mp:
        mp.setattr(importlib.metadata, "version", upgraded("torch"))
        assert not TeacherOutputs(env / "teacher.pt", cache_root=cache).has(blurred)
        assert ensure_artifacts(st, cache, "onnx", quiet=True).built_now == ["onnx"]
    stamp = json.loads((Path(cache) / f"{st.path.stem}-{st.hash}" / STAMP).read_text())
    assert stamp["formats"]["onnx"]["versions"]["torch"] == "99.0"
    from benchmarks.artifacts import format_versions
    assert {"torch", "opencv", "onnxruntime"} <= set(format_versions("onnx"))
    assert {"torch", "opencv", "ai_edge_litert"} <= set(format_versions("tflite-int8"))
    # Back on the installed versions: rebuilt once more, the cache then reused again.
    assert ensure_artifacts(st, cache, "onnx", quiet=True).built_now == ["onnx"]


def test_the_bench_and_the_export_agree_on_what_makes_an_artifact_stale():
    """The bench's cache kept its own list of each format's libraries and its own code hash
    beside the export's record: an onnxslim upgrade rebuilt the export's ONNX models but the
    bench reused its cached ones, and so did a change to the runtime backends the gate runs.
    Both now read the format table's libraries and export's code hash."""
    import optimize.export as ex
    from benchmarks.artifacts import PHOTO_LIBRARIES, Student, _settings, format_versions
    from runtime.host import LIBRARIES

    o = ex.ExportOptions(thresholds=ex.Thresholds())
    crops = np.zeros((1, 3, 8, 8), np.float32)
    fmts = [f for f, spec in ex.FORMATS.items() if spec.engine != "tensorrt"]
    record = ex.build_inputs(fmts, "w", o, None, crops, [("p", np.zeros((8, 8, 3)))], {}, {})
    for f, spec in ex.FORMATS.items():
        assert set(spec.libraries) <= set(LIBRARIES), f
        bench = set(format_versions(f)) - set(PHOTO_LIBRARIES)
        assert bench == set(spec.libraries), f
        if f in record:
            assert set(record[f]["libraries"]) == bench, f
    assert _settings(Student("s", Path("s.pt"), "h"), 1)["exporter"] == record["onnx"]["code"]


def test_stream_row_is_its_per_frame_latency_and_its_throughput(env, good_run):
    """The stream row's "ms" was 1000 / throughput, a frame interval of threads that overlap,
    read beside the other rows as a per-frame latency. It is now the stream's own end-to-end
    latency per frame, median and p90 like every other row, and fps its throughput, which the
    target is judged on."""
    from benchmarks.latency import result_row
    from benchmarks.markdown import STREAM_HEADERS, stream_table

    _, report = good_run
    r = report["latency"]["stream"][0]
    e2e = r["stats"]["end_to_end_ms"]
    assert e2e["n"] == r["stats"]["frames_processed"] == 3
    assert r["ms"] == e2e["p50"] and r["p90_ms"] == e2e["p90"] >= r["ms"] > 0
    assert r["fps"] == pytest.approx(r["stats"]["throughput_fps"], abs=1e-3)
    # judged on its backend's budget (the CPU's here), on its throughput
    assert (r["target_device"], r["target_fps"]) == ("CPU", report["settings"]["cpu_target_fps"])
    assert r["meets_target"] == (r["fps"] >= r["target_fps"])
    assert "end-to-end latency per frame" in r["note"]
    md = (env / "good" / "report.md").read_text()
    assert "| end-to-end median ms | end-to-end p90 ms |" in md
    cells = dict(zip(STREAM_HEADERS, stream_table([r])[0]))
    assert cells["end-to-end median ms"] == f"{r['ms']:.1f}"
    assert cells["end-to-end p90 ms"] == f"{r['p90_ms']:.1f}"
    assert cells["fps (throughput)"] == f"{r['fps']:.2f}"
    # A throughput that is not 1000 / ms decides the target and the speedup.
    row = result_row(model="student s", student="s", backend="pipeline-ort-fp32",
                     size=(64, 48), ms=80.0, fps=40.0, target_fps=30, teacher_ms=1000.0)
    assert row["ms"] == 80.0 and row["fps"] == 40.0 and row["meets_target"] is True
    assert row["speedup_vs_teacher"] == 40.0


def test_bad_student_fails_ssim_check(env, good_run, capsys):
    rc = _bench(env, "bad", "--students", str(env / "student-bad.pt"), "--formats", "onnx",
                "--no-latency")
    assert rc == 1
    err = capsys.readouterr().err
    assert "CHECK FAILED" in err and "student 'bad'" in err and "SSIM" in err
    report = json.loads((env / "bad" / "report.json").read_text())
    assert report["ok"] is False and report["exit_code"] == 1
    failed = [c for c in report["checks"] if not c["passed"]]
    assert [c["check"] for c in failed] == ["ssim-ratio"]
    c = failed[0]
    assert c["model"] == "bad/pytorch" and c["value"] < c["threshold"]
    assert f"{c['value']:.4f}" in c["message"] and f"{c['threshold']:.4f}" in c["message"]
    assert (env / "bad" / "report.md").is_file()
    assert "**FAIL**" in (env / "bad" / "report.md").read_text()


def test_ssim_gain_gate():
    """The gain gate: 0 for a student no better than the input, 1 for one matching the teacher,
    and a clear failure when the teacher itself gains nothing."""
    from benchmarks.artifacts import Student
    from benchmarks.quality import _checks

    def rows(student: float, teacher: float = 0.75, blurred: float = 0.58) -> dict:
        return {"input": {"ssim": blurred, "kind": "input"},
                "teacher": {"ssim": teacher, "reason": None, "kind": "teacher"},
                "s/pytorch": {"key": "s/pytorch", "kind": "pytorch", "ssim": student,
                              "reason": None}}

    st = [Student(name="s", path=Path("s.pt"), hash="0")]
    identity = _checks(rows(0.58), st, 0.95, gain=0.1)[0]
    assert identity["check"] == "ssim-gain" and not identity["passed"]
    assert identity["gain_fraction"] == pytest.approx(0.0)
    half = _checks(rows(0.665), st, 0.95, gain=0.4)[0]
    assert half["passed"] and half["gain_fraction"] == pytest.approx(0.5)
    assert "0.50 x the teacher's +0.1700" in half["message"]
    assert not _checks(rows(0.665), st, 0.95, gain=0.6)[0]["passed"]
    # The same student fails the default ratio gate: 0.665 < 0.95 x 0.75.
    assert not _checks(rows(0.665), st, 0.95)[0]["passed"]
    no_gain = _checks(rows(0.6, teacher=0.57), st, 0.95, gain=0.1)[0]
    assert not no_gain["passed"] and "does not improve on the blurred input" in no_gain["message"]


def test_bad_student_fails_gain_gate(env, good_run):
    rc = _bench(env, "bad-gain", "--students", str(env / "student-bad.pt"), "--formats", "onnx",
                "--no-latency", "--min-ssim-gain", "0.1")
    assert rc == 1
    report = json.loads((env / "bad-gain" / "report.json").read_text())
    assert report["settings"]["min_ssim_gain"] == 0.1
    assert report["settings"]["min_ssim_ratio"] is None
    failed = [c for c in report["checks"] if not c["passed"]]
    assert [c["check"] for c in failed] == ["ssim-gain"]
    assert "--min-ssim-gain 0.1" in "\n".join(report["commands"])


def test_bad_student_fails_pytest_suite(env, good_run):
    """The same check inside `pytest benchmarks/` fails with the message."""
    _, out = _run_suite("-k", "keeps_teacher", "--students", str(env / "student-bad.pt"),
                        "--teacher-weights", str(env / "teacher.pt"), "--data",
                        str(env / "pairs"), "--formats", "onnx", "--cache", str(env / "cache"),
                        file="test_quality.py", expect=1)
    assert "SSIM check failed" in out and "student 'bad'" in out, out


def test_usage_errors_exit_2(env, capsys):
    from benchmarks import cli as bench_cli

    rc = bench_cli.main(["--out", str(env / "x"), "--students", str(env / "nope.pt"),
                         "--quiet"])
    assert rc == 2
    assert "student checkpoint not found" in capsys.readouterr().err
    rc = bench_cli.main(["--out", str(env / "x"), "--students", str(env / "student-good.pt"),
                         "--sizes", "big", "--quiet"])
    assert rc == 2
    assert "WIDTHxHEIGHT" in capsys.readouterr().err


def test_an_oversized_omp_num_threads_is_warned_of_before_the_bench_times(env, capsys,
                                                                         monkeypatch):
    """The runtimes time on OMP_NUM_THREADS's count when --threads is not given: a count above
    the cores (shared cores, slower times) went unsaid, as --threads above them did."""
    from benchmarks import cli as bench_cli

    cores = len(os.sched_getaffinity(0))
    monkeypatch.setenv("OMP_NUM_THREADS", str(cores + 1))
    argv = ["--out", str(env / "x"), "--students", str(env / "nope.pt"), "--quiet"]
    assert bench_cli.main(argv) == 2   # stops before any export: only the warning matters
    assert (f"warning: OMP_NUM_THREADS={cores + 1} (the thread count when --threads is not "
            f"given) is more than the {cores} CPU cores") in capsys.readouterr().err
    assert bench_cli.main([*argv, "--threads", str(cores + 2)]) == 2
    assert f"warning: --threads {cores + 2} is more than" in capsys.readouterr().err
    assert bench_cli.main([*argv, "--no-latency"]) == 2   # nothing timed: nothing to say
    assert "CPU cores" not in capsys.readouterr().err


def test_bad_numbers_and_refused_teacher_weights_stop_the_bench_before_any_export(
        env, tmp_path, capsys):
    """--stream-frames -1 ran (then a false 'OpenCV cannot write a video here' row),
    --target-fps nan and inf were taken, and teacher weights the loader refuses were refused
    only after every student had been exported, minutes later."""
    import argparse

    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": argparse.Namespace(x=1)}, evil)   # a global weights_only refuses
    cache = tmp_path / "cache"
    for extra, says in ((["--stream-frames", "-1"], "--stream-frames must be >= 0"),
                        (["--target-fps", "nan"], "--target-fps must be a finite number > 0"),
                        (["--target-fps", "inf"], "--target-fps must be a finite number > 0"),
                        (["--cpu-target-fps", "0"],
                         "--cpu-target-fps must be a finite number > 0, got 0"),
                        (["--teacher-weights", str(evil)], "refuses to unpickle")):
        rc = _bench(env, "never-made", "--students", str(env / "student-good.pt"), "--formats",
                    "onnx", "--cache", str(cache), *extra)
        err = capsys.readouterr().err
        assert rc == 2 and says in err and "Traceback" not in err, err
        assert not cache.exists(), extra      # no student was exported
        assert not (env / "never-made").exists()


def test_spread_over_the_set():
    from distill.data.sources import spread

    items = list(range(12))
    assert spread(items, 4) == [0, 4, 7, 11]
    assert spread(items, None) == items and spread(items, 50) == items
    assert spread(items, 1) == [0]


def test_real_blur_section_matches_direct_metrics(env):
    """--real-pairs / --real-nogt: the report's real-blur rows equal metrics computed directly,
    and both side-by-side figures are written."""
    nogt = _blurred_frames(env, "nogt")
    rc = _bench(env, "real", "--students", str(env / "student-good.pt"), "--formats", "onnx",
                "--no-latency", "--real-pairs", str(env / "pairs"), "--real-nogt", str(nogt))
    assert rc == 0
    out = env / "real"
    report = json.loads((out / "report.json").read_text())
    real = report["real_blur"]
    from distill.checkpoint import load_student
    model, _ = load_student(env / "student-good.pt")
    pairs = _pairs(env)
    with torch.no_grad():
        outs = [run_padded(model.eval(), torch.from_numpy(b.transpose(2, 0, 1))[None])[0]
                .clamp(0, 1).numpy().transpose(1, 2, 0) for _, b, _ in pairs]
    want = np.mean([psnr(o, s) for o, (_, _, s) in zip(outs, pairs)])
    assert real["pairs"]["good"]["psnr"] == pytest.approx(want, abs=1e-3)
    assert real["pairs"]["input"]["psnr"] == pytest.approx(
        np.mean([psnr(b, s) for _, b, s in pairs]), abs=1e-6)
    nogt_res = real["nogt"]
    assert nogt_res["images"] == 3 and "psnr" not in nogt_res["teacher"]
    # Without ground truth the teacher's output is the reference of every other row.
    from distill.images import centre_crop
    from distill.teacher import Teacher
    teacher = Teacher.load(env / "teacher.pt", device="cpu")
    crops = [centre_crop(b, 384) for _, b, _ in pairs]
    # The test frames are smaller than the bench's crop, so `outs` (whole frames) line up.
    assert all(c.shape == b.shape for c, (_, b, _) in zip(crops, pairs))
    t_outs = [np.clip(teacher.sharpen(c, tile=TEACHER_TILE, overlap=TEACHER_OVERLAP), 0, 1)
              for c in crops]
    assert nogt_res["reference"] == "teacher" and "psnr_to_reference" not in nogt_res["teacher"]
    assert nogt_res["input"]["psnr_to_reference"] == pytest.approx(
        np.mean([psnr(c, t) for c, t in zip(crops, t_outs)]), abs=1e-3)
    assert nogt_res["good"]["psnr_to_reference"] == pytest.approx(
        np.mean([psnr(o, t) for o, t in zip(outs, t_outs)]), abs=1e-3)
    md = (out / "report.md").read_text()
    assert "## Real blur" in md and "real_blur_nogt.png" in md
    assert "PSNR to the teacher's output" in md
    assert f"| good | {nogt_res['good']['psnr_to_reference']:.2f} |" in md
    assert "Not measured in this run (`--no-latency`)" in md and "None" not in md
    for name in real["figures"].values():
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_limit_applies_to_the_real_blur_sets_too(env, capsys):
    nogt = _blurred_frames(env, "nogt-limit")
    out = env / "real-limit"
    out.mkdir()
    (out / "report.json").write_text("{}")   # an earlier run's report, and one of its figures
    (out / "quality_vs_latency.png").write_bytes(b"an earlier run's figure")
    rc = _bench(env, "real-limit", "--students", str(env / "student-good.pt"), "--formats",
                "onnx", "--no-latency", "--limit", "2", "--real-pairs", str(env / "pairs"),
                "--real-nogt", str(nogt))
    assert rc == 0
    real = json.loads((out / "report.json").read_text())["real_blur"]
    assert real["pairs"]["images"] == 2 and real["nogt"]["images"] == 2
    printed = capsys.readouterr().out   # the real-blur tables are on the console too
    assert "real blur pairs" in printed and "real blur without ground truth" in printed
    assert f"{real['pairs']['good']['psnr']:.2f}" in printed
    assert "the teacher's 2 worst" in (out / "report.md").read_text()
    assert not (out / "quality_vs_latency.png").exists()   # not this run's: removed
    # The earlier report is kept under another name from the start: a run interrupted before
    # writing its own left it under the final name, read as this run's result.
    assert (out / "report.previous.json").read_text() == "{}"
    figures = json.loads((out / "report.json").read_text())["figures"]
    assert figures and all((out / f).is_file() for f in [*figures.values(),
                                                         *real["figures"].values()])
    settings = json.loads((out / "report.json").read_text())["settings"]
    assert settings["real_pairs"] == str(env / "pairs") and settings["real_nogt"] == [str(nogt)]
    assert settings["real_limits"] == {"--real-pairs": 2, "--real-nogt": 2}
    from benchmarks.markdown import _md_table as md_table
    from benchmarks.realblur import markdown
    nogt_res = {**real["nogt"], "failed": [f"{nogt}/bad.png: not a readable image"]}
    md = "\n".join(markdown({"nogt": nogt_res}, md_table))
    assert "1 image skipped" in md and "bad.png: not a readable image" in md


def test_real_nogt_takes_image_files_and_several_paths(env, capsys):
    """--real-nogt took one folder: a few chosen frames (image files), or frames kept in several
    folders, could not be given. Each path is an image or a folder of images, the limit is
    spread over all of them, and a path that is neither is named before the long work."""
    folder = _blurred_frames(env, "nogt-several")
    other = _blurred_frames(env, "nogt-several-2")   # the same file names as in `folder`
    still = env / "one still.png"
    write_image(still, _pairs(env)[0][1])
    rc = _bench(env, "real-several", "--students", str(env / "student-good.pt"), "--formats",
                "onnx", "--no-latency", "--limit", "7", "--real-nogt", str(folder), str(still),
                str(other / "frame1.png"), str(folder / "frame0.png"))
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    # The printed table's title named the paths as a Python list (['a', 'b']).
    assert "real blur without ground truth" in cap.out and "['" not in cap.out, cap.out
    report = json.loads((env / "real-several" / "report.json").read_text())
    assert report["settings"]["real_nogt"] == [str(folder), str(still), str(other / "frame1.png"),
                                               str(folder / "frame0.png")]
    nogt = report["real_blur"]["nogt"]
    assert nogt["images"] == 5   # frame0, named as well as its folder, scored once
    # frame1 of both: named by path, so neither replaces the other in the per-image scores
    assert set(nogt["per_image"]) == {"frame0", str(folder / "frame1.png"), "frame2",
                                      "one still", str(other / "frame1.png")}
    assert f"{folder}, {still}, {other / 'frame1.png'}, {folder / 'frame0.png'}" in \
        (env / "real-several" / "report.md").read_text()
    notes = env / "notes.txt"
    notes.write_text("not an image")
    empty = env / "no-images"
    empty.mkdir()
    for bad, says in ((notes, f"--real-nogt {notes}: neither an image (bmp, jpeg, "),
                      (empty, f"--real-nogt {empty}: no images")):
        rc = _bench(env, "never-made", "--students", str(env / "student-good.pt"),
                    "--formats", "onnx", "--no-latency", "--real-nogt", str(still), str(bad))
        err = capsys.readouterr().err
        assert rc == 2 and says in err and "Traceback" not in err, err
        assert not (env / "never-made").exists()


def test_real_blur_sets_are_checked_before_the_long_work(env, capsys):
    nogt = _blurred_frames(env, "nogt-check")
    junk = env / "junk"
    junk.mkdir()
    (junk / "a.png").write_bytes(b"not a png")
    for flag, spec, says in (("--real-pairs", nogt, "3 of its 3 images have no ground truth"),
                             ("--real-nogt", junk, "none of its 1 image could be read")):
        rc = _bench(env, "never-made", "--students", str(env / "student-good.pt"), "--formats",
                    "onnx", "--no-latency", flag, str(spec))
        err = capsys.readouterr().err
        assert rc == 2 and says in err and "Traceback" not in err, err
        assert not (env / "never-made").exists()   # a failed run leaves no empty --out
    assert _bench(env, "never-made", "--students", "") == 2
    assert "--weights names no student" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["--out", "b"],
    ["--out", "b", "--full", "--weights", "x.pt", "y.pt", "--min-ssim-gain", "0.2",
     "--real-pairs", "reds", "--real-nogt", "nogt", "--threads", "2", "--no-latency",
     "--sizes", "640x360", "--target-fps", "25", "--cpu-target-fps", "12.5",
     "--max-memory-mib", "1536"],
    ["--out", "b", "--real-nogt", "a frame.png", "day1", "--limit", "3"],
    ["--out", "b", "--min-ssim-ratio", "0.9", "--limit", "3", "--formats", "onnx"],
    ["--out", "b", "--formats", "tflite-int8", "--float-layers", "dec.1,head"],
    ["--out", "b", "--formats", "onnx-int8", "--calib", "frames", "more/*.png"],
    ["--out", "b", "--model", "a.onnx", "b_fp16.engine", "--weights", "x.pt"]])
def test_reproduce_command_round_trips(argv):
    """The report's reproduce command comes from the options object and rebuilds it."""
    from sharpen.cli import build_parser

    from benchmarks.cli import options_from_args

    opts = options_from_args(build_parser().parse_args(["bench", *argv]))
    again = options_from_args(build_parser().parse_args(["bench", *opts.to_argv()]))
    assert again == opts


def test_the_reports_pytest_line_keeps_the_cpu_budget():
    """The report's pytest line left --cpu-target-fps out (the suite did not take it): rerun,
    it judged the CPU rows on another budget than the report it reproduces."""
    from _pytest.config.argparsing import Parser

    from benchmarks import conftest
    from benchmarks.report import BenchOptions

    argv = BenchOptions(out="b", cpu_target_fps=5, target_fps=60).to_argv(pytest=True)
    parser = Parser()
    conftest.pytest_addoption(parser)
    ns = parser.parse(argv)
    assert (ns.cpu_target_fps, ns.target_fps) == (5.0, 60.0), argv


def test_format_is_an_alias_of_formats_as_in_export():
    """`sharpen export` takes --format for --formats; `sharpen bench` took it only as
    argparse's abbreviation (unlisted, and lost once any other --format... option exists), and
    `pytest benchmarks/`, which shares the option names, refused it."""
    from sharpen.cli import build_parser

    from benchmarks.cli import options_from_args

    parser = build_parser()
    bench = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"
                 ).choices["bench"]
    formats = next(a for a in bench._actions if a.dest == "formats")
    assert formats.option_strings == ["--formats", "--format"]
    opts = options_from_args(parser.parse_args(["bench", "--out", "b", "--format",
                                                "onnx,tflite-int8"]))
    assert opts.formats == "onnx,tflite-int8"
    assert "--formats" in opts.to_argv()   # the reproduce command keeps the name
    _run_suite("--collect-only", "--format", "onnx", expect=0, timeout=120)


def test_bad_real_blur_folder_fails_before_the_work(env, capsys):
    from benchmarks import cli as bench_cli
    rc = bench_cli.main(["--out", str(env / "x"), "--weights", str(env / "student-good.pt"),
                         "--teacher-weights", str(env / "teacher.pt"), "--data",
                         str(env / "pairs"), "--real-pairs", str(env / "nowhere"), "--quiet"])
    assert rc == 2 and "--real-pairs" in capsys.readouterr().err
    frames = _blurred_frames(env, "frames-out-inside")
    rc = bench_cli.main(["--out", str(frames / "bench"), "--weights", str(env / "student-good.pt"),
                         "--teacher-weights", str(env / "teacher.pt"), "--data",
                         str(env / "pairs"), "--real-nogt", str(frames), "--quiet"])
    assert rc == 2 and f"is inside --real-nogt {frames}" in capsys.readouterr().err
    assert not (frames / "bench").exists()


def test_quick_mode_leaves_out_sizes_too_big_for_its_memory(tmp_path):
    """Quick mode skips (with the reason) a student at a size where its activations exceed
    QUICK_MAX_ACTIVATION_GB (the seed layout at 1080p: ~5 GB written, 3.5-4.3 GB resident);
    full mode times everything."""
    from benchmarks.artifacts import resolve_students
    from benchmarks.latency import QUICK_MAX_ACTIVATION_GB
    from benchmarks.latency_run import _student_budget, _too_big
    from benchmarks.report import BenchOptions

    assert BenchOptions(out="x").mode()["max_activation_gb"] == QUICK_MAX_ACTIVATION_GB
    assert BenchOptions(out="x", full=True).mode()["max_activation_gb"] is None
    paths = []
    for name in ("seed", "fast"):
        m = create_student(name)
        atomic_save(make_checkpoint(m, kind="student", arch=name, arch_args=m.arch_args),
                    tmp_path / f"student-{name}.pt")
        paths.append(str(tmp_path / f"student-{name}.pt"))
    students = resolve_students(paths)
    sizes = [(1920, 1080), (640, 360)]
    budget = {(st.name, wh): b for st in students
              for wh, b in _student_budget(st.path, sizes).items()}
    out = _too_big(students, sizes, budget, QUICK_MAX_ACTIVATION_GB)
    assert set(out) == {("seed", (1920, 1080))}
    why = out["seed", (1920, 1080)]
    assert "--full" in why and "GB of activations" in why
    assert _too_big(students, sizes, budget, None) == {}


def test_quick_modes_memory_bound_counts_a_tiles_activations_not_the_frames(tmp_path):
    """At 3840x2160 `fast` writes 2.0 GB of activations per whole frame: quick mode left
    every backend out ("2.0 GB of activations > 2 GB") and What to ship had nothing to say,
    also with --tile 512, where each tile writes a few dozen MB. Tiled, the bound is the
    tile's, and the reason left without a tile says --tile times it too."""
    from benchmarks.artifacts import resolve_students
    from benchmarks.latency import QUICK_MAX_ACTIVATION_GB
    from benchmarks.latency_run import _student_budget, _too_big

    m = create_student("fast")
    atomic_save(make_checkpoint(m, kind="student", arch="fast", arch_args=m.arch_args),
                tmp_path / "student-fast.pt")
    students = resolve_students([str(tmp_path / "student-fast.pt")])
    sizes = [(3840, 2160)]
    whole = {("fast", wh): b for wh, b in _student_budget(students[0].path, sizes).items()}
    why = _too_big(students, sizes, whole, QUICK_MAX_ACTIVATION_GB)["fast", (3840, 2160)]
    assert "--tile" in why and "2.0 GB" not in why, why
    tiled = {("fast", wh): b for wh, b in
             _student_budget(students[0].path, sizes, tile=512).items()}
    assert _too_big(students, sizes, tiled, QUICK_MAX_ACTIVATION_GB) == {}
    # GMAC per frame: every tile's, the overlap's recomputation included
    assert tiled["fast", (3840, 2160)][0] > whole["fast", (3840, 2160)][0]


def test_unreadable_held_out_image_is_named_not_a_traceback(tmp_path):
    from benchmarks.artifacts import BenchError
    from benchmarks.quality import load_pairs
    rng = np.random.default_rng(0)
    for i in range(2):
        img = rng.random((24, 32, 3)).astype(np.float32)
        write_image(tmp_path / "target" / f"p{i}.png", img)
        write_image(tmp_path / "input" / f"p{i}.png", img)
    bad = tmp_path / "target" / "p1.png"
    bad.write_bytes(bad.read_bytes()[:50])
    pairs, _ = load_pairs(str(tmp_path))
    assert pairs[0].sharp.shape == (24, 32, 3)
    with pytest.raises(BenchError, match="p1.png: truncated"):
        pairs[1].sharp


def test_a_held_out_pair_under_ssims_window_is_named_not_a_traceback(tmp_path):
    """A 9x9 pair (scored under the old 7x7 window) raised SSIM's bare ValueError."""
    from benchmarks.artifacts import BenchError
    from benchmarks.quality import evaluate, load_pairs
    rng = np.random.default_rng(0)
    for name, side in (("big", 24), ("small", 9)):
        img = rng.random((side, side, 3)).astype(np.float32)
        write_image(tmp_path / "target" / f"{name}.png", img)
        write_image(tmp_path / "input" / f"{name}.png", img)
    pairs, _ = load_pairs(str(tmp_path))
    with pytest.raises(BenchError, match=r"held-out pair small of --data: 9x9 is smaller than "
                       r"SSIM's 11x11 window"):
        evaluate(pairs, None, [], {})


def test_a_clip_as_real_blur_says_the_sets_take_images(tmp_path):
    """`--real-nogt clip.mp4` said "no images"."""
    import cv2

    from benchmarks.artifacts import BenchError
    from benchmarks.report import _check_real_blur
    vw = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter.fourcc(*"MJPG"), 10,
                         (32, 24))
    for _ in range(2):
        vw.write(np.full((24, 32, 3), 100, np.uint8))
    vw.release()
    for spec in (tmp_path / "clip.avi", tmp_path):
        with pytest.raises(BenchError, match="videos only; the real-blur sets take images"):
            _check_real_blur("--real-nogt", str(spec), 4, need_gt=False)
    # --data footage without ground truth: where it goes instead (it said "in its test split"
    # of a folder without splits, and named no other option)
    from benchmarks.quality import load_pairs
    write_image(tmp_path / "still.png", np.full((24, 32, 3), 0.5, np.float32))
    with pytest.raises(BenchError, match=r"no blurred/sharp image pairs \(the held-out set "
                                         r"needs ground truth; footage without it goes to "
                                         r"--real-nogt"):
        load_pairs(str(tmp_path))


def test_the_streaming_row_follows_sizes():
    """It stayed at 640x360 (quick) or 1920x1080 (--full) whatever --sizes said."""
    from benchmarks.report import BenchOptions

    assert BenchOptions(out="x").mode()["stream_size"] == (640, 360)
    assert BenchOptions(out="x", full=True).mode()["stream_size"] == (1920, 1080)
    assert BenchOptions(out="x", sizes="1280x720").mode()["stream_size"] == (1280, 720)
    assert BenchOptions(out="x", sizes="1920x1080,1280x720").mode()["stream_size"] == (1280, 720)
    assert BenchOptions(out="x", sizes="1280x720,3840x2160",
                        full=True).mode()["stream_size"] == (3840, 2160)


def test_student_files_named_like_report_rows_get_other_names(tmp_path):
    """teacher.pt / input.pt as --weights took the teacher's and the input's rows (their
    numbers shown as the baseline, the students' rows gone)."""
    from benchmarks.artifacts import resolve_students
    m = create_student("fast", width=8, edge_width=8)
    paths = []
    for stem in ("teacher", "input", "student-fast"):
        (tmp_path / stem).mkdir()
        p = tmp_path / stem / f"{stem}.pt"
        atomic_save(make_checkpoint(m, kind="student", arch="fast", arch_args=m.arch_args), p)
        paths.append(str(p))
    assert [st.name for st in resolve_students(paths, hash_files=False)] == \
        ["teacher-2", "input-2", "fast"]


def test_a_student_named_as_a_real_blur_table_key_is_renamed_and_says_so(env, tmp_path,
                                                                       capsys):
    """A student checkpoint named data.pt, images.pt or student-failed.pt took that name, and
    with it the real-blur tables' own `data`, `images` or `failed` entry of report.json
    (a --model file of that name was renamed already)."""
    from benchmarks.artifacts import resolve_students

    paths = []
    for stem in ("data", "images", "student-failed", "student-ok"):
        (tmp_path / f"{stem}.pt").write_bytes((env / "student-good.pt").read_bytes())
        paths.append(str(tmp_path / f"{stem}.pt"))
    names = [st.name for st in resolve_students(paths, hash_files=False)]
    assert names == ["data-2", "images-2", "failed-2", "ok"], names
    err = capsys.readouterr().err
    for stem, name in (("data", "data"), ("images", "images"), ("student-failed", "failed")):
        assert (f"{tmp_path / stem}.pt: the name {name!r} is one the report keeps for itself; "
                f"benchmarked as '{name}-2'") in err, err
    assert "student-ok.pt" not in err, err


def _shell(cmd: str, cwd: Path) -> subprocess.CompletedProcess:
    """One of the report's reproduce commands, run by the shell as a user would, with this
    interpreter's pytest."""
    cmd = cmd.replace("pytest ", f"{shlex.quote(sys.executable)} -m pytest -p no:cacheprovider ",
                      1)
    return subprocess.run(["bash", "-c", cmd], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def saved_pytest_run(env, good_run, tmp_path_factory):
    """The report's pytest line, run (latency tests only, to keep it short)."""
    _, report = good_run
    cwd = tmp_path_factory.mktemp("pytest-run")
    only = ' -k "test_student_latency or test_teacher_tiled"'
    res = _shell(report["commands"][2] + only, cwd)
    assert res.returncode == 0, res.stdout + res.stderr
    return report, cwd, only, json.loads((cwd / "bench.json").read_text())


def test_reproduce_block_compares_the_same_benchmarks(saved_pytest_run):
    """The report's compare line compared nothing: the pytest line before it saved no run
    (--benchmark-json only), and the compare line left out the run's options, so it timed the
    default students at the default size, exporting them into the default cache."""
    report, cwd, only, saved = saved_pytest_run
    res = _shell(report["commands"][3].split("  #")[0] + only, cwd)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "Can't compare" not in out and "Comparing against benchmarks from" in out, out
    names = {b["name"] for b in saved["benchmarks"]}
    assert names and all(f"{n} (NOW)" in out and f"{n} (0001_" in out for n in names), out
    assert "160x96" in " ".join(names)   # the run's size, not the default's


def test_teacher_tile_times_are_not_ranked_with_frame_times(saved_pytest_run):
    """pytest-benchmark ranks the rows of a group against each other: the teacher's rows, the
    time of its timed tile(s) (a fifteenth of a 1080p frame), sat in the per-frame latency
    group, read as the teacher's frame time."""
    _, _, _, saved = saved_pytest_run
    groups = {b["name"].split("[")[0]: b["group"] for b in saved["benchmarks"]}
    assert groups["test_student_latency"] == "latency 160x96"
    assert groups["test_teacher_tiled"] != groups["test_student_latency"]
    assert "not per frame" in groups["test_teacher_tiled"]


def test_failed_quality_gate_says_by_how_much_and_which_option():
    """'0.5873 < 0.95 x teacher SSIM 0.6549 = 0.6222' left the reader to subtract, and did not
    name the option that set the bar or the other gate."""
    from benchmarks.artifacts import Student
    from benchmarks.quality import _checks

    rows = {"input": {"ssim": 0.5797, "kind": "input"},
            "teacher": {"ssim": 0.6549, "reason": None, "kind": "teacher"},
            "s/pytorch": {"key": "s/pytorch", "kind": "pytorch", "ssim": 0.5873,
                          "reason": None}}
    st = [Student(name="s", path=Path("s.pt"), hash="0")]
    ratio = _checks(rows, st, 0.95)[0]
    assert not ratio["passed"]
    assert "0.0349 short, 0.897 x the teacher's" in ratio["message"], ratio["message"]
    assert "--min-ssim-ratio 0.95" in ratio["message"] and "--min-ssim-gain" in ratio["message"]
    gain = _checks(rows, st, 0.95, gain=0.2)[0]
    assert not gain["passed"]
    # 0.5797 + 0.2 x 0.0752 = 0.5947, 0.0074 above the student's 0.5873.
    assert "0.0074 SSIM short of the 0.5947 that --min-ssim-gain 0.2 asks for" in \
        gain["message"], gain["message"]
    passed = _checks(rows, st, 0.85)[0]
    assert passed["passed"] and "short" not in passed["message"]


def test_report_names_the_code_and_the_thread_settings(monkeypatch):
    """The report named the libraries but not this project's own code, and its reproduce
    command dropped OMP_NUM_THREADS, which set PyTorch's threads for the run it describes."""
    from benchmarks.machine import code_info
    from benchmarks.markdown import _code_line
    from benchmarks.report import BenchOptions, reproduce_commands

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    cmds = reproduce_commands(BenchOptions(out="b"))
    assert cmds[1] == "OMP_NUM_THREADS=3 sharpen bench --out b"
    assert cmds[2].startswith("OMP_NUM_THREADS=3 pytest ")
    code = code_info()
    assert code["package"] == "image-sharpening-kd"
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True)
    if head.returncode == 0:
        assert code["commit"] == head.stdout.strip() and isinstance(code["dirty"], bool)
        assert f"git commit {code['commit'][:12]}" in _code_line(code)


@pytest.mark.skipif(not shutil.which("git") or not (ROOT / ".git").exists(),
                    reason="needs a git checkout")
def test_the_commit_lookup_is_brief_and_reads_this_checkout_only(tmp_path, monkeypatch):
    """Every training, labels and evaluate run looks its commit up as it starts: a git stalled
    (a network filesystem) held each up 20 s per call, two calls; and GIT_DIR, as a git hook
    that starts a run sets it, made it read another repository's commit or none."""
    import time

    from runtime.host import GIT_TIMEOUT_S, code_info
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    other = tmp_path / "other.git"
    subprocess.run(["git", "init", "-q", "--bare", str(other)], check=True)
    monkeypatch.setenv("GIT_DIR", str(other))
    code = code_info()
    assert code.get("commit") == head and isinstance(code.get("dirty"), bool), code
    stalled = tmp_path / "bin"
    stalled.mkdir()
    (stalled / "git").write_text("#!/bin/sh\nexec sleep 60\n")
    (stalled / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{stalled}{os.pathsep}{os.environ['PATH']}")
    t0 = time.monotonic()
    code = code_info()
    assert time.monotonic() - t0 < GIT_TIMEOUT_S + 3 <= 10
    assert "commit" not in code and code["package"] == "image-sharpening-kd"


def test_latency_table_shows_rounds_and_no_p90_of_one_round():
    """A call slower than quick mode's 2 s is timed once: its 'p90' was that one time, shown
    beside the median as if a spread had been measured, and no column said how many rounds
    stood behind any median."""
    from benchmarks.latency import Timing, result_row
    from benchmarks.latency_run import _in_ms
    from benchmarks.markdown import LATENCY_HEADERS, latency_table

    def row(rounds: int, times_s: list[float]) -> dict:
        t = Timing(np.median(times_s), np.mean(times_s), 0.0, min(times_s), rounds, 2,
                   max(times_s))
        return result_row(model="student s", student="s", backend="pytorch", size=(64, 64),
                          ms=1000 * t.median_s, p90_ms=1000 * t.p90_s, target_fps=30,
                          timing=_in_ms(t.to_dict()))

    one, many = latency_table([row(1, [1.6]), row(12, [0.01 * (i + 1) for i in range(12)])])
    col = {h: i for i, h in enumerate(LATENCY_HEADERS)}
    assert one[col["median ms"]] == "1600.0" and one[col["p90 ms"]] == "-"
    assert one[col["rounds"]] == "1" and many[col["rounds"]] == "12"
    assert many[col["p90 ms"]] == "120.0"
    assert all(len(r) == len(LATENCY_HEADERS) for r in (one, many))


# The second format of the export runs below: its build takes seconds (the INT8 calibration
# on the bench's 32 crops of 256x256, 5 s here), for a signal or a second run to land in. Any
# format shows the stamp, report and lock under test; a TFLite one took 14 s (TensorFlow's
# import and converter) in the child and again where the test rebuilds it.
SECOND = "onnx-int8"


def _bench_export_cmd(env, tmp_path: Path, cache: Path) -> list[str]:
    """A bench run whose export of the good student takes seconds in its second format
    (SECOND), for a signal to land in; skips where that format cannot be built."""
    from optimize.export import FORMATS as EXPORT_FORMATS

    if EXPORT_FORMATS[SECOND].availability():
        pytest.skip(f"needs a second format that takes seconds to build ({SECOND})")
    return [sys.executable, "-m", "sharpen.cli", "bench", "--out", str(tmp_path / "out"),
            "--weights", str(env / "student-good.pt"), "--teacher-weights",
            str(env / "teacher.pt"), "--data", str(env / "pairs"), "--cache", str(cache),
            "--formats", f"onnx,{SECOND}", "--no-latency"]


def test_interrupted_export_keeps_the_formats_it_finished(env, tmp_path):
    """SIGTERM while the bench exported a student's second format left no stamp in the cache,
    so the rerun that 'continues' (as the interrupted run says) built the first one again."""

    cache = tmp_path / "cache"
    cmd = _bench_export_cmd(env, tmp_path, cache)
    rc, out = _signal_at(cmd, f"[2/2] {SECOND}", "SIGTERM", 0.5)
    if rc in (0, 1):
        pytest.skip("the export finished before the signal landed")
    assert rc == 143 and "interrupted (SIGTERM)" in out, out
    from benchmarks.artifacts import STAMP, ensure_artifacts, resolve_students

    st = resolve_students([str(env / "student-good.pt")])[0]
    stamp = json.loads((cache / f"{st.path.stem}-{st.hash}" / STAMP).read_text())
    assert stamp["formats"]["onnx"]["status"] == "pass"
    assert SECOND not in stamp["formats"]
    again = ensure_artifacts(st, cache, "onnx", quiet=True)
    assert again.built_now == [] and again.get("onnx").usable


def _sharpen_warnings(caught) -> list[str]:
    from runtime.warn import SharpenWarning

    return [str(w.message) for w in caught if issubclass(w.category, SharpenWarning)]


def test_a_killed_export_leaves_no_format_out_of_the_next_report(env, tmp_path):
    """A bench run killed while it exported a student's second format (SIGKILL, a job's time
    limit) left the stamp of the first and no export report: the export removed the report
    when it began. The next run took the first format from the stamp, exported the rest, and
    the export warned 'student-fast.onnx, student-fast_int8.onnx in ... are not rebuilt by
    this export and not in its report' (seen in benchmarks/test_quality.py), leaving a report
    without them."""
    import warnings

    cache = tmp_path / "cache"
    cmd = _bench_export_cmd(env, tmp_path, cache)
    rc, out = _signal_at(cmd, f"[2/2] {SECOND}", "SIGKILL", 0.5)
    if rc in (0, 1):
        pytest.skip("the export finished before the signal landed")
    from benchmarks.artifacts import ensure_artifacts, resolve_students

    st = resolve_students([str(env / "student-good.pt")])[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = ensure_artifacts(st, cache, f"onnx,{SECOND}", quiet=True)
    assert _sharpen_warnings(caught) == []
    assert again.built_now == [SECOND] and again.get("onnx").usable
    report = json.loads((again.folder / "export_report.json").read_text())
    assert {r["format"] for r in report["results"]} == {"onnx", SECOND}, report
    assert report["ok"] and report["stale"] == []


def test_a_cached_format_its_export_report_does_not_hold_is_rebuilt(env, tmp_path):
    """A cache left by a killed export before its report was kept up to date (the stamp holds
    a format, the folder's report does not): the next run reused the format from its stamp,
    exported the others, and the export warned that the reused file was in no report and
    wrote a report without it. The stamp is an index; the report is the folder's record."""
    import warnings

    from benchmarks.artifacts import ensure_artifacts, resolve_students

    cache = tmp_path / "cache"
    st = resolve_students([str(env / "student-good.pt")])[0]
    first = ensure_artifacts(st, cache, "onnx", calib_count=4, quiet=True)
    (first.folder / "export_report.json").unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = ensure_artifacts(st, cache, "onnx,onnx-int8", calib_count=4, quiet=True)
    assert _sharpen_warnings(caught) == []
    assert again.built_now == ["onnx", "onnx-int8"]
    report = json.loads((again.folder / "export_report.json").read_text())
    assert {r["format"] for r in report["results"]} == {"onnx", "onnx-int8"}, report


def test_two_runs_exporting_one_student_take_turns(env, tmp_path):
    """Two runs sharing a cache (two bench runs, test sessions of worktrees that share the
    default cache) exported one student at once: the second took the formats the first had
    finished from the stamp and exported the rest beside the first's export, whose report
    was not written yet, and warned that those formats were in no report. Now it waits for
    the first and reuses what it built."""
    import warnings

    from optimize.export import FORMATS as EXPORT_FORMATS

    if EXPORT_FORMATS[SECOND].availability():
        pytest.skip(f"needs a second format that takes seconds to build ({SECOND})")
    from benchmarks.artifacts import ensure_artifacts, resolve_students

    cache = tmp_path / "cache"
    code = ("import sys; from benchmarks.artifacts import ensure_artifacts, resolve_students; "
            "ensure_artifacts(resolve_students([sys.argv[1]])[0], sys.argv[2], "
            f"'onnx,{SECOND}')")
    first = subprocess.Popen([sys.executable, "-c", code, str(env / "student-good.pt"),
                              str(cache)], cwd=ROOT, stderr=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    said: list[str] = []
    err: list[str] = []
    import threading

    try:
        for line in first.stderr:
            err.append(line)
            if line.startswith(f"[2/2] {SECOND}"):
                break
        # Read on while this run waits: a full pipe stalled the first run, holding the lock.
        reader = threading.Thread(target=lambda: err.extend(first.stderr), daemon=True)
        reader.start()
        st = resolve_students([str(env / "student-good.pt")])[0]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            second = ensure_artifacts(st, cache, f"onnx,{SECOND}", quiet=True,
                                      say=said.append)
        first.wait(timeout=300)
        reader.join(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, "".join(err)
    assert _sharpen_warnings(caught) == []
    assert second.built_now == [] and second.get(SECOND).usable, said
    assert any(m.startswith("waiting for process") for m in said), said
    report = json.loads((second.folder / "export_report.json").read_text())
    assert {r["format"] for r in report["results"]} == {"onnx", SECOND}, report


def _signal_at(cmd: list[str], line_start: str, sig: str, delay: float) -> tuple[int, str]:
    """Run `cmd`, send `sig` `delay` s after a stderr line starts with `line_start`; its exit
    code and stderr."""
    import signal
    import time

    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    err = []
    try:
        for line in proc.stderr:
            err.append(line)
            if line.startswith(line_start):
                time.sleep(delay)
                proc.send_signal(getattr(signal, sig))
                break
        rest = proc.communicate(timeout=300)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, "".join(err) + (rest or "")


@pytest.mark.parametrize("sig,when", [("SIGINT", "streaming pipeline:"),
                                      ("SIGTERM", "latency: teacher"),
                                      ("SIGHUP", "streaming pipeline:")])
def test_interrupted_bench_writes_the_rows_it_finished(env, tmp_path, sig, when):
    """Ctrl-C or SIGTERM part way through the bench lost everything measured, and Ctrl-C during
    the stream was taken by the stream's own handler: the bench wrote a row of part of the
    stream and went on to exit 0. Now the rows finished are written, marked incomplete with
    the rest listed, the command says where, and exits 130 / 143."""

    out = tmp_path / "out"
    out.mkdir()
    # An earlier run's whole report: kept as report.previous.* while this run measures.
    (out / "report.json").write_text(json.dumps({"format": "sharpen-bench/1", "whole": True}))
    (out / "report.md").write_text("# the earlier report\n")
    # A stream of thousands of small frames: seconds long, so the signal lands inside it.
    cmd = [sys.executable, "-m", "sharpen.cli", "bench", "--out", str(out),
           "--weights", str(env / "student-good.pt"), "--teacher-weights",
           str(env / "teacher.pt"), "--data", str(env / "pairs"), "--cache", str(env / "cache"),
           "--formats", "onnx", "--sizes", "160x96", "--stream-frames", "4000"]
    rc, err = _signal_at(cmd, when, sig, 0.2 if sig == "SIGTERM" else 1.0)
    if rc in (0, 1) and "interrupted" not in err:
        pytest.skip("the bench finished before the signal landed")
    code = {"SIGINT": 130, "SIGTERM": 143, "SIGHUP": 129}[sig]
    assert rc == code and "Traceback" not in err, err
    assert f"rows finished so far, marked incomplete (it lists those not measured), is in " \
           f"{out / 'report.md'}" in err, err
    said = "" if sig == "SIGINT" else f" ({sig})"
    assert err.strip().splitlines()[-1].startswith(f"sharpen bench: interrupted{said}"), err
    report = json.loads((out / "report.json").read_text())
    inc = report["incomplete"]
    assert inc["signal"] == sig and inc["stage"] == "latency", inc
    assert report["ok"] is False and report["exit_code"] == code
    # Quality finished before: all of it is there, with its checks.
    assert report["quality"]["rows"] and "quality" not in inc["missing"]
    assert all(r["status"] != "missing" for r in report["quality"]["rows"])
    assert any(c["check"] == "ssim-ratio" for c in report["checks"])
    # Every row the run would have measured is either there or listed as not measured (the
    # formats not requested are not); the stream never finished.
    lat = report["latency"]
    done = [f"{r['model']} {r['backend_label']} {r['size']}" for r in lat["rows"] + lat["stream"]
            if r["status"] != "skipped"]
    missing = inc["missing"]["latency"]
    stream = "student good sharpen run pipeline (ONNX Runtime FP32) 160x96"
    planned = {"teacher PyTorch (tiled) 160x96", "student good PyTorch eager 160x96",
               "student good ONNX Runtime FP32 160x96", stream}
    assert set(done) | set(missing) == planned and not set(done) & set(missing), (done, missing)
    assert stream in missing
    if when == "streaming pipeline:":   # the stream came last: every other row was measured
        assert missing == [stream] and all(r["status"] == "ok" for r in lat["rows"]
                                           if r["status"] != "skipped")
    md = (out / "report.md").read_text()
    assert "## Incomplete" in md and f"- {stream}" in md and "**INCOMPLETE**" in md
    assert not list(out.glob("*.png"))
    assert json.loads((out / "report.previous.json").read_text())["whole"]
    if sig == "SIGINT":
        # The next run drops the partial report, not the whole one before it.
        from benchmarks import cli as bench_cli
        assert bench_cli.main([*cmd[4:], "--no-latency", "--quiet"]) == 0
        assert "incomplete" not in json.loads((out / "report.json").read_text())
        assert json.loads((out / "report.previous.json").read_text())["whole"]


def _report_files(out: Path, name: str, rep: dict) -> None:
    (out / f"{name}.json").write_text(json.dumps(rep))
    (out / f"{name}.md").write_text(f"# {rep['run']}\n")


def test_only_a_finished_report_becomes_report_previous(tmp_path):
    """A rerun after an interrupted first run made its partial report report.previous.*; and
    a run killed between its report.json and report.md left report.previous.md an older run's
    beside a newer report.previous.json. report.previous.* is now a finished run's pair, or
    absent."""
    from benchmarks.report import set_aside_earlier_report

    out = tmp_path / "out"
    out.mkdir()
    _report_files(out, "report", {"run": "first", "incomplete": {"stage": "latency"}})
    assert "partial report" in set_aside_earlier_report(out)
    assert not list(out.iterdir())   # nothing to keep: the first run never finished

    _report_files(out, "report.previous", {"run": "old"})
    (out / "report.json").write_text(json.dumps({"run": "whole"}))   # its report.md never made
    assert "report.previous" in set_aside_earlier_report(out)
    assert json.loads((out / "report.previous.json").read_text())["run"] == "whole"
    assert sorted(p.name for p in out.iterdir()) == ["report.previous.json"]

    _report_files(out, "report.previous", {"run": "whole"})
    (out / "report.md").write_text("# written, its report.json not\n")
    assert "still the whole one" in set_aside_earlier_report(out)
    assert (out / "report.previous.md").read_text() == "# whole\n"
    assert sorted(p.name for p in out.iterdir()) == ["report.previous.json",
                                                     "report.previous.md"]

    _report_files(out, "report.previous", {"run": "partial", "incomplete": {}})
    assert set_aside_earlier_report(out) is None   # an older version's partial one, removed
    assert not list(out.iterdir())


def test_bench_interrupted_in_its_export_lists_only_the_rows_it_would_measure(env, tmp_path):
    """A SIGTERM while a student was exported listed every format's rows as not measured (its
    artifact set did not exist yet), those --formats left out and those this machine cannot
    build too: 'fast/tflite-fp16', 'fast/engine' for a run of --formats onnx."""
    from optimize.export import FORMATS

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "sharpen.cli", "bench", "--out", str(out),
           "--weights", str(env / "student-good.pt"), "--teacher-weights",
           str(env / "teacher.pt"), "--data", str(env / "pairs"), "--cache",
           str(tmp_path / "cache"), "--formats", "onnx,engine", "--sizes", "160x96",
           "--stream-frames", "3"]
    rc, err = _signal_at(cmd, "exporting", "SIGTERM", 0.0)
    report = json.loads((out / "report.json").read_text()) if rc == 143 else {}
    if report.get("incomplete", {}).get("stage") != "export":
        pytest.skip(f"the signal did not land in the export (exit {rc})")
    missing = report["incomplete"]["missing"]
    engine = [] if FORMATS["engine"].availability() else ["good/engine"]
    assert missing["quality"] == ["input", "teacher", "good/pytorch", "good/onnx", *engine]
    assert not [r for r in missing["latency"] if "TFLite" in r or "INT8" in r], missing
    assert "student good ONNX Runtime FP32 160x96" in missing["latency"]


def test_quality_interrupted_part_way_keeps_the_rows_it_finished(env, good_run):
    """Ctrl-C in the middle of the quality stage: the rows that ran on every image are kept with
    their checks, the row it was in is "missing" (no numbers, no check) and the interruption
    still goes on. The signal is real, sent while the ONNX row reads its first image."""
    import signal

    from benchmarks.artifacts import ensure_artifacts, resolve_students
    from benchmarks.quality import Pair, TeacherOutputs, evaluate, load_pairs

    _, report = good_run
    cache = report["settings"]["cache"]
    st = resolve_students([str(env / "student-good.pt")])[0]
    arts = {st.name: ensure_artifacts(st, cache, "onnx", quiet=True)}
    pairs, desc = load_pairs(str(env / "pairs"))
    reads = []

    def blurred(read=pairs[0]._blurred):
        # Read once for the difficulty, twice by the teacher's loop, once by PyTorch: the
        # fifth read is the ONNX row's.
        reads.append(1)
        if len(reads) == 5:
            os.kill(os.getpid(), signal.SIGINT)
        return read()
    pairs[0] = Pair(pairs[0].name, blurred, pairs[0]._sharp)
    got: dict = {}
    with pytest.raises(KeyboardInterrupt):
        evaluate(pairs, TeacherOutputs(env / "teacher.pt", cache_root=cache), [st], arts,
                 data_desc=desc, progress=False, partial=got)
    rows = {r["key"]: r for r in got["quality"].rows}
    assert all(rows[k]["status"] == "ok" and rows[k]["n_images"] == len(pairs)
               for k in ("input", "teacher", "good/pytorch")), rows
    assert rows["good/onnx"]["status"] == "missing" and rows["good/onnx"]["ssim"] is None
    assert rows["good/tflite-int8"]["status"] == "skipped"
    assert [c["model"] for c in got["quality"].checks] == ["good/pytorch"]


def test_the_report_gives_the_runtimes_threads_from_omp_num_threads(good_run):
    """Without --threads the backends run with OMP_NUM_THREADS's count (the suite sets it):
    the report said they ran on every core."""
    _, report = good_run
    n = int(os.environ["OMP_NUM_THREADS"])
    assert report["latency"]["settings"]["runtime_threads"] == n
    assert report["settings"]["threads"] == 0   # not given: the variable set them
    assert report["machine"]["env"].get("OMP_NUM_THREADS") == str(n)


def test_latency_section_says_where_pytorch_ran(good_run):
    """The section said how many threads the runtimes had, not PyTorch eager's: with
    OMP_NUM_THREADS=1 it ran on one thread beside runtimes on every core, read as a backend
    comparison."""
    import copy

    from benchmarks.markdown import render_markdown

    _, report = good_run
    rep = copy.deepcopy(report)
    rep["machine"].update(torch_threads=1, usable_cores=2)
    rep["latency"]["settings"]["runtime_threads"] = None
    for r in rep["latency"]["rows"]:
        if r["backend"] == "pytorch" and r["status"] == "ok":
            r["provider"] = "CPU (1 thread)"
    md = render_markdown(rep)
    assert "PyTorch eager ran on CPU (1 thread), fewer than the runtimes' 2" in md, md
    rep["machine"]["torch_threads"] = 2
    for r in rep["latency"]["rows"]:
        if r["backend"] == "pytorch" and r["status"] == "ok":
            r["provider"] = "CPU (2 threads)"
    md = render_markdown(rep)
    assert "PyTorch eager ran on CPU (2 threads)." in md and "fewer than" not in md


def test_a_backend_that_fails_while_timed_fails_the_run():
    """A latency row with status "error" was in neither the checks nor the skipped list and the
    bench exited 0: CI could not tell a backend that crashes from one that runs."""
    from benchmarks.latency import result_row
    from benchmarks.report import latency_checks, skipped_list
    rows = [result_row(model="student fast", student="fast", backend="onnx-fp32", size=(64, 48),
                       ms=None, target_fps=30, status="error",
                       reason="RuntimeError: bad allocation"),
            result_row(model="student fast", student="fast", backend="tflite-int8",
                       size=(64, 48), ms=None, target_fps=30, status="skipped",
                       reason="LiteRT not installed"),
            result_row(model="student fast", student="fast", backend="onnx-int8", size=(64, 48),
                       ms=12.0, target_fps=30)]
    checks = latency_checks({"rows": rows, "stream": []})
    assert len(checks) == 1 and checks[0]["passed"] is False
    assert "64x48" in checks[0]["message"] and "bad allocation" in checks[0]["message"]
    assert [s["what"] for s in skipped_list(type("Q", (), {"rows": []}), {"rows": rows})] == [
        "latency student fast " + rows[1]["backend_label"]]


def test_a_paired_folder_as_real_nogt_points_to_real_pairs(tmp_path):
    """`--real-nogt reds-mini` (blur/ + sharp/) scored against the sharp images and printed
    those PSNR/SSIM/gain rows under the no-ground-truth table's headers (PSNR "to the teacher's
    output" that was not, SSIM under "sharpness")."""
    from benchmarks.artifacts import BenchError
    from benchmarks.report import _check_real_blur
    for i in range(2):
        img = np.full((24, 32, 3), 0.2 + 0.3 * i, np.float32)
        write_image(tmp_path / "sharp" / f"f{i}.png", img)
        write_image(tmp_path / "blur" / f"f{i}.png", img)
    with pytest.raises(BenchError, match=r"--real-nogt .*: has ground truth .* real "
                                         r"blur/sharp pairs go to --real-pairs"):
        _check_real_blur("--real-nogt", str(tmp_path), 4, need_gt=False)
    _check_real_blur("--real-pairs", str(tmp_path), 4, need_gt=True)   # where it belongs


@pytest.mark.skipif(not os.path.isdir("/proc/sys"), reason="needs a folder no file can be made in")
def test_an_out_folder_that_cannot_be_written_is_refused_before_the_work(tmp_path, capsys):
    """`--out` on a read-only file system passed (the folder existed): every export and
    measurement ran, then writing report.json ended in a traceback, the work lost. A file given
    as --out said "cannot create the output folder ...: File exists"."""
    from benchmarks import cli as bench_cli
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    for out, says in (("/proc/sys", "--out: cannot write in /proc/sys"),
                      (str(afile), f"--out: {afile} is a file, not a folder")):
        rc = bench_cli.main(["--out", out, "--weights", str(tmp_path / "nowhere.pt"), "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and says in err and "Traceback" not in err, err
    assert afile.read_text() == "mine"


def test_timing_options_with_no_latency_are_said_to_do_nothing(tmp_path, capsys):
    """`--no-latency --sizes 640x360 --stream-frames 5` ran without a word about the two
    options it ignored."""
    from benchmarks import cli as bench_cli
    bench_cli.main(["--out", str(tmp_path / "b"), "--weights", str(tmp_path / "nowhere.pt"),
                    "--no-latency", "--sizes", "640x360", "--stream-frames", "5", "--quiet"])
    assert ("warning: --sizes and --stream-frames have no effect with --no-latency (nothing is "
            "timed)") in capsys.readouterr().err
    bench_cli.main(["--out", str(tmp_path / "b"), "--weights", str(tmp_path / "nowhere.pt"),
                    "--no-latency", "--target-fps", "10", "--quiet"])
    assert ("warning: --target-fps has no effect with --no-latency") in capsys.readouterr().err
    bench_cli.main(["--out", str(tmp_path / "b"), "--weights", str(tmp_path / "nowhere.pt"),
                    "--no-latency", "--target-fps", "10", "--cpu-target-fps", "5", "--quiet"])
    assert ("warning: --target-fps and --cpu-target-fps have no effect with --no-latency"
            in capsys.readouterr().err)
    bench_cli.main(["--out", str(tmp_path / "b"), "--weights", str(tmp_path / "nowhere.pt"),
                    "--no-latency", "--quiet"])
    assert "warning" not in capsys.readouterr().err


def test_the_blurred_half_as_real_pairs_names_the_folder_to_give(tmp_path):
    """`--real-pairs reds-mini/blur` said only that its images have no ground truth."""
    from benchmarks.artifacts import BenchError
    from benchmarks.report import _check_real_blur
    for side in ("blur", "sharp"):
        write_image(tmp_path / side / "a.png", np.full((24, 32, 3), 0.5, np.float32))
    with pytest.raises(BenchError, match=rf"is the blurred half of a paired folder: give "
                                         rf"{tmp_path}, whose sharp/ holds the ground truth"):
        _check_real_blur("--real-pairs", str(tmp_path / "blur"), 4, need_gt=True)


def test_two_runs_sharing_a_cache_compute_a_teacher_output_once(env, tmp_path):
    """The teacher-output cache had no lock, where the export cache has one: two bench runs
    sharing a cache both ran the teacher (minutes per image on a CPU) on an input neither had
    yet. The same lock keeps them apart now: one computes it, the other waits and reads it."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from benchmarks.quality import TeacherOutputs

    runs = [TeacherOutputs(env / "teacher.pt", cache_root=tmp_path / "cache") for _ in range(2)]
    blurred = np.random.default_rng(0).random((24, 32, 3), dtype=np.float32)
    start = threading.Barrier(2)

    def run(outputs):
        start.wait()   # both look for the output before either has written it
        return outputs(blurred)
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(run, runs))
    assert sorted((r.computed, r.cached) for r in runs) == [(0, 1), (1, 0)]
    assert np.array_equal(got[0], got[1])
    assert [p.name for p in runs[0].folder.iterdir()] == [runs[0]._path(blurred).name]


def test_a_cache_on_a_filesystem_without_locks_exports_unlocked_with_a_warning(tmp_path,
                                                                               monkeypatch):
    """flock fails with ENOLCK or EOPNOTSUPP on some NFS, SMB and FUSE mounts: the bench run
    ended there in a traceback from the lock, which only keeps concurrent runs apart."""
    import errno
    import fcntl
    import warnings

    from benchmarks.artifacts import cache_lock

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    ran = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with cache_lock(tmp_path / "cache" / "s-123", say=print, doing="exporting"):
            ran.append(True)
    assert ran == [True]
    said = _sharpen_warnings(caught)
    assert len(said) == 1 and said[0].startswith(
        f"cannot lock {tmp_path / 'cache' / '.s-123.lock'} (No locks available): exporting "
        "unlocked"), said


def test_training_runs_checkpoints_are_named_after_their_run(tmp_path):
    """Every training run writes best.pt and last.pt: the report called a run's best.pt
    "student best" (two runs: "best" and "best-2"), where `sharpen export` names its files
    after the run (runs/a/best.pt -> a-best)."""
    from benchmarks.artifacts import resolve_students
    m = create_student("fast", width=8, edge_width=8)
    paths = []
    for run in ("fast-mine", "fast-other"):
        p = tmp_path / run / "best.pt"
        p.parent.mkdir()
        atomic_save(make_checkpoint(m, kind="student", arch="fast", arch_args=m.arch_args), p)
        paths.append(str(p))
    assert [st.name for st in resolve_students(paths, hash_files=False)] == \
        ["fast-mine-best", "fast-other-best"]


def _calib_folder(root: Path, photo: str, n: int = 5) -> Path:
    """`n` small blurred crops of a scikit-image photo: a user's --calib frames."""
    import skimage.data

    img = getattr(skimage.data, photo)()[..., :3].astype(np.float32) / 255.0
    for i in range(n):
        crop = cv2.resize(img[40 * i:40 * i + 200, 30 * i:30 * i + 240], (160, 144),
                          interpolation=cv2.INTER_AREA)
        write_image(root / f"{photo}{i}.png", cv2.GaussianBlur(crop, (0, 0), 1.0))
    return root


def _exported_calibration(folder: Path) -> tuple[list, set]:
    """What the cache folder's export report says its INT8 artifact was calibrated on."""
    report = json.loads((folder / "export_report.json").read_text())
    inputs = {r["extra"]["inputs"]["calibration"] for r in report["results"]
              if r["format"] == "onnx-int8"}
    return report["settings"]["calib_images"], inputs


def test_bench_calibrates_on_calib_and_caches_per_calibration(env, tmp_path, monkeypatch):
    """`sharpen bench` had no --calib: its INT8 rows were always calibrated on the built-in
    sample photos, so a user who exported with --calib my_frames/ could not measure the
    artifact they deploy. Now it takes export's --calib, and its cache keys on the crops."""
    from benchmarks.artifacts import ensure_artifacts, resolve_students

    cache, a = tmp_path / "cache", _calib_folder(tmp_path / "frames-a", "astronaut")
    rc = _bench(env, "calib-a", "--students", str(env / "student-good.pt"), "--formats",
                "onnx-int8", "--no-latency", "--calib", str(a), "--calib-count", "4",
                "--cache", str(cache))
    assert rc in (0, 1)
    report = json.loads((env / "calib-a" / "report.json").read_text())
    folder = Path(report["artifacts"]["good"]["folder"])
    assert report["artifacts"]["good"]["built_now"] == ["onnx-int8"]
    # As `sharpen export --calib`: the last fifth held out for parity, the rest calibrates.
    names, _ = _exported_calibration(folder)
    assert names == [f"astronaut{i}" for i in range(4)]
    assert str(a) in report["settings"]["calibration"]
    md = (env / "calib-a" / "report.md").read_text()
    assert f"INT8 calibration: 4 crops per student from --calib {a}" in md
    assert f"--calib {a}" in "\n".join(report["commands"])

    st = resolve_students([str(env / "student-good.pt")])[0]
    b = _calib_folder(tmp_path / "frames-b", "coffee")
    other = ensure_artifacts(st, cache, "onnx-int8", calib_count=4, quiet=True, calib=[str(b)])
    assert other.built_now == ["onnx-int8"] and other.folder == folder
    names, digest = _exported_calibration(folder)
    assert names == [f"coffee{i}" for i in range(4)]
    # Everything cached: the run reads the files' bytes, neither the student nor the images
    # (it loaded the one and decoded every one of the others on every run).
    with monkeypatch.context() as mp:
        def not_now(*args, **kwargs):
            raise AssertionError("a cached --calib run loaded the student or decoded an image")
        mp.setattr("distill.checkpoint.load_student", not_now)
        mp.setattr("distill.images.read_image", not_now)
        same = ensure_artifacts(st, cache, "onnx-int8", calib_count=4, quiet=True,
                                calib=[str(b)])
    assert same.built_now == [] and same.get("onnx-int8").usable
    # A file of the folder changed (same names): other crops, rebuilt.
    write_image(b / "coffee1.png", np.full((144, 160, 3), 0.3, np.float32))
    changed = ensure_artifacts(st, cache, "onnx-int8", calib_count=4, quiet=True,
                               calib=[str(b)])
    assert changed.built_now == ["onnx-int8"]
    assert _exported_calibration(folder)[1] != digest
    # And back to the built-in photos: rebuilt again, not the --calib artifact reused.
    builtin = ensure_artifacts(st, cache, "onnx-int8", calib_count=4, quiet=True)
    assert builtin.built_now == ["onnx-int8"]
    assert _exported_calibration(folder)[0] == ["astronaut", "coffee", "rocket",
                                                "hubble_deep_field"]


def test_a_bad_calib_folder_stops_the_bench_with_exports_message(env, tmp_path, capsys):
    """A missing or empty --calib folder is refused before any export, in export's words."""
    import argparse

    from optimize.commands import add_commands as export_commands

    empty = tmp_path / "empty"
    empty.mkdir()
    for source in (tmp_path / "nope", empty):
        cache = tmp_path / "cache"
        rc = _bench(env, "never-made", "--students", str(env / "student-good.pt"),
                    "--formats", "onnx-int8", "--cache", str(cache), "--calib", str(source))
        err = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in err, err
        assert not cache.exists() and not (env / "float-never-made").exists()
        parser = argparse.ArgumentParser(prog="sharpen")
        export_commands(parser.add_subparsers())
        args = parser.parse_args(["export", "--weights", str(env / "student-good.pt"),
                                  "--formats", "onnx-int8", "--out", str(tmp_path / "exp"),
                                  "--calib", str(source), "--quiet"])
        assert args.func(args) == 2
        said = capsys.readouterr().err.strip().removeprefix("sharpen export: ")
        assert said.startswith("error: --calib: no ") and str(source) in said, said
        assert err.strip() == f"sharpen bench: {said}"


def test_the_pytest_suite_takes_calib(env, tmp_path):
    """`pytest benchmarks/` shares the bench's options: --calib too, checked as the bench
    checks it."""
    res, out = _run_suite("-k", "keeps_teacher", "--students", str(env / "student-good.pt"),
                          "--teacher-weights", str(env / "teacher.pt"), "--data",
                          str(env / "pairs"), "--formats", "onnx", "--cache",
                          str(tmp_path / "cache"), "--calib", str(tmp_path / "nope"),
                          file="test_quality.py")
    assert res.returncode != 0, out
    assert f"--calib: no such file or folder: {tmp_path / 'nope'}" in out, out
    assert not (tmp_path / "cache").exists()


# --------------------------------------------------------------------------- --model

def _given_files(env: Path, good_run, folder: Path) -> tuple[Path, Path]:
    """The FP32 ONNX model that good_run exported of the tiny student, copied alone (no export
    report beside it) as a user's deployed file, and a TensorRT engine (its first bytes and
    sidecar) that this machine cannot run: no TensorRT here, or not this GPU's."""
    import shutil

    _, report = good_run
    onnx = Path(report["artifacts"]["good"]["formats"]["onnx"]["file"])
    folder.mkdir(parents=True, exist_ok=True)
    deployed = Path(shutil.copy(onnx, folder / "deployed.onnx"))
    engine = folder / "jetson_fp16.engine"
    engine.write_bytes(b"ftrt" + bytes(60))
    (folder / "jetson_fp16.engine.json").write_text(json.dumps(
        {"student": "fast", "precision": "fp16", "multiple": 8}))
    return deployed, engine


@pytest.fixture(scope="module")
def model_run(env, good_run):
    deployed, engine = _given_files(env, good_run, env / "my-export")
    rc = _bench(env, "given", "--model", str(deployed), str(engine), "--sizes", "160x96",
                "--stream-frames", "0", "--real-pairs", str(env / "pairs"))
    return rc, json.loads((env / "given" / "report.json").read_text()), deployed, engine


def test_model_files_are_measured_as_rows(env, good_run, model_run):
    """`sharpen bench --model FILE` measures exported files as they are: the row is named after
    the file, its format comes from the format table and its student from the file's metadata;
    without --weights the default students are not measured."""
    rc, rep, deployed, _ = model_run
    assert rc == 0, rep["checks"]
    assert rep["settings"]["students"] == [] and "good" not in rep["artifacts"]
    assert "no --weights: the default students are not measured" in rep["settings"]["measured"]
    keys = [r["key"] for r in rep["quality"]["rows"]]
    assert keys == ["input", "teacher", "deployed", "jetson_fp16"], keys
    row = next(r for r in rep["quality"]["rows"] if r["key"] == "deployed")
    assert row["status"] == "ok" and row["format"] == "onnx" and row["source"] == "fast"
    assert row["model"] == "deployed (student fast)" and row["n_images"] == 3
    # The same model as good_run's own ONNX artifact, on the same images: the same numbers.
    built = next(r for r in good_run[1]["quality"]["rows"] if r["key"] == "good/onnx")
    for k in ("psnr", "ssim", "ssim_teacher"):
        assert row[k] == pytest.approx(built[k], abs=1e-6) and row[k] > 0, k
    gate = next(c for c in rep["checks"] if c["model"] == "deployed")
    assert gate["check"] == "ssim-ratio" and gate["passed"], gate
    # The backend's label names the precision: said once, not "ONNX Runtime FP32, FP32".
    assert gate["message"].startswith("model 'deployed' (ONNX Runtime FP32): "), gate
    lat = [r for r in rep["latency"]["rows"] if r.get("given") == "deployed"]
    assert [r["size"] for r in lat] == ["160x96"] and lat[0]["status"] == "ok"
    assert lat[0]["ms"] > 0 and lat[0]["speedup_vs_teacher"] > 0
    assert lat[0]["backend"] == "ort-fp32" and lat[0]["file"] == str(deployed.resolve())
    pairs = rep["real_blur"]["pairs"]   # the real-blur tables take it too, by its name
    assert set(pairs) >= {"teacher", "deployed"} and "jetson_fp16" not in pairs, pairs
    assert pairs["deployed"]["psnr"] == pytest.approx(row["psnr"], abs=1e-3)
    md = (env / "given" / "report.md").read_text()
    assert "| deployed (student fast) | onnx | ONNX Runtime FP32 |" in md
    assert f"- deployed: {deployed.resolve()} (onnx, FP32, student fast)" in md
    cmd = rep["commands"][1]
    assert f"--model {deployed} " in cmd and "--weights" not in cmd, cmd
    assert set(rep["figures"]) == {"latency", "scatter", "crops"}


def test_what_to_ship_takes_model_files_by_their_name(model_run):
    """A --model file is a candidate as the students are: under its name, gated on its own
    SSIM check, with its real-blur gain; a file this machine cannot run gets no row."""
    from benchmarks.ship import ship_section

    from runtime.console import shell_join

    _, rep, deployed, _ = model_run
    rep = json.loads(json.dumps(rep))
    # a budget its row meets whatever this machine's load
    rep["settings"]["target_fps"] = rep["settings"]["cpu_target_fps"] = 1.0
    ship = ship_section(rep)
    assert [r["backend"] for r in ship["rows"]] == ["ort-fp32"], ship["rows"]
    (row,) = ship["rows"]
    lat = next(r for r in rep["latency"]["rows"] if r.get("given") == "deployed")
    quality = next(r for r in rep["quality"]["rows"] if r["key"] == "deployed")
    assert (row["ship"], row["ms"], row["ssim"]) == ("deployed", lat["ms"], quality["ssim"])
    # the user's own file in the run line, not a copy in the bench's cache
    assert row["file"] == str(deployed.resolve()), row
    assert row["run"].startswith(shell_join(["sharpen", "run", "--model", row["file"]]) + " ")
    gain = rep["real_blur"]["pairs"]["deployed"]["ssim_gain"]
    assert row["real_blur_ssim_gain"] == gain
    # run as the file itself there too, not as a student's PyTorch checkpoint
    assert f"real-blur SSIM gain {gain:+.4f} (the file itself)" in row["why"], row["why"]


def test_a_model_only_run_reports_the_memory_of_the_stages_it_ran(env, good_run, model_run):
    """Without --weights nothing is exported: the report's peak memory has no export stage
    (it was the RSS after loading the --model files, under a stage that did not run)."""
    _, rep, _, _ = model_run
    assert list(rep["peak_rss_mb"]) == ["quality", "real_blur", "latency"], rep["peak_rss_mb"]
    assert "export" in good_run[1]["peak_rss_mb"]   # a run that exported says so
    md = (env / "given" / "report.md").read_text().splitlines()
    line = next(ln for ln in md if ln.startswith("Peak memory"))
    assert "export" not in line and "quality" in line, line


def test_a_model_file_this_machine_cannot_run_is_skipped_with_why(model_run):
    """A TensorRT engine where there is no TensorRT (or it is another GPU's) is reported as
    skipped, naming the file and why, as unbuildable formats are; the rest is measured."""
    _, rep, _, engine = model_run
    row = next(r for r in rep["quality"]["rows"] if r["key"] == "jetson_fp16")
    assert row["status"] == "skipped" and row["format"] == "engine", row
    assert row["precision"] == "fp16" and row["source"] == "fast"
    assert str(engine.resolve()) in row["reason"] and "TensorRT" in row["reason"], row
    assert row["psnr"] is None and not any(c["model"] == "jetson_fp16" for c in rep["checks"])
    lat = [r for r in rep["latency"]["rows"] if r.get("given") == "jetson_fp16"]
    assert lat and all(r["status"] == "skipped" and r["ms"] is None for r in lat)
    assert {d["what"] for d in rep["skipped"]} >= {"quality jetson_fp16"}
    assert any(d["what"].startswith("latency jetson_fp16 (student fast)")
               for d in rep["skipped"]), rep["skipped"]


def test_a_model_file_of_a_benchmarked_student_is_compared_with_its_pytorch_output(
        env, tmp_path):
    """`--weights S --model DIR/S_int8.onnx`: the file was exported from S's checkpoint (its
    metadata records the hash), so its parity is measured against S's FP32 PyTorch output and
    gated as S's own artifact is; the very file the bench built gives the same numbers."""
    import shutil

    from benchmarks.artifacts import DEFAULT_CALIB_COUNT, ensure_artifacts, resolve_students

    cache = tmp_path / "cache"
    st = resolve_students([str(env / "student-good.pt")])[0]
    built = ensure_artifacts(st, cache, "onnx-int8", DEFAULT_CALIB_COUNT, quiet=True, calib=[])
    mine = tmp_path / "mine"
    mine.mkdir()
    given = Path(shutil.copy(built.get("onnx-int8").file, mine / "student-good_int8.onnx"))
    out = tmp_path / "both"
    rc = _bench(env, str(out), "--weights", str(env / "student-good.pt"), "--model",
                str(given), "--formats", "onnx-int8", "--cache", str(cache), "--no-latency")
    rep = json.loads((out / "report.json").read_text())
    assert rc == 0, rep["checks"]
    # The bench's own artifact is the file copied (reused from the cache, not built again).
    assert rep["artifacts"]["good"]["built_now"] == [], rep["artifacts"]["good"]
    rows = {r["key"]: r for r in rep["quality"]["rows"]}
    assert list(rows)[-1] == "student-good_int8", list(rows)   # after the students' rows
    own, r = rows["good/onnx-int8"], rows["student-good_int8"]
    assert r["status"] == "ok" and r["student"] == "good" and r["format"] == "onnx-int8", r
    assert r["parity"] is not None and own["parity"] is not None, r
    for k in ("max_abs", "psnr", "ssim", "ssim_drop", "metric", "threshold", "passed",
              "worst_image"):
        assert r["parity"][k] == own["parity"][k], k
    for k in ("psnr", "ssim", "ssim_teacher"):
        assert r[k] == own[k], k
    checks = {(c["check"], c["model"]): c for c in rep["checks"]}
    par = checks["parity", "student-good_int8"]
    assert par["passed"] and par["value"] == checks["parity", "good/onnx-int8"]["value"]
    assert par["message"].startswith("model 'student-good_int8' (ONNX Runtime INT8; student "
                                     "'good'): worst-case "), par
    gate = checks["ssim-ratio", "student-good_int8"]
    assert gate["message"].startswith("model 'student-good_int8' (ONNX Runtime INT8): "), gate
    md = (out / "report.md").read_text()
    assert "| student-good_int8 (student fast) | onnx-int8 | ONNX Runtime INT8 |" in md, md


def test_bad_model_files_stop_the_bench_before_the_work(env, tmp_path, capsys):
    """A missing file, a checkpoint or another extension, an empty file and a file the runtime
    cannot read are named in a one-line error (exit 2) before the teacher or any export."""
    junk = tmp_path / "junk.onnx"
    junk.write_text("not a model at all\n")
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    cases = {tmp_path / "nope.onnx": "no such file",
             env / "student-good.pt": "not an exported model",
             empty: "an empty file",
             junk: "cannot load"}
    for path, why in cases.items():
        cache = tmp_path / "cache"
        rc = _bench(env, "never-made", "--model", str(path), "--cache", str(cache))
        err = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in err, err
        assert err.startswith(f"sharpen bench: error: --model {path}: ") and why in err, err
        assert not cache.exists() and not (env / "float-never-made").exists()


def test_a_model_engine_not_built_yet_says_its_trtexec_line(env, tmp_path, capsys):
    """The README's `--model export/student-fast_int8.onnx export/student-fast_fp16.engine`
    run where `sharpen export` could not build the engine (no TensorRT): "no such file" said
    nothing of the trtexec line whose sidecar is beside it, as `sharpen run` does."""
    line = "trtexec --onnx=m.onnx --saveEngine=m_fp16.engine --fp16"
    engine = tmp_path / "export" / "m_fp16.engine"
    engine.parent.mkdir()
    (engine.parent / "m_fp16.engine.json").write_text(json.dumps(
        {"precision": "fp16", "multiple": 8, "trtexec": line,
         "built_by": "trtexec (the line `sharpen export` printed)"}))
    rc = _bench(env, "never-made", "--model", str(engine), "--cache", str(tmp_path / "cache"))
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"sharpen bench: error: --model {engine}: "), err
    assert "not built yet" in err and f"in {engine.parent}: {line}" in err, err


def test_the_pytest_suite_takes_model_files(env, good_run, tmp_path):
    """`pytest benchmarks/ --model FILE` (the shared option) measures the file's quality and
    latency, and skips the engine this machine cannot run, with the reason. A file named twice
    (another spelling of its path) is measured once, as `sharpen bench` does."""
    deployed, engine = _given_files(env, good_run, tmp_path / "my-export")
    again = os.path.relpath(deployed, ROOT)   # the run's working folder is ROOT
    _, out = _run_suite("-k", "given_model", "-rs", "--teacher-weights",
                        str(env / "teacher.pt"), "--data", str(env / "pairs"), "--cache",
                        str(tmp_path / "cache"), "--sizes", "160x96", "--model", str(deployed),
                        str(engine), again, expect=0)
    assert "2 passed, 2 skipped" in out, out
    assert f"{engine.resolve()}: " in out and "deployed (student fast)" in out, out


def test_small_parity_images_warning_names_what_the_bench_takes(env, tmp_path):
    """Under the bench, export's warning that the parity images are smaller than the model's
    receptive field told the user to give --parity-images, which `sharpen bench` does not
    take; it names --calib (a fifth of whose images is held out for parity) instead."""
    import warnings

    from benchmarks.artifacts import ensure_artifacts, resolve_students
    from distill.students import receptive_field
    from runtime.warn import SharpenWarning

    st = resolve_students([str(env / "student-good.pt")])[0]
    side = 24
    assert receptive_field(create_student("fast", width=8)) > side
    frames = tmp_path / "small"
    for i in range(5):
        write_image(frames / f"f{i}.png", np.full((side, side + 8, 3), 0.1 * (i + 1), np.float32))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ensure_artifacts(st, tmp_path / "cache", "onnx", calib_count=4, quiet=True,
                         calib=[str(frames)])
    said = [str(w.message) for w in caught if issubclass(w.category, SharpenWarning)
            and "receptive field" in str(w.message)]
    assert said, [str(w.message) for w in caught]
    for msg in said:
        assert "--parity-images" not in msg and "give --calib images at least" in msg, msg


def _collected(*args: str) -> list[str]:
    """The test ids `pytest benchmarks/` collects with these options (nothing runs)."""
    res, _ = _run_suite("--collect-only", *args, expect=0, timeout=120)
    return [line.split("::", 1)[1] for line in res.stdout.splitlines() if "::" in line]


def test_model_files_with_one_stem_keep_their_test_ids_whatever_the_order(tmp_path):
    """An export folder holds student-fast_int8.onnx and student-fast_int8.tflite: both were
    `[student-fast_int8_0]` / `[student-fast_int8_1]` in the order given, so a later run with
    the files in another order had --benchmark-compare compare the ONNX model's timing against
    the TFLite one's, under one name."""
    onnx = str(tmp_path / "student-fast_int8.onnx")
    tfl = str(tmp_path / "student-fast_int8.tflite")
    one = [i for i in _collected("--model", onnx, tfl) if "given_model" in i]
    other = [i for i in _collected("--model", tfl, onnx) if "given_model" in i]
    assert sorted(one) == sorted(other), (one, other)
    assert "test_given_model_latency[student-fast_int8.onnx-640x360]" in one, one
    assert "test_given_model_quality[student-fast_int8.tflite]" in one, one
    # a file whose stem no other file shares keeps the id it had
    alone = [i for i in _collected("--model", onnx) if "given_model" in i]
    assert "test_given_model_quality[student-fast_int8]" in alone, alone


def test_k_selecting_one_student_evaluates_only_that_student(env, tmp_path):
    """`pytest benchmarks/ -k fast` with the default students still exported `seed` in every
    format and ran its quality evaluation (minutes for its INT8 calibrations), then listed it
    in the summary, though none of its tests was selected."""
    _, out = _run_suite("-k", "good", "--students", str(env / "student-good.pt"),
                        str(env / "student-bad.pt"), "--teacher-weights",
                        str(env / "teacher.pt"), "--data", str(env / "pairs"), "--formats",
                        "onnx", "--cache", str(tmp_path / "cache"), "--min-ssim-ratio", "0",
                        file="test_quality.py", expect=0)
    assert "student good" in out and "student bad" not in out, out
    assert not list((tmp_path / "cache").glob("student-bad*")), out
    assert "students with no selected quality test, not evaluated: bad" in out, out


def test_a_latency_test_alone_does_not_put_its_student_in_the_quality_evaluation(env,
                                                                                  tmp_path):
    """The quality evaluation covered every student with a selected test, latency tests too:
    with its PyTorch timing and the reference rows selected, `good` was exported to ONNX and
    evaluated in every format, though no quality test of it was selected."""
    _, out = _run_suite("-k", "test_student_latency and pytorch or test_reference_rows",
                        "--students", str(env / "student-good.pt"), "--teacher-weights",
                        str(env / "teacher.pt"), "--data", str(env / "pairs"), "--formats",
                        "onnx", "--cache", str(tmp_path / "cache"), "--sizes", "160x96",
                        "--stream-frames", "0", "--benchmark-json", str(tmp_path / "b.json"),
                        expect=0)
    assert "2 passed" in out, out
    # the user's set is named as it is, claimed neither synthetic nor real
    assert f"sharpen quality: mean over the held-out set ({env / 'pairs'}, 3 images)" in out
    assert not list((tmp_path / "cache").glob("student-good*")), out   # nothing exported
    assert "student good" not in out.split("sharpen quality")[1], out
    assert "students with no selected quality test, not evaluated: good" in out, out
    saved = json.loads((tmp_path / "b.json").read_text())
    assert {r["key"] for r in saved["sharpen_quality"]["rows"]} == {"input", "teacher"}
    [timed] = saved["benchmarks"]
    assert timed["extra_info"]["backend"] == "pytorch" and "quality" not in timed["extra_info"]


def test_the_suite_times_the_tiles_sharpen_bench_times(env, tmp_path):
    """`pytest benchmarks/` shares `sharpen bench`'s options: with --tile it times the frame
    in the tiles `sharpen run --tile` runs, and its JSON says which."""
    _run_suite("-k", "test_student_latency and pytorch or test_stream_pipeline", "--students",
               str(env / "student-good.pt"), "--teacher-weights", str(env / "teacher.pt"),
               "--data", str(env / "pairs"), "--formats", "onnx", "--cache",
               str(tmp_path / "cache"), "--sizes", "160x96", "--tile", "64",
               "--stream-frames", "2", "--benchmark-json", str(tmp_path / "b.json"),
               expect=0)
    timed = {b["name"].split("[")[0]: b["extra_info"]
             for b in json.loads((tmp_path / "b.json").read_text())["benchmarks"]}
    info = timed["test_student_latency"]
    assert info["tile"] == 64 and info["tiles_per_frame"] >= 2, info
    assert timed["test_stream_pipeline"]["tile"] == 64, timed


def test_the_suite_summary_says_the_held_out_set_is_synthetic_blur(env, tmp_path):
    """`pytest benchmarks/`'s quality summary was titled "mean over held-out images" when
    `sharpen bench`'s title said the embedded set's blur is synthetic: its SSIM read as a
    real-blur number there."""
    _, out = _run_suite("-k", "test_reference_rows", "--students", str(env / "student-good.pt"),
                        "--teacher-weights", str(env / "teacher.pt"), "--limit", "1",
                        "--cache", str(tmp_path / "cache"), expect=0)
    assert ("sharpen quality: mean over the held-out set (embedded test split, synthetic "
            "blur, 1 image)") in out, out


def test_benchmark_json_holds_the_quality_of_what_it_timed(env, tmp_path):
    """`pytest benchmarks/ --benchmark-json` wrote the timings alone: the PSNR/SSIM, parity and
    checks it printed went nowhere a script could read them. The file holds the quality section
    (as report.json's) and each timed model's quality beside its timing."""
    _run_suite("--students", str(env / "student-good.pt"), "--teacher-weights",
               str(env / "teacher.pt"), "--data", str(env / "pairs"), "--formats", "onnx",
               "--cache", str(tmp_path / "cache"), "--sizes", "160x96", "--min-ssim-ratio", "0",
               "--benchmark-json", str(tmp_path / "b.json"), expect=0)
    saved = json.loads((tmp_path / "b.json").read_text())
    quality = saved["sharpen_quality"]
    rows = {r["key"]: r for r in quality["rows"]}
    assert rows["good/onnx"]["ssim"] is not None and quality["checks"], quality
    timed = {b["extra_info"]["backend"]: b["extra_info"] for b in saved["benchmarks"]}
    for backend, key in (("ort-fp32", "good/onnx"), ("pytorch", "good/pytorch"),
                         ("teacher-tiled", "teacher")):
        q = timed[backend]["quality"]
        assert (q["psnr"], q["ssim"]) == (rows[key]["psnr"], rows[key]["ssim"]), q
    assert timed["ort-fp32"]["quality"]["parity"]["passed"] is True
    assert "quality" not in timed["pipeline-ort-fp32"]   # not the stream's own measure


def test_the_pytest_suite_judges_latency_as_what_to_ship_does(env, tmp_path):
    """`pytest benchmarks/` judged each row's median against --target-fps (30) whatever its
    backend, and took no --cpu-target-fps, where `sharpen bench`'s What to ship judges the p90
    against the CPU's budget (10 fps) on the CPU: one model, two verdicts. The suite now
    judges with benchmarks/ship.py's rule and budgets, in its summary and its JSON."""
    _, out = _run_suite("-k", "test_student_latency and pytorch", "--students",
                        str(env / "student-good.pt"), "--sizes", "160x96",
                        "--cpu-target-fps", "0.5", "--target-fps", "100000",
                        "--benchmark-json", str(tmp_path / "b.json"),
                        file="test_latency.py", expect=0)
    [timed] = [b["extra_info"] for b in json.loads((tmp_path / "b.json").read_text())
               ["benchmarks"]]
    # PyTorch on the CPU: the CPU's 2000 ms budget, not --target-fps's 0.01 ms
    assert (timed["target_device"], timed["target_option"], timed["budget_ms"]) == (
        "CPU", "--cpu-target-fps", 2000.0), timed
    assert timed["judged_on"] == "p90" and timed["p90_ms"] >= timed["ms"], timed
    assert timed["meets_target"] is (timed["p90_ms"] <= 2000.0) is True, timed
    from benchmarks.ship import judge_latency
    again = {**timed, "meets_target": None}
    judge_latency({"settings": {"target_fps": 100000, "cpu_target_fps": 0.5},
                   "latency": {"rows": [again]}})
    assert again["meets_target"] == timed["meets_target"]   # the bench's verdict, the same
    assert "sharpen latency (per frame: median, p90)" in out, out
    assert "meets target: the 90th-percentile (p90) time per frame within the budget" in out
    assert "2000.0 ms per frame = 0.5 fps on a CPU (--cpu-target-fps)" in out, out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("student good"))
    assert (f"meets target ({timed['p90_ms']:.1f} ms at p90 vs 2000.0 ms, CPU, "
            "--cpu-target-fps)") in line, line


def test_the_teacher_and_the_stream_rows_say_where_they_ran(env, good_run, tmp_path):
    """The teacher's and the stream's latency rows named no provider, and on_gpu reads a row
    without one as run on the CPU: a teacher on CUDA, or a stream on ONNX Runtime's CUDA
    provider, was judged on --cpu-target-fps and said "CPU", in `sharpen bench` and now in
    `pytest benchmarks/` too, which judges as the bench does. Each row says where it ran."""
    import torch

    from benchmarks.ship import on_gpu

    cuda = torch.cuda.is_available()   # the teacher runs on a CUDA GPU where there is one
    _, report = good_run
    [teacher] = [r for r in report["latency"]["rows"] if r["backend"] == "teacher-tiled"]
    [stream] = report["latency"]["stream"]
    _, out = _run_suite("-k", "test_teacher_tiled or test_stream_pipeline", "--students",
                        str(env / "student-good.pt"), "--teacher-weights",
                        str(env / "teacher.pt"), "--formats", "onnx", "--cache",
                        str(tmp_path / "cache"), "--sizes", "160x96", "--stream-frames", "3",
                        "--benchmark-json", str(tmp_path / "b.json"),
                        file="test_latency.py", expect=0)
    timed = {b["extra_info"]["backend"]: b["extra_info"]
             for b in json.loads((tmp_path / "b.json").read_text())["benchmarks"]}
    for row in (teacher, timed["teacher-tiled"]):
        assert row["provider"].startswith("CUDA (" if cuda else "CPU ("), row
        assert (row["target_device"], on_gpu(row)) == (("GPU", True) if cuda
                                                       else ("CPU", False)), row
    for row in (stream, timed["pipeline-ort-fp32"]):
        # the provider run_stream's session ran on (ONNX Runtime's name for it)
        assert row["provider"].endswith("ExecutionProvider"), row
        assert row["target_device"] == ("GPU" if on_gpu(row) else "CPU"), row
    assert stream["provider"] == stream["stats"]["provider"]


def _stream_frames_timed(env: Path, tmp_path: Path, *extra: str) -> tuple:
    """Frames the pytest suite's streaming benchmark ran (None: not run), and its output."""
    (tmp_path / "b.json").unlink(missing_ok=True)   # none is written when nothing was timed
    _, out = _run_suite("-k", "stream", "-rs", "--students", str(env / "student-good.pt"),
                        "--formats", "onnx", "--cache", str(tmp_path / "cache"), "--sizes",
                        "160x96", "--benchmark-json", str(tmp_path / "b.json"), *extra,
                        file="test_latency.py", expect=0)
    if not (tmp_path / "b.json").exists():
        return None, out
    runs = json.loads((tmp_path / "b.json").read_text())["benchmarks"]
    return runs[0]["extra_info"]["frames"], out


def test_the_pytest_suite_streams_as_many_frames_as_the_bench(env, tmp_path):
    """`pytest benchmarks/` streamed 16 frames in quick mode where `sharpen bench` streams 24,
    and took no --stream-frames, so the report's pytest line timed another stream than the
    report's row (the run's fixed costs spread over fewer frames)."""
    from benchmarks.report import BenchOptions

    frames, _ = _stream_frames_timed(env, tmp_path)
    assert frames == BenchOptions(out="").mode()["stream_frames"]
    frames, _ = _stream_frames_timed(env, tmp_path, "--stream-frames", "3")
    assert frames == 3
    frames, out = _stream_frames_timed(env, tmp_path, "--stream-frames", "0")
    assert frames is None and "--stream-frames 0" in out, out
    opts = BenchOptions(out="r", stream_frames=3)
    assert "--stream-frames 3" in " ".join(opts.to_argv(pytest=True))


def test_the_pytest_suite_leaves_out_what_quick_mode_cannot_hold(env, tmp_path):
    """`sharpen bench` in quick mode leaves out a student at a size whose activations exceed
    QUICK_MAX_ACTIVATION_GB (seed at 1080p: 5.6 GB); its report's pytest line (which passes the
    quick sizes, 1920x1080 among them) timed it there all the same, past the memory the quick
    bench is held to, in a row the report does not have."""
    _, out = _run_suite("-k", "test_student_latency and pytorch", "-rs", "--students",
                        str(env / "student-bad.pt"), "--cache", str(tmp_path / "cache"),
                        "--sizes", "1024x736,160x96",   # seed: 2.1 GB at 1024x736
                        "--benchmark-disable", file="test_latency.py", expect=0)
    assert "1 passed, 1 skipped" in out and "GB of activations > 2 GB" in out, out


def test_grouping_by_a_parameter_the_teacher_lacks_keeps_it_in_its_group(env, tmp_path):
    """`--benchmark-group-by=param:backend_key` (the backends side by side) stopped the run with
    pytest-benchmark's KeyError after every benchmark ran: the teacher's has no backend_key."""
    _, out = _run_suite("-k", "test_teacher_tiled or test_student_latency", "--students",
                        str(env / "student-good.pt"), "--teacher-weights",
                        str(env / "teacher.pt"), "--formats", "onnx", "--cache",
                        str(tmp_path / "cache"), "--sizes", "160x96",
                        "--benchmark-group-by=param:backend_key", file="test_latency.py",
                        expect=0)
    assert "INTERNALERROR" not in out, out
    assert "benchmark 'backend_key=ort-fp32'" in out and "benchmark 'teacher at 160x96" in out, out


def test_benchmark_round_options_given_win_over_the_mode(env, tmp_path):
    """The suite's mode set min_rounds / max_time / warm-up in each test's benchmark marker,
    which pytest-benchmark puts above its command line: `--benchmark-min-rounds=100` timed the
    same 3+ rounds as without it, silently."""
    _run_suite("-k", "test_student_latency and ort-fp32", "--students",
               str(env / "student-good.pt"), "--formats", "onnx", "--cache",
               str(tmp_path / "cache"), "--sizes", "160x96", "--benchmark-min-rounds=7",
               "--benchmark-max-time", "0.000001", "--benchmark-json", str(tmp_path / "b.json"),
               file="test_latency.py", expect=0)
    (run,) = json.loads((tmp_path / "b.json").read_text())["benchmarks"]
    assert run["stats"]["rounds"] == 7, run["stats"]
    assert run["options"]["warmup"] == 1   # the mode's, where none was given


def test_the_pytest_suite_says_the_runtimes_threads_and_what_set_them(env, tmp_path):
    """Without --threads the runtimes take OMP_NUM_THREADS's count: a shell's =1 timed `fast`
    on one of two cores, and neither the summary nor the JSON said so (the 10 fps target is
    judged on both). Each timing's extra_info holds the count, the summary what set it."""
    args = ["-k", "test_student_latency and ort-fp32", "--students",
            str(env / "student-good.pt"), "--formats", "onnx", "--cache",
            str(tmp_path / "cache"), "--sizes", "96x64", "--benchmark-json",
            str(tmp_path / "b.json")]
    for extra, threads, said in (
            ((), 1, "ONNX Runtime and LiteRT on 1 thread (OMP_NUM_THREADS=1; --threads N sets"),
            (("--threads", "2"), 2, "ONNX Runtime and LiteRT on 2 threads (--threads 2)")):
        _, out = _run_suite(*args, *extra, file="test_latency.py", expect=0)
        assert said in out, out
        (run,) = json.loads((tmp_path / "b.json").read_text())["benchmarks"]
        assert run["extra_info"]["threads"] == threads, run["extra_info"]


def test_student_tests_without_students_say_why_they_skip(tmp_path):
    """`pytest benchmarks/ --model FILE` without --weights measures the files alone: the student
    tests were skipped as pytest's "got empty parameter set for (student)"."""
    _, out = _run_suite("-rs", "-k", "not given_model and not teacher and not reference",
                        "--model", str(tmp_path / "a.onnx"),   # never read: nothing needs it
                        expect=0, timeout=120)
    assert "empty parameter set" not in out, out
    assert "no students: --model without --weights measures those files alone" in out, out


@pytest.mark.parametrize("bad,says", [
    (["--target-fps", "0"], "--target-fps must be a finite number > 0, got 0"),
    (["--stream-frames", "-1"], "--stream-frames must be >= 0"),
    (["--formats", "onnx,bogus"], "unknown format 'bogus'; choose from onnx, "),
    (["--data", "no/such/set"], "no/such/set")])
def test_a_bad_option_value_stops_the_suite_once_with_its_message(env, tmp_path, bad, says):
    """A bad value raised a UsageError inside the session fixture (or the quality evaluation):
    pytest reported it as an ERROR with a full traceback at every test, the message buried
    in the tracebacks, and exited 1, as if tests had failed."""
    _, out = _run_suite("--students", str(env / "student-good.pt"), "--formats", "onnx",
                        "--teacher-weights", str(env / "teacher.pt"), "--cache",
                        str(tmp_path / "cache"), "--sizes", "96x64", *bad,
                        expect=4)   # pytest's usage error
    assert out.count(says) == 1 and "Traceback" not in out and "ERROR at" not in out, out


def test_sgemm_threads_read_omp_num_threads_as_the_runtimes_do(monkeypatch):
    """OMP_NUM_THREADS=4,2 (OpenMP's nested levels) ran the runtimes on 4 threads, and the
    report's sgemm_threads said every core: the two counts of one run disagreed."""
    from benchmarks.machine import blas_threads
    from runtime.host import env_threads, usable_cores

    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    for value, n in (("4,2", 4), (" 3 ", 3), ("2,", 2)):
        monkeypatch.setenv("OMP_NUM_THREADS", value)
        assert blas_threads() == env_threads() == n, value
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "5,1")   # OpenBLAS's own variable wins
    assert blas_threads() == 5
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "0")
    monkeypatch.setenv("OMP_NUM_THREADS", "many")   # neither sets a count: every core
    assert blas_threads() == (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                              else usable_cores())


def test_the_sgemm_peaks_threads_under_a_cpu_limit_are_those_openblas_runs(good_run, tmp_path,
                                                                           monkeypatch):
    """Under a container's CPU limit (docker run --cpus 1) the report said numpy's peak ran on
    1 thread and that OMP_NUM_THREADS, which nobody set, limited it: blas_threads took the
    limit's count from usable_cores, but OpenBLAS reads no cgroup limit and runs on every core
    it may be scheduled on, the usable cores the Machine section gives."""
    from benchmarks.machine import blas_threads, machine_info
    from benchmarks.markdown import render_markdown
    from runtime import host

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if cores < 2:
        pytest.skip("one core here: a 1-CPU limit changes nothing")
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cpu.max").write_text("100000 100000\n")
    (tmp_path / "self").write_text("0::/\n")
    monkeypatch.setattr(host, "CGROUP_ROOT", root, raising=False)
    monkeypatch.setattr(host, "CGROUP_MEMBERSHIP", tmp_path / "self", raising=False)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    assert host.usable_cores() == 1   # the limit is read
    assert blas_threads() == cores
    _, report = good_run
    report = json.loads(json.dumps(report))
    report["machine"] = machine_info()
    report["latency"]["settings"].update(sgemm_threads=blas_threads(), runtime_threads=None)
    md = render_markdown(report)
    assert f"(numpy, {cores} threads)" in md
    assert "OMP_NUM_THREADS limited the peak" not in md
    # The limit the timings ran under, which run's thread warnings count, is said with them.
    assert report["machine"]["cpu_limit"] == 1.0
    assert f"({cores} usable cores, a CPU limit of 1 (cgroup); Machine below)" in md
    assert f"{cores} usable, a CPU limit of 1 (cgroup); torch threads" in md
    # LiteRT took the limit's count by default, as sharpen run does, not every core.
    assert "LiteRT backends ran on every core (LiteRT on 1 thread, the CPU limit's)" in md


@pytest.mark.parametrize("case", ["unreadable checkpoint", "export error"])
def test_a_student_whose_export_fails_fails_once_with_why(env, tmp_path, case):
    """An export that raised (a checkpoint that is not one, a cache folder that is a file)
    failed each of the student's latency tests with the same traceback, the reason at its end;
    the quality evaluation stopped for every student. Then the summary's quality table and
    --benchmark-json's `sharpen_quality` left the failed student out, where `sharpen bench`'s
    report has its rows, status "failed" with the reason."""
    broken = tmp_path / "student-broken.pt"
    broken.write_bytes(bytes(range(256)) * 8)
    students, says, test_of = [str(env / "student-good.pt"), str(broken)], \
        "student-broken.pt is not a PyTorch checkpoint", "broken"
    if case == "export error":   # a valid checkpoint: its cache folder cannot be made
        from benchmarks.artifacts import artifact_folder, resolve_students

        blocker = artifact_folder(resolve_students(students[:1])[0], tmp_path / "cache")
        blocker.parent.mkdir(parents=True)
        blocker.write_text("a file where the export's folder goes")
        students, says, test_of = students[:1], "exists and is not a folder", "good"
    _, out = _run_suite("-rs", "-k", "not teacher_tiled", "--students", *students,
                        "--teacher-weights", str(env / "teacher.pt"), "--data",
                        str(env / "pairs"), "--formats", "onnx", "--cache",
                        str(tmp_path / "cache"), "--sizes", "96x64", "--min-ssim-ratio", "0",
                        "--benchmark-json", str(tmp_path / "bench.json"), expect=1)
    assert "1 failed" in out, out
    assert "Traceback" not in out and "Error: " not in out.split("short test summary")[0], out
    [failure] = [part for part in out.split("\n_") if f"[{test_of}-" in part.split("\n")[0]]
    # the checkpoint's path once: the reason names it where the checkpoint is unreadable
    where = "" if case == "unreadable checkpoint" else f" ({students[0]})"
    assert f"student {test_of}{where}: " in failure and says in failure, failure
    # the student's other tests skip with the reason; the rest run
    assert "(a failure at the first test that needed it)" in out and says in out, out
    if case == "unreadable checkpoint":
        assert "test_student_keeps_teacher_ssim" not in out.split("short test summary")[1], out
        table = out.split("sharpen quality")[1]
        assert "student good" in table, out
        # its rows, as in `sharpen bench`'s report: failed, with the reason
        [row] = [line for line in table.splitlines() if "student broken" in line
                 and "PyTorch eager" in line]
        assert "failed: exporting it to onnx failed: " in row and says in row, row
        rows = {r["key"]: r for r in json.loads((tmp_path / "bench.json").read_text())
                ["sharpen_quality"]["rows"] if r["student"] == "broken"}
        assert {k: r["status"] for k, r in rows.items() if r["status"] != "skipped"} == {
            "broken/pytorch": "failed", "broken/onnx": "failed"}, rows
        assert says in rows["broken/pytorch"]["reason"], rows


def test_a_quality_evaluation_that_fails_leaves_the_formats_not_requested_skipped(env,
                                                                                  tmp_path):
    """A teacher checkpoint of garbage bytes failed the quality evaluation, and with it the
    parity test of every format, those --formats left out too: 9 failures for one teacher,
    and the formats the user did not ask for among them."""
    teacher = tmp_path / "teacher-broken.pt"
    teacher.write_bytes(bytes(range(256)) * 8)
    _, out = _run_suite("-rs", "-k", "not teacher_tiled", "--students",
                        str(env / "student-good.pt"), "--teacher-weights", str(teacher),
                        "--data", str(env / "pairs"), "--formats", "onnx", "--cache",
                        str(tmp_path / "cache"), "--sizes", "96x64", expect=1)
    # the SSIM gate, onnx's parity and the reference rows: what the teacher's outputs judge
    assert "3 failed" in out, out
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert not [line for line in failed if "onnx-int8" in line or "tflite" in line], failed
    assert "not requested (--formats)" in out.split("short test summary")[1], out


def test_k_exports_only_the_formats_its_tests_use(env, tmp_path):
    """`-k fast` or `-k "onnx and not int8"` exported the selected students in every format of
    --formats (minutes of INT8 calibration and TFLite conversion on the real students) for
    tests that use one or two."""
    _, out = _run_suite("-k",
                        "test_artifact_parity and onnx or test_student_latency and ort-fp32",
                        "--students", str(env / "student-good.pt"), "--teacher-weights",
                        str(env / "teacher.pt"), "--data", str(env / "pairs"), "--formats",
                        "onnx,tflite-fp16", "--cache", str(tmp_path / "cache"), "--sizes",
                        "96x64", expect=0)
    assert "2 passed" in out, out   # onnx's parity and latency
    [stamp] = (tmp_path / "cache").glob("student-good*/bench_artifacts.json")
    assert list(json.loads(stamp.read_text())["formats"]) == ["onnx"], out
    built = sorted(p.suffix for p in stamp.parent.iterdir() if p.suffix in (".onnx", ".tflite"))
    assert built == [".onnx"], built
    assert "no selected test uses it (-k): tflite-fp16" in out, out


def test_a_student_that_fails_is_reported_failed_and_the_others_measured(env, tmp_path,
                                                                          capsys):
    """`sharpen bench --students good,broken` stopped the whole run at the broken student's
    export with a bare error (exit 2, no report): a checkpoint of garbage bytes, or a valid
    one of a student architecture this process does not know."""
    broken = tmp_path / "student-broken.pt"
    broken.write_bytes(bytes(range(256)) * 8)
    good = create_student("fast", width=8)
    atomic_save(make_checkpoint(good, kind="student", arch="nosuch", arch_args=good.arch_args),
                tmp_path / "student-other.pt")
    rc = _bench(env, "failed", "--students",
                f"{env / 'student-good.pt'},{broken},{tmp_path / 'student-other.pt'}",
                "--formats", "onnx", "--sizes", "96x64", "--stream-frames", "2",
                "--min-ssim-ratio", "0")
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "Traceback" not in err, err
    rep = json.loads((env / "failed" / "report.json").read_text())
    why = {"broken": "student-broken.pt is not a PyTorch checkpoint",
           "other": "student 'nosuch' is not registered"}
    assert {f["student"]: f["path"] for f in rep["failed"]} == {
        "broken": str(broken), "other": str(tmp_path / "student-other.pt")}
    for name, says in why.items():
        # (the formats --formats left out keep their skipped rows, as for any student)
        rows = [r for r in rep["quality"]["rows"]
                if r["student"] == name and r["status"] != "skipped"]
        assert {r["key"]: r["status"] for r in rows} == {f"{name}/pytorch": "failed",
                                                         f"{name}/onnx": "failed"}, rows
        assert all("exporting it to onnx failed" in r["reason"] and says in r["reason"]
                   for r in rows), rows
        lat = [r for r in rep["latency"]["rows"] + rep["latency"]["stream"]
               if r["student"] == name and r["status"] != "skipped"]
        assert {r["backend"] for r in lat} == {"pytorch", "ort-fp32", "pipeline-ort-fp32"}
        assert all(r["status"] == "failed" and says in r["reason"] for r in lat), lat
        [check] = [c for c in rep["checks"] if c["model"] == name]
        assert not check["passed"] and says in check["message"], check
        assert f"student {name!r}" in check["message"], check
        assert says in err, err
    # the good student is measured as usual, and its checks pass
    ok = {r["key"]: r["status"] for r in rep["quality"]["rows"]
          if r["student"] == "good" and r["status"] != "skipped"}
    assert ok == {"good/pytorch": "ok", "good/onnx": "ok"}, ok
    timed = {r["backend"] for r in rep["latency"]["rows"] + rep["latency"]["stream"]
             if r["student"] == "good" and r["status"] == "ok"}
    assert timed == {"pytorch", "ort-fp32", "pipeline-ort-fp32"}, rep["latency"]
    assert all(c["passed"] for c in rep["checks"] if c["model"].startswith("good")), rep["checks"]
    md = (env / "failed" / "report.md").read_text()
    assert "| student broken | pytorch |" in md and "failed: exporting it to onnx failed" in md
    assert "sharpen bench: 2 students failed, not measured: broken, other" in err, err
    # a bad --formats is still a usage error, not every student's failure
    assert _bench(env, "bogus", "--students", str(broken), "--formats", "bogus") == 2
    assert "unknown format 'bogus'" in capsys.readouterr().err


def test_k_selects_a_latency_test_by_student_and_backend_as_one_id(env, tmp_path):
    """`-k "good-ort-int8"`, the student and the backend as the test id spells them, selected
    nothing: the size stood between them (`good-96x64-ort-int8`)."""
    _, out = _run_suite("--collect-only", "-k", "good-ort-int8", "--students",
                        str(env / "student-good.pt"), "--sizes", "96x64,160x96", expect=0)
    assert [ln for ln in out.splitlines() if "::" in ln] == [
        f"benchmarks/test_latency.py::test_student_latency[good-ort-int8-{z}]"
        for z in ("96x64", "160x96")], out


def test_a_format_whose_export_failed_fails_its_first_test_not_a_skip(env, tmp_path):
    """A format whose build raised (the others built) skipped its latency tests as if this
    machine could not run it: `-k "ort-int8"` passed with the INT8 export broken. The first
    test that needs it fails with the export's reason, the later ones skip with it, and the
    student's other formats are measured."""
    (tmp_path / "break_int8.py").write_text(
        "import optimize.onnx_int8 as oi\n\n\n"
        "def fails(*args, **kw):   # a calibrator error, as test_export_cli's\n"
        "    raise RuntimeError('calibration failed')\n\n\n"
        "oi.quantize_onnx_int8 = fails\n")
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "benchmarks"), "-p", "no:cacheprovider",
           "-p", "break_int8", "-q", "-rs", "-k", "ort-int8 or ort-fp32", "--students",
           str(env / "student-good.pt"), "--formats", "onnx,onnx-int8", "--cache",
           str(tmp_path / "cache"), "--sizes", "96x64,64x48", "--calib-count", "2"]
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path})
    out = res.stdout + res.stderr
    assert res.returncode == 1 and "1 failed, 2 passed, 1 skipped" in out, out
    assert "Traceback" not in out, out
    says = (f"student good ({env / 'student-good.pt'}): exporting it to onnx-int8 failed: "
            "build failed: RuntimeError: calibration failed")
    [failure] = [part for part in out.split("\n_") if "[good-ort-int8-96x64]" in part]
    assert says in failure, failure
    assert f"{says} (a failure at the first test that needed it)" in out, out


def test_a_student_that_failed_in_a_test_is_not_exported_for_the_quality_evaluation(
        env, tmp_path):
    """A student whose checkpoint failed in its latency tests (quick mode reads it for its
    memory bound) was exported all the same when a later student's quality test evaluated the
    set (minutes of INT8 calibration), and evaluated where the summary said it was not."""
    broken = tmp_path / "student-broken.pt"
    broken.write_bytes(bytes(range(256)) * 8)
    _, out = _run_suite("-k", "pytorch or ort-fp32 or keeps_teacher", "--students",
                        f"{broken},{env / 'student-good.pt'}", "--teacher-weights",
                        str(env / "teacher.pt"), "--data", str(env / "pairs"), "--formats",
                        "onnx", "--cache", str(tmp_path / "cache"), "--sizes", "96x64",
                        "--min-ssim-ratio", "0", expect=1)
    assert "1 failed, 3 passed, 2 skipped" in out, out
    assert "reading its checkpoint failed" in out, out
    assert "students that failed, not measured: broken" in out, out
    # its row in the quality table says so, not a student left out
    [row] = [line for line in out.split("sharpen quality")[1].splitlines()
             if "student broken" in line and "PyTorch eager" in line]
    assert "failed: reading its checkpoint failed: " in row, row
    cached = os.listdir(tmp_path / "cache")
    assert not [n for n in cached if "broken" in n], cached   # no export (nor its lock) begun
    assert [n for n in cached if n.startswith("student-good-")], cached


def _calib_unreadable_but_one(folder: Path, good: Path) -> Path:
    """A --calib folder whose only readable image is the one the export holds out for parity:
    the FP32 formats' parity gate has an image, INT8 calibration has none."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(4):
        (folder / f"a{i}.png").write_bytes(b"not an image " * 20)
    (folder / "z.png").write_bytes(good.read_bytes())
    return folder


@pytest.fixture(scope="module")
def calibfail_run(env, tmp_path_factory):
    """A bench run whose INT8 export fails for its --calib images: report.json, report.md,
    the run's exit status, its stderr and its stdout (the tables)."""
    tmp = tmp_path_factory.mktemp("calibfail")
    calib = _calib_unreadable_but_one(tmp / "calib", env / "pairs" / "target" / "coffee.png")
    with pytest.MonkeyPatch.context() as mp:
        term, err = io.StringIO(), io.StringIO()
        mp.setattr(sys, "stdout", term)
        mp.setattr(sys, "stderr", err)
        rc = _bench(env, "calibfail", "--students", str(env / "student-good.pt"), "--formats",
                    "onnx,onnx-int8", "--calib", str(calib), "--cache", str(tmp / "cache"),
                    "--sizes", "96x64", "--stream-frames", "2", "--min-ssim-ratio", "0")
    out = env / "calibfail"
    return (json.loads((out / "report.json").read_text()), (out / "report.md").read_text(), rc,
            err.getvalue(), term.getvalue())


CALIB_FAILED = "no calibration images: none of the 4 files is a readable image"


def test_a_calibration_error_fails_the_calibrated_formats_alone(calibfail_run):
    """An export that raised for its INT8 calibration images (before building anything)
    failed the student in every format, FP32 and PyTorch included, though only the INT8
    formats calibrate: they fail with the reason, and the others are measured."""
    rep, _, rc, err, _ = calibfail_run
    assert rc == 1 and "Traceback" not in err, err
    assert rep["failed"] == [], rep["failed"]
    q = {r["key"]: r for r in rep["quality"]["rows"] if r["student"] == "good"}
    assert q["good/pytorch"]["status"] == "ok" and q["good/onnx"]["status"] == "ok", q
    assert q["good/onnx-int8"]["status"] == "error", q["good/onnx-int8"]
    assert CALIB_FAILED in q["good/onnx-int8"]["reason"], q["good/onnx-int8"]
    lat = {r["backend"]: r["status"] for r in rep["latency"]["rows"] + rep["latency"]["stream"]
           if r["student"] == "good"}
    assert {k: lat[k] for k in ("pytorch", "ort-fp32", "pipeline-ort-fp32")} == dict.fromkeys(
        ("pytorch", "ort-fp32", "pipeline-ort-fp32"), "ok"), lat
    [check] = [c for c in rep["checks"] if not c["passed"]]
    assert check["model"] == "good/onnx-int8" and CALIB_FAILED in check["message"], rep["checks"]
    assert rep["artifacts"]["good"]["formats"]["onnx"]["status"] == "pass", rep["artifacts"]


def test_a_format_whose_build_failed_has_failed_latency_rows(calibfail_run):
    """A format whose build failed (the student's others built) had its latency rows marked
    skipped, as a format this machine cannot run, in the terminal, report.md and report.json,
    while its quality row said the export failed: they say failed, with the reason."""
    rep, md, _, _, term = calibfail_run
    [row] = [r for r in rep["latency"]["rows"]
             if r["student"] == "good" and r["backend"] == "ort-int8"]
    assert row["status"] == "failed", row
    calib = rep["settings"]["calibration"].split()[1]   # "--calib DIR (a fifth held out ...)"
    # the folder named, and why its one readable image calibrated nothing
    assert row["reason"] == (f"exporting it to onnx-int8 failed: --calib {calib}: {CALIB_FAILED} "
                             "(besides the 1 image held out for parity)"), row
    assert "ONNX Runtime INT8" not in " ".join(s["what"] for s in rep["skipped"]), rep["skipped"]
    brief = row["reason"].split(" (besides")[0]   # the table leaves out the parenthesis
    assert (f"| student good | ONNX Runtime INT8 | INT8 | 96x64 | - | - | - | - | - | - | - | "
            f"- | failed: {brief} |") in md, md   # its peak and video run peak: none either
    # (the latency table's row: the what-to-ship table names the backend too)
    [line] = [ln for ln in term.splitlines() if "ONNX Runtime INT8" in ln
              and "student good" in ln]
    assert "failed: exporting it to" in line, term
    # no second check for it: the parity check says the export failed
    assert [c["model"] for c in rep["checks"] if not c["passed"]] == ["good/onnx-int8"]


def test_a_calib_folder_with_no_readable_image_fails_the_int8_formats_alone(env, tmp_path,
                                                                             capsys):
    """A --calib folder of corrupt files failed the whole student, FP32 formats and PyTorch
    eager included: the FP32 formats' parity images are held out of --calib, and it had none.
    The INT8 formats fail with a reason naming the folder; the others are gated on the
    built-in parity photos and measured, in `sharpen bench` and in the pytest suite."""
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(4):
        (calib / f"a{i}.png").write_bytes(b"not an image " * 20)
    says = f"--calib {calib}: none of its 4 images is readable"
    good = str(env / "student-good.pt")
    rc = _bench(env, "calib-unreadable", "--students", good, "--formats", "onnx,onnx-int8",
                "--calib", str(calib), "--cache", str(tmp_path / "cache"), "--sizes", "96x64",
                "--stream-frames", "2", "--min-ssim-ratio", "0")
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err, err
    rep = json.loads((env / "calib-unreadable" / "report.json").read_text())
    assert rep["failed"] == [], rep["failed"]
    q = {r["key"]: r for r in rep["quality"]["rows"] if r["student"] == "good"}
    assert q["good/pytorch"]["status"] == q["good/onnx"]["status"] == "ok", q
    assert q["good/onnx-int8"]["status"] == "error" and says in q["good/onnx-int8"]["reason"], q
    lat = {r["backend"]: r for r in rep["latency"]["rows"] + rep["latency"]["stream"]
           if r["student"] == "good"}
    assert {k: lat[k]["status"] for k in ("pytorch", "ort-fp32", "pipeline-ort-fp32")} == \
        dict.fromkeys(("pytorch", "ort-fp32", "pipeline-ort-fp32"), "ok"), lat
    assert lat["ort-int8"]["status"] == "failed" and says in lat["ort-int8"]["reason"], lat
    assert [c["model"] for c in rep["checks"] if not c["passed"]] == ["good/onnx-int8"]
    onnx = rep["artifacts"]["good"]["formats"]["onnx"]
    assert onnx["status"] == "pass" and onnx["export_parity"], onnx
    # the pytest suite: the INT8 test fails with the reason, the FP32 and PyTorch ones pass
    _, out = _run_suite("-k", "test_student_latency", "--students", good, "--formats",
                        "onnx,onnx-int8", "--calib", str(calib), "--cache",
                        str(tmp_path / "cache2"), "--sizes", "96x64", expect=1)
    assert "1 failed, 2 passed" in out, out
    [failure] = [part for part in out.split("\n_") if "[good-ort-int8-96x64]" in part]
    assert f"exporting it to onnx-int8 failed: {says}" in failure, failure


def test_a_calibration_error_does_not_pass_an_earlier_int8_build_for_this_one(env, tmp_path):
    """When the INT8 formats fail for their calibration images, the FP32 formats' export
    carries the folder's earlier INT8 build (other calibration images) into its report: that
    build must not stand for the failed one."""
    from benchmarks.artifacts import ensure_artifacts, resolve_students

    st = resolve_students([str(env / "student-good.pt")])[0]
    cache = tmp_path / "cache"
    first = ensure_artifacts(st, cache, "onnx,onnx-int8", calib_count=2, quiet=True)
    assert first.get("onnx-int8").status in ("pass", "fail"), first.to_dict()
    calib = _calib_unreadable_but_one(tmp_path / "calib", env / "pairs" / "target" / "coffee.png")
    from runtime.warn import SharpenWarning
    with pytest.warns(SharpenWarning) as warned:   # expected: each unreadable image, by name
        arts = ensure_artifacts(st, cache, "onnx,onnx-int8", calib_count=2, quiet=True,
                                calib=[str(calib)])
    assert {f"a{i}.png" for i in range(4)} <= {
        str(w.message).split("/")[-1].split(":")[0] for w in warned}, [str(w.message)
                                                                       for w in warned]
    assert arts.get("onnx").status == "pass", arts.to_dict()
    int8 = arts.get("onnx-int8")
    assert int8.status == "error" and not int8.usable, arts.to_dict()
    assert "none of the 4 files is a readable image" in int8.reason, int8


def test_a_failed_students_line_names_its_checkpoint_once(env, tmp_path, capsys):
    """"student 'broken' (PATH): ... failed: PATH is not a PyTorch checkpoint": the lines that
    say a student failed named its checkpoint twice where the reason names it already."""
    broken = tmp_path / "student-broken.pt"
    broken.write_bytes(bytes(range(256)) * 8)
    rc = _bench(env, "broken-once", "--students", str(broken), "--formats", "onnx",
                "--no-latency")
    err = capsys.readouterr().err
    assert rc == 1, err
    says = f"{broken} is not a PyTorch checkpoint"
    lines = [ln for ln in err.splitlines() if "student broken" in ln or "student 'broken'" in ln]
    assert len(lines) == 2 and all(says in ln and ln.count(str(broken)) == 1 for ln in lines), err
    rep = json.loads((env / "broken-once" / "report.json").read_text())
    [check] = rep["checks"]
    assert says in check["message"] and check["message"].count(str(broken)) == 1, check
    # ... and in the pytest suite's failure, and the skips that repeat it
    _, out = _run_suite("-k", "pytorch", "--students", str(broken), "--sizes", "96x64,64x48",
                        "--cache", str(tmp_path / "cache"), "-rs", expect=1)
    lines = [ln for ln in out.splitlines() if "student broken" in ln]
    assert len(lines) == 2 and all(says in ln and ln.count(str(broken)) == 1 for ln in lines), out
    # a reason that does not name it keeps it in the line (a --calib with no readable image
    # was one; it fails the INT8 formats alone now, each with a check of its own)
    from benchmarks.artifacts import resolve_students
    from benchmarks.quality import failed_checks

    [st] = resolve_students([str(env / "student-good.pt")])
    why = "exporting it to onnx failed: no space left on device"
    [check] = failed_checks([st], {"good": why})
    assert check["message"] == f"student 'good' ({st.path}): not measured: {why}", check


def test_a_failed_students_warning_promises_no_other_student_that_failed(env, tmp_path,
                                                                          capsys):
    """With every student broken, the last one's warning still said "not measured, the other
    students are" while none was: it spoke of the others without looking whether they had
    failed too."""
    paths = []
    for name in ("student-b1.pt", "student-b2.pt"):
        paths.append(tmp_path / name)
        paths[-1].write_bytes(bytes(range(256)) * 8)
    rc = _bench(env, "all-broken", "--students", ",".join(map(str, paths)), "--formats",
                "onnx", "--no-latency")
    err = capsys.readouterr().err
    assert rc == 1, err
    first, last = [ln for ln in err.splitlines() if ln.startswith("warning: student b")]
    assert "the run goes on with the other students" in first, err
    assert last.endswith("; not measured") and "other students" not in last, err


def test_a_failed_students_artifact_folder_is_the_one_its_export_uses(env, tmp_path):
    """report.json's "artifacts" folder of a student whose export raised was named without
    the --float-layers suffix that its export's cache folder has: a folder no run writes."""
    broken = tmp_path / "student-broken.pt"
    broken.write_bytes(bytes(range(256)) * 8)
    rc = _bench(env, "float-failed", "--students", str(broken), "--formats", "onnx-int8",
                "--float-layers", "head", "--cache", str(tmp_path / "cache"), "--no-latency")
    assert rc == 1
    rep = json.loads((env / "float-failed" / "report.json").read_text())
    assert rep["artifacts"]["broken"]["folder"].endswith("-float-head"), rep["artifacts"]


def test_a_failed_student_is_in_the_real_blur_tables_as_failed(env, tmp_path, capsys):
    """A student whose checkpoint failed had no row in the real-blur tables (--real-pairs,
    --real-nogt): it vanished there while every other table said it failed."""
    broken = tmp_path / "student-broken.pt"
    broken.write_bytes(bytes(range(256)) * 8)
    good = env / "student-good.pt"
    rc = _bench(env, "real-failed", "--students", f"{broken},{good}", "--formats", "onnx",
                "--no-latency", "--min-ssim-ratio", "0", "--real-pairs", str(env / "pairs"),
                "--real-nogt", str(_blurred_frames(env, "frames-failed")))
    term = capsys.readouterr().out
    assert rc == 1, term
    rep = json.loads((env / "real-failed" / "report.json").read_text())
    [why] = [f["reason"] for f in rep["failed"]]
    md = (env / "real-failed" / "report.md").read_text()
    for key in ("pairs", "nogt"):
        real = rep["real_blur"][key]
        assert real["broken"] == {"status": "failed", "reason": why}, real
        assert "sharpness" in real["good"] and "sharpness" in real["teacher"], real
    dashes = {"pairs": " - | - | - | - | - |", "nogt": " - |"}
    for key, rest in dashes.items():
        assert f"| broken | failed: {why} |{rest}" in md, md
    assert len([ln for ln in term.splitlines() if ln.startswith("│ broken ")]) == 2, term


def test_a_float_layer_a_student_lacks_is_a_usage_error_before_any_export(env, tmp_path,
                                                                           capsys):
    """--float-layers naming a layer a student lacks failed that student's whole export at its
    turn (FP32 and PyTorch included, minutes in): a typo, or a list meant for another
    architecture, refused at once as `sharpen export` refuses it, naming the layer and each
    such student's layers."""
    good, seed = env / "student-good.pt", env / "student-bad.pt"   # fast and seed students
    cache = tmp_path / "cache"
    for students, layers, says in (
            ([good], "nosuchlayer", "'nosuchlayer' is not a layer of fast"),
            # dec.0 is a layer of fast, not of seed: the one list cannot serve both
            ([good, seed], "dec.0", "'dec.0' is not a layer of seed")):
        rc = _bench(env, "float-never-made", "--students", ",".join(map(str, students)),
                    "--formats", "onnx,onnx-int8", "--float-layers", layers, "--cache",
                    str(cache))
        err = capsys.readouterr().err
        assert rc == 2 and says in err and "Traceback" not in err, err
        [line] = [ln for ln in err.splitlines() if says in ln]
        assert "--float-layers" in line and "choose from " in line and "output" in line, line
        assert not cache.exists() and not (env / "float-never-made").exists()
    assert "student bad" in line and str(seed) in line and "student good" not in line, line
    # the pytest suite, as it stops on a bad option value: once, pytest's usage error
    _, out = _run_suite("--students", str(good), "--float-layers", "nosuchlayer", "--cache",
                        str(cache), "--sizes", "96x64", expect=4)
    assert out.count("'nosuchlayer' is not a layer of fast") == 1, out
    assert "Traceback" not in out and not cache.exists(), out


def _blocked_cache(env: Path, cache: Path) -> Path:
    """A cache whose folder for student-good is a file: its export raises ("output path ...
    exists and is not a folder") while its checkpoint is sound."""
    from benchmarks.artifacts import artifact_folder, resolve_students

    blocker = artifact_folder(resolve_students([str(env / "student-good.pt")])[0], cache)
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the export's folder goes")
    return cache


@pytest.mark.parametrize("order", ["pytorch first", "ort-fp32 first"])
def test_pytorch_eager_is_timed_whatever_the_export_and_the_test_order(env, tmp_path, order):
    """A sound checkpoint whose export raised: its PyTorch eager latency was timed when its
    test ran before the first test that exported, and skipped ("exporting it ... failed")
    when it ran after. PyTorch eager needs the checkpoint alone: timed in either order; the
    ONNX test fails with the export's reason."""
    cache = _blocked_cache(env, tmp_path / "cache")
    ids = [f"test_latency.py::test_student_latency[good-{b}-96x64]" for b in ("pytorch",
                                                                              "ort-fp32")]
    first, second = ids if order == "pytorch first" else ids[::-1]
    _, out = _run_suite(str(ROOT / "benchmarks" / second), "-p", "no:randomly", "-rs",
                        "--students", str(env / "student-good.pt"), "--formats", "onnx",
                        "--cache", str(cache), "--sizes", "96x64", file=first, expect=1)
    assert "1 failed, 1 passed" in out and "Traceback" not in out, out
    [failure] = [part for part in out.split("\n_") if "[good-ort-fp32-96x64]" in part]
    assert (f"student good ({env / 'student-good.pt'}): exporting it to onnx failed: output "
            "path ") in failure and "exists and is not a folder" in failure, failure


def test_an_export_error_of_a_sound_checkpoint_fails_its_formats_not_pytorch(env, tmp_path,
                                                                            capsys):
    """`sharpen bench`: an export that raised for a sound checkpoint (here its cache folder is
    a file) failed the whole student, PyTorch eager included, which needs only the
    checkpoint: the formats fail with the reason, PyTorch eager is measured."""
    cache = _blocked_cache(env, tmp_path / "cache")
    rc = _bench(env, "export-blocked", "--students", str(env / "student-good.pt"), "--formats",
                "onnx", "--cache", str(cache), "--sizes", "96x64", "--stream-frames", "2",
                "--min-ssim-ratio", "0")
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err, err
    rep = json.loads((env / "export-blocked" / "report.json").read_text())
    assert rep["failed"] == [], rep["failed"]
    says = "exists and is not a folder"
    q = {r["key"]: r for r in rep["quality"]["rows"] if r["student"] == "good"}
    assert q["good/pytorch"]["status"] == "ok", q
    assert q["good/onnx"]["status"] == "error" and says in q["good/onnx"]["reason"], q
    lat = {r["backend"]: r for r in rep["latency"]["rows"] + rep["latency"]["stream"]
           if r["student"] == "good" and r["status"] != "skipped"}
    assert {k: r["status"] for k, r in lat.items()} == {
        "pytorch": "ok", "ort-fp32": "failed", "pipeline-ort-fp32": "failed"}, lat
    assert says in lat["ort-fp32"]["reason"] and says in lat["pipeline-ort-fp32"]["reason"], lat
    assert [c["model"] for c in rep["checks"] if not c["passed"]] == ["good/onnx"], rep["checks"]
    assert f"student good ({env / 'student-good.pt'}): exporting it to onnx failed: " in err, err


def test_float_layers_leave_a_checkpoint_that_does_not_load_to_its_student(env, tmp_path,
                                                                          capsys):
    """--float-layers' up-front check loads each student; a checkpoint that raised there
    anything but a CheckpointError (here a KeyError: its 'arch' missing) crashed the bench with
    a traceback and errored every test of the pytest suite. It is that student's failure, as
    without --float-layers; the others are measured."""
    model = create_student("fast", width=8)
    ckpt = make_checkpoint(model, kind="student", arch="fast", arch_args=model.arch_args)
    del ckpt["arch"]
    odd = tmp_path / "student-odd.pt"
    atomic_save(ckpt, odd)
    good = str(env / "student-good.pt")
    rc = _bench(env, "float-odd", "--students", f"{good},{odd}", "--formats", "onnx",
                "--float-layers", "output", "--cache", str(tmp_path / "cache"), "--no-latency",
                "--min-ssim-ratio", "0")
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err, err
    rep = json.loads((env / "float-odd" / "report.json").read_text())
    assert [f["student"] for f in rep["failed"]] == ["odd"], rep["failed"]
    q = {r["key"]: r["status"] for r in rep["quality"]["rows"] if r["student"] == "good"}
    assert q["good/pytorch"] == q["good/onnx"] == "ok", q
    _, out = _run_suite("-k", "pytorch", "--students", good, str(odd), "--float-layers",
                        "output", "--cache", str(tmp_path / "cache"), "--sizes", "96x64",
                        expect=1)
    assert "1 failed, 1 passed" in out and "Traceback" not in out, out
    assert "student odd: reading its checkpoint failed: " in out and "a student checkpoint " \
        "that names no architecture ('arch' is None)" in out, out


def test_an_export_error_leaves_the_cached_formats_measured(env, tmp_path, capsys):
    """An export that raised for a sound checkpoint failed every format of the student, those
    the run reused from the cache too (valid, and reused by the next run): only the formats it
    was building fail; the cached one is measured, in `sharpen bench` and the pytest suite."""
    good, cache = str(env / "student-good.pt"), tmp_path / "cache"
    assert _bench(env, "cached-onnx", "--students", good, "--formats", "onnx", "--cache",
                  str(cache), "--no-latency", "--min-ssim-ratio", "0") == 0
    from benchmarks.artifacts import artifact_folder, resolve_students

    folder = artifact_folder(resolve_students([good])[0], cache)
    # the export of onnx-int8 raises (IsADirectoryError) on the report it replaces
    (folder / "export_report.student-good.json").mkdir()
    capsys.readouterr()
    rc = _bench(env, "cached-onnx-2", "--students", good, "--formats", "onnx,onnx-int8",
                "--cache", str(cache), "--sizes", "96x64", "--stream-frames", "2",
                "--min-ssim-ratio", "0")
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err, err
    rep = json.loads((env / "cached-onnx-2" / "report.json").read_text())
    assert rep["failed"] == [] and rep["artifacts"]["good"]["formats"]["onnx"]["status"] == \
        "pass", rep["artifacts"]["good"]
    q = {r["key"]: r for r in rep["quality"]["rows"] if r["student"] == "good"}
    assert q["good/pytorch"]["status"] == q["good/onnx"]["status"] == "ok", q
    assert q["good/onnx-int8"]["status"] == "error" and "IsADirectoryError" in \
        q["good/onnx-int8"]["reason"], q
    lat = {r["backend"]: r["status"] for r in rep["latency"]["rows"] + rep["latency"]["stream"]
           if r["student"] == "good" and r["status"] != "skipped"}
    assert lat == {"pytorch": "ok", "ort-fp32": "ok", "ort-int8": "failed",
                   "pipeline-ort-fp32": "ok"}, lat
    assert [c["model"] for c in rep["checks"] if not c["passed"]] == ["good/onnx-int8"]
    [line] = [ln for ln in err.splitlines() if "PyTorch eager rows are measured" in ln]
    assert "exporting it to onnx-int8 failed: IsADirectoryError" in line, line
    assert line.endswith("as are those of onnx (cached)"), line
    _, out = _run_suite("-k", "test_student_latency and (ort-fp32 or ort-int8)", "--students",
                        good, "--formats", "onnx,onnx-int8", "--cache", str(cache), "--sizes",
                        "96x64", expect=1)
    assert "1 failed, 1 passed" in out and "Traceback" not in out, out
    [failure] = [part for part in out.split("\n_") if "[good-ort-int8-96x64]" in part]
    assert "exporting it to onnx-int8 failed: IsADirectoryError" in failure, failure


def test_the_report_says_where_the_parity_gate_ran_without_a_readable_calib(env, tmp_path,
                                                                           capsys):
    """With no --calib image readable the FP32 formats' parity gate runs on the built-in
    photos, but report.json's `settings.calibration` and report.md said a fifth of --calib
    was held out for it, and so did a later run reusing those artifacts (only the first run's
    console said otherwise). The artifact records it; a --calib with readable images rebuilds
    it, gated on the images held out."""
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(3):
        (calib / f"a{i}.png").write_bytes(b"not an image " * 20)
    good, cache = str(env / "student-good.pt"), str(tmp_path / "cache")
    says = (f"--calib {calib} (none of its images is readable: the INT8 formats failed; the "
            "export's parity gate ran on the built-in sample photos)")
    for run in ("nocalib-1", "nocalib-2"):   # built, then reused from the cache
        assert _bench(env, run, "--students", good, "--formats", "onnx,onnx-int8", "--calib",
                      str(calib), "--cache", cache, "--no-latency", "--min-ssim-ratio",
                      "0") == 1
        rep = json.loads((env / run / "report.json").read_text())
        assert rep["settings"]["calibration"] == says, rep["settings"]
        assert f"INT8 calibration: 32 crops per student from {says}." in \
            (env / run / "report.md").read_text()
        arts = rep["artifacts"]["good"]
        assert arts["formats"]["onnx"]["export_parity"]["images"] == \
            "built-in sample photos (no --calib image is readable)", arts
        assert arts["built_now"] == (["onnx"] if run == "nocalib-1" else []), arts
    capsys.readouterr()
    assert _bench(env, "readable-calib", "--students", good, "--formats", "onnx", "--calib",
                  str(env / "pairs" / "input"), "--cache", cache, "--no-latency",
                  "--min-ssim-ratio", "0") == 0
    rep = json.loads((env / "readable-calib" / "report.json").read_text())
    onnx = rep["artifacts"]["good"]["formats"]["onnx"]
    assert rep["artifacts"]["good"]["built_now"] == ["onnx"] and "images" not in \
        onnx["export_parity"], rep["artifacts"]["good"]
    assert "a fifth held out" in rep["settings"]["calibration"], rep["settings"]
def test_the_report_says_where_the_parity_gate_ran_with_a_calib_of_one_image(env, tmp_path):
    """A --calib of one image (or of .npy crops) holds none out for the export's parity gate,
    which runs on the built-in photos, yet settings.calibration said "a fifth held out"."""
    calib = tmp_path / "one"
    calib.mkdir()
    shutil.copy(sorted((env / "pairs" / "input").iterdir())[0], calib)
    says = (f"--calib {calib} (nothing held out: the export's parity gate ran on the built-in "
            "sample photos (--calib has one image, none to hold out besides it))")
    for run in ("one-calib-1", "one-calib-2"):   # built, then reused from the cache
        assert _bench(env, run, "--students", str(env / "student-good.pt"), "--formats",
                      "onnx", "--calib", str(calib), "--cache", str(tmp_path / "cache"),
                      "--no-latency", "--min-ssim-ratio", "0") == 0
        rep = json.loads((env / run / "report.json").read_text())
        assert rep["settings"]["calibration"] == says, rep["settings"]
        arts = rep["artifacts"]["good"]
        assert arts["built_now"] == (["onnx"] if run == "one-calib-1" else []), arts


def test_rows_of_mixed_precision_artifacts_say_which_layers_are_float(env, tmp_path):
    """--float-layers built mixed-precision artifacts, yet every table and report.json said
    only "INT8": with 'auto' nothing told which layers it kept in float, or that it kept none."""
    rc = _bench(env, "float-rows", "--students", str(env / "student-good.pt"), "--formats",
                "onnx-int8", "--float-layers", "head", "--sizes", "160x96",
                "--stream-frames", "0", "--min-ssim-ratio", "0",
                "--cache", str(tmp_path / "cache"))
    rep = json.loads((env / "float-rows" / "report.json").read_text())
    assert rc == 0, rep["checks"]
    q = next(r for r in rep["quality"]["rows"] if r["format"] == "onnx-int8")
    lat = next(r for r in rep["latency"]["rows"] if r.get("format") == "onnx-int8")
    assert q["float_layers"] == ["head"] and lat["float_layers"] == ["head"], (q, lat)
    md = (env / "float-rows" / "report.md").read_text()
    assert md.count("| INT8, float from head |") == 2, md   # quality and latency tables
    # ... and so do the rows of such a file given as it is (--model): the file's own record
    # (ONNX metadata, the TFLite sidecar) names its float layers
    path = rep["artifacts"]["good"]["formats"]["onnx-int8"]["file"]
    rc = _bench(env, "float-given", "--model", path, "--sizes", "160x96", "--stream-frames",
                "0", "--min-ssim-ratio", "0", "--cache", str(tmp_path / "cache"))
    rep = json.loads((env / "float-given" / "report.json").read_text())
    assert rc == 0, rep["checks"]
    q = next(r for r in rep["quality"]["rows"] if r.get("file") == path)
    lat = next(r for r in rep["latency"]["rows"] if r.get("file") == path)
    assert q["float_layers"] == ["head"] and lat["float_layers"] == ["head"], (q, lat)
    from benchmarks.given import recorded_float_layers
    assert recorded_float_layers({"float_layers": ["dec.1", "head"]}) == ["dec.1", "head"]
    assert recorded_float_layers({"quantization": "int8 QDQ static (percentile 99.999, "
                                  "reduce_range=True, float layers: edge_dw, enc.1)"}) \
        == ["edge_dw", "enc.1"]
    assert recorded_float_layers({"quantization": "full-integer int8"}) == []


def test_a_bench_into_an_out_another_bench_is_writing_is_refused(env, capsys):
    """Two `sharpen bench --out` into one folder at once both ran: each timed its backends
    while the other loaded the same cores (latencies and fps of neither alone), the second to
    end replaced the first's report without setting it aside as report.previous.*, and
    report.md, report.json and the figures of the two could be mixed. The second is refused
    before it measures or moves anything, naming the first."""
    from benchmarks import cli as bench_cli
    from distill.run_lock import run_lock

    out = env / "shared-out"
    out.mkdir()
    (out / "report.json").write_text('{"the other run": "finished"}\n')
    with run_lock(out, doing="benchmarking", flag="--out", name=".bench.lock"):   # another
        rc = bench_cli.main(["--out", str(out), "--students", str(env / "student-good.pt"),
                             "--teacher-weights", str(env / "teacher.pt"), "--data",
                             str(env / "pairs"), "--cache", str(env / "cache"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert (f"another run is benchmarking into {out} (process {os.getpid()}); wait for it to "
            "finish or stop it, or give this run another --out") in err
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]   # not set aside
    assert json.loads((out / "report.json").read_text()) == {"the other run": "finished"}


def test_a_cache_folder_a_users_export_is_writing_is_named_with_the_flag_of_the_bench(env):
    """`sharpen export --out` into a folder of the bench cache while the bench exports the
    student there: the bench's export is refused, as one export into another's --out is, and
    its reason (the formats' error in the report) said "give this run another out_dir", a
    keyword of the Python API the bench has no option for; the bench's is --cache."""
    from benchmarks.artifacts import (BenchError, artifact_folder, ensure_artifacts,
                                      resolve_students)
    from distill.run_lock import run_lock

    st = resolve_students([str(env / "student-good.pt")])[0]
    cache = env / "shared-cache"
    folder = artifact_folder(st, cache, None)
    with run_lock(folder, doing="exporting", flag="--out", name=".export.lock"):   # the user's
        with pytest.raises(BenchError) as e:
            ensure_artifacts(st, cache, "onnx", quiet=True)
    assert (f"another run is exporting into {folder} (process {os.getpid()}); wait for it to "
            "finish or stop it, or give this run another --cache") in str(e.value), e.value


def test_bench_takes_exports_seed_and_a_new_seed_rebuilds_its_int8_artifacts(env, tmp_path):
    """`sharpen export --seed` picks the calibration crops (another seed: other scales), but
    `sharpen bench` had no --seed: its INT8 rows were always seed 0's. It takes export's
    flag now and passes it to its exports; the cache keys on it, so an artifact calibrated
    on one seed's crops is not reused for another."""
    from benchmarks.artifacts import ensure_artifacts, resolve_students
    from benchmarks.cli import options_from_args
    from sharpen.cli import build_parser

    args = build_parser().parse_args(["bench", "--out", str(tmp_path / "r"), "--seed", "3"])
    opts = options_from_args(args)
    argv = opts.to_argv()
    assert opts.seed == 3 and argv[argv.index("--seed") + 1] == "3", argv
    from benchmarks.cli import main as bench_main
    assert bench_main(["--out", str(tmp_path / "r"), "--seed", "-1"]) == 2
    cache = tmp_path / "cache"
    st = resolve_students([str(env / "student-good.pt")])[0]
    first = ensure_artifacts(st, cache, "onnx-int8", calib_count=4, quiet=True)
    assert first.built_now == ["onnx-int8"]
    assert ensure_artifacts(st, cache, "onnx-int8", calib_count=4, quiet=True,
                            seed=0).built_now == []
    other = ensure_artifacts(st, cache, "onnx-int8", calib_count=4, quiet=True, seed=1)
    assert other.built_now == ["onnx-int8"]
    report = json.loads((other.folder / "export_report.json").read_text())
    assert report["settings"]["calib_seed"] == 1, report["settings"]
    assert ensure_artifacts(st, cache, "onnx-int8", calib_count=4, quiet=True,
                            seed=1).built_now == []


def test_a_tflite_given_alone_is_named_by_the_record_inside(fast_student_pt, export_data_dir,
                                                            tmp_path):
    """--model FILE.tflite copied without its sidecar: the export's record inside the file
    names its student and weights, which the row reads (it said "student unknown")."""
    from benchmarks.given import resolve_models
    from sharpen.cli import main

    out = tmp_path / "x"
    assert main(["export", "--weights", str(fast_student_pt), "--formats", "tflite-fp16",
                 "--out", str(out), "--parity-images", str(export_data_dir / "parity"),
                 "--no-latency", "--quiet"]) == 0
    alone = tmp_path / "alone" / "student_fp16.tflite"
    alone.parent.mkdir()
    shutil.copy(out / alone.name, alone)
    with_sidecar = json.loads((out / (alone.name + ".json")).read_text())
    (gm,) = resolve_models([str(alone)])
    assert gm.source == with_sidecar["student"] == "fast", gm
    assert gm.source_sha256 == with_sidecar["source_sha256"], gm


def test_bench_scores_quality_as_the_8bit_images_published_tables_score(tmp_path):
    """The bench's quality rows scored float outputs (a few thousandths of a dB above the 8-bit
    PNG a paper's number comes from) and its report.json named no convention: its rows could
    not stand beside `sharpen evaluate`'s or a published table's. They are scored as evaluate
    scores them, and the report says how."""
    import cv2
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from benchmarks.quality import Pair, QualityResult, _const, _row, _run_one
    rng = np.random.default_rng(3)
    y8 = cv2.GaussianBlur(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8), (5, 5), 1.0)
    x8 = cv2.GaussianBlur(y8, (7, 7), 2.0)
    x, y = x8.astype(np.float32) / 255, y8.astype(np.float32) / 255
    r = _row("m", "model m", "model", "onnx", "ONNX Runtime", "fp32")
    _run_one(r, lambda img: img * 0.9 + 0.3 / 255, Pair("a", _const(x), _const(y)), y, {}, {})
    out8 = np.clip(np.round((x * 0.9 + 0.3 / 255) * 255), 0, 255).astype(np.uint8)
    got = r["images"][0]
    assert got["psnr"] == pytest.approx(peak_signal_noise_ratio(y8, out8, data_range=255),
                                        abs=1e-5)   # k/255 in float32
    assert got["ssim"] == pytest.approx(structural_similarity(
        y8, out8, channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False), abs=1e-6)
    q = QualityResult("d", [], [r], [], {}, {}).to_dict()
    assert "gaussian_weights=True" in q["convention"]["ssim"]


def test_the_bench_teacher_row_is_scored_on_8bit_outputs_as_the_students(tmp_path):
    """The teacher's row scored its float output while the students' rows score the 8-bit
    image: report.json said one convention for both, and the SSIM-ratio gate divided a
    student's 8-bit gain by the teacher's float one."""
    from skimage.metrics import structural_similarity

    from benchmarks.quality import Pair, _const, evaluate
    rng = np.random.default_rng(5)
    y8 = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    y = y8.astype(np.float32) / 255
    x = np.clip(y * 0.8 + 0.1, 0, 1).astype(np.float32)

    class Dimmer:   # a teacher whose output falls between 8-bit levels
        cached = computed = 0

        def __call__(self, img):
            return img * 0.97 + 0.013

        def describe(self):
            return "dimmer"

    res = evaluate([Pair("a", _const(x), _const(y))], Dimmer(), [], {}, progress=False)
    (row,) = [r for r in res.rows if r["kind"] == "teacher"]
    out8 = np.round(np.clip(x * 0.97 + 0.013, 0, 1) * 255).astype(np.uint8)
    assert row["images"][0]["ssim"] == pytest.approx(structural_similarity(
        y8, out8, channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False), abs=1e-7)
