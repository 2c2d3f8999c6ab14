"""The checkpoint format: ``models/<family>/model.pt`` + ``models/<family>/meta.json``.

``model.pt`` is a plain ``state_dict`` of CPU tensors (loads with ``torch.load(weights_only=True)``:
no pickled code). ``meta.json`` carries everything needed to rebuild and feed the model, so
calibrate, evaluate and predict never read today's params.yaml:

    {
      "format": 1,
      "family": "ct",
      "arch": {"name": "mil", "kwargs": {...}},       # build_model(arch) rebuilds the module; fine_cnn
                                                      # with train groups: kwargs "groups" = modality ids
                                                      # per network (state_dict keys net.members.<g>.*)
      "labels": [... 14 names, willis.labels.LABELS order ...],
      "modalities": ["CTA"],                          # modality_id i <-> modalities[i]
      "channels": [...], "size": 128, "instances": 12, # the projection the model was trained on
      "project": {...},                               # the store's project params (predict re-projects)
      "params": {...},                                # the train.<family> section used
      "data_hash": "sha256 hex",                      # identity of the inputs (willis.train.data)
      "prior": {label: positive rate in the training split},
      "best_epoch": 7, "val_score": 0.81, "report": {...}
    }
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from willis.labels import LABELS, modality_vocab
from willis.models.fine import FineModel
from willis.models.mil import AttentionMIL
from willis.models.mip_cnn import MipCNN
from willis.params.train import TrainParams

FORMAT = 1
MODEL_CLASSES: dict[str, type[nn.Module]] = {"mil": AttentionMIL, "mip_cnn": MipCNN, "fine_cnn": FineModel}
META_KEYS = ("format", "family", "arch", "labels", "modalities", "channels", "size", "instances",
             "params", "data_hash", "prior")


def arch_from_params(p: TrainParams, in_channels: int, n_modalities: int,
                     fine_shape: tuple[int, int] | None = None, vocab: list[str] | None = None) -> dict:
    """Architecture args from the family's train section; stored verbatim in meta.json.

    ``fine_shape`` = (K_f slabs, F pixels) of the fine store, for ``fine_cnn`` (``in_channels``
    is then the number of fine channels); ``vocab`` the family's sub-modalities (modality id
    order), which ``p.groups`` names."""
    if p.model == "fine_cnn":
        if fine_shape is None:
            raise ValueError("fine_cnn needs the fine store's (slabs, size)")
        kwargs = dict(in_channels=in_channels, n_modalities=n_modalities, n_slabs=int(fine_shape[0]),
                      size=int(fine_shape[1]), width=p.width, stem=p.stem, tta=p.tta, context=p.context_slabs)
        if p.groups:   # modality ids per group (absent for one network: older checkpoints read the same)
            if vocab is None:
                raise ValueError("train groups need the family's sub-modality vocabulary")
            kwargs["groups"] = [[vocab.index(m) for m in g] for g in p.groups]
        return {"name": p.model, "kwargs": kwargs}
    common = dict(in_channels=in_channels, n_modalities=n_modalities, backbone=p.backbone,
                  width=p.width, embed_dim=p.embed_dim, modality_dim=p.modality_dim,
                  dropout=p.dropout, backbone_weights=p.backbone_weights, input_size=p.input_size,
                  heatmap=p.heatmap)
    if p.model == "mil":
        common.update(attn_dim=p.attn_dim, include_mips=p.include_mips)
    return {"name": p.model, "kwargs": common}


def build_model(arch: dict, from_checkpoint: bool = False) -> nn.Module:
    """Instantiate the module described by ``arch`` ({"name", "kwargs"})."""
    name = arch.get("name")
    if name not in MODEL_CLASSES:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODEL_CLASSES)}")
    kwargs = dict(arch["kwargs"])
    if from_checkpoint and "backbone_weights" in kwargs:
        kwargs["backbone_weights"] = None  # the state_dict carries the weights; no external file needed
    return MODEL_CLASSES[name](**kwargs)


def validate_meta(meta: dict, where: str = "meta.json") -> None:
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing}")
    if meta["format"] != FORMAT:
        raise ValueError(f"{where}: format {meta['format']!r}, this code reads format {FORMAT}")
    if tuple(meta["labels"]) != LABELS:
        raise ValueError(f"{where}: label order differs from willis.labels.LABELS")
    if meta["modalities"] != modality_vocab(meta["family"]):
        raise ValueError(f"{where}: modality vocabulary {meta['modalities']} does not match family "
                         f"{meta['family']!r}")


def save_model(model_dir: str | Path, model: nn.Module, meta: dict,
               state: dict[str, torch.Tensor] | None = None) -> None:
    """Write ``model.pt`` (``state`` or the model's state_dict, on CPU) and ``meta.json``."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, **meta}
    validate_meta(meta, str(model_dir / "meta.json"))
    state = state if state is not None else model.state_dict()
    torch.save({k: v.detach().cpu().clone() for k, v in state.items()}, model_dir / "model.pt")
    (model_dir / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def load_meta(model_dir: str | Path) -> dict:
    path = Path(model_dir) / "meta.json"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{path}: no checkpoint metadata (has `train` run for this family?)") from e
    validate_meta(meta, str(path))
    return meta


def load_model(model_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model from ``meta.json``, load ``model.pt`` into it; eval mode on ``device``."""
    model_dir = Path(model_dir)
    meta = load_meta(model_dir)
    model = build_model(meta["arch"], from_checkpoint=True)
    state = torch.load(model_dir / "model.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state)  # strict: a mismatch between meta and weights must fail loudly
    return model.to(device).eval(), meta
