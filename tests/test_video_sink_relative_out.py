"""A video --out given as a relative path: the sink's own hidden file is its own. mkstemp
hands back an absolute name while the folder's listing is relative, and the second hidden
file (the colour tags' or the sound's copy) took the run's own video for a killed run's: it
was renamed aside as "cut" and the run ended with an error, its output lost."""
from __future__ import annotations

import numpy as np

from runtime.run_lock import output_lock
from runtime.video_sink import VideoFileSink


def test_a_second_temp_file_leaves_the_runs_own_video(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with output_lock("out.mkv", "--out out.mkv"):   # as run_stream holds it
        sink = VideoFileSink("out.mkv", 24.0)
        frame = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        for i in range(3):
            sink.write(frame, frame, f"frame{i}")
        written = sink.tmp
        extra = sink._temp_file()   # as the tags' and the sound's copies make one
        assert written.exists()
        assert not list(tmp_path.glob("out.interrupted-*"))
        extra.unlink()
        sink.close()
    assert (tmp_path / "out.mkv").is_file()
