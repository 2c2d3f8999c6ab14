"""``fine_cnn``: a fully convolutional heat-map detector on the fine circle-of-Willis slabs.

Why: a real aneurysm is 3-7 mm and fills like its parent artery, so at the coarse views' ~1.6 mm
per pixel it is 2-3 pixels of outline on a 3-4 mm vessel. The fine store (``willis.projections``,
array ``fine``) holds K thin-slab maximum projections along each patient axis inside a
circle-of-Willis box at <= 0.5 mm per pixel, where a 4 mm sac is an 8-pixel disc beside a line.
One small FCN looks at every slab image and draws a 14-channel heat map (13 locations + Present,
``LABELS`` order) on a stride-4 grid (2 mm cells at 0.5 mm/px), trained on crops around the
``train_localizers.csv`` points (``willis.train.fine_crops``).

Shapes::

    image   (N, C, P, P)   one slab image (or a crop of one), float in [0, 1]
    coords  (N, 3, P, P)   each pixel's (x, y, z) position in the box, in [-1, 1] (``pixel_coords``)
    modality_id (N,)       sub-modality, fed as constant one-hot planes
    -> heat logits (N, 14, P/4, P/4)

The network sees where it is: a vessel location is largely a position in the head (left MCA vs
right MCA differ only by side), and a crop has lost the image border a plain CNN would use.

Study logits (``FineModel``): every 3-D cell of the box adds the three views' cells that project
through it, and the study logit is the strongest sum / 3 (``pool_3d``: a sac is a blob in all
three views at one point, a vessel crossing a slab is a disc in one view and a line in the two
others); optionally averaged with the left-right mirrored series (flip TTA, Left/Right logits
swapped back).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from willis.labels import LABELS, flip_permutation

STRIDE = 4           # heat-map cell = STRIDE input pixels
PRIOR_LOGIT = -4.0   # initial cell logit: almost every cell of almost every map is empty
AXES = ("axial", "coronal", "sagittal")
IMAGE_CHUNK = 24     # slab images per forward pass at inference: bounded memory


def pixel_coords(axis: int, n_slabs: int, size: int, slab: torch.Tensor, rows: torch.Tensor,
                 cols: torch.Tensor) -> torch.Tensor:
    """(n, 3, H, W) box coordinates (x, y, z in [-1, 1]) of pixels of slab images.

    ``slab`` (n,) slab indices, ``rows`` (n, H) and ``cols`` (n, W) pixel indices (any real
    values: a crop window may reach past the image). Conventions of the fine store
    (``willis.projections.views``): axial slabs run superior -> inferior, rows anterior ->
    posterior (y up), columns patient right -> left (x up); coronal slabs run anterior ->
    posterior, rows superior -> inferior, columns right -> left; sagittal slabs run right -> left,
    rows superior -> inferior, columns anterior -> posterior.
    """
    n, h, w = rows.shape[0], rows.shape[1], cols.shape[1]
    r = ((rows * 2 + 1) / size - 1).view(n, h, 1).expand(n, h, w)
    c = ((cols * 2 + 1) / size - 1).view(n, 1, w).expand(n, h, w)
    k = ((slab.to(rows.dtype) * 2 + 1) / n_slabs - 1).view(n, 1, 1).expand(n, h, w)
    if axis == 0:    # axial: slab -> z descending, rows -> y, cols -> x
        x, y, z = c, r, -k
    elif axis == 1:  # coronal: slab -> y, rows -> z descending, cols -> x
        x, y, z = c, k, -r
    else:            # sagittal: slab -> x, rows -> z descending, cols -> y
        x, y, z = k, c, -r
    return torch.stack([x, y, z], dim=1)


def slab_coords(axis: int, n_slabs: int, size: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(K, 3, F, F) coordinates of the K whole slab images of one axis."""
    idx = torch.arange(size, device=device, dtype=dtype)
    k = torch.arange(n_slabs, device=device)
    return pixel_coords(axis, n_slabs, size, k, idx.expand(n_slabs, size), idx.expand(n_slabs, size))


def _cbr(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class FineNet(nn.Module):
    """The slab-image FCN: stride-2 stem, three stride-2 stages, a stride-4 head over
    [stride-4 features, stride-8 and stride-16 features upsampled, coords, modality planes]."""

    def __init__(self, in_channels: int, n_modalities: int, width: int = 16, stem: int = 8,
                 n_out: int = len(LABELS)):
        super().__init__()
        self.n_modalities = n_modalities
        self.stem = _cbr(in_channels + n_modalities, stem, 2)               # /2
        self.s4 = nn.Sequential(_cbr(stem, width, 2), _cbr(width, width))     # /4
        self.s8 = nn.Sequential(_cbr(width, 2 * width, 2), _cbr(2 * width, 2 * width))          # /8
        self.s16 = nn.Sequential(_cbr(2 * width, 4 * width, 2), _cbr(4 * width, 4 * width))     # /16
        head_in = width + 2 * width + 4 * width + 3 + n_modalities
        self.head = nn.Sequential(_cbr(head_in, 2 * width), nn.Conv2d(2 * width, n_out, 1))
        nn.init.constant_(self.head[-1].bias, PRIOR_LOGIT)

    def forward(self, image: torch.Tensor, coords: torch.Tensor, modality_id: torch.Tensor) -> torch.Tensor:
        n, _, h, w = image.shape
        onehot = F.one_hot(modality_id.long(), self.n_modalities).to(image.dtype)          # (N, M)
        planes = onehot.view(n, -1, 1, 1)
        # channels-last: oneDNN's fast convolution layout (measured 2x at inference, ~10x per
        # training step on the 2-core CPU; also the tensor-core layout on GPUs)
        x = torch.cat([image, planes.expand(n, -1, h, w)], dim=1).contiguous(memory_format=torch.channels_last)
        a = self.stem(x)
        b = self.s4(a)                                                                     # (N, w, h/4, w/4)
        c = self.s8(b)
        d = self.s16(c)
        size = b.shape[-2:]
        up = [F.interpolate(t, size=size, mode="bilinear", align_corners=False) for t in (c, d)]
        # the mean of a linear coordinate over a cell is its value at the cell centre
        cells = F.adaptive_avg_pool2d(coords.to(image.dtype), size)
        return self.head(torch.cat([b, *up, cells, planes.expand(n, -1, *size)], dim=1))


def mirror_series(fine: torch.Tensor) -> torch.Tensor:
    """The patient left-right mirror of a series' slabs (B, 3, K, C, F, F): axial and coronal
    images flip their columns (x), the sagittal slabs (one per x) reverse their order."""
    return torch.stack([fine[:, 0].flip(-1), fine[:, 1].flip(-1), fine[:, 2].flip(1)], dim=1)


def context_order(context: int) -> list[int]:
    """Slab offsets of a slab and its ``context`` neighbours on each side, nearest first: [0, -1, 1, -2, 2, ...]."""
    return [0] + [d for j in range(1, context + 1) for d in (-j, j)]


def with_context(slabs: torch.Tensor, context: int) -> torch.Tensor:
    """(..., K, C, H, W) -> (..., K, (2 context + 1) C, H, W): each slab with its neighbours along
    the slab axis as extra channels (zeros past the box), nearest first: [k, k-1, k+1, k-2, ...].

    Why: a vessel crossing a thin slab is a small disc in that slab, like a sac; it continues into
    the next slab, a sac ends."""
    if context == 0:
        return slabs
    k = slabs.shape[-4]
    pad = torch.zeros_like(slabs.narrow(-4, 0, 1)).expand(*slabs.shape[:-4], context, *slabs.shape[-3:])
    padded = torch.cat([pad, slabs, pad], dim=-4)                       # (..., K + 2c, C, H, W)
    parts = [padded.narrow(-4, context + d, k) for d in context_order(context)]
    return torch.cat(parts, dim=-3)


def consensus_3d(maps: torch.Tensor) -> torch.Tensor:
    """(B, 3, K, L, h, h) per-axis slab maps -> (B, L, h, h, h) 3-D evidence (z descending, y, x cells).

    Every cell of the box's (h, h, h) grid (heat-map cells) reads the cell of each view that
    projects through it (the slab holding it, and its row/column) and adds the three logits: a sac
    is a blob in all three views at one 3-D point, while a vessel crossing a slab (a disc in that
    view) is a line in the two others. Axial images are (y, x), coronal (z, x), sagittal (z, y)."""
    b, _, k, n_labels, h, w = maps.shape
    if h != w:
        raise ValueError(f"consensus_3d needs square slab maps, got {h} x {w}")
    slab_of = cell_slab(h, k, maps.device)
    ax = maps[:, 0].permute(0, 2, 1, 3, 4)[:, :, slab_of]                             # (B, L, z, y, x)
    co = maps[:, 1].permute(0, 2, 1, 3, 4)[:, :, slab_of].permute(0, 1, 3, 2, 4)       # (B, L, y, z, x) -> z, y, x
    sa = maps[:, 2].permute(0, 2, 1, 3, 4)[:, :, slab_of].permute(0, 1, 3, 4, 2)       # (B, L, x, z, y) -> z, y, x
    return ax + co + sa


def cell_slab(h: int, k: int, device=None) -> torch.Tensor:
    """(h,) int64: the slab (of ``k``) holding each of the ``h`` heat-map cells along a slab axis."""
    return torch.div(torch.arange(h, device=device) * k, h, rounding_mode="floor")


def pool_3d(maps: torch.Tensor) -> torch.Tensor:
    """(B, 3, K, L, h, h) per-axis slab maps -> (B, L) study evidence that is consistent in 3-D:
    the largest cell of ``consensus_3d`` / 3."""
    return consensus_3d(maps).flatten(2).amax(dim=2) / 3


class RoutedNet(nn.Module):
    """Several ``FineNet`` behind one ``FineNet`` call: each image goes to the network of its
    sub-modality's group (``route[modality_id]``). A group's network is trained on its own series
    alone (``train.<family>.groups``): an MRA's bright lumen and a T2's dark flow void are
    different detection problems, and one network on the mix learnt the default's T2 look
    (docs/training.md)."""

    def __init__(self, members: list[FineNet], route: list[int]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.register_buffer("route", torch.as_tensor(route, dtype=torch.long), persistent=False)

    def forward(self, image: torch.Tensor, coords: torch.Tensor, modality_id: torch.Tensor) -> torch.Tensor:
        which = self.route.to(modality_id.device)[modality_id.long()]              # (N,) member per image
        first = int(which[0])
        if bool((which == first).all()):      # the usual case: a batch of one series' slab images
            return self.members[first](image, coords, modality_id)
        out = None
        for g in which.unique().tolist():
            rows = (which == g).nonzero().squeeze(1)
            maps = self.members[g](image[rows], coords[rows], modality_id[rows])
            if out is None:
                out = maps.new_empty((image.shape[0], *maps.shape[1:]))
            out[rows] = maps
        return out


def group_route(groups: list[list[int]], n_modalities: int) -> list[int]:
    """Modality id -> index of its group; every id in exactly one group."""
    route = [-1] * n_modalities
    for g, ids in enumerate(groups):
        for i in ids:
            if not 0 <= i < n_modalities or route[i] != -1:
                raise ValueError(f"groups {groups}: modality id {i} out of range or in two groups")
            route[i] = g
    if -1 in route:
        raise ValueError(f"groups {groups}: modality ids {[i for i, g in enumerate(route) if g < 0]} in no group")
    return route


def series_inputs(model: nn.Module, fine: np.ndarray, modality_id: np.ndarray, rows: np.ndarray,
                  batch: int = 1):
    """Yield (rows, x, ids) for whole-series inference of ``rows`` of ``fine`` (N, 3, K, C, F, F)
    uint8: x (b, 3, K, C, F, F) float in [0, 1] and ids (b,) on the model's device, ``batch``
    series at a time (never the whole set in memory). The model is in eval mode meanwhile."""
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    try:
        for i in range(0, len(rows), batch):
            r = np.asarray(rows[i:i + batch])
            x = torch.from_numpy(np.ascontiguousarray(fine[r])).to(dev).float().div_(255.0)
            yield r, x, torch.from_numpy(np.asarray(modality_id)[r]).to(dev)
    finally:
        model.train(was)


class FineModel(nn.Module):
    """Series in, study logits out: every slab image (with ``context`` neighbouring slabs as extra
    channels) through ``FineNet`` (or a ``RoutedNet`` of one per sub-modality group), the three
    views' maps combined in 3-D (``pool_3d``)."""

    def __init__(self, in_channels: int, n_modalities: int, n_slabs: int, size: int, width: int = 16,
                 stem: int = 8, tta: bool = True, context: int = 0, groups: list[list[int]] | None = None):
        super().__init__()
        self.context = int(context)

        def net() -> FineNet:
            return FineNet(in_channels * (2 * self.context + 1), n_modalities, width, stem).to(
                memory_format=torch.channels_last)
        # groups (modality ids per group): one network per group (``RoutedNet``); None: one for all
        self.net = net() if not groups else RoutedNet([net() for _ in groups], group_route(groups, n_modalities))
        self.n_slabs, self.size, self.tta = int(n_slabs), int(size), bool(tta)
        self.heatmap = True

    def image_coords(self, device, dtype=torch.float32) -> torch.Tensor:
        """(3, K, 3, F, F) coordinates of every slab image of a series."""
        k, s = self.n_slabs, self.size
        return torch.stack([slab_coords(a, k, s, device, dtype) for a in range(3)])

    def maps(self, fine: torch.Tensor, modality_id: torch.Tensor) -> torch.Tensor:
        """(B, 3, K, C, F, F) -> heat logits (B, 3, K, 14, F/4, F/4), IMAGE_CHUNK images at a time."""
        b, n_axes, k, c, h, w = fine.shape
        coords = self.image_coords(fine.device, fine.dtype).unsqueeze(0).expand(b, -1, -1, -1, -1, -1)
        coords = coords.reshape(b * n_axes * k, 3, h, w)
        ids = modality_id.view(b, 1).expand(b, n_axes * k).reshape(-1)
        flat = fine.reshape(b * n_axes, k, c, h, w)
        coords = coords.view(b * n_axes, k, 3, h, w)
        ids = ids.view(b * n_axes, k)
        out = []
        for sa in range(b * n_axes):          # one view of one series (K images) at a time: bounded memory
            images = with_context(flat[sa], self.context)                  # (K, (2c+1) C, F, F)
            for i in range(0, k, IMAGE_CHUNK):
                out.append(self.net(images[i:i + IMAGE_CHUNK], coords[sa, i:i + IMAGE_CHUNK], ids[sa, i:i + IMAGE_CHUNK]))
        maps = torch.cat(out)
        return maps.view(b, n_axes, k, *maps.shape[1:])

    @staticmethod
    def pool(maps: torch.Tensor) -> torch.Tensor:
        """(B, 3, K, L, h, w) -> (B, L): the 3-D-consistent evidence (``pool_3d``)."""
        return pool_3d(maps)

    def forward(self, fine: torch.Tensor, modality_id: torch.Tensor, tta: bool | None = None) -> dict:
        maps = self.maps(fine, modality_id)
        logits = self.pool(maps.float())
        if self.tta if tta is None else tta:
            perm = torch.tensor(flip_permutation(), device=logits.device)
            mirrored = self.pool(self.maps(mirror_series(fine), modality_id).float())
            logits = 0.5 * (logits + mirrored[:, perm])      # mirrored Left is the series' Right
        return {"logits": logits, "heat_fine": maps}
