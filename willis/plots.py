"""PNG figures shared by the stages: the Agg backend, stable bytes, the reliability diagram.

Matplotlib's non-interactive Agg backend only; figures are closed after saving. PNG metadata
carries no timestamp and no matplotlib version (``PNG_META``), so reruns on the same data give the
same bytes. The reliability diagram (``calibrate``) draws ``willis.metrics.reliability_bins``;
the test-series thumbnails of ``evaluate`` are ``willis.evaluate.thumbnails``.
"""

from __future__ import annotations

from pathlib import Path

from willis.metrics import ECE_BINS, reliability_bins

PNG_META = {"Software": None}              # no matplotlib version in the file: stable bytes


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def reliability_diagram(path: str | Path, panels: dict, n_bins: int = ECE_BINS, title: str = "") -> None:
    """One panel per entry of ``panels = {panel: {curve: (y, p)}}``: fraction positive vs mean p.

    Marker area follows the bin's count; the diagonal is perfect calibration.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), squeeze=False)
    for ax, (name, curves) in zip(axes[0], panels.items()):
        ax.plot([0, 1], [0, 1], color="0.7", lw=1, ls="--")
        for curve, (y, p) in curves.items():
            count, mean_p, frac = reliability_bins(y, p, n_bins)
            used = count > 0
            ax.plot(mean_p[used], frac[used], marker="o", lw=1.2, label=curve)
            ax.scatter(mean_p[used], frac[used], s=8 + 120 * count[used] / count.sum(), alpha=0.3)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted probability",
               ylabel="fraction positive", title=name)
        ax.legend(loc="upper left", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, metadata=PNG_META)
    plt.close(fig)
