"""Per-frame geometry (classic and Enhanced multi-frame), orientation / plane, the missing-geometry fallback.

* ``frame_headers(ds, path)``: one dict per frame (``FRAME_KEYS``) with its geometry and rescale.
  Classic single-frame files carry ``ImagePositionPatient`` / ``ImageOrientationPatient`` /
  ``PixelSpacing`` / ``RescaleSlope`` at the top level. Enhanced multi-frame files (most real
  multi-frame MR) carry them in ``PerFrameFunctionalGroupsSequence`` (per frame, preferred) and
  ``SharedFunctionalGroupsSequence`` (all frames): ``PlanePositionSequence``,
  ``PlaneOrientationSequence``, ``PixelMeasuresSequence``, ``PixelValueTransformationSequence``.
  A value that is absent or unreadable is ``None`` here; the series scanner
  (``willis.index.scan_series``) applies the fallback below and flags it.

Missing-geometry fallback (``fill_geometry``; every use adds a flag to the series'
``geometry_flag``, e.g. ``"position_missing;pixel_spacing_missing"``):

* orientation absent or not two orthonormal cosines -> the most common valid orientation among the
  series' frames, else axial ``(1,0,0, 0,1,0)``; flag ``orientation_missing`` / ``orientation_invalid``;
* pixel spacing absent or <= 0 -> ``(1.0, 1.0)`` mm; flag ``pixel_spacing_missing``;
* position absent on any frame -> all frames placed along the normal in (InstanceNumber, path,
  frame) order at ``SpacingBetweenSlices`` or ``SliceThickness`` or 1 mm; flag ``position_missing``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pydicom

from willis.dicom.header import DicomReadError, _int, _multi, _str, _top

AXIAL_ORIENTATION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # fallback: rows -> posterior, columns -> left
DEFAULT_PIXEL_SPACING = (1.0, 1.0)                  # mm, fallback when PixelSpacing is absent
DEFAULT_SLICE_SPACING = 1.0                         # mm, fallback when no position and no thickness
ORTHO_TOL = 1e-2       # |cosine| must be 1 +- this and the two cosines orthogonal within this
PLANE_MIN_COS = 0.8    # |normal . axis| above this names the plane (a 30 deg gantry tilt stays axial)


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
