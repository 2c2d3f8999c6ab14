"""Calibration of one family's model, fitted on validation logits only: ``calibration.json``.

Three steps, in this order, each per label (last axis in ``willis.labels.LABELS`` order):

1. **Temperature and bias**: ``p = sigmoid(z / T + b)`` with ``T > 0`` and ``b`` minimising the
   validation NLL plus a weak Gaussian prior on ``b`` (s.d. ``BIAS_PRIOR_SD`` logits: a label with
   two positives cannot drag it far). With ``calibrate.bias: false``, ``b = 0`` (temperature
   scaling alone: a bounded 1-D search over ``log T``). The bias matters because the default
   Asymmetric Loss down-weights negatives, which lifts every probability: measured on the
   synthetic default, validation Present probabilities never fell below ~0.45, which a
   temperature (a scaling around logit 0) cannot move. Either map is monotone: rankings and AUCs
   never change.
2. **Present-gating** (locations only): ``p_loc <- p_loc * p_present ** alpha``. ``alpha`` is chosen
   among ``calibrate.alphas`` by the highest mean location ROC-AUC on validation (labels with both
   classes); ties (within ``ALPHA_TIE``) go to the lower mean location NLL, then the smaller alpha.
   Gating guarantees ``gated <= ungated`` for any alpha >= 0, and ``location <= present`` only for
   alpha >= 1 (then ``p_present ** alpha <= p_present``); alpha = 0 is no gating.
3. **Thresholds** (positive iff ``p >= threshold``, on the final probabilities): Aneurysm Present
   at the smallest threshold whose validation precision reaches ``calibrate.target_precision``
   (if none does: the threshold of highest precision, flagged); each location at its best-F1
   threshold (ties: the smallest).

A label without both classes in validation keeps ``T = 1, b = 0`` and threshold 0.5 and is flagged.
Files of schema ``willis.calibration/1`` (no ``bias``) still load, with ``b = 0``.

``calibration.json`` (``SCHEMA``)::

    {"schema": "willis.calibration/2", "family": "ct", "labels": [14 names, LABELS order],
     "temperature": {label: T > 0}, "bias": {label: b}, "threshold": {label: t in [0, 1]},
     "gate": bool, "alpha": float >= 0,
     "flags": {label: [reason, ...]},          # only labels with something to say
     "fit": {"n_series": int, "positives": {label: int}, "target_precision": float,
             "criterion": str, "alphas": {str(alpha): {"loc_auc_mean", "loc_nll"}}}}
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize, minimize_scalar
from scipy.special import expit

from willis.labels import LABELS, LOCATIONS, PRESENT, PRESENT_INDEX
from willis.metrics import auc, ece, nll, nll_logits
from willis.models.logits import logit_arrays, read_logits
from willis.params.calibrate import CalibrateParams

SCHEMA = "willis.calibration/2"
READABLE_SCHEMAS = ("willis.calibration/1", SCHEMA)  # /1: before the bias term (b = 0)
LOG_T_BOUNDS = (math.log(0.05), math.log(20.0))  # T in [0.05, 20]: wider means a broken model
BIAS_BOUNDS = (-10.0, 10.0)             # logits; a bias at a bound is flagged
BIAS_PRIOR_SD = 2.0                     # Gaussian prior on the bias (logits): MAP, not ML, for rare labels
ALPHA_TIE = 1e-6                        # mean AUCs closer than this are a tie
DEFAULT_THRESHOLD = 0.5                 # labels without both classes in validation
N_LOC = len(LOCATIONS)

log = logging.getLogger(__name__)


def fit_temperature(z: np.ndarray, y: np.ndarray) -> float:
    """T > 0 minimising the NLL of ``sigmoid(z / T)`` against 0/1 ``y`` (both classes needed)."""
    res = minimize_scalar(lambda log_t: nll_logits(y, z / math.exp(log_t)),
                          bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-5})
    return float(math.exp(res.x))


def fit_temperature_bias(z: np.ndarray, y: np.ndarray, prior_sd: float = BIAS_PRIOR_SD) -> tuple[float, float]:
    """(T > 0, b) minimising the NLL of ``sigmoid(z / T + b)`` + ``b**2 / (2 prior_sd**2 n)``
    (a Gaussian prior on b, per series), from the temperature-only fit as the starting point."""
    n = max(len(y), 1)

    def objective(v):
        return nll_logits(y, z / math.exp(v[0]) + v[1]) + v[1] ** 2 / (2 * prior_sd ** 2 * n)

    start = np.array([math.log(fit_temperature(z, y)), 0.0])
    res = minimize(objective, start, method="L-BFGS-B", bounds=[LOG_T_BOUNDS, BIAS_BOUNDS])
    best = res.x if res.fun <= objective(start) else start  # never worse than temperature alone
    return float(math.exp(best[0])), float(best[1])


def gate(probs: np.ndarray, alpha: float) -> np.ndarray:
    """(N, 14) probabilities with each location multiplied by ``p_present ** alpha``."""
    out = np.array(probs, dtype=float, copy=True)
    out[:, :N_LOC] *= out[:, [PRESENT_INDEX]] ** alpha  # (N, 13) * (N, 1)
    return out


def pr_at_thresholds(y: np.ndarray, p: np.ndarray):
    """Every distinct score as a threshold, ascending, with the precision and recall of ``p >= t``."""
    y = np.asarray(y).astype(bool)
    t, inv = np.unique(np.asarray(p, dtype=float), return_inverse=True)   # (U,) ascending
    pos_at = np.bincount(inv, weights=y, minlength=t.size)                 # positives scoring exactly t
    all_at = np.bincount(inv, minlength=t.size).astype(float)
    tp = np.cumsum(pos_at[::-1])[::-1]          # positives with p >= t
    pp = np.cumsum(all_at[::-1])[::-1]          # predicted positives with p >= t (never 0)
    return t, tp / pp, tp / max(y.sum(), 1)


def precision_threshold(y: np.ndarray, p: np.ndarray, target: float) -> tuple[float, bool]:
    """Smallest threshold whose precision reaches ``target``; else (most precise threshold, False)."""
    t, precision, _ = pr_at_thresholds(y, p)
    ok = np.flatnonzero(precision >= target - 1e-12)
    if ok.size:
        return float(t[ok[0]]), True
    return float(t[np.argmax(precision)]), False


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """Threshold of highest F1 (ties: the smallest)."""
    t, precision, recall = pr_at_thresholds(y, p)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return float(t[np.argmax(f1)])


@dataclass(frozen=True)
class Calibration:
    """A fitted calibration; ``apply`` turns (N, 14) logits into final (N, 14) probabilities."""

    family: str
    temperature: np.ndarray   # (14,) > 0
    threshold: np.ndarray     # (14,) in [0, 1]
    alpha: float = 0.0
    gate: bool = False
    flags: dict = field(default_factory=dict)
    fit: dict = field(default_factory=dict)
    bias: np.ndarray = field(default_factory=lambda: np.zeros(len(LABELS)))  # (14,) logits

    def scaled(self, logits: np.ndarray) -> np.ndarray:
        """(N, 14) logits -> (N, 14) ``sigmoid(z / T + b)``, before gating."""
        return expit(np.asarray(logits, dtype=float) / self.temperature + self.bias)  # (N, 14) / (14,)

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """(N, 14) logits -> (N, 14) probabilities: temperature and bias, sigmoid, then Present-gating."""
        logits = np.asarray(logits, dtype=float)
        if logits.ndim != 2 or logits.shape[1] != len(LABELS):
            raise ValueError(f"calibration {self.family}: expected logits (N, {len(LABELS)}), got {logits.shape}")
        probs = self.scaled(logits)
        return gate(probs, self.alpha) if self.gate else probs

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """(N, 14) bool decisions: ``probs >= threshold`` per label."""
        return np.asarray(probs) >= self.threshold

    def to_json(self) -> dict:
        return {"schema": SCHEMA, "family": self.family, "labels": list(LABELS),
                "temperature": dict(zip(LABELS, map(float, self.temperature))),
                "bias": dict(zip(LABELS, map(float, self.bias))),
                "threshold": dict(zip(LABELS, map(float, self.threshold))),
                "gate": self.gate, "alpha": float(self.alpha), "flags": self.flags, "fit": self.fit}

    def save(self, path: str | Path) -> None:
        obj = self.to_json()
        validate_calibration(obj, str(path))
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Calibration":
        try:
            obj = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: cannot read calibration: {e}") from e
        validate_calibration(obj, str(path))
        return cls(family=obj["family"], alpha=float(obj["alpha"]), gate=bool(obj["gate"]),
                   temperature=np.array([obj["temperature"][n] for n in LABELS], dtype=float),
                   threshold=np.array([obj["threshold"][n] for n in LABELS], dtype=float),
                   bias=np.array([obj.get("bias", {}).get(n, 0.0) for n in LABELS], dtype=float),
                   flags=obj.get("flags", {}), fit=obj.get("fit", {}))


def validate_calibration(obj: dict, source: str = "calibration.json") -> None:
    """Raise ValueError naming ``source`` and the key if ``obj`` breaks the schema above."""
    def need(cond: bool, key: str, why: str) -> None:
        if not cond:
            raise ValueError(f"{source}: {key}: {why}")

    need(isinstance(obj, dict), "<top>", "expected a JSON object")
    for key in ("schema", "family", "labels", "temperature", "threshold", "gate", "alpha"):
        need(key in obj, key, "missing")
    need(obj["schema"] in READABLE_SCHEMAS, "schema", f"expected one of {READABLE_SCHEMAS}, got {obj['schema']!r}")
    if obj["schema"] == SCHEMA:
        need(isinstance(obj.get("bias"), dict), "bias", "missing (schema /2 has a bias per label)")
    need(list(obj["labels"]) == list(LABELS), "labels", "must be willis.labels.LABELS in order")
    for name in LABELS:
        T = obj["temperature"].get(name)
        need(isinstance(T, (int, float)) and math.isfinite(T) and T > 0, f"temperature.{name}", f"must be > 0, got {T!r}")
        t = obj["threshold"].get(name)
        need(isinstance(t, (int, float)) and 0 <= t <= 1, f"threshold.{name}", f"must be in [0, 1], got {t!r}")
        if "bias" in obj:
            b = obj["bias"].get(name)
            need(isinstance(b, (int, float)) and math.isfinite(b), f"bias.{name}", f"must be a finite number, got {b!r}")
    need(isinstance(obj["gate"], bool), "gate", "must be true/false")
    a = obj["alpha"]
    need(isinstance(a, (int, float)) and math.isfinite(a) and a >= 0, "alpha", f"must be >= 0, got {a!r}")


def _choose_alpha(Y: np.ndarray, P: np.ndarray, alphas) -> tuple[float, dict]:
    """Alpha by mean location AUC, then location NLL, then smallest (see module docstring)."""
    table = {}
    for a in alphas:
        G = gate(P, a)
        aucs = [v for j in range(N_LOC) if (v := auc(Y[:, j], G[:, j])) is not None]
        table[a] = {"loc_auc_mean": float(np.mean(aucs)) if aucs else None,
                    "loc_nll": nll(Y[:, :N_LOC], G[:, :N_LOC])}
    def key(a):  # larger is better; None AUC (no location defined) ranks as -inf
        m = table[a]["loc_auc_mean"]
        return (-math.inf if m is None else round(m / ALPHA_TIE), -table[a]["loc_nll"], -a)
    best = max(alphas, key=key)
    return float(best), {str(float(a)): v for a, v in table.items()}


def fit_calibration(Y: np.ndarray, Z: np.ndarray, family: str, target_precision: float,
                    use_gate: bool, alphas, use_bias: bool = True) -> Calibration:
    """Fit temperatures (and biases), alpha and thresholds on validation truth Y (N, 14) and logits Z (N, 14)."""
    flags: dict[str, list[str]] = {}
    both = [0 < Y[:, j].sum() < len(Y) for j in range(len(LABELS))]
    T, B = np.ones(len(LABELS)), np.zeros(len(LABELS))
    for j, name in enumerate(LABELS):
        if both[j]:
            if use_bias:
                T[j], B[j] = fit_temperature_bias(Z[:, j], Y[:, j])
            else:
                T[j] = fit_temperature(Z[:, j], Y[:, j])
            if min(abs(math.log(T[j]) - b) for b in LOG_T_BOUNDS) < 1e-3:
                flags.setdefault(name, []).append(f"temperature {T[j]:.3g} at its search bound")
            if min(abs(B[j] - b) for b in BIAS_BOUNDS) < 1e-3:
                flags.setdefault(name, []).append(f"bias {B[j]:.3g} at its search bound")
        else:
            flags.setdefault(name, []).append(
                f"validation has {int(Y[:, j].sum())} positive(s) of {len(Y)}: T=1, threshold {DEFAULT_THRESHOLD}")
    P = expit(Z / T + B)  # (N, 14)
    candidates = tuple(alphas) if use_gate else (0.0,)
    alpha, alpha_table = _choose_alpha(Y, P, candidates)
    P = gate(P, alpha)

    thr = np.full(len(LABELS), DEFAULT_THRESHOLD)
    for j, name in enumerate(LABELS):
        if not both[j]:
            continue
        if name == PRESENT:
            thr[j], reached = precision_threshold(Y[:, j], P[:, j], target_precision)
            if not reached:
                flags.setdefault(name, []).append(
                    f"precision {target_precision} not reached on validation: most precise threshold used")
        else:
            thr[j] = best_f1_threshold(Y[:, j], P[:, j])
    fit = {"n_series": int(len(Y)), "positives": dict(zip(LABELS, map(int, Y.sum(axis=0)))),
           "target_precision": target_precision,
           "criterion": "alpha: max mean location ROC-AUC on validation, then min location NLL, then smallest",
           "alphas": alpha_table}
    return Calibration(family=family, temperature=T, threshold=thr, alpha=alpha, gate=use_gate,
                       flags=flags, fit=fit, bias=B)


def calibration_report(Y: np.ndarray, Z: np.ndarray, cal: Calibration, ece_bins: int) -> dict:
    """ECE and NLL per label and pooled: raw sigmoid, after temperature (and bias), after gating (final)."""
    stages = {"before": expit(Z), "temperature": cal.scaled(Z), "after": cal.apply(Z)}
    labels = {}
    for j, name in enumerate(LABELS):
        row = {"positives": int(Y[:, j].sum()), "temperature": float(cal.temperature[j]),
               "bias": float(cal.bias[j]), "threshold": float(cal.threshold[j])}
        for s, P in stages.items():
            row[f"nll_{s}"], row[f"ece_{s}"] = nll(Y[:, j], P[:, j]), ece(Y[:, j], P[:, j], ece_bins)
        labels[name] = row
    pooled = {f"{m}_{s}": f(Y, P) for s, P in stages.items()
              for m, f in (("nll", nll), ("ece", lambda y, p: ece(y, p, ece_bins)))}
    return {"family": cal.family, "n_series": int(len(Y)), "alpha": cal.alpha, **pooled,
            "flagged": sorted(cal.flags), "labels": labels}


def run_calibrate(p: CalibrateParams, *, family: str, val_logits: str | Path | pd.DataFrame, out: str | Path,
                  report: str | Path, plot: str | Path) -> Calibration:
    """The ``calibrate`` stage for one family (section ``p``): fit on the logits table ``val_logits``
    (``willis.models.logits``: a file, or a validated table such as the folds' out-of-fold logits of
    ``willis.models.folds.oof_logits``), write ``out`` (calibration.json), the ``report`` and the ``plot``."""
    from willis.plots import reliability_diagram

    if isinstance(val_logits, pd.DataFrame):
        df, val_logits = val_logits, f"the {family} out-of-fold logits"   # the name for messages
    else:
        df = read_logits(val_logits)
    if df.empty:
        raise ValueError(f"{val_logits}: no validation series to calibrate on")
    Y, Z = logit_arrays(df, str(val_logits))
    cal = fit_calibration(Y, Z, family, p.target_precision, p.gate, p.alphas, p.bias)
    cal.save(out)
    ece_bins = p.ece_bins
    rep = calibration_report(Y, Z, cal, ece_bins)
    Path(report).parent.mkdir(parents=True, exist_ok=True)
    Path(report).write_text(json.dumps(rep, indent=2) + "\n")
    before, after = expit(Z), cal.apply(Z)
    reliability_diagram(plot, {
        PRESENT: {"before": (Y[:, PRESENT_INDEX], before[:, PRESENT_INDEX]),
                  "after": (Y[:, PRESENT_INDEX], after[:, PRESENT_INDEX])},
        "locations (pooled)": {"before": (Y[:, :N_LOC], before[:, :N_LOC]),
                               "after": (Y[:, :N_LOC], after[:, :N_LOC])},
    }, n_bins=ece_bins, title=f"{family}: validation reliability (n={len(Y)})")
    for name, why in cal.flags.items():
        log.warning("calibrate %s: %s: %s", family, name, "; ".join(why))
    return cal
