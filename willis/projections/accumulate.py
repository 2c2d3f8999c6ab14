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

CT keeps a second set over bone-suppressed slices (the highlight). MR windows come from the
locate pass's exact percentiles (``willis.projections.locate``), set on the result afterwards.

Oblique (gantry-tilted) series skip the per-slice shortcuts: every pooled pixel goes to the cell of
its true patient position (``willis.projections.scatter``), and the cells that fall between two
tilted slices are interpolated along the normal axis afterwards (``fill_gaps``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from willis.projections.bone import OPEN_MM, suppress_bone
from willis.projections.geometry import X, Y, Z, SeriesGeometry, pool_max
from willis.projections.kernels import coarse_update, scatter_max
from willis.projections.scatter import BinnedView, Buffers, Placer, fill_gaps, flat_index
from willis.projections.windows import PercentileSample


@dataclass
class Views:
    """One set of accumulators (raw or bone-suppressed)."""

    coronal: np.ndarray   # (g_z, g_x)
    sagittal: np.ndarray  # (g_z, g_y)
    slabs: np.ndarray     # (B, g_y, g_x)

    flat: list[np.ndarray] = field(default_factory=list)  # the same three as flat buffers + a trash slot (oblique)

    @classmethod
    def empty(cls, gz: int, gy: int, gx: int, bins: int) -> "Views":
        bufs = [Buffers(shape) for shape in ((1, gz, gx), (1, gz, gy), (bins, gy, gx))]
        flat = [b.add("max", -np.inf) for b in bufs]
        co, sa, sl = (b.view("max") for b in bufs)
        return cls(co[0], sa[0], sl, flat)


@dataclass
class Accumulated:
    geom: SeriesGeometry
    raw: Views
    suppressed: Views | None
    bin_starts: np.ndarray               # (B,) first z-cell of each slab bin
    pct: PercentileSample | None = None   # MR: set from the locate pass
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
        # the pooled slice's two axes: (u, v) canonical for axis-aligned series, the frame's own
        # (rows, cols) for oblique ones, pooled like the patient axes they run nearest to
        if geom.oblique:
            self.f_ij = (geom.axes[geom.a_col].f, geom.axes[geom.a_row].f)
            cells = [geom.d_row * self.f_ij[0], geom.d_col * self.f_ij[1]]
            lo, pitch, n = geom.cell_edges()
            self.placer = Placer(geom.pixel_offsets(*self.f_ij), lo, pitch, n)
            one = np.zeros(gy, np.int64), np.zeros(gx, np.int64)        # coronal / sagittal: one bin over all cells
            self.views = [BinnedView(Y, Z, X, one[0], 1), BinnedView(X, Z, Y, one[1], 1),
                          BinnedView(Z, Y, X, self.bin_of_cell.astype(np.int64), b)]
            self.grid_n = n
        else:
            u, v = geom.in_plane
            cells = [geom.axes[a].step * geom.axes[a].f for a in (u, v)]  # mm per pooled pixel
        # rim dilation radius in pooled pixels per slice axis (at least one pixel)
        self.dilate_px = tuple(max(1, round(bone_dilate_mm / c)) if bone_dilate_mm > 0 else 0 for c in cells)
        self.open_px = tuple(int(OPEN_MM // c) for c in cells)
        self.bone_hu = bone_hu
        self.n = 0
        self._sup: np.ndarray | None = None
        self._zeros: np.ndarray | None = None

    def add(self, order: int, frame: np.ndarray, ipp=None) -> None:
        """Feed one (rows, cols) frame; ``ipp`` (its ImagePositionPatient) is required for oblique series."""
        g = self.geom
        if frame.shape != (g.rows, g.cols):
            raise ValueError(f"frame shape {frame.shape}, expected ({g.rows}, {g.cols})")
        if g.oblique:
            self._add_oblique(frame, ipp)
        else:
            t = g.cell_of_order[int(order)]
            p = g.orient(frame)                                   # (g_u, g_v)
            self._update(self.raw, p, t)
            if self.suppressed is not None:
                if self._sup is None or self._sup.shape != p.shape:
                    self._sup = np.empty(p.shape, np.float32)
                sup = suppress_bone(p, self.bone_hu, self.dilate_px, self.open_px, out=self._sup)  # type: ignore[arg-type]
                self._update(self.suppressed, sup, t)
        self.n += 1

    def _add_oblique(self, frame: np.ndarray, ipp) -> None:
        if ipp is None:
            raise ValueError("an oblique series needs each frame's ImagePositionPatient")
        p = pool_max(pool_max(frame, self.f_ij[0], 0), self.f_ij[1], 1)   # (g_i, g_j), frame orientation
        cells, valid = self.placer.cells(ipp)
        idx = [flat_index(v, cells, valid, self.grid_n) for v in self.views]
        sets = [(self.raw, p)]
        if self.suppressed is not None:
            sets.append((self.suppressed, suppress_bone(p, self.bone_hu, self.dilate_px, self.open_px)))  # type: ignore[arg-type]
        for acc, values in sets:
            flat_values = np.ascontiguousarray(values, np.float32).ravel()
            for buf, i in zip(acc.flat, idx):
                scatter_max(buf, i, flat_values)            # np.maximum.at

    def _update(self, acc: Views, p: np.ndarray, t: int) -> None:
        """Max-update of the three views with one oriented slice (``kernels.coarse_update``)."""
        a_n = self.geom.a_n
        if a_n == Z:      # p: (g_y, g_x): slabs[b] max= p, sagittal[t] max= p.max(1), coronal[t] max= p.max(0)
            b = self.bin_of_cell[t]
            coarse_update(p, acc.slabs[b], acc.sagittal[t], acc.coronal[t:t + 1], self._zero_rows(p.shape[0]))
        elif a_n == Y:    # p: (g_z, g_x), t indexes y: coronal max= p, sagittal[:, t] max= p.max(1),
            # slabs[:, t, :] max= the max over the z-cells of each bin (np.maximum.reduceat)
            coarse_update(p, acc.coronal, acc.sagittal[:, t], acc.slabs[:, t, :], self.bin_of_cell)
        else:             # a_n == X, p: (g_z, g_y), t indexes x: the same with coronal and sagittal swapped
            coarse_update(p, acc.sagittal, acc.coronal[:, t], acc.slabs[:, :, t], self.bin_of_cell)

    def _zero_rows(self, n: int) -> np.ndarray:
        if self._zeros is None or len(self._zeros) != n:
            self._zeros = np.zeros(n, np.int64)
        return self._zeros

    def result(self) -> Accumulated:
        if self.geom.oblique:   # cells between two tilted slices: interpolate along the normal axis
            a_n = self.geom.a_n
            for acc in (self.raw, self.suppressed):
                if acc is None:
                    continue
                for arr, axes in ((acc.coronal, (Z, X)), (acc.sagittal, (Z, Y)), (acc.slabs, (Z, Y, X))):
                    if a_n in axes:   # slabs: axis 0 holds the z-bins
                        fill_gaps(arr, axes.index(a_n))
        return Accumulated(self.geom, self.raw, self.suppressed, self.bin_starts, None, self.n)


def accumulator_bytes(grid: int, bins: int, family: str) -> int:
    """Upper bound of the accumulators' memory (bytes): independent of the number of slices."""
    per_set = 4 * (2 * grid * grid + bins * grid * grid)
    return per_set * (2 if family == "ct" else 1)
