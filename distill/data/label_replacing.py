"""What a labels run says, before the teacher runs, of the labels in its cache that another
teacher (or this one at another tiling or precision) made, which it replaces or keeps."""
from __future__ import annotations

from pathlib import Path

from runtime.console import count

from .label_cache import describe_maker, label_maker, made_on
from .label_maker import LabelMaker
from .sources import Sample


def replacing(out_dir: Path, known: dict[str, dict], samples: list[Sample],
              maker: LabelMaker) -> list[str]:
    """What to say of the labels in `out_dir` (entries `known`) of `samples` that `maker` did
    not make: labels made with the official weights were replaced by the shipped teacher's,
    hours of work, when the command was run again without --teacher-weights, said as "5 done"
    at the end."""
    mine = maker.key()
    teachers: dict[tuple, int] = {}
    tilings: dict[tuple, int] = {}
    precisions: dict[str, int] = {}   # "cuda bf16" -> labels this teacher made so
    files = {mine: maker.weights_path}
    for s in samples:
        e = known.get(s.name)
        if not e or e.get("status") != "ok" or not (out_dir / e["label"]).is_file():
            continue
        theirs = label_maker(e)
        files.setdefault(theirs, e.get("teacher_weights"))
        if theirs[:2] != mine[:2]:
            teachers[theirs] = teachers.get(theirs, 0) + 1
        elif theirs[2:] != mine[2:]:
            tilings[theirs] = tilings.get(theirs, 0) + 1
        elif maker.other_precision(e):
            precisions[made_on(e)] = precisions.get(made_on(e), 0) + 1
    this = (f"{out_dir}: this run's teacher ({describe_maker(mine, file=files[mine])})"
            " replaces")
    said = []
    if teachers:
        shown = ", ".join(describe_maker(k, file=files[k]) for k in teachers)
        said.append(f"{this} {count(sum(teachers.values()), 'label')} that another teacher "
                    f"made here ({shown}), one by one as it reaches them; to keep them "
                    "(a --teacher-weights left out?), stop it now (Ctrl-C)")
    if tilings:
        shown = "; ".join(f"tile {k[2]}, overlap {k[3]}" for k in tilings)
        said.append(f"{this} {count(sum(tilings.values()), 'label')} that it made here at "
                    f"another tiling ({shown}), one by one as it reaches them")
    if precisions:
        shown = ", ".join(f"{n} on {m}" for m, n in precisions.items())
        said.append(f"{out_dir}: keeps {count(sum(precisions.values()), 'label')} "
                    f"made in another precision ({shown}; this run computes in "
                    f"{maker.precision} on {maker.device}); to remake them, label into a "
                    "new --out")
    return said
