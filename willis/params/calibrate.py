"""``calibrate``: temperature scaling, Present-gating, thresholds. Owned by willis/calibration.py."""

from __future__ import annotations

from dataclasses import dataclass

from willis.params import require


@dataclass(frozen=True)
class CalibrateParams:
    target_precision: float = 0.80   # Aneurysm Present threshold: smallest reaching this precision
    gate: bool = True                # location probabilities gated by Present**alpha
    alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0)  # candidates for alpha, chosen on validation

    def check(self) -> None:
        require(0 < self.target_precision <= 1, "calibrate.target_precision", "must be in (0, 1]")
