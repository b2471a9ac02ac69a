"""Subcommands of distill.data: `sharpen labels`. Importing this module must not import torch
(`sharpen run` on an edge device builds the whole parser); handlers import what they need."""
from __future__ import annotations

import argparse

from runtime.host import threads_help

from ..teacher_tiles import add_teacher_arguments

LABELS_HELP = "run the teacher over a dataset at full resolution and cache its outputs"
LABELS_DESCRIPTION = """\
Run the teacher (Restormer, Gaussian-blended tiled inference) over every blurred image of a
data source at its full resolution and cache the results as 16-bit PNGs plus a manifest:

  OUT/labels/<name>.png   OUT/manifest.json   (OUT/frames/<name>.png for video frames)
  OUT/run.json            the last run: its selection (--data, --split, --limit, --hold-out),
                          which is what training on OUT uses, and whether it finished

Labels of earlier runs with another selection stay in OUT but do not train; data.labels
takes one cache, so to train on two sources, label one --data holding both (e.g. one folder).
Re-running skips what is up to date and recomputes what changed (modified input, new teacher
weights or architecture, other tile settings). Interrupting loses at most the image in flight.

SPEC is a path whose layout is detected, or kind:path with kind one of
  gopro     GOPRO_Large/{train,test}/<sequence>/{blur,blur_gamma,sharp}/*.png
  paired    input/ + target/ or blur/ + sharp/ (optionally under train/ val/ test/), paired
            by file name (blur/a.jpg with sharp/a.png where that is the only a.*)
  reds      REDS: {train,val}/{train,val}_blur/<sequence>/*.png beside {train,val}_sharp/
  hide      HIDE: train/ and test/{test-close-ups,test-long-shot}/, ground truth in GT/
  list      a list of 'GT_PATH BLUR_PATH' lines (RealBlur_J_test_list.txt), or its folder
  bsd       BSD: {train,valid,test}/<clip>/Blur/RGB/*.png beside <clip>/Sharp/RGB/
  folder    footage without ground truth: blurred images and/or video clips (searched
            recursively; a clip's frames are named <its path in the folder>_<frame:06d>)
  video     a video file; every frame is labelled
  embedded  the embedded default dataset (the default when --data is omitted)

A validation set from the same footage: --hold-out FRACTION --val-out DIR labels both caches in
one command, --out without the held-out images and --val-out with them only (train with
data.labels=OUT data.val_labels=VAL_OUT). What is held out depends only on the source:
  - its own val split, where it has one (a paired root with split folders, a corpus);
    a source with a test split but no val split (GoPro, a corpus of a few photos) holds
    out of its train split by the rules below, so that the test split `sharpen evaluate`
    scores by default stays unseen (with too few training images, its test split, and a
    warning);
  - else whole clips or subfolders, where it has several (those whose images add up nearest
    FRACTION, never all; a warning where that is still far from it): frames of one clip are
    near-duplicates;
  - else its last FRACTION of images, with, for a video's frames or a folder of frames (every
    name ends in a number; in the order of those numbers), as many frames before them used
    by neither.
Re-running with a hold-out over a cache labelled in full moves the held-out images' labels
from it to --val-out (the teacher does not run again for labels of the same input, teacher
and tiling).
The hold-out is recorded in each cache's run.json.

Several GPUs (each rank labels its share; one manifest is merged at the end):
  torchrun --nproc_per_node N -m distill.data.labels --data ... --out ...
"""


def add_labels_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="SPEC", default="embedded",
                   help="data source (see above; default: embedded)")
    p.add_argument("--out", "--output", metavar="DIR", required=True, help="label cache folder")
    add_teacher_arguments(p)
    p.add_argument("--split", default=None, metavar="NAME",
                   help="split of GoPro or HIDE (train, test), REDS (train, val), RealBlur's "
                        "lists, BSD or a paired root with split folders (train, val, test) "
                        "(default: train)")
    add_gopro_blur_argument(p)
    p.add_argument("--device", default="auto",
                   help="auto, cpu, cuda or cuda:N (default: auto; under torchrun each rank "
                        "uses cuda:LOCAL_RANK)")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="label N images spread evenly over the source (with --hold-out: N for "
                        "each cache)")
    p.add_argument("--hold-out", type=float, default=None, metavar="FRACTION",
                   help="hold out this share of the source (0 < FRACTION < 1, e.g. 0.2) for "
                        "validation, labelled into --val-out (see above)")
    p.add_argument("--val-out", metavar="DIR", default=None,
                   help="validation cache folder for --hold-out (not --out, nor inside it)")
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help=threads_help("PyTorch, which runs the teacher"))
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _labels_handler(args: argparse.Namespace) -> int:
    from .labels_command import run_from_args
    return run_from_args(args)


def add_commands(sub) -> None:
    p = sub.add_parser("labels", help=LABELS_HELP, description=LABELS_DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_labels_arguments(p)
    p.set_defaults(func=_labels_handler)


def add_gopro_blur_argument(p: argparse.ArgumentParser) -> None:
    """--gopro-blur, as `labels` and `evaluate` take it (training's data.gopro_blur has the
    same values): which blurred folder of a GoPro root's sequences is the input."""
    p.add_argument("--gopro-blur", choices=("blur", "blur_gamma"), default="blur",
                   help="GoPro blurred images to use (default: blur)")
