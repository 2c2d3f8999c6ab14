"""Streaming projections against references: np.max over the loaded volume, encodings, planes, MR scale."""

from __future__ import annotations

import numpy as np
import pytest
from projections.test_phantoms import TARGET, TARGET_R, geometry, small_params, write_phantom

from willis.dicom.frames import iter_frames
from willis.projections import patient_to_view
from willis.projections.geometry import X, Y, Z
from willis.projections.streaming import ProjectionError, accumulate_series, project_series

CT_ROW = {"SeriesInstanceUID": "phantom", "Modality": "CTA"}
MR_ROW = {"SeriesInstanceUID": "phantom", "Modality": "MRA"}


def _reference_views(files, root, geom):
    """Independent reference: every voxel's LPS position from the acquisition geometry, then np.maximum.at."""
    vol = np.stack([f for _, f in iter_frames(files, root)])          # (n, rows, cols) in position order
    n, rows, cols = vol.shape
    k, i, j = np.meshgrid(np.arange(n), np.arange(rows), np.arange(cols), indexing="ij")
    # slice k of the volume is the k-th frame in position order; its IPP gives the true slice origin
    ipp = np.array([list(v) for v in files.sort_values("order")["ipp"]])       # (n, 3)
    pts = ipp[k] + i[..., None] * geom.pixel_spacing[0] * np.asarray(geom.col_cosine) \
        + j[..., None] * geom.pixel_spacing[1] * np.asarray(geom.row_cosine)  # (n, rows, cols, 3)
    idx = []
    for a in (X, Y, Z):
        coords, inv = np.unique(np.round(pts[..., a], 3), return_inverse=True)
        idx.append(inv.reshape(vol.shape))
    shape = [len(np.unique(np.round(pts[..., a], 3))) for a in (X, Y, Z)]
    zyx = np.full((shape[2], shape[1], shape[0]), -np.inf, np.float32)        # (z, y, x) ascending LPS
    np.maximum.at(zyx, (idx[2], idx[1], idx[0]), vol)
    return zyx


@pytest.mark.parametrize("plane, flip", [("axial", False), ("axial", True), ("coronal", False), ("sagittal", True)])
def test_streaming_mip_equals_np_max_of_loaded_volume(tmp_path, plane, flip):
    geom = geometry(plane, n=24, matrix=32, flip=flip)
    files = write_phantom(tmp_path, "s", geom)
    acc = accumulate_series(files, tmp_path, small_params(), "ct")
    zyx = _reference_views(files, tmp_path, geom)                 # (z, y, x): no pooling at grid 64
    np.testing.assert_array_equal(acc.raw.coronal, zyx.max(axis=1))    # (z, x)
    np.testing.assert_array_equal(acc.raw.sagittal, zyx.max(axis=2))   # (z, y)
    # slabs: bin b is the max over its z-cells; their max over all bins is the axial MIP
    ends = np.append(acc.bin_starts[1:], zyx.shape[0])
    for b, (lo, hi) in enumerate(zip(acc.bin_starts, ends)):
        np.testing.assert_array_equal(acc.raw.slabs[b], zyx[lo:hi].max(axis=0))
    np.testing.assert_array_equal(acc.raw.slabs.max(axis=0), zyx.max(axis=0))
    assert acc.n_frames == 24


def test_pooled_grid_is_max_of_native(tmp_path):
    """grid smaller than the series: each cell is the max of the native samples it covers."""
    geom = geometry("axial", n=24, matrix=32)
    files = write_phantom(tmp_path, "s", geom)
    fine = accumulate_series(files, tmp_path, small_params(grid=64), "ct")
    coarse = accumulate_series(files, tmp_path, small_params(grid=10), "ct")   # f = ceil(32/10) = 4, ceil(24/10) = 3
    assert coarse.raw.coronal.shape == (8, 8)
    ref = fine.raw.coronal.reshape(8, 3, 8, 4).max(axis=(1, 3))
    np.testing.assert_array_equal(coarse.raw.coronal, ref)


ENCODINGS = [
    dict(encoding="explicit", signed=True, slope=1.0, intercept=-1024.0),
    dict(encoding="explicit", signed=False, slope=1.0, intercept=-1024.0),
    dict(encoding="implicit", signed=True, slope=0.5, intercept=-2000.0),
    dict(encoding="big_endian", signed=True, slope=1.0, intercept=0.0),
    dict(encoding="rle", signed=False, slope=2.0, intercept=-1024.0),
    dict(encoding="deflate", signed=True, slope=1.0, intercept=-1024.0),
    dict(encoding="explicit", signed=True, slope=1.0, intercept=-1024.0, multiframe=True),
    dict(encoding="rle", signed=True, slope=1.0, intercept=-1024.0, multiframe=True, instance_numbers="random"),
]


def test_every_encoding_gives_identical_projections(tmp_path):
    geom = geometry("axial", n=20, matrix=32)
    params = small_params()
    ref = None
    for n, enc in enumerate(ENCODINGS):
        files = write_phantom(tmp_path, f"e{n}", geom, **dict(enc))
        proj = project_series(CT_ROW, files, tmp_path, params, "ct")
        if ref is None:
            ref = proj
            assert proj.mip.max() > 0
            continue
        np.testing.assert_array_equal(proj.mip, ref.mip, err_msg=str(enc))
        np.testing.assert_array_equal(proj.instances, ref.instances, err_msg=str(enc))
        np.testing.assert_array_equal(proj.instance_z, ref.instance_z, err_msg=str(enc))


def _centroid(img: np.ndarray) -> np.ndarray:
    w = img.astype(float)
    r, c = np.indices(img.shape)
    return np.array([(w * r).sum() / w.sum(), (w * c).sum() / w.sum()])


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_planes_agree_in_radiological_convention(tmp_path, plane):
    """Each acquisition plane puts the target where patient_to_view says, in every view."""
    params = small_params(size=48)
    proj = project_series(CT_ROW, write_phantom(tmp_path, plane, geometry(plane)), tmp_path, params, "ct")
    hl = proj.attrs["channels"].index("highlight")
    where = patient_to_view(TARGET, proj.attrs)
    s = params.size
    for v, view in enumerate(("axial", "coronal", "sagittal")):
        img = proj.mip[v, hl]
        assert img.max() > 100, f"{plane}: no target in {view}"
        np.testing.assert_allclose(_centroid(img), where[view], atol=1.5, err_msg=f"{plane} acquisition, {view} view")
    # convention (target at patient right, anterior, superior): axial top-left, coronal top-left, sagittal top-left
    for v in range(3):
        r, c = _centroid(proj.mip[v, hl])
        assert r < s / 2 and c < s / 2
    # the instance holding the target shows it; the others do not
    k = where["instance"]
    assert k is not None and proj.instances[k, hl].max() > 100
    z_top, z_bottom = proj.attrs["instance_ranges_mm"][k]
    assert z_bottom <= TARGET[2] <= z_top
    far = [i for i, (t, b) in enumerate(proj.attrs["instance_ranges_mm"]) if b > TARGET[2] + TARGET_R + 10 or t < TARGET[2] - TARGET_R - 10]
    assert far and all(proj.instances[i, hl].max() == 0 for i in far)


def test_three_planes_give_matching_mips(tmp_path):
    params = small_params(size=48)
    projs = [project_series(CT_ROW, write_phantom(tmp_path, p, geometry(p)), tmp_path, params, "ct")
             for p in ("axial", "coronal", "sagittal")]
    hl = projs[0].attrs["channels"].index("highlight")
    for v in range(3):
        cents = np.array([_centroid(p.mip[v, hl]) for p in projs])
        assert np.abs(cents - cents[0]).max() <= 2.0, cents


def test_bone_aware_highlight_suppresses_skull(tmp_path):
    """The skull (1200 HU) saturates the vessel window but vanishes from the highlight; the target stays."""
    params = small_params(size=48)
    proj = project_series(CT_ROW, write_phantom(tmp_path, "a", geometry("axial")), tmp_path, params, "ct")
    ch = proj.attrs["channels"]
    where = patient_to_view(TARGET, proj.attrs)
    r, c = np.indices((params.size, params.size))
    for v, view in enumerate(("axial", "coronal", "sagittal")):
        far = np.hypot(r - where[view][0], c - where[view][1]) > TARGET_R / proj.attrs["mm_per_px"] + 2
        vessel, highlight = proj.mip[v, ch.index("vessel")], proj.mip[v, ch.index("highlight")]
        assert (vessel[far] == 255).sum() > 100, view    # skull: saturated in the plain vessel window
        assert highlight[far].max() == 0, view            # bone-suppressed highlight: nothing but the target
        assert highlight[~far].max() > 150, view


def test_mr_invariant_to_global_intensity_scale(tmp_path):
    params = small_params(size=48)
    geom = geometry("axial", n=24, matrix=32)
    a = project_series(MR_ROW, write_phantom(tmp_path, "m1", geom, "MR", scale=1.0, signed=False), tmp_path, params, "mr")
    b = project_series(MR_ROW, write_phantom(tmp_path, "m2", geom, "MR", scale=3.7, signed=False), tmp_path, params, "mr")
    assert a.mip.max() == 255
    diff = np.abs(a.mip.astype(int) - b.mip.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.05
    diff_i = np.abs(a.instances.astype(int) - b.instances.astype(int))
    assert diff_i.max() <= 2
    for wa, wb in zip(a.attrs["windows"], b.attrs["windows"]):
        assert wb["hi"] == pytest.approx(3.7 * wa["hi"], rel=5e-3)


def test_topk_mode_picks_bins_with_the_target(tmp_path):
    params = small_params(size=32, instance_mode="topk", instances=2, slab_bins=20)
    proj = project_series(CT_ROW, write_phantom(tmp_path, "a", geometry("axial")), tmp_path, params, "ct")
    hl = proj.attrs["channels"].index("highlight")
    assert all(proj.instances[i, hl].max() > 100 for i in range(2))
    assert proj.instance_z[0] >= proj.instance_z[1]                   # superior -> inferior
    assert all(b <= TARGET[2] + TARGET_R + 8 and t >= TARGET[2] - TARGET_R - 8 for t, b in proj.attrs["instance_ranges_mm"])


def test_vesselness_channel_is_added(tmp_path):
    proj = project_series(CT_ROW, write_phantom(tmp_path, "a", geometry("axial", n=20, matrix=32)), tmp_path,
                          small_params(vesselness=True), "ct")
    assert proj.attrs["channels"][-1] == "vesselness" and proj.mip.shape[1] == 5
    assert proj.mip[:, -1].max() == 255   # normalised per image


def test_unreadable_series_names_the_series(tmp_path):
    files = write_phantom(tmp_path, "a", geometry("axial", n=6, matrix=16))
    for p in files["path"]:
        (tmp_path / p).write_bytes(b"not dicom")
    with pytest.raises(ProjectionError, match="series phantom: no frame decoded"):
        project_series(CT_ROW, files, tmp_path, small_params(), "ct")


def test_partial_series_skips_bad_frames_and_reports_them(tmp_path):
    files = write_phantom(tmp_path, "a", geometry("axial", n=20, matrix=32))
    (tmp_path / files["path"].iloc[0]).write_bytes(b"truncated")
    proj = project_series(CT_ROW, files, tmp_path, small_params(), "ct")
    assert proj.attrs["n_frames"] == 19 and len(proj.attrs["skipped_frames"]) == 1
    assert files["path"].iloc[0].split("/")[-1] in proj.attrs["skipped_frames"][0]


def test_oblique_series_projects_along_nearest_axes(tmp_path):
    """A 10 degree tilted axial series is projected as axial (documented approximation): target within 2 px."""
    from willis.synth.dicom_writer import Geometry

    g = geometry("axial")
    t = np.deg2rad(10.0)
    r, c = np.array([1.0, 0, 0]), np.array([0, np.cos(t), np.sin(t)])
    normal = np.cross(r, c)
    n, rows, cols = g.shape
    origin = -(n - 1) / 2 * g.slice_spacing * normal - (rows - 1) / 2 * g.pixel_spacing[0] * c - (cols - 1) / 2 * g.pixel_spacing[1] * r
    tilted = Geometry(tuple(r), tuple(float(v) for v in c), g.pixel_spacing, g.slice_spacing, tuple(float(v) for v in origin), g.shape)
    params = small_params(size=48)
    proj = project_series(CT_ROW, write_phantom(tmp_path, "tilt", tilted), tmp_path, params, "ct")
    assert proj.attrs["oblique"] is True and proj.attrs["plane"] == "axial"
    hl = proj.attrs["channels"].index("highlight")
    where = patient_to_view(TARGET, proj.attrs)
    for v, view in enumerate(("axial", "coronal", "sagittal")):
        np.testing.assert_allclose(_centroid(proj.mip[v, hl]), where[view], atol=2.0, err_msg=view)


@pytest.mark.parametrize("n, f", [(10, 3), (9, 3), (7, 2), (5, 1), (4, 6)])
@pytest.mark.parametrize("axis", [0, 1])
def test_pool_max_matches_reduceat(n, f, axis):
    from willis.projections.geometry import pool_max

    a = np.random.default_rng(n * f).normal(size=(n, n + 1) if axis == 0 else (n + 1, n)).astype(np.float32)
    starts = np.arange(0, n, f)
    np.testing.assert_array_equal(pool_max(a, f, axis), np.maximum.reduceat(a, starts, axis=axis))


@pytest.mark.parametrize("n, f", [(10, 3), (9, 3), (7, 2), (5, 1), (4, 6)])
@pytest.mark.parametrize("axis", [0, 1])
def test_pool_mean_is_the_mean_of_each_group(n, f, axis):
    """The locate grid's cell means read block means (a short last group is its own mean)."""
    from willis.projections.geometry import pool_mean

    a = np.random.default_rng(n * f).normal(size=(n, n + 1) if axis == 0 else (n + 1, n)).astype(np.float32)
    want = np.stack([np.take(a, range(s, min(s + f, n)), axis=axis).mean(axis=axis, dtype=np.float64)
                     for s in range(0, n, f)], axis=axis)
    np.testing.assert_allclose(pool_mean(a, f, axis), want, rtol=1e-6, atol=1e-6)   # float32 sums


@pytest.mark.parametrize("r0, r1", [(0, 0), (1, 1), (2, 1), (3, 0)])
def test_box_morphology_equals_skimage(r0, r1):
    from skimage.morphology import dilation, erosion, footprint_rectangle

    from willis.projections.bone import dilate_box, erode_box

    m = np.random.default_rng(r0 * 7 + r1).random((40, 33)) > 0.8
    fp = footprint_rectangle((2 * r0 + 1, 2 * r1 + 1))
    np.testing.assert_array_equal(dilate_box(m, r0, r1), dilation(m, fp))
    solid = np.random.default_rng(1).random((40, 33)) > 0.2
    np.testing.assert_array_equal(erode_box(solid, r0, r1), erosion(solid, fp))


def test_percentile_sample_is_exact_and_scale_equivariant():
    from willis.projections.windows import PercentileSample

    rng = np.random.default_rng(0)
    frames = [np.where(rng.random((64, 64)) < 0.3, 0, rng.integers(1, 4000, (64, 64))).astype(np.float32) for _ in range(5)]
    a, b = PercentileSample(stride=2), PercentileSample(stride=2)
    for f in frames:
        a.add(f)
        b.add(f * 7.0)
    kept = np.concatenate([f[::2, ::2].ravel() for f in frames])
    kept = kept[kept > 0]                                   # zeros (MR background) are not counted
    assert a.total == kept.size
    for q in (0.5, 5, 50, 95, 99.9, 99.99):
        assert a.percentile(q) == np.percentile(kept, q, method="inverted_cdf")   # exact, a sampled value
        assert b.percentile(q) == 7.0 * a.percentile(q)                           # bit-exact times the scale
    assert PercentileSample.stride_for(100, 512, 512, max_values=1 << 20) == 5   # ceil(sqrt(100 * 512^2 / 2^20))


def test_roi_keeps_the_head_of_a_head_and_neck_scan(tmp_path):
    """Shoulders 150+ mm below the skull top are outside the ROI; the box hugs the head, not the body."""
    from willis.synth.dicom_writer import geometry_for, sample_world, write_series

    from projections.test_phantoms import CT_VALUES, HEAD_R, files_table, head

    def head_and_body(x, y, z):
        v = head(CT_VALUES)(x, y, z)
        body = (np.abs(x) < 150) & (np.abs(y) < 60) & (z < -170)        # shoulders / chest: 300 mm wide
        v[body] = 40.0
        return v

    g = geometry_for("axial", (0.0, 0.0, -95.0), fov_mm=320.0, n_slices=66, matrix=64, slice_spacing=5.0)
    write_series(sample_world(head_and_body, g), g, tmp_path / "series" / "hn", modality="CT", series_uid="1.2.9",
                 study_uid="1.2.3", patient_id="p", intercept=-1024.0)
    params = small_params(size=32)
    proj = project_series(CT_ROW, files_table(tmp_path / "series" / "hn", tmp_path), tmp_path, params, "ct")
    (x0, x1), (y0, y1), (z0, z1) = proj.attrs["roi_mm"]
    assert proj.attrs["roi_flag"] == "head"
    assert HEAD_R <= z1 <= HEAD_R + params.roi_margin_mm + 5.0        # skull top + margin (one 5 mm cell)
    assert z1 - z0 == pytest.approx(params.roi_z_mm)                  # a head-sized box, not the whole scan
    assert z0 > -170                                                    # the body is outside
    assert x1 - x0 <= 2 * HEAD_R + 2 * params.roi_margin_mm + 10.0      # as wide as the head, not the shoulders
    assert proj.attrs["mm_per_px"] == pytest.approx(params.roi_z_mm / params.size)


def test_all_frames_at_one_position_is_reported(tmp_path):
    files = write_phantom(tmp_path, "a", geometry("axial", n=6, matrix=16))
    files["ipp"] = [files["ipp"].iloc[0]] * len(files)
    with pytest.raises(ProjectionError, match="series phantom: all 6 frames at one position"):
        project_series(CT_ROW, files, tmp_path, small_params(), "ct")


def test_single_slice_series_projects(tmp_path):
    files = write_phantom(tmp_path, "a", geometry("axial", n=1, matrix=32, fov=140.0))
    proj = project_series(CT_ROW, files, tmp_path, small_params(), "ct")
    assert proj.mip.shape == (3, 4, 32, 32) and proj.attrs["n_frames"] == 1
    assert np.isfinite(proj.instance_z).all()
