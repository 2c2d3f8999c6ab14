"""Decoding: the frames of one file (``read_frames``) and the kept frames of one series (``iter_frames``).

* ``iter_frames(files, root)``: the kept frames of one series, sorted by position, as float32
  (rows, cols), native-endian, in modality units: ``to_modality`` (below) for every modality.

Decoding uses pydicom's pixel API (``pydicom.pixels.iter_pixels``), which tries every installed
plugin for the transfer syntax (pydicom's own, pylibjpeg, gdcm), lazily from disk: one frame in
memory at a time. A deflated file is streamed by ``willis.dicom.deflate`` (never inflated whole).

Fast paths (``iter_frames``, and ``read_frames`` given the header facts the index already holds:
``n_frames``, ``signed``, ``bits_stored``), the same values as pydicom's, no header parsed:

* native (uncompressed) pixel data (``willis.dicom.native``): a single frame is a few
  ``readinto`` calls into a reused buffer; an Enhanced multi-frame file is opened once and every
  frame of a run read at its offset, with no per-frame decoder set-up;
* RLE Lossless: the file's fragments found the same way and each decoded by pylibjpeg-rle
  (``rle.rle.decode_frame``, the library pydicom's ``pylibjpeg`` plugin calls).

Either is used only when the file's bytes prove the layout (the Pixel Data element is the file's
last, of exactly the claimed length, or a well-formed item sequence ending at the end of the file);
anything else (a trailing element, a different length, a deflated or JPEG file) goes to pydicom.
``iter_frames(..., reuse=True)`` writes every frame into one float32 buffer (the caller must not
keep it past the next frame).
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
from willis.dicom.native import StoredLayout, direct_reader

log = logging.getLogger(__name__)

HU_IMPOSSIBLE = 30000.0   # no CT tissue or metal reaches this; the HU a wrongly unsigned air (-1000) gives is 64536


def read_frames(path: str | Path, indices: list[int], rows: int, cols: int,
                transfer_syntax: str = "", check_shape: bool = True, *, samples: int = 1, bits: int = 16,
                limits: ReadLimits = DEFAULT_LIMITS, n_frames: int | None = None, signed: bool | None = None,
                bits_stored: int | None = None, reuse: bool = False) -> Iterator[np.ndarray]:
    """Decode frames ``indices`` of one file, in that order, one at a time: (rows, cols) raw stored values.

    ``check_shape`` False accepts any decoded shape (e.g. a colour frame being test-decoded).
    The file is opened once; pydicom decodes frame by frame (a deflated file: one streamed pass).
    Nothing is retried: the first failure raises DicomReadError naming the file, frame and reason.
    ``n_frames``, ``signed`` (PixelRepresentation 1) and ``bits_stored`` (from files.parquet) allow
    the fast paths of the module docstring; ``reuse`` lets them yield one buffer, overwritten by
    the next frame.
    """
    one = frame_bytes(rows, cols, samples, bits)
    if one > limits.max_frame_bytes:
        raise DicomReadError(path, f"pixel data claims {one} bytes per frame > index.max_frame_bytes = "
                                   f"{limits.max_frame_bytes}: not decoded", indices[0] if indices else None)
    done = 0
    try:
        direct = None
        if n_frames is not None and signed is not None and bits_stored is not None and samples == 1:
            direct = direct_reader(path, indices, StoredLayout(rows, cols, bits, int(bits_stored), bool(signed),
                                                              int(n_frames), transfer_syntax), reuse)
        if direct is not None:
            frames = direct
        elif transfer_syntax == DeflatedExplicitVRLittleEndian:
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


def to_modality(stored: np.ndarray, row, out: np.ndarray | None = None) -> np.ndarray:
    """Raw stored values of one frame -> float32 (rows, cols) in modality units (rules in the module doc).

    ``out``: a float32 array of the frame's shape to write into (returned), else a new array."""
    slope, intercept = float(getattr(row, "slope", 1.0)), float(getattr(row, "intercept", 0.0))
    modality = str(getattr(row, "modality", ""))
    bits_stored = int(getattr(row, "bits_stored", 0) or stored.dtype.itemsize * 8)
    problem = representation_problem(stored, modality, slope, intercept, bits_stored) if stored.dtype.kind in "iu" else ""
    if (stored.dtype.kind in "iu" and not problem and out is not None
            and str(getattr(row, "photometric", "MONOCHROME2")) != "MONOCHROME1"):
        # the common case in place: the same float32 values as below (an integer's float32 is the
        # same from int64 or from its own type; then one float32 multiply and one add)
        np.copyto(out, stored, casting="unsafe")
        if slope != 1.0 or intercept != 0.0:
            np.multiply(out, np.float32(slope), out=out)
            np.add(out, np.float32(intercept), out=out)
        return out
    values = stored.astype(np.int64) if stored.dtype.kind in "iu" else stored.astype(np.float64)
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
    res = values.astype(np.float32)     # astype -> native byte order (big-endian files too)
    if slope != 1.0 or intercept != 0.0:
        res = res * np.float32(slope) + np.float32(intercept)
    if out is not None:
        out[...] = res
        return out
    return res


def iter_frames(files: pd.DataFrame, root: str | Path, errors: list | None = None,
                reuse: bool = False) -> Iterator[tuple[object, np.ndarray]]:
    """Yield ``(row, frame)`` for the kept frames of ONE series in position order (``order`` 0..n-1).

    ``files`` are that series' rows of ``files.parquet`` (or of ``scan_series``); ``row`` is a
    namedtuple of the row (``row.position``, ``row.ipp``, ...). ``frame`` is float32 (rows, cols),
    native-endian, in modality units (``to_modality``: rescale, MONOCHROME1, PixelRepresentation).
    A multi-frame file is opened once per run of consecutive frames.

    ``errors``: None -> the first failure raises DicomReadError; a list -> each failure is
    appended as a DicomReadError (and logged) and the frames of that file are skipped.
    ``reuse``: every frame is written into the same float32 buffer (valid until the next one).
    """
    kept = files[files["keep"]].sort_values("order")
    rows_iter = kept.itertuples(index=False)
    fast = all(c in kept.columns for c in ("n_frames", "pixel_representation", "bits_stored"))
    buf: np.ndarray | None = None
    for path, run in groupby(rows_iter, key=lambda r: r.path):
        run = list(run)
        try:
            r0 = run[0]
            rows, cols = int(r0.rows), int(r0.cols)
            bits = int(getattr(r0, "bits_allocated", 16) or 16)
            facts = ({"n_frames": int(r0.n_frames), "signed": int(r0.pixel_representation) == 1,
                      "bits_stored": int(r0.bits_stored or bits), "reuse": reuse} if fast else {})
            frames = read_frames(Path(root) / path, [int(r.frame) for r in run], rows, cols,
                                 r0.transfer_syntax, bits=bits, **facts)
            for r, arr in zip(run, frames):
                if reuse and (buf is None or buf.shape != arr.shape):
                    buf = np.empty(arr.shape, np.float32)
                yield r, to_modality(arr, r, buf if reuse else None)
        except DicomReadError as e:
            if errors is None:
                raise
            log.warning("skipping %s", e)
            errors.append(e)
