"""The ``evaluate`` stage: calibrated test-split predictions, metrics, baseline, plots, report.

The test split is held out: nothing here fits on it or tunes a threshold on it. Per family the
model's test logits come from ``willis.models.infer.logits_for(model_dir, store, uids)``, go
through the family's ``Calibration`` (fitted on validation), and are decided at its thresholds.
Series that ``decode_check`` excluded are not evaluated but counted and listed with reasons; a
series the model or the store cannot serve is listed the same way (``failures``), never dropped
silently. With ``smoke`` only the ``smoke`` subset of each split is used.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from willis.calibration import Calibration
from willis.decode_check import read_decode_report
from willis.evaluate.baseline import Baseline, readable, series_features
from willis.evaluate.report import STATUS_UNCHECKED, headline, split_status_counts, write_metrics, write_summary
from willis.index.tables import SPLIT_LABEL_COLUMNS, index_path, read_index
from willis.labels import LABELS, PRESENT_INDEX, label_slug
from willis.metrics import bootstrap_score, competition_score, summarize
from willis.models.logits import LOGIT_COLUMNS, logit_arrays, validate_logits
from willis.params.evaluate import EvaluateParams
from willis.projections.store import family_path

log = logging.getLogger(__name__)

PLOT_SUBDIRS = ("roc", "pr", "cm")  # under <live_dir>/plots/sklearn/, one JSON per label


@dataclass
class Predictions:
    """Evaluated test series, one row each; arrays are (N, 14) in LABELS order."""

    frame: pd.DataFrame                                   # SeriesInstanceUID, Modality, family
    Y: np.ndarray                                         # 0/1 truth (from the index)
    P: np.ndarray                                         # calibrated, gated probabilities
    pred: np.ndarray                                      # bool decisions at the family thresholds
    B: np.ndarray                                         # baseline probabilities (NaN: no baseline)
    failures: dict[str, str] = field(default_factory=dict)  # uid -> why it was not evaluated
    notes: list[str] = field(default_factory=list)


def decode_status(report_path: str | Path) -> dict[str, dict]:
    """uid -> {"status", "reasons"} from ``reports/decode_check.json``."""
    rep = read_decode_report(report_path)
    return {u: {"status": v.get("status", STATUS_UNCHECKED), "reasons": list(v.get("reasons", []))}
            for u, v in rep.get("series", {}).items()}


def load_series(index_dir: str | Path, smoke: bool) -> pd.DataFrame:
    """The series table of the index (every split), restricted to the smoke subset when ``smoke``."""
    df = read_index(index_dir, "series", require=SPLIT_LABEL_COLUMNS)
    return df[df["smoke"].astype(bool)] if smoke else df


def _default_logits_fn():
    # imported here: torch only when the real model runs. A family's logits are its fold ensemble's
    # (the mean of the fold models' raw logits; one model when folds: [0]).
    from willis.models.ensemble import ensemble_logits_for

    return ensemble_logits_for


def oof_predictions(family: str, models_dir: Path) -> tuple[np.ndarray, np.ndarray] | str:
    """(Y, P) of the family's out-of-fold validation logits through its calibration, or the reason
    there are none. Calibration was fitted on these very logits (a temperature, a bias and a gate
    per label), so the OOF score is a little optimistic; it is the ensemble members' own estimate."""
    from willis.models.ensemble import member_oof_logits  # torch: only for a real bundle

    try:
        df = member_oof_logits(models_dir / family)
    except (FileNotFoundError, ValueError) as e:
        return f"{family}: no out-of-fold score: {e}"
    Y, Z = logit_arrays(df, f"out-of-fold logits of {models_dir / family}")
    return Y, Calibration.load(models_dir / family / "calibration.json").apply(Z)


def oof_scores(families, models_dir: Path) -> tuple[dict, list[str]]:
    """Out-of-fold (validation) scores: {"all": score, "<family>": score}, None where undefined,
    and notes for families without OOF logits."""
    got, notes = {}, []
    for fam in families:
        r = oof_predictions(fam, models_dir)
        if isinstance(r, str):
            notes.append(r)
        else:
            got[fam] = r
    out = {fam: competition_score(*yp)["score"] for fam, yp in got.items()}
    out["all"] = competition_score(np.concatenate([y for y, _ in got.values()]),
                                   np.concatenate([p for _, p in got.values()]))["score"] if got else None
    return out, notes


def predict_family(family: str, test: pd.DataFrame, train: pd.DataFrame, models_dir: Path,
                   store: Path, logits_fn: Callable, grid: int, c: float) -> Predictions:
    """Model and baseline probabilities for one family's evaluable test series."""
    cal = Calibration.load(models_dir / family / "calibration.json")
    uids, failures = readable(store, test["SeriesInstanceUID"].tolist())
    modalities = dict(zip(test["SeriesInstanceUID"], test["Modality"]))
    logits = logits_fn(models_dir / family, store, uids, modalities=modalities)
    got = set(logits["SeriesInstanceUID"])
    failures.update({u: "no test logits from the model" for u in uids if u not in got})
    rows = test[test["SeriesInstanceUID"].isin(got)]
    # truth from the index (the source of truth); logits aligned to it by uid
    logits = logits.set_index("SeriesInstanceUID").loc[rows["SeriesInstanceUID"]].reset_index()
    validate_logits(logits, with_truth=False, source=f"test logits of {models_dir / family}")
    Y = rows[list(LABELS)].to_numpy(dtype=int)
    Z = logits[LOGIT_COLUMNS].to_numpy(dtype=float)
    P = cal.apply(Z)  # (N, 14) calibrated, gated
    B, notes = _baseline(family, rows, train, store, grid, c)
    frame = rows[["SeriesInstanceUID", "Modality", "family"]].reset_index(drop=True)
    return Predictions(frame, Y, P, cal.decide(P), B, failures, notes)


def _baseline(family, test, train, store, grid, c):
    """(N, 14) baseline probabilities for ``test`` rows (NaN rows where features are missing)."""
    B = np.full((len(test), len(LABELS)), np.nan)
    if train.empty or test.empty:
        return B, [f"{family}: no baseline ({len(train)} train / {len(test)} test series)"]
    Xtr, ok_tr, fail_tr = series_features(store, train["SeriesInstanceUID"], grid, f"baseline {family} train")
    Ytr = train.set_index("SeriesInstanceUID").loc[ok_tr, list(LABELS)].to_numpy(dtype=int)
    notes = [f"{family}: baseline trained on {len(ok_tr)} train series ({len(fail_tr)} unreadable)"]
    if not ok_tr:
        return B, notes
    model = Baseline(c).fit(Xtr, Ytr)
    if model.flags:
        notes.append(f"{family}: baseline predicts a constant (single class in train) for "
                     f"{len(model.flags)} label(s): {', '.join(model.flags)}")
    Xte, ok_te, fail_te = series_features(store, test["SeriesInstanceUID"], grid, f"baseline {family} test")
    notes += [f"{family}: baseline has no features for test series {u}: {why}" for u, why in fail_te.items()]
    if ok_te:
        pos = test.reset_index(drop=True).reset_index().set_index("SeriesInstanceUID").loc[ok_te, "index"]
        B[pos.to_numpy()] = model.predict_proba(Xte)
    return B, notes


def _concat(parts: list[Predictions]) -> Predictions:
    return Predictions(
        pd.concat([p.frame for p in parts], ignore_index=True),
        *(np.concatenate([getattr(p, a) for p in parts]) for a in ("Y", "P", "pred", "B")),
        failures={k: v for p in parts for k, v in p.failures.items()},
        notes=[n for p in parts for n in p.notes])


def group_metrics(pr: Predictions, mask: np.ndarray, ece_bins: int, labels: bool) -> dict:
    """Model metrics of the rows in ``mask`` plus the baseline's score on the same rows."""
    m = summarize(pr.Y[mask], pr.P[mask], pr.pred[mask], ece_bins)
    if not labels:  # a group's entry stays short: `dvc metrics diff` prints every leaf
        m["ece"] = m["micro"]["ece"]
        m["aucs"] = {k: v["roc_auc"] for k, v in m.pop("labels").items()}
        del m["micro"], m["macro"]
    both = mask & ~np.isnan(pr.B).any(axis=1)  # rows the baseline could score: compare on those only
    base = competition_score(pr.Y[both], pr.B[both])["score"] if both.any() else None
    model = competition_score(pr.Y[both], pr.P[both])["score"] if both.any() else None
    m["baseline_score"] = base
    m["above_baseline"] = None if model is None or base is None else model - base
    return m


def build_metrics(pr: Predictions, ece_bins: int, n_boot: int, seed: int) -> dict:
    """The ``reports/metrics.json`` dict: score first, then families, modalities, labels, baseline."""
    everything = np.ones(len(pr.frame), bool)
    overall = group_metrics(pr, everything, ece_bins, labels=True)
    fam = pr.frame["family"].to_numpy()
    mod = pr.frame["Modality"].to_numpy()
    both = ~np.isnan(pr.B).any(axis=1)
    base = competition_score(pr.Y[both], pr.B[both]) if both.any() else {}
    base.pop("aucs", None)
    families = {f: group_metrics(pr, fam == f, ece_bins, labels=False) for f in sorted(set(fam))}
    for f, g in families.items():  # the families are the models: each gets its own interval
        g["ci95"] = bootstrap_score(pr.Y[fam == f], pr.P[fam == f], n_boot, seed)
    return {
        "score": overall["score"], "auc_present": overall["auc_present"],
        "auc_locations_mean": overall["auc_locations_mean"],
        "n_locations_used": overall["n_locations_used"], "n_series": overall["n_series"],
        "ece": overall["micro"]["ece"],
        "ci95": bootstrap_score(pr.Y, pr.P, n_boot, seed),
        "families": families,
        "modalities": {m: group_metrics(pr, mod == m, ece_bins, labels=False) for m in sorted(set(mod))},
        "labels": overall["labels"], "micro": overall["micro"], "macro": overall["macro"],
        "baseline": {**base, "n_series": int(both.sum()), "above_baseline": overall["above_baseline"],
                     "above_baseline_ci95": bootstrap_score(pr.Y[both], pr.P[both], n_boot, seed, B=pr.B[both]),
                     "families": {f: {"score": v["baseline_score"], "above_baseline": v["above_baseline"]}
                                  for f, v in families.items()}},
    }


def log_plots(live_dir: str | Path, pr: Predictions) -> list[str]:
    """ROC, PR and confusion matrix per label (test split, all families) through dvclive.

    Labels without both classes get no ROC/PR file (the curve is undefined). Returns the names.
    """
    from dvclive import Live

    names = []
    with Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        for j, name in enumerate(LABELS):
            y, p, d = pr.Y[:, j], pr.P[:, j], pr.pred[:, j].astype(int)
            if 0 < y.sum() < len(y):
                live.log_sklearn_plot("roc", y, p, name=f"roc/{label_slug(name)}.json", title=f"ROC: {name}")
                live.log_sklearn_plot("precision_recall", y, p, name=f"pr/{label_slug(name)}.json",
                                      title=f"Precision-recall: {name}")
            live.log_sklearn_plot("confusion_matrix", y, d, name=f"cm/{label_slug(name)}.json",
                                  title=f"Confusion at the calibrated threshold: {name}")
            names.append(label_slug(name))
    for sub in PLOT_SUBDIRS:  # declared DVC outputs: they must exist even when no label had a curve
        (Path(live_dir) / "plots/sklearn" / sub).mkdir(parents=True, exist_ok=True)
    # Live.end() always writes a summary file; nothing is logged as a metric here (metrics.json at
    # the reports root is the DVC metric), so drop the empty, undeclared one it leaves behind.
    summary = Path(live.metrics_file)
    if summary.exists() and json.loads(summary.read_text() or "{}") == {}:
        summary.unlink()
    return names


def worst_series(pr: Predictions, k: int) -> pd.DataFrame:
    """The ``k`` series with the highest Aneurysm Present cross-entropy (most confidently wrong)."""
    y, p = pr.Y[:, PRESENT_INDEX], np.clip(pr.P[:, PRESENT_INDEX], 1e-7, 1 - 1e-7)
    loss = -(y * np.log(p) + (1 - y) * np.log1p(-p))  # (N,)
    order = np.argsort(-loss, kind="stable")[:k]
    out = pr.frame.iloc[order].copy()
    out["truth"], out["p_present"], out["loss"] = y[order], pr.P[order, PRESENT_INDEX], loss[order]
    return out.reset_index(drop=True)


def _heat_and_points(worst: pd.DataFrame, projections: Path, models: Path | None,
                     index_dir: Path | None) -> tuple[dict, dict]:
    """Per worst series: the model's Present heat map (3, h, w) and the annotated points (n, 3, 2),
    where a heat head and localizers exist; {} otherwise (unreadable series get neither)."""
    from willis.models.ensemble import ensemble_heat_maps_for
    from willis.models.folds import has_checkpoint
    from willis.projections.store import open_store
    from willis.projections.targets import LOCALIZER_INPUTS, VIEW_SLICES, localizer_targets

    heat, points = {}, {}
    loc = read_index(index_dir, "localizers", require=LOCALIZER_INPUTS) \
        if index_dir is not None and index_path(index_dir, "localizers").exists() else None
    for fam, rows in worst.groupby("family"):
        store = family_path(projections, fam)
        uids = readable(store, rows["SeriesInstanceUID"].tolist())[0]
        if not uids:
            continue
        if models is not None and has_checkpoint(models / fam):
            maps = ensemble_heat_maps_for(models / fam, store, uids,
                                          dict(zip(rows["SeriesInstanceUID"], rows["Modality"])))
            if maps is not None:
                heat.update(zip(uids, maps))
        if loc is not None:
            attrs = open_store(store).attrs.asdict()
            _, _, pts = localizer_targets(uids, attrs["series"], loc, int(attrs["instances"]), {})
            for u, p in zip(uids, pts):
                p = p[p[:, 0] >= 0]
                points[u] = np.stack([p[:, sl] for sl in VIEW_SLICES], axis=1)  # (n, 3, 2)
    return heat, points


def write_thumbnails(worst: pd.DataFrame, projections: Path, out_dir: Path, models: Path | None = None,
                     index_dir: Path | None = None) -> list[str | None]:
    """One MIP PNG per worst series (``out_dir/NN.png``); None where the projection is unreadable.

    With ``models``, the model's Present heat map is drawn over the views; with ``index_dir``,
    the annotated aneurysms (``localizers.parquet``) are circled."""
    from willis.evaluate.baseline import iter_mips
    from willis.evaluate.thumbnails import mip_thumbnail

    shutil.rmtree(out_dir, ignore_errors=True)  # stale thumbnails of a previous run must not linger
    out_dir.mkdir(parents=True)                  # a declared DVC output, even with worst_k = 0
    heat, points = _heat_and_points(worst, projections, models, index_dir) if len(worst) else ({}, {})
    paths = []
    for i, r in worst.iterrows():
        uid = r["SeriesInstanceUID"]
        (_, mip, why), = iter_mips(family_path(projections, r["family"]), [uid])
        if mip is None:
            log.warning("thumbnail %s: %s", uid, why)
            paths.append(None)
            continue
        path = out_dir / f"{i + 1:02d}.png"
        mip_thumbnail(path, mip, f"{uid} ({r['Modality']}): truth {r['truth']}, "
                                 f"p(present) {r['p_present']:.3f}", heat=heat.get(uid), points=points.get(uid))
        paths.append(str(path))
    return paths


def run_evaluate(ev: EvaluateParams, *, families: tuple[str, ...], index: str | Path,
                 decode_report: str | Path, models: str | Path, projections: str | Path,
                 metrics_out: str | Path, summary_out: str | Path, live_dir: str | Path,
                 calibrate_reports: str | Path, seed: int, smoke: bool,
                 logits_fn: Callable | None = None, details_out: str | Path | None = None) -> dict:
    """The whole ``evaluate`` stage: section ``ev`` (``evaluate``), the ``families`` to score, the
    index folder ``index``, the other artifacts' paths, the bootstrap ``seed`` and ``smoke``
    (only the smoke subset). Writes the headline numbers to ``metrics_out`` (the DVC metrics file)
    and everything (per label, bootstrap, baseline details) to ``details_out`` (default
    ``<live_dir>/details.json``). Returns the full metrics dict."""
    models, projections, live_dir = Path(models), Path(projections), Path(live_dir)
    real_models = logits_fn is None  # the bundle's own checkpoints (not a stand-in): OOF logits exist
    logits_fn = logits_fn or _default_logits_fn()
    series = load_series(index, smoke)
    status = decode_status(decode_report)
    is_excluded = series["SeriesInstanceUID"].map(lambda u: status.get(u, {}).get("status") == "excluded")
    test_all = series[series["split"] == "test"]
    excluded = {u: status[u]["reasons"] for u in test_all.loc[is_excluded[test_all.index], "SeriesInstanceUID"]}
    test, train = test_all[~is_excluded[test_all.index]], series[(series["split"] == "train") & ~is_excluded]
    log.info("evaluate: %d test series (%d excluded by decode_check), smoke=%s",
             len(test), len(excluded), smoke)

    parts, notes = [], []
    for fam in families:
        t, tr = test[test["family"] == fam], train[train["family"] == fam]
        if t.empty:
            notes.append(f"{fam}: no evaluable test series")
            continue
        parts.append(predict_family(fam, t, tr, models, family_path(projections, fam), logits_fn,
                                    ev.baseline_grid, ev.baseline_c))
    if not parts or sum(len(p.frame) for p in parts) == 0:
        raise ValueError(f"{index}: no test series could be evaluated (families {list(families)}, "
                         f"smoke={smoke}, {len(excluded)} excluded)")
    pr = _concat(parts)
    notes = pr.notes + notes

    metrics = build_metrics(pr, ev.ece_bins, ev.bootstrap, seed)
    metrics["counts"] = {"test_evaluated": len(pr.frame), "test_excluded": len(excluded),
                         "test_failed": len(pr.failures), "train_for_baseline": len(train)}
    if real_models:
        oof, oof_notes = oof_scores(list(metrics["families"]), models)
    else:  # a stand-in model (tests): no checkpoints whose validation logits could be read
        oof, oof_notes = {}, ["no out-of-fold score: the test logits came from a stand-in model"]
    notes += oof_notes
    metrics["oof_score"] = oof.get("all")
    for fam, g in metrics["families"].items():
        g["oof_score"] = oof.get(fam)
    write_metrics(metrics_out, headline(metrics))

    log_plots(live_dir, pr)
    write_metrics(details_out or live_dir / "details.json", metrics)  # after Live(), which tidies its dir
    worst = worst_series(pr, ev.worst_k)
    thumbs = write_thumbnails(worst, projections, live_dir / "worst", models=models, index_dir=Path(index))
    plot_dirs = dict(zip(("ROC curves", "precision-recall curves", "confusion matrices at the calibrated thresholds"),
                         (live_dir / "plots/sklearn" / sub for sub in PLOT_SUBDIRS)))
    for fam in families:
        plot_dirs[f"{fam} validation reliability diagram"] = Path(calibrate_reports) / f"{fam}_reliability.png"
    write_summary(summary_out, metrics, smoke=smoke, counts=split_status_counts(series, status),
                  excluded=excluded, failures=pr.failures, worst=worst, thumbs=thumbs,
                  plot_dirs=plot_dirs, notes=notes)
    log.info("evaluate: score %s (baseline %s) on %d series", metrics["score"],
             metrics["baseline"].get("score"), len(pr.frame))
    return metrics
