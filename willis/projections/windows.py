"""Channels: intensity windows applied to projected maxima, and the streaming MR histogram.

Every channel is a monotonic per-voxel map ``clip((v - lo) / (hi - lo), 0, 1) ** gamma``, so it
commutes with maximum projection: the stream accumulates raw maxima once (HU for CT, scanner
units for MR) and every channel is derived from them at the end. The bone-aware highlight is the
exception (bone masking is not monotonic): it is the same kind of window applied to a second
maximum, taken over bone-suppressed slices (``willis.projections.bone``).

CT (HU): ``brain`` (L40/W80), ``vessel`` (CTA, L200/W600), ``bone`` (L500/W2000), ``highlight``
(bone-suppressed, [150, 600] HU with gamma 0.5 so faint small vessels are lifted).
MR (no HU): the same shape of windows with ends at per-series percentiles of the positive voxels,
from one streaming log-histogram, so every channel is invariant to a global intensity scale.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

HU_AIR = -1000.0
HU_TISSUE = -200.0        # above this a voxel is head (skin, fat, brain), not air: ROI foreground
HU_VESSEL_LO = 150.0      # contrast-filled arteries in CTA: roughly 150-600 HU
HU_VESSEL_HI = 600.0
HIGHLIGHT_GAMMA = 0.5     # < 1 lifts the faint end of the vessel range


@dataclass(frozen=True)
class Window:
    name: str
    lo: float
    hi: float
    gamma: float = 1.0
    source: str = "raw"   # "raw": max of the slices; "suppressed": max of the bone-suppressed slices


CT_WINDOWS: tuple[Window, ...] = (
    Window("brain", 0.0, 80.0),
    Window("vessel", -100.0, 500.0),
    Window("bone", -500.0, 1500.0),
    Window("highlight", HU_VESSEL_LO, HU_VESSEL_HI, HIGHLIGHT_GAMMA, "suppressed"),
)
# MR: (name, low percentile, high percentile, gamma) of the series' positive voxels
MR_PERCENTILES: tuple[tuple[str, float, float, float], ...] = (
    ("wide", 0.5, 99.9, 1.0),
    ("soft", 5.0, 99.0, 1.0),
    ("vessel", 95.0, 99.95, 1.0),
    ("highlight", 99.0, 99.99, HIGHLIGHT_GAMMA),
)
MR_FOREGROUND_FRACTION = 0.1  # MR voxel is head when above this fraction of the series' p99
VESSELNESS = "vesselness"


def channel_names(family: str, vesselness: bool) -> list[str]:
    names = [w.name for w in CT_WINDOWS] if family == "ct" else [m[0] for m in MR_PERCENTILES]
    return names + ([VESSELNESS] if vesselness else [])


def channel_defs(family: str, vesselness: bool) -> dict:
    """What each channel means, for the store's attrs (values per series are in its attrs)."""
    if family == "ct":
        defs = {w.name: {**asdict(w), "units": "HU"} for w in CT_WINDOWS}
    else:
        defs = {n: {"lo_percentile": lo, "hi_percentile": hi, "gamma": g, "source": "raw", "units": "percentile of positive voxels"}
                for n, lo, hi, g in MR_PERCENTILES}
    if vesselness:
        defs[VESSELNESS] = {"filter": "skimage.filters.sato on the projected highlight channel", "norm": "per-image max"}
    return defs


def series_windows(family: str, hist: "LogHistogram | None") -> list[Window]:
    """The windows of one series: fixed HU for CT, percentile values of ``hist`` for MR."""
    if family == "ct":
        return list(CT_WINDOWS)
    assert hist is not None
    out = []
    for name, plo, phi, gamma in MR_PERCENTILES:
        lo, hi = hist.percentile(plo), hist.percentile(phi)
        out.append(Window(name, lo, max(hi, lo * (1 + 1e-6) + 1e-12), gamma))
    return out


def apply_window(values: np.ndarray, w: Window) -> np.ndarray:
    """float32 in [0, 1], same shape as ``values``; -inf (never reached) maps to 0."""
    out = np.clip((values - np.float32(w.lo)) / np.float32(w.hi - w.lo), 0.0, 1.0).astype(np.float32)
    if w.gamma != 1.0:
        np.power(out, np.float32(w.gamma), out=out)
    return out


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8 by rounding (``/ 255`` reads it back)."""
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


class LogHistogram:
    """Streaming histogram of positive values on a log2 scale: percentiles in O(bins) memory.

    Bins are ``1 / BINS_PER_OCTAVE`` of an octave wide (0.27 % relative width), so percentiles are
    exact to that relative precision and scaling every value by ``s`` shifts them by ``s``:
    normalising by them is invariant to a global intensity scale. Zeros and negatives (MR
    background) are not counted.
    """

    BINS_PER_OCTAVE = 256
    MIN_LOG2, MAX_LOG2 = -24, 40  # 6e-8 .. 1e12: any scanner's units

    def __init__(self) -> None:
        self.counts = np.zeros((self.MAX_LOG2 - self.MIN_LOG2) * self.BINS_PER_OCTAVE, dtype=np.int64)

    def add(self, values: np.ndarray) -> None:
        v = values[values > 0]
        if v.size == 0:
            return
        b = np.floor((np.log2(v) - self.MIN_LOG2) * self.BINS_PER_OCTAVE).astype(np.int64)
        np.clip(b, 0, self.counts.size - 1, out=b)
        self.counts += np.bincount(b, minlength=self.counts.size)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def percentile(self, q: float) -> float:
        """Value at percentile ``q`` (0-100), interpolated linearly in log space inside its bin; 0 if empty."""
        total = self.total
        if total == 0:
            return 0.0
        cum = np.cumsum(self.counts)
        target = q / 100.0 * total
        i = int(np.searchsorted(cum, target, side="left"))
        i = min(i, self.counts.size - 1)
        before = cum[i - 1] if i > 0 else 0
        frac = (target - before) / max(self.counts[i], 1)
        log2v = self.MIN_LOG2 + (i + float(np.clip(frac, 0.0, 1.0))) / self.BINS_PER_OCTAVE
        return float(2.0 ** log2v)
