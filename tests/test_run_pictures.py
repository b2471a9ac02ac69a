"""What a training run shows of itself beyond its scores: validation pictures
(OUT/visualization/, BasicSR's) and where its time goes (data loading vs the step)."""
import json

import cv2
import numpy as np
import pytest

from distill.checkpoint import load_student, read_checkpoint
from distill.config import check_config, load_config
from distill.students import for_inference
from distill.trainer import train
from distill.val_pictures import HEADER
from distill.validation import load_val_items, predict


def _cfg(out, steps, **extra):
    ov = [f"out={out}", "task=teacher", "model.arch=fast", "model.args={width: 8, blocks: 1, "
          "low_blocks: 1}", f"optim.steps={steps}", "optim.warmup_steps=1", "data.crop=32",
          "data.batch_size=2", "data.workers=0", "val_every=2", "ckpt_every=1000",
          "data.val_max_images=2", "data.val_max_side=64", "log_every=1"]
    ov += [f"{k}={v}" for k, v in extra.items()]
    return load_config(None, ov)


def _u8(rgb: np.ndarray) -> np.ndarray:
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def test_each_validation_saves_input_output_target_crops_of_fixed_images(tmp_path):
    """A mean score averages a regression on one image away; BasicSR users look at
    visualization/ for it. One picture per validation, a row per validation image (the same
    ones each time), columns input | model | ground truth at full resolution."""
    out = tmp_path / "r"
    # A learning rate high enough that the raw weights' outputs differ from the EMA's by
    # more than a grey level: at the default the two were within the comparison's tolerance.
    cfg = _cfg(out, 4, **{"optim.lr": 0.05})
    train(cfg, quiet=True)
    pics = sorted(p.name for p in (out / "visualization").iterdir())
    assert pics == ["step000002.png", "step000004.png"]
    items = load_val_items(cfg, progress=False, note=lambda m: None)
    assert len(items) == 2
    side = min(min(it.input.shape[:2]) for it in items)
    pic = cv2.imread(str(out / "visualization" / "step000004.png"))[..., ::-1]
    assert pic.shape == (HEADER + 2 * side, 3 * side, 3)
    model, _ = load_student(out / "last.pt")   # EMA weights: what validation scored
    model = for_inference(model)
    raw, _ = load_student(out / "last.pt")
    raw.load_state_dict(read_checkpoint(out / "last.pt")["model"])   # the trained weights
    raw = for_inference(raw)
    for row, it in enumerate(items):
        y0 = HEADER + row * side
        cells = [pic[y0:y0 + side, c * side:(c + 1) * side] for c in range(3)]
        h, w = it.input.shape[:2]
        win = (slice((h - side) // 2, (h - side) // 2 + side),
               slice((w - side) // 2, (w - side) // 2 + side))
        assert np.array_equal(cells[0], _u8(it.input[win]))
        assert np.array_equal(cells[2], _u8(it.gt[win]))
        got = _u8(predict(model, it.input, "cpu")[win]).astype(int)
        assert np.abs(cells[1].astype(int) - got).max() <= 1
        not_ema = _u8(predict(raw, it.input, "cpu")[win]).astype(int)
        assert np.abs(cells[1].astype(int) - not_ema).max() > 1
    # the header names the columns: not blank
    assert pic[:HEADER].std() > 0


def test_val_pictures_zero_saves_none(tmp_path):
    out = tmp_path / "r"
    train(_cfg(out, 2, val_pictures=0), quiet=True)
    assert (out / "best.pt").is_file()
    assert not (out / "visualization").exists()


def test_val_pictures_below_zero_is_refused():
    with pytest.raises(ValueError, match="val_pictures"):
        check_config(_cfg("x", 2, val_pictures=-1))


def test_step_records_split_loading_from_computing(tmp_path):
    """BasicSR's `time (data)`: a run starved by its loader (too few data.workers, a slow disk)
    looked the same as a slow model in s/step."""
    out = tmp_path / "r"
    train(_cfg(out, 3, val_every=1000), quiet=True)
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in recs if "loss" in r]
    assert steps and all(0 <= r["data_s_per_step"] <= r["s_per_step"] for r in steps)
    lines = [line for line in (out / "train.log").read_text().splitlines()
             if " step 3/3 " in line]
    assert lines and " s/step (data " in lines[0], lines


def test_tensorboard_without_the_package_names_it_before_training(tmp_path, monkeypatch):
    """The package is optional (never a runtime dependency): asked for and missing, the run
    is refused up front with the pip line, not after its data checks or first interval."""
    import sys
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)   # as if not installed
    out = tmp_path / "r"
    with pytest.raises(ValueError, match="pip install tensorboard"):
        train(_cfg(out, 2, tensorboard=True), quiet=True)
    assert not out.exists()


def _events(out):
    ea = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator").EventAccumulator(
        str(out / "tb"), size_guidance={"scalars": 0, "images": 0})
    ea.Reload()
    return ea


def test_tensorboard_scalars_and_pictures_go_on_across_a_resume(tmp_path):
    """BasicSR's use_tb_logger: `tensorboard --logdir runs` overlays runs. A resumed run's
    curves go on from its step, without the steps a killed run logged after its checkpoint."""
    pytest.importorskip("torch.utils.tensorboard")
    out = tmp_path / "r"
    train(_cfg(out, 4, tensorboard=True, stop_after=3, snapshot_every=2), quiet=True)
    # gone back to step 2: step 3's events of the first run are not this history's
    train(_cfg(out, 4, tensorboard=True, resume=str(out / "step2.pt")), quiet=True)
    ea = _events(out)
    tags = ea.Tags()
    assert {"train/loss", "train/lr", "train/data_s_per_step", "val/model_gt_ssim",
            "val/model_gt_psnr"} <= set(tags["scalars"])
    assert [e.step for e in ea.Scalars("train/loss")] == [1, 2, 3, 4]
    assert [e.step for e in ea.Scalars("val/model_gt_ssim")] == [2, 4]
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    val4 = [r["val"]["model_gt_ssim"] for r in recs if "val" in r and r["step"] == 4]
    assert ea.Scalars("val/model_gt_ssim")[-1].value == pytest.approx(val4[0], rel=1e-6)
    assert [e.step for e in ea.Images("val/pictures")] == [2, 4]


def test_pictures_of_a_history_gone_back_from_are_moved_aside_with_its_checkpoints(tmp_path):
    """resume=OUT/step2.pt past a step-3 validation: step000003.png showed weights that the
    folder's history no longer holds, beside the new run's pictures."""
    out = tmp_path / "r"
    train(_cfg(out, 4, val_every=1, stop_after=3, snapshot_every=2), quiet=True)
    train(_cfg(out, 4, resume=str(out / "step2.pt")), quiet=True)
    assert sorted(p.name for p in (out / "visualization").iterdir()) == [
        "step000001.png", "step000002.png", "step000004.png"]
    aside = out / "abandoned-at-step2" / "visualization"
    assert sorted(p.name for p in aside.iterdir()) == ["step000003.png"]


def test_resume_never_replaces_the_run_theres_pictures_too(tmp_path):
    """Starting over in a folder left the run before's step000003.png among the new run's."""
    out = tmp_path / "r"
    train(_cfg(out, 3, val_every=1), quiet=True)
    train(_cfg(out, 2, resume="never"), quiet=True)
    assert sorted(p.name for p in (out / "visualization").iterdir()) == ["step000002.png"]


def test_a_resume_drops_the_pictures_of_steps_after_its_checkpoint(tmp_path):
    """Killed after step 3's validation, before its checkpoint: resumed from step 2 with
    val_every=2, step000003.png of the killed run stayed among the new history's pictures
    (metrics.jsonl and TensorBoard drop that step's records)."""
    import shutil
    out = tmp_path / "r"
    train(_cfg(out, 4, val_every=1, ckpt_every=2, stop_after=2), quiet=True)
    shutil.copy(out / "last.pt", tmp_path / "last2.pt")
    train(_cfg(out, 4, val_every=1, ckpt_every=2, stop_after=1), quiet=True)
    shutil.copy(tmp_path / "last2.pt", out / "last.pt")   # as if killed before step 3's save
    train(_cfg(out, 4, val_every=2, ckpt_every=2), quiet=True)
    assert sorted(p.name for p in (out / "visualization").iterdir()) == [
        "step000001.png", "step000002.png", "step000004.png"]


_NO_TENSORBOARD = """
import sys
sys.modules["torch.utils.tensorboard"] = None   # as if not installed
from sharpen.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_torchrun_without_tensorboard_stops_every_rank_with_its_message(tmp_path):
    """Only process 0 checked for the package: the others went on into the start's
    all-reduce and died with gloo's 'Connection closed by peer' traceback beside the error."""
    from torchrun_fixtures import torchrun
    script = tmp_path / "no_tb.py"
    script.write_text(_NO_TENSORBOARD)
    with torchrun([str(script), "train", f"out={tmp_path / 'r'}", "task=teacher",
                   "model.arch=fast", "model.args={width: 8, blocks: 1, low_blocks: 1}",
                   "optim.steps=2", "data.crop=32", "data.batch_size=2", "data.workers=0",
                   "data.val_max_images=2", "data.val_max_side=64", "tensorboard=true",
                   "device=cpu"], tmp_path) as proc:
        said, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert "pip install tensorboard" in said, said[-3000:]
    assert "by peer" not in said and "[rank1]: Traceback" not in said, said[-3000:]
    assert not (tmp_path / "r").exists()


_TB_WRITES = """
import sys
from pathlib import Path
import numpy as np
from distill.tb_log import TensorBoardLog
log = TensorBoardLog(Path(sys.argv[1]), 0)
log.scalars("train", {"loss": 1.0}, 1)
log.picture(np.zeros((8, 8, 3), np.uint8), 1)
log.close()
print("tensorflow imported:", "tensorflow" in sys.modules)
"""


def test_tensorboard_log_does_not_import_tensorflow(tmp_path):
    """Where TensorFlow is installed (the export extra's), tensorboard imported it for
    SummaryWriter: seconds added to the start and its log lines on the console, for files
    tensorboard's own stub writes the same."""
    import importlib.util
    import os
    import subprocess
    import sys
    if importlib.util.find_spec("tensorboard") is None:
        pytest.skip("tensorboard is not installed")
    run = subprocess.run([sys.executable, "-c", _TB_WRITES, str(tmp_path)], text=True,
                         capture_output=True, timeout=300, env=os.environ.copy())
    assert run.returncode == 0, run.stderr[-3000:]
    assert "tensorflow imported: False" in run.stdout, run.stderr[-3000:]
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
