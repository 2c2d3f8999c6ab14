"""The fine views: thin slabs on all three axes inside the fine box, at ``fine_mm_per_px``.

Fed during the main pass (``streaming``), frame by frame, only with the frames whose plane cuts
the box (``wants``). Per frame, in its own pixel grid (so morphology is 2-D and cheap):

1. crop the rows / columns that can reach the box (plus a margin for the morphology), max-pool
   to about the fine pixel (``f = floor(fine_mm / pixel)``, so the cells are never finer than the
   data);
2. derive the per-voxel images: CT raw HU, bone-suppressed HU (``bone.suppress_bone``) and its
   [150, 600] HU window (contrast occupancy); MR raw, its [p50, p99.9] window and the black
   top-hat ``closing - value`` with a ``dark_tophat_mm`` box (flow voids);
3. scatter every pooled pixel to the cell of its true patient position (``scatter``) in a grid
   over the box: regular along the in-plane axes (pixel centres at cell centres), one cell per
   slice (or per ``f`` slices) along the normal; oblique series get a regular grid on all axes at
   the fine pixel, their empty cells between tilted slices interpolated at the end;
4. each of the three views keeps per (slab, row, col) the max of the two max-type images and the
   sum and count of the mean-type one (``thickness``).

At the end each accumulator is resampled (``render.resample``: max-pool anti-aliasing, then
linear) onto the ``F x F`` display grid of its view and windowed into uint8 channels
(``windows.fine_windows``): ``(3, K_f, C_f, F, F)``.

Steps 2-4 and the render run in compiled kernels (``kernels``: bone mask, top-hat, window, the
three views' update, resampling, uint8 windows), equal bit for bit to their numpy formulation; an
axis-aligned frame costs ~0.5 ms for a 330 x 330 crop (it was ~2.3 ms in numpy).

Memory: 4 float32 accumulators per view of ``K_f x (box / cell)^2`` cells (~70 MB at the default
136 mm box and ~0.47 mm pixels) and one frame, whatever the series length.
"""

from __future__ import annotations

import numpy as np

from willis.projections.bone import OPEN_MM
from willis.projections.finebox import FineBox
from willis.projections.geometry import X, Y, Z, AxisGrid, SeriesGeometry, pool_max
from willis.projections.kernels import (fine_direct, mean_into, resample_into, scatter_add, scatter_count, scatter_max,
                                        suppress_into, to_uint8_into, tophat_into, window_into, window_uint8)
from willis.projections.scatter import BinnedView, Buffers, Placer, fill_gaps, flat_index
from willis.projections.views import FINE_AXES, VIEWS
from willis.projections.windows import HU_AIR, Window, apply_window

MAX_SETS = ("max_a", "max_b")   # CT: raw, bone-suppressed; MR: raw, black top-hat
MEAN_SET = "sum"                # CT: suppressed-window occupancy; MR: [p50, p99.9] window


def _regular_axis(lo: float, pitch: float, n: int) -> AxisGrid:
    centres = lo + (np.arange(n) + 0.5) * pitch
    return AxisGrid(n, 1, centres, centres)


class FineAccumulator:
    """Feed ``add(frame, ipp)`` for every frame of the series (others are skipped); ``render()`` at the end."""

    def __init__(self, geom: SeriesGeometry, box: FineBox, family: str, windows: list[Window],
                 bone_hu: float, bone_dilate_mm: float, dark_tophat_mm: float,
                 positions: np.ndarray, orders: np.ndarray) -> None:
        """``positions`` (n,) / ``orders`` (n,): each kept frame's centre along the slice normal and its ``order``."""
        self.geom, self.box, self.ct, self.bone_hu = geom, box, family == "ct", bone_hu
        self.windows = {w.name: w for w in windows}
        mm = box.mm_per_px
        self.f_ij = (max(1, int(mm // geom.d_row)), max(1, int(mm // geom.d_col)))
        pitch_i, pitch_j = geom.d_row * self.f_ij[0], geom.d_col * self.f_ij[1]   # mm per pooled pixel (i, j)
        bounds = box.box
        lo, pitch, n = np.zeros(3), np.zeros(3), np.zeros(3, np.int64)
        self.axes: dict[int, AxisGrid] = {}
        in_plane = {geom.a_col: pitch_i, geom.a_row: pitch_j}
        for a in (X, Y, Z):
            b0, b1 = bounds[a]
            if a in in_plane and not geom.oblique:
                # pixel centres on cell centres: the pooled pixels' own positions along this axis
                p = in_plane[a]
                c0 = geom.ref_ipp[a] + geom.pixel_offsets(*self.f_ij)[a].ravel()[0]    # centre of pooled pixel (0, 0)
                k0 = np.ceil((b0 - c0) / p - 1e-9)
                lo[a], pitch[a] = c0 + (k0 - 0.5) * p, p
                n[a] = max(1, int(np.floor((b1 - (c0 + k0 * p)) / p + 1e-9)) + 1)
                self.axes[a] = _regular_axis(lo[a], p, int(n[a]))
            elif a in in_plane or geom.oblique:
                p = in_plane.get(a, mm)   # oblique normal: the fine pixel; gaps interpolated afterwards
                lo[a], pitch[a] = b0, p
                n[a] = max(1, int(np.ceil((b1 - b0) / p - 1e-9)))
                self.axes[a] = _regular_axis(lo[a], p, int(n[a]))
        # axis-aligned normal axis: one cell per slice inside the box (pooled so cells are >= the fine pixel)
        self.cell_of_order: dict[int, int] = {}
        if not geom.oblique:
            a = geom.a_n
            b0, b1 = bounds[a]
            step = geom.axes[a].step
            sel = np.nonzero((positions >= b0 - step) & (positions <= b1 + step))[0]
            sel = sel[np.argsort(positions[sel], kind="stable")]
            f_n = max(1, int(mm // step)) if step > 0 else 1
            native = positions[sel]
            cells = np.arange(len(sel)) // f_n
            g = int(cells[-1]) + 1 if len(sel) else 0
            coords = np.array([native[cells == c].mean() for c in range(g)])
            self.axes[a] = AxisGrid(len(sel), f_n, native, coords)
            self.cell_of_order = {int(orders[s]): int(c) for s, c in zip(sel, cells)}
            n[a] = max(g, 1)
        self.n = n
        self.placer = Placer(geom.pixel_offsets(*self.f_ij), lo, np.where(pitch > 0, pitch, 1.0), n)
        self.views = []
        self.buffers = []
        for view in VIEWS:
            a_s, a_r, a_c = FINE_AXES[view]
            bins = self._bins(view, self.axes[a_s].coords)
            bv = BinnedView(a_s, a_r, a_c, bins, box.slabs)
            buf = Buffers(bv.shape(n))
            for name in MAX_SETS:
                buf.add(name, -np.inf)
            buf.add(MEAN_SET, 0.0)
            buf.add("count", 0.0)
            self.views.append(bv)
            self.buffers.append(buf)
        self.dilate = tuple(max(1, round(bone_dilate_mm / p)) if bone_dilate_mm > 0 else 0 for p in (pitch_i, pitch_j))
        self.opening = tuple(int(OPEN_MM // p) for p in (pitch_i, pitch_j))
        self.tophat = tuple(max(3, int(round(dark_tophat_mm / p)) | 1) for p in (pitch_i, pitch_j))
        margin_mm = max(dark_tophat_mm, bone_dilate_mm + OPEN_MM) + 1.0
        self.margin = (int(np.ceil(margin_mm / geom.d_row)), int(np.ceil(margin_mm / geom.d_col)))
        corners = np.array(np.meshgrid(*[list(b) for b in bounds], indexing="ij")).reshape(3, -1).T   # (8, 3)
        self.corners = corners
        self.frames = 0
        self._cells_key: tuple = ()
        self._cells: np.ndarray | None = None
        self._plan: tuple | None = None
        self._scratch: tuple[np.ndarray, np.ndarray] | None = None

    def _bins(self, view: str, coords: np.ndarray) -> np.ndarray:
        """(g,) slab of each cell along the view's slab axis, by its centre (-1 outside the box)."""
        edges = self.box.slab_edges(view)
        lo, hi = min(edges[0], edges[-1]), max(edges[0], edges[-1])
        t = self.box.slab_mm
        k = np.floor((edges[0] - coords) / t) if view == "axial" else np.floor((coords - edges[0]) / t)
        k = np.clip(k, 0, self.box.slabs - 1).astype(np.int64)
        return np.where((coords >= lo) & (coords <= hi), k, -1)

    def wants(self, order: int, ipp) -> bool:
        """Whether the frame's plane cuts the box."""
        if not self.geom.oblique:
            return int(order) in self.cell_of_order
        d = (self.corners - np.asarray(list(ipp), float)) @ self.geom.normal
        return bool(d.min() <= 0.0 <= d.max())

    def _crop(self, ipp) -> tuple[slice, slice, slice, slice]:
        """Native (rows, cols) and pooled (rows, cols) slices of the frame that can reach the box.

        Starts are multiples of the pooling factor, so pooled pixel ``I`` of the crop is pooled
        pixel ``i0 / f + I`` of the whole frame (whose centres ``Placer`` knows)."""
        g = self.geom
        rel = self.corners - np.asarray(list(ipp), float)                  # (8, 3)
        out = []
        for cos, d, n, f, m in ((g.col_cos, g.d_row, g.rows, self.f_ij[0], self.margin[0]),
                                (g.row_cos, g.d_col, g.cols, self.f_ij[1], self.margin[1])):
            t = rel @ cos / d                                              # (8,) native index of each corner
            lo = min(n - 1, max(0, int(np.floor(t.min())) - m)) // f * f
            hi = max(lo + 1, min(n, int(np.ceil(t.max())) + m + 1))
            out.append((slice(lo, hi), slice(lo // f, lo // f + -(-(hi - lo) // f))))
        (ri, pi), (rj, pj) = out
        return ri, rj, pi, pj

    def add(self, order: int, frame: np.ndarray, ipp) -> None:
        if not self.wants(order, ipp):
            return
        ri, rj, pi, pj = self._crop(ipp)
        q = np.ascontiguousarray(pool_max(pool_max(frame[ri, rj], self.f_ij[0], 0), self.f_ij[1], 1))   # (h, w) pooled crop
        if self.geom.oblique:
            cells, _ = self.placer.cells(ipp, pi, pj)                      # (3, h, w)
        else:   # axis-aligned: the crop's cells are the same for every frame with the same in-plane IPP
            key = (pi.start, pi.stop, pj.start, pj.stop,
                   *(round(float(c), 3) for a, c in enumerate(ipp) if a != self.geom.a_n))
            if key != self._cells_key:
                self._cells = self.placer.cells(ipp, pi, pj)[0]             # the normal axis is overridden by _direct
                self._cells_key = key
                self._plan = None
            cells = self._cells
        images = self._images(q)
        if self.geom.oblique:
            self._scatter(images, cells)
        else:
            self._direct(images, cells, self.cell_of_order[int(order)])
        self.frames += 1

    def _images(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The per-voxel images of one pooled crop (module docstring, step 2), float32 (h, w) each.

        CT: raw, bone-suppressed (``bone.suppress_bone``) and its thickness window; MR: raw, black
        top-hat and the thickness window of the raw values. Compiled (``kernels``), the same values."""
        if self._scratch is None or self._scratch[0].shape != q.shape:
            self._scratch = (np.empty(q.shape, np.float32), np.empty(q.shape, np.float32))
        second, win = self._scratch
        w = self.windows["thickness"]
        if w.gamma != 1.0:   # the compiled window has no gamma (both families' thickness windows are linear)
            raise ValueError(f"fine thickness window with gamma {w.gamma}: only 1 is supported")
        if self.ct:
            suppress_into(q, np.float32(self.bone_hu), self.opening[0], self.opening[1],
                          self.dilate[0], self.dilate[1], np.float32(HU_AIR), second)
            window_into(second, float(w.lo), float(w.hi - w.lo), win)
        else:
            tophat_into(q, self.tophat[0], self.tophat[1], True, second)   # grey_closing(q) - q
            window_into(q, float(w.lo), float(w.hi - w.lo), win)
        return q, second, win

    def _scatter(self, images, cells: np.ndarray) -> None:
        """Every pooled pixel to its own cell (oblique series)."""
        valid = ((cells >= 0) & (cells < self.n[:, None, None])).all(axis=0)
        flat = [np.ascontiguousarray(v).ravel() for v in images]
        for bv, buf in zip(self.views, self.buffers):
            idx = flat_index(bv, cells, valid, self.n)
            scatter_max(buf.arrays["max_a"], idx, flat[0])
            scatter_max(buf.arrays["max_b"], idx, flat[1])
            scatter_add(buf.arrays[MEAN_SET], idx, flat[2])
            scatter_count(buf.arrays["count"], idx)

    def _direct_plan(self, cells: np.ndarray):
        """What ``_direct`` needs of a crop's cells (the same for every frame of an axis-aligned series
        with one in-plane IPP): the orientation of the images, the in-box cell ranges and, per view,
        its accumulators and slab segments. None when the crop holds no in-box cell."""
        g = self.geom
        u, v = g.in_plane
        ci, cj = cells[g.a_col][:, 0], cells[g.a_row][0, :]               # cells of the crop's rows / columns
        transpose = g.a_col != u                                          # rows along u
        cu, cv = (ci, cj) if not transpose else (cj, ci)
        flip_u, flip_v = bool(cu[0] > cu[-1]), bool(cv[0] > cv[-1])
        cu, cv = (cu[::-1] if flip_u else cu), (cv[::-1] if flip_v else cv)
        ou = np.nonzero((cu >= 0) & (cu < self.n[u]))[0]
        ov = np.nonzero((cv >= 0) & (cv < self.n[v]))[0]
        if ou.size == 0 or ov.size == 0:
            return None
        cut = (slice(int(ou[0]), int(ou[-1]) + 1), slice(int(ov[0]), int(ov[-1]) + 1))   # (n_u, n_v) cells in the box
        u0, u1, v0, v1 = int(cu[ou[0]]), int(cu[ou[-1]]) + 1, int(cv[ov[0]]), int(cv[ov[-1]]) + 1
        own = None
        segs = {}
        empty = (np.zeros(0, np.int64),) * 3
        for bv, buf in zip(self.views, self.buffers):
            arrs = tuple(buf.view(k) for k in (*MAX_SETS, MEAN_SET, "count"))
            if bv.proj == g.a_n:                                            # the frame's own view: rows u, cols v
                own = (bv, arrs)
                continue
            along = 0 if bv.proj == u else 1                                # crop axis the slabs cut
            lo, hi = (u0, u1) if along == 0 else (v0, v1)
            bins = bv.bins[lo:hi]
            keep = bins >= 0
            if keep.any():
                starts = np.nonzero(np.r_[True, np.diff(bins) != 0] & keep)[0]   # first cell of each slab in the crop
                ends = np.r_[starts[1:], hi - lo]
                ends = np.minimum(ends, np.nonzero(keep)[0][-1] + 1)
                seg = (starts.astype(np.int64), bins[starts].astype(np.int64), (ends - starts).astype(np.int64))
            else:
                seg = empty
            # accumulators indexed [slab, t, other in-plane cell]
            arrs = arrs if bv.rows == g.a_n else tuple(x.transpose(0, 2, 1) for x in arrs)
            segs[along] = (seg, arrs)
        return transpose, flip_u, flip_v, cut, u0, v0, own, segs

    def _direct(self, images, cells: np.ndarray, t: int) -> None:
        """Axis-aligned series: the same update with slices and segment reductions instead of a scatter.

        The crop's rows and columns are whole, consecutive grid cells along the two in-plane axes
        (``(u, v)``, the larger axis number first, as ``FINE_AXES`` rows / cols), so the frame's own
        view gets a slice update at its slab, and each other view one row (column) per slab: the
        max / sum over the crop's cells in that slab (``kernels.fine_direct``; the numpy
        formulation, ``np.maximum`` / ``np.add`` and their ``reduceat``, is ``tests``' reference)."""
        if self._plan is None:
            self._plan = (self._direct_plan(cells),)
        plan = self._plan[0]
        if plan is None:
            return
        transpose, flip_u, flip_v, cut, u0, v0, (own_bv, own), segs = plan
        ims = []
        for im in images:
            im = im.T if transpose else im
            im = im[::-1] if flip_u else im
            im = im[:, ::-1] if flip_v else im
            ims.append(np.ascontiguousarray(im[cut]))   # C order: the kernel's loops vectorise
        k = int(own_bv.bins[t])
        (su, ua), (sv, va) = segs[0], segs[1]
        fine_direct(ims[0], ims[1], ims[2], u0, v0, k, int(t), *own, *su, *ua, *sv, *va)

    def render(self) -> np.ndarray:
        """uint8 (3, K_f, C_f, F, F): views axial, coronal, sagittal; channels as ``windows``."""
        box, mm, F = self.box, self.box.mm_per_px, self.box.size
        if self.frames == 0:   # no frame cuts the box (localisation outside the scan): nothing to show
            return np.zeros((3, box.slabs, len(self.windows), F, F), np.uint8)
        fill_a = HU_AIR if self.ct else 0.0
        out = []
        for view, bv, buf in zip(VIEWS, self.views, self.buffers):
            a_s, a_r, a_c = FINE_AXES[view]
            out_r = box.pixel_coords(a_r)[::-1] if a_r == Z else box.pixel_coords(a_r)   # rows: superior on top
            out_c = box.pixel_coords(a_c)
            mean = np.empty(bv.shape(self.n), np.float32)
            mean_into(buf.view(MEAN_SET), buf.view("count"), mean)   # where(count > 0, sum / count, -inf)
            sets = [buf.view("max_a"), buf.view("max_b"), mean]
            if self.geom.oblique:   # cells between tilted slices: interpolate along the axis nearest the normal
                axis = (a_s, a_r, a_c).index(self.geom.a_n)
                for arr in sets:
                    fill_gaps(arr, axis)
            fills = (fill_a, fill_a if self.ct else 0.0, 0.0)
            rows, cols = _lerp(self.axes[a_r], out_r), _lerp(self.axes[a_c], out_c)
            res = [_resample(arr, rows, cols, fill) for arr, fill in zip(sets, fills)]   # 3 x (K, F, F)
            out.append(self._channels(*res))
        return np.stack(out)                                                     # (3, K, C, F, F)

    def _channels(self, raw: np.ndarray, second: np.ndarray, mean: np.ndarray) -> np.ndarray:
        """(K, F, F) x 3 -> uint8 (K, C, F, F) in the order of ``windows.fine_channel_names``.

        ``to_uint8`` of each channel: a window of ``raw`` / ``second`` (``apply_window``; compiled,
        ``kernels.window_uint8``, for gamma 1 or 0.5) or the clipped ``mean``."""
        w = self.windows
        if self.ct:
            srcs = [(raw, w["vessel"]), (second, w["highlight"]), (mean, None)]
        else:
            srcs = [(raw, w["vessel"]), (mean, None), (second, w["dark"])]
        out = np.empty((raw.shape[0], len(srcs), *raw.shape[1:]), np.uint8)
        for c, (src, win) in enumerate(srcs):
            if win is None:
                to_uint8_into(src, out[:, c])
            elif win.gamma in (1.0, 0.5):
                window_uint8(src, float(win.lo), float(win.hi - win.lo), win.gamma == 0.5, out[:, c])
            else:
                to_uint8_into(apply_window(src, win), out[:, c])
        return out


def _lerp(axis: AxisGrid, out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear interpolation from ``axis``'s cell centres to the coordinates ``out``: (i0, w, inside), each (len(out),).

    As ``render.resample`` (np.interp, clamped at the ends); ``inside`` False beyond half a cell
    past the first / last centre (those pixels get the fill value)."""
    c = axis.coords
    pos = np.interp(out, c, np.arange(len(c), dtype=np.float64))
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, max(len(c) - 2, 0))
    w = np.clip(pos - i0, 0.0, 1.0) if len(c) > 1 else np.zeros_like(pos)
    half = axis.step * axis.f / 2
    inside = (out >= c[0] - half) & (out <= c[-1] + half)
    return i0, w.astype(np.float32), inside


def _resample(src: np.ndarray, rows, cols, fill: float) -> np.ndarray:
    """(K, g_r, g_c) accumulator -> (K, F, F) float32: separable linear interpolation, ``fill`` outside / where empty.

    Rows first, then columns, each ``x0 * (1 - w) + x1 * w`` in float32 (``kernels.resample_into``)."""
    (ri, rw, rin), (ci, cw, cin) = rows, cols
    out = np.empty((src.shape[0], len(ri), len(ci)), np.float32)
    resample_into(src, np.float32(fill), ri, np.minimum(ri + 1, src.shape[1] - 1), rw, rin,
                  ci, np.minimum(ci + 1, src.shape[2] - 1), cw, cin, out)
    return out


def fine_accumulator(geom: SeriesGeometry, files, box: FineBox, family: str, windows: list[Window], params) -> FineAccumulator:
    """A FineAccumulator for the kept frames of ``files`` (rows of files.parquet) with the project params."""
    kept = files[files["keep"]].sort_values("order")
    ipps = np.array([list(p) for p in kept["ipp"]], dtype=np.float64)
    centre = (geom.rows - 1) / 2 * geom.d_row * geom.col_cos + (geom.cols - 1) / 2 * geom.d_col * geom.row_cos
    positions = (ipps + centre)[:, geom.a_n]
    return FineAccumulator(geom, box, family, windows, params.bone_hu, params.bone_dilate_mm, params.dark_tophat_mm,
                           positions, kept["order"].to_numpy())


__all__ = ["FineAccumulator", "fine_accumulator"]
