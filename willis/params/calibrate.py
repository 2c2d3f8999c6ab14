"""``calibrate``: temperature (+ bias) scaling, Present-gating, thresholds. Owned by willis/calibration.py."""

from __future__ import annotations

from dataclasses import dataclass

from willis.params.schema import require


@dataclass(frozen=True)
class CalibrateParams:
    target_precision: float = 0.80   # Aneurysm Present threshold: smallest reaching this precision
    bias: bool = True                # fit a per-label logit bias with the temperature (Platt scaling)
    gate: bool = True                # location probabilities gated by Present**alpha
    alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0)  # candidates for alpha, chosen on validation
    ece_bins: int = 10               # equal-width bins of the ECE and the reliability diagram

    def check(self) -> None:
        require(0 < self.target_precision <= 1, "calibrate.target_precision", "must be in (0, 1]")
        require(len(self.alphas) >= 1, "calibrate.alphas", "needs at least one candidate")
        require(all(a >= 0 for a in self.alphas), "calibrate.alphas", "every alpha must be >= 0")
        require(self.ece_bins >= 2, "calibrate.ece_bins", "must be >= 2")
