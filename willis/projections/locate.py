"""Pass 1 (locate): a sampled look at the whole series -> a coarse 3-D evidence grid and the MR percentiles.

Frames: the kept frames in position order, skipping a frame whenever the next one is still within
``locate_mm`` of the last one taken (the first and last always taken), so consecutive sampled frames
are at most ``locate_mm`` apart where the series allows. A 0.5 mm CTA reads about one frame in
eight, a 4-5 mm T2 every frame. Each frame is max-pooled to ~``LOCATE_PIXEL_MM`` pixels and every
pooled pixel goes to the cell of its true patient position (``willis.projections.scatter``; tilted
slices included) in a regular LPS grid of ``locate_mm`` cells over the scanned box (coarser when an
axis would exceed ``LOCATE_MAX_CELLS``). Memory: the grid (<= 160^3 float32 cells x 5 arrays in the
worst case, ~300k cells for a head) and one frame, whatever the series length.

Per cell (arrays (n_z, n_y, n_x), z ascending; cells that no sampled frame reached but that lie
between two that did along the slice normal are interpolated, ``scatter.fill_gaps``, so thick
slices leave no empty layers):

* ``mean``: mean of the pixels (of block means, ``geometry.pool_mean``; head mask), NaN outside the scanned range;
* ``vmax``: max of the *evidence image*: CT bone-suppressed HU (``willis.projections.bone``), MR raw;
* ``bone`` (CT): fraction of the pooled pixels above ``bone_hu``;
* ``dark`` (MR): max of each slice's black top-hat (``closing - value``, ``LOCATE_TOPHAT_MM`` box):
  flow voids, for T2; ``bright`` (MR): max of its white top-hat (``value - opening``): vessels
  brighter than their surroundings (MRA, T1post), not large bright regions (fat, CSF).

MR only: the exact-percentile sample (``PercentileSample``) of these frames, from which every MR
window of the series (coarse and fine) is taken. The box itself is chosen in
``willis.projections.cow`` from this grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from willis.dicom.frames import iter_frames
from willis.projections.bone import OPEN_MM, suppress_bone
from willis.projections.geometry import SeriesGeometry, pool_max, pool_mean
from willis.projections.kernels import scatter_above, scatter_add, scatter_count, scatter_max, tophat_into
from willis.projections.scatter import Placer, fill_gaps
from willis.projections.windows import PercentileSample

LOCATE_PIXEL_MM = 1.0     # frames are max-pooled to about this before scattering (vessels >= ~1.5 mm survive a max)
LOCATE_MAX_CELLS = 160    # cells per axis at most (a 640 mm axis at 4 mm); coarser cells beyond
LOCATE_TOPHAT_MM = 6.0    # MR flow-void top-hat box: dark spots narrower than this (arteries 2-5 mm)


@dataclass
class LocateGrid:
    lo: np.ndarray        # (3,) x, y, z of cell (0, 0, 0)'s lower corner, LPS mm
    pitch: np.ndarray     # (3,) cell size, mm (equal on all axes)
    n: np.ndarray         # (3,) cells along x, y, z
    mean: np.ndarray      # (n_z, n_y, n_x) mean pooled value, NaN where not scanned
    vmax: np.ndarray      # max of the evidence image (-inf: not scanned)
    bone: np.ndarray | None   # CT: fraction of pixels above bone_hu
    dark: np.ndarray | None   # MR: max black top-hat (-inf: not scanned)
    bright: np.ndarray | None  # MR: max white top-hat (-inf: not scanned)
    frames: int           # frames read
    pct: PercentileSample | None

    def centres(self, axis: int) -> np.ndarray:
        """(n[axis],) LPS mm of the cell centres along ``axis`` (0 x, 1 y, 2 z)."""
        return self.lo[axis] + (np.arange(self.n[axis]) + 0.5) * self.pitch[axis]

    @property
    def scanned(self) -> np.ndarray:
        return np.isfinite(self.mean)


class FrameCache:
    """The locate pass's decoded frames, kept (copied) up to ``budget`` bytes, by ``order``: the main
    pass reads these from memory instead of decoding them again (``frames``). Bounded whatever the
    series length; the main pass sees the same frames in the same order either way."""

    def __init__(self, budget: int) -> None:
        self.budget = int(budget)
        self.used = 0
        self.frames: dict[int, tuple[object, np.ndarray]] = {}

    def offer(self, row, frame: np.ndarray) -> None:
        if self.used + frame.nbytes <= self.budget:
            self.frames[int(row.order)] = (row, frame.copy())
            self.used += frame.nbytes

    def iter_frames(self, files: pd.DataFrame, root, errors: list | None = None):
        """``willis.dicom.frames.iter_frames(files, root, errors, reuse=True)``, the kept frames held here not decoded."""
        kept = files[files["keep"]].sort_values("order")
        rest = kept[~kept["order"].isin(list(self.frames))]
        decoded = iter_frames(rest, root, errors=errors, reuse=True)
        pending = next(decoded, None)
        for order in kept["order"].to_numpy():
            o = int(order)
            if o in self.frames:
                yield self.frames[o]
            elif pending is not None and int(pending[0].order) == o:
                yield pending
                pending = next(decoded, None)
            # else: that frame's file failed to decode (in ``errors``)


def sample_frames(files: pd.DataFrame, geom: SeriesGeometry, step_mm: float) -> pd.DataFrame:
    """The kept rows of ``files`` the locate pass reads: greedy, at least ``step_mm`` apart along the normal."""
    kept = files[files["keep"]].sort_values("order")
    normal = geom.normal
    pos = np.array([np.dot(np.asarray(list(p), float), normal) for p in kept["ipp"]])
    order = np.argsort(pos, kind="stable")
    take = [order[0]]
    for k in range(1, len(order)):
        nxt = pos[order[k + 1]] if k + 1 < len(order) else np.inf
        if nxt - pos[take[-1]] > step_mm + 1e-6:      # skipping this one would leave a gap > step
            take.append(order[k])
    return kept.iloc[sorted(take)]


def scanned_box(geom: SeriesGeometry, files: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(lo (3,), hi (3,)) LPS mm spanned by the pixel centres of every kept frame's corners."""
    kept = files[files["keep"]]
    ipps = np.array([list(p) for p in kept["ipp"]], dtype=np.float64)            # (n, 3)
    span = np.array([[0, 0], [0, geom.cols - 1], [geom.rows - 1, 0], [geom.rows - 1, geom.cols - 1]], float)
    corners = ipps[:, None, :] + span[None, :, 0:1] * geom.d_row * geom.col_cos + span[None, :, 1:2] * geom.d_col * geom.row_cos
    flat = corners.reshape(-1, 3)
    return flat.min(axis=0), flat.max(axis=0)


def locate_pass(files: pd.DataFrame, root, geom: SeriesGeometry, family: str, locate_mm: float,
                bone_hu: float, bone_dilate_mm: float, errors: list | None = None,
                keep: "FrameCache | None" = None) -> LocateGrid:
    """Read the sampled frames once and fill the locate grid (see the module docstring).

    ``keep``: the decoded frames are offered to it (the main pass then reads them from memory)."""
    sampled = sample_frames(files, geom, locate_mm)
    lo, hi = scanned_box(geom, files)
    cell = max(locate_mm, float(np.max(hi - lo)) / LOCATE_MAX_CELLS)
    lo = lo - cell / 2                                   # pixel centres on the edge land inside cell 0
    n = np.maximum(1, np.ceil((hi - lo) / cell + 0.5)).astype(np.int64)
    pitch = np.full(3, cell)
    size = int(np.prod(n))
    f_i, f_j = (max(1, int(LOCATE_PIXEL_MM // d)) for d in (geom.d_row, geom.d_col))
    placer = Placer(geom.pixel_offsets(f_i, f_j), lo, pitch, n)
    ct = family == "ct"
    count = np.zeros(size + 1, np.float32)               # + 1: the trash slot of scatter
    total = np.zeros(size + 1, np.float64)
    vmax = np.full(size + 1, -np.inf, np.float32)
    bone = np.zeros(size + 1, np.float32) if ct else None
    dark = None if ct else np.zeros(size + 1, np.float32)
    bright = None if ct else np.zeros(size + 1, np.float32)
    pct = None if ct else PercentileSample(PercentileSample.stride_for(len(sampled), geom.rows, geom.cols))
    mm_i, mm_j = geom.d_row * f_i, geom.d_col * f_j
    dilate = tuple(max(1, round(bone_dilate_mm / m)) if bone_dilate_mm > 0 else 0 for m in (mm_i, mm_j))
    opening = tuple(int(OPEN_MM // m) for m in (mm_i, mm_j))
    top_hat = tuple(max(3, int(round(LOCATE_TOPHAT_MM / m)) | 1) for m in (mm_i, mm_j))
    frames = 0
    thr = np.float32(bone_hu)
    sup = None
    for row, frame in iter_frames(sampled, root, errors=errors, reuse=True):
        if keep is not None:
            keep.offer(row, frame)
        p = pool_max(pool_max(frame, f_i, 0), f_j, 1)                 # (g_i, g_j), frame orientation
        cells, valid = placer.cells(row.ipp)
        idx = np.where(valid, (cells[2] * n[1] + cells[1]) * n[0] + cells[0], size).ravel()
        v = np.ascontiguousarray(p).ravel()
        # np.add.at / np.maximum.at, compiled (kernels): the same sums in the same order. The cell
        # mean is of block means, not of the maxima (``pool_mean``: noise-free of the pixel size)
        scatter_count(count, idx)
        scatter_add(total, idx, np.ascontiguousarray(pool_mean(pool_mean(frame, f_i, 0), f_j, 1)).ravel().astype(np.float64))
        if ct:
            if sup is None or sup.shape != p.shape:
                sup = np.empty(p.shape, np.float32)
            scatter_max(vmax, idx, suppress_bone(p, bone_hu, dilate, opening, out=sup).ravel())  # type: ignore[arg-type]
            scatter_above(bone, idx, v, thr)
        else:
            scatter_max(vmax, idx, v)
            pc = np.ascontiguousarray(p)
            th = np.empty(pc.shape, np.float32)
            tophat_into(pc, top_hat[0], top_hat[1], True, th)          # grey_closing(p) - p
            scatter_max(dark, idx, th.ravel())
            tophat_into(pc, top_hat[0], top_hat[1], False, th)         # p - grey_opening(p)
            scatter_max(bright, idx, th.ravel())
            pct.add(frame)                                              # type: ignore[union-attr]
        frames += 1
    shape = (int(n[2]), int(n[1]), int(n[0]))
    grid = lambda a: None if a is None else a[:-1].reshape(shape)     # noqa: E731  (drop the trash slot)
    c = grid(count)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(c > 0, grid(total) / np.maximum(c, 1), -np.inf).astype(np.float32)
        bone_f = None if bone is None else np.where(c > 0, grid(bone) / np.maximum(c, 1), -np.inf).astype(np.float32)
    dark_g, bright_g = grid(dark), grid(bright)
    for a in (dark_g, bright_g):
        if a is not None:
            a[c == 0] = -np.inf
    vmax_g = grid(vmax)
    axis = 2 - geom.a_n                                   # (z, y, x) array axis of the slice normal
    for a in (mean, vmax_g, bone_f, dark_g, bright_g):
        if a is not None:
            fill_gaps(a, axis)
    mean[~np.isfinite(mean)] = np.nan
    return LocateGrid(lo, pitch, n, mean, vmax_g, bone_f, dark_g, bright_g, frames, pct)
