"""Subcommands of the distill package: teacher, models, synth, labels, train-teacher, distill.

This module must import without torch (the `sharpen` parser is built on devices that only have
the runtime); every handler imports what it needs."""
from __future__ import annotations

import argparse
import difflib
import os
import re
import statistics
import sys
from pathlib import Path
from typing import Any

from runtime.cli_errors import SharpenError, interrupt_exit_code
from runtime.console import HelpFormatter, count, shell_join
from runtime.host import ZERO_THREADS, limit_note, threads_help
from .teacher_tiles import (BATCH as TEACHER_BATCH, BATCH_HELP, CONFIG_HELP, OVERLAP_HELP,
                            TILE as TEACHER_TILE, TILE_HELP, WEIGHTS_HELP)


def _err(msg: str) -> int:
    raise SharpenError(msg)


def _note(line: str) -> None:
    """A line beside the results (a CPU limit that set the threads), on stderr."""
    print(line, file=sys.stderr)


def _out_of_range(flag: str, value: float, lo: float, hi: float | None = None,
                  note: str = "") -> str:
    """The usage error when `value` is not within [lo, hi] (hi None: no upper bound), else ''.
    Written as comparisons that NaN fails (a `value < lo` test lets it through), and a finite
    hi refuses inf."""
    if lo <= value if hi is None else lo <= value <= hi:
        return ""
    want = f"in [{lo:g}, {hi:g}]" if hi is not None else f">= {lo:g}"
    return f"{flag} must be {want}{note}, got {value:g}"


# ------------------------------------------------------------------ sharpen teacher

def cmd_teacher(args: argparse.Namespace) -> int:
    from .images import list_images
    from .teacher import check_device, check_threads, set_torch_threads

    from .teacher_tiles import overlap_for, tiling_cost, tiling_problem

    if args.overlap is None:
        args.overlap = overlap_for(args.tile)
    # Usage errors before the model loads and before any image is written.
    problem = tiling_problem(args.tile, args.overlap, args.batch_size)
    if problem:
        return _err(problem)
    said = tiling_cost(args.tile, args.overlap)
    if said:
        print(f"warning: {said}", file=sys.stderr)
    check_device(args.device)
    check_threads(args.threads)
    set_torch_threads(args.threads, _note)
    files: list[tuple[Path, Path]] = []  # (input, relative output name)
    for src in map(Path, args.inputs):
        if src.is_dir():
            found = list_images(src)
            if not found:
                print(f"warning: {src}: no images in this folder", file=sys.stderr)
            _warn_left_out_of_folder(src, Path(args.out))
            files += [(p, Path(p.name)) for p in found]
        else:
            files.append((src, Path(src.name)))
    seen: set[Path] = set()
    unique = []
    for src, rel in files:
        key = src.resolve()
        if key in seen:
            print(f"warning: {src} given more than once; sharpened once", file=sys.stderr)
            continue
        seen.add(key)
        unique.append((src, rel))
    files = unique
    if not files:
        return _err("no input images (" + ", ".join(args.inputs) + ")")
    if not any(src.exists() for src, _ in files):
        # Said before the teacher loads (a minute for the official weights), as a usage error
        # like a missing checkpoint; one missing among others is skipped with the rest done.
        return _err("no such file or folder: " + ", ".join(str(s) for s, _ in files))
    out = Path(args.out)
    from runtime.output_paths import make_folder, refuse_overwriting_inputs
    from runtime.sinks import SinkError
    try:
        refuse_overwriting_inputs(out, {p.parent for p, _ in files if p.exists()})
        make_folder(out, "--out")
    except (ValueError, SinkError) as e:
        return _err(str(e))
    from .run_lock import RunLocked, run_lock
    try:
        # One run per --out: two at once each wrote the other's images again, and the first
        # to compact its record removed the journal the other was appending to.
        with run_lock(out, doing="writing teacher outputs", flag="--out",
                      name=_TeacherRun.LOCK):
            return _teacher_into(args, files, out)
    except RunLocked as e:   # only the lock raises it
        return _err(str(e))


def _teacher_into(args: argparse.Namespace, files: list[tuple[Path, Path]], out: Path) -> int:
    """`sharpen teacher`'s outputs of `files` written into `out`, whose lock is held."""
    import numpy as np

    from .checkpoint import CheckpointError
    from .images import ImageReadError, is_image, to_rgb_float, write_image
    from .teacher import Teacher
    from .teacher_tiles import tiling_context
    from runtime.atomic import remove_killed_writes
    from runtime.imageio import decode_image, icc_profile
    remove_killed_writes(out)   # a killed run's half-written outputs, up to ~100 MB each
    try:
        teacher = Teacher.load(args.teacher_weights, args.config, device=args.device)
    except (CheckpointError, ValueError) as e:
        return _err(str(e))
    # Once it is loaded: its checkpoint says which crops it was trained on.
    said = tiling_context(args.tile, teacher.train_crop)
    if said:
        print(f"warning: {said}", file=sys.stderr)
    files = _unique_png_names(files)
    run = _TeacherRun(out, {"weights": teacher.weights_id, "config": teacher.config_name,
                            "tile": args.tile, "overlap": args.overlap,
                            "bits": 16 if args.bits16 else 8,
                            "device": teacher.device.type}, resume=args.resume)
    todo = [(src, rel) for src, rel in files if not run.is_done(src, rel)]
    if len(todo) < len(files):
        print(f"resuming: {len(files) - len(todo)} of {count(len(files), 'image')} already in "
              f"{out} "
              "from an earlier run with the same weights and settings (--no-resume writes them "
              "again)", file=sys.stderr)
    failed, done = 0, len(files) - len(todo)
    from runtime.imageio import VIDEO_EXTS, file_header_size
    from runtime.tiling import count_tiles
    from tqdm import tqdm

    from .restormer import Restormer

    def tiles(size: tuple[int, int] | None) -> int:
        return count_tiles(size[1], size[0], args.tile, args.overlap,
                           Restormer.multiple) if size else 0

    # One bar in tiles over the whole folder: counted in images, its rate and ETA were those
    # of the images so far, hours off where a 48-megapixel photo follows 12-megapixel ones.
    # Not read under --quiet: a folder's headers read before the first image, for no bar.
    sizes = {} if args.quiet else {src: file_header_size(src) for src, _ in todo}
    bar = tqdm(total=sum(tiles(s) for s in sizes.values()), desc="teacher", unit="tile",
               disable=args.quiet, dynamic_ncols=True)
    try:
        for src, rel in todo:
            bar.set_postfix_str(f"{done + failed + 1}/{len(files)}: {src.name}", refresh=False)
            base, planned = bar.n, tiles(sizes.get(src))

            def on_tile(n: int, total: int) -> None:
                nonlocal planned
                if total != planned:   # a size the header did not give, or gave wrong
                    bar.total += total - planned
                    planned = total   # once: this is called after every batch
                bar.n = base + n
                bar.refresh()
            try:
                if not src.exists():
                    raise ImageReadError(f"{src}: no such file")
                if src.suffix.lower() in VIDEO_EXTS:
                    raise ImageReadError(f"{src}: a video; `sharpen labels --data VIDEO` runs "
                                         "the teacher over a video's frames")
                if not is_image(src):
                    raise ImageReadError(f"{src}: not an image file extension")
                raw = decode_image(src)   # its bit depth, which the float image no longer has
                if raw.dtype == np.uint16 and not args.bits16:
                    tqdm.write(f"warning: {src} is 16-bit; written as 8-bit PNG (--bits16 keeps "
                               "16 bits)", file=sys.stderr)
                img = to_rgb_float(raw, str(src))
                del raw   # each copy of a 48-megapixel photo is hundreds of MB
                y = teacher.sharpen(img, tile=args.tile, overlap=args.overlap,
                                    batch_size=args.batch_size, on_tile=on_tile)
                del img
                # As `sharpen run` keeps it: without it a phone's Display P3 photo is shown
                # as sRGB, its colours duller.
                write_image(out / rel, y, bits=16 if args.bits16 else 8,
                            icc=icc_profile(src.read_bytes()))
                del y   # kept, it would be held through the next image's reading and tiling
                run.mark_done(src, rel)
                done += 1
            except (ImageReadError, OSError, MemoryError) as e:
                failed += 1
                bar.total -= planned - (bar.n - base)   # its tiles that will not run
                bar.refresh()
                tqdm.write(f"skipped: {e}", file=sys.stderr)
    except KeyboardInterrupt as e:
        bar.close()
        run.close()   # its warning, if any, before the line that ends the run
        print(f"interrupted: {done} of {count(len(files), 'image')} in {out}; the same command "
              "continues with the rest", file=sys.stderr)
        return interrupt_exit_code(e)
    finally:   # the record whole, for a version that reads no journal
        run.close()
    bar.close()
    earlier = len(files) - len(todo)
    print(f"teacher: {count(done, 'image')} in {out}"
          + (f" ({earlier} from an earlier run)" if earlier else "") + f", {failed} failed")
    return 1 if failed else 0


def _warn_left_out_of_folder(folder: Path, out: Path) -> None:
    """Say what `sharpen teacher FOLDER` leaves out: its files that are not images (clips among
    them, which `labels` takes) and its subfolders but `out`. Left out unsaid, a folder of
    footage gave '1 image in OUT, 0 failed' and exit 0 for its one still."""
    from runtime.imageio import VIDEO_EXTS
    from runtime.sources import warn_not_images
    from runtime.warn import warn

    from .images import is_image
    entries = sorted((p for p in folder.iterdir() if not p.name.startswith(".")),
                     key=lambda p: p.name)
    others = [p.name for p in entries if p.is_file() and not is_image(p)]
    clips = any(Path(n).suffix.lower() in VIDEO_EXTS for n in others)
    hint = (f"; `sharpen labels --data {folder}` runs the teacher over its clips' frames"
            if clips else "")
    warn_not_images(str(folder), others, "teacher", hint)
    dirs = [p for p in entries if p.is_dir() and p.resolve() != out.resolve()]
    # An earlier run's --out (its record says so): "name it as an input too" invited
    # sharpening the teacher's outputs again.
    # os.path's: a subfolder this user cannot enter (lost+found) is not one, not a traceback
    ours = [p.name for p in dirs if os.path.isfile(p / _TeacherRun.FILE)]
    subs = [p.name for p in dirs if p.name not in ours]

    def shown(names: list[str]) -> str:
        return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    if ours:
        which = (f"its subfolder {shown(ours)} holds `sharpen teacher` outputs "
                 f"({_TeacherRun.FILE}): left out" if len(ours) == 1 else
                 f"its {len(ours)} subfolders ({shown(ours)}) hold `sharpen teacher` outputs "
                 f"({_TeacherRun.FILE}): left out")
        warn(f"{folder}: {which}")
    if subs:
        which = (f"its subfolder {shown(subs)} is not searched: name it as an input too"
                 if len(subs) == 1 else
                 f"its {len(subs)} subfolders ({shown(subs)}) are not searched: name them as "
                 "inputs too")
        warn(f"{folder}: {which}")


class _TeacherRun:
    """What an earlier `sharpen teacher` into the same folder wrote, so that a re-run after an
    interrupt skips those images (the teacher takes seconds to minutes per image). An image counts
    as done when its output is the file that run wrote (size, mtime), from the same input file
    (path, size, mtime) with the same weights and settings; anything else is written again.

    Each image done is appended to JOURNAL, one line with its settings; FILE, the whole record,
    is rewritten (the journal folded in and removed) once the journal has grown by half of it
    and when the run ends. Rewriting FILE per image made a folder quadratic in its images (a
    record of 4,000 outputs rewritten 4,000 times); a killed run's journal is read back."""

    FILE = ".sharpen-teacher.json"
    JOURNAL = ".sharpen-teacher.journal.jsonl"
    LOCK = ".sharpen-teacher.lock"   # distill.run_lock's, held while a run writes the folder

    def __init__(self, out: Path, settings: dict, resume: bool = True):
        import json

        self.path, self.settings, self.done = out / self.FILE, settings, {}
        self.journal = out / self.JOURNAL
        self.journaled = 0   # images appended to the journal since FILE was rewritten
        # A rewrite of FILE failed (a full disk, FILE a folder): the journal keeps growing,
        # read back by the next run, and FILE is tried again once, at the end (close).
        self.stuck = False
        self.closed = False
        if not resume:
            return
        if self.path.is_file():
            try:
                state = json.loads(self.path.read_text())
            except (OSError, ValueError):
                state = {}     # unreadable: treated as no earlier run, every image is redone
            if isinstance(state, dict) and state.get("settings") == settings \
                    and isinstance(state.get("done"), dict):
                self.done = state["done"]
        try:
            lines = self.journal.read_text().splitlines()
        except OSError:
            lines = []
        for line in lines:   # a line a kill cut short is skipped: that image is redone
            try:
                rec = json.loads(line)
                if rec["settings"] == settings:   # another run's settings: not done for this
                    self.done[str(rec["name"])] = rec["stamp"]
                    # folded in by this run's flush, even one with no image left to write
                    self.journaled += 1
            except (ValueError, KeyError, TypeError):
                continue

    def _stamp(self, src: Path, rel: Path) -> list:
        """The input (path, size, mtime) and the output as written (size, mtime): an output
        that another tool rewrote since is not this run's."""
        st, so = src.stat(), (self.path.parent / rel).stat()
        return [str(src.resolve()), st.st_size, st.st_mtime_ns, so.st_size, so.st_mtime_ns]

    def is_done(self, src: Path, rel: Path) -> bool:
        try:
            return self.done.get(str(rel)) == self._stamp(src, rel)
        except OSError:      # the input or the output is gone
            return False

    def mark_done(self, src: Path, rel: Path) -> None:
        import json

        stamp = self.done[str(rel)] = self._stamp(src, rel)
        # Each record on a line of its own, after a newline: a line a kill cut short is then
        # followed by whole ones.
        with open(self.journal, "a", encoding="utf-8") as f:
            f.write("\n" + json.dumps({"name": str(rel), "stamp": stamp,
                                       "settings": self.settings}))
        self.journaled += 1
        if not self.stuck and self.journaled >= len(self.done) // 2:
            try:
                self.flush()
            except OSError:
                # Not this image's failure: it is written and journaled. Tried again at the
                # end, where a failure is said (close); each image's retry would fail alike.
                self.stuck = True

    def close(self) -> None:
        """FILE rewritten at the run's end, however it ends (once). A failure is a warning:
        raised, it replaced a Ctrl-C's summary and exit code, or a finished run's, with a
        traceback, though the journal keeps every image done and the next run reads it."""
        from runtime.warn import warn

        if self.closed:
            return
        self.closed = True
        try:
            self.flush()
        except OSError as e:
            warn(f"could not compact {self.path} ({e.strerror or e}): its journal "
                 f"{self.journal} keeps every image done, and the next run into "
                 f"{self.path.parent} folds it in")

    def flush(self) -> None:
        """FILE rewritten with every image done, the journal removed (after FILE is in
        place: a kill between the two leaves records twice, never none)."""
        from runtime.atomic import atomic_write_json

        if not self.journaled:
            return
        atomic_write_json(self.path, {"settings": self.settings, "done": self.done})
        self.journal.unlink(missing_ok=True)
        self.journaled = 0


def _unique_png_names(files: list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    """Output names NAME.png that never collide: a.jpg and a.png keep their extension
    (a.jpg.png), equal names from different folders get the folder's name in front, and what
    still collides (p1/x/a.png, p2/x/a.png) is numbered. Letter case aside, all of it: on
    macOS' and Windows' file systems A.jpg's output is a.png's."""
    from collections import Counter

    suffixes: dict[str, set[str]] = {}
    for _, rel in files:
        suffixes.setdefault(rel.stem.casefold(), set()).add(rel.suffix.lower())
    named = [(p, rel.with_suffix(".png") if len(suffixes[rel.stem.casefold()]) == 1
              else Path(f"{rel.name}.png")) for p, rel in files]
    clash = Counter(str(rel).casefold() for _, rel in named)
    named = [(p, Path(f"{p.parent.name}_{rel}") if clash[str(rel).casefold()] > 1 else rel)
             for p, rel in named]
    taken: set[str] = set()
    out = []
    for p, rel in named:
        name, k = rel, 2
        while str(name).casefold() in taken:
            name, k = rel.with_name(f"{rel.stem}-{k}{rel.suffix}"), k + 1
        taken.add(str(name).casefold())
        out.append((p, name))
    return out


# ------------------------------------------------------------------ sharpen models

def _trained_text(ck: dict) -> str:
    """How far a checkpoint was trained and what its last validation scored, for `sharpen
    models`: the layout alone told a run's best.pt from its last.pt by nothing."""
    step, m = ck.get("step"), ck.get("metrics") or {}
    said = [f"step {step}"] if isinstance(step, int) and step > 0 else []
    key = next((k for k in ("model_gt_ssim", "model_teacher_ssim")
                if isinstance(m.get(k), (int, float))), None)
    if key:
        at = f" at step {m['step']}" if isinstance(m.get("step"), int) else ""
        said.append(f"validation{at}: {key} {m[key]:.4f}")
    return "".join(f"; {s}" for s in said)


def cmd_models(args: argparse.Namespace) -> int:
    import time

    import numpy as np
    import torch

    from .checkpoint import CheckpointError, load_student
    from .students import (OWN_STUDENT_HINT, activation_bytes, count_macs, count_params,
                           create_student, for_inference, list_students, receptive_field,
                           run_padded, student_spec)
    from .teacher import check_threads, names_a_file, set_torch_threads
    from runtime.host import cpu_model

    h, w = args.height, args.width
    if args.measure_runs < 1:
        return _err(f"--measure-runs must be >= 1, got {args.measure_runs}")
    check_threads(args.threads)
    # Before any model is built: the title below reports the count the times ran on.
    set_torch_threads(args.threads, _note if args.measure else None)
    if args.threads:
        from runtime.host import threads_warning
        if args.measure and (too_many := threads_warning(args.threads, "--threads")):
            print(f"warning: {too_many}", file=sys.stderr)   # oversubscribed times mislead
    if not (16 <= h <= 8640 and 16 <= w <= 15360):
        return _err(f"--height must be within 16..8640 and --width within 16..15360, got "
                    f"--height {h} --width {w}")
    names = list_students()
    checkpoints: dict[str, tuple] = {}   # a trained student's own layout (grown, blocks=1)
    provenance: list[str] = []   # exported artifacts: how each was made, from its report
    if args.names:   # space or comma separated, as --weights everywhere
        args.names = list(dict.fromkeys(n for item in args.names for n in item.split(",") if n))
        from .provenance import artifact_provenance, artifact_suffixes
        for n in [n for n in args.names if n.endswith(artifact_suffixes())]:
            if not Path(n).is_file():   # not "checkpoint not found": it names no checkpoint
                return _err(f"exported artifact not found: {n} (`sharpen models` traces an "
                            "existing .onnx, .tflite or .engine file from the export report "
                            "beside it)")
            provenance += artifact_provenance(n)
            args.names.remove(n)
        if provenance and not args.names:
            print("\n".join(provenance))
            return 0
        for n in args.names:
            if n not in names and names_a_file(n):
                try:
                    checkpoints[n] = load_student(n)
                except (CheckpointError, OSError) as e:
                    return _err(str(e))
        unknown = [n for n in args.names if n not in names and n not in checkpoints]
        if unknown:
            hint = " (the teacher is listed with --teacher)" if "teacher" in unknown else ""
            near = [c for n in unknown for c in difflib.get_close_matches(n, names, n=1)]
            guess = f" (did you mean {' or '.join(near)}?)" if near else ""
            return _err(f"unknown student {', '.join(unknown)}{guess}; registered: "
                        f"{', '.join(names)}, or a student checkpoint (.pt){hint}; "
                        f"{OWN_STUDENT_HINT}")
        names = args.names
    headers = ["name", "params", "GMAC", "receptive field px", "activations MiB", "multiple"]
    if args.measure:
        runs = args.measure_runs
        headers.append(f"PyTorch ms, median / p90 of {runs} run{'s' if runs != 1 else ''}")
    headers.append("description")
    rows = []
    from tqdm import tqdm

    for name in tqdm(names, desc="models", unit="model", leave=False, file=sys.stderr,
                     disable=True if args.quiet else None):
        if name in checkpoints:
            m, ck = checkpoints[name]
            description = f"checkpoint: {ck.get('arch')} {m.arch_args}{_trained_text(ck)}"
        else:
            try:   # a student of a user's own that cannot be built or changes the shape
                m, description = create_student(name).eval(), student_spec(name).description
            except ValueError as e:
                return _err(str(e))
        row = [name, f"{count_params(m):,}", f"{count_macs(m, h, w) / 1e9:.2f}",
               str(receptive_field(m)), f"{activation_bytes(m, h, w) / 2**20:.0f}",
               str(m.multiple)]
        if args.measure:
            m, x = for_inference(m), torch.rand(1, 3, h, w)
            times = []
            with torch.no_grad():
                for _ in range(2):   # the first runs at a new shape still allocate
                    run_padded(m, x)
                for _ in range(args.measure_runs):
                    t0 = time.perf_counter()
                    run_padded(m, x)
                    times.append(1000 * (time.perf_counter() - t0))
            # The p90 beside the median: a deployment meets the slow runs too.
            p90 = float(np.percentile(times, 90))
            row.append(f"{statistics.median(times):.1f} / {p90:.1f}")
        rows.append(row + [description])
    if args.teacher:
        from .restormer import CONFIGS, build_restormer
        for cname in CONFIGS:
            m = build_restormer(cname)
            macs = _matmul_macs(m, 256) * (h * w) / (256 * 256)
            rows.append([f"restormer:{cname}", f"{count_params(m):,}", f"~{macs / 1e9:.0f}",
                         "-", "-", "8"] + (["-"] if args.measure else []) +
                        ["teacher (MACs of convolutions and attention, scaled from 256x256 "
                         "tiles)"])
    from runtime.console import print_table
    # The measured times depend on the threads (OMP_NUM_THREADS, the cores): say how many.
    n = torch.get_num_threads()
    timed = f"; PyTorch timed on {n} CPU thread{'s' if n != 1 else ''}" if args.measure else ""
    print_table(f"Models (per {w}x{h} frame; activations: FP32 bytes written by every layer, "
                f"unfused{timed})", headers, rows)
    # What the columns mean, where the table is read (the README is not always at hand).
    print("receptive field px: the input pixels one output pixel depends on (side of the "
          "square)\nmultiple: height and width are padded up to a multiple of it")
    if args.measure:
        print(f"PyTorch ms: one FP32 {w}x{h} frame (batch 1) on {n} thread{'s' if n != 1 else ''}"
              f" of {cpu_model()}, after 2 warm-up runs")
    from .provenance import describe
    for name, (_, ck) in checkpoints.items():
        # A colleague's best.pt: what to install and set to reproduce the numbers it carries.
        if isinstance(env := ck.get("environment"), dict):
            print(f"{name}: trained with {describe(env)}")
    if provenance:
        print("\n".join(provenance))
    return 0


def _matmul_macs(model: Any, size: int) -> int:   # a torch.nn.Module (imported lazily)
    """Multiply-accumulates of every convolution and matrix product of one size x size input,
    by torch's FLOP counter on the meta device (shapes only): count_macs counts convolutions,
    which left out the Restormer's transposed attention, about 10 % of its work."""
    import copy

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    net = copy.deepcopy(model).to("meta").eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(torch.zeros(1, 3, size, size, device="meta"))
    return counter.get_total_flops() // 2   # the counter's FLOPs are 2 per MAC


# ------------------------------------------------------------------ sharpen synth

def cmd_synth(args: argparse.Namespace) -> int:
    if problem := _synth_options_problem(args):
        return _err(problem)
    if args.embedded:
        from .data.embedded import build_embedded
        root = build_embedded(args.out, progress=not args.quiet)
        print(f"embedded default dataset written to {root}/{{train,val,test}}/{{input,target}}")
        return 0
    if not args.sharp:
        return _err("give a folder of sharp images (--sharp DIR) or --embedded")
    src = Path(args.sharp)
    if not src.is_dir():
        return _err(f"--sharp {src}: not a folder")
    out = Path(args.out)
    if err := _out_folder_problem(out):
        return _err(err)
    from .run_lock import RunLocked, run_lock
    try:
        # One run per --out: two at once wrote each pair's input and target one after the
        # other, and a pair could take its input from one and its target from the other.
        with run_lock(out, doing="writing synthetic pairs", flag="--out"):
            return _synth_into(args, src, out)
    except RunLocked as e:   # only the lock raises it
        return _err(str(e))


def _synth_into(args: argparse.Namespace, src: Path, out: Path) -> int:
    """`synth`'s pairs of the photos in `src` written into `out`, whose lock is held."""
    import numpy as np
    from tqdm import tqdm

    from .data.blur import BlurConfig, synthesize
    from .data.corpus import _names
    from .data.sources import _images_under
    from .images import ImageReadError, list_images, to_rgb_float, warn_16_bit, write_image
    from runtime.imageio import decode_image

    # Subfolders too, as `corpus` and `labels` read them; never this run's own output.
    files = [src / r for r in _images_under(src)
             if not (src / r).resolve().is_relative_to(out.resolve())]
    if not files:
        return _err(f"--sharp {src}: no images found")
    names = _names(src, files)   # distinct: a.jpg and a.png, day1/a and day2/a
    if args.preset:
        from .data.scene_blur import preset, synthesize_pair
        try:
            scene = preset(args.preset)
        except ValueError as e:
            return _err(str(e))

        def make(sharp, rng):
            return synthesize_pair(sharp, rng, scene)
    else:
        cfg = BlurConfig(mode=args.mode, kernel_kind=args.kernel, size_range=tuple(args.size),
                         gamma=args.gamma, noise_sigma=(0.0, args.noise),
                         jpeg_prob=args.jpeg_prob)

        def make(sharp, rng):
            return synthesize(sharp, rng, cfg), sharp
    def pair_name(f: Path, c: int) -> str:
        return f"{names[f]}_{c}.png" if args.copies > 1 else f"{names[f]}.png"

    held = {p.name for p in list_images(out / "input")} if (out / "input").is_dir() else set()
    if held:
        writing = {pair_name(f, c) for f in files for c in range(args.copies)}
        print(f"warning: {_held_pairs(out, held, writing)}", file=sys.stderr)
    failed = 0
    deep: list[Path] = []   # 16-bit photos, said once at the end
    for i, f in enumerate(tqdm(files, desc="synth", unit="img", disable=args.quiet or None)):
        try:
            raw = decode_image(f)
            sharp = to_rgb_float(raw, str(f))
        except ImageReadError as e:
            failed += 1
            tqdm.write(f"skipped: {e}", file=sys.stderr)
            continue
        if raw.dtype == np.uint16:
            deep.append(f.relative_to(src))
        for c in range(args.copies):
            rng = np.random.default_rng([args.seed, i, c])
            name = pair_name(f, c)
            blurred, target = make(sharp, rng)
            write_image(out / "input" / name, blurred)
            write_image(out / "target" / name, target)
    warn_16_bit(deep, len(files) - failed, "synth")
    print(f"synthetic pairs written to {out}/input and {out}/target ({failed} unreadable)")
    return 1 if failed else 0


def _held_pairs(out: Path, held: set[str], writing: set[str]) -> str:
    """What becomes of the pairs `out` already holds: those under the names this run writes are
    replaced; the others (another --copies, other photos) stay, and the folder then mixes two
    runs' settings, which a warning that called them all replaced hid."""
    replaced, stay = len(held & writing), len(held - writing)
    holds = f"{out} already holds {count(len(held), 'pair')}"
    stale = (f"labels made from {'it' if replaced == 1 else 'them'} go stale, which "
             "`sharpen distill` refuses")
    if not stay:
        those = ("the one with a name written now is" if replaced == 1
                 else "those with the names written now are")
        return f"{holds}; {those} replaced ({stale})"
    mixed = ("beside this run's pairs, whatever settings made them; choose a new --out for a "
             "set of this run's pairs alone")
    if not replaced:
        which = ("not under a name this run writes: it stays" if stay == 1
                 else "none of them under a name this run writes: they stay")
        return f"{holds}, {which} {mixed}"
    others = "1 other stays" if stay == 1 else f"{stay} others stay"
    return (f"{holds}, {replaced} of them under a name this run writes (replaced: {stale}); "
            f"{others} {mixed}")


def _synth_options_problem(args: argparse.Namespace) -> str:
    """Why `synth`'s numbers cannot make a dataset, before any image is written: --gamma 0
    divided by zero, NaN or a negative gamma wrote black or garbage inputs with exit 0, a
    negative seed was numpy's traceback and --size 7 100000 asked for an 80 GB kernel."""
    from .data.blur import MAX_KERNEL_SIZE

    for flag, value, lo, hi, note in (
            ("--copies", args.copies, 1, None, ""),
            ("--seed", args.seed, 0, None, ""),
            ("--gamma", args.gamma, 0.1, 10, " (1 blurs the sRGB values, 2.2 in linear light)"),
            ("--noise", args.noise, 0, 1, " (the largest noise sigma, 0: none)"),
            ("--jpeg-prob", args.jpeg_prob, 0, 1, " (a probability)")):
        if problem := _out_of_range(flag, value, lo, hi, note):
            return problem
    lo, hi = args.size
    if not 3 <= lo <= hi <= MAX_KERNEL_SIZE:
        return (f"--size MIN MAX needs 3 <= MIN <= MAX <= {MAX_KERNEL_SIZE} (kernel sides in "
                f"px), got {lo} {hi}")
    return ""


# ------------------------------------------------------------------ sharpen corpus

def _out_folder_problem(out: Path) -> str:
    """The message when --out cannot be a folder to write in (a file, or under one), found
    before any work rather than as a traceback after it; '' when it can."""
    from runtime.output_paths import file_in_the_way
    if problem := file_in_the_way(out, f"--out {out}"):
        return problem
    above = next((p for p in (out, *out.parents) if os.path.isdir(p)), None)
    if above is not None and not os.access(above, os.W_OK):
        return f"--out {out}: cannot write in {above} (permission denied)"
    return ""


def cmd_corpus(args: argparse.Namespace) -> int:
    from .data.corpus import CorpusOptions, build_corpus
    from .data.scene_blur import PRESETS

    mix = tuple(m.strip() for m in args.mix.split(",") if m.strip())
    if not mix:
        return _err("--mix needs at least one preset (e.g. gopro,handheld,mild)")
    for name in (*mix, args.test_preset):
        if name not in PRESETS:
            return _err(f"unknown blur preset {name!r}; choose from {', '.join(PRESETS)}")
    # One flag at a time: "--copies must be >= 1 and --crop/--test-crop >= 32" did not say
    # which was wrong.
    for flag, value, lo in (("--copies", args.copies, 1), ("--crop", args.crop, 32),
                            ("--test-crop", args.test_crop, 32), ("--workers", args.workers, 1),
                            ("--seed", args.seed, 0)):
        if problem := _out_of_range(flag, value, lo):
            return _err(problem)
    if err := _out_folder_problem(Path(args.out)):
        return _err(err)
    opts = CorpusOptions(mix=mix, test_preset=args.test_preset, copies=args.copies,
                         crop=args.crop, test_crop=args.test_crop, seed=args.seed)
    try:
        summary = build_corpus(args.photos, args.out, opts, progress=not args.quiet,
                               workers=args.workers,   # --quiet: no bar, the notes stay
                               say=lambda msg: print(msg, file=sys.stderr))
    except (FileNotFoundError, ValueError) as e:
        return _err(str(e))
    return _corpus_outcome(args, summary)


def _corpus_outcome(args: argparse.Namespace, summary: dict) -> int:
    """The summary line and the exit code of `sharpen corpus`. Photos smaller than the crop are
    expected (the teacher card's --crop 384 skips BSDS500's 481x321 photos): named, summed up
    in one warning, not a failure (exit 0). Unreadable photos are (exit 1, the rest still used),
    and so is a run that made no training pair."""
    splits = ("train", "val", "test")
    counts = ", ".join(f"{s} {summary[s]}" for s in splits)
    print(f"corpus written to {args.out}/{{train,val,test}}/{{input,target}}: {counts} pairs")
    small, failed, photos = summary["small"], summary["failed"], summary["photos"]
    if small:
        where = ", ".join(f"{s} {n}" for s, n in summary["small_in"].items() if n)
        print(f"warning: {count(len(small), 'photo')} smaller than the crop skipped ({where}; "
              f"listed above): expected with a large --crop ({args.crop}); a smaller one keeps "
              f"{'it' if len(small) == 1 else 'them'}", file=sys.stderr)
    empty = [s for s in splits if photos.get(s) and not summary[s]]
    if failed:
        print(f"sharpen corpus: {count(len(failed), 'photo')} could not be read (listed "
              "above); the "
              "others were used", file=sys.stderr)
    if "train" in empty or not any(summary[s] for s in splits):
        n = photos.get("train", 0)
        which = ("every photo" if "train" not in empty else "the one training photo" if n == 1
                 else f"all {n} training photos")
        print(f"sharpen corpus: error: no training pair was made: {which} skipped (smaller "
              f"than --crop {args.crop}, or unreadable)", file=sys.stderr)
        return 1
    if empty:
        print(f"warning: the {' and '.join(empty)} split{'s' if len(empty) > 1 else ''} got "
              f"no pair: every photo in {'them' if len(empty) > 1 else 'it'} was skipped",
              file=sys.stderr)
    print(_corpus_next_step(args.out), flush=True)
    return 1 if failed else 0


def _corpus_next_step(out: str) -> str:
    """The labels command that continues from the corpus: the README's order of steps was the
    only place that said what comes next, and `labels` ends with the distill line in turn.
    --hold-out takes the corpus's own val split (whole training photos where val is empty)."""
    labels = str(Path(out).with_name(Path(out).name + "-labels"))
    return "label it with the teacher: " + shell_join(
        ["sharpen", "labels", "--data", str(out), "--out", labels, "--hold-out", "0.2",
         "--val-out", labels + "-val"])


# ------------------------------------------------------------------ sharpen evaluate

def _complete_results(path: Path) -> bool:
    """`path` holds the results of an evaluate run that finished."""
    import json
    try:
        res = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(res, dict) and res.get("interrupted") is False


def _remove_stale_partial(out: Path) -> None:
    """A finished run's results replace the part an interrupted run kept beside the run before
    it: left there, it was another run's numbers read as this one's."""
    stale = [p for p in (out / "metrics.partial.json", out / "side_by_side.partial.png")
             if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    if stale:
        print(f"removed {', '.join(p.name for p in stale)}: the part an interrupted run left",
              file=sys.stderr)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """`_evaluate`, removing the --out folders it made when the run is refused (a video or a
    missing folder as --data, a missing checkpoint...) or interrupted before an image was
    scored: it left an empty folder behind."""
    from runtime.output_paths import folders_to_make, remove_if_empty

    made = folders_to_make(args.out) if args.out else []
    try:
        return _evaluate(args)
    except (SharpenError, KeyboardInterrupt):   # (interrupted later: _evaluate writes a part)
        remove_if_empty(made)   # deepest first, only while empty
        raise


def _evaluate(args: argparse.Namespace) -> int:
    from runtime.backends.base import ModelError

    from .checkpoint import CheckpointError
    from .data.sources import SourceError
    from .evaluate import (MIN_SIDE, evaluate, format_table, is_artifact, side_by_side,
                           teacher_labels_line)

    from .teacher import check_device, check_threads, pick_device, resolve_weights
    check_device(args.device)
    from runtime.host import ZERO_THREADS, threads_warning
    check_threads(args.threads, zero=ZERO_THREADS)   # artifacts: the runtimes' meaning of 0
    if too_many := threads_warning(args.threads, "--threads"):   # as sharpen run warns
        print(f"warning: {too_many}", file=sys.stderr)
    models = [m for item in args.model or [] for m in item.split(",") if m]
    try:
        weights = [str(resolve_weights(w)) for item in args.weights or []
                   for w in item.split(",") if w]
    except CheckpointError as e:
        return _err(f"--weights {e}")
    if not weights and not models:
        return _err("give --weights (checkpoints) and/or --model (exported artifacts)")
    if args.out:   # found now, not after every model has run over every image
        from runtime.output_paths import make_folder, refuse_output_inside
        from runtime.sinks import SinkError
        try:
            refuse_output_inside(args.out, args.data, "--data")
            make_folder(args.out, "--out")
        except (SinkError, ValueError) as e:
            return _err(str(e))
    for w in weights:
        if Path(w).is_dir():   # a run's out= folder: name the checkpoints in it
            from .checkpoint import folder_problem
            return _err(f"--weights {w}: {folder_problem(w)}")
        if not Path(w).is_file():
            return _err(f"--weights {w}: no such checkpoint")
        if is_artifact(w):
            return _err(f"--weights {w}: an exported model; pass it with --model")
    for m in models:
        if not Path(m).is_file():
            return _err(f"--model {m}: no such file")
        if not is_artifact(m):
            return _err(f"--model {m}: not an exported model (.onnx, .tflite, .engine); "
                        "pass checkpoints with --weights")
    weights += models
    if args.limit is not None and args.limit < 1:
        return _err(f"--limit must be >= 1, got {args.limit}")
    # One at a time, with its value: '--figure-images must be >= 1, --figure-crop >= 16 and
    # --crop >= 0' left the user to find which of the three was wrong.
    for flag, value, lo, note in (("--figure-images", args.figure_images, 1, ""),
                                  ("--figure-crop", args.figure_crop, 16, ""),
                                  ("--crop", args.crop, 0, " (0 = whole images)")):
        if problem := _out_of_range(flag, value, lo, note=note):
            return _err(problem)
    if 0 < args.crop < MIN_SIDE:
        return _err(f"--crop {args.crop}: SSIM needs at least {MIN_SIDE}x{MIN_SIDE} pixels "
                    "(0 = whole images)")
    dupes = sorted({w for w in weights if weights.count(w) > 1})
    if dupes:
        print(f"warning: {', '.join(dupes)} given more than once; evaluated once",
              file=sys.stderr)
        weights = list(dict.fromkeys(weights))
    if args.provider != "auto" and not any(m.lower().endswith(".onnx") for m in models):
        print(f"warning: --provider applies to .onnx models (ONNX Runtime); --provider "
              f"{args.provider} has no effect without one", file=sys.stderr)
    from .data.sources import gopro_blur_unused, paired_parent
    if unused := gopro_blur_unused([args.data], args.gopro_blur, "--gopro-blur"):
        print(f"warning: {unused}", file=sys.stderr)
    if half := paired_parent(args.data):   # scored without its ground truth, said nowhere
        print(f"warning: {args.data} is the blurred half of a paired folder: --data {half[0]} "
              f"scores against its {half[1]}/ images; this run has no ground truth",
              file=sys.stderr)
    if any(not is_artifact(w) for w in weights) and pick_device(args.device).type == "cpu":
        from .teacher import set_torch_threads
        set_torch_threads(args.threads)
    if not args.threads and (note := limit_note("PyTorch, ONNX Runtime and LiteRT")):
        _note(f"note: {note}")
    try:
        res = evaluate(weights, args.data, split=args.split or "test", limit=args.limit,
                       crop=args.crop, progress=not args.quiet,
                       keep_outputs=args.figure_images if args.out else 0, device=args.device,
                       teacher_config=args.teacher_config, threads=args.threads,
                       provider=args.provider, gopro_blur=args.gopro_blur)
    except KeyboardInterrupt as e:   # after some images: theirs are reported and saved
        if not hasattr(e, "results"):
            raise
        res = e.results
    except (CheckpointError, SourceError, ModelError, ValueError, FileNotFoundError) as e:
        return _err(str(e))
    if args.split and res["split"] is None:
        print(f"warning: {args.data} has no split folders (train/, val/, test/): --split "
              f"{args.split} does not apply; every image was evaluated", file=sys.stderr)
    from runtime.host import default_threads

    from .provenance import LIBS, run_environment
    # What a colleague's numbers are compared by: the runtimes' versions and threads change
    # an artifact's last digits, torch's a checkpoint's. The threads they ran on, as the
    # bench records them: --threads, else OMP_NUM_THREADS's (None: the engines' default).
    res["environment"] = {**run_environment(
        pick_device(args.device), (*LIBS, "onnxruntime", "ai_edge_litert")),
        "threads": default_threads(args.threads)}
    print(format_table(res))
    if said := teacher_labels_line(res):
        print(said)
    outputs = res.pop("outputs")
    if args.out:
        out = Path(args.out)
        from runtime.atomic import atomic_write_json
        # An interrupted rerun replaced the complete results of the run before with a part.
        tag = ".partial" if res["interrupted"] and _complete_results(out / "metrics.json") else ""
        if tag:
            print(f"interrupted: the complete results already in {out} are kept; this run's "
                  f"part is written as metrics{tag}.json", file=sys.stderr)
        atomic_write_json(out / f"metrics{tag}.json", res)
        shown = dict(list(outputs.items())[:args.figure_images])
        which = (f"the {count(len(shown), 'image')} some model gains least PSNR on, worst first"
                 if res["has_gt"] else f"the first {count(len(shown), 'image')}")
        fig = side_by_side(shown, out / f"side_by_side{tag}.png", side=args.figure_crop,
                           title=f"{args.data}, {which}: input | " + " | ".join(
                               k for k in next(iter(shown.values())) if k != "input"))
        print(f"written: {out / f'metrics{tag}.json'}, {fig}")
        if not res["interrupted"]:
            _remove_stale_partial(out)
    if res["interrupted"]:
        return res.get("exit_code", 130)
    if res["failed"]:
        print(f"sharpen evaluate: {count(len(res['failed']), 'image')} skipped (listed above); the "
              "rest were evaluated", file=sys.stderr)
        return 1
    return 0


# ------------------------------------------------------------------ sharpen grow

def cmd_grow(args: argparse.Namespace) -> int:
    from .checkpoint import CheckpointError
    from .grow import grow_student
    from .teacher import resolve_weights

    try:   # shipped names (fast, edge) as evaluate and init= take them
        args.weights = str(resolve_weights(args.weights, allow_teacher=False))
    except (CheckpointError, ValueError) as e:
        return _err(f"--weights {e}")
    try:
        pairs = [c.split("=", 1) for c in args.changes]
        changes = {k: int(v) for k, v in pairs}
    except ValueError:
        return _err(f"changes must look like name=INT (e.g. low_blocks=4), got {args.changes}")
    repeated = sorted({k for k, _ in pairs if [p[0] for p in pairs].count(k) > 1})
    if repeated:
        return _err(f"{', '.join(repeated)} given more than once: give each change once")
    out = Path(args.out)
    if out.is_dir():
        return _err(f"--out {out} is a folder; give the new checkpoint's file name (.pt)")
    from runtime.output_paths import file_in_the_way
    if problem := file_in_the_way(out.parent, f"--out {out}"):
        return _err(problem)
    if Path(args.weights).exists() and out.exists() and out.resolve() == \
            Path(args.weights).resolve():
        return _err(f"--out {out} is the --weights checkpoint itself; write the grown model to "
                    "a new file")
    try:
        summary = grow_student(args.weights, args.out, **changes)
        if "max_change" in summary:
            print(f"warning: fewer blocks is not exact: the output moved by up to "
                  f"{summary['max_change']} (of 1.0) on a random input; fine-tune "
                  f"{args.out} before using it", file=sys.stderr)
        if not args.quiet:
            print(f"written: {args.out} ({', '.join(f'{k}={v}' for k, v in changes.items())})")
            print(summary)
    except (ValueError, TypeError, CheckpointError, FileNotFoundError) as e:
        return _err(str(e))
    return 0


# ------------------------------------------------------------------ training

def _without_worker_traceback(msg: str) -> str:
    """An error raised in a data-loader worker comes back with the worker's traceback in its
    message; the user needs its last line, the error itself."""
    if "Traceback (most recent call last)" not in msg:
        return msg
    last = [ln for ln in msg.strip().splitlines() if ln.strip()][-1]
    return re.sub(r"^[\w.]+(Error|Exception): ", "", last.strip())


def _train(args: argparse.Namespace, task: str) -> int:
    from .config import TrainConfig, load_config
    from .teacher import check_device, check_threads

    check_threads(args.threads)
    try:   # task "" until the file or an override names one: the command decides it below
        cfg = load_config(args.config, args.overrides, base=TrainConfig(task=""))
    except (FileNotFoundError, KeyError, ValueError, TypeError) as e:
        return _err(e.args[0] if isinstance(e, KeyError) and e.args else str(e))
    if not cfg.out:
        return _err("out= is empty: give the run's folder (e.g. out=runs/mine)")
    check_device(cfg.device, "device=")
    declared, wanted = cfg.task, "student" if task == "student" else "teacher"
    if declared and declared != wanted:
        # The command decided the task and the config's `task:` was ignored: a distillation
        # config run by `train` trained on the embedded ground truth, exit 0.
        which = ("a distillation config (task: student): run it with `sharpen distill`"
                 if declared == "student" else "a ground-truth config (task: teacher): run it "
                 "with `sharpen train` (a student) or `sharpen train-teacher` (Restormer)")
        return _err(f"{args.config or 'task='} is {which}")
    # `train` fits any registered model to ground truth; the trainer calls that task "teacher".
    cfg.task = "teacher" if task == "supervised" else task
    if task == "teacher" and cfg.model.arch != "restormer":
        if _arch_given(args):
            return _err(f"`sharpen train-teacher` trains the Restormer teacher, not "
                        f"model.arch={cfg.model.arch}; use `sharpen train` to fit a student "
                        "to ground truth, or `sharpen distill` to distil it")
        cfg.model.arch = "restormer"
        cfg.model.args = cfg.model.args or {"config": "small"}
    if task == "student" and cfg.model.arch == "restormer":
        return _err("`sharpen distill` trains students; use `sharpen train-teacher` for "
                    "Restormer")
    from .config import check_config
    try:
        check_config(cfg)
    except ValueError as e:
        return _err(str(e))
    # This process's own: torchrun starts one process per rank, each running this command
    # (and sets OMP_NUM_THREADS=1 for each, which a CPU limit then does not override).
    from .dist import DistInfo
    from .teacher import set_torch_threads
    set_torch_threads(args.threads, _note if DistInfo.from_env().main else None)
    from .interrupts import TrainingInterrupted, resume_hint
    from .trainer import TrainingDiverged, run_training
    from .config import run_folder_of
    # `--config RUN/config.yaml out=NEW`: a run reproduced, compared with the one it copies.
    reference = run_folder_of(args.config)
    if reference is not None and Path(cfg.out).resolve() == reference:
        reference = None   # that run itself, resumed: its checkpoint is compared instead
    try:
        result = run_training(cfg, quiet=args.quiet, command=_command_line(args),
                              reference=reference)
    except (ValueError, FileNotFoundError) as e:
        return _err(_without_worker_traceback(str(e)))
    except TrainingInterrupted as e:
        from .dist import DistInfo
        if DistInfo.from_env().main:   # under torchrun every rank stops: say it once
            print(f"sharpen {args.command}: {e}", file=sys.stderr)
        return 128 + e.signum
    except TrainingDiverged as e:
        raise SharpenError(str(e), exit_code=1) from None
    from .dist import DistInfo
    if not DistInfo.from_env().main:   # under torchrun: rank 0 validates and reports
        return 0
    metrics = result.metrics
    from .validation import val_summary
    # As the console's validation lines read (key=value pairs in a mixed order did not).
    shown = val_summary(metrics)
    if shown and "step" in metrics:
        # Beside best.pt's name these read as its score: they are last.pt's (the last
        # validation), and best.pt's own follow.
        shown = f"last validation (step {metrics['step']}): {shown}"
    if (Path(cfg.out) / "best.pt").exists() and result.best:
        shown = f"{shown}; {result.best}" if shown else result.best
    out = Path(cfg.out)
    written = [str(out / n) for n in ("best.pt", "last.pt") if (out / n).exists()]
    if result.step < cfg.optim.steps:
        # Exit 0 (the budget was asked for), but not "done": that read as a finished run.
        print(f"stopped early at step {result.step} of {cfg.optim.steps} (time or step budget "
              f"reached): {', '.join(written)}   {shown}; {resume_hint(cfg)}")
    elif not written:
        # A branch (resume=OTHER/last.pt out=NEW) of a run already at optim.steps: nothing was
        # trained or saved in NEW (the warning above says so); "done: " naming no file and
        # "set data.val_labels" (though it was set) read as a run that lost its checkpoints.
        print(f"nothing trained: {out} holds no checkpoint   {shown}")
    else:
        print(f"done: {', '.join(written)}   {shown}")
        if task == "student":
            for line in _after_distill(cfg, result.best_step):
                print(line)
    if written and not (out / "best.pt").exists():
        has_val = cfg.data.val_labels if cfg.task == "student" else cfg.data.val
        print("note: no best.pt: nothing was validated" + (
            "" if has_val else " (set data.val_labels for `distill`, data.val for `train`)"),
            file=sys.stderr)
    return 0


def _after_distill(cfg: Any, best_step: int | None = None) -> list[str]:
    """The commands that follow a finished `distill`, as `labels` ends with the distill one:
    the run's result beside the weights it started from, on the held-out frames of footage
    (evaluate scores images: a clip's are in its validation cache's frames/), and the export
    that `sharpen run` needs. Each is said only where its inputs are there. A best.pt still at
    step 0 of an init= run is those weights: last.pt is compared, which differs from them."""

    from .data.label_cache import FRAMES_DIR
    out = Path(cfg.out)
    weights = out / "best.pt" if (out / "best.pt").exists() else out / "last.pt"
    lines = []
    unchanged = bool(cfg.init) and best_step == 0 and weights.name == "best.pt"
    frames = Path(cfg.data.val_labels) / FRAMES_DIR if cfg.data.val_labels else None
    if frames is not None and frames.is_dir() and weights.name == "best.pt":
        tried = out / "last.pt" if unchanged else weights
        words = ["sharpen", "evaluate", "--weights", *([str(cfg.init)] if cfg.init else []),
                 str(tried), *_label_teacher(Path(cfg.data.val_labels)),
                 "--data", str(frames), "--out", str(out / "eval")]
        before = f"init={cfg.init}" if cfg.init else "the blurred input"
        what = f"the fine-tune's last.pt (best.pt is init={cfg.init})" if unchanged else "it"
        lines.append(f"compare {what} with {before} on the held-out frames (metrics, "
                     f"side_by_side.png): {shell_join(words)}")
    export = ["sharpen", "export", "--weights", str(weights), "--out", "export/"]
    # "it" after a compare line of last.pt read as the fine-tune: say what best.pt holds.
    what = (f"best.pt for `sharpen run` (the init={cfg.init} weights: no validation of the "
            "fine-tune beat them)" if unchanged else "it for `sharpen run`")
    lines.append(f"export {what}: {shell_join(export)}")
    return lines


def _label_teacher(cache: Path) -> list[str]:
    """The --weights (and --teacher-config) of the teacher that labelled CACHE, for evaluate's
    "PSNR to the teacher's output" on footage without ground truth: the shipped one by its
    name, another by its path; `teacher` where the manifest does not name a file."""
    from .data.label_cache import MANIFEST, read_manifest_entries
    from .teacher import BUNDLED_TEACHER, models_dir
    entry = next(iter(read_manifest_entries(cache / MANIFEST).values()), {})
    path = entry.get("teacher_weights")
    shipped = (models_dir() / BUNDLED_TEACHER).resolve()
    if not path or not Path(path).is_file() or Path(path).resolve() == shipped:
        return ["teacher"]
    config = entry.get("teacher_config")
    return [str(path), *(["--teacher-config", config] if config not in (None, "checkpoint")
                         else [])]


def _command_line(args: argparse.Namespace) -> str:
    """This command as a user would type it again, for train.log: main(ARGV) called from
    Python (a notebook, a test) has the caller's sys.argv, not ARGV."""
    from .dist import launch_command
    argv = getattr(args, "argv", None)
    if argv is None or argv == sys.argv[1:]:
        return launch_command(sys.argv)
    return launch_command(["sharpen", *argv])


def _arch_given(args: argparse.Namespace) -> bool:
    """Whether the user named model.arch (an override or the config file), rather than the
    default that train-teacher replaces with restormer."""
    if any(o.split("=", 1)[0].strip() == "model.arch" for o in args.overrides or []):
        return True
    if args.config:
        import yaml
        try:
            d = yaml.safe_load(Path(args.config).read_text()) or {}
        except (OSError, yaml.YAMLError):
            return False
        return isinstance(d, dict) and isinstance(d.get("model"), dict) and \
            "arch" in d["model"]
    return False


def cmd_train_teacher(args: argparse.Namespace) -> int:
    return _train(args, "teacher")


def cmd_distill(args: argparse.Namespace) -> int:
    return _train(args, "student")


def cmd_train(args: argparse.Namespace) -> int:
    return _train(args, "supervised")


# ------------------------------------------------------------------ registration

def add_commands(sub) -> None:
    fmt = HelpFormatter

    p = sub.add_parser("teacher", formatter_class=fmt,
                       help="sharpen images with the Restormer teacher (tiled, Gaussian-blended)",
                       description="Run the Restormer teacher over images or folders at full "
                       "resolution with Gaussian-blended tiles; output names keep the input's.")
    p.add_argument("inputs", nargs="+", help="image files or folders of images")
    p.add_argument("--out", "--output", required=True, metavar="DIR",
                   help="output folder (PNG files)")
    p.add_argument("--teacher-weights", default=None, metavar="PATH", help=WEIGHTS_HELP)
    p.add_argument("--teacher-config", "--config", dest="config", default=None, metavar="NAME",
                   help=CONFIG_HELP)
    p.add_argument("--tile", type=int, default=TEACHER_TILE, metavar="N", help=TILE_HELP)
    p.add_argument("--overlap", type=int, default=None, metavar="N", help=OVERLAP_HELP)
    p.add_argument("--batch-size", type=int, default=TEACHER_BATCH, metavar="N",
                   help=BATCH_HELP)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help=threads_help("PyTorch, which runs the teacher"))
    p.add_argument("--bits16", action="store_true", help="write 16-bit PNGs")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="skip images an earlier run into --out already wrote from the same "
                   "input with the same weights and settings (--no-resume writes every image)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_teacher)

    p = sub.add_parser("models", formatter_class=fmt, help="list student models (params, MACs)",
                       description="Table of registered students with parameter counts and "
                       "multiply-accumulates per frame.")
    p.add_argument("--height", type=int, default=1080, help="frame height for MACs")
    p.add_argument("--width", type=int, default=1920, help="frame width for MACs")
    p.add_argument("--teacher", action="store_true", help="include Restormer configs")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="only these students: registered names, or checkpoints (a trained "
                   "student's own layout, e.g. one grown or with blocks=1); an exported "
                   "artifact (.onnx, .tflite, .engine) says how it was made, from the "
                   "export_report.json beside it that records its sha256")
    p.add_argument("--measure", action="store_true",
                   help="also time PyTorch CPU inference at this size on this machine")
    p.add_argument("--measure-runs", type=int, default=3, metavar="N",
                   help="timed runs per model with --measure")
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help=threads_help("PyTorch, which --measure times"))
    p.add_argument("--quiet", action="store_true", help="no progress bar, only the table")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("synth", formatter_class=fmt,
                       help="write a synthetic blurred/sharp paired dataset",
                       description="Blur sharp images with synthetic camera shake and write "
                       "OUT/input + OUT/target (the paired-folder layout), or build the "
                       "embedded default dataset with --embedded.")
    p.add_argument("--sharp", help="folder of sharp images")
    p.add_argument("--out", "--output", required=True, metavar="DIR", help="output folder")
    p.add_argument("--embedded", action="store_true",
                   help="build the embedded default (bundled photos + dead leaves) instead")
    p.add_argument("--mode", default="mixed", choices=["kernel", "frames", "mixed"],
                   help="kernel convolution, GoPro-style frame averaging, or both")
    p.add_argument("--kernel", default="mixed", choices=["shake", "linear", "mixed"],
                   help="camera-shake trajectories, linear motion, or both")
    p.add_argument("--size", type=int, nargs=2, default=[7, 41], metavar=("MIN", "MAX"),
                   help="kernel size range in px (3 to 1023)")
    p.add_argument("--gamma", type=float, default=2.2,
                   help="blur in linear light (1 = sRGB; 0.1 to 10)")
    p.add_argument("--noise", type=float, default=0.01, help="max sensor noise sigma (0 to 1)")
    p.add_argument("--jpeg-prob", type=float, default=0.0,
                   help="probability of JPEG re-encode (0 to 1)")
    p.add_argument("--copies", type=int, default=1, help="blurred copies per sharp image")
    p.add_argument("--preset", default=None, metavar="NAME",
                   help="realistic scene blur instead of one kernel: gopro, handheld, mild or "
                   "still "
                   "(non-uniform camera motion, moving objects, saturation, sensor noise; the "
                   "target is then the scene at the exposure's mean pose, the centre of the blur)")
    p.add_argument("--seed", type=int, default=0, help="random seed (output is deterministic)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("corpus", formatter_class=fmt,
                       help="build a paired train/val/test corpus from sharp photos, split by photo",
                       description="Blur a folder of sharp photos with realistic scene blur "
                       "(distill/data/scene_blur.py) into OUT/{train,val,test}/{input,target}. "
                       "The split is fixed by each photo's path: photos under kodak24/ or "
                       "mcmaster/ are the test split (else 1 in 10 by hash), 1 in 25 of the "
                       "rest validation. Re-running skips pairs already written and removes "
                       "those of photos deleted, moved to another split or changed since; "
                       "--out must not be inside --photos, and an --out built from other "
                       "photos or options is refused. Photos smaller than the crop are named "
                       "and skipped with a warning (exit 0); an unreadable photo is named and "
                       "makes the exit code 1 (the rest is still used), as does a run that "
                       "makes no training pair.")
    p.add_argument("--photos", required=True, metavar="DIR", help="folder of sharp photos")
    p.add_argument("--out", "--output", required=True, metavar="DIR", help="corpus folder")
    p.add_argument("--mix", default="gopro,handheld,mild", metavar="LIST",
                   help="presets cycled over each training photo's copies")
    p.add_argument("--test-preset", default="gopro", metavar="NAME",
                   help="preset of the val and test pairs")
    p.add_argument("--copies", type=int, default=3, help="blurred crops per training photo")
    p.add_argument("--crop", type=int, default=256, metavar="PX", help="training crop side (px)")
    p.add_argument("--test-crop", type=int, default=384, metavar="PX",
                   help="val/test centre crop side (px)")
    p.add_argument("--seed", type=int, default=0, help="random seed (output is deterministic)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="processes synthesising photos in parallel (the corpus is the same)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_corpus)

    p = sub.add_parser("grow", formatter_class=fmt,
                       help="grow a trained fast-family student without changing its output",
                       description="Add blocks, widen kernels, add the detail stage or the "
                       "input path to a trained fast-family student so that its output is "
                       "unchanged (or drop inner blocks, blocks=N below the model's, which is "
                       "not exact); fine-tune the result with `sharpen distill ... init=OUT "
                       "\"model.args={...}\"`.")
    p.add_argument("--weights", required=True, metavar="CKPT", help="trained student")
    p.add_argument("--out", "--output", required=True, metavar="CKPT",
                   help="grown student checkpoint")
    p.add_argument("changes", nargs="+", metavar="NAME=INT",
                   help="architecture changes, e.g. low_blocks=4 detail=8 edge=3")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=cmd_grow)

    p = sub.add_parser("evaluate", formatter_class=fmt,
                       help="PSNR/SSIM gain over the input (paired data) and side-by-side crops",
                       description="Run teacher and/or student checkpoints over a data source. "
                       "With ground truth (paired folder, GoPro root, corpus): PSNR/SSIM of the "
                       "input and each model, and the gain. Without (real blurred frames): a "
                       "sharpness ratio. --out writes metrics.json and side_by_side.png "
                       "(input | models | ground truth).")
    p.add_argument("--weights", nargs="+", default=None, metavar="CKPT",
                   help="project checkpoints (teacher or student), space or comma separated; "
                   "shipped ones by name (fast, edge, seed, teacher)")
    p.add_argument("--model", nargs="+", default=None, metavar="FILE",
                   help="exported student artifacts (.onnx, .tflite, .engine), run by the "
                   "runtime as `sharpen run` deploys them (INT8 included)")
    p.add_argument("--teacher-config", default=None, metavar="NAME", help=CONFIG_HELP)
    p.add_argument("--data", required=True, metavar="SPEC",
                   help="paired folder (blur/+sharp/, input/+target/), GoPro root, corpus, or "
                   "a folder of blurred images without ground truth")
    p.add_argument("--split", default=None, metavar="NAME",
                   help="split of a source with split folders (default: test)")
    from .data.commands import add_gopro_blur_argument
    add_gopro_blur_argument(p)
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="N images spread over the set (default: all)")
    p.add_argument("--crop", type=int, default=0, metavar="PX",
                   help="evaluate a centre crop of this side (0 = whole images)")
    p.add_argument("--out", "--output", default=None, metavar="DIR",
                   help="write metrics.json and side_by_side.png here")
    p.add_argument("--figure-images", type=int, default=6, metavar="N",
                   help="rows of the side-by-side figure: with ground truth the images some "
                        "model gains least on (worst first), else the first ones (default 6)")
    p.add_argument("--figure-crop", type=int, default=192, metavar="PX",
                   help="side of each crop in the figure")
    p.add_argument("--device", default="auto",
                   help="where checkpoints run: auto (a CUDA GPU when present; the teacher then "
                   "in bf16/fp16), cpu, cuda, cuda:1 ...; exported artifacts run as `sharpen "
                   "run` runs them")
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help=threads_help("ONNX Runtime / LiteRT, and for PyTorch when checkpoints "
                                     "run on the CPU"))
    p.add_argument("--provider", choices=("auto", "cpu", "cuda", "tensorrt"), default="auto",
                   help="ONNX Runtime execution provider for .onnx models (auto: TensorRT, "
                   "CUDA, then CPU, whichever this build has)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_evaluate)

    for name, func, task in (("train-teacher", cmd_train_teacher, "Restormer on ground truth"),
                             ("distill", cmd_distill, "a student on teacher pseudo-labels"),
                             ("train", cmd_train, "any model (model.arch) on ground-truth pairs "
                              "(e.g. a student's pre-training on a blur corpus)")):
        p = sub.add_parser(name, formatter_class=fmt, help=f"train {task}",
                           description=f"Train {task}. Settings come from the YAML --config "
                           "(see configs/) and KEY=VALUE overrides, e.g. optim.steps=2000 "
                           "data.batch_size=16 out=runs/x. Re-running the same command resumes "
                           "from OUT/last.pt. Under torchrun it trains with DDP.")
        p.add_argument("--config", default=None, metavar="FILE", help="YAML config file")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                       help="config overrides (dotted keys)")
        p.add_argument("--threads", type=int, default=0, metavar="N",
                       help=threads_help(
                           "PyTorch in this process; under torchrun in each process",
                           f"{ZERO_THREADS}; torchrun sets OMP_NUM_THREADS=1 for several "
                           "processes"))
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.set_defaults(func=func)

    try:
        from .data.commands import add_commands as add_data_commands
    except ImportError:
        return
    add_data_commands(sub)
