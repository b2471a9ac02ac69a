"""report.md of `sharpen bench` (and the tables the command prints): markdown only."""
from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

from runtime.console import count

from .artifacts import is_not_requested, not_requested_line, precision_label
from .ship import budget_text, meets_cell, on_gpu
from .quality import TABLE_HEADERS, TEACHER_SSIM_MEANING, format_table, held_out_label
from .streams import HEADERS as STREAMS_HEADERS, table_rows as streams_table


# A cell that is a number: 21.69, +0.0075, -0.36, 1.5e-07, 874x, 36% ("-" is none).
_NUMBER = re.compile(r"[+-]?\d[\d,]*(\.\d+)?(e[+-]?\d+)?[x%]?")


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, its columns of numbers right-aligned: left-aligned, a rendered column
    of PSNRs or ms did not line up by its digits."""
    def esc(s) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")

    def align(j: int) -> str:
        cells = [str(r[j]).strip() for r in rows if j < len(r)]
        cells = [c for c in cells if c not in ("", "-")]
        return "---:" if cells and all(_NUMBER.fullmatch(c) for c in cells) else "---"
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join(align(j) for j in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


LATENCY_HEADERS = ["model", "backend", "precision", "size", "median ms", "p90 ms", "rounds",
                   "fps", "speedup vs teacher", "meets target", "peak MiB", "video run MiB",
                   "note"]


def _rounds(r: dict):
    """Timed rounds behind a row's median (a slow call gets one in quick mode)."""
    return (r.get("timing") or {}).get("rounds") or r.get("rounds")


def short_reason(reason) -> str:
    """Table cell: the reason without its parenthesised advice (kept in the report JSON and the
    'Skipped' section)."""
    reason = str(reason or "")
    return reason.split(" (")[0] if " (" in reason and not reason.startswith("(") else reason


def where_timed(rep: dict) -> str:
    """What a latency number is and where it was measured, in one line for the titles of the
    terminal's table and the figure: the terminal said only the target, and a reader of
    its ms could not tell the machine or the threads they came from."""
    lat = rep.get("latency") or {}
    st = lat.get("settings") or {}
    mach = rep.get("machine") or {}
    rt = st.get("runtime_threads")
    torch_n = mach.get("torch_threads")
    tiled = f"in tiles of {st['tile']} (--tile); " if st.get("tile") else ""
    return (f"median ms per frame, {tiled}lower is better; {targets_text(rep, st)}; "
            f"{mach.get('cpu') or 'CPU unknown'}, ONNX Runtime / LiteRT on "
            f"{count(rt, 'thread') if rt else _every_core(mach)}"
            + (f", PyTorch on {count(torch_n, 'thread')}" if torch_n else ""))


def targets_text(rep: dict, lat_settings: dict = None) -> str:
    """The budgets "meets target" judged on, for the titles: one per device where they
    differ ("meets target: p90 <= 100.0 ms (10 fps) on a CPU, 33.3 ms (30 fps) on a GPU")."""
    s = rep.get("settings") or {}
    gpu = float(s.get("target_fps") or (lat_settings or {}).get("target_fps") or 30)
    cpu = float(s.get("cpu_target_fps") or gpu)
    if "cpu_target_fps" not in s:   # a report from before the per-backend targets
        return f"target {gpu:g} fps = {1000 / gpu:.1f} ms"
    return (f"meets target: p90 <= {budget_text(1000 / cpu)} ms ({cpu:g} fps) on a CPU, "
            f"{budget_text(1000 / gpu)} ms ({gpu:g} fps) on a GPU")


def _target_sentence(s: dict) -> str:
    """report.md's head: the budgets the Latency tables and What to ship judge on."""
    gpu = s["target_fps"]
    if "cpu_target_fps" not in s:   # a report from before the per-backend targets
        return f"Target: {gpu:g} fps, i.e. <= {1000 / gpu:.1f} ms per frame."
    cpu = s["cpu_target_fps"]
    return (f"Targets, per backend: on the CPU (ONNX Runtime CPU, LiteRT, PyTorch) {cpu:g} fps, "
            f"i.e. <= {budget_text(1000 / cpu)} ms per frame (--cpu-target-fps); on a GPU "
            f"(TensorRT, CUDA) {gpu:g} fps, <= {budget_text(1000 / gpu)} ms (--target-fps). "
            "The Latency table's \"meets target\" (\"yes (CPU)\": on the CPU's) and What to "
            "ship judge a row's p90 time against its backend's; the streaming row's throughput.")


def latency_table(rows: list[dict]) -> list[list[str]]:
    """One row per measured result; a backend skipped (or failed) at every size is one row.
    Formats --formats left out have none (`not_requested_line` names them)."""
    out = []
    rows = [r for r in rows if not is_not_requested(r)]
    sizes_of: dict = {}
    for r in rows:
        if r["status"] != "ok":
            sizes_of.setdefault((r["model"], r["backend"], r["status"], r["reason"]),
                                []).append(r["size"])
    done = set()
    for r in rows:
        if r["status"] != "ok":
            key = (r["model"], r["backend"], r["status"], r["reason"])
            if key in done:
                continue
            done.add(key)
            sizes = sizes_of[key]
            size = sizes[0] if len(sizes) == 1 else ", ".join(sizes)
            out.append([r["model"], r["backend_label"], precision_label(r),
                        size, "-", "-", "-", "-", "-", "-", "-", "-",
                        f"{r['status']}: {short_reason(r['reason'])}"])
            continue
        note = r.get("note", "") if r.get("informational") else ""
        if r.get("peak_frac") is not None:
            note = "; ".join(filter(None, [f"{r['gmac']:.1f} GMAC, {100 * r['peak_frac']:.0f}% "
                                           "of FP32 SGEMM peak", note]))
        if r["model"] == "teacher":
            n = r["tiles_per_frame"]
            shape = r.get("tile_shape")
            note = (f"scaled: {n} tile{'s' if n != 1 else ''}"
                    + (f" of {shape}" if shape else "") + f" x {r['tile_ms']:.0f} ms")
        rounds = _rounds(r)
        # A single round's "90th percentile" is that round: no spread was measured.
        p90 = (f"{r['p90_ms']:.1f}" if r.get("p90_ms") is not None and rounds != 1 else "-")
        out.append([r["model"], r["backend_label"], precision_label(r),
                    r["size"], f"{r['ms']:.1f}", p90, "-" if rounds is None else str(rounds),
                    f"{r['fps']:.2f}",
                    f"{r['speedup_vs_teacher']:.0f}x" if r.get("speedup_vs_teacher")
                    else "-", meets_cell(r), _peak_cell(r), _video_peak_cell(r), note])
    return out


def _peak_cell(r: dict) -> str:
    """A row's peak resident MiB (measured at one size per model and backend: "-" at the
    others), or why its measurement failed."""
    if r.get("peak_rss_mib") is not None:
        return f"{r['peak_rss_mib']:.0f}" + (" (host)" if on_gpu(r) else "")
    return f"failed: {r['peak_rss_error']}" if r.get("peak_rss_error") else "-"


def _video_peak_cell(r: dict) -> str:
    """`sharpen run`'s peak resident MiB on a clip of the row's size, or why it has none."""
    if r.get("video_peak_rss_mib") is not None:
        return f"{r['video_peak_rss_mib']:.0f}" + (" (host)" if on_gpu(r) else "")
    return (f"failed: {r['video_peak_rss_error']}" if r.get("video_peak_rss_error") else "-")


STREAM_HEADERS = ["model", "size", "frames", "fps (throughput)", "end-to-end median ms",
                  "end-to-end p90 ms", "meets target"]


def stream_table(rows: list[dict]) -> list[list[str]]:
    """fps is the run's throughput (the target is judged on it); the ms columns are each
    frame's own end-to-end latency, not 1000 / fps. A row of a format --formats left out has
    none, as in `latency_table`."""
    def ms(v) -> str:
        return "-" if v is None else f"{v:.1f}"
    out = []
    for r in rows:
        if is_not_requested(r):
            continue
        if r["status"] == "ok":
            st = r.get("stats", {})
            out.append([r["model"], r["size"], str(st.get("frames_processed")),
                        f"{r['fps']:.2f}", ms(r.get("ms")), ms(r.get("p90_ms")),
                        meets_cell(r)])
        else:
            out.append([r["model"], r["size"], "-", "-", "-", "-",
                        f"{r['status']}: {short_reason(r['reason'])}"])
    return out


def render_markdown(rep: dict) -> str:
    s = rep["settings"]
    q = rep["quality"]
    lat = rep["latency"]
    mach = rep["machine"]
    lines = [f"# Benchmark report ({rep['mode']} mode)", "",
             f"Created {rep['created']} in {rep.get('wall_s', 0):.0f} s. "
             f"{_target_sentence(s)} The product's frame is 1920x1080, and rows at other "
             "sizes say whether that size reaches it.", ""]
    lines += _models_lines(s)
    if s.get("students") and "calib_seed" in s:
        # The seed picks the INT8 formats' calibration crops: another seed, other artifacts.
        lines += [f"Exported with `--seed {s['calib_seed']}` (`sharpen export --seed`: the "
                  "INT8 calibration crops).", ""]
    inc = rep.get("incomplete")
    if inc:
        lines += _incomplete(inc, s)
    lines += _ship_lines(rep.get("ship"))
    fails = [c for c in rep["checks"] if not c["passed"]]
    lines += ["## Checks", ""]
    if not rep["checks"]:
        lines.append("No checks ran.")
    lines += [f"- {'PASS' if c['passed'] else '**FAIL**'}: {c['message']}" for c in rep["checks"]]
    result = ("none ran" if not rep["checks"] else "all checks passed" if not fails
              else f"{count(len(fails), 'check')} FAILED")
    if inc:
        result = (f"**INCOMPLETE** (interrupted): {count(len(rep['checks']), 'check')} on the rows "
                  f"measured, {len(fails)} failed")
    lines += ["", f"Result: {result}", ""]
    if comp := rep.get("comparison"):
        from .compare import HEADERS as COMPARE_HEADERS, summary_lines, table_rows
        lines += ["## Compared with the baseline", "",
                  f"Baseline: `{comp['baseline']}` (made {comp.get('baseline_created')}, "
                  f"commit {comp.get('baseline_code') or 'unknown'}); `--fail-on "
                  f"{comp['fail_on']}`: quality drops in dB / SSIM, latency slowdowns in "
                  "percent. The regressions come first.", "",
                  _md_table(COMPARE_HEADERS, table_rows(comp)), ""]
        lines += [f"- {line}" for line in summary_lines(comp)] + [""]
    lines += ["## Quality", ""]
    lines += ([NOT_REACHED, ""] if not q["settings"]
              else [f"Skipped: {q['settings']['skipped']}.", ""] if q["settings"].get("skipped")
              else _quality_lines(rep))
    if rep.get("real_blur"):
        # Only then: an interrupted run may have been stopped inside the imports it needs.
        from .realblur import markdown as real_markdown
        lines += real_markdown(rep["real_blur"], _md_table)
    lines += ["## Latency", ""]
    if inc and not lat["settings"]:
        lines += [NOT_REACHED, ""]
    elif lat["settings"].get("max_time_s") is None:
        lines += ["Not measured in this run (`--no-latency`).", ""]
    else:
        lines += [f"Timed on {mach.get('cpu') or 'an unknown CPU'} "
                  f"({mach.get('usable_cores', '?')} usable cores{_cpu_limit(mach)}; Machine "
                  "below): "
                  f"{lat['settings'].get('timed', '-')}; lower is better. Warm-up "
                  f"{lat['settings'].get('warmup')}, rounds calibrated to "
                  f"~{lat['settings'].get('max_time_s')} s (min "
                  f"{lat['settings'].get('min_rounds')}, max {lat['settings'].get('max_rounds')}"
                  + (f"; calls slower than {lat['settings']['slow_single_round_s']:g} s: 1 round"
                     if lat["settings"].get("slow_single_round_s") else "") + ").", ""]
    if mem := lat["settings"].get("memory"):
        # A report from before a peak per size measured What to ship's size alone.
        where = "each row's size" if mem.get("sizes") else f"{mem['size']} only"
        lines += [f"Peak MiB (at {where}; {mem['unit']}): the {mem['method']}; "
                  "what a board's memory must leave the model"
                  + ("; quick mode leaves out PyTorch eager's (--full measures it)"
                     if any(r.get("peak_rss_skipped") for r in lat["rows"]) else "")
                  + (f". Video run MiB: the {mem['video']}; what a camera box's memory must "
                     "leave `sharpen run` on a clip that size (PyTorch eager's rows have none)"
                     if mem.get("video") else "")
                  + (f". What to ship leaves out a model over --max-memory-mib "
                     f"{s['max_memory_mib']:g}" + (", judged on the video run's peak where "
                                                   "measured" if mem.get("video") else "")
                     if s.get("max_memory_mib") is not None else "")
                  + ".", ""]
    peak = rep.get("peak_rss_mb") or {}
    if peak:
        lines += ["Peak memory (RSS of the bench process, running maximum after each stage): "
                  + ", ".join(f"{k} {v / 1024:.1f} GiB" for k, v in peak.items()) + ".", ""]
    if lat["settings"].get("sgemm_peak_gmacs"):
        st = lat["settings"]
        threads = st.get("sgemm_threads")
        rt = st.get("runtime_threads")
        lines += [f"This CPU's FP32 matrix-multiply peak, measured (numpy, "
                  f"{count(threads, 'thread') if threads else 'all cores'}): "
                  f"{st['sgemm_peak_gmacs']:g} GMAC/s; each student row's note gives its GMAC per "
                  "frame over its median time as a share of it (the ONNX Runtime and LiteRT "
                  f"backends ran on {count(rt, 'thread') if rt else _every_core(mach)}"
                  + ("; OMP_NUM_THREADS limited the peak to fewer, so their shares are "
                     "overstated" if threads and not rt and threads < _cores(rep) else "")
                  + ")." + _torch_threads(rep, lat["rows"], rt), ""]
    if lat["settings"].get("teacher"):
        lines += [f"Teacher: {lat['settings']['teacher']}; the other sizes scale the same "
                  "per-tile time by their tile count.", ""]
    if lat["rows"]:
        lines += [_md_table(LATENCY_HEADERS, latency_table(lat["rows"])), ""]
        # The streaming row's format too: its table may be left out with it.
        lines += _note(not_requested_line(lat["rows"] + lat.get("stream", [])))
    if concurrent := streams_table(lat["rows"]):
        lines += ["### Concurrent streams (--streams)", "",
                  f"{lat['settings']['streams']['method']}. The target is each row's (a "
                  "camera's rate): the one-stream budget above.", "",
                  _md_table(STREAMS_HEADERS, concurrent), ""]
    if stream := stream_table(lat.get("stream") or []):
        lines += ["### Streaming pipeline (end to end)", "",
                  f"{lat['settings'].get('stream')}: capture -> pre -> infer -> post in "
                  "threads (`runtime.pipeline.run_stream`). fps is the frames written per "
                  "second of the run, which the target is judged on; the ms columns are each "
                  "frame's end-to-end latency from its read to its write, queue waits "
                  "included (the stages overlap, so it is not 1000 / fps).", ""]
        lines += [_md_table(STREAM_HEADERS, stream), ""]
    if rep["skipped"]:
        lines += ["## Skipped", ""]
        lines += [f"- {d['what']}: {d['reason']}" for d in rep["skipped"]
                  if not is_not_requested(d)]
        lines += [f"- {line}" for line in [not_requested_line(rep["skipped"])] if line]
        lines.append("")
    lines += ["## Figures", ""]
    for key, title in (("latency", "Latency per backend"),
                       ("scatter", "Quality versus latency"),
                       ("crops", "Hardest held-out images (lowest input PSNR; "
                                 f"{held_out_label(rep)})")):
        if rep["figures"].get(key):
            lines += [f"### {title}", "", f"![{title}]({rep['figures'][key]})", ""]
    n_worst = min(4, ((rep.get("real_blur") or {}).get("pairs") or {}).get("images") or 4)
    worst = {1: "worst", 4: "four worst"}.get(n_worst, f"{n_worst} worst")
    for key, title in (("pairs", f"Real blur pairs: the teacher's {worst}"),
                       ("nogt", "Real blur without ground truth")):
        fig = (rep.get("real_blur") or {}).get("figures", {}).get(key)
        if fig:
            lines += [f"### {title}", "", f"![{title}]({fig})", ""]
    if lines[-2:] == ["## Figures", ""] and importlib.util.find_spec("matplotlib") is None:
        lines += ["None drawn: matplotlib is not installed (the 'dev' extra draws them).", ""]
    libs = ", ".join(f"{k} {v}" for k, v in mach["libraries"].items())
    lines += ["## Machine", "",
              f"- CPU: {mach['cpu']} ({', '.join(mach.get('cpu_flags') or []) or 'no flags read'}; "
              f"{mach['logical_cores']} logical cores, "
              f"{mach['usable_cores']} usable{_cpu_limit(mach)}; "
              + ("no PyTorch" if mach["torch_threads"] is None
                 else f"torch threads {mach['torch_threads']}") + ")",
              f"- Memory: {mach['memory']}",
              f"- GPU: {'; '.join(mach['gpus']) if mach['gpus'] else 'none'}",
              f"- OS: {mach['os']} ({mach['machine']})",
              f"- Libraries: {libs}",
              f"- Not installed: {', '.join(mach['missing_libraries']) or '-'}",
              f"- Code: {_code_line(mach.get('code') or {})}",
              "- Environment: " + (", ".join(f"{k}={v}" for k, v in
                                             (mach.get("env") or {}).items()) or
                                   "no thread or GPU variable set"), ""]
    lines += ["## Reproduce", "", "```"] + rep["commands"] + ["```", ""]
    return "\n".join(lines)


def _models_lines(s: dict) -> list[str]:
    """What was measured when --model gave files: which, read how (a report from before
    --model existed has none)."""
    models = s.get("models") or []
    if not models:
        return []
    lines = [f"Measured: {s.get('measured')}. Exported models given with `--model`, measured "
             "as they are (format from the format table, student from the file's export "
             "metadata; parity against a student's FP32 output only where that student's "
             "checkpoint, which the file records, is benchmarked too):", ""]
    for gm in models:
        sha = f", sha256 {gm['sha256'][:12]}" if gm.get("sha256") else ""
        lines.append(f"- {gm['name']}: {gm['path']} ({gm['format']}, "
                     f"{str(gm['precision']).upper()}, student {gm['source']}{sha})"
                     + (f": skipped: {gm['skipped']}" if gm.get("skipped") else ""))
    return lines + [""]


def _ship_lines(ship) -> list[str]:
    """The short answer first: the reader deciding what to deploy should not have to cross
    the tables below by hand (a report from before it existed has none)."""
    if not ship:
        return []
    from .ship import HEADERS, budgets_text, command_of, table_rows
    answer = ship["answer"]
    # The command as code: copied from the page, the full stop after it joined its last
    # word, and Markdown read a Windows path's backslash before a dot as an escape.
    if cmd := command_of(ship):
        at = answer.rindex(cmd)
        fence = "``" if "`" in cmd else "`"
        pad = " " if "`" in cmd else ""
        answer = f"{answer[:at]}{fence}{pad}{cmd}{pad}{fence}{answer[at + len(cmd):]}"
    return ["## What to ship", "",
            f"**Answer:** {answer}.", "",
            f"Per backend, at {ship['size']}: the model with the best mean SSIM on the "
            "held-out set (Quality) among those that pass their checks (the quality gate and "
            "the artifact's parity) and whose 90th-percentile (p90) time per frame is within "
            f"its budget ({budgets_text(ship)}), on this machine (Machine; threads in "
            "Latency): a stream at the target rate then misses it on at most one frame in ten, "
            "where a median within it misses it on up to half. A model timed once (quick mode, "
            "a call over 2 s) is judged on that time. Lower ms and higher SSIM are better.",
            "", _md_table(HEADERS, table_rows(ship)), ""]


NOT_REACHED = "Not measured: the run was interrupted before any of it was finished."


def _incomplete(inc: dict, settings: dict) -> list[str]:
    """The head of an interrupted run's report: how it stopped and every row it left out."""
    how = "Ctrl-C" if inc["signal"] == "SIGINT" else inc["signal"]
    missing = inc.get("missing") or {}
    # --model files alone export nothing, and a device's bench (no PyTorch) has no teacher.
    made = [what for what, there in (
        ("exports", settings.get("students")),
        ("teacher outputs", not (settings.get("teacher") or {}).get("skipped"))) if there]
    kept = (f"The {' and '.join(made)} made so far are cached: the same command again "
            "finishes it." if made else "Nothing of it is cached (no export, no teacher "
            "output): the same command again measures them all.")
    lines = ["## Incomplete", "",
             f"**This run was interrupted ({how}) during its {inc['stage']} stage**: this "
             f"report holds only the rows it finished and the checks on them, and no figures. "
             f"{kept}", ""]
    what = {"quality": "Quality rows", "real_blur": "Real-blur sets", "latency": "Latency rows",
            "streams": "Concurrent streams (--streams) of the rows"}
    for key, items in missing.items():
        lines += [f"{what.get(key, key)} not measured ({len(items)}):", ""]
        lines += [f"- {item}" for item in items] + [""]
    if not missing:
        lines += ["Every row was measured; only the figures are missing.", ""]
    return lines


def _quality_lines(rep: dict) -> list[str]:
    from .quality import real_blur_note

    s, q, checks = rep["settings"], rep["quality"], rep["checks"]
    lines = [
        f"Held-out set: {q['data']}. {real_blur_note(rep)} PSNR/SSIM (RGB, outputs rounded "
        "to 8 bits, data range 255, no border crop, as published tables; SSIM with "
        "scikit-image's Gaussian window sigma 1.5, population covariances, channels averaged, "
        "not published GoPro tables' 3-D SSIM) against ground truth, mean "
        f"over the images, higher is better; {TEACHER_SSIM_MEANING} (the "
        "gate is in Checks); parity is the worst image against the FP32 PyTorch student "
        "(gates from "
        f"`optimize.export.Thresholds`: FP32 max abs < "
        f"{q['settings']['thresholds']['fp32_max_abs']:g}, INT8/FP16 SSIM >= "
        f"{q['settings']['thresholds']['min_ssim']:g}); SSIM lost vs FP32 is what an "
        "artifact loses in SSIM to ground truth against the FP32 student, worst image, "
        "lower is better (the students issue's INT8 budget: 0.002). Teacher: "
        f"{Path(s['teacher']['weights']).name} (sha256 {s['teacher']['hash']}), tiled "
        f"{s['teacher']['tile']} px, overlap {s['teacher']['overlap']}, Gaussian-blended."
        + _calibration_sentence(s),
        ""]
    from .quality import QualityResult

    qr = QualityResult(q["data"], q["images"], q["rows"], checks, {}, q["settings"])
    return (lines + [_md_table(TABLE_HEADERS, format_table(qr)), ""]
            + _note(not_requested_line(q["rows"])))


def _calibration_sentence(s: dict) -> str:
    """What the INT8 rows were calibrated on (a report from before it was recorded: nothing)."""
    if not s.get("calibration") or not s.get("students", True):
        return ""   # (--model files only: the bench calibrated nothing)
    said = (f" INT8 calibration: {s.get('calib_count')} crops per student from "
            f"{s['calibration']}.")
    if over := s.get("calib_overlap"):   # as the run warned: read off the terminal too
        said += (f" {over['images']} of its {over['calib_images']} images are also scored: "
                 "the INT8 rows are measured on frames they were calibrated on.")
    return said


def _note(line: str) -> list[str]:
    """A paragraph under a table, when there is something to say."""
    return [line, ""] if line else []


def _torch_threads(rep: dict, rows: list[dict], rt) -> str:
    """Where PyTorch eager ran: its rows are timed on torch's own threads (OMP_NUM_THREADS
    sets them), which the sentence on the runtimes' threads did not cover."""
    ran = [r for r in rows if r.get("backend") == "pytorch" and r["status"] == "ok"]
    if not ran:
        return ""
    where = ran[0].get("provider") or "-"
    torch_n = (rep.get("machine") or {}).get("torch_threads")
    runtime_n = rt or _cores(rep)
    fewer = (where.startswith("CPU") and torch_n and runtime_n and torch_n < runtime_n)
    return (f" PyTorch eager ran on {where}" + (
        f", fewer than the runtimes' {runtime_n}: compare its rows with theirs with that in "
        "mind" if fewer else "") + ".")


def _code_line(code: dict) -> str:
    what = (f"{code.get('package', 'image-sharpening-kd')} "
            f"{code.get('version') or '(version unknown)'}")
    if code.get("commit"):
        what += f", git commit {code['commit'][:12]}"
        if code.get("dirty"):
            what += " with uncommitted changes (the commit alone does not rebuild this code)"
    else:
        what += ", not a git checkout"
    return what


def _cpu_limit(mach: dict) -> str:
    """", a CPU limit of 2 (cgroup)" where a container's limit gave the bench less CPU time than
    its cores: its timings are the limit's, and run warns of threads above it."""
    limit = mach.get("cpu_limit")
    return f", a CPU limit of {limit:g} (cgroup)" if limit else ""


def _every_core(mach: dict) -> str:
    """The runtimes' threads where neither --threads nor OMP_NUM_THREADS gave a count: every
    core, but LiteRT takes a CPU limit's count (runtime.host.usable_cores)."""
    limit, cores = mach.get("cpu_limit"), mach.get("usable_cores")
    if limit and cores and math.ceil(limit) < cores:
        return f"every core (LiteRT on {count(math.ceil(limit), 'thread')}, the CPU limit's)"
    return "every core"


def _cores(rep: dict) -> int:
    m = rep.get("machine") or {}
    return int(m.get("usable_cores") or m.get("cores") or 0)
