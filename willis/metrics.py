"""Metrics on (N, 14) truth and probability arrays, last axis in ``willis.labels.LABELS`` order.

Conventions every function here keeps:

* A metric that a split cannot define (ROC-AUC of a label with no positives or no negatives,
  precision with no predicted positives) is ``None``, never 0.5 and never an exception. Means
  skip ``None`` and say how many values they used.
* The competition score is ``0.5 * AUC(Aneurysm Present) + 0.5 * mean(location AUCs)``, which is
  the competition's weighted mean of the 14 column AUCs (weight 13 for Present, 1 per location)
  when all 13 locations are defined; undefined locations are left out of the location mean.
* A prediction is positive iff ``p >= threshold``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_expit
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score

from willis.labels import LABELS, LOCATIONS, PRESENT_INDEX

P_EPS = 1e-7       # probabilities are clipped to [P_EPS, 1 - P_EPS] before a log
ECE_BINS = 10      # equal-width reliability bins


def auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """ROC-AUC by the Mann-Whitney rank statistic (ties count 1/2); None without both classes.

    Same value as ``sklearn.metrics.roc_auc_score`` at a fraction of the cost, which matters in
    the bootstrap (thousands of resamples x 14 labels).
    """
    y = np.asarray(y).astype(bool)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(p)  # average ranks: a tie between a positive and a negative counts 1/2
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pr_auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """Average precision (area under the PR curve); None when the split has no positive."""
    y = np.asarray(y).astype(int)
    if y.sum() == 0:
        return None
    return float(average_precision_score(y, p))


def nll(y: np.ndarray, p: np.ndarray) -> float | None:
    """Mean binary cross-entropy of probabilities ``p`` (clipped to P_EPS); None when empty."""
    y = np.asarray(y, dtype=float)
    if y.size == 0:
        return None
    p = np.clip(np.asarray(p, dtype=float), P_EPS, 1 - P_EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def nll_logits(y: np.ndarray, z: np.ndarray) -> float:
    """Mean binary cross-entropy of logits ``z``, computed stably (log-sigmoid, no clipping)."""
    y = np.asarray(y, dtype=float)
    z = np.asarray(z, dtype=float)
    return float(-np.mean(y * log_expit(z) + (1 - y) * log_expit(-z)))


def reliability_bins(y: np.ndarray, p: np.ndarray, n_bins: int = ECE_BINS):
    """Equal-width bins over [0, 1]: (count, mean p, fraction positive) per bin, each (n_bins,).

    Bin ``b`` holds ``b/n <= p < (b+1)/n``; p == 1 falls in the last bin. Empty bins have NaN means.
    """
    y = np.asarray(y, dtype=float).ravel()
    p = np.asarray(p, dtype=float).ravel()
    b = np.minimum((p * n_bins).astype(int), n_bins - 1)
    count = np.bincount(b, minlength=n_bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(b, weights=p, minlength=n_bins) / count
        frac_pos = np.bincount(b, weights=y, minlength=n_bins) / count
    return count, mean_p, frac_pos


def ece(y: np.ndarray, p: np.ndarray, n_bins: int = ECE_BINS) -> float | None:
    """Expected calibration error: sum over bins of (n_b / N) * |fraction positive - mean p|."""
    if np.asarray(y).size == 0:
        return None
    count, mean_p, frac_pos = reliability_bins(y, p, n_bins)
    used = count > 0
    return float(np.sum(count[used] / count.sum() * np.abs(frac_pos[used] - mean_p[used])))


def confusion(y: np.ndarray, pred: np.ndarray) -> dict:
    """Counts and precision/recall/F1 of binary predictions; a 0/0 ratio is None."""
    y = np.asarray(y).astype(bool)
    pred = np.asarray(pred).astype(bool)
    tp, fp = int(np.sum(y & pred)), int(np.sum(~y & pred))
    fn, tn = int(np.sum(y & ~pred)), int(np.sum(~y & ~pred))
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "precision": precision, "recall": recall, "f1": f1}


def _mean(values) -> tuple[float | None, int]:
    """Mean of the defined (non-None) values and how many there were."""
    vals = [v for v in values if v is not None]
    return (float(np.mean(vals)) if vals else None), len(vals)


def competition_score(Y: np.ndarray, P: np.ndarray) -> dict:
    """Score of (N, 14) truth ``Y`` and scores ``P``; see the module docstring for the rule.

    Returns ``score`` (None if Present's AUC or every location AUC is undefined), ``auc_present``,
    ``auc_locations_mean``, ``n_locations_used`` (of 13) and the 14 per-label ``aucs``.
    """
    aucs = [auc(Y[:, j], P[:, j]) for j in range(len(LABELS))]
    present = aucs[PRESENT_INDEX]
    loc_mean, n_used = _mean(aucs[: len(LOCATIONS)])
    score = None if present is None or loc_mean is None else 0.5 * present + 0.5 * loc_mean
    return {"score": score, "auc_present": present, "auc_locations_mean": loc_mean,
            "n_locations_used": n_used, "aucs": aucs}


def bootstrap_score(Y: np.ndarray, P: np.ndarray, n_boot: int, seed: int,
                    B: np.ndarray | None = None) -> dict:
    """95% percentile interval of the competition score over ``n_boot`` resamples of the series.

    With ``B`` (N, 14) the statistic is the paired difference ``score(P) - score(B)`` on the same
    resample (how far a model is above a baseline). Resamples whose statistic is undefined (no
    positive or no negative for Present) are skipped and counted in ``n_undefined``; ``low`` and
    ``high`` are None when no resample was defined.
    """
    rng = np.random.default_rng(seed)
    n = Y.shape[0]
    stats = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, size=n)  # (n,) series drawn with replacement
        s = competition_score(Y[idx], P[idx])["score"]
        if s is not None and B is not None:
            b = competition_score(Y[idx], B[idx])["score"]
            s = None if b is None else s - b
        if s is not None:
            stats.append(s)
    low, high = (np.percentile(stats, [2.5, 97.5]).tolist() if stats else (None, None))
    return {"low": low, "high": high, "n_boot": n_boot, "n_undefined": n_boot - len(stats),
            "n_series": n}


def summarize(Y: np.ndarray, P: np.ndarray, pred: np.ndarray, ece_bins: int = ECE_BINS) -> dict:
    """Every metric of one group of series: score, per-label, micro and macro summaries.

    Y (N, 14) 0/1 truth, P (N, 14) probabilities, pred (N, 14) bool decisions at the thresholds.
    Micro pools all (series, label) cells into one binary problem; macro averages the defined
    per-label values.
    """
    out = competition_score(Y, P)
    aucs = out.pop("aucs")
    labels = {}
    for j, name in enumerate(LABELS):
        labels[name] = {
            "positives": int(Y[:, j].sum()), "n": int(Y.shape[0]),
            "roc_auc": aucs[j], "pr_auc": pr_auc(Y[:, j], P[:, j]),
            "ece": ece(Y[:, j], P[:, j], ece_bins), **confusion(Y[:, j], pred[:, j]),
        }
        if aucs[j] is None:
            labels[name]["note"] = "undefined: the split has no positive or no negative for this label"
    micro = {"roc_auc": auc(Y.ravel(), P.ravel()), "pr_auc": pr_auc(Y.ravel(), P.ravel()),
             "ece": ece(Y, P, ece_bins), **confusion(Y.ravel(), pred.ravel())}
    macro = {}
    for key in ("roc_auc", "pr_auc", "ece", "f1"):
        macro[key], macro[f"n_{key}"] = _mean(v[key] for v in labels.values())
    return {**out, "n_series": int(Y.shape[0]), "micro": micro, "macro": macro, "labels": labels}
