"""Localizer points in every view: where each annotated aneurysm lands in a series' projections.

Built from ``localizers.parquet`` (LPS points) and the store's per-series geometry
(``willis.projections.views.patient_to_view``) each time ``train`` or ``evaluate`` needs them;
not a file. The layout, float32 ``(N, P, 8)``, padded rows ``label = -1``::

    [label, instance, ax_row, ax_col, co_row, co_col, sa_row, sa_col]

``label`` is the location's index in ``willis.labels.LABELS``; ``instance`` the axial slab that
holds the point (-1: none); the six coordinates are *normalised* image coordinates
``(pixel + 0.5) / S`` in [0, 1) for a point inside the image (pixel centres at integers, as in
``willis.projections.views``), so targets can be drawn at any map resolution. The heat-map
targets and losses built on them are ``willis.train.heatmap``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from willis.labels import LABELS
from willis.projections.views import VIEWS, patient_to_view

N_COLS = 8
LABEL, INSTANCE = 0, 1
AX, CO, SA = slice(2, 4), slice(4, 6), slice(6, 8)  # (row, col) of each view
VIEW_SLICES = (AX, CO, SA)                            # in VIEWS order: axial, coronal, sagittal
LOCALIZER_INPUTS = ("SeriesInstanceUID", "location", "patient", "found")  # localizers.parquet columns read


def localizer_targets(uids: list[str], series_attrs: dict, loc: pd.DataFrame, k: int,
                      skipped_points: dict[str, str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per series: the (N, K) share of its annotated aneurysms per axial instance, whether it has
    one (N,), and the points (N, P, 8) in normalised view coordinates (module docstring).

    ``series_attrs`` is the store's ``attrs["series"]``; a localizer without a usable point, or
    whose z is outside every slab, is named in ``skipped_points`` ("uid:location" -> why)."""
    target = np.zeros((len(uids), k), dtype=np.float32)
    row_of = {u: i for i, u in enumerate(uids)}
    loc = loc[loc["SeriesInstanceUID"].isin(row_of)]
    per_series: dict[int, list[list[float]]] = {}
    for uid, point, found, where in zip(loc["SeriesInstanceUID"], loc["patient"], loc["found"],
                                        loc["location"]):
        p = np.asarray(point, dtype=float)
        if not bool(found) or p.shape != (3,) or not np.isfinite(p).all():
            skipped_points[f"{uid}:{where}"] = "localizer not found in the series or no patient position"
            continue
        if where not in LABELS:
            skipped_points[f"{uid}:{where}"] = f"location {where!r} is not a label column"
            continue
        attrs = series_attrs[uid]
        v = patient_to_view(p, attrs)
        s = float(attrs["size"])
        inst = v["instance"]
        coords = [(c + 0.5) / s for view in VIEWS for c in v[view]]  # row, col per view, in [0, 1)
        per_series.setdefault(row_of[uid], []).append([LABELS.index(where), -1 if inst is None else inst,
                                                       *coords])
        if inst is None:  # outside the ROI's slabs (cropped away): no instance to point at
            skipped_points[f"{uid}:{where}"] = "localizer z outside every instance slab"
            continue
        target[row_of[uid], inst] += 1.0
    mask = target.sum(axis=1) > 0
    target[mask] /= target[mask].sum(axis=1, keepdims=True)
    points = np.full((len(uids), max([len(v) for v in per_series.values()], default=1), N_COLS), -1.0,
                     dtype=np.float32)
    for i, rows in per_series.items():
        points[i, :len(rows)] = rows
    return target, mask, points


def visible(points: np.ndarray) -> np.ndarray:
    """(N, P, 8) -> (N, P, 3) bool: a real point (label >= 0) inside the image of each view."""
    rc = points[..., 2:].reshape(*points.shape[:-1], 3, 2)               # (N, P, view, row/col)
    return ((rc >= 0) & (rc < 1)).all(axis=-1) & (points[..., LABEL] >= 0)[..., None]


# ---------------------------------------------------------------- fine views (``fine_cnn``)

FINE_N_COLS = 10   # [label, then (slab, row, col) of the axial, coronal and sagittal fine views]


def fine_points(uids: list[str], series_attrs: dict, loc: pd.DataFrame, skipped_points: dict[str, str]) -> np.ndarray:
    """Localizers in the fine views: float32 (N, P, 10), padded rows ``label = -1``::

        [label, ax_slab, ax_row, ax_col, co_slab, co_row, co_col, sa_slab, sa_row, sa_col]

    ``row``/``col`` are continuous fine pixels (centres at integers, ``patient_to_fine``);
    ``slab`` is a continuous slab coordinate (slab k spans [k - 0.5, k + 0.5]; outside [-0.5,
    K - 0.5] the point is outside the box along that axis), so a point near a slab boundary can
    also target the neighbouring slab. ``series_attrs[uid]["fine"]`` is the store's geometry."""
    from willis.projections.views import patient_to_fine   # the fine mapping lives beside the coarse one

    row_of = {u: i for i, u in enumerate(uids)}
    loc = loc[loc["SeriesInstanceUID"].isin(row_of)]
    per_series: dict[int, list[list[float]]] = {}
    for uid, point, found, where in zip(loc["SeriesInstanceUID"], loc["patient"], loc["found"], loc["location"]):
        p = np.asarray(point, dtype=float)
        if not bool(found) or p.shape != (3,) or not np.isfinite(p).all() or where not in LABELS:
            skipped_points.setdefault(f"{uid}:{where}", "localizer not found, no patient position or unknown location")
            continue
        fine = series_attrs[uid]["fine"]
        mapped = patient_to_fine(p, series_attrs[uid])
        row = [float(LABELS.index(where))]
        for view, axis in zip(VIEWS, (2, 1, 0)):                   # slab axis of each view: z, y, x
            start, end = fine["slab_ranges_mm"][view][0]
            slab = (p[axis] - start) / (end - start) - 0.5          # equal contiguous slabs: linear in p
            _, r, c = mapped[view]
            row += [float(slab), float(r), float(c)]
        per_series.setdefault(row_of[uid], []).append(row)
        if any(v[0] is None for v in mapped.values()):
            skipped_points[f"{uid}:{where}"] = "localizer outside the fine box along some axis (no target there)"
    points = np.full((len(uids), max([len(v) for v in per_series.values()], default=1), FINE_N_COLS), -1.0,
                     dtype=np.float32)
    for i, rows in per_series.items():
        points[i, :len(rows)] = rows
    return points
