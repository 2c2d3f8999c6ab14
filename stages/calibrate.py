"""Stage ``calibrate``: fit one family's calibration on its validation logits only.

Runs as ``dvc repro calibrate@ct`` (or ``python stages/calibrate.py --family ct``). Reads
``models/<family>/val_logits.parquet`` and writes

* ``models/<family>/calibration.json``: temperatures, Present-gating alpha, thresholds
  (schema in ``willis/calibration.py``; ``Calibration.load`` reads it for evaluate and predict);
* ``reports/calibrate/<family>.json``: ECE and NLL before/after (a DVC metric);
* ``reports/calibrate/<family>_reliability.png``: the reliability diagram (a DVC plot).
"""

from __future__ import annotations

import argparse
import logging

from willis.calibration import run_calibrate
from willis.params import load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", required=True, choices=["ct", "mr"])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--models", default="models", help="folder holding <family>/val_logits.parquet")
    ap.add_argument("--reports", default="reports/calibrate")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = load(args.params).calibrate
    fam = args.family
    cal = run_calibrate(
        val_logits=f"{args.models}/{fam}/val_logits.parquet", out=f"{args.models}/{fam}/calibration.json",
        report=f"{args.reports}/{fam}.json", plot=f"{args.reports}/{fam}_reliability.png",
        family=fam, target_precision=p.target_precision, use_gate=p.gate, alphas=p.alphas,
        ece_bins=p.ece_bins, use_bias=p.bias)
    logging.info("calibrate %s: alpha=%s, %d label(s) flagged", fam, cal.alpha, len(cal.flags))


if __name__ == "__main__":
    main()
