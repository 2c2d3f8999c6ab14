"""Localizer-supervised heat maps: a dense 14-channel map per image, pooled to study evidence.

Why: with a few hundred series per family, 14 study-level labels are too little supervision for a
CNN to find a 5-pixel sac among the vessels; it memorises the training series instead (measured:
train AUC 1.0 by epoch 8, validation 0.5-0.6). ``train_localizers.csv`` says *where* each aneurysm
is, so every image the series contributes (3 MIP views, K axial slabs) gets a target map
(``willis.train.heatmap``) with a peak at the aneurysm's projection, in the Present channel and in
its location's channel. The map is dense supervision for the detector, and the study logits read
it directly, so a location is decided where the aneurysm *is* in the view.

Shapes (``S`` the model's input size, stride 8)::

    features (N, F, S/8, S/8) --HeatHead--> logits (N, 14, S/8, S/8), channels in LABELS order

``HeatHead`` sees two extra coordinate channels (CoordConv, Liu et al. 2018): a vessel location is
largely a position in the head (left MCA vs right MCA differ by side), which plain convolutions
must otherwise infer from the zero padding.

Study pooling (``pool_images``): the maximum of each channel over one image's cells, then the
mean over the MIP views (an aneurysm shows in all three) and, for ``mil``, the maximum over the
K slabs (it shows in one or two) as one more term of that mean. The study logit of label ``c`` is
``heads(z)_c + scale_c * (pooled_c - PRIOR_LOGIT) + bias_c``, with ``scale`` and ``bias`` learned.
"""

from __future__ import annotations

import torch
from torch import nn

PRIOR_LOGIT = -4.0  # initial cell logit (p ~ 0.018): most cells of most maps are empty (CenterNet uses -2.19)


def coord_channels(x: torch.Tensor) -> torch.Tensor:
    """(N, F, h, w) -> (N, F + 2, h, w): append row and column coordinates in [-1, 1]."""
    n, _, h, w = x.shape
    rows = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype).view(1, 1, h, 1).expand(n, 1, h, w)
    cols = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype).view(1, 1, 1, w).expand(n, 1, h, w)
    return torch.cat([x, rows, cols], dim=1)


class HeatHead(nn.Module):
    """(N, F, h, w) features -> (N, n_out, h, w) cell logits."""

    def __init__(self, in_channels: int, n_out: int, hidden: int = 64):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels + 2, hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, n_out, 1),
        )
        nn.init.constant_(self.body[-1].bias, PRIOR_LOGIT)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.body(coord_channels(features))


def encode_images(backbone: nn.Module, heat: HeatHead | None, x: torch.Tensor):
    """(B, n, C, S, S) -> embeddings (B, n, D) and, with a heat head, maps (B, n, 14, h, w) (else None).

    One backbone pass serves both: the heat head reads the backbone's stride-8 feature map."""
    b, n = x.shape[:2]
    if heat is None:
        return backbone(x.flatten(0, 1)).view(b, n, -1), None
    emb, fmap = backbone.forward_maps(x.flatten(0, 1))       # (B*n, D), (B*n, F, h, w)
    maps = heat(fmap)
    return emb.view(b, n, -1), maps.view(b, n, *maps.shape[1:])


def image_max(maps: torch.Tensor) -> torch.Tensor:
    """(B, N, L, h, w) cell logits -> (B, N, L): the strongest cell of each channel of each image."""
    return maps.flatten(3).amax(dim=3)


def pool_images(view_maps: torch.Tensor, instance_maps: torch.Tensor | None = None) -> torch.Tensor:
    """Study evidence (B, L) from view maps (B, 3, L, h, w) and optional slab maps (B, K, L, h, w)."""
    terms = image_max(view_maps)                                   # (B, 3, L)
    if instance_maps is not None and instance_maps.shape[1] > 0:
        slab = image_max(instance_maps).amax(dim=1, keepdim=True)  # (B, 1, L): the best slab
        terms = torch.cat([terms, slab], dim=1)
    return terms.mean(dim=1)


def peak_cells(view_maps: torch.Tensor, channel: int) -> torch.Tensor:
    """(B, V, L, h, w) -> (B, V, 2): normalised (row, col) of the centre of each view's strongest
    cell in ``channel`` (the coordinates of ``willis.train.heatmap`` points)."""
    b, v, _, h, w = view_maps.shape
    flat = view_maps[:, :, channel].flatten(2).argmax(dim=2)                    # (B, V)
    rows, cols = torch.div(flat, w, rounding_mode="floor"), flat % w
    return torch.stack([(rows.float() + 0.5) / h, (cols.float() + 0.5) / w], dim=-1)


class HeatReadout(nn.Module):
    """Pooled evidence (B, L) -> a per-label affine term added to the study logits."""

    def __init__(self, n_labels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(n_labels))
        self.bias = nn.Parameter(torch.zeros(n_labels))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        # measured from the prior: an untrained head (pooled ~ PRIOR_LOGIT) adds ~0 to the logits
        return self.scale * (pooled - PRIOR_LOGIT) + self.bias
