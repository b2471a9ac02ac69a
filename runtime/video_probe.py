"""Why a video cannot be written: OpenCV's writer fails without a reason, so `why_unwritable`
tries the file system, then short probe videos beside the output, to say whether the folder,
the frame size, the frame rate or the OpenCV build's encoders are why, and what to do."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from .console import quiet_native_stderr
from .locale_text import windows_ascii_hint
from .options import option


PROBE_SIZE = (64, 48)   # a frame size every codec here takes


def _plays(path: Path, codec: str, size: tuple[int, int], fps: float) -> bool:
    """Whether OpenCV writes a two-frame `codec` video of `size` at `fps` in `path`'s container
    that plays back (a probe beside `path`, removed after)."""
    fd, probe = tempfile.mkstemp(prefix=".probe.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        with quiet_native_stderr():
            writer = cv2.VideoWriter(probe, cv2.VideoWriter.fourcc(*codec), fps, size)
            if not writer.isOpened():
                return False
            for _ in range(2):
                writer.write(np.full((size[1], size[0], 3), 128, np.uint8))
            writer.release()
            cap = cv2.VideoCapture(probe)
            ok = cap.isOpened() and cap.read()[0]
            cap.release()
        return bool(ok)
    except (OSError, cv2.error):
        return False
    finally:
        Path(probe).unlink(missing_ok=True)


def size_refused(path: Path, codec: str, size: Optional[tuple[int, int]], fps: float,
                 flags: bool = False) -> str:
    """Why `codec` failed on frames of `size` (width, height) at `fps`, when what it refuses is
    that size or that rate (a probe of the usual size and rate works); '' when it is not."""
    if not size or not _plays(path, codec, PROBE_SIZE, 30.0):
        return ""
    where = (f"write images instead ({option('output', 'DIR', flags)}, or "
             f"{option('output', 'NAME.png', flags)} for one image)")
    if size != PROBE_SIZE and not _plays(path, codec, size, 30.0):
        small = " (too small for a video)" if min(size) < 16 else ""
        return (f"the {codec} codec cannot store {size[0]}x{size[1]} frames{small}; "
                f"{PROBE_SIZE[0]}x{PROBE_SIZE[1]} works: {where}")
    if fps != 30.0 and not _plays(path, codec, PROBE_SIZE, fps):
        return (f"the {codec} codec cannot store {fps:g} fps (30 works): set a rate with "
                f"{option('fps', 'N', flags)}")
    return ""


def why_unwritable(path: Path, codec: str, size: Optional[tuple[int, int]] = None,
                   fps: float = 30.0, flags: bool = False) -> str:
    """OpenCV's writer fails without a reason; find out whether the file system, the frame
    size or the rate is why."""
    try:
        with open(path, "wb"):
            pass
        path.unlink()
    except OSError as exc:
        return f"cannot write there ({exc.strerror or exc})"
    if hint := windows_ascii_hint(path):   # Python writes the name; OpenCV's writer may not
        return hint
    if why := size_refused(path, codec, size, fps, flags):
        return why
    if path.suffix.lower() == ".mp4":
        return (f"this OpenCV build has no {codec} encoder (see cv2.getBuildInformation(), "
                f"'Video I/O'); write an image folder instead ({option('output', 'DIR', flags)})")
    return (f"this OpenCV build cannot encode {codec} into {path.suffix} files; try "
            f"{option('output', 'NAME.mp4', flags)}")
