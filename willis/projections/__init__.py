"""Streaming tri-planar MIPs, thin-slab instances and fine three-axis slabs per series, in one Zarr v3 store per family.

Read side (training, evaluation, montage)::

    from willis.projections import read, load_family, patient_to_view
    arrays = read("data/projections/ct.zarr", uid)   # {"mip": (3, C, S, S), "instances": (K, C, S, S), "instance_z": (K,),
                                                     #  "fine": (3, K_f, C_f, F, F)}
    where = patient_to_fine(point_lps, open_store(path).attrs["series"][uid])   # {"axial": (slab, row, col), ...}

The layout contract is the docstring of ``willis.projections.store``; the view geometry that of
``willis.projections.views``; the one-pass projection of a series is ``willis.projections.streaming``.
"""

from willis.projections.store import (
    FamilyArrays,
    FineLayout,
    Projection,
    StoreError,
    create_store,
    family_path,
    finalize_store,
    load_family,
    open_store,
    read,
    validate_store,
    write_projection,
)
from willis.projections.views import VIEWS, fine_to_patient, patient_to_fine, patient_to_view, pixel_to_lps

__all__ = [
    "VIEWS",
    "FamilyArrays",
    "FineLayout",
    "Projection",
    "StoreError",
    "create_store",
    "family_path",
    "finalize_store",
    "fine_to_patient",
    "load_family",
    "open_store",
    "patient_to_fine",
    "patient_to_view",
    "pixel_to_lps",
    "read",
    "validate_store",
    "write_projection",
]
