"""Paint analytic primitives (ellipsoids, tubes) into a volume acquired with any ``Geometry``.

Each primitive is evaluated only inside its own bounding box, mapped to voxel indices through the
geometry's inverse affine, in chunks of slices (float32, at most ``CHUNK_VOXELS`` voxels at once):
never a whole-volume coordinate grid. Painting is back-to-front ("painter's algorithm"):
``vol += alpha * (value - vol)`` with a soft edge ``alpha = clip(0.5 - signed_distance / voxel_mm, 0, 1)``,
which gives sub-voxel vessels a partial-volume intensity instead of aliasing them away.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from willis.synth.geometry import Geometry

CHUNK_VOXELS = 1 << 20  # ~1 M voxels per evaluated block: 3 float32 coordinate arrays = 12 MB


def _affine_of_index(m: np.ndarray, kk, ii, jj) -> list[np.ndarray]:
    """Rows of the (3, 4) map ``m`` applied to index grids (nk,1,1), (1,ni,1), (1,1,nj) -> 3 x (nk, ni, nj).

    Patient coordinates, and any frame rigidly attached to them, are affine in (k, i, j): summing the
    small broadcast terms first costs one full-size pass per coordinate.
    """
    return [(m[a, 0] * kk + m[a, 3] + m[a, 1] * ii) + m[a, 2] * jj for a in range(3)]


@dataclass(frozen=True)
class Ellipsoid:
    """A solid ellipsoid; ``layers`` paints nested shells of constant thickness in one evaluation."""

    center: np.ndarray          # (3,) LPS mm
    radii: np.ndarray           # (3,) mm, along the columns of ``axes``
    tissue: str
    axes: np.ndarray | None = None  # (3, 3) orthonormal columns; None = patient axes
    inner: tuple[tuple[float, str], ...] = ()  # (depth mm below the surface, tissue) of nested layers

    @property
    def layers(self) -> tuple[tuple[float, str], ...]:
        return ((0.0, self.tissue),) + self.inner

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        axes = np.eye(3) if self.axes is None else self.axes
        half = np.abs(axes) @ np.asarray(self.radii, float)       # (3,) half extents of the rotated box
        return self.center - half, self.center + half

    def signed_distance(self, index_to_patient: np.ndarray, kk, ii, jj) -> np.ndarray:
        axes = np.eye(3) if self.axes is None else np.asarray(self.axes, float)
        # (3, 4): index -> local frame scaled by 1/radii, so the surface is |s| = 1
        local = axes.T @ np.column_stack([index_to_patient[:3, :3], index_to_patient[:3, 3] - self.center])
        s = _affine_of_index((local / np.asarray(self.radii, float)[:, None]).astype(np.float32), kk, ii, jj)
        q2 = s[0] * s[0] + s[1] * s[1] + s[2] * s[2]
        r2 = sum((s[a] * np.float32(self.radii[a])) ** 2 for a in range(3))
        # exact along rays from the centre: |p - c| minus the distance to the surface on that ray
        q = np.sqrt(np.maximum(q2, np.float32(1e-12)))
        return np.sqrt(r2) * (1 - 1 / q)


@dataclass(frozen=True)
class Capsule:
    """A segment swept by a sphere; with ``radius_b`` a round cone (radius ``radius`` at a, ``radius_b`` at b).

    The cone's distance is the capsule's with the radius interpolated along the segment: exact for a
    capsule, close for the gentle tapers used here (infundibula).
    """

    a: np.ndarray               # (3,) start, LPS mm
    b: np.ndarray               # (3,) end
    radius: float
    tissue: str
    radius_b: float | None = None

    @property
    def layers(self) -> tuple[tuple[float, str], ...]:
        return ((0.0, self.tissue),)

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        r = max(self.radius, self.radius_b or 0.0)
        return np.minimum(self.a, self.b) - r, np.maximum(self.a, self.b) + r

    def signed_distance(self, index_to_patient: np.ndarray, kk, ii, jj) -> np.ndarray:
        ab = (self.b - self.a).astype(np.float32)
        m = np.column_stack([index_to_patient[:3, :3], index_to_patient[:3, 3] - self.a]).astype(np.float32)
        px, py, pz = _affine_of_index(m, kk, ii, jj)                 # p - a
        t = np.clip((px * ab[0] + py * ab[1] + pz * ab[2]) / max(float(ab @ ab), 1e-9), 0, 1)
        dx, dy, dz = px - t * ab[0], py - t * ab[1], pz - t * ab[2]
        d = np.sqrt(dx * dx + dy * dy + dz * dz)
        if self.radius_b is None:
            return d - np.float32(self.radius)
        return d - (np.float32(self.radius) + t * np.float32(self.radius_b - self.radius))


def tube(points: np.ndarray, radius: float, tissue: str) -> list[Capsule]:
    """A polyline (m, 3) as m-1 capsules (they overlap at the joints, so the tube stays closed)."""
    return [Capsule(points[i], points[i + 1], radius, tissue) for i in range(len(points) - 1)]


def sphere(center, radius: float, tissue: str) -> Ellipsoid:
    return Ellipsoid(np.asarray(center, float), np.full(3, float(radius)), tissue)


def _voxel_box(inverse: np.ndarray, shape, lo: np.ndarray, hi: np.ndarray, margin: float):
    """Index ranges (k0, i0, j0), (k1, i1, j1) covering the world box [lo, hi] grown by ``margin`` mm.

    ``inverse`` is the geometry's inverse affine (4, 4); None when the box misses the volume.
    """
    lo, hi = lo - margin, hi + margin
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    kij = corners @ inverse[:3, :3].T + inverse[:3, 3]            # (8, 3)
    start = np.floor(kij.min(0)).astype(int)
    stop = np.ceil(kij.max(0)).astype(int) + 1
    start = np.maximum(start, 0)
    stop = np.minimum(stop, shape)
    if np.any(stop <= start):
        return None
    return start, stop


def paint(vol: np.ndarray, geom: Geometry, primitives, values: dict[str, float]) -> None:
    """Paint ``primitives`` in order into ``vol`` (n_slices, rows, cols), in place."""
    affine = geom.affine()
    inverse = np.linalg.inv(affine)
    voxel_mm = float(np.mean([geom.slice_spacing, *geom.pixel_spacing]))
    inv_w = np.float32(1 / voxel_mm)
    for prim in primitives:
        box = _voxel_box(inverse, geom.shape, *prim.bbox(), margin=voxel_mm)
        if box is None:
            continue
        (k0, i0, j0), (k1, i1, j1) = box
        ii = np.arange(i0, i1, dtype=np.float32)[None, :, None]
        jj = np.arange(j0, j1, dtype=np.float32)[None, None, :]
        step = max(1, CHUNK_VOXELS // ((i1 - i0) * (j1 - j0)))
        for c0 in range(k0, k1, step):
            kk = np.arange(c0, min(c0 + step, k1), dtype=np.float32)[:, None, None]
            sd = prim.signed_distance(affine, kk, ii, jj)           # (nk, ni, nj) mm, < 0 inside
            block = vol[c0:c0 + len(kk), i0:i1, j0:j1]
            for depth, tissue in prim.layers:                        # outer layer first
                alpha = np.clip(np.float32(0.5) - (sd + np.float32(depth)) * inv_w, 0, 1)
                block += alpha * (np.float32(values[tissue]) - block)
