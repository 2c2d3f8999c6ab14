"""Temperature scaling, Present-gating, thresholds and calibration.json, on synthetic logits."""

import dataclasses
import json

import numpy as np
import pytest
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from willis.calibration import (
    BIAS_BOUNDS, Calibration, best_f1_threshold, fit_calibration, fit_temperature, fit_temperature_bias, gate,
    precision_threshold, run_calibrate, validate_calibration,
)
from willis.labels import LABELS, PRESENT, PRESENT_INDEX
from willis.metrics import nll
from willis.models.logits import LOGIT_PREFIX, logits_frame, write_logits
from willis.params.calibrate import CalibrateParams


def _synthetic(n, t_true, seed=0):
    """Labels ~ Bernoulli(sigmoid(z)), logits = t_true * z: the right temperature is t_true."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, size=(n, 14))
    Y = (rng.random((n, 14)) < expit(z)).astype(int)
    return Y, t_true * z


def test_temperature_recovers_known_value():
    Y, Z = _synthetic(20000, 3.0)
    for j in (0, PRESENT_INDEX):
        assert fit_temperature(Z[:, j], Y[:, j]) == pytest.approx(3.0, rel=0.06)
    Y, Z = _synthetic(20000, 0.5, seed=1)  # under-confident logits: T < 1
    assert fit_temperature(Z[:, 0], Y[:, 0]) == pytest.approx(0.5, rel=0.06)


def test_temperature_keeps_ranking_and_lowers_nll():
    Y, Z = _synthetic(3000, 4.0, seed=2)
    y, z = Y[:, PRESENT_INDEX], Z[:, PRESENT_INDEX]
    T = fit_temperature(z, y)
    before, after = expit(z), expit(z / T)
    assert roc_auc_score(y, before) == roc_auc_score(y, after)  # exactly: a monotone map
    assert np.array_equal(np.argsort(z, kind="stable"), np.argsort(z / T, kind="stable"))
    assert nll(y, after) < nll(y, before) - 0.05


def test_precision_threshold_is_the_smallest_reaching_target():
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    y = np.array([0, 1, 0, 1, 0, 1, 1, 1])
    # precision of p >= t: 0.1: 5/8, 0.2: 5/7, 0.3: 4/6, 0.4: 4/5, 0.5: 3/4, 0.6: 3/3, ...
    assert precision_threshold(y, p, 0.8) == (0.4, True)
    assert precision_threshold(y, p, 0.7) == (0.2, True)   # 0.2 reaches 5/7 although 0.3 does not
    assert precision_threshold(y, p, 0.9) == (0.6, True)
    y_top_neg = np.array([0, 1, 0, 1, 0, 1, 1, 0])
    # precision: 0.1: 4/8, 0.2: 4/7, 0.3: 3/6, 0.4: 3/5, 0.5: 2/4, 0.6: 2/3, 0.7: 1/2, 0.8: 0/1
    t, reached = precision_threshold(y_top_neg, p, 0.95)
    assert not reached and t == 0.6  # unreachable: the most precise threshold, flagged by caller


def test_best_f1_threshold_hand_computed():
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    y = np.array([0, 1, 0, 1, 0, 1, 1, 1])
    # F1 of p >= t: 0.1: .769, 0.2: .833, 0.3: .727, 0.4: .8, 0.5: .667, 0.6: .75
    assert best_f1_threshold(y, p) == 0.2


def test_gating_guarantees():
    rng = np.random.default_rng(3)
    P = rng.random((500, 14))
    for alpha in (1.0, 1.5, 3.0):  # p_present**alpha <= p_present, so location <= present
        G = gate(P, alpha)
        assert (G[:, :13] <= G[:, [PRESENT_INDEX]] + 1e-15).all()
    for alpha in (0.0, 0.25, 0.5, 1.0, 2.0):  # any alpha >= 0: never above the ungated value
        G = gate(P, alpha)
        assert (G[:, :13] <= P[:, :13]).all() and np.array_equal(G[:, PRESENT_INDEX], P[:, PRESENT_INDEX])
    assert np.array_equal(gate(P, 0.0), P)
    # alpha < 1 does NOT bound location by present: loc 1.0, present 0.25, alpha 0.5 -> 0.5 > 0.25
    x = np.zeros((1, 14)); x[0, 0] = 1.0; x[0, PRESENT_INDEX] = 0.25
    assert gate(x, 0.5)[0, 0] == pytest.approx(0.5)


def _val_set(n=400, seed=4):
    """Present well predicted, locations noisy: gating by Present should help location AUC."""
    rng = np.random.default_rng(seed)
    Y = np.zeros((n, 14), int)
    Y[:, PRESENT_INDEX] = rng.random(n) < 0.45
    for i in np.flatnonzero(Y[:, PRESENT_INDEX]):
        Y[i, rng.integers(0, 12)] = 1  # location 12 (Other Posterior Circulation) stays negative
    Z = 3 * (2 * Y - 1) + rng.normal(0, 2, (n, 14))
    Z[:, :13] = 1.0 * (2 * Y[:, :13] - 1) + rng.normal(0, 2, (n, 13))
    return Y, Z


def test_fit_calibration_flags_empty_labels_and_chooses_alpha():
    Y, Z = _val_set()
    cal = fit_calibration(Y, Z, "ct", 0.8, True, (0.0, 0.5, 1.0, 2.0))
    empty = LABELS[12]
    assert cal.temperature[12] == 1.0 and cal.bias[12] == 0.0 and cal.threshold[12] == 0.5 and empty in cal.flags
    table = cal.fit["alphas"]
    best = max(table, key=lambda a: table[a]["loc_auc_mean"])
    assert cal.alpha == float(best) and cal.alpha > 0  # gating helps here
    probs = cal.apply(Z)
    p_present = probs[:, PRESENT_INDEX]
    pred = p_present >= cal.threshold[PRESENT_INDEX]
    assert Y[pred, PRESENT_INDEX].mean() >= 0.8  # target precision met on validation
    off = fit_calibration(Y, Z, "ct", 0.8, False, (0.5, 1.0))
    assert off.alpha == 0.0 and not off.gate
    assert np.allclose(off.apply(Z), expit(Z / off.temperature + off.bias))


def test_json_round_trip_and_validation(tmp_path):
    Y, Z = _val_set()
    cal = fit_calibration(Y, Z, "mr", 0.8, True, (0.0, 1.0))
    path = tmp_path / "calibration.json"
    cal.save(path)
    back = Calibration.load(path)
    assert np.array_equal(back.apply(Z), cal.apply(Z)) and np.array_equal(back.threshold, cal.threshold)
    obj = json.loads(path.read_text())
    obj["temperature"][PRESENT] = -1.0
    with pytest.raises(ValueError, match=r"temperature\.Aneurysm Present: must be > 0"):
        validate_calibration(obj, "x.json")
    obj = json.loads(path.read_text())
    obj["labels"] = obj["labels"][::-1]
    with pytest.raises(ValueError, match="x.json: labels"):
        validate_calibration(obj, "x.json")
    with pytest.raises(ValueError, match=r"expected logits \(N, 14\)"):
        cal.apply(Z[:, :13])


def test_run_calibrate_writes_contracts(tmp_path):
    Y, Z = _val_set(120)
    df = logits_frame([f"1.{i}" for i in range(len(Y))], ["CTA"] * len(Y), Z, Y)
    write_logits(df, tmp_path / "val.parquet")
    p = CalibrateParams(target_precision=0.8, gate=True, alphas=(0.0, 1.0), ece_bins=10)
    run_calibrate(p, family="ct", val_logits=tmp_path / "val.parquet", out=tmp_path / "cal.json",
                  report=tmp_path / "rep.json", plot=tmp_path / "rel.png")
    validate_calibration(json.loads((tmp_path / "cal.json").read_text()))
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["labels"][PRESENT]["nll_temperature"] <= rep["labels"][PRESENT]["nll_before"] + 1e-12
    assert (tmp_path / "rel.png").read_bytes()[:4] == b"\x89PNG"
    df.loc[3, LOGIT_PREFIX + PRESENT] = np.nan
    df.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match=r"bad.parquet: 1 row\(s\) with non-finite logits, e.g. \['1.3'\]"):
        run_calibrate(dataclasses.replace(p, alphas=(0.0,)), family="ct", val_logits=tmp_path / "bad.parquet",
                      out=tmp_path / "c2.json", report=tmp_path / "r2.json", plot=tmp_path / "r2.png")


def test_bias_recovers_a_known_shift_and_keeps_the_ranking():
    """Logits lifted by +2 (as an asymmetric loss does): temperature alone cannot undo it, T + b can."""
    rng = np.random.default_rng(5)
    z = rng.normal(-1, 2, 20000)
    y = (rng.random(20000) < expit(z)).astype(int)
    lifted = 1.5 * (z + 2.0)                      # true map back: z = lifted / 1.5 - 2
    T, b = fit_temperature_bias(lifted, y)
    assert T == pytest.approx(1.5, rel=0.06) and b == pytest.approx(-2.0, abs=0.1)
    t_only = expit(lifted / fit_temperature(lifted, y))
    assert nll(y, expit(lifted / T + b)) < nll(y, t_only) - 0.01
    assert roc_auc_score(y, expit(lifted / T + b)) == roc_auc_score(y, lifted)


def test_bias_prior_keeps_a_rare_separable_label_off_the_bound():
    # 2 positives of 60, perfectly separated, logits lifted to 3 and 5: maximum likelihood runs the
    # bias to its bound (-10); the prior keeps it finite, still mapping negatives below 5 %
    z = np.r_[np.full(58, 3.0), np.full(2, 5.0)]
    y = np.r_[np.zeros(58, int), np.ones(2, int)]
    assert fit_temperature_bias(z, y, prior_sd=1e6)[1] == pytest.approx(BIAS_BOUNDS[0])
    T, b = fit_temperature_bias(z, y)
    assert BIAS_BOUNDS[0] + 1 < b < -2 and expit(3.0 / T + b) < 0.05 < expit(5.0 / T + b)


def test_schema_1_files_still_load_with_zero_bias(tmp_path):
    Y, Z = _synthetic(400, 2.0, seed=9)
    cal = fit_calibration(Y, Z, "ct", 0.8, True, (0.0, 1.0))
    obj = cal.to_json()
    assert obj["schema"] == "willis.calibration/2" and set(obj["bias"]) == set(LABELS)
    obj["schema"] = "willis.calibration/1"
    del obj["bias"]
    (tmp_path / "old.json").write_text(json.dumps(obj))
    old = Calibration.load(tmp_path / "old.json")
    assert (old.bias == 0).all()
    np.testing.assert_allclose(old.apply(Z), gate(expit(Z / cal.temperature), cal.alpha) if cal.gate
                               else expit(Z / cal.temperature))
