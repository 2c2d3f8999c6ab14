"""Index throughput (files/s) against a bare ``pydicom.dcmread(stop_before_pixels=True)`` loop.

    .venv/bin/python benchmarks/bench_index.py                       # synthetic: 40 series x 60 slices of 128^2
    .venv/bin/python benchmarks/bench_index.py --root data/synthetic # any RSNA-layout folder

Measured side by side in one run, page cache warm (one untimed pass first), medians of
``--repeats`` run round-robin (wall time, and CPU time of the single-process variants, which
other jobs on a shared machine disturb less): (a) the bare loop, one process; (b) ``scan_series`` on every folder, one process
(the scanner's own cost: specific_tags parse, geometry, grouping, DataFrames); (c) ``scan_all``
with ``--workers`` processes (what the stage runs). Prints files/s and the ratios to (a).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pydicom

from willis.index.scan import scan_all, scan_series
from willis.synth.dicom_writer import geometry_for, uid_from, write_series


def make_dataset(root: Path, n_series: int, n_slices: int, matrix: int) -> None:
    for i in range(n_series):
        uid = uid_from("bench", i)
        geom = geometry_for("axial", (0, 0, 0), 200, n_slices, matrix, 1.0)
        vol = np.zeros(geom.shape, np.float32)
        write_series(vol, geom, root / "series" / uid, modality="CT" if i % 2 else "MR", series_uid=uid,
                     study_uid=uid_from("bench-study", i), patient_id=f"P{i}", intercept=-1024.0 if i % 2 else 0.0)


def timed_round_robin(fns: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """Median (wall s, CPU s of this process) per function; repeats interleaved so load hits all alike."""
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t, c = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in fns}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, help="existing RSNA-layout folder (default: a synthetic one in a temp dir)")
    ap.add_argument("--series", type=int, default=40)
    ap.add_argument("--slices", type=int, default=60)
    ap.add_argument("--matrix", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    tmp = None
    root = args.root
    if root is None:
        tmp = tempfile.TemporaryDirectory()
        root = Path(tmp.name)
        make_dataset(root, args.series, args.slices, args.matrix)
    folders = sorted(p for p in (root / "series").iterdir() if p.is_dir())
    paths = [p for f in folders for p in sorted(f.iterdir()) if p.is_file()]
    n = len(paths)

    def bare():
        for p in paths:
            pydicom.dcmread(p, stop_before_pixels=True)

    def scanner():
        for f in folders:
            scan_series(f, root)

    def parallel():
        scan_all(root, args.workers)

    bare()  # warm the page cache for everyone
    t = timed_round_robin({"bare": bare, "scan": scanner, "parallel": parallel}, args.repeats)
    (w_bare, c_bare), (w_scan, c_scan), (w_par, _) = t["bare"], t["scan"], t["parallel"]
    print(f"{n} files in {len(folders)} series ({root}), medians of {args.repeats} interleaved repeats")
    print(f"  bare dcmread(stop_before_pixels) loop, 1 process: {n / w_bare:7.0f} files/s wall, {n / c_bare:7.0f} files/s CPU")
    print(f"  scan_series, 1 process                         : {n / w_scan:7.0f} files/s wall, {n / c_scan:7.0f} files/s CPU"
          f"  ratio to bare {w_bare / w_scan:.2f} (wall) {c_bare / c_scan:.2f} (CPU)")
    print(f"  scan_all, {args.workers} worker processes                  : {n / w_par:7.0f} files/s wall"
          f"  ratio to bare {w_bare / w_par:.2f} (wall)")
    if tmp is not None:
        tmp.cleanup()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
