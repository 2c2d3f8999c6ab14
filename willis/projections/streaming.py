"""``project_series``: one streaming pass over a series' sorted frames -> its ``Projection``.

Memory: one decoded frame, its pooled copy and the accumulators (bounded by ``project.grid`` and
``project.slab_bins``, see ``accumulate.accumulator_bytes``), never the volume; flat in the number
of slices. Every decode goes through ``willis.dicom.frames.iter_frames`` (all transfer syntaxes,
Enhanced multi-frame), so every encoding of a phantom gives the same projection.

    >>> proj = project_series(series_row, files_of_series, "data/synthetic", params.project, "ct")
    >>> proj.mip.shape, proj.instances.shape      # (3, C, S, S), (K, C, S, S) uint8
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
from willis.projections.geometry import series_geometry
from willis.projections.render import render
from willis.projections.roi import find_roi
from willis.projections.store import Projection
from willis.projections.windows import channel_names, series_windows

log = logging.getLogger(__name__)


class ProjectionError(RuntimeError):
    """A series that cannot be projected; the message names the series and the reason."""


def _get(row: Any, key: str, default: Any = None) -> Any:
    try:
        value = row[key]
    except (KeyError, IndexError, TypeError):
        value = getattr(row, key, default)
    return default if value is None else value


def accumulate_series(files: pd.DataFrame, root: str | Path, params: ProjectParams, family: str, uid: str = "?") -> Accumulated:
    """The streaming pass alone (tests compare its accumulators with np.max over the loaded volume)."""
    geom = series_geometry(files, params.grid, uid)
    acc = Accumulator(geom, params.slab_bins, family, params.bone_hu, params.bone_dilate_mm)
    errors: list = []
    for row, frame in iter_frames(files, root, errors=errors):
        acc.add(int(row.order), frame, row.ipp)
    result = acc.result()
    result.skipped = [str(e) for e in errors]
    if result.n_frames == 0:
        raise ProjectionError(f"series {uid}: no frame decoded ({'; '.join(result.skipped[:3]) or 'no kept frames'})")
    return result


def project_series(series_row: Any, files: pd.DataFrame, root: str | Path, params: ProjectParams, family: str) -> Projection:
    """Project one series (``series_row``: a row of series.parquet; ``files``: its rows of files.parquet)."""
    uid = str(_get(series_row, "SeriesInstanceUID", "?"))
    try:
        acc = accumulate_series(files, root, params, family, uid)
        roi = find_roi(acc, family, params.size, params.roi_z_mm, params.roi_xy_mm, params.roi_margin_mm)
        windows = series_windows(family, acc.pct)
        mip, inst, inst_z, ranges = render(acc, roi, windows, params.size, params.instances, params.instance_mode,
                                           params.vesselness, family)
    except ProjectionError:
        raise
    except Exception as e:  # geometry, decode or numeric failure: name the series, keep the cause
        msg = str(e) if str(e).startswith(f"series {uid}") else f"series {uid}: {type(e).__name__}: {e}"
        raise ProjectionError(msg) from e
    g = acc.geom
    attrs = {
        "modality": str(_get(series_row, "Modality", "")),
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
        "windows": [{"name": w.name, "lo": w.lo, "hi": w.hi, "gamma": w.gamma, "source": w.source} for w in windows],
    }
    # contract placeholder (the fine pass lands in the next commits): an empty fine box at the ROI centre
    from willis.projections.finebox import FineBox, fine_dims
    from willis.projections.windows import fine_channel_names

    f, k = fine_dims(params.fine_mm_per_px, params.fine_box_mm, params.fine_slab_mm)
    box = FineBox(tuple(roi.centre), params.fine_mm_per_px, f, k)
    attrs["fine"] = {**box.attrs(), "flag": "fov", "locate": {}, "windows": [], "frames": 0}
    fine = np.zeros((3, k, len(fine_channel_names(family)), f, f), np.uint8)
    if acc.skipped:
        log.warning("series %s: %d frame(s) skipped: %s", uid, len(acc.skipped), acc.skipped[0])
    return Projection(uid=uid, mip=mip, instances=inst, instance_z=inst_z, attrs=attrs, fine=fine)
