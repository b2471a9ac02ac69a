"""A bench report against a baseline, the CI regression gate: `sharpen bench-compare BASELINE
NEW` and `sharpen bench --baseline PATH` (benchmarks/compare.py). Tiny hand-made reports for
the rules, one tiny bench run for the command that measures and compares."""
from __future__ import annotations

import json
import shutil

import pytest

from benchmarks.compare import (CompareError, Tolerances, compare_reports, load_report,
                                parse_fail_on)
from benchmarks.report import REPORT_FORMAT
from runtime_fixtures import table_rows


def _report(psnr=21.0, ssim=0.55, ms=8.0, p90=10.0, cpu="AMD EPYC", threads=1,
            status="ok", extra_row=False) -> dict:
    q = {"model": "student fast", "backend": "ONNX Runtime FP32", "kind": "artifact",
         "status": status, "reason": None if status == "ok" else "export failed: boom",
         "psnr": psnr, "ssim": ssim, "ssim_teacher": 0.8, "images": [{"image": "astronaut"}]}
    lat = [{"model": "student fast", "backend_label": "ONNX Runtime FP32", "size": "320x180",
            "status": "ok", "ms": ms, "p90_ms": p90},
           {"model": "teacher", "backend_label": "PyTorch (tiled)", "size": "320x180",
            "status": "ok", "ms": 3000.0, "p90_ms": None}]
    if extra_row:
        lat.append({"model": "student fast", "backend_label": "TFLite INT8 (LiteRT)",
                    "size": "320x180", "status": "ok", "ms": 4.0, "p90_ms": 5.0})
    return {"format": REPORT_FORMAT, "created": "2026-12-07T00:00:00+00:00", "mode": "quick",
            "settings": {"data": None, "limit": 2, "sizes": ["320x180"]},
            "machine": {"cpu": cpu, "usable_cores": 2, "code": {"version": "0.1.0"}},
            "quality": {"rows": [{"model": "blurred input", "kind": "input", "status": "ok",
                                  "psnr": 20.0, "ssim": 0.5}, q],
                        "settings": {"teacher": {"hash": "t1"}}},
            "real_blur": {"pairs": {"input": {"psnr": 28.0, "ssim": 0.88, "sharpness": 1.0},
                                    "fast": {"psnr": 28.9, "ssim": 0.879, "sharpness": 1.1},
                                    "per_image": {"frame_000": {}}}},
            "latency": {"rows": lat, "stream": [],
                        "settings": {"runtime_threads": threads,
                                     "load": {"before": 0.5, "after": 0.5, "cores": 2,
                                              "threads": threads}}}}


TOL = parse_fail_on("psnr:0.1,ssim:0.002,median:50%,p90:50%")


def _regressed(comp: dict) -> set:
    return {(r["section"], r["metric"]) for r in comp["rows"] if r["regressed"]}


def test_a_quality_drop_or_a_slowdown_past_its_tolerance_regresses_and_noise_does_not():
    base = _report()
    same = compare_reports(base, _report(psnr=20.95, ms=11.0, p90=14.0), TOL)
    assert same["regressions"] == 0 and not _regressed(same)
    worse = compare_reports(base, _report(psnr=20.5, ssim=0.54, ms=13.0), TOL)
    assert _regressed(worse) == {("quality", "psnr dB"), ("quality", "ssim"),
                                 ("latency", "median ms")}, worse["rows"]
    # the teacher's one timed tile and the blurred input are no model to gate
    assert not any(r["model"].startswith(("teacher", "blurred")) for r in worse["rows"])
    # metrics left out of --fail-on are shown, not gated
    quality_only = compare_reports(base, _report(psnr=20.5, ms=30.0), parse_fail_on("psnr:0.1"))
    assert _regressed(quality_only) == {("quality", "psnr dB")}
    assert any(r["metric"] == "median ms" and not r["regressed"] for r in quality_only["rows"])


def test_rows_in_one_report_only_are_named_and_a_row_that_now_fails_regresses():
    comp = compare_reports(_report(), _report(extra_row=True, status="failed"), TOL)
    assert comp["only_in_new"] == ["latency fast TFLite INT8 (LiteRT) 320x180"]
    assert comp["only_in_baseline"] == []
    failed = [r for r in comp["rows"] if r["metric"] == "status"]
    assert failed and failed[0]["regressed"] and "boom" in failed[0]["new"]


def test_another_cpu_or_thread_count_is_named_and_its_latency_not_gated():
    comp = compare_reports(_report(), _report(ms=80.0, cpu="Intel Xeon", threads=4), TOL)
    assert set(comp["not_gated"]) == {"latency"}
    said = "; ".join(comp["not_gated"]["latency"])
    assert "'AMD EPYC' -> 'Intel Xeon'" in said and "runtime_threads 1 -> 4" in said
    assert comp["regressions"] == 0   # 10x slower, but on another machine
    # other images, not the same ones at another path (a CI job's checkout moves)
    moved, other = _report(), _report()
    moved["settings"]["data"] = "/builds/2/data/pairs"
    other["quality"]["rows"][1]["images"] = [{"image": "chelsea"}]
    assert compare_reports(_report(), moved, TOL)["not_gated"] == {}
    comp = compare_reports(_report(), other, TOL)
    assert set(comp["not_gated"]) == {"quality"}
    assert "held-out images '1: astronaut' -> '1: chelsea'" in comp["not_gated"]["quality"][0]


def test_what_one_report_lacks_is_noted_and_the_rest_still_gated():
    """A baseline from an older version (no image names, no runtime_threads) or a run without
    --real-pairs: its held-out quality and latency are still gated; real blur is named as in
    one report only."""
    older = _report()
    del older["quality"]["rows"][1]["images"], older["latency"]["settings"]["runtime_threads"]
    comp = compare_reports(older, _report(psnr=20.0, ms=20.0), TOL)
    assert comp["not_gated"] == {} and _regressed(comp) == {("quality", "psnr dB"),
                                                            ("latency", "median ms")}
    assert any("held-out images is in the new report only" in n for n in comp["notes"])
    no_real = _report(psnr=20.0)
    no_real["real_blur"] = {}
    comp = compare_reports(_report(), no_real, TOL)
    assert comp["not_gated"] == {} and ("quality", "psnr dB") in _regressed(comp)
    assert comp["only_in_baseline"] == ["real blur fast"]


def test_a_nan_score_regresses_as_report_json_writes_it():
    """report.json writes a non-finite number as a string ("nan": an FP16 model that
    overflowed); the comparison subtracted it and raised TypeError."""
    comp = compare_reports(_report(), _report(ssim="nan", ms="inf"), TOL)
    bad = {(r["metric"], r["new"]) for r in comp["rows"] if r["regressed"]}
    assert {m for m, _ in bad} == {"ssim", "median ms"}, comp["rows"]
    from benchmarks.compare import table_rows
    assert any(row[4:6] == ["0.5500", "nan"] for row in table_rows(comp))


def test_latency_timed_on_a_busy_machine_is_shown_not_gated():
    """Two runs of one model here, at load 12 on 2 cores, read 5x apart: no regression."""
    busy = _report(ms=40.0, p90=55.0)
    busy["latency"]["settings"]["load"].update(before=11.7, after=12.0)
    comp = compare_reports(_report(), busy, TOL)
    assert comp["regressions"] == 0
    assert "new timed on a busy machine: load average 12" in comp["not_gated"]["latency"][0]
    from benchmarks.compare import summary_lines
    assert any(ln.startswith("latency not gated: new timed on a busy machine")
               for ln in summary_lines(comp))
    worse = _report(psnr=20.0)
    worse["latency"]["settings"]["load"].update(before=11.7, after=12.0)
    assert compare_reports(_report(), worse, TOL)["regressions"] == 1   # quality still gated


def test_latency_on_a_quiet_runner_is_gated_whatever_its_own_load_average():
    """A quiet 2-core CI runner timing at 2 threads reads a load average near 3 from the
    bench's own threads and export: called busy, its latency was never gated. The CPU time
    other processes took during the timings decides; a report without it, the load average."""
    def run(ms, others):
        rep = _report(ms=ms, p90=ms * 1.2)
        rep["latency"]["settings"]["load"].update(before=2.9, after=3.1, others_cores=others,
                                                  run_cores=2, window_s=40.0)
        return rep

    comp = compare_reports(run(8.0, 0.1), run(40.0, 0.2), TOL)
    assert comp["regressions"] > 0 and "latency" not in comp["not_gated"], comp["not_gated"]
    comp = compare_reports(run(8.0, 0.1), run(40.0, 1.7), TOL)
    assert comp["regressions"] == 0
    assert comp["not_gated"]["latency"] == [
        "new timed on a busy machine: other processes took 1.7 of 2 cores during these "
        "timings, CPU time these timings did not get"]
    # an earlier version's baseline (load average only) against a new report
    old = _report()
    old["latency"]["settings"]["load"].update(before=2.9, after=3.1)
    assert compare_reports(old, run(40.0, 0.1), TOL)["not_gated"]["latency"] == [
        "baseline timed on a busy machine: load average 3.1 (1 min) on 2 cores, other "
        "processes took CPU time from these timings"]


def test_fail_on_is_checked_and_says_what_it_takes():
    assert parse_fail_on("none") == Tolerances()
    assert parse_fail_on("median:5%") == Tolerances(median=5.0)
    for bad, said in (("median", "METRIC:TOLERANCE"), ("psnr:1%", "absolute drop"),
                      ("speed:5%", "METRIC:TOLERANCE"), ("p90:fast", "not a number"),
                      ("ssim:-1", ">= 0")):
        with pytest.raises(ValueError, match=said):
            parse_fail_on(bad)


def test_a_report_that_cannot_be_a_baseline_is_refused_naming_it(tmp_path):
    with pytest.raises(CompareError, match="no report.json in it"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text('{"benchmarks": []}')
    with pytest.raises(CompareError, match="not a `sharpen bench` report"):
        load_report(tmp_path)
    partial = {**_report(), "incomplete": {"signal": "SIGINT"}}
    (tmp_path / "report.json").write_text(json.dumps(partial))
    with pytest.raises(CompareError, match="interrupted run"):
        load_report(tmp_path / "report.json")
    older = {**_report(), "format": "sharpen-bench/0"}
    with pytest.raises(CompareError, match="another version"):
        compare_reports(older, _report(), TOL)


def test_bench_compare_prints_the_regressions_first_and_exits_1(tmp_path, capsys):
    from sharpen.cli import main
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "report.json").write_text(json.dumps(_report()))
    (tmp_path / "b.json").write_text(json.dumps(_report(psnr=20.0, extra_row=True)))
    rc = main(["bench-compare", str(tmp_path / "a"), str(tmp_path / "b.json")])
    out = capsys.readouterr().out
    assert rc == 1, out
    first = " ".join(table_rows(out)[1])   # the row below the header
    assert "REGRESSED" in first and "psnr dB" in first, out
    assert "only in this report (not compared): latency fast TFLite INT8" in out
    assert out.rstrip().endswith("1 regression"), out
    assert main(["bench-compare", str(tmp_path / "a"), str(tmp_path / "a")]) == 0
    assert main(["bench-compare", str(tmp_path), str(tmp_path / "a")]) == 2
    assert "BASELINE" in capsys.readouterr().err
    assert main(["bench-compare", str(tmp_path / "a"), str(tmp_path / "a"),
                 "--fail-on", "fps:3"]) == 2


def test_bench_against_a_baseline_in_its_own_out_fails_a_worse_model(bench_env, bench_good_run,
                                                                      tmp_path, capsys):
    """The CI job's line: `sharpen bench --out bench/ --baseline bench/`, bench/ holding the
    accepted run; here the accepted `good` student is replaced by a worse one of that name."""
    from bench_fixtures import _bench
    assert bench_good_run[0] == 0
    env = tmp_path / "env"
    env.mkdir()
    for name in ("teacher.pt", "pairs"):
        (env / name).symlink_to(bench_env / name)
    (env / "cache").symlink_to(bench_env / "cache")
    shutil.copytree(bench_env / "good", env / "ci")
    worse = env / "worse"
    worse.mkdir()
    shutil.copy(bench_env / "student-bad.pt", worse / "student-good.pt")   # same name, worse
    rc = _bench(env, "ci", "--students", str(worse / "student-good.pt"), "--formats", "onnx",
                "--sizes", "160x96", "--stream-frames", "0", "--baseline", str(env / "ci"),
                "--fail-on", "psnr:0.1,ssim:0.002")
    out = capsys.readouterr().out
    rep = json.loads((env / "ci" / "report.json").read_text())
    comp = rep["comparison"]
    # the terminal ends with the comparison, the verdict its last line
    assert f"): {comp['regressions']} regressions" in out.rstrip().splitlines()[-1], out
    assert rc == 1 and comp["regressions"] > 0
    # read before it was set aside, and named where it now is
    assert comp["baseline"] == str(env / "ci" / "report.previous.json")
    assert json.loads((env / "ci" / "report.previous.json").read_text())["ok"]
    gate = [c for c in rep["checks"] if c["check"] == "baseline"]
    assert gate and all(not c["passed"] for c in gate)
    assert any("psnr dB regressed against the baseline" in c["message"] for c in gate)
    md = (env / "ci" / "report.md").read_text()
    assert "## Compared with the baseline" in md and "REGRESSED" in md
    # the baseline's streaming row, not run here (--stream-frames 0): named, not a crash
    assert any(k.startswith("stream good") for k in comp["only_in_baseline"]), comp
    # a retry of the failed job compares with nothing it could pass against, and keeps both
    accepted = (env / "ci" / "report.previous.json").read_text()
    rc = _bench(env, "ci", "--students", str(worse / "student-good.pt"), "--formats", "onnx",
                "--baseline", str(env / "ci"))
    assert rc == 2 and "regressed against its own baseline" in capsys.readouterr().err
    assert (env / "ci" / "report.previous.json").read_text() == accepted


def test_a_bad_baseline_stops_the_bench_before_the_work(bench_env, tmp_path, capsys):
    from bench_fixtures import _bench
    rc = _bench(bench_env, str(tmp_path / "x"), "--students",
                str(bench_env / "student-good.pt"), "--baseline", str(tmp_path / "nowhere"))
    assert rc == 2 and "--baseline" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_fail_on_without_a_baseline_says_it_does_nothing(bench_env, tmp_path, capsys):
    from bench_fixtures import _bench
    rc = _bench(bench_env, str(tmp_path / "x"), "--students", "nowhere.pt",
                "--fail-on", "psnr:0.05")
    err = capsys.readouterr().err
    assert rc == 2 and "warning: --fail-on has no effect without --baseline" in err, err


def test_an_improvement_is_no_regression_and_p90_is_gated_on_its_own():
    """A sign or abs() slip in the deltas would gate a better model; p90 has its tolerance."""
    comp = compare_reports(_report(), _report(psnr=25.0, ssim=0.7, ms=2.0, p90=3.0), TOL)
    assert comp["regressions"] == 0 and len(comp["rows"]) >= 7, comp["rows"]
    assert _regressed(compare_reports(_report(), _report(p90=16.0), TOL)) == {
        ("latency", "p90 ms")}
    own = parse_fail_on("median:10%,p90:100%")
    assert _regressed(compare_reports(_report(), _report(ms=9.6, p90=16.0), own)) == {
        ("latency", "median ms")}


def test_the_verdict_says_what_was_not_gated():
    """A CI log shows the last line: latency left ungated (a busy runner, another CPU) must
    be in it, not only in a line above the verdict."""
    from benchmarks.compare import summary_lines
    busy = _report(ms=40.0)
    busy["latency"]["settings"]["load"].update(before=11.7, after=12.0)
    last = summary_lines(compare_reports(_report(), busy, TOL))[-1]
    assert last.endswith("no regression; latency not gated (busy machine)"), last
    last = summary_lines(compare_reports(_report(), _report(cpu="Intel Xeon"), TOL))[-1]
    assert last.endswith("no regression; latency not gated (not comparable)"), last
    assert summary_lines(compare_reports(_report(), _report(), TOL))[-1].endswith(
        "no regression")


def test_two_reports_with_no_row_in_common_compare_nothing_and_exit_2(tmp_path, capsys):
    """A baseline made with other --sizes and --formats: a gate that compared nothing must
    not pass."""
    from sharpen.cli import main
    other = _report()
    other["quality"]["rows"][1]["backend"] = "TFLite INT8 (LiteRT)"
    other["real_blur"] = {}
    for r in other["latency"]["rows"]:
        r["size"] = "1920x1080"
    (tmp_path / "a.json").write_text(json.dumps(_report()))
    (tmp_path / "b.json").write_text(json.dumps(other))
    assert compare_reports(_report(), other, TOL)["rows"] == []
    assert main(["bench-compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 2
    out = capsys.readouterr()
    assert "no model, backend and size has a result in both reports" in out.out + out.err, out


def test_a_report_that_regressed_against_its_baseline_is_no_baseline(tmp_path):
    """`--baseline bench/ --out bench/`: a failed run's report becomes bench/report.json; a
    retry of the CI job must not compare with it and pass."""
    failed = {**_report(psnr=20.0), "comparison": {"regressions": 2,
                                                   "baseline": "bench/report.previous.json"}}
    (tmp_path / "report.json").write_text(json.dumps(failed))
    with pytest.raises(CompareError, match="regressed against its own baseline .*"
                                           "bench/report.previous.json"):
        load_report(tmp_path)
    assert load_report(tmp_path, "NEW", baseline=False)["comparison"]["regressions"] == 2


def test_an_interrupted_run_in_the_baseline_folder_points_to_the_report_it_set_aside(tmp_path):
    """`--baseline bench/ --out bench/` killed mid-run: bench/report.previous.json is the
    accepted report; the refusal names it."""
    (tmp_path / "report.previous.json").write_text(json.dumps(_report()))
    with pytest.raises(CompareError, match="report.previous.json .* is the finished run"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text(json.dumps({**_report(), "incomplete": {}}))
    with pytest.raises(CompareError, match="interrupted run.*report.previous.json"):
        load_report(tmp_path)


def test_bench_with_a_baseline_it_shares_no_row_with_fails_its_check():
    from benchmarks.report import BenchOptions, _compare_with_baseline
    other = _report()
    other["quality"]["rows"][1]["backend"] = "TFLite INT8 (LiteRT)"
    other["real_blur"] = {}
    for r in other["latency"]["rows"]:
        r["size"] = "1920x1080"
    report = {**other, "checks": [], "ok": True, "exit_code": 0}
    _compare_with_baseline(report, {**_report(), "_path": "accepted/report.json"},
                           BenchOptions(out="bench"))
    assert report["exit_code"] == 1 and not report["ok"]
    assert [c["message"] for c in report["checks"]] == [
        "--baseline accepted/report.json: no model, backend and size has a result in both "
        "reports (other --students, --formats or --sizes?): a gate that compared nothing "
        "cannot pass"]


def test_a_baseline_this_run_would_set_aside_over_is_refused(tmp_path):
    """--baseline bench/report.previous.json --out bench/: the set-aside replaces that file
    with bench/report.json, and the accepted report would be lost from disk; after a killed
    run (no finished report.json) it stays, and is the baseline to give."""
    from benchmarks.report import BenchError, BenchOptions, _load_baseline
    (tmp_path / "report.previous.json").write_text(json.dumps(_report()))
    opts = BenchOptions(out=str(tmp_path), baseline=str(tmp_path / "report.previous.json"))
    assert _load_baseline(opts)["_path"] == str(tmp_path / "report.previous.json")
    (tmp_path / "report.json").write_text(json.dumps(_report()))
    with pytest.raises(BenchError, match="report.previous.json: this run sets .*report.json "
                                         "aside over it"):
        _load_baseline(opts)


def test_the_verdict_counts_the_baseline_rows_this_run_did_not_measure():
    """A format whose engine is gone from the runner is skipped, so only in the baseline: the
    last line of a CI log says so, not only a line above it."""
    from benchmarks.compare import summary_lines
    base = _report(extra_row=True)
    last = summary_lines(compare_reports(base, _report(), TOL))[-1]
    assert last.endswith("no regression; 1 baseline row not measured"), last


def _with_nogt(rep: dict, psnr_to_teacher: float = 35.5, frames=(0, 20)) -> dict:
    """`rep` with --real-nogt's section as a bench of a clip writes it (its frames by name)."""
    rep["real_blur"]["nogt"] = {
        "has_gt": False, "reference": "teacher",
        "input": {"sharpness": 1.0, "psnr_to_reference": 34.7},
        "teacher": {"sharpness": 1.15},
        "fast": {"sharpness": 1.09, "psnr_to_reference": psnr_to_teacher},
        "per_image": {f"clip_{f:06d}": {} for f in frames}}
    return rep


def test_real_blur_without_ground_truth_is_compared_by_psnr_to_the_teacher():
    """`bench --real-nogt clip.mp4 --frames 0,20 --baseline A`: the frames' PSNR to the
    teacher's output was in neither the table nor the verdict, a student drifting from the
    teacher on real blur passed unseen; other frames (--stride, --frames) do not compare."""
    base = _with_nogt(_report())
    same = compare_reports(base, _with_nogt(_report(), 35.45), TOL)
    rows = [r for r in same["rows"] if r["section"] == "real blur no-gt"]
    assert [(r["model"], r["metric"]) for r in rows] == [("fast", "psnr to teacher")], rows
    assert same["regressions"] == 0
    worse = compare_reports(base, _with_nogt(_report(), 34.9), TOL)
    assert _regressed(worse) == {("real blur no-gt", "psnr to teacher")}
    other = compare_reports(base, _with_nogt(_report(), 30.0, frames=(0, 10)), TOL)
    assert other["regressions"] == 0
    assert "real-nogt images '2: clip_000000, clip_000020' -> '2: clip_000000, clip_000010'" \
        in other["not_gated"]["real blur no-gt"][0]
    assert compare_reports(base, _report(), TOL)["only_in_baseline"] == ["real blur no-gt fast"]


def test_real_blur_without_ground_truth_at_another_path_is_noted_and_still_gated():
    """The --real-nogt paths were not among the noted settings, as --data's and
    --real-pairs' are: a clip moved between runs went unsaid."""
    base, moved = _with_nogt(_report()), _with_nogt(_report(), 34.9)
    base["settings"]["real_nogt"] = ["/builds/1/clips/dash.mp4"]
    moved["settings"]["real_nogt"] = ["/builds/2/clips/dash.mp4"]
    comp = compare_reports(base, moved, TOL)
    assert any(n.startswith("settings.real_nogt ") for n in comp["notes"]), comp["notes"]
    assert _regressed(comp) == {("real blur no-gt", "psnr to teacher")}


def test_scores_by_another_psnr_ssim_formula_are_shown_not_gated():
    """A baseline whose report says its SSIM was computed another way (an older version's
    formula) was compared silently: its SSIM differences came from the formula, not the model."""
    from distill.metrics import CONVENTION
    base, new = _report(), _report(ssim=0.50)
    new["quality"]["convention"] = CONVENTION
    base["quality"]["convention"] = {**CONVENTION, "ssim": "7x7 uniform window"}
    comp = compare_reports(base, new, TOL)
    assert not _regressed(comp), comp["rows"]
    assert set(comp["not_gated"]) >= {"quality", "real blur"}, comp["not_gated"]
    assert any("quality.convention differs (ssim)" in d for d in comp["not_gated"]["quality"])
    base["quality"]["convention"] = CONVENTION   # the same formula: gated as before
    assert ("quality", "ssim") in _regressed(compare_reports(base, new, TOL))


def test_a_baseline_naming_no_formula_is_an_older_versions_and_not_gated():
    """A report.json of an older version names no convention (its SSIM the 7x7 window, on
    float outputs): --baseline with it said 'ssim 0.5451 -> 0.5473 +0.0022 ok', a gain of
    the formula alone, and a new formula scoring lower read as a regression of the model."""
    from distill.metrics import CONVENTION
    base, new = _report(), _report(ssim=0.50)
    new["quality"]["convention"] = CONVENTION
    base["quality"].pop("convention", None)
    comp = compare_reports(base, new, TOL)
    assert not _regressed(comp), comp["rows"]
    assert any("the baseline names no quality.convention (an older version's report)" in d
               for d in comp["not_gated"]["quality"]), comp["not_gated"]
    assert ("latency" not in comp["not_gated"]), comp["not_gated"]   # timings still gated
    # NEW an older version's (a rollback, an older release against this one's baseline)
    comp = compare_reports(new, base, TOL)
    assert not _regressed(comp), comp["rows"]
    assert any("the new report names no quality.convention (an older version's report)" in d
               for d in comp["not_gated"]["quality"]), comp["not_gated"]
    del new["quality"]["convention"]   # neither names one: compared as the same
    assert ("quality", "ssim") in _regressed(compare_reports(base, new, TOL))


def test_the_verdict_says_which_side_is_better_in_either_direction():
    """"ok" said of a drop within tolerance and of a gain alike: a reader compared
    BASELINE NEW and NEW BASELINE and saw the same word for the better and the worse side."""
    from benchmarks.compare import table_rows as rows_of

    def verdicts(new: dict) -> dict:
        comp = compare_reports(_report(), new, TOL)
        return {(r[0], r[3]): r[-1] for r in rows_of(comp)}
    worse = verdicts(_report(psnr=20.95, ssim=0.549, ms=11.0, p90=10.0))
    assert worse[("quality", "psnr dB")] == "ok, worse"
    assert worse[("quality", "ssim")] == "ok, worse"
    assert worse[("latency", "median ms")] == "ok, worse"   # slower
    assert worse[("latency", "p90 ms")] == "ok"             # no change
    better = verdicts(_report(psnr=21.05, ssim=0.551, ms=6.0, p90=10.0))
    assert better[("quality", "psnr dB")] == "ok, better"
    assert better[("quality", "ssim")] == "ok, better"
    assert better[("latency", "median ms")] == "ok, better"   # faster


def test_a_device_report_without_pytorch_says_why_its_quality_rows_are_not_compared():
    """A device's bench (no PyTorch: the held-out quality rows skipped) against a dev box's:
    the baseline's quality rows were listed as "only in the baseline" with no reason; the
    reason is said, and the latency and real-blur rows are compared."""
    from benchmarks.compare import summary_lines
    from benchmarks.report import NO_TEACHER
    device = _report()
    device["quality"] = {"rows": [], "settings": {"skipped": NO_TEACHER}}
    device["latency"]["rows"] = device["latency"]["rows"][:1]   # no teacher row
    comp = compare_reports(_report(), device, TOL)
    lines = summary_lines(comp)
    said = [line for line in lines if "PyTorch" in line]
    assert said and "held-out quality rows" in said[0] and "new report" in said[0], lines
    assert {r["section"] for r in comp["rows"]} >= {"latency", "real blur"}, comp["rows"]
    # ... and the other way round, the device's report as the baseline
    lines = summary_lines(compare_reports(device, _report(), TOL))
    assert any("PyTorch" in line and "baseline" in line for line in lines), lines


def test_another_formula_is_said_once_for_the_rows_there_are_with_advice_that_fits():
    """An older version's baseline without real-blur rows said 'not comparable' three times
    (quality, real blur, real blur no-gt: the last two in neither report), each advising a
    baseline 'made with these settings on this kind of machine' where the version differs."""
    from benchmarks.compare import summary_lines
    from distill.metrics import CONVENTION
    base, new = _report(), _report()
    new["quality"]["convention"] = CONVENTION
    for rep in (base, new):
        rep.pop("real_blur", None)
    lines = [line for line in summary_lines(compare_reports(base, new, TOL))
             if line.startswith("not comparable")]
    assert lines == ["not comparable, quality not gated: the baseline names no "
                     "quality.convention (an older version's report): scored by another "
                     "formula (make both reports with one version of sharpen)"], lines


def test_a_change_that_rounds_to_nothing_is_neither_better_nor_worse():
    """A device's SSIM (OpenCV's filters, no scikit-image) is a dev box's to 1e-14: the row
    read '-0.0000  ok, worse' one way and '+0.0000  ok, better' the other."""
    from benchmarks.compare import table_rows as rows_of

    for ssim in (0.55 - 1e-14, 0.55 + 1e-14):
        rows = rows_of(compare_reports(_report(), _report(ssim=ssim), TOL))
        verdict = {(r[0], r[3]): r[-1] for r in rows}
        assert verdict[("quality", "ssim")] == "ok", rows


def test_a_device_report_names_no_teacher_and_held_out_images_only_once():
    """Beside 'the held-out quality rows were skipped', a device's report (no PyTorch) against
    a dev box's also noted 'held-out images is in the baseline report only: not checked' and
    the same of the teacher's hash: what that skip already says, read as a second problem."""
    from benchmarks.compare import summary_lines
    from benchmarks.report import NO_TEACHER

    box = _report()
    box["quality"]["settings"]["teacher"] = {"hash": "abc"}
    device = _report()
    device["quality"] = {"rows": [], "settings": {"skipped": NO_TEACHER}}
    for base, new in ((box, device), (device, box)):
        lines = summary_lines(compare_reports(base, new, TOL))
        assert any("held-out quality rows were skipped" in line for line in lines), lines
        assert not [line for line in lines if "held-out images" in line
                    or "teacher.hash" in line], lines


def test_a_model_file_named_by_its_stem_in_one_report_is_paired_by_its_file_name():
    """A dev box benched an export's student-fast_int8.onnx beside its .tflite (rows named
    `student-fast_int8.onnx`: the two share a stem), the device the .onnx alone (named
    `student-fast_int8`): nothing was compared, and the gate failed as 'other --students,
    --formats or --sizes?'. The same file name pairs them, and a note says so."""
    def given(names: list[str]) -> dict:
        rep = _report()
        rep["settings"]["models"] = [{"name": n, "path": f"/x/{f}"} for n, f in names]
        rep["quality"]["rows"] = []
        rep["latency"]["rows"] = [
            {"model": f"{n} (student fast)", "backend_label": "ONNX Runtime INT8",
             "size": "320x180", "status": "ok", "ms": 8.0, "p90_ms": 10.0} for n, _ in names]
        rep["real_blur"] = {"pairs": {n: {"psnr": 25.9, "ssim": 0.84, "sharpness": 1.0}
                                      for n, _ in names}}
        return rep
    box = given([("student-fast_int8.onnx", "student-fast_int8.onnx"),
                 ("student-fast_int8.tflite", "student-fast_int8.tflite")])
    device = given([("student-fast_int8", "student-fast_int8.onnx")])
    for base, new in ((box, device), (device, box)):
        comp = compare_reports(base, new, TOL)
        compared = {(r["section"], r["model"]) for r in comp["rows"]}
        assert compared == {("real blur", "student-fast_int8.onnx"),
                            ("latency",
                             "student-fast_int8.onnx (student fast) ONNX Runtime INT8")}, compared
        assert any("student-fast_int8" in n and "file name" in n for n in comp["notes"]), comp
    assert comp["only_in_new"] == ["real blur student-fast_int8.tflite", "latency "
                                   "student-fast_int8.tflite (student fast) ONNX Runtime INT8 "
                                   "320x180"], comp["only_in_new"]


def test_a_device_report_as_either_side_is_no_older_versions_report():
    """A device's report (no PyTorch) names its quality.convention as a dev box's does: as
    the baseline it is not 'an older version's report', and its real-blur rows stay gated."""
    from benchmarks.report import NO_TEACHER
    from distill.metrics import CONVENTION

    box, device = _report(), _report()
    box["quality"]["convention"] = CONVENTION
    device["quality"] = {"rows": [], "settings": {"skipped": NO_TEACHER},
                         "convention": CONVENTION}
    for base, new in ((device, box), (box, device)):
        comp = compare_reports(base, new, TOL)
        assert "real blur" not in comp["not_gated"], comp["not_gated"]
        assert not [n for n in comp["notes"] if "older version" in n], comp["notes"]
        assert {r["section"] for r in comp["rows"] if r["gated"]} >= {"real blur"}, comp


def test_a_model_file_of_other_bytes_under_the_same_name_is_noted():
    """A user re-exports student-fast_int8.tflite (another calibration) and benches it against
    the accepted report: the rows pair by name, and nothing said the two measured files were
    not the same bytes. The note names the file and both sha256s; the same bytes say nothing."""
    def given(sha):
        rep = _report()
        rep["settings"]["models"] = [{"name": "student-fast_int8", "sha256": sha,
                                      "path": "/x/student-fast_int8.tflite"}]
        rep["quality"]["rows"] = []
        rep["real_blur"] = {"pairs": {"student-fast_int8": {"psnr": 25.9, "ssim": 0.84,
                                                            "sharpness": 1.0}}}
        return rep
    comp = compare_reports(given("a" * 64), given("b" * 64), TOL)
    assert "the --model file 'student-fast_int8' is not the baseline's file (sha256 " \
           "aaaaaaaaaaaa -> bbbbbbbbbbbb: another export under its name): its rows compare " \
           "two files" in comp["notes"], comp["notes"]
    assert not any("sha256" in n for n in compare_reports(given("a" * 64), given("a" * 64),
                                                           TOL)["notes"])
    # a baseline from before the file's hash was kept: not a difference
    assert not any("sha256" in n for n in compare_reports(given(None), given("b" * 64),
                                                           TOL)["notes"])


def test_an_older_model_only_baseline_is_not_noted_as_another_calibration():
    """A `--model` run saved before its report said the files' own export calibrated them
    wrote 'built-in sample photos' (or its --calib), a calibration that run never did:
    bench-compare against it noted `settings.calibration ... -> none here: ...`, though the
    files are the same. A run of students whose calibration changed is still noted."""
    from benchmarks.report import MODELS_CALIBRATION

    def given(calibration, students=()):
        rep = _report()
        rep["settings"]["students"] = [{"name": s} for s in students]
        rep["settings"]["models"] = [{"name": "student-fast_int8", "sha256": "a" * 64,
                                      "path": "/x/student-fast_int8.onnx"}]
        rep["settings"]["calibration"] = calibration
        return rep
    old = "built-in sample photos (scikit-image, blurred)"
    notes = compare_reports(given(old), given(MODELS_CALIBRATION), TOL)["notes"]
    assert not [n for n in notes if "calibration" in n], notes
    notes = compare_reports(given(old, ["fast"]), given("--calib mine/", ["fast"]), TOL)["notes"]
    assert [n for n in notes if "settings.calibration" in n], notes
