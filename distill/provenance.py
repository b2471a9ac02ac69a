"""What a training run records of the software and settings that made it, and how another
run's differ: a colleague's numbers are reproduced bit for bit only with the same code, library
versions, torch thread count and device (float sums are added in another order otherwise), so
a resume or a rerun of a run's config.yaml says where any of them differ."""
from __future__ import annotations

import platform
from pathlib import Path
from typing import Optional

# The libraries whose versions change training's numbers: torch computes, OpenCV decodes and
# resizes the crops, numpy and scikit-image score the validation images.
LIBS = ("torch", "numpy", "opencv", "scikit_image")
_NAMES = {"sharpen": "sharpen", "code": "commit", "python": "python", "torch": "torch",
          "numpy": "numpy", "opencv": "opencv", "scikit_image": "scikit-image",
          "onnxruntime": "onnxruntime", "ai_edge_litert": "ai-edge-litert",
          "nvidia_modelopt": "nvidia-modelopt",
          "torch_threads": "torch threads", "device": "device"}


def run_environment(device=None, libs: tuple[str, ...] = LIBS) -> dict:
    """This process's: project version and git commit (with `+changes` where tracked files had
    uncommitted changes), Python's and `libs`' versions (runtime.host.LIBRARIES' names), torch's
    thread count and the device (`cpu` or the GPU's name). Without a `device` on an install
    without torch (exported models scored on a device), the torch thread count and device are
    left out."""
    from runtime.host import code_info, library_versions
    code = code_info()
    env: dict = {"sharpen": code.get("version")}
    if code.get("commit"):
        env["code"] = code["commit"][:12] + ("+changes" if code.get("dirty") else "")
    env["python"] = platform.python_version()
    env.update(library_versions(libs))
    try:
        import torch
    except ModuleNotFoundError:
        if device is not None:
            raise
        return env
    env["torch_threads"] = torch.get_num_threads()
    kind = "cpu" if device is None else torch.device(device).type
    # A GPU by its name (another card sums in another order); mps as itself, not as cpu.
    env["device"] = torch.cuda.get_device_name(device) if kind == "cuda" else kind
    return env


def describe(env: dict) -> str:
    """One line for train.log: `sharpen 0.1.0 (commit 26c08ca1b2c3), python 3.11.9, torch
    2.5.1, ..., 2 torch threads, cpu`."""
    parts = []
    for k, v in env.items():
        if k == "code":
            continue
        if k == "sharpen":
            parts.append(f"sharpen {_shown(k, v)}"
                         + (f" (commit {env['code']})" if env.get("code") else ""))
        elif k == "torch_threads":
            parts.append(f"{v} torch thread{'' if v == 1 else 's'}")
        elif k == "device":
            parts.append(str(v))
        else:
            parts.append(f"{_NAMES.get(k, k)} {_shown(k, v)}")
    return ", ".join(parts)


def environment_changes(then: Optional[dict], now: dict) -> list[str]:
    """Where `now` differs from `then`, recorded by a run, as `torch 2.4.0 -> 2.5.1`; empty
    where they agree or `then` records nothing (a checkpoint of an older version)."""
    if not isinstance(then, dict):
        return []
    said = []
    for k, name in _NAMES.items():
        if k in then and then[k] != now.get(k):
            said.append(f"{name} {_shown(k, then[k])} -> {_shown(k, now.get(k))}")
    return said


def _shown(key: str, value) -> str:
    """A recorded value in words: None is a library not installed, or code outside a git
    checkout, or without git (a copied or pip-installed project), not the word None."""
    if value is not None:
        return str(value)
    return {"code": "unknown (no git commit here)", "sharpen": "unknown"}.get(key,
                                                                             "not installed")


def same_code(env: dict) -> str:
    """How sure `same code` is, in words, for a run whose recorded `env` matches this one's: a
    commit with `+changes` on both sides may carry different changes; no commit, the version
    alone."""
    code = env.get("code")
    if not code:
        return f"the same version (sharpen {_shown('sharpen', env.get('sharpen'))}; no commit " \
               "recorded)"
    if code.endswith("+changes"):
        return (f"the same commit ({code[:-len('+changes')]}), both with uncommitted changes "
                "that are not compared")
    return "same code"


def artifact_suffixes() -> tuple[str, ...]:
    """The file endings of exported artifacts (.onnx, .tflite, .engine), from runtime.formats."""
    from runtime.formats import FORMATS
    return tuple(sorted({"." + f.suffix.rsplit(".", 1)[-1] for f in FORMATS.values()}))


def artifact_provenance(path) -> list[str]:
    """How the artifact at `path` was made, in lines, from the export report beside it whose
    row records its sha256 (`sharpen models ARTIFACT`): the format and verdict, the weights,
    the software, the calibration set and seed. A row that report kept or carried from an
    earlier export (`up_to_date`, `earlier_export`) is described by what that export recorded
    (`extra.built_by`), not by this report's software and calibration. A file no report
    beside it records (one from a device, an engine trtexec built, or one rebuilt since) is
    said so, with the sha256 to look for and what its sidecar records. (In distill, not
    optimize: `sharpen models` is distill's command, and runtime reads the reports too.)"""
    p = Path(path)
    return _provenance(p) + _io_lines(p)


def cannot_be_opened(lines: list[str]) -> bool:
    """Whether artifact_provenance's `lines` say an installed engine refused the file (not a
    model, or cut short): `sharpen models` then fails, as a deploy script needs."""
    from runtime.backends.litert_backend import LITERT_MISSING
    return any(line.startswith("  input and output: ") and " cannot open it (" in line
               and LITERT_MISSING not in line for line in lines)


def _io_lines(p: Path) -> list[str]:
    """A .tflite's input and output as an app sets them (signature, int8 scale and zero point),
    which the export report does not give; for an .onnx, only why ONNX Runtime cannot open
    it; nothing for other formats."""
    if p.suffix.lower() == ".onnx":
        from runtime.backends.foreign import onnx_open_error
        return [why] if (why := onnx_open_error(p)) else []
    if p.suffix.lower() != ".tflite":
        return []
    from runtime.backends.base import ModelError
    from runtime.backends.litert_backend import choose_record, tflite_io_lines
    try:
        record = choose_record(p).record
    except ModelError:   # an unreadable sidecar: said by the lines above
        record = {}
    return tflite_io_lines(p, record)


def _provenance(p: Path) -> list[str]:
    from runtime.backends.provenance import read_report
    from runtime.resume import file_sha256

    sha = file_sha256(p)
    found, unhashed = [], []
    for report_path in sorted(p.parent.glob("export_report*.json")):
        report = read_report(report_path) or {}
        rows = [r for r in report.get("results") or [] if isinstance(r, dict)]
        extras = [r.get("extra") if isinstance(r.get("extra"), dict) else {} for r in rows]
        found += [(report_path, report, r, e) for r, e in zip(rows, extras)
                  if e.get("file_sha256") == sha]
        if rows and not any("file_sha256" in e for e in extras):
            unhashed.append(report_path.name)
    head = f"{p} (sha256 {sha[:16]})"
    if not found and p.suffix.lower() == ".onnx":
        from runtime.backends.foreign import onnx_io_lines
        if (foreign := onnx_io_lines(p)) is not None:   # no export anywhere made it
            return [head + ":", *foreign]
    if not found:
        lines = [f"{head}: no export report in {p.parent} records this file (its sha256 is no "
                 "row's extra.file_sha256): it is not a file an export there built and checked; "
                 "look for its sha256 in the export_report.json of the folder it was exported to"]
        if unhashed:
            lines.append(f"  {', '.join(unhashed)} record{'s' if len(unhashed) == 1 else ''} "
                         "no artifact's sha256 (written by an older version): export again "
                         "to trace its files")
        lines += _sidecar_lines(p)
        return lines
    report_path, report, r, extra = found[0]
    settings = report.get("settings") if isinstance(report.get("settings"), dict) else {}
    carried = bool(extra.get("earlier_export"))
    lines = [f"{head}: {r.get('format')} of {report_path}, {str(r.get('status')).upper()}"
             + (" (its export was interrupted)" if settings.get("interrupted") else "")
             + (" (carried from an earlier export of the same weights)" if carried else
                " (kept from an earlier export: up to date)" if extra.get("up_to_date") else "")]
    from .metrics import older_parity_ssim
    if older_parity_ssim(r, report.get("ssim_formula")):
        # Its verdict (INT8: SSIM >= 0.98) may have been taken with the older 7x7 window.
        lines.append(f"  parity SSIM {r['ssim']:.4f}, its formula not recorded (an older "
                     "version's 7x7 window, which reads higher): `sharpen export --formats "
                     f"{r.get('format')}` into this folder judges it again")
    sha_w = report.get("weights_sha256") or settings.get("weights_sha256")
    lines.append(f"  weights: {report.get('weights_path') or report.get('weights')}"
                 + (f" (sha256 {sha_w[:16]})" if sha_w else ""))
    from .lineage import describe_lineage
    lines += [f"  {line}" for line in describe_lineage(report.get("lineage"))]
    # Kept or carried, this report's run did not build it: what the export that did recorded.
    earlier = carried or bool(extra.get("up_to_date")) or isinstance(extra.get("built_by"), dict)
    if earlier:
        built_by = extra.get("built_by") if isinstance(extra.get("built_by"), dict) else {}
        env, cal = built_by.get("environment"), built_by.get("calibration")
    else:
        env, cal = report.get("environment"), settings.get("calibration")
    older = "built by an earlier export that did not record it" if earlier else \
        "exported by an older version"
    lines.append(f"  built with: {describe(env)}" if isinstance(env, dict) and env else
                 f"  built with: not recorded ({older})")
    if str(r.get("precision")).lower() == "int8":
        if isinstance(cal, dict):
            src = cal.get("source")
            src = ", ".join(map(str, src)) if isinstance(src, list) else src
            lines.append(f"  calibration: {cal.get('crops')} crops of {cal.get('crop_size')} px, "
                         f"seed {cal.get('seed')}, from {src} ({cal.get('images')} images, "
                         f"files digest {cal.get('files_digest')})")
        elif earlier:
            lines.append(f"  calibration: not recorded ({older})")
        else:
            lines.append("  calibration: images " + ", ".join(settings.get("calib_images") or [])
                         + "; seed not recorded (exported by an older version: 0)")
    return lines


def _sidecar_lines(p) -> list[str]:
    """What the export's record of an artifact that no report records says of where it came
    from: the sidecar beside it (an engine trtexec built on the device from the export's ONNX
    model has the sidecar the export wrote for it), else the record inside the file (ONNX
    metadata, the .tflite's metadata entry), which a file copied alone keeps; for a .tflite
    whose sidecar describes another model, the record inside, as `sharpen run` takes it."""
    from runtime.backends.base import PARITY_KEY, ModelError, read_sidecar, sidecar_path
    from runtime.backends.litert_backend import ChosenRecord, choose_record

    p = Path(p)
    try:
        if p.suffix.lower() == ".tflite":
            chosen = choose_record(p)
        else:
            side = read_sidecar(p)
            chosen = ChosenRecord(side or _onnx_record(p), not side, [])
    except ModelError as exc:
        return [f"  {exc}"]
    side, lines = chosen.record, []
    where = "the record inside the file gives" if chosen.inside else "its sidecar records"
    if differ := chosen.differ:
        lines.append(f"  {sidecar_path(p).name} describes another model than the record "
                     f"inside the file ({', '.join(differ)} "
                     f"differ{'s' if len(differ) == 1 else ''}), which `sharpen run` uses: "
                     "remove or replace that sidecar")
    said = {k: side[k] for k in ("student", "precision", "source", "source_sha256")
            if side.get(k)}
    if said:
        lines.append(f"  {where}: " + ", ".join(
            f"{'weights sha256' if k == 'source_sha256' else k} "
            f"{str(v)[:16] if k == 'source_sha256' else v}" for k, v in said.items()))
    if side.get(PARITY_KEY):   # what `sharpen run` refuses it for, marker or not
        lines.append(f"  it failed its parity gate at export ({side[PARITY_KEY]}): `sharpen run` "
                     "refuses it without --force; do not ship it")
    return lines


def _onnx_record(p: Path) -> dict:
    """The export's record inside a .onnx (metadata_props); {} when none is read. Read with
    the onnx package where installed, else with ONNX Runtime (a device has that alone)."""
    if p.suffix.lower() != ".onnx":
        return {}
    try:
        import onnx
    except Exception:   # not installed, or broken (an older onnx's protobuf: a TypeError)
        return _onnxruntime_record(p)
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception:   # not a model it reads: nothing to say of its record
        return {}
    return {m.key: m.value for m in model.metadata_props}


def _onnxruntime_record(p: Path) -> dict:
    from runtime.backends.base import ModelError
    try:
        from runtime.backends.onnxruntime_backend import onnx_metadata
        return onnx_metadata(p)
    except (ImportError, ModelError):   # no onnxruntime, or a file it cannot load
        return {}
