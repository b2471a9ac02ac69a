"""`sharpen teacher`: the Restormer teacher over images and folders, resumable into its
--out. Imports without torch (the `sharpen` parser is built from it); the handler imports
what it needs."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

from runtime.cli_errors import NO_SPACE_ERRNOS, interrupt_exit_code
from runtime.console import brief, count, unread_listed
from .command_messages import refuse, note_line
from .teacher_run import TeacherRun


def cmd_teacher(args: argparse.Namespace) -> int:
    from .images import list_images
    from .teacher import check_device, check_threads, set_torch_threads

    from .teacher_tiles import overlap_for, tiling_cost, tiling_problem

    if args.overlap is None:
        args.overlap = overlap_for(args.tile)
    # Usage errors before the model loads and before any image is written.
    problem = tiling_problem(args.tile, args.overlap, args.batch_size)
    if problem:
        return refuse(problem)
    said = tiling_cost(args.tile, args.overlap)
    if said:
        print(f"warning: {said}", file=sys.stderr)
    check_device(args.device)
    check_threads(args.threads)
    set_torch_threads(args.threads, note_line)
    files: list[tuple[Path, Path]] = []  # (input, relative output name)
    for src in map(Path, args.inputs):
        if src.is_dir():
            found = list_images(src)
            if not found:
                print(f"warning: {src}: no images in this folder", file=sys.stderr)
            _warn_left_out_of_folder(src, Path(args.out))
            files += [(p, Path(p.name)) for p in found]
        else:
            files.append((src, Path(src.name)))
    from runtime.imageio import VIDEO_EXTS
    clips = [src for src, _ in files if src.suffix.lower() in VIDEO_EXTS]
    if clips and len(clips) == len(files):
        # Before the teacher loads: it writes images, and a clip "skipped" (exit 1) after a
        # minute's loading, pointing at `labels` (training labels), left video users stuck.
        return refuse(f"{clips[0]}: a video; {video_hint(str(clips[0]))}")
    for clip in clips:
        print(f"warning: {clip}: a video, left out; {video_hint(str(clip))}", file=sys.stderr)
    files = [(src, rel) for src, rel in files if src not in clips]
    seen: set[Path] = set()
    unique = []
    for src, rel in files:
        key = src.resolve()
        if key in seen:
            print(f"warning: {src} given more than once; sharpened once", file=sys.stderr)
            continue
        seen.add(key)
        unique.append((src, rel))
    files = unique
    if not files:
        return refuse("no input images (" + ", ".join(args.inputs) + ")")
    if not any(src.exists() for src, _ in files):
        # Said before the teacher loads (a minute for the official weights), as a usage error
        # like a missing checkpoint; one missing among others is skipped with the rest done.
        return refuse("no such file or folder: " + ", ".join(str(s) for s, _ in files))
    out = Path(args.out)
    from runtime.output_paths import make_folder, refuse_overwriting_inputs
    from runtime.sinks import SinkError
    try:
        refuse_overwriting_inputs(out, {p.parent for p, _ in files if p.exists()})
        make_folder(out, "--out")
    except (ValueError, SinkError) as e:
        return refuse(str(e))
    from .run_lock import RunLocked, run_lock
    try:
        # One run per --out: two at once each wrote the other's images again, and the first
        # to compact its record removed the journal the other was appending to.
        with run_lock(out, doing="writing teacher outputs", flag="--out",
                      name=TeacherRun.LOCK):
            return _teacher_into(args, files, out)
    except RunLocked as e:   # only the lock raises it
        return refuse(str(e))


def _teacher_into(args: argparse.Namespace, files: list[tuple[Path, Path]], out: Path) -> int:
    """`sharpen teacher`'s outputs of `files` written into `out`, whose lock is held."""
    import numpy as np

    from .checkpoint import CheckpointError
    from .images import ImageReadError, is_image, to_rgb_float, write_image
    from .teacher import Teacher
    from .teacher_tiles import tiling_context
    from runtime.atomic import remove_killed_writes
    from runtime.warn import warn
    from runtime.imageio import decode_image
    from runtime.exif import gps_kept_said, has_gps
    from runtime.image_sources import photo_metadata
    remove_killed_writes(out)   # a killed run's half-written outputs, up to ~100 MB each
    try:
        teacher = Teacher.load(args.teacher_weights, args.config, device=args.device)
    except (CheckpointError, ValueError) as e:
        return refuse(str(e))
    # Once it is loaded: its checkpoint says which crops it was trained on.
    said = tiling_context(args.tile, teacher.train_crop)
    if said:
        print(f"warning: {said}", file=sys.stderr)
    files = _unique_png_names(files)
    no_exif = args.no_exif or args.no_metadata
    run = TeacherRun(out, {"weights": teacher.weights_id, "config": teacher.config_name,
                            "tile": args.tile, "overlap": args.overlap,
                            "bits": 16 if args.bits16 else 8,
                            "device": teacher.device.type,
                            # only when given: the records of runs before --no-exif stay valid
                            # (--no-metadata: a photo's metadata is its EXIF)
                            **({"exif": False} if no_exif else {})}, resume=args.resume)
    from .teacher_partial import PartialImage
    partial = PartialImage(out, run.settings)
    current: list[str] = []   # the image being sharpened, for the interrupted line
    todo = [(src, rel) for src, rel in files if not run.is_done(src, rel)]
    partial.remove_dead(run.is_done)
    # The photos stopped runs kept rows of go first: their files, 12 bytes a pixel, are
    # removed as soon as each is written.
    stopped = partial.kept_names() if args.resume else set()
    todo.sort(key=lambda f: str(f[1]) not in stopped)
    if len(todo) < len(files):
        print(f"resuming: {len(files) - len(todo)} of {count(len(files), 'image')} already in "
              f"{out} "
              "from an earlier run with the same weights and settings (--no-resume writes them "
              "again)", file=sys.stderr)
    redone = run.written_otherwise([str(rel) for _, rel in todo])
    if redone:
        warn(redone)
    failed: list[str] = []   # why each image that could not be read was skipped
    done = len(files) - len(todo)
    gps = 0   # images written with their photo's GPS position, said at the end
    from runtime.imageio import file_header_size
    from runtime.tiling import Band, count_tiles
    from tqdm import tqdm

    from runtime.progress import progress

    from .restormer import Restormer

    def left(shape: tuple[int, ...], from_row: int = 0, at: int = 0) -> int:   # its tiles
        return count_tiles(*shape[:2], args.tile, args.overlap, Restormer.multiple,
                           from_row=from_row, batch_size=args.batch_size, at=at)

    def keep_band(band: Band) -> None:   # a full disk: the rows alone are kept, said once
        if unbanded:   # not tried again, tens of MB each batch, for this photo
            return
        try:
            partial.keep_band(band)
        except OSError as e:
            warn(f"{current[0]}: the tiles below its finished rows cannot be kept in {out} "
                 f"({e}); a stop runs them again")
            unbanded.append(e)
    unbanded: list[OSError] = []

    def tiles(size: tuple[int, int] | None) -> int:
        return count_tiles(size[1], size[0], args.tile, args.overlap,
                           Restormer.multiple) if size else 0

    # One bar in tiles over the whole folder: counted in images, its rate and ETA were those
    # of the images so far, hours off where a 48-megapixel photo follows 12-megapixel ones.
    # Not read under --quiet: a folder's headers read before the first image, for no bar.
    sizes = {} if args.quiet else {src: file_header_size(src) for src, _ in todo}
    total = sum(tiles(s) for s in sizes.values())
    if not args.quiet and todo:
        # Off a terminal the bar's first line comes after the first batch: minutes with the
        # official teacher on a CPU, the log empty until then. Said as `labels` says its run.
        work = (f"{count(total, 'tile')} of {args.tile} px (overlap {args.overlap})"
                if args.tile else "whole (--tile 0),")
        weights = Path(teacher.weights_path or "").name or teacher.config_name
        print(f"teacher: {count(len(todo), 'image')}, {work} on {teacher.device} in "
              f"{teacher.precision}, weights {weights}", file=sys.stderr)
    bar = progress(total=total, desc="teacher", unit="tile",
                   quiet=args.quiet, dynamic_ncols=True)
    try:
        for src, rel in todo:
            bar.set_postfix_str(f"{done + len(failed) + 1}/{len(files)}: {src.name}", refresh=False)
            base, planned = bar.n, tiles(sizes.get(src))

            def on_tile(n: int, total: int) -> None:
                nonlocal planned
                if total != planned:   # a size the header did not give, or gave wrong
                    bar.total += total - planned
                    planned = total   # once: this is called after every batch
                bar.n = base + n
                bar.refresh()
            try:
                if not src.exists():
                    raise ImageReadError(f"{src}: no such file")
                if not is_image(src):
                    raise ImageReadError(f"{src}: not an image file extension")
                raw = decode_image(src)   # its bit depth, which the float image no longer has
                if raw.dtype == np.uint16 and not args.bits16:
                    tqdm.write(f"warning: {src} is 16-bit; written as 8-bit PNG (--bits16 keeps "
                               "16 bits)", file=sys.stderr)
                img = to_rgb_float(raw, str(src))
                del raw   # each copy of a 48-megapixel photo is hundreds of MB
                rows = _tile_rows(img.shape[0], args.tile, args.overlap)
                from_row = partial.open(src, rel, img.shape, args.resume) if rows > 1 else 0
                if rows > 1 and partial.dropped:
                    warn(partial.dropped)
                if rows > 1 and partial.array is None:
                    warn(f"{src.name}: its finished rows cannot be kept in {out} "
                         f"({partial.unkept}); it is sharpened without them, and a stop begins "
                         "it again")
                    rows = 1
                current[:] = [src.name] if rows > 1 else []
                unbanded.clear()
                # Not where the kept rows spare no tile (a kill left no band): 'going on' with
                # every tile left to run.
                if (rest := left(img.shape, from_row, partial.band_at)) < left(img.shape):
                    tqdm.write(f"{src.name}: going on where an earlier run was stopped "
                               f"({rest} of its {left(img.shape)} tiles left to run)",
                               file=sys.stderr)
                y = teacher.sharpen(img, tile=args.tile, overlap=args.overlap,
                                    batch_size=args.batch_size, on_tile=on_tile,
                                    out=partial.array if rows > 1 else None, from_row=from_row,
                                    on_rows=partial.done_to if rows > 1 else None,
                                    band=partial.band if rows > 1 else None,
                                    on_band=keep_band if rows > 1 else None)
                del img
                # As `sharpen run` keeps them: without its profile a phone's Display P3 photo
                # is shown as sRGB, its colours duller; without its EXIF a photo loses its
                # capture date, camera and place in a photographer's catalogue.
                icc, exif = photo_metadata(src.read_bytes())
                write_image(out / rel, y, bits=16 if args.bits16 else 8, icc=icc,
                            exif=None if no_exif else exif)
                gps += bool(exif and not no_exif and has_gps(exif))
                del y   # kept, it would be held through the next image's reading and tiling
                run.mark_done(src, rel)
                if current:
                    partial.clear()
                    current.clear()
                done += 1
            except (ImageReadError, OSError, MemoryError) as e:
                if isinstance(e, OSError) and e.errno in NO_SPACE_ERRNOS:
                    # A full disk fails every photo after it too, each after its teacher run:
                    # stopped, said by sharpen.cli in one line; a rerun skips what was written.
                    bar.close()
                    if failed:   # the rest were not processed: the error line says why
                        print(_skipped_listed(failed, None), file=sys.stderr)
                    raise
                # A write or memory fails it too, in words that name no photo
                # ("[Errno 28] No space left on device") or the result, not the photo.
                failed.append(str(e) if str(e).startswith(f"{src}: ") else f"{src}: {brief(e)}")
                bar.total -= planned - (bar.n - base)   # its tiles that will not run
                bar.refresh()
                warn(f"skipped: {failed[-1]}")
    except KeyboardInterrupt as e:
        bar.close()
        run.close()   # its warning, if any, before the line that ends the run
        kept = ""
        # Without a band kept (none yet, or no room for it) the tiles reaching the rows not
        # kept run again: those of the row above them too.
        todo_left = left(partial.shape, partial.rows, partial.band_at) if current else 0
        if current and todo_left < left(partial.shape):
            kept = (f" ({current[0]}: {left(partial.shape) - todo_left} of its "
                    f"{left(partial.shape)} tiles kept, {todo_left} left to run)")
        elif current:
            if partial.rows:
                kept = (f" ({current[0]}: nothing of it kept: the rows it finished need all "
                        "its tiles again)")
            partial.clear()   # a file of the photo's size for nothing
        print(f"interrupted: {done} of {count(len(files), 'image')} in {out}{kept}; the same "
              "command continues with the rest", file=sys.stderr)
        if failed:   # which, after the line that says how far the run got
            print(_skipped_listed(failed, None), file=sys.stderr)
        return interrupt_exit_code(e)
    finally:   # the record whole, for a version that reads no journal
        run.close()
    bar.close()
    earlier = len(files) - len(todo)
    print(f"teacher: {count(done, 'image')} in {out}"
          + (f" ({earlier} from an earlier run)" if earlier else "") + f", {len(failed)} failed"
          # As `sharpen run` says it: a photo's place, which a desk must not publish unawares
          + (f"; {gps_kept_said(gps, images=False)}" if gps else ""),
          flush=True)
    if failed:
        print(_skipped_listed(failed, done > 0), file=sys.stderr)
    return 1 if failed else 0


def _skipped_listed(failed: list[str], processed: Optional[bool]) -> str:
    """The closing lines naming the images skipped (a read, a write or memory failed them)."""
    return unread_listed("teacher", failed, "images", processed=processed,
                         failed_as="could not be sharpened")


def _tile_rows(height: int, tile: int, overlap: int) -> int:
    """The rows of tiles the teacher runs down an image `height` pixels high: with more than
    one, rows are finished before the last tile, and a stopped run keeps them."""
    from runtime.tiling import round_up, tile_starts

    from .restormer import Restormer
    h, t = round_up(height, Restormer.multiple), round_up(tile, Restormer.multiple)
    return len(tile_starts(h, min(t, h), overlap, Restormer.multiple)) if tile else 1


def video_hint(clip: str) -> str:
    """What to run for a sharpened video: the teacher writes images (seconds to minutes a
    frame on a CPU), a student exported for `sharpen run` writes video."""
    import shlex
    return ("the teacher writes images, not video; a student sharpens video: `sharpen run "
            f"--model export/student-fast.onnx --source {shlex.quote(clip)} --out sharp.mp4` "
            "(export it first: `sharpen export --weights fast --out export/`)")


def _warn_left_out_of_folder(folder: Path, out: Path) -> None:
    """Say what `sharpen teacher FOLDER` leaves out: its files that are not images (clips among
    them, which `labels` takes) and its subfolders but `out`. Left out unsaid, a folder of
    footage gave '1 image in OUT, 0 failed' and exit 0 for its one still."""
    from runtime.imageio import VIDEO_EXTS
    from runtime.sources import warn_not_images
    from runtime.warn import warn

    from .images import is_image
    entries = sorted((p for p in folder.iterdir() if not p.name.startswith(".")),
                     key=lambda p: p.name)
    others = [p.name for p in entries if p.is_file() and not is_image(p)]
    clips = any(Path(n).suffix.lower() in VIDEO_EXTS for n in others)
    hint = (f"; `sharpen labels --data {folder}` runs the teacher over its clips' frames "
            f"(training labels); {video_hint(f'{folder}/CLIP')}" if clips else "")
    warn_not_images(str(folder), others, "teacher", hint)
    dirs = [p for p in entries if p.is_dir() and p.resolve() != out.resolve()]
    # An earlier run's --out (its record says so): "name it as an input too" invited
    # sharpening the teacher's outputs again.
    # os.path's: a subfolder this user cannot enter (lost+found) is not one, not a traceback
    ours = [p.name for p in dirs if os.path.isfile(p / TeacherRun.FILE)]
    subs = [p.name for p in dirs if p.name not in ours]

    def shown(names: list[str]) -> str:
        return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    if ours:
        which = (f"its subfolder {shown(ours)} holds `sharpen teacher` outputs "
                 f"({TeacherRun.FILE}): left out" if len(ours) == 1 else
                 f"its {len(ours)} subfolders ({shown(ours)}) hold `sharpen teacher` outputs "
                 f"({TeacherRun.FILE}): left out")
        warn(f"{folder}: {which}")
    if subs:
        which = (f"its subfolder {shown(subs)} is not searched: name it as an input too"
                 if len(subs) == 1 else
                 f"its {len(subs)} subfolders ({shown(subs)}) are not searched: name them as "
                 "inputs too")
        warn(f"{folder}: {which}")


def _unique_png_names(files: list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    """Output names NAME.png that never collide: a.jpg and a.png keep their extension
    (a.jpg.png), equal names from different folders get the folder's name in front, and what
    still collides (p1/x/a.png, p2/x/a.png) is numbered. Letter case aside, all of it: on
    macOS' and Windows' file systems A.jpg's output is a.png's."""
    from collections import Counter

    suffixes: dict[str, set[str]] = {}
    for _, rel in files:
        suffixes.setdefault(rel.stem.casefold(), set()).add(rel.suffix.lower())
    named = [(p, rel.with_suffix(".png") if len(suffixes[rel.stem.casefold()]) == 1
              else Path(f"{rel.name}.png")) for p, rel in files]
    clash = Counter(str(rel).casefold() for _, rel in named)
    named = [(p, Path(f"{p.parent.name}_{rel}") if clash[str(rel).casefold()] > 1 else rel)
             for p, rel in named]
    taken: set[str] = set()
    out = []
    for p, rel in named:
        name, k = rel, 2
        while str(name).casefold() in taken:
            name, k = rel.with_name(f"{rel.stem}-{k}{rel.suffix}"), k + 1
        taken.add(str(name).casefold())
        out.append((p, name))
    return out
