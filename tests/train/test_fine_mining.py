"""Hard-example mining for fine_cnn: the mined cells are where the model's 3-D evidence peaks, and
the crops planned from them look at that point in every view."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from fine_fixtures import toy_slabs
from willis.labels import LABELS, PRESENT_INDEX
from willis.models.fine import STRIDE, FineModel, consensus_3d
from willis.train.fine_crops import CropParams, draw
from willis.train.fine_mining import SEPARATION, mine_cells, mined_plan, peak_cells


def test_mined_plan_inverts_consensus_3d():
    """Light one cell in each view where mined_plan says a 3-D cell projects: consensus_3d adds up
    to 3 there and nowhere else (the other cells of a slab get one view only)."""
    rng = np.random.default_rng(0)
    for k, h in ((3, 12), (17, 68)):
        for _ in range(20):
            cell = rng.integers(h, size=3)
            maps = torch.zeros(1, 3, k, 1, h, h)
            for axis in range(3):
                slab, row, col = mined_plan(cell, axis, k, h)
                r, c = (row - (STRIDE - 1) / 2) / STRIDE, (col - (STRIDE - 1) / 2) / STRIDE
                assert r == int(r) and c == int(c)
                maps[0, axis, slab, 0, int(r), int(c)] = 1.0
            vol = consensus_3d(maps)[0, 0]
            assert float(vol.max()) == 3.0
            assert np.argwhere(vol.numpy() == 3.0).tolist() == [cell.tolist()]


def test_peak_cells_keeps_separated_maxima_strongest_first():
    vol = torch.zeros(12, 12, 12)
    vol[2, 3, 4] = 5.0
    vol[2, 3, 4 + SEPARATION] = 4.0      # inside the first one's window: suppressed
    vol[9, 9, 1] = 3.0
    vol[6, 1, 10] = 2.0
    out = peak_cells(vol, 2)
    assert out.tolist() == [[2, 3, 4], [9, 9, 1]]
    out = peak_cells(vol, 5)
    assert out[:3].tolist() == [[2, 3, 4], [9, 9, 1], [6, 1, 10]]
    assert (np.abs(out[3] - out[:3]).max(axis=1) > SEPARATION).all()     # a zero cell, apart from all three
    # a 4^3 grid has room for one cell only: the rest pad
    assert peak_cells(torch.zeros(4, 4, 4), 3)[1:].tolist() == [[-1, -1, -1]] * 2


class _BrightnessModel(FineModel):
    """A FineModel whose Present map is the slab image's mean brightness per heat-map cell."""

    def maps(self, fine, modality_id):
        b, n_axes, k, c, f, _ = fine.shape
        pooled = F.avg_pool2d(fine[:, :, :, 0].reshape(-1, 1, f, f), STRIDE).reshape(b, n_axes, k, 1, f // STRIDE, f // STRIDE)
        out = torch.full((b, n_axes, k, len(LABELS), f // STRIDE, f // STRIDE), -1.0)
        out[:, :, :, PRESENT_INDEX:PRESENT_INDEX + 1] = pooled
        return out


def test_mining_finds_an_isolated_sphere_through_the_store_conventions():
    """A lone bright sphere (a calcification-like decoy) in a toy volume, projected in the fine
    store's conventions (rows z descending): the strongest mined cell is the sphere's cell, and the
    crops planned from it are centred on the sphere in every view."""
    n, k = 48, 3
    z, y, x = np.mgrid[0:n, 0:n, 0:n].astype(np.float32)
    centre = np.array([30.5, 13.5, 9.5])                                   # (x, y, z) voxels
    v = np.clip(3.5 - np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2), 0, 1)
    fine = toy_slabs(v.astype(np.float32), k)[None]                        # (1, 3, K, 2, n, n)
    model = _BrightnessModel(in_channels=2, n_modalities=1, n_slabs=k, size=n)
    cells = mine_cells(model, fine, np.zeros(1, np.int64), np.array([0]), top=2)
    expect = [int((n - 1 - centre[2]) // STRIDE), int(centre[1] // STRIDE), int(centre[0] // STRIDE)]
    assert cells[0, 0].tolist() == expect

    p = CropParams(size=32, pos_frac=0.0, jitter=0.0, mine_frac=1.0)
    points = np.full((1, 1, 10), -1, np.float32)
    plan = draw(points, np.ones(1, bool), np.zeros(60, np.int64), k, n, p, np.random.default_rng(1), mined=cells[:, :1])
    expect_px = {0: (centre[1], centre[0]), 1: (n - 1 - centre[2], centre[0]), 2: (n - 1 - centre[2], centre[1])}
    assert set(plan[:, 1]) == {0, 1, 2}
    for _, axis, slab, row, col in plan:
        r, c = expect_px[int(axis)]
        assert abs(row - r) <= STRIDE / 2 + 0.5 and abs(col - c) <= STRIDE / 2 + 0.5
        assert fine[0, axis, slab, 0].max() > 200                          # the slab holding the sphere


def test_without_mined_cells_the_crop_plan_is_unchanged():
    """mine_frac only acts once cells are mined: the same seed draws the same plan as before."""
    points = np.full((4, 1, 10), -1, np.float32)
    series = np.arange(4).repeat(5)
    p = CropParams(size=32, mine_frac=0.5)
    a = draw(points, np.ones(4, bool), series, 3, 48, p, np.random.default_rng(7))
    b = draw(points, np.ones(4, bool), series, 3, 48, dataclasses.replace(p, mine_frac=0.0), np.random.default_rng(7))
    assert (a == b).all()
