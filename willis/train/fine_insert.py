"""Sac insertion: paint aneurysm-like bulges onto the vessels of training crops (``insert_p``).

Why: on the default data a family trains on 69 (CT) to ~100 (MR) localized sacs, so the detector
sees the same few sacs many times; it learns those sacs, not "a round bulge on a vessel as bright as the vessel". Every
crop not aimed at a sac can instead carry a new one, drawn to the facts of real aneurysms
(/work/shared/DATA.md): 2-12 mm, median 5 mm (log-normal), attached to its parent vessel by a
neck 50-80% of its radius, and exactly as contrasted as the vessel it grows from (its value
relative to the crop's background is the vessel's x U(0.9, 1.1)): bright in a bright-lumen
channel, dark where the vessel is dark (the T2 mean channel), bright in the flow-void top-hat.
Nothing here reads the generator: the painting only uses the crop's own vessel values, so it
works the same on real series.

Geometry, in the window's pixels (before the crop's affine warp, which then moves the painting
with the image): a vessel point ``p`` is, of 256 random pixels in the middle of the window, the
brightest in the family's vessel channel (``vessel_channels``), nudged to its 3 x 3 maximum, that
passes ``_is_vessel`` (clear of the background, saturated in no channel, < 6 mm across and 1.5x
longer along: calcifications and bone fail it; 8 tries, else no sac); a random direction; the vessel's edge along it (half-way between the vessel's value and the
window's median); the sac's centre beyond the edge by 0.7 radius, foreshortened by U(0.5, 1)
(the sac's direction is 3-D; the slab shows its projection). Profiles have a 1-pixel soft edge
(partial volume). Maximum-type channels get a flat disc (a sphere's maximum projection); the
``thickness`` channel (a mean along the slab) gets a spherical cap, scaled by the sac's width
over the vessel's. Only the slab's own channels are painted, not its context neighbours: a sac
ends inside the slab (the way ``fine_cnn`` tells it from a vessel crossing the slab).

Targets: the inserted sac is an ``Aneurysm Present`` peak with no location (its location channels
are left out of the loss for that crop: ``loss_weights``); the real localizers keep teaching the
locations.

Measured on the realistic default (docs/training.md): it raises the validation score in every run
(CT +0.01 to +0.07) but not the test split nor the held-out generator profile, so ``insert_p`` is
0 by default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from willis.labels import LABELS, PRESENT_INDEX

MEAN_CHANNEL = "thickness"         # the store's mean-type channel (docs/ARCHITECTURE.md); others are maxima
CANDIDATES = 256                   # random pixels drawn for the vessel point ...
TRIES = 8                          # ... the brightest this many tested for a vessel
MIN_CONTRAST = 30.0                # vessel minus window median, uint8 levels: below it, no vessel: skip
SATURATED = 250.0                  # a point at the top of a channel's window is bone or calcification, not lumen
MAX_REACH = 40                     # pixels searched for the vessel's edge
MAX_WIDTH_MM = 6.0                 # a vessel is narrower than this across ...
ELONGATION = 1.5                   # ... and this many times longer along itself (a blob or a plate is not)
_DIRECTIONS = np.array([[0, 1], [1, 1], [1, 0], [1, -1]], float) / np.array([1, np.sqrt(2), 1, np.sqrt(2)])[:, None]


@dataclass(frozen=True)
class InsertParams:
    p: float = 0.0                          # share of the crops not aimed at a sac that get one
    mm_per_px: float = 0.5                  # the store's fine pixel
    median_mm: float = 5.0                  # diameter, log-normal median ...
    log_sd: float = 0.4
    diameter_mm: tuple[float, float] = (2.0, 12.0)   # ... clipped to this
    factor: tuple[float, float] = (0.9, 1.1)         # contrast / the parent vessel's
    neck: tuple[float, float] = (0.5, 0.8)           # neck radius / sac radius


def vessel_channels(channels: list[str], vocab: list[str]) -> np.ndarray:
    """(len(vocab),) int: the channel in which each sub-modality's vessels are brightest.

    CT: ``highlight`` (bone-suppressed, so the point is not on bone); T2: ``dark`` (the flow-void
    top-hat: a T2 lumen is dark); other MR: ``vessel`` (inflow / enhancement, bright)."""
    def pick(m: str) -> int:
        for name in (("dark",) if m == "MRI T2" else ()) + ("highlight", "vessel"):
            if name in channels:
                return channels.index(name)
        return 0
    return np.array([pick(m) for m in vocab], dtype=np.int64)


def _segment_distance(yy: np.ndarray, xx: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of every pixel (yy, xx) to the segment a-b, (row, col) points."""
    d = b - a
    t = ((yy - a[0]) * d[0] + (xx - a[1]) * d[1]) / max(float(d @ d), 1e-9)
    t = np.clip(t, 0.0, 1.0)
    return np.hypot(yy - (a[0] + t * d[0]), xx - (a[1] + t * d[1]))


def _runs(v: np.ndarray, r0: int, c0: int, level: float) -> np.ndarray:
    """(4,) lengths (px) of the run of pixels above ``level`` through (r0, c0) along 0, 45, 90, 135 degrees."""
    w = v.shape[0]
    t = np.arange(1, MAX_REACH)
    out = np.zeros(len(_DIRECTIONS))
    for i, u in enumerate(_DIRECTIONS):
        n = 1
        for sign in (1, -1):
            ry = np.rint(r0 + sign * t * u[0]).astype(int)
            rx = np.rint(c0 + sign * t * u[1]).astype(int)
            inside = (ry >= 0) & (ry < w) & (rx >= 0) & (rx < w)
            above = np.zeros(len(t), bool)
            above[inside] = v[ry[inside], rx[inside]] >= level
            stop = np.flatnonzero(~above)
            n += int(stop[0]) if len(stop) else len(t)
        out[i] = n                                             # unit steps: Euclidean pixels
    return out


def _is_vessel(v: np.ndarray, r0: int, c0: int, bg: float, max_width_px: float) -> bool:
    """Whether (r0, c0) of channel ``v`` is on a vessel: clear of the background, not saturated,
    narrow across and longer along (a calcification is round, bone is wide)."""
    ref = float(v[r0, c0])
    if ref - bg < MIN_CONTRAST or ref >= SATURATED:
        return False
    runs = _runs(v, r0, c0, 0.5 * (ref + bg))
    return bool(runs.min() <= max_width_px and runs.max() >= ELONGATION * runs.min())


def paint(img: np.ndarray, vessel_ch: int, mean_ch: int | None, p: InsertParams, rng: np.random.Generator,
          centre_box: tuple[int, int]) -> tuple[float, float] | None:
    """Paint one sac into ``img`` (C, W, W) float32 in place (uint8 levels); returns its centre
    (row, col) in window pixels, or None where no vessel stands out (nothing painted).

    ``centre_box`` (lo, hi): the vessel point is drawn from rows and columns in [lo, hi)."""
    c, w, _ = img.shape
    v = img[vessel_ch]
    bg = np.median(img.reshape(c, -1), axis=1)                                  # (C,)
    rr, cc = rng.integers(*centre_box, size=CANDIDATES), rng.integers(*centre_box, size=CANDIDATES)
    at = None
    for k in np.argsort(-v[rr, cc], kind="stable")[:TRIES]:
        r0, c0 = int(rr[k]), int(cc[k])
        patch = v[max(r0 - 1, 0):r0 + 2, max(c0 - 1, 0):c0 + 2]
        dr, dc = np.unravel_index(int(np.argmax(patch)), patch.shape)
        r0, c0 = max(r0 - 1, 0) + int(dr), max(c0 - 1, 0) + int(dc)
        if (img[:, r0, c0] < SATURATED).all() and _is_vessel(v, r0, c0, bg[vessel_ch], MAX_WIDTH_MM / p.mm_per_px):
            at = r0, c0
            break
    if at is None:
        return None
    r0, c0 = at
    ref = img[:, r0, c0].copy()                                                 # (C,) the vessel's values
    # draws: always the same number, in this order (reproducible plans)
    angle = rng.uniform(0, 2 * math.pi)
    diameter = float(np.clip(rng.lognormal(math.log(p.median_mm), p.log_sd), *p.diameter_mm))
    factor = rng.uniform(*p.factor)
    foreshort = rng.uniform(0.5, 1.0)
    neck = rng.uniform(*p.neck)
    u = np.array([math.sin(angle), math.cos(angle)])
    half = 0.5 * (ref[vessel_ch] + bg[vessel_ch])
    t = np.arange(MAX_REACH)
    ry = np.clip(np.rint(r0 + t * u[0]).astype(int), 0, w - 1)
    rx = np.clip(np.rint(c0 + t * u[1]).astype(int), 0, w - 1)
    below = np.flatnonzero(v[ry, rx] < half)
    edge = float(below[0]) if len(below) else 2.0                               # vessel half-width, px
    radius = diameter / 2 / p.mm_per_px
    base = np.array([r0, c0], float)
    centre = base + u * (edge + 0.7 * radius) * foreshort
    yy, xx = np.mgrid[0:w, 0:w].astype(np.float32)
    rho = np.hypot(yy - centre[0], xx - centre[1])
    a_sac = np.clip(radius - rho + 0.5, 0, 1)
    a_neck = np.clip(neck * radius - _segment_distance(yy, xx, base, centre) + 0.5, 0, 1)
    alpha = np.maximum(a_sac, a_neck)
    cap = np.sqrt(np.clip(1 - (rho / radius) ** 2, 0, 1)) * float(np.clip(radius / max(edge, 1.0), 1.0, 2.0))
    for ch in range(c):
        contrast = (ref[ch] - bg[ch]) * factor
        shape = np.maximum(cap, a_neck) if ch == mean_ch else 1.0
        target = bg[ch] + contrast * shape
        painted = img[ch] + alpha * (target - img[ch])
        # only towards the vessel's contrast: a brighter crossing vessel stays in a maximum projection
        img[ch] = np.maximum(img[ch], painted) if contrast >= 0 else np.minimum(img[ch], painted)
    np.clip(img, 0, 255, out=img)
    return float(centre[0]), float(centre[1])


@dataclass(frozen=True)
class Inserter:
    """What sac insertion needs of a family's store: its knobs and channel roles."""
    params: InsertParams
    vessel_ch: np.ndarray          # (n_modalities,) ``vessel_channels``
    mean_ch: int | None            # the ``thickness`` channel, if the store has one

    @classmethod
    def for_store(cls, params: InsertParams, channels: list[str], vocab: list[str]) -> "Inserter":
        return cls(params, vessel_channels(channels, vocab),
                   channels.index(MEAN_CHANNEL) if MEAN_CHANNEL in channels else None)

    def pick(self, aimed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(B,) bool: the crops that get a sac, each crop not ``aimed`` at one with probability ``p``.

        (Measured, and dropped: re-centring the picked crops on the training localizers' positions,
        where sacs grow, scored lower on validation, CT 0.661 against 0.741.)"""
        picked = np.zeros(len(aimed), dtype=bool)
        for i in np.flatnonzero(~aimed):
            picked[i] = rng.random() < self.params.p
        return picked


def insert_sacs(win: np.ndarray, wpts: np.ndarray, picked: np.ndarray, modality_id: np.ndarray,
                ins: Inserter, n_ch: int, size: int, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paint a sac into each ``picked`` (B,) window of (B, C', W, W) uint8 (``Inserter.pick``);
    the slab's own channels are the first ``n_ch``.

    Returns (windows, points (B, Q + 1, 3) with the inserted Present peaks appended in the
    window-normalised coordinates of ``crop_points``, inserted (B,) bool: False where no vessel
    stood out, nothing painted)."""
    b, _, w, _ = win.shape
    extra = np.full((b, 1, 3), -1.0, dtype=np.float32)
    inserted = np.zeros(b, dtype=bool)
    lo = w // 2 - size // 3
    for i in np.flatnonzero(picked):
        img = win[i, :n_ch].astype(np.float32)
        at = paint(img, int(ins.vessel_ch[modality_id[i]]), ins.mean_ch, ins.params, rng, (lo, w - lo))
        if at is None:
            continue
        win[i, :n_ch] = np.rint(img).astype(np.uint8)
        extra[i, 0] = (PRESENT_INDEX, (2 * at[0] + 1) / w - 1, (2 * at[1] + 1) / w - 1)
        inserted[i] = True
    return win, np.concatenate([wpts, extra], axis=1), inserted


def loss_weights(mask: torch.Tensor, inserted: torch.Tensor) -> torch.Tensor:
    """(B, 1, L, 1, 1) heat-loss weights: the series mask, with the location channels of crops
    holding an inserted sac left out (its location is unknown; Present is taught)."""
    w = mask.to(torch.float32).view(-1, 1, 1, 1, 1).repeat(1, 1, len(LABELS), 1, 1)
    loc = torch.ones(len(LABELS), dtype=torch.bool, device=mask.device)
    loc[PRESENT_INDEX] = False
    w[inserted.view(-1, 1, 1, 1, 1) & loc.view(1, 1, -1, 1, 1)] = 0.0
    return w
