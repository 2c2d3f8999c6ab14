"""Decoding: the frames of one file (``read_frames``) and the kept frames of one series (``iter_frames``).

* ``iter_frames(files, root)``: the kept frames of one series, sorted by position, as float32
  (rows, cols), native-endian, in modality units: ``to_modality`` (below) for every modality.

Decoding uses pydicom's pixel API (``pydicom.pixels.iter_pixels``), which tries every installed
plugin for the transfer syntax (pydicom's own, pylibjpeg, gdcm), lazily from disk: one frame in
memory at a time. A deflated file is streamed by ``willis.dicom.deflate`` (never inflated whole).
A failed decode is never retried: the first error is the report. Before decoding, a frame's size
is checked against ``ReadLimits.max_frame_bytes`` (the scan has already checked every claim).
Every failure raises ``DicomReadError`` naming the file, the frame and the reason.

``to_modality(stored, row)`` -> float32 in modality units, the same rules for every modality so one
kept group is on one scale:

* ``value = stored * slope + intercept`` with the frame's own RescaleSlope / RescaleIntercept
  (Enhanced: per-frame PixelValueTransformation, else shared, else top level; absent: 1 and 0).
  CT: Hounsfield units. MR: the scanner's display scale (Philips per-frame rescale differs between
  frame types and dynamics; RealWorldValueMapping is not used: it maps to quantitative units, e.g.
  a field map in Hz, which no MR projection needs);
* ``PhotometricInterpretation`` MONOCHROME1 (minimum = white): stored values are mirrored within
  their range first (``lo + hi - stored``), so the MIP shows what a MONOCHROME2 twin shows;
* ``PixelRepresentation`` contradicted by the values: CT stored as unsigned whose values only make
  sense as two's complement (HU above ``HU_IMPOSSIBLE`` from a stored value with the sign bit set)
  is read as signed; MR magnitude stored as signed with negative values (magnitude is >= 0) is read
  as unsigned. ``representation_problem`` says which applies (``decode_check`` reports it).
"""

from __future__ import annotations

import logging
from itertools import groupby
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
from pydicom.pixels import iter_pixels
from pydicom.uid import DeflatedExplicitVRLittleEndian

from willis.dicom.deflate import iter_deflated_frames
from willis.dicom.header import DicomReadError
from willis.dicom.limits import DEFAULT_LIMITS, ReadLimits, frame_bytes

log = logging.getLogger(__name__)

HU_IMPOSSIBLE = 30000.0   # no CT tissue or metal reaches this; the HU a wrongly unsigned air (-1000) gives is 64536


def read_frames(path: str | Path, indices: list[int], rows: int, cols: int,
                transfer_syntax: str = "", check_shape: bool = True, *, samples: int = 1, bits: int = 16,
                limits: ReadLimits = DEFAULT_LIMITS) -> Iterator[np.ndarray]:
    """Decode frames ``indices`` of one file, in that order, one at a time: (rows, cols) raw stored values.

    ``check_shape`` False accepts any decoded shape (e.g. a colour frame being test-decoded).
    The file is opened once; pydicom decodes frame by frame (a deflated file: one streamed pass).
    Nothing is retried: the first failure raises DicomReadError naming the file, frame and reason.
    """
    one = frame_bytes(rows, cols, samples, bits)
    if one > limits.max_frame_bytes:
        raise DicomReadError(path, f"pixel data claims {one} bytes per frame > index.max_frame_bytes = "
                                   f"{limits.max_frame_bytes}: not decoded", indices[0] if indices else None)
    done = 0
    try:
        if transfer_syntax == DeflatedExplicitVRLittleEndian:
            frames = iter_deflated_frames(path, indices)
        else:
            frames = iter_pixels(path, indices=indices)
        for arr in frames:
            yield _check_shape(arr, path, indices[done], rows, cols) if check_shape else arr
            done += 1
    except DicomReadError:
        raise
    except Exception as e:  # any plugin error (or a DeflateError): reported once, never retried
        frame = indices[done] if done < len(indices) else None
        why = " ".join(f"{type(e).__name__}: {e}".split())  # one line: it goes into reports
        raise DicomReadError(path, f"decode failed: {why}", frame) from e


def _check_shape(arr: np.ndarray, path, frame: int, rows: int, cols: int) -> np.ndarray:
    if arr.shape != (rows, cols):
        raise DicomReadError(path, f"decoded shape {arr.shape}, expected ({rows}, {cols}) (colour or corrupt)", frame)
    return arr


def _stored_range(bits_stored: int, signed: bool) -> tuple[int, int]:
    return (-(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1) if signed else (0, (1 << bits_stored) - 1)


def representation_problem(stored: np.ndarray, modality: str, slope: float, intercept: float, bits_stored: int,
                           image_type=()) -> str:
    """'' or how the values contradict the PixelRepresentation that decoded them (``to_modality`` fixes it)."""
    if stored.dtype.kind == "u" and modality == "CT" and bits_stored >= 2:
        sign = 1 << (bits_stored - 1)
        high = stored >= sign
        if high.any() and float(stored[high].max()) * slope + intercept > HU_IMPOSSIBLE:
            return ("PixelRepresentation 0 (unsigned) but stored values with the sign bit set give HU above "
                    f"{HU_IMPOSSIBLE:.0f}: read as signed (two's complement)")
    if stored.dtype.kind == "i" and modality == "MR" and "PHASE" not in image_type and (stored < 0).any():
        return "PixelRepresentation 1 (signed) but MR magnitude values are negative: read as unsigned"
    return ""


def to_modality(stored: np.ndarray, row) -> np.ndarray:
    """Raw stored values of one frame -> float32 (rows, cols) in modality units (rules in the module doc)."""
    slope, intercept = float(getattr(row, "slope", 1.0)), float(getattr(row, "intercept", 0.0))
    modality = str(getattr(row, "modality", ""))
    bits_stored = int(getattr(row, "bits_stored", 0) or stored.dtype.itemsize * 8)
    values = stored.astype(np.int64) if stored.dtype.kind in "iu" else stored.astype(np.float64)
    problem = representation_problem(stored, modality, slope, intercept, bits_stored) if stored.dtype.kind in "iu" else ""
    signed = stored.dtype.kind == "i"
    if problem and not signed:          # unsigned -> two's complement in bits_stored bits
        values = np.where(values >= 1 << (bits_stored - 1), values - (1 << bits_stored), values)
        signed = True
    elif problem and signed:            # signed -> unsigned in bits_stored bits
        values = np.where(values < 0, values + (1 << bits_stored), values)
        signed = False
    if str(getattr(row, "photometric", "MONOCHROME2")) == "MONOCHROME1" and stored.dtype.kind in "iu":
        lo, hi = _stored_range(bits_stored, signed)
        values = lo + hi - values
    out = values.astype(np.float32)     # astype -> native byte order (big-endian files too)
    if slope != 1.0 or intercept != 0.0:
        out = out * np.float32(slope) + np.float32(intercept)
    return out


def iter_frames(files: pd.DataFrame, root: str | Path,
                errors: list | None = None) -> Iterator[tuple[object, np.ndarray]]:
    """Yield ``(row, frame)`` for the kept frames of ONE series in position order (``order`` 0..n-1).

    ``files`` are that series' rows of ``files.parquet`` (or of ``scan_series``); ``row`` is a
    namedtuple of the row (``row.position``, ``row.ipp``, ...). ``frame`` is float32 (rows, cols),
    native-endian, in modality units (``to_modality``: rescale, MONOCHROME1, PixelRepresentation).
    A multi-frame file is opened once per run of consecutive frames.

    ``errors``: None -> the first failure raises DicomReadError; a list -> each failure is
    appended as a DicomReadError (and logged) and the frames of that file are skipped.
    """
    kept = files[files["keep"]].sort_values("order")
    rows_iter = kept.itertuples(index=False)
    for path, run in groupby(rows_iter, key=lambda r: r.path):
        run = list(run)
        try:
            r0 = run[0]
            frames = read_frames(Path(root) / path, [int(r.frame) for r in run], int(r0.rows), int(r0.cols),
                                 r0.transfer_syntax, bits=int(getattr(r0, "bits_allocated", 16) or 16))
            for r, arr in zip(run, frames):
                yield r, to_modality(arr, r)
        except DicomReadError as e:
            if errors is None:
                raise
            log.warning("skipping %s", e)
            errors.append(e)
