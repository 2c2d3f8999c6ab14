"""The origin notebook's baseline: three MIP views through one shared 2D CNN, fused, 14 logits.

The views (axial, coronal, sagittal) share the backbone's weights, each gets a learned view
offset, and their embeddings are concatenated in that fixed order (late fusion). The model has
no instance attention; to keep one forward contract it returns uniform weights 1/K over the
instances, which it never reads (so the instance array may be a (B, 0, ...) placeholder).

With ``heatmap=True`` each view also gets a 14-channel heat map (``willis.models.heat``), returned
as ``heat_views`` (B, 3, 14, h, w) for the localizer loss and pooled into the study logits.
"""

from __future__ import annotations

import torch
from torch import nn

from willis.labels import LABELS, LOCATIONS
from willis.models.backbone import LabelHeads, make_backbone
from willis.models.heat import HeatHead, HeatReadout, encode_images, pool_images
from willis.projections.views import VIEWS  # the mip array's view axis: axial, coronal, sagittal


class MipCNN(nn.Module):
    def __init__(self, in_channels: int, n_modalities: int, backbone: str = "compact", width: int = 16,
                 embed_dim: int = 64, modality_dim: int = 8, dropout: float = 0.1,
                 backbone_weights: str | None = None,
                 input_size: int | None = None, heatmap: bool = False):
        super().__init__()
        self.backbone = make_backbone(backbone, in_channels, width, embed_dim, backbone_weights, input_size)
        self.view_embed = nn.Parameter(torch.zeros(len(VIEWS), embed_dim))
        self.heads = LabelHeads(len(VIEWS) * embed_dim, n_modalities, modality_dim, len(LOCATIONS), dropout)
        self.heatmap = heatmap
        self.heat = HeatHead(self.backbone.map_channels, len(LABELS)) if heatmap else None
        if heatmap:
            self.readout = HeatReadout(len(LABELS))

    def forward(self, mip: torch.Tensor, instances: torch.Tensor, modality_id: torch.Tensor) -> dict:
        b = mip.shape[0]
        emb, heat_views = encode_images(self.backbone, self.heat, mip)   # (B, 3, D), (B, 3, 14, h, w)
        logits = self.heads((emb + self.view_embed).flatten(1), modality_id)  # (B, 14)
        out = {}
        if self.heatmap:
            out["heat_views"] = heat_views
            logits = logits + self.readout(pool_images(heat_views.float()))
        k = instances.shape[1]
        attn = torch.full((b, k), 1.0 / max(k, 1), device=mip.device, dtype=logits.dtype)
        return {"logits": logits, "attention": attn, **out}
