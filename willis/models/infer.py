"""Logits from a trained checkpoint: batched over a store (evaluate) or one in-memory series (predict).

What comes out is the logits table of ``willis.models.logits`` (the contract ``calibrate`` and
``evaluate`` read), or the 14 logits of one series; ``resolve_device`` and ``autocast`` are the
one device policy of training and inference alike.

    >>> df = logits_for("models/ct", "data/projections/ct.zarr", uids)
    >>> z = infer_arrays(model, meta, mip, instances, "MRA")    # (14,) for one series
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from willis.labels import LABELS, PRESENT_INDEX
from willis.models.checkpoint import load_model
from willis.models.heat import peak_cells
from willis.models.logits import logits_frame
from willis.projections.store import StoreError, load_family, open_store


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> the first CUDA device when there is one, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast(device: torch.device):
    """bf16 autocast on CUDA (no loss scaling needed, unlike fp16); plain fp32 on CPU (deterministic)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def predict_batches(model: torch.nn.Module, batch_iter) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Run an eval-mode model over device batches (``willis.train.loader.batches``).

    Returns logits (N, 14) float32, attention (N, K) float32 and, for a model with a heat head,
    the Present channel's peak per view (N, 3, 2) in normalised (row, col) (else None)."""
    was_training = model.training
    model.eval()
    logits, attn, peaks = [], [], []
    for b in batch_iter:
        with autocast(b["mip"].device):
            out = model(b["mip"], b["instances"], b["modality_id"])
        logits.append(out["logits"].float().cpu().numpy())
        attn.append(out["attention"].float().cpu().numpy())
        if "heat_views" in out:
            peaks.append(peak_cells(out["heat_views"].float(), PRESENT_INDEX).cpu().numpy())
    model.train(was_training)
    if not logits:
        return np.zeros((0, len(LABELS)), np.float32), np.zeros((0, 0), np.float32), None
    return np.concatenate(logits), np.concatenate(attn), (np.concatenate(peaks) if peaks else None)


def _modality_ids(meta: dict, modality: Sequence[str], uids: Sequence[str]) -> np.ndarray:
    vocab = meta["modalities"]
    bad = [(u, m) for u, m in zip(uids, modality) if m not in vocab]
    if bad:
        raise ValueError(f"series {bad[0][0]}: sub-modality {bad[0][1]!r} not in the model's vocabulary {vocab}")
    return np.array([vocab.index(m) for m in modality], dtype=np.int64)


def reads_fine(meta: dict) -> bool:
    """True for a checkpoint that reads the fine slabs (``fine_cnn``), False for the coarse views."""
    return meta.get("inputs") == ["fine"]


def _check_geometry(meta: dict, channels: Sequence[str], mip_shape: tuple, where: str) -> None:
    """The projections match what the model was trained on: channel names and (C, S, S) (coarse) or
    (K_f, C_f, F, F) of each view (fine; ``mip_shape`` is then the fine array's shape)."""
    c, s = len(meta["channels"]), int(meta["size"])
    want = (int(meta["instances"]), c, s, s) if reads_fine(meta) else (c, s, s)
    if list(channels) != list(meta["channels"]) or tuple(mip_shape[-len(want):]) != want:
        raise ValueError(f"{where}: projections {list(channels)} {tuple(mip_shape[-len(want):])} do not match the "
                         f"model's {meta['channels']} {want}; re-run project with the training params")


def _forward(model: torch.nn.Module, meta: dict, arrays: dict, ids: torch.Tensor) -> dict:
    """The model's forward on device float tensors ``arrays`` (keys mip/instances, or fine)."""
    if reads_fine(meta):
        return model(arrays["fine"], ids)
    return model(arrays["mip"], arrays["instances"], ids)


def logits_for(model_dir: str | Path, store_path: str | Path, uids: Sequence[str], batch_size: int = 32,
               modalities: Mapping[str, str] | None = None, device: str = "auto") -> pd.DataFrame:
    """Raw logits of the checkpoint in ``model_dir`` for ``uids`` of a projection store.

    The sub-modality of each series comes from ``modalities`` when given, else from the store's
    per-series attrs (``series[uid]["modality"]``). Columns: the logits table without truth.
    """
    dev = resolve_device(device)
    model, meta = load_model(model_dir, dev)
    uids = list(uids)
    attrs = open_store(store_path).attrs.asdict()
    if modalities is None:
        try:
            modality = [attrs["series"][u]["modality"] for u in uids]
        except KeyError as e:
            raise StoreError(f"{store_path}: no sub-modality for series {e.args[0]}; pass modalities=") from None
    else:
        modality = [modalities[u] for u in uids]
    if reads_fine(meta):
        _check_geometry(meta, attrs["fine_channels"], (attrs["fine_slabs"], len(attrs["fine_channels"]),
                                                       attrs["fine_size"], attrs["fine_size"]), str(store_path))
        batch_size = min(batch_size, 4)   # a series is 3 x K_f slab images: bound the batch's memory
    else:
        _check_geometry(meta, attrs["channels"], (len(attrs["channels"]), attrs["size"], attrs["size"]),
                        str(store_path))
    ids = _modality_ids(meta, modality, uids)
    out = [res["logits"].float().cpu().numpy()
           for res in _store_outputs(model, meta, store_path, uids, ids, batch_size)]
    logits = np.concatenate(out) if out else np.zeros((0, len(LABELS)), np.float32)
    return logits_frame(uids, modality, logits)


@torch.no_grad()
def _store_outputs(model: torch.nn.Module, meta: dict, store_path: str | Path, uids: list[str], ids: np.ndarray,
                   batch_size: int):
    """Yield the model's output dict per batch of ``uids`` read from the store; bounded memory:
    one batch of uint8 rows at a time. ``ids`` (n,) are the modality ids of ``uids``."""
    dev = next(model.parameters()).device
    fine = reads_fine(meta)
    for i in range(0, len(uids), batch_size):
        arr = load_family(store_path, uids[i:i + batch_size], fine=fine)
        names = ("fine",) if fine else ("mip", "instances")
        tensors = {n: torch.from_numpy(getattr(arr, n)).to(dev).float().div_(255.0) for n in names}
        with autocast(dev):
            yield _forward(model, meta, tensors, torch.from_numpy(ids[i:i + batch_size]).to(dev))


def heat_maps_for(model_dir: str | Path, store_path: str | Path, uids: Sequence[str],
                  modalities: Mapping[str, str], device: str = "auto", batch_size: int = 32) -> np.ndarray | None:
    """Aneurysm Present heat maps (n, 3, h, w), probabilities, of the checkpoint's heat head for
    ``uids`` (views axial, coronal, sagittal; h = w = input size / 8), or None when the model has
    no heat head."""
    model, meta = load_model(model_dir, resolve_device(device))
    if not getattr(model, "heatmap", False) or reads_fine(meta) or not uids:
        return None
    uids = list(uids)
    ids = _modality_ids(meta, [modalities[u] for u in uids], uids)
    return np.concatenate([torch.sigmoid(res["heat_views"][:, :, PRESENT_INDEX].float()).cpu().numpy()
                           for res in _store_outputs(model, meta, store_path, uids, ids, batch_size)])


@torch.no_grad()
def infer_arrays(model: torch.nn.Module, meta: dict, mip: np.ndarray, instances: np.ndarray,
                 modality: str, fine: np.ndarray | None = None) -> np.ndarray:
    """Logits (14,) of one series held in memory.

    ``mip`` (3, C, S, S) and ``instances`` (K, C, S, S), uint8 (0-255) or float in [0, 1], as
    ``willis.projections`` makes them; ``fine`` (3, K_f, C_f, F, F) for a ``fine_cnn`` checkpoint;
    ``modality`` a CSV sub-modality (CTA, MRA, MRI T2, ...).
    """
    if reads_fine(meta):
        if fine is None:
            raise ValueError("infer_arrays: this checkpoint reads the fine slabs; pass fine=")
        _check_geometry(meta, meta["channels"], fine.shape, "infer_arrays")
    else:
        _check_geometry(meta, meta["channels"], mip.shape, "infer_arrays")
    dev = next(model.parameters()).device
    ids = torch.from_numpy(_modality_ids(meta, [modality], ["<in-memory series>"])).to(dev)

    def as_float(a):
        t = torch.from_numpy(np.ascontiguousarray(a))[None].to(dev)
        return t.float().div_(255.0) if t.dtype == torch.uint8 else t.float()

    model.eval()
    arrays = {"fine": as_float(fine)} if reads_fine(meta) else {"mip": as_float(mip), "instances": as_float(instances)}
    with autocast(dev):
        out = _forward(model, meta, arrays, ids)
    return out["logits"][0].float().cpu().numpy()
