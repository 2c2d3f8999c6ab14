"""willis.index: scan_series (mixed folders, bad files) and build_index (CSV join, localizers, splits)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from willis.index import build_index, scan_series, validate_index
from willis.labels import CSV_COLUMNS, LABELS, PRESENT
from willis.synth.dicom_writer import geometry_for, uid_from, write_series

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

MODALITY_TAG = {"CTA": "CT", "MRA": "MR", "MRI T2": "MR", "MRI T1post": "MR"}


def write_one(root: Path, uid: str, *, modality="CTA", patient="P1", plane="axial", n=4, matrix=16, spacing=2.0,
              **kw) -> tuple[Path, object]:
    """A tiny series folder ``<root>/series/<uid>`` written by the team's DICOM writer; returns (folder, geometry)."""
    geom = geometry_for(plane, (0, 0, 0), 100, n, matrix, spacing)
    vol = np.random.default_rng(len(uid)).integers(0, 1000, geom.shape).astype(np.float32)
    kw.setdefault("intercept", -1024.0 if MODALITY_TAG[modality] == "CT" else 0.0)
    write_series(vol, geom, root / "series" / uid, modality=MODALITY_TAG[modality], series_uid=uid,
                 study_uid=uid_from(patient, "study"), patient_id=patient, **kw)
    return root / "series" / uid, geom


def csv_row(uid, modality="CTA", present=0, location=None, age=50, sex="Female"):
    row = {"SeriesInstanceUID": uid, "PatientAge": age, "PatientSex": sex, "Modality": modality}
    row.update({c: 0 for c in LABELS})
    row[PRESENT] = present
    if location:
        row[location] = 1
    return row


def write_csv(root: Path, rows: list[dict], localizers: list[dict] | None = None) -> None:
    pd.DataFrame(rows, columns=list(CSV_COLUMNS)).to_csv(root / "train.csv", index=False)
    pd.DataFrame(localizers or [], columns=["SeriesInstanceUID", "SOPInstanceUID", "coordinates", "location"]).to_csv(
        root / "train_localizers.csv", index=False)


def test_mixed_folder_keeps_largest_consistent_group_and_reports_the_rest(tmp_path):
    uid = "1.2.100"
    folder, _ = write_one(tmp_path, uid, n=5, matrix=16)
    # a 3-slice group of another shape, a coronal scout of the same shape, and a text file
    write_one(tmp_path, uid, n=3, matrix=20, uid_salt="other")
    write_one(tmp_path, uid, n=1, matrix=16, plane="coronal", uid_salt="scout")
    (folder / "notes.txt").write_text("hello")
    rec, files = scan_series(folder, tmp_path)
    assert rec["n_files"] == 10 and rec["n_frames"] == 5 and (rec["rows"], rec["cols"]) == (16, 16)
    assert rec["n_set_aside"] == 5
    reasons = files.loc[~files["keep"], "set_aside_reason"].tolist()
    assert sum("20x20 differs from the kept group's 16x16" in r for r in reasons) == 3
    assert sum(r.startswith("orientation") for r in reasons) == 1
    assert sum("not a DICOM file" in r for r in reasons) == 1
    assert sorted(files.loc[files["keep"], "order"]) == [0, 1, 2, 3, 4]
    assert (files.loc[~files["keep"], "order"] == -1).all()


def test_series_without_usable_frames_is_recorded_not_raised(tmp_path):
    folder = tmp_path / "series" / "1.2.7"
    folder.mkdir(parents=True)
    (folder / "a.dcm").write_bytes(b"\0" * 200)
    (folder / "b.dcm").write_bytes(b"DICM")
    rec, files = scan_series(folder, tmp_path)
    assert rec["n_frames"] == 0 and rec["n_files"] == 2 and rec["geometry_flag"] == "no_usable_frames"
    assert len(files) == 2 and not files["keep"].any() and (files["set_aside_reason"] != "").all()


def test_all_slices_at_one_position_is_flagged(tmp_path):
    folder, _ = write_one(tmp_path, "1.2.8", n=4, spacing=0.0)
    rec, files = scan_series(folder, tmp_path)
    assert "positions_identical" in rec["geometry_flag"].split(";")
    assert rec["slice_spacing"] == pytest.approx(0.0) or np.isnan(rec["slice_spacing"])


@pytest.fixture
def dataset(tmp_path):
    """6 csv series over 4 patients (one multi-frame MR), 1 orphan folder, 1 csv row without folder."""
    root = tmp_path / "data"
    rows, locs = [], []
    specs = [("1.2.1", "CTA", "PA", 1), ("1.2.2", "CTA", "PA", 0), ("1.2.3", "MRA", "PB", 1),
             ("1.2.4", "MRI T2", "PC", 0), ("1.2.5", "CTA", "PD", 1), ("1.2.6", "MRA", "PD", 0)]
    for uid, mod, patient, present in specs:
        mf = uid == "1.2.3"
        folder, geom = write_one(root, uid, modality=mod, patient=patient, multiframe=mf,
                                 plane="sagittal" if mf else "axial", instance_numbers="reversed" if mf else "position")
        rows.append(csv_row(uid, mod, present, "Basilar Tip" if present else None))
        if present:
            ds = pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True)
            f = "'f': 1, " if mf else ""
            locs.append({"SeriesInstanceUID": uid, "SOPInstanceUID": ds.SOPInstanceUID,
                         "coordinates": "{" + f + "'x': 3.0, 'y': 5.0}", "location": "Basilar Tip"})
    write_one(root, "1.2.99", patient="PZ")                    # orphan: folder not in train.csv
    rows.append(csv_row("1.2.98", "MRA", 1))                   # missing: csv row, no folder
    locs.append({"SeriesInstanceUID": "1.2.1", "SOPInstanceUID": "9.9.9", "coordinates": "{'x': 1, 'y': 2}",
                 "location": "Basilar Tip"})                   # a point on a SOP that does not exist
    write_csv(root, rows, locs)
    return root


@pytest.mark.parametrize("workers", [1, 2])
def test_build_index_end_to_end(dataset, tmp_path, workers):
    out = tmp_path / f"index{workers}"
    summary = build_index(dataset, out, workers=workers, val_fraction=0.25, test_fraction=0.25,
                          smoke_sizes={"train": 2, "val": 1, "test": 1}, seed=0)
    series = pd.read_parquet(out / "series.parquet")
    files = pd.read_parquet(out / "files.parquet")
    loc = pd.read_parquet(out / "localizers.parquet")
    validate_index(series, files, loc)
    assert summary["orphans"] == 1 and summary["missing"] == 1 and len(series) == 8
    s = series.set_index("SeriesInstanceUID")
    assert not s.loc["1.2.99", "in_csv"] and s.loc["1.2.99", "has_folder"] and s.loc["1.2.99", "split"] == ""
    assert s.loc["1.2.99", "family"] == "ct" and s.loc["1.2.99", PRESENT] == -1
    assert s.loc["1.2.98", "in_csv"] and not s.loc["1.2.98", "has_folder"] and s.loc["1.2.98", "split"] == ""
    assert s.loc["1.2.3", "multiframe"] and s.loc["1.2.3", "plane"] == "sagittal" and s.loc["1.2.3", "family"] == "mr"
    assert s.loc["1.2.4", "Modality"] == "MRI T2" and s.loc["1.2.1", "PatientID"] == "PA"
    assert s.loc["1.2.1", "pixel_spacing"].tolist() == pytest.approx([100 / 16] * 2)
    assert s.loc["1.2.1", "slice_spacing"] == pytest.approx(2.0)
    # one patient, one split
    assert s.loc["1.2.5", "split"] == s.loc["1.2.6", "split"] and s.loc["1.2.1", "split"] == s.loc["1.2.2", "split"]
    assert set(s.loc[s["in_csv"] & s["has_folder"], "split"]) <= {"train", "val", "test"}
    # localizers: LPS point = ipp + x * col spacing * row cosine + y * row spacing * col cosine
    lr = loc.set_index("SeriesInstanceUID")
    assert lr["found"].sum() == 3 and not loc.loc[loc["SOPInstanceUID"] == "9.9.9", "found"].item()
    mf = lr.loc["1.2.3"]
    assert mf["frame"] == 1
    fr = files[(files["SeriesInstanceUID"] == "1.2.3") & (files["frame"] == 1)].iloc[0]
    geom = geometry_for("sagittal", (0, 0, 0), 100, 4, 16, 2.0)
    np.testing.assert_allclose(mf["patient"], geom.voxel_to_patient(fr["order"], 5.0, 3.0), atol=1e-3)
    assert mf["order"] == fr["order"]
    # files: one row per frame, multi-frame file has 4 rows with frames 0..3
    assert sorted(files.loc[files["SeriesInstanceUID"] == "1.2.3", "frame"]) == [0, 1, 2, 3]


def test_build_index_is_deterministic(dataset, tmp_path):
    kw = dict(workers=1, val_fraction=0.25, test_fraction=0.25, smoke_sizes={"train": 2, "val": 1, "test": 1}, seed=3)
    build_index(dataset, tmp_path / "a", **kw)
    build_index(dataset, tmp_path / "b", **kw)
    for name in ("series", "files", "localizers"):
        assert (tmp_path / "a" / f"{name}.parquet").read_bytes() == (tmp_path / "b" / f"{name}.parquet").read_bytes()


def test_validate_index_rejects_a_patient_in_two_splits(dataset, tmp_path):
    build_index(dataset, tmp_path / "i", workers=1, val_fraction=0.25, test_fraction=0.25,
                smoke_sizes={"train": 2, "val": 1, "test": 1}, seed=0)
    series = pd.read_parquet(tmp_path / "i" / "series.parquet")
    files = pd.read_parquet(tmp_path / "i" / "files.parquet")
    loc = pd.read_parquet(tmp_path / "i" / "localizers.parquet")
    i1, i2 = series.index[series["SeriesInstanceUID"] == "1.2.1"][0], series.index[series["SeriesInstanceUID"] == "1.2.2"][0]
    series.loc[i1, "split"], series.loc[i2, "split"] = "train", "test"
    with pytest.raises(ValueError, match="patient"):
        validate_index(series, files, loc)


def test_duplicated_csv_rows_fail_with_the_uid(tmp_path):
    root = tmp_path / "d"
    write_one(root, "1.2.1")
    write_csv(root, [csv_row("1.2.1"), csv_row("1.2.1")])
    with pytest.raises(ValueError, match=r"train.csv: 1 duplicated SeriesInstanceUID.*1\.2\.1"):
        build_index(root, tmp_path / "i", workers=1, val_fraction=0.2, test_fraction=0.2, smoke_sizes={}, seed=0)


def test_csv_rows_without_any_series_folder_are_all_reported_missing(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    write_csv(root, [csv_row("1.2.1"), csv_row("1.2.2", "MRA", 1)])
    summary = build_index(root, tmp_path / "i", workers=2, val_fraction=0.2, test_fraction=0.2, smoke_sizes={}, seed=0)
    series = pd.read_parquet(tmp_path / "i" / "series.parquet")
    assert summary["missing"] == 2 and not series["has_folder"].any() and (series["split"] == "").all()
    assert list(series["family"]) == ["ct", "mr"]


def test_index_stage_does_not_depend_on_the_smoke_param():
    """The smoke column is always written; depending on `smoke` would defeat DVC's run-cache."""
    import yaml

    dvc = yaml.safe_load((Path(__file__).resolve().parents[2] / "dvc.yaml").read_text())
    for stage in ("index", "decode_check"):
        params = dvc["stages"][stage]["params"]
        assert "smoke" not in params and not any(str(p).startswith("smoke") for p in params)


def test_two_series_uids_in_one_folder_keep_the_larger(tmp_path):
    folder, _ = write_one(tmp_path, "1.2.50", n=4)
    geom = geometry_for("axial", (0, 0, 0), 100, 2, 16, 2.0)
    write_series(np.zeros(geom.shape, np.float32), geom, folder, modality="CT", series_uid="1.2.51",
                 study_uid="1.2.3", patient_id="P1")
    rec, files = scan_series(folder, tmp_path)
    assert rec["n_frames"] == 4 and rec["n_set_aside"] == 2
    reasons = files.loc[~files["keep"], "set_aside_reason"]
    assert (reasons == "SeriesInstanceUID 1.2.51 differs from the kept group's 1.2.50").all()


def test_iter_frames_reads_the_written_parquet_like_the_scanner_output(dataset, tmp_path):
    from willis.dicom import iter_frames

    build_index(dataset, tmp_path / "i", workers=1, val_fraction=0.25, test_fraction=0.25, smoke_sizes={}, seed=0)
    files = pd.read_parquet(tmp_path / "i" / "files.parquet")
    for uid in ("1.2.1", "1.2.3"):                                   # single-frame CT, multi-frame MR
        _, scanned = scan_series(dataset / "series" / uid, dataset)
        a = [(r.order, f) for r, f in iter_frames(files[files["SeriesInstanceUID"] == uid], dataset)]
        b = [(r.order, f) for r, f in iter_frames(scanned, dataset)]
        assert [o for o, _ in a] == [o for o, _ in b] == list(range(4))
        for (_, fa), (_, fb) in zip(a, b):
            np.testing.assert_array_equal(fa, fb)
