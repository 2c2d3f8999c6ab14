"""Where the circle of Willis is: the fine box's centre, from the locate grid (``willis.projections.locate``).

Anatomy this relies on (true of real heads, not of one generator): the intracranial arteries
converge at the skull base near the midline; the circle and its first branches (ICA termini, M1s
running laterally, A1s, the basilar tip, P1s) are the densest cluster of arteries in the head, a few
centimetres across, just above the sella; the vault above holds only thin cortical branches and the
neck below holds four straight arteries.

1. **Head mask**: locate cells whose mean is tissue (CT > ``CT_HEAD_HU``; MR > ``MR_HEAD_FRACTION``
   of the series' p99). No head -> the field-of-view centre, flag ``fov``. **Interior**: the mask
   eroded in each axial layer by ``INTERIOR_MM`` (drops scalp and calvarium).
2. **Prior** (where to start looking):
   x, y: the centroid of the interior in the layers within ``PRIOR_SLAB_MM`` of the prior z;
   z: CT: the skull base, the highest layer whose interior holds ``SKULL_BASE_MM2`` of bone (orbital
   roofs, clinoids, petrous ridges: the circle sits ``BASE_TO_COW_MM`` above them);
   MR with the vertex in the field of view: ``VERTEX_TO_COW_MM`` below the head top (auricular head
   height ~125-131 mm, the circle ~30 mm above the porion); otherwise (a slab acquisition, planned on
   the circle as TOF slabs are): the middle of the scanned z range.
3. **Artery evidence** deep in the head (``evidence``): the strongest few percent of the cells by
   CT bone-suppressed contrast, MRA / T1post white top-hat (vessels brighter than their
   surroundings), T2 black top-hat (flow voids), away from bone (CT).
4. **Mean shift** from the prior: the weighted centroid of the evidence cells within
   ``SHIFT_RADIUS_MM``, weights tapered by a Gaussian of ``PRIOR_SIGMA_MM`` around the prior (so it
   cannot wander to the venous sinuses or the neck), repeated to convergence. Fewer than
   ``MIN_EVIDENCE_CELLS`` evidence cells in the final window -> keep the prior, flag ``prior``;
   else flag ``vessels``.

Everything found is reported in ``attrs["fine"]["locate"]`` (prior, shift, evidence count, head top,
skull base, the anchor used).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from willis.projections.locate import LocateGrid
from willis.projections.windows import HU_VESSEL_LO, MR_FOREGROUND_FRACTION

CT_HEAD_HU = -500.0          # cell mean above this: tissue (half of a 4 mm cell at the skin is air)
MR_HEAD_FRACTION = MR_FOREGROUND_FRACTION
MIN_HEAD_ML = 100.0          # less head than this: no head in the field of view
INTERIOR_MM = 16.0           # scalp (3-9 mm) + calvarium (4-11 mm)
SKULL_BASE_MM2 = 150.0       # bone area in an interior layer that marks the skull base
BONE_CELL_FRACTION = 0.25    # a cell is bone when this fraction of its pixels is above bone_hu
BASE_TO_COW_MM = 10.0        # the circle above the highest skull-base bone (clinoids, planum, orbital roofs)
VERTEX_TO_COW_MM = 95.0      # scalp top to the circle (see the module docstring)
PRIOR_SLAB_MM = 30.0         # layers around the prior z whose interior centroid gives the prior x, y
HEAD_SEARCH_MM = 180.0       # the head's widest layer within this of its top, the neck's waist within this below it
NECK_FRACTION = 0.6          # a layer narrower than this fraction of the widest one is neck (neck ~0.3-0.45 of the head)
NECK_TO_COW_MM = 30.0        # the circle lies at least this far above the neck's waist (C2-C4 vs the sella: 60-100 mm)
CT_EVIDENCE_MAX_HU = 1000.0  # above: calcification or residual bone, not contrast
MR_MIN_FRACTION = 0.15      # MR: an artery's top-hat is at least this fraction of p99 - p1
EVIDENCE_TOP_PERCENT = 2.0   # the strongest 2 % of the deep cells (~150 of a head's ~8,000 at 4 mm)
DEEP_MM = 24.0               # artery evidence this deep in the head (3-D): no dural sinus, scalp or skull rim
BONE_CLEAR_MM = 4.0          # CT: evidence this far from bone only (partial-volume rims, the siphons in bone)
# taper of the z profile around the prior z, by how the prior was found: the skull base is a sure
# anchor (the circle is always just above it), the vertex a fair one (head size varies ~10 %), the
# middle of a slab acquisition only a hint (it may reach the neck)
PRIOR_SIGMA_MM = {"skull_base": 25.0, "vertex": 30.0, "fov_z": 80.0}
COLUMN_HALF_Y_MM = 45.0      # lateral evidence within this of the head's axis front-to-back (not the transverse sinuses)
LATERAL_MM = (20.0, 60.0)    # ... and this far off the midline: the M1s / MCA bifurcations (ICAs, basilar, veins are nearer)
Z_SMOOTH_MM = 6.0            # the lateral-evidence profile along z is smoothed by a Gaussian of this s.d.
BAND_MM = 12.0               # the circle's layers: within this of the profile's peak
MIN_EVIDENCE_CELLS = 8       # fewer lateral evidence cells there: no circle found, keep the prior
RING_HALF_X_MM = 20.0        # the ring itself: within this of the midline
SHIFT_RADIUS_MM = 20.0       # mean-shift window along y (the ring is ~25-30 mm front to back)
MAX_SHIFT_ITERATIONS = 30


@dataclass
class Located:
    centre: tuple[float, float, float]
    flag: str                                    # vessels | prior | fov
    info: dict = field(default_factory=dict)     # for attrs["fine"]["locate"]


def _mode(modality: str) -> str:
    m = modality.upper()
    return "dark" if "T2" in m else "bright"


def head_mask(grid: LocateGrid, family: str) -> np.ndarray:
    mean = grid.mean
    if family == "ct":
        thr = CT_HEAD_HU
    else:
        p99 = grid.pct.percentile(99.0) if grid.pct is not None else 0.0
        thr = MR_HEAD_FRACTION * p99 if p99 > 0 else np.inf
    return np.nan_to_num(mean, nan=-np.inf) > thr


def evidence(grid: LocateGrid, family: str, modality: str, deep: np.ndarray) -> np.ndarray:
    """bool (n_z, n_y, n_x): the ``EVIDENCE_TOP_PERCENT`` of the deep cells with the strongest artery signal.

    The signal: CT the bone-suppressed max HU (at least ``HU_VESSEL_LO``, at most
    ``CT_EVIDENCE_MAX_HU``); MRA / T1post the white top-hat, T2 the black top-hat (at least
    ``MR_MIN_FRACTION`` of p99 - p1). Keeping only the strongest cells keeps the large arteries at
    the circle (least partial volume) and drops the small cortical branches and the noise, whatever
    the kernel, noise or calibre of the series."""
    if family == "ct":
        v = np.where(grid.vmax <= CT_EVIDENCE_MAX_HU, grid.vmax, -np.inf)
        floor = HU_VESSEL_LO
    else:
        depth = grid.pct.percentile(99.0) - grid.pct.percentile(1.0)
        v = grid.dark if _mode(modality) == "dark" else grid.bright
        floor = MR_MIN_FRACTION * depth
    inside = v[deep & np.isfinite(v)]
    if inside.size == 0:
        return np.zeros_like(deep)
    thr = max(floor, float(np.percentile(inside, 100.0 - EVIDENCE_TOP_PERCENT)))
    return deep & (v >= thr)


def _erode_layers(mask: np.ndarray, mm: float, cell: float) -> np.ndarray:
    """2-D erosion of each axial layer by a disk of ``mm``; outside the scanned box counts as head.

    ``binary_erosion`` by the disk of integer offsets within ``r + 1e-6`` cells, computed as the
    layer's Euclidean distance transform ``> r`` (a cell survives when every non-head cell is more
    than ``r`` away: squared distances are integers, so the two agree exactly; ~20x faster)."""
    r = max(1, int(round(mm / cell)))
    out = np.zeros_like(mask)
    for z in range(mask.shape[0]):
        m = mask[z]
        if m.all():                       # no non-head cell in the layer (the transform has no zero to measure from)
            out[z] = True
        elif m.any():
            out[z] = ndimage.distance_transform_edt(m) > r
    return out


def _erode_ball(mask: np.ndarray, mm: float, cell: float) -> np.ndarray:
    """3-D erosion by a ball of ``mm`` (cells at least that far from the head's surface, in any direction):
    as ``_erode_layers``, the 3-D distance transform ``> r``."""
    r = max(1, int(round(mm / cell)))
    if mask.all():
        return mask.copy()
    return ndimage.distance_transform_edt(mask) > r


def _layer_centroids(mask: np.ndarray, xc: np.ndarray, yc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n_z,) x and y centroid of ``mask`` in each axial layer (NaN where the layer is empty)."""
    n = mask.sum(axis=(1, 2)).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = (mask.sum(axis=1) * xc[None, :]).sum(axis=1) / n
        y = (mask.sum(axis=2) * yc[None, :]).sum(axis=1) / n
    return x, y


def _nearest_finite(v: np.ndarray, i: int) -> float:
    ok = np.nonzero(np.isfinite(v))[0]
    return float(v[ok[np.argmin(np.abs(ok - i))]]) if ok.size else float("nan")


def _neck_floor(head: np.ndarray, zc: np.ndarray, cell: float, head_top: float) -> float:
    """z (mm) below which the scan is neck, not head (-inf when it reaches no neck).

    Going down from its widest layer a head narrows to the neck, whose cross-section is well under
    ``NECK_FRACTION`` of the head's (it widens again at the shoulders, further down). The circle
    lies above the neck's waist by more than ``NECK_TO_COW_MM``."""
    area = ndimage.gaussian_filter1d(head.sum(axis=(1, 2)).astype(np.float64) * cell * cell, 8.0 / cell, mode="nearest")
    head_layers = np.nonzero((zc >= head_top - HEAD_SEARCH_MM) & (zc <= head_top))[0]
    if head_layers.size == 0:
        return -np.inf
    widest = int(head_layers[np.argmax(area[head_layers])])
    down = np.nonzero((zc < zc[widest]) & (zc >= zc[widest] - HEAD_SEARCH_MM))[0]
    if down.size == 0:
        return -np.inf
    waist = int(down[np.argmin(area[down])])
    return float(zc[waist]) + NECK_TO_COW_MM if area[waist] < NECK_FRACTION * area[widest] else -np.inf


def locate_cow(grid: LocateGrid, family: str, modality: str, bone_hu: float) -> Located:
    cell = float(grid.pitch[0])
    zc, yc, xc = grid.centres(2), grid.centres(1), grid.centres(0)
    scanned = grid.scanned
    fov_centre = [float(np.mean(c[np.nonzero(scanned.any(axis=tuple(a for a in range(3) if a != ax)))[0]]))
                  for c, ax in ((xc, 2), (yc, 1), (zc, 0))]
    head = head_mask(grid, family)
    info: dict = {"cell_mm": cell, "frames": grid.frames, "fov_centre_mm": fov_centre}
    if head.sum() * cell**3 < MIN_HEAD_ML * 1000:
        return Located(tuple(fov_centre), "fov", {**info, "why": "no head in the field of view"})  # type: ignore[arg-type]
    interior = _erode_layers(head, INTERIOR_MM, cell) & head
    if not interior.any():
        interior = head
    deep = _erode_ball(head, DEEP_MM, cell) & head
    if not deep.any():
        deep = interior
    layers = np.nonzero(head.sum(axis=(1, 2)) * cell * cell >= np.pi * 15.0**2)[0]   # (k,) z layers at least ~30 mm across
    top = int(layers.max()) if layers.size else int(np.nonzero(head.any(axis=(1, 2)))[0].max())
    head_top = float(zc[top] + cell / 2)
    scanned_z = np.nonzero(scanned.any(axis=(1, 2)))[0]
    vertex_in_fov = top < scanned_z.max() - 1           # air above the head inside the scanned range
    z_floor = _neck_floor(head, zc, cell, head_top)
    info.update(head_top_mm=head_top, vertex_in_fov=bool(vertex_in_fov), neck_floor_mm=z_floor)
    above = zc > z_floor                                                    # (n_z,) the head, not the neck

    # 1. the prior z: skull base (CT), vertex, or the middle of a slab acquisition
    z_prior, anchor = None, ""
    bone = None
    if family == "ct" and grid.bone is not None:
        bone = np.nan_to_num(grid.bone, neginf=0.0) >= BONE_CELL_FRACTION
        # skull-base bone lies deep inside its own layer's outline (the vault does not): 2-D erosion,
        # so the face and neck below do not thin it out
        core = _erode_layers(head, DEEP_MM, cell) & head
        area = (bone & core).sum(axis=(1, 2)) * cell * cell                     # (n_z,) mm^2
        below = np.nonzero((area >= SKULL_BASE_MM2) & (zc < head_top - 40.0) & above)[0]
        if below.size:
            z_base = float(zc[below.max()])
            z_prior, anchor = z_base + BASE_TO_COW_MM, "skull_base"
            info["skull_base_mm"] = z_base
    if z_prior is None and vertex_in_fov:
        z_prior, anchor = head_top - VERTEX_TO_COW_MM, "vertex"
    if z_prior is None:
        z_prior, anchor = max(fov_centre[2], z_floor + NECK_TO_COW_MM), "fov_z"
    info.update(anchor=anchor, prior_z_mm=float(z_prior))

    # 2. artery evidence deep in the head, away from bone
    ev = evidence(grid, family, modality, deep)
    if bone is not None:
        ev &= ~ndimage.binary_dilation(bone, iterations=max(1, int(round(BONE_CLEAR_MM / cell))))
    mid_x, mid_y = _layer_centroids(interior, xc, yc)                     # (n_z,) the head's axis per layer
    fill = lambda v: np.array([_nearest_finite(v, i) for i in range(len(v))])  # noqa: E731
    mid_x, mid_y = fill(mid_x), fill(mid_y)
    dx = np.abs(xc[None, None, :] - mid_x[:, None, None])               # (n_z, 1, n_x) mm from the midline
    dy = np.abs(yc[None, :, None] - mid_y[:, None, None])               # (n_z, n_y, 1) mm from the axis
    lateral = ev & (dy <= COLUMN_HALF_Y_MM) & (dx >= LATERAL_MM[0]) & (dx <= LATERAL_MM[1])
    # 3. z: the layers where arteries run out laterally (the M1s at the level of the circle), prior-tapered
    taper = np.exp(-((zc - z_prior) ** 2) / (2 * PRIOR_SIGMA_MM[anchor] ** 2))
    profile = ndimage.gaussian_filter1d(lateral.sum(axis=(1, 2)).astype(np.float64), Z_SMOOTH_MM / cell, mode="constant") * taper
    profile[~above] = 0.0
    info.update(evidence_cells=int(ev.sum()), lateral_cells=int(lateral.sum()))
    k = int(np.argmax(profile))
    z_star = float(zc[k])
    band = (np.abs(zc - z_star) <= BAND_MM)[:, None, None]
    n_band = int((lateral & band).sum())
    info.update(evidence_in_band=n_band, peak_z_mm=z_star)
    if n_band < MIN_EVIDENCE_CELLS:
        prior = (float(mid_x[k]), float(mid_y[k]), float(z_prior))
        return Located(prior, "prior", {**info, "why": f"{n_band} lateral evidence cells at the peak"})  # type: ignore[arg-type]
    # 4. x: the head's midline there; y: the densest cluster of artery evidence near the midline
    # in those layers (the ring itself: ICA termini, A1s, AComm, PComms, basilar tip, P1s), by a
    # mean shift along y from the head's axis
    near_mid = ev & band & (dx <= RING_HALF_X_MM)
    w = near_mid.sum(axis=(0, 2)).astype(np.float64)                   # (n_y,) evidence per y row
    y = float(mid_y[k])
    for _ in range(MAX_SHIFT_ITERATIONS):
        sel = (np.abs(yc - y) <= SHIFT_RADIUS_MM) & (w > 0)
        if not sel.any():
            break
        new = float((yc[sel] * w[sel]).sum() / w[sel].sum())
        done = abs(new - y) < 0.25
        y = new
        if done:
            break
    info.update(axis_mm=[float(mid_x[k]), float(mid_y[k])], ring_cells=int(near_mid.sum()))
    centre = (float(mid_x[k]), y, z_star)
    return Located(centre, "vessels", info)
