"""The one-pass reduction: per-slice updates of bounded accumulators (never the whole volume).

For each oriented, pooled slice ``p`` (see ``geometry``) at grid cell ``t`` along its normal axis:

* its elementwise max feeds the view of that axis (coronal slice -> coronal MIP, ...),
* its row/column maxima feed one line of the other views,
* its rows grouped by z-bins feed the axial thin slabs (``B`` fine z-bins, each a (g_y, g_x) image).

There is no separate axial MIP: the axial view is the max of the slab bins inside the ROI (chosen
after the pass), so a head-and-neck scan's axial MIP is not covered by the shoulders.
Accumulators (float32, -inf where nothing landed), ``g`` <= grid cells per axis:

    coronal  (g_z, g_x)   max over y
    sagittal (g_z, g_y)   max over x
    slabs    (B, g_y, g_x) max over the z-cells of each bin

CT keeps a second set over bone-suppressed slices (the highlight); MR feeds a streaming histogram.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from willis.projections.bone import OPEN_MM, suppress_bone
from willis.projections.geometry import X, Y, Z, SeriesGeometry, shift2d
from willis.projections.windows import PercentileSample

HIST_STRIDE = 2  # MR histogram from every 2nd pixel per axis: a quarter of the log2 cost, same percentiles


@dataclass
class Views:
    """One set of accumulators (raw or bone-suppressed)."""

    coronal: np.ndarray   # (g_z, g_x)
    sagittal: np.ndarray  # (g_z, g_y)
    slabs: np.ndarray     # (B, g_y, g_x)

    @classmethod
    def empty(cls, gz: int, gy: int, gx: int, bins: int) -> "Views":
        def full(*shape):
            return np.full(shape, -np.inf, dtype=np.float32)

        return cls(full(gz, gx), full(gz, gy), full(bins, gy, gx))


@dataclass
class Accumulated:
    geom: SeriesGeometry
    raw: Views
    suppressed: Views | None
    bin_starts: np.ndarray               # (B,) first z-cell of each slab bin
    pct: PercentileSample | None
    n_frames: int = 0
    skipped: list[str] = field(default_factory=list)

    def bin_z(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(centre, lo, hi) z in mm of each slab bin, each (B,)."""
        z = self.geom.axes[Z]
        ends = np.append(self.bin_starts[1:], z.g)
        centre = np.array([z.coords[a:b].mean() for a, b in zip(self.bin_starts, ends)])
        half = z.step * z.f / 2
        lo = np.array([z.coords[a] - half for a in self.bin_starts])
        hi = np.array([z.coords[b - 1] + half for b in ends])
        return centre, lo, hi


class Accumulator:
    """Feed frames one by one with ``add(order, frame)``; ``result()`` gives the accumulators."""

    def __init__(self, geom: SeriesGeometry, bins: int, family: str, bone_hu: float, bone_dilate_mm: float):
        self.geom = geom
        gx, gy, gz = (geom.axes[a].g for a in (X, Y, Z))
        b = min(bins, gz)
        self.bin_starts = (np.arange(b) * gz) // b               # (B,) groups of z-cells
        self.bin_of_cell = np.searchsorted(self.bin_starts, np.arange(gz), side="right") - 1  # (g_z,)
        self.raw = Views.empty(gz, gy, gx, b)
        self.ct = family == "ct"
        self.suppressed = Views.empty(gz, gy, gx, b) if self.ct else None
        self.pct = None if self.ct else PercentileSample(HIST_STRIDE)
        u, v = geom.in_plane
        # rim dilation radius in pooled pixels per in-plane axis (at least one pixel)
        cells = [geom.axes[a].step * geom.axes[a].f for a in (u, v)]  # mm per pooled pixel
        self.dilate_px = tuple(max(1, round(bone_dilate_mm / c)) if bone_dilate_mm > 0 else 0 for c in cells)
        self.open_px = tuple(int(OPEN_MM // c) for c in cells)
        self.bone_hu = bone_hu
        self.n = 0

    def add(self, order: int, frame: np.ndarray, ipp=None) -> None:
        """Feed one (rows, cols) frame; ``ipp`` (its ImagePositionPatient) corrects the drift of tilted slices."""
        g = self.geom
        if frame.shape != (g.rows, g.cols):
            raise ValueError(f"frame shape {frame.shape}, expected ({g.rows}, {g.cols})")
        t = g.cell_of_order[int(order)]
        p = g.orient(frame)                                   # (g_u, g_v)
        du, dv = g.shift_cells(ipp) if ipp is not None else (0, 0)
        self._update(self.raw, shift2d(p, du, dv), t)
        if self.suppressed is not None:
            sup = suppress_bone(p, self.bone_hu, self.dilate_px, self.open_px)  # type: ignore[arg-type]
            self._update(self.suppressed, shift2d(sup, du, dv), t)
        if self.pct is not None:
            self.pct.add(frame)
        self.n += 1

    def _update(self, acc: Views, p: np.ndarray, t: int) -> None:
        a_n = self.geom.a_n
        if a_n == Z:      # p: (g_y, g_x)
            np.maximum(acc.coronal[t], p.max(axis=0), out=acc.coronal[t])
            np.maximum(acc.sagittal[t], p.max(axis=1), out=acc.sagittal[t])
            b = self.bin_of_cell[t]
            np.maximum(acc.slabs[b], p, out=acc.slabs[b])
        elif a_n == Y:    # p: (g_z, g_x), t indexes y
            np.maximum(acc.coronal, p, out=acc.coronal)
            np.maximum(acc.sagittal[:, t], p.max(axis=1), out=acc.sagittal[:, t])
            # (g_z, g_x) -> (B, g_x): max over the z-cells of each bin
            np.maximum(acc.slabs[:, t, :], np.maximum.reduceat(p, self.bin_starts, axis=0), out=acc.slabs[:, t, :])
        else:             # a_n == X, p: (g_z, g_y), t indexes x
            np.maximum(acc.sagittal, p, out=acc.sagittal)
            np.maximum(acc.coronal[:, t], p.max(axis=1), out=acc.coronal[:, t])
            np.maximum(acc.slabs[:, :, t], np.maximum.reduceat(p, self.bin_starts, axis=0), out=acc.slabs[:, :, t])

    def result(self) -> Accumulated:
        return Accumulated(self.geom, self.raw, self.suppressed, self.bin_starts, self.pct, self.n)


def accumulator_bytes(grid: int, bins: int, family: str) -> int:
    """Upper bound of the accumulators' memory (bytes): independent of the number of slices."""
    per_set = 4 * (2 * grid * grid + bins * grid * grid)
    return per_set * (2 if family == "ct" else 1) + (0 if family == "ct" else 8 * 64 * 256)
