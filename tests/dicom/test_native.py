"""willis.dicom.native: frames read straight from the file's bytes equal pydicom's, or pydicom is used."""

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import iter_pixels
from pydicom.uid import ExplicitVRLittleEndian

from willis.dicom.frames import iter_frames, read_frames
from willis.dicom.native import StoredLayout, direct_reader
from willis.index import scan_series
from willis.synth.dicom_writer import geometry_for, write_series

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _series(root: Path, encoding: str, multiframe: bool, modality: str = "CT") -> tuple[Path, object]:
    g = geometry_for("axial", (0.0, 0.0, 0.0), fov_mm=60.0, n_slices=6, matrix=24, slice_spacing=2.0)
    vol = np.random.default_rng(3).integers(-1000, 2500, (6, 24, 24)).astype(np.float32)
    uid = f"1.2.826.0.1.3680043.8.498.{abs(hash((encoding, multiframe, modality))) % 10**8}"
    folder = root / "series" / uid
    write_series(vol, g, folder, modality=modality, series_uid=uid, study_uid="1.2.3", patient_id="P", encoding=encoding,
                 multiframe=multiframe, intercept=-1024.0 if modality == "CT" else 0.0, signed=modality == "CT")
    _, files = scan_series(folder, root)
    return folder, files


def _facts(r) -> dict:
    return {"n_frames": int(r.n_frames), "signed": int(r.pixel_representation) == 1, "bits_stored": int(r.bits_stored)}


@pytest.mark.parametrize("encoding", ["explicit", "implicit", "big_endian", "rle"])
@pytest.mark.parametrize("multiframe", [False, True])
def test_direct_frames_equal_pydicom(tmp_path, encoding, multiframe):
    _, files = _series(tmp_path, encoding, multiframe)
    kept = files[files["keep"]].sort_values("order")
    for r in kept.itertuples():
        path = tmp_path / r.path
        layout = StoredLayout(int(r.rows), int(r.cols), int(r.bits_allocated), int(r.bits_stored),
                              int(r.pixel_representation) == 1, int(r.n_frames), r.transfer_syntax)
        direct = direct_reader(path, [int(r.frame)], layout)
        assert direct is not None, f"{encoding}: the fast path refused a well-formed file"
        (got,) = list(direct)
        (ref,) = list(iter_pixels(path, indices=[int(r.frame)]))
        assert got.dtype == ref.dtype                      # big-endian data stays ">" as pydicom gives it
        np.testing.assert_array_equal(got, ref)
    fast = [f for _, f in iter_frames(files, tmp_path)]
    slow = [f for _, f in iter_frames(files.drop(columns=["n_frames"]), tmp_path)]   # no header facts: pydicom
    reused = [f.copy() for _, f in iter_frames(files, tmp_path, reuse=True)]
    for a, b, c in zip(fast, slow, reused):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(c, b)


def _write_raw(path: Path, stored: np.ndarray, bits_stored: int, signed: bool, trailing: bool = False) -> StoredLayout:
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", "CT"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = stored.dtype.itemsize * 8, bits_stored, bits_stored - 1
    ds.PixelRepresentation = int(signed)
    ds.PixelData = stored.tobytes()
    if trailing:
        ds.add_new(0xFFFCFFFC, "OB", b"\x00\x00")   # DataSetTrailingPadding after the pixel data
    ds.save_as(path, enforce_file_format=True)
    return StoredLayout(stored.shape[0], stored.shape[1], stored.dtype.itemsize * 8, bits_stored, signed, 1,
                        ExplicitVRLittleEndian)


@pytest.mark.parametrize("signed", [False, True])
def test_unused_high_bits_are_corrected_as_pydicom_does(tmp_path, signed):
    """12 bits stored in 16 with garbage in the top 4: sign-extended (signed) or masked (unsigned)."""
    raw = np.random.default_rng(1).integers(0, 1 << 16, (8, 10)).astype(np.uint16)
    stored = raw.view(np.int16) if signed else raw
    layout = _write_raw(tmp_path / "a.dcm", stored, 12, signed)
    (got,) = list(direct_reader(tmp_path / "a.dcm", [0], layout))
    (ref,) = list(iter_pixels(tmp_path / "a.dcm"))
    np.testing.assert_array_equal(got, ref)
    assert not np.array_equal(got, stored)   # the correction did something


def test_odd_length_8_bit_and_a_trailing_element(tmp_path):
    img = np.random.default_rng(2).integers(0, 255, (5, 7)).astype(np.uint8)   # 35 bytes: padded to 36
    layout = _write_raw(tmp_path / "odd.dcm", img, 8, False)
    (got,) = list(direct_reader(tmp_path / "odd.dcm", [0], layout))
    np.testing.assert_array_equal(got, img)
    layout = _write_raw(tmp_path / "tail.dcm", img.astype(np.uint16), 16, False, trailing=True)
    assert direct_reader(tmp_path / "tail.dcm", [0], layout) is None      # not provably last: pydicom reads it
    (arr,) = list(read_frames(tmp_path / "tail.dcm", [0], 5, 7, ExplicitVRLittleEndian, n_frames=1, signed=False, bits_stored=16))
    np.testing.assert_array_equal(arr, img)


def test_a_wrong_claim_falls_back_to_pydicom(tmp_path):
    img = np.arange(48, dtype=np.uint16).reshape(6, 8)
    layout = _write_raw(tmp_path / "a.dcm", img, 16, False)
    bad = StoredLayout(6, 8, 16, 16, False, 2, layout.transfer_syntax)          # two frames claimed, one stored
    assert direct_reader(tmp_path / "a.dcm", [0], bad) is None
    assert direct_reader(tmp_path / "a.dcm", [3], layout) is None               # a frame the file cannot hold
