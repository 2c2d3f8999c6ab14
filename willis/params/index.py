"""``index``: header-only series index and reproducible splits. Owned by willis/index/."""

from __future__ import annotations

from dataclasses import dataclass

from willis.dicom.limits import DEFAULT_LIMITS, ReadLimits
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
    # memory ceilings checked from each header before any pixel data is inflated or decoded
    # (willis/dicom/limits.py); a file above one is set aside with the key's name in its reason
    max_frame_bytes: int = DEFAULT_LIMITS.max_frame_bytes   # one decoded frame (rows x cols x samples x bytes)
    max_pixel_bytes: int = DEFAULT_LIMITS.max_pixel_bytes   # all frames of one file
    max_frames: int = DEFAULT_LIMITS.max_frames             # frames of one file

    @property
    def limits(self) -> ReadLimits:
        return ReadLimits(self.max_frame_bytes, self.max_pixel_bytes, self.max_frames)

    def check(self) -> None:
        require(self.workers >= 1, "index.workers", "must be >= 1")
        require(0 < self.val_fraction < 1, "index.val_fraction", "must be in (0, 1)")
        require(0 < self.test_fraction < 1, "index.test_fraction", "must be in (0, 1)")
        require(self.val_fraction + self.test_fraction < 1, "index.test_fraction", "val_fraction + test_fraction must be < 1")
        for key in ("max_frame_bytes", "max_pixel_bytes", "max_frames"):
            value = getattr(self, key)
            require(isinstance(value, int) and not isinstance(value, bool) and value >= 1, f"index.{key}",
                    "must be an integer >= 1")
        require(self.max_frame_bytes <= self.max_pixel_bytes, "index.max_frame_bytes", "must be <= index.max_pixel_bytes")
