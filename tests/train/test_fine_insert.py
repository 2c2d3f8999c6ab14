"""Sac insertion for fine_cnn: a painted sac has its vessel's contrast (bright or dark), grows from
the vessel, touches only the slab's own channels of crops not aimed at a sac, and teaches Present
alone."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from willis.labels import LABELS, PRESENT_INDEX
from willis.train.fine_crops import CropParams, make_batch
from willis.train.fine_insert import (Inserter, InsertParams, insert_sacs, loss_weights, paint,
                                      vessel_channels)

W = 144
VESSEL, BG = 200.0, 40.0


def _vessel_image(dark_channel: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(3, W, W) float32: a 6-pixel-wide oblique vessel; channel 0 bright (a maximum projection),
    channel 1 the same brighter, channel 2 dark like a T2 lumen (or bright, if not ``dark_channel``)."""
    yy, xx = np.mgrid[0:W, 0:W]
    on = np.abs(yy - 0.3 * xx - 50) / np.hypot(1, 0.3) < 3
    img = np.stack([np.where(on, VESSEL, BG), np.where(on, 220.0, 30.0),
                    np.where(on, 20.0, 120.0) if dark_channel else np.where(on, 90.0, 10.0)]).astype(np.float32)
    return img, on


def test_painted_sac_has_the_contrast_of_its_vessel_and_grows_from_it():
    p = InsertParams(p=1.0)
    rng = np.random.default_rng(0)
    for _ in range(30):
        img, on = _vessel_image()
        before = img.copy()
        at = paint(img, 1, None, p, rng, (24, W - 24))
        assert at is not None
        changed = np.abs(img - before).max(axis=0) > 0.5
        assert changed.any()
        # the vessel's contrast x U(0.9, 1.1): never brighter than 1.1 x, and the disc's core reaches >= 0.9 x
        for ch in range(3):
            contrast = img[ch] - np.median(before[ch])
            vessel_contrast = before[ch][on][0] - np.median(before[ch])
            assert contrast.max() <= 1.1 * vessel_contrast + 1e-3
        r, c = int(round(at[0])), int(round(at[1]))
        assert img[0, r, c] - BG >= 0.9 * (VESSEL - BG) - 1e-3 or on[r, c]
        # a sac grows from the vessel: the painted pixels and the vessel are one connected blob
        labels, n = ndimage.label(changed | on)
        assert n == 1


def test_a_dark_lumen_gets_a_dark_sac():
    """Where the vessel is darker than the background (a T2 lumen in a mean channel), the sac is
    painted darker, never brighter."""
    rng = np.random.default_rng(1)
    for _ in range(20):
        img, on = _vessel_image(dark_channel=True)
        before = img.copy()
        assert paint(img, 0, None, InsertParams(p=1.0), rng, (24, W - 24)) is not None
        assert (img[2] <= before[2] + 1e-4).all()
        assert (img[2] < before[2] - 1).any()
        assert img[2].min() >= 20.0 * 1.1 - 120.0 * 0.1 - 1e-3     # bg + 1.1 x (vessel - bg)


def test_no_vessel_no_sac():
    img = np.full((3, W, W), 50.0, np.float32)
    assert paint(img, 0, None, InsertParams(p=1.0), np.random.default_rng(0), (24, W - 24)) is None
    assert (img == 50.0).all()


def test_mean_channel_gets_a_spherical_cap():
    """The mean-type channel peaks at the sac's centre and falls off towards its rim; a maximum
    channel is flat across the disc."""
    rng = np.random.default_rng(3)
    img, on = _vessel_image()
    at = paint(img, 1, 2, InsertParams(p=1.0, median_mm=9.0, log_sd=0.01), rng, (24, W - 24))
    r, c = int(round(at[0])), int(round(at[1]))
    ray = img[2, r, c:c + 30]
    assert ray[0] >= ray[6] >= ray[8]
    assert abs(float(img[0, r, c]) - float(img[0, r, c + 4])) < 25


def test_vessel_channels_per_sub_modality():
    assert vessel_channels(["vessel", "highlight", "thickness"], ["CTA"]).tolist() == [1]
    assert vessel_channels(["vessel", "thickness", "dark"], ["MRA", "MRI T2", "MRI T1post"]).tolist() == [0, 2, 0]


def test_pick_only_crops_not_aimed_at_a_sac():
    aimed = np.array([True, False, False, True])
    ins = Inserter.for_store(InsertParams(p=1.0), ["vessel", "highlight", "thickness"], ["CTA"])
    assert ins.pick(aimed, np.random.default_rng(0)).tolist() == [False, True, True, False]
    half = Inserter.for_store(InsertParams(p=0.5), ["vessel"], ["CTA"]).pick(np.zeros(4000, bool), np.random.default_rng(0))
    assert 0.45 < half.mean() < 0.55
    assert not Inserter.for_store(InsertParams(p=0.0), ["vessel"], ["CTA"]).pick(aimed, np.random.default_rng(0)).any()


def test_insert_sacs_paints_only_picked_crops_and_only_the_slabs_own_channels():
    rng = np.random.default_rng(0)
    img, _ = _vessel_image()
    win = np.repeat(np.concatenate([img, img])[None], 4, axis=0).astype(np.uint8)   # (4, 6, W, W): slab + 1 context
    wpts = np.full((4, 2, 3), -1.0, np.float32)
    picked = np.array([False, True, False, True])
    ins = Inserter.for_store(InsertParams(p=1.0), ["vessel", "highlight", "thickness"], ["CTA"])
    out, pts, inserted = insert_sacs(win.copy(), wpts, picked, np.zeros(4, np.int64), ins, 3, 96, rng)
    assert inserted.tolist() == picked.tolist()
    assert (out[~picked] == win[~picked]).all()
    assert (out[:, 3:] == win[:, 3:]).all()                       # the context slab is untouched
    assert (out[picked, :3] != win[picked, :3]).any(axis=(1, 2, 3)).all()
    assert pts.shape == (4, 3, 3)
    assert (pts[inserted, 2, 0] == PRESENT_INDEX).all() and (pts[~inserted, 2, 0] == -1).all()
    assert (np.abs(pts[inserted, 2, 1:]) < 1).all()


def test_loss_weights_keep_present_for_inserted_crops():
    mask = torch.tensor([True, True, False])
    inserted = torch.tensor([False, True, False])
    w = loss_weights(mask, inserted)
    assert w.shape == (3, 1, len(LABELS), 1, 1)
    assert (w[0] == 1).all() and (w[2] == 0).all()
    assert w[1, 0, PRESENT_INDEX, 0, 0] == 1 and w[1].sum() == 1


def test_insertion_off_leaves_the_batch_unchanged():
    """insert_p 0 (the default) draws nothing more: the batch equals one made without an inserter."""
    from fine_fixtures import toy_slabs
    rng0 = np.random.default_rng(0)
    vol = rng0.random((64, 64, 64)).astype(np.float32)
    fine = np.stack([toy_slabs(vol, 4)] * 3)                     # (3, 3, K, C, F, F)
    pts = np.full((3, 1, 10), -1.0, np.float32)
    known = np.ones(3, bool)
    mod = np.zeros(3, np.int64)
    cp = CropParams(size=32)
    ins = Inserter.for_store(InsertParams(p=0.0), ["vessel", "highlight", "thickness"], ["CTA"])
    batches = []
    for inserter in (None, ins):
        b = make_batch(fine, pts, known, mod, np.arange(3), cp, np.random.default_rng(5),
                       torch.Generator().manual_seed(5), torch.device("cpu"), inserter=inserter)
        batches.append(b)
    assert torch.equal(batches[0]["image"], batches[1]["image"])
    assert torch.equal(batches[0]["target"], batches[1]["target"])
    assert not batches[1]["inserted"].any()
