"""Pack training photos for the GPU job (scripts/gpu_teacher.sh) into .gpu/photos.

The device tool sends the working tree and the carried folders, 64 MiB in all, so the photos
travel re-encoded: WebP, longest side at most --max-side px (downscaling also makes them
sharper targets), until the room the working tree leaves is used. The test folders (kodak24,
mcmaster: `sharpen corpus`'s test split) always go; training photos are taken round-robin over
the other folders so that each is represented. `.gpu/` is ignored by git: nothing is committed.

    .venv/bin/python scripts/gpu_pack.py [--photos ../shared/data/photos] [--out .gpu/photos]
"""
from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
from pathlib import Path

import cv2
from tqdm import tqdm

from runtime.imageio import IMAGE_EXTS

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 64 * 2**20          # what one device call carries: working tree + carried folders
MARGIN = 1 * 2**20
TEST_FOLDERS = ("kodak24", "mcmaster")


def tree_bytes() -> int:
    """Bytes of what travels besides the carried folders: tracked and untracked, not ignored."""
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           check=True, capture_output=True).stdout.split(b"\0")
    return sum((ROOT / n.decode()).stat().st_size for n in names
               if n and (ROOT / n.decode()).is_file())


def encode(path: Path, max_side: int, quality: int) -> bytes | None:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        return None
    h, w = img.shape[:2]
    scale = max_side / max(h, w)
    if scale < 1:
        img = cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".webp", img, [cv2.IMWRITE_WEBP_QUALITY, quality])
    return buf.tobytes() if ok else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", default=str(ROOT.parent / "shared" / "data" / "photos"))
    p.add_argument("--out", default=str(ROOT / ".gpu" / "photos"))
    p.add_argument("--max-side", type=int, default=768)
    p.add_argument("--quality", type=int, default=85, help="WebP quality")
    p.add_argument("--budget-mb", type=float, default=None,
                   help="bytes of photos to write (default: what the working tree leaves of "
                   "the 64 MiB a device call carries, less 1 MiB)")
    args = p.parse_args(argv)
    photos, out = Path(args.photos), Path(args.out)
    if not photos.is_dir():
        print(f"error: --photos {photos} is not a folder", file=sys.stderr)
        return 2
    budget = (int(args.budget_mb * 1e6) if args.budget_mb is not None
              else LIMIT - MARGIN - tree_bytes())
    if budget <= 0:
        print("error: the working tree leaves no room under the 64 MiB a device call carries",
              file=sys.stderr)
        return 2
    folders = sorted(d for d in photos.iterdir() if d.is_dir())
    listing = {d.name: sorted(f for f in d.rglob("*") if f.suffix.lower() in IMAGE_EXTS)
               for d in folders}
    test = [f for name in TEST_FOLDERS for f in listing.get(name, [])]
    others = [listing[d.name] for d in folders if d.name not in TEST_FOLDERS]
    order = test + [f for group in itertools.zip_longest(*others) for f in group if f]
    if out.exists():
        for old in out.rglob("*.webp"):
            old.unlink()
    used, n = 0, 0
    for f in tqdm(order, desc="pack", unit="photo"):
        data = encode(f, args.max_side, args.quality)
        if data is None:
            print(f"skipped: {f}: unreadable", file=sys.stderr)
            continue
        if used + len(data) > budget:
            if f in test:
                print(f"error: the test photos alone exceed {budget / 1e6:.1f} MB",
                      file=sys.stderr)
                return 2
            continue     # a smaller photo may still fit
        dst = out / f.relative_to(photos).with_suffix(".webp")
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(data)
        used, n = used + len(data), n + 1
    print(f"packed {n} of {len(order)} photos ({len(test)} test) into {out}: "
          f"{used / 1e6:.1f} MB of {budget / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
