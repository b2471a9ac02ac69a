"""Training configuration: YAML file + `key=value` overrides (dotted keys, YAML-typed values)."""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from runtime.atomic import atomic_write_bytes
from runtime.shell_words import home_of


@dataclass
class ModelConfig:
    arch: str = "fast"            # "restormer" for the teacher, or a student name (sharpen models)
    args: dict = field(default_factory=dict)   # restormer: {"config": "small"}; students: overrides


@dataclass
class DataConfig:
    # Teacher training: a source SPEC with ground truth ("embedded", a paired folder, a GoPro root,
    # or kind:path). Students: `labels` points to a pseudo-label cache made by `sharpen labels`.
    train: str = "embedded"
    val: str = "embedded"
    labels: str = ""              # student: label cache of the training images
    val_labels: str = ""          # student: label cache of the validation images
    # A second source with ground truth, trained on the ground truth alone (for students it
    # stands in for the teacher's label): e.g. a corpus of sharp `still` frames, which the
    # teacher itself over-sharpens.
    gt_train: str = ""
    # Fraction of training crops drawn from gt_train (its pairs subsampled evenly or repeated);
    # 0 = each of its pairs once, i.e. in proportion to their number.
    gt_train_share: float = 0.0
    crop: int = 192
    batch_size: int = 8
    workers: int = 2
    flips: bool = True
    rot90: bool = False
    brightness: float = 0.1
    cache_size: int = 256         # decoded images kept per loader worker (LRU)
    val_max_images: int = 8       # spread evenly over the validation set in name order
    val_max_side: int = 512       # validation images are centre-cropped to this side
    # A GoPro root's blurred folder for data.train, data.val and data.gt_train: blur or
    # blur_gamma (as `sharpen labels --gopro-blur`); other sources ignore it.
    gopro_blur: str = "blur"


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 1e-4
    betas: tuple = (0.9, 0.99)
    warmup_steps: int = 200
    steps: int = 20000
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    # Ramp the EMA decay as min(ema_decay, (1 + n) / (10 + n)) after n updates (timm/TF style):
    # without it a short fine-tune's EMA stays mostly the initial weights.
    ema_warmup: bool = True
    min_lr_ratio: float = 0.01


@dataclass
class LossConfig:
    """Loss weights. `pixel` (Charbonnier) and `ssim` (1 - SSIM) pull towards the target: the
    teacher's output when distilling, ground truth when training on it; `gt` and `gt_ssim` add
    the same terms to ground truth when the batch has it; `freq` an L1 on the 2-D spectrum.
    A weight of 0 removes its term entirely."""
    pixel: float = 1.0
    ssim: float = 0.2
    gt: float = 0.0
    freq: float = 0.0
    gt_ssim: float = 0.0


@dataclass
class TrainConfig:
    task: str = "student"         # "student" (distillation) or "teacher" (ground truth)
    out: str = "runs/student"
    seed: int = 0
    device: str = "auto"
    amp: bool = True              # CUDA only
    channels_last: bool = True    # pays off on x86 CPUs as well as on CUDA
    compile: bool = False         # torch.compile the training forward/backward (slow first step)
    qat: bool = False             # simulate INT8 in the training forward (distill/qat.py)
    val_every: int = 500
    val_start: bool = False       # validate before the first step (is a fine-tune helping?)
    # Validation images saved at each validation as OUT/visualization/stepN.png (input | model
    # | target crops, a row each; BasicSR's save_img); 0 = off.
    val_pictures: int = 4
    # TensorBoard scalars and pictures in OUT/tb (needs `pip install tensorboard`; optional)
    tensorboard: bool = False
    ckpt_every: int = 250         # last.pt (the resume checkpoint), overwritten each time
    # Keep the weights every N steps as stepN.pt (EMA weights only, as best.pt; BasicSR's
    # save_checkpoint_freq); 0 = off. keep_snapshots: only the newest K of them; 0 = all.
    snapshot_every: int = 0
    keep_snapshots: int = 0
    log_every: int = 10
    max_minutes: float = 0.0      # stop cleanly (checkpoint saved) after this wall time; 0 = off
    stop_after: int = 0           # stop cleanly after this many steps in this invocation; 0 = off
    resume: str = "auto"          # "auto" (out/last.pt if present), "never", or a checkpoint path
    init: str = ""                # start from these weights (fine-tuning), not a resume
    teacher: str = ""             # teacher weights for the student's validation baseline
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        # TrainConfig(model={"arch": "edge"}) from Python kept the dict, and the trainer failed
        # later on `cfg.model.arch`: a section given as a mapping is read as a config file's
        # is (defaults for what it leaves out, each key checked); anything else is refused.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.default_factory is dataclasses.MISSING:
                continue
            default = f.default_factory()
            if dataclasses.is_dataclass(default) and not isinstance(value, type(default)):
                setattr(self, f.name, default)
                _set(self, f.name, value)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["optim"]["betas"] = list(d["optim"]["betas"])
        return d


def config_key(word: str) -> str | None:
    """The config key `word` spells, as an option would (`seed`, `optim.lr`, `val-every`, or
    a section's key without its section where one section has it: `steps`, `batch-size`), or
    None where it names none (a section alone is no key to set)."""
    obj: Any = TrainConfig()
    parts = word.replace("-", "_").split(".")
    for p in parts:
        if not dataclasses.is_dataclass(obj) or p not in {f.name for f in
                                                           dataclasses.fields(obj)}:
            elsewhere = _key_elsewhere(parts[0]) if len(parts) == 1 else []
            return elsewhere[0] if len(elsewhere) == 1 else None
        obj = getattr(obj, p)
    return None if dataclasses.is_dataclass(obj) else ".".join(parts)


def _key_elsewhere(key: str) -> list[str]:
    """The dotted names of settings called `key` in a section: `steps=100` (as other trainers
    spell it, or a flat YAML) and `optim.batch_size=8` were "unknown" with a list of the
    fields of a section that has no such key."""
    root = TrainConfig()
    found = []
    for f in dataclasses.fields(root):
        section = getattr(root, f.name)
        if dataclasses.is_dataclass(section) and key in {g.name for g in
                                                          dataclasses.fields(section)}:
            found.append(f"{f.name}.{key}")
    return found


class ConfigValueError(ValueError):
    """A setting's value out of its range, naming the key (`optim.lr`), so that the command can
    say where it was set: a config file's line or an override."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _set(obj: Any, dotted: str, value: Any, prefix: str = "",
         at: Callable[[str], str] | None = None) -> None:
    """Set `dotted` (below `prefix`, which only names the key in messages) to `value`, checked
    against the field's type. `at` says where a key was written ("FILE, line N"), which an
    error then starts with."""
    try:
        _assign(obj, dotted, value, prefix, at)
    except (KeyError, TypeError) as e:
        where = at(prefix + dotted) if at and not getattr(e, "located", False) else ""
        if not where:
            raise
        located = type(e)(f"{where}: {e.args[0] if e.args else e}")
        located.located = True
        raise located from None


def _assign(obj: Any, dotted: str, value: Any, prefix: str,
            at: Callable[[str], str] | None) -> None:
    parts = dotted.split(".")
    for i, p in enumerate(parts):
        if i and not (dataclasses.is_dataclass(obj) or isinstance(obj, dict) and
                      i == len(parts) - 1):
            setting = prefix + ".".join(parts[:i])
            raise KeyError(f"{setting} is a setting, not a section: give {setting}=VALUE")
        if i == len(parts) - 1:
            break
        if not hasattr(obj, p):
            sections = [f.name for f in dataclasses.fields(obj)
                        if dataclasses.is_dataclass(getattr(obj, f.name))]
            close = difflib.get_close_matches(p, sections, n=1)
            hint = (f"; did you mean {prefix}{'.'.join([*parts[:i], close[0], *parts[i + 1:]])}?"
                    if close else "")
            raise KeyError(f"unknown config section {p!r} in {prefix + dotted!r}{hint}")
        obj = getattr(obj, p)
    key = parts[-1]
    if isinstance(obj, dict):
        obj[key] = value
        return
    if not hasattr(obj, key):
        names = [f.name for f in dataclasses.fields(obj)]
        # optim.lr_rate is lr with a word added, not min_lr_ratio, the nearest spelling.
        close = [n for n in names if key.startswith(n + "_")] or difflib.get_close_matches(
            key, names, n=1)
        elsewhere = _key_elsewhere(key.replace("-", "_"))   # batch-size, as an option
        hint = (f"did you mean {' or '.join(elsewhere)}? " if elsewhere else
                f"did you mean {prefix}{'.'.join([*parts[:-1], close[0]])}? " if close else "")
        raise KeyError(f"unknown config key {prefix + dotted!r}; {hint}{type(obj).__name__} "
                       f"has {names}")
    current = getattr(obj, key)
    dotted = prefix + dotted
    if dataclasses.is_dataclass(current):
        if not isinstance(value, dict):
            raise TypeError(f"{dotted} is a section; give a mapping")
        for k, v in value.items():
            _set(current, str(k), v, prefix=f"{dotted}.", at=at)
        return
    if isinstance(current, str):
        if value is None:
            value = ""
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)   # out=2024: YAML reads a number
        elif not isinstance(value, str):
            raise TypeError(f"{dotted} must be a string (a path or a name), got {value!r}")
    if isinstance(current, dict):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise TypeError(f"{dotted} must be a mapping (e.g. {{width: 32}}), got {value!r}")
        # YAML reads {width:8} as the key "width:8" with no value, which the model then
        # refused as an argument named 'width:8'.
        glued = [k for k, v in value.items() if v is None and ":" in str(k)]
        if glued:
            name, _, v = str(glued[0]).partition(":")
            raise TypeError(f"{dotted}: {glued[0]!r} has no value; YAML needs a space after "
                            f"the colon: {{{name.strip()}: {v.strip()}}}")
    if isinstance(current, tuple):
        if not (isinstance(value, (list, tuple)) and len(value) == len(current) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            raise TypeError(f"{dotted} must be a list of {len(current)} numbers (e.g. "
                            f"{list(current)}), got {value!r}")
        value = tuple(float(v) for v in value)
    if isinstance(current, bool) and not isinstance(value, bool):
        raise TypeError(f"{dotted} must be true/false, got {value!r}")
    if isinstance(current, (int, float)) and not isinstance(current, bool) \
            and isinstance(value, str):
        try:  # YAML reads 1e-4 and 1e4 (no dot) as strings
            number = float(value)
            value = number if isinstance(current, float) or not number.is_integer() \
                else int(number)
        except ValueError:
            raise TypeError(f"{dotted} must be a number, got {value!r}") from None
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(current, (int, float)) and not isinstance(current, bool) and (
            isinstance(value, bool) or not isinstance(value, type(current))):
        kind = "an integer" if isinstance(current, int) else "a number"
        raise TypeError(f"{dotted} must be {kind}, got {value!r}")
    setattr(obj, key, value)


def apply_dict(cfg: TrainConfig, d: dict, prefix: str = "",
               at: Callable[[str], str] | None = None) -> TrainConfig:
    for k, v in d.items():
        _set(cfg, f"{prefix}{k}", v, at=at)
    return cfg


def _key_lines(text: str, twice: list | None = None) -> dict[str, int]:
    """The 1-based line of each dotted key of a YAML mapping (`optim.lr`: 17); a key written
    twice in one mapping is appended to `twice` as (key, first line, second line)."""
    lines: dict[str, int] = {}

    def walk(node: Any, prefix: str, merged: bool = False, inside: tuple = ()) -> None:
        if not isinstance(node, yaml.MappingNode) or id(node) in inside:   # `&a {x: *a}`
            return
        inside = (*inside, id(node))
        merges: list = []
        for k, v in node.value:
            if k.tag == "tag:yaml.org,2002:merge":   # `<<: *x` or `<<: [*x, *y]`
                merges += v.value if isinstance(v, yaml.SequenceNode) else [v]
                continue
            name, line = f"{prefix}{k.value}", k.start_mark.line + 1
            if name in lines and twice is not None and not merged:
                twice.append((name, lines[name], line))
            lines.setdefault(name, line)
            walk(v, name + ".", merged, inside)
        for m in merges:   # after the mapping's own keys, which win over merged ones
            walk(m, prefix, True, inside)

    try:
        walk(yaml.compose(text), "")
    except yaml.YAMLError:
        pass
    return lines


def _file_place(path: Path, lines: dict[str, int]) -> Callable[[str], str]:
    return lambda key: f"{path}, line {lines[key]}" if key in lines else ""


def setting_origin(path: str | None, overrides: list[str] | None, key: str) -> str:
    """Where `key` got its value: "by the override K=V" (the last one wins), "at FILE, line N",
    "in the settings CKPT records" (a checkpoint given as the config), or "" where it is a
    default."""
    def touches(ov: str) -> bool:   # optim={lr: -1} sets optim.lr, model.args.x=1 model.args
        k = ov.split("=", 1)[0].strip().replace("-", "_")
        return k == key or key.startswith(k + ".") or k.startswith(key + ".")

    for ov in reversed(overrides or []):
        if touches(ov):
            return f"by the override {ov}"
    for p in _config_chain(path) if path else []:
        d, text = _read_file(p)
        if is_checkpoint(p):
            # No lines to name, but its value is the run's, not a default: train-teacher, told
            # model.arch was nobody's, trained a student's run as a Restormer.
            if _holds(d, key):
                return f"in the settings {p} records"
            continue
        line = _key_lines(text).get(key)
        if line:
            return f"at {p}, line {line}"
    return ""


def _holds(d: dict, key: str) -> bool:
    """Whether the nested mapping `d` has the dotted `key` (model.arch)."""
    for part in key.split("."):
        if not isinstance(d, dict) or part not in d:
            return False
        d = d[part]
    return True


def _project_config_hint(p: Path) -> str:
    """Where the project's own config of that name is, for `--config configs/X.yaml` (as the
    README writes it) given from another folder than the checkout, or the config of the
    nearest name beside it: both said only "not found"."""
    project = Path(__file__).resolve().parents[1] / "configs"
    if not p.is_absolute() and p.parts[:1] == ("configs",):
        there = project / Path(*p.parts[1:])
        if there.is_file():
            return (f" (from {Path.cwd()}; the project's is {there}: give that path, or run "
                    f"from {project.parent})")
    # A misspelt name (distill-fsat.yaml) beside the real ones.
    folder = p.parent if p.parent.is_dir() else None
    names = sorted(f.name for f in folder.glob("*.yaml")) if folder else []
    close = difflib.get_close_matches(p.name, names, n=1)
    return f"; did you mean {p.parent / close[0]}?" if close else ""


def load_config(path: str | None = None, overrides: list[str] | None = None,
                base: TrainConfig | None = None) -> TrainConfig:
    """Defaults <- YAML file <- `key=value` overrides (e.g. optim.lr=3e-4 data.crop=128)."""
    cfg = base or TrainConfig()
    if path:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"config file not found: {p}{_project_config_hint(p)}")
        d = _apply_file(cfg, p, ())
    for ov in overrides or []:
        if "=" not in ov:
            raise ValueError(f"override {ov!r} must look like key=value (e.g. optim.lr=3e-4)")
        k, v = ov.split("=", 1)
        if k.strip() == "base":
            raise ValueError(f"base= is not an override: a config to start from is --config "
                             f"{v.strip()} (or base: in a config file)")
        try:
            value = _override_value(cfg, k.strip(), v)
        except yaml.YAMLError as e:
            raise ValueError(f"override {ov!r}: the value is not valid YAML "
                             f"({_yaml_problem(e)}); quote it, e.g. '{k}=\"...\"'") from None
        try:
            _set(cfg, k.strip(), value)
        except TypeError as e:   # where it was set, as a range error or a file's line says
            raise TypeError(f"{e} (set by the override {ov})") from None
    if path and "out" in d and not any(ov.split("=", 1)[0].strip() == "out"
                                       for ov in overrides or []):
        _refuse_a_moved_runs_out(Path(path), cfg.out)
    return cfg


def _checkpoint_head(head: bytes) -> bool:
    """Whether a file's first bytes are a torch checkpoint's: torch.save's zip, or the pickle
    older torch versions wrote (0x80), as distill.checkpoint reads them. No YAML starts so."""
    return head[:4] == b"PK\x03\x04" or head[:1] == b"\x80"


def _read_file(p: Path) -> tuple[dict, str]:
    """A config file's mapping and its text."""
    if p.is_dir():
        raise ValueError(f"--config {p} is a folder; give a YAML file (e.g. "
                         "configs/distill-fast.yaml)")
    try:
        text = p.read_text(encoding="utf-8")
        d = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{p} is not valid YAML: {_yaml_problem(e)}") from None
    except UnicodeDecodeError as e:
        if _checkpoint_head(e.object[:4]):   # a checkpoint: its recorded settings
            return _checkpoint_settings(p), ""
        if b"\0" in e.object[:8192]:   # an image given as --config
            raise ValueError(f"{p} is not a text file; give a YAML config or a training "
                             "checkpoint (best.pt, last.pt)") from None
        line = e.object.count(b"\n", 0, e.start) + 1
        raise ValueError(f"{p} is not UTF-8 (byte 0x{e.object[e.start]:02x} on line {line}, "
                         "from another code page such as Windows' cp1252); save it as "
                         "UTF-8") from None
    except OSError as e:   # no read permission, a file on a failing disk or share
        raise ValueError(f"{p} cannot be read: {e.strerror or e}") from None
    if not isinstance(d, dict):
        raise ValueError(f"{p}: a config file must hold a mapping")
    return d, text


def _head(p: Path) -> bytes:
    """A file's first 4 bytes (b"" where it cannot be read)."""
    try:
        with open(p, "rb") as f:
            return f.read(4)
    except OSError:
        return b""


def is_checkpoint(p: Path) -> bool:
    """Whether `p` is a torch checkpoint, not a YAML file."""
    return _checkpoint_head(_head(p))


def _checkpoint_settings(p: Path) -> dict:
    """The training settings a checkpoint records (best.pt, last.pt, a shipped model), to rerun
    its run when its config.yaml is not at hand. Its text is "": it has no lines to name."""
    from .checkpoint import CheckpointError, read_checkpoint   # torch: only for a checkpoint

    try:
        d = read_checkpoint(p, mmap=True).get("config")   # its settings, not its tensors
    except CheckpointError as e:
        raise ValueError(f"--config {p}: {e}") from None
    if not isinstance(d, dict) or not d:
        raise ValueError(f"--config {p} is a checkpoint that records no training settings; "
                         "give a YAML config")
    return d


def _base_of(p: Path, d: dict, lines: dict[str, int]) -> Path | None:
    """The config `base:` names (relative to the file naming it), where it names one."""
    if "base" not in d:
        return None
    base, at = d["base"], f"{p}, line {lines.get('base', 1)}"
    if not isinstance(base, str) or not base.strip():
        raise ValueError(f"{at}: base must be the path of a config file to start from (e.g. "
                         f"base: distill-fast.yaml), got {base!r}")
    there = Path(base).expanduser()
    return there if there.is_absolute() else p.parent / there


def _apply_file(cfg: TrainConfig, p: Path, seen: tuple[Path, ...]) -> dict:
    """Apply config file `p` to `cfg`, its `base:` first (a config that holds only what it
    changes, MMEngine's _base_ and Ultralytics' cfg= in one key); `p`'s own mapping."""
    d, text = _read_file(p)
    twice: list = []
    lines = _key_lines(text, twice)
    if twice:   # YAML keeps the last without a word: an edited copy's new line or its old one
        key, first, second = twice[0]
        raise ValueError(f"{p}, line {second}: {key} is set twice (lines {first} and "
                         f"{second}); keep one")
    there = _base_of(p, d, lines)
    if there is not None:
        at = f"{p}, line {lines.get('base', 1)}: base: {d['base']}"
        seen = (*seen, p.resolve())
        if there.resolve() in seen:
            raise ValueError(f"{at} leads back to {there}: a loop of bases")
        if there.is_dir():
            raise ValueError(f"{at}: {there} is a folder; give a YAML file")
        if not there.is_file():
            raise FileNotFoundError(f"{at}: {there} not found" + (
                " (a relative base is read from the folder of the config naming it)"
                if not Path(d["base"]).is_absolute() else ""))
        _apply_file(cfg, there, seen)
    apply_dict(cfg, {k: _home_of_strings(v) for k, v in d.items() if k != "base"},
               at=_file_place(p, lines))
    return d


def _home_of_strings(value: Any, inside: tuple[int, ...] = ()) -> Any:
    """`value` with a leading ~ of each string (in lists and mappings too) the home folder, as
    an override's (`out=~/runs`): YAML leaves it as written, and `out: ~/runs` made a folder
    named ~ in the working directory. A YAML alias of its own mapping (`a: &x {b: *x}`) is
    left as it is, for the settings' check to name."""
    if isinstance(value, str):
        return home_of(value)
    if not isinstance(value, (dict, list)) or id(value) in inside:
        return value
    inside = (*inside, id(value))
    if isinstance(value, dict):
        return {k: _home_of_strings(v, inside) for k, v in value.items()}
    return [_home_of_strings(v, inside) for v in value]


def _config_chain(path: str | Path) -> list[Path]:
    """A config file and the bases it starts from, itself first; as far as they can be read."""
    chain: list[Path] = []
    p: Path | None = Path(path)
    while p is not None and p.resolve() not in [c.resolve() for c in chain]:
        try:
            d, text = _read_file(p)
            chain.append(p)
            p = _base_of(p, d, _key_lines(text))
        except (OSError, ValueError):
            break
    return chain


# What marks a folder as a training run's (distill.trainer.RUN_ID_NAME; last.pt for runs of
# versions before it): not imported, so that reading a config never loads torch.
_RUN_MARKS = (".run-id", "last.pt")


def _refuse_a_moved_runs_out(config: Path, out: str) -> None:
    """A run folder's own config.yaml records its `out` as it was given, absolute where it was:
    on another machine, or after the folder was moved, `--config RUN/config.yaml` made the
    missing folder there and trained a new run from step 0, saying only where it had; in a
    copy of the folder, it trained the original. Refused, with the `out=` of each."""
    here = config.resolve().parent
    config = Path(os.path.abspath(config))   # "the run in ." named no folder; links kept
    there = Path(out).expanduser()
    if is_checkpoint(config):
        # Its run's out, wherever it was handed: models/student-fast.pt's runs/fast-crop256
        # trained in a folder of the user's that has that name. Beside its run, as
        # config.yaml is, it goes on with that run or is refused as moved or copied below.
        if there.resolve() == here:
            return
        if not _is_run(here):
            raise ValueError(f"{config} is a checkpoint outside the run folder it records, "
                             f"out: {out}: add out=FOLDER for the run again (e.g. "
                             f"{_word('out', f'{out}-again')})")
    # The trainer's names only: a config of the user's own kept in a run's folder (a fine-tune
    # beside the run it starts from) names another out on purpose.
    elif not re.fullmatch(r"config(-step\d+)?\.yaml", config.resolve().name) or not _is_run(
            here):
        return
    if there.resolve() == here:
        return
    beside, theirs = _word("out", config.parent), _word("out", out)
    said = f"{config} holds the settings of the run in {config.parent}, but its out: {out}"
    run_there = _is_run(there)
    if run_there:
        # A copy (cp -r runs/a runs/a-try): its config went on training, and changing, the run
        # it was copied from.
        raise ValueError(f"{said} is another run's folder (was this one copied from it?): add "
                         f"{beside} to go on with the run beside it, or {theirs} to go on with "
                         "that one")
    state = ("cannot be read" if run_there is None else "holds no run" if there.is_dir()
             else "does not exist")
    start = _started_in(here, there)
    if start is not None:
        # Not moved: run from another folder than the one a relative out was given in.
        raise ValueError(f"{said} is read from the current folder, {Path.cwd()}, where it "
                         f"{state}: run the command from {start}, where the run was started "
                         "(the config's other relative paths, such as data.labels, are read "
                         f"from there too), or add {beside} to go on with the run beside it "
                         "from here")
    raise ValueError(f"{said} {state} here (was the run moved or copied from there?): add "
                     f"{beside} to go on with the run beside it, or {theirs} to start a new run "
                     "there")


def run_folder_of(config) -> Path | None:
    """The run folder (resolved) whose own config.yaml (or config-stepN.yaml), or checkpoint
    given as the config, `config` is; None for any other config file."""
    if not config:
        return None
    config = Path(config)
    name = config.resolve().name
    if not re.fullmatch(r"config(-step\d+)?\.yaml", name) and not name.endswith(".pt"):
        return None
    here = config.resolve().parent
    return here if _is_run(here) else None


def _is_run(folder: Path) -> bool | None:
    """Whether `folder` holds a training run; None where it cannot be looked into (another
    user's folder: the error, not the refusal, ended the command)."""
    try:
        return any((folder / m).exists() for m in _RUN_MARKS)
    except OSError:
        return None


def _word(key: str, value) -> str:
    """key=value as one word of a command line (a path with a space in it is quoted)."""
    from runtime.console import shell_quote
    return shell_quote(f"{key}={value}")


def _started_in(here: Path, out: Path) -> Path | None:
    """The folder a relative `out` leads from to the run folder `here` (resolved), where the
    run was started; None for an absolute out, or one that leads there from no folder."""
    if out.is_absolute():
        return None
    parts = Path(os.path.normpath(out)).parts
    if ".." in parts or len(parts) >= len(here.parts) or (
            parts and here.parts[-len(parts):] != parts):
        return None
    return here.parents[len(parts) - 1] if parts else here


def _override_value(cfg: TrainConfig, key: str, text: str) -> Any:
    """The value of the override key=text: YAML, but a string key's (a path, a name) is text as
    it is, in double quotes or not, for Windows paths: YAML read data.train="C:\\new" as a
    newline and "C:\\Users" as an error, and data.val=D:\\shots #2 as D:\\shots. Null, a
    single-quoted string and a mapping or list (refused by _set, saying so) are YAML's."""
    current: Any = cfg
    for part in key.split("."):
        if not dataclasses.is_dataclass(current) or not hasattr(current, part):
            return yaml.safe_load(text)
        current = getattr(current, part)
    raw = text.strip()
    if not isinstance(current, str) or raw in ("null", "Null", "NULL", "~") or \
            raw[:1] in ("{", "["):
        return yaml.safe_load(text)
    if raw[:1] == "'":
        value = yaml.safe_load(text)
        return home_of(value) if isinstance(value, str) else value
    # A leading ~ is the home folder: bash leaves it alone after `data.labels=`.
    return home_of(raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw)


def _yaml_problem(e: Exception) -> str:
    mark = getattr(e, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"{getattr(e, 'problem', None) or e}{where}"


# (key, lowest, highest, what the key means at its limit); None: no bound. One table, so the
# trainer checks a config the same way whether it came from YAML, overrides or the API.
RANGES = (
    ("optim.steps", 1, None, ""), ("optim.warmup_steps", 0, None, ""),
    ("optim.lr", 0, None, ""), ("optim.weight_decay", 0, None, ""),
    ("optim.grad_clip", 0, None, " (0: no clipping)"), ("optim.ema_decay", 0, 1, ""),
    ("optim.min_lr_ratio", 0, 1, ""),
    ("data.crop", 16, None, " (the SSIM loss's window and the students' strides need room)"),
    ("data.batch_size", 1, None, ""), ("data.workers", 0, None, " (0: load in this process)"),
    ("data.gt_train_share", 0, 1, ""), ("data.brightness", 0, 1, ""),
    ("data.cache_size", 0, None, ""), ("data.val_max_images", 1, None, ""),
    ("data.val_max_side", 16, None, ""),
    ("val_every", 1, None, ""), ("val_pictures", 0, None, " (0: no pictures)"),
    ("ckpt_every", 1, None, ""), ("log_every", 1, None, ""),
    ("snapshot_every", 0, None, " (0: no snapshots)"),
    ("keep_snapshots", 0, None, " (0: keep them all)"),
    ("max_minutes", 0, None, " (0: no limit)"), ("stop_after", 0, None, " (0: no limit)"),
    ("seed", 0, None, ""),
    ("loss.pixel", 0, None, ""), ("loss.ssim", 0, None, ""), ("loss.gt", 0, None, ""),
    ("loss.freq", 0, None, ""), ("loss.gt_ssim", 0, None, ""),
)


def loss_weights(loss: LossConfig | dict) -> LossConfig:
    """`cfg.loss` as a LossConfig. A mapping (`cfg.loss = {"gt": 0.5}` after the config was
    made, which __post_init__ does not see) is read as a config file's section is: defaults
    for what it leaves out, a KeyError naming an unknown key (`loss.pixle`; did you mean
    loss.pixel?), a TypeError for a value of the wrong type."""
    if isinstance(loss, LossConfig):
        return loss
    holder = TrainConfig()
    _set(holder, "loss", loss)
    return holder.loss


def check_config(cfg: TrainConfig) -> None:
    """ValueError naming the key when a value is out of its range: a negative grad_clip or loss
    weight trains the wrong way, an interval of 0 crashed mid-run, steps <= 0 said 'done'.
    A `loss` given as a mapping is read as loss_weights reads it."""
    import math

    w = loss_weights(cfg.loss)
    if w is not cfg.loss:   # the ranges below are read from its LossConfig
        cfg = dataclasses.replace(cfg, loss=w)
    if not cfg.optim.lr > 0 or not cfg.optim.ema_decay < 1:   # (NaN fails both)
        key, v = (("optim.lr", cfg.optim.lr) if not cfg.optim.lr > 0
                  else ("optim.ema_decay", cfg.optim.ema_decay))
        raise ConfigValueError(key, f"{key} must be {'> 0' if key == 'optim.lr' else 'below 1'}, "
                               f"got {v!r}")
    for key, lo, hi, note in RANGES:
        obj = cfg
        for part in key.split("."):
            obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
        v = obj
        if v is None and key in ("max_minutes", "stop_after"):   # (the API's "off")
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{key} must be a number, got {v!r}")
        if not math.isfinite(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
            if hi is None:
                want = f">= {lo:g}" if lo else ">= 0"
            else:
                want = f"in [{lo:g}, {hi:g}]"
            raise ConfigValueError(key, f"{key} must be {want}{note}, got {v!r}")
    b1, b2 = cfg.optim.betas
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise ConfigValueError("optim.betas", "optim.betas must be two numbers in [0, 1), got "
                               f"{list(cfg.optim.betas)}")
    if not any((w.pixel, w.ssim, w.gt, w.freq, w.gt_ssim)):
        raise ValueError("every loss weight is 0: nothing to train on (set loss.pixel, e.g. 1)")
    if not str(cfg.resume).strip():
        raise ValueError("resume= is empty: auto (go on from out/last.pt when there), never "
                         "(start over), or a checkpoint path")
    if cfg.data.gopro_blur not in ("blur", "blur_gamma"):
        raise ConfigValueError("data.gopro_blur", "data.gopro_blur must be blur or blur_gamma "
                               "(a GoPro sequence's blurred folder), got "
                               f"{cfg.data.gopro_blur!r}")
    if cfg.task not in ("student", "teacher"):
        raise ConfigValueError("task", f"task must be student or teacher, got {cfg.task!r}")
    if cfg.keep_snapshots and not cfg.snapshot_every:
        # A warning, not a refusal: a config file's keep_snapshots with snapshots turned off
        # for one run (snapshot_every=0) is a normal thing to do.
        from runtime.warn import warn
        warn(f"keep_snapshots={cfg.keep_snapshots} does nothing without snapshot_every "
             "(0: no snapshots stepN.pt are taken); set snapshot_every=N to keep the newest "
             f"{cfg.keep_snapshots} of a snapshot every N steps", stacklevel=2)
    _refuse_out_into_data(cfg)


def _refuse_out_into_data(cfg: TrainConfig) -> None:
    """out= naming a data folder (the label cache, most likely) wrote checkpoints, logs and a
    config into it, beside the labels the next run reads."""
    import os

    out = os.path.abspath(str(cfg.out))
    for key in ("labels", "val_labels", "train", "val", "gt_train"):
        value = str(getattr(cfg.data, key) or "")
        if value and value != "embedded" and os.path.abspath(value) == out:
            raise ValueError(f"out={cfg.out} is data.{key}'s folder: the run would write its "
                             "checkpoints and logs among its data; give out= a folder of its "
                             "own (e.g. runs/NAME)")


def from_dict(d: dict) -> TrainConfig:
    return apply_dict(TrainConfig(), d)


def as_overrides(cfg: TrainConfig) -> list[str]:
    """`key=value` overrides that load_config turns back into `cfg` (its values that differ
    from the defaults, YAML-quoted as a command line reads them): the command-line form of a
    config built in Python. `task` is left out: the command (`distill`, `train`) sets it."""
    def leaves(d: dict, prefix: str = ""):
        for k, v in d.items():
            if isinstance(v, dict) and k != "args":   # model.args is one value, not a section
                yield from leaves(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    end = "\n...\n"
    base = TrainConfig()
    defaults = dict(leaves(base.to_dict()))
    out = []
    for key, value in leaves(cfg.to_dict()):
        if key == "task" or value is None or value == defaults.get(key):
            continue   # None: the API's "off" (max_minutes, stop_after) or an empty path
        if isinstance(value, Path):
            value = str(value)
        # A path key's value as written where load_config reads it back so: YAML's dump wrote
        # a non-ASCII path as "/home/jos\xE9", which that key takes as written, backslash too.
        if isinstance(value, str) and _reads_back(base, key, value):
            out.append(f"{key}={value}")
            continue
        text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False,
                              width=float("inf"), allow_unicode=True)
        # a plain scalar's dump ends in YAML's document end marker, "...", on a line of its own
        out.append(f"{key}={text.removesuffix(end).strip()}")
    return out


def _reads_back(cfg: TrainConfig, key: str, text: str) -> bool:
    """Whether the override key=text sets `key` to `text` itself."""
    try:
        return _override_value(cfg, key, text) == text
    except yaml.YAMLError:
        return False


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    # As checkpoints are written: a temp name of its own (config.tmp was every writer's),
    # synced before the rename and the folder after.
    # width: a long path stays on its line (folded at a space it reads back the same, but
    # neither grep nor a reader finds it).
    atomic_write_bytes(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True,
                                            width=2**16).encode())


# Settings that steer one invocation, not what is trained: changing them on resume is normal.
RUN_CONTROL = {"out", "resume", "max_minutes", "stop_after", "device", "compile", "log_every",
                "val_every", "val_pictures", "tensorboard", "ckpt_every", "snapshot_every",
                "keep_snapshots", "data.workers"}


# Settings naming where files are: spelt another way (./val, an absolute path), the same files.
WHERE = {"data.train", "data.val", "data.labels", "data.val_labels", "data.gt_train", "init",
         "teacher"}


def config_changes(saved: dict, now: dict, prefix: str = "") -> list[str]:
    """'key: old -> new' for every training setting that differs between two config dicts; a
    data path of WHERE counts as one where both resolve to the same file here (a sweep's rerun
    with data.labels=/abs/train of a run given data.labels=train was said to have changed it;
    init= and teacher= may be names of models, not files)."""
    out = []
    for key in sorted(saved):   # a key the saved config lacks is newer code, not a change
        name = prefix + key
        a, b = saved[key], now.get(key)
        if name in RUN_CONTROL or a == b:
            continue
        if (name in WHERE and name.startswith("data.") and isinstance(a, str)
                and isinstance(b, str)
                and os.path.realpath(a) == os.path.realpath(b)):
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_changes(a, b, name + ".")
        else:
            out.append(f"{name}: {a!r} -> {b!r}")
    return out
