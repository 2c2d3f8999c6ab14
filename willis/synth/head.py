"""The head around the arteries: scalp, skull, skull base, brain, CSF, neck, venous sinuses, calcifications.

Everything is a primitive from ``willis.synth.render`` in canonical head coordinates (mm, origin at
the circle of Willis, x left, y posterior, z superior) mapped to the patient by the case's
``Anatomy.to_patient``. The list is in painting order (later primitives cover earlier ones).
Distractors that make the task non-trivial: skull-base bone and anterior clinoids beside the carotid
siphon, the contrast-filled cavernous sinus around the infraclinoid ICA, dural venous sinuses, and
calcifications (choroid plexus, pineal, carotid-wall) that are as bright as contrast in CTA.
"""

from __future__ import annotations

import numpy as np

from willis.synth.anatomy import Anatomy, Aneurysm, rotation_matrix
from willis.synth.render import Capsule, Ellipsoid, sphere, tube

NECK_BOTTOM_Z = -250.0  # canonical z (mm) where the neck model ends


def _ell(anat: Anatomy, center, radii, tissue, angles=(0.0, 0.0, 0.0), inner=()) -> Ellipsoid:
    axes = anat.rotation @ rotation_matrix(angles)
    inner = tuple((depth * anat.scale, t) for depth, t in inner)
    return Ellipsoid(anat.to_patient(center), np.asarray(radii, float) * anat.scale, tissue, axes, inner)


def _mirror(center):
    return (-center[0], center[1], center[2])


def _sinus_paths() -> list[np.ndarray]:
    """Dural venous sinuses as canonical polylines: superior sagittal, straight, transverse-sigmoid-jugular."""
    theta = np.deg2rad(np.linspace(150, -20, 12))
    sss = np.stack([np.zeros_like(theta), 8 + 83 * np.cos(theta), 15 + 58 * np.sin(theta)], 1)
    straight = np.array([[0, 30, 25], [0, 60, 12], sss[-1]])
    paths = [sss, straight]
    for s in (1, -1):
        paths.append(np.array([sss[-1], [40 * s, 74, -12], [56 * s, 42, -25], [40 * s, 26, -45],
                               [30 * s, 20, -70], [28 * s, 18, NECK_BOTTOM_Z]], float))
    return paths


def background(anat: Anatomy) -> list:
    """Head and neck tissues, back to front."""
    p = [
        _ell(anat, (0, 15, -150), (52, 58, 112), "soft"),          # neck
        # scalp (fat, then soft tissue), calvarium and the intracranial contents: one nested ellipsoid
        _ell(anat, (0, 8, 12), (79, 99, 83), "fat", inner=((3.0, "soft"), (6.0, "bone"), (12.0, "brain"))),
        _ell(anat, (0, -45, -22), (45, 32, 5), "bone"),            # anterior cranial fossa floor
        _ell(anat, (0, -45, -58), (46, 36, 32), "soft"),           # face, below the fossa floor
        _ell(anat, (0, -50, -48), (22, 16, 16), "air"),            # paranasal sinuses
        _ell(anat, (0, -4, -30), (12, 11, 9), "air"),              # sphenoid sinus, under the sella
        _ell(anat, (0, 62, -47), (50, 30, 9), "bone", (-15, 0, 0)),  # occipital skull base
        _ell(anat, (0, 10, -32), (9, 6, 19), "bone", (25, 0, 0)),  # clivus, in front of the basilar artery
        _ell(anat, (0, 7, -14), (7, 2.5, 6), "bone"),              # dorsum sellae
        _ell(anat, (0, 35, -150), (14, 12, 96), "bone"),           # cervical spine
        _ell(anat, (0, 38, -150), (6, 6, 100), "csf"),             # spinal canal
        _ell(anat, (0, -8, -140), (9, 7, 70), "air"),              # airway
    ]
    for s in (1, -1):
        p += [
            _ell(anat, (36 * s, 2, -40), (24, 30, 6), "bone"),                         # middle fossa floor
            _ell(anat, (28 * s, 12, -38), (24, 8, 8), "bone", (0, 0, 40 * s)),         # petrous ridge
            _ell(anat, (12 * s, -8, -5), (3.5, 5, 3), "bone"),                         # anterior clinoid
            _ell(anat, (17 * s, -4, -20), (6, 11, 6), "vein"),                         # cavernous sinus
            _ell(anat, (13 * s, 8, 27), (7, 24, 9), "csf", (0, 0, 8 * s)),             # lateral ventricle
        ]
    p.append(_ell(anat, (0, 2, -2), (24, 20, 8), "csf"))           # suprasellar cistern around the circle
    for path in _sinus_paths():
        p += tube(anat.to_patient(path), 3.5 * anat.scale, "vein")
    return p


def calcifications(anat: Anatomy, rng: np.random.Generator) -> list:
    """Calcified foci: choroid plexus, pineal and 0-3 plaques on the carotid siphon walls (label-blind)."""
    p = []
    if rng.random() < 0.6:
        for s in (1, -1):
            p.append(sphere(anat.to_patient((14 * s, 26, 22)), rng.uniform(1.5, 3.0), "calc"))
    if rng.random() < 0.5:
        p.append(sphere(anat.to_patient((0, 30, 12)), rng.uniform(1.0, 2.5), "calc"))
    siphons = [v for v in anat.vessels if "infraclinoid" in v.name]
    for _ in range(int(rng.integers(0, 4))):
        v = siphons[int(rng.integers(len(siphons)))]
        i = int(rng.integers(len(v.points) - 1))
        base = v.points[i] + rng.uniform(0, 1) * (v.points[i + 1] - v.points[i])
        d = rng.normal(size=3)
        p.append(sphere(base + d / np.linalg.norm(d) * v.radius, rng.uniform(0.8, 1.6), "calc"))
    return p


def arteries(anat: Anatomy) -> list:
    p = []
    for v in anat.vessels:
        p += tube(v.points, v.radius, "artery")
    return p


def aneurysm_primitives(aneurysms: list[Aneurysm]) -> list:
    """Neck then sac for each aneurysm (painted last, after the arteries)."""
    p = []
    for a in aneurysms:
        p.append(Capsule(a.neck, a.center, a.neck_radius, "aneurysm"))
        p.append(sphere(a.center, a.radius, "aneurysm"))
    return p
