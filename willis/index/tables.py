"""The header-only series index (stage ``index``): ``data/index/{series,files,localizers}.parquet``.

``build_index(...)`` runs ``willis.index.scan.scan_series`` over ``<root>/series/*`` in worker
processes (``scan_all``), joins ``train.csv`` and ``train_localizers.csv``, assigns splits
(``willis.splits``) and writes the tables. The column constants are here, except ``FILES_COLUMNS``:
it lives with the scanner that builds the files table (``willis.index.scan``).

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
  files); multiframe bool; geometry_flag str (';'-joined flags, '' when fine; see scan.FLAGS and
  ``willis.dicom.geometry``); n_set_aside int (frames and unreadable files not kept); in_csv bool;
  has_folder bool; split str (train / val / test, '' when not used); smoke bool;
  gantry_tilt float (deg between the slice normal and the line through the slice origins; 0 for an
  ordinary stack, NaN with < 2 positions; > 0.5 also flags ``gantry_tilt:<deg>``); volume_choice str
  (which volume of a 4-D group was kept, e.g. ``TemporalPositionIndex 1 of 4 values``; '' when the
  group had one frame per position; see ``willis.index.volumes``).

files.parquet, one row per FRAME (a single-frame file is one row, frame 0; an unreadable file is
one row with keep False), sorted by (SeriesInstanceUID, path, frame):
  SeriesInstanceUID str (the folder); path str (relative to data.root, POSIX); SOPInstanceUID str;
  frame int (0-based); n_frames int (frames in that file); position float (mm along the series
  normal, NaN if unknown); ipp [3] (LPS mm); orientation [6]; pixel_spacing [2]; rows, cols int;
  size_bytes int (of the whole file); transfer_syntax str; modality str (DICOM tag); slope,
  intercept float (CT: HU = stored * slope + intercept); instance_number int (-1 absent);
  keep bool (in the largest consistent group); set_aside_reason str ('' when kept);
  order int (0..n-1 among kept frames sorted by position, -1 otherwise); image_type str (ImageType,
  or the Enhanced frame's FrameType, '\\'-joined); photometric str (PhotometricInterpretation);
  pixel_representation, bits_allocated, bits_stored int (0 for an unreadable file). A file whose
  pixel data is unusable (``willis.dicom.header.scan_file``: truncated, absent, claims above the
  ``index.max_*`` ceilings) is ONE row (frame 0, n_frames as claimed), never one row per claimed frame.
  A folder entry that is no readable file (subdirectory, non-UTF-8 name, broken link) is one row
  with n_frames 0 (its path is shown with undecodable bytes as \\xNN).

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

from willis.dicom.limits import DEFAULT_LIMITS, ReadLimits
from willis.index.csvs import read_localizers_csv, read_train_csv
from willis.index.scan import FILES_COLUMNS, NAN2, NAN3, NAN6, _empty_record, scan_all
from willis.labels import LABELS

log = logging.getLogger(__name__)

SERIES_COLUMNS = (["SeriesInstanceUID", "PatientID", "Modality", "family", *LABELS, "PatientAge", "PatientSex",
                   "dicom_modality", "n_files", "n_frames", "rows", "cols", "pixel_spacing", "slice_spacing",
                   "orientation", "normal", "plane", "transfer_syntaxes", "multiframe", "geometry_flag",
                   "n_set_aside", "in_csv", "has_folder", "split", "smoke", "gantry_tilt", "volume_choice"])
LOCALIZER_COLUMNS = ["SeriesInstanceUID", "SOPInstanceUID", "frame", "location", "x", "y", "patient", "found", "order"]


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
    for c in ("Modality", "PatientSex", "PatientID", "dicom_modality", "plane", "geometry_flag", "volume_choice"):
        table[c] = table[c].fillna("").astype(str)
    absent = ~table["has_folder"]
    table.loc[absent, "geometry_flag"] = ""
    for c in ("n_files", "n_frames", "rows", "cols", "n_set_aside"):
        table[c] = table[c].fillna(0).astype(int)
    table["slice_spacing"] = table["slice_spacing"].astype(float)
    table["gantry_tilt"] = table["gantry_tilt"].astype(float)
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
                smoke_sizes: dict[str, int], seed: int, limits: ReadLimits = DEFAULT_LIMITS) -> dict:
    """The ``index`` stage: scan, join, split, validate, write ``<out>/{series,files,localizers}.parquet``.

    ``train.csv`` / ``train_localizers.csv`` are validated first (``willis.index.csvs``: a CsvError
    names the line and column). ``limits``: the ``index.max_*`` memory ceilings of the scan.
    Returns a summary (counts of series, frames, orphans, missing folders, flags).
    """
    from willis.splits import assign_splits, smoke_subset

    root, out = Path(root), Path(out)
    csv_path, loc_path = root / "train.csv", root / "train_localizers.csv"
    csv = read_train_csv(csv_path)
    loc = read_localizers_csv(loc_path)
    records, files = scan_all(root, workers, limits)
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


# ---------------------------------------------------------------- readers (the only way the tables are read back)

TABLE_COLUMNS = {"series": SERIES_COLUMNS, "files": FILES_COLUMNS, "localizers": LOCALIZER_COLUMNS}
# the series columns a stage needs to take one family's split with its labels (train, evaluate)
SPLIT_LABEL_COLUMNS = ("SeriesInstanceUID", "Modality", "family", "split", "smoke", *LABELS)


def index_path(index_dir: str | Path, table: str = "series") -> Path:
    """``<index_dir>/<table>.parquet`` for ``table`` in series / files / localizers."""
    if table not in TABLE_COLUMNS:
        raise ValueError(f"unknown index table {table!r}; expected one of {sorted(TABLE_COLUMNS)}")
    return Path(index_dir) / f"{table}.parquet"


def read_index(index_dir: str | Path, table: str = "series", *, require=None) -> pd.DataFrame:
    """One table of the index in ``index_dir``, its columns checked against the schema above.

    ``require`` names the columns the caller reads (default: every column of that table's schema);
    each must be a schema column, and a file without one raises ValueError naming the file.
    """
    path = index_path(index_dir, table)
    schema = TABLE_COLUMNS[table]
    need = list(schema) if require is None else list(require)
    unknown = [c for c in need if c not in schema]
    if unknown:
        raise ValueError(f"{table}.parquet has no column(s) {unknown} in its schema (willis/index/tables.py)")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no index table here (has the `index` stage run?)")
    df = pd.read_parquet(path)
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    return df
