"""The realistic default: sac contrast and size, sites, variants, confounders, and the held-out profile."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from willis.labels import LOCATIONS
from willis.params import ParamsError
from willis.params.synthesize import SynthesizeParams
from willis.synth import anatomy as A
from willis.synth import lesion as L
from willis.synth.confounders import sample_confounders
from willis.synth.plan import ANATOMY_STREAM, ANEURYSM_STREAM, plan_dataset, rng_for
from willis.synth.profiles import DEFAULT, HELDOUT, Acquisition
from willis.synth.series import render_series

SEED = 5
ROOT = Path(__file__).resolve().parents[2]


def _sample(vol: np.ndarray, geom, points) -> np.ndarray:
    """``vol`` at the voxels nearest to LPS points (m, 3): what a reader sees there, no interpolation."""
    kij = geom.patient_to_voxel(np.atleast_2d(points))            # (m, 3)
    return map_coordinates(vol, kij.T, order=0, mode="nearest")


def _artery(neg, vessel, dark: bool = False) -> float:
    """The artery's centre-line value: the voxels nearest to its centre line, the 10% closest to full contrast."""
    v = _sample(neg.volume, neg.geom, _centre_line(vessel))
    return float(np.percentile(v, 10 if dark else 90))


def _voxel_mm(geom) -> float:
    return float(np.mean([geom.slice_spacing, *geom.pixel_spacing]))


def _resolved(rendered, a) -> bool:
    """Whether the sac and its parent are wide enough to reach their full value at the nearest voxel.

    A vessel or sac narrower than about a voxel is partial-volumed everywhere, as in a real image.
    """
    voxel = _voxel_mm(rendered.geom)
    return rendered.anatomy.vessel(a.parent).radius >= voxel and a.radius >= voxel


def _centre_line(vessel, step_mm: float = 0.5) -> np.ndarray:
    """Points every ``step_mm`` along a polyline, ends trimmed by 2 mm (joints overlap other vessels)."""
    seg = np.diff(vessel.points, axis=0)
    lengths = np.linalg.norm(seg, axis=1)
    s = np.arange(2.0, lengths.sum() - 2.0, step_mm)
    cum = np.concatenate([[0], np.cumsum(lengths)])
    i = np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(seg) - 1)
    return vessel.points[i] + ((s - cum[i]) / lengths[i])[:, None] * seg[i]


def _twins(modality: str, n_plans: int = 4, slice_mm: float = 1.0):
    """Noiseless positive/negative twin renders of a few plans, each with two aneurysms, axial, thin slices."""
    out = []
    for base in plan_dataset(n_plans * 3, 0.5, SEED, broken_per_kind=0)[:n_plans]:
        rng = np.random.default_rng(base.index)
        locs = tuple(sorted(rng.choice(LOCATIONS, 2, replace=False), key=LOCATIONS.index))
        plan = dataclasses.replace(base, modality=modality, plane="axial", slice_spacing=slice_mm, pixel_mm=0.6,
                                   head_and_neck=False, locations=locs)
        pos = render_series(plan, SEED, max_slices=400, max_matrix=160, finish=False)
        neg = render_series(dataclasses.replace(plan, locations=()), SEED, max_slices=400, max_matrix=160, finish=False)
        out.append((pos, neg))
    return out


@pytest.mark.parametrize("modality", ["CTA", "MRA", "MRI T1post"])
def test_sac_is_as_bright_as_its_parent_artery(modality):
    """Noiseless twins: the sac-centre value over the parent's centre-line value is within U(0.9, 1.1).

    (Parents thinner than ~a voxel are partial-volumed on their own centre line, as in real images:
    they are left out of the ratio.)
    """
    lo, hi = L.MODES["realistic"].over_reference
    ratios = []
    for pos, neg in _twins(modality):
        for i, a in enumerate(pos.aneurysms):
            assert pos.values[f"aneurysm{i}"] == pytest.approx(pos.values["artery"] * a.value_factor)
            if a.core_radius > 0 or not _resolved(pos, a):           # a slow-flow core is tested below
                continue
            sac = _sample(pos.volume, pos.geom, a.center)[0]
            artery = _artery(neg, pos.anatomy.vessel(a.parent))
            ratios.append(sac / artery)
            assert lo - 0.02 <= sac / artery <= hi + 0.02, (a.site, 2 * a.radius, sac, artery)
    assert len(ratios) >= 5 and np.ptp(ratios) > 0.03                # the factor varies from sac to sac


def test_t2_sac_is_a_dark_flow_void_like_its_artery():
    """T2: the sac centre is far below the CSF (and below the brain or CSF it displaced), close to its artery."""
    lo, hi = L.MODES["realistic"].over_reference
    n = 0
    for pos, neg in _twins("MRI T2"):
        csf = pos.values["csf"]
        for a in pos.aneurysms:
            sac = _sample(pos.volume, pos.geom, a.center)[0]
            before = _sample(neg.volume, neg.geom, a.center)[0]
            assert sac < 0.15 * csf, (a.site, sac, csf)
            if before > pos.values["brain"] * 0.8:                   # it sat in brain or CSF (not bone, sinus)
                assert sac < 0.3 * before, (a.site, sac, before)
            if _resolved(pos, a):
                artery = _artery(neg, pos.anatomy.vessel(a.parent), dark=True)
                assert lo - 0.05 <= sac / artery <= hi + 0.05, (a.site, sac, artery)
                n += 1
    assert n >= 5


def test_mra_slow_flow_core_in_large_sacs():
    """TOF-MRA: a sac > 7 mm loses signal in an inner core about 40% of the time; the core is darker."""
    anat = A.sample_anatomy(np.random.default_rng(0), (0, 0, 0))
    rng = np.random.default_rng(1)
    sacs = [L.place_aneurysm(anat, loc, rng) for loc in LOCATIONS * 600]
    large = [a for a in sacs if 2 * a.radius > L.SLOW_FLOW_MIN_MM]
    assert all(a.core_radius == 0 for a in sacs if 2 * a.radius <= L.SLOW_FLOW_MIN_MM)
    rate = np.mean([a.core_radius > 0 for a in large])
    assert abs(rate - L.SLOW_FLOW_RATE) < 4 * np.sqrt(L.SLOW_FLOW_RATE * 0.6 / len(large)), rate
    values = L.sac_values(large[:20], "MRA", {"artery": 1.0, "csf": 0.1}, "realistic")
    for i, a in enumerate(large[:20]):
        assert values[f"aneurysm{i}_core"] == pytest.approx(values[f"aneurysm{i}"] * a.core_factor)
    for modality in ("CTA", "MRI T1post", "MRI T2"):                 # contrast fills the sac; T2 is dark anyway
        v = L.sac_values(large[:5], modality, {"artery": 1.0, "csf": 0.1}, "realistic")
        assert all(v[f"aneurysm{i}_core"] == v[f"aneurysm{i}"] for i in range(5))
    assert not any(p.tissue.endswith("_core") for p in L.primitives(large[:5], "CTA"))


def test_the_brightest_cta_sac_stays_below_bone_suppression():
    from willis.synth.contrast import HU_BONE_SUPPRESSION
    for prof in (DEFAULT, HELDOUT):
        brightest = prof.tissues["CTA"]["artery"][1] * L.MODES["realistic"].over_reference[1]
        assert brightest < HU_BONE_SUPPRESSION <= prof.tissues["CTA"]["bone"][0]


def test_diameters_follow_the_stated_distribution():
    rng = np.random.default_rng(0)
    d = np.array([L.sample_diameter(rng) for _ in range(20000)])
    assert 4.85 < np.median(d) < 5.15 and d.min() >= 2.0 and d.max() <= 12.0
    assert 0.65 < np.mean((d >= 3) & (d <= 7)) < 0.75                # "most real aneurysms are 3-7 mm"
    assert np.mean(d < 3) > 0.05 and np.mean(d > 10) > 0.02          # small blebs and a long tail exist
    e = np.array([L.sample_diameter(rng, "exaggerated") for _ in range(5000)])
    assert 6.8 < np.median(e) < 7.2 and e.min() >= 4.0
    # through the placement: no "wider than the parent" rule, so small blebs on a wide ICA occur
    anat = A.sample_anatomy(np.random.default_rng(3), (0, 0, 0))
    placed = [L.place_aneurysm(anat, loc, rng) for loc in LOCATIONS * 300]
    assert 4.7 < np.median([2 * a.radius for a in placed]) < 5.3
    assert any(2 * a.radius < anat.vessel(a.parent).radius * 2 for a in placed if "ICA" in a.parent)
    big = [L.place_aneurysm(anat, loc, rng, "exaggerated") for loc in LOCATIONS * 20]
    assert all(2 * a.radius >= min(L.WIDER_FACTOR * anat.vessel(a.parent).radius, 12.0) - 1e-9 for a in big)


def test_sites_are_mostly_bifurcations_and_junctions():
    """Weighted like the real locations, most sacs sit at a bifurcation, a junction or the AComm."""
    rng = np.random.default_rng(0)
    anat = A.sample_anatomy(rng, (0, 0, 0))
    names = list(A.LOCATION_WEIGHTS)
    w = np.array(list(A.LOCATION_WEIGHTS.values()), float)
    kinds = Counter()
    sites = Counter()
    for loc in rng.choice(names, 3000, p=w / w.sum()):
        a = L.place_aneurysm(anat, str(loc), rng)
        kind = next(k for s, k, *_ in L.sites(a.location) if s == a.site)
        kinds[kind] += 1
        sites[a.site] += 1
    assert (kinds["apex"] + kinds["branch"] + kinds["acomm"]) / 3000 > 0.55
    assert 0.25 < kinds["wall"] / 3000 < 0.45                          # some along segments
    for site in ("AComm", "MCA bifurcation", "ICA-PComm junction", "ICA terminus", "basilar tip",
                 "A1/A2 junction", "cavernous ICA", "ophthalmic ICA", "M1 segment"):
        assert sites[site] > 0, site
    assert {s for s, _ in sites.most_common(2)} == {"AComm", "MCA bifurcation"}   # the two commonest, as in real data


def test_variants_occur_at_their_stated_rates_and_never_depend_on_the_label():
    plans = plan_dataset(1500, 0.42, SEED)
    anats = [A.sample_anatomy(rng_for(SEED, DEFAULT, ANATOMY_STREAM, p.index), p.center_offset) for p in plans]
    y = np.array([p.positive for p in plans])
    expected = {"fetal_pcomm_left": DEFAULT.fetal_pcomm_rate, "fetal_pcomm_right": DEFAULT.fetal_pcomm_rate,
                "hypoplastic_a1_left": DEFAULT.hypoplastic_a1_rate / 2,
                "hypoplastic_a1_right": DEFAULT.hypoplastic_a1_rate / 2,
                "absent_acomm": DEFAULT.absent_acomm_rate, "loop": DEFAULT.loop_rate}
    assert set(expected) == set(A.VARIANTS)
    for name, rate in expected.items():
        x = np.array([a.variants[name] for a in anats])
        sd = np.sqrt(rate * (1 - rate) / len(x))
        assert abs(x.mean() - rate) < 4 * sd, (name, x.mean(), rate)
        diff_sd = np.sqrt(rate * (1 - rate) * (1 / y.sum() + 1 / (~y).sum()))
        assert abs(x[y].mean() - x[~y].mean()) < 4 * diff_sd, name     # the same rate in positives and negatives
    # and the same anatomy whatever the labels: the anatomy stream never sees them
    other = plan_dataset(60, 0.05, SEED)
    for p, q in zip(plans[:60], other):
        a = A.sample_anatomy(rng_for(SEED, DEFAULT, ANATOMY_STREAM, p.index), p.center_offset)
        b = A.sample_anatomy(rng_for(SEED, DEFAULT, ANATOMY_STREAM, q.index), q.center_offset)
        assert all(np.array_equal(u.points, v.points) and u.radius == v.radius for u, v in zip(a.vessels, b.vessels))
    # what the variants look like
    for a in anats[:400]:
        for side, name in (("L", "left"), ("R", "right")):
            pcom, p1 = a.vessel(f"{side} PComm"), a.vessel(f"{side} PCA P1")
            assert (pcom.radius > p1.radius) == a.variants[f"fetal_pcomm_{name}"]
            if a.variants[f"hypoplastic_a1_{name}"]:
                other_side = a.vessel(f"{'R' if side == 'L' else 'L'} ACA A1")
                assert a.vessel(f"{side} ACA A1").radius < 0.7 < other_side.radius
        assert a.vessel("AComm").absent == a.variants["absent_acomm"]
        assert ("AComm" in {v.name for v in a.painted}) != a.variants["absent_acomm"]


def test_loops_and_tortuosity_keep_the_tree_connected():
    for i in range(40):
        a = A.sample_anatomy(np.random.default_rng(i), (0, 0, 0))
        ends = {}
        for v in a.vessels:
            ends.setdefault(tuple(np.round(v.points[0], 6)), []).append(v.name)
            ends.setdefault(tuple(np.round(v.points[-1], 6)), []).append(v.name)
        for node in ("L ica_term", "R mca_bif", "basilar_tip", "L acom", "R p1p2"):
            assert len(ends[tuple(np.round(a.nodes[node], 6))]) >= 2, node   # shared by the segments meeting there
        steps = [np.linalg.norm(np.diff(v.points, axis=0), axis=1).max() for v in a.vessels if not a.variants["loop"]]
        assert not steps or max(steps) <= A.STEP_MM + 4 * DEFAULT.tortuosity_mm[1] + 3 * DEFAULT.node_jitter_mm


def test_infundibula_are_small_funnels_at_branch_origins():
    n_sides = 0
    found = Counter()
    for i in range(400):
        rng = np.random.default_rng([SEED, ANATOMY_STREAM, i])
        anat = A.sample_anatomy(rng, (0, 0, 0))
        conf = sample_confounders(anat, rng)
        funnels = [p for p in conf.primitives if p.tissue == "artery"]
        assert len(funnels) == conf.infundibula
        origins = {name: anat.vessel(name).points[0] for name in
                   [f"{s} {b}" for s in "LR" for b in ("PComm", "SCA", "MCA M2 superior", "MCA M2 inferior")]}
        for f in funnels:
            assert 2 * f.radius < 3.0 and f.radius_b <= f.radius         # < 3 mm wide, tapering
            name = next(n for n, o in origins.items() if np.allclose(o, f.a))
            found[name.split(" ", 1)[1]] += 1
        n_sides += 2
    rate = found["PComm"] / n_sides
    assert abs(rate - DEFAULT.infundibulum_rate) < 4 * np.sqrt(0.12 * 0.88 / n_sides), rate
    assert found["SCA"] < found["PComm"]


def test_heldout_profile_differs_as_documented():
    """Every field that differs between the profiles is in docs/synthetic.md's table, and the draws move."""
    differing = [f.name for f in dataclasses.fields(DEFAULT)
                 if getattr(DEFAULT, f.name) != getattr(HELDOUT, f.name) and f.name not in ("name", "stream_salt")]
    assert len(differing) >= 20
    doc = (ROOT / "docs" / "synthetic.md").read_text()
    table = set(re.findall(r"^\| `([a-z0-9_.]+)`", doc, flags=re.M))
    acq_fields = [f.name for f in dataclasses.fields(Acquisition)]
    for name in differing:
        if name == "acquisition":
            for mod in DEFAULT.acquisition:
                for f in acq_fields:
                    if getattr(DEFAULT.acquisition[mod], f) != getattr(HELDOUT.acquisition[mod], f):
                        assert f"acquisition.{f}" in table, f"acquisition.{f}"
        elif name == "tissues":
            assert "tissues" in table
        else:
            assert name in table, name
    n = 2000
    d, h = plan_dataset(n, 0.42, SEED), plan_dataset(n, 0.42, SEED, profile=HELDOUT)
    assert not {p.series_uid for p in d} & {p.series_uid for p in h}   # same seed, other series
    assert not {p.patient_id for p in d} & {p.patient_id for p in h}
    cta = lambda ps: np.array([p.pixel_mm for p in ps if p.modality == "CTA"])  # noqa: E731
    assert cta(d).max() <= 0.6 < cta(h).max()
    within = lambda x, rate: abs(x - rate) < 4 * np.sqrt(rate * (1 - rate) / n)  # noqa: E731
    for plans, prof in ((d, DEFAULT), (h, HELDOUT)):                   # each draws its own documented mix
        for m, rate in prof.modality_mix.items():
            assert within(np.mean([p.modality == m for p in plans]), rate), (prof.name, m)
        ct = [p for p in plans if p.modality == "CTA"]
        rate = prof.acquisition["CTA"].plane["axial"]
        assert abs(np.mean([p.plane == "axial" for p in ct]) - rate) < 4 * np.sqrt(rate * (1 - rate) / len(ct))
    assert HELDOUT.modality_mix["CTA"] < DEFAULT.modality_mix["CTA"] - 0.05
    fetal = lambda prof: np.mean([A.sample_anatomy(rng_for(SEED, prof, ANATOMY_STREAM, i), (0, 0, 0), prof)  # noqa: E731
                                  .variants["fetal_pcomm_left"] for i in range(600)])
    assert fetal(HELDOUT) > fetal(DEFAULT) + 0.04
    # the same seed and index draw other anatomy and other sacs under the held-out salt
    a = A.sample_anatomy(rng_for(SEED, DEFAULT, ANATOMY_STREAM, 0), (0, 0, 0))
    b = A.sample_anatomy(rng_for(SEED, HELDOUT, ANATOMY_STREAM, 0), (0, 0, 0), HELDOUT)
    assert a.vessels[0].points.shape != b.vessels[0].points.shape or not np.allclose(a.vessels[0].points,
                                                                                   b.vessels[0].points)
    assert rng_for(SEED, DEFAULT, ANEURYSM_STREAM, 0).random() != rng_for(SEED, HELDOUT, ANEURYSM_STREAM, 0).random()


def test_heldout_runs_in_one_line_and_says_so(tmp_path):
    out = tmp_path / "heldout"
    cmd = [sys.executable, "stages/synthesize.py", "--profile", "heldout", "--seed", "777", "--n-series", "3",
           "--out", str(out), "--data-root", str(out)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert manifest["profile"] == "heldout" and manifest["seed"] == 777 and manifest["lesion"] == "realistic"
    assert manifest["params"]["profile"] == "heldout" and len(manifest["series"]) == 3


def test_profile_and_lesion_params_are_validated(tmp_path):
    with pytest.raises(ParamsError, match="synthesize.profile"):
        SynthesizeParams(profile="easy").check()
    with pytest.raises(ParamsError, match="synthesize.lesion"):
        SynthesizeParams(lesion="bright").check()
    from willis.params import load
    text = (ROOT / "params.yaml").read_text().replace("profile: default", "profile: easy", 1)
    bad = tmp_path / "params.yaml"
    bad.write_text(text)
    with pytest.raises(ParamsError, match="synthesize.profile"):
        load(bad)
    p = load(ROOT / "params.yaml").synthesize
    assert p == SynthesizeParams(out=p.out, workers=p.workers)         # params.yaml and the code's defaults agree


def test_exaggerated_mode_is_the_old_teaching_look():
    """Opt-in: sacs 1.4-1.8x their artery (the CSF in T2), CTA at most 650 HU (below bone suppression)."""
    anat = A.sample_anatomy(np.random.default_rng(0), (0, 0, 0))
    rng = np.random.default_rng(1)
    sacs = [L.place_aneurysm(anat, loc, rng, "exaggerated") for loc in LOCATIONS * 10]
    assert all(a.core_radius == 0 for a in sacs)
    for modality, values in (("CTA", {"artery": 450.0, "csf": 5.0}), ("MRA", {"artery": 0.9, "csf": 0.1}),
                             ("MRI T2", {"artery": 0.05, "csf": 0.9}), ("MRI T1post", {"artery": 0.6, "csf": 0.1})):
        v = L.sac_values(sacs, modality, values, "exaggerated")
        ref = values["csf"] if modality == "MRI T2" else values["artery"]
        for i, a in enumerate(sacs):
            expected = ref * a.value_factor if modality != "CTA" else min(ref * a.value_factor, 650.0)
            assert 1.4 <= a.value_factor <= 1.8 and v[f"aneurysm{i}"] == pytest.approx(expected)
