"""Why ``willis.metrics.auc`` is rank-based: bootstrap cost vs scikit-learn, side by side.

    python benchmarks/bench_metrics.py [--n 120] [--boot 200] [--repeats 5]

Times one bootstrap of the competition score (``--boot`` resamples x 14 label AUCs on ``--n``
series) with the rank-statistic AUC and with ``sklearn.metrics.roc_auc_score``, alternating the
two in each repeat, and prints the medians and their ratio. Also checks the two agree.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from sklearn.metrics import roc_auc_score

from willis.metrics import auc, bootstrap_score


def sklearn_bootstrap(Y, P, n_boot, seed):
    """Same resampling as ``bootstrap_score``, AUCs by scikit-learn (reference implementation)."""
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(Y), size=len(Y))
        y, p = Y[idx], P[idx]
        aucs = [roc_auc_score(y[:, j], p[:, j]) if 0 < y[:, j].sum() < len(y) else None for j in range(14)]
        locs = [a for a in aucs[:13] if a is not None]
        if aucs[13] is not None and locs:
            scores.append(0.5 * aucs[13] + 0.5 * np.mean(locs))
    return np.percentile(scores, [2.5, 97.5]).tolist()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    Y = (rng.random((a.n, 14)) < 0.3).astype(int)
    P = np.clip(0.3 * Y + rng.random((a.n, 14)), 0, 1)
    ours = bootstrap_score(Y, P, a.boot, seed=1)
    ref = sklearn_bootstrap(Y, P, a.boot, seed=1)
    assert np.allclose([ours["low"], ours["high"]], ref), (ours, ref)
    assert all(abs(auc(Y[:, j], P[:, j]) - roc_auc_score(Y[:, j], P[:, j])) < 1e-12 for j in range(14))
    t_ours, t_ref = [], []
    for _ in range(a.repeats):
        t0 = time.perf_counter(); bootstrap_score(Y, P, a.boot, seed=1); t_ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter(); sklearn_bootstrap(Y, P, a.boot, seed=1); t_ref.append(time.perf_counter() - t0)
    mo, mr = statistics.median(t_ours), statistics.median(t_ref)
    print(f"bootstrap {a.boot} x 14 AUCs, n={a.n}, median of {a.repeats}: "
          f"rank AUC {mo:.3f} s, sklearn {mr:.3f} s, sklearn/rank = {mr / mo:.1f}x; intervals identical")


if __name__ == "__main__":
    main()
