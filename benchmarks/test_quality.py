"""Quality checks on the held-out set (same functions as `sharpen bench`'s report):

- each student keeps --min-ssim-ratio (default 0.95) of the teacher's SSIM against ground truth,
  or with --min-ssim-gain G, G of the teacher's SSIM gain over the blurred input;
- every exported artifact stays within its parity threshold against the FP32 PyTorch student
  (optimize.export.Thresholds), run by the runtime's backends at full image resolution.

The quality table is printed in the terminal summary.
"""
from __future__ import annotations

import pytest

from optimize.export import FORMATS


def test_student_keeps_teacher_ssim(bench, student):
    bench.artifacts(student)   # an export that failed: said here, not as a missing row
    q = bench.quality()
    check = q.check(f"{student}/pytorch", "ssim")
    assert check is not None, f"no SSIM check for student {student!r}"
    if not check["passed"]:
        pytest.fail(f"SSIM check failed: {check['message']}", pytrace=False)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_artifact_parity(bench, student, fmt):
    art = bench.artifact(student, fmt)   # a build that failed: said once, by the first test
    if art.status == "skipped":   # before the evaluation: one that failed (a broken teacher)
        pytest.skip(art.reason)   # failed the formats --formats left out too
    q = bench.quality()
    row = q.row(f"{student}/{fmt}")
    assert row is not None, f"no quality row for {student}/{fmt}"
    if row["status"] == "skipped":
        pytest.skip(row["reason"])
    check = q.check(row["key"], "parity")
    assert check is not None, f"no parity check for {student}/{fmt}"
    if not check["passed"]:
        pytest.fail(f"parity check failed: {check['message']}", pytrace=False)


def test_given_model_quality(bench, given_model):
    """A --model file keeps the SSIM gate as the students do (and parity, where its student is
    benchmarked too); one this machine cannot run is skipped with the reason."""
    gm = bench.model(given_model)
    q = bench.quality()
    row = q.row(gm.name)
    assert row is not None, f"no quality row for --model {given_model}"
    if row["status"] == "skipped":
        pytest.skip(row["reason"])
    failed = [c["message"] for c in q.checks if c["model"] == gm.name and not c["passed"]]
    if failed:
        pytest.fail("; ".join(failed), pytrace=False)


def test_reference_rows(bench):
    """The blurred input and the teacher were measured on every image, with sane values."""
    q = bench.quality()
    for key in ("input", "teacher"):
        row = q.row(key)
        assert row["status"] == "ok", (key, row["reason"])
        assert row["n_images"] == len(q.images)
        assert 0.0 <= row["ssim"] <= 1.0 and row["psnr"] > 0, row


def test_real_blur(bench):
    """--real-pairs and --real-nogt scored by the teacher, the students and the --model files,
    as `sharpen bench` scores them: reported (the summary, the JSON's `sharpen_real_blur`),
    not gated; a model that failed fails its own tests."""
    real = bench.real_blur()
    for key, spec in (("pairs", bench.real_pairs), ("nogt", bench.real_nogt)):
        if spec:
            assert real.get(key) and real[key]["images"] > 0, (key, real)
    if failed := bench.failed_students():
        pytest.fail("; ".join(failed), pytrace=False)
