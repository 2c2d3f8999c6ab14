"""Class-balanced sampler: rare locations are drawn more often; seeded draws repeat."""

import numpy as np
import torch

from willis.train.sampler import epoch_indices, series_weights


def _labels():
    y = np.zeros((100, 14), dtype=int)
    y[:40, 13] = 1          # 40 positives
    y[:30, 6] = 1           # a common location
    y[30:32, 7] = 1         # a rare location: 2 series
    return y


def test_weights_favour_rare_labels():
    y = _labels()
    w = series_weights(y, power=1.0)
    assert abs(w.mean() - 1) < 1e-12
    # power 1: weight proportional to 1 / freq of the rarest positive label
    assert abs(w[30] / w[0] - 30 / 2) < 1e-9
    assert abs(w[99] / w[0] - (30 / 100) / (60 / 100)) < 1e-9  # negatives: 1 / freq(all-negative)
    np.testing.assert_allclose(series_weights(y, power=0.0), np.ones(100))


def test_draws_are_seeded_and_shift_frequency():
    y = _labels()
    w = series_weights(y, power=1.0)
    a = epoch_indices(w, 100, torch.Generator().manual_seed(3))
    b = epoch_indices(w, 100, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    draws = epoch_indices(w, 20000, torch.Generator().manual_seed(0)).numpy()
    rare = np.isin(draws, [30, 31]).mean()
    assert rare > 0.15  # uniform would give 0.02; weights give 2 * 15 / sum(w) ~ 0.28
    perm = epoch_indices(None, 10, torch.Generator().manual_seed(0))
    assert sorted(perm.tolist()) == list(range(10))
