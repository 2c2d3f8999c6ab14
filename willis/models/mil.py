"""2.5D attention-MIL: a bag of K axial thin-slab MIPs -> gated attention pooling -> 14 logits.

Each instance goes through the shared 2D backbone; gated attention (Ilse, Tomczak & Welling 2018,
"Attention-based Deep Multiple Instance Learning", eq. 9) scores every instance,
``a_k = softmax_k( w^T (tanh(V h_k) * sigmoid(U h_k)) )``, and the study embedding is
``sum_k a_k h_k``. Pooling is a weighted sum, so the output does not depend on the order of the
instances. Optionally the three MIP views go through the same backbone and join the study
embedding in their fixed order (they are not a bag: axial/coronal/sagittal are distinct).

The attention weights (B, K) are returned: plots show which slabs the model looked at, and the
auxiliary localizer loss (``willis.train.losses.attention_loss``) supervises them.

With ``heatmap=True`` every slab and view also gets a 14-channel heat map (``willis.models.heat``),
returned as ``heat_instances`` (B, K, 14, h, w) and ``heat_views`` (B, 3, 14, h, w); their pooled
evidence (best slab, mean over views) joins the study logits. A max over slabs is order-free too.
"""

from __future__ import annotations

import torch
from torch import nn

from willis.labels import LABELS, LOCATIONS
from willis.models.backbone import LabelHeads, make_backbone
from willis.models.heat import HeatHead, HeatReadout, encode_images, pool_images
from willis.projections.views import VIEWS  # the mip array's view axis: axial, coronal, sagittal


class GatedAttention(nn.Module):
    """Instance embeddings (B, K, D) -> weights (B, K) summing to 1 over K."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.v = nn.Linear(dim, hidden)
        self.u = nn.Linear(dim, hidden)
        self.w = nn.Linear(hidden, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        scores = self.w(torch.tanh(self.v(h)) * torch.sigmoid(self.u(h))).squeeze(-1)  # (B, K)
        return torch.softmax(scores.float(), dim=1).to(h.dtype)


class AttentionMIL(nn.Module):
    def __init__(self, in_channels: int, n_modalities: int, backbone: str = "compact", width: int = 16,
                 embed_dim: int = 64, attn_dim: int = 32, modality_dim: int = 8,
                 include_mips: bool = True, dropout: float = 0.1, backbone_weights: str | None = None,
                 input_size: int | None = None, heatmap: bool = False):
        super().__init__()
        self.include_mips = include_mips
        self.backbone = make_backbone(backbone, in_channels, width, embed_dim, backbone_weights, input_size)
        self.attention = GatedAttention(embed_dim, attn_dim)
        fused = embed_dim
        if include_mips:
            # a learned offset per view tells the shared backbone's output which plane it came from
            self.view_embed = nn.Parameter(torch.zeros(len(VIEWS), embed_dim))
            fused += len(VIEWS) * embed_dim
        self.heads = LabelHeads(fused, n_modalities, modality_dim, len(LOCATIONS), dropout)
        self.heatmap = heatmap
        self.heat = HeatHead(self.backbone.map_channels, len(LABELS)) if heatmap else None
        if heatmap:
            self.readout = HeatReadout(len(LABELS))

    def forward(self, mip: torch.Tensor, instances: torch.Tensor, modality_id: torch.Tensor) -> dict:
        out = {}
        h, heat_inst = encode_images(self.backbone, self.heat, instances)  # (B, K, D), (B, K, 14, h, w)
        attn = self.attention(h)                                  # (B, K)
        z = torch.einsum("bk,bkd->bd", attn, h)                  # (B, D)
        heat_views = None
        if self.include_mips or self.heatmap:
            m, heat_views = encode_images(self.backbone, self.heat, mip)  # (B, 3, D), (B, 3, 14, h, w)
        if self.include_mips:
            m = m + self.view_embed
            z = torch.cat([z, m.flatten(1)], dim=1)              # (B, D + 3D)
        logits = self.heads(z, modality_id)
        if self.heatmap:
            out = {"heat_views": heat_views, "heat_instances": heat_inst}
            logits = logits + self.readout(pool_images(heat_views.float(), heat_inst.float()))
        return {"logits": logits, "attention": attn, **out}
