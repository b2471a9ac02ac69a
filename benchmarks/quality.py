"""Quality on a held-out set: PSNR/SSIM against ground truth for the blurred input, the teacher,
each PyTorch student and every exported artifact (run by the runtime's backends at full
resolution), each student's SSIM against the teacher, and the checks:

- ssim-ratio: a student's mean SSIM to ground truth >= min_ssim_ratio x the teacher's (default);
- ssim-gain (instead, when min_ssim_gain is given): the student's SSIM gain over the blurred
  input >= min_ssim_gain x the teacher's gain. Against a strong teacher on heavy blur the ratio
  says little (the blurred input itself keeps ~0.8 of the teacher's SSIM); the gain fraction is
  0 for an identity student and 1 for one that matches the teacher;
- parity: every artifact within its `optimize.export.Thresholds` gate against the FP32 PyTorch
  student on the same images (FP32 formats: max abs error; INT8/FP16: worst-case SSIM).

Metrics are `distill.metrics`' (PSNR as published tables compute it: RGB, model outputs rounded
to 8 bits, data range 255, no border crop; SSIM's Gaussian window, channels averaged:
`CONVENTION`), averaged over the images; parity uses `optimize.parity.compare` and
reports the worst image, like `sharpen export`.

Teacher outputs are expensive on a CPU (seconds per 512x512 tile), so they are cached on disk:
``<cache>/teacher/<weights hash>-<config>-t<tile>-o<overlap>-torch<version>/<input hash>.npy``,
each computed under that folder's lock, so runs sharing the cache compute it once.
"""
from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from distill.data.label_cache import sha256_array
from distill.data.sources import SourceInfo, spread
from runtime.atomic import atomic_write_bytes
from runtime.console import count, first_line
from runtime.formats import FORMATS
from distill.teacher_tiles import OVERLAP as TEACHER_OVERLAP, TILE as TEACHER_TILE

from .artifacts import (BenchError, Student, cache_lock, default_cache_root, file_hash,
                        is_not_requested, path_unless_named, precision_label)

DEFAULT_MIN_SSIM_RATIO = 0.95
SSIM_CHECKS = ("ssim-ratio", "ssim-gain")
QUICK_LIMIT = 4
# The status of a row an interrupted run did not finish (it has no numbers and no check).
MISSING_REASON = "not measured: the run was interrupted first"


# --------------------------------------------------------------------------- data

@dataclass
class Pair:
    """One held-out image; pixels are read on access (a GoPro test split does not fit in RAM)."""
    name: str
    _blurred: Callable[[], np.ndarray]
    _sharp: Callable[[], np.ndarray]
    files: Optional[tuple[Path, Path]] = None   # (blurred, sharp) where read from files

    @property
    def blurred(self) -> np.ndarray:
        return self._blurred()

    @property
    def sharp(self) -> np.ndarray:
        return self._sharp()


def _const(a: np.ndarray) -> Callable[[], np.ndarray]:
    return lambda: a


def _reader(path: Path) -> Callable[[], np.ndarray]:
    from distill.images import ImageReadError, read_image

    def read() -> np.ndarray:
        try:
            return read_image(path)
        except ImageReadError as e:   # every model is scored on the same images: stop, say which
            raise BenchError(f"{e} (a held-out image of --data: fix or remove it)") from None
    return read


def scored_samples(info: SourceInfo, limit: Optional[int]) -> tuple[list, list]:
    """(the pairs scored, all of them) of a resolved --data source: its blurred/sharp image
    pairs, `limit` of them spread evenly over the set. `sharpen demo` says how many its bench
    scores from this, so the two cannot disagree."""
    samples = [s for s in info.samples if s.gt is not None and s.frame is None]
    return spread(samples, limit), samples


def load_pairs(data: Optional[str] = None, limit: Optional[int] = None
               ) -> tuple[list[Pair], str]:
    """Held-out (blurred, sharp) pairs and a description. data: None/'embedded' for the
    embedded default's fixed test split, else a GoPro / paired-folder spec (its test split)."""
    if limit is not None and limit < 1:
        raise BenchError(f"--limit must be >= 1, got {limit}")
    if not data or data == "embedded":
        from distill.data.embedded import blurred_pairs

        all_pairs = [Pair(n, _const(b), _const(s)) for n, b, s in blurred_pairs("test")]
        pairs = spread(all_pairs, limit)
        shown = ("chelsea, coffee, rocket + dead-leaves 9000-9002, moderate and heavy blur"
                 if len(pairs) == len(all_pairs) else ", ".join(p.name for p in pairs))
        # "Synthetic" in the description itself: the quality table's SSIM was read as a
        # real-blur number, which the real-blur section (--real-pairs) alone measures.
        desc = (f"embedded default, synthetic camera-shake blur, fixed test split "
                f"({len(pairs)} of {len(all_pairs)} pairs: {shown})")
        return pairs, desc
    from distill.data.sources import SourceError, resolve_source

    try:
        info = resolve_source(data, "test", frames=False)   # (a folder's clips: not decoded)
    except SourceError as e:
        raise BenchError(str(e)) from None
    chosen, samples = scored_samples(info, limit)
    if not samples:
        where = " in its test split" if info.split else ""
        raise BenchError(f"{data}: no blurred/sharp image pairs{where} (the held-out set needs "
                         "ground truth; footage without it goes to --real-nogt: side-by-side "
                         "crops and each model's PSNR to the teacher's output)")
    pairs = [Pair(s.name, _reader(s.input), _reader(s.gt), (s.input, s.gt)) for s in chosen]
    split = f", split {info.split}" if info.split else ""
    return pairs, (f"{info.kind} {info.root}{split} ({len(pairs)} of {len(samples)} pairs)")


# --------------------------------------------------------------------------- teacher outputs

def array_hash(a: np.ndarray, n: int = 24) -> str:
    return sha256_array(a)[:n]


class TeacherOutputs:
    """Teacher (Gaussian-blended tiled Restormer) outputs, cached on disk by weights hash, tile
    settings, torch version and input hash. An output is computed under the cache folder's
    lock (`artifacts.cache_lock`), so runs sharing the cache compute each one once. `say`
    takes the note that this run waits for another (said once)."""

    def __init__(self, weights: Optional[str | os.PathLike] = None, config: Optional[str] = None,
                 tile: int = TEACHER_TILE, overlap: int = TEACHER_OVERLAP,
                 cache_root: Optional[str | os.PathLike] = None, device: str = "auto",
                 say: Optional[Callable[[str], None]] = None):
        from distill.teacher import BUNDLED_TEACHER, models_dir

        # `teacher` is the bundled one, as everywhere --weights takes shipped names.
        path = (models_dir() / BUNDLED_TEACHER if not weights or str(weights) == "teacher"
                else Path(weights))
        if not path.is_file():
            raise BenchError(f"teacher weights not found: {path}")
        self.weights, self.config, self.device = path, config, device
        self.tile, self.overlap = tile, overlap
        self.hash = file_hash(path)
        root = Path(cache_root or default_cache_root())
        # torch's version too: its kernels give other numbers after an upgrade, and outputs
        # kept from before would be scored as this teacher's.
        from .machine import library_versions

        self.torch_version = library_versions(["torch"])["torch"] or "none"
        self.folder = root / "teacher" / (f"{self.hash}-{config or 'ckpt'}-t{tile}-o{overlap}"
                                          f"-torch{self.torch_version}")
        from distill.teacher import Teacher

        # Loaded now (a fraction of a second) rather than when the first output is missing:
        # weights the loader refuses (a pickle holding code, a student) stop the bench before
        # the students' exports, which take minutes, not after them. CheckpointError if so.
        self._teacher = Teacher.load(path, config, device)
        self.computed = 0
        self.cached = 0
        self._say = say or (lambda msg: None)
        self._said: set[str] = set()

    def _say_once(self, msg: str) -> None:
        """The wait note once a run, not once per image the other run computes first."""
        if msg not in self._said:
            self._said.add(msg)
            self._say(msg)

    @property
    def teacher(self):
        return self._teacher

    def describe(self) -> dict:
        return {"weights": str(self.weights), "hash": self.hash, "config": self.config,
                "tile": self.tile, "overlap": self.overlap, "torch": self.torch_version,
                "cache": str(self.folder)}

    def _path(self, blurred: np.ndarray) -> Path:
        return self.folder / f"{array_hash(np.asarray(blurred, np.float32))}.npy"

    def has(self, blurred: np.ndarray) -> bool:
        """Whether this input's output is already in the cache (no teacher run needed)."""
        return self._path(blurred).is_file()

    def __call__(self, blurred: np.ndarray) -> np.ndarray:
        path = self._path(blurred)
        if (out := self._cached(path, blurred)) is not None:
            return out
        # Two runs sharing the cache each ran the teacher on an input neither had yet (minutes
        # on a CPU): the second now waits for the first's output, then reads it.
        with cache_lock(self.folder, self._say_once, "computing teacher outputs"):
            if (out := self._cached(path, blurred)) is not None:
                return out
            out = self.teacher.sharpen(np.asarray(blurred, np.float32), tile=self.tile,
                                       overlap=self.overlap)
            out = np.ascontiguousarray(out, dtype=np.float32)
            buf = io.BytesIO()
            np.save(buf, out)
            atomic_write_bytes(path, buf.getvalue())
        self.computed += 1
        return out

    def _cached(self, path: Path, blurred: np.ndarray) -> Optional[np.ndarray]:
        """The cached output of this input, counted; None when there is none (or a damaged
        one, computed again)."""
        if path.is_file():
            try:
                out = np.load(path)
                if out.shape == blurred.shape:
                    self.cached += 1
                    return out
            except (OSError, ValueError):
                pass
        return None


# --------------------------------------------------------------------------- evaluation

@dataclass
class QualityResult:
    data: str
    images: list[dict]          # name, shape, input psnr/ssim (the blur's difficulty)
    rows: list[dict]            # one per model (input, teacher, students, artifacts)
    checks: list[dict]
    crops: dict                 # image name -> {"blurred", "sharp", "teacher", "<student>": arr}
    settings: dict

    @property
    def ok(self) -> bool:
        return all(c["passed"] for c in self.checks)

    @property
    def failed(self) -> list[dict]:
        return [c for c in self.checks if not c["passed"]]

    def row(self, key: str) -> Optional[dict]:
        return next((r for r in self.rows if r["key"] == key), None)

    def check(self, key: str, kind: str) -> Optional[dict]:
        """The check of `kind` for a row; kind "ssim" finds whichever SSIM gate ran."""
        kinds = SSIM_CHECKS if kind == "ssim" else (kind,)
        return next((c for c in self.checks if c["model"] == key and c["check"] in kinds), None)

    def to_dict(self) -> dict:
        from distill.metrics import CONVENTION
        return {"data": self.data, "images": self.images, "rows": self.rows,
                "checks": self.checks, "settings": self.settings, "convention": CONVENTION}


def _row(key: str, model: str, kind: str, fmt: str, backend: str, precision: str,
         student: Optional[str] = None, status: str = "ok", reason: Optional[str] = None) -> dict:
    return {"key": key, "model": model, "kind": kind, "student": student, "format": fmt,
            "backend": backend, "precision": precision, "status": status, "reason": reason,
            "n_images": 0, "psnr": None, "ssim": None, "ssim_teacher": None, "parity": None,
            "images": []}


def _mean(rows: list[dict], key: str) -> Optional[float]:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(vals)) if vals else None


def evaluate(pairs: Sequence[Pair], teacher: TeacherOutputs, students: Sequence[Student],
             artifact_sets: dict, min_ssim_ratio: float = DEFAULT_MIN_SSIM_RATIO,
             thresholds=None, min_ssim_gain: Optional[float] = None, threads: int = 0,
             n_crops: int = 3, data_desc: str = "",
             progress: bool = True, say=None, partial: Optional[dict] = None,
             models: Sequence = (), failed: Optional[dict] = None) -> QualityResult:
    """Run everything on every pair and compute metrics and checks (see the module doc).

    artifact_sets: student name -> benchmarks.artifacts.ArtifactSet (or None: PyTorch only).
    models: `benchmarks.given.GivenModel`s (--model), a row each after the students', gated
    as the students are; compared with a student's FP32 output (parity) where that student's
    checkpoint is the one the file records.
    failed: student name -> why its export raised: its rows are status "failed" with that
    reason, nothing of it is run, and no check is made on it here (`failed_checks`).
    The outputs of the `n_crops` pairs with the lowest input PSNR are kept for the figure.
    With `partial`, a KeyboardInterrupt (Ctrl-C, SIGTERM) first puts partial["quality"]: the
    result of the rows that ran on every image, the others with status "missing"."""
    from distill.checkpoint import load_student
    from distill.images import misoriented
    from distill.metrics import SSIM_MIN_SIDE, psnr, quantise_8bit, ssim
    from optimize.export import Thresholds
    from optimize.parity import load_runner, torch_runner

    say = say or (lambda msg: None)
    th = thresholds or Thresholds()
    if not pairs:
        raise BenchError("no held-out images to evaluate")

    # ---- difficulty first (cheap): which images get crops in the figure
    images = []
    for p in pairs:
        b, s = p.blurred, p.sharp
        note = misoriented(p.files[0], b, p.files[1], s) if p.files else ""
        if b.shape != s.shape:
            raise BenchError(f"held-out pair {p.name} of --data: blurred {b.shape[1]}x"
                             f"{b.shape[0]} and sharp {s.shape[1]}x{s.shape[0]} differ in size "
                             + (f"({note}; " if note else "(")
                             + "every model is scored on the same images: fix or remove it)")
        if note:
            raise BenchError(f"held-out pair {p.name} of --data: its sharp image {p.files[1]} "
                             f"{note} (every model is scored on the same images: fix or "
                             "remove it)")
        if min(b.shape[:2]) < SSIM_MIN_SIDE:
            raise BenchError(f"held-out pair {p.name} of --data: {b.shape[1]}x{b.shape[0]} is "
                             f"smaller than SSIM's {SSIM_MIN_SIDE}x{SSIM_MIN_SIDE} window "
                             "(every model is scored on the same images: remove it)")
        images.append({"image": p.name, "shape": list(b.shape), "input_psnr": psnr(b, s),
                       "input_ssim": ssim(b, s)})
    hardest = {d["image"] for d in sorted(images, key=lambda d: d["input_psnr"])[:n_crops]}

    # ---- models. Rows in report order; each model is loaded when its turn comes and released
    # after it has run on every image, so one runner's buffers are alive at a time (ONNX Runtime
    # and LiteRT keep arenas sized for the largest image until closed).
    rows: dict[str, dict] = {}
    rows["input"] = _row("input", "blurred input", "input", "input", "-", "-")
    rows["teacher"] = _row("teacher", "teacher (Restormer, tiled)", "teacher", "teacher",
                           "PyTorch (tiled, Gaussian-blended)", "fp32")
    loaders: dict[str, Callable] = {}
    for st in students:
        key = f"{st.name}/pytorch"
        rows[key] = _row(key, f"student {st.name}", "student", "pytorch", "PyTorch eager",
                         "fp32", st.name)
        if st.name in (failed or {}):
            rows[key].update(status="failed", reason=failed[st.name])
        else:
            loaders[key] = lambda path=st.path: (torch_runner(load_student(path)[0]), None)
        arts = artifact_sets.get(st.name) if artifact_sets else None
        if arts is None:
            continue
        for fmt, art in arts.items.items():
            key = f"{st.name}/{fmt}"
            label = FORMATS[fmt].label if fmt in FORMATS else fmt
            r = _row(key, f"student {st.name}", "artifact", fmt, label, art.precision, st.name)
            if art.float_layers:
                r["float_layers"] = list(art.float_layers)
            rows[key] = r
            if art.status in ("skipped", "failed"):
                r.update(status=art.status, reason=art.reason)
                continue
            if not art.usable:
                r.update(status="error", reason=f"export failed: {art.reason or 'no file'}")
                continue
            r["file"] = art.file
            loaders[key] = lambda file=art.file: load_runner(file, threads=threads)
    for gm in models:
        spec = FORMATS[gm.format]
        r = _row(gm.name, gm.label(), "model", gm.format, spec.label, gm.precision,
                 gm.student_of(students))
        r.update(file=str(gm.path), source=gm.source)
        if gm.float_layers:
            r["float_layers"] = list(gm.float_layers)
        rows[gm.name] = r
        if gm.skipped:
            r.update(status="skipped", reason=gm.skipped)
            continue
        loaders[gm.name] = lambda file=str(gm.path): load_runner(file, threads=threads)

    from runtime.progress import progress as progress_bar

    crops: dict[str, dict] = {}
    teacher_outs: dict[str, np.ndarray] = {}
    bar = progress_bar(total=len(pairs) * (1 + len(loaders)), desc="  quality", unit="run",
                       leave=False, quiet=not progress, file=sys.stderr)
    pending = {"input", "teacher", *loaders}   # rows yet to run on every image
    interrupted: Optional[KeyboardInterrupt] = None
    try:
        for p, info in zip(pairs, images):
            bar.set_postfix_str(f"teacher: {p.name}")
            t_out = teacher_outs[p.name] = teacher(p.blurred)
            rows["input"]["images"].append({"image": p.name, "psnr": info["input_psnr"],
                                            "ssim": info["input_ssim"]})
            # Scored as the 8-bit image, as the students' rows (_run_one) and `sharpen
            # evaluate` score theirs: the SSIM-ratio gate divides one gain by the other.
            saved = quantise_8bit(t_out)
            rows["teacher"]["images"].append({"image": p.name, "psnr": psnr(saved, p.sharp),
                                              "ssim": ssim(saved, p.sharp)})
            if p.name in hardest:
                crops[p.name] = {"blurred": p.blurred, "sharp": p.sharp, "teacher": t_out}
            bar.update(1)
        pending -= {"input", "teacher"}
        # (student, image) -> the FP32 PyTorch output and its SSIM to ground truth
        refs: dict[tuple[str, str], tuple[np.ndarray, float]] = {}
        for key, load in loaders.items():
            r = rows[key]
            bar.set_postfix_str(key)
            try:
                run, runner_name = load()
            except Exception as e:  # noqa: BLE001 - reported as an error row and a failed check
                first = first_line(e, None)
                what = Path(r["file"]).name if r.get("file") else key
                r.update(status="error", reason=f"cannot load {what}: {first}")
                bar.update(len(pairs))
                pending.discard(key)
                continue
            if runner_name:
                r["runner"] = runner_name
            try:
                for p in pairs:
                    _run_one(r, run, p, teacher_outs[p.name], refs, crops)
                    bar.update(1)
            finally:
                close = getattr(run, "close", None)
                if close:
                    try:
                        close()
                    except Exception:  # noqa: BLE001
                        pass
            pending.discard(key)
    except KeyboardInterrupt as e:
        if partial is None:
            raise
        interrupted = e
        for key in pending:
            rows[key].update(status="missing", reason=MISSING_REASON, images=[])
    finally:
        bar.close()

    # ---- aggregates
    for r in rows.values():
        if r["status"] != "ok" or not r["images"]:
            continue
        r["n_images"] = len(r["images"])
        r["psnr"], r["ssim"] = _mean(r["images"], "psnr"), _mean(r["images"], "ssim")
        r["ssim_teacher"] = _mean(r["images"], "ssim_teacher")
        if r["kind"] in ("artifact", "model"):
            per = [i for i in r["images"] if "max_abs" in i]
            if per:
                worst_ssim = min(per, key=lambda i: i["parity_ssim"])
                spec = FORMATS[r["format"]]
                worst_drop = max(per, key=lambda i: i["ssim_drop"])
                par = {"max_abs": max(i["max_abs"] for i in per),
                       "psnr": min(i["parity_psnr"] for i in per),
                       "ssim": worst_ssim["parity_ssim"], "gate": spec.gate,
                       "ssim_drop": worst_drop["ssim_drop"],
                       "ssim_drop_image": worst_drop["image"]}
                passed, metric, limit = th.judge(spec.gate, par["max_abs"], par["ssim"],
                                                 par["psnr"], par["ssim_drop"])
                worst = {"max_abs": max(per, key=lambda i: i["max_abs"]),
                         "ssim_drop": worst_drop}.get(metric, worst_ssim)
                par.update(metric=metric, threshold=limit, passed=bool(passed),
                           worst_image=worst["image"])
                r["parity"] = par

    checks = _checks(rows, students, min_ssim_ratio, min_ssim_gain)
    settings_models = [gm.to_dict() for gm in models]
    settings = {"min_ssim_ratio": None if min_ssim_gain is not None else min_ssim_ratio,
                "min_ssim_gain": min_ssim_gain,
                "thresholds": {"fp32_max_abs": th.fp32_max_abs, "min_ssim": th.min_ssim,
                               "min_psnr": th.min_psnr, "max_ssim_drop": th.max_ssim_drop},
                "teacher": teacher.describe(), "hardest": sorted(hardest),
                "models": settings_models,
                "teacher_outputs": {"cached": teacher.cached, "computed": teacher.computed}}
    result = QualityResult(data_desc, images, list(rows.values()), checks, crops, settings)
    if interrupted is not None:
        partial["quality"] = result
        raise interrupted
    return result


def failed_checks(students: Sequence[Student], failed: dict) -> list[dict]:
    """A failed check for each student whose export raised (`failed`: name -> why), naming
    its checkpoint: the run exits 1 with the others measured."""
    return [{"check": "student", "model": st.name, "metric": None, "value": None,
             "threshold": None, "passed": False,
             "message": f"student {st.name!r}{path_unless_named(st.path, failed[st.name])}: "
                        f"not measured: {failed[st.name]}"}
            for st in students if st.name in failed]


def planned_quality_keys(students: Sequence[Student], artifact_sets: Optional[dict] = None,
                         buildable: Optional[Sequence[str]] = None, models: Sequence = ()
                         ) -> list[str]:
    """The keys of the rows `evaluate` makes for these students and --model files, in its
    order, less those of formats the export skipped (`artifact_sets`, as far as it got; for a
    student not exported yet, those not in `buildable`, when given: not requested, or not
    buildable here) and of files this machine cannot run."""
    def skipped(st: Student, fmt: str) -> bool:
        arts = (artifact_sets or {}).get(st.name)
        if arts is None:
            return buildable is not None and fmt not in buildable
        return arts.get(fmt).status == "skipped"

    return ["input", "teacher"] + [f"{st.name}/{fmt}" for st in students
                                   for fmt in ("pytorch", *FORMATS)
                                   if fmt == "pytorch" or not skipped(st, fmt)] \
        + [gm.name for gm in models if not gm.skipped]


def _run_one(r: dict, run: Callable, p: Pair, t_out: np.ndarray,
             refs: dict[tuple[str, str], tuple[np.ndarray, float]],
             crops: dict[str, dict]) -> None:
    """One model on one image: metrics into r["images"]; a student's output is kept as the
    reference its artifacts are compared with, and as a crop when the image is in the figure."""
    from distill.metrics import psnr, quantise_8bit, ssim
    from optimize.parity import compare

    if r["status"] != "ok":
        return
    try:
        out = np.asarray(run(p.blurred), np.float32)
    except Exception as e:  # noqa: BLE001
        first = first_line(e, None)
        r.update(status="error", reason=f"inference failed on {p.name}: {first}")
        return
    # Scored as the 8-bit image a user saves, as `sharpen evaluate` and published tables
    # score it; parity below compares the outputs themselves.
    saved = quantise_8bit(out)
    img = {"image": p.name, "psnr": psnr(saved, p.sharp), "ssim": ssim(saved, p.sharp),
           "ssim_teacher": ssim(saved, quantise_8bit(t_out))}
    if r["kind"] == "student":
        refs[r["student"], p.name] = out, img["ssim"]
        if p.name in crops:
            crops[p.name][r["student"]] = np.clip(out, 0, 1)
    if r["kind"] == "model" and p.name in crops:   # a --model file: a column of its own
        crops[p.name][r["key"]] = np.clip(out, 0, 1)
    if r["kind"] != "student":
        if (r["student"], p.name) in refs:
            ref, ref_ssim = refs[r["student"], p.name]
            c = compare(out, ref)
            img.update(max_abs=c["max_abs"], parity_psnr=c["psnr"], parity_ssim=c["ssim"],
                       ssim_drop=ref_ssim - img["ssim"])
    r["images"].append(img)


def _gain_check(key: str, who: str, how: str, s: float, t: float, b: float,
                gain: float) -> dict:
    """`who`: "student 'fast'" (or "model 'x'"), `how`: "PyTorch FP32" (its backend)."""
    tg, sg = t - b, s - b
    if tg <= 0:
        return {"check": "ssim-gain", "model": key, "metric": "ssim", "value": s,
                "threshold": None, "passed": False,
                "message": f"{who}: the teacher's SSIM {t:.4f} does not improve on the "
                           f"blurred input's {b:.4f}, so there is no gain to keep; use "
                           "--min-ssim-ratio or a better teacher"}
    frac = sg / tg
    ok = frac >= gain
    msg = (f"{who} ({how}): SSIM gain over the blurred input {sg:+.4f} = "
           f"{frac:.2f} x the teacher's {tg:+.4f} {'>=' if ok else '<'} {gain:g} "
           f"(SSIM: input {b:.4f}, student {s:.4f}, teacher {t:.4f})")
    if not ok:
        msg += (f": {b + gain * tg - s:.4f} SSIM short of the {b + gain * tg:.4f} that "
                f"--min-ssim-gain {gain:g} asks for")
    return {"check": "ssim-gain", "model": key, "metric": "ssim", "value": s,
            "threshold": b + gain * tg, "gain_fraction": frac, "min_gain": gain,
            "teacher_ssim": t, "input_ssim": b, "passed": bool(ok), "message": msg}


def _backend_precision(r: dict) -> str:
    """A --model row's backend and precision, the precision once: "ONNX Runtime INT8", but
    "ModelOpt QDQ on ORT CPU, INT8" for a backend label that does not name it."""
    prec = r["precision"].upper()
    return r["backend"] if prec in r["backend"].upper().split() else f"{r['backend']}, {prec}"


def _checks(rows: dict[str, dict], students: Sequence[Student], ratio: float,
            gain: Optional[float] = None) -> list[dict]:
    checks = []
    t, b = rows["teacher"], rows["input"]
    # The students (PyTorch FP32), then the --model files this machine ran, by their backend.
    gated = [(rows[f"{st.name}/pytorch"], f"student {st.name!r}", "PyTorch FP32")
             for st in students]
    gated += [(r, f"model {r['key']!r}", _backend_precision(r))
              for r in rows.values() if r["kind"] == "model" and r["status"] != "skipped"]
    for r, who, how in gated:
        key = r["key"]
        kind = "ssim-ratio" if gain is None else "ssim-gain"
        if "missing" in (r.get("status"), t.get("status"), b.get("status")):
            continue   # an interrupted run's: not measured, so neither passed nor failed
        if r.get("status") == "failed":
            continue   # its export raised: one check says so (`failed_checks`)
        if r["ssim"] is None or t["ssim"] is None or b["ssim"] is None:
            checks.append({"check": kind, "model": key, "metric": "ssim", "value": None,
                           "threshold": None, "passed": False,
                           "message": f"{who} ({how}): no SSIM measured "
                                      f"({r['reason'] or t['reason'] or 'no images'})"})
            continue
        if gain is not None:
            checks.append(_gain_check(key, who, how, r["ssim"], t["ssim"], b["ssim"], gain))
            continue
        thr = ratio * t["ssim"]
        ok = r["ssim"] >= thr
        msg = (f"{who} ({how}): mean SSIM vs ground truth {r['ssim']:.4f} "
               f"{'>=' if ok else '<'} {ratio:g} x teacher SSIM {t['ssim']:.4f} = {thr:.4f}")
        if not ok:
            # How far off, and which option set the bar (the same name in `sharpen bench` and
            # `pytest benchmarks/`): "<" alone left the reader to subtract and to find the flag.
            share = (f", {r['ssim'] / t['ssim']:.3f} x the teacher's" if t["ssim"] > 0
                     else "")
            msg += (f": {thr - r['ssim']:.4f} short{share} (the gate is --min-ssim-ratio "
                    f"{ratio:g}; --min-ssim-gain G gates instead on the fraction of the "
                    "teacher's gain over the blurred input)")
        checks.append({"check": "ssim-ratio", "model": key, "metric": "ssim",
                       "value": r["ssim"], "threshold": thr, "ratio": ratio,
                       "teacher_ssim": t["ssim"], "passed": bool(ok), "message": msg})
    for r in rows.values():
        if r["kind"] not in ("artifact", "model") or r["status"] in ("skipped", "missing",
                                                                    "failed"):
            continue
        if r["kind"] == "model" and not (r["student"] and r["parity"]):
            continue   # no FP32 student to compare with: gated on SSIM above
        label = (f"student {r['student']!r} {r['format']} ({r['backend']})"
                 if r["kind"] == "artifact" else
                 f"model {r['key']!r} ({r['backend']}; student {r['student']!r})")
        if r["status"] == "error" or r["parity"] is None:
            checks.append({"check": "parity", "model": r["key"], "metric": None, "value": None,
                           "threshold": None, "passed": False,
                           "message": f"{label}: {r['reason'] or 'no parity measured'}"})
            continue
        par = r["parity"]
        m, v, thr = par["metric"], par[par["metric"]], par["threshold"]
        what = {"max_abs": "worst-case max abs error", "ssim": "worst-case SSIM",
                "psnr": "worst-case PSNR",
                "ssim_drop": "worst-case loss of SSIM to ground truth against"}[m]
        if m in ("max_abs", "ssim_drop"):
            rel = "<" if par["passed"] else ">="
        else:
            rel = ">=" if par["passed"] else "<"
        versus = "the FP32 PyTorch output" if m == "ssim_drop" else "to the FP32 PyTorch output"
        msg = (f"{label}: {what} {versus} {v:.4g} {rel} {thr:g} (image {par['worst_image']})")
        checks.append({"check": "parity", "model": r["key"], "metric": m, "value": v,
                       "threshold": thr, "passed": bool(par["passed"]), "message": msg})
    return checks


def format_table(result: QualityResult) -> list[list[str]]:
    """Rows for a text/markdown table: model, format, backend, PSNR, SSIM, SSIM to teacher
    output, parity, status. Formats --formats left out have no row (`not_requested_line`
    names them)."""
    out = []
    for r in result.rows:
        if is_not_requested(r):
            continue
        def f(v, d=4):
            return "-" if v is None else f"{v:.{d}f}"
        par = r.get("parity")
        if par:
            v = par[par["metric"]]
            ptxt = (f"{par['metric']} {v:.2g}" if par["metric"] == "max_abs"
                    else f"{par['metric']} {v:.4f}") + (" ok" if par["passed"] else " FAIL")
        else:
            ptxt = "-"
        reason = str(r["reason"] or "")
        if " (" in reason and not reason.startswith("("):
            reason = reason.split(" (")[0]   # the advice in parentheses stays in the JSON
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {reason}"
        if r["status"] == "ok" and par and not par["passed"]:
            # "ok" (measured) beside a parity FAIL read as fit to deploy.
            status = "parity FAILED: do not deploy"
        drop = f"{par['ssim_drop']:.4f}" if par and par.get("ssim_drop") is not None else "-"
        out.append([r["model"], r["format"], r["backend"], precision_label(r),
                    f(r["psnr"], 2), f(r["ssim"]), f(r["ssim_teacher"]), ptxt, drop, status])
    return out


# "SSIM vs teacher" read as the gate's ratio (student SSIM over teacher SSIM, both to ground
# truth); the column is the SSIM between the two outputs.
TEACHER_SSIM_HEADER = "SSIM to teacher output"
TEACHER_SSIM_MEANING = (f"{TEACHER_SSIM_HEADER}: a model's output against the teacher's output, "
                        "not the gate's ratio")
TABLE_HEADERS = ["model", "format", "backend", "precision", "PSNR dB", "SSIM",
                 TEACHER_SSIM_HEADER, "parity vs PyTorch", "SSIM lost vs FP32 (worst)",
                 "status"]


def held_out_label(rep: dict) -> str:
    """The held-out set in a few words, for titles and axis labels: which set, whether its blur
    is synthetic, how many images the means are over."""
    n = len((rep.get("quality") or {}).get("images") or [])
    data = (rep.get("settings") or {}).get("data") or "embedded"
    what = "embedded test split, synthetic blur" if data == "embedded" else str(data)
    return f"{what}, {count(n, 'image')}"


def real_blur_note(rep: dict) -> str:
    """Where the held-out set is synthetic, what says how the models do on real blur."""
    if ((rep.get("settings") or {}).get("data") or "embedded") != "embedded":
        return ""
    real = rep.get("real_blur") or {}
    if real.get("pairs") or real.get("nogt"):
        return ("Its blur is synthetic: the Real blur section is the measure on real camera "
                "blur.")
    return ("Its blur is synthetic, and this run measured no real blur (`--real-pairs DIR` "
            "with blurred/sharp pairs, `--real-nogt` without ground truth): these numbers "
            "may not hold on real camera blur.")


def quality_legend(settings: dict) -> str:
    """The line under the terminal's quality table: what its SSIM columns compare and the gate
    this run used (`settings`: the quality section's). report.md says it above its table."""
    gain = settings.get("min_ssim_gain")
    if gain is not None:
        gate = (f"student's SSIM gain over the blurred input >= {gain:g} x the teacher's "
                "(--min-ssim-gain)")
    else:
        ratio = settings.get("min_ssim_ratio") or DEFAULT_MIN_SSIM_RATIO
        gate = f"student SSIM >= {ratio:g} x teacher SSIM (--min-ssim-ratio)"
    return f"PSNR dB, SSIM: to ground truth; {TEACHER_SSIM_MEANING}; gate: {gate}"
