"""Usage errors as a user who learns from them meets them: one line naming the option and the
value, "did you mean" for a misspelled command, option or choice, exit status 2, and a pointer
to the command's --help (with an example where a required option is missing) instead of its
whole usage."""
from __future__ import annotations

import shlex

import pytest

from sharpen.cli import build_parser, main


@pytest.fixture(autouse=True)
def terminal_80(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")


def error_of(argv: list[str], capsys) -> list[str]:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err.strip().splitlines()


def test_misspelled_command_gets_did_you_mean_in_one_line(capsys):
    err = error_of(["rn", "--model", "x.onnx"], capsys)
    assert "invalid choice: 'rn'" in err[0] and "did you mean 'run'?" in err[0]
    assert not any(line.startswith("usage:") for line in err)


def test_misspelled_required_flag_is_named_not_reported_missing(capsys):
    err = error_of(["run", "--modle", "x.onnx", "--source", "in.mp4"], capsys)
    assert err[0] == ("sharpen run: error: unrecognized arguments: --modle "
                      "(did you mean --model?)")
    assert err[1].startswith("see 'sharpen run --help'")
    assert len(err) == 2


def test_misspelled_flag_and_choice_value_get_did_you_mean(capsys):
    err = error_of(["models", "--heigth", "720"], capsys)
    assert "--heigth (did you mean --height?)" in err[0]
    err = error_of(["run", "--model", "x.onnx", "--source", "in.mp4", "--provider", "cdua"],
                   capsys)
    assert err[0].startswith("sharpen run: error: argument --provider: invalid choice: 'cdua'")
    assert err[0].endswith("; did you mean 'cuda'?")


def test_missing_required_option_points_at_an_example(capsys):
    err = error_of(["run"], capsys)
    assert err[0] == "sharpen run: error: the following arguments are required: --model, --source"
    example = err[1].split("e.g. ", 1)[1]
    build_parser().parse_args(shlex.split(example)[1:])


@pytest.mark.parametrize("argv, meant", [
    (["export", "--weights", "fsat", "--out", "{tmp}/e"], "fast"),
    (["evaluate", "--weights", "fsat", "--data", "{tmp}"], "fast"),
    (["demo", "--student", "fsat", "--out", "{tmp}/d"], "fast"),
    (["teacher", "{tmp}", "--out", "{tmp}/t", "--device", "cdua"], "cuda"),
    (["teacher", "{tmp}", "--out", "{tmp}/t", "--teacher-config", "smal"], "small"),
    (["synth", "--sharp", "{tmp}", "--out", "{tmp}/s", "--preset", "handhel"], "handheld"),
    (["corpus", "--photos", "{tmp}", "--out", "{tmp}/c", "--mix", "gopro,mlid"], "mild"),
    (["labels", "--data", "pared:{tmp}", "--out", "{tmp}/l"], "paired"),
])
def test_a_misspelled_name_the_command_checks_gets_did_you_mean(argv, meant, tmp_path, capsys):
    """Values the commands check themselves (shipped students, devices, teacher configs, blur
    presets, data kinds) listed the valid ones without naming the one meant."""
    import cv2
    import numpy as np
    cv2.imwrite(str(tmp_path / "a.png"), np.full((40, 48, 3), 128, np.uint8))
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"sharpen {argv[0]}: error: "), err
    assert f"did you mean {meant}?" in err[0], err


@pytest.mark.parametrize("argv, said", [
    # other tools' spellings: --input is not a misspelled --output
    (["run", "--model", "m.onnx", "--input", "in.mp4"], "--input (did you mean --source?)"),
    (["run", "-m", "m.onnx", "-i", "in.mp4", "-o", "out.mp4"],
     "-m -i -o (did you mean --model for -m, --source for -i, --out for -o?)"),
    (["run", "--weights", "m.onnx", "--source", "in.mp4"], "--weights (did you mean --model?)"),
    (["export", "--model", "fast", "--out", "e/"], "--model (did you mean --weights?)"),
    (["teacher", "--input", "photos/", "--out", "sharp/"],
     "--input (the inputs take no flag: sharpen teacher photos/ --out sharp/)"),
    # the teacher's weights are not an input: they were told "the inputs take no flag"
    (["teacher", "photos/", "--out", "sharp/", "--checkpoint", "t.pt"],
     "--checkpoint t.pt (did you mean --teacher-weights?)"),
    (["teacher", "photos/", "--out", "sharp/", "-m", "t.pt"],
     "-m t.pt (did you mean --teacher-weights?)"),
    (["labels", "--data", "d/", "--out", "o/", "--checkpoint", "t.pt"],
     "--checkpoint t.pt (did you mean --teacher-weights?)"),
    # demo's --student, bench's --students: not "did you mean --stride?" (a frame step)
    (["evaluate", "--data", "clip.mp4", "--student", "s.pt"],
     "--student s.pt (did you mean --weights?)"),
    (["evaluate", "--data", "clip.mp4", "--students", "s.pt"],
     "--students s.pt (did you mean --weights?)"),
    (["run", "--student", "m.onnx", "--source", "in.mp4"], "--student (did you mean --model?)"),
    # ffmpeg's segment muxer and NVRs' names: not "did you mean --segment?" (a length)
    (["run", "--model", "m.onnx", "--source", "in.mp4", "--segment", "60", "--max-segments",
      "5"], "--max-segments 5 (did you mean --keep-segments?)"),
    (["run", "--model", "m.onnx", "--source", "in.mp4", "--segment", "60", "--segment_wrap",
      "5"], "--segment_wrap 5 (did you mean --keep-segments?)"),
    (["run", "--model", "m.onnx", "--source", "in.mp4", "--segment_time", "60"],
     "--segment_time 60 (did you mean --segment?)"),
    # ffmpeg's and x264's own spelling of the encoder's speed: not "did you mean --resume?"
    (["run", "--model", "m.onnx", "--source", "in.mp4", "--codec", "h264", "--preset",
      "veryfast"], "--preset veryfast (did you mean --encoder-preset?)"),
])
def test_other_tools_option_names_point_at_ours(argv, said, capsys):
    err = error_of(argv, capsys)
    assert err[0].endswith(said), err


def test_an_option_the_command_has_is_not_taken_for_another_tools(capsys):
    """evaluate has both --model and --weights: --model is not "did you mean --weights"."""
    err = error_of(["evaluate", "--model", "m.onnx"], capsys)
    assert err[0] == "sharpen evaluate: error: the following arguments are required: --data"


def test_export_says_when_its_calibration_options_do_nothing(tmp_path, capsys):
    """`sharpen export --formats onnx --calib-method minmax` built the FP32 model and said
    nothing: the calibration options only shape INT8 formats."""
    rc = main(["export", "--weights", "fast", "--out", str(tmp_path / "e"), "--formats", "onnx",
               "--calib-method", "minmax", "--calib-count=8", "--no-latency", "--quiet",
               "--threads", "1"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert ("warning: --calib-method and --calib-count have no effect: --formats onnx builds "
            "no INT8 format (onnx-int8, onnx-qdq-trt, tflite-int8, engine-int8)") in err, err


def test_a_parser_built_for_the_api_reads_its_own_command_line_not_the_last_main_s(capsys):
    """The suggestions read the command line main() parsed last: build_parser().parse_args in
    the same process (tests, the README's parse check, a service) then named its words."""
    error_of(["run", "-m", "m.onnx", "-i", "in.mp4"], capsys)
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["run", "--model", "m.onnx"])
    assert e.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "sharpen run: error: the following arguments are required: --source", err


@pytest.mark.parametrize("argv, wrong", [
    (["distill", "--config", "c.yaml", "--lr", "3e-4"], "--help"),
    (["distill", "--config", "c.yaml", "--steps", "5"], "--threads"),
])
def test_a_short_option_is_not_near_another_for_the_dashes_they_share(argv, wrong, capsys):
    """'--lr' and '--help' share their dashes: counted in the spelling's likeness they made a
    learning rate 'did you mean --help?' and a step count 'did you mean --threads?'."""
    err = error_of(argv, capsys)
    assert err[0].startswith("sharpen distill: error: unrecognized arguments: "), err
    assert wrong not in err[0], err


def test_a_missing_required_option_is_still_named_beside_an_unrelated_unknown_one(capsys):
    """`sharpen run --model m.onnx --fast` said only "unrecognized arguments: --fast": the
    --source it lacks came to light on the next try. A misspelled required option (--modle,
    --input for --source) is still named alone, as the reason it is missing."""
    err = error_of(["run", "--model", "m.onnx", "--fast"], capsys)
    assert err[0] == ("sharpen run: error: the following arguments are required: --source; "
                      "unrecognized arguments: --fast"), err
    assert "e.g. sharpen run " in err[1]
    err = error_of(["run", "--model", "m.onnx", "--input", "in.mp4"], capsys)
    assert err[0] == "sharpen run: error: unrecognized arguments: --input (did you mean --source?)"


def test_an_abbreviated_calibration_option_is_warned_about_too():
    """argparse takes --calib-meth for --calib-method: the warning read the words as typed and
    missed it."""
    from optimize.commands import idle_calibration_flags
    argv = ["export", "--weights", "fast", "--out", "e/", "--formats", "onnx", "--calib-meth",
            "minmax", "--perc=99.9", "--calib", "in/"]
    args = build_parser().parse_args(argv)
    args.argv = argv
    said = idle_calibration_flags(args)
    assert said and said.startswith("--calib-method and --percentile have no effect"), said


def test_a_pattern_the_shell_expanded_unquoted_is_said_so(capsys, tmp_path, monkeypatch):
    """`sharpen run --source frames/*.png` unquoted: bash hands the run every match, and it
    said only "unrecognized arguments: frames/b.png frames/c.png", as for a typo. It says the
    option takes one file, and how to give the pattern or the folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "frames").mkdir()
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / "frames" / name).write_bytes(b"")
    err = error_of(["run", "--model", "m.onnx", "--source", "frames/a.png", "frames/b.png",
                    "frames/c.png", "--out", "sharp"], capsys)
    assert err[0] == ("sharpen run: error: unrecognized arguments: frames/b.png frames/c.png "
                      "(--source takes one file, not 3: quote a pattern, which the shell "
                      "expands unquoted, --source 'frames/*.png', or give the folder, --source "
                      "frames)"), err
    # Words that are no files, or no files beside the value's, are a plain mistake.
    err = error_of(["run", "--model", "m.onnx", "--source", "frames/a.png", "extra"], capsys)
    assert err[0] == "sharpen run: error: unrecognized arguments: extra", err


def test_a_second_source_is_refused_not_left_out_without_a_word(capsys):
    """An operator with several cameras on one box tried one process for two of them,
    `--source cam1.mp4 --source cam2.mp4`: the run sharpened cam2 alone, as argparse keeps an
    option's last value, and cam1's frames went unsharpened without a word. A run reads one
    source: a second is refused, with the way to run several cameras."""
    err = error_of(["run", "--model", "m.onnx", "--source", "cam1.mp4", "--source=cam2.mp4",
                    "--out", "o.ts"], capsys)
    assert err[0].startswith("sharpen run: error: argument --source: given twice (cam1.mp4, "
                             "cam2.mp4): a run reads one source; "), err
    assert "a run each" in err[0] and "--stats" in err[0], err


def test_a_word_after_stats_that_names_no_stats_file_is_refused_not_written_over(capsys):
    """--stats takes several files (`--stats s.json s.prom`), and took any word after it:
    `--stats s.json out.mp4`, the output misplaced, wrote the stats over out.mp4 (another
    camera's recording, a photo) where a word left over was refused before. Several files in
    one --stats are each .json or .prom; one alone keeps any name."""
    for stray in ("out.mp4", "photo.png", "stats"):
        err = error_of(["run", "--model", "m.onnx", "--source", "cam1.mp4", "--stats",
                        "s.json", stray], capsys)
        assert err[0].startswith(f"sharpen run: error: argument --stats: {stray} is no "), err
        assert ".json or .prom" in err[0] and "--out" in err[0], err
    from runtime.cli import options_from_args
    args = build_parser().parse_args(["run", "--model", "m.onnx", "--source", "cam1.mp4",
                                      "--stats", "s.JSON", "t.prom", "--stats", "stats"])
    assert args.stats == ["s.JSON", "t.prom", "stats"], args.stats
    args = build_parser().parse_args(["run", "--model", "m.onnx", "--source", "cam1.mp4",
                                      "--stats", "stats.txt"])
    assert options_from_args(args).stats_path == "stats.txt"


def test_an_os_error_on_the_programs_own_files_keeps_its_traceback(tmp_path):
    """The catch-all that says a full disk or a vanished file in one line took an ENOENT or
    EACCES on a file of sharpen's own (a bug, or a broken install) for the box's, hiding where
    it came from; a vanished file of the user's named no way to see where it was opened."""
    import errno
    import os
    from pathlib import Path

    import runtime
    from sharpen.cli import box_error_line

    def os_error(code: int, path: Path) -> OSError:
        return OSError(code, os.strerror(code), str(path))

    own = Path(runtime.__file__).parent / "formats.json"
    assert box_error_line(os_error(errno.ENOENT, own), "export") is None
    assert box_error_line(os_error(errno.EACCES, own), "run") is None
    assert box_error_line(OSError(errno.ENOENT, "gone"), "run") is None   # no file named
    assert box_error_line(os_error(errno.ENOENT, tmp_path / "a.json"), "labels") == (
        f"sharpen labels: error: {tmp_path / 'a.json'}: No such file or directory (set "
        "SHARPEN_DEBUG=1 for the traceback)")
    assert box_error_line(os_error(errno.ENOSPC, tmp_path / "a.json"), "labels") == (
        f"sharpen labels: error: {tmp_path / 'a.json'}: No space left on device; what is "
        "done is kept: free some space and run the same command to continue")
    # A limit on a file's size (ulimit -f, FAT32's 4 GiB) is not cured by freeing space
    assert box_error_line(os_error(errno.EFBIG, tmp_path / "a.json"), "labels") == (
        f"sharpen labels: error: {tmp_path / 'a.json'}: File too large (the limit on one "
        "file's size, ulimit -f or a FAT32 disk's 4 GiB, not the disk's space); what is done "
        "is kept: raise it or write elsewhere, and run the same command to continue")
    assert box_error_line(os_error(errno.EFBIG, tmp_path / "a.png"), "synth") == (
        f"sharpen synth: error: {tmp_path / 'a.png'}: File too large (the limit on one "
        "file's size, ulimit -f or a FAT32 disk's 4 GiB, not the disk's space)")
    assert box_error_line(os_error(errno.EROFS, tmp_path / "a.json"), "run") == (
        f"sharpen run: error: {tmp_path / 'a.json'}: Read-only file system")


def test_a_full_disk_met_copying_a_file_names_the_copy_not_the_original(tmp_path):
    """`sharpen export` copies the FP32 ONNX into its scratch folder to quantise it; on a full
    disk the line named the ONNX it copied from ("out/a.onnx: No space left on device"), a file
    read, on a disk the user may then free in vain. shutil.copyfile's OSError holds both: the
    copy (filename2) is what did not fit."""
    import errno
    import os

    from sharpen.cli import box_error_line

    src, dst = tmp_path / "photos" / "a.onnx", tmp_path / "out" / ".export-tmp" / "fp32.onnx"
    for code in (errno.ENOSPC, errno.EFBIG, errno.EROFS):
        said = box_error_line(OSError(code, os.strerror(code), str(src), None, str(dst)),
                              "export")
        assert said.startswith(f"sharpen export: error: {dst}: {os.strerror(code)}"), said
    # A file not found or not readable may be either: the original, as before
    said = box_error_line(OSError(errno.ENOENT, "gone", str(src), None, str(dst)), "export")
    assert said.startswith(f"sharpen export: error: {src}: gone"), said


def test_a_full_disk_exits_2_from_a_command_with_no_message_of_its_own(tmp_path):
    """`sharpen run` and `labels` exit 2 on a full disk (a restart repeats it: a service's
    RestartPreventExitStatus=2); the commands without a message of their own for it exited 1,
    which `runs --same`, `bench` and `export` give a verdict (they differ, a row regressed, a
    parity check failed). synth's first image is over the limit (ulimit -f stands in)."""
    import cv2
    import numpy as np

    from child_fixtures import main_with_file_limit
    sharp, out = tmp_path / "sharp", tmp_path / "out"
    sharp.mkdir()
    noise = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    cv2.imwrite(str(sharp / "a.png"), noise)
    said = main_with_file_limit(["synth", "--sharp", str(sharp), "--out", str(out),
                                 "--quiet"], 8000)
    assert "error" not in said and said.get("rc") == 2, said
    assert said["err"].strip().splitlines()[-1] == (
        f"sharpen synth: error: {out / 'input' / 'a.png'}: File too large (the limit on one "
        "file's size, ulimit -f or a FAT32 disk's 4 GiB, not the disk's space)"), said["err"]
