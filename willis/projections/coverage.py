"""Does the fine box hold the annotated aneurysms? Containment of the localizers in a family store.

    >>> from willis.projections.coverage import fine_containment
    >>> rows = fine_containment("data/projections/ct.zarr", pd.read_parquet("data/index/localizers.parquet"))
    >>> rows["inside"].mean(), rows["margin_mm"].quantile(0.01)

One row per found localizer (``localizers.parquet``: ``patient`` LPS mm) of a complete series:
``inside`` (the point is in the fine cube), ``margin_mm`` (distance to the nearest face of the cube,
negative outside), the offset from the box centre per axis, the series' ``fine.flag`` and modality.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from willis.projections.store import open_store


def fine_containment(store_path: str | Path, localizers: pd.DataFrame) -> pd.DataFrame:
    g = open_store(store_path)
    a = g.attrs
    complete = {u for u, c in zip(a["series_uids"], a["complete"]) if c}
    loc = localizers[localizers["SeriesInstanceUID"].isin(complete) & localizers["found"].astype(bool)]
    rows = []
    for r in loc.itertuples(index=False):
        s = a["series"][r.SeriesInstanceUID]
        fine = s["fine"]
        p = np.asarray(r.patient, dtype=float)
        lo = np.array([b[0] for b in fine["box_mm"]])
        hi = np.array([b[1] for b in fine["box_mm"]])
        margin = float(np.min(np.minimum(p - lo, hi - p)))
        off = p - np.asarray(fine["centre_mm"], dtype=float)
        rows.append({"SeriesInstanceUID": r.SeriesInstanceUID, "location": r.location, "modality": s.get("modality", ""),
                     "plane": s.get("plane", ""), "flag": fine["flag"], "inside": margin >= 0, "margin_mm": margin,
                     "dx_mm": off[0], "dy_mm": off[1], "dz_mm": off[2]})
    return pd.DataFrame(rows, columns=["SeriesInstanceUID", "location", "modality", "plane", "flag", "inside",
                                       "margin_mm", "dx_mm", "dy_mm", "dz_mm"])
