"""Encode DICOM files: transfer syntaxes, pixel data (native or encapsulated), a fast per-series encoder.

``SliceEncoder`` writes the single-frame files of one series with the ~45 shared elements encoded
once; its bytes equal pydicom's ``Dataset.save_as`` (``save_dataset``), which is tested.

Encodings (``ENCODINGS``): explicit / implicit VR little endian, explicit VR big endian, deflated
explicit VR little endian, RLE lossless and JPEG 2000 lossless (pylibjpeg encoders). JPEG-LS is
absent: no JPEG-LS encoder is installed (pydicom needs ``pyjpegls``).
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import validate_file_meta, write_data_element
from pydicom.pixels import get_encoder
from pydicom.pixels.utils import as_pixel_options
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from willis.synth.uids import uid_from

logging.getLogger("openjpeg").setLevel(logging.WARNING)  # it logs every encoded tile at INFO

Encoding = Literal["explicit", "implicit", "big_endian", "deflate", "rle", "jpeg2000"]
# encoding -> (transfer syntax, pixel encoder plugin or None for native pixel data)
ENCODINGS: dict[str, tuple[str, str | None]] = {
    "explicit": (ExplicitVRLittleEndian, None),
    "implicit": (ImplicitVRLittleEndian, None),
    "big_endian": (ExplicitVRBigEndian, None),
    "deflate": (DeflatedExplicitVRLittleEndian, None),
    "rle": (RLELossless, "pylibjpeg"),           # pinned plugins: same bytes on every machine
    "jpeg2000": (JPEG2000Lossless, "pylibjpeg"),
}
J2K_MIN_SIDE = 32        # openjpeg's default 6 resolution levels fail on smaller images


def file_meta(ds: Dataset, encoding: str, sop_uid: str | None = None) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = sop_uid or ds.SOPInstanceUID
    meta.ImplementationClassUID = uid_from("willis", "synth", "implementation")
    meta.TransferSyntaxUID = ENCODINGS[encoding][0]
    return meta


def pixel_element(stored: np.ndarray, ds: Dataset, encoding: str) -> DataElement:
    """PixelData for ``stored`` (rows, cols) or (frames, rows, cols), native or encapsulated."""
    ts, plugin = ENCODINGS[encoding]
    if plugin is None:
        # big endian: pydicom writes OW bytes verbatim, so they must already be byte-swapped
        big = encoding == "big_endian"
        return DataElement(0x7FE00010, "OW", (stored.byteswap() if big else stored).tobytes())
    encoder = get_encoder(ts)
    opts = as_pixel_options(ds)                                  # rows, columns, bits, frames, ...
    frames = stored.reshape(-1, *stored.shape[-2:])
    encoded = [encoder.encode(f, encoding_plugin=plugin, **{**opts, "number_of_frames": 1}) for f in frames]
    elem = DataElement(0x7FE00010, "OB", encapsulate(encoded))
    elem.is_undefined_length = True                              # PS3.5 A.4: encapsulated -> undefined length
    return elem


def save_dataset(ds: Dataset, stored: np.ndarray, path: Path, encoding: str) -> None:
    """Reference path: attach pixel data and let pydicom write the whole file (used for multi-frame)."""
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}; expected one of {list(ENCODINGS)}")
    ds.file_meta = file_meta(ds, encoding)
    ds["PixelData"] = pixel_element(stored, ds, encoding)
    big = encoding == "big_endian"
    ds.save_as(path, enforce_file_format=True, implicit_vr=encoding == "implicit", little_endian=not big)


def _encode(elem: DataElement, implicit: bool, little: bool) -> bytes:
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = implicit, little
    write_data_element(fp, elem)
    return fp.getvalue()


class SliceEncoder:
    """Encodes the single-frame files of one series: the ~45 shared elements are encoded once.

    pydicom spends ~4 ms per file re-validating and re-encoding identical elements; here a file
    costs its 5 per-slice elements plus a join. The bytes equal ``Dataset.save_as`` (tested).
    """

    PER_FILE_META = 0x00020003  # MediaStorageSOPInstanceUID

    def __init__(self, shared: Dataset, encoding: str):
        self.encoding = encoding
        self.implicit, self.little = encoding == "implicit", encoding != "big_endian"
        self.shared = shared
        self.body = {tag: _encode(shared[tag], self.implicit, self.little) for tag in shared.keys()}
        meta = file_meta(shared, encoding, sop_uid="1.2")      # placeholder: replaced per file
        validate_file_meta(meta, enforce_standard=True)          # adds version + implementation name
        per_file = (0x00020000, self.PER_FILE_META)              # group length and instance UID
        self.meta = {tag: _encode(meta[tag], False, True) for tag in meta.keys() if tag not in per_file}

    def file_bytes(self, per_slice: Dataset, stored: np.ndarray) -> bytes:
        meta = dict(self.meta)
        meta[self.PER_FILE_META] = _encode(DataElement(self.PER_FILE_META, "UI", per_slice.SOPInstanceUID), False, True)
        meta_body = b"".join(meta[t] for t in sorted(meta))
        group_length = _encode(DataElement(0x00020000, "UL", len(meta_body)), False, True)
        body = dict(self.body)
        for tag in per_slice.keys():
            body[tag] = _encode(per_slice[tag], self.implicit, self.little)
        body[0x7FE00010] = _encode(pixel_element(stored, self.shared, self.encoding), self.implicit, self.little)
        data = b"".join(body[t] for t in sorted(body))
        if self.encoding == "deflate":                            # PS3.5 A.5: deflate all after the meta
            c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
            data = c.compress(data) + c.flush()
            data += b"\x00" * (len(data) % 2)
        return b"\x00" * 128 + b"DICM" + group_length + meta_body + data
