"""Stage ``project`` end to end on a tiny indexed dataset: selection, failures, kill + resume, montage."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from projections.test_phantoms import TARGET, geometry, small_params, write_phantom

from willis.index import build_index
from willis.labels import CSV_COLUMNS, LABELS, PRESENT
from willis.projections import load_family, read, validate_store
from willis.projections.executor import ProjectInterrupted, run_project
from willis.projections.worker import DIE_AFTER_ENV

PLANES = ["axial", "coronal", "sagittal", "axial", "axial"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """5 CT + 2 MR phantom series, one CT excluded by decode_check, one CT with every file corrupt."""
    root = tmp_path_factory.mktemp("data")
    rows, locs = [], []
    for i in range(7):
        ct = i < 5
        name = f"1.2.840.{i}"
        files = write_phantom(root, name, geometry(PLANES[i] if ct else "axial", n=12, matrix=24),
                              "CT" if ct else "MR", signed=ct)
        label = {c: 0 for c in LABELS}
        label[PRESENT] = i % 2
        rows.append({"SeriesInstanceUID": name, "PatientAge": 50, "PatientSex": "Female",
                     "Modality": "CTA" if ct else "MRA", **label})
        if i == 0:  # an annotated point at the target, on the slice nearest its z
            f = files.iloc[int(np.argmin([abs(p[2] - TARGET[2]) for p in files["ipp"]]))]
            ps, ipp = f["pixel_spacing"], f["ipp"]
            x, y = (TARGET[0] - ipp[0]) / ps[1], (TARGET[1] - ipp[1]) / ps[0]
            locs.append({"SeriesInstanceUID": name, "SOPInstanceUID": f["SOPInstanceUID"],
                         "coordinates": str({"x": float(x), "y": float(y)}), "location": "Basilar Tip"})
    for p in (root / "series" / "1.2.840.4").iterdir():
        p.write_bytes(b"corrupt")
    pd.DataFrame(rows)[list(CSV_COLUMNS)].to_csv(root / "train.csv", index=False)
    pd.DataFrame(locs).to_csv(root / "train_localizers.csv", index=False)
    index = root / "index"
    build_index(root, index, workers=1, val_fraction=0.3, test_fraction=0.3, smoke_sizes={"train": 1, "val": 1, "test": 1}, seed=0)
    series = pd.read_parquet(index / "series.parquet")
    report = {"series": {u: {"status": "ok", "reasons": []} for u in series["SeriesInstanceUID"]}}
    report["series"]["1.2.840.3"] = {"status": "excluded", "reasons": ["test: excluded"]}
    (root / "decode.json").write_text(json.dumps(report))
    return root


def _run(root, tag, monkeypatch=None, **kw):
    params = small_params(size=16, instances=3, out=str(root / tag / "out"), work=str(root / tag / "work"), **kw)
    return params, run_project(params, index_dir=root / "index", decode_report=root / "decode.json", root=root,
                               families=("ct", "mr"), smoke=False, report_path=root / tag / "project.json",
                               montage_dir=root / tag / "plots")


def test_killed_run_resumes_to_the_clean_result(dataset, monkeypatch):
    root = dataset
    params, clean = _run(root, "clean")
    assert clean["totals"]["ct"] == {"series": 4, "complete": 3, "failed": 1}
    assert clean["totals"]["mr"] == {"series": 2, "complete": 2, "failed": 0}
    assert "1.2.840.4" in clean["failed"] and "no kept frames" in clean["failed"]["1.2.840.4"]
    assert clean["left_out"] == {"1.2.840.3": "excluded by decode_check: test: excluded"}
    assert (root / "clean" / "plots" / "montage_ct.png").stat().st_size > 1000

    monkeypatch.setenv(DIE_AFTER_ENV, "2")        # the worker dies (like kill -9) after writing 2 series
    with pytest.raises(ProjectInterrupted, match="rerun to resume"):
        _run(root, "killed")
    journal = next((root / "killed" / "work").glob("project-*/ct.journal.jsonl"))
    assert len(journal.read_text().splitlines()) == 1   # 2nd series written, but the parent never journaled it
    assert not (root / "killed" / "out" / "ct.zarr").exists()
    monkeypatch.delenv(DIE_AFTER_ENV)
    _, resumed = _run(root, "killed")
    assert resumed == clean  # the report holds no wall time: a resumed run writes the same bytes
    assert not any((root / "killed" / "work").iterdir())  # work dir moved into the output
    _assert_same_stores(root / "clean" / "out", root / "killed" / "out")
    for fam in ("ct", "mr"):
        validate_store(root / "killed" / "out" / f"{fam}.zarr")


def _assert_same_stores(a_dir, b_dir):
    """Both families' stores hold the same series, bytes and per-series attrs."""
    for fam in ("ct", "mr"):
        a = load_family(a_dir / f"{fam}.zarr")
        b = load_family(b_dir / f"{fam}.zarr")
        assert a.uids == b.uids
        np.testing.assert_array_equal(a.mip, b.mip)
        np.testing.assert_array_equal(a.instances, b.instances)
        np.testing.assert_array_equal(a.instance_z, b.instance_z)
        assert a.series == b.series


def test_store_contents_and_localizer(dataset):
    root = dataset
    out = root / "clean" / "out"
    if not (out / "ct.zarr").exists():
        _run(root, "clean")
    from willis.projections import patient_to_view
    import zarr

    attrs = zarr.open_group(str(out / "ct.zarr"), mode="r").attrs
    assert attrs["series_uids"] == ["1.2.840.0", "1.2.840.1", "1.2.840.2", "1.2.840.4"]
    s0 = attrs["series"]["1.2.840.0"]
    assert s0["plane"] == "axial" and s0["modality"] == "CTA" and s0["channels"] == attrs["channels"]
    loc = pd.read_parquet(root / "index" / "localizers.parquet")
    point = loc[loc["found"]]["patient"].iloc[0]
    np.testing.assert_allclose(point, TARGET, atol=3.0)     # the annotated pixel maps back to the target
    rc = patient_to_view(point, s0)["axial"]
    mip = read(out / "ct.zarr", "1.2.840.0")["mip"]
    hl = attrs["channels"].index("highlight")
    r, c = np.unravel_index(np.argmax(mip[0, hl]), mip.shape[-2:])
    assert abs(r - rc[0]) <= 2 and abs(c - rc[1]) <= 2


def test_dask_executor_writes_the_same_store(dataset):
    pytest.importorskip("dask.distributed")
    root = dataset
    if not (root / "clean" / "out" / "ct.zarr").exists():
        _run(root, "clean")
    _, rep = _run(root, "dask", executor="dask", workers=2)
    assert rep["failed"].keys() == {"1.2.840.4"}
    _assert_same_stores(root / "clean" / "out", root / "dask" / "out")
