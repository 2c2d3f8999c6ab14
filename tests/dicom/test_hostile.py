"""Hostile DICOM (generated in code, tests/hostile.py): memory bombs, wrong data, bad names, bad CSVs.

Every case either is handled correctly (checked against the value it must give) or is reported with
a reason; the bombs are measured in child processes against the ceilings of issue 13 (1.5 GB, 60 s
per series and stage).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from hostile import (deflated_bomb, frames_bomb, good_slices, measure, rle_bomb, write_deflated, base_dataset)

from willis.decode_check import check_series
from willis.dicom import iter_frames
from willis.dicom.limits import ReadLimits
from willis.index import build_index, scan_series
from willis.index.csvs import CsvError
from willis.labels import CSV_COLUMNS, LABELS

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")   # pydicom warns on odd UIDs / values

BOMBS = {   # kind -> (writer, reason the default ceilings give)
    "deflated": (deflated_bomb, "pixel data claims 30000x30000x1 samples of 16 bits = 1800000000 bytes per frame "
                                "> index.max_frame_bytes"),
    "rle": (rle_bomb, "pixel data claims 30000x30000x1 samples of 16 bits = 1800000000 bytes per frame"),
    "frames": (frames_bomb, "pixel data claims 2000000000 frames > index.max_frames = 32768"),
    "frames_rle": (lambda p, u: frames_bomb(p, u, rle=True), "pixel data claims 2000000000 frames"),
}
UNLIMITED = ReadLimits(max_frame_bytes=1 << 40, max_pixel_bytes=1 << 50, max_frames=1 << 40)


def _series(root: Path, uid: str) -> Path:
    return root / "series" / uid


def _reasons(files: pd.DataFrame) -> list[str]:
    return files.loc[~files["keep"], "set_aside_reason"].tolist()


# ------------------------------------------------------------------ bombs: set aside from the header alone
@pytest.mark.parametrize("kind", list(BOMBS))
def test_a_bomb_is_one_set_aside_row_and_the_good_slices_survive(tmp_path, kind):
    write, reason = BOMBS[kind]
    uid = "1.2.826.0.1.3680043.8.498.1" + str(len(kind))
    folder = _series(tmp_path, uid)
    good_slices(folder, uid, n=4)
    write(folder / "bomb.dcm", uid)
    rec, files = scan_series(folder, tmp_path)
    assert rec["n_frames"] == 4 and rec["n_set_aside"] == 1 and len(files) == 5   # never one row per claimed frame
    (bomb,) = files[files["path"].str.endswith("bomb.dcm")].itertuples()
    assert not bomb.keep and bomb.set_aside_reason.startswith(reason), bomb.set_aside_reason
    check = check_series(rec, files, tmp_path)                 # the bomb is reported, never decoded
    assert check["status"] == "partial" and check["decoded"] == 3
    assert any("bomb.dcm" in r and "pixel data claims" in r for r in check["reasons"])


@pytest.mark.parametrize("write, expected", [
    (lambda p, u: rle_bomb(p, u), "1 RLE fragment(s) of 140 bytes hold at most 8960"),
    (lambda p, u: frames_bomb(p, u), "Pixel Data holds 512 bytes, 16x16x2000000000 frame(s) need 1024000000000"),
    (lambda p, u: frames_bomb(p, u, rle=True), "NumberOfFrames 2000000000 but the encapsulated pixel data has 1 "
                                                "fragment(s)"),
    (lambda p, u: write_deflated(p, base_dataset(u, 512, 512, frames=1000), 512 * 512 * 2 * 1000, stream_bytes=4096),
     "deflate stream of a"),
    (lambda p, u: write_deflated(p, base_dataset(u, 64, 64), 64 * 64 * 2, stream_bytes=4000),
     "file truncated: the deflated Pixel Data ends after 4000 of 8192 bytes"),
])
def test_claims_the_stored_bytes_cannot_hold_are_found_even_above_the_ceilings(tmp_path, write, expected):
    """With every ceiling lifted, the stored bytes alone still expose the lie (never by decoding)."""
    uid = "1.2.826.0.1.3680043.8.498.77"
    folder = _series(tmp_path, uid)
    good_slices(folder, uid, n=3)
    write(folder / "liar.dcm", uid)
    rec, files = scan_series(folder, tmp_path, UNLIMITED)
    (liar,) = files[files["path"].str.endswith("liar.dcm")].itertuples()
    assert rec["n_frames"] == 3 and expected in liar.set_aside_reason, liar.set_aside_reason


def test_an_honest_deflated_multiframe_file_decodes_in_one_streamed_pass(tmp_path):
    """Frames asked in reverse order come from ONE pass and equal the stored values."""
    from willis.dicom.frames import read_frames

    uid = "1.2.826.0.1.3680043.8.498.78"
    vol = np.arange(5 * 8 * 8, dtype=np.int16).reshape(5, 8, 8) - 100
    ds = base_dataset(uid, 8, 8, frames=5)
    path = tmp_path / "f.dcm"
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.PixelData = vol.tobytes()
    ds.save_as(path, enforce_file_format=True)
    got = list(read_frames(path, [4, 2, 0, 3], 8, 8, str(pydicom.uid.DeflatedExplicitVRLittleEndian)))
    np.testing.assert_array_equal(np.stack(got), vol[[4, 2, 0, 3]])


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    from predict.test_predict import make_bundle

    return make_bundle(tmp_path_factory.mktemp("bundle") / "models")


STAGES_CODE = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
from pathlib import Path
root, index, bundle, uid = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
t = {}
t0 = time.perf_counter()
from willis.index import build_index
build_index(root, index, workers=1, val_fraction=0.2, test_fraction=0.2, smoke_sizes={}, seed=0)
t["index"] = time.perf_counter() - t0; t0 = time.perf_counter()
from willis.decode_check import run_decode_check
run_decode_check(index, root, index / "dc.json", index / "dcm.json", workers=1, max_excluded_fraction=1.0)
t["decode_check"] = time.perf_counter() - t0; t0 = time.perf_counter()
import pandas as pd
from willis.params.project import ProjectParams
from willis.projections.streaming import project_series
series = pd.read_parquet(index / "series.parquet").set_index("SeriesInstanceUID", drop=False)
files = pd.read_parquet(index / "files.parquet")
params = ProjectParams(size=32, instances=4, grid=64, slab_bins=8, workers=1, montage_series=0)
outcome = {}
for u in series.index:
    try:
        project_series(series.loc[u], files[files["SeriesInstanceUID"] == u], root, params, "ct")
        outcome[u] = "projected"
    except Exception as e:
        outcome[u] = type(e).__name__
t["project"] = time.perf_counter() - t0; t0 = time.perf_counter()
from willis.predict import predict
status = {}
for u in series.index:
    status[u] = predict(str(root / "series" / u), models_dir=bundle, device="cpu").attrs["status"]
t["predict"] = time.perf_counter() - t0
print(json.dumps({"seconds": t, "project": outcome, "predict": status,
                  "dc": json.load(open(index / "dc.json"))["totals"]["status"]}))
"""


@pytest.mark.parametrize("kind", ["deflated", "rle", "frames"])
def test_bombs_stay_under_the_memory_and_time_ceilings_in_every_stage(tmp_path, bundle, kind):
    """index, decode_check, project and predict on a bomb beside 4 good slices, and on a bomb alone,
    in a child process: peak RSS < 1.5 GB and every stage < 60 s (the issue measured 3.6-12 GB)."""
    write, _ = BOMBS[kind]
    root = tmp_path / "data"
    with_good, alone = "1.2.826.0.1.3680043.8.498.91", "1.2.826.0.1.3680043.8.498.92"
    good_slices(_series(root, with_good), with_good, n=4)
    write(_series(root, with_good) / "bomb.dcm", with_good)
    _series(root, alone).mkdir(parents=True)
    write(_series(root, alone) / "bomb.dcm", alone)
    rows = [{c: 0 for c in CSV_COLUMNS} | {"SeriesInstanceUID": u, "PatientAge": 60, "PatientSex": "Male",
                                           "Modality": "CTA"} for u in (with_good, alone)]
    pd.DataFrame(rows, columns=list(CSV_COLUMNS)).to_csv(root / "train.csv", index=False)
    code = STAGES_CODE.replace("sys.argv[1]", repr(str(root))).replace("sys.argv[2]", repr(str(tmp_path / "index")))
    code = code.replace("sys.argv[3]", repr(str(bundle))).replace("sys.argv[4]", repr(with_good))
    res = measure(code, timeout=240)
    assert not res["killed"], f"{kind}: killed at {res['peak_mb']:.0f} MB"
    out = json.loads(next(line for line in res["stdout"].splitlines() if line.startswith("{")))
    print(f"\n{kind} bomb: peak RSS {res['peak_mb']:.0f} MB, stages {json.dumps(out['seconds'])}")
    assert res["peak_mb"] < 1500, res["peak_mb"]
    assert all(s < 60 for s in out["seconds"].values()), out["seconds"]
    assert out["project"] == {with_good: "projected", alone: "ProjectionError"}
    assert out["predict"] == {with_good: "partial", alone: "prior"}
    assert out["dc"] == {"ok": 0, "partial": 1, "excluded": 1}


# ------------------------------------------------------------------ wrong data: handled or reported
def test_modality_joins_the_grouping_key(tmp_path):
    uid = "1.2.826.0.1.3680043.8.498.101"
    folder = _series(tmp_path, uid)
    good_slices(folder, uid, n=4)
    for k in range(2):   # MR slices of the same shape and orientation in the CT series' folder
        good_slices(folder / "mr", uid, n=2, modality="MR", PixelRepresentation=0)
    for p in (folder / "mr").iterdir():
        p.rename(folder / f"mr_{p.name}")
    (folder / "mr").rmdir()
    rec, files = scan_series(folder, tmp_path)
    assert rec["n_frames"] == 4 and rec["dicom_modality"] == "CT"
    assert _reasons(files) == ["Modality MR differs from the kept group's CT"] * 2


def _pair(tmp_path, name, values, **tags):
    uid = f"1.2.826.0.1.3680043.8.498.{abs(hash(name)) % 10**6}"
    folder = _series(tmp_path, uid)
    good_slices(folder, uid, n=len(values), values=values, **tags)
    rec, files = scan_series(folder, tmp_path)
    return rec, files, np.stack([a for _, a in iter_frames(files, tmp_path)])


def test_monochrome1_is_inverted_to_match_its_monochrome2_twin(tmp_path):
    rng = np.random.default_rng(5)
    stored = rng.integers(0, 4096, (4, 32, 32))            # 12-bit MR magnitude
    common = dict(modality="MR", PixelRepresentation=0, BitsStored=12, HighBit=11)
    _, _, mono2 = _pair(tmp_path, "m2", stored, PhotometricInterpretation="MONOCHROME2", **common)
    _, _, mono1 = _pair(tmp_path, "m1", 4095 - stored, PhotometricInterpretation="MONOCHROME1", **common)
    np.testing.assert_array_equal(mono1, mono2)             # (4, 32, 32): identical volumes, so identical MIPs
    for axis in range(3):
        assert np.corrcoef(mono1.max(axis).ravel(), mono2.max(axis).ravel())[0, 1] == pytest.approx(1.0)


def test_unsigned_label_over_signed_hu_is_read_as_signed_and_reported(tmp_path):
    hu = np.random.default_rng(6).integers(-1000, 1500, (4, 32, 32))
    _, _, right = _pair(tmp_path, "signed", hu)                                     # PixelRepresentation 1
    rec, files, wrong = _pair(tmp_path, "unsigned", hu.astype(np.int16).view(np.uint16), PixelRepresentation=0)
    assert wrong.min() == hu.min() and wrong.max() == hu.max()   # air stays -1000, not +64536
    np.testing.assert_array_equal(wrong, right)
    check = check_series(rec, files, tmp_path)
    assert check["status"] == "partial"
    assert any(r.startswith("pixel values:") and "read as signed" in r for r in check["reasons"]), check["reasons"]


def test_signed_label_over_unsigned_mr_is_read_as_unsigned_and_reported(tmp_path):
    mr = np.random.default_rng(7).integers(0, 60000, (4, 32, 32))          # uses the top bit
    rec, files, got = _pair(tmp_path, "mr-signed", mr.astype(np.uint16).view(np.int16), modality="MR",
                            PixelRepresentation=1)
    np.testing.assert_array_equal(got, mr.astype(np.float32))
    assert any("read as unsigned" in r for r in check_series(rec, files, tmp_path)["reasons"])


def test_frame_types_mosaic_projections_and_captures_are_set_aside_with_reasons(tmp_path):
    uid = "1.2.826.0.1.3680043.8.498.102"
    folder = _series(tmp_path, uid)
    good_slices(folder, uid, n=4, modality="MR", ImageType=["ORIGINAL", "PRIMARY", "M", "ND"])
    odd = {
        "phase": ({"ImageType": ["ORIGINAL", "PRIMARY", "P", "ND"]}, "frame type PHASE"),
        "philips_real": ({"ImageType": ["ORIGINAL", "PRIMARY", "R_FFE", "R", "FFE"]}, "frame type REAL"),
        "fieldmap": ({"ImageType": ["ORIGINAL", "PRIMARY", "B0", "B0"]}, "field map"),
        "mosaic": ({"ImageType": ["ORIGINAL", "PRIMARY", "M", "MOSAIC"]}, "Siemens MOSAIC"),
        "mip": ({"ImageType": ["DERIVED", "SECONDARY", "PROJECTION IMAGE"]}, "projection image"),
        "siemens_mip": ({"ImageType": ["DERIVED", "PRIMARY", "MIP_SAG", "ND"]}, "projection image"),
        "capture": ({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.7"}, "secondary capture"),
    }
    for name, (tags, _) in odd.items():
        (p,) = good_slices(tmp_path / "tmp" / name, uid, n=1, modality="MR", **tags)
        ds = pydicom.dcmread(p)
        ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[name])
        ds.ImagePositionPatient = [0, 0, 9.0]
        ds.save_as(folder / f"{name}.dcm")
    rec, files = scan_series(folder, tmp_path)
    assert rec["n_frames"] == 4 and rec["geometry_flag"] == ""
    for name, (_, reason) in odd.items():
        (row,) = files[files["path"].str.endswith(f"/{name}.dcm")].itertuples()
        assert not row.keep and row.set_aside_reason.startswith(reason), (name, row.set_aside_reason)


def test_reformatted_frames_give_way_to_acquired_ones_and_are_kept_alone_with_a_flag(tmp_path):
    reformat = ["DERIVED", "SECONDARY", "REFORMATTED", "AVERAGE"]
    uid = "1.2.826.0.1.3680043.8.498.103"
    folder = _series(tmp_path, uid)
    good_slices(folder, uid, n=3)
    (p,) = good_slices(tmp_path / "tmp", uid, n=1, ImageType=reformat)
    shutil.move(p, folder / "reformat.dcm")
    rec, files = scan_series(folder, tmp_path)
    assert rec["n_frames"] == 3 and _reasons(files)[0].startswith("reformatted image")
    only = "1.2.826.0.1.3680043.8.498.104"
    good_slices(_series(tmp_path, only), only, n=3, ImageType=reformat)
    rec, files = scan_series(_series(tmp_path, only), tmp_path)
    assert rec["n_frames"] == 3 and rec["geometry_flag"] == "derived_reformatted"


def _four_d(tmp_path, name, n_pos, per_volume_tags: list[dict], per_slice=None):
    uid = f"1.2.826.0.1.3680043.8.498.2{len(name)}{len(per_volume_tags)}"
    folder = _series(tmp_path, uid)
    folder.mkdir(parents=True)
    for v, tags in enumerate(per_volume_tags):
        sub = tmp_path / "tmp" / name / str(v)
        paths = good_slices(sub, uid, n=n_pos, modality="MR", PixelRepresentation=0,
                            values=np.full((n_pos, 32, 32), 100 * (v + 1)), **tags)
        for k, p in enumerate(paths):
            ds = pydicom.dcmread(p)
            ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[name, str(v), str(k)])
            ds.InstanceNumber = v * n_pos + k + 1
            for key, value in (per_slice(v, k) if per_slice else {}).items():
                setattr(ds, key, value)
            ds.save_as(folder / f"v{v}_s{k}.dcm")
    return scan_series(folder, tmp_path) + (folder,)


def test_a_4d_series_keeps_one_volume_and_records_which(tmp_path):
    rec, files, _ = _four_d(tmp_path, "echo", 4, [{"EchoNumbers": 1}, {"EchoNumbers": 2}])
    assert rec["n_frames"] == 4 and rec["volume_choice"] == "EchoNumbers 1 of 2 values"
    assert "duplicate_positions" not in rec["geometry_flag"]
    assert _reasons(files) == ["4-D series: EchoNumbers 2 set aside (kept EchoNumbers 1: one volume per position)"] * 4
    frames = np.stack([a for _, a in iter_frames(files, tmp_path)])
    assert (frames == 100).all()                                      # only the first echo, never a mix
    # AcquisitionNumber changes with every slice: it would split a volume into slices, so the
    # temporal index is used instead
    rec, files, _ = _four_d(tmp_path, "dyn", 3, [{"TemporalPositionIdentifier": 1}, {"TemporalPositionIdentifier": 2}],
                            per_slice=lambda v, k: {"AcquisitionNumber": 10 * v + k})
    assert rec["n_frames"] == 3 and rec["volume_choice"] == "TemporalPositionIdentifier 1 of 2 values"


def test_duplicates_no_index_tells_apart_keep_the_first_per_position_and_are_flagged(tmp_path):
    rec, files, _ = _four_d(tmp_path, "dup", 4, [{}, {}])
    assert rec["n_frames"] == 4 and "duplicate_positions" in rec["geometry_flag"].split(";")
    assert rec["volume_choice"] == "first frame per position"
    reasons = _reasons(files)
    assert len(reasons) == 4 and all(r.startswith("duplicate position") for r in reasons)
    frames = np.stack([a for _, a in iter_frames(files, tmp_path)])
    assert (frames == 100).all()                                      # the lower InstanceNumbers
    assert check_series(rec, files, tmp_path)["status"] == "partial"


def test_a_subdirectory_and_a_non_utf8_name_cost_one_row_each(tmp_path):
    uid = "1.2.826.0.1.3680043.8.498.105"
    folder = _series(tmp_path, uid)
    paths = good_slices(folder, uid, n=5)
    (folder / "extra").mkdir()
    shutil.copy(paths[0], folder / "extra" / "copy.dcm")
    bad = os.fsdecode(b"bad-\xff\xfe-name.dcm")                      # not UTF-8: a surrogate-escaped str
    try:
        shutil.move(paths[4], folder / bad)
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system refuses non-UTF-8 names")
    rec, files = scan_series(folder, tmp_path)
    assert rec["n_frames"] == 4 and rec["n_set_aside"] == 2 and rec["n_files"] == 6
    reasons = dict(zip(files["path"], files["set_aside_reason"]))
    assert reasons[f"series/{uid}/extra/"].startswith("subdirectory (1 entries): not scanned")
    assert reasons[f"series/{uid}/bad-\\xff\\xfe-name.dcm"].startswith("file name is not valid UTF-8")
    files.to_parquet(tmp_path / "files.parquet")                    # the table stays writable
    check = check_series(rec, files, tmp_path)
    assert check["status"] == "partial" and check["decoded"] == 3


# ------------------------------------------------------------------ train.csv / train_localizers.csv
def _csv(root: Path, rows: list[dict], columns=None) -> None:
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=columns or list(CSV_COLUMNS)).to_csv(root / "train.csv", index=False)


def _row(uid, **kw):
    return {c: 0 for c in CSV_COLUMNS} | {"SeriesInstanceUID": uid, "PatientAge": 50, "PatientSex": "Female",
                                          "Modality": "CTA"} | kw


def _index(root, tmp_path):
    return build_index(root, tmp_path / "index", workers=1, val_fraction=0.2, test_fraction=0.2, smoke_sizes={},
                       seed=0)


@pytest.mark.parametrize("bad, expected", [
    ({"Basilar Tip": 2}, "train.csv line 3 (SeriesInstanceUID 1.2.2), column 'Basilar Tip': '2' is not 0 or 1"),
    ({"Aneurysm Present": "yes"}, "train.csv line 3 (SeriesInstanceUID 1.2.2), column 'Aneurysm Present': 'yes' is "
                                  "not 0 or 1"),
    ({"Modality": "PET"}, "line 3 (SeriesInstanceUID 1.2.2), column 'Modality': 'PET' is not one of"),
    ({"PatientAge": "old"}, "line 3 (SeriesInstanceUID 1.2.2), column 'PatientAge': 'old' is not a whole number"),
])
def test_train_csv_errors_name_the_line_and_column(tmp_path, bad, expected):
    root = tmp_path / "data"
    _csv(root, [_row("1.2.1"), _row("1.2.2", **bad), _row("1.2.3")])
    with pytest.raises(CsvError) as e:
        _index(root, tmp_path)
    assert expected in str(e.value) and "Traceback" not in str(e.value)


def test_train_csv_columns_must_be_exact_and_duplicates_are_named(tmp_path):
    root = tmp_path / "data"
    _csv(root, [_row("1.2.1") | {"Extra": 1}], columns=list(CSV_COLUMNS) + ["Extra"])
    with pytest.raises(CsvError, match=r"missing \[\], unexpected \['Extra'\]"):
        _index(root, tmp_path)
    _csv(root, [{k: v for k, v in _row("1.2.1").items() if k != "Basilar Tip"}],
         columns=[c for c in CSV_COLUMNS if c != "Basilar Tip"])
    with pytest.raises(CsvError, match=r"missing \['Basilar Tip'\]"):
        _index(root, tmp_path)
    _csv(root, [_row("1.2.1"), _row("1.2.1")])
    with pytest.raises(CsvError, match=r"duplicated SeriesInstanceUID .*1\.2\.1"):
        _index(root, tmp_path)


def test_every_bad_value_is_listed_not_only_the_first(tmp_path):
    root = tmp_path / "data"
    _csv(root, [_row(f"1.2.{i}", **{LABELS[i]: "x"}) for i in range(3)])
    with pytest.raises(CsvError) as e:
        _index(root, tmp_path)
    assert "3 invalid value(s)" in str(e.value)
    assert all(f"line {i + 2} (SeriesInstanceUID 1.2.{i}), column {LABELS[i]!r}" in str(e.value) for i in range(3))


@pytest.mark.parametrize("loc, expected", [
    ({"location": "Left Toe"}, "column 'location': 'Left Toe' is not one of the 13 locations"),
    ({"coordinates": "{'x': 'a', 'y': 2}"}, "column 'coordinates'"),
    ({"coordinates": "not a dict"}, "not a dict literal"),
    ({"coordinates": "{'x': 1, 'y': 2, 'f': -1}"}, "'f' (frame) must be an integer >= 0"),
])
def test_localizer_csv_errors_name_the_line_and_column(tmp_path, loc, expected):
    root = tmp_path / "data"
    _csv(root, [_row("1.2.1")])
    row = {"SeriesInstanceUID": "1.2.1", "SOPInstanceUID": "1.2.1.1", "coordinates": "{'x': 1, 'y': 2}",
           "location": "Basilar Tip"} | loc
    pd.DataFrame([row]).to_csv(root / "train_localizers.csv", index=False)
    with pytest.raises(CsvError) as e:
        _index(root, tmp_path)
    assert "train_localizers.csv line 2 (SeriesInstanceUID 1.2.1)" in str(e.value) and expected in str(e.value)


# ------------------------------------------------------------------ predict never raises
def test_predict_returns_the_prior_or_partial_with_a_status_on_hostile_folders(tmp_path, bundle):
    from willis.predict import predict

    root = tmp_path / "data"
    cases = {}
    uid = "1.2.826.0.1.3680043.8.498.301"
    _series(root, uid).mkdir(parents=True)
    (_series(root, uid) / "sub").mkdir()
    cases[uid] = "prior"                                            # nothing but a subdirectory
    uid = "1.2.826.0.1.3680043.8.498.302"
    paths = good_slices(_series(root, uid), uid, n=4)
    shutil.move(paths[3], _series(root, uid) / os.fsdecode(b"\xff.dcm"))
    cases[uid] = "partial"                                          # a non-UTF-8 name: 3 slices left
    uid = "1.2.826.0.1.3680043.8.498.303"
    _series(root, uid).mkdir(parents=True)
    deflated_bomb(_series(root, uid) / "a.dcm", uid)
    cases[uid] = "prior"                                            # a bomb alone
    for uid, status in cases.items():
        df = predict(str(_series(root, uid)), models_dir=bundle, device="cpu")
        assert df.attrs["status"] == status, df.attrs["reasons"]
        assert list(df.columns) == list(LABELS) and np.isfinite(df.to_numpy()).all()
        assert df.attrs["reasons"]
