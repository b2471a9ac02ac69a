"""What `sharpen export` reports: each format's result, the export's report (export_report.json)
and the table (with its legend) that ends the run."""
from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from distill.metrics import SSIM_ID, older_parity_ssim
from runtime.formats import FORMATS


@dataclass
class FormatResult:
    format: str
    status: str                  # pass / fail / error / skipped
    file: str | None = None
    size_bytes: int | None = None
    precision: str | None = None
    target: str | None = None
    runner: str | None = None
    build_s: float | None = None
    latency_ms_1080p: float | None = None
    max_abs: float | None = None
    psnr: float | None = None
    ssim: float | None = None
    ssim_gt: float | None = None
    ssim_teacher: float | None = None
    ssim_gt_drop: float | None = None
    reason: str | None = None
    extra: dict = field(default_factory=dict)
    images: list = field(default_factory=list)


@dataclass
class ExportReport:
    weights: str
    student: str
    out_dir: str
    results: list[FormatResult]
    reference: dict
    settings: dict
    # Artifacts of this stem in the folder that no result describes (not rebuilt, and no
    # record of the same weights to carry): {"format", "file", "reason"} each.
    stale: list[dict] = field(default_factory=list)
    # The software that built it (distill.provenance.run_environment: versions, commit).
    environment: dict = field(default_factory=dict)
    # Where the weights came from (distill.lineage: the init checkpoint, the label caches).
    lineage: dict = field(default_factory=dict)
    # The `sharpen export` command line and its working directory ({"line", "cwd"}), None
    # from Python: what produced the release, its relative paths read from that folder.
    command: dict | None = None

    @property
    def ok(self) -> bool:
        """This export's verdict, as its exit code: every artifact asked for was built and
        passed. A format named in --formats that cannot be built here (`not_built`), or an
        export stopped part-way (its report lists what it finished), is not ok; results carried
        from an earlier export do not count."""
        return not (self.failed or self.not_built or self.settings.get("interrupted"))

    @property
    def not_built(self) -> list[FormatResult]:
        """Formats named in --formats that this machine cannot build (skipped, with the reason):
        the user asked for that artifact and has none. With 'all' or no --formats a format that
        cannot be built here is skipped with a warning instead."""
        asked = self.settings.get("formats_requested")
        if not isinstance(asked, list):
            return []
        return [r for r in self.results if r.status == "skipped" and r.format in asked
                and not r.extra.get("earlier_export")]

    @property
    def failed(self) -> list[FormatResult]:
        return [r for r in self.results if r.status in ("fail", "error")
                and not r.extra.get("earlier_export")]

    def result(self, fmt: str) -> FormatResult | None:
        return next((r for r in self.results if r.format == fmt), None)

    def to_dict(self) -> dict:
        return {"weights": self.weights, "weights_path": str(Path(self.weights).resolve()),
                "weights_sha256": self.settings.get("weights_sha256"),
                "environment": self.environment, "lineage": self.lineage,
                "student": self.student, "out_dir": self.out_dir, "command": self.command,
                "ok": self.ok, "not_built": [r.format for r in self.not_built],
                "reference": self.reference, "settings": self.settings,
                "results": [_finite(asdict(r)) for r in self.results], "stale": self.stale,
                # Which SSIM the parity rows hold: `sharpen models` says an older one's.
                "ssim_formula": SSIM_ID}


def _finite(obj):
    """JSON has no inf/nan: PSNR of identical outputs becomes the string "inf"."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _fmt_size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):   # binary units: the sizes are divided by 1024
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _has_gt(report: ExportReport) -> bool:
    return any(r.ssim_gt_drop is not None for r in report.results)


def table_rows(report: ExportReport) -> list[list[str]]:
    gt = _has_gt(report)
    rows = []
    ref_lat = report.reference.get("latency_ms_1080p")
    rows.append(["pytorch (reference)", "FP32", Path(report.weights).name, "-",
                 f"{ref_lat:.0f}" if ref_lat else "-", "-", "-", "-"] + (["-"] if gt else [])
                + ["reference"])
    for r in report.results:
        psnr = "-" if r.psnr is None else ("inf" if math.isinf(r.psnr) else f"{r.psnr:.2f}")
        drop = ["-" if r.ssim_gt_drop is None else f"{r.ssim_gt_drop:.4f}"] if gt else []
        floats = r.extra.get("float_layers")
        rows.append([
            r.format, (r.precision or "").upper()
            + (f", float from {', '.join(floats)}" if floats else ""),
            Path(r.file).name if r.file else "-",
            _fmt_size(r.size_bytes),
            f"{r.latency_ms_1080p:.0f}" if r.latency_ms_1080p else "-",
            "-" if r.max_abs is None else f"{r.max_abs:.2g}", psnr,
            "-" if r.ssim is None else f"{r.ssim:.4f}" + "*" * _older(r), *drop,
            ("(earlier export) " if r.extra.get("earlier_export") else "")
            + r.status.upper() + (f": {_short(r.reason)}" if r.reason and r.status != "pass"
                                  else "")
            + (" (up to date, kept)" if r.extra.get("up_to_date") else ""),
        ])
    return rows


def _older(r: FormatResult) -> bool:
    """A carried row whose PASS or FAIL an older version's SSIM decided (`older_parity_ssim`);
    this report names this version's formula for its own rows."""
    return older_parity_ssim(asdict(r), SSIM_ID)


def table_headers(report: ExportReport) -> list[str]:
    """HEADERS, with the SSIM lost to ground truth when the parity images have it."""
    return HEADERS[:-1] + (["SSIM lost vs GT"] if _has_gt(report) else []) + HEADERS[-1:]


def _short(reason: str) -> str:
    """Table cell: the reason without its parenthesised advice (kept in the report JSON)."""
    return reason.split(" (")[0] if reason.count("(") and not reason.startswith("(") else reason


HEADERS = ["format", "precision", "file", "size", "ms @1080p", "max abs", "PSNR dB", "SSIM",
           "result"]


def print_table(report: ExportReport, file=None) -> None:
    """The final table, coloured by result when rich is installed."""
    from runtime.console import print_table as show

    def style(row):
        res = row[-1]
        return ("green" if res.startswith("PASS") else "red" if res.startswith(("FAIL", "ERROR"))
                else "yellow" if res.startswith("SKIPPED") else None)

    show(f"sharpen export: {report.student} -> {report.out_dir} (metrics vs the FP32 PyTorch "
         "output on held-out images; worst image)", table_headers(report), table_rows(report),
         file=file, right=("size", "ms @1080p", "max abs", "PSNR dB", "SSIM", "SSIM lost vs GT"),
         row_style=style)
    print(table_legend(report), file=file or sys.stdout)


def table_legend(report: ExportReport) -> str:
    """What the table's numbers and PASS mean, and what runs each format: the thresholds were
    only in the report JSON, and the device of each format only in --help."""
    t = report.settings.get("thresholds") or {}
    gates = [f"FP32: max abs error < {t.get('fp32_max_abs', 1e-4):g} (pixels in [0, 1])",
             f"INT8/FP16: SSIM >= {t.get('min_ssim', 0.98):g}"]
    if t.get("min_psnr") is not None:
        gates[-1] += f" and PSNR >= {t['min_psnr']:g} dB"
    if t.get("max_ssim_drop") is not None:
        gates[-1] += f" and SSIM lost vs GT <= {t['max_ssim_drop']:g}"
    seen = [r.format for r in report.results if r.format in FORMATS]
    runs = "; ".join(f"{f}: {FORMATS[f].target}" for f in dict.fromkeys(seen))
    older = [r.format for r in report.results if _older(r)]
    star = (f"\n* an older version's parity SSIM (7x7 window, reads higher): `sharpen export "
            f"--formats {','.join(older)}` judges {'it' if len(older) == 1 else 'them'} again"
            if older else "")
    return (f"PASS means {'; '.join(gates)}; ship only PASS rows.\n"
            f"runs on: {runs}{star}" if runs else f"PASS means {'; '.join(gates)}{star}")

