"""The package as pip builds it: what a container image or a device gets from
`pip install ".[runtime,litert]"` (README: "Container / runtime-only install")."""
from __future__ import annotations

import os
import posixpath
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("distill", "optimize", "runtime", "benchmarks", "sharpen")


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _project(tmp_path: Path) -> Path:
    """tmp_path/src holding this pyproject.toml and README.md, to add a project's folders to;
    the test is skipped where the build backend is not installed."""
    pytest.importorskip("hatchling", reason="the build backend (hatchling, in the dev extra) "
                                            "is not installed here: pip install hatchling")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    return src


def _hatchling_build(hook: str, src: Path, out: Path) -> Path:
    """`out`, where hatchling's PEP 517 hook `hook` (build_sdist, build_editable) put what it
    built from `src`, run in a child with `src` as its folder, as a frontend runs it."""
    r = subprocess.run([sys.executable, "-c", "import sys, hatchling.build as b; "
                        f"b.{hook}(sys.argv[1])", str(out)],
                       cwd=src, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def _build_wheel(src: Path, out: Path) -> Path:
    # Offline: the build backend installed here (the dev extra's), not one fetched by pip.
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "--no-index", "-q", "-w", str(out), str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    (wheel,) = out.glob("*.whl")
    return wheel


def test_the_wheel_is_built_without_writing_into_the_source_tree(tmp_path):
    """A Docker build that mounts the checkout (`RUN --mount=type=bind,target=/src pip install
    "/src[runtime,litert]"`, read-only) failed: setuptools made /src/build and
    /src/image_sharpening_kd.egg-info there ("could not create ... Permission denied"). Its
    build/lib also outlived the tree: a module deleted from a checkout still shipped in the next
    wheel built there. Root writes through any mode, so the tree is compared before and after
    (and made read-only too where this user is not root)."""
    src = _project(tmp_path)
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, src / pkg,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (src / "runtime" / "gone_soon.py").write_text("DELETED = False\n")
    untouched = _tree(src)
    first = _build_wheel(src, tmp_path / "w1")
    assert _tree(src) == untouched, sorted(_tree(src) - untouched)
    assert "runtime/gone_soon.py" in zipfile.ZipFile(first).namelist()
    (src / "runtime" / "gone_soon.py").unlink()
    before = _tree(src)
    if os.geteuid() != 0:
        for p in [src, *src.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
    try:
        wheel = _build_wheel(src, tmp_path / "w2")
    finally:
        for p in [src, *src.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)
    assert _tree(src) == before, sorted(_tree(src) - before)
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if ".dist-info/" not in n}
    # No tests: benchmarks/' pytest suite (test_*.py, conftest.py) runs from a checkout, and a
    # device image installs the wheel.
    tests = [n for n in shipped if n.rsplit("/", 1)[-1].startswith(("test_", "conftest"))]
    assert not tests, tests
    sources = {p for p in before if p.split("/")[0] in PACKAGES
               and (p.endswith(".py") or p.endswith("py.typed"))
               and not p.rsplit("/", 1)[-1].startswith(("test_", "conftest"))}
    assert shipped == sources, (sorted(shipped - sources), sorted(sources - shipped))


def test_an_editable_install_makes_only_the_packages_importable(tmp_path):
    """`pip install -e .` (scripts/setup.sh) with hatchling's default put the checkout's root on
    sys.path from any folder: tests/, scripts/, configs/, docs/ and models/ became top-level
    packages (`import models` found our folder, not the user's), and a setuptools egg-info left
    in an older checkout was read as a second installed image-sharpening-kd. setuptools' own
    editable install mapped the five packages alone, as this one must."""
    src = _project(tmp_path)
    editables = pytest.importorskip("editables", reason="hatchling's exact editable install "
                                    "needs it (in the dev extra): pip install editables")
    for folder in (*PACKAGES, "tests", "scripts", "configs"):
        (src / folder).mkdir()
        (src / folder / "__init__.py").write_text("")   # a regular package even if forgotten
    for folder in ("docs", "models"):
        (src / folder).mkdir()   # a namespace package, as they are
    (src / "image_sharpening_kd.egg-info").mkdir()
    (src / "image_sharpening_kd.egg-info" / "PKG-INFO").write_text(
        "Metadata-Version: 2.1\nName: image-sharpening-kd\nVersion: 0.0.1\n")
    out = _hatchling_build("build_editable", src, tmp_path / "wheel")
    site = tmp_path / "site"
    zipfile.ZipFile(next(out.glob("*.whl"))).extractall(site)
    # The interpreter sees that folder alone (-S): not this environment's own install of the
    # project. The import hook the install runs on comes along.
    shutil.copytree(Path(editables.__file__).parent, site / "editables")
    probe = ("import importlib.metadata as m, importlib.util as u, site, sys; "
             "site.addsitedir(sys.argv[1]); "
             "print([n for n in ('distill', 'optimize', 'runtime', 'benchmarks', 'sharpen', "
             "'tests', 'scripts', 'configs', 'docs', 'models') if u.find_spec(n)]); "
             "print(sorted(d.version for d in m.distributions() "
             "if d.metadata['Name'] == 'image-sharpening-kd'))")
    r = subprocess.run([sys.executable, "-I", "-S", "-c", probe, str(site)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    found, versions = r.stdout.splitlines()
    assert found == str(list(PACKAGES)), r.stdout
    assert versions == "['0.1.0']", r.stdout


def test_the_sdist_holds_the_packages_and_tests_not_the_whole_checkout(tmp_path):
    """hatchling's sdist took every file of the checkout git does not ignore: 42 MB of model
    weights and docs (setuptools' was 1 MB) and whatever else lay there untracked (a folder of
    clips), which `python -m build` packs before it builds the wheel from it."""
    import tarfile
    src = _project(tmp_path)
    for folder in (*PACKAGES, "tests", "scripts", "configs", "docs", "models", "clips"):
        (src / folder).mkdir()
        (src / folder / "__init__.py").write_text("")
    out = _hatchling_build("build_sdist", src, tmp_path / "sdist")
    with tarfile.open(next(out.glob("*.tar.gz"))) as t:
        top = {n.split("/")[1] for n in t.getnames() if "/" in n}
    assert top == {*PACKAGES, "tests", "README.md", "pyproject.toml", "PKG-INFO"}, sorted(top)


@pytest.mark.skipif(not (shutil.which("bash") and shutil.which("sha256sum")),
                    reason="scripts/setup.sh needs bash and sha256sum")
def test_setup_removes_the_egg_info_setuptools_left_in_the_checkout(tmp_path):
    """A checkout installed before the switch to hatchling keeps setuptools'
    image_sharpening_kd.egg-info, which nothing updates any more: Python started in the
    checkout (python -m sharpen, python -m pytest) found it before the install's metadata, so
    the version and the folder a missing extra is installed from were read from it."""
    src = tmp_path / "src"
    (src / "scripts").mkdir(parents=True)
    shutil.copy2(REPO / "scripts" / "setup.sh", src / "scripts" / "setup.sh")
    shutil.copy2(REPO / "pyproject.toml", src / "pyproject.toml")
    old = src / "image_sharpening_kd.egg-info"
    old.mkdir()
    (old / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: image-sharpening-kd\n"
                                  "Version: 0.0.1\n")
    venv = tmp_path / "venv"   # an environment setup.sh made before: it installs nothing
    (venv / "bin").mkdir(parents=True)
    os.symlink(sys.executable, venv / "bin" / "python")
    stamp = subprocess.run(["sha256sum"], input=(src / "pyproject.toml").read_bytes(),
                           capture_output=True).stdout[:16].decode()
    (venv / f".installed-{stamp}-dev").write_text("")
    r = subprocess.run(["bash", str(src / "scripts" / "setup.sh")], env={**os.environ,
                       "VENV": str(venv)}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not old.exists()


def _docker_pattern(line: str) -> tuple[bool, str, str]:
    """One .dockerignore line as Docker reads it: (an exception ('!'), how it matches: 'exact',
    'prefix', 'suffix' or 're', and what it matches with). A port of moby/patternmatcher's
    compile(), which the docker CLI and BuildKit share: the pattern cleaned (a leading / is the
    context's root), '*' and '?' within one folder, '**/' any number of folders (none too),
    a trailing '**' anything, '\\' escaping the next character, [...] a class."""
    body = line.strip()
    keep = body.startswith("!")
    body = posixpath.normpath(body[1:].strip() if keep else body)
    body = body.lstrip("/") or body
    rx, kind, i = "", "exact", 0
    while i < len(body):
        ch, at = body[i], i
        i += 1
        if body.startswith("**", at):
            i += 2 if body.startswith("**/", at) else 1
            if i >= len(body):   # what comes before, and anything after it
                kind, rx = ("prefix", rx) if kind == "exact" else ("re", rx + ".*")
            else:
                kind, rx = "re", rx + "(.*/)?"
            kind = "suffix" if at == 0 else kind   # a leading **: the rest, after any folder
        elif ch in "*?":
            kind, rx = "re", rx + ("[^/]*" if ch == "*" else "[^/]")
        elif ch == "\\" and i < len(body):
            kind, rx, i = "re", rx + "\\" + body[i], i + 1
        elif ch in "[]":
            kind, rx = "re", rx + ch
        else:   # Go's regexp reads the rest as Python's does; these are no glob's
            rx += "\\" + ch if ch in ".+()|{}$" else ch
    what = {"exact": body, "prefix": body[:-2], "suffix": body[2:]}.get(kind, rx)
    return keep, kind, what


def _docker_matches(kind: str, what: str, path: str) -> bool:
    if kind == "exact":
        return path == what
    if kind == "prefix":
        return path.startswith(what)
    if kind == "suffix":
        return path.endswith(what) or (what.startswith("/") and path == what[1:])
    return re.fullmatch(what, path) is not None


def _dockerignored(patterns: list[str], path: str) -> bool:
    """Whether Docker leaves `path` (relative, '/'-separated) out of the build context: the last
    .dockerignore pattern matching it or a folder above it decides ('!' keeps)."""
    ignored = False
    parts = path.split("/")
    for keep, kind, what in map(_docker_pattern, patterns):
        if any(_docker_matches(kind, what, "/".join(parts[:i]))
               for i in range(1, len(parts) + 1)):
            ignored = not keep
    return ignored


def test_the_docker_build_context_is_the_packages_and_the_exported_models():
    """`docker build .` in a checkout sent all of it (.venv alone is GBs of torch), since the
    Dockerfile bind-mounts the context; .dockerignore keeps what the Dockerfile reads."""
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    sources = [p for p in tracked if p.split("/")[0] in PACKAGES and p.endswith((".py", ".typed"))
               and not p.rsplit("/", 1)[-1].startswith(("test_", "conftest"))]
    copied = [src for flags, srcs in _copies(_dockerfile({})[2]) if "from" not in flags
              for src in srcs]
    kept = ["pyproject.toml", "README.md", *sources, *copied, "export/student-fast.onnx",
            "export/student-fast_int8.tflite.json", "export/export_report.json"]
    assert copied and not [p for p in kept if _dockerignored(patterns, p)]
    left = [".venv/lib/python3.11/site-packages/torch/__init__.py", "runs/sharpen/a.mp4",
            "models/student-fast.pt", "tests/test_packaging.py", "docs/hardest_crops.png",
            ".git/HEAD", "runtime/__pycache__/cli.cpython-311.pyc", "data/clip.mp4",
            "benchmarks/test_latency.py", "export/.export-tmp.1.x/student.onnx"]
    assert not [p for p in left if not _dockerignored(patterns, p)]


@pytest.mark.parametrize("patterns, path, ignored", [
    # The examples of Docker's .dockerignore reference, then its matcher's rules
    # (moby/patternmatcher, which the docker CLI and BuildKit share).
    (["*/temp*"], "somedir/temporary.txt", True),
    (["*/temp*"], "somedir/temp/a.txt", True),
    (["*/temp*"], "temp.txt", False),
    (["*/*/temp*"], "somedir/subdir/temporary.txt", True),
    (["temp?"], "tempa", True),
    (["temp?"], "tempab", False),
    (["**/*.go"], "main.go", True),   # "including the root of the build context"
    (["**/*.go"], "a/b/c.go", True),
    (["*.md", "!README.md"], "README.md", False),
    (["*.md", "!README.md"], "CHANGES.md", True),
    (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
    (["*.md", "!README*.md", "README-secret.md"], "README-x.md", False),
    (["*.md", "README-secret.md", "!README*.md"], "README-secret.md", False),
    (["/foo/bar"], "foo/bar", True),   # a leading / is the context's root
    (["./foo/bar/"], "foo/bar/baz.txt", True),   # cleaned, and a folder takes what it holds
    (["foo/bar"], "x/foo/bar", False),
    (["a/**/b"], "a/b", True),   # ** is any number of folders, none too
    (["a/**/b"], "a/x/y/b", True),
    (["a/**"], "a/x/y", True),
    (["**/__pycache__"], "__pycache__/m.pyc", True),
    (["[ab].txt"], "b.txt", True),
    (["[^ab].txt"], "b.txt", False),
    (["f\\*o"], "f*o", True),
    (["f\\*o"], "fxo", False),
    (["*", "!export/*.onnx"], "export/m.onnx", False),
    (["*", "!export/*.onnx"], "export/sub/m.onnx", True),
])
def test_the_dockerignore_matcher_reads_patterns_as_docker_does(patterns, path, ignored):
    """The build-context test below trusts this matcher: it must agree with Docker on the
    documented examples and on the rules a hand-written regex gets wrong (**/ at the root, a
    leading /, ** standing for no folder)."""
    assert _dockerignored(patterns, path) == ignored


def _dockerfile(build_args: dict[str, str]) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """The Dockerfile as `docker build --build-arg K=V...` reads it: its ARGs (their defaults
    overridden by `build_args`), its ENVs, and its instructions, continuation lines joined and
    ${ARG} replaced where Docker replaces it (COPY, ENV; not an exec-form ENTRYPOINT)."""
    args: dict[str, str] = {}
    env: dict[str, str] = {}
    lines = []
    text = (REPO / "Dockerfile").read_text()
    for ln in re.sub(r"\\\n\s*", " ", text).splitlines():
        if ln.startswith(("COPY ", "ENV ")):
            ln = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), ln)
        if ln.startswith("ARG "):
            name, _, default = ln[4:].strip().partition("=")
            args[name] = build_args.get(name, default)
        elif ln.startswith("ENV "):
            name, _, value = ln[4:].strip().partition("=")
            env[name] = value
        lines.append(ln)
    return args, env, lines


def _copies(lines: list[str]) -> list[tuple[dict[str, str], list[str]]]:
    """Each COPY instruction's --flags and sources."""
    found = []
    for ln in lines:
        if ln.startswith("COPY "):
            words = ln.split()[1:]
            flags = dict(w[2:].partition("=")[::2] for w in words if w.startswith("--"))
            found.append((flags, [w for w in words if not w.startswith("--")][:-1]))
    return found


def test_each_docker_build_the_readme_gives_installs_the_engine_of_the_model_it_runs():
    """The README's build for an .onnx model (--build-arg EXTRAS=runtime) installed ONNX Runtime
    alone while the image still copied and ran the .tflite: every `sharpen run` of it ended with
    "LiteRT is not installed"."""
    engine_extra = {".onnx": "runtime", ".tflite": "litert"}
    builds = [ln.split("#")[0] for ln in (REPO / "README.md").read_text().splitlines()
              if ln.startswith("docker build ")]
    assert [b for b in builds if ".onnx" in b] and [b for b in builds if ".onnx" not in b]
    for build in builds:
        given = dict(a.split("=", 1) for a in re.findall(r"--build-arg (\S+)", build))
        args, env, lines = _dockerfile(given)
        assert set(given) <= set(args), (build, args)
        (entry,) = [ln for ln in lines if ln.startswith("ENTRYPOINT ")]
        entry = re.sub(r"\$(\w+)", lambda m: env.get(m.group(1), m.group(0)), entry)
        (model,) = re.findall(r"/models/[\w.-]+", entry)
        copies = [flags for flags, srcs in _copies(lines)
                  if [s for s in srcs if s.rsplit("/", 1)[-1] == model.rsplit("/", 1)[-1]]]
        assert copies, (build, lines, model)
        # An export made under umask 077 is owner-only: the image's user (65534, or -u the
        # host's) could not read the model that COPY gives root.
        assert int(copies[0].get("chmod", "0"), 8) & 0o444 == 0o444, (build, copies)
        needs = engine_extra[Path(model).suffix]
        assert needs in args["EXTRAS"].split(","), (build, model, args["EXTRAS"])


def _extra_requirements(extra: str, machine: str) -> set[str]:
    """The distributions `pip install ".[extra]"` asks for on a Linux machine of this
    architecture (`platform.machine()`), the project's own extras followed."""
    from packaging.requirements import Requirement

    try:
        import tomllib
    except ModuleNotFoundError:   # Python 3.10 (JetPack 6's): pytest's own TOML reader there
        import tomli as tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = {"platform_machine": machine, "sys_platform": "linux", "platform_system": "Linux",
           "python_version": "3.10", "extra": ""}
    names: set[str] = set()
    todo, seen = [extra], set()
    while todo:
        name = todo.pop()
        seen.add(name)
        for line in project["optional-dependencies"][name]:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            if req.name == project["name"]:
                todo += [e for e in req.extras if e not in seen]
            else:
                names.add(req.name)
    return names


@pytest.mark.parametrize("extra", ["export", "modelopt", "dev"])
def test_the_export_extras_ask_arm_machines_for_a_tensorflow_that_has_their_wheels(extra):
    # tensorflow-cpu publishes x86-64 wheels only: on a Jetson (aarch64, JetPack 6) `SKIP_TORCH=1
    # scripts/setup.sh`, which the README gives for exporting on the device, stopped with
    # "No matching distribution found for tensorflow-cpu>=2.16". PyPI's `tensorflow` is the
    # CPU build on aarch64.
    arm = _extra_requirements(extra, "aarch64")
    assert "tensorflow-cpu" not in arm and "tensorflow" in arm, sorted(arm)
    x86 = _extra_requirements(extra, "x86_64")
    assert "tensorflow-cpu" in x86 and "tensorflow" not in x86, sorted(x86)


def test_the_tflite_formats_missing_tensorflow_name_no_package_arm_cannot_install(monkeypatch):
    """`sharpen export` on a Jetson without TensorFlow skipped the TFLite formats saying
    'tensorflow-cpu converts to TFLite', a package with x86-64 wheels only there (the export
    extra asks ARM for `tensorflow`): now it names TensorFlow and the extra that brings the
    machine's build."""
    from optimize.export import _tflite_available
    monkeypatch.setitem(sys.modules, "tensorflow", None)   # find_spec: not installed
    said = _tflite_available()
    assert said and "TensorFlow is not installed" in said, said
    assert "tensorflow-cpu" not in said and "pip install -e '.[export]'" in said, said
