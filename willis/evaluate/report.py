"""What the ``evaluate`` stage writes for DVC and for people: ``metrics.json``, ``details.json``, ``summary.md``.

``reports/metrics.json`` is the pipeline's one DVC metrics file (``dvc metrics diff``, the metric
columns of ``dvc exp show``): only the headline numbers a person compares between experiments,
``score`` first (``headline``; ``HEADLINE_KEYS`` below). Everything else of the evaluation goes to
``reports/evaluate/details.json``, not a metric: top-level ``score``, ``auc_present``,
``auc_locations_mean`` (and ``n_locations_used``, ``n_series``, ``ece``, ``oof_score``), then
``ci95``, ``families``, ``modalities``, ``labels``, ``micro``, ``macro``, ``baseline``, ``counts``.
Undefined values are ``null`` (with a ``note`` in details.json), never 0.5.

``reports/summary.md`` is the page a person reads first: scores, baseline, per-label table,
counts per split and decode status, excluded and failed series with reasons, plot links and the
worst-predicted series with their MIP thumbnails. Links are relative to the summary's folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

STATUS_UNCHECKED = "unchecked"   # decode status of a series absent from decode_check.json
TEST_SPLIT_NOTE = ("The test split is small (a few dozen series per family), so every number here "
                   "moves by several points between splits; read the 95% bootstrap interval, not the "
                   "third decimal.")


def fmt(v, digits: int = 3) -> str:
    """A metric for a table: ``n/a`` for undefined (None), fixed decimals for floats."""
    if v is None:
        return "n/a"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def write_metrics(path: str | Path, metrics: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(metrics, indent=2) + "\n")


def headline(m: dict) -> dict:
    """The DVC metrics file from the full metrics dict ``m``: test ``score`` first, then its parts,
    the out-of-fold (validation) score, the baseline gap, per family, per modality, and the counts
    (about 25 numbers, so ``dvc exp show`` and ``dvc metrics diff`` stay readable)."""
    ci = m["ci95"]
    fam = {f: {"score": g["score"], "oof_score": g.get("oof_score"), "auc_present": g["auc_present"],
               "auc_locations_mean": g["auc_locations_mean"], "ece": g["ece"]}
           for f, g in m["families"].items()}
    return {
        "score": m["score"], "auc_present": m["auc_present"], "auc_locations_mean": m["auc_locations_mean"],
        "oof_score": m.get("oof_score"), "score_ci95_low": ci["low"], "score_ci95_high": ci["high"],
        "ece": m["ece"], "baseline_score": m["baseline"].get("score"),
        "above_baseline": m["baseline"]["above_baseline"],
        **fam,
        "modalities": {name: g["score"] for name, g in m["modalities"].items()},
        "counts": {"test": m["counts"]["test_evaluated"], "test_excluded": m["counts"]["test_excluded"],
                   "test_failed": m["counts"]["test_failed"]},
    }


def split_status_counts(series: pd.DataFrame, status: dict[str, dict]) -> pd.DataFrame:
    """Series per split (rows) and decode status (columns), with totals."""
    st = series["SeriesInstanceUID"].map(lambda u: status.get(u, {}).get("status", STATUS_UNCHECKED))
    split = series["split"].replace("", "(no split)")  # orphans and CSV rows without a folder
    return pd.crosstab(split, st, margins=True, margins_name="total")


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
    return out


def _score_rows(m: dict) -> list[list]:
    rows = [["**all**", m["n_series"], m["score"], f"{fmt(m['ci95']['low'])} - {fmt(m['ci95']['high'])}",
             m.get("oof_score"), m["auc_present"], f"{fmt(m['auc_locations_mean'])} ({m['n_locations_used']}/13)",
             m["baseline"].get("score"), m["baseline"]["above_baseline"]]]
    for group in ("families", "modalities"):
        for name, g in m[group].items():
            ci = f"{fmt(g['ci95']['low'])} - {fmt(g['ci95']['high'])}" if "ci95" in g else ""
            rows.append([name, g["n_series"], g["score"], ci, g.get("oof_score", "") if group == "families" else "",
                         g["auc_present"], f"{fmt(g['auc_locations_mean'])} ({g['n_locations_used']}/13)",
                         g["baseline_score"], g["above_baseline"]])
    return rows


def write_summary(path: str | Path, m: dict, *, smoke: bool, counts: pd.DataFrame,
                  excluded: dict[str, list[str]], failures: dict[str, str], worst: pd.DataFrame,
                  thumbs: list, plot_dirs: dict[str, Path], notes: list[str]) -> None:
    """Render ``summary.md`` from the metrics dict and the run's bookkeeping."""
    path = Path(path)
    rel = lambda p: os.path.relpath(p, path.parent).replace(os.sep, "/")  # noqa: E731
    ci = m["ci95"]
    L = [f"# willis: test-split evaluation{' (SMOKE subset)' if smoke else ''}", "",
         f"**Score {fmt(m['score'])}** (95% bootstrap interval {fmt(ci['low'])} - {fmt(ci['high'])}, "
         f"{ci['n_boot']} resamples of {ci['n_series']} series, {ci['n_undefined']} undefined) "
         f"= 0.5 x AUC(Aneurysm Present) {fmt(m['auc_present'])} + 0.5 x mean location AUC "
         f"{fmt(m['auc_locations_mean'])} over {m['n_locations_used']} of 13 locations with both classes.",
         "", TEST_SPLIT_NOTE, "",
         "Probabilities are calibrated on validation (temperature and bias, Present-gating, thresholds: "
         "`models/<family>/calibration.json`); the test split is used for nothing but these numbers.", "",
         "## Scores", ""]
    L += _table(["group", "series", "score", "95% CI", "OOF score (val)", "AUC present",
                 "mean location AUC (used)", "baseline score", "above baseline"], _score_rows(m))
    L += ["", "OOF score: the validation series of every fold, each predicted by the fold model that did "
          "not train on it, through the calibration fitted on those same logits (so slightly optimistic); "
          "with `folds: [0]` it is the validation split. The test score is the fold ensemble's (the mean of "
          "the fold models' logits, then calibrated)."]
    d = m["baseline"]["above_baseline_ci95"]
    L += ["", f"Above baseline on the same series: {fmt(m['baseline']['above_baseline'])} "
          f"(paired bootstrap 95% interval {fmt(d['low'])} - {fmt(d['high'])}).",
          "", "Baseline: per-family logistic regression (one per label) on per-view, per-region MIP "
          "maxima, percentiles and means, trained on the train split (`willis/evaluate/baseline.py`).", "",
          "## Per label (all families)", ""]
    rows = [[n, v["positives"], v["roc_auc"], v["pr_auc"], v["ece"], v["precision"], v["recall"], v["f1"],
             f"{v['tp']}/{v['fp']}/{v['fn']}/{v['tn']}"] for n, v in m["labels"].items()]
    L += _table(["label", "positives", "ROC-AUC", "PR-AUC", "ECE", "precision", "recall", "F1",
                 "TP/FP/FN/TN"], rows)
    mi, ma = m["micro"], m["macro"]
    L += ["", f"Micro (all cells pooled): ROC-AUC {fmt(mi['roc_auc'])}, PR-AUC {fmt(mi['pr_auc'])}, "
          f"F1 {fmt(mi['f1'])}, ECE {fmt(mi['ece'])}. Macro (mean of defined labels): ROC-AUC "
          f"{fmt(ma['roc_auc'])} ({ma['n_roc_auc']} labels), PR-AUC {fmt(ma['pr_auc'])} "
          f"({ma['n_pr_auc']}), F1 {fmt(ma['f1'])} ({ma['n_f1']}).", ""]
    undefined = [n for n, v in m["labels"].items() if v["roc_auc"] is None]
    if undefined:
        L += [f"Undefined (no positive or no negative in this test split, left out of means): "
              f"{', '.join(undefined)}.", ""]
    L += ["## Series per split and decode status", ""]
    L += _table(["split", *map(str, counts.columns)],
                [[idx, *map(int, row)] for idx, row in zip(counts.index, counts.to_numpy())]) + [""]
    L += [f"## Test series not evaluated ({len(excluded)} excluded by decode_check, {len(failures)} failed)", ""]
    rows = [[u, "excluded", "; ".join(r) or "(no reason given)"] for u, r in sorted(excluded.items())]
    rows += [[u, "failed", r] for u, r in sorted(failures.items())]
    L += (_table(["series", "why", "reasons"], rows) if rows else ["None."]) + [""]
    L += ["## Plots", ""]
    L += [f"- [{name}]({rel(d)})" for name, d in plot_dirs.items()]
    L += ["", "Render with `dvc plots show` (or `dvc plots diff` against another experiment).", "",
          "## Most wrong (highest Aneurysm Present cross-entropy)", "",
          "Orange: the model's Aneurysm Present heat map (cells above 5 %); cyan circles: the annotated "
          "aneurysms (train_localizers.csv).", ""]
    rows = [[i + 1, r["SeriesInstanceUID"], r["Modality"], int(r["truth"]), float(r["p_present"]),
             f"![MIP]({rel(t)})" if t else "(projection unreadable)"]
            for (i, r), t in zip(worst.iterrows(), thumbs)]
    L += (_table(["#", "series", "modality", "truth", "p(present)", "MIP (axial, coronal, sagittal)"], rows)
          if rows else ["None."])
    if notes:
        L += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(L) + "\n")
