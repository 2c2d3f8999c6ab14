"""willis.splits: grouped by patient, stratified by Modality x Present, reproducible; smoke subset."""

import numpy as np
import pandas as pd
import pytest

from willis.labels import MODALITIES, PRESENT
from willis.splits import assign_splits, smoke_subset, strata


def _series(n_patients=400, seed=0) -> pd.DataFrame:
    """Patients with 1-3 series each; modality mix and positive rates like the real train.csv."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        for k in range(rng.choice([1, 2, 3], p=[0.7, 0.2, 0.1])):
            mod = rng.choice(MODALITIES, p=[0.42, 0.29, 0.22, 0.07])
            rows.append({"SeriesInstanceUID": f"1.{p}.{k}", "PatientID": f"P{p}", "Modality": mod,
                         PRESENT: int(rng.random() < {"CTA": 0.54, "MRA": 0.44}.get(mod, 0.25))})
    return pd.DataFrame(rows)


def test_splits_grouped_by_patient_and_stratified():
    s = _series()
    eligible = pd.Series(True, index=s.index)
    split = assign_splits(s, eligible, 0.2, 0.2, seed=7)
    assert set(split) == {"train", "val", "test"}
    assert (s.assign(split=split).groupby("PatientID")["split"].nunique() == 1).all()
    st = strata(s)
    for k, n in st.value_counts().items():
        frac = split[st == k].value_counts() / n
        for name, target in (("train", 0.6), ("val", 0.2), ("test", 0.2)):
            # within 3 series (groups are up to 3 series) of the target count
            assert abs(frac.get(name, 0) * n - target * n) <= 3.5, (k, name, frac.to_dict())


def test_splits_reproducible_and_seed_dependent():
    s = _series(200)
    eligible = pd.Series(True, index=s.index)
    a = assign_splits(s, eligible, 0.2, 0.2, seed=1)
    assert a.equals(assign_splits(s, eligible, 0.2, 0.2, seed=1))
    assert not a.equals(assign_splits(s, eligible, 0.2, 0.2, seed=2))
    # row order of the input does not matter
    shuffled = s.sample(frac=1.0, random_state=0)
    b = assign_splits(shuffled, eligible.loc[shuffled.index], 0.2, 0.2, seed=1)
    assert b.sort_index().equals(a)


def test_ineligible_rows_get_no_split():
    s = _series(50)
    eligible = pd.Series(True, index=s.index)
    eligible.iloc[:5] = False
    split = assign_splits(s, eligible, 0.2, 0.2, seed=0)
    assert (split.iloc[:5] == "").all() and (split.iloc[5:] != "").all()


@pytest.mark.parametrize("sizes", [{"train": 60, "val": 20, "test": 20}, {"train": 8, "val": 8, "test": 8}])
def test_smoke_subset_keeps_every_stratum_and_balance(sizes):
    s = _series()
    s["split"] = assign_splits(s, pd.Series(True, index=s.index), 0.2, 0.2, seed=0)
    smoke = smoke_subset(s, sizes, seed=0)
    st = strata(s)
    for split, n in sizes.items():
        in_split = s["split"] == split
        chosen = smoke & in_split
        assert chosen.sum() == n
        assert set(st[chosen]) == set(st[in_split])          # every modality x present stratum kept
        # proportions within 1 series + the floor-of-one adjustment
        full = st[in_split].value_counts(normalize=True)
        got = st[chosen].value_counts()
        for k, f in full.items():
            assert abs(got[k] - f * n) <= 1.5, (split, k, got[k], f * n)
    assert smoke.equals(smoke_subset(s, sizes, seed=0))


def test_smoke_subset_larger_than_split_takes_all():
    s = _series(20)
    s["split"] = assign_splits(s, pd.Series(True, index=s.index), 0.2, 0.2, seed=0)
    smoke = smoke_subset(s, {"train": 10_000, "val": 10_000, "test": 0}, seed=0)
    assert smoke[s["split"].isin(["train", "val"])].all() and not smoke[s["split"] == "test"].any()


def test_folds_grouped_by_patient_stratified_and_reproducible():
    from willis.splits import assign_folds

    s = _series(300)
    fold = assign_folds(s, 5, seed=3)
    assert sorted(fold.unique()) == [0, 1, 2, 3, 4]
    assert (s.assign(fold=fold).groupby("PatientID")["fold"].nunique() == 1).all()
    st = strata(s)
    for k, n in st.value_counts().items():
        counts = fold[st == k].value_counts().reindex(range(5), fill_value=0)
        assert counts.max() - counts.min() <= 3, (k, counts.to_dict())   # groups are up to 3 series
    assert fold.equals(assign_folds(s, 5, seed=3))
    assert not fold.equals(assign_folds(s, 5, seed=4))
    assert (assign_folds(s, 1, seed=3) == 0).all()
    with pytest.raises(ValueError, match="at least one fold"):
        assign_folds(s, 0, seed=3)
