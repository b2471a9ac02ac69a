"""`sharpen`: the project's command line. Subcommands come from each package's own cli module;
all heavy imports (torch, tensorflow) happen inside the handlers, so `sharpen run` on a device
with only the runtime installed never imports torch."""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import sys
import threading
from pathlib import Path

from runtime.cli_errors import (OWN_PACKAGES, STOP_SIGNALS, SharpenError, Terminated,
                                 drop_gone_outputs, interrupt_exit_code, interrupted_message,
                                 missing_dependency, said_after_hang_up)
from runtime.console import open_closed_std_fds, quiet_library_logs, report_fatal_errors
from runtime.locale_text import unspellable_escaped, utf8_file_names
from runtime.shell_words import home_expanded
from runtime.suggest import near


class _Parser(argparse.ArgumentParser):
    """argparse's parser (the commands' too: subparsers take their parent's class), whose errors
    are one line naming the option and the value, with "did you mean" for a misspelled command,
    option or choice, and a pointer to the command's --help instead of its whole usage. Its
    "expected one argument" says how to write a value starting with '-' (a stranger's file
    name, -photo.jpg), which argparse reads as an option. `argv`: the command line main()
    parses."""
    argv: list[str] = []

    def parse_known_args(self, args=None, namespace=None):
        # Each parse's own words (a command's parser gets those after its name): the errors
        # of a parser built for the API must not name the last command line main() parsed.
        _Parser.argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str):
        m = re.fullmatch(r"argument (\S+): expected one argument", message)
        names = m.group(1).split("/") if m else []
        after = [(a, self.argv[i + 1]) for i, a in enumerate(self.argv[:-1]) if a in names]
        if after and after[-1][1].startswith("-") and after[-1][1] != "-" \
                and not self._is_option(after[-1][1]):
            flag, v = after[-1]   # as typed: --format or --formats
            action = self._option_string_actions[flag]
            # ./-photo.jpg is the same file; ./-1,2 is no list of frames
            a_file = action.type is None and not action.choices and action.metavar != "LIST"
            message += (f" ({v}, starting with '-', is read as an option: write {flag}={v}"
                        + (f" or {flag} ./{v})" if a_file else ")"))
        message = self._with_suggestion(message)
        pointer = self._help_pointer(message.startswith("the following arguments are required"))
        self.exit(2, f"{self.prog}: error: {message}\n{pointer}\n")

    def _with_suggestion(self, message: str) -> str:
        # `export --model fast` is taken by argparse as --modelopt-method, which it abbreviates:
        # an option name from another tool is what the user meant, whatever argparse made of it.
        borrowed = [w for w in self.argv if (n := w.split("=", 1)[0]) in OTHER_TOOLS_NAMES
                    and n not in self._option_string_actions and self._is_option(w)
                    and self._meant(w)]
        if borrowed and not message.startswith("unrecognized arguments"):
            return f"unrecognized arguments: {borrowed[0]} ({self._meant(borrowed[0])})"
        if m := re.fullmatch(r"argument (\S+): invalid choice: '(.*)' \(choose from (.*)\)",
                             message):
            suggestion = _choice_hint(m.group(2), re.findall(r"'([^']*)'", m.group(3)))
            return f"{message}; {suggestion}" if suggestion else message
        unknown = self._unknown_options()
        if unknown and message.startswith("the following arguments are required"):
            missing = set(re.findall(r"--[\w-]+", message))
            named = {o for u in unknown for o in re.findall(r"--[\w-]+", self._meant(u) or "")}
            unrecognized = f"unrecognized arguments: {' '.join(unknown)}"
            if named & missing:
                # A misspelled required option (--modle) is why "--model is required": say that.
                message = unrecognized
            else:   # both, or the missing one comes to light only on the next try
                return f"{message}; {unrecognized}{self._hints(unknown)}"
        if message.startswith("unrecognized arguments"):
            message += self._hints(unknown)
        return message

    def _hints(self, unknown: list[str]) -> str:
        """" (did you mean --model?)", or " (did you mean --model for -m, --out for -o?)", for
        the unknown options with a suggestion; else ""."""
        meant = {u: c for u in unknown if (c := self._meant(u))}
        if len(meant) == 1 and len(unknown) == 1:
            return f" ({next(iter(meant.values()))})"
        if meant:
            said = ", ".join(f"{c.removeprefix('did you mean ').rstrip('?')} for {u}"
                             for u, c in meant.items())
            return f" (did you mean {said}?)"
        return ""

    def _meant(self, word: str) -> str | None:
        """"did you mean --model?" for an option this command lacks: its name for another
        tool's (--input, -o), else the nearest spelling; where the inputs take no flag, how
        to give them."""
        name = word.split("=", 1)[0]
        ours = [o for o in OTHER_TOOLS_NAMES.get(name, ()) if o in self._option_string_actions]
        if ours:
            return f"did you mean {ours[0]}?"
        if OTHER_TOOLS_NAMES.get(name) == _INPUT and any(a.dest == "inputs"
                                                         for a in self._actions):
            from .help_text import first_example
            example = first_example(self.prog.split(" ", 1)[-1])
            return "the inputs take no flag" + (f": {example}" if example else "")
        if name.startswith("--") and not self._is_option(word):
            # Compared without their dashes, which every pair shares (--lr was near --help).
            longs = sorted(o[2:] for o in self._option_string_actions if o.startswith("--"))
            if meant := near(name[2:], longs):
                return f"did you mean --{meant}?"
        return None

    def _unknown_options(self) -> list[str]:
        """The words of the command line that look like options of this command and are not
        (-o as other tools spell their options, too)."""
        return [w for w in self.argv
                if (w.startswith("--") and len(w) > 2 or re.fullmatch(r"-[A-Za-z]", w))
                and not self._is_option(w) and w.split("=", 1)[0] != "--version"]

    def _help_pointer(self, required: bool) -> str:
        from .help_text import first_example
        example = (first_example(self.prog.split(" ", 1)[1])
                   if " " in self.prog and required else None)
        return (f"see '{self.prog} --help'" + (f"; e.g. {example}" if example else "")
                if " " in self.prog else
                f"see '{self.prog} --help' for the commands; '{self.prog} COMMAND --help' for one")

    def _is_option(self, word: str) -> bool:
        """Whether `word` is one of this command's options (or, as argparse takes them, a
        long one's prefix, with its =VALUE): then the value before it was left out."""
        name = word.split("=", 1)[0]
        return any(o == name or (name.startswith("--") and o.startswith(name))
                   for o in self._option_string_actions)


# Other tools' names for this project's options (ffmpeg's -i, YOLO's --source, a trainer's
# --checkpoint), each with ours in the order they are tried: the first the command has is meant.
_INPUT = ("--source", "--data", "--photos", "--sharp")
# teacher and labels run the teacher alone: its weights are the model they take.
_MODEL = ("--model", "--weights", "--teacher-weights")
_WEIGHTS = ("--weights", "--model", "--teacher-weights")
_STUDENT = ("--weights", "--model")
OTHER_TOOLS_NAMES: dict[str, tuple[str, ...]] = {
    "--input": _INPUT, "--inputs": _INPUT, "-i": _INPUT, "--src": ("--source",),
    "--video": ("--source",), "--camera": ("--source",), "--images": _INPUT,
    "-o": ("--out",), "--output-dir": ("--out",), "--outdir": ("--out",),
    "--out-dir": ("--out",), "--save-dir": ("--out",),
    "-m": _MODEL, "--model": _MODEL, "--weights": _MODEL, "--checkpoint": _WEIGHTS,
    "--ckpt": _WEIGHTS, "-w": _WEIGHTS, "--onnx": ("--model",), "--engine": ("--model",),
    "-j": ("--threads",), "--jobs": ("--threads",), "--num-threads": ("--threads",),
    "--gpu": ("--device", "--provider"), "--cuda": ("--device", "--provider"),
    "-q": ("--quiet",),
    # ffmpeg's segment muxer's and NVRs' names for how many recordings to keep
    "--max-segments": ("--keep-segments",), "--segment_wrap": ("--keep-segments",),
    "--segment-wrap": ("--keep-segments",),
    # demo's and bench's names for the student weights, in the commands without them
    "--student": _STUDENT, "--students": _STUDENT, "--student-weights": _STUDENT,
}


def _choice_hint(word: str, choices: list[str]) -> str:
    """"did you mean 'run'?" for a word near one of `choices` (a typo, or a prefix), else ""."""
    meant = near(word, choices)
    return f"did you mean '{meant}'?" if meant else ""


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
RESUMABLE = ("corpus", "labels", "bench", "export")


@contextlib.contextmanager
def _stop_signals_as_interrupt():
    # Only the stop signals that still have their default action (the trainer and `sharpen run`
    # install their own handlers, which replace this one while they run; `nohup` ignores
    # SIGHUP). Python runs the handler between bytecodes, so a long native call (a teacher
    # tile, an engine build) finishes first; schedulers follow SIGTERM with SIGKILL after
    # their grace period anyway.
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    taken = [s for s in STOP_SIGNALS if signal.getsignal(s) is signal.SIG_DFL]
    pid = os.getpid()

    def raise_terminated(signum, frame):
        if os.getpid() != pid:   # a forked worker (pool, loader): die as it would have
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        drop_gone_outputs(signum)
        raise Terminated(signum)
    raise_terminated.sharpen_stop = True   # run_stream and the trainer may take SIGHUP over
    for s in taken:
        signal.signal(s, raise_terminated)
    try:
        yield
    finally:
        for s in taken:   # not one ignored since (by a trainer ending on a lost process)
            if signal.getsignal(s) is not signal.SIG_IGN:
                signal.signal(s, signal.SIG_DFL)


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
    from runtime.imageio import ImageReadError, max_pixels
    from runtime.progress import ProgressSettingError, line_interval
    try:   # a bad setting is one error now, not one skipped image per file later
        max_pixels()
        if args.command != "run":   # run draws no bar: a camera service is not stopped
            line_interval()   # nor a training run's failure at its first progress line
    except (ImageReadError, ProgressSettingError) as e:
        print(f"sharpen {args.command}: error: {e}", file=sys.stderr)
        return 2
    from runtime.warn import shown_once_as_lines
    try:
        with _stop_signals_as_interrupt(), shown_once_as_lines():
            return int(args.func(args) or 0)
    except SharpenError as e:
        print(f"sharpen {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        with said_after_hang_up():
            print(interrupted_message(args.command, e, args.command in RESUMABLE),
                  file=sys.stderr)
        return interrupt_exit_code(e)
    except ModuleNotFoundError as e:
        # A device install (runtime extra only) lists every command; those needing torch,
        # yaml or scikit-image say what to install instead of a traceback.
        if (e.name or "").split(".")[0] in OWN_PACKAGES or os.environ.get("SHARPEN_DEBUG"):
            raise
        print(f"sharpen {args.command}: error: {missing_dependency(args.command, e)}",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
