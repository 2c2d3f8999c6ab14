"""Generator profiles: every nuisance range the synthetic data is randomised over, in one table.

``DEFAULT`` is what the pipeline trains on. ``HELDOUT`` is a differently configured generator for a
transfer check that nobody trains or selects on: other matrix/spacing and orientation mixes, other
modality mix, other contrast and noise levels, another circle-of-Willis variant mix, and its own
random streams and UIDs (``stream_salt``), so that even the same ``seed`` gives other patients.
Nothing here depends on the label: profiles feed only the nuisance and anatomy streams
(``willis.synth.plan``). docs/synthetic.md has the table of what differs.

    >>> from willis.synth.profiles import profile
    >>> profile("heldout").acquisition["CTA"].pixel_mm
"""

from __future__ import annotations

from dataclasses import dataclass, field

Range = tuple[float, float]


@dataclass(frozen=True)
class Acquisition:
    """How one CSV modality is acquired (drawn per series; the params caps coarsen it afterwards)."""

    plane: dict[str, float]          # axial / coronal / sagittal mix
    head_and_neck: float             # fraction of series covering the neck as well
    pixel_mm: Range                  # in-plane pixel size, drawn uniformly (before ``max_matrix``)
    slice_mm: Range                  # slice spacing = thickness, drawn uniformly (before ``max_slices``)
    fov_mm: Range                    # in-plane field of view (longer side)
    rect_rate: float                 # fraction with a rectangular matrix (rows < cols)
    rect_aspect: Range = (0.75, 0.9)  # rows / cols of a rectangular matrix


@dataclass(frozen=True)
class Profile:
    name: str
    stream_salt: tuple[int, ...]     # appended to the seed of every random stream and to the UID parts
    modality_mix: dict[str, float]
    acquisition: dict[str, Acquisition]
    # tissue intensity ranges per modality (CTA in HU; MR relative, arterial TOF signal ~1)
    tissues: dict[str, dict[str, Range]]
    ct_vein_over_artery: Range       # venous contamination of a CTA (0.3: arterial phase, 1.0: late)
    ct_noise_hu: Range               # image noise s.d. after the reconstruction kernel
    ct_blur_mm: Range                # reconstruction-kernel blur, Gaussian sigma (sharp ... soft kernel)
    mr_scale: Range                  # arbitrary per-scanner intensity of a unit signal
    mr_noise_fraction: Range         # noise s.d. / scale
    mr_bias: Range                   # multiplicative bias field amplitude (log units, per axis)
    mr_blur_mm: Range
    # head and vessels
    rotation_deg: float              # patient rotation, uniform in +-this about each axis
    head_scale: Range                # overall head size
    head_aspect: Range               # extra per-axis factor: head shape
    scalp_mm: Range                  # fat + soft tissue over the skull
    skull_mm: Range                  # calvarium thickness
    node_jitter_mm: float            # per-node anatomical variation (s.d.)
    calibre: Range                   # per-case vessel calibre
    vessel_calibre: Range            # each vessel on top of that
    tortuosity_mm: Range             # per-case amplitude of the wiggle of every centre line
    fetal_pcomm_rate: float          # per side: large PComm, small P1
    hypoplastic_a1_rate: float       # per case, one side
    absent_acomm_rate: float         # per case
    loop_rate: float                 # per case: a tight vessel loop somewhere on the tree
    infundibulum_rate: float         # per PComm origin; other branch origins get a third of it
    siphon_plaques: tuple[int, int]  # calcified plaques on the carotid siphons, uniform count [lo, hi]
    encoding_mix: dict[str, float] = field(default_factory=lambda: dict(ENCODING_MIX))
    mr_multiframe_rate: float = 0.15
    ct_multiframe_rate: float = 0.03


# deflate is rare (and slow to write: zlib at pydicom's level on noisy 16-bit pixels); real data has none
ENCODING_MIX = {"explicit": 0.6, "implicit": 0.15, "big_endian": 0.03, "deflate": 0.02, "rle": 0.14, "jpeg2000": 0.06}
_AXIAL_CT = {"axial": 0.94, "coronal": 0.03, "sagittal": 0.03}
_AXIAL_MR = {"axial": 0.8, "coronal": 0.08, "sagittal": 0.12}

# Default tissue ranges. CTA: HU. MRA (TOF): inflowing arterial blood bright, veins saturated, fat
# brighter than brain. T2: CSF bright, arteries flow voids. T1post: arteries and (more) veins enhance.
_TISSUES = {
    "CTA": {"air": (-1000, -1000), "soft": (30, 60), "fat": (-100, -80), "bone": (700, 1500), "brain": (28, 42),
            "csf": (0, 12), "artery": (200, 500), "calc": (300, 1200)},
    "MRA": {"air": (0, 0), "soft": (0.25, 0.4), "fat": (0.45, 0.6), "bone": (0.02, 0.05), "brain": (0.25, 0.35),
            "csf": (0.08, 0.15), "artery": (0.85, 1.0), "vein": (0.12, 0.25), "calc": (0.03, 0.08)},
    "MRI T2": {"air": (0, 0), "soft": (0.3, 0.4), "fat": (0.5, 0.6), "bone": (0.02, 0.05), "brain": (0.35, 0.5),
               "csf": (0.85, 1.0), "artery": (0.03, 0.08), "vein": (0.03, 0.1), "calc": (0.03, 0.08)},
    "MRI T1post": {"air": (0, 0), "soft": (0.4, 0.5), "fat": (0.8, 0.95), "bone": (0.03, 0.07),
                   "brain": (0.35, 0.45), "csf": (0.08, 0.15), "artery": (0.55, 0.75), "vein": (0.7, 0.9),
                   "calc": (0.06, 0.12)},
}

DEFAULT = Profile(
    name="default",
    stream_salt=(),
    modality_mix={"CTA": 0.42, "MRA": 0.29, "MRI T2": 0.22, "MRI T1post": 0.07},
    acquisition={
        "CTA": Acquisition(_AXIAL_CT, 0.2, pixel_mm=(0.4, 0.6), slice_mm=(0.5, 1.25), fov_mm=(170, 220), rect_rate=0.1),
        "MRA": Acquisition(_AXIAL_MR, 0.1, pixel_mm=(0.3, 0.6), slice_mm=(0.5, 1.2), fov_mm=(160, 210), rect_rate=0.4),
        "MRI T2": Acquisition(_AXIAL_MR, 0.0, pixel_mm=(0.4, 0.9), slice_mm=(3.0, 5.0), fov_mm=(180, 230), rect_rate=0.4),
        "MRI T1post": Acquisition(_AXIAL_MR, 0.0, pixel_mm=(0.5, 1.0), slice_mm=(1.0, 4.5), fov_mm=(190, 240),
                                  rect_rate=0.4),
    },
    tissues=_TISSUES,
    ct_vein_over_artery=(0.3, 1.0),
    ct_noise_hu=(5.0, 20.0),
    ct_blur_mm=(0.25, 0.8),
    mr_scale=(300.0, 4000.0),
    mr_noise_fraction=(0.01, 0.05),
    mr_bias=(0.0, 0.35),
    mr_blur_mm=(0.15, 0.5),
    rotation_deg=15.0,
    head_scale=(0.88, 1.12),
    head_aspect=(0.94, 1.06),
    scalp_mm=(3.0, 7.0),
    skull_mm=(4.0, 9.0),
    node_jitter_mm=1.5,
    calibre=(0.8, 1.2),
    vessel_calibre=(0.85, 1.15),
    tortuosity_mm=(0.0, 1.5),
    fetal_pcomm_rate=0.15,
    hypoplastic_a1_rate=0.08,
    absent_acomm_rate=0.05,
    loop_rate=0.25,
    infundibulum_rate=0.12,
    siphon_plaques=(0, 4),
)

# The transfer check: every nuisance range moved, still within what real scanners produce.
HELDOUT = Profile(
    name="heldout",
    stream_salt=(7771,),
    modality_mix={"CTA": 0.32, "MRA": 0.34, "MRI T2": 0.22, "MRI T1post": 0.12},
    acquisition={
        "CTA": Acquisition({"axial": 0.84, "coronal": 0.08, "sagittal": 0.08}, 0.35, pixel_mm=(0.45, 0.8),
                           slice_mm=(0.6, 2.0), fov_mm=(200, 260), rect_rate=0.2),
        "MRA": Acquisition({"axial": 0.7, "coronal": 0.12, "sagittal": 0.18}, 0.2, pixel_mm=(0.35, 0.7),
                           slice_mm=(0.7, 1.5), fov_mm=(160, 240), rect_rate=0.5),
        "MRI T2": Acquisition({"axial": 0.65, "coronal": 0.2, "sagittal": 0.15}, 0.0, pixel_mm=(0.5, 1.0),
                              slice_mm=(2.5, 6.0), fov_mm=(200, 250), rect_rate=0.5),
        "MRI T1post": Acquisition({"axial": 0.6, "coronal": 0.15, "sagittal": 0.25}, 0.0, pixel_mm=(0.6, 1.1),
                                  slice_mm=(0.9, 5.0), fov_mm=(190, 260), rect_rate=0.5),
    },
    tissues={
        "CTA": {**_TISSUES["CTA"], "artery": (160, 420), "bone": (800, 1800), "brain": (25, 45)},
        "MRA": {**_TISSUES["MRA"], "artery": (0.7, 0.95), "brain": (0.3, 0.42), "fat": (0.5, 0.7)},
        "MRI T2": {**_TISSUES["MRI T2"], "brain": (0.42, 0.6), "csf": (0.75, 0.95), "artery": (0.05, 0.12)},
        "MRI T1post": {**_TISSUES["MRI T1post"], "artery": (0.45, 0.7), "vein": (0.6, 0.95), "brain": (0.38, 0.5)},
    },
    ct_vein_over_artery=(0.5, 1.1),
    ct_noise_hu=(10.0, 30.0),
    ct_blur_mm=(0.4, 1.0),
    mr_scale=(100.0, 8000.0),
    mr_noise_fraction=(0.02, 0.07),
    mr_bias=(0.2, 0.5),
    mr_blur_mm=(0.3, 0.7),
    rotation_deg=20.0,
    head_scale=(0.85, 1.15),
    head_aspect=(0.9, 1.1),
    scalp_mm=(2.5, 9.0),
    skull_mm=(3.5, 11.0),
    node_jitter_mm=2.0,
    calibre=(0.7, 1.3),
    vessel_calibre=(0.8, 1.2),
    tortuosity_mm=(0.5, 2.5),
    fetal_pcomm_rate=0.25,
    hypoplastic_a1_rate=0.15,
    absent_acomm_rate=0.1,
    loop_rate=0.4,
    infundibulum_rate=0.2,
    siphon_plaques=(1, 6),
    encoding_mix={"explicit": 0.45, "implicit": 0.2, "big_endian": 0.02, "deflate": 0.05, "rle": 0.2, "jpeg2000": 0.08},
    mr_multiframe_rate=0.3,
    ct_multiframe_rate=0.1,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (DEFAULT, HELDOUT)}


def profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"unknown synthesis profile {name!r}; expected one of {list(PROFILES)}")
    return PROFILES[name]
