"""DICOM headers: the header of one file, a cheap pixel-data completeness check, the tag helpers.

* ``read_header(path)``: the header only (``stop_before_pixels``, ``specific_tags``);
  ``scan_file(path)`` adds a cheap check that the pixel data is whole (no decoding).
* ``_top`` / ``_int`` / ``_str`` / ``_multi``: top-level tag values, parsed from the raw bytes
  (a fast path; ``willis.dicom.geometry.frame_headers`` reads its values through them).

Every failure raises ``DicomReadError`` naming the file (the frame, when decoding) and the reason.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian

# Top-level tags the index needs; everything else (and pixel data) is skipped while parsing.
HEADER_TAGS: list[str] = [
    "SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "PatientID", "PatientAge", "PatientSex",
    "Modality", "ImageType", "InstanceNumber", "Rows", "Columns", "NumberOfFrames", "SamplesPerPixel",
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
    "SpacingBetweenSlices", "RescaleSlope", "RescaleIntercept", "BitsAllocated",
    "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence",
]
_TAGS = [tag_for_keyword(kw) for kw in HEADER_TAGS]


class DicomReadError(Exception):
    """A file that cannot be read or decoded; the message names the file (and frame) and why."""

    def __init__(self, path, reason: str, frame: int | None = None):
        self.path, self.reason, self.frame = str(path), reason, frame
        where = f"{path}" if frame is None else f"{path} frame {frame}"
        super().__init__(f"{where}: {reason}")


def read_header(path: str | Path) -> pydicom.Dataset:
    """Header of one file (no pixel data). Raises DicomReadError if it is not a readable DICOM file."""
    return scan_file(path)[0]


_PIXEL_TAGS = {0x7FE00010: "Pixel Data", 0x7FE00008: "Float Pixel Data", 0x7FE00009: "Double Float Pixel Data"}
UNDEFINED_LENGTH = 0xFFFFFFFF
MAX_FRAGMENTS = 1_000_000   # items walked in encapsulated pixel data before calling it malformed


def scan_file(path: str | Path) -> tuple[pydicom.Dataset, str]:
    """Header of one file plus a cheap pixel-data integrity check, opening the file once.

    Returns ``(ds, problem)``: ``problem`` is '' or why the pixel data cannot be whole, found
    without decoding: no Pixel Data element, a native Pixel Data shorter than Rows x Columns x
    frames needs, a file that ends before its Pixel Data does, or encapsulated (compressed) pixel
    data whose fragments run past the end of the file or lack the closing sequence delimiter.
    Deflated files are not checked (the pixel data is inside the deflate stream). Raises
    DicomReadError when the file is not DICOM or its header is unreadable.
    """
    try:
        with open(path, "rb") as fp:
            ds = pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=_TAGS)
            # pydicom leaves fp at the start of the pixel data element it stopped before
            return ds, _pixel_problem(fp, ds, Path(path).stat().st_size)
    except InvalidDicomError as e:
        raise DicomReadError(path, "not a DICOM file (no 'DICM' prefix / file meta)") from e
    except DicomReadError:
        raise
    except Exception as e:  # truncated or corrupt header: pydicom raises many types
        raise DicomReadError(path, f"unreadable header: {type(e).__name__}: {e}") from e


def is_pixel_problem(reason: str) -> bool:
    """Whether a set-aside reason came from ``scan_file``'s pixel-data check (decoding it again tells nothing)."""
    return reason.startswith(("no Pixel Data", "file truncated", "Pixel Data holds", "malformed encapsulated",
                              "file ends inside"))


def _pixel_problem(fp, ds: pydicom.Dataset, size: int) -> str:
    meta = getattr(ds, "file_meta", None)
    ts = UID(str(meta.get("TransferSyntaxUID", "")) if meta is not None else "")
    if ts == DeflatedExplicitVRLittleEndian or not ts:
        return ""
    start = fp.tell()
    head = fp.read(12)
    if len(head) < 8:
        return "no Pixel Data element"
    little = ts != ExplicitVRBigEndian
    order = "<" if little else ">"
    group, elem = struct.unpack(order + "HH", head[:4])
    tag = group << 16 | elem
    if tag != 0x7FE00010:
        return f"no Pixel Data element ({_PIXEL_TAGS.get(tag, hex(tag))} instead)"
    implicit = ts == ImplicitVRLittleEndian
    if implicit:
        (length,), header = struct.unpack(order + "I", head[4:8]), 8
    else:
        if len(head) < 12:
            return "file ends inside the Pixel Data element header"
        (length,), header = struct.unpack(order + "I", head[8:12]), 12
    if length == UNDEFINED_LENGTH:
        return _encapsulated_problem(fp, start + header, size)
    end = start + header + length
    if end > size:
        return f"file truncated: Pixel Data ends at byte {end}, the file has {size} bytes"
    try:
        rows, cols = _int(ds, "Rows"), _int(ds, "Columns")
        frames, samples = _int(ds, "NumberOfFrames", 1), _int(ds, "SamplesPerPixel", 1)
        bits = _int(ds, "BitsAllocated", 16)
    except ValueError:
        return ""  # frame_headers reports the malformed value itself
    if rows and cols and frames and samples and bits:
        needed = rows * cols * frames * samples * bits // 8 if bits >= 8 else (rows * cols * frames * samples + 7) // 8
        if length < needed:
            return f"Pixel Data holds {length} bytes, {rows}x{cols}x{frames} frame(s) need {needed}"
    return ""


def _encapsulated_problem(fp, pos: int, size: int) -> str:
    """Walk the item headers of encapsulated pixel data (8 bytes each, fragments skipped unread)."""
    for _ in range(MAX_FRAGMENTS):
        fp.seek(pos)
        item = fp.read(8)
        if len(item) < 8:
            return f"file truncated: encapsulated pixel data has no closing sequence delimiter (file has {size} bytes)"
        group, elem, length = struct.unpack("<HHI", item)  # encapsulated data is always little endian
        if (group, elem) == (0xFFFE, 0xE0DD):
            return ""
        if (group, elem) != (0xFFFE, 0xE000):
            return f"malformed encapsulated pixel data: tag ({group:04X},{elem:04X}) at byte {pos}"
        pos += 8 + length
        if pos > size:
            return f"file truncated: a pixel data fragment ends at byte {pos}, the file has {size} bytes"
    return f"malformed encapsulated pixel data: more than {MAX_FRAGMENTS} items"


# Fast path for the flat top-level tags: parse the raw bytes ourselves (pydicom's per-element
# conversion and validation cost ~3x the file parse itself; see benchmarks/bench_index.py).
_TAG = {kw: tag_for_keyword(kw) for kw in HEADER_TAGS}
_BINARY = {"US": "H", "SS": "h", "UL": "I", "SL": "i"}


def _top(ds: pydicom.Dataset, keyword: str):
    """Top-level value of ``keyword``: str, list[str] (multi-valued), int (binary VRs) or None.

    Falls back to pydicom's own conversion for anything but a plain raw text/binary element.
    """
    elem = ds.get_item(_TAG[keyword])
    if elem is None:
        return None
    if not isinstance(elem, RawDataElement):
        return elem.value
    vr = elem.VR or dictionary_VR(elem.tag)
    raw = elem.value
    if not raw:
        return None
    if vr in _BINARY:
        size = struct.calcsize(_BINARY[vr])
        return struct.unpack(("<" if elem.is_little_endian else ">") + _BINARY[vr], raw[:size])[0]
    if vr in ("SQ", "OB", "OW", "UN"):
        return ds[elem.tag].value
    parts = raw.decode("latin-1").strip(" \x00").split("\\")
    parts = [v.strip(" \x00") for v in parts]
    return parts if len(parts) > 1 else (parts[0] or None)


def _int(ds, keyword: str, default: int | None = None) -> int | None:
    value = _top(ds, keyword)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"invalid {keyword} {value!r}") from e


def _multi(value) -> list:
    return [] if value is None else (list(value) if isinstance(value, (list, tuple, MultiValue)) else [value])


def _str(ds, keyword: str) -> str:
    value = _top(ds, keyword)
    return "" if value is None else ("\\".join(map(str, value)) if isinstance(value, list) else str(value))
