"""DICOM reading, per file, none of it holding a whole series in memory; one concept per module:

* ``willis.dicom.header``: ``read_header`` / ``scan_file`` (header only, plus a pixel-data
  completeness check without decoding), ``DicomReadError``, the raw tag helpers;
* ``willis.dicom.geometry``: ``frame_headers`` (per-frame geometry, classic and Enhanced
  multi-frame), ``orientation_valid`` / ``normal_of`` / ``plane_of`` and the documented
  missing-geometry fallback ``fill_geometry``;
* ``willis.dicom.frames``: decoding, ``read_frames`` (one file) and ``iter_frames`` (the kept,
  sorted, rescaled frames of one series).

The public names are re-exported here.
"""

from willis.dicom.frames import iter_frames, read_frames
from willis.dicom.geometry import (
    AXIAL_ORIENTATION,
    DEFAULT_PIXEL_SPACING,
    DEFAULT_SLICE_SPACING,
    FRAME_KEYS,
    ORTHO_TOL,
    PLANE_MIN_COS,
    fill_geometry,
    frame_headers,
    normal_of,
    orientation_valid,
    plane_of,
)
from willis.dicom.header import (
    HEADER_TAGS,
    MAX_FRAGMENTS,
    UNDEFINED_LENGTH,
    DicomReadError,
    is_pixel_problem,
    read_header,
    scan_file,
)

__all__ = [
    "AXIAL_ORIENTATION",
    "DEFAULT_PIXEL_SPACING",
    "DEFAULT_SLICE_SPACING",
    "FRAME_KEYS",
    "HEADER_TAGS",
    "MAX_FRAGMENTS",
    "ORTHO_TOL",
    "PLANE_MIN_COS",
    "UNDEFINED_LENGTH",
    "DicomReadError",
    "fill_geometry",
    "frame_headers",
    "is_pixel_problem",
    "iter_frames",
    "normal_of",
    "orientation_valid",
    "plane_of",
    "read_frames",
    "read_header",
    "scan_file",
]
