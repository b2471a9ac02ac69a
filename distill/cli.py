"""The distill package's subcommands wired into the `sharpen` parser: teacher, models, synth,
corpus, grow, evaluate, train-teacher, distill, train (and labels, from distill.data). Each
command's handler lives in its own module (teacher_command.py, ...).

This module must import without torch (the `sharpen` parser is built on devices that only have
the runtime); every handler imports what it needs."""
from __future__ import annotations

import argparse

from runtime.console import HelpFormatter
from runtime.host import ZERO_THREADS, threads_help
from runtime.options import NO_EXIF_HELP, NO_METADATA_HELP
from .corpus_command import cmd_corpus
from .evaluate_command import cmd_evaluate
from .grow_command import cmd_grow
from .models_command import cmd_models
from .runs_command import cmd_runs
from .synth_command import cmd_synth
from .teacher_command import cmd_teacher
from .teacher_tiles import CONFIG_HELP, add_teacher_arguments
from .train_command import cmd_distill, cmd_train, cmd_train_teacher


def add_commands(sub) -> None:
    fmt = HelpFormatter

    p = sub.add_parser("teacher", formatter_class=fmt,
                       help="sharpen images with the Restormer teacher (tiled, Gaussian-blended)",
                       description="Run the Restormer teacher over images or folders at full "
                       "resolution with Gaussian-blended tiles; output names keep the input's.")
    p.add_argument("inputs", nargs="+", help="image files or folders of images")
    p.add_argument("--out", "--output", required=True, metavar="DIR",
                   help="output folder (PNG files)")
    add_teacher_arguments(p)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help=threads_help("PyTorch, which runs the teacher"))
    p.add_argument("--bits16", action="store_true", help="write 16-bit PNGs")
    p.add_argument("--no-exif", action="store_true", help=NO_EXIF_HELP)
    p.add_argument("--no-metadata", action="store_true", help=NO_METADATA_HELP)
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="skip images an earlier run into --out already wrote from the same "
                   "input with the same weights and settings (--no-resume writes every image)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_teacher)
    p.not_here = {"--quality": "the teacher writes lossless PNG only, 8-bit or --bits16: "
                               "make a JPEG of it with an image tool"}

    p = sub.add_parser("models", formatter_class=fmt, help="list student models (params, MACs)",
                       description="Table of registered students with parameter counts, "
                       "multiply-accumulates and peak activations per frame.")
    p.add_argument("--height", type=int, default=1080, help="frame height for MACs and activations")
    p.add_argument("--width", type=int, default=1920, help="frame width for MACs and activations")
    p.add_argument("--teacher", action="store_true", help="include Restormer configs")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="only these students: registered names, or checkpoints (a trained "
                   "student's own layout, e.g. one grown or with blocks=1); an exported "
                   "artifact (.onnx, .tflite, .engine) says how it was made, from the "
                   "export_report.json beside it that records its sha256; a .tflite also gives "
                   "its input and output as an app sets them (dtype, shape, scale and zero "
                   "point) and its ops, which a delegate must support")
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
                       "rest validation; a clip's frames (numbered in order, one size, "
                       "neighbours alike) go a clip at a time beside other clips or photos; "
                       "a copy (the same bytes) of a photo of another split is named and "
                       "skipped, the held-out one kept. Re-running skips pairs already "
                       "written and removes those of photos deleted, moved to another split or changed since; "
                       "--out must not be inside --photos, and an --out with pairs built from "
                       "other photos or options is refused. Photos smaller than the crop are "
                       "skipped with a warning naming the first 5 and the --crop that keeps "
                       "them (exit 0); an unreadable photo is named and "
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
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    perf = p.add_argument_group("performance")   # as `sharpen run --help` names it
    perf.add_argument("--workers", type=int, default=1, metavar="N",
                      help="processes synthesising photos in parallel (the corpus is the same)")
    perf.add_argument("--threads", type=int, default=0, metavar="N",
                      help=threads_help("OpenCV, which blurs the photos, in each --workers "
                                        "process"))
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
                       description="Run teacher and/or student checkpoints, or exported "
                       "models (these alone need no torch: a device install), over a data source. "
                       "With ground truth (paired folder, GoPro root, corpus): PSNR/SSIM of the "
                       "input and each model, and the gain. Without (real blurred frames, and "
                       "video clips, read a frame at a time: --stride, --frames): a sharpness "
                       "ratio and overshoot, and PSNR/SSIM to a reference model's output (the "
                       "teacher's, or --reference). PSNR as published tables compute it: 8-bit "
                       "RGB outputs, data range 255, no border crop, mean over images; SSIM "
                       "with scikit-image's Gaussian window sigma 1.5 "
                       "(use_sample_covariance=False), channels averaged (--ssim 3d: as "
                       "published GoPro tables' SSIMs); no alignment unless --align ecc "
                       "(RealBlur's published scores align each output first). --out writes "
                       "metrics.json (with the "
                       "convention), per_image.csv (one row per image and model, and with "
                       "ground truth one with its overshoot) and side_by_side.png (input | "
                       "models | ground truth).")
    p.add_argument("--weights", nargs="+", action="extend", default=None, metavar="CKPT",
                   help="project checkpoints (teacher or student), space or comma separated; "
                   "shipped ones by name (fast, edge, seed, teacher)")
    p.add_argument("--model", nargs="+", action="extend", default=None, metavar="FILE",
                   help="exported student artifacts (.onnx, .tflite, .engine), run by the "
                   "runtime as `sharpen run` deploys them (INT8 included)")
    p.add_argument("--reference", default=None, metavar="MODEL",
                   help="one of --weights/--model whose output stands in for ground truth on "
                   "data without it: each other model's PSNR and SSIM to that output (the FP32 "
                   "export beside its INT8 one, as the export's parity gate compares them; "
                   "default: the teacher, where one is given)")
    p.add_argument("--teacher-config", default=None, metavar="NAME", help=CONFIG_HELP)
    p.add_argument("--data", required=True, metavar="SPEC",
                   help="paired folder (blur/+sharp/, input/+target/), GoPro, REDS, HIDE or "
                   "BSD root, RealBlur pair list, corpus, or "
                   "blurred images and/or video clips without ground truth (a folder or a "
                   "clip)")
    p.add_argument("--split", default=None, metavar="NAME",
                   help="split of a source with split folders (default: test)")
    from .data.commands import add_gopro_blur_argument
    add_gopro_blur_argument(p)
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="N images spread over the set (default: all)")
    from .frame_pick import add_frame_pick_arguments
    add_frame_pick_arguments(p)
    p.add_argument("--crop", type=int, default=0, metavar="PX",
                   help="evaluate a centre crop of this side (0 = whole images)")
    p.add_argument("--out", "--output", default=None, metavar="DIR",
                   help="write metrics.json, per_image.csv and side_by_side.png here, and a "
                   "record of each image's scores as it is scored: the same command after a "
                   "kill scores only the images left")
    p.add_argument("--ssim", choices=("2d", "3d"), default="2d",
                   help="2d: SSIM per channel, averaged (BasicSR's calculate_ssim, "
                   "scikit-image); 3d: the window across the RGB channels too, as published "
                   "GoPro tables' SSIMs are (NAFNet's calculate_ssim, MATLAB's ssim() in "
                   "Restormer's script), which reads higher (default: 2d)")
    from .alignment import ALIGNS
    p.add_argument("--align", choices=ALIGNS, default="none",
                   help="ecc: register each output, and the input, to its ground truth by ECC "
                   "(a translation) and score the overlap, as RealBlur's published scores "
                   "(evaluation_RealBlur_ecc.py); ecc-homography: by the script's homography, "
                   "its numbers; each image's offset goes to per_image.csv "
                   "(default: none, the pixel grids as given)")
    p.add_argument("--figure-images", type=int, default=6, metavar="N",
                   help="rows of the side-by-side figure: with ground truth the images some "
                        "model gains least on (worst first), else the first ones, or of clips "
                        "frames spread over them (default 6)")
    p.add_argument("--figure-crop", type=int, default=192, metavar="PX",
                   help="side of each crop in the figure")
    from .teacher_tiles import TILE, TILE_HELP
    p.add_argument("--tile", type=int, default=TILE, metavar="N",
                   help=TILE_HELP)
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
                           "(configs/README.md says which is for what) and KEY=VALUE "
                           "overrides, e.g. optim.steps=2000 data.batch_size=16 out=runs/x. "
                           "Re-running the same command resumes from OUT/last.pt. Under torchrun "
                           "it trains with DDP.")
        p.add_argument("--config", default=None, metavar="FILE",
                       help="YAML config file, or a checkpoint (best.pt, last.pt): the "
                       "settings it records, to train its run again")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                       help="config overrides (dotted keys)")
        p.add_argument("--threads", type=int, default=0, metavar="N",
                       help=threads_help(
                           "PyTorch in this process; under torchrun in each process",
                           f"{ZERO_THREADS}; torchrun sets OMP_NUM_THREADS=1 for several "
                           "processes"))
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.add_argument("--print-config", action="store_true",
                       help="print the settings the run would use (the file, its base: and "
                       "the overrides; each value checked, the data not read) as YAML, as "
                       "OUT/config.yaml records them, and exit without training")
        p.set_defaults(func=func)

    p = sub.add_parser("runs", formatter_class=fmt,
                       help="compare training runs: state, best and last scores, settings "
                       "that differ, curves",
                       description="Compare training run folders (distill, train, "
                       "train-teacher out= folders), as an ablation is read: a row per run "
                       "with its state (finished, stopped, interrupted, failed, killed, "
                       "running), steps, wall time, best and last validation SSIM and PSNR "
                       "with the step of each, and the config.yaml keys that differ between "
                       "the runs. A folder holding run folders (runs/) stands for every run in "
                       "it. Runs being written are read as they are, without their lock. --out "
                       "draws their training loss and validation curves overlaid in "
                       "OUT/runs.png and writes the table's numbers to OUT/runs.csv. --same "
                       "checks whether two runs are the same run (a reproduction): state, seed, "
                       "settings, code version and software, training and validation data, "
                       "weights of each checkpoint and metrics.jsonl, a row each with both "
                       "values and the verdict; exit 0 the same, 1 they differ (or something "
                       "is not recorded), 2 bad input. Given two `sharpen export` folders, "
                       "--same checks whether they are the same release: weights, settings, "
                       "calibration digests, software and each artifact's sha256 (artifacts of "
                       "other bytes: their outputs on the export's parity images).")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run folders (out= of a training run), or folders of them; with "
                   "--same, two export folders (export_report.json) too")
    p.add_argument("--out", "--output", default=None, metavar="DIR",
                   help="write runs.png (the runs' curves overlaid) and runs.csv here; "
                   "with --same, same.json (each check and the verdict, for a program)")
    p.add_argument("--axis", default="auto", choices=("auto", "steps", "samples"),
                   help="the curves' x axis: training steps, or crops seen (samples: runs of "
                   "other batch sizes or torchrun process counts line up by data); auto "
                   "takes samples where the runs' crops a step differ")
    p.add_argument("--same", action="store_true",
                   help="whether two runs are the same run, or two export folders the same "
                   "release, check by check (exit 0 the same, 1 they differ, 2 bad input); "
                   "wall and build times are not compared")
    p.add_argument("--tolerance", type=float, default=0.0, metavar="T",
                   help="with --same: the largest absolute difference allowed in a weight, "
                   "loss, score or exported model's output pixel (0: bit for bit, as two "
                   "CPU runs of one seed, thread count and software are; GPU runs, whose "
                   "sums are not in a fixed order, may need more)")
    p.set_defaults(func=cmd_runs)

    try:
        from .data.commands import add_commands as add_data_commands
    except ImportError:
        return
    add_data_commands(sub)
