"""Heat-map targets: golden renders, points move exactly with the pixels, the CenterNet loss by hand."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from train_fixtures import build_family, location_pixel
from willis.labels import LABELS, LOCATIONS, PRESENT_INDEX, flip_permutation
from willis.models.heat import pool_images
from willis.params.train import TrainParams
from willis.train.augment import augment
from willis.train.data import load_family_data
from willis.train.heatmap import (heat_loss, hit_rate, localizer_heat_loss, prior_peaks, render,
                                  transform_points)

L = len(LABELS)
LMCA, RMCA = LABELS.index("Left Middle Cerebral Artery"), LABELS.index("Right Middle Cerebral Artery")


def _point(label, inst, ax, co, sa):
    return [label, inst, *ax, *co, *sa]


def test_render_golden_values():
    # one point: axial (row, col) = (0.6, 0.3) -> cell (2, 1) of a 4 x 4 map; slab 1 of 3
    pts = torch.tensor([[_point(LMCA, 1, (0.6, 0.3), (0.1, 0.9), (1.2, 0.5)),
                         _point(-1, -1, (0, 0), (0, 0), (0, 0))]], dtype=torch.float32)
    views, inst = render(pts, L, 4, 4, sigma=1.0, n_instances=3)
    assert views.shape == (1, 3, L, 4, 4) and inst.shape == (1, 3, L, 4, 4)
    ax = views[0, 0, LMCA]
    assert ax[2, 1] == 1.0
    assert ax[2, 2] == pytest.approx(math.exp(-0.5)) and ax[3, 2] == pytest.approx(math.exp(-1.0))
    assert ax[0, 3] == pytest.approx(math.exp(-(4 + 4) / 2))
    torch.testing.assert_close(views[0, :, PRESENT_INDEX], views[0, :, LMCA])  # Present: every point
    others = [c for c in range(L) if c not in (LMCA, PRESENT_INDEX)]
    assert views[0, :, others].abs().sum() == 0
    assert views[0, 1, LMCA, 0, 3] == 1.0          # coronal (0.1, 0.9) -> cell (0, 3)
    assert views[0, 2].abs().sum() == 0            # sagittal row 1.2: outside the image, no target
    torch.testing.assert_close(inst[0, 1], views[0, 0])  # the slab holding it gets the axial map
    assert inst[0, [0, 2]].abs().sum() == 0


def test_flip_swaps_left_right_and_mirrors_columns():
    pts = torch.tensor([[_point(LMCA, 0, (0.2, 0.3), (0.4, 0.3), (0.4, 0.7))]])
    out = transform_points(pts, torch.tensor([True]), None)
    assert int(out[0, 0, 0]) == RMCA == flip_permutation()[LMCA]
    torch.testing.assert_close(out[0, 0, 2:], torch.tensor([0.2, 0.7, 0.4, 0.7, 0.4, 0.7]))
    same = transform_points(pts, torch.tensor([False]), None)
    torch.testing.assert_close(same, pts)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_points_move_with_the_pixels(seed):
    """A bright spot drawn at each point's pixel lands, after ``augment``, where the transformed point says."""
    s, k = 64, 2
    g = torch.Generator().manual_seed(seed)
    rc = torch.rand(3, 2, generator=g) * 0.5 + 0.25        # per view (row, col), away from the borders
    pts = torch.tensor([[_point(LMCA, 1, rc[0].tolist(), rc[1].tolist(), rc[2].tolist())]])
    yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")

    def spot(r, c):  # Gaussian blob centred on the pixel whose centre is at normalised (r, c)
        return torch.exp(-((yy - (r * s - 0.5)) ** 2 + (xx - (c * s - 0.5)) ** 2) / 4.0)

    mip = torch.stack([spot(*rc[v]) for v in range(3)])[None, :, None]            # (1, 3, 1, S, S)
    inst = torch.stack([torch.zeros(s, s), spot(*rc[0])])[None, :, None]           # (1, 2, 1, S, S)
    p = dataclasses.replace(TrainParams(), flip_p=0.5, affine_deg=20.0, affine_scale=0.15,
                            affine_shift=0.1, intensity=0.0)
    y = torch.zeros(1, L)
    m2, i2, _, p2 = augment(mip, inst, y, p, torch.Generator().manual_seed(seed), pts)

    def peak(img):  # intensity-weighted centroid, normalised like the points
        w = img / img.sum()
        return torch.stack([(w * yy).sum(), (w * xx).sum()]).add(0.5).div(s)

    for v, sl in enumerate([slice(2, 4), slice(4, 6), slice(6, 8)]):
        torch.testing.assert_close(peak(m2[0, v, 0]), p2[0, 0, sl], atol=0.6 / s, rtol=0)
    torch.testing.assert_close(peak(i2[0, 1, 0]), p2[0, 0, 2:4], atol=0.6 / s, rtol=0)


def test_heat_loss_by_hand():
    # logits 0 (p = 1/2) on a 1 x 1 x 1 x 2 x 1 map: one peak (t = 1) and one cell t = 0.5
    logits = torch.zeros(1, 1, 1, 2, 1)
    target = torch.tensor([1.0, 0.5]).view(1, 1, 1, 2, 1)
    total, n_pos = heat_loss(logits, target, torch.tensor([True]))
    pos = 0.25 * math.log(2)                  # -(1 - p)^2 log p
    neg = 0.5 ** 4 * 0.25 * math.log(2)       # -(1 - t)^4 p^2 log(1 - p)
    assert n_pos == 1 and float(total) == pytest.approx(pos + neg, rel=1e-6)
    total, n_pos = heat_loss(logits, target, torch.tensor([False]))  # masked series: nothing
    assert n_pos == 0 and float(total) == 0.0


def test_localizer_loss_falls_when_the_map_matches():
    pts = torch.tensor([[_point(LMCA, 0, (0.6, 0.3), (0.6, 0.3), (0.6, 0.3))]])
    t_views, _ = render(pts, L, 8, 8, 1.0)
    good = {"heat_views": torch.where(t_views >= 1, 6.0, -6.0)}
    bad = {"heat_views": torch.where(t_views >= 1, -6.0, 6.0)}
    mask = torch.tensor([True])
    assert float(localizer_heat_loss(good, pts, mask, 1.0)) < 0.01 < float(localizer_heat_loss(bad, pts, mask, 1.0))


def test_pool_images_mean_of_view_maxima_and_best_slab():
    views = torch.full((1, 3, L, 2, 2), -5.0)
    views[0, 0, 3, 1, 1], views[0, 1, 3, 0, 0] = 1.0, 3.0
    inst = torch.full((1, 4, L, 2, 2), -5.0)
    inst[0, 2, 3, 0, 1] = 7.0
    assert float(pool_images(views)[0, 3]) == pytest.approx((1 + 3 - 5) / 3)
    assert float(pool_images(views, inst)[0, 3]) == pytest.approx((1 + 3 - 5 + 7) / 4)


def test_points_from_the_store_land_on_the_blob(tmp_path):
    fam = build_family(tmp_path, "mr", n=12, size=16, k=4, channels=1)
    d = load_family_data("mr", fam["store"], fam["index"])
    loc = fam["localizers"].set_index("SeriesInstanceUID")
    for uid, k in fam["truth_instance"].items():
        i = d.uids.index(uid)
        row = d.points[i, 0]
        j = LOCATIONS.index(loc.loc[uid, "location"])
        assert row[0] == j and row[1] == k
        r, c = location_pixel(j, 16)
        np.testing.assert_allclose(row[2:4] * 16 - 0.5, [r, c], atol=1e-5)   # axial pixel of the blob
        assert d.heat_mask[i]
    neg = [i for i, u in enumerate(d.uids) if u not in fam["truth_instance"]]
    assert (d.points[neg, :, 0] == -1).all() and d.heat_mask[neg].all()


def test_hit_rate_by_hand():
    pts = np.full((3, 2, 8), -1.0, dtype=np.float32)
    pts[0, 0] = _point(LMCA, 0, (0.5, 0.5), (0.5, 0.5), (1.5, 0.5))   # sagittal outside: 2 views count
    pts[1, 0] = _point(RMCA, 0, (0.2, 0.2), (0.2, 0.2), (0.2, 0.2))
    pts[1, 1] = _point(LMCA, 0, (0.8, 0.8), (0.8, 0.8), (0.8, 0.8))   # either point may be hit
    peaks = np.zeros((3, 3, 2), dtype=np.float32)
    peaks[0] = [[0.55, 0.5], [0.9, 0.9], [0.5, 0.5]]                   # axial hit, coronal miss
    peaks[1] = [[0.8, 0.75], [0.2, 0.25], [0.5, 0.5]]                  # hit, hit, miss
    # series 2 has no point: not counted
    assert hit_rate(peaks, pts, tolerance=0.1) == pytest.approx(3 / 5)
    assert hit_rate(peaks, pts, tolerance=0.04) == pytest.approx(0 / 5)
    assert np.isnan(hit_rate(peaks[2:], pts[2:]))
    # chance level: every series gets the training points' per-view median
    prior = prior_peaks(pts[:2], 4)
    assert prior.shape == (4, 3, 2)
    np.testing.assert_allclose(prior[0, 0], [0.5, 0.5])          # median of 0.5, 0.2, 0.8
    np.testing.assert_allclose(prior[3, 2], [0.8, 0.5])          # sagittal rows 1.5, 0.2, 0.8


def test_a_positive_whose_points_are_all_cropped_away_trains_no_maps(tmp_path):
    fam = build_family(tmp_path, "mr", n=12, size=16, k=4, channels=1)
    uid = next(iter(fam["truth_instance"]))
    loc = fam["localizers"].copy()
    i = loc.index[loc["SeriesInstanceUID"] == uid][0]
    loc.at[i, "patient"] = [500.0, 500.0, 500.0]        # far outside the ROI in every view
    loc.to_parquet(fam["index"] / "localizers.parquet")
    d = load_family_data("mr", fam["store"], fam["index"])
    row = d.uids.index(uid)
    assert d.points[row, 0, 0] >= 0                      # the point is kept (and reported) ...
    assert not d.heat_mask[row]                          # ... but the series' maps are not trained
    assert d.heat_mask[[j for j in range(len(d.uids)) if j != row]].all()
