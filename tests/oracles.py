"""Independent readers used as test oracles for real scanner DICOM (test-only; never imported by willis/).

* ``sitk_series(files)``: SimpleITK's ``ImageSeriesReader`` over files sorted by GDCM
  (``GetGDCMSeriesFileNames``) or one multi-frame file -> ``Volume`` (array, spacing, direction,
  origin; LPS, as ITK is);
* ``dcm2niix_volumes(folder, tmp)``: the ``dcm2niix`` binary (from its PyPI package) into a temp dir,
  each NIfTI read back with nibabel -> ``Volume`` with its voxel -> LPS affine;
* ``exact_reference(frames, grid)``: every pixel of every frame placed at its own LPS position from
  that frame's IPP / IOP / PixelSpacing (nothing resampled, no slice assumed parallel or evenly spaced),
  scatter-maxed into an axis-aligned LPS grid; ``Volume.scatter_max(grid)`` places an oracle's
  voxels into the same grid, so per-axis maxima of any two readers compare cell by cell.

Shapes: ``Volume.array`` is (k, j, i) = (slice, row, column) in the reader's own index order;
``Grid.shape`` is (nx, ny, nz) along L, P, S; a scatter-max grid is (nx, ny, nz) float64, NaN where
no voxel landed. Real fixtures: ``REAL_DICOM`` (``../shared/fixtures/real-dicom``), ``real_fixture(name)``
skips the test with a message when the folder is absent (CI may not have it); the environment
variable ``WILLIS_REAL_DICOM`` points elsewhere (a worktree outside the main checkout).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pytest

# ../shared relative to the project root; WILLIS_REAL_DICOM overrides it (e.g. from a git worktree elsewhere)
REAL_DICOM = Path(os.environ.get("WILLIS_REAL_DICOM")
                  or Path(__file__).resolve().parents[1].parent / "shared/fixtures/real-dicom")
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])   # NIfTI world is RAS, DICOM patient space is LPS


def real_fixture(name: str) -> Path:
    """``REAL_DICOM / name``, or skip: the real fixtures live outside the repository (shared/)."""
    path = REAL_DICOM / name
    if not path.is_dir():
        pytest.skip(f"real DICOM fixture {path} absent (it lives in ../shared/fixtures/real-dicom, "
                    "outside the repository; CI may not have it)")
    return path


@dataclass
class Grid:
    """Axis-aligned LPS grid: cell (a, b, c) covers origin + [a, a+1) * spacing[0] along L, etc."""

    origin: np.ndarray   # (3,) mm, LPS corner of cell (0, 0, 0)
    spacing: float       # mm, isotropic
    shape: tuple         # (nx, ny, nz)

    @staticmethod
    def around(points: np.ndarray, spacing: float, margin: float = 0.0) -> "Grid":
        """The smallest grid holding ``points`` (N, 3) LPS mm, plus ``margin`` mm on every side."""
        lo, hi = points.min(0) - margin, points.max(0) + margin
        shape = tuple(int(v) for v in np.floor((hi - lo) / spacing).astype(int) + 1)
        return Grid(lo.astype(float), float(spacing), shape)

    def max_projections(self, cells: np.ndarray) -> list[np.ndarray]:
        """Per-axis maxima of a scatter-max grid: [max over L (ny, nz), over P (nx, nz), over S (nx, ny)]."""
        filled = np.where(np.isnan(cells), -np.inf, cells)
        out = []
        for axis in range(3):
            m = filled.max(axis)
            out.append(np.where(np.isinf(m), np.nan, m))
        return out


def scatter_max(points: np.ndarray, values: np.ndarray, grid: Grid, out: np.ndarray | None = None) -> np.ndarray:
    """Max of ``values`` (N,) per grid cell of ``points`` (N, 3) LPS mm; points outside are dropped."""
    if out is None:
        out = np.full(grid.shape, np.nan)
    idx = np.floor((points - grid.origin) / grid.spacing).astype(np.int64)   # (N, 3)
    inside = np.all((idx >= 0) & (idx < np.asarray(grid.shape)), axis=1)
    idx, values = idx[inside], np.asarray(values, float)[inside]
    flat = np.ravel_multi_index(idx.T, grid.shape)
    acc = np.full(int(np.prod(grid.shape)), -np.inf)
    np.maximum.at(acc, flat, values)
    acc = acc.reshape(grid.shape)
    hit = np.isfinite(acc)
    out[hit] = np.where(np.isnan(out[hit]), acc[hit], np.maximum(out[hit], acc[hit]))
    return out


def frame_points(ipp, orientation, pixel_spacing, rows: int, cols: int) -> np.ndarray:
    """LPS mm of every pixel centre of one frame, (rows * cols, 3) in row-major order.

    DICOM: pixel (r, c) sits at IPP + c * spacing_between_columns * row_cosine
    + r * spacing_between_rows * column_cosine (PixelSpacing = [between rows, between columns]).
    """
    o = np.asarray(orientation, float)
    r, c = np.mgrid[0:rows, 0:cols]
    return (np.asarray(ipp, float) + c.reshape(-1, 1) * float(pixel_spacing[1]) * o[:3]
            + r.reshape(-1, 1) * float(pixel_spacing[0]) * o[3:])


def exact_reference(frames: Iterable, grid: Grid) -> np.ndarray:
    """Scatter-max every pixel of every frame at its own LPS position into ``grid`` -> (nx, ny, nz).

    ``frames``: ``(row, array)`` pairs as ``willis.dicom.iter_frames`` yields them (``row.ipp``,
    ``row.orientation``, ``row.pixel_spacing``; ``array`` (rows, cols)), or ``(ipp, orientation,
    pixel_spacing, array)`` tuples.
    """
    out = np.full(grid.shape, np.nan)
    for item in frames:
        if len(item) == 2:
            row, arr = item
            ipp, orientation, spacing = row.ipp, row.orientation, row.pixel_spacing
        else:
            ipp, orientation, spacing, arr = item
        arr = np.asarray(arr, float)
        scatter_max(frame_points(ipp, orientation, spacing, *arr.shape), arr.reshape(-1), grid, out)
    return out


def frame_grid(frames: Iterable, spacing: float, margin: float = 0.0) -> Grid:
    """The grid around every pixel of ``frames`` (same forms as ``exact_reference``)."""
    pts = []
    for item in frames:
        row, arr = item if len(item) == 2 else (None, item[3])
        ipp, o, ps = (row.ipp, row.orientation, row.pixel_spacing) if row is not None else item[:3]
        h, w = np.asarray(arr).shape
        corners = frame_points(ipp, o, ps, h, w)[[0, w - 1, (h - 1) * w, h * w - 1]]
        pts.append(corners)
    return Grid.around(np.concatenate(pts), spacing, margin)


@dataclass
class Volume:
    """One oracle volume: ``array`` (k, j, i) and the affine from (i, j, k) to LPS mm."""

    array: np.ndarray          # (k, j, i) float64 (NIfTI 4-D: (t, k, j, i))
    affine: np.ndarray         # (4, 4) voxel (i, j, k, 1) -> LPS mm
    name: str = ""
    files: tuple = ()          # SimpleITK: the files in GDCM's slice order

    @property
    def spacing(self) -> np.ndarray:
        """(3,) mm along i, j, k."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def direction(self) -> np.ndarray:
        """(3, 3) unit columns: the LPS direction of i, j, k."""
        return self.affine[:3, :3] / self.spacing

    @property
    def origin(self) -> np.ndarray:
        return self.affine[:3, 3].copy()

    def points(self) -> np.ndarray:
        """LPS mm of every voxel of one 3-D volume, (k * j * i, 3) in ``array``'s C order."""
        k, j, i = self.array.shape[-3:]
        kk, jj, ii = np.mgrid[0:k, 0:j, 0:i]
        ijk1 = np.stack([ii.ravel(), jj.ravel(), kk.ravel(), np.ones(ii.size)])   # (4, N)
        return (self.affine @ ijk1)[:3].T

    def scatter_max(self, grid: Grid, t: int = 0) -> np.ndarray:
        """This volume's voxels (time point ``t`` of a 4-D NIfTI) scatter-maxed into ``grid``."""
        arr = self.array if self.array.ndim == 3 else self.array[t]
        return scatter_max(self.points(), arr.reshape(-1), grid)


def sitk_series(files: Path | list[Path]) -> Volume:
    """SimpleITK: one multi-frame file, or a series folder / file list sorted by GDCM (its first series)."""
    sitk = pytest.importorskip("SimpleITK", reason="SimpleITK (test extra) not installed")
    if isinstance(files, Path) and files.is_file():
        names = [str(files)]
        image = sitk.ReadImage(names[0])
    else:
        reader = sitk.ImageSeriesReader()
        if isinstance(files, Path):
            (sid, *_) = reader.GetGDCMSeriesIDs(str(files))
            names = list(reader.GetGDCMSeriesFileNames(str(files), sid))
        else:
            names = [str(f) for f in files]
        reader.SetFileNames(names)
        image = reader.Execute()
    if image.GetDimension() == 4:   # a 4-D multi-frame read: keep the first time point
        size = list(image.GetSize())
        image = sitk.Extract(image, size[:3] + [0], [0, 0, 0, 0])
    arr = sitk.GetArrayFromImage(image).astype(np.float64)                 # (k, j, i)
    direction = np.asarray(image.GetDirection(), float).reshape(3, 3)      # columns: i, j, k in LPS
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(image.GetSpacing(), float)
    affine[:3, 3] = image.GetOrigin()
    return Volume(arr, affine, "sitk", tuple(Path(n).name for n in names))


def dcm2niix_binary() -> str:
    exe = shutil.which("dcm2niix") or str(Path(sys.executable).parent / "dcm2niix")
    if not Path(exe).exists():
        pytest.skip("dcm2niix (test extra: the dcm2niix PyPI package ships the binary) not installed")
    return exe


def dcm2niix_volumes(folder: Path, tmp: Path) -> dict[str, Volume]:
    """dcm2niix ``folder`` into ``tmp`` (uncompressed NIfTI) -> {output file stem: Volume} in LPS.

    dcm2niix writes one NIfTI per image it finds (it splits e.g. magnitude and field map, and adds a
    ``_Tilt`` resampled copy for gantry tilt). nibabel applies the NIfTI scl_slope / scl_inter.
    """
    nib = pytest.importorskip("nibabel", reason="nibabel (test extra) not installed")
    tmp.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([dcm2niix_binary(), "-z", "n", "-b", "n", "-f", "%s_%e", "-o", str(tmp), str(folder)],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"dcm2niix failed on {folder}: {done.stdout[-2000:]} {done.stderr[-2000:]}")
    out = {}
    for nii in sorted(tmp.glob("*.nii")):
        img = nib.load(str(nii))
        data = np.asarray(img.get_fdata(), np.float64)          # (i, j, k[, t])
        arr = np.moveaxis(data, [0, 1, 2], [-1, -2, -3]) if data.ndim == 3 else np.moveaxis(
            data, [0, 1, 2, 3], [-1, -2, -3, 0])                  # -> (k, j, i) or (t, k, j, i)
        out[nii.stem] = Volume(arr, RAS_TO_LPS @ img.affine, nii.stem)
    return out


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation over the cells finite in both (NaN = no voxel there)."""
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.corrcoef(a[ok], b[ok])[0, 1])
