"""What a user who never read the README learns from `sharpen`, `--help` and the errors: the
first steps, help that fits an 80-column terminal with examples that parse as printed, and a
--version naming the backends."""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from sharpen.cli import build_parser, main

WIDTH = 80


def commands() -> list[str]:
    parser = build_parser()
    return [name for a in parser._actions if hasattr(a, "choices") and a.choices
            and a.dest == "command" for name in a.choices]


def help_of(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    return capsys.readouterr().out


def examples_in(text: str) -> list[str]:
    """The `sharpen ...` lines of a help text's "examples:" / "start here:" block."""
    lines, inside = [], False
    for line in text.splitlines():
        if line in ("examples:", "start here:"):
            inside = True
        elif inside and line.startswith("  sharpen"):
            lines.append(line.split("  #", 1)[0].strip())
        elif inside and not line.startswith("  "):
            inside = False
    return lines


@pytest.fixture(autouse=True)
def terminal_80(monkeypatch):
    monkeypatch.setenv("COLUMNS", str(WIDTH))


def test_sharpen_alone_says_what_to_do_first(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "start here:" in out and "sharpen demo" in out
    assert "sharpen COMMAND --help" in out


@pytest.mark.parametrize("command", commands())
def test_every_help_fits_80_columns_and_ends_with_examples_that_parse(command, capsys):
    text = help_of([command, "--help"], capsys)
    wide = [line for line in text.splitlines()
            if len(line) > WIDTH and not line.lstrip().startswith("sharpen ")]
    assert not wide, f"sharpen {command} --help: lines wider than {WIDTH} columns: {wide}"
    examples = examples_in(text)
    assert len(examples) >= 1, f"sharpen {command} --help has no examples"
    parser = build_parser()
    for line in examples:
        words = shlex.split(line)
        assert words[:2] == ["sharpen", command], line
        args, extra = parser.parse_known_args(words[1:])   # as main() parses them
        assert args.command == command
        # KEY=VALUE words after an option are the training commands' overrides, which main()
        # takes back; any other command refuses them.
        assert not extra or hasattr(args, "overrides") and all(
            "=" in e and not e.startswith("-") for e in extra), (line, extra)
        # The repository's own files it names are there (placeholders such as photos/ are not).
        root = Path(__file__).resolve().parents[1]
        for word in words:
            if word.startswith(("configs/", "models/")):
                assert (root / word).exists(), (line, word)


def test_start_here_lines_parse(capsys):
    main([])
    text = capsys.readouterr().out
    assert max(map(len, text.splitlines())) <= WIDTH
    parser = build_parser()
    for line in examples_in(text):
        parser.parse_args(shlex.split(line)[1:])


def test_version_names_the_backends(capsys):
    out = help_of(["--version"], capsys)
    assert out.startswith("sharpen ")
    assert "backends: " in out and "ONNX Runtime" in out


def test_run_help_groups_its_options_common_first(capsys):
    """`sharpen run --help` had its 24 options in one list, the two required ones among stream
    reconnects and stats intervals; now grouped, what every run needs first."""
    text = help_of(["run", "--help"], capsys)
    headings = [line for line in text.splitlines() if line.endswith(":") and line[0] != " "]
    order = ["input and model (required):", "output:", "performance:",
             "cameras and streams:", "advanced:"]
    assert [h for h in headings if h in order] == order, headings
    first = text.split("input and model (required):", 1)[1].split("output:", 1)[0]
    assert "--model FILE" in first and "--source SOURCE" in first
    advanced = text.split("\nadvanced:", 1)[1].split("\n\n", 1)[0]
    assert "--force" in advanced and "--resume" in advanced


def test_run_help_names_raw_stdin_where_it_names_y4m_stdin(capsys):
    """raw:WxH reads stdin as --source - does, and a silent one ends at --timeout with exit 3
    (checked: `sleep 6 | sharpen run --source raw:320x180 --timeout 1 ...` exits 3), but
    --timeout's help and the exit codes named --source - alone, as though raw frames were
    waited on forever."""
    text = " ".join(help_of(["run", "--help"], capsys).split())
    timeout = text.split("--timeout S seconds", 1)[1].split("--segment", 1)[0]
    assert "raw:WxH" in timeout, timeout
    exit3 = text.split("; 3 ", 1)[1].split("; 4 ", 1)[0]
    assert "raw:WxH" in exit3, exit3


@pytest.mark.parametrize("command", commands())
def test_no_help_drowns_its_options_in_one_long_list(command):
    """`sharpen bench --help` listed 27 options in one group, `evaluate`, `labels` and `demo`
    15: the common ones (--out, --data, --weights) among calibration seeds and cache folders."""
    import argparse
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for group in sub.choices[command]._action_groups:
        flags = [a for a in group._group_actions if not isinstance(a, argparse._HelpAction)]
        assert len(flags) <= 10, (command, group.title, len(flags))


def test_sharpen_help_command_as_git_and_yolo_have_it(capsys):
    """`sharpen help` and `sharpen help run` (git's and yolo's spelling) were "invalid choice"."""
    assert help_of(["help"], capsys).startswith("usage: sharpen [-h]")
    assert help_of(["help", "run"], capsys).startswith("usage: sharpen run [-h]")
    with pytest.raises(SystemExit) as e:
        main(["help", "rn"])
    assert e.value.code == 2 and "did you mean 'run'?" in capsys.readouterr().err


def test_top_level_help_lists_the_commands_a_user_starts_with_first(capsys):
    """The commands were listed in the order the packages registered them (teacher, models,
    synth, corpus, grow...), with `run` and `demo` 12th and 14th."""
    text = help_of(["--help"], capsys)
    listed = [line.split()[0] for line in text.split("COMMAND\n", 1)[1].split("\n\n")[0]
              .splitlines() if line.startswith("    ") and not line.startswith("     ")]
    assert listed[:4] == ["demo", "run", "teacher", "export"], listed
    assert sorted(listed) == sorted(commands())


def test_the_examples_that_take_seconds_run_as_printed(monkeypatch, capsys):
    """Parsing is not running: the examples that read no user data (the model table, a
    training config checked and printed) run from the checkout as they are printed."""
    from sharpen.help_text import EXAMPLES
    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    quick = [line.split("  #", 1)[0].strip() for lines in EXAMPLES.values() for line in lines
             if "--print-config" in line or line.split("  #", 1)[0].strip() == "sharpen models"]
    assert len(quick) >= 2
    for line in quick:
        assert main(shlex.split(line)[1:]) == 0, (line, capsys.readouterr().err)
        capsys.readouterr()


def test_a_numbered_list_keeps_one_item_a_line_with_its_continuations_under_it(capsys):
    """`sharpen demo --help` lists its six stages as `1. ...` lines whose continuations are
    indented: flowing them as prose ran stages 1 and 2 into one line and left half-lines
    indented at random."""
    text = help_of(["demo", "--help"], capsys)
    described = text.split("\n\n", 2)[1].splitlines()   # after the usage block
    starts = [line.split(".", 1)[0] for line in described if not line.startswith(" ")]
    assert starts == [str(i) for i in range(1, 7)], described
    assert all(line.startswith("   ") and line[3] != " " for line in described
               if line.startswith(" ")), described


def test_a_command_line_in_a_help_text_stays_on_one_line(capsys):
    """`sharpen labels --help` flowed its torchrun line as prose, its --out on the next line:
    a command a user copies is printed whole."""
    text = help_of(["labels", "--help"], capsys)
    torchrun = [line for line in text.splitlines() if "torchrun --nproc_per_node" in line]
    assert torchrun and all(line.rstrip().endswith("--out ...") for line in torchrun), torchrun


def _backends_with(monkeypatch, folder) -> str:
    """`sharpen --version`'s backends line with the packages in `folder` on sys.path."""
    from sharpen.help_text import version_text
    monkeypatch.syspath_prepend(str(folder))
    return next(line for line in version_text("9.9").splitlines()
                if line.startswith("backends: "))


def test_version_names_only_what_sharpen_run_can_use_as_a_backend(monkeypatch, tmp_path):
    """TensorFlow (the TFLite export's converter) was listed as a backend `sharpen run` never
    imports, and a board with tflite-runtime (LiteRT's predecessor, which run uses where
    ai-edge-litert has no wheel) was told LiteRT is not installed."""
    import runtime.host
    from sharpen.help_text import version_text
    lines = version_text("9.9").splitlines()
    backends = next(line for line in lines if line.startswith("backends: "))
    assert "TensorFlow" not in backends, lines
    monkeypatch.setitem(runtime.host.LIBRARIES, "ai_edge_litert", ("no-such-dist-x",))
    dist = tmp_path / "tflite_runtime-2.14.0.dist-info"   # an installed package's metadata
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tflite-runtime\n"
                                   "Version: 2.14.0\n")
    backends = _backends_with(monkeypatch, tmp_path)
    assert "LiteRT (tflite-runtime) 2.14.0" in backends and "not installed: LiteRT" not in backends


def test_version_names_jetpacks_tensorrt_which_has_no_pip_metadata(monkeypatch, tmp_path):
    """JetPack's python3-libnvinfer puts a bare `tensorrt` package in the system's
    dist-packages, with no dist-info: in the README's Jetson venv (--system-site-packages),
    where `sharpen run` loads engines with it, `sharpen --version` said "not installed:
    TensorRT", and exports recorded no TensorRT version. Its __init__.py as TensorRT's build
    writes it: not importable here (no tensorrt.so), as the version is read, not imported."""
    import runtime.host
    monkeypatch.setitem(runtime.host.LIBRARIES, "tensorrt", ("no-such-dist-x",))
    pkg = tmp_path / "tensorrt"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('import os\n\nfrom .tensorrt import *\n\n'
                                     '__version__ = "10.3.0"\n')
    backends = _backends_with(monkeypatch, tmp_path)
    assert "TensorRT 10.3.0" in backends and "not installed: TensorRT" not in backends, backends
    assert runtime.host.library_versions(["tensorrt"]) == {"tensorrt": "10.3.0"}


@pytest.mark.parametrize("text, version", [
    ('\ufeff__version__ = "10.3.0"\n', "10.3.0"),   # a BOM, as Python itself reads
    ('__version__ = "##TENSORRT_PYTHON_VERSION##"\n', None),   # TensorRT's template
    ('__version__ = "10.3.0"\r\n', "10.3.0"), ("__version__: str = get()\n", None)])
def test_a_packages_version_is_read_only_where_its_file_writes_one(monkeypatch, tmp_path, text,
                                                                 version):
    """TensorRT's __init__.py as its template has it (a checkout of its sources on the path)
    gave `sharpen --version` "TensorRT ##TENSORRT_PYTHON_VERSION##", which exports recorded as
    the version; one that begins with a byte-order mark gave none."""
    from runtime.host import module_version
    (tmp_path / "tensorrt").mkdir()
    (tmp_path / "tensorrt" / "__init__.py").write_text(text, newline="")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert module_version("tensorrt", "__init__.py", "__version__") == version


@pytest.mark.parametrize("command, group", [("bench", "inputs"), ("evaluate", "data")])
def test_the_clip_frame_options_sit_with_the_data_they_pick_from(command, group):
    """`sharpen bench --help` listed --stride and --frames beside --out and --full, a screen
    above the --real-nogt clips whose frames they pick."""
    import argparse
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    titled = {g.title: {f for a in g._group_actions for f in a.option_strings}
              for g in sub.choices[command]._action_groups}
    assert {"--stride", "--frames", "--limit"} <= titled[group], titled


def test_export_quiet_says_its_warnings_stay(capsys):
    """`sharpen export --quiet` said 'only print the final table and errors', but its warnings
    stay, as they must: a calibration on frames unlike the parity images, dark crops setting
    an INT8 input range, a parity image skipped. A user trusting the help took a warning under
    --quiet for an error, or filtered stderr expecting errors only."""
    text = " ".join(help_of(["export", "--help"], capsys).split())
    said = text.split("--quiet ", 1)[1].split(" formats ", 1)[0]
    assert "warnings" in said and "errors" in said, said


def test_runs_same_option_names_export_folders_too(capsys):
    """`sharpen runs --help` said --same was 'whether two runs are the same run': a user
    reading the options for the README's release check (two export folders) found nothing."""
    text = " ".join(help_of(["runs", "--help"], capsys).split())
    said = text.split(" options: ", 1)[1].split("--same ", 1)[1].split(" --tolerance ", 1)[0]
    assert "export" in said, said


def test_models_help_says_a_tflite_gives_its_tensors_and_ops(capsys):
    """`sharpen models FILE.tflite` gives the tensors as an app sets them (dtype, shape,
    scale, zero point) and the ops a delegate must support; its help said only that an
    artifact "says how it was made", so an app developer never looked there for them."""
    text = " ".join(help_of(["models", "--help"], capsys).split())
    said = text.split("NAME ", 2)[2].split(" options: ", 1)[0]
    assert "zero point" in said and "ops" in said, said
