"""The training engine: over-fitting, resume equivalence, DDP equivalence, loss weights."""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from distill.checkpoint import load_student, read_checkpoint
from distill.config import LossConfig, load_config, save_config
from distill.losses import combined_loss, ssim_torch
from distill.trainer import MAX_BAD_STEPS, Trainer, TrainingDiverged, train
from holder_fixtures import RUN_LOCK_HOLDER, held_elsewhere
from runtime import SharpenWarning
from runtime_fixtures import runtime_warnings
from strace_check import assert_durable_write
from torchrun_fixtures import torchrun


@pytest.fixture(autouse=True, scope="module")
def _embedded_images_made_once():
    """The embedded set's sharp images (photos and dead-leaves drawings: about a second) are
    made once for this module's many short trainings on it, not once per run; each run gets
    copies of its own. tests/test_blur.py tests the images themselves."""
    from distill.data import embedded
    made, make = {}, embedded.sharp_images

    def sharp_images(split: str, n_dead_leaves: int = 24):
        if (split, n_dead_leaves) not in made:
            made[split, n_dead_leaves] = make(split, n_dead_leaves)
        return [(name, img.copy()) for name, img in made[split, n_dead_leaves]]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(embedded, "sharp_images", sharp_images)
        yield


def tiny_cfg(out, steps, **extra):
    ov = [f"out={out}", "task=teacher", "model.arch=fast", "model.args={width: 8, blocks: 1, "
          "low_blocks: 1}", f"optim.steps={steps}",
          # below optim.steps, or the run warns that it never leaves its warmup
          f"optim.warmup_steps={2 if steps > 2 else 1}", "data.crop=32",
          "data.batch_size=2", "data.workers=0", "val_every=1000", "ckpt_every=1000",
          "data.val_max_images=1", "data.val_max_side=64", "log_every=1"]
    ov += [f"{k}={v}" for k, v in extra.items()]
    return load_config(None, ov)


def test_resume_equals_uninterrupted(tmp_path):
    train(tiny_cfg(tmp_path / "a", 6), quiet=True)
    train(tiny_cfg(tmp_path / "b", 6, stop_after=3), quiet=True)   # interrupted at step 3
    ck = read_checkpoint(tmp_path / "b" / "last.pt")
    assert ck["step"] == 3 and "optimizer" in ck and "rng" in ck
    train(tiny_cfg(tmp_path / "b", 6), quiet=True)                 # same command: resumes
    a = read_checkpoint(tmp_path / "a" / "last.pt")
    b = read_checkpoint(tmp_path / "b" / "last.pt")
    assert b["step"] == a["step"] == 6
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-6), k
        assert torch.allclose(a["ema"][k], b["ema"][k], atol=1e-6), k


def test_a_step_budget_that_ends_at_the_last_step_finishes_the_run(tmp_path):
    """The same stop_after=3 command run twice over 6 steps reaches step 6 on the second: the
    console said 'done', yet train.log ended 'stopped at step 6 (time or step budget
    reached)' and `sharpen runs` showed the finished run as 'stopped (budget)  6/6'."""
    from distill.runs_compare import read_run
    train(tiny_cfg(tmp_path / "b", 6, stop_after=3), quiet=True)
    train(tiny_cfg(tmp_path / "b", 6, stop_after=3), quiet=True)
    log = (tmp_path / "b" / "train.log").read_text().splitlines()
    assert "finished at step 6" in log[-1], log[-1]
    assert read_run(tmp_path / "b").state == "finished"


def test_a_resume_says_what_it_restored_so_the_run_goes_on_exactly(tmp_path, capsys):
    """"resumed from last.pt at step 3" left the user to wonder whether the learning rate,
    the EMA and the data order went on, or started over as in many trainers."""
    train(tiny_cfg(tmp_path / "b", 6, stop_after=3), quiet=True)
    lr = read_checkpoint(tmp_path / "b" / "last.pt")["optimizer"]["param_groups"][0]["lr"]
    capsys.readouterr()
    train(tiny_cfg(tmp_path / "b", 6))
    err = capsys.readouterr().err
    assert (f"resumed from {tmp_path / 'b' / 'last.pt'} at step 3: weights, EMA, optimizer, "
            f"learning rate ({lr:.2e}) and random state (crops and their order) restored") \
        in err, err


def test_a_resume_with_another_optim_lr_says_the_rate_in_effect_and_where_it_came_from(
        tmp_path, capsys):
    """A finished run rerun with another optim.lr printed 'learning rate (1.00e-05) ...
    restored': the new setting's rate, as though the checkpoint had brought it back."""
    from distill.trainer import lr_lambda
    train(tiny_cfg(tmp_path / "b", 6, stop_after=3), quiet=True)
    saved = read_checkpoint(tmp_path / "b" / "last.pt")["optimizer"]["param_groups"][0]["lr"]
    capsys.readouterr()
    cfg = tiny_cfg(tmp_path / "b", 6, **{"optim.lr": 1e-5})
    with pytest.warns(SharpenWarning, match="optim.lr: 0.001 -> 1e-05"):
        train(cfg, quiet=False)
    err = capsys.readouterr().err
    now = 1e-5 * lr_lambda(cfg)(3)
    assert (f"at step 3: weights, EMA, optimizer and random state (crops and their order) "
            f"restored; learning rate {now:.2e} from optim.lr 1e-05 as set now at step 3 of "
            f"its schedule (the checkpoint's was {saved:.2e})") in err, err


def _without_timings(path: Path) -> list[dict]:
    """metrics.jsonl's records less the seconds they took, which no two runs share."""
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    for r in recs:
        for k in ("time", "s_per_step", "data_s_per_step", "val_s"):
            r.pop(k, None)
    return recs


def test_two_runs_of_one_seed_are_identical_and_record_the_software_that_made_them(
        tmp_path, capsys, one_thread):
    """A colleague's run reproduced: the same seed and thread count give the same
    metrics.jsonl and weights, bit for bit; its checkpoints and train.log name the code,
    library versions, thread count and device it ran with (no run recorded any of them)."""
    from runtime.host import library_versions
    for name in ("a", "b"):
        train(tiny_cfg(tmp_path / name, 4, **{"data.workers": 1}), quiet=True)
    a, b = (read_checkpoint(tmp_path / n / "last.pt") for n in ("a", "b"))
    assert _without_timings(tmp_path / "a" / "metrics.jsonl") == _without_timings(
        tmp_path / "b" / "metrics.jsonl")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]) and torch.equal(a["ema"][k],
                                                                         b["ema"][k]), k
    env = read_checkpoint(tmp_path / "a" / "best.pt")["environment"]   # slim ones too
    assert env == a["environment"]
    assert env["torch"] == library_versions(["torch"])["torch"] and env["torch_threads"] == 1
    assert env["device"] == "cpu" and env["numpy"] and env["python"] and "sharpen" in env
    log = (tmp_path / "a" / "train.log").read_text()
    assert f"software: sharpen {env['sharpen']}" in log and f"torch {env['torch']}" in log, log
    assert "1 torch thread, cpu" in log, log
    # `sharpen models` of a colleague's best.pt says what it was trained with.
    from sharpen.cli import main
    best = tmp_path / "a" / "best.pt"
    assert main(["models", str(best), "--quiet"]) == 0
    said = capsys.readouterr().out
    assert f"{best}: trained with sharpen {env['sharpen']}" in said and "1 torch thread" in said


def test_a_resume_under_other_software_or_threads_says_what_differs(tmp_path, one_thread):
    """Resumed under another thread count (or torch, numpy...), a run goes on but no longer
    matches an uninterrupted one: nothing said so."""
    train(tiny_cfg(tmp_path / "r", 4, stop_after=2), quiet=True)
    torch.set_num_threads(2)
    with pytest.warns(SharpenWarning, match=r"resuming .*last\.pt \(step 2\), saved with other "
                      r"software or settings: torch threads 1 -> 2; .*differ slightly"):
        train(tiny_cfg(tmp_path / "r", 4), quiet=True)
    assert "torch threads 1 -> 2" in (tmp_path / "r" / "train.log").read_text()
    # An older version's checkpoint records nothing: not called different.
    torch.set_num_threads(1)
    ck = read_checkpoint(tmp_path / "r" / "last.pt")
    del ck["environment"]
    torch.save(ck, tmp_path / "r" / "last.pt")
    with runtime_warnings() as caught:
        train(tiny_cfg(tmp_path / "r", 5), quiet=True)
    assert not [w for w in caught if "saved with other software" in w], caught


def test_what_a_run_recorded_or_ran_on_is_said_in_words_not_as_none():
    """A run copied from a git checkout to a tarball's project, a library installed since, or an
    Apple GPU: the warning said `commit 26c08ca1b2c3 -> None`, and an mps run recorded cpu."""
    from distill.provenance import describe, environment_changes, run_environment
    then = {"sharpen": "0.1.0", "code": "26c08ca1b2c3", "opencv": None, "torch_threads": 2}
    now = {"sharpen": None, "opencv": "4.10.0", "torch_threads": 2}
    assert environment_changes(then, now) == [
        "sharpen 0.1.0 -> unknown", "commit 26c08ca1b2c3 -> unknown (no git commit here)",
        "opencv not installed -> 4.10.0"]
    assert describe(now) == "sharpen unknown, opencv 4.10.0, 2 torch threads"
    # What a reproduction's note can claim of the code: uncommitted changes are not compared.
    from distill.provenance import same_code
    assert same_code({"sharpen": "0.1.0", "code": "26c08ca1b2c3"}) == "same code"
    assert same_code({"sharpen": "0.1.0", "code": "26c08ca1b2c3+changes"}) == (
        "the same commit (26c08ca1b2c3), both with uncommitted changes that are not compared")
    assert same_code({"sharpen": "0.1.0"}) == "the same version (sharpen 0.1.0; no commit " \
                                               "recorded)"
    assert run_environment("mps")["device"] == "mps"   # its type alone: no GPU needed here
    assert run_environment(torch.device("cpu"))["device"] == "cpu"


def test_a_runs_config_rerun_into_a_new_folder_is_compared_with_that_run(tmp_path, capsys,
                                                                         one_thread):
    """`sharpen train --config RUN/config.yaml out=NEW` reproduces a colleague's run: where
    this machine's thread count or versions differ from the run's, its numbers will too, and
    the user learns it before the first step; where they agree, that they should match."""
    from sharpen.cli import main
    run = tmp_path / "colleague"
    train(tiny_cfg(run, 2), quiet=True)
    assert main(["train", "--config", str(run / "config.yaml"), f"out={tmp_path / 'same'}",
                 "--threads", "1"]) == 0
    err = capsys.readouterr().err
    # "same code" in a clean checkout; a tree with uncommitted changes is not called the same
    from distill.provenance import same_code
    code = same_code(read_checkpoint(run / "last.pt")["environment"])
    assert f"{code}, library versions, torch threads, device, training and validation images " \
           f"as the run in {run} (last.pt): its metrics.jsonl" in err, err
    assert main(["train", "--config", str(run / "config.yaml"), f"out={tmp_path / 'two'}",
                 "--threads", "2", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert (f"reads the settings of the run in {run}" in err and "torch threads 1 -> 2" in err
            and "numbers can differ" in err), err
    assert "torch threads 1 -> 2" in (tmp_path / "two" / "train.log").read_text()
    assert _without_timings(tmp_path / "same" / "metrics.jsonl") == _without_timings(
        run / "metrics.jsonl")
    # Another torch, more training images and other validation images: each named.
    ck = read_checkpoint(run / "last.pt")
    torch_here, n_train = ck["environment"]["torch"], ck["data"]["train"]
    ck["environment"]["torch"] = "2.0.1"
    ck["data"]["train"] = n_train + 5
    torch.save(ck, run / "last.pt")
    assert main(["train", "--config", str(run / "config.yaml"), f"out={tmp_path / 'other'}",
                 "--threads", "1", "data.val_max_images=2", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert (f"torch 2.0.1 -> {torch_here}; training images: {n_train + 5} -> {n_train}; "
            "validation images: 1 -> 2" in err), err
    # A colleague's pip-installed project records no commit: the same code is not known.
    ck["environment"]["torch"], ck["data"]["train"] = torch_here, n_train
    del ck["environment"]["code"]
    torch.save(ck, run / "last.pt")
    assert main(["train", "--config", str(run / "config.yaml"), f"out={tmp_path / 'pip'}",
                 "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert (f"note: the same version (sharpen {ck['environment']['sharpen']}; no commit "
            "recorded), library versions, torch threads" in err and "same code" not in err), err


def test_snapshots_are_kept_every_n_steps_and_survive_a_resume(tmp_path):
    """snapshot_every=N keeps stepN.pt (BasicSR's save_checkpoint_freq; only last.pt and
    best.pt were kept): slim weights that evaluate's loader and init= take, written once each,
    the same set whether the run was interrupted and resumed or not."""
    train(tiny_cfg(tmp_path / "a", 6, snapshot_every=2), quiet=True)
    a = tmp_path / "a"
    assert sorted(p.name for p in a.glob("step*.pt")) == ["step2.pt", "step4.pt", "step6.pt"]
    last = read_checkpoint(a / "last.pt")
    for n in (2, 4, 6):
        model, ck = load_student(a / f"step{n}.pt")   # as `sharpen evaluate --weights` loads
        assert ck["step"] == n and ck["ema"] is None and "optimizer" not in ck
        assert (a / f"step{n}.pt").stat().st_size < (a / "last.pt").stat().st_size / 2
    for k, v in last["ema"].items():   # the EMA weights, as slim_checkpoint keeps them
        assert torch.equal(ck["model"][k], v), k

    b = tmp_path / "b"
    train(tiny_cfg(b, 6, snapshot_every=2, stop_after=3), quiet=True)   # interrupted at 3
    assert sorted(p.name for p in b.glob("step*.pt")) == ["step2.pt"]
    step2 = (b / "step2.pt").stat()
    train(tiny_cfg(b, 6, snapshot_every=2), quiet=True)                 # resumed
    assert sorted(p.name for p in b.glob("step*.pt")) == ["step2.pt", "step4.pt", "step6.pt"]
    assert (b / "step2.pt").stat().st_mtime_ns == step2.st_mtime_ns     # not written again
    for n in (2, 4, 6):
        x, y = read_checkpoint(a / f"step{n}.pt"), read_checkpoint(b / f"step{n}.pt")
        for k in x["model"]:
            assert torch.allclose(x["model"][k], y["model"][k], atol=1e-6), (n, k)

    # a fine-tune starts from one
    train(tiny_cfg(tmp_path / "c", 1, init=a / "step4.pt"), quiet=True)


def test_keep_snapshots_bounds_them_and_a_fresh_start_replaces_them(tmp_path, capsys):
    out = tmp_path / "r"
    train(tiny_cfg(out, 5, snapshot_every=1, keep_snapshots=2), quiet=True)
    assert sorted(p.name for p in out.glob("step*.pt")) == ["step4.pt", "step5.pt"]
    for name in ("last.pt", "best.pt"):
        (out / name).unlink()   # to save space: the snapshots are not replaced unasked
    with pytest.raises(ValueError, match=rf"holds 2 snapshots stepN.pt but no last.pt to "
                                         rf"resume: resume={out / 'step5.pt'} goes on"):
        train(tiny_cfg(out, 5, snapshot_every=1, keep_snapshots=2), quiet=True)
    assert sorted(p.name for p in out.glob("step*.pt")) == ["step4.pt", "step5.pt"]
    (out / "step10.txt").write_text("not a snapshot")   # only stepN.pt are the run's
    # resume=never: the run before is replaced, its snapshots too (kept, they would be
    # replaced one by one by the new run's, two runs' weights under one naming)
    train(tiny_cfg(out, 2, resume="never"))
    err = capsys.readouterr().err
    assert ("replaced (metrics.jsonl, train.log, 2 snapshots stepN.pt, 1 validation picture)"
            in err), err
    assert sorted(p.name for p in out.glob("step*")) == ["step10.txt"]
    with pytest.raises(ValueError, match=r"snapshot_every must be >= 0 \(0: no snapshots\), "
                                         "got -1"):
        train(tiny_cfg(tmp_path / "x", 2, snapshot_every=-1), quiet=True)


def test_keep_snapshots_without_snapshot_every_is_warned_of():
    """keep_snapshots=K alone kept nothing (no snapshot is taken) and said nothing."""
    from distill.config import check_config
    with pytest.warns(SharpenWarning, match=r"keep_snapshots=3 does nothing without "
                                            r"snapshot_every"):
        check_config(tiny_cfg("runs/x", 2, keep_snapshots=3))


@pytest.mark.filterwarnings(   # step6.pt's run had 6 steps; this one goes on to 7 on purpose
    "ignore:resuming .* with settings of its own changed:runtime.warn.SharpenWarning")
def test_a_snapshot_resumes_and_a_resume_further_back_keeps_its_own_snapshots(tmp_path):
    """resume= takes a stepN.pt as the README says (its EMA weights are the model: ema=None
    crashed load_state_dict with a TypeError). Gone back to an earlier checkpoint in the same
    folder, keep_snapshots bounds the snapshots up to this run's step: the later ones of the
    run before counted as newer, and each new stepN.pt was deleted as soon as written. Those
    are now set aside (abandoned-at-stepN/), out of the new history's way."""
    out = tmp_path / "r"
    train(tiny_cfg(out, 6, stop_after=2), quiet=True)
    shutil.copy(out / "last.pt", tmp_path / "early.pt")            # step 2, a full checkpoint
    train(tiny_cfg(out, 6, snapshot_every=1, keep_snapshots=2), quiet=True)
    assert sorted(p.name for p in out.glob("step*.pt")) == ["step5.pt", "step6.pt"]
    with pytest.warns(SharpenWarning, match="holds weights only"):
        train(tiny_cfg(tmp_path / "b", 7, resume=out / "step6.pt"), quiet=True)
    assert read_checkpoint(tmp_path / "b" / "last.pt")["step"] == 7

    with runtime_warnings() as said:   # the later history's step5.pt, step6.pt set aside
        train(tiny_cfg(out, 6, snapshot_every=1, keep_snapshots=2,
                       resume=tmp_path / "early.pt", stop_after=2), quiet=True)  # 3 and 4 again
    assert [m for m in said if "step5.pt, step6.pt, last.pt" in m], said
    assert sorted(p.name for p in out.glob("step*.pt")) == [
        "step3.pt", "step4.pt"], "this run's own were deleted"
    assert sorted(p.name for p in (out / "abandoned-at-step2").iterdir()) == [
        "last.pt", "metrics.jsonl", "step5.pt", "step6.pt", "visualization"]
    assert read_checkpoint(out / "step4.pt")["step"] == 4


def test_signal_stop_then_resume(tmp_path):
    """max_minutes acts like an interruption: state is saved and the same command continues."""
    cfg = tiny_cfg(tmp_path / "r", 4, max_minutes=1e-9)
    train(cfg, quiet=True)
    assert read_checkpoint(tmp_path / "r" / "last.pt")["step"] == 1
    train(tiny_cfg(tmp_path / "r", 4), quiet=True)
    assert read_checkpoint(tmp_path / "r" / "last.pt")["step"] == 4
    assert (tmp_path / "r" / "config.yaml").exists()
    assert (tmp_path / "r" / "metrics.jsonl").read_text().count('"loss"') >= 4
    assert (tmp_path / "r" / "curves.png").stat().st_size > 1000


@pytest.mark.filterwarnings(   # the test resumes with other optim.steps on purpose
    "ignore:resuming .* with settings of its own changed:runtime.warn.SharpenWarning")
@pytest.mark.parametrize("signals, validated", [
    (("SIGINT",), True),               # Ctrl-C during a validation waits for it
    (("SIGINT", "SIGINT"), False),     # a second Ctrl-C skips it
    (("SIGTERM",), False),             # SIGKILL follows SIGTERM: no waiting
])
def test_a_signal_during_validation_saves_at_that_step(tmp_path, monkeypatch, capsys, signals,
                                                        validated):
    import os
    import signal

    import distill.trainer as trainer_mod
    from distill.trainer import TrainingInterrupted

    real = trainer_mod.evaluate

    def interrupted(*args, **kwargs):
        for name in signals:
            os.kill(os.getpid(), getattr(signal, name))
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_mod, "evaluate", interrupted)
    out = tmp_path / "r"
    with pytest.raises(TrainingInterrupted) as stopped:
        train(tiny_cfg(out, 10, val_every=3), quiet=True)
    assert stopped.value.signum == getattr(signal, signals[0])
    said = {"SIGINT": "Ctrl-C (SIGINT)", "SIGTERM": "SIGTERM"}[signals[0]]
    assert str(stopped.value).startswith(f"interrupted by {said} at step 3;"), str(stopped.value)
    assert read_checkpoint(out / "last.pt")["step"] == 3
    if signals == ("SIGINT",):
        assert "Ctrl-C again to skip it" in capsys.readouterr().err
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "val" in r] == ([3] if validated else [])
    monkeypatch.setattr(trainer_mod, "evaluate", real)
    train(tiny_cfg(out, 4, val_every=3), quiet=True)   # resumes from step 3
    assert read_checkpoint(out / "last.pt")["step"] == 4


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_a_signal_just_after_the_agreement_to_go_on_skips_that_step_s_validation(
        tmp_path, monkeypatch, name):
    """A signal the handler took once the step's agreement had said "go on" (under DDP most
    often on rank 0 while it waited in that all-reduce; torchrun's SIGHUP kills the ranks 30 s
    later) stops at the next agreement, after this step's validation: that validation ran in
    full, whole images for minutes, as if no signal had come, where a signal saves at once."""
    import os
    import signal

    import distill.trainer as trainer_mod
    from distill.trainer import TrainingInterrupted

    agree = trainer_mod.Trainer._agree_to_stop

    def agree_then_signal(self, *args):
        agreed = agree(self, *args)
        if self.step == 3 and not self._stop:
            os.kill(os.getpid(), getattr(signal, name))
        return agreed

    monkeypatch.setattr(trainer_mod.Trainer, "_agree_to_stop", agree_then_signal)
    out = tmp_path / "r"
    with pytest.raises(TrainingInterrupted) as stopped:
        train(tiny_cfg(out, 10, val_every=3), quiet=True)
    assert stopped.value.signum == getattr(signal, name)
    assert " at step 3;" in str(stopped.value), str(stopped.value)
    assert read_checkpoint(out / "last.pt")["step"] == 3
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "val" in r] == []


def test_a_stop_says_how_to_go_on_when_the_same_command_would_not(tmp_path, monkeypatch,
                                                                  capsys):
    """"Run the same command" after a stop started a resume=never run over from step 0, and
    sent a resume=CKPT run back to CKPT, each replacing the steps just saved."""
    import os
    import signal

    import distill.trainer as trainer_mod
    from distill.trainer import TrainingInterrupted

    a, b = tmp_path / "a", tmp_path / "b"
    train(tiny_cfg(a, 8, resume="never", stop_after=2))
    err = capsys.readouterr().err
    assert "stopped at step 2 of 8" in err and \
        "to resume, run it with resume=auto (resume=never would start over)" in err, err
    train(tiny_cfg(a, 8, stop_after=1))   # the advice works: resumed at step 2
    assert read_checkpoint(a / "last.pt")["step"] == 3
    assert "run the same command to resume" in capsys.readouterr().err

    real = trainer_mod.Trainer._train_step

    def interrupted(self, batch):
        if self.step in (4, 6):
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, batch)

    monkeypatch.setattr(trainer_mod.Trainer, "_train_step", interrupted)
    with pytest.raises(TrainingInterrupted) as stopped:   # branched off a's step 3 into b
        train(tiny_cfg(b, 8, resume=str(a / "last.pt")), quiet=True)
    assert read_checkpoint(b / "last.pt")["step"] == 5
    assert f"resume=auto (resume={a / 'last.pt'} would go back to {a / 'last.pt'})" in \
        str(stopped.value)
    with pytest.raises(TrainingInterrupted) as stopped:
        train(tiny_cfg(b, 8), quiet=True)
    assert str(stopped.value).endswith("run the same command to resume")


def test_resume_says_what_changed_a_finished_run_trains_nothing_and_never_starts_over(
        tmp_path, capsys):
    out = tmp_path / "r"
    train(tiny_cfg(out, 6, stop_after=3), quiet=True)
    capsys.readouterr()
    with runtime_warnings() as said:
        train(tiny_cfg(out, 6, stop_after=1, **{"optim.lr": 1e-4}))
    err = capsys.readouterr().err
    assert [m for m in said if "with settings of its own changed: optim.lr: 0.001 -> 0.0001"
            in m and "stop_after:" not in m], said   # steering one invocation is no change
    assert "stopped at step 4 of 6 (time or step budget reached)" in err
    kept = yaml.safe_load((out / "config-step3.yaml").read_text())
    assert kept["optim"]["lr"] == 1e-3
    train(tiny_cfg(out, 6, **{"optim.lr": 1e-4}), quiet=True)
    recs = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    times = [r["time"] for r in recs if "time" in r]
    assert len(times) == 6 and times == sorted(times), times   # the clock goes on over resumes
    before = (out / "last.pt").read_bytes(), (out / "config.yaml").read_text()
    (out / "curves.png").unlink()   # as a kill between the last checkpoint and the plot
    with pytest.warns(SharpenWarning, match="already at step 6 of optim.steps=6: nothing to "
                                            "train"):
        train(tiny_cfg(out, 6, **{"optim.lr": 1e-4}), quiet=True)
    assert (out / "curves.png").is_file()
    assert ((out / "last.pt").read_bytes(), (out / "config.yaml").read_text()) == before
    train(tiny_cfg(out, 2, resume="never"))
    assert "starting over" in capsys.readouterr().err
    steps = [json.loads(ln)["step"] for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and max(steps) == 2, steps
    with pytest.raises(ValueError, match="label cache not found"):   # a run that cannot start
        train(tiny_cfg(tmp_path / "never", 2, task="student",
                       **{"data.labels": str(tmp_path / "nolabels")}), quiet=True)
    assert not (tmp_path / "never").exists()


def test_a_finished_run_rerun_with_another_setting_says_it_was_not_used(tmp_path, capsys):
    """A sweep's second command without its own out= (`optim.lr=1e-3` into the first run's
    folder) resumed the finished run, trained nothing and printed its `done:` line, the
    warning saying only "nothing to train": the new learning rate, never used, went unsaid,
    and the first run's scores read as the second's."""
    out = tmp_path / "r"
    train(tiny_cfg(out, 2), quiet=True)
    before = (out / "last.pt").read_bytes(), (out / "config.yaml").read_text()
    with runtime_warnings() as said:
        train(tiny_cfg(out, 2, **{"optim.lr": 1e-4, "stop_after": 1}), quiet=True)
    done = [m for m in said if "nothing to train" in m]
    assert done and "optim.lr: 0.001 -> 0.0001" in done[0] and "not used" in done[0], said
    assert "stop_after" not in done[0]   # steering one invocation is no setting of the run
    assert "choose another out=" in done[0], done
    assert ((out / "last.pt").read_bytes(), (out / "config.yaml").read_text()) == before
    assert not list(out.glob("config-step*.yaml"))   # nothing was trained with them to keep


def test_metrics_jsonl_marks_the_validations_that_became_best_pt(tmp_path):
    """A sweep's curves read from metrics.jsonl (pandas, a plot of one's own) could not tell
    which validation best.pt holds: train.log alone said `-> best.pt`."""
    out = tmp_path / "r"
    train(tiny_cfg(out, 4, val_every=1), quiet=True)
    vals = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
            if "val" in r]
    marked = [r["step"] for r in vals if r.get("best")]
    said = re.findall(r"validation at step (\d+) .*-> best\.pt",
                      (out / "train.log").read_text())
    assert len(vals) == 4 and marked and marked == [int(s) for s in said], (vals, said)
    assert all("best" not in r or r["best"] is True for r in vals), vals
    assert read_checkpoint(out / "best.pt")["step"] == marked[-1]
    # A branch carries a's records, not their marks: its best.pt is chosen among its own.
    with runtime_warnings():   # optim.steps: 4 -> 5, said
        train(tiny_cfg(tmp_path / "b", 5, val_every=1, resume=str(out / "last.pt")), quiet=True)
    recs = [json.loads(ln) for ln in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    # As b's train.log marks them after it resumed (the lines before are a's history).
    own = (tmp_path / "b" / "train.log").read_text().rsplit(" resumed at step ", 1)[1]
    said = [int(s) for s in re.findall(r"validation at step (\d+) .*-> best\.pt", own)]
    assert [r["step"] for r in recs if r.get("best")] == said, (recs, own)
    assert len([r for r in recs if "val" in r]) == 5, recs


def test_overfit_tiny_batch(one_thread):
    torch.manual_seed(0)
    from distill.students import create_student
    m = create_student("seed-residual")
    x = torch.rand(2, 3, 16, 16)   # (16 px overfits as 32 did, to ~0.06 of the first loss)
    y = torch.nn.functional.avg_pool2d(x, 3, 1, 1)  # a learnable mapping of this batch
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    w = LossConfig(pixel=1.0, ssim=0.0)
    first = None
    for i in range(200):
        loss, _ = combined_loss(m(x), y, None, w)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else float(loss.detach())
    assert float(loss.detach()) < first / 4


def test_zero_weights_disable_terms():
    p, t, g = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    _, parts = combined_loss(p, t, g, LossConfig(pixel=1, ssim=0, gt=0, freq=0))
    assert set(parts) == {"pixel"}
    _, parts = combined_loss(p, t, g, LossConfig(pixel=0, ssim=0.5, gt=2, freq=0.1))
    assert set(parts) == {"ssim", "gt", "freq"}
    _, parts = combined_loss(p, t, g, LossConfig(pixel=0, ssim=0, gt=0, gt_ssim=0.5))
    assert set(parts) == {"gt_ssim"}
    assert parts["gt_ssim"] == pytest.approx(0.5 * (1 - float(ssim_torch(p, g))))
    _, parts = combined_loss(p, t, None, LossConfig(pixel=0, ssim=0, gt=1, freq=0.1,
                                                     gt_ssim=1))
    assert set(parts) == {"freq"}  # no ground truth in the batch: gt term absent
    with pytest.raises(ValueError, match="zero"):
        combined_loss(p, t, g, LossConfig(0, 0, 0, 0))


def test_config_overrides_and_errors(tmp_path):
    cfg = load_config(None, ["optim.lr=3e-4", "data.crop=128", "model.args={width: 8}"])
    assert cfg.optim.lr == 3e-4 and cfg.data.crop == 128 and cfg.model.args == {"width": 8}
    with pytest.raises(KeyError, match="unknown config key"):
        load_config(None, ["optim.lrr=1"])
    with pytest.raises(ValueError, match="key=value"):
        load_config(None, ["optim.lr"])
    # A key of another section (steps=, as other trainers spell it; a flat YAML) was "unknown"
    # with the fields of the section it was looked for in, none of them it.
    for given, meant in (("steps=10", "optim.steps"), ("batch_size=2", "data.batch_size"),
                         ("optim.batch_size=2", "data.batch_size"), ("arch=fast", "model.arch"),
                         ("lr=1e-3", "optim.lr")):
        with pytest.raises(KeyError, match=f"did you mean {meant}\\?"):
            load_config(None, [given])
    (tmp_path / "flat.yaml").write_text("crop: 64\n")
    with pytest.raises(KeyError, match="unknown config key 'crop'; did you mean data.crop\\?"):
        load_config(str(tmp_path / "flat.yaml"))
    (tmp_path / "c.yaml").write_text("optim:\n  steps: 7\n")
    assert load_config(str(tmp_path / "c.yaml")).optim.steps == 7
    assert load_config(None, ["optim.steps=1e4"]).optim.steps == 10000
    for bad, kind in (("optim.lr=[1]", "a number"), ("optim.steps=1.5", "an integer"),
                      ("data.crop=true", "an integer")):
        with pytest.raises(TypeError, match=f"must be {kind}"):
            load_config(None, [bad])
    from distill.students import create_student
    with pytest.raises(ValueError, match="student 'fast' has no argument 'widht'.*width"):
        create_student("fast", widht=8)
    # {width:8} is YAML for the key "width:8" without a value: say so, not "no argument".
    with pytest.raises(TypeError, match=r"model.args: 'width:8' has no value; YAML needs a "
                       r"space after the colon: \{width: 8\}"):
        load_config(None, ["model.args={width:8,blocks: 1}"])
    (tmp_path / "glued.yaml").write_text("model:\n  args: {width:8}\n")
    with pytest.raises(TypeError, match="'width:8' has no value"):
        load_config(str(tmp_path / "glued.yaml"))


def test_a_moved_runs_own_config_names_its_out_rather_than_training_a_new_run_there(
        tmp_path, capsys):
    """A run folder copied to another machine (or moved) keeps the absolute `out` its
    config.yaml recorded: `--config RUN/config.yaml` made that missing folder and trained a new
    run in it from step 0, exit 0."""
    from sharpen.cli import main
    gpu = tmp_path / "gpu" / "runs" / "s1"
    train(tiny_cfg(gpu, 3, stop_after=2), quiet=True)
    laptop = tmp_path / "laptop" / "s1"
    laptop.parent.mkdir()
    gpu.rename(laptop)
    assert main(["train", "--config", str(laptop / "config.yaml"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert (f"its out: {gpu} does not exist here" in err and f"add out={laptop} to go on" in err
            and f"out={gpu} to start a new run there" in err), err
    assert not gpu.exists()
    assert main(["train", "--config", str(laptop / "config.yaml"), f"out={laptop}",
                 "--quiet"]) == 0
    assert read_checkpoint(laptop / "last.pt")["step"] == 3   # resumed at 2, not from 0
    # A copy beside the run: its config.yaml (out: the run) trained and changed the original.
    shutil.copytree(laptop, tmp_path / "laptop" / "s1-try")
    before = (laptop / "last.pt").read_bytes()
    assert main(["train", "--config", str(tmp_path / "laptop" / "s1-try" / "config.yaml"),
                 "optim.steps=4", "--quiet"]) == 2
    assert f"out: {laptop} is another run's folder" in capsys.readouterr().err
    assert (laptop / "last.pt").read_bytes() == before
    # A config file that is no run's (a template in configs/) keeps any out it names.
    (tmp_path / "mine.yaml").write_text(f"out: {tmp_path / 'new'}\n")
    assert load_config(str(tmp_path / "mine.yaml")).out == str(tmp_path / "new")
    # So does one of the user's own kept in a run's folder (a fine-tune beside the run it
    # starts from): it was refused as that run moved.
    (laptop / "finetune.yaml").write_text(f"out: {laptop / 'ft'}\ninit: {laptop / 'last.pt'}\n")
    assert load_config(str(laptop / "finetune.yaml")).out == str(laptop / "ft")


def test_a_checkpoint_given_as_config_without_out_trains_no_run_it_was_not_found_in(
        tmp_path, capsys):
    """--config CKPT.pt takes the `out` its run recorded, as RUN/config.yaml does, but the
    moved-or-copied guard was config.yaml's alone: the checkpoint of a copied run folder went
    on training, and changed, the original, and one handed over alone (models/student-fast.pt
    records out: runs/fast-crop256) trained in whatever folder of the user's has that name."""
    from sharpen.cli import main
    run = tmp_path / "s1"
    train(tiny_cfg(run, 3, stop_after=2), quiet=True)
    shutil.copytree(run, tmp_path / "s1-try")
    before = (run / "last.pt").read_bytes()
    assert main(["train", "--config", str(tmp_path / "s1-try" / "last.pt"), "--quiet"]) == 2
    assert f"out: {run} is another run's folder" in capsys.readouterr().err
    assert (run / "last.pt").read_bytes() == before
    handed = tmp_path / "handed" / "best.pt"
    handed.parent.mkdir()
    shutil.copy(run / "last.pt", handed)
    assert main(["train", "--config", str(handed), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert (f"{handed} is a checkpoint outside the run folder it records, out: {run}" in err
            and f"add out=FOLDER for the run again (e.g. out={run}-again)" in err), err
    assert (run / "last.pt").read_bytes() == before
    assert main(["train", "--config", str(handed), f"out={run}-again", "--quiet"]) == 0
    # It stops where the run did: the settings it records hold stop_after=2 too.
    assert read_checkpoint(tmp_path / "s1-again" / "last.pt")["step"] == 2
    # In its own run's folder, it goes on with that run, as the folder's config.yaml does.
    assert main(["train", "--config", str(run / "last.pt"), "--quiet"]) == 0
    assert read_checkpoint(run / "last.pt")["step"] == 3


def test_a_runs_config_whose_out_cannot_be_looked_into_here_is_refused_not_a_traceback(
        tmp_path, capsys):
    """A run copied from a folder this user may not look into (a colleague's home, 0700) keeps
    that out: checking it for a run raised OSError, a traceback. A name too long for this file
    system fails the same way, and root may look into any folder: it stands in for one."""
    from sharpen.cli import main
    run = tmp_path / "s1"
    train(tiny_cfg(run, 2, stop_after=1), quiet=True)
    there = tmp_path / ("a" * 300) / "s1"
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text.replace(f"out: {run}", f"out: {there}"))
    assert main(["train", "--config", str(run / "config.yaml"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert (f"its out: {there} cannot be read here" in err and f"add out={run} to go on" in err
            ), err


def test_a_runs_config_with_a_relative_out_is_refused_from_another_folder_naming_where_to_run(
        tmp_path, monkeypatch, capsys):
    """A run's config.yaml keeps a relative out as given (out=runs/s1), read from the current
    folder like data.labels: from the project folder, or through a link to it, it goes on with
    the run; from another folder it is refused, and that said the run was moved or copied, when
    only the folder the command runs from differs: the folder it was started in is named."""
    import shlex

    from sharpen.cli import main
    proj = tmp_path / "my proj"   # the out= given back is one word of a command
    proj.mkdir()
    monkeypatch.chdir(proj)
    train(tiny_cfg("runs/s1", 4, stop_after=1), quiet=True)
    (tmp_path / "link").symlink_to(proj)
    for config in ("runs/s1/config.yaml", str(tmp_path / "link" / "runs" / "s1" / "config.yaml")):
        step = read_checkpoint(proj / "runs" / "s1" / "last.pt")["step"]
        assert main(["train", "--config", config, "stop_after=1", "--quiet"]) == 0, config
        assert read_checkpoint(proj / "runs" / "s1" / "last.pt")["step"] == step + 1, config
    capsys.readouterr()
    for cwd, config in ((proj / "runs" / "s1", "config.yaml"),
                        (tmp_path, str(proj / "runs" / "s1" / "config.yaml"))):
        monkeypatch.chdir(cwd)
        assert main(["train", "--config", config, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert (f"its out: runs/s1 is read from the current folder, {cwd}, where it does not "
                f"exist: run the command from {proj}, where the run was started" in err
                and f"or add {shlex.quote(f'out={proj}/runs/s1')} to go on with the run" in err
                and "moved" not in err), err
        assert not (cwd / "runs").exists()   # no new run made there


def test_a_missing_absolute_data_path_names_the_key_that_points_it_elsewhere(tmp_path,
                                                                           monkeypatch):
    """A config (a run's config.yaml, a colleague's) written where the labels lay under
    /data/...: on another machine the only advice was to make the cache again, hours of
    teacher work, when it was copied and only lies elsewhere."""
    gone = tmp_path / "gpu-box" / "labels"
    with pytest.raises(ValueError) as e:
        train(tiny_cfg(tmp_path / "r", 2, task="student", **{"data.labels": str(gone)}),
              quiet=True)
    assert (f"data.labels={gone}: label cache not found" in str(e.value)
            and "if it was moved or copied from elsewhere, give data.labels=ITS_PATH_HERE"
            in str(e.value)), e.value
    monkeypatch.chdir(tmp_path)   # a relative path is read from here: nothing recorded elsewhere
    with pytest.raises(ValueError) as e:
        train(tiny_cfg(tmp_path / "r", 2, task="student", **{"data.labels": "nolabels"}),
              quiet=True)
    assert "ITS_PATH_HERE" not in str(e.value), e.value
    assert not (tmp_path / "r").exists()
    # A data source of a kind (gopro:PATH) is pointed elsewhere with its kind.
    gone = tmp_path / "gpu-box" / "GOPRO"
    with pytest.raises(ValueError) as e:
        train(tiny_cfg(tmp_path / "r", 2, **{"data.train": f"gopro:{gone}"}), quiet=True)
    assert (f"data.train=gopro:{gone}: data source not found" in str(e.value)
            and "give data.train=gopro:ITS_PATH_HERE" in str(e.value)), e.value


def test_overrides_may_come_before_and_after_options(tmp_path, capsys):
    from sharpen.cli import main
    missing = tmp_path / "no-labels"
    rc = main(["distill", "optim.steps=1", "--quiet", f"out={tmp_path / 'run'}",
               f"data.labels={missing}"])
    assert rc != 0 and f"label cache not found: {missing}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["distill", "optim.steps=1", "--quiet", "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    # A setting without its value after an option was "unrecognized arguments: optim.lr
    # out=...", the valid override named with it; before an option it got the key=value line.
    for argv in (["optim.steps=1", "--quiet", "optim.lr", f"out={tmp_path / 'r'}"],
                 ["optim.lr", f"out={tmp_path / 'r'}", "--quiet"]):
        assert main(["distill", *argv]) == 2
        err = capsys.readouterr().err
        assert "override 'optim.lr' must look like key=value" in err and "out=" not in err, err


@pytest.mark.parametrize("argv, meant", [
    (["--seed", "3", "optim.steps=1"], "seed=3"),   # as `synth --seed` and `corpus --seed`
    (["optim.steps=1", "--optim.lr=1e-4", "--val-every", "5"], "optim.lr=1e-4 val_every=5"),
    (["--seed"], "seed=VALUE"),
    # a negative number is a value, not an option; each repeat with its own value
    (["--seed", "-3"], "seed=-3"), (["--optim.lr", "-1e-4", "--quiet"], "optim.lr=-1e-4"),
    (["--seed", "3", "--seed", "4"], "seed=3 seed=4"),
    (["--out", "--weird", "--seed", "--quiet"], "out=VALUE seed=VALUE"),
    # a section's key without its section, as other trainers spell their options
    (["--steps", "100"], "optim.steps=100"), (["--lr=1e-4"], "optim.lr=1e-4"),
    (["--batch-size", "8", "--quiet"], "data.batch_size=8"),
    # another tool's name for out (`-o`, as the other commands take --out)
    (["-o", "runs/x"], "out=runs/x"), (["--output-dir=runs/x"], "out=runs/x")])
def test_a_setting_spelled_as_an_option_is_told_its_key_value_override(capsys, argv, meant):
    """`sharpen distill --seed 3`, the seed as the data commands take it, was only
    "unrecognized arguments: --seed"; the training commands take their seed as `seed=3`."""
    from sharpen.cli import main
    with pytest.raises(SystemExit):
        main(["distill", *argv])
    err = capsys.readouterr().err
    assert f"this command's settings are config keys given as KEY=VALUE: {meant}" in err, err
    with pytest.raises(SystemExit):   # a GPU's index is no device= value
        main(["distill", "--gpu", "0"])
    assert "device=0" not in capsys.readouterr().err
    with pytest.raises(SystemExit):   # not a key: as before
        main(["distill", "--bogus", "3"])
    assert capsys.readouterr().err.splitlines()[0].endswith("unrecognized arguments: --bogus")


def test_student_checkpoint_loads(tmp_path):
    train(tiny_cfg(tmp_path / "s", 2), quiet=True)
    model, ck = load_student(tmp_path / "s" / "last.pt")
    assert ck["arch"] == "fast" and ck["kind"] == "student" and ck["metrics"]
    assert "model_gt_ssim" in ck["metrics"]


@pytest.mark.slow
def test_quiet_training_prints_nothing_and_warns_as_python_warnings(tmp_path, capsys):
    """train(quiet=True) still wrote its resume notes ("resumed from ... at step 2", "starting
    over", "stopped at step ...") and its warnings to stderr, which a program could neither
    silence nor record. quiet silences the notes (train.log keeps them); what the user may
    not expect (a resume with settings changed) is a SharpenWarning."""
    out = tmp_path / "r"
    with runtime_warnings() as said:
        train(tiny_cfg(out, 4, stop_after=2), quiet=True)                   # budget: stopped
        train(tiny_cfg(out, 4, **{"optim.lr": 1e-4}), quiet=True)           # resumed, changed
        train(tiny_cfg(out, 2, resume="never"), quiet=True)                 # started over
    assert capsys.readouterr() == ("", "")
    assert len(said) == 1 and said[0].startswith(
        f"resuming {out / 'last.pt'} (step 2) with settings of its own changed: optim.lr: "
        "0.001 -> 0.0001"), said
    assert read_checkpoint(out / "last.pt")["step"] == 2


# The DDP tests share one torchrun job of two processes: a launch spends ~15 s on starting
# processes, importing torch and setting up gloo before its first step. Its phases run one
# after another in the same two workers, each in its own folder and process group (a phase
# sets one up, as a run under torchrun does, and tears it down), and each rank's stderr
# during a phase (Python's and gloo's own lines) goes to that phase's err<rank>.txt. Only
# the phases of the tests selected run; `no_start` ends the job, as process 0 exits after
# its error there.
DDP_WORKER = """
import contextlib, json, os, runpy, signal, sys, traceback
from pathlib import Path
import torch
import torch.distributed as dist
import distill.trainer as tr
from distill.config import load_config
from distill.trainer import Trainer

job, rank = Path(sys.argv[1]), int(os.environ["RANK"])
phases = json.loads((job / "phases.json").read_text())
ports = phases.pop("ports")
(job / f"pid{rank}").write_text(str(os.getpid()))
started = []


@contextlib.contextmanager
def phase(name):
    if started:
        # A process group set up again under the same store reuses the last one's keys
        # (torch numbers groups from 0 again after destroy_process_group), and gloo may connect
        # to the old peers' addresses and hang: each later phase gets a store of its own, as
        # the next torchrun would.
        os.environ.update(TORCHELASTIC_USE_AGENT_STORE="False",
                          MASTER_PORT=str(ports[len(started) - 1]))
    started.append(name)
    d = job / name
    sys.stderr.flush()
    saved = os.dup(2)
    with open(d / f"err{rank}.txt", "w") as f:
        os.dup2(f.fileno(), 2)
    try:
        yield d
    except BaseException:
        traceback.print_exc()   # into the phase's file too
        raise
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def cli(d, args):
    # as `torchrun -m sharpen.cli ARGS` runs each worker: argv[0] becomes sharpen/cli.py
    sys.argv = [sys.argv[0], *args]
    try:
        runpy.run_module("sharpen.cli", run_name="__main__", alter_sys=True)
    except SystemExit as e:
        (d / f"exit{rank}.json").write_text(json.dumps(e.code))


if "stop" in phases:
    # a budget that runs out on rank 1 only, then a signal that reaches rank 1 only
    with phase("stop") as d:
        cfg = load_config(str(d / "ddp.yaml"))
        if rank == 1:
            cfg.stop_after = 2
        t = Trainer(cfg, quiet=True)
        t.fit()
        first = t.step
        dist.barrier()   # rank 0 has saved: both resume from it (a new torchrun would)
        cfg.stop_after = None
        t = Trainer(cfg, quiet=True)
        step = t._train_step
        def train_step(batch):
            if rank == 1 and t.step == 3:
                os.kill(os.getpid(), signal.SIGINT)
            return step(batch)
        t._train_step = train_step
        t.fit()
        (d / f"rank{rank}.json").write_text(json.dumps([first, t.step, int(t._stop)]))
        dist.barrier()   # as distill.trainer.train: no rank tears gloo down under another
        dist.destroy_process_group()
        (d / f"exit{rank}.json").write_text("0")

if "history" in phases:
    # going back (process 0 alone moves the later history aside), then starting over (each
    # process checks what would be removed while process 0 removes it)
    with phase("history") as d:
        for resume, stop in (("auto", 0), (str(d / "ddp" / "step2.pt"), 1), ("never", 0)):
            cfg = load_config(str(d / "ddp.yaml"))
            cfg.resume, cfg.stop_after = resume, stop
            Trainer(cfg, quiet=True).fit()
            dist.barrier()
        dist.destroy_process_group()
        (d / f"exit{rank}.json").write_text("0")

if "qat" in phases:
    # a qat=true run stopped at step 2 and resumed, and the same run straight through
    with phase("qat") as d:
        for run, stop in (("whole", 0), ("resumed", 2), ("resumed", 0)):
            cfg = load_config(str(d / f"{run}.yaml"))
            cfg.stop_after = stop
            Trainer(cfg, quiet=True).fit()
            dist.barrier()
        dist.destroy_process_group()
        (d / f"exit{rank}.json").write_text("0")

if "weights" in phases:
    with phase("weights") as d:
        losses, step, fit = [], Trainer._train_step, Trainer.fit
        def spy(self, batch):
            loss, parts = step(self, batch)
            losses.append(loss)
            return loss, parts
        def fit_and_keep(self):
            metrics = fit(self)
            torch.save({"state": self.model.state_dict(), "losses": losses},
                       d / f"rank{rank}.pt")
            return metrics
        Trainer._train_step, Trainer.fit = spy, fit_and_keep
        cli(d, phases["weights"])
        Trainer._train_step, Trainer.fit = step, fit

if "val_signal" in phases:
    with phase("val_signal") as d:
        evaluate = tr.evaluate
        def evaluate_then_signal(model, items, device, *pictured):
            m = evaluate(model, items, device, *pictured)
            os.kill(os.getpid(), signal.SIGINT)   # only rank 0 validates
            return m
        tr.evaluate = evaluate_then_signal
        cli(d, phases["val_signal"])
        tr.evaluate = evaluate

if "no_start" in phases:
    with phase("no_start") as d:
        cli(d, phases["no_start"])
"""

# Which phase of the shared DDP job (ddp_job) each test reads.
DDP_PHASES = {
    "test_ddp_ranks_stop_at_the_same_step": "stop",
    "test_ddp_going_back_and_starting_over_move_and_remove_on_process_0_alone": "history",
    "test_ddp_two_processes_identical_weights": "weights",
    "test_train_log_records_the_torchrun_command_a_user_would_run_again": "weights",
    "test_ddp_two_processes_at_batch_b_train_as_one_process_at_batch_2b": "weights",
    "test_ddp_a_signal_during_rank0_validation_stops_every_rank_there": "val_signal",
    "test_ddp_a_resumed_qat_run_equals_an_uninterrupted_one": "qat",
    "test_ddp_when_process_0_cannot_start_the_others_stop_without_a_traceback": "no_start",
}


class DdpJob:
    def __init__(self, root, returncode, stderr):
        # returncode None: killed when a phase did not finish in time
        self.root, self.returncode, self.stderr = root, returncode, stderr

    def phase(self, name: str):
        """The phase's folder, once both ranks finished it; else the test fails saying why."""
        d = self.root / name
        if not self._finished(name):
            stuck = next(p for p in json.loads((self.root / "phases.json").read_text())
                         if p != "ports" and not self._finished(p))
            why = (f"torchrun exited {self.returncode}" if self.returncode is not None else
                   "the ranks did not stop together (one waits in a collective): killed after "
                   "2 minutes" if stuck == name else f"the job was killed in phase {stuck}")
            errs = "".join(f"\n--- rank {r}:\n{self.err(name, r)[-2000:]}" for r in (0, 1))
            pytest.fail(f"DDP phase {name} did not finish on both ranks: {why}{errs}\n--- "
                        f"torchrun:\n{self.stderr[-3000:]}")
        return d

    def _finished(self, name: str) -> bool:
        return all((self.root / name / f"exit{r}.json").exists() for r in (0, 1))

    def exits(self, name: str) -> list:
        return [json.loads((self.phase(name) / f"exit{r}.json").read_text()) for r in (0, 1)]

    def err(self, name: str, rank: int) -> str:
        f = self.root / name / f"err{rank}.txt"
        return f.read_text() if f.exists() else ""


@pytest.fixture(scope="module")
def ddp_job(request, tmp_path_factory):
    import contextlib
    import os
    import signal
    import socket
    import time
    from pathlib import Path

    import numpy as np

    from distill.images import write_image
    job = tmp_path_factory.mktemp("ddp")
    wanted = {DDP_PHASES[item.originalname] for item in request.session.items
              if item.module is request.module and item.originalname in DDP_PHASES}
    phases = {}
    for name in wanted:
        (job / name).mkdir()
    if "stop" in wanted:
        save_config(tiny_cfg(job / "stop" / "ddp", 20, device="cpu"), job / "stop" / "ddp.yaml")
        phases["stop"] = []
    if "history" in wanted:
        save_config(tiny_cfg(job / "history" / "ddp", 4, device="cpu", snapshot_every=2),
                    job / "history" / "ddp.yaml")
        phases["history"] = []
    if "qat" in wanted:
        for run in ("whole", "resumed"):
            save_config(tiny_cfg(job / "qat" / run, 5, device="cpu", qat="true"),
                        job / "qat" / f"{run}.yaml")
        phases["qat"] = []
    if "weights" in wanted:
        phases["weights"] = ["train", f"out={job / 'weights' / 'ddp'}", "optim.steps=3",
                             "optim.warmup_steps=2", "log_every=1", "snapshot_every=2",
                             *TINY_CLI]
    if "val_signal" in wanted:
        base = _cli_teacher_run(job / "val_signal", job / "val_signal" / "run", workers=0)
        phases["val_signal"] = [*base[3:], f"data.val={job / 'val_signal' / 'pairs'}",
                                "val_every=3", "optim.steps=20", "device=cpu"]
    if "no_start" in wanted:
        photos = job / "no_start" / "photos"
        write_image(photos / "a.png", np.full((40, 40, 3), 0.5, np.float32))
        phases["no_start"] = [
            "train", "--quiet", f"out={job / 'no_start' / 'r'}", "model.arch=fast",
            "model.args={width: 8, blocks: 1, low_blocks: 1}", "data.crop=32",
            "data.workers=0", "optim.steps=2", "device=cpu", f"data.val={photos}"]
    # Ports free now, not fixed ones: another test run on the machine may hold those.
    socks = [socket.socket() for _ in phases]
    for s in socks:
        s.bind(("", 0))
    port, *ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    (job / "phases.json").write_text(json.dumps({**phases, "ports": ports}))
    (job / "worker.py").write_text(DDP_WORKER)
    root = Path(__file__).resolve().parents[1]
    log = job / "torchrun.err"
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run",
                                 "--nproc_per_node=2", f"--master_port={port}",
                                 str(job / "worker.py"), str(job)],
                                cwd=root, stderr=f, start_new_session=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
    # Two minutes for each phase, as each test had: the hang the tests are about ends the job.
    finished, deadline, code = 0, time.monotonic() + 120, None
    while (code := proc.poll()) is None:
        n = len(list(job.glob("*/exit*.json")))
        if n > finished:
            finished, deadline = n, time.monotonic() + 120
        if time.monotonic() > deadline:   # leave no workers behind
            os.killpg(proc.pid, signal.SIGKILL)
            for f in job.glob("pid*"):   # torchrun starts each in a session of its own
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(f.read_text()), signal.SIGKILL)
            proc.wait()
            break
        time.sleep(0.2)
    return DdpJob(job, code, log.read_text())


@pytest.mark.filterwarnings(   # the test resumes with other optim.steps on purpose
    "ignore:resuming .* with settings of its own changed:runtime.warn.SharpenWarning")
def test_ddp_two_processes_identical_weights(ddp_job, tmp_path):
    d = ddp_job.phase("weights")
    assert ddp_job.exits("weights") == [0, 0], ddp_job.err("weights", 0)[-3000:]
    a = torch.load(d / "rank0.pt", weights_only=True)
    b = torch.load(d / "rank1.pt", weights_only=True)
    for k in a["state"]:
        assert torch.equal(a["state"][k], b["state"][k]), k
    assert (d / "ddp" / "last.pt").exists()
    # the batch of a step, which data.batch_size (per process) alone did not say
    started = (d / "ddp" / "train.log").read_text()
    assert "on cpu, 2 processes, batch 2 per process, 4 crops of 32 px a step, " in started
    # each rank joins the weights check before a snapshot, process 0 alone writes it
    assert [p.name for p in (d / "ddp").glob("step*.pt")] == ["step2.pt"]
    assert load_student(d / "ddp" / "step2.pt")[1]["step"] == 2
    # The logged loss is that of the step's whole batch, every rank's crops (it was rank 0's).
    logged = [json.loads(ln)["loss"] for ln in
              (d / "ddp" / "metrics.jsonl").read_text().splitlines() if '"loss"' in ln]
    assert a["losses"] != b["losses"]
    assert logged == pytest.approx([(x + y) / 2 for x, y in zip(a["losses"], b["losses"])])
    # Resumed by one process (in a copy: the job's folder is shared): the batch of a step
    # halves (data.batch_size is per process).
    shutil.copytree(d / "ddp", tmp_path / "ddp")
    b = tiny_cfg(tmp_path / "ddp", 4, device="cpu").data.batch_size
    with pytest.warns(SharpenWarning, match=re.escape(
            f"was trained by 2 processes, this run has 1: data.batch_size ({b}) is per "
            f"process, so the batch of a step changes from {2 * b} to {b}")):
        train(tiny_cfg(tmp_path / "ddp", 4, device="cpu"), quiet=True)


def test_ddp_a_resumed_qat_run_equals_an_uninterrupted_one(ddp_job):
    """Under torchrun each process observed the QAT ranges of its own crops, and last.pt kept
    process 0's alone: resumed, process 1 went on with process 0's ranges where the
    uninterrupted run had its own, and the weights drifted from the uninterrupted run's
    (README: "a resumed run's weights equal an uninterrupted one's, with qat=true too")."""
    d = ddp_job.phase("qat")
    assert ddp_job.exits("qat") == [0, 0], ddp_job.err("qat", 0)[-3000:]
    a = read_checkpoint(d / "whole" / "last.pt")
    b = read_checkpoint(d / "resumed" / "last.pt")
    assert b["step"] == a["step"] == 5
    assert a["qat_ranges"] == b["qat_ranges"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
        assert torch.equal(a["ema"][k], b["ema"][k]), k


def test_ddp_going_back_and_starting_over_move_and_remove_on_process_0_alone(ddp_job):
    """Under torchrun, going back to step2.pt moves the later history aside once (process 0
    alone: two would make abandoned-at-step2-2 or fail on a file the other moved), and
    resume=never then removes the run's own files, every process agreeing that they are.
    (Process 0 cannot remove them while another still checks: the DDP wrapper, built after
    the checks, waits for every process.)"""
    d = ddp_job.phase("history")
    assert ddp_job.exits("history") == [0, 0], ddp_job.err("history", 1)[-3000:]
    out = d / "ddp"
    assert sorted(p.name for p in (out / "abandoned-at-step2").iterdir()) == [
        "last.pt", "metrics.jsonl", "step4.pt", "visualization"]
    assert [p.name for p in out.glob("abandoned-*")] == ["abandoned-at-step2"]
    assert sorted(p.name for p in out.glob("step*.pt")) == ["step2.pt", "step4.pt"]
    assert read_checkpoint(out / "last.pt")["step"] == 4
    assert "would remove" not in ddp_job.err("history", 1)


def test_ddp_ranks_stop_at_the_same_step(ddp_job):
    """A budget that runs out on one rank only, then a signal that reaches one rank only: every
    rank stops at that step and rank 0 saves it (without agreement the others wait in the next
    all-reduce forever)."""
    import signal
    d = ddp_job.phase("stop")
    for rank in (0, 1):
        assert json.loads((d / f"rank{rank}.json").read_text()) == [2, 4, signal.SIGINT]
    assert read_checkpoint(d / "ddp" / "last.pt")["step"] == 4


@pytest.mark.slow
def test_ddp_a_signal_during_rank0_validation_stops_every_rank_there(ddp_job):
    """Ctrl-C that reaches rank 0 while it validates (the other ranks have gone on): rank 0
    stopped to save while the others were in the next step's gradient all-reduce, and gloo
    aborted on the collective mismatch with nothing saved. Every rank now stops at that step,
    rank 0 saves it, and the command says so once, not once per rank."""
    out = ddp_job.phase("val_signal") / "run"
    err = ddp_job.err("val_signal", 0) + ddp_job.err("val_signal", 1)
    assert "collective mismatch" not in err and "EnforceNotMet" not in err, err[-3000:]
    assert read_checkpoint(out / "last.pt")["step"] == 3, err[-3000:]
    log = (out / "train.log").read_text()
    assert "stopped at step 3 by SIGINT" in log
    assert err.count("interrupted by Ctrl-C (SIGINT) at step 3") == 1, err[-3000:]
    # metrics.jsonl, written by process 0 alone, marks best.pt's validation as train.log does
    recs = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    said = [int(s) for s in re.findall(r"validation at step (\d+) .*-> best\.pt", log)]
    assert said and [r["step"] for r in recs if r.get("best")] == said, (recs, log)
    assert read_checkpoint(out / "best.pt")["step"] == said[-1]


@pytest.mark.slow
def test_ddp_when_process_0_cannot_start_the_others_stop_without_a_traceback(ddp_job):
    """Only process 0 reads the validation images: when they were unusable it stopped with
    its error, and the others went on into the first all-reduce and died with gloo's
    'Connection closed by peer' traceback."""
    exits = ddp_job.exits("no_start")
    photos = ddp_job.phase("no_start") / "photos"
    err0, err1 = ddp_job.err("no_start", 0), ddp_job.err("no_start", 1)
    assert 0 not in exits, exits
    assert f"error: data.val={photos}: folder source" in err0, err0[-3000:]
    assert "error: process 0 could not start the run" in err1, err1[-3000:]
    assert "Traceback" not in err1 and "Connection closed" not in err1, err1[-3000:]


def test_ema_warmup_follows_a_short_run():
    from distill.train_state import ema_decay_at, ema_update
    assert ema_decay_at(0.999, 1) == pytest.approx(2 / 11)
    assert ema_decay_at(0.999, 100) == pytest.approx(101 / 110)
    assert ema_decay_at(0.999, 100_000) == 0.999
    assert ema_decay_at(0.999, 1, warmup=False) == 0.999
    # 100 updates towards new weights: with warm-up the EMA is mostly the new weights,
    # without it mostly the initial ones (the failure warm-up exists for).
    init, new = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    for warmup, expect_new in ((True, True), (False, False)):
        ema = torch.nn.Linear(2, 2)
        ema.load_state_dict(init.state_dict())
        for n in range(1, 101):
            ema_update(ema, new, ema_decay_at(0.999, n, warmup))
        d_new = (ema.weight - new.weight).abs().sum()
        d_init = (ema.weight - init.weight).abs().sum()
        assert (d_new < d_init) == expect_new


def _cli_teacher_run(tmp_path, out, workers: int) -> list[str]:
    """Two tiny blurred pairs under tmp_path/pairs and a `sharpen train-teacher` command line
    on them that logs every step and never checkpoints on its own."""
    import cv2
    import numpy as np

    from distill.images import write_image
    rng = np.random.default_rng(0)
    for i in range(2):
        sharp = rng.random((48, 48, 3)).astype(np.float32)
        write_image(tmp_path / "pairs" / "target" / f"p{i}.png", sharp)
        write_image(tmp_path / "pairs" / "input" / f"p{i}.png", cv2.blur(sharp, (5, 5)))
    return [sys.executable, "-m", "sharpen.cli", "train-teacher", "--quiet", f"out={out}",
            "model.args={config: tiny}", f"data.train={tmp_path / 'pairs'}", "data.val=",
            "data.crop=32", "data.batch_size=1", f"data.workers={workers}",
            "optim.warmup_steps=1", "log_every=1", "val_every=100000", "ckpt_every=100000"]


def _wait_for_log_lines(proc, log, n: int, timeout: float = 120) -> None:
    """Until the run has logged n lines (or exited, or timeout seconds passed)."""
    import time
    t0 = time.time()
    while time.time() - t0 < timeout and proc.poll() is None and \
            (not log.exists() or len(log.read_text().splitlines()) < n):
        time.sleep(0.2)


@pytest.mark.slow
def test_sigterm_saves_exits_143_and_resume_log_has_no_repeats(tmp_path):
    import json
    import os
    import signal

    out = tmp_path / "run"
    base = _cli_teacher_run(tmp_path, out, workers=0)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([*base, "optim.steps=100000"], cwd=tmp_path, env=env,
                            stderr=subprocess.PIPE, text=True)
    log = out / "metrics.jsonl"
    _wait_for_log_lines(proc, log, 3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "resume" in err and "done:" not in err
    step = read_checkpoint(out / "last.pt")["step"]
    assert step >= 3
    # A stale record beyond the checkpoint (as a kill between log and checkpoint leaves).
    with open(log, "a") as f:
        f.write(json.dumps({"step": step + 1, "loss": 9.0}) + "\n")
    from sharpen.cli import main   # the resume in this process: only the signalled run needs one
    assert main([*base[3:], f"optim.steps={step + 2}"]) == 0
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == sorted(set(steps)) and steps[-1] == step + 2
    assert 9.0 not in [json.loads(line).get("loss") for line in log.read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("to_group", [True, False])
def test_a_signal_while_the_model_compiles_stops_the_run_as_at_any_step(tmp_path, to_group):
    """compile=true: on a CPU the first step waited minutes for torch.compile with nothing said
    on the console or in train.log, and a SIGTERM meanwhile was recorded there as
    `error: CppCompileError` (the compiler, in the run's process group, died of it): a crash,
    not a stop. The compiler here waits for the signal, so it lands while compiling."""
    import os
    import signal

    out, began = tmp_path / "run", tmp_path / "compiler-began"
    cxx = tmp_path / "cxx"
    cxx.write_text(f'#!/bin/sh\ncase "$*" in *--version*) exec g++ "$@";; esac\n'
                   f'touch {began}\nexec sleep 300\n')
    cxx.chmod(0o755)
    base = _cli_teacher_run(tmp_path, out, workers=0)   # a tiny student: quick to trace
    cmd = [*base[:3], "train", *base[4:], "optim.steps=2", "compile=true", "model.arch=fast",
           "model.args={width: 8, blocks: 1, low_blocks: 1}"]
    env = dict(os.environ, OMP_NUM_THREADS="1", CXX=str(cxx), TORCHINDUCTOR_COMPILE_THREADS="1",
               TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"))
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    _wait_for(proc, began)
    if to_group:   # as Ctrl-C, `timeout` and Slurm do: the compiler gets it too
        os.killpg(proc.pid, signal.SIGTERM)
    else:          # as `kill PID` and `docker stop` do: the compiler would go on for minutes
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:   # not left behind, nor its compiler
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 128 + signal.SIGTERM, err
    log = (out / "train.log").read_text()
    assert "compiling the model (compile=true): step 1 waits for it" in log, log
    assert "error" not in log and "Error" not in err, err
    assert log.splitlines()[-1].endswith(
        "stopped at step 0 by SIGTERM while compiling the model; last.pt saved"), log
    assert read_checkpoint(out / "last.pt")["step"] == 0
    from sharpen.cli import main   # resumed as after any stop (uncompiled here: no wait)
    assert main([*cmd[3:], "compile=false"]) == 0
    assert read_checkpoint(out / "last.pt")["step"] == 2


def _wait_for(proc, path, timeout: float = 600) -> None:
    """Until `path` exists (or the process exited, or timeout seconds passed)."""
    import time
    t0 = time.time()
    while time.time() - t0 < timeout and proc.poll() is None and not path.exists():
        time.sleep(0.2)
    assert path.exists(), proc.communicate()[1]


@pytest.mark.slow
def test_sigterm_to_the_process_group_with_loader_workers_still_saves(tmp_path):
    """`timeout`, Slurm, systemd and Ctrl-C signal every process of the group, the loader
    workers too; the run must still finish its step, save and exit as interrupted."""
    import os
    import signal

    out = tmp_path / "run"
    cmd = [*_cli_teacher_run(tmp_path, out, workers=1), "optim.steps=100000"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS="1"),
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    log = out / "metrics.jsonl"
    _wait_for_log_lines(proc, log, 3)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "DataLoader worker" not in err
    assert read_checkpoint(out / "last.pt")["step"] >= 3


@pytest.mark.slow
@pytest.mark.parametrize("closed", [False, True])
def test_a_hang_up_saves_and_exits_129_with_the_terminal_gone(tmp_path, closed):
    """A dropped SSH connection sends SIGHUP to the foreground job, the loader workers too: it
    killed the run, losing every step since the last checkpoint. It now saves as on SIGTERM,
    also when the terminal it wrote to is gone (stderr a pipe nobody reads: the final message
    raised BrokenPipeError)."""
    import os
    import signal

    out = tmp_path / "run"
    cmd = [*_cli_teacher_run(tmp_path, out, workers=1), "optim.steps=100000"]
    r, w = os.pipe()
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS="1"),
                            stdout=w, stderr=w, start_new_session=True)
    os.close(w)
    try:
        _wait_for_log_lines(proc, out / "metrics.jsonl", 3)
        if closed:
            os.close(r)
        os.killpg(proc.pid, signal.SIGHUP)
        proc.wait(timeout=120)
        err = "" if closed else os.read(r, 1 << 20).decode()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        if not closed:
            os.close(r)
    assert proc.returncode == 128 + signal.SIGHUP, err
    assert closed or "interrupted by SIGHUP at step" in err and "Traceback" not in err, err
    assert read_checkpoint(out / "last.pt")["step"] >= 3


@pytest.mark.slow
def test_a_hang_up_that_also_ends_a_tee_still_saves_and_exits_129(tmp_path):
    """`sharpen train ... 2>&1 | tee log` over SSH: the hang-up ends tee too, a moment after
    the handler found its pipe still read. The step's log line, the bar or the stop line then
    raised BrokenPipeError: exit 1, and where that was before the save, the steps since the
    last checkpoint were lost."""
    import os
    import shlex
    import signal

    out = tmp_path / "run"
    cmd = [c for c in _cli_teacher_run(tmp_path, out, workers=1) if c != "--quiet"]
    # bash's own trap: its children keep SIGHUP's default action (an ignored one they would
    # inherit), and it outlives the hang-up to say the run's exit status.
    job = (f"trap true HUP; {shlex.join([*cmd, 'optim.steps=100000'])} 2>&1 "
           f"| tee {shlex.quote(str(tmp_path / 'log'))}; echo ${{PIPESTATUS[0]}} > rc")
    proc = subprocess.Popen(["bash", "-c", job], cwd=tmp_path, start_new_session=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_log_lines(proc, out / "metrics.jsonl", 3)
        os.killpg(proc.pid, signal.SIGHUP)   # its own session: the job, never pytest
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert (out / "last.pt").exists()
    assert (tmp_path / "rc").read_text().strip() == str(128 + signal.SIGHUP)


@pytest.mark.slow
def test_torchrun_forwards_a_hang_up_and_every_rank_stops_at_a_saved_step(tmp_path):
    """torchrun catches SIGHUP, sends it to every rank and kills them 30 s later: the ranks,
    each in a session of its own with SIGHUP's default action, died with nothing saved."""
    import signal

    out = tmp_path / "run"
    base = _cli_teacher_run(tmp_path, out, workers=0)
    with torchrun(["-m", "sharpen.cli", *base[3:], "optim.steps=100000", "device=cpu"],
                  tmp_path) as proc:
        _wait_for_log_lines(proc, out / "metrics.jsonl", 3)
        proc.send_signal(signal.SIGHUP)   # to torchrun alone, as its terminal's hang-up
        said, _ = proc.communicate(timeout=120)
    assert said.count("interrupted by SIGHUP at step") == 1, said[-3000:]
    assert read_checkpoint(out / "last.pt")["step"] >= 3, said[-3000:]


# Run by torchrun in the test below: process 0 gets its SIGHUP just after the step's agreement
# to stop came back "no one was signalled" (a rank waits in that all-reduce for the slower
# one, so on a busy machine the signal most often lands there), process 1 none.
_LATE_HANG_UP = """
import os, signal, sys
from distill.trainer import Trainer
agree = Trainer._agree_to_stop

def agree_then_hang_up(self, *args):
    agreed = agree(self, *args)
    if self.dist.main and self.step == 3 and not self._stop:
        os.kill(os.getpid(), signal.SIGHUP)
    return agreed

Trainer._agree_to_stop = agree_then_hang_up
from sharpen.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_hang_up_after_the_agreement_to_stop_waits_for_the_next_one(tmp_path):
    """A signal that landed on one rank just after the step's all-reduce agreed to go on:
    that rank read its own flag and stopped to save while the others went on training, the
    ranks waited in different collectives, and gloo aborted ("Connection reset by peer")
    before anything was saved; torchrun then reported a crash, not a stop."""
    out = tmp_path / "run"
    base = _cli_teacher_run(tmp_path, out, workers=0)
    script = tmp_path / "late_hang_up.py"
    script.write_text(_LATE_HANG_UP)
    with torchrun([str(script), *base[3:], "optim.steps=100000", "device=cpu"],
                  tmp_path) as proc:
        said, _ = proc.communicate(timeout=180)
    assert said.count("interrupted by SIGHUP at step 4;") == 1, said[-3000:]
    # No rank failed ("[rankN]:" prefixes a rank's traceback). torchrun's own ChildFailedError
    # for the exit codes 129 is expected here: it got no hang-up itself.
    assert "Connection reset" not in said and "[rank" not in said, said[-3000:]
    assert read_checkpoint(out / "last.pt")["step"] == 4, said[-3000:]


# A skipped first step must not surface torch's scheduler-order warning to the user.
@pytest.mark.filterwarnings("error:.*lr_scheduler.step")
def test_non_finite_batches_are_skipped_then_training_stops_as_diverged(tmp_path):
    """A NaN batch leaves the weights as they were; a run of them stops training with a clear
    error instead of writing NaN weights into the next checkpoint."""
    trainer = Trainer(tiny_cfg(tmp_path / "nan", 100), quiet=True)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    good = {"input": torch.rand(2, 3, 32, 32), "target": torch.rand(2, 3, 32, 32)}
    bad = {"input": torch.full((2, 3, 32, 32), float("nan")), "target": good["target"]}
    loss, _ = trainer._train_step(bad)
    assert loss != loss   # NaN reported, not hidden
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert trainer._train_step(good)[0] > 0     # a good batch trains and resets the count
    assert trainer._bad_steps == 0
    for _ in range(MAX_BAD_STEPS - 1):
        trainer._train_step(bad)
    with pytest.raises(TrainingDiverged, match="NaN/inf for 20 batches in a row .*no checkpoint "
                                               "was written in .* yet, so the same command "
                                               "starts over.*optim.lr"):
        trainer._train_step(bad)   # before its first checkpoint: none to speak of
    assert all(torch.isfinite(v).all() for v in trainer.model.state_dict().values()
               if v.is_floating_point())


@pytest.mark.filterwarnings(   # the test resumes with other optim.steps on purpose
    "ignore:resuming .* with settings of its own changed:runtime.warn.SharpenWarning")
def test_weights_that_turn_nan_are_not_saved(tmp_path):
    """lr 1e10: each step's gradient is finite, the weights it leaves are not. They replaced
    the last good checkpoint and the run ended "done" with NaN scores, exit 0."""
    out = tmp_path / "huge-lr"
    train(tiny_cfg(out, 2, ckpt_every=2), quiet=True)
    good = read_checkpoint(out / "last.pt")
    with pytest.raises(TrainingDiverged, match="weights (are|give) NaN/inf .*the last checkpoint in "
                                               ".* is intact.*optim.lr"):
        train(tiny_cfg(out, 8, ckpt_every=2, val_every=2, **{"optim.lr": 1e10, "optim.warmup_steps": 0,
                                                 "optim.grad_clip": 0}), quiet=True)
    kept = read_checkpoint(out / "last.pt")
    assert kept["step"] == good["step"] == 2
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())


def test_a_resumed_run_says_when_its_labels_changed(tmp_path, capsys):
    """Labels added (or remade by another teacher) between an interruption and the resume were
    trained on without a word on the console: the result differs from an uninterrupted run."""
    import numpy as np

    from distill.data.labels import run_labels
    from distill.images import write_image

    class Doubler:
        device, config_name, weights_id, model = "cpu", "fake", "fake-weights", None

        def sharpen(self, image, tile=0, overlap=0, batch_size=1):
            return np.clip(image * 2, 0, 1)

    rng = np.random.default_rng(0)

    def add(n0, n):
        for i in range(n0, n):
            sharp = rng.random((40, 40, 3)).astype(np.float32)
            write_image(tmp_path / "data" / "input" / f"im{i}.png", sharp * 0.5)
            write_image(tmp_path / "data" / "target" / f"im{i}.png", sharp)
        run_labels(str(tmp_path / "data"), tmp_path / "labels", teacher=Doubler(), tile=0,
                   overlap=0, progress=False)

    add(0, 3)
    ov = {"task": "student", "data.labels": tmp_path / "labels", "data.val": "",
          "data.val_labels": tmp_path / "labels"}
    with pytest.warns(SharpenWarning, match="are training images too"):   # labels == val
        train(tiny_cfg(tmp_path / "s", 6, stop_after=2, **ov), quiet=True)
    capsys.readouterr()
    (tmp_path / "same").symlink_to(tmp_path / "labels")   # the same data spelled otherwise
    with runtime_warnings() as said:
        train(tiny_cfg(tmp_path / "s", 6, stop_after=2,
                       **{**ov, "data.labels": tmp_path / "same"}), quiet=True)
    assert not [m for m in said if "data changed" in m], said
    add(3, 5)
    with runtime_warnings() as said:
        train(tiny_cfg(tmp_path / "s", 6, **ov))
    out, err = capsys.readouterr()
    assert f"data: 5 training pairs ({tmp_path / 'labels'}), 1 validation images" in out, out
    assert ("the data changed since step 4 (training images: 3 -> 5); the run goes on with the "
            "new data") in said, said
    assert "data changed since step 4" in (tmp_path / "s" / "train.log").read_text()


def test_a_copy_of_the_labels_is_the_same_data_and_an_edit_with_its_mtime_kept_is_not(
        tmp_path, capsys):
    """The training files' record took in their mtimes: a resume from a `cp -r` (or `rsync`
    without -t) of the same label cache said the data changed ("relabelled?"), and a label
    rewritten with its mtime put back read as the same data."""
    import os
    import shutil

    import numpy as np

    from distill.data.labels import run_labels
    from distill.images import write_image

    class Doubler:
        device, config_name, weights_id, model = "cpu", "fake", "fake-weights", None

        def sharpen(self, image, tile=0, overlap=0, batch_size=1):
            return np.clip(image * 2, 0, 1)

    rng = np.random.default_rng(0)
    for i in range(3):
        sharp = rng.random((40, 40, 3)).astype(np.float32)
        write_image(tmp_path / "data" / "input" / f"im{i}.png", sharp * 0.5)
        write_image(tmp_path / "data" / "target" / f"im{i}.png", sharp)
    run_labels(str(tmp_path / "data"), tmp_path / "labels", teacher=Doubler(), tile=0,
               overlap=0, progress=False)
    ov = {"task": "student", "data.labels": tmp_path / "labels", "data.val": "",
          "data.val_labels": tmp_path / "labels"}
    with pytest.warns(SharpenWarning, match="are training images too"):   # labels == val
        train(tiny_cfg(tmp_path / "s", 6, stop_after=2, **ov), quiet=True)
    # A copy with new file times (shutil.copyfile keeps none), read in place of the original.
    shutil.copytree(tmp_path / "labels", tmp_path / "copy", copy_function=shutil.copyfile)
    shutil.rmtree(tmp_path / "labels")
    (tmp_path / "labels").symlink_to(tmp_path / "copy")
    with runtime_warnings() as said:
        train(tiny_cfg(tmp_path / "s", 6, stop_after=2, **ov), quiet=True)
    assert not [m for m in said if "data changed" in m], said
    # One label rewritten (another teacher's output) and its mtime put back.
    label = next((tmp_path / "copy" / "labels").glob("*.png"))
    st = label.stat()
    write_image(label, rng.random((40, 40, 3)).astype(np.float32))
    os.utime(label, ns=(st.st_atime_ns, st.st_mtime_ns))
    with runtime_warnings() as said:
        train(tiny_cfg(tmp_path / "s", 6, **ov), quiet=True)
    assert ("the data changed since step 4 (training images: the same 3, but some changed "
            "(relabelled?))") in " ".join(said), said
    capsys.readouterr()


def test_an_older_versions_data_record_compares_the_training_files_by_count():
    """A checkpoint of an older version recorded a training digest of names, sizes and mtimes,
    which a copy of the same files does not match: it is read, by the count alone."""
    from distill.data_checks import data_changes

    now = {"train": 3, "train_digest": "new", "train_digest_of": "name, size, last 64 KiB",
           "val": 1, "val_digest": "v"}
    old = {"train": 3, "train_digest": "mtimes", "val": 1, "val_digest": "v"}
    assert data_changes(old, now) == []
    assert data_changes({**old, "train": 2}, now) == ["training images: 2 -> 3"]
    assert data_changes({**old, "val_digest": "w"}, now) == [
        "validation images: the same 1, but some changed (relabelled?)"]
    assert data_changes({**now, "train_digest": "other"}, now) == [
        "training images: the same 3, but some changed (relabelled?)"]


def test_gt_train_joins_its_ground_truth_as_the_label(tmp_path):
    """data.gt_train: a second paired source (e.g. sharp `still` frames) whose ground truth is
    the label, for students as for the teacher."""
    import numpy as np

    from distill.data.labels import run_labels
    from distill.images import write_image
    from distill.train_data import build_train_dataset

    class Doubler:       # stands in for the teacher: labels differ from the ground truth
        device, config_name, weights_id, model = "cpu", "fake", "fake-weights", None

        def sharpen(self, image, tile=0, overlap=0, batch_size=1):
            return np.clip(image * 2, 0, 1)

    rng = np.random.default_rng(0)
    for root, n in ((tmp_path / "blurred" / "train", 3), (tmp_path / "still" / "train", 2)):
        for i in range(n):
            sharp = rng.random((40, 40, 3)).astype(np.float32)
            write_image(root / "input" / f"{root.parent.name}{i}.png", sharp * 0.5)
            write_image(root / "target" / f"{root.parent.name}{i}.png", sharp)
    run_labels(str(tmp_path / "blurred"), tmp_path / "labels", teacher=Doubler(), tile=0,
               overlap=0, progress=False)
    cfg = tiny_cfg(tmp_path / "s", 2, task="student", **{
        "data.labels": tmp_path / "labels", "data.gt_train": tmp_path / "still", "data.val": "",
        "data.brightness": 0, "data.flips": False})
    items = build_train_dataset(cfg).items
    assert len(items) == 5
    still = [it for it in items if "still" in str(it[0])]
    assert len(still) == 2 and all(label == gt and "target" in str(gt)
                                   for _, label, gt in still)
    blurred = [it for it in items if it not in still]
    assert all(str(label).startswith(str(tmp_path / "labels")) for _, label, _ in blurred)
    for share, n_still in ((0.25, 1), (0.5, 3), (0.75, 9)):   # 3 labelled items next to them
        cfg.data.gt_train_share = share
        assert sum("still" in str(it[0]) for it in build_train_dataset(cfg).items) == n_still
    cfg.data.gt_train_share = 1.0
    with pytest.raises(ValueError, match="gt_train_share"):
        build_train_dataset(cfg)
    cfg.data.gt_train_share = 0.0
    train(cfg, quiet=True)                       # and it trains
    assert read_checkpoint(tmp_path / "s" / "last.pt")["step"] == 2
    with pytest.raises(ValueError, match="data.gt_train"):
        build_train_dataset(tiny_cfg(tmp_path / "t", 1, **{"data.gt_train": tmp_path / "still"}))
    with pytest.raises(ValueError, match="gt_train_share is set but data.gt_train is empty"):
        build_train_dataset(tiny_cfg(tmp_path / "u", 1, **{"data.gt_train_share": 0.2}))


def test_labels_and_training_say_which_files_they_skip_as_not_images(tmp_path):
    """A notes.txt or a .heic beside the pairs was left out without a word by labelling and
    training, as run and evaluate already said."""
    import numpy as np

    from distill.data.labels import run_labels
    from distill.images import write_image
    from distill.train_data import build_train_dataset

    class Doubler:
        device, config_name, weights_id, model = "cpu", "fake", "fake-weights", None

        def sharpen(self, image, tile=0, overlap=0, batch_size=1):
            return np.clip(image * 2, 0, 1)

    data = tmp_path / "pairs"
    for i in range(2):
        write_image(data / "input" / f"a{i}.png", np.full((40, 40, 3), 0.25, np.float32))
        write_image(data / "target" / f"a{i}.png", np.full((40, 40, 3), 0.5, np.float32))
    (data / "input" / "notes.txt").write_text("shot on a phone")
    (data / "target" / "b.heic").write_bytes(b"\0")
    said = r"2 files that are not images skipped \((b.heic, notes.txt|notes.txt, b.heic)\); "
    with pytest.warns(SharpenWarning, match=re.escape(str(data)) + ": " + said
                      + "labelling reads .*png"):
        s = run_labels(str(data), tmp_path / "labels", teacher=Doubler(), tile=0, overlap=0,
                       progress=False)
    assert s.done == 2
    cfg = tiny_cfg(tmp_path / "t", 1, task="teacher", **{"data.train": data, "data.val": ""})
    with pytest.warns(SharpenWarning, match=re.escape(str(data)) + ": " + said
                      + "training reads .*png"):
        assert len(build_train_dataset(cfg).items) == 2
    footage = tmp_path / "footage"   # whose clips are read too, which the warning says
    write_image(footage / "a.png", np.full((40, 40, 3), 0.25, np.float32))
    (footage / "notes.txt").write_text("day one")
    with pytest.warns(SharpenWarning, match=r"notes.txt\); labelling reads .*png.* and .*mp4"
                      r".* clips only"):
        run_labels(str(footage), tmp_path / "l2", teacher=Doubler(), tile=0, overlap=0,
                   progress=False)


def test_unreadable_samples_are_skipped_and_all_unreadable_is_a_clean_error(tmp_path, capfd):
    """A small set with one bad file trains (the fallback tries every sample before giving
    up); a set with none readable ends with one line, exit 2, and does not hang on its loader
    workers (they ignore SIGTERM, which multiprocessing's exit handler relies on)."""
    import numpy as np

    from distill.images import write_image
    from sharpen.cli import main
    rng = np.random.default_rng(0)
    pairs = tmp_path / "pairs"
    for i in range(4):
        img = rng.random((40, 40, 3)).astype(np.float32)
        write_image(pairs / "target" / f"p{i}.png", img)
        write_image(pairs / "input" / f"p{i}.png", img * 0.9)
    cmd = [sys.executable, "-m", "sharpen.cli", "train", "--quiet", "model.arch=fast",
           "model.args={width: 8, blocks: 1, low_blocks: 1}", f"data.train={pairs}",
           "data.val=", "data.crop=32", "data.batch_size=2", "data.workers=1",
           "optim.steps=4", "optim.warmup_steps=1", "val_every=100000"]
    # StepSampler hands out samples in order (step s: 2s, 2s+1 mod 4): step 1 reads p2.
    bad = pairs / "target" / "p2.png"
    bad.write_bytes(bad.read_bytes()[:60])
    # The run that trains needs no process of its own (its start-up, torch's import, is 7 s):
    # here, its loader worker forked from this one; capfd holds what either writes.
    assert main([*cmd[3:], f"out={tmp_path / 'one'}"]) == 0, capfd.readouterr().err[-2000:]
    err = capfd.readouterr().err
    assert "p2.png" in err and "truncated" in err, err[-2000:]
    for p in (pairs / "target").glob("*.png"):
        p.write_bytes(p.read_bytes()[:60])
    r = subprocess.run([*cmd, f"out={tmp_path / 'none'}"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("sharpen train: error: no readable sample: all 4"), last
    assert "Traceback" not in r.stderr


def test_a_bad_validation_pair_is_skipped_by_name_not_fatal_at_the_first_validation(
        tmp_path, capsys):
    """A pair whose sizes differ (or a truncated file) in the validation set used to stop the
    run at its first validation, naming no file, after every step since the last checkpoint;
    resuming ran into it again. It is now skipped with a line naming it, as in training."""
    import numpy as np

    from distill.images import write_image
    from distill.validation import load_val_items
    rng = np.random.default_rng(0)
    val = tmp_path / "val"
    for i in range(3):
        img = rng.random((40, 48, 3)).astype(np.float32)
        write_image(val / "input" / f"v{i}.png", img * 0.9)
        write_image(val / "target" / f"v{i}.png", img if i != 1 else img[:20, :24])
    (val / "input" / "v2.png").write_bytes((val / "input" / "v2.png").read_bytes()[:60])
    with runtime_warnings() as said:
        items = load_val_items(tiny_cfg(tmp_path / "r", 1, **{"data.val": val,
                                                            "data.val_max_images": 3}))
    assert [v.name for v in items] == ["v0"]
    err = " ".join(said)
    assert f"sizes differ: {val / 'input' / 'v1.png'} 48x40, {val / 'target' / 'v1.png'} 24x20" \
        in err
    assert "v2.png" in err
    (val / "input" / "v0.png").unlink()
    (val / "target" / "v0.png").unlink()
    with pytest.raises(ValueError, match="no readable validation pair"), \
            pytest.warns(SharpenWarning, match="validation pair skipped"):
        load_val_items(tiny_cfg(tmp_path / "r", 1, **{"data.val": val}))
    # A set with train/test splits only (GoPro; a corpus of a few photos, whose val split
    # came out empty): validation (and best.pt) uses test, and warns that it is what
    # `sharpen evaluate` scores by default (a "note:" did not say so).
    img = rng.random((40, 48, 3)).astype(np.float32)
    gopro_like = tmp_path / "gopro_like"
    for split in ("train", "test"):
        write_image(gopro_like / split / "input" / "a.png", img * 0.9)
        write_image(gopro_like / split / "target" / "a.png", img)
    with pytest.warns(SharpenWarning) as said:
        assert len(load_val_items(tiny_cfg(tmp_path / "r", 1,
                                           **{"data.val": gopro_like}))) == 1
    msg = " ".join(str(w.message) for w in said)
    assert (f"data.val={gopro_like} has no 'val' split; validating (and choosing best.pt) on "
            f"its 'test' split, the images `sharpen evaluate --data {gopro_like}` scores by "
            "default") in msg


class _Brighter:
    """A stand-in teacher for `run_labels` (its output: the input, brighter)."""
    device, config_name, weights_id, model = "cpu", "stand-in", "stand-in", None

    def sharpen(self, image, tile=0, overlap=0, batch_size=1):
        import numpy as np
        return np.clip(image * 1.2, 0, 1)


def _footage(folder, n, seed):
    import numpy as np

    from distill.images import write_image
    rng = np.random.default_rng(seed)
    for i in range(n):
        write_image(folder / f"f{i}.png", rng.random((40, 48, 3)).astype(np.float32))
    return folder


def test_validation_images_that_are_training_images_are_warned_about(tmp_path, capsys):
    """Footage has no split: a validation cache labelled from the same folder or clip (another
    --limit takes the same first and last frames) scored, and chose best.pt on, images the
    student trained on, without a word."""
    from distill.data.labels import run_labels
    kw = dict(teacher=_Brighter(), tile=0, overlap=0, progress=False)
    foot = _footage(tmp_path / "footage", 4, 0)
    run_labels(str(foot), tmp_path / "train", **kw)
    run_labels(str(foot), tmp_path / "val", limit=2, **kw)
    run_labels(str(_footage(tmp_path / "other", 2, 1)), tmp_path / "held-out", **kw)
    capsys.readouterr()
    student = {"task": "student", "data.labels": tmp_path / "train"}
    with runtime_warnings() as said:
        train(tiny_cfg(tmp_path / "a", 1, **student, **{"data.val_labels": tmp_path / "val"}),
              quiet=True)
    err = " ".join(said)
    assert (f"2 of the 2 images of data.val_labels={tmp_path / 'val'} are training "
            f"images too, in data.labels={tmp_path / 'train'} (f0, f3)") in err, err
    assert "(f0, f3)" in (tmp_path / "a" / "train.log").read_text()
    with runtime_warnings() as said:
        train(tiny_cfg(tmp_path / "b", 1, **student,
                       **{"data.val_labels": tmp_path / "held-out"}), quiet=True)
    assert "training images too" not in " ".join(said)


def test_the_shared_images_warning_stays_in_train_log_of_a_restart(tmp_path, capsys):
    """With resume=never over an earlier run, the "training images too" warning was written to
    train.log before the earlier run's train.log was removed: the new log lost it."""
    from distill.data.labels import run_labels
    kw = dict(teacher=_Brighter(), tile=0, overlap=0, progress=False)
    foot = _footage(tmp_path / "footage", 3, 0)
    run_labels(str(foot), tmp_path / "train", **kw)
    run_labels(str(foot), tmp_path / "val", limit=2, **kw)
    over = {"task": "student", "data.labels": tmp_path / "train",
            "data.val_labels": tmp_path / "val"}
    with pytest.warns(SharpenWarning, match="are training images too"):
        train(tiny_cfg(tmp_path / "a", 1, **over), quiet=True)
    with runtime_warnings() as said:
        train(tiny_cfg(tmp_path / "a", 1, resume="never", **over))
    err = capsys.readouterr().err
    assert "resume=never: starting over" in err and "training images too" in " ".join(said), err
    log = (tmp_path / "a" / "train.log").read_text()
    assert log.count("are training images too") == 1, log
    assert log.index("training images too") < log.index("started step 0"), log


def test_only_the_validation_images_kept_are_read(tmp_path, capsys):
    """Every pair of data.val_labels was read at full resolution to keep data.val_max_images
    of them: a validation cache of 300 labelled 1080p frames took ~15 GB before the first
    step. The one not picked is not read (its damaged label is never seen); a damaged pick is
    replaced by its nearest neighbour."""
    from distill.data.labels import run_labels
    from distill.validation import load_val_items
    run_labels(str(_footage(tmp_path / "footage", 3, 0)), tmp_path / "val", teacher=_Brighter(),
               tile=0, overlap=0, progress=False)
    label = tmp_path / "val" / "labels" / "f1.png"
    good = label.read_bytes()
    label.write_bytes(good[:60])
    cfg = tiny_cfg(tmp_path / "r", 1, task="student", **{"data.labels": tmp_path / "val",
                                                         "data.val_labels": tmp_path / "val",
                                                         "data.val_max_images": 2})
    with runtime_warnings() as said:
        assert [v.name for v in load_val_items(cfg)] == ["f0", "f2"]
    assert not [m for m in said if "skipped" in m], said
    cfg.data.val_max_images = 3   # reaching it: named and skipped, as before
    with pytest.warns(SharpenWarning, match="validation pair skipped"):
        assert [v.name for v in load_val_items(cfg)] == ["f0", "f2"]
    label.write_bytes(good)
    last = tmp_path / "val" / "labels" / "f2.png"
    last.write_bytes(last.read_bytes()[:60])
    cfg.data.val_max_images = 2
    with pytest.warns(SharpenWarning, match="f2.png"):
        assert [v.name for v in load_val_items(cfg)] == ["f0", "f1"]


def test_validation_frames_are_spread_over_the_footage_not_its_first(tmp_path, capsys):
    """data.val_max_images took the first pairs by name: of a validation cache of two clips,
    the opening frames of the first clip. They are now spread evenly over the sorted set, and
    the console and train.log say which were taken."""
    from distill.data.labels import run_labels
    from distill.validation import load_val_items
    foot = tmp_path / "footage"
    for clip in ("a", "b"):
        for i in range(6):
            (foot / clip).mkdir(parents=True, exist_ok=True)
            (_footage(tmp_path / "tmp", 1, ord(clip) * 10 + i) / "f0.png").rename(
                foot / clip / f"{clip}{i}.png")
    run_labels(str(foot), tmp_path / "val", teacher=_Brighter(), tile=0, overlap=0,
               progress=False)
    capsys.readouterr()
    over = {"task": "student", "data.labels": tmp_path / "val",
            "data.val_labels": tmp_path / "val", "data.val_max_images": 4}
    assert [v.name for v in load_val_items(tiny_cfg(tmp_path / "r", 1, **over))] == \
        ["a0", "a4", "b1", "b5"]
    said = (f"note: data.val_labels={tmp_path / 'val'} holds 12 validation pairs: validating "
            "on 4 of them (data.val_max_images=4), spread evenly over them in name order "
            "(a0, a4, b1, b5)")
    assert said in capsys.readouterr().err
    with pytest.warns(SharpenWarning, match="12 of the 12 images of data.val_labels=.* are "
                      "training images too"):   # one cache for both, on purpose
        train(tiny_cfg(tmp_path / "run", 1, **over), quiet=True)
    assert said in (tmp_path / "run" / "train.log").read_text()
    capsys.readouterr()
    over["data.val_max_images"] = 12   # all of them: nothing to say
    assert len(load_val_items(tiny_cfg(tmp_path / "r", 1, **over))) == 12
    assert "validating on" not in capsys.readouterr().err


def test_the_validation_note_names_gopro_frames_with_their_sequence(tmp_path, capsys):
    """GoPro numbers the frames of each sequence from 000001: the note said which were taken
    as "000001, 000003, 000001, 000003", not which sequence each came from."""
    import cv2
    import numpy as np
    from distill.validation import load_val_items
    g = tmp_path / "GOPRO_Large"
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for seq in ("GOPR0384_11_00", "GOPR0385_11_01"):
            for i in range(1, 4):
                for sub in ("blur", "sharp"):
                    (g / split / seq / sub).mkdir(parents=True, exist_ok=True)
                    img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
                    cv2.imwrite(str(g / split / seq / sub / f"{i:06d}.png"), img)
    cfg = tiny_cfg(tmp_path / "r", 1, **{"data.train": g, "data.val": g,
                                         "data.val_max_images": 4})
    with pytest.warns(SharpenWarning, match="no 'val' split"):
        assert len(load_val_items(cfg)) == 4
    assert ("spread evenly over them in name order (GOPR0384_11_00/000001, "
            "GOPR0384_11_00/000003, GOPR0385_11_01/000001, GOPR0385_11_01/000003)"
            ) in capsys.readouterr().err


def test_model_args_and_crop_are_checked_before_training(tmp_path):
    """Restormer's model.args other than `config` were ignored, typos included, while
    config.yaml recorded them; a crop the model cannot divide failed at step 1 with a shape
    error from deep inside it."""
    from distill.trainer import build_model

    model, arch, args = build_model(tiny_cfg(tmp_path, 1, **{
        "model.arch": "restormer", "model.args": "{config: tiny, dim: 8}"}))
    assert arch == "restormer" and args["dim"] == 8 and model.config.dim == 8
    with pytest.raises(ValueError, match="restormer has no argument 'dimm'"):
        build_model(tiny_cfg(tmp_path, 1, **{"model.arch": "restormer",
                                             "model.args": "{config: tiny, dimm: 8}"}))
    with pytest.raises(ValueError, match="do not build a Restormer"):
        build_model(tiny_cfg(tmp_path, 1, **{"model.arch": "restormer",
                                             "model.args": "{config: tiny, heads: [3, 3, 3, 3]}"}))
    with pytest.raises(ValueError, match=r"data.crop=36 is not a multiple of 8, which fast "
                                         r"needs \(e.g. data.crop=32\)"):
        build_model(tiny_cfg(tmp_path, 1, **{"data.crop": 36}))


def test_init_takes_shipped_names_and_the_configs_models_paths_from_any_folder(tmp_path,
                                                                               monkeypatch):
    """`init=fast` failed ('checkpoint not found: fast') where evaluate and export take the
    name, and the shipped configs' `init: models/student-fast.pt` only worked from the
    project's folder."""
    from distill.teacher import models_dir, resolve_weights

    shipped = models_dir() / "student-fast.pt"
    monkeypatch.chdir(tmp_path)
    assert resolve_weights("models/student-fast.pt") == shipped
    want = load_student(shipped)[0].state_dict()
    for init in ("fast", "models/student-fast.pt"):
        t = Trainer(load_config(None, [f"out={tmp_path / 'r'}", "model.arch=fast",
                                       f"init={init}", "data.crop=64"]), quiet=True)
        got = t.model.state_dict()
        assert all(torch.equal(got[k], want[k]) for k in want)


def test_a_resume_does_not_need_the_init_checkpoint_any_more(tmp_path):
    """The weights come from last.pt: a resume failed ("init=...: checkpoint not found ...
    train it first") once the checkpoint init= named was moved or deleted."""
    init = tmp_path / "init.pt"
    train(tiny_cfg(tmp_path / "first", 1), quiet=True)
    (tmp_path / "first" / "last.pt").rename(init)
    train(tiny_cfg(tmp_path / "r", 4, init=init, stop_after=2), quiet=True)
    init.unlink()
    train(tiny_cfg(tmp_path / "r", 4, init=init), quiet=True)
    assert read_checkpoint(tmp_path / "r" / "last.pt")["step"] == 4
    with pytest.raises(ValueError, match="init=.*checkpoint not found"):   # a new run needs it
        train(tiny_cfg(tmp_path / "new", 4, init=init), quiet=True)


def test_a_resume_refuses_an_init_its_run_did_not_start_from(tmp_path):
    """The fine-tune line run where a from-scratch run had stopped resumed that run: init=fast
    was only listed among the changed settings ("the run goes on with the new ones"), the
    scratch weights trained on, and the config, the compare line and evaluate all said fast."""
    init = tmp_path / "init.pt"
    train(tiny_cfg(tmp_path / "first", 1), quiet=True)
    (tmp_path / "first" / "last.pt").rename(init)
    train(tiny_cfg(tmp_path / "r", 4, stop_after=2), quiet=True)   # from scratch
    with pytest.raises(ValueError, match=(
            rf"cannot resume {tmp_path / 'r' / 'last.pt'} with init={init}: its run started "
            r"from scratch \(no init=\)")):
        train(tiny_cfg(tmp_path / "r", 4, init=init), quiet=True)
    assert read_checkpoint(tmp_path / "r" / "last.pt")["step"] == 2   # nothing trained
    train(tiny_cfg(tmp_path / "r", 4, init=init, resume="never"), quiet=True)   # as it says
    train(tiny_cfg(tmp_path / "f", 4, init=init, stop_after=2), quiet=True)
    (tmp_path / "link.pt").symlink_to(init)
    train(tiny_cfg(tmp_path / "f", 4, init=tmp_path / "link.pt"), quiet=True)   # the same file
    train(tiny_cfg(tmp_path / "f", 6), quiet=True)   # init= left out: it goes on from init
    assert read_checkpoint(tmp_path / "f" / "last.pt")["step"] == 6


def test_usage_mistakes_get_one_line_not_a_traceback(tmp_path, capsys):
    from sharpen.cli import main

    def err_of(*argv):
        rc = main(list(argv))
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and "Traceback" not in "\n".join(err)
        return err[-1]

    assert err_of("train", "out=", "--quiet").endswith("out= is empty: give the run's folder "
                                                        "(e.g. out=runs/mine)")
    line = err_of("train", f"out={tmp_path / 'r'}", "optim.stpes=3", "--quiet")
    assert line.startswith("sharpen train: error: unknown config key 'optim.stpes'; did you "
                           "mean optim.steps?")
    if not torch.cuda.is_available():
        assert "device=cuda: " in err_of("train", f"out={tmp_path / 'r'}", "device=cuda",
                                         "--quiet")
        assert "--device cuda: " in err_of("labels", "--data", str(tmp_path), "--out",
                                           str(tmp_path / "l"), "--device", "cuda", "--quiet")


@pytest.mark.parametrize("command", ["train", "distill", "train-teacher"])
def test_training_commands_take_threads_as_the_others_do(tmp_path, capsys, command):
    """`sharpen train --threads 1` was "unrecognized arguments": only OMP_NUM_THREADS set them."""
    from sharpen.cli import main

    out = tmp_path / "r"
    assert main([command, f"out={out}", "--threads", "-1", "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"sharpen {command}: error: --threads must be >= 0 (0: MKL_NUM_THREADS or else "
        "OMP_NUM_THREADS when set, else a CPU limit's count, else all cores), got -1")
    assert not out.exists()
    if command != "train":   # the refusal above is the same code path for all three
        return
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:   # the option after an override, where argparse hands the rest back
        rc = main(["train", f"out={out}", "model.arch=fast",
                   "model.args={width: 8, blocks: 1, low_blocks: 1}", "--threads", "1",
                   "optim.steps=2", "data.crop=32", "data.batch_size=2", "data.workers=0",
                   "val_every=1000", "data.val_max_images=1", "data.val_max_side=64",
                   "device=cpu", "--quiet"])
        assert rc == 0, capsys.readouterr().err
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert read_checkpoint(out / "last.pt")["step"] == 2


TINY_CLI = ["model.arch=fast", "model.args={width: 8, blocks: 1, low_blocks: 1}",
            "data.crop=32", "data.batch_size=2", "data.workers=0", "val_every=1000",
            "data.val_max_images=1", "data.val_max_side=64", "device=cpu", "--quiet"]


def test_a_run_stopped_by_its_budget_does_not_end_with_done(tmp_path, capsys):
    """stop_after/max_minutes printed "stopped at step 4 of 8" and then "done: best.pt,
    last.pt", exit 0, reading as if training had finished."""
    from sharpen.cli import main

    out = tmp_path / "r"
    rc = main(["train", f"out={out}", "optim.steps=8", "stop_after=4", "resume=never",
               *TINY_CLI])
    std = capsys.readouterr()
    assert rc == 0, std.err
    last = std.out.strip().splitlines()[-1]
    assert not any(ln.startswith("done") for ln in std.out.splitlines()), std.out
    assert last.startswith("stopped early at step 4 of 8 (time or step budget reached): "
                           f"{out / 'best.pt'}, {out / 'last.pt'}"), last
    # the stop line's advice: resume=never would start over
    assert last.endswith("to resume, run it with resume=auto (resume=never would start over)")
    assert main(["train", f"out={out}", "optim.steps=8", *TINY_CLI]) == 0
    assert capsys.readouterr().out.startswith(f"done: {out / 'best.pt'}")


def _gain(v: float, digits: int) -> str:
    """A gain over the input as the console says it: signed, a zero (a model no better or
    worse than its input, tiny runs' usual) without a sign."""
    said = f"{v:+.{digits}f}"
    return said[1:] if float(said) == 0 else said


def test_the_closing_lines_give_best_pts_own_step_and_score(tmp_path, capsys):
    """The console's last line put the last validation's score beside best.pt's name (best.pt
    had scored more, earlier), and train.log ended "best.pt scored 0.9862747391064962", or
    "best.pt scored None" for a run that validated nothing. Both now say best.pt's step and
    score, also after a resume, and the console labels the last validation as such."""
    from sharpen.cli import main

    out = tmp_path / "r"
    argv = ["train", f"out={out}", "optim.steps=6", *TINY_CLI, "val_every=2"]
    assert main([*argv, "stop_after=4"]) == 0
    assert main(argv) == 0   # resumed: best.pt's step comes from last.pt
    last = capsys.readouterr().out.strip().splitlines()[-1]
    best = read_checkpoint(out / "best.pt")
    said = f"best.pt (step {best['step']}): model_gt SSIM {best['metrics']['model_gt_ssim']:.4f}"
    f = [json.loads(ln)["val"] for ln in (out / "metrics.jsonl").read_text().splitlines()
         if '"val"' in ln][-1]
    # It read `input_gt_ssim=... model_gt_ssim=... model_gt_psnr=... input_gt_psnr=...`, in
    # that order; the validation lines above it read as these do.
    assert last == (f"done: {out / 'best.pt'}, {out / 'last.pt'}   last validation (step 6): "
                    f"model_gt PSNR {f['model_gt_psnr']:.2f} dB SSIM {f['model_gt_ssim']:.4f} "
                    f"({_gain(f['model_gt_psnr'] - f['input_gt_psnr'], 2)} dB "
                    f"{_gain(f['model_gt_ssim'] - f['input_gt_ssim'], 4)} over the input)  "
                    f"input_gt PSNR {f['input_gt_psnr']:.2f} dB SSIM {f['input_gt_ssim']:.4f}"
                    f"; {said}"), last
    assert (out / "train.log").read_text().splitlines()[-1].endswith(
        f"finished at step 6; {said}")
    none = tmp_path / "none"
    assert main(["train", f"out={none}", "optim.steps=2", *TINY_CLI, "data.val="]) == 0
    assert (none / "train.log").read_text().splitlines()[-1].endswith(
        "finished at step 2; nothing was validated: no best.pt")
    assert capsys.readouterr().out.strip() == f"done: {none / 'last.pt'}"


def test_ddp_two_processes_at_batch_b_train_as_one_process_at_batch_2b(ddp_job, tmp_path):
    """What a user moving between 1 and N GPUs at the same crops a step expects: the same
    steps. Each process's share of a step is its slice of the one-process batch, so the logged
    losses and the weights agree up to the order of float sums."""
    from sharpen.cli import main
    d = ddp_job.phase("weights")
    args = [a for a in ddp_job_phases(d)["weights"] if not a.startswith(("out=", "data.batch"))]
    assert main([*args, f"out={tmp_path / 'one'}", "data.batch_size=4"]) == 0

    def losses(run):
        return [json.loads(ln)["loss"] for ln in (run / "metrics.jsonl").read_text().splitlines()
                if '"loss"' in ln]
    assert losses(tmp_path / "one") == pytest.approx(losses(d / "ddp"), rel=1e-5)
    a, b = read_checkpoint(d / "ddp" / "last.pt"), read_checkpoint(tmp_path / "one" / "last.pt")
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-5), k


def ddp_job_phases(phase_dir) -> dict:
    return json.loads((phase_dir.parent / "phases.json").read_text())


def test_train_log_records_the_torchrun_command_a_user_would_run_again(ddp_job, monkeypatch):
    """Under torchrun train.log recorded the worker's `.../sharpen/cli.py distill ...`, which
    runs one process without DDP."""
    out = ddp_job.phase("weights") / "ddp"
    first = (out / "train.log").read_text().splitlines()[0]
    assert first.endswith(
        f"command: torchrun --nproc_per_node 2 -m sharpen.cli train out={out} optim.steps=3 "
        "optim.warmup_steps=2 log_every=1 snapshot_every=2 model.arch=fast "
        "'model.args={width: 8, blocks: 1, low_blocks: 1}' data.crop=32 "
        "data.batch_size=2 data.workers=0 val_every=1000 data.val_max_images=1 "
        "data.val_max_side=64 device=cpu --quiet"), first
    # several nodes: each runs the line with its own rendezvous options
    from distill.dist import launch_command
    for k, v in {"TORCHELASTIC_RUN_ID": "j", "LOCAL_WORLD_SIZE": "4",
                 "GROUP_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(k, v)
    assert launch_command(["/venv/bin/sharpen", "distill", "out=a b"]) == (
        "torchrun --nnodes 2 --nproc_per_node 4 -m sharpen.cli distill 'out=a b' (on each of "
        "the 2 nodes, with its rendezvous options)")
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")   # not torchrun: the console script as typed
    assert launch_command(["/venv/bin/sharpen", "distill", "out=a b"]) == \
        "sharpen distill 'out=a b'"
    assert launch_command(["/x/app.py", "a b"]) == "/x/app.py 'a b'"   # another program


@pytest.mark.filterwarnings(   # the test resumes with other optim.steps on purpose
    "ignore:resuming .* with settings of its own changed:runtime.warn.SharpenWarning")
def test_a_second_run_into_the_same_out_is_refused_until_the_first_dies(tmp_path):
    """Two runs resuming one last.pt would overwrite each other's checkpoints and log."""
    from distill.run_lock import RunLocked

    out = tmp_path / "r"
    with held_elsewhere(RUN_LOCK_HOLDER, str(out)) as holder:
        with pytest.raises(RunLocked, match=f"another run is training into {out} "
                                            f"\\(process {holder.pid}\\)"):
            train(tiny_cfg(out, 2), quiet=True)
        assert not (out / "last.pt").exists()
    train(tiny_cfg(out, 2), quiet=True)
    assert read_checkpoint(out / "last.pt")["step"] == 2
    train(tiny_cfg(out, 3), quiet=True)   # the finished run let go of it: resuming works
    assert read_checkpoint(out / "last.pt")["step"] == 3
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="out=.*file is a file; a run's out= is a folder"):
        train(tiny_cfg(tmp_path / "file", 2), quiet=True)


def test_a_run_refused_by_a_brief_write_is_told_what_holds_the_folder(tmp_path):
    """`sharpen grow` or slim_checkpoint writing into out= holds its lock for a moment: the
    run refused was told "another run is training into" it."""
    out = tmp_path / "r"
    out.mkdir()
    with held_elsewhere("import sys, time; from distill.run_lock import writing_into\n"
                        "with writing_into(sys.argv[1], sys.argv[1] + '/g.pt'):\n"
                        "    print('held', flush=True); time.sleep(120)", str(out)) as holder:
        with pytest.raises(ValueError, match=f"another process is writing g.pt into {out} "
                                             f"\\(process {holder.pid}\\); it is done in "
                                             "moments: try again"):
            train(tiny_cfg(out, 2), quiet=True)


def test_a_run_that_locks_the_file_a_finished_run_removed_tries_again(tmp_path, monkeypatch):
    """A finished run removes out/.lock. One that opened the file just before and locks it just
    after holds a lock on a removed file: it must lock the new one, or a third run would go on
    beside it."""
    import os

    from distill.run_lock import LOCK_NAME, RunLocked, run_lock

    out = tmp_path / "r"
    with run_lock(out):
        stale = os.open(out / LOCK_NAME, os.O_RDWR)   # opened while the first run holds it
        (out / "last.pt").write_bytes(b"")
    assert not (out / LOCK_NAME).exists()
    real_open, opens = os.open, []

    def open_stale_first(path, *a, **kw):   # the second run's open() came before the removal
        opens.append(path)
        return stale if len(opens) == 1 else real_open(path, *a, **kw)

    monkeypatch.setattr(os, "open", open_stale_first)
    with run_lock(out):
        assert len(opens) == 2 and (out / LOCK_NAME).exists()
        with pytest.raises(RunLocked, match="another run is training into"), run_lock(out):
            pass
    assert not (out / LOCK_NAME).exists()


def _lr_at(out, step):
    recs = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    return next(r["lr"] for r in recs if r.get("step") == step and "lr" in r)


def test_a_changed_learning_rate_is_used_after_resume(tmp_path, capsys):
    """The optimizer's and scheduler's saved state brought the old lr back: a resume with
    optim.lr changed said the new one was used, and trained on with the old."""
    from distill.train_state import lr_lambda

    out = tmp_path / "r"
    train(tiny_cfg(out, 8, stop_after=3), quiet=True)
    cfg = tiny_cfg(out, 8, **{"optim.lr": 1e-2, "optim.weight_decay": 0.5})
    t = Trainer(cfg, quiet=True)
    assert t.step == 3
    assert all(g["weight_decay"] == 0.5 for g in t.opt.param_groups)
    with pytest.warns(SharpenWarning, match=r"optim.lr: 0.001 -> 0.01\b"):   # once it starts
        t.fit()
    f = lr_lambda(cfg)
    assert _lr_at(out, 5) == pytest.approx(1e-2 * f(4))   # step 5 ran at the schedule's 4
    # best.pt holds no optimizer state: the schedule goes on at its step, said so.
    best = read_checkpoint(out / "best.pt")
    with pytest.warns(SharpenWarning, match=r"holds weights only \(no optimizer state"):
        t = Trainer(tiny_cfg(tmp_path / "b", 12, resume=str(out / "best.pt"), stop_after=1),
                    quiet=True)
    assert t.step == best["step"] > 0
    assert t.best == pytest.approx(best["metrics"]["model_gt_ssim"])   # the score to beat
    assert t.opt.param_groups[0]["lr"] == pytest.approx(1e-3 * lr_lambda(t.cfg)(t.step))
    with pytest.warns(SharpenWarning, match=r"optim.steps: 8 -> 12\b"):
        t.fit()


def test_a_snapshot_resumed_is_held_to_best_pt_s_score_not_to_an_earlier_validation(tmp_path):
    """stepN.pt carries the metrics of the last validation, which may be of an earlier step:
    resumed, that score was taken as best.pt's, credited to the snapshot's step, so a
    validation worse than best.pt but better than that one replaced it."""
    out = tmp_path / "r"
    train(tiny_cfg(out, 6, val_every=3, snapshot_every=4), quiet=True)
    snap = read_checkpoint(out / "step4.pt")
    assert snap["step"] == 4 and snap["metrics"]["step"] == 3   # validated at 3, not at 4
    best = read_checkpoint(out / "best.pt")
    with pytest.warns(SharpenWarning, match="holds weights only"):
        t = Trainer(tiny_cfg(out, 6, resume=str(out / "step4.pt")), quiet=True)
    assert t.step == 4
    assert t.best == pytest.approx(best["metrics"]["model_gt_ssim"])
    assert t.best_step == best["step"] == best["metrics"]["step"]
    # Alone in a folder without best.pt, a score of another step is not the snapshot's own.
    (tmp_path / "s").mkdir()
    shutil.copy(out / "step4.pt", tmp_path / "s" / "step4.pt")
    with pytest.warns(SharpenWarning, match="holds weights only"):
        t = Trainer(tiny_cfg(tmp_path / "s", 6, resume=str(tmp_path / "s" / "step4.pt")),
                    quiet=True)
    assert t.best is None and t.best_step is None


def test_starting_over_waits_until_the_new_run_can_start(tmp_path, capsys):
    """resume=never removed the run before (best.pt, log) before checking its own inputs,
    and kept its last.pt, which the next plain command resumed; a run killed before its first
    checkpoint left a log the next run appended to (every step twice)."""
    out = tmp_path / "r"
    train(tiny_cfg(out, 3), quiet=True)
    before = {n: (out / n).read_bytes() for n in ("best.pt", "last.pt", "metrics.jsonl")}
    with pytest.raises(ValueError, match="label cache not found"):
        train(tiny_cfg(out, 2, resume="never", task="student",
                       **{"data.labels": str(tmp_path / "nolabels")}), quiet=True)
    assert {n: (out / n).read_bytes() for n in before} == before
    train(tiny_cfg(out, 2, resume="never", ckpt_every=1000))
    assert "starting over" in capsys.readouterr().err
    assert read_checkpoint(out / "last.pt")["step"] == 2
    (out / "last.pt").unlink()   # deleted to save space: best.pt is not replaced unasked
    with pytest.raises(ValueError, match=rf"{out} holds best.pt but no last.pt to resume: "
                                         rf"resume={out / 'best.pt'} goes on from its weights"):
        train(tiny_cfg(out, 2), quiet=True)
    assert (out / "best.pt").is_file()
    (out / "best.pt").unlink()   # as if killed before its first checkpoint and validation
    train(tiny_cfg(out, 2))
    assert "no last.pt to resume" in capsys.readouterr().err
    steps = [json.loads(ln)["step"] for ln in (out / "metrics.jsonl").read_text().splitlines()
             if "loss" in ln]
    assert steps == [1, 2], steps


def test_a_fine_tune_killed_before_its_first_checkpoint_is_started_over_by_the_same_command(
        tmp_path, capsys):
    """val_start=true writes best.pt at step 0 (the weights it starts from, nothing trained): a
    run killed (SIGKILL, out of memory, a reboot) before its first checkpoint left it and no
    last.pt, and the same command was refused as if trained weights stood to be lost."""
    out = tmp_path / "ft"
    # As tiny_cfg's run, long enough to be killed before its first checkpoint.
    cli = [sys.executable, "-m", "sharpen", "train", "--quiet", f"out={out}", "task=teacher",
           "model.arch=fast", "model.args={width: 8, blocks: 1, low_blocks: 1}",
           "optim.steps=100000", "optim.warmup_steps=2", "data.crop=32", "data.batch_size=2",
           "data.workers=0", "val_every=100000", "ckpt_every=100000", "data.val_max_images=1",
           "data.val_max_side=64", "val_start=true"]
    proc = subprocess.Popen(cli, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 120
        while not (out / "best.pt").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
    finally:
        proc.kill()
        err = proc.communicate()[1]
    assert (out / "best.pt").exists() and not (out / "last.pt").exists(), err[-2000:]
    assert read_checkpoint(out / "best.pt")["step"] == 0
    train(tiny_cfg(out, 2, val_start="true"))   # nothing trained to keep: it starts over
    assert "no last.pt to resume" in capsys.readouterr().err
    assert read_checkpoint(out / "last.pt")["step"] == 2


def test_a_nan_score_is_logged_as_null_and_never_best(tmp_path, monkeypatch):
    import distill.trainer as trainer_mod

    monkeypatch.setattr(trainer_mod, "evaluate",
                        lambda *a, **k: {"model_gt_ssim": float("nan"), "input_gt_ssim": 0.5})
    out = tmp_path / "r"
    t = Trainer(tiny_cfg(out, 2), quiet=True)
    t._validate([object()])
    assert t.best is None and not (out / "best.pt").exists()
    rec = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert rec["val"]["model_gt_ssim"] is None


@pytest.mark.parametrize("override, message", [
    ("val_every=0", "val_every must be >= 1, got 0"),
    ("optim.grad_clip=-1", "optim.grad_clip must be >= 0 (0: no clipping)"),
    ("loss.ssim=-1", "loss.ssim must be >= 0"),
    ("optim.steps=0", "optim.steps must be >= 1"),
    ("optim.lr=-1", "optim.lr must be > 0"),
    ("optim.ema_decay=2", "optim.ema_decay must be below 1"),
    ("max_minutes=-1", "max_minutes must be >= 0 (0: no limit)"),
    ("data.crop=8", "data.crop must be >= 16"),
    ("optim.betas=0.9", "optim.betas must be a list of 2 numbers"),
    ("model.args=3", "model.args must be a mapping"),
    ("data.train=[a, b]", "data.train must be a string"),
    ("optim.lr=[1", "the value is not valid YAML"),
    ("resume=", "resume= is empty"),
])
def test_out_of_range_and_ill_typed_settings_are_one_line_errors(tmp_path, capsys, override,
                                                                  message):
    from sharpen.cli import main

    rc = main(["train", f"out={tmp_path / 'r'}", override, "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and message in err, err
    assert not (tmp_path / "r").exists()


def test_a_config_not_found_says_where_the_projects_is_or_the_nearest_name(
        tmp_path, capsys, monkeypatch):
    """`--config configs/distill-fast.yaml`, as the README writes it, from another folder than
    the checkout, and a misspelt config name, both said only "config file not found"."""
    from sharpen.cli import main

    def err_of(*argv):
        assert main(list(argv)) == 2
        return capsys.readouterr().err.strip().splitlines()[-1]

    monkeypatch.chdir(tmp_path)
    project = Path(__file__).resolve().parents[1]
    assert err_of("distill", "--config", "configs/distill-fast.yaml") == (
        "sharpen distill: error: config file not found: configs/distill-fast.yaml (from "
        f"{tmp_path}; the project's is {project / 'configs' / 'distill-fast.yaml'}: give that "
        f"path, or run from {project})")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "distill-footage.yaml").write_text("task: student\n")
    assert err_of("distill", "--config", "mine/distill-fotage.yaml").endswith(
        "config file not found: mine/distill-fotage.yaml; did you mean "
        "mine/distill-footage.yaml?")
    assert err_of("distill", "--config", "mine/other.yaml").endswith(
        "config file not found: mine/other.yaml")


def test_config_file_and_out_mistakes_are_one_line_errors(tmp_path, capsys):
    from sharpen.cli import main

    def err_of(*argv):
        rc = main(list(argv))
        err = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in err, err
        return err.strip().splitlines()[-1]

    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lr: [1\n")
    assert "bad.yaml is not valid YAML" in err_of("train", "--config", str(bad), "--quiet")
    assert "is a folder; give a YAML file" in err_of("train", "--config", str(tmp_path))
    (tmp_path / "inner.yaml").write_text("data:\n  crops: 64\n")
    assert "unknown config key 'data.crops'; did you mean data.crop?" in err_of(
        "train", "--config", str(tmp_path / "inner.yaml"))
    (tmp_path / "afile").write_text("x")
    assert "afile is a file, not a folder" in err_of("train", f"out={tmp_path / 'afile' / 's'}",
                                                     "--quiet")
    # It was "unknown student 'fastt'; choose from [...]": no key, no guess, and for `train`
    # (any model) no word of restormer.
    assert err_of("train", f"out={tmp_path / 'f'}", "model.arch=fastt", "--quiet").endswith(
        "model.arch=fastt: no such model; did you mean fast? `sharpen train` takes a student "
        "(edge, fast, fast-detail, fast-plain, fast-s2, fast-wide, seed, seed-residual; "
        "`sharpen models` lists them) or restormer; a student of your own: name the module "
        "that registers it in SHARPEN_STUDENTS")
    assert "did you mean" not in err_of("distill", f"out={tmp_path / 'f'}", "model.arch=zzz",
                                        "--quiet")
    assert "trains the Restormer teacher, not model.arch=fast" in err_of(
        "train-teacher", f"out={tmp_path / 't'}", "model.arch=fast", "--quiet")
    # A config's task: contradicting the command trained something else, exit 0.
    student_cfg = tmp_path / "kd.yaml"
    student_cfg.write_text("task: student\ndata:\n  labels: runs/labels/train\n")
    assert "is a distillation config (task: student): run it with `sharpen distill`" in err_of(
        "train", "--config", str(student_cfg), f"out={tmp_path / 'k'}", "--quiet")
    assert "is a ground-truth config (task: teacher)" in err_of(
        "distill", f"out={tmp_path / 'k'}", "task=teacher", "--quiet")
    assert not (tmp_path / "k").exists()
    # A missing prerequisite of a shipped config: which setting, and which command makes it.
    assert "data.labels=nope/train: label cache not found: nope/train (make it with `sharpen " \
        "labels --data DATA --out nope/train`)" in err_of(
            "distill", f"out={tmp_path / 'k'}", "data.labels=nope/train", "--quiet")
    assert "init=nope/last.pt: checkpoint not found" in err_of(
        "train", f"out={tmp_path / 'k'}", "init=nope/last.pt", "--quiet")
    # a shipped name misspelt: named by its key too (it was the bare name, which setting?)
    assert "error: init=fats: 'fats' is neither a file nor a shipped model" in err_of(
        "train", f"out={tmp_path / 'k'}", "init=fats", "--quiet")
    assert "data.train=nope: data source not found: nope (build it with `sharpen corpus" in \
        err_of("train", f"out={tmp_path / 'k'}", "data.train=nope", "--quiet")
    for cmd in (["corpus", "--photos", str(tmp_path)], ["synth", "--sharp", str(tmp_path)],
                ["labels", "--data", str(tmp_path)]):
        assert "afile is a file, not a folder" in err_of(*cmd, "--out", str(tmp_path / "afile"),
                                                         "--quiet")
    pairs = tmp_path / "pairs"
    (pairs / "blur").mkdir(parents=True)
    assert "is inside --data" in err_of("labels", "--data", str(pairs), "--out",
                                        str(pairs / "blur" / "l"), "--quiet")
    assert "--limit must be >= 1, got 0" in err_of("labels", "--data", str(pairs), "--out",
                                                   str(tmp_path / "l"), "--limit", "0")


def test_an_init_of_another_size_says_what_it_was_built_as(tmp_path, capsys):
    from sharpen.cli import main

    rc = main(["train", f"out={tmp_path / 'r'}", "model.arch=fast", "init=fast",
               "model.args={width: 8}", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    assert "init=" in err and "holds fast with model.args={" in err and "width" in err, err
    assert "this run builds fast with model.args={'width': 8}" in err, err


def test_an_unusable_folder_or_checkpoint_is_named_by_its_key(tmp_path, capsys):
    """"folder source X has no ground truth" read the same for data.train as for data.val (one
    folder may be both), and "checkpoint not found: X" did not say it was resume=."""
    import numpy as np

    from distill.images import write_image
    from sharpen.cli import main
    photos = tmp_path / "photos"
    write_image(photos / "a.png", np.full((40, 40, 3), 0.5, np.float32))
    base = ["train", "model.arch=fast", "model.args={width: 8, blocks: 1, low_blocks: 1}",
            "data.crop=32", "data.workers=0", "optim.steps=1", "--quiet"]
    for key in ("data.train", "data.val"):
        other = "data.val=" if key == "data.train" else "data.train=embedded"
        assert main([*base, f"out={tmp_path / 'r'}", f"{key}={photos}", other]) == 2
        err = capsys.readouterr().err
        assert f"error: {key}={photos}: folder source" in err and "no ground truth" in err, err
        # ... and what to do with such a folder: it named no command.
        assert (f"sharp photos become pairs with `sharpen synth --sharp {photos} --out PAIRS`; "
                f"blurred footage trains a student with `sharpen labels --data {photos} --out "
                "CACHE` then `sharpen distill data.labels=CACHE`") in err, err
    assert main([*base, f"out={tmp_path / 'r'}", f"resume={tmp_path / 'no.pt'}"]) == 2
    err = capsys.readouterr().err
    assert f"error: resume={tmp_path / 'no.pt'}: checkpoint not found" in err, err
    assert not (tmp_path / "r").exists()


def test_an_empty_data_folder_says_what_the_key_must_hold(tmp_path, capsys):
    """An empty data.train or data.val was "no images or videos found" with a list of video
    extensions, though training on ground truth takes a paired folder only."""
    from sharpen.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    base = ["train", "model.arch=fast", "model.args={width: 8, blocks: 1, low_blocks: 1}",
            "data.crop=32", "data.workers=0", "optim.steps=1", "--quiet"]
    for key in ("data.train", "data.val"):
        assert main([*base, f"out={tmp_path / 'r'}", f"{key}={empty}"]) == 2
        err = capsys.readouterr().err
        assert f"error: {key}={empty}: no images in {empty}: a ground-truth source is a paired " \
            "folder, input/ + target/ (or blur/ + sharp/) holding same-named images" in err, err
        assert "mp4" not in err, err
    assert not (tmp_path / "r").exists()


def test_a_validation_folder_that_is_no_label_cache_is_told_to_give_data_val_labels(tmp_path):
    """data.val_labels=EMPTY ended "... and give data.labels=CACHE", the training key."""
    from distill.validation import load_val_items

    empty = tmp_path / "empty"
    empty.mkdir()
    cfg = load_config(None, ["task=student", f"data.val_labels={empty}"])
    with pytest.raises(ValueError) as e:
        load_val_items(cfg, progress=False)
    assert str(e.value).startswith(f"data.val_labels={empty}: {empty} is not a label cache")
    assert str(e.value).endswith("and give data.val_labels=CACHE"), str(e.value)


def test_text_log_and_interval_records(tmp_path):
    """train.log tells the run's story (start, steps with ETA, validations, best, stop,
    resume); metrics.jsonl's step records average the loss over log_every steps and carry the
    learning rate those steps used (it held one batch's loss and the next step's lr)."""
    out = tmp_path / "run"
    cfg = tiny_cfg(out, 8, log_every=4, val_every=4, stop_after=4)
    t = Trainer(cfg, quiet=True)
    seen = []
    step_fn = t._train_step

    def spy(batch):
        loss, parts = step_fn(batch)
        seen.append((loss, t._lr_used))
        return loss, parts
    t._train_step = spy
    t.fit()
    (rec,) = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()
              if '"loss"' in ln]
    assert rec["step"] == 4
    assert rec["loss"] == pytest.approx(sum(v for v, _ in seen) / 4)
    assert rec["lr"] == seen[-1][1] and seen[0][1] < seen[-1][1]   # warm-up: lr rising
    train(tiny_cfg(out, 8, log_every=4, val_every=4), quiet=True)   # resumed to the end
    log = (out / "train.log").read_text().splitlines()
    text = "\n".join(log)
    assert "started step 0 of 8: fast" in log[0] and "command:" in log[0]
    assert "step 4/8  lr " in text and re.search(r"s/step \(data [\d.]+\)  eta 0:00:", text)
    assert "validation at step 4 (1 image): input_gt_psnr" in text and "-> best.pt" in text
    assert "stopped at step 4 (time or step budget reached)" in text
    assert "resumed at step 4 of 8" in text and log[-1].split(" ", 2)[2].startswith(
        "finished at step 8")


def test_the_steps_before_a_stop_and_the_last_ones_are_logged(tmp_path):
    """Steps after the last log_every record were never logged when the run stopped (signal,
    budget) or ended between records: the resumed run logs only the steps after it, so
    metrics.jsonl and train.log lost them."""
    out = tmp_path / "run"
    train(tiny_cfg(out, 7, log_every=3, stop_after=4), quiet=True)
    train(tiny_cfg(out, 7, log_every=3), quiet=True)
    recs = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()
            if '"loss"' in ln]
    assert [r["step"] for r in recs] == [3, 4, 6, 7]
    assert "step 4/7  lr" in (out / "train.log").read_text()


def test_out_naming_a_data_folder_is_refused(tmp_path):
    """`sharpen distill ... out=labels/reds` wrote checkpoints and logs into the label cache."""
    from distill.config import check_config

    cache = tmp_path / "labels"
    cfg = tiny_cfg(cache, 1, task="student", **{"data.labels": str(cache)})
    with pytest.raises(ValueError, match=re.escape(f"out={cache} is data.labels's folder")):
        check_config(cfg)
    cfg.out = str(tmp_path / "run")
    check_config(cfg)


def test_every_shipped_config_loads_and_its_comment_runs_it_with_the_right_command():
    """The configs are what users run; their comments give the command. A config whose task
    contradicts that command is now refused, so each comment must name the right one."""
    import re
    from pathlib import Path

    from distill.config import check_config, load_config

    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert len(configs) > 30
    for path in configs:
        cfg = load_config(str(path))
        check_config(cfg)
        text = path.read_text()
        own = re.findall(rf"sharpen ([\w-]+) --config configs/{re.escape(path.name)}", text)
        assert own, f"{path.name}: no command in its comments"
        for cmd in own:
            assert cmd in ("train", "train-teacher", "distill"), (path.name, cmd)
            assert (cmd == "distill") == (cfg.task == "student"), (path.name, cmd, cfg.task)


def test_a_budget_stop_says_how_to_resume_once(tmp_path, capsys):
    """The trainer printed "stopped at step 2 of 8 ...; run the same command to resume" and the
    command's last line said it again."""
    from sharpen.cli import main

    out = tmp_path / "r"
    assert main(["train", f"out={out}", "optim.steps=8", "stop_after=2", *TINY_CLI]) == 0
    std = capsys.readouterr()
    said = std.out + std.err
    assert said.count("run the same command to resume") == 1, said
    assert said.count("stopped") == 1, said
    assert std.out.strip().splitlines()[-1].startswith("stopped early at step 2 of 8")


# runpy's note on running sharpen.cli as __main__ in a process that imported it already: what
# the test does on purpose, to run `python -m sharpen.cli` in this process.
@pytest.mark.filterwarnings("ignore:'sharpen.cli' found in sys.modules:RuntimeWarning")
def test_train_log_records_a_command_that_runs_again(tmp_path, monkeypatch, capsys):
    """`python -m sharpen.cli train ...` was recorded as `/path/to/sharpen/cli.py train ...`
    (which cannot run as a script), the console script as the path to the venv's `sharpen`."""
    import os
    import runpy
    import shlex
    from pathlib import Path

    out = tmp_path / "r"
    args = ["train", f"out={out}", "optim.steps=3", "stop_after=1", *TINY_CLI]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for k in ("TORCHELASTIC_RUN_ID", "LOCAL_WORLD_SIZE"):
        env.pop(k, None)
        monkeypatch.delenv(k, raising=False)
    # `python -m sharpen.cli ARGS`, in this process: runpy is what -m runs (argv[0] becomes
    # sharpen/cli.py); the recorded line below runs in a shell of its own.
    monkeypatch.setattr(sys, "argv", [sys.argv[0], *args])
    with pytest.raises(SystemExit) as e:
        runpy.run_module("sharpen.cli", run_name="__main__", alter_sys=True)
    assert e.value.code == 0, capsys.readouterr().err[-3000:]
    # (the start line: a warning, here the 200-step warmup of a 3-step run, may come first)
    start = next(ln for ln in (out / "train.log").read_text().splitlines() if "command: " in ln)
    recorded = start.split("command: ", 1)[1]
    assert recorded == shlex.join(["python", "-m", "sharpen.cli", *args]), recorded
    assert f"in {os.getcwd()}, command: " in start   # where its relative paths are
    # the recorded line, run as a user would (the venv's python first on PATH), resumes
    r = subprocess.run(["bash", "-c", recorded], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert read_checkpoint(out / "last.pt")["step"] == 2
    assert (out / "train.log").read_text().count(f"command: {recorded}") == 2


def test_train_log_of_a_run_started_from_python_records_its_equivalent_command(
        tmp_path, monkeypatch):
    """train() in a notebook recorded the kernel's argv (`ipykernel_launcher.py -f ...`) as
    the run's command; it records the `sharpen` command that runs the same config now, and
    main(ARGV) called from Python records ARGV, not the caller's argv."""
    import shlex

    from sharpen.cli import main

    kernel = ["/venv/lib/ipykernel_launcher.py", "-f", "/run/kernel-1.json"]
    monkeypatch.setattr(sys, "argv", kernel)
    for k in ("TORCHELASTIC_RUN_ID", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    out = tmp_path / "r"
    cfg = tiny_cfg(out, 3, stop_after=1, device="cpu")
    train(cfg, quiet=True)
    first = (out / "train.log").read_text().splitlines()[0]
    assert f"started from Python ({shlex.join(kernel)}); equivalent command: " in first, first
    line = first.split("equivalent command: ", 1)[1]
    argv = shlex.split(line)
    assert argv[:2] == ["sharpen", "train"], line          # task teacher: `sharpen train`
    assert load_config(None, argv[2:], base=load_config(None, ["task=teacher"])) == cfg
    # the line, run, resumes the run (in this process: the command's work, not its startup)
    assert main([*argv[1:], "--quiet"]) == 0
    assert read_checkpoint(out / "last.pt")["step"] == 2
    second = [ln for ln in (out / "train.log").read_text().splitlines()
              if "resumed at step 1" in ln][0]
    assert second.endswith(f"command: {line} --quiet"), second


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity")
def test_more_loader_workers_than_cores_are_cut_to_the_cores_with_a_note(tmp_path, capsys):
    """configs/teacher-small.yaml's `workers: 4` started four loader processes on a 2-core
    machine, sharing its cores with training; the run now starts as many as it has cores and
    says so (train.log, and the console unless quiet)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})   # as `taskset -c N` runs it: one usable core
    try:
        out = tmp_path / "r"
        train(tiny_cfg(out, 2, **{"data.workers": 2}), quiet=True)
        assert capsys.readouterr().err == ""
        assert ("note: data.workers=2 is more than the 1 CPU core this process may use: 1 "
                "loader process instead") in (out / "train.log").read_text()
        from distill.train_loader import loader_workers
        assert (loader_workers(0), loader_workers(1), loader_workers(4)) == (0, 1, 1)
    finally:
        os.sched_setaffinity(0, before)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs CPU affinity and two cores")
def test_loader_workers_under_torchrun_share_the_cores_among_the_local_processes(
        tmp_path, monkeypatch):
    """Under torchrun each of a machine's N processes started up to all its cores' worth of
    loader processes (N times the cores in all); each now gets its share, and the note says
    so."""
    from distill.train_loader import loader_workers
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(sorted(before)[:2]))
    try:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
        assert (loader_workers(1), loader_workers(4)) == (1, 1)
        out = tmp_path / "r"
        train(tiny_cfg(out, 2, **{"data.workers": 2}), quiet=True)
        assert ("note: data.workers=2 is more than this process's share of the 2 CPU cores "
                "that the 2 training processes on this machine may use (1 core each): 1 loader "
                "process instead") in (out / "train.log").read_text()
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")   # more processes than cores
        assert loader_workers(2) == 0
    finally:
        os.sched_setaffinity(0, before)


def test_the_first_interval_after_a_resume_is_timed_from_the_resume(tmp_path):
    """Session 31's worry: the first metrics.jsonl record after resume= spanning the time the
    run was stopped. Its time and s/step are measured from the resume: within the resumed
    call, whatever the pause between the runs."""
    import time

    out = tmp_path / "r"
    train(tiny_cfg(out, 4, stop_after=2, log_every=2), quiet=True)
    time.sleep(2)                                      # the run is stopped meanwhile
    t = time.time()
    train(tiny_cfg(out, 4, log_every=2), quiet=True)
    took = time.time() - t
    recs = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    times = {r["step"]: r["time"] for r in recs if "time" in r}
    assert 0 < times[4] - times[2] <= took, (times, took)
    per = [float(m) for m in re.findall(r"step 4/4 .* ([\d.]+) s/step", (out / "train.log")
                                                                          .read_text())]
    assert per and per[0] * 2 <= took + 0.01, (per, took)


def test_a_run_resumed_into_another_folder_carries_the_history_before_its_step(tmp_path):
    """resume=a/CKPT out=b started b's metrics.jsonl (and curves) at the resumed step, and
    train.log did not say where the steps before it were; records of b's own earlier run were
    kept beside them as if they were this run's."""
    import shutil

    a, b = tmp_path / "a", tmp_path / "b"
    train(tiny_cfg(a, 8, stop_after=3), quiet=True)
    shutil.copy(a / "last.pt", a / "step3.pt")
    train(tiny_cfg(a, 8, stop_after=2), quiet=True)               # a goes on past step 3
    train(tiny_cfg(b, 8, stop_after=6), quiet=True)               # b's own, unrelated run
    before = (a / "metrics.jsonl").read_text()
    with pytest.warns(SharpenWarning, match=r"the checkpoints of the run there before are "
                                            r"moved to .*abandoned-at-step3: last.pt"):
        train(tiny_cfg(b, 8, stop_after=1, resume=a / "step3.pt"), quiet=True)
    assert (a / "metrics.jsonl").read_text() == before
    recs = [json.loads(ln) for ln in (b / "metrics.jsonl").read_text().splitlines()]
    theirs = [json.loads(ln) for ln in before.splitlines()]
    # a's records up to step 3, without a's marks of its best.pt: b's is chosen among its own
    assert recs[:-2] == [{k: v for k, v in r.items() if k != "best"} for r in theirs
                         if r["step"] <= 3]
    assert [r["step"] for r in recs if "loss" in r] == [1, 2, 3, 4]
    assert [r["step"] for r in recs if "val" in r] == [3, 4]
    times = [r["time"] for r in recs if "time" in r]
    assert times == sorted(times), times                          # the clock goes on
    log = (b / "train.log").read_text()
    assert f"steps up to 3 were trained in {a} (resumed from {a / 'step3.pt'}): their log is " \
           f"{a / 'train.log'}, their metrics.jsonl records are copied here" in log, log


def test_validation_and_saving_are_left_out_of_the_training_rate_and_eta(tmp_path, capsys):
    """train.log's s/step and ETA, and the progress bar's rate and ETA, were the wall time of
    the steps since the last record: a validation among them (whole images; minutes for a
    teacher) made the rate drop and the ETA jump after each one. They count the training
    steps only; metrics.jsonl's step records carry s_per_step and, apart, val_s."""
    import numpy as np

    from distill.images import write_image
    # Validation images large enough that validating takes many times the 4 steps between.
    rng = np.random.default_rng(0)
    val = tmp_path / "val"
    for i in range(8):
        img = rng.random((512, 512, 3)).astype(np.float32)
        write_image(val / "input" / f"v{i}.png", img * 0.9)
        write_image(val / "target" / f"v{i}.png", img)
    out = tmp_path / "run"
    Trainer(tiny_cfg(out, 8, log_every=4, val_every=4, **{
        "data.val": val, "data.val_max_images": 8, "data.val_max_side": 512})).fit()
    bar = capsys.readouterr().err
    recs = {r["step"]: r for r in map(json.loads, (out / "metrics.jsonl").read_text()
                                      .splitlines()) if "loss" in r}
    wall = recs[8]["time"] - recs[4]["time"]        # steps 5-8 and the validation at step 4
    assert "val_s" not in recs[4] and recs[8]["val_s"] > wall / 3, (recs, wall)
    # Four steps' time counted with the validation's would be the whole interval; without it,
    # the interval less the validation. Half of the validation's time apart: robust to a
    # loaded machine's slower steps (under xdist a step took 0.35 s beside 2.8 s validating).
    steps_only = wall - recs[8]["val_s"] / 2
    log = (out / "train.log").read_text()
    per = re.findall(r"step 8/8 .* ([\d.]+) s/step \(data [\d.]+\)  eta", log)
    assert per and float(per[0]) * 4 < steps_only, (log, wall)
    # The bar's last frame, after both validations and the final save.
    # (Off a terminal, as under capsys, it is the progress module's dated line.)
    rate, unit = re.findall(r"8/8 step \(\d+%\), ([\d.]+)(step/s|s/step)", bar)[-1]
    bar_per = float(rate) if unit == "s/step" else 1 / float(rate)
    assert bar_per * 4 < steps_only, (bar[-300:], wall)
    assert recs[8]["s_per_step"] * 4 < steps_only, (recs, wall)
    assert "(validation and saving " in log


def test_branching_a_finished_run_says_nothing_was_trained(tmp_path, capsys):
    """`resume=a/last.pt out=b` where a is already at optim.steps printed "done: " naming no
    file and "note: no best.pt: nothing was validated (set data.val ...)" though data.val was
    set: b holds no checkpoint because nothing was trained."""
    from sharpen.cli import main

    a, b = tmp_path / "a", tmp_path / "b"
    argv = ["train", "optim.steps=2", "val_every=1", *TINY_CLI]
    assert main([*argv, f"out={a}"]) == 0
    capsys.readouterr()
    assert main([*argv, f"out={b}", f"resume={a / 'last.pt'}"]) == 0
    std = capsys.readouterr()
    assert "already at step 2 of optim.steps=2: nothing to train" in std.err
    assert std.out.startswith(f"nothing trained: {b} holds no checkpoint"), std.out
    assert "done:" not in std.out and "set data.val" not in std.err, std
    assert main(["train", "optim.steps=3", "val_every=1", *TINY_CLI, f"out={b}",
                 f"resume={a / 'last.pt'}"]) == 0   # the branch goes on once steps are raised
    assert capsys.readouterr().out.startswith(f"done: {b / 'best.pt'}, {b / 'last.pt'}")


def test_a_warmup_as_long_as_the_run_is_warned_about(tmp_path):
    """`optim.steps=150` with the default optim.warmup_steps=200 trained the whole run on the
    rising ramp (never at optim.lr, never decaying) without a word."""
    with runtime_warnings() as said:
        train(tiny_cfg(tmp_path / "a", 3, **{"optim.warmup_steps": 4}), quiet=True)
    ramp = [m for m in said if "optim.warmup_steps=4 is not below optim.steps=3" in m]
    assert ramp and "to 0.75 x optim.lr=0.001 at its last step" in ramp[0], said
    assert "optim.warmup_steps=4 is not below" in (tmp_path / "a" / "train.log").read_text()
    with runtime_warnings() as said:
        train(tiny_cfg(tmp_path / "b", 3), quiet=True)   # warmup 2 of 3 steps: nothing to say
    assert not [m for m in said if "warmup" in m], said


def test_a_missing_held_out_cache_is_told_to_rerun_the_hold_out_labels_command(tmp_path):
    """`sharpen labels --hold-out 0.3 --val-out VAL` stopped before it reached VAL, then
    `distill data.labels=OUT data.val_labels=VAL` said "make it with `sharpen labels --data
    DATA --out VAL`", which, followed, labels the training footage into the validation cache."""
    from distill.data.label_cache import write_run_record
    from distill.validation import load_val_items

    train_cache, val = tmp_path / "foot", tmp_path / "foot-val"
    train_cache.mkdir()
    write_run_record(train_cache, complete=False, data="footage", split=None, limit=4,
                     hold_out={"fraction": 0.3, "rule": "clips", "role": "training",
                               "other_cache": str(val), "split": "train"},
                     teacher_options=["--tile", "256"])
    cfg = load_config(None, ["task=student", f"data.labels={train_cache}",
                             f"data.val_labels={val}"])
    with pytest.raises(ValueError) as e:
        load_val_items(cfg, progress=False)
    msg = str(e.value)
    assert msg.startswith(f"data.val_labels={val}: label cache not found"), msg
    assert "was stopped before it got there" in msg and \
        (f"`sharpen labels --data footage --out {train_cache} --hold-out 0.3 --val-out {val} "
         "--limit 4 --tile 256`") in msg, msg   # its tiling: else no label is reused
    cfg = load_config(None, ["task=student", f"data.labels={tmp_path / 'other'}",
                             f"data.val_labels={val}"])
    with pytest.raises(ValueError, match=r"make it with `sharpen labels --data DATA --out "):
        load_val_items(cfg, progress=False)   # no hold-out names it: the general advice


def test_data_keys_the_task_does_not_read_are_warned_about(tmp_path):
    """`sharpen train data.labels=CACHE` trained on the embedded default, and `sharpen distill
    data.val=corpus` validated on nothing, without a word about the key left aside."""
    from distill.data_checks import unused_data_keys

    with runtime_warnings() as said:
        train(tiny_cfg(tmp_path / "a", 1, **{"data.labels": "runs/labels/train"}), quiet=True)
    said = [m for m in said if "not used" in m]
    assert said and said[0].startswith("data.labels=runs/labels/train is not used: training "
                                       "on ground truth"), said
    assert "data.labels=runs/labels/train is not used" in \
        (tmp_path / "a" / "train.log").read_text()
    student = load_config(None, ["task=student", "data.labels=c", "data.val=runs/corpus"])
    assert unused_data_keys(student).startswith("data.val=runs/corpus is not used: `sharpen "
                                                "distill` trains on teacher labels")
    assert unused_data_keys(load_config(None, ["task=student", "data.labels=c",
                                               "data.val_labels=v"])) is None
    assert unused_data_keys(load_config(None, ["task=teacher", "data.train=x",
                                               "data.val=y"])) is None
    assert unused_data_keys(load_config(None, ["task=student", "data.labels=c", "data.val=",
                                               "data.val_labels=v"])) is None   # "": off


def test_data_gopro_blur_a_distill_run_does_not_read_is_warned_about():
    """`sharpen distill data.labels=CACHE data.gopro_blur=blur_gamma` read as training on
    blur_gamma inputs; distill reads the key only for a GoPro root given as data.gt_train (the
    labels' inputs are the folder `sharpen labels --gopro-blur` read), and said nothing."""
    from distill.data_checks import unused_data_keys

    said = unused_data_keys(load_config(None, ["task=student", "data.labels=c",
                                               "data.val_labels=v",
                                               "data.gopro_blur=blur_gamma"]))
    assert said is not None and said.startswith(
        "data.gopro_blur=blur_gamma is not used: `sharpen distill` reads it only for a GoPro "
        "root given as data.gt_train"), said
    assert "sharpen labels --gopro-blur blur_gamma" in said, said
    assert unused_data_keys(load_config(None, ["task=student", "data.labels=c",
                                               "data.val_labels=v", "data.gt_train=g",
                                               "data.gopro_blur=blur_gamma"])) is None
    both = unused_data_keys(load_config(None, ["task=student", "data.labels=c",
                                               "data.val=runs/corpus",
                                               "data.gopro_blur=blur_gamma"]))
    assert both.startswith("data.val=runs/corpus is not used") and \
        "data.gopro_blur=blur_gamma is not used" in both, both


def test_a_ground_truth_loss_over_labels_without_ground_truth_is_warned_about(tmp_path):
    """`loss.gt=0.5` over a cache of footage (no sharp frames) trained on the teacher's labels
    alone, the term silently absent from the loss."""
    import numpy as np

    from distill.data.labels import run_labels
    from distill.images import write_image
    kw = dict(teacher=_Brighter(), tile=0, overlap=0, progress=False)
    run_labels(str(_footage(tmp_path / "footage", 2, 0)), tmp_path / "foot", **kw)
    for i in range(2):
        write_image(tmp_path / "pairs" / "input" / f"im{i}.png",
                    np.full((40, 48, 3), 0.3, np.float32))
        write_image(tmp_path / "pairs" / "target" / f"im{i}.png",
                    np.full((40, 48, 3), 0.6, np.float32))
    run_labels(str(tmp_path / "pairs"), tmp_path / "paired", **kw)
    student = {"task": "student", "loss.gt": 0.5, "data.val": ""}
    with runtime_warnings() as said:
        train(tiny_cfg(tmp_path / "a", 1, **student, **{"data.labels": tmp_path / "foot"}),
              quiet=True)
    assert [m for m in said if m.startswith(
        f"loss.gt=0.5 has no ground truth to use: none of the 2 training images of "
        f"data.labels={tmp_path / 'foot'} has a sharp image")], said
    with runtime_warnings() as said:
        train(tiny_cfg(tmp_path / "b", 1, **student, **{"data.labels": tmp_path / "paired"}),
              quiet=True)
    assert not [m for m in said if "no ground truth to use" in m], said


def _validated_run(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """Two blurred/sharp validation pairs in tmp_path/val, a run folder tmp_path/r and the
    `sharpen train` arguments of a tiny run validated at every step into it."""
    import cv2
    import numpy as np

    from distill.images import write_image
    val = tmp_path / "val"
    rng = np.random.default_rng(0)
    for i in range(2):
        sharp = rng.random((48, 48, 3)).astype(np.float32)
        write_image(val / "target" / f"v{i}.png", sharp)
        write_image(val / "input" / f"v{i}.png", cv2.blur(sharp, (5, 5)))
    out = tmp_path / "r"
    return val, out, ["train", "val_every=1", *TINY_CLI, f"out={out}"]


def _raise_best(last_pt, score: float) -> None:
    """A run whose best validation scored `score` (a better step before it, say)."""
    from distill.checkpoint import atomic_save
    ck = read_checkpoint(last_pt)
    ck["best"] = score
    atomic_save(ck, last_pt)


def test_a_branch_chooses_its_best_pt_among_its_own_validations(tmp_path, capsys):
    """`resume=a/last.pt out=b` brought a's best score along: b's validations, scored below it,
    wrote no best.pt into b, and the run ended "nothing was validated: no best.pt" though b
    had validated."""
    from sharpen.cli import main

    a, b = tmp_path / "a", tmp_path / "b"
    argv = ["train", "val_every=1", *TINY_CLI]
    assert main([*argv, "optim.steps=2", f"out={a}"]) == 0
    _raise_best(a / "last.pt", 0.999)
    capsys.readouterr()
    assert main([*argv, "optim.steps=3", f"out={b}", f"resume={a / 'last.pt'}"]) == 0
    out = capsys.readouterr().out
    assert (b / "best.pt").exists() and read_checkpoint(b / "best.pt")["step"] == 3
    assert "nothing was validated" not in out and "best.pt (step 3)" in out, out
    log = (b / "train.log").read_text()
    assert f"best.pt is chosen among the validations in {b}" in log, log


def test_best_pt_is_rescored_when_the_validation_images_change(tmp_path, capsys):
    """A resume whose validation images changed compared its scores with best.pt's score on
    the earlier images: an easier set replaced best.pt with a worse model, a harder one never
    replaced it. best.pt is scored on the new images first."""
    from sharpen.cli import main

    val, out, argv = _validated_run(tmp_path)
    assert main([*argv, "optim.steps=2"]) == 0
    _raise_best(out / "last.pt", 0.999)   # as if best.pt had scored it on the earlier images
    capsys.readouterr()
    assert main([*argv, "optim.steps=3", f"data.val={val}"]) == 0
    err = capsys.readouterr().err
    ck = read_checkpoint(out / "last.pt")
    best = read_checkpoint(out / "best.pt")
    assert ck["best"] < 0.9 and ck["best"] == best["metrics"]["model_gt_ssim"], ck["best"]
    said = "best.pt (step 2) scored on the new validation images: model_gt SSIM "
    assert said in err and said in (out / "train.log").read_text(), err
    (out / "best.pt").write_bytes(b"not a checkpoint")   # unusable: chosen afresh, not fatal
    assert main([*argv, "optim.steps=4", f"data.val={val}", "data.val_max_images=2"]) == 0
    assert "best.pt is chosen afresh" in capsys.readouterr().err
    assert read_checkpoint(out / "best.pt")["step"] == 4


def test_a_checkpoint_of_an_older_version_has_best_pt_rescored_on_this_run_s_images(
        tmp_path, capsys):
    """A last.pt saved before checkpoints recorded their data (no 'data', no 'best_step') kept
    its best score on a resume whose validation images had changed, unsaid: nothing told the
    images apart, so an easier set replaced best.pt with a worse model, a harder one never did."""
    from distill.checkpoint import atomic_save
    from sharpen.cli import main

    val, out, argv = _validated_run(tmp_path)
    assert main([*argv, "optim.steps=2"]) == 0
    ck = read_checkpoint(out / "last.pt")
    for key in ("data", "best_step", "processes"):   # as the version of 2026-12-02 wrote it
        del ck[key]
    atomic_save({**ck, "best": 0.999}, out / "last.pt")
    capsys.readouterr()
    loud = [a for a in argv if a != "--quiet"]   # a note, which --quiet keeps to train.log
    assert main([*loud, "optim.steps=3", f"data.val={val}"]) == 0
    err = capsys.readouterr().err
    ck, best = read_checkpoint(out / "last.pt"), read_checkpoint(out / "best.pt")
    assert ck["best"] < 0.9 and ck["best"] == best["metrics"]["model_gt_ssim"], ck["best"]
    said = ("best.pt (step 2) scored on this run's validation images (its checkpoint, saved by "
            "an older version, does not record the images of its score): model_gt SSIM ")
    assert said in err and said in (out / "train.log").read_text(), err


def test_best_pt_scored_with_an_older_ssim_is_rescored_on_resume(tmp_path, capsys):
    """A run resumed across the SSIM change (7x7 uniform window to 11x11 Gaussian) on the same
    validation images compared best.pt's old-formula score with new-formula validations:
    best.pt was replaced or kept by the formula, not the model. It is scored again."""
    from distill.checkpoint import atomic_save
    from sharpen.cli import main

    val, out, argv = _validated_run(tmp_path)
    argv = [*argv, f"data.val={val}"]
    assert main([*argv, "optim.steps=2"]) == 0
    ck = read_checkpoint(out / "last.pt")
    assert ck["data"].get("val_score"), ck["data"]
    del ck["data"]["val_score"]   # as the version before the change wrote it
    atomic_save({**ck, "best": 0.999}, out / "last.pt")
    best = read_checkpoint(out / "best.pt")
    best["metrics"]["model_gt_ssim"] = 0.999   # its score under the older formula
    atomic_save(best, out / "best.pt")
    capsys.readouterr()
    assert main([*argv, "optim.steps=3"]) == 0
    ck, best = read_checkpoint(out / "last.pt"), read_checkpoint(out / "best.pt")
    assert ck["best"] < 0.9 and ck["best"] == best["metrics"]["model_gt_ssim"], ck["best"]
    said = "best.pt (step 2) scored with this version's SSIM (its score used another formula): "
    log = (out / "train.log").read_text()
    assert said in log and "(0.9990 before), the score to beat" in log, log


def test_ground_truth_validation_pairs_that_are_training_pairs_are_warned_about(tmp_path):
    """`sharpen train data.train=pairs data.val=pairs` (a flat paired folder, no val/ split)
    validated on, and chose best.pt by, the very pairs it trained on, without a word; a
    student's validation cache that shares training inputs was already warned about."""
    import numpy as np

    from distill.images import write_image

    def pairs(folder, n, seed):
        rng = np.random.default_rng(seed)
        for i in range(n):
            img = rng.random((40, 40, 3)).astype(np.float32)
            write_image(folder / "input" / f"p{i}.png", img * 0.9)
            write_image(folder / "target" / f"p{i}.png", img)
        return folder
    data, held = pairs(tmp_path / "pairs", 3, 0), pairs(tmp_path / "held", 2, 1)
    with runtime_warnings() as said:
        train(tiny_cfg(tmp_path / "a", 1, **{"data.train": data, "data.val": data,
                                              "data.val_max_images": 2}), quiet=True)
    err = " ".join(said)
    assert (f"2 of the 2 validation images of data.val={data} are training images too, in "
            f"data.train={data} (p0, p2)") in err, err
    assert "(p0, p2)" in (tmp_path / "a" / "train.log").read_text()
    with runtime_warnings() as said:
        train(tiny_cfg(tmp_path / "b", 1, **{"data.train": data, "data.val": held}),
              quiet=True)
    assert "training images too" not in " ".join(said)


def test_train_log_says_which_steps_a_killed_run_logged_past_its_checkpoint(tmp_path):
    """After a SIGKILL, train.log held the steps logged after the last checkpoint twice, the
    resumed run's beside the killed run's, with nothing to tell them apart but the clock."""
    import shutil

    out = tmp_path / "r"
    train(tiny_cfg(out, 8, stop_after=2), quiet=True)
    shutil.copy(out / "last.pt", tmp_path / "step2.pt")
    train(tiny_cfg(out, 8, stop_after=3), quiet=True)         # logs steps 3-5, then "killed":
    shutil.copy(tmp_path / "step2.pt", out / "last.pt")      # its checkpoint is step 2's
    train(tiny_cfg(out, 8), quiet=True)
    log = (out / "train.log").read_text()
    resumed = [ln for ln in log.splitlines() if "resumed at step 2 of 8" in ln]
    assert len(resumed) == 2, log
    assert "trained again" not in resumed[0], log      # the stop saved its own step
    assert ("steps 3 to 5 logged above are trained again: the run that logged them ended "
            "without saving them, last.pt holds step 2") in resumed[1], log


def test_a_checkpoint_save_killed_half_way_leaves_no_temp_file_after_the_resume(tmp_path):
    """A SIGKILL during a save left its hidden temp checkpoint (`.last.pt.XXXX.tmp`, the size
    of last.pt: hundreds of MB for a teacher with its optimizer) in out= for good, one more
    for each such kill; the resumed run removes them (it holds the folder's lock)."""
    out = tmp_path / "r"
    train(tiny_cfg(out, 4, stop_after=2), quiet=True)
    killed = [out / ".last.pt.k1ll3d_1.tmp", out / ".best.pt.k1ll3d_2.tmp"]
    for f in killed:
        f.write_bytes((out / "last.pt").read_bytes()[:1000])   # cut off as a kill leaves it
    other = out / ".notes.tmp"   # not a checkpoint's: left alone
    other.write_text("mine")
    train(tiny_cfg(out, 4), quiet=True)
    assert read_checkpoint(out / "last.pt")["step"] == 4
    assert not any(f.exists() for f in killed) and other.exists()


def test_a_gopro_root_trains_and_validates_on_the_blurred_folder_data_gopro_blur_names(
        tmp_path):
    """`sharpen labels --gopro-blur blur_gamma` had no counterpart in training: train and
    train-teacher on a GoPro root always read blur/, with no key to choose blur_gamma/."""
    import shlex

    import numpy as np

    from distill.images import read_image, write_image
    from distill.metrics import psnr
    from sharpen.cli import main
    rng = np.random.default_rng(0)
    root = tmp_path / "GOPRO_Large"
    for split, seq in (("train", "GOPR0372_07_00"), ("test", "GOPR0384_11_00")):
        for i in range(2):
            sharp = rng.random((40, 48, 3)).astype(np.float32)
            d = root / split / seq
            write_image(d / "sharp" / f"{i:06d}.png", sharp)
            write_image(d / "blur" / f"{i:06d}.png", sharp * 0.9)
            write_image(d / "blur_gamma" / f"{i:06d}.png", sharp ** 2.2)
    test = root / "test" / "GOPR0384_11_00"
    want = {b: np.mean([psnr(read_image(test / b / f"{i:06d}.png"),
                             read_image(test / "sharp" / f"{i:06d}.png")) for i in range(2)])
            for b in ("blur", "blur_gamma")}
    for blur in ("blur", "blur_gamma"):
        cfg = tiny_cfg(tmp_path / blur, 1, **{"data.train": root, "data.val": root,
                                              "data.gopro_blur": blur, "data.val_max_images": 2})
        with pytest.warns(SharpenWarning, match="has no 'val' split") as said:
            m = train(cfg, quiet=True)
        assert m["input_gt_psnr"] == pytest.approx(want[blur], abs=1e-4), blur
        # The warning's evaluate command scored blur/ after training on blur_gamma/: run as
        # given, it scores the inputs validation scored.
        msg = " ".join(str(w.message) for w in said)
        command = re.search(r"`sharpen (evaluate [^`]*)`", msg)
        assert command, msg
        out = tmp_path / f"eval-{blur}"
        assert main([*shlex.split(command[1]), "--weights", str(tmp_path / blur / "last.pt"),
                     "--out", str(out), "--quiet"]) == 0
        res = json.loads((out / "metrics.json").read_text())
        assert res["input"]["psnr"] == pytest.approx(want[blur], abs=0.05), (blur, msg)
    with pytest.raises(ValueError, match="data.gopro_blur must be blur or blur_gamma .*, got "
                                         "'gamma'"):
        train(tiny_cfg(tmp_path / "bad", 1, **{"data.gopro_blur": "gamma"}), quiet=True)
    # A root without blur_gamma/ told train-teacher users "(try --gopro-blur blur)", an
    # option that training refuses: the key it reads is data.gopro_blur.
    for seq in ("train/GOPR0372_07_00", "test/GOPR0384_11_00"):
        shutil.rmtree(root / seq / "blur_gamma")
    with pytest.raises(ValueError, match=r"data.train=.*no blur_gamma/ folder: GOPR0372_07_00 "
                                         r"\(try data.gopro_blur=blur\)"):
        train(tiny_cfg(tmp_path / "nogamma", 1, **{"data.train": root, "data.val": root,
                                                   "data.gopro_blur": "blur_gamma"}), quiet=True)


def test_a_validation_image_under_ssims_window_is_skipped_before_training(tmp_path, capsys):
    """A 6x5 validation pair stopped the run at its first validation ("SSIM needs images of at
    least 7x7 pixels"), after every step since the start and with no checkpoint saved; it is
    skipped by name when the validation set is read, and a set of only such pairs is refused
    before the first step."""
    import numpy as np

    from distill.images import write_image
    from sharpen.cli import main
    rng = np.random.default_rng(0)
    val = tmp_path / "val"
    for name, (h, w) in (("big", (40, 48)), ("small", (5, 6))):
        img = rng.random((h, w, 3)).astype(np.float32)
        write_image(val / "input" / f"{name}.png", img * 0.9)
        write_image(val / "target" / f"{name}.png", img)
    out = tmp_path / "r"
    argv = ["train", f"out={out}", "optim.steps=2", *TINY_CLI, f"data.val={val}",
            "data.val_max_images=2", "val_every=2"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert f"validation pair skipped: {val / 'input' / 'small.png'} is 6x5, under SSIM's " \
           "11x11 window" in err, err
    assert read_checkpoint(out / "last.pt")["step"] == 2
    (val / "input" / "big.png").unlink()
    (val / "target" / "big.png").unlink()
    assert main([*argv[:1], f"out={tmp_path / 's'}", *argv[2:]]) == 2
    assert "no readable validation pair" in capsys.readouterr().err
    assert not (tmp_path / "s" / "last.pt").exists()


def test_a_validation_that_fails_saves_the_steps_before_it(tmp_path, monkeypatch, capsys):
    """An error in validation (out of GPU memory on whole images, a bad file) ended the run
    with every step since the last checkpoint lost; last.pt now holds the step first."""
    from distill import trainer as trainer_mod

    def fails(*a, **k):
        raise RuntimeError("out of memory while validating")
    out = tmp_path / "r"
    monkeypatch.setattr(trainer_mod, "evaluate", fails)
    with pytest.raises(RuntimeError, match="out of memory while validating"):
        train(tiny_cfg(out, 6, val_every=3), quiet=True)
    assert read_checkpoint(out / "last.pt")["step"] == 3
    said = "validation at step 3 failed; last.pt saved at that step"
    assert said in (out / "train.log").read_text()
    assert said in capsys.readouterr().err
    monkeypatch.undo()
    train(tiny_cfg(out, 6, val_every=3), quiet=True)    # the same command goes on from there
    assert read_checkpoint(out / "last.pt")["step"] == 6


def test_the_progress_bar_does_not_flood_a_log_file(tmp_path, capsys):
    """The bar redrew at every step (its loss/lr postfix forced it), so `sharpen distill ... >
    out.txt 2>&1` filled the file with one bar per step, and later with carriage-return
    redraws: one line megabytes long to a log collector. Off a terminal it is a timestamped
    line a minute (runtime.progress) and one at the end. Bounded by the run's time, not a fixed
    count: on a loaded machine the 30 steps took minutes."""
    t0 = time.perf_counter()
    train(tiny_cfg(tmp_path / "r", 30, log_every=1000))
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert "\r" not in err
    bars = [s for s in err.splitlines() if "train fast: " in s]
    assert bars and re.search(r"^\S+ \S+ train fast: 30/30 step \(100%\), .*loss=", bars[-1]), \
        err[-500:]
    assert len(bars) <= elapsed / 60.0 + 2, (len(bars), elapsed)


class _Darker(_Brighter):
    """Another stand-in teacher (other weights): its output is the input, darker."""
    weights_id = "darker"

    def sharpen(self, image, tile=0, overlap=0, batch_size=1):
        return image * 0.8


def test_validation_labels_of_another_teacher_are_warned_about(tmp_path):
    """Training labels remade with new teacher weights, the validation cache left as the old
    teacher labelled it: validation (and the choice of best.pt) scored the student against a
    teacher it does not learn from, without a word."""
    from distill.data.labels import run_labels
    kw = dict(tile=0, overlap=0, progress=False)
    run_labels(str(_footage(tmp_path / "footage", 3, 0)), tmp_path / "train",
               teacher=_Darker(), **kw)
    held = _footage(tmp_path / "held", 2, 1)
    run_labels(str(held), tmp_path / "val", teacher=_Brighter(), **kw)
    run_labels(str(held), tmp_path / "val-same", teacher=_Darker(), **kw)
    student = {"task": "student", "data.labels": tmp_path / "train"}
    with runtime_warnings() as said:
        train(tiny_cfg(tmp_path / "a", 1, **student, **{"data.val_labels": tmp_path / "val"}),
              quiet=True)
    err = " ".join(said)
    assert (f"data.val_labels={tmp_path / 'val'} was labelled by another teacher (weights "
            f"stand-in) than data.labels={tmp_path / 'train'} (weights darker)") in err, err
    assert "weights stand-in" in (tmp_path / "a" / "train.log").read_text()
    with runtime_warnings() as said:
        train(tiny_cfg(tmp_path / "b", 1, **student,
                       **{"data.val_labels": tmp_path / "val-same"}), quiet=True)
    assert "another teacher" not in " ".join(said)



def test_a_fine_tune_that_never_beat_its_start_says_best_pt_is_the_init_weights(tmp_path):
    """`distill init=fast val_start=true` ended "best.pt (step 0): model_teacher_ssim=..."
    and nothing said that step 0 is the shipped model unchanged: a user then exported and
    compared best.pt with `fast` as the fine-tuned model, and found the very same numbers."""
    init = tmp_path / "init.pt"
    train(tiny_cfg(tmp_path / "first", 1), quiet=True)
    (tmp_path / "first" / "last.pt").rename(init)

    def ended(best_step, **extra):   # a run at step 2 whose best.pt holds best_step
        out = tmp_path / f"ft{best_step}{len(extra)}"   # best.pt without last.pt is refused
        t = Trainer(tiny_cfg(out, 2, val_start="true", **extra), quiet=True)
        t.out.mkdir(exist_ok=True)
        (t.out / "best.pt").touch()
        t.metrics, t.step, t.best, t.best_step = {"model_teacher_ssim": 0.8}, 2, 0.8, best_step
        return t.best_text()
    said = ended(0, init=init)
    assert said == (f"best.pt (step 0): model_teacher SSIM 0.8000, the init={init} weights "
                    "unchanged: no later validation beat them"), said
    assert ended(2, init=init) == "best.pt (step 2): model_teacher SSIM 0.8000"
    assert ended(0) == "best.pt (step 0): model_teacher SSIM 0.8000"   # no init: nothing to name


def test_a_distilled_student_ends_with_how_to_compare_it_and_export_it(tmp_path, capsys):
    """`distill` on footage ended at "done: best.pt, last.pt" while `labels` ends with the
    distill command: how to see the fine-tune beside the weights it started from on the
    held-out frames (evaluate takes images, the clips' frames are in CACHE/frames), and how to
    get a model `sharpen run` takes, were left to the user to find in the README."""
    import cv2
    import numpy as np

    from distill.data.labels import run_labels
    from sharpen.cli import main

    kw = dict(teacher=_Brighter(), tile=0, overlap=0, progress=False)
    rng = np.random.default_rng(0)
    for clip in ("walk", "shake"):
        (tmp_path / "footage").mkdir(exist_ok=True)
        vw = cv2.VideoWriter(str(tmp_path / "footage" / f"{clip}.avi"),
                             cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 40))
        for _ in range(3):
            vw.write((rng.random((40, 48, 3)) * 255).astype(np.uint8))
        vw.release()
    train_cache, val_cache = tmp_path / "train", tmp_path / "val"
    run_labels(str(tmp_path / "footage" / "walk.avi"), train_cache, **kw)
    run_labels(str(tmp_path / "footage" / "shake.avi"), val_cache, **kw)
    init = tmp_path / "init.pt"
    train(tiny_cfg(tmp_path / "first", 1), quiet=True)
    (tmp_path / "first" / "last.pt").rename(init)
    capsys.readouterr()
    out = tmp_path / "ft"
    assert main(["distill", f"out={out}", "optim.steps=1", *TINY_CLI, f"init={init}",
                 f"data.labels={train_cache}", f"data.val_labels={val_cache}"]) == 0
    said = capsys.readouterr().out.strip().splitlines()
    assert said[-3].startswith("done: "), said
    assert said[-2] == (f"compare it with init={init} on the held-out frames (metrics, "
                        f"side_by_side.png): sharpen evaluate --weights {init} "
                        f"{out / 'best.pt'} teacher --data {val_cache / 'frames'} "
                        f"--out {out / 'eval'}"), said
    assert said[-1] == (f"export it for `sharpen run`: sharpen export --weights "
                        f"{out / 'best.pt'} --out export/"), said
    # best.pt still the init= weights (val_start, nothing beat them): comparing it with them
    # showed two identical columns; last.pt is what the fine-tune made of them.
    from distill.train_command import _after_distill
    cfg = tiny_cfg(out, 1, task="student", init=init, **{"data.val_labels": val_cache})
    assert _after_distill(cfg, 0)[0] == (
        f"compare the fine-tune's last.pt (best.pt is init={init}) with init={init} on the "
        f"held-out frames (metrics, side_by_side.png): sharpen evaluate --weights {init} "
        f"{out / 'last.pt'} teacher --data {val_cache / 'frames'} --out {out / 'eval'}")
    assert main(["distill", f"out={tmp_path / 'nv'}", "optim.steps=1", *TINY_CLI,
                 f"data.labels={train_cache}"]) == 0   # no validation, no best.pt
    said = capsys.readouterr().out.strip().splitlines()
    assert said[-1] == (f"export it for `sharpen run`: sharpen export --weights "
                        f"{tmp_path / 'nv' / 'last.pt'} --out export/"), said


def test_a_student_validated_on_a_corpus_ends_with_how_to_score_it_on_its_test_split(tmp_path):
    """Distilled on a photo corpus (labels of its train and val splits), `distill` ended with
    the export line alone: the compare line was for footage's frames, and a user could not tell
    whether the fine-tune beat the weights it started from. The corpus's test split, never
    trained on nor chosen on, is what `sharpen evaluate --data CORPUS` scores."""
    import json

    from distill.train_command import _after_distill
    import cv2
    import numpy as np

    corpus, out, val = tmp_path / "corpus", tmp_path / "ft", tmp_path / "val"
    for side in ("input", "target"):
        (corpus / "test" / side).mkdir(parents=True)
    out.mkdir()
    (out / "best.pt").write_bytes(b"")
    val.mkdir()
    (val / "run.json").write_text(json.dumps({"data": str(corpus), "split": "val"}))
    cfg = tiny_cfg(out, 1, task="student", init="fast", **{"data.val_labels": val})
    # An empty test split (a corpus of a few clips, each whole in train): the line's command
    # failed with "no images in CORPUS/test/input".
    assert _after_distill(cfg, 1)[0].startswith("export it for")
    for side in ("input", "target"):
        cv2.imwrite(str(corpus / "test" / side / "a.png"), np.zeros((16, 16, 3), np.uint8))
    assert _after_distill(cfg, 1)[0] == (
        f"compare it with init=fast on the test split of {corpus}, never trained on (metrics, "
        f"side_by_side.png): sharpen evaluate --weights fast {out / 'best.pt'} --data {corpus} "
        f"--out {out / 'eval'}")
    (val / "run.json").write_text(json.dumps({"data": str(tmp_path / "pairs")}))  # no split
    assert _after_distill(cfg, 1)[0].startswith("export it for")
    # Labels of the test split itself (`labels --split test`): best.pt was chosen on it, or
    # trained on it, so a score there is no held-out one.
    (val / "run.json").write_text(json.dumps({"data": str(corpus), "split": "test"}))
    assert _after_distill(cfg, 1)[0].startswith("export it for")
    train_cache = tmp_path / "train"
    train_cache.mkdir()
    (train_cache / "run.json").write_text(json.dumps({"data": str(corpus), "split": "test"}))
    (val / "run.json").write_text(json.dumps({"data": str(corpus), "split": "val"}))
    cfg = tiny_cfg(out, 1, task="student", init="fast",
                   **{"data.val_labels": val, "data.labels": train_cache})
    assert _after_distill(cfg, 1)[0].startswith("export it for")


def _distilled_on_gopro_labels(tmp_path, subs, teacher_options):
    """A one-frame GoPro-layout set with SUBS folders, a student run's folder holding best.pt,
    and the labels' run.json naming TEACHER_OPTIONS: what distill's compare line reads."""
    import json

    import cv2
    import numpy as np
    g, out, val = tmp_path / "GOPRO_Large", tmp_path / "ft", tmp_path / "val"
    for sub in subs:
        for split in ("train", "test"):
            (g / split / "GOPR0384_11_00" / sub).mkdir(parents=True)
            cv2.imwrite(str(g / split / "GOPR0384_11_00" / sub / "000001.png"),
                        np.zeros((16, 16, 3), np.uint8))
    out.mkdir()
    (out / "best.pt").write_bytes(b"")
    val.mkdir()
    (val / "run.json").write_text(json.dumps({
        "data": str(g), "split": "train", "teacher_options": teacher_options}))
    return g, out, tiny_cfg(out, 1, task="student", **{"data.val_labels": val})


def test_the_compare_line_of_a_student_on_gopro_blur_gamma_labels_scores_blur_gamma(tmp_path):
    """Labelled from GoPro's blur_gamma/ (`labels --gopro-blur blur_gamma`), `distill` ended
    with an evaluate command that scored the test split's blur/ frames: not the blur the
    student and its teacher's labels were made from."""
    from distill.train_command import _after_distill
    g, out, cfg = _distilled_on_gopro_labels(
        tmp_path, ("blur", "blur_gamma", "sharp"),
        ["--teacher-weights", "t.pt", "--gopro-blur", "blur_gamma"])
    assert _after_distill(cfg, 1)[0].endswith(
        f"sharpen evaluate --weights {out / 'best.pt'} --data {g} --gopro-blur blur_gamma "
        f"--out {out / 'eval'}")


def test_the_compare_line_is_said_for_a_gopro_set_with_blur_gamma_alone(tmp_path):
    """A GoPro-layout set copied with blur_gamma/ and sharp/ but no blur/: its test split was
    looked for in blur/, found wanting, and `distill` ended without the compare line."""
    from distill.train_command import _after_distill
    g, out, cfg = _distilled_on_gopro_labels(tmp_path, ("blur_gamma", "sharp"),
                                             ["--gopro-blur", "blur_gamma"])
    assert _after_distill(cfg, 1)[0].endswith(
        f"--data {g} --gopro-blur blur_gamma --out {out / 'eval'}")


def test_the_export_line_of_a_fine_tune_that_never_beat_its_start_says_what_it_exports(
        tmp_path):
    """With best.pt still the init= weights, distill's compare line takes last.pt ("the
    fine-tune's last.pt"), and the export line after it said "export it" of best.pt: a user read
    it as exporting the fine-tune, and shipped the init= weights unchanged."""
    from distill.train_command import _after_distill
    out, val = tmp_path / "ft", tmp_path / "val"
    out.mkdir()
    for name in ("best.pt", "last.pt"):
        (out / name).write_bytes(b"")
    (val / "frames").mkdir(parents=True)
    init = tmp_path / "init.pt"
    init.write_bytes(b"")
    cfg = tiny_cfg(out, 1, task="student", init=init, **{"data.val_labels": val})
    said = _after_distill(cfg, 0)[-1]
    assert said == (f"export best.pt for `sharpen run` (the init={init} weights: no validation "
                    f"of the fine-tune beat them): sharpen export --weights {out / 'best.pt'} "
                    "--out export/"), said
    assert _after_distill(cfg, 1)[-1] == (f"export it for `sharpen run`: sharpen export "
                                          f"--weights {out / 'best.pt'} --out export/")


def test_console_validation_line_shows_psnr_beside_ssim_and_the_gain_over_the_input(
        tmp_path, capsys):
    """The console's validation line showed SSIM only (`step 2: input_gt_ssim=...
    model_gt_ssim=...`): PSNR, which BasicSR users read first, was only in train.log and the
    closing `done:` line."""
    out = tmp_path / "v"
    train(tiny_cfg(out, 2))
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("step 2: "))
    m = [json.loads(ln)["val"] for ln in (out / "metrics.jsonl").read_text().splitlines()
         if '"val"' in ln][-1]
    assert (f"model_gt PSNR {m['model_gt_psnr']:.2f} dB SSIM {m['model_gt_ssim']:.4f}"
            in line), line
    gain = (f"{_gain(m['model_gt_psnr'] - m['input_gt_psnr'], 2)} dB "
            f"{_gain(m['model_gt_ssim'] - m['input_gt_ssim'], 4)} over the input")
    assert gain in line, line
    assert f"input_gt PSNR {m['input_gt_psnr']:.2f} dB" in line, line


def test_curves_png_is_written_whole_or_not_at_all(tmp_path):
    """curves.png was drawn straight into its name: a run killed while drawing it left a
    truncated curves.png, which the next start (already at optim.steps) took for drawn and did
    not redraw. It is written as checkpoints are: a temp file, synced, renamed."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n'
                                       '{"step": 1, "val": {"model_gt_ssim": 0.8}}\n')
    code = ("import sys; from pathlib import Path; from distill.train_log import plot_curves; "
            "plot_curves(Path(sys.argv[1]).parent)")
    assert_durable_write(code, run / "curves.png", tmp_path / "trace.txt")
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in run.iterdir()) == ["curves.png", "metrics.jsonl"]


def test_config_yaml_is_written_as_checkpoints_are(tmp_path):
    """save_config wrote config.tmp (one name for every writer) and renamed it without a sync:
    a power cut could keep the rename and lose the data, an empty config.yaml beside last.pt."""
    code = ("import sys; from distill.config import TrainConfig, save_config; "
            "save_config(TrainConfig(), sys.argv[1])")
    assert_durable_write(code, tmp_path / "run" / "config.yaml", tmp_path / "trace.txt")
    assert load_config(tmp_path / "run" / "config.yaml") == load_config(None)


def test_a_gain_over_the_input_that_rounds_to_zero_has_no_sign():
    """A model as good as its blurred input (in the first steps) was said to be "-0.00 dB
    -0.0000 over the input": a negative zero, as if it were worse."""
    from distill.validation import val_summary
    m = {"model_gt_psnr": 25.0 - 1e-4, "model_gt_ssim": 0.8 - 1e-6,
         "input_gt_psnr": 25.0, "input_gt_ssim": 0.8}
    assert "(0.00 dB 0.0000 over the input)" in val_summary(m), val_summary(m)
    m.update(model_gt_psnr=25.5, model_gt_ssim=0.79)
    assert "(+0.50 dB -0.0100 over the input)" in val_summary(m), val_summary(m)


def test_data_gopro_blur_on_sources_that_are_not_gopro_roots_is_said_to_be_ignored(tmp_path):
    """`sharpen train data.train=PAIRED data.gopro_blur=blur_gamma` trained on PAIRED's
    inputs as if the key were not there, without a word."""
    from distill.data_checks import unused_data_keys
    import numpy as np
    from distill.images import write_image

    paired, gopro = tmp_path / "paired", tmp_path / "GOPRO_Large"
    image = np.zeros((8, 8, 3), np.float32)
    for folder in ("input", "target"):
        write_image(paired / folder / "a.png", image)
    for folder in ("sharp", "blur", "blur_gamma"):
        write_image(gopro / "train" / "GOPR0384_11_00" / folder / "000001.png", image)
    said = unused_data_keys(load_config(None, ["task=teacher", f"data.train={paired}",
                                               "data.val=", "data.gopro_blur=blur_gamma"]))
    assert said == (f"data.gopro_blur=blur_gamma is ignored: {paired} (paired) is not a GoPro "
                    "layout (it picks a GoPro sequence's blurred folder)"), said
    assert unused_data_keys(load_config(None, ["task=teacher", f"data.train={gopro}",
                                               "data.val=", "data.gopro_blur=blur_gamma"])) is None
    assert unused_data_keys(load_config(None, ["task=teacher", f"data.train={paired}",
                                               "data.val="])) is None   # the default: quiet


def test_going_back_sets_the_later_history_aside(tmp_path):
    """resume=<run>/stepN.pt in its own folder left the later stepN.pt and last.pt of the
    history gone back from beside the new one's: two histories under one naming, and a kill
    before the first save sent resume=auto back to the abandoned last.pt. They are moved, not
    deleted, into a folder named for the step gone back to; best.pt stays, the score to beat."""
    out = tmp_path / "r"
    train(tiny_cfg(out, 6, snapshot_every=2, val_every=2), quiet=True)
    later = {n: (out / n).read_bytes() for n in ("step4.pt", "step6.pt", "last.pt")}
    best = (out / "best.pt").read_bytes()
    aside = out / "abandoned-at-step2"
    with runtime_warnings() as said:
        train(tiny_cfg(out, 6, snapshot_every=2, val_every=2, resume=out / "step2.pt",
                       stop_after=1), quiet=True)
    moved = [m for m in said if "history gone back from" in m]
    assert moved and f"moved to {aside}: step4.pt, step6.pt, last.pt" in moved[0], said
    assert sorted(p.name for p in out.glob("step*.pt")) == ["step2.pt"]
    assert read_checkpoint(out / "last.pt")["step"] == 3
    assert {n: (aside / n).read_bytes() for n in later} == later
    if read_checkpoint(out / "best.pt")["step"] != 3:   # not beaten at step 3: kept as it was
        assert (out / "best.pt").read_bytes() == best
    # the same again: the first folder set aside is not mixed with the second
    with runtime_warnings():
        train(tiny_cfg(out, 6, snapshot_every=2, val_every=2, resume=out / "step2.pt",
                       stop_after=1), quiet=True)
    assert read_checkpoint(out / "abandoned-at-step2-2" / "last.pt")["step"] == 3
    # going on from last.pt sets nothing aside (a snapshot past it is the same history's)
    train(tiny_cfg(out, 6, snapshot_every=2, val_every=2), quiet=True)
    assert sorted(p.name for p in out.glob("step*.pt")) == ["step2.pt", "step4.pt", "step6.pt"]
    assert sorted(p.name for p in out.glob("abandoned-*")) == [
        "abandoned-at-step2", "abandoned-at-step2-2"]


def test_starting_over_removes_only_what_a_run_in_this_folder_wrote(tmp_path, capsys):
    """resume=never deleted every stepN.pt in out=, a snapshot copied in by hand from another
    run too. It removes metrics.jsonl, train.log and the last.pt, best.pt and stepN.pt that a
    run with this out= wrote; a checkpoint it did not write is named and the run refused."""
    a, r = tmp_path / "a", tmp_path / "r"
    train(tiny_cfg(a, 2, snapshot_every=2), quiet=True)
    train(tiny_cfg(r, 2, snapshot_every=1), quiet=True)
    shutil.copy(a / "step2.pt", r / "step7.pt")   # kept by hand among r's
    with pytest.raises(ValueError, match=rf"resume=never would remove {r / 'step7.pt'}, which "
                                         rf"a run in {a} wrote, not one in {r}"):
        train(tiny_cfg(r, 2, resume="never"), quiet=True)
    assert sorted(p.name for p in r.glob("step*.pt")) == ["step1.pt", "step2.pt", "step7.pt"]
    (r / "step7.pt").rename(tmp_path / "step7.pt")
    train(tiny_cfg(r, 2, resume="never"))
    assert ("replaced (metrics.jsonl, train.log, best.pt, last.pt, 2 snapshots stepN.pt, "
            "1 validation picture)" in capsys.readouterr().err)
    assert not list(r.glob("step*.pt"))
    # keep_snapshots prunes only its run's own
    shutil.copy(tmp_path / "step7.pt", r / "step0.pt")
    with runtime_warnings():   # optim.steps 2 -> 3
        train(tiny_cfg(r, 3, snapshot_every=1, keep_snapshots=1), quiet=True)
    assert sorted(p.name for p in r.glob("step*.pt")) == ["step0.pt", "step3.pt"]


def test_a_resumed_checkpoint_is_held_to_the_best_pt_on_disk(tmp_path):
    """An older full checkpoint brought back its own best score, below that of the folder's
    best.pt, which any later validation then replaced, however worse. The score to beat is
    best.pt's own, in the folder resumed from and in a branch into a folder holding one."""
    out = tmp_path / "r"
    train(tiny_cfg(out, 4, val_every=1, stop_after=2), quiet=True)
    early = out / "early.pt"
    shutil.copy(out / "last.pt", early)
    _raise_best(early, 0.0)   # an older best, below every later one
    train(tiny_cfg(out, 4, val_every=1), quiet=True)
    disk = read_checkpoint(out / "best.pt")
    score = disk["metrics"]["model_gt_ssim"]
    with runtime_warnings() as said:
        t = Trainer(tiny_cfg(out, 4, val_every=1, resume=early), quiet=True)
        assert (t.best, t.best_step) == (pytest.approx(score), disk["step"])
        t.fit()
    assert [m for m in said if f"best.pt (step {disk['step']}) stays, the score to beat" in m]
    now = read_checkpoint(out / "best.pt")
    assert t.best == pytest.approx(now["metrics"]["model_gt_ssim"])
    assert now["metrics"]["model_gt_ssim"] >= score - 1e-9
    assert t.best_step == now["step"]

    b = tmp_path / "b"   # a branch into a folder with a best.pt of its own
    train(tiny_cfg(b, 2, val_every=1), quiet=True)
    theirs = read_checkpoint(b / "best.pt")
    with runtime_warnings() as said:
        t = Trainer(tiny_cfg(b, 4, val_every=1, resume=early), quiet=True)
        t.fit()
    assert [m for m in said if f"the run there before are moved to {b / 'abandoned-at-step2'}"
            f": last.pt" in m], said
    now = read_checkpoint(b / "best.pt")
    assert t.best == pytest.approx(now["metrics"]["model_gt_ssim"])
    assert now["metrics"]["model_gt_ssim"] >= theirs["metrics"]["model_gt_ssim"] - 1e-6


def test_a_run_knows_its_own_checkpoints_under_another_spelling_of_out_and_once_moved(
        tmp_path, monkeypatch):
    """Ownership rested on out= as typed: a run started with out=r from one directory had
    its own checkpoints called another's when restarted with resume=never from another
    (out= given absolute), or once its folder was renamed, and the run was refused. Each
    checkpoint now records the folder's run id and resolved path."""
    (tmp_path / "x").mkdir()
    monkeypatch.chdir(tmp_path)
    train(tiny_cfg("r", 2, snapshot_every=1), quiet=True)   # relative, from tmp_path
    shutil.copy(tmp_path / "r" / "step1.pt", tmp_path / "first.pt")
    monkeypatch.chdir(tmp_path / "x")
    r = tmp_path / "r"
    train(tiny_cfg(r, 2, snapshot_every=1, resume="never"), quiet=True)
    m = tmp_path / "moved"
    r.rename(m)
    train(tiny_cfg(m, 2, resume="never"), quiet=True)
    assert not list(m.glob("step*.pt"))
    # one copied in from another folder is still another's
    train(tiny_cfg(r, 2, snapshot_every=2), quiet=True)
    shutil.copy(r / "step2.pt", m / "step5.pt")
    with pytest.raises(ValueError, match=rf"would remove {m / 'step5.pt'}, which a run in "
                                         rf"{r} wrote"):
        train(tiny_cfg(m, 2, resume="never"), quiet=True)
    # A checkpoint of code before the run id: by its out= as typed, resolved from here.
    old = read_checkpoint(m / "step5.pt")
    del old["run"]
    torch.save({**old, "config": {**old["config"], "out": str(m)}}, m / "step6.pt")
    torch.save({**old, "config": {**old["config"], "out": "r"}}, m / "step7.pt")
    from distill.trainer import foreign, read_run_id
    assert foreign(m / "step6.pt", m, read_run_id(m)) is None
    assert "a run with out=r wrote (" in foreign(m / "step7.pt", m, read_run_id(m))
    # r's first run's, copied into the r now there (another run's folder at its path)
    shutil.copy(tmp_path / "first.pt", r / "step9.pt")
    assert "which a run in another folder then at this path wrote (run id " in foreign(
        r / "step9.pt", r, read_run_id(r))
    # Gone since the folder was listed: nothing to keep, not "no run in it wrote" it.
    assert foreign(m / "gone.pt", m, None) is None


def test_a_best_pt_that_cannot_be_scored_is_set_aside_not_overwritten(tmp_path):
    """Branched into a folder whose best.pt is another model's (another width), the score to
    beat was dropped and the first validation overwrote that best.pt: the run there before
    lost its best weights, while its last.pt was moved aside. It is moved aside with them."""
    a, b = tmp_path / "a", tmp_path / "b"
    train(tiny_cfg(a, 4, stop_after=2), quiet=True)
    train(tiny_cfg(b, 2, val_every=1, **{"model.args": "{width: 12, blocks: 1, low_blocks: 1}"}),
          quiet=True)
    theirs = (b / "best.pt").read_bytes()
    with runtime_warnings() as said:
        train(tiny_cfg(b, 4, val_every=1, resume=a / "last.pt"), quiet=True)
    aside = b / "abandoned-at-step2"
    assert (aside / "best.pt").read_bytes() == theirs
    assert read_checkpoint(b / "best.pt")["arch_args"]["width"] == 8
    assert [w for w in said if "last.pt, best.pt" in w and str(aside) in w], said


def test_a_best_pt_in_the_run_s_own_folder_that_cannot_be_scored_is_set_aside(tmp_path):
    """Resumed in its own folder with the same data (resume=auto, or a stepN.pt), a best.pt
    replaced by hand (another model's, or not a checkpoint) was never looked at: another
    model's score became the score to beat and its weights were overwritten once beaten,
    unsaid; an unreadable one stayed, and the closing line named a step of this run for it
    ("best.pt (step 2) stays, the score to beat"). It is set aside, as in a branch."""
    r, other = tmp_path / "r", tmp_path / "other"
    train(tiny_cfg(other, 1, val_every=1,
                   **{"model.args": "{width: 12, blocks: 1, low_blocks: 1}"}), quiet=True)
    train(tiny_cfg(r, 3, val_every=1, snapshot_every=1), quiet=True)
    theirs = (other / "best.pt").read_bytes()
    (r / "best.pt").write_bytes(theirs)
    with runtime_warnings() as said:
        t = Trainer(tiny_cfg(r, 4, val_every=1, snapshot_every=1), quiet=True)   # its last.pt
        t.fit()
    aside = r / "abandoned-at-step3"
    assert (aside / "best.pt").read_bytes() == theirs
    assert read_checkpoint(r / "best.pt")["arch_args"]["width"] == 8
    assert t.best_step == 4, t.best_step   # this run's own validation, not the other's score
    assert [w for w in said if "best.pt, which this run cannot score, is moved to "
            f"{aside}" in w], said
    (r / "best.pt").write_bytes(b"not a checkpoint")
    with runtime_warnings() as said:
        t = Trainer(tiny_cfg(r, 4, val_every=1, resume=r / "step2.pt"), quiet=True)
        t.fit()
    assert (r / "abandoned-at-step2" / "best.pt").read_bytes() == b"not a checkpoint"
    assert read_checkpoint(r / "best.pt")["step"] == t.best_step
    assert not [w for w in said if "stays, the score to beat" in w], said


def test_a_snapshot_resumed_has_best_pt_rescored_on_this_run_s_validation_images(
        tmp_path, capsys):
    """A stepN.pt records no data: resumed in its folder with other validation images, best.pt
    kept its score on the earlier ones, so a harder set never replaced it (the run went on
    beside a best.pt no validation of its own could beat). It is scored on this run's images
    first; the message says why, not that the checkpoint is of an older version."""
    from sharpen.cli import main

    val, out, argv = _validated_run(tmp_path)
    assert main([*argv, "optim.steps=3", "snapshot_every=1"]) == 0
    earlier = read_checkpoint(out / "best.pt")
    capsys.readouterr()
    loud = [a for a in argv if a != "--quiet"]
    assert main([*loud, "optim.steps=4", f"data.val={val}", f"resume={out / 'step2.pt'}"]) == 0
    err = capsys.readouterr().err
    ck, best = read_checkpoint(out / "last.pt"), read_checkpoint(out / "best.pt")
    assert best["step"] > earlier["step"], (best["step"], earlier["step"])
    assert ck["best"] == best["metrics"]["model_gt_ssim"] < 0.9
    said = (f"best.pt (step {earlier['step']}) scored on this run's validation images "
            "(step2.pt holds weights only, with no record of the images of best.pt's score): "
            "model_gt SSIM ")
    assert said in err and "older version" not in err, err
    # The same images: scored again, nothing to say.
    assert main([*loud, "optim.steps=4", f"data.val={val}", f"resume={out / 'step2.pt'}"]) == 0
    assert "scored on" not in capsys.readouterr().err


def test_a_stop_right_after_going_back_leaves_a_folder_resume_auto_goes_on_from(
        tmp_path, monkeypatch):
    """Gone back (resume=r/step2.pt), the later history's last.pt is moved aside; a Ctrl-C
    before the first checkpoint of the new one left no last.pt, and the same command with
    resume=auto was refused (or would pick the abandoned history's best.pt). The step gone
    back to is saved as last.pt as soon as the later history is set aside."""
    out = tmp_path / "r"
    train(tiny_cfg(out, 4, snapshot_every=2), quiet=True)

    def ctrl_c(self):
        raise KeyboardInterrupt
    with monkeypatch.context() as mp:
        mp.setattr(Trainer, "_install_signal_handlers", ctrl_c)
        with runtime_warnings(), pytest.raises(KeyboardInterrupt):
            train(tiny_cfg(out, 4, snapshot_every=2, resume=out / "step2.pt"), quiet=True)
    assert read_checkpoint(out / "abandoned-at-step2" / "last.pt")["step"] == 4
    assert read_checkpoint(out / "last.pt")["step"] == 2
    train(tiny_cfg(out, 4, snapshot_every=2), quiet=True)
    assert read_checkpoint(out / "last.pt")["step"] == 4
    assert not (out / "abandoned-at-step2-2").exists()


def test_a_checkpoint_read_for_its_metadata_is_mapped_and_an_old_pickle_still_reads(tmp_path):
    """Ownership and step checks read each checkpoint in out= (a teacher's are hundreds of
    MB) mapped rather than whole; torch.load refuses to map a pickle of older torch
    versions, which is read whole instead of being called unreadable."""
    p = tmp_path / "old.pt"
    torch.save({"step": 3, "model": {"w": torch.ones(4)}}, p,
               _use_new_zipfile_serialization=False)
    ck = read_checkpoint(p, mmap=True)
    assert ck["step"] == 3 and ck["model"]["w"].sum() == 4
    torch.save({"step": 5, "model": {"w": torch.ones(4)}}, tmp_path / "new.pt")
    assert read_checkpoint(tmp_path / "new.pt", mmap=True)["model"]["w"].sum() == 4


def test_a_copied_in_snapshot_is_neither_overwritten_nor_counted_by_keep_snapshots(tmp_path):
    """A stepN.pt copied into a run's folder by hand was overwritten once the run reached
    step N, and with keep_snapshots=K one at another step took one of the K places, so the
    run kept fewer of its own. The copy is moved to stepN-copied.pt (said) and K counts the
    run's own."""
    a, r = tmp_path / "a", tmp_path / "r"
    train(tiny_cfg(a, 4, snapshot_every=1), quiet=True)
    train(tiny_cfg(r, 4, snapshot_every=2, keep_snapshots=2, stop_after=2), quiet=True)
    shutil.copy(a / "step3.pt", r / "step3.pt")
    shutil.copy(a / "step4.pt", r / "step4.pt")
    theirs = (a / "step4.pt").read_bytes()
    with runtime_warnings() as said:
        train(tiny_cfg(r, 4, snapshot_every=2, keep_snapshots=2), quiet=True)
    assert (r / "step4-copied.pt").read_bytes() == theirs
    assert [w for w in said if f"{r / 'step4.pt'} was not this run's" in w
            and str(r / "step4-copied.pt") in w], said
    assert Path(read_checkpoint(r / "step4.pt")["run"]["dir"]).samefile(r)   # r's own
    assert sorted(p.name for p in r.glob("step*.pt")) == [
        "step2.pt", "step3.pt", "step4-copied.pt", "step4.pt"]
    assert "step4-copied.pt" in (r / "train.log").read_text()


def test_the_history_gone_back_from_keeps_its_metrics_and_a_run_that_cannot_start_keeps_all(
        tmp_path):
    """Going back cut metrics.jsonl to the step gone back to as soon as the Trainer was built,
    before the data checks: a command that then failed (a data path mistyped) had cost the
    run its records past that step, while its checkpoints stayed. And the records of the
    history gone back from, or of the run there before a branch, were deleted where its
    checkpoints were moved aside. The cut waits for the run to start, and the records
    before it go with the checkpoints set aside."""
    out = tmp_path / "r"
    train(tiny_cfg(out, 4, snapshot_every=2), quiet=True)
    before = (out / "metrics.jsonl").read_text()
    assert '"step": 4' in before
    with runtime_warnings(), pytest.raises(Exception, match="missing"):
        train(tiny_cfg(out, 4, resume=out / "step2.pt", **{"data.train": tmp_path / "missing"}),
              quiet=True)
    assert (out / "metrics.jsonl").read_text() == before
    with runtime_warnings():
        train(tiny_cfg(out, 4, snapshot_every=2, resume=out / "step2.pt", stop_after=1),
              quiet=True)
    assert (out / "abandoned-at-step2" / "metrics.jsonl").read_text() == before
    records = (out / "metrics.jsonl").read_text().splitlines()
    assert max(json.loads(ln).get("step", 0) for ln in records) == 3
    # a branch into it: the run there keeps its records with its checkpoints
    b = tmp_path / "b"
    train(tiny_cfg(b, 2, stop_after=1), quiet=True)
    theirs = (out / "metrics.jsonl").read_text()
    with runtime_warnings():
        train(tiny_cfg(out, 4, resume=b / "last.pt", stop_after=1), quiet=True)
    assert (out / "abandoned-at-step1" / "metrics.jsonl").read_text() == theirs


def test_a_resume_from_a_checkpoint_without_a_process_count_says_so(tmp_path):
    """A last.pt of a version from before checkpoints recorded their process count resumed
    under another torchrun --nproc_per_node changed the batch of a step without a word; a
    stepN.pt recorded none at all, so a resume from it never said so either."""
    from distill.checkpoint import atomic_save

    out = tmp_path / "r"
    train(tiny_cfg(out, 4, stop_after=2, snapshot_every=1), quiet=True)
    snap = read_checkpoint(out / "step2.pt")
    assert snap["processes"] == 1 and "optimizer" not in snap
    ck = read_checkpoint(out / "last.pt")
    del ck["processes"]   # as the versions before 2026-12-03 wrote it
    atomic_save(ck, out / "last.pt")
    with runtime_warnings() as said:
        train(tiny_cfg(out, 4, stop_after=1, snapshot_every=1), quiet=True)
    assert [m for m in said if m.startswith(
        f"{out / 'last.pt'} does not record how many processes trained it (saved by an older "
        "version): this run has 1 process at data.batch_size 2 per process, 2 crops a step; if "
        "it was trained by another number of processes")], said
    atomic_save({**snap, "processes": 2}, tmp_path / "step2.pt")   # a snapshot of a DDP run
    with runtime_warnings() as said:
        train(tiny_cfg(tmp_path / "b", 4, resume=str(tmp_path / "step2.pt")), quiet=True)
    assert [m for m in said if "step2.pt was trained by 2 processes, this run has 1: "
            "data.batch_size (2) is per process, so the batch of a step changes from 4 to 2"
            in m], said
    with runtime_warnings() as said:   # the count recorded and unchanged: nothing to say
        train(tiny_cfg(out, 5), quiet=True)
    assert not [m for m in said if "processes" in m], said


def test_a_resume_refused_for_its_data_leaves_no_config_of_earlier_settings(tmp_path):
    """config-stepN.yaml (the settings a resume changed) was written before the data checks:
    a resume with a changed setting and a mistyped data path was refused, and left a file
    beside the run saying it had gone on with other settings."""
    from distill.data.sources import SourceError

    out = tmp_path / "r"
    train(tiny_cfg(out, 6, stop_after=3), quiet=True)
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(SourceError, match="data source not found"):
        train(tiny_cfg(out, 6, **{"optim.lr": 1e-4, "data.val": str(tmp_path / "nope")}),
              quiet=True)
    assert sorted(p.name for p in out.iterdir()) == before
    with runtime_warnings() as said:
        train(tiny_cfg(out, 6, stop_after=1, **{"optim.lr": 1e-4}), quiet=True)
    msg = (f"resuming {out / 'last.pt'} (step 3) with settings of its own changed: optim.lr: "
           f"0.001 -> 0.0001. The run goes on with the new ones; the earlier settings are in "
           f"{out / 'config-step3.yaml'}")
    assert msg in said and msg in (out / "train.log").read_text(), said
    assert yaml.safe_load((out / "config-step3.yaml").read_text())["optim"]["lr"] == 1e-3


@pytest.mark.parametrize("again", ["the same command", "resume=auto"])
def test_a_move_aside_stopped_part_way_is_finished_by_the_next_run(tmp_path, monkeypatch,
                                                                    again):
    """A Ctrl-C among the moves into abandoned-at-stepN/ left last.pt there, the later
    snapshots here and no last.pt: resume=auto was refused, advising the abandoned history's
    latest snapshot, and the same command moved the rest into abandoned-at-stepN-2/."""
    import distill.trainer as trainer_mod

    out = tmp_path / "r"
    train(tiny_cfg(out, 6, snapshot_every=2), quiet=True)
    later = {n: (out / n).read_bytes() for n in ("step4.pt", "step6.pt", "last.pt")}
    aside = out / "abandoned-at-step2"
    real, moves = os.replace, []

    def stopped(src, dst):   # Ctrl-C as the second checkpoint goes
        if Path(dst).parent == aside and not Path(dst).name.startswith("."):
            moves.append(Path(dst).name)
            if len(moves) == 2:
                raise KeyboardInterrupt
        return real(src, dst)
    monkeypatch.setattr(trainer_mod.os, "replace", stopped)
    go_back = tiny_cfg(out, 6, snapshot_every=2, resume=out / "step2.pt", stop_after=1)
    with runtime_warnings(), pytest.raises(KeyboardInterrupt):
        train(go_back, quiet=True)
    monkeypatch.setattr(trainer_mod.os, "replace", real)
    assert not (out / "last.pt").exists() and (aside / "last.pt").exists()
    with runtime_warnings() as said:
        train(go_back if again == "the same command" else
              tiny_cfg(out, 6, snapshot_every=2, stop_after=1), quiet=True)
    assert [m for m in said if f"moved to {aside}: last.pt, step4.pt, step6.pt" in m], said
    assert {n: (aside / n).read_bytes() for n in later} == later
    assert sorted(p.name for p in aside.iterdir()) == sorted(
        [*later, "metrics.jsonl", "visualization"])
    assert [p.name for p in out.glob("abandoned-*")] == [aside.name]
    assert sorted(p.name for p in out.glob("step*.pt")) == ["step2.pt"]
    assert read_checkpoint(out / "last.pt")["step"] == 3


def test_a_move_aside_stopped_part_way_is_finished_in_a_folder_moved_elsewhere(tmp_path,
                                                                               monkeypatch):
    """The move's record named the checkpoint gone back to by its absolute path: the run
    folder moved (or copied to another disk) after a Ctrl-C among the moves, resume=auto
    found no such file and was refused, advising the abandoned history's latest snapshot."""
    import shutil

    import distill.trainer as trainer_mod

    out = tmp_path / "r"
    train(tiny_cfg(out, 6, snapshot_every=2), quiet=True)
    real, moves = os.replace, []

    def stopped(src, dst):   # Ctrl-C as the second checkpoint goes
        if Path(dst).parent.name == "abandoned-at-step2" and not Path(dst).name.startswith("."):
            moves.append(Path(dst).name)
            if len(moves) == 2:
                raise KeyboardInterrupt
        return real(src, dst)
    monkeypatch.setattr(trainer_mod.os, "replace", stopped)
    with runtime_warnings(), pytest.raises(KeyboardInterrupt):
        train(tiny_cfg(out, 6, snapshot_every=2, resume=out / "step2.pt", stop_after=1),
              quiet=True)
    monkeypatch.setattr(trainer_mod.os, "replace", real)
    moved = tmp_path / "elsewhere"
    shutil.move(out, moved)
    with runtime_warnings() as said:
        train(tiny_cfg(moved, 6, snapshot_every=2, stop_after=1), quiet=True)
    aside = moved / "abandoned-at-step2"
    assert [m for m in said if f"moved to {aside}: last.pt, step4.pt, step6.pt" in m], said
    assert [p.name for p in moved.glob("abandoned-*")] == [aside.name]
    assert not (aside / ".moving.json").exists()
    assert read_checkpoint(moved / "last.pt")["step"] == 3


def test_validation_frames_numbered_unpadded_resume_as_the_same_data(tmp_path):
    """data.val of frame1 ... frame12 was listed frame1, frame10, frame11, frame12, frame2, ...
    before numbers read as numbers, and last.pt's digest of the validation images was taken in
    that order: resumed after the change, the run said its validation images had changed
    ("relabelled?") and scored best.pt again, though not one had."""
    import numpy as np

    from distill.checkpoint import atomic_save
    from distill.data_checks import data_signature
    from distill.images import write_image
    from distill.validation import load_val_items

    data = tmp_path / "pairs"
    rng = np.random.default_rng(0)
    for i in range(1, 13):
        img = rng.random((40, 40, 3)).astype(np.float32)
        write_image(data / "blur" / f"frame{i}.png", img)
        write_image(data / "sharp" / f"frame{i}.png", img)
    out = tmp_path / "r"
    val = {"data.val": str(data), "data.val_max_images": 12}
    train(tiny_cfg(out, 4, stop_after=2, **val), quiet=True)
    ck = read_checkpoint(out / "last.pt")
    items = load_val_items(tiny_cfg(out, 4, **val), False, lambda m: None, lambda m: None)
    assert sorted(v.name for v in items) == sorted(f"frame{i}" for i in range(1, 13))
    # As the versions before took it: in the order of the files' names by their characters.
    then = data_signature([], sorted(items, key=lambda v: v.path.name))["val_digest"]
    atomic_save({**ck, "data": {**ck["data"], "val_digest": then}}, out / "last.pt")
    with runtime_warnings() as said:
        train(tiny_cfg(out, 4, **val), quiet=True)
    assert not [m for m in said if "data changed" in m], said


def test_a_grown_checkpoint_resumed_is_not_called_an_older_version_s(tmp_path):
    """`sharpen grow` writes a step-0 checkpoint that records no process count (no step was
    taken): resumed, it was said to be saved by an older version, its batch perhaps changed."""
    from distill.grow import grow_student

    train(tiny_cfg(tmp_path / "a", 2), quiet=True)
    args = grow_student(tmp_path / "a" / "last.pt", tmp_path / "g.pt", blocks=2)
    grown = {"model.args": "{" + ", ".join(f"{k}: {v}" for k, v in args.items()) + "}"}
    with runtime_warnings() as said:
        train(tiny_cfg(tmp_path / "b", 2, resume=str(tmp_path / "g.pt"), **grown), quiet=True)
    assert [m for m in said if "holds weights only" in m], said   # it was resumed
    assert not [m for m in said if "processes" in m], said
    assert read_checkpoint(tmp_path / "b" / "last.pt")["processes"] == 1


def test_validation_curves_keep_an_older_versions_ssim_apart(tmp_path):
    """A run started before the SSIM became the published Gaussian one and resumed after it
    has both formulas' scores in metrics.jsonl, which curves.png joined into one line: every
    curve stepped down at the resume (0.9494 to 0.9465 for the same teacher outputs), read as
    the model getting worse. Each record now names its formula; older ones draw apart."""
    from distill.metrics import SSIM_ID
    from distill.train_log import ssim_series

    out = tmp_path / "r"
    train(tiny_cfg(out, 2, val_every=1), quiet=True)
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    vals = [r for r in recs if "val" in r]
    assert vals and all(r["ssim_formula"] == SSIM_ID for r in vals), vals
    older = [{"step": s, "val": {"model_gt_ssim": 0.9494}} for s in (10, 20)]   # as written
    newer = [{"step": s, "val": {"model_gt_ssim": 0.9465}, "ssim_formula": SSIM_ID}
             for s in (30, 40)]
    series = ssim_series(older + newer)
    assert series["model_gt_ssim"] == [(30, 0.9465), (40, 0.9465)]
    assert series["model_gt_ssim, an older version's SSIM"] == [(10, 0.9494), (20, 0.9494)]


@pytest.mark.filterwarnings(   # the resume changes data.batch_size and optim.steps on purpose
    "ignore:resuming .* with settings of its own changed:runtime.warn.SharpenWarning")
def test_a_resume_at_another_batch_of_a_step_goes_on_from_the_crops_already_seen(
        tmp_path, monkeypatch):
    """A step's crops were those at positions (step * processes + rank) * batch: a run resumed
    with another batch of a step (another torchrun --nproc_per_node, a node lost, or another
    data.batch_size) jumped in the crop stream, from 4 processes to 1 training again on the
    very crops (same image, same crop: each is a function of its position) of the last three
    quarters of the steps taken, and from 1 to 4 skipping ahead. The run now goes on at the
    first crop not yet trained on."""
    from distill.data.synthetic import SyntheticBlurDataset   # tiny_cfg's training set
    seen: list[int] = []
    getitem = SyntheticBlurDataset.__getitem__

    def spy(self, index):
        seen.append(index)
        return getitem(self, index)

    monkeypatch.setattr(SyntheticBlurDataset, "__getitem__", spy)
    train(tiny_cfg(tmp_path / "r", 3), quiet=True)   # batch 2: crops 0..5
    assert seen == list(range(6))
    seen.clear()
    train(tiny_cfg(tmp_path / "r", 5, **{"data.batch_size": 4}), quiet=True)
    assert seen == list(range(6, 14))
    assert read_checkpoint(tmp_path / "r" / "last.pt")["samples"] == 14
    seen.clear()
    train(tiny_cfg(tmp_path / "r", 6, **{"data.batch_size": 4}), quiet=True)
    assert seen == list(range(14, 18))


def test_the_step_sampler_hands_each_rank_its_share_from_where_the_run_got_to():
    from distill.train_loader import StepSampler
    ranks = [list(StepSampler(10**9, 2, 5, 7, r, 2, start_sample=10)) for r in (0, 1)]
    assert ranks == [[10, 11, 14, 15], [12, 13, 16, 17]]
    # without it, the positions of an unbroken run at this batch of a step
    assert list(StepSampler(10**9, 2, 5, 6, 1, 2)) == [22, 23]


@pytest.mark.filterwarnings(   # the resume raises optim.steps on purpose
    "ignore:resuming .* with settings of its own changed:runtime.warn.SharpenWarning")
def test_a_resume_under_another_process_count_is_in_train_log_with_its_learning_rate(tmp_path):
    """The warning that the batch of a step changed with the process count was said on the
    console alone: train.log, where a user looks back at a run moved from 4 GPUs to 1, did
    not say it, nor that the learning rate is not scaled with the batch."""
    from distill.checkpoint import atomic_save
    train(tiny_cfg(tmp_path / "r", 2, **{"optim.lr": 0.002}), quiet=True)
    last = tmp_path / "r" / "last.pt"
    ck = read_checkpoint(last)
    atomic_save({**ck, "processes": 2}, last)   # as a torchrun --nproc_per_node 2 run saves it
    said = ("r/last.pt was trained by 2 processes, this run has 1: data.batch_size (2) is per "
            "process, so the batch of a step changes from 4 to 2; the learning rate is not "
            "scaled with it (optim.lr 0.002 as set)")
    with pytest.warns(SharpenWarning, match=re.escape(said)):
        train(tiny_cfg(tmp_path / "r", 4, **{"optim.lr": 0.002}), quiet=True)
    assert f"warning: {tmp_path / said}" in (tmp_path / "r" / "train.log").read_text()


# Run by torchrun in the test below: process 1 is killed (kill -9, the kernel's OOM killer, a
# lost node) after step 5, once last.pt holds step 4. Not at once: process 0 has then had
# step 5's gradients and waits in the step's next exchange, the step a snapshot is due at.
_KILLED_RANK = """
import os, signal, sys, time
from distill.trainer import Trainer
step = Trainer._train_step

def step_then_die(self, batch):
    out = step(self, batch)
    if self.dist.rank == 1 and self.step == 4:   # its 5th step
        time.sleep(2)
        os.kill(os.getpid(), signal.SIGKILL)
    return out

Trainer._train_step = step_then_die
# torchrun's SIGTERM to the others once it sees process 1 gone, here as late as it can come:
# once process 0 has saved and is leaving
import torch.distributed as dist
destroy = dist.destroy_process_group

def destroy_after_sigterm(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    return destroy(*args, **kwargs)

dist.destroy_process_group = destroy_after_sigterm
from sharpen.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_rank_ends_the_job_with_one_line_naming_the_checkpoint_to_resume(tmp_path):
    """kill -9 of one torchrun worker: process 0 died on gloo's "Connection reset by peer.
    This is typically caused by a remote worker hanging ... GLHF!" traceback, and train.log
    ended at the last step logged, saying nothing of the stop."""
    out = tmp_path / "run"
    base = _cli_teacher_run(tmp_path, out, workers=0)
    script = tmp_path / "killed_rank.py"
    script.write_text(_KILLED_RANK)
    with torchrun([str(script), *base[3:], "optim.steps=100", "ckpt_every=4",
                   "snapshot_every=5", "device=cpu"], tmp_path) as proc:
        said, _ = proc.communicate(timeout=180)
    assert proc.returncode != 0
    # The step it got to (5; 4 where process 1 died in the step's gradient exchange, before
    # process 0 took it) is saved: nothing trained is lost, as on a Ctrl-C.
    found = re.search(
        r"sharpen train-teacher: error: (another process of this torchrun job stopped \(killed, "
        r"out of memory or crashed: torchrun's report names it\) at step ([45]); this "
        r"one stops too, having saved (\S+) at that step: run the same command to resume "
        r"\(with this or another --nproc_per_node\))", said)
    assert found, said[-3000:]
    assert found[3] == str(out / "last.pt")
    assert "[rank0]: Traceback" not in said and "GLHF" not in said, said[-3000:]
    # the line and its exit status stand, torchrun's SIGTERM or not
    assert "interrupted (SIGTERM)" not in said, said[-3000:]
    assert re.search(r"rank +: 0 \(local_rank: 0\)\n +exitcode +: 1 ", said), said[-3000:]
    assert found[1] in (out / "train.log").read_text()
    assert read_checkpoint(out / "last.pt")["step"] == int(found[2])
    # Saved at step 5, the snapshot due there too: the resumed run goes on after it and never
    # writes it (step 4: none due)
    assert (out / "step5.pt").exists() == (found[2] == "5"), found[2]


def test_a_process_other_than_0_does_not_name_a_step_process_0_may_be_saving_past(tmp_path):
    """Process 2 of 3 killed: process 1 said "last.pt (step 3) is intact", read as process 0
    wrote step 5 into it, beside process 0's "having saved last.pt at that step" (step 5)."""
    from distill.dist import DistInfo
    from distill.trainer import Trainer
    train(tiny_cfg(tmp_path / "r", 3, ckpt_every=3), quiet=True)
    t = Trainer(tiny_cfg(tmp_path / "r", 6, ckpt_every=3), quiet=True)
    t.dist, t.step = DistInfo(rank=1, world=3, local_rank=1), 5
    said = t._save_what_is_left()
    assert "step 3" not in said, said
    assert said == (f"; process 0 saves {tmp_path / 'r' / 'last.pt'} at the step it got to, "
                    "unless it is the one lost: run the same command to resume (with this or "
                    "another --nproc_per_node)")
    assert read_checkpoint(tmp_path / "r" / "last.pt")["step"] == 3   # not this process's


def test_only_a_collectives_failure_counts_as_a_lost_process():
    """Any RuntimeError whose text held "gloo" or "NCCL" did: a run diverged under torchrun
    with out=runs/NCCL-4gpu (the folder is in TrainingDiverged's text) was reported as
    "another process of this torchrun job stopped"."""
    from distill.trainer import TrainingDiverged, _peer_lost
    gloo = ("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection "
            "closed by peer [127.0.0.1]:57511. This is typically caused by a remote worker "
            "crashing. Check the logs of the remote worker before reporting an error. GLHF!")
    assert _peer_lost(RuntimeError(gloo))
    assert _peer_lost(RuntimeError("NCCL error in: ProcessGroupNCCL.cpp:1970, remote process "
                                   "exited or there was a network error"))
    assert not _peer_lost(TrainingDiverged(
        "training diverged at step 7: the loss or its gradient was NaN/inf for 20 batches in a "
        "row (weights left as they were before them; the last checkpoint in runs/NCCL-4gpu is "
        "intact)"))
    assert not _peer_lost(RuntimeError("cannot decode /data/gloo-shots/a.png"))


def _two_steps_argv(out, crop: int, workers: int) -> list[str]:
    """`sharpen train` of a tiny student for two steps, a checkpoint at each."""
    return ["train", f"out={out}", "task=teacher", "model.arch=fast",
            "model.args={width: 8, blocks: 1, low_blocks: 1}", "optim.steps=2",
            "optim.warmup_steps=1", f"data.crop={crop}", "data.batch_size=2",
            f"data.workers={workers}", "val_every=1000", "ckpt_every=1", "data.val_max_images=1",
            "data.val_max_side=64", "--quiet"]


def test_full_shared_memory_for_the_loader_workers_is_one_line_saying_what_to_do(tmp_path):
    """A data-loading worker that could not put its batch in shared memory (/dev/shm full, as
    a container's 64 MB default fills; here a file size limit stands in, which /dev/shm's files
    meet too) ended `sharpen train` and `sharpen demo` in torch's worker traceback, exit 1,
    nothing said of /dev/shm or data.workers. One line now, exit 2, with both cures."""
    from child_fixtures import main_with_file_limit
    out = tmp_path / "run"
    argv = _two_steps_argv(out, crop=64, workers=1)

    said = main_with_file_limit(argv, 60_000)   # a batch's crops: 2 x 98,304 bytes
    assert "error" not in said and said.get("rc") == 2, said
    last = said["err"].strip().splitlines()[-1]
    assert last.startswith("sharpen train: error: the data-loading workers (data.workers=1) "
                           "could not pass a batch through shared memory (/dev/shm: File too "
                           "large)"), said["err"]
    assert "--shm-size" in last and "data.workers=0" in last, last
    assert "Traceback" not in said["err"], said["err"]
    assert "error: the data-loading workers" in (out / "train.log").read_text()


@pytest.mark.parametrize("text, why", [
    # torch's three words for a shared-memory file it could not size, reserve or write
    ("unable to allocate shared memory(shm) for file </torch_1_2_3>: No space left on device "
     "(28)", "No space left on device"),
    ("unable to resize file </torch_1_2_3> to the right size: No space left on device (28)",
     "No space left on device"),
    ("unable to write to file </torch_1_2_3>: No space left on device (28)",
     "No space left on device"),
    # a worker's own failure, which /dev/shm does not cure: torch's traceback as it was
    ("RuntimeError: /data/a.png: not a readable image (corrupt or unsupported format)", ""),
    ("OSError: [Errno 28] No space left on device: '/data/cache/a.npy'", ""),
])
def test_only_shared_memory_refused_to_a_loader_worker_is_said_as_dev_shm(text, why):
    """The /dev/shm line stands in for a worker's traceback only where torch's own words say
    the worker's batch found no room in shared memory, not for any worker's RuntimeError."""
    from distill.trainer import _shared_memory_refused
    caught = ("Caught RuntimeError in DataLoader worker process 0.\nOriginal Traceback (most "
              "recent call last):\n  File \"fetch.py\", line 1, in fetch\n")
    assert _shared_memory_refused(RuntimeError(caught + text)) == why
    # the same words from this process, no worker's: not the loader's shared memory
    assert _shared_memory_refused(RuntimeError(text)) == ""


def test_a_full_disk_at_a_checkpoint_is_one_line_saying_how_to_go_on(tmp_path):
    """A disk (or quota) full as last.pt was written ended `sharpen train` in a traceback
    through atomic.py. A file size limit (ulimit -f) in a child stands in for the full disk:
    the checkpoint's write fails as it would, the small logs beside it are written."""
    from child_fixtures import main_with_file_limit
    out = tmp_path / "run"
    argv = _two_steps_argv(out, crop=32, workers=0)

    said = main_with_file_limit(argv, 8000)
    assert "error" not in said and said.get("rc") == 2, said
    assert said["err"].strip().splitlines()[-1] == (
        f"sharpen train: error: {out / 'last.pt'}: File too large (the limit on one file's "
        "size, ulimit -f or a FAT32 disk's 4 GiB, not the disk's space); what is done is "
        "kept: raise it or write elsewhere, and run the same command to continue"), said["err"]
    assert not list(out.glob("*.pt")) and not list(out.glob(".*.pt*")), list(out.iterdir())


def test_a_checkpoint_is_the_bytes_torch_save_writes_to_a_file(tmp_path):
    """atomic_save hands torch.save a wrapper of the file (to keep a full disk's OSError): the
    checkpoint must stay the bytes torch writes to the file itself, or export's
    weights_sha256 of it (what its artifacts were built from) would change with the weights
    the same."""
    from distill.checkpoint import atomic_save
    obj = {"model": {"w": torch.arange(300.0).reshape(3, 100)}, "step": 7}
    atomic_save(obj, tmp_path / "a.pt")
    with open(tmp_path / "b.pt", "wb") as f:
        torch.save(obj, f)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


def test_a_data_source_message_names_the_config_key_not_the_commands_data_flag(tmp_path):
    """A paired folder whose names differ told train-teacher users to 'give the list as
    --data', an option training has not: the sources speak evaluate's and labels' flag, which
    training names as its key (as it names --gopro-blur's)."""
    import cv2
    import numpy as np
    for side, suffix in (("blur", "_blur"), ("sharp", "_gt")):
        (tmp_path / "pairs" / side).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(tmp_path / "pairs" / side / f"{i:04d}{suffix}.png"),
                        np.zeros((64, 64, 3), np.uint8))
    with pytest.warns(SharpenWarning, match="ignored"):
        with pytest.raises(ValueError, match=r"give the list as data\.train=") as e:
            train(tiny_cfg(tmp_path / "run", 1, **{"data.train": tmp_path / "pairs"}),
                  quiet=True)
    assert "--data" not in str(e.value), e.value
    from distill.train_data import naming
    with pytest.raises(ValueError) as e:   # a command to run keeps its flag
        with naming("data.val", "v"):
            raise ValueError("run `sharpen labels --data D --out v`, or inside: --data a, --data b")
    assert str(e.value) == ("data.val=v: run `sharpen labels --data D --out v`, or inside: "
                            "data.val=a, data.val=b"), e.value
