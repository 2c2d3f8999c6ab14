"""Toy fine slabs for fine_cnn tests: random tubes, and in positives a sphere exactly as bright as
its parent tube (the realistic case a maximum projection shows only by its outline).

A (N, N, N) volume indexed (z, y, x) with ascending patient coordinates is cut into K slabs along
each axis and maximum-projected in the fine store's display conventions (willis.projections.finebox:
axial slabs superior -> inferior with rows y and columns x; coronal slabs along y with rows z
descending; sagittal slabs along x with rows z descending and columns y). The sac's location label
is Left MCA when it sits on the patient's left half (x > N/2), else Right MCA, so learning it needs
the coordinates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from willis.labels import LABELS, PRESENT_INDEX
from willis.train.data import FamilyData

L_MCA, R_MCA = LABELS.index("Left Middle Cerebral Artery"), LABELS.index("Right Middle Cerebral Artery")


def _segment_distance(x, y, z, a, b):
    ab = b - a
    t = np.clip(((x - a[0]) * ab[0] + (y - a[1]) * ab[1] + (z - a[2]) * ab[2]) / (ab @ ab), 0, 1)
    return np.sqrt((x - a[0] - t * ab[0]) ** 2 + (y - a[1] - t * ab[1]) ** 2 + (z - a[2] - t * ab[2]) ** 2)


def toy_volume(rng: np.random.Generator, positive: bool, n: int, tubes: int = 5):
    """(n, n, n) float32 in [0, 1] and the sac centre (x, y, z) voxel coordinates or None."""
    z, y, x = np.mgrid[0:n, 0:n, 0:n].astype(np.float32)
    v = np.zeros((n, n, n), np.float32)
    first = None
    for i in range(tubes):
        a, b, r = rng.uniform(0, n, 3), rng.uniform(0, n, 3), rng.uniform(1.2, 2.0)
        v = np.maximum(v, np.clip(r + 0.5 - _segment_distance(x, y, z, a, b), 0, 1))
        first = first or (a, b, r)
    centre = None
    if positive:
        a, b, r = first
        base = a + rng.uniform(0.3, 0.7) * (b - a)
        axis = (b - a) / np.linalg.norm(b - a)
        d = rng.normal(size=3)
        d -= d @ axis * axis
        d /= np.linalg.norm(d)
        rs = rng.uniform(2.5, 4.5)
        centre = np.clip(base + d * (r + 0.5 * rs), 6, n - 7)
        dist = np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2)
        v = np.maximum(v, np.clip(rs + 0.5 - dist, 0, 1))
    v = v * rng.uniform(0.6, 1.0) + rng.normal(0, 0.03, v.shape).astype(np.float32)
    return np.clip(v, 0, 1), centre


def toy_slabs(v: np.ndarray, k: int) -> np.ndarray:
    """(3, K, 2, n, n) uint8: the three views' slab maxima, channels (v, v**2)."""
    n = v.shape[0]
    t = n // k
    ax = np.stack([v[n - t * (i + 1): n - t * i].max(0) for i in range(k)])            # (K, y, x)
    co = np.stack([v[:, t * i: t * (i + 1)].max(1)[::-1] for i in range(k)])             # (K, z desc, x)
    sa = np.stack([v[:, :, t * i: t * (i + 1)].max(2)[::-1] for i in range(k)])          # (K, z desc, y)
    f = np.stack([ax, co, sa])[:, :, None]
    return (np.concatenate([f, f ** 2], 2) * 255).round().astype(np.uint8)


def toy_point(c, label: int, n: int, k: int) -> list[float]:
    """The fine points row (willis.projections.targets.fine_points) of a sac centre (x, y, z)."""
    x, y, z = c
    t = n / k
    return [label, (n - 0.5 - z) / t - 0.5, y, x, (y + 0.5) / t - 0.5, n - 1 - z, x, (x + 0.5) / t - 0.5, n - 1 - z, y]


def toy_family(n_series: int, seed: int, n: int = 48, k: int = 3, n_train: int | None = None) -> FamilyData:
    rng = np.random.default_rng(seed)
    fine, pts, y = [], [], []
    for _ in range(n_series):
        positive = rng.random() < 0.45
        v, c = toy_volume(rng, positive, n)
        fine.append(toy_slabs(v, k))
        lab = np.zeros(len(LABELS), np.float32)
        p = np.full((1, 10), -1, np.float32)
        if positive:
            label = L_MCA if c[0] > n / 2 else R_MCA
            lab[label] = lab[PRESENT_INDEX] = 1
            p[0] = toy_point(c, label, n, k)
        y.append(lab)
        pts.append(p)
    n_train = n_train or (2 * n_series) // 3
    split = np.array(["train"] * n_train + ["val"] * (n_series - n_train))
    y = np.stack(y)
    return FamilyData(
        family="ct", store_path=Path("<toy>"), uids=[f"toy.{i}" for i in range(n_series)], modality=["CTA"] * n_series,
        modality_id=np.zeros(n_series, np.int64), vocab=["CTA"], split=split, y=y,
        attn_target=np.zeros((n_series, 1), np.float32), attn_mask=np.zeros(n_series, bool),
        points=np.full((n_series, 1, 8), -1, np.float32), heat_mask=np.ones(n_series, bool),
        channels=["a", "b"], size=n, instances=k, skipped={}, data_hash="toy", store_params={},
        fine=np.stack(fine), fine_points=np.stack(pts), fine_known=np.ones(n_series, bool), fine_channels=["v", "v2"])
