"""The weighted score against sklearn, and labels without positives skipped (never 0.5)."""

import numpy as np
from sklearn.metrics import roc_auc_score

from willis.train.score import weighted_score


def test_weighted_score_matches_sklearn_and_skips_empty_labels():
    rng = np.random.default_rng(0)
    y = np.zeros((40, 14), dtype=int)
    y[:, 13] = rng.random(40) < 0.5
    y[:10, 0] = 1
    y[5:15, 4] = 1                   # two location columns have positives; 11 have none
    s = rng.normal(size=(40, 14)) + y
    score, auc = weighted_score(y, s)
    loc = np.mean([roc_auc_score(y[:, 0], s[:, 0]), roc_auc_score(y[:, 4], s[:, 4])])
    assert np.isclose(score, 0.5 * roc_auc_score(y[:, 13], s[:, 13]) + 0.5 * loc)
    assert np.isnan(auc["Basilar Tip"])
    perfect, _ = weighted_score(y, y.astype(float))
    assert perfect == 1.0
