"""The suite's own settings (tests/conftest.py)."""
import os

import pytest


def test_each_xdist_worker_gets_its_share_of_the_cores(request):
    """The xdist controller set OMP_NUM_THREADS for itself (one process: every core) and its
    workers inherited it: two torch threads per worker on a 2-core machine, spin-waiting
    (tiny-model tests took 3-100x the CPU time)."""
    import torch
    if os.environ.get("SHARPEN_TESTS_USER_OMP"):
        pytest.skip("OMP_NUM_THREADS is the user's own")
    workers = getattr(request.config, "workerinput", {}).get("workercount", 1)
    share = max(1, min(2, (os.cpu_count() or 2) // workers))
    assert os.environ["OMP_NUM_THREADS"] == str(share)
    assert torch.get_num_threads() == share
