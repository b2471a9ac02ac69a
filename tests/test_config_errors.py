"""A config a user edited by hand: each mistake is one line naming the key, where it was set
(the file and line, or the override) and what the key takes."""
from pathlib import Path

import pytest

from distill.config import load_config

FAST = Path(__file__).resolve().parents[1] / "configs" / "distill-fast.yaml"


def _edited(tmp_path: Path, old: str, new: str) -> tuple[Path, int]:
    """configs/distill-fast.yaml copied with the line holding `old` changed to `new`; the
    file and the (1-based) number of that line."""
    lines = FAST.read_text().splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.strip().startswith(old))
    lines[at] = lines[at].replace(old, new)
    mine = tmp_path / "mine.yaml"
    mine.write_text("\n".join(lines) + "\n")
    return mine, at + 1


@pytest.mark.parametrize("old, new, kind, said", [
    ("lr:", "lr_rate:", KeyError, "unknown config key 'optim.lr_rate'; did you mean optim.lr?"),
    ("labels:", "lables:", KeyError, "unknown config key 'data.lables'; did you mean "
                                     "data.labels?"),
    ("crop: 192", "crop: [192, 192]", TypeError, "data.crop must be an integer, got [192, 192]"),
    ("flips: true", "flips: 1", TypeError, "data.flips must be true/false, got 1"),
])
def test_a_mistake_in_a_config_file_names_its_file_and_line(tmp_path, old, new, kind, said):
    mine, line = _edited(tmp_path, old, new)
    with pytest.raises(kind) as e:
        load_config(str(mine))
    msg = e.value.args[0]
    assert msg.startswith(f"{mine}, line {line}: ") and said in msg, msg


def test_an_override_mistake_names_no_file_line(tmp_path):
    with pytest.raises(KeyError) as e:
        load_config(str(FAST), ["optim.lr_rate=1"])
    assert e.value.args[0].startswith("unknown config key 'optim.lr_rate'; did you mean "
                                      "optim.lr?"), e.value.args[0]


@pytest.mark.parametrize("old, new, key_said", [
    ("lr:", "lr: -1.0e-3 #", "optim.lr must be > 0, got -0.001"),
    ("batch_size:", "batch_size: 0 #", "data.batch_size must be >= 1, got 0"),
    ("crop:", "crop: 190 #", "data.crop=190 is not a multiple of 8"),
])
def test_an_out_of_range_value_of_a_file_is_refused_naming_its_line(tmp_path, capsys, old, new,
                                                                    key_said):
    from sharpen.cli import main

    mine, line = _edited(tmp_path, old, new)
    rc = main(["distill", "--config", str(mine), f"out={tmp_path / 'r'}", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and key_said in err and err.endswith(f"(set at {mine}, line {line})"), err


def test_an_out_of_range_override_is_refused_naming_the_override(tmp_path, capsys):
    from sharpen.cli import main

    rc = main(["distill", "--config", str(FAST), f"out={tmp_path / 'r'}", "optim.lr=-1",
               "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and err.endswith("optim.lr must be > 0, got -1.0 (set by the override "
                                    "optim.lr=-1)"), err


@pytest.mark.parametrize("override, said", [
    ("optim.lr=abc", "optim.lr must be a number, got 'abc'"),
    ("data.crop=64.5", "data.crop must be an integer, got 64.5"),
    ("data.flips=maybe", "data.flips must be true/false, got 'maybe'"),
])
def test_an_override_of_the_wrong_type_is_refused_naming_the_override(tmp_path, capsys,
                                                                      override, said):
    """A sweep's `optim.lr=abc` was refused without the override its range errors name: as
    if the config file held it, where the key was set too."""
    from sharpen.cli import main

    rc = main(["distill", "--config", str(FAST), f"out={tmp_path / 'r'}", override,
               "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and err.endswith(f"{said} (set by the override {override})"), err


def test_print_config_shows_the_resolved_settings_and_trains_nothing(tmp_path, capsys):
    """A dry run: the settings file <- overrides as the run would use them, as YAML that
    --config reads back to the same settings, and no run folder made."""
    import yaml

    from sharpen.cli import main

    out = tmp_path / "r"
    argv = ["distill", "--config", str(FAST), f"out={out}", "optim.lr=1e-4", "data.crop=64"]
    assert main([*argv, "--print-config"]) == 0
    printed = capsys.readouterr().out
    d = yaml.safe_load(printed)
    assert d["optim"]["lr"] == 1e-4 and d["data"]["crop"] == 64 and d["task"] == "student"
    assert d["optim"]["steps"] == 8000 and d["model"]["arch"] == "fast"   # from the file
    again = tmp_path / "again.yaml"
    again.write_text(printed)
    assert load_config(str(again)) == load_config(str(FAST), argv[3:6])
    assert not out.exists()
    # Checked as a run is: a crop the model cannot take is refused here too.
    assert main([*argv, "data.crop=70", "--print-config"]) == 2
    assert "data.crop=70 is not a multiple of 8" in capsys.readouterr().err


def test_every_config_is_in_the_configs_table_with_the_command_that_runs_it():
    """37 configs, most of them records of one run: configs/README.md says which to start
    from and what each is, and `sharpen distill --help` points there."""
    import re

    import yaml

    folder = FAST.parent
    table = (folder / "README.md").read_text()
    rows = {m[1]: m[2] for m in re.finditer(r"^\| `([\w.-]+\.yaml)` \| `sharpen ([\w-]+)`",
                                            table, re.M)}
    assert set(rows) == {p.name for p in folder.glob("*.yaml")}
    for name, command in rows.items():
        d = yaml.safe_load((folder / name).read_text())
        want = ("distill" if d.get("task", "student") == "student" else "train-teacher"
                if d.get("model", {}).get("arch") == "restormer" else "train")
        assert command == want, name


def test_a_config_may_start_from_another_with_base(tmp_path, capsys):
    """`base: FILE` (relative to the config naming it) reads that config first, so that one's
    own holds only what it changes; the run's config.yaml holds every setting, so --config of
    it needs no base. A mistake names the file it is in; a loop of bases is refused."""
    from sharpen.cli import main

    mine = tmp_path / "mine.yaml"
    mine.write_text(f"base: {FAST}\noptim:\n  lr: 1.0e-4\n")
    cfg = load_config(str(mine))
    fast = load_config(str(FAST))
    assert cfg.optim.lr == 1e-4 and cfg.optim.steps == fast.optim.steps == 8000
    assert cfg.data == fast.data and cfg.out == fast.out
    (tmp_path / "sub").mkdir()
    child = tmp_path / "sub" / "child.yaml"
    child.write_text("base: ../mine.yaml\ndata:\n  crop: 64\n")   # relative to its own file
    assert load_config(str(child)).optim.lr == 1e-4 and load_config(str(child)).data.crop == 64
    assert main(["distill", "--config", str(child), "--print-config"]) == 0
    assert "base" not in capsys.readouterr().out

    (tmp_path / "bad.yaml").write_text("optim:\n  lr_rate: 1\n")
    (tmp_path / "uses-bad.yaml").write_text("base: bad.yaml\n")
    with pytest.raises(KeyError) as e:
        load_config(str(tmp_path / "uses-bad.yaml"))
    assert e.value.args[0].startswith(f"{tmp_path / 'bad.yaml'}, line 2: unknown config key")
    (tmp_path / "neg.yaml").write_text(f"base: {FAST}\noptim:\n  lr: -1.0\n")
    assert main(["distill", "--config", str(tmp_path / "neg.yaml"), "--print-config"]) == 2
    assert capsys.readouterr().err.strip().endswith(f"(set at {tmp_path / 'neg.yaml'}, line 3)")
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ValueError, match="base: a.yaml.*loop"):
        load_config(str(tmp_path / "a.yaml"))
    (tmp_path / "gone.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(FileNotFoundError, match=r"gone.yaml, line 1: base: .*nowhere.yaml not"):
        load_config(str(tmp_path / "gone.yaml"))


@pytest.mark.parametrize("override, said", [
    ("optm.lr=1", "unknown config section 'optm' in 'optm.lr'; did you mean optim.lr?"),
    ("optim.lr.x=1", "optim.lr is a setting, not a section: give optim.lr=VALUE"),
    ("data.crop.size=64", "data.crop is a setting, not a section: give data.crop=VALUE"),
])
def test_a_dotted_key_through_a_wrong_section_is_named(override, said):
    with pytest.raises(KeyError) as e:
        load_config(None, [override])
    assert e.value.args[0] == said


@pytest.mark.parametrize("override, said", [
    ("steps=100", "unknown config key 'steps'; did you mean optim.steps?"),
    # dashed, as an option spells it (--batch-size): was told no key, as data.batch-size was
    ("batch-size=8", "unknown config key 'batch-size'; did you mean data.batch_size?"),
])
def test_a_key_without_its_section_is_told_the_section(override, said):
    with pytest.raises(KeyError) as e:
        load_config(None, [override])
    assert e.value.args[0].startswith(f"{said} TrainConfig has "), e.value.args[0]


def test_a_key_written_twice_in_a_file_is_refused_naming_both_lines(tmp_path):
    """YAML keeps the last of two `lr:` in a section without a word: the edited copy of a
    recipe with a new line below the old one ran with whichever came last."""
    mine, line = _edited(tmp_path, "lr:", "lr: 1.0e-3\n  lr:")
    with pytest.raises(ValueError) as e:
        load_config(str(mine))
    assert str(e.value) == (f"{mine}, line {line + 1}: optim.lr is set twice (lines {line} "
                            f"and {line + 1}); keep one")


def test_a_misspelt_model_argument_names_the_key_and_line(tmp_path, capsys):
    from sharpen.cli import main

    mine, line = _edited(tmp_path, "arch: fast", "arch: fast\n  args: {widht: 8}")
    assert main(["distill", "--config", str(mine), "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.args: student 'fast' has no argument 'widht'" in err, err
    assert err.endswith(f"(set at {mine}, line {line + 1})"), err


def test_a_base_that_is_a_folder_is_called_a_folder(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "mine.yaml").write_text("base: shared\n")
    with pytest.raises(ValueError) as e:
        load_config(str(tmp_path / "mine.yaml"))
    assert str(e.value) == (f"{tmp_path / 'mine.yaml'}, line 1: base: shared: "
                            f"{tmp_path / 'shared'} is a folder; give a YAML file"), e.value


@pytest.mark.skipif(not Path("/proc/self/mem").is_file(), reason="needs Linux's /proc")
def test_an_unreadable_config_or_base_is_one_error(tmp_path, capsys):
    """/proc/self/mem is a file whose read fails (EIO) even for root, as a file without read
    permission does for a user."""
    from sharpen.cli import main

    (tmp_path / "mine.yaml").write_text("base: /proc/self/mem\n")
    for config in ("/proc/self/mem", str(tmp_path / "mine.yaml")):
        assert main(["distill", "--config", config, "--print-config"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("sharpen distill: error: ") and "/proc/self/mem cannot be read" \
            in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("override, origin", [
    ("model.args.config=huge", "by the override model.args.config=huge"),
    ("model={args: {config: huge}}", "by the override model={args: {config: huge}}"),
])
def test_an_override_through_or_of_a_section_is_named_not_the_file(tmp_path, capsys, override,
                                                                   origin):
    from sharpen.cli import main

    teacher = FAST.parent / "teacher-small.yaml"
    assert main(["train-teacher", "--config", str(teacher), override, "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown Restormer config 'huge'" in err and err.endswith(f"(set {origin})"), err


def test_the_shipped_models_table_names_only_configs_of_a_cards_current_version():
    """configs/README.md's 'last stage' table agrees with the model cards: each config it
    lists is quoted in a card's current version (its first section), not an earlier one."""
    import re

    folder = FAST.parent
    table = (folder / "README.md").read_text().split("## The shipped models' last stage")[1]
    table = table.split("\n## ")[0]
    shipped = re.findall(r"^\| `([\w.-]+\.yaml)` \|", table, re.M)
    current = " ".join(re.split(r"^## ", card.read_text(), flags=re.M)[1]
                       for card in (folder.parent / "models").glob("*.md")
                       if card.name != "README.md")
    assert shipped and [n for n in shipped if f"configs/{n}" not in current] == []


def test_a_setting_from_a_yaml_merge_key_is_found_where_it_was_written(tmp_path, capsys):
    """`<<:` merges a mapping in (a key of the mapping itself wins): a model.arch set that way
    is named by the user, so train-teacher refuses it as it refuses `arch: fast`, and a bad
    value merged in names the merged mapping's line."""
    from sharpen.cli import main

    (tmp_path / "arch.yaml").write_text("model:\n  <<: {arch: fast}\n")
    assert main(["train-teacher", "--config", str(tmp_path / "arch.yaml"),
                 "--print-config"]) == 2
    assert "not model.arch=fast" in capsys.readouterr().err
    (tmp_path / "lr.yaml").write_text("optim:\n  <<: {steps: 10,\n    lr: -1.0}\n  steps: 5\n")
    assert main(["distill", "--config", str(tmp_path / "lr.yaml"), "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"(set at {tmp_path / 'lr.yaml'}, line 3)"), err


def test_a_self_referencing_yaml_alias_is_one_error_not_a_recursion(tmp_path, capsys):
    from sharpen.cli import main

    (tmp_path / "rec.yaml").write_text("model:\n  args: &a {x: *a}\n")
    assert main(["distill", "--config", str(tmp_path / "rec.yaml"), "--print-config"]) == 2
    assert "student 'fast' has no argument 'x'" in capsys.readouterr().err


def test_base_as_an_override_says_where_base_goes():
    """base is a key of a config file (every other key can be an override too): on the command
    line, a config to start from is --config."""
    with pytest.raises(ValueError) as e:
        load_config(str(FAST), [f"base={FAST}"])
    assert str(e.value) == (f"base= is not an override: a config to start from is --config "
                            f"{FAST} (or base: in a config file)")


def test_a_checkpoint_given_as_config_reruns_the_settings_it_records(tmp_path):
    """An auditor handed only best.pt (what a run's README says a colleague is given, and what
    models/ ships) got "is not a text file; give a YAML config", though the checkpoint records
    every setting of its run: its `config` is now the --config, overrides on top."""
    import torch

    from distill.checkpoint import atomic_save, make_checkpoint
    from distill.students import create_student
    ran = load_config(str(FAST), ["optim.lr=3e-4", "seed=7", "out=runs/a"])
    net = create_student("fast", width=8)
    ck = tmp_path / "best.pt"
    atomic_save(make_checkpoint(net, kind="student", arch="fast", arch_args=net.arch_args,
                                config=ran.to_dict()), ck)
    again = load_config(str(ck), ["out=runs/a-again"])
    assert again.to_dict() == {**ran.to_dict(), "out": "runs/a-again"}
    # Where a bad value came from, as the train commands say it: the override, or the
    # checkpoint's settings (it has no lines to point at).
    from distill.config import setting_origin
    assert setting_origin(str(ck), ["optim.lr=-1"], "optim.lr") == "by the override optim.lr=-1"
    assert setting_origin(str(ck), [], "optim.lr") == f"in the settings {ck} records"
    assert setting_origin(str(ck), [], "optim.no_such_key") == ""
    # In its run's folder, the new run is compared with that run before its first step, as
    # one given the folder's config.yaml is.
    from distill.config import run_folder_of
    assert run_folder_of(ck) is None
    (tmp_path / ".run-id").write_text("a\n")
    assert run_folder_of(ck) == tmp_path.resolve()
    torch.save({"weights": net.state_dict()}, tmp_path / "other.pt")   # no settings in it
    with pytest.raises(ValueError, match="records no training settings"):
        load_config(str(tmp_path / "other.pt"))


def test_an_older_torch_checkpoint_given_as_config_is_read_too(tmp_path):
    """A checkpoint saved in torch's older pickle format (read everywhere else a checkpoint
    is) was called "not a text file; give a YAML config" by --config, which takes
    checkpoints; another binary file is told both what --config takes."""
    import torch

    ran = load_config(str(FAST), ["seed=7"])
    ck = tmp_path / "best.pt"
    torch.save({"config": ran.to_dict(), "step": 3}, ck, _use_new_zipfile_serialization=False)
    assert load_config(str(ck), ["out=runs/a-again"]).seed == 7
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    with pytest.raises(ValueError) as e:
        load_config(str(tmp_path / "photo.png"))
    assert str(e.value) == (f"{tmp_path / 'photo.png'} is not a text file; give a YAML config "
                            "or a training checkpoint (best.pt, last.pt)")


def test_train_teacher_refuses_a_students_checkpoint_as_config_as_it_refuses_its_yaml(
        tmp_path, capsys):
    """train-teacher replaces model.arch with restormer unless the config names one; a
    checkpoint's recorded model.arch counted as named by no one, so a `sharpen train` run's
    best.pt (task: teacher, model.arch: fast) was trained as a Restormer, or refused for the
    student's model.args, where the same run's config.yaml is refused for its arch."""
    from distill.checkpoint import atomic_save, make_checkpoint
    from distill.config import save_config, setting_origin
    from distill.students import create_student
    from sharpen.cli import main
    ran = load_config(None, ["task=teacher", "model.arch=fast", "out=runs/gt"])
    net = create_student("fast", width=8)
    ck = tmp_path / "best.pt"
    atomic_save(make_checkpoint(net, kind="student", arch="fast", arch_args=net.arch_args,
                                config=ran.to_dict()), ck)
    save_config(ran, tmp_path / "gt.yaml")
    said = []
    for config in (tmp_path / "gt.yaml", ck):
        # optim.steps=0: refused after the arch is settled, where the Restormer trained
        assert main(["train-teacher", "--config", str(config), f"out={tmp_path / 'o'}",
                     "optim.steps=0"]) == 2
        said.append(capsys.readouterr().err)
    assert said[0] == said[1] and "trains the Restormer teacher, not model.arch=fast" in said[1]
    assert setting_origin(str(ck), [], "model.arch") == f"in the settings {ck} records"


def test_a_checkpoint_whose_init_is_itself_warns_that_the_rerun_starts_from_its_weights(
        tmp_path, capsys):
    """A shipped model records the recipe it was trained with, whose init: is the model's own
    path (models/student-fast.pt fine-tuned its previous version): --config on it trained
    from the shipped weights, a fine-tune of the result rather than its run again, unsaid
    but in the README."""
    from distill.checkpoint import atomic_save, make_checkpoint
    from distill.students import create_student
    from sharpen.cli import main
    ck = tmp_path / "models" / "student-fast.pt"
    ran = load_config(str(FAST), [f"init={ck}", "out=runs/fast"])
    net = create_student("fast", width=8)
    atomic_save(make_checkpoint(net, kind="student", arch="fast", arch_args=net.arch_args,
                                config=ran.to_dict()), ck)
    main(["distill", "--config", str(ck), f"out={tmp_path / 'again'}", "optim.steps=0"])
    assert (f"warning: init: {ck} is the checkpoint given as --config: this run starts from "
            "its trained weights, not from those its run started from (an earlier version of "
            "the file)") in capsys.readouterr().err
    # A checkpoint whose init is another file: nothing to say.
    ran = load_config(str(FAST), [f"init={tmp_path / 'other.pt'}", "out=runs/fast"])
    atomic_save(make_checkpoint(net, kind="student", arch="fast", arch_args=net.arch_args,
                                config=ran.to_dict()), tmp_path / "other.pt")
    atomic_save(make_checkpoint(net, kind="student", arch="fast", arch_args=net.arch_args,
                                config=ran.to_dict()), ck)
    main(["distill", "--config", str(ck), f"out={tmp_path / 'again'}", "optim.steps=0"])
    assert "warning: init:" not in capsys.readouterr().err


def test_a_path_spelt_another_way_is_no_changed_setting(tmp_path, monkeypatch):
    """A sweep's rerun of a finished run gave data.labels=/abs/train where the run had
    data.labels=train (the same cache from the same folder): it was said, as the resume's
    warning says it, to be a changed setting that nothing was trained with."""
    from distill.config import config_changes

    monkeypatch.chdir(tmp_path)
    (tmp_path / "train").mkdir()
    (tmp_path / "other").mkdir()
    was = {"data": {"labels": "train", "val_labels": "val"}, "optim": {"lr": 1e-3}}
    same = {"data": {"labels": str(tmp_path / "train"), "val_labels": "./val"},
            "optim": {"lr": 1e-3}}
    assert config_changes(was, same) == []
    moved = {"data": {"labels": "other", "val_labels": "val"}, "optim": {"lr": 1e-3}}
    assert config_changes(was, moved) == ["data.labels: 'train' -> 'other'"]
