"""``train``: one model per modality family (``train.ct``, ``train.mr``). Owned by willis/train/."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from willis.params import require


@dataclass(frozen=True)
class TrainParams:
    model: Literal["mip_cnn", "mil"] = "mil"
    loss: Literal["asl", "focal"] = "asl"
    epochs: int = 20
    smoke_epochs: int = 4
    batch_size: int = 16
    lr: float = 1e-3

    def check(self) -> None:
        require(self.epochs >= 1, "train.*.epochs", "must be >= 1")
        require(self.lr > 0, "train.*.lr", "must be > 0")


@dataclass(frozen=True)
class TrainSection:
    ct: TrainParams
    mr: TrainParams
