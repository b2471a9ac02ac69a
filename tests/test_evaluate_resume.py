"""`sharpen evaluate --out` journals each image's scores as it is scored: a killed run (SIGKILL,
out of memory, power loss) loses none of them, and the same command scores only what is
missing; a changed model file, image or option scores again what it changes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from distill.images import write_image

ROOT = Path(__file__).resolve().parents[1]
JOURNAL = ".sharpen-evaluate.journal.jsonl"


def _pairs(root: Path, n: int, side: int = 96) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        y = rng.random((side, side, 3)).astype(np.float32)
        x = (y + np.roll(y, 1, 1) + np.roll(y, 2, 1)) / 3
        write_image(root / "sharp" / f"im{i:03d}.png", y)
        write_image(root / "blur" / f"im{i:03d}.png", x)
    return root


def _student(path: Path, seed: int = 0) -> Path:
    import torch

    from distill.checkpoint import atomic_save, make_checkpoint
    from distill.students import create_student
    torch.manual_seed(seed)
    st = create_student("fast", width=8)
    atomic_save(make_checkpoint(st, kind="student", arch="fast", arch_args=st.arch_args), path)
    return path


def _cmd(weights: Path, data: Path, out: Path, *more: str) -> list[str]:
    return ["evaluate", "--weights", str(weights), "--data", str(data), "--out", str(out),
            "--threads", "1", "--quiet", "--figure-images", "2", *more]


def _results(out: Path) -> dict:
    res = json.loads((out / "metrics.json").read_text())
    res.pop("environment")
    return res


def _pixels(path: Path) -> np.ndarray:
    import cv2
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def _journaled(out: Path) -> int:
    """Images recorded: in the journal, and in the record it is folded into as it grows."""
    names = set()
    try:
        names |= set(json.loads((out / ".sharpen-evaluate.json").read_text())["done"])
    except (OSError, ValueError, KeyError):
        pass
    try:
        lines = (out / JOURNAL).read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            names.add(json.loads(line)["name"])
        except (ValueError, KeyError):
            pass   # a line being written
    return len(names)


def test_a_killed_evaluate_resumes_where_it_stopped_and_equals_an_uninterrupted_run(
        tmp_path, capsys):
    """SIGKILLed once its journal holds an image, the same command scores only the images
    left and writes the metrics, per-image table and figure an uninterrupted run writes."""
    from sharpen.cli import main
    data = _pairs(tmp_path / "pairs", 60)
    weights = _student(tmp_path / "s.pt")
    whole = tmp_path / "whole"
    assert main(_cmd(weights, data, whole)) == 0
    capsys.readouterr()

    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "sharpen", *_cmd(weights, data, out)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _journaled(out) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    done = _journaled(out)
    assert 1 <= done < 60 and not (out / "metrics.json").exists()

    assert main(_cmd(weights, data, out)) == 0
    err = capsys.readouterr().err
    assert f"evaluate: {done} scored earlier, {60 - done} to go" in err
    assert _results(out) == _results(whole)
    assert (out / "per_image.csv").read_bytes() == (whole / "per_image.csv").read_bytes()
    assert np.array_equal(_pixels(out / "side_by_side.png"), _pixels(whole / "side_by_side.png"))


def test_a_rerun_scores_again_what_a_changed_model_image_or_option_changes(tmp_path, capsys,
                                                                          monkeypatch):
    from sharpen.cli import main
    data = _pairs(tmp_path / "pairs", 4, side=48)
    weights = _student(tmp_path / "s.pt")
    out = tmp_path / "eval"
    assert main(_cmd(weights, data, out)) == 0
    first, figure = _results(out), _pixels(out / "side_by_side.png")
    capsys.readouterr()

    assert main(_cmd(weights, data, out)) == 0   # nothing to do but report
    assert "evaluate: 4 scored earlier, 0 to go" in capsys.readouterr().err
    assert _results(out) == first
    # The figure's images, all scored earlier, had their outputs made again for it.
    assert np.array_equal(_pixels(out / "side_by_side.png"), figure)

    # One image replaced: that one is scored again, the others are not.
    y = np.random.default_rng(9).random((48, 48, 3)).astype(np.float32)
    write_image(data / "blur" / "im002.png", y)
    assert main(_cmd(weights, data, out)) == 0
    err = capsys.readouterr().err
    assert "evaluate: 3 scored earlier, 1 to go" in err
    assert "1 image changed since it was scored" in err
    res = _results(out)
    assert res["per_image"]["im002"] != first["per_image"]["im002"]
    assert res["per_image"]["im001"] == first["per_image"]["im001"]

    # Other data of the same names into the same --out: scored, not said to have changed.
    import shutil
    shutil.copytree(data, tmp_path / "copy")
    assert main(_cmd(weights, tmp_path / "copy", out)) == 0
    err = capsys.readouterr().err
    assert "0 scored earlier, 4 to go" in err and "changed" not in err, err
    assert main(_cmd(weights, data, out)) == 0
    capsys.readouterr()

    # An option that changes every score: said, and everything scored again.
    assert main(_cmd(weights, data, out, "--crop", "32")) == 0
    err = capsys.readouterr().err
    assert "--crop 32 (was 0)" in err and "0 scored earlier, 4 to go" in err
    # So does the thread count the engines run with (it changes outputs' last digits):
    # --threads, or else OMP_NUM_THREADS's, whichever gave it.
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    cmd = _cmd(weights, data, out, "--crop", "32")
    cmd[cmd.index("--threads") + 1] = "0"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert main(cmd) == 0
    assert "4 scored earlier, 0 to go" in capsys.readouterr().err
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert main(cmd) == 0
    err = capsys.readouterr().err
    assert "threads 2 (was 1)" in err and "0 scored earlier, 4 to go" in err
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

    # The model's file changed (retrained into the same path): named, everything again.
    _student(weights, seed=1)
    assert main(_cmd(weights, data, out, "--crop", "32")) == 0
    err = capsys.readouterr().err
    assert f"{weights} changed" in err and "0 scored earlier, 4 to go" in err


def test_evaluate_from_python_keeps_only_the_figures_outputs_by_default(tmp_path):
    """`evaluate()` kept every image's outputs (25 MB a 1080p image and model): an hour of a
    clip's frames ran out of memory."""
    from distill.evaluate import FIGURE_IMAGES, evaluate
    data = _pairs(tmp_path / "pairs", FIGURE_IMAGES + 3, side=32)
    res = evaluate([str(_student(tmp_path / "s.pt"))], str(data), progress=False)
    assert res["images"] == FIGURE_IMAGES + 3
    assert len(res["outputs"]) == FIGURE_IMAGES
    assert len(evaluate([str(tmp_path / "s.pt")], str(data), progress=False,
                        keep_outputs=None)["outputs"]) == FIGURE_IMAGES + 3


def test_ctrl_c_while_the_figures_outputs_are_made_again_keeps_the_scores(tmp_path):
    """Every image scored earlier, a Ctrl-C while the figure's images go through the models
    again (minutes with a teacher on a CPU) ended the run with no results at all."""
    from distill.evaluate import evaluate_fns
    from distill.evaluate_journal import ScoreJournal
    data = _pairs(tmp_path / "pairs", 3, side=32)
    settings = {"models": {"m": ["m", 0, 0]}, "options": {}}

    def run(fn):
        return evaluate_fns({"m": fn}, str(data), progress=False, keep_outputs=2,
                            journal=ScoreJournal(tmp_path / "out", settings))

    (tmp_path / "out").mkdir()
    first = run(lambda x: x * 0.5)

    def stopped(x):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as e:
        run(stopped)
    res = e.value.results
    assert res["interrupted"] and res["images"] == 3 and res["outputs"] == {}
    assert res["per_image"] == first["per_image"]


def test_a_record_that_cannot_be_written_is_warned_of_and_the_run_goes_on(tmp_path):
    """The record is the run's insurance, not its result: a full disk or an unwritable
    journal is one warning, and every image is still scored and reported."""
    from distill.evaluate import evaluate_fns
    from distill.evaluate_journal import ScoreJournal
    from runtime import SharpenWarning
    data = _pairs(tmp_path / "pairs", 3, side=32)
    out = tmp_path / "out"
    (out / JOURNAL).mkdir(parents=True)   # appending to it fails (IsADirectoryError)
    journal = ScoreJournal(out, {"models": {"m": ["m", 0, 0]}, "options": {}})
    with pytest.warns(SharpenWarning, match="could not record") as said:
        res = evaluate_fns({"m": lambda x: x}, str(data), progress=False, journal=journal)
    assert res["images"] == 3 and not res["interrupted"]
    assert sum("could not record" in str(w.message) for w in said) == 1


def test_a_second_evaluate_into_one_out_is_refused_naming_the_first(tmp_path, capsys):
    """Two `evaluate --out` into one folder at once had no lock: the first to compact its
    record removed the journal the other was appending to, and each wrote the other's
    metrics.json. The second is refused before it scores or writes anything, naming the
    first's process; a lock file a killed run left refuses nothing."""
    from distill.run_lock import run_lock
    from sharpen.cli import main
    data = _pairs(tmp_path / "pairs", 2, side=32)
    weights = _student(tmp_path / "s.pt")
    out = tmp_path / "eval"
    out.mkdir()
    (out / JOURNAL).write_text('\n{"name": "im000"}')   # the first run's, mid-run
    with run_lock(out, doing="evaluating", flag="--out", name=".sharpen-evaluate.lock"):
        assert main(_cmd(weights, data, out)) == 2
    err = capsys.readouterr().err
    assert (f"another run is evaluating into {out} (process {os.getpid()}); wait for it to "
            "finish or stop it, or give this run another --out") in err, err
    assert sorted(p.name for p in out.iterdir()) == [JOURNAL]
    assert (out / JOURNAL).read_text() == '\n{"name": "im000"}'
    (out / ".sharpen-evaluate.lock").write_text("999999\nrun\nevaluating")   # a killed run's
    assert main(_cmd(weights, data, out)) == 0, capsys.readouterr().err
    assert (out / "metrics.json").is_file()
    assert not (out / ".sharpen-evaluate.lock").exists()


def test_a_resume_under_new_settings_over_an_older_record_does_not_say_it_starts_over(
        tmp_path, capsys):
    """A complete run's record, then a run with another --crop killed part way: its rerun
    said 'the scores recorded are of other settings: every image is scored again' and then
    took the scores its own killed run had journaled ('2 scored earlier')."""
    from sharpen.cli import main
    data = _pairs(tmp_path / "pairs", 4, side=48)
    weights = _student(tmp_path / "s.pt")
    out = tmp_path / "eval"
    assert main(_cmd(weights, data, out)) == 0   # the record: --crop 0, complete
    capsys.readouterr()
    assert main(_cmd(weights, data, out, "--crop", "32")) == 0
    capsys.readouterr()
    # As the --crop 32 run was when killed after 2 images: the --crop 0 record, its journal.
    record = json.loads((out / ".sharpen-evaluate.json").read_text())
    lines = [json.dumps({"name": n, **v, "settings": record["settings"]})
             for n, v in list(record["done"].items())[:2]]
    (out / ".sharpen-evaluate.json").unlink()
    assert main(_cmd(weights, data, out)) == 0
    capsys.readouterr()
    (out / JOURNAL).write_text("\n" + "\n".join(lines))
    assert main(_cmd(weights, data, out, "--crop", "32")) == 0
    err = capsys.readouterr().err
    assert "2 scored earlier, 2 to go" in err, err
    assert "every image is scored again" not in err, err


def _scored_once(tmp_path, images: int) -> tuple:
    """(weights, data, out, the record it left): a student evaluated once into out."""
    from sharpen.cli import main
    data = _pairs(tmp_path / "pairs", images, side=32)
    weights = _student(tmp_path / "s.pt")
    out = tmp_path / "eval"
    assert main(_cmd(weights, data, out)) == 0
    return weights, data, out, json.loads((out / ".sharpen-evaluate.json").read_text())


def test_scores_recorded_by_other_code_are_scored_again_naming_it(tmp_path, capsys):
    """The record held no word of the code that scored it: after an upgrade (a metric's
    definition changed, a bug fixed) the rerun into the same --out took every score of the
    old code and reported them as the new one's ('4 scored earlier, 0 to go')."""
    from runtime.host import code_info
    from sharpen.cli import main
    weights, data, out, record = _scored_once(tmp_path, 4)
    capsys.readouterr()
    version = code_info()["version"]
    assert record["settings"]["options"]["sharpen"] == version
    record["settings"]["options"]["sharpen"] = "0.0.1"   # as an older release wrote it
    (out / ".sharpen-evaluate.json").write_text(json.dumps(record))
    assert main(_cmd(weights, data, out)) == 0
    err = capsys.readouterr().err
    assert f"sharpen {version} (was 0.0.1)" in err and "0 scored earlier, 4 to go" in err, err
    assert main(_cmd(weights, data, out)) == 0
    assert "4 scored earlier, 0 to go" in capsys.readouterr().err


def test_an_option_the_record_predates_is_said_so_not_none(tmp_path, capsys):
    """A record written before an option existed (--ssim) was rescored saying '--ssim 2d (was
    None)', as if the old scores had had no SSIM: it says the record has no word of it."""
    from sharpen.cli import main
    weights, data, out, record = _scored_once(tmp_path, 2)
    capsys.readouterr()
    del record["settings"]["options"]["--ssim"]   # as the release before --ssim wrote it
    (out / ".sharpen-evaluate.json").write_text(json.dumps(record))
    assert main(_cmd(weights, data, out)) == 0
    err = capsys.readouterr().err
    assert "(--ssim 2d, which the record predates): every image is scored again" in err, err
