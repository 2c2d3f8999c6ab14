"""Training data of one family: labels + projections + localizer targets, joined and checked.

``load_family_data`` joins ``data/index/series.parquet`` (labels, split, smoke, Modality) with the
family's projection store and ``localizers.parquet``. Every series of the family with a train/val
split that cannot be used is *reported* (``FamilyData.skipped``: uid -> reason; the training stage
logs it and writes it into meta.json), never silently dropped.

When the family's uint8 arrays fit in ``ram_limit_gb`` they are read whole here with
``willis.projections.store.load_family`` (one threaded pass over the store); otherwise they stay in
Zarr and ``willis.train.loader`` reads rows per batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from willis.index.tables import SPLIT_LABEL_COLUMNS, read_index
from willis.labels import LABELS, PRESENT_INDEX, modality_vocab
from willis.projections.store import load_family, open_store
from willis.projections.targets import LOCALIZER_INPUTS, fine_points, localizer_targets, visible
from willis.splits import assign_folds

log = logging.getLogger(__name__)

SPLITS = ("train", "val")


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
    points: np.ndarray           # float32 (N, P, 8): localizers in every view (willis.projections.targets)
    heat_mask: np.ndarray        # bool (N,): heat-map targets known (negative, or >= 1 mapped point)
    channels: list[str]
    size: int
    instances: int
    skipped: dict[str, str]      # uid -> why it is not used
    data_hash: str
    store_params: dict           # the ``project`` params that made the store (predict re-projects with them)
    points_skipped: dict[str, str] = dataclasses.field(default_factory=dict)  # "uid:location" -> why no target
    mip: np.ndarray | None = None        # uint8 (N, 3, C, S, S) when held in RAM
    inst: np.ndarray | None = None       # uint8 (N, K, C, S, S) when held in RAM
    # fine circle-of-Willis slabs (``fine_cnn``; ``load_family_data(fine=True)``)
    fine: np.ndarray | None = None        # uint8 (N, 3, K_f, C_f, F, F), always in RAM
    fine_points: np.ndarray | None = None  # float32 (N, P, 10): localizers in the fine views (targets.fine_points)
    fine_known: np.ndarray | None = None  # bool (N,): negative, or a positive with a point inside the fine box
    fine_channels: list[str] | None = None

    def index(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)

    def nbytes(self) -> int:
        return len(self.uids) * (3 + self.instances) * len(self.channels) * self.size ** 2


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


def with_fold_split(rows: pd.DataFrame, fold: int, folds: int, seed: int) -> pd.DataFrame:
    """``rows`` (one family's train + val series) with ``split`` set for fold ``fold`` of ``folds``:
    unchanged for one fold; else 'val' for the rows in that fold, 'train' for the others."""
    if not 0 <= fold < folds:
        raise ValueError(f"fold {fold} outside 0..{folds - 1} (folds: {folds})")
    if folds == 1:
        return rows
    which = assign_folds(rows, folds, seed)
    return rows.assign(split=np.where(which.to_numpy() == fold, "val", "train"))


def load_family_data(family: str, store_path: str | Path, index_dir: str | Path, smoke: bool = False,
                     ram_limit_gb: float = 8.0, fold: int = 0, folds: int = 1, seed: int = 0,
                     fine: bool = False) -> FamilyData:
    """Join labels, store and localizers for the train/val series of ``family``.

    ``folds`` = 1: the index's train / val split. ``folds`` = K > 1: the family's train + val series
    are cut into K patient-grouped, stratified folds (``willis.splits.assign_folds`` with ``seed``)
    and fold ``fold`` is the validation split, the other K - 1 the training split.
    ``fine=True`` also reads the fine slabs and maps the localizers into them (``fine_cnn``)."""
    store_path, index_dir = Path(store_path), Path(index_dir)
    table = read_index(index_dir, "series", require=SPLIT_LABEL_COLUMNS)
    loc = read_index(index_dir, "localizers", require=LOCALIZER_INPUTS)
    vocab = modality_vocab(family)
    rows = table[(table["family"] == family) & table["split"].isin(SPLITS)]
    if smoke:
        rows = rows[rows["smoke"].astype(bool)]
    rows = with_fold_split(rows, fold, folds, seed)
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
    target, mask, points = localizer_targets(uids, attrs["series"], loc, k, points_skipped)
    if points_skipped:
        log.info("%s: %d localizer points give no instance target", family, len(points_skipped))
    y = kept[list(LABELS)].to_numpy(dtype=np.float32).reshape(len(uids), len(LABELS))
    split = kept["split"].to_numpy(dtype=str)
    modality = kept["Modality"].tolist()
    data = FamilyData(
        family=family, store_path=store_path, uids=uids, modality=modality,
        modality_id=np.array([vocab.index(m) for m in modality], dtype=np.int64), vocab=vocab,
        split=split, y=y, attn_target=target, attn_mask=mask, points=points,
        # a positive whose every point was cropped away must not train its maps towards "nothing here"
        heat_mask=(y[:, PRESENT_INDEX] == 0) | visible(points).any(axis=(1, 2)),
        channels=list(attrs["channels"]),
        size=int(attrs["size"]), instances=k, skipped=skipped,
        data_hash=data_hash(uids, split, y, modality, attrs, np.concatenate([target, points.reshape(len(uids), -1)], 1)),
        store_params=dict(attrs.get("params", {})), points_skipped=points_skipped,
    )
    if fine:
        data.fine_points = fine_points(uids, attrs["series"], loc, data.points_skipped)
        inside = np.zeros(data.fine_points.shape[:2], dtype=bool)           # (N, P): in the box on some axis
        for a in range(3):
            s = data.fine_points[..., 1 + 3 * a]
            inside |= (s > -0.5) & (s < int(attrs["fine_slabs"]) - 0.5)
        inside &= data.fine_points[..., 0] >= 0
        data.fine_known = (y[:, PRESENT_INDEX] == 0) | inside.any(axis=1)
        data.fine_channels = list(attrs["fine_channels"])
        data.data_hash = hashlib.sha256((data.data_hash + hashlib.sha256(
            np.ascontiguousarray(data.fine_points).tobytes()).hexdigest()).encode()).hexdigest()
        if uids:  # the fine slabs are what fine_cnn trains on: always in RAM (crops are random access)
            arrays = load_family(store_path, uids, fine=True)
            data.mip, data.inst, data.fine = arrays.mip, arrays.instances, arrays.fine
    elif data.nbytes() <= ram_limit_gb * 2**30 and uids:
        arrays = load_family(store_path, uids)  # uint8, one threaded pass over the store
        data.mip, data.inst = arrays.mip, arrays.instances
    else:
        log.info("%s: %.1f GB of projections > train ram_limit_gb=%.1f: reading batches from Zarr",
                 family, data.nbytes() / 2**30, ram_limit_gb)
    return data
