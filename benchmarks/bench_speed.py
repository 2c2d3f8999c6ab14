"""Issue #15's ratios, all measured side by side in one run (medians of interleaved repeats).

    python benchmarks/bench_speed.py --dir /tmp/bench-speed          # keep the series between runs
    python benchmarks/bench_speed.py --quick                          # 256^2, shorter series: a smoke check

Prints, each against its goal:

1. ``project`` ÷ bare decode (``dcmread`` + ``pixel_array`` of every file), one process, 512^2 CT,
   100 slices, uncompressed / RLE / JPEG 2000 (goal <= 1.2);
2. willis scan + project ÷ SimpleITK (``ImageSeriesReader`` + 3 x ``np.max``) and ÷ dcm2niix (one
   conversion to an uncompressed NIfTI) on the same series: 512^2 CT at 100 / 300 / 600 slices, an
   RLE and a J2K series, a 96-frame Enhanced MR (goals <= 0.5 and <= 1.5). A peer that is not
   installed (``pip install .[bench]``) is skipped with a message;
3. Enhanced multi-frame cost per frame ÷ the same frames as single-frame files (decode and project;
   goal <= 1.3);
4. ``predict`` ÷ bare decode on a 300 x 512^2 CTA (untrained default bundle, CPU; goal <= 1.5),
   from ``bench_predict``'s child process;
5. 2 workers ÷ 1 worker on 6 series (goal >= 1.8; needs 2 idle cores);
6. peak RSS projecting 1000 vs 100 slices, fresh processes (goal <= 32 MB apart).

Use ``nice`` on a shared machine; the ratios, not the seconds, are what carry over.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom

import bench_project as bp   # this folder is on sys.path when run as a script


def _med(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each callable, the calls interleaved (a busy neighbour slows them all alike)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def write_mr(root: Path, name: str, n: int, matrix: int, multiframe: bool):
    """A T2-like head MR (``bench_project.head_fn`` rescaled to positive scanner units), single- or multi-frame."""
    from willis.index.scan import scan_series
    from willis.synth.dicom_writer import geometry_for, sample_world, uid_from, write_series

    folder = root / "series" / name
    if not folder.exists():
        geom = geometry_for("axial", (0, 0, 0), fov_mm=240, n_slices=n, matrix=matrix, slice_spacing=1.0)
        vol = np.clip(sample_world(bp.head_fn, geom) + 1000.0, 0, 3000)   # positive scanner units
        write_series(vol.astype(np.float32), geom, folder, modality="MR", series_uid=uid_from("bench-mr", name),
                     study_uid="1.2.3", patient_id="bench", multiframe=multiframe, signed=False)
    _, files = scan_series(folder, root)
    return files


def scan_project(root: Path, folder: Path, family: str, modality: str, params) -> None:
    from willis.index.scan import scan_series
    from willis.projections.streaming import project_series

    _, files = scan_series(folder, root)
    project_series({"SeriesInstanceUID": "bench", "Modality": modality}, files, root, params, family)


def sitk_read_max(folder: Path) -> None:
    import SimpleITK as sitk

    names = sorted(str(p) for p in folder.iterdir())
    if len(names) == 1:                        # one Enhanced file: GDCM reads its frames
        img = sitk.ReadImage(names[0])
    else:
        r = sitk.ImageSeriesReader()
        r.SetFileNames(r.GetGDCMSeriesFileNames(str(folder)))
        img = r.Execute()
    vol = sitk.GetArrayViewFromImage(img)
    for ax in range(3):
        np.max(vol, axis=ax)


def dcm2niix(folder: Path, exe: str) -> None:
    out = Path(tempfile.mkdtemp(prefix="bench-nii-"))
    try:
        subprocess.run([exe, "-z", "n", "-b", "n", "-o", str(out), "-f", "v", str(folder)],
                       check=True, capture_output=True)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def peers() -> tuple[bool, str | None]:
    try:
        import SimpleITK  # noqa: F401
        have_sitk = True
    except ImportError:
        have_sitk = False
        print("    SimpleITK not installed (pip install .[bench]): its column is skipped")
    exe = shutil.which("dcm2niix") or (str(Path(sys.executable).parent / "dcm2niix")
                                        if (Path(sys.executable).parent / "dcm2niix").exists() else None)
    if exe is None:
        print("    dcm2niix not found (pip install .[bench]): its column is skipped")
    return have_sitk, exe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=None, help="keep the synthetic series here between runs")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: peers,enhanced,predict,workers,rss")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    from willis.params.project import ProjectParams

    params = ProjectParams()
    root = Path(args.dir or tempfile.mkdtemp(prefix="bench-speed-"))
    m, lengths, n_big = (256, (40, 120, 240), 400) if args.quick else (512, (100, 300, 600), 1000)
    print(f"bench_speed: {m}x{m} CT, data in {root}, repeats {args.repeats}, default project params")
    import willis.projections.streaming  # noqa: F401  (imports, and the kernels compiled / loaded, before timing)

    # 1. projection / bare decode
    print("[1] project / bare decode (dcmread + pixel_array), one process; goal <= 1.2")
    for enc in ("explicit", "rle", "jpeg2000"):
        files = bp.write_ct(root, f"ratio-{enc}", lengths[0], m, enc)
        bp.bare_decode(root, files)
        bp.project(root, files, params)
        t = _med({"decode": lambda: bp.bare_decode(root, files), "iter": lambda: bp.iter_only(root, files),
                  "project": lambda: bp.project(root, files, params)}, args.repeats)
        print(f"    {enc:9s} {lengths[0]} slices: bare decode {t['decode']:.3f} s, willis decode (iter_frames) "
              f"{t['iter']:.3f} s, project {t['project']:.3f} s -> project / bare decode {t['project'] / t['decode']:.2f}, "
              f"/ willis decode {t['project'] / t['iter']:.2f}")

    # 2. scan + project vs the readers a user would pick instead
    if "peers" not in skip:
        print("[2] willis scan+project / SimpleITK read + 3 x np.max (goal <= 0.5), / dcm2niix (goal <= 1.5)")
        have_sitk, exe = peers()
        cases = [(f"{n} x {m}^2 CT", bp.write_ct(root, f"ratio-explicit" if n == lengths[0] else f"ct-{n}", n, m, "explicit"), "ct", "CTA")
                 for n in lengths]
        cases += [(f"{lengths[0]} x {m}^2 CT RLE", bp.write_ct(root, "ratio-rle", lengths[0], m, "rle"), "ct", "CTA"),
                  (f"{lengths[0]} x {m}^2 CT J2K", bp.write_ct(root, "ratio-jpeg2000", lengths[0], m, "jpeg2000"), "ct", "CTA"),
                  (f"96-frame Enhanced MR {m // 2}^2", write_mr(root, "mr-enhanced", 96, m // 2, True), "mr", "MRI T2")]
        for label, files, fam, mod in cases:
            folder = root / Path(files["path"].iloc[0]).parent
            fns = {"willis": lambda: scan_project(root, folder, fam, mod, params)}
            if have_sitk:
                fns["sitk"] = lambda: sitk_read_max(folder)
            if exe:
                fns["dcm2niix"] = lambda: dcm2niix(folder, exe)
            for fn in fns.values():
                fn()                                    # warm the page cache
            t = _med(fns, args.repeats)
            cols = [f"willis {t['willis']:.3f} s"]
            if "sitk" in t:
                cols.append(f"SimpleITK {t['sitk']:.3f} s (willis / SimpleITK {t['willis'] / t['sitk']:.2f})")
            if "dcm2niix" in t:
                cols.append(f"dcm2niix {t['dcm2niix']:.3f} s (willis / dcm2niix {t['willis'] / t['dcm2niix']:.2f})")
            print(f"    {label:26s} " + ", ".join(cols))

    # 3. Enhanced multi-frame per frame vs single-frame files
    if "enhanced" not in skip:
        from willis.dicom.frames import iter_frames

        mf, sf = write_mr(root, "mr-enhanced", 96, m // 2, True), write_mr(root, "mr-single", 96, m // 2, False)
        t = _med({"mf_decode": lambda: sum(1 for _ in iter_frames(mf, root)), "sf_decode": lambda: sum(1 for _ in iter_frames(sf, root)),
                  "mf_project": lambda: scan_project(root, root / Path(mf["path"].iloc[0]).parent, "mr", "MRI T2", params),
                  "sf_project": lambda: scan_project(root, root / Path(sf["path"].iloc[0]).parent, "mr", "MRI T2", params)},
                 args.repeats)
        print(f"[3] Enhanced MR, 96 frames {m // 2}^2, per frame ÷ single-frame files (goal <= 1.3): decode "
              f"{t['mf_decode'] / 96 * 1e3:.2f} vs {t['sf_decode'] / 96 * 1e3:.2f} ms ({t['mf_decode'] / t['sf_decode']:.2f}), "
              f"scan+project {t['mf_project'] / 96 * 1e3:.2f} vs {t['sf_project'] / 96 * 1e3:.2f} ms "
              f"({t['mf_project'] / t['sf_project']:.2f})")

    # 4. predict / bare decode (bench_predict's fresh child process, untrained default bundle)
    if "predict" not in skip:
        here = Path(__file__).parent
        res = subprocess.run([sys.executable, str(here / "bench_predict.py"), "--slices", str(lengths[1]), "--matrix", str(m),
                              "--repeats", str(max(3, args.repeats + 1)), "--device", "cpu"], capture_output=True, text=True)
        lines = [ln for ln in res.stdout.splitlines() if ln.startswith(("ratios", "stage", "series", "decode", "bare", "project", "total", "model"))]
        print(f"[4] predict on a {lengths[1]} x {m}^2 CTA (bench_predict, CPU; goal total / bare decode <= 1.5):")
        for ln in lines if res.returncode == 0 else res.stderr.splitlines()[-5:]:
            print("    " + ln)

    # 5. workers
    if "workers" not in skip:
        series = [bp.write_ct(root, "ratio-explicit", lengths[0], m, "explicit")] * 6
        t1, t2 = bp.speedup(root, series, params)
        print(f"[5] 6 series: 1 worker {t1:.2f} s, 2 workers {t2:.2f} s, speed-up {t1 / t2:.2f} "
              f"(goal >= 1.8 on 2 idle cores; this box: {len(__import__('os').sched_getaffinity(0))} cores, load "
              f"{__import__('os').getloadavg()[0]:.1f})")

    # 6. RSS
    if "rss" not in skip:
        bp.write_ct(root, "rss-small", lengths[0], m)
        bp.write_ct(root, "rss-big", n_big, m)
        peaks = {}
        for name in ("rss-small", "rss-big"):
            out = subprocess.run([sys.executable, bp.__file__, "--rss-child", str(root), name], capture_output=True, text=True, check=True)
            peaks[name] = json.loads(out.stdout.strip().splitlines()[-1])
        d = peaks["rss-big"]["peak_mb"] - peaks["rss-small"]["peak_mb"]
        print(f"[6] peak RSS: {lengths[0]} slices {peaks['rss-small']['peak_mb']:.0f} MB, {n_big} slices "
              f"{peaks['rss-big']['peak_mb']:.0f} MB: {d:.0f} MB apart (goal <= 32 MB)")
    if not args.dir:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
