"""The training loop of one family: fit, validate every epoch, keep the best, write the checkpoint.

One readable top-to-bottom function (``train_family``):

1. join labels, projections and localizer targets (``willis.train.data``), report unusable series;
2. build the model from params (``willis.models.checkpoint.arch_from_params``);
3. per epoch: class-balanced draw of the training series, device-side augmentation, forward under
   bf16 autocast on GPU (fp32 on CPU, deterministic for a fixed seed), classification loss
   (+ hierarchy penalty, + auxiliary attention loss when switched on, + the localizer heat-map
   loss of ``willis.train.heatmap`` when the model has a heat head), gradient clipping, AdamW
   with linear warm-up then cosine decay per step;
4. validation weighted score (``willis.train.score``) after every epoch, logged with dvclive;
   early stopping when it has not improved for ``patience`` epochs;
5. the best epoch's weights -> ``model.pt`` + ``meta.json``, its validation logits ->
   ``val_logits.parquet`` (the table ``calibrate`` reads).
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

from willis.labels import LABELS, label_slug
from willis.models.checkpoint import arch_from_params, build_model, save_model
from willis.models.infer import autocast, predict_batches, resolve_device
from willis.models.logits import logits_frame, write_logits
from willis.params.train import TrainParams
from willis.train import distributed
from willis.train.augment import augment
from willis.train.data import FamilyData, load_family_data
from willis.train.heatmap import hit_rate, localizer_heat_loss, prior_peaks
from willis.train.loader import BatchSource, batches
from willis.train.losses import attention_loss, make_loss, pos_weight_from
from willis.train.sampler import epoch_indices, series_weights
from willis.train.schedule import cosine_with_warmup
from willis.train.score import score_parts, weighted_score

log = logging.getLogger(__name__)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def batch_loss(model, b: dict, p: TrainParams, loss_fn, gen_aug: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment one device batch, run the model, return (total loss, heat-map loss term).

    The total is the classification loss (+ the auxiliary attention loss for ``mil`` when on,
    + ``heat_weight`` x the localizer heat-map loss when the model has a heat head). The one
    definition of a training step's loss: the loop and ``benchmarks/bench_loader.py`` call it."""
    mip, inst, y, points = augment(b["mip"], b["instances"], b["y"], p, gen_aug, b["points"])
    with autocast(mip.device):
        out = model(mip, inst, b["modality_id"])
        loss = loss_fn(out["logits"], y)
        heat = loss.new_zeros(())
        if p.model == "mil" and p.aux_attention_weight > 0:
            loss = loss + p.aux_attention_weight * attention_loss(out["attention"], b["attn_target"], b["attn_mask"])
        if p.heatmap and p.heat_weight > 0:
            heat = localizer_heat_loss(out, points, b["heat_mask"], p.heat_sigma)
            loss = loss + p.heat_weight * heat
    return loss, heat


def _train_epoch(model, source, order, p: TrainParams, loss_fn, opt, sched, gen_aug, device,
                 desc) -> tuple[float, float]:
    """One pass over ``order``; returns the mean total loss and the mean heat-map loss term."""
    model.train()
    total, heat_total, n = torch.zeros((), device=device), torch.zeros((), device=device), 0
    steps = math.ceil(len(order) / p.batch_size)
    bar = tqdm(batches(source, order, p.batch_size, device), total=steps, desc=desc, leave=False)
    for b in bar:
        loss, heat = batch_loss(model, b, p, loss_fn, gen_aug)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip)
        opt.step()
        sched.step()
        # sums stay on the device: no per-step sync
        total = total + loss.detach().float() * len(b["idx"])
        heat_total = heat_total + heat.detach().float() * len(b["idx"])
        n += len(b["idx"])
    mean = float(total) / max(n, 1)
    if not math.isfinite(mean):
        raise FloatingPointError(f"{desc}: training loss became {mean}; lower train.*.lr or check the inputs")
    return mean, float(heat_total) / max(n, 1)


def _validate(model, source, va, batch_size, device, y, prior_hits: float = float("nan")
              ) -> tuple[float, dict, np.ndarray, dict]:
    """(weighted score, per-label AUC, logits (n, 14), localisation checks).

    The checks: ``attention_on_target``, the mean over validation series with a localizer target
    of the attention the model puts on the instances that hold the aneurysm (uniform attention
    scores 1/K); ``heat_hit_rate``, the share of (positive series, view) pairs whose heat-map peak
    lies within 5 % of the image side of a localizer (``willis.train.heatmap.hit_rate``; NaN
    without a heat head); ``heat_hit_rate_prior``, the same for a constant peak at the training
    localizers' median (``prior_hits``, computed once by the caller): the chance level to read it against."""
    logits, attn, peaks = predict_batches(model, batches(source, va, 2 * batch_size, device))
    score, auc = weighted_score(y, logits)
    d = source.data
    mask = d.attn_mask[va]
    on_target = float((attn[mask] * (d.attn_target[va][mask] > 0)).sum(axis=1).mean()) if mask.any() \
        and attn.shape[1] == d.attn_target.shape[1] else float("nan")
    hits = hit_rate(peaks, d.points[va]) if peaks is not None else float("nan")
    return score, auc, logits, {"attention_on_target": on_target, "heat_hit_rate": hits,
                                "heat_hit_rate_prior": prior_hits if peaks is not None else float("nan")}


def _finite_or_none(v: float):
    """NaN -> None, so meta.json stays strict JSON."""
    return float(v) if v is not None and np.isfinite(v) else None


class _NoLive:
    """Stands in for dvclive on ranks other than 0 (only rank 0 logs)."""

    summary: dict = {}

    def log_metric(self, *a, **k) -> None:
        pass

    def next_step(self) -> None:
        pass


def train_family(p: TrainParams, *, family: str, store_path: str | Path, index_dir: str | Path,
                 model_dir: str | Path, report_dir: str | Path, seed: int, smoke: bool,
                 data: FamilyData | None = None, fold: int = 0, folds: int = 1) -> dict:
    """Train ``family`` with its section ``p`` (``train.<family>``); return a summary dict.

    ``seed`` is the global seed (used unless ``p.seed`` is set), ``smoke`` the top-level switch
    (the smoke subset, ``p.smoke_epochs`` epochs). Writes ``model_dir/{model.pt, meta.json,
    val_logits.parquet}`` and dvclive logs in ``report_dir`` (``metrics.json``, ``plots/metrics``).
    ``data`` may be passed preloaded (benchmarks, the on/off comparison) to skip re-reading the
    store. Under ``torchrun`` it trains data-parallel (``willis.train.distributed``) and only rank 0 writes.
    ``fold`` of ``folds``: the cross-validation fold whose series are the validation split
    (``willis.train.data.with_fold_split``; folds are cut with the global ``seed``).
    """
    if p.model == "fine_cnn":  # crops of the fine slabs: its own loop, the same outputs
        from willis.train.fine_fit import train_fine_family
        return train_fine_family(p, family=family, store_path=store_path, index_dir=index_dir, model_dir=model_dir,
                                 report_dir=report_dir, seed=seed, smoke=smoke, data=data, fold=fold, folds=folds)
    from dvclive import Live  # imported here: dvclive pulls in DVC, slow to import for predict()

    t0 = time.perf_counter()
    fold_seed = seed  # the folds follow the global seed, never a per-family training seed
    seed = seed if p.seed is None else p.seed  # a per-family training seed: seed-variance studies
    _seed_everything(seed)
    torch.set_num_threads(p.threads)
    info, device = distributed.setup(resolve_device(p.device))
    try:
        if data is None:
            data = load_family_data(family, store_path, index_dir, smoke=smoke, ram_limit_gb=p.ram_limit_gb,
                                    fold=fold, folds=folds, seed=fold_seed)
        tr, va = data.index("train"), data.index("val")
        if len(tr) < 2 or len(va) < 1:
            raise ValueError(f"{family}: {len(tr)} training and {len(va)} validation series usable "
                             f"(skipped: {len(data.skipped)}); need >= 2 and >= 1")
        epochs = p.smoke_epochs if smoke else p.epochs
        arch = arch_from_params(p, in_channels=len(data.channels), n_modalities=len(data.vocab))
        model = build_model(arch).to(device)
        if device.type == "cuda":  # channels-last weights: the fast conv layout for bf16 on tensor cores
            model = model.to(memory_format=torch.channels_last)
        trained = distributed.wrap(model, info, device)  # DDP when under torchrun, else the model itself
        source = BatchSource(data, need_instances=p.model == "mil", device=device)
        loss_fn = make_loss(p, pos_weight_from(data.y[tr], p.max_pos_weight), len(LABELS)).to(device)
        opt = torch.optim.AdamW(trained.parameters(), lr=p.lr, weight_decay=p.weight_decay)
        steps = math.ceil(len(distributed.shard(tr, info)) / p.batch_size)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_with_warmup(p.warmup_epochs * steps, epochs * steps))
        gen_sample = torch.Generator().manual_seed(seed)                  # same global order on every rank
        gen_aug = torch.Generator(device=device).manual_seed(seed + 1 + info.rank)
        weights = series_weights(data.y[tr], p.sampler_power) if p.balanced_sampler else None
        log.info("%s: %s on %s, %d train / %d val series, %d epochs, %d skipped", family, p.model, device,
                 len(tr), len(va), epochs, len(data.skipped))

        # chance level of the heat-map hit rate: a constant peak at the training localizers' median
        prior_hits = hit_rate(prior_peaks(data.points[tr], len(va)), data.points[va])
        best = {"score": -math.inf, "epoch": -1, "state": None, "logits": None, "auc": None}
        history = []
        if info.main:
            Path(report_dir).mkdir(parents=True, exist_ok=True)
        live_ctx = Live(dir=str(report_dir), dvcyaml=False, save_dvc_exp=False) if info.main else None
        live = live_ctx.__enter__() if live_ctx is not None else _NoLive()
        try:
            for epoch in range(epochs):
                order = distributed.shard(tr[epoch_indices(weights, len(tr), gen_sample).numpy()], info)
                loss, heat = _train_epoch(trained, source, order, p, loss_fn, opt, sched, gen_aug, device,
                                          desc=f"train {family} {epoch + 1}/{epochs}")
                distributed.sync_buffers(trained, info)
                score, auc, logits, checks = _validate(model, source, va, p.batch_size, device, data.y[va],
                                                       prior_hits)
                present, locations = score_parts(auc)
                history.append({"epoch": epoch, "loss": loss, "heat_loss": heat, "score": score,
                                "auc_present": present, "auc_locations": locations, **checks})
                for name, v in checks.items():
                    if np.isfinite(v):
                        live.log_metric(f"val/{name}", v)
                live.log_metric("train/loss", loss)
                if p.heatmap and p.heat_weight > 0:
                    live.log_metric("train/heat_loss", heat)
                if np.isfinite(score):  # undefined (no positives in val) is not logged as a number
                    live.log_metric("val/score", score)
                for name, v in auc.items():
                    if np.isfinite(v):  # a label without positives in val has no AUC: not logged as 0.5
                        live.log_metric(f"val/auc/{label_slug(name)}", v)
                log.info("%s epoch %d/%d: loss %.4f, val score %.4f, heat-map hits %.2f", family, epoch + 1,
                         epochs, loss, score, checks["heat_hit_rate"])
                if np.isfinite(score) and score > best["score"]:
                    best.update(score=score, epoch=epoch, state=copy.deepcopy(model.state_dict()),
                                logits=logits, auc=auc)
                live.next_step()
                stop = best["epoch"] >= 0 and epoch - best["epoch"] >= p.patience
                if distributed.agree(stop, info, device):
                    log.info("%s: early stop after epoch %d (best %d)", family, epoch + 1, best["epoch"] + 1)
                    break
            if best["state"] is None:  # validation never had both classes: keep the last weights, say so
                log.warning("%s: validation score undefined every epoch; keeping the last epoch", family)
                best.update(score=float("nan"), epoch=len(history) - 1, state=model.state_dict(),
                            logits=_validate(model, source, va, p.batch_size, device, data.y[va])[2],
                            auc={k: float("nan") for k in LABELS})
            live.summary["best_epoch"] = best["epoch"] + 1
            live.summary["best_val_score"] = best["score"]
        finally:
            if live_ctx is not None:
                live_ctx.__exit__(None, None, None)

        if info.main:
            prior = {name: float(v) for name, v in zip(LABELS, data.y[tr].mean(axis=0))}
            meta = {
                "family": family, "arch": arch, "labels": list(LABELS), "modalities": data.vocab,
                "channels": data.channels, "size": data.size, "instances": data.instances,
                "project": data.store_params,
                "params": dataclasses.asdict(p), "seed": seed, "smoke": smoke, "fold": fold, "folds": folds,
                "data_hash": data.data_hash, "prior": prior, "best_epoch": best["epoch"] + 1,
                "val_score": _finite_or_none(best["score"]),
                "val_auc": {k: _finite_or_none(v) for k, v in best["auc"].items()},  # None: no positives
                "report": {"n_train": int(len(tr)), "n_val": int(len(va)), "epochs_run": len(history),
                           "world_size": info.world, "skipped": data.skipped,
                           "series_with_localizer_target": int(data.attn_mask.sum()),
                           "localizers_without_target": data.points_skipped},
            }
            save_model(model_dir, model, meta, state=best["state"])
            df = logits_frame([data.uids[i] for i in va], [data.modality[i] for i in va], best["logits"],
                              data.y[va])
            write_logits(df, Path(model_dir) / "val_logits.parquet")
    finally:
        distributed.cleanup(info)
    summary = {"family": family, "model": p.model, "best_epoch": best["epoch"] + 1,
               "val_score": best["score"], "epochs_run": len(history), "seconds": time.perf_counter() - t0,
               "history": history, "rank": info.rank, "world_size": info.world}
    log.info("%s: best val score %.4f at epoch %d, %.1f s", family, best["score"], best["epoch"] + 1,
             summary["seconds"])
    return summary
