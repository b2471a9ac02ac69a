"""Function-preserving growth of a trained `fast`-family student (Net2Net style).

A deeper or wider-kernel variant starts as exactly the trained model, so a short fine-tune only
has to learn what the extra capacity adds instead of starting from scratch:
- blocks the source lacks start as the identity (their last 1x1 projection is zero; the block is
  residual, so it passes its input through);
- depthwise kernels that grow (e.g. 5x5 -> 7x7) are zero-padded around the trained kernel;
- pyramid levels added below the 1/8 stage (`deep`) start with a zero output projection;
- a half-resolution detail stage (`detail`: its width) or an input path (`edge`, `edge_width`)
  added to a model without one starts with a zero output projection, its other layers
  randomly initialised so they train at once.
Width changes (`width`, or `detail` of a model that has one) are refused.

`blocks` may also shrink, for a faster layout: the first encoder blocks and the last decoder
blocks are kept (the outermost ones, next to the stem and the head: on the shipped `fast` the
choice that lost least before fine-tuning, see its card). That is not exact, so the result
needs a fine-tune; `grow_student` reports how far its output moved.
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from .checkpoint import CheckpointError, atomic_save, load_student, make_checkpoint
from .run_lock import writing_into
from .students import FastStudent, create_student

_GROWABLE = ("blocks", "low_blocks", "k", "low_k", "detail", "detail_blocks", "edge",
             "edge_width", "deep")


def grow_student(src: str | os.PathLike, dst: str | os.PathLike, **changes: int) -> dict:
    """Write a student checkpoint at `dst` that computes the same function as `src` with the
    architecture arguments in `changes` (larger `blocks`, `low_blocks`, `k`, `low_k`,
    `detail_blocks`; `detail` only from 0), or, for a smaller `blocks`, the nearest such model.
    Returns the new arch args, plus `max_change` (the largest output change on a random input)
    when `blocks` shrank. RunLocked (a ValueError) when `dst`'s folder is a live run's out=."""
    model, ckpt = load_student(src)
    if not isinstance(model, FastStudent):
        raise CheckpointError(f"{src}: only fast-family students can grow, not {ckpt['arch']!r}")
    old = dict(model.arch_args)
    signature = inspect.signature(FastStudent).parameters
    for key, value in changes.items():
        if key not in _GROWABLE:
            raise ValueError(f"cannot grow {key!r}: choose from {', '.join(_GROWABLE)}")
        now = old.get(key, signature[key].default)
        if key == "blocks" and value < 1:
            raise ValueError(f"blocks={value}: must be >= 1")
        if key in ("k", "low_k") and value % 2 == 0:
            raise ValueError(f"{key}={value}: a kernel size must be odd")
        if value < now and key != "blocks":
            raise ValueError(f"{key}={value}: the model has {key}={now}, and only `blocks` can "
                             f"shrink; give {key} >= {now}")
        if key == "detail_blocks" and not (changes.get("detail") or old.get("detail")):
            raise ValueError(f"detail_blocks={value}: the model has no detail stage; add one "
                             "with detail=N")
        if key in ("detail", "edge", "edge_width") and now and value != now:
            raise ValueError(f"{key}={value}: the model has {key}={now}; only a missing stage "
                             f"can be added")
    new = create_student(ckpt["arch"], **{**old, **changes})
    shrunk = len(new.enc) < len(model.enc)
    src_sd = _keep_outer_blocks(model.state_dict(), len(new.enc)) if shrunk else model.state_dict()
    sd = new.state_dict()
    for name, target in sd.items():
        if name in src_sd:
            w = src_sd[name]
            if w.shape != target.shape:  # depthwise kernel grew: pad around it
                p = (target.shape[-1] - w.shape[-1]) // 2
                w = F.pad(w, (p, p, p, p))
            sd[name] = w
        elif ".pw2." in name and not (name.startswith("detail_") and not model.detail) \
                and not name.startswith("deep."):
            sd[name] = torch.zeros_like(target)
    new.load_state_dict(sd)
    new.eval()
    x = torch.rand(1, 3, 2 * new.multiple, 3 * new.multiple,
                   generator=torch.Generator().manual_seed(0))   # the same max_change each run
    with torch.no_grad():
        err = (new(x) - model(x)).abs().max().item()
    if err > 1e-5 and not shrunk:
        raise RuntimeError(f"grown model differs from {src} by {err:.2e}; growth is not exact")
    with writing_into(Path(dst).parent, str(dst)):   # not into a live run's out= folder
        atomic_save(make_checkpoint(new, kind="student", arch=ckpt["arch"],
                                    arch_args=new.arch_args, grown_from=str(src)), dst)
    return {**new.arch_args, "max_change": round(err, 4)} if shrunk else dict(new.arch_args)


def _keep_outer_blocks(sd: dict, keep: int) -> dict:
    """The first `keep` encoder blocks and the last `keep` decoder blocks (renumbered from 0),
    the inner ones dropped."""
    have = 1 + max(int(name.split(".")[1]) for name in sd if name.startswith("enc."))
    out = {}
    for name, w in sd.items():
        part, _, rest = name.partition(".")
        if part in ("enc", "dec"):
            i, _, tail = rest.partition(".")
            j = int(i) if part == "enc" else int(i) - (have - keep)
            if not 0 <= j < keep:
                continue
            name = f"{part}.{j}.{tail}"
        out[name] = w
    return out
