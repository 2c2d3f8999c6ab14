"""Montage PNG per family: the three MIPs of a few positive and negative series per modality, with
the annotated aneurysm points (``localizers.parquet``, LPS) drawn where ``patient_to_view`` puts
them, so a person can check at a glance that views, orientation and ROI look right.

    reports/projections/montage_<family>.png
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from willis.index.tables import index_path, read_index
from willis.labels import PRESENT
from willis.projections.store import family_path, open_store
from willis.projections.views import VIEWS, patient_to_view

log = logging.getLogger(__name__)

DISPLAY_CHANNEL = {"ct": "highlight", "mr": "vessel"}  # CT: the bone-suppressed angiogram (the skull saturates every HU window in a MIP)


def pick_series(series: pd.DataFrame, complete: set[str], n: int) -> list[tuple[str, str, int]]:
    """(uid, modality, label) of up to ``n`` positive and ``n`` negative complete series per modality, sorted uids."""
    out = []
    s = series[series["SeriesInstanceUID"].isin(complete)].sort_values("SeriesInstanceUID")
    for modality, g in s.groupby("Modality", sort=True):
        for label in (1, 0):
            pick = g[g[PRESENT] == label].head(n)
            out += [(u, str(modality), label) for u in pick["SeriesInstanceUID"]]
    return out


def write_montage(store_path: Path, series: pd.DataFrame, localizers: pd.DataFrame, out_png: Path, n: int) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = open_store(store_path)
    a = g.attrs
    uids = list(a["series_uids"])
    complete = {u for u, c in zip(uids, a["complete"]) if c}
    picks = pick_series(series, complete, n)
    family = a["family"]
    out_png.parent.mkdir(parents=True, exist_ok=True)
    if not picks:  # still write the PNG: DVC declares it as a plot output
        log.warning("%s: no complete series for a montage", store_path)
        fig = plt.figure(figsize=(4, 1))
        fig.text(0.5, 0.5, f"{family}: no complete series", ha="center", va="center")
        fig.savefig(out_png, dpi=80)
        plt.close(fig)
        return out_png
    ch = list(a["channels"]).index(DISPLAY_CHANNEL.get(family, a["channels"][0]))
    fig, axes = plt.subplots(len(picks), 3, figsize=(6.0, 2.1 * len(picks) + 0.4), squeeze=False)
    for i, (uid, modality, label) in enumerate(picks):
        mip = g["mip"][uids.index(uid)]                   # (3, C, S, S) uint8
        sattrs = a["series"][uid]
        points = localizers[(localizers["SeriesInstanceUID"] == uid) & localizers["found"]]
        for v, view in enumerate(VIEWS):
            ax = axes[i, v]
            ax.imshow(mip[v, ch], cmap="gray", vmin=0, vmax=255)
            for p in points["patient"]:
                r, c = patient_to_view(np.asarray(p, float), sattrs)[view]
                ax.plot(c, r, marker="o", mfc="none", mec="red", ms=10, mew=1.5)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(view)
        axes[i, 0].set_ylabel(f"{modality} {'pos' if label else 'neg'}\n{uid[-10:]}", fontsize=8)
    fig.suptitle(f"{family}: MIPs ({DISPLAY_CHANNEL.get(family)}), localizers in red", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / (2.1 * len(picks) + 0.4)))  # room for the title
    fig.savefig(out_png, dpi=64)  # small: git keeps it (cache: false)
    plt.close(fig)
    return out_png


def write_montages(out: Path, index_dir: Path, montage_dir: str | Path, families, n: int) -> list[Path]:
    series = read_index(index_dir, "series", require=["SeriesInstanceUID", "Modality", PRESENT])
    loc_cols = ["SeriesInstanceUID", "found", "patient"]
    localizers = read_index(index_dir, "localizers", require=loc_cols) \
        if index_path(index_dir, "localizers").exists() else pd.DataFrame(columns=loc_cols)
    written = []
    for fam in families:
        png = write_montage(family_path(out, fam), series, localizers, Path(montage_dir) / f"montage_{fam}.png", n)
        if png is not None:
            written.append(png)
    return written
