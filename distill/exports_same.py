"""`sharpen runs A B --same` on two export folders: whether two `sharpen export`s are the same
release (the same weights, settings, calibration and software; each artifact byte for byte,
else its output on the export's own parity images within --tolerance), as runs_same asks it of
two training runs, with its table, vocabulary and exit codes (0 the same, 1 they differ or
cannot be shown the same, 2 bad input). Build times and the folders' own paths are not
compared: two exports of one release never take the same seconds or live in one folder."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .runs_compare import _flatten
from .runs_same import (DIFFERS, NOTE, SAME, UNKNOWN, BadRun, Check, _shown, _within, report,
                        setting_rows, software_checks)

REPORT = "export_report.json"
# Settings that name where files are (two machines spell them differently; the digests
# compare the files) or steer the export without changing what it builds (the artifact rows
# say whether the thread count mattered).
WHERE = {"calibration.source", "calibration.folders", "parity_folders"}
STEERING = {"threads", "formats_requested"}
# The weights' sha256, which the settings repeat: the weights row compares it.
SKIPPED_SETTINGS = {"weights_sha256"}
# What the crops were taken from: beside the same crops (crops_digest), other files are
# another form of the same frames (a clip and its frames saved as images), not another release.
CALIBRATION_FILES = {"calibration.files", "calibration.files_digest", "calibration.images"}
# The settings of an INT8 format's calibration (recorded, defaults among them, where no format
# is calibrated: an FP32 export's --calib-count 64 and --seed 0 draw no crops).
CALIBRATION = {"calibration", "calib_size", "calib_images", "calib_count", "calib_seed"}


@dataclass
class Export:
    path: Path
    label: str
    report: dict


def is_export(path: Path) -> bool:
    """A folder `sharpen export` wrote (it holds export_report.json), or that report itself."""
    return (path / REPORT).is_file() or (path.name == REPORT and path.is_file())


def export_folders(paths: list[Path]) -> list[Path]:
    """Each path, or for a folder that is neither an export nor a run but holds exports
    (releases/, as runs/ stands for the runs in it), the exports in it."""
    from .runs_compare import _holds_run_files
    out = []
    for p in paths:
        inside = []
        with contextlib.suppress(OSError):
            if p.is_dir() and not is_export(p) and not _holds_run_files(p):
                inside = sorted(q for q in p.iterdir() if q.is_dir() and is_export(q))
        out += inside or [p]
    return out


def read_export(path: Path) -> Export:
    folder = path.parent if path.name == REPORT else path
    try:
        report = json.loads((folder / REPORT).read_text())
    except (OSError, ValueError) as e:
        raise BadRun(f"{folder / REPORT}: cannot be read ({e})") from None
    if not isinstance(report, dict) or not isinstance(report.get("results"), list):
        raise BadRun(f"{folder / REPORT}: not an export report (no results)")
    if not isinstance(report.get("settings") or {}, dict) \
            or not all(isinstance(r, dict) for r in report["results"]):
        raise BadRun(f"{folder / REPORT}: not an export report (its settings or results are "
                     "not tables)")
    return Export(folder, folder.name or str(folder), report)


def settings_checks(a: Export, b: Export) -> list[Check]:
    """The weights and student, then a row per setting that differs (calibration by the
    digests of its files and crops, not by where they were)."""
    ra, rb = a.report, b.report
    wa, wb = ra.get("weights_sha256"), rb.get("weights_sha256")
    rows = [Check("weights", f"sha256 {str(wa or '-')[:16]}", f"sha256 {str(wb or '-')[:16]}",
                  (SAME if wa == wb else DIFFERS) if wa and wb
                  else f"{UNKNOWN}: {_older(a, b, 'weights_sha256')} has no weights_sha256"),
            Check("student", _shown(ra.get("student")), _shown(rb.get("student")),
                  SAME if ra.get("student") == rb.get("student") else DIFFERS)]
    sa, sb = _flatten(ra.get("settings") or {}), _flatten(rb.get("settings") or {})
    crops = sa.get("calibration.crops_digest")
    skipped = set(SKIPPED_SETTINGS)
    if "calibration.seed" in sa and "calibration.seed" in sb:
        skipped.add("calib_seed")   # the seed's row once, the calibration's (an older: calib_seed)
    calib_rows = []
    uncalibrated = [e for e in (a, b) if _calibrated_nothing(e)]
    if len(uncalibrated) == 1:
        # An export of no INT8 format draws no crops: its calibration is no other setting,
        # and the artifact rows name the format only the other built.
        skipped |= {k for k in (*sa, *sb) if k.split(".")[0] in CALIBRATION}
        calib_rows.append(Check("calibration", _digests(sa), _digests(sb),
                                f"{NOTE} ({uncalibrated[0].label} built no calibrated "
                                "format: the artifacts say what differs)"))

    def why(k: str, va, vb) -> str:
        if k in STEERING:
            return f"{NOTE} (the artifacts below say whether it mattered)"
        if k in WHERE:
            what = "the parity images are compared by name" if k == "parity_folders" else \
                "the files are compared by their digest"
            return f"{NOTE} (a path: {what})"
        if len(uncalibrated) == 2 and k.split(".")[0] in CALIBRATION:
            # An FP32 export's --seed and --calib-count are recorded but steer nothing.
            return f"{NOTE} (neither export built a calibrated format: no crops were drawn)"
        if k in CALIBRATION_FILES and crops and crops == sb.get("calibration.crops_digest"):
            return f"{NOTE} (the same crops {crops}: other files, e.g. a clip and its frames)"
        if k == "parity" and _as_images(va) == _as_images(vb) \
                and sa.get("parity_images") == sb.get("parity_images"):
            # '3 frames held out of --calib' of a clip, '3 images' of its frames saved
            return f"{NOTE} (the same parity images by name, of a clip or its frames)"
        if any(k not in sx and _older_version(x) and _missing(x, k)
               for x, sx in ((a, sa), (b, sb))):
            # Recorded from a later version on (the calibration, 2026-12): not a change.
            return f"{UNKNOWN}: not in an older version's {REPORT}"
        return DIFFERS

    differ = calib_rows + setting_rows(sa, sb, skipped, why)
    if not any(c.verdict.startswith((DIFFERS, UNKNOWN)) for c in differ) \
            and len(uncalibrated) != 1:
        rows.append(Check("settings", _digests(sa), _digests(sb), SAME))
    return rows + differ


def _as_images(v):
    """A description with a clip's frames called images, as its frames saved as files are."""
    return re.sub(r"\bframe(s?)\b", r"image\1", v) if isinstance(v, str) else v


def _digests(flat: dict) -> str:
    return (f"calibration {flat.get('calibration.files_digest', '-')}, "
            f"crops {flat.get('calibration.crops_digest', '-')}")


def _calibrated_nothing(e: Export) -> bool:
    """Whether the export built no format that is calibrated (its calibration is None; an
    older version's report without the record is not known to be so)."""
    settings = e.report.get("settings") or {}
    return "calibration" in settings and settings["calibration"] is None


def _older_version(e: Export) -> bool:
    """A report written before the command was recorded, by a version that wrote fewer
    records (no weights' sha256, software or calibration before 2026-12-06)."""
    return "command" not in e.report


def _missing(e: Export, key: str) -> bool:
    """Whether the settings' dotted `key` is absent from a record (not a record of None, as
    an export without an INT8 format records no calibration)."""
    node = e.report.get("settings") or {}
    for part in key.split("."):
        if not isinstance(node, dict):
            return False
        if part not in node:
            return True
        node = node[part]
    return False


def _older(a: Export, b: Export, key: str) -> str:
    """Which report lacks `key`, for a 'not recorded' verdict."""
    lacking = [e for e in (a, b) if not e.report.get(key)]
    older = " (an older version's)" if all(map(_older_version, lacking)) else ""
    return f"{' and '.join(e.label for e in lacking)}'s {REPORT}{older}"


def _sha256(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


def _artifact(e: Export, row: dict) -> tuple[Path | None, str, str | None]:
    """The artifact's file in the folder as it is now (found by name: a copied folder's
    report names the file where it was exported), how it is shown and its sidecar's sha256
    (a .tflite's or an engine's: an app reads its input and output scales there)."""
    from runtime.backends.base import sidecar_path
    if row.get("status") == "skipped" or not row.get("file"):
        return None, f"{row.get('status', '-')}", None
    p = e.path / Path(row["file"]).name
    sha = _sha256(p)
    if sha is None:
        return None, f"{p.name} missing", None
    recorded = (row.get("extra") or {}).get("file_sha256")
    changed = ", CHANGED since its export" if recorded and recorded != sha else ""
    side = sidecar_path(p)
    return (p, f"sha256 {sha[:12]}, {str(row.get('status', '-')).upper()}{changed}",
            side and _sha256(side))


def _parity_images(e: Export) -> list[tuple[str, object]]:
    """The images the export judged its artifacts on, found again by name: in their folders
    (--parity-images', or --calib's they were held out of; a clip's frames in the clip), else
    scikit-image's sample photos, blurred as the export's gate ran on them (the default)."""
    from .images import list_images, read_image
    s = e.report.get("settings") or {}
    names = list(s.get("parity_images") or [])
    found = {}
    cal = s.get("calibration") or {}
    # An older report records no parity_folders: held out of --calib, they are among its.
    folders = s.get("parity_folders") or (cal.get("folders") if isinstance(cal, dict) else ())
    for folder in folders or ():
        if os.path.isdir(folder):
            for p in list_images(folder):
                if p.stem in names and p.stem not in found:
                    found[p.stem] = read_image(p)
            found |= _clip_frames(Path(folder), [n for n in names if n not in found])
    if not found:
        # Blurred, as the gate ran on them (sharp, the outputs' difference was another one).
        from .sample_photos import sample_photos
        try:
            import skimage.data
        except ImportError:
            return []
        found = dict(sample_photos([n for n in names if callable(getattr(skimage.data, n, None))]))
    return [(n, found[n]) for n in names if n in found]


def _clip_frames(folder: Path, names: list[str]) -> dict:
    """The frames named `names` of the clips in `folder` (CLIP_000123, as `sources` names a
    video's frames): a --calib clip's held-out last fifth, or --parity-images CLIP's."""
    from runtime.imageio import is_video

    from .data.sources import SampleReader, SourceError, resolve_source
    from .images import ImageReadError
    clips = [p for p in sorted(folder.iterdir()) if not p.name.startswith(".") and p.is_file()
             and is_video(p) and any(n.startswith(f"{p.stem}_") for n in names)]
    found, reader = {}, SampleReader()   # a clip stays open while its frames are read in order
    try:
        for clip in clips:
            try:
                samples = resolve_source(f"video:{clip}", frames=True).samples
            except SourceError:   # not a video after all: its frames are not found, and said so
                continue
            for s in samples:
                if s.name in names and s.name not in found:
                    with contextlib.suppress(ImageReadError):
                        found[s.name] = reader.input(s)
    finally:
        reader.close()
    return found


def output_difference(pa: Path, pb: Path, images) -> float:
    """The largest absolute difference of two artifacts' outputs on the images, each run by
    the runtime's own backend as `sharpen run` runs it (a failed gate's file too)."""
    import numpy as np

    from runtime.backends import load_backend
    from runtime.backends.runner import BackendRunner
    worst = 0.0
    with BackendRunner(load_backend(pa, threads=1, providers="cpu", force=True,
                                    say_forced=False)) as ra, \
            BackendRunner(load_backend(pb, threads=1, providers="cpu", force=True,
                                       say_forced=False)) as rb:
        for _, img in images:
            worst = max(worst, float(np.abs(ra(img) - rb(img)).max()))
    return worst


def artifact_checks(a: Export, b: Export, tolerance: float) -> list[Check]:
    """Each format either export built: its file's sha256 now, its gate's verdict; files of
    other bytes are run on the parity images and their outputs compared."""
    ba = {r.get("format"): r for r in a.report["results"]}
    bb = {r.get("format"): r for r in b.report["results"]}
    rows = []
    images = None
    for f in list(dict.fromkeys([*ba, *bb])):
        (pa, sa, ca), (pb, sb, cb) = (_artifact(a, ba[f]) if f in ba else (None, "-", None),
                                      _artifact(b, bb[f]) if f in bb else (None, "-", None))
        what = f"artifact {f}"
        if pa is None or pb is None:
            rows.append(Check(what, sa, sb, _not_both_built(f in ba and f in bb, (a, sa, pa),
                                                            (b, sb, pb))))
            continue
        if "CHANGED" in sa or "CHANGED" in sb:
            rows.append(Check(what, sa, sb, f"{DIFFERS}: a file differs from the one its "
                              "export built and checked (file_sha256)"))
            continue
        if ba[f].get("status") != bb[f].get("status"):
            rows.append(Check(what, sa, sb, f"{DIFFERS}: the parity gate's verdict"))
            continue
        if sa == sb and ca != cb:   # (of other models, other sidecars: their outputs tell)
            from runtime.backends.base import sidecar_path
            name = (sidecar_path(pb) or sidecar_path(pa)).name
            gone = [e.label for e, c in ((a, ca), (b, cb)) if c is None]
            rows.append(Check(what, sa, sb, f"{DIFFERS}: its sidecar {name} is missing from "
                              f"{gone[0]}" if len(gone) == 1 else
                              f"{DIFFERS}: its sidecar {name} differs "
                              "(an app reads its input and output there)"))
            continue
        if sa == sb:
            rows.append(Check(what, sa, sb, f"{SAME} (byte for byte)"))
            continue
        images = _parity_images(a) if images is None else images
        if not images:
            rows.append(Check(what, sa, sb, f"{UNKNOWN}: other bytes, and the export's parity "
                              "images are not found here to compare their outputs"))
            continue
        worst = output_difference(pa, pb, images)
        where = f"other bytes; output on {len(images)} parity images"
        if worst == 0:
            rows.append(Check(what, sa, sb, f"{SAME} (other bytes, the same output on "
                              f"{len(images)} parity images)"))
        else:
            rows.append(Check(what, sa, sb, _within(worst, tolerance, where)))
    return rows


def _not_both_built(in_both: bool, *sides: tuple[Export, str, Path | None]) -> str:
    """The verdict on a format whose file one folder or both lack: asked of one export only,
    its file since deleted (the report's row names it), or not built (skipped, an error)."""
    if not in_both:
        return f"{DIFFERS}: in one export only"
    missing = [(e.label, shown.split()[0]) for e, shown, _ in sides if shown.endswith(" missing")]
    if len(missing) == 2:
        return f"{UNKNOWN}: its file {missing[0][1]} is missing from both folders"
    if missing:
        return f"{DIFFERS}: its file {missing[0][1]} is missing from {missing[0][0]}"
    built = [e.label for e, _, p in sides if p is not None]
    unbuilt = [(e.label, shown) for e, shown, p in sides if p is None]
    if built:
        return f"{DIFFERS}: built in {built[0]} only ({unbuilt[0][0]}: {unbuilt[0][1]})"
    statuses = list(dict.fromkeys(shown for _, shown in unbuilt))
    return f"{NOTE} (built in neither: {', '.join(statuses)})"


def compare(a: Export, b: Export, tolerance: float) -> list[Check]:
    rows = settings_checks(a, b)
    if not all(isinstance(e.report.get("environment"), dict) for e in (a, b)):
        rows.append(Check("code version", "-", "-", f"{UNKNOWN}: "
                          f"{_older(a, b, 'environment')} records no software"))
    else:
        rows += software_checks({"environment": a.report.get("environment")},
                                {"environment": b.report.get("environment")},
                                keys=_software_keys(a, b), judge="the artifacts")
    rows += machine_check(a, b)
    rows += artifact_checks(a, b, tolerance)
    return rows


def _machine(e: Export) -> str | None:
    """The CPU the export built and checked its artifacts on (its rows' extra.inputs)."""
    return next((m for r in e.report["results"]
                 if (m := ((r.get("extra") or {}).get("inputs") or {}).get("machine"))), None)


def machine_check(a: Export, b: Export) -> list[Check]:
    """Another CPU is shown, not counted, as another library is: the artifacts say whether
    it mattered (a release exported on two machines is the question asked)."""
    ma, mb = _machine(a), _machine(b)
    if ma == mb:
        return []
    return [Check("machine", _shown(ma), _shown(mb),
                  f"{NOTE} (the artifacts say whether it mattered)")]


def _software_keys(a: Export, b: Export) -> tuple[str, ...]:
    keys = {**(a.report.get("environment") or {}), **(b.report.get("environment") or {})}
    return tuple(k for k in keys if k not in ("sharpen", "code"))


def same_exports(paths: list[Path], tolerance: float) -> tuple[int, str, dict]:
    """The exit code, what to print and same.json's record; BadRun (exit 2) for input that
    cannot be compared."""
    given, paths = paths, export_folders(paths)
    if len(paths) != 2:
        raise BadRun(f"--same compares two export folders, got {len(paths)}"
                     + (f" in {' '.join(map(str, given))}" if paths != given else ""))
    if gone := [str(p) for p in paths if not p.exists()]:
        raise BadRun("; ".join(f"{p}: no such folder" for p in gone))
    not_exports = [str(p) for p in paths if not is_export(p)]
    from .runs_compare import _holds_run_files
    if len(not_exports) == 1 and _holds_run_files(Path(not_exports[0])):
        export = next(p for p in paths if is_export(p))
        raise BadRun(f"{not_exports[0]} is a training run and {export} an export folder: "
                     "--same compares two export folders or two training runs")
    if not_exports:
        raise BadRun(f"{' and '.join(not_exports)}: no {REPORT} (--same compares two export "
                     "folders, or two training runs)")
    a, b = (read_export(p) for p in paths)
    if os.path.realpath(a.path) == os.path.realpath(b.path):
        raise BadRun(f"--same: {paths[0]} and {paths[1]} are the same folder")
    if a.label == b.label:
        a.label, b.label = str(a.path), str(b.path)
    return report(a, b, compare(a, b, tolerance))
