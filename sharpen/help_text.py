"""What `sharpen`, `sharpen --help`, `sharpen --version` and `sharpen COMMAND --help` show
besides the options' own help: the first steps, the commands' order, each command's option
groups and example lines (registries here; the tests parse every example), the installed
backends, and help text wrapped to the terminal instead of the 95-column lines it is written
in."""
from __future__ import annotations

import argparse
import re
import textwrap

# Each command's examples, the common case first: shown at the end of its --help, and the first
# one in its usage errors. Paths are the repository's own (models/, configs/) or placeholders a
# user replaces (photos/, in.mp4); tests/test_cli_help.py parses every line.
EXAMPLES: dict[str, list[str]] = {
    "teacher": [
        "sharpen teacher photos/ --out sharp/     # the shipped small teacher",
        "sharpen teacher big.png --out sharp/ --tile 512 --device cpu --threads 2",
    ],
    "models": [
        "sharpen models                     # params, GMAC, receptive field at 1080p",
        "sharpen models fast seed --measure  # ... and PyTorch CPU latency here",
        "sharpen models export/student-fast.onnx  # how an exported model was made",
    ],
    "synth": [
        "sharpen synth --sharp my_sharp_photos/ --out my_pairs/ --copies 4",
        "sharpen synth --sharp my_sharp_photos/ --out my_pairs/ --preset handheld",
    ],
    "corpus": [
        "sharpen corpus --photos photos/ --out runs/corpus",
    ],
    "grow": [
        "sharpen grow --weights runs/fast/last.pt --out runs/fast-deep-init.pt deep=2",
    ],
    "evaluate": [
        "sharpen evaluate --weights fast teacher --data reds-mini/ --limit 4",
        "sharpen evaluate --model export/student-fast.onnx --data reds-mini/",
    ],
    "train-teacher": [
        "sharpen train-teacher --config configs/teacher-centred.yaml",
        "sharpen train-teacher --config configs/teacher-centred.yaml --print-config",
    ],
    "distill": [
        "sharpen distill --config configs/distill-fast.yaml out=runs/fast",
        "sharpen distill --config configs/distill-fast.yaml optim.lr=3e-4 --quiet",
    ],
    "train": [
        "sharpen train --config configs/student-fast-real-gt.yaml",
    ],
    "runs": [
        "sharpen runs runs/fast-a runs/fast-b runs/fast-c --out runs/compare",
        "sharpen runs runs/     # every run folder in runs/",
        "sharpen runs runs/fast-a runs/fast-a-again --same   # the same run? exit 0 yes, 1 no",
        "sharpen runs export-a/ export-b/ --same   # the same export release? exit 0 yes",
    ],
    "labels": [
        "sharpen labels --data my_pairs/ --out runs/labels/train",
        "sharpen labels --data clip.mp4 --out runs/c --hold-out 0.2 --val-out runs/v",
    ],
    "export": [
        "sharpen export --weights fast --out export/   # every format it can build here",
        "sharpen export --weights fast --out export/ --formats onnx-int8 --calib in/",
    ],
    "bench": [
        "sharpen bench --out bench/          # report.md + report.json (quick mode)",
        "sharpen bench --out bench/ --weights fast --formats onnx --no-latency",
        "sharpen bench --out bench/ --baseline accepted/report.json   # CI: exit 1 if worse",
    ],
    "bench-compare": [
        "sharpen bench-compare accepted/report.json bench/report.json",
        "sharpen bench-compare accepted/ bench/ --fail-on psnr:0.05,ssim:0.001",
    ],
    "demo": [
        "sharpen demo            # the whole pipeline into demo-output/ (minutes)",
        "sharpen demo --steps 50 --no-bench",
    ],
    # `run` keeps its own examples in runtime/cli.py's epilog (a runtime-only device shows
    # them without this package); these are its usage errors' pointer.
    "run": [
        "sharpen run --model export/student-fast.onnx --source in.mp4 --out out.mp4",
    ],
}

# Each command's options by what a user is after; those not named stay in argparse's first
# group ("options:"), the ones most runs need. `run` groups its own (runtime/cli.py), as a
# runtime-only device builds its parser without this package.
GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "teacher": {
        "model": ("--teacher-weights", "--teacher-config"),
        "photos": ("--bits16", "--no-exif", "--no-metadata"),
        "performance": ("--tile", "--overlap", "--batch-size", "--device", "--threads"),
    },
    "synth": {
        "blur settings": ("--mode", "--kernel", "--size", "--gamma", "--noise", "--jpeg-prob"),
    },
    "evaluate": {
        "data": ("--split", "--gopro-blur", "--limit", "--stride", "--frames", "--crop"),
        "figures": ("--figure-images", "--figure-crop"),
        "performance": ("--tile", "--device", "--threads", "--provider"),
        "advanced": ("--teacher-config",),
    },
    "labels": {
        "data": ("--split", "--gopro-blur", "--limit", "--hold-out", "--val-out"),
        "teacher": ("--teacher-weights", "--teacher-config"),
        "performance": ("--tile", "--overlap", "--batch-size", "--device", "--threads"),
    },
    "bench": {
        "inputs": ("--weights", "--model", "--data", "--real-pairs", "--real-nogt", "--stride",
                   "--frames", "--limit", "--align"),
        "quality and speed gates": ("--min-ssim-ratio", "--min-ssim-gain", "--target-fps",
                                    "--cpu-target-fps", "--max-memory-mib"),
        "timing": ("--sizes", "--stream-frames", "--tile", "--threads"),
        "export and INT8 calibration": ("--formats", "--float-layers", "--calib",
                                        "--calib-count", "--seed"),
        "regression gate (CI)": ("--baseline", "--fail-on"),
        "advanced": ("--teacher-weights", "--teacher-config", "--cache"),
    },
    "demo": {
        "models": ("--teacher-weights", "--teacher-config", "--student", "--weights"),
        "fine-tune": ("--steps", "--lr", "--label-images", "--video-frames"),
        "quality gate": ("--min-ssim-ratio", "--min-ssim-gain"),
        "performance": ("--threads",),
    },
}


def group_options(parser: argparse.ArgumentParser, groups: dict[str, tuple[str, ...]]) -> None:
    """Move `parser`'s options into titled groups for its --help (only the help changes: the
    usage line and parsing read the parser's own list). An option the command lacks is a
    KeyError, so this registry cannot drift from the commands."""
    for title, flags in groups.items():
        group = parser.add_argument_group(title)
        for flag in flags:
            action = parser._option_string_actions[flag]
            for old in parser._action_groups:
                if action in old._group_actions:
                    old._group_actions.remove(action)
            group._group_actions.append(action)


START_HERE = """\
start here:
  sharpen demo                          # the whole pipeline on built-in data
  sharpen teacher photos/ --out sharp/  # sharpen photos with the teacher
  sharpen export --weights fast --out export/
  sharpen run --model export/student-fast.onnx --source in.mp4 --out out.mp4

'sharpen COMMAND --help' describes a command, with examples at its end."""


# The same for an install without PyTorch (a device's: the runtime or litert extra).
DEVICE_START_HERE = """\
no PyTorch here (a runtime-only install): `run` works, and `models`, `evaluate --model`
and `bench --model` on exported files; the other commands need the train extra (each says
how to install it).

start here:
  sharpen run --model export/{model} --source in.mp4 --out out.mp4
  sharpen models export/{model}  # how an exported model was made
  sharpen evaluate --model export/{model} --data pairs/
  sharpen bench --out bench/ --model export/{model}

'sharpen COMMAND --help' describes a command, with examples at its end."""


def _has(module: str) -> bool:
    """Whether `module` can be imported, asked of the import system without importing it."""
    import importlib.util
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _device_start_here() -> str:
    """DEVICE_START_HERE with a model the engine installed here runs: the .tflite where LiteRT
    (or tflite-runtime) is and ONNX Runtime is not, as in the litert extra's image."""
    tflite = not _has("onnxruntime") and (_has("ai_edge_litert") or _has("tflite_runtime"))
    return DEVICE_START_HERE.format(
        model="student-fast_int8.tflite" if tflite else "student-fast.onnx")


def first_example(command: str) -> str | None:
    """The first example of `command`, without its comment, for a usage error."""
    lines = EXAMPLES.get(command)
    return lines[0].split("  #", 1)[0].strip() if lines else None


def examples_epilog(command: str, epilog: str | None) -> str | None:
    """`epilog` with the command's examples at its end, where it has none of its own."""
    if command not in EXAMPLES or (epilog and "examples:" in epilog):
        return epilog
    block = "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[command])
    return f"{epilog.rstrip()}\n\n{block}" if epilog else block


# A paragraph starts at a line like "Exit codes: ...", "signals: ..." (a heading word or two).
_HEADING = re.compile(r"[A-Za-z][\w -]{0,20}:(\s|$)")
# An unindented line starting a numbered or bulleted list item ("1. build ...").
_LIST_ITEM = re.compile(r"(\d+\.|-) \S")
# Lines kept as they are, however wide: a command to copy.
_COMMAND = re.compile(r"\s+(sharpen|pytest|torchrun|ffmpeg)\s")


def wrap_text(text: str, width: int) -> str:
    """Description and epilog text re-wrapped to `width`: paragraphs flowed, indented items
    (tables, lists; a deeper-indented line continues the item above) wrapped under their own
    text column, command lines left whole."""
    out: list[str] = []
    para: list[str] = []
    item: list[str] = []   # an indented item's lines, the first one as written

    def flush() -> None:
        if para:
            out.extend(textwrap.wrap(" ".join(para), width))
            para.clear()
        if item:
            first = item[0]
            indent = len(first) - len(first.lstrip())
            col = re.match(r"\s*(- |\d+\. |\S+\s{2,})", first)
            hang = col.end() if col and col.end() < width // 2 else indent + 2
            joined = " ".join([first.rstrip(), *(x.strip() for x in item[1:])])
            out.extend(textwrap.wrap(joined, width, subsequent_indent=" " * hang)
                       if len(item) > 1 or len(first) > width else [first])
            item.clear()

    for line in text.splitlines():
        indent = len(line) - len(line.lstrip())
        if not line.strip():
            flush()
            out.append("")
        elif _COMMAND.match(line):
            flush()
            out.append(line)
        elif indent:
            if item and indent > len(item[0]) - len(item[0].lstrip()) \
                    and not line.lstrip().startswith("- "):
                item.append(line)
                continue
            flush()
            item.append(line)
        elif _LIST_ITEM.match(line):
            flush()
            item.append(line)
        else:
            if _HEADING.match(line) or item:
                flush()
            para.append(line.strip())
    flush()
    return "\n".join(out)


def wrapping(formatter: type[argparse.HelpFormatter]) -> type[argparse.HelpFormatter]:
    """`formatter` whose description and epilog fit the terminal (argparse's raw formatter
    prints them as written: lines of 95 to 270 columns in an 80-column terminal)."""
    class Wrapped(formatter):
        def _fill_text(self, text, width, indent):
            return wrap_text(text, max(width, 40))
    Wrapped.__name__ = f"Wrapped{formatter.__name__}"
    return Wrapped


# The order `sharpen --help` lists the commands in: using the shipped models first, then
# measuring and shipping them, then making data and training.
ORDER = ("demo", "run", "teacher", "export", "evaluate", "bench", "bench-compare", "models",
         "labels", "distill", "train", "train-teacher", "runs", "grow", "synth", "corpus")


def finish(parser: argparse.ArgumentParser) -> None:
    """The top-level help's first steps, and each command's option groups, examples and
    wrapped text."""
    parser.epilog = START_HERE if _has("torch") else _device_start_here()
    parser.formatter_class = wrapping(parser.formatter_class)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            rank = {name: i for i, name in enumerate(ORDER)}
            action._choices_actions.sort(key=lambda a: rank.get(a.dest, len(ORDER)))
            for name, p in action.choices.items():
                group_options(p, GROUPS.get(name, {}))
                p.epilog = examples_epilog(name, p.epilog)
                p.formatter_class = wrapping(p.formatter_class)


# What `sharpen --version` names beside the version: the runtimes `sharpen run` can use, and
# what trains and exports (TensorFlow converts to TFLite; run never imports it), as installed
# (package metadata: nothing is imported).
_VERSION_LIBRARIES = (("backends", (("onnxruntime", "ONNX Runtime"), ("ai_edge_litert", "LiteRT"),
                                    ("tensorrt", "TensorRT"))),
                      ("training and export", (("torch", "PyTorch"), ("tensorflow", "TensorFlow"))))
# LiteRT's predecessor, which `sharpen run` loads where ai-edge-litert has no wheel (32-bit ARM).
_TFLITE_RUNTIME = ("tflite-runtime", "tflite_runtime")


def version_text(version: str) -> str:
    """`sharpen VERSION` and, a line each, the backends and training library installed."""
    import platform

    from runtime.host import dist_version, library_versions
    found = library_versions([n for _, libs in _VERSION_LIBRARIES for n, _ in libs])
    labels = {n: label for _, libs in _VERSION_LIBRARIES for n, label in libs}
    if not found["ai_edge_litert"] and (old := dist_version(*_TFLITE_RUNTIME)):
        found["ai_edge_litert"], labels["ai_edge_litert"] = old, "LiteRT (tflite-runtime)"
    lines = [f"sharpen {version} (Python {platform.python_version()})"]
    for kind, libs in _VERSION_LIBRARIES:
        have = [f"{labels[n]} {found[n]}" for n, _ in libs if found[n]]
        lack = [labels[n] for n, _ in libs if not found[n]]
        lines.append(f"{kind}: {', '.join(have) or 'none'}"
                     + (f"; not installed: {', '.join(lack)}" if lack else ""))
    return "\n".join(lines)


class VersionAction(argparse._VersionAction):
    """argparse's --version, printing version_text's lines as they are (not re-wrapped)."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text(self.version))
        parser.exit()
