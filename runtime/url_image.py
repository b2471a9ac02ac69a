"""An image named by an http(s) URL (https://host/photo.jpg): recognised by its path's
extension (`url_image_name`), fetched once (`_fetch_image`; a URL that answers with a stream
is left to FFmpeg) and read as a local image file is (`UrlImageSource`)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional
from urllib.parse import unquote, urlsplit, urlunsplit

import numpy as np

from .image_sources import ImageSource
from .imageio import (IMAGE_EXTS, animation_frames_in, decode_first_image, max_pixels,
                      tiff_page_count_in)
from .options import option
from .source_base import SourceError, SourceLost, _interruptible
from .source_spec import shown_url
from .video_source import STREAM_TIMEOUT_S


class UrlImageSource(ImageSource):
    """The image an http(s) URL names, fetched once and then read as a local image file is
    (`decode_image`'s checks, EXIF orientation, 16 bits, its grayscale or alpha written back
    by an image output), named after the URL's file name."""

    def __init__(self, spec: str, data: bytes, name: str) -> None:
        super().__init__(spec, [Path(name)])
        # No local file: none for an output to overwrite; its pages are counted in `_data`.
        self.paths, self._data = [], data

    def _decode(self, i: int) -> np.ndarray:
        return decode_first_image(self._data, self.spec)   # the others said as a file's

    def _times(self, i: int) -> Optional[tuple[int, int]]:
        return None   # a fetch's, not the picture's

    def _bytes(self, i: int) -> bytes:
        return self._data

    def _where(self, i: int) -> str:
        return self.spec

    def _pages(self, i: int) -> tuple[int, bool]:
        return tiff_page_count_in(self._data)

    def _frames(self, i: int) -> int:
        return animation_frames_in(self._data)


def url_image_name(spec: str) -> Optional[str]:
    """The file name of the image an http(s) URL names by its path's extension (photo.jpg for
    https://host/img/photo.jpg?w=800), as a local path names an image; None for other URLs.
    The output is named after it, so it is a name every system can write (portable_name)."""
    parts = urlsplit(str(spec).strip())
    name = Path(unquote(parts.path).replace("\\", "/")).name
    if parts.scheme.lower() in ("http", "https") and Path(name).suffix.lower() in IMAGE_EXTS:
        return portable_name(name)
    return None


# Windows' device names, which no file there can have, whatever its extension.
_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"{d}{i}" for d in ("COM", "LPT") for i in range(10))}


def portable_name(name: str) -> str:
    """`name` as a file name Windows can hold too: each of <>:"|?* and control characters
    (an escaped URL's %3A is a ':') as '_', no trailing dot or space, no device name (NUL.jpg
    is _NUL.jpg). On Windows "a:b.jpg" wrote a stream of a file "a", not an image."""
    name = "".join("_" if c in '<>:"|?*' or ord(c) < 32 else c for c in name).rstrip(". ")
    return f"_{name}" if name.split(".")[0].upper() in _DEVICES else name


# Answers to an image URL that are a stream for FFmpeg to read, not one image: an MJPEG
# camera's multipart/x-mixed-replace (some name theirs video.jpg), a video.
_STREAM_TYPES = ("multipart/", "video/")


def _fetch_image(spec: str, timeout: Optional[float], flags: bool = False) -> Optional[bytes]:
    """The bytes an http(s) URL that names an image answers with, or None when it answers
    with a stream, for FFmpeg to read; SourceError when it cannot be fetched. A user and
    password in the URL are sent as HTTP authentication, as FFmpeg sends them (urllib
    takes none in the URL itself)."""
    import http.client
    import urllib.error
    import urllib.request

    parts, shown = urlsplit(spec), shown_url(spec)
    url, handlers = spec, []
    if parts.username is not None:
        url = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
        keys = urllib.request.HTTPPasswordMgrWithDefaultRealm()
        keys.add_password(None, url, unquote(parts.username), unquote(parts.password or ""))
        handlers = [urllib.request.HTTPBasicAuthHandler(keys),
                    urllib.request.HTTPDigestAuthHandler(keys)]
    limit = STREAM_TIMEOUT_S if timeout is None else timeout
    most = 8 * max_pixels() + (1 << 20)   # a 16-bit BGRA image of the pixel budget, stored raw

    def fetch() -> Optional[bytes]:
        with urllib.request.build_opener(*handlers).open(url, timeout=limit or None) as answer:
            kind = answer.headers.get("Content-Type", "").strip().lower()
            if kind.startswith(_STREAM_TYPES):
                return None
            if kind.startswith("text/"):
                raise SourceError(f"image URL {shown!r} answered with a {kind.split(';')[0]} "
                                  "page, not an image (a login or error page?)")
            data = answer.read(most + 1)
        if len(data) > most:
            raise SourceError(f"image URL {shown!r} answered with more than {most:,} bytes, "
                              "more than any image the pixel budget admits (the "
                              "SHARPEN_MAX_PIXELS environment variable raises it)")
        return data

    try:
        return _interruptible(fetch)
    except urllib.error.HTTPError as e:
        e.close()
        # A server's own failure (5xx) may pass; a page not found (4xx) is the URL's.
        error = SourceLost if e.code >= 500 else SourceError
        raise error(f"cannot fetch image URL {shown!r}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        why = getattr(e, "reason", None) or e
        if isinstance(why, TimeoutError):
            why = (f"no answer within {limit:g} s ({option('timeout', flags=flags)})"
                   if limit else "no answer")
        raise SourceLost(f"cannot fetch image URL {shown!r} ({why})") from None
