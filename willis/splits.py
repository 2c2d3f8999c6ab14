"""Reproducible train / val / test splits and the stratified ``smoke`` subset.

Strata are ``Modality x Aneurysm Present`` (e.g. ``"CTA|1"``). Splits are grouped by patient: all
series of one PatientID land in one split (no patient leaks between train and test). Assignment is
a greedy, seeded balancing: patients are visited largest first (ties in seeded random order) and
each goes to the split whose per-stratum quota is furthest from full for that patient's series.
With many patients per stratum every stratum ends within a patient or two of its target fraction.

``assign_folds`` cuts the rows it is given into ``k`` cross-validation folds by the same grouped,
stratified balancing (``folds`` in params.yaml; ``willis.train.data`` folds one family's train + val
series, the test split stays out of it).

The smoke subset takes, inside each split, ``n`` series spread over the strata in proportion to
their sizes (largest remainder), at least one per stratum when ``n`` allows: class balance and
every modality stay represented.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from willis.labels import PRESENT

SPLITS = ("train", "val", "test")


def strata(series: pd.DataFrame) -> pd.Series:
    """``"<Modality>|<Aneurysm Present>"`` per series."""
    return series["Modality"].astype(str) + "|" + series[PRESENT].astype(int).astype(str)


def assign_splits(series: pd.DataFrame, eligible: pd.Series, val_fraction: float, test_fraction: float,
                  seed: int) -> pd.Series:
    """Split per row of ``series`` (index-aligned): train / val / test for eligible rows, '' otherwise.

    ``series`` needs PatientID, Modality and ``Aneurysm Present``. A patient with an empty
    PatientID is treated as its own group per series (nothing to group by).
    """
    fractions = {"train": 1.0 - val_fraction - test_fraction, "val": val_fraction, "test": test_fraction}
    out = pd.Series("", index=series.index, dtype=object)
    df = series[eligible.astype(bool)]
    if not df.empty:
        out.loc[df.index] = _balanced_groups(df, fractions, seed)
    return out


def assign_folds(series: pd.DataFrame, k: int, seed: int) -> pd.Series:
    """Cross-validation fold (int 0..k-1) per row of ``series`` (index-aligned), every row assigned.

    The same grouped, stratified balancing as ``assign_splits`` with ``k`` equal shares: all series
    of one patient land in one fold, each ``Modality x Present`` stratum is spread evenly. The
    caller passes the rows to fold (``willis.train.data``: one family's train + val series).
    """
    if k < 1:
        raise ValueError(f"folds: need at least one fold, got {k}")
    out = pd.Series(0, index=series.index, dtype=np.int64)
    if k > 1 and not series.empty:
        out.loc[series.index] = _balanced_groups(series, {f: 1.0 / k for f in range(k)}, seed).astype(np.int64)
    return out


def _balanced_groups(df: pd.DataFrame, fractions: dict, seed: int) -> pd.Series:
    """Greedy patient-grouped, stratified assignment of the rows of ``df`` to the keys of
    ``fractions`` (key -> target share; ties go to the earlier key)."""
    names_out = list(fractions)
    out = pd.Series(None, index=df.index, dtype=object)
    stratum = strata(df)
    group = df["PatientID"].astype(str).where(df["PatientID"].astype(str) != "", "series:" + df["SeriesInstanceUID"])
    totals = stratum.value_counts()
    target = {s: {k: fractions[s] * n for k, n in totals.items()} for s in names_out}
    filled = {s: dict.fromkeys(totals.index, 0) for s in names_out}
    members = {g: list(idx) for g, idx in df.groupby(group, sort=True).groups.items()}
    rng = np.random.default_rng(seed)
    names = sorted(members)
    names = [names[i] for i in rng.permutation(len(names))]          # seeded tie order
    names.sort(key=lambda g: -len(members[g]))                         # largest groups first (stable)
    for g in names:
        counts = stratum.loc[members[g]].value_counts()
        # deficit of each share for this patient's strata; tie -> the share with the larger overall deficit
        def score(s) -> tuple[float, float]:
            own = sum(n * (target[s][k] - filled[s][k]) / max(target[s][k], 1e-9) for k, n in counts.items())
            overall = sum(target[s].values()) - sum(filled[s].values())
            return own, overall
        best = max(names_out, key=score)
        for k, n in counts.items():
            filled[best][k] += n
        out.loc[members[g]] = best
    return out


def smoke_subset(series: pd.DataFrame, sizes: dict[str, int], seed: int) -> pd.Series:
    """Boolean per row: the stratified smoke subset, ``sizes[split]`` series of each split (or all if fewer)."""
    out = pd.Series(False, index=series.index)
    rng = np.random.default_rng(seed)
    for split in SPLITS:
        df = series[series["split"] == split]
        n = min(int(sizes.get(split, 0)), len(df))
        if n <= 0:
            continue
        stratum = strata(df)
        counts = stratum.value_counts().sort_index()
        quota = _largest_remainder(counts, n)
        for k, q in quota.items():
            idx = np.sort(stratum.index[stratum == k].to_numpy())  # fixed order, then seeded pick
            out.loc[idx[rng.permutation(len(idx))[:q]]] = True
    return out


def _largest_remainder(counts: pd.Series, n: int) -> dict[str, int]:
    """Integer quotas summing to ``n``, proportional to ``counts``, >= 1 per stratum when n allows."""
    share = counts / counts.sum() * n
    quota = np.floor(share).astype(int)
    if n >= len(counts):
        quota = quota.clip(lower=1)
    while quota.sum() > n:       # the floor of 1 overshot: take from the largest quota
        quota[quota.idxmax()] -= 1
    remainder = (share - quota).sort_values(ascending=False, kind="stable")
    for k in remainder.index[: n - quota.sum()]:
        quota[k] += 1
    return {k: int(min(q, counts[k])) for k, q in quota.items()}
