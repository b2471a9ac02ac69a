"""How a signal stops a training run: the exception the caller gets once the checkpoint is
saved, the one that cuts a validation short, and how to go on from the checkpoint."""
from __future__ import annotations

import signal
from pathlib import Path

from .config import TrainConfig


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM/SIGHUP stopped training after a checkpoint was saved; `signum` says which."""

    def __init__(self, signum: int, step: int, out: Path,
                 hint: str = "run the same command to resume"):
        name = {signal.SIGINT: "Ctrl-C (SIGINT)"}.get(signum) or _signal_name(signum)
        super().__init__(f"interrupted by {name} at step {step}; checkpoint saved to "
                         f"{out / 'last.pt'}; {hint}")
        self.signum, self.step = signum, step


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class SecondSignal(BaseException):
    """SIGTERM or SIGHUP, or a second SIGINT, while validation runs, or any of them while the
    first step compiles (compile=true): skip it and save. A BaseException, so that no
    `except Exception` on the way swallows it."""


def resume_hint(cfg: TrainConfig) -> str:
    """How to go on from out/last.pt after a stop. "Run the same command" started a
    resume=never run over from step 0, and sent a resume=CKPT run back to CKPT, each replacing
    the steps just saved."""
    r, last = str(cfg.resume), Path(cfg.out) / "last.pt"
    if r == "auto" or (r != "never" and Path(r).resolve() == last.resolve()):
        return "run the same command to resume"
    would = "start over" if r == "never" else f"go back to {r}"
    return f"to resume, run it with resume=auto (resume={r} would {would})"
