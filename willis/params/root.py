"""Top level of params.yaml: one field per stage section, plus ``smoke``, ``seed`` and ``families``."""

from __future__ import annotations

from dataclasses import dataclass

from willis.params.schema import require
from willis.params.calibrate import CalibrateParams
from willis.params.data import DataParams
from willis.params.decode_check import DecodeCheckParams
from willis.params.evaluate import EvaluateParams
from willis.params.index import IndexParams
from willis.params.project import ProjectParams
from willis.params.synthesize import SynthesizeParams
from willis.params.train import TrainSection


@dataclass(frozen=True)
class Params:
    smoke: bool
    seed: int
    families: tuple[str, ...]
    data: DataParams
    synthesize: SynthesizeParams
    index: IndexParams
    decode_check: DecodeCheckParams
    project: ProjectParams
    train: TrainSection
    calibrate: CalibrateParams
    evaluate: EvaluateParams

    def check(self) -> None:
        for f in self.families:
            require(f in ("ct", "mr"), "families", f"unknown family {f!r}; expected 'ct' and/or 'mr'")
