"""``project``: streaming projections into Zarr stores. Owned by willis/projections/."""

from __future__ import annotations

from dataclasses import dataclass

from willis.params import require


@dataclass(frozen=True)
class ProjectParams:
    out: str = "data/projections"    # <out>/<family>.zarr
    size: int = 128                  # S: every view and instance is S x S pixels, isotropic in mm
    instances: int = 12              # K: thin-slab MIPs per series (2.5D bag for attention-MIL)
    workers: int = 2

    def check(self) -> None:
        require(self.size >= 16, "project.size", "must be >= 16")
        require(self.instances >= 1, "project.instances", "must be >= 1")
