"""Benchmark: the synthetic series writer's fast path vs pydicom's ``Dataset.save_as`` per file, and
the cost of one default series per modality, by part.

Writes the same series (identical bytes, see tests/synth/test_dicom_writer.py) both ways, side by
side in one run, and prints median seconds over repeats and the ratio. Then renders default-profile
series (``max_matrix`` 224, ``max_slices`` 96) and prints, per modality, the median seconds of the
render (``acquire.render``: slab integration, coarse background, full-resolution vessels), the
scanner (blur, noise, bias) and the file writing, with ns per voxel.
Run: ``.venv/bin/python benchmarks/bench_synth.py [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from willis.synth import scanner
from willis.synth.dicom_writer import write_series
from willis.synth.geometry import geometry_for
from willis.synth.plan import plan_dataset
from willis.synth.series import render_series
from timing import median_time  # benchmarks/timing.py (this script's folder is on sys.path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--slices", type=int, default=100)
    args = ap.parse_args()
    geom = geometry_for("axial", (0, 0, 0), 220, args.slices, 128, 1.25)
    vol = np.random.default_rng(0).uniform(-1000, 1500, geom.shape).astype(np.float32)
    tmp = Path(tempfile.mkdtemp())
    kw = dict(modality="CT", series_uid="1.2.3", study_uid="1.2", patient_id="P", intercept=-1024.0)
    for encoding in ("explicit", "rle"):
        def run(fast: bool) -> None:
            out = tmp / f"{encoding}-{fast}"
            shutil.rmtree(out, ignore_errors=True)
            write_series(vol, geom, out, encoding=encoding, fast=fast, **kw)
        # interleave the two so that background load hits both alike
        fast_t, slow_t = [], []
        for _ in range(args.repeats):
            fast_t.append(median_time(lambda: run(True), 1))
            slow_t.append(median_time(lambda: run(False), 1))
        f, s = statistics.median(fast_t), statistics.median(slow_t)
        print(f"write {args.slices} slices 128x128 {encoding:8s}: fast {f:.3f}s  pydicom save_as {s:.3f}s  "
              f"ratio {s / f:.1f}x  ({f / args.slices * 1e3:.2f} vs {s / args.slices * 1e3:.2f} ms/file)")
    for modality in ("CTA", "MRA", "MRI T2", "MRI T1post"):
        plans = [p for p in plan_dataset(200, 0.42, 20251, 0) if p.modality == modality][:args.repeats]
        parts: dict[str, list[float]] = {"render": [], "scanner": [], "write": []}
        voxels = []
        for i, plan in enumerate(plans):
            t0 = time.perf_counter()
            r = render_series(plan, 20251, max_slices=96, max_matrix=224, finish=False)
            t1 = time.perf_counter()
            scanner.finish(r.volume, r.geom, modality, r.scanner, r.noise_rng)
            t2 = time.perf_counter()
            write_series(r.volume, r.geom, tmp / f"{modality}-{i}", modality=plan.dicom_modality, series_uid="1.2.3",
                         study_uid="1.2", patient_id="P", encoding="explicit", signed=plan.signed, slope=plan.slope,
                         intercept=plan.intercept)
            t3 = time.perf_counter()
            for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2)):
                parts[key].append(dt)
            voxels.append(r.volume.size)
        v = statistics.median(voxels)
        print(f"{modality:10s} median {v / 1e6:.1f} M voxels: " + "  ".join(
            f"{k} {statistics.median(t):.3f}s ({statistics.median(t) / v * 1e9:.0f} ns/voxel)" for k, t in parts.items()))
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
