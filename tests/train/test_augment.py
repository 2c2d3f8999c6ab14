"""Left-right flip: exactly the L/R label pairs swap; axial/coronal mirror, sagittal does not."""

import dataclasses

import numpy as np
import torch

from willis.labels import LABELS, LR_PAIRS
from willis.params.train import TrainParams
from willis.train.augment import augment, flip_lr


def test_flip_swaps_exactly_the_left_right_pairs():
    y = torch.arange(len(LABELS), dtype=torch.float32)[None].repeat(2, 1)  # distinct value per column
    mip = torch.rand(2, 3, 1, 4, 4)
    inst = torch.rand(2, 5, 1, 4, 4)
    _, _, yf = flip_lr(mip, inst, y, torch.tensor([True, False]))
    swapped = {i for pair in LR_PAIRS for i in pair}
    for left, right in LR_PAIRS:
        assert LABELS[left].replace("Left ", "") == LABELS[right].replace("Right ", "")
        assert yf[0, left] == right and yf[0, right] == left
    for j, name in enumerate(LABELS):
        if j not in swapped:  # midline: AComm, Basilar Tip, Other Posterior, Present
            assert yf[0, j] == j, name
    assert len(swapped) == 10
    torch.testing.assert_close(yf[1], y[1])  # not selected: untouched


def test_flip_mirrors_axial_and_coronal_not_sagittal():
    g = torch.Generator().manual_seed(0)
    mip = torch.rand(1, 3, 2, 6, 6, generator=g)
    inst = torch.rand(1, 4, 2, 6, 6, generator=g)
    m2, i2, _ = flip_lr(mip, inst, None, torch.tensor([True]))
    np.testing.assert_array_equal(m2[0, 0].numpy(), mip[0, 0].numpy()[..., ::-1])  # axial: columns R<->L
    np.testing.assert_array_equal(m2[0, 1].numpy(), mip[0, 1].numpy()[..., ::-1])  # coronal: columns R<->L
    np.testing.assert_array_equal(m2[0, 2].numpy(), mip[0, 2].numpy())              # sagittal: max over L-R
    np.testing.assert_array_equal(i2.numpy(), inst.numpy()[..., ::-1])
    m3, i3, _ = flip_lr(m2, i2, None, torch.tensor([True]))                         # an involution
    torch.testing.assert_close(m3, mip)
    torch.testing.assert_close(i3, inst)


def test_sagittal_mip_is_invariant_to_a_volume_mirror():
    # the fact the flip relies on: max along x of a volume equals max along x of its x-mirror
    vol = np.random.default_rng(0).random((5, 6, 7))  # (z, y, x)
    np.testing.assert_array_equal(vol.max(axis=2), vol[:, :, ::-1].max(axis=2))


def test_augment_seeded_and_in_range():
    p = TrainParams()
    g = torch.Generator().manual_seed(0)
    mip, inst = torch.rand(4, 3, 2, 16, 16, generator=g), torch.rand(4, 3, 2, 16, 16, generator=g)
    y = torch.zeros(4, len(LABELS))
    a = augment(mip, inst, y, p, torch.Generator().manual_seed(5))
    b = augment(mip, inst, y, p, torch.Generator().manual_seed(5))
    assert a[3] is None  # no points given, none returned
    for u, v in zip(a[:3], b[:3]):
        torch.testing.assert_close(u, v, rtol=0, atol=0)
    assert a[0].shape == mip.shape and a[1].shape == inst.shape
    assert float(a[0].min()) >= 0 and float(a[1].max()) <= 1
    # switched off: only the flip remains, and with flip_p = 0 the batch is unchanged
    off = dataclasses.replace(p, flip_p=0.0, affine_deg=0.0, affine_scale=0.0, affine_shift=0.0, intensity=0.0)
    c = augment(mip, inst, y, off, torch.Generator().manual_seed(5))
    torch.testing.assert_close(c[0], mip)
    torch.testing.assert_close(c[1], inst)
