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
    # memory ceilings checked from each header before any pixel data is inflated or decoded
    # (willis/dicom/limits.py); a file above one is set aside with the key's name in its reason
    # (params sit on the ground floor beside dicom, so the defaults are repeated here as numbers;
    # tests/params/test_schema.py checks they equal willis.dicom.limits.DEFAULT_LIMITS)
    max_frame_bytes: int = 256 * 2**20    # one decoded frame (rows x cols x samples x bytes)
    max_pixel_bytes: int = 1024 * 2**20   # all frames of one file
    max_frames: int = 32768               # frames of one file

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
