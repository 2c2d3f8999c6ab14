"""The scanner's finishing touches on a noiseless volume: reconstruction blur, bias field, scale, noise.

Per series, ``sample_scanner`` draws (from the label-blind nuisance stream, profile ranges):

* CT: white Gaussian noise, then the reconstruction kernel (a separable Gaussian blur of sigma
  ``blur_mm``), so that soft kernels give smooth, correlated noise and sharp kernels grainy noise.
  The noise is scaled so that its s.d. *after* the blur is ``noise`` HU;
* MR: blur (k-space apodisation), a smooth multiplicative bias field (a product of three 1-D
  profiles: no full-size field is built), an arbitrary scale, Gaussian noise folded to a magnitude
  image (|signal + noise|, the high-SNR limit of Rician noise at half the cost).

Noise is drawn and added in chunks of slices: no full-volume temporary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from willis.synth.geometry import Geometry
from willis.synth.profiles import DEFAULT, Profile

MIN_SIGMA_VOXELS = 0.25   # a blur narrower than this along an axis is skipped (its effect is below the noise)
TRUNCATE = 3.0            # Gaussian kernel radius in sigmas
CHUNK_VOXELS = 1 << 21


@dataclass(frozen=True)
class Scanner:
    blur_mm: float                    # Gaussian sigma of the reconstruction / apodisation blur
    noise: float                      # CT: HU s.d. after the blur; MR: s.d. as a fraction of ``scale``
    scale: float = 1.0                # MR: intensity of a unit signal
    bias: tuple[float, ...] = ()      # MR: (linear, quadratic) bias coefficients per axis, 6 values


def sample_scanner(modality: str, rng: np.random.Generator, profile: Profile = DEFAULT) -> Scanner:
    """One series' scanner effects; a fixed number of draws whatever the modality."""
    u = rng.uniform
    ct_blur, mr_blur = u(*profile.ct_blur_mm), u(*profile.mr_blur_mm)
    ct_noise, mr_noise = u(*profile.ct_noise_hu), u(*profile.mr_noise_fraction)
    scale, amplitude = u(*profile.mr_scale), u(*profile.mr_bias)
    bias = tuple(float(v) for v in u(-1, 1, 6) * amplitude / 2)
    if modality == "CTA":
        return Scanner(float(ct_blur), float(ct_noise))
    return Scanner(float(mr_blur), float(mr_noise), float(scale), bias)


def blur_sigmas(geom: Geometry, blur_mm: float) -> tuple[float, float, float]:
    """Gaussian sigma in voxels along (k, i, j); 0 where below ``MIN_SIGMA_VOXELS``."""
    spacing = (geom.slice_spacing, *geom.pixel_spacing)
    return tuple(float(blur_mm / s) if blur_mm / s >= MIN_SIGMA_VOXELS else 0.0 for s in spacing)


def noise_gain(sigmas) -> float:
    """S.d. of unit white noise after the separable blur of ``sigmas`` (voxels): sqrt(prod sum(kernel^2))."""
    gain = 1.0
    for s in sigmas:
        if s > 0:
            radius = int(TRUNCATE * s + 0.5)
            delta = np.zeros(2 * radius + 1)
            delta[radius] = 1.0
            kernel = gaussian_filter1d(delta, s, truncate=TRUNCATE, mode="constant")
            gain *= float(np.sum(kernel ** 2))
    return float(np.sqrt(gain))


def _blur(vol: np.ndarray, sigmas) -> None:
    for axis, s in enumerate(sigmas):
        if s > 0:
            gaussian_filter1d(vol, s, axis=axis, output=vol, truncate=TRUNCATE, mode="nearest")


def _add_noise(vol: np.ndarray, sigma: float, rng: np.random.Generator) -> None:
    step = max(1, CHUNK_VOXELS // (vol.shape[1] * vol.shape[2]))
    s = np.float32(sigma)
    for k0 in range(0, vol.shape[0], step):
        block = vol[k0:k0 + step]
        block += rng.standard_normal(block.shape, dtype=np.float32) * s


def finish(vol: np.ndarray, geom: Geometry, modality: str, scanner: Scanner, rng: np.random.Generator) -> np.ndarray:
    """Apply ``scanner`` to ``vol`` (n, rows, cols) float32 in place; returns it."""
    sigmas = blur_sigmas(geom, scanner.blur_mm)
    if modality == "CTA":
        _add_noise(vol, scanner.noise / noise_gain(sigmas), rng)
        _blur(vol, sigmas)
        return vol
    _blur(vol, sigmas)
    profiles = []
    for size, (a, b) in zip(vol.shape, np.reshape(scanner.bias, (3, 2))):
        t = np.linspace(-1, 1, size, dtype=np.float32)
        profiles.append(np.exp(a * t + b * (t * t - 1 / 3)).astype(np.float32))
    in_plane = (profiles[1][:, None] * profiles[2][None, :]) * np.float32(scanner.scale)   # (rows, cols)
    for k in range(vol.shape[0]):
        vol[k] *= in_plane * profiles[0][k]
    _add_noise(vol, scanner.noise * scanner.scale, rng)
    np.abs(vol, out=vol)
    return vol
