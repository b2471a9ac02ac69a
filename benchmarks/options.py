"""The benchmark options both front ends share, `sharpen bench` and `pytest benchmarks/`: one
schema, the same names (the pytest plugin also accepts its older `--bench-*` spellings)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from distill.teacher_tiles import (CONFIG_HELP as TEACHER_CONFIG_HELP,
                                   WEIGHTS_HELP as TEACHER_WEIGHTS_HELP)
from optimize.commands import CALIB_FLAGS, CALIB_OPTION, SEED_FLAGS, SEED_OPTION
from runtime.host import threads_help


@dataclass(frozen=True)
class Opt:
    flags: tuple[str, ...]       # the name first, then accepted aliases
    dest: str
    help: str
    type: Optional[Callable] = None
    default: Any = None
    action: Optional[str] = None
    metavar: Optional[str] = None
    nargs: Optional[str] = None
    pytest_aliases: tuple[str, ...] = ()


# `sharpen bench --cpu-target-fps`: a CPU student's target at 1080p (README "Where the issues'
# targets stand": `fast` >= 10 fps in TFLite INT8). --target-fps (default 30, the Jetson's real
# time) alone judged a CPU backend on a GPU's budget: "nothing to ship" where README ships `fast`.
DEFAULT_CPU_TARGET_FPS = 10.0


SCHEMA: tuple[Opt, ...] = (
    Opt(("--full",), "full", "all sizes (1920x1080, 1280x720, 640x360), more rounds, every "
        "held-out image (default: quick mode)", action="store_true", default=False,
        pytest_aliases=("--bench-full",)),
    Opt(("--target-fps",), "target_fps", "frame rate a result on a GPU (TensorRT, CUDA) must "
        "reach, judged on its p90 time per frame (default 30)", type=float, default=30.0,
        metavar="FPS"),
    # Here, not in `sharpen bench` alone: `pytest benchmarks/` judged a CPU backend on
    # --target-fps, a second verdict on the model the bench's What to ship judged.
    Opt(("--cpu-target-fps",), "cpu_target_fps", "frame rate a result on a backend that runs "
        "on the CPU must reach, judged on its p90 time per frame as What to ship judges it "
        "(default 10: a CPU student's target at 1080p); on a GPU (TensorRT, CUDA) it is "
        "--target-fps", type=float, default=DEFAULT_CPU_TARGET_FPS, metavar="FPS"),
    Opt(("--weights", "--students"), "students", "students: shipped names (seed, fast -> "
        "models/student-NAME.pt) or checkpoint paths, space or comma separated (default: seed "
        "fast)", metavar="CKPT", nargs="+", action="extend"),
    Opt(("--model",), "models", "exported models to measure as they are (.onnx, .tflite, "
        ".engine: e.g. an engine built on the device, an INT8 model calibrated on your frames), "
        "one row each; a folder gives its model files; without --weights, only these (no "
        "default students)", metavar="FILE",
        nargs="+", action="extend", pytest_aliases=("--bench-model",)),
    Opt(("--teacher-weights",), "teacher_weights", TEACHER_WEIGHTS_HELP, metavar="PATH"),
    Opt(("--teacher-config",), "teacher_config", TEACHER_CONFIG_HELP, metavar="NAME"),
    Opt(("--data",), "data", "held-out set: a GoPro, HIDE or BSD root, a RealBlur pair list or a "
        "paired folder (its test split); "
        "default: the embedded dataset's fixed test split", metavar="SPEC"),
    Opt(("--limit",), "limit", "evaluate N images spread over each set: held-out, --real-pairs "
        "and --real-nogt (default: 4, 20 and 4 in quick mode; all, all and 8 with --full)",
        type=int, metavar="N", pytest_aliases=("--bench-limit",)),
    Opt(("--sizes",), "sizes", "frame sizes to time, e.g. 1920x1080,640x360 (default by mode); the "
        "streaming row runs at the smallest (the largest with --full)",
        metavar="WxH,...", pytest_aliases=("--bench-sizes",)),
    Opt(("--formats", "--format"), "formats", "export formats to build and measure (default: "
        "all this machine can build; see `sharpen export --help`)", metavar="LIST",
        pytest_aliases=("--bench-formats",)),
    Opt(("--float-layers",), "float_layers", "INT8 formats: layers of each student kept in "
        "float (and all after), as `sharpen export --float-layers` (default none); 'auto' "
        "here aims at the export's SSIM-to-FP32 gate only (its parity images have no ground "
        "truth): for an SSIM budget, choose with `sharpen export --parity-gt DIR "
        "--max-ssim-drop D --float-layers auto` and give its layers by name",
        metavar="LIST", pytest_aliases=("--bench-float-layers",)),
    Opt(("--cache",), "cache", "cache of artifacts and teacher outputs (default "
        "$SHARPEN_BENCH_CACHE or ~/.cache/sharpen/bench)", metavar="DIR",
        pytest_aliases=("--bench-cache",)),
    # As `sharpen export --calib` (one definition): the same images make the same artifact.
    Opt(CALIB_FLAGS, "calib", CALIB_OPTION["help"] + "; as `sharpen export --calib`, a fifth "
        "is held out for the export's parity gate (none from one image or .npy crops: the "
        "gate then runs on the sample photos; artifacts cached per calibration)",
        metavar=CALIB_OPTION["metavar"], nargs=CALIB_OPTION["nargs"],
        action=CALIB_OPTION["action"],
        pytest_aliases=("--bench-calib",)),
    Opt(("--calib-count",), "calib_count", "INT8 calibration crops per student (default 32)",
        type=int, default=32, metavar="N", pytest_aliases=("--bench-calib-count",)),
    # As `sharpen export --seed` (one definition): another seed, other crops, other artifacts.
    Opt(SEED_FLAGS, "seed", SEED_OPTION["help"], type=SEED_OPTION["type"],
        default=SEED_OPTION["default"], pytest_aliases=("--bench-seed",)),
    Opt(("--stream-frames",), "stream_frames", "frames of the generated video for the "
        "streaming pipeline (default 24 quick, 30 full; 0 skips it)", type=int, metavar="N"),
    Opt(("--tile",), "tile", "time the students (and, in sharpen bench, measure their peak "
        "memory) in Gaussian-blended tiles of this size, as `sharpen run --tile N` runs them "
        "(0: whole frames); What to ship's run line then carries it", type=int, default=0,
        metavar="N"),
    Opt(("--threads",), "threads", threads_help("ONNX Runtime / LiteRT"), type=int, default=0,
        metavar="N", pytest_aliases=("--bench-threads",)),
)


# --real-pairs and --real-nogt, `sharpen bench`'s and `pytest benchmarks/`'s (which picks no
# clip frames: --stride and --frames are the bench's).
REAL_PAIRS_HELP = ("real blur/sharp pairs to report PSNR/SSIM gains on (a paired folder such as "
                   "reds-mini's blur/ + sharp/, a GoPro, HIDE or BSD root, REDS' val/ folder, "
                   "or a RealBlur pair list)")
REAL_NOGT_HELP = ("real blurred images without ground truth: image files, videos and folders of "
                  "them (several may be given; the real-blur limit is spread over all of "
                  "them{clips}): each model's PSNR to the teacher's output")


ALIGN_HELP = ("ecc, ecc-homography: score --real-pairs with each output, and the input, "
              "aligned to its ground truth first, as `sharpen evaluate --align` (RealBlur's "
              "published scores)")


def align_unused(align: str, real_pairs) -> Optional[str]:
    """The warning for an --align with nothing to align (no --real-pairs), else None: one
    wording for `sharpen bench` and `pytest benchmarks/`, as --stride's without --real-nogt."""
    if align == "none" or real_pairs:
        return None
    return (f"--align {align} has no effect without --real-pairs (the pairs it aligns to their "
            "ground truth)")


def real_blur_limits(limit: Optional[int], full: bool) -> dict:
    """Images spread over each real-blur set (None: all), by flag: --limit, else the mode's."""
    return {"--real-pairs": limit or (None if full else 20),
            "--real-nogt": limit or (8 if full else 4)}


# The quality gate, one of two options (`sharpen bench`, `sharpen demo`, `pytest benchmarks/`):
# flag, metavar, help; each front end adds its default.
DEFAULT_MIN_SSIM_RATIO = 0.95
GATE_RATIO = ("--min-ssim-ratio", "R",
              "check: student SSIM >= R x teacher SSIM against ground truth")
GATE_GAIN = ("--min-ssim-gain", "G",
             "check instead: the student's SSIM gain over the blurred input >= G x the "
             "teacher's gain (0: no better than the input, 1: the teacher's)")


def _kwargs(o: Opt) -> dict:
    kw = {"dest": o.dest, "help": o.help, "default": o.default}
    for key in ("type", "action", "metavar", "nargs"):
        if getattr(o, key) is not None:
            kw[key] = getattr(o, key)
    return kw


def add_to_argparse(p) -> None:
    for o in SCHEMA:
        p.add_argument(*o.flags, **_kwargs(o))


def add_to_pytest(group) -> None:
    for o in SCHEMA:
        group.addoption(*o.flags, *o.pytest_aliases, **_kwargs(o))
