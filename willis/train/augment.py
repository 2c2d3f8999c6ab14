"""Batch augmentation on the training device (GPU when there is one): L-R flip, light affine, intensity.

Left-right flip, thought through against the projection conventions (willis/projections/store.py):
- axial MIP and axial instances: image columns run patient right -> left (radiological display),
  so mirroring the columns (last axis) mirrors patient left/right;
- coronal MIP: columns also run patient right -> left: mirror the columns too;
- sagittal MIP: it is the maximum *along* the left-right axis, so it is unchanged by a left-right
  mirror of the volume (max is order-free); its columns run anterior -> posterior and must NOT flip;
- labels: every Left/Right pair swaps (``willis.labels.flip_permutation()``); midline labels
  (AComm, Basilar Tip, Other Posterior Circulation, Present) stay;
- localizer targets for the attention loss depend only on z (which instance), unchanged;
  the heat-map points move with the pixels (``willis.train.heatmap.transform_points``).

The affine (rotation, zoom, shift) and the intensity jitter are drawn once per series and applied
to all of its images alike, so the three views and the K instances stay mutually consistent.
All randomness comes from one ``torch.Generator`` on the batch's device: a fixed seed repeats.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from willis.labels import flip_permutation
from willis.params.train import TrainParams
from willis.projections.views import VIEWS
from willis.train.heatmap import transform_points

# views (indices of the ``mip`` array's view axis) whose columns mirror under a patient L-R flip
LR_FLIPPED_VIEWS = (VIEWS.index("axial"), VIEWS.index("coronal"))


def flip_lr(mip: torch.Tensor, instances: torch.Tensor, y: torch.Tensor | None, which: torch.Tensor):
    """Mirror patient left/right for the series where ``which`` (B,) bool is True.

    mip (B, 3, C, S, S), instances (B, K, C, S, S), y (B, 14) or None. Returns new tensors.
    """
    sel = which.view(-1, 1, 1, 1, 1)
    view_mask = torch.zeros(mip.shape[1], dtype=torch.bool, device=mip.device)
    view_mask[list(LR_FLIPPED_VIEWS)] = True
    sel_views = sel & view_mask.view(1, -1, 1, 1, 1)               # (B, 3, 1, 1, 1)
    mip = torch.where(sel_views, mip.flip(-1), mip)
    instances = torch.where(sel, instances.flip(-1), instances)
    if y is not None:
        perm = torch.tensor(flip_permutation(), device=y.device)
        y = torch.where(which.view(-1, 1), y[:, perm], y)
    return mip, instances, y


def _random_affine(x: torch.Tensor, deg: float, scale: float, shift: float,
                   gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    # x: (B, N, C, S, S) -> same shape, and theta (B, 2, 3); one transform per series, shared by
    # its N images
    b, n, c, h, w = x.shape
    dev = x.device

    def u():  # uniform in [-1, 1), (B,)
        return torch.rand(b, generator=gen, device=dev) * 2 - 1

    ang, zoom = u() * math.radians(deg), 1 + u() * scale
    tx, ty = u() * 2 * shift, u() * 2 * shift  # affine_grid coordinates span [-1, 1]: 2 = full width
    cos, sin = torch.cos(ang) / zoom, torch.sin(ang) / zoom
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, (b, n * c, h, w), align_corners=False)
    out = F.grid_sample(x.reshape(b, n * c, h, w), grid, mode="bilinear", padding_mode="zeros",
                        align_corners=False)
    return out.view(b, n, c, h, w), theta


def augment(mip: torch.Tensor, instances: torch.Tensor, y: torch.Tensor, p: TrainParams, gen: torch.Generator,
            points: torch.Tensor | None = None):
    """Training-time augmentation of one batch (float in [0, 1] on its device).

    Returns (mip, instances, y, points): ``points`` (B, P, 8) moved with the pixels, or None."""
    b, k = instances.shape[:2]
    dev = mip.device
    which = torch.rand(b, generator=gen, device=dev) < p.flip_p
    mip, instances, y = flip_lr(mip, instances, y, which)
    x = torch.cat([mip, instances], dim=1)                         # (B, 3 + K, C, S, S)
    theta = None
    if p.affine_deg > 0 or p.affine_scale > 0 or p.affine_shift > 0:
        x, theta = _random_affine(x, p.affine_deg, p.affine_scale, p.affine_shift, gen)
    if points is not None:
        points = transform_points(points, which, theta)
    if p.intensity > 0:
        contrast = 1 + p.intensity * (torch.rand(b, generator=gen, device=dev) * 2 - 1)
        bright = 0.5 * p.intensity * (torch.rand(b, generator=gen, device=dev) * 2 - 1)
        x = (x * contrast.view(-1, 1, 1, 1, 1) + bright.view(-1, 1, 1, 1, 1)).clamp(0, 1)
    return x[:, :3], x[:, 3:], y, points
