"""Batches for training and validation: uint8 rows -> float tensors on the device.

``BatchSource`` gathers rows of a ``FamilyData``: fancy-indexed from RAM when the family was read
whole (the default while it fits ``train.<family>.ram_limit_gb``), else decoded from the Zarr store
per batch (sorted rows: sequential chunk files). ``batches`` runs that gather one batch ahead in a
background thread and sends the *uint8* batch to the device, where it becomes float32 in [0, 1]:
4x less to copy than float32, which keeps the loader off a GPU's critical path
(``benchmarks/bench_loader.py`` measures it). On a GPU, a family that was read whole and fits in a
quarter of the free GPU memory is copied there once, still as uint8, and batches are gathered on
the device: no host work per step at all (measured on an H200, the host gather ran at 0.66-0.70 of
the in-memory ceiling; the device-resident copy removes that gap).
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator

import numpy as np
import torch

from willis.projections.store import open_store
from willis.train.data import FamilyData

UINT8_MAX = 255.0
GPU_RESIDENT_FRACTION = 0.25  # at most this share of free GPU memory holds the uint8 family


class BatchSource:
    """uint8 rows of a ``FamilyData`` by index: from RAM when loaded, else from the Zarr store."""

    def __init__(self, data: FamilyData, need_instances: bool = True, device: torch.device | None = None):
        self.data, self.need_instances = data, need_instances
        self._group = None if data.mip is not None else open_store(data.store_path)  # opened once
        self.resident = _to_gpu(data, need_instances, device)  # (mip, inst) uint8 on the GPU, or None
        self._rows = None
        if self._group is not None:
            row_of = {u: i for i, u in enumerate(self._group.attrs["series_uids"])}
            self._rows = np.array([row_of[u] for u in data.uids], dtype=np.int64)

    def _no_instances(self, b: int) -> np.ndarray:
        d = self.data
        return np.empty((b, 0, len(d.channels), d.size, d.size), dtype=np.uint8)

    def rows(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """mip (B, 3, C, S, S) and instances (B, K, C, S, S) uint8 (K = 0 when not needed)."""
        d = self.data
        if d.mip is not None:
            inst = d.inst[idx] if self.need_instances else self._no_instances(len(idx))
            return d.mip[idx], inst
        store_rows = self._rows[idx]
        order = np.argsort(store_rows)  # ascending store rows: sequential chunk files
        sel = store_rows[order]
        mip = np.empty((len(idx),) + self._group["mip"].shape[1:], dtype=np.uint8)
        mip[order] = self._group["mip"].get_orthogonal_selection((sel,))
        k = d.instances if self.need_instances else 0
        inst = np.empty((len(idx), k, len(d.channels), d.size, d.size), dtype=np.uint8)
        if k:
            inst[order] = self._group["instances"].get_orthogonal_selection((sel,))
        return mip, inst


def _to_gpu(data: FamilyData, need_instances: bool, device: torch.device | None):
    """Copy a RAM-loaded family to the GPU once (uint8) when it fits; None otherwise."""
    if device is None or device.type != "cuda" or data.mip is None:
        return None
    nbytes = data.mip.nbytes + (data.inst.nbytes if need_instances else 0)
    free, _ = torch.cuda.mem_get_info(device)
    if nbytes > GPU_RESIDENT_FRACTION * free:
        return None
    mip = torch.from_numpy(data.mip).to(device)
    inst = torch.from_numpy(data.inst).to(device) if need_instances else None
    return mip, inst


def _gather_resident(source: BatchSource, sel: np.ndarray, device: torch.device):
    """Rows ``sel`` of the GPU-resident family as float32 [0, 1] (B, 3|K, C, S, S)."""
    mip_u8, inst_u8 = source.resident
    idx = torch.as_tensor(sel, device=device)
    mip = mip_u8.index_select(0, idx).float().div_(UINT8_MAX)
    if inst_u8 is None:
        d = source.data
        inst = torch.empty((len(sel), 0, len(d.channels), d.size, d.size), device=device)
    else:
        inst = inst_u8.index_select(0, idx).float().div_(UINT8_MAX)
    return mip, inst


def to_device(mip: np.ndarray, inst: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 numpy -> float32 [0, 1] on ``device``; the division happens there."""
    pin = device.type == "cuda"
    out = []
    for a in (mip, inst):
        t = torch.from_numpy(np.ascontiguousarray(a))
        if pin:
            t = t.pin_memory()
        out.append(t.to(device, non_blocking=pin).float().div_(UINT8_MAX))
    return out[0], out[1]


def batches(source: BatchSource, idx: np.ndarray, batch_size: int, device: torch.device,
            prefetch: bool = True) -> Iterator[dict]:
    """Yield device batches over ``idx`` in order: mip, instances, y, modality_id, attn_target,
    attn_mask, points, heat_mask, idx. Reading (Zarr decode or RAM gather) runs one batch ahead in a thread."""
    d = source.data
    chunks = [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]

    def produce(sel):
        return sel, source.rows(sel)

    if source.resident is not None:  # gathered on the GPU itself: nothing to prefetch
        items = ((sel, _gather_resident(source, sel, device)) for sel in chunks)
    elif not prefetch:
        items = (produce(sel) for sel in chunks)
    else:
        items = _prefetched(produce, chunks)
    for sel, (mip, inst) in items:
        mip_t, inst_t = (mip, inst) if source.resident is not None else to_device(mip, inst, device)
        yield {
            "mip": mip_t, "instances": inst_t,
            "y": torch.from_numpy(d.y[sel]).to(device),
            "modality_id": torch.from_numpy(d.modality_id[sel]).to(device),
            "attn_target": torch.from_numpy(d.attn_target[sel]).to(device),
            "attn_mask": torch.from_numpy(d.attn_mask[sel]).to(device),
            "points": torch.from_numpy(d.points[sel]).to(device),
            "heat_mask": torch.from_numpy(d.heat_mask[sel]).to(device),
            "idx": sel,
        }


def _prefetched(fn, items, depth: int = 2):
    """Run ``fn`` over ``items`` in one background thread, ``depth`` results ahead; errors re-raised."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work():
        try:
            for it in items:
                if stop.is_set():
                    return
                q.put(fn(it))
        except BaseException as e:  # handed to the consumer, which raises it with its traceback
            q.put(e)
        q.put(done)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    try:
        while True:
            x = q.get()
            if x is done:
                return
            if isinstance(x, BaseException):
                raise x
            yield x
    finally:
        stop.set()
        while t.is_alive():  # drain so the worker is not blocked on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(timeout=0.01)
