"""The head around the arteries: scalp, skull, skull base, brain, CSF, neck, venous sinuses.

Everything is a primitive from ``willis.synth.render`` in canonical head coordinates (mm, origin at
the circle of Willis, x left, y posterior, z superior) mapped to the patient by the case's
``Anatomy.to_patient`` (anisotropic head scale, rotation, table position). Each list is in painting
order (later primitives cover earlier ones). ``background`` holds the large, smooth tissues (painted
on a coarse grid, ``willis.synth.acquire``); ``fine_background`` the small or thin ones beside the
arteries: anterior clinoids, the contrast-filled cavernous sinus around the infraclinoid ICA, the
dural venous sinuses. Calcifications and infundibula are in ``willis.synth.confounders``.
"""

from __future__ import annotations

import numpy as np

from willis.synth.anatomy import Anatomy, rotation_matrix
from willis.synth.render import Ellipsoid, tube

NECK_BOTTOM_Z = -250.0  # canonical z (mm) where the neck model ends
SINUS_RADIUS_MM = 3.5


def _ell(anat: Anatomy, center, radii, tissue, angles=(0.0, 0.0, 0.0), inner=()) -> Ellipsoid:
    """A canonical ellipsoid mapped to the patient; the head's anisotropic scale keeps it an ellipsoid.

    rotation @ diag(scale) @ R(angles) @ diag(radii) = U diag(s) V^T (SVD): the image of the unit
    ball is the ellipsoid with axes U and radii s. ``inner`` depths are mm (not scaled).
    """
    m = anat.rotation @ np.diag(anat.scale) @ rotation_matrix(angles) @ np.diag(np.asarray(radii, float))
    axes, radii_out, _ = np.linalg.svd(m)
    return Ellipsoid(anat.to_patient(center), radii_out, tissue, axes, tuple(inner))


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
    """Large head and neck tissues, back to front."""
    scalp, skull = anat.scalp_mm, anat.skull_mm
    p = [
        _ell(anat, (0, 15, -150), (52, 58, 112), "soft"),          # neck
        # scalp (fat, then soft tissue), calvarium and the intracranial contents: one nested ellipsoid
        _ell(anat, (0, 8, 12), (79, 99, 83), "fat",
             inner=((scalp / 2, "soft"), (scalp, "bone"), (scalp + skull, "brain"))),
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
            _ell(anat, (13 * s, 8, 27), (7, 24, 9), "csf", (0, 0, 8 * s)),             # lateral ventricle
        ]
    p.append(_ell(anat, (0, 2, -2), (24, 20, 8), "csf"))           # suprasellar cistern around the circle
    return p


def fine_background(anat: Anatomy) -> list:
    """Small or thin non-arterial structures beside the arteries (painted at full resolution)."""
    p = []
    for s in (1, -1):
        p += [
            _ell(anat, (12 * s, -8, -5), (3.5, 5, 3), "bone"),                         # anterior clinoid
            _ell(anat, (17 * s, -4, -20), (6, 11, 6), "vein"),                         # cavernous sinus
        ]
    radius = SINUS_RADIUS_MM * float(np.mean(anat.scale))
    for path in _sinus_paths():
        p += tube(anat.to_patient(path), radius, "vein")
    return p


def arteries(anat: Anatomy) -> list:
    p = []
    for v in anat.painted:
        p += tube(v.points, v.radius, "artery")
    return p
