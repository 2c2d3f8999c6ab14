"""Stage ``evaluate``: the held-out test split, scored once, with a baseline and a readable report.

Runs as ``dvc repro evaluate`` (or ``python stages/evaluate.py``; ``-S smoke=true`` in
``dvc exp run`` evaluates only the smoke subset). Reads ``data/index/series.parquet``,
``reports/decode_check.json``, ``data/projections/<family>.zarr`` and ``models/<family>/``
(``model.pt``, ``meta.json``, ``calibration.json``); writes

* ``reports/metrics.json``: the DVC metrics file (``dvc metrics diff``);
* ``reports/summary.md``: read this first;
* ``reports/evaluate/plots/sklearn/{roc,pr,cm}/<label>.json``: dvclive plots (``dvc plots show``);
* ``reports/evaluate/worst/NN.png``: MIP thumbnails of the worst-predicted series.
"""

from __future__ import annotations

import argparse
import logging

from willis.evaluate.run import run_evaluate
from willis.params import load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--index", default="data/index/series.parquet")
    ap.add_argument("--decode-report", default="reports/decode_check.json")
    ap.add_argument("--models", default="models")
    ap.add_argument("--reports", default="reports")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = load(args.params)
    run_evaluate(p, index=args.index, decode_report=args.decode_report, models=args.models,
                 projections=p.project.out, metrics_out=f"{args.reports}/metrics.json",
                 summary_out=f"{args.reports}/summary.md", live_dir=f"{args.reports}/evaluate",
                 calibrate_reports=f"{args.reports}/calibrate")


if __name__ == "__main__":
    main()
