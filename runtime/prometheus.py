"""The --stats file in Prometheus' text exposition format, for node_exporter's textfile collector
(`--stats /var/lib/node_exporter/textfile/yard.prom`): the same numbers as the JSON file, named
as Prometheus names them (seconds, `_total` counters), each labelled with the camera (the
file's name without .prom), so that one collector folder holds a file a camera."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterator, Optional

SUFFIX = ".prom"
# What every file of ours begins with: a run replaces such a file at its start, nothing else.
HEAD = "# HELP sharpen_up "

_STATES = ("starting", "running", "reconnecting", "finishing", "done", "stopped",
           "source_lost", "failed")
_QUANTILES = {"p50": "0.5", "p90": "0.9", "p95": "0.95", "p99": "0.99"}


def is_prometheus(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == SUFFIX


def camera_name(path: str | os.PathLike) -> str:
    return Path(path).name[: -len(SUFFIX)] or Path(path).name


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: Any) -> str:
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


def _number(v: Any) -> Optional[str]:
    if isinstance(v, bool):
        return "1" if v else "0"
    if not isinstance(v, (int, float)) or (isinstance(v, float) and math.isnan(v)):
        return None
    return repr(v) if isinstance(v, float) else str(v)


def _seconds(ms: float) -> str:
    return repr(round(ms / 1000, 9))   # the JSON's 3 decimals of ms, without 1e-05's float noise


def prometheus_text(summary: dict[str, Any], camera: str) -> str:
    """The exposition text of one --stats write; a number the summary lacks (no frame yet, a
    field only segments have) gives no sample."""
    out: list[str] = []
    cam = {"camera": camera}

    def metric(name: str, kind: str, help_: str, samples: Iterator[tuple[dict, Any]]) -> None:
        lines = [f"sharpen_{name}{_labels(**cam, **labels)} {n}"
                 for labels, v in samples if (n := _number(v)) is not None]
        if lines:
            out.extend([f"# HELP sharpen_{name} {help_}", f"# TYPE sharpen_{name} {kind}",
                        *lines])

    def one(name: str, kind: str, help_: str, value: Any, **labels: Any) -> None:
        metric(name, kind, help_, iter([(labels, value)]))

    state = summary.get("state", "running")
    one("up", "gauge", "1 while the run goes on, 0 once it ended",
        int(state in ("starting", "running", "reconnecting", "finishing")))
    metric("state", "gauge", "the run's state (the JSON file's `state`): 1 for the current one",
           iter([({"state": s}, int(s == state)) for s in _STATES]))
    backend = summary.get("backend") or {}
    one("info", "gauge", "what ran: the model file and engine", 1,
        model=Path(summary.get("model") or "").name, engine=backend.get("name", ""),
        precision=backend.get("precision", ""))
    for name, key, help_ in (
            # Not `sharpen_frames_total`: the JSON's `frames_total` is the frames to come
            ("frames_processed_total", "frames_processed", "frames sharpened and written"),
            ("frames_captured_total", "frames_captured", "frames read from the source"),
            ("dropped_frames_total", "dropped_frames", "stale live frames dropped"),
            ("repeated_frames_total", "repeated_frames",
             "frames repeated in the video to keep its times (a live source's drops, a "
             "variable-rate clip's longer gaps)"),
            ("left_out_frames_total", "left_out_frames",
             "frames sharpened but left out of the video, closer together than its interval"),
            ("reconnects_total", "reconnects", "times the source was reconnected"),
            ("segments_closed_total", "segments_closed", "--segment files closed"),
            ("segments_removed_total", "segments_removed",
             "--segment files closed, then removed by --keep-segments or --keep-gb"),
            ("segment_frames_total", "segment_frames", "frames in the closed segments")):
        one(name, "counter", help_, summary.get(key))
    one("frames_expected", "gauge",
        "the frames a file run will write (the JSON's frames_total; none for a camera)",
        summary.get("frames_total"))
    # A library's photos that could not be read, in the run's last write (none: no sample)
    skipped = summary.get("skipped_inputs")
    one("skipped_inputs_total", "counter", "inputs (or stretches of one) that could not be read",
        len(skipped) if isinstance(skipped, list) else None)
    one("fps", "gauge", "frames a second since the last refresh",
        (summary.get("recent") or {}).get("fps"))
    one("throughput_fps", "gauge", "frames a second over the whole run",
        summary.get("throughput_fps"))
    # What sharpen_fps is held against: a camera behind its own rate, among several, is the
    # one whose fps is under it (images declare none: no sample, not a rate of 0; nor does
    # an MJPEG camera, whose 25 is FFmpeg's guess and flagged a 10 fps camera as behind).
    source = summary.get("source") or {}
    one("source_fps", "gauge", "the frame rate the source declares (a camera's, a video's)",
        None if source.get("fps_guessed") else source.get("fps") or None)
    stages = {**(summary.get("latency_ms") or {}), "end_to_end": summary.get("end_to_end_ms")}
    lat: list[str] = []
    for stage, p in stages.items():
        if not p or not p.get("n"):
            continue
        lab = {**cam, "stage": stage}
        lat += [f"sharpen_latency_seconds{_labels(**lab, quantile=label)} {_seconds(p[q])}"
                for q, label in _QUANTILES.items() if p.get(q) is not None]
        lat += [f"sharpen_latency_seconds_sum{_labels(**lab)} {_seconds(p['sum'])}",
                f"sharpen_latency_seconds_count{_labels(**lab)} {p['n']}"]
    if lat:
        out.extend(["# HELP sharpen_latency_seconds each stage's latency over the run",
                    "# TYPE sharpen_latency_seconds summary", *lat])
    mib = summary.get("peak_memory_mib")
    one("peak_memory_bytes", "gauge", "the process's peak resident memory",
        None if mib is None else int(mib * 2 ** 20))
    one("start_time_seconds", "gauge", "when the run started (Unix time)",
        summary.get("started_at"))
    # 0 before the first frame, not no sample: an alert on its age fires for a run that never
    # got a frame too, where a rule over a missing series never does.
    one("last_frame_timestamp_seconds", "gauge",
        "when the last frame was written (Unix time; 0: none yet)",
        summary.get("last_frame_at") or 0)
    one("updated_timestamp_seconds", "gauge", "when this file was written (Unix time)",
        summary.get("updated_at"))
    one("refresh_seconds", "gauge", "seconds between refreshes of this file",
        summary.get("refresh_s"))
    return "\n".join(out) + "\n"
