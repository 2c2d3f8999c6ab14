"""Stage ``index``: header-only index of the RSNA-layout dataset at ``data.root``.

Runs as ``dvc repro index`` (or by hand with the paths of the ``cmd`` in dvc.yaml:
``python stages/index.py --root data/synthetic --out data/index``).
Reads ``<root>/train.csv``, ``train_localizers.csv`` and the headers of
``<root>/series/*/*``; writes ``<out>/{series,files,localizers}.parquet`` (schema:
``willis/index/tables.py``). Does not read the top-level ``smoke`` param: the ``smoke`` column is always
written, and the stages that honour ``smoke`` read it (keeps DVC's run-cache effective).

    python -c "from willis.index.tables import read_index; print(read_index('data/index').split.value_counts())"
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
from willis.dicom.limits import ReadLimits
from willis.index.tables import build_index


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--root", required=True, help="the RSNA-layout dataset (data.root)")
    ap.add_argument("--out", required=True, help="index folder to write")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    p = willis.params.load(args.params)
    summary = build_index(
        args.root, args.out, workers=p.index.workers, val_fraction=p.index.val_fraction,
        test_fraction=p.index.test_fraction,
        smoke_sizes={"train": p.index.smoke_train, "val": p.index.smoke_val, "test": p.index.smoke_test},
        seed=p.seed, limits=ReadLimits(p.index.max_frame_bytes, p.index.max_pixel_bytes, p.index.max_frames),
    )
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
