"""The fine ROI: a cube around the circle of Willis, its pixel grid and its thin slabs on three axes.

A fine box is a cube of ``F x F x F`` cells of ``mm_per_px`` mm (``F = round(box_mm / mm_per_px)``)
centred on ``centre`` (LPS mm, chosen by ``willis.projections.locate``). Along each patient axis it
is cut into ``K = round(F * mm_per_px / slab_mm)`` contiguous slabs of equal thickness
``F * mm_per_px / K``; every slab is projected along that axis into one ``F x F`` image per
channel, in the display convention of ``willis.projections.views``. Slab order per view:

======== ============== ======================== ===================================
view     slabs along    slab 0 -> slab K-1       ``slab_ranges_mm`` entry (mm, LPS)
======== ============== ======================== ===================================
axial    z              superior -> inferior     ``[z_top, z_bottom]`` (descending)
coronal  y              anterior -> posterior    ``[y_anterior, y_posterior]`` (ascending)
sagittal x              patient right -> left    ``[x_right, x_left]`` (ascending)
======== ============== ======================== ===================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from willis.projections.views import VIEWS

FINE_SLAB_ORDER = {"axial": "superior_to_inferior", "coronal": "anterior_to_posterior", "sagittal": "right_to_left"}
SLAB_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}   # LPS axis each view's slabs are stacked along


def fine_dims(mm_per_px: float, box_mm: float, slab_mm: float) -> tuple[int, int]:
    """(F pixels per side, K slabs per axis) of the fine box."""
    f = max(1, int(round(box_mm / mm_per_px)))
    k = max(1, int(round(f * mm_per_px / slab_mm)))
    return f, k


@dataclass(frozen=True)
class FineBox:
    centre: tuple[float, float, float]   # LPS mm
    mm_per_px: float
    size: int                             # F
    slabs: int                            # K

    @property
    def side(self) -> float:
        return self.size * self.mm_per_px

    @property
    def slab_mm(self) -> float:
        return self.side / self.slabs

    @property
    def box(self) -> tuple[tuple[float, float], ...]:
        """((x0, x1), (y0, y1), (z0, z1)) LPS mm, each ascending."""
        h = self.side / 2
        return tuple((float(c - h), float(c + h)) for c in self.centre)

    def slab_edges(self, view: str) -> np.ndarray:
        """(K + 1,) slab boundaries along the view's slab axis, in slab order (axial descending)."""
        lo, hi = self.box[SLAB_AXIS[view]]
        edges = np.linspace(lo, hi, self.slabs + 1)
        return edges[::-1].copy() if view == "axial" else edges

    def slab_ranges(self) -> dict[str, list[list[float]]]:
        """{view: (K, 2) [start, end]} in slab order (see the module table)."""
        out = {}
        for v in VIEWS:
            e = self.slab_edges(v)
            out[v] = [[float(a), float(b)] for a, b in zip(e[:-1], e[1:])]
        return out

    def pixel_coords(self, axis: int) -> np.ndarray:
        """(F,) LPS mm of the pixel centres along ``axis``, ascending."""
        c = self.centre[axis]
        return c + (np.arange(self.size) + 0.5 - self.size / 2) * self.mm_per_px

    def attrs(self) -> dict:
        """The geometry part of a series' ``attrs["fine"]`` (see ``willis.projections.store``)."""
        return {
            "box_mm": [list(b) for b in self.box],
            "centre_mm": [float(c) for c in self.centre],
            "mm_per_px": float(self.mm_per_px),
            "size": int(self.size),
            "slabs": int(self.slabs),
            "slab_mm": float(self.slab_mm),
            "slab_ranges_mm": self.slab_ranges(),
        }
