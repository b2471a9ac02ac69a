"""`sharpen corpus`: a paired train/val/test corpus from sharp photos, its summary and
exit code. Imports without torch."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runtime.console import count, shell_join
from .command_messages import refuse, out_folder_problem, out_of_range

MIN_CROP = 32   # the smallest --crop and --test-crop taken, so advice never names a smaller one


def cmd_corpus(args: argparse.Namespace) -> int:
    from .data.corpus import CorpusOptions, build_corpus
    from .data.scene_blur import PRESETS

    mix = tuple(m.strip() for m in args.mix.split(",") if m.strip())
    if not mix:
        return refuse("--mix needs at least one preset (e.g. gopro,handheld,mild)")
    from runtime.suggest import did_you_mean
    for flag, names in (("--mix", mix), ("--test-preset", (args.test_preset,))):
        for name in names:
            if name not in PRESETS:
                return refuse(f"{flag}: unknown blur preset {name!r}"
                              f"{did_you_mean(name, PRESETS)}; choose from {', '.join(PRESETS)}")
    # One flag at a time: "--copies must be >= 1 and --crop/--test-crop >= 32" did not say
    # which was wrong.
    for flag, value, lo in (("--copies", args.copies, 1), ("--crop", args.crop, MIN_CROP),
                            ("--test-crop", args.test_crop, MIN_CROP),
                            ("--workers", args.workers, 1),
                            ("--seed", args.seed, 0)):
        if problem := out_of_range(flag, value, lo):
            return refuse(problem)
    from runtime.host import check_threads
    try:
        check_threads(args.threads, "--threads")
    except ValueError as e:
        return refuse(str(e))
    if err := out_folder_problem(Path(args.out)):
        return refuse(err)
    opts = CorpusOptions(mix=mix, test_preset=args.test_preset, copies=args.copies,
                         crop=args.crop, test_crop=args.test_crop, seed=args.seed)
    try:
        summary = build_corpus(args.photos, args.out, opts, progress=not args.quiet,
                               workers=args.workers, threads=args.threads,
                               # --quiet: no bar, the notes stay
                               say=lambda msg: print(msg, file=sys.stderr))
    except (FileNotFoundError, ValueError) as e:
        return refuse(str(e))
    return _corpus_outcome(args, summary)


def _corpus_outcome(args: argparse.Namespace, summary: dict) -> int:
    """The summary line and the exit code of `sharpen corpus`. Photos smaller than the crop are
    expected (the teacher card's --crop 384 skips BSDS500's 481x321 photos): named, summed up
    in one warning, not a failure (exit 0). Unreadable photos are (exit 1, the rest still used),
    and so is a run that made no training pair."""
    splits = ("train", "val", "test")
    counts = ", ".join(f"{s} {summary[s]}" for s in splits)
    clips = summary.get("clips", 0)
    by_clip = (f"; the frames of {count(clips, 'clip')}, each clip whole in one split (its "
               "neighbouring frames are near-duplicates)") if clips else ""
    print(f"corpus written to {args.out}/{{train,val,test}}/{{input,target}}: {counts} pairs"
          f"{by_clip}")
    small, failed, photos = summary["small"], summary["failed"], summary["photos"]
    from .data.corpus import SMALL_NAMED

    keeps = ""
    if small:
        where = ", ".join(f"{s} {n}" for s, n in summary["small_in"].items() if n)
        listed = ("listed above" if len(small) <= SMALL_NAMED
                  else f"the first {SMALL_NAMED} listed above")
        it = "it" if len(small) == 1 else "them"
        # A crop the user can type: the shortest side, a multiple of 8 as val/test crops are.
        side = summary.get("small_side")
        keeps = (f"a smaller one keeps {it}" if side is None   # no side recorded: none to name
                 else f"--crop {side // 8 * 8} or less keeps {it}" if side // 8 * 8 >= MIN_CROP
                 else f"no --crop keeps {it} ({MIN_CROP} at least)")
        print(f"warning: {count(len(small), 'photo')} smaller than the crop skipped ({where}; "
              f"{listed}): expected with a large --crop ({args.crop}); {keeps}",
              file=sys.stderr)
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
              f"than --crop {args.crop}, or unreadable){'; ' + keeps if keeps else ''}",
              file=sys.stderr)
        return 1
    if empty:
        print(f"warning: the {' and '.join(empty)} split{'s' if len(empty) > 1 else ''} got "
              f"no pair: every photo in {'them' if len(empty) > 1 else 'it'} was skipped",
              file=sys.stderr)
    print(_corpus_next_step(args.out, bool(summary["val"])), flush=True)
    return 1 if failed else 0


def _corpus_next_step(out: str, has_val: bool = False) -> str:
    """The labels command that continues from the corpus: the README's order of steps was the
    only place that said what comes next, and `labels` ends with the distill line in turn.
    --val-out takes the corpus's own val split, where it `has_val`; --hold-out's fraction,
    which --val-out needs, then holds out nothing, and `labels` says it "does not apply", so
    the line says what it does (whole training photos held out where val is empty)."""
    labels = str(Path(out).with_name(Path(out).name + "-labels"))
    how = ("its val split into --val-out (0.2 holds out training photos only where a corpus "
           "has none)" if has_val else "whole training photos held out for validation (the "
           "corpus has no val split)")
    return f"label it with the teacher, {how}: " + shell_join(
        ["sharpen", "labels", "--data", str(out), "--out", labels, "--hold-out", "0.2",
         "--val-out", labels + "-val"])
