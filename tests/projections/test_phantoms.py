"""Phantoms shared by the projection tests (and a check that they are what the tests assume).

A head: a sphere of brain (40 HU / MR 300) inside a skull shell (1200 HU / MR 50), one contrast
"aneurysm" blob at patient right-anterior-superior, and a vessel running along the inner skull.
Everything is defined in LPS mm, so the same object can be acquired in any plane.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from willis.index import scan_series
from willis.params.project import ProjectParams
from willis.synth.dicom_writer import Geometry, geometry_for, sample_world, uid_from, write_series

HEAD_R, SKULL_IN = 60.0, 53.0
TARGET = np.array([-25.0, -20.0, 15.0])   # LPS: patient right, anterior, superior
TARGET_R = 5.0
CT_VALUES = {"air": -1000.0, "brain": 40.0, "skull": 1200.0, "target": 450.0}
MR_VALUES = {"air": 0.0, "brain": 300.0, "skull": 50.0, "target": 1500.0}


def head(values: dict):
    def fn(x, y, z):
        r2 = x**2 + y**2 + z**2
        v = np.full(x.shape, values["air"], np.float32)
        v[r2 < HEAD_R**2] = values["skull"]
        v[r2 < SKULL_IN**2] = values["brain"]
        t2 = (x - TARGET[0]) ** 2 + (y - TARGET[1]) ** 2 + (z - TARGET[2]) ** 2
        v[t2 < TARGET_R**2] = values["target"]
        return v
    return fn


def small_params(**kw) -> ProjectParams:
    base = dict(size=32, instances=4, slab_bins=8, grid=64, roi_z_mm=150.0, roi_xy_mm=200.0, roi_margin_mm=5.0,
                workers=1, montage_series=1)
    base.update(kw)
    return ProjectParams(**base)


def geometry(plane: str, n: int = 40, matrix: int = 48, fov: float = 140.0, flip: bool = False) -> Geometry:
    """A 140 mm cube around the head; ``flip`` reverses the row cosine and the slice direction."""
    g = geometry_for(plane, (0.0, 0.0, 0.0), fov_mm=fov, n_slices=n, matrix=matrix, slice_spacing=fov / n)
    if not flip:
        return g
    r, c = -np.asarray(g.row_cosine), np.asarray(g.col_cosine)
    normal = np.cross(r, c)  # reversed too: slices run the other way
    # same cube around the centre: origin = centre - half extents along each direction
    origin = -(n - 1) / 2 * g.slice_spacing * normal - (matrix - 1) / 2 * (g.pixel_spacing[0] * c + g.pixel_spacing[1] * r)
    return Geometry(tuple(float(v) for v in r), g.col_cosine, g.pixel_spacing, g.slice_spacing,
                    tuple(float(v) for v in origin), g.shape)


def files_table(folder: Path, root: Path) -> pd.DataFrame:
    """The files.parquet rows of one series folder, from the index's own scanner."""
    _, files = scan_series(folder, root)
    return files


def write_phantom(root: Path, name: str, geom: Geometry, modality: str = "CT", scale: float = 1.0, **kw) -> pd.DataFrame:
    """Write the head phantom as series ``name`` under ``root/series``; returns its files table."""
    values = CT_VALUES if modality == "CT" else {k: v * scale for k, v in MR_VALUES.items()}
    vol = sample_world(head(values), geom)
    if modality == "CT":
        kw.setdefault("intercept", -1024.0)
    folder = root / "series" / name
    write_series(vol, geom, folder, modality=modality, series_uid=uid_from("phantom", name),
                 study_uid="1.2.3", patient_id="p", signed=kw.pop("signed", True), **kw)
    return files_table(folder, root)


def test_phantom_geometry_covers_head(tmp_path):
    g = geometry("axial")
    vol = sample_world(head(CT_VALUES), g)
    assert vol.shape == (40, 48, 48)
    assert (vol == CT_VALUES["target"]).sum() > 10         # the target is sampled
    assert vol[0].max() == CT_VALUES["air"] or vol[0].max() == CT_VALUES["skull"]
    flipped = sample_world(head(CT_VALUES), geometry("axial", flip=True))
    # reversing the row cosine mirrors the columns: same object, same voxel count
    np.testing.assert_array_equal(np.sort(flipped.ravel()), np.sort(vol.ravel()))
