"""The fold ensemble of one family: its member checkpoints, and their logits averaged.

A family's bundle directory holds either one checkpoint (``model.pt`` + ``meta.json``, the layout
before folds) or K fold checkpoints in ``folds/0 .. folds/K-1`` (``willis.models.folds``). K comes
from ``folds/0/meta.json`` (``"folds"``), and every member must say the same K and its own fold:
a stale ``folds/3`` left by an earlier 5-fold run beside a 1-fold run is never picked up.

The ensemble's output is the **mean of the members' raw logits** (before calibration, which is
fitted on the out-of-fold logits); ``evaluate`` and ``predict`` both go through here.

    >>> members = member_dirs("models/ct")                      # [models/ct/folds/0, ...]
    >>> df = ensemble_logits_for("models/ct", store, uids, modalities)
    >>> model = FoldEnsemble([load_model(d)[0] for d in members])   # one module, mean logits
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from willis.models.checkpoint import load_meta
from willis.models.folds import concat_val_logits, fold_dir
from willis.models.infer import heat_maps_for, logits_for
from willis.models.logits import LOGIT_COLUMNS, logits_frame


def member_dirs(family_dir: str | Path) -> list[Path]:
    """The checkpoint directories of the family's ensemble, in fold order (one for a single model)."""
    family_dir = Path(family_dir)
    first = fold_dir(family_dir, 0)
    if not (first / "meta.json").is_file():
        if (family_dir / "model.pt").is_file():
            return [family_dir]  # a single-model bundle (no folds/)
        raise FileNotFoundError(f"{family_dir}: no model (neither folds/0/meta.json nor model.pt; "
                                f"has train run for this family?)")
    k = int(load_meta(first).get("folds", 1))
    members = [fold_dir(family_dir, f) for f in range(k)]
    for f, d in enumerate(members):
        if not (d / "meta.json").is_file():
            raise FileNotFoundError(f"{d}: fold {f} of {k} is missing (folds/0/meta.json says {k} folds)")
        meta = load_meta(d)
        if int(meta.get("folds", 1)) != k or int(meta.get("fold", 0)) != f:
            raise ValueError(f"{d}/meta.json: fold {meta.get('fold', 0)} of {meta.get('folds', 1)}, but "
                             f"folds/0 is one of {k} folds: retrain every fold (dvc repro train)")
    return members


def member_oof_logits(family_dir: str | Path) -> pd.DataFrame:
    """The out-of-fold validation logits (with truth) of the ensemble's members: each train + val
    series once, scored by the member that did not train on it (``willis.models.folds``)."""
    return concat_val_logits(member_dirs(family_dir), family_dir)


def mean_logits(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The element-wise mean of logits tables over the same series in the same order (no truth)."""
    first = frames[0]
    for i, df in enumerate(frames[1:], 1):
        if df["SeriesInstanceUID"].tolist() != first["SeriesInstanceUID"].tolist():
            raise ValueError(f"ensemble member {i}: logits for other series than member 0")
    z = np.mean([df[LOGIT_COLUMNS].to_numpy(dtype=np.float64) for df in frames], axis=0)  # (N, 14)
    return logits_frame(first["SeriesInstanceUID"], first["Modality"], z)


def ensemble_logits_for(family_dir: str | Path, store_path: str | Path, uids: Sequence[str],
                        modalities: Mapping[str, str] | None = None, device: str = "auto") -> pd.DataFrame:
    """Raw logits of the family's ensemble for ``uids`` of a store: the members' mean (logits table,
    no truth). ``willis.models.infer.logits_for`` per member; one member: its logits unchanged."""
    frames = [logits_for(d, store_path, uids, modalities=modalities, device=device)
              for d in member_dirs(family_dir)]
    return frames[0] if len(frames) == 1 else mean_logits(frames)


def ensemble_heat_maps_for(family_dir: str | Path, store_path: str | Path, uids: Sequence[str],
                           modalities: Mapping[str, str], device: str = "auto") -> np.ndarray | None:
    """Aneurysm Present heat maps (n, 3, h, w), the members' mean; None when a member has no heat head."""
    maps = [heat_maps_for(d, store_path, uids, modalities, device=device) for d in member_dirs(family_dir)]
    return None if any(m is None for m in maps) else np.mean(maps, axis=0)


class FoldEnsemble(nn.Module):
    """K fold models as one module: each output the members share (same key, same shape) is their
    mean, so ``logits`` is the mean of the members' raw logits; the rest comes from member 0.
    Model-agnostic: the members may be any ``willis.models`` network with dict outputs."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("FoldEnsemble: no members")
        self.members = nn.ModuleList(members)
        self.heatmap = all(getattr(m, "heatmap", False) for m in members)

    def forward(self, *args, **kwargs) -> dict:
        outs = [m(*args, **kwargs) for m in self.members]
        out = dict(outs[0])
        for key, v in outs[0].items():
            if torch.is_tensor(v) and v.is_floating_point() and all(
                    torch.is_tensor(o.get(key)) and o[key].shape == v.shape for o in outs):
                out[key] = torch.stack([o[key] for o in outs]).mean(dim=0)
        return out
