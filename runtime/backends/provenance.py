"""Whether an exported artifact still belongs to its folder's latest export.

`sharpen export` records in every artifact (ONNX metadata, the sidecar of a .tflite or an
engine) the sha256 of the checkpoint it was built from, and in the folder's export report
(`export_report.json`, or `export_report.<stem>.json` kept beside another stem's export) the
checkpoint of the latest export of that file stem. An artifact whose hash differs was left by an
export of other weights that this one did not rebuild (`--formats onnx` after a full export):
loading it runs old weights beside new ones without a word. Only JSON is read here: the runtime
on a device has no exporter, and a model copied without its report is simply not checked.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

from ..formats import FORMATS

REPORT = "export_report.json"


def read_report(path: Path) -> Optional[dict]:
    """An export report (any JSON object) as a dict, or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def latest_export(path: Union[str, Path]) -> Optional[tuple[Path, dict]]:
    """The report in the artifact's folder of the latest export of its file stem, if any."""
    p = Path(path)
    # m_int8.onnx is m's onnx-int8 or m_int8's onnx: the report's stem decides.
    stems = {p.name[: -len(f.suffix)] for f in FORMATS.values()
             if p.name.endswith(f.suffix) and len(p.name) > len(f.suffix)}
    for name in [REPORT, *(f"export_report.{s}.json" for s in sorted(stems))]:
        report = read_report(p.parent / name)
        settings = (report or {}).get("settings") or {}
        if settings.get("stem") in stems and settings.get("weights_sha256"):
            return p.parent / name, report
    return None


def stale_reason(path: Union[str, Path], source_sha256: Optional[str]) -> Optional[str]:
    """Why the artifact at `path`, built from the checkpoint with `source_sha256` (None: not
    recorded), is not from the weights its folder's latest export of its stem used; None when
    it is, or when there is no such report to compare with."""
    p = Path(path)
    found = latest_export(p)
    if found is None:
        return None
    where, report = found
    current = report["settings"]["weights_sha256"]
    latest = (f"the latest export of {report['settings']['stem']} there ({where.name}) is "
              f"from {report.get('weights', 'other weights')} ({current[:12]})")
    if source_sha256:
        if source_sha256 == current:
            return None
        return f"{p} was exported from other weights ({source_sha256[:12]}); {latest}"
    # No record inside (exported before artifacts carried one): the report lists every file
    # of its weights, carried ones too. An engine is built later, from the printed trtexec
    # line, so its report cannot list it.
    if p.suffix.lower() in (".engine", ".plan"):
        return None
    listed = {Path(r["file"]).name for r in report.get("results") or []
              if isinstance(r, dict) and r.get("file")}
    if p.name in listed:
        return None
    return (f"{p} records no source weights and is not in {where.name}, where {latest}: it "
            "may be from other weights")


# JetPack installs trtexec with TensorRT but not on PATH: `trtexec: command not found` is a
# Jetson user's first reply to the printed line.
TRTEXEC_ON_JETSON = "on a Jetson, trtexec is /usr/src/tensorrt/bin/trtexec, which is not on PATH"


def pending_engine(path: Union[str, Path]) -> Optional[str]:
    """For an engine that is not there but whose sidecar `sharpen export` wrote where TensorRT
    was missing (the folder copied to the device, run before the printed trtexec line): how to
    build it, with the line from the folder's report where it lists one, else from the sidecar
    (a later export replaced that report); None otherwise."""
    p = Path(path)
    side = p.with_name(p.name + ".json")
    meta = read_report(side)
    if p.suffix.lower() not in (".engine", ".plan") or not meta \
            or not str(meta.get("built_by", "")).startswith("trtexec"):
        return None
    found = latest_export(p)
    line = next((r["extra"]["trtexec"] for r in (found[1] if found else {}).get("results") or []
                 if isinstance(r, dict) and isinstance(r.get("extra"), dict)
                 and r["extra"].get("trtexec_sidecar") == side.name
                 and r["extra"].get("trtexec")), None) or meta.get("trtexec")
    if not isinstance(line, str):   # a hand-edited sidecar
        line = None
    how = (f"run, in {p.parent}: {line}" if line else
           f"run, in {p.parent}, the trtexec line that `sharpen export` printed")
    return (f"not built yet: {side.name} is its sidecar, which `sharpen export` wrote for the "
            f"engine that its trtexec line builds on the device; {how} ({TRTEXEC_ON_JETSON})")
