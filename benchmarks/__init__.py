"""Benchmarks: latency (pytest-benchmark suite) and quality against the teacher and ground truth.

- `pytest benchmarks/` times every backend this machine can run for each student, the tiled
  teacher and the streaming pipeline, and checks quality (student SSIM vs the teacher's, every
  exported artifact within its parity threshold). Quick mode by default (640x360, few rounds),
  `--full` for 1920x1080 / 1280x720 / 640x360 and more rounds.
- `sharpen bench --out DIR` runs the same measurements and writes report.md, report.json and
  PNG figures (`benchmarks.report`).

Shared pieces: `benchmarks.artifacts` (students, exported artifacts cached under
~/.cache/sharpen/bench), `benchmarks.latency` (backends, timing, teacher tiles, streaming video),
`benchmarks.quality` (held-out data, cached teacher outputs, PSNR/SSIM, checks).
"""
