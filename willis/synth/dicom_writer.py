"""Write a volume as a DICOM series: single-frame files or one Enhanced multi-frame file, any encoding.

``write_series(volume, geom, out_dir, ...)`` quantises a float volume in modality units (HU for CT,
arbitrary units for MR) to 16-bit stored values through ``RescaleSlope``/``RescaleIntercept``
(``stored = round((value - intercept) / slope)``, clipped to the stored type's range), and writes
``<out_dir>/<SOPInstanceUID>.dcm`` files with file meta and real geometry tags. Everything is
deterministic: UIDs come from ``uid_from(...)`` (a name-based UUID of the given parts), never from
time, randomness outside ``rng``, or Python's salted ``hash()``. The encodings and the byte-level
encoder live in ``willis.synth.dicom_encode``.

    >>> geom = geometry_for("axial", (0, 0, 0), fov_mm=200, n_slices=40, matrix=128, slice_spacing=1.0)
    >>> records = write_series(hu, geom, "out/1.2.3", modality="CT", series_uid="1.2.3",
    ...                        study_uid="1.2", patient_id="P1", intercept=-1024.0, encoding="rle")
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from willis.synth.dicom_encode import ENCODINGS, J2K_MIN_SIDE, Encoding, SliceEncoder, save_dataset
from willis.synth.geometry import Geometry, geometry_for, sample_world  # noqa: F401  (re-exported)
from willis.synth.uids import uid_from

log = logging.getLogger(__name__)

SOP_CLASS = {  # (modality, multiframe) -> SOP Class UID
    ("CT", False): "1.2.840.10008.5.1.4.1.1.2",      # CT Image Storage
    ("MR", False): "1.2.840.10008.5.1.4.1.1.4",      # MR Image Storage
    ("CT", True): "1.2.840.10008.5.1.4.1.1.2.1",     # Enhanced CT Image Storage
    ("MR", True): "1.2.840.10008.5.1.4.1.1.4.1",     # Enhanced MR Image Storage
}
STUDY_DATE = "20250101"  # fixed: dates must not vary with anything (determinism, no leaks)


@dataclass(frozen=True)
class SliceRecord:
    """One written slice: a single-frame file (frame 0) or one frame of a multi-frame file."""

    path: str                                   # file written
    sop_uid: str                                # its SOPInstanceUID
    frame: int                                  # 0-based frame index inside the file
    slice_index: int                            # index k into the input volume (position order)
    ipp: tuple[float, float, float]             # ImagePositionPatient of that slice
    instance_number: int                        # InstanceNumber written (single-frame) or 1


def quantise(volume: np.ndarray, signed: bool, slope: float, intercept: float) -> np.ndarray:
    """Modality units -> stored int16/uint16 values (rounded, clipped to the type's range)."""
    dtype = np.int16 if signed else np.uint16
    info = np.iinfo(dtype)
    stored = np.rint((np.asarray(volume, np.float32) - np.float32(intercept)) / np.float32(slope))
    clipped = int(np.count_nonzero((stored < info.min) | (stored > info.max)))
    if clipped:
        log.debug("quantise: %d values clipped to [%d, %d]", clipped, info.min, info.max)
    return np.clip(stored, info.min, info.max).astype(dtype)


def _fmt(v: float) -> str:
    return f"{v:.6g}"  # DS values: <= 16 characters, stable text


def _instance_order(n: int, how: str, rng: np.random.Generator) -> np.ndarray:
    """InstanceNumber (1-based) for each slice index in position order."""
    if how == "position":
        return np.arange(1, n + 1)
    if how == "reversed":
        return np.arange(n, 0, -1)
    if how == "random":
        return rng.permutation(n) + 1
    raise ValueError(f"instance_numbers must be position|reversed|random, got {how!r}")


def _base_dataset(modality: str, multiframe: bool, sop_uid: str, series_uid: str, study_uid: str,
                  patient_id: str, rows: int, cols: int, signed: bool, extra: dict) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = SOP_CLASS[(modality, multiframe)]
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = uid_from(study_uid, "frame-of-reference")
    ds.PatientID = patient_id
    ds.PatientName = patient_id
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = STUDY_DATE
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"] if not multiframe else ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if signed else 0
    for key, value in extra.items():  # e.g. PatientAge, PatientSex, Manufacturer, SeriesDescription
        setattr(ds, key, value)
    return ds


def _geometry_tags(ds: Dataset, geom: Geometry) -> None:
    ds.ImageOrientationPatient = [_fmt(v) for v in geom.row_cosine + geom.col_cosine]
    ds.PixelSpacing = [_fmt(v) for v in geom.pixel_spacing]
    ds.SliceThickness = _fmt(geom.slice_spacing)
    ds.SpacingBetweenSlices = _fmt(geom.slice_spacing)


def _rescale_tags(ds: Dataset, modality: str, slope: float, intercept: float) -> None:
    ds.RescaleSlope = _fmt(slope)
    ds.RescaleIntercept = _fmt(intercept)
    ds.RescaleType = "HU" if modality == "CT" else "US"


def _multiframe_groups(ds: Dataset, geom: Geometry, order: np.ndarray, modality: str, slope: float,
                       intercept: float, with_rescale: bool) -> None:
    """Enhanced-image geometry: Shared + Per-frame Functional Groups, no top-level IPP/IOP/Rescale."""
    measures = Dataset()
    measures.PixelSpacing = [_fmt(v) for v in geom.pixel_spacing]
    measures.SliceThickness = _fmt(geom.slice_spacing)
    measures.SpacingBetweenSlices = _fmt(geom.slice_spacing)
    orient = Dataset()
    orient.ImageOrientationPatient = [_fmt(v) for v in geom.row_cosine + geom.col_cosine]
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([orient])
    if with_rescale:
        transform = Dataset()
        _rescale_tags(transform, modality, slope, intercept)
        shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for k in order:  # frame f holds slice order[f]
        pos = Dataset()
        pos.ImagePositionPatient = [_fmt(v) for v in geom.slice_position(int(k))]
        content = Dataset()
        content.StackID = "1"
        content.InStackPositionNumber = int(k) + 1
        content.DimensionIndexValues = [1, int(k) + 1]
        item = Dataset()
        item.PlanePositionSequence = Sequence([pos])
        item.FrameContentSequence = Sequence([content])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.NumberOfFrames = len(order)


def _slice_elements(sop: str, instance_number: int, ipp, normal) -> Dataset:
    ds = Dataset()
    ds.SOPInstanceUID = sop
    ds.InstanceNumber = instance_number
    ds.ImagePositionPatient = [_fmt(v) for v in ipp]
    ds.SliceLocation = _fmt(float(np.dot(ipp, normal)))
    return ds


def write_series(
    volume: np.ndarray,
    geom: Geometry,
    out_dir: str | Path,
    *,
    modality: Literal["CT", "MR"],
    series_uid: str,
    study_uid: str,
    patient_id: str,
    encoding: Encoding = "explicit",
    signed: bool = True,
    slope: float = 1.0,
    intercept: float = 0.0,
    multiframe: bool = False,
    shuffle_files: bool = False,
    instance_numbers: Literal["position", "reversed", "random"] = "position",
    rng: np.random.Generator | None = None,
    extra_tags: dict | None = None,
    uid_salt: str = "",
    fast: bool = True,
) -> list[SliceRecord]:
    """Write ``volume`` (n_slices, rows, cols) in modality units as a DICOM series in ``out_dir``.

    Slice k of ``volume`` sits at ``geom.slice_position(k)``. Multi-frame: one Enhanced CT/MR file,
    frames in the order ``instance_numbers`` gives (position / reversed / random). MR series with
    slope 1 and intercept 0 get no rescale tags (as most real MR). Returns one ``SliceRecord`` per
    slice, in position order (``records[k].slice_index == k``). ``uid_salt`` makes the SOP UIDs of a
    second write into the same series distinct (e.g. a scout image added to a folder). ``fast=False``
    writes every file through pydicom's ``save_as`` (the reference the fast path is tested against).
    """
    if modality not in ("CT", "MR"):
        raise ValueError(f"series {series_uid}: modality must be CT or MR, got {modality!r}")
    volume = np.asarray(volume)
    if volume.ndim != 3 or tuple(volume.shape) != tuple(geom.shape):
        raise ValueError(f"series {series_uid}: volume shape {volume.shape} != geometry shape {geom.shape}")
    rng = rng if rng is not None else np.random.default_rng(0)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n, rows, cols = volume.shape
    if encoding not in ENCODINGS:
        raise ValueError(f"series {series_uid}: unknown encoding {encoding!r}; expected one of {list(ENCODINGS)}")
    if encoding == "jpeg2000" and min(rows, cols) < J2K_MIN_SIDE:
        raise ValueError(f"series {series_uid}: JPEG 2000 (openjpeg) needs >= {J2K_MIN_SIDE} pixels a side, "
                         f"got {rows}x{cols}")
    stored = quantise(volume, signed, slope, intercept)           # (n, rows, cols) int16/uint16
    with_rescale = modality == "CT" or slope != 1.0 or intercept != 0.0
    numbers = _instance_order(n, instance_numbers, rng)           # (n,) 1-based, by slice index
    extra = dict(extra_tags or {})

    if multiframe:
        order = np.argsort(numbers, kind="stable")                # frame f -> slice order[f]
        sop = uid_from(series_uid, "sop", uid_salt, "multiframe")
        ds = _base_dataset(modality, True, sop, series_uid, study_uid, patient_id, rows, cols, signed, extra)
        ds.InstanceNumber = 1
        _multiframe_groups(ds, geom, order, modality, slope, intercept, with_rescale)
        path = out_dir / f"{sop}.dcm"
        save_dataset(ds, stored[order], path, encoding)                  # (frames, rows, cols)
        records = [SliceRecord(str(path), sop, f, int(k), geom.slice_position(int(k)), 1) for f, k in enumerate(order)]
        return sorted(records, key=lambda r: r.slice_index)

    shared = _base_dataset(modality, False, "", series_uid, study_uid, patient_id, rows, cols, signed, extra)
    del shared.SOPInstanceUID                                     # per slice
    _geometry_tags(shared, geom)
    if with_rescale:
        _rescale_tags(shared, modality, slope, intercept)
    encoder = SliceEncoder(shared, encoding) if fast else None
    write_order = rng.permutation(n) if shuffle_files else np.arange(n)
    records: list[SliceRecord | None] = [None] * n
    normal = geom.normal
    for k in write_order:
        k = int(k)
        sop = uid_from(series_uid, "sop", uid_salt, k)
        ipp = geom.slice_position(k)
        per_slice = _slice_elements(sop, int(numbers[k]), ipp, normal)
        path = out_dir / f"{sop}.dcm"
        if encoder is not None:
            path.write_bytes(encoder.file_bytes(per_slice, stored[k]))
        else:
            ds = Dataset(shared)
            ds.update(per_slice)
            save_dataset(ds, stored[k], path, encoding)
        records[k] = SliceRecord(str(path), sop, 0, k, ipp, int(numbers[k]))
    return records  # type: ignore[return-value]
