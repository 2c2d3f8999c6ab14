"""Tissue intensities of one series, per modality, from the profile's ranges (``Profile.tissues``).

CTA values are Hounsfield units; MR values are relative (TOF artery ~1) before the scanner's
arbitrary scale (``willis.synth.scanner``). Drawn from the caller's *nuisance* stream, which never
sees the label; the sacs' own values come from ``willis.synth.lesion.sac_values``.
"""

from __future__ import annotations

import numpy as np

from willis.synth.profiles import DEFAULT, Profile

HU_AIR = -1000.0
HU_BONE_SUPPRESSION = 700.0  # the projections suppress bone above this: arteries and sacs stay below
TISSUES = ("air", "soft", "fat", "bone", "brain", "csf", "artery", "vein", "calc")


def sample_contrast(modality: str, rng: np.random.Generator, profile: Profile = DEFAULT) -> dict[str, float]:
    """Tissue -> intensity for one series of CSV ``modality`` (CTA, MRA, MRI T2, MRI T1post).

    A fixed number of draws in ``TISSUES`` order, whatever the modality. CTA veins are a fraction of
    the artery (venous contamination, ``Profile.ct_vein_over_artery``).
    """
    if modality not in profile.tissues:
        raise ValueError(f"unknown modality {modality!r}; expected one of {list(profile.tissues)}")
    ranges = profile.tissues[modality]
    draws = {t: float(rng.uniform(0, 1)) for t in TISSUES}
    out = {}
    for t in TISSUES:
        if t == "vein" and modality == "CTA":
            continue
        lo, hi = ranges[t]
        out[t] = lo + draws[t] * (hi - lo)
    if modality == "CTA":
        out["vein"] = out["artery"] * float(np.interp(draws["vein"], [0, 1], profile.ct_vein_over_artery))
    return out
