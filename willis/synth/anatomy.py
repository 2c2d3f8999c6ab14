"""A circle-of-Willis-like arterial tree in LPS patient mm, with per-case variation and aneurysms.

The canonical tree is a set of named nodes (mm, origin at the centre of the circle of Willis, x to the
patient's left, y posterior, z superior) joined by polylines (``SEGMENTS``). Each segment carries the
``train.csv`` location column it belongs to (``willis.labels.LOCATIONS``) or ``None`` (cervical ICA:
no label). A case jitters every node, scales, rotates and shifts the whole tree and scales vessel
radii; because segments share node names, the jittered tree stays connected.

An aneurysm is a saccular bulge: a sphere of diameter 4-12 mm whose centre sits just outside the
wall of a labelled segment, joined to it by a short neck; its label is that segment's column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from willis.labels import LOCATIONS

(L_INFRA, R_INFRA, L_SUPRA, R_SUPRA, L_MCA, R_MCA, ACOM, L_ACA, R_ACA, L_PCOM, R_PCOM,
 BASILAR_TIP, OTHER_POST) = LOCATIONS

# Left-side nodes (x > 0 is the patient's left); right-side nodes are their mirror images (x -> -x).
_LEFT_NODES: dict[str, tuple[float, float, float]] = {
    "cca": (22, 14, -170), "ica_neck": (22, 14, -95), "ica_base": (20, 12, -48),
    "petrous": (24, 6, -38), "cav1": (20, -2, -30), "cav2": (16, -6, -20), "cav3": (17, 2, -12),
    "clinoid": (15, -3, -6), "ica_sup": (14, -2, 0), "ica_term": (14, -1, 3),
    "m1a": (26, -3, 4), "m1b": (38, -1, 7), "mca_bif": (46, 2, 12),
    "m2s1": (55, -8, 20), "m2s2": (60, -14, 32), "m2i1": (56, 12, 18), "m2i2": (60, 22, 28),
    "a1": (8, -10, 5), "acom": (3.5, -15, 6), "a2a": (3.5, -24, 16), "a2b": (3.5, -30, 30), "a2c": (3.5, -24, 44),
    "pcom": (13, 6, -1), "p1p2": (11, 13, -3), "p1": (6, 15, -5),
    "p2a": (22, 22, -1), "p2b": (26, 38, 2), "p2c": (20, 58, 8),
    "sca1": (10, 20, -15), "sca2": (18, 30, -12),
    "va0": (24, 30, -170), "va1": (22, 28, -80), "va2": (13, 30, -52), "va3": (4, 24, -44),
}
_MID_NODES: dict[str, tuple[float, float, float]] = {
    "vb_junction": (0, 22, -40), "basilar_mid": (0, 19, -25), "basilar_top": (0, 16, -15), "basilar_tip": (0, 15, -8),
}

# (segment name, node path, base radius mm, location or None); "{s}" is L or R.
_SIDED_SEGMENTS = [
    ("{s} cervical ICA", ["cca", "ica_neck", "ica_base"], 2.7, None),
    ("{s} infraclinoid ICA", ["ica_base", "petrous", "cav1", "cav2", "cav3", "clinoid"], 2.4, "Infra"),
    ("{s} supraclinoid ICA", ["clinoid", "ica_sup", "ica_term"], 2.0, "Supra"),
    ("{s} MCA M1", ["ica_term", "m1a", "m1b", "mca_bif"], 1.5, "MCA"),
    ("{s} MCA M2 superior", ["mca_bif", "m2s1", "m2s2"], 1.1, "MCA"),
    ("{s} MCA M2 inferior", ["mca_bif", "m2i1", "m2i2"], 1.1, "MCA"),
    ("{s} ACA", ["ica_term", "a1", "acom", "a2a", "a2b", "a2c"], 1.2, "ACA"),
    ("{s} PComm", ["ica_sup", "pcom", "p1p2"], 0.8, "PComm"),
    ("{s} PCA", ["p1p2", "p2a", "p2b", "p2c"], 1.2, "Post"),
    ("{s} PCA P1", ["basilar_tip", "p1", "p1p2"], 1.3, "Post"),
    ("{s} SCA", ["basilar_top", "sca1", "sca2"], 0.8, "Post"),
    ("{s} extracranial vertebral", ["va0", "va1", "va2"], 1.8, None),
    ("{s} intracranial vertebral", ["va2", "va3", "vb_junction"], 1.7, "Post"),
]
_SIDE_LOCATION = {
    ("L", "Infra"): L_INFRA, ("R", "Infra"): R_INFRA, ("L", "Supra"): L_SUPRA, ("R", "Supra"): R_SUPRA,
    ("L", "MCA"): L_MCA, ("R", "MCA"): R_MCA, ("L", "ACA"): L_ACA, ("R", "ACA"): R_ACA,
    ("L", "PComm"): L_PCOM, ("R", "PComm"): R_PCOM, ("L", "Post"): OTHER_POST, ("R", "Post"): OTHER_POST,
}
_MID_SEGMENTS = [
    ("AComm", ["L acom", "R acom"], 0.9, ACOM),
    ("basilar trunk", ["vb_junction", "basilar_mid", "basilar_top"], 1.7, OTHER_POST),
    ("basilar tip", ["basilar_top", "basilar_tip"], 1.7, BASILAR_TIP),
]

# Relative frequency of aneurysm locations, close to the real train set (AComm most common, L/R ACA rarest).
LOCATION_WEIGHTS: dict[str, float] = {
    L_INFRA: 78, R_INFRA: 98, L_SUPRA: 331, R_SUPRA: 281, L_MCA: 257, R_MCA: 321, ACOM: 363,
    L_ACA: 46, R_ACA: 57, L_PCOM: 56, R_PCOM: 72, BASILAR_TIP: 112, OTHER_POST: 113,
}
# The synthetic default skews larger than the real data (mostly 3-7 mm): at the projections' ~1.6 mm
# pixels a 3 mm sac is 2 px (docs/synthetic.md, "Why the lesion is this visible").
ANEURYSM_DIAMETER_MM = (4.0, 12.0)   # clip range
ANEURYSM_MEDIAN_MM = 7.0             # log-normal median
ANEURYSM_LOG_SD = 0.3                # log-normal s.d.: ~90% of sacs 4.3-11.4 mm
NODE_JITTER_MM = 1.5      # per-node anatomical variation (s.d.)
MAX_ROTATION_DEG = 8.0    # per-case head rotation about each axis
SCALE_RANGE = (0.9, 1.1)  # per-case head size
RADIUS_RANGE = (0.8, 1.2)  # per-case vessel calibre


def canonical_nodes() -> dict[str, np.ndarray]:
    nodes = {}
    for name, p in _LEFT_NODES.items():
        nodes[f"L {name}"] = np.array(p, float)
        nodes[f"R {name}"] = np.array((-p[0], p[1], p[2]), float)
    for name, p in _MID_NODES.items():
        nodes[name] = np.array(p, float)
    return nodes


def segment_specs() -> list[tuple[str, list[str], float, str | None]]:
    """(name, node names, base radius, location) for every segment of the tree."""
    specs = []
    for side in ("L", "R"):
        for name, path, radius, loc in _SIDED_SEGMENTS:
            nodes = [n if n in _MID_NODES else f"{side} {n}" for n in path]
            specs.append((name.format(s=side), nodes, radius, None if loc is None else _SIDE_LOCATION[(side, loc)]))
    specs.extend(_MID_SEGMENTS)
    return specs


@dataclass(frozen=True)
class Vessel:
    name: str
    points: np.ndarray          # (m, 3) polyline, LPS mm
    radius: float               # mm
    location: str | None        # train.csv column, or None for unlabelled vessels


@dataclass(frozen=True)
class Aneurysm:
    location: str               # train.csv column
    vessel: str                 # the segment it sits on
    center: np.ndarray          # (3,) sac centre, LPS mm
    radius: float               # sac radius, mm (diameter within ANEURYSM_DIAMETER_MM)
    neck: np.ndarray            # (3,) point on the vessel's centre line where the neck starts
    neck_radius: float


@dataclass(frozen=True)
class Anatomy:
    vessels: tuple[Vessel, ...]
    rotation: np.ndarray        # (3, 3) canonical -> patient
    scale: float
    center: np.ndarray          # (3,) patient position of the canonical origin (circle of Willis)

    def to_patient(self, canon) -> np.ndarray:
        """Canonical head coordinates (..., 3) -> patient LPS mm."""
        return (np.asarray(canon, float) * self.scale) @ self.rotation.T + self.center


def rotation_matrix(angles_deg) -> np.ndarray:
    """Rotation about x, then y, then z by ``angles_deg`` (3,)."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def sample_anatomy(rng: np.random.Generator, center) -> Anatomy:
    """One case's arterial tree: jittered nodes, random scale/rotation/calibre, canonical origin at ``center``."""
    nodes = {k: v + rng.normal(0, NODE_JITTER_MM, 3) for k, v in canonical_nodes().items()}
    rotation = rotation_matrix(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG, 3))
    scale = float(rng.uniform(*SCALE_RANGE))
    calibre = float(rng.uniform(*RADIUS_RANGE))
    anatomy = Anatomy((), rotation, scale, np.asarray(center, float))
    vessels = []
    for name, path, radius, loc in segment_specs():
        pts = anatomy.to_patient(np.stack([nodes[n] for n in path]))
        # each vessel also varies on its own (hypoplastic A1/PComm are common variants)
        r = radius * calibre * float(rng.uniform(0.85, 1.15))
        vessels.append(Vessel(name, pts, r, loc))
    return Anatomy(tuple(vessels), rotation, scale, anatomy.center)


def _point_on(points: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Point and unit tangent at arc-length fraction ``t`` of polyline ``points`` (m, 3)."""
    seg = np.diff(points, axis=0)                                  # (m-1, 3)
    lengths = np.linalg.norm(seg, axis=1)
    s = t * lengths.sum()
    i = int(np.searchsorted(np.cumsum(lengths), s).clip(0, len(seg) - 1))
    s0 = lengths[:i].sum()
    u = (s - s0) / lengths[i]
    return points[i] + u * seg[i], seg[i] / lengths[i]


def sample_diameter(rng: np.random.Generator) -> float:
    """Aneurysm diameter (mm): log-normal around ``ANEURYSM_MEDIAN_MM``, clipped to ``ANEURYSM_DIAMETER_MM``."""
    return float(np.clip(rng.lognormal(np.log(ANEURYSM_MEDIAN_MM), ANEURYSM_LOG_SD), *ANEURYSM_DIAMETER_MM))


def place_aneurysm(anatomy: Anatomy, location: str, rng: np.random.Generator) -> Aneurysm:
    """A saccular aneurysm on a random vessel of ``location``, bulging perpendicular to the vessel."""
    candidates = [v for v in anatomy.vessels if v.location == location]
    lengths = np.array([np.linalg.norm(np.diff(v.points, axis=0), axis=1).sum() for v in candidates])
    vessel = candidates[int(rng.choice(len(candidates), p=lengths / lengths.sum()))]
    # stay away from the very ends so that the sac sits on this segment, not its neighbour
    t = float(rng.uniform(0.15, 0.85)) if len(vessel.points) > 2 or lengths.max() > 8 else 0.5
    base, tangent = _point_on(vessel.points, t)
    d = rng.normal(size=3)
    d -= d.dot(tangent) * tangent                                  # perpendicular to the vessel
    d /= np.linalg.norm(d)
    if location == BASILAR_TIP:  # at the bifurcation, pointing up along the basilar axis
        base, tangent = vessel.points[-1], vessel.points[-1] - vessel.points[-2]
        d = tangent / np.linalg.norm(tangent) + 0.4 * d
        d /= np.linalg.norm(d)
    # "larger than the vessel it sits on": the sac is wider than the parent artery
    diameter = max(sample_diameter(rng), 2.4 * vessel.radius)
    radius = min(diameter, ANEURYSM_DIAMETER_MM[1]) / 2
    center = base + d * (vessel.radius + 0.7 * radius)
    return Aneurysm(location, vessel.name, center, radius, base, 0.6 * max(radius, vessel.radius))
