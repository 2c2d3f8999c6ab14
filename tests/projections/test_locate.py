"""The fine box on the realistic synthetic generator (both profiles): it holds the annotated aneurysms.

A small dataset through the pipeline's own functions (synthesize -> index -> project_series); the
box is placed from the images only, never from the generator. The full-size measurement
(containment >= 99 % on 400 + 400 series, margins, failures) is in the stage report of the
change that added the fine box; this test keeps the property on every run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from willis.index import build_index
from willis.params.project import ProjectParams
from willis.params.synthesize import SynthesizeParams
from willis.projections import patient_to_fine
from willis.projections.streaming import project_series
from willis.synth.dataset import synthesize


@pytest.fixture(scope="module", params=["default", "heldout"])
def dataset(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"syn-{request.param}")
    synthesize(SynthesizeParams(n_series=16, positive_rate=0.9, workers=1, broken_per_kind=0, max_slices=64,
                                max_matrix=128, profile=request.param), 11, root, root)
    build_index(root, root / "index", workers=1, val_fraction=0.2, test_fraction=0.2,
                smoke_sizes={"train": 1, "val": 1, "test": 1}, seed=0)
    return root


def test_fine_box_holds_the_localizers(dataset):
    series = pd.read_parquet(dataset / "index" / "series.parquet")
    files = pd.read_parquet(dataset / "index" / "files.parquet")
    loc = pd.read_parquet(dataset / "index" / "localizers.parquet")
    loc = loc[loc["found"]]
    params = ProjectParams()
    checked = 0
    for uid, points in loc.groupby("SeriesInstanceUID"):
        row = series[series["SeriesInstanceUID"] == uid].iloc[0]
        proj = project_series(row, files[files["SeriesInstanceUID"] == uid], dataset, params, row["family"])
        fine = proj.attrs["fine"]
        assert fine["flag"] in ("vessels", "prior", "fov") and fine["mm_per_px"] <= 0.5
        for p in points["patient"]:
            where = patient_to_fine(np.asarray(p, float), proj.attrs)
            assert all(w[0] is not None and 0 <= w[1] < fine["size"] and 0 <= w[2] < fine["size"] for w in where.values()), (
                f"{row['Modality']} {uid}: localizer {p} outside the fine box {fine['box_mm']} ({fine['flag']}, {fine['locate']})")
            checked += 1
    assert checked >= 8


@pytest.mark.parametrize("matrix", [48, 400])   # 2.9 mm and 0.35 mm pixels over the same 140 mm field of view
def test_locate_head_mask_does_not_grow_with_fine_pixels(tmp_path, matrix):
    """The head mask reads cell means. Max-pooled pixels put noisy air ~1-2 s.d. above its mean, so
    a 0.35 mm MR series (pooled 2 x 2 to ~1 mm) once counted its whole background as head, and the
    box of a held-out MRA at scanner resolution landed 70 mm low. The means are block means now: the
    mask is the phantom's head (a 60 mm sphere, 905 mL) at either pixel size."""
    from projections.test_phantoms import HEAD_R, MR_VALUES, files_table, geometry, head

    from willis.projections.cow import head_mask
    from willis.projections.geometry import series_geometry
    from willis.projections.locate import locate_pass
    from willis.synth.dicom_writer import sample_world, uid_from, write_series

    geom = geometry("axial", n=40, matrix=matrix)
    clean = sample_world(head(MR_VALUES), geom)
    rng = np.random.default_rng(0)
    sigma = 20.0    # magnitude (Rician) noise: air averages 25, its 2 x 2 maxima ~40; the mask's cut is ~32
    vol = np.hypot(clean + rng.normal(0, sigma, clean.shape), rng.normal(0, sigma, clean.shape)).astype(np.float32)
    folder = tmp_path / "series" / f"m{matrix}"
    write_series(np.round(vol), geom, folder, modality="MR", series_uid=uid_from("noisy", str(matrix)),
                 study_uid="1.2.3", patient_id="p", signed=True)
    files = files_table(folder, tmp_path)
    p = ProjectParams()
    grid = locate_pass(files, tmp_path, series_geometry(files, p.grid), "mr", p.locate_mm, p.bone_hu, p.bone_dilate_mm)
    ml = head_mask(grid, "mr").sum() * float(grid.pitch[0]) ** 3 / 1000
    sphere = 4 / 3 * np.pi * HEAD_R**3 / 1000
    assert 0.8 * sphere < ml < 1.5 * sphere, f"head mask {ml:.0f} mL at {140 / matrix:.2f} mm pixels, phantom {sphere:.0f} mL"
