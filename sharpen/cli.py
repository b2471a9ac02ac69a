"""`sharpen`: the project's command line. Subcommands come from each package's own cli module;
all heavy imports (torch, tensorflow) happen inside the handlers, so `sharpen run` on a device
with only the runtime installed never imports torch."""
from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path

from runtime.cli_errors import (KEPT, NO_SPACE_ERRNOS, OWN_PACKAGES, SharpenError,
                                 interrupt_exit_code, interrupted_message, missing_dependency,
                                 said_after_hang_up, stop_signals_as_interrupt)
from runtime.console import (onnxruntime_telemetry_off, open_closed_std_fds, quiet_library_logs,
                             report_fatal_errors)
from runtime.cli_parser import OTHER_TOOLS_NAMES, CommandParser
from runtime.locale_text import unspellable_escaped, utf8_file_names
from runtime.shell_words import home_expanded


class _Parser(CommandParser):
    """CommandParser whose usage errors point to the commands' own examples."""

    def first_example(self, command: str) -> str | None:
        from .help_text import first_example
        return first_example(command)


def build_parser() -> argparse.ArgumentParser:
    from benchmarks import cli as bench_cli
    from distill import cli as distill_cli
    from optimize import commands as optimize_commands
    from runtime import cli as runtime_cli

    from . import __version__, demo, help_text

    parser = _Parser(
        prog="sharpen",
        description="Sharpen blurred images and video: Restormer teacher -> distilled CNN "
                    "student -> ONNX / TFLite / TensorRT at 1920x1080.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=help_text.VersionAction, version=__version__,
                        help="show the version and the backends installed, and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    distill_cli.add_commands(sub)
    optimize_commands.add_commands(sub)
    runtime_cli.add_commands(sub)
    bench_cli.add_commands(sub)
    demo.add_commands(sub)
    help_text.finish(parser)
    return parser


def _one_line_warnings() -> None:
    """The project's own warnings (a skipped file, a converted image) reach the user as
    `warning: ...` lines, as `sharpen run` prints them, not as Python's file:line plus source."""
    import warnings
    default = warnings.formatwarning
    if getattr(default, "sharpen", False):   # main() runs many times in one test process
        return
    root = Path(__file__).resolve().parent.parent
    ours = [root / pkg for pkg in ("distill", "optimize", "runtime", "benchmarks", "sharpen")]

    def fmt(message, category, filename, lineno, line=None):
        if issubclass(category, UserWarning) and any(Path(filename).resolve().is_relative_to(p)
                                                     for p in ours):
            return f"warning: {message}\n"
        return default(message, category, filename, lineno, line)

    fmt.sharpen = True
    warnings.formatwarning = fmt


def _command_parser(parser: argparse.ArgumentParser,
                    command: str | None) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return None


# Commands whose rerun skips what an interrupted run finished (their caches and outputs).
RESUMABLE = ("corpus", "labels", "bench", "export", "teacher")


def _as_overrides(argv: list[str], extra: list[str]) -> str:
    """`sharpen distill --seed 3`, as `synth` and `corpus` take their seed: the training
    commands' settings are key=value overrides, and argparse named only `--seed`."""
    from distill.config import config_key

    def a_value(word: str) -> bool:   # `-3` and `-1e-4` are values, `--quiet` is not
        if "=" in word:
            return False
        try:
            float(word)
            return True
        except ValueError:
            return not word.startswith("-")

    said, unsaid = [], list(extra)
    # Walked in argv's order, each where it stands: `--seed 3 --seed 4` has two values.
    for i, e in enumerate(argv):
        if e not in unsaid:
            continue
        unsaid.remove(e)
        word, eq, value = e.partition("=")
        # Another tool's name for the output folder (-o, --output-dir), whose value is out's;
        # not --gpu 0, whose value is no device= value
        word = "--out" if "--out" in OTHER_TOOLS_NAMES.get(word, ()) else word
        if not word.startswith("--"):
            continue
        key = config_key(word[2:])
        if key is None:
            continue
        if not eq:
            value = argv[i + 1] if i + 1 < len(argv) and a_value(argv[i + 1]) else ""
        said.append(f"{key}={value or 'VALUE'}")
    if not said:
        return ""
    return (f"; this command's settings are config keys given as KEY=VALUE: "
            f"{' '.join(said)}")


def main(argv: list[str] | None = None) -> int:
    if argv is None:   # this process is the command line, not a caller's function call
        utf8_file_names()
    open_closed_std_fds()
    unspellable_escaped()
    report_fatal_errors()   # a native crash inside a quiet_native_stderr window says so
    # TensorFlow (TFLite export) and absl print C++ INFO/WARNING lines users cannot act on.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    onnxruntime_telemetry_off()   # export, models and quantize import it too
    quiet_library_logs()
    _one_line_warnings()
    try:   # the commands' modules load here (numpy...: most of a second on a slow machine)
        parser = build_parser()
        argv = home_expanded(list(sys.argv[1:] if argv is None else argv))
        if argv[:1] == ["help"]:   # `sharpen help [COMMAND]`, as git and yolo take it
            argv = [*argv[1:2], "--help"]
        # argparse stops collecting a positional list at the first option, so the training
        # commands' KEY=VALUE overrides after e.g. --quiet would be "unrecognized": take them
        # back.
        args, extra = parser.parse_known_args(argv)
    except KeyboardInterrupt as e:   # a Ctrl-C then printed a traceback through argparse
        print("sharpen: interrupted", file=sys.stderr)
        return interrupt_exit_code(e)
    if extra:
        # Not only key=value: a value left out (`optim.lr --quiet`) gets load_config's
        # "must look like key=value" naming it, not "unrecognized arguments" naming the
        # valid overrides beside it too.
        if hasattr(args, "overrides") and not any(e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:   # from the command's parser, as argparse says its other errors
            (_command_parser(parser, getattr(args, "command", None)) or parser).error(
                f"unrecognized arguments: {' '.join(extra)}"
                + (_as_overrides(argv, extra)
                   if hasattr(args, "overrides") else ""))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    args.argv = argv   # what the training log records
    try:   # every command's first load of OpenCV and numpy, the core dependencies
        from runtime.imageio import ImageReadError, max_pixels
        from runtime.progress import ProgressSettingError, line_interval
    except ModuleNotFoundError as e:   # a Jetson venv without JetPack's cv2: not a traceback
        return _missing(args.command, e)
    try:   # a bad setting is one error now, not one skipped image per file later
        max_pixels()
        if args.command != "run":   # run draws no bar: a camera service is not stopped
            line_interval()   # nor a training run's failure at its first progress line
    except (ImageReadError, ProgressSettingError) as e:
        print(f"sharpen {args.command}: error: {e}", file=sys.stderr)
        return 2
    from runtime.atomic import LinkRefused
    from runtime.warn import shown_once_as_lines
    try:
        with stop_signals_as_interrupt(), shown_once_as_lines():
            return int(args.func(args) or 0)
    except (SharpenError, LinkRefused) as e:
        # LinkRefused: a lock file or log planted as a link in a shared folder, which every
        # command that writes into one meets (synth, teacher, corpus, training, evaluate)
        print(f"sharpen {args.command}: error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except KeyboardInterrupt as e:
        with said_after_hang_up():
            print(interrupted_message(args.command, e, args.command in RESUMABLE),
                  file=sys.stderr)
        return interrupt_exit_code(e)
    except ModuleNotFoundError as e:
        return _missing(args.command, e)
    except OSError as e:
        said = box_error_line(e, args.command)
        if said is None or os.environ.get("SHARPEN_DEBUG"):
            raise
        print(said, file=sys.stderr)
        # 2, as run's and labels' own messages for it: a rerun repeats it until the box is
        # fixed, and 1 is a verdict for some (runs --same: they differ; bench: a regression)
        return 2


def box_error_line(e: OSError, command: str) -> str | None:
    """The one line for an OSError of the box, not the code: a full disk or quota, a
    read-only or vanished folder. None where it keeps its traceback: an errno or a file
    not of the box, or a file of the program's own (a bug, a broken install)."""
    # A copy or rename that found no room (or a read-only disk) holds two names: the write,
    # not the file read, is what did not fit (export copying its ONNX into its scratch folder)
    name = (e.filename2 if e.errno in (*NO_SPACE_ERRNOS, errno.EROFS) and e.filename2
            else e.filename)
    if e.errno not in BOX_ERRNOS or not name or _own_file(name):
        return None
    # What was finished before stays (every file is renamed into place whole)
    resumable = command in (*RESUMABLE, *TRAINING)
    again = (f"; {KEPT}: free some space and run the same command to continue"
             if e.errno in NO_SPACE_ERRNOS and resumable else "")
    if e.errno == errno.EFBIG:   # a limit on one file, which freeing space does not raise
        again = (" (the limit on one file's size, ulimit -f or a FAT32 disk's 4 GiB, not the "
                 "disk's space)" + (f"; {KEPT}: raise it or write elsewhere, and run the same "
                                    "command to continue" if resumable else ""))
    # A wrong path the code made reads as a vanished or forbidden file: the way to tell
    debug = (" (set SHARPEN_DEBUG=1 for the traceback)"
             if e.errno in (errno.ENOENT, errno.EACCES, errno.EPERM) else "")
    return f"sharpen {command}: error: {name}: {e.strerror}{again}{debug}"


def _own_file(name: str | bytes | int) -> bool:
    """Whether `name` is inside sharpen's own packages or Python's installed libraries."""
    import importlib.util
    import sysconfig
    if not isinstance(name, (str, bytes)):
        return False
    roots = [sysconfig.get_paths()[k] for k in ("stdlib", "purelib", "platlib")]
    for package in OWN_PACKAGES:
        if spec := importlib.util.find_spec(package):
            roots.extend(spec.submodule_search_locations or ())
    path = Path(os.path.realpath(os.fsdecode(name)))
    return any(path.is_relative_to(os.path.realpath(root)) for root in roots)


# A write or read the machine refused, said in one line naming the file, where a command has
# no message of its own for it: no space (a disk, a quota, `ulimit -f`), a read-only or
# unwritable folder, a file or folder gone, an I/O error of the disk.
BOX_ERRNOS = NO_SPACE_ERRNOS | {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT, errno.EIO}
# Rerun, they go on from their last checkpoint (resume=auto)
TRAINING = ("distill", "train", "train-teacher")


def _missing(command: str, e: ModuleNotFoundError) -> int:
    """A package `sharpen COMMAND` cannot import, said in one line with what to install: a
    device install (runtime extra only) lists every command; those needing torch, yaml or
    scikit-image say what to install instead of a traceback. Our own modules missing, or
    SHARPEN_DEBUG set: the traceback."""
    if (e.name or "").split(".")[0] in OWN_PACKAGES or os.environ.get("SHARPEN_DEBUG"):
        raise e
    print(f"sharpen {command}: error: {missing_dependency(command, e)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
