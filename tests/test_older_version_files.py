"""Files an older version wrote, as it wrote them, read by this one: each works or says what is
old about it (README, Upgrading)."""
from __future__ import annotations

import json
from pathlib import Path

from distill.metrics import SSIM_ID


def _older_export(folder: Path, precision: str = "int8") -> Path:
    """An artifact and its export_report.json row as a version before the SSIM change wrote
    them (its parity SSIM the 7x7 window's, no formula named)."""
    from distill.teacher import file_hash
    art = folder / "m_int8.onnx"
    art.write_bytes(b"not a model: only its sha256 is read")
    row = {"format": "onnx-int8", "status": "pass", "file": str(art), "precision": precision,
           "max_abs": 0.0114, "psnr": 57.01, "ssim": 0.9995,
           "extra": {"file_sha256": file_hash(art, n=64)}}
    report = {"weights": "run/best.pt", "student": "fast", "out_dir": str(folder), "ok": True,
              "reference": {}, "settings": {"calib_images": ["a"]}, "results": [row]}
    (folder / "export_report.json").write_text(json.dumps(report))
    return art


def test_sharpen_models_says_an_older_exports_parity_ssim_is_the_older_formula(tmp_path):
    """`sharpen models ARTIFACT` gave an older export's parity verdict (PASS, INT8 gate SSIM
    >= 0.98) as this version's, though taken with the 7x7 SSIM that reads higher."""
    from distill.provenance import artifact_provenance
    from optimize.export_report import ExportReport

    art = _older_export(tmp_path)
    said = "\n".join(artifact_provenance(art))
    assert "parity SSIM 0.9995, its formula not recorded (an older version" in said, said
    assert "sharpen export" in said
    # FP32's gate is its max abs error, whichever SSIM: nothing to say.
    fp32 = tmp_path / "fp32"
    fp32.mkdir()
    assert "parity SSIM" not in "\n".join(artifact_provenance(_older_export(fp32, "fp32")))
    # A report this version writes names its formula: nothing said.
    assert ExportReport("w.pt", "fast", str(tmp_path), [], {}, {}).to_dict()[
        "ssim_formula"] == SSIM_ID
    report = json.loads((tmp_path / "export_report.json").read_text())
    (tmp_path / "export_report.json").write_text(json.dumps({**report, "ssim_formula": SSIM_ID}))
    assert "parity SSIM" not in "\n".join(artifact_provenance(art))


def test_the_export_table_marks_a_carried_rows_older_parity_ssim():
    """`sharpen export --formats onnx` into an older export's folder carries its INT8 row into
    the table, whose legend gives this version's gate (SSIM >= 0.98): its PASS was taken with
    the 7x7 window, which reads higher, and the table said nothing of it."""
    from optimize.export_report import ExportReport, FormatResult, table_legend, table_rows

    carried = FormatResult("onnx-int8", "pass", "m_int8.onnx", precision="int8", max_abs=0.04,
                           psnr=48.0, ssim=0.993,
                           extra={"earlier_export": True, "ssim_formula": None})
    fresh = FormatResult("onnx", "pass", "m.onnx", precision="fp32", max_abs=1e-7, psnr=100.0,
                         ssim=1.0)
    report = ExportReport("w.pt", "fast", "out", [fresh, carried], {}, {})
    rows = table_rows(report)
    assert rows[1][7] == "1.0000" and rows[2][7] == "0.9930*", rows
    legend = table_legend(report)
    assert "* an older version's parity SSIM (7x7 window, reads higher)" in legend, legend
    assert "`sharpen export --formats onnx-int8`" in legend, legend
    carried.extra["ssim_formula"] = SSIM_ID   # carried from a report of this version's
    assert table_rows(report)[2][7] == "0.9930"
    assert "older version" not in table_legend(report)
