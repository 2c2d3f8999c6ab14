"""What each synthetic series will be, decided up front from independent random streams.

No label leaks by construction: the label stream (which series are positive, where their aneurysms
are) is one ``numpy`` stream of its own; every nuisance choice (modality, orientation, matrix,
spacing, coverage, encoding, storage, file order, patient, breakage) comes from other streams that
are seeded from ``(seed, stream id, series index)`` only, so they cannot see the label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from willis.synth.anatomy import LOCATION_WEIGHTS
from willis.synth.dicom_writer import uid_from

# stream ids: np.random.default_rng([seed, STREAM, index])
LABEL_STREAM, NUISANCE_STREAM, ANATOMY_STREAM, ANEURYSM_STREAM, NOISE_STREAM, STRUCTURE_STREAM = range(1, 7)

MODALITY_MIX = {"CTA": 0.42, "MRA": 0.29, "MRI T2": 0.22, "MRI T1post": 0.07}
TWO_ANEURYSM_RATE = 0.2      # positives with a second aneurysm (real: ~1.2 localizers per positive)
SECOND_SERIES_RATE = 0.15    # series that belong to the previous series' patient
BROKEN_KINDS = ("truncated_file", "stray_file", "no_pixel_data", "mixed_shapes", "missing_folder", "not_in_csv")
ENCODING_MIX = {"explicit": 0.58, "implicit": 0.15, "big_endian": 0.03, "deflate": 0.04, "rle": 0.14, "jpeg2000": 0.06}
JPEG2000_MAX_SLICES = 80     # JPEG 2000 encoding is slow: larger series fall back to RLE
CT_STORAGE = [  # (signed, slope, intercept), weight
    ((True, 1.0, -1024.0), 0.35), ((False, 1.0, -1024.0), 0.3), ((True, 1.0, 0.0), 0.25),
    ((True, 0.5, -1024.0), 0.05), ((False, 2.0, -3000.0), 0.05),
]


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
    matrix: tuple[int, int]         # (rows, cols)
    fov_mm: float                   # in-plane field of view along the longer side
    slice_spacing: float
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


def draw_labels(n: int, positive_rate: float, seed: int) -> list[tuple[str, ...]]:
    """Aneurysm locations per series (empty tuple = negative), from the label stream only."""
    rng = np.random.default_rng([seed, LABEL_STREAM])
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


def draw_nuisance(seed: int, index: int) -> dict:
    """Acquisition/storage choices of series ``index``: a function of (seed, index) only, never of its label."""
    rng = np.random.default_rng([seed, NUISANCE_STREAM, index])
    modality = _choice(rng, MODALITY_MIX)
    u = rng.uniform
    if modality == "CTA":
        plane = _choice(rng, {"axial": 0.94, "coronal": 0.03, "sagittal": 0.03})
        head_and_neck = bool(rng.random() < 0.2)
        side = _choice(rng, {128: 0.6, 160: 0.25, 192: 0.11, 256: 0.04})
        fov = u(210, 250)
        spacing = _choice(rng, {0.625: 0.03, 0.8: 0.07, 1.0: 0.15, 1.25: 0.25, 1.5: 0.25, 2.0: 0.17, 2.5: 0.08})
        if head_and_neck:
            spacing = max(spacing, 1.0)
    else:
        plane = _choice(rng, {"axial": 0.8, "coronal": 0.08, "sagittal": 0.12})
        head_and_neck = bool(modality == "MRA" and rng.random() < 0.1)
        fov = u(190, 240)
        if modality == "MRA":
            side = _choice(rng, {96: 0.15, 128: 0.55, 160: 0.2, 192: 0.07, 256: 0.03})
            spacing = float(np.round(u(1.0, 1.8), 2))
        elif modality == "MRI T2":
            side = _choice(rng, {128: 0.35, 160: 0.35, 192: 0.25, 256: 0.05})
            spacing = float(np.round(u(3.0, 5.0), 1))
        else:
            side = _choice(rng, {128: 0.45, 160: 0.3, 192: 0.2, 256: 0.05})
            spacing = float(np.round(u(1.5, 4.5), 1))
    rows = side if rng.random() < 0.85 else int(side * 0.8) // 2 * 2   # some rectangular matrices
    cols = side
    if modality == "CTA":
        signed, slope, intercept = CT_STORAGE[int(rng.choice(len(CT_STORAGE), p=[w for _, w in CT_STORAGE]))][0]
    else:
        r = rng.random()  # most MR: unsigned, no rescale; some with a (Philips-like) slope; a few signed
        if r < 0.85:
            signed, slope, intercept = False, 1.0, 0.0
        elif r < 0.95:
            signed, slope, intercept = False, float(np.round(u(0.5, 4.0), 3)), 0.0
        else:
            signed, slope, intercept = True, 1.0, 0.0
    return dict(
        modality=modality, plane=plane, head_and_neck=head_and_neck, matrix=(int(rows), int(cols)),
        fov_mm=float(np.round(fov, 1)), slice_spacing=float(spacing),
        margins_mm=(float(np.round(u(0, 10), 1)), float(np.round(u(0, 25), 1))),
        center_offset=tuple(float(np.round(u(lo, hi), 2)) for lo, hi in ((-15, 15), (-30, 10), (-400, 100))),
        encoding=_choice(rng, ENCODING_MIX), signed=bool(signed), slope=float(slope), intercept=float(intercept),
        multiframe=bool(rng.random() < (0.03 if modality == "CTA" else 0.15)),
        shuffle_files=bool(rng.random() < 0.5),
        instance_numbers=_choice(rng, {"position": 0.7, "reversed": 0.15, "random": 0.15}),
    )


def plan_dataset(n_series: int, positive_rate: float, seed: int, broken_per_kind: int = 1) -> list[SeriesPlan]:
    """One ``SeriesPlan`` per series, deterministic for ``seed``."""
    labels = draw_labels(n_series, positive_rate, seed)
    rng = np.random.default_rng([seed, STRUCTURE_STREAM])
    n_broken = min(broken_per_kind * len(BROKEN_KINDS), n_series // 4)   # keep most series intact
    broken_idx = rng.permutation(n_series)[:n_broken]
    broken = {int(i): BROKEN_KINDS[j % len(BROKEN_KINDS)] for j, i in enumerate(broken_idx)}
    plans, patient = [], None
    for i in range(n_series):
        if patient is None or rng.random() >= SECOND_SERIES_RATE:
            patient = (f"SYN{uid_from(seed, 'patient', i)[-10:]}", uid_from(seed, "study", i),
                       int(rng.integers(20, 86)), "Female" if rng.random() < 0.6 else "Male")
        nuisance = draw_nuisance(seed, i)
        kind = broken.get(i)
        if kind in ("truncated_file", "no_pixel_data", "mixed_shapes"):
            nuisance["multiframe"] = False  # these breakages act on one of many single-frame files
        plans.append(SeriesPlan(
            index=i, series_uid=uid_from("willis-synth", seed, "series", i), study_uid=patient[1],
            patient_id=patient[0], age=patient[2], sex=patient[3], locations=labels[i], broken=kind, **nuisance,
        ))
    return plans
