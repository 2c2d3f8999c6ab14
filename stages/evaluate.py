"""Stage ``evaluate``: the held-out test split, scored once, with a baseline and a readable report.

Runs as ``dvc repro evaluate`` (``-S smoke=true`` in ``dvc exp run`` evaluates only the smoke
subset), or by hand with the paths of the ``cmd`` in dvc.yaml::

    python stages/evaluate.py --index data/index --decode-report reports/decode_check.json \
        --projections data/projections --models models --metrics reports/metrics.json \
        --summary reports/summary.md --details reports/evaluate/details.json --live-dir reports/evaluate \
        --calibrate-reports reports/calibrate

Reads ``<index>/{series,localizers}.parquet``, the decode report, ``<projections>/<family>.zarr``
and ``<models>/<family>/`` (``folds/<k>/{model.pt, meta.json, val_logits.parquet}``,
``calibration.json``: the test logits are the mean of the fold models'); writes

* ``--metrics``: the DVC metrics file, headline numbers only (``dvc metrics diff``, ``dvc exp show``);
* ``--details``: every number of the evaluation (per label, bootstrap, baseline), not a metric;
* ``--summary``: read this first;
* ``<live-dir>/plots/sklearn/{roc,pr,cm}/<label>.json``: dvclive plots (``dvc plots show``);
* ``<live-dir>/worst/NN.png``: MIP thumbnails of the worst-predicted series.
"""

from __future__ import annotations

import sys
from pathlib import Path

# this checkout's willis/ first, before an installed one: a queued `dvc exp run` executes in a copy
# of the repo (.dvc/tmp/exps/...) and must run that copy's code (docs/reproducibility.md)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import logging

from willis.evaluate.run import run_evaluate
from willis.params import load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--index", required=True, help="index folder (series/localizers.parquet)")
    ap.add_argument("--decode-report", required=True)
    ap.add_argument("--projections", required=True, help="folder of the <family>.zarr stores")
    ap.add_argument("--models", required=True, help="folder of the <family>/ model bundles")
    ap.add_argument("--metrics", required=True, help="metrics JSON to write")
    ap.add_argument("--summary", required=True, help="summary.md to write")
    ap.add_argument("--details", required=True, help="details JSON to write (everything; not a DVC metric)")
    ap.add_argument("--live-dir", required=True, help="dvclive folder (plots, worst-series thumbnails)")
    ap.add_argument("--calibrate-reports", required=True, help="folder of the calibrate reports (linked)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = load(args.params)
    run_evaluate(p.evaluate, families=p.families, index=args.index, decode_report=args.decode_report,
                 models=args.models, projections=args.projections, metrics_out=args.metrics,
                 summary_out=args.summary, live_dir=args.live_dir, calibrate_reports=args.calibrate_reports,
                 seed=p.seed, smoke=p.smoke, details_out=args.details)


if __name__ == "__main__":
    main()
