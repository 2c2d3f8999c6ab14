"""Bone-aware highlight: per-slice HU bone mask (threshold + morphology) and bone suppression.

In CTA both contrast-filled vessels (~150-600 HU) and bone (>700 HU, its partial-volume rim
lower) are bright, so a plain MIP hides the circle of Willis behind the skull base. Per slice:

1. ``bone = hu > bone_hu``;
2. an opening of radius ``OPEN_MM`` drops tiny bright specks (dense contrast in a small vessel is
   not bone); at coarse pixels (> 2 * OPEN_MM) there is no opening, so thin bone is never lost;
3. a dilation by ``dilate_mm`` also takes the partial-volume rim of the bone, so vessel-like
   200-600 HU edges next to bone are not stretched by the highlight window;
4. masked voxels become ``HU_AIR``; the max of these slices is a bone-suppressed angiogram.

The morphology is a box (rectangle) footprint, separable: ``dilate_box`` / ``erode_box`` do it with
shifted boolean slices (the reference; the tests check it equals ``skimage.morphology`` with
``footprint_rectangle``), ``bone_mask`` / ``suppress_bone`` with the compiled equivalent
(``kernels.bone_mask``: two passes per axis whatever the radius, ~0.1 ms on a 330 x 330 crop; the
tests check it equals the composition of ``erode_box`` and ``dilate_box``).
"""

from __future__ import annotations

import numpy as np

from willis.projections import kernels
from willis.projections.windows import HU_AIR

OPEN_MM = 1.0  # opening radius: bright specks narrower than ~2 mm (dense contrast, calcification) are not bone


def dilate_box(mask: np.ndarray, r0: int, r1: int) -> np.ndarray:
    """Binary dilation of a 2-D bool ``mask`` by a (2*r0+1, 2*r1+1) rectangle (new array)."""
    out = mask.copy()
    for s in range(1, r0 + 1):
        if s >= mask.shape[0]:
            break
        out[s:] |= mask[:-s]
        out[:-s] |= mask[s:]
    rows = out.copy()
    for s in range(1, r1 + 1):
        if s >= mask.shape[1]:
            break
        out[:, s:] |= rows[:, :-s]
        out[:, :-s] |= rows[:, s:]
    return out


def erode_box(mask: np.ndarray, r0: int, r1: int) -> np.ndarray:
    """Binary erosion by a (2*r0+1, 2*r1+1) rectangle; outside the image counts as True (as skimage)."""
    return ~dilate_box(~mask, r0, r1)


def bone_mask(hu: np.ndarray, bone_hu: float, dilate_px: tuple[int, int], open_px: tuple[int, int] = (0, 0)) -> np.ndarray:
    """bool mask of bone (and its rim) in one 2-D HU slice; radii per axis in pixels.

    ``hu > bone_hu``, opened by ``open_px`` (``erode_box``; the opening's dilation and the rim
    dilation in one ``dilate_box`` of radius open + rim), compiled (``kernels.bone_mask``)."""
    return kernels.bone_mask(hu, np.float32(bone_hu), int(open_px[0]), int(open_px[1]), int(dilate_px[0]), int(dilate_px[1]))


def suppress_bone(hu: np.ndarray, bone_hu: float, dilate_px: tuple[int, int], open_px: tuple[int, int] = (0, 0),
                  out: np.ndarray | None = None) -> np.ndarray:
    """Copy of the 2-D float32 HU slice with bone and its rim set to ``HU_AIR`` (into ``out`` if given)."""
    out = np.empty(hu.shape, np.float32) if out is None else out
    kernels.suppress_into(hu, np.float32(bone_hu), int(open_px[0]), int(open_px[1]), int(dilate_px[0]), int(dilate_px[1]),
                          np.float32(HU_AIR), out)
    return out
