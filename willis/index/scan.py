"""Per-series header scan: ``scan_series`` (one series folder) and ``scan_all`` (every folder, in processes).

``scan_series(folder, root, limits)`` reads the headers of one series folder (``predict`` reuses it
on a single folder) and keeps its largest consistent group of frames; ``scan_all(root, workers)``
runs it over ``<root>/series/*`` for ``willis.index.tables.build_index``. The files table it returns
(``FILES_COLUMNS``) is described in the schema of ``willis.index.tables``; every situation it
handles, and the reason text it gives, is tabulated in ``docs/dicom.md``.

What is set aside before grouping (one reason per frame, first match wins): pixel data that cannot
be used (``willis.dicom.header.scan_file``: truncated, absent, claims above the memory ceilings; such
a file is ONE row, its frames never expanded), colour, Secondary Capture, Siemens MOSAIC, localizer,
scanner-made projections (DERIVED + PROJECTION IMAGE / MIP), phase / real / imaginary / field-map
frames; reformatted frames when acquired ones are there too. The kept group is then the largest of
(SeriesInstanceUID, Modality, rows x cols, orientation); ``willis.index.volumes`` keeps one volume
of a 4-D group. Folder entries that are not readable files (subdirectories, names that are not
UTF-8, broken links) are one row each with their reason; the other files are unaffected.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from willis.dicom.geometry import fill_geometry, frame_headers, normal_of, orientation_valid, plane_of
from willis.dicom.header import DicomReadError, scan_file
from willis.dicom.limits import DEFAULT_LIMITS, ReadLimits
from willis.index.volumes import POSITION_DECIMALS, choose_volume, tilt_degrees

log = logging.getLogger(__name__)

ORIENT_TOL = 0.02        # frames whose cosines differ by less than this share an orientation
GAP_RATIO = 1.5          # a gap above GAP_RATIO x the median slice spacing flags spacing_irregular
TILT_MIN_DEG = 0.5       # slice origins off the normal by more than this: flag gantry_tilt
NAN2, NAN3, NAN6 = [float("nan")] * 2, [float("nan")] * 3, [float("nan")] * 6
# Series-level geometry flags set here (willis.dicom.geometry adds orientation_/pixel_spacing_/
# position_missing).
FLAGS = ("positions_identical", "duplicate_positions", "spacing_irregular", "gantry_tilt", "derived_reformatted",
         "no_usable_frames", "scan_failed")

FILES_COLUMNS = ["SeriesInstanceUID", "path", "SOPInstanceUID", "frame", "n_frames", "position", "ipp",
                 "orientation", "pixel_spacing", "rows", "cols", "size_bytes", "transfer_syntax", "modality",
                 "slope", "intercept", "instance_number", "keep", "set_aside_reason", "order",
                 "image_type", "photometric", "pixel_representation", "bits_allocated", "bits_stored"]

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"   # SOP classes 1.2.840.10008.5.1.4.1.1.7[.n]
PROJECTION_TOKENS = {"PROJECTION IMAGE", "MIP", "MNIP", "MINIP", "MIN IP", "MAX IP", "MAXIP", "VOLUME RENDER"}
PROJECTION_CALC = {"MAX_IP", "MIN_IP", "VOLUME_RENDER", "SURFACE_RENDER", "RAY_SUM"}  # VolumeBasedCalculationTechnique
FIELD_MAP_TOKENS = {"FIELD_MAP", "FIELDMAP", "B0", "B0_MAP", "B0MAP"}
COMPONENT_TOKENS = {"P": "PHASE", "PHASE": "PHASE", "R": "REAL", "REAL": "REAL", "I": "IMAGINARY",
                    "IMAGINARY": "IMAGINARY"}   # classic ImageType value 3+ (Siemens P, Philips P / R / I)


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
    uid, modality, shape, o = f["series_uid"], f["modality"], (f["rows"], f["cols"]), f["okey"]
    if uid != kept_key[0]:
        return f"SeriesInstanceUID {uid} differs from the kept group's {kept_key[0]}"
    if modality != kept_key[1]:
        return f"Modality {modality or '(none)'} differs from the kept group's {kept_key[1] or '(none)'}"
    if shape != kept_key[2]:
        return f"{shape[0]}x{shape[1]} differs from the kept group's {kept_key[2][0]}x{kept_key[2][1]}"
    return "orientation {} differs from the kept group's {}".format(
        "missing/invalid" if o == -1 else reps[o], "missing/invalid" if kept_key[3] == -1 else reps[kept_key[3]])


def _component(types: tuple, complex_component: str) -> str:
    """'' for a magnitude (or unlabelled) frame, else what it is: 'field map', 'frame type PHASE', ..."""
    values = set(types[2:])
    if values & FIELD_MAP_TOKENS:
        return "field map"
    for v in types[2:]:
        # Philips classic: P_FFE / R_FFE / I_FFE name the component before the sequence
        kind = COMPONENT_TOKENS.get(v) or (COMPONENT_TOKENS.get(v.split("_")[0]) if "_" in v else None)
        if kind:
            return f"frame type {kind}"
    if complex_component and complex_component not in ("MAGNITUDE", "NONE"):
        return f"frame type {complex_component}"
    return ""


def _content_reason(f: dict) -> str:
    """Why a frame is no image of the anatomy to project ('' when it is)."""
    types = f["image_type"]
    shown = "\\".join(types)
    if f["samples"] != 1:
        return "colour image (SamplesPerPixel != 1)"
    if f["sop_class"].startswith(SECONDARY_CAPTURE):
        return f"secondary capture (SOP class {f['sop_class']}): not an acquired volume"
    if "MOSAIC" in types:
        return (f"Siemens MOSAIC (ImageType {shown}): tiled fMRI/DWI slices, not unpacked "
                "(not an angiography acquisition)")
    if f["localizer"] or "LOCALIZER" in types:
        return "localizer image (ImageType LOCALIZER)"
    derived = "DERIVED" in types[:1]
    if (derived and (set(types) & PROJECTION_TOKENS or any(t.startswith("MIP_") or t.endswith("_MIP") for t in types))) \
            or f.get("volume_calc", "") in PROJECTION_CALC:
        return f"projection image (ImageType {shown}): a scanner-made MIP / rendering, not a volume"
    component = _component(types, f["complex_component"])
    if component:
        return f"{component} (ImageType {shown}): only magnitude frames are kept"
    return ""


def _reformatted(f: dict) -> bool:
    return "DERIVED" in f["image_type"][:1] and "REFORMATTED" in f["image_type"]


def _empty_record(uid: str, n_files: int, n_set_aside: int, flag: str) -> dict:
    return {"SeriesInstanceUID": uid, "PatientID": "", "dicom_modality": "", "n_files": n_files, "n_frames": 0,
            "rows": 0, "cols": 0, "pixel_spacing": NAN2, "slice_spacing": float("nan"), "orientation": NAN6,
            "normal": NAN3, "plane": "", "transfer_syntaxes": [], "multiframe": False, "geometry_flag": flag,
            "n_set_aside": n_set_aside, "gantry_tilt": float("nan"), "volume_choice": ""}


def _key(f: dict) -> tuple:
    return f["series_uid"], f["modality"], (f["rows"], f["cols"]), f["okey"]


def _printable(name: str) -> str:
    """A file name as valid UTF-8 text: undecodable bytes shown as \\xNN (it can be written to parquet)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _entry_problem(p: Path) -> str:
    """Why a folder entry is not a file to scan ('' when it is one)."""
    try:
        p.name.encode("utf-8")
    except UnicodeEncodeError:
        return "file name is not valid UTF-8: not indexed (rename the file; its bytes are shown as \\xNN)"
    if p.is_dir():
        try:
            n = sum(1 for _ in p.iterdir())
        except OSError:
            n = "?"
        return f"subdirectory ({n} entries): not scanned (a series folder holds its files directly)"
    if not p.is_file():
        return "not a regular file (broken link, socket or device)"
    return ""


def scan_series(folder: Path, root: Path, limits: ReadLimits = DEFAULT_LIMITS) -> tuple[dict, pd.DataFrame]:
    """Headers of every file in one series folder -> (series record, files table with FILES_COLUMNS).

    Keeps the largest consistent group of frames (same SeriesInstanceUID, Modality, rows x cols and
    orientation), one volume of it (``willis.index.volumes``); every other frame, file or folder
    entry gets ``keep=False`` and a ``set_aside_reason``. ``limits``: the memory ceilings checked
    before any decode (``index.max_*``). Never raises on a bad file: unreadable and non-DICOM files
    become rows with their reason. Plain Python lists inside (one DataFrame at the end): the scan
    must stay as fast as pydicom's parse.
    """
    folder, root = Path(folder), Path(root)
    uid = folder.name
    entries = sorted(folder.iterdir())
    frames: list[dict] = []
    bad: list[dict] = []
    for p in entries:
        rel = _printable(p.relative_to(root).as_posix())
        problem = _entry_problem(p)
        if problem:
            bad.append({"path": rel + ("/" if p.is_dir() else ""), "size_bytes": 0, "set_aside_reason": problem})
            continue
        try:
            size = p.stat().st_size
            ds, problem = scan_file(p, limits)
            # a file whose pixel data cannot be used is one row: its claimed frames are never expanded
            for fr in frame_headers(ds, p, first_only=bool(problem)):
                frames.append({**fr, "path": rel, "size_bytes": size, "keep": False, "position": np.nan, "order": -1,
                               "problem": problem})
        except (DicomReadError, OSError) as e:
            bad.append({"path": rel, "size_bytes": 0, "set_aside_reason": getattr(e, "reason", None)
                        or f"unreadable: {type(e).__name__}: {e}"})

    # frames that cannot join any group: unusable pixel data, colour, captures, mosaics, scouts,
    # projections, non-magnitude frames
    reps: list = []
    for f in frames:
        f["set_aside_reason"] = f["problem"] or _content_reason(f)
        f["okey"] = _orientation_key(f["orientation"] if orientation_valid(f["orientation"]) else None, reps)
    flags: list[str] = []
    usable = [f for f in frames if not f["set_aside_reason"]]
    if any(not _reformatted(f) for f in usable):
        for f in usable:
            if _reformatted(f):
                f["set_aside_reason"] = (f"reformatted image (ImageType {'/'.join(f['image_type'])}) beside acquired "
                                         "frames: the acquired ones are kept")
    elif usable:
        flags.append("derived_reformatted")   # only reformatted frames: kept, and said so
    counts = Counter(_key(f) for f in frames if not f["set_aside_reason"])
    if not counts:
        record = _empty_record(uid, len(entries), len(frames) + len(bad), "no_usable_frames")
        return record, _files_table(uid, frames, bad)
    kept_key = counts.most_common(1)[0][0]  # ties: first seen in path order (deterministic)
    kept_idx = []
    for i, f in enumerate(frames):
        if not f["set_aside_reason"]:
            if _key(f) == kept_key:
                kept_idx.append(i)
            else:
                f["set_aside_reason"] = _set_aside_reason(f, kept_key, reps)

    group, gflags = fill_geometry([frames[i] for i in kept_idx])
    flags += gflags
    normal = normal_of(group[0]["orientation"])
    for i, f in zip(kept_idx, group):
        f["position"] = float(np.dot(f["ipp"], normal))
        frames[i] = f
    kept, aside, volume_choice, vflags = choose_volume(group)
    flags += vflags
    for f, why in aside:
        f["set_aside_reason"] = why
    for f in kept:
        f["keep"] = True
    # sort by position; ties (only positions_identical) by InstanceNumber, path, frame: deterministic
    kept.sort(key=lambda f: (f["position"], f["instance_number"], f["path"], f["frame"]))
    for k, f in enumerate(kept):
        f["order"] = k

    slice_spacing, sflags = _slice_spacing(np.array([f["position"] for f in kept]), kept)
    tilt = tilt_degrees(kept, normal)
    if np.isfinite(tilt) and tilt > TILT_MIN_DEG:
        sflags.append(f"gantry_tilt:{tilt:.1f}")
    pixel_spacing = Counter(tuple(f["pixel_spacing"]) for f in kept).most_common(1)[0][0]
    orientation = Counter(tuple(f["orientation"]) for f in kept).most_common(1)[0][0]
    record = {
        "SeriesInstanceUID": uid, "PatientID": Counter(f["patient_id"] for f in kept).most_common(1)[0][0],
        "dicom_modality": Counter(f["modality"] for f in kept).most_common(1)[0][0], "n_files": len(entries),
        "n_frames": len(kept), "rows": int(kept_key[2][0]), "cols": int(kept_key[2][1]),
        "pixel_spacing": [float(v) for v in pixel_spacing], "slice_spacing": slice_spacing,
        "orientation": [float(v) for v in orientation], "normal": [float(v) for v in normal],
        "plane": plane_of(normal), "transfer_syntaxes": sorted({f["transfer_syntax"] for f in kept}),
        "multiframe": any(f["n_frames"] > 1 for f in kept), "geometry_flag": ";".join(flags + sflags),
        "n_set_aside": len(frames) - len(kept) + len(bad), "gantry_tilt": tilt, "volume_choice": volume_choice,
    }
    return record, _files_table(uid, frames, bad)


def _slice_spacing(positions: np.ndarray, kept: list[dict]) -> tuple[float, list[str]]:
    """Median gap between sorted unique positions (mm) and flags; nominal spacing when undefined."""
    unique = np.unique(np.round(positions, POSITION_DECIMALS))
    flags: list[str] = []   # duplicates were resolved (or flagged) by willis.index.volumes
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
        "order": f["order"], "image_type": "\\".join(f["image_type"]), "photometric": f["photometric"],
        "pixel_representation": f["pixel_representation"], "bits_allocated": f["bits_allocated"],
        "bits_stored": f["bits_stored"],
    } for f in frames]
    rows += [{"SeriesInstanceUID": uid, "path": b["path"], "SOPInstanceUID": "", "frame": 0, "n_frames": 0,
              "position": np.nan, "ipp": NAN3, "orientation": NAN6, "pixel_spacing": NAN2, "rows": 0, "cols": 0,
              "size_bytes": b["size_bytes"], "transfer_syntax": "", "modality": "", "slope": 1.0, "intercept": 0.0,
              "instance_number": -1, "keep": False, "set_aside_reason": b["set_aside_reason"], "order": -1,
              "image_type": "", "photometric": "", "pixel_representation": 0, "bits_allocated": 0, "bits_stored": 0}
             for b in bad]
    rows.sort(key=lambda r: (r["path"], r["frame"]))
    out = pd.DataFrame(rows, columns=FILES_COLUMNS)
    return out.astype({"frame": int, "n_frames": int, "position": float, "rows": int, "cols": int, "size_bytes": int,
                       "instance_number": int, "keep": bool, "order": int, "slope": float, "intercept": float,
                       "pixel_representation": int, "bits_allocated": int, "bits_stored": int})


def _scan_one(args: tuple) -> tuple[dict, pd.DataFrame]:
    """Worker entry: scan_series, turning an unexpected crash into a reported ``scan_failed`` series."""
    folder, root, limits = args
    try:
        return scan_series(folder, root, limits)
    except Exception as e:  # a bug or an I/O error on one folder must not stop 4,000 others
        log.error("series %s: scan failed: %s: %s", folder.name, type(e).__name__, e)
        try:
            n = sum(1 for p in folder.iterdir() if p.is_file())
        except OSError:
            n = 0
        why = f"{type(e).__name__}: {e}".replace(";", ",")  # ';' separates flags
        return _empty_record(folder.name, n, n, f"scan_failed: {why}"), _files_table(folder.name, [], [])


def scan_all(root: Path, workers: int, limits: ReadLimits = DEFAULT_LIMITS) -> tuple[list[dict], pd.DataFrame]:
    """scan_series over ``<root>/series/*`` in ``workers`` processes, with a progress bar."""
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    folders = sorted(p for p in (root / "series").iterdir() if p.is_dir()) if (root / "series").is_dir() else []
    jobs = [(f, root, limits) for f in folders]
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
