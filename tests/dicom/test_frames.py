"""willis.dicom: headers, geometry (single- and multi-frame) and streamed, rescaled frames."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file

from willis.dicom import (AXIAL_ORIENTATION, DicomReadError, fill_geometry, frame_headers, iter_frames,
                          plane_of, read_frames, read_header, scan_file)
from willis.index import scan_series
from willis.synth.dicom_writer import geometry_for, write_series

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns on its own broken test files


def _testfile(name: str) -> Path:
    p = get_testdata_file(name, download=False)
    if p is None:
        pytest.skip(f"pydicom test file {name} not shipped with this pydicom")
    return Path(p)


def _volume(shape, seed=0):
    return np.random.default_rng(seed).integers(-1000, 2000, shape).astype(np.float32)


def _write(root, uid, vol, geom, **kw):
    kw.setdefault("modality", "CT")
    write_series(vol, geom, root / "series" / uid, series_uid=uid, study_uid="1.2.3", patient_id="P1", **kw)
    return root / "series" / uid


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_RLE.dcm",
                                  "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_expb.dcm"])
def test_pydicom_mr_small_variants_decode_to_identical_native_pixels(tmp_path, name):
    ref = pydicom.dcmread(_testfile("MR_small.dcm")).pixel_array.astype(np.float32)
    path = _testfile(name)
    ds = read_header(path)
    (fr,) = frame_headers(ds, path)
    assert fr["rows"] == fr["cols"] == 64 and fr["ipp"] is not None and fr["orientation"] is not None
    (arr,) = list(read_frames(path, [0], 64, 64, fr["transfer_syntax"]))
    out = arr.astype(np.float32)
    assert out.dtype.isnative and out.shape == (64, 64)
    np.testing.assert_array_equal(out, ref)


def test_big_endian_file_yields_native_float32_through_iter_frames(tmp_path):
    uid = "1.2.826.0.1.3680043.8.498.1"
    d = tmp_path / "series" / uid
    d.mkdir(parents=True)
    shutil.copy(_testfile("MR_small_bigendian.dcm"), d / "a.dcm")
    rec, files = scan_series(d, tmp_path)
    assert rec["n_frames"] == 1 and files["keep"].all()
    ((row, frame),) = list(iter_frames(files, tmp_path))
    assert frame.dtype == np.float32 and frame.dtype.isnative
    ref = pydicom.dcmread(_testfile("MR_small.dcm")).pixel_array
    np.testing.assert_array_equal(frame, ref.astype(np.float32))  # MR: raw values, no rescale


def test_ct_frames_are_in_hu_and_sorted_by_position_not_name_or_instance_number(tmp_path):
    geom = geometry_for("axial", (0, 0, 0), 100, 7, 32, 2.5)
    vol = _volume(geom.shape)
    d = _write(tmp_path, "1.2.3.4", vol, geom, intercept=-1024.0, slope=1.0, shuffle_files=True,
               instance_numbers="random", rng=np.random.default_rng(3))
    rec, files = scan_series(d, tmp_path)
    assert rec["slice_spacing"] == pytest.approx(2.5) and rec["plane"] == "axial" and rec["geometry_flag"] == ""
    out = list(iter_frames(files, tmp_path))
    positions = [r.position for r, _ in out]
    assert positions == sorted(positions)
    # the file names (SOP UIDs) and InstanceNumbers are both shuffled relative to position
    assert [r.instance_number for r, _ in out] != sorted(r.instance_number for r, _ in out)
    np.testing.assert_array_equal(np.stack([a for _, a in out]), np.rint(vol))  # (7, 32, 32) HU


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
@pytest.mark.parametrize("encoding", ["explicit", "big_endian", "deflate", "rle"])
def test_multiframe_geometry_and_frames(tmp_path, plane, encoding):
    geom = geometry_for(plane, (5, -10, 20), 120, 5, 24, 3.0)
    vol = _volume(geom.shape, seed=1)
    d = _write(tmp_path, "1.2.9", vol, geom, multiframe=True, encoding=encoding, slope=2.0, intercept=-1000.0,
               instance_numbers="reversed")
    rec, files = scan_series(d, tmp_path)
    assert rec["multiframe"] and rec["n_files"] == 1 and rec["n_frames"] == 5
    assert rec["plane"] == plane and rec["slice_spacing"] == pytest.approx(3.0)
    np.testing.assert_allclose(rec["orientation"], geom.row_cosine + geom.col_cosine)
    np.testing.assert_allclose(rec["pixel_spacing"], geom.pixel_spacing, rtol=1e-5)
    kept = files.sort_values("order")
    np.testing.assert_allclose(np.stack(kept["ipp"]), [geom.slice_position(k) for k in range(5)], atol=1e-3)
    assert list(kept["frame"]) == [4, 3, 2, 1, 0]  # reversed in the file, sorted back by position
    frames = np.stack([a for _, a in iter_frames(files, tmp_path)])
    expected = np.rint((vol + 1000.0) / 2.0) * 2.0 - 1000.0  # quantised through slope 2, intercept -1000
    np.testing.assert_array_equal(frames, expected)


def test_plane_of():
    assert plane_of([0, 0, 1]) == "axial" and plane_of([0, -1, 0]) == "coronal" and plane_of([1, 0, 0]) == "sagittal"
    assert plane_of([0, np.sin(np.radians(25)), np.cos(np.radians(25))]) == "axial"   # gantry tilt
    assert plane_of([0, np.sqrt(0.5), np.sqrt(0.5)]) == "oblique"


def test_fill_geometry_fallback_is_flagged():
    frames = pd.DataFrame({
        "path": ["b", "a", "c"], "frame": [0, 0, 0], "instance_number": [2, 1, 3],
        "ipp": [None, None, None], "orientation": [None, None, None], "pixel_spacing": [None, (0.5, 0.5), None],
        "slice_thickness": [None, None, None], "spacing_between_slices": [4.0, 4.0, 4.0],
    }).to_dict("records")
    out, flags = fill_geometry(frames)
    assert flags == ["orientation_missing", "pixel_spacing_missing", "position_missing"]
    assert all(tuple(f["orientation"]) == AXIAL_ORIENTATION for f in out)
    assert [tuple(f["pixel_spacing"]) for f in out] == [(1.0, 1.0), (0.5, 0.5), (1.0, 1.0)]
    # placed by InstanceNumber at SpacingBetweenSlices along the (axial) normal
    assert [f["ipp"][2] for f in out] == [4.0, 0.0, 8.0]
    assert frames[0]["ipp"] is None  # the input is not modified


def test_fill_geometry_invalid_orientation_takes_the_common_valid_one():
    ok, bad = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0), (1.0, 1.0, 0.0, 0.0, 0.0, 0.0)
    frames = [{"path": str(i), "frame": 0, "instance_number": i, "ipp": (0.0, 0.0, float(i)), "orientation": o,
               "pixel_spacing": (1.0, 1.0), "slice_thickness": None, "spacing_between_slices": None}
              for i, o in enumerate([ok, ok, bad])]
    out, flags = fill_geometry(frames)
    assert flags == ["orientation_invalid"] and all(tuple(f["orientation"]) == ok for f in out)


@pytest.mark.parametrize("name, reason", [
    ("no_meta.dcm", "not a DICOM file"), ("rtstruct.dcm", "not a DICOM file"), ("zipMR.gz", "not a DICOM file"),
])
def test_non_dicom_headers_raise_named_error(name, reason):
    with pytest.raises(DicomReadError, match=reason) as e:
        read_header(_testfile(name))
    assert name in str(e.value)


def test_non_image_and_bad_values_raise_named_error(tmp_path):
    with pytest.raises(DicomReadError, match="NumberOfFrames"):
        frame_headers(read_header(_testfile("badVR.dcm")), "badVR.dcm")   # NumberOfFrames '1A'
    p = tmp_path / "junk.dcm"
    p.write_bytes(b"not dicom at all" * 10)
    with pytest.raises(DicomReadError, match="junk.dcm"):
        read_header(p)


def test_truncated_pixel_data_raises_decode_error_naming_file():
    path = _testfile("MR_truncated.dcm")
    with pytest.raises(DicomReadError, match="MR_truncated.dcm.*decode failed"):
        list(read_frames(path, [0], 64, 64))


def test_iter_frames_error_list_collects_and_continues(tmp_path):
    geom = geometry_for("axial", (0, 0, 0), 100, 3, 64, 2.0)
    d = _write(tmp_path, "1.2.5", _volume(geom.shape), geom)
    rec, files = scan_series(d, tmp_path)
    victim = files.sort_values("order")["path"].iloc[1]
    data = (tmp_path / victim).read_bytes()
    (tmp_path / victim).write_bytes(data[: len(data) - 3000])   # truncate the middle slice's pixel data
    with pytest.raises(DicomReadError):
        list(iter_frames(files, tmp_path))
    errors: list = []
    got = [r.order for r, _ in iter_frames(files, tmp_path, errors=errors)]
    assert got == [0, 2] and len(errors) == 1 and Path(victim).name in str(errors[0])


@pytest.mark.parametrize("name, cut, problem", [
    ("CT_small.dcm", 0, ""),
    ("MR_small_bigendian.dcm", 0, ""),
    ("MR_small_implicit.dcm", 0, ""),
    ("MR_small_RLE.dcm", 0, ""),
    ("MR_truncated.dcm", 0, "file truncated: Pixel Data ends at byte 9692, the file has 9630 bytes"),
    ("MR_small_bigendian.dcm", 10, "file truncated"),
    ("MR_small_implicit.dcm", 10, "file truncated"),
    ("MR_small_RLE.dcm", 142, "no closing sequence delimiter"),       # cut inside the delimiter
    ("MR_small_RLE.dcm", 400, "a pixel data fragment ends at byte"),
    ("MR_small_jp2klossless.dcm", 400, "a pixel data fragment ends at byte"),
])
def test_scan_file_finds_truncated_pixel_data_without_decoding(tmp_path, name, cut, problem):
    data = _testfile(name).read_bytes()
    p = tmp_path / name
    p.write_bytes(data[: len(data) - cut])
    ds, found = scan_file(p)
    assert ds.Rows > 0
    assert (found == "") if problem == "" else (problem in found), found


def test_scan_file_reports_missing_pixel_data(tmp_path):
    ds = pydicom.dcmread(_testfile("CT_small.dcm"))
    del ds.PixelData
    ds.save_as(tmp_path / "a.dcm")
    assert scan_file(tmp_path / "a.dcm")[1] == "no Pixel Data element"


def test_enhanced_per_frame_rescale_and_two_stacks(tmp_path):
    """Per-frame PixelValueTransformation wins over shared; a second-orientation stack is set aside."""
    geom = geometry_for("axial", (0, 0, 0), 100, 6, 16, 2.0)
    vol = _volume(geom.shape, seed=4)
    d = _write(tmp_path, "1.2.77", vol, geom, multiframe=True, slope=1.0, intercept=0.0)
    (path,) = list(d.iterdir())
    ds = pydicom.dcmread(path)
    intercepts = [-1000.0, -1000.0, -1000.0, -1000.0, 50.0, 50.0]
    for f, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        t = pydicom.Dataset()
        t.RescaleSlope, t.RescaleIntercept, t.RescaleType = "1", str(intercepts[f]), "HU"
        item.PixelValueTransformationSequence = pydicom.Sequence([t])
    for item in ds.PerFrameFunctionalGroupsSequence[4:]:   # frames 4, 5: a coronal stack in the same file
        o = pydicom.Dataset()
        o.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
        item.PlaneOrientationSequence = pydicom.Sequence([o])
    ds.save_as(path)
    rec, files = scan_series(d, tmp_path)
    assert rec["n_frames"] == 4 and rec["n_set_aside"] == 2 and rec["plane"] == "axial"
    aside = files[~files["keep"]]
    assert sorted(aside["frame"]) == [4, 5] and aside["set_aside_reason"].str.startswith("orientation").all()
    frames = np.stack([a for _, a in iter_frames(files, tmp_path)])   # (4, 16, 16) kept frames, in HU
    np.testing.assert_array_equal(frames, np.rint(vol[:4]) - 1000.0)  # stored = rint(vol); per-frame intercept
