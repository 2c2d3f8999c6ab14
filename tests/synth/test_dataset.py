"""The synthetic RSNA-layout dataset: layout, labels, localizers, breakage, determinism, no label leaks."""

from __future__ import annotations

import ast
import csv
import dataclasses
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy.stats import spearmanr

from willis.labels import CSV_COLUMNS, LOCALIZER_COLUMNS, LOCATIONS, PRESENT
from willis.params.synthesize import SynthesizeParams
from willis.synth import anatomy as A
from willis.synth import lesion as L
from willis.synth.confounders import sample_confounders
from willis.synth.contrast import sample_contrast
from willis.synth.dataset import synthesize
from willis.synth.plan import ANATOMY_STREAM, BROKEN_KINDS, NOISE_STREAM, draw_labels, plan_dataset, rng_for
from willis.synth.profiles import DEFAULT
from willis.synth.scanner import sample_scanner
from willis.synth.series import acquisition_geometry, make_series

SEED = 11


def _rows(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        return r.fieldnames, list(r)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """24 series (6 of them broken, one per kind), at most 40 slices of at most 128 pixels a side."""
    out = tmp_path_factory.mktemp("synthetic")
    params = SynthesizeParams(out=str(out), n_series=24, workers=1, max_slices=40, max_matrix=128)
    manifest = synthesize(params, seed=SEED, out_dir=out, data_root=out)
    return out, manifest


def _hu(ds, frame_pixels):
    if "PerFrameFunctionalGroupsSequence" in ds:
        t = ds.SharedFunctionalGroupsSequence[0].get("PixelValueTransformationSequence")
        m, b = (float(t[0].RescaleSlope), float(t[0].RescaleIntercept)) if t else (1.0, 0.0)
    else:
        m, b = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
    return frame_pixels.astype(np.float64) * m + b


def test_layout_and_verbatim_columns(small):
    out, manifest = small
    header, rows = _rows(out / "train.csv")
    assert tuple(header) == CSV_COLUMNS
    loc_header, locs = _rows(out / "train_localizers.csv")
    assert tuple(loc_header) == LOCALIZER_COLUMNS
    for r in rows:
        assert r["PatientSex"] in ("Female", "Male") and str(int(r["PatientAge"])) == r["PatientAge"]
        assert r["Modality"] in ("CTA", "MRA", "MRI T2", "MRI T1post")
        flags = [int(r[c]) for c in LOCATIONS]
        assert set(flags) <= {0, 1} and int(r[PRESENT]) == int(any(flags))
    for loc in locs:
        assert loc["location"] in LOCATIONS
        row = next(r for r in rows if r["SeriesInstanceUID"] == loc["SeriesInstanceUID"])
        assert row[loc["location"]] == "1"  # every localizer's location is labelled on its series
        assert (out / "series" / loc["SeriesInstanceUID"] / f"{loc['SOPInstanceUID']}.dcm").exists()
    # one localizer row per aneurysm of every labelled series that has a folder
    missing = {b["series_uid"] for b in manifest["broken"] if b["kind"] == "missing_folder"}
    n_aneurysms = sum(sum(int(r[c]) for c in LOCATIONS) for r in rows if r["SeriesInstanceUID"] not in missing)
    assert len(locs) == n_aneurysms == manifest["counts"]["localizers"] - 0
    assert manifest["counts"]["csv_rows"] == len(rows) and manifest["problems"] == {}


def test_localizers_land_on_the_sac(small):
    """The localizer pixel shows the sac: CTA far above brain, TOF/T1post among the brightest, T2 dark.

    (T2 only where the sac is at least as wide as the slice: a smaller flow void is partial-volumed
    with the tissue around it in a 3-5 mm slab, as in real T2.)
    """
    out, manifest = small
    _, rows = _rows(out / "train.csv")
    modality = {r["SeriesInstanceUID"]: r["Modality"] for r in rows}
    _, locs = _rows(out / "train_localizers.csv")
    assert locs, "the small set must contain positives"
    for loc in locs:
        uid = loc["SeriesInstanceUID"]
        c = ast.literal_eval(loc["coordinates"])
        ds = pydicom.dcmread(out / "series" / uid / f"{loc['SOPInstanceUID']}.dcm")
        px = ds.pixel_array
        assert ("f" in c) == (int(ds.get("NumberOfFrames", 1)) > 1)
        img = _hu(ds, px[c["f"]] if "f" in c else px)
        v = img[round(c["y"]), round(c["x"])]
        sac = next(a for a in manifest["series"][uid]["aneurysms"] if a["location"] == loc["location"])
        mod = modality[uid]
        head = img[img > np.percentile(img, 20)]                  # the head, not the air around it
        if mod == "CTA":  # a contrast-filled sac (>= 180 HU), partial-volumed: far above brain (<= 42 HU)
            assert v > 90, (v, sac)
        elif mod in ("MRA", "MRI T1post") and not sac["slow_flow_core"]:
            assert v >= np.percentile(head, 90), (v, sac)
        elif mod == "MRI T2" and sac["diameter_mm"] >= manifest["series"][uid]["effective"]["slice_mm"]:
            assert v < np.median(head), (v, sac)                  # a flow void filling its slab: dark


@pytest.mark.parametrize("modality", ["CTA", "MRA", "MRI T2", "MRI T1post"])
def test_localizer_marks_the_voxels_that_the_aneurysm_changed(tmp_path, modality):
    """Positive and negative twins (same plan, no aneurysm) differ only at the aneurysm, under the localizer."""
    base = plan_dataset(8, 0.5, SEED, broken_per_kind=0)[3]
    storage = dict(signed=modality == "CTA", slope=1.0, intercept=-1024.0 if modality == "CTA" else 0.0)
    plan = dataclasses.replace(base, modality=modality, locations=(A.ACOM, A.L_MCA), multiframe=modality == "MRA",
                               encoding="explicit", **storage)
    pos = make_series(plan, SEED, tmp_path / "pos", max_slices=48, max_matrix=160)
    neg = make_series(dataclasses.replace(plan, locations=()), SEED, tmp_path / "neg", max_slices=48, max_matrix=160)
    assert len(pos.localizers) == 2 and neg.localizers == []
    folder_p, folder_n = tmp_path / "pos" / plan.series_uid, tmp_path / "neg" / plan.series_uid
    names = sorted(p.name for p in folder_p.iterdir())
    assert names == sorted(p.name for p in folder_n.iterdir())   # same files, same names: no leak there
    changed = total = 0
    for name in names:
        assert (folder_p / name).stat().st_size == (folder_n / name).stat().st_size  # native encoding
        dp, dn = pydicom.dcmread(folder_p / name), pydicom.dcmread(folder_n / name)
        assert [e for e in dp if e.tag != 0x7FE00010] == [e for e in dn if e.tag != 0x7FE00010]  # identical headers
        changed += int(np.count_nonzero(dp.pixel_array != dn.pixel_array))
        total += dp.pixel_array.size
    assert 0 < changed < 0.01 * total                              # only the sacs changed
    for loc in pos.localizers:
        c = ast.literal_eval(loc["coordinates"])
        dp = pydicom.dcmread(folder_p / f"{loc['SOPInstanceUID']}.dcm")
        dn = pydicom.dcmread(folder_n / f"{loc['SOPInstanceUID']}.dcm")
        p, n = (d.pixel_array[c["f"]] if "f" in c else d.pixel_array for d in (dp, dn))
        y, x = round(c["y"]), round(c["x"])
        assert p[y, x] != n[y, x]
        if modality in ("CTA", "MRA", "MRI T1post"):
            assert p[y, x] > np.median(p)
        else:                                                      # T2: a flow void darkens the pixel
            assert p[y, x] < n[y, x]


@pytest.mark.filterwarnings("ignore:End of file reached")  # the truncated file, on purpose
def test_broken_series_are_broken_as_the_manifest_says(small):
    out, manifest = small
    kinds = {b["kind"]: b for b in manifest["broken"]}
    assert set(kinds) == set(BROKEN_KINDS)
    _, rows = _rows(out / "train.csv")
    in_csv = {r["SeriesInstanceUID"] for r in rows}
    folders = {p.name for p in (out / "series").iterdir()}
    assert kinds["missing_folder"]["series_uid"] in in_csv - folders
    assert kinds["not_in_csv"]["series_uid"] in folders - in_csv
    folder = lambda kind: out / "series" / kinds[kind]["series_uid"]  # noqa: E731
    with pytest.raises(pydicom.errors.InvalidDicomError):
        pydicom.dcmread(folder("stray_file") / kinds["stray_file"]["files"][0])
    assert "PixelData" not in pydicom.dcmread(folder("no_pixel_data") / kinds["no_pixel_data"]["files"][0])
    with pytest.raises(Exception):
        pydicom.dcmread(folder("truncated_file") / kinds["truncated_file"]["files"][0]).pixel_array
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in folder("mixed_shapes").iterdir()]
    assert len({(h.Rows, h.Columns) for h in headers}) >= 2
    assert sum("LOCALIZER" in h.ImageType for h in headers) == 1


def test_manifest_counts_and_hash(small):
    out, manifest = small
    on_disk = json.loads((out / "MANIFEST.json").read_text())
    assert on_disk["seed"] == SEED and on_disk["skipped"] is False
    assert on_disk["params"]["n_series"] == 24 and len(on_disk["content_sha256"]) == 64
    files = [p for p in (out / "series").rglob("*.dcm")]
    assert on_disk["counts"]["files"] == len(files)
    _, rows = _rows(out / "train.csv")
    assert on_disk["counts"]["positives"] == sum(int(r[PRESENT]) for r in rows)
    assert on_disk["counts"]["modality"] == dict(Counter(r["Modality"] for r in rows))


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    trees = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        synthesize(SynthesizeParams(n_series=5, workers=workers, max_slices=24, max_matrix=96), seed=3, out_dir=out,
                   data_root=out)
        trees.append(_tree(out))
    assert trees[0] == trees[1] and len(trees[0]) > 20
    other = tmp_path / "other"
    synthesize(SynthesizeParams(n_series=5, workers=1, max_slices=24, max_matrix=96), seed=4, out_dir=other,
               data_root=other)
    assert _tree(other)["train.csv"] != trees[0]["train.csv"]


def test_label_rates_and_location_imbalance():
    labels = draw_labels(4000, 0.42, SEED)
    assert sum(bool(x) for x in labels) == round(0.42 * 4000)
    per_positive = [len(x) for x in labels if x]
    assert set(per_positive) == {1, 2} and 1.1 < np.mean(per_positive) < 1.3
    counts = Counter(loc for x in labels for loc in x)
    assert counts.most_common(1)[0][0] == A.ACOM                  # AComm most common, as in the real data
    assert {A.L_ACA, A.R_ACA} >= {min(counts, key=counts.get)}     # an ACA is rarest
    assert set(counts) == set(LOCATIONS)


def test_no_label_leaks_in_nuisance_choices():
    """Acquisition, storage, anatomy, confounder, contrast and scanner draws are independent of the label."""
    plans = plan_dataset(600, 0.42, SEED)
    y = np.array([p.positive for p in plans], float)
    per_series: dict[str, list] = {k: [] for k in (
        "n_slices", "rows", "cols", "pixel", "head_scale", "skull", "calibre", "tortuosity", "variants",
        "infundibula", "calcifications", "artery", "vein", "noise", "blur")}
    for p in plans:
        anat_rng = np.random.default_rng([SEED, ANATOMY_STREAM, p.index])
        anat = A.sample_anatomy(anat_rng, p.center_offset)
        conf = sample_confounders(anat, anat_rng)
        geom = acquisition_geometry(p, anat, 128, 224)
        noise_rng = rng_for(SEED, DEFAULT, NOISE_STREAM, p.index)
        values, scanner = sample_contrast(p.modality, noise_rng), sample_scanner(p.modality, noise_rng)
        for key, value in (
                ("n_slices", geom.shape[0]), ("rows", geom.shape[1]), ("cols", geom.shape[2]),
                ("pixel", geom.pixel_spacing[1]), ("head_scale", float(np.prod(anat.scale))),
                ("skull", anat.skull_mm), ("calibre", anat.vessel("L supraclinoid ICA").radius),
                ("tortuosity", anat.tortuosity_mm), ("variants", sum(anat.variants.values())),
                ("infundibula", conf.infundibula), ("calcifications", conf.calcifications),
                ("artery", values["artery"] / max(abs(values["brain"]), 1e-3)), ("vein", values["vein"]),
                ("noise", scanner.noise), ("blur", scanner.blur_mm)):
            per_series[key].append(value)
    code = lambda values: np.unique(values, return_inverse=True)[1]  # noqa: E731
    features = {
        **per_series, "pixel_drawn": [p.pixel_mm for p in plans], "aspect": [p.aspect for p in plans],
        "spacing": [p.slice_spacing for p in plans], "fov": [p.fov_mm for p in plans],
        "plane": code([p.plane for p in plans]), "modality": code([p.modality for p in plans]),
        "encoding": code([p.encoding for p in plans]), "multiframe": [p.multiframe for p in plans],
        "signed": [p.signed for p in plans], "slope": [p.slope for p in plans],
        "intercept": [p.intercept for p in plans],
        "instance_numbers": code([p.instance_numbers for p in plans]), "shuffle": [p.shuffle_files for p in plans],
        "table_z": [p.center_offset[2] for p in plans], "age": [p.age for p in plans],
        "sex": code([p.sex for p in plans]), "broken": [p.broken is not None for p in plans],
        "head_and_neck": [p.head_and_neck for p in plans],
    }
    for name, values in features.items():
        rho = spearmanr(y, np.asarray(values, float)).statistic
        assert abs(rho) < 0.15, f"{name} correlates with the label (rho={rho:.3f})"
    # and the same seed gives the same nuisance whatever the positive rate (the label stream is separate)
    other = plan_dataset(600, 0.1, SEED)
    unlabelled = lambda ps: [dataclasses.replace(p, locations=()) for p in ps]  # noqa: E731
    assert unlabelled(plans) == unlabelled(other)


def test_segments_sit_where_their_labels_say():
    anat = A.sample_anatomy(np.random.default_rng(0), (0, 0, 0))
    assert {v.location for v in anat.vessels} - {None} == set(LOCATIONS)
    to_head = lambda pts: (pts - anat.center) @ anat.rotation / anat.scale  # noqa: E731  (undo the case's pose)
    for v in anat.vessels:
        x = to_head(v.points)[:, 0].mean()
        lateral = 1.5 if v.location in (A.L_ACA, A.R_ACA) else 5  # the A2s run close to the midline
        if v.location and v.location.startswith("Left "):
            assert x > lateral, v.name          # LPS: +x is the patient's left
        if v.location and v.location.startswith("Right "):
            assert x < -lateral, v.name
        if v.location in (A.ACOM, A.BASILAR_TIP):
            assert abs(x) < 6, v.name
    sites = {A.ACOM: (0, -15, 6), A.BASILAR_TIP: (0, 15, -10)}
    for loc, expected in sites.items():
        v = next(v for v in anat.vessels if v.location == loc)
        assert np.linalg.norm(to_head(v.points).mean(0) - expected) < 8


def test_aneurysm_geometry():
    """Each sac sits on its location's segment, grows out of its parent's wall, and has a narrower neck."""
    anat = A.sample_anatomy(np.random.default_rng(1), (0, 0, 0))
    rng = np.random.default_rng(2)
    for loc in LOCATIONS * 8:
        a = L.place_aneurysm(anat, loc, rng)
        assert anat.vessel(a.vessel).location == loc
        assert L.MODES["realistic"].diameter_mm[0] <= 2 * a.radius <= L.MODES["realistic"].diameter_mm[1]
        assert a.neck_radius <= 0.8 * a.radius + 1e-9
        parent = anat.vessel(a.parent)
        # the sac bulges out of the parent's wall: its centre is outside the lumen, the sac touches the wall
        line = np.linspace(parent.points[:-1], parent.points[1:], 50).reshape(-1, 3)   # dense centre line
        d = np.min(np.linalg.norm(line - a.center, axis=1))
        assert parent.radius < d < parent.radius + a.radius, (a.site, d, parent.radius, a.radius)


def test_skip_when_data_root_points_elsewhere(tmp_path):
    out = tmp_path / "synthetic"
    manifest = synthesize(SynthesizeParams(n_series=3), seed=1, out_dir=out, data_root=tmp_path / "real")
    assert manifest["skipped"] is True
    assert [p.name for p in out.iterdir()] == ["MANIFEST.json"]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not ours")
    with pytest.raises(FileExistsError, match="refusing"):
        synthesize(SynthesizeParams(n_series=3), seed=1, out_dir=foreign, data_root=foreign)
    assert (foreign / "keep.txt").exists()


def test_stage_cli_writes_a_tiny_dataset(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "tiny"
    cmd = [sys.executable, "stages/synthesize.py", "--out", str(out), "--data-root", str(out), "--n-series", "2"]
    subprocess.run(cmd, cwd=root, check=True, capture_output=True)
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert manifest["skipped"] is False and manifest["counts"]["csv_rows"] == 2
    assert tuple(_rows(out / "train.csv")[0]) == CSV_COLUMNS


def test_max_matrix_caps_the_matrix_and_keeps_the_field_of_view():
    """``max_matrix`` coarsens the pixels (longer side = the cap, aspect kept) over the same field of view."""
    plans = plan_dataset(200, 0.4, SEED, broken_per_kind=0)
    checked = 0
    for p in plans[:40]:
        anat = A.sample_anatomy(np.random.default_rng([SEED, ANATOMY_STREAM, p.index]), p.center_offset)
        full, capped = acquisition_geometry(p, anat, 400), acquisition_geometry(p, anat, 400, max_matrix=128)
        np.testing.assert_allclose(full.pixel_spacing, p.pixel_mm)            # uncapped: the drawn pixel
        assert capped.shape[0] == full.shape[0] and capped.slice_spacing == full.slice_spacing   # slices untouched
        fov_full = np.array(full.shape[1:]) * np.array(full.pixel_spacing)
        fov_capped = np.array(capped.shape[1:]) * np.array(capped.pixel_spacing)
        if full.shape[2] > 128:
            checked += 1
            assert capped.shape[2] == 128 and capped.pixel_spacing[1] > p.pixel_mm
            np.testing.assert_allclose(fov_capped, fov_full, atol=2 * capped.pixel_spacing[1])   # same field of view
            assert abs(capped.shape[1] / capped.shape[2] - full.shape[1] / full.shape[2]) < 0.03  # aspect kept
        assert acquisition_geometry(p, anat, 400, max_matrix=4096).shape == full.shape  # a cap above: no change
    assert checked > 20


def test_max_slices_caps_the_slices_and_keeps_the_coverage():
    for p in plan_dataset(40, 0.4, SEED, broken_per_kind=0):
        anat = A.sample_anatomy(np.random.default_rng([SEED, ANATOMY_STREAM, p.index]), p.center_offset)
        full, capped = acquisition_geometry(p, anat, 10_000), acquisition_geometry(p, anat, 64)
        assert full.slice_spacing == p.slice_spacing and capped.shape[0] <= 64
        cover = lambda g: (g.shape[0] - 1) * g.slice_spacing  # noqa: E731
        assert cover(capped) >= cover(full) - full.slice_spacing - 1e-6
