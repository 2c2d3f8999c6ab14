"""Montage PNG per family: the three coarse MIPs and the three fine views of a few positive and
negative series per modality, with the annotated aneurysm points (``localizers.parquet``, LPS)
drawn where ``patient_to_view`` / ``patient_to_fine`` put them, so a person can check at a glance
that views, orientation, ROI and fine box look right. A fine view shows the slab holding the first
localizer (else the maximum over its slabs), in the channel that shows the lesion best
(``FINE_DISPLAY``: CT highlight, MR vessel, T2 dark lumen); the title says the box's ``fine.flag``.

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
from willis.projections.views import VIEWS, patient_to_fine, patient_to_view

log = logging.getLogger(__name__)

DISPLAY_CHANNEL = {"ct": "highlight", "mr": "vessel"}  # CT: the bone-suppressed angiogram (the skull saturates every HU window in a MIP)
FINE_DISPLAY = {"ct": "highlight", "mr": "vessel", "MRI T2": "dark"}  # T2: flow voids show only in the dark-lumen channel


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
    fine_names = list(a["fine_channels"])
    fig, axes = plt.subplots(len(picks), 6, figsize=(12.0, 2.1 * len(picks) + 0.4), squeeze=False)
    for i, (uid, modality, label) in enumerate(picks):
        row = uids.index(uid)
        mip = g["mip"][row]                               # (3, C, S, S) uint8
        fine = g["fine"][row]                             # (3, K_f, C_f, F, F) uint8
        sattrs = a["series"][uid]
        points = [np.asarray(p, float) for p in localizers[(localizers["SeriesInstanceUID"] == uid) & localizers["found"]]["patient"]]
        fch = fine_names.index(FINE_DISPLAY.get(modality, FINE_DISPLAY.get(family, fine_names[0])))
        for v, view in enumerate(VIEWS):
            ax = axes[i, v]
            ax.imshow(mip[v, ch], cmap="gray", vmin=0, vmax=255)
            for p in points:
                r, c = patient_to_view(p, sattrs)[view]
                ax.plot(c, r, marker="o", mfc="none", mec="red", ms=10, mew=1.5)
            ax = axes[i, 3 + v]
            where = [patient_to_fine(p, sattrs)[view] for p in points]
            k = next((w[0] for w in where if w[0] is not None), None)
            ax.imshow(fine[v, k, fch] if k is not None else fine[v, :, fch].max(axis=0), cmap="gray", vmin=0, vmax=255)
            for w in where:
                if w[0] is not None and w[0] == k:
                    ax.plot(w[2], w[1], marker="o", mfc="none", mec="red", ms=10, mew=1.5)
            for ax in axes[i, v], axes[i, 3 + v]:
                ax.set_xticks([])
                ax.set_yticks([])
            if i == 0:
                axes[i, v].set_title(view)
                axes[i, 3 + v].set_title(f"fine {view}")
        axes[i, 0].set_ylabel(f"{modality} {'pos' if label else 'neg'}\n{uid[-10:]}", fontsize=8)
        axes[i, 3].set_ylabel(f"box: {sattrs['fine']['flag']}", fontsize=8)
    fig.suptitle(f"{family}: MIPs ({DISPLAY_CHANNEL.get(family)}) and fine slabs (0.5 mm), localizers in red", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / (2.1 * len(picks) + 0.4)))  # room for the title
    fig.savefig(out_png, dpi=50)  # small: git keeps it (cache: false); 6 columns at 50 dpi ~ 3 at 64 before
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
