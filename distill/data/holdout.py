"""Which samples of a data source a validation set takes, held out of the training labels.

`sharpen labels --hold-out FRACTION --val-out DIR` and `sharpen demo --data SPEC` use one rule:

1. a source with a val split apart from train (a paired root with split folders, a corpus, the
   embedded set) validates on it; nothing is held out. One with a test split but no val split
   (a GoPro root, a corpus of a few photos; of clips' frames, by the clips its corpus.json
   records) holds out of its train split by rule 2 or 3: its
   test split is what `sharpen evaluate` scores by default, and a student chosen on it was
   reported on the images it was tuned on. Only where train has too few images to spare one
   does the test split validate, with a warning that says so;
2. a source of several clips or subfolders (footage: clips, frame folders, GoPro sequences;
   or one folder of the frames of several clips, named CLIP_NUMBER: reds-mini) holds out
   whole ones: the frames of one clip are near-duplicates of each other, so a
   validation frame of a clip the student trains on scores what it has seen. The clips (and
   folders) held out are those whose images add up nearest FRACTION of all samples, never all
   of them (of two choices as near, the one of fewer images; of two of as many, the one whose
   first clip in name order comes later);
3. anything else (one folder of images, one clip): its last FRACTION of samples, as a block
   rather than every k-th (neighbouring frames are near-duplicates). For the frames of a clip,
   or of a folder of frames (every image's name ends in a number: 000001.png, frame_12.png;
   in the order of those numbers), a gap as wide as the block, before it, is used by neither.

Whole clips can miss FRACTION by far (two clips of 10 frames: half, whatever was asked);
`HoldOut.shortfall` says so, and `sharpen labels` prints it.

The rule reads only the source's listing, so a re-run on the same source holds out the same
samples. Torch-free (sources need numpy and OpenCV only).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Optional

import numpy as np

from runtime.console import count, shell_join
from runtime.warn import warn

from .sources import Sample, SourceError, resolve_source

__all__ = ["HoldOut", "hold_out"]

_FRAME_SUFFIX = re.compile(r"_\d{6}$")
_NUMBERED = re.compile(r"^(.*?)(\d+)$")


@dataclass(frozen=True)
class HoldOut:
    """Where validation images come from. `split`: the split the validation cache is labelled
    from (another than "train": the source's own, and nothing is held out). `train`, `held`,
    `gap`: sample names of the training labels, of the validation labels and of neither."""
    fraction: float
    split: str
    rule: str                      # "split", "clips" (whole clips/folders) or "tail"
    train: tuple[str, ...] = ()
    held: tuple[str, ...] = ()
    gap: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()   # the clips/folders held out (rule "clips")
    n_groups: int = 0
    group_sizes: tuple[int, int] = (0, 0)   # the fewest and most images of one clip/folder
    reason: str = ""               # why a source with splits is held out of train

    @property
    def not_train(self) -> frozenset[str]:
        """Names the training cache leaves out (`run_labels(exclude=...)`)."""
        return frozenset(self.held) | frozenset(self.gap)

    @property
    def not_val(self) -> frozenset[str]:
        """Names the validation cache leaves out."""
        return frozenset(self.train) | frozenset(self.gap)

    def describe(self) -> str:
        if self.rule == "split":
            return f"its own {self.split} split (nothing held out of train)"
        n = len(self.train) + len(self.held) + len(self.gap)
        share = f"{len(self.held)} of its {n} images ({len(self.held) / n:.0%})"
        if self.rule == "clips":
            shown = ", ".join(self.groups[:4]) + (
                f" and {len(self.groups) - 4} more" if len(self.groups) > 4 else "")
            return (f"{len(self.groups)} of its {self.n_groups} clips/folders, whole ({shown}): "
                    f"{share}")
        them = "it" if len(self.held) == 1 else "them"
        gap = (f", the {count(len(self.gap), 'frame')} before {them} used by neither "
               "(near-duplicates of both sides)" if self.gap else "")
        return f"its last {share}{gap}"

    def shortfall(self) -> Optional[str]:
        """Why the share held out is far from `fraction` (more than half the smaller of the
        two shares asked for away from it: 0.2 asked, under 0.1 or over 0.3 held out), or
        None. Whole clips held out come as near as their sizes allow, which may not be near."""
        if self.rule == "split":
            return None
        n = len(self.train) + len(self.held) + len(self.gap)
        share = len(self.held) / n
        if abs(share - self.fraction) <= min(self.fraction, 1 - self.fraction) / 2:
            return None
        said = (f"{share:.0%} of the images ({len(self.held)} of {n}) held out, not "
                f"{self.fraction:.0%}")
        if self.rule == "clips":
            lo, hi = self.group_sizes
            sizes = f"{lo} images each" if lo == hi else f"{lo} to {hi} images each"
            return (f"{said}: whole clips/folders are held out, so that no frame of a held-out "
                    f"clip is trained on (its neighbours are near-duplicates), and no choice "
                    f"of its {self.n_groups} clips/folders ({sizes}) comes nearer; "
                    f"more, shorter clips would let a share nearer {self.fraction:.0%} be "
                    "held out")
        return f"{said}: it has {n} images, and each cache needs one at least"

    def record(self, role: str, other: str) -> dict[str, Any]:
        """What a labels run record (run.json) keeps of it: `role` "training" or "validation",
        `other` the cache holding the rest."""
        rec: dict[str, Any] = {"fraction": self.fraction, "rule": self.rule, "role": role,
                               "other_cache": other, "split": self.split}
        if self.rule != "split":
            rec.update(training=len(self.train), validation=len(self.held), gap=len(self.gap))
        if self.groups:
            rec["groups"] = list(self.groups)
        return rec


def _group(s: Sample) -> str:
    """The clip of a video frame (its name without the frame index), or the folder of an image
    (as its name has it; "./" for the top level)."""
    if s.frame is not None:
        return _FRAME_SUFFIX.sub("", s.name)
    folder = s.name.rpartition("/")[0]
    return f"{folder}/" if folder else "./"


def evaluate_command(spec: str, gopro_blur: str = "blur") -> str:
    """The `sharpen evaluate` command that scores the test split of `spec` as training read it:
    with --gopro-blur where that was not the default (a model trained on GoPro's blur_gamma/
    was pointed at a command that scored blur/)."""
    words = ["sharpen", "evaluate", "--data", str(spec)]
    if gopro_blur != "blur":
        words += ["--gopro-blur", gopro_blur]
    return shell_join(words)


def hold_out(spec: str, fraction: float, gopro_blur: str = "blur", progress: bool = True,
             needs: str = "a validation hold-out", characters: bool = False) -> HoldOut:
    """The hold-out of `spec` (see the module docstring). SourceError for a source that cannot
    be split (fewer than 2 samples; `needs` names who asks) or a fraction outside (0, 1).
    `characters`: the one of the versions that listed names by their characters (frame10
    before frame2), which caches labelled by them hold."""
    problem = check_fraction(fraction, "the hold-out fraction")
    if problem:
        raise SourceError(problem)
    info = resolve_source(spec, split="train", gopro_blur=gopro_blur, progress=progress)
    own = _own_split(spec, info.split, gopro_blur, progress) if info.split else None
    if own == "val":
        return HoldOut(fraction, "val", "split")
    samples = info.samples
    if characters:
        samples = sorted(samples, key=lambda s: (s.input.as_posix(), s.frame or 0))
    n = len(samples)
    if n < 2 and own == "test":
        warn(f"{spec} has no val split and {count(n, 'training image')}, too few to hold one "
             "out: validating on its test split, the images "
             f"`{evaluate_command(spec, gopro_blur)}` scores by default; a model chosen on "
             "them scores higher there than on images it never saw: add training images, or "
             "give it a val split")
        return HoldOut(fraction, "test", "split")
    if n < 2:
        raise SourceError(f"{info.describe()}: {needs} needs at least 2 images (one to train on, "
                          "one to validate on)")
    plan = _from_samples(fraction, samples, _corpus_groups(spec, samples))
    if own == "test":
        plan = replace(plan, reason=(
            f"{spec} has no val split: held out of its train split instead, so that its test "
            "split, which `sharpen evaluate` scores by default, stays unseen by training and "
            "validation"))
    return plan


def _own_split(spec: str, train: str, gopro_blur: str, progress: bool) -> Optional[str]:
    """The source's own split that is not `train` and has images: "val", else "test", else
    None (an empty or missing one does not count: a corpus of few photos has no val pairs)."""
    for split in ("val", "test"):
        try:
            other = resolve_source(spec, split=split, gopro_blur=gopro_blur, progress=progress)
        except SourceError:
            continue
        if other.split and other.split != train:
            return split
    return None


def _corpus_groups(spec: str, samples: list[Sample]) -> Optional[dict[str, str]]:
    """A corpus of clips' frames: each pair's clip, or its photo (NAME_COPY: the copies of one
    photo are crops of it), by sample name; None for another source or a corpus of photos."""
    from .corpus import corpus_clips
    clips = corpus_clips(spec)
    if not clips:
        return None
    photo = {s.name: s.name.rpartition("_")[0] or s.name for s in samples}
    return {name: clips.get(p, p) for name, p in photo.items()}


def _from_samples(fraction: float, samples: list[Sample],
                  group_of: Optional[dict[str, str]] = None) -> HoldOut:
    """Rules 2 and 3 over `samples` (at least 2); `group_of` each sample's clip where the
    names do not tell it (`_corpus_groups`)."""
    n = len(samples)
    k = min(n - 1, max(1, round(n * fraction)))
    groups: dict[str, list[str]] = {}
    for s in samples:
        groups.setdefault(group_of[s.name] if group_of else _group(s), []).append(s.name)
    if len(groups) == 1:
        # Frames of several clips exported into one folder (clipA_0001.png, clipB_0001.png):
        # the clips, by the name before the number. As one run of frames the tail's gap held
        # frames of other clips, and its block cut a clip in two.
        groups = _numbered_runs([s.name for s in samples]) or groups
    if len(groups) > 1:
        return _whole_groups(fraction, groups, k, n * fraction)
    names = [s.name for s in samples]
    # Video frames next to the block are near-duplicates of its first frames: training on
    # frame 15 and validating on frame 16 scores what was trained on. A gap as wide as the
    # block (used by neither) where there are frames enough to keep some for training. A
    # folder of frames exported from a clip is the same footage (it had no gap).
    frames = any(s.frame is not None for s in samples)
    if not frames and (ordered := _frame_order(names)) is not None:
        frames, names = True, ordered
    gap = min(k, n - k - 1) if frames else 0
    return HoldOut(fraction, "train", "tail", train=tuple(names[:n - k - gap]),
                   held=tuple(names[n - k:]), gap=tuple(names[n - k - gap:n - k]))


def _frame_order(names: list[str]) -> Optional[list[str]]:
    """`names` in the order of the numbers they end in where every one does (a folder of
    frames; frame_9 before frame_10), else None (images that are not frames of one take,
    photos named a1, b2, c3 among them)."""
    keys = []
    for name in names:
        m = _NUMBERED.match(name)
        if m is None:
            return None
        keys.append((m.group(1), int(m.group(2)), name))
    prefixes = [prefix for prefix, *_ in keys]
    if len(set(prefixes)) == len(prefixes) > 1:   # a1, b2, c3: named photos, not one take
        return None
    return [name for *_, name in sorted(keys)]


def _numbered_runs(names: list[str]) -> Optional[dict[str, list[str]]]:
    """`names` by the part before the number each ends in ("clipA_*"), each in number order,
    where every name ends in a number, there are several such parts, each of several frames
    and none under a quarter of the longest; else None (one take, or photos named a1, b2)."""
    runs: dict[str, list[tuple[int, str]]] = {}
    for name in names:
        m = _NUMBERED.match(name)
        if m is None:
            return None
        runs.setdefault(m.group(1), []).append((int(m.group(2)), name))
    sizes = [len(v) for v in runs.values()]
    # Clips, not one take beside a stray cover1.png (held out alone, it was the whole
    # validation set) nor two cameras' photo series of very different lengths.
    if len(runs) < 2 or min(sizes) < 2 or min(sizes) * 4 < max(sizes):
        return None
    return {f"{prefix}*": [name for _, name in sorted(runs[prefix])] for prefix in sorted(runs)}


def _whole_groups(fraction: float, groups: dict[str, list[str]], k: int,
                  target: float) -> HoldOut:
    order = list(reversed(list(groups)))   # from the last in name order
    sizes = [len(groups[g]) for g in order]
    taken = [order[i] for i in _nearest_sum(sizes, target, min(2 * k, sum(sizes) - 1))]
    if not taken:   # every clip alone is more than twice the share asked for
        taken = [min(order, key=lambda g: len(groups[g]))]
    chosen = set(taken)
    return HoldOut(fraction, "train", "clips",
                   train=tuple(n for g in groups if g not in chosen for n in groups[g]),
                   held=tuple(n for g in groups if g in chosen for n in groups[g]),
                   groups=tuple(g for g in groups if g in chosen), n_groups=len(groups),
                   group_sizes=(min(sizes), max(sizes)))


def _nearest_sum(sizes: list[int], k: float, cap: int) -> list[int]:
    """Indices of the sizes whose sum is nearest `k` (the smaller sum of two as near), of the
    non-empty choices adding up to at most `cap`; [] where there is none. Of the choices of one
    sum, the one whose last index is the lowest. Taking each clip that brought the sum nearer,
    in turn, held out 4 of 5 images for 0.3 of clips of 1 and 4 (the 4 came first, as near as
    nothing), or a 228-frame clip for 145 that 133 + 10 + 3 made up: subset sums, a row of
    booleans per clip, cost little beside labelling the frames. `k` is the share's image count
    unrounded: rounded first (3.3 to 3), 1 and 5 were as near and 1 (9% for 0.3 of 11) won."""
    reach = np.zeros(cap + 1, bool)
    reach[0] = True
    first = np.full(cap + 1, -1, np.int64)   # the index that first made each sum
    for i, size in enumerate(sizes):
        if size > cap:
            continue
        new = np.zeros_like(reach)
        new[size:] = reach[:cap + 1 - size]
        new &= ~reach
        first[new] = i
        reach |= new
        if k == int(k) and reach[int(k)]:
            break   # exact: later indices would only tie
    sums = np.flatnonzero(reach[1:]) + 1
    if not len(sums):
        return []
    s = int(sums[np.argmin(np.abs(sums - k))])   # the first of a tie is the smaller sum
    # Made by `first[s]` from a sum reached before it, so each index is taken once.
    taken = []
    while s:
        i = int(first[s])
        taken.append(i)
        s -= sizes[i]
    return taken


def check_fraction(value: Optional[float], flag: str = "--hold-out") -> Optional[str]:
    """Why `value` is no hold-out fraction, or None."""
    if value is not None and not 0 < value < 1:
        return (f"{flag} must be a fraction in (0, 1) of the source's images (e.g. 0.2), got "
                f"{value:g}")
    return None
