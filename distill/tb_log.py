"""TensorBoard scalars and validation pictures of a run (`tensorboard=true`, BasicSR's
use_tb_logger), in OUT/tb, so `tensorboard --logdir runs` overlays every run there. The
`tensorboard` package is optional: nothing imports it unless a config asks for it."""
from __future__ import annotations

import sys
import types
from pathlib import Path
import numpy as np

MISSING = ("tensorboard=true needs the tensorboard package, which is not installed: "
           "pip install tensorboard (or set tensorboard=false; metrics.jsonl and curves.png "
           "are written either way)")


def _summary_writer():
    """torch's SummaryWriter class, without TensorFlow: tensorboard imports it where it is
    installed (the export extra's), which added seconds to the start and TensorFlow's log
    lines to the console, to write files that its own stub writes the same. tensorboard
    takes the stub where `tensorboard.compat.notf` exists."""
    if "tensorflow" not in sys.modules:
        sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType(
            "tensorboard.compat.notf"))
    from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter


def require_tensorboard() -> None:
    """ValueError naming the package to install when it is missing: said before the run
    starts, not after its data checks."""
    try:
        _summary_writer()
    except ImportError:
        raise ValueError(MISSING) from None


class TensorBoardLog:
    """A SummaryWriter on OUT/tb. Resumed at step N, events logged after N (by a run killed
    after its checkpoint, or a history gone back from) are dropped from view (purge_step),
    so the curves go on instead of doubling back."""

    def __init__(self, out: Path, step: int) -> None:
        SummaryWriter = _summary_writer()
        # 30 s, not 120: a run watched from another machine shows its last interval sooner.
        self._w = SummaryWriter(str(out / "tb"), purge_step=step + 1 if step else None,
                                flush_secs=30)

    def scalars(self, prefix: str, values: dict, step: int) -> None:
        for k, v in values.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step":
                self._w.add_scalar(f"{prefix}/{k}", v, step)

    def picture(self, rgb: np.ndarray, step: int) -> None:
        self._w.add_image("val/pictures", rgb, step, dataformats="HWC")

    def close(self) -> None:
        self._w.close()

