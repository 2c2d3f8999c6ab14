"""The baseline every model must beat: logistic regression on simple projection statistics.

Features of one series (``projection_features``), from its MIP (3 views, C channels, S x S):
for each view and channel, over the whole image and each cell of a ``grid x grid`` split, the
maximum, the 99th/95th/50th percentiles and the mean: ``3 * C * (1 + grid**2) * 5`` numbers.
Cells keep coarse left/right and anterior/posterior position, which the location labels need.

One standardised, class-balanced L2 logistic regression per label (one-vs-rest over the 14
columns), fitted per family on the train split only. A label with a single class in train cannot
be fitted: it predicts its train prevalence (a constant, ROC-AUC 0.5 where defined) and is flagged.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from willis.labels import LABELS

log = logging.getLogger(__name__)

PERCENTILES = (99.0, 95.0, 50.0)   # with max and mean: 5 statistics per region
MAX_ITER = 5000                     # lbfgs iterations; standardised features converge well before
READ_BATCH = 32                     # series per store read: bounded memory, amortised opens


def projection_features(mip: np.ndarray, grid: int) -> np.ndarray:
    """(3, C, S, S) MIP in [0, 1] -> (3 * C * (1 + grid**2) * 5,) float32 statistics."""
    mip = np.asarray(mip, dtype=np.float32)
    V, C, S, _ = mip.shape
    edges = np.linspace(0, S, grid + 1).astype(int)
    regions = [mip]  # whole image, then the grid cells; each (V, C, h, w)
    regions += [mip[:, :, edges[i]:edges[i + 1], edges[k]:edges[k + 1]] for i in range(grid) for k in range(grid)]
    feats = []
    for r in regions:
        flat = r.reshape(V, C, -1)                                # (V, C, h*w)
        pct = np.percentile(flat, PERCENTILES, axis=-1)          # (3, V, C)
        feats += [flat.max(-1), *pct, flat.mean(-1)]             # 5 x (V, C)
    return np.stack(feats, axis=-1).ravel().astype(np.float32)   # (V, C, R*5) -> flat


def readable(store_path: str | Path, uids) -> tuple[list[str], dict[str, str]]:
    """Split ``uids`` into those the store can serve (complete rows) and ``{uid: reason}`` for the rest."""
    from willis.projections import StoreError, open_store

    try:
        attrs = open_store(store_path).attrs.asdict()
    except StoreError as e:
        return [], {u: str(e) for u in uids}
    row = {u: i for i, u in enumerate(attrs["series_uids"])}
    ok, failures = [], {}
    for u in uids:
        if u not in row:
            failures[u] = f"not in projection store {store_path}"
        elif not attrs["complete"][row[u]]:
            failures[u] = f"projection incomplete: {attrs.get('failed', {}).get(u, 'not written')}"
        else:
            ok.append(u)
    return ok, failures


def iter_mips(store_path: str | Path, uids, batch: int = READ_BATCH):
    """Yield ``(uid, mip (3, C, S, S) float32 in [0, 1] | None, reason | None)`` for each uid, in order.

    Reads ``batch`` series at a time through ``willis.projections.load_family`` (one store open,
    threaded decode) so that only a batch is in memory. A series missing from the store or left
    incomplete by ``project`` yields ``None`` and the reason.
    """
    from willis.projections import load_family

    uids = list(uids)
    ok, failures = readable(store_path, uids)
    ok = set(ok)
    for start in range(0, len(uids), batch):
        chunk = uids[start:start + batch]
        good = [u for u in chunk if u in ok]
        mips = dict(zip(good, load_family(store_path, good, threads=2).mip)) if good else {}
        for u in chunk:  # uint8 (3, C, S, S) -> float32 [0, 1]
            yield (u, mips[u].astype(np.float32) / 255.0, None) if u in mips else (u, None, failures[u])


def series_features(store_path: str | Path, uids, grid: int, desc: str):
    """Features of each uid, streamed a batch at a time from the family's projection store.

    Returns ``(X (n_ok, F), ok_uids, failures {uid: reason})``: a series whose projection cannot
    be read is reported in ``failures``, never silently dropped and never fatal to the run.
    """
    uids = list(uids)
    rows, ok, failures = [], [], {}
    for uid, mip, why in tqdm(iter_mips(store_path, uids), total=len(uids), desc=desc,
                              unit="series", leave=False):
        if mip is None:
            failures[uid] = why
            log.warning("baseline %s: %s", uid, why)
            continue
        rows.append(projection_features(mip, grid))
        ok.append(uid)
    X = np.stack(rows) if rows else np.zeros((0, 0), np.float32)
    return X, ok, failures


class Baseline:
    """One logistic regression per label; ``predict_proba`` -> (N, 14)."""

    def __init__(self, c: float = 1.0):
        self.c = c
        self.models: list = []
        self.flags: dict[str, str] = {}

    def fit(self, X: np.ndarray, Y: np.ndarray) -> "Baseline":
        """X (N, F) features, Y (N, 14) 0/1 truth of the train split."""
        self.models = []
        for j, name in enumerate(LABELS):
            y = Y[:, j]
            if y.min() == y.max():
                self.models.append(float(y.mean()) if len(y) else 0.0)
                self.flags[name] = f"single class in train ({int(y.sum())}/{len(y)} positive): constant"
                continue
            m = make_pipeline(StandardScaler(), LogisticRegression(
                C=self.c, class_weight="balanced", max_iter=MAX_ITER))
            self.models.append(m.fit(X, y))
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        out = np.empty((len(X), len(LABELS)))
        for j, m in enumerate(self.models):
            out[:, j] = m if isinstance(m, float) else m.predict_proba(X)[:, 1]
        return out
