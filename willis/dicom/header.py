"""DICOM headers: the header of one file, cheap pixel-data checks before any decode, the tag helpers.

* ``read_header(path)``: the header only (``stop_before_pixels``, ``specific_tags``);
  ``scan_file(path, limits)`` adds checks that the pixel data is whole and that its claims fit the
  memory ceilings (``willis.dicom.limits``), all without decoding or inflating pixel data. A
  deflated file's header is read by streaming its deflate stream (``willis.dicom.deflate``).
* ``tag_value`` / ``tag_int`` / ``tag_str`` / ``as_list``: top-level tag values, parsed from the raw
  bytes (a fast path; ``willis.dicom.geometry.frame_headers`` reads its values through them).

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

from willis.dicom.deflate import PIXEL_TAGS, DeflateError, deflated_header
from willis.dicom.limits import DEFAULT_LIMITS, DEFLATE_MAX_RATIO, RLE_MAX_RATIO, ReadLimits, claim_problem, frame_bytes

# Top-level tags the index needs; everything else (and pixel data) is skipped while parsing.
HEADER_TAGS: list[str] = [
    "SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "PatientID", "PatientAge", "PatientSex",
    "Modality", "ImageType", "InstanceNumber", "Rows", "Columns", "NumberOfFrames", "SamplesPerPixel",
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
    "SpacingBetweenSlices", "RescaleSlope", "RescaleIntercept", "BitsAllocated",
    "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence",
    # pixel module (MONOCHROME1 inversion, PixelRepresentation checks, deflated frame decoding)
    "BitsStored", "HighBit", "PixelRepresentation", "PhotometricInterpretation", "PlanarConfiguration",
    # what tells the frames of a 4-D series apart (willis.index.volumes), and gantry tilt
    "AcquisitionNumber", "EchoNumbers", "EchoTime", "TemporalPositionIdentifier", "TriggerTime",
    "DiffusionBValue", "DimensionIndexSequence", "GantryDetectorTilt", "ComplexImageComponent",
]
_TAGS = [tag_for_keyword(kw) for kw in HEADER_TAGS]


class DicomReadError(Exception):
    """A file that cannot be read or decoded; the message names the file (and frame) and why."""

    def __init__(self, path, reason: str, frame: int | None = None):
        self.path, self.reason, self.frame = str(path), reason, frame
        where = f"{path}" if frame is None else f"{path} frame {frame}"
        super().__init__(f"{where}: {reason}")


def read_header(path: str | Path, tags: list[str] | None = None) -> pydicom.Dataset:
    """Header of one file (no pixel data; ``tags``: extra keywords to read). Raises DicomReadError."""
    return scan_file(path, tags=tags)[0]


UNDEFINED_LENGTH = 0xFFFFFFFF
MAX_FRAGMENTS = 1_000_000   # items walked in encapsulated pixel data before calling it malformed
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
# every reason _pixel_problem gives starts with one of these (decoding such a file again tells nothing)
PIXEL_PROBLEMS = ("no Pixel Data", "file truncated", "Pixel Data holds", "malformed encapsulated", "file ends inside",
                  "pixel data claims", "deflate stream", "NumberOfFrames")


def scan_file(path: str | Path, limits: ReadLimits = DEFAULT_LIMITS,
              tags: list[str] | None = None) -> tuple[pydicom.Dataset, str]:
    """Header of one file plus cheap pixel-data checks, opening the file once; nothing is decoded.

    Returns ``(ds, problem)``: ``problem`` is '' or why the pixel data cannot be used, found from
    the header and the element/item headers alone: claims above ``limits`` (frames, bytes per
    frame, bytes per file); no Pixel Data element; native Pixel Data shorter than Rows x Columns x
    frames needs; a file that ends before its Pixel Data does; encapsulated (compressed) data whose
    items run past the end of the file, lack the closing delimiter, are fewer than the frames, or
    (RLE) are too small to hold the claimed frames; a deflated file whose stream cannot hold its
    claim or ends early (counted by streaming, never inflated whole). ``tags``: extra keywords to
    read. Raises DicomReadError when the file is not DICOM or its header is unreadable.
    """
    wanted = _TAGS if not tags else _TAGS + [tag_for_keyword(t) for t in tags]
    try:
        size = Path(path).stat().st_size
        with open(path, "rb") as fp:
            if _transfer_syntax(fp) == DeflatedExplicitVRLittleEndian:
                return _scan_deflated(fp, wanted, size, limits)
            ds = pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=wanted)
            # pydicom leaves fp at the start of the pixel data element it stopped before
            return ds, _pixel_problem(fp, ds, size, limits)
    except InvalidDicomError as e:
        raise DicomReadError(path, "not a DICOM file (no 'DICM' prefix / file meta)") from e
    except DicomReadError:
        raise
    except Exception as e:  # truncated or corrupt header: pydicom raises many types
        raise DicomReadError(path, f"unreadable header: {type(e).__name__}: {e}") from e


def _transfer_syntax(fp) -> str:
    """TransferSyntaxUID from the file meta's raw bytes ('' when not found); ``fp`` is left at byte 0.

    A cheap peek (pydicom's meta reader would parse the meta a second time): the meta is explicit VR
    little endian right after the 128-byte preamble and 'DICM'.
    """
    head = fp.read(4096)
    fp.seek(0)
    at = head.find(b"\x02\x00\x10\x00UI", 132)
    if head[128:132] != b"DICM" or at < 0:
        return ""
    length = int.from_bytes(head[at + 6:at + 8], "little")
    return head[at + 8:at + 8 + length].rstrip(b"\x00 ").decode("ascii", "replace")


def is_pixel_problem(reason: str) -> bool:
    """Whether a set-aside reason came from ``scan_file``'s pixel-data checks (decoding it tells nothing)."""
    return reason.startswith(PIXEL_PROBLEMS)


def _claims(ds) -> tuple[int, int, int, int, int] | None:
    """(rows, cols, frames, samples, bits allocated) claimed by the header; None when malformed/absent."""
    try:
        rows, cols = tag_int(ds, "Rows"), tag_int(ds, "Columns")
        frames, samples = tag_int(ds, "NumberOfFrames", 1), tag_int(ds, "SamplesPerPixel", 1)
        bits = tag_int(ds, "BitsAllocated", 16)
    except ValueError:
        return None  # frame_headers reports the malformed value itself
    if not (rows and cols and frames and samples and bits) or min(rows, cols, frames, samples, bits) < 0:
        return None
    return rows, cols, frames, samples, bits


def _pixel_problem(fp, ds: pydicom.Dataset, size: int, limits: ReadLimits) -> str:
    meta = getattr(ds, "file_meta", None)
    ts = UID(str(meta.get("TransferSyntaxUID", "")) if meta is not None else "")
    claims = _claims(ds)
    if claims:
        problem = claim_problem(*claims, limits)
        if problem:
            return problem
    if not ts:
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
        return f"no Pixel Data element ({PIXEL_TAGS.get(tag, hex(tag))} instead)"
    implicit = ts == ImplicitVRLittleEndian
    if implicit:
        (length,), header = struct.unpack(order + "I", head[4:8]), 8
    else:
        if len(head) < 12:
            return "file ends inside the Pixel Data element header"
        (length,), header = struct.unpack(order + "I", head[8:12]), 12
    if length == UNDEFINED_LENGTH:
        return _encapsulated_problem(fp, start + header, size, claims, ts == RLE_LOSSLESS)
    end = start + header + length
    if end > size:
        return f"file truncated: Pixel Data ends at byte {end}, the file has {size} bytes"
    return _short_native(length, claims)


def _short_native(length: int, claims) -> str:
    if claims:
        rows, cols, frames, samples, bits = claims
        needed = frame_bytes(rows, cols, samples, bits) * frames
        if length < needed:
            return f"Pixel Data holds {length} bytes, {rows}x{cols}x{frames} frame(s) need {needed}"
    return ""


def _encapsulated_problem(fp, pos: int, size: int, claims, rle: bool) -> str:
    """Walk the item headers of encapsulated pixel data (8 bytes each, fragments skipped unread)."""
    fragments, data_bytes = 0, 0   # items after the Basic Offset Table, and their bytes
    for i in range(MAX_FRAGMENTS):
        fp.seek(pos)
        item = fp.read(8)
        if len(item) < 8:
            return f"file truncated: encapsulated pixel data has no closing sequence delimiter (file has {size} bytes)"
        group, elem, length = struct.unpack("<HH", item[:4]) + struct.unpack("<I", item[4:])  # always little endian
        if (group, elem) == (0xFFFE, 0xE0DD):
            return _encapsulated_claims(fragments, data_bytes, claims, rle)
        if (group, elem) != (0xFFFE, 0xE000):
            return f"malformed encapsulated pixel data: tag ({group:04X},{elem:04X}) at byte {pos}"
        if i > 0:
            fragments, data_bytes = fragments + 1, data_bytes + length
        pos += 8 + length
        if pos > size:
            return f"file truncated: a pixel data fragment ends at byte {pos}, the file has {size} bytes"
    return f"malformed encapsulated pixel data: more than {MAX_FRAGMENTS} items"


def _encapsulated_claims(fragments: int, data_bytes: int, claims, rle: bool) -> str:
    """Every frame needs at least one fragment; RLE cannot hold more than RLE_MAX_RATIO x its bytes."""
    if not claims:
        return ""
    rows, cols, frames, samples, bits = claims
    if frames > fragments:
        return f"NumberOfFrames {frames} but the encapsulated pixel data has {fragments} fragment(s)"
    needed = frame_bytes(rows, cols, samples, bits) * frames
    if rle and needed > RLE_MAX_RATIO * data_bytes:
        return (f"pixel data claims {needed} bytes; {fragments} RLE fragment(s) of {data_bytes} bytes hold at most "
                f"{RLE_MAX_RATIO * data_bytes}")
    return ""


def _scan_deflated(fp, tags, size: int, limits: ReadLimits) -> tuple[pydicom.Dataset, str]:
    """Deflated file: header streamed up to Pixel Data, claims checked, then the pixel bytes counted."""
    try:
        ds, tag, length, stream = deflated_header(fp, tags)
    except DeflateError as e:
        raise DicomReadError(getattr(fp, "name", "?"), f"unreadable header: {e}") from e
    claims = _claims(ds)
    if claims:
        problem = claim_problem(*claims, limits)
        if problem:
            return ds, problem
    if stream is None:
        return ds, "no Pixel Data element"
    if tag != 0x7FE00010:
        return ds, f"no Pixel Data element ({PIXEL_TAGS.get(tag, hex(tag))} instead)"
    if length == UNDEFINED_LENGTH:
        return ds, "malformed encapsulated pixel data: compressed fragments inside a deflated file"
    short = _short_native(length, claims)
    if short:
        return ds, short
    most = DEFLATE_MAX_RATIO * size + (1 << 20)
    if length > most:
        return ds, f"deflate stream of a {size}-byte file holds at most ~{most} bytes, Pixel Data claims {length}"
    try:
        got = stream.skip(length)     # inflated piece by piece and dropped: memory stays one piece
    except DeflateError as e:
        return ds, f"deflate stream corrupt inside the Pixel Data: {e}"
    if got < length:
        return ds, f"file truncated: the deflated Pixel Data ends after {got} of {length} bytes"
    return ds, ""


# Fast path for the flat top-level tags: parse the raw bytes ourselves (pydicom's per-element
# conversion and validation cost ~3x the file parse itself; see benchmarks/bench_index.py).
_TAG = {kw: tag_for_keyword(kw) for kw in HEADER_TAGS}
_BINARY = {"US": "H", "SS": "h", "UL": "I", "SL": "i"}


def tag_value(ds: pydicom.Dataset, keyword: str):
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


def tag_int(ds, keyword: str, default: int | None = None) -> int | None:
    value = tag_value(ds, keyword)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"invalid {keyword} {value!r}") from e


def as_list(value) -> list:
    return [] if value is None else (list(value) if isinstance(value, (list, tuple, MultiValue)) else [value])


def tag_str(ds, keyword: str) -> str:
    value = tag_value(ds, keyword)
    return "" if value is None else ("\\".join(map(str, value)) if isinstance(value, list) else str(value))
