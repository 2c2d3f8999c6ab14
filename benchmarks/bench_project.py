"""Benchmark of stage ``project``, measured side by side in one run on the same synthetic series.

    python benchmarks/bench_project.py            # full: 512 x 512 slices, 100 / 1000-slice RSS, 4,000-series store
    python benchmarks/bench_project.py --quick    # smaller, for a smoke check

Prints:
1. projection time / bare decode time (``dcmread`` + ``pixel_array`` of every slice), one process,
   median of interleaved repeats, for uncompressed, RLE and JPEG 2000 series (goal <= 1.2), side by
   side with its parts: the locate pass alone (sampled frames -> fine box), the coarse
   representation alone (every frame -> tri-planar MIPs + axial slabs, what ``project`` did before
   the fine views), and so the cost of the fine views (full - coarse - locate);
2. peak RSS (VmHWM of a fresh subprocess) projecting a 100-slice vs a 1000-slice 512 x 512
   series (goal: difference <= 32 MB), and a 300-slice one: the fine accumulators grow with the
   part of the fine box (136 mm) a series covers, so 100 slices of 0.5 mm (50 mm) sit below that
   bound and 300 (150 mm) already at it: 300 vs 1000 is the length-flatness that remains;
3. 2-worker speed-up over 1 worker on the same series (warm pools; goal >= 1.8 on 2 free cores);
4. bytes on disk per series of each array's chunk (``mip``, ``instances``, ``fine``) for that CT
   (a clean phantom compresses far better than real or realistic series: see docs/ARCHITECTURE.md);
5. no-op ``dvc status`` time with a 4,000-series store (tiny arrays) as a stage output.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
from timing import median_time  # benchmarks/timing.py (this script's folder is on sys.path)
import pydicom



def head_fn(x, y, z):
    """A CT head: skull shell, brain, a few contrast vessels; float32 HU."""
    r2 = x**2 + y**2 + (z * 1.2) ** 2
    v = np.full(x.shape, -1000.0, np.float32)
    v[r2 < 90**2] = 1200.0
    v[r2 < 84**2] = 35.0
    for cx, cy in ((-20, 0), (20, 0), (0, 25)):
        v[(x - cx) ** 2 + (y - cy) ** 2 < 3**2] = 350.0
    return v


def write_ct(root: Path, name: str, n: int, matrix: int, encoding: str = "explicit") -> pd.DataFrame:
    from willis.index.scan import scan_series
    from willis.synth.dicom_writer import geometry_for, sample_world, uid_from, write_series

    folder = root / "series" / name
    if not folder.exists():  # the writer takes the whole volume: 1000 x 512 x 512 float32 is 1 GB, in the parent only
        geom = geometry_for("axial", (0, 0, 0), fov_mm=240, n_slices=n, matrix=matrix, slice_spacing=0.5)
        write_series(sample_world(head_fn, geom), geom, folder, modality="CT", series_uid=uid_from("bench", name),
                     study_uid="1.2.3", patient_id="bench", encoding=encoding, intercept=-1024.0)
    _, files = scan_series(folder, root)
    return files


def bare_decode(root: Path, files: pd.DataFrame) -> None:
    for p in files.sort_values("order")["path"]:
        pydicom.dcmread(root / p).pixel_array


def iter_only(root: Path, files: pd.DataFrame) -> None:
    """The decode path projection uses (pydicom pixel API, rescale to float32), nothing else."""
    from willis.dicom.frames import iter_frames

    for _ in iter_frames(files, root):
        pass


def project(root: Path, files: pd.DataFrame, params) -> None:
    from willis.projections.streaming import project_series

    project_series({"SeriesInstanceUID": "bench", "Modality": "CTA"}, files, root, params, "ct")


def locate_only(root: Path, files: pd.DataFrame, params) -> None:
    """Pass 1 alone: the sampled frames, the evidence grid and the fine box."""
    from willis.projections.geometry import series_geometry
    from willis.projections.streaming import locate

    locate(files, root, params, "ct", "CTA", series_geometry(files, params.grid))


def coarse_only(root: Path, files: pd.DataFrame, params) -> None:
    """The coarse representation alone (no locate pass, no fine views): every frame -> MIPs + slabs, rendered."""
    from willis.projections.geometry import series_geometry
    from willis.projections.render import render
    from willis.projections.roi import find_roi
    from willis.projections.streaming import accumulate_series
    from willis.projections.windows import series_windows

    acc = accumulate_series(files, root, params, "ct", geom=series_geometry(files, params.grid))
    roi = find_roi(acc, "ct", params.size, params.roi_z_mm, params.roi_xy_mm, params.roi_margin_mm)
    render(acc, roi, series_windows("ct", None), params.size, params.instances, params.instance_mode, params.vesselness, "ct")


def vm_hwm_mb() -> float:
    """Peak resident set of this process (MB). Not ``ru_maxrss``: Linux carries that over ``exec``
    from the forking parent, which here held a 1 GB volume; VmHWM starts afresh with the new image."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_child(root: str, name: str) -> None:
    """Subprocess entry: project one series, print peak RSS (MB) before (imports, file table) and after."""
    from willis.index.scan import scan_series
    from willis.params.project import ProjectParams

    import willis.projections.streaming  # noqa: F401  (imports counted in the base)

    _, files = scan_series(Path(root) / "series" / name, Path(root))
    base = vm_hwm_mb()
    project(Path(root), files, ProjectParams())
    print(json.dumps({"base_mb": base, "peak_mb": vm_hwm_mb()}))


def _warm(_):
    import willis.projections.streaming  # noqa: F401

    return os.getpid()


def _one(args):
    root, files, params = args
    project(Path(root), files, params)


def speedup(root: Path, series: list[pd.DataFrame], params) -> tuple[float, float]:
    """(1-worker, 2-worker) seconds for ``series``, each pool warmed by projecting first (imports and
    the compiled kernels loaded in every worker, as in a long ``project`` run)."""
    out = {}
    for w in (1, 2):
        with ProcessPoolExecutor(w, mp_context=get_context("spawn")) as pool:
            list(pool.map(_warm, range(w * 2)))
            list(pool.map(_one, [(str(root), series[0], params)] * (w * 2)))
            t = time.perf_counter()
            list(pool.map(_one, [(str(root), f, params) for f in series]))
            out[w] = time.perf_counter() - t
    return out[1], out[2]


def chunk_bytes(root: Path, files: pd.DataFrame, params) -> dict[str, int]:
    """Bytes on disk of each array's chunk for one projected series (a real store, the pipeline's writer)."""
    from willis.projections.store import create_store, write_projection
    from willis.projections.streaming import project_series
    from willis.projections.windows import channel_names
    from willis.projections.workdir import store_params

    proj = project_series({"SeriesInstanceUID": "bench", "Modality": "CTA"}, files, root, params, "ct")
    store = root / "bytes.zarr"
    shutil.rmtree(store, ignore_errors=True)
    g = create_store(store, "ct", ["bench"], channel_names("ct", params.vesselness), params.size, params.instances,
                     store_params(params))
    write_projection(g, 0, proj)
    out = {name: sum(p.stat().st_size for p in (store / name).iterdir() if p.name.startswith("c.")) for name in ("mip", "instances", "fine")}
    shutil.rmtree(store, ignore_errors=True)
    return out


DVC = Path(sys.executable).parent / "dvc"   # the venv's dvc (the checkout may be a worktree without .venv)


def dvc_status_time(n_series: int, repeats: int) -> tuple[float, int]:
    from willis.projections.store import FineLayout, Projection, create_store, finalize_store, open_store, write_projection

    d = Path(tempfile.mkdtemp(prefix="bench-dvc-"))
    try:
        subprocess.run(["git", "init", "-q"], cwd=d, check=True)
        subprocess.run([str(DVC), "init", "-q"], cwd=d, check=True)
        store = d / "data" / "projections" / "ct.zarr"
        uids = [f"1.2.{i}" for i in range(n_series)]
        s, k, c = 16, 4, 4
        fine = FineLayout(("vessel", "highlight", "thickness"), {}, s, k)   # tiny, but one chunk file per series as in a real store
        g = create_store(store, "ct", uids, [str(i) for i in range(c)], s, k, {}, fine=fine)
        g = open_store(store, "r+")
        rng = np.random.default_rng(0)
        done = {}
        for i, u in enumerate(uids):
            p = Projection(u, rng.integers(0, 255, (3, c, s, s), np.uint8), rng.integers(0, 255, (k, c, s, s), np.uint8),
                           np.linspace(40, -40, k).astype(np.float32), {"centre_mm": [0, 0, 0]},
                           rng.integers(0, 255, (3, k, 3, s, s), np.uint8))
            write_projection(g, i, p)
            done[u] = (p.instance_z, p.attrs)
        finalize_store(store, done, {})
        (d / "dvc.yaml").write_text("stages:\n  project:\n    cmd: 'true'\n    outs:\n      - data/projections\n")
        subprocess.run([str(DVC), "commit", "-f", "-q"], cwd=d, check=True)
        n_files = sum(1 for _ in store.rglob("*") if _.is_file())
        t = median_time(lambda: subprocess.run([str(DVC), "status", "-q"], cwd=d), repeats)
        return t, n_files
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--dir", default=None, help="keep the synthetic series here between runs")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if len(sys.argv) > 1 and sys.argv[1] == "--rss-child":
        return
    from willis.params.project import ProjectParams

    root = Path(args.dir or tempfile.mkdtemp(prefix="bench-project-"))
    matrix, n_small, n_big, n_status = (256, 40, 400, 500) if args.quick else (512, 100, 1000, 4000)
    params = ProjectParams()
    print(f"bench_project: {matrix}x{matrix} slices, data in {root}, repeats {args.repeats}, default project params")

    # 1. projection vs bare decode, same series, same process
    for enc in ("explicit", "rle", "jpeg2000"):
        files = write_ct(root, f"ratio-{enc}", n_small, matrix, enc)
        bare_decode(root, files)  # warm the page cache and imports for both
        project(root, files, params)
        runs = {"decode": lambda: bare_decode(root, files), "iter": lambda: iter_only(root, files),
                "locate": lambda: locate_only(root, files, params), "coarse": lambda: coarse_only(root, files, params),
                "project": lambda: project(root, files, params)}
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.repeats):  # interleaved: a busy neighbour slows them all alike
            for k, fn in runs.items():
                times[k].append(median_time(fn, 1))
        t = {k: statistics.median(v) for k, v in times.items()}
        fine = t["project"] - t["coarse"] - t["locate"]
        print(f"[1] {enc:8s} {n_small} slices: bare decode {t['decode']:.3f} s, iter_frames {t['iter']:.3f} s, "
              f"locate pass {t['locate']:.3f} s, coarse only {t['coarse']:.3f} s, project {t['project']:.3f} s (fine views "
              f"~{fine:.3f} s); / bare decode: project {t['project'] / t['decode']:.2f} (goal <= 1.2), coarse only "
              f"{t['coarse'] / t['decode']:.2f}, locate {t['locate'] / t['decode']:.2f}, fine views {fine / t['decode']:.2f}, "
              f"iter_frames {t['iter'] / t['decode']:.2f}")

    # 2. peak RSS, fresh subprocesses
    n_mid = 3 * n_small
    write_ct(root, "rss-small", n_small, matrix)
    write_ct(root, "rss-mid", n_mid, matrix)
    write_ct(root, "rss-big", n_big, matrix)
    peaks = {}
    for name in ("rss-small", "rss-mid", "rss-big"):
        out = subprocess.run([sys.executable, __file__, "--rss-child", str(root), name], capture_output=True, text=True, check=True)
        peaks[name] = json.loads(out.stdout.strip().splitlines()[-1])
    d = peaks["rss-big"]["peak_mb"] - peaks["rss-small"]["peak_mb"]
    d_mid = peaks["rss-big"]["peak_mb"] - peaks["rss-mid"]["peak_mb"]
    print(f"[2] peak RSS: {n_small} slices {peaks['rss-small']['peak_mb']:.0f} MB "
          f"(after imports + file table {peaks['rss-small']['base_mb']:.0f}), {n_mid} slices {peaks['rss-mid']['peak_mb']:.0f} MB, "
          f"{n_big} slices {peaks['rss-big']['peak_mb']:.0f} MB (base {peaks['rss-big']['base_mb']:.0f}); difference "
          f"{n_big} - {n_small}: {d:.0f} MB (goal <= 32 MB), {n_big} - {n_mid} (both span the fine box): {d_mid:.0f} MB")

    # 3. 2-worker speed-up on 6 copies of the small series
    series = [write_ct(root, "ratio-explicit", n_small, matrix)] * 6
    t1, t2 = speedup(root, series, params)
    print(f"[3] 6 series: 1 worker {t1:.2f} s, 2 workers {t2:.2f} s, speed-up {t1 / t2:.2f} (goal >= 1.8; cores: {os.cpu_count()}, shared)")

    # 4. bytes per series of the fine array (and the coarse ones), one zstd chunk each
    sizes = chunk_bytes(root, series[0], params)
    print("[4] store bytes per series (zstd level 3): " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in sizes.items()))

    # 5. no-op dvc status with a 4,000-series store
    t, n_files = dvc_status_time(n_status, args.repeats)
    print(f"[5] no-op dvc status, {n_status}-series store ({n_files} files): {t:.2f} s")
    if not args.dir:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--rss-child":
        rss_child(sys.argv[2], sys.argv[3])
    else:
        main()
