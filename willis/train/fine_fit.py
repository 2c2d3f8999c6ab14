"""Train ``fine_cnn`` on crops of the fine circle-of-Willis slabs; score whole series.

``train_fine_family`` is what ``train_family`` runs for ``train.<family>.model: fine_cnn``, one
readable loop with the same outputs (``model.pt``, ``meta.json``, ``val_logits.parquet``, dvclive
logs):

1. the family's train/val series with their fine slabs and localizers mapped into them
   (``willis.train.data.load_family_data(fine=True)``), unusable series reported;
2. per epoch, ``crops_per_series`` x (training series) crops drawn by the class-balanced sampler
   (``willis.train.sampler``), augmented (``willis.train.fine_crops``), CenterNet heat-map loss
   per peak (``willis.train.heatmap.heat_loss``), AdamW with warm-up then cosine decay;
3. every ``mine_every`` epochs, hard examples from the model's own mistakes: the strongest Present
   cells of every training series become crop centres (``willis.train.fine_mining``);
4. whole-series validation (every slab image, flip TTA) every ``val_every`` epochs and after the
   last; the best validation score's weights are kept (whole-series inference costs ~0.5 s a
   series on two CPU cores, so it is not run after every epoch by default).

``series_logits(model, fine, modality_id)`` is the one whole-series inference (validation here;
``willis.models.infer`` for evaluate and predict runs the same ``FineModel.forward``).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from willis.labels import LABELS, PRESENT_INDEX, label_slug
from willis.models.checkpoint import arch_from_params, build_model, save_model
from willis.models.fine import FineModel, series_inputs
from willis.models.infer import resolve_device
from willis.models.logits import logits_frame, write_logits
from willis.params.train import TrainParams
from willis.train.data import FamilyData, load_family_data
from willis.train.fine_crops import CropParams, make_batch
from willis.train.fine_insert import Inserter, InsertParams, loss_weights
from willis.train.fine_mining import mine_cells
from willis.train.heatmap import heat_loss
from willis.train.sampler import epoch_indices, series_weights
from willis.train.schedule import cosine_with_warmup
from willis.train.score import score_parts, weighted_score

log = logging.getLogger(__name__)


def crop_params(p: TrainParams) -> CropParams:
    """The crop sampler's knobs from the family's train section (shared augmentation names reused)."""
    return CropParams(size=p.crop_size, pos_frac=p.pos_frac, jitter=p.crop_jitter, hard_frac=p.hard_frac,
                      flip_p=p.flip_p, rotate_deg=p.crop_rotate_deg, zoom=p.affine_scale, gain=p.intensity,
                      gamma=p.aug_gamma, noise=p.aug_noise, blur_p=p.aug_blur_p, sigma=p.heat_sigma,
                      context=p.context_slabs, mine_frac=p.mine_frac)


@torch.no_grad()
def series_logits(model: FineModel, fine: np.ndarray, modality_id: np.ndarray, batch: int = 1,
                  tta: bool | None = None, rows: np.ndarray | None = None) -> np.ndarray:
    """(n, 14) float32 study logits of the whole series ``rows`` (default: all) of ``fine``
    (N, 3, K, C, F, F) uint8."""
    rows = np.arange(len(fine)) if rows is None else rows
    out = [model(x, ids, tta=tta)["logits"].float().cpu().numpy()
           for _, x, ids in series_inputs(model, fine, modality_id, rows, batch)]
    return np.concatenate(out) if out else np.zeros((0, len(LABELS)), np.float32)


def fit(data: FamilyData, p: TrainParams, epochs: int, seed: int, device: torch.device, live=None,
        desc: str = "fine") -> tuple[FineModel, dict, list[dict]]:
    """Train on ``data``'s train split, validate on its val split.

    Returns (model holding the best validation weights, best {score, epoch, logits, auc}, history)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator(device=device).manual_seed(seed + 1)
    gen_order = torch.Generator().manual_seed(seed + 2)
    cp = crop_params(p)
    _, _, k, c, size, _ = data.fine.shape
    arch = arch_from_params(p, in_channels=c, n_modalities=len(data.vocab), fine_shape=(k, size))
    model = build_model(arch).to(device)
    tr, va = data.index("train"), data.index("val")
    per_epoch = p.crops_per_series * len(tr)
    steps = math.ceil(per_epoch / p.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_with_warmup(p.warmup_epochs * steps, epochs * steps))
    weights = series_weights(data.y[tr], p.sampler_power) if p.balanced_sampler else None
    best = {"score": -math.inf, "epoch": -1, "state": None, "logits": None, "auc": None}
    history = []
    mined = None   # (N, mine_top, 3) Present cells of the training series, after the first mining
    inserter = None
    if p.insert_p > 0:
        mm = float(data.store_params.get("fine_mm_per_px", InsertParams.mm_per_px))
        inserter = Inserter.for_store(InsertParams(p=p.insert_p, mm_per_px=mm), data.fine_channels, data.vocab)
    for epoch in range(epochs):
        model.train()
        order = tr[epoch_indices(weights, per_epoch, gen_order).numpy()]
        total, n_peaks = 0.0, 0
        for s in tqdm(range(0, len(order), p.batch_size), desc=f"{desc} {epoch + 1}/{epochs}", leave=False):
            b = make_batch(data.fine, data.fine_points, data.fine_known, data.modality_id,
                           order[s:s + p.batch_size], cp, rng, gen, device, mined=mined, inserter=inserter)
            maps = model.net(b["image"], b["coords"], b["modality_id"])            # (B, 14, P/4, P/4)
            loss_sum, peaks = heat_loss(maps[:, None], b["target"][:, None], loss_weights(b["mask"], b["inserted"]))
            loss = loss_sum / peaks.clamp(min=1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip)
            opt.step()
            sched.step()
            total += float(loss_sum.detach())
            n_peaks += int(peaks)
        row = {"epoch": epoch, "loss": total / max(n_peaks, 1)}
        if not math.isfinite(row["loss"]):
            raise FloatingPointError(f"{desc}: training loss became {row['loss']}; lower train.*.lr or check the inputs")
        if live is not None:
            live.log_metric("train/heat_loss", row["loss"])
        if len(va) and (epoch == epochs - 1 or (p.val_every and (epoch + 1) % p.val_every == 0)):
            logits = series_logits(model, data.fine, data.modality_id, rows=va)
            score, auc = weighted_score(data.y[va], logits)
            present, locations = score_parts(auc)
            row.update(score=score, auc_present=present, auc_locations=locations)
            if live is not None:
                if np.isfinite(score):
                    live.log_metric("val/score", score)
                for name, v in auc.items():
                    if np.isfinite(v):
                        live.log_metric(f"val/auc/{label_slug(name)}", v)
            if np.isfinite(score) and score > best["score"]:
                best.update(score=score, epoch=epoch, state=copy.deepcopy(model.state_dict()), logits=logits, auc=auc)
        if p.mine_every and (epoch + 1) % p.mine_every == 0 and epoch < epochs - 1:
            t0 = time.perf_counter()
            mined = mine_cells(model, data.fine, data.modality_id, tr, p.mine_top)
            log.info("%s epoch %d: mined the %d strongest Present cells of %d training series (%.0f s)",
                     desc, epoch + 1, p.mine_top, len(tr), time.perf_counter() - t0)
        history.append(row)
        log.info("%s epoch %d/%d: heat loss %.4f%s", desc, epoch + 1, epochs, row["loss"],
                 f", val score {row['score']:.4f}" if "score" in row else "")
        if live is not None:
            live.next_step()
    if best["state"] is None:   # validation never had both classes: keep the last weights, say so
        log.warning("%s: validation score undefined; keeping the last epoch", desc)
        logits = series_logits(model, data.fine, data.modality_id, rows=va) if len(va) else None
        best.update(score=float("nan"), epoch=epochs - 1, state=copy.deepcopy(model.state_dict()), logits=logits,
                    auc={name: float("nan") for name in LABELS})
    model.load_state_dict(best["state"])
    return model, {k: v for k, v in best.items() if k != "state"}, history


class _GroupLive:
    """The dvclive ``Live`` as one group's ``fit`` sees it: metrics under ``<group>/``, steps from 0."""

    def __init__(self, live, group: str):
        self.live, self.group = live, group
        live.step = 0

    def log_metric(self, name: str, value) -> None:
        self.live.log_metric(f"{self.group}/{name}", value)

    def next_step(self) -> None:
        self.live.next_step()


def group_name(names) -> str:
    """File-name form of a sub-modality group: ("MRI T2", "MRI T1post") -> ``mri_t2+mri_t1post``."""
    return "+".join(label_slug(m) for m in names)


def fit_groups(data: FamilyData, p: TrainParams, epochs: int, seed: int, device: torch.device, live=None,
               desc: str = "fine") -> tuple[FineModel, dict, list[dict]]:
    """``fit`` once per group of ``p.groups``, each on its group's train / val series alone (the
    others out of both splits), with the same seed; the networks joined into one ``RoutedNet``
    model. Returns what ``fit`` returns: ``best["logits"]`` over the whole val split (each series
    by its group's network, in ``data.index("val")`` order) and the score over all of it, plus
    ``best["groups"]``: each group's series counts, best epoch and own score."""
    _, _, k, c, size, _ = data.fine.shape
    model = build_model(arch_from_params(p, c, len(data.vocab), (k, size), data.vocab)).to(device)
    va = data.index("val")
    logits = np.zeros((len(va), len(LABELS)), np.float32)
    groups, history, epoch = {}, [], -1
    for g, names in enumerate(p.groups):
        name = group_name(names)
        inside = np.isin(data.modality_id, [data.vocab.index(m) for m in names])
        sub = dataclasses.replace(data, split=np.where(inside, data.split, "other"))
        n_tr, n_va = len(sub.index("train")), len(sub.index("val"))
        if n_tr < 2 or n_va < 1:
            raise ValueError(f"{data.family}: group {list(names)} (train.{data.family}.groups) has {n_tr} training "
                             f"and {n_va} validation series; need >= 2 and >= 1")
        log.info("%s: group %s, %d train / %d val series", desc, name, n_tr, n_va)
        member, best, hist = fit(sub, dataclasses.replace(p, groups=()), epochs, seed, device,
                                 None if live is None else _GroupLive(live, name), desc=f"{desc} {name}")
        model.net.members[g].load_state_dict(member.net.state_dict())
        logits[np.isin(va, sub.index("val"))] = best["logits"]
        groups[name] = {"n_train": n_tr, "n_val": n_va, "best_epoch": best["epoch"] + 1,
                        "val_score": _finite_or_none(best["score"])}
        history += [{**row, "group": name} for row in hist]
        epoch = max(epoch, best["epoch"])
    score, auc = weighted_score(data.y[va], logits)
    return model, {"score": score, "epoch": epoch, "logits": logits, "auc": auc, "groups": groups}, history


def _finite_or_none(v):
    return float(v) if v is not None and np.isfinite(v) else None


def train_fine_family(p: TrainParams, *, family: str, store_path: str | Path, index_dir: str | Path,
                      model_dir: str | Path, report_dir: str | Path, seed: int, smoke: bool,
                      data: FamilyData | None = None, fold: int = 0, folds: int = 1) -> dict:
    """``train_family`` for ``fine_cnn``: the same arguments, outputs and summary."""
    from dvclive import Live  # imported here: dvclive pulls in DVC, slow to import for predict()

    t0 = time.perf_counter()
    fold_seed = seed  # the folds follow the global seed, never a per-family training seed
    seed = seed if p.seed is None else p.seed
    torch.set_num_threads(p.threads)
    device = resolve_device(p.device)
    if data is None:
        data = load_family_data(family, store_path, index_dir, smoke=smoke, ram_limit_gb=p.ram_limit_gb,
                                fold=fold, folds=folds, seed=fold_seed, fine=True)
    if data.fine is None:
        raise ValueError(f"{family}: fine_cnn needs the store's fine slabs (load_family_data(fine=True))")
    tr, va = data.index("train"), data.index("val")
    if len(tr) < 2 or len(va) < 1:
        raise ValueError(f"{family}: {len(tr)} training and {len(va)} validation series usable "
                         f"(skipped: {len(data.skipped)}); need >= 2 and >= 1")
    epochs = p.smoke_epochs if smoke else p.epochs
    log.info("%s: fine_cnn on %s, %d train / %d val series (%d with a sac in the fine box), %d epochs, %d skipped",
             family, device, len(tr), len(va), int((data.fine_known & (data.y[:, PRESENT_INDEX] > 0)).sum()), epochs,
             len(data.skipped))
    Path(report_dir).mkdir(parents=True, exist_ok=True)
    with Live(dir=str(report_dir), dvcyaml=False, save_dvc_exp=False) as live:
        model, best, history = (fit_groups if p.groups else fit)(data, p, epochs, seed, device, live,
                                                                 desc=f"train {family}")
        live.summary["best_epoch"] = best["epoch"] + 1
        live.summary["best_val_score"] = best["score"]
    _, _, k, c, size, _ = data.fine.shape
    epochs_run = len({row["epoch"] for row in history})   # per network (groups: each ran as many)
    prior = {name: float(v) for name, v in zip(LABELS, data.y[tr].mean(axis=0))}
    meta = {
        "family": family, "arch": arch_from_params(p, c, len(data.vocab), (k, size), data.vocab), "labels": list(LABELS),
        "modalities": data.vocab, "inputs": ["fine"],
        "channels": data.fine_channels, "size": int(size), "instances": int(k),
        "project": data.store_params, "params": dataclasses.asdict(p), "seed": seed, "smoke": smoke, "fold": fold, "folds": folds,
        "data_hash": data.data_hash, "prior": prior, "best_epoch": best["epoch"] + 1,
        "val_score": _finite_or_none(best["score"]),
        "val_auc": {name: _finite_or_none(v) for name, v in best["auc"].items()},
        "report": {"n_train": int(len(tr)), "n_val": int(len(va)), "epochs_run": epochs_run, "world_size": 1,
                   "skipped": data.skipped, "series_with_localizer_target": int((data.fine_known & (data.y[:, PRESENT_INDEX] > 0)).sum()),
                   "localizers_without_target": data.points_skipped},
    }
    if "groups" in best:
        meta["report"]["groups"] = best["groups"]
    save_model(model_dir, model, meta)
    write_logits(logits_frame([data.uids[i] for i in va], [data.modality[i] for i in va], best["logits"], data.y[va]),
                 Path(model_dir) / "val_logits.parquet")
    summary = {"family": family, "model": p.model, "best_epoch": best["epoch"] + 1, "val_score": best["score"],
               "epochs_run": epochs_run, "seconds": time.perf_counter() - t0, "history": history, "rank": 0,
               "world_size": 1}
    log.info("%s: val score %.4f (epoch %d), %.1f s", family, best["score"], best["epoch"] + 1, summary["seconds"])
    return summary
