"""The README's commands cannot break silently: every `sharpen ...` line in its shell blocks
parses with the real parser, and a set of them runs through the installed console script from a
temporary working directory on tiny inputs (this is what caught `sharpen bench` failing to
import the uninstalled benchmarks package)."""
from __future__ import annotations

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
from distill.images import write_image
from distill.students import create_student

README = Path(__file__).resolve().parents[1] / "README.md"
SHARPEN = Path(sys.executable).with_name("sharpen")


def readme_commands() -> list[str]:
    fenced = re.findall(r"```(\w*)\n(.*?)```", README.read_text(), flags=re.S)
    cmds = []
    for lang, block in fenced:
        if lang not in ("", "bash", "sh", "console"):
            continue
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith("sharpen "):
                cmds.append(line)
    return cmds


def test_readme_has_commands():
    cmds = readme_commands()
    assert len(cmds) >= 15
    assert any(c.startswith("sharpen bench") for c in cmds)


def _github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_links_to_its_own_sections_resolve():
    """A renamed heading (`In a pipeline (...)` gained `--source raw:WxH`) silently broke every
    link to it; each `](#anchor)` must name a heading, and the contents line must name the
    pipeline section, where raw and Y4M frames on stdin and stdout are described."""
    text = README.read_text()
    body = re.sub(r"```.*?```", "", text, flags=re.S)   # a shell comment is no heading
    anchors = {_github_anchor(h) for h in re.findall(r"^#+ (.+)$", body, flags=re.M)}
    broken = sorted(set(re.findall(r"\]\(#([^)]+)\)", text)) - anchors)
    assert not broken, broken
    for doc in [*README.parent.glob("models/*.md"), *README.parent.glob("docs/**/*.md")]:
        broken = sorted(set(re.findall(r"README\.md#([^)\s]+)", doc.read_text())) - anchors)
        assert not broken, (doc.name, broken)
    contents = next(p for p in text.split("\n\n") if p.startswith("Contents:"))
    assert "in-a-pipeline" in contents, contents


def test_readme_receptive_fields_are_the_measured_ones():
    """The README said `fast` sees ~130 px and `deep=2` ~530 px after `sharpen models` measured
    136 and 560: the numbers a user sizes tiles and parity images by come from receptive_field."""
    from distill.students import receptive_field
    text = " ".join(README.read_text().split())
    said = re.search(r"`deep=2` the receptive field is (\d+) px instead of (\d+) px", text)
    assert said, "README.md no longer says fast's receptive field with and without deep=2"
    deep, plain = map(int, said.groups())
    assert deep == receptive_field(create_student("fast", deep=2))
    assert plain == receptive_field(create_student("fast"))


def _parse(where: str, line: str):
    """The parsed arguments of a documented `sharpen` command, or a test failure naming it."""
    from sharpen.cli import build_parser
    try:
        args = build_parser().parse_args(shlex.split(line)[1:])
    except SystemExit as e:
        pytest.fail(f"{where}: command does not parse (exit {e.code}): {line}")
    assert getattr(args, "func", None), line
    return args


@pytest.mark.parametrize("line", readme_commands())
def test_readme_command_parses(line):
    _parse("README", line)


# The commands whose --out is made by the command itself (models, reports, caches), not a
# user's own media (run's, teacher's and synth's outputs are theirs to name and keep).
GENERATED = ("export", "bench", "labels", "corpus", "evaluate", "grow", "demo")


def test_what_readme_commands_write_into_the_checkout_is_ignored_by_git():
    """`sharpen export ... --out export/`, as the README writes it from the checkout's root,
    left export/ untracked beside the code: `git status` listed every artifact."""
    if not (README.parent / ".git").exists():
        pytest.skip("not a git checkout")
    outs = set()
    for line in readme_commands():
        args = _parse("README", line)
        out = getattr(args, "out", None)
        if args.command in GENERATED and out and not out.isupper() and not Path(out).is_absolute():
            outs.add(out)
    assert {"export/", "bench/"} <= outs, outs
    said = subprocess.run(["git", "-C", str(README.parent), "check-ignore", "--no-index", *outs],
                          capture_output=True, text=True)
    ignored = {ln.strip() for ln in said.stdout.splitlines()}
    assert ignored == outs, f"not in .gitignore: {sorted(outs - ignored)}"


ROOT = README.parent
# A command that names what it works on is meant to be copied and run as written; one without
# (`sharpen export --formats engine`, naming a flag in prose) or with a `...` placeholder is not.
SUBJECT_FLAGS = ("--weights", "--config", "--data", "--photos", "--sharp", "--model", "--source")


def doc_commands() -> list[tuple[str, str]]:
    """(where, command) for the `sharpen` commands of the model cards, docs/ and the configs'
    comments (inline code spans too, which wrap across lines), README's prose included."""
    found = []
    for path in [README, *sorted((ROOT / "models").glob("*.md")),
                 *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        spans = [m.group(2).replace("\\\n", " ") for m in
                 re.finditer(r"```(\w*)\n(.*?)```", text, flags=re.S)
                 if m.group(1) in ("", "bash", "sh", "console")]
        spans = [ln.split(" #", 1)[0] for s in spans for ln in s.splitlines()]
        spans += re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        found += [(path.name, " ".join(s.split())) for s in spans]
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        for line in path.read_text().splitlines():
            if not line.startswith("#"):
                break
            line = re.sub(r"\s+\(init: [^)]*\)$", "", line.lstrip("# ").strip().strip("`"))
            if "(" not in line:
                found.append((path.name, line))
    return sorted({(w, c) for w, c in found if c.startswith("sharpen ") and "..." not in c
                   and any(f in c.split() for f in SUBJECT_FLAGS)})


def test_docs_have_commands():
    where = {w for w, _ in doc_commands()}
    assert len(doc_commands()) >= 60 and {"student-fast.md", "teacher-restormer-small.md",
                                          "distill-fast-still.yaml"} <= where


@pytest.mark.parametrize("where,line", doc_commands())
def test_doc_command_parses(where, line):
    """The model cards' and configs' commands run as written: they parse, and the training
    commands' config and key=value overrides load (a card's `sharpen export` without its
    required --out failed with a usage error)."""
    from distill.config import check_config, load_config
    args = _parse(where, line)
    if getattr(args, "overrides", None) is not None and getattr(args, "config", None):
        check_config(load_config(str(ROOT / args.config), args.overrides))


def _run(*argv: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([str(SHARPEN), *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def work(tmp_path_factory, tiny_teacher_pt):
    d = tmp_path_factory.mktemp("readme")
    shutil.copy(tiny_teacher_pt, d / "teacher.pt")   # the commands name it relative to d
    torch.manual_seed(0)
    s = create_student("fast", width=8)
    atomic_save(make_checkpoint(s, kind="student", arch="fast", arch_args=s.arch_args),
                d / "student.pt")
    rng = np.random.default_rng(0)
    for i in range(3):
        sharp = rng.random((48, 64, 3)).astype(np.float32)
        write_image(d / "pairs" / "sharp" / f"p{i}.png", sharp)
        write_image(d / "pairs" / "blur" / f"p{i}.png", cv2.blur(sharp, (5, 5)))
        write_image(d / "photos" / f"photo{i}.png",
                    cv2.resize(sharp, (160, 120), interpolation=cv2.INTER_NEAREST))
    return d


def test_console_script_basics(work):
    assert SHARPEN.exists(), f"console script not installed at {SHARPEN}"
    r = _run("--version", cwd=work)
    assert r.returncode == 0 and r.stdout.startswith("sharpen ")
    r = _run("models", "fast", "--quiet", cwd=work)
    assert r.returncode == 0 and "fast" in r.stdout


def test_console_script_data_commands(work, capsys, monkeypatch):
    r = _run("synth", "--sharp", "photos", "--out", "synth", "--preset", "gopro", cwd=work)
    assert r.returncode == 0, r.stderr
    assert len(list((work / "synth" / "input").iterdir())) == 3
    assert "already holds" not in r.stderr
    r = _run("synth", "--sharp", "photos", "--out", "synth", "--preset", "mild", cwd=work)
    assert r.returncode == 0 and "synth already holds 3 pairs" in r.stderr, r.stderr
    r = _run("corpus", "--photos", "photos", "--out", "corpus", "--crop", "64",
             "--test-crop", "64", "--quiet", cwd=work)
    assert r.returncode == 0, r.stderr
    assert (work / "corpus" / "corpus.json").is_file()
    r = _run("teacher", "pairs/blur", "--out", "sharp", "--teacher-weights", "teacher.pt",
             "--quiet", cwd=work)
    assert r.returncode == 0, r.stderr
    r = _run("evaluate", "--weights", "student.pt", "teacher.pt", "--data", "pairs",
             "--out", "eval", "--quiet", cwd=work)
    assert r.returncode == 0, r.stderr
    assert "student" in r.stdout and (work / "eval" / "side_by_side.png").is_file()
    m = json.loads((work / "eval" / "metrics.json").read_text())
    per = m["per_image"]
    assert len(per) == m["images"] and "worst dPSNR" in r.stdout
    gains = {n: v["student"]["psnr"] - v["input"]["psnr"] for n, v in per.items()}
    assert m["student"]["worst_psnr_gain"] == pytest.approx(min(gains.values()))
    assert m["student"]["psnr"] == pytest.approx(
        sum(v["student"]["psnr"] for v in per.values()) / len(per))
    # Real blur without ground truth: the teacher among the weights becomes the reference.
    # (in this process: the console script's evaluate ran above; a second start-up is 5 s)
    from sharpen.cli import main
    monkeypatch.chdir(work)
    rc = main(["evaluate", "--weights", "student.pt", "teacher.pt", "--data", "pairs/blur",
               "--out", "eval-nogt", "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "PSNR to teacher's output" in out
    m = json.loads((work / "eval-nogt" / "metrics.json").read_text())
    assert m["reference"] == "teacher" and set(m["per_image"]) == {"p0", "p1", "p2"}
    assert m["student"]["psnr_to_reference"] > 0 and m["input"]["psnr_to_reference"] > 0


@pytest.mark.slow
def test_console_script_export_run_bench(work, capsys):
    """export -> run -> bench as the README chains them, from a folder that is not the
    checkout."""
    from sharpen.cli import main
    # (--no-latency: the 1080p timing, 3 s of this script's 11, is nothing the chain reads)
    r = _run("export", "--weights", "student.pt", "--out", "export", "--formats", "onnx",
             "--calib", "pairs/blur", "--no-latency", cwd=work)
    assert r.returncode == 0, r.stdout + r.stderr
    onnx = next((work / "export").glob("*.onnx"))
    # The exported artifact judged on the pairs as deployed: the same numbers as the checkpoint.
    r = _run("evaluate", "--weights", "student.pt", "--model", str(onnx), "--data", "pairs",
             "--out", "eval-onnx", "--quiet", cwd=work)
    assert r.returncode == 0, r.stderr
    m = json.loads((work / "eval-onnx" / "metrics.json").read_text())
    assert m[onnx.name]["psnr"] == pytest.approx(m["student"]["psnr"], abs=1e-3)
    # (a usage error: in this process, not a console script's of its own, ~5 s)
    assert main(["evaluate", "--weights", str(onnx), "--data", str(work / "pairs")]) != 0
    assert "pass it with --model" in capsys.readouterr().err
    r = _run("run", "--model", str(onnx), "--source", "pairs/blur", "--out", "run-out",
             "--quiet", cwd=work)
    assert r.returncode == 0, r.stderr
    assert len(list((work / "run-out").iterdir())) == 3
    r = _run("bench", "--out", "bench", "--weights", "student.pt", "--teacher-weights",
             "teacher.pt", "--data", "pairs", "--formats", "onnx", "--no-latency",
             "--real-pairs", "pairs", "--cache", "cache", "--min-ssim-gain", "0", "--quiet",
             cwd=work)
    assert (work / "bench" / "report.md").is_file(), r.stderr
    assert "## Real blur" in (work / "bench" / "report.md").read_text()


def test_readme_python_api_example_runs(tmp_path, monkeypatch):
    """The README's Python example runs as written (a tiny sharpening model stands in for the
    exported student)."""
    from runtime_fixtures import make_onnx_model
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
                if "from runtime import" in b]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "export").mkdir()
    make_onnx_model(tmp_path / "export" / "student-fast.onnx")
    vw = cv2.VideoWriter("in.mp4", cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for i in range(3):
        vw.write(np.full((48, 64, 3), 40 * i, np.uint8))
    vw.release()
    frame = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    scope = {"frame": frame, "frame1": frame, "frame2": frame[::-1].copy()}
    exec(compile(block, "README.md", "exec"), scope)
    assert scope["sharp"].shape == frame.shape and scope["stats"]["frames_processed"] == 3
    assert scope["body"][:2] == b"\xff\xd8" and scope["again"].shape == frame.shape
    assert scope["held"]["frames_processed"] == 2


def test_readme_pytorch_api_example_runs(tmp_path, monkeypatch):
    """The README's PyTorch-side example runs as written, on the shipped models."""
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
                if "from distill" in b and "register(" not in b]
    monkeypatch.chdir(tmp_path)
    blurred = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 255, (48, 64, 3),
                                                                 dtype=np.uint8), (5, 5), 2)
    cv2.imwrite("blurred.png", blurred)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    assert scope["t_out"].shape == scope["s_out"].shape == (48, 64, 3)
    assert scope["net"].arch_args["width"] == 24 and "fast" in scope["list_students"]()


def test_readme_student_of_ones_own_registers_and_builds(monkeypatch):
    """The README's own-student example, as the module SHARPEN_STUDENTS would import."""
    import types

    from distill import students
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
                if "register(" in b]
    module = types.ModuleType("my_students")
    monkeypatch.setitem(sys.modules, "my_students", module)
    monkeypatch.setattr(students, "_REGISTRY", dict(students._REGISTRY))
    exec(compile(block, "README.md", "exec"), module.__dict__)
    net = students.create_student("tiny", width=8)
    x = torch.rand(1, 3, 6, 10)
    assert net(x).shape == x.shape and students.student_module("tiny") == "my_students"
