"""Cross-validation folds: the fold ensemble is the mean of the fold models' raw logits, before calibration.

Checked against the members themselves (each loaded and run on its own): ``predict`` on a real DICOM
series, ``ensemble_logits_for`` on a projection store (what ``evaluate`` scores), and the
``FoldEnsemble`` module. Plus which folders form the ensemble (a stale fold of an earlier K is never
picked up), the out-of-fold table, and the fold split of the training data.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

import willis.predict as P
from predict.test_predict import PRIORS, PROJECT, UID, data  # noqa: F401  (data: the DICOM phantoms fixture)
from train_fixtures import build_family
from willis.calibration import Calibration
from willis.labels import LABELS, modality_vocab
from willis.models.checkpoint import arch_from_params, build_model, load_model, save_model
from willis.models.ensemble import FoldEnsemble, ensemble_logits_for, member_dirs, member_oof_logits
from willis.models.folds import fold_dir, oof_logits
from willis.models.infer import infer_arrays, logits_for
from willis.models.logits import LOGIT_COLUMNS, logits_frame, write_logits
from willis.params.train import TrainParams
from willis.projections.windows import channel_names
from willis.train.data import with_fold_split

K = 3
TP = TrainParams(model="mip_cnn", input_size=32, width=4, embed_dim=8, modality_dim=2, dropout=0.0)


def _save_folds(family_dir, family, channels, size, instances, k=K, seed=0, project=None):
    """K untrained fold models (different weights) written by the real checkpoint writer."""
    arch = arch_from_params(TP, len(channels), len(modality_vocab(family)))
    for f in range(k):
        torch.manual_seed(seed + 10 * f)
        meta = {"family": family, "arch": arch, "labels": list(LABELS), "modalities": modality_vocab(family),
                "channels": channels, "size": size, "instances": instances, "params": dataclasses.asdict(TP),
                "data_hash": f"fold{f}", "prior": dict(zip(LABELS, map(float, PRIORS[family]))),
                "fold": f, "folds": k, **({"project": project} if project else {})}
        save_model(fold_dir(family_dir, f), build_model(arch), meta)


@pytest.fixture(scope="module")
def ensemble_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("ensemble") / "models"
    for i, fam in enumerate(("ct", "mr")):
        _save_folds(out / fam, fam, channel_names(fam, PROJECT.vesselness), PROJECT.size, PROJECT.instances,
                    seed=i, project=dataclasses.asdict(PROJECT))
        Calibration(family=fam, temperature=np.full(len(LABELS), 0.7), threshold=np.full(len(LABELS), 0.5),
                    alpha=1.0, gate=True).save(out / fam / "calibration.json")
    return out


@pytest.mark.parametrize("key, family, modality", [("ct", "ct", "CTA"), ("mr", "mr", "MRI T2")])
def test_predict_calibrates_the_mean_of_the_fold_models_logits(data, ensemble_bundle, key, family,  # noqa: F811
                                                               modality):
    df = P.predict(str(data / "series" / UID[key]), models_dir=ensemble_bundle, device="cpu")
    assert df.attrs["status"] == "ok"
    prep = P.prepare(data / "series" / UID[key], lambda f: PROJECT)
    per_fold = []
    for d in member_dirs(ensemble_bundle / family):
        model, meta = load_model(d, "cpu")
        per_fold.append(infer_arrays(model, meta, prep.projection.mip, prep.projection.instances, modality))
    per_fold = np.stack(per_fold)                                     # (K, 14)
    assert np.ptp(per_fold, axis=0).max() > 1e-3                      # the folds really differ
    cal = Calibration.load(ensemble_bundle / family / "calibration.json")
    expected = cal.apply(per_fold.mean(axis=0)[None])[0]
    np.testing.assert_allclose(df.to_numpy()[0], expected, rtol=1e-5, atol=1e-7)
    # ... and not the calibrated mean of probabilities, nor one fold alone
    assert not np.allclose(df.to_numpy()[0], cal.apply(per_fold[:1])[0], rtol=1e-4)


def test_evaluate_logits_are_the_mean_of_the_fold_models_logits(tmp_path):
    fx = build_family(tmp_path / "data", "mr", n=10, size=32, k=4, seed=3)
    _save_folds(tmp_path / "models/mr", "mr", ["c0", "c1"], 32, 4, seed=5)
    uids = fx["table"].SeriesInstanceUID.tolist()
    mods = dict(zip(fx["table"].SeriesInstanceUID, fx["table"].Modality))
    got = ensemble_logits_for(tmp_path / "models/mr", fx["store"], uids, modalities=mods, device="cpu")
    members = [logits_for(d, fx["store"], uids, modalities=mods, device="cpu")[LOGIT_COLUMNS].to_numpy(np.float64)
               for d in member_dirs(tmp_path / "models/mr")]
    assert got["SeriesInstanceUID"].tolist() == uids
    np.testing.assert_array_equal(got[LOGIT_COLUMNS].to_numpy(), np.mean(members, axis=0).astype(np.float32))


def test_fold_ensemble_module_averages_logits():
    arch = arch_from_params(TP, 2, 1)
    members = []
    for f in range(K):
        torch.manual_seed(f)
        members.append(build_model(arch).eval())
    x_mip, x_inst, ids = torch.rand(2, 3, 2, 32, 32), torch.rand(2, 4, 2, 32, 32), torch.zeros(2, dtype=torch.long)
    with torch.no_grad():
        out = FoldEnsemble(members)(x_mip, x_inst, ids)
        ref = torch.stack([m(x_mip, x_inst, ids)["logits"] for m in members]).mean(0)
    torch.testing.assert_close(out["logits"], ref, rtol=0, atol=1e-6)


def test_members_ignore_a_stale_fold_and_reject_a_mixed_ensemble(tmp_path):
    fam = tmp_path / "ct"
    _save_folds(fam, "ct", ["c0"], 16, 2, k=5)          # an earlier 5-fold run
    _save_folds(fam, "ct", ["c0"], 16, 2, k=2)          # then 2 folds: folds/2..4 are stale
    assert member_dirs(fam) == [fold_dir(fam, 0), fold_dir(fam, 1)]
    _save_folds(fam, "ct", ["c0"], 16, 2, k=1)          # fold 0 retrained alone, fold 1 still from K=2
    assert member_dirs(fam) == [fold_dir(fam, 0)]
    meta_path = fold_dir(fam, 0) / "meta.json"
    meta_path.write_text(meta_path.read_text().replace('"folds": 1', '"folds": 3'))
    with pytest.raises(ValueError, match="fold 1 of 2, but folds/0 is one of 3 folds"):
        member_dirs(fam)


def _val_table(uids, seed):
    rng = np.random.default_rng(seed)
    y = (rng.random((len(uids), len(LABELS))) < 0.3).astype(int)
    return logits_frame(uids, ["CTA"] * len(uids), rng.normal(size=(len(uids), len(LABELS))), y)


def test_oof_logits_concatenate_the_folds_and_reject_overlap(tmp_path):
    for f, uids in enumerate((["a", "b"], ["c"], ["d", "e"])):
        fold_dir(tmp_path, f).mkdir(parents=True)
        write_logits(_val_table(uids, f), fold_dir(tmp_path, f) / "val_logits.parquet")
    df = oof_logits(tmp_path, (0, 1, 2))
    assert df["SeriesInstanceUID"].tolist() == list("abcde")
    pd.testing.assert_frame_equal(df.iloc[2:3].reset_index(drop=True), _val_table(["c"], 1))
    write_logits(_val_table(["c", "f"], 7), fold_dir(tmp_path, 2) / "val_logits.parquet")
    with pytest.raises(ValueError, match="series c is in the validation logits of"):
        oof_logits(tmp_path, (0, 1, 2))
    with pytest.raises(FileNotFoundError, match="folds/3/val_logits.parquet"):
        oof_logits(tmp_path, (0, 3))


def test_member_oof_logits_of_a_real_ensemble(tmp_path):
    _save_folds(tmp_path / "ct", "ct", ["c0"], 16, 2, k=2)
    for f, uids in enumerate((["a"], ["b", "c"])):
        write_logits(_val_table(uids, f), fold_dir(tmp_path / "ct", f) / "val_logits.parquet")
    assert member_oof_logits(tmp_path / "ct")["SeriesInstanceUID"].tolist() == ["a", "b", "c"]


def test_fold_split_partitions_train_and_val_by_patient():
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"SeriesInstanceUID": [f"s{i}" for i in range(120)],
                         "PatientID": [f"p{i // 2}" for i in range(120)],       # two series per patient
                         "Modality": rng.choice(["MRA", "MRI T2"], 120),
                         "Aneurysm Present": rng.integers(0, 2, 120),
                         "split": rng.choice(["train", "val"], 120)})
    assert with_fold_split(rows, 0, 1, seed=1) is rows                          # one fold: the index split
    val = [set(with_fold_split(rows, f, 5, seed=1).query("split == 'val'").SeriesInstanceUID) for f in range(5)]
    assert sum(map(len, val)) == 120 and set().union(*val) == set(rows.SeriesInstanceUID)  # each series once
    assert all(20 <= len(v) <= 28 for v in val)
    for v in val:                                                                # no patient in two folds
        patients = set(rows[rows.SeriesInstanceUID.isin(v)].PatientID)
        assert set(rows[rows.PatientID.isin(patients)].SeriesInstanceUID) == v
    assert val == [set(with_fold_split(rows, f, 5, seed=1).query("split == 'val'").SeriesInstanceUID)
                   for f in range(5)]                                            # reproducible
    with pytest.raises(ValueError, match="fold 5 outside 0..4"):
        with_fold_split(rows, 5, 5, seed=1)
