"""One flag vocabulary across all commands: every `sharpen` subcommand and the options of
`pytest benchmarks/` (benchmarks/conftest.py) spell one concept one way, with one metavar and
one default. A flag that two commands share must be in CONCEPTS, so a new one is looked at once;
a default that differs on purpose is in DIFFERENT_DEFAULTS with why, command by command."""
from __future__ import annotations

import argparse
from collections import defaultdict

import pytest

from sharpen.cli import build_parser

UNSET = object()   # a concept whose default each command sets (its value is not compared)

# canonical flag -> (metavar, default); None is argparse's own (a flag's dest upper-cased).
CONCEPTS: dict[str, tuple] = {
    "--out": ("DIR", UNSET),
    "--weights": ("CKPT", None),
    "--model": ("FILE", None),
    "--teacher-weights": ("PATH", None),
    "--teacher-config": ("NAME", None),
    "--config": ("FILE", None),
    "--data": ("SPEC", UNSET),
    "--split": ("NAME", None),
    "--gopro-blur": (None, "blur"),
    "--limit": ("N", None),
    "--tile": ("N", UNSET),
    "--overlap": ("N", None),
    "--batch-size": ("N", 2),
    "--threads": ("N", 0),
    "--device": (None, "auto"),
    "--provider": (None, "auto"),
    "--seed": (None, 0),
    "--quiet": (None, False),
    "--print-config": (None, False),
    "--resume": (None, UNSET),
    "--crop": ("PX", UNSET),
    "--copies": (None, UNSET),
    "--width": (None, UNSET),
    "--height": (None, UNSET),
    "--formats": ("LIST", None),
    "--float-layers": ("LIST", None),
    "--calib": ("SRC", None),
    "--calib-count": ("N", UNSET),
    "--no-latency": (None, False),
    "--target-fps": ("FPS", 30.0),
    "--cpu-target-fps": ("FPS", 10.0),
    "--min-ssim-ratio": ("R", UNSET),
    "--min-ssim-gain": ("G", UNSET),
    "--cache": ("DIR", None),
    "--sizes": ("WxH,...", None),
    "--full": (None, False),
    "--stream-frames": ("N", None),
    "--fail-on": ("METRIC:TOL,...", "psnr:0.1,ssim:0.002,median:50%,p90:50%"),
    "--stride": ("N", 1),
    "--no-exif": (None, False),
    "--no-metadata": (None, False),
    "--frames": ("LIST", None),
    "--align": (None, "none"),
    "--real-pairs": ("SPEC", None),
    "--real-nogt": ("PATH", None),
}

# (command, flag) -> a metavar that says more than the concept's, and why.
OWN_METAVAR = {
    ("grow", "--out"): "CKPT",     # a checkpoint file, not a folder
    ("run", "--out"): "PATH",      # a video file, an image folder or a stream URL
}

# Where one concept's default differs between commands on purpose (UNSET above): why, and
# each command's default, so that a changed default, or a command new to the concept, is
# looked at too (a why alone let any default through: labels' --tile 256 under a help saying
# 512, the suite's gate at 0.9 where the bench's is 0.95). SUPPRESS: the command resolves it.
OUT = {c: None for c in ("teacher", "synth", "corpus", "grow", "evaluate", "labels", "export",
                         "run", "bench", "runs")}
DIFFERENT_DEFAULTS = {
    "--out": ("demo writes into demo-output/ unless told; the others need it or write nothing",
              {**OUT, "demo": "demo-output"}),
    "--data": ("labels and demo train on the embedded set, bench holds out its test split, "
               "evaluate has no default (required)",
               {"evaluate": None, "labels": "embedded", "bench": None, "demo": "embedded",
                "pytest benchmarks/": None}),
    "--tile": ("the teacher tiles at 512 (its memory), evaluate's teacher too; a student runs "
               "whole frames (0), run's whole up to a frame size and tiled above (None)",
               {"teacher": 512, "labels": 512, "evaluate": 512, "run": None, "bench": 0,
                "pytest benchmarks/": 0}),
    "--resume": ("teacher skips the images it already wrote (--no-resume redoes them); run "
                 "goes on with a stopped video only when asked, as it would overwrite it",
                 {"teacher": True, "run": False}),
    "--crop": ("corpus: the training crop side; evaluate: 0, whole images",
               {"corpus": 256, "evaluate": 0}),
    "--copies": ("synth: copies per sharp image (1); corpus: crops per training photo (3)",
                 {"synth": 1, "corpus": 3}),
    "--width": ("models: the frame for MACs (1920); run: the camera's unless given",
                {"models": 1920, "run": None}),
    "--height": ("models: the frame for MACs (1080); run: the camera's unless given",
                 {"models": 1080, "run": None}),
    "--calib-count": ("export 64, bench 32 crops (README, INT8 calibration: give the export's "
                      "--calib-count to bench to measure the export's artifact)",
                      {"export": 64, "bench": 32, "pytest benchmarks/": 32}),
    "--min-ssim-ratio": ("bench and pytest 0.95; demo gates on --min-ssim-gain by default",
                         {"bench": argparse.SUPPRESS, "demo": argparse.SUPPRESS,
                          "pytest benchmarks/": 0.95}),
    "--min-ssim-gain": ("demo gates on it by default, bench and pytest on the ratio",
                        {"bench": argparse.SUPPRESS, "demo": argparse.SUPPRESS,
                         "pytest benchmarks/": None}),
}

# Spellings a user may reach for that mean a concept above: each may only be an alias of the
# canonical flag (`--output` of `--out`), never a flag of its own.
SYNONYMS = {
    "--output": "--out", "--checkpoint": "--weights", "--ckpt": "--weights",
    "--students": "--weights", "--student-weights": "--weights",
    "--artifact": "--model", "--engine": "--model", "--onnx": "--model",
    "--num-threads": "--threads", "--nthreads": "--threads", "--jobs": "--threads",
    "--dataset": "--data", "--max-images": "--limit", "--num-images": "--limit",
    "--format": "--formats", "--silent": "--quiet", "--tile-size": "--tile",
    "--tile-overlap": "--overlap", "--random-seed": "--seed", "--fps-target": "--target-fps",
}
# `--config` is also the teacher commands' alias of --teacher-config (a YAML file there is
# refused with a message naming the training commands: tests/test_demo.py).
ALIASES_OF_OTHERS = {("--config", "--teacher-config")}


def _actions() -> list[tuple[str, dict]]:
    """(command, {"flags", "metavar", "default", "help"}) of every option of every subcommand
    and of `pytest benchmarks/`."""
    out = []
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                for a in sub._actions:
                    if a.option_strings and not isinstance(a, argparse._HelpAction):
                        out.append((name, {"flags": list(a.option_strings),
                                           "metavar": a.metavar, "default": a.default,
                                           "help": a.help}))
    from _pytest.config.argparsing import Parser

    from benchmarks import conftest

    p = Parser()
    conftest.pytest_addoption(p)
    for group in p._groups:
        for opt in group.options:
            attrs = opt.attrs()
            flags = [f for f in opt.names() if not f.startswith("--bench-")]   # the old ones
            out.append(("pytest benchmarks/", {"flags": flags, "metavar": attrs.get("metavar"),
                                               "default": attrs.get("default"),
                                               "help": attrs.get("help")}))
    return out


ACTIONS = _actions()


def test_every_shared_flag_is_a_known_concept():
    seen = defaultdict(set)
    for command, a in ACTIONS:
        seen[a["flags"][0]].add(command)
    shared = {f: sorted(c) for f, c in seen.items() if len(c) > 1}
    unknown = {f: c for f, c in shared.items() if f not in CONCEPTS}
    assert not unknown, (f"flags shared by several commands but not in CONCEPTS (add them, "
                         f"with their metavar and default): {unknown}")


@pytest.mark.parametrize("command,action", ACTIONS,
                         ids=[f"{c}:{a['flags'][0]}" for c, a in ACTIONS])
def test_one_concept_one_spelling_metavar_and_default(command, action):
    first, *aliases = action["flags"]
    assert first not in SYNONYMS, (
        f"{command}: {first} is spelled {SYNONYMS[first]} elsewhere; make {first} its alias")
    for alias in aliases:
        if alias in CONCEPTS and (alias, first) not in ALIASES_OF_OTHERS:
            pytest.fail(f"{command}: {alias}, a flag of its own elsewhere, is an alias of {first}")
        if alias in SYNONYMS:
            assert SYNONYMS[alias] == first, (
                f"{command}: {alias} is an alias of {SYNONYMS[alias]} elsewhere, of {first} here")
    if first not in CONCEPTS:
        return
    metavar, default = CONCEPTS[first]
    want = OWN_METAVAR.get((command, first), metavar)
    assert action["metavar"] == want, (
        f"{command} {first}: metavar {action['metavar']!r}, elsewhere {want!r}")
    if default is UNSET:
        why, defaults = DIFFERENT_DEFAULTS[first]
        assert command in defaults, (
            f"{command} {first}: default {action['default']!r}, not in DIFFERENT_DEFAULTS "
            f"({defaults}); add it, and say why it differs: {why}")
        assert action["default"] == defaults[command], (
            f"{command} {first}: default {action['default']!r}, DIFFERENT_DEFAULTS says "
            f"{defaults[command]!r} ({why})")
    elif action["default"] is not argparse.SUPPRESS:
        assert action["default"] == default, (
            f"{command} {first}: default {action['default']!r}, elsewhere {default!r}")


def test_the_pytest_suite_takes_every_option_the_bench_shares_with_it():
    """`--cpu-target-fps` was `sharpen bench`'s alone: the suite judged CPU backends on
    --target-fps."""
    bench = {a["flags"][0] for c, a in ACTIONS if c == "bench"}
    suite = {a["flags"][0] for c, a in ACTIONS if c == "pytest benchmarks/"}
    # --max-memory-mib budgets What to ship, which the suite does not pick or measure; the
    # suite times one process, --streams starts N `sharpen run`s beside the bench; the suite
    # compares with --benchmark-compare, the bench's report with --baseline; --real-nogt's
    # clips give the suite their frames spread by --limit.
    bench_only = {"--out", "--stride", "--frames", "--no-latency", "--quiet",
                  "--max-memory-mib", "--streams", "--baseline", "--fail-on"}
    assert bench - suite == bench_only, bench - suite


# Concepts worded alike wherever they appear, but in the commands named: each said the
# teacher's weights and config its own way, one of them that the official file needed
# --teacher-config motion-deblur, its default.
SAME_HELP = {"--teacher-weights": (), "--teacher-config": (), "--batch-size": (),
             # run's tiles are a student's, and the bench's are run's
             "--tile": ("run", "bench", "pytest benchmarks/"), "--overlap": ("run",),
             # export's picks the calibration crops, not a synthesis; so do the bench's
             "--seed": ("export", "bench", "pytest benchmarks/"),
             "--gopro-blur": (), "--full": (), "--sizes": (), "--cache": (),
             "--target-fps": (), "--cpu-target-fps": (), "--fail-on": (),
             "--min-ssim-ratio": ("demo",), "--min-ssim-gain": ("demo",)}   # demo's default


@pytest.mark.parametrize("flag", sorted(SAME_HELP))
def test_one_concept_one_help(flag):
    helps = defaultdict(list)
    for command, a in ACTIONS:
        if a["flags"][0] == flag and command not in SAME_HELP[flag]:
            helps[a["help"]].append(command)
    assert len(helps) == 1, f"{flag} is worded {len(helps)} ways: {dict(helps)}"


def test_the_bench_takes_exports_seed():
    """`sharpen bench` exports, but had no --seed, export's calibration crops' seed: both front
    ends of the bench take export's, worded as export words it."""
    helps = {command: a["help"] for command, a in ACTIONS if a["flags"][0] == "--seed"
             and command in ("export", "bench", "pytest benchmarks/")}
    assert len(helps) == 3 and len(set(helps.values())) == 1, helps


def _list_options() -> list[tuple[str, str, object]]:
    """(command, flag, its argparse action) of every option taking several values (nargs '+'),
    of `sharpen`'s commands and of `pytest benchmarks/` (whose options are argparse's too)."""
    out = []
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += [(name, a.option_strings[0], a) for a in sub._actions
                        if a.option_strings and a.nargs == "+"]
    from _pytest.config.argparsing import Parser

    from benchmarks import conftest

    p = Parser()
    conftest.pytest_addoption(p)
    out += [("pytest benchmarks/", o.names()[0], o._action)
            for group in p._groups for o in group.options if o._action.nargs == "+"]
    return out


LIST_OPTIONS = _list_options()


@pytest.mark.parametrize("command,flag,stores", LIST_OPTIONS,
                         ids=[f"{c}:{f}" for c, f, _ in LIST_OPTIONS])
def test_a_list_of_files_given_twice_keeps_both(command, flag, stores):
    """`run --stats a.json --stats b.prom` writes both; every other option taking several
    files kept the last one given, without a word: `evaluate --weights fast --weights edge`
    scored edge alone, `export --calib a/ --calib b/` calibrated on b/ alone."""
    ns = argparse.Namespace(**{stores.dest: stores.default})
    # Names any of these options takes: --stats refuses several names that are no .json/.prom.
    stores(argparse.ArgumentParser(), ns, ["a.json"], flag)
    stores(argparse.ArgumentParser(), ns, ["b.prom", "c.json"], flag)
    assert getattr(ns, stores.dest) == ["a.json", "b.prom", "c.json"], f"{command} {flag}"
