"""Stage ``train``: fit one family's model (``mil`` or ``mip_cnn``) on its projection store.

Runs as ``dvc repro train@ct`` / ``dvc repro train@mr`` (``dvc repro train`` runs both), or by hand::

    python stages/train.py --family mr
    dvc exp run -S smoke=true                 # smoke subset, train.<family>.smoke_epochs epochs

Reads ``<project.out>/<family>.zarr`` and ``<index.out>/{series,localizers}.parquet``; writes
``models/<family>/{model.pt, meta.json, val_logits.parquet}`` and dvclive logs in
``reports/train/<family>/`` (``metrics.json``, ``plots/metrics``). Knobs: ``train.<family>.*``.
"""

from __future__ import annotations

import argparse
import logging

from willis.params import load
from willis.projections.store import family_path
from willis.train.loop import train_family


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", required=True, choices=["ct", "mr"])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--models", default="models", help="folder receiving <family>/model.pt, meta.json, ...")
    ap.add_argument("--reports", default="reports/train", help="dvclive folder parent: <reports>/<family>")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = load(args.params)
    summary = train_family(params, args.family, store_path=family_path(params.project.out, args.family),
                           index_dir=params.index.out, model_dir=f"{args.models}/{args.family}",
                           report_dir=f"{args.reports}/{args.family}")
    logging.info("train %s: best val score %.4f (epoch %d of %d run), %.0f s", args.family,
                 summary["val_score"], summary["best_epoch"], summary["epochs_run"], summary["seconds"])


if __name__ == "__main__":
    main()
