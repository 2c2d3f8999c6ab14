"""DICOM reading: headers, per-frame geometry (classic and Enhanced multi-frame), streamed frames.

Three jobs, all per file, none holding a whole series in memory:

* ``read_header(path)``: the header only (``stop_before_pixels``, ``specific_tags``);
  ``scan_file(path)`` adds a cheap check that the pixel data is whole (no decoding).
* ``frame_headers(ds, path)``: one dict per frame (``FRAME_KEYS``) with its geometry and rescale.
  Classic single-frame files carry ``ImagePositionPatient`` / ``ImageOrientationPatient`` /
  ``PixelSpacing`` / ``RescaleSlope`` at the top level. Enhanced multi-frame files (most real
  multi-frame MR) carry them in ``PerFrameFunctionalGroupsSequence`` (per frame, preferred) and
  ``SharedFunctionalGroupsSequence`` (all frames): ``PlanePositionSequence``,
  ``PlaneOrientationSequence``, ``PixelMeasuresSequence``, ``PixelValueTransformationSequence``.
  A value that is absent or unreadable is ``None`` here; the series scanner
  (``willis.index.scan_series``) applies the fallback below and flags it.
* ``iter_frames(files, root)``: the kept frames of one series, sorted by position, as float32
  (rows, cols), native-endian, in modality units (CT: HU via the frame's slope/intercept; MR: raw).

Missing-geometry fallback (``fill_geometry``; every use adds a flag to the series'
``geometry_flag``, e.g. ``"position_missing;pixel_spacing_missing"``):

* orientation absent or not two orthonormal cosines -> the most common valid orientation among the
  series' frames, else axial ``(1,0,0, 0,1,0)``; flag ``orientation_missing`` / ``orientation_invalid``;
* pixel spacing absent or <= 0 -> ``(1.0, 1.0)`` mm; flag ``pixel_spacing_missing``;
* position absent on any frame -> all frames placed along the normal in (InstanceNumber, path,
  frame) order at ``SpacingBetweenSlices`` or ``SliceThickness`` or 1 mm; flag ``position_missing``.

Decoding uses pydicom's pixel API (``pydicom.pixels.iter_pixels``), which tries every installed
plugin for the transfer syntax (pydicom's own, pylibjpeg, gdcm). A file that pydicom cannot decode
lazily from disk (e.g. deflated transfer syntax) is read whole once and decoded from the dataset.
Every failure raises ``DicomReadError`` naming the file, the frame and the reason.
"""

from __future__ import annotations

import logging
import struct
from collections import Counter
from itertools import groupby
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import iter_pixels
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian

log = logging.getLogger(__name__)

# Top-level tags the index needs; everything else (and pixel data) is skipped while parsing.
HEADER_TAGS: list[str] = [
    "SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "PatientID", "PatientAge", "PatientSex",
    "Modality", "ImageType", "InstanceNumber", "Rows", "Columns", "NumberOfFrames", "SamplesPerPixel",
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
    "SpacingBetweenSlices", "RescaleSlope", "RescaleIntercept", "BitsAllocated",
    "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence",
]
_TAGS = [tag_for_keyword(kw) for kw in HEADER_TAGS]
AXIAL_ORIENTATION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # fallback: rows -> posterior, columns -> left
DEFAULT_PIXEL_SPACING = (1.0, 1.0)                  # mm, fallback when PixelSpacing is absent
DEFAULT_SLICE_SPACING = 1.0                         # mm, fallback when no position and no thickness
ORTHO_TOL = 1e-2       # |cosine| must be 1 +- this and the two cosines orthogonal within this
PLANE_MIN_COS = 0.8    # |normal . axis| above this names the plane (a 30 deg gantry tilt stays axial)


class DicomReadError(Exception):
    """A file that cannot be read or decoded; the message names the file (and frame) and why."""

    def __init__(self, path, reason: str, frame: int | None = None):
        self.path, self.reason, self.frame = str(path), reason, frame
        where = f"{path}" if frame is None else f"{path} frame {frame}"
        super().__init__(f"{where}: {reason}")


def read_header(path: str | Path) -> pydicom.Dataset:
    """Header of one file (no pixel data). Raises DicomReadError if it is not a readable DICOM file."""
    return scan_file(path)[0]


_PIXEL_TAGS = {0x7FE00010: "Pixel Data", 0x7FE00008: "Float Pixel Data", 0x7FE00009: "Double Float Pixel Data"}
UNDEFINED_LENGTH = 0xFFFFFFFF
MAX_FRAGMENTS = 1_000_000   # items walked in encapsulated pixel data before calling it malformed


def scan_file(path: str | Path) -> tuple[pydicom.Dataset, str]:
    """Header of one file plus a cheap pixel-data integrity check, opening the file once.

    Returns ``(ds, problem)``: ``problem`` is '' or why the pixel data cannot be whole, found
    without decoding: no Pixel Data element, a native Pixel Data shorter than Rows x Columns x
    frames needs, a file that ends before its Pixel Data does, or encapsulated (compressed) pixel
    data whose fragments run past the end of the file or lack the closing sequence delimiter.
    Deflated files are not checked (the pixel data is inside the deflate stream). Raises
    DicomReadError when the file is not DICOM or its header is unreadable.
    """
    try:
        with open(path, "rb") as fp:
            ds = pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=_TAGS)
            # pydicom leaves fp at the start of the pixel data element it stopped before
            return ds, _pixel_problem(fp, ds, Path(path).stat().st_size)
    except InvalidDicomError as e:
        raise DicomReadError(path, "not a DICOM file (no 'DICM' prefix / file meta)") from e
    except DicomReadError:
        raise
    except Exception as e:  # truncated or corrupt header: pydicom raises many types
        raise DicomReadError(path, f"unreadable header: {type(e).__name__}: {e}") from e


def is_pixel_problem(reason: str) -> bool:
    """Whether a set-aside reason came from ``scan_file``'s pixel-data check (decoding it again tells nothing)."""
    return reason.startswith(("no Pixel Data", "file truncated", "Pixel Data holds", "malformed encapsulated",
                              "file ends inside"))


def _pixel_problem(fp, ds: pydicom.Dataset, size: int) -> str:
    meta = getattr(ds, "file_meta", None)
    ts = UID(str(meta.get("TransferSyntaxUID", "")) if meta is not None else "")
    if ts == DeflatedExplicitVRLittleEndian or not ts:
        return ""
    start = fp.tell()
    head = fp.read(12)
    if len(head) < 8:
        return "no Pixel Data element"
    little = ts != ExplicitVRBigEndian
    order = "<" if little else ">"
    group, elem = struct.unpack(order + "HH", head[:4])
    tag = group << 16 | elem
    if tag != 0x7FE00010:
        return f"no Pixel Data element ({_PIXEL_TAGS.get(tag, hex(tag))} instead)"
    implicit = ts == ImplicitVRLittleEndian
    if implicit:
        (length,), header = struct.unpack(order + "I", head[4:8]), 8
    else:
        if len(head) < 12:
            return "file ends inside the Pixel Data element header"
        (length,), header = struct.unpack(order + "I", head[8:12]), 12
    if length == UNDEFINED_LENGTH:
        return _encapsulated_problem(fp, start + header, size)
    end = start + header + length
    if end > size:
        return f"file truncated: Pixel Data ends at byte {end}, the file has {size} bytes"
    try:
        rows, cols = _int(ds, "Rows"), _int(ds, "Columns")
        frames, samples = _int(ds, "NumberOfFrames", 1), _int(ds, "SamplesPerPixel", 1)
        bits = _int(ds, "BitsAllocated", 16)
    except ValueError:
        return ""  # frame_headers reports the malformed value itself
    if rows and cols and frames and samples and bits:
        needed = rows * cols * frames * samples * bits // 8 if bits >= 8 else (rows * cols * frames * samples + 7) // 8
        if length < needed:
            return f"Pixel Data holds {length} bytes, {rows}x{cols}x{frames} frame(s) need {needed}"
    return ""


def _encapsulated_problem(fp, pos: int, size: int) -> str:
    """Walk the item headers of encapsulated pixel data (8 bytes each, fragments skipped unread)."""
    for _ in range(MAX_FRAGMENTS):
        fp.seek(pos)
        item = fp.read(8)
        if len(item) < 8:
            return f"file truncated: encapsulated pixel data has no closing sequence delimiter (file has {size} bytes)"
        group, elem, length = struct.unpack("<HHI", item)  # encapsulated data is always little endian
        if (group, elem) == (0xFFFE, 0xE0DD):
            return ""
        if (group, elem) != (0xFFFE, 0xE000):
            return f"malformed encapsulated pixel data: tag ({group:04X},{elem:04X}) at byte {pos}"
        pos += 8 + length
        if pos > size:
            return f"file truncated: a pixel data fragment ends at byte {pos}, the file has {size} bytes"
    return f"malformed encapsulated pixel data: more than {MAX_FRAGMENTS} items"


def _floats(value, n: int) -> tuple[float, ...] | None:
    """``n`` finite floats from a DICOM multi-value, or None when absent / malformed."""
    if value is None:
        return None
    values = _multi(value)
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def _fg(item, seq: str, keyword: str):
    """``item.<seq>[0].<keyword>`` of a functional-group item, None when any level is absent."""
    if item is None:
        return None
    inner = item.get(seq)
    return inner[0].get(keyword) if inner else None


# Fast path for the flat top-level tags: parse the raw bytes ourselves (pydicom's per-element
# conversion and validation cost ~3x the file parse itself; see benchmarks/bench_index.py).
_TAG = {kw: tag_for_keyword(kw) for kw in HEADER_TAGS}
_BINARY = {"US": "H", "SS": "h", "UL": "I", "SL": "i"}


def _top(ds: pydicom.Dataset, keyword: str):
    """Top-level value of ``keyword``: str, list[str] (multi-valued), int (binary VRs) or None.

    Falls back to pydicom's own conversion for anything but a plain raw text/binary element.
    """
    elem = ds.get_item(_TAG[keyword])
    if elem is None:
        return None
    if not isinstance(elem, RawDataElement):
        return elem.value
    vr = elem.VR or dictionary_VR(elem.tag)
    raw = elem.value
    if not raw:
        return None
    if vr in _BINARY:
        size = struct.calcsize(_BINARY[vr])
        return struct.unpack(("<" if elem.is_little_endian else ">") + _BINARY[vr], raw[:size])[0]
    if vr in ("SQ", "OB", "OW", "UN"):
        return ds[elem.tag].value
    parts = raw.decode("latin-1").strip(" \x00").split("\\")
    parts = [v.strip(" \x00") for v in parts]
    return parts if len(parts) > 1 else (parts[0] or None)


def _int(ds, keyword: str, default: int | None = None) -> int | None:
    value = _top(ds, keyword)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"invalid {keyword} {value!r}") from e


def _multi(value) -> list:
    return [] if value is None else (list(value) if isinstance(value, (list, tuple, MultiValue)) else [value])


def _str(ds, keyword: str) -> str:
    value = _top(ds, keyword)
    return "" if value is None else ("\\".join(map(str, value)) if isinstance(value, list) else str(value))


FRAME_KEYS = ("SOPInstanceUID", "frame", "n_frames", "ipp", "orientation", "pixel_spacing", "slope",
              "intercept", "slice_thickness", "spacing_between_slices", "rows", "cols", "samples",
              "transfer_syntax", "modality", "series_uid", "patient_id", "instance_number", "localizer")


def frame_headers(ds: pydicom.Dataset, path: str | Path) -> list[dict]:
    """One dict per frame (keys ``FRAME_KEYS``); geometry values are None where the file lacks them."""
    try:
        n_frames = _int(ds, "NumberOfFrames", 1)
        rows, cols = _int(ds, "Rows"), _int(ds, "Columns")
        samples = _int(ds, "SamplesPerPixel", 1)
        instance = _int(ds, "InstanceNumber", -1)
    except ValueError as e:
        raise DicomReadError(path, str(e)) from e
    if rows is None or cols is None:
        raise DicomReadError(path, "no Rows/Columns: not an image")
    if n_frames < 1:
        raise DicomReadError(path, f"NumberOfFrames is {n_frames}")
    meta = getattr(ds, "file_meta", None)
    common = {
        "SOPInstanceUID": _str(ds, "SOPInstanceUID"), "n_frames": n_frames, "rows": rows, "cols": cols,
        "samples": samples, "modality": _str(ds, "Modality"), "series_uid": _str(ds, "SeriesInstanceUID"),
        "patient_id": _str(ds, "PatientID"),
        "transfer_syntax": str(meta.get("TransferSyntaxUID", "")) if meta is not None else "",
        "instance_number": instance,
        "localizer": "LOCALIZER" in [str(v).upper() for v in _multi(_top(ds, "ImageType"))],
    }
    shared_seq = _top(ds, "SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else None
    per_frame = _top(ds, "PerFrameFunctionalGroupsSequence") or []

    def pick(pf, seq: str, keyword: str):
        # per-frame value first, then shared, then the classic top-level element
        for source in (_fg(pf, seq, keyword), _fg(shared, seq, keyword)):
            if source is not None:
                return source
        return _top(ds, keyword)

    out = []
    for f in range(n_frames):
        pf = per_frame[f] if f < len(per_frame) else None
        ipp = _fg(pf, "PlanePositionSequence", "ImagePositionPatient")
        if ipp is None and n_frames == 1:  # top-level IPP describes frame 0 only
            ipp = _top(ds, "ImagePositionPatient")
        slope = _floats(pick(pf, "PixelValueTransformationSequence", "RescaleSlope"), 1)
        intercept = _floats(pick(pf, "PixelValueTransformationSequence", "RescaleIntercept"), 1)
        thick = _floats(pick(pf, "PixelMeasuresSequence", "SliceThickness"), 1)
        between = _floats(pick(pf, "PixelMeasuresSequence", "SpacingBetweenSlices"), 1)
        out.append({
            **common, "frame": f, "ipp": _floats(ipp, 3),
            "orientation": _floats(pick(pf, "PlaneOrientationSequence", "ImageOrientationPatient"), 6),
            "pixel_spacing": _floats(pick(pf, "PixelMeasuresSequence", "PixelSpacing"), 2),
            "slope": slope[0] if slope and slope[0] != 0 else 1.0,
            "intercept": intercept[0] if intercept else 0.0,
            "slice_thickness": thick[0] if thick else None,
            "spacing_between_slices": between[0] if between else None,
        })
    return out


def orientation_valid(o) -> bool:
    """Two unit, orthogonal direction cosines (within ORTHO_TOL)."""
    if o is None:
        return False
    r, c = np.asarray(o[:3]), np.asarray(o[3:])
    return bool(abs(np.linalg.norm(r) - 1) < ORTHO_TOL and abs(np.linalg.norm(c) - 1) < ORTHO_TOL
                and abs(np.dot(r, c)) < ORTHO_TOL)


def normal_of(orientation) -> np.ndarray:
    """Slice normal (3,) = row cosine x column cosine (unit)."""
    n = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:], float))
    return n / np.linalg.norm(n)


def plane_of(normal) -> str:
    """axial / coronal / sagittal when the normal is within acos(PLANE_MIN_COS) of an LPS axis, else oblique."""
    a = np.abs(np.asarray(normal, float))
    axis = int(np.argmax(a))
    if a[axis] < PLANE_MIN_COS:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]  # normal along x (L), y (P), z (S)


def fill_geometry(frames: list[dict]) -> tuple[list[dict], list[str]]:
    """Apply the documented fallback to the frames of one consistent group; returns (frames, flags).

    ``frames`` are ``frame_headers`` dicts plus ``path``; the returned copies have no None in
    ``orientation`` / ``pixel_spacing`` / ``ipp``.
    """
    frames = [dict(f) for f in frames]
    flags: list[str] = []
    valid = [tuple(f["orientation"]) for f in frames if orientation_valid(f["orientation"])]
    if len(valid) < len(frames):
        flags.append("orientation_missing" if any(f["orientation"] is None for f in frames) else "orientation_invalid")
        fallback = Counter(valid).most_common(1)[0][0] if valid else AXIAL_ORIENTATION
        for f in frames:
            f["orientation"] = tuple(f["orientation"]) if orientation_valid(f["orientation"]) else fallback
    if any(f["pixel_spacing"] is None or min(f["pixel_spacing"]) <= 0 for f in frames):
        flags.append("pixel_spacing_missing")
        for f in frames:
            if f["pixel_spacing"] is None or min(f["pixel_spacing"]) <= 0:
                f["pixel_spacing"] = DEFAULT_PIXEL_SPACING
    if any(f["ipp"] is None for f in frames):
        flags.append("position_missing")
        nominal = [f[k] for k in ("spacing_between_slices", "slice_thickness") for f in frames]
        step = next((v for v in nominal if v is not None and np.isfinite(v) and v > 0), DEFAULT_SLICE_SPACING)
        normal = normal_of(frames[0]["orientation"])
        rank = sorted(range(len(frames)),
                      key=lambda i: (frames[i]["instance_number"], frames[i]["path"], frames[i]["frame"]))
        for k, i in enumerate(rank):
            frames[i]["ipp"] = tuple(float(v) for v in k * step * normal)
    return frames, flags


def read_frames(path: str | Path, indices: list[int], rows: int, cols: int,
                transfer_syntax: str = "", check_shape: bool = True) -> Iterator[np.ndarray]:
    """Decode frames ``indices`` of one file, in that order, one at a time: (rows, cols) raw stored values.

    ``check_shape`` False accepts any decoded shape (e.g. a colour frame being test-decoded).
    The file is opened once; pydicom decodes frame by frame. If lazy decoding fails (e.g. a
    deflated transfer syntax, which needs the whole file inflated), the remaining frames are
    decoded from the fully read dataset. Raises DicomReadError naming the file, frame and reason.
    """
    done = 0
    first_error = "skipped lazy decode (deflated transfer syntax)"
    try:
        if transfer_syntax == DeflatedExplicitVRLittleEndian:
            raise _Deflated  # the lazy reader cannot inflate: go straight to the whole-file read
        for arr in iter_pixels(path, indices=indices):
            yield _check_shape(arr, path, indices[done], rows, cols) if check_shape else arr
            done += 1
        return
    except DicomReadError:
        raise
    except _Deflated:
        pass
    except Exception as first:  # any plugin error: fall back below, keep the first reason
        first_error = " ".join(f"{type(first).__name__}: {first}".split())  # one line: it goes into reports
    try:
        ds = pydicom.dcmread(path)
        for arr in iter_pixels(ds, indices=indices[done:]):
            yield _check_shape(arr, path, indices[done], rows, cols) if check_shape else arr
            done += 1
    except DicomReadError:
        raise
    except Exception as e:
        frame = indices[done] if done < len(indices) else None
        raise DicomReadError(path, f"decode failed: {first_error} (whole-file retry failed too: {type(e).__name__})",
                             frame) from e


class _Deflated(Exception):
    """Internal: the file needs the whole-file read."""


def _check_shape(arr: np.ndarray, path, frame: int, rows: int, cols: int) -> np.ndarray:
    if arr.shape != (rows, cols):
        raise DicomReadError(path, f"decoded shape {arr.shape}, expected ({rows}, {cols}) (colour or corrupt)", frame)
    return arr


def iter_frames(files: pd.DataFrame, root: str | Path,
                errors: list | None = None) -> Iterator[tuple[object, np.ndarray]]:
    """Yield ``(row, frame)`` for the kept frames of ONE series in position order (``order`` 0..n-1).

    ``files`` are that series' rows of ``files.parquet`` (or of ``scan_series``); ``row`` is a
    namedtuple of the row (``row.position``, ``row.ipp``, ...). ``frame`` is float32 (rows, cols),
    native-endian, in modality units: CT frames get ``value * slope + intercept`` (HU); other
    modalities stay raw. A multi-frame file is opened once per run of consecutive frames.

    ``errors``: None -> the first failure raises DicomReadError; a list -> each failure is
    appended as a DicomReadError (and logged) and the frames of that file are skipped.
    """
    kept = files[files["keep"]].sort_values("order")
    rows_iter = kept.itertuples(index=False)
    for path, run in groupby(rows_iter, key=lambda r: r.path):
        run = list(run)
        try:
            frames = read_frames(Path(root) / path, [int(r.frame) for r in run], int(run[0].rows), int(run[0].cols),
                                 run[0].transfer_syntax)
            for r, arr in zip(run, frames):
                out = arr.astype(np.float32)  # astype -> native byte order (big-endian files too)
                if r.modality == "CT":
                    out = out * np.float32(r.slope) + np.float32(r.intercept)
                yield r, out
        except DicomReadError as e:
            if errors is None:
                raise
            log.warning("skipping %s", e)
            errors.append(e)
