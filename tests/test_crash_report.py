"""A native crash inside a `quiet_native_stderr` window (the TFLite converter, a delegate) is said
on the real stderr: fd 2 pointed at the window's unlinked temporary file when the process died,
and `sharpen` vanished with status -11 and no word. Each test runs a child that really
segfaults (ctypes.string_at(0)); no torch or TensorFlow needed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file descriptors")

# `sharpen crash`: the real sharpen.cli.main (argument parsing, its handlers, crash reporting)
# around a command that opens a window, as a TFLite conversion does, and dies in native code.
CLI_CHILD = textwrap.dedent("""
    import argparse, ctypes, os, sys
    import sharpen.cli
    from runtime.console import TF_NOISE, quiet_native_stderr

    def crash(args):
        with quiet_native_stderr(TF_NOISE):
            os.write(2, b"a native library's last words\\n")
            ctypes.string_at(0)   # the crash site

    def build_parser():
        parser = argparse.ArgumentParser(prog="sharpen")
        sub = parser.add_subparsers(dest="command")
        sub.add_parser("crash").set_defaults(func=crash)
        return parser

    sharpen.cli.build_parser = build_parser
    sys.exit(sharpen.cli.main(["crash"]))
""")


def _run(code: str, *python_args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    child_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONFAULTHANDLER",
                                                                 "PYTHONDEVMODE")}
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT),
                                                            child_env.get("PYTHONPATH")]))
    child_env.update(env or {})
    return subprocess.run([sys.executable, *python_args, "-c", code], capture_output=True,
                          text=True, errors="replace", timeout=120, env=child_env, cwd=ROOT)


@pytest.mark.parametrize("python_args", [(), ("-X", "faulthandler")],
                         ids=["plain", "X-faulthandler"])
def test_a_segfault_inside_a_window_is_said_on_stderr(python_args):
    """With -X faulthandler too: its handler wrote to fd 2, which the window hid."""
    r = _run(CLI_CHILD, *python_args)
    assert r.returncode == -signal.SIGSEGV, (r.returncode, r.stderr)
    assert "Fatal Python error: Segmentation fault" in r.stderr, r.stderr
    site = next(n for n, line in enumerate(CLI_CHILD.splitlines(), 1) if "crash site" in line)
    assert f'File "<string>", line {site} in crash' in r.stderr, r.stderr
    assert "in main" in r.stderr, r.stderr


def test_a_faulthandler_the_program_enabled_keeps_its_file(tmp_path):
    """A program that embeds the CLI and sends faulthandler to its own log keeps it there."""
    log = tmp_path / "faults.log"
    code = f"import faulthandler\nlog = open({str(log)!r}, 'w')\n" \
           f"faulthandler.enable(file=log)\n{CLI_CHILD}"
    r = _run(code)
    assert r.returncode == -signal.SIGSEGV, (r.returncode, r.stderr)
    assert "Segmentation fault" in log.read_text(), log.read_text()
    assert "Segmentation fault" not in r.stderr, r.stderr


def test_importing_the_cli_enables_no_faulthandler():
    """Only running a command line does: code that embeds the API decides for itself."""
    r = _run("import faulthandler, sharpen.cli, runtime.cli, benchmarks.cli, runtime.console\n"
             "print(faulthandler.is_enabled())")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False", r.stdout


def test_sharpen_debug_shows_what_the_library_said_before_the_crash():
    """Its words sat in the window's file and died with the process; SHARPEN_DEBUG=1 hides
    nothing, so a rerun with it shows them (and the crash report still comes)."""
    quiet = _run(CLI_CHILD)
    assert "a native library's last words" not in quiet.stderr, quiet.stderr
    debug = _run(CLI_CHILD, env={"SHARPEN_DEBUG": "1"})
    assert debug.returncode == -signal.SIGSEGV, (debug.returncode, debug.stderr)
    assert "a native library's last words" in debug.stderr, debug.stderr
    assert "Fatal Python error: Segmentation fault" in debug.stderr, debug.stderr
