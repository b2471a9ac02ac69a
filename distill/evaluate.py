"""`sharpen evaluate`: any checkpoint (teacher or student) on any image set, the way model cards
report it.

- With ground truth (a paired folder such as reds-mini's blur/ + sharp/, a GoPro root, the
  corpus's test split): mean PSNR/SSIM of the blurred input and of each model, and each model's
  gain over the input.
- Without ground truth (real blurred frames): side-by-side crops (input | model | model ...) in
  one PNG, so ringing and doubled edges are seen rather than averaged away; a no-reference
  sharpness measure (mean gradient magnitude relative to the input) is printed beside it.
"""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Callable, Collection, NamedTuple, Optional, Sequence

import numpy as np

from runtime.backends.runner import OutputSizeError
from runtime.cli_errors import interrupt_exit_code
from runtime.console import count, first_line
from runtime.imageio import shown_path
from runtime.warn import SharpenWarning, warn

from .metrics import (ALIGNMENT, SSIM_MIN_SIDE, convention, gt_shift, input_range, overshoot,
                      psnr, quantise_8bit, shared_shift, ssim, ssim_named)
from .evaluate_journal import ScoreJournal
from .evaluate_sequences import per_sequence, sequence_of
from .figure_fonts import any_script_text
from .real_verdicts import nogt_verdicts, pair_verdicts
from .teacher_tiles import TILE, tiling_context

Fn = Callable[[np.ndarray], np.ndarray]


RESERVED = {"input", "ground truth", "images", "has_gt", "failed", "data", "outputs", "split",
            "crop", "limit", "flat_images", "weights", "per_image", "reference", "interrupted",
            "exit_code", "teacher_labels", "environment", "convention", "clip_frames",
            "stride", "frames", "cut_clips", "clips_left_out", "seek_notes",
            "per_sequence", "gopro_blur", "ssim_window",
            "teacher_tile", "not_held_out", "align", "alignment_failed",
            "ground_truth_overshoot"}


# Rows of `sharpen evaluate --out`'s figure (--figure-images), and the images whose outputs
# `evaluate` keeps by default.
FIGURE_IMAGES = 6
# `evaluate(out=)`'s lock file in the out folder (see `run_lock`).
EVALUATE_LOCK = ".sharpen-evaluate.lock"


class ClipFrame(NamedTuple):
    """An item's input that is a frame of a clip (read by `source_items(clips=True)`)."""
    path: str
    index: int

    def __str__(self) -> str:
        return f"{self.path}[frame {self.index}]"


def is_artifact(path: str | Path) -> bool:
    """An exported model (.onnx, .tflite, .engine), run by the runtime, not a checkpoint."""
    from runtime.formats import ENGINE_BY_SUFFIX

    return Path(path).suffix.lower() in ENGINE_BY_SUFFIX


def model_labels(paths: list[str]) -> list[str]:
    """Distinct table labels for checkpoints: the file stem (the file name for exported
    artifacts, whose stems repeat across formats), with the folder in front where labels
    repeat or clash with a result key; a training run's best.pt and last.pt by their run, as
    `sharpen export` names their artifacts (runs/a/best.pt -> a-best)."""
    stems = [Path(p).name if is_artifact(p) else _checkpoint_stem(p) for p in paths]
    out = []
    for p, stem in zip(paths, stems):
        label = stem if stems.count(stem) == 1 and stem not in RESERVED \
            else f"{Path(p).parent.name}/{stem}"
        while label in out:
            label += "'"
        out.append(label)
    return out


def _checkpoint_stem(path: str) -> str:
    # Imported here: distill.checkpoint brings torch, which artifacts alone do not need.
    from .checkpoint import run_stem
    return run_stem(path)


def is_teacher(path: str | Path, teacher_config: Optional[str] = None) -> bool:
    """Whether `path` is a teacher: a project checkpoint of one, or with `teacher_config` Restormer
    weights without a config of their own (the official .pth, a bare state dict)."""
    if is_artifact(path):   # before distill.checkpoint, which imports torch
        return False
    from .checkpoint import read_checkpoint
    return _teacher_checkpoint(read_checkpoint(path), teacher_config)


def _teacher_checkpoint(ck: dict, teacher_config: Optional[str]) -> bool:
    from .checkpoint import FORMAT
    if ck.get("format") != FORMAT:
        return teacher_config is not None or bool(fitting_configs(ck))
    return ck.get("kind") == "teacher"


def fitting_configs(ck: dict) -> list[str]:
    """The named Restormer configs whose tensor names and shapes a checkpoint without a config
    of its own has (the official motion_deblurring.pth: ["motion-deblur"]); [] for others."""
    from .checkpoint import FORMAT, CheckpointError, extract_state_dict
    from .teacher import named_configs_fitting
    if ck.get("format") == FORMAT:
        return []
    try:
        return named_configs_fitting(extract_state_dict(ck))
    except CheckpointError:
        return []


def load_model_fn(path: str | Path, tile: Optional[int] = None, device: str = "cpu",
                  teacher_config: Optional[str] = None, threads: int = 0,
                  provider: str = "auto") -> Fn:
    """A function HxWx3 -> HxWx3 for a project checkpoint (tiled Restormer for a teacher,
    whole-image inference for a student) or an exported student artifact (its runtime backend,
    exactly as `sharpen run` deploys it, INT8 included). `device` is for checkpoints: "cpu",
    "cuda", "auto" (CUDA when present; the teacher then runs in bf16/fp16 autocast).
    `teacher_config` builds the Restormer for weights without a config (the official .pth).
    `threads` (0: OMP_NUM_THREADS's count, else all cores) and `provider` (auto, cpu, cuda,
    tensorrt; .onnx only) are for artifacts, as `sharpen run --threads/--provider` take them.
    `path` may also name a shipped model (`fast`, `teacher`); an artifact that failed its parity
    gate at export is loaded with a `runtime.SharpenWarning`. The function takes and returns
    HxWx3 float32 RGB in [0, 1] (FrameError, a ValueError, for anything else, OpenCV's BGR
    uint8 included)."""
    if is_artifact(path):
        from runtime.backends import parity_failure
        from runtime.backends.runner import load_runner

        runner = load_runner(path, threads=threads, providers=provider)[0]
        failed = parity_failure(path, runner.backend)
        if failed:   # `run` refuses it without --force; say so here
            warnings.warn(f"{path} failed its parity gate at export ({failed}); scored anyway",
                          SharpenWarning)
        return runner
    from .checkpoint import FORMAT, CheckpointError, read_checkpoint
    from .teacher import resolve_weights
    path = resolve_weights(path)   # shipped names (fast, teacher), as --weights takes them
    ck = read_checkpoint(path)
    kind = ck.get("kind")
    if teacher_config is None and ck.get("format") != FORMAT:
        # Restormer weights without a config (the official .pth): the config they fit, as
        # --help promises, rather than "neither a teacher nor a student".
        teacher_config = next(iter(fitting_configs(ck)), None)
    if _teacher_checkpoint(ck, teacher_config):
        from .teacher import TILE, Teacher
        # Project checkpoints carry their config; --teacher-config is for the others.
        t = Teacher.load(path, config=None if ck.get("format") == FORMAT else teacher_config,
                         device=device)
        return TeacherFn(t, TILE if tile is None else tile)
    if kind != "student" and ck.get("format") != FORMAT:
        from .checkpoint import extract_state_dict
        from .teacher import other_restormer_task
        try:
            task = other_restormer_task(extract_state_dict(ck, path))
        except CheckpointError:   # no tensors: "neither ..." below says what the file is not
            task = None
        if task:   # Restormer's denoising or dual-pixel file: not "neither a teacher ..."
            raise CheckpointError(f"{path}: {task}")
    if kind != "student":
        raise CheckpointError(f"{path} is neither a teacher nor a student checkpoint of this "
                              f"project (kind={kind!r}); they are written by `sharpen "
                              "train-teacher` and `sharpen distill`. For Restormer weights "
                              "without a config (the official motion_deblurring.pth, a bare "
                              "state dict) give --teacher-config motion-deblur (or small, tiny)")

    from .checkpoint import load_student
    from .students import for_inference
    from .teacher import pick_device
    from .validation import predict
    dev = pick_device(device)
    model = for_inference(load_student(path)[0]).to(dev)
    return lambda img: predict(model, img, dev)


class TeacherFn:
    """The teacher as evaluate runs it, tiled at `tile`; `teacher` says what it is."""

    def __init__(self, teacher, tile: int) -> None:
        self.teacher, self.tile = teacher, tile

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return self.teacher.sharpen(img, tile=self.tile)

    def runs_on(self) -> str:
        """"cpu fp32", "cuda bf16": where and in what its outputs are computed here, as a label
        cache's entries say it of theirs (`label_cache.made_on`)."""
        from .data.label_cache import made_on
        return made_on({"teacher_device": self.teacher.device.type,
                        "teacher_precision": self.teacher.precision})

    def maker(self) -> tuple:
        """What its outputs are made by, as a label cache records it (`label_maker`)."""
        from .data.label_cache import label_maker
        from .teacher_tiles import overlap_for
        cfg = getattr(self.teacher.model, "config", None)
        return label_maker({"weights_hash": self.teacher.weights_id,
                            "teacher_arch": cfg.to_dict() if hasattr(cfg, "to_dict") else None,
                            "tile": self.tile, "overlap": overlap_for(self.tile)})


class LabelledTeacher:
    """The teacher's outputs for a label cache's frames (`sharpen labels` saves a clip's in
    CACHE/frames) read from its labels, not made again (seconds a frame on a CPU). `labels`:
    the sha256 of each whole frame (never a --crop: see `crop_unused`) -> its label; only
    frames whose file is the very input of their label are there, labelled by the weights,
    architecture and tiling of `fn`. Any other image goes to the teacher. `made_on`: the
    sha256 -> the device and precision its label was made in (`label_cache.made_on`), counted
    as labels are read."""

    def __init__(self, fn: TeacherFn, cache: Path, labels: dict[str, Path],
                 made_on: Optional[dict[str, str]] = None) -> None:
        self.fn, self.cache, self.labels = fn, cache, labels
        self.made_on = made_on or {}
        self.read = self.ran = 0
        self.read_made_on: dict[str, int] = {}
        self.last: Optional[str] = None   # what made the label of the last output, if read

    def __call__(self, img: np.ndarray) -> np.ndarray:
        from .data.label_cache import sha256_array
        from .images import ImageReadError, read_image
        key = sha256_array(np.ascontiguousarray(img))
        label = self.labels.get(key)
        if label is not None:
            try:
                out = read_image(label)
            except ImageReadError:   # a damaged label: the teacher makes it
                out = None
            if out is not None and out.shape == img.shape:
                self.read += 1
                made = self.last = self.made_on.get(key, "unknown")
                self.read_made_on[made] = self.read_made_on.get(made, 0) + 1
                return out
        self.ran += 1
        self.last = None
        return self.fn(img)

    def count(self, made: list[Optional[str]]) -> None:
        """The counts set to those of the images in the results, `made` of each: what made
        its label read (`last`), None where the teacher ran; those scored by an earlier run
        into the same --out included, the figure's outputs made again not counted twice."""
        self.read = sum(m is not None for m in made)
        self.ran = len(made) - self.read
        self.read_made_on = {}
        for m in made:
            if m is not None:
                self.read_made_on[m] = self.read_made_on.get(m, 0) + 1

    def made_on_text(self) -> str:
        """"cuda bf16" of the labels read, "unknown" for a cache that does not record it, and
        each with its count where they differ ("cuda bf16 (3 images), unknown (1 image)")."""
        if len(self.read_made_on) <= 1:
            return next(iter(self.read_made_on), "unknown")
        return ", ".join(f"{k} ({count(n, 'image')})" for k, n in self.read_made_on.items())


def frames_cache(spec) -> Optional[Path]:
    """The label cache whose frames/ `spec` is (evaluate's --data CACHE/frames), else None."""
    from .data.label_cache import FRAMES_DIR, is_label_cache
    if not isinstance(spec, (str, os.PathLike)):
        return None
    p = Path(spec)
    return p.parent if p.name == FRAMES_DIR and p.is_dir() and is_label_cache(p.parent) else None


def labelled_teacher(fn: TeacherFn, cache: Path,
                     frames: Optional[Collection[Path]] = None
                     ) -> tuple[Optional[LabelledTeacher], str]:
    """The teacher `fn` reading its outputs from `cache`'s labels where they are provably its
    own (same weights file hash, architecture, tile and overlap), or None and why not.
    `frames`: the resolved paths of the frames to be evaluated; only theirs are decoded and
    hashed (None: every frame of the cache)."""
    from .data.label_cache import (LabelCache, describe_maker, label_maker, made_on,
                                   sha256_array)
    from .images import ImageReadError, decode_image, to_rgb_float
    mine = fn.maker()
    entries = [e for e in LabelCache(cache).entries.values()
               if e.get("status") == "ok" and e.get("input_file") and e.get("input_hash")]
    same = [e for e in entries if label_maker(e) == mine]
    if not same:
        if not entries:
            return None, "it holds no labelled frames"
        theirs = label_maker(entries[0])
        tiling = theirs[2:] != mine[2:]
        said = describe_maker(theirs, tiling, entries[0].get("teacher_weights"))
        return None, (f"made by {said}, not "
                      f"{describe_maker(mine, tiling, fn.teacher.weights_path)}")
    labels, made = {}, {}
    wanted = None if frames is None else {Path(f).resolve() for f in frames}
    for e in same:
        label, frame = cache / e["label"], cache / e["input_file"]
        if wanted is not None and frame.resolve() not in wanted:
            continue
        try:
            raw = decode_image(frame)
        except (ImageReadError, OSError):
            continue
        if label.is_file() and sha256_array(raw) == e["input_hash"]:   # the input it labelled
            x = to_rgb_float(raw, str(frame))
            key = sha256_array(np.ascontiguousarray(x))
            labels[key], made[key] = label, made_on(e)
    return LabelledTeacher(fn, cache, labels, made), ""


def source_items(spec: str | os.PathLike | Sequence[str], split: str = "test",
                 limit: Optional[int] = None, info_out: Optional[dict] = None,
                 gopro_blur: str = "blur", clips: bool = False, stride: int = 1,
                 frames: Optional[Collection[int]] = None):
    """[(name, input path, gt path or None)] of a data source's split, `limit` spread evenly.
    clips=True: a video, and the clips of a folder of footage, give their frames, each input a
    `ClipFrame` (path, index): every `stride`-th from the first, or those of `frames` (indices
    of each clip; those past a clip's end are named in a warning, ValueError when they are past
    every clip's end); `limit` spreads over what that leaves. A clip OpenCV cannot open is
    named in a warning and left out (info_out "clips_left_out"); info_out
    "cut_clips" says of each clip that ends before the frames its header declares, "clips"
    how many clips the source holds (those left out not counted).
    Several specs: their items in the order given (an image that two of them hold, a file and
    its folder, once), `limit` spread over all of them; a name two of them share (frame0 of two
    folders) becomes the image's path.
    info_out, when given, receives "split": the split folder used (None: the source has none),
    "gopro_blur" where a GoPro root was read (its blurred folder),
    "videos": the clips left out, "not_images": the other files no item reads (a notes.txt).
    `gopro_blur`: a GoPro root's blurred folder (blur or blur_gamma), as labels reads it."""
    from .data.sources import resolve_source, spread
    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    items: list = []
    videos: set[str] = set()
    not_images: set[str] = set()
    used_split = None
    read_gopro = False
    cut: list[str] = []
    lengths: dict = {}   # clip -> its number of frames
    past_end: list[str] = []   # --frames past a clip's end, said once the run is not refused
    left_out: list[str] = []   # why each clip that cannot be read is left out
    for one in specs:
        # A missing split is an error, never the test split instead: choosing a model "on val"
        # must not quietly look at the test images.
        # Without `clips` the clips of a folder of footage are not decoded (images only): it
        # says which clips it left out (info_out "videos"), and which other files
        # ("not_images").
        info = resolve_source(one, split=split, frames=clips, gopro_blur=gopro_blur)
        used_split = used_split or info.split
        read_gopro = read_gopro or info.kind == "gopro"
        if clips:
            lengths.update(_clip_lengths(info.samples))
            cut += _cut_short(info.samples)
            left_out += info.unopenable_videos
            picked, notes = _picked(info.samples, stride, frames)
            past_end += notes
            items += [(s.name, s.input if s.frame is None else ClipFrame(str(s.input), s.frame),
                       s.gt) for s in picked]
        else:
            videos |= {str(s.input) for s in info.samples if s.frame is not None}
            items += [(s.name, s.input, s.gt) for s in info.samples if s.frame is None]
        videos |= set(info.videos_left_out)
        not_images |= set(info.not_images)
    if frames is not None and lengths and not any(isinstance(it[1], ClipFrame) for it in items):
        # Else "no images", or beside stills a run on them alone, said to hold no clip.
        had = ", ".join(f"{c} has {count(n, 'frame')}" for c, n in list(lengths.items())[:3])
        raise ValueError(f"--frames {','.join(map(str, sorted(frames)))}: past the end of every "
                         f"clip ({had}{', ...' if len(lengths) > 3 else ''})")
    for note in past_end:   # after the check: past every clip's end, the error says it alone
        warnings.warn(note, SharpenWarning)
    if len(specs) > 1:
        # A file named as well as its folder is one image, scored once (not twice in the mean).
        unique: dict[Path, tuple] = {}
        for it in items:
            inp = it[1]
            unique.setdefault((Path(inp.path).resolve(), inp.index) if isinstance(inp, ClipFrame)
                              else Path(inp).resolve(), it)
        items = list(unique.values())
        counts: dict[str, int] = {}
        for name, _, _ in items:
            counts[name] = counts.get(name, 0) + 1
        items = [(str(inp) if counts[name] > 1 else name, inp, gt) for name, inp, gt in items]
    if info_out is not None:
        info_out["split"] = used_split
        if read_gopro:
            info_out["gopro_blur"] = gopro_blur
        info_out["videos"] = sorted(videos)
        info_out["not_images"] = sorted(not_images)
        info_out["cut_clips"] = cut
        info_out["clips"] = len(lengths)
        info_out["clips_left_out"] = left_out
    return spread(items, limit)


def _clip_lengths(samples: list) -> dict:
    """{clip: its number of frames} of the clips among `samples`."""
    lengths: dict = {}
    for s in samples:
        if s.frame is not None:
            lengths[s.input] = max(lengths.get(s.input, 0), s.frame + 1)
    return lengths


def _cut_short(samples: list) -> list[str]:
    """Of the clips among `samples`, those whose frames end before the count their header
    declares, as `sharpen run` says it: a cut or damaged file reads like a short one. The margin
    allows for containers whose count is an estimate; a transport stream's always is one."""
    import cv2

    from runtime.transport_stream import TRANSPORT_STREAM_EXTS
    said = []
    for clip, n in _clip_lengths(samples).items():
        if Path(clip).suffix.lower() in TRANSPORT_STREAM_EXTS:
            continue
        cap = cv2.VideoCapture(str(clip))
        declared = cap.get(cv2.CAP_PROP_FRAME_COUNT) if cap.isOpened() else 0
        cap.release()
        declared = int(declared) if np.isfinite(declared) and declared > 0 else 0
        if declared and n < 0.98 * declared - 1:
            said.append(f"{clip}: the video ended after {n} of the {declared} frames its "
                        "header declares (truncated or damaged file?); the frames before the "
                        "cut are scored")
    return said


def _picked(samples: list, stride: int,
            frames: Optional[Collection[int]]) -> tuple[list, list[str]]:
    """The samples a --stride or --frames choice keeps: every still, and of each clip's frames
    every `stride`-th from the first or those numbered in `frames`; and a note per clip that
    `frames` numbers past its end."""
    if frames is None:
        return [s for s in samples if s.frame is None or s.frame % stride == 0], []
    wanted = set(frames)
    notes = []
    for clip, n in _clip_lengths(samples).items():
        if past := sorted(i for i in wanted if i >= n):
            notes.append(f"{clip} has {count(n, 'frame')}: --frames "
                         f"{','.join(map(str, past))} {'is' if len(past) == 1 else 'are'} "
                         "past its end")
    return [s for s in samples if s.frame is None or s.frame in wanted], notes


def sharpness(img: np.ndarray) -> float:
    g = img.mean(2)
    return float(np.hypot(np.diff(g, axis=0)[:, :-1], np.diff(g, axis=1)[:-1]).mean())


# SSIM's window: smaller images (or crops) cannot be scored.
MIN_SIDE = SSIM_MIN_SIDE
# Mean gradient below this (a black or grey frame, a fade) has no detail to sharpen: such a
# frame's sharpness ratio would divide by almost nothing, so it is left out of the ratio.
FLAT = 1e-4


def _read_pair(inp, gt, has_gt: bool, crop: int, reader=None):
    """Input and ground truth (None without) cropped, or ImageReadError naming the file (a
    `ClipFrame`'s frame read by `reader`, a `distill.data.sources.SampleReader`)."""
    from .images import ImageReadError, centre_crop, misoriented, read_image

    if isinstance(inp, ClipFrame):
        from .data.sources import Sample
        x = reader.input(Sample("", Path(inp.path), None, inp.index))
    else:
        x = read_image(inp)
    y = read_image(gt) if has_gt else None
    note = misoriented(inp, x, gt, y) if y is not None else ""
    # Sizes are compared before cropping: equal crops of unequal images are out of line.
    if y is not None and y.shape != x.shape:
        raise ImageReadError(f"{gt}: size {y.shape[1]}x{y.shape[0]} differs from its input "
                             f"{inp} ({x.shape[1]}x{x.shape[0]})" + (note and f"; {note}"))
    if note:
        raise ImageReadError(f"{gt}: {note}")
    x, y = centre_crop(x, crop), centre_crop(y, crop)
    if min(x.shape[:2]) < MIN_SIDE:
        raise ImageReadError(f"{inp}: {x.shape[1]}x{x.shape[0]} is smaller than SSIM's "
                             f"{MIN_SIDE}x{MIN_SIDE} window")
    return x, y


class _ModelFailed(Exception):
    """A model failed on one image (out of memory, a broken artifact): that image is skipped."""


def _outputs(fns: dict[str, Fn], x: np.ndarray, y: Optional[np.ndarray], inp,
             names: Optional[dict[str, str]]) -> dict[str, np.ndarray]:
    """{"input": x, model: its output, ..., "ground truth": y where there is one}."""
    outs = {"input": x}
    try:
        for k, f in fns.items():
            # Scored as the 8-bit PNG a user saves and a paper's numbers come from:
            # the float output scored 0.003-0.005 dB higher on reds-mini.
            outs[k] = quantise_8bit(f(x))
            if outs[k].shape[:2] != x.shape[:2]:
                raise OutputSizeError(outs[k].shape[:2], x.shape[:2])
    except OutputSizeError as e:
        raise ValueError(_size_changed((names or {}).get(k, k), e, x, inp)) from None
    except Exception as e:  # noqa: BLE001 - torch/ORT/LiteRT each raise their own types
        # An upload's name: escaped, as its other messages name it, so the skip is one line.
        raise _ModelFailed(f"{shown_path(str(inp))}: {k} failed on it: "
                           f"{first_line(e, 200)}") from None
    if y is not None:
        outs["ground truth"] = y
    return outs


def _entry(outs: dict[str, np.ndarray], reference: Optional[str],
           rank: Optional[Callable[[dict], float]],
           score_ssim: Callable[[np.ndarray, np.ndarray], float] = ssim,
           align: str = "none") -> dict:
    """One image's scores as the results and the journal keep them (plain JSON numbers, so
    that an image read back from the journal adds to the means exactly as it did scored):
    "scores" (per model, `per_image`'s), "ratios" (sharpness, x the input's; {} for a flat
    image), "flat", "gt_overshoot" and "rank" (`rank`'s value, else None). `score_ssim`: the
    SSIM of `--ssim` (`metrics.SSIMS`). `align` "ecc" (or "ecc-homography"): each image, the
    input too, scored registered to the ground truth (`distill.alignment`), its offset_x and
    offset_y beside its scores (None where ECC failed: "align_failed" says why, by model)."""
    import json

    x, y = outs["input"], outs.get("ground truth")
    models = {k: v for k, v in outs.items() if k != "ground truth"}
    base = sharpness(x)
    ratios = {k: sharpness(img) / base for k, img in models.items()} if base >= FLAT else {}
    failed_align: dict[str, str] = {}
    far: dict[str, list[float]] = {}
    if y is not None and align != "none":
        from .alignment import align_ecc, far_off
        scores = {}
        for k, img in models.items():
            a = align_ecc(img, y, align)
            scores[k] = {"psnr": a.psnr, "ssim": a.ssim,
                         "offset_x": a.offset and a.offset[0],
                         "offset_y": a.offset and a.offset[1]}
            if a.failed:
                failed_align[k] = a.failed
            if far_off(a.reach, y.shape):
                far[k] = list(a.reach)
    elif y is not None:
        scores = {k: {"psnr": psnr(img, y), "ssim": score_ssim(img, y)}
                  for k, img in models.items()}
    elif reference is not None:
        scores = {k: {"psnr_to_reference": psnr(img, models[reference]),
                      "ssim_to_reference": score_ssim(img, models[reference])}
                  for k, img in models.items() if k != reference}
    else:
        scores = {}
    if y is None:
        # Without ground truth the ratio is an image's only score: without it the
        # results named no image (which ones --limit took, which one a model overdid).
        for k in models:
            scores.setdefault(k, {})["sharpness"] = ratios.get(k)
    around = input_range(x)   # once per image, shared by every model's output
    for k, img in models.items():
        # The input never leaves its own neighbourhood's range: 0 without counting.
        scores.setdefault(k, {})["overshoot"] = (
            0.0 if k == "input" else overshoot(img, x, around=around))
        if y is not None:
            scores[k]["overshoot_beyond_gt"] = (
                0.0 if k == "input" else overshoot(img, x, truth=y, around=around))
    gt_o = overshoot(y, x, around=around) if y is not None else None
    if y is not None:
        # Per image, what sharpening that frame takes: one frame a model rings on
        # is judged against it (a mean over the set hid it).
        scores["ground truth"] = {"overshoot": gt_o}
    entry = {"scores": scores, "ratios": ratios, "flat": bool(base < FLAT),
             "gt_overshoot": gt_o, "rank": _rank(rank, outs, scores, align)}
    if y is not None:
        entry["gt_shift"] = gt_shift(x, y)
    if failed_align:
        entry["align_failed"] = failed_align
    if far:
        entry["align_far"] = far
    return json.loads(json.dumps(entry, default=float))


def _rank(rank: Optional[Callable[[dict], float]], outs: dict[str, np.ndarray], scores: dict,
          align: str) -> Optional[float]:
    """`rank`'s value of an image; `least_gain` by the aligned scores where they were aligned:
    the figure's worst images are then the table's (a model's output merely moved ranked
    first unaligned)."""
    if rank is least_gain and align != "none" and "psnr" in scores.get("input", {}):
        base = scores["input"]["psnr"]
        return min((v["psnr"] - base for k, v in scores.items()
                    if k not in ("input", "ground truth")), default=0.0)
    return rank(outs) if rank else None


def _say_shifted(shown: str, shifts: list) -> None:
    """A warning where the pairs' ground truth lies off their blurred inputs by an offset they
    share (`shared_shift`): every score then measures the offset as much as the blur, a
    model's gain turned into a loss."""
    if (shared := shared_shift(shifts)) is None:
        return
    dx, dy = shared
    warnings.warn(f"{shown}: the ground truth sits about {dx:+.0f}, {dy:+.0f} px from its "
                  f"blurred input (median of {count(len(shifts), 'pair')}, by phase correlation): "
                  "PSNR/SSIM score that offset as well as the blur; check that both sides hold "
                  "the same crops, or register the pairs (--align ecc aligns each output to its "
                  "ground truth, as RealBlur's evaluation script)", SharpenWarning)


def _say_far_off(far: dict[str, dict[str, list[float]]]) -> None:
    """One warning naming the images (up to 3) and models ECC moved over FAR_OFF of the image
    (`alignment.far_off`), each by the move of its corner moved most: a wrong ground truth, or
    a model's output that lost its input, is scored on what ECC found alike, over part of the
    image."""
    if not far:
        return
    from .alignment import FAR_OFF
    n = sum(len(by_model) for by_model in far.values())
    shown = "; ".join(f"{name}: " + ", ".join(f"{k} {dx:+.1f}, {dy:+.1f} px"
                                               for k, (dx, dy) in by_model.items())
                      for name, by_model in list(far.items())[:3])
    more = f"; and {count(len(far) - 3, 'image')} more" if len(far) > 3 else ""
    warnings.warn(f"ECC moved {count(n, 'output')} by over {FAR_OFF:.0%} of the image at a "
                  f"corner ({shown}"
                  f"{more}): a blur/sharp pair lies a few px apart, so ECC may have matched "
                  "content the two do not share (a ground truth of another scene, an output "
                  "that lost its input); each is scored over the overlap alone",
                  SharpenWarning)


def _item_stamp(inp, gt) -> list:
    """An item's input (a clip's frame: the clip and the index) and ground truth files, as
    the journal tells a replaced or edited one."""
    from .evaluate_journal import file_stamp
    if isinstance(inp, ClipFrame):
        return [file_stamp(inp.path), inp.index, gt and file_stamp(gt)]
    return [file_stamp(inp), None, gt and file_stamp(gt)]


def _figure_outputs(kept: list, entries: dict[int, dict], items: list, order_of,
                    keep_outputs: Optional[int], fns: dict[str, Fn], has_gt: bool, crop: int,
                    names: Optional[dict[str, str]], stopped: bool,
                    progress: bool = False) -> dict:
    """{name: outputs} of the `keep_outputs` images the figure shows, in its order: those
    this run scored are in `kept`; those scored by an earlier run (in the journal, without
    their outputs) have their models run on them again, them alone. Interrupted, only
    `kept`'s."""
    import warnings as _w

    from .data.sources import SampleReader
    from .images import ImageReadError
    ranked = sorted((order_of(i, e), i) for i, e in entries.items())
    chosen = ranked if keep_outputs is None else ranked[:keep_outputs]
    have = {i: (name, outs) for _, i, name, outs in kept}
    again = sum(i not in have for _, i in chosen)
    if again and not stopped and progress:   # minutes with a teacher on a CPU: said
        print(f"evaluate: running the models again on the figure's {count(again, 'image')} "
              "scored earlier", file=sys.stderr)
    outputs = {}
    reader = SampleReader()
    try:
        for _, i in chosen:
            if i in have:
                name, outs = have[i]
            elif stopped:
                continue
            else:
                name, inp, gt = items[i]
                try:
                    x, y = _read_pair(inp, gt, has_gt, crop, reader)
                    outs = _outputs(fns, x, y, inp, names)
                except (ImageReadError, _ModelFailed) as e:
                    _w.warn(f"left out of the figure: {e}", SharpenWarning)
                    continue
            outputs[name] = outs
    finally:
        reader.close()
    return outputs


def evaluate(weights: str | os.PathLike | Sequence[str | os.PathLike], spec: str,
             split: str = "test", limit: Optional[int] = None,
             crop: int = 0, progress: bool = True, tile: Optional[int] = None,
             keep_outputs: Optional[int] = FIGURE_IMAGES, device: str = "cpu",
             teacher_config: Optional[str] = None, threads: int = 0,
             provider: str = "auto", gopro_blur: str = "blur", stride: int = 1,
             frames: Optional[Collection[int]] = None,
             out: Optional[str | os.PathLike] = None,
             reference: Optional[str | os.PathLike] = None, ssim_window: str = "2d",
             align: str = "none") -> dict:
    """Checkpoints and exported artifacts (paths, or shipped names such as `fast` and
    `teacher`; one, or a list) over a data source; see `evaluate_fns`. With exactly one
    teacher among them, its output is the reference where the data has no ground truth.
    `threads` and `provider` are for exported artifacts (see `load_model_fn`); `gopro_blur`
    picks a GoPro root's blurred folder (see `source_items`). A video, and the clips of a
    folder, are scored frame by frame: every `stride`-th frame, or those of `frames`.
    "outputs" holds the `keep_outputs` images' outputs a figure shows (None: every image's,
    tens of MB a 1080p image and model). `out`: a folder (`sharpen evaluate --out`) where each
    image's scores are recorded as it is scored, so that the same call after a kill scores
    only the images left (see `evaluate_journal`). `reference`: one of `weights` whose output
    stands in for ground truth instead of the teacher's (the FP32 export beside its INT8 one);
    ValueError naming it and the models when it is none of them, or the only one.
    `ssim_window`: "2d" (channels averaged) or "3d" (`distill.metrics.ssim_3d`). `align`:
    "none", or "ecc" (each image registered to its ground truth first, `distill.alignment`)."""
    ssim_named(ssim_window)   # before any model loads
    from .alignment import ALIGNS
    if align not in ALIGNS:
        raise ValueError(f"align must be one of {list(ALIGNS)}, got {align!r}")
    if isinstance(weights, (str, os.PathLike)):   # iterated, a path was read letter by letter
        weights = [weights]
    if not all(is_artifact(w) for w in weights):   # exported models alone need no torch
        from .teacher import resolve_weights
        # Resolved here as load_model_fn does, so that is_teacher reads the file, not the name.
        weights = [str(w) if is_artifact(w) else str(resolve_weights(w)) for w in weights]
    weights = [str(w) for w in weights]
    labels = model_labels(weights)
    teachers = [label for label, w in zip(labels, weights) if is_teacher(w, teacher_config)]
    ref_label = teachers[0] if len(teachers) == 1 else None
    if reference is not None:   # before any model loads
        # A checkpoint's name (fast) among exported models alone: not resolved, which needs
        # torch, a device install's missing dependency rather than this mistake.
        ref = (reference if is_artifact(reference) or all(map(is_artifact, weights))
               else _resolved(reference))
        given = [label for label, w in zip(labels, weights) if _same_file(w, ref)]
        if not given:
            raise ValueError(f"--reference {reference}: not one of the models given "
                             f"({', '.join(weights)}); give it with --model (an exported "
                             "model) or --weights (a checkpoint) too: it runs beside them")
        if len(given) == len(labels):   # every model run would be scored against nothing
            raise ValueError(f"--reference {reference} is the only model given: nothing is "
                             "compared with its output; give the others (its INT8 file) with "
                             "--model or --weights too")
        ref_label = given[0]
    if tile is not None and tile != TILE and not teachers:
        # Students run whole images here: the option changed nothing, silently.
        warn(f"--tile {tile} has no effect: it tiles teacher checkpoints, and none is among "
             f"the models ({', '.join(weights)}); students run whole images", stacklevel=2)
    fns = {label: load_model_fn(w, tile, device, teacher_config, threads, provider)
           for label, w in zip(labels, weights)}
    if (teacher := _teacher_fn(fns)) is not None:
        # As `sharpen teacher` and `sharpen labels` say it: a small tile costs quality.
        if said := tiling_context(teacher.tile, teacher.teacher.train_crop):
            warn(said, stacklevel=2)
    from_labels = _teacher_from_labels(fns, spec, crop, split, limit, stride, frames)
    import contextlib

    from .run_lock import run_lock
    journal = None
    # One run per out folder: the first to compact its record removed the journal another
    # was appending to. Refused (RunLocked, a ValueError) naming the first's process.
    with (run_lock(out, doing="evaluating", flag="--out", name=EVALUATE_LOCK)
          if out is not None else contextlib.nullcontext()):
        if out is not None:
            journal = _score_journal(out, labels, weights, fns, crop, device, teacher_config,
                                     threads, provider, tile, ref_label, ssim_window, align)
        try:
            res = evaluate_fns(fns, spec, split, limit, crop, progress,
                               reference=ref_label,
                               keep_outputs=keep_outputs, rank=least_gain,
                               names=dict(zip(labels, weights)), gopro_blur=gopro_blur,
                               clips=True, stride=stride, frames=frames, journal=journal,
                               ssim_window=ssim_window, align=align)
        except KeyboardInterrupt as e:
            if hasattr(e, "results"):
                e.results["weights"] = dict(zip(labels, weights))
                e.results.update(_labels_record(fns, from_labels))
            raise
    res["weights"] = dict(zip(labels, weights))
    res.update(_labels_record(fns, from_labels))
    if (teacher := _teacher_fn(fns)) is not None:
        res["teacher_tile"] = teacher.tile   # 0: whole images; tiles change the outputs
    return res


def _teacher_fn(fns: dict[str, Fn]) -> Optional[TeacherFn]:
    """The first teacher among `fns` (one reading a label cache's outputs too), else None."""
    return next(((f.fn if isinstance(f, LabelledTeacher) else f) for f in fns.values()
                 if isinstance(f, (TeacherFn, LabelledTeacher))), None)


def _resolved(item: str | os.PathLike) -> str:
    from .teacher import resolve_weights   # a checkpoint's name: torch is there
    return str(resolve_weights(item))


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _score_journal(out, labels: list[str], weights: list[str], fns: dict[str, Fn], crop: int,
                   device: str, teacher_config: Optional[str], threads: int, provider: str,
                   tile: Optional[int], reference: Optional[str] = None,
                   ssim_window: str = "2d", align: str = "none") -> ScoreJournal:
    """`evaluate(out=)`'s record, its settings the models' files and the options that change
    every score."""
    from runtime.host import code_info, default_threads

    from .evaluate_journal import file_stamp
    code = code_info()
    return ScoreJournal(out, {
        "models": {label: file_stamp(w) for label, w in zip(labels, weights)},
        # What changes every score (which images and files are scored, each image's stamp
        # says); a teacher reading a cache's labels gives other outputs than one running.
        "options": {"--crop": crop, "--device": device, "--teacher-config": teacher_config,
                    # the count the engines run with (--threads, else OMP_NUM_THREADS):
                    # it changes outputs' last digits
                    "threads": default_threads(threads), "--provider": provider,
                    # the teacher's alone: students run whole images whatever --tile says
                    "tile": teacher.tile if (teacher := _teacher_fn(fns)) else None,
                    "--reference": reference, "--ssim": ssim_window, "--align": align,
                    "teacher labels": next((str(f.cache) for f in fns.values()
                                            if isinstance(f, LabelledTeacher)), None),
                    # The code that scored: an upgrade (a metric redefined, a bug fixed) took
                    # the old code's scores as its own.
                    "sharpen": code.get("version"),
                    "commit": (code.get("commit") or "")[:12] or None}})


def _teacher_from_labels(fns: dict[str, Fn], spec, crop: int, split: str = "test",
                         limit: Optional[int] = None, stride: int = 1,
                         frames: Optional[Collection[int]] = None) -> dict:
    """On a label cache's frames, each teacher of `fns` that made its labels reads them
    (replaced in `fns`); {"model", "cache", "unused": why} for one whose labels they are not,
    and with "crop" when --crop kept them from being used (see `crop_unused`)."""
    cache = frames_cache(spec)
    unused: dict = {}
    if cache is None:
        return unused
    # The frames evaluate reads (--limit's share): the others are neither decoded nor hashed.
    # With --crop none is: the labels go unread, and are only checked to be a teacher's own
    # (the --crop note would otherwise tell another teacher that it reads them without it).
    frames = (set() if crop else
              {Path(inp).resolve() for _, inp, _ in
               source_items(spec, split, limit, clips=True, stride=stride, frames=frames)
               if not isinstance(inp, ClipFrame)})
    for label, fn in list(fns.items()):
        if isinstance(fn, TeacherFn):
            reading, why = labelled_teacher(fn, cache, frames)
            if reading is None:   # another teacher given beside it may still have made them
                unused = unused or {"model": label, "cache": str(cache), "unused": why}
            elif crop:
                return {"model": label, "cache": str(cache), "unused": crop_unused(crop),
                        "crop": crop}
            else:
                fns[label] = reading
    return unused


def _labels_record(fns: dict[str, Fn], unused: dict) -> dict:
    """The results' "teacher_labels": which model's outputs came from which cache's labels,
    for how many images ("read"), and on how many it ran ("ran"); or why they could not."""
    for label, fn in fns.items():
        if isinstance(fn, LabelledTeacher):
            return {"teacher_labels": {"model": label, "cache": str(fn.cache), "read": fn.read,
                                       "ran": fn.ran, "made_on": fn.made_on_text(),
                                       "runs_on": fn.fn.runs_on()}}
    return {"teacher_labels": unused} if unused else {}


def crop_unused(crop: int) -> str:
    """Why a teacher runs on --crop's crops rather than reading a cache's labels: a label is
    its output on the whole frame, cropped, and Restormer's attention spans the whole input,
    so on the crop alone (what every other model gets) it gives another output."""
    return (f"--crop {crop}: they are its outputs on the whole frames, cropped, and on a "
            f"{crop} px crop alone, as every model here sees it, it computes other ones")


def teacher_labels_line(res: dict) -> Optional[str]:
    """What evaluate says of a teacher's outputs read from a label cache, or of why not."""
    rec = res.get("teacher_labels")
    if not rec:
        return None
    model, cache = rec["model"], rec["cache"]
    if rec.get("crop"):
        return (f"note: {model} ran on every image, not reading the labels of {cache} "
                f"({rec['unused']}); without --crop it reads them")
    if "unused" in rec:
        return (f"note: the labels of {cache} are not {model}'s outputs ({rec['unused']}): "
                "it ran on every image")
    n = rec["read"] + rec["ran"]
    if not rec["read"]:
        return (f"note: no image here is a frame labelled in {cache} as it is now: {model} "
                "ran on every image")
    which = (f"the {count(n, 'image')}" if not rec["ran"]
             else f"{rec['read']} of the {count(n, 'image')}")
    made = rec.get("made_on") or "unknown"
    if made == "unknown":
        made = ("labels made on an unknown device and precision (the cache predates their "
                "record; labels made on a GPU are bf16/fp16 outputs)")
    else:
        made = f"labels made on {made}"
    if rec.get("runs_on") and rec.get("made_on") not in ("unknown", rec["runs_on"]):
        made += f"; here it runs on {rec['runs_on']}"
    return (f"{model}: its outputs for {which} are the labels of {cache} (the same weights, "
            f"architecture and tiling made them), not computed again ({made})")


def least_gain(outs: dict[str, np.ndarray]) -> float:
    """An image's rank for the figure: the smallest PSNR gain any model makes on it, so that
    the images a model leaves worse (the question a figure must answer) are the ones shown.
    Without ground truth every image ranks the same (the first ones are shown)."""
    y = outs.get("ground truth")
    if y is None:
        return 0.0
    base = psnr(outs["input"], y)
    return min((psnr(img, y) - base for k, img in outs.items()
                if k not in ("input", "ground truth")), default=0.0)


def evaluate_fns(fns: dict[str, Fn], spec: str | os.PathLike | Sequence[str],
                 split: str = "test", limit: Optional[int] = None, crop: int = 0,
                 progress: bool = True, reference: Optional[str] = None,
                 keep_outputs: Optional[int] = None,
                 rank: Optional[Callable[[dict], float]] = None,
                 names: Optional[dict[str, str]] = None, gopro_blur: str = "blur",
                 clips: bool = False, stride: int = 1,
                 frames: Optional[Collection[int]] = None,
                 journal: Optional[ScoreJournal] = None, ssim_window: str = "2d",
                 align: str = "none") -> dict:
    """{"images": n, "has_gt": bool, "input": {...}, "<model>": {psnr, ssim, psnr_gain,
    ssim_gain, worst_psnr_gain, worst_image, sharpness, overshoot}, "per_image": {name:
    {label: {psnr, ssim, overshoot} (without ground truth: {sharpness, psnr_to_reference,
    overshoot})}}, "outputs": {name: {label: image}}} (outputs kept for figures). A mean gain
    can hide frames made worse (a deblurrer that over-sharpens sharp frames), hence the worst.
    "overshoot" (`distill.metrics.overshoot`, percent of pixels) is the halos and ringing the
    sharpness ratio rewards; with ground truth, "ground_truth_overshoot" is the ground truth's
    own (thin lines and highlights take the true image past the input's range), and
    "overshoot_beyond_gt" (per model and image) counts only the pixels past the ground
    truth's local range too: halos the true image has not.

    Full-resolution outputs add up (tens of MB per image and model), so only `keep_outputs`
    images' are kept (None: all): the first ones, or with `rank` (a function of one image's
    outputs) the lowest-ranked. An image a model fails on (out of memory, a broken artifact)
    is skipped by name like an unreadable one (a `runtime.SharpenWarning` each, and listed in
    "failed"); a folder's videos (unless `clips`), and its files that are not images, are left
    out with one. A Ctrl-C (or SIGTERM, as `sharpen`
    raises it) once images are scored is raised on with `.results`: theirs, marked
    "interrupted".

    Without ground truth, `reference` (a label of `fns`, e.g. the teacher) stands in for it:
    "psnr_to_reference" of the input and every other model to its output, per image and mean.
    A student that sharpens real blur the teacher's way comes closer to it than the input;
    one that invents its own correction (over-sharpening, tone shifts) moves further away,
    which a sharpness ratio alone rewards.

    A model whose output is not its input's size ends the run (ValueError naming it by
    `names`, label -> file, the image and both sizes): it would fail every image the same way.

    `spec` may be several data sources (image files and folders): see `source_items`.
    clips=True: videos, and a folder's clips, are scored frame by frame (decoded one at a
    time; far ahead by a keyframe seek where the clip's seeks are exact, see
    `distill.data.frame_seek`), every `stride`-th or those of `frames`; "clip_frames" maps
    each frame's name to [clip, frame index]. Without ground truth the figure's frames are
    then spread over them.
    A frame that does not decode (a damaged clip) is skipped by name like an unreadable image.

    `journal` (`evaluate_journal.ScoreJournal`): each image's scores are appended to it as it
    is scored, and those it holds from an earlier run with the same settings and files are
    taken, not scored again; the figure's images among them have their outputs made again.

    `align` "ecc" (`sharpen evaluate --align ecc`): with ground truth, each image (the input's
    too) is registered to it by ECC and scored over the overlap, as RealBlur's published scores
    are (`distill.alignment`); per image "offset_x"/"offset_y", and "alignment_failed" lists
    the images and models ECC did not converge on (scored unaligned, a warning each).
    """
    from .alignment import ALIGNS
    if align not in ALIGNS:
        raise ValueError(f"align must be one of {list(ALIGNS)}, got {align!r}")
    if reference is not None and reference not in fns:
        raise ValueError(f"reference {reference!r} is not one of the models {list(fns)}")
    score_ssim = ssim_named(ssim_window)
    from runtime.progress import progress as progress_bar

    from .images import ImageReadError
    used: dict = {}
    items = source_items(spec, split, limit, used, gopro_blur, clips, stride, frames)
    videos = used.get("videos") or []
    one = isinstance(spec, (str, os.PathLike))
    shown = str(spec) if one else ", ".join(map(str, spec))
    not_frames = ("evaluate scores images, not a video's frames; `sharpen labels --data VIDEO "
                  "--out CACHE` saves the frames it labels in CACHE/frames, which evaluate "
                  "takes (or extract them with ffmpeg); `sharpen evaluate` scores a clip's "
                  "frames itself")
    if not items:
        if videos:
            what = (shown if one and Path(spec).is_file() else
                    f"{shown} holds only videos ({len(videos)})")
            raise ValueError(f"{what}: {not_frames}")
        raise ValueError(f"{shown}: no images")
    if videos:   # footage of stills and clips: the clips were left out without a word
        warnings.warn(f"{shown}: {count(len(videos), 'video')} left out ({', '.join(videos[:3])}"
                      f"{', ...' if len(videos) > 3 else ''}); {not_frames}", SharpenWarning)
    from runtime.sources import warn_not_images
    warn_not_images(shown, used.get("not_images") or [], "evaluate")
    # Named in a warning as the folder was read; failed, as `labels` fails them (exit 1).
    failed: list[str] = list(used.get("clips_left_out") or [])
    for said in used.get("cut_clips") or []:
        failed.append(said)
        warnings.warn(said, SharpenWarning)
    sharp_ratio: dict[str, list[float]] = {k: [] for k in ["input", *fns]}
    kept: list[tuple[float, int, str, dict[str, np.ndarray]]] = []
    per_image: dict[str, dict[str, dict[str, float]]] = {}
    has_gt = all(gt is not None for _, _, gt in items)
    flat, scored = 0, 0
    gt_over: list[float] = []
    align_failed: list[dict] = []
    align_far: dict[str, dict[str, list[float]]] = {}
    stopped: Optional[KeyboardInterrupt] = None
    from .data.sources import SampleReader, spread
    reader = SampleReader()
    on_clip = {name: [inp.path, inp.index] for name, inp, _ in items
               if isinstance(inp, ClipFrame)}
    # A clip's first frames are near-duplicates: without ground truth to rank by, the figure
    # shows frames spread over the clips, not its first ones.
    shown_first = ({i for i, _ in spread(list(enumerate(items)), keep_outputs)}
                   if on_clip and not has_gt and keep_outputs else set())

    def order_of(i: int, entry: dict) -> float:
        return (float(i not in shown_first) if shown_first else
                entry["rank"] if rank else float(i))

    entries: dict[int, dict] = {}   # item index -> its scores (`_entry`), this run's or earlier
    stamps: dict[int, list] = {}
    if journal is not None:
        changed = 0
        for i, (name, inp, gt) in enumerate(items):
            stamps[i] = _item_stamp(inp, gt)
            earlier = journal.get(name, stamps[i])
            if earlier is not None:
                entries[i] = earlier
            changed += journal.changed(name, stamps[i])
        journal.say(len(entries), len(items) - len(entries), changed)
    scored = len(entries)
    labelled = next((f for f in fns.values() if isinstance(f, LabelledTeacher)), None)
    todo = [(i, it) for i, it in enumerate(items) if i not in entries]
    bar = progress_bar(todo, desc="evaluate",
                       unit="frame" if len(on_clip) == len(items) else "img", quiet=not progress)
    try:
        for i, (name, inp, gt) in bar:
            try:
                x, y = _read_pair(inp, gt, has_gt, crop, reader)
            except ImageReadError as e:
                failed.append(str(e))
                warnings.warn(f"skipped: {e}", SharpenWarning)
                continue
            try:
                outs = _outputs(fns, x, y, inp, names)
            except _ModelFailed as e:
                failed.append(str(e))
                warnings.warn(f"skipped: {failed[-1]}", SharpenWarning)
                continue
            # Everything of one image is computed first and then recorded at once, so that an
            # interrupt leaves only whole images in the results.
            entries[i] = entry = _entry(outs, reference, rank, score_ssim, align)
            if labelled is not None:
                entry["teacher_label"] = labelled.last
            scored += 1
            if journal is not None:
                journal.put(name, stamps[i], entry)
            kept.append((order_of(i, entry), i, name, outs))
            if keep_outputs is not None and len(kept) > keep_outputs:
                kept.remove(max(kept, key=lambda t: (t[0], t[1])))
    except KeyboardInterrupt as e:
        if not scored:
            raise
        stopped = e   # what was scored is reported (and saved), marked as partial
        print(f"interrupted: results of the {count(scored, 'image')} scored so far",
              file=sys.stderr)
    finally:
        bar.close()
        reader.close()
        if journal is not None:
            journal.close()
    # In the items' order, however many were scored earlier: the means are then an
    # uninterrupted run's to the last digit.
    for i, (name, _, _) in enumerate(items):
        if (entry := entries.get(i)) is None:
            continue
        flat += entry["flat"]
        for k, r in entry["ratios"].items():
            sharp_ratio[k].append(r)
        if entry["gt_overshoot"] is not None:
            gt_over.append(entry["gt_overshoot"])
        per_image[name] = entry["scores"]
        for k, why in (entry.get("align_failed") or {}).items():
            align_failed.append({"image": name, "model": k, "error": why})
            warnings.warn(f"{name}: ECC did not converge on {k}'s output ({why}): scored "
                          "unaligned, on the ground truth's grid as given", SharpenWarning)
        if entry.get("align_far"):
            align_far[name] = entry["align_far"]
    if align == "none":   # aligned, an offset the pairs share is what ECC took out
        _say_shifted(shown, [e["gt_shift"] for e in entries.values() if e.get("gt_shift")])
    _say_far_off(align_far)
    made = [e.get("teacher_label") for _, e in sorted(entries.items())]
    try:
        outputs = _figure_outputs(kept, entries, items, order_of, keep_outputs, fns, has_gt,
                                  crop, names, stopped is not None, progress)
    except KeyboardInterrupt as e:   # every image is scored: the figure is this run's part
        stopped = e
        outputs = _figure_outputs(kept, entries, items, order_of, keep_outputs, fns, has_gt,
                                  crop, names, True, progress)
        print(f"interrupted: results of the {count(scored, 'image')} scored, the figure "
              "without those scored earlier", file=sys.stderr)
    if labelled is not None:
        labelled.count(made)
    if not scored:
        what = ("its one image could not be evaluated (it is named above)" if len(items) == 1
                else f"none of its {len(items)} images could be evaluated (each is named above)")
        raise ValueError(f"{shown}: {what}")
    res: dict = {"images": scored, "has_gt": has_gt, "failed": failed, "data": spec,
                 "split": used.get("split"), "crop": crop, "limit": limit,
                 "flat_images": flat, "interrupted": stopped is not None}
    if has_gt or reference is not None:   # which SSIM the numbers are (`--ssim`)
        res["ssim_window"] = ssim_window
    if used.get("gopro_blur"):   # blur/ or blur_gamma/: published GoPro tables differ by it
        res["gopro_blur"] = used["gopro_blur"]
    if used.get("clips"):   # said even where --limit took no frame of them
        res["clip_frames"] = {n: on_clip[n] for n in per_image if n in on_clip}
        res["cut_clips"] = list(used.get("cut_clips") or [])
        res["stride"], res["frames"] = stride, sorted(frames) if frames is not None else None
    if used.get("clips_left_out"):
        res["clips_left_out"] = list(used["clips_left_out"])
    if reader.seek_notes:   # why a slow evaluation decoded a clip from its start
        res["seek_notes"] = list(reader.seek_notes)
    if stopped is not None:
        res["exit_code"] = interrupt_exit_code(stopped)   # 130 Ctrl-C, 143 SIGTERM
    for k, ratios in sharp_ratio.items():
        res[k] = {"sharpness": float(np.mean(ratios)) if ratios else None}
        if has_gt:
            for m in ("psnr", "ssim"):
                res[k][m] = float(np.mean([v[k][m] for v in per_image.values()]))
    for k in sharp_ratio:
        for m in ("overshoot", "overshoot_beyond_gt") if has_gt else ("overshoot",):
            res[k][m] = float(np.mean([v[k][m] for v in per_image.values()]))
    if has_gt:
        # What sharpening this blur truly takes past the input's range (thin lines).
        res["ground_truth_overshoot"] = float(np.mean(gt_over))
        from . import alignment
        res["align"] = align
        res["convention"] = {**convention(ssim_window), "alignment": (
            alignment.ALIGNMENT[align] if align != "none" else ALIGNMENT)}
        if align != "none":
            res["alignment_failed"] = align_failed
        for k in fns:
            res[k]["psnr_gain"] = res[k]["psnr"] - res["input"]["psnr"]
            res[k]["ssim_gain"] = res[k]["ssim"] - res["input"]["ssim"]
            gains = {n: m[k]["psnr"] - m["input"]["psnr"] for n, m in per_image.items()}
            worst = min(gains, key=gains.get)
            res[k]["worst_psnr_gain"], res[k]["worst_image"] = gains[worst], worst
    elif reference is not None:
        res["reference"] = reference
        for k in (k for k in ("input", *fns) if k != reference):
            for m in ("psnr_to_reference", "ssim_to_reference"):
                res[k][m] = float(np.mean([v[k][m] for v in per_image.values()]))
    res["per_image"] = per_image
    if seqs := per_sequence(res):
        res["per_sequence"] = seqs
    res["outputs"] = outputs
    if stopped is not None:
        # The interruption goes on, carrying the results: returned, they let a loop over
        # evaluations (or the bench) go on to the next one at every Ctrl-C.
        stopped.results = res
        raise stopped
    return res


def write_per_image_csv(res: dict, path: str | Path) -> Path:
    """One row per image and model (the blurred input as model "input"): image, sequence (a
    GoPro sequence, the folder part of the image's name; empty where there is none), model and
    each per-image score, so that `pandas.read_csv(path).groupby(["model", "sequence"])` gives
    per-sequence means; with a clip's frames among them, its "clip" and "frame" index too.
    Written atomically, for a spreadsheet as well (runtime.spreadsheet: a BOM, and a name a
    spreadsheet would run as a formula behind a `'`)."""
    from runtime.spreadsheet import write_table_csv
    metrics: list[str] = []
    for scores in res["per_image"].values():
        for by_model in scores.values():
            metrics += [m for m in by_model if m not in metrics]
    on_clip = res.get("clip_frames") or {}
    clip_cols = ["clip", "frame"] if on_clip else []
    rows = []
    for name, scores in res["per_image"].items():
        where = [*on_clip.get(name, ["", ""])] if on_clip else []
        for model, by_model in scores.items():
            rows.append([name, sequence_of(name), *where, model,
                         *(_cell(by_model.get(m)) for m in metrics)])
    # A name that is not UTF-8 (a Latin-1 folder) as \udcdf: the table stays UTF-8 to read.
    return write_table_csv(path, ["image", "sequence", *clip_cols, "model", *metrics], rows)


def _cell(v: Optional[float]) -> str:
    return "" if v is None else repr(float(v))


def _size_changed(model: str, e: OutputSizeError, x: np.ndarray, inp) -> str:
    """What `sharpen run` says of a model that changes the size, with the image it was given
    (scikit-image's 'Input images must have the same dimensions.' named neither)."""
    (oh, ow), (ph, pw), (h, w) = e.out_hw, e.in_hw, x.shape[:2]
    padded = f" (padded to {pw}x{ph}, the model's size multiple)" if (ph, pw) != (h, w) else ""
    return (f"{model}: the model returned {ow}x{oh} for the {w}x{h} image "
            f"{shown_path(str(inp))}{padded}: a sharpening model keeps the image's size; one "
            "that changes it is not supported")


# The widest figure that opens whole on a laptop's screen, in pixels.
FIGURE_MAX_WIDTH = 1600
_GAP, _LINE = 8, 15   # pixels between cells; one 9 pt line of text at 100 dpi


@any_script_text
def side_by_side(outputs: dict[str, dict[str, np.ndarray]], path: str | Path, side: int = 192,
                 title: str = "") -> Path:
    """One row per image: the crop with the most edge energy in the input, every output, each
    cell named (image and model). Crops are their pixels repeated at the largest whole zoom
    (up to 3x) that keeps the figure within FIGURE_MAX_WIDTH (at 1:1, crops cut smaller where
    `side` would not fit), never resampled, so a pixel of ringing shows as one; the title
    states the zoom. The PNG's text chunks record "zoom" and
    "crops" (x,y,w,h of each cell's crop, row by row)."""
    # A Figure of its own, not pyplot's: matplotlib.use("Agg") switched a notebook's backend.
    import textwrap

    from matplotlib.figure import Figure

    from runtime.atomic import atomic_path
    names = list(outputs)
    cols = list(outputs[names[0]])
    # Many columns: smaller crops, still pixel for pixel, rather than a figure past the cap.
    side = max(16, min(side, (FIGURE_MAX_WIDTH - _GAP) // len(cols) - _GAP))
    boxes = {n: crop_box(outputs[n]["input"], side) for n in names}
    cell = max(s for _, _, s in boxes.values())
    zoom = next((z for z in (3, 2) if len(cols) * (cell * z + _GAP) + _GAP <= FIGURE_MAX_WIDTH),
                1)
    width = len(cols) * (cell * zoom + _GAP) + _GAP
    shown = f"crops of {cell} px at {zoom}x (each pixel {zoom}x{zoom}, not resampled)" \
        if zoom > 1 else f"crops of {cell} px at 1:1 (not resampled)"
    # Wrapped to the figure's width (a 9 pt character is about 7.5 px at 100 dpi).
    # Names as messages show them: matplotlib cannot draw a name's byte that is not UTF-8.
    title = shown_path(title)
    head = textwrap.fill(f"{title}; {shown}" if title else shown, width=max(20, width // 8),
                         break_on_hyphens=False)
    top = _GAP + _LINE * (head.count("\n") + 1) + _GAP
    row_h = 2 * _LINE + cell * zoom + _GAP
    height = top + len(names) * row_h
    fig = Figure(figsize=(width / 100, height / 100), dpi=100, facecolor="white")
    fig.text(width / 2 / width, 1 - _GAP / height, head, ha="center", va="top", fontsize=9)
    placed = []
    for i, n in enumerate(names):
        y, x, s = boxes[n]
        y_top = top + i * row_h
        fig.text(_GAP / width, 1 - y_top / height, shown_path(n), ha="left", va="top",
                 fontsize=9, fontweight="bold")
        for j, c in enumerate(cols):
            x_left = _GAP + j * (cell * zoom + _GAP)
            fig.text(x_left / width, 1 - (y_top + _LINE) / height, shown_path(c), ha="left",
                     va="top", fontsize=9)
            crop = np.clip(outputs[n][c][y:y + s, x:x + s], 0, 1)
            crop = np.repeat(np.repeat(crop, zoom, 0), zoom, 1)
            y_img = y_top + 2 * _LINE
            # figimage's origin is the bottom left corner, in pixels.
            fig.figimage(crop, xo=x_left, yo=height - y_img - s * zoom, origin="upper")
            placed.append(f"{x_left},{y_img},{s * zoom},{s * zoom}")
    meta = {"Title": head, "zoom": str(zoom),
            "crops": ";".join(placed)}
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, metadata=meta)
    return Path(path)


def crop_box(img: np.ndarray, side: int) -> tuple[int, int, int]:
    """Top-left corner and side of the square crop with the most edge energy."""
    import cv2

    h, w = img.shape[:2]
    side = min(side, h, w)
    g = cv2.cvtColor(np.clip(img, 0, 1).astype(np.float32), cv2.COLOR_RGB2GRAY)
    mag = np.abs(cv2.Sobel(g, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(g, cv2.CV_32F, 0, 1))
    energy = cv2.boxFilter(mag, -1, (side, side), normalize=True, borderType=cv2.BORDER_CONSTANT)
    half = side // 2
    inner = energy[half:h - side + half + 1, half:w - side + half + 1]
    if inner.size == 0:
        return 0, 0, side
    y, x = np.unravel_index(int(np.argmax(inner)), inner.shape)
    return int(y), int(x), side


# What the overshoot column counts, where a table shows it.
OVER_TEXT = ("overshoot %: pixels pushed more than 8 levels outside the input's 15x15 "
             "neighbourhood, halos and ringing; restoring wide blur, thin lines or "
             "highlights raises it too")


def _over(d: dict, width: int) -> str:
    v = d.get("overshoot")
    return f"{v:{width}.2f}" if v is not None else f"{'-':>{width}s}"


def _sharp(v: Optional[float], width: int) -> str:
    return f"{v:{width}.3f}" if v is not None else f"{'-':>{width}s}"


def format_table(res: dict) -> str:
    keys = [k for k in res if isinstance(res[k], dict) and "sharpness" in res[k]]
    width = max([34, *(len(k) + 1 for k in keys)])
    lines = []
    if res["has_gt"]:
        lines.append(f"{'model':{width}s} {'PSNR':>7s} {'SSIM':>7s} {'dPSNR':>7s} {'dSSIM':>7s} "
                     f"{'sharpness':>9s} {'overshoot %':>11s}  worst dPSNR (image)")
        for k in keys:
            d = res[k]
            worst = (f"  {d['worst_psnr_gain']:+7.2f} ({d['worst_image']})"
                     if "worst_image" in d else "")
            lines.append(f"{k:{width}s} {d['psnr']:7.2f} {d['ssim']:7.4f} "
                         f"{d.get('psnr_gain', 0):+7.2f} {d.get('ssim_gain', 0):+7.4f} "
                         f"{_sharp(d['sharpness'], 9)} {_over(d, 11)}{worst}")
        if "ground_truth_overshoot" in res:
            lines.append(f"({OVER_TEXT}; the ground truth's own: "
                         f"{res['ground_truth_overshoot']:.2f}%)")
    else:
        ref = res.get("reference")
        to_ref = f"  PSNR to {ref}'s output, SSIM" if ref else ""
        lines.append(f"{'model':{width}s} {'sharpness (x input)':>20s} {'overshoot %':>11s}"
                     f"{to_ref}")
        for k in keys:
            d = res[k]
            lines.append(f"{k:{width}s} {_sharp(d['sharpness'], 20)} {_over(d, 11)}" + (
                f"  {d['psnr_to_reference']:8.2f} dB" if "psnr_to_reference" in d else "") + (
                f"  {d['ssim_to_reference']:.4f}" if "ssim_to_reference" in d else ""))
        against = f"; compare with {ref}'s" if ref else ""
        lines.append(f"({OVER_TEXT}{against})")
        if ref and res.get("ssim_window") == "3d":   # said of ground truth's SSIM below too
            lines.append(f"(SSIM to {ref}'s output: 3-D (--ssim 3d), the window across the "
                         "channels too)")
        # Without ground truth neither column is a score the reader knows the sense of; the
        # sharpness ratio also rewards ringing, which the distance to the reference does not.
        caveat = "though halos and noise raise it too"
        lines.append(f"(higher is better in each: PSNR and SSIM to {ref}'s output, closer to "
                     "it; "
                     f"sharpness, {caveat})" if ref
                     else f"(sharpness: higher is sharper, {caveat})")
    n = res["images"]
    where = "".join([f", split {res['split']}" if res.get("split") else "",
                     f", inputs from {res['gopro_blur']}/" if res.get("gopro_blur") else "",
                     f", centre crops of at most {res['crop']} px" if res.get("crop") else ""])
    partial = " (interrupted: a part of the set)" if res.get("interrupted") else ""
    on_clip = res.get("clip_frames") or {}
    if on_clip:
        stills = n - len(on_clip)
        what = (f"{count(len(on_clip), 'frame')} of "
                f"{count(len({c for c, _ in on_clip.values()}), 'clip')}"
                + (f" and {count(stills, 'image')}" if stills else ""))
        if res.get("frames") is not None:
            where += f", --frames {','.join(map(str, res['frames']))}"
        elif res.get("stride", 1) > 1:
            where += f", one frame in {res['stride']}"
    else:
        what = f"{n} image{'s' if n != 1 else ''}"
    lines.append(f"({what} of {res['data']}{where}){partial}")
    if res["has_gt"]:
        # How to check a number by hand (scikit-image, the same images), and what the d and
        # sharpness columns are: none of it was said where the numbers are read.
        area = f"centre crops of at most {res['crop']} px" if res.get("crop") else "whole images"
        window = ("an 11x11x11 Gaussian window sigma 1.5 across the channels too, as NAFNet's "
                  "and MATLAB's published GoPro SSIMs (--ssim 3d)"
                  if res.get("ssim_window") == "3d" else
                  "scikit-image's Gaussian window sigma 1.5, population covariances "
                  "(Wang et al., BasicSR), channels averaged")
        from .alignment import WARPS
        if (warp := WARPS.get(res.get("align", "none"))):
            area = ("each image (the input too) aligned to the ground truth by ECC "
                    f"({warp}) and scored over the overlap, as RealBlur's script")
        lines.append(f"(PSNR/SSIM: RGB, outputs rounded to 8 bits, data range 255, {area}, no "
                     "border crop, mean over images, against the ground truth; SSIM: "
                     f"{window}; d: gain over the input; sharpness: mean gradient, "
                     "x the input's; PSNR in dB)")
        lines.append("(higher is better: PSNR, SSIM and their gains; overshoot, lower is "
                     "better, down to the ground truth's own)")
        if failed := res.get("alignment_failed"):
            lines.append(f"(ECC did not converge on {count(len(failed), 'output')}, scored "
                         "unaligned: metrics.json's alignment_failed names each)")
        if (res.get("align", "none") == "none"
                and "realblur" in Path(str(res["data"])).name.lower()):   # its list, RealBlur_J/
            lines.append("(RealBlur: outputs not aligned to the ground truth; its published "
                         "scores align each first (evaluate_RealBlur.py: ECC homography, the "
                         "overlap scored) and read higher: --align ecc-homography)")
    if res.get("flat_images"):
        lines.append(f"({count(res['flat_images'], 'flat image')} without detail left out of the "
                     "sharpness ratio)")
    verdicts = pair_verdicts(res) if res["has_gt"] else nogt_verdicts(res)
    if verdicts:
        lines += ["verdict per model:", *(f"{k}: {v}" for k, v in verdicts)]
    # Image and folder names are a stranger's: a newline in one began a line of its own, which
    # a log reader took for one of ours.
    return "\n".join(map(shown_path, lines))
