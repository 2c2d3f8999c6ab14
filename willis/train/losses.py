"""Multi-label losses over the 14 columns, the hierarchy penalty and the auxiliary attention loss.

All take logits (B, 14) in ``willis.labels.LABELS`` order and 0/1 targets (B, 14), and reduce to
``mean over the batch of sum_c w_c * loss_c / sum_c w_c`` with column weights ``w`` (Aneurysm
Present gets ``present_weight``, each location 1): the metric weighs Present as much as all 13
locations together, so its weight is a knob.

- Asymmetric Loss (Ridnik et al. 2021, "Asymmetric Loss For Multi-Label Classification"):
  ``L+ = (1-p)^g+ * log(p)``, ``L- = p_m^g- * log(1-p_m)`` with ``p_m = max(p - clip, 0)``: easy
  negatives (most location columns, most of the time) are down-weighted and the very easy ones
  discarded, which is what a 13-way, ~3 %-positive label set needs.
- BCE + focal: ``bce_pw * (1 + focal_weight * (1 - p_t)^gamma)`` where ``bce_pw`` is
  BCEWithLogits with per-class ``pos_weight = n_neg / n_pos`` from the training split (capped).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from willis.labels import PRESENT_INDEX
from willis.params.train import TrainParams

EPS = 1e-8  # log floor


def column_weights(n_labels: int, present_weight: float) -> torch.Tensor:
    w = torch.ones(n_labels)
    w[PRESENT_INDEX] = present_weight
    return w


def pos_weight_from(y: np.ndarray, cap: float) -> torch.Tensor:
    """Per-class n_neg / n_pos over the training labels (N, 14), in [1, cap]; 1 where n_pos == 0."""
    y = np.asarray(y, dtype=np.float64)
    n_pos = y.sum(axis=0)
    n_neg = y.shape[0] - n_pos
    pw = np.where(n_pos > 0, n_neg / np.maximum(n_pos, 1), 1.0)
    return torch.tensor(np.clip(pw, 1.0, cap), dtype=torch.float32)


def asymmetric_loss(logits: torch.Tensor, y: torch.Tensor, gamma_pos: float = 0.0,
                    gamma_neg: float = 4.0, clip: float = 0.05) -> torch.Tensor:
    """Element-wise ASL, (B, L) -> (B, L), non-negative."""
    logits = logits.float()
    p = torch.sigmoid(logits)
    p_m = (p - clip).clamp(min=0) if clip > 0 else p           # shifted probability for negatives
    loss_pos = y * (1 - p).pow(gamma_pos) * F.logsigmoid(logits)
    loss_neg = (1 - y) * p_m.pow(gamma_neg) * torch.log((1 - p_m).clamp(min=EPS))
    return -(loss_pos + loss_neg)


def focal_bce(logits: torch.Tensor, y: torch.Tensor, pos_weight: torch.Tensor | None,
              gamma: float = 2.0, focal_weight: float = 1.0) -> torch.Tensor:
    """Element-wise BCE(pos_weight) * (1 + focal_weight * (1 - p_t)^gamma), (B, L) -> (B, L)."""
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * y + (1 - p) * (1 - y)  # probability given to the true class
    return bce * (1 + focal_weight * (1 - p_t).pow(gamma))


def hierarchy_penalty(logits: torch.Tensor) -> torch.Tensor:
    """Mean of relu(p_location - p_present): an aneurysm at a location implies one is present."""
    p = torch.sigmoid(logits.float())
    present = p[:, PRESENT_INDEX:PRESENT_INDEX + 1]            # (B, 1)
    locations = torch.cat([p[:, :PRESENT_INDEX], p[:, PRESENT_INDEX + 1:]], dim=1)  # (B, 13)
    return F.relu(locations - present).mean()


def attention_loss(attention: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the attention (B, K) against a target distribution (B, K), on rows ``mask``.

    ``target`` rows sum to 1 over the instances holding an annotated aneurysm. Rows without a
    localizer (negatives, missing annotations) are masked out; no such row -> 0.
    """
    if not bool(mask.any()):
        return attention.new_zeros(()).float()
    ce = -(target * torch.log(attention.float().clamp(min=EPS))).sum(dim=1)  # (B,)
    return ce[mask].mean()


class MultiLabelLoss(nn.Module):
    """The configured classification loss + optional hierarchy penalty, one scalar per batch."""

    def __init__(self, kind: str, n_labels: int, present_weight: float = 1.0,
                 pos_weight: torch.Tensor | None = None, asl=(0.0, 4.0, 0.05),
                 focal=(2.0, 1.0), hierarchy_weight: float = 0.0):
        super().__init__()
        if kind not in ("asl", "focal"):
            raise ValueError(f"unknown loss {kind!r}; expected 'asl' or 'focal'")
        self.kind, self.asl, self.focal, self.hierarchy_weight = kind, asl, focal, hierarchy_weight
        self.register_buffer("w", column_weights(n_labels, present_weight))
        self.register_buffer("pos_weight", pos_weight if pos_weight is not None else torch.ones(n_labels))

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.kind == "asl":
            per = asymmetric_loss(logits, y, *self.asl)
        else:
            per = focal_bce(logits, y, self.pos_weight, *self.focal)
        loss = (per * self.w).sum(dim=1).mean() / self.w.sum()
        if self.hierarchy_weight > 0:
            loss = loss + self.hierarchy_weight * hierarchy_penalty(logits)
        return loss


def make_loss(p: TrainParams, pos_weight: torch.Tensor, n_labels: int) -> MultiLabelLoss:
    """From the family's train section."""
    return MultiLabelLoss(p.loss, n_labels, p.present_weight, pos_weight,
                          asl=(p.asl_gamma_pos, p.asl_gamma_neg, p.asl_clip),
                          focal=(p.focal_gamma, p.focal_weight), hierarchy_weight=p.hierarchy_weight)
