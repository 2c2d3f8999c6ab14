"""Label columns, modality families and the left/right pairs: the vocabulary every stage shares.

The 14 label columns are verbatim from the competition's ``train.csv``, in its order: 13 vessel
locations, then ``Aneurysm Present``. Every array of logits or probabilities in this project has
its last axis in exactly this order (``LABELS``).
"""

from __future__ import annotations

import re

LOCATIONS: tuple[str, ...] = (
    "Left Infraclinoid Internal Carotid Artery",
    "Right Infraclinoid Internal Carotid Artery",
    "Left Supraclinoid Internal Carotid Artery",
    "Right Supraclinoid Internal Carotid Artery",
    "Left Middle Cerebral Artery",
    "Right Middle Cerebral Artery",
    "Anterior Communicating Artery",
    "Left Anterior Cerebral Artery",
    "Right Anterior Cerebral Artery",
    "Left Posterior Communicating Artery",
    "Right Posterior Communicating Artery",
    "Basilar Tip",
    "Other Posterior Circulation",
)
PRESENT = "Aneurysm Present"
LABELS: tuple[str, ...] = LOCATIONS + (PRESENT,)
PRESENT_INDEX = len(LOCATIONS)  # 13: the last column

# train.csv columns, verbatim and in order.
CSV_COLUMNS: tuple[str, ...] = ("SeriesInstanceUID", "PatientAge", "PatientSex", "Modality") + LABELS
LOCALIZER_COLUMNS: tuple[str, ...] = ("SeriesInstanceUID", "SOPInstanceUID", "coordinates", "location")

# CSV modality -> modality family (one model per family). The DICOM Modality tag only says CT/MR.
MODALITY_FAMILY: dict[str, str] = {"CTA": "ct", "MRA": "mr", "MRI T2": "mr", "MRI T1post": "mr"}
MODALITIES: tuple[str, ...] = tuple(MODALITY_FAMILY)
FAMILIES: tuple[str, ...] = ("ct", "mr")
DICOM_MODALITY_FAMILY: dict[str, str] = {"CT": "ct", "MR": "mr"}


def modality_vocab(family: str) -> list[str]:
    """The sub-modalities of a family, in ``MODALITIES`` order (a model's modality ids)."""
    vocab = [m for m in MODALITIES if MODALITY_FAMILY[m] == family]
    if not vocab:
        raise ValueError(f"unknown modality family {family!r}")
    return vocab


def _lr_pairs() -> tuple[tuple[int, int], ...]:
    """Index pairs (left, right) of LABELS that a left-right flip must swap."""
    pairs = []
    for i, name in enumerate(LABELS):
        if name.startswith("Left "):
            pairs.append((i, LABELS.index("Right " + name[len("Left "):])))
    return tuple(pairs)


LR_PAIRS: tuple[tuple[int, int], ...] = _lr_pairs()  # 5 pairs: infra/supra ICA, MCA, ACA, PComm


def flip_permutation() -> list[int]:
    """Permutation p of label indices such that ``flipped = labels[..., p]`` swaps left and right."""
    perm = list(range(len(LABELS)))
    for left, right in LR_PAIRS:
        perm[left], perm[right] = right, left
    return perm


def label_slug(name: str) -> str:
    """File-name form of a label (dvclive metric and plot names): ``Aneurysm Present`` -> ``aneurysm_present``."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
