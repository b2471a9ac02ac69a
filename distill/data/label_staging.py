"""The temp files a labels run writes its images to before they go in place: staged beside
their final names (hidden, named as atomic writes name theirs), and those a killed run left
behind removed."""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import numpy as np

from .label_cache import FRAMES_DIR, LABELS_DIR


def remove_stale_temp_files(out_dir: Path, min_age_s: float = 600.0) -> None:
    """Temp files of writes killed mid-way (atomic writes name them .NAME.PID.XXXX.png/.tmp,
    hidden so no reader picks them up); ones young enough to belong to a concurrent run
    stay."""
    now = time.time()
    for folder in (out_dir, out_dir / LABELS_DIR, out_dir / FRAMES_DIR):
        if not folder.is_dir():
            continue
        for p in [*folder.glob(".*.tmp"), *folder.glob(".*.png")]:
            with contextlib.suppress(OSError):
                if now - p.stat().st_mtime > min_age_s:
                    p.unlink()


def stage_image(path: Path, rgb: np.ndarray, bits: int) -> Path:
    """`rgb` written to a hidden temp file beside `path` (named as atomic writes name theirs,
    which the next run removes if a kill leaves it), for `ManifestWriter._put_in_place`."""
    import tempfile

    from ..images import write_image
    from .label_claims import make_shared_folder
    make_shared_folder(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".png",
                               dir=path.parent)
    os.close(fd)
    try:
        write_image(tmp, rgb, bits=bits)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None and e.filename == tmp:
            # A full disk named the hidden temp file, which is gone: the label is named.
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    return Path(tmp)
