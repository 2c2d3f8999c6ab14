"""End to end: the evaluate stage on a tiny stub store, stub logits and fitted calibrations."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from willis.calibration import Calibration, fit_calibration
from willis.evaluate.baseline import Baseline, projection_features
from willis.evaluate.run import run_evaluate
from willis.labels import LABELS, MODALITY_FAMILY, PRESENT, PRESENT_INDEX, label_slug, modality_vocab
from willis.metrics import competition_score
from willis.models.logits import LOGIT_PREFIX
from willis.params import build
from willis.params.root import Params
from willis.projections import Projection, create_store, finalize_store, write_projection

ROOT = Path(__file__).resolve().parents[2]
C, S, K = 2, 16, 2  # channels, MIP size, instances of the stub store
EMPTY_LOC = 12      # "Other Posterior Circulation": no positive anywhere -> undefined AUC


def _truth(rng, n):
    Y = np.zeros((n, 14), int)
    Y[:, PRESENT_INDEX] = rng.random(n) < 0.5
    Y[: 2, PRESENT_INDEX] = (1, 0)  # both classes for sure
    for i in np.flatnonzero(Y[:, PRESENT_INDEX]):
        Y[i, rng.integers(0, EMPTY_LOC)] = 1
    return Y


def _logits(uid: str, y: np.ndarray) -> np.ndarray:
    """Deterministic stub model: informative, noisy logits seeded by the uid."""
    r = np.random.default_rng(int(uid.split(".")[-1]))
    return 2.0 * (2 * y - 1) + r.normal(0, 1.5, 14)


def stub_logits_for(model_dir, store_path, uids, modalities=None):
    """Same contract as ``willis.models.infer.logits_for`` (logits table without truth)."""
    truth = STATE["truth"]
    Z = np.stack([_logits(u, truth[u]) for u in uids]) if uids else np.zeros((0, 14))
    df = pd.DataFrame({"SeriesInstanceUID": list(uids), "Modality": [modalities[u] for u in uids]})
    for j, n in enumerate(LABELS):
        df[LOGIT_PREFIX + n] = Z[:, j].astype(np.float32)
    return df


STATE: dict = {}


@pytest.fixture
def workspace(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    uid_n = 0
    for modality, n in (("CTA", 24), ("MRA", 16), ("MRI T2", 8)):
        Y = _truth(rng, n)
        for i in range(n):
            uid_n += 1
            split = "train" if i < n // 2 else "test"
            rows.append({"SeriesInstanceUID": f"1.2.826.{uid_n}", "Modality": modality,
                         "family": MODALITY_FAMILY[modality], "split": split, "smoke": i % 2 == 0,
                         **dict(zip(LABELS, Y[i]))})
    series = pd.DataFrame(rows)
    (tmp_path / "data/index").mkdir(parents=True)
    series.to_parquet(tmp_path / "data/index/series.parquet")
    STATE["truth"] = {r["SeriesInstanceUID"]: np.array([r[n] for n in LABELS]) for r in rows}
    test = series[series.split == "test"]
    excluded = test.SeriesInstanceUID.iloc[0]          # decode_check excluded it
    unprojected = test.SeriesInstanceUID.iloc[-1]      # indexed but never projected
    decode = {"series": {u: {"status": "ok", "reasons": []} for u in series.SeriesInstanceUID},
              "totals": {}}
    decode["series"][excluded] = {"status": "excluded", "reasons": ["all slices at one position"]}
    decode["series"][test.SeriesInstanceUID.iloc[1]]["status"] = "partial"
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports/decode_check.json").write_text(json.dumps(decode))
    for fam in ("ct", "mr"):
        sub = series[(series.family == fam) & (series.SeriesInstanceUID != unprojected)]
        path = tmp_path / f"data/projections/{fam}.zarr"
        g = create_store(path, fam, list(sub.SeriesInstanceUID), ["a", "b"], S, K, {})
        done = {}
        for row, r in enumerate(sub.itertuples()):
            mip = rng.integers(0, 120, (3, C, S, S)).astype(np.uint8)
            if STATE["truth"][r.SeriesInstanceUID][PRESENT_INDEX]:
                mip[0, 0, 2:6, 2:6] = 250  # a bright blob: something for the baseline to find
            write_projection(g, row, Projection(r.SeriesInstanceUID, mip, np.zeros((K, C, S, S), np.uint8),
                                                np.array([10.0, 0.0], np.float32), {}))
            done[r.SeriesInstanceUID] = ([10.0, 0.0], {"modality": r.Modality})
        finalize_store(path, done, {})
        # calibration fitted on a synthetic "validation" set of the same stub model
        Yv = _truth(rng, 80)
        Zv = np.stack([_logits(f"9.{i}", Yv[i]) for i in range(80)])
        fit_calibration(Yv, Zv, fam, 0.8, True, (0.0, 1.0)).save(tmp_path / f"models/{fam}/calibration.json")
    return tmp_path, series, excluded, unprojected


def _params(smoke=False, bootstrap=40, worst_k=3):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["smoke"] = smoke
    data["evaluate"]["bootstrap"] = bootstrap
    data["evaluate"]["worst_k"] = worst_k
    return build(Params, data)


def _evaluate(p, tmp, **kw):
    """The stage's call (stages/evaluate.py), with the paths of its dvc.yaml cmd under ``tmp``."""
    return run_evaluate(p.evaluate, families=p.families, index=tmp / "data/index",
                        decode_report=tmp / "reports/decode_check.json", models=tmp / "models",
                        projections=tmp / "data/projections", metrics_out=tmp / "reports/metrics.json",
                        summary_out=tmp / "reports/summary.md", live_dir=tmp / "reports/evaluate",
                        calibrate_reports=tmp / "reports/calibrate", seed=p.seed, smoke=p.smoke, **kw)


def _run(tmp, smoke=False, **kw):
    return _evaluate(_params(smoke, **kw), tmp, logits_fn=stub_logits_for)


def test_evaluate_end_to_end(workspace):
    tmp, series, excluded, unprojected = workspace
    m = _run(tmp)
    on_disk = json.loads((tmp / "reports/metrics.json").read_text())
    assert list(on_disk)[:3] == ["score", "auc_present", "auc_locations_mean"]
    # reference: the same series through the stub model and calibration, scored directly
    test = series[(series.split == "test") & ~series.SeriesInstanceUID.isin([excluded, unprojected])]
    Y = test[list(LABELS)].to_numpy()
    P = []
    for r in test.itertuples():
        cal = Calibration.load(tmp / f"models/{r.family}/calibration.json")
        P.append(cal.apply(_logits(r.SeriesInstanceUID, Y[len(P)])[None])[0])
    ref = competition_score(Y, np.array(P))
    assert m["n_series"] == len(test)
    assert m["score"] == pytest.approx(ref["score"]) and m["auc_present"] == pytest.approx(ref["auc_present"])
    assert m["n_locations_used"] == ref["n_locations_used"] <= 12
    # undefined label: null + note, no ROC file, confusion matrix still there
    empty = m["labels"][LABELS[EMPTY_LOC]]
    assert empty["roc_auc"] is None and "undefined" in empty["note"]
    sk = tmp / "reports/evaluate/plots/sklearn"
    assert not (sk / f"roc/{label_slug(LABELS[EMPTY_LOC])}.json").exists()
    assert (sk / f"cm/{label_slug(LABELS[EMPTY_LOC])}.json").exists()
    assert (sk / f"roc/{label_slug(PRESENT)}.json").exists() and (sk / f"pr/{label_slug(PRESENT)}.json").exists()
    assert set(m["families"]) == {"ct", "mr"} and set(m["modalities"]) == {"CTA", "MRA", "MRI T2"}
    assert m["ci95"]["low"] <= m["score"] <= m["ci95"]["high"]
    assert m["baseline"]["score"] is not None and m["baseline"]["n_series"] == len(test)
    assert m["counts"] == {"test_evaluated": len(test), "test_excluded": 1, "test_failed": 1,
                           "train_for_baseline": int((series.split == "train").sum())}
    summary = (tmp / "reports/summary.md").read_text()
    assert excluded in summary and "all slices at one position" in summary
    assert unprojected in summary and "not in projection store" in summary
    assert "partial" in summary and "test split is small" in summary
    thumbs = sorted((tmp / "reports/evaluate/worst").glob("*.png"))
    assert len(thumbs) == 3 and "](evaluate/worst/01.png)" in summary


def test_smoke_uses_only_smoke_series(workspace):
    tmp, series, excluded, unprojected = workspace
    m = _run(tmp, smoke=True, bootstrap=0, worst_k=0)  # no interval, no thumbnails: still a report
    assert m["ci95"]["low"] is None and not any((tmp / "reports/evaluate/worst").iterdir())
    assert "(SMOKE subset)" in (tmp / "reports/summary.md").read_text()
    test = series[(series.split == "test") & series.smoke
                  & ~series.SeriesInstanceUID.isin([excluded, unprojected])]
    assert m["n_series"] == len(test) < int((series.split == "test").sum()) - 2


def test_baseline_features_and_constant_label():
    rng = np.random.default_rng(1)
    mip = rng.random((3, C, S, S)).astype(np.float32)
    f = projection_features(mip, grid=2)
    assert f.shape == (3 * C * 5 * 5,)
    # first statistic of the whole image, view 0 channel 0, is its maximum
    assert f[0] == pytest.approx(mip[0, 0].max())
    assert f[4] == pytest.approx(mip[0, 0].mean())
    X = rng.random((30, 4))
    Y = np.zeros((30, 14), int)
    Y[:, PRESENT_INDEX] = X[:, 0] > 0.5
    b = Baseline().fit(X, Y)
    P = b.predict_proba(X)
    assert LABELS[0] in b.flags and np.all(P[:, 0] == 0.0)   # no positive in train: constant
    assert competition_score(Y, P)["auc_present"] > 0.9


def test_evaluate_with_real_checkpoint_and_logits_for(tmp_path):
    """The real wiring: train's checkpoint format and ``logits_for``, calibrate's stage function."""
    torch = pytest.importorskip("torch")
    from train_fixtures import build_family

    from willis.calibration import run_calibrate
    from willis.models.checkpoint import arch_from_params, build_model, save_model
    from willis.models.infer import logits_for
    from willis.models.logits import LOGIT_COLUMNS, logits_frame, write_logits
    from willis.params.train import TrainParams

    tp = TrainParams(model="mil", input_size=64)  # the architecture this test was written for
    p = _params()

    tables = []
    for fam in ("ct", "mr"):
        fx = build_family(tmp_path / "data", fam, n=16, size=32, k=4, seed=1)
        t = fx["table"].copy()
        t.loc[4:9, "split"] = "test"  # rows 4-7 alternate negative/positive in the fixture
        tables.append(t)
        torch.manual_seed(0)
        vocab = modality_vocab(fam)
        model = build_model(arch_from_params(tp, in_channels=2, n_modalities=len(vocab)))
        save_model(tmp_path / f"models/{fam}", model, {
            "family": fam, "arch": arch_from_params(tp, 2, len(vocab)), "labels": list(LABELS),
            "modalities": vocab, "channels": ["c0", "c1"], "size": 32, "instances": 4, "params": {},
            "data_hash": "test", "prior": {n: 0.1 for n in LABELS}})
        val = t[t.split == "val"]
        df = logits_for(tmp_path / f"models/{fam}", fx["store"], list(val.SeriesInstanceUID),
                        modalities=dict(zip(val.SeriesInstanceUID, val.Modality)), device="cpu")
        df = logits_frame(df["SeriesInstanceUID"], df["Modality"], df[LOGIT_COLUMNS].to_numpy(),
                          val[list(LABELS)].to_numpy())
        write_logits(df, tmp_path / f"models/{fam}/val_logits.parquet")
        run_calibrate(dataclasses.replace(p.calibrate, alphas=(0.0, 1.0)), family=fam,
                      val_logits=tmp_path / f"models/{fam}/val_logits.parquet",
                      out=tmp_path / f"models/{fam}/calibration.json", report=tmp_path / f"reports/calibrate/{fam}.json",
                      plot=tmp_path / f"reports/calibrate/{fam}.png")
    series = pd.concat(tables, ignore_index=True)
    series.to_parquet(tmp_path / "data/index/series.parquet")
    (tmp_path / "reports/decode_check.json").write_text(json.dumps(
        {"series": {u: {"status": "ok", "reasons": []} for u in series.SeriesInstanceUID}}))
    m = _evaluate(p, tmp_path)
    assert m["n_series"] == 12 and m["counts"]["test_failed"] == 0
    assert m["auc_present"] is not None and set(m["families"]) == {"ct", "mr"}
