"""`TileBar`: a labels run's progress bar, in tiles over the whole selection (in images where each
is one tile). Counted in images
it sat still for minutes on a 48-megapixel photo, its rate and ETA those of the images so far.
The tiles of each image are planned from its file's header (or its video's frame size) before
the run, and corrected as the teacher reports them."""
from __future__ import annotations

import os
from typing import Optional

from .sources import Sample


class TilePlan:
    """The tiles the teacher runs on a sample at `tile` and `overlap`, without decoding it."""

    def __init__(self, tile: int, overlap: int):
        self.tile, self.overlap = tile, overlap
        self._video_sizes: dict[str | os.PathLike, Optional[tuple[int, int]]] = {}

    def tiles(self, sample: Sample) -> int:
        """From its file's header or its video's frame size; 0 where they do not say (counted
        when it runs)."""
        from runtime.imageio import file_header_size
        from runtime.tiling import count_tiles

        from ..restormer import Restormer
        size = None
        try:
            if sample.frame is None:
                size = file_header_size(sample.input)
            else:
                sizes = self._video_sizes
                if sample.input not in sizes:
                    import cv2
                    cap = cv2.VideoCapture(str(sample.input))
                    w, h = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                            int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
                    cap.release()
                    sizes[sample.input] = (w, h) if w > 0 and h > 0 else None
                size = sizes[sample.input]
        except OSError:
            pass
        # Square tiles: an EXIF turn keeps the count.
        return count_tiles(size[1], size[0], self.tile, self.overlap,
                           Restormer.multiple) if size else 0


class TileBar:
    """The bar over `planned` (sample name -> tiles the teacher is expected to run: labels
    already made alike plan none; their input's hash, checked as each comes, may still call
    for the teacher, whose tiles are added then)."""

    def __init__(self, planned: dict[str, int], n_samples: int, tag: str, progress: bool):
        from runtime.progress import progress as bar
        # Images, where each is planned as one tile (crops no bigger than a tile: the photo
        # corpus's 256x256 pairs at --tile 512): "12/1956 tile" beside "13/1956: name" read as
        # two counts of different things. Counted as each image ends, as its one tile would be.
        self.images = bool(planned) and set(planned.values()) == {1}
        self.bar = bar(total=sum(planned.values()), desc=f"{tag}labels",
                       unit="image" if self.images else "tile",
                       quiet=not progress, dynamic_ncols=True)
        self.planned, self.n_samples = planned, n_samples
        self._base = 0   # the bar's count when this sample began
        self._plan = 0   # this sample's tiles as planned, then as the teacher reports them

    def start(self, i: int, sample: Sample, psnr: str) -> None:
        """Sample `i` (from 0) begins; `psnr`: the last label's score, shown after its name."""
        self.bar.set_postfix_str(f"{i + 1}/{self.n_samples}: {sample.name}{psnr}",
                                 refresh=False)
        self._base, self._plan = self.bar.n, self.planned.get(sample.name, 0)

    def on_tile(self, n: int, total: int) -> None:
        """The teacher's report: `n` of this sample's `total` tiles done."""
        if self.images:   # the image done once its tiles all are (more than planned: a header
            n, total = (n // total if total else 0), 1   # that gave a wrong size)
        if total != self._plan:   # a size the header did not give, or gave wrong
            self.bar.total += total - self._plan
            self._plan = total
        self.bar.n = self._base + n
        self.bar.refresh()

    def end(self, ran: bool) -> None:
        """The sample is done: its tiles all counted where the teacher ran, else taken off the
        plan (skipped, reused or failed: its tiles that did not run)."""
        if ran:
            self.bar.n = self._base + self._plan
        else:
            self.bar.total -= self._plan - (self.bar.n - self._base)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def takes_on_tile(teacher) -> bool:
    """Whether `teacher.sharpen` takes on_tile= (distill.teacher.Teacher's does; a stub
    written before it may not). Named, not through **kw: a wrapper's **kw may be passed on to
    a sharpen that does not take it."""
    import inspect
    try:
        return "on_tile" in inspect.signature(teacher.sharpen).parameters
    except (TypeError, ValueError):
        return False
