"""What each synthetic series will be, decided up front from independent random streams.

No label leaks by construction: the label stream (which series are positive, where their aneurysms
are) is one ``numpy`` stream of its own; every nuisance choice (modality, orientation, pixel size,
spacing, field of view, coverage, encoding, storage, file order, patient, breakage) comes from
other streams that are seeded from ``(seed, profile salt, stream id, series index)`` only, so they
cannot see the label. The ranges come from the generator profile (``willis.synth.profiles``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from willis.synth.anatomy import LOCATION_WEIGHTS
from willis.synth.dicom_writer import uid_from
from willis.synth.profiles import DEFAULT, Profile

# stream ids: np.random.default_rng(stream_seed(seed, profile, STREAM, index))
LABEL_STREAM, NUISANCE_STREAM, ANATOMY_STREAM, ANEURYSM_STREAM, NOISE_STREAM, STRUCTURE_STREAM = range(1, 7)

TWO_ANEURYSM_RATE = 0.2      # positives with a second aneurysm (real: ~1.2 localizers per positive)
SECOND_SERIES_RATE = 0.15    # series that belong to the previous series' patient
BROKEN_KINDS = ("truncated_file", "stray_file", "no_pixel_data", "mixed_shapes", "missing_folder", "not_in_csv")
JPEG2000_MAX_SLICES = 80     # JPEG 2000 encoding is slow: larger series fall back to RLE
CT_STORAGE = [  # (signed, slope, intercept), weight
    ((True, 1.0, -1024.0), 0.35), ((False, 1.0, -1024.0), 0.3), ((True, 1.0, 0.0), 0.25),
    ((True, 0.5, -1024.0), 0.05), ((False, 2.0, -3000.0), 0.05),
]


def stream_seed(seed: int, profile: Profile, stream: int, *index: int) -> list[int]:
    """Seed sequence of one random stream: the profile's salt keeps its draws apart from the default's."""
    return [seed, *profile.stream_salt, stream, *index]


def rng_for(seed: int, profile: Profile, stream: int, *index: int) -> np.random.Generator:
    return np.random.default_rng(stream_seed(seed, profile, stream, *index))


@dataclass(frozen=True)
class SeriesPlan:
    index: int
    series_uid: str
    study_uid: str
    patient_id: str
    age: int
    sex: str
    modality: str                   # CSV modality: CTA, MRA, MRI T2, MRI T1post
    locations: tuple[str, ...]      # aneurysm locations, () for a negative series
    # nuisance (acquisition and storage)
    plane: str                      # axial | coronal | sagittal
    head_and_neck: bool
    pixel_mm: float                 # drawn in-plane pixel size (``max_matrix`` may coarsen it)
    aspect: float                   # rows / cols (<= 1): the field of view's shorter side / longer side
    fov_mm: float                   # in-plane field of view along the longer side (at least)
    slice_spacing: float            # drawn slice spacing = thickness (``max_slices`` may coarsen it)
    margins_mm: tuple[float, float] # extra coverage below / above the labelled arteries along the normal
    center_offset: tuple[float, float, float]  # patient position of the head (scanner table offsets)
    encoding: str
    signed: bool
    slope: float
    intercept: float
    multiframe: bool
    shuffle_files: bool
    instance_numbers: str
    broken: str | None              # one of BROKEN_KINDS or None
    profile: str = "default"        # the generator profile (``willis.synth.profiles``)

    @property
    def positive(self) -> bool:
        return bool(self.locations)

    @property
    def dicom_modality(self) -> str:
        return "CT" if self.modality == "CTA" else "MR"


def _choice(rng: np.random.Generator, options: dict):
    keys = list(options)
    p = np.asarray(list(options.values()), float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def draw_labels(n: int, positive_rate: float, seed: int, profile: Profile = DEFAULT) -> list[tuple[str, ...]]:
    """Aneurysm locations per series (empty tuple = negative), from the label stream only."""
    rng = rng_for(seed, profile, LABEL_STREAM)
    n_pos = int(round(positive_rate * n))
    positive = np.zeros(n, bool)
    positive[rng.permutation(n)[:n_pos]] = True
    names = list(LOCATION_WEIGHTS)
    w = np.array([LOCATION_WEIGHTS[k] for k in names], float)
    out = []
    for pos in positive:
        k = 0 if not pos else (2 if rng.random() < TWO_ANEURYSM_RATE else 1)
        idx = rng.choice(len(names), size=k, replace=False, p=w / w.sum())
        out.append(tuple(names[i] for i in sorted(int(j) for j in idx)))  # names are in LOCATIONS order
    return out


def draw_nuisance(seed: int, index: int, profile: Profile = DEFAULT) -> dict:
    """Acquisition/storage choices of series ``index``: a function of (seed, profile, index), never of its label.

    A fixed number of draws whatever the outcomes; pixel size, slice spacing and field of view are
    drawn uniformly from the modality's ranges (``Profile.acquisition``).
    """
    rng = rng_for(seed, profile, NUISANCE_STREAM, index)
    u = rng.uniform
    modality = _choice(rng, profile.modality_mix)
    acq = profile.acquisition[modality]
    plane = _choice(rng, acq.plane)
    head_and_neck = bool(rng.random() < acq.head_and_neck)
    pixel = float(np.round(u(*acq.pixel_mm), 3))
    spacing = float(np.round(u(*acq.slice_mm), 3))
    fov = float(np.round(u(*acq.fov_mm), 1))
    rect, aspect = rng.random() < acq.rect_rate, float(np.round(u(*acq.rect_aspect), 3))
    storage, r_mr, slope_mr = int(rng.choice(len(CT_STORAGE), p=[w for _, w in CT_STORAGE])), rng.random(), u(0.5, 4.0)
    if modality == "CTA":
        signed, slope, intercept = CT_STORAGE[storage][0]
    elif r_mr < 0.85:  # most MR: unsigned, no rescale; some with a (Philips-like) slope; a few signed
        signed, slope, intercept = False, 1.0, 0.0
    elif r_mr < 0.95:
        signed, slope, intercept = False, float(np.round(slope_mr, 3)), 0.0
    else:
        signed, slope, intercept = True, 1.0, 0.0
    multiframe_rate = profile.ct_multiframe_rate if modality == "CTA" else profile.mr_multiframe_rate
    return dict(
        modality=modality, plane=plane, head_and_neck=head_and_neck, pixel_mm=pixel,
        aspect=aspect if rect else 1.0, fov_mm=fov, slice_spacing=spacing,
        margins_mm=(float(np.round(u(0, 10), 1)), float(np.round(u(0, 25), 1))),
        center_offset=tuple(float(np.round(u(lo, hi), 2)) for lo, hi in ((-15, 15), (-30, 10), (-400, 100))),
        encoding=_choice(rng, profile.encoding_mix), signed=bool(signed), slope=float(slope),
        intercept=float(intercept), multiframe=bool(rng.random() < multiframe_rate),
        shuffle_files=bool(rng.random() < 0.5),
        instance_numbers=_choice(rng, {"position": 0.7, "reversed": 0.15, "random": 0.15}),
    )


def plan_dataset(n_series: int, positive_rate: float, seed: int, broken_per_kind: int = 1,
                 profile: Profile = DEFAULT) -> list[SeriesPlan]:
    """One ``SeriesPlan`` per series, deterministic for ``(seed, profile)``."""
    labels = draw_labels(n_series, positive_rate, seed, profile)
    rng = rng_for(seed, profile, STRUCTURE_STREAM)
    n_broken = min(broken_per_kind * len(BROKEN_KINDS), n_series // 4)   # keep most series intact
    broken_idx = rng.permutation(n_series)[:n_broken]
    broken = {int(i): BROKEN_KINDS[j % len(BROKEN_KINDS)] for j, i in enumerate(broken_idx)}
    salt = ("profile", profile.name) if profile.stream_salt else ()      # the default keeps its UIDs
    plans, patient = [], None
    for i in range(n_series):
        if patient is None or rng.random() >= SECOND_SERIES_RATE:
            patient = (f"SYN{uid_from(seed, *salt, 'patient', i)[-10:]}", uid_from(seed, *salt, "study", i),
                       int(rng.integers(20, 86)), "Female" if rng.random() < 0.6 else "Male")
        nuisance = draw_nuisance(seed, i, profile)
        kind = broken.get(i)
        if kind in ("truncated_file", "no_pixel_data", "mixed_shapes"):
            nuisance["multiframe"] = False  # these breakages act on one of many single-frame files
        plans.append(SeriesPlan(
            index=i, series_uid=uid_from("willis-synth", *salt, seed, "series", i), study_uid=patient[1],
            patient_id=patient[0], age=patient[2], sex=patient[3], locations=labels[i], broken=kind, profile=profile.name,
            **nuisance,
        ))
    return plans
