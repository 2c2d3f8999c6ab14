"""Losses against hand-computed values and torch references."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from willis.labels import LABELS, PRESENT_INDEX
from willis.train.losses import (MultiLabelLoss, asymmetric_loss, attention_loss, focal_bce,
                                 hierarchy_penalty, pos_weight_from)


def sig(x):
    return 1 / (1 + math.exp(-x))


def test_asl_hand_computed():
    x = torch.tensor([[0.0, 2.0, -3.0, 1.0]])
    y = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    got = asymmetric_loss(x, y, gamma_pos=1.0, gamma_neg=4.0, clip=0.05)[0].tolist()
    p2 = sig(2.0) - 0.05
    want = [
        -(1 - 0.5) ** 1 * math.log(0.5),            # positive, p = 0.5, focusing (1 - p)^1
        -(p2 ** 4) * math.log(1 - p2),              # negative, shifted p_m = p - clip
        0.0,                                        # easy negative: p = 0.047 < clip -> discarded
        -(1 - sig(1.0)) * math.log(sig(1.0)),
    ]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_asl_without_asymmetry_is_bce():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 14, generator=g) * 3
    y = (torch.rand(5, 14, generator=g) > 0.7).float()
    ref = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    torch.testing.assert_close(asymmetric_loss(x, y, 0.0, 0.0, 0.0), ref, rtol=1e-5, atol=1e-6)


def test_focal_hand_computed_and_bce_reference():
    x = torch.tensor([[0.0, 1.0]])
    y = torch.tensor([[1.0, 0.0]])
    pw = torch.tensor([3.0, 3.0])
    got = focal_bce(x, y, pw, gamma=2.0, focal_weight=1.0)[0].tolist()
    # x=0, y=1: bce = 3 * log 2, p_t = 0.5 -> * (1 + 0.25); x=1, y=0: bce = -log(1 - s(1)), p_t = 1 - s(1)
    want = [3 * math.log(2) * 1.25, -math.log(1 - sig(1.0)) * (1 + sig(1.0) ** 2)]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 14, generator=g)
    y = (torch.rand(4, 14, generator=g) > 0.5).float()
    pw = torch.rand(14, generator=g) * 5 + 1
    ref = F.binary_cross_entropy_with_logits(x, y, pos_weight=pw, reduction="none")
    torch.testing.assert_close(focal_bce(x, y, pw, gamma=2.0, focal_weight=0.0), ref)


def test_pos_weight_from_training_labels():
    y = np.zeros((10, 14))
    y[:2, 0] = 1        # 2 pos / 8 neg -> 4
    y[:, 1] = 1         # all positive -> n_neg/n_pos = 0 -> clipped up to 1
    y[:1, 2] = 1        # 1 / 9 -> 9, capped at 5
    pw = pos_weight_from(y, cap=5.0).numpy()
    assert pw[0] == pytest.approx(4.0)
    assert pw[1] == 1.0
    assert pw[2] == 5.0
    assert pw[3] == 1.0  # no positive at all: neutral weight, not infinity


def test_hierarchy_penalty_hand_computed():
    logits = torch.full((1, 14), -50.0)
    logits[0, PRESENT_INDEX] = 0.0      # p_present = 0.5
    logits[0, 0] = math.log(3)          # p = 0.75 -> 0.25 above present
    logits[0, 1] = 0.0                  # p = 0.5: equal, no cost
    assert hierarchy_penalty(logits).item() == pytest.approx(0.25 / 13, rel=1e-5)


def test_attention_loss_masks_rows_without_localizers():
    attn = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]])
    target = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    mask = torch.tensor([True, False])
    assert attention_loss(attn, target, mask).item() == pytest.approx(-math.log(0.25))
    assert attention_loss(attn, target, torch.tensor([False, False])).item() == 0.0


def test_present_weight_reduction():
    x = torch.zeros(1, 14)
    y = torch.zeros(1, 14)
    y[0, PRESENT_INDEX] = 1.0
    loss = MultiLabelLoss("focal", len(LABELS), present_weight=13.0, focal=(2.0, 0.0))
    # every column: bce = log 2; weighted mean over (13 * 1 + 13) / 26 -> log 2
    assert loss(x, y).item() == pytest.approx(math.log(2), rel=1e-6)
    x[0, PRESENT_INDEX] = 2.0  # only Present changes: weight 13 of 26
    want = (13 * math.log(2) + 13 * -math.log(sig(2.0))) / 26
    assert loss(x, y).item() == pytest.approx(want, rel=1e-6)
