"""``project``: streaming projections into Zarr stores. Owned by willis/projections/."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from willis.params.schema import require


@dataclass(frozen=True)
class ProjectParams:
    out: str = "data/projections"    # <out>/<family>.zarr
    size: int = 128                  # S: every view and instance is S x S pixels, isotropic in mm
    instances: int = 12              # K: axial instances per series (2.5D bag for attention-MIL)
    instance_mode: Literal["slabs", "topk"] = "slabs"  # contiguous thin slabs, or the K brightest z-bins
    workers: int = 2                 # worker processes (local executor)
    grid: int = 256                  # accumulators pool every axis to at most this many cells (memory bound)
    slab_bins: int = 48              # fine z-bins accumulated while streaming; instances are made of them
    roi_z_mm: float = 150.0          # head box height below the skull top
    roi_xy_mm: float = 200.0         # head box width / depth at most
    roi_margin_mm: float = 5.0       # margin around the detected head
    bone_hu: float = 700.0           # CT bone threshold for the bone-aware highlight
    bone_dilate_mm: float = 2.0      # rim of bone suppressed with it (partial-volume edges)
    vesselness: bool = False         # add a Sato vesselness channel (on the small projected images)
    fine_mm_per_px: float = 0.5      # fine ROI pixel (mm): a 4 mm sac is 8 px
    fine_box_mm: float = 136.0       # side of the fine cube around the circle of Willis (F = box / mm pixels)
    fine_slab_mm: float = 8.0        # fine thin-slab thickness along each axis (K_f = box / slab slabs)
    locate_mm: float = 4.0           # locate pass: 3-D grid cell and spacing of the frames it samples
    dark_tophat_mm: float = 8.0      # MR dark-lumen channel: black top-hat box (flow voids narrower than this)
    work: str = "data/work"          # resumable work dirs (gitignored, outside the DVC output)
    montage_series: int = 3          # montage: series per modality and class (positive / negative)
    executor: Literal["local", "dask"] = "local"
    scheduler: str = ""              # dask scheduler address (executor: dask); empty: a LocalCluster

    def check(self) -> None:
        require(self.size >= 16, "project.size", "must be >= 16")
        require(self.instances >= 1, "project.instances", "must be >= 1")
        require(self.workers >= 1, "project.workers", "must be >= 1")
        require(self.grid >= self.size, "project.grid", f"must be >= project.size ({self.size})")
        require(self.slab_bins >= self.instances, "project.slab_bins", f"must be >= project.instances ({self.instances})")
        require(self.roi_z_mm > 0 and self.roi_xy_mm > 0, "project.roi_z_mm", "ROI sizes must be > 0")
        require(self.roi_margin_mm >= 0, "project.roi_margin_mm", "must be >= 0")
        require(self.bone_dilate_mm >= 0, "project.bone_dilate_mm", "must be >= 0")
        require(self.montage_series >= 0, "project.montage_series", "must be >= 0")
        require(self.fine_mm_per_px > 0, "project.fine_mm_per_px", "must be > 0")
        require(self.fine_box_mm >= 16 * self.fine_mm_per_px, "project.fine_box_mm",
                f"must be >= 16 fine pixels ({16 * self.fine_mm_per_px:g} mm)")
        require(0 < self.fine_slab_mm <= self.fine_box_mm, "project.fine_slab_mm", "must be in (0, project.fine_box_mm]")
        require(1.0 <= self.locate_mm <= 16.0, "project.locate_mm", "must be in [1, 16] mm")
        require(self.dark_tophat_mm > 0, "project.dark_tophat_mm", "must be > 0")
