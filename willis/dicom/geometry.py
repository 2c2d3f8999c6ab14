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
from pydicom.multival import MultiValue

from willis.dicom.header import DicomReadError, as_list, tag_int, tag_str, tag_value

AXIAL_ORIENTATION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # fallback: rows -> posterior, columns -> left
DEFAULT_PIXEL_SPACING = (1.0, 1.0)                  # mm, fallback when PixelSpacing is absent
DEFAULT_SLICE_SPACING = 1.0                         # mm, fallback when no position and no thickness
ORTHO_TOL = 1e-2       # |cosine| must be 1 +- this and the two cosines orthogonal within this
PLANE_MIN_COS = 0.8    # |normal . axis| above this names the plane (a 30 deg gantry tilt stays axial)


def _floats(value, n: int) -> tuple[float, ...] | None:
    """``n`` finite floats from a DICOM multi-value, or None when absent / malformed."""
    if value is None:
        return None
    values = as_list(value)
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def _float1(value) -> float | None:
    v = _floats(value, 1)
    return v[0] if v else None


def _fg_item(item, seq: str):
    """``item.<seq>[0]`` of a functional-group item, None when absent."""
    if item is None:
        return None
    inner = item.get(seq)
    return inner[0] if inner else None


def _fg(item, seq: str, keyword: str):
    """``item.<seq>[0].<keyword>`` of a functional-group item, None when any level is absent."""
    if item is None:
        return None
    inner = item.get(seq)
    return inner[0].get(keyword) if inner else None


FRAME_KEYS = ("SOPInstanceUID", "frame", "n_frames", "ipp", "orientation", "pixel_spacing", "slope",
              "intercept", "slice_thickness", "spacing_between_slices", "rows", "cols", "samples",
              "transfer_syntax", "modality", "series_uid", "patient_id", "instance_number", "localizer",
              "sop_class", "image_type", "complex_component", "photometric", "pixel_representation",
              "bits_allocated", "bits_stored", "gantry_tilt", "volume_calc")
# What may tell apart frames that share a position (willis.index.volumes tries them in this order).
# Enhanced: per-frame FrameContent / MREcho / MRDiffusion / CardiacSynchronization groups; classic: top level.
SPLIT_KEYS = ("TemporalPositionIndex", "TemporalPositionIdentifier", "EchoNumbers", "EffectiveEchoTime",
              "DiffusionBValue", "TriggerTime", "AcquisitionNumber", "StackID", "DimensionIndexValues")
FRAME_KEYS = FRAME_KEYS + SPLIT_KEYS
POSITION_POINTERS = {0x00209057, 0x00200032}   # InStackPositionNumber, ImagePositionPatient: a position, not a volume


def _value(v):
    """A split value as a hashable, comparable Python value (None when absent)."""
    if v is None or v == "":
        return None
    if isinstance(v, (list, tuple, MultiValue)):
        return tuple(_value(x) for x in v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return int(f) if f.is_integer() else round(f, 3)


def _types(value) -> tuple[str, ...]:
    return tuple(str(v).strip().upper() for v in as_list(value))


def _volume_dims(ds) -> list[int] | None:
    """Indices into DimensionIndexValues that are NOT the in-stack position (None: no DimensionIndexSequence)."""
    seq = tag_value(ds, "DimensionIndexSequence")
    if not seq:
        return None
    return [i for i, item in enumerate(seq) if int(item.get("DimensionIndexPointer", 0) or 0) not in POSITION_POINTERS]


def frame_headers(ds: pydicom.Dataset, path: str | Path, first_only: bool = False) -> list[dict]:
    """One dict per frame (keys ``FRAME_KEYS``); geometry values are None where the file lacks them.

    ``first_only``: frame 0 alone (a file whose pixel data is unusable: its claimed frames, maybe
    2e9 of them, are never expanded; ``n_frames`` still says what the header claims).
    """
    try:
        representation, bits = tag_int(ds, "PixelRepresentation", 0), tag_int(ds, "BitsAllocated", 16)
        bits_stored = tag_int(ds, "BitsStored", None) or bits
        n_frames = tag_int(ds, "NumberOfFrames", 1)
        rows, cols = tag_int(ds, "Rows"), tag_int(ds, "Columns")
        samples = tag_int(ds, "SamplesPerPixel", 1)
        instance = tag_int(ds, "InstanceNumber", -1)
    except ValueError as e:
        raise DicomReadError(path, str(e)) from e
    if rows is None or cols is None:
        raise DicomReadError(path, "no Rows/Columns: not an image")
    if n_frames < 1:
        raise DicomReadError(path, f"NumberOfFrames is {n_frames}")
    meta = getattr(ds, "file_meta", None)
    common = {
        "SOPInstanceUID": tag_str(ds, "SOPInstanceUID"), "n_frames": n_frames, "rows": rows, "cols": cols,
        "samples": samples, "modality": tag_str(ds, "Modality"), "series_uid": tag_str(ds, "SeriesInstanceUID"),
        "patient_id": tag_str(ds, "PatientID"),
        "transfer_syntax": str(meta.get("TransferSyntaxUID", "")) if meta is not None else "",
        "instance_number": instance,
        "localizer": "LOCALIZER" in _types(tag_value(ds, "ImageType")),
        "sop_class": tag_str(ds, "SOPClassUID"),
        "photometric": tag_str(ds, "PhotometricInterpretation").strip().upper() or "MONOCHROME2",
        "pixel_representation": representation, "bits_allocated": bits, "bits_stored": bits_stored,
        "gantry_tilt": _float1(tag_value(ds, "GantryDetectorTilt")),
    }
    shared_seq = tag_value(ds, "SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else None
    per_frame = tag_value(ds, "PerFrameFunctionalGroupsSequence") or []

    def pick(pf, seq: str, keyword: str):
        # per-frame value first, then shared, then the classic top-level element
        for source in (_fg(pf, seq, keyword), _fg(shared, seq, keyword)):
            if source is not None:
                return source
        return tag_value(ds, keyword)

    dims = _volume_dims(ds)
    classic_types = _types(tag_value(ds, "ImageType"))
    classic_split = {k: _value(tag_value(ds, k)) for k in
                     ("TemporalPositionIdentifier", "EchoNumbers", "TriggerTime", "AcquisitionNumber", "DiffusionBValue")}
    out = []
    for f in range(1 if first_only else n_frames):
        pf = per_frame[f] if f < len(per_frame) else None
        content = _fg_item(pf, "FrameContentSequence")
        ftype = (_fg_item(pf, "MRImageFrameTypeSequence") or _fg_item(pf, "CTImageFrameTypeSequence")
                 or _fg_item(shared, "MRImageFrameTypeSequence") or _fg_item(shared, "CTImageFrameTypeSequence"))
        index_values = _value(content.get("DimensionIndexValues")) if content is not None else None
        if index_values is not None and not isinstance(index_values, tuple):
            index_values = (index_values,)
        if index_values is not None and dims is not None:
            index_values = tuple(v for i, v in enumerate(index_values) if i in dims) or None
        split = {
            **classic_split,
            "TemporalPositionIndex": _value(content.get("TemporalPositionIndex")) if content is not None else None,
            "StackID": _value(content.get("StackID")) if content is not None else None,
            "DimensionIndexValues": index_values,
            "EffectiveEchoTime": _value(_fg(pf, "MREchoSequence", "EffectiveEchoTime")),
        }
        bvalue = _value(_fg(pf, "MRDiffusionSequence", "DiffusionBValue"))
        if bvalue is not None:
            split["DiffusionBValue"] = bvalue
        trigger = _value(_fg(pf, "CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime"))
        if trigger is not None:
            split["TriggerTime"] = trigger
        ipp = _fg(pf, "PlanePositionSequence", "ImagePositionPatient")
        if ipp is None and n_frames == 1:  # top-level IPP describes frame 0 only
            ipp = tag_value(ds, "ImagePositionPatient")
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
            "image_type": _types(ftype.get("FrameType")) if ftype is not None and ftype.get("FrameType") else classic_types,
            "volume_calc": str((ftype.get("VolumeBasedCalculationTechnique") if ftype is not None else None) or "").upper(),
            "complex_component": str((ftype.get("ComplexImageComponent") if ftype is not None else None)
                                     or tag_value(ds, "ComplexImageComponent") or "").upper(),
            **split,
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
