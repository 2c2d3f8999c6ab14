"""The fine views through the real ``project_series``: geometry (a planted voxel lands where
``patient_to_fine`` says, in every view, for every acquisition plane and a gantry tilt), the
dark-lumen channel, exact MR scale invariance, the locate pass's sampling and gap filling."""

from __future__ import annotations

import numpy as np
import pytest
from projections.test_phantoms import files_table, geometry, small_params, write_phantom

from willis.projections import patient_to_fine
from willis.projections.streaming import project_series
from willis.projections.views import VIEWS
from willis.synth.dicom_writer import Geometry, geometry_for, sample_world, uid_from, write_series

POINT = np.array([-9.0, -7.0, 6.0])     # LPS mm: patient right, anterior, superior of the phantom centre
POINT_R = 1.5                           # a 3 mm bright sphere
FINE = dict(fine_mm_per_px=0.5, fine_box_mm=96.0, fine_slab_mm=8.0)   # F = 192, K_f = 12


def _world(bright: float, tissue: float, air: float):
    def fn(x, y, z):
        v = np.full(x.shape, air, np.float32)
        v[x**2 + y**2 + z**2 < 40.0**2] = tissue
        v[(x - POINT[0]) ** 2 + (y - POINT[1]) ** 2 + (z - POINT[2]) ** 2 <= POINT_R**2] = bright
        return v
    return fn


def _tilted(g: Geometry, deg: float) -> Geometry:
    """``g`` with the column cosine tilted ``deg`` about x (gantry tilt), same centre."""
    t = np.deg2rad(deg)
    r, c = np.array([1.0, 0, 0]), np.array([0, np.cos(t), np.sin(t)])
    normal = np.cross(r, c)
    n, rows, cols = g.shape
    origin = -(n - 1) / 2 * g.slice_spacing * normal - (rows - 1) / 2 * g.pixel_spacing[0] * c - (cols - 1) / 2 * g.pixel_spacing[1] * r
    return Geometry(tuple(r), tuple(float(v) for v in c), g.pixel_spacing, g.slice_spacing, tuple(float(v) for v in origin), g.shape)


def _series(tmp_path, name: str, geom: Geometry, modality: str = "CT"):
    world = _world(600.0, 40.0, -1000.0) if modality == "CT" else _world(1500.0, 300.0, 0.0)
    vol = sample_world(world, geom)
    folder = tmp_path / "series" / name
    kw = {"intercept": -1024.0} if modality == "CT" else {}
    write_series(vol, geom, folder, modality=modality, series_uid=uid_from("fine", name), study_uid="1.2.3",
                 patient_id="p", signed=modality == "CT", **kw)
    return files_table(folder, tmp_path)


def _spot(img: np.ndarray) -> np.ndarray:
    """Intensity-weighted centroid (row, col) of the pixels above half the image's maximum."""
    w = np.where(img >= img.max() / 2, img.astype(float), 0.0)
    r, c = np.indices(img.shape)
    return np.array([(w * r).sum() / w.sum(), (w * c).sum() / w.sum()])


@pytest.mark.parametrize("plane, tilt", [("axial", 0.0), ("coronal", 0.0), ("sagittal", 0.0), ("axial", 15.0)])
@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_planted_voxel_lands_where_patient_to_fine_says(tmp_path, plane, tilt, modality):
    g = geometry_for(plane, (0.0, 0.0, 0.0), fov_mm=96.0, n_slices=96, matrix=96, slice_spacing=1.0)   # 1 mm voxels
    if tilt:
        g = _tilted(g, tilt)
    files = _series(tmp_path, f"{plane}{tilt}{modality}", g, modality)
    row = {"SeriesInstanceUID": "fine", "Modality": "CTA" if modality == "CT" else "MRA"}
    family = "ct" if modality == "CT" else "mr"
    proj = project_series(row, files, tmp_path, small_params(**FINE), family)
    fine = proj.attrs["fine"]
    assert proj.fine.shape == (3, 12, 3, 192, 192) and fine["mm_per_px"] == 0.5
    assert proj.attrs["oblique"] is bool(tilt)
    where = patient_to_fine(POINT, proj.attrs)
    ch = 0   # "vessel": max of the raw values, the brightest thing is the planted sphere
    for v, view in enumerate(VIEWS):
        k, r, c = where[view]
        assert k is not None, f"{view}: the point is outside the fine box {fine['box_mm']}"
        img = proj.fine[v, k, ch]
        assert img.max() >= 200, f"{view} slab {k}: no planted sphere"
        np.testing.assert_allclose(_spot(img), (r, c), atol=1.0, err_msg=f"{plane} tilt {tilt} {modality}: {view}")
        # slabs more than one slab away from the sphere do not show it
        far = [j for j in range(fine["slabs"]) if abs(j - k) >= 2]
        assert all(proj.fine[v, j, ch].max() < 120 for j in far), view   # tissue (CT 40 HU: 60) at most


def test_dark_lumen_shows_a_flow_void_the_maximum_projection_misses(tmp_path):
    """T2-like twins: bright CSF around the circle; the positive twin has a 4 mm flow void in it."""
    def world(void: bool):
        def fn(x, y, z):
            v = np.full(x.shape, 0.0, np.float32)
            v[x**2 + y**2 + z**2 < 45.0**2] = 400.0                                # brain
            v[(x**2 + y**2) / 20.0**2 + z**2 / 8.0**2 < 1] = 1800.0                # a CSF cistern, 16 mm tall
            if void:
                v[(x - POINT[0]) ** 2 + (y - POINT[1]) ** 2 + (z - 0.0) ** 2 <= 2.0**2] = 60.0   # flow void, 4 mm
            return v
        return fn

    g = geometry_for("axial", (0.0, 0.0, 0.0), fov_mm=100.0, n_slices=100, matrix=100, slice_spacing=1.0)
    projs = []
    for void in (False, True):
        folder = tmp_path / "series" / f"t2{void}"
        write_series(sample_world(world(void), g), g, folder, modality="MR", series_uid=uid_from("t2", void),
                     study_uid="1.2.3", patient_id="p", signed=False)
        projs.append(project_series({"SeriesInstanceUID": "t2", "Modality": "MRI T2"}, files_table(folder, tmp_path),
                                    tmp_path, small_params(**FINE), "mr"))
    neg, pos = projs
    names = pos.attrs["fine"]["windows"]
    vessel, dark = [w["name"] for w in names].index("vessel"), [w["name"] for w in names].index("dark")
    point = np.array([POINT[0], POINT[1], 0.0])
    for v, view in enumerate(VIEWS):
        k, r, c = patient_to_fine(point, pos.attrs)[view]
        rr, cc = int(round(r)), int(round(c))
        # the maximum projection: CSF above/below (or beside) the void fills the ray, the twins look alike there
        if view == "axial":
            assert pos.fine[v, k, vessel, rr, cc] == neg.fine[v, k, vessel, rr, cc] == 255
            assert pos.mip[0, :, int(round(r / 192 * 32)), int(round(c / 192 * 32))].max() > 0
        # the dark-lumen channel: a bright spot at the void in the positive twin, nothing in the negative one
        patch = (slice(max(0, rr - 3), rr + 4), slice(max(0, cc - 3), cc + 4))
        assert pos.fine[v, k, dark][patch].max() >= 150, view
        assert neg.fine[v, k, dark][patch].max() <= 40, view


def test_mr_views_identical_when_every_value_is_scaled(tmp_path):
    """Exact percentiles: the same piecewise-constant MR stored x1 and x7 gives byte-identical views (#13)."""
    geom = geometry("axial", n=24, matrix=32)
    params = small_params(size=32, fine_mm_per_px=1.0, fine_box_mm=96.0, fine_slab_mm=12.0)
    a = project_series({"SeriesInstanceUID": "m", "Modality": "MRA"},
                       write_phantom(tmp_path, "x1", geom, "MR", scale=1.0, signed=False), tmp_path, params, "mr")
    b = project_series({"SeriesInstanceUID": "m", "Modality": "MRA"},
                       write_phantom(tmp_path, "x7", geom, "MR", scale=7.0, signed=False), tmp_path, params, "mr")
    assert a.mip.max() == 255 and a.fine.max() == 255
    np.testing.assert_array_equal(a.mip, b.mip)
    np.testing.assert_array_equal(a.instances, b.instances)
    np.testing.assert_array_equal(a.fine, b.fine)
    for wa, wb in zip(a.attrs["windows"] + a.attrs["fine"]["windows"], b.attrs["windows"] + b.attrs["fine"]["windows"]):
        # the percentiles are sampled values: exactly 7x (to float rounding), not to a histogram bin's width
        assert wb["hi"] == pytest.approx(7.0 * wa["hi"], rel=1e-12) and wb["lo"] == pytest.approx(7.0 * wa["lo"], rel=1e-12)
    assert a.attrs["fine"]["centre_mm"] == b.attrs["fine"]["centre_mm"]


def test_locate_samples_frames_at_most_locate_mm_apart(tmp_path):
    from willis.projections.geometry import series_geometry
    from willis.projections.locate import sample_frames

    files = write_phantom(tmp_path, "s", geometry("axial", n=40, matrix=16))   # 3.5 mm slices
    geom = series_geometry(files, 64)
    for step, expect in ((4.0, 40), (8.0, 21), (1.0, 40)):   # every 2nd of 3.5 mm slices, and the last
        pos = sorted(p[2] for p in sample_frames(files, geom, step)["ipp"])
        gaps = np.diff(pos)
        assert gaps.max() <= max(step, 3.5) + 1e-6 and len(pos) == expect, (step, len(pos))
    irregular = files.copy()
    irregular = irregular[~irregular["order"].isin([5, 6, 7])]               # a 14 mm gap: kept on both sides
    pos = sorted(p[2] for p in sample_frames(irregular, series_geometry(irregular, 64), 8.0)["ipp"])
    assert pos[0] == min(p[2] for p in irregular["ipp"]) and pos[-1] == max(p[2] for p in irregular["ipp"])


def test_fill_gaps_interpolates_only_between_finite_cells():
    from willis.projections.scatter import fill_gaps

    ninf = -np.inf
    a = np.array([[ninf, 1.0, ninf, ninf, 4.0, ninf], [2.0, ninf, 6.0, ninf, ninf, ninf]], np.float32)
    fill_gaps(a, 1)
    np.testing.assert_array_equal(a, [[ninf, 1, 2, 3, 4, ninf], [2, 4, 6, ninf, ninf, ninf]])
    b = np.array([[ninf, 2.0], [1.0, ninf], [ninf, ninf], [3.0, 8.0]], np.float32)
    fill_gaps(b, 0)
    np.testing.assert_array_equal(b, [[ninf, 2], [1, 4], [2, 6], [3, 8]])


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_axis_aligned_fast_path_equals_the_exact_scatter(tmp_path, plane):
    """The slice / reduceat update of axis-aligned series gives the accumulators the pixel scatter gives."""
    from willis.dicom.frames import iter_frames
    from willis.projections.fine import fine_accumulator
    from willis.projections.geometry import series_geometry
    from willis.projections.streaming import locate
    from willis.projections.windows import fine_windows

    g = geometry_for(plane, (0.0, 0.0, 0.0), fov_mm=80.0, n_slices=50, matrix=64, slice_spacing=1.6)
    files = _series(tmp_path, plane, g, "CT")
    params = small_params(**FINE)
    geom = series_geometry(files, params.grid)
    _, box, _ = locate(files, tmp_path, params, "ct", "CTA", geom)
    fast, exact = (fine_accumulator(geom, files, box, "ct", fine_windows("ct", None), params) for _ in range(2))

    def scatter_instead(images, cells, t):
        cells = cells.copy()
        cells[geom.a_n] = t
        exact._scatter(images, cells)

    exact._direct = scatter_instead
    for row, frame in iter_frames(files, tmp_path):
        fast.add(int(row.order), frame, row.ipp)
        exact.add(int(row.order), frame, row.ipp)
    assert fast.frames == exact.frames > 0
    for view, a, b in zip(VIEWS, fast.buffers, exact.buffers):
        for name in ("max_a", "max_b", "sum", "count"):
            np.testing.assert_allclose(a.view(name), b.view(name), rtol=1e-6, err_msg=f"{plane}: {view} {name}")
    np.testing.assert_array_equal(fast.render(), exact.render())


def test_fine_containment_reports_inside_and_margins(tmp_path):
    import pandas as pd

    from willis.projections.coverage import fine_containment
    from willis.projections.finebox import FineBox
    from willis.projections.store import FineLayout, Projection, create_store, finalize_store, write_projection

    lay = FineLayout(("vessel", "highlight", "thickness"), {}, 8, 2)
    box = FineBox((10.0, 0.0, -5.0), 0.5, 8, 2)                        # a 4 mm cube: x 8..12, y -2..2, z -7..-3
    attrs = {"modality": "CTA", "plane": "axial", "fine": {**box.attrs(), "flag": "vessels", "locate": {}, "windows": [], "frames": 1}}
    path = tmp_path / "ct.zarr"
    g = create_store(path, "ct", ["a"], ["vessel"], 4, 1, {}, fine=lay)
    write_projection(g, 0, Projection("a", np.zeros((3, 1, 4, 4), np.uint8), np.zeros((1, 1, 4, 4), np.uint8),
                                      np.zeros(1, np.float32), attrs, np.zeros((3, 2, 3, 8, 8), np.uint8)))
    finalize_store(path, {"a": (np.zeros(1), attrs)}, {})
    loc = pd.DataFrame({"SeriesInstanceUID": ["a", "a", "a"], "location": ["x", "y", "z"], "found": [True, True, False],
                        "patient": [[11.0, 0.5, -5.0], [13.0, 0.0, -5.0], [10.0, 0.0, -5.0]]})
    rows = fine_containment(path, loc)
    assert rows["inside"].tolist() == [True, False]                    # the unfound point is not counted
    assert rows["margin_mm"].tolist() == pytest.approx([1.0, -1.0])    # to the nearest face: x 12 inside by 1, x 13 out by 1
    assert rows["dx_mm"].tolist() == pytest.approx([1.0, 3.0]) and rows["flag"].tolist() == ["vessels", "vessels"]
