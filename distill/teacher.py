"""The teacher: Restormer with full-resolution, Gaussian-blended tiled inference."""
from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import numpy as np
import torch

from runtime.console import count
from runtime.tiling import Band, tiled_apply

from .checkpoint import (FORMAT, CheckpointError, check_fits, extract_state_dict, load_weights,
                         read_checkpoint)
from .restormer import CONFIGS, Restormer, build_restormer, get_config
from .teacher_tiles import BATCH as TEACHER_BATCH, OVERLAP, TILE, overlap_for  # noqa: F401 - OVERLAP for callers

BUNDLED_TEACHER = "teacher-restormer-small.pt"
OFFICIAL_WEIGHTS_HELP = (
    "Get the official Restormer motion-deblurring weights (motion_deblurring.pth) from "
    "https://github.com/swz30/Restormer/releases or the Google Drive link in "
    "Motion_Deblurring/pretrained_models/README.md of that repository and pass "
    "--teacher-weights PATH (with --teacher-config motion-deblur), or train one with "
    "`sharpen train-teacher`.")


def models_dir() -> Path:
    """Where the shipped weights live: $SHARPEN_MODELS or the repository's models/ folder."""
    env = os.environ.get("SHARPEN_MODELS")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "models"


def shipped_students() -> list[str]:
    """Names of the students shipped in models/ (student-NAME.pt)."""
    return sorted(p.stem[len("student-"):] for p in models_dir().glob("student-*.pt"))


def names_a_file(text: str) -> bool:
    """Whether a --weights value is a path rather than a shipped name: a suffix, a path
    separator or an existing file (a folder named `fast` is not). '/' is one on Windows too,
    where os.sep is '\\': runs/fast, a run's folder, was taken for a shipped model's name."""
    p = Path(text).expanduser()
    return bool(p.suffix) or os.sep in text or "/" in text or p.is_file()


def resolve_weights(item: str | os.PathLike, allow_teacher: bool = True) -> Path:
    """A checkpoint path as given, or a shipped model by name: a student's (`fast` ->
    models/student-fast.pt, `student-fast` too) or `teacher` (the bundled teacher). Anything
    with a suffix, a path separator or an existing file is a path (a folder named `fast` is
    not); `models/...` that is not there from the current folder is in the shipped models
    folder. `allow_teacher=False` for commands that take students only."""
    text = str(item)
    p = Path(text).expanduser()
    if (not p.exists() and not p.is_absolute() and p.parts[:1] == ("models",)
            and (models_dir() / Path(*p.parts[1:])).is_file()):
        # The project's configs name shipped models as models/...: found from any folder.
        return models_dir() / Path(*p.parts[1:])
    if names_a_file(text):
        return p
    if text == "teacher" and allow_teacher:
        return models_dir() / BUNDLED_TEACHER
    cand = models_dir() / f"{text if text.startswith('student-') else f'student-{text}'}.pt"
    if cand.is_file():
        return cand
    teacher = " (and `teacher`)" if allow_teacher else ""
    if text == "teacher":   # shipped, but not what this command or function takes
        raise CheckpointError("'teacher' is the shipped teacher; this takes a student: "
                              f"{', '.join(shipped_students()) or 'none shipped'}, or a "
                              "student checkpoint path")
    from runtime.suggest import did_you_mean
    meant = did_you_mean(text, [*shipped_students(), *(["teacher"] if allow_teacher else [])])
    raise CheckpointError(f"{text!r} is neither a file nor a shipped model; shipped students: "
                          f"{', '.join(shipped_students()) or 'none'}{teacher}, or give a "
                          f"checkpoint path{meant}")


def file_hash(path: str | os.PathLike, n: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]


DEVICES = "auto, cpu, cuda or cuda:N"


def pick_device(device: str = "auto", flag: str = "device=") -> torch.device:
    """The torch device `device` names (auto: a CUDA GPU when there is one), or ValueError
    naming it as the user gave it, `flag` being `--device` on the command line or `device=` in a
    training config. torch accepts names this project cannot run on (meta computes nothing, mps
    without an Apple GPU) and fails on them later, or on a bad name, with a traceback."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    given = f"{flag}{device}" if flag.endswith("=") else f"{flag} {device}"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        from runtime.suggest import did_you_mean
        # "gpu" is a GPU's name, not a misspelled cpu.
        meant = did_you_mean(device.lower().replace("gpu", "cuda"), ("auto", "cpu", "cuda"))
        raise ValueError(f"{given}: not a device; use {DEVICES}{meant}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            # torch's own complaint is an AssertionError from deep inside .to()
            why = ("this torch is a CPU build" if torch.version.cuda is None
                   else "no CUDA GPU is visible")
            raise ValueError(f"{given}: {why} (auto uses a GPU when there is one)")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise ValueError(f"{given}: this machine has {count(n, 'CUDA GPU')}, cuda:0 to "
                             f"cuda:{n - 1}")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{given}: no Apple GPU (MPS) here; use {DEVICES}")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{given}: not a device this project runs models on; use {DEVICES}")
    return dev


def check_device(device: str, flag: str = "--device") -> None:
    """A usage error (SharpenError) unless this machine can run models on `device`: what every
    command taking --device (or device=) calls before it loads a model or reads an image."""
    from runtime.cli_errors import SharpenError
    try:
        pick_device(device, flag)
    except ValueError as e:
        raise SharpenError(str(e)) from None


def check_threads(threads: int, zero: Optional[str] = None) -> None:
    """A usage error (SharpenError) for a negative or absurdly large --threads (`zero`: what 0
    means, by default what it means to set_torch_threads and the runtimes alike), said before
    any model loads, as `sharpen run` and `export` say theirs."""
    from runtime.cli_errors import SharpenError
    from runtime.host import ZERO_THREADS, check_threads as check_range
    try:
        check_range(threads, "--threads", zero or ZERO_THREADS)
    except ValueError as e:
        raise SharpenError(str(e)) from None


def set_torch_threads(threads: Optional[int], say: Optional[Callable[[str], None]] = None
                      ) -> int:
    """Sets PyTorch's CPU threads for this process to `threads` when given, else to what
    OMP_NUM_THREADS or a cgroup CPU limit sets (runtime.host.default_threads, the count the
    runtimes take): torch's own default counts the cores a CPU quota leaves idle, so under
    `--cpus 2` on a 64-core host it ran 64 threads. `say` gets the one line naming a limit
    that set the count. Returns the count torch runs on."""
    from runtime.host import default_threads, limit_note

    n = default_threads(threads)
    if n and n != torch.get_num_threads():
        torch.set_num_threads(n)
    if say and not threads and (note := limit_note("PyTorch")):
        say(f"note: {note}")
    return torch.get_num_threads()


# Where Linux says which core each CPU (hardware thread) is on.
CPU_TOPOLOGY = Path("/sys/devices/system/cpu")


def physical_cores(cpus: Iterable[int], root: Optional[Path] = None) -> Optional[int]:
    """The cores the CPUs `cpus` are hardware threads of (two to a core where SMT is on), or
    None where Linux does not say. PyTorch's default thread count is this, not the CPUs: on a
    host of 32 cores, 64 threads, it runs 32."""
    root = root or CPU_TOPOLOGY
    cores = set()
    try:
        for cpu in cpus:
            topology = root / f"cpu{cpu}" / "topology"
            cores.add(((topology / "physical_package_id").read_text().strip(),
                       (topology / "core_id").read_text().strip()))
    except OSError:
        return None
    return len(cores) or None


@contextmanager
def default_torch_threads(say: Optional[Callable[[str], None]] = None) -> Iterator[None]:
    """For library calls (`distill.trainer.train`): within the block PyTorch runs the thread
    count of a cgroup CPU limit, as the commands do (set_torch_threads), but only where the
    caller left torch at its default, one thread per core of the affinity mask (a physical
    core: one per two CPUs where SMT is on), which a CPU quota does not lower: a count the
    caller set with torch.set_num_threads is theirs, and theirs again after the block, however
    the block ends. `say` gets the note naming the limit."""
    from runtime.host import limit_note, limit_threads, scheduled_cpus
    before = torch.get_num_threads()
    cpus = scheduled_cpus()
    default = before in (len(cpus), physical_cores(cpus))
    n = limit_threads() if default and limit_note("PyTorch") else None
    if not n:
        yield
        return
    try:   # the note too: a closed stderr raised before the count was given back
        torch.set_num_threads(n)
        if say:
            say(f"note: {limit_note('PyTorch')}")
        yield
    finally:
        torch.set_num_threads(before)


def load_teacher_model(weights: str | os.PathLike, config: Optional[str] = None) -> Restormer:
    """Build Restormer for `weights`. Project checkpoints carry their config; the official file
    and bare state dicts use `config` (default: motion-deblur)."""
    return _load_teacher(weights, config)[0]


def recorded_crop(ckpt: dict) -> Optional[int]:
    """The training crop side (data.crop) a project checkpoint records, or None (the official
    file, a bare state dict, a checkpoint without a config)."""
    cfg = ckpt.get("config") if ckpt.get("format") == FORMAT else None
    data = cfg.get("data") if isinstance(cfg, dict) else None
    crop = data.get("crop") if isinstance(data, dict) else None
    return crop if isinstance(crop, int) and not isinstance(crop, bool) and crop > 0 else None


def _load_teacher(weights: str | os.PathLike,
                  config: Optional[str] = None) -> tuple[Restormer, dict]:
    ckpt = read_checkpoint(weights)
    if ckpt.get("format") == FORMAT:
        if ckpt.get("kind") != "teacher":
            raise CheckpointError(f"{weights} is a {ckpt.get('kind')} checkpoint, not a teacher")
        try:
            cfg = get_config(ckpt.get("arch_args"))
        except (TypeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{weights}: its architecture arguments do not build a "
                                  f"Restormer ({e})") from None
        if config is not None:
            try:
                asked = get_config(config)
            except (TypeError, ValueError, KeyError) as e:
                raise CheckpointError(f"--teacher-config {config}: {e}") from None
            if asked.to_dict() != cfg.to_dict():
                raise CheckpointError(
                    f"{weights} carries its own Restormer config, which is not {config!r}; "
                    "--teacher-config is for weights without one (the official .pth, bare "
                    "state dicts): leave it out")
    else:
        cfg = get_config(config or "motion-deblur")
    sd = extract_state_dict(ckpt, weights)
    try:
        # Laid out on the meta device first, which takes no memory: a stranger's config (dim
        # 4096) built hundreds of GB of layers before the weights were found not to fit them.
        with torch.device("meta"):
            probe = build_restormer(cfg)
    except (TypeError, ValueError, RuntimeError, IndexError) as e:
        # IndexError: fewer heads or blocks than the four levels. Said as a student's is.
        raise CheckpointError(f"{weights}: its architecture arguments {cfg.to_dict()} do not "
                              f"build a Restormer ({e})") from None
    try:
        check_fits(probe, sd, weights)
        model = build_restormer(cfg)
        load_weights(model, sd, weights)
    except CheckpointError as e:
        fits = [] if ckpt.get("format") == FORMAT else named_configs_fitting(sd)
        task = None if ckpt.get("format") == FORMAT else other_restormer_task(sd)
        if task:
            raise CheckpointError(f"{e}\n  {task}") from None
        if not fits:
            raise
        # The official weights under `small`, the small teacher's bare state dict under the
        # default: hundreds of mismatching tensors, and the flag that loads them unsaid.
        raise CheckpointError(f"{e}\n  these weights fit the Restormer config {fits[0]!r}: "
                              f"pass --teacher-config {fits[0]}") from None
    return model.eval(), ckpt


def other_restormer_task(sd: dict[str, torch.Tensor]) -> Optional[str]:
    """What is said of Restormer weights trained for another task than motion deblurring, or
    None. Its denoisers (real_denoising.pth, gaussian_*_denoising_*.pth) have layer norms
    without a bias (BiasFree), the grayscale ones one channel in; its dual-pixel defocus
    deblurring file takes 6 channels (both views) and has a skip_conv. A plain "88 missing
    keys" did not say that the file is a model for another job. (Deraining and single-image
    defocus share motion deblurring's layout: nothing here tells them apart.)"""
    def shape(name: str) -> tuple:
        v = sd.get(name)
        return tuple(v.shape) if isinstance(v, torch.Tensor) else ()
    norms = [k for k in sd if k.endswith(("norm1.body.weight", "norm2.body.weight"))]
    if "skip_conv.weight" in sd or shape("patch_embed.proj.weight")[1:2] == (6,):
        task, why = "dual-pixel defocus deblurring", "6 channels in: the two dual-pixel views"
    elif norms and not any(k[:-len("weight")] + "bias" in sd for k in norms):
        gray = shape("patch_embed.proj.weight")[1:2] == (1,)
        task = "grayscale denoising" if gray else "denoising"
        why = "layer norms without a bias" + ("; 1 channel in" if gray else "")
    else:
        return None
    return (f"these look like the weights of Restormer's {task} model ({why}), made for "
            "another job than motion deblurring: the teacher takes motion_deblurring.pth "
            "(Motion_Deblurring/pretrained_models in the Restormer repository)")


def named_configs_fitting(sd: dict[str, torch.Tensor]) -> list[str]:
    """The named Restormer configs whose state dict has exactly the names and shapes of
    `sd`. Built on the meta device: no memory for the 26 M parameters of motion-deblur."""
    want = {k: tuple(v.shape) for k, v in sd.items()}
    fits = []
    for name in CONFIGS:
        with torch.device("meta"):
            own = build_restormer(name).state_dict()
        if {k: tuple(v.shape) for k, v in own.items()} == want:
            fits.append(name)
    return fits


class Teacher:
    """Restormer plus tiled inference. `sharpen` takes and returns HxWx3 float32 RGB [0, 1]."""

    def __init__(self, model: Restormer, device: str = "auto", weights_id: str = "random",
                 config_name: str = "custom", weights_path: Optional[str] = None,
                 train_crop: Optional[int] = None):
        self.device = pick_device(device)
        # The crop side its checkpoint says it was trained on (None: not recorded), which
        # the --tile warning compares tiles with.
        self.train_crop = train_crop
        self.model = model.eval().to(self.device)
        self.weights_id = weights_id
        # The file, for messages: label caches name the teacher of their labels by it.
        self.weights_path = weights_path
        self.config_name = config_name
        # fp16 on CUDA halves memory per tile; bf16 where supported avoids overflow in attention.
        self.amp_dtype = None
        if self.device.type == "cuda":
            self.amp_dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)

    @property
    def precision(self) -> str:
        """"bf16" / "fp16" (autocast on CUDA) or "fp32": what its outputs are computed in."""
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.amp_dtype, "fp32")

    @classmethod
    def load(cls, weights: Optional[str | os.PathLike] = None, config: Optional[str] = None,
             device: str = "auto") -> "Teacher":
        """The teacher from `weights`: a checkpoint path, `teacher` or None (the shipped one,
        models/teacher-restormer-small.pt or $SHARPEN_MODELS), or the official .pth with
        `config` (motion-deblur, small, tiny); on `device` (auto: a CUDA GPU when there is
        one). CheckpointError / ValueError say what is wrong."""
        if weights is None:
            bundled = models_dir() / BUNDLED_TEACHER
            if not bundled.exists():
                raise CheckpointError(
                    f"no teacher weights given and the bundled teacher ({bundled}) is not there. "
                    + OFFICIAL_WEIGHTS_HELP)
            weights = bundled
        else:   # the shipped name `teacher` as in --weights; a student's name is said to be one
            weights = resolve_weights(weights)
            if not Path(weights).exists() and (config == "motion-deblur"
                                              or Path(weights).suffix == ".pth"):
                # The README's `--teacher-weights motion_deblurring.pth` is a download of the
                # user's: "checkpoint not found" alone did not say where it comes from.
                raise CheckpointError(f"checkpoint not found: {weights}. "
                                      + OFFICIAL_WEIGHTS_HELP)
        model, ckpt = _load_teacher(weights, config)
        # The config the weights were built in, named alike with or without the flag that
        # names it: `sharpen teacher` records it, and a record of "checkpoint" against one of
        # "motion-deblur" (the same model) wrote every image again. Project checkpoints carry
        # their own config ("checkpoint", as their records have always said).
        name = "checkpoint" if ckpt.get("format") == FORMAT else (config or "motion-deblur")
        return cls(model, device, weights_id=file_hash(weights), config_name=name,
                   weights_path=str(Path(weights).resolve()), train_crop=recorded_crop(ckpt))

    @torch.no_grad()
    def _run(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to(self.device)
        ctx = (torch.autocast(self.device.type, dtype=self.amp_dtype)
               if self.amp_dtype else nullcontext())
        with ctx:
            y = self.model(x)
        return y.float().clamp_(0, 1).cpu().numpy()

    def sharpen(self, image: np.ndarray, tile: int = TILE, overlap: Optional[int] = None,
                batch_size: int = TEACHER_BATCH,
                progress: bool = False, desc: str = "tiles",
                on_tile: Optional[Callable[[int, int], None]] = None,
                out: Optional[np.ndarray] = None, from_row: int = 0,
                on_rows: Optional[Callable[[int], None]] = None, band: Optional[Band] = None,
                on_band: Optional[Callable[[Band], None]] = None) -> np.ndarray:
        """Sharpen one image: HxWx3 float RGB in [0, 1] in (float32, or float16/64, converted),
        an HxWx3 float32 RGB image in [0, 1] of the same size out; the input is not changed.
        OpenCV's BGR uint8 is not accepted (FrameError, a ValueError, saying so): convert it
        with `distill.images.to_rgb_float`. Runs Gaussian-blended tiles of `tile` px (0: the
        whole image at once) overlapping by `overlap` (default: 64, at most half the tile),
        `batch_size` tiles per forward pass;
        `progress` shows a tqdm bar on stderr (off by default); `on_tile(done, total)` is
        called after each batch of tiles (a folder's bar counts them over all its images).
        `out`, `from_row`, `on_rows`: an array to blend into whose rows above `from_row` are
        done, and a call as rows are finished (`runtime.tiling.tiled_apply`'s: a stopped
        `sharpen teacher` goes on from the rows it had); `band`, `on_band`: the blend sums
        below them to go on from, and a call with them after each batch (`tiled_apply`'s)."""
        from runtime.prepost import check_rgb_float
        image = check_rgb_float(image)
        if overlap is None:
            overlap = overlap_for(tile)
        bar = None
        if progress:
            from runtime.progress import progress as progress_bar
            from runtime.tiling import count_tiles
            # The count up front: a bar of total 0 read "0tile" until the first tile finished.
            total = count_tiles(*image.shape[:2], tile, overlap, Restormer.multiple)
            bar = progress_bar(total=total, desc=desc, unit="tile", leave=False)

            also = on_tile

            def update(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()
                if also:
                    also(done, total)
            on_tile = update
        try:
            return tiled_apply(image, self._run, tile=tile, overlap=overlap,
                               multiple=Restormer.multiple, batch_size=batch_size,
                               on_tile=on_tile, out=out, from_row=from_row, on_rows=on_rows,
                               band=band, on_band=on_band)
        finally:
            if bar is not None:
                bar.close()
