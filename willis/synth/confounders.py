"""Label-blind look-alikes of an aneurysm: infundibula and calcifications (loops are in ``anatomy``).

* **Infundibula**: a funnel (< 3 mm wide at the wall) where a branch leaves its parent, most often
  the PComm from the ICA (``Profile.infundibulum_rate`` per side), less often the SCA from the
  basilar and the M2s from the MCA bifurcation (a third of that rate): the classic false positive
  at the very sites aneurysms prefer.
* **Calcifications**: choroid plexus (60%), pineal (50%) and plaques on the carotid-siphon walls
  (``Profile.siphon_plaques``); in CTA as bright as contrast.

All drawn from the anatomy stream after ``sample_anatomy``, a fixed number of draws per case.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from willis.synth.anatomy import Anatomy
from willis.synth.profiles import DEFAULT, Profile
from willis.synth.render import Capsule, sphere

INFUNDIBULUM_BASE_RADIUS = (0.9, 1.4)   # mm at the parent's wall: < 3 mm across
INFUNDIBULUM_LENGTH = (1.0, 2.5)        # mm beyond the parent's wall
# (branch vessel, parent vessel, rate multiplier); the funnel sits at the branch's first point
INFUNDIBULUM_SITES = [("{s} PComm", "{s} supraclinoid ICA", 1.0), ("{s} SCA", "basilar trunk", 1 / 3),
                      ("{s} MCA M2 superior", "{s} MCA M1", 1 / 3), ("{s} MCA M2 inferior", "{s} MCA M1", 1 / 3)]


@dataclass(frozen=True)
class Confounders:
    primitives: list
    infundibula: int
    calcifications: int


def _infundibulum(anat: Anatomy, branch: str, parent: str, rng: np.random.Generator) -> Capsule:
    b, p = anat.vessel(branch), anat.vessel(parent)
    start = b.points[0]
    reach = np.linalg.norm(b.points - start, axis=1)
    far = b.points[min(int(np.searchsorted(reach, 3.0)), len(b.points) - 1)]
    direction = (far - start) / max(np.linalg.norm(far - start), 1e-9)
    length = p.radius + float(rng.uniform(*INFUNDIBULUM_LENGTH))
    base = float(rng.uniform(*INFUNDIBULUM_BASE_RADIUS))
    return Capsule(start, start + direction * length, base, "artery", radius_b=min(b.radius, base))


def sample_confounders(anat: Anatomy, rng: np.random.Generator, profile: Profile = DEFAULT) -> Confounders:
    prims = []
    n_inf = 0
    for branch, parent, mult in INFUNDIBULUM_SITES:
        for side in ("L", "R"):
            present = rng.random() < profile.infundibulum_rate * mult
            funnel = _infundibulum(anat, branch.format(s=side), parent.format(s=side), rng)  # drawn always
            if present:
                prims.append(funnel)
                n_inf += 1
    calcs = []
    choroid, pineal = rng.random() < 0.6, rng.random() < 0.5
    sizes = rng.uniform(1.5, 3.0, 2), rng.uniform(1.0, 2.5)
    if choroid:
        for s, r in zip((1, -1), sizes[0]):
            calcs.append(sphere(anat.to_patient((14 * s, 26, 22)), float(r), "calc"))
    if pineal:
        calcs.append(sphere(anat.to_patient((0, 30, 12)), float(sizes[1]), "calc"))
    siphons = [v for v in anat.vessels if "infraclinoid" in v.name]
    for _ in range(int(rng.integers(profile.siphon_plaques[0], profile.siphon_plaques[1] + 1))):
        v = siphons[int(rng.integers(len(siphons)))]
        i = int(rng.integers(len(v.points) - 1))
        base = v.points[i] + rng.uniform(0, 1) * (v.points[i + 1] - v.points[i])
        d = rng.normal(size=3)
        calcs.append(sphere(base + d / np.linalg.norm(d) * v.radius, float(rng.uniform(0.6, 1.8)), "calc"))
    return Confounders(prims + calcs, n_inf, len(calcs))
