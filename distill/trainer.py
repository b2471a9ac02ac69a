"""One training engine for the teacher (on ground truth) and the student (on pseudo-labels).

AdamW, linear warmup + cosine decay, gradient clipping, EMA of weights, AMP and channels-last on
CUDA, DistributedDataParallel under torchrun. Checkpoints carry architecture, config, metrics and
the full resume state (model, EMA, optimizer, scheduler, step, RNG), written atomically, so an
interrupted run continues exactly where it stopped.

Batches are a pure function of (seed, step, rank) (train_loader.StepSampler), so resume and
multi-rank training are reproducible.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import json
import math
import os
import re
import signal
import sys
import time
import uuid
import warnings
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader

from runtime.atomic import atomic_write_bytes
from runtime.cli_errors import (STOP_SIGNALS, SharpenError, drop_gone_outputs,
                                said_after_hang_up, signals_to_take)
from runtime.console import count, first_line
from runtime.warn import SharpenWarning

from .checkpoint import (CheckpointError, atomic_save, check_fits, extract_state_dict,
                         load_weights, make_checkpoint, read_checkpoint, slim)
from .config import (LossConfig, TrainConfig, as_overrides, check_config, config_changes,
                     loss_weights, save_config)
from .data_checks import data_changes, data_problems, data_signature
from .dist import DistInfo, launch_command
from .interrupts import SecondSignal, TrainingInterrupted, resume_hint
from .lineage import resumed_lineage, run_lineage
from .metrics import SSIM_ID
from .losses import combined_loss
from .model_build import arch_text, build_model
from .provenance import describe, environment_changes, run_environment, same_code
from .run_lock import run_lock
from .tb_log import TensorBoardLog, require_tensorboard
from .train_data import build_train_dataset, naming
from .train_loader import (StepSampler, cores_share, leave_stop_signals_to_main,
                           loader_workers, shut_down_workers)
from .train_log import append_jsonl, append_text, plot_curves, steps_trained_again
from .train_state import (ema_decay_at, ema_update, lr_lambda, rng_state, seed_everything,
                          set_rng_state)
from .val_pictures import compose, pictures_after, save_picture
from .validation import ValItem, evaluate, load_val_items, val_summary
from .validation import predict as predict

# Non-finite batches skipped in a row before training stops as diverged.
MAX_BAD_STEPS = 20


_last_collective: tuple = ()


def _all_reduce_kept(t: torch.Tensor, op=dist.ReduceOp.SUM) -> None:
    """dist.all_reduce, the finished collective kept until the next one. Dropped at once, its
    last reference could be a gloo worker thread's, which frees `t` and needs the GIL for that;
    when this thread, holding the GIL, then tore the group down (a rank raising right after
    the collective: told that process 0 could not start), the group's destructor waited for
    that worker and the worker for the GIL: the rank hung, in 1 of 3 test runs on a busy
    machine. Kept by the module, not the Trainer: freed with the Trainer, it could go before
    the DDP wrapper that holds the group."""
    global _last_collective
    work = dist.all_reduce(t, op=op, async_op=True)
    work.wait()
    _last_collective = (work, t)


def _samples_taken(ck: dict, batch: int, world: int) -> int:
    """The training samples a checkpoint's run took by its step: as it recorded them, else
    (an older version's) by its step at the batch of a step it recorded, or this run's."""
    if isinstance(ck.get("samples"), int):
        return ck["samples"]
    before = ck.get("processes")
    b = ((ck.get("config") or {}).get("data") or {}).get("batch_size")
    return int(ck["step"]) * (before if isinstance(before, int) else world) * \
        (b if isinstance(b, int) else batch)


def _trained_past_start(best: Path) -> bool:
    """Whether best.pt holds trained weights: val_start=true writes it at step 0 with the
    weights the run starts from, so a run killed before its first last.pt left nothing to keep
    and the same command starts over. Unreadable counts as trained: not replaced unasked."""
    try:
        return read_checkpoint(best, mmap=True).get("step") != 0
    except (CheckpointError, OSError):
        return True

class Trainer:
    def __init__(self, cfg: TrainConfig, quiet: bool = False, command: str | None = None,
                 reference: Optional[Path] = None):
        """`command`: the command line that started the run, for train.log; None when Python
        code did (a notebook's argv is its kernel's), and train.log gives the equivalent
        command built from `cfg`. `reference`: the run folder whose config.yaml this run's
        settings were read from (`--config RUN/config.yaml out=NEW`), whose recorded software
        and validation images a new run is compared with."""
        check_config(cfg)
        self.cfg, self.quiet, self.command = cfg, quiet, command
        self._reference = reference
        self._resumed_env: Optional[dict] = None   # the software the resumed checkpoint records
        self._replace: list[Path] = []    # an earlier run's files, removed once this one starts
        # The resumed checkpoint's settings where this run changes them, and in words: kept in
        # config-stepN.yaml once the data checks pass (a refused run leaves no such file)
        self._earlier_config: Optional[tuple[dict, list[str]]] = None
        self._set_aside: list[Path] = []  # a later history's, moved aside once this one starts
        self._data_sig: dict = {}         # what this run trains on (data_signature)
        self._resumed_data: dict = {}     # ... and what the checkpoint resumed from did
        self._data_unrecorded = False     # ... or it is of a version that did not record it
        self.dist = DistInfo.from_env()
        if self.dist.enabled and not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo"
            dist.init_process_group(backend)
        if cfg.device == "auto":
            self.device = torch.device(f"cuda:{self.dist.local_rank}"
                                       if torch.cuda.is_available() else "cpu")
        else:
            # ValueError naming device= (the command line checks it so; the API did not:
            # device=gpu met torch's list of 19 device types, cuda on a CPU build an
            # AssertionError, and meta left a run folder behind)
            from .teacher import pick_device
            self.device = pick_device(cfg.device, "device=")
        self.cuda = self.device.type == "cuda"
        # After the command line's --threads: the thread count changes float sums too.
        self._env = run_environment(self.device)
        self.out = Path(cfg.out)
        # Which checkpoints in out= are its runs' own (see foreign): None until the first run
        # in the folder starts.
        self._run_id = read_run_id(self.out)
        seed_everything(cfg.seed)
        model, self.arch, self.arch_args = build_model(cfg)
        # Not when resuming, which replaces the weights: a resume failed, told to train the
        # init run first, once the file init= named had been moved or deleted.
        init = None
        if cfg.init and self._resume_path() is None:
            from .teacher import resolve_weights
            with naming("init", cfg.init, "the run this one starts from: train it first (the "
                         "config's comments say how), or set init= to another checkpoint"):
                # shipped names (init=fast) work as elsewhere; a typo is named by its key
                init = resolve_weights(cfg.init)
                ck = read_checkpoint(init)
            try:
                load_weights(model, extract_state_dict(ck, init), init)
            except CheckpointError as e:
                if ck.get("arch"):   # say what it was built as: the override that fits
                    raise CheckpointError(f"{e}\n  init={init} holds {ck['arch']} with "
                                          f"model.args={ck.get('arch_args')}; this run builds "
                                          f"{arch_text(cfg)}") from None
                raise
        # A resume replaces it with what its checkpoint recorded (_resume): the init file.
        self._lineage = run_lineage(cfg, init)
        self.model = model.to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = copy.deepcopy(self.model).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        o = cfg.optim
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=o.lr, betas=tuple(o.betas),
                                     weight_decay=o.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(cfg))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.cuda and cfg.amp)
        self.step = 0
        # (step, samples taken by then): where the crop stream stood when this run began or
        # resumed, so a resume under another batch of a step goes on from there
        self._sample_origin = (0, 0)
        self._resume_warnings: list[str] = []   # fit says them, in train.log too
        self.best: Optional[float] = None
        self.best_step: Optional[int] = None   # the step best.pt holds (None: not known)
        self._tb: Optional[TensorBoardLog] = None   # tensorboard=true, process 0, while fitting
        self.metrics: dict = {}
        self._metrics_ssim: Optional[str] = None   # the SSIM formula of self.metrics
        self.start_metrics: dict = {}     # validation before training (cfg.val_start)
        self.weights = loss_weights(cfg.loss)
        self._stop = False
        self._validating = False
        self._compiling = False           # compile=true: the first step, while it compiles
        self._bad_steps = 0
        self._time_offset = 0.0           # seconds logged by the runs this one resumes
        # metrics.jsonl up to the step resumed at (another folder's, for a branch), written
        # once the run starts
        self._carried: Optional[bytes] = None
        self._history_note = ""           # train.log's word on where the earlier steps are
        self._repeated = ""               # ... and on steps it logged that are trained again
        self._qat = None                  # qat=true: the simulated-INT8 forward, its ranges
        self._qat_ranges: Optional[dict] = None   # ... as the checkpoint resumed recorded them
        self._resume()
        self.net = self.model
        if cfg.qat:
            from .qat import FakeQuantForward

            self.net = self._qat = FakeQuantForward(self.model)
            if self._qat_ranges is not None:
                # Re-observed from the first batch instead, the resumed weights drifted from
                # an uninterrupted run's.
                with naming("resume", self._resume_path()):
                    self._qat.load_ranges(self._qat_ranges)
        if self.dist.enabled:
            self.net = nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device.index] if self.cuda else None)
        if cfg.compile:
            self.net = torch.compile(self.net)   # compiled at its first step: fit says so

    # -- checkpoints
    def _batch_text(self) -> str:
        b, crop, world = self.cfg.data.batch_size, self.cfg.data.crop, self.dist.world
        if world == 1:
            return f"batch {b} per process of {crop} px crops"
        return f"batch {b} per process, {world * b} crops of {crop} px a step"

    @property
    def samples_taken(self) -> int:
        """The training samples (crops) of every process taken by this step."""
        step, taken = self._sample_origin
        return taken + (self.step - step) * self.dist.world * self.cfg.data.batch_size

    def _checkpoint(self, full: bool) -> dict:
        extra = {}
        if full:
            extra = {"optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                     "rng": rng_state(), "best": self.best, "best_step": self.best_step,
                     "data": self._data_sig}
            if self._qat is not None:
                extra["qat_ranges"] = self._qat.ranges()
        # In every checkpoint, slim ones too: a resume from a stepN.pt or best.pt under another
        # process count changes the batch of a step as one from last.pt does.
        extra["processes"] = self.dist.world
        extra["samples"] = self.samples_taken
        # Slim ones too: best.pt is what a colleague is handed, and what they reproduce.
        extra["environment"] = self._env
        extra["lineage"] = self._lineage
        if self._metrics_ssim:   # which SSIM `metrics` holds: `sharpen models` says older ones
            extra["metrics_ssim"] = self._metrics_ssim
        return make_checkpoint(self.model, kind="teacher" if self.arch == "restormer"
                               else "student", arch=self.arch, arch_args=self.arch_args,
                               ema=self.ema, step=self.step, config=self.cfg.to_dict(),
                               metrics=self.metrics, **extra,
                               run={"id": self._run_id, "dir": os.path.realpath(self.out)})

    def save(self, name: str = "last.pt", full: bool = True) -> Path:
        return atomic_save(self._checkpoint(full), self.out / name)

    def snapshot(self) -> Path:
        """stepN.pt, the weights at this step kept for good (snapshot_every): slim, as
        slim_checkpoint writes them, so `--weights`, `init=` and `resume=` take it. Written
        before last.pt of the same step: a kill between the two leaves last.pt behind it, and
        the resumed run trains the step again and writes it, where the other order lost it."""
        path = self.out / f"step{self.step}.pt"
        if path.exists() and (whose := foreign(path, self.out, self._run_id)):
            # One copied in by hand at a step this run reaches: overwritten, it was lost.
            n, kept = 1, self.out / f"step{self.step}-copied.pt"
            while kept.exists():
                n += 1
                kept = self.out / f"step{self.step}-copied-{n}.pt"
            os.replace(path, kept)
            msg = (f"{path} was not this run's ({whose}): moved to {kept} before writing "
                   f"this run's step {self.step} snapshot")
            warnings.warn(msg, SharpenWarning)
            self._text(f"warning: {msg}")
        atomic_save(slim(self._checkpoint(False)), path)
        keep = self.cfg.keep_snapshots
        if keep:
            # Up to this step only: a later one is no newer than this one (each new one was
            # deleted), one copied in by hand or one a kill left past last.pt. The K newest
            # of the run's own: one copied in is never deleted, nor takes one of the K places.
            own = [p for p in snapshots(self.out, upto=self.step)
                   if foreign(p, self.out, self._run_id) is None]
            for old in own[:-keep]:
                old.unlink(missing_ok=True)
        return path

    def _resume_path(self) -> Optional[Path]:
        """The checkpoint this run goes on from; None: it starts at step 0. Looked up once:
        the run's own saves (a last.pt at the step gone back to) must not change the answer."""
        if "_resume_at" not in self.__dict__:
            self._resume_at = self._find_resume_path()
        return self._resume_at

    def _find_resume_path(self) -> Optional[Path]:
        r = self.cfg.resume
        if r == "auto":
            if (self.out / "last.pt").exists():
                return self.out / "last.pt"
            # A run stopped while it moved a history aside (last.pt goes first): go on from
            # the checkpoint it went back to, and finish the move, as its own command would.
            pending = _pending_move(self.out)
            if pending and pending[1]["resumed"].is_file():
                return pending[1]["resumed"]
            return None
        return Path(r) if r and r != "never" else None

    def _check_init(self, ck: dict, path: Path) -> None:
        """ValueError where init= names weights the resumed run did not start from: its
        weights would go on, while the config, lineage and distill's compare line say init=."""
        given = str(self.cfg.init or "")
        config = ck.get("config")
        before = str(config.get("init") or "") if isinstance(config, dict) else given
        if not given or given == before:   # the same command, or init= left out
            return
        from .teacher import resolve_weights
        recorded = ((ck.get("lineage") or {}).get("init") or {}).get("path")
        try:   # the same file by another name (fast, models/student-fast.pt)
            mine = os.path.realpath(resolve_weights(given))
            if mine == (recorded or (before and os.path.realpath(resolve_weights(before)))):
                return
        except (OSError, CheckpointError):
            pass
        started = f"init={before}" if before else "scratch (no init=)"
        raise ValueError(f"cannot resume {path} with init={given}: its run started from "
                         f"{started}, whose weights would go on training, not {given}'s; "
                         f"leave init= out to go on with it, or start from {given} in another "
                         f"folder (out=...) or over it with resume=never")

    def _resume(self) -> None:
        r = self.cfg.resume
        path = self._resume_path()
        if path is None:
            old = [p for p in (self.out / n for n in ("metrics.jsonl", "train.log", "best.pt",
                                                      "last.pt"))
                   if p.exists()]
            # That run's stepN.pt too: kept, the new run's would replace them one by one, two
            # runs' weights under one naming. So its validation pictures and TensorBoard
            # events, which TensorBoard drew as one run with the new one's.
            kept = snapshots(self.out)
            pictures = pictures_after(self.out, None)
            events = sorted((self.out / "tb").glob("events.out.tfevents.*"))
            best = self.out / "best.pt"
            trained = r == "auto" and best.exists() and _trained_past_start(best)
            if r == "auto" and (kept or trained):
                # Trained weights without the checkpoint to go on from (last.pt deleted to
                # save space, or a kill before the first one but after a validation): the same
                # command would replace them, said only in a note.
                latest = max(([best] if trained else []) + kept[-1:],
                             key=lambda p: p.stat().st_mtime)
                have = ([best.name] if trained else []) + (
                    [count(len(kept), "snapshot") + " stepN.pt"] if kept else [])
                raise ValueError(
                    f"{self.out} holds {' and '.join(have)} but no last.pt to resume: "
                    f"resume={latest} goes on from its weights (a fresh optimizer), "
                    "resume=never starts over and replaces them, or use another out=")
            # Only what a run with this out= wrote: a stepN.pt copied in by hand was removed
            # with the run's own, and a kept one would be replaced at its step. On every
            # process, as the refusal above: one left behind would wait for process 0.
            for p in [p for p in old if p.suffix == ".pt"] + kept:
                if whose := foreign(p, self.out, self._run_id):
                    raise ValueError(
                        f"{'resume=never' if r == 'never' else 'starting over'} would "
                        f"remove {p}, {whose}: move it out of {self.out}, or use another out=")
            if (old or kept) and self.dist.main:
                # Removed in fit(), once the data checks pass: a run that cannot start must not
                # cost the one before it its results.
                why = ("resume=never" if r == "never" else
                       "no last.pt to resume (the run there stopped before its first checkpoint)")
                names = [p.name for p in old] + (
                    [count(len(kept), "snapshot") + " stepN.pt"] if kept else []) + (
                    [count(len(pictures), "validation picture")] if pictures else []) + (
                    ["TensorBoard events"] if events else [])
                if not self.quiet:
                    print(f"note: {why}: starting over in {self.out}; the run there before is "
                          f"replaced ({', '.join(names)})", file=sys.stderr)
                self._replace = old + kept + pictures + events
            return
        with naming("resume", r):
            ck = read_checkpoint(path)
        if ck.get("arch") != self.arch or ck.get("arch_args") != self.arch_args:
            raise ValueError(f"cannot resume from {path}: it holds {ck.get('arch')} "
                             f"{ck.get('arch_args')}, this run builds {self.arch} "
                             f"{self.arch_args}; use another out folder or resume=never")
        self._check_init(ck, path)
        try:   # the same name and arguments, another definition: a student of one's own edited
            check_fits(self.model, ck["model"], path)
        except CheckpointError as e:   # its lines but the first and the hint at another model
            what = "\n".join(str(e).splitlines()[1:-1])
            raise CheckpointError(
                f"cannot resume from {path}: its weights do not fit {self.arch!r} as defined "
                f"now ({type(self.model).__name__}):\n{what}\n  (its definition changed since "
                "the run was saved: resume with the one it had, or start over in another out "
                "folder or with resume=never)") from None
        self.model.load_state_dict(ck["model"])
        # A slim checkpoint (stepN.pt, slim_checkpoint's copy, grow's) has no EMA of its own:
        # its model is the EMA weights, which the EMA goes on from.
        self.ema.load_state_dict(ck["model"] if ck.get("ema") is None else ck["ema"])
        self.step = int(ck["step"])
        self._sample_origin = (self.step, _samples_taken(ck, self.cfg.data.batch_size,
                                                         self.dist.world))
        if "optimizer" in ck:
            self.opt.load_state_dict(ck["optimizer"])
            self.sched.load_state_dict(ck["scheduler"])
            set_rng_state(ck["rng"])
            ranges = ck.get("qat_ranges")   # absent before they were kept, or without qat
            self._qat_ranges = ranges if self.cfg.qat and isinstance(ranges, dict) else None
            if (self.cfg.qat and self._qat_ranges is None and self.dist.main
                    and (ck.get("config") or {}).get("qat") is not False):
                # Resumed silently, the run left an uninterrupted one's weights unsaid. A run
                # that turns qat on is told so by the changed settings.
                self._resume_warnings.append(
                    f"{path} records no QAT ranges (saved by an older version): qat=true "
                    f"observes them again from the batches after step {self.step}, so this "
                    "run's weights will differ slightly from an uninterrupted run's")
            best_step = ck.get("best_step")   # absent from checkpoints before it was kept
            found = (ck.get("best"), best_step if isinstance(best_step, int) else None)
        else:
            warnings.warn(f"{path} holds weights only (no optimizer state, as best.pt): the "
                          f"optimizer starts afresh at step {self.step}, the learning-rate "
                          "schedule at that step", SharpenWarning)
            # A score to beat: else the first validation, however worse, would overwrite
            # best.pt (the file resumed from, when out= is its folder). A snapshot's metrics
            # are the last validation's, perhaps of an earlier step: not its model's score.
            found = _score_at_own_step(ck) or (None, None)
        # best.pt's own score where out= holds one: an older checkpoint's (a stepN.pt's, an
        # earlier last.pt's) was below it, and a worse model then replaced it. _settle_best
        # drops it when there is none, and scores a branch's on its validation images.
        best_pt = self.out / "best.pt"
        if best_pt.exists():
            try:
                found = _score_at_own_step(read_checkpoint(best_pt, mmap=True)) or found
            except CheckpointError:   # replaced by hand: _settle_best's to say
                pass
        self.best, self.best_step = found
        if self.dist.main:
            self._set_aside = self._later_history(path)
        # The checkpoint's rate, before the config's optim.lr replaces it: the line below said
        # the new setting's rate as though restored.
        saved_lr = self.opt.param_groups[0]["lr"]
        self._apply_optim_config()
        self._resumed_data = ck.get("data") or {}
        self._resumed_env = ck.get("environment")
        recorded = (ck.get("lineage") or {}).get("init")
        begun = (ck.get("config") or {}).get("init")
        if isinstance(recorded, dict):
            self._lineage = {**self._lineage, "init": recorded}
        elif begun and not isinstance(ck.get("lineage"), dict):   # saved before lineage was
            self._lineage = {**self._lineage, "init": {"given": str(begun)}}
        was = ck.get("lineage")
        labelled = ((ck.get("config") or {}).get("data") or {}).get("labels")
        if not isinstance(was, dict) and labelled and isinstance(labelled, str):
            was = {"labels": {"path": os.path.realpath(labelled)}}   # saved before lineage was
        self._lineage = resumed_lineage(self._lineage, was, self.step)
        # A last.pt (resume state) without it: saved by a version from before it was recorded.
        # Weights-only checkpoints (best.pt, stepN.pt) never record it.
        self._data_unrecorded = "optimizer" in ck and not isinstance(ck.get("data"), dict)
        self.metrics = ck.get("metrics", {})
        self._metrics_ssim = ck.get("metrics_ssim")
        self._truncate_log()
        if self.dist.main and not self.quiet:   # train.log says it too ("resumed at step")
            # Many trainers restart the schedule or the data order on a resume: say this one
            # did not (a weights-only checkpoint's fresh optimizer is warned of above).
            ranges = " and QAT ranges" if self._qat_ranges is not None else ""
            lr = self.opt.param_groups[0]["lr"]
            if "optimizer" not in ck:
                exact = ""
            elif math.isclose(lr, saved_lr, rel_tol=1e-6):
                exact = (f": weights, EMA, optimizer, learning rate ({lr:.2e})"
                         f"{',' if ranges else ' and'} random state (crops and their "
                         f"order){ranges} restored")
            else:
                exact = (f": weights, EMA, optimizer{',' if ranges else ' and'} random state "
                         f"(crops and their order){ranges} restored; learning rate {lr:.2e} "
                         f"from optim.lr {self.cfg.optim.lr:g} as set now at step "
                         f"{self.step} of its schedule (the checkpoint's was {saved_lr:.2e})")
            print(f"resumed from {path} at step {self.step}{exact}", file=sys.stderr)
        before = ck.get("processes")
        b, world = self.cfg.data.batch_size, self.dist.world
        # Said by fit, which writes train.log too: where a user looks back at a run moved
        # from 4 GPUs to 1.
        if isinstance(before, int) and before != world and self.dist.main:
            self._resume_warnings.append(
                f"{path} was trained by {count(before, 'process', 'processes')}, this run has "
                f"{world}: data.batch_size ({b}) is per process, so the batch of a step "
                f"changes from {before * b} to {world * b}; the learning rate is not scaled "
                f"with it (optim.lr {self.cfg.optim.lr:g} as set)")
        elif not isinstance(before, int) and self.step and self.dist.main:
            # Saved by a version from before the count was kept: a resume under another
            # torchrun --nproc_per_node changed the batch of a step unsaid. Not at step 0 (no
            # step taken at any batch): `sharpen grow` writes its checkpoints there, and this
            # version's were called an older version's.
            self._resume_warnings.append(
                f"{path} does not record how many processes trained it (saved by an "
                f"older version): this run has {count(world, 'process', 'processes')}"
                f" at data.batch_size {b} per process, {world * b} crops a step; if it "
                "was trained by another number of processes (torchrun "
                "--nproc_per_node), the batch of a step changes with it")
        changes = config_changes(ck.get("config") or {}, self.cfg.to_dict())
        if changes and self.dist.main:
            self._earlier_config = ck["config"], changes

    def _later_history(self, resumed: Path) -> list[Path]:
        """The checkpoints in out= (its stepN.pt and last.pt) of another history than the one
        resumed: in the folder of the checkpoint, those past its step (resume=<run>/step500.pt
        beside step1000.pt, the history gone back from); branched in from elsewhere, all of
        them (the run there before, an earlier try of the branch). Left, two histories shared
        one folder and naming, and a kill before the first save sent resume=auto back to the
        other's last.pt. None when going on from out='s own last.pt: a snapshot past it (a kill
        between the two) is its history's, written again at its step. best.pt stays: the best
        validated here, the score to beat (see _resume)."""
        last = self.out / "last.pt"
        if resumed.resolve() == last.resolve():
            return []
        here = resumed.parent.resolve() == self.out.resolve()
        later = [p for p in snapshots(self.out) if not here or int(p.stem[4:]) > self.step]
        if last.is_file():
            try:
                step = read_checkpoint(last, mmap=True).get("step")
            except CheckpointError:
                step = None   # unreadable: the next save would replace it
            if not here or not isinstance(step, int) or step > self.step:
                later.append(last)
        return later

    def _move_later_history_aside(self) -> Optional[str]:
        """Moves _later_history's files into abandoned-at-stepN/ (-2, -3, ... when resumed at
        that step again), never deleting them; what was moved, in words. The folder records
        the move (MOVING) until it is done: one stopped part-way is finished into the same
        folder by the next run of the same resume, or of resume=auto, which goes on from it."""
        ckpt = self._resume_path()
        pending = _pending_move(self.out)
        # An earlier try of this very resume, stopped among its moves: this run finishes it
        # into the same folder (with what it moved then, said with this run's).
        own = pending is not None and ckpt is not None and pending[1].get("step") == self.step \
            and pending[1]["resumed"].resolve() == ckpt.resolve()
        if pending and not own:   # another command's, given up: its folder stays as it is
            (pending[0] / MOVING).unlink(missing_ok=True)
        if not self._set_aside and not own:
            return None
        assert ckpt is not None   # only a resume sets files aside
        if own:
            dest = pending[0]
            self._set_aside = [*(self.out / n for n in pending[1]["files"]
                                 if (dest / n).exists() and not (self.out / n).exists()),
                               *self._set_aside]
        else:
            dest = self.out / f"abandoned-at-step{self.step}"
            n = 1
            while dest.exists():
                n += 1
                dest = self.out / f"abandoned-at-step{self.step}-{n}"
            dest.mkdir()
            # What the move is to do, before any file goes: a Ctrl-C among the moves left a
            # half-moved folder, no last.pt, and resume=auto refused, advising the abandoned
            # history's latest snapshot.
            # The checkpoint by its name where it is in out= (the step gone back to): the
            # folder moved or copied elsewhere finishes the move from its own copy of it.
            here = ckpt.parent.resolve() == self.out.resolve()
            atomic_write_bytes(dest / MOVING, json.dumps({
                "resumed": ckpt.name if here else os.path.abspath(ckpt), "step": self.step,
                "files": [p.name for p in self._set_aside]}).encode())
        # last.pt first: a kill among the moves then leaves no last.pt of the history gone
        # back from for resume=auto to go on from unsaid (fit saves the new one next).
        for p in sorted(self._set_aside, key=lambda p: p.name != "last.pt"):
            if p.exists():
                os.replace(p, dest / p.name)
        # Its records too, as they were: this folder's is cut to the step (or replaced by the
        # branch's) next.
        records = self.out / "metrics.jsonl"
        if records.is_file():
            atomic_write_bytes(dest / records.name, records.read_bytes())
        # The validation pictures of that history: left, they showed weights no checkpoint
        # here holds, among this history's.
        here = ckpt.parent.resolve() == self.out.resolve()
        pictures = pictures_after(self.out, self.step if here else None)
        if pictures:
            (dest / "visualization").mkdir(exist_ok=True)
            for p in pictures:
                os.replace(p, dest / "visualization" / p.name)
        (dest / MOVING).unlink()
        what = ("best.pt, which this run cannot score," if self._set_aside == [
                    self.out / "best.pt"] else
                "the later checkpoints of the history gone back from"
                if ckpt.parent.resolve() == self.out.resolve()
                else "the checkpoints of the run there before")
        kept = (f"; best.pt (step {self.best_step}) stays, the score to beat"
                if self.best_step is not None and (self.out / "best.pt").exists() else "")
        copied = ", with a copy of metrics.jsonl as it was" if records.is_file() else ""
        if pictures:
            copied += f" and {count(len(pictures), 'validation picture')}"
        verb = "is" if what.startswith("best.pt") else "are"
        return (f"resumed at step {self.step} from {ckpt}: {what} {verb} moved to {dest}: "
                f"{', '.join(p.name for p in self._set_aside)}{copied}{kept}")

    def _apply_optim_config(self) -> None:
        """The config's optimizer settings over those a resumed checkpoint brought back: its
        state holds the old lr (as the scheduler's base), betas and weight decay, so a changed
        optim.lr was announced as used and silently ignored."""
        o = self.cfg.optim
        for g in self.opt.param_groups:
            g.update(initial_lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
        self.sched.base_lrs = [o.lr] * len(self.opt.param_groups)
        self.sched.last_epoch = self.step
        factor = lr_lambda(self.cfg)(self.step)
        for g in self.opt.param_groups:
            g["lr"] = o.lr * factor
        self.sched._last_lr = [g["lr"] for g in self.opt.param_groups]

    # -- logging
    def _truncate_log(self) -> None:
        """Drop log records after the resumed step: the resumed run writes them again. Resumed
        from a checkpoint in another folder (resume=runs/a/last.pt out=runs/b), the records up
        to the step are those of that folder, carried into this one once the run starts: its
        metrics.jsonl and curves began at the resumed step, the run's history left behind."""
        path = self.out / "metrics.jsonl"
        if not self.dist.main:
            return
        ckpt = self._resume_path()
        theirs = ckpt.parent / "metrics.jsonl"
        elsewhere = ckpt.parent.resolve() != self.out.resolve()
        carry = elsewhere and theirs.exists()
        if elsewhere:
            self._history_note = (
                f"steps up to {self.step} were trained in {ckpt.parent} (resumed from {ckpt}): "
                + (f"their log is {ckpt.parent / 'train.log'}, their metrics.jsonl records "
                   "are copied here" if carry else
                   "no metrics.jsonl beside it, their records are not carried over"))
        if carry:
            path = theirs
        else:
            self._repeated = steps_trained_again(self.out / "train.log", self.step, ckpt)
        if not path.exists():
            return
        keep = []
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:  # a line cut by a kill
                continue
            if rec.get("step", 0) <= self.step:
                if carry and rec.pop("best", None):   # this run's best.pt is its own choice
                    line = json.dumps(rec)
                keep.append(line)
                # The log's clock goes on from where the resumed run stopped.
                self._time_offset = max(self._time_offset, float(rec.get("time", 0.0)))
        # Written once the data checks pass, as config.yaml: cut here, a command that then
        # failed (a data path mistyped) had cost the run its records past the step.
        self._carried = ("\n".join(keep) + "\n" if keep else "").encode()

    def log(self, msg: str) -> None:
        if self.dist.main and not self.quiet:
            from tqdm import tqdm
            with said_after_hang_up():   # a `| tee` gone with a hang-up: not a failed step
                tqdm.write(msg)

    def _command_record(self) -> str:
        if self.command:
            # Where it ran: its relative paths (data.labels=labels/foot) name nothing elsewhere.
            return f"in {os.getcwd()}, command: {self.command}"
        # Python code (a notebook, a script, `sharpen demo`) started this run: its process's
        # argv does not run it again (a kernel's `ipykernel_launcher.py -f ...`); the config does.
        line = launch_command(["sharpen", "distill" if self.cfg.task == "student" else "train",
                               *as_overrides(self.cfg)])
        return f"started from Python ({launch_command(sys.argv)}); equivalent command: {line}"

    def _text(self, msg: str) -> None:
        """A line of out/train.log, the run's text log (what happened when, resumes and stops
        included; BasicSR-style), beside the machine-readable metrics.jsonl."""
        if not self.dist.main:
            return
        append_text(self.out / "train.log", msg)

    def _log_interval(self, losses: list, parts: dict, seconds: float,
                      paused: float = 0.0, waits: Optional[list[float]] = None) -> None:
        """metrics.jsonl's and train.log's step record: the loss and its terms averaged over
        the steps since the last record (skipped non-finite steps left out), the learning
        rate the last of them used. Under DDP over every rank's batches. `seconds` is the
        interval's wall time, `paused` the part of it spent validating and saving
        checkpoints: left out of s/step and the ETA, which jumped after every validation.
        `waits`: each step's wait for its batch, the part of s/step that more data.workers or
        a faster disk would save (this process's; BasicSR's `time (data)`)."""
        cfg = self.cfg
        ok = [v for v in losses if math.isfinite(v)]
        sums = {"loss": (sum(ok), len(ok)), **{k: (sum(v), len(v)) for k, v in parts.items()}}
        if self.dist.enabled:
            # Rank 0's loss alone was logged: its share of the step's crops, a noisier curve
            # than the loss the step trained on. One vector of every possible term, in a
            # fixed order, so that the ranks can never disagree on the collective's shape.
            names = ["loss", *(f.name for f in dataclasses.fields(LossConfig))]
            vec = torch.tensor([x for k in names for x in sums.get(k, (0.0, 0))],
                               dtype=torch.float64, device=self.device)
            _all_reduce_kept(vec)
            total = dict(zip(names, vec.view(-1, 2).tolist()))
            sums = {k: total[k] for k in [*sums, *names] if k in total}
        s, n = sums.pop("loss")
        mean = s / n if n else float("nan")
        terms = {k: s / n for k, (s, n) in sums.items() if n}
        rec = {"step": self.step, "samples": self.samples_taken, "loss": mean, **terms,
               "lr": self._lr_used, "time": self._time_offset + time.time() - self._t0}
        if len(ok) < len(losses):
            rec["skipped_steps"] = len(losses) - len(ok)
        per = max(seconds - paused, 0.0) / max(len(losses), 1)
        rec["s_per_step"] = per
        data = min(sum(waits or ()) / max(len(losses), 1), per)
        rec["data_s_per_step"] = data
        if paused:
            rec["val_s"] = paused
        self._append_jsonl(rec)
        if self._tb is not None:
            self._tb.scalars("train", rec, self.step)
        eta = datetime.timedelta(seconds=round(per * (cfg.optim.steps - self.step)))
        self._text(f"step {self.step}/{cfg.optim.steps}  lr {self._lr_used:.2e}  loss "
                   f"{mean:.4f} ({'  '.join(f'{k} {v:.4f}' for k, v in terms.items())})  "
                   f"{per:.2f} s/step (data {data:.2f})  eta {eta}"
                   + (f"  (validation and saving {paused:.1f} s)" if paused else ""))

    def _compare_with_reference(self, note, warn) -> None:
        """A new run of another run's config.yaml (a colleague's, reproduced): where its
        recorded software, settings or validation images differ from this run's, its numbers
        will too; said before the first step, when the user can still change them."""
        ref = self._reference
        found = [ref / n for n in ("last.pt", "best.pt") if (ref / n).is_file()]
        ck = None
        for p in found + snapshots(ref)[::-1]:
            try:
                ck = read_checkpoint(p, mmap=True)
                break
            except (CheckpointError, OSError):
                continue
        if ck is None:
            return
        env = ck.get("environment")
        if not isinstance(env, dict):
            note(f"{p} records no software versions (saved by an older version): whether this "
                 f"run can reproduce {ref}'s numbers is not known")
            return
        differ = environment_changes(env, self._env)
        theirs = ck.get("data") or {}
        # The training files by name, size and last bytes (a copy of them compares equal); a
        # record of an older version, whose digest took in file times, by their count alone.
        differ += data_changes(theirs, self._data_sig)
        training = "train_digest" in theirs and theirs.get(
            "train_digest_of") == self._data_sig.get("train_digest_of")
        if differ:
            warn(f"this run reads the settings of the run in {ref}, but its software, settings "
                 f"or data differ from those {p.name} records: {'; '.join(differ)}; its "
                 f"numbers can differ from {ref}'s (float sums depend on library versions and "
                 "thread counts)")
        else:
            note(f"{same_code(env)}, library versions, torch threads, device"
                 f"{', training and' if training else ' and'} validation images as the run in "
                 f"{ref} ({p.name})"
                 + (": its" if training else ": with the same training data its")
                 + " metrics.jsonl and weights should come out the same")

    def _append_jsonl(self, rec: dict) -> None:
        if not self.dist.main:
            return
        append_jsonl(self.out / "metrics.jsonl", rec)

    # -- main loop
    def fit(self) -> dict:
        cfg = self.cfg
        if cfg.tensorboard:
            # On every process, though only process 0 writes: checked there alone, the others
            # went on into the start's all-reduce and died with gloo's traceback.
            require_tensorboard()
        if self.step >= cfg.optim.steps:
            if self.dist.main:
                # A sweep's next setting given into the same folder: said, or the finished
                # run's scores read as that setting's.
                unused = (f"; the settings this command changes were not used, nothing was "
                          f"trained with them: {'; '.join(self._earlier_config[1])}"
                          if self._earlier_config else "")
                warnings.warn(f"the run in {self.out} is already at step {self.step} of "
                              f"optim.steps={cfg.optim.steps}: nothing to train{unused} (raise "
                              "optim.steps to go on, or choose another out=)", SharpenWarning)
                if not (self.out / "curves.png").exists():   # killed before it was drawn
                    self.plot()
            return self.metrics
        train_ds = build_train_dataset(cfg, progress=not self.quiet)
        # For train.log too, written once an earlier run's (resume=never) is removed.
        log_lines: list[str] = []

        def note(msg: str) -> None:
            if not self.quiet:
                print(f"note: {msg}", file=sys.stderr, flush=True)
            log_lines.append(f"note: {msg}")

        def warn(msg: str) -> None:   # on the console, --quiet or not, and in train.log
            warnings.warn(msg, SharpenWarning)
            log_lines.append(f"warning: {msg}")
        for msg in self._resume_warnings:
            warn(msg)
        workers = loader_workers(cfg.data.workers)
        # Rank 0 only, for all: every process on a machine gets the same share (torchrun starts
        # them with its CPU affinity), and another machine's differ only with its cores.
        if workers < cfg.data.workers and self.dist.main:
            note(f"data.workers={cfg.data.workers} is more than {cores_share()}: "
                 f"{count(workers, 'loader process', 'loader processes')} instead (more would "
                 "only share those cores with each other and with training)")
        # Only process 0 reads the validation images and checks the data: when that fails,
        # the others must not go on into the first step's all-reduce (gloo's "connection
        # closed by peer" traceback beside the real error).
        started = False
        try:
            val_items = (load_val_items(cfg, not self.quiet, note, warn) if self.dist.main
                         else [])
            if self.dist.main:
                self._data_sig = data_signature(train_ds, val_items)
                d = cfg.data
                src = d.labels if cfg.task == "student" else d.train
                # Said up front: a label cache that an interrupted `labels` run left with 3 of its
                # 10 images trained without a word.
                if self._data_sig["train"]:
                    self.log(f"data: {self._data_sig['train']} training pairs ({src}"
                             f"{f' + {d.gt_train}' if d.gt_train else ''}), {len(val_items)} "
                             "validation images")
                for problem in data_problems(cfg, train_ds, val_items):
                    warnings.warn(problem, SharpenWarning)
                    log_lines.append(f"warning: {problem}")
                changed = data_changes(self._resumed_data, self._data_sig)
                if self.step and (differ := environment_changes(self._resumed_env, self._env)):
                    warn(f"resuming {self._resume_path()} (step {self.step}), saved with other "
                         f"software or settings: {'; '.join(differ)}; the run goes on, but its "
                         "steps from here can differ slightly from an uninterrupted run's "
                         "(float sums depend on them)")
                elif not self.step and self._reference is not None:
                    self._compare_with_reference(note, warn)
                best_said = self._settle_best(val_items)
                if best_said and not changed:
                    note(best_said)
                if changed:   # on the console, not only in train.log: the result differs silently
                    msg = (f"the data changed since step {self.step} ({'; '.join(changed)}); the "
                           "run goes on with the new data"
                           + (f"; {best_said}" if best_said else ""))
                    warnings.warn(msg, SharpenWarning)
                    log_lines.append(f"warning: {msg}")
                # After the data checks: a run that cannot start leaves no folder.
                for p in self._replace:
                    p.unlink(missing_ok=True)
                self.out.mkdir(parents=True, exist_ok=True)
                if self._run_id is None:
                    self._run_id = write_run_id(self.out)
                moved = self._move_later_history_aside()
                # The pictures of steps a killed run took after its checkpoint: this run takes
                # them again, as metrics.jsonl's records and TensorBoard's (purge_step).
                for p in pictures_after(self.out, self.step) if self.step else ():
                    p.unlink(missing_ok=True)
                if self._carried is not None:
                    atomic_write_bytes(self.out / "metrics.jsonl", self._carried)
                if moved:
                    warn(moved)
                if moved and not (self.out / "last.pt").exists():
                    # At once, not at the first ckpt_every: a stop before it (Ctrl-C while
                    # the loader starts) left no last.pt, and resume=auto was refused or
                    # pointed at the abandoned history's best.pt.
                    self.save()
                save_config(cfg, self.out / "config.yaml")
                if cfg.tensorboard:
                    self._tb = TensorBoardLog(self.out, self.step)
                if self._earlier_config:
                    earlier, changes = self._earlier_config
                    kept = self.out / f"config-step{self.step}.yaml"
                    import yaml
                    atomic_write_bytes(kept, yaml.safe_dump(earlier, sort_keys=False,
                                                            allow_unicode=True).encode())
                    warn(f"resuming {self._resume_path()} (step {self.step}) with settings of "
                         f"its own changed: {'; '.join(changes)}. The run goes on with the new "
                         f"ones; the earlier settings are in {kept}")
                for line in log_lines:
                    self._text(line)
            started = True
        finally:
            self._agree_started(started)
        sampler = StepSampler(len(train_ds), cfg.data.batch_size, self.step, cfg.optim.steps,
                              self.dist.rank, self.dist.world, self.samples_taken)
        loader = DataLoader(train_ds, batch_size=cfg.data.batch_size, sampler=sampler,
                            num_workers=workers, pin_memory=self.cuda,
                            persistent_workers=False, drop_last=True,
                            worker_init_fn=leave_stop_signals_to_main)
        handlers = self._install_signal_handlers()
        t0 = self._t0 = time.time()
        start_step = self.step
        from .students import count_params
        n_params = count_params(self.model)
        self._text(f"{'resumed at' if self.step else 'started'} step {self.step} of "
                   f"{cfg.optim.steps}: {self.arch} ({n_params / 1e6:.2f} M parameters) on "
                   f"{self.device}, {count(self.dist.world, 'process', 'processes')}, "
                   f"{self._batch_text()}, "
                   f"{len(getattr(train_ds, 'items', getattr(train_ds, 'sharp', ())))} "
                   f"training images, {len(val_items)} validation images; "
                   f"settings in config.yaml; {self._command_record()}{self._repeated}")
        self._text(f"software: {describe(self._env)}")
        if self._history_note:
            self._text(self._history_note)
        bar = None
        if self.dist.main and not self.quiet:
            from runtime.progress import progress
            bar = progress(total=cfg.optim.steps, initial=self.step, desc=f"train {self.arch}",
                           unit="step", dynamic_ncols=True)
        batches = iter(loader)
        try:
            if cfg.val_start and self.step == 0:
                t_val = time.time()
                self._validate_unless_stopped(val_items)
                self.start_metrics = dict(self.metrics)
                _pause_bar(bar, time.time() - t_val)
            self.model.train()
            losses: list[float] = []
            terms: dict[str, list[float]] = {}
            t_log = t_ready = time.time()
            paused = 0.0   # of the time since t_log, what validation and saving took
            waits: list[float] = []   # each step's wait for its batch (BasicSR's data time)
            for batch in batches:
                waits.append(time.time() - t_ready)
                if cfg.compile and self.step == start_step:
                    stepped = self._compiling_step(batch)
                    if stepped is None:   # a signal stopped it: saved as at any step
                        break
                    loss, parts = stepped
                else:
                    loss, parts = self._train_step(batch)
                self.step += 1
                losses.append(loss)
                if math.isfinite(loss):
                    for k, v in parts.items():
                        terms.setdefault(k, []).append(float(v))
                if bar is not None:
                    # The step's save must not be lost to a reader the hang-up ended since.
                    with said_after_hang_up():
                        bar.update(1)
                    # Shown at the bar's next redraw: refreshing here redrew it every step.
                    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{self._lr_used:.1e}", refresh=False)
                if self.step % cfg.log_every == 0 or self.step >= cfg.optim.steps:
                    self._log_interval(losses, terms, time.time() - t_log, paused, waits)
                    losses, terms, t_log, paused, waits = [], {}, time.time(), 0.0, []
                last = self.step >= cfg.optim.steps
                # A budget spent at the last step finished the run: stopping there said
                # "stopped (budget)" of it in train.log and `sharpen runs`.
                over = not last and bool(
                    (cfg.max_minutes and (time.time() - t0) > cfg.max_minutes * 60)
                    or (cfg.stop_after and self.step - start_step >= cfg.stop_after))
                # This step's decisions use the flag as agreed, not self._stop: under DDP a
                # signal that lands later on one rank only (rank 0 validating while the others
                # went on, or one rank just after this all-reduce returned) sent the ranks into
                # different collectives, and gloo aborted before anything was saved. Such a
                # signal counts at the next agreement.
                over, stopped_by = self._agree_to_stop(over)
                stop = bool(stopped_by)
                t_val = time.time()
                # A signal saves at once: validating whole images first (minutes for a
                # teacher) is what a user pressing Ctrl-C does not want to wait for.
                validate = (self.step % cfg.val_every == 0 or last or over) and not stop
                if validate:
                    self._validate_unless_stopped(val_items)
                    # Ctrl-C during rank 0's validation: every rank stops at this step.
                    stopped_by = self._agree_to_stop(False)[1]
                    stop = bool(stopped_by)
                snap = bool(cfg.snapshot_every) and self.step % cfg.snapshot_every == 0
                # last.pt with each snapshot: a resume never goes back behind one, so never
                # writes it again
                save = self.step % cfg.ckpt_every == 0 or last or over or stop or snap
                if save:
                    self._check_weights()
                    if self.dist.main:
                        if snap:
                            self.snapshot()
                        self.save()
                if validate or save:
                    pause = time.time() - t_val
                    paused += pause
                    _pause_bar(bar, pause)
                if (over or stop) and losses:
                    # The steps since the last record: a resumed run logs only those after it.
                    self._log_interval(losses, terms, time.time() - t_log, paused, waits)
                if over and not stop:
                    # The console line is the caller's (`train`, or the command line's last
                    # line, which adds the files and scores): printed here as well, a stopped
                    # command said it twice.
                    self._text(f"stopped at step {self.step} (time or step budget reached)")
                    break
                if stop:
                    self.log(f"stopping at step {self.step} (signal); {resume_hint(cfg)}")
                    self._text(f"stopped at step {self.step} by "
                               f"{signal.Signals(stopped_by).name}; last.pt saved")
                    break
                t_ready = time.time()
            else:
                self._text(f"finished at step {self.step}; {self.best_text()}")
        except Exception as e:   # not KeyboardInterrupt: a user's stop is no error of the run
            if isinstance(e, RuntimeError) and (why := _shared_memory_refused(e)):
                msg = (f"the data-loading workers (data.workers={workers}) could not pass a "
                       f"batch through shared memory (/dev/shm: {why}) at step {self.step}: "
                       "give it room (a container: docker run --shm-size 2g) or set "
                       f"data.workers=0; then {resume_hint(cfg)}")
                with contextlib.suppress(OSError):
                    self._text(f"error: {msg}")
                raise SharedMemoryFull(msg, why) from None
            if not (isinstance(e, RuntimeError) and self.dist.enabled and _peer_lost(e)):
                # train.log's last word on the run (diverged, out of memory, a full disk, an
                # image that no longer decodes): without it the run read as killed, which the
                # same command would resume as it was. Never in place of the error itself.
                with contextlib.suppress(OSError):
                    self._text(f"error: {first_line(e, None)}")
                raise
            # torchrun sends the others SIGTERM once it sees a worker gone, at any time from
            # here to the exit: ignored for good, or it cut this one off before its line (as
            # it did gloo's traceback) or put "interrupted (SIGTERM)" in its place. Not a
            # signal mask: that is the main thread's alone, and gloo's threads take the signal.
            for s in (signal.SIGINT, *STOP_SIGNALS):
                signal.signal(s, signal.SIG_IGN)
            handlers = {}
            msg = (f"another process of this torchrun job stopped (killed, out of memory or "
                   f"crashed: torchrun's report names it) at step {self.step}; this one "
                   f"stops too{self._save_what_is_left()}")
            self._text(f"error: {msg}")
            raise ProcessLost(msg) from None
        finally:
            shut_down_workers(batches)
            if bar is not None:
                with said_after_hang_up():
                    bar.close()
            self._restore_signal_handlers(handlers)
            if self._tb is not None:
                self._tb.close()
                self._tb = None
        if self.dist.main:
            self.plot()
        return self.metrics

    def _check_weights(self) -> None:
        """TrainingDiverged, before a checkpoint is written, if steps with finite gradients
        still left NaN/inf weights, or weights whose output on the validation images just taken
        is NaN (a huge learning rate): saving them replaced the last good checkpoint, and the
        run ended "done" with NaN scores."""
        bad = [n for n, p in chain(self.model.named_parameters(), self.ema.named_parameters())
               if not torch.isfinite(p).all()]
        what = (f"weights are NaN/inf ({bad[0]}"
                f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''})" if bad else "")
        if not what and self.metrics.get("step") == self.step:
            nan = [k for k, v in self.metrics.items()
                   if k.startswith("model_") and isinstance(v, float) and not math.isfinite(v)]
            if nan:
                what = f"weights give NaN/inf on the validation images ({nan[0]})"
        if self.dist.enabled:   # only rank 0 validates: the others must stop with it
            flag = torch.tensor([float(bool(what))], device=self.device)
            _all_reduce_kept(flag, dist.ReduceOp.MAX)
            if flag.item() and not what:
                what = "process 0 found NaN/inf on the validation images"
        if what:
            raise TrainingDiverged(
                f"training diverged by step {self.step}: {what}; not saved, "
                f"{self._kept_text()}. {TrainingDiverged.REMEDY}")

    def _save_what_is_left(self) -> str:
        """After another process is lost: process 0 saves last.pt at the step it got to, as a
        Ctrl-C does. Its state is that step's whatever collective failed: the only one within
        a step is the gradient exchange, before the optimizer step. Not weights gone NaN/inf
        (the check with the others cannot run): they would replace a good last.pt. Said as
        the end of the error's sentence."""
        last = self.out / "last.pt"
        finite = all(torch.isfinite(p).all() for p in
                     chain(self.model.parameters(), self.ema.parameters()))
        if self.dist.main and finite:
            with contextlib.suppress(OSError):
                # The snapshot due at this step as well, before last.pt as the step's own save
                # writes it: the resumed run goes on after this step and never writes it.
                every = self.cfg.snapshot_every
                if every and self.step and self.step % every == 0 and (
                        not (self.out / f"step{self.step}.pt").exists()
                        or foreign(self.out / f"step{self.step}.pt", self.out, self._run_id)):
                    self.snapshot()
                self.save()
                return (f", having saved {last} at that step: {resume_hint(self.cfg)} (with "
                        "this or another --nproc_per_node)")
        if not self.dist.main:
            # Not last.pt's step as read here: process 0, if alive, may be writing a later one
            return (f"; process 0 saves {last} at the step it got to, unless it is the one "
                    f"lost: {resume_hint(self.cfg)} (with this or another --nproc_per_node)")
        try:
            step = read_checkpoint(last, mmap=True).get("step")
        except (CheckpointError, OSError):
            return (f". No checkpoint was written in {self.out} yet, so the same command starts "
                    "over")
        return (f". {last} (step {step}) is intact: {resume_hint(self.cfg)} (with this or "
                "another --nproc_per_node)")

    def _kept_text(self) -> str:
        """What a diverged run leaves to go on from: its last checkpoint, or none yet."""
        if (self.out / "last.pt").exists():
            return f"the last checkpoint in {self.out} is intact"
        return (f"no checkpoint was written in {self.out} yet, so the same command starts "
                "over")

    def _train_step(self, batch: dict) -> tuple[float, dict]:
        self._lr_used = self.opt.param_groups[0]["lr"]   # the schedule moves on after the step
        x = batch["input"].to(self.device, non_blocking=True)
        y = batch["target"].to(self.device, non_blocking=True)
        gt = batch.get("gt")
        gt = gt.to(self.device, non_blocking=True) if isinstance(gt, torch.Tensor) else None
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16,
                            enabled=self.cuda and self.cfg.amp):
            pred = self.net(x)
        self._share_qat_ranges()
        loss, parts = combined_loss(pred.float(), y, gt, self.weights)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        # The norm is taken after DDP's all-reduce, so every rank makes the same decision.
        norm = nn.utils.clip_grad_norm_(self.model.parameters(),
                                        self.cfg.optim.grad_clip or float("inf"))
        if not self.scaler.is_enabled() and not torch.isfinite(norm):
            # One bad batch must not poison the weights (and the next checkpoint): skip it.
            # GradScaler does the same by itself under CUDA AMP.
            self.opt.zero_grad(set_to_none=True)
            with warnings.catch_warnings():
                # The schedule follows the step count, skipped steps included; torch warns
                # when that happens before the first optimizer step, which is intended here.
                warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
                self.sched.step()
            self._bad_steps += 1
            if self._bad_steps >= MAX_BAD_STEPS:
                raise TrainingDiverged(
                    f"training diverged at step {self.step + 1}: the loss or its gradient was "
                    f"NaN/inf for {self._bad_steps} batches in a row (weights left as they were "
                    f"before them; {self._kept_text()}). {TrainingDiverged.REMEDY}")
            return float("nan"), parts
        self._bad_steps = 0
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        o = self.cfg.optim
        ema_update(self.ema, self.model, ema_decay_at(o.ema_decay, self.step + 1, o.ema_warmup))
        return float(loss.detach()), parts

    def _compiling_step(self, batch: dict) -> Optional[tuple[float, dict]]:
        """compile=true: this process's first step, which waits for torch.compile (a Restormer's
        ran 12 minutes on a 2-core CPU without reaching step 1, the bar at 0 and train.log
        silent). A signal meanwhile stops the run at once, saved at the step it began from,
        and returns None: the compiler's processes took a terminal's or `timeout`'s signal
        too, and their failure (CppCompileError) was recorded as the run's error."""
        msg = (f"compiling the model (compile=true): step {self.step + 1} waits for it, "
               "minutes on a CPU; compile=false skips it")
        self.log(msg)
        self._text(msg)
        t0 = time.time()
        self._compiling = True
        try:
            stepped = self._train_step(batch)
            self._compiling = False
        except (Exception, SecondSignal):
            self._compiling = False
            if not self._stop:
                raise
            name = signal.Signals(self._stop).name
            self.log(f"stopping at step {self.step} ({name} while compiling the model); "
                     f"{resume_hint(self.cfg)}")
            if self.dist.main:
                self.save()   # the weights as they were: the step never reached the optimizer
            self._text(f"stopped at step {self.step} by {name} while compiling the model; "
                       "last.pt saved")
            return None
        msg = (f"compiled the model: step {self.step + 1} took {time.time() - t0:.0f} s, the "
               "steps after it run compiled")
        self.log(msg)
        self._text(msg)
        return stepped

    def _share_qat_ranges(self) -> None:
        """Under DDP with qat=true, every process takes the widest of the processes' QAT ranges
        after its forward: what one process observing the step's whole batch has (each range
        moved towards the lowest minimum and the highest maximum of the processes' crops, from
        the same range). Each process kept its own before, last.pt held process 0's alone, and
        a resumed run, every process on process 0's, drifted from an uninterrupted one."""
        if self._qat is None or not self.dist.enabled:
            return
        # The same layers on every process: those the model's forward observes.
        seen = [o for o in self._qat.observers.values() if o.lo is not None]
        if not seen:
            return
        t = torch.tensor([v for o in seen for v in (-o.lo, o.hi)], dtype=torch.float64,
                         device=self.device)
        _all_reduce_kept(t, dist.ReduceOp.MAX)
        for o, (lo, hi) in zip(seen, t.view(-1, 2).tolist()):
            o.lo, o.hi = -lo, hi

    def best_text(self) -> str:
        """What best.pt scored and at which step, for the closing lines ("best.pt scored
        None" was train.log's word for a run that validated nothing, and the console's last
        line showed the last validation's score after best.pt's name)."""
        if self.best is None or not (self.out / "best.pt").exists():
            return "nothing was validated: no best.pt"
        key = "model_gt_ssim" if "model_gt_ssim" in self.metrics else "model_teacher_ssim"
        at = f" (step {self.best_step})" if self.best_step is not None else ""
        said = f"best.pt{at}: {key.removesuffix('_ssim')} SSIM {self.best:.4f}"
        if self.cfg.init and self.best_step == 0 and self.step > 0:
            # A fine-tune (init=fast val_start=true) that never beat its start: best.pt is the
            # starting model, which "step 0" alone did not tell a user about to export it.
            said += f", the init={self.cfg.init} weights unchanged: no later validation beat them"
        return said

    def _settle_best(self, val_items: list[ValItem]) -> Optional[str]:
        """What becomes of the best score a resume brought back, in words (None: kept as it
        was). It is best.pt's score on the validation images of its run. Branched into another
        folder (resume=a/last.pt out=b), b's validations, scored below a's best, wrote no
        best.pt into b, and the run ended "nothing was validated"; with other validation images
        than those of the checkpoint, scores of different images were compared, so an easier
        set replaced best.pt with a worse model and a harder one never replaced it. A branch
        into a folder holding a best.pt of its own, or a resume from a checkpoint that does not
        record its images, scores that one on this run's images; one this run's model cannot
        load is set aside."""
        ckpt = self._resume_path()
        if ckpt is None:
            return None
        best_pt = self.out / "best.pt"
        elsewhere = ckpt.parent.resolve() != self.out.resolve()
        if not best_pt.exists():
            if self.best is None:
                return None
            self.best = self.best_step = None
            why = f"{ckpt.parent}'s best.pt stays there" if elsewhere else "best.pt is gone"
            return f"best.pt is chosen among the validations in {self.out} ({why})"
        if not val_items:
            return None
        recorded = self._resumed_data.get("val_digest")
        # The images of best.pt's score unknown: a last.pt from before checkpoints recorded
        # their data, or a weights-only checkpoint (stepN.pt, best.pt), which never records it.
        # A branch into a folder holding a best.pt of its own: validated on images that the
        # checkpoint's data signature does not describe. Either way, scored again.
        unknown = recorded is None and not elsewhere
        # Scored with another SSIM (a checkpoint from before the Gaussian-window SSIM): its
        # score and this run's validations are not comparable even on the same images.
        formula = (recorded is not None and not elsewhere
                   and self._resumed_data.get("val_score") != self._data_sig.get("val_score"))
        rescore = elsewhere or formula or recorded != self._data_sig.get("val_digest")
        # Loaded even when its score stands: one replaced by hand (another model's, not a
        # checkpoint) was else held up as the run's best and overwritten once beaten, unsaid.
        try:
            ck = read_checkpoint(best_pt)
            model = copy.deepcopy(self.ema)
            load_weights(model, extract_state_dict(ck, best_pt), best_pt)
        except CheckpointError as e:   # replaced by hand, or another model's
            # Moved aside with the other files of the run there before: the first
            # validation would overwrite it, that run's best weights.
            self.best = self.best_step = None
            self._set_aside.append(best_pt)
            return f"best.pt is chosen afresh ({e})"
        if not rescore:
            return None
        m = evaluate(model, val_items, self.device)
        key = "model_gt_ssim" if "model_gt_ssim" in m else "model_teacher_ssim"
        was, self.best = self.best, m.get(key)
        step = ck.get("step")
        self.best_step = step if isinstance(step, int) else None
        images = ("this run's validation images" if elsewhere or unknown
                  else "the new validation images")
        if self.best is None or not math.isfinite(self.best):
            self.best = self.best_step = None
            return f"best.pt is chosen afresh among the validations on {images}"
        if unknown and isinstance(was, float) and abs(self.best - was) < 1e-6:
            return None   # the same images, most likely: nothing to say
        if unknown and self._data_unrecorded:
            images = ("this run's validation images (its checkpoint, saved by an older version, "
                      "does not record the images of its score)")
        elif unknown:
            images = (f"this run's validation images ({ckpt.name} holds weights only, with no "
                      "record of the images of best.pt's score)")
        # in the words of best_text and the console's validation line, not the metrics key
        if not isinstance(was, float):
            earlier = ""
        elif unknown:
            earlier = f" ({was:.4f} recorded)"
        else:
            earlier = f" ({was:.4f} on the earlier ones)"
        how = f"scored on {images}"
        if formula and recorded == self._data_sig.get("val_digest"):
            how = "scored with this version's SSIM (its score used another formula)"
            earlier = f" ({was:.4f} before)" if isinstance(was, float) else ""
        return (f"{best_pt if elsewhere else 'best.pt'} (step {step}) {how}: "
                f"{key.removesuffix('_ssim')} SSIM {self.best:.4f}{earlier}, the score to beat")

    def _validate(self, items: list[ValItem]) -> None:
        if not self.dist.main or not items:
            return
        self._validating = True
        try:
            if self._stop:
                # Taken after the step's agreement to go on (under DDP most often while this
                # rank waited in it), so not the handler's to cut short: it saves at once too.
                raise SecondSignal()
            pictured: list = []
            m = evaluate(self.ema, items, self.device, pictured, self.cfg.val_pictures)
            if pictured:
                pic = compose(items[:len(pictured)], pictured)
                save_picture(self.out, self.step, pic)
                if self._tb is not None:
                    self._tb.picture(pic, self.step)
        finally:
            self._validating = False
        m["step"] = self.step
        self.metrics = m
        self._metrics_ssim = SSIM_ID
        key = "model_gt_ssim" if "model_gt_ssim" in m else "model_teacher_ssim"
        # A NaN score (diverged weights) is never best, and a NaN best (saved by a version
        # before this check) never blocks a real one.
        best = key in m and math.isfinite(m[key]) and (
            self.best is None or not math.isfinite(self.best) or m[key] > self.best)
        # Marked as train.log marks it: curves read from metrics.jsonl tell which step
        # best.pt holds.
        self._append_jsonl({"val": m, "step": self.step, "samples": self.samples_taken,
                            "ssim_formula": SSIM_ID, **({"best": True} if best else {})})
        if self._tb is not None:
            self._tb.scalars("val", m, self.step)
        self.log(f"step {self.step}: {val_summary(m)}")
        self._text(f"validation at step {self.step} ({count(len(items), 'image')}): "
                   + "  ".join(f"{k} {v:.4f}" for k, v in m.items() if k != "step")
                   + (f"  -> best.pt ({key})" if best else ""))
        if best:
            self.best, self.best_step = m[key], self.step
            self.save("best.pt", full=False)

    def _agree_started(self, started: bool) -> None:
        """Under DDP, ValueError on every other rank when process 0 could not start."""
        if not self.dist.enabled:
            return
        flag = torch.tensor([float(not started)], device=self.device)
        _all_reduce_kept(flag, dist.ReduceOp.MAX)
        if flag.item() and started:
            raise ValueError("process 0 could not start the run (its error says why)")

    def _agree_to_stop(self, over: bool) -> tuple[bool, int]:
        """Under DDP every rank stops at the same step, or those that go on wait in the next
        all-reduce forever (rank 0, which saves, among them): a signal may reach the ranks in
        different steps, and each measures max_minutes on its own clock. One tiny all-reduce
        per step; sets self._stop when any rank was signalled. Returns whether any rank is
        over budget and the signal every rank stops for now (0: none). That one, not
        self._stop read afterwards: a signal the handler takes once the all-reduce has
        returned is this rank's alone until the next agreement."""
        stop = int(self._stop or 0)
        if not self.dist.enabled:
            return over, stop
        flags = torch.tensor([float(stop), float(over)], device=self.device)
        _all_reduce_kept(flags, dist.ReduceOp.MAX)
        agreed = int(flags[0])
        if agreed and not self._stop:
            self._stop = agreed
        return bool(flags[1]), agreed

    def _validate_unless_stopped(self, items: list[ValItem]) -> None:
        """Validation that a second Ctrl-C/SIGTERM cuts short; the checkpoint is still saved."""
        try:
            self._validate(items)
        except SecondSignal:
            self.log(f"validation at step {self.step} skipped (signal); saving")
        except Exception:
            self._save_before_failing()
            raise

    def _save_before_failing(self) -> None:
        """last.pt at this step before a validation error ends the run (out of GPU memory on
        whole images, say): the steps since the last checkpoint were lost with it. Only where
        the weights are finite, checked here without _check_weights' all-reduce, which the
        other processes, waiting for the end of validation, would never join."""
        if not self.dist.main or not all(
                torch.isfinite(p).all() for p in chain(self.model.parameters(),
                                                       self.ema.parameters())):
            return
        try:
            self.save()
        except Exception:   # the validation's error is the one to report
            return
        msg = (f"validation at step {self.step} failed; last.pt saved at that step (the same "
               "command resumes from it once the cause is fixed)")
        self._text(msg)
        print(f"\n{msg}", file=sys.stderr, flush=True)

    def _install_signal_handlers(self):
        def stop(signum, frame):
            again, self._stop = bool(self._stop), self._stop or signum
            drop_gone_outputs(signum)
            if self._compiling:
                raise SecondSignal()   # not after it: compiling takes minutes on a CPU
            if not self._validating:
                return
            # SIGTERM (a scheduler, torchrun) is followed by SIGKILL within seconds, and torchrun
            # forwards SIGHUP to the ranks and kills them 30 s later: save now.
            if again or signum != signal.SIGINT:
                raise SecondSignal()
            print("\nstopping after this validation, then saving; Ctrl-C again to skip it",
                  file=sys.stderr, flush=True)
        try:
            return {s: signal.signal(s, stop) for s in signals_to_take()}
        except ValueError:  # not the main thread
            return {}

    @staticmethod
    def _restore_signal_handlers(h):
        for s, old in h.items():
            signal.signal(s, old)

    def plot(self) -> Optional[Path]:
        """Loss and validation curves to out/curves.png."""
        return plot_curves(self.out)


def _pause_bar(bar, seconds: float) -> None:
    """Leave `seconds` (a validation, a checkpoint save) out of the progress bar's rate and
    ETA, as tqdm's own unpause() does for a pause: its rate fell and its ETA jumped after
    each validation. Shifted by the time measured, not unpause()'s time since the bar's last
    print, which would drop the training steps after that print too."""
    if bar is not None:
        bar.start_t += seconds
        bar.last_print_t += seconds


class ProcessLost(RuntimeError):
    """Another process of the torchrun job is gone (killed, out of memory, crashed, its node
    lost): a collective with it failed."""


class SharedMemoryFull(SharpenError):
    """A DataLoader worker could not hand its batch over: /dev/shm is full (a container's
    64 MB default) or refused the file, said by torch only inside the worker's traceback.
    `why`: the system's words for it ("No space left on device")."""

    def __init__(self, message: str, why: str):
        super().__init__(message)
        self.why = why


# torch's words for a shared-memory file it could not size or write, with strerror (errno)
SHM_REFUSED = re.compile(r"unable to (?:resize|write to|allocate shared memory\(shm\) for) "
                         r"file <[^>]*>[^:\n]*: ([^\n]+?) \(\d+\)")


def _shared_memory_refused(e: RuntimeError) -> str:
    """The strerror of `e` where it is a DataLoader worker's shared memory refused, else ""."""
    m = SHM_REFUSED.search(str(e))
    return m.group(1) if m and "DataLoader worker" in str(e) else ""


def _peer_lost(e: RuntimeError) -> bool:
    """Whether `e` is a collective's failure for want of a peer: gloo raises a plain
    RuntimeError ("Connection reset by peer"), NCCL and the store torch.distributed's
    DistError."""
    if isinstance(e, TrainingDiverged):   # its text names out=, which may say "nccl"
        return False
    # By gloo's own words or its source path, NCCL's error prefix: not "gloo" or "NCCL"
    # anywhere, which a path in an ordinary error's text can hold.
    return isinstance(e, dist.DistError) or re.search(
        r"gloo/gloo/|NCCL error|Connection (reset|closed) by peer", str(e)) is not None


class TrainingDiverged(RuntimeError):
    """The loss or its gradient stayed non-finite for MAX_BAD_STEPS batches in a row, or the
    weights about to be saved are (or compute) NaN/inf."""

    REMEDY = ("Lower optim.lr, raise optim.warmup_steps or set optim.grad_clip, and run the "
              "same command again.")


@dataclass
class TrainResult:
    """How a run that was not interrupted ended: its last validation metrics and the step
    last.pt holds, below optim.steps when max_minutes or stop_after stopped it."""
    metrics: dict
    step: int
    best: str = ""   # what best.pt scored, at which step (Trainer.best_text)
    best_step: Optional[int] = None   # the step best.pt holds (0 with init=: those weights)


MOVING = ".moving.json"   # in an abandoned-at-stepN/ folder whose move has not finished


def _pending_move(out: Path) -> Optional[tuple[Path, dict]]:
    """(folder, record) of a move into abandoned-at-stepN/ that was stopped part-way (see
    Trainer._move_later_history_aside), or None; the record's "resumed" as a Path (a name:
    one in `out`)."""
    for marker in sorted(out.glob(f"abandoned-at-step*/{MOVING}")):
        try:
            rec = json.loads(marker.read_text())
            if isinstance(rec.get("resumed"), str) and isinstance(rec.get("files"), list):
                return marker.parent, {**rec, "resumed": out / rec["resumed"]}
        except (OSError, ValueError):   # cut by a kill as it was written: nothing moved yet
            pass
    return None


def _score_at_own_step(ck: dict) -> Optional[tuple[float, int]]:
    """A checkpoint's validation score and step, when it was validated at its own step: a
    snapshot (stepN.pt) carries the last validation's metrics, which may be of an earlier
    step, and that score is not its model's."""
    m, step = ck.get("metrics") or {}, ck.get("step")
    score = m.get("model_gt_ssim", m.get("model_teacher_ssim"))
    if (isinstance(score, (int, float)) and not isinstance(score, bool)
            and isinstance(step, int) and m.get("step") == step):
        return float(score), step
    return None


def train(cfg: TrainConfig, quiet: bool = False) -> dict:
    """Train to the end and return the last validation metrics; raises TrainingInterrupted
    (a KeyboardInterrupt) when a signal stopped it, after saving the resume checkpoint.
    train.log records the run's equivalent `sharpen distill`/`sharpen train` command. Under a
    cgroup CPU limit torch runs the limit's thread count for the run, as the commands do,
    unless the caller set one (torch.set_num_threads) or OMP_NUM_THREADS: default_torch_threads.
    """
    from .teacher import default_torch_threads
    # Main rank only says it: torchrun's ranks get OMP_NUM_THREADS=1, so no note there.
    say = None if quiet or not DistInfo.from_env().main else (
        lambda note: print(note, file=sys.stderr, flush=True))
    with default_torch_threads(say):
        result = run_training(cfg, quiet)
    if result.step < cfg.optim.steps and DistInfo.from_env().main and not quiet:
        # quiet callers learn the step from run_training (train.log says it too).
        print(f"stopped at step {result.step} of {cfg.optim.steps} (time or step budget "
              f"reached); {resume_hint(cfg)}", file=sys.stderr)
    return result.metrics


def snapshots(out: Path, upto: Optional[int] = None) -> list[Path]:
    """A run's stepN.pt snapshots (snapshot_every), by step; `upto`: those of steps up to it."""
    found = [(int(m[1]), p) for p in Path(out).glob("step*.pt")
             if (m := re.fullmatch(r"step([0-9]+)", p.stem)) and p.is_file()]
    return [p for n, p in sorted(found) if upto is None or n <= upto]


RUN_ID_NAME = ".run-id"


def read_run_id(out: Path) -> Optional[str]:
    """The id the first run in `out` wrote into it (RUN_ID_NAME), which every checkpoint
    written there records: None when there is none, or not one this code wrote."""
    try:
        text = (Path(out) / RUN_ID_NAME).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if re.fullmatch(r"[0-9a-f]{32}", text) else None


def write_run_id(out: Path) -> str:
    run_id = uuid.uuid4().hex
    atomic_write_bytes(Path(out) / RUN_ID_NAME, f"{run_id}\n".encode())
    return run_id


def _same_folder(a: str, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:   # one of them gone: by their resolved paths
        return os.path.realpath(a) == os.path.realpath(b)


def foreign(path: Path, out: Path, run_id: Optional[str]) -> Optional[str]:
    """None when a run in `out` wrote the checkpoint `path`, else whose it is, in words: what
    tells a run's own stepN.pt from one copied into its folder by hand, which starting over
    and keep_snapshots must not delete. By the run id it records where the folder has one
    (`run_id`), which holds when the folder is moved or renamed; else by the folder it
    records, resolved, which holds however out= was spelled; a checkpoint of code before
    those by its config's out= resolved from here (given relative from another directory,
    counted another's: kept). Read mapped: only its metadata costs. A file gone since the
    folder was listed (deleted by hand) is nothing to keep."""
    try:
        ck = read_checkpoint(path, mmap=True)
    except CheckpointError as e:
        if not path.exists():
            return None
        return f"which no run in it wrote (not a readable checkpoint: {first_line(e)})"
    run = ck.get("run") if isinstance(ck.get("run"), dict) else {}
    folder = run.get("dir") if isinstance(run.get("dir"), str) and run.get("dir") else None
    if run_id is not None and isinstance(run.get("id"), str):
        # a folder's id, not its path: another folder since moved to this one's path is
        # another run's
        if run["id"] == run_id:
            return None
        if folder and _same_folder(folder, out):
            return (f"which a run in another folder then at this path wrote (run id "
                    f"{run['id']}, not {out / RUN_ID_NAME}'s {run_id})")
        return f"which a run in {folder or 'another folder'} wrote, not one in {out}"
    if folder:
        return None if _same_folder(folder, out) else (
            f"which a run in {folder} wrote, not one in {out}")
    typed = (ck.get("config") or {}).get("out")
    if not (isinstance(typed, str) and typed):
        return "which no run in it wrote (a checkpoint naming no out= folder)"
    if _same_folder(typed, out):
        return None
    where = ("" if os.path.isabs(typed) else "; run from the directory that run started "
             "in if it is this folder's")
    return (f"which a run with out={typed} wrote ({os.path.realpath(typed)} from here{where}), "
            f"not one in {out}")


def _remove_killed_saves(out: Path) -> None:
    """The temp files of checkpoint saves a SIGKILL cut short (atomic_save's hidden
    `.last.pt.XXXX.tmp`): each as large as last.pt, and no run ever reads them. Only under
    the folder's lock, so no live save of another run is among them."""
    for p in out.glob(".*.pt.*.tmp"):
        with contextlib.suppress(OSError):
            p.unlink()


def run_training(cfg: TrainConfig, quiet: bool = False, command: str | None = None,
                 reference: Optional[Path] = None) -> TrainResult:
    """`train`, also saying the step reached: a run stopped by its budget returns as one that
    finished, and its caller must not report it "done". `command`, `reference`: as
    Trainer's."""
    try:
        main = DistInfo.from_env().main
        with run_lock(Path(cfg.out), enabled=main):
            if main:
                _remove_killed_saves(Path(cfg.out))
            trainer = Trainer(cfg, quiet=quiet, command=command, reference=reference)
            metrics = trainer.fit()
        if dist.is_initialized():
            # Every rank stopped at the same step; let rank 0 finish saving before any rank
            # tears gloo down (a rank destroying its group while a peer still used it aborted
            # with "terminate called without an active exception"). Not on an error path: a
            # rank that raised never reaches this barrier, and the others would wait forever.
            dist.barrier()
        if trainer._stop:
            raise TrainingInterrupted(int(trainer._stop), trainer.step, trainer.out,
                                      resume_hint(cfg))
        return TrainResult(metrics, trainer.step, trainer.best_text(), trainer.best_step)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
