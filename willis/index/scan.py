"""Per-series header scan: ``scan_series`` (one series folder) and ``scan_all`` (every folder, in processes).

``scan_series(folder, root)`` reads the headers of one series folder (``predict`` reuses it on a
single folder) and keeps its largest consistent group of frames; ``scan_all(root, workers)`` runs
it over ``<root>/series/*`` for ``willis.index.tables.build_index``. The files table it returns
(``FILES_COLUMNS``) is described in the schema of ``willis.index.tables``.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from willis.dicom.geometry import fill_geometry, frame_headers, normal_of, orientation_valid, plane_of
from willis.dicom.header import DicomReadError, scan_file

log = logging.getLogger(__name__)

ORIENT_TOL = 0.02        # frames whose cosines differ by less than this share an orientation
POSITION_DECIMALS = 3    # positions equal to 1 micrometre count as one slice position
GAP_RATIO = 1.5          # a gap above GAP_RATIO x the median slice spacing flags spacing_irregular
NAN2, NAN3, NAN6 = [float("nan")] * 2, [float("nan")] * 3, [float("nan")] * 6
# Series-level geometry flags set here (willis.dicom.geometry adds orientation_/pixel_spacing_/
# position_missing).
FLAGS = ("positions_identical", "duplicate_positions", "spacing_irregular", "no_usable_frames", "scan_failed")

FILES_COLUMNS = ["SeriesInstanceUID", "path", "SOPInstanceUID", "frame", "n_frames", "position", "ipp",
                 "orientation", "pixel_spacing", "rows", "cols", "size_bytes", "transfer_syntax", "modality",
                 "slope", "intercept", "instance_number", "keep", "set_aside_reason", "order"]


def _orientation_key(o, reps: list) -> int:
    """Index of the orientation cluster of ``o`` (None and invalid cosines form cluster -1)."""
    if o is None:
        return -1
    for i, r in enumerate(reps):
        if max(abs(a - b) for a, b in zip(o, r)) < ORIENT_TOL:
            return i
    reps.append(o)
    return len(reps) - 1


def _set_aside_reason(f: dict, kept_key, reps) -> str:
    """Why a readable frame is not in the kept group (first difference found)."""
    uid, shape, o = f["series_uid"], (f["rows"], f["cols"]), f["okey"]
    if uid != kept_key[0]:
        return f"SeriesInstanceUID {uid} differs from the kept group's {kept_key[0]}"
    if shape != kept_key[1]:
        return f"{shape[0]}x{shape[1]} differs from the kept group's {kept_key[1][0]}x{kept_key[1][1]}"
    return "orientation {} differs from the kept group's {}".format(
        "missing/invalid" if o == -1 else reps[o], "missing/invalid" if kept_key[2] == -1 else reps[kept_key[2]])


def _empty_record(uid: str, n_files: int, n_set_aside: int, flag: str) -> dict:
    return {"SeriesInstanceUID": uid, "PatientID": "", "dicom_modality": "", "n_files": n_files, "n_frames": 0,
            "rows": 0, "cols": 0, "pixel_spacing": NAN2, "slice_spacing": float("nan"), "orientation": NAN6,
            "normal": NAN3, "plane": "", "transfer_syntaxes": [], "multiframe": False, "geometry_flag": flag,
            "n_set_aside": n_set_aside}


def _key(f: dict) -> tuple:
    return f["series_uid"], (f["rows"], f["cols"]), f["okey"]


def scan_series(folder: Path, root: Path) -> tuple[dict, pd.DataFrame]:
    """Headers of every file in one series folder -> (series record, files table with FILES_COLUMNS).

    Keeps the largest consistent group of frames (same SeriesInstanceUID, rows x cols and
    orientation); every other frame or file gets ``keep=False`` and a ``set_aside_reason``. Never
    raises on a bad file: unreadable and non-DICOM files become rows with their reason. Plain
    Python lists inside (one DataFrame at the end): the scan must stay as fast as pydicom's parse.
    """
    folder, root = Path(folder), Path(root)
    uid = folder.name
    paths = sorted(p for p in folder.iterdir() if p.is_file())
    frames: list[dict] = []
    bad: list[dict] = []
    for p in paths:
        rel, size = p.relative_to(root).as_posix(), p.stat().st_size
        try:
            ds, problem = scan_file(p)
            for fr in frame_headers(ds, p):
                frames.append({**fr, "path": rel, "size_bytes": size, "keep": False, "position": np.nan, "order": -1,
                               "problem": problem})
        except DicomReadError as e:
            bad.append({"path": rel, "size_bytes": size, "set_aside_reason": e.reason})

    # frames that cannot join any group: colour, scout/localizer images
    reps: list = []
    for f in frames:
        f["set_aside_reason"] = (f["problem"] if f["problem"] else
                                 "colour image (SamplesPerPixel != 1)" if f["samples"] != 1 else
                                 "localizer image (ImageType LOCALIZER)" if f["localizer"] else "")
        f["okey"] = _orientation_key(f["orientation"] if orientation_valid(f["orientation"]) else None, reps)
    counts = Counter(_key(f) for f in frames if not f["set_aside_reason"])
    if not counts:
        record = _empty_record(uid, len(paths), len(frames) + len(bad), "no_usable_frames")
        return record, _files_table(uid, frames, bad)
    kept_key = counts.most_common(1)[0][0]  # ties: first seen in path order (deterministic)
    kept_idx = []
    for i, f in enumerate(frames):
        if not f["set_aside_reason"]:
            if _key(f) == kept_key:
                kept_idx.append(i)
            else:
                f["set_aside_reason"] = _set_aside_reason(f, kept_key, reps)

    kept, flags = fill_geometry([frames[i] for i in kept_idx])
    normal = normal_of(kept[0]["orientation"])
    for i, f in zip(kept_idx, kept):
        f.update(keep=True, position=float(np.dot(f["ipp"], normal)))
        frames[i] = f
    # sort by position; ties (duplicate positions) by InstanceNumber, path, frame: deterministic
    kept.sort(key=lambda f: (f["position"], f["instance_number"], f["path"], f["frame"]))
    for k, f in enumerate(kept):
        f["order"] = k

    slice_spacing, sflags = _slice_spacing(np.array([f["position"] for f in kept]), kept)
    pixel_spacing = Counter(tuple(f["pixel_spacing"]) for f in kept).most_common(1)[0][0]
    orientation = Counter(tuple(f["orientation"]) for f in kept).most_common(1)[0][0]
    record = {
        "SeriesInstanceUID": uid, "PatientID": Counter(f["patient_id"] for f in kept).most_common(1)[0][0],
        "dicom_modality": Counter(f["modality"] for f in kept).most_common(1)[0][0], "n_files": len(paths),
        "n_frames": len(kept), "rows": int(kept_key[1][0]), "cols": int(kept_key[1][1]),
        "pixel_spacing": [float(v) for v in pixel_spacing], "slice_spacing": slice_spacing,
        "orientation": [float(v) for v in orientation], "normal": [float(v) for v in normal],
        "plane": plane_of(normal), "transfer_syntaxes": sorted({f["transfer_syntax"] for f in kept}),
        "multiframe": any(f["n_frames"] > 1 for f in kept), "geometry_flag": ";".join(flags + sflags),
        "n_set_aside": len(frames) - len(kept) + len(bad),
    }
    return record, _files_table(uid, frames, bad)


def _slice_spacing(positions: np.ndarray, kept: list[dict]) -> tuple[float, list[str]]:
    """Median gap between sorted unique positions (mm) and flags; nominal spacing when undefined."""
    unique = np.unique(np.round(positions, POSITION_DECIMALS))
    flags = []
    if len(unique) < len(positions):
        flags.append("positions_identical" if len(unique) == 1 else "duplicate_positions")
    if len(unique) < 2:
        nominal = [f[k] for k in ("spacing_between_slices", "slice_thickness") for f in kept]
        nominal = [v for v in nominal if v is not None and np.isfinite(v) and v > 0]
        return (float(nominal[0]) if nominal else float("nan")), flags
    gaps = np.diff(unique)  # (n_unique - 1,) mm, all > 0
    median = float(np.median(gaps))
    if gaps.max() > GAP_RATIO * median:
        flags.append("spacing_irregular")
    return median, flags


def _floats_or_nan(v, nan: list) -> list:
    return [float(x) for x in v] if v is not None else list(nan)


def _files_table(uid: str, frames: list[dict], bad: list[dict]) -> pd.DataFrame:
    """Frames + unreadable files -> FILES_COLUMNS, plain Python lists in the list columns."""
    rows = [{
        "SeriesInstanceUID": uid, "path": f["path"], "SOPInstanceUID": f["SOPInstanceUID"], "frame": f["frame"],
        "n_frames": f["n_frames"], "position": f["position"], "ipp": _floats_or_nan(f["ipp"], NAN3),
        "orientation": _floats_or_nan(f["orientation"], NAN6),
        "pixel_spacing": _floats_or_nan(f["pixel_spacing"], NAN2),
        "rows": f["rows"], "cols": f["cols"], "size_bytes": f["size_bytes"], "transfer_syntax": f["transfer_syntax"],
        "modality": f["modality"], "slope": float(f["slope"]), "intercept": float(f["intercept"]),
        "instance_number": f["instance_number"], "keep": f["keep"], "set_aside_reason": f["set_aside_reason"],
        "order": f["order"],
    } for f in frames]
    rows += [{"SeriesInstanceUID": uid, "path": b["path"], "SOPInstanceUID": "", "frame": 0, "n_frames": 0,
              "position": np.nan, "ipp": NAN3, "orientation": NAN6, "pixel_spacing": NAN2, "rows": 0, "cols": 0,
              "size_bytes": b["size_bytes"], "transfer_syntax": "", "modality": "", "slope": 1.0, "intercept": 0.0,
              "instance_number": -1, "keep": False, "set_aside_reason": b["set_aside_reason"], "order": -1}
             for b in bad]
    rows.sort(key=lambda r: (r["path"], r["frame"]))
    out = pd.DataFrame(rows, columns=FILES_COLUMNS)
    return out.astype({"frame": int, "n_frames": int, "position": float, "rows": int, "cols": int, "size_bytes": int,
                       "instance_number": int, "keep": bool, "order": int, "slope": float, "intercept": float})


def _scan_one(args: tuple[Path, Path]) -> tuple[dict, pd.DataFrame]:
    """Worker entry: scan_series, turning an unexpected crash into a reported ``scan_failed`` series."""
    folder, root = args
    try:
        return scan_series(folder, root)
    except Exception as e:  # a bug or an I/O error on one folder must not stop 4,000 others
        log.error("series %s: scan failed: %s: %s", folder.name, type(e).__name__, e)
        try:
            n = sum(1 for p in folder.iterdir() if p.is_file())
        except OSError:
            n = 0
        why = f"{type(e).__name__}: {e}".replace(";", ",")  # ';' separates flags
        return _empty_record(folder.name, n, n, f"scan_failed: {why}"), _files_table(folder.name, [], [])


def scan_all(root: Path, workers: int) -> tuple[list[dict], pd.DataFrame]:
    """scan_series over ``<root>/series/*`` in ``workers`` processes, with a progress bar."""
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    folders = sorted(p for p in (root / "series").iterdir() if p.is_dir()) if (root / "series").is_dir() else []
    jobs = [(f, root) for f in folders]
    bar = dict(total=len(jobs), desc="index: series", unit="series", mininterval=2.0)
    if workers <= 1:
        results = [_scan_one(j) for j in tqdm(jobs, **bar)]
    else:
        # chunks of a few series amortise the pickling; each worker only parses headers (I/O bound)
        chunk = max(1, len(jobs) // (workers * 32))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(tqdm(pool.map(_scan_one, jobs, chunksize=chunk), **bar))
    records = [r for r, _ in results]
    files = pd.concat([f for _, f in results], ignore_index=True) if results else _files_table("", [], [])
    return records, files
