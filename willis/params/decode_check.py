"""``decode_check``: test decodes and the integrity report. Owned by willis/decode_check.py."""

from __future__ import annotations

from dataclasses import dataclass

from willis.params.schema import require


@dataclass(frozen=True)
class DecodeCheckParams:
    report: str = "reports/decode_check.json"            # per-series status and reasons (cache: false)
    metrics: str = "reports/decode_check_metrics.json"   # counts per status, for `dvc metrics`
    workers: int = 2
    max_excluded_fraction: float = 0.1   # the run fails if more series than this are excluded

    def check(self) -> None:
        require(self.workers >= 1, "decode_check.workers", "must be >= 1")
        require(0 <= self.max_excluded_fraction <= 1, "decode_check.max_excluded_fraction", "must be in [0, 1]")
