"""The counts and scores a `sharpen labels` run reports: `LabelStats`, the PSNR/SSIM of a
label and of its input against the ground truth, and the advice on failed images."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from runtime.console import count
from runtime.warn import warn


GT_METRICS = ("teacher_psnr", "teacher_ssim", "input_psnr", "input_ssim", "ssim_formula")


def old_ssim(entry: dict) -> bool:
    """Whether a manifest entry's SSIMs against the ground truth are another formula's than
    this version's: a cache labelled before the entries recorded it holds the 7x7 window's,
    which its summary averaged with new ones as if the same measure."""
    from ..metrics import SSIM_ID
    return "teacher_ssim" in entry and entry.get("ssim_formula") != SSIM_ID


def rescorable(known: dict[str, dict], samples: list) -> int:
    """How many of `samples` have a label here (entries `known`) scored against the ground
    truth by another SSIM than this version's (`old_ssim`): a run scores them again."""
    return sum(1 for s in samples if s.gt and (e := known.get(s.name))
               and e.get("status") == "ok" and old_ssim(e))


def rescoring(known: dict[str, dict], samples: list) -> Optional[str]:
    """What to say before a run whose `samples` have labels (entries `known`) scored by another
    SSIM than this version's (`old_ssim`): each is read and scored again, which takes long on a
    big cache of large images though the teacher does not run."""
    n = rescorable(known, samples)
    if not n:
        return None
    return (f"{count(n, 'label')} here {'was' if n == 1 else 'were'} scored against the ground "
            "truth with an older version's SSIM: each is scored again with this version's "
            "(its input, label and ground truth read; the teacher does not run for a label "
            "kept)")


def psnr_ssim(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    from ..metrics import psnr, ssim
    # Identical images have infinite PSNR, which JSON cannot hold: cap it.
    return min(psnr(pred, gt), PSNR_CAP), ssim(pred, gt)


PSNR_CAP = 100.0


def mean_of(values: list[float]) -> Optional[float]:
    vals = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


@dataclass
class LabelStats:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    total: int = 0
    undecodable: int = 0   # of `failed`: inputs that cannot be decoded, which a rerun fails too
    unopenable: int = 0    # of `undecodable`: frames of videos OpenCV cannot open (maybe a codec)
    too_large: int = 0     # of `failed`: inputs over SHARPEN_MAX_PIXELS, which a rerun fails too
    reused: int = 0        # copied from the other cache of a hold-out (`reuse_from`): no teacher
    repointed: int = 0     # of `skipped`: the same input at a new path (the data folder moved)
    rescored: int = 0      # of `skipped`: scored against the ground truth again (`old_ssim`)
    shared: int = 0        # of `skipped`: labelled by another run into the cache meanwhile
    # Clips of a footage folder that could not be opened, so none of their frames was listed:
    # bad files like an undecodable image, but not among `total`.
    videos_left_out: int = 0


def failed_advice(stats: LabelStats) -> str:
    """What to do about a run's failed images. "Re-run to retry" was said of all of them: an
    image or video frame that cannot be decoded fails again on every run (it is retried, as
    its file may be replaced), and so does one over the pixel budget until SHARPEN_MAX_PIXELS
    is raised; a teacher that ran out of memory, or a file unreadable for now, may not."""
    bad, big = stats.undecodable, stats.too_large
    other = stats.failed - bad - big
    if not bad and not big:
        return f"{count(other, 'image')} failed (see warnings above); re-run to retry"
    fix = ("replace or remove the damaged files" if not stats.unopenable else
           "replace or remove the damaged files, and convert the videos this OpenCV build "
           "cannot open (e.g. with ffmpeg to H.264 or MJPG)")
    kind = ("damaged, truncated or not an image" if not stats.unopenable else
            "damaged, truncated, not an image, or a video in a codec this OpenCV build lacks")

    def them(n: int) -> str:   # "1 image failed: it exceeds", not "they exceed"
        return "it" if n == 1 else "them"

    def raise_it(n: int) -> str:
        return (f"raise SHARPEN_MAX_PIXELS above {'its' if n == 1 else 'their'} size (the "
                f"warnings above give it) and re-run: a re-run alone fails {them(n)} again")
    if not other and not big:
        return (f"{count(bad, 'image')} failed (see warnings above): "
                f"{'its' if bad == 1 else 'their'} input cannot be decoded ({kind}); {fix}: "
                f"re-running fails {them(bad)} again")
    if not other and not bad:
        return (f"{count(big, 'image')} failed (see warnings above): "
                f"{'it exceeds' if big == 1 else 'they exceed'} the pixel budget; "
                f"{raise_it(big)}")
    parts = ([f"{bad} cannot be decoded ({kind}; {fix}: re-running fails {them(bad)} again)"]
             if bad else [])
    parts += ([f"{big} exceed{'s' if big == 1 else ''} the pixel budget ({raise_it(big)})"]
              if big else [])
    parts += [f"re-run to retry the other {other}"] if other else []
    return f"{count(stats.failed, 'image')} failed (see warnings above): " + "; ".join(parts)


def skipped_detail(stats: LabelStats) -> str:
    """What became of the labels a run skipped as up to date, after "up to date" in its
    summary and in the line of an interrupted run."""
    # Said: two users labelling one cache at once read the other's labels as made before.
    theirs = (f"; {stats.shared} of them labelled by another run into this cache while this "
              "one ran" if stats.shared else "")
    # Said: after a move, "skipped (up to date)" alone left users unsure the labels of the
    # old path were kept for the new one rather than stale.
    moved = (f"; {stats.repointed} of them found by content at their input's new path"
             if stats.repointed else "")
    # Said: the means changed from the last run's by the formula alone.
    rescored = (f"; {stats.rescored} of them re-scored against the ground truth with this "
                "version's SSIM, their labels kept" if stats.rescored else "")
    return theirs + moved + rescored


def say_summary(stats: LabelStats, samples: list, known: dict[str, dict], donor: Optional[Path],
                tag: str = "", say: Callable[[str], None] = print) -> None:
    """A labels run's closing lines: its counts, then the mean scores against the ground truth
    of `samples`' entries in `known`; `donor`: the other hold-out cache labels were reused
    from."""
    ents = [known.get(s.name) for s in samples]
    ents = [e for e in ents if e and e.get("status") == "ok"]
    per = f", {stats.seconds / stats.done:.2f} s per image" if stats.done else ""
    left = stats.videos_left_out
    # Not "OpenCV cannot read it": a clip over the pixel budget is left out too.
    left_out = (f"; {left} video{'s' * (left != 1)} left out (the warning above says why)"
                if left else "")
    # Reused: made in the other cache of a hold-out from the same input by the same teacher
    reused = f", {stats.reused} reused from {donor}" if stats.reused else ""
    say(f"{tag}labels: {stats.done} done, {stats.skipped} skipped (up to date"
        f"{skipped_detail(stats)})"
        f"{reused}, {stats.failed} failed, of {stats.total}{per}{left_out}")
    tp = mean_of([e.get("teacher_psnr") for e in ents])
    if tp is not None:
        n = sum(e.get("teacher_psnr") is not None for e in ents)
        # Not averaged with this version's: SSIMs of an older one a run could not score again.
        older = sum(old_ssim(e) for e in ents)
        ts, is_ = (mean_of([e.get(k) for e in ents if not old_ssim(e)])
                   for k in ("teacher_ssim", "input_ssim"))
        ip = mean_of([e.get("input_psnr") for e in ents])
        left = f" (SSIM: {older} scored by an older version's left out)" if older else ""

        def f(v, spec):
            return "n/a" if v is None else format(v, spec)
        say(f"{tag}vs ground truth ({count(n, 'image')}): teacher PSNR {f(tp, '.2f')} dB SSIM "
            f"{f(ts, '.4f')}; input PSNR {f(ip, '.2f')} dB SSIM {f(is_, '.4f')}{left}")
        if ip is not None and tp < ip:
            warn(f"{tag}the teacher's outputs are further from the ground truth than the "
                 f"blurred inputs ({tp:.2f} against {ip:.2f} dB PSNR): a student "
                 "distilled from these labels learns that; mix ground truth in (loss.gt, "
                 "data.gt_train) or use a teacher trained on such blur")
    if stats.failed:
        warn(f"{tag}{failed_advice(stats)}")
