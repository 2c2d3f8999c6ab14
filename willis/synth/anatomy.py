"""A circle-of-Willis-like arterial tree in LPS patient mm, with per-case variation, variants and loops.

The canonical tree is a set of named nodes (mm, origin at the centre of the circle of Willis, x to the
patient's left, y posterior, z superior) joined by polylines (``segment_specs``). Each segment carries
the ``train.csv`` location column it belongs to (``willis.labels.LOCATIONS``) or ``None`` (cervical
ICA: no label). A case (``sample_anatomy``, all from the label-blind anatomy stream):

* jitters every node, scales the head anisotropically (size and shape), rotates and shifts it;
* scales the calibre of the whole tree and of each vessel;
* wiggles every centre line (tortuosity: jittered intermediate points every ``STEP_MM``; nodes stay
  put, so the tree stays connected), and sometimes coils one vessel into a tight loop;
* applies the common circle-of-Willis variants at their rates (``Profile``): fetal PComm (large
  PComm, small P1), hypoplastic A1, absent AComm (kept as an unpainted centre line, so that an
  AComm-complex aneurysm still has a site).

Aneurysms are placed on this tree by ``willis.synth.lesion``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from willis.labels import LOCATIONS
from willis.synth.profiles import DEFAULT, Profile

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
    ("{s} ACA A1", ["ica_term", "a1", "acom"], 1.2, "ACA"),
    ("{s} ACA A2", ["acom", "a2a", "a2b", "a2c"], 1.2, "ACA"),
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
STEP_MM = 5.0             # centre lines get an intermediate point at least every STEP_MM (tortuosity, short capsules)
FETAL_PCOMM_RADIUS = (1.1, 1.5)   # mm: a fetal PComm is as wide as a P1 normally is ...
FETAL_P1_RADIUS = (0.4, 0.7)      # ... and its P1 is small
HYPOPLASTIC_A1_RADIUS = (0.35, 0.65)
LOOP_RADIUS_MM = (1.5, 3.0)
# vessels that may coil into a loop (tortuous M2, P2, A2, cervical ICA and vertebral, SCA)
LOOP_VESSELS = ("MCA M2 superior", "MCA M2 inferior", "PCA", "ACA A2", "cervical ICA", "extracranial vertebral", "SCA")
VARIANTS = ("fetal_pcomm_left", "fetal_pcomm_right", "hypoplastic_a1_left", "hypoplastic_a1_right", "absent_acomm",
            "loop")


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
    absent: bool = False        # a variant without this vessel: kept as a site, never painted


@dataclass(frozen=True)
class Anatomy:
    vessels: tuple[Vessel, ...]
    rotation: np.ndarray        # (3, 3) canonical -> patient
    scale: np.ndarray           # (3,) per-axis head scale (canonical axes)
    center: np.ndarray          # (3,) patient position of the canonical origin (circle of Willis)
    nodes: dict[str, np.ndarray] = field(default_factory=dict)   # node name -> (3,) patient mm
    scalp_mm: float = 6.0       # fat + soft tissue over the calvarium
    skull_mm: float = 6.0       # calvarium thickness
    variants: dict[str, bool] = field(default_factory=dict)      # VARIANTS -> present
    tortuosity_mm: float = 0.0

    def to_patient(self, canon) -> np.ndarray:
        """Canonical head coordinates (..., 3) -> patient LPS mm."""
        return (np.asarray(canon, float) * self.scale) @ self.rotation.T + self.center

    def vessel(self, name: str) -> Vessel:
        for v in self.vessels:
            if v.name == name:
                return v
        raise KeyError(f"no vessel {name!r} in this anatomy")

    @property
    def painted(self) -> tuple[Vessel, ...]:
        return tuple(v for v in self.vessels if not v.absent)


def rotation_matrix(angles_deg) -> np.ndarray:
    """Rotation about x, then y, then z by ``angles_deg`` (3,)."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def perpendicular(rng: np.random.Generator, tangent: np.ndarray) -> np.ndarray:
    """A random unit vector perpendicular to unit ``tangent`` (3,)."""
    d = rng.normal(size=3)
    d -= d.dot(tangent) * tangent
    return d / max(np.linalg.norm(d), 1e-9)


def wiggle(points: np.ndarray, amplitude: float, rng: np.random.Generator, step: float = STEP_MM) -> np.ndarray:
    """Polyline (m, 3) with intermediate points every <= ``step`` mm on a smooth sideways bend.

    Between two original points (the tree's nodes, which stay put) the centre line is displaced by a
    two-term sine series along the arc, ``sum_q a_q sin(pi q s / L)`` with sideways vectors
    ``a_q ~ N(0, (amplitude / q)^2)``: gentle curves, no kinks. Returns (m', 3), m' >= m.
    """
    out = [points[0]]
    for p0, p1 in zip(points[:-1], points[1:]):
        seg = p1 - p0
        length = float(np.linalg.norm(seg))
        n_mid = int(np.ceil(length / step)) - 1
        coeffs = rng.normal(0.0, 1.0, (2, 3)) * (amplitude / np.array([1.0, 2.0]))[:, None]   # (2, 3)
        if n_mid > 0:
            tangent = seg / length
            coeffs -= (coeffs @ tangent)[:, None] * tangent                  # sideways only
            t = np.arange(1, n_mid + 1) / (n_mid + 1)                       # (n_mid,)
            basis = np.sin(np.pi * t[:, None] * np.array([1.0, 2.0]))       # (n_mid, 2)
            out.extend(p0 + t[:, None] * seg + basis @ coeffs)
        out.append(p1)
    return np.asarray(out)


def coil(points: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Insert one full loop of ``radius`` mm at a random interior point of polyline (m, 3), m >= 3."""
    i = int(rng.integers(1, len(points) - 1))
    tangent = points[i + 1] - points[i - 1]
    tangent /= np.linalg.norm(tangent)
    normal = perpendicular(rng, tangent)
    theta = np.linspace(0, 2 * np.pi, 10)[1:-1]                             # 8 points round the loop
    loop = points[i] + radius * (np.sin(theta)[:, None] * tangent + (1 - np.cos(theta))[:, None] * normal)
    return np.concatenate([points[:i + 1], loop, points[i:]])


def sample_anatomy(rng: np.random.Generator, center, profile: Profile = DEFAULT) -> Anatomy:
    """One case's arterial tree (see the module docstring), canonical origin at patient ``center``."""
    u = rng.uniform
    canon = {k: v + rng.normal(0, profile.node_jitter_mm, 3) for k, v in canonical_nodes().items()}
    rotation = rotation_matrix(u(-profile.rotation_deg, profile.rotation_deg, 3))
    scale = u(*profile.head_scale) * u(*profile.head_aspect, 3)               # (3,) size x shape
    scalp, skull = float(u(*profile.scalp_mm)), float(u(*profile.skull_mm))
    calibre = float(u(*profile.calibre))
    tortuosity = float(u(*profile.tortuosity_mm))
    # variants: fixed number of draws, whatever the outcome
    fetal = {s: bool(rng.random() < profile.fetal_pcomm_rate) for s in ("L", "R")}
    hypo_side = "L" if rng.random() < 0.5 else "R"
    hypo = {s: bool(s == hypo_side) for s in ("L", "R")} if rng.random() < profile.hypoplastic_a1_rate else \
        {"L": False, "R": False}
    absent_acomm = bool(rng.random() < profile.absent_acomm_rate)
    looped = bool(rng.random() < profile.loop_rate)
    loop_choice = int(rng.integers(2 * len(LOOP_VESSELS)))
    loop_name = f"{'LR'[loop_choice % 2]} {LOOP_VESSELS[loop_choice // 2]}"

    anatomy = Anatomy((), rotation, scale, np.asarray(center, float))
    vessels = []
    for name, path, radius, loc in segment_specs():
        r = radius * calibre * float(u(*profile.vessel_calibre))
        side = name[0]
        if name.endswith("PComm") and fetal[side]:
            r = float(u(*FETAL_PCOMM_RADIUS))
        elif name.endswith("PCA P1") and fetal[side]:
            r = float(u(*FETAL_P1_RADIUS))
        elif name.endswith("ACA A1") and hypo[side]:
            r = float(u(*HYPOPLASTIC_A1_RADIUS))
        elif name.endswith("ACA A1") and any(hypo.values()):
            r *= 1.2                                # the other A1 feeds both A2s
        pts = wiggle(np.stack([canon[n] for n in path]), tortuosity, rng)
        if looped and name == loop_name:
            pts = coil(pts, float(u(*LOOP_RADIUS_MM)), rng)
        vessels.append(Vessel(name, anatomy.to_patient(pts), r, loc, absent=name == "AComm" and absent_acomm))
    variants = {"fetal_pcomm_left": fetal["L"], "fetal_pcomm_right": fetal["R"],
                "hypoplastic_a1_left": hypo["L"], "hypoplastic_a1_right": hypo["R"],
                "absent_acomm": absent_acomm, "loop": looped}
    nodes = {k: anatomy.to_patient(v) for k, v in canon.items()}
    return Anatomy(tuple(vessels), rotation, scale, anatomy.center, nodes, scalp, skull, variants, tortuosity)
