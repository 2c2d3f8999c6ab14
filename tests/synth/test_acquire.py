"""Rendering at a bounded cost without changing the result: slab integration, coarse background, scanner."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from willis.synth import acquire, scanner
from willis.synth.geometry import geometry_for
from willis.synth.render import Ellipsoid, paint, sphere

VALUES = {"air": 0.0, "brain": 1.0, "artery": 10.0}


def _mass(vol, geom) -> float:
    return float(vol.sum()) * geom.slice_spacing * geom.pixel_spacing[0] * geom.pixel_spacing[1]


def _soft_sphere_volume(r: float, w: float) -> float:
    """Volume integral of the painter's soft edge alpha = clip(0.5 - (rho - r) / w, 0, 1) over a sphere."""
    rho = np.linspace(0, r + w / 2, 20001)
    alpha = np.clip(0.5 - (rho - r) / w, 0, 1)
    return float(np.trapezoid(4 * np.pi * rho ** 2 * alpha, rho))


@pytest.mark.parametrize("slice_mm", [0.7, 3.0, 5.0])
def test_thick_slices_integrate_their_slab(slice_mm):
    """A 3 mm sphere keeps its (soft-edged) volume x value in thin and thick slices, wherever it sits.

    Without slab integration a 3 mm sphere midway between two 5 mm slice centres would vanish.
    """
    masses = []
    for offset in (0.0, 0.5):                                    # on a slice centre, and midway between two
        geom = geometry_for("axial", (0, 0, offset * slice_mm), 40, 21, 64, slice_mm)   # slice 10 at z = offset
        vol = acquire.render(geom, [], [sphere((0.3, -0.2, 0.0), 1.5, "artery")], VALUES)
        fine = acquire.slab_geometry(geom, acquire.sub_slices(geom))
        w = float(np.mean([fine.slice_spacing, *fine.pixel_spacing]))   # the painter's edge width there
        expected = _soft_sphere_volume(1.5, w) * VALUES["artery"]
        masses.append(_mass(vol, geom))
        assert masses[-1] == pytest.approx(expected, rel=0.06), (slice_mm, offset)
        assert vol.max() > 0.2 * VALUES["artery"]
        if offset and slice_mm > 3:                              # sampled at slice centres only, it would vanish
            point = np.full(geom.shape, VALUES["air"], np.float32)
            paint(point, geom, [sphere((0.3, -0.2, 0.0), 1.5, "artery")], VALUES)
            assert _mass(point, geom) < 0.1 * expected
    assert masses[0] == pytest.approx(masses[1], rel=0.06)
    assert acquire.sub_slices(geom) == max(1, int(np.ceil(slice_mm / acquire.SLAB_STEP_MM)))


def test_coarse_background_equals_full_resolution_away_from_edges():
    """The background painted on a ~2 mm grid and upsampled: exact inside and outside, same total, soft edges."""
    geom = geometry_for("axial", (0, 0, 0), (150, 180), 70, (150, 180), 1.0)   # 1 mm voxels: factors 2
    assert acquire.coarse_factors(geom) == (2, 2, 2)
    axes = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    head = [Ellipsoid(np.array([3.0, -2.0, 1.0]), np.array([60.0, 75.0, 28.0]), "brain", axes,
                      inner=((5.0, "artery"),))]
    coarse = np.empty(geom.shape, np.float32)
    acquire.paint_coarse(coarse, geom, head, VALUES)
    full = np.full(geom.shape, VALUES["air"], np.float32)
    paint(full, geom, head, VALUES)
    # signed distance to the outer and inner surfaces at every voxel, from the primitive itself
    k, i, j = (np.arange(n, dtype=np.float32) for n in geom.shape)
    sd = head[0].signed_distance(geom.affine(), k[:, None, None], i[None, :, None], j[None, None, :])
    # the coarse edge is a 2 mm ramp, spread by one 2 mm coarse voxel of interpolation: 3 mm either side
    far = (np.abs(sd) > 3.5) & (np.abs(sd + 5.0) > 3.5)
    np.testing.assert_allclose(coarse[far], full[far], atol=1e-3 * VALUES["artery"])
    assert _mass(coarse, geom) == pytest.approx(_mass(full, geom), rel=0.01)


def test_lerp_matches_numpy_interp():
    c = np.random.default_rng(0).normal(size=(6, 7, 9)).astype(np.float32)
    for axis in range(3):
        for f in (1, 2, 3):
            n = (c.shape[axis] - 2) * f + 1
            got = acquire._lerp_axis(c, axis, f, n)
            x = np.arange(n) / f
            ref = np.apply_along_axis(lambda v: np.interp(x, np.arange(len(v)), v), axis, c)
            np.testing.assert_allclose(got, ref, atol=1e-5)


@pytest.mark.parametrize("blur_mm", [0.0, 0.4, 0.9])
def test_ct_noise_has_the_drawn_sd_after_the_kernel(blur_mm):
    geom = geometry_for("axial", (0, 0, 0), 64, 48, 128, 0.6)
    vol = np.zeros(geom.shape, np.float32)
    scanner.finish(vol, geom, "CTA", scanner.Scanner(blur_mm, 12.0), np.random.default_rng(0))
    assert vol[4:-4, 8:-8, 8:-8].std() == pytest.approx(12.0, rel=0.05)
    # a sharper kernel leaves neighbouring voxels less correlated
    r = np.corrcoef(vol[:, :, :-1].ravel(), vol[:, :, 1:].ravel())[0, 1]
    assert (r < 0.05) if blur_mm == 0 else (r > 0.3)


def test_blur_skips_axes_where_it_is_below_a_quarter_voxel():
    geom = geometry_for("axial", (0, 0, 0), 200, 10, 256, 5.0)
    sk, si, sj = scanner.blur_sigmas(geom, 0.5)
    assert sk == 0.0 and si == sj == pytest.approx(0.5 / (200 / 256))


def test_mr_finish_is_a_positive_magnitude_with_the_scale_and_bias():
    geom = geometry_for("axial", (0, 0, 0), 100, 20, 64, 1.0)
    vol = np.ones(geom.shape, np.float32)
    s = scanner.Scanner(0.3, 0.02, 1000.0, (0.1, 0.05, -0.1, 0.0, 0.2, -0.05))
    out = scanner.finish(vol.copy(), geom, "MRA", s, np.random.default_rng(0))
    assert out.min() >= 0 and 800 < np.median(out) < 1250
    flat = scanner.finish(vol.copy(), geom, "MRA", dataclasses.replace(s, bias=(0.0,) * 6), np.random.default_rng(0))
    assert np.median(flat) == pytest.approx(1000.0, rel=0.01)
    # the bias field is smooth: a ramp along each axis, not noise
    profile = (out / flat)[:, 32, 32]
    assert np.all(np.diff(profile) > -0.02)
