"""The shared 2D image encoder: one (C, S, S) image in, one ``embed_dim`` vector out.

The default is a compact CNN defined here (no weights to download: the Kaggle notebooks and this
box are offline). It halves the resolution five times, so a 128 x 128 input ends as a 4 x 4 map
before global pooling; the widths double per stage from ``width`` (capped at 8x). Measured with
``torch.utils.flop_counter`` at 4 channels, width 16: 50 MMAC per 128 x 128 image, 12 MMAC at
``input_size`` 64 (compute scales with the square of the input): the knob that keeps CPU
training of a few hundred series to a couple of minutes.

A timm backbone is used only when timm is installed *and* a local weights file is named
(``train.<family>.backbone`` / ``backbone_weights``); nothing is ever fetched at run time.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

N_STAGES = 4  # after the stride-2 stem: S / 2**5 at the end (128 -> 4)
MAP_STAGE = 1  # stage whose output is stride 8 (128 -> 16 x 16): the heat map's grid


class _ConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))
        self.out_channels = c_out


def _conv_bn(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return _ConvBN(c_in, c_out, stride)


def resize(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Area-downsample (N, C, S, S) to (N, C, size, size); None or size >= S: unchanged (never upsamples).

    Area averaging keeps a small bright spot's mass (a 2-pixel aneurysm fades but does not
    vanish, as it could with nearest/strided sampling)."""
    if size is None or x.shape[-1] <= size:
        return x
    return nn.functional.adaptive_avg_pool2d(x, size)


class CompactCNN(nn.Module):
    """Area resize to ``input_size`` (optional), stem (stride 2), ``N_STAGES`` stages of
    [3x3 stride-2 conv, 3x3 residual conv], global average + max pool, linear to ``embed_dim``."""

    def __init__(self, in_channels: int, width: int = 16, embed_dim: int = 64, input_size: int | None = None):
        super().__init__()
        self.input_size = input_size
        self.stem = _conv_bn(in_channels, width, stride=2)
        downs, refines = [], []
        c = width
        for _ in range(N_STAGES):
            downs.append(_conv_bn(c, 2 * c if c < 8 * width else c, stride=2))
            c = 2 * c if c < 8 * width else c
            refines.append(_conv_bn(c, c, stride=1))
        self.downs = nn.ModuleList(downs)
        self.refines = nn.ModuleList(refines)
        self.head = nn.Linear(2 * c, embed_dim)
        self.out_dim = embed_dim

    @property
    def map_channels(self) -> int:
        """Channels of ``forward_maps``' feature map: the stride-8 stage + the upsampled last stage."""
        return self.downs[MAP_STAGE].out_channels + self.downs[-1].out_channels

    def forward_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, S, S) -> embedding (N, embed_dim) and a feature map (N, map_channels, s/8, s/8).

        The map is the stride-8 stage (fine enough for a 7 mm sac at ~1.5 mm/px: one or two
        cells) concatenated with the last stage upsampled to it (the context: which vessel)."""
        x = self.stem(resize(x, self.input_size))
        fine = None
        for i, (down, refine) in enumerate(zip(self.downs, self.refines)):
            x = down(x)
            x = x + refine(x)  # residual refinement: keeps gradients healthy at this depth
            if i == MAP_STAGE:
                fine = x
        coarse = nn.functional.interpolate(x, size=fine.shape[-2:], mode="nearest")
        # global average AND max pool, (N, c, h, w) -> (N, 2c): an aneurysm fills one or two cells
        # of the final map; averaging alone would dilute it by h*w, the max keeps it
        emb = self.head(torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1))
        return emb, torch.cat([fine, coarse], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, C, S, S) -> (N, C, s, s) -> (N, embed_dim)
        return self.forward_maps(x)[0]


class TimmBackbone(nn.Module):
    """A timm model created without pretrained download, its weights read from a local file."""

    def __init__(self, name: str, weights: str | Path | None, in_channels: int, embed_dim: int,
                 input_size: int | None = None):
        super().__init__()
        self.input_size = input_size
        try:
            import timm
        except ImportError as e:
            raise RuntimeError(f"backbone {name!r} needs timm, which is not installed") from e
        self.body = timm.create_model(name, pretrained=False, in_chans=in_channels, num_classes=0)
        if weights is not None:  # None: the weights come from a willis checkpoint right after
            path = Path(weights)
            if not path.is_file():
                raise FileNotFoundError(f"backbone weights {path}: no such file (weights are never downloaded)")
            state = torch.load(path, map_location="cpu", weights_only=True)
            missing, unexpected = self.body.load_state_dict(state, strict=False)
            if missing or unexpected:  # a classifier head or in_chans change is expected; say so
                log.warning("backbone %s from %s: %d missing, %d unexpected keys", name, path,
                            len(missing), len(unexpected))
        self.head = nn.Linear(self.body.num_features, embed_dim)
        self.out_dim = embed_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(resize(x, self.input_size)))


def make_backbone(name: str, in_channels: int, width: int, embed_dim: int,
                  weights: str | None = None, input_size: int | None = None) -> nn.Module:
    """``compact`` -> CompactCNN; any other name -> a timm model, initialised from the local ``weights``
    file (params require one for training; ``None`` only when a checkpoint's state_dict follows)."""
    if name == "compact":
        return CompactCNN(in_channels, width=width, embed_dim=embed_dim, input_size=input_size)
    return TimmBackbone(name, weights, in_channels, embed_dim, input_size=input_size)


class LabelHeads(nn.Module):
    """Study embedding -> logits (B, 14) in ``willis.labels.LABELS`` order.

    One ``Aneurysm Present`` head and 13 location heads (one linear row each, stored as one matrix),
    over a shared hidden layer. The sub-modality embedding joins the study embedding here, so MRA,
    T2 and T1post series can shift their decision surfaces without separate models.
    """

    def __init__(self, in_dim: int, n_modalities: int, modality_dim: int, n_locations: int,
                 dropout: float):
        super().__init__()
        self.modality = nn.Embedding(max(n_modalities, 1), modality_dim)
        hidden = max(in_dim // 2, 32)
        self.mlp = nn.Sequential(nn.Linear(in_dim + modality_dim, hidden), nn.ReLU(inplace=True),
                                 nn.Dropout(dropout))
        self.locations = nn.Linear(hidden, n_locations)
        self.present = nn.Linear(hidden, 1)

    def forward(self, z: torch.Tensor, modality_id: torch.Tensor) -> torch.Tensor:
        # z: (B, in_dim), modality_id: (B,) -> (B, n_locations + 1)
        h = self.mlp(torch.cat([z, self.modality(modality_id)], dim=1))
        return torch.cat([self.locations(h), self.present(h)], dim=1)
