"""The display window: `WindowSink` shows each frame with its input (side by side, or split at
the middle) in an OpenCV window (`sharpen run --show`) with an fps / latency overlay, q or Esc
stopping the run; `check_display` refuses before the run starts where no window can open."""
from __future__ import annotations

import os
import sys
import threading
from typing import Optional, Union

import cv2
import numpy as np

from .compare_sink import compose
from .options import option
from .sinks import Sink, SinkError


def has_display() -> bool:
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def check_display(output: Optional[Union[str, os.PathLike]], flags: bool = False) -> None:
    """SinkError when a window cannot open; `output`: where the run would also write, which
    the message then names instead of suggesting the option already given."""
    if has_display():
        return
    show = option("show", True, flags)
    rest = (f"{option('output', output, flags)} saves the result" if output
            else f"or use {option('output', flags=flags)} to save the result")
    raise SinkError(f"{show} needs a display (DISPLAY/WAYLAND_DISPLAY is not set); run "
                    f"without {show}{': ' if output else ', '}{rest}")


class WindowSink(Sink):
    """An OpenCV window with an fps / latency overlay; q or Esc stops the run."""

    def __init__(self, view: str, stop: threading.Event, overlay=None,
                 title: str = "sharpen (original | sharpened)", flags: bool = False,
                 output: Optional[Union[str, os.PathLike]] = None) -> None:
        """output: where the run also writes, which a refusal then names instead of
        suggesting the option already given."""
        show = option("show", True, flags)
        check_display(output, flags)
        self.view, self.stop, self.overlay, self.title = view, stop, overlay, title
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
        except cv2.error:
            rest = (f"or run without {show}: {option('output', output, flags)} saves the "
                    "result"
                    if output else f"or use {option('output', flags=flags)} to save the result")
            raise SinkError(f"{show} needs an OpenCV build with GUI support (this one is "
                            "headless: install opencv-python instead of opencv-python-headless, "
                            f"{rest})") from None

    def write(self, original: np.ndarray, sharpened: np.ndarray, name: str) -> None:
        img = compose(original, sharpened, self.view)
        text = self.overlay() if self.overlay else ""
        if text:
            cv2.putText(img, text, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 4,
                        cv2.LINE_AA)
            cv2.putText(img, text, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 1,
                        cv2.LINE_AA)
        cv2.imshow(self.title, img)
        if (cv2.waitKey(1) & 0xFF) in (ord("q"), 27):
            self.stop.set()

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
        except cv2.error:
            pass
