"""Channels: intensity windows applied to projected maxima, and the exact MR percentiles.

Every channel is a monotonic per-voxel map ``clip((v - lo) / (hi - lo), 0, 1) ** gamma``, so it
commutes with maximum projection: the stream accumulates raw maxima once (HU for CT, scanner
units for MR) and every channel is derived from them at the end. The bone-aware highlight is the
exception (bone masking is not monotonic): it is the same kind of window applied to a second
maximum, taken over bone-suppressed slices (``willis.projections.bone``).

CT (HU): ``brain`` (L40/W80), ``vessel`` (CTA, L200/W600), ``bone`` (L500/W2000), ``highlight``
(bone-suppressed, [150, 600] HU with gamma 0.5 so faint small vessels are lifted).
MR (no HU): the same shape of windows with ends at per-series percentiles of the positive voxels.
The percentiles are exact (``np.percentile``, ``inverted_cdf``: each is one of the sampled values)
over a deterministic, bounded subsample (``PercentileSample``: every ``stride``-th pixel per axis of
the locate pass's frames), so a series stored with every value times ``s`` gets every window end
times ``s`` exactly and identical views: no dependence on histogram-bin placement.

Fine channels (``fine_channel_names``; ``willis.projections.fine``):
CT ``vessel`` (max, the coarse vessel window), ``highlight`` (max of the bone-suppressed voxels,
as the coarse highlight), ``thickness`` (slab MEAN of each bone-suppressed voxel's [150, 600] HU
window: the length of contrast along the ray / slab thickness, so a sac wider than its parent
artery is brighter than the artery even when its HU are the same);
MR ``vessel`` (max, [p50, p99.9]), ``thickness`` (slab mean of each voxel's [p50, p99.9] window),
``dark`` (max of each slice's black top-hat, ``closing - value`` with a ``dark_tophat_mm`` box, over
``[0, p99 - p1]``): a flow void (T2) is a dark spot narrower than the box, which a maximum
projection never shows but the top-hat turns bright.
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

FINE_CT_WINDOWS: tuple[Window, ...] = (
    Window("vessel", -100.0, 500.0),
    Window("highlight", HU_VESSEL_LO, HU_VESSEL_HI, HIGHLIGHT_GAMMA, "suppressed"),
    Window("thickness", HU_VESSEL_LO, HU_VESSEL_HI, 1.0, "suppressed_mean"),
)
# MR fine: (name, low percentile, high percentile, gamma, source); "dark" is [0, p_hi - p_lo] on the top-hat
FINE_MR_PERCENTILES: tuple[tuple[str, float, float, float, str], ...] = (
    ("vessel", 50.0, 99.9, 1.0, "raw"),
    ("thickness", 50.0, 99.9, 1.0, "mean"),
    ("dark", 1.0, 99.0, 1.0, "tophat"),
)


def fine_channel_names(family: str) -> list[str]:
    return [w.name for w in FINE_CT_WINDOWS] if family == "ct" else [m[0] for m in FINE_MR_PERCENTILES]


def fine_channel_defs(family: str) -> dict:
    """What each fine channel means, for the store's attrs (values per series: ``attrs["series"][uid]["fine"]["windows"]``)."""
    if family == "ct":
        how = {"raw": "max over the slab", "suppressed": "max over the slab of bone-suppressed voxels",
               "suppressed_mean": "slab mean of each bone-suppressed voxel's window value (contrast thickness)"}
        return {w.name: {**asdict(w), "units": "HU", "reduce": how[w.source]} for w in FINE_CT_WINDOWS}
    how = {"raw": "max over the slab", "mean": "slab mean of each voxel's window value",
           "tophat": "max over the slab of each slice's black top-hat (closing - value), window [0, p_hi - p_lo]"}
    return {n: {"lo_percentile": lo, "hi_percentile": hi, "gamma": g, "source": src, "reduce": how[src],
                "units": "percentile of positive voxels"} for n, lo, hi, g, src in FINE_MR_PERCENTILES}


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


def _window(name: str, lo: float, hi: float, gamma: float, source: str = "raw") -> Window:
    # hi > lo even for a constant series (scale-equivariant: both ends are sample values times the same factor)
    return Window(name, lo, hi if hi > lo else lo + max(abs(lo), 1e-12) * 1e-6, gamma, source)


def series_windows(family: str, pct: "PercentileSample | None") -> list[Window]:
    """The windows of one series: fixed HU for CT, exact percentiles of ``pct`` for MR."""
    if family == "ct":
        return list(CT_WINDOWS)
    assert pct is not None
    return [_window(name, pct.percentile(plo), pct.percentile(phi), gamma) for name, plo, phi, gamma in MR_PERCENTILES]


def fine_windows(family: str, pct: "PercentileSample | None") -> list[Window]:
    """The fine channels' windows of one series (CT fixed HU; MR from exact percentiles; ``dark``: [0, p_hi - p_lo])."""
    if family == "ct":
        return list(FINE_CT_WINDOWS)
    assert pct is not None
    out = []
    for name, plo, phi, gamma, source in FINE_MR_PERCENTILES:
        lo, hi = pct.percentile(plo), pct.percentile(phi)
        out.append(_window(name, 0.0, hi - lo, gamma, source) if source == "tophat" else _window(name, lo, hi, gamma, source))
    return out


def apply_window(values: np.ndarray, w: Window) -> np.ndarray:
    """float32 in [0, 1], same shape as ``values``; -inf (never reached) maps to 0.

    Computed in float64: MR values are integers times a slope, so ``(v - lo) / (hi - lo)`` with
    lo/hi sample values is the same correctly rounded quotient for a series scaled by any factor."""
    out = np.clip((values.astype(np.float64) - w.lo) / (w.hi - w.lo), 0.0, 1.0).astype(np.float32)
    if w.gamma != 1.0:
        np.power(out, np.float32(w.gamma), out=out)
    return out


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8 by rounding (``/ 255`` reads it back)."""
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


PERCENTILE_SAMPLE_MAX = 1 << 21   # values kept for the MR percentiles at most (8 MB float32)


class PercentileSample:
    """Exact percentiles of the positive values of a deterministic, bounded subsample.

    ``add(frame)`` keeps ``frame[::stride, ::stride]``'s positive values (zeros and negatives are
    MR background, not counted); the caller picks ``stride`` from the geometry only
    (``stride_for``), so the sample is the same pixels whatever the values. ``percentile(q)`` is
    ``np.percentile(sample, q, method="inverted_cdf")``: a sampled value, so scaling every value
    by ``s > 0`` scales it by exactly ``s``.
    """

    def __init__(self, stride: int = 1) -> None:
        self.stride = max(1, int(stride))
        self._parts: list[np.ndarray] = []
        self._sorted: np.ndarray | None = None

    @staticmethod
    def stride_for(n_frames: int, rows: int, cols: int, max_values: int = PERCENTILE_SAMPLE_MAX) -> int:
        """Smallest per-axis stride keeping ``n_frames`` frames' samples within ``max_values``."""
        return max(1, int(np.ceil(np.sqrt(max(1, n_frames) * rows * cols / max_values))))

    def add(self, frame: np.ndarray) -> None:
        v = frame[:: self.stride, :: self.stride]
        self._parts.append(v[v > 0].astype(np.float32))
        self._sorted = None

    @property
    def total(self) -> int:
        return int(sum(p.size for p in self._parts))

    def values(self) -> np.ndarray:
        if self._sorted is None:
            self._sorted = np.sort(np.concatenate(self._parts)) if self._parts else np.zeros(0, np.float32)
            self._parts = [self._sorted]
        return self._sorted

    def percentile(self, q: float) -> float:
        """Value at percentile ``q`` (0-100) of the sample; 0 if it is empty.

        ``np.percentile(sample, q, method="inverted_cdf")`` read off the sorted sample (no partition
        per call): numpy's index ``n * (q / 100) - 1`` in float64, rounded up unless it is whole,
        at least 0."""
        v = self.values()
        if v.size == 0:
            return 0.0
        index = v.size * np.true_divide(q, 100) - 1
        prev = np.floor(index)
        k = int(prev) if index - prev == 0 else int(prev) + 1
        return float(v[max(k, 0)])

    def summary(self, qs=(0.5, 1, 5, 50, 95, 99, 99.9, 99.95, 99.99)) -> dict:
        """For the series attrs: the sample size and a few percentiles."""
        return {"n": self.total, "stride": self.stride, **{f"p{q:g}": self.percentile(q) for q in qs}}
