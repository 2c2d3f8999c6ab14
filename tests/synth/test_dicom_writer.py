"""The DICOM writer: bytes equal pydicom's own writer, values round-trip, geometry tags are right."""

from __future__ import annotations

import re

import numpy as np
import pydicom
import pytest

from willis.synth.dicom_writer import ENCODINGS, quantise, uid_from, write_series
from willis.synth.geometry import geometry_for, sample_world

KW = dict(series_uid="1.2.826.0.1.3680043.8.498.1", study_uid="1.2.826.0.1.3680043.8.498.2", patient_id="P1")


def _ct_volume(geom, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(-1000, 2000, geom.shape).astype(np.float32)


def _read_folder(folder):
    """Decode every file of a folder into a volume sorted by position along the normal (like a reader would)."""
    slices = []
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        arr = ds.pixel_array.astype(np.float64)
        if "PerFrameFunctionalGroupsSequence" in ds:
            shared = ds.SharedFunctionalGroupsSequence[0]
            iop = np.array(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float)
            t = shared.get("PixelValueTransformationSequence")
            m, b = (float(t[0].RescaleSlope), float(t[0].RescaleIntercept)) if t else (1.0, 0.0)
            arr = arr.reshape(-1, ds.Rows, ds.Columns)
            for f_i, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
                ipp = np.array(item.PlanePositionSequence[0].ImagePositionPatient, float)
                slices.append((ipp, iop, arr[f_i] * m + b))
        else:
            m, b = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
            ipp, iop = np.array(ds.ImagePositionPatient, float), np.array(ds.ImageOrientationPatient, float)
            slices.append((ipp, iop, arr * m + b))
    normal = np.cross(slices[0][1][:3], slices[0][1][3:])
    slices.sort(key=lambda s: float(s[0] @ normal))
    return np.stack([s[2] for s in slices]), [s[0] for s in slices]


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_fast_path_bytes_equal_pydicom_save_as(tmp_path, encoding, modality):
    geom = geometry_for("axial", (0, 0, 0), 100, 3, (32, 36), 2.0)  # JPEG 2000 needs >= 32 a side
    vol = _ct_volume(geom) + (1024 if modality == "MR" else 0)
    files = {}
    for fast in (True, False):
        out = tmp_path / str(fast)
        write_series(vol, geom, out, modality=modality, encoding=encoding, signed=modality == "CT",
                     intercept=-1024.0 if modality == "CT" else 0.0, fast=fast, extra_tags={"PatientAge": "050Y"}, **KW)
        files[fast] = {p.name: p.read_bytes() for p in out.iterdir()}
    assert files[True] == files[False]


@pytest.mark.parametrize("signed, slope, intercept", [(True, 1.0, 0.0), (True, 1.0, -1024.0), (False, 1.0, -1024.0),
                                                      (True, 0.5, -1024.0), (False, 2.0, -3000.0)])
def test_hu_round_trips_through_rescale_tags(tmp_path, signed, slope, intercept):
    geom = geometry_for("axial", (0, 0, 0), 100, 4, 12, 1.5)
    hu = np.random.default_rng(1).uniform(-1024, 3000, geom.shape).astype(np.float32)
    write_series(hu, geom, tmp_path, modality="CT", signed=signed, slope=slope, intercept=intercept, **KW)
    back, _ = _read_folder(tmp_path)
    ds = pydicom.dcmread(next(tmp_path.iterdir()))
    assert ds.PixelRepresentation == int(signed) and ds.BitsAllocated == 16 and ds.RescaleType == "HU"
    # hand-computed reference: the nearest representable value
    assert np.abs(back - hu).max() <= slope / 2 + 1e-6
    assert np.array_equal(back, np.rint((hu - intercept) / slope) * slope + intercept)


def test_quantise_clips_to_the_stored_range():
    v = np.array([-5000.0, -1024.0, 0.0, 70000.0], np.float32)
    assert quantise(v, signed=False, slope=1.0, intercept=-1024.0).tolist() == [0, 0, 1024, 65535]
    assert quantise(v, signed=True, slope=1.0, intercept=0.0).tolist() == [-5000, -1024, 0, 32767]


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("multiframe", [False, True])
def test_every_encoding_and_multiframe_decode_to_the_plain_twin(tmp_path, encoding, multiframe):
    geom = geometry_for("coronal", (5, -3, 20), (90, 110), 5, (32, 40), 2.5)
    vol = _ct_volume(geom, seed=2)
    plain = tmp_path / "plain"
    write_series(vol, geom, plain, modality="CT", intercept=-1024.0, signed=False, **KW)
    twin = tmp_path / "twin"
    rec = write_series(vol, geom, twin, modality="CT", intercept=-1024.0, signed=False, encoding=encoding,
                       multiframe=multiframe, instance_numbers="random", shuffle_files=True,
                       rng=np.random.default_rng(3), **KW)
    a, pos_a = _read_folder(plain)
    b, pos_b = _read_folder(twin)
    assert np.array_equal(a, b) and np.array_equal(a, vol)
    np.testing.assert_allclose(pos_a, pos_b)
    assert len(list(twin.iterdir())) == (1 if multiframe else geom.shape[0])
    ds = pydicom.dcmread(rec[0].path)
    assert ds.file_meta.TransferSyntaxUID == ENCODINGS[encoding][0]
    if multiframe:  # Enhanced CT: no top-level geometry or rescale
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2.1" and int(ds.NumberOfFrames) == geom.shape[0]
        for tag in ("ImagePositionPatient", "ImageOrientationPatient", "RescaleSlope", "RescaleIntercept"):
            assert tag not in ds


def test_geometry_tags_and_records(tmp_path):
    geom = geometry_for("sagittal", (10, 20, 30), (120, 100), 6, (24, 20), 3.0)
    rec = write_series(np.zeros(geom.shape, np.float32), geom, tmp_path, modality="MR",
                       instance_numbers="reversed", **KW)
    assert [r.slice_index for r in rec] == list(range(6))
    assert [r.instance_number for r in rec] == [6, 5, 4, 3, 2, 1]
    normal = np.array([-1.0, 0.0, 0.0])  # sagittal: (0,1,0) x (0,0,-1)
    for r in rec:
        ds = pydicom.dcmread(r.path)
        assert ds.SOPInstanceUID == r.sop_uid and r.path.endswith(f"{r.sop_uid}.dcm")
        np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], r.ipp, atol=1e-3)
        np.testing.assert_allclose(r.ipp, np.array(geom.origin) + r.slice_index * 3.0 * normal, atol=1e-9)
        assert [float(v) for v in ds.ImageOrientationPatient] == [0, 1, 0, 0, 0, -1]
        np.testing.assert_allclose([float(v) for v in ds.PixelSpacing], [5.0, 5.0])
        assert float(ds.SliceThickness) == 3.0 and float(ds.SpacingBetweenSlices) == 3.0
        assert (ds.Rows, ds.Columns, ds.Modality) == (24, 20, "MR")
        assert "RescaleSlope" not in ds  # MR with slope 1 / intercept 0 carries no rescale tags
    # the centre voxel of the volume sits at the requested centre
    np.testing.assert_allclose(geom.voxel_to_patient(2.5, 11.5, 9.5), (10, 20, 30), atol=1e-9)


def test_one_phantom_acquired_in_three_planes_agrees():
    """A sphere rendered with sample_world has the same patient-space centroid in every orientation."""
    c = np.array([12.0, -7.0, 25.0])
    def fn(x, y, z):
        return ((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 < 15.0**2).astype(np.float32)

    for plane in ("axial", "coronal", "sagittal"):
        g = geometry_for(plane, (10, -5, 20), 80, 40, 40, 2.0)
        vol = sample_world(fn, g)
        k, i, j = np.nonzero(vol)
        centroid = g.voxel_to_patient(k, i, j).mean(0)
        np.testing.assert_allclose(centroid, c, atol=1.0)
        assert abs(vol.sum() * 8.0 - 4 / 3 * np.pi * 15**3) < 0.05 * 4 / 3 * np.pi * 15**3


def test_uids_are_deterministic_valid_and_distinct():
    a, b = uid_from("x", 1), uid_from("x", 1)
    assert a == b and a != uid_from("x", 2) and a != uid_from("x1")
    assert re.fullmatch(r"2\.25\.(0|[1-9][0-9]*)", a) and len(a) <= 64


def test_bad_requests_name_the_series(tmp_path):
    geom = geometry_for("axial", (0, 0, 0), 100, 2, 16, 1.0)
    with pytest.raises(ValueError, match=KW["series_uid"] + ".*JPEG 2000"):
        write_series(np.zeros(geom.shape), geom, tmp_path, modality="CT", encoding="jpeg2000", **KW)
    with pytest.raises(ValueError, match=KW["series_uid"] + ".*shape"):
        write_series(np.zeros((3, 16, 16)), geom, tmp_path, modality="CT", **KW)
    with pytest.raises(ValueError, match="unknown encoding"):
        write_series(np.zeros(geom.shape), geom, tmp_path, modality="CT", encoding="jpegls", **KW)
