"""Stage ``calibrate``: fit one family's calibration on its out-of-fold validation logits only.

Runs as ``dvc repro calibrate@ct`` (or by hand with the paths of the ``cmd`` in dvc.yaml)::

    python stages/calibrate.py --family ct --models models/ct \
        --out models/ct/calibration.json --report reports/calibrate/ct.json \
        --plot reports/calibrate/ct_reliability.png

Reads the validation logits tables ``<models>/folds/<k>/val_logits.parquet`` of every fold ``k`` in
params.yaml ``folds`` (``willis/models/folds.py``: with one fold, the validation split; with K, the
out-of-fold logits of every train + val series) and writes

* ``--out`` (``calibration.json``): temperatures, biases, Present-gating alpha, thresholds
  (schema in ``willis/calibration.py``; ``Calibration.load`` reads it for evaluate and predict);
* ``--report``: ECE and NLL before/after, per label (a cached report, not a DVC metric);
* ``--plot``: the reliability diagram (a DVC plot).
"""

from __future__ import annotations

import sys
from pathlib import Path

# this checkout's willis/ first, before an installed one: a queued `dvc exp run` executes in a copy
# of the repo (.dvc/tmp/exps/...) and must run that copy's code (docs/reproducibility.md)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import logging

from willis.calibration import run_calibrate
from willis.models.folds import oof_logits
from willis.params import load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", required=True, choices=["ct", "mr"])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--models", required=True, help="the family's model folder (folds/<k>/val_logits.parquet)")
    ap.add_argument("--out", required=True, help="calibration.json to write")
    ap.add_argument("--report", required=True, help="calibration report JSON to write (ECE / NLL per label)")
    ap.add_argument("--plot", required=True, help="reliability diagram PNG to write")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = load(args.params)
    cal = run_calibrate(p.calibrate, family=args.family, val_logits=oof_logits(args.models, p.folds), out=args.out,
                        report=args.report, plot=args.plot)
    logging.info("calibrate %s: alpha=%s, %d label(s) flagged", args.family, cal.alpha, len(cal.flags))


if __name__ == "__main__":
    main()
