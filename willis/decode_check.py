"""Stage ``decode_check``: a quick test decode per series and ``reports/decode_check.json``.

For every series of the index: decode the first, middle and last kept frame (by position) plus a
few frames the index set aside as inconsistent (is the file itself readable?), never stopping on a
bad file and never decoding a frame twice. Files the index set aside for their pixel data
(truncated, absent, claims above the ``index.max_*`` memory ceilings) are never decoded. pydicom tries every installed decoder plugin for the transfer syntax (pydicom, pylibjpeg,
gdcm); the report lists which ones were available.

Status of a series:
  * ``excluded``: no folder, no usable frame, every test decode of a kept frame failed, all frames
    at one position, or the scan itself failed. Later stages skip it; its reasons stay here.
  * ``partial``: usable, but some files/frames were set aside, a test decode failed, decoded values
    contradict the header (``pixel values``: PixelRepresentation; the reader corrects them), or the
    index flagged the geometry (``geometry_flag``: a fallback was used, duplicate positions,
    irregular gaps, gantry tilt, only reformatted frames).
  * ``ok``: everything kept, decoded and with real geometry.

Report (a DVC-cached output, JSON)::

    {"series": {uid: {"status", "reasons": ["<kind>: <detail naming the file and error>", ...],
                      "modality", "family", "split", "n_frames", "decoded", "in_csv", "has_folder"}},
     "orphans": [uid...],   # folders absent from train.csv (indexed, never trained on)
     "missing": [uid...],   # train.csv rows without a folder (always excluded)
     "decoders": {transfer syntax: [available plugins]},
     "totals": {"status": {status: n}, "reason": {kind: n series}},
     "excluded_fraction": f, "max_excluded_fraction": f}

Later stages: ``load_exclusions(report)`` (uid -> reasons of excluded series) and
``usable_uids(report)``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from willis.dicom.frames import read_frames, representation_problem
from willis.dicom.header import DicomReadError, is_pixel_problem

log = logging.getLogger(__name__)

STATUSES = ("ok", "partial", "excluded")
MAX_LISTED = 20            # per reason kind, files named in one series' reasons (then "... and N more")
MAX_ASIDE_DECODES = 3      # set-aside frames test-decoded per series
# geometry flags (willis.index / willis.dicom) that make a series unusable; the rest are fallbacks
EXCLUDING_FLAGS = {"positions_identical": "all frames at one position", "no_usable_frames": "no usable frame",
                   "scan_failed": "the header scan failed"}

# reason kinds (the part of each reason before ": "), counted in totals.reason
K_NO_FOLDER, K_NOT_IN_CSV, K_UNREADABLE, K_SET_ASIDE = "no folder", "not in train.csv", "unreadable file", "set aside"
K_DECODE, K_ASIDE_DECODE = "decode failed", "set-aside file decode failed"
K_GEOMETRY, K_UNUSABLE = "geometry", "unusable"
K_VALUES = "pixel values"   # decoded values contradict the header (PixelRepresentation); iter_frames corrects them


class DecodeCheckError(RuntimeError):
    """Too many series excluded: the run fails, after the report is written."""


def _listed(kind: str, lines: list[str]) -> list[str]:
    out = [f"{kind}: {line}" for line in lines[:MAX_LISTED]]
    if len(lines) > MAX_LISTED:
        out.append(f"{kind}: ... and {len(lines) - MAX_LISTED} more")
    return out


def _read(root: Path, rows: list, check_shape: bool = True):
    """read_frames over ``rows`` (frames of one file, in that order); raw stored values."""
    r0 = rows[0]
    return read_frames(root / r0.path, [int(r.frame) for r in rows], int(r0.rows), int(r0.cols), r0.transfer_syntax,
                       check_shape=check_shape, samples=1 if check_shape else 3,
                       bits=int(getattr(r0, "bits_allocated", 16) or 16))


def _look(arr: np.ndarray, row) -> tuple[str | None, str | None]:
    """(error, note) about one decoded frame: non-finite values; values contradicting PixelRepresentation."""
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        return f"{row.path} frame {row.frame}: non-finite pixel values", None
    if arr.dtype.kind in "iu":
        why = representation_problem(arr, str(row.modality), float(row.slope), float(row.intercept),
                                     int(getattr(row, "bits_stored", 0) or arr.dtype.itemsize * 8))
        if why:
            return None, f"{row.path} frame {row.frame}: {why}"
    return None, None


def _decode(root: Path, row, check_shape: bool = True) -> str | None:
    """Decode one frame; None when fine, else the error text naming the file (relative to root) and frame."""
    errors, _ = _decode_rows(root, [row], check_shape)
    return errors[0] if errors else None


def _decode_rows(root: Path, rows: list, check_shape: bool = True) -> tuple[list[str], list[str]]:
    """(errors, notes) of frames of ONE file, decoded in one pass; after a failing frame the pass
    resumes at the next one, so no frame is ever decoded twice (a failed decode is never retried)."""
    errors, notes = [], []
    i = 0
    while i < len(rows):
        try:
            for arr in _read(root, rows[i:], check_shape):
                error, note = _look(arr, rows[i])
                errors += [error] if error else []
                notes += [note] if note else []
                i += 1
        except DicomReadError as e:
            errors.append(f"{rows[i].path} frame {rows[i].frame}: {e.reason}")
            i += 1
        except Exception as e:  # a decoder bug must not stop the check: report it like any other failure
            errors.append(f"{rows[i].path} frame {rows[i].frame}: {type(e).__name__}: {e}")
            i += 1
    return errors, notes


def _decode_picks(root: Path, picks: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(errors, notes) of the picked frames; the frames of one file decode in one pass (one header
    parse of a large Enhanced file)."""
    errors, notes = [], []
    for _, group in picks.groupby("path", sort=False):
        e, n = _decode_rows(root, list(group.itertuples()))
        errors, notes = errors + e, notes + n
    return errors, notes


def check_series(record, files: pd.DataFrame, root: str | Path) -> dict:
    """Status and reasons of one scanned series (a series.parquet row or a ``scan_series`` record).

    Returns ``{"status", "reasons", "n_frames", "decoded"}``; never raises on bad files.
    """
    root = Path(root)
    reasons: list[str] = []
    excluded = False
    flags = [f for f in str(record.get("geometry_flag", "") or "").split(";") if f]
    for f in flags:
        name = f.split(":")[0]
        if name in EXCLUDING_FLAGS:
            excluded = True
            reasons.append(f"{K_UNUSABLE}: {EXCLUDING_FLAGS[name]} ({f})")
        else:
            reasons.append(f"{K_GEOMETRY}: {f}")

    aside = files[~files["keep"]]
    unreadable = aside[aside["n_frames"] == 0]        # header could not be read: one row per file
    readable = aside[aside["n_frames"] > 0]
    reasons += _listed(K_UNREADABLE, [f"{r.path}: {r.set_aside_reason}" for r in unreadable.itertuples()])
    by_file = readable.groupby(["path", "set_aside_reason"], sort=True).size()
    reasons += _listed(K_SET_ASIDE, [f"{p} ({n} frame{'s' * (n > 1)}): {why}" for (p, why), n in by_file.items()])

    kept = files[files["keep"]].sort_values("order")
    n = len(kept)
    decoded = 0
    if n == 0:
        excluded = True
        if not any(r.startswith(K_UNUSABLE) for r in reasons):
            reasons.append(f"{K_UNUSABLE}: no usable frame ({len(files)} file rows)")
    else:
        picks = kept.iloc[sorted({0, n // 2, n - 1})]
        errors, notes = _decode_picks(root, picks)
        decoded = len(picks) - len(errors)
        reasons += _listed(K_DECODE, errors)
        reasons += _listed(K_VALUES, notes)
        if decoded == 0:
            excluded = True
            reasons.append(f"{K_UNUSABLE}: none of the {len(picks)} test-decoded frames decoded")
        suspects = readable[[not is_pixel_problem(r) for r in readable["set_aside_reason"]]]
        aside_picks = suspects.drop_duplicates("path").head(MAX_ASIDE_DECODES)
        # set-aside frames may be colour or another shape: only "does it decode at all" is asked
        aside_errors = (_decode(root, r, check_shape=False) for r in aside_picks.itertuples())
        reasons += _listed(K_ASIDE_DECODE, [e for e in aside_errors if e])
    status = "excluded" if excluded else ("partial" if reasons else "ok")
    return {"status": status, "reasons": reasons, "n_frames": int(n), "decoded": int(decoded)}


def _check_one(args) -> tuple[str, dict]:
    record, files, root = args
    uid = record["SeriesInstanceUID"]
    try:
        return uid, check_series(record, files, root)
    except Exception as e:  # a bug on one series is reported as its exclusion, the run goes on
        log.exception("series %s: decode check crashed", uid)
        return uid, {"status": "excluded", "reasons": [f"{K_UNUSABLE}: decode check crashed: {type(e).__name__}: {e}"],
                     "n_frames": int(record.get("n_frames", 0)), "decoded": 0}


def _decoders(transfer_syntaxes) -> dict[str, list[str]]:
    from pydicom.pixels import get_decoder

    out = {}
    for ts in sorted(set(transfer_syntaxes) - {""}):
        try:
            decoder = get_decoder(ts)
            out[ts] = ["pydicom (native)"] if decoder.is_native else sorted(decoder.available_plugins)
        except NotImplementedError:
            out[ts] = []
    return out


def run_decode_check(index_dir: str | Path, root: str | Path, report_path: str | Path, metrics_path: str | Path,
                     *, workers: int, max_excluded_fraction: float) -> dict:
    """The ``decode_check`` stage: check every indexed series, write the report and metrics.

    Raises DecodeCheckError (after writing both files) when the excluded fraction exceeds
    ``max_excluded_fraction``.
    """
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    from willis.index.tables import read_index

    index_dir, root = Path(index_dir), Path(root)
    series = read_index(index_dir, "series")
    files = read_index(index_dir, "files")
    groups = dict(tuple(files.groupby("SeriesInstanceUID", sort=False)))
    empty = files.iloc[:0]
    with_folder = series[series["has_folder"]]
    jobs = [(r, groups.get(r["SeriesInstanceUID"], empty), root) for r in with_folder.to_dict("records")]
    bar = dict(total=len(jobs), desc="decode_check", unit="series", mininterval=2.0)
    if workers <= 1:
        results = dict(_check_one(j) for j in tqdm(jobs, **bar))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = dict(tqdm(pool.map(_check_one, jobs, chunksize=max(1, len(jobs) // (workers * 16))), **bar))

    report_series = {}
    for r in series.to_dict("records"):
        uid = r["SeriesInstanceUID"]
        res = results.get(uid) or {"status": "excluded", "n_frames": 0, "decoded": 0,
                                   "reasons": [f"{K_NO_FOLDER}: train.csv row has no folder series/{uid}"]}
        if not r["in_csv"]:
            res["reasons"] = res["reasons"] + [f"{K_NOT_IN_CSV}: folder has no train.csv row: no labels, not trained on"]
        report_series[uid] = {"status": res["status"], "reasons": res["reasons"], "modality": r["Modality"],
                              "family": r["family"], "split": r["split"], "n_frames": res["n_frames"],
                              "decoded": res["decoded"], "in_csv": bool(r["in_csv"]),
                              "has_folder": bool(r["has_folder"])}
    status = Counter(v["status"] for v in report_series.values())
    kinds = Counter(k for v in report_series.values() for k in {x.split(":")[0] for x in v["reasons"]})
    n = len(report_series)
    frac = status["excluded"] / n if n else 0.0
    report = {
        "series": report_series,
        "orphans": series.loc[~series["in_csv"], "SeriesInstanceUID"].tolist(),
        "missing": series.loc[~series["has_folder"], "SeriesInstanceUID"].tolist(),
        "decoders": _decoders(files["transfer_syntax"]),
        "totals": {"status": {s: status[s] for s in STATUSES}, "reason": dict(sorted(kinds.items()))},
        "excluded_fraction": frac, "max_excluded_fraction": max_excluded_fraction,
    }
    metrics = {**{s: status[s] for s in STATUSES}, "orphans": len(report["orphans"]),
               "missing": len(report["missing"]), "excluded_fraction": round(frac, 6)}
    for path, obj in ((report_path, report), (metrics_path, metrics)):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(obj, indent=1, sort_keys=False) + "\n")
    log.info("decode_check: %s", metrics)
    if frac > max_excluded_fraction:
        raise DecodeCheckError(
            f"{status['excluded']} of {n} series excluded ({frac:.1%}) > decode_check.max_excluded_fraction "
            f"= {max_excluded_fraction:.1%}; reasons per series in {report_path}")
    return metrics


def load_exclusions(report_path: str | Path) -> dict[str, list[str]]:
    """uid -> reasons, for every series the decode check excluded."""
    rep = read_decode_report(report_path)
    return {u: list(v["reasons"]) for u, v in rep["series"].items() if v["status"] == "excluded"}


excluded = load_exclusions  # the name docs/ARCHITECTURE.md uses


def usable_uids(report_path: str | Path) -> set[str]:
    """Series with status ok or partial (their reasons stay in the report)."""
    rep = read_decode_report(report_path)
    return {u for u, v in rep["series"].items() if v["status"] != "excluded"}


def read_decode_report(report_path: str | Path) -> dict:
    """The report at ``report_path``, its per-series entries checked (a status of STATUSES, a list of
    reasons); errors name the file and the series. Every later reader goes through this."""
    path = Path(report_path)
    try:
        rep = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{path}: no decode report here (has the `decode_check` stage run?)") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a JSON decode report: {e}") from e
    if not isinstance(rep, dict) or not isinstance(rep.get("series"), dict):
        raise ValueError(f"{path}: expected an object with a 'series' mapping")
    for uid, v in rep["series"].items():
        if not isinstance(v, dict) or v.get("status") not in STATUSES or not isinstance(v.get("reasons"), list):
            raise ValueError(f"{path}: series {uid}: expected a status in {STATUSES} and a list of reasons, got {v!r}")
    return rep
