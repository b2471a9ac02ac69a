"""File names and messages beyond ASCII whatever the locale: `~/Videos/Urlaub 2026/Straße 東京
🎥.mp4` under LANG=C, or printed to a stdout in a Windows code page. For command lines'
main(), before anything is read or printed."""
from __future__ import annotations

import codecs
import os
import sys


def utf8_file_names() -> None:
    """Restart this command in Python's UTF-8 mode where Python reads file names as ASCII
    (LC_ALL=C or POSIX with PYTHONUTF8=0: Python's own default there is UTF-8 mode). Names
    then arrive as surrogate escapes, which ONNX Runtime, protobuf, JSON and print() refuse,
    each with its own misleading error; in UTF-8 mode they are the names the user typed, and
    a name that is not UTF-8 still round-trips. An explicit `-X utf8=0` is left as asked."""
    if sys.flags.utf8_mode or os.name == "nt" or not sys.executable \
            or "utf8" in sys._xoptions or not getattr(sys, "orig_argv", None) \
            or codecs.lookup(sys.getfilesystemencoding()).name != "ascii" \
            or not _sharpens_own_process():
        return
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    # In the environment too: a Python this command starts (bench's memory run) read the
    # names as ASCII again. -X as well, for `python -E` or `-I`, which ignore the environment.
    # execv, not a child: the PID a supervisor (systemd's MAINPID) and signals know stays.
    os.environ["PYTHONUTF8"] = "1"
    os.execv(sys.executable, [sys.executable, "-X", "utf8", *sys.orig_argv[1:]])


# The modules `python -m` runs as sharpen's command lines (torchrun's workers: sharpen.cli,
# distill.data.labels).
COMMAND_MODULES = ("sharpen.__main__", "sharpen.cli", "runtime.cli", "distill.data.labels")


def _sharpens_own_process() -> bool:
    """Whether this process was started as sharpen's command line (the console script,
    `python -m sharpen` or one of COMMAND_MODULES), whose restart runs nothing twice; not a
    script or notebook that calls main(), whose own work before the call a restart repeated."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None:
        return spec.name in COMMAND_MODULES
    return os.path.basename(getattr(main, "__file__", None) or "") == "sharpen"


def unspellable_escaped() -> None:
    """A stdout or stderr whose encoding cannot spell a name (a redirected stdout on Windows is
    in the ANSI code page: cp1252 has no 東京, cp932 no ß or 🎥; PYTHONIOENCODING=ascii)
    writes it as \\u escapes, as Python's stderr already does, instead of raising
    UnicodeEncodeError once the work is done."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def utf8_name(path: "str | os.PathLike[str]", error: type[Exception],
              library: str = "OpenCV") -> str:
    """`path` as a native library takes it, UTF-8: OpenCV's VideoCapture and VideoWriter,
    ONNX Runtime's and LiteRT's model loaders. `error` (the caller's SourceError, SinkError or
    ModelError) names the file where its name is not UTF-8 (a folder named on a Latin-1
    system, its bytes kept by Python as surrogate escapes), which crashed OpenCV in a segfault
    and which ONNX Runtime took for a model made by a newer version."""
    name = os.fspath(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        from .imageio import shown_path   # OpenCV's import, not before a command's restart
        raise error(f"{shown_path(name)}: its name is not UTF-8 (bytes from another system's "
                    f"code page), which {library} cannot open or write; rename it, e.g. "
                    "`convmv -f latin1 -t utf8 --notest -r FOLDER`") from None
    return name


def windows_ascii_hint(path: "str | os.PathLike[str]", library: str = "OpenCV") -> str:
    """Why `library` failed on `path` where it likely is the name: on Windows OpenCV's video
    reader and writer take a path in the ANSI code page, so a name beyond ASCII (Straße,
    東京) fails there, with no reason given (opencv/opencv#4242). '' elsewhere, and for an
    ASCII path."""
    if sys.platform != "win32":
        return ""
    name = os.fspath(path)
    odd = list(dict.fromkeys(c for c in name if ord(c) > 127))
    if not odd:
        return ""
    shown = ", ".join(repr(c) for c in odd[:5]) + (", ..." if len(odd) > 5 else "")
    return (f"on Windows {library} cannot open a path with characters beyond ASCII ({shown}): "
            "move or rename it to an ASCII path, or turn on Windows' 'Beta: Use Unicode "
            "UTF-8 for worldwide language support' (Settings, Time & language, Language & "
            "region, Administrative language settings)")
