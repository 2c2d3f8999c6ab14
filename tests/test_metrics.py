"""Metrics checked against scikit-learn and hand-computed values; undefined labels stay None."""

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from willis.metrics import (
    auc, bootstrap_score, competition_score, confusion, ece, nll, nll_logits, pr_auc, summarize,
)
from willis.labels import LABELS, PRESENT_INDEX


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, 14)) < 0.3).astype(int)
    P = np.clip(0.35 * Y + rng.random((n, 14)) * 0.7, 0, 1).round(2)  # rounded: plenty of ties
    return Y, P


def test_auc_matches_sklearn_with_ties():
    Y, P = _data()
    for j in range(14):
        assert auc(Y[:, j], P[:, j]) == pytest.approx(roc_auc_score(Y[:, j], P[:, j]), abs=1e-12)


def test_auc_and_pr_auc_undefined_without_both_classes():
    p = np.linspace(0, 1, 5)
    assert auc(np.zeros(5), p) is None and auc(np.ones(5), p) is None
    assert pr_auc(np.zeros(5), p) is None
    assert pr_auc(np.array([0, 0, 0, 1, 1]), p) == pytest.approx(1.0)


def test_score_is_the_competition_weighting():
    Y, P = _data()
    per_col = [roc_auc_score(Y[:, j], P[:, j]) for j in range(14)]
    weights = [13.0 if j == PRESENT_INDEX else 1.0 for j in range(14)]  # the competition's weights
    out = competition_score(Y, P)
    assert out["score"] == pytest.approx(np.average(per_col, weights=weights), abs=1e-12)
    assert out["auc_present"] == pytest.approx(per_col[PRESENT_INDEX])
    assert out["auc_locations_mean"] == pytest.approx(np.mean(per_col[:13]))
    assert out["n_locations_used"] == 13


def test_undefined_location_is_skipped_and_counted():
    Y, P = _data()
    Y[:, 4] = 0  # no positive for one location in this split
    out = competition_score(Y, P)
    defined = [roc_auc_score(Y[:, j], P[:, j]) for j in range(13) if j != 4]
    assert out["aucs"][4] is None and out["n_locations_used"] == 12
    assert out["score"] == pytest.approx(0.5 * roc_auc_score(Y[:, 13], P[:, 13]) + 0.5 * np.mean(defined))
    Y[:, PRESENT_INDEX] = 1  # Present undefined -> the score itself is undefined, not 0.5
    assert competition_score(Y, P)["score"] is None


def test_ece_hand_computed():
    y = np.array([0, 1, 1, 0])
    p = np.array([0.05, 0.15, 0.95, 0.95])
    # bins: {0.05: y=0} |0-0.05|, {0.15: y=1} |1-0.15|, {0.95, 0.95: y=1,0} |0.5-0.95| weighted 1/4,1/4,2/4
    assert ece(y, p, 10) == pytest.approx(0.25 * 0.05 + 0.25 * 0.85 + 0.5 * 0.45)
    assert ece(np.array([1.0]), np.array([1.0]), 10) == pytest.approx(0.0)  # p == 1 lands in the last bin


def test_nll_matches_sklearn_and_logit_form():
    Y, P = _data()
    Pc = np.clip(P, 0.01, 0.99)
    assert nll(Y[:, 0], Pc[:, 0]) == pytest.approx(log_loss(Y[:, 0], Pc[:, 0]))
    z = np.log(Pc[:, 0] / (1 - Pc[:, 0]))
    assert nll_logits(Y[:, 0], z) == pytest.approx(nll(Y[:, 0], Pc[:, 0]))


def test_confusion_hand_computed_and_zero_division():
    c = confusion(np.array([1, 1, 0, 0, 1]), np.array([1, 0, 1, 0, 1]))
    assert (c["tp"], c["fp"], c["fn"], c["tn"]) == (2, 1, 1, 1)
    assert c["precision"] == pytest.approx(2 / 3) and c["recall"] == pytest.approx(2 / 3)
    assert c["f1"] == pytest.approx(2 / 3)
    none = confusion(np.zeros(3), np.zeros(3))
    assert none["precision"] is None and none["recall"] is None and none["f1"] is None


def test_bootstrap_is_seeded_brackets_the_estimate_and_counts_undefined():
    Y, P = _data(120)
    a, b = bootstrap_score(Y, P, 200, seed=1), bootstrap_score(Y, P, 200, seed=1)
    assert a == b
    s = competition_score(Y, P)["score"]
    assert a["low"] < s < a["high"] and a["n_undefined"] == 0
    Y2 = Y[:12].copy()
    Y2[:, PRESENT_INDEX] = 0
    Y2[0, PRESENT_INDEX] = 1  # one positive in 12: about (11/12)^12 = 35% of resamples miss it
    c = bootstrap_score(Y2, P[:12], 300, seed=2)
    assert 50 < c["n_undefined"] < 170


def test_summarize_notes_undefined_labels_and_counts_macro():
    Y, P = _data()
    Y[:, 2] = 0
    out = summarize(Y, P, P >= 0.5)
    lab = out["labels"][LABELS[2]]
    assert lab["roc_auc"] is None and lab["pr_auc"] is None and "undefined" in lab["note"]
    assert out["macro"]["n_roc_auc"] == 13
    defined = [roc_auc_score(Y[:, j], P[:, j]) for j in range(14) if j != 2]
    assert out["macro"]["roc_auc"] == pytest.approx(np.mean(defined))
    assert out["micro"]["roc_auc"] == pytest.approx(roc_auc_score(Y.ravel(), P.ravel()))
    assert out["micro"]["tp"] == int(((P >= 0.5) & (Y == 1)).sum())


def test_paired_bootstrap_of_a_difference():
    Y, P = _data(100)
    same = bootstrap_score(Y, P, 50, seed=3, B=P)
    assert same["low"] == 0.0 and same["high"] == 0.0  # a model minus itself is exactly 0
    worse = np.random.default_rng(4).random(P.shape)   # uninformative scores
    d = bootstrap_score(Y, P, 100, seed=3, B=worse)
    assert 0 < d["low"] < d["high"]
