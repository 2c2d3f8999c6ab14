"""``project_series``: two streaming passes over a series' sorted frames -> its ``Projection``.

1. **locate** (``locate``, ``cow``): frames about ``project.locate_mm`` apart (1 in ~8 of a 0.5 mm
   CTA) -> a coarse 3-D evidence grid -> the fine box around the circle of Willis; for MR also the
   exact percentile sample every MR window comes from.
2. **main**: every kept frame -> the coarse accumulators (``accumulate``: tri-planar MIPs and
   axial slab bins) and, for the frames whose plane cuts the fine box, the fine accumulators
   (``fine``: thin slabs on three axes at ``project.fine_mm_per_px``).

Memory: one decoded frame and the bounded accumulators (``project.grid``, ``project.slab_bins``,
the fine box, the locate grid), plus the locate pass's frames up to ``LOCATE_CACHE_BYTES``, never
the volume; flat in the number of slices. Cost: one decode of every frame (the locate pass's
sample is decoded once: its frames are kept for the main pass, within the budget; beyond it they
are decoded again) and the per-slice work of the compiled kernels (``kernels``;
benchmarks/bench_project.py). Every decode goes
through ``willis.dicom.frames.iter_frames`` (all transfer syntaxes, Enhanced multi-frame), so
every encoding of a phantom gives the same projection.

    >>> proj = project_series(series_row, files_of_series, "data/synthetic", params.project, "ct")
    >>> proj.mip.shape, proj.instances.shape, proj.fine.shape   # (3, C, S, S), (K, C, S, S), (3, K_f, C_f, F, F) uint8
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from willis.dicom.frames import iter_frames
from willis.params.project import ProjectParams
from willis.projections.accumulate import Accumulated, Accumulator
from willis.projections.cow import locate_cow
from willis.projections.fine import FineAccumulator, fine_accumulator
from willis.projections.finebox import FineBox, fine_dims
from willis.projections.geometry import SeriesGeometry, series_geometry
from willis.projections.locate import FrameCache, LocateGrid, locate_pass, scanned_box
from willis.projections.render import render
from willis.projections.roi import find_roi
from willis.projections.store import Projection
from willis.projections.windows import channel_names, fine_windows, series_windows

log = logging.getLogger(__name__)

LOCATE_CACHE_BYTES = 16 << 20   # the locate pass's frames kept for the main pass (a thick-slice series: all of them)


class ProjectionError(RuntimeError):
    """A series that cannot be projected; the message names the series and the reason."""


def _get(row: Any, key: str, default: Any = None) -> Any:
    try:
        value = row[key]
    except (KeyError, IndexError, TypeError):
        value = getattr(row, key, default)
    return default if value is None else value


def accumulate_series(files: pd.DataFrame, root: str | Path, params: ProjectParams, family: str, uid: str = "?",
                      fine: FineAccumulator | None = None, geom: SeriesGeometry | None = None,
                      cache: FrameCache | None = None) -> Accumulated:
    """The main pass (tests compare its accumulators with np.max over the loaded volume); feeds ``fine`` too.

    ``cache``: frames the locate pass kept (read from it, not decoded again)."""
    geom = geom or series_geometry(files, params.grid, uid)
    acc = Accumulator(geom, params.slab_bins, family, params.bone_hu, params.bone_dilate_mm)
    errors: list = []
    frames = cache.iter_frames(files, root, errors) if cache is not None else iter_frames(files, root, errors=errors, reuse=True)
    for row, frame in frames:
        acc.add(int(row.order), frame, row.ipp)
        if fine is not None:
            fine.add(int(row.order), frame, row.ipp)
    result = acc.result()
    result.skipped = [str(e) for e in errors]
    if result.n_frames == 0:
        raise ProjectionError(f"series {uid}: no frame decoded ({'; '.join(result.skipped[:3]) or 'no kept frames'})")
    return result


def locate(files: pd.DataFrame, root: str | Path, params: ProjectParams, family: str, modality: str,
           geom: SeriesGeometry, uid: str = "?", cache: FrameCache | None = None) -> tuple[LocateGrid, FineBox, dict]:
    """The locate pass and the fine box: (grid, box, the box's attrs: flag and evidence)."""
    errors: list = []
    grid = locate_pass(files, root, geom, family, params.locate_mm, params.bone_hu, params.bone_dilate_mm, errors, cache)
    if grid.frames == 0:   # the main pass would decode nothing either (its skips are reported from there)
        raise ProjectionError(f"series {uid}: no frame decoded ({'; '.join(str(e) for e in errors[:3]) or 'no kept frames'})")
    found = locate_cow(grid, family, modality, params.bone_hu)
    size, slabs = fine_dims(params.fine_mm_per_px, params.fine_box_mm, params.fine_slab_mm)
    centre = place_box(np.asarray(found.centre), size * params.fine_mm_per_px, *scanned_box(geom, files))
    box = FineBox(tuple(float(c) for c in centre), params.fine_mm_per_px, size, slabs)
    info = {**found.info, "found_mm": list(found.centre), "moved_into_scan_mm": (centre - np.asarray(found.centre)).tolist()}
    return grid, box, {"flag": found.flag, "locate": info}


def place_box(centre: np.ndarray, side: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The box centre moved (per axis, as little as possible) so the box spends no length outside
    the scanned range ``[lo, hi]`` that it could spend inside: a scan shorter than the box lies
    wholly inside it, a longer one holds the whole box."""
    a, b = lo + side / 2, hi - side / 2
    return np.clip(centre, np.minimum(a, b), np.maximum(a, b))


def project_series(series_row: Any, files: pd.DataFrame, root: str | Path, params: ProjectParams, family: str) -> Projection:
    """Project one series (``series_row``: a row of series.parquet; ``files``: its rows of files.parquet)."""
    uid = str(_get(series_row, "SeriesInstanceUID", "?"))
    modality = str(_get(series_row, "Modality", ""))
    try:
        geom = series_geometry(files, params.grid, uid)
        cache = FrameCache(LOCATE_CACHE_BYTES)
        grid, box, where = locate(files, root, params, family, modality, geom, uid, cache)
        fwin = fine_windows(family, grid.pct)
        fine = fine_accumulator(geom, files, box, family, fwin, params)
        acc = accumulate_series(files, root, params, family, uid, fine=fine, geom=geom, cache=cache)
        del cache
        acc.pct = grid.pct
        roi = find_roi(acc, family, params.size, params.roi_z_mm, params.roi_xy_mm, params.roi_margin_mm)
        windows = series_windows(family, acc.pct)
        mip, inst, inst_z, ranges = render(acc, roi, windows, params.size, params.instances, params.instance_mode,
                                           params.vesselness, family)
        fine_views = fine.render()
    except ProjectionError:
        raise
    except Exception as e:  # geometry, decode or numeric failure: name the series, keep the cause
        msg = str(e) if str(e).startswith(f"series {uid}") else f"series {uid}: {type(e).__name__}: {e}"
        raise ProjectionError(msg) from e
    g = acc.geom
    attrs = {
        "modality": modality,
        "plane": g.plane,
        "oblique": g.oblique,
        "source": f"series/{uid}",
        "n_frames": acc.n_frames,
        "skipped_frames": acc.skipped,
        "spacing_mm": list(g.spacing_mm),
        "grid": [g.axes[a].g for a in (0, 1, 2)],
        "roi_mm": [list(b) for b in roi.box],
        "roi_flag": roi.flag,
        "centre_mm": list(roi.centre),
        "mm_per_px": roi.mm_per_px,
        "size": params.size,
        "instance_mode": params.instance_mode,
        "instance_ranges_mm": ranges.tolist(),
        "channels": channel_names(family, params.vesselness),
        "windows": [_window_attrs(w) for w in windows],
        "percentiles": grid.pct.summary() if grid.pct is not None else None,
        "fine": {**box.attrs(), **where, "windows": [_window_attrs(w) for w in fwin], "frames": fine.frames},
    }
    if acc.skipped:
        log.warning("series %s: %d frame(s) skipped: %s", uid, len(acc.skipped), acc.skipped[0])
    return Projection(uid=uid, mip=mip, instances=inst, instance_z=inst_z, attrs=attrs, fine=fine_views)


def _window_attrs(w) -> dict:
    return {"name": w.name, "lo": w.lo, "hi": w.hi, "gamma": w.gamma, "source": w.source}
