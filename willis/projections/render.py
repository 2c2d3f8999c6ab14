"""From accumulators to the stored images: ROI crop, isotropic S x S resampling, instances, channels.

Each view is resampled from its pooled grid (ascending LPS coordinates per axis) onto the series'
S x S grid (``willis.projections.views``) with ``skimage.transform.warp`` (linear). Before that,
an axis whose cells are finer than the output pixel is max-pooled by the integer ratio, so thin
bright vessels survive the downsampling (an average would dim them). Channels are derived from the
resampled raw / bone-suppressed maxima (windows commute with max; see ``windows``).
"""

from __future__ import annotations

import numpy as np
from skimage.filters import sato
from skimage.transform import warp

from willis.projections.accumulate import Accumulated, Views
from willis.projections.geometry import X, Y, Z, AxisGrid, pool_max
from willis.projections.roi import Roi
from willis.projections.windows import HU_AIR, VESSELNESS, Window, apply_window, to_uint8

VESSEL_SIGMAS = (1.0, 2.0)   # pixels of the S x S image: arteries of ~2-6 px
TOPK_PERCENTILE = 99.9       # topk score of a z-bin: its brightest 0.1 % (vessels are a small fraction of a slice)


def _pooled_coords(axis: AxisGrid, f: int) -> np.ndarray:
    c = axis.coords
    if f == 1:
        return c
    g = -(-len(c) // f)
    padded = np.full(g * f, np.nan)
    padded[: len(c)] = c
    return np.nanmean(padded.reshape(g, f), axis=1)


def resample(src: np.ndarray, ap: AxisGrid, aq: AxisGrid, out_p: np.ndarray, out_q: np.ndarray, mm: float, fill: float) -> np.ndarray:
    """(g_p, g_q) accumulator -> (len(out_p), len(out_q)) float32 at LPS coordinates ``out_p`` x ``out_q``."""
    src = np.where(np.isfinite(src), src, np.float32(fill)).astype(np.float32)
    idx = []
    outside = []
    for axis, out, dim in ((ap, out_p, 0), (aq, out_q, 1)):
        cell = axis.step * axis.f
        f = max(1, int(mm // cell))              # anti-alias by max before linear interpolation
        src = pool_max(src, f, dim)
        coords = _pooled_coords(axis, f)
        half = cell * f / 2
        idx.append(np.interp(out, coords, np.arange(len(coords), dtype=np.float64)))
        outside.append((out < coords[0] - half) | (out > coords[-1] + half))
    grid = np.stack(np.meshgrid(idx[0], idx[1], indexing="ij"))  # (2, P, Q) row/col indices into src
    img = warp(src, grid, order=1, mode="edge", preserve_range=True).astype(np.float32)
    img[outside[0], :] = fill
    img[:, outside[1]] = fill
    return img


def _pixel_coords(centre: float, mm: float, size: int, descending: bool = False) -> np.ndarray:
    off = (np.arange(size) + 0.5 - size / 2) * mm
    return centre - off if descending else centre + off


def _channels(raw: np.ndarray, sup: np.ndarray | None, windows: list[Window], vesselness: bool) -> np.ndarray:
    """(..., S, S) maxima -> (..., C, S, S) float32 in [0, 1]."""
    chans = [apply_window(sup if (w.source == "suppressed" and sup is not None) else raw, w) for w in windows]
    if vesselness:
        base = chans[-1]  # the highlight channel is last among the windows
        v = np.stack([sato(im, sigmas=VESSEL_SIGMAS, black_ridges=False) for im in base.reshape(-1, *base.shape[-2:])])
        peak = v.reshape(len(v), -1).max(axis=1)[:, None, None]
        chans.append((v / np.where(peak > 0, peak, 1.0)).reshape(base.shape).astype(np.float32))
    return np.stack(chans, axis=-3)


def render(acc: Accumulated, roi: Roi, windows: list[Window], size: int, k: int, mode: str, vesselness: bool, family: str):
    """-> mip uint8 (3, C, S, S), instances uint8 (K, C, S, S), instance_z (K,), instance_ranges (K, 2)."""
    axes = acc.geom.axes
    fill = HU_AIR if family == "ct" else 0.0
    mm = roi.mm_per_px
    cx, cy, cz = roi.centre
    px, py = _pixel_coords(cx, mm, size), _pixel_coords(cy, mm, size)
    pz = _pixel_coords(cz, mm, size, descending=True)   # rows run superior -> inferior
    z0, z1 = roi.box[2]
    centre, _, _ = acc.bin_z()
    in_roi = np.nonzero((centre >= z0) & (centre <= z1))[0]
    if in_roi.size == 0:
        in_roi = np.array([int(np.argmin(np.abs(centre - cz)))])

    # instances: which slab bins make each one, superior -> inferior
    if mode == "slabs":
        edges = np.linspace(z1, z0, k + 1)
        groups = []
        for i in range(k):
            sel = np.nonzero((centre <= edges[i]) & (centre >= edges[i + 1]))[0]
            mid = (edges[i] + edges[i + 1]) / 2
            groups.append(sel if sel.size else np.array([int(np.argmin(np.abs(centre - mid)))]))
        inst_z = (edges[:-1] + edges[1:]) / 2
        ranges = np.stack([edges[:-1], edges[1:]], axis=1)
    else:  # topk: the K bins inside the ROI with the brightest vessels (TOPK_PERCENTILE of the highlight source)
        src = acc.suppressed if acc.suppressed is not None else acc.raw
        score = np.array([np.percentile(np.where(np.isfinite(src.slabs[b]), src.slabs[b], fill), TOPK_PERCENTILE) for b in in_roi])
        best = in_roi[np.argsort(-score, kind="stable")[:k]]
        best = np.resize(best, k)                       # fewer bins than K: repeat
        best = best[np.argsort(-centre[best], kind="stable")]
        groups = [np.array([b]) for b in best]
        inst_z = centre[best]
        _, lo, hi = acc.bin_z()
        ranges = np.stack([hi[best], lo[best]], axis=1)

    def views_of(v: Views) -> np.ndarray:
        axial = v.slabs[in_roi].max(axis=0)                                    # (g_y, g_x)
        out = [
            resample(axial, axes[Y], axes[X], py, px, mm, fill),               # rows y (anterior top), cols x (right left)
            resample(v.coronal, axes[Z], axes[X], pz, px, mm, fill),           # rows z (superior top), cols x
            resample(v.sagittal, axes[Z], axes[Y], pz, py, mm, fill),          # rows z, cols y (anterior left)
        ]
        inst = [resample(v.slabs[g].max(axis=0), axes[Y], axes[X], py, px, mm, fill) for g in groups]
        return np.stack(out + inst)                                            # (3 + K, S, S)

    raw = views_of(acc.raw)
    sup = views_of(acc.suppressed) if acc.suppressed is not None else None
    ch = to_uint8(_channels(raw, sup, windows, vesselness))                    # (3 + K, C, S, S)
    return ch[:3], ch[3:], inst_z.astype(np.float32), ranges


__all__ = ["VESSELNESS", "render", "resample"]
