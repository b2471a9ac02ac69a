"""`sharpen runs`: training runs side by side, as an ablation is read (state, steps, time, best
and last validation with their steps, the settings that differ, curves on one axis), and a
clear line for each folder that is no run to compare."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from distill.trainer import TrainingDiverged, train
from runtime.run_lock import run_lock
from sharpen.cli import main
from test_trainer import _embedded_images_made_once, tiny_cfg   # noqa: F401


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two tiny real runs of an ablation: b changes loss.ssim and is stopped by its step
    budget (stop_after) at step 2 of 4."""
    root = tmp_path_factory.mktemp("runs")
    train(tiny_cfg(root / "a", 4, val_every=2), quiet=True)
    train(tiny_cfg(root / "b", 4, val_every=2, stop_after=2, **{"loss.ssim": 0.5}),
          quiet=True)
    return root


def runs(capsys, *args) -> tuple[int, str]:
    code = main(["runs", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_an_export_folder_without_same_says_what_compares_it(tmp_path, capsys):
    """`sharpen runs` on export folders, --same forgotten: the one comparison they have is
    named, not only that they are no training runs."""
    for name in ("export-a", "export-b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "export_report.json").write_text('{"results": []}')
    code, text = runs(capsys, tmp_path / "export-a", tmp_path / "export-b")
    assert code == 1, text
    assert (f"{tmp_path / 'export-a'}: an export folder, not a training run: `sharpen runs "
            "EXPORT-A EXPORT-B --same` compares two exports" in text), text

def rows(text: str) -> dict[str, str]:
    return {line.split()[0]: line for line in text.splitlines()[2:] if line.split()}


def test_a_table_of_each_runs_state_scores_and_only_the_settings_that_differ(two_runs, capsys,
                                                                             tmp_path):
    code, text = runs(capsys, two_runs / "a", two_runs / "b", "--out", tmp_path / "cmp")
    assert code == 0, text
    header = text.splitlines()[0].split("  ")
    assert "loss.ssim" in text.splitlines()[0], text
    # what the two share is not a column, nor out= (every run has its own)
    assert "data.crop" not in text and "optim.lr" not in text and " out " not in header, text
    a, b = rows(text)["a"], rows(text)["b"]
    assert "finished" in a and " 4/4 " in a, text
    assert "stopped (budget)" in b and " 2/4 " in b, text
    ssim = [r["val"]["model_gt_ssim"] for r in map(json.loads, (two_runs / "a" / "metrics.jsonl")
            .read_text().splitlines()) if "val" in r]
    assert f"{max(ssim):.4f} @" in a and f"{ssim[-1]:.4f} @4" in a, (ssim, text)
    assert a.split()[-1] == "0.2" and b.split()[-1] == "0.5", text   # loss.ssim of each
    png = tmp_path / "cmp" / "runs.png"
    assert png.stat().st_size > 10_000 and "curves by steps" in text, text
    import csv
    with open(tmp_path / "cmp" / "runs.csv", encoding="utf-8-sig", newline="") as f:
        table = {r["run"]: r for r in csv.DictReader(f)}
    assert float(table["a"]["best_ssim"]) == max(ssim) and table["a"]["last_ssim_step"] == "4"
    assert table["b"]["state"] == "stopped (budget)" and table["b"]["loss.ssim"] == "0.5"
    assert table["a"]["score"] == "model_gt", table


def test_a_folder_of_runs_stands_for_each_run_in_it(two_runs, capsys):
    code, text = runs(capsys, two_runs)
    assert code == 0 and set(rows(text)) >= {"a", "b"}, text


def test_runs_csv_opens_in_a_spreadsheet_without_running_a_run_name_as_a_formula(two_runs,
                                                                               capsys, tmp_path):
    """runs.csv wrote a run folder named `=cmd|' -C calc'!A0` or `-lr 3e-4` as a cell a
    spreadsheet runs as a formula (CSV injection), and with no byte-order mark Excel read
    `Straße` in the ANSI code page. The name now comes behind a `'`, after a BOM."""
    import csv
    odd = {"=cmd|' -C calc'!A0": two_runs / "a", "-lr Straße": two_runs / "b"}
    for name, run in odd.items():
        shutil.copytree(run, tmp_path / name)
    code, text = runs(capsys, *(tmp_path / n for n in odd), "--out", tmp_path / "cmp")
    assert code == 0, text
    raw = (tmp_path / "cmp" / "runs.csv").read_bytes()
    assert raw.startswith("\ufeffrun,".encode()), raw[:20]
    with open(tmp_path / "cmp" / "runs.csv", encoding="utf-8-sig", newline="") as f:
        table = list(csv.DictReader(f))
    assert {r["run"] for r in table} == {"'" + n for n in odd}, table
    assert all(not c.startswith(("=", "+", "-", "@")) for r in table for c in r.values()), table
    assert {r["loss.ssim"] for r in table} == {"0.2", "0.5"}, table


def test_runs_csv_keeps_a_setting_that_is_none_a_dash(two_runs, capsys, tmp_path):
    """A setting null in one run's config.yaml reads `-` in the table; runs.csv wrote it `'-`
    (the formula guard took the lone dash for a formula's start), text with a quote to pandas
    and in a spreadsheet."""
    import csv
    for name in ("a", "b"):
        shutil.copytree(two_runs / name, tmp_path / name)
    cfg = tmp_path / "b" / "config.yaml"
    cfg.write_text(cfg.read_text().replace("init: ''", "init: null"))
    code, text = runs(capsys, tmp_path / "a", tmp_path / "b", "--out", tmp_path / "cmp")
    assert code == 0 and " init " in f" {text.splitlines()[0]} ", text
    with open(tmp_path / "cmp" / "runs.csv", encoding="utf-8-sig", newline="") as f:
        table = {r["run"]: r for r in csv.DictReader(f)}
    assert (table["a"]["init"], table["b"]["init"]) == ("", "-"), table


def test_each_runs_curves_differ_by_line_style_and_marker_not_colour_alone(two_runs,
                                                                           tmp_path):
    """runs.png drew every run as the same solid line with the same dot, in its own colour
    alone: printed in greyscale, or to a reader who does not tell red from green, runs a and b
    were the same curve. Each run now has its own line style and marker, in the legend too."""
    from distill.runs_compare import figure, read_run
    for i in range(3):
        shutil.copytree(two_runs / "a", tmp_path / f"c{i}")
    runs = [read_run(p) for p in (two_runs / "a", two_runs / "b", *sorted(tmp_path.iterdir()))]
    fig = figure(runs, "steps")
    for ax in fig.axes:
        styles = {ln.get_label(): (ln.get_linestyle(), ln.get_marker()) for ln in ax.get_lines()
                  if not ln.get_label().startswith("_") and ln.get_label() != "blurred input"}
        assert len(styles) == 5 and len(set(styles.values())) == 5, styles
        legend = ax.get_legend()
        shown = {t.get_text(): (h.get_linestyle(), h.get_marker())
                 for t, h in zip(legend.get_texts(), legend.legend_handles)}
        assert {k: shown[k] for k in styles} == styles, (shown, styles)


def test_runs_png_names_an_older_versions_ssim_curve_and_its_blurred_input(two_runs,
                                                                          tmp_path):
    """runs.png drew an older version's SSIM curve (0.8923 at step 8 where this version's
    gives 0.8858 for the same weights) beside this version's as one scale, with a second
    unnamed 'blurred input' line of its input's older score, while `best:` left it out."""
    from distill.runs_compare import figure, read_run
    old = tmp_path / "old"
    shutil.copytree(two_runs / "a", old)
    recs = [json.loads(line) for line in (old / "metrics.jsonl").read_text().splitlines()]
    for r in recs:
        if r.pop("ssim_formula", None):
            r["val"] = {k: v + 0.01 if k.endswith("_ssim") else v for k, v in r["val"].items()}
    (old / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    fig = figure([read_run(two_runs / "a"), read_run(old)], "steps")
    _, psnr, ssim = fig.axes
    assert [t.get_text() for t in ssim.get_legend().get_texts()] == [
        "a", "old, an older version's SSIM", "blurred input",
        "blurred input, an older version's SSIM"]
    assert [t.get_text() for t in psnr.get_legend().get_texts()] == ["a", "old",
                                                                     "blurred input"]


def test_a_killed_run_and_one_being_written_are_read_as_they_are(two_runs, capsys, tmp_path):
    """A SIGKILL leaves train.log without its end line; a run being written has its lock held
    and its last metrics.jsonl line half written: neither is a traceback or a wrong state."""
    killed, live = tmp_path / "killed", tmp_path / "live"
    for d in (killed, live):
        shutil.copytree(two_runs / "a", d)
        log = d / "train.log"
        log.write_text("".join(line + "\n" for line in log.read_text().splitlines()
                               if " finished at step " not in line))
    # a killed run leaves its lock file, which no process holds
    (killed / ".lock").write_text(f"{os.getpid()}\nrun\ntraining")
    with open(live / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "loss": 0.1')
    with run_lock(live):
        code, text = runs(capsys, killed, live)
    assert code == 0, text
    assert "killed" in rows(text)["killed"] and "running" in rows(text)["live"], text
    assert "live: running: step 4 of 4, eta 0:00:00 at its last step record" in text, text
    assert "not JSON" not in text, text   # the line being written is no error
    assert "killed: killed (no end in train.log): the same command resumes it from last.pt; " \
        "last written 0:00:0" in text, text
    (killed / "last.pt").unlink()
    code, text = runs(capsys, killed)
    assert "killed before its first checkpoint (no end in train.log, no last.pt): the same " \
        "command starts it over" in text, text


def test_folders_that_cannot_be_compared_each_get_a_line_not_a_traceback(two_runs, capsys,
                                                                         tmp_path):
    empty, other, old, fresh = (tmp_path / n for n in ("empty", "photos", "old", "fresh"))
    empty.mkdir()
    other.mkdir()
    (other / "x.png").write_bytes(b"")
    old.mkdir()   # an older version's run: its checkpoints alone
    shutil.copy(two_runs / "a" / "last.pt", old / "last.pt")
    shutil.copytree(two_runs / "a", fresh)   # started, no validation yet
    (fresh / "metrics.jsonl").write_text("".join(
        line + "\n" for line in (two_runs / "a" / "metrics.jsonl").read_text().splitlines()
        if '"val"' not in line))
    code, text = runs(capsys, empty, other, old, fresh, tmp_path / "gone")
    assert code == 0, text
    assert f"{empty}: empty folder" in text, text
    assert f"{other}: not a training run (no metrics.jsonl, train.log, config.yaml or " \
        "checkpoint), nor a folder of them" in text, text
    assert f"{old}: no metrics.jsonl or train.log: an older version's run" in text, text
    assert "fresh: no validation yet (val_every=2)" in text, text
    assert f"{tmp_path / 'gone'}: no such folder" in text, text
    assert "Traceback" not in text
    code, text = runs(capsys, empty, other)
    assert code == 1 and "empty folder" in text, text


def test_an_older_versions_ssim_is_flagged_as_not_comparable(two_runs, capsys, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(two_runs / "a", old)
    recs = [json.loads(line) for line in (old / "metrics.jsonl").read_text().splitlines()]
    (old / "metrics.jsonl").write_text("".join(
        json.dumps({k: v for k, v in r.items() if k != "ssim_formula"}) + "\n" for r in recs))
    code, text = runs(capsys, two_runs / "a", old)
    assert "old: written by an older version: its SSIM used another formula" in text, text


def test_a_run_whose_budget_was_spent_at_its_last_step_reads_finished(two_runs, capsys,
                                                                      tmp_path):
    """An older version ended train.log with 'stopped at step 4 (time or step budget
    reached)' where stop_after ran out at the last of 4 steps: shown 'stopped (budget) 4/4'."""
    done = tmp_path / "done"
    shutil.copytree(two_runs / "a", done)
    log = (done / "train.log").read_text().splitlines()
    log[-1] = log[-1].split(" finished at ")[0] + " stopped at step 4 (time or step budget " \
        "reached)"
    (done / "train.log").write_text("\n".join(log) + "\n")
    code, text = runs(capsys, done)
    assert "finished" in rows(text)["done"] and " 4/4 " in rows(text)["done"], text


def test_a_log_of_a_version_that_wrote_process_es_reads_its_budget_stop_at_the_end(
        two_runs, capsys, tmp_path):
    """train.log of versions of 3 to 5 December began '1 process(es), batch 2 per process':
    its start line was not read (the steps, processes and batch of each stretch), and a
    budget spent at the last of 4 steps still read 'stopped (budget) 4/4'."""
    done = tmp_path / "done"
    shutil.copytree(two_runs / "a", done)
    log = (done / "train.log").read_text().splitlines()
    log = [line.replace(" 1 process, batch", " 1 process(es), batch") for line in log]
    log[-1] = log[-1].split(" finished at ")[0] + " stopped at step 4 (time or step budget " \
        "reached)"
    (done / "train.log").write_text("\n".join(log) + "\n")
    code, text = runs(capsys, done)
    assert "finished" in rows(text)["done"] and " 4/4 " in rows(text)["done"], text


def test_an_older_versions_run_is_not_named_best_by_its_other_formula(two_runs, capsys,
                                                                     tmp_path):
    """An older version's run (SSIM 0.9234, 0.9191 by this version's formula) beside one of
    this version (0.9217) was named 'best:' by the older formula's higher number."""
    old = tmp_path / "old"
    shutil.copytree(two_runs / "a", old)
    recs = [json.loads(line) for line in (old / "metrics.jsonl").read_text().splitlines()]
    for r in recs:
        r.pop("ssim_formula", None)
        if "val" in r:
            r["val"]["model_gt_ssim"] = 0.99
    (old / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    code, text = runs(capsys, two_runs / "a", old)
    best = [line for line in text.splitlines() if line.startswith("best: ")]
    assert best and best[0].startswith("best: a ("), text
    assert best[0].endswith("; old left out: an older version's SSIM"), text
    runs(capsys, two_runs / "a", old, "--out", tmp_path / "cmp")
    import csv
    from distill.metrics import SSIM_ID
    with open(tmp_path / "cmp" / "runs.csv", encoding="utf-8-sig", newline="") as f:
        table = {r["run"]: r for r in csv.DictReader(f)}
    # a script taking the highest best_ssim took old's too
    assert table["a"]["ssim_formula"] == SSIM_ID, table
    assert table["old"]["ssim_formula"] == "not recorded (an older version's)", table
    shutil.copytree(old, tmp_path / "old2")
    code, text = runs(capsys, old, tmp_path / "old2")   # one older version's: among them
    assert "best: old and old2, tied" in text, text


def test_a_run_resumed_across_an_upgrade_is_best_by_this_versions_ssim_alone(two_runs, capsys,
                                                                           tmp_path):
    """A run an older version stopped at step 2 and this one resumed: step 2's record holds
    the older SSIM (0.9234 where this version's gives 0.9191 on the same weights), and it was
    shown as the run's best SSIM and made the run best, beside records of this formula."""
    resumed = tmp_path / "resumed"
    shutil.copytree(two_runs / "a", resumed)
    recs = [json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    for r in recs:
        if "val" in r and r["step"] == 2:   # written before the upgrade: higher, no formula
            del r["ssim_formula"]
            r["val"]["model_gt_ssim"] = 0.99
    (resumed / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    last = [r["val"]["model_gt_ssim"] for r in recs if "val" in r][-1]
    code, text = runs(capsys, resumed)
    row = rows(text)["resumed"]
    assert f"{last:.4f} @4  {last:.4f} @4" in row, text
    assert ("resumed: its SSIM up to step 2 (before this version resumed it) used an older "
            "version's formula: left out of its best and last SSIM" in text), text
    assert "written by an older version" not in text, text


def test_runs_of_other_batches_or_process_counts_line_up_by_samples(two_runs, capsys, tmp_path):
    """A torchrun run of 2 processes takes twice the crops of a step: by steps its curve sat
    at half the data of the other's."""
    two = tmp_path / "two"
    shutil.copytree(two_runs / "a", two)
    log = two / "train.log"
    log.write_text(log.read_text().replace(", 1 process, batch 2 per process of 32 px crops",
                                           ", 2 processes, batch 2 per process, 4 crops of "
                                           "32 px a step"))
    from distill.runs_compare import pick_axis, read_run, samples_axis
    one, both = read_run(two_runs / "a"), read_run(two)
    assert one.crops_per_step == [(0, 2)] and both.crops_per_step == [(0, 4)]
    assert samples_axis(both, 4) == 2 * samples_axis(one, 4) == 16
    assert pick_axis([one, both], "auto") == "samples"
    assert pick_axis([one, one], "auto") == "steps"
    code, text = runs(capsys, two_runs / "a", two, "--out", tmp_path / "c")
    assert "curves by samples" in text, text
    assert "processes" in text.splitlines()[0] and rows(text)["two"].split()[-1] == "2", text


def test_runs_of_other_loss_weights_are_told_their_training_losses_do_not_compare(two_runs,
                                                                                  capsys):
    """b weighs SSIM 0.5 where a weighs it 0.2: its loss curve sat far above a's, read as a
    worse run, when its validation scores were level."""
    code, text = runs(capsys, two_runs / "a", two_runs / "b")
    assert "the runs weigh their loss terms differently: their training losses are not " \
        "comparable" in text, text
    code, text = runs(capsys, two_runs / "a", two_runs / "a")
    assert "loss terms" not in text, text


def test_a_run_named_twice_is_one_row(two_runs, capsys):
    code, text = runs(capsys, two_runs / "a", two_runs / "a" / ".." / "a")
    assert list(rows(text)) == ["a"], text


@pytest.mark.filterwarnings(   # the diverging run resumes with other optim.steps on purpose
    "ignore:resuming .* with settings of its own changed:runtime.warn.SharpenWarning")
def test_a_signal_stop_reads_interrupted_and_a_diverged_run_failed_not_killed(two_runs, capsys,
                                                                              tmp_path):
    """A diverged run (TrainingDiverged) ended with no word in train.log, so it read as killed,
    and "the same command resumes it" sent the user to run it again as it was."""
    stopped = tmp_path / "ctrl-c"
    shutil.copytree(two_runs / "b", stopped)
    log = stopped / "train.log"
    log.write_text(log.read_text().replace("(time or step budget reached)",
                                           "by SIGINT; last.pt saved"))
    diverged = tmp_path / "huge-lr"
    train(tiny_cfg(diverged, 2, ckpt_every=2), quiet=True)
    with pytest.raises(TrainingDiverged):
        train(tiny_cfg(diverged, 8, ckpt_every=2, val_every=2, **{
            "optim.lr": 1e10, "optim.warmup_steps": 0, "optim.grad_clip": 0}), quiet=True)
    code, text = runs(capsys, stopped, diverged)
    assert "interrupted (SIGINT)" in rows(text)["ctrl-c"], text
    assert "failed" in rows(text)["huge-lr"], text
    assert "huge-lr: failed: training diverged by step" in text, text


def test_the_run_that_won_is_named_by_the_score_best_pt_is_chosen_by(two_runs, capsys):
    """An ablation's question is which run won: the table left the user to compare a column
    of 4-digit scores by eye."""
    from distill.runs_compare import _best, read_run
    a, b = read_run(two_runs / "a"), read_run(two_runs / "b")
    winner, (score, step) = max(((r, _best(r, "model_gt_ssim")) for r in (a, b)),
                                key=lambda p: p[1][0])
    code, text = runs(capsys, two_runs / "a", two_runs / "b")
    assert f"best: {winner.label} (model_gt SSIM {score:.4f} at step {step})" in text, text
    code, text = runs(capsys, two_runs / "a")
    assert "best:" not in text, text   # one run won nothing


def test_runs_tied_on_the_best_score_are_named_together(two_runs, capsys, tmp_path):
    """Two runs of one config and seed: `best:` crowned the first one named, as if it had
    won, where a reproduction's two runs scored alike."""
    shutil.copytree(two_runs / "a", tmp_path / "again")
    code, text = runs(capsys, two_runs / "a", tmp_path / "again")
    assert code == 0 and "best: a and again, tied (model_gt SSIM" in text, text


def test_a_damaged_line_inside_metrics_jsonl_is_skipped_and_said(two_runs, capsys, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(two_runs / "a", damaged)
    lines = (damaged / "metrics.jsonl").read_text().splitlines()
    lines.insert(1, "\x00\x00\x00")   # a power cut's zeros in the middle
    (damaged / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    code, text = runs(capsys, damaged)
    assert code == 0 and "finished" in rows(text)["damaged"], text
    assert "damaged: lines of metrics.jsonl that are not JSON were skipped" in text, text


def test_metrics_jsonl_records_the_crops_seen_and_runs_draws_by_them(two_runs, tmp_path):
    """Runs of other process counts or batches line up by data seen: each record says how many
    crops training had taken by its step (every process's), so that no reader has to rebuild
    it from train.log."""
    from distill.runs_compare import read_run, x_value
    recs = [json.loads(line) for line in (two_runs / "a" / "metrics.jsonl").read_text()
            .splitlines()]
    assert recs and all(r["samples"] == 2 * r["step"] for r in recs), recs   # batch 2, 1 process
    run = read_run(two_runs / "a")
    run.crops_per_step = [(0, 99)]   # what train.log says yields to the record
    assert x_value(run, recs[-1], "samples") == 2 * recs[-1]["step"]
    assert x_value(run, {"step": 3}, "samples") == 3 * 99   # an older version's record
    assert x_value(run, recs[-1], "steps") == recs[-1]["step"]


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"),
                                   ValueError("cannot decode crop.png")])
def test_a_crash_of_any_kind_reads_failed_with_its_error_not_killed(tmp_path, capsys,
                                                                    monkeypatch, error):
    """A full disk at a save (OSError) or a training image that no longer decodes (the loader
    re-raises a worker's ValueError as it was) ended with no word in train.log: read as
    killed, "the same command resumes it", which meets the same error again."""
    from distill.trainer import Trainer

    def fails(self, *a, **k):
        raise error
    monkeypatch.setattr(Trainer, "save", fails)
    with pytest.raises(type(error)):
        train(tiny_cfg(tmp_path / "r", 4, ckpt_every=2), quiet=True)
    code, text = runs(capsys, tmp_path / "r")
    assert "failed" in rows(text)["r"], text
    assert f"r: failed: {error}" in text, text


def test_a_keyboard_interrupt_is_no_failure(tmp_path, capsys, monkeypatch):
    """A KeyboardInterrupt outside the signal handlers (a debugger's, a second Ctrl-C) is the
    user's stop, not an error of the run."""
    from distill.trainer import Trainer
    step = Trainer._train_step

    def stops(self, batch):
        if self.step == 2:
            raise KeyboardInterrupt
        return step(self, batch)
    monkeypatch.setattr(Trainer, "_train_step", stops)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg(tmp_path / "r", 4), quiet=True)
    assert "error:" not in (tmp_path / "r" / "train.log").read_text()
    code, text = runs(capsys, tmp_path / "r")
    assert "failed" not in text, text


def test_the_figure_shows_a_lone_loss_record_and_a_loss_with_nothing_to_log_scale(tmp_path,
                                                                                  capsys):
    """A run killed after its first loss record drew a line of one point (nothing to see)
    under its name in the legend; a run whose losses are all NaN/inf/0 made matplotlib warn
    at the user that the data 'cannot be log-scaled'."""
    for name, losses in (("one", [0.25]), ("bad", [float("inf"), 0.0, float("nan")])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.jsonl").write_text("".join(
            json.dumps({"step": i + 1, "loss": v, "time": 1.0}) + "\n"
            for i, v in enumerate(losses)))
    import warnings
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        code, text = runs(capsys, tmp_path / "bad", "--out", tmp_path / "cmp")
    assert code == 0 and not [w for w in said if "log-scaled" in str(w.message)], said
    from distill.runs_compare import figure, read_run
    fig = figure([read_run(tmp_path / "one")], "steps")
    line = fig.axes[0].get_lines()[0]
    assert len(line.get_xdata()) == 1 and line.get_marker() not in (None, "None", ""), line


def test_runs_validated_on_other_images_are_told_so_and_no_winner_is_named(two_runs, capsys,
                                                                           tmp_path):
    """An SSIM over 2 validation images against one over 8 (or another data.val) is no
    comparison: "best:" crowned whichever set was easier."""
    import yaml
    fewer = tmp_path / "fewer"
    shutil.copytree(two_runs / "a", fewer)
    cfg = yaml.safe_load((fewer / "config.yaml").read_text())
    cfg["data"]["val_max_images"] = 2
    (fewer / "config.yaml").write_text(yaml.safe_dump(cfg))
    code, text = runs(capsys, two_runs / "b", fewer)
    assert code == 0 and "best:" not in text, text
    assert "note: the runs validate on other images (data.val_max_images): their scores are " \
        "not comparable" in text, text
    del cfg["data"]["val_max_side"]   # an older version's config.yaml: no other set for that
    cfg["data"]["val_max_images"] = 1
    (fewer / "config.yaml").write_text(yaml.safe_dump(cfg))
    code, text = runs(capsys, two_runs / "b", fewer)
    assert "best:" in text and "other images" not in text, text


@pytest.mark.filterwarnings(   # the resume changes data.batch_size on purpose
    "ignore:resuming .* with settings of its own changed:runtime.warn.SharpenWarning")
def test_samples_go_on_from_the_checkpoint_after_a_resume_with_other_crops_a_step(tmp_path):
    """A resume under another batch (or torchrun process count) takes other crops a step from
    there on: samples count on from what the checkpoint had taken, not step x today's batch;
    train.log's stretches give the same for a record without them."""
    from distill.runs_compare import read_run, samples_axis
    out = tmp_path / "r"
    train(tiny_cfg(out, 4, stop_after=2), quiet=True)
    train(tiny_cfg(out, 4, **{"data.batch_size": 4}), quiet=True)
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {r["step"]: r["samples"] for r in recs} == {1: 2, 2: 4, 3: 8, 4: 12}, recs
    run = read_run(out)
    assert run.crops_per_step == [(0, 2), (2, 4)] and samples_axis(run, 4) == 12


def _exit_code_as_nobody(check) -> int:
    """0 where `check()` is true run as user nobody (65534) in a forked child, 1 where false,
    2 where it raised (needs root)."""
    child = os.fork()
    if child == 0:   # pragma: no cover (the child's exit status is the result)
        try:
            os.setuid(65534)
            os._exit(0 if check() else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status)


def test_without_proc_locks_the_lock_files_process_says_whether_the_run_lives(tmp_path,
                                                                              monkeypatch):
    """Where /proc/locks is not there (macOS, a locked-down /proc) the lock file's process id
    is asked: a live one, another user's too (kill(pid, 0) says EPERM for it), is running."""
    import subprocess
    import tempfile
    from pathlib import Path

    import distill.runs_compare as rc
    monkeypatch.setattr(rc, "PROC_LOCKS", tmp_path / "no-proc-locks")
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text(f"{os.getpid()}\nrun\ntraining")
    assert rc._lock_held(run)
    gone = subprocess.Popen(["true"])
    gone.wait()
    (run / ".lock").write_text(f"{gone.pid}\nrun\ntraining")
    assert not rc._lock_held(run)
    if os.geteuid() != 0:
        return   # becoming another user below needs root
    other = Path(tempfile.mkdtemp(dir="/tmp"))   # one the other user can reach
    try:
        other.chmod(0o755)
        (other / ".lock").write_text("1\nrun\ntraining")   # process 1: alive, root's
        assert _exit_code_as_nobody(lambda: rc._lock_held(other)) == 0
    finally:
        shutil.rmtree(other)


def test_a_folder_that_cannot_be_read_gets_a_line_not_a_traceback(two_runs):
    """Another user's run folder (mode 700) ended `sharpen runs runs/` in a PermissionError
    traceback, the runs that could be read unshown."""
    import tempfile
    from pathlib import Path

    from distill.runs_compare import read_run, run_folders
    if os.geteuid() != 0:
        pytest.skip("becoming another user needs root")
    top = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        top.chmod(0o755)
        shutil.copytree(two_runs / "a", top / "mine")
        shutil.copytree(two_runs / "a", top / "theirs")
        for p in (top / "mine").rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        (top / "mine").chmod(0o755)
        (top / "theirs").chmod(0o700)
        def read_as_nobody() -> bool:
            got = {p.name: read_run(p) for p in run_folders([top])}
            return (set(got) == {"mine", "theirs"} and not got["mine"].problem
                    and "cannot be read: Permission denied" in got["theirs"].problem)

        assert _exit_code_as_nobody(read_as_nobody) == 0
    finally:
        shutil.rmtree(top)


def test_a_run_whose_crops_a_step_are_unknown_does_not_switch_the_axis_to_samples(two_runs,
                                                                                  tmp_path):
    """An older run with metrics.jsonl alone (no train.log, no config.yaml) has no batch to
    tell: taken as a batch of its own, it put every comparison on the samples axis, drawing
    it at one crop a step."""
    from distill.runs_compare import pick_axis, read_run
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(two_runs / "a" / "metrics.jsonl", old / "metrics.jsonl")
    assert pick_axis([read_run(two_runs / "a"), read_run(old)], "auto") == "steps"


def test_a_run_folder_named_in_latin1_is_drawn_by_its_bytes_not_a_crash(two_runs, capsys,
                                                                        tmp_path):
    """A run copied from a Latin-1 system (lauf-\\xe4) crashed the curves' figure in matplotlib,
    which cannot draw a name's byte that is not UTF-8, after the table was printed."""
    latin1 = tmp_path / os.fsdecode(b"lauf-\xe4")
    shutil.copytree(two_runs / "a", latin1)
    code, text = runs(capsys, latin1, two_runs / "b", "--out", tmp_path / "cmp")
    assert code == 0, text
    assert (tmp_path / "cmp" / "runs.png").is_file()


def test_runs_that_are_all_misnamed_are_a_usage_error_as_with_same(tmp_path, capsys):
    """`sharpen runs runs/fast-a runs/fast-b` with both names mistyped printed 'no such folder'
    lines on stdout and exited 1, as for runs that exist but hold nothing to compare, while
    `--same` on the same names exited 2 ('sharpen runs: error: ...'): one misnaming, two exit
    codes. Every name missing is now the usage error (exit 2) both ways, as `sharpen teacher`
    says its inputs are; one missing among runs is still a line of the table's report."""
    gone = [tmp_path / "fast-a", tmp_path / "fast-b"]
    for flag in ([], ["--same"]):
        code = main(["runs", *map(str, gone), *flag])
        out = capsys.readouterr()
        assert code == 2, (flag, out)
        assert out.err.startswith(f"sharpen runs: error: {gone[0]}: no such folder"), (flag, out)


def test_one_run_far_below_the_rest_is_named_below_the_chart_not_drawn_to_its_scale(
        two_runs, tmp_path):
    """One bad run of a sweep (a 30-step seed at 13 dB) stretched runs.png's shared PSNR and
    SSIM axes so that the other runs, 0.1 dB apart, drew as one line. The axes now keep to the
    runs near the best, and the run left below is named so in the legend with its best."""
    from distill.runs_compare import figure, read_run

    def shifted(name: str, psnr: float, ssim: float):
        shutil.copytree(two_runs / "a", tmp_path / name)
        path = tmp_path / name / "metrics.jsonl"
        recs = [json.loads(line) for line in path.read_text().splitlines()]
        for r in recs:
            if "val" in r:
                r["val"] = {k: v + (psnr if k.endswith("_psnr") else ssim)
                            if k.endswith(("_psnr", "_ssim")) and not k.startswith("input")
                            else v for k, v in r["val"].items()}
        path.write_text("".join(json.dumps(r) + "\n" for r in recs))
        return read_run(tmp_path / name)

    kept = [read_run(two_runs / "a"), shifted("near", 0.1, 0.001)]
    _, psnr, ssim = figure([*kept, shifted("bad", -15.0, -0.5)], "steps").axes
    for ax, drop in ((psnr, 15.0), (ssim, 0.5)):
        ys = [y for ln in ax.get_lines()[:2] for y in ln.get_ydata()]
        low, high = ax.get_ylim()
        assert min(ys) >= low and max(ys) <= high and high - low < 3 * (max(ys) - min(ys)) + \
            0.01 * drop, (ax.get_title(), low, high, ys)
        bad = max(ax.get_lines()[2].get_ydata())
        assert bad < low
        names = [t.get_text() for t in ax.get_legend().get_texts()]
        assert any(n.startswith("bad, below the chart (up to ") for n in names), names
    # Runs that are all near one another keep matplotlib's own limits, as before.
    _, psnr, _ = figure(kept, "steps").axes
    assert all("below the chart" not in t.get_text() for t in psnr.get_legend().get_texts())
