"""Stage ``synthesize``: write the embedded default dataset, a synthetic RSNA-layout folder.

Runs as ``dvc repro synthesize`` (or ``python stages/synthesize.py``). Reads params ``seed``,
``data.root`` and the ``synthesize`` section, and writes ``synthesize.out`` (``data/synthetic``):

* ``train.csv``, ``train_localizers.csv`` and ``series/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``,
  exactly the real competition layout (see docs/synthetic.md);
* ``MANIFEST.json``: seed, profile, lesion mode, params, counts, the deliberately broken series, the
  drawn and effective spacing per modality and per series, and a content hash.

When ``data.root`` points elsewhere (real data), only a MANIFEST.json saying "skipped" is written.

    python stages/synthesize.py                      # the default dataset
    python stages/synthesize.py --n-series 12 --out /tmp/tiny --data-root /tmp/tiny   # a tiny one
    # the held-out transfer check (outside the DAG: nobody trains or selects on it)
    python stages/synthesize.py --profile heldout --seed 777 --n-series 200 --out data/heldout --data-root data/heldout
"""

from __future__ import annotations

import sys
from pathlib import Path

# this checkout's willis/ first, before an installed one: a queued `dvc exp run` executes in a copy
# of the repo (.dvc/tmp/exps/...) and must run that copy's code (docs/reproducibility.md)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import dataclasses
import logging

from willis.params import load
from willis.synth.dataset import synthesize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", help="override synthesize.out")
    ap.add_argument("--data-root", help="override data.root")
    ap.add_argument("--n-series", type=int, help="override synthesize.n_series")
    ap.add_argument("--seed", type=int, help="override seed")
    ap.add_argument("--profile", help="override synthesize.profile (default | heldout)")
    ap.add_argument("--lesion", help="override synthesize.lesion (realistic | exaggerated)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = load(args.params)
    sp = p.synthesize
    if args.out:
        sp = dataclasses.replace(sp, out=args.out)
    if args.n_series:
        sp = dataclasses.replace(sp, n_series=args.n_series)
    if args.profile:
        sp = dataclasses.replace(sp, profile=args.profile)
    if args.lesion:
        sp = dataclasses.replace(sp, lesion=args.lesion)
    sp.check()
    seed = p.seed if args.seed is None else args.seed
    manifest = synthesize(sp, seed=seed, out_dir=sp.out, data_root=args.data_root or p.data.root)
    if not manifest["skipped"]:
        c = manifest["counts"]
        logging.info("%d CSV rows, %d positives, %d localizers, %d files, %d broken series",
                     c["csv_rows"], c["positives"], c["localizers"], c["files"], len(manifest["broken"]))


if __name__ == "__main__":
    main()
