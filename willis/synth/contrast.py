"""Tissue intensities per modality, and the scanner's finishing touches (MR scale, bias field, noise).

CTA values are Hounsfield units. MR values are relative (artery ~1 in TOF) and then multiplied by an
arbitrary per-scanner scale, a smooth multiplicative bias field, plus Rician-like noise. Everything
here is drawn from the caller's *nuisance* stream, which never sees the label.
"""

from __future__ import annotations

import numpy as np

# CT domain constants (HU)
HU_AIR = -1000.0
HU_FAT = -90.0
HU_CSF = (0.0, 12.0)
HU_BRAIN = (30.0, 40.0)
HU_SOFT = (30.0, 60.0)
HU_CONTRAST_ARTERY = (200.0, 450.0)
HU_BONE = (700.0, 1500.0)
HU_CALCIFICATION = (300.0, 1200.0)
CT_NOISE_HU = (4.0, 18.0)

# Aneurysm sac brightness over the brightest tissue around it (the parent artery; CSF in T2). Real
# sacs roughly match their artery (T2: a flow void). The default skews brighter: slow, pooling
# contrast / flow-related enhancement in the sac, so that the sac is visible in a maximum
# projection, the only view the MIP/MIL models get (a dark T2 flow void never reaches a MIP).
ANEURYSM_OVER_ARTERY = (1.4, 1.8)
HU_ANEURYSM_MAX = 650.0   # CTA sac ceiling: stays below bone (700 HU), which the projections suppress

MR_SCALE = (300.0, 4000.0)        # arbitrary per-scanner intensity of a unit signal
MR_NOISE_FRACTION = (0.01, 0.04)  # noise s.d. as a fraction of the scale
MR_BIAS_AMPLITUDE = 0.3           # bias field spans about exp(+-0.3)

TISSUES = ("air", "soft", "fat", "bone", "brain", "csf", "artery", "vein", "calc", "aneurysm")


def sample_contrast(modality: str, rng: np.random.Generator) -> dict[str, float]:
    """Tissue -> intensity for one series of CSV ``modality`` (CTA, MRA, MRI T2, MRI T1post)."""
    u = rng.uniform
    if modality == "CTA":
        artery = u(*HU_CONTRAST_ARTERY)
        return {"air": HU_AIR, "soft": u(*HU_SOFT), "fat": HU_FAT, "bone": u(*HU_BONE), "brain": u(*HU_BRAIN),
                "csf": u(*HU_CSF), "artery": artery, "vein": artery * u(0.55, 0.9),
                "calc": u(*HU_CALCIFICATION),
                "aneurysm": min(artery * u(*ANEURYSM_OVER_ARTERY), HU_ANEURYSM_MAX)}
    if modality == "MRA":  # time of flight: inflowing arterial blood bright, veins saturated, bone dark
        artery = u(0.85, 1.0)
        return {"air": 0.0, "soft": u(0.25, 0.4), "fat": u(0.45, 0.6), "bone": 0.03, "brain": u(0.25, 0.35),
                "csf": u(0.08, 0.15), "artery": artery, "vein": u(0.12, 0.25), "calc": 0.05,
                "aneurysm": artery * u(*ANEURYSM_OVER_ARTERY)}
    if modality == "MRI T2":  # flow voids: arteries dark inside bright CSF; the sac: slow-flow signal
        csf = u(0.85, 1.0)
        return {"air": 0.0, "soft": u(0.3, 0.4), "fat": u(0.5, 0.6), "bone": 0.03, "brain": u(0.35, 0.5),
                "csf": csf, "artery": u(0.03, 0.08), "vein": u(0.03, 0.1), "calc": 0.05,
                "aneurysm": csf * u(*ANEURYSM_OVER_ARTERY)}
    if modality == "MRI T1post":  # gadolinium: arteries and (more) venous sinuses enhance, fat bright
        artery = u(0.55, 0.75)
        return {"air": 0.0, "soft": u(0.4, 0.5), "fat": u(0.8, 0.95), "bone": 0.05, "brain": u(0.35, 0.45),
                "csf": u(0.08, 0.15), "artery": artery, "vein": u(0.7, 0.9), "calc": 0.1,
                "aneurysm": artery * u(*ANEURYSM_OVER_ARTERY)}
    raise ValueError(f"unknown modality {modality!r}")


def background_value(modality: str, contrast: dict[str, float]) -> float:
    return contrast["air"]


def finish(vol: np.ndarray, modality: str, rng: np.random.Generator) -> np.ndarray:
    """Scanner effects, in place on ``vol`` (n, rows, cols) float32; returns it.

    CT: additive Gaussian noise (HU). MR: smooth bias field (a product of three 1-D quadratic
    profiles: no full-size field is ever built), arbitrary scale, Gaussian noise folded to a
    magnitude image (|signal + noise|, the high-SNR limit of Rician noise at half the cost).
    """
    if modality == "CTA":
        sigma = np.float32(rng.uniform(*CT_NOISE_HU))
        vol += rng.standard_normal(vol.shape, dtype=np.float32) * sigma
        return vol
    scale = rng.uniform(*MR_SCALE)
    profiles = []
    for size in vol.shape:
        t = np.linspace(-1, 1, size, dtype=np.float32)
        a, b = rng.uniform(-1, 1, 2) * MR_BIAS_AMPLITUDE / 2
        profiles.append(np.exp(a * t + b * (t * t - 1 / 3)).astype(np.float32))
    # (n,1,1) * (1,r,c): one full-size pass
    vol *= profiles[0][:, None, None] * np.float32(scale) * (profiles[1][:, None] * profiles[2][None, :])[None]
    sigma = np.float32(rng.uniform(*MR_NOISE_FRACTION) * scale)
    vol += rng.standard_normal(vol.shape, dtype=np.float32) * sigma
    np.abs(vol, out=vol)
    return vol
