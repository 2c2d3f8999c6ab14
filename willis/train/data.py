"""Training data of one family: labels + projections + localizer targets, and a fast batch source.

``load_family_data`` joins ``data/index/series.parquet`` (labels, split, smoke, Modality) with the
family's projection store and ``localizers.parquet``. Every series of the family with a train/val
split that cannot be used is *reported* (``FamilyData.skipped``: uid -> reason; the training stage
logs it and writes it into meta.json), never silently dropped.

Batches (``BatchSource``): when the uint8 arrays fit in ``ram_limit_gb`` they are read whole with
``willis.projections.store.load_family`` (one threaded pass over the store) and batches are
fancy-indexed from RAM; otherwise rows are read from Zarr per batch, in a background thread one
batch ahead. Either way the uint8 batch goes to the device and becomes float there (4x less to
copy than float32), which is what keeps the loader off the critical path on a GPU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import queue
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch

from willis.labels import LABELS
from willis.models.checkpoint import modality_vocab
from willis.projections.store import load_family, open_store
from willis.projections.views import patient_to_view

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
UINT8_MAX = 255.0


@dataclasses.dataclass
class FamilyData:
    """Rows of every array are ``uids[i]``; ``split[i]`` is 'train' or 'val'."""

    family: str
    store_path: Path
    uids: list[str]
    modality: list[str]          # CSV sub-modality per series
    modality_id: np.ndarray      # int64 (N,): index into ``vocab``
    vocab: list[str]
    split: np.ndarray            # str (N,)
    y: np.ndarray                # float32 (N, 14), LABELS order
    attn_target: np.ndarray      # float32 (N, K): share of the series' localizers per instance
    attn_mask: np.ndarray        # bool (N,): the series has at least one mapped localizer
    channels: list[str]
    size: int
    instances: int
    skipped: dict[str, str]      # uid -> why it is not used
    data_hash: str
    store_params: dict           # the ``project`` params that made the store (predict re-projects with them)
    points_skipped: dict[str, str] = dataclasses.field(default_factory=dict)  # "uid:location" -> why no target
    mip: np.ndarray | None = None        # uint8 (N, 3, C, S, S) when held in RAM
    inst: np.ndarray | None = None       # uint8 (N, K, C, S, S) when held in RAM

    def index(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)

    def nbytes(self) -> int:
        return len(self.uids) * (3 + self.instances) * len(self.channels) * self.size ** 2


def _attention_targets(uids: list[str], series_attrs: dict, loc: pd.DataFrame, k: int,
                       skipped_points: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) distribution of each series' annotated aneurysms over its axial instances."""
    target = np.zeros((len(uids), k), dtype=np.float32)
    row_of = {u: i for i, u in enumerate(uids)}
    loc = loc[loc["SeriesInstanceUID"].isin(row_of)]
    for uid, point, found, where in zip(loc["SeriesInstanceUID"], loc["patient"], loc["found"],
                                        loc["location"]):
        p = np.asarray(point, dtype=float)
        if not bool(found) or p.shape != (3,) or not np.isfinite(p).all():
            skipped_points[f"{uid}:{where}"] = "localizer not found in the series or no patient position"
            continue
        inst = patient_to_view(p, series_attrs[uid])["instance"]
        if inst is None:  # outside the ROI's slabs (cropped away): no instance to point at
            skipped_points[f"{uid}:{where}"] = "localizer z outside every instance slab"
            continue
        target[row_of[uid], inst] += 1.0
    mask = target.sum(axis=1) > 0
    target[mask] /= target[mask].sum(axis=1, keepdims=True)
    return target, mask


def data_hash(uids, split, y, modality, store_attrs: dict, attn_target) -> str:
    """Identity of the training inputs: uids, splits, labels, sub-modalities, the store's per-series
    attrs and params, and the localizer targets (not the pixel bytes: hashing GBs per run is waste,
    and the store's params + per-series attrs pin how the pixels were made)."""
    h = hashlib.sha256()
    h.update(json.dumps({"uids": list(uids), "split": list(map(str, split)), "modality": list(modality),
                         "series": {u: store_attrs["series"][u] for u in uids},
                         "params": store_attrs.get("params", {}), "channels": store_attrs["channels"]},
                        sort_keys=True).encode())
    h.update(np.ascontiguousarray(y, dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(attn_target, dtype=np.float32).tobytes())
    return h.hexdigest()


def load_family_data(family: str, store_path: str | Path, index_dir: str | Path, smoke: bool = False,
                     ram_limit_gb: float = 8.0) -> FamilyData:
    """Join labels, store and localizers for the train/val series of ``family``."""
    store_path, index_dir = Path(store_path), Path(index_dir)
    table = pd.read_parquet(index_dir / "series.parquet")
    loc = pd.read_parquet(index_dir / "localizers.parquet")
    vocab = modality_vocab(family)
    rows = table[(table["family"] == family) & table["split"].isin(SPLITS)]
    if smoke:
        rows = rows[rows["smoke"].astype(bool)]
    g = open_store(store_path)
    attrs = g.attrs.asdict()
    complete = dict(zip(attrs["series_uids"], attrs["complete"]))
    failed = attrs.get("failed", {})
    skipped: dict[str, str] = {}
    keep = []
    for _, r in rows.iterrows():
        uid = r["SeriesInstanceUID"]
        if uid not in complete:
            skipped[uid] = "not in the projection store (excluded by decode_check?)"
        elif not complete[uid]:
            skipped[uid] = f"projection incomplete: {failed.get(uid, 'not written')}"
        elif r["Modality"] not in vocab:
            skipped[uid] = f"sub-modality {r['Modality']!r} not in family {family!r} vocabulary {vocab}"
        elif (r[list(LABELS)].astype(int) < 0).any():
            skipped[uid] = "no labels (not in train.csv)"
        else:
            keep.append(r)
    if skipped:
        log.warning("%s: %d series not used for training, e.g. %s: %s", family, len(skipped),
                    *next(iter(skipped.items())))
    kept = pd.DataFrame(keep, columns=rows.columns)
    uids = kept["SeriesInstanceUID"].tolist()
    k = int(attrs["instances"])
    points_skipped: dict[str, str] = {}
    target, mask = _attention_targets(uids, attrs["series"], loc, k, points_skipped)
    if points_skipped:
        log.info("%s: %d localizer points give no instance target", family, len(points_skipped))
    y = kept[list(LABELS)].to_numpy(dtype=np.float32).reshape(len(uids), len(LABELS))
    split = kept["split"].to_numpy(dtype=str)
    modality = kept["Modality"].tolist()
    data = FamilyData(
        family=family, store_path=store_path, uids=uids, modality=modality,
        modality_id=np.array([vocab.index(m) for m in modality], dtype=np.int64), vocab=vocab,
        split=split, y=y, attn_target=target, attn_mask=mask, channels=list(attrs["channels"]),
        size=int(attrs["size"]), instances=k, skipped=skipped,
        data_hash=data_hash(uids, split, y, modality, attrs, target),
        store_params=dict(attrs.get("params", {})), points_skipped=points_skipped,
    )
    if data.nbytes() <= ram_limit_gb * 2**30 and uids:
        arrays = load_family(store_path, uids)  # uint8, one threaded pass over the store
        data.mip, data.inst = arrays.mip, arrays.instances
    else:
        log.info("%s: %.1f GB of projections > train ram_limit_gb=%.1f: reading batches from Zarr",
                 family, data.nbytes() / 2**30, ram_limit_gb)
    return data


class BatchSource:
    """uint8 rows of a ``FamilyData`` by index: from RAM when loaded, else from the Zarr store."""

    def __init__(self, data: FamilyData, need_instances: bool = True):
        self.data, self.need_instances = data, need_instances
        self._group = None if data.mip is not None else open_store(data.store_path)  # opened once
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
    attn_mask, idx. Reading (Zarr decode or RAM gather) runs one batch ahead in a thread."""
    d = source.data
    chunks = [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]

    def produce(sel):
        return sel, source.rows(sel)

    if not prefetch:
        items = (produce(sel) for sel in chunks)
    else:
        items = _prefetched(produce, chunks)
    for sel, (mip, inst) in items:
        mip_t, inst_t = to_device(mip, inst, device)
        yield {
            "mip": mip_t, "instances": inst_t,
            "y": torch.from_numpy(d.y[sel]).to(device),
            "modality_id": torch.from_numpy(d.modality_id[sel]).to(device),
            "attn_target": torch.from_numpy(d.attn_target[sel]).to(device),
            "attn_mask": torch.from_numpy(d.attn_mask[sel]).to(device),
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
