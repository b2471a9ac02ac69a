"""Where this process stands in a torchrun job: rank, world size, local rank (one of one when
not launched by torchrun). Shared by the trainer and the labelling run."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from runtime.console import shell_join


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "DistInfo":
        def geti(key: str, default: int) -> int:
            try:
                return int(os.environ.get(key, default))
            except ValueError:
                raise ValueError(f"environment variable {key}={os.environ[key]!r} is not an "
                                 "integer") from None
        d = cls(geti("RANK", 0), geti("WORLD_SIZE", 1), geti("LOCAL_RANK", 0))
        if d.world < 1 or not 0 <= d.rank < d.world:
            raise ValueError(f"bad RANK={d.rank} / WORLD_SIZE={d.world}")
        return d

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _program(argv0: str) -> list[str] | None:
    """How a user starts the `sharpen` command line that `argv0` is, or None when it is not
    that: `python -m sharpen.cli` makes argv[0] the module's path (`.../sharpen/cli.py`, which
    cannot run as a script), `python -m sharpen` the package's (`.../sharpen/__main__.py`), the
    console script its own path (`.venv/bin/sharpen`)."""
    prog = Path(argv0)
    if prog.parent.name == "sharpen" and prog.name in ("cli.py", "__main__.py"):
        return ["python", "-m", "sharpen" if prog.name == "__main__.py" else "sharpen.cli"]
    if prog.name.lower() in ("sharpen", "sharpen.exe"):
        return ["sharpen"]
    return None


def command_line(argv: list[str] | None) -> str:
    """This command as a user would type it again, for train.log and export_report.json
    (`argv`: the command line main() parsed, without the program): main(ARGV) called from
    Python (a notebook, a test) has the caller's sys.argv, not ARGV."""
    if argv is None or argv == sys.argv[1:]:
        return launch_command(sys.argv)
    return launch_command(["sharpen", *argv])


def launch_command(argv: list[str]) -> str:
    """The command that started this process, as a user would type it again: `sharpen ...` or
    `python -m sharpen[.cli] ...` as it was started (argv[0] is a path to the console script,
    sharpen/cli.py or sharpen/__main__.py), any other program as it is. Under torchrun argv is
    the worker's (`.../sharpen/cli.py distill ...`), which runs one process and no DDP:
    train.log recorded that, not the torchrun line."""
    env = os.environ
    program = _program(argv[0]) if argv else None
    if "TORCHELASTIC_RUN_ID" not in env or "LOCAL_WORLD_SIZE" not in env:
        return shell_join((program or argv[:1]) + argv[1:])
    # torchrun -m sharpen.cli (as the README has it); torchrun runs a script or a module
    target = (program[1:] if program[0] == "python" else ["-m", "sharpen.cli"]) if program \
        else argv[:1]
    nodes = env.get("GROUP_WORLD_SIZE", "1")
    launcher = ["torchrun"] + (["--nnodes", nodes] if nodes != "1" else []) + \
        ["--nproc_per_node", env["LOCAL_WORLD_SIZE"]]
    line = shell_join(launcher + target + argv[1:])
    return line if nodes == "1" else f"{line} (on each of the {nodes} nodes, with its " \
        "rendezvous options)"
