"""Stage ``project``: streaming tri-planar MIPs, axial thin-slab instances and the fine circle-of-Willis slabs into one Zarr store per family.

Runs as ``dvc repro project`` (or directly: ``python stages/project.py [--params params.yaml]``).
Reads ``<index.out>/{series,files}.parquet``, ``decode_check.report`` and the DICOM under
``data.root``; writes ``<project.out>/<family>.zarr`` (layout: ``willis/projections/store.py``),
``reports/project.json`` (totals, failed series with reasons, series left out and why) and
``reports/projections/montage_<family>.png``. Resumable: killed, it picks up from the work dir
``<project.work>/project-<hash>/`` on the next run.

    python stages/project.py && python -c "from willis.projections import validate_store; print(validate_store('data/projections/ct.zarr'))"
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import willis.params
from willis.projections.executor import ProjectInterrupted, run_project


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--report", default="reports/project.json")
    ap.add_argument("--montage-dir", default="reports/projections")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    p = willis.params.load(args.params)
    try:
        report = run_project(p.index.out, p.decode_check.report, p.data.root, p.project, p.families, p.smoke,
                             report_path=args.report, montage_dir=args.montage_dir)
    except ProjectInterrupted as e:
        logging.getLogger("project").error("%s", e)
        return 1
    print(json.dumps(report["totals"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
