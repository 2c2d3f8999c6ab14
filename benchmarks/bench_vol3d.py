"""A 3-D CNN on isotropic volumes of the fine box, scored against ``fine_cnn`` (a measurement, not a stage).

Every top solution of the competition read the circle of Willis as a 3-D volume; ``fine_cnn`` reads
it as thin-slab projections on three axes. This measures whether a small 3-D network does better at
the default's size (134 CT / 199 MR training series) on this 2-core CPU box; docs/training.md
("What helped, what did not") has the numbers. Three steps, on the pipeline's own outputs:

    python benchmarks/bench_vol3d.py extract --family ct      # volumes of train/val/test -> data/vol3d/ct/
    python benchmarks/bench_vol3d.py extract --family ct --heldout --index data/heldout_store/index \
        --projections data/heldout_store/projections --root data/heldout   # the held-out profile
                                                               # (made by bench_fold_models.py), -> data/vol3d/ct_heldout/
    python benchmarks/bench_vol3d.py train --family ct --epochs 60 --crop 40   # train; score val, test, held-out

- **Volume** (``series_volume``): the series' kept frames, stacked by position, sampled
  (trilinear, ``scipy.ndimage.map_coordinates``) on a regular LPS grid of ``--mm`` (1.0) over the
  store's fine box (``attrs["series"][uid]["fine"]["box_mm"]``, 136 mm: 136^3 voxels), windowed to
  uint8 (CT [-100, 700] HU; MR the series' [p1, p99.9] above its median). ``vol[i, j, k]`` is at
  ``box_lo + (i + 0.5, j + 0.5, k + 0.5) * mm`` (x, y, z). It holds the whole series in memory (the
  default's capped series are <= 96 x 224^2): a measurement tool, not the O(slice) ``project``.
- **Network** (``Net3d``): four input planes (intensity and each voxel's x, y, z in the box, as
  ``fine_cnn``'s coordinate planes; MR adds sub-modality one-hot planes), strides 2-4-8 with 16-32-64
  channels, the stride-8 features upsampled onto stride 4 and fused, a 14-channel heat map at 4 mm
  cells. Trained like ``fine_cnn``: crops of ``--crop`` voxels, class-balanced series draw, half the
  crops of a positive around a localizer (``--jitter``), the others around bright unsaturated voxels
  (vessels, calcifications) or random; mirror (labels swapped, x plane negated), 90-degree turns in
  the axial plane with the coordinate planes (``--rot``, CT), gain / gamma / noise; CenterNet focal
  loss (``willis.train.heatmap.heat_loss``) on Gaussians at each localizer's cell; AdamW, one-cycle.
  Series logit per label: the map's maximum, averaged with the mirrored volume's (Left / Right swapped).
- **Scores**: the competition score of the uncalibrated sigmoids (as ``bench_fold_models.py``) on
  the index's val and test splits and the held-out profile, per sub-modality too; the best
  validation epoch's weights (``--val-every``) are scored.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
import zarr
from scipy.ndimage import map_coordinates

from willis.dicom.frames import iter_frames
from willis.index.tables import read_index
from willis.labels import LABELS, PRESENT_INDEX, flip_permutation, modality_vocab
from willis.metrics import competition_score
from willis.train.heatmap import heat_loss

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fold_models import scores_by_modality  # noqa: E402  (the per-sequence scores of every benchmark)

OUT = Path("data/vol3d")
L = len(LABELS)


def series_volume(files: pd.DataFrame, root: str, box: np.ndarray, mm: float, family: str) -> np.ndarray:
    """uint8 (n, n, n) of the box: frames stacked by position, sampled at the grid points."""
    kept = files[files["keep"]].sort_values("order")
    r0 = kept.iloc[0]
    o = np.asarray(r0["orientation"], float)
    rdir, cdir = o[:3], o[3:]                     # along a row (column index), along a column (row index)
    normal = np.cross(rdir, cdir)
    dr, dc = (float(v) for v in r0["pixel_spacing"])
    frames, ipps = [], []
    for row, fr in iter_frames(files, root):
        frames.append(fr.astype(np.float32))
        ipps.append(np.asarray(row.ipp, float))
    V = np.stack(frames)                           # (S, R, C)
    ipps = np.stack(ipps)
    pos = ipps @ normal
    n = int(round((box[0, 1] - box[0, 0]) / mm))
    g = [box[a, 0] + (np.arange(n) + 0.5) * mm for a in range(3)]
    X, Y = np.meshgrid(g[0], g[1], indexing="ij")  # (n, n)
    if family == "ct":
        lo, hi, fill = -100.0, 700.0, -1000.0
    else:
        sample = V[:, ::4, ::4]
        lo, hi = np.percentile(sample[sample > np.percentile(sample, 50)], [1, 99.9]) if sample.size else (0, 1)
        fill = float(V.min())
    out = np.empty((n, n, n), np.uint8)
    s_idx = np.arange(len(pos), dtype=float)
    for k, z in enumerate(g[2]):
        P = np.stack([X, Y, np.full_like(X, z)], -1)                 # (n, n, 3)
        s = np.interp(P @ normal, pos, s_idx, left=-10, right=len(pos) + 10)
        # in-plane position relative to the nearest slice's own IPP (gantry tilt moves IPP in-plane)
        near = np.clip(np.rint(s), 0, len(pos) - 1).astype(int)
        u = P - ipps[near]
        col = (u @ rdir) / dc
        rowi = (u @ cdir) / dr
        vals = map_coordinates(V, [s.ravel(), rowi.ravel(), col.ravel()], order=1, cval=fill, mode="constant")
        out[:, :, k] = np.clip((vals.reshape(n, n) - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8)
    return out


def cmd_extract(a) -> None:
    series = read_index(a.index)
    files = read_index(a.index, "files")
    store = zarr.open_group(f"{a.projections}/{a.family}.zarr", mode="r")
    attrs = store.attrs["series"]
    rows = series[(series["family"] == a.family) & series["split"].isin(["train", "val", "test"])]
    if a.heldout:   # another generator profile: every labelled series is scored, none trained on
        rows = series[(series["family"] == a.family) & series["in_csv"]].assign(split="heldout")
    out = OUT / (a.family + ("_heldout" if a.heldout else ""))
    out.mkdir(parents=True, exist_ok=True)
    meta = {}
    t0 = time.time()
    by_uid = dict(tuple(files.groupby("SeriesInstanceUID")))
    for i, r in enumerate(rows.itertuples()):
        uid = r.SeriesInstanceUID
        if uid not in attrs or "fine" not in attrs[uid]:
            continue
        box = np.asarray(attrs[uid]["fine"]["box_mm"], float)
        f = out / f"{uid}.npy"
        if not f.exists():
            try:
                np.save(f, series_volume(by_uid[uid], a.root, box, a.mm, a.family))
            except Exception as e:  # noqa: BLE001 - a measurement: name the series, leave it out, go on
                print(f"left out {uid}: {e}")
                continue
        meta[uid] = {"box": box.tolist(), "split": r.split, "modality": r.Modality}
        if i % 50 == 0:
            print(f"{i}/{len(rows)} {time.time() - t0:.0f}s", flush=True)
    (out / "meta.json").write_text(json.dumps({"mm": a.mm, "series": meta}))
    print(f"done {len(meta)} in {time.time() - t0:.0f}s")


# ---------------------------------------------------------------- model

def cbr(i, o, s=1, k=3):
    return nn.Sequential(nn.Conv3d(i, o, k, s, k // 2, bias=False), nn.BatchNorm3d(o), nn.ReLU(inplace=True))


class Net3d(nn.Module):
    """(B, C, D, D, D) -> (B, L, D/4, D/4, D/4) heat logits (stride 4)."""

    def __init__(self, c_in: int, w: int = 16):
        super().__init__()
        self.s1 = nn.Sequential(cbr(c_in, w, 2), cbr(w, w))                    # /2
        self.s2 = nn.Sequential(cbr(w, 2 * w, 2), cbr(2 * w, 2 * w))           # /4
        self.s3 = nn.Sequential(cbr(2 * w, 4 * w, 2), cbr(4 * w, 4 * w), cbr(4 * w, 4 * w))   # /8
        self.fuse = nn.Sequential(cbr(6 * w, 3 * w, k=1), cbr(3 * w, 3 * w))
        self.head = nn.Conv3d(3 * w, L, 1)
        nn.init.constant_(self.head.bias, -4.0)

    def forward(self, x):
        a = self.s2(self.s1(x))
        b = F.interpolate(self.s3(a), size=a.shape[2:], mode="trilinear", align_corners=False)
        return self.head(self.fuse(torch.cat([a, b], 1)))


def coord_planes(origin: np.ndarray, size: int, n: int) -> np.ndarray:
    """(3, size, size, size) float32: each voxel's position in the box, in [-1, 1]."""
    ax = [((origin[a] + np.arange(size) + 0.5) / n) * 2 - 1 for a in range(3)]
    return np.stack(np.meshgrid(*ax, indexing="ij")).astype(np.float32)


def load(a, splits, heldout=False):
    folder = OUT / (a.family + ("_heldout" if heldout else ""))
    index = a.heldout_index if heldout else a.index
    meta = json.loads((folder / "meta.json").read_text())
    mm = meta["mm"]
    series = read_index(index).set_index("SeriesInstanceUID")
    loc = read_index(index, "localizers")
    vocab = modality_vocab(a.family)
    D = {}
    for uid, m in meta["series"].items():
        if m["split"] not in splits:
            continue
        vol = np.load(folder / f"{uid}.npy")
        box = np.asarray(m["box"])
        y = series.loc[uid, list(LABELS)].to_numpy(float)
        if not np.all(np.isfinite(y) & (y >= 0)):   # a series without train.csv labels (-1) is not scored
            continue
        pts = []
        for r in loc[loc["SeriesInstanceUID"] == uid].itertuples():
            p = np.asarray(r.patient, float) if r.patient is not None else None
            if p is None or not np.all(np.isfinite(p)):
                continue
            v = (p - box[:, 0]) / mm - 0.5
            if np.all(v >= 0) and np.all(v <= vol.shape[0] - 1):
                pts.append([LABELS.index(r.location), *v])
        mod = series.loc[uid, "Modality"]
        sub = vol[::2, ::2, ::2]
        bright = np.argwhere((sub > np.percentile(sub, 97)) & (sub < 250)) * 2
        D[uid] = dict(vol=vol, y=y, bright=bright, pts=np.asarray(pts, np.float32).reshape(-1, 4), split=m["split"],
                      mod=vocab.index(mod) if mod in vocab else 0, modality=mod)
    return D


def make_crop(d, c, size):
    """One training crop around centre c (3,) -> input (C, s, s, s), points (P, 4) in crop voxels."""
    n = d["vol"].shape[0]
    o = np.clip(np.asarray(c) - size // 2, 0, n - size).astype(int)
    v = d["vol"][o[0]:o[0] + size, o[1]:o[1] + size, o[2]:o[2] + size].astype(np.float32) / 255
    x = np.concatenate([v[None], coord_planes(o, size, n)])
    p = d["pts"].copy()
    if len(p):
        p[:, 1:] -= o
    return x, p


def batch(D, uids, args, rng, size, n_mod):
    xs, ps, ms = [], [], []
    for uid in uids:
        d = D[uid]
        n = d["vol"].shape[0]
        r = rng.random()
        if len(d["pts"]) and r < args.pos_frac:
            c = d["pts"][rng.integers(len(d["pts"])), 1:] + rng.integers(-args.jitter, args.jitter + 1, 3)
        elif r < args.pos_frac + (1 - args.pos_frac) / 2:
            # a bright, unsaturated voxel: hard negatives (vessels, calcifications)
            idx = d["bright"]
            c = idx[rng.integers(len(idx))] if len(idx) else rng.integers(0, n, 3)
        else:
            c = rng.integers(size // 2, n - size // 2, 3)
        x, p = make_crop(d, c, size)
        xs.append(x)
        ps.append(p)
        ms.append(d["mod"])
    X = torch.from_numpy(np.stack(xs))
    B = len(uids)
    # augmentation: L-R flip (x axis, labels swapped), axial-plane 90-degree turns (CT), intensity
    perm = torch.tensor(flip_permutation())
    cell = size // 4
    T = torch.zeros(B, L, cell, cell, cell)
    for b in range(B):
        p = torch.from_numpy(ps[b]).clone()
        if rng.random() < 0.5:
            # mirror: the mirrored voxel's position is -x (box centred), so the x plane is negated
            X[b] = X[b].flip(1)
            X[b, 1] = -X[b, 1]
            if len(p):
                p[:, 1] = size - 1 - p[:, 1]
                p[:, 0] = perm[p[:, 0].long()].float()
        if args.rot:
            k = int(rng.integers(4))
            if k:
                X[b] = torch.rot90(X[b], k, dims=(1, 2))   # turns (x, y) with the coordinate planes
                for _ in range(k):   # rot90 by +1 on dims (1,2): new[i, j] = old[j, size-1-i]
                    if len(p):
                        p[:, 1], p[:, 2] = size - 1 - p[:, 2].clone(), p[:, 1].clone()
        g = 1 + 0.15 * rng.standard_normal()
        gamma = math.exp(0.2 * rng.standard_normal())
        X[b, 0] = (X[b, 0].clamp(0, 1) ** gamma * g + 0.05 * rng.standard_normal()
                   + 0.02 * torch.randn_like(X[b, 0]))
        for q in p:
            cc = torch.floor(q[1:] / 4)                   # voxel -> stride-4 cell
            grid = torch.arange(cell, dtype=torch.float32)
            d2 = ((grid.view(-1, 1, 1) - cc[0]) ** 2 + (grid.view(1, -1, 1) - cc[1]) ** 2
                  + (grid.view(1, 1, -1) - cc[2]) ** 2)
            gk = torch.exp(-d2 / (2 * args.sigma ** 2))
            if torch.all((cc >= 0) & (cc < cell)):
                for ch in (int(q[0]), PRESENT_INDEX):
                    T[b, ch] = torch.maximum(T[b, ch], gk)
    if n_mod > 1:
        oh = torch.zeros(B, n_mod, size, size, size)
        oh[torch.arange(B), torch.tensor(ms)] = 1
        X = torch.cat([X, oh], 1)
    return X, T


@torch.no_grad()
def series_logits(net, d, n_mod, tta=True):
    n = d["vol"].shape[0]
    x = torch.from_numpy(np.concatenate([d["vol"][None].astype(np.float32) / 255, coord_planes(np.zeros(3), n, n)]))[None]
    if n_mod > 1:
        oh = torch.zeros(1, n_mod, n, n, n)
        oh[0, d["mod"]] = 1
        x = torch.cat([x, oh], 1)
    x = x.to(memory_format=torch.channels_last_3d)
    m = net(x)[0]                                         # (L, c, c, c)
    z = m.flatten(1).amax(1)
    if tta:
        xf = x.clone()
        xf[:, :] = x.flip(2)
        xf[:, 1:4] = x[:, 1:4]   # the mirrored head: voxel i is at position x_i again (box centred)
        mf = net(xf.to(memory_format=torch.channels_last_3d))[0].flip(1)[flip_permutation()]
        z = (z + mf.flatten(1).amax(1)) / 2
    return z.numpy()


def score(net, D, split, n_mod):
    uids = [u for u in D if D[u]["split"] == split]
    Z = np.stack([series_logits(net, D[u], n_mod) for u in uids])
    Y = np.stack([D[u]["y"] for u in uids])
    s = competition_score(Y, 1 / (1 + np.exp(-Z)))
    return s, Z, Y, uids


def cmd_train(a) -> None:
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    D = load(a, {"train", "val", "test"})
    n_mod = len(modality_vocab(a.family)) if a.family == "mr" else 1
    train = [u for u in D if D[u]["split"] == "train"]
    pos = [u for u in train if D[u]["y"][PRESENT_INDEX] > 0]
    neg = [u for u in train if D[u]["y"][PRESENT_INDEX] == 0]
    print(f"train {len(train)} ({len(pos)} positive), val {sum(D[u]['split'] == 'val' for u in D)}, "
          f"test {sum(D[u]['split'] == 'test' for u in D)}; points {sum(len(D[u]['pts']) for u in pos)}", flush=True)
    net = Net3d(4 + (n_mod if n_mod > 1 else 0), a.width).to(memory_format=torch.channels_last_3d)   # ~1.7x on CPU
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(train) * a.crops / a.batch)
    total = steps_per_epoch * a.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, a.lr, total_steps=total, pct_start=0.05)
    best, t0 = -1.0, time.time()
    for ep in range(a.epochs):
        net.train()
        order = []
        for _ in range(math.ceil(len(train) * a.crops / 2)):   # class-balanced series draw
            order.append(pos[rng.integers(len(pos))])
            order.append(neg[rng.integers(len(neg))])
        losses = []
        for s in range(steps_per_epoch):
            X, T = batch(D, order[s * a.batch:(s + 1) * a.batch], a, rng, a.crop, n_mod)
            out = net(X.to(memory_format=torch.channels_last_3d))
            tot, npk = heat_loss(out, T, torch.ones(len(X), dtype=torch.bool))
            loss = tot / npk.clamp(min=1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        msg = f"epoch {ep + 1} loss {np.mean(losses):.3f} {time.time() - t0:.0f}s"
        if (ep + 1) % a.val_every == 0 or ep + 1 == a.epochs:
            net.eval()
            s, *_ = score(net, D, "val", n_mod)
            msg += f" val {s['score']:.3f} (present {s['auc_present']:.3f})"
            if s["score"] > best:
                best = s["score"]
                torch.save(net.state_dict(), OUT / a.family / f"net_{a.tag}.pt")
        print(msg, flush=True)
    net.load_state_dict(torch.load(OUT / a.family / f"net_{a.tag}.pt"))
    net.eval()
    res = {}
    if (OUT / (a.family + "_heldout") / "meta.json").exists():
        D.update(load(a, {"heldout"}, heldout=True))
    for split in ("val", "test", "heldout"):
        if not any(D[u]["split"] == split for u in D):
            continue
        s, Z, Y, uids = score(net, D, split, n_mod)
        res[split] = s
        np.savez(OUT / a.family / f"logits_{a.tag}_{split}.npz", Z=Z, Y=Y, uids=np.asarray(uids))
        print(split, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in s.items() if not isinstance(v, (list, dict))}, flush=True)
        for m, sm in scores_by_modality(Y, Z, np.array([D[u]["modality"] for u in uids])).items():
            print(f"  {split} {m}: {sm:.3f}", flush=True)
    print(f"train time {time.time() - t0:.0f}s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["extract", "train"])
    ap.add_argument("--family", default="ct")
    ap.add_argument("--index", default="data/index")
    ap.add_argument("--projections", default="data/projections")
    ap.add_argument("--root", default="data/synthetic")
    ap.add_argument("--mm", type=float, default=1.0)
    ap.add_argument("--heldout", action="store_true", help="extract: every series of --index, split 'heldout'")
    ap.add_argument("--heldout-index", dest="heldout_index", default="data/heldout_store/index")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--crops", type=int, default=6)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--crop", type=int, default=40)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--pos-frac", dest="pos_frac", type=float, default=0.5)
    ap.add_argument("--jitter", type=int, default=12)
    ap.add_argument("--sigma", type=float, default=1.0)
    ap.add_argument("--rot", type=int, help="90-degree axial turns: 1 or 0 (default: CT 1, MR 0, as fine_cnn's crop rotation)")
    ap.add_argument("--val-every", dest="val_every", type=int, default=5)
    ap.add_argument("--seed", type=int, default=20251)
    ap.add_argument("--tag", default="a")
    a = ap.parse_args()
    if a.rot is None:
        a.rot = int(a.family == "ct")
    {"extract": cmd_extract, "train": cmd_train}[a.cmd](a)


if __name__ == "__main__":
    main()
