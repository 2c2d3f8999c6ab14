"""Head / circle-of-Willis ROI, chosen after the pass from the coronal and sagittal maxima.

Many CTAs run from the vertex to the chest; the intracranial arteries sit within ~15 cm below the
skull top. So, in patient mm:

1. foreground = raw max above ``HU_TISSUE`` (CT) or above ``MR_FOREGROUND_FRACTION`` of the
   series' 99th percentile (MR);
2. the skull top is the highest z row of the coronal or sagittal MIP whose foreground is at least
   ``HEAD_MIN_WIDTH_MM`` wide (a row of noise does not count);
3. z box: ``[top + margin - roi_z_mm, top + margin]``, clipped to the scanned range;
4. x (y) box: centred on the foreground of the coronal (sagittal) MIP rows inside the z box,
   as wide as that foreground plus margins, at most ``roi_xy_mm``.

Every view and instance then uses one isotropic pixel size, ``mm_per_px = max(box extents) / S``,
centred on the box centre (``willis.projections.views``). No foreground at all -> the whole
scanned box (``roi_flag = "full_fov"``), reported in the series attrs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from willis.projections.accumulate import Accumulated
from willis.projections.geometry import X, Y, Z
from willis.projections.windows import HU_TISSUE, MR_FOREGROUND_FRACTION

HEAD_MIN_WIDTH_MM = 30.0   # a skull-top row must have at least this much foreground across


@dataclass(frozen=True)
class Roi:
    box: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]  # LPS mm [lo, hi] for x, y, z
    mm_per_px: float
    flag: str  # "head" or "full_fov"

    @property
    def centre(self) -> tuple[float, float, float]:
        return tuple((lo + hi) / 2 for lo, hi in self.box)  # type: ignore[return-value]


def foreground_threshold(acc: Accumulated, family: str) -> float:
    if family == "ct":
        return HU_TISSUE
    p99 = acc.pct.percentile(99.0) if acc.pct is not None else 0.0
    return MR_FOREGROUND_FRACTION * p99 if p99 > 0 else np.inf


def find_roi(acc: Accumulated, family: str, size: int, roi_z_mm: float, roi_xy_mm: float, margin_mm: float) -> Roi:
    axes = acc.geom.axes
    full = tuple((axes[a].lo, axes[a].hi) for a in (X, Y, Z))
    thr = foreground_threshold(acc, family)
    fg_co = acc.raw.coronal > thr    # (g_z, g_x)
    fg_sa = acc.raw.sagittal > thr   # (g_z, g_y)
    cell = {a: axes[a].step * axes[a].f for a in (X, Y, Z)}  # mm per grid cell
    wide = (fg_co.sum(axis=1) * cell[X] >= HEAD_MIN_WIDTH_MM) | (fg_sa.sum(axis=1) * cell[Y] >= HEAD_MIN_WIDTH_MM)
    if not wide.any():
        ext = max(hi - lo for lo, hi in full)
        return Roi(full, ext / size, "full_fov")  # type: ignore[arg-type]
    top_cell = int(np.nonzero(wide)[0].max())
    z1 = min(axes[Z].coords[top_cell] + cell[Z] / 2 + margin_mm, full[2][1])
    z0 = max(z1 - roi_z_mm, full[2][0])
    in_z = (axes[Z].coords >= z0 - cell[Z] / 2) & (axes[Z].coords <= z1 + cell[Z] / 2)  # (g_z,)

    def span(fg: np.ndarray, a: int) -> tuple[float, float]:
        cols = np.nonzero(fg[in_z].any(axis=0))[0]
        if cols.size == 0:
            return full[a]
        lo = axes[a].coords[cols[0]] - cell[a] / 2 - margin_mm
        hi = axes[a].coords[cols[-1]] + cell[a] / 2 + margin_mm
        centre, ext = (lo + hi) / 2, min(hi - lo, roi_xy_mm)
        return centre - ext / 2, centre + ext / 2

    bx, by = span(fg_co, X), span(fg_sa, Y)
    box = (bx, by, (z0, z1))
    ext = max(hi - lo for lo, hi in box)
    return Roi(box, ext / size, "head")  # type: ignore[arg-type]
