"""Tiny training inputs built with the real writers: a projection store + index tables.

``build_family(tmp_path, ...)`` writes ``<tmp>/projections/<family>.zarr`` through
``willis.projections.store`` (create_store / write_projection / finalize_store) and
``<tmp>/index/{series,localizers}.parquet`` with the columns the train stage reads. Positives
carry a bright blob at a location-specific (row, col) in one axial slab, the matching pixels of
the three MIPs, and a localizer point in LPS mm that ``patient_to_view`` maps back to that slab,
so a model can learn and the attention target is known exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from willis.labels import LABELS, LOCATIONS, MODALITY_FAMILY, PRESENT
from willis.projections.store import Projection, create_store, finalize_store, open_store, write_projection


def location_pixel(j: int, s: int) -> tuple[int, int]:
    """(row, col) of location j in the axial view: a 4 x 4 grid; Left labels on image right."""
    name = LOCATIONS[j]
    r = (j // 4) * s // 5 + s // 5
    c = (j % 4) * s // 5 + s // 5
    if name.startswith("Left "):
        c = max(c, s // 2 + s // 8)   # radiological convention: patient left = image right
    elif name.startswith("Right "):
        c = min(c, s // 2 - s // 8)
    return r, c


def build_family(root: Path, family: str = "ct", n: int = 24, size: int = 32, k: int = 6,
                 channels: int = 2, seed: int = 0, positive_rate: float = 0.5,
                 amplitude: float = 0.6, noise: float = 0.15, distractors: int = 2,
                 val_fraction: float = 0.25) -> dict:
    """Write a store and index tables; return paths, the table and the true instance per positive."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    store = root / "projections" / f"{family}.zarr"
    index = root / "index"
    index.mkdir(parents=True, exist_ok=True)
    mods = [m for m, f in MODALITY_FAMILY.items() if f == family]
    uids = [f"1.2.826.0.{seed}.{family}.{i}" for i in range(n)]
    chan = [f"c{i}" for i in range(channels)]
    create_store(store, family, uids, chan, size, k, params={"fixture": True})
    g = open_store(store, "r+")
    edges = np.linspace(k * 5.0, 0.0, k + 1)  # 5 mm slabs, superior -> inferior, descending
    yy, xx = np.mgrid[:size, :size]
    rows, locs, done, truth_instance = [], [], {}, {}
    split = np.array(["train"] * n, dtype=object)
    split[: max(2, int(n * val_fraction))] = "val"
    for i, uid in enumerate(uids):
        inst = rng.normal(0.25, noise, (k, channels, size, size))
        for _ in range(distractors):  # bright non-aneurysm spots everywhere: vessels crossing
            kk, r0, c0 = rng.integers(k), rng.integers(size), rng.integers(size)
            inst[kk] += 0.5 * amplitude * np.exp(-((yy - r0) ** 2 + (xx - c0) ** 2) / 2.0)
        y = np.zeros(len(LABELS), dtype=np.int64)
        # the first rows of each split alternate neg/pos so every split has both classes
        positive = (i % 2 == 1) if i < 8 else rng.random() < positive_rate
        if positive:
            j = int(rng.integers(len(LOCATIONS)))
            y[j] = 1
            y[LABELS.index(PRESENT)] = 1
            kk = int(rng.integers(k))
            truth_instance[uid] = kk
            r, c = location_pixel(j, size)
            inst[kk] += amplitude * np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / 3.0)
            z = float((edges[kk] + edges[kk + 1]) / 2)
            # LPS mm from the view convention: col = x/mm + S/2 - 0.5, row = y/mm + S/2 - 0.5
            point = [c - size / 2 + 0.5, r - size / 2 + 0.5, z]
            locs.append({"SeriesInstanceUID": uid, "location": LOCATIONS[j], "patient": point, "found": True})
        inst = np.clip(inst, 0, 1)
        ax = inst.max(axis=0)                                  # (C, S, S)
        rep = -(-size // k)  # rows per slab when stretching K slabs to S rows (z is coarse here)
        cor = np.repeat(inst.max(axis=2).transpose(1, 0, 2), rep, axis=1)[:, :size]  # (C, S, S): z x x
        sag = np.repeat(inst.max(axis=3).transpose(1, 0, 2), rep, axis=1)[:, :size]  # (C, S, S): z x y
        mip = np.stack([ax, cor, sag])                         # (3, C, S, S)
        modality = mods[i % len(mods)]
        write_projection(g, i, Projection(uid, (mip * 255).round().astype(np.uint8),
                                          (inst * 255).round().astype(np.uint8),
                                          ((edges[:-1] + edges[1:]) / 2).astype(np.float32), {}))
        done[uid] = ((edges[:-1] + edges[1:]) / 2, {
            "modality": modality, "centre_mm": [0.0, 0.0, float(edges[0] + edges[-1]) / 2],
            "mm_per_px": 1.0, "size": size,
            "instance_ranges_mm": np.stack([edges[:-1], edges[1:]], axis=1).tolist()})
        rows.append({"SeriesInstanceUID": uid, "Modality": modality, "family": family,
                     **{name: int(v) for name, v in zip(LABELS, y)}, "split": split[i],
                     "smoke": bool(i % 2 == 0)})
    finalize_store(store, done, failed={})
    table = pd.DataFrame(rows)
    table.to_parquet(index / "series.parquet")
    loc = pd.DataFrame(locs, columns=["SeriesInstanceUID", "location", "patient", "found"])
    loc.to_parquet(index / "localizers.parquet")
    return {"store": store, "index": index, "uids": uids, "table": table, "localizers": loc,
            "truth_instance": truth_instance}
