"""Gantry tilt (#13): the real GE tilted head CT against an exact-position reference, coarse and fine views.

The reference maps every pixel of every frame to LPS from its own IPP / IOP / PixelSpacing and
scatter-maxes it into the projection's pixel grid (nearest pixel). Where that grid is finer than
the slice spacing along z, the reference's empty pixels between two slices are linearly
interpolated along z, as any reslicer does; the correlation is taken over the pixels the reference
defines. A negative control shows the oracle can fail: the old placement (every row of a slice at
the slice centre's z) does not reach the threshold.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from willis.dicom.frames import iter_frames
from willis.index import scan_series
from willis.params.project import ProjectParams
from willis.projections.scatter import fill_gaps
from willis.projections.streaming import project_series
from willis.projections.views import FINE_AXES, VIEWS
from willis.projections.windows import CT_WINDOWS, FINE_CT_WINDOWS, apply_window, to_uint8

# ../shared relative to the project root; WILLIS_REAL_DICOM overrides it (e.g. from a git worktree elsewhere)
FIXTURES = Path(os.environ.get("WILLIS_REAL_DICOM") or Path(__file__).resolve().parents[2].parent / "shared/fixtures/real-dicom")
TILTED = FIXTURES / "ct-ge-gantry-tilt-variable-spacing"
MIN_CORRELATION = 0.98
COARSE = {"axial": (1, 0), "coronal": (2, 0), "sagittal": (2, 1)}   # view -> (row axis, col axis) of the coarse views

pytestmark = pytest.mark.skipif(not TILTED.is_dir(), reason=f"real-DICOM fixtures absent ({TILTED}): ../shared not checked out")


@pytest.fixture(scope="module")
def tilted():
    root = TILTED.parent
    _, files = scan_series(TILTED, root)
    proj = project_series({"SeriesInstanceUID": TILTED.name, "Modality": "CTA"}, files, root, ProjectParams(), "ct")
    pts, vals = [], []
    for row, frame in iter_frames(files, root):
        o = np.asarray(row.orientation, float)
        i, j = np.indices(frame.shape)
        p = np.asarray(row.ipp, float) + (i[..., None] * row.pixel_spacing[0]) * o[3:] + (j[..., None] * row.pixel_spacing[1]) * o[:3]
        pts.append(p.reshape(-1, 3))
        vals.append(frame.ravel())
    centres = np.array([np.asarray(r, float) for r in files.sort_values("order")["ipp"]])   # (n, 3) slice IPPs
    return proj, files, np.concatenate(pts), np.concatenate(vals), centres


def _pix(coord, centre, mm, size):
    return np.rint((coord - centre) / mm + size / 2 - 0.5).astype(np.int64)


def _coarse_reference(pts, vals, attrs) -> np.ndarray:
    """(3, S, S) exact-position max per coarse view (NaN-free: -inf where no pixel landed, then z-filled)."""
    s, mm, c = attrs["size"], attrs["mm_per_px"], np.asarray(attrs["centre_mm"])
    (_, _), (_, _), (z0, z1) = attrs["roi_mm"]
    ref = np.full((3, s, s), -np.inf, np.float32)
    for v, view in enumerate(VIEWS):
        a_r, a_c = COARSE[view]
        sign = -1.0 if a_r == 2 else 1.0
        r = _pix(sign * pts[:, a_r], sign * c[a_r], mm, s)
        col = _pix(pts[:, a_c], c[a_c], mm, s)
        ok = (r >= 0) & (r < s) & (col >= 0) & (col < s)
        if view == "axial":          # the axial view is the max over the ROI's z range
            ok &= (pts[:, 2] >= z0) & (pts[:, 2] <= z1)
        np.maximum.at(ref[v], (r[ok], col[ok]), vals[ok])
        if a_r == 2:
            fill_gaps(ref[v], 0)     # between slices, along z
    return ref


def _corr(ref: np.ndarray, img: np.ndarray, window) -> float:
    ok = np.isfinite(ref)
    a = to_uint8(apply_window(np.where(ok, ref, -1000.0), window)).astype(float)
    return float(np.corrcoef(a[ok], img[ok].astype(float))[0, 1])


def test_coarse_views_match_exact_positions(tilted):
    proj, _, pts, vals, _ = tilted
    assert proj.attrs["oblique"] is True
    ref = _coarse_reference(pts, vals, proj.attrs)
    bone = proj.attrs["channels"].index("bone")   # the widest window: HU -500..1500, least saturated
    for v, view in enumerate(VIEWS):
        r = _corr(ref[v], proj.mip[v, bone], CT_WINDOWS[bone])
        assert r >= MIN_CORRELATION, f"coarse {view}: correlation {r:.4f} with the exact-position reference"


def test_old_untilted_placement_fails_the_same_oracle(tilted):
    """Negative control: each row placed at its slice centre's z (the pre-#13 behaviour) is sheared."""
    proj, files, pts, vals, centres = tilted
    rows, cols = int(files["rows"].iloc[0]), int(files["cols"].iloc[0])
    d_row = float(files["pixel_spacing"].iloc[0][0])
    col_cos = np.asarray(files["orientation"].iloc[0][3:], float)
    untilted = pts.copy()
    per_frame = rows * cols
    for k in range(len(centres)):    # z of the slice centre for every pixel of frame k
        untilted[k * per_frame:(k + 1) * per_frame, 2] = centres[k, 2] + (rows - 1) / 2 * d_row * col_cos[2]
    ref = _coarse_reference(pts, vals, proj.attrs)
    old = _coarse_reference(untilted, vals, proj.attrs)
    bone = proj.attrs["channels"].index("bone")
    old_img = to_uint8(apply_window(np.where(np.isfinite(old[2]), old[2], -1000.0), CT_WINDOWS[bone]))
    assert _corr(ref[2], old_img, CT_WINDOWS[bone]) < 0.9     # sagittal: visibly sheared


def test_fine_slabs_match_exact_positions(tilted):
    proj, _, pts, vals, _ = tilted
    fine = proj.attrs["fine"]
    f, k, mm, t = fine["size"], fine["slabs"], fine["mm_per_px"], fine["slab_mm"]
    c = np.asarray(fine["centre_mm"])
    lo = np.array([b[0] for b in fine["box_mm"]])
    hi = np.array([b[1] for b in fine["box_mm"]])
    assert fine["frames"] > 0 and proj.fine.shape == (3, k, 3, f, f)
    for v, view in enumerate(VIEWS):
        a_s, a_r, a_c = FINE_AXES[view]
        slab = np.floor((hi[a_s] - pts[:, a_s]) / t if view == "axial" else (pts[:, a_s] - lo[a_s]) / t).astype(np.int64)
        sign = -1.0 if a_r == 2 else 1.0
        r = _pix(sign * pts[:, a_r], sign * c[a_r], mm, f)
        col = _pix(pts[:, a_c], c[a_c], mm, f)
        ok = (slab >= 0) & (slab < k) & (r >= 0) & (r < f) & (col >= 0) & (col < f)
        ref = np.full((k, f, f), -np.inf, np.float32)
        np.maximum.at(ref, (slab[ok], r[ok], col[ok]), vals[ok])
        corr = _corr(ref, proj.fine[v, :, 0], FINE_CT_WINDOWS[0])   # "vessel" window, every slab at once
        assert corr >= MIN_CORRELATION, f"fine {view}: correlation {corr:.4f} with the exact-position reference"
