"""Heat-map targets from localizers: where each annotated aneurysm lands in every training image.

Points (built once per series by ``willis.train.data``) are float32 (N, P, 8) in the layout of
``willis.projections.targets``: ``[label, instance, ax_row, ax_col, co_row, co_col, sa_row, sa_col]``,
normalised image coordinates, so targets can be drawn at any map resolution (the model's
``input_size`` / 8).

Augmentation moves the points with the images (``transform_points``): the left-right flip mirrors
the axial/coronal/slab columns and swaps the Left/Right labels, exactly as ``flip_lr`` does for the
pixels and label columns; the affine applies the inverse of ``F.affine_grid``'s sampling map.

Targets (``render``): per image, per channel, a Gaussian of ``sigma`` cells centred on the cell
holding the point, peak exactly 1 there (CenterNet, Zhou et al. 2019); each point draws in its
location's channel and in the Present channel. The loss (``heat_loss``) is CenterNet's
penalty-reduced focal loss, normalised by the number of peaks in the batch.
"""

from __future__ import annotations

import numpy as np
import torch

from willis.labels import PRESENT_INDEX, flip_permutation
from willis.projections.targets import INSTANCE, LABEL, VIEW_SLICES, visible

HIT_TOLERANCE = 0.05  # hit_rate: 5 % of the image side (6.4 px at S = 128, ~10 mm of head): a peak in
                      # the right stride-8 cell always counts (its centre is <= 5.7 px from any point in it)
LR_FLIPPED_COLS = (3, 5)                              # axial and coronal columns mirror under a L-R flip


def transform_points(points: torch.Tensor, flip: torch.Tensor | None, theta: torch.Tensor | None) -> torch.Tensor:
    """Apply ``augment``'s flip (B,) bool and affine ``theta`` (B, 2, 3) to points (B, P, 8)."""
    pts = points.clone()
    if flip is not None:
        sel = flip.view(-1, 1)
        perm = torch.tensor(flip_permutation(), device=pts.device, dtype=torch.long)
        label = pts[..., LABEL].long()
        swapped = torch.where(label >= 0, perm[label.clamp(min=0)], label).to(pts.dtype)
        pts[..., LABEL] = torch.where(sel, swapped, pts[..., LABEL])
        for c in LR_FLIPPED_COLS:
            pts[..., c] = torch.where(sel, 1.0 - pts[..., c], pts[..., c])
    if theta is not None:
        # affine_grid: input position = A @ output position + t, in [-1, 1] coordinates (x = col, y = row)
        a_inv = torch.linalg.inv(theta[:, :, :2].float())          # (B, 2, 2)
        t = theta[:, :, 2].float()                                  # (B, 2)
        for sl in VIEW_SLICES:
            rc = pts[..., sl]                                       # (B, P, 2): row, col in [0, 1)
            xy_in = torch.stack([rc[..., 1], rc[..., 0]], dim=-1) * 2 - 1
            xy_out = torch.einsum("bij,bpj->bpi", a_inv, xy_in - t[:, None, :])
            pts[..., sl] = torch.stack([xy_out[..., 1], xy_out[..., 0]], dim=-1).add(1).div(2)
    return pts


def _gaussians(rc: torch.Tensor, h: int, w: int, sigma: float) -> torch.Tensor:
    """rc (..., 2) normalised row/col -> (..., h, w) Gaussians peaked (1.0) at the cell holding
    the point; all zero where the point is outside the image."""
    cell_r = torch.floor(rc[..., 0] * h)
    cell_c = torch.floor(rc[..., 1] * w)
    inside = (cell_r >= 0) & (cell_r < h) & (cell_c >= 0) & (cell_c < w)
    rows = torch.arange(h, device=rc.device, dtype=rc.dtype)
    cols = torch.arange(w, device=rc.device, dtype=rc.dtype)
    d2 = (rows.view(*([1] * cell_r.dim()), h, 1) - cell_r[..., None, None]) ** 2 \
        + (cols.view(*([1] * cell_c.dim()), 1, w) - cell_c[..., None, None]) ** 2
    g = torch.exp(-d2 / (2 * sigma ** 2))
    return g * inside[..., None, None].to(g.dtype)


def _channels(points: torch.Tensor, n_labels: int) -> torch.Tensor:
    """(B, P, n_labels) 0/1: each valid point draws in its location channel and in Present."""
    label = points[..., LABEL].long()
    valid = label >= 0
    one_hot = torch.nn.functional.one_hot(label.clamp(min=0), n_labels).to(points.dtype)
    one_hot[..., PRESENT_INDEX] = 1.0
    return one_hot * valid[..., None].to(points.dtype)


def render(points: torch.Tensor, n_labels: int, h: int, w: int, sigma: float,
           n_instances: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets for the views (B, 3, L, h, w) and the slabs (B, K, L, h, w) from points (B, P, 8)."""
    ch = _channels(points, n_labels)                                     # (B, P, L)
    views = torch.stack([_gaussians(points[..., sl], h, w, sigma) for sl in VIEW_SLICES], dim=2)  # (B, P, 3, h, w)
    t_views = (ch[:, :, None, :, None, None] * views[:, :, :, None]).amax(dim=1)  # (B, 3, L, h, w)
    b = points.shape[0]
    if n_instances == 0:
        return t_views, points.new_zeros((b, 0, n_labels, h, w))
    on_slab = torch.nn.functional.one_hot(points[..., INSTANCE].long().clamp(min=0), n_instances).to(points.dtype)
    on_slab = on_slab * (points[..., INSTANCE] >= 0)[..., None].to(points.dtype)   # (B, P, K)
    axial = views[:, :, 0]                                               # (B, P, h, w)
    t_inst = (on_slab[:, :, :, None, None, None] * ch[:, :, None, :, None, None]
              * axial[:, :, None, None]).amax(dim=1)                     # (B, K, L, h, w)
    return t_views, t_inst


def heat_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
              alpha: float = 2.0, beta: float = 4.0) -> tuple[torch.Tensor, torch.Tensor]:
    """CenterNet focal loss summed over maps (B, N, L, h, w) of series ``mask`` (B,) bool, or
    weighted by ``mask`` of any shape that broadcasts against the maps (e.g. (B, 1, L, 1, 1)).

    Returns (sum of the loss, number of peaks): callers add up several image kinds, then divide.
    Dense (no boolean indexing: its backward scatters, ~2x slower on the CPU for the same sums)."""
    x = logits.float()
    m = (mask.view(-1, *([1] * (x.dim() - 1))) if mask.dim() == 1 else mask).to(x.dtype)   # (B, 1, ...) weights
    pos = (target >= 1.0).to(x.dtype)
    p = torch.sigmoid(x)
    log_p = torch.nn.functional.logsigmoid(x)
    log_1p = log_p - x                                             # log(1 - sigmoid(x)), stable
    per = pos * (1 - p) ** alpha * log_p + (1 - pos) * (1 - target) ** beta * p ** alpha * log_1p
    return -(per * m).sum(), (pos * m).sum()


def localizer_heat_loss(out: dict, points: torch.Tensor, mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """The heat loss of a model output (``heat_views`` and, for ``mil``, ``heat_instances``) against
    targets drawn from ``points`` (B, P, 8), over series ``mask`` (B,), per peak in the batch."""
    views = out["heat_views"]                                          # (B, 3, L, h, w)
    inst = out.get("heat_instances")                                   # (B, K, L, h, w) or None
    k = 0 if inst is None else inst.shape[1]
    t_views, t_inst = render(points, views.shape[2], views.shape[3], views.shape[4], sigma, k)
    total, n_pos = heat_loss(views, t_views, mask)
    if k:
        more, more_pos = heat_loss(inst, t_inst, mask)
        total, n_pos = total + more, n_pos + more_pos
    return total / n_pos.clamp(min=1).to(total.dtype)


def hit_rate(peaks: np.ndarray, points: np.ndarray, tolerance: float = HIT_TOLERANCE) -> float:
    """Share of (series, view) pairs whose heat-map peak lies within ``tolerance`` (a fraction of
    the image side) of one of the series' points, over series with a point inside that view; NaN
    if there is none. peaks (N, 3, 2) and points (N, P, 8), normalised coordinates."""
    hits, total = 0, 0
    seen = visible(points)                                                     # (N, P, 3)
    for v, sl in enumerate(VIEW_SLICES):
        rc = points[:, :, sl]                                                  # (N, P, 2)
        ok = seen[:, :, v]                                                     # (N, P)
        d = np.linalg.norm(rc - peaks[:, None, v, :], axis=2)                  # (N, P)
        d = np.where(ok, d, np.inf)
        has = ok.any(axis=1)
        hits += int((d.min(axis=1)[has] <= tolerance).sum())
        total += int(has.sum())
    return hits / total if total else float("nan")


def prior_peaks(points: np.ndarray, n: int) -> np.ndarray:
    """(n, 3, 2): every series gets the same peak, the per-view median of the training ``points``
    (N, P, 8): the hit rate a model would get by pointing at the usual place (chance level)."""
    ok = points[:, :, LABEL] >= 0
    if not ok.any():
        return np.full((n, 3, 2), 0.5, dtype=np.float32)
    med = np.stack([np.median(points[:, :, sl][ok], axis=0) for sl in VIEW_SLICES])  # (3, 2)
    return np.broadcast_to(med, (n, 3, 2)).astype(np.float32)
