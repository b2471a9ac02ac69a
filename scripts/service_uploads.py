"""A web service's uploads through a pool of worker threads sharing one backend: each worker
decodes an upload's bytes, sharpens them and encodes the answer like the upload, as the README's
Python API section shows. Checks every answer is the bytes one thread gives, and prints the
process's resident memory at load and every --every calls (does it grow?), with the host.

    python scripts/service_uploads.py export/student-fast.onnx \\
        --photos ../shared/data/photos/kodak24 --uploads 1040 --workers 4 --threads 1

The uploads are the photos re-encoded in memory, in turn: a 1920x1080 JPEG (--large), and 320x180
ones (--small) as JPEG, PNG, grey PNG and RGBA PNG.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import threading

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from runtime import FrameProcessor, decode_bytes, encode_bytes, load_backend
from runtime.image_sources import name_order

EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def _rss_mib() -> float:
    """This process's resident memory now (Linux /proc), in MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _host() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.processor() or platform.machine()
    return f"{name}, {os.cpu_count()} cores"


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)x(\d+)", text.strip().lower())
    if not m or 0 in (w := int(m[1]), h := int(m[2])):
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT (e.g. 320x180)")
    return w, h


def _variants(photo: np.ndarray, large_size: tuple[int, int],
              small_size: tuple[int, int]) -> list[bytes]:
    """One photo as the five kinds of upload (module docstring)."""
    large = cv2.resize(photo, large_size, interpolation=cv2.INTER_CUBIC)
    small = cv2.resize(photo, small_size, interpolation=cv2.INTER_AREA)
    alpha = np.full(small.shape[:2], 255, np.uint8)
    alpha[:, : small.shape[1] // 3] = 128           # a half-transparent band, so alpha matters
    kinds = [(".jpg", large), (".jpg", small), (".png", small),
             (".png", cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)),
             (".png", np.dstack([small, alpha]))]
    out = []
    for ext, image in kinds:
        ok, buf = cv2.imencode(ext, image)
        if not ok:
            raise SystemExit(f"cannot encode a {ext} upload")
        out.append(buf.tobytes())
    return out


def _answer(proc: FrameProcessor, upload: bytes, ext: str) -> bytes:
    return encode_bytes(proc(decode_bytes(upload, "upload")), ext, like=upload)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path, help="an exported model (.onnx, .tflite, .engine)")
    ap.add_argument("--photos", type=Path, required=True, help="a folder of photos")
    ap.add_argument("--uploads", type=int, default=1040, help="uploads in all (default 1040)")
    ap.add_argument("--workers", type=int, default=4, help="worker threads (default 4)")
    ap.add_argument("--threads", type=int, default=1,
                    help="the shared backend's threads= (default 1)")
    ap.add_argument("--every", type=int, default=130,
                    help="print resident memory every N calls (default 130)")
    ap.add_argument("--ext", default=".png", help="the answers' format (default .png)")
    ap.add_argument("--large", type=_size, default=(1920, 1080), metavar="WxH",
                    help="the large JPEGs' size (default 1920x1080)")
    ap.add_argument("--small", type=_size, default=(320, 180), metavar="WxH",
                    help="the small uploads' size (default 320x180)")
    args = ap.parse_args(argv)
    if min(args.uploads, args.workers, args.threads, args.every) < 1:
        ap.error("--uploads, --workers, --threads and --every must be at least 1")
    files = [p for p in sorted(args.photos.iterdir(), key=name_order) if p.suffix.lower() in EXTS] \
        if args.photos.is_dir() else []
    if not files:
        ap.error(f"--photos {args.photos}: no images in it")

    backend = load_backend(args.model, threads=args.threads)
    proc = FrameProcessor(backend)
    rss = [_rss_mib()]
    distinct: list[bytes] = []
    for path in files:
        photo = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if photo is None:
            ap.error(f"--photos: cannot read {path}")
        distinct += _variants(photo, args.large, args.small)
        if len(distinct) >= args.uploads:
            break
    # The one-thread answers, one per distinct upload, before the pool starts.
    reference = [_answer(proc, upload, args.ext) for upload in distinct]

    done = 0
    lock = threading.Lock()

    def work(i: int) -> bool:
        nonlocal done
        same = _answer(proc, distinct[i % len(distinct)], args.ext) \
            == reference[i % len(distinct)]
        with lock:
            done += 1
            if done % args.every == 0:
                rss.append(_rss_mib())
        return same

    with ThreadPoolExecutor(args.workers) as pool:
        same = sum(pool.map(work, range(args.uploads)))
    backend.close()
    print(f"{args.model.name}: {args.uploads} uploads ({len(distinct)} distinct) through "
          f"{args.workers} workers sharing one backend (threads={args.threads}): "
          f"{same} answers the one-thread bytes")
    print(f"resident MiB at load, then every {args.every} calls: "
          + ", ".join(f"{m:.0f}" for m in rss))
    print(f"host: {_host()}")
    return 0 if same == args.uploads else 1


if __name__ == "__main__":
    sys.exit(main())
