"""The projection store contract: layout, one chunk file per series per array, readers, validator, view geometry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from willis.projections import (
    FineLayout,
    Projection,
    StoreError,
    create_store,
    finalize_store,
    load_family,
    open_store,
    fine_to_patient,
    patient_to_fine,
    patient_to_view,
    pixel_to_lps,
    read,
    validate_store,
    write_projection,
)

C, S, K = 2, 8, 3
FINE = FineLayout(("vessel", "highlight", "thickness"), {}, 6, 2)   # F = 6 px of 0.5 mm, K_f = 2 slabs
CF = len(FINE.channels)


def _fine_attrs(centre=(0.0, 0.0, 0.0)) -> dict:
    from willis.projections.finebox import FineBox

    box = FineBox(centre, 0.5, FINE.size, FINE.slabs)
    return {**box.attrs(), "flag": "vessels", "locate": {}, "windows": [], "frames": 3}


def _proj(uid: str, seed: int) -> Projection:
    rng = np.random.default_rng(seed)
    return Projection(
        uid,
        rng.integers(0, 256, (3, C, S, S), dtype=np.uint8),
        rng.integers(0, 256, (K, C, S, S), dtype=np.uint8),
        np.array([30.0, 10.0, -10.0], np.float32) + seed,
        {"modality": "CTA", "centre_mm": [0, 0, 0], "mm_per_px": 1.0, "size": S, "instance_ranges_mm": [[40, 20], [20, 0], [0, -20]],
         "fine": _fine_attrs()},
        rng.integers(0, 256, (3, FINE.slabs, CF, FINE.size, FINE.size), dtype=np.uint8),
    )


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "ct.zarr"
    uids = [f"1.2.{i}" for i in range(6)]
    g = create_store(path, "ct", uids, ["vessel", "highlight"], S, K, {"size": S}, fine=FINE)
    projs = {u: _proj(u, i) for i, u in enumerate(uids)}
    for i in (0, 2, 3, 5):
        write_projection(g, i, projs[uids[i]])
    write_projection(g, 4, projs[uids[4]])  # a worker was killed before the parent journaled it
    done = {uids[i]: (projs[uids[i]].instance_z, projs[uids[i]].attrs) for i in (0, 2, 3, 5)}
    finalize_store(path, done, {uids[1]: "series 1.2.1: no frame decoded"})
    return path, uids, projs


def test_layout_one_chunk_file_per_series_per_array(store):
    path, uids, _ = store
    assert validate_store(path) == {"series": 6, "complete": 4, "failed": 1}
    for name, dims in (("mip", 4), ("instances", 4), ("fine", 5)):
        chunks = sorted(p.name for p in (path / name).iterdir() if p.name.startswith("c."))
        # '.'-separated keys, one file per complete series, none for the failed or the half-written one
        assert chunks == [f"c.{i}" + ".0" * dims for i in (0, 2, 3, 5)]
    fine_meta = json.loads((path / "fine" / "zarr.json").read_text())
    assert fine_meta["shape"] == [6, 3, FINE.slabs, CF, FINE.size, FINE.size]
    assert fine_meta["chunk_grid"]["configuration"]["chunk_shape"] == [1, 3, FINE.slabs, CF, FINE.size, FINE.size]
    meta = json.loads((path / "mip" / "zarr.json").read_text())
    assert meta["chunk_key_encoding"] == {"name": "default", "configuration": {"separator": "."}}
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [1, 3, C, S, S]
    assert any(c["name"] == "zstd" for c in meta["codecs"])
    root = json.loads((path / "zarr.json").read_text())
    assert "consolidated_metadata" in root and root["attributes"]["series_uids"] == uids
    a = root["attributes"]
    assert a["layout_version"] == 2 and a["fine_channels"] == list(FINE.channels)
    assert (a["fine_size"], a["fine_slabs"]) == (FINE.size, FINE.slabs)
    assert a["fine_slab_order"] == {"axial": "superior_to_inferior", "coronal": "anterior_to_posterior", "sagittal": "right_to_left"}


def test_read_roundtrip_and_refuses_incomplete(store):
    path, uids, projs = store
    out = read(path, uids[3])
    np.testing.assert_array_equal(out["mip"], projs[uids[3]].mip.astype(np.float32) / 255)
    np.testing.assert_array_equal(out["instances"], projs[uids[3]].instances.astype(np.float32) / 255)
    np.testing.assert_array_equal(out["instance_z"], projs[uids[3]].instance_z)
    np.testing.assert_array_equal(out["fine"], projs[uids[3]].fine.astype(np.float32) / 255)
    assert out["mip"].dtype == np.float32 and 0 <= out["mip"].min() and out["mip"].max() <= 1
    with pytest.raises(StoreError, match="1.2.1 is not complete: series 1.2.1: no frame decoded"):
        read(path, uids[1])
    with pytest.raises(StoreError, match="1.2.4 is not complete"):
        read(path, uids[4])
    with pytest.raises(StoreError, match="not in this store"):
        read(path, "9.9")
    assert np.isnan(open_store(path)["instance_z"][4]).all()


def test_load_family_keeps_requested_order(store):
    path, uids, projs = store
    fa = load_family(path, [uids[5], uids[0], uids[2]], fine=True)
    assert fa.uids == [uids[5], uids[0], uids[2]] and fa.fine_channels == list(FINE.channels)
    for i, u in enumerate(fa.uids):
        np.testing.assert_array_equal(fa.fine[i], projs[u].fine)
        np.testing.assert_array_equal(fa.mip[i], projs[u].mip)
        np.testing.assert_array_equal(fa.instances[i], projs[u].instances)
        np.testing.assert_array_equal(fa.instance_z[i], projs[u].instance_z)
    assert fa.series[0]["modality"] == "CTA" and fa.channels == ["vessel", "highlight"]
    two = load_family(path, [uids[2]], fine=True, fine_channels=["thickness", "vessel"])
    assert two.fine_channels == ["thickness", "vessel"] and two.fine.shape[3] == 2
    np.testing.assert_array_equal(two.fine[0], projs[uids[2]].fine[:, :, [2, 0]])
    with pytest.raises(StoreError, match="fine channels \\['dark'\\] not in"):
        load_family(path, [uids[2]], fine=True, fine_channels=["dark"])
    everything = load_family(path)
    assert everything.uids == [uids[i] for i in (0, 2, 3, 5)] and everything.fine is None  # fine only on request
    with pytest.raises(StoreError, match="missing or incomplete"):
        load_family(path, [uids[1]])


@pytest.mark.filterwarnings("ignore:Consolidated metadata")
def test_validate_names_problems(store, tmp_path):
    path, uids, _ = store
    g = zarr.open_group(str(path), mode="r+")
    g.attrs["complete"] = [True] * len(uids)   # claims rows that were never written
    zarr.consolidate_metadata(str(path))
    with pytest.raises(StoreError, match="lack attrs|NaN"):
        validate_store(path)
    with pytest.raises(StoreError, match="no projection store"):
        validate_store(tmp_path / "absent.zarr")


@pytest.mark.filterwarnings("ignore:Consolidated metadata")
def test_validate_names_bad_fine_attrs(store):
    path, uids, _ = store
    g = zarr.open_group(str(path), mode="r+")
    series = dict(g.attrs["series"])
    broken = dict(series[uids[0]]["fine"])
    broken["slab_ranges_mm"] = {**broken["slab_ranges_mm"], "axial": broken["slab_ranges_mm"]["axial"][::-1]}
    series[uids[0]] = {**series[uids[0]], "fine": broken}
    g.attrs["series"] = series
    zarr.consolidate_metadata(str(path))
    with pytest.raises(StoreError, match=r"series 1.2.0: attrs fine: slab_ranges_mm\[axial\] not in superior_to_inferior"):
        validate_store(path)


def test_write_rejects_wrong_shape(tmp_path):
    g = create_store(tmp_path / "s.zarr", "mr", ["a"], ["x"], S, K, {}, fine=FINE)
    bad = Projection("a", np.zeros((3, 2, S, S), np.uint8), np.zeros((K, 1, S, S), np.uint8), np.zeros(K, np.float32), {})
    with pytest.raises(StoreError, match="series a: mip"):
        write_projection(g, 0, bad)
    bad_fine = Projection("a", np.zeros((3, 1, S, S), np.uint8), np.zeros((K, 1, S, S), np.uint8), np.zeros(K, np.float32), {},
                          np.zeros((3, FINE.slabs, CF, FINE.size + 1, FINE.size), np.uint8))
    with pytest.raises(StoreError, match="series a: fine"):
        write_projection(g, 0, bad_fine)


def test_fine_layout_follows_the_params():
    lay = FineLayout.for_family("mr", {"fine_mm_per_px": 0.5, "fine_box_mm": 100.0, "fine_slab_mm": 10.0})
    assert (lay.size, lay.slabs, lay.channels) == (200, 10, ("vessel", "thickness", "dark"))
    assert FineLayout.for_family("ct", {}).channels == ("vessel", "highlight", "thickness")


def test_patient_to_view_hand_computed():
    attrs = {"centre_mm": [10.0, -20.0, 30.0], "mm_per_px": 2.0, "size": 100,
             "instance_ranges_mm": [[80.0, 50.0], [50.0, 20.0], [20.0, -10.0]]}
    # 10 mm to the patient's left (+x), 6 mm anterior (-y), 4 mm superior (+z) of the centre
    p = patient_to_view([20.0, -26.0, 34.0], attrs)
    assert p["axial"] == pytest.approx((49.5 - 3, 49.5 + 5))     # row: anterior is up; col: left is right
    assert p["coronal"] == pytest.approx((49.5 - 2, 49.5 + 5))   # row: superior is up
    assert p["sagittal"] == pytest.approx((49.5 - 2, 49.5 - 3))  # col: anterior is left
    assert p["instance"] == 1
    assert patient_to_view([0, 0, 90.0], attrs)["instance"] is None
    assert patient_to_view([0, 0, 80.0], attrs)["instance"] == 0


def test_patient_to_fine_hand_computed():
    from willis.projections.finebox import FineBox

    box = FineBox((10.0, -20.0, 30.0), 0.5, 200, 10)          # a 100 mm cube, 10 slabs of 10 mm
    attrs = {"fine": box.attrs()}
    assert attrs["fine"]["box_mm"] == [[-40.0, 60.0], [-70.0, 30.0], [-20.0, 80.0]]
    # 11 mm to the patient's left (+x), 6 mm anterior (-y), 4 mm superior (+z) of the centre
    p = patient_to_fine([21.0, -26.0, 34.0], attrs)
    c = 99.5                                                    # F / 2 - 0.5: the centre in pixels
    assert p["axial"] == pytest.approx((4, c - 12, c + 22))     # slab 4 = z in [40, 30] (superior first); anterior up; left right
    assert p["coronal"] == pytest.approx((4, c - 8, c + 22))    # slab 4 = y in [-30, -20] (anterior first); superior up
    assert p["sagittal"] == pytest.approx((6, c - 8, c - 12))   # slab 6 = x in [20, 30] (right first); anterior left
    assert patient_to_fine([0, 0, 81.0], attrs)["axial"][0] is None       # above the box
    assert patient_to_fine([0, 0, 80.0], attrs)["axial"][0] == 0          # the top face is in slab 0
    assert patient_to_fine([-40.0, 0, 0], attrs)["sagittal"][0] == 0      # the right face, slab 0
    for view in ("axial", "coronal", "sagittal"):
        k, r, col = p[view]
        back = fine_to_patient(view, k, r, col, attrs)
        exact = np.array([21.0, -26.0, 34.0])
        axis = {"axial": 2, "coronal": 1, "sagittal": 0}[view]
        keep = [a for a in range(3) if a != axis]
        np.testing.assert_allclose(back[keep], exact[keep])           # in-plane: exact
        lo, hi = sorted(attrs["fine"]["slab_ranges_mm"][view][k])
        assert lo <= back[axis] <= hi and back[axis] == pytest.approx((lo + hi) / 2)  # along the slab: its mid-plane


def test_pixel_to_lps_matches_dicom_equation():
    # coronal slice: columns -> patient left, rows -> inferior
    p = pixel_to_lps([-100, 5, 80], [1, 0, 0, 0, 0, -1], [0.5, 0.8], x=10, y=20)
    np.testing.assert_allclose(p, [-100 + 10 * 0.8, 5, 80 - 20 * 0.5])


def test_empty_family_store_is_valid(tmp_path):
    path = tmp_path / "mr.zarr"
    create_store(path, "mr", [], ["wide"], S, K, {}, fine=FINE)
    finalize_store(path, {}, {})
    assert validate_store(path) == {"series": 0, "complete": 0, "failed": 0}
    fa = load_family(path, fine=True)
    assert fa.uids == [] and fa.mip.shape == (0, 3, 1, S, S) and fa.instance_z.shape == (0, K)
    assert fa.fine.shape == (0, 3, FINE.slabs, CF, FINE.size, FINE.size)
