"""Stage ``decode_check``: test-decode every indexed series; write the integrity report.

Runs as ``dvc repro decode_check`` (or by hand with the paths of the ``cmd`` in dvc.yaml:
``python stages/decode_check.py --index data/index --root data/synthetic --report reports/decode_check.json
--metrics reports/decode_check_metrics.json``). Reads ``<index>/{series,files}.parquet`` and pixel data
under ``--root``; writes ``--report`` (status and reasons per series, orphans, missing folders, totals)
and ``--metrics`` (counts per status). Exits non-zero, after writing both, when more than
``decode_check.max_excluded_fraction`` of the series are excluded.

    python -c "from willis.decode_check import read_decode_report; print(read_decode_report('reports/decode_check.json')['totals'])"
"""

from __future__ import annotations

import sys
from pathlib import Path

# this checkout's willis/ first, before an installed one: a queued `dvc exp run` executes in a copy
# of the repo (.dvc/tmp/exps/...) and must run that copy's code (docs/reproducibility.md)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import logging

import willis.params
from willis.decode_check import DecodeCheckError, run_decode_check


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--index", required=True, help="index folder (series/files.parquet)")
    ap.add_argument("--root", required=True, help="the RSNA-layout dataset (data.root)")
    ap.add_argument("--report", required=True, help="decode report JSON to write")
    ap.add_argument("--metrics", required=True, help="metrics JSON to write")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    p = willis.params.load(args.params)
    try:
        metrics = run_decode_check(args.index, args.root, args.report, args.metrics,
                                   workers=p.decode_check.workers,
                                   max_excluded_fraction=p.decode_check.max_excluded_fraction)
    except DecodeCheckError as e:
        logging.getLogger("decode_check").error("%s", e)
        return 1
    print(json.dumps(metrics, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
