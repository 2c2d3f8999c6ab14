"""The compiled kernels (willis.projections.kernels) equal the numpy code they replace, bit for bit.

Each reference below is the numpy formulation the projection used before the kernels (the
``reduceat`` / ``ufunc.at`` / ``apply_window`` / ``to_uint8`` calls); equality is exact
(``assert_array_equal`` on float32 and uint8), including float32 sums, whose order matters.
"""

import numpy as np
import pytest
from scipy import ndimage

from willis.projections import kernels as K
from willis.projections.bone import dilate_box, erode_box
from willis.projections.windows import Window, apply_window, to_uint8

RNG = np.random.default_rng(7)


def _ref_bone_mask(hu, bone_hu, dilate_px, open_px):
    m = hu > np.float32(bone_hu)
    if not m.any():
        return m
    if max(open_px) > 0:
        m = erode_box(m, *open_px)
    return dilate_box(m, open_px[0] + dilate_px[0], open_px[1] + dilate_px[1])


@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (64, 80), (331, 290)])
def test_bone_mask_equals_erode_then_dilate_box(shape):
    hu = (RNG.random(shape, dtype=np.float32) * 1600 - 400).astype(np.float32)
    hu[: shape[0] // 3, : shape[1] // 2] = 1300.0                     # a solid block and noisy specks
    for o, d in [((0, 0), (0, 0)), ((2, 2), (4, 4)), ((1, 0), (0, 3)), ((3, 1), (2, 0)), ((0, 0), (7, 1))]:
        for src in (hu, hu[::-1, ::2], hu.T):                          # any layout
            got = K.bone_mask(np.ascontiguousarray(src) if src is hu.T else src, np.float32(700.0), o[0], o[1], d[0], d[1])
            np.testing.assert_array_equal(got, _ref_bone_mask(src, 700.0, d, o), err_msg=f"{shape} open {o} dilate {d}")
    out = np.empty(shape, np.float32)
    K.suppress_into(hu, np.float32(700.0), 2, 2, 4, 4, np.float32(-1000.0), out)
    np.testing.assert_array_equal(out, np.where(_ref_bone_mask(hu, 700.0, (4, 4), (2, 2)), np.float32(-1000.0), hu))


def test_reduceat_sums_are_numpys_pairwise_order():
    """Random segment lengths 1..300 (numpy's 8-accumulator blocks and its recursive split) on both axes."""
    from willis.projections.kernels import _pairwise_rows, _segment_sum

    for _ in range(60):
        h, w = RNG.integers(1, 300, 2)
        x = (RNG.random((h, w), dtype=np.float32) * RNG.choice([1e-3, 1.0, 1e4])).astype(np.float32)
        starts = np.unique(np.r_[0, RNG.integers(0, h, 4)])
        ref = np.add.reduceat(x, starts, axis=0)
        ends = np.r_[starts[1:], h]
        for s, (a, b) in enumerate(zip(starts, ends)):
            got = np.empty(w, np.float32)
            if b - a == 1:
                got[:] = x[a]
            else:
                _pairwise_rows(x, a + 1, b - a - 1, got)
                got = (x[a] + got).astype(np.float32)
            np.testing.assert_array_equal(got, ref[s])
        ref1 = np.add.reduceat(x, [0], axis=1)[:, 0]
        np.testing.assert_array_equal(np.array([_segment_sum(x[i]) for i in range(h)], np.float32), ref1)


def test_scatter_kernels_equal_ufunc_at_with_repeated_indices():
    n = 50_000
    idx = RNG.integers(0, 300, n)
    v = (RNG.random(n, dtype=np.float32) * 2000 - 1000).astype(np.float32)
    for dtype, values in ((np.float32, v), (np.float64, v.astype(np.float64))):
        a, b = np.zeros(301, dtype), np.zeros(301, dtype)
        np.add.at(a, idx, values)
        K.scatter_add(b, idx, values)
        np.testing.assert_array_equal(a, b)
    a, b = np.full(301, -np.inf, np.float32), np.full(301, -np.inf, np.float32)
    np.maximum.at(a, idx, v)
    K.scatter_max(b, idx, v)
    np.testing.assert_array_equal(a, b)
    a, b = np.zeros(301, np.float32), np.zeros(301, np.float32)
    np.add.at(a, idx, 1.0)
    K.scatter_count(b, idx)
    np.testing.assert_array_equal(a, b)
    a, b = np.zeros(301, np.float32), np.zeros(301, np.float32)
    np.add.at(a, idx, (v > 700.0).astype(np.float32))
    K.scatter_above(b, idx, v, np.float32(700.0))
    np.testing.assert_array_equal(a, b)


def _ref_update(a_n, p, t, bin_starts, coronal, sagittal, slabs):
    """The numpy ``Accumulator._update`` before the kernel."""
    if a_n == 2:
        bin_of_cell = np.searchsorted(bin_starts, np.arange(coronal.shape[0]), side="right") - 1
        np.maximum(coronal[t], p.max(axis=0), out=coronal[t])
        np.maximum(sagittal[t], p.max(axis=1), out=sagittal[t])
        b = bin_of_cell[t]
        np.maximum(slabs[b], p, out=slabs[b])
    elif a_n == 1:
        np.maximum(coronal, p, out=coronal)
        np.maximum(sagittal[:, t], p.max(axis=1), out=sagittal[:, t])
        np.maximum(slabs[:, t, :], np.maximum.reduceat(p, bin_starts, axis=0), out=slabs[:, t, :])
    else:
        np.maximum(sagittal, p, out=sagittal)
        np.maximum(coronal[:, t], p.max(axis=1), out=coronal[:, t])
        np.maximum(slabs[:, :, t], np.maximum.reduceat(p, bin_starts, axis=0), out=slabs[:, :, t])


@pytest.mark.parametrize("a_n", [0, 1, 2])
def test_coarse_update_equals_numpy_maxima_and_reduceat(a_n):
    from types import SimpleNamespace

    from willis.projections.accumulate import Accumulator, Views

    gz, gy, gx, bins = 23, 17, 19, 5
    starts = (np.arange(bins) * gz) // bins
    acc = Accumulator.__new__(Accumulator)
    acc.geom = SimpleNamespace(a_n=a_n)
    acc.bin_of_cell = np.searchsorted(starts, np.arange(gz), side="right") - 1
    acc._zeros = None
    mine, ref = Views.empty(gz, gy, gx, bins), Views.empty(gz, gy, gx, bins)
    n_t = {2: gz, 1: gy, 0: gx}[a_n]
    shape = {2: (gy, gx), 1: (gz, gx), 0: (gz, gy)}[a_n]
    for t in RNG.permutation(n_t)[: n_t - 2]:
        p = RNG.normal(0, 100, shape).astype(np.float32)
        acc._update(mine, p, int(t))
        _ref_update(a_n, p, int(t), starts, ref.coronal, ref.sagittal, ref.slabs)
    for name in ("coronal", "sagittal", "slabs"):
        np.testing.assert_array_equal(getattr(mine, name), getattr(ref, name), err_msg=name)


def _ref_resample(src, rows, cols, fill):
    """``fine._resample`` before the kernel."""
    a = np.where(np.isfinite(src), src, np.float32(fill)).astype(np.float32)
    (ri, rw, rin), (ci, cw, cin) = rows, cols
    i1 = np.minimum(ri + 1, a.shape[1] - 1)
    a = a[:, ri, :] * (1 - rw)[None, :, None] + a[:, i1, :] * rw[None, :, None]
    j1 = np.minimum(ci + 1, a.shape[2] - 1)
    a = a[:, :, ci] * (1 - cw)[None, None, :] + a[:, :, j1] * cw[None, None, :]
    a[:, ~rin, :] = fill
    a[:, :, ~cin] = fill
    return a


def test_fine_render_kernels_equal_numpy():
    from willis.projections.fine import _lerp, _resample
    from willis.projections.geometry import AxisGrid

    src = (RNG.random((3, 41, 37), dtype=np.float32) * 900 - 200).astype(np.float32)
    src[:, :5] = -np.inf
    src[1, 10:12, 3:9] = -np.inf
    axes = [AxisGrid(n, 1, c, c) for n, c in ((41, np.linspace(-20, 20, 41)), (37, np.linspace(-9, 27, 37)))]
    out_r, out_c = np.linspace(-25, 22, 50), np.linspace(-10, 30, 45)
    rows, cols = _lerp(axes[0], out_r), _lerp(axes[1], out_c)
    for fill in (-1000.0, 0.0):
        np.testing.assert_array_equal(_resample(src, rows, cols, fill), _ref_resample(src, rows, cols, fill))
    img = _ref_resample(src, rows, cols, -1000.0)
    out = np.empty(img.shape, np.uint8)
    for w in (Window("v", -100.0, 500.0), Window("h", 150.0, 600.0, 0.5), Window("d", 0.0, 1234.56789)):
        K.window_uint8(img, w.lo, w.hi - w.lo, w.gamma == 0.5, out)
        np.testing.assert_array_equal(out, to_uint8(apply_window(img, w)), err_msg=w.name)
    x = (RNG.random(img.shape, dtype=np.float32) * 1.4 - 0.2).astype(np.float32)
    K.to_uint8_into(x, out)
    np.testing.assert_array_equal(out, to_uint8(np.clip(x, 0, 1)))
    total, count = RNG.random(src.shape, dtype=np.float32), RNG.integers(0, 3, src.shape).astype(np.float32)
    mean = np.empty(src.shape, np.float32)
    K.mean_into(total, count, mean)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.testing.assert_array_equal(mean, np.where(count > 0, total / np.maximum(count, 1), -np.inf).astype(np.float32))


def test_gamma_half_is_the_square_root_for_float32_in_unit_range():
    """``window_uint8`` takes ``sqrt`` for ``np.power(x, 0.5)``: equal on every float32 in [0, 1] here
    (a 4M sample plus the ends; the full 1.07e9-value check takes ~5 s and also passes)."""
    bits = np.r_[RNG.integers(0, np.float32(1).view(np.uint32), 1 << 22, dtype=np.uint32),
                 np.arange(0, 4096, dtype=np.uint32), np.float32(1).view(np.uint32) - np.arange(4096, dtype=np.uint32)]
    x = bits.view(np.float32)
    np.testing.assert_array_equal(np.power(x, np.float32(0.5)).view(np.uint32), np.sqrt(x).view(np.uint32))


def test_cow_erosions_equal_binary_erosion_by_disk_and_ball():
    from willis.projections.cow import _erode_ball, _erode_layers

    def ref_layers(mask, r):
        disk = np.hypot(*np.mgrid[-r:r + 1, -r:r + 1]) <= r + 1e-6
        return ndimage.binary_erosion(mask, structure=disk[None], border_value=1)

    def ref_ball(mask, r):
        ball = np.sqrt((np.mgrid[-r:r + 1, -r:r + 1, -r:r + 1] ** 2).sum(axis=0)) <= r + 1e-6
        return ndimage.binary_erosion(mask, structure=ball, border_value=1)

    for t in range(25):
        shape = tuple(RNG.integers(3, 30, 3))
        zz, yy, xx = np.mgrid[: shape[0], : shape[1], : shape[2]]
        m = ((zz - shape[0] / 2) ** 2 + (yy - shape[1] / 2) ** 2 + (xx - shape[2] / 2) ** 2) < RNG.uniform(4, 25) ** 2
        m ^= RNG.random(shape) < RNG.choice([0, 0.01, 0.1])
        m = np.ones(shape, bool) if t == 0 else (np.zeros(shape, bool) if t == 1 else m)
        for mm in (4.0, 9.0, 16.0, 24.0):
            r = max(1, int(round(mm / 4.0)))
            np.testing.assert_array_equal(_erode_layers(m, mm, 4.0), ref_layers(m, r), err_msg=f"{t} {mm}")
            np.testing.assert_array_equal(_erode_ball(m, mm, 4.0), ref_ball(m, r), err_msg=f"{t} {mm}")


def test_percentile_sample_reads_numpys_inverted_cdf_off_the_sorted_sample():
    from willis.projections.windows import PercentileSample

    for n in (1, 2, 7, 1000, 12345):
        pct = PercentileSample()
        pct.add(RNG.gamma(2.0, 300.0, (1, n)).astype(np.float32) + 1)
        for q in (0, 0.5, 1, 5, 50, 95, 99, 99.9, 99.95, 99.99, 100, 100 / 3, 12.5):
            assert pct.percentile(q) == float(np.percentile(pct.values(), q, method="inverted_cdf")), (n, q)


def test_tophats_equal_scipy_grey_closing_and_opening():
    for _ in range(30):
        h, w = RNG.integers(1, 90, 2)
        x = (RNG.random((h, w), dtype=np.float32) * 1000).astype(np.float32)
        size = (int(RNG.choice([3, 5, 7, 9, 17, 33])), int(RNG.choice([3, 5, 9, 17])))
        out = np.empty_like(x)
        K.tophat_into(x, size[0], size[1], True, out)
        np.testing.assert_array_equal(out, ndimage.grey_closing(x, size=size) - x, err_msg=f"{(h, w)} {size}")
        K.tophat_into(x, size[0], size[1], False, out)
        np.testing.assert_array_equal(out, x - ndimage.grey_opening(x, size=size), err_msg=f"{(h, w)} {size}")
