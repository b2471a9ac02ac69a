"""`LabelMaker`: how a labels run makes its labels (the teacher, its weights and config, the
device and precision it computes in, the tiling), which each entry records, and the check of
whether an entry's label was made the same way, so that a later run skips it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .label_cache import label_maker, png_whole


@dataclass(frozen=True)
class LabelMaker:
    teacher_arch: Optional[dict]
    teacher_config: Optional[str]
    weights_id: str
    weights_path: Optional[str]
    # Recorded in each entry: a GPU's labels are computed in bf16/fp16, which evaluate,
    # reading them as the teacher's outputs, must say (label_cache.made_on).
    device: Optional[str]
    precision: Optional[str]
    tile: int
    overlap: int

    @classmethod
    def of(cls, teacher: Any, tile: int, overlap: int) -> "LabelMaker":
        """What `teacher` (distill.teacher.Teacher, or a stub with fewer attributes) records."""
        cfg = getattr(getattr(teacher, "model", None), "config", None)
        device = getattr(teacher, "device", None)
        return cls(teacher_arch=cfg.to_dict() if hasattr(cfg, "to_dict") else None,
                   teacher_config=getattr(teacher, "config_name", None),
                   weights_id=str(getattr(teacher, "weights_id", "unknown")),
                   weights_path=getattr(teacher, "weights_path", None),
                   device=getattr(device, "type", None) or (str(device) if device else None),
                   precision=getattr(teacher, "precision", None),
                   tile=int(tile), overlap=int(overlap))

    def entry_fields(self) -> dict[str, Any]:
        """The fields of an entry that say how its label was made."""
        return {"teacher_config": self.teacher_config, "teacher_arch": self.teacher_arch,
                "weights_hash": self.weights_id, "teacher_weights": self.weights_path,
                "teacher_device": self.device, "teacher_precision": self.precision,
                "tile": self.tile, "overlap": self.overlap}

    def key(self) -> tuple:
        """`label_cache.label_maker`'s key of the labels this run makes."""
        return label_maker({"weights_hash": self.weights_id, "teacher_arch": self.teacher_arch,
                            "tile": self.tile, "overlap": self.overlap})

    def made_alike(self, e: Optional[dict], root: Path) -> bool:
        """Whether entry `e` of the cache at `root` holds a label made as this run makes them
        (teacher, tiling, its files there), its input unchecked (hashing every input is a
        run's work)."""
        if not e or e.get("status") != "ok":
            return False
        if (e.get("weights_hash") != self.weights_id
                or e.get("teacher_arch") != self.teacher_arch
                or e.get("tile") != self.tile or e.get("overlap") != self.overlap):
            return False
        if not png_whole(root / e["label"]):
            return False
        if e.get("input_file") and not png_whole(root / e["input_file"]):
            return False
        return True

    def other_precision(self, e: dict) -> bool:
        """Whether entry `e`'s label was computed in another precision than this run's (cuda
        bf16 then, cpu fp32 now). Such labels are kept and said (`replacing`): bf16 and fp32
        outputs of one teacher differ far less than a student learns, and remaking a GPU's
        labels on a CPU takes hours. Neither the device alone nor a label from before entries
        recorded the precision is said."""
        theirs = e.get("teacher_precision")
        return bool(self.precision and theirs and theirs != self.precision)
