"""Stage ``train``: fit one family's model (``mil`` or ``mip_cnn``) for one cross-validation fold.

Runs as ``dvc repro train@ct-0`` (family ``ct``, fold 0; ``dvc repro train`` runs every family x
fold of the ``matrix``), or by hand with the paths of the ``cmd`` in dvc.yaml::

    python stages/train.py --family mr --fold 0 --projections data/projections --index data/index \
        --model-dir models/mr/folds/0 --report-dir reports/train/mr/0
    dvc exp run -S smoke=true                 # smoke subset, train.<family>.smoke_epochs epochs

Reads ``<projections>/<family>.zarr`` and ``<index>/{series,localizers}.parquet``; writes
``<model-dir>/{model.pt, meta.json, val_logits.parquet}`` and dvclive logs in ``<report-dir>``
(``metrics.json``, ``plots/metrics``). Knobs: ``train.<family>.*``, ``seed``, ``smoke``, ``folds``
(with one fold the index's train / val split; with K, fold ``--fold`` of K is the validation split).
"""

from __future__ import annotations

import sys
from pathlib import Path

# this checkout's willis/ first, before an installed one: a queued `dvc exp run` executes in a copy
# of the repo (.dvc/tmp/exps/...) and must run that copy's code (docs/reproducibility.md)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import logging

from willis.params import load
from willis.projections.store import family_path
from willis.train.loop import train_family


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", required=True, choices=["ct", "mr"])
    ap.add_argument("--fold", type=int, default=0, help="cross-validation fold (one of params.yaml folds)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--projections", required=True, help="folder of the <family>.zarr stores")
    ap.add_argument("--index", required=True, help="index folder (series/localizers.parquet)")
    ap.add_argument("--model-dir", required=True, help="receives model.pt, meta.json, val_logits.parquet")
    ap.add_argument("--report-dir", required=True, help="dvclive folder of this family")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = load(args.params)
    if args.fold not in p.folds:
        ap.error(f"--fold {args.fold} is not one of params.yaml folds {list(p.folds)}")
    summary = train_family(getattr(p.train, args.family), family=args.family,
                           store_path=family_path(args.projections, args.family), index_dir=args.index,
                           model_dir=args.model_dir, report_dir=args.report_dir, seed=p.seed, smoke=p.smoke,
                           fold=args.fold, folds=len(p.folds))
    logging.info("train %s fold %d/%d: best val score %.4f (epoch %d of %d run), %.0f s", args.family,
                 args.fold, len(p.folds), summary["val_score"], summary["best_epoch"], summary["epochs_run"],
                 summary["seconds"])


if __name__ == "__main__":
    main()
