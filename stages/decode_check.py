"""Stage ``decode_check``: test-decode every indexed series; write the integrity report.

Runs as ``dvc repro decode_check`` (or directly: ``python stages/decode_check.py [--params params.yaml]``).
Reads ``<index.out>/{series,files}.parquet`` and pixel data under ``data.root``; writes
``decode_check.report`` (status and reasons per series, orphans, missing folders, totals) and
``decode_check.metrics`` (counts per status). Exits non-zero, after writing both, when more than
``decode_check.max_excluded_fraction`` of the series are excluded.

    python stages/decode_check.py && python -c "import json; print(json.load(open('reports/decode_check.json'))['totals'])"
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import willis.params
from willis.decode_check import DecodeCheckError, run_decode_check


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    p = willis.params.load(args.params)
    try:
        metrics = run_decode_check(p.index.out, p.data.root, p.decode_check.report, p.decode_check.metrics,
                                   workers=p.decode_check.workers,
                                   max_excluded_fraction=p.decode_check.max_excluded_fraction)
    except DecodeCheckError as e:
        logging.getLogger("decode_check").error("%s", e)
        return 1
    print(json.dumps(metrics, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
