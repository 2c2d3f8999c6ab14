"""Training crops of the fine slabs for ``fine_cnn``: where to look, how to perturb it, what to predict.

Why crops: a series has 3 x K slab images of F x F pixels (e.g. 42 of 224 x 224 at 0.5 mm); the
aneurysm is one 8-20 pixel disc in one or two of them. Training on P x P crops (P ~ 96, 48 mm)
costs ~1/20 of a whole series per sample and lets the sampler put a sac in about a third of the
crops, so the detector sees enough positives from a few hundred series.

Per sample (``draw``): a series (the caller's class-balanced order), an axis, then
- with probability ``pos_frac``, for a series with a mapped localizer on that axis: the slab
  holding a random one of its points and a window centred near it (``jitter``);
- otherwise, once the model has been mined (``willis.train.fine_mining``), with probability
  ``mine_frac`` a window near one of the series' strongest Present cells (the model's own false
  positives: calcifications, loops), the slab holding it;
- otherwise a random slab and, half the time, a window centred on the brightest of a few random
  pixels (vessels: the hard negatives), else anywhere.

Augmentation (``augment``, torch, per sample; spans the generator's and scanners' nuisance):
rotation, zoom, shift (one affine warp of a 1.5 P window down to P, the coordinate planes warped
with the pixels), patient left-right mirror (columns of axial/coronal crops, the x coordinate,
the Left/Right labels of the points), per-channel gain/offset, gamma, Gaussian noise and blur.
Targets: CenterNet Gaussians (``willis.train.heatmap``) at each visible point's cell of the
stride-4 output, in its location's channel and in Present. Points on a slab boundary also draw in
the neighbouring slab (half of the sac is there).

Points (``FinePoints``): float32 (N, P, 10) = [label, then (slab, row, col) for the axial,
coronal and sagittal slabs], slab a continuous slab coordinate (slab k spans [k - 0.5, k + 0.5]),
row/col continuous pixel coordinates with pixel centres at integers; label -1 pads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from willis.labels import LABELS, PRESENT_INDEX, flip_permutation
from willis.models.fine import STRIDE, context_order, pixel_coords
from willis.train.fine_insert import Inserter, insert_sacs
from willis.train.fine_mining import mined_plan

N_POINT_COLS = 10
LABEL = 0
NEIGHBOUR_SLAB = 0.3   # a point within this of a slab boundary (in slab units) also targets the neighbour


def axis_cols(axis: int) -> slice:
    """Columns (slab, row, col) of ``axis`` in a points row."""
    return slice(1 + 3 * axis, 4 + 3 * axis)


@dataclass(frozen=True)
class CropParams:
    size: int = 96            # P: crop side (pixels); a multiple of 16
    pos_frac: float = 0.7     # share of crops of a localized positive series aimed at a sac
    jitter: float = 0.3       # the sac's offset from the crop centre, up to this fraction of P
    hard_frac: float = 0.5    # other crops centred on a bright pixel (vessels) this often
    mine_frac: float = 0.0    # crops not aimed at a sac centred on a mined cell this often (fine_mining)
    flip_p: float = 0.5
    rotate_deg: float = 15.0
    zoom: float = 0.15
    gain: float = 0.2         # per-channel contrast in [1 - gain, 1 + gain], offset +- gain / 4
    gamma: float = 0.3        # gamma = exp(U(-gamma, gamma))
    noise: float = 0.03       # Gaussian noise s.d. up to this (intensity units, [0, 1])
    blur_p: float = 0.3       # Gaussian blur of s.d. 0.5-1.2 px this often
    sigma: float = 1.0        # target Gaussian s.d., in heat-map cells
    context: int = 0          # neighbouring slabs on each side as extra channels (willis.models.fine.with_context)


def draw(points: np.ndarray, heat_known: np.ndarray, series: np.ndarray, n_slabs: int, size: int,
         p: CropParams, rng: np.random.Generator, mined: np.ndarray | None = None) -> np.ndarray:
    """(B, 5) int64 plan [series, axis, slab, row, col] of a crop per entry of ``series``; row -1:
    the centre is chosen on the image (``windows``). ``mined`` (N, M, 3) cells
    (``willis.train.fine_mining``) centre a crop not aimed at a sac with probability ``mine_frac``."""
    out = np.zeros((len(series), 5), dtype=np.int64)
    for i, s in enumerate(series):
        axis = int(rng.integers(3))
        pts = points[s]
        pts = pts[(pts[:, LABEL] >= 0) & np.isfinite(pts[:, axis_cols(axis)]).all(axis=1)]
        inside = pts[(pts[:, axis_cols(axis)][:, 0] > -0.5) & (pts[:, axis_cols(axis)][:, 0] < n_slabs - 0.5)]
        cells = mined[s][mined[s, :, 0] >= 0] if mined is not None else ()
        j = p.jitter * p.size
        if heat_known[s] and len(inside) and rng.random() < p.pos_frac:
            slab, row, col = inside[int(rng.integers(len(inside)))][axis_cols(axis)]
            out[i] = (s, axis, int(np.clip(np.rint(slab), 0, n_slabs - 1)), *_jittered(row, col, j, rng))
        elif len(cells) and rng.random() < p.mine_frac:
            slab, row, col = mined_plan(cells[int(rng.integers(len(cells)))], axis, n_slabs, size // STRIDE)
            out[i] = (s, axis, slab, *np.clip(_jittered(row, col, j, rng), 0, size - 1))
        else:
            out[i] = (s, axis, int(rng.integers(n_slabs)), -1, -1)   # centre chosen on the image
    return out


def _jittered(row: float, col: float, j: float, rng: np.random.Generator) -> tuple[int, int]:
    """A crop centre within +-j pixels of (row, col), rounded (row drawn first, then col)."""
    return int(np.rint(row + rng.uniform(-j, j))), int(np.rint(col + rng.uniform(-j, j)))


def windows(fine: np.ndarray, plan: np.ndarray, p: CropParams, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray]:
    """Cut the (C, W, W) uint8 window of each planned crop (W = 1.5 P, zero outside the image).

    ``fine`` (N, 3, K, C, F, F) uint8 (RAM or a Zarr-backed array with the same indexing);
    returns windows (B, C, W, W) and their top-left pixel (B, 2)."""
    w = int(math.ceil(1.5 * p.size / 2)) * 2
    n_ch, n_slabs, size = fine.shape[3], fine.shape[2], fine.shape[-1]
    order = context_order(p.context)   # the channel order of willis.models.fine.with_context
    out = np.zeros((len(plan), n_ch * len(order), w, w), dtype=np.uint8)
    origin = np.zeros((len(plan), 2), dtype=np.int64)
    for i, (s, axis, slab, row, col) in enumerate(plan):
        if row < 0:
            if rng.random() < p.hard_frac:   # the brightest of 64 random pixels of a channel: usually a vessel
                img = np.asarray(fine[s, axis, slab])
                ch = int(rng.integers(n_ch))
                rr, cc = rng.integers(size, size=64), rng.integers(size, size=64)
                best = int(np.argmax(img[ch, rr, cc]))
                row, col = int(rr[best]), int(cc[best])
            else:
                row, col = int(rng.integers(size)), int(rng.integers(size))
        r0, c0 = row - w // 2, col - w // 2
        origin[i] = (r0, c0)
        a0, a1 = max(r0, 0), min(r0 + w, size)
        b0, b1 = max(c0, 0), min(c0 + w, size)
        if a1 <= a0 or b1 <= b0:
            continue
        for j, d in enumerate(order):         # the slab, then its neighbours (zeros past the box)
            k = slab + d
            if 0 <= k < n_slabs:
                out[i, j * n_ch:(j + 1) * n_ch, a0 - r0:a1 - r0, b0 - c0:b1 - c0] = fine[s, axis, k, :, a0:a1, b0:b1]
    return out, origin


def _theta(b: int, p: CropParams, w: int, gen: torch.Generator, device) -> torch.Tensor:
    """(B, 2, 3) affine_grid maps from crop coordinates to window coordinates (both [-1, 1])."""
    def u():
        return torch.rand(b, generator=gen, device=device) * 2 - 1
    ang = u() * math.radians(p.rotate_deg)
    zoom = 1 + u() * p.zoom                    # > 1: the crop covers more of the window (zoom out)
    scale = zoom * p.size / w
    cos, sin = torch.cos(ang) * scale, torch.sin(ang) * scale
    theta = torch.zeros(b, 2, 3, device=device)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    return theta


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with a per-sample s.d. (B,) in pixels (0: none)."""
    r = 3
    t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-t.view(1, -1) ** 2 / (2 * sigma.clamp(min=1e-3).view(-1, 1) ** 2))   # (B, 7)
    k = torch.where(sigma.view(-1, 1) > 0, k, (t.view(1, -1) == 0).to(x.dtype))
    k = k / k.sum(dim=1, keepdim=True)
    b, c, h, w = x.shape
    y = x.reshape(1, b * c, h, w)
    kr = k.repeat_interleave(c, dim=0)                                                 # (B*C, 7)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate"), kr.view(b * c, 1, 1, -1), groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), kr.view(b * c, 1, -1, 1), groups=b * c)
    return y.view(b, c, h, w)


def render_targets(pts: torch.Tensor, h: int, w: int, sigma: float) -> torch.Tensor:
    """(B, Q, 3) [label, row, col] in output-crop pixels (label -1: none) -> (B, 14, h, w) targets."""
    cell_r = torch.floor(pts[..., 1] / STRIDE)
    cell_c = torch.floor(pts[..., 2] / STRIDE)
    valid = (pts[..., 0] >= 0) & (cell_r >= 0) & (cell_r < h) & (cell_c >= 0) & (cell_c < w)
    rows = torch.arange(h, device=pts.device, dtype=pts.dtype).view(1, 1, h, 1)
    cols = torch.arange(w, device=pts.device, dtype=pts.dtype).view(1, 1, 1, w)
    g = torch.exp(-((rows - cell_r[..., None, None]) ** 2 + (cols - cell_c[..., None, None]) ** 2) / (2 * sigma ** 2))
    g = g * valid[..., None, None].to(g.dtype)                                          # (B, Q, h, w)
    onehot = F.one_hot(pts[..., 0].long().clamp(min=0), len(LABELS)).to(g.dtype)        # (B, Q, 14)
    onehot[..., PRESENT_INDEX] = 1.0
    return (onehot[..., None, None] * g[:, :, None]).amax(dim=1)                          # (B, 14, h, w)


def crop_points(points: np.ndarray, plan: np.ndarray, origin: np.ndarray, w: int) -> np.ndarray:
    """The points of each crop's series on its slab (or near its boundary) in window-normalised
    coordinates: (B, Q, 3) [label, v (rows), u (cols)] in [-1, 1] of the window; label -1 pads."""
    q = points.shape[1]
    out = np.full((len(plan), q, 3), -1.0, dtype=np.float32)
    for i, (s, axis, slab, _, _) in enumerate(plan):
        pts = points[s]
        c = pts[:, axis_cols(axis)]
        ok = (pts[:, LABEL] >= 0) & np.isfinite(c).all(axis=1) & (np.abs(c[:, 0] - slab) <= 0.5 + NEIGHBOUR_SLAB)
        for j in np.flatnonzero(ok):
            rw, cl = c[j, 1] - origin[i, 0], c[j, 2] - origin[i, 1]
            out[i, j] = (pts[j, LABEL], (2 * rw + 1) / w - 1, (2 * cl + 1) / w - 1)
    return out


def augment(win: torch.Tensor, coords: torch.Tensor, wpts: torch.Tensor, axis: torch.Tensor,
            p: CropParams, gen: torch.Generator, train: bool = True
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Windows (B, C, W, W) float [0, 1] + coords (B, 3, W, W) + points (B, Q, 3) -> crops.

    Returns image (B, C, P, P), coords (B, 3, P, P), points (B, Q, 3) [label, row, col] in crop
    pixels, and flipped (B,) bool. ``train=False``: the central crop, no perturbation."""
    b, c, w, _ = win.shape
    dev = win.device
    if train:
        theta = _theta(b, p, w, gen, dev)
    else:
        theta = torch.zeros(b, 2, 3, device=dev)
        theta[:, 0, 0] = theta[:, 1, 1] = p.size / w
    grid = F.affine_grid(theta, (b, c + 3, p.size, p.size), align_corners=False)
    warped = F.grid_sample(torch.cat([win, coords], 1), grid, mode="bilinear", padding_mode="zeros",
                           align_corners=False)
    image, xyz = warped[:, :c], warped[:, c:]
    # points: window = A @ crop (theta has no translation)  ->  crop = A^-1 @ window
    a_inv = torch.linalg.inv(theta[:, :, :2])                                           # (B, 2, 2)
    uv = torch.stack([wpts[..., 2], wpts[..., 1]], dim=-1)                              # (x = col, y = row)
    crop_uv = torch.einsum("bij,bqj->bqi", a_inv, uv)
    rows = (crop_uv[..., 1] + 1) * p.size / 2 - 0.5
    cols = (crop_uv[..., 0] + 1) * p.size / 2 - 0.5
    label = wpts[..., 0].clone()
    flipped = torch.zeros(b, dtype=torch.bool, device=dev)
    if train:
        flipped = torch.rand(b, generator=gen, device=dev) < p.flip_p
        mirror_cols = flipped & (axis != 2)              # axial/coronal columns run along x
        image, xyz = image.clone(), xyz.clone()
        m = torch.nonzero(mirror_cols).flatten()
        if m.numel():                                    # only the mirrored samples are touched
            image[m] = image[m].flip(-1)
            xyz[m] = xyz[m].flip(-1)
        f = torch.nonzero(flipped).flatten()
        if f.numel():
            xyz[f, 0] = -xyz[f, 0]                       # the mirror of x is -x (box centred)
        cols = torch.where(mirror_cols.view(-1, 1), p.size - 1 - cols, cols)
        perm = torch.tensor(flip_permutation(), device=dev)
        swapped = perm[label.long().clamp(min=0)].to(label.dtype)
        label = torch.where(flipped.view(-1, 1) & (label >= 0), swapped, label)
        # intensity: per-sample, per-channel gain and offset, gamma, noise, blur
        def u(*shape):
            return torch.rand(*shape, generator=gen, device=dev) * 2 - 1
        gain = 1 + u(b, c, 1, 1) * p.gain
        offset = u(b, c, 1, 1) * p.gain / 4
        gamma = torch.exp(u(b, 1, 1, 1) * p.gamma)
        image = image.clamp_(0, 1).pow_(gamma).mul_(gain).add_(offset)
        blurred = torch.rand(b, generator=gen, device=dev) < p.blur_p
        sig = 0.5 + 0.7 * torch.rand(b, generator=gen, device=dev)
        k = torch.nonzero(blurred).flatten()
        if k.numel():
            image[k] = _blur(image[k], sig[k])
        noise = torch.rand(b, 1, 1, 1, generator=gen, device=dev) * p.noise
        image = image.add_(noise * torch.randn(image.shape, generator=gen, device=dev)).clamp_(0, 1)
    return image, xyz, torch.stack([label, rows, cols], dim=-1), flipped


def make_batch(fine: np.ndarray, points: np.ndarray, heat_known: np.ndarray, modality_id: np.ndarray,
               series: np.ndarray, p: CropParams, rng: np.random.Generator, gen: torch.Generator,
               device: torch.device, train: bool = True, mined: np.ndarray | None = None,
               inserter: Inserter | None = None) -> dict:
    """One training batch of crops for the series ``series`` (B,): a dict of device tensors
    ``image`` (B, C, P, P), ``coords`` (B, 3, P, P), ``modality_id`` (B,), ``target``
    (B, 14, P/4, P/4), ``mask`` (B,) bool (heat targets known), ``inserted`` (B,) bool (a sac
    painted in by ``inserter``, ``willis.train.fine_insert``; all False without one), ``plan``
    (B, 5) numpy."""
    n_slabs, size = fine.shape[2], fine.shape[-1]
    plan = draw(points, heat_known, series, n_slabs, size, p, rng, mined)
    win, origin = windows(fine, plan, p, rng)
    w = win.shape[-1]
    wpts = crop_points(points, plan, origin, w)
    inserted = np.zeros(len(plan), dtype=bool)
    if inserter is not None and inserter.params.p > 0:      # crops not aimed at a sac may get a painted one
        picked = inserter.pick(plan[:, 3] >= 0, rng)
        win, wpts, inserted = insert_sacs(win, wpts, picked, modality_id[plan[:, 0]], inserter, fine.shape[3],
                                          p.size, rng)
    idx = torch.arange(w, dtype=torch.float32)
    coords = torch.cat([pixel_coords(int(a), n_slabs, size, torch.tensor([k]), idx.view(1, -1) + float(r0),
                                     idx.view(1, -1) + float(c0))
                        for (_, a, k, _, _), (r0, c0) in zip(plan, origin)])               # (B, 3, W, W)
    wpts = torch.from_numpy(wpts)
    axis = torch.from_numpy(plan[:, 1])
    x = torch.from_numpy(win).to(device).float().div_(255.0)
    image, xyz, pts, _ = augment(x, coords.to(device), wpts.to(device), axis.to(device), p, gen, train)
    h = p.size // STRIDE
    return {
        "image": image, "coords": xyz, "target": render_targets(pts, h, h, p.sigma),
        "modality_id": torch.from_numpy(modality_id[plan[:, 0]]).to(device),
        "mask": torch.from_numpy(heat_known[plan[:, 0]]).to(device),
        "inserted": torch.from_numpy(inserted).to(device), "plan": plan,
    }
