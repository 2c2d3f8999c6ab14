"""View geometry: where a patient-space point (LPS, mm) lands in each projected image.

Every projection of a series shares one isotropic pixel grid of ``S x S`` pixels of ``mm_per_px``
mm, centred on the series' ROI centre ``centre_mm = (cx, cy, cz)`` (LPS: x -> patient left,
y -> posterior, z -> superior). Views are in the radiological display convention:

====== ======================= ============================ ======================
view   rows (top -> bottom)     columns (left -> right)      projected over
====== ======================= ============================ ======================
axial  anterior -> posterior    patient right -> left        z (superior-inferior)
coronal superior -> inferior    patient right -> left        y (anterior-posterior)
sagittal superior -> inferior   anterior -> posterior        x (right-left)
====== ======================= ============================ ======================

Pixel ``(r, c)`` has its centre at integer coordinates, so a point maps to the continuous
``row = (coord - centre) / mm_per_px + S/2 - 0.5`` (rows of coronal/sagittal run against z).
Instances are axial thin slabs ordered **superior -> inferior** (instance 0 is at the skull top);
``instance_ranges_mm`` holds each one's ``[z_top, z_bottom]`` (mm; contiguous in ``slabs`` mode).

The fine views (``attrs["fine"]`` of a series, see ``willis.projections.finebox``) use the same
table and the same pixel formula with their own centre (``fine.centre_mm``), pixel size
(``fine.mm_per_px``) and size ``F``; each view is a stack of thin slabs along its projection axis:
axial slabs superior -> inferior, coronal anterior -> posterior, sagittal patient right -> left.
``patient_to_fine`` maps an LPS point to ``(slab, row, col)`` in each; ``fine_to_patient`` inverts it
(the point on the slab's mid-plane).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

VIEWS: tuple[str, ...] = ("axial", "coronal", "sagittal")
X, Y, Z = 0, 1, 2  # LPS axis numbers


def _pix(coord: float, centre: float, mm: float, size: int) -> float:
    return (coord - centre) / mm + size / 2.0 - 0.5


def patient_to_view(point_lps: Sequence[float], series_attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Map an LPS point (mm) to ``{"axial": (row, col), "coronal": ..., "sagittal": ..., "instance": k}``.

    Rows/cols are continuous pixel coordinates (may fall outside ``[0, S)`` when the point is
    outside the ROI); ``instance`` is the index of the axial slab holding the point's z, or
    ``None`` when z is outside every slab (the first match if ranges overlap). ``series_attrs`` is
    one entry of the store's ``attrs["series"]`` (keys ``centre_mm``, ``mm_per_px``, ``size``,
    ``instance_ranges_mm``).
    """
    x, y, z = (float(v) for v in point_lps)
    cx, cy, cz = (float(v) for v in series_attrs["centre_mm"])
    mm = float(series_attrs["mm_per_px"])
    s = int(series_attrs["size"])
    col_x = _pix(x, cx, mm, s)
    row_y = _pix(y, cy, mm, s)
    row_z = _pix(-z, -cz, mm, s)  # rows run superior -> inferior
    k = None
    for i, (top, bottom) in enumerate(series_attrs["instance_ranges_mm"]):  # (K, 2): z top, z bottom
        if bottom <= z <= top:
            k = i
            break
    return {
        "axial": (row_y, col_x),
        "coronal": (row_z, col_x),
        "sagittal": (row_z, row_y),
        "instance": k,
    }


def _slab(coord: float, ranges: Sequence[Sequence[float]]) -> int | None:
    """Index of the slab whose ``[start, end]`` (either order) holds ``coord``; None outside them all."""
    for i, (a, b) in enumerate(ranges):
        if min(a, b) <= coord <= max(a, b):
            return i
    return None


# view -> (slab axis, row axis, col axis); rows of coronal/sagittal run against z (superior on top)
FINE_AXES = {"axial": (Z, Y, X), "coronal": (Y, Z, X), "sagittal": (X, Z, Y)}


def patient_to_fine(point_lps: Sequence[float], series_attrs: Mapping[str, Any]) -> dict[str, tuple]:
    """Map an LPS point (mm) to ``{"axial": (slab, row, col), "coronal": ..., "sagittal": ...}`` in the fine views.

    ``row``/``col`` are continuous pixel coordinates (pixel centres at integers; outside ``[0, F)``
    when the point is outside the fine box); ``slab`` is the index of the slab holding the point
    along that view's projection axis, or ``None`` outside the box along it. ``series_attrs`` is one
    entry of the store's ``attrs["series"]`` (its ``"fine"`` dict: ``centre_mm``, ``mm_per_px``,
    ``size``, ``slab_ranges_mm``).
    """
    fine = series_attrs["fine"]
    p = [float(v) for v in point_lps]
    c = [float(v) for v in fine["centre_mm"]]
    mm, f = float(fine["mm_per_px"]), int(fine["size"])
    out = {}
    for view, (a_s, a_r, a_c) in FINE_AXES.items():
        sign_r = -1.0 if a_r == Z else 1.0
        row = _pix(sign_r * p[a_r], sign_r * c[a_r], mm, f)
        col = _pix(p[a_c], c[a_c], mm, f)
        out[view] = (_slab(p[a_s], fine["slab_ranges_mm"][view]), row, col)
    return out


def fine_to_patient(view: str, slab: int, row: float, col: float, series_attrs: Mapping[str, Any]) -> np.ndarray:
    """LPS point (mm) of pixel ``(row, col)`` of fine slab ``slab`` of ``view``, on the slab's mid-plane."""
    fine = series_attrs["fine"]
    c = np.asarray(fine["centre_mm"], dtype=float)
    mm, f = float(fine["mm_per_px"]), int(fine["size"])
    a_s, a_r, a_c = FINE_AXES[view]
    out = np.empty(3)
    start, end = fine["slab_ranges_mm"][view][int(slab)]
    out[a_s] = (start + end) / 2
    off_r = (row - f / 2.0 + 0.5) * mm
    out[a_r] = c[a_r] - off_r if a_r == Z else c[a_r] + off_r
    out[a_c] = c[a_c] + (col - f / 2.0 + 0.5) * mm
    return out


def pixel_to_lps(
    ipp: Sequence[float], orientation: Sequence[float], pixel_spacing: Sequence[float], x: float, y: float
) -> np.ndarray:
    """LPS point (mm) of pixel column ``x``, row ``y`` of a slice (as in ``train_localizers.csv``).

    ``orientation`` is ImageOrientationPatient (row cosine, then column cosine); ``pixel_spacing``
    is PixelSpacing ``[between rows, between columns]``. DICOM PS3.3 C.7.6.2.1.1.
    """
    ipp = np.asarray(ipp, dtype=float)
    row_cos = np.asarray(orientation[:3], dtype=float)  # direction of increasing column index
    col_cos = np.asarray(orientation[3:6], dtype=float)  # direction of increasing row index
    d_row, d_col = float(pixel_spacing[0]), float(pixel_spacing[1])
    return ipp + x * d_col * row_cos + y * d_row * col_cos
