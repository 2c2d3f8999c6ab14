"""Top level of params.yaml: one field per stage section, plus ``smoke``, ``seed``, ``families`` and ``folds``."""

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
    # cross-validation folds, listed because DVC's ``matrix`` (train@<family>-<fold>) needs a list:
    # (0,) is the single train / val split; (0, 1, ..., K-1) is K-fold CV over train + val
    folds: tuple[int, ...] = (0,)

    def check(self) -> None:
        for f in self.families:
            require(f in ("ct", "mr"), "families", f"unknown family {f!r}; expected 'ct' and/or 'mr'")
        require(len(self.folds) >= 1 and self.folds == tuple(range(len(self.folds))), "folds",
                f"must list the fold ids 0..K-1 in order, e.g. [0] (one split) or [0, 1, 2, 3, 4] (5-fold CV); "
                f"got {list(self.folds)}")
