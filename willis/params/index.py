"""``index``: header-only series index and reproducible splits. Owned by willis/index/."""

from __future__ import annotations

from dataclasses import dataclass

from willis.params.schema import require


@dataclass(frozen=True)
class IndexParams:
    out: str = "data/index"          # series.parquet, files.parquet, localizers.parquet
    workers: int = 2
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    smoke_train: int = 60            # smoke subset sizes per split (the origin notebook used 600/200 on real data)
    smoke_val: int = 30
    smoke_test: int = 30

    def check(self) -> None:
        require(self.workers >= 1, "index.workers", "must be >= 1")
        require(0 < self.val_fraction < 1, "index.val_fraction", "must be in (0, 1)")
        require(0 < self.test_fraction < 1, "index.test_fraction", "must be in (0, 1)")
        require(self.val_fraction + self.test_fraction < 1, "index.test_fraction", "val_fraction + test_fraction must be < 1")
