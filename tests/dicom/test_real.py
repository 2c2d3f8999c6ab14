"""Real scanner DICOM through the pipeline's own reader (scan_series + iter_frames) vs independent readers.

Fixtures: ``../shared/fixtures/real-dicom`` (README there; skipped when absent). Oracles
(tests/oracles.py): SimpleITK with GDCM sorting, dcm2niix read back with nibabel, and an exact-position
scatter-max of every pixel. Compared: slice order, spacing, direction cosines, origin, value range,
the values themselves where both readers stack the same frames, and the per-axis maxima.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from oracles import correlation, dcm2niix_volumes, exact_reference, frame_grid, real_fixture, sitk_series

from willis.decode_check import check_series
from willis.dicom import iter_frames
from willis.index import scan_series

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _read(name: str):
    folder = real_fixture(name)
    rec, files = scan_series(folder, folder.parent)
    frames = list(iter_frames(files, folder.parent))          # (row, (rows, cols) float32) in kept order
    return folder, rec, files, frames


def _volume(frames) -> np.ndarray:
    return np.stack([a for _, a in frames]).astype(np.float64)   # (k, rows, cols)


def _axis_maxima_agree(frames, oracle, min_corr: float, spacing: float = 2.0, t: int = 0) -> list[float]:
    """Per-axis maxima of our frames (exact positions) vs the oracle's voxels, in one LPS grid."""
    # an odd margin keeps pixel centres off cell boundaries, where rounding differences between two
    # readers' float positions would move a pixel to the neighbouring cell
    grid = frame_grid(frames, spacing, margin=1.0 + 0.1234 * spacing)
    ours = grid.max_projections(exact_reference(frames, grid))
    theirs = grid.max_projections(oracle.scatter_max(grid, t))
    corr = [correlation(a, b) for a, b in zip(ours, theirs)]
    print(f"per-axis max correlation vs {oracle.name}: {[round(c, 4) for c in corr]}")
    assert min(corr) >= min_corr, corr
    return corr


def _assert_geometry_equals_sitk(rec, files, frames, sitk):
    kept = files[files["keep"]].sort_values("order")
    assert [Path(p).name for p in kept["path"]] == list(sitk.files) or len(sitk.files) == 1
    o = np.asarray(rec["orientation"])
    np.testing.assert_allclose(o[:3], sitk.direction[:, 0], atol=1e-4)          # row cosine: along i (columns)
    np.testing.assert_allclose(o[3:], sitk.direction[:, 1], atol=1e-4)          # column cosine: along j (rows)
    np.testing.assert_allclose(rec["normal"], sitk.direction[:, 2], atol=1e-4)
    np.testing.assert_allclose(rec["pixel_spacing"][::-1], sitk.spacing[:2], rtol=1e-6)   # (rows, cols) vs (i, j)
    np.testing.assert_allclose(frames[0][0].ipp, sitk.origin, atol=1e-3)


def test_sagittal_t1_agrees_with_simpleitk_and_dcm2niix(tmp_path):
    folder, rec, files, frames = _read("mr-sagittal-t1-hfs")
    sitk = sitk_series(folder)
    assert rec["plane"] == "sagittal" and rec["n_frames"] == 35 and rec["geometry_flag"] == ""
    _assert_geometry_equals_sitk(rec, files, frames, sitk)
    assert rec["slice_spacing"] == pytest.approx(sitk.spacing[2], rel=1e-6)
    vol = _volume(frames)
    np.testing.assert_array_equal(vol, sitk.array)                 # same frames, same order, same values
    _axis_maxima_agree(frames, sitk, 0.999)
    (nii,) = dcm2niix_volumes(folder, tmp_path).values()
    assert (vol.min(), vol.max()) == (nii.array.min(), nii.array.max())
    _axis_maxima_agree(frames, nii, 0.999)


def test_siemens_enhanced_4d_keeps_the_first_dynamic_and_agrees_with_simpleitk(tmp_path):
    folder, rec, files, frames = _read("mr-enhanced-siemens-xa10")
    assert rec["multiframe"] and rec["n_frames"] == 6 and rec["n_set_aside"] == 18
    assert rec["volume_choice"] == "TemporalPositionIndex 1 of 4 values"
    assert "duplicate_positions" not in rec["geometry_flag"]
    assert set(files.loc[files["keep"], "path"]) == {"mr-enhanced-siemens-xa10/6_1.dcm"}
    aside = files.loc[~files["keep"], "set_aside_reason"]
    assert aside.str.match(r"4-D series: TemporalPositionIndex [234] set aside \(kept TemporalPositionIndex 1").all()
    sitk = sitk_series(folder / "6_1.dcm")                         # the first dynamic, as SimpleITK reads it
    _assert_geometry_equals_sitk(rec, files, frames, sitk)
    assert rec["slice_spacing"] == pytest.approx(sitk.spacing[2], rel=1e-6)
    np.testing.assert_array_equal(_volume(frames), sitk.array)
    _axis_maxima_agree(frames, sitk, 0.999)
    (nii,) = dcm2niix_volumes(folder, tmp_path).values()           # 4-D: (t, k, j, i), t = 0 is dynamic 1
    assert nii.array.shape[0] == 4
    _axis_maxima_agree(frames, nii, 0.999, t=0)


def test_philips_enhanced_keeps_the_magnitude_frames_and_reports_the_field_map(tmp_path):
    folder, rec, files, frames = _read("mr-enhanced-philips-fieldmap")
    assert rec["n_frames"] == 32 and rec["n_set_aside"] == 32 and rec["geometry_flag"] == ""
    kept, aside = files[files["keep"]], files[~files["keep"]]
    assert sorted(kept["frame"]) == list(range(32)) and sorted(aside["frame"]) == list(range(32, 64))
    assert aside["set_aside_reason"].str.startswith("field map (ImageType ORIGINAL\\PRIMARY\\T1\\FIELD_MAP)").all()
    check = check_series(rec, files, folder.parent)
    assert check["status"] == "partial" and any("32 frames): field map" in r for r in check["reasons"])
    vol = _volume(frames)
    # one scale: the magnitude frames' own PixelValueTransformation (slope 1.2799, intercept 0)
    np.testing.assert_allclose(kept["slope"], 1.27985347985347) and set(kept["intercept"]) == {0.0}
    assert set(aside["slope"].round(6)) == {0.2442} and set(aside["intercept"]) == {-500.0}   # the field map's
    sitk = sitk_series(folder / "IM_0027_fMAP.dcm")                # all 64 frames; the first 32 are magnitude
    np.testing.assert_allclose(vol, sitk.array[:32], rtol=1e-5)
    vols = dcm2niix_volumes(folder, tmp_path)                      # dcm2niix splits magnitude and field map
    (magnitude,) = [v for k, v in vols.items() if "fieldmap" not in k]
    assert magnitude.array.shape == vol.shape
    _axis_maxima_agree(frames, magnitude, 0.999)
    # dcm2niix uses Philips' precise floating-point scale: voxel by voxel, ours is a constant multiple
    grid = frame_grid(frames, 4.0, margin=2.0)                     # 4 mm pixels: one voxel per cell centre
    ours, theirs = exact_reference(frames, grid), magnitude.scatter_max(grid)
    ok = np.isfinite(ours) & np.isfinite(theirs) & (theirs > 0)
    ratio = ours[ok] / theirs[ok]
    assert ok.sum() > 0.5 * vol.size and ratio.std() / ratio.mean() < 1e-4


def test_gantry_tilted_ct_positions_orientation_and_flags_vs_simpleitk_and_dcm2niix(tmp_path):
    sitk_mod = pytest.importorskip("SimpleITK")
    folder, rec, files, frames = _read("ct-ge-gantry-tilt-variable-spacing")
    sitk = sitk_series(folder)
    assert rec["plane"] == "axial" and rec["n_frames"] == 28
    _assert_geometry_equals_sitk(rec, files, frames, sitk)         # order, cosines, pixel spacing, origin
    flags = rec["geometry_flag"].split(";")
    assert "spacing_irregular" in flags and "gantry_tilt:18.5" in flags   # GantryDetectorTilt +18.5
    assert rec["gantry_tilt"] == pytest.approx(18.5, abs=0.05)
    # every slice's position is its own IPP, as SimpleITK's per-file reader gives it
    for row, _ in frames:
        reader = sitk_mod.ImageFileReader()
        reader.SetFileName(str(folder.parent / row.path))
        reader.ReadImageInformation()
        ipp = [float(v) for v in reader.GetMetaData("0020|0032").split("\\")]
        np.testing.assert_allclose(row.ipp, ipp, atol=1e-4)
    vol = _volume(frames)
    np.testing.assert_array_equal(vol, sitk.array)                 # HU: same values, same order
    assert (vol.min(), vol.max()) == (-1500.0, 2121.0)
    vols = dcm2niix_volumes(folder, tmp_path)
    raw = next(v for k, v in vols.items() if "Tilt" not in k)
    step = raw.affine[:3, 2] / np.linalg.norm(raw.affine[:3, 2])   # dcm2niix's slice step: through the origins
    tilt = np.degrees(np.arccos(abs(float(np.dot(step, rec["normal"])))))
    assert tilt == pytest.approx(rec["gantry_tilt"], abs=0.1)
    # the exact-position reference of OUR frames vs dcm2niix's tilt-corrected resampling
    corrected = next(v for k, v in vols.items() if "Tilt" in k)
    _axis_maxima_agree(frames, corrected, 0.975)
