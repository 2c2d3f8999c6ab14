"""Fit ``fine_cnn`` on crops of the fine slabs; score whole series.

``fit(data, p, ...)`` is one readable loop: per epoch, ``crops_per_series`` x (training series)
crops drawn by the class-balanced sampler (``willis.train.sampler``), augmented on the device
(``willis.train.fine_crops``), CenterNet heat-map loss per peak, AdamW with warm-up and cosine
decay. Validation scores whole series (every slab image, flip TTA) every ``val_every`` epochs
and after the last; the best validation score's weights are kept.

``series_logits(model, fine, modality_id)`` is the one whole-series inference used by
validation, evaluate and predict.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from willis.models.fine import FineModel
from willis.train.fine_crops import CropParams, make_batch
from willis.train.heatmap import heat_loss
from willis.train.sampler import epoch_indices, series_weights
from willis.train.score import weighted_score

log = logging.getLogger(__name__)


@dataclass
class FineData:
    """One family's fine slabs and targets; row i of every array is ``uids[i]``."""

    uids: list[str]
    fine: np.ndarray            # uint8 (N, 3, K, C, F, F)
    points: np.ndarray          # float32 (N, P, 10), willis.train.fine_crops
    heat_known: np.ndarray      # bool (N,): negative, or a positive with >= 1 mapped point
    y: np.ndarray               # float32 (N, 14)
    modality_id: np.ndarray     # int64 (N,)
    split: np.ndarray           # str (N,)
    extra: dict = field(default_factory=dict)

    def index(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)


@dataclass(frozen=True)
class FitParams:
    width: int = 16
    stem: int = 8
    epochs: int = 30
    crops_per_series: int = 4
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 1
    grad_clip: float = 1.0
    sampler_power: float = 0.5
    val_every: int = 0          # 0: validate whole series only after the last epoch
    tta: bool = True
    crop: CropParams = CropParams()


def cosine_with_warmup(warmup: int, total: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return f


@torch.no_grad()
def series_logits(model: FineModel, fine: np.ndarray, modality_id: np.ndarray, batch: int = 1,
                  tta: bool | None = None) -> np.ndarray:
    """(n, 14) float32 study logits of whole series ``fine`` (n, 3, K, C, F, F) uint8."""
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    out = []
    for i in range(0, len(fine), batch):
        x = torch.from_numpy(np.ascontiguousarray(fine[i:i + batch])).to(dev).float().div_(255.0)
        ids = torch.from_numpy(np.asarray(modality_id[i:i + batch])).to(dev)
        out.append(model(x, ids, tta=tta)["logits"].float().cpu().numpy())
    model.train(was)
    return np.concatenate(out) if out else np.zeros((0, 14), np.float32)


def fit(data: FineData, p: FitParams, n_modalities: int, seed: int, device: torch.device,
        on_epoch: Callable[[dict], None] | None = None) -> tuple[FineModel, dict]:
    """Train on ``data``'s train split, validate on its val split; returns (best model, summary)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator(device=device).manual_seed(seed + 1)
    gen_order = torch.Generator().manual_seed(seed + 2)
    _, _, k, c, size, _ = data.fine.shape
    model = FineModel(c, n_modalities, k, size, p.width, p.stem, p.tta).to(device)
    tr, va = data.index("train"), data.index("val")
    per_epoch = p.crops_per_series * len(tr)
    steps = math.ceil(per_epoch / p.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_with_warmup(p.warmup_epochs * steps, p.epochs * steps))
    weights = series_weights(data.y[tr], p.sampler_power)
    best = {"score": -math.inf, "epoch": -1, "state": None, "logits": None, "auc": None}
    history = []
    for epoch in range(p.epochs):
        model.train()
        order = tr[epoch_indices(weights, per_epoch, gen_order).numpy()]
        total, n_peaks = 0.0, 0
        for s in range(0, len(order), p.batch_size):
            b = make_batch(data.fine, data.points, data.heat_known, data.modality_id, order[s:s + p.batch_size],
                           p.crop, rng, gen, device)
            maps = model.net(b["image"], b["coords"], b["modality_id"])
            loss_sum, peaks = heat_loss(maps[:, None], b["target"][:, None], b["mask"])
            loss = loss_sum / peaks.clamp(min=1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip)
            opt.step()
            sched.step()
            total += float(loss_sum.detach())
            n_peaks += int(peaks)
        row = {"epoch": epoch, "loss": total / max(n_peaks, 1)}
        last = epoch == p.epochs - 1
        if len(va) and (last or (p.val_every and (epoch + 1) % p.val_every == 0)):
            logits = series_logits(model, data.fine[va], data.modality_id[va])
            score, auc = weighted_score(data.y[va], logits)
            row.update(score=score)
            if np.isfinite(score) and score > best["score"]:
                best.update(score=score, epoch=epoch, state=copy.deepcopy(model.state_dict()), logits=logits, auc=auc)
        history.append(row)
        log.info("fine epoch %d/%d: loss %.4f%s", epoch + 1, p.epochs, row["loss"],
                 f", val score {row['score']:.4f}" if "score" in row else "")
        if on_epoch is not None:
            on_epoch(row)
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    return model, {"best": {k: v for k, v in best.items() if k != "state"}, "history": history}
