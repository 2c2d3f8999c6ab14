"""MIP thumbnails of the worst-predicted test series (evaluate), with heat maps and localizers.

Drawn with ``willis.plots`` (Agg backend, stable PNG bytes); each figure is closed after saving so
that a long loop of thumbnails does not accumulate memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from willis.plots import PNG_META, pyplot
from willis.projections.views import VIEWS  # mip axis 0, see willis/projections/store.py

HEAT_SHOWN = 0.05  # heat-map cells below this probability are left transparent in thumbnails


def mip_thumbnail(path: str | Path, mip: np.ndarray, caption: str, heat: np.ndarray | None = None,
                  points: np.ndarray | None = None) -> None:
    """The three views of ``mip`` (3, C, S, S) in [0, 1] side by side, channel 0 (gray), one PNG.

    ``heat`` (3, h, w) in [0, 1], the model's Present heat map, is drawn over each view (stretched
    to the image; transparent where low), ``points`` (n, 3, 2) normalised (row, col) per view, the
    annotated aneurysms, as cyan circles: where the model looked against where the truth is."""
    plt = pyplot()
    mip = np.asarray(mip)
    if mip.ndim != 4 or mip.shape[0] != len(VIEWS):
        raise ValueError(f"{path}: expected a MIP (3, C, S, S), got shape {mip.shape}")
    s = mip.shape[-1]
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.9))
    for v, (ax, view, img) in enumerate(zip(axes, VIEWS, mip[:, 0])):  # (S, S) per view
        ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0)
        if heat is not None:
            h = np.ma.masked_less(np.asarray(heat[v], dtype=float), HEAT_SHOWN)
            ax.imshow(h, cmap="autumn_r", vmin=0.0, vmax=1.0, alpha=0.45, interpolation="nearest",
                      extent=(-0.5, s - 0.5, s - 0.5, -0.5))
        if points is not None and len(points):
            rc = np.asarray(points)[:, v] * s - 0.5                      # (n, 2) pixel row, col
            ax.scatter(rc[:, 1], rc[:, 0], s=90, facecolors="none", edgecolors="cyan", linewidths=1.2)
        ax.set_xlim(-0.5, s - 0.5)
        ax.set_ylim(s - 0.5, -0.5)
        ax.set_title(view, fontsize=8)
        ax.axis("off")
    fig.suptitle(caption, fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=70, metadata=PNG_META)
    plt.close(fig)
