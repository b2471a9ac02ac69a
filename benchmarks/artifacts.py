"""Students to benchmark and their exported artifacts, built once and cached.

Artifacts come from `optimize.export.export` (the same code path as `sharpen export`, parity
gate included) and live in ``<cache>/<checkpoint stem>-<weights hash>/``; the cache root is
``~/.cache/sharpen/bench`` (or $SHARPEN_BENCH_CACHE, or --cache). A stamp file
(``bench_artifacts.json``) records the weights hash, a hash of the exporter code, the export
settings and each format's result with the versions of the libraries that built and checked it,
so later runs reuse what is up to date and build only what is missing or was built by other
library versions (for example the TensorRT engines after TensorRT was installed, the TFLite
models after a TensorFlow upgrade). Formats this machine
cannot build are listed as skipped with the reason `optimize.export` gives. A stamped format is
reused only where the folder's export report describes it too (the report is the folder's
record, which every later export carries on), and a run that builds holds a lock on the folder,
so that runs sharing a cache export one student one at a time.
"""
from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from runtime.atomic import atomic_write_json
from runtime.cache import cache_lock

STAMP = "bench_artifacts.json"
STAMP_FORMAT = "sharpen-bench-artifacts/1"
DEFAULT_STUDENTS = ("seed", "fast")   # `edge` is benchmarked when asked: see its card
DEFAULT_CALIB_COUNT = 32
# The reason of a format --formats left out: report.json keeps its rows (the full matrix), the
# tables leave them out and name the formats once (`not_requested_line`).
NOT_REQUESTED = "not requested (--formats)"
# The pytest suite's: a format of --formats that no test selected (-k) uses is not exported.
NOT_SELECTED = "no selected test uses it (-k)"


def file_hash(path: str | os.PathLike, n: int = 16) -> str:
    """distill.teacher.file_hash without importing torch: a device's bench of --model files
    alone runs without it."""
    from runtime.resume import file_sha256
    return file_sha256(path)[:n]


class BenchError(ValueError):
    """A usage problem (missing checkpoint, bad option) with a one-line message."""


def default_cache_root() -> Path:
    env = os.environ.get("SHARPEN_BENCH_CACHE")
    if env:
        return Path(env)
    from runtime.cache import cache_dir
    return cache_dir("bench")


@dataclass(frozen=True)
class Student:
    name: str        # label in tables: "fast", "seed", or the checkpoint's stem
    path: Path
    hash: str

    def to_dict(self) -> dict:
        return {"name": self.name, "path": str(self.path), "hash": self.hash}


def split_list(spec: str | Sequence[str] | None) -> list[str]:
    """'a,b' / ['a', 'b,c'] -> ['a', 'b', 'c']; None -> []."""
    if spec is None:
        return []
    items = [spec] if isinstance(spec, str) else list(spec)
    return [s.strip() for item in items for s in str(item).split(",") if s.strip()]


RESERVED_NAMES = ("input", "teacher", "blurred", "sharp")


def resolve_students(spec: str | Sequence[str] | None = None, hash_files: bool = True
                     ) -> list[Student]:
    """Student checkpoints from names of shipped students (seed, fast -> models/student-NAME.pt)
    or checkpoint paths; default: the shipped seed and fast students."""
    items = split_list(spec)
    if spec is not None and not items:   # `--weights ""`: a mistake, not "the defaults"
        raise BenchError("--weights names no student (give shipped names such as "
                         f"{', '.join(DEFAULT_STUDENTS)} or checkpoint paths)")
    items = items or list(DEFAULT_STUDENTS)
    out: list[Student] = []
    # The report's own rows and figure columns: a student file named teacher.pt took the
    # teacher's row (and input.pt the input's); data.pt the real-blur tables' `data` entry.
    from distill.checkpoint import CheckpointError, run_stem
    from distill.evaluate import RESERVED
    from distill.teacher import resolve_weights

    reserved = set(RESERVED_NAMES) | set(RESERVED)
    names: set[str] = set(reserved)
    for item in items:
        try:
            p = resolve_weights(item, allow_teacher=False)
        except CheckpointError as e:
            raise BenchError(f"--weights {e}") from None
        if not p.is_file():
            raise BenchError(f"student checkpoint not found: {p} (pass shipped names such as "
                             f"{', '.join(DEFAULT_STUDENTS)} or checkpoint paths to --weights)")
        if any(st.path == p.resolve() for st in out):
            print(f"warning: --weights {item} names {p} again; benchmarked once",
                  file=sys.stderr)
            continue
        stem = run_stem(p)   # runs/a/best.pt -> a-best, as export names its files
        name = stem[len("student-"):] if stem.startswith("student-") else stem
        base, k = name, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        if base in reserved:   # renamed where a name the user did not choose would puzzle
            print(f"warning: student checkpoint {p}: the name {base!r} is one the report keeps "
                  f"for itself; benchmarked as {name!r}", file=sys.stderr)
        names.add(name)
        out.append(Student(name, p.resolve(), file_hash(p) if hash_files else ""))
    return out


def failure_reason(name: str, e: BaseException) -> str:
    """Why student `name`'s export (or checkpoint) failed, on one line: a ValueError's message
    (BenchError and CheckpointError are worded for the user), else the exception's type and
    first line; without the `NAME: ` the bench's export errors lead with, since the line that
    says it names the student."""
    from runtime.console import first_line

    why = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {first_line(e)}"
    return why.removeprefix(f"{name}: ")


def path_unless_named(path: str | os.PathLike, why: str) -> str:
    """" (PATH)" after "student NAME" in a line saying why it failed, or "" where `why` names
    the path already (a CheckpointError's "PATH is not a PyTorch checkpoint"): said twice, a
    long path made the line hard to read."""
    return "" if str(path) in why else f" ({path})"


def checkpoint_failed(student: Student, e: BaseException) -> bool:
    """Whether export error `e` is the checkpoint's (nothing of the student runs, PyTorch eager
    included) rather than its formats' alone (a cache folder that cannot be written): a
    CheckpointError, or a checkpoint that does not load either."""
    from distill.checkpoint import CheckpointError, load_student

    if isinstance(e, CheckpointError):
        return True
    try:
        load_student(student.path)
    except Exception:  # noqa: BLE001 - whatever it is, PyTorch eager could not run it
        return True
    return False


def failed_artifacts(student: Student, cache_root: str | os.PathLike | None,
                     formats: str | Sequence[str] | None, why: str,
                     float_layers: Optional[str] = None, status: str = "failed",
                     kept: Optional[dict] = None) -> ArtifactSet:
    """The ArtifactSet of a student whose export raised: status "failed" with `why` for each
    format it was to build; those not requested or not buildable here skipped as
    `ensure_artifacts` skips them. `status` "error": the export's failure, not the student's
    (`checkpoint_failed`): each format fails its own check, as one whose build failed.
    `kept`: `ensure_artifacts`' `partial` "items", the formats it reused from the cache or
    built (or failed with a reason of their own) before it raised, which stay as they are."""
    from optimize.export import FORMATS

    build = buildable_formats(formats)
    kept = kept or {}
    items = {}
    for fmt, spec in FORMATS.items():
        if fmt in build and fmt in kept and kept[fmt].status != "skipped":
            items[fmt] = kept[fmt]
        elif fmt in build:
            items[fmt] = Artifact(fmt, spec.precision, status, reason=why)
        else:
            items[fmt] = Artifact(fmt, spec.precision, "skipped",
                                  reason=spec.availability() or NOT_REQUESTED)
    return ArtifactSet(student, artifact_folder(student, cache_root, float_layers), items)


def precision_label(row: dict) -> str:
    """A report row's precision as the tables show it: "INT8, float from dec.1" for an artifact
    with float layers (layer names as the student spells them), as `sharpen export`'s table."""
    floats = row.get("float_layers")
    return ((row.get("precision") or "").upper()
            + (f", float from {', '.join(floats)}" if floats else ""))


def float_layers_key(spec: Optional[str]) -> Optional[str]:
    """--float-layers as the cache keys it, the export's way: 'none' (the default, full
    integer) is no float layers, and spelling, spaces and order do not matter. 'none' had a
    cache folder of its own, so it exported every format again to the same artifacts."""
    from optimize.export_reuse import _float_layers_key

    return _float_layers_key(spec)


def artifact_folder(student: Student, cache_root: str | os.PathLike | None,
                    float_layers: Optional[str] = None) -> Path:
    """The cache folder of `student`'s artifacts; --float-layers builds in one of its own.
    One place: a failed student's report named a folder without that suffix."""
    float_layers = float_layers_key(float_layers) or ""
    suffix = ("-float-" + re.sub(r"[^A-Za-z0-9.]+", "_", float_layers)) if float_layers else ""
    return (Path(cache_root or default_cache_root()).resolve()
            / f"{student.path.stem}-{student.hash}{suffix}")


# --------------------------------------------------------------------------- artifacts

def is_not_requested(row: dict) -> bool:
    """Whether a report row (quality, latency or skipped-list entry) is of a format that
    --formats left out (or, in the pytest suite, that no selected test uses)."""
    return row.get("reason") in (NOT_REQUESTED, NOT_SELECTED) and bool(row.get("format"))


def not_requested_line(rows: Sequence[dict]) -> str:
    """'not requested (--formats): a, b' for the formats of such rows, in their order; "" when
    none. One line under a table instead of a "skipped: not requested" row per format."""
    parts = []
    for why in (NOT_REQUESTED, NOT_SELECTED):
        left = list(dict.fromkeys(r["format"] for r in rows
                                  if is_not_requested(r) and r["reason"] == why))
        parts += [f"{why}: {', '.join(left)}"] if left else []
    return "; ".join(parts)


@dataclass
class Artifact:
    format: str
    precision: str
    # pass / fail / error / skipped (as in optimize.export); failed: the student's whole
    # export raised (`failed_artifacts`)
    status: str
    file: Optional[str] = None
    reason: Optional[str] = None
    export_parity: dict = field(default_factory=dict)   # export's own gate (sample photos)
    versions: dict = field(default_factory=dict)        # format_versions() it was built with
    # INT8 layers the export kept in float (each with all after it); --float-layers auto's
    # choice is known only here: the rows said "INT8" whatever it chose, nothing included
    float_layers: list = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.file is not None and Path(self.file).is_file()


@dataclass
class ArtifactSet:
    student: Student
    folder: Path
    items: dict[str, Artifact]
    built_now: list[str] = field(default_factory=list)

    def get(self, fmt: str) -> Artifact:
        return self.items[fmt]

    def to_dict(self) -> dict:
        return {"student": self.student.name, "folder": str(self.folder),
                "built_now": self.built_now,
                "formats": {k: asdict(v) for k, v in self.items.items()}}


def exporter_hash() -> str:
    """Hash of the code that turns a checkpoint into artifacts (export's own record keys on
    it): a cached artifact from older code is rebuilt, not silently reused."""
    from optimize.export import code_hash
    return code_hash()


# Besides a format's own libraries (`FORMATS[fmt].libraries`, which the export's record holds):
# OpenCV reads and resizes the calibration and parity photos. The export's record holds those
# pixels' digests instead; the bench's stamp does not see the photos, so it holds OpenCV.
PHOTO_LIBRARIES = ("opencv",)


def format_versions(fmt: str, installed: Optional[dict] = None) -> dict:
    """Versions of the libraries `fmt`'s artifact and export parity depend on: an artifact
    built with others (ONNX Runtime's quantizer, the TFLite converter, torch's exporter
    upgraded since) is rebuilt, not reused with the old build's parity numbers. `installed`:
    library_versions() read once for several formats."""
    from runtime.formats import FORMATS

    from .machine import library_versions

    names = (*FORMATS[fmt].libraries, *PHOTO_LIBRARIES)
    have = installed if installed is not None else library_versions(names)
    return {n: have.get(n) for n in names}


BUILTIN_CALIBRATION = "built-in sample photos"
# An artifact's `export_parity["images"]` where its parity gate, held out of --calib otherwise,
# ran on the built-in photos: no --calib image was readable (`_build`). Said in the artifact,
# which a later run with the same --calib files reuses, not only in that run's console.
BUILTIN_PARITY_FALLBACK = f"{BUILTIN_CALIBRATION} (no --calib image is readable)"
# The export's messages name `sharpen export`'s flags, less those the bench does not take: its
# parity images are the fifth of --calib held out (`optimize.export.Flags`), it exports into
# a folder of its --cache (a user's export there refuses it, naming that flag), and its
# engines have the default profile.
EXPORT_FLAGS: dict = {"parity_images": None, "out_dir": "--cache", "min_shape": None,
                      "max_shape": None}


def _settings(student: Student, calib_count: int, float_layers: str | None = None,
              calib: dict | None = None, seed: int = 0) -> dict:
    """The stamp's key. `calib`: `_calib_files` of a --calib run: with the weights, the
    exporter's code and OpenCV (the formats' versions) the files make the crops and the
    held-out parity images, which export's own record holds the digests of."""
    s = {"weights_hash": student.hash, "exporter": exporter_hash(),
         "calib_count": int(calib_count), "calibration": BUILTIN_CALIBRATION,
         "parity": BUILTIN_CALIBRATION}
    if calib:
        s["calibration"] = {k: v for k, v in calib.items() if k != "parity"}
        s["parity"] = calib.get("parity", "held out of --calib")
    if float_layers:
        s["float_layers"] = float_layers
    if seed:   # seed 0's key is left as it was: caches built before --seed stay valid
        s["seed"] = int(seed)
    return s


def check_calib(calib: Sequence[str] | str | None) -> None:
    """BenchError, worded as `sharpen export` words it, for a --calib source that is missing or
    lists no images: before the long work, not at the first student's export."""
    if not calib:
        return
    from optimize.calibration import CalibrationError
    from optimize.export import resolve_calib

    try:
        resolve_calib(calib, flags=EXPORT_FLAGS)
    except CalibrationError as e:
        raise BenchError(str(e)) from None


def check_float_layers(students: Sequence[Student], float_layers: str | None) -> None:
    """BenchError, worded as `sharpen export` words it, where --float-layers names a layer
    one of `students` lacks: a typo (or a list meant for another architecture) is the
    command's mistake, not a student's failure, so it stops the run before any export instead
    of failing that student minutes in. Reads each checkpoint; one that cannot be read is left
    to its export, which fails that student with the reason."""
    if not (float_layers or "").strip() or not students:   # no checkpoint: torch unneeded
        return
    from distill.checkpoint import load_student
    from optimize import float_layers as fl

    problems, fine = [], []
    for st in students:
        try:
            model = load_student(st.path)[0]
        except Exception:  # noqa: BLE001 - a KeyError too (a checkpoint without its 'arch'):
            continue       # its export fails that student with the reason; here it crashed
        try:
            fl.parse(float_layers, model)
            fine.append(st.name)
        except fl.FloatLayersError as e:
            why = str(e).removeprefix("--float-layers: ")
            problems.append(f"student {st.name} ({st.path}): {why}")
    if problems:
        apart = (f"; it fits {', '.join(fine)} only: benchmark the students apart (--weights), "
                 "each with its own list" if fine else "")
        raise BenchError(f"--float-layers {float_layers}: {'; '.join(problems)}{apart}")


def _calib_files(calib: Sequence[str] | str) -> dict:
    """The --calib files as the export lists them, by name and content digest. Keyed on these
    rather than on the crops they give, a run whose artifacts are all cached reads the files'
    bytes only: it neither loads the student nor decodes every
    image. Errors as BenchError, in export's words. "parity": where the export's parity gate
    runs when --calib holds no image out for it (one image, .npy crops), as `_settings` keys it."""
    from optimize.calibration import CalibrationError
    from optimize.export import resolve_calib
    from optimize.export_data import no_parity_held_out

    try:
        paths = resolve_calib(calib, flags=EXPORT_FLAGS)
    except CalibrationError as e:
        raise BenchError(str(e)) from None

    def digest(p: Path) -> Optional[str]:
        try:
            return file_hash(p, 32)
        except OSError:   # the export skips it, said; unreadable is its state here
            return None
    files = {"calib_files": [[p.name, digest(p)] for p in paths]}
    if why := no_parity_held_out(paths):
        files["parity"] = f"{BUILTIN_CALIBRATION} ({why})"
    return files


def buildable_formats(formats: str | Sequence[str] | None) -> list[str]:
    """The formats `ensure_artifacts` builds or reuses for `formats` (requested and buildable
    here; the rest it returns as skipped): what a run interrupted before a student's export
    finished plans for that student."""
    from optimize.export import FORMATS, parse_formats

    requested = parse_formats(formats) or list(FORMATS)
    return [f for f in requested if FORMATS[f].availability() is None]


def ensure_artifacts(student: Student, cache_root: str | os.PathLike | None = None,
                     formats: str | Sequence[str] | None = None,
                     calib_count: int = DEFAULT_CALIB_COUNT, quiet: bool = False,
                     say=None, float_layers: str | None = None,
                     calib: Sequence[str] | str | None = None,
                     partial: Optional[dict] = None, seed: int = 0) -> ArtifactSet:
    """Every export format for `student`: reused from the cache when up to date, else built with
    `optimize.export.export`. Formats not requested or not buildable here come back as skipped
    with a reason; failed builds as error with the export's reason. `float_layers` as
    `sharpen export --float-layers` (mixed-precision INT8; cached in a folder of its own).
    `calib` as `sharpen export --calib` (default: the built-in sample photos): the cache keys
    on its files' contents, so other images (or changed ones) rebuild; `seed` as `sharpen
    export --seed`, keyed too (another seed's crops give other INT8 scales). `partial`: a dict
    whose "items" are the formats reused or built so far, for a caller that measures them
    where the export raises (`failed_artifacts`' `kept`)."""
    from optimize.export import FORMATS, parse_formats

    say = say or (lambda msg: None)
    try:
        requested = parse_formats(formats)
    except ValueError as e:
        raise BenchError(str(e)) from None
    requested = list(FORMATS) if requested is None else requested
    float_layers = float_layers_key(float_layers)
    folder = artifact_folder(student, cache_root, float_layers)
    calib = calib or None
    record = _calib_files(calib) if calib else None
    settings = _settings(student, calib_count, float_layers, record, seed)

    from .machine import library_versions

    installed = library_versions()
    versions = {fmt: format_versions(fmt, installed) for fmt in FORMATS}
    partial = {} if partial is None else partial

    def planned() -> _Plan:
        plan = _Plan.of(student, folder, settings, requested, versions)
        # The formats reused, and those `_build` records as it goes (the same dict): an export
        # that raised for the others took them with it, cached and sound, unmeasured.
        partial["items"] = plan.items
        return plan

    plan = planned()
    built_now: list[str] = []
    if plan.to_build:
        # Two runs exporting one student at once (test sessions of worktrees sharing the
        # default cache) each took the formats the other had finished from the stamp while its
        # report was under way, and the later report left them out: the second waits.
        with cache_lock(folder, say, "exporting"):
            # Planned again inside the lock: a run that held it may have built them meanwhile.
            plan = planned()
            if plan.to_build:
                built_now = _build(plan, student, folder, settings, versions, calib_count,
                                   quiet, say, float_layers, calib, seed)
    ordered = {fmt: plan.items[fmt] for fmt in FORMATS}
    return ArtifactSet(student, folder, ordered, built_now)


@dataclass
class _Plan:
    """What `ensure_artifacts` reuses (`items`) and builds (`to_build`) in a cache folder, and
    the stamp's formats (`old`) when its settings are this run's."""
    old: dict
    items: dict[str, Artifact]
    to_build: list[str]

    @classmethod
    def of(cls, student: Student, folder: Path, settings: dict, requested: list[str],
           versions: dict[str, dict]) -> "_Plan":
        from optimize.export import FORMATS

        stamp_path = folder / STAMP
        stamp: dict = {}
        if stamp_path.is_file():
            try:
                stamp = json.loads(stamp_path.read_text())
            except ValueError:
                stamp = {}
        old = stamp.get("formats", {}) if stamp.get("settings") == settings else {}
        vouched = _reported(folder, student)
        items: dict[str, Artifact] = {}
        to_build: list[str] = []
        for fmt, spec in FORMATS.items():
            if fmt not in requested:
                items[fmt] = Artifact(fmt, spec.precision, "skipped", reason=NOT_REQUESTED)
                continue
            reason = spec.availability()
            if reason:
                items[fmt] = Artifact(fmt, spec.precision, "skipped", reason=reason)
                continue
            prev = old.get(fmt)
            # Found by file name in this folder: the cache may be reached by another path (a
            # relative --cache from another directory) or have been moved.
            here = folder / Path(prev["file"]).name if prev and prev.get("file") else None
            # A stamp from before versions were recorded has none: rebuilt once. One that the
            # folder's export report does not hold too is rebuilt: an export of the other
            # formats would carry it in no report (and warn so).
            if (here and here.is_file() and prev.get("status") in ("pass", "fail")
                    and prev.get("versions") == versions[fmt] and vouched.get(fmt) == here.name):
                items[fmt] = Artifact(**{**prev, "file": str(here)})
            else:
                to_build.append(fmt)
        return cls(old, items, to_build)


def _reported(folder: Path, student: Student) -> dict[str, str]:
    """Format -> file name of the built artifacts that the folder's export report describes,
    from `student`'s weights (pass or fail: a result an export carries into its next report)."""
    from runtime.backends.provenance import REPORT, read_report

    report = read_report(folder / REPORT) or {}
    settings = report.get("settings") or {}
    if not str(settings.get("weights_sha256") or "").startswith(student.hash):
        return {}
    return {r["format"]: Path(r["file"]).name for r in report.get("results") or []
            if isinstance(r, dict) and r.get("status") in ("pass", "fail") and r.get("file")
            and r.get("format")}


def _build(plan: _Plan, student: Student, folder: Path, settings: dict,
           versions: dict[str, dict], calib_count: int, quiet: bool, say,
           float_layers: str | None, calib: Sequence[str] | str | None = None,
           seed: int = 0) -> list[str]:
    """Export `plan.to_build` into `folder`, recording each result in `plan.items` and the
    stamp as it comes; the formats built."""
    from optimize.calibration import CalibrationError
    from optimize.export import FORMATS, ExportError, export

    items, old, to_build = plan.items, plan.old, plan.to_build
    stamp_path = folder / STAMP
    built_now: list[str] = []
    say(f"exporting {student.name} ({student.path.name}) -> {', '.join(to_build)} "
        f"in {folder} (cached for later runs)")

    def save_stamp() -> None:
        keep = {k: asdict(v) for k, v in items.items() if v.status in ("pass", "fail")}
        atomic_write_json(stamp_path, {"format": STAMP_FORMAT, "settings": settings,
                                       "student": student.to_dict(),
                                       "formats": {**old, **keep}})

    failed: list[str] = []   # formats whose export raised; the others' is not about them
    parity_on: dict = {}     # export_parity's "images" where not held out of --calib
    if calib and settings["parity"] != "held out of --calib":   # (a --calib of one image)
        parity_on["images"] = settings["parity"]

    def record(r) -> None:
        if r.format not in to_build or r.format in built_now or r.format in failed:
            return
        parity = {k: getattr(r, k) for k in ("max_abs", "psnr", "ssim")
                  if getattr(r, k) is not None} | parity_on
        items[r.format] = Artifact(r.format, r.precision or FORMATS[r.format].precision,
                                   r.status, r.file, r.reason, parity, versions[r.format],
                                   list(r.extra.get("float_layers") or []))
        built_now.append(r.format)
        # At once: Ctrl-C or SIGTERM during the next format (minutes for TFLite) left no
        # stamp, and the rerun that "continues" built the finished formats again.
        save_stamp()

    def run(fmts: list[str], calib=calib):
        # calib_size None: export's default side, fitted to small --calib images without a
        # warning naming --calib-size, which the bench does not take (the crops are the same).
        return export(student.path, fmts, folder, calib=calib, calib_count=calib_count,
                      calib_size=None, seed=seed, latency=False, quiet=quiet,
                      float_layers=float_layers, on_result=record, flags=EXPORT_FLAGS)

    try:
        try:
            report = run(to_build)
        except CalibrationError as e:
            # Raised before building anything, for the images the INT8 formats calibrate on
            # (or hold out for parity): it failed the student in every format, FP32 included.
            # The calibrated ones fail with the reason and the others are exported alone.
            calibrated = [f for f in to_build
                          if FORMATS[f].needs_calibration and f not in built_now]
            rest = [f for f in to_build if f not in calibrated and f not in built_now]
            for f in calibrated:
                items[f] = Artifact(f, FORMATS[f].precision, "error", reason=str(e))
            # (the export of the others carries an earlier build of these into its report)
            failed += calibrated
            if calibrated:
                say(f"exporting {student.name} to {', '.join(calibrated)} failed: {e}"
                    + (f"; exporting {', '.join(rest)} alone" if rest else ""))
            report = None
            if rest:
                try:
                    if not calibrated:   # the same export again: the same error
                        raise e
                    report = run(rest)
                except CalibrationError as again:
                    # Their parity images, held out of --calib, are none (none of its images
                    # is readable): gated on the built-in parity photos, as without --calib,
                    # they are measured; failed too, PyTorch eager went unmeasured with them.
                    if not calib:
                        raise
                    say(f"exporting {student.name} to {', '.join(rest)}: {again}; their "
                        "parity gate runs on the built-in sample photos instead")
                    parity_on["images"] = BUILTIN_PARITY_FALLBACK
                    report = run(rest, calib=None)
    except (ExportError, CalibrationError) as e:
        raise BenchError(f"{student.name}: {e}") from None
    for r in report.results if report else ():
        record(r)
    for fmt in to_build:   # a format the export did not report on at all
        items.setdefault(fmt, Artifact(fmt, FORMATS[fmt].precision, "error",
                                       reason="the export produced no result"))
    save_stamp()
    return built_now
