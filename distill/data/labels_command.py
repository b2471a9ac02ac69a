"""The `sharpen labels` command (also `python -m distill.data.labels`, which torchrun runs):
its --out checked, the run started (with --hold-out, both caches), errors said as one line,
and the distill commands that train on the labels printed at the end. The parser is
`commands.add_labels_arguments`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from runtime.atomic import LinkRefused
from runtime.cli_errors import SharpenError, interrupt_exit_code, interrupted_message
from runtime.console import shell_join
from runtime.locale_text import unspellable_escaped, utf8_file_names
from runtime.progress import line_interval
from runtime.warn import shown_once_as_lines, warn

from ..dist import DistInfo
from .label_cache import MANIFEST, RUN_RECORD
from .labels import print_line, run_labels
from .labels_hold_out import check_hold_out, run_with_hold_out
from .sources import SourceError, gopro_blur_unused, parse_spec


def _check_out(out: Path, data: str, flag: str = "--out") -> None:
    """SharpenError for an --out (or --val-out) that is (under) a file, or inside the data it
    labels: a paired folder or footage read again would take the label images in as data."""
    from runtime.output_paths import file_in_the_way, refuse_output_inside
    if problem := (file_in_the_way(out, f"{flag} {out}") or _data_set_in_the_way(out, flag)
                   or _unwritable(out, flag)):
        raise SharpenError(problem)
    try:
        _, path = parse_spec(data)
    except SourceError:
        return   # said by the source itself, with the kinds it knows
    if path:
        try:
            refuse_output_inside(out, path, "--data", what="the labels", out_flag=flag)
        except ValueError as e:
            raise SharpenError(str(e)) from None


def _unwritable(out: Path, flag: str) -> str:
    """The message when no file can be made in --out (or the folder it would be made in): a
    cache another user owns ended, after the teacher loaded, in its lock file's
    PermissionError with a hint to run the same command again, which failed alike. A file
    made and removed, not the mode bits, which say nothing to root or of a read-only mount."""
    import os
    import tempfile

    from runtime.atomic import open_no_follow
    from runtime.output_paths import cannot_write

    from .label_cache import FRAMES_DIR, LABELS_DIR, LOCK_FILE
    from .label_claims import CLAIMS
    near = next((p for p in (out, *out.parents) if os.path.isdir(p)), Path("."))
    # And a team's cache, writable by all, whose labels/ and .manifest.lock a member under
    # umask 022 made: theirs alone to write, found at the first label as the folder was.
    for folder in (near, *(f for f in (out / LABELS_DIR, out / FRAMES_DIR) if f.is_dir())):
        try:
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as e:
            return cannot_write(f"{flag} {out}", folder, e)
    if os.path.lexists(lock := out / LOCK_FILE):
        nonblock = getattr(os, "O_NONBLOCK", 0)   # not on Windows
        try:
            os.close(open_no_follow(lock, os.O_WRONLY | os.O_APPEND | nonblock))
        except LinkRefused as e:   # planted: refused now, not once the teacher has loaded
            return str(e)
        except PermissionError as e:
            try:   # a member's under umask 022: read, it locks as well (label_cache)
                os.close(open_no_follow(lock, os.O_RDONLY | nonblock))
            except OSError:
                return cannot_write(f"{flag} {out}", lock, e)
        except OSError as e:
            return cannot_write(f"{flag} {out}", lock, e)
    if os.path.islink(claims := out / CLAIMS):
        try:
            os.close(open_no_follow(claims, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)))
        except LinkRefused as e:
            return str(e)
        except OSError:
            pass   # not to be told here: the run says what it finds as it opens it
    return ""


def _data_set_in_the_way(out: Path, flag: str) -> str:
    """The message when --out names a data set rather than a cache (a corpus's folder, a
    paired folder, a folder of photos: a slip of the path): the manifest written into it made
    it a label cache, which `--data` then refused; '' for a new, empty or cache folder."""
    from .sources import data_set_in
    if (out / MANIFEST).exists() or (out / RUN_RECORD).exists() or not (what := data_set_in(out)):
        return ""
    return (f"{flag} {out} holds {what}, not a label cache: labelling into it would make it "
            "one, which --data then refuses as a data source; choose a new folder")


def run_from_args(args: argparse.Namespace) -> int:
    from ..teacher import check_device, check_threads
    check_device(args.device)
    check_threads(args.threads)
    if args.limit is not None and args.limit < 1:
        raise SharpenError(f"--limit must be >= 1, got {args.limit}")
    check_hold_out(args)
    _check_out(Path(args.out), args.data)
    if getattr(args, "val_out", None):
        _check_out(Path(args.val_out), args.data, "--val-out")
    unused = gopro_blur_unused([args.data], args.gopro_blur, "--gopro-blur")
    if unused and DistInfo.from_env().rank == 0:
        warn(unused)
    from ..teacher import set_torch_threads
    # On stderr, as every command says it: stdout has the labels' own lines.
    set_torch_threads(args.threads, lambda note: print(note, file=sys.stderr, flush=True))
    common = dict(tile=args.tile, overlap=args.overlap, batch_size=args.batch_size,
                  gopro_blur=args.gopro_blur, device=args.device, limit=args.limit,
                  progress=not args.quiet, say=print_line)   # --quiet: no bar, the lines stay
    try:
        if getattr(args, "hold_out", None) is not None:
            stats = run_with_hold_out(args, common)
        else:
            stats = run_labels(args.data, args.out, teacher_weights=args.teacher_weights,
                               config=args.config, split=args.split, **common)
    except (SourceError, LinkRefused) as e:   # LinkRefused: a link planted in a shared cache
        raise SharpenError(str(e)) from None
    except OSError as e:
        # A full disk or a folder made read-only as a label, a frame or run.json is written:
        # the run cannot go on, and its traceback said nothing of the labels it made.
        where = e.filename2 or e.filename
        raise SharpenError(f"{f'{where}: {e.strerror}' if where and e.strerror else e} (the "
                           f"labels made before it stay in {args.out}: the same command run "
                           "again skips them)") from None
    except Exception as e:
        from ..checkpoint import CheckpointError
        if isinstance(e, (CheckpointError, LinkRefused)):   # a lock file planted as a link
            raise SharpenError(str(e)) from None
        raise
    if stats.done + stats.skipped + stats.reused and DistInfo.from_env().rank == 0:
        print(_next_step(args), flush=True)
    # A footage folder's clip that cannot be opened is a bad file too: the rest is labelled,
    # and the exit code says not all of it was (it was 0, with a warning a script never read).
    return 1 if stats.failed or stats.videos_left_out else 0


def _next_step(args: argparse.Namespace) -> str:
    """The distill commands that train on the caches just written: the keys that take them
    were said only in --help, and the folders nowhere after the run. Two lines: training from
    scratch, and the README's fine-tune of the shipped `fast`, what a user with a little
    footage of their own wants (the first alone is the config's 8000 steps at lr 2e-3: hours
    on a CPU, and below the shipped weights on a few labels), into runs/fast-CACHE_NAME."""
    config = Path(__file__).resolve().parents[2] / "configs" / "distill-fast.yaml"
    words = ["sharpen", "distill"]
    if config.is_file():   # a checkout: named as the README names it, from its root
        here = Path.cwd().resolve()
        words += ["--config", str(config.relative_to(here) if here in config.parents
                                  else config)]
    caches = [f"data.labels={args.out}"]
    val = getattr(args, "val_out", None)
    if val:
        caches.append(f"data.val_labels={val}")
    them = "them" if val else "it"
    # Its own out=, named for the cache (the README's runs/fast-footage): in the config's
    # runs/student-fast, where the line above trains, one resumed the other, and evaluate and
    # export called the fine-tune student-fast-best beside the shipped student-fast.
    fine_tune = [*words, "init=fast", "val_start=true", "optim.lr=5e-5",
                 "optim.warmup_steps=10", "optim.steps=300", *caches,
                 f"out=runs/fast-{Path(args.out).name}"]
    return (f"train on {them}: {shell_join(words + caches)}\n"
            f"or fine-tune the shipped fast on {them}: {shell_join(fine_tune)}")


def main(argv: Optional[list[str]] = None) -> int:
    from .commands import add_labels_arguments
    p = argparse.ArgumentParser(prog="python -m distill.data.labels",
                                description="Cache teacher pseudo-labels (same as "
                                            "`sharpen labels`).")
    add_labels_arguments(p)
    if argv is None:   # the command line torchrun starts: as `sharpen` starts it
        utf8_file_names()
    unspellable_escaped()
    from runtime.shell_words import home_expanded
    argv = home_expanded(list(sys.argv[1:] if argv is None else argv))
    try:
        line_interval()   # a mistyped setting is one error before the teacher loads
        with shown_once_as_lines():   # as `sharpen labels` shows its warnings
            return run_from_args(p.parse_args(argv))
    except SharpenError as e:
        print(f"sharpen labels: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:   # as `sharpen labels`: finished labels are kept
        print(interrupted_message("labels", e, resumable=True), file=sys.stderr)
        return interrupt_exit_code(e)
