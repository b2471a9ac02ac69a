"""`sharpen synth`: a synthetic blurred/sharp paired folder from sharp images, or the
embedded default dataset. Imports without torch."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runtime.cli_errors import interrupt_exit_code, interrupted_message, said_after_hang_up
from runtime.console import count, unread_listed
from runtime.warn import warn
from .command_messages import refuse, out_folder_problem, out_of_range


def cmd_synth(args: argparse.Namespace) -> int:
    if problem := _synth_options_problem(args):
        return refuse(problem)
    if args.embedded:
        from .data.embedded import build_embedded
        root = build_embedded(args.out, progress=not args.quiet)
        print(f"embedded default dataset written to {root}/{{train,val,test}}/{{input,target}}")
        return 0
    if not args.sharp:
        return refuse("give a folder of sharp images (--sharp DIR) or --embedded")
    src = Path(args.sharp)
    if not src.is_dir():
        return refuse(f"--sharp {src}: not a folder")
    out = Path(args.out)
    if err := out_folder_problem(out):
        return refuse(err)
    from .run_lock import RunLocked, run_lock
    try:
        # One run per --out: two at once wrote each pair's input and target one after the
        # other, and a pair could take its input from one and its target from the other.
        with run_lock(out, doing="writing synthetic pairs", flag="--out"):
            return _synth_into(args, src, out)
    except RunLocked as e:   # only the lock raises it
        return refuse(str(e))


def _synth_into(args: argparse.Namespace, src: Path, out: Path) -> int:
    """`synth`'s pairs of the photos in `src` written into `out`, whose lock is held."""
    import numpy as np

    from .data.blur import BlurConfig, synthesize
    from .data.corpus import _names
    from .data.sources import _few, _images_under, is_video
    from runtime.atomic import remove_killed_writes
    from runtime.console import count, shell_join, shell_quote
    from .images import ImageReadError, list_images, to_rgb_float, warn_16_bit, write_image
    from runtime.imageio import decode_image
    from runtime.progress import progress

    # Subfolders too, as `corpus` and `labels` read them; never this run's own output.
    files = [src / r for r in _images_under(src)
             if not (src / r).resolve().is_relative_to(out.resolve())]
    clips = [r.as_posix() for r in _images_under(src, kind=is_video)
             if not (src / r).resolve().is_relative_to(out.resolve())]
    n_clips, named = count(len(clips), "video"), _few(clips)
    # What a user with video does instead: frames of sharp clips as photos; blurred footage
    # needs no synthetic blur.
    first = Path(clips[0]) if clips else Path("CLIP.mp4")
    extract = shell_join(["ffmpeg", "-i", str(src / first), "-vf", "fps=1",
                          f"frames/{first.stem}_%06d.png"])
    instead = (f"synth takes photos: extract sharp frames as images first, e.g. {extract} for "
               "the first, then --sharp frames (a frame a second: neighbouring frames are "
               "near-duplicates); blurred footage is labelled as it is: sharpen labels "
               f"--data {shell_quote(str(src))} --out CACHE")
    if not files:
        holds = f"; it holds {n_clips} ({named}): {instead}" if clips else ""
        return refuse(f"--sharp {src}: no images found{holds}")
    if clips:
        print(f"warning: --sharp {src}: {n_clips} left out ({named}): {instead}",
              file=sys.stderr)
    names = _names(src, files)   # distinct: a.jpg and a.png, day1/a and day2/a
    if args.preset:
        from .data.scene_blur import preset, synthesize_pair
        try:
            scene = preset(args.preset)
        except ValueError as e:
            return refuse(str(e))

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

    # A killed run's half-written pairs, each as large as a pair: the lock is ours, so a temp
    # file of a process that no longer runs is no write in progress.
    cut = [p for side in ("input", "target") if (out / side).is_dir()
           for p in remove_killed_writes(out / side, ours_too=True)]
    if cut:
        print(f"removed {count(len(cut), 'temp file')} a killed synth left in {out}",
              file=sys.stderr)
    held = {p.name for p in list_images(out / "input")} if (out / "input").is_dir() else set()
    if held:
        writing = {pair_name(f, c) for f in files for c in range(args.copies)}
        print(f"warning: {_held_pairs(out, held, writing)}", file=sys.stderr)
    failed: list[str] = []   # why each photo that could not be read was skipped
    deep: list[Path] = []   # 16-bit photos, said once at the end
    try:
        for i, f in enumerate(progress(files, desc="synth", unit="img", quiet=args.quiet)):
            try:
                raw = decode_image(f)
                sharp = to_rgb_float(raw, str(f))
            except ImageReadError as e:
                failed.append(str(e))
                warn(f"skipped: {e}")
                continue
            if raw.dtype == np.uint16:
                deep.append(f.relative_to(src))
            for c in range(args.copies):
                rng = np.random.default_rng([args.seed, i, c])
                name = pair_name(f, c)
                blurred, target = make(sharp, rng)
                write_image(out / "input" / name, blurred)
                write_image(out / "target" / name, target)
    except KeyboardInterrupt as e:
        if not failed:
            raise   # sharpen.cli says it
        # As `sharpen run` and `teacher`: the skipped photos listed again under the stop's
        # line, which the warnings among the lines above were not
        with said_after_hang_up():
            print(interrupted_message("synth", e, False), file=sys.stderr)
            print(unread_listed("synth", failed, "images", processed=None), file=sys.stderr)
        return interrupt_exit_code(e)
    read = len(files) - len(failed)
    warn_16_bit(deep, read, "synth")
    if read:   # none read: nothing written, no folder made
        print(f"synthetic pairs written to {out}/input and {out}/target ({len(failed)} "
              "unreadable)", flush=True)
    if failed:
        print(unread_listed("synth", failed, "images", processed=read > 0), file=sys.stderr)
    return 1 if failed else 0


def _held_pairs(out: Path, held: set[str], writing: set[str]) -> str:
    """What becomes of the pairs `out` already holds: those under the names this run writes are
    replaced; the others (another --copies, other photos) stay, and the folder then mixes two
    runs' settings, which a warning that called them all replaced hid."""
    replaced, stay = len(held & writing), len(held - writing)
    holds = f"{out} already holds {count(len(held), 'pair')}"
    # A rerun after a kill is the common case: its pairs are the same bytes, and labels are
    # matched to their inputs by hash. The photos count too: a pair's blur is drawn from its
    # photo's place in the list, which a photo added before it moves.
    stale = (f"other photos or options make labels of {'it' if replaced == 1 else 'them'} "
             "stale, which `sharpen distill` refuses; the same photos, options and --seed "
             "write the same pairs, which keeps their labels")
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
        if problem := out_of_range(flag, value, lo, hi, note):
            return problem
    lo, hi = args.size
    if not 3 <= lo <= hi <= MAX_KERNEL_SIZE:
        return (f"--size MIN MAX needs 3 <= MIN <= MAX <= {MAX_KERNEL_SIZE} (kernel sides in "
                f"px), got {lo} {hi}")
    return ""
