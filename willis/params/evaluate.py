"""``evaluate``: metrics on the held-out test split. Owned by willis/evaluate/."""

from __future__ import annotations

from dataclasses import dataclass

from willis.params.schema import require


@dataclass(frozen=True)
class EvaluateParams:
    bootstrap: int = 1000            # resamples for the 95% interval of the score (0: no interval)
    worst_k: int = 6                 # series shown in summary.md as the model's worst mistakes
    ece_bins: int = 10               # equal-width bins of the test ECE
    baseline_grid: int = 2           # baseline features: each view split into grid x grid regions
    baseline_c: float = 1.0          # inverse L2 strength of the baseline logistic regressions

    def check(self) -> None:
        require(self.bootstrap >= 0, "evaluate.bootstrap", "must be >= 0")
        require(self.worst_k >= 0, "evaluate.worst_k", "must be >= 0")
        require(self.ece_bins >= 2, "evaluate.ece_bins", "must be >= 2")
        require(self.baseline_grid >= 1, "evaluate.baseline_grid", "must be >= 1")
        require(self.baseline_c > 0, "evaluate.baseline_c", "must be > 0")
