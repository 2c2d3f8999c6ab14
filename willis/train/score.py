"""The competition's weighted score, as used for early stopping and the training logs.

``score = 0.5 * AUC(Aneurysm Present) + 0.5 * mean(AUC of the 13 locations)`` (Present weight 13,
each location 1). A label whose validation column has no positive (or no negative) has no AUC: it
is left out of the location mean, never counted as 0.5. If Present itself has no AUC the score is
the location mean alone (and vice versa) so that early stopping still has a signal on a tiny
validation split; with neither it is NaN. The AUCs themselves come from the one implementation the
evaluate stage reports (``willis.metrics``).
"""

from __future__ import annotations

import numpy as np

from willis.metrics import competition_score
from willis.labels import LABELS, PRESENT_INDEX


def per_label_auc(y: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """ROC-AUC per label column of y (N, 14) 0/1 and scores (N, 14); NaN where a class is absent."""
    aucs = competition_score(np.asarray(y), np.asarray(scores))["aucs"]
    return {name: float("nan") if a is None else float(a) for name, a in zip(LABELS, aucs)}


def score_parts(auc: dict[str, float]) -> tuple[float, float]:
    """(AUC of Aneurysm Present, mean AUC of the locations that have one); NaN where undefined."""
    present = auc[LABELS[PRESENT_INDEX]]
    locs = [v for k, v in auc.items() if k != LABELS[PRESENT_INDEX] and not np.isnan(v)]
    return present, (float(np.mean(locs)) if locs else float("nan"))


def weighted_score(y: np.ndarray, scores: np.ndarray) -> tuple[float, dict[str, float]]:
    """(score, per-label AUC) for y (N, 14) 0/1 and any monotone scores (logits or probabilities)."""
    auc = per_label_auc(y, scores)
    present, loc_mean = score_parts(auc)
    parts = [v for v in (present, loc_mean) if not np.isnan(v)]
    score = float(np.mean(parts)) if parts else float("nan")
    return score, auc
