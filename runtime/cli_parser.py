"""The `sharpen` commands' argument parser, whose usage errors are one line and a pointer to the
command's --help: `sharpen` builds every command with it, and `python -m runtime.cli` (a
device's unit without the console script) its `run`, so both say the same."""
from __future__ import annotations

import argparse
import itertools
import os
import re
import sys

from .suggest import near


class CommandParser(argparse.ArgumentParser):
    """argparse's parser (the commands' too: subparsers take their parent's class), whose errors
    are one line naming the option and the value, with "did you mean" for a misspelled command,
    option or choice, and a pointer to the command's --help instead of its whole usage. Its
    "expected one argument" says how to write a value starting with '-' (a stranger's file
    name, -photo.jpg), which argparse reads as an option. `argv`: the command line main()
    parses."""
    argv: list[str] = []
    # A command's word on an option another command has and it lacks (the teacher's on run's
    # --quality), said instead of a near spelling ("did you mean --quiet?").
    not_here: dict[str, str] = {}

    def parse_known_args(self, args=None, namespace=None):
        # Each parse's own words (a command's parser gets those after its name): the errors
        # of a parser built for the API must not name the last command line main() parsed.
        CommandParser.argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str):
        # `at least one`: an option taking several values (run's --stats FILE [FILE ...])
        m = re.fullmatch(r"argument (\S+): expected (?:at least )?one argument", message)
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
            suggestion = choice_hint(m.group(2), re.findall(r"'([^']*)'", m.group(3)))
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
            message += self._hints(unknown) or self._shell_listed()
        return message

    def _shell_listed(self) -> str:
        """" (--source takes one file, not 3: ...)" where an option's value and the words after
        it are files of one folder: bash expands an unquoted `--source frames/*.png` into its
        matches, and the option takes one; '' otherwise."""
        from .console import shell_join
        for i, flag in enumerate(self.argv):
            action = self._option_string_actions.get(flag)
            if action is None or action.nargs is not None:   # one value, given as the next word
                continue
            files = list(itertools.takewhile(lambda w: not w.startswith("-"), self.argv[i + 1:]))
            if (len(files) < 2 or not all(map(os.path.isfile, files))
                    or len({os.path.dirname(f) for f in files}) > 1):
                continue
            folder = os.path.dirname(files[0])
            exts = {os.path.splitext(f)[1] for f in files}
            pattern = os.path.join(folder, "*" + (exts.pop() if len(exts) == 1 else ""))
            return (f" ({flag} takes one file, not {len(files)}: quote a pattern, which the "
                    f"shell expands unquoted, {shell_join([flag, pattern])}, or give the "
                    f"folder, {shell_join([flag, folder or '.'])})")
        return ""

    def _hints(self, unknown: list[str]) -> str:
        """" (did you mean --model?)", or " (did you mean --model for -m, --out for -o?)", for
        the unknown options with a suggestion; else ""."""
        meant = {u: c for u in unknown if (c := self._meant(u))}
        if len(meant) == 1 and len(unknown) == 1:
            return f" ({next(iter(meant.values()))})"
        spelt = {u: c for u, c in meant.items() if c.startswith("did you mean ")}
        parts = [f"{u}: {c}" for u, c in meant.items() if u not in spelt]   # a word, not a name
        if spelt:
            said = ", ".join(f"{c.removeprefix('did you mean ').rstrip('?')} for {u}"
                             for u, c in spelt.items())
            parts.insert(0, f"did you mean {said}?")
        return f" ({'; '.join(parts)})" if parts else ""

    def _meant(self, word: str) -> str | None:
        """"did you mean --model?" for an option this command lacks: its name for another
        tool's (--input, -o), else the nearest spelling; where the inputs take no flag, how
        to give them."""
        name = word.split("=", 1)[0]
        if name in self.not_here:
            return self.not_here[name]
        ours = [o for o in OTHER_TOOLS_NAMES.get(name, ()) if o in self._option_string_actions]
        if ours:
            return f"did you mean {ours[0]}?"
        if OTHER_TOOLS_NAMES.get(name) == _INPUT and any(a.dest == "inputs"
                                                         for a in self._actions):
            example = self.first_example(self.prog.split(" ", 1)[-1])
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

    def first_example(self, command: str) -> str | None:
        """The command's first example, for its usage errors' pointer (none known here)."""
        return None

    def _help_pointer(self, required: bool) -> str:
        example = (self.first_example(self.prog.split(" ", 1)[1])
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
    "--source": _INPUT,   # `run`'s, in the commands that name their inputs otherwise
    "--overwrite": ("--no-resume",),   # `run`'s, in the teacher's words
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
    # ffmpeg's, x264's and x265's name for the encoder's speed (synth's --preset is its own)
    "--preset": ("--encoder-preset",),
    # demo's and bench's names for the student weights, in the commands without them
    "--student": _STUDENT, "--students": _STUDENT, "--student-weights": _STUDENT,
}


def choice_hint(word: str, choices: list[str]) -> str:
    """"did you mean 'run'?" for a word near one of `choices` (a typo, or a prefix), else ""."""
    meant = near(word, choices)
    return f"did you mean '{meant}'?" if meant else ""
