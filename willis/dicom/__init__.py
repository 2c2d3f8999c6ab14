"""DICOM reading, per file, none of it holding a whole series in memory; one concept per module:

* ``willis.dicom.header``: ``read_header`` / ``scan_file`` (header only, plus pixel-data checks
  without decoding: completeness and the memory ceilings), ``DicomReadError``, the tag helpers
  ``tag_value`` / ``tag_int`` / ``tag_str`` / ``as_list``;
* ``willis.dicom.limits``: ``ReadLimits`` (the ``index.max_*`` memory ceilings) and ``claim_problem``;
* ``willis.dicom.deflate``: deflated files streamed (header without inflating the pixels; frames in
  one pass);
* ``willis.dicom.geometry``: ``frame_headers`` (per-frame geometry, classic and Enhanced
  multi-frame), ``orientation_valid`` / ``normal_of`` / ``plane_of`` and the documented
  missing-geometry fallback ``fill_geometry``;
* ``willis.dicom.frames``: decoding, ``read_frames`` (one file), ``to_modality`` (rescale,
  MONOCHROME1, PixelRepresentation) and ``iter_frames`` (the kept, sorted frames of one series).

Every DICOM situation the reader handles, and how, is tabulated in ``docs/dicom.md``.

The public names are re-exported here.
"""

from willis.dicom.frames import iter_frames, read_frames, representation_problem, to_modality
from willis.dicom.geometry import (
    AXIAL_ORIENTATION,
    DEFAULT_PIXEL_SPACING,
    DEFAULT_SLICE_SPACING,
    FRAME_KEYS,
    ORTHO_TOL,
    SPLIT_KEYS,
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
    as_list,
    is_pixel_problem,
    read_header,
    scan_file,
    tag_int,
    tag_str,
    tag_value,
)
from willis.dicom.limits import DEFAULT_LIMITS, ReadLimits, claim_problem

__all__ = [
    "AXIAL_ORIENTATION",
    "DEFAULT_LIMITS",
    "DEFAULT_PIXEL_SPACING",
    "DEFAULT_SLICE_SPACING",
    "DicomReadError",
    "FRAME_KEYS",
    "HEADER_TAGS",
    "MAX_FRAGMENTS",
    "ORTHO_TOL",
    "PLANE_MIN_COS",
    "ReadLimits",
    "SPLIT_KEYS",
    "UNDEFINED_LENGTH",
    "as_list",
    "claim_problem",
    "fill_geometry",
    "frame_headers",
    "is_pixel_problem",
    "iter_frames",
    "normal_of",
    "orientation_valid",
    "plane_of",
    "read_frames",
    "read_header",
    "representation_problem",
    "scan_file",
    "tag_int",
    "tag_str",
    "tag_value",
    "to_modality",
]
