"""Exported models given to `sharpen bench --model FILE` (and `pytest benchmarks/ --model`;
a folder stands for its model files):
measured as they are, not built from a checkpoint into the bench's cache. A TensorRT engine
built on a Jetson, an INT8 model calibrated on the user's own frames or a .tflite copied from
another machine is what the user deploys, and the bench's own exports of the same student are
not it.

Each file is checked, and loaded once by the runtime, when the options are read: a missing
file, an unknown extension or a model the runtime cannot read stops the bench before the
teacher outputs and the exports (minutes), naming the file. A file whose engine this machine
lacks (an engine without TensorRT) is kept, skipped with the reason, as the bench skips the
formats it cannot build. Its format comes from the format table: the format the export report
in its folder lists it under, else the formats of its extension narrowed by the precision the
runtime reads from it and by the suffix of its name; the student it was exported from from
its own metadata (ONNX metadata, the sidecar of a .tflite or an engine) or that report.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from runtime.backends.base import recorded_float_layers  # noqa: F401 - read here, as before
from runtime.formats import ENGINE_BY_SUFFIX, FORMATS

from .artifacts import RESERVED_NAMES, Artifact, BenchError, Student, split_list

UNKNOWN = "unknown"


@dataclass(frozen=True)
class GivenModel:
    name: str                     # the row's label: the file's stem (made distinct)
    path: Path
    format: str                   # a name of the format table (runtime.formats.FORMATS)
    precision: str
    source: str                   # the student (architecture) it was exported from, or UNKNOWN
    source_sha256: Optional[str] = None   # the checkpoint it was exported from, when recorded
    skipped: Optional[str] = None         # why this machine cannot run it
    float_layers: tuple = ()              # INT8 layers its export kept in float, as recorded
    # Why its export's parity gate failed, where it did: the bench times it forced, but
    # `sharpen run` refuses it without --force, so it is no file to ship.
    export_gate: Optional[str] = None
    # A model exported elsewhere: how the runtime runs it (runtime.backends.foreign), which a
    # wrong guess shows only in its numbers.
    foreign: str = ""
    # The file's own sha256: which bytes were measured (a re-export keeps the name).
    sha256: Optional[str] = None

    @property
    def artifact(self) -> Artifact:
        """As the bench's own exports are held (status "given": no export gate of its own)."""
        return Artifact(self.format, self.precision, "skipped" if self.skipped else "given",
                        str(self.path), self.skipped, float_layers=list(self.float_layers))

    def label(self) -> str:
        """The model column: the file's stem and the student it came from."""
        if self.foreign:
            return f"{self.name} (foreign: {self.foreign})"
        return f"{self.name} (student {self.source})"

    def student_of(self, students: Sequence[Student]) -> Optional[str]:
        """The name of the benchmarked student whose checkpoint this was exported from (its
        PyTorch output is then the parity reference), else None."""
        sha = self.source_sha256 or ""
        return next((s.name for s in students if s.hash and sha.startswith(s.hash)), None)

    def to_dict(self) -> dict:
        return {"name": self.name, "path": str(self.path), "format": self.format,
                "precision": self.precision, "source": self.source,
                "source_sha256": self.source_sha256, "skipped": self.skipped,
                "float_layers": list(self.float_layers), "export_gate": self.export_gate,
                "sha256": self.sha256}


def resolve_models(spec: str | Sequence[str] | None, taken: Sequence[str] = (),
                   threads: int = 0) -> list[GivenModel]:
    """The --model files, checked and read (see the module doc); BenchError naming the file
    for one that is missing, not an exported model or unreadable. `taken`: row names already
    used (the students'), which the files' stems must not repeat."""
    items = model_files(spec)
    if spec is not None and not items:
        raise BenchError("--model names no file (give exported models: .onnx, .tflite, "
                         ".engine)")
    names = set(RESERVED_NAMES) | set(taken) | _evaluate_keys()
    paths: list[Path] = []
    for item in items:
        p = Path(item)
        _check_file(p)
        if any(q.resolve() == p.resolve() for q in paths):
            print(f"warning: --model {item} names {p} again; benchmarked once", file=sys.stderr)
            continue
        paths.append(p)
    out: list[GivenModel] = []
    for p, base in zip(paths, given_ids(paths)):
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.add(name)
        out.append(_read(p, name, threads))
    return out


def model_files(spec: str | Sequence[str] | None) -> list[str]:
    """The --model items, each folder (the one `sharpen export --out` wrote, a CI job's folder
    of exported models) replaced by its model files in name order: its own, not its
    subfolders', nor hidden ones (a copy under way). BenchError for a folder with none."""
    out: list[str] = []
    for item in split_list(spec):
        p = Path(item)
        if not p.is_dir():
            out.append(item)
            continue
        found = sorted(str(q) for q in p.iterdir() if not q.name.startswith(".")
                       and q.suffix.lower() in ENGINE_BY_SUFFIX and q.is_file())
        # An engine `sharpen export` left to its trtexec line (no TensorRT there) has only its
        # sidecar here: said, not measured, where named alone it stops the bench.
        from runtime.backends.provenance import pending_engine
        for side in sorted(p.glob("*.json")):
            engine = side.with_suffix("")
            if not engine.exists() and (why := pending_engine(engine)):
                from runtime.warn import warn   # pytest's warnings summary shows it too
                warn(f"--model {p}: {engine} is not measured: {why}")
        if not found:
            exts = ", ".join(sorted(ENGINE_BY_SUFFIX))
            raise BenchError(f"--model {p}: a folder with no exported model in it ({exts})")
        out += found
    return out


def given_ids(paths: list) -> list[str]:
    """Names of the --model files, `sharpen bench`'s rows and `pytest benchmarks/`'s test ids:
    the stem, or the file name where files share a stem (student-fast_int8.onnx and .tflite),
    or its folder too where they share that. Never an order suffix (pytest's `_0`, the bench's
    `-2`): --benchmark-compare and `bench-compare` pair rows by name, and a later run giving
    the files in another order had compared one file's numbers against another's."""
    def counted(keys):
        return [keys.count(k) for k in keys]
    stems = [Path(p).stem for p in paths]
    names = [Path(p).name for p in paths]
    folders = [f"{Path(p).resolve().parent.name}-{Path(p).name}" for p in paths]
    return [s if ns == 1 else n if nn == 1 else f
            for s, n, f, ns, nn in zip(stems, names, folders, counted(stems), counted(names))]


def _evaluate_keys() -> set[str]:
    """Labels the real-blur tables keep for themselves (`distill.evaluate.RESERVED`)."""
    from distill.evaluate import RESERVED
    return set(RESERVED)


def _check_file(p: Path) -> None:
    if not p.exists():
        # An engine whose trtexec line `sharpen export` printed where TensorRT was missing.
        from runtime.backends.provenance import pending_engine
        raise BenchError(f"--model {p}: {pending_engine(p) or 'no such file'}")
    if not p.is_file():   # a FIFO: reading its head would wait for a writer
        from runtime.imageio import why_not_a_file
        raise BenchError(f"--model {p}: {why_not_a_file(p)}; give a model file")
    if p.suffix.lower() not in ENGINE_BY_SUFFIX:
        exts = ", ".join(sorted(ENGINE_BY_SUFFIX))
        raise BenchError(f"--model {p}: not an exported model (its extension "
                         f"{p.suffix or '(none)'} is none of {exts}); pass checkpoints with "
                         "--weights")
    try:
        with open(p, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise BenchError(f"--model {p}: cannot read it: {e.strerror or e}") from None
    if not head:
        raise BenchError(f"--model {p}: an empty file (an interrupted copy?)")
    from runtime.backends.sniff import content_engine, misnamed
    held, kind = content_engine(p), ENGINE_BY_SUFFIX[p.suffix.lower()]
    if held is not None and held != kind:
        raise BenchError(f"--model {misnamed(p, held, kind)}")


def engine_missing(engine: str) -> Optional[str]:
    """Why this machine cannot run `engine`'s models (its library is not installed), or None."""
    from runtime.backends.base import ModelError
    try:
        if engine == "onnxruntime":
            import onnxruntime  # noqa: F401
        elif engine == "litert":
            from runtime.backends.litert_backend import _interpreter_class
            _interpreter_class()
        elif engine == "tensorrt":
            from runtime.backends.tensorrt_backend import _import_cudart, _import_tensorrt
            _import_tensorrt()
            _import_cudart()
    except ImportError:
        return {"onnxruntime": "ONNX Runtime is not installed"}.get(engine, f"{engine} is "
                                                                    "not installed")
    except ModelError as e:
        return str(e)
    return None


def _read(p: Path, name: str, threads: int) -> GivenModel:
    """Load `p` once with the runtime (its precision and records); a model this machine lacks
    the engine for is read from its sidecar and the export report alone, and skipped."""
    from runtime.backends import load_backend, parity_failure
    from runtime.backends.base import ModelError, read_sidecar
    from runtime.backends.litert_backend import own_record

    engine = ENGINE_BY_SUFFIX[p.suffix.lower()]
    try:
        # A .tflite copied alone keeps its export's record inside (its student, weights).
        meta = own_record(p) if p.suffix.lower() == ".tflite" else read_sidecar(p)
    except ModelError as e:
        raise BenchError(f"--model {p}: {e}") from None
    skipped = engine_missing(engine)
    gate = parity_failure(p)   # the marker beside it; the record inside it once loaded
    precision = str(meta.get("precision") or "unknown")
    source_sha = meta.get("source_sha256") or None
    foreign = ""
    if skipped is None:
        try:
            backend = load_backend(p, threads=threads or None, force=True, say_forced=False,
                                   providers="cpu" if engine == "onnxruntime" else "auto")
        except ModelError as e:
            if engine != "tensorrt":   # ONNX Runtime and LiteRT load anything they can run
                raise BenchError(f"--model {p}: {e}") from None
            # An engine of another GPU or TensorRT version: this machine cannot run it.
            skipped = f"cannot load {p.name} here: {e}"
        else:
            try:
                gate = parity_failure(p, backend)
                precision = backend.precision
                source_sha = backend.source_sha256 or source_sha
                told = getattr(backend, "contract", None)
                if told is not None and told.foreign:
                    foreign = (f"{told.layout} {told.colour_order} {told.input_range} "
                               f"{told.output}" + (", {}x{} tiles".format(*told.fixed_hw)
                                                   if told.fixed_hw else ""))
                session = getattr(backend, "session", None)
                if session is not None:   # ONNX metadata (the runtime keeps what it needs)
                    meta = {**meta, **(session.get_modelmeta().custom_metadata_map or {})}
            finally:
                backend.close()
    if skipped:
        skipped = f"{p}: {skipped}"
    fmt, reported = _format(p, engine, precision)
    source = str(meta.get("student") or reported.get("student") or UNKNOWN)
    if precision == "unknown":
        precision = FORMATS[fmt].precision
    from runtime.resume import file_sha256
    return GivenModel(name, p.resolve(), fmt, precision, source, source_sha, skipped,
                      tuple(recorded_float_layers(meta)), gate, foreign, file_sha256(p))


def _format(p: Path, engine: str, precision: str) -> tuple[str, dict]:
    """The format-table name of `p` and the export report of its folder that lists it ({}):
    the report's word first; else the formats of its engine, narrowed by precision, then by
    the suffix its name ends with (`_qdq_trt.onnx`), then the table's order."""
    from runtime.backends.provenance import latest_export

    found = latest_export(p)
    report = found[1] if found else {}
    for r in report.get("results") or []:
        if (isinstance(r, dict) and r.get("format") in FORMATS and r.get("file")
                and Path(r["file"]).name == p.name):
            return r["format"], report
    cands = [f for f in FORMATS.values() if f.engine == engine]
    cands = [f for f in cands if f.precision == precision] or cands
    named = [f for f in cands if p.name.lower().endswith(f.suffix)]
    best = max(named, key=lambda f: len(f.suffix)) if named else cands[0]
    return best.name, {}


def bench_students(spec: str | Sequence[str] | None, models: str | Sequence[str] | None,
                   hash_files: bool = True) -> list[Student]:
    """The students to benchmark: --weights, else the defaults, but none when --model gives
    files and --weights is not given (the user asked for those files only)."""
    from .artifacts import resolve_students

    if spec is None and split_list(models):
        return []
    return resolve_students(spec, hash_files=hash_files)
