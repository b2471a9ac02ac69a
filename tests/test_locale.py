"""Paths and messages outside ASCII on any locale: a laptop's `~/Videos/Urlaub 2026/Straße 東京
🎥.mp4` under LANG=C (where Python may read file names as ASCII), a stdout whose encoding cannot
spell them (Windows' code pages when redirected, PYTHONIOENCODING=ascii), and a `~` that quotes
kept from the shell."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from tests.runtime_fixtures import drain, make_onnx_model

FOLDER = "Urlaub 2026/Straße 東京 🎥"


def _sharpen(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("LANG", "LC_ALL", "LC_CTYPE", "PYTHONUTF8", "PYTHONIOENCODING")}
    environ["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), environ.get("PYTHONPATH", "")])
    environ.update(env)
    return subprocess.run([sys.executable, "-m", "sharpen", *args], cwd=cwd, env=environ,
                          capture_output=True, timeout=300)


def _model_and_photo(root: Path) -> tuple[Path, Path]:
    folder = root / FOLDER
    folder.mkdir(parents=True)
    model = make_onnx_model(folder / "Modell 模型.onnx")
    photo = folder / "Müller 富士山 😀.png"
    rng = np.random.default_rng(0)
    cv2.imencode(".png", rng.integers(0, 255, (24, 32, 3), np.uint8))[1].tofile(photo)
    return model, photo


def test_a_c_locale_without_utf8_mode_runs_and_names_non_ascii_paths(tmp_path):
    """LC_ALL=C with PYTHONUTF8=0 gives Python an ASCII file-system encoding: names reached the
    program as surrogate escapes, which ONNX Runtime refused ("cannot load ... made for a newer
    version?") and protobuf and print() crashed on."""
    model, photo = _model_and_photo(tmp_path)
    out = tmp_path / FOLDER / "Ausgabe ✨"
    c = {"LANG": "C", "LC_ALL": "C", "PYTHONUTF8": "0"}
    r = _sharpen(["run", "--model", str(model), "--source", str(photo), "--out", str(out)],
                 tmp_path, **c)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert (out / photo.name).is_file()
    r = _sharpen(["models", str(model)], tmp_path, **c)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert "Modell 模型.onnx".encode() in r.stdout


def test_a_restarted_command_starts_python_children_that_read_names_as_utf8(tmp_path):
    """The restart in UTF-8 mode was the command's alone: a Python it started (`sharpen
    bench`'s memory run) read the same names as ASCII again, and ONNX Runtime refused the
    model ("cannot load ... made for a newer version?")."""
    model, _ = _model_and_photo(tmp_path)
    command = tmp_path / "bin" / "sharpen"   # a console script's stand-in: it restarts
    command.parent.mkdir()
    command.write_text(
        "import sys; from runtime.locale_text import utf8_file_names; utf8_file_names(); "
        "from benchmarks.memory import measure_peak_mib; "
        "peak, why = measure_peak_mib('ort-fp32', sys.argv[1], (32, 24), frames=1); "
        "print(why); sys.exit(0 if peak else 1)\n", encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if k not in ("LANG", "PYTHONUTF8")}
    r = subprocess.run([sys.executable, str(command), str(model)], capture_output=True,
                       timeout=300, cwd=tmp_path,
                       env={**environ, "LC_ALL": "C", "PYTHONUTF8": "0",
                            "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")[-2000:]


def test_a_script_that_calls_main_is_not_run_again_from_its_start(tmp_path):
    """A script that set sys.argv and called sharpen's main() was restarted whole under
    LC_ALL=C PYTHONUTF8=0: what it did before the call (here a line appended) was done
    twice. Only sharpen's own command line restarts; a caller's process is the caller's."""
    script = tmp_path / "pipeline.py"
    script.write_text("import sys\n"
                      "with open(sys.argv[1], 'a') as f:\n"
                      "    f.write('started\\n')\n"
                      "from sharpen.cli import main\n"
                      "sys.argv = ['sharpen', '--version']\n"
                      "sys.exit(main())\n", encoding="utf-8")
    log = tmp_path / "log.txt"
    environ = {k: v for k, v in os.environ.items() if k not in ("LANG", "PYTHONUTF8")}
    r = subprocess.run([sys.executable, str(script), str(log)], capture_output=True,
                       timeout=120, cwd=tmp_path,
                       env={**environ, "LC_ALL": "C", "PYTHONUTF8": "0",
                            "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-2000:]
    assert log.read_text() == "started\n"


def test_a_stdout_that_cannot_spell_a_name_prints_it_escaped_not_a_traceback(tmp_path):
    """A redirected stdout on Windows is in the ANSI code page (cp1252 has no 東京); print()
    raised UnicodeEncodeError there after the work was done. Escaped as stderr already is."""
    model, _ = _model_and_photo(tmp_path)
    r = _sharpen(["models", str(model)], tmp_path, PYTHONIOENCODING="ascii")
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert b"Traceback" not in r.stderr
    assert b"Modell \\u6a21\\u578b.onnx" in r.stdout


def test_a_quoted_tilde_is_the_home_folder_not_a_folder_named_tilde(tmp_path):
    """"~/Videos/Urlaub 2026" in quotes (a path with spaces, copied from a file manager) reaches
    the program unexpanded: the model was "not found", and --out made a folder named ~ in the
    working directory, which a later `rm -rf ~` would take for the home folder."""
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    elsewhere.mkdir()
    model, photo = _model_and_photo(home)
    r = _sharpen(["run", "--model", f"~/{FOLDER}/{model.name}",
                  "--source", f"~/{FOLDER}/../{Path(FOLDER).name}/{photo.name}",
                  "--out=~/Ausgabe ✨/"], elsewhere, HOME=str(home))
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert (home / "Ausgabe ✨" / photo.name).is_file()
    assert list(elsewhere.iterdir()) == []


def test_only_a_bare_tilde_is_expanded_not_a_quoted_tilde_name():
    """`'~backup/x'` quoted is most likely a folder named ~backup, not user backup's home
    (Debian has a `backup` user whose home is /var/backups): only `~` and `~/...` stand for
    the home folder once quotes kept the shell away."""
    import os

    from runtime.shell_words import home_expanded, home_of

    home = os.path.expanduser("~")
    assert home_of("~") == home
    assert home_of("~/Videos") == os.path.join(home, "Videos")
    assert home_of("~backup/x") == "~backup/x"
    assert home_of("~root") == "~root"
    assert home_expanded(["--out=~root/x", "~/y"]) == ["--out=~root/x", home + "/y"]


def test_a_table_fits_a_60_column_terminal(tmp_path):
    """Tables were at least 120 columns wide whatever the terminal: on a laptop's narrow
    terminal each row wrapped into two broken lines. On a terminal they take its width, and
    a table too wide for it is a record per row, its numbers whole, not folded columns."""
    import fcntl
    import pty
    import struct
    import termios

    from runtime.console import print_table

    main_fd, term_fd = pty.openpty()
    fcntl.ioctl(term_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 60, 0, 0))
    headers = ["format", "precision", "file", "size", "ms @1080p", "max abs", "PSNR dB", "SSIM",
               "result"]
    row = ["onnx", "FP32", "Straße 東京 🎥 student-fast.onnx", "179.6 KiB", "166", "1.2e-07",
           "100.00", "1.0000", "PASS"]
    with open(term_fd, "w", encoding="utf-8", closefd=True) as term:
        print_table("export: fast -> Modelle", headers, [row], file=term, right=["size"])
    text = drain(main_fd)
    os.close(main_fd)
    from rich.cells import cell_len
    lines = re.sub(r"\x1b\[[0-9;]*m", "", text.decode()).replace("\r", "").splitlines()
    assert lines and max(cell_len(line) for line in lines) <= 60, "\n".join(lines)
    assert any("179.6 KiB" in line for line in lines), "a number folded over two lines"
    assert any("Straße 東京 🎥 student-fast.onnx" in line for line in lines)


def test_a_table_on_a_terminal_of_no_size_is_printed_whole():
    """A terminal that reports 0 columns (a pty nobody sized: `docker exec -t`, some CI
    runners, a serial console) made a 0-column console, which printed no table at all."""
    import fcntl
    import pty
    import struct
    import termios

    from runtime.console import print_table

    main_fd, term_fd = pty.openpty()
    fcntl.ioctl(term_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
    with open(term_fd, "w", encoding="utf-8", closefd=True) as term:
        print_table("export", ["format", "size"], [["onnx", "179.6 KiB"]], file=term)
    text = drain(main_fd)
    os.close(main_fd)
    assert b"179.6 KiB" in text and b"onnx" in text, text


def test_a_figure_of_non_latin_names_says_once_which_characters_no_font_draws(tmp_path):
    """matplotlib warned once per character no font had ("Glyph 26481 (\\N{CJK UNIFIED
    IDEOGRAPH-6771}) missing from font(s) DejaVu Sans.", six lines for a folder of two names);
    now an installed CJK font draws them, or one warning names them all."""
    import warnings

    from distill.evaluate import side_by_side
    from runtime.warn import SharpenWarning

    img = np.random.default_rng(0).random((24, 24, 3)).astype(np.float32)
    outputs = {"Straße 東京 🎥": {"input": img, "fast": img},
               "Müller 富士山": {"input": img, "fast": img}}
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        side_by_side(outputs, tmp_path / "Fotos 写真" / "side.png", side=16,
                     title="Urlaub 2026/Fotos 写真")
    assert (tmp_path / "Fotos 写真" / "side.png").is_file()
    texts = [str(w.message) for w in said]
    assert not [t for t in texts if t.startswith("Glyph")], texts
    ours = [t for t in texts if "font" in t]
    assert len(ours) <= 1, texts
    assert all(issubclass(w.category, SharpenWarning) for w in said if "font" in str(w.message))


def test_a_tilde_in_a_key_value_override_is_the_home_folder(monkeypatch, tmp_path):
    """Bash expands ~ after = only in variable assignments: `data.labels=~/Etiketten` reaches
    the program as typed, quoted or not, and training said "label cache not found:
    ~/Etiketten"."""
    from distill.config import as_overrides, load_config

    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = load_config(None, ["data.labels=~/Etiketten ラベル/", "out='~/Läufe 実行/fast'",
                             "data.val_labels=~"])
    assert cfg.data.labels == f"{tmp_path}/Etiketten ラベル/"
    assert cfg.out == f"{tmp_path}/Läufe 実行/fast"
    assert cfg.data.val_labels == ""   # YAML's null, as before
    assert load_config(None, as_overrides(cfg)).to_dict() == cfg.to_dict()


def test_a_tilde_in_a_config_file_is_the_home_folder_as_in_an_override(monkeypatch, tmp_path):
    """`out: ~/runs/fast` in a YAML config made a folder named ~ in the working directory (one
    `rm -rf ~` away from the home folder), where `out=~/runs/fast` on the command line is the
    home folder's; config.yaml and --print-config spelled Straße as Stra\\xDFe."""
    from distill.config import load_config, save_config

    monkeypatch.setenv("HOME", str(tmp_path))
    config = tmp_path / "mine.yaml"
    config.write_text("out: ~/Läufe 実行/fast\ndata:\n  labels: ~/Etiketten\n  val_labels: ~\n",
                      encoding="utf-8")
    cfg = load_config(str(config))
    assert cfg.out == f"{tmp_path}/Läufe 実行/fast"
    assert cfg.data.labels == f"{tmp_path}/Etiketten"
    assert cfg.data.val_labels == ""   # YAML's null, as before
    save_config(cfg, tmp_path / "config.yaml")
    assert f"out: {tmp_path}/Läufe 実行/fast\n" in (tmp_path / "config.yaml").read_text(
        encoding="utf-8")


LATIN1 = os.fsdecode(b"Urlaub Stra\xdfe")   # a folder named on a Latin-1 system (a camera card)


def test_a_folder_named_in_latin1_gets_pairs_written_not_a_segfault(tmp_path):
    """OpenCV's imwrite took the name as UTF-8: a name that is not (its bytes kept by Python
    as surrogate escapes) crashed `sharpen synth` and `sharpen labels` in a segfault."""
    out = tmp_path / LATIN1 / "a.png"
    code = ("import sys, numpy as np; from distill.images import write_image; "
            "write_image(sys.argv[1], np.zeros((8, 8, 3), np.float32))")
    r = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-2000:]
    assert cv2.imdecode(np.fromfile(out, np.uint8), cv2.IMREAD_COLOR).shape == (8, 8, 3)


def test_a_video_named_in_latin1_is_refused_by_name_not_a_segfault(tmp_path):
    """cv2.VideoCapture and cv2.VideoWriter crashed (a segfault) on a name that is not UTF-8;
    the error now names the file and the rename that makes it readable."""
    model, _ = _model_and_photo(tmp_path)
    folder = tmp_path / LATIN1
    folder.mkdir()
    clip = tmp_path / "clip.mp4"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"mp4v"), 10, (32, 24))
    for _ in range(3):
        w.write(np.full((24, 32, 3), 128, np.uint8))
    w.release()
    for source, out in ((clip, folder / "out.mp4"), (folder / "clip.mp4", tmp_path / "o.mp4")):
        if source.parent == folder:
            clip.rename(source)
        r = _sharpen(["run", "--model", str(model), "--source", str(source), "--out", str(out)],
                     tmp_path)
        said = r.stderr.decode(errors="replace")
        assert r.returncode in (1, 2), said[-2000:]
        assert "UTF-8" in said and "Urlaub Stra" in said, said


def test_a_video_out_named_in_latin1_is_refused_before_the_camera_is_opened(tmp_path):
    """The refusal came once the source had opened: with the camera away it was "cannot open
    stream source" and exit 3, which a unit's Restart= retries for good, and with the camera
    there after its open (up to --timeout). A usage error, exit 2, before anything is opened."""
    model, _ = _model_and_photo(tmp_path)
    folder = tmp_path / LATIN1
    folder.mkdir()
    for out in (folder / "cam.mp4", folder / "cam.ts"):
        extra = ["--segment", "60"] if out.suffix == ".ts" else []
        r = _sharpen(["run", "--model", str(model), "--source", "http://127.0.0.1:9/cam.mjpg",
                      "--timeout", "5", "--reconnect", "0", "--out", str(out), *extra],
                     tmp_path)
        said = r.stderr.decode(errors="replace")
        assert r.returncode == 2, said[-2000:]
        assert "not UTF-8" in said and "Urlaub Stra" in said and "stream" not in said, said


def test_evaluate_reads_and_writes_its_named_files_in_utf8_whatever_the_locale(tmp_path):
    """per_image.csv (the images' names) was written, and the resume journal read, in the
    locale's encoding: on Windows (cp1252) a 東京 in a name raised UnicodeEncodeError once
    every image was scored. Python's EncodingWarning finds each open() that leaves it so."""
    model, _ = _model_and_photo(tmp_path)
    pairs = tmp_path / "Paare ペア"
    rng = np.random.default_rng(1)
    for sub in ("input", "target"):
        (pairs / sub).mkdir(parents=True)
        cv2.imencode(".png", rng.integers(0, 255, (32, 32, 3), np.uint8))[1].tofile(
            pairs / sub / "Straße 東京.png")
    code = ("import sys, warnings; warnings.filterwarnings('error', category=EncodingWarning, "
            "module=r'(distill|runtime|benchmarks|optimize|sharpen)\\.'); "
            "from sharpen.cli import main; sys.exit(main(sys.argv[1:]))")
    out = tmp_path / "Bewertung"
    r = subprocess.run([sys.executable, "-X", "warn_default_encoding", "-c", code, "evaluate",
                        "--model", str(model), "--data", str(pairs), "--out", str(out)],
                       capture_output=True, timeout=300, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-3000:]
    assert "Straße 東京" in (out / "per_image.csv").read_text(encoding="utf-8")


def test_training_files_are_utf8_whatever_the_locale(tmp_path):
    """A config file and train.log were read and written in the locale's encoding: on
    Windows (cp1252) `labels: ~/Straße 東京` in a config read back as mojibake, and
    train.log, which names the data's paths, could not be written."""
    (tmp_path / "a.yaml").write_text("data:\n  labels: /Fotos/Straße 東京\n", encoding="utf-8")
    code = ("import sys, warnings; warnings.filterwarnings('error', category=EncodingWarning, "
            "module=r'(distill|runtime)\\.'); from pathlib import Path; "
            "from distill.config import load_config; from distill.train_log import append_text; "
            "d = Path(sys.argv[1]); cfg = load_config(str(d / 'a.yaml')); "
            "append_text(d / 'run' / 'train.log', cfg.data.labels); print(cfg.data.labels)")
    r = subprocess.run([sys.executable, "-X", "warn_default_encoding", "-c", code, str(tmp_path)],
                       capture_output=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-3000:]
    assert "/Fotos/Straße 東京" in (tmp_path / "run" / "train.log").read_text(encoding="utf-8")


def test_a_run_in_a_folder_named_in_latin1_trains_and_logs_not_a_unicode_error(tmp_path):
    """train.log, written as UTF-8, refused a path whose name is not UTF-8 (its byte kept by
    Python as a surrogate escape): `sharpen distill data.labels=` a cache labelled in a Latin-1
    folder stopped at its first log line with "'utf-8' codec can't encode character
    '\\udcdf'", after labels and validation images were read."""
    from test_trainer import tiny_cfg

    from distill.trainer import train

    out = tmp_path / LATIN1 / "run"
    train(tiny_cfg(out, 1), quiet=True)
    assert (out / "last.pt").is_file()
    assert "Stra\\udcdfe" in (out / "train.log").read_text(encoding="utf-8")


def test_tables_of_images_in_a_folder_named_in_latin1_are_written_not_a_unicode_error():
    """per_image.csv, written as UTF-8, refused an image in a Latin-1 subfolder (its name's
    byte a surrogate escape): `sharpen evaluate --out` scored every image, then stopped on a
    UnicodeEncodeError with no per_image.csv."""
    import csv
    import tempfile

    from distill.evaluate import write_per_image_csv

    name = f"{LATIN1}/000"
    res = {"per_image": {name: {"input": {"psnr": 20.0, "ssim": 0.5},
                                "fast": {"psnr": 21.0, "ssim": 0.6}}}}
    with tempfile.TemporaryDirectory() as d:
        path = write_per_image_csv(res, Path(d) / "per_image.csv")
        with open(path, encoding="utf-8-sig", newline="") as f:   # UTF-8 still, for pandas
            rows = list(csv.reader(f))
    assert rows[1][:2] == ["Urlaub Stra\\udcdfe/000", "Urlaub Stra\\udcdfe"], rows


def test_a_config_saved_in_latin1_is_named_as_not_utf8_with_the_line(tmp_path):
    """Configs are read as UTF-8 on every system now; one saved in Windows' cp1252 (Notepad's
    "ANSI") was refused as "not a text file", which it is, and nothing said what to change."""
    import pytest

    from distill.config import load_config

    p = tmp_path / "fast.yaml"
    p.write_bytes(b"model:\n  arch: fast\ndata:\n  labels: /Fotos/Stra\xdfe\n")
    with pytest.raises(ValueError) as e:
        load_config(str(p))
    said = str(e.value)
    assert str(p) in said and "UTF-8" in said and "line 4" in said, said


def test_a_name_that_is_not_utf8_is_shown_by_its_bytes_in_every_message(tmp_path):
    """A Latin-1 ß reached messages as Python's surrogate escape, `Stra\\udcdfe`, in one and
    as `Stra\\xdfe` in the video's; a newline in such a name broke the video's message in two.
    Each shows the byte (as `ls -b` does) and escapes control characters."""
    import pytest

    from runtime.imageio import shown_path
    from runtime.locale_text import utf8_name
    from runtime.source_base import SourceError

    name = tmp_path / LATIN1 / "a\nb.mp4"
    shown = f"{tmp_path}/Urlaub Stra\\xdfe/a\\nb.mp4"
    assert shown_path(name) == shown
    with pytest.raises(SourceError) as e:
        utf8_name(name, SourceError)
    assert str(e.value).startswith(shown + ":"), str(e.value)
    assert shown_path("Straße 東京 🎥.mp4") == "Straße 東京 🎥.mp4"


def test_a_training_video_named_in_latin1_is_refused_by_name_not_a_segfault(tmp_path):
    """`sharpen run` refused such a video by name, but `sharpen labels` on a folder of clips
    and `sharpen evaluate` on a clip still handed the name to OpenCV, which crashed (-11)."""
    model, _ = _model_and_photo(tmp_path)
    folder = tmp_path / LATIN1
    folder.mkdir()
    clip = folder / "clip.mp4"
    w = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter.fourcc(*"mp4v"), 10, (32, 24))
    for _ in range(3):
        w.write(np.full((24, 32, 3), 128, np.uint8))
    w.release()
    (tmp_path / "clip.mp4").rename(clip)
    for args in (["labels", "--data", str(folder), "--out", str(tmp_path / "labels")],
                 ["evaluate", "--model", str(model), "--data", str(clip),
                  "--out", str(tmp_path / "scores")]):
        r = _sharpen(args, tmp_path)
        said = r.stderr.decode(errors="replace")
        assert r.returncode in (1, 2), said[-2000:]
        assert "not UTF-8" in said and "Urlaub Stra\\xdfe" in said, said[-2000:]


def test_a_figure_of_a_folder_named_in_latin1_shows_its_bytes_not_a_crash(tmp_path):
    """`sharpen evaluate --data` a REDS folder named in Latin-1 scored every image, then
    crashed in matplotlib on the figure's title (a surrogate escape it cannot draw), before
    per_image.csv was written."""
    from distill.evaluate import side_by_side

    img = np.random.default_rng(0).random((24, 24, 3)).astype(np.float32)
    out = side_by_side({f"{LATIN1}/000": {"input": img, "fast": img}}, tmp_path / "side.png",
                       side=16, title=f"/data/{LATIN1}/REDS/val")
    assert out.is_file()


def test_the_demo_refuses_an_out_folder_named_in_latin1_before_its_stages(tmp_path):
    """The demo's video and crops went to OpenCV under --out: a folder name that is not UTF-8
    crashed it (a segfault) after the data set was built and labelled."""
    out = tmp_path / LATIN1 / "demo"
    r = _sharpen(["demo", "--out", str(out)], tmp_path)
    said = r.stderr.decode(errors="replace")
    assert r.returncode in (1, 2), said[-2000:]
    assert "not UTF-8" in said and "Urlaub Stra\\xdfe" in said, said[-2000:]
    assert not (tmp_path / LATIN1).exists()


def test_a_model_in_a_folder_named_in_latin1_is_refused_by_name_not_as_a_newer_version(tmp_path):
    """ONNX Runtime (and LiteRT) take a model's path as UTF-8: one that is not was said to be
    "made for a newer version, or a damaged copy?", and the user replaced a good model."""
    model, photo = _model_and_photo(tmp_path)
    folder = tmp_path / LATIN1
    folder.mkdir()
    model = model.rename(folder / "m.onnx")
    r = _sharpen(["run", "--model", str(model), "--source", str(photo),
                  "--out", str(tmp_path / "o.png")], tmp_path)
    said = r.stderr.decode(errors="replace")
    assert r.returncode in (1, 2), said[-2000:]
    assert "not UTF-8" in said and "ONNX Runtime" in said and "newer" not in said, said


def test_the_labels_module_torchrun_runs_restarts_in_utf8_mode_as_sharpen_labels(tmp_path):
    """`python -m distill.data.labels` (the command `sharpen labels --help` gives torchrun)
    did not restart under LC_ALL=C PYTHONUTF8=0: its manifest recorded the data's names as
    surrogate escapes ("Stra\\udcc3\\udc9fe"), which `sharpen labels` then found at "a new
    path"; and a mistyped SHARPEN_PROGRESS_INTERVAL stopped it at its first progress line, after
    the teacher was loaded and run.json written, not before any work as `sharpen labels`."""
    import torch

    from distill.checkpoint import atomic_save, make_checkpoint
    from distill.images import write_image
    from distill.restormer import build_restormer

    torch.manual_seed(0)
    m = build_restormer("tiny")
    teacher = tmp_path / "t.pt"
    atomic_save(make_checkpoint(m, kind="teacher", arch="restormer",
                                arch_args=m.config.to_dict()), teacher)
    data = tmp_path / FOLDER
    rng = np.random.default_rng(0)
    for sub in ("input", "target"):
        write_image(data / sub / "Müller.png", rng.random((24, 32, 3)).astype(np.float32))
    out = tmp_path / "Etiketten 東京"
    environ = {k: v for k, v in os.environ.items()
               if k not in ("LANG", "LC_CTYPE", "PYTHONUTF8", "RANK", "WORLD_SIZE",
                            "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    environ.update(LC_ALL="C", PYTHONUTF8="0", OMP_NUM_THREADS="1",
                   PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    cmd = [sys.executable, "-m", "distill.data.labels", "--data", str(data), "--out", str(out),
           "--teacher-weights", str(teacher), "--tile", "32", "--overlap", "8", "--device",
           "cpu"]
    bad = subprocess.run(cmd, capture_output=True, timeout=300, cwd=tmp_path,
                         env={**environ, "SHARPEN_PROGRESS_INTERVAL": "abc"})
    assert bad.returncode == 2, bad.stderr.decode(errors="replace")[-2000:]
    assert b"SHARPEN_PROGRESS_INTERVAL" in bad.stderr and not out.exists()
    r = subprocess.run(cmd + ["--quiet"], capture_output=True, timeout=300, cwd=tmp_path,
                       env=environ)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-2000:]
    entries = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["entries"]
    assert [e["input"] for e in entries.values()] == [str(data / "input" / "Müller.png")]
