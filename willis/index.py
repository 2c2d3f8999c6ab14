"""The header-only series index (stage ``index``): ``data/index/{series,files,localizers}.parquet``.

``scan_series(folder, root)`` reads the headers of one series folder (``predict`` reuses it on a
single folder); ``build_index(...)`` runs it over ``<root>/series/*`` in worker processes, joins
``train.csv`` and ``train_localizers.csv``, assigns splits (``willis.splits``) and writes the tables.

Schema (``validate_index`` checks it; lists are Python lists of floats, NaN where unknown)

series.parquet, one row per series folder or ``train.csv`` row, sorted by SeriesInstanceUID:
  SeriesInstanceUID str; PatientID str (CSV has none: from the headers, '' without a folder);
  Modality str (CSV: CTA / MRA / MRI T2 / MRI T1post, '' if not in the CSV); family str (ct / mr,
  from Modality, else from the DICOM Modality tag, else ''); the 14 ``LABELS`` int (-1 if not in the
  CSV); PatientAge int (-1 unknown); PatientSex str; dicom_modality str; n_files int (files in the
  folder, readable or not); n_frames int (kept frames); rows, cols int; pixel_spacing [2] (mm
  between rows, between columns); slice_spacing float (median gap of the sorted unique kept
  positions, mm); orientation [6] (row cosine, column cosine); normal [3]; plane str
  (axial / coronal / sagittal / oblique, '' without frames); transfer_syntaxes [str] (of kept
  files); multiframe bool; geometry_flag str (';'-joined flags, '' when fine; see FLAGS and
  ``willis.dicomio``); n_set_aside int (frames and unreadable files not kept); in_csv bool;
  has_folder bool; split str (train / val / test, '' when not used); smoke bool.

files.parquet, one row per FRAME (a single-frame file is one row, frame 0; an unreadable file is
one row with keep False), sorted by (SeriesInstanceUID, path, frame):
  SeriesInstanceUID str (the folder); path str (relative to data.root, POSIX); SOPInstanceUID str;
  frame int (0-based); n_frames int (frames in that file); position float (mm along the series
  normal, NaN if unknown); ipp [3] (LPS mm); orientation [6]; pixel_spacing [2]; rows, cols int;
  size_bytes int (of the whole file); transfer_syntax str; modality str (DICOM tag); slope,
  intercept float (CT: HU = stored * slope + intercept); instance_number int (-1 absent);
  keep bool (in the largest consistent group); set_aside_reason str ('' when kept);
  order int (0..n-1 among kept frames sorted by position, -1 otherwise).

localizers.parquet, one row per ``train_localizers.csv`` row:
  SeriesInstanceUID, SOPInstanceUID str; frame int ('f' of the coordinates, else 0); location str;
  x, y float (pixels: x = column, y = row); patient [3] (LPS mm of the point: ipp + x * spacing
  between columns * row cosine + y * spacing between rows * column cosine; NaN if not found);
  found bool (that SOP/frame is in files.parquet); order int (kept order of that frame, -1 if not kept).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from willis.dicomio import (DicomReadError, fill_geometry, frame_headers, normal_of, orientation_valid,
                            plane_of, scan_file)
from willis.labels import LABELS

log = logging.getLogger(__name__)

ORIENT_TOL = 0.02        # frames whose cosines differ by less than this share an orientation
POSITION_DECIMALS = 3    # positions equal to 1 micrometre count as one slice position
GAP_RATIO = 1.5          # a gap above GAP_RATIO x the median slice spacing flags spacing_irregular
NAN2, NAN3, NAN6 = [float("nan")] * 2, [float("nan")] * 3, [float("nan")] * 6
# Series-level geometry flags set here (dicomio adds orientation_/pixel_spacing_/position_missing).
FLAGS = ("positions_identical", "duplicate_positions", "spacing_irregular", "no_usable_frames", "scan_failed")

SERIES_COLUMNS = (["SeriesInstanceUID", "PatientID", "Modality", "family", *LABELS, "PatientAge", "PatientSex",
                   "dicom_modality", "n_files", "n_frames", "rows", "cols", "pixel_spacing", "slice_spacing",
                   "orientation", "normal", "plane", "transfer_syntaxes", "multiframe", "geometry_flag",
                   "n_set_aside", "in_csv", "has_folder", "split", "smoke"])
FILES_COLUMNS = ["SeriesInstanceUID", "path", "SOPInstanceUID", "frame", "n_frames", "position", "ipp",
                 "orientation", "pixel_spacing", "rows", "cols", "size_bytes", "transfer_syntax", "modality",
                 "slope", "intercept", "instance_number", "keep", "set_aside_reason", "order"]
LOCALIZER_COLUMNS = ["SeriesInstanceUID", "SOPInstanceUID", "frame", "location", "x", "y", "patient", "found", "order"]


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


def join_csv(records: list[dict], csv: pd.DataFrame) -> pd.DataFrame:
    """Scanned folders (outer-)joined with train.csv rows -> SERIES_COLUMNS minus split/smoke."""
    from willis.labels import CSV_COLUMNS, DICOM_MODALITY_FAMILY, MODALITY_FAMILY

    missing_cols = [c for c in CSV_COLUMNS if c not in csv.columns]
    if missing_cols:
        raise ValueError(f"train.csv: missing column(s) {missing_cols}")
    dup = csv.loc[csv["SeriesInstanceUID"].duplicated(), "SeriesInstanceUID"].tolist()
    if dup:
        raise ValueError(f"train.csv: {len(dup)} duplicated SeriesInstanceUID row(s), e.g. {dup[:5]}")
    scanned = pd.DataFrame(records, columns=list(_empty_record("", 0, 0, "")))
    scanned["has_folder"] = True
    table = csv[list(CSV_COLUMNS)].assign(in_csv=True).merge(scanned, on="SeriesInstanceUID", how="outer")
    table["in_csv"] = table["in_csv"].astype("boolean").fillna(False).astype(bool)
    table["has_folder"] = table["has_folder"].astype("boolean").fillna(False).astype(bool)
    for c in LABELS:
        table[c] = table[c].fillna(-1).astype(int)
    table["PatientAge"] = pd.to_numeric(table["PatientAge"], errors="coerce").fillna(-1).astype(int)
    for c in ("Modality", "PatientSex", "PatientID", "dicom_modality", "plane", "geometry_flag"):
        table[c] = table[c].fillna("").astype(str)
    absent = ~table["has_folder"]
    table.loc[absent, "geometry_flag"] = ""
    for c in ("n_files", "n_frames", "rows", "cols", "n_set_aside"):
        table[c] = table[c].fillna(0).astype(int)
    table["slice_spacing"] = table["slice_spacing"].astype(float)
    table["multiframe"] = table["multiframe"].astype("boolean").fillna(False).astype(bool)
    for c, fill in (("pixel_spacing", NAN2), ("orientation", NAN6), ("normal", NAN3), ("transfer_syntaxes", [])):
        table[c] = [list(v) if isinstance(v, (list, tuple, np.ndarray)) else list(fill) for v in table[c]]
    family = table["Modality"].map(MODALITY_FAMILY)
    table["family"] = family.fillna(table["dicom_modality"].map(DICOM_MODALITY_FAMILY)).fillna("")
    return table.sort_values("SeriesInstanceUID").reset_index(drop=True)


def join_localizers(loc: pd.DataFrame, files: pd.DataFrame) -> pd.DataFrame:
    """train_localizers.csv rows -> LOCALIZER_COLUMNS: frame, pixel x/y and the LPS point they name."""
    import ast

    rows = []
    key = files.set_index(["SeriesInstanceUID", "SOPInstanceUID", "frame"])
    key = key[~key.index.duplicated()]
    for r in loc.itertuples(index=False):
        try:
            c = ast.literal_eval(r.coordinates)
            x, y, f = float(c["x"]), float(c["y"]), int(c.get("f", 0))
        except (ValueError, SyntaxError, KeyError, TypeError) as e:
            log.warning("localizer %s / %s: unparseable coordinates %r (%s)",
                        r.SeriesInstanceUID, r.SOPInstanceUID, r.coordinates, e)
            x = y = float("nan")
            f = 0
        k = (r.SeriesInstanceUID, r.SOPInstanceUID, f)
        found = k in key.index and np.isfinite(x)
        patient, order = NAN3, -1
        if found:
            fr = key.loc[k]
            o, ps, ipp = np.asarray(fr["orientation"]), np.asarray(fr["pixel_spacing"]), np.asarray(fr["ipp"])
            # x runs along the row cosine (column index) by the column spacing ps[1]; y along the column cosine by ps[0]
            patient = [float(v) for v in ipp + x * ps[1] * o[:3] + y * ps[0] * o[3:]]
            order = int(fr["order"])
        rows.append({"SeriesInstanceUID": r.SeriesInstanceUID, "SOPInstanceUID": r.SOPInstanceUID, "frame": f,
                     "location": r.location, "x": x, "y": y, "patient": patient, "found": bool(found), "order": order})
    return pd.DataFrame(rows, columns=LOCALIZER_COLUMNS)


def validate_index(series: pd.DataFrame, files: pd.DataFrame, localizers: pd.DataFrame) -> None:
    """Raise ValueError naming the table and column when the tables break the schema above."""
    for name, df, cols in (("series", series, SERIES_COLUMNS), ("files", files, FILES_COLUMNS),
                           ("localizers", localizers, LOCALIZER_COLUMNS)):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise ValueError(f"{name}.parquet: missing column(s) {missing}")
    if series["SeriesInstanceUID"].duplicated().any():
        dup = series.loc[series["SeriesInstanceUID"].duplicated(), "SeriesInstanceUID"].tolist()[:5]
        raise ValueError(f"series.parquet: duplicate SeriesInstanceUID {dup}")
    if not set(series["split"]) <= {"", "train", "val", "test"}:
        raise ValueError(f"series.parquet: split values {sorted(set(series['split']))}")
    if (series["smoke"] & (series["split"] == "")).any():
        raise ValueError("series.parquet: a smoke series has no split")
    used = series[series["split"] != ""]
    if (used["n_frames"] <= 0).any() or not used["in_csv"].all():
        raise ValueError("series.parquet: a series with a split has no frames or is not in train.csv")
    per_patient = used[used["PatientID"] != ""].groupby("PatientID")["split"].nunique()
    if (per_patient > 1).any():
        leaks = per_patient[per_patient > 1].index[:5].tolist()
        raise ValueError(f"series.parquet: patient(s) in several splits: {leaks}")
    kept = files[files["keep"]]
    if (files.loc[~files["keep"], "set_aside_reason"] == "").any():
        raise ValueError("files.parquet: a frame not kept has no set_aside_reason")
    if (files.loc[~files["keep"], "order"] != -1).any():
        raise ValueError("files.parquet: a frame not kept has an order")
    n_kept = kept.groupby("SeriesInstanceUID").size()
    frames = series.set_index("SeriesInstanceUID")["n_frames"]
    if not n_kept.reindex(frames.index, fill_value=0).equals(frames.astype(n_kept.dtype)):
        raise ValueError("files.parquet: kept frames per series differ from series.n_frames")
    for uid, g in kept.groupby("SeriesInstanceUID"):
        if sorted(g["order"]) != list(range(len(g))) or g.sort_values("order")["position"].diff().lt(0).any():
            raise ValueError(f"files.parquet: series {uid}: order is not 0..n-1 by increasing position")
    if not localizers["found"].isin([True, False]).all():
        raise ValueError("localizers.parquet: found must be bool")


def build_index(root: str | Path, out: str | Path, *, workers: int, val_fraction: float, test_fraction: float,
                smoke_sizes: dict[str, int], seed: int) -> dict:
    """The ``index`` stage: scan, join, split, validate, write ``<out>/{series,files,localizers}.parquet``.

    Returns a summary (counts of series, frames, orphans, missing folders, flags).
    """
    from willis.splits import assign_splits, smoke_subset

    root, out = Path(root), Path(out)
    csv_path, loc_path = root / "train.csv", root / "train_localizers.csv"
    csv = pd.read_csv(csv_path, dtype={"SeriesInstanceUID": str})
    loc = pd.read_csv(loc_path, dtype=str) if loc_path.exists() else pd.DataFrame(
        columns=["SeriesInstanceUID", "SOPInstanceUID", "coordinates", "location"])
    records, files = scan_all(root, workers)
    series = join_csv(records, csv)
    orphans = series.loc[~series["in_csv"], "SeriesInstanceUID"].tolist()
    missing = series.loc[~series["has_folder"], "SeriesInstanceUID"].tolist()
    if orphans:
        log.warning("%d series folder(s) absent from train.csv (indexed, not trained on): %s",
                    len(orphans), orphans[:10])
    if missing:
        log.warning("%d train.csv row(s) with no series folder: %s", len(missing), missing[:10])
    eligible = series["in_csv"] & series["has_folder"] & (series["n_frames"] > 0)
    series["split"] = assign_splits(series, eligible, val_fraction, test_fraction, seed)
    series["smoke"] = smoke_subset(series, smoke_sizes, seed)
    series = series[SERIES_COLUMNS]
    files = files.sort_values(["SeriesInstanceUID", "path", "frame"], kind="stable").reset_index(drop=True)
    localizers = join_localizers(loc, files)
    validate_index(series, files, localizers)
    out.mkdir(parents=True, exist_ok=True)
    series.to_parquet(out / "series.parquet", index=False)
    files.to_parquet(out / "files.parquet", index=False)
    localizers.to_parquet(out / "localizers.parquet", index=False)
    flags = Counter(f.split(":")[0] for fl in series["geometry_flag"] for f in fl.split(";") if f)
    summary = {"series": len(series), "frames_kept": int(files["keep"].sum()), "files_rows": len(files),
               "orphans": len(orphans), "missing": len(missing), "splits": series["split"].value_counts().to_dict(),
               "smoke": int(series["smoke"].sum()), "geometry_flags": dict(flags),
               "localizers_not_found": int((~localizers["found"]).sum())}
    log.info("index: %s", summary)
    return summary
