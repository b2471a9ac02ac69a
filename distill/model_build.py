"""The model a training config builds: the Restormer teacher or a registered student, checked
against the crop size before the first step."""
from __future__ import annotations

import torch
import torch.nn as nn

from .config import ConfigValueError, TrainConfig


def build_model(cfg: TrainConfig) -> tuple[nn.Module, str, dict]:
    """(model, arch name, arch args as stored in checkpoints)."""
    if cfg.model.arch == "restormer":
        try:
            model = _build_restormer(dict(cfg.model.args))
        except ValueError as e:
            raise ConfigValueError("model.args", f"model.args: {e}") from None
        arch, arch_args = "restormer", model.config.to_dict()
    else:
        from .students import create_student, list_students
        if cfg.model.arch not in list_students():
            raise ConfigValueError("model.arch", _unknown_arch(cfg))
        try:
            model = create_student(cfg.model.arch, **cfg.model.args)
        except ValueError as e:   # an argument the student does not take, or its value
            raise ConfigValueError("model.args", f"model.args: {e}") from None
        arch, arch_args = cfg.model.arch, dict(model.arch_args)
    m = int(getattr(model, "multiple", 1))
    if cfg.data.crop % m:
        # Otherwise a shape error deep in the model at the first step.
        raise ConfigValueError("data.crop", f"data.crop={cfg.data.crop} is not a multiple of "
                               f"{m}, which {arch} needs (e.g. data.crop="
                               f"{max(m, cfg.data.crop // m * m)})")
    return model, arch, arch_args


def _unknown_arch(cfg: TrainConfig) -> str:
    """model.arch naming no model: the key, the nearest name and what the command takes
    (students.py's "unknown student 'fastt'; choose from [...]" named neither the key nor
    restormer, which `sharpen train` takes too)."""
    import difflib

    from .students import OWN_STUDENT_HINT, list_students
    names = list_students()
    teacher = cfg.task != "student"
    close = difflib.get_close_matches(cfg.model.arch, [*names, "restormer"] if teacher else names,
                                      n=1)
    guess = f"did you mean {close[0]}? " if close else ""
    command = "`sharpen train`" if teacher else "`sharpen distill`"
    return (f"model.arch={cfg.model.arch}: no such model; {guess}{command} takes a student "
            f"({', '.join(names)}; `sharpen models` lists them)"
            + (" or restormer" if teacher else "")
            + f"; {_recorded_module_hint(cfg) or OWN_STUDENT_HINT}")


def _recorded_module_hint(cfg: TrainConfig) -> str | None:
    """The module that registered model.arch, by the checkpoint the run resumes (or starts,
    init=) from: a resumed run in a fresh shell without SHARPEN_STUDENTS got the general hint.
    Named, never imported (the checkpoint is untrusted input)."""
    from pathlib import Path

    from .checkpoint import CheckpointError, read_checkpoint, registering_module_hint
    r = str(cfg.resume)
    paths = [Path(cfg.out) / "last.pt" if r == "auto" else Path(r)] if r != "never" else []
    for path in [*paths, *([Path(cfg.init)] if cfg.init else [])]:
        if not path.is_file():
            continue
        try:
            ck = read_checkpoint(path)
        except CheckpointError:
            continue   # what is wrong with it is said where the run reads it
        if ck.get("arch") == cfg.model.arch and (hint := registering_module_hint(ck)):
            return f"{path}: {hint}"
    return None


def _build_restormer(args: dict) -> nn.Module:
    """A named config (`config`, default small) with any of its fields overridden."""
    from dataclasses import fields, replace

    from .restormer import build_restormer, get_config
    base = get_config(args.pop("config", "small"))
    known = [f.name for f in fields(base)]
    unknown = sorted(set(args) - set(known))
    if unknown:
        raise ValueError(f"restormer has no argument {unknown[0]!r} (model.args takes config "
                         f"and {', '.join(known)})")
    for k in ("num_blocks", "heads"):
        if k in args:
            args[k] = tuple(args[k]) if isinstance(args[k], (list, tuple)) else args[k]
    try:
        model = build_restormer(replace(base, **args))
        with torch.no_grad():   # channel/head mismatches only show in a forward pass
            model(torch.zeros(1, model.config.inp_channels, 8, 8))
    except Exception as e:  # noqa: BLE001 - torch and einops raise many types
        why = " ".join(str(e).split()) or type(e).__name__
        raise ValueError(f"model.args {args} do not build a Restormer: {why}") from None
    return model


def arch_text(cfg: TrainConfig) -> str:
    return f"{cfg.model.arch} with model.args={cfg.model.args or {}}"
