"""The logits table: raw model outputs per series, the contract between train, calibrate and evaluate.

``models/<family>/folds/<fold>/val_logits.parquet`` (written by ``train``, read by ``calibrate``) and the test
logits that ``willis.models.infer.logits_for`` returns to ``evaluate`` have exactly these columns,
in this order::

    SeriesInstanceUID str, Modality str, [the 14 LABELS as int 0/1: truth, only when known],
    logit::<label> float32 for each of the 14 LABELS (raw, uncalibrated)

One row per series (no duplicate uid), every logit finite. ``validate_logits`` checks it;
``logits_frame`` builds a table, ``write_logits`` / ``read_logits`` are the only way it goes to
and comes back from disk, ``logit_arrays`` turns one into (truth, logits) arrays.

    >>> df = read_logits("models/ct/folds/0/val_logits.parquet")
    >>> Y, Z = logit_arrays(df, "models/ct/folds/0/val_logits.parquet")   # (N, 14) int, (N, 14) float
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from willis.labels import LABELS

LOGIT_PREFIX = "logit::"
LOGIT_COLUMNS = [LOGIT_PREFIX + name for name in LABELS]
ID_COLUMNS = ["SeriesInstanceUID", "Modality"]


def logit_columns(with_truth: bool) -> list[str]:
    """The table's columns, in order: ids, the 14 truth columns when known, the 14 logits."""
    return ID_COLUMNS + (list(LABELS) if with_truth else []) + LOGIT_COLUMNS


def validate_logits(df: pd.DataFrame, with_truth: bool, source: str = "logits table") -> None:
    """Raise ValueError naming ``source`` (and a series where one is at fault) if ``df`` breaks the contract."""
    want = logit_columns(with_truth)
    if list(df.columns) != want:
        missing = [c for c in want if c not in df.columns]
        raise ValueError(f"{source}: columns {list(df.columns)} != {want}"
                         + (f" (missing {missing[:3]}{'...' if len(missing) > 3 else ''})" if missing else ""))
    dup = df.loc[df["SeriesInstanceUID"].duplicated(), "SeriesInstanceUID"]
    if len(dup):
        raise ValueError(f"{source}: duplicate SeriesInstanceUID, e.g. {dup.iloc[0]}")
    if with_truth and not np.isin(df[list(LABELS)].to_numpy(), (0, 1)).all():
        raise ValueError(f"{source}: label columns must be 0/1")
    bad = ~np.isfinite(df[LOGIT_COLUMNS].to_numpy(dtype=float)).all(axis=1)
    if bad.any():
        uids = df["SeriesInstanceUID"].to_numpy()[bad][:3]
        raise ValueError(f"{source}: {int(bad.sum())} row(s) with non-finite logits, e.g. {list(uids)}")


def logits_frame(uids: Sequence[str], modality: Sequence[str], logits: np.ndarray,
                 y: np.ndarray | None = None) -> pd.DataFrame:
    """The logits table of ``logits`` (N, 14); ``y`` (N, 14) 0/1 adds the truth columns."""
    df = pd.DataFrame({"SeriesInstanceUID": list(uids), "Modality": list(modality)})
    if y is not None:
        for j, name in enumerate(LABELS):
            df[name] = np.asarray(y[:, j]).astype(np.int64)
    for j, col in enumerate(LOGIT_COLUMNS):
        df[col] = np.asarray(logits[:, j], dtype=np.float32)
    validate_logits(df, with_truth=y is not None)
    return df


def write_logits(df: pd.DataFrame, path: str | Path) -> None:
    """Validate and write a logits table (with or without truth) as parquet."""
    validate_logits(df, with_truth=LABELS[0] in df.columns, source=str(path))
    df.to_parquet(path, index=False)


def read_logits(path: str | Path, with_truth: bool = True) -> pd.DataFrame:
    """The logits table at ``path``, validated; errors name the file."""
    df = pd.read_parquet(path)
    validate_logits(df, with_truth, source=str(path))
    return df


def logit_arrays(df: pd.DataFrame, source: str = "logits table") -> tuple[np.ndarray, np.ndarray]:
    """(Y (N, 14) int truth, Z (N, 14) float logits) of a validated table with truth."""
    validate_logits(df, with_truth=True, source=source)
    return df[list(LABELS)].to_numpy().astype(int), df[LOGIT_COLUMNS].to_numpy(dtype=float)
