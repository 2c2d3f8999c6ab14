"""``evaluate``: metrics on the held-out test split. Owned by willis/evaluate/."""

from __future__ import annotations

from dataclasses import dataclass

from willis.params import require


@dataclass(frozen=True)
class EvaluateParams:
    bootstrap: int = 1000            # resamples for the 95% interval of the score
    worst_k: int = 6                 # series shown in summary.md as the model's worst mistakes

    def check(self) -> None:
        require(self.bootstrap >= 0, "evaluate.bootstrap", "must be >= 0")
