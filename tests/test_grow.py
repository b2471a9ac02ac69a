import pytest
import torch

from distill.checkpoint import atomic_save, load_student, make_checkpoint
from distill.grow import grow_student
from distill.students import create_student
from holder_fixtures import RUN_LOCK_HOLDER, held_elsewhere


def _trained_like(model):
    torch.manual_seed(0)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return model


def _save(model, path):
    atomic_save(make_checkpoint(model, kind="student", arch=model.arch_name,
                                arch_args=model.arch_args), path)


def test_grown_student_computes_the_same_function(tmp_path):
    small = _trained_like(create_student("fast-plain", width=8, low_blocks=1, low_k=5))
    _save(small, tmp_path / "s.pt")
    args = grow_student(tmp_path / "s.pt", tmp_path / "g.pt", low_blocks=3, low_k=7)
    assert args["low_blocks"] == 3 and args["low_k"] == 7 and args["width"] == 8
    grown, _ = load_student(tmp_path / "g.pt")
    assert len(grown.low) == 3 and grown.low[0].dw.kernel_size == (7, 7)
    x = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        torch.testing.assert_close(grown(x), small.eval()(x), atol=1e-6, rtol=0)
    # The new block is trainable: its projection gets a gradient.
    grown.train()
    grown(x).square().mean().backward()
    assert grown.low[2].pw2.weight.grad.abs().sum() > 0


def test_grown_detail_stage_starts_silent_and_trains(tmp_path):
    small = _trained_like(create_student("fast-plain", width=8, low_blocks=1))
    _save(small, tmp_path / "s.pt")
    args = grow_student(tmp_path / "s.pt", tmp_path / "g.pt", detail=8)
    assert args["detail"] == 8
    grown, _ = load_student(tmp_path / "g.pt")
    x = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        torch.testing.assert_close(grown(x), small.eval()(x), atol=1e-6, rtol=0)
    assert grown.detail_blocks[0].pw2.weight.abs().sum() > 0  # not a dead identity block
    grown.train()
    grown(x).square().mean().backward()
    assert grown.detail_head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="detail=16"):
        grow_student(tmp_path / "g.pt", tmp_path / "h.pt", detail=16)


@pytest.mark.parametrize("edge_width", [0, 8])
def test_grown_edge_path_starts_silent_and_trains(tmp_path, edge_width):
    small = _trained_like(create_student("fast-plain", width=8, low_blocks=1))
    _save(small, tmp_path / "s.pt")
    args = grow_student(tmp_path / "s.pt", tmp_path / "g.pt", edge=3, edge_width=edge_width)
    assert args["edge"] == 3 and args["edge_width"] == edge_width
    grown, _ = load_student(tmp_path / "g.pt")
    x = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        torch.testing.assert_close(grown(x), small.eval()(x), atol=1e-6, rtol=0)
    grown.train()
    grown(x).square().mean().backward()
    assert grown.edge_pw.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="edge=5"):
        grow_student(tmp_path / "g.pt", tmp_path / "h.pt", edge=5)


def test_grow_refuses_what_it_cannot_preserve(tmp_path):
    small = create_student("fast-plain", width=8, low_blocks=2)
    _save(small, tmp_path / "s.pt")
    with pytest.raises(ValueError, match="width"):
        grow_student(tmp_path / "s.pt", tmp_path / "g.pt", width=16)
    with pytest.raises(ValueError, match="low_blocks=1: the model has low_blocks=2, and only "
                                         "`blocks` can shrink"):
        grow_student(tmp_path / "s.pt", tmp_path / "g.pt", low_blocks=1)
    with pytest.raises(ValueError, match="k=4: a kernel size must be odd"):
        grow_student(tmp_path / "s.pt", tmp_path / "g.pt", k=4)
    with pytest.raises(ValueError, match="the model has no detail stage"):
        grow_student(tmp_path / "s.pt", tmp_path / "g.pt", detail_blocks=2)


def test_grow_cli_refuses_its_own_source_folders_and_repeated_changes(tmp_path, capsys):
    """--out equal to --weights replaced the source (losing its metrics); a folder or a path
    under a file gave a traceback; deep=1 deep=2 kept the last silently."""
    from sharpen.cli import main

    _save(create_student("fast-plain", width=8, low_blocks=1), tmp_path / "s.pt")
    before = (tmp_path / "s.pt").read_bytes()
    (tmp_path / "folder").mkdir()
    for out, says in ((tmp_path / "s.pt", "is the --weights checkpoint itself"),
                      (tmp_path / "folder", "is a folder"),
                      (tmp_path / "s.pt" / "x.pt", "s.pt is a file, not a folder")):
        assert main(["grow", "--weights", str(tmp_path / "s.pt"), "--out", str(out),
                     "low_blocks=2"]) == 2
        assert says in capsys.readouterr().err
    assert main(["grow", "--weights", str(tmp_path / "s.pt"), "--out", str(tmp_path / "g.pt"),
                 "low_blocks=2", "low_blocks=3"]) == 2
    assert "low_blocks given more than once" in capsys.readouterr().err
    assert (tmp_path / "s.pt").read_bytes() == before


def test_grown_deep_levels_start_silent_and_train(tmp_path):
    small = _trained_like(create_student("fast", width=8, low_blocks=1, edge_width=8))
    _save(small, tmp_path / "s.pt")
    args = grow_student(tmp_path / "s.pt", tmp_path / "g.pt", deep=2)
    assert args["deep"] == 2
    grown, _ = load_student(tmp_path / "g.pt")
    assert grown.multiple == 32
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(grown(x), small.eval()(x), atol=1e-6, rtol=0)
    grown.train()
    grown(x).square().mean().backward()
    assert grown.deep_out[0].weight.grad.abs().sum() > 0


def test_grow_command_prints_the_new_layout_unless_quiet(tmp_path, capsys):
    from sharpen.cli import main

    _save(_trained_like(create_student("fast-plain", width=8, low_blocks=1)), tmp_path / "s.pt")
    assert main(["grow", "--weights", str(tmp_path / "s.pt"), "--out", str(tmp_path / "a.pt"),
                 "low_blocks=2"]) == 0
    assert "low_blocks" in capsys.readouterr().out
    assert main(["grow", "--weights", str(tmp_path / "s.pt"), "--out", str(tmp_path / "b.pt"),
                 "low_blocks=2", "--quiet"]) == 0
    assert capsys.readouterr().out == "" and (tmp_path / "b.pt").is_file()


def test_fewer_blocks_keeps_the_outer_ones_and_reports_the_change(tmp_path):
    src = _trained_like(create_student("fast", width=8, blocks=3, low_blocks=1))
    _save(src, tmp_path / "s.pt")
    args = grow_student(tmp_path / "s.pt", tmp_path / "g.pt", blocks=1)
    assert args["blocks"] == 1 and args["max_change"] > 0
    small, _ = load_student(tmp_path / "g.pt")
    assert len(small.enc) == len(small.dec) == 1
    torch.testing.assert_close(small.enc[0].dw.weight, src.enc[0].dw.weight)
    torch.testing.assert_close(small.dec[0].pw2.weight, src.dec[2].pw2.weight)
    torch.testing.assert_close(small.low[0].pw1.weight, src.low[0].pw1.weight)
    with pytest.raises(ValueError, match="blocks=0"):
        grow_student(tmp_path / "s.pt", tmp_path / "h.pt", blocks=0)


def test_grow_cli_warns_that_fewer_blocks_is_not_exact(tmp_path, capsys):
    from sharpen.cli import main

    _save(_trained_like(create_student("fast", width=8, blocks=2, low_blocks=1)), tmp_path / "s.pt")
    assert main(["grow", "--weights", str(tmp_path / "s.pt"), "--out", str(tmp_path / "g.pt"),
                 "blocks=1"]) == 0
    assert "not exact" in capsys.readouterr().err


def test_grow_and_slim_refuse_a_folder_that_a_live_run_holds(tmp_path, capsys):
    """grow and slim_checkpoint wrote into a run's out= folder without its lock: a training
    run there could overwrite the file, or remove its temp file at its start as a killed
    save's. While a live process holds the folder they are refused, naming it; once it died
    (SIGKILL: its .lock stays behind, unlocked) they write, and leave no lock behind."""

    from distill.checkpoint import read_checkpoint, slim_checkpoint
    from distill.run_lock import LOCK_NAME, RunLocked, run_lock
    from sharpen.cli import main

    src = tmp_path / "s.pt"
    _save(_trained_like(create_student("fast-plain", width=8, low_blocks=1)), src)
    run = tmp_path / "run"
    with held_elsewhere(RUN_LOCK_HOLDER, str(run)) as holder:
        said = f"{run} is the folder of a live run \\(process {holder.pid}, which holds"
        with pytest.raises(RunLocked, match=said):
            grow_student(src, run / "g.pt", low_blocks=2)
        with pytest.raises(RunLocked, match=said):
            slim_checkpoint(src, run / "slim.pt")
        assert main(["grow", "--weights", str(src), "--out", str(run / "g.pt"),
                     "low_blocks=2"]) == 2
        assert f"(process {holder.pid}, which holds" in capsys.readouterr().err
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]   # nothing written
    assert (run / LOCK_NAME).exists()
    grow_student(src, run / "g.pt", low_blocks=2)
    slim_checkpoint(src, run / "slim.pt")
    assert sorted(p.name for p in run.iterdir()) == ["g.pt", "slim.pt"]
    assert read_checkpoint(run / "slim.pt")["ema"] is None
    # A run's own process (code run inside it) writes into its folder: its lock is not
    # taken a second time, which the kernel would refuse it.
    with run_lock(run):
        slim_checkpoint(src, run / "slim2.pt")
        with pytest.raises(RunLocked, match="another run is training into"), run_lock(run):
            pass   # the outer lock is still held
    assert load_student(run / "slim2.pt")[1]["ema"] is None


def test_a_live_run_whose_lock_names_this_process_id_still_refuses(tmp_path, monkeypatch,
                                                                   capsys):
    """Whether this process holds the folder's lock was read from the pid in .lock: a run
    in another PID namespace (a container's process 1, as this one's) holding it was taken
    for this process, and grow wrote into its live folder. A bare --out name (the current
    folder) is named as the folder it is, not ".". """
    import os

    from distill.checkpoint import slim_checkpoint
    from distill.run_lock import LOCK_NAME, RunLocked
    from sharpen.cli import main

    src = tmp_path / "s.pt"
    _save(_trained_like(create_student("fast-plain", width=8, low_blocks=1)), src)
    run = tmp_path / "run"
    run.mkdir()
    # Locks as run_lock does, writing this process's id.
    with held_elsewhere("import fcntl, os, sys, time\n"
                        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)\n"
                        "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); "
                        "os.pwrite(fd, sys.argv[2].encode(), 0)\n"
                        "print('held', flush=True); time.sleep(120)",
                        str(run / LOCK_NAME), str(os.getpid())):
        with pytest.raises(RunLocked, match=f"process {os.getpid()}, which holds"):
            grow_student(src, run / "g.pt", low_blocks=2)
        with pytest.raises(RunLocked):
            slim_checkpoint(src, run / "slim.pt")
        monkeypatch.chdir(run)
        assert main(["grow", "--weights", str(src), "--out", "g.pt", "low_blocks=2"]) == 2
        err = capsys.readouterr().err
        assert f"{run} is the folder of a live run" in err, err
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]   # nothing written
