"""Where the cross-validation folds of one family live, and their out-of-fold logits.

``train@<family>-<fold>`` writes one model per fold into ``models/<family>/folds/<fold>/``
(``model.pt``, ``meta.json``, ``val_logits.parquet``); ``calibrate@<family>`` fits on the union of
the folds' validation logits, the out-of-fold (OOF) table: every train + val series of the family
exactly once, each scored by the one model that did not train on it. With one fold (``folds: [0]``)
that is the index's validation split, as before folds existed.

    models/ct/folds/0/{model.pt, meta.json, val_logits.parquet}
    models/ct/folds/1/...                       # with folds: [0, 1, ...]
    models/ct/calibration.json                  # calibrate, on the OOF logits

This module reads no weights (no torch): ``calibrate`` and ``evaluate`` use it for the logits;
``willis.models.ensemble`` finds the members for inference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from willis.models.logits import read_logits, validate_logits

FOLDS_DIR = "folds"
VAL_LOGITS = "val_logits.parquet"


def fold_dir(family_dir: str | Path, fold: int) -> Path:
    """``<family_dir>/folds/<fold>``: one fold model's checkpoint and validation logits."""
    return Path(family_dir) / FOLDS_DIR / str(int(fold))


def has_checkpoint(family_dir: str | Path) -> bool:
    """Whether ``family_dir`` holds a model: fold checkpoints (``folds/0/meta.json``) or one
    ``model.pt`` + ``meta.json`` beside calibration.json (a bundle from before folds)."""
    family_dir = Path(family_dir)
    return (fold_dir(family_dir, 0) / "meta.json").is_file() or (family_dir / "meta.json").is_file()


def oof_logits(family_dir: str | Path, folds: Sequence[int]) -> pd.DataFrame:
    """The out-of-fold logits table (with truth) of ``folds``: their validation tables, concatenated
    in fold order (``concat_val_logits``)."""
    if not folds:
        raise ValueError(f"{family_dir}: no folds given")
    return concat_val_logits([fold_dir(family_dir, k) for k in folds], family_dir)


def concat_val_logits(dirs: Sequence[Path], family_dir: str | Path) -> pd.DataFrame:
    """The validation logits tables of the checkpoint folders ``dirs``, concatenated. A series in
    two of them is an error naming both (folds must partition the series); a missing table names
    its path."""
    frames = []
    for i, d in enumerate(dirs):
        path = Path(d) / VAL_LOGITS
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no validation logits (has train run for this fold?)")
        frames.append(read_logits(path).assign(_member=str(d)))
    df = pd.concat(frames, ignore_index=True)
    dup = df[df["SeriesInstanceUID"].duplicated(keep=False)]
    if len(dup):
        uid = dup["SeriesInstanceUID"].iloc[0]
        raise ValueError(f"{family_dir}: series {uid} is in the validation logits of "
                         f"{sorted(dup.loc[dup['SeriesInstanceUID'] == uid, '_member'].tolist())}; the folds "
                         f"must partition the series (retrain every fold with the same folds and seed)")
    df = df.drop(columns="_member")
    validate_logits(df, with_truth=True, source=f"out-of-fold logits of {family_dir}")
    return df
