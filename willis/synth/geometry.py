"""Acquisition geometry in LPS patient millimetres: where every voxel of a synthetic series sits.

A series is a stack of ``n_slices`` parallel slices of ``rows x cols`` pixels. DICOM conventions:

* ``row_cosine`` (first ImageOrientationPatient triplet) is the direction of increasing column index j;
* ``col_cosine`` (second triplet) is the direction of increasing row index i;
* ``PixelSpacing = (between rows, between columns)``, i.e. (step along ``col_cosine``, step along ``row_cosine``);
* slice k sits at ``origin + k * slice_spacing * normal`` with ``normal = row_cosine x col_cosine``.

So voxel (k, i, j) is at ``origin + k*ss*normal + i*ps[0]*col_cosine + j*ps[1]*row_cosine``.

    >>> g = geometry_for("axial", (0, 0, 0), fov_mm=200, n_slices=40, matrix=128, slice_spacing=1.0)
    >>> vol = sample_world(lambda x, y, z: x**2 + y**2 + z**2 < 50**2, g)   # (40, 128, 128)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

Plane = Literal["axial", "coronal", "sagittal"]

# Standard DICOM orientations (row_cosine, col_cosine) for the three canonical planes.
PLANE_COSINES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),      # columns -> patient left, rows -> posterior
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),   # columns -> left, rows -> inferior
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),  # columns -> posterior, rows -> inferior
}


@dataclass(frozen=True)
class Geometry:
    """Acquisition geometry in LPS patient mm (see the module docstring for the conventions)."""

    row_cosine: tuple[float, float, float]
    col_cosine: tuple[float, float, float]
    pixel_spacing: tuple[float, float]   # (between rows, between columns) = DICOM PixelSpacing
    slice_spacing: float
    origin: tuple[float, float, float]   # ImagePositionPatient of slice 0
    shape: tuple[int, int, int]          # (n_slices, rows, cols)

    @property
    def normal(self) -> np.ndarray:
        r, c = self.row_cosine, self.col_cosine   # r x c, written out: np.cross is slow on 3-vectors
        return np.array([r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0]])

    def affine(self) -> np.ndarray:
        """4x4 matrix mapping homogeneous voxel indices (k, i, j, 1) to LPS mm (x, y, z, 1)."""
        a = np.eye(4)
        a[:3, 0] = self.normal * self.slice_spacing
        a[:3, 1] = np.asarray(self.col_cosine) * self.pixel_spacing[0]
        a[:3, 2] = np.asarray(self.row_cosine) * self.pixel_spacing[1]
        a[:3, 3] = self.origin
        return a

    def voxel_to_patient(self, k, i, j) -> np.ndarray:
        """LPS mm of voxel indices (scalars or broadcastable arrays) -> (..., 3)."""
        kij = np.stack(np.broadcast_arrays(np.asarray(k, float), np.asarray(i, float), np.asarray(j, float)), -1)
        a = self.affine()
        return kij @ a[:3, :3].T + a[:3, 3]

    def patient_to_voxel(self, xyz) -> np.ndarray:
        """Fractional voxel indices (..., 3) as (k, i, j) of LPS points (..., 3)."""
        inv = np.linalg.inv(self.affine())
        xyz = np.asarray(xyz, float)
        return xyz @ inv[:3, :3].T + inv[:3, 3]

    def slice_position(self, k: int) -> tuple[float, float, float]:
        """ImagePositionPatient of slice k (the centre of its first transmitted pixel)."""
        return tuple(float(v) for v in np.asarray(self.origin) + k * self.slice_spacing * self.normal)

    def slice_coords(self, k: int, i0: int = 0, i1: int | None = None, j0: int = 0, j1: int | None = None):
        """LPS coordinates (x, y, z), each float32 (i1-i0, j1-j0), of pixels [i0:i1, j0:j1] of slice k."""
        _, rows, cols = self.shape
        i = np.arange(i0, rows if i1 is None else i1, dtype=np.float32)
        j = np.arange(j0, cols if j1 is None else j1, dtype=np.float32)
        p0 = np.asarray(self.slice_position(k), np.float32)
        ci = np.asarray(self.col_cosine, np.float32) * np.float32(self.pixel_spacing[0])
        rj = np.asarray(self.row_cosine, np.float32) * np.float32(self.pixel_spacing[1])
        # (I, 1) * scalar + (1, J) * scalar -> (I, J) per axis; float32 keeps memory small
        return tuple(p0[a] + i[:, None] * ci[a] + j[None, :] * rj[a] for a in range(3))


def geometry_for(
    plane: Plane,
    center_lps,
    fov_mm: float | tuple[float, float],
    n_slices: int,
    matrix: int | tuple[int, int],
    slice_spacing: float,
) -> Geometry:
    """A geometry of ``n_slices`` ``plane`` slices centred on ``center_lps``.

    ``fov_mm`` and ``matrix`` are either one value (square) or (rows, cols); pixel spacing is fov / matrix.
    """
    if plane not in PLANE_COSINES:
        raise ValueError(f"unknown plane {plane!r}; expected one of {list(PLANE_COSINES)}")
    rows, cols = (matrix, matrix) if isinstance(matrix, int) else matrix
    fov_r, fov_c = (fov_mm, fov_mm) if np.isscalar(fov_mm) else fov_mm
    ps = (float(fov_r) / rows, float(fov_c) / cols)
    r, c = (np.asarray(v) for v in PLANE_COSINES[plane])
    n = np.cross(r, c)
    center = np.asarray(center_lps, float)
    origin = center - (n_slices - 1) / 2 * slice_spacing * n - (rows - 1) / 2 * ps[0] * c - (cols - 1) / 2 * ps[1] * r
    return Geometry(
        row_cosine=tuple(float(v) for v in r),
        col_cosine=tuple(float(v) for v in c),
        pixel_spacing=ps,
        slice_spacing=float(slice_spacing),
        origin=tuple(float(v) for v in origin),
        shape=(int(n_slices), int(rows), int(cols)),
    )


def sample_world(fn: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray], geom: Geometry) -> np.ndarray:
    """Evaluate ``fn(x, y, z)`` (LPS mm, float32 (rows, cols) arrays) on every slice -> (n_slices, rows, cols) float32.

    The same ``fn`` acquired with an axial, coronal or sagittal ``geom`` gives the same object in
    patient space: the tests use this to compare orientations.
    """
    out = np.empty(geom.shape, np.float32)
    for k in range(geom.shape[0]):
        out[k] = fn(*geom.slice_coords(k))
    return out
