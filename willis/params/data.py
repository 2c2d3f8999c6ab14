"""``data``: where the RSNA-layout dataset lives."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataParams:
    # An RSNA-layout folder: train.csv, train_localizers.csv, series/<uid>/<sop>.dcm.
    # Default: the synthetic dataset that the `synthesize` stage writes. Point it at the real
    # (read-only) Kaggle folder to run on real data; nothing is written inside it.
    root: str = "data/synthetic"
