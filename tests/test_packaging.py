"""The package as pip builds it: what a container image or a device gets from
`pip install ".[runtime,litert]"` (README: "Container / runtime-only install")."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("distill", "optimize", "runtime", "benchmarks", "sharpen")


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _build_wheel(src: Path, out: Path) -> Path:
    # Offline: the build backend installed here (the dev extra's), not one fetched by pip.
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "--no-index", "-q", "-w", str(out), str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    (wheel,) = out.glob("*.whl")
    return wheel


def test_the_wheel_is_built_without_writing_into_the_source_tree(tmp_path):
    """A Docker build that mounts the checkout (`RUN --mount=type=bind,target=/src pip install
    "/src[runtime,litert]"`, read-only) failed: setuptools made /src/build and
    /src/image_sharpening_kd.egg-info there ("could not create ... Permission denied"). Its
    build/lib also outlived the tree: a module deleted from a checkout still shipped in the next
    wheel built there. Root writes through any mode, so the tree is compared before and after
    (and made read-only too where this user is not root)."""
    pytest.importorskip("hatchling", reason="the build backend (hatchling, in the dev extra) "
                                            "is not installed here: pip install hatchling")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, src / pkg,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (src / "runtime" / "gone_soon.py").write_text("DELETED = False\n")
    untouched = _tree(src)
    first = _build_wheel(src, tmp_path / "w1")
    assert _tree(src) == untouched, sorted(_tree(src) - untouched)
    assert "runtime/gone_soon.py" in zipfile.ZipFile(first).namelist()
    (src / "runtime" / "gone_soon.py").unlink()
    before = _tree(src)
    if os.geteuid() != 0:
        for p in [src, *src.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
    try:
        wheel = _build_wheel(src, tmp_path / "w2")
    finally:
        for p in [src, *src.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)
    assert _tree(src) == before, sorted(_tree(src) - before)
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if ".dist-info/" not in n}
    sources = {p for p in before if p.split("/")[0] in PACKAGES
               and (p.endswith(".py") or p.endswith("py.typed"))}
    assert shipped == sources, (sorted(shipped - sources), sorted(sources - shipped))
