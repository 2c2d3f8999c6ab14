"""``python -m willis.predict SERIES_DIR [SERIES_DIR ...] [--models DIR] [--csv out.csv]``.

One JSON line per series on stdout (uid, status, family, modality, seconds, reasons,
probabilities); ``--csv`` also writes a submission-style table (SeriesInstanceUID + the 14 columns).
Exit status 2 when the model bundle cannot be loaded (before any series).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import pandas as pd

from willis.labels import LABELS
from willis.predict import predict
from willis.predict.bundle import DEFAULT_MODELS, ENV_MODELS, BundleError, load_bundle

LOG = logging.getLogger("willis.predict")


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    ap = argparse.ArgumentParser(prog="python -m willis.predict",
                                 description="Calibrated probabilities for series folders (the competition's predict).")
    ap.add_argument("series", nargs="+", help="series folders (named by SeriesInstanceUID)")
    ap.add_argument("--models", default=None, help=f"model bundle dir (default ${ENV_MODELS} or {DEFAULT_MODELS})")
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    ap.add_argument("--csv", default=None, help="also write SeriesInstanceUID + the 14 columns here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        load_bundle(args.models, args.device)  # a broken bundle fails here, before any series
    except BundleError as e:
        LOG.error("%s", e)
        return 2
    rows = []
    for path in tqdm(args.series, desc="predict", unit="series", disable=len(args.series) < 2, file=sys.stderr):
        df = predict(path, models_dir=args.models, device=args.device)
        a = df.attrs
        print(json.dumps({"uid": a["uid"], "status": a["status"], "family": a["family"], "modality": a["modality"],
                          "seconds": round(a["seconds"]["total"], 4), "reasons": a["reasons"],
                          "probabilities": {k: float(v) for k, v in df.iloc[0].items()}}), flush=True)
        rows.append({"SeriesInstanceUID": a["uid"], **df.iloc[0].to_dict()})
    if args.csv:
        pd.DataFrame(rows, columns=["SeriesInstanceUID", *LABELS]).to_csv(args.csv, index=False)
        LOG.info("wrote %d rows to %s", len(rows), args.csv)
    return 0

