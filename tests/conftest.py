import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Tests share two cores with everything else: keep torch from oversubscribing.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    for cand in (ROOT.parent / "shared", ROOT / "shared"):
        if (cand / "restormer").exists():
            return cand
    msg = "shared/restormer (official state-dict listing) not found beside the repository"
    if os.environ.get("CI"):
        pytest.fail(msg + " (CI lays shared/ beside the clone; the parity test must run there)")
    pytest.skip(msg)
