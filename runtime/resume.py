"""`sharpen run --resume`: go on with a video file's or a photo library's run that stopped
part-way.

A run of a video file into a video or an image folder keeps a small record beside its output
(`.NAME.resume.json`, written atomically; inside an image folder whose parent takes no file,
`.sharpen-run.resume.json`): what made the frames there (the model file's hash,
the options that change them, the source's size, time and frame count) and, once it stops,
how far it got. A complete run removes it. --resume reads it, refuses where anything that
shapes the frames changed (naming it), and reads the source on from the next frame: the
frames it gives equal an uninterrupted run's, so the joined output does too.

A folder or glob of images into an image folder goes on with the images whose outputs the
stopped run did not write (`images_written`). A camera or live stream cannot resume: its
frames are not given again.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

from .atomic import atomic_write_json
from .options import option

VERSION = 1
# The options that change the frames written (the provider and threads change no pixel
# beyond float rounding, and --max-frames only where it stops).
SHAPING = ("tile", "overlap", "fps", "compare", "view", "lossless", "quality", "codec",
           "crf", "encoder_preset", "segment")
# Those of image outputs alone: compared where this run's identity holds them (a video's has
# none, and its record from before them too).
IMAGE_SHAPING = ("exif",)
# A shaping option's value in a record written before it was one.
UNRECORDED = {"lossless": False, "quality": None, "codec": None, "crf": None,
              "encoder_preset": None, "exif": True, "segment": None}
# Where a rerun keeps the outputs there, those that tell their pixels apart only within the
# tiling tolerance (README: peak memory), or not at all for images, are not compared.
RERUN_IGNORED = ("tile", "overlap", "fps")


class ResumeError(ValueError):
    """--resume cannot go on with what is there. The message is meant for the user as is."""


# The record inside an image folder (`record_paths`)
INSIDE_NAME = ".sharpen-run.resume.json"


def record_paths(output: str | os.PathLike, kind: str = "resume") -> list[Path]:
    """Where the record of a run into `output` may be, in the order `save` tries them: beside
    it, and inside an image folder, first where the folder is a mount point. As its lock
    (run_lock.output_lock): `--out /out`, a container's volume, has a parent that is read-only
    or not the user's (the record beside it ended the run there) or each container's own (a
    record there was lost with the container)."""
    from .run_lock import mount_point
    p = Path(output)
    beside = p.with_name(f".{p.name}.{kind}.json")
    if not p.is_dir():
        return [beside]
    inside = p / INSIDE_NAME.replace(".resume.", f".{kind}.")
    return [inside, beside] if mount_point(Path(os.path.realpath(p))) else [beside, inside]


def record_path(output: str | os.PathLike) -> Path:
    """The record of the run into `output` where there is one, else where `save` puts it."""
    paths = record_paths(output)
    return next((p for p in paths if p.exists()), paths[0])


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def frame_digest(img: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(img).data, digest_size=16).hexdigest()


def identity(model: str | os.PathLike, source: str, frame_count: Optional[int],
             options: dict[str, Any], output_kind: str, fps: float = 0.0,
             average_fps: Optional[float] = None) -> dict[str, Any]:
    """What must be the same for a resumed run's frames to match the stopped run's. The
    model's hash is left to `sealed` and `changes`: taken at every run's start, it cost each
    video run 0.3 s per 100 MB of model, where few runs are ever stopped or resumed. A video's
    `fps` is the rate it is written at, which for a variable-rate clip is its peak, not the
    `average_fps` an older run took (runtime/frame_rate.py)."""
    st, mst = os.stat(source), os.stat(model)
    src: dict[str, Any] = {"file": os.path.abspath(source), "size": st.st_size,
                           "mtime_ns": st.st_mtime_ns, "frame_count": frame_count}
    if output_kind in ("video", "segments") and fps:
        src.update(fps=fps, average_fps=average_fps)
    return {"model": {"file": os.path.abspath(model), "size": mst.st_size,
                      "mtime_ns": mst.st_mtime_ns},
            "source": src, "options": {k: options.get(k) for k in SHAPING},
            "output": output_kind}


def library_identity(model: str | os.PathLike, spec: str,
                     options: dict[str, Any]) -> dict[str, Any]:
    """`identity` for a folder or glob of images into an image folder: the source is its
    spelling alone, since a library gains photos between runs, and each image is judged
    done by its own output (`images_written`)."""
    mst = os.stat(model)
    return {"model": {"file": os.path.abspath(model), "size": mst.st_size,
                      "mtime_ns": mst.st_mtime_ns},
            "source": {"file": os.path.abspath(spec), "size": None, "mtime_ns": None,
                       "frame_count": None},
            "options": {k: options.get(k) for k in (*SHAPING, *IMAGE_SHAPING)},
            "output": "images"}


def _model_unchanged(model: dict[str, Any]) -> bool:
    try:
        st = os.stat(model["file"])
    except OSError:
        return False
    return (st.st_size, st.st_mtime_ns) == (model["size"], model["mtime_ns"])


def sealed(record: dict[str, Any]) -> dict[str, Any]:
    """`record` with its model's hash, taken as it is saved at a stop: where the file was
    changed since the run opened it, the hash would not be of the model that made the frames,
    and none is kept (--resume then refuses it as another model)."""
    model = dict(record["model"])
    if "sha256" not in model:
        model["sha256"] = file_sha256(model["file"]) if _model_unchanged(model) else None
    return {**record, "model": model}


def changes(recorded: dict[str, Any], now: dict[str, Any], flags: bool = False,
            formats: Optional[Iterable[str]] = None) -> list[str]:
    """What differs between a record's identity and this run's, in words ([] : none);
    `flags`: options named as `sharpen run`'s flags, else as run_stream's keywords. A record
    saved with a folder's first image, before any stop, holds no hash: its model's size and
    time are compared. `formats`: the image outputs' extensions, whose quality is compared as
    written (`effective_quality`: none for PNG, 95 for a JPEG without --quality), not as the
    flag was typed."""
    said = []
    rm, nm = recorded.get("model", {}), now["model"]
    if "sha256" in rm:
        other = "its contents differ" if rm["sha256"] != file_sha256(nm["file"]) else ""
    else:
        other = ("its size or modification time differ" if (rm.get("size"), rm.get("mtime_ns"))
                 != (nm["size"], nm["mtime_ns"]) else "")
    if other:
        said.append(f"the model ({rm.get('file')} then, {nm['file']} now) differs: "
                    f"{other}")
    rs, ns = recorded.get("source", {}), now["source"]
    if rs.get("file") != ns["file"]:
        said.append(f"the source was {rs.get('file')}, now {ns['file']}")
    for key, what in (("size", "size in bytes"), ("mtime_ns", "modification time"),
                      ("frame_count", "frame count")):
        if rs.get(key) != ns[key]:
            said.append(f"the source's {what} was {rs.get(key)}, now {ns[key]}")
    ro = recorded.get("options", {})
    if ns.get("fps"):
        # A record from before the rate was kept: its video took --fps, else OpenCV's rate,
        # a variable-rate clip's average. Joined at another, its frames play at the wrong pace.
        then = rs.get("fps") or (ns["fps"] if ro.get("fps") else ns.get("average_fps")
                                 or ns["fps"])
        if abs(then - ns["fps"]) > 1e-3 * ns["fps"]:
            said.append(f"the video's rate was {then:g} fps, now {ns['fps']:g} fps")
    for key in (*SHAPING, *(k for k in IMAGE_SHAPING if k in now["options"])):
        then = ro.get(key, UNRECORDED.get(key))
        if then == now["options"].get(key):
            continue
        if key == "exif" and flags:   # the flags are --no-exif and --no-metadata: "--exif
            # was True" named none, and "--no-exif" alone one a --no-metadata run was not given
            said.append("--no-exif or --no-metadata was " + ("not given, now one is" if then
                                                             else "given, now neither is"))
            continue
        was, is_ = ("not given" if v is None else v for v in (then, now["options"].get(key)))
        if key == "encoder_preset":
            # Recorded as encoded but for medium (a file's default, as a record from before
            # the option): named as each run's h264/hevc was encoded, as --crf's are.
            from .video_codecs import CODECS, FILE_PRESET
            was, is_ = (v or (FILE_PRESET if (c := CODECS.get(opts.get("codec") or ""))
                              and c.presets else "not given")
                        for v, opts in ((then, ro), (now["options"].get(key), now["options"])))
        detail = ""
        if key == "quality" and formats is not None:
            from .image_sink import effective_quality
            before, after = (effective_quality(q, formats)
                             for q in (then, now["options"]["quality"]))
            if before == after:
                continue
            # Where the flag's values alone mislead: a default that differs by format
            detail = "; ".join(f"{f}: {_quality(before[f])} then, {_quality(after[f])} now"
                               for f in sorted(before) if before[f] != after[f]
                               and (then is None or now["options"]["quality"] is None))
        said.append(f"{option(key, flags=flags)} was {was}, now {is_}"
                    + (f" ({detail})" if detail else ""))
    if recorded.get("output") != now["output"]:
        said.append(f"the output was {recorded.get('output')}, now {now['output']}")
    return said


def _quality(q: Optional[int]) -> str:
    return "lossless" if q is None else str(q)


def rerun_changes(recorded: dict[str, Any], now: dict[str, Any], flags: bool = False,
                  formats: Optional[Iterable[str]] = None) -> list[str]:
    """`changes` that make the outputs a library run keeps in its folder other than this run
    would make them: its model and the options that shape an image, not its source's spelling
    (new photos come from anywhere) nor its tiles (RERUN_IGNORED)."""
    ignored = {k: now["options"].get(k) for k in RERUN_IGNORED}
    recorded = {**recorded, "source": now["source"],
                "options": {**recorded.get("options", {}), **ignored}}
    return changes(recorded, now, flags, formats)


# What made the outputs in an image folder, kept by a library run that wrote there and ended
# whole (`record_paths` of kind "made": beside the folder, so that a folder published as it is
# does not carry the model's path): a rerun, which keeps the outputs there, compares its model
# and options.
MADE = "made"
# The most makers of a folder's outputs its record keeps (a few models tried in turn)
MADE_MAX = 16
_MADE_KEYS = ("model", "options", "output")


def made(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """The identities of the runs whose outputs a folder holds, the last run's first ([]: no
    record, or an unreadable one)."""
    path = next((p for p in record_paths(folder, MADE) if p.exists()), None)
    try:
        record = json.loads(path.read_text()) if path is not None else None
    except (OSError, ValueError):
        return []
    if not isinstance(record, dict) or record.get("version") != VERSION:
        return []
    also = record.get("also")
    return [record, *(r for r in also if isinstance(r, dict))] if isinstance(also, list) \
        else [record]


def save_made(folder: str | os.PathLike, record: dict[str, Any],
              also: Iterable[dict[str, Any]] = ()) -> None:
    """Keep `record` as what made the outputs in `folder`, and `also` the makers of those it
    kept; where no record can be written a rerun compares nothing, as before there was one."""
    this = {k: record.get(k) for k in _MADE_KEYS}
    others: list[dict[str, Any]] = []
    for r in also:
        r = {k: r.get(k) for k in _MADE_KEYS}
        if r != this and r not in others:
            others.append(r)
    with contextlib.suppress(OSError):
        save(folder, {**this, "also": others[:MADE_MAX]}, MADE)


def load(output: str | os.PathLike, flags: bool = False) -> dict[str, Any]:
    """The record of the stopped run into `output`, or ResumeError saying why there is none."""
    path = record_path(output)
    what = option("resume", True, flags)
    again = f"run without {what} to start from the first frame"
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        named = option("output", output, flags)
        if left := killed_video(output):
            raise ResumeError(f"{what}: the run into {named} was killed (SIGKILL, a power cut) "
                              f"before it closed the video, which is what {what} goes on "
                              f"with: its frames are in {left.name}, which the run without "
                              f"{what} keeps beside it as an interrupted recording (an image "
                              f"folder {option('output', flags=flags)} resumes even after a "
                              f"kill); {again}") from None
        raise ResumeError(f"{what}: no stopped run into {named} to go on with ({path.name} is "
                          f"not there: the run finished, or never started); {again}") from None
    except (OSError, ValueError) as exc:
        raise ResumeError(f"{what}: cannot read {path} ({exc}); {again}") from None
    if not isinstance(record, dict) or record.get("version") != VERSION:
        raise ResumeError(f"{what}: {path} is not a record this version writes; {again}")
    return record


def killed_video(output: str | os.PathLike) -> Optional[Path]:
    """The video a run into `output` killed outright left under its hidden name
    (runtime/video_sink.py `_temp_file`), which names the run's process, now gone; else None."""
    from .video_sink import left_by_killed_run, recordings_beside
    p = Path(output)
    for left, pid in recordings_beside(p):
        if left_by_killed_run(pid, p):
            return left
    return None


def save(output: str | os.PathLike, record: dict[str, Any], kind: str = "resume") -> None:
    paths = record_paths(output, kind)
    for i, path in enumerate(paths):
        try:
            atomic_write_json(path, {"version": VERSION, **record})
        except OSError:
            if i == len(paths) - 1:
                raise
            continue
        for other in paths[:i] + paths[i + 1:]:   # an older one would be read first
            with contextlib.suppress(OSError):
                other.unlink()
        return


def remove(output: str | os.PathLike) -> None:
    for path in record_paths(output):
        if path.exists():   # a read-only folder refuses even a missing file's unlink
            path.unlink(missing_ok=True)


def output_stat(path: str | os.PathLike) -> dict[str, int]:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


# How much older than the time a run noted before its first image that image's time may read:
# a file's time comes from the kernel's coarse clock, a tick (up to 10 ms) behind time_ns.
CLOCK_SLACK_NS = 1_000_000_000


# How much older than its photo an output given the photo's time may read: a NAS share keeps
# times to 100 ns, exFAT to 10 ms, FAT to 2 s, each rounded down from the photo's nanoseconds.
TIMES_KEPT_TO_NS = 2_000_000_000


def _not_older(output_ns: int, photo_ns: int) -> bool:
    return output_ns + TIMES_KEPT_TO_NS >= photo_ns


def images_written(folder: str | os.PathLike, names: list[str], inputs: list[Path],
                   since_ns: Optional[int], overwrite: bool = True) -> set[int]:
    """Which of a library's images (output `names` in `folder`, read from `inputs`) the
    stopped run wrote: each output is whole once there (renamed into place); one older than
    the run is an earlier run's, and one older than its input was made from another picture.
    An output takes its photo's times, every run's alike: its change time (ctime, which no
    program sets) tells when it was written. A stopped run that kept the outputs there (not
    `overwrite`) goes on keeping them: every output not older than its photo counts."""
    if not overwrite:
        return outputs_there(folder, names, inputs)[0]
    since = -1 if since_ns is None else since_ns - CLOCK_SLACK_NS
    done = set()
    for i, (name, src) in enumerate(zip(names, inputs)):
        try:
            st, photo = (Path(folder) / name).stat(), src.stat().st_mtime_ns
            if st.st_ctime_ns >= since and _not_older(st.st_mtime_ns, photo):
                done.add(i)
        except OSError:   # not written, or gone meanwhile
            continue
    return done


def outputs_there(folder: str | os.PathLike, names: list[str],
                  inputs: list[Path]) -> tuple[set[int], set[int]]:
    """(kept, stale) of a library's images (output `names` in `folder`, read from `inputs`):
    those whose output is there and not older than its input, and those whose output is older
    than its input (the photo changed since)."""
    kept, stale = set(), set()
    for i, (name, src) in enumerate(zip(names, inputs)):
        try:
            t = (Path(folder) / name).stat().st_mtime_ns
            (kept if _not_older(t, src.stat().st_mtime_ns) else stale).add(i)
        except OSError:   # not written, or gone meanwhile
            continue
    return kept, stale


def images_done(folder: str | os.PathLike, start: int = 0,
                since_ns: Optional[int] = None) -> int:
    """How many frames from frame_000000 on an image folder holds in a row: a run writes them
    in order, each atomically, so these are whole and the next one is where to go on.
    `since_ns`: when the stopped run began writing; older images are an earlier run's (a
    complete one's, into the same folder), not the stopped run's."""
    n = start
    while True:
        image = Path(folder) / f"frame_{n:06d}.png"
        try:
            if not image.is_file() or (since_ns is not None and image.stat().st_mtime_ns
                                       < since_ns - CLOCK_SLACK_NS):
                return n
        except OSError:   # gone meanwhile
            return n
        n += 1
