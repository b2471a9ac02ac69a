"""`sharpen runs A B --same`: whether two training runs are the same run (a reproduction
audited before a model ships), check by check, with exit 0 the same, 1 they differ, 2 bad
input. Real tiny runs, real checkpoints."""
from __future__ import annotations

import json
import shutil

import pytest
import yaml

from distill.checkpoint import atomic_save, read_checkpoint
from distill.trainer import train
from runtime import host
from sharpen.cli import main
from test_trainer import _embedded_images_made_once, tiny_cfg   # noqa: F401


COMMIT = "26c08ca1b2c3" + "0" * 28


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """a and b: one config and seed trained twice; c: the same with seed=1; d: a's run
    stopped at step 2 and resumed by the same command."""
    root = tmp_path_factory.mktemp("same")
    # Trained as from a clean checkout at one commit, whatever this one's state: code with
    # uncommitted changes cannot be shown the same (test_uncommitted_code_...).
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(host, "code_info", lambda: {"version": "0.1.0", "commit": COMMIT,
                                               "dirty": False})
        for name, extra in (("a", {}), ("b", {}), ("c", {"seed": 1})):
            train(tiny_cfg(root / name, 4, val_every=2, **extra), quiet=True)
        train(tiny_cfg(root / "d", 4, val_every=2, stop_after=2), quiet=True)
        train(tiny_cfg(root / "d", 4, val_every=2), quiet=True)
    return root


def same(capsys, *args, flag: str = "--same") -> tuple[int, str]:
    try:
        code = main(["runs", *map(str, args), *([flag] if flag else [])])
    except SystemExit as e:   # argparse's own usage errors
        code = e.code
    out = capsys.readouterr()
    return code, out.out + out.err


def verdicts(text: str) -> dict[str, str]:
    """The table's verdict column by check."""
    lines = text.splitlines()
    col = lines[0].index("verdict")
    return {line[:col].split("  ")[0].strip(): line[col:].strip() for line in lines[2:]
            if line[:1] != " " and len(line) > col}


def test_one_config_and_seed_trained_twice_is_the_same_run(runs, capsys):
    code, text = same(capsys, runs / "a", runs / "b")
    assert code == 0, text
    rows = verdicts(text)
    for check in ("state", "seed", "settings", "code version", "software", "training data",
                  "validation data", "weights last.pt", "weights best.pt", "metrics"):
        assert rows[check].startswith("same"), (check, text)
    assert rows["weights last.pt"] == "same (bit for bit)", text
    assert "tensors, step 4 " in text, text   # the step each checkpoint holds
    assert text.splitlines()[-1] == "same: a and b", text


def test_a_resumed_run_is_the_same_as_the_uninterrupted_one(runs, capsys):
    code, text = same(capsys, runs / "a", runs / "d")
    assert code == 0, text


def test_a_run_stopped_between_validations_and_resumed_is_the_same(runs, capsys, tmp_path,
                                                                   monkeypatch):
    """A stop validates where it stops (step 1 here, val_every=2): the resumed run had one
    validation record more than the uninterrupted one, bit-identical weights, and --same
    said 'DIFFERS: another number of records'. Another log_every or val_every (steering)
    logs other records too: those the runs share are compared, the rest said."""
    monkeypatch.setattr(host, "code_info", lambda: {"version": "0.1.0", "commit": COMMIT,
                                                    "dirty": False})
    train(tiny_cfg(tmp_path / "e", 4, val_every=2, stop_after=1), quiet=True)
    train(tiny_cfg(tmp_path / "e", 4, val_every=2), quiet=True)
    code, text = same(capsys, runs / "a", tmp_path / "e")
    assert code == 0, text
    assert verdicts(text)["metrics"] == ("same (bit for bit); 1 record in one run only, not "
                                         "compared (validation at step 1 in e)"), text
    train(tiny_cfg(tmp_path / "f", 4, val_every=4, log_every=2), quiet=True)
    code, text = same(capsys, runs / "a", tmp_path / "f")
    assert code == 0, text
    assert verdicts(text)["metrics"].startswith("same (bit for bit); step records not "
                                                "compared (another log_every); 1 record"), text


def test_a_folder_holding_the_two_runs_stands_for_them(runs, capsys, tmp_path):
    for name in ("a", "b"):
        shutil.copytree(runs / name, tmp_path / "runs" / name)
    code, text = same(capsys, tmp_path / "runs")
    assert code == 0 and text.splitlines()[-1] == "same: a and b", text


def test_other_software_is_shown_and_left_to_the_weights_to_judge(runs, capsys, tmp_path):
    """Another torch thread count recorded: said, but the runs are the same where their
    weights and metrics are."""
    shutil.copytree(runs / "b", tmp_path / "b")

    def threads(ck):
        ck["environment"]["torch_threads"] = 2
    _edit_checkpoint(tmp_path / "b" / "last.pt", threads)
    code, text = same(capsys, runs / "a", tmp_path / "b")
    assert code == 0, text
    assert verdicts(text)["torch threads"].startswith("not compared (the weights and metrics"), \
        text


def test_another_seed_is_named_with_every_check_it_changed(runs, capsys):
    code, text = same(capsys, runs / "a", runs / "c")
    assert code == 1, text
    rows = verdicts(text)
    assert rows["seed"] == "DIFFERS" and "0" in text and "1" in text, text
    assert rows["weights last.pt"].startswith("DIFFERS: largest difference"), text
    assert rows["metrics"].startswith("DIFFERS") and "at step" in rows["metrics"], text
    assert rows["settings"] == "same" and rows["training data"] == "same", text
    assert text.splitlines()[-1].startswith("differ: a and c (seed, weights last.pt"), text


def _edit_checkpoint(path, edit) -> None:
    ck = read_checkpoint(path)
    edit(ck)
    atomic_save(ck, path)


def test_training_data_digested_by_an_older_version_is_compared_by_count_not_called_changed(
        runs, capsys, tmp_path):
    """A run an older version began (its training digest took in file times) against the same
    run resumed by this version: 'training data  4 images, digest 8923...  4 images, digest
    89d0...  DIFFERS' of one label cache, which --same then called another run."""
    old = tmp_path / "old"
    shutil.copytree(runs / "b", old)

    def older(ck):
        del ck["data"]["train_digest_of"]
        ck["data"]["train_digest"] = "89234fd1c3e2bb1e9eb7b175"
    _edit_checkpoint(old / "last.pt", older)
    code, text = same(capsys, runs / "a", old)
    row = verdicts(text)["training data"]
    # not "the same count, digested another way": a relabelled file of the same count reads
    # so too, and only the weights and metrics then tell it
    assert row == ("not recorded: the same count; whether the same files is not known (an "
                   "older version's digest took in file times)"), text
    assert code == 1, text
    old2 = tmp_path / "old2"   # two older runs: a copy of the same files got other times
    shutil.copytree(old, old2)
    _edit_checkpoint(old2 / "last.pt", lambda ck: ck["data"].update(train_digest="0" * 24))
    assert verdicts(same(capsys, old, old2)[1])["training data"] == row


def test_a_key_an_older_versions_config_lacks_is_not_called_a_changed_setting(runs, capsys,
                                                                             tmp_path):
    """An older version's config.yaml has no data.gopro_blur (it always read blur/, the key's
    default now): 'setting data.gopro_blur  <unset>  blur  DIFFERS' named a setting nobody
    changed among the reasons the runs differ."""
    old = tmp_path / "old"
    shutil.copytree(runs / "b", old)
    cfg = yaml.safe_load((old / "config.yaml").read_text())
    del cfg["data"]["gopro_blur"]
    (old / "config.yaml").write_text(yaml.safe_dump(cfg))
    code, text = same(capsys, runs / "a", old)
    row = verdicts(text)["setting data.gopro_blur"]
    assert row == ("not recorded: not in an older version's config.yaml; blur is this "
                   "version's default"), text
    assert text.splitlines()[-1].startswith("not shown the same: a and old agree where both "
                                            "record it"), text
    cfg["data"]["gopro_blur"] = "blur_gamma"   # set otherwise than the default: changed
    (old / "config.yaml").write_text(yaml.safe_dump(cfg))
    del cfg["data"]["gopro_blur"]
    new = tmp_path / "new"
    shutil.copytree(old, new)
    (new / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert verdicts(same(capsys, new, old)[1])["setting data.gopro_blur"] == "DIFFERS"


def test_an_older_versions_metrics_are_compared_where_both_versions_record_them(
        runs, capsys, tmp_path):
    """An older version's records lack `samples` and `ssim_formula`, and its validations
    scored SSIM another way (0.8923 where this version gives 0.8858 for weights the same bit
    for bit): --same of such a run and its rerun by this version said 'metrics DIFFERS: at
    step 2, samples in one run only', a difference of the versions alone."""
    old = tmp_path / "old"
    shutil.copytree(runs / "b", old)
    recs = [json.loads(line) for line in (old / "metrics.jsonl").read_text().splitlines()]
    for r in recs:
        r.pop("samples", None)
        if r.pop("ssim_formula", None):
            r["val"] = {k: v + 0.01 if k.endswith("_ssim") else v for k, v in r["val"].items()}
    (old / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    code, text = same(capsys, runs / "a", old)
    row = verdicts(text)["metrics"]
    assert row == ("not recorded: validations at steps 2, 4 in old scored by an older "
                   "version's formula, not compared; the rest same (bit for bit)"), text
    recs[0]["loss"] += 0.5   # a step's loss still counts
    (old / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert verdicts(same(capsys, runs / "a", old)[1])["metrics"].startswith(
        "DIFFERS: largest difference 0.5 > 0, loss at step 1"), text


def test_weights_within_the_tolerance_are_the_same_and_past_it_differ(runs, capsys, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(runs / "b", b)

    def nudge(ck):
        name = next(iter(ck["model"]))
        ck["model"][name] = ck["model"][name] + 1e-6
    _edit_checkpoint(b / "last.pt", nudge)
    code, text = same(capsys, runs / "a", b)
    assert code == 1 and verdicts(text)["weights last.pt"].startswith("DIFFERS"), text
    assert verdicts(text)["weights best.pt"] == "same (bit for bit)", text
    code, text = same(capsys, runs / "a", b, "--tolerance", "1e-5")
    assert code == 0, text
    assert verdicts(text)["weights last.pt"].startswith("same (within 1e-05"), text
    recs = [json.loads(line) for line in (b / "metrics.jsonl").read_text().splitlines()]
    was = recs[0]["loss"]
    recs[0]["loss"] = was * (1 + 1e-7)
    (b / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    code, text = same(capsys, runs / "a", b)
    shown = verdicts(text)["metrics"]
    assert shown.startswith("DIFFERS") and f"({was:.10g} vs {was * (1 + 1e-7):.10g})" in shown
    assert f"{was:.10g}" != f"{was * (1 + 1e-7):.10g}", shown   # the two told apart
    # a snapshot kept in one run only (snapshot_every steers) is shown, not counted
    shutil.copy(b / "best.pt", b / "step2.pt")
    code, text = same(capsys, runs / "a", b, "--tolerance", "1e-5")
    assert code == 0 and verdicts(text)["weights step2.pt"] == "not compared (in one run only)"
    (b / "best.pt").unlink()
    code, text = same(capsys, runs / "a", b, "--tolerance", "1e-5")
    assert code == 1 and verdicts(text)["weights best.pt"] == "DIFFERS", text


def test_weights_are_compared_a_slice_at_a_time_nan_and_inf_where_both_have_them(monkeypatch):
    """A 1 GB tensor was made float64 whole, four times over (the two, their difference and
    its absolute value): 2.25 GB more memory and 80 s for two 2 GB checkpoints, 0.28 GB and
    16 s a slice at a time (2-core Intel Xeon, sharing it)."""
    import torch

    from distill import runs_same
    monkeypatch.setattr(runs_same, "CHUNK", 4)   # the slices of a 10-element tensor
    x = torch.arange(10, dtype=torch.float32)
    y = x.clone()
    assert runs_same.largest_difference(x, y) == 0
    y[9] += 0.5   # in the last slice
    assert runs_same.largest_difference(x, y) == 0.5
    x[1] = y[1] = float("nan")
    x[6] = y[6] = float("inf")
    assert runs_same.largest_difference(x, y) == 0.5
    y[2] = float("nan")
    assert runs_same.largest_difference(x, y) == float("inf")


def test_a_changed_setting_data_or_metric_is_named(runs, capsys, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(runs / "b", b)
    cfg = yaml.safe_load((b / "config.yaml").read_text())
    cfg["optim"]["lr"] *= 2
    cfg["ckpt_every"] += 1
    (b / "config.yaml").write_text(yaml.safe_dump(cfg))

    def relabel(ck):
        ck["data"]["train_digest"] = "0" * 24
    _edit_checkpoint(b / "last.pt", relabel)
    log = (b / "train.log").read_text()
    assert "1 process, batch 2 per process" in log
    (b / "train.log").write_text(log.replace("1 process, batch", "2 processes, batch"))
    recs = [json.loads(line) for line in (b / "metrics.jsonl").read_text().splitlines()]
    recs[0]["loss"] += 0.5
    (b / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    code, text = same(capsys, runs / "a", b)
    assert code == 1, text
    rows = verdicts(text)
    assert rows["setting optim.lr"] == "DIFFERS", text
    assert rows["setting processes"] == "DIFFERS", text   # torchrun's, from train.log
    # steering is shown, not counted: it does not change what is trained
    assert rows["setting ckpt_every"].startswith("not compared"), text
    assert rows["training data"] == "DIFFERS" and rows["validation data"] == "same", text
    assert rows["metrics"].startswith("DIFFERS: largest difference 0.5 > 0, loss at step 1"), \
        text


def test_uncommitted_code_or_another_commit_is_not_the_same(runs, capsys, tmp_path):
    """Both runs of one commit with uncommitted changes: the changes are not recorded, so
    the runs cannot be shown the same (exit 1, said); another commit differs."""
    for name, code in (("a", COMMIT[:12] + "+changes"), ("b", COMMIT[:12] + "+changes"),
                       ("c", "0123456789ab")):
        shutil.copytree(runs / ("b" if name == "c" else name), tmp_path / name)

        def recode(ck, code=code):
            ck["environment"]["code"] = code
        _edit_checkpoint(tmp_path / name / "last.pt", recode)
    code, text = same(capsys, tmp_path / "a", tmp_path / "b")
    assert code == 1, text
    assert verdicts(text)["code version"] == ("not recorded: both with uncommitted changes, "
                                              "which are not recorded"), text
    assert text.splitlines()[-1].endswith("but code version cannot be compared"), text
    code, text = same(capsys, runs / "a", tmp_path / "c")
    assert code == 1 and verdicts(text)["code version"] == "DIFFERS", text
    assert f"({COMMIT[:12]})" in text and "(0123456789ab)" in text, text


def test_bad_input_is_one_line_and_exit_2(runs, capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code, text = same(capsys, runs / "a")
    assert code == 2 and "--same compares two run folders, got 1" in text, text
    code, text = same(capsys, runs)   # a folder of four runs
    assert code == 2 and f"got 4 in {runs}" in text, text
    code, text = same(capsys, runs / "a", runs / "a")
    assert code == 2 and "the same folder" in text, text
    code, text = same(capsys, runs / "a", tmp_path / "empty")
    assert code == 2 and f"{tmp_path / 'empty'}: empty folder" in text, text
    code, text = same(capsys, runs / "a", runs / "b", "--tolerance", "-1")
    assert code == 2 and "--tolerance must be a number >= 0, got -1.0" in text, text
    b = tmp_path / "b"
    shutil.copytree(runs / "b", b)
    (b / "last.pt").write_bytes(b"not a checkpoint")
    code, text = same(capsys, runs / "a", b)
    assert code == 2 and str(b / "last.pt") in text and "Traceback" not in text, text
    assert len(text.strip().splitlines()) == 1, text
    # a truncated copy: the file named once ('X: X is not a readable ...' named it twice)
    (b / "last.pt").write_bytes((runs / "b" / "last.pt").read_bytes()[:1000])
    code, text = same(capsys, runs / "a", b)
    assert code == 2 and text.count(str(b / "last.pt")) == 1 and "truncated" in text, text


def test_same_json_records_the_tolerance_it_judged_by(runs, capsys, tmp_path):
    """'same': true means within --tolerance: a pipeline that keeps same.json could not tell
    a bit-for-bit verdict from one that admitted 1e-5."""
    for tolerance, want in ((None, 0.0), ("1e-5", 1e-5)):
        extra = ["--tolerance", tolerance] if tolerance else []
        code, text = same(capsys, runs / "a", runs / "b", "--out", tmp_path, *extra)
        assert code == 0, text
        rec = json.loads((tmp_path / "same.json").read_text())
        assert rec["same"] is True and rec["tolerance"] == want, rec


def test_a_refused_tolerance_replaces_an_earlier_same_json(capsys, tmp_path):
    """A CI job reruns into the same --out: a --tolerance refused (exit 2) left the earlier
    run's same.json, 'same': true, to be read as this run's verdict."""
    out = tmp_path / "verdict"
    out.mkdir()
    (out / "same.json").write_text(json.dumps({"same": True, "exit_code": 0}))
    code, text = same(capsys, tmp_path / "a", tmp_path / "b", "--out", out, "--tolerance", "-1")
    assert code == 2, text
    rec = json.loads((out / "same.json").read_text())
    assert rec == {"same": False, "exit_code": 2,
                   "error": "--tolerance must be a number >= 0, got -1.0"}, rec


def test_a_malformed_export_report_is_bad_input_in_same_json(capsys, tmp_path):
    """A report whose settings or results rows are not tables (edited by hand, or by another
    tool) ended in a traceback, and --out kept the earlier run's same.json as this one's."""
    out = tmp_path / "verdict"
    out.mkdir()
    for settings, results in (("x", []), ({}, ["onnx"])):
        (out / "same.json").write_text(json.dumps({"same": True, "exit_code": 0}))
        for name, report in (("a", {"settings": settings, "results": results}),
                             ("b", {"settings": {}, "results": []})):
            (tmp_path / name).mkdir(exist_ok=True)
            (tmp_path / name / "export_report.json").write_text(json.dumps(report))
        code, text = same(capsys, tmp_path / "a", tmp_path / "b", "--out", out)
        assert code == 2 and "Traceback" not in text, text
        rec = json.loads((out / "same.json").read_text())
        assert rec["exit_code"] == 2, rec
        assert rec["error"] == (f"{tmp_path / 'a' / 'export_report.json'}: not an export "
                                "report (its settings or results are not tables)"), rec


def test_tolerance_without_same_is_refused(runs, capsys):
    code, text = same(capsys, runs / "a", "--tolerance", "1e-5", flag="")
    assert code == 2 and "--tolerance applies to --same only" in text, text

