import os

import numpy as np
import pytest
import torch
import torch.nn as nn

from distill.students import (EdgeStudent, FastStudent, Gate, SeedStudent, count_macs,
                              count_params, create_student, for_inference, list_students,
                              receptive_field, run_padded)
from runtime_fixtures import table_rows

ALLOWED = (nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Upsample, nn.PixelShuffle, nn.PixelUnshuffle,
           Gate)


def test_seed_layer_list_matches_description():
    m = create_student("seed")
    convs = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d)]
    # 7 separable convs (depthwise 3x3 + pointwise 1x1) then Conv2D(3).
    widths = [c.out_channels for c in convs if c.kernel_size == (1, 1)]
    assert widths == [32, 64, 128, 128, 64, 32]
    dws = [c for c in convs if c.groups > 1]
    assert all(c.kernel_size == (3, 3) and c.groups == c.in_channels for c in dws)
    assert len(dws) == 6 and convs[-1].out_channels == 3 and convs[-1].groups == 1
    names = [n for n, _ in m.named_children()]
    assert names == ["enc1", "enc2", "pool", "mid1", "mid2", "up", "dec1", "dec2", "head"]
    assert not m.residual and not m.skip
    assert isinstance(m.pool, nn.MaxPool2d) and m.up.scale_factor == 2


def test_seed_macs_match_described_cost():
    assert 44e9 < count_macs(create_student("seed")) < 47e9


def test_fast_is_much_cheaper_and_sees_large_blur():
    fast = create_student("fast")
    assert count_macs(fast) < count_macs(create_student("seed")) / 10
    # Receptive field: perturb one pixel, see how far the output changes.
    torch.manual_seed(0)
    for p in fast.parameters():
        nn.init.normal_(p, std=0.3)
    x = torch.zeros(1, 3, 192, 192)
    x2 = x.clone()
    x2[..., 96, 96] = 1
    with torch.no_grad():
        d = (fast(x2) - fast(x)).abs().sum(1)[0]
    cols = torch.nonzero(d.sum(0) > 1e-6).flatten()
    assert cols.max() - cols.min() >= 60  # covers blur tens of pixels long


@pytest.mark.parametrize("name", list_students())
def test_any_size_works(name):
    m = create_student(name).eval()
    for h, w in ((37, 51), (1, 1), (64, 64), (17, 8)):
        with torch.no_grad():
            assert run_padded(m, torch.rand(1, 3, h, w)).shape == (1, 3, h, w)


@pytest.mark.parametrize("name", ["seed", "fast", "edge"])
def test_channels_last_inference_is_the_same_function(name):
    torch.manual_seed(0)
    m = create_student(name, **({"width": 8, "middle": 1} if name == "edge" else {}))
    for p in m.parameters():   # no zero-initialised (identity) paths
        torch.nn.init.normal_(p, std=0.1)
    x = torch.rand(1, 3, 45, 70)
    with torch.no_grad():
        ref = run_padded(m.eval(), x)
        out = run_padded(for_inference(m), x)
    assert m.channels_last_input and all(p.is_contiguous(memory_format=torch.channels_last)
                                         for p in m.parameters() if p.dim() == 4)
    assert torch.allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize("name", list_students())
def test_only_exportable_operators(name):
    m = create_student(name)
    leaves = [mod for mod in m.modules() if not list(mod.children())
              and not isinstance(mod, (nn.ModuleList, nn.Sequential))]  # empty containers
    assert all(isinstance(mod, ALLOWED) for mod in leaves), {type(x).__name__ for x in leaves}


def test_registry():
    assert {"seed", "fast"} <= set(list_students())
    m = create_student("fast", width=16)
    assert m.arch_args["width"] == 16 and m.arch_name == "fast"
    with pytest.raises(ValueError, match="unknown student"):
        create_student("nope")
    assert count_params(create_student("seed")) > 0
    assert isinstance(create_student("seed-residual"), SeedStudent)
    assert isinstance(create_student("fast-wide"), FastStudent)


def test_edge_path_is_cheap_linear_and_checked():
    with pytest.raises(ValueError, match="edge=4"):
        create_student("fast", edge=4)
    with pytest.raises(ValueError, match="edge_width=8 needs edge"):
        create_student("fast", edge=0, edge_width=8)
    plain, fast = create_student("fast-plain"), create_student("fast")
    extra = count_macs(fast) - count_macs(plain)
    assert 0 < extra < 0.2 * count_macs(plain)  # 1x1 convs + 3x3 depthwise at 1/4 resolution
    edge = create_student("fast", edge_width=0)
    # Without edge_width it is linear in the input: with the main path silent, doubling the
    # input doubles the correction.
    torch.manual_seed(0)
    torch.nn.init.normal_(edge.edge_pw.weight, std=0.1)
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        c1, c2 = edge(x) - x, edge(2 * x) - 2 * x
    torch.testing.assert_close(c2, 2 * c1, atol=1e-5, rtol=1e-4)


def test_checkpoint_from_before_the_input_path_still_loads(tmp_path):
    """`fast` gained the input path as a registry default; a `fast` checkpoint that does not
    record `edge` was trained without it and must load as such."""
    from distill.checkpoint import atomic_save, load_student, make_checkpoint

    old = create_student("fast-plain", width=8)
    args = {k: v for k, v in old.arch_args.items() if k not in ("edge", "edge_width")}
    atomic_save(make_checkpoint(old, kind="student", arch="fast", arch_args=args),
                tmp_path / "old.pt")
    model, _ = load_student(tmp_path / "old.pt")
    assert model.edge == 0 and model.arch_args["width"] == 8
    assert create_student("fast").edge == 3


def test_saved_checkpoints_and_images_are_readable_by_others(tmp_path):
    """Atomic writes go through mkstemp (mode 0600); the results must not stay owner-only."""
    import stat

    import numpy as np

    from distill.checkpoint import atomic_save
    from distill.images import write_image

    ck = atomic_save({"x": torch.zeros(1)}, tmp_path / "c.pt")
    img = write_image(tmp_path / "i.png", np.zeros((4, 4, 3), np.float32))
    for p in (ck, img):
        assert p.stat().st_mode & stat.S_IROTH, p


def test_budget_measures():
    from distill.students import activation_bytes, receptive_field
    fast, seed = create_student("fast"), create_student("seed")
    # The point of `fast`'s 1/8-res stage: a receptive field far beyond seed's 3x3 stack.
    assert receptive_field(fast) > 100 and receptive_field(seed) < 40
    # Activations scale with the frame area.
    assert activation_bytes(fast, 1080, 1920) > 3.5 * activation_bytes(fast, 540, 960)


def test_the_receptive_field_is_not_cut_short_by_a_zero_probe():
    """Probed with a zero image, a gate's product (x * f(x)) passed no gradient to x's other
    pixels and max pooling's ties sent all of it to one corner of each window: `sharpen
    models` said 19 px for `seed`, whose layout gives 20 (two 3x3 at full resolution, a 2x2
    pool, two 3x3 at half, upsampling, three 3x3 at full: 8 half-resolution pixels = 16, + 4),
    and 132 for `fast`, whose field a gradient from a random image shows to be 136."""
    class Product(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.conv(x)

    assert receptive_field(Product()) == 3
    assert receptive_field(create_student("seed")) == 20


def test_the_receptive_field_is_probed_once_per_layout(monkeypatch):
    """Each export probed the field again (a second per student here, several for `edge`),
    though it depends on the layout alone: weights differ, the answer does not; another
    layout of the same student is probed anew, and a module of no registry layout always."""
    import distill.students as students

    probes = []
    real = students._probe_field
    monkeypatch.setattr(students, "_FIELDS", {})
    monkeypatch.setattr(students, "_probe_field", lambda net, size: probes.append(1)
                        or real(net, size))
    a, b = create_student("seed"), create_student("seed")   # two random initialisations
    assert receptive_field(a) == receptive_field(b) == 20 and len(probes) == 1
    wide = create_student("fast", low_blocks=1)
    assert receptive_field(wide) == real(create_student("fast", low_blocks=1), 256)
    assert receptive_field(create_student("fast")) == 136 and len(probes) == 3
    plain = nn.Conv2d(3, 3, 5, padding=2)
    assert receptive_field(plain) == receptive_field(plain) == 5 and len(probes) == 5


def test_macs_count_every_convolution_and_matrix_product_not_only_nn_conv2d():
    """count_macs hooked nn.Conv2d modules only: a student of one's own with F.conv2d on its
    own weights (weight standardisation, which the export covers), a transposed convolution
    or a linear layer was counted 8x too cheap (0.05 GMAC for 0.40)."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.down = nn.Conv2d(3, 8, 2, stride=2)
            self.ws = nn.Parameter(torch.zeros(8, 8, 3, 3))
            self.fc = nn.Linear(8, 8)
            self.up = nn.ConvTranspose2d(8, 3, 2, stride=2)

        def forward(self, x):
            y = torch.nn.functional.conv2d(self.down(x), self.ws, padding=1)
            return x + self.up(y * self.fc(y.mean((2, 3)))[:, :, None, None])

    px = 8 * 16   # at half resolution
    want = px * 8 * 3 * 4 + px * 8 * 8 * 9 + 8 * 8 + px * 3 * 8 * 4
    assert count_macs(Net(), 16, 32) == want


class _Concat(nn.Module):
    """Functional ops between two convs: x * 2, a concatenation, a slice (a view)."""

    def __init__(self):
        super().__init__()
        self.up, self.down = nn.Conv2d(3, 16, 1), nn.Conv2d(16, 3, 1)

    def forward(self, x):
        y = self.up(x)
        y = torch.cat([y, y * 2], 1)
        return x + self.down(y[:, :16])


def test_activations_are_the_peak_alive_at_once_functional_ops_included():
    """activation_bytes summed the outputs of leaf modules: a functional op (torch.cat, x * y,
    F.relu) went uncounted (`fast` 486 MiB at 1080p, 831 with them), and a sum of what every
    layer writes is not what a device must hold. It is the peak of the tensors alive at once,
    the frame in and out included: here while torch.cat runs, x (3 channels), y (16), y * 2
    (16) and the concatenation (32)."""
    from distill.students import activation_bytes

    assert activation_bytes(_Concat(), 16, 32) == (3 + 16 + 16 + 32) * 16 * 32 * 4


def test_activation_traffic_is_what_every_op_writes():
    """The edge card's bandwidth estimate (activations moved if nothing is fused) was the sum
    of leaf modules' outputs, read off `sharpen models`: every op's output counts, the slice
    (a view) none, the frame in none."""
    from distill.students import activation_traffic

    assert activation_traffic(_Concat(), 16, 32) == (16 + 16 + 32 + 3 + 3) * 16 * 32 * 4


def test_models_teacher_rows_count_attention_too(capsys):
    """`sharpen models --teacher` counted the Restormer's convolutions only: ~424 GMAC per
    1080p frame for `small`, ~4461 for `motion-deblur`, without the ~10 % its transposed
    attention's matrix products add (torch's FLOP counter: 465 and 4901)."""
    from sharpen.cli import main
    assert main(["models", "seed", "--teacher", "--quiet"]) == 0
    rows = {r[0]: r[2] for r in table_rows(capsys.readouterr().out) if "restormer:" in r[0]}
    assert rows["restormer:small"] == "~465" and rows["restormer:motion-deblur"] == "~4901", rows


def test_budget_measures_name_a_size_that_is_not_a_frame():
    """count_macs(model, 0, 0) and negative sizes gave torch's "Kernel size can't be greater
    than actual input size" or "negative dimension", naming neither argument."""
    from distill.students import activation_bytes
    fast = create_student("fast")
    for fn in (count_macs, activation_bytes):
        for h, w, name, value in ((0, 0, "h", 0), (-8, 64, "h", -8), (64, -1, "w", -1),
                                  (64, 2.5, "w", 2.5)):
            with pytest.raises(ValueError, match=rf"^{name} must be a frame size in pixels "
                                                 rf"\(an integer >= 1\), got {value}$"):
                fn(fast, h, w)
    assert count_macs(fast, 1, 1) > 0 and count_macs(fast, np.int64(16), 16) > 0


def test_models_command_errors(capsys):
    from sharpen.cli import main
    assert main(["models", "nope"]) == 2
    assert "unknown student nope; registered: " in capsys.readouterr().err   # near to none
    assert main(["models", "fsat"]) == 2
    assert "unknown student fsat (did you mean fast?); registered: " in capsys.readouterr().err
    assert main(["models", "teacher"]) == 2
    assert "(the teacher is listed with --teacher)" in capsys.readouterr().err
    # (seed, not edge, beside fast: the commas and the repeat are the point, and edge's
    # 744-px receptive field is probed at up to 2048 px, seconds of this test)
    assert main(["models", "fast,seed", "fast", "--height", "64", "--width", "96"]) == 0
    out = capsys.readouterr().out
    names = [r[0] for r in table_rows(out)]
    assert names.count("fast") == 1 and names.count("seed") == 1, out
    assert main(["models", "--height", "0"]) == 2
    assert "--height" in capsys.readouterr().err
    assert main(["models", "fast", "--height", "64", "--width", "96", "--measure",
                 "--measure-runs", "1"]) == 0
    out = capsys.readouterr().out
    assert "receptive field" in out and "fast" in out
    assert "median / p90 of 1 run " in out and "1 runs" not in out, out
    # The time depends on the threads: the title says how many, as the bench's rows do.
    n = torch.get_num_threads()
    assert f"PyTorch timed on {n} CPU thread{'s' if n != 1 else ''})" in out, out


def test_models_says_what_its_columns_and_times_are(capsys):
    """`sharpen models` left "multiple" and "receptive field px" unexplained, and --measure's
    times named neither the host's CPU nor their spread (a median of 3 said nothing of the
    slow runs a deployment sees)."""
    import re

    from runtime.host import cpu_model
    from sharpen.cli import main
    assert main(["models", "fast", "--height", "64", "--width", "96", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "multiple: height and width are padded up to a multiple of it" in out, out
    assert "receptive field px: the input pixels one output pixel depends on" in out, out
    assert main(["models", "fast", "--height", "64", "--width", "96", "--measure",
                 "--measure-runs", "4", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "median / p90 of 4 runs" in out, out
    assert " ".join(cpu_model().split()) in " ".join(out.split()), out
    row = next(ln for ln in out.splitlines() if ln.startswith("fast "))
    median, p90 = map(float, re.search(r" ([0-9.]+) / ([0-9.]+) ", row).groups())
    assert 0 < median <= p90, row


def test_models_measure_takes_threads_as_the_other_commands_do(capsys):
    """`sharpen models --measure` had no --threads (run, bench, export... have it): its times
    ran on whatever OMP_NUM_THREADS gave, with no flag to pin them to a device's cores."""
    from runtime.host import MAX_THREADS
    from sharpen.cli import main
    before = torch.get_num_threads()
    try:
        assert main(["models", "seed", "--height", "32", "--width", "32", "--measure",
                     "--measure-runs", "1", "--threads", "2", "--quiet"]) == 0
        assert "PyTorch timed on 2 CPU threads)" in capsys.readouterr().out
    finally:
        torch.set_num_threads(before)   # the setting is the process's, not the command's
    top = max(MAX_THREADS, os.cpu_count() or 0)
    for bad, said in (("-1", "must be >= 0"), ("1000000", f"must be 0 to {top}")):
        assert main(["models", "seed", "--measure", "--threads", bad]) == 2
        out, err = capsys.readouterr()
        assert (f"--threads {said} (0: MKL_NUM_THREADS or else OMP_NUM_THREADS when set, "
                f"else a CPU limit's count, else all cores), got {bad}") in err and not out, err
    assert torch.get_num_threads() == before   # refused before it set anything


def test_models_lists_a_checkpoints_own_layout(tmp_path, capsys, monkeypatch):
    """`sharpen models runs/x/best.pt` said "unknown student": a grown or shrunk student's
    budget (GMAC, receptive field) could not be shown."""
    import torch

    from distill.checkpoint import atomic_save, make_checkpoint
    from sharpen.cli import main

    torch.manual_seed(0)
    small = create_student("fast", blocks=1)
    path = tmp_path / "b1.pt"
    atomic_save(make_checkpoint(small, kind="student", arch="fast", arch_args=small.arch_args),
                path)
    monkeypatch.chdir(tmp_path)
    assert main(["models", "fast", "b1.pt", "--height", "64", "--width", "96"]) == 0
    rows = {r[0]: r for r in table_rows(capsys.readouterr().out)}
    mine, reg = rows["b1.pt"], rows["fast"]
    assert "checkpoint: fast" in mine[-1]
    assert mine[1] == f"{count_params(small):,}" and mine[1] != reg[1]
    # A trained one also says how far it was trained and what its validation scored (the
    # listing showed the layout alone: two checkpoints of a run looked the same).
    atomic_save(make_checkpoint(small, kind="student", arch="fast", arch_args=small.arch_args,
                                step=1200, metrics={"model_gt_ssim": 0.83312, "step": 1000}),
                tmp_path / "trained.pt")
    assert main(["models", "trained.pt", "--height", "64", "--width", "96"]) == 0
    text = " ".join(r[-1] for r in table_rows(capsys.readouterr().out))
    assert "step 1200; validation at step 1000: model_gt_ssim 0.8331" in text, text
    assert main(["models", str(tmp_path / "none.pt")]) == 2
    assert "none.pt" in capsys.readouterr().err


def test_edge_budget_receptive_field_and_low_resolution_work():
    edge = create_student("edge")
    assert isinstance(edge, EdgeStudent) and edge.multiple == 32
    assert 20e9 <= count_macs(edge) <= 40e9          # the Jetson-class budget of the issue
    # Camera shake hundreds of pixels long (the field depends on the layout, not the width).
    assert receptive_field(create_student("edge", width=2, detail=0)) >= 400
    # Almost all of the work at 1/4 resolution or below: no conv runs at full resolution.
    full_res = []
    for mod in edge.modules():
        if isinstance(mod, nn.Conv2d):
            mod.register_forward_hook(lambda m, i, o: full_res.append(o.shape[-1] == 64))
    with torch.no_grad():
        y = edge(torch.rand(1, 3, 64, 64))
    assert not any(full_res)
    assert y.shape == (1, 3, 64, 64)


def test_edge_starts_as_identity_and_checks_its_options():
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(create_student("edge", width=8, middle=1)(x), x)
    with pytest.raises(ValueError, match="one entry per level"):
        create_student("edge", enc=(1, 1), dec=(1,))
    with pytest.raises(ValueError, match="k odd"):
        create_student("edge", k=4)
    m = create_student("edge", enc=[1], dec=[1], width=8)  # lists from YAML or JSON work
    assert m.multiple == 8 and count_macs(m) < count_macs(create_student("edge"))


@pytest.mark.parametrize("h,w,m", [(3, 5, 16), (2, 2, 64), (12, 12, 64), (7, 40, 32), (1, 6, 8),
                                   (5, 1, 8), (37, 51, 16)])
def test_padding_matches_the_runtime(h, w, m):
    # The runtime pads frames with numpy; PyTorch must see the same pixels, or parity checks
    # and evaluate disagree with `sharpen run` on frames smaller than the model's multiple.
    from distill.students import pad_to_multiple
    from runtime.tiling import pad_to_multiple as runtime_pad

    img = np.random.default_rng(0).random((h, w, 3), dtype=np.float32)
    ref, _ = runtime_pad(img, m)
    out = pad_to_multiple(torch.from_numpy(img).permute(2, 0, 1)[None], m)
    assert out.shape[-2:] == ref.shape[:2]
    np.testing.assert_array_equal(out[0].permute(1, 2, 0).numpy(), ref)


def test_student_arguments_of_the_wrong_type_or_range_are_named():
    """create_student('fast', width='32') met a string-formatting TypeError and width=-1 a
    negative-dimension error from inside torch; a config's model.args go the same way."""
    from distill.students import create_student
    for name, kw, says in (("fast", {"width": "32"}, "width='32': expected a whole number"),
                           ("fast", {"width": -1}, "width=-1: expected 1 to 4096"),
                           ("fast", {"blocks": 10**6}, "expected 0 to 4096"),
                           ("fast", {"edge": True}, "edge=True: expected a whole number"),
                           ("seed", {"residual": 1}, "residual=1: expected true or false"),
                           ("edge", {"enc": [2, "a"]}, r"enc=\[2, 'a'\]: expected a list"),
                           ("fastt", {}, "unknown student")):
        with pytest.raises((ValueError, KeyError), match=says):
            create_student(name, **kw)
    assert create_student("edge", enc=[1, 1, 1]).arch_args["enc"] == [1, 1, 1]   # YAML lists


def test_a_checkpoint_naming_a_huge_architecture_is_refused_before_it_is_built(tmp_path):
    """A checkpoint from a stranger holds small weights but architecture arguments within
    their ranges that build a model of hundreds of GB (width 4096, 64 blocks): the model was
    built first, its layers initialised until memory ran out (a traceback under a cap, the
    OOM killer without one), before its weights were found not to fit. Now the architecture
    is laid out without memory first and its shapes checked against the weights."""
    import resource

    from child_fixtures import in_a_child
    from distill.checkpoint import load_student
    from distill.teacher import resolve_weights

    ck = torch.load(resolve_weights("fast", allow_teacher=False), weights_only=True)
    ck["arch_args"] = {**ck["arch_args"], "width": 4096, "blocks": 64, "edge_width": 4096}
    evil = tmp_path / "evil.pt"
    torch.save(ck, evil)

    def work(said: dict) -> None:
        with open("/proc/self/status") as f:
            vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize"))
        cap = vm + (1 << 30)   # a gigabyte more than now: the weights need a few hundred KB
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        load_student(evil)

    said = in_a_child(work)
    assert said.get("error", "").startswith("CheckpointError"), said
    assert "evil.pt does not match" in said["error"] and "shape mismatch" in said["error"], said
    # The arguments at fault are the checkpoint's own, not a config's the user can change.
    assert "its own architecture arguments" in said["error"], said
    assert "'width': 4096" in said["error"], said


def test_every_registered_student_is_laid_out_on_the_meta_device_and_loads_bit_for_bit(
        tmp_path):
    """`load_student` checks a checkpoint's weights against the student laid out on the meta
    device before building it; a student that cannot be laid out there is built as before,
    unchecked until then (a stranger's width 4096 would take the memory first). Every
    registered student is laid out there, and the checkpoint it saves loads to the same
    outputs, bit for bit, as building it and loading its state dict."""
    from distill.checkpoint import atomic_save, check_fits, load_student, make_checkpoint
    from distill.students import list_students, student_from_saved_args, student_spec

    torch.manual_seed(0)
    for name in list_students():
        d = student_spec(name).defaults
        small = {k: 8 for k in ("width", "edge_width", "detail") if d.get(k)}
        m = create_student(name, **small).eval()
        with torch.no_grad():   # weights no initialiser gives: a load that missed one shows
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.01)
        with torch.device("meta"):
            probe = student_from_saved_args(name, m.arch_args, layout_only=True)
        check_fits(probe, m.state_dict(), name)
        path = tmp_path / f"{name}.pt"
        atomic_save(make_checkpoint(m, kind="student", arch=name, arch_args=m.arch_args), path)
        loaded, _ = load_student(path)
        built = student_from_saved_args(name, m.arch_args)
        built.load_state_dict(m.state_dict())
        mul = int(getattr(m, "multiple", 1))
        x = torch.rand(1, 3, 2 * mul, 3 * mul)
        with torch.no_grad():
            assert torch.equal(loaded(x), built.eval()(x)), name
            assert torch.equal(loaded(x), m(x)), name
