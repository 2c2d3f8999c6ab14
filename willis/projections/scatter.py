"""Exact-position scatter: every pooled pixel of a frame into the cell of each binned view it lands in.

Used wherever a pixel's patient position is not implied by its slice (oblique / gantry-tilted
series in the coarse pass) and for the locate and fine passes (``locate``, ``fine``), whose grids
are not the slice grid. One regular grid per patient axis: cell ``k`` of axis ``a`` covers
``[lo[a] + k * pitch[a], lo[a] + (k + 1) * pitch[a])``.

A *binned view* projects the grid along one patient axis ``proj``, grouping the cells along it into
bins (``bins[c]`` in ``0 .. B-1``, or ``-1`` for a cell outside every bin) and keeps the other two
axes (``rows``, ``cols``) as an image: accumulator ``(B, g_rows, g_cols)``. Each accumulator is one
flat buffer with a trailing *trash* slot that receives every sample outside the grid or outside
every bin, so one ``np.maximum.at`` / ``np.add.at`` per view and frame does the whole update with
no boolean gather (numpy >= 2 runs ``ufunc.at`` on a 1-D index at ~1 ns per sample).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class BinnedView:
    proj: int               # LPS axis projected over
    rows: int               # LPS axis of the accumulator's rows (ascending)
    cols: int               # LPS axis of its columns (ascending)
    bins: np.ndarray        # (g_proj,) bin of each cell along ``proj`` (-1: in no bin)
    n_bins: int

    def shape(self, n: np.ndarray) -> tuple[int, int, int]:
        return (self.n_bins, int(n[self.rows]), int(n[self.cols]))


@dataclass
class Buffers:
    """Flat accumulators of one view, each ``prod(shape) + 1`` long (the last slot is trash)."""

    shape: tuple[int, int, int]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, name: str, fill: float) -> np.ndarray:
        self.arrays[name] = np.full(int(np.prod(self.shape)) + 1, fill, dtype=np.float32)
        return self.arrays[name]

    def view(self, name: str) -> np.ndarray:
        """(B, g_rows, g_cols) view of the buffer without its trash slot."""
        return self.arrays[name][:-1].reshape(self.shape)

    @property
    def trash(self) -> int:
        return int(np.prod(self.shape))


class Placer:
    """Grid cells of the pooled pixels of frames sharing one orientation and pixel grid.

    ``offsets``: (3, g_i, g_j) LPS offset (mm) of each pooled pixel centre from the frame's IPP
    (``SeriesGeometry.pixel_offsets``); ``lo``, ``pitch``, ``n``: the regular grid, each (3,).
    """

    def __init__(self, offsets: np.ndarray, lo, pitch, n) -> None:
        self.lo = np.asarray(lo, dtype=np.float64)
        self.pitch = np.asarray(pitch, dtype=np.float64)
        self.n = np.asarray(n, dtype=np.int64)
        self.scaled = offsets / self.pitch[:, None, None]          # (3, g_i, g_j) in cells

    def cells(self, ipp, rows: slice = slice(None), cols: slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
        """(cells (3, h, w) int64, valid (h, w) bool) of the pooled pixels ``[rows, cols]`` of a frame at ``ipp``."""
        shift = (np.asarray(ipp, dtype=np.float64) - self.lo) / self.pitch
        c = np.floor(self.scaled[:, rows, cols] + shift[:, None, None]).astype(np.int64)
        valid = ((c >= 0) & (c < self.n[:, None, None])).all(axis=0)
        return c, valid


def flat_index(view: BinnedView, cells: np.ndarray, valid: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Flat index of each sample into ``view``'s buffer (the trash slot where it lands in no cell/bin)."""
    g_r, g_c = int(n[view.rows]), int(n[view.cols])
    b = view.bins[np.clip(cells[view.proj], 0, len(view.bins) - 1)]
    ok = valid & (b >= 0)
    idx = (b * g_r + cells[view.rows]) * g_c + cells[view.cols]
    return np.where(ok, idx, view.n_bins * g_r * g_c).ravel()


def fill_gaps(a: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation, along ``axis``, of the -inf cells lying strictly between finite ones (in place).

    An oblique series scattered into a regular grid leaves cells between two slices empty where
    the slice gap exceeds the cell pitch; the axis-aligned path interpolates between slice cells
    the same way (``render.resample``). Cells beyond the first / last finite one stay -inf
    (outside the scanned range)."""
    moved = np.moveaxis(a, axis, -1)                    # a view: writes reach ``a``
    length = moved.shape[-1]
    finite = np.isfinite(moved)
    if finite.all() or length < 3:
        return a
    idx = np.arange(length)
    prev = np.maximum.accumulate(np.where(finite, idx, -1), axis=-1)
    nxt = np.flip(np.minimum.accumulate(np.flip(np.where(finite, idx, length), axis=-1), axis=-1), axis=-1)
    inner = ~finite & (prev >= 0) & (nxt < length)
    if not inner.any():
        return a
    p, q = np.clip(prev, 0, length - 1)[inner], np.clip(nxt, 0, length - 1)[inner]   # (m,) each
    lead = np.nonzero(inner)                                         # index tuple of the inner cells
    line = lead[:-1]
    vp, vq = moved[line + (p,)], moved[line + (q,)]
    w = (lead[-1] - p) / (q - p)
    moved[inner] = vp * (1 - w) + vq * w
    return a
