"""Checkpoints: save atomically, load safely, rebuild the model they describe.

The project's checkpoints are plain dicts (loadable with `torch.load(weights_only=True)`):

    {"format": "image-sharpening-kd/1", "kind": "teacher" | "student",
     "arch": "restormer" | <student name>, "arch_args": {...},
     "model": state_dict, "ema": state_dict | None,
     "step": int, "config": {...}, "metrics": {...},
     # resume state, only in training checkpoints:
     "optimizer": ..., "scheduler": ..., "rng": {...},
     "qat_ranges": {...}}   # qat=true runs' observed activation ranges

Teacher loading also accepts the official Restormer file ({"params": state_dict}) and a bare
state dict. A checkpoint is untrusted input: never unpickle arbitrary objects.
"""
from __future__ import annotations

import keyword
import os
import re
import warnings
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn as nn

from runtime.atomic import atomic_file
from runtime.console import count, first_line

FORMAT = "image-sharpening-kd/1"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, with a message saying why."""


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save to a temp file in the same folder, then rename: an interrupted save never
    leaves a truncated checkpoint behind. Saved through a file object: torch.save names the
    zip's folder after a path it is given, which here was the random temp name, so the same
    weights saved twice hashed differently (exports and the bench key on the file's sha256).
    Durable as runtime.atomic's other writes are (atomic_file): the file is synced before the
    rename, and the folder after it, or a power cut could keep the rename but not the data (a
    last.pt of zeros, or the earlier one gone)."""
    with atomic_file(path) as f:
        watched = _WriteErrors(f)
        try:
            torch.save(obj, watched)
        except RuntimeError as e:
            # torch's zip writer turns a failed write (a full disk, a quota) into
            # "unexpected pos 64 vs 0": the OSError under it names the cause, and atomic_file
            # the file
            if watched.error is None:
                raise
            raise watched.error from e
    return Path(path)


class _WriteErrors:
    """A file object that keeps the OSError its write raised, for atomic_save to raise where
    torch.save raised its own RuntimeError instead."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name: str):
        return getattr(self.f, name)


def folder_problem(path: str | os.PathLike) -> str:
    """Why a folder is no checkpoint, naming the checkpoints in it: a run's out= folder is the
    natural thing to pass (`--weights runs/mine`, `resume=runs/a`), and the message named only
    the folder."""
    path = Path(path)
    found = [str(path / n) for n in ("best.pt", "last.pt") if (path / n).is_file()]
    if not found:
        found = [str(p) for p in sorted(path.glob("*.pt"))[:3]]
    hint = f" (give {' or '.join(found)})" if found else ""
    return f"checkpoint path is a folder, not a file: {path}{hint}"


def run_stem(path: str | os.PathLike) -> str:
    """A checkpoint's name: its stem, with its run folder in front for the names every training
    run uses (runs/a/best.pt -> a-best, a snapshot runs/a/step500.pt -> a-step500), so that two
    runs' best.pt keep apart in export's file names and in evaluate's and bench's rows. The
    folder is the absolute path's (links kept): `best.pt` given from inside runs/a is a-best
    too."""
    p = Path(path)
    folder = Path(os.path.abspath(p)).parent.name
    if re.fullmatch(r"best|last|step[0-9]+", p.stem) and folder:
        return f"{folder}-{p.stem}"
    return p.stem


def read_checkpoint(path: str | os.PathLike, mmap: bool = False) -> dict:
    """Load a checkpoint file with weights_only=True and clear errors for missing/bad files.
    `mmap`: the tensors mapped from the file, not read, for a caller wanting only its step,
    config or metrics (a teacher's last.pt is hundreds of MB); a pickle of older torch
    versions cannot be mapped and is read whole."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(folder_problem(path))
    if not path.is_file():   # a FIFO: torch.load would wait for a writer that may never come
        from runtime.imageio import why_not_a_file
        raise CheckpointError(f"{path}: {why_not_a_file(path)}; give a checkpoint file")
    if path.suffix.lower() in (".onnx", ".tflite", ".engine", ".plan"):
        raise CheckpointError(f"{path} is an exported model, not a PyTorch checkpoint: run it "
                              f"with `sharpen run --model {path}`, or score it with `sharpen "
                              f"evaluate --model {path}`")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
    if not head:
        raise CheckpointError(f"{path} is an empty file (0 bytes), not a PyTorch checkpoint")
    # Before the pickle's test: a safetensors header's length (padded to 8 bytes) starts with
    # 0x80 in one file of 32, which torch.load then read by its name, or failed on.
    if _is_safetensors(path):
        raise CheckpointError(
            f"{path} is a safetensors file, not a torch.save checkpoint, which is what "
            "this project reads: save its tensors as one (with the safetensors package: "
            "torch.save(safetensors.torch.load_file(PATH), 'weights.pth'))")
    # torch.save writes a zip archive; older files are a pickle (first byte 0x80). Anything
    # else would only get the unpickler's cryptic complaint about its first byte.
    if head[:2] != b"PK" and head[:1] != b"\x80":
        if _is_web_page(path):
            # The official Restormer weights are on Google Drive, which answers a plain
            # wget/curl of a large file with its virus-scan warning page.
            raise CheckpointError(f"{path} is an HTML page, not a PyTorch checkpoint: a download "
                                  "that saved the web page, not the file itself (Google Drive "
                                  "answers a plain wget or curl of a large file with one); "
                                  "download it again from a browser or with gdown")
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (neither a torch.save zip "
                              "archive nor a pickle; truncated or another kind of file?)")
    try:
        with warnings.catch_warnings():   # e.g. "Detected pickle protocol 4", ahead of our error
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True,
                             mmap=mmap and head[:2] == b"PK")
    except Exception as e:  # torch raises many types for garbage input
        first = first_line(e, None)
        held = _zip_not_torch(path) if head[:2] == b"PK" else None
        if held is not None:
            # A Google Drive folder downloads as a zip; torch's "Expected hasRecord("version")"
            # did not say so.
            shown = ", ".join(held[:5]) + (f" ... and {len(held) - 5} more" if len(held) > 5
                                           else "")
            raise CheckpointError(f"{path} is a zip archive, not a torch.save checkpoint "
                                  f"(it holds {shown or 'nothing'}): unpack it and give the "
                                  ".pth inside") from None
        if head[:2] == b"PK" and (isinstance(e, OSError) or "zip" in str(e).lower()
                                  or "central directory" in str(e)):
            first = ("a torch.save archive that does not read to its end: truncated or damaged, "
                     "e.g. an interrupted copy or download")
        elif "weights_only" in str(e) or "Unsupported global" in str(e):
            # Never pass on PyTorch's hint to retry with weights_only=False: that would
            # execute whatever the file contains.
            first = ("it holds Python objects besides tensors and plain containers, which this "
                     "project refuses to unpickle; checkpoints are untrusted input")
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({first})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict")
    return obj


def _zip_not_torch(path: Path) -> Optional[list[str]]:
    """The files of a zip archive that torch.save did not write (it has no ARCHIVE/data.pkl),
    or None: not a whole zip (a truncated checkpoint), or torch's own."""
    import zipfile
    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if not n.endswith("/")]
    except (OSError, zipfile.BadZipFile, ValueError):
        return None
    if any(n.count("/") == 1 and n.endswith("/data.pkl") for n in names):
        return None
    return names


def _is_safetensors(path: Path) -> bool:
    """Whether the file starts as a safetensors file does: its JSON header's length (8 bytes,
    little-endian, not past the file's end), then the header's opening brace."""
    try:
        with open(path, "rb") as f:
            start = f.read(9)
        size = path.stat().st_size
    except OSError:
        return False
    return (len(start) == 9 and start[8:] == b"{"
            and int.from_bytes(start[:8], "little") <= size - 8)


def _is_web_page(path: Path) -> bool:
    """Whether the file starts as an HTML page does (after blanks, any case)."""
    try:
        with open(path, "rb") as f:
            start = f.read(512).lstrip().lower()
    except OSError:
        return False
    return start.startswith((b"<!doctype html", b"<html"))


def extract_state_dict(obj: dict, path: str | os.PathLike = "<checkpoint>",
                       prefer_ema: bool = True) -> dict[str, torch.Tensor]:
    """The model weights from any accepted layout (project, official `params`, bare)."""
    if obj.get("format") == FORMAT:
        sd = obj.get("ema") if prefer_ema and obj.get("ema") else obj.get("model")
    elif "params" in obj and isinstance(obj["params"], dict):
        sd = obj["params"]
    elif "params_ema" in obj and isinstance(obj["params_ema"], dict):
        sd = obj["params_ema"]
    elif "state_dict" in obj and isinstance(obj["state_dict"], dict):
        sd = obj["state_dict"]
    else:
        sd = obj
    if not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path} has no state dict of tensors (keys: {list(obj)[:8]})")
    # DataParallel / DDP / torch.compile prefixes.
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def load_weights(model: nn.Module, sd: dict[str, torch.Tensor],
                 source: str | os.PathLike = "<checkpoint>") -> None:
    """Strict load with a readable report of what does not match."""
    check_fits(model, sd, source)
    model.load_state_dict(sd, strict=True)


def check_fits(model: nn.Module, sd: dict[str, torch.Tensor],
               source: str | os.PathLike = "<checkpoint>") -> None:
    """CheckpointError saying what of `sd` does not match `model`'s keys and shapes (a model
    on the meta device will do: only the shapes are read)."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    mismatched = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        lines = [f"{source} does not match the {type(model).__name__} architecture:"]
        for noun, plural, items in (("missing key", None, missing),
                                    ("unexpected key", None, unexpected),
                                    ("shape mismatch", "shape mismatches", mismatched)):
            if items:
                more = f" ... and {len(items) - 5} more" if len(items) > 5 else ""
                lines.append(f"  {count(len(items), noun, plural)}: {', '.join(items[:5])}{more}")
        lines.append("  (a checkpoint of another model or size: a teacher's Restormer config, "
                     "--teacher-config; a student's model.arch/model.args)")
        raise CheckpointError("\n".join(lines))


def make_checkpoint(model: nn.Module, *, kind: str, arch: str, arch_args: dict,
                    ema: nn.Module | None = None, step: int = 0, config: dict | None = None,
                    metrics: dict | None = None, **extra) -> dict:
    from .students import student_module
    if kind == "student" and (module := student_module(arch)):
        # What a process without it is told to import (see `load_student`).
        extra = {"arch_module": module, **extra}
    return {"format": FORMAT, "kind": kind, "arch": arch, "arch_args": dict(arch_args),
            "model": model.state_dict(), "ema": ema.state_dict() if ema is not None else None,
            "step": int(step), "config": config or {}, "metrics": metrics or {}, **extra}


# A dotted module name and nothing else: the advice below is pasted into a shell, and what a
# checkpoint (untrusted input) recorded must not carry a command there.
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def registering_module_hint(ckpt: dict) -> str | None:
    """What to set for the student a checkpoint holds, by the module it recorded (None: none,
    or a value no module has, which is not repeated into advice pasted into a shell)."""
    from .students import STUDENTS_ENV

    module = ckpt.get("arch_module")
    # `__main__` is the program running, a keyword no module's name: neither imports a student
    if not (isinstance(module, str) and _MODULE.fullmatch(module)) or any(
            part == "__main__" or keyword.iskeyword(part) for part in module.split(".")):
        return None
    return (f"module {module} registered it when this checkpoint was saved: set "
            f"{STUDENTS_ENV}={module}, with its folder on PYTHONPATH")


def load_student(path: str | os.PathLike, prefer_ema: bool = True) -> tuple[nn.Module, dict]:
    """Rebuild a student from a project checkpoint, or a shipped student by name (`fast` ->
    models/student-fast.pt, as `--weights` takes it; see `distill.teacher.resolve_weights`);
    returns (model in eval mode on the CPU, checkpoint dict). The weights are its EMA's unless
    `prefer_ema` is False. CheckpointError (a ValueError) says why a file cannot be used."""
    from runtime.warn import warn

    from .students import OWN_STUDENT_HINT, list_students, student_from_saved_args, student_module
    from .teacher import resolve_weights

    path = resolve_weights(path, allow_teacher=False)
    ckpt = read_checkpoint(path)
    if ckpt.get("format") != FORMAT:
        from .teacher import named_configs_fitting, other_restormer_task
        try:
            sd = extract_state_dict(ckpt, path)
        except CheckpointError:
            sd = {}
        fits = named_configs_fitting(sd) if sd else []
        if fits:   # the official motion_deblurring.pth: "kind=None" did not say what it is
            raise CheckpointError(
                f"{path} holds Restormer teacher weights (config {fits[0]}), not a student: "
                "the teacher is not exported, it runs in PyTorch (`sharpen teacher`, `labels`, "
                "`evaluate`); export a student that `sharpen distill` trains on its labels")
        task = other_restormer_task(sd) if sd else None
        if task:   # its denoising or dual-pixel file, as the teacher's loaders name them
            raise CheckpointError(f"{path} is not a student: {task}")
    if ckpt.get("format") != FORMAT or ckpt.get("kind") != "student":
        raise CheckpointError(f"{path} is not a student checkpoint of this project "
                              f"(kind={ckpt.get('kind')!r}); students are written by "
                              "`sharpen distill`")
    if not isinstance(ckpt.get("arch"), str):
        raise CheckpointError(f"{path}: a student checkpoint that names no architecture ('arch' "
                              f"is {ckpt.get('arch')!r}); damaged or written by hand? Students "
                              "are written by `sharpen distill`")
    if ckpt["arch"] not in list_students():
        how = registering_module_hint(ckpt) or OWN_STUDENT_HINT
        raise CheckpointError(f"{path}: student {ckpt['arch']!r} is not registered in this "
                              f"process; {how} (registered now: {', '.join(list_students())})")
    saved, now = ckpt.get("arch_module"), student_module(ckpt["arch"])
    if isinstance(saved, str) and _MODULE.fullmatch(saved) and saved != now:
        # Same name, another definition: the weights may still fit it (same layer names and
        # shapes) and give other outputs, with nothing else to tell.
        warn(f"{path}: student {ckpt['arch']!r} was registered by {saved} when it was saved; "
             f"{now or 'the project (built in)'} registers it now, and its definition is the "
             "one these weights load into")
    sd = extract_state_dict(ckpt, path, prefer_ema)
    args = ckpt.get("arch_args", {})
    try:
        # Laid out on the meta device first, which takes no memory: arguments within their
        # ranges (a stranger's width 4096, 64 blocks) built hundreds of GB of layers before
        # the weights were found not to fit them.
        with torch.device("meta"):
            probe = student_from_saved_args(ckpt["arch"], args, layout_only=True)
    except Exception:   # noqa: BLE001 - a student of one's own may read tensor values when
        probe = None    # built (`.numpy()` is a TypeError on meta): built as before below
    # The hint of a mismatch is of a config's model.args; these are the checkpoint's own.
    own = (f"\n  (here its own architecture arguments, {args}: edited, or saved by another "
           f"definition of {ckpt['arch']!r}?)")
    try:
        if probe is not None:
            check_fits(probe, sd, path)
    except CheckpointError as e:
        raise CheckpointError(f"{e}{own}") from None
    try:
        model = student_from_saved_args(ckpt["arch"], args)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its architecture arguments {args} do not build a "
                              f"{ckpt['arch']!r} student ({e})") from None
    try:
        load_weights(model, sd, path)
    except CheckpointError as e:
        raise CheckpointError(f"{e}{own}") from None
    return model.eval(), ckpt


def slim(ck: dict, source: str | os.PathLike = "<checkpoint>") -> dict:
    """A checkpoint dict without its resume state: the EMA weights as the model, no optimizer or
    RNG state (half the size, nothing needed for inference lost). What `slim_checkpoint`
    writes and a run's `stepN.pt` snapshots hold."""
    sd = extract_state_dict(ck, source, prefer_ema=True)
    keep = {k: v for k, v in ck.items()
            if k not in ("optimizer", "scheduler", "rng", "best", "model", "ema",
                         "qat_ranges")}
    return {**keep, "model": sd, "ema": None}


def slim_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """A shippable copy of a training checkpoint (see `slim`). RunLocked (a ValueError) when
    `dst`'s folder is a live run's out= folder."""
    from .run_lock import writing_into

    ck = read_checkpoint(src)
    if ck.get("format") != FORMAT:
        raise CheckpointError(f"{src} is not a checkpoint of this project")
    slimmed = slim(ck, src)
    with writing_into(Path(dst).parent, str(dst)):
        return atomic_save(slimmed, dst)
