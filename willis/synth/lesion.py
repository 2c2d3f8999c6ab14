"""Saccular aneurysms: where they sit, how large they are, how bright they are (``lesion`` mode).

``realistic`` (the default) follows the real data (docs/synthetic.md, /work/shared/DATA.md):

* placement: mostly at bifurcations and junctions (AComm, MCA bifurcation, ICA-PComm junction, ICA
  terminus, basilar tip, A1/A2 junction, SCA origin, P1/P2 junction), some on a segment's wall
  (cavernous and ophthalmic ICA, M1, A1, vertebral, basilar trunk): ``SITES``, per location;
* diameter log-normal, median 5 mm, clipped to 2-12 mm (~70% within 3-7 mm); a small bleb on a wide
  ICA is allowed; the neck is 50-80% of the sac's radius;
* intensity: the parent artery's x U(0.9, 1.1) in every modality (CTA HU, TOF inflow, T1post
  enhancement, and the T2 flow void, dark like its artery); in TOF-MRA a sac wider than 7 mm loses
  signal in an inner core 40% of the time (slow flow).

``exaggerated`` (opt-in) is the old teaching default: median 7 mm, 4-12 mm, always wider than the
parent artery, 1.4-1.8x brighter than the artery (than the CSF in T2; CTA capped at 650 HU).

Everything here is drawn from the aneurysm stream: only the aneurysm's own voxels depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from willis.synth.anatomy import (ACOM, BASILAR_TIP, OTHER_POST, Anatomy, Vessel, perpendicular)
from willis.synth.render import Capsule, sphere

LESION_MODES = ("realistic", "exaggerated")


@dataclass(frozen=True)
class LesionMode:
    median_mm: float            # log-normal median diameter
    log_sd: float
    diameter_mm: tuple[float, float]   # clip range
    wider_than_parent: bool     # diameter >= WIDER_FACTOR x the parent artery's radius
    over_reference: tuple[float, float]  # sac / reference tissue (artery; CSF in T2 when exaggerated)
    t2_reference: str           # tissue the T2 sac is relative to
    hu_max: float | None        # CTA sac ceiling


MODES = {
    "realistic": LesionMode(5.0, 0.4, (2.0, 12.0), False, (0.9, 1.1), "artery", None),
    "exaggerated": LesionMode(7.0, 0.3, (4.0, 12.0), True, (1.4, 1.8), "csf", 650.0),
}
WIDER_FACTOR = 2.4              # exaggerated: diameter >= 2.4 x parent radius
NECK_FRACTION = (0.5, 0.8)      # neck radius / sac radius
OUTSIDE_FRACTION = 0.7          # sac centre at parent radius + 0.7 x sac radius from the parent's centre line
SLOW_FLOW_MIN_MM = 7.0          # TOF-MRA: sacs wider than this ...
SLOW_FLOW_RATE = 0.4            # ... lose signal in an inner core this often
SLOW_FLOW_CORE = (0.4, 0.7)     # core radius / sac radius
SLOW_FLOW_SIGNAL = (0.3, 0.6)   # core intensity / sac intensity

# location -> [(site, kind, labelled vessel, parent vessel, node or arc-length range, weight)].
# kind: "apex" = at ``node``, the end of the parent, pointing along its flow (a bifurcation or tip);
#       "branch" = on the parent's wall where the labelled vessel leaves it at ``node``;
#       "wall" = on the parent's wall at an arc-length fraction in the range;
#       "acomm" = on the AComm (or, when it is absent, at one A1/A2 junction), pointing forward-up.
# {s} is the location's side; locations without a side draw one (Other Posterior Circulation).
_SITES = {
    "Infraclinoid Internal Carotid Artery": [
        ("cavernous ICA", "wall", "{s} infraclinoid ICA", "{s} infraclinoid ICA", (0.45, 0.95), 1.0)],
    "Supraclinoid Internal Carotid Artery": [
        ("ICA terminus", "apex", "{s} supraclinoid ICA", "{s} supraclinoid ICA", "ica_term", 0.4),
        ("ophthalmic ICA", "wall", "{s} supraclinoid ICA", "{s} supraclinoid ICA", (0.05, 0.35), 0.35),
        ("supraclinoid ICA wall", "wall", "{s} supraclinoid ICA", "{s} supraclinoid ICA", (0.4, 0.8), 0.25)],
    "Middle Cerebral Artery": [
        ("MCA bifurcation", "apex", "{s} MCA M1", "{s} MCA M1", "mca_bif", 0.75),
        ("M1 segment", "wall", "{s} MCA M1", "{s} MCA M1", (0.2, 0.8), 0.25)],
    "Anterior Cerebral Artery": [
        ("A1/A2 junction", "apex", "{s} ACA A1", "{s} ACA A1", "acom", 0.3),
        ("distal A2", "wall", "{s} ACA A2", "{s} ACA A2", (0.35, 0.75), 0.5),
        ("A1 segment", "wall", "{s} ACA A1", "{s} ACA A1", (0.2, 0.8), 0.2)],
    "Posterior Communicating Artery": [
        ("ICA-PComm junction", "branch", "{s} PComm", "{s} supraclinoid ICA", "ica_sup", 1.0)],
    ACOM: [("AComm", "acomm", "AComm", "AComm", None, 1.0)],
    BASILAR_TIP: [("basilar tip", "apex", "basilar tip", "basilar tip", "basilar_tip", 1.0)],
    OTHER_POST: [
        ("SCA origin", "branch", "{s} SCA", "basilar trunk", "basilar_top", 0.3),
        ("P1/P2 junction", "apex", "{s} PCA P1", "{s} PCA P1", "p1p2", 0.2),
        ("vertebral / PICA", "wall", "{s} intracranial vertebral", "{s} intracranial vertebral", (0.2, 0.8), 0.3),
        ("basilar trunk", "wall", "basilar trunk", "basilar trunk", (0.2, 0.8), 0.2)],
}


def sites(location: str) -> list[tuple]:
    """The placement sites of ``location`` (a train.csv column), with ``{s}`` still unresolved."""
    for key in (location, location.removeprefix("Left ").removeprefix("Right ")):
        if key in _SITES:
            return _SITES[key]
    raise ValueError(f"no aneurysm sites for location {location!r}")


@dataclass(frozen=True)
class Aneurysm:
    location: str               # train.csv column
    vessel: str                 # the labelled segment of that column it belongs to
    parent: str                 # the segment whose wall it grows from
    site: str                   # e.g. "MCA bifurcation"
    center: np.ndarray          # (3,) sac centre, LPS mm
    radius: float               # sac radius, mm
    neck: np.ndarray            # (3,) point on the parent's centre line where the neck starts
    neck_radius: float
    value_factor: float         # sac intensity / reference tissue (``LesionMode``)
    core_radius: float = 0.0    # slow-flow core (TOF-MRA), 0 = none
    core_factor: float = 1.0    # core intensity / sac intensity


def sample_diameter(rng: np.random.Generator, mode: str = "realistic") -> float:
    """Aneurysm diameter (mm): log-normal around the mode's median, clipped to its range."""
    m = MODES[mode]
    return float(np.clip(rng.lognormal(np.log(m.median_mm), m.log_sd), *m.diameter_mm))


def point_on(points: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Point and unit tangent at arc-length fraction ``t`` of polyline ``points`` (m, 3)."""
    seg = np.diff(points, axis=0)                                  # (m-1, 3)
    lengths = np.linalg.norm(seg, axis=1)
    s = t * lengths.sum()
    i = int(np.searchsorted(np.cumsum(lengths), s).clip(0, len(seg) - 1))
    s0 = lengths[:i].sum()
    u = (s - s0) / lengths[i]
    return points[i] + u * seg[i], seg[i] / lengths[i]


def _direction(points: np.ndarray, at_end: bool, reach_mm: float = 4.0) -> np.ndarray:
    """Unit direction of a polyline (m, 3) over its first / last ``reach_mm`` (smooths the wiggle)."""
    pts = points[::-1] if at_end else points
    d = np.linalg.norm(pts - pts[0], axis=1)
    far = pts[min(int(np.searchsorted(d, reach_mm)), len(pts) - 1)]
    v = (pts[0] - far) if at_end else (far - pts[0])
    return v / max(np.linalg.norm(v), 1e-9)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(np.linalg.norm(v), 1e-9)


def _base_and_direction(anat: Anatomy, kind: str, vessel: Vessel, parent: Vessel, where, side: str,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """(neck base on the parent's centre line, unit sac direction, parent radius) of one site."""
    if kind == "apex":                     # the parent ends at ``where``: bulge along its flow
        flow = _direction(parent.points, at_end=True)
        return parent.points[-1], _unit(flow + 0.35 * perpendicular(rng, flow)), parent.radius
    if kind == "branch":                   # where the labelled vessel leaves the parent's wall
        base = vessel.points[0]
        i = int(np.argmin(np.linalg.norm(parent.points - base, axis=1)))
        tangent = _unit(parent.points[min(i + 1, len(parent.points) - 1)] - parent.points[max(i - 1, 0)])
        out = _direction(vessel.points, at_end=False)
        out = out - out.dot(tangent) * tangent
        return base, _unit(_unit(out) + 0.5 * perpendicular(rng, tangent)), parent.radius
    if kind == "wall":
        base, tangent = point_on(parent.points, float(rng.uniform(*where)))
        return base, perpendicular(rng, tangent), parent.radius
    if kind == "acomm":                    # forward and up, across the AComm or off one A1/A2 junction
        forward = anat.rotation @ np.array([0.0, -1.0, 0.6])
        if not vessel.absent:
            base, tangent = point_on(vessel.points, 0.5)
            radius = vessel.radius
        else:
            a1 = anat.vessel(f"{side} ACA A1")
            base, tangent, radius = a1.points[-1], _direction(a1.points, at_end=True), a1.radius
        d = forward - forward.dot(tangent) * tangent
        return base, _unit(_unit(d) + 0.4 * perpendicular(rng, tangent)), radius
    raise ValueError(f"unknown aneurysm site kind {kind!r}")


def place_aneurysm(anatomy: Anatomy, location: str, rng: np.random.Generator, mode: str = "realistic") -> Aneurysm:
    """One saccular aneurysm at ``location`` (a train.csv column), at a site drawn from ``SITES``."""
    m = MODES[mode]
    options = sites(location)
    w = np.array([o[-1] for o in options], float)
    site, kind, vessel_t, parent_t, where, _ = options[int(rng.choice(len(options), p=w / w.sum()))]
    side = "L" if location.startswith("Left ") else "R" if location.startswith("Right ") else "LR"[int(rng.integers(2))]
    vessel, parent = anatomy.vessel(vessel_t.format(s=side)), anatomy.vessel(parent_t.format(s=side))
    base, direction, parent_radius = _base_and_direction(anatomy, kind, vessel, parent, where, side, rng)
    diameter = sample_diameter(rng, mode)
    if m.wider_than_parent:
        diameter = min(max(diameter, WIDER_FACTOR * parent_radius), m.diameter_mm[1])
    radius = diameter / 2
    center = base + direction * (parent_radius + OUTSIDE_FRACTION * radius)
    neck_radius = radius * float(rng.uniform(*NECK_FRACTION))
    factor = float(rng.uniform(*m.over_reference))
    slow = bool(rng.random() < SLOW_FLOW_RATE)                    # drawn always: a fixed number of draws
    core_radius, core_factor = radius * float(rng.uniform(*SLOW_FLOW_CORE)), float(rng.uniform(*SLOW_FLOW_SIGNAL))
    if not (slow and mode == "realistic" and diameter > SLOW_FLOW_MIN_MM):
        core_radius, core_factor = 0.0, 1.0
    return Aneurysm(location, vessel.name, parent.name, site, center, radius, base, neck_radius, factor,
                    core_radius, core_factor)


def sac_values(aneurysms: list[Aneurysm], modality: str, values: dict[str, float], mode: str) -> dict[str, float]:
    """Tissue values ``aneurysm{i}`` (and ``aneurysm{i}_core``) of each sac, from the series' ``values``.

    The slow-flow core only exists in TOF-MRA (in CTA and T1post contrast fills the sac; in T2 the
    whole sac is already dark).
    """
    m = MODES[mode]
    ref = values[m.t2_reference] if modality == "MRI T2" else values["artery"]
    out = {}
    for i, a in enumerate(aneurysms):
        v = ref * a.value_factor
        if modality == "CTA" and m.hu_max is not None:
            v = min(v, m.hu_max)
        out[f"aneurysm{i}"] = v
        out[f"aneurysm{i}_core"] = v * (a.core_factor if modality == "MRA" else 1.0)
    return out


def primitives(aneurysms: list[Aneurysm], modality: str) -> list:
    """Neck, sac and (TOF-MRA) slow-flow core of each aneurysm, painted after the arteries."""
    p = []
    for i, a in enumerate(aneurysms):
        p.append(Capsule(a.neck, a.center, a.neck_radius, f"aneurysm{i}"))
        p.append(sphere(a.center, a.radius, f"aneurysm{i}"))
        if a.core_radius > 0 and modality == "MRA":
            p.append(sphere(a.center, a.core_radius, f"aneurysm{i}_core"))
    return p
