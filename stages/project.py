"""Stage ``project``: streaming tri-planar MIPs, axial thin-slab instances and the fine circle-of-Willis slabs into one Zarr store per family.

Runs as ``dvc repro project`` (or by hand with the paths of the ``cmd`` in dvc.yaml)::

    python stages/project.py --index data/index --decode-report reports/decode_check.json \
        --root data/synthetic --report reports/project.json --montage-dir reports/projections

Reads ``<index>/{series,files}.parquet``, the decode report and the DICOM under ``--root``; writes
``<project.out>/<family>.zarr`` (layout: ``willis/projections/store.py``), ``--report`` (totals,
failed series with reasons, series left out and why) and ``<montage-dir>/montage_<family>.png``.
Resumable: killed, it picks up from the work dir ``<project.work>/project-<hash>/`` on the next run.

    python -c "from willis.projections import validate_store; print(validate_store('data/projections/ct.zarr'))"
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
from willis.projections.executor import ProjectInterrupted, run_project


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--index", required=True, help="index folder (series/files.parquet)")
    ap.add_argument("--decode-report", required=True)
    ap.add_argument("--root", required=True, help="the RSNA-layout dataset (data.root)")
    ap.add_argument("--report", required=True, help="project.json to write")
    ap.add_argument("--montage-dir", required=True)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    p = willis.params.load(args.params)
    try:
        report = run_project(p.project, index_dir=args.index, decode_report=args.decode_report, root=args.root,
                             families=p.families, smoke=p.smoke, report_path=args.report,
                             montage_dir=args.montage_dir)
    except ProjectInterrupted as e:
        logging.getLogger("project").error("%s", e)
        return 1
    print(json.dumps(report["totals"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
