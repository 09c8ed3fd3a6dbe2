"""``ReportBuilder``: read OUT_DIR (bounded) and write the report file."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from thresher.filters.base import Strict
from thresher.filters.storage import atomic_write
from thresher.pipeline.report.data import (
    RecordSampler,
    RunData,
    find_metrics,
    load_stats,
    read_shard_lengths,
    record_files,
)
from thresher.pipeline.report.page import render_html

REPORT_NAME = "report.html"


class ReportBuilder(Strict):
    """Reads OUT_DIR (bounded) and writes the HTML report."""

    sample: int = Field(20_000, ge=1, description="documents sampled per side (kept, rejected)")
    max_scan: int = Field(1_000_000, ge=1, description="lines read per side at most")
    max_shard_rows: int = Field(1_000_000, ge=1)
    seed: int = 0

    def load(self, out_dir: str | Path) -> RunData:
        out = Path(out_dir).resolve()
        stats = load_stats(out)
        sampler = RecordSampler(sample=self.sample, max_scan=self.max_scan, seed=self.seed)
        totals = stats.get("totals") if isinstance(stats.get("totals"), dict) else {}
        expected = {side: int(totals[key]) if isinstance(totals.get(key), int) else None
                    for side, key in (("kept", "kept"), ("rejected", "rejected"))}
        review_dir = out / "poisoning_review"
        return RunData(
            out_dir=out, stats=stats,
            kept=sampler.read(out / "kept", "kept", expected["kept"]),
            rejected=sampler.read(out / "rejected", "rejected", expected["rejected"],
                                  self.rare_reasons(stats, expected["rejected"])),
            quarantine=sampler.read(out / "quarantine", "quarantine"),
            shards=read_shard_lengths(out / "shards", self.max_shard_rows),
            training=find_metrics(out),
            review_files=len(record_files(review_dir)),
        )

    def rare_reasons(self, stats: Mapping[str, Any], rejected: int | None) -> list[tuple[str, str]]:
        """(stage, reason) pairs a random sample of rejected/ would likely miss examples of."""
        rate = min(1.0, self.sample / max(min(rejected or self.max_scan, self.max_scan), 1))
        rare = []
        for stage in stats.get("stages") or []:
            if isinstance(stage, dict) and isinstance(stage.get("reasons"), dict):
                for reason, count in stage["reasons"].items():
                    if isinstance(count, (int, float)) and 0 < count * rate < 10:
                        rare.append((str(stage.get("name", "?")), str(reason)))
        return sorted(set(rare))

    def write(self, out_dir: str | Path, report_path: str | Path | None = None) -> Path:
        data = self.load(out_dir)
        target = Path(report_path) if report_path else data.out_dir / REPORT_NAME
        atomic_write(target, render_html(data).encode("utf-8"))
        return target
