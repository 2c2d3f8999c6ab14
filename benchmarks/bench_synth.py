"""Benchmark: the synthetic series writer's fast path vs pydicom's ``Dataset.save_as`` per file.

Writes the same series (identical bytes, see tests/test_synth_dicom_writer.py) both ways, side by
side in one run, and prints median seconds over repeats and the ratio. Also times rendering one
typical CTA volume. Run: ``.venv/bin/python benchmarks/bench_synth.py [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

import numpy as np

from willis.synth import contrast, head
from willis.synth.anatomy import sample_anatomy
from willis.synth.dicom_writer import write_series
from willis.synth.geometry import geometry_for
from willis.synth.render import paint
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
    anat = sample_anatomy(np.random.default_rng(0), (0, 0, 0))
    values = contrast.sample_contrast("CTA", np.random.default_rng(0))
    scene = head.background(anat) + head.arteries(anat)

    def render() -> None:
        v = np.full(geom.shape, values["air"], np.float32)
        paint(v, geom, scene, values)

    r = median_time(render, args.repeats)
    print(f"render CTA {geom.shape}: {r:.3f}s ({r / vol.size * 1e9:.1f} ns/voxel, {len(scene)} primitives)")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
